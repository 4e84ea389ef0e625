/*
 * Fuzzes the admin API request decoder (src/proto/json/admin_request.c). The first input byte
 * picks the request type (enum admin_req_type: the byte mod ADMIN_REQ_TYPE_MAX, 0 standing
 * for ADMIN_REQ_TYPE_MAX), the second a split point; the rest is the body. The body decoded
 * whole and fed in two pieces must give the same verdict, and whatever is accepted must keep
 * the decoder's promises: names that pass admin_req_name_ok, counts and lengths within the
 * limits, no principal twice, attrs that parse back as a JSON object. Any break aborts.
 */
#include "proto/json/admin_request.h"

#include "lib/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

static void
check_principal(const struct admin_req_principal *p, bool groups_ok)
{
    check(p->name && admin_req_name_ok(p->name, strlen(p->name)));
    check(p->kind >= ADMIN_PRINCIPAL_USER && p->kind <= ADMIN_PRINCIPAL_GROUP);
    check(groups_ok || p->kind != ADMIN_PRINCIPAL_GROUP);
}

static void
check_accepted(const struct admin_req *r)
{
    switch (r->type) {
    case ADMIN_REQ_OBJECT_PUT: {
        json_t *a = json_loads(r->attrs, 0, NULL);
        check(a && json_is_object(a));
        json_decref(a);
        break;
    }
    case ADMIN_REQ_ACL_SET:
        check(r->n_acl <= ADMIN_REQ_ACL_MAX);
        for (size_t i = 0; i < r->n_acl; i++) {
            check_principal(&r->acl[i].who, true);
            check(r->acl[i].right >= ADMIN_RIGHT_READ && r->acl[i].right <= ADMIN_RIGHT_FULL);
            for (size_t j = 0; j < i; j++)
                check(r->acl[j].who.kind != r->acl[i].who.kind ||
                      strcmp(r->acl[j].who.name, r->acl[i].who.name) != 0);
        }
        break;
    case ADMIN_REQ_ACL_GRANT:
        check(r->right >= ADMIN_RIGHT_READ && r->right <= ADMIN_RIGHT_FULL);
        /* fall through */
    case ADMIN_REQ_ACL_REVOKE:
        check_principal(&r->principal, true);
        break;
    case ADMIN_REQ_PASSWORD_SET: {
        size_t n = strlen(r->password);
        check(n >= ADMIN_REQ_PASSWORD_MIN && n <= ADMIN_REQ_PASSWORD_MAX);
        break;
    }
    case ADMIN_REQ_MEMBERS_SET:
        check(r->n_members <= ADMIN_REQ_MEMBERS_MAX);
        for (size_t i = 0; i < r->n_members; i++)
            check_principal(&r->members[i], false);
        break;
    case ADMIN_REQ_MEMBER_ADD:
    case ADMIN_REQ_MEMBER_REMOVE:
        check_principal(&r->principal, false);
        break;
    case ADMIN_REQ_AUTH_VERIFY:
        check(admin_req_name_ok(r->user, strlen(r->user)));
        check(strlen(r->password) <= ADMIN_REQ_PASSWORD_MAX);
        break;
    case ADMIN_REQ_COPY_SUSPEND:
        check(r->comment && strlen(r->comment) <= ADMIN_REQ_COMMENT_MAX);
        for (const char *c = r->comment; *c; c++)
            check((unsigned char)*c >= 0x20 && *c != 0x7f);
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned t = data[0] % ADMIN_REQ_TYPE_MAX;
    enum admin_req_type type = (enum admin_req_type)(t ? t : ADMIN_REQ_TYPE_MAX);
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    size_t cut = len ? data[1] % (len + 1) : 0;

    struct admin_req whole;
    const char *error = NULL;
    int ret = admin_req_decode(type, body, len, &whole, &error);
    check(ret == 0 || ret == TDM_EINVAL || ret == TDM_ELIMIT || ret == -ENOMEM);
    check(ret == 0 || (error && error[0]));

    struct admin_req_parser *p;
    check(admin_req_parser_new(type, &p) == 0);
    struct admin_req split;
    int ret2 = admin_req_feed(p, body, cut, &error);
    if (ret2 == 0)
        ret2 = admin_req_feed(p, body + cut, len - cut, &error);
    if (ret2 == 0)
        ret2 = admin_req_finish(p, &split, &error);
    admin_req_parser_free(&p);
    check(ret2 == ret);
    if (ret == 0) {
        check(whole.type == type);
        check_accepted(&whole);
        check(whole.n_acl == split.n_acl && whole.n_members == split.n_members);
        check(!whole.attrs || strcmp(whole.attrs, split.attrs) == 0);
        admin_req_clear(&split);
        admin_req_clear(&whole);
    }
    return 0;
}

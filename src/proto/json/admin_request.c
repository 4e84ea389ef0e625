/*
 * Admin API request bodies: limits while bytes arrive, then jansson, then a check of each
 * member against the request type (admin_request.h). Every message names the member, with
 * array positions ("acl[2].right"), so the person who wrote the body can find it.
 */
#include "proto/json/admin_request.h"

#include "lib/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct admin_req_parser {
    enum admin_req_type type;
    char *buf; /* the body so far (owned) */
    size_t len, cap;
    /* The nesting scanner: JSON's brackets only count outside strings, and a quote only ends
     * a string when it is not escaped; that is all the state needed to track depth. */
    unsigned depth;
    bool in_string, escaped;
    int failed; /* sticky error, 0 while good */
};

static _Thread_local char req_error[512];

static int fail(int err, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(int err, const char **error_r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req_error, sizeof(req_error), fmt, ap);
    va_end(ap);
    *error_r = req_error;
    return err;
}

/* A member name as it may appear in a message: printable ASCII, at most 64 bytes, so a body
 * cannot put control characters or megabytes into an error. */
static const char *
shown(const char *s, char out[72])
{
    size_t o = 0;
    for (size_t i = 0; s[i] && o < 64; i++)
        out[o++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    if (strlen(s) > 64) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

void
admin_req_clear(struct admin_req *req)
{
    free(req->attrs);
    for (size_t i = 0; i < req->n_acl; i++)
        free(req->acl[i].who.name);
    free(req->acl);
    free(req->principal.name);
    if (req->password) /* a secret: do not leave it in freed memory */
        explicit_bzero(req->password, strlen(req->password));
    free(req->password);
    free(req->user);
    free(req->comment);
    for (size_t i = 0; i < req->n_members; i++)
        free(req->members[i].name);
    free(req->members);
    memset(req, 0, sizeof(*req));
}

int
admin_req_parser_new(enum admin_req_type type, struct admin_req_parser **parser_r)
{
    if (type < ADMIN_REQ_OBJECT_PUT || type > ADMIN_REQ_TYPE_MAX)
        return TDM_EINVAL;
    struct admin_req_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->type = type;
    *parser_r = p;
    return 0;
}

void
admin_req_parser_free(struct admin_req_parser **parser)
{
    if (!*parser)
        return;
    if ((*parser)->buf) /* may hold a password */
        explicit_bzero((*parser)->buf, (*parser)->len);
    free((*parser)->buf);
    free(*parser);
    *parser = NULL;
}

int
admin_req_feed(struct admin_req_parser *p, const void *data, size_t len, const char **error_r)
{
    if (p->failed)
        return (*error_r = req_error, p->failed);
    if (len > ADMIN_REQ_BODY_MAX - p->len)
        return p->failed =
                   fail(TDM_ELIMIT, error_r, "body is larger than %u bytes", ADMIN_REQ_BODY_MAX);
    const char *s = data;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (p->in_string) {
            if (p->escaped)
                p->escaped = false;
            else if (c == '\\')
                p->escaped = true;
            else if (c == '"')
                p->in_string = false;
        } else if (c == '"') {
            p->in_string = true;
        } else if (c == '{' || c == '[') {
            if (++p->depth > ADMIN_REQ_DEPTH_MAX)
                return p->failed = fail(TDM_EINVAL, error_r,
                                        "body nests objects and arrays deeper than %u levels",
                                        ADMIN_REQ_DEPTH_MAX);
        } else if ((c == '}' || c == ']') && p->depth > 0) {
            p->depth--; /* an unbalanced close is jansson's to report, with its position */
        }
    }
    if (p->len + len > p->cap) {
        /* Doubling, capped at the limit: a body never makes us hold more than it sent. */
        size_t cap = p->cap ? p->cap : 1024;
        while (cap < p->len + len)
            cap *= 2;
        if (cap > ADMIN_REQ_BODY_MAX)
            cap = ADMIN_REQ_BODY_MAX;
        char *nb = realloc(p->buf, cap);
        if (!nb)
            return -ENOMEM; /* not sticky: nothing was consumed, the caller may retry */
        p->buf = nb;
        p->cap = cap;
    }
    if (len) /* data may be NULL for len 0 */
        memcpy(p->buf + p->len, data, len);
    p->len += len;
    return 0;
}

/* ---- Syntax of names, principals and rights ---- */

bool
admin_req_name_ok(const char *name, size_t len)
{
    if (len < 1 || len > ADMIN_REQ_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        /* No control characters (the directory refuses them too) and no '/', which would
         * make the object's URL path ambiguous. */
        if (c < 0x20 || c == 0x7f || c == '/')
            return false;
    }
    return true;
}

int
admin_req_principal_parse(const char *text, struct admin_req_principal *who_r)
{
    static const struct {
        const char *prefix;
        enum admin_req_principal_kind kind;
    } kinds[] = {{"user:", ADMIN_PRINCIPAL_USER},
                 {"server:", ADMIN_PRINCIPAL_SERVER},
                 {"group:", ADMIN_PRINCIPAL_GROUP}};
    memset(who_r, 0, sizeof(*who_r));
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(text, kinds[i].prefix, n) != 0)
            continue;
        const char *name = text + n;
        if (!admin_req_name_ok(name, strlen(name)))
            return TDM_EINVAL;
        who_r->name = strdup(name);
        if (!who_r->name)
            return -ENOMEM;
        who_r->kind = kinds[i].kind;
        return 0;
    }
    return TDM_EINVAL;
}

enum admin_req_right
admin_req_right_parse(const char *text)
{
    if (!strcmp(text, "read"))
        return ADMIN_RIGHT_READ;
    if (!strcmp(text, "write"))
        return ADMIN_RIGHT_WRITE;
    if (!strcmp(text, "full-control"))
        return ADMIN_RIGHT_FULL;
    return 0;
}

/* ---- Members ---- */

/* Refuses any member of obj not in allowed (NULL-terminated). */
static int
check_members(const json_t *obj, const char *where, const char *const *allowed,
              const char **error_r)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok) {
            char k[72];
            return fail(TDM_EINVAL, error_r, "%s%sunknown member \"%s\"", where,
                        where[0] ? ": " : "", shown(key, k));
        }
    }
    return 0;
}

static json_t *
need(const json_t *obj, const char *member, const char *where, const char **error_r, int *ret)
{
    json_t *v = json_object_get(obj, member);
    if (!v)
        *ret = fail(TDM_EINVAL, error_r, "%s%smissing member \"%s\"", where, where[0] ? ": " : "",
                    member);
    return v;
}

/* A principal at path (for messages) from v. groups_ok: false where groups cannot go
 * (group members: groups do not nest). */
static int
principal_from(const json_t *v, const char *path, bool groups_ok, struct admin_req_principal *who_r,
               const char **error_r)
{
    if (!json_is_string(v))
        return fail(TDM_EINVAL, error_r,
                    "%s: must be a string such as \"user:<name>\", \"server:<name>\" or "
                    "\"group:<name>\"",
                    path);
    const char *text = json_string_value(v);
    int ret = admin_req_principal_parse(text, who_r);
    if (ret == -ENOMEM)
        return ret;
    if (ret < 0) {
        char t[72];
        return fail(TDM_EINVAL, error_r,
                    "%s: \"%s\" is not a principal (user:<name>, server:<name> or group:<name>; "
                    "a name is 1 to %u bytes without '/' or control characters)",
                    path, shown(text, t), ADMIN_REQ_NAME_MAX);
    }
    if (!groups_ok && who_r->kind == ADMIN_PRINCIPAL_GROUP) {
        free(who_r->name);
        who_r->name = NULL;
        return fail(TDM_EINVAL, error_r,
                    "%s: a group cannot be a member of a group (groups do not nest)", path);
    }
    return 0;
}

static int
right_from(const json_t *v, const char *path, enum admin_req_right *right_r, const char **error_r)
{
    *right_r = json_is_string(v) ? admin_req_right_parse(json_string_value(v)) : 0;
    if (!*right_r)
        return fail(TDM_EINVAL, error_r, "%s: must be one of \"read\", \"write\", \"full-control\"",
                    path);
    return 0;
}

static bool
same_principal(const struct admin_req_principal *a, const struct admin_req_principal *b)
{
    return a->kind == b->kind && strcmp(a->name, b->name) == 0;
}

static int
decode_object_put(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"attrs", "version", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *attrs = need(root, "attrs", "", error_r, &ret);
    if (!attrs)
        return ret;
    if (!json_is_object(attrs))
        return fail(TDM_EINVAL, error_r, "attrs: must be a JSON object");
    json_t *version = json_object_get(root, "version");
    if (version) {
        if (!json_is_integer(version) || json_integer_value(version) < 0)
            return fail(TDM_EINVAL, error_r,
                        "version: must be an integer >= 0 (0: the object must not exist yet)");
        req->has_version = true;
        req->version = (uint64_t)json_integer_value(version);
    }
    /* Sorted, compact text: the directory writes its own canonical form from it anyway. */
    req->attrs = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
    return req->attrs ? 0 : -ENOMEM;
}

static int
decode_acl_set(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"acl", NULL};
    static const char *const entry_allowed[] = {"principal", "right", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *acl = need(root, "acl", "", error_r, &ret);
    if (!acl)
        return ret;
    if (!json_is_array(acl))
        return fail(TDM_EINVAL, error_r, "acl: must be an array of {\"principal\",\"right\"}");
    size_t n = json_array_size(acl);
    if (n > ADMIN_REQ_ACL_MAX)
        return fail(TDM_EINVAL, error_r, "acl: %zu entries, more than the %u allowed", n,
                    ADMIN_REQ_ACL_MAX);
    if (n && !(req->acl = calloc(n, sizeof(*req->acl))))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(acl, i);
        char path[64];
        snprintf(path, sizeof(path), "acl[%zu]", i);
        if (!json_is_object(e))
            return fail(TDM_EINVAL, error_r, "%s: must be an object {\"principal\",\"right\"}",
                        path);
        if ((ret = check_members(e, path, entry_allowed, error_r)) < 0)
            return ret;
        json_t *p = need(e, "principal", path, error_r, &ret);
        json_t *r = p ? need(e, "right", path, error_r, &ret) : NULL;
        if (!r)
            return ret;
        char sub[80];
        snprintf(sub, sizeof(sub), "%s.principal", path);
        if ((ret = principal_from(p, sub, true, &req->acl[i].who, error_r)) < 0)
            return ret;
        req->n_acl = i + 1; /* from here on the entry's name is freed by admin_req_clear */
        snprintf(sub, sizeof(sub), "%s.right", path);
        if ((ret = right_from(r, sub, &req->acl[i].right, error_r)) < 0)
            return ret;
        for (size_t j = 0; j < i; j++)
            if (same_principal(&req->acl[j].who, &req->acl[i].who))
                return fail(TDM_EINVAL, error_r,
                            "%s.principal: the same principal as acl[%zu] (one entry each)", path,
                            j);
    }
    return 0;
}

static int
decode_grant_revoke(const json_t *root, struct admin_req *req, bool grant, const char **error_r)
{
    static const char *const grant_allowed[] = {"principal", "right", NULL};
    static const char *const revoke_allowed[] = {"principal", NULL};
    int ret = check_members(root, "", grant ? grant_allowed : revoke_allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *p = need(root, "principal", "", error_r, &ret);
    json_t *r = p && grant ? need(root, "right", "", error_r, &ret) : NULL;
    if (!p || (grant && !r))
        return ret;
    if ((ret = principal_from(p, "principal", true, &req->principal, error_r)) < 0)
        return ret;
    return grant ? right_from(r, "right", &req->right, error_r) : 0;
}

static int
decode_password(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"password", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *p = need(root, "password", "", error_r, &ret);
    if (!p)
        return ret;
    size_t n = json_is_string(p) ? json_string_length(p) : 0;
    if (!json_is_string(p) || n < ADMIN_REQ_PASSWORD_MIN || n > ADMIN_REQ_PASSWORD_MAX)
        return fail(TDM_EINVAL, error_r, "password: must be a string of %u to %u bytes",
                    ADMIN_REQ_PASSWORD_MIN, ADMIN_REQ_PASSWORD_MAX);
    req->password = strdup(json_string_value(p));
    return req->password ? 0 : -ENOMEM;
}

/* Why an operator suspends a copy: it goes into an event and the copy's status, so one line
 * of printable text. */
static int
decode_copy_suspend(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"comment", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *c = json_object_get(root, "comment");
    const char *text = "";
    if (c) {
        size_t n = json_is_string(c) ? json_string_length(c) : 0;
        if (!json_is_string(c) || n > ADMIN_REQ_COMMENT_MAX)
            return fail(TDM_EINVAL, error_r, "comment: must be a string of at most %u bytes",
                        ADMIN_REQ_COMMENT_MAX);
        text = json_string_value(c);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
                return fail(TDM_EINVAL, error_r, "comment: control characters are not allowed");
    }
    req->comment = strdup(text);
    return req->comment ? 0 : -ENOMEM;
}

/* A login to check: any password a person might type (the length rule applies when one is
 * set, not when one is tried), so a short one gets "no" from the directory, not a 400. */
static int
decode_auth_verify(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"user", "server", "password", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    /* A server's key is checked like a user's password: "server" instead of "user". */
    const char *who = json_object_get(root, "server") ? "server" : "user";
    if (json_object_get(root, "server") && json_object_get(root, "user"))
        return fail(TDM_EINVAL, error_r, "give \"user\" or \"server\", not both");
    json_t *u = need(root, who, "", error_r, &ret);
    json_t *p = u ? need(root, "password", "", error_r, &ret) : NULL;
    if (!p)
        return ret;
    const char *name = json_is_string(u) ? json_string_value(u) : NULL;
    if (!name || !admin_req_name_ok(name, json_string_length(u)))
        return fail(TDM_EINVAL, error_r,
                    "%s: must be a %s name (1 to %u bytes without '/' or control characters)", who,
                    who, ADMIN_REQ_NAME_MAX);
    req->verify_server = who[0] == 's';
    size_t n = json_is_string(p) ? json_string_length(p) : 0;
    if (!json_is_string(p) || n > ADMIN_REQ_PASSWORD_MAX)
        return fail(TDM_EINVAL, error_r, "password: must be a string of at most %u bytes",
                    ADMIN_REQ_PASSWORD_MAX);
    if (!(req->user = strdup(name)) || !(req->password = strdup(json_string_value(p))))
        return -ENOMEM;
    return 0;
}

static int
decode_members(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"members", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *m = need(root, "members", "", error_r, &ret);
    if (!m)
        return ret;
    if (!json_is_array(m))
        return fail(TDM_EINVAL, error_r,
                    "members: must be an array of \"user:<name>\" or \"server:<name>\"");
    size_t n = json_array_size(m);
    if (n > ADMIN_REQ_MEMBERS_MAX)
        return fail(TDM_EINVAL, error_r, "members: %zu entries, more than the %u allowed", n,
                    ADMIN_REQ_MEMBERS_MAX);
    if (n && !(req->members = calloc(n, sizeof(*req->members))))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "members[%zu]", i);
        if ((ret = principal_from(json_array_get(m, i), path, false, &req->members[i], error_r)) <
            0)
            return ret;
        req->n_members = i + 1;
        /* Quadratic, but bounded by the member limit and cheap next to an LMDB commit. */
        for (size_t j = 0; j < i; j++)
            if (same_principal(&req->members[j], &req->members[i]))
                return fail(TDM_EINVAL, error_r, "%s: the same member as members[%zu]", path, j);
    }
    return 0;
}

static int
decode_member(const json_t *root, struct admin_req *req, const char **error_r)
{
    static const char *const allowed[] = {"member", NULL};
    int ret = check_members(root, "", allowed, error_r);
    if (ret < 0)
        return ret;
    json_t *m = need(root, "member", "", error_r, &ret);
    if (!m)
        return ret;
    return principal_from(m, "member", false, &req->principal, error_r);
}

int
admin_req_finish(struct admin_req_parser *p, struct admin_req *req_r, const char **error_r)
{
    memset(req_r, 0, sizeof(*req_r));
    if (p->failed)
        return (*error_r = req_error, p->failed);
    size_t i = 0;
    while (i < p->len && strchr(" \t\r\n", p->buf[i]))
        i++;
    if (i == p->len)
        return fail(TDM_EINVAL, error_r, "body is empty: a JSON object is expected");
    json_error_t jerr;
    json_t *root = json_loadb(p->buf, p->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return fail(-ENOMEM, error_r, "out of memory");
        return fail(TDM_EINVAL, error_r, "body is not valid JSON: %s (line %d, column %d)",
                    jerr.text, jerr.line, jerr.column);
    }
    int ret;
    struct admin_req req = {.type = p->type};
    if (!json_is_object(root)) {
        ret = fail(TDM_EINVAL, error_r, "body must be a JSON object");
        goto out;
    }
    switch (p->type) {
    case ADMIN_REQ_OBJECT_PUT:
        ret = decode_object_put(root, &req, error_r);
        break;
    case ADMIN_REQ_ACL_SET:
        ret = decode_acl_set(root, &req, error_r);
        break;
    case ADMIN_REQ_ACL_GRANT:
    case ADMIN_REQ_ACL_REVOKE:
        ret = decode_grant_revoke(root, &req, p->type == ADMIN_REQ_ACL_GRANT, error_r);
        break;
    case ADMIN_REQ_PASSWORD_SET:
        ret = decode_password(root, &req, error_r);
        break;
    case ADMIN_REQ_MEMBERS_SET:
        ret = decode_members(root, &req, error_r);
        break;
    case ADMIN_REQ_MEMBER_ADD:
    case ADMIN_REQ_MEMBER_REMOVE:
        ret = decode_member(root, &req, error_r);
        break;
    case ADMIN_REQ_AUTH_VERIFY:
        ret = decode_auth_verify(root, &req, error_r);
        break;
    case ADMIN_REQ_COPY_SUSPEND:
        ret = decode_copy_suspend(root, &req, error_r);
        break;
    default:
        ret = fail(TDM_EINVAL, error_r, "unknown request type"); /* parser_new refuses these */
        break;
    }
out:
    json_decref(root);
    if (ret == -ENOMEM)
        fail(ret, error_r, "out of memory");
    if (ret < 0)
        admin_req_clear(&req);
    else
        *req_r = req;
    return ret;
}

int
admin_req_decode(enum admin_req_type type, const void *body, size_t len, struct admin_req *req_r,
                 const char **error_r)
{
    memset(req_r, 0, sizeof(*req_r));
    struct admin_req_parser *p;
    int ret = admin_req_parser_new(type, &p);
    if (ret < 0)
        return fail(ret, error_r, "%s", tdm_strerror(ret));
    ret = admin_req_feed(p, body, len, error_r);
    if (ret == 0)
        ret = admin_req_finish(p, req_r, error_r);
    else if (ret == -ENOMEM)
        fail(ret, error_r, "out of memory");
    admin_req_parser_free(&p);
    return ret;
}

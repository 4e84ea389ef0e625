/*
 * /v1/objects/...: directory objects, their ACLs, user passwords and group members
 * (docs/formats/admin-api.md). Every handler reads in one short LMDB read transaction (ended
 * before any wait), checks the caller's right exactly as the contract's table says, and sends
 * a change as one COMMIT. Answers to writes are built from a fresh read after the commit is
 * durable, so what the client gets back is what the directory holds.
 *
 * Read-modify-write operations (ACL grant/revoke, member add/remove) read the whole list and
 * commit it whole; the record types carry no expected version, so two of them racing on one
 * object can lose one change (the last commit wins). docs/formats/admin-api.md says so.
 */
#include "admin/admin_int.h"

#include "lib/err.h"
#include "lib/log.h"
#include "proto/json/admin_request.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON of directory things ---- */

static const char *
principal_text(const struct dir_principal *p, char *buf, size_t size)
{
    snprintf(buf, size, "%s:%s", dir_kind_name(p->kind), p->name);
    return buf;
}

static json_t *
acl_json(const struct dir_acl_entry *acl, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char p[DIR_NAME_MAX + 16];
        json_array_append_new(a, json_pack("{s:s,s:s}", "principal",
                                           principal_text(&acl[i].who, p, sizeof(p)), "right",
                                           dir_right_name(acl[i].right)));
    }
    return a;
}

static json_t *
object_json(const struct dir_object *o, bool with_acl)
{
    json_t *attrs = json_loads(o->attrs, 0, NULL);
    json_t *doc = json_pack("{s:s,s:s,s:I,s:o,s:b}", "kind", dir_kind_name(o->kind), "name",
                            o->name, "version", (json_int_t)o->version, "attrs",
                            attrs ? attrs : json_object(), "has_password", o->has_password);
    if (doc && with_acl)
        json_object_set_new(doc, "acl", acl_json(o->acl, o->n_acl));
    return doc;
}

static enum dir_kind
principal_kind(enum admin_req_principal_kind k)
{
    return k == ADMIN_PRINCIPAL_USER     ? DIR_KIND_USER
           : k == ADMIN_PRINCIPAL_SERVER ? DIR_KIND_SERVER
                                         : DIR_KIND_GROUP;
}

static enum dir_right
right_of(enum admin_req_right r)
{
    return r == ADMIN_RIGHT_READ    ? DIR_RIGHT_READ
           : r == ADMIN_RIGHT_WRITE ? DIR_RIGHT_WRITE
                                    : DIR_RIGHT_FULL;
}

/* ---- rights ---- */

int
admin_is_admin(const struct admin_call *call, void *state, MDB_txn *txn, bool *admin_r)
{
    struct dir_principal who;
    *admin_r = call->who == ADMIN_WHO_LOCAL;
    if (!admin_who_principal(call, &who))
        return 0;
    return dir_is_member(state, txn, DIR_GROUP_ADMINS, &who, admin_r);
}

/* The right the caller has on (kind, name): LOCAL has full control. */
static int
right_on(const struct admin_call *call, void *state, MDB_txn *txn, enum dir_kind kind,
         const char *name, enum dir_right *right_r)
{
    struct dir_principal who;
    if (!admin_who_principal(call, &who)) {
        /* Nothing to have rights on when it does not exist, for `local` as for admins. */
        struct dir_object o;
        int ret = dir_object_get(state, txn, kind, name, &o);
        dir_object_clear(&o);
        *right_r = ret == 0 ? DIR_RIGHT_FULL : DIR_RIGHT_NONE;
        return ret;
    }
    return dir_effective_right(state, txn, &who, kind, name, right_r);
}

int
admin_authorize(struct admin_call *call, void *state, MDB_txn *txn, enum dir_kind kind,
                const char *name, enum dir_right need, bool missing_is_404)
{
    enum dir_right has = DIR_RIGHT_NONE;
    int ret = right_on(call, state, txn, kind, name, &has);
    char obj[DIR_NAME_MAX + 32], who[DIR_NAME_MAX + 16];
    snprintf(obj, sizeof(obj), "%s/%s", dir_kind_name(kind), name);
    if (ret == TDM_ENOTFOUND && missing_is_404) {
        admin_reply_error(call, 404, json_pack("{s:s}", "object", obj), "no such object: %s", obj);
        return 0;
    }
    if (ret < 0 && ret != TDM_ENOTFOUND) {
        admin_reply_storage_error(call, ret, obj);
        return -1;
    }
    if (has >= need)
        return 1;
    admin_who_text(call, who, sizeof(who));
    admin_reply_error(
        call, 403,
        json_pack("{s:s,s:s,s:s}", "object", obj, "principal", who, "right", dir_right_name(need)),
        "%s lacks %s on %s (has %s)", who, dir_right_name(need), obj, dir_right_name(has));
    return 0;
}

/* ---- bodies ---- */

int
admin_read_body(struct admin_call *call, int type, struct admin_req *req_r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(call->req);
    struct admin_req_parser *p;
    const char *why = NULL;
    if (admin_req_parser_new((enum admin_req_type)type, &p) < 0)
        log_panic("admin_read_body: bad request type %d", type);
    /* Fed chunk by chunk as evhttp holds it: no copy into one flat buffer first. */
    int n = evbuffer_peek(in, -1, NULL, NULL, 0);
    struct evbuffer_iovec *v = n > 0 ? calloc((size_t)n, sizeof(*v)) : NULL;
    if (n > 0 && !v)
        log_fatal("out of memory");
    if (n > 0)
        evbuffer_peek(in, -1, NULL, v, n);
    int ret = 0;
    for (int i = 0; i < n && ret == 0; i++)
        ret = admin_req_feed(p, v[i].iov_base, v[i].iov_len, &why);
    free(v);
    if (ret == 0)
        ret = admin_req_finish(p, req_r, &why);
    admin_req_parser_free(&p);
    if (ret == -ENOMEM)
        log_fatal("out of memory");
    if (ret == TDM_ELIMIT) {
        admin_reply_error(call, 413, NULL, "%s", why);
        return -1;
    }
    if (ret < 0) {
        admin_reply_error(call, 400, NULL, "%s", why);
        return -1;
    }
    return 0;
}

/* "version=N" from the query, or DIR_VERSION_ANY. Returns -1 after answering 400. */
static int
query_version(struct admin_call *call, uint64_t *version_r)
{
    *version_r = DIR_VERSION_ANY;
    if (!call->query)
        return 0;
    struct evkeyvalq q;
    if (evhttp_parse_query_str(call->query, &q) < 0) {
        admin_reply_error(call, 400, NULL, "the query string is malformed");
        return -1;
    }
    const char *v = evhttp_find_header(&q, "version");
    int ret = 0;
    if (v) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || *end || !*v || v[0] == '-') {
            admin_reply_error(call, 400, NULL, "version: must be an integer >= 0");
            ret = -1;
        } else {
            *version_r = n;
        }
    }
    evhttp_clear_headers(&q);
    return ret;
}

/* ---- answers after a commit ---- */

static int
reply_object_after(struct admin_call *call)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return -1;
    struct dir_object o;
    int ret = dir_object_get(state, txn, call->kind, call->name, &o);
    enum dir_right r = DIR_RIGHT_NONE;
    if (ret == 0)
        ret = right_on(call, state, txn, call->kind, call->name, &r);
    if (ret < 0) {
        dir_object_clear(&o);
        mdb_txn_abort(txn);
        char obj[DIR_NAME_MAX + 32];
        snprintf(obj, sizeof(obj), "%s/%s", dir_kind_name(call->kind), call->name);
        admin_reply_storage_error(call, ret, obj);
        return -1;
    }
    json_t *doc = object_json(&o, r >= DIR_RIGHT_FULL);
    dir_object_clear(&o);
    mdb_txn_abort(txn);
    admin_reply_json(call, call->success_status, doc);
    return 0;
}

static int
reply_acl_after(struct admin_call *call)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return -1;
    struct dir_object o;
    int ret = dir_object_get(state, txn, call->kind, call->name, &o);
    if (ret < 0) {
        mdb_txn_abort(txn);
        admin_reply_storage_error(call, ret, call->name);
        return -1;
    }
    json_t *doc = json_pack("{s:o}", "acl", acl_json(o.acl, o.n_acl));
    dir_object_clear(&o);
    mdb_txn_abort(txn);
    admin_reply_json(call, 200, doc);
    return 0;
}

static int
reply_ok_after(struct admin_call *call)
{
    admin_reply_json(call, 200, json_pack("{s:b}", "ok", 1));
    return 0;
}

static int
reply_deleted_after(struct admin_call *call)
{
    admin_reply_json(call, 200, json_pack("{s:b}", "deleted", 1));
    return 0;
}

/* ---- group members ---- */

struct member_list {
    struct dir_principal *v; /* names owned */
    size_t n, cap;
};

static void
members_clear(struct member_list *m)
{
    for (size_t i = 0; i < m->n; i++)
        free((char *)m->v[i].name);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

static void
members_push(struct member_list *m, enum dir_kind kind, const char *name)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->v = realloc(m->v, m->cap * sizeof(*m->v));
        if (!m->v)
            log_fatal("out of memory");
    }
    m->v[m->n].kind = kind;
    if (!(m->v[m->n].name = strdup(name)))
        log_fatal("out of memory");
    m->n++;
}

/*
 * The members of group, servers first then users, each by name (the directory's principal
 * order). The directory keeps no public member listing, so every user and server is asked
 * dir_is_member: linear in the directory's principals, which is fine for an admin call.
 */
struct member_walk {
    struct member_list *list;
    void *state;
    MDB_txn *txn;
    const char *group;
};

static int
member_walk_cb(void *ctx, const struct dir_object *obj)
{
    struct member_walk *w = ctx;
    struct dir_principal p = {obj->kind, obj->name};
    bool member = false;
    int ret = dir_is_member(w->state, w->txn, w->group, &p, &member);
    if (ret == 0 && member)
        members_push(w->list, obj->kind, obj->name);
    return ret;
}

static int
members_read(void *state, MDB_txn *txn, const char *group, struct member_list *m)
{
    struct member_walk w = {m, state, txn, group};
    int ret = dir_object_list(state, txn, DIR_KIND_SERVER, member_walk_cb, &w);
    if (ret == 0)
        ret = dir_object_list(state, txn, DIR_KIND_USER, member_walk_cb, &w);
    return ret;
}

static json_t *
members_json(const struct member_list *m)
{
    json_t *a = json_array();
    for (size_t i = 0; i < m->n; i++) {
        char p[DIR_NAME_MAX + 16];
        json_array_append_new(a, json_string(principal_text(&m->v[i], p, sizeof(p))));
    }
    return a;
}

static int
reply_members_after(struct admin_call *call)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return -1;
    struct member_list m = {0};
    int ret = members_read(state, txn, call->name, &m);
    mdb_txn_abort(txn);
    if (ret < 0) {
        members_clear(&m);
        admin_reply_storage_error(call, ret, call->name);
        return -1;
    }
    admin_reply_json(call, 200, json_pack("{s:o}", "members", members_json(&m)));
    members_clear(&m);
    return 0;
}

/* 409 naming the first principal of list that does not exist; 1 when all exist. */
static int
check_exist(struct admin_call *call, void *state, MDB_txn *txn, const struct dir_principal *list,
            size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct dir_object o;
        int ret = dir_object_get(state, txn, list[i].kind, list[i].name, &o);
        dir_object_clear(&o);
        if (ret == 0)
            continue;
        char p[DIR_NAME_MAX + 16];
        principal_text(&list[i], p, sizeof(p));
        if (ret == TDM_ENOTFOUND)
            admin_reply_error(call, 409, json_pack("{s:s}", "object", p),
                              "%s does not exist: create it first", p);
        else
            admin_reply_storage_error(call, ret, p);
        return 0;
    }
    return 1;
}

/* ---- handlers ---- */

struct list_ctx {
    struct admin_call *call;
    void *state;
    MDB_txn *txn;
    json_t *objects;
};

static int
list_cb(void *ctx, const struct dir_object *obj)
{
    struct list_ctx *l = ctx;
    enum dir_right r;
    int ret = right_on(l->call, l->state, l->txn, obj->kind, obj->name, &r);
    if (ret < 0)
        return ret;
    /* Objects the caller may not read are left out, not refused: a list shows what is yours
     * to see. */
    if (r >= DIR_RIGHT_READ)
        json_array_append_new(l->objects, object_json(obj, r >= DIR_RIGHT_FULL));
    return 0;
}

static void
serve_list(struct admin_call *call, enum dir_kind kind)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return;
    struct list_ctx l = {call, state, txn, json_array()};
    int ret = dir_object_list(state, txn, kind, list_cb, &l);
    mdb_txn_abort(txn);
    if (ret < 0) {
        json_decref(l.objects);
        admin_reply_storage_error(call, ret, dir_kind_name(kind));
        return;
    }
    admin_reply_json(call, 200, json_pack("{s:o}", "objects", l.objects));
}

static void
serve_get(struct admin_call *call, enum dir_kind kind, const char *name)
{
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return;
    if (admin_authorize(call, state, txn, kind, name, DIR_RIGHT_READ, true) == 1) {
        struct dir_object o;
        enum dir_right r = DIR_RIGHT_NONE;
        int ret = dir_object_get(state, txn, kind, name, &o);
        if (ret == 0)
            ret = right_on(call, state, txn, kind, name, &r);
        if (ret < 0)
            admin_reply_storage_error(call, ret, name);
        else
            admin_reply_json(call, 200, object_json(&o, r >= DIR_RIGHT_FULL));
        dir_object_clear(&o);
    }
    mdb_txn_abort(txn);
}

static void
serve_put(struct admin_call *call, enum dir_kind kind, const char *name)
{
    struct admin_req req;
    if (admin_read_body(call, ADMIN_REQ_OBJECT_PUT, &req) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        admin_req_clear(&req);
        return;
    }
    struct dir_object o;
    int ret = dir_object_get(state, txn, kind, name, &o);
    dir_object_clear(&o);
    bool allowed = false;
    if (ret == 0) {
        allowed = admin_authorize(call, state, txn, kind, name, DIR_RIGHT_WRITE, false) == 1;
    } else if (ret == TDM_ENOTFOUND) {
        bool admin = false;
        ret = admin_is_admin(call, state, txn, &admin);
        if (ret < 0) {
            admin_reply_storage_error(call, ret, name);
        } else if (!admin) {
            char who[DIR_NAME_MAX + 16], obj[DIR_NAME_MAX + 32];
            admin_who_text(call, who, sizeof(who));
            snprintf(obj, sizeof(obj), "%s/%s", dir_kind_name(kind), name);
            admin_reply_error(
                call, 403,
                json_pack("{s:s,s:s,s:s}", "object", obj, "principal", who, "right", "create"),
                "%s lacks create on %s (only members of admins create objects)", who, obj);
        } else {
            allowed = true;
            ret = TDM_ENOTFOUND;
        }
    } else {
        admin_reply_storage_error(call, ret, name);
    }
    mdb_txn_abort(txn);
    if (allowed) {
        call->kind = kind;
        snprintf(call->name, sizeof(call->name), "%s", name);
        call->success_status = ret == TDM_ENOTFOUND ? 201 : 200;
        call->on_commit = reply_object_after;
        struct dir_op op = {.type = TDM_REC_DIR_PUT,
                            .kind = kind,
                            .name = name,
                            .expected_version = req.has_version ? req.version : DIR_VERSION_ANY,
                            .attrs = req.attrs};
        admin_commit(call, &op);
    }
    admin_req_clear(&req);
}

static void
serve_delete(struct admin_call *call, enum dir_kind kind, const char *name)
{
    uint64_t version;
    if (query_version(call, &version) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return;
    int ok = admin_authorize(call, state, txn, kind, name, DIR_RIGHT_FULL, true);
    mdb_txn_abort(txn);
    if (ok != 1)
        return;
    call->kind = kind;
    snprintf(call->name, sizeof(call->name), "%s", name);
    call->on_commit = reply_deleted_after;
    if ((kind == DIR_KIND_USER || kind == DIR_KIND_SERVER) && !(call->flush_name = strdup(name)))
        log_fatal("out of memory");
    struct dir_op op = {
        .type = TDM_REC_DIR_DELETE, .kind = kind, .name = name, .expected_version = version};
    admin_commit(call, &op);
}

/* GET/PUT acl, POST acl/grant, acl/revoke: all need full-control. */
static void
serve_acl(struct admin_call *call, enum dir_kind kind, const char *name, const char *verb)
{
    enum admin_req_type type = 0;
    if (!verb)
        type = call->method == EVHTTP_REQ_PUT ? ADMIN_REQ_ACL_SET : 0;
    else if (!strcmp(verb, "grant"))
        type = ADMIN_REQ_ACL_GRANT;
    else if (!strcmp(verb, "revoke"))
        type = ADMIN_REQ_ACL_REVOKE;
    else {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    bool get = !verb && call->method == EVHTTP_REQ_GET;
    if (!get && (verb ? call->method != EVHTTP_REQ_POST : call->method != EVHTTP_REQ_PUT)) {
        admin_reply_error(call, 405, NULL, verb ? "use POST" : "use GET or PUT");
        return;
    }
    struct admin_req req = {0};
    if (!get && admin_read_body(call, type, &req) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        admin_req_clear(&req);
        return;
    }
    if (admin_authorize(call, state, txn, kind, name, DIR_RIGHT_FULL, true) != 1) {
        mdb_txn_abort(txn);
        admin_req_clear(&req);
        return;
    }
    struct dir_object o;
    int ret = dir_object_get(state, txn, kind, name, &o);
    mdb_txn_abort(txn);
    if (ret < 0) {
        admin_reply_storage_error(call, ret, name);
        admin_req_clear(&req);
        return;
    }
    if (get) {
        admin_reply_json(call, 200, json_pack("{s:o}", "acl", acl_json(o.acl, o.n_acl)));
        dir_object_clear(&o);
        return;
    }
    /* The new ACL: at most DIR_MAX_ACL + 1 entries (a grant to a full list is refused by the
     * encoder with its own message). Principal names borrow from o and req. */
    struct dir_acl_entry *acl = calloc(DIR_MAX_ACL + 1, sizeof(*acl));
    if (!acl)
        log_fatal("out of memory");
    size_t n = 0;
    if (type == ADMIN_REQ_ACL_SET) {
        for (size_t i = 0; i < req.n_acl; i++)
            acl[n++] =
                (struct dir_acl_entry){{principal_kind(req.acl[i].who.kind), req.acl[i].who.name},
                                       right_of(req.acl[i].right)};
    } else {
        struct dir_principal p = {principal_kind(req.principal.kind), req.principal.name};
        for (size_t i = 0; i < o.n_acl; i++)
            if (o.acl[i].who.kind != p.kind || strcmp(o.acl[i].who.name, p.name) != 0)
                acl[n++] = o.acl[i];
        if (type == ADMIN_REQ_ACL_GRANT)
            acl[n++] = (struct dir_acl_entry){p, right_of(req.right)};
    }
    call->kind = kind;
    snprintf(call->name, sizeof(call->name), "%s", name);
    call->on_commit = reply_acl_after;
    /* A grant or revoke changes the ACL it read: if another change came between, the commit
     * is refused (409) rather than losing it. A PUT replaces the whole ACL as given. */
    struct dir_op op = {.type = TDM_REC_DIR_ACL_SET,
                        .kind = kind,
                        .name = name,
                        .expected_version =
                            type == ADMIN_REQ_ACL_SET ? DIR_VERSION_ANY : o.version,
                        .acl = acl,
                        .n_acl = n};
    admin_commit(call, &op);
    free(acl);
    dir_object_clear(&o);
    admin_req_clear(&req);
}

static void
password_hashed_cb(struct admin_call *call, int result, const char *hash)
{
    if (call->gone) { /* the client went away: nothing to commit for nobody */
        admin_call_free(call);
        return;
    }
    if (result < 0) {
        admin_reply_error(call, 500, NULL, "cannot hash the password: %s", tdm_strerror(result));
        return;
    }
    call->on_commit = reply_ok_after;
    if (!(call->flush_name = strdup(call->name)))
        log_fatal("out of memory");
    struct dir_op op = {.type = TDM_REC_DIR_PASSWORD_SET,
                        .kind = call->kind,
                        .name = call->name,
                        .password_hash = hash};
    admin_commit(call, &op);
}

static void
serve_password(struct admin_call *call, enum dir_kind kind, const char *name)
{
    if (call->method != EVHTTP_REQ_PUT) {
        admin_reply_error(call, 405, NULL, "use PUT");
        return;
    }
    if (kind != DIR_KIND_USER && kind != DIR_KIND_SERVER) {
        admin_reply_error(call, 404, NULL, "only users (passwords) and servers (keys) have one");
        return;
    }
    struct admin_req req;
    if (admin_read_body(call, ADMIN_REQ_PASSWORD_SET, &req) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        admin_req_clear(&req);
        return;
    }
    /* Being that user (or server) is enough: people change their own password. */
    bool self = call->who == (kind == DIR_KIND_USER ? ADMIN_WHO_USER : ADMIN_WHO_SERVER) &&
                strcmp(call->who_name, name) == 0;
    int ok = 1;
    if (self) {
        struct dir_object o;
        int ret = dir_object_get(state, txn, kind, name, &o);
        dir_object_clear(&o);
        if (ret < 0) {
            admin_reply_storage_error(call, ret, name);
            ok = 0;
        }
    } else {
        ok = admin_authorize(call, state, txn, kind, name, DIR_RIGHT_WRITE, true);
    }
    mdb_txn_abort(txn);
    if (ok != 1) {
        admin_req_clear(&req);
        return;
    }
    call->kind = kind;
    snprintf(call->name, sizeof(call->name), "%s", name);
    /* Hashing takes as long as checking: on the argon2id thread, then the commit. */
    int ret = admin_crypto_hash(call->srv->crypto, call, req.password, password_hashed_cb);
    admin_req_clear(&req);
    if (ret < 0)
        admin_reply_error(call, 503, NULL,
                          "too many password operations in progress: try again in a moment");
}

static void
serve_members(struct admin_call *call, const char *name, const char *verb)
{
    /* type 0: a GET (no body); otherwise the body the change carries. */
    enum admin_req_type type = 0;
    enum evhttp_cmd_type want = EVHTTP_REQ_POST;
    if (!verb) {
        type = call->method == EVHTTP_REQ_PUT ? ADMIN_REQ_MEMBERS_SET : 0;
        want = type ? EVHTTP_REQ_PUT : EVHTTP_REQ_GET;
    } else if (!strcmp(verb, "add")) {
        type = ADMIN_REQ_MEMBER_ADD;
    } else if (!strcmp(verb, "remove")) {
        type = ADMIN_REQ_MEMBER_REMOVE;
    } else {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != want) {
        admin_reply_error(call, 405, NULL, verb ? "use POST" : "use GET or PUT");
        return;
    }
    struct admin_req req = {0};
    if (type && admin_read_body(call, type, &req) < 0)
        return;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        admin_req_clear(&req);
        return;
    }
    if (admin_authorize(call, state, txn, DIR_KIND_GROUP, name,
                        type ? DIR_RIGHT_WRITE : DIR_RIGHT_READ, true) != 1) {
        mdb_txn_abort(txn);
        admin_req_clear(&req);
        return;
    }
    struct member_list m = {0};
    /* Adding or removing one member changes the membership read now: the commit names the
     * group's version, so a concurrent change is refused (409) rather than lost. */
    uint64_t version = DIR_VERSION_ANY;
    struct dir_object group = {0};
    int ret = dir_object_get(state, txn, DIR_KIND_GROUP, name, &group);
    if (ret == 0 && type != ADMIN_REQ_MEMBERS_SET)
        version = group.version;
    dir_object_clear(&group);
    if (ret == 0)
        ret = type == ADMIN_REQ_MEMBERS_SET ? 0 : members_read(state, txn, name, &m);
    if (ret < 0) {
        mdb_txn_abort(txn);
        members_clear(&m);
        admin_req_clear(&req);
        admin_reply_storage_error(call, ret, name);
        return;
    }
    if (!type) {
        mdb_txn_abort(txn);
        admin_reply_json(call, 200, json_pack("{s:o}", "members", members_json(&m)));
        members_clear(&m);
        return;
    }
    if (type == ADMIN_REQ_MEMBERS_SET) {
        for (size_t i = 0; i < req.n_members; i++)
            members_push(&m, principal_kind(req.members[i].kind), req.members[i].name);
    } else {
        struct dir_principal p = {principal_kind(req.principal.kind), req.principal.name};
        size_t keep = 0;
        for (size_t i = 0; i < m.n; i++) {
            if (m.v[i].kind == p.kind && strcmp(m.v[i].name, p.name) == 0)
                free((char *)m.v[i].name);
            else
                m.v[keep++] = m.v[i];
        }
        m.n = keep;
        if (type == ADMIN_REQ_MEMBER_ADD)
            members_push(&m, p.kind, p.name);
    }
    int exist = check_exist(call, state, txn, m.v, m.n);
    mdb_txn_abort(txn);
    admin_req_clear(&req);
    if (exist == 1) {
        call->kind = DIR_KIND_GROUP;
        snprintf(call->name, sizeof(call->name), "%s", name);
        call->on_commit = reply_members_after;
        struct dir_op op = {.type = TDM_REC_DIR_GROUP_MEMBERS,
                            .kind = DIR_KIND_GROUP,
                            .name = name,
                            .expected_version = version,
                            .members = m.v,
                            .n_members = m.n};
        admin_commit(call, &op);
    }
    members_clear(&m);
}

void
admin_objects_serve(struct admin_call *call)
{
    /* segs: v1 objects <kind> [<name> [acl|password|members [<verb>]]] */
    if (call->n_segs < 3 || call->n_segs > 6) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    enum dir_kind kind = dir_kind_parse(call->segs[2]);
    if (!kind) {
        admin_reply_error(call, 404, NULL,
                          "no such kind \"%s\" (site network server cluster cms database copy "
                          "user group address-list)",
                          call->segs[2]);
        return;
    }
    if (call->n_segs == 3) {
        if (call->method != EVHTTP_REQ_GET)
            admin_reply_error(call, 405, NULL, "use GET");
        else
            serve_list(call, kind);
        return;
    }
    const char *name = call->segs[3];
    if (!admin_req_name_ok(name, strlen(name))) {
        admin_reply_error(call, 400, NULL,
                          "bad name in the path: a name is 1 to %u bytes without '/' or control "
                          "characters",
                          ADMIN_REQ_NAME_MAX);
        return;
    }
    if (call->n_segs == 4) {
        switch (call->method) {
        case EVHTTP_REQ_GET:
            return serve_get(call, kind, name);
        case EVHTTP_REQ_PUT:
            return serve_put(call, kind, name);
        case EVHTTP_REQ_DELETE:
            return serve_delete(call, kind, name);
        default:
            admin_reply_error(call, 405, NULL, "use GET, PUT or DELETE");
            return;
        }
    }
    const char *sub = call->segs[4];
    const char *verb = call->n_segs == 6 ? call->segs[5] : NULL;
    if (!strcmp(sub, "acl"))
        return serve_acl(call, kind, name, verb);
    if (!strcmp(sub, "password") && !verb)
        return serve_password(call, kind, name);
    if (!strcmp(sub, "members") && kind == DIR_KIND_GROUP)
        return serve_members(call, name, verb);
    admin_reply_error(call, 404, NULL, "no such path");
}

void
admin_whoami_serve(struct admin_call *call)
{
    char who[DIR_NAME_MAX + 16];
    admin_who_text(call, who, sizeof(who));
    bool admin = call->who == ADMIN_WHO_LOCAL;
    if (!admin && !(call->srv->cfg->roles & TDM_ROLE_DIRECTORY)) {
        /* A login the directory servers checked: who it is is known here, group membership
         * is not (it lives on the directory servers). */
        admin_reply_json(call, 200, json_pack("{s:s,s:n}", "principal", who, "admin"));
        return;
    }
    if (!admin) {
        void *state;
        MDB_txn *txn;
        if (admin_dir_begin(call, &state, &txn) < 0)
            return;
        int ret = admin_is_admin(call, state, txn, &admin);
        mdb_txn_abort(txn);
        if (ret < 0) {
            admin_reply_storage_error(call, ret, "group/admins");
            return;
        }
    }
    admin_reply_json(call, 200, json_pack("{s:s,s:b}", "principal", who, "admin", admin));
}

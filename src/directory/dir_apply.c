/*
 * The directory as a store record handler: opening its sub-databases, checking records at
 * commit, applying them in the store's write transaction, and the digest verify compares.
 *
 * Apply is deterministic (the same records in the same order give byte-identical tables on
 * every copy): it reads nothing but the payload and the database, and every refusal is decided
 * before the first write, so a refused record leaves the transaction exactly as it found it.
 *
 * Tables (dir_int.h): dir_objects holds each object's value; dir_addresses maps every user
 * address and alias, ASCII lower-cased, to its user (unique across users, kept in the same
 * transaction as the object); dir_members and dir_member_of hold group membership both ways,
 * so "members of g" and "groups of p" are each one prefix scan.
 */
#include "directory/dir_int.h"

#include "lib/err.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int
dir__lmdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return TDM_ENOTFOUND;
    case ENOMEM:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* ---- Handler: open, close, validate ---- */

static bool
dir_handles(uint16_t type)
{
    return dir_is_dir_record(type);
}

static int
dir_validate(uint16_t type, const uint8_t *payload, size_t len, const char **error_r)
{
    struct dir_decoded dec;
    int ret = dir_op_decode(type, payload, len, &dec, error_r);
    if (ret == 0)
        dir_decoded_clear(&dec);
    return ret;
}

static int
open_one(MDB_txn *txn, const char *name, MDB_dbi *dbi_r)
{
    int rc = mdb_dbi_open(txn, name, 0, dbi_r);
    if (rc == MDB_NOTFOUND) {
        /* LMDB 0.9 cannot tell whether txn may write; trying is the only portable test. */
        rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi_r);
        if (rc == EACCES)
            return TDM_ENOTFOUND;
    }
    return rc == 0 ? 0 : dir__lmdb_err(rc);
}

static int
dir_open(MDB_txn *txn, void **state_r)
{
    struct dir_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    int ret;
    if ((ret = open_one(txn, DIR__DBI_OBJECTS, &st->objects)) == 0 &&
        (ret = open_one(txn, DIR__DBI_ADDRESSES, &st->addresses)) == 0 &&
        (ret = open_one(txn, DIR__DBI_MEMBERS, &st->members)) == 0 &&
        (ret = open_one(txn, DIR__DBI_MEMBER_OF, &st->member_of)) == 0)
        ret = open_one(txn, DIR__DBI_CHANGES, &st->changes);
    if (ret == TDM_ENOTFOUND) {
        /* Read-only, and this database never held the directory: it reads as empty. The
         * tables are created together, so one missing means all are. */
        ret = 0;
    } else if (ret == 0) {
        st->present = true;
    }
    if (ret < 0) {
        free(st);
        return ret;
    }
    *state_r = st;
    return 0;
}

static void
dir_close(void *state)
{
    free(state);
}

/* ---- Table helpers ---- */

/* Loads object (kind, name) into *o (o->acl owned; strings borrowed from txn). */
static int
obj_load(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind, const char *name,
         struct dir__obj *o)
{
    uint8_t key[DIR_NAME_MAX + 1];
    MDB_val k = {dir__obj_key(key, kind, name), key}, v;
    int rc = mdb_get(txn, st->objects, &k, &v);
    if (rc != 0) {
        memset(o, 0, sizeof(*o));
        return dir__lmdb_err(rc);
    }
    return dir__obj_decode(v.mv_data, v.mv_size, o);
}

static int
obj_store(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind, const char *name,
          const struct dir__obj *o)
{
    struct dir__wr w = {0};
    int ret = dir__obj_encode(o, &w);
    if (ret == 0) {
        uint8_t key[DIR_NAME_MAX + 1];
        MDB_val k = {dir__obj_key(key, kind, name), key}, v = {w.len, w.buf};
        ret = dir__lmdb_err(mdb_put(txn, st->objects, &k, &v, 0));
    }
    free(w.buf);
    return ret;
}

static bool
exists(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind, const char *name, int *err)
{
    uint8_t key[DIR_NAME_MAX + 1];
    MDB_val k = {dir__obj_key(key, kind, name), key}, v;
    int rc = mdb_get(txn, st->objects, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        *err = dir__lmdb_err(rc);
    return rc == 0;
}

/* Deletes every key of dbi starting with prefix; for each, calls cb with the key's rest. */
typedef int rest_cb(void *ctx, const uint8_t *rest, size_t len);
static int
prefix_delete(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen, rest_cb *cb, void *ctx)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, dbi, &c);
    if (rc != 0)
        return dir__lmdb_err(rc);
    MDB_val k = {plen, (void *)prefix}, v;
    int ret = 0;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        if (cb && (ret = cb(ctx, (const uint8_t *)k.mv_data + plen, k.mv_size - plen)) != 0)
            break;
        if ((rc = mdb_cursor_del(c, 0)) != 0)
            break;
        rc = mdb_cursor_get(c, &k, &v, MDB_GET_CURRENT);
        if (rc == EINVAL) /* deleted the last item */
            rc = MDB_NOTFOUND;
    }
    mdb_cursor_close(c);
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
        ret = dir__lmdb_err(rc);
    return ret;
}

/* "a\0b" keys: a (len an), 0x00, b (len bn). buf >= 2 * (DIR_NAME_MAX + 1) + 1. */
static size_t
pair_key(uint8_t *buf, const void *a, size_t an, const void *b, size_t bn)
{
    memcpy(buf, a, an);
    buf[an] = 0;
    memcpy(buf + an + 1, b, bn);
    return an + 1 + bn;
}

/* ---- Addresses ---- */

struct addr_ctx {
    const struct dir_state *st;
    MDB_txn *txn;
    const char *user;
    int op; /* 0 check free, 1 delete, 2 insert */
    int conflict;
};

static int
addr_cb(void *ctx, const char *address)
{
    struct addr_ctx *a = ctx;
    char low[DIR_NAME_MAX + 1];
    if (strlen(address) > DIR_NAME_MAX)
        return TDM_ECORRUPT;
    dir__lower(low, address);
    MDB_val k = {strlen(low), low}, v = {strlen(a->user), (void *)a->user};
    int rc;
    if (a->op == 0) {
        rc = mdb_get(a->txn, a->st->addresses, &k, &v);
        if (rc == 0 && (v.mv_size != strlen(a->user) || memcmp(v.mv_data, a->user, v.mv_size)))
            a->conflict = TDM_EEXIST;
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : dir__lmdb_err(rc);
    }
    rc = a->op == 1 ? mdb_del(a->txn, a->st->addresses, &k, NULL)
                    : mdb_put(a->txn, a->st->addresses, &k, &v, 0);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : dir__lmdb_err(rc);
}

static int
addresses(const struct dir_state *st, MDB_txn *txn, const char *user, const char *attrs, int op,
          int *conflict_r)
{
    struct addr_ctx a = {st, txn, user, op, 0};
    int ret = dir__user_addresses(attrs, addr_cb, &a);
    if (conflict_r)
        *conflict_r = a.conflict;
    return ret;
}

/* ---- Membership ---- */

static uint8_t *
principal_key(uint8_t *buf, size_t *len_r, const struct dir_principal *p)
{
    *len_r = dir__obj_key(buf, p->kind, p->name);
    return buf;
}

static int
member_put(const struct dir_state *st, MDB_txn *txn, const char *group,
           const struct dir_principal *m)
{
    uint8_t pk[DIR_NAME_MAX + 1], key[2 * DIR_NAME_MAX + 3];
    size_t pn;
    principal_key(pk, &pn, m);
    MDB_val e = {0, ""};
    MDB_val k = {pair_key(key, group, strlen(group), pk, pn), key};
    int rc = mdb_put(txn, st->members, &k, &e, 0);
    if (rc == 0) {
        k.mv_size = pair_key(key, pk, pn, group, strlen(group));
        rc = mdb_put(txn, st->member_of, &k, &e, 0);
    }
    return dir__lmdb_err(rc);
}

struct unlink_ctx {
    MDB_txn *txn;
    MDB_dbi other;
    const uint8_t *self;
    size_t self_len;
};

/* For each deleted forward key, deletes the matching reverse key. */
static int
unlink_cb(void *ctx, const uint8_t *rest, size_t len)
{
    struct unlink_ctx *u = ctx;
    uint8_t key[2 * DIR_NAME_MAX + 3];
    if (len > DIR_NAME_MAX + 1)
        return TDM_ECORRUPT;
    MDB_val k = {pair_key(key, rest, len, u->self, u->self_len), key};
    int rc = mdb_del(u->txn, u->other, &k, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : dir__lmdb_err(rc);
}

/* Removes every member of group (both directions). */
static int
members_clear(const struct dir_state *st, MDB_txn *txn, const char *group)
{
    uint8_t prefix[DIR_NAME_MAX + 1];
    size_t n = strlen(group);
    memcpy(prefix, group, n);
    prefix[n] = 0;
    struct unlink_ctx u = {txn, st->member_of, (const uint8_t *)group, n};
    return prefix_delete(txn, st->members, prefix, n + 1, unlink_cb, &u);
}

/* Removes p from every group it belongs to (both directions). */
static int
memberships_clear(const struct dir_state *st, MDB_txn *txn, const struct dir_principal *p)
{
    uint8_t prefix[DIR_NAME_MAX + 2];
    size_t n;
    principal_key(prefix, &n, p);
    prefix[n] = 0;
    struct unlink_ctx u = {txn, st->members, prefix, n};
    return prefix_delete(txn, st->member_of, prefix, n + 1, unlink_cb, &u);
}

/* ---- ACL scrub ---- */

/*
 * Removes every ACL entry naming p, on every object. A grant to a deleted principal would
 * otherwise pass silently to whoever is created later under the same name. One pass over all
 * objects per principal deleted: deletes are rare, and the directory is small.
 */
static int
acl_scrub(const struct dir_state *st, MDB_txn *txn, const struct dir_principal *p)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->objects, &c);
    if (rc != 0)
        return dir__lmdb_err(rc);
    int ret = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && ret == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct dir__obj o;
        if ((ret = dir__obj_decode(v.mv_data, v.mv_size, &o)) < 0)
            break;
        size_t kept = 0;
        for (size_t i = 0; i < o.n_acl; i++)
            if (dir__principal_cmp(&o.acl[i].who, p) != 0)
                o.acl[kept++] = o.acl[i];
        if (kept != o.n_acl) {
            o.n_acl = kept;
            o.version++;
            /* Encoded into our own buffer before the put: o's strings point into the old
             * value, which the put may overwrite. */
            struct dir__wr w = {0};
            ret = dir__obj_encode(&o, &w);
            if (ret == 0) {
                MDB_val nv = {w.len, w.buf};
                ret = dir__lmdb_err(mdb_cursor_put(c, &k, &nv, MDB_CURRENT));
            }
            free(w.buf);
        }
        free(o.acl);
    }
    mdb_cursor_close(c);
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
        ret = dir__lmdb_err(rc);
    return ret;
}

/* ---- Apply ---- */

static bool
builtin_group(enum dir_kind kind, const char *name)
{
    return kind == DIR_KIND_GROUP &&
           (strcmp(name, DIR_GROUP_ADMINS) == 0 || strcmp(name, DIR_GROUP_SERVERS) == 0);
}

/* Expected-version check shared by PUT and DELETE; 0 when the change may go ahead. */
static int
version_check(uint64_t expected, bool found, uint64_t current)
{
    if (expected == DIR_VERSION_ANY)
        return 0;
    if (expected == 0)
        return found ? TDM_EEXIST : 0;
    if (!found)
        return TDM_ENOTFOUND;
    return expected == current ? 0 : TDM_ECONFLICT;
}

static int
apply_bootstrap(const struct dir_state *st, MDB_txn *txn, int *status)
{
    int err = 0;
    if (exists(st, txn, DIR_KIND_GROUP, DIR_GROUP_ADMINS, &err) ||
        exists(st, txn, DIR_KIND_GROUP, DIR_GROUP_SERVERS, &err)) {
        *status = TDM_EEXIST;
        return err;
    }
    if (err)
        return err;
    struct dir__obj o = {.version = 1, .attrs = "{}", .password_hash = ""};
    int ret = obj_store(st, txn, DIR_KIND_GROUP, DIR_GROUP_ADMINS, &o);
    return ret ? ret : obj_store(st, txn, DIR_KIND_GROUP, DIR_GROUP_SERVERS, &o);
}

static int
apply_put(const struct dir_state *st, MDB_txn *txn, const struct dir_op *op, int *status)
{
    struct dir__obj o;
    int ret = obj_load(st, txn, op->kind, op->name, &o);
    bool found = ret == 0;
    if (ret < 0 && ret != TDM_ENOTFOUND)
        return ret;
    ret = 0;
    if ((*status = version_check(op->expected_version, found, o.version)) != 0)
        goto out;
    if (op->kind == DIR_KIND_USER) {
        /* Every refusal before the first write: check the new addresses are free first. */
        int conflict = 0;
        if ((ret = addresses(st, txn, op->name, op->attrs, 0, &conflict)) < 0)
            goto out;
        if ((*status = conflict) != 0)
            goto out;
        if (found && (ret = addresses(st, txn, op->name, o.attrs, 1, NULL)) < 0)
            goto out;
        if ((ret = addresses(st, txn, op->name, op->attrs, 2, NULL)) < 0)
            goto out;
    }
    struct dir__obj n = {
        .version = found ? o.version + 1 : 1,
        .attrs = op->attrs,
        .password_hash = found ? o.password_hash : "",
        .n_acl = found ? o.n_acl : 0,
        .acl = found ? o.acl : NULL,
    };
    ret = obj_store(st, txn, op->kind, op->name, &n);
out:
    free(o.acl);
    return ret;
}

static int
apply_delete(const struct dir_state *st, MDB_txn *txn, const struct dir_op *op, int *status)
{
    struct dir__obj o;
    int ret = obj_load(st, txn, op->kind, op->name, &o);
    if (ret == TDM_ENOTFOUND) {
        *status = ret;
        return 0;
    }
    if (ret < 0)
        return ret;
    if (op->expected_version == 0)
        *status = TDM_EEXIST;
    else
        *status = version_check(op->expected_version, true, o.version);
    if (*status == 0 && builtin_group(op->kind, op->name))
        *status = TDM_EINVAL;
    if (*status != 0)
        goto out;
    struct dir_principal self = {op->kind, op->name};
    if (op->kind == DIR_KIND_USER)
        ret = addresses(st, txn, op->name, o.attrs, 1, NULL);
    if (ret == 0 && op->kind == DIR_KIND_GROUP)
        ret = members_clear(st, txn, op->name);
    if (ret == 0 && (op->kind == DIR_KIND_USER || op->kind == DIR_KIND_SERVER))
        ret = memberships_clear(st, txn, &self);
    if (ret == 0 && dir__principal_kind_ok(op->kind))
        ret = acl_scrub(st, txn, &self);
    if (ret == 0) {
        uint8_t key[DIR_NAME_MAX + 1];
        MDB_val k = {dir__obj_key(key, op->kind, op->name), key};
        ret = dir__lmdb_err(mdb_del(txn, st->objects, &k, NULL));
    }
out:
    free(o.acl);
    return ret;
}

/* ACL_SET, PASSWORD_SET and GROUP_MEMBERS: change one existing object, version + 1. */
static int
apply_change(const struct dir_state *st, MDB_txn *txn, const struct dir_op *op, int *status)
{
    enum dir_kind kind = op->type == TDM_REC_DIR_ACL_SET        ? op->kind
                         : op->type == TDM_REC_DIR_PASSWORD_SET ? op->kind
                                                                : DIR_KIND_GROUP;
    struct dir__obj o;
    int ret = obj_load(st, txn, kind, op->name, &o);
    if (ret == TDM_ENOTFOUND) {
        *status = ret;
        return 0;
    }
    if (ret < 0)
        return ret;
    /* A read-modify-write (grant, revoke, add a member) names the version it read, so two of
     * them racing cannot lose one another's change. */
    if (op->type != TDM_REC_DIR_PASSWORD_SET &&
        (*status = version_check(op->expected_version, true, o.version)) != 0)
        goto out;
    /* Principals and members must exist: a grant to a name nobody holds yet would silently
     * pass to whoever is created with it later. */
    for (size_t i = 0; i < op->n_acl && ret == 0 && *status == 0; i++)
        if (!exists(st, txn, op->acl[i].who.kind, op->acl[i].who.name, &ret))
            *status = TDM_ENOTFOUND;
    for (size_t i = 0; i < op->n_members && ret == 0 && *status == 0; i++)
        if (!exists(st, txn, op->members[i].kind, op->members[i].name, &ret))
            *status = TDM_ENOTFOUND;
    if (ret < 0 || *status != 0)
        goto out;
    struct dir__obj n = o;
    n.version = o.version + 1;
    if (op->type == TDM_REC_DIR_ACL_SET) {
        n.acl = (struct dir_acl_entry *)op->acl;
        n.n_acl = op->n_acl;
    } else if (op->type == TDM_REC_DIR_PASSWORD_SET) {
        n.password_hash = op->password_hash;
    } else {
        ret = members_clear(st, txn, op->name);
        for (size_t i = 0; i < op->n_members && ret == 0; i++)
            ret = member_put(st, txn, op->name, &op->members[i]);
    }
    if (ret == 0)
        ret = obj_store(st, txn, kind, op->name, &n);
out:
    free(o.acl);
    return ret;
}

/* The change journal names the one object each record changed. A deleted principal also
 * leaves groups and ACLs; its own entry stands for those (docs/formats/directory.md says how a
 * cache reads it), so one record costs one entry however many objects it touched. */
static int
journal(const struct dir_state *st, MDB_txn *txn, const struct dir_op *op)
{
    switch (op->type) {
    case TDM_REC_DIR_BOOTSTRAP: {
        int ret = dir__change_append(st, txn, DIR_KIND_GROUP, DIR_GROUP_ADMINS);
        return ret ? ret : dir__change_append(st, txn, DIR_KIND_GROUP, DIR_GROUP_SERVERS);
    }
    case TDM_REC_DIR_GROUP_MEMBERS:
        return dir__change_append(st, txn, DIR_KIND_GROUP, op->name);
    default: /* PUT, DELETE, ACL_SET, PASSWORD_SET */
        return dir__change_append(st, txn, op->kind, op->name);
    }
}

static int
dir_apply(void *state, MDB_txn *txn, uint16_t type, const uint8_t *payload, size_t len,
          struct mail_result *result_r)
{
    struct dir_state *st = state;
    if (!st->present)
        return -EIO; /* opened read-only: cannot happen in a store's write transaction */
    struct dir_decoded dec;
    const char *why = NULL;
    int ret = dir_op_decode(type, payload, len, &dec, &why);
    if (ret < 0)
        return ret == -ENOMEM ? ret : TDM_ECORRUPT;
    int status = 0;
    switch (type) {
    case TDM_REC_DIR_BOOTSTRAP:
        ret = apply_bootstrap(st, txn, &status);
        break;
    case TDM_REC_DIR_PUT:
        ret = apply_put(st, txn, &dec.op, &status);
        break;
    case TDM_REC_DIR_DELETE:
        ret = apply_delete(st, txn, &dec.op, &status);
        break;
    default:
        ret = apply_change(st, txn, &dec.op, &status);
        break;
    }
    if (ret == 0 && status == 0)
        ret = journal(st, txn, &dec.op);
    dir_decoded_clear(&dec);
    result_r->status = status;
    return ret;
}

/* ---- Digest ---- */

static void
digest_u64(crypto_hash_sha256_state *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    crypto_hash_sha256_update(h, b, 8);
}

static int
dir_digest(void *state, MDB_txn *txn, uint8_t out[32])
{
    struct dir_state *st = state;
    const struct {
        const char *name;
        MDB_dbi dbi;
    } dbs[DIR__DBI_COUNT] = {
        {DIR__DBI_OBJECTS, st->objects},
        {DIR__DBI_ADDRESSES, st->addresses},
        {DIR__DBI_MEMBERS, st->members},
        {DIR__DBI_MEMBER_OF, st->member_of},
        {DIR__DBI_CHANGES, st->changes},
    };
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < DIR__DBI_COUNT; i++) {
        /* Framed by name and item count, like mail_digest(): an item cannot pass for one of
         * the next table. Absent tables hash as empty ones. */
        size_t nlen = strlen(dbs[i].name);
        digest_u64(&h, nlen);
        crypto_hash_sha256_update(&h, (const uint8_t *)dbs[i].name, nlen);
        uint64_t items = 0;
        if (st->present) {
            MDB_cursor *c;
            int rc = mdb_cursor_open(txn, dbs[i].dbi, &c);
            if (rc != 0)
                return dir__lmdb_err(rc);
            MDB_val k, v;
            for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
                 rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                digest_u64(&h, k.mv_size);
                crypto_hash_sha256_update(&h, k.mv_data, k.mv_size);
                digest_u64(&h, v.mv_size);
                crypto_hash_sha256_update(&h, v.mv_data, v.mv_size);
                items++;
            }
            mdb_cursor_close(c);
            if (rc != MDB_NOTFOUND)
                return dir__lmdb_err(rc);
        }
        digest_u64(&h, items);
    }
    crypto_hash_sha256_final(&h, out);
    return 0;
}

const struct store_record_handler dir_record_handler = {
    .handles = dir_handles,
    .validate = dir_validate,
    .open = dir_open,
    .close = dir_close,
    .apply = dir_apply,
    .digest = dir_digest,
};

/*
 * Reading the directory: objects, address resolution, membership, effective rights and
 * password checks. Everything here runs in any LMDB transaction (usually a read-only one) and
 * never writes; dir_commit() is the one way in for changes, through the store's log.
 */
#include "directory/dir_int.h"

#include "lib/err.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int
dir_commit(struct store *store, const struct dir_op *op, uint64_t *lsn_r,
           struct mail_result *result_r, const char **error_r)
{
    uint8_t *payload = NULL;
    size_t len = 0;
    int ret = dir_op_encode(op, &payload, &len, error_r);
    if (ret < 0)
        return ret;
    ret = store_commit(store, op->type, payload, len, lsn_r, result_r);
    free(payload);
    if (ret < 0)
        *error_r = tdm_strerror(ret);
    return ret;
}

int
dir_password_hash(const char *password, unsigned long long opslimit, size_t memlimit,
                  char out[DIR_PASSWORD_HASH_MAX])
{
    _Static_assert(crypto_pwhash_STRBYTES <= DIR_PASSWORD_HASH_MAX, "hash buffer too small");
    if (sodium_init() < 0)
        return -EIO;
    if (!opslimit)
        opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    if (!memlimit)
        memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    /* crypto_pwhash_str() picks the default algorithm, argon2id13 in libsodium >= 1.0.15;
     * naming it keeps the stored strings argon2id even if that default changes. */
    if (crypto_pwhash_str_alg(out, password, strlen(password), opslimit, memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -ENOMEM;
    return 0;
}

static int
obj_get(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind, const char *name,
        struct dir__obj *o)
{
    memset(o, 0, sizeof(*o));
    if (!st->present)
        return TDM_ENOTFOUND;
    if (kind < 1 || kind > DIR_KIND_MAX || !name || strlen(name) > DIR_NAME_MAX)
        return TDM_ENOTFOUND;
    uint8_t key[DIR_NAME_MAX + 1];
    MDB_val k = {dir__obj_key(key, kind, name), key}, v;
    int rc = mdb_get(txn, st->objects, &k, &v);
    if (rc != 0)
        return dir__lmdb_err(rc);
    return dir__obj_decode(v.mv_data, v.mv_size, o);
}

static void
obj_to_public(const struct dir__obj *o, enum dir_kind kind, const char *name,
              struct dir_object *out)
{
    out->kind = kind;
    out->name = name;
    out->version = o->version;
    out->attrs = o->attrs;
    out->has_password = o->password_hash && o->password_hash[0];
    out->n_acl = o->n_acl;
    out->acl = o->acl;
}

int
dir_object_get(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
               struct dir_object *obj_r)
{
    memset(obj_r, 0, sizeof(*obj_r));
    struct dir__obj o;
    int ret = obj_get(state, txn, kind, name, &o);
    if (ret < 0)
        return ret;
    obj_to_public(&o, kind, name, obj_r);
    return 0;
}

void
dir_object_clear(struct dir_object *obj)
{
    free(obj->acl);
    memset(obj, 0, sizeof(*obj));
}

int
dir_object_list(void *state, MDB_txn *txn, enum dir_kind kind, dir_object_cb *cb, void *ctx)
{
    const struct dir_state *st = state;
    if (!st->present)
        return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->objects, &c);
    if (rc != 0)
        return dir__lmdb_err(rc);
    uint8_t kb = (uint8_t)kind;
    MDB_val k = {1, &kb}, v;
    int ret = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
         rc == 0 && ret == 0 && ((const uint8_t *)k.mv_data)[0] == kb;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        char name[DIR_NAME_MAX + 1];
        if (k.mv_size < 2 || k.mv_size > DIR_NAME_MAX + 1) {
            ret = TDM_ECORRUPT;
            break;
        }
        memcpy(name, (const uint8_t *)k.mv_data + 1, k.mv_size - 1);
        name[k.mv_size - 1] = '\0';
        struct dir__obj o;
        if ((ret = dir__obj_decode(v.mv_data, v.mv_size, &o)) < 0)
            break;
        struct dir_object pub;
        obj_to_public(&o, kind, name, &pub);
        ret = cb(ctx, &pub);
        free(o.acl);
    }
    mdb_cursor_close(c);
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
        ret = dir__lmdb_err(rc);
    return ret;
}

int
dir_resolve_address(void *state, MDB_txn *txn, const char *address, const char **user_r)
{
    const struct dir_state *st = state;
    size_t n = strlen(address);
    if (!st->present || n == 0 || n > DIR_NAME_MAX)
        return TDM_ENOTFOUND;
    char low[DIR_NAME_MAX + 1];
    dir__lower(low, address);
    MDB_val k = {n, low}, v;
    int rc = mdb_get(txn, st->addresses, &k, &v);
    if (rc != 0)
        return dir__lmdb_err(rc);
    /* The value is the user's name without a NUL; the user's object key holds the same bytes
     * but neither is terminated, so hand out a thread-local copy. */
    static _Thread_local char user[DIR_NAME_MAX + 1];
    if (v.mv_size > DIR_NAME_MAX)
        return TDM_ECORRUPT;
    memcpy(user, v.mv_data, v.mv_size);
    user[v.mv_size] = '\0';
    *user_r = user;
    return 0;
}

int
dir_is_member(void *state, MDB_txn *txn, const char *group, const struct dir_principal *who,
              bool *member_r)
{
    const struct dir_state *st = state;
    *member_r = false;
    if (!st->present || strlen(group) > DIR_NAME_MAX || strlen(who->name) > DIR_NAME_MAX)
        return 0;
    uint8_t key[2 * DIR_NAME_MAX + 3];
    size_t gn = strlen(group), pn = strlen(who->name);
    memcpy(key, group, gn);
    key[gn] = 0;
    key[gn + 1] = (uint8_t)who->kind;
    memcpy(key + gn + 2, who->name, pn);
    MDB_val k = {gn + 2 + pn, key}, v;
    int rc = mdb_get(txn, st->members, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return dir__lmdb_err(rc);
    *member_r = rc == 0;
    return 0;
}

int
dir_effective_right(void *state, MDB_txn *txn, const struct dir_principal *who, enum dir_kind kind,
                    const char *name, enum dir_right *right_r)
{
    *right_r = DIR_RIGHT_NONE;
    struct dir__obj o;
    int ret = obj_get(state, txn, kind, name, &o);
    if (ret < 0)
        return ret;
    bool admin = false;
    if (who->kind != DIR_KIND_GROUP)
        ret = dir_is_member(state, txn, DIR_GROUP_ADMINS, who, &admin);
    else
        admin = strcmp(who->name, DIR_GROUP_ADMINS) == 0;
    enum dir_right best = admin ? DIR_RIGHT_FULL : DIR_RIGHT_NONE;
    for (size_t i = 0; i < o.n_acl && ret == 0 && best < DIR_RIGHT_FULL; i++) {
        const struct dir_acl_entry *e = &o.acl[i];
        if (e->right <= best)
            continue;
        bool applies = e->who.kind == who->kind && strcmp(e->who.name, who->name) == 0;
        if (!applies && e->who.kind == DIR_KIND_GROUP && who->kind != DIR_KIND_GROUP)
            ret = dir_is_member(state, txn, e->who.name, who, &applies);
        if (applies)
            best = e->right;
    }
    free(o.acl);
    if (ret == 0)
        *right_r = best;
    return ret;
}

int
dir_password_verify(void *state, MDB_txn *txn, const char *user, const char *password)
{
    return dir_secret_verify(state, txn, DIR_KIND_USER, user, password);
}

int
dir_secret_hash(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
                char out[DIR_PASSWORD_HASH_MAX])
{
    out[0] = '\0';
    if (kind != DIR_KIND_USER && kind != DIR_KIND_SERVER)
        return TDM_EINVAL;
    struct dir__obj o;
    int ret = obj_get(state, txn, kind, name, &o);
    if (ret < 0)
        return ret;
    free(o.acl);
    size_t n = strlen(o.password_hash);
    if (n == 0)
        return -EACCES;
    if (n >= DIR_PASSWORD_HASH_MAX) /* the codec never stores one this long */
        return TDM_ECORRUPT;
    memcpy(out, o.password_hash, n + 1);
    return 0;
}

int
dir_secret_verify(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
                  const char *password)
{
    char hash[DIR_PASSWORD_HASH_MAX];
    int ret = dir_secret_hash(state, txn, kind, name, hash);
    if (ret < 0)
        return ret;
    if (sodium_init() < 0)
        return -EIO;
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0 ? 0 : -EACCES;
}

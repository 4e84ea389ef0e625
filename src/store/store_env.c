/* The LMDB environment and the store's "meta" sub-database. */
#include "store/store_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <string.h>

int
store__lmdb_err(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return TDM_ENOTFOUND;
    case MDB_MAP_FULL:
        return -ENOSPC;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return TDM_ECORRUPT;
    default:
        if (rc > 0)
            return -rc; /* LMDB passes errno values through */
        return -EIO;
    }
}

int
store__env_open(const char *lmdb_dir, uint64_t map_size, bool rdonly, MDB_env **env_r,
                const char **error_r)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc != 0) {
        *error_r = store__errorf("cannot create LMDB environment: %s", mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    mdb_env_set_maxdbs(env, STORE_MAXDBS);
    mdb_env_set_mapsize(env, (size_t)map_size);
    /* MDB_NOSYNC: the log is the durability mechanism; LMDB is synced at checkpoints only.
     * MDB_NOTLS: read transactions may be handed between threads. */
    unsigned flags = MDB_NOSYNC | MDB_NOTLS;
    if (rdonly)
        flags |= MDB_RDONLY;
    rc = mdb_env_open(env, lmdb_dir, flags, 0640);
    if (rc != 0) {
        *error_r =
            store__errorf("cannot open LMDB environment in %s: %s", lmdb_dir, mdb_strerror(rc));
        mdb_env_close(env);
        return store__lmdb_err(rc);
    }
    *env_r = env;
    return 0;
}

int
store__meta_get_u64(MDB_txn *txn, MDB_dbi meta, const char *key, uint64_t *v_r)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc != 0)
        return store__lmdb_err(rc);
    if (v.mv_size != 8)
        return TDM_ECORRUPT;
    *v_r = le_get64(v.mv_data);
    return 0;
}

int
store__meta_put_u64(MDB_txn *txn, MDB_dbi meta, const char *key, uint64_t value)
{
    uint8_t buf[8];
    le_put64(buf, value);
    MDB_val k = {strlen(key), (void *)key}, v = {8, buf};
    return store__lmdb_err(mdb_put(txn, meta, &k, &v, 0));
}

bool
store_kind_valid(const char *kind)
{
    size_t n = 0;
    for (; kind[n]; n++) {
        char c = kind[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') || n >= STORE_KIND_MAX)
            return false;
    }
    return n > 0;
}

int
store__meta_get_kind(MDB_txn *txn, MDB_dbi meta, char kind[STORE_KIND_MAX + 1])
{
    MDB_val k = {strlen(STORE_META_KIND), STORE_META_KIND}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        memcpy(kind, STORE_KIND_MAIL, sizeof(STORE_KIND_MAIL));
        return 0;
    }
    if (rc != 0)
        return store__lmdb_err(rc);
    if (v.mv_size == 0 || v.mv_size > STORE_KIND_MAX)
        return TDM_ECORRUPT;
    memcpy(kind, v.mv_data, v.mv_size);
    kind[v.mv_size] = '\0';
    return strlen(kind) == v.mv_size && store_kind_valid(kind) ? 0 : TDM_ECORRUPT;
}

/*
 * Opening a database read-only for the offline tools.
 *
 * Read-only hazard: LMDB records readers in store/lock.mdb even for MDB_RDONLY, so opening it
 * needs write access to that file. When that is denied and no process has the database
 * mounted, the environment is opened with MDB_NOLOCK instead (no writer can recycle pages
 * under us then); when it is mounted, that would be unsafe and the tools refuse.
 */
#include "store/store_ro.h"

#include "lib/err.h"
#include "lib/event.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Opening a database read-only                                       */

static int
check_dir(const char *dir, struct store__ro_db *db, const char **error_r)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        int err = -errno;
        *error_r =
            store__errorf("%s: %s", dir, errno == ENOENT ? "no such directory" : strerror(errno));
        return err;
    }
    if (!S_ISDIR(st.st_mode)) {
        *error_r = store__errorf("%s: not a directory", dir);
        return -ENOTDIR;
    }
    snprintf(db->log_dir, sizeof(db->log_dir), "%s/%s", dir, STORE_LOG_DIR);
    snprintf(db->lmdb_dir, sizeof(db->lmdb_dir), "%s/%s", dir, STORE_LMDB_DIR);
    snprintf(db->lock_path, sizeof(db->lock_path), "%s/lock", dir);
    struct stat a, b;
    if (stat(db->log_dir, &a) < 0 || !S_ISDIR(a.st_mode) || stat(db->lmdb_dir, &b) < 0 ||
        !S_ISDIR(b.st_mode)) {
        *error_r = store__errorf("%s: not a tandem database: it has no log/ and store/ "
                                 "directories (check the path; `tandemctl db create` makes one)",
                                 dir);
        return TDM_EFOREIGN;
    }
    return 0;
}

/* Whether another process holds the store's exclusive lock. Never creates the lock file. */
static bool
probe_mounted(const char *lock_path)
{
    int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false; /* never mounted since created, or unreadable: nobody we can see */
    bool mounted = false;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0)
        mounted = errno == EWOULDBLOCK;
    else
        flock(fd, LOCK_UN);
    close(fd);
    return mounted;
}

static int
env_open_nolock(const char *lmdb_dir, MDB_env **env_r, const char **error_r)
{
    MDB_env *env;
    int rc = mdb_env_create(&env);
    if (rc == 0) {
        mdb_env_set_maxdbs(env, STORE_MAXDBS);
        rc = mdb_env_open(env, lmdb_dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0640);
        if (rc != 0)
            mdb_env_close(env);
    }
    if (rc != 0) {
        *error_r =
            store__errorf("cannot open LMDB environment in %s: %s", lmdb_dir, mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    *env_r = env;
    return 0;
}

void
store__ro_close(struct store__ro_db *db)
{
    if (db->txn)
        mdb_txn_abort(db->txn);
    db->txn = NULL;
    if (db->env)
        mdb_env_close(db->env);
    db->env = NULL;
}

int
store__ro_open(const char *dir, struct store__ro_db *db, const char **error_r)
{
    memset(db, 0, sizeof(*db));
    int ret = check_dir(dir, db, error_r);
    if (ret < 0)
        return ret;
    db->mounted = probe_mounted(db->lock_path);

    struct store_options defaults;
    store_options_init(&defaults);
    ret = store__env_open(db->lmdb_dir, defaults.map_size, true, &db->env, error_r);
    if (ret == -EACCES || ret == -EROFS || ret == -EPERM) {
        if (db->mounted) {
            *error_r = store__errorf("cannot open %s read-only: its lock.mdb is not writable and "
                                     "the database is mounted; run as the user tandemd runs as",
                                     db->lmdb_dir);
            return ret;
        }
        db->nolock = true;
        ret = env_open_nolock(db->lmdb_dir, &db->env, error_r);
    }
    if (ret < 0) {
        if (ret == -ENOENT) {
            *error_r = store__errorf("%s: not a tandem database: %s holds no LMDB environment", dir,
                                     db->lmdb_dir);
            ret = TDM_EFOREIGN;
        }
        return ret;
    }
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->txn);
    if (rc != 0) {
        *error_r = store__errorf("cannot read %s: %s", db->lmdb_dir, mdb_strerror(rc));
        store__ro_close(db);
        return store__lmdb_err(rc);
    }
    rc = mdb_dbi_open(db->txn, "meta", 0, &db->meta);
    MDB_val k = {strlen(STORE_META_GUID), STORE_META_GUID}, v;
    if (rc == 0)
        rc = mdb_get(db->txn, db->meta, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != TDM_LOG_GUID_LEN)) {
        *error_r = store__errorf("%s: not a tandem database: %s holds no tandem metadata", dir,
                                 db->lmdb_dir);
        store__ro_close(db);
        return TDM_EFOREIGN;
    }
    if (rc != 0) {
        *error_r = store__errorf("cannot read metadata in %s: %s", db->lmdb_dir, mdb_strerror(rc));
        store__ro_close(db);
        return store__lmdb_err(rc);
    }
    memcpy(db->guid, v.mv_data, TDM_LOG_GUID_LEN);
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_APPLIED, &db->applied) < 0 ||
        store__meta_get_u64(db->txn, db->meta, STORE_META_CLEAN, &db->clean) < 0) {
        *error_r = store__errorf("%s: metadata is incomplete (no applied LSN or clean flag); "
                                 "the database cannot be used: reseed it",
                                 db->lmdb_dir);
        store__ro_close(db);
        return TDM_ECORRUPT;
    }
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_CHECKPOINT, &db->checkpoint) < 0)
        db->checkpoint = 0;
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_EPOCH, &db->epoch) < 0)
        db->epoch = 1;
    ret = store__meta_get_kind(db->txn, db->meta, db->kind);
    if (ret < 0) {
        *error_r = store__errorf("%s: the database kind in the metadata is unreadable: %s",
                                 db->lmdb_dir, tdm_strerror(ret));
        store__ro_close(db);
        return ret;
    }
    return 0;
}

const char *
store__strip_path(const char *why, const char *path)
{
    size_t n = strlen(path);
    if (why && strncmp(why, path, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
        return why + n + 2;
    return why;
}

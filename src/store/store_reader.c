/*
 * Read-only access to a database that another process (tandemd's core) has mounted; the
 * contract is in store_reader.h.
 *
 * Sub-database handles: LMDB keeps a handle opened in a transaction only if that transaction
 * commits, so the handles (meta, mail, the handler's) are opened once in a read-only
 * transaction that is committed, and every later snapshot reuses them.
 *
 * Hazard: LMDB's lock file uses POSIX record locks, which a process loses when it closes any
 * descriptor of that file. A reader in the same process as the store that writes the
 * database (tests only; tandemd's workers are other processes) must therefore be closed
 * after the store, or the store's environment forgets it holds the lock.
 */
#include "store/store_reader.h"

#include "lib/err.h"
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct store_reader {
    MDB_env *env;
    MDB_dbi meta;
    struct mail_dbis mail;
    const struct store_record_handler *handler;
    void *hstate; /* owned: handler->open()'s state */
};

static int
check_layout(const char *dir, char *lmdb_dir, size_t size, const char **error_r)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        int err = -errno;
        *error_r =
            store__errorf("%s: %s", dir, errno == ENOENT ? "no such database" : strerror(errno));
        return err;
    }
    char log_dir[4096];
    snprintf(log_dir, sizeof(log_dir), "%s/%s", dir, STORE_LOG_DIR);
    snprintf(lmdb_dir, size, "%s/%s", dir, STORE_LMDB_DIR);
    struct stat a, b;
    if (!S_ISDIR(st.st_mode) || stat(log_dir, &a) < 0 || !S_ISDIR(a.st_mode) ||
        stat(lmdb_dir, &b) < 0 || !S_ISDIR(b.st_mode)) {
        *error_r = store__errorf("%s: not a tandem database: it has no log/ and store/ "
                                 "directories",
                                 dir);
        return TDM_EFOREIGN;
    }
    return 0;
}

/* In the first read-only transaction: the metadata, the kind against the handler, and every
 * sub-database handle. */
static int
open_handles(struct store_reader *r, const char *dir, MDB_txn *txn, const char **error_r)
{
    int rc = mdb_dbi_open(txn, "meta", 0, &r->meta);
    MDB_val k = {strlen(STORE_META_GUID), STORE_META_GUID}, v;
    if (rc == 0)
        rc = mdb_get(txn, r->meta, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != TDM_LOG_GUID_LEN)) {
        *error_r = store__errorf("%s: not a tandem database: no tandem metadata", dir);
        return TDM_EFOREIGN;
    }
    if (rc != 0) {
        *error_r = store__errorf("%s: cannot read the metadata: %s", dir, mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    char kind[STORE_KIND_MAX + 1];
    int ret = store__meta_get_kind(txn, r->meta, kind);
    if (ret < 0) {
        *error_r = store__errorf("%s: the database kind is unreadable: %s", dir, tdm_strerror(ret));
        return ret;
    }
    /* The store cannot tell which handler belongs to which kind (dir_db_kind_handler() is
     * the callers'); what it can tell is that mail needs none and every other kind one. */
    bool is_mail = strcmp(kind, STORE_KIND_MAIL) == 0;
    if (is_mail != (r->handler == NULL)) {
        *error_r = store__errorf("%s: a database of kind '%s' %s", dir, kind,
                                 is_mail ? "is read without a record handler"
                                         : "needs its kind's record handler to be read");
        return TDM_EINVAL;
    }
    ret = mail_dbis_open(txn, &r->mail);
    if (ret < 0) {
        *error_r =
            store__errorf("%s: cannot open the mail sub-databases: %s", dir, tdm_strerror(ret));
        return ret;
    }
    if (r->handler) {
        ret = r->handler->open(txn, &r->hstate);
        if (ret < 0) {
            *error_r = store__errorf("%s: the '%s' record handler cannot read it: %s", dir, kind,
                                     tdm_strerror(ret));
            return ret;
        }
    }
    return 0;
}

int
store_reader_open(const char *dir, const struct store_record_handler *handler,
                  struct store_reader **reader_r, const char **error_r)
{
    char lmdb_dir[4096];
    int ret = check_layout(dir, lmdb_dir, sizeof(lmdb_dir), error_r);
    if (ret < 0)
        return ret;
    struct store_reader *r = calloc(1, sizeof(*r));
    if (!r) {
        *error_r = "out of memory";
        return -ENOMEM;
    }
    r->handler = handler;
    struct store_options defaults;
    store_options_init(&defaults);
    ret = store__env_open(lmdb_dir, defaults.map_size, true, &r->env, error_r);
    if (ret < 0) {
        free(r);
        return ret;
    }
    MDB_txn *txn;
    int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        *error_r = store__errorf("%s: cannot read: %s", dir, mdb_strerror(rc));
        ret = store__lmdb_err(rc);
    } else {
        ret = open_handles(r, dir, txn, error_r);
        if (ret < 0) {
            mdb_txn_abort(txn);
        } else if ((rc = mdb_txn_commit(txn)) != 0) {
            *error_r = store__errorf("%s: cannot read: %s", dir, mdb_strerror(rc));
            ret = store__lmdb_err(rc);
        }
    }
    if (ret < 0) {
        store_reader_free(&r);
        return ret;
    }
    *reader_r = r;
    return 0;
}

void
store_reader_free(struct store_reader **reader)
{
    struct store_reader *r = *reader;
    if (!r)
        return;
    if (r->handler && r->hstate)
        r->handler->close(r->hstate);
    mdb_env_close(r->env);
    free(r);
    *reader = NULL;
}

int
store_reader_begin(struct store_reader *reader, MDB_txn **txn_r)
{
    int rc = mdb_txn_begin(reader->env, NULL, MDB_RDONLY, txn_r);
    if (rc == MDB_MAP_RESIZED) {
        /* The writer grew the map past ours: adopt its size and try again. */
        rc = mdb_env_set_mapsize(reader->env, 0);
        if (rc == 0)
            rc = mdb_txn_begin(reader->env, NULL, MDB_RDONLY, txn_r);
    }
    if (rc == MDB_READERS_FULL)
        return TDM_ELIMIT;
    return rc == 0 ? 0 : store__lmdb_err(rc);
}

const struct mail_dbis *
store_reader_mail_dbis(const struct store_reader *reader)
{
    return &reader->mail;
}

void *
store_reader_handler_state(const struct store_reader *reader)
{
    return reader->hstate;
}

int
store_reader_applied_lsn(struct store_reader *reader, MDB_txn *txn, uint64_t *lsn_r)
{
    int ret = store__meta_get_u64(txn, reader->meta, STORE_META_APPLIED, lsn_r);
    if (ret == TDM_ENOTFOUND) {
        *lsn_r = 0;
        return 0;
    }
    return ret;
}

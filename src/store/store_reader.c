/*
 * Read-only access to a database that another process (tandemd's core) has mounted; the
 * contract is in store_reader.h.
 *
 * Sub-database handles: LMDB keeps a handle opened in a transaction only if that transaction
 * commits, so the handles (meta, mail, the handler's) are opened in a read-only transaction
 * that is committed, and later snapshots reuse them.
 *
 * Tables that appear later: a handler looks for its tables in open() and, in a read-only
 * transaction, reads as empty when they are absent (a database created but not yet mounted:
 * the core's first start of a directory server). Were that state kept, the reader would read
 * empty for its whole life. So each snapshot counts the named sub-databases (the entries of
 * LMDB's main database); when the count changed since the handles were opened, they are opened
 * again and the handler gets a fresh state. The old state is kept until store_reader_free(),
 * so a pointer a caller still holds never dangles.
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
    MDB_dbi main;   /* LMDB's main database: one entry per named sub-database */
    size_t n_named; /* its entries when the handles were last opened */
    struct mail_dbis mail;
    const struct store_record_handler *handler;
    void *hstate;   /* owned: handler->open()'s state */
    void **retired; /* owned: earlier states, freed with the reader */
    size_t n_retired;
};

/* The sub-database handles and the handler's state, in read-only txn (committed by the
 * caller so the handles stay). On failure nothing changed. */
static int
open_tables(struct store_reader *r, MDB_txn *txn)
{
    MDB_stat st;
    int rc = mdb_stat(txn, r->main, &st);
    if (rc != 0)
        return store__lmdb_err(rc);
    struct mail_dbis mail;
    int ret = mail_dbis_open(txn, &mail);
    if (ret < 0)
        return ret;
    void *hstate = NULL;
    if (r->handler && (ret = r->handler->open(txn, &hstate)) < 0)
        return ret;
    if (r->hstate) {
        void **grown = realloc(r->retired, (r->n_retired + 1) * sizeof(*grown));
        if (!grown) {
            r->handler->close(hstate);
            return -ENOMEM;
        }
        r->retired = grown;
        r->retired[r->n_retired++] = r->hstate;
    }
    r->hstate = hstate;
    r->mail = mail;
    r->n_named = st.ms_entries;
    return 0;
}

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
    rc = mdb_dbi_open(txn, NULL, 0, &r->main);
    if (rc != 0) {
        *error_r = store__errorf("%s: cannot read: %s", dir, mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    ret = open_tables(r, txn);
    if (ret < 0) {
        *error_r = store__errorf("%s: cannot open its sub-databases%s%s: %s", dir,
                                 r->handler ? " with the handler of kind " : "",
                                 r->handler ? kind : "", tdm_strerror(ret));
        return ret;
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
    for (size_t i = 0; i < r->n_retired; i++)
        r->handler->close(r->retired[i]);
    free(r->retired);
    mdb_env_close(r->env);
    free(r);
    *reader = NULL;
}

static int
txn_begin(struct store_reader *reader, MDB_txn **txn_r)
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

int
store_reader_begin(struct store_reader *reader, MDB_txn **txn_r)
{
    int ret = txn_begin(reader, txn_r);
    if (ret < 0)
        return ret;
    MDB_stat st;
    int rc = mdb_stat(*txn_r, reader->main, &st);
    if (rc != 0) {
        mdb_txn_abort(*txn_r);
        return store__lmdb_err(rc);
    }
    if (st.ms_entries == reader->n_named)
        return 0;
    /* Sub-databases were created since the handles were opened (see the top of this file). */
    mdb_txn_abort(*txn_r);
    MDB_txn *txn;
    if ((ret = txn_begin(reader, &txn)) < 0)
        return ret;
    ret = open_tables(reader, txn);
    if (ret < 0) {
        mdb_txn_abort(txn);
        return ret;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        return store__lmdb_err(rc);
    return txn_begin(reader, txn_r);
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

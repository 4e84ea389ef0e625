/*
 * Offline tools: inspect (a read-only summary), verify (a read-only full check, with a replay
 * of the whole log into a scratch LMDB compared against the database) and recover (mount and
 * dismount, reporting what recovery did).
 *
 * Inspect and verify judge the log exactly as recovery (store_mount.c) does, so that what they
 * call an error is what would stop the database from mounting, and what they call a warning
 * (a torn tail of the current generation) is what recovery would cut.
 *
 * Read-only hazard: LMDB records readers in store/lock.mdb even for MDB_RDONLY, so opening it
 * needs write access to that file. When that is denied and no process has the database
 * mounted, the environment is opened with MDB_NOLOCK instead (no writer can recycle pages
 * under us then); when it is mounted, that would be unsafe and the tools refuse.
 */
#include "store/store_inspect.h"
#include "store/store_int.h"

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

struct ro_db {
    char log_dir[4096], lmdb_dir[4096], lock_path[4096];
    bool mounted, nolock;
    MDB_env *env;
    MDB_txn *txn; /* read snapshot, held for the whole inspection */
    MDB_dbi meta;
    uint8_t guid[TDM_LOG_GUID_LEN];
    uint64_t applied, checkpoint, clean, epoch;
};

static int
check_dir(const char *dir, struct ro_db *db, const char **error_r)
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

static void
ro_close(struct ro_db *db)
{
    if (db->txn)
        mdb_txn_abort(db->txn);
    db->txn = NULL;
    if (db->env)
        mdb_env_close(db->env);
    db->env = NULL;
}

static int
ro_open(const char *dir, struct ro_db *db, const char **error_r)
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
        ro_close(db);
        return store__lmdb_err(rc);
    }
    rc = mdb_dbi_open(db->txn, "meta", 0, &db->meta);
    MDB_val k = {strlen(STORE_META_GUID), STORE_META_GUID}, v;
    if (rc == 0)
        rc = mdb_get(db->txn, db->meta, &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size != TDM_LOG_GUID_LEN)) {
        *error_r = store__errorf("%s: not a tandem database: %s holds no tandem metadata", dir,
                                 db->lmdb_dir);
        ro_close(db);
        return TDM_EFOREIGN;
    }
    if (rc != 0) {
        *error_r = store__errorf("cannot read metadata in %s: %s", db->lmdb_dir, mdb_strerror(rc));
        ro_close(db);
        return store__lmdb_err(rc);
    }
    memcpy(db->guid, v.mv_data, TDM_LOG_GUID_LEN);
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_APPLIED, &db->applied) < 0 ||
        store__meta_get_u64(db->txn, db->meta, STORE_META_CLEAN, &db->clean) < 0) {
        *error_r = store__errorf("%s: metadata is incomplete (no applied LSN or clean flag); "
                                 "the database cannot be used: reseed it",
                                 db->lmdb_dir);
        ro_close(db);
        return TDM_ECORRUPT;
    }
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_CHECKPOINT, &db->checkpoint) < 0)
        db->checkpoint = 0;
    if (store__meta_get_u64(db->txn, db->meta, STORE_META_EPOCH, &db->epoch) < 0)
        db->epoch = 1;
    return 0;
}

static uint64_t
file_size_or_zero(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t
dir_bytes(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* why from store__gen_scan() starts with the path; a problem already carries the file. */
static const char *
strip_path(const char *why, const char *path)
{
    size_t n = strlen(path);
    if (why && strncmp(why, path, n) == 0 && why[n] == ':' && why[n + 1] == ' ')
        return why + n + 2;
    return why;
}

static void
gen_info_fill(struct store_gen_info *gi, uint64_t gen, const struct gen_scan *sc)
{
    memset(gi, 0, sizeof(*gi));
    gi->generation = gen;
    gi->first_lsn = sc->hdr.first_lsn;
    gi->last_lsn = sc->last_lsn;
    gi->records = sc->records;
    gi->size = sc->file_size;
    gi->epoch = sc->hdr.epoch;
    gi->created_us = sc->hdr.created_us;
    gi->closed = sc->end == GEN_SCAN_END_RECORD;
    if (sc->end == GEN_SCAN_INVALID) {
        snprintf(gi->problem, sizeof(gi->problem), "%s", sc->bad_reason);
        gi->problem_offset = sc->bad_offset;
    }
}

/* ------------------------------------------------------------------ */
/* Inspect                                                            */

static int
count_mailbox_cb(void *ctx, const char *mailbox, const struct mail_mailbox_info *info)
{
    (void)mailbox;
    (void)info;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int
table_counts(struct ro_db *db, struct store_inspection *r, const char **error_r)
{
    struct mail_dbis dbis;
    int ret = mail_dbis_open(db->txn, &dbis);
    if (ret == TDM_ENOTFOUND)
        return 0; /* never mounted with the mail model: every table is empty */
    if (ret == 0)
        ret = mail_mailbox_list(&dbis, db->txn, count_mailbox_cb, &r->mailboxes);
    MDB_stat st;
    if (ret == 0)
        ret = store__lmdb_err(mdb_stat(db->txn, dbis.folders, &st));
    if (ret == 0) {
        r->folders = st.ms_entries;
        ret = store__lmdb_err(mdb_stat(db->txn, dbis.messages, &st));
    }
    if (ret == 0) {
        r->messages = st.ms_entries;
        ret = store__lmdb_err(mdb_stat(db->txn, dbis.bodies, &st));
    }
    if (ret == 0)
        r->bodies = st.ms_entries;
    if (ret < 0)
        *error_r =
            store__errorf("cannot read the mail tables in %s: %s", db->lmdb_dir, tdm_strerror(ret));
    return ret;
}

void
store_inspection_clear(struct store_inspection *r)
{
    free(r->gens);
    memset(r, 0, sizeof(*r));
}

int
store_inspect(const char *dir, struct store_inspection *r, const char **error_r)
{
    memset(r, 0, sizeof(*r));
    *error_r = NULL;
    struct ro_db db;
    int ret = ro_open(dir, &db, error_r);
    if (ret < 0)
        return ret;
    r->mounted = db.mounted;
    r->lmdb_nolock = db.nolock;
    for (size_t i = 0; i < TDM_LOG_GUID_LEN; i++)
        snprintf(r->guid_hex + 2 * i, 3, "%02x", db.guid[i]);
    r->epoch = db.epoch;
    r->clean = db.clean != 0;
    r->applied_lsn = db.applied;
    r->checkpoint_lsn = db.checkpoint;
    char path[sizeof(db.lmdb_dir) + 16];
    snprintf(path, sizeof(path), "%s/data.mdb", db.lmdb_dir);
    r->lmdb_bytes = file_size_or_zero(path);
    r->log_bytes = dir_bytes(db.log_dir);

    uint64_t *gens = NULL;
    size_t n = 0;
    ret = store__gen_list(db.log_dir, &gens, &n);
    if (ret < 0) {
        *error_r = store__errorf("cannot list %s: %s", db.log_dir, strerror(-ret));
        goto out;
    }
    r->gens = calloc(n ? n : 1, sizeof(*r->gens));
    if (!r->gens) {
        ret = -ENOMEM;
        goto out;
    }
    r->n_gens = n;
    struct log_top top = {.n_log = n};
    ret = store__log_top(&io_ops_posix, db.log_dir, gens, n, &top);
    if (ret < 0) {
        *error_r = store__errorf("cannot read %s: %s", db.log_dir, tdm_strerror(ret));
        goto out;
    }
    r->next_blank_gen = top.prealloc_upto;
    for (size_t i = 0; i < n; i++) {
        struct gen_scan sc;
        const char *why = NULL;
        store__gen_path(path, sizeof(path), db.log_dir, gens[i]);
        int sret = store__gen_scan(&io_ops_posix, path, NULL, NULL, &sc, &why);
        struct store_gen_info *gi = &r->gens[i];
        gen_info_fill(gi, gens[i], &sc);
        if (sret == -ENOMEM) {
            ret = sret;
            goto out;
        }
        if (i >= top.n_log) {
            gi->blank = true;
            gi->first_lsn = gi->last_lsn = 0;
        } else if (sret < 0) {
            /* Not fatal here: inspect reports, verify judges. */
            snprintf(gi->problem, sizeof(gi->problem), "%s", strip_path(why, path));
            gi->problem_offset = 0;
        } else if (sc.blank_header) {
            snprintf(gi->problem, sizeof(gi->problem), "generation header was never written");
        }
        r->gen_bytes += sc.file_size;
    }
    if (n > 0) {
        r->gen_low = gens[0];
        r->gen_high = gens[n - 1];
        r->gen_count = n;
        size_t cur = top.n_log - 1;
        r->current_gen = gens[cur];
        r->current_closed = r->gens[cur].closed;
        if (!r->clean) {
            /* Recovery must read from the record after the last checkpoint: LMDB may have
             * lost everything applied since, if the machine (not just the process) died. */
            uint64_t from = (db.checkpoint < db.applied ? db.checkpoint : db.applied) + 1;
            r->required_low = r->current_gen;
            for (size_t i = 0; i <= cur; i++)
                if (r->gens[i].last_lsn >= from) {
                    r->required_low = gens[i];
                    break;
                }
            r->required_high = r->current_gen;
        }
    }
    ret = table_counts(&db, r, error_r);
out:
    free(gens);
    ro_close(&db);
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot inspect %s: %s", dir, tdm_strerror(ret));
        store_inspection_clear(r);
    }
    return ret;
}

/* ------------------------------------------------------------------ */
/* Verify                                                             */

void
store_verify_report_clear(struct store_verify_report *r)
{
    for (size_t i = 0; i < r->n_problems; i++) {
        free(r->problems[i].file);
        free(r->problems[i].reason);
    }
    free(r->problems);
    memset(r, 0, sizeof(*r));
}

static int problem_add(struct store_verify_report *r, enum store_problem_severity sev,
                       const char *file, bool has_offset, uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Returns 0 or -ENOMEM: a report that silently lost a problem would be a lie. */
static int
problem_add(struct store_verify_report *r, enum store_problem_severity sev, const char *file,
            bool has_offset, uint64_t offset, const char *fmt, ...)
{
    struct store_problem *np = realloc(r->problems, (r->n_problems + 1) * sizeof(*np));
    if (!np)
        return -ENOMEM;
    r->problems = np;
    struct store_problem *p = &np[r->n_problems];
    memset(p, 0, sizeof(*p));
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    p->severity = sev;
    p->has_offset = has_offset;
    p->offset = offset;
    p->reason = strdup(buf);
    p->file = file ? strdup(file) : NULL;
    if (!p->reason || (file && !p->file)) {
        free(p->reason);
        free(p->file);
        return -ENOMEM;
    }
    r->n_problems++;
    if (sev == STORE_PROBLEM_ERROR)
        r->errors++;
    else
        r->warnings++;
    return 0;
}

/* The scratch environment the log is replayed into. */
struct replay_env {
    char dir[4096];
    bool dir_made;
    MDB_env *env;
    MDB_txn *txn;
    struct mail_dbis dbis;
    const struct store_record_handler *handler;
    void *hstate; /* owned: handler->open()'s state */
    unsigned in_txn;
};

struct verify_ctx {
    struct store_verify_report *r;
    const char *path; /* generation being scanned */
    uint64_t off;     /* offset of the next frame in it */
    uint64_t applied;
    bool replaying;
    struct replay_env *re;
    const struct store_record_handler *handler; /* borrowed, may be NULL */
};

static void replay_stop(struct verify_ctx *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Stops the replay for good, saying why; the log checks go on. */
static void
replay_stop(struct verify_ctx *v, const char *fmt, ...)
{
    if (!v->replaying)
        return;
    v->replaying = false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->r->replay_note, sizeof(v->r->replay_note), fmt, ap);
    va_end(ap);
}

static int
replay_commit(struct replay_env *re)
{
    if (!re->txn)
        return 0;
    int rc = mdb_txn_commit(re->txn);
    re->txn = NULL;
    re->in_txn = 0;
    return store__lmdb_err(rc);
}

/* Applies one record the way store__apply_record() does (NOOP: nothing): a mail op, or a
 * handler record (hrec) when op is NULL. */
static int
replay_one(struct verify_ctx *v, const struct mail_op *op, const struct log_record *hrec)
{
    struct replay_env *re = v->re;
    if (!re->txn) {
        int rc = mdb_txn_begin(re->env, NULL, 0, &re->txn);
        if (rc != 0)
            return store__lmdb_err(rc);
    }
    if (op || hrec) {
        struct mail_result res;
        memset(&res, 0, sizeof(res));
        int ret = op ? mail_apply(&re->dbis, re->txn, op, &res)
                     : re->handler->apply(re->hstate, re->txn, hrec->type, hrec->payload,
                                          hrec->length, &res);
        if (ret < 0) {
            mdb_txn_abort(re->txn);
            re->txn = NULL;
            return ret;
        }
    }
    /* Bounded transactions, as recovery uses: a long replay must not fill LMDB's dirty list. */
    if (++re->in_txn >= 512)
        return replay_commit(re);
    return 0;
}

static int
verify_record_cb(void *ctx, const struct log_record *rec)
{
    struct verify_ctx *v = ctx;
    uint64_t off = v->off;
    v->off += log_frame_size(rec->length);
    v->r->records++;
    bool replay = v->replaying && rec->lsn <= v->applied;
    int ret = 0;
    if (rec->type == TDM_REC_NOOP) {
        if (replay)
            ret = replay_one(v, NULL, NULL);
    } else if (!mail_is_mail_record(rec->type) && v->handler && v->handler->handles(rec->type)) {
        const char *why = NULL;
        int dret = v->handler->validate(rec->type, rec->payload, rec->length, &why);
        if (dret == -ENOMEM)
            return dret;
        if (dret < 0) {
            ret = problem_add(v->r, STORE_PROBLEM_ERROR, v->path, true, off,
                              "record LSN %" PRIu64 " (type %u) does not decode: %s", rec->lsn,
                              rec->type, why ? why : tdm_strerror(dret));
            replay_stop(v, "replay stopped at LSN %" PRIu64 ": a record does not decode", rec->lsn);
        } else {
            v->r->decoded++;
            if (replay) {
                ret = replay_one(v, NULL, rec);
                if (ret < 0 && ret != -ENOMEM) {
                    replay_stop(v, "replay failed at LSN %" PRIu64 ": %s", rec->lsn,
                                tdm_strerror(ret));
                    ret = 0;
                }
            }
        }
    } else if (!mail_is_mail_record(rec->type)) {
        ret = problem_add(v->r, STORE_PROBLEM_ERROR, v->path, true, off,
                          "record LSN %" PRIu64 " has unknown type %u", rec->lsn, rec->type);
        replay_stop(v, "replay stopped at LSN %" PRIu64 ": unknown record type", rec->lsn);
    } else {
        struct mail_decoded dec;
        const char *why = NULL;
        int dret = mail_op_decode(rec->type, rec->payload, rec->length, &dec, &why);
        if (dret == -ENOMEM)
            return dret;
        if (dret < 0) {
            ret = problem_add(v->r, STORE_PROBLEM_ERROR, v->path, true, off,
                              "record LSN %" PRIu64 " (type %u) does not decode: %s", rec->lsn,
                              rec->type, why ? why : tdm_strerror(dret));
            replay_stop(v, "replay stopped at LSN %" PRIu64 ": a record does not decode", rec->lsn);
        } else {
            v->r->decoded++;
            if (replay) {
                ret = replay_one(v, &dec.op, NULL);
                if (ret < 0 && ret != -ENOMEM) {
                    /* Our scratch environment failed, not the database. */
                    replay_stop(v, "replay failed at LSN %" PRIu64 ": %s", rec->lsn,
                                tdm_strerror(ret));
                    ret = 0;
                }
            }
            mail_decoded_clear(&dec);
        }
    }
    if (ret == 0 && replay && v->replaying)
        v->r->replayed++;
    return ret;
}

static int
replay_env_open(struct replay_env *re, const struct store_verify_options *o, const char **why_r)
{
    const char *tmp = o && o->tmp_dir ? o->tmp_dir : getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(re->dir, sizeof(re->dir), "%s/tandem-verify-XXXXXX", tmp);
    if (!mkdtemp(re->dir)) {
        *why_r = store__errorf("cannot make a scratch directory in %s: %s", tmp, strerror(errno));
        return -errno;
    }
    re->dir_made = true;
    struct store_options defaults;
    store_options_init(&defaults);
    int ret = store__env_open(re->dir, defaults.map_size, false, &re->env, why_r);
    MDB_txn *txn = NULL;
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_begin(re->env, NULL, 0, &txn));
    if (ret == 0)
        ret = mail_dbis_open(txn, &re->dbis);
    re->handler = o ? o->handler : NULL;
    if (ret == 0 && re->handler) {
        ret = re->handler->open(txn, &re->hstate);
        if (ret < 0)
            re->hstate = NULL;
    }
    if (ret == 0) {
        ret = store__lmdb_err(mdb_txn_commit(txn));
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (ret < 0 && !*why_r)
        *why_r = store__errorf("cannot set up the replay environment: %s", tdm_strerror(ret));
    return ret;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
replay_env_close(struct replay_env *re)
{
    if (re->txn)
        mdb_txn_abort(re->txn);
    if (re->handler && re->hstate)
        re->handler->close(re->hstate);
    if (re->env)
        mdb_env_close(re->env);
    if (re->dir_made)
        nftw(re->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    memset(re, 0, sizeof(*re));
}

/*
 * The digest verify compares: the mail digest alone without a handler (so reports of mail-only
 * databases keep their meaning), else SHA-256(mail digest || handler digest).
 */
static int
combined_digest(const struct mail_dbis *dbis, const struct store_record_handler *h, void *hstate,
                MDB_txn *txn, uint8_t out[32])
{
    int ret = mail_digest(dbis, txn, out);
    if (ret < 0 || !h)
        return ret;
    uint8_t both[64];
    memcpy(both, out, 32);
    ret = h->digest(hstate, txn, both + 32);
    if (ret < 0)
        return ret;
    crypto_hash_sha256(out, both, sizeof(both));
    return 0;
}

/* Digest of the scratch environment after the replay. */
static int
replay_digest(struct replay_env *re, uint8_t out[32])
{
    int ret = replay_commit(re);
    MDB_txn *txn = NULL;
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_begin(re->env, NULL, MDB_RDONLY, &txn));
    if (ret == 0)
        ret = combined_digest(&re->dbis, re->handler, re->hstate, txn, out);
    if (txn)
        mdb_txn_abort(txn);
    return ret;
}

static void
hex32(char out[65], const uint8_t d[32])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/*
 * The per-generation checks, in recovery's order. prev is the previous generation's scan
 * when it read cleanly and directly precedes this one (for the chain check), else NULL.
 */
static int
verify_generation(struct ro_db *db, struct verify_ctx *v, uint64_t gen, bool highest,
                  const struct gen_scan *prev, struct gen_scan *sc, bool *ok_r)
{
    char path[4096];
    const char *why = NULL;
    store__gen_path(path, sizeof(path), db->log_dir, gen);
    v->path = path;
    v->off = TDM_LOG_HEADER_SIZE;
    struct store_verify_report *r = v->r;
    int sret = store__gen_scan(&io_ops_posix, path, verify_record_cb, v, sc, &why);
    *ok_r = false;
    if (sret == -ENOMEM)
        return sret;
    if (sret < 0) {
        replay_stop(v, "replay stopped: %s could not be read", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, sret == TDM_ECORRUPT, 0, "%s",
                           strip_path(why, path));
    }
    if (sc->blank_header) {
        replay_stop(v, "replay stopped: %s was never started", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, 0,
                           "generation header was never written, but a later generation exists");
    }
    if (memcmp(sc->hdr.guid, db->guid, sizeof(db->guid)) != 0) {
        replay_stop(v, "replay stopped: %s belongs to another database", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, 16,
                           "generation belongs to another database (GUID differs)");
    }
    if (sc->hdr.generation != gen) {
        replay_stop(v, "replay stopped: %s is misnamed", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, 32,
                           "generation number in header (%" PRIu64 ") differs from file name",
                           sc->hdr.generation);
    }
    int ret = 0;
    size_t errors_before = r->errors;
    if (prev && sc->hdr.first_lsn != prev->last_lsn + 1)
        ret = problem_add(r, STORE_PROBLEM_ERROR, path, true, 56,
                          "header says first LSN %" PRIu64 " but the previous generation ends "
                          "at LSN %" PRIu64,
                          sc->hdr.first_lsn, prev->last_lsn);
    else if (prev && sc->hdr.prev_checksum != prev->end_rec.gen_checksum)
        ret = problem_add(r, STORE_PROBLEM_ERROR, path, true, 64,
                          "header's previous-generation checksum %08x differs from the previous "
                          "generation's END checksum %08x",
                          sc->hdr.prev_checksum, prev->end_rec.gen_checksum);
    if (ret < 0)
        return ret;
    if (r->errors != errors_before)
        replay_stop(v, "replay stopped: %s does not chain to the previous generation", path);

    if (!highest && sc->end != GEN_SCAN_END_RECORD) {
        replay_stop(v, "replay stopped: %s is damaged", path);
        if (sc->end == GEN_SCAN_INVALID)
            return problem_add(r, STORE_PROBLEM_ERROR, path, true, sc->bad_offset,
                               "%s (in a closed generation: corruption)", sc->bad_reason);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, sc->valid_end,
                           "closed generation has no END record");
    }
    if (highest && sc->end == GEN_SCAN_INVALID) {
        /* Recovery's rule: beyond what LMDB applied, the frame was never acknowledged. */
        if (sc->last_lsn >= db->applied)
            ret = problem_add(r, STORE_PROBLEM_WARNING, path, true, sc->bad_offset,
                              "torn tail (would be cut by recovery): %s; the last valid record "
                              "is LSN %" PRIu64 ", LMDB has applied up to %" PRIu64,
                              sc->bad_reason, sc->last_lsn, db->applied);
        else
            ret = problem_add(r, STORE_PROBLEM_ERROR, path, true, sc->bad_offset,
                              "%s; the last valid record is LSN %" PRIu64 " but LMDB has applied "
                              "up to %" PRIu64 ": corruption, not a torn tail",
                              sc->bad_reason, sc->last_lsn, db->applied);
        if (ret < 0)
            return ret;
    }
    *ok_r = true;
    return 0;
}

static int
verify_log(struct ro_db *db, const struct store_verify_options *o, struct verify_ctx *v,
           const char **error_r)
{
    struct store_verify_report *r = v->r;
    uint64_t *gens = NULL;
    size_t n = 0;
    char path[4096];
    int ret = store__gen_list(db->log_dir, &gens, &n);
    if (ret < 0) {
        *error_r = store__errorf("cannot list %s: %s", db->log_dir, strerror(-ret));
        return ret;
    }
    if (n == 0) {
        free(gens);
        replay_stop(v, "no log generations");
        return problem_add(r, STORE_PROBLEM_ERROR, db->log_dir, false, 0,
                           "the log directory holds no generations: the database cannot be "
                           "recovered from it");
    }
    for (size_t i = 1; i < n && ret == 0; i++)
        if (gens[i] != gens[i - 1] + 1) {
            store__gen_path(path, sizeof(path), db->log_dir, gens[i - 1] + 1);
            replay_stop(v, "replay stopped: generations are missing");
            ret = problem_add(r, STORE_PROBLEM_ERROR, path, false, 0,
                              "log generation is missing (generations %" PRIu64 " and %" PRIu64
                              " exist)",
                              gens[i - 1], gens[i]);
        }
    if (ret < 0)
        goto out;

    struct gen_scan *scans = calloc(n, sizeof(*scans));
    if (!scans) {
        ret = -ENOMEM;
        goto out;
    }
    r->generations = n;
    /* Preallocated generations, never started, are not part of the log (recovery's rule). */
    struct log_top top;
    ret = store__log_top(&io_ops_posix, db->log_dir, gens, n, &top);
    if (ret < 0) {
        free(scans);
        *error_r = store__errorf("cannot read %s: %s", db->log_dir, tdm_strerror(ret));
        goto out;
    }
    n = top.n_log;

    if (gens[0] != 1 || (o && o->skip_replay))
        v->replaying = false;
    if (gens[0] != 1)
        snprintf(r->replay_note, sizeof(r->replay_note),
                 "log truncated below generation %" PRIu64 ": the records before it are gone, "
                 "so a replay from LSN 1 is impossible",
                 gens[0]);
    else if (o && o->skip_replay)
        snprintf(r->replay_note, sizeof(r->replay_note), "replay skipped on request");

    bool prev_ok = false;
    for (size_t i = 0; i < n && ret == 0; i++) {
        bool ok = false;
        bool adjacent = i > 0 && gens[i] == gens[i - 1] + 1;
        ret = verify_generation(db, v, gens[i], i + 1 == n,
                                prev_ok && adjacent ? &scans[i - 1] : NULL, &scans[i], &ok);
        prev_ok = ok;
    }
    if (ret == 0) {
        const struct gen_scan *first = &scans[0], *last = &scans[n - 1];
        r->first_lsn = first->hdr.first_lsn;
        r->last_lsn = last->last_lsn;
        /* Truncation keeps whole generations: report the first LSN that is gone. */
        if (gens[0] != 1)
            snprintf(r->replay_note, sizeof(r->replay_note),
                     "log truncated below LSN %" PRIu64 " (generation %" PRIu64
                     " is the lowest left): a replay from LSN 1 is impossible",
                     first->hdr.first_lsn, gens[0]);
        if (first->hdr.first_lsn > db->applied + 1) {
            replay_stop(v, "replay stopped: the log does not reach back to the database");
            ret = problem_add(r, STORE_PROBLEM_ERROR, NULL, false, 0,
                              "the log starts at LSN %" PRIu64 " but the database has applied "
                              "only up to %" PRIu64 ": generations are missing",
                              first->hdr.first_lsn, db->applied);
        } else if (last->last_lsn < db->applied) {
            replay_stop(v, "replay stopped: the log ends before the database's applied LSN");
            store__gen_path(path, sizeof(path), db->log_dir, gens[n - 1]);
            ret = problem_add(r, STORE_PROBLEM_ERROR, path, true, last->valid_end,
                              "the log ends at LSN %" PRIu64 ", before LSN %" PRIu64
                              " which the database has applied",
                              last->last_lsn, db->applied);
        }
    }
    free(scans);
out:
    free(gens);
    if (ret < 0 && !*error_r)
        *error_r = store__errorf("verifying %s failed: %s", db->log_dir, tdm_strerror(ret));
    return ret;
}

int
store_verify(const char *dir, const struct store_verify_options *options,
             struct store_verify_report *r, const char **error_r)
{
    memset(r, 0, sizeof(*r));
    *error_r = NULL;
    struct ro_db db;
    int ret = ro_open(dir, &db, error_r);
    if (ret < 0)
        return ret;
    r->mounted = db.mounted;
    r->lmdb_nolock = db.nolock;
    r->applied_lsn = db.applied;

    /* The database's own digest, from the same snapshot that gave the applied LSN. */
    const struct store_record_handler *h = options ? options->handler : NULL;
    void *hstate = NULL;
    struct mail_dbis dbis;
    ret = mail_dbis_open(db.txn, &dbis);
    if (ret == 0 && h) {
        ret = h->open(db.txn, &hstate);
        if (ret < 0)
            hstate = NULL;
    }
    if (ret == 0)
        ret = combined_digest(&dbis, h, hstate, db.txn, r->db_digest);
    if (h && hstate)
        h->close(hstate); /* its handles stay open in the environment; only state goes */
    if (ret < 0) {
        *error_r =
            store__errorf("cannot read the tables in %s: %s", db.lmdb_dir, tdm_strerror(ret));
        ro_close(&db);
        store_verify_report_clear(r);
        return ret;
    }

    struct replay_env re;
    memset(&re, 0, sizeof(re));
    struct verify_ctx v = {
        .r = r, .applied = db.applied, .replaying = true, .re = &re, .handler = h};
    if (!(options && options->skip_replay)) {
        const char *why = NULL;
        if (replay_env_open(&re, options, &why) < 0) {
            /* Not the database's fault: report it and check the log anyway. */
            v.replaying = false;
            snprintf(r->replay_note, sizeof(r->replay_note), "%s", why);
        }
    }
    ret = verify_log(&db, options, &v, error_r);
    if (ret == 0 && v.replaying) {
        ret = replay_digest(&re, r->replay_digest);
        if (ret < 0) {
            snprintf(r->replay_note, sizeof(r->replay_note), "replay failed: %s",
                     tdm_strerror(ret));
            ret = 0;
        } else {
            r->replay_compared = true;
            r->digests_match = memcmp(r->replay_digest, r->db_digest, 32) == 0;
            if (!r->digests_match) {
                char a[65], b[65];
                hex32(a, r->db_digest);
                hex32(b, r->replay_digest);
                ret = problem_add(r, STORE_PROBLEM_ERROR, db.lmdb_dir, false, 0,
                                  "the database (digest %s) differs from a replay of the log "
                                  "up to LSN %" PRIu64 " (digest %s)",
                                  a, db.applied, b);
            }
        }
    }
    replay_env_close(&re);
    ro_close(&db);
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot verify %s: %s", dir, tdm_strerror(ret));
        store_verify_report_clear(r);
    }
    return ret;
}

/* ------------------------------------------------------------------ */
/* Recover                                                            */

struct recover_collect {
    pthread_mutex_t lock;
    struct store_recovery *r;
};

/* May run on any store thread; the copy keeps what the operator needs to read afterwards. */
static void
recover_event_cb(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)subject;
    struct recover_collect *c = ctx;
    pthread_mutex_lock(&c->lock);
    struct store_recovery *r = c->r;
    struct store_event_copy *ne = realloc(r->events, (r->n_events + 1) * sizeof(*ne));
    char *msg = strdup(message ? message : "");
    if (ne)
        r->events = ne;
    if (ne && msg) {
        ne[r->n_events].id = id;
        ne[r->n_events].message = msg;
        r->n_events++;
    } else {
        free(msg); /* out of memory: the event still went to the sink, if any */
    }
    if (id == TDM_EV_STORE_TORN_TAIL_CUT)
        r->torn_tail_cut = true;
    pthread_mutex_unlock(&c->lock);
}

void
store_recovery_clear(struct store_recovery *r)
{
    for (size_t i = 0; i < r->n_events; i++)
        free(r->events[i].message);
    free(r->events);
    memset(r, 0, sizeof(*r));
}

int
store_recover(const char *dir, struct store_recovery *r, const char **error_r)
{
    return store_recover_handler(dir, NULL, r, error_r);
}

int
store_recover_handler(const char *dir, const struct store_record_handler *handler,
                      struct store_recovery *r, const char **error_r)
{
    memset(r, 0, sizeof(*r));
    *error_r = NULL;
    /* A read-only look first: it tells a missing or foreign directory apart from a database
     * that refuses to mount, and gives the generation size new generations should have. */
    struct store_inspection ins;
    int ret = store_inspect(dir, &ins, error_r);
    if (ret < 0)
        return ret;
    r->inspected = true;
    r->was_clean = ins.clean;
    r->applied_before = ins.applied_lsn;
    struct store_options opt;
    store_options_init(&opt);
    opt.handler = handler;
    for (size_t i = 0; i < ins.n_gens; i++) {
        const struct store_gen_info *gi = &ins.gens[i];
        /* The current generation's size is the one this database was run with. */
        if (gi->generation == ins.current_gen && gi->size >= TDM_LOG_MIN_GENERATION_SIZE &&
            gi->size <= TDM_LOG_MAX_GENERATION_SIZE && gi->size % 4096 == 0)
            opt.generation_size = (uint32_t)gi->size;
    }
    r->generation_size = opt.generation_size;
    store_inspection_clear(&ins);

    struct recover_collect c = {.r = r};
    pthread_mutex_init(&c.lock, NULL);
    event_set_hook(recover_event_cb, &c);
    struct store *s = NULL;
    ret = store_open(dir, &opt, &s, error_r);
    if (ret == 0) {
        struct store_status st;
        store_get_status(s, &st);
        r->applied_after = st.applied_lsn;
        r->replayed = st.applied_lsn - r->applied_before;
        ret = store_close(&s);
        if (ret < 0)
            *error_r = store__errorf("recovery of %s succeeded but the clean dismount failed: "
                                     "%s; run `tandemctl db recover` again",
                                     dir, tdm_strerror(ret));
    }
    event_set_hook(NULL, NULL);
    pthread_mutex_destroy(&c.lock);
    return ret;
}

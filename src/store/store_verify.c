/*
 * Offline verify: a read-only full check of a database. Every generation is scanned (every
 * header and frame checksum, END records, the chain), every record is decoded, and, while the
 * log still starts at LSN 1, the whole log is replayed into a scratch LMDB whose digest must
 * equal the database's own. It judges the log exactly as recovery (store_mount.c) does: what
 * it calls an error would stop the database from mounting; what it calls a warning (a torn
 * tail of the current generation) is what recovery would cut.
 */
#include "store/store_inspect.h"
#include "store/store_int.h"
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
verify_generation(struct store__ro_db *db, struct verify_ctx *v, uint64_t gen, bool highest,
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
                           store__strip_path(why, path));
    }
    if (sc->blank_header) {
        replay_stop(v, "replay stopped: %s was never started", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, 0,
                           "generation header was never written, but a later generation exists");
    }
    if (sc->unbegun) {
        replay_stop(v, "replay stopped: %s was never begun", path);
        return problem_add(r, STORE_PROBLEM_ERROR, path, true, TDM_LOG_HEADER_SIZE,
                           "generation has no BEGIN record, but it is part of the log");
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
verify_log(struct store__ro_db *db, const struct store_verify_options *o, struct verify_ctx *v,
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
    uint64_t copy_first = 0;
    if (n == 0 && store__meta_get_u64(db->txn, db->meta, STORE_META_COPY_FIRST, &copy_first) == 0 &&
        copy_first > 0) {
        /* A copy seeded from a snapshot, before its first generation arrives: LMDB holds
         * everything up to its applied LSN, and an activation begins the log after it
         * (store_mount.c). Nothing to replay, nothing that would refuse to mount. */
        free(gens);
        replay_stop(v, "no log generation yet: the copy's LMDB is its snapshot");
        return problem_add(r, STORE_PROBLEM_WARNING, db->log_dir, false, 0,
                           "no log generation yet: a copy seeded from a snapshot at LSN %" PRIu64
                           ", expecting generation %" PRIu64 " first (an activation begins its "
                           "log there)",
                           db->applied, copy_first);
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
    struct store__ro_db db;
    int ret = store__ro_open(dir, &db, error_r);
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
        store__ro_close(&db);
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
    store__ro_close(&db);
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot verify %s: %s", dir, tdm_strerror(ret));
        store_verify_report_clear(r);
    }
    return ret;
}

/*
 * Offline tools: inspect (a read-only summary) and recover (mount and dismount, reporting
 * what recovery did). Verify, the read-only full check, is in store_verify.c.
 *
 * Inspect reads the log with the same rule as recovery (store__log_top(): which files are
 * the log, which are preallocated) so that the current generation it names is recovery's.
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
table_counts(struct store__ro_db *db, struct store_inspection *r, const char **error_r)
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

int
store_read_kind(const char *dir, char out[STORE_KIND_MAX + 1], const char **error_r)
{
    *error_r = NULL;
    struct store__ro_db db;
    int ret = store__ro_open(dir, &db, error_r);
    if (ret < 0)
        return ret;
    memcpy(out, db.kind, STORE_KIND_MAX + 1);
    store__ro_close(&db);
    return 0;
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
    struct store__ro_db db;
    int ret = store__ro_open(dir, &db, error_r);
    if (ret < 0)
        return ret;
    r->mounted = db.mounted;
    r->lmdb_nolock = db.nolock;
    memcpy(r->kind, db.kind, sizeof(r->kind));
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
            snprintf(gi->problem, sizeof(gi->problem), "%s", store__strip_path(why, path));
            gi->problem_offset = 0;
        } else if (sc.blank_header) {
            snprintf(gi->problem, sizeof(gi->problem), "generation header was never written");
        } else if (sc.unbegun) {
            snprintf(gi->problem, sizeof(gi->problem), "generation has no BEGIN record");
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
    store__ro_close(&db);
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot inspect %s: %s", dir, tdm_strerror(ret));
        store_inspection_clear(r);
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
    /* The smallest generation's size is the one this database was run with: a generation is
     * begun larger only for a large record or for large batches (store_gen.c), so the current
     * one alone may be several times it. */
    uint64_t smallest = 0;
    for (size_t i = 0; i < ins.n_gens; i++) {
        const struct store_gen_info *gi = &ins.gens[i];
        if (gi->size >= TDM_LOG_MIN_GENERATION_SIZE && gi->size <= TDM_LOG_MAX_GENERATION_SIZE &&
            gi->size % 4096 == 0 && (smallest == 0 || gi->size < smallest))
            smallest = gi->size;
    }
    if (smallest)
        opt.generation_size = (uint32_t)smallest;
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

/*
 * Crash schedules: thousands of seeded runs of a mail workload over the fault-injecting disk
 * (fault_io.c), each crashing at a chosen sync, then recovered with plain POSIX I/O and checked:
 *
 *   (a) every acknowledged commit is in the recovered store;
 *   (b) the store holds exactly a prefix of the submitted commits in LSN order: its mail digest
 *       equals that of a reference built by applying exactly the first N submitted records,
 *       N = the recovered applied LSN, and N >= the number acknowledged; the results the
 *       committers were told (UIDs, modseqs, statuses) match the reference's;
 *   (c) the store opens without a corruption error and takes a new commit.
 *
 * LMDB does not go through io_ops. Half the schedules model a power loss for it too: data.mdb
 * is copied at every checkpoint (store_options.checkpoint_hook, i.e. after the checkpoint's
 * sync) and that copy is put back at the crash, losing whatever LMDB had not synced. The other
 * half leave data.mdb as it is (a process crash: the page cache survives).
 *
 * Environment: CRASH_SCHEDULES (default 2000) schedules from seed CRASH_SEED (default 1);
 * CRASH_JOBS worker processes (default 2); CRASH_TMPDIR (default /dev/shm if present, else
 * /tmp); CRASH_VERBOSE=1 prints every schedule; CRASH_KEEP=1 keeps the directories of failed
 * schedules. A failure prints its seed: CRASH_SEED=<seed> CRASH_SCHEDULES=1 replays it (the
 * thread interleaving may differ, the workload and crash choices do not).
 */
#include "fault_io.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "store/mail.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GEN_SIZE (64u * 1024u)
#define MAX_THREADS 4
#define N_MAILBOXES 3
#define N_FOLDERS 8

static const char *const mailbox_names[N_MAILBOXES] = {"alice", "bob", "carol"};
static const char *const folder_names[N_FOLDERS] = {
    "INBOX", "Sent", "Trash", "Work", "Work/Projects", "Archive/2024", "Lists", "Lists/dev",
};
static const char *const keyword_pool[] = {"$Junk", "todo", "work"}; /* sorted */

/* ---- PRNG (splitmix64) ---- */

static uint64_t
rnd(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
rnd_below(uint64_t *state, uint64_t n)
{
    return n ? rnd(state) % n : 0;
}

/* ---- one schedule ---- */

struct rec {
    uint16_t type;
    uint8_t *payload;
    size_t len;
    uint64_t lsn; /* the LSN it must get: submission order is LSN order */
    bool done;
    int status;
    struct mail_result result;
    struct sched *sched;
};

enum crash_mode {
    CRASH_AT_SYNC, /* at sync k of the whole run */
    CRASH_IN_ROLL, /* armed just before an explicit store_roll */
    CRASH_IN_CKPT, /* armed just before an explicit store_checkpoint */
    CRASH_IN_HOOK, /* inside the checkpoint hook: LMDB synced, truncation not yet done */
    CRASH_MODES
};
static const char *const crash_mode_names[CRASH_MODES] = {"sync", "roll", "checkpoint", "hook"};

struct sched {
    uint64_t seed;
    uint64_t rng; /* schedule-level choices; threads have their own */
    char dir[600], db[700], mdb[800], snap[800];
    struct store *store;
    struct fault_io *fio;
    bool lmdb_power_loss;
    bool sync_lag; /* fault_io_set_sync_lag(): writes overtake syncs */
    /* body_size(): batches that begin generations larger than GEN_SIZE */
    bool large_batches;
    enum crash_mode mode;
    uint64_t crash_at;
    unsigned hook_crash_nth; /* CRASH_IN_HOOK: crash in this checkpoint (1-based) */
    unsigned nthreads, ops_per_thread, window;
    unsigned mid_op; /* thread 0 rolls / checkpoints before this op (modes roll, ckpt) */
    bool mid_roll, mid_ckpt;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct rec **recs;
    size_t n_recs, cap;
    size_t acked;
    bool stop;
    unsigned ckpts, snapshots;
    char error[512]; /* first inconsistency seen while running */
    /* workload hints (lock): what the threads believe exists, to aim ops at real targets */
    bool mailbox_made[N_MAILBOXES];
    uint32_t uid_hint[N_MAILBOXES][N_FOLDERS];
    unsigned next_body;
    uint64_t body_seeds[16];
    size_t body_sizes[16];
};

static void sched_fail(struct sched *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sched_fail(struct sched *s, const char *fmt, ...)
{
    if (s->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
}

static int
copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        int err = -errno;
        close(in);
        return err;
    }
    static _Thread_local uint8_t buf[1 << 16];
    int ret = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0) {
            ret = -errno;
            break;
        }
        if (n == 0)
            break;
        if (write(out, buf, (size_t)n) != n) {
            ret = -EIO;
            break;
        }
    }
    close(in);
    if (close(out) < 0 && ret == 0)
        ret = -errno;
    return ret;
}

/*
 * After a checkpoint sync: remember data.mdb as a power loss would leave it. A read transaction
 * is held during the copy so that LMDB cannot reuse pages reachable from any meta page the copy
 * may see: the copy is then a consistent LMDB state (the one synced, or a later one).
 */
static void
checkpoint_hook(void *ctx, uint64_t lsn)
{
    (void)lsn;
    struct sched *s = ctx;
    if (fault_io_crashed(s->fio))
        return; /* the machine is down: nothing reaches the disk any more */
    pthread_mutex_lock(&s->lock);
    unsigned nth = ++s->ckpts;
    struct store *store = s->store;
    pthread_mutex_unlock(&s->lock);
    if (s->mode == CRASH_IN_HOOK && nth == s->hook_crash_nth) {
        /* Power lost while the checkpoint completes: LMDB's sync is not known to have made
         * it, and truncation (which follows this hook) never happens. */
        fault_io_crash_now(s->fio);
        return;
    }
    if (!s->lmdb_power_loss || !store)
        return;
    MDB_txn *txn = NULL;
    int ret = store_read_begin(store, &txn);
    if (ret == 0)
        ret = copy_file(s->mdb, s->snap);
    if (txn)
        mdb_txn_abort(txn);
    if (ret < 0) {
        pthread_mutex_lock(&s->lock);
        sched_fail(s, "snapshot of data.mdb failed: %s", strerror(-ret));
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_lock(&s->lock);
    s->snapshots++;
    pthread_mutex_unlock(&s->lock);
}

static void
commit_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    struct rec *r = ctx;
    struct sched *s = r->sched;
    pthread_mutex_lock(&s->lock);
    r->status = status;
    r->result = *result;
    r->done = true;
    if (status == 0) {
        /* Acknowledgements come in LSN order, and only for the LSN we predicted. */
        if (lsn != r->lsn)
            sched_fail(s, "acknowledged LSN %" PRIu64 " for the record submitted as LSN %" PRIu64,
                       lsn, r->lsn);
        else if (r->lsn != s->acked + 1)
            sched_fail(s, "acknowledged LSN %" PRIu64 " out of order (after %zu acks)", lsn,
                       s->acked);
        s->acked++;
    }
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void
fill_body(uint8_t *body, size_t len, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = rnd(&st);
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(body + i, &v, n);
    }
}

/* With large_batches, bodies of 6-30 KiB: a few committers' batch is then more than a quarter
 * of a generation, so generations are begun larger than GEN_SIZE (store_gen.c), and rolls
 * grow recycled spares, made while batches were smaller, on the commit path. */
static size_t
body_size(uint64_t *rng, bool large_batches)
{
    if (large_batches && rnd_below(rng, 4) != 0)
        return 6000 + rnd_below(rng, 24000);
    unsigned r = (unsigned)rnd_below(rng, 100);
    if (r < 70)
        return 20 + rnd_below(rng, 2000);
    if (r < 90)
        return 2000 + rnd_below(rng, 18000);
    if (r < 97)
        return 20000 + rnd_below(rng, 40000);
    return 70000 + rnd_below(rng, 70000); /* larger than a generation: one of its own */
}

static void
pick_uids(uint64_t *rng, uint32_t hint, uint32_t *uids, size_t *n_r)
{
    size_t want = 1 + rnd_below(rng, 4), n = 0;
    uint32_t top = hint > 1 ? hint : 2;
    uint32_t u = 1 + (uint32_t)rnd_below(rng, top);
    for (size_t i = 0; i < want; i++) {
        uids[n++] = u;
        u += 1 + (uint32_t)rnd_below(rng, 3);
    }
    *n_r = n;
}

/*
 * Builds the next operation (lock held: reads and updates the hints). Hints are guesses made at
 * submission; ops that miss (folder gone, UID expunged) are refused by apply as a whole and
 * still take an LSN, which the prefix check covers as well.
 */
static void
gen_op(struct sched *s, uint64_t *rng, struct mail_op *op, struct mail_target *targets,
       uint32_t *uids, const char **kws, uint8_t **body_r)
{
    memset(op, 0, sizeof(*op));
    *body_r = NULL;
    unsigned mb = (unsigned)rnd_below(rng, N_MAILBOXES);
    if (!s->mailbox_made[0])
        mb = 0;
    unsigned f1 = (unsigned)rnd_below(rng, N_FOLDERS), f2 = (unsigned)rnd_below(rng, N_FOLDERS);
    unsigned r = (unsigned)rnd_below(rng, 100);
    if (!s->mailbox_made[mb]) {
        op->type = TDM_REC_MAILBOX_CREATE;
        op->mailbox = mailbox_names[mb];
        op->uidvalidity = 1000 + mb;
        op->quota_bytes = rnd_below(rng, 4) == 0 ? 400000 : 0;
        s->mailbox_made[mb] = true;
        return;
    }
    op->mailbox = mailbox_names[mb];
    op->folder = folder_names[f1];
    if (r < 10) {
        op->type = TDM_REC_FOLDER_CREATE;
        op->special_use = rnd_below(rng, 3) == 0 ? MAIL_USE_ARCHIVE : 0;
    } else if (r < 55) {
        op->type = TDM_REC_MESSAGE_APPEND;
        size_t nt = rnd_below(rng, 6) == 0 ? 2 : 1;
        targets[0] = (struct mail_target){mailbox_names[mb], folder_names[f1]};
        s->uid_hint[mb][f1]++;
        if (nt == 2) {
            unsigned mb2 = (unsigned)rnd_below(rng, N_MAILBOXES);
            targets[1] = (struct mail_target){mailbox_names[mb2], folder_names[f2]};
            if (mb2 == mb && f2 == f1)
                nt = 1;
            else
                s->uid_hint[mb2][f2]++;
        }
        op->targets = targets;
        op->n_targets = nt;
        for (size_t i = 0; i < MAIL_GUID_LEN; i += 8) {
            uint64_t v = rnd(rng);
            memcpy(op->guid + i, &v, 8);
        }
        op->internal_date = 1700000000 + (int64_t)rnd_below(rng, 10000000);
        op->flags = (uint32_t)rnd_below(rng, MAIL_FLAG_ALL + 1);
        /* Sometimes the same body again: single-instance storage shares it. */
        uint64_t bseed;
        size_t blen;
        unsigned slot = s->next_body % 16;
        if (s->next_body > 0 && rnd_below(rng, 5) == 0) {
            unsigned j = (unsigned)rnd_below(rng, s->next_body < 16 ? s->next_body : 16);
            bseed = s->body_seeds[j];
            blen = s->body_sizes[j];
        } else {
            bseed = rnd(rng);
            blen = body_size(rng, s->large_batches);
            s->body_seeds[slot] = bseed;
            s->body_sizes[slot] = blen;
            s->next_body++;
        }
        uint8_t *body = malloc(blen);
        if (!body)
            abort();
        fill_body(body, blen, bseed);
        op->body = body;
        op->body_len = blen;
        *body_r = body;
    } else if (r < 70) {
        op->type = TDM_REC_MESSAGE_FLAGS;
        op->flag_mode = (enum mail_flag_mode)rnd_below(rng, 3);
        op->flags = (uint32_t)rnd_below(rng, MAIL_FLAG_ALL + 1);
    } else if (r < 80) {
        op->type = TDM_REC_MESSAGE_EXPUNGE;
    } else if (r < 88) {
        op->type = TDM_REC_MESSAGE_COPY;
        op->new_folder = folder_names[f2];
        op->move = rnd_below(rng, 3) == 0;
        s->uid_hint[mb][f2] += 2;
    } else if (r < 93) {
        op->type = TDM_REC_FOLDER_RENAME;
        op->new_folder = folder_names[f2];
        s->uid_hint[mb][f2] += s->uid_hint[mb][f1];
    } else if (r < 95) {
        op->type = TDM_REC_FOLDER_DELETE;
    } else if (r < 98) {
        op->type = TDM_REC_FOLDER_SUBSCRIBE;
        op->subscribed = rnd_below(rng, 2);
    } else {
        op->type = TDM_REC_MAILBOX_SET_QUOTA;
        op->quota_bytes = rnd_below(rng, 2) ? 0 : 300000 + rnd_below(rng, 300000);
    }
    if (op->type == TDM_REC_MESSAGE_FLAGS || op->type == TDM_REC_MESSAGE_APPEND) {
        size_t nk = 0;
        for (size_t i = 0; i < sizeof(keyword_pool) / sizeof(keyword_pool[0]); i++)
            if (rnd_below(rng, 3) == 0)
                kws[nk++] = keyword_pool[i];
        op->keywords = kws;
        op->n_keywords = nk;
    }
    if (op->type == TDM_REC_MESSAGE_FLAGS || op->type == TDM_REC_MESSAGE_EXPUNGE ||
        op->type == TDM_REC_MESSAGE_COPY) {
        pick_uids(rng, s->uid_hint[mb][f1], uids, &op->n_uids);
        op->uids = uids;
    }
}

struct worker {
    struct sched *s;
    unsigned idx;
    pthread_t th;
};

static bool
rec_wait(struct sched *s, struct rec *r)
{
    pthread_mutex_lock(&s->lock);
    while (!r->done)
        pthread_cond_wait(&s->cond, &s->lock);
    bool ok = r->status == 0;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void
mid_action(struct sched *s)
{
    if (s->mode == CRASH_IN_ROLL || s->mode == CRASH_IN_CKPT)
        fault_io_set_crash_at(s->fio, fault_io_syncs(s->fio) + s->crash_at);
    if (s->mid_roll)
        (void)store_roll(s->store);
    if (s->mid_ckpt)
        (void)store_checkpoint(s->store);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct sched *s = w->s;
    uint64_t rng = s->seed * 1000003u + w->idx * 7919u + 17u;
    struct rec *outstanding[8];
    unsigned n_out = 0;

    for (unsigned i = 0; i < s->ops_per_thread; i++) {
        if (w->idx == 0 && i == s->mid_op && (s->mid_roll || s->mid_ckpt))
            mid_action(s);
        struct mail_op op;
        struct mail_target targets[2];
        uint32_t uids[8];
        const char *kws[4];
        uint8_t *body = NULL;
        pthread_mutex_lock(&s->lock);
        if (s->stop) {
            pthread_mutex_unlock(&s->lock);
            break;
        }
        gen_op(s, &rng, &op, targets, uids, kws, &body);
        struct rec *r = calloc(1, sizeof(*r));
        const char *why = NULL;
        int ret = r ? mail_op_encode(&op, &r->payload, &r->len, &why) : -ENOMEM;
        free(body);
        if (ret < 0) {
            sched_fail(s, "encoding a workload op failed: %s", why ? why : tdm_strerror(ret));
            s->stop = true;
            free(r);
            pthread_mutex_unlock(&s->lock);
            break;
        }
        r->type = op.type;
        r->sched = s;
        if (s->n_recs == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 256;
            struct rec **n = realloc(s->recs, ncap * sizeof(*n));
            if (!n)
                abort();
            s->recs = n;
            s->cap = ncap;
        }
        r->lsn = s->n_recs + 1;
        /* Submitted under our lock so that our list order is the store's LSN order. */
        ret = store_commit_async(s->store, r->type, r->payload, r->len, commit_cb, r);
        if (ret != 0) {
            /* Refused (Failed after the crash, or reserve mode): the run is over. */
            s->stop = true;
            free(r->payload);
            free(r);
            pthread_mutex_unlock(&s->lock);
            break;
        }
        s->recs[s->n_recs++] = r;
        pthread_mutex_unlock(&s->lock);
        outstanding[n_out++] = r;
        if (n_out == s->window) {
            bool ok = rec_wait(s, outstanding[0]);
            memmove(outstanding, outstanding + 1, (n_out - 1) * sizeof(outstanding[0]));
            n_out--;
            if (!ok)
                break;
        }
    }
    for (unsigned i = 0; i < n_out; i++)
        rec_wait(s, outstanding[i]);
    return NULL;
}

/* ---- the reference ---- */

static MDB_env *ref_env;

static int
ref_open(const char *dir)
{
    if (mkdir(dir, 0750) < 0 && errno != EEXIST)
        return -errno;
    int rc = mdb_env_create(&ref_env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(ref_env, 16);
    if (rc == 0)
        rc = mdb_env_set_mapsize(ref_env, 1ull << 30);
    if (rc == 0)
        rc = mdb_env_open(ref_env, dir, MDB_NOSYNC | MDB_NOTLS, 0640);
    return rc == 0 ? 0 : -EIO;
}

/*
 * Applies the first n submitted records to an empty mail model in one write transaction that
 * is then aborted (the reference never touches the disk), and compares the results the
 * committers were told. Fills digest_r.
 */
static int
ref_digest(struct sched *s, size_t n, uint8_t digest_r[32])
{
    MDB_txn *txn;
    if (mdb_txn_begin(ref_env, NULL, 0, &txn) != 0)
        return -EIO;
    struct mail_dbis dbis;
    int ret = mail_dbis_open(txn, &dbis);
    for (size_t i = 0; i < n && ret == 0; i++) {
        struct rec *r = s->recs[i];
        struct mail_decoded dec;
        const char *why = NULL;
        ret = mail_op_decode(r->type, r->payload, r->len, &dec, &why);
        if (ret < 0) {
            sched_fail(s, "reference: record %zu does not decode: %s", i + 1, why ? why : "?");
            break;
        }
        struct mail_result res;
        memset(&res, 0, sizeof(res));
        ret = mail_apply(&dbis, txn, &dec.op, &res);
        mail_decoded_clear(&dec);
        if (ret < 0) {
            sched_fail(s, "reference: applying record %zu failed: %s", i + 1, tdm_strerror(ret));
            break;
        }
        if (r->done && r->status == 0 &&
            (res.status != r->result.status || res.first_uid != r->result.first_uid ||
             res.uidvalidity != r->result.uidvalidity || res.count != r->result.count ||
             res.modseq != r->result.modseq))
            sched_fail(s,
                       "LSN %zu: acknowledged result (status %d uid %u count %u modseq %" PRIu64
                       ") differs from the reference (status %d uid %u count %u modseq %" PRIu64
                       ")",
                       i + 1, r->result.status, r->result.first_uid, r->result.count,
                       r->result.modseq, res.status, res.first_uid, res.count, res.modseq);
    }
    if (ret == 0)
        ret = mail_digest(&dbis, txn, digest_r);
    mdb_txn_abort(txn);
    return ret;
}

/* ---- running one schedule ---- */

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
rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct totals {
    uint64_t passed, failed;
    uint64_t submitted, acked, recovered;
    uint64_t by_kind[FAULT_IO_SYNC_KINDS];
    uint64_t by_mode[CRASH_MODES];
    uint64_t mid_run; /* the crash came before the workload ended */
    uint64_t power_loss, snapshots, torn, vanished, restored, unacked_survived;
    uint64_t lagged, overlapped, crash_overlapped;
    uint64_t large_gens, large_scheds; /* generations begun larger than GEN_SIZE; schedules */
};

static void
sched_setup(struct sched *s, uint64_t seed, const char *base)
{
    memset(s, 0, sizeof(*s));
    s->seed = seed;
    s->rng = seed ^ 0x5bd1e995u;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    snprintf(s->dir, sizeof(s->dir), "%s/s%" PRIu64, base, seed);
    snprintf(s->db, sizeof(s->db), "%s/db", s->dir);
    snprintf(s->mdb, sizeof(s->mdb), "%s/store/data.mdb", s->db);
    snprintf(s->snap, sizeof(s->snap), "%s/snapshot.mdb", s->dir);

    s->lmdb_power_loss = (seed & 1) != 0;
    s->sync_lag = (seed & 2) != 0;
    s->nthreads = 1 + (unsigned)rnd_below(&s->rng, MAX_THREADS);
    s->ops_per_thread = 6 + (unsigned)rnd_below(&s->rng, 60 / s->nthreads + 10);
    s->window = rnd_below(&s->rng, 3) == 0 ? 1 + (unsigned)rnd_below(&s->rng, 4) : 1;
    s->large_batches = (seed & 12) == 12; /* a quarter of the schedules, independent of the above */
    if (s->large_batches && s->window == 1)
        s->window = 2 + (unsigned)rnd_below(&s->rng, 3);
    unsigned m = (unsigned)rnd_below(&s->rng, 10);
    s->mode = m < 6 ? CRASH_AT_SYNC : m < 7 ? CRASH_IN_ROLL : m < 8 ? CRASH_IN_CKPT : CRASH_IN_HOOK;
    s->mid_op = (unsigned)rnd_below(&s->rng, s->ops_per_thread);
    s->mid_roll = s->mode == CRASH_IN_ROLL || rnd_below(&s->rng, 6) == 0;
    s->mid_ckpt = s->mode == CRASH_IN_CKPT || rnd_below(&s->rng, 6) == 0;
    uint64_t total = (uint64_t)s->nthreads * s->ops_per_thread;
    switch (s->mode) {
    case CRASH_AT_SYNC:
        /* One sync per commit at most, plus rolls (about four syncs each) and the open. */
        s->crash_at = 1 + rnd_below(&s->rng, total + total / 3 + 4);
        break;
    case CRASH_IN_ROLL:
    case CRASH_IN_CKPT:
        s->crash_at = 1 + rnd_below(&s->rng, 3); /* relative to the syncs before the call */
        break;
    case CRASH_IN_HOOK:
        s->hook_crash_nth = 1 + (unsigned)rnd_below(&s->rng, 3);
        break;
    case CRASH_MODES:
        break;
    }
}

static void
sched_free(struct sched *s)
{
    for (size_t i = 0; i < s->n_recs; i++) {
        free(s->recs[i]->payload);
        free(s->recs[i]);
    }
    free(s->recs);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
}

static int
run_schedule(uint64_t seed, const char *base, bool verbose, bool keep, struct totals *t)
{
    struct sched sched, *s = &sched;
    sched_setup(s, seed, base);
    const char *err = NULL;
    struct store_options o;
    store_options_init(&o);
    o.generation_size = GEN_SIZE;
    o.map_size = 256ull << 20;
    o.reserve_bytes = rnd_below(&s->rng, 4) == 0 ? 64 * 1024 : 0;
    o.idle_close_ms = rnd_below(&s->rng, 8) == 0 ? 2 : 90000;
    static const uint64_t ckpt_bytes[] = {8 * 1024, 32 * 1024, 128 * 1024, UINT64_MAX};
    o.checkpoint_bytes = ckpt_bytes[rnd_below(&s->rng, 4)];
    if (s->mode == CRASH_IN_HOOK && o.checkpoint_bytes == UINT64_MAX)
        o.checkpoint_bytes = 16 * 1024;
    o.checkpoint_ms = rnd_below(&s->rng, 8) == 0 ? 5 : 3600000;
    o.checkpoint_hook = checkpoint_hook;
    o.hook_ctx = s;

    int ret = -1;
    uint64_t fio_seed = rnd(&s->rng);
    if (mkdir(s->dir, 0750) < 0) {
        sched_fail(s, "mkdir %s: %s", s->dir, strerror(errno));
        goto done;
    }
    if (store_create(s->db, &o, &err) != 0) {
        sched_fail(s, "store_create: %s", err);
        goto done;
    }
    if (s->lmdb_power_loss && copy_file(s->mdb, s->snap) < 0) {
        sched_fail(s, "initial snapshot failed");
        goto done;
    }
    s->fio = fault_io_new(s->mode == CRASH_AT_SYNC ? s->crash_at : 0, fio_seed);
    if (!s->fio)
        abort();
    o.io = fault_io_ops(s->fio);
    /* Half the schedules hold one fdatasync in three for up to 2 ms, until a write to the same
     * file overtakes it: the log workers' overlap of one batch's write with another's sync. */
    if (s->sync_lag)
        fault_io_set_sync_lag(s->fio, 3, 2000);

    struct store *store = NULL;
    ret = store_open(s->db, &o, &store, &err);
    if (ret == 0) {
        pthread_mutex_lock(&s->lock);
        s->store = store;
        pthread_mutex_unlock(&s->lock);
        struct worker w[MAX_THREADS];
        for (unsigned i = 0; i < s->nthreads; i++) {
            w[i] = (struct worker){.s = s, .idx = i};
            if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0)
                abort();
        }
        for (unsigned i = 0; i < s->nthreads; i++)
            pthread_join(w[i].th, NULL);
    } else if (!fault_io_crashed(s->fio)) {
        sched_fail(s, "store_open before the crash failed: %s", err);
        goto done;
    }
    bool mid_run = fault_io_crashed(s->fio);
    uint64_t large_gens = 0;
    if (store) {
        struct store_status st0;
        store_get_status(store, &st0);
        large_gens = st0.large_generations;
    }
    fault_io_crash_now(s->fio);
    if (store) {
        pthread_mutex_lock(&s->lock);
        s->store = NULL;
        pthread_mutex_unlock(&s->lock);
        (void)store_close(&store); /* fails: the disk is gone */
    }
    struct fault_io_stats fst;
    ret = fault_io_apply_crash(s->fio, &fst);
    if (ret < 0) {
        sched_fail(s, "apply_crash: %s", strerror(-ret));
        goto done;
    }
    if (s->lmdb_power_loss && copy_file(s->snap, s->mdb) < 0) {
        sched_fail(s, "restoring the LMDB snapshot failed");
        goto done;
    }

    /* Recovery with the real disk. */
    struct store_options ro;
    store_options_init(&ro);
    ro.generation_size = GEN_SIZE;
    ro.map_size = o.map_size;
    ro.reserve_bytes = 0;
    ret = store_open(s->db, &ro, &store, &err);
    if (ret != 0) {
        sched_fail(s, "(c) recovery failed: %s (%s)", tdm_strerror(ret), err ? err : "-");
        goto done;
    }
    struct store_status st;
    store_get_status(store, &st);
    uint64_t n = st.applied_lsn;
    if (n < s->acked)
        sched_fail(s, "(a) recovered LSN %" PRIu64 " but %zu commits were acknowledged", n,
                   s->acked);
    else if (n > s->n_recs)
        sched_fail(s, "(b) recovered LSN %" PRIu64 " but only %zu records were submitted", n,
                   s->n_recs);
    if (!s->error[0]) {
        uint8_t got[32], want[32];
        MDB_txn *txn = NULL;
        ret = store_read_begin(store, &txn);
        if (ret == 0)
            ret = mail_digest(store_mail_dbis(store), txn, got);
        if (txn)
            mdb_txn_abort(txn);
        if (ret < 0)
            sched_fail(s, "digest of the recovered store: %s", tdm_strerror(ret));
        else if (ref_digest(s, (size_t)n, want) < 0)
            sched_fail(s, "reference digest failed");
        else if (memcmp(got, want, 32) != 0)
            sched_fail(s, "(b) recovered store is not the prefix of %" PRIu64 " records", n);
    }
    /* (c) it takes a new commit, at the next LSN, and closes cleanly. */
    struct mail_op op = {
        .type = TDM_REC_MAILBOX_CREATE, .mailbox = "after-crash", .uidvalidity = 7};
    struct mail_result res;
    uint64_t lsn = 0;
    ret = store_commit_op(store, &op, &lsn, &res, &err);
    if (ret != 0 || res.status != 0 || lsn != n + 1)
        sched_fail(s, "(c) commit after recovery: ret %d status %d lsn %" PRIu64, ret, res.status,
                   lsn);
    ret = store_close(&store);
    if (ret != 0)
        sched_fail(s, "(c) close after recovery: %s", tdm_strerror(ret));

    t->submitted += s->n_recs;
    t->acked += s->acked;
    t->recovered += n;
    t->unacked_survived += n - (n >= s->acked ? s->acked : n);
    t->by_kind[fst.crash_kind < FAULT_IO_SYNC_KINDS ? fst.crash_kind : 0]++;
    t->by_mode[s->mode]++;
    t->mid_run += mid_run;
    t->power_loss += s->lmdb_power_loss;
    t->snapshots += s->snapshots;
    t->torn += fst.torn;
    t->vanished += fst.files_vanished;
    t->restored += fst.files_restored;
    t->lagged += fst.lagged;
    t->overlapped += fst.overlapped;
    t->crash_overlapped += fst.crash_overlapped;
    t->large_gens += large_gens;
    t->large_scheds += large_gens > 0;
    if (verbose)
        printf("seed %" PRIu64 ": %u threads x %u ops, mode %s, %s, crash at sync %" PRIu64
               " (%s), %zu submitted, %zu acked, recovered %" PRIu64 ", pending %" PRIu64
               " (kept %" PRIu64 " dropped %" PRIu64 " torn %" PRIu64 ")\n",
               seed, s->nthreads, s->ops_per_thread, crash_mode_names[s->mode],
               s->lmdb_power_loss ? "lmdb-power-loss" : "lmdb-kept", fst.syncs,
               fault_io_sync_kind_name(fst.crash_kind), s->n_recs, s->acked, n, fst.pending_writes,
               fst.kept, fst.dropped, fst.torn);
done:
    fault_io_free(&s->fio);
    bool failed = s->error[0] != 0;
    if (failed) {
        printf("FAIL seed %" PRIu64 " (%u threads, mode %s, %s): %s\n", seed, s->nthreads,
               crash_mode_names[s->mode], s->lmdb_power_loss ? "lmdb-power-loss" : "lmdb-kept",
               s->error);
        t->failed++;
    } else {
        t->passed++;
    }
    if (!failed || !keep)
        rm_rf(s->dir);
    else
        printf("  kept %s\n", s->dir);
    fflush(stdout);
    sched_free(s);
    return failed ? -1 : 0;
}

static uint64_t
env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static void
ignore_event(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)id;
    (void)subject;
    (void)message;
}

/* One worker process: schedules first + job, first + job + jobs, ... */
static int
run_worker(uint64_t first, uint64_t count, unsigned job, unsigned jobs, const char *base,
           int out_fd)
{
    bool verbose = env_u64("CRASH_VERBOSE", 0) != 0, keep = env_u64("CRASH_KEEP", 0) != 0;
    char ref_dir[700];
    snprintf(ref_dir, sizeof(ref_dir), "%s/ref%u", base, job);
    if (ref_open(ref_dir) < 0) {
        fprintf(stderr, "cannot open the reference environment in %s\n", ref_dir);
        return 1;
    }
    struct totals t = {0};
    for (uint64_t i = job; i < count; i += jobs)
        run_schedule(first + i, base, verbose, keep, &t);
    mdb_env_close(ref_env);
    rm_rf(ref_dir);
    ssize_t n = write(out_fd, &t, sizeof(t));
    return n == (ssize_t)sizeof(t) ? 0 : 1;
}

int
main(void)
{
    uint64_t count = env_u64("CRASH_SCHEDULES", 2000);
    uint64_t first = env_u64("CRASH_SEED", 1);
    unsigned jobs = (unsigned)env_u64("CRASH_JOBS", 2);
    if (jobs < 1)
        jobs = 1;
    if (jobs > 64)
        jobs = 64;
    const char *tmp = getenv("CRASH_TMPDIR");
    if (!tmp || !*tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char base[512];
    snprintf(base, sizeof(base), "%s/tdm-crash-XXXXXX", tmp);
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    event_set_sink(NULL);
    event_set_hook(ignore_event, NULL);
    log_set_min_level(LOG_LEVEL_ERROR);
    /* Each schedule starts about ten threads (two store opens and the workers). With the
     * default 8 MiB stacks, ASan spends most of the run clearing their shadow at join; 1 MiB
     * is ample for the store's threads and makes the schedules several times faster. */
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setstacksize(&attr, 1u << 20);
        pthread_setattr_default_np(&attr);
        pthread_attr_destroy(&attr);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int pipes[64][2];
    pid_t pids[64];
    for (unsigned j = 0; j < jobs; j++) {
        if (pipe(pipes[j]) < 0) {
            perror("pipe");
            return 1;
        }
        fflush(stdout);
        pids[j] = fork();
        if (pids[j] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[j] == 0) {
            close(pipes[j][0]);
            /* exit(), not _exit(): LeakSanitizer checks the worker at exit. stdout was
             * flushed before fork, so nothing is written twice. */
            exit(run_worker(first, count, j, jobs, base, pipes[j][1]));
        }
        close(pipes[j][1]);
    }
    struct totals sum = {0};
    int bad_workers = 0;
    for (unsigned j = 0; j < jobs; j++) {
        struct totals t;
        ssize_t n = read(pipes[j][0], &t, sizeof(t));
        close(pipes[j][0]);
        int status = 0;
        waitpid(pids[j], &status, 0);
        if (n != (ssize_t)sizeof(t) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "worker %u died (status %d): its schedules count as failed\n", j,
                    status);
            bad_workers++;
            continue;
        }
        sum.passed += t.passed;
        sum.failed += t.failed;
        sum.submitted += t.submitted;
        sum.acked += t.acked;
        sum.recovered += t.recovered;
        sum.mid_run += t.mid_run;
        sum.power_loss += t.power_loss;
        sum.snapshots += t.snapshots;
        sum.torn += t.torn;
        sum.vanished += t.vanished;
        sum.restored += t.restored;
        sum.unacked_survived += t.unacked_survived;
        sum.lagged += t.lagged;
        sum.overlapped += t.overlapped;
        sum.crash_overlapped += t.crash_overlapped;
        sum.large_gens += t.large_gens;
        sum.large_scheds += t.large_scheds;
        for (unsigned k = 0; k < FAULT_IO_SYNC_KINDS; k++)
            sum.by_kind[k] += t.by_kind[k];
        for (unsigned k = 0; k < CRASH_MODES; k++)
            sum.by_mode[k] += t.by_mode[k];
    }
    rm_rf(base);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    printf("crash schedules %" PRIu64 "..%" PRIu64 " in %.1f s with %u jobs: %" PRIu64
           " records submitted, %" PRIu64 " acknowledged, %" PRIu64 " recovered (%" PRIu64
           " unacknowledged but durable)\n",
           first, first + count - 1, secs, jobs, sum.submitted, sum.acked, sum.recovered,
           sum.unacked_survived);
    printf("crashes mid-run %" PRIu64 "; LMDB power loss in %" PRIu64 " (%" PRIu64
           " snapshots); torn writes %" PRIu64 ", files vanished %" PRIu64 ", restored %" PRIu64
           "\n",
           sum.mid_run, sum.power_loss, sum.snapshots, sum.torn, sum.vanished, sum.restored);
    printf("syncs held for a write %" PRIu64 ", overtaken by one %" PRIu64 ", crashes at an "
           "overtaken sync %" PRIu64 "\n",
           sum.lagged, sum.overlapped, sum.crash_overlapped);
    printf("generations begun larger than %u bytes for large batches: %" PRIu64 " in %" PRIu64
           " schedules\n",
           GEN_SIZE, sum.large_gens, sum.large_scheds);
    printf("crash modes:");
    for (unsigned k = 0; k < CRASH_MODES; k++)
        printf(" %s %" PRIu64, crash_mode_names[k], sum.by_mode[k]);
    printf("\ncrashed sync kinds:");
    for (unsigned k = 0; k < FAULT_IO_SYNC_KINDS; k++)
        printf(" %s %" PRIu64, fault_io_sync_kind_name(k), sum.by_kind[k]);
    uint64_t failed = sum.failed + (bad_workers ? count - sum.passed - sum.failed : 0);
    printf("\n%" PRIu64 " passed, %" PRIu64 " failed\n", sum.passed, failed);
    return failed == 0 && bad_workers == 0 ? 0 : 1;
}

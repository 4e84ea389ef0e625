/*
 * The store core: the commit pipeline's threads and the public commit API. The pipeline's
 * stages live in store_log.c, store_apply.c and store_hk.c, generation files in store_gen.c,
 * and a database's life cycle (create, open with recovery, close) in store_mount.c.
 *
 * Three jobs per open store, each with its own threads:
 *   log workers   (STORE_LOG_WORKERS, taking turns) each take every queued record, write them
 *                 to the current generation and make them durable with one fdatasync (group
 *                 commit), one batch's write and sync overlapping the previous batch's sync;
 *                 roll generations.
 *   apply thread  applies each durable batch to LMDB in one write transaction that also stores
 *                 the applied LSN, then calls the committers back.
 *   housekeeping  creates the next generation ahead of need, checkpoints LMDB, truncates.
 * A commit is acknowledged (its callback runs with status 0) only after its record is durable
 * in the log AND applied to LMDB, so readers see what a client was told.
 *
 * Locking: one mutex (s->lock) guards every field marked "lock" below; the threads hold it
 * only to move queues and counters, never across I/O.
 */
#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t
store__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
store__now_us_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
store__now_us_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void
store__deadline_after_ms(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000u);
    ts->tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* ------------------------------------------------------------------ */
/* Threads                                                            */

int
store__threads_start(struct store *s)
{
    int rc = 0;
    unsigned started = 0;
    s->log_workers = STORE_LOG_WORKERS; /* before any starts: the last one out sets log_done */
    while (started < STORE_LOG_WORKERS && rc == 0)
        if ((rc = pthread_create(&s->log_threads[started], NULL, store__log_thread_main, s)) == 0)
            started++;
    if (rc == 0)
        rc = pthread_create(&s->apply_thread, NULL, store__apply_thread_main, s);
    if (rc != 0) {
        pthread_mutex_lock(&s->lock);
        s->log_workers -= STORE_LOG_WORKERS - started;
        s->closing = true;
        pthread_cond_broadcast(&s->log_wake);
        pthread_mutex_unlock(&s->lock);
        for (unsigned i = 0; i < started; i++)
            pthread_join(s->log_threads[i], NULL);
        return -rc;
    }
    s->threads_started = true;
    rc = pthread_create(&s->hk_thread, NULL, store__hk_thread_main, s);
    if (rc != 0) {
        store__threads_stop(s);
        return -rc;
    }
    s->hk_started = true;
    return 0;
}

/* Drains every queued commit (each callback runs), then stops the threads. */
void
store__threads_stop(struct store *s)
{
    if (!s->threads_started)
        return;
    /* The log thread may need the housekeeping thread for one more generation while it
     * drains, so housekeeping stops last. */
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    pthread_cond_broadcast(&s->log_wake);
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < STORE_LOG_WORKERS; i++)
        pthread_join(s->log_threads[i], NULL);
    pthread_join(s->apply_thread, NULL);
    pthread_mutex_lock(&s->lock);
    s->hk_stop = true;
    pthread_cond_broadcast(&s->hk_wake);
    pthread_mutex_unlock(&s->lock);
    if (s->hk_started)
        pthread_join(s->hk_thread, NULL);
    s->threads_started = false;
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */

int
store_commit_async(struct store *s, uint16_t type, const void *payload, size_t len,
                   store_commit_cb *cb, void *ctx)
{
    if (len > TDM_LOG_MAX_PAYLOAD)
        return TDM_ELIMIT;
    const struct store_record_handler *h = s->opt.handler;
    /* Refuse what apply could not decode: a record in the log must always replay. */
    if (type != TDM_REC_NOOP && !mail_is_mail_record(type)) {
        if (!h || !h->handles(type))
            return TDM_EINVAL;
        const char *why = NULL;
        int ret = h->validate(type, payload, len, &why);
        if (ret < 0)
            return ret == -ENOMEM ? ret : TDM_EINVAL;
    } else if (type != TDM_REC_NOOP) {
        struct mail_decoded dec;
        const char *why = NULL;
        int ret = mail_op_decode(type, payload, len, &dec, &why);
        if (ret < 0)
            return ret == -ENOMEM ? ret : TDM_EINVAL;
        mail_decoded_clear(&dec);
    }
    /* One allocation holds the entry and its frame (freed by the apply thread). The frame is
     * encoded here, before the lock: copying and checksumming the payload is most of a
     * commit's CPU in this function, and under the lock it made every other committer, the log
     * workers and the apply thread wait for it (64 KiB: microseconds per commit). Under the
     * lock only the LSN and epoch go in (log_record_seal(), constant time). */
    size_t frame_len = log_frame_size((uint32_t)len);
    struct pending *p = malloc(sizeof(*p) + frame_len);
    if (!p)
        return -ENOMEM;
    memset(p, 0, sizeof(*p));
    p->frame = (uint8_t *)(p + 1);
    p->frame_len = frame_len;
    p->type = type;
    p->cb = cb;
    p->ctx = ctx;
    struct log_frame_pre pre;
    log_record_prepare(type, payload, (uint32_t)len, p->frame, &pre);

    pthread_mutex_lock(&s->lock);
    int err = s->failed         ? TDM_EFAILED
              : s->reserve_mode ? TDM_ENOSPACE
              : s->closing      ? TDM_ECLOSED
                                : 0;
    if (err) {
        pthread_mutex_unlock(&s->lock);
        free(p);
        return err;
    }
    /* The LSN is assigned and sealed into the frame under the lock so that queue order is LSN
     * order. */
    p->lsn = s->next_lsn++;
    log_record_seal(p->frame, (uint32_t)len, &pre, p->lsn, s->epoch);
    *s->log_tailp = p;
    s->log_tailp = &p->next;
    s->log_count++;
    s->inflight++;
    s->commits++;
    /* Wake the log workers only when one can act: for the first record while no worker has
     * the writer's turn (giving the turn up wakes them too), and when the last record a worker
     * waits for (a fuller batch) arrives. A wake per commit would rouse the idle worker 64
     * times a batch at 64 committers, for nothing while the other one has the turn. */
    if ((s->log_count == 1 && !s->log_writing) ||
        (s->batch_want && (s->log_count >= s->inflight || s->log_count >= s->batch_want)))
        pthread_cond_broadcast(&s->log_wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/*
 * A blocking committer waits on a futex word of its own. With a mutex and condition variable
 * per commit, the apply thread signalled while holding the waiter's mutex, so the waiter, woken
 * on the other CPU, often blocked again on that mutex until the apply thread let go of it: two
 * wake-ups and up to four futex calls per commit where one wake suffices, paid 64 times per
 * batch with 64 committers. The word is set last, after the results are copied: the waiter may
 * return (and its frame go away) as soon as it sees it, and a FUTEX_WAKE on a word nobody
 * waits on any more does nothing.
 */
struct commit_wait {
    _Atomic uint32_t done;
    int status;
    uint64_t lsn;
    struct mail_result *result;
};

static void
commit_wait_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    struct commit_wait *w = ctx;
    w->status = status;
    w->lsn = lsn;
    if (w->result)
        *w->result = *result;
    atomic_store_explicit(&w->done, 1, memory_order_release);
    syscall(SYS_futex, &w->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void
commit_wait_for(struct commit_wait *w)
{
    while (atomic_load_explicit(&w->done, memory_order_acquire) == 0)
        syscall(SYS_futex, &w->done, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0); /* 0: still waiting */
}

int
store_commit(struct store *s, uint16_t type, const void *payload, size_t len, uint64_t *lsn_r,
             struct mail_result *result_r)
{
    struct commit_wait w = {.result = result_r};
    int ret = store_commit_async(s, type, payload, len, commit_wait_cb, &w);
    if (ret == 0) {
        commit_wait_for(&w);
        ret = w.status;
        if (lsn_r)
            *lsn_r = w.lsn;
    }
    return ret;
}

int
store_commit_op(struct store *s, const struct mail_op *op, uint64_t *lsn_r,
                struct mail_result *result_r, const char **error_r)
{
    uint8_t *payload = NULL;
    size_t len = 0;
    const char *why = NULL;
    int ret = mail_op_encode(op, &payload, &len, &why);
    if (ret < 0) {
        *error_r = why ? why : tdm_strerror(ret);
        return ret;
    }
    ret = store_commit(s, op->type, payload, len, lsn_r, result_r);
    free(payload);
    if (ret < 0)
        *error_r = tdm_strerror(ret);
    return ret;
}

int
store_checkpoint(struct store *s)
{
    int ret = store__checkpoint(s);
    if (ret == 0)
        ret = store__truncate(s);
    return ret;
}

void
store_set_truncation_floor(struct store *s, uint64_t generation)
{
    pthread_mutex_lock(&s->lock);
    s->floor = generation;
    pthread_mutex_unlock(&s->lock);
}

int
store_roll(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t target = ++s->roll_requested;
    pthread_cond_broadcast(&s->log_wake);
    while (s->roll_done < target && !s->failed && !s->log_done)
        pthread_cond_wait(&s->progress, &s->lock);
    int ret = s->failed ? TDM_EFAILED : s->roll_done < target ? TDM_ECLOSED : 0;
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int
store_roll_request(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    int ret = s->failed ? TDM_EFAILED : s->closing || s->log_done ? TDM_ECLOSED : 0;
    if (ret == 0 && s->roll_requested == s->roll_done) {
        s->roll_requested++;
        pthread_cond_broadcast(&s->log_wake);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

int
store_read_begin(struct store *s, MDB_txn **txn_r)
{
    return store__lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn_r));
}

const struct mail_dbis *
store_mail_dbis(const struct store *s)
{
    return &s->mail;
}

void *
store_handler_state(const struct store *s)
{
    return s->handler_state;
}

void
store_get_status(struct store *s, struct store_status *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&s->lock);
    memcpy(st->guid, s->guid, sizeof(st->guid));
    st->epoch = s->epoch;
    st->last_lsn = s->next_lsn - 1;
    st->durable_lsn = s->durable_lsn;
    st->applied_lsn = s->applied_lsn;
    st->checkpoint_lsn = s->checkpoint_lsn;
    st->current_generation = s->writing_gen;
    st->lowest_generation = s->lowest_gen;
    uint64_t needed = s->cur_gen;
    for (uint64_t g = s->lowest_gen; g < s->cur_gen; g++)
        if (s->gens[g + 1 - s->lowest_gen].first_lsn - 1 > s->checkpoint_lsn) {
            needed = g;
            break;
        }
    st->needed_low = needed;
    st->truncation_floor = s->floor;
    st->commits = s->commits;
    st->syncs = s->syncs;
    st->solo_syncs = s->solo_syncs;
    st->large_generations = s->large_gens;
    st->failed = s->failed != 0;
    st->disk_reserve = s->reserve_mode;
    memcpy(st->kind, s->kind, sizeof(st->kind));
    pthread_mutex_unlock(&s->lock);
}

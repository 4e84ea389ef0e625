/*
 * The log workers: group commit. A worker takes every queued record as one batch, writes it to
 * the current generation (rolling generations as they fill), makes it durable with one
 * fdatasync, and hands it to the apply thread. On a write or sync failure the store goes Failed.
 *
 * STORE_LOG_WORKERS workers take turns, so that one batch's write (into the page cache) and
 * its fdatasync overlap the previous batch's fdatasync, and the disk never waits for the
 * stages that come between two syncs (apply, callbacks, the committers' return). The rules:
 *   - one worker at a time has the writer's turn (log_writing): it takes the batch, gets its
 *     ticket (batches are numbered in LSN order) and writes it; then it gives the turn up and
 *     syncs its own batch while the next worker writes the next one.
 *   - a batch is acknowledged only after an fdatasync that started after its write completed:
 *     its own. Batches complete (durable position, replication hook, hand-over to apply) in
 *     ticket order, whatever order their syncs return in, and a batch after a failed one fails.
 *   - whatever replaces the current generation's fd (a roll) waits until every earlier batch
 *     has completed (log_wait_earlier()), since their syncs use that fd.
 *   - a batch that writes a generation's END, fails in its write, or carries a roll request
 *     keeps the turn until it has completed and the next generation is open: nothing is
 *     written to the next generation before the END of the previous one is durable.
 */
#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One batch, from its worker's turn to write through its completion. */
struct log_batch {
    struct pending *head;        /* owned until handed to the apply thread */
    struct pending *failed_from; /* after a failure: the first entry not durable */
    uint64_t ticket;             /* its place in LSN order */
    uint64_t records;
    uint64_t roll_target; /* roll_requested when the batch was taken */
    int fd;               /* the generation its last records went to: the one to sync */
    bool closes;          /* its write ends with the generation's END */
    struct gen_pos pos;   /* what its sync makes durable */
    uint64_t sync_us;
};

/* Waits until every batch before ticket has completed (lock not held). */
static void
log_wait_earlier(struct store *s, uint64_t ticket)
{
    pthread_mutex_lock(&s->lock);
    while (s->log_ticket_done != ticket)
        pthread_cond_wait(&s->progress, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static int
wbuf_reserve(struct store *s, size_t need)
{
    if (need <= s->wbuf_cap)
        return 0;
    size_t cap = s->wbuf_cap ? s->wbuf_cap : 65536;
    while (cap < need)
        cap *= 2;
    uint8_t *n = realloc(s->wbuf, cap);
    if (!n)
        return -ENOMEM;
    s->wbuf = n;
    s->wbuf_cap = cap;
    return 0;
}

/*
 * Writes the first blen bytes of wbuf at the current generation's write offset, followed by a
 * zero frame header that marks the end of the records (a recycled file holds stale bytes
 * there, not zeros: docs/formats/log.md), or by the END frame that closes the generation
 * when close is set. The marker is overwritten by the next write; there is always room for
 * either, because room for END is kept free. wbuf has room for END after blen.
 */
static int
log_write_records(struct store *s, size_t blen, uint64_t start, bool close)
{
    size_t tail = close ? TDM_LOG_END_FRAME : TDM_LOG_FRAME_HEADER;
    TDM_ASSERT(start + blen + tail <= s->cur.size);
    if (close)
        store__gen_end_frame(s, s->wbuf + blen);
    else
        memset(s->wbuf + blen, 0, TDM_LOG_FRAME_HEADER);
    int ret = io_pwrite_all(s->io, s->cur.fd, s->wbuf, blen + tail, (off_t)start);
    if (ret == 0)
        s->cur.off += blen;
    return ret;
}

/*
 * Puts the current generation's BEGIN frame into the write buffer, which must be empty (the
 * generation's first write starts with it: *blen_r becomes its size), after growing the
 * generation if a first frame of first_frame bytes would not fit (a record larger than a
 * standard generation). BEGIN needs no sync of its own: the header before it was synced when
 * the spare was made, and BEGIN becomes durable with the records it is written with.
 */
static int
log_begin_generation(struct store *s, uint64_t first_frame, size_t *blen_r)
{
    TDM_ASSERT(*blen_r == 0 && s->cur.off == TDM_LOG_HEADER_SIZE);
    int ret = store__gen_fit_unbegun(s, first_frame);
    if (ret == 0)
        ret = wbuf_reserve(s, TDM_LOG_BEGIN_FRAME);
    if (ret < 0)
        return ret;
    store__gen_begin_frame(s, s->wbuf);
    s->cur.checksum = crc32c(0, s->wbuf, TDM_LOG_BEGIN_FRAME);
    s->cur.begun = true;
    *blen_r = TDM_LOG_BEGIN_FRAME;
    return 0;
}

/*
 * Writes lb's records to the log (they are made durable by log_sync_batch() afterwards). On
 * failure, lb->failed_from is the first entry that is not durable (entries before it are).
 *
 * A generation is closed early, with its END in the batch's own write and sync, when a batch
 * as large as this one would not fit after it: then the next batch starts in the next
 * generation with its BEGIN, instead of rolling in the middle of that batch (an END sync on
 * the commit path, two syncs for one batch). It costs at most one batch of unused space per
 * generation.
 *
 * Runs in the writer's turn. A roll closes the current generation's fd, which the syncs of
 * earlier batches may still use, so it first waits for them (log_wait_earlier()).
 */
static int
log_write_batch(struct store *s, struct log_batch *lb)
{
    int ret;

    lb->failed_from = lb->head;
    uint64_t lb_bytes = 0;
    for (struct pending *p = lb->head; p; p = p->next)
        lb_bytes += p->frame_len;
    store__gen_want_batch(s, lb_bytes); /* sizes the generations this batch and the next begin */
    if (s->cur.closed) { /* closed early, and the next generation could not be started then */
        log_wait_earlier(s, lb->ticket);
        ret = store__gen_start_next(s);
        if (ret < 0)
            return ret;
    }
    uint64_t start = s->cur.off;
    size_t blen = 0;
    uint64_t batch_bytes = 0;
    for (struct pending *p = lb->head; p; p = p->next) {
        if (s->cur.begun && s->cur.off + blen + p->frame_len + TDM_LOG_END_FRAME > s->cur.size) {
            if (blen > 0) {
                ret = log_write_records(s, blen, start, false);
                if (ret < 0)
                    return ret;
                blen = 0;
            }
            log_wait_earlier(s, lb->ticket);
            ret = store__gen_roll(s, p->frame_len);
            if (ret < 0) {
                lb->failed_from = p;
                return ret;
            }
            start = s->cur.off;
        }
        if (!s->cur.begun) {
            ret = log_begin_generation(s, p->frame_len, &blen);
            if (ret < 0)
                return ret;
        }
        ret = wbuf_reserve(s, blen + p->frame_len + TDM_LOG_END_FRAME);
        if (ret < 0)
            return ret;
        memcpy(s->wbuf + blen, p->frame, p->frame_len);
        blen += p->frame_len;
        batch_bytes += p->frame_len;
        s->cur.checksum = crc32c(s->cur.checksum, p->frame, p->frame_len);
        s->cur.records++;
        s->cur.last_lsn = p->lsn;
        lb->failed_from = p->next;
    }
    lb->failed_from = lb->head; /* until the sync succeeds nothing in the last part is durable */
    /* Only for batches that fit the next generation (as large as store__gen_size_for() will
     * begin it): a larger one rolls in its middle anyway, and closing its last generation
     * early would only waste it. */
    lb->closes = blen > 0 && s->cur.off + blen + batch_bytes + TDM_LOG_END_FRAME > s->cur.size &&
                 TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + batch_bytes + TDM_LOG_END_FRAME <=
                     store__gen_size_for(s, 0);
    if (blen > 0) {
        ret = log_write_records(s, blen, start, lb->closes);
        if (ret < 0)
            return ret;
    }
    lb->fd = s->cur.fd;
    store__gen_pos(s, lb->closes, &lb->pos);
    return 0;
}

/* Makes lb's write durable: one fdatasync that starts after the write has completed. Runs
 * outside the writer's turn, so the next batch's write overlaps it. */
static int
log_sync_batch(struct store *s, struct log_batch *lb)
{
    uint64_t t0 = store__now_us_mono();
    int ret = s->io->fdatasync(s->io, lb->fd);
    lb->sync_us = store__now_us_mono() - t0;
    return ret;
}

void
store__fail_list(struct pending *p, int status)
{
    for (; p; p = p->next)
        p->status = status;
}

static void
apply_queue_push(struct store *s, struct pending *head)
{
    if (!head)
        return;
    struct pending *tail = head;
    while (tail->next)
        tail = tail->next;
    *s->apply_tailp = head;
    s->apply_tailp = &tail->next;
    pthread_cond_signal(&s->apply_wake);
}

static void
handle_log_failure(struct store *s, int err, struct pending *batch, struct pending *failed_from)
{
    /* lock held. Entries from failed_from on, and everything queued after them, failed:
     * their LSNs were never made durable, so the sequence is rewound to reuse them. Only a
     * full disk leaves a durable prefix (gen_roll synced it); after an I/O error nothing in
     * the batch is known to be durable. */
    if (err != TDM_ENOSPACE)
        failed_from = batch;
    store__fail_list(failed_from, err == TDM_ENOSPACE ? TDM_ENOSPACE : err);
    struct pending *queued = s->log_head;
    s->log_head = NULL;
    s->log_tailp = &s->log_head;
    s->log_count = 0;
    store__fail_list(queued, err == TDM_ENOSPACE ? TDM_ENOSPACE : err);

    uint64_t durable = s->durable_lsn;
    for (struct pending *p = batch; p && p != failed_from; p = p->next)
        durable = p->lsn;
    s->durable_lsn = durable;
    s->next_lsn = durable + 1;

    if (err == TDM_ENOSPACE) {
        if (!s->reserve_mode)
            event_emit(TDM_EV_STORE_DISK_RESERVE, s->name,
                       "no disk space for the next log generation in %s: new commits are "
                       "refused; the database can still be shut down cleanly",
                       s->log_dir);
        s->reserve_mode = true;
    } else {
        if (!s->failed)
            event_emit(TDM_EV_STORE_WRITE_FAILED, s->name,
                       "writing or syncing log generation %" PRIu64 " in %s failed: %s; the "
                       "database is Failed and refuses writes",
                       s->cur.gen, s->log_dir, tdm_strerror(err));
        if (!s->failed)
            s->failed = err;
    }
    apply_queue_push(s, batch);
    apply_queue_push(s, queued);
}

/*
 * Group commit: commits still in the apply stage belong to committers that will be back in a
 * moment (a blocking committer resubmits as soon as it is answered). Syncing before they are
 * queued splits them into a separate, later batch, so the same committers end up sharing two
 * or three fdatasyncs instead of one. Wait until every commit in flight is queued, and until
 * as many are queued as the last batch held, for at most half the recent fdatasync time
 * (capped by group_commit_wait_us): the wait never exceeds what a sync costs anyway, and a
 * lone committer (nothing else in flight, a batch of one before) never waits.
 *
 * Why the last batch too: a blocking committer that has been called back but not yet
 * scheduled is no longer in flight, yet it is about to come back. With 64 committer threads
 * on two CPUs, waiting for the in-flight count alone started a sync when the first dozen had
 * resubmitted, and batches averaged ~35 records instead of 64 (docs/benchmarks.md).
 *
 * With two log workers the committers split over two batches in flight, one in its sync while
 * the other's committers return: so with nothing in sync, a batch starts at half the expected
 * size (the rest goes into the other worker's batch, whose sync overlaps this one), and while
 * another batch is in its sync, a batch waits for the commits not in that sync, or as many as
 * the last batch held. Taking whatever was queued at once there (tried first) cut batches to
 * a few records each at 64 committers: more syncs, and more apply transactions and wake-ups
 * on the CPUs the committers need (docs/benchmarks.md). Lock held.
 */
static void
group_commit_wait(struct store *s)
{
    if (s->opt.group_commit_wait_us == 0 || s->closing)
        return;
    uint64_t wait_us = s->sync_ewma_us / 2;
    if (wait_us > s->opt.group_commit_wait_us)
        wait_us = s->opt.group_commit_wait_us;
    uint64_t want;
    if (s->log_in_sync > 0) {
        uint64_t out = s->inflight - s->log_in_sync; /* commits not in a sync */
        want = out > s->last_batch ? out : s->last_batch;
    } else {
        want = s->inflight > s->last_batch ? s->inflight : s->last_batch;
        want = (want + STORE_LOG_WORKERS - 1) / STORE_LOG_WORKERS;
    }
    if (wait_us == 0 || s->log_count >= want)
        return;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)(wait_us * 1000u);
    while (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    s->batch_want = want;
    while (s->log_count < want && !s->closing)
        if (pthread_cond_timedwait(&s->log_wake, &s->lock, &deadline) != 0)
            break;
    s->batch_want = 0;
}

/*
 * Takes the next batch off the log queue (lock held): every queued record, except while no
 * other batch is in its sync. Then it takes the first half of the commits expected (as
 * group_commit_wait() counts them) and leaves the rest queued for the other worker, which
 * writes them while this batch syncs. Without the cap, commits that arrive together (an event
 * loop resubmitting from the callbacks of the batch just applied: bench_store --async) all
 * went into one batch, the other worker had nothing to write, and one sync at a time was in
 * flight (rec/sync 44-60 at 64 committers, 0.37-0.44 of two syncs in flight:
 * docs/benchmarks.md). Taking a prefix keeps batches in LSN order.
 */
struct pending *
store__log_take_batch(struct store *s, uint64_t *records_r)
{
    struct pending *head = s->log_head;
    uint64_t take = s->log_count;
    if (head && s->log_in_sync == 0 && !s->closing) {
        uint64_t expect = s->inflight > s->last_batch ? s->inflight : s->last_batch;
        uint64_t cap = (expect + STORE_LOG_WORKERS - 1) / STORE_LOG_WORKERS;
        if (cap > 0 && take > cap) {
            struct pending *last = head;
            for (uint64_t i = 1; i < cap; i++)
                last = last->next;
            s->log_head = last->next; /* the rest stays queued: log_tailp is still right */
            last->next = NULL;
            s->log_count -= cap;
            *records_r = cap;
            return head;
        }
    }
    s->log_head = NULL;
    s->log_tailp = &s->log_head;
    s->log_count = 0;
    *records_r = take;
    return head;
}

/*
 * Waits for the writer's turn and something to do: queued records or a roll request (lock
 * held). Returns false when the store is closing and nothing is left. While nothing comes,
 * a partly filled generation is closed after opt.idle_close_ms (a roll request of its own).
 */
static bool
log_wait_turn(struct store *s)
{
    for (;;) {
        if (!s->log_writing) {
            if (s->log_head || s->roll_requested != s->roll_done)
                return true;
            if (s->closing)
                return false;
        }
        /* Nobody writes: the generation state is stable while the lock is held. */
        if (!s->log_writing && s->cur.records > 0 && !s->cur.closed && s->opt.idle_close_ms > 0) {
            uint64_t due = s->last_write_ms + s->opt.idle_close_ms;
            uint64_t now = store__now_ms();
            if (now >= due) {
                s->roll_requested++; /* idle close: ship what we have */
                continue;
            }
            struct timespec ts;
            store__deadline_after_ms(&ts, due - now);
            pthread_cond_timedwait(&s->log_wake, &s->lock, &ts);
        } else {
            pthread_cond_wait(&s->log_wake, &s->lock);
        }
    }
}

/* Gives the writer's turn up (lock held). */
static void
log_turn_release(struct store *s)
{
    s->log_writing = false;
    pthread_cond_broadcast(&s->log_wake);
}

/*
 * Completes lb after its sync, in ticket order (lock held, as on return; dropped while
 * waiting and while a roll or the replication hook runs): the durable position and hook, the
 * hand-over to the apply thread, and for a batch that kept the writer's turn, the roll it
 * carries and the start of the next generation. err is lb's write or sync error, or 0.
 */
static void
log_complete(struct store *s, struct log_batch *lb, int err, bool kept_turn)
{
    while (s->log_ticket_done != lb->ticket)
        pthread_cond_wait(&s->progress, &s->lock);
    if (!err && s->failed) /* an earlier batch failed: what follows it is not durable either */
        err = s->failed;
    if (lb->head) {
        s->log_in_sync -= lb->records;
        s->syncs++;
        if (kept_turn)
            s->solo_syncs++;
        if (!err) {
            /* EWMA with weight 1/8: follows the disk within a few dozen syncs. */
            s->sync_ewma_us =
                s->sync_ewma_us ? (7 * s->sync_ewma_us + lb->sync_us) / 8 : lb->sync_us;
            s->last_write_ms = store__now_ms();
        }
    }
    bool roll = kept_turn && lb->roll_target != s->roll_done;
    pthread_mutex_unlock(&s->lock);
    if (!err && lb->head) {
        err = store__gen_durable_at(s, &lb->pos);
        if (!err && lb->closes) /* a batch that closes kept the turn: cur is its own */
            s->cur.closed = true;
    }
    if (!err && roll) {
        if (s->cur.closed) /* closed early by the batch: the roll only starts the next */
            err = store__gen_start_next(s);
        else if (s->cur.records > 0)
            err = store__gen_roll(s, 0);
    }
    pthread_mutex_lock(&s->lock);
    if (lb->roll_target > s->roll_done)
        s->roll_done = lb->roll_target;
    if (err) {
        handle_log_failure(s, err, lb->head, lb->failed_from);
    } else if (lb->head) {
        struct pending *last = lb->head;
        while (last->next)
            last = last->next;
        s->durable_lsn = last->lsn;
        apply_queue_push(s, lb->head);
    }
    s->log_ticket_done++;
    pthread_cond_broadcast(&s->progress); /* log_wait_earlier(), the next completion, rolls */
    if (!err && kept_turn && s->cur.closed && !s->closing) {
        /* Closed early by the batch just handed on: open the next generation (waiting for a
         * spare if there is none) while its committers are answered and the next batch
         * forms. */
        pthread_mutex_unlock(&s->lock);
        err = store__gen_start_next(s);
        pthread_mutex_lock(&s->lock);
        if (err)
            handle_log_failure(s, err, NULL, NULL);
        pthread_cond_broadcast(&s->progress);
    }
}

void *
store__log_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    while (log_wait_turn(s)) {
        s->log_writing = true;
        if (s->log_head)
            group_commit_wait(s);
        uint64_t lb_records = 0;
        struct pending *lb_head = store__log_take_batch(s, &lb_records);

        struct log_batch lb = {.head = lb_head,
                               .ticket = s->log_ticket_next++,
                               .records = lb_records,
                               .roll_target = s->roll_requested,
                               .fd = -1};
        if (lb.head)
            s->last_batch = lb.records;
        s->log_in_sync += lb.records;
        int err = s->failed;
        pthread_mutex_unlock(&s->lock);

        if (!err && lb.head)
            err = log_write_batch(s, &lb);

        pthread_mutex_lock(&s->lock);
        bool keep = err || lb.closes || lb.roll_target != s->roll_done;
        if (!keep)
            log_turn_release(s);
        pthread_mutex_unlock(&s->lock);
        if (!err && lb.head)
            err = log_sync_batch(s, &lb);
        pthread_mutex_lock(&s->lock);
        log_complete(s, &lb, err, keep);
        if (keep)
            log_turn_release(s);
    }
    if (--s->log_workers == 0) {
        s->log_done = true;
        pthread_cond_signal(&s->apply_wake);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

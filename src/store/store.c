/*
 * The store core: the commit pipeline and the life cycle of a database.
 *
 * Three threads per open store, each owning one job:
 *   log thread    takes every queued record, writes them to the current generation and makes
 *                 them durable with one fdatasync (group commit); rolls generations.
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
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t
store__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t
now_us_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t
now_us_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
deadline_after_ms(struct timespec *ts, uint64_t ms)
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
/* Generation files                                                   */

/* Creates generation file gen of size bytes, zero-filled and allocated, durable. */
int
store__gen_file_create(const struct io_ops *io, const char *log_dir, uint64_t gen, uint64_t size)
{
    char path[4096];
    store__gen_path(path, sizeof(path), log_dir, gen);
    int fd = io->open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return fd;
    int ret = io->allocate(io, fd, (off_t)size);
    if (ret == 0)
        ret = io->fdatasync(io, fd);
    io->close(io, fd);
    if (ret == 0)
        ret = io->sync_dir(io, log_dir);
    if (ret < 0)
        io->unlink(io, path);
    return ret;
}

static int
gen_write_header(struct store *s, struct gen_state *g, uint32_t prev_checksum)
{
    struct log_header hdr = {
        .generation = g->gen,
        .created_us = now_us_wall(),
        .epoch = g->epoch,
        .first_lsn = g->first_lsn,
        .prev_checksum = prev_checksum,
        .file_size = (uint32_t)g->size,
    };
    uint8_t buf[TDM_LOG_HEADER_USED];
    memcpy(hdr.guid, s->guid, sizeof(hdr.guid));
    log_header_encode(&hdr, buf);
    int ret = io_pwrite_all(s->io, g->fd, buf, sizeof(buf), 0);
    if (ret == 0)
        ret = s->io->fdatasync(s->io, g->fd);
    return ret;
}

/* Records the first LSN of a new current generation (lock held). */
int
store__gen_table_push(struct store *s, uint64_t gen, uint64_t first_lsn)
{
    size_t idx = (size_t)(gen - s->lowest_gen);
    if (idx >= s->gen_cap) {
        size_t ncap = s->gen_cap ? s->gen_cap * 2 : 64;
        while (ncap <= idx)
            ncap *= 2;
        uint64_t *n = realloc(s->gen_first_lsn, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->gen_first_lsn = n;
        s->gen_cap = ncap;
    }
    s->gen_first_lsn[idx] = first_lsn;
    s->cur_gen = gen;
    return 0;
}

/* Writes the END record into the current generation and makes it durable. */
int
store__gen_close_current(struct store *s)
{
    struct gen_state *g = &s->cur;
    uint8_t payload[TDM_LOG_END_PAYLOAD];
    uint8_t frame[TDM_LOG_END_FRAME];
    struct log_end end = {.record_count = g->records, .gen_checksum = g->checksum};

    TDM_ASSERT(!g->closed);
    TDM_ASSERT(g->off + TDM_LOG_END_FRAME <= g->size);
    log_end_encode(&end, payload);
    log_record_encode(g->records ? g->last_lsn : 0, g->epoch, TDM_REC_END, payload, sizeof(payload),
                      frame);
    int ret = io_pwrite_all(s->io, g->fd, frame, sizeof(frame), (off_t)g->off);
    if (ret == 0)
        ret = s->io->fdatasync(s->io, g->fd);
    if (ret == 0) {
        g->closed = true;
        pthread_mutex_lock(&s->lock);
        s->syncs++;
        pthread_mutex_unlock(&s->lock);
    }
    return ret;
}

/*
 * Waits until the housekeeping thread has preallocated the generation after the current one.
 * Returns 0, TDM_ENOSPACE when the disk is full, or another error.
 */
static int
gen_wait_next(struct store *s)
{
    uint64_t gen = s->cur.gen + 1;

    pthread_mutex_lock(&s->lock);
    if (s->prealloc_upto < gen) {
        s->roll_stalls++;
        s->next_gen_error = 0;
        pthread_cond_signal(&s->hk_wake);
        while (s->prealloc_upto < gen && s->next_gen_error == 0 && !s->failed)
            pthread_cond_wait(&s->progress, &s->lock);
    }
    int err = s->prealloc_upto >= gen ? 0 : s->next_gen_error ? s->next_gen_error : s->failed;
    pthread_mutex_unlock(&s->lock);
    if (err == -ENOSPC || err == -EDQUOT)
        return TDM_ENOSPACE;
    return err;
}

/*
 * Makes the preallocated next generation current, sized to hold a frame of min_frame bytes.
 * The current generation must be closed already, and the next one ready (gen_wait_next).
 *
 * The new header is made durable before any record goes in, so a header that does not
 * read back is always corruption, never a crash artefact. (Letting the first records' sync
 * carry the header would save one fdatasync per roll, but a damaged header could then not be
 * told from one that was never synced, and records acknowledged under it would be wiped.)
 */
int
store__gen_open_next(struct store *s, uint64_t min_frame)
{
    uint64_t gen = s->cur.gen + 1;

    pthread_mutex_lock(&s->lock);
    TDM_ASSERT(s->prealloc_upto >= gen);
    pthread_mutex_unlock(&s->lock);

    char path[4096];
    store__gen_path(path, sizeof(path), s->log_dir, gen);
    int fd = s->io->open(s->io, path, O_RDWR, 0);
    if (fd < 0)
        return fd;

    uint64_t size = s->opt.generation_size;
    uint64_t need = TDM_LOG_HEADER_SIZE + min_frame + TDM_LOG_END_FRAME;
    if (need > size) /* a record larger than a generation gets a generation of its own */
        size = (need + 4095) & ~(uint64_t)4095;
    /* The file may be shorter than the generation: the record above, or a preallocation cut
     * short by a crash (recovery keeps blank files whatever their size), or a generation size
     * changed since it was made. The growth must be durable before the header that records
     * it: one fdatasync for both may keep the header and lose the growth, and recovery refuses
     * a generation shorter than its header says (tests/crash/test_oversize_roll_crash.c). */
    off_t have = 0;
    int ret = s->io->file_size(s->io, fd, &have);
    if (ret == 0 && (uint64_t)have < size) {
        ret = s->io->allocate(s->io, fd, (off_t)size);
        if (ret == 0)
            ret = s->io->fdatasync(s->io, fd);
    }
    if (ret < 0) {
        s->io->close(s->io, fd);
        return ret == -ENOSPC ? TDM_ENOSPACE : ret;
    }
    uint32_t prev_checksum = s->cur.checksum;
    uint64_t first_lsn = s->cur.last_lsn + 1;
    if (s->cur.fd >= 0)
        s->io->close(s->io, s->cur.fd);
    s->cur = (struct gen_state){
        .gen = gen,
        .fd = fd,
        .size = size,
        .off = TDM_LOG_HEADER_SIZE,
        .epoch = s->epoch,
        .first_lsn = first_lsn,
        .last_lsn = first_lsn - 1,
    };
    ret = gen_write_header(s, &s->cur, prev_checksum);
    if (ret < 0)
        return ret;

    pthread_mutex_lock(&s->lock);
    ret = store__gen_table_push(s, gen, first_lsn);
    s->syncs++;
    pthread_cond_signal(&s->hk_wake); /* keep STORE_PREALLOC_AHEAD generations ready */
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Closes the current generation and opens the next, large enough for min_frame. */
static int
gen_roll(struct store *s, uint64_t min_frame)
{
    /* Get the next file first: if the disk is full, the current generation stays open (its
     * END space is reserved) and what was written to it is still made durable. */
    int err = gen_wait_next(s);
    if (err) {
        int sret = s->io->fdatasync(s->io, s->cur.fd);
        return sret < 0 ? sret : err;
    }
    int ret = store__gen_close_current(s);
    if (ret == 0)
        ret = store__gen_open_next(s, min_frame);
    if (ret == 0)
        event_emit(TDM_EV_STORE_GENERATION_CLOSED, s->name,
                   "generation %" PRIu64 " closed; generation %" PRIu64 " is current",
                   s->cur.gen - 1, s->cur.gen);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Applying records to LMDB (shared by the apply thread and recovery)  */

int
store__apply_record(struct store *s, MDB_txn *txn, uint16_t type, const uint8_t *payload,
                    uint32_t len, struct mail_result *result_r, const char **error_r)
{
    memset(result_r, 0, sizeof(*result_r));
    if (type == TDM_REC_NOOP)
        return 0;
    const struct store_record_handler *h = s->opt.handler;
    if (!mail_is_mail_record(type)) {
        if (!h || !h->handles(type)) {
            *error_r = "unknown record type";
            return TDM_ECORRUPT;
        }
        int ret = h->apply(s->handler_state, txn, type, payload, len, result_r);
        if (ret < 0)
            *error_r = tdm_strerror(ret);
        return ret;
    }
    struct mail_decoded dec;
    const char *why = NULL;
    int ret = mail_op_decode(type, payload, len, &dec, &why);
    if (ret < 0) {
        *error_r = why ? why : tdm_strerror(ret);
        return ret == -ENOMEM ? ret : TDM_ECORRUPT;
    }
    ret = mail_apply(&s->mail, txn, &dec.op, result_r);
    mail_decoded_clear(&dec);
    if (ret < 0)
        *error_r = tdm_strerror(ret);
    return ret;
}

/* ------------------------------------------------------------------ */
/* The log thread                                                     */

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
 * Writes batch to the log and makes it durable. On failure, *failed_from_r is the first entry
 * that is not durable (entries before it are).
 */
static int
log_write_batch(struct store *s, struct pending *batch, struct pending **failed_from_r)
{
    uint64_t start = s->cur.off;
    size_t blen = 0;
    int ret;

    *failed_from_r = batch;
    for (struct pending *p = batch; p; p = p->next) {
        if (s->cur.off + blen + p->frame_len + TDM_LOG_END_FRAME > s->cur.size) {
            if (blen > 0) {
                ret = io_pwrite_all(s->io, s->cur.fd, s->wbuf, blen, (off_t)start);
                if (ret < 0)
                    return ret;
                s->cur.off += blen;
                blen = 0;
            }
            ret = gen_roll(s, p->frame_len);
            if (ret < 0) {
                *failed_from_r = p;
                return ret;
            }
            start = s->cur.off;
        }
        ret = wbuf_reserve(s, blen + p->frame_len);
        if (ret < 0)
            return ret;
        memcpy(s->wbuf + blen, p->frame, p->frame_len);
        blen += p->frame_len;
        s->cur.checksum = crc32c(s->cur.checksum, p->frame, p->frame_len);
        s->cur.records++;
        s->cur.last_lsn = p->lsn;
        *failed_from_r = p->next;
    }
    *failed_from_r = batch; /* until the sync succeeds nothing in the last part is durable */
    if (blen > 0) {
        ret = io_pwrite_all(s->io, s->cur.fd, s->wbuf, blen, (off_t)start);
        if (ret < 0)
            return ret;
        s->cur.off += blen;
    }
    uint64_t t0 = now_us_mono();
    ret = s->io->fdatasync(s->io, s->cur.fd);
    if (ret < 0)
        return ret;
    uint64_t took = now_us_mono() - t0;
    /* EWMA with weight 1/8: follows the disk within a few dozen syncs. */
    s->sync_ewma_us = s->sync_ewma_us ? (7 * s->sync_ewma_us + took) / 8 : took;
    *failed_from_r = NULL;
    return 0;
}

static void
fail_list(struct pending *p, int status)
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
    fail_list(failed_from, err == TDM_ENOSPACE ? TDM_ENOSPACE : err);
    struct pending *queued = s->log_head;
    s->log_head = NULL;
    s->log_tailp = &s->log_head;
    s->log_count = 0;
    fail_list(queued, err == TDM_ENOSPACE ? TDM_ENOSPACE : err);

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
 * or three fdatasyncs instead of one. Wait until every commit in flight is queued, for at most
 * half the recent fdatasync time (capped by group_commit_wait_us): the wait never exceeds what
 * a sync costs anyway, and a lone committer (nothing else in flight) never waits. Lock held.
 */
static void
group_commit_wait(struct store *s)
{
    if (s->opt.group_commit_wait_us == 0 || s->closing)
        return;
    uint64_t wait_us = s->sync_ewma_us / 2;
    if (wait_us > s->opt.group_commit_wait_us)
        wait_us = s->opt.group_commit_wait_us;
    if (wait_us == 0 || s->log_count >= s->inflight)
        return;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)(wait_us * 1000u);
    while (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (s->log_count < s->inflight && !s->closing)
        if (pthread_cond_timedwait(&s->log_wake, &s->lock, &deadline) != 0)
            break;
}

static void *
log_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->log_head && !s->closing && s->roll_requested == s->roll_done) {
            if (s->cur.records > 0 && !s->cur.closed && s->opt.idle_close_ms > 0) {
                uint64_t due = s->last_write_ms + s->opt.idle_close_ms;
                uint64_t now = store__now_ms();
                if (now >= due) {
                    s->roll_requested++; /* idle close: ship what we have */
                    break;
                }
                struct timespec ts;
                deadline_after_ms(&ts, due - now);
                pthread_cond_timedwait(&s->log_wake, &s->lock, &ts);
            } else {
                pthread_cond_wait(&s->log_wake, &s->lock);
            }
        }
        if (!s->log_head && s->roll_requested == s->roll_done && s->closing)
            break;
        if (s->log_head)
            group_commit_wait(s);

        struct pending *batch = s->log_head;
        s->log_head = NULL;
        s->log_tailp = &s->log_head;
        s->log_count = 0;
        uint64_t roll_target = s->roll_requested;
        int err = s->failed;
        pthread_mutex_unlock(&s->lock);

        struct pending *failed_from = batch;
        if (!err && batch)
            err = log_write_batch(s, batch, &failed_from);
        if (!err && roll_target != s->roll_done && s->cur.records > 0 && !s->cur.closed)
            err = gen_roll(s, 0);
        if (batch)
            s->last_write_ms = store__now_ms();

        pthread_mutex_lock(&s->lock);
        s->roll_done = roll_target;
        if (batch)
            s->syncs++;
        if (err) {
            handle_log_failure(s, err, batch, failed_from);
        } else if (batch) {
            struct pending *last = batch;
            while (last->next)
                last = last->next;
            s->durable_lsn = last->lsn;
            apply_queue_push(s, batch);
        }
        pthread_cond_broadcast(&s->progress);
    }
    s->log_done = true;
    pthread_cond_signal(&s->apply_wake);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* The apply thread                                                   */

/* Applies the entries with status 0 in one LMDB transaction. */
static int
apply_batch_txn(struct store *s, struct pending *batch, uint64_t *applied_r, const char **error_r)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        *error_r = mdb_strerror(rc);
        return store__lmdb_err(rc);
    }
    uint64_t applied = *applied_r;
    int ret = 0;
    for (struct pending *p = batch; p && ret == 0; p = p->next) {
        if (p->status != 0 || p->lsn <= applied)
            continue;
        ret = store__apply_record(s, txn, p->type, p->frame + TDM_LOG_FRAME_HEADER,
                                  (uint32_t)(p->frame_len - TDM_LOG_FRAME_OVERHEAD), &p->result,
                                  error_r);
        applied = p->lsn;
    }
    if (ret == 0 && applied != *applied_r)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_APPLIED, applied);
    if (ret == 0) {
        pthread_mutex_lock(&s->lock);
        uint64_t ckpt = s->checkpoint_lsn;
        pthread_mutex_unlock(&s->lock);
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CHECKPOINT, ckpt);
    }
    if (ret < 0) {
        mdb_txn_abort(txn);
        if (!*error_r)
            *error_r = tdm_strerror(ret);
        return ret;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        *error_r = mdb_strerror(rc);
        return store__lmdb_err(rc);
    }
    *applied_r = applied;
    return 0;
}

static void
apply_batch(struct store *s, struct pending *batch)
{
    pthread_mutex_lock(&s->lock);
    uint64_t applied = s->applied_lsn;
    pthread_mutex_unlock(&s->lock);

    bool any = false;
    for (struct pending *p = batch; p; p = p->next)
        any |= p->status == 0;
    if (!any)
        return;

    const char *why = NULL;
    int ret = apply_batch_txn(s, batch, &applied, &why);
    if (ret == -ENOSPC && s->reserve_path) {
        /* LMDB needs room to grow: give it the reserve, then refuse new work. */
        if (unlink(s->reserve_path) == 0) {
            pthread_mutex_lock(&s->lock);
            if (!s->reserve_mode)
                event_emit(TDM_EV_STORE_DISK_RESERVE, s->name,
                           "disk full while updating %s: reserve released, new commits are "
                           "refused; the database can still be shut down cleanly",
                           s->lmdb_dir);
            s->reserve_mode = true;
            pthread_mutex_unlock(&s->lock);
            why = NULL;
            ret = apply_batch_txn(s, batch, &applied, &why);
        }
    }
    pthread_mutex_lock(&s->lock);
    if (ret < 0) {
        if (!s->failed) {
            event_emit(TDM_EV_STORE_WRITE_FAILED, s->name,
                       "applying records to %s failed: %s; the database is Failed (the records "
                       "are durable in the log and are replayed at the next mount)",
                       s->lmdb_dir, why ? why : tdm_strerror(ret));
            s->failed = ret;
        }
        fail_list(batch, ret);
    } else {
        s->applied_lsn = applied;
    }
    pthread_mutex_unlock(&s->lock);
}

static void *
apply_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->apply_head && !s->log_done)
            pthread_cond_wait(&s->apply_wake, &s->lock);
        if (!s->apply_head)
            break;
        struct pending *batch = s->apply_head;
        s->apply_head = NULL;
        s->apply_tailp = &s->apply_head;
        pthread_mutex_unlock(&s->lock);

        apply_batch(s, batch);

        pthread_mutex_lock(&s->lock);
        for (struct pending *p = batch; p; p = p->next)
            if (p->status == 0)
                s->bytes_since_ckpt += p->frame_len;
        if (s->bytes_since_ckpt >= s->opt.checkpoint_bytes)
            pthread_cond_signal(&s->hk_wake);
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);

        while (batch) {
            struct pending *p = batch;
            batch = p->next;
            p->cb(p->ctx, p->status, p->status == 0 ? p->lsn : 0, &p->result);
            free(p->frame);
            free(p);
            pthread_mutex_lock(&s->lock);
            s->inflight--;
            if (s->log_count > 0 && s->log_count >= s->inflight)
                pthread_cond_signal(&s->log_wake);
            pthread_mutex_unlock(&s->lock);
        }
        pthread_mutex_lock(&s->lock);
    }
    s->apply_done = true;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Housekeeping: next generation, checkpoints, truncation             */

int
store__checkpoint(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t target = s->applied_lsn;
    int failed = s->failed;
    pthread_mutex_unlock(&s->lock);
    if (failed)
        return TDM_EFAILED;

    int rc = mdb_env_sync(s->env, 1);
    pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        int err = store__lmdb_err(rc);
        if (!s->failed) {
            event_emit(TDM_EV_STORE_WRITE_FAILED, s->name,
                       "syncing %s at a checkpoint failed: %s; the database is Failed", s->lmdb_dir,
                       mdb_strerror(rc));
            s->failed = err;
        }
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);
        return err;
    }
    if (target > s->checkpoint_lsn)
        s->checkpoint_lsn = target;
    s->bytes_since_ckpt = 0;
    s->last_ckpt_ms = store__now_ms();
    pthread_mutex_unlock(&s->lock);
    if (s->opt.checkpoint_hook)
        s->opt.checkpoint_hook(s->opt.hook_ctx, target);
    return 0;
}

static int truncate_locked(struct store *s);

/* Deletes generations wholly below the checkpoint and below the replication floor. */
int
store__truncate(struct store *s)
{
    /* One truncation at a time: store_checkpoint() and the housekeeping thread may race. */
    pthread_mutex_lock(&s->truncate_lock);
    int ret = truncate_locked(s);
    pthread_mutex_unlock(&s->truncate_lock);
    return ret;
}

static int
truncate_locked(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t low = s->lowest_gen, cur = s->cur_gen, ckpt = s->checkpoint_lsn, floor = s->floor;
    uint64_t upto = low; /* first generation to keep */
    while (upto < cur && upto < floor && s->gen_first_lsn[upto + 1 - low] - 1 <= ckpt)
        upto++;
    pthread_mutex_unlock(&s->lock);
    if (upto == low)
        return 0;

    uint64_t g;
    int ret = 0;
    for (g = low; g < upto; g++) {
        char path[4096];
        store__gen_path(path, sizeof(path), s->log_dir, g);
        ret = s->io->unlink(s->io, path);
        if (ret < 0 && ret != -ENOENT)
            break;
        ret = 0;
    }
    if (g > low)
        s->io->sync_dir(s->io, s->log_dir);

    pthread_mutex_lock(&s->lock);
    size_t drop = (size_t)(g - s->lowest_gen);
    memmove(s->gen_first_lsn, s->gen_first_lsn + drop,
            (size_t)(s->cur_gen - g + 1) * sizeof(uint64_t));
    s->lowest_gen = g;
    pthread_mutex_unlock(&s->lock);
    if (g > low)
        event_emit(TDM_EV_STORE_TRUNCATED, s->name,
                   "log generations %" PRIu64 "..%" PRIu64 " deleted (below checkpoint LSN %" PRIu64
                   ")",
                   low, g - 1, ckpt);
    return ret;
}

static void *
hk_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->hk_stop) {
        uint64_t want = s->prealloc_upto + 1;
        bool need_gen = want <= s->cur_gen + STORE_PREALLOC_AHEAD && !s->failed;
        uint64_t since = store__now_ms() - s->last_ckpt_ms;
        bool need_ckpt =
            !s->failed && s->applied_lsn > s->checkpoint_lsn &&
            (s->bytes_since_ckpt >= s->opt.checkpoint_bytes || since >= s->opt.checkpoint_ms);
        if (!need_gen && !need_ckpt) {
            struct timespec ts;
            uint64_t wait = s->opt.checkpoint_ms > since ? s->opt.checkpoint_ms - since : 1000;
            deadline_after_ms(&ts, wait < 1000 ? wait : 1000);
            pthread_cond_timedwait(&s->hk_wake, &s->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->lock);

        if (need_gen) {
            int ret = store__gen_file_create(s->io, s->log_dir, want, s->opt.generation_size);
            pthread_mutex_lock(&s->lock);
            if (ret == 0)
                s->prealloc_upto = want; /* only this thread moves it, one at a time */
            else
                s->next_gen_error = ret;
            pthread_cond_broadcast(&s->progress);
            pthread_mutex_unlock(&s->lock);
            if (ret < 0) {
                /* Do not spin on a full disk: the log thread decides what it means. */
                pthread_mutex_lock(&s->lock);
                struct timespec ts;
                deadline_after_ms(&ts, 1000);
                pthread_cond_timedwait(&s->hk_wake, &s->lock, &ts);
                pthread_mutex_unlock(&s->lock);
            }
        }
        if (need_ckpt && store__checkpoint(s) == 0)
            store__truncate(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Threads                                                            */

int
store__threads_start(struct store *s)
{
    int rc = pthread_create(&s->log_thread, NULL, log_thread_main, s);
    if (rc != 0)
        return -rc;
    rc = pthread_create(&s->apply_thread, NULL, apply_thread_main, s);
    if (rc != 0) {
        pthread_mutex_lock(&s->lock);
        s->closing = true;
        pthread_cond_broadcast(&s->log_wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->log_thread, NULL);
        return -rc;
    }
    s->threads_started = true;
    rc = pthread_create(&s->hk_thread, NULL, hk_thread_main, s);
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
    pthread_join(s->log_thread, NULL);
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
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->frame_len = log_frame_size((uint32_t)len);
    p->frame = malloc(p->frame_len);
    if (!p->frame) {
        free(p);
        return -ENOMEM;
    }
    p->type = type;
    p->cb = cb;
    p->ctx = ctx;

    pthread_mutex_lock(&s->lock);
    int err = s->failed         ? TDM_EFAILED
              : s->reserve_mode ? TDM_ENOSPACE
              : s->closing      ? TDM_ECLOSED
                                : 0;
    if (err) {
        pthread_mutex_unlock(&s->lock);
        free(p->frame);
        free(p);
        return err;
    }
    /* The LSN is assigned and the frame encoded under the lock so that queue order is LSN order. */
    p->lsn = s->next_lsn++;
    log_record_encode(p->lsn, s->epoch, type, payload, (uint32_t)len, p->frame);
    *s->log_tailp = p;
    s->log_tailp = &p->next;
    s->log_count++;
    s->inflight++;
    s->commits++;
    /* Wake the log thread for the first record, and when the last one it waits for arrives. */
    if (s->log_count == 1 || s->log_count >= s->inflight)
        pthread_cond_signal(&s->log_wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

struct commit_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    uint64_t lsn;
    struct mail_result *result;
};

static void
commit_wait_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    struct commit_wait *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->status = status;
    w->lsn = lsn;
    if (w->result)
        *w->result = *result;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int
store_commit(struct store *s, uint16_t type, const void *payload, size_t len, uint64_t *lsn_r,
             struct mail_result *result_r)
{
    struct commit_wait w = {
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .result = result_r};
    int ret = store_commit_async(s, type, payload, len, commit_wait_cb, &w);
    if (ret == 0) {
        pthread_mutex_lock(&w.lock);
        while (!w.done)
            pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        ret = w.status;
        if (lsn_r)
            *lsn_r = w.lsn;
    }
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
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
    pthread_cond_signal(&s->log_wake);
    while (s->roll_done < target && !s->failed && !s->log_done)
        pthread_cond_wait(&s->progress, &s->lock);
    int ret = s->failed ? TDM_EFAILED : s->roll_done < target ? TDM_ECLOSED : 0;
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
    st->current_generation = s->cur_gen;
    st->lowest_generation = s->lowest_gen;
    uint64_t needed = s->cur_gen;
    for (uint64_t g = s->lowest_gen; g < s->cur_gen; g++)
        if (s->gen_first_lsn[g + 1 - s->lowest_gen] - 1 > s->checkpoint_lsn) {
            needed = g;
            break;
        }
    st->needed_low = needed;
    st->truncation_floor = s->floor;
    st->commits = s->commits;
    st->syncs = s->syncs;
    st->failed = s->failed != 0;
    st->disk_reserve = s->reserve_mode;
    pthread_mutex_unlock(&s->lock);
}

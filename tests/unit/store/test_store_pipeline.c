/*
 * The log workers' pipeline (src/store/store_log.c): one batch's write goes to the file while
 * the previous batch's fdatasync is under way, each batch is acknowledged only after its own
 * sync, batches complete in log order whatever order their syncs return in, and a batch after
 * one whose sync failed fails too.
 *
 * An io layer holds every fdatasync of log records until the test releases it, by number, with
 * the result it is to return; so the interleavings are chosen by the test, not by timing.
 */
#include "store/store.h"
#include "store/store_int.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"

#define MAX_FD 1024
#define MAX_SYNCS 8

/* ---- the gated io layer ---- */

struct gate {
    struct io_ops ops;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool records_written[MAX_FD]; /* the fd's last write was log records (past the header) */
    unsigned entered;             /* gated syncs called so far; sync n is the nth */
    bool released[MAX_SYNCS + 1];
    int result[MAX_SYNCS + 1];
    unsigned record_writes;   /* writes of log records */
    unsigned writes_in_sync1; /* of those, made while gated sync 1 was held */
};

static struct gate gate;

static ssize_t
gate_pwrite(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off)
{
    ssize_t ret = io_ops_posix.pwrite(io, fd, buf, len, off);
    pthread_mutex_lock(&gate.lock);
    if (fd >= 0 && fd < MAX_FD) {
        /* Spares get their header at 0 (housekeeping); records go after it. */
        gate.records_written[fd] = off >= TDM_LOG_HEADER_SIZE;
        if (off >= TDM_LOG_HEADER_SIZE) {
            gate.record_writes++;
            if (gate.entered >= 1 && !gate.released[1])
                gate.writes_in_sync1++;
        }
    }
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
    return ret;
}

static int
gate_fdatasync(const struct io_ops *io, int fd)
{
    pthread_mutex_lock(&gate.lock);
    if (fd < 0 || fd >= MAX_FD || !gate.records_written[fd] || gate.entered == MAX_SYNCS) {
        pthread_mutex_unlock(&gate.lock);
        return io_ops_posix.fdatasync(io, fd);
    }
    unsigned n = ++gate.entered;
    pthread_cond_broadcast(&gate.cond);
    while (!gate.released[n])
        pthread_cond_wait(&gate.cond, &gate.lock);
    int result = gate.result[n];
    pthread_mutex_unlock(&gate.lock);
    int ret = io_ops_posix.fdatasync(io, fd);
    return result ? result : ret;
}

static void
gate_release(unsigned n, int result)
{
    pthread_mutex_lock(&gate.lock);
    gate.result[n] = result;
    gate.released[n] = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.lock);
}

/* Waits until `entered` gated syncs have been called and `writes` record writes made; fails
 * the test if that has not happened after 10 s (a store that does not overlap never gets
 * there). */
static void
gate_wait(unsigned entered, unsigned writes)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&gate.lock);
    bool late = false;
    while ((gate.entered < entered || gate.record_writes < writes) && !late)
        late = pthread_cond_timedwait(&gate.cond, &gate.lock, &deadline) != 0;
    pthread_mutex_unlock(&gate.lock);
    if (late)
        fail_msg("after 10 s: %u syncs called, %u record writes; waiting for %u and %u",
                 gate.entered, gate.record_writes, entered, writes);
}

/* ---- commits and their answers ---- */

struct answers {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    uint64_t lsn[4];
    int status[4];
};

static struct answers answers;

static void
answer_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    (void)ctx;
    (void)result;
    pthread_mutex_lock(&answers.lock);
    if (answers.n < 4) {
        answers.lsn[answers.n] = lsn;
        answers.status[answers.n] = status;
    }
    answers.n++;
    pthread_cond_broadcast(&answers.cond);
    pthread_mutex_unlock(&answers.lock);
}

static unsigned
answered(void)
{
    pthread_mutex_lock(&answers.lock);
    unsigned n = answers.n;
    pthread_mutex_unlock(&answers.lock);
    return n;
}

static void
wait_answers(unsigned n)
{
    pthread_mutex_lock(&answers.lock);
    while (answers.n < n)
        pthread_cond_wait(&answers.cond, &answers.lock);
    pthread_mutex_unlock(&answers.lock);
}

static void
commit(struct store *s, uint8_t tag)
{
    uint8_t payload[256];
    memset(payload, tag, sizeof(payload));
    assert_int_equal(store_commit_async(s, TDM_REC_NOOP, payload, sizeof(payload), answer_cb, NULL),
                     0);
}

/* ---- fixture ---- */

static char tmpdir[256];
static char db[300];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "store_pipeline"), 0);
    snprintf(db, sizeof(db), "%s/db", tmpdir);
    event_set_sink(NULL);
    memset(&gate, 0, sizeof(gate));
    pthread_mutex_init(&gate.lock, NULL);
    pthread_cond_init(&gate.cond, NULL);
    gate.ops = io_ops_posix;
    gate.ops.pwrite = gate_pwrite;
    gate.ops.fdatasync = gate_fdatasync;
    memset(&answers, 0, sizeof(answers));
    pthread_mutex_init(&answers.lock, NULL);
    pthread_cond_init(&answers.cond, NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    pthread_mutex_destroy(&gate.lock);
    pthread_cond_destroy(&gate.cond);
    pthread_mutex_destroy(&answers.lock);
    pthread_cond_destroy(&answers.cond);
    return 0;
}

static struct store *
open_gated(void)
{
    struct store_options o;
    store_options_init(&o);
    const char *err = NULL;
    assert_int_equal(store_create(db, &o, &err), 0);
    o.io = &gate.ops;
    struct store *s = NULL;
    assert_int_equal(store_open(db, &o, &s, &err), 0);
    return s;
}

/* Releases every gated sync from n on as it comes, so that the store can close. */
static void
gate_open_all(unsigned from)
{
    for (unsigned i = from; i <= MAX_SYNCS; i++)
        gate_release(i, 0);
}

/* ---- tests ---- */

/* Queues n entries with LSNs first.. on s's log queue, as store_commit_async() does. */
static void
queue_entries(struct store *s, struct pending *e, unsigned n, uint64_t first)
{
    for (unsigned i = 0; i < n; i++) {
        e[i] = (struct pending){.lsn = first + i};
        *s->log_tailp = &e[i];
        s->log_tailp = &e[i].next;
        s->log_count++;
        s->inflight++;
    }
}

static void
assert_batch(struct pending *head, uint64_t records, uint64_t want, uint64_t first_lsn)
{
    assert_int_equal(records, want);
    uint64_t n = 0;
    for (struct pending *p = head; p; p = p->next)
        assert_int_equal(p->lsn, first_lsn + n++);
    assert_int_equal(n, want);
}

/* Commits queued together while no batch is in its sync go into two batches (so that the
 * second is written while the first syncs): the first takes half of what is expected, as a
 * prefix in LSN order, and the rest stays queued and can still be appended to. While a batch
 * is in its sync, or when closing, a batch takes everything. */
static void
test_batch_split_while_nothing_syncs(void **state)
{
    (void)state;
    struct store *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->log_tailp = &s->log_head;
    struct pending e[32];
    uint64_t n = 0;

    queue_entries(s, e, 10, 1);
    struct pending *b = store__log_take_batch(s, &n);
    assert_batch(b, n, 5, 1);
    assert_int_equal(s->log_count, 5);
    assert_int_equal(s->log_head->lsn, 6);
    queue_entries(s, e + 10, 1, 11); /* the tail pointer still points at the queue's end */
    s->log_in_sync = 5;              /* the first batch syncs: the next takes everything */
    b = store__log_take_batch(s, &n);
    assert_batch(b, n, 6, 6);
    assert_null(s->log_head);
    assert_int_equal(s->log_count, 0);
    assert_ptr_equal(s->log_tailp, &s->log_head);

    /* Nothing in sync, and the last batch was as large as everything in flight: all. */
    s->log_in_sync = 0;
    s->inflight = 0;
    s->last_batch = 20;
    queue_entries(s, e, 10, 12);
    b = store__log_take_batch(s, &n);
    assert_batch(b, n, 10, 12);

    /* A lone commit is never held back, and closing takes everything. */
    s->inflight = 0;
    s->last_batch = 0;
    queue_entries(s, e, 1, 22);
    b = store__log_take_batch(s, &n);
    assert_batch(b, n, 1, 22);
    s->inflight = 0;
    s->closing = true;
    queue_entries(s, e, 9, 23);
    b = store__log_take_batch(s, &n);
    assert_batch(b, n, 9, 23);
    free(s);
}

static void
test_write_overlaps_sync_and_completes_in_order(void **state)
{
    (void)state;
    struct store *s = open_gated();

    commit(s, 1);
    gate_wait(1, 1); /* batch 1 written, its sync held */
    commit(s, 2);
    gate_wait(2, 2); /* batch 2 written and its sync called while sync 1 is still held */
    pthread_mutex_lock(&gate.lock);
    assert_int_equal(gate.writes_in_sync1, 1);
    pthread_mutex_unlock(&gate.lock);
    assert_int_equal(answered(), 0);

    /* Batch 2's sync returns first: it covers batch 1's write too, but batch 1 is answered
     * by its own sync, and nothing is answered out of order. */
    gate_release(2, 0);
    usleep(50 * 1000);
    assert_int_equal(answered(), 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.durable_lsn, 0);

    gate_release(1, 0);
    wait_answers(2);
    assert_int_equal(answers.status[0], 0);
    assert_int_equal(answers.status[1], 0);
    assert_int_equal(answers.lsn[0], 1);
    assert_int_equal(answers.lsn[1], 2);
    store_get_status(s, &st);
    assert_int_equal(st.durable_lsn, 2);
    assert_int_equal(st.syncs, 2);

    gate_open_all(3);
    assert_int_equal(store_close(&s), 0);
}

static void
test_batch_after_failed_sync_fails(void **state)
{
    (void)state;
    struct store *s = open_gated();

    commit(s, 1);
    gate_wait(1, 1);
    commit(s, 2);
    gate_wait(2, 2);
    /* Sync 1 fails; sync 2 succeeds, but after a failed writeback a later fdatasync may
     * succeed without the pages that failed (Linux reports the error once): batch 2 is not
     * known to be durable and fails with batch 1. */
    gate_release(2, 0);
    gate_release(1, -EIO);
    wait_answers(2);
    assert_int_equal(answers.lsn[0], 0);
    assert_int_equal(answers.lsn[1], 0);
    assert_int_not_equal(answers.status[0], 0);
    assert_int_not_equal(answers.status[1], 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_true(st.failed);
    assert_int_equal(st.durable_lsn, 0);

    gate_open_all(3);
    (void)store_close(&s); /* Failed: the close reports it */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_split_while_nothing_syncs),
        cmocka_unit_test_setup_teardown(test_write_overlaps_sync_and_completes_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batch_after_failed_sync_fails, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Replication, the store side: the active's durable extents and hook (store_ship.c), min_epoch
 * at open, and copies (store_copy.c) fed real generation files byte range by byte range,
 * compared with the active by digest.
 */
#include "store/store.h"
#include "store/store_int.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"

static char tmpdir[256];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "store-copy"), 0);
    event_set_sink(NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

static const char *
active_dir(void)
{
    static char p[300];
    snprintf(p, sizeof(p), "%s/active", tmpdir);
    return p;
}

static void
small_options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->reserve_bytes = 64 * 1024;
    o->idle_close_ms = 0;
    o->checkpoint_ms = 3600 * 1000;
}

static struct store *
active_open(const struct store_options *o, bool create)
{
    const char *err = NULL;
    if (create && store_create(active_dir(), o, &err) != 0)
        fail_msg("create: %s", err);
    struct store *s = NULL;
    if (store_open(active_dir(), o, &s, &err) != 0)
        fail_msg("open: %s", err);
    return s;
}

static uint64_t
commit_noop(struct store *s, size_t len, uint8_t fill)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memset(buf, fill, len);
    uint64_t lsn = 0;
    assert_int_equal(store_commit(s, TDM_REC_NOOP, buf, len, &lsn, NULL), 0);
    free(buf);
    return lsn;
}

/* ---- the active side ---- */

struct hook_calls {
    int n;
    uint64_t generation, end, lsn;
};

static void
durable_hook(void *ctx, uint64_t generation, uint64_t durable_end, uint64_t durable_lsn)
{
    struct hook_calls *h = ctx;
    h->n++;
    h->generation = generation;
    h->end = durable_end;
    h->lsn = durable_lsn;
}

static void
test_extent_follows_the_durable_position(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = active_open(&o, true);
    struct store_log_extent e;
    const uint64_t begun = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME;

    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.generation, 1);
    assert_int_equal(e.durable_end, begun);
    assert_int_equal(e.file_size, 64 * 1024);
    assert_int_equal(e.epoch, 1);
    assert_int_equal(e.first_lsn, 1);
    assert_int_equal(e.last_lsn, 0);
    assert_false(e.closed);
    assert_int_equal(store_log_extent(s, 2, &e), TDM_ENOTFOUND);
    assert_int_equal(store_log_extent(s, 0, &e), TDM_ENOTFOUND);

    struct hook_calls h = {0};
    store_set_durable_hook(s, durable_hook, &h);
    assert_int_equal(commit_noop(s, 100, 1), 1);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.generation, 1);
    assert_int_equal(h.end, begun + log_frame_size(100));
    assert_int_equal(h.lsn, 1);
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.durable_end, h.end);
    assert_int_equal(e.last_lsn, 1);

    /* A roll: END durable, and the next generation is not part of the log until begun. */
    assert_int_equal(store_roll(s), 0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.end, begun + log_frame_size(100) + TDM_LOG_END_FRAME);
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_true(e.closed);
    assert_int_equal(e.durable_end, h.end);
    assert_int_equal(store_log_extent(s, 2, &e), TDM_ENOTFOUND);
    assert_int_equal(commit_noop(s, 10, 2), 2);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_int_equal(e.first_lsn, 2);
    assert_int_equal(e.last_lsn, 2);
    assert_int_equal(e.durable_end, begun + log_frame_size(10));
    assert_false(e.closed);
    /* Generation 1 stays as it was, its last LSN from the table. */
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.last_lsn, 1);
    assert_true(e.closed);

    /* The file holds exactly those bytes: END just before durable_end. */
    int fd = -1;
    assert_int_equal(store_log_open_generation(s, 1, &fd), 0);
    uint8_t frame[TDM_LOG_END_FRAME];
    assert_int_equal(pread(fd, frame, sizeof(frame), (off_t)(e.durable_end - sizeof(frame))),
                     (ssize_t)sizeof(frame));
    close(fd);
    struct log_record rec;
    size_t flen = 0;
    const char *why = NULL;
    assert_int_equal(log_record_decode(frame, sizeof(frame), &rec, &flen, &why), 0);
    assert_int_equal(rec.type, TDM_REC_END);

    /* Cleared: no more calls. */
    store_set_durable_hook(s, NULL, NULL);
    commit_noop(s, 10, 3);
    assert_int_equal(h.n, 3);

    /* Truncated generations are gone from the extents (the floor allows it by default). */
    assert_int_equal(store_checkpoint(s), 0);
    assert_int_equal(store_log_extent(s, 1, &e), TDM_ENOTFOUND);
    assert_int_equal(store_log_open_generation(s, 1, &fd), TDM_ENOTFOUND);
    assert_int_equal(store_close(&s), 0);

    /* Recovery rebuilds the same extents. */
    s = active_open(&o, false);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_true(e.closed); /* closed at the clean shutdown */
    assert_int_equal(e.first_lsn, 2);
    assert_int_equal(e.last_lsn, 3);
    assert_int_equal(e.durable_end, begun + 2 * log_frame_size(10) + TDM_LOG_END_FRAME);
    assert_int_equal(store_close(&s), 0);
}

static void
test_min_epoch_begins_a_generation_of_the_new_epoch(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(active_dir(), &o, &err), 0);
    /* A crash (no clean close): the current generation is left open. */
    pid_t pid = fork();
    if (pid == 0) {
        struct store *c = NULL;
        if (store_open(active_dir(), &o, &c, &err) != 0)
            _exit(2);
        commit_noop(c, 50, 1);
        commit_noop(c, 50, 2);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);

    o.min_epoch = 7;
    struct store *s = active_open(&o, false);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    struct store_log_extent e;
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_true(e.closed);
    assert_int_equal(e.epoch, 1);
    assert_int_equal(commit_noop(s, 50, 3), 3);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_int_equal(e.epoch, 7);
    assert_int_equal(e.first_lsn, 3);
    assert_int_equal(store_close(&s), 0);

    /* The epoch sticks without the option. */
    o.min_epoch = 0;
    s = active_open(&o, false);
    assert_int_equal(commit_noop(s, 50, 4), 4);
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    assert_int_equal(store_log_extent(s, 3, &e), 0);
    assert_int_equal(e.epoch, 7);
    assert_int_equal(store_close(&s), 0);
    /* A lower min_epoch changes nothing. */
    o.min_epoch = 3;
    s = active_open(&o, false);
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    assert_int_equal(store_close(&s), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_extent_follows_the_durable_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_epoch_begins_a_generation_of_the_new_epoch, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

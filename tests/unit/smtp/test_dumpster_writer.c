/*
 * The dumpster's writes off the loop (src/smtp/dumpster_writer.c). dumpster_put_encoded is
 * wrapped at link time: while held, the helper thread's call waits on a pipe before it writes,
 * as a slow disk would. Meanwhile the loop goes on (a timer fires again and again) and the
 * batch's callback has not run; once released the entry is on disk before the callback runs.
 * A writer freed with work still queued writes it on the calling thread and runs every
 * callback, in order. A write that fails is said with 5101 and still calls back.
 */
#include "smtp/dumpster_writer.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int __real_dumpster_put_encoded(const char *datadir, const char *database, int64_t time,
                                const uint8_t *buf, size_t len);
int __wrap_dumpster_put_encoded(const char *datadir, const char *database, int64_t time,
                                const uint8_t *buf, size_t len);

static atomic_bool hold;        /* the next puts wait for a byte on release[0] */
static atomic_int puts_begun;   /* puts that entered the wrapper */
static atomic_bool put_on_loop; /* a held put ran on the loop's thread: it would block */
static pthread_t loop_thread;
static int release[2];

int
__wrap_dumpster_put_encoded(const char *datadir, const char *database, int64_t time,
                            const uint8_t *buf, size_t len)
{
    atomic_fetch_add(&puts_begun, 1);
    if (atomic_load(&hold) && pthread_equal(pthread_self(), loop_thread)) {
        atomic_store(&put_on_loop, true);
        return -EIO; /* instead of waiting forever */
    }
    if (atomic_load(&hold)) {
        char c;
        while (read(release[0], &c, 1) < 0)
            ;
    }
    return __real_dumpster_put_encoded(datadir, database, time, buf, len);
}

static char datadir[64];
static struct event_base *base;

static int
setup(void **state)
{
    (void)state;
    strcpy(datadir, "/tmp/tdm-test-dwriter-XXXXXX");
    assert_non_null(mkdtemp(datadir));
    assert_int_equal(pipe(release), 0);
    atomic_store(&hold, false);
    atomic_store(&puts_begun, 0);
    atomic_store(&put_on_loop, false);
    loop_thread = pthread_self();
    base = event_base_new();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    conn_base_free(&base);
    close(release[0]);
    close(release[1]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", datadir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char body[] = "Subject: kept\r\n\r\nhello\r\n";

static struct dumpster_batch *
batch_of(const char *db, uint8_t idbyte)
{
    struct dumpster_rcpt r = {.address = "alice@example.test"};
    memset(r.id, idbyte, sizeof r.id);
    struct dumpster_entry e = {.time = 1764130000,
                               .sender = "s@example.org",
                               .n_rcpts = 1,
                               .rcpts = &r,
                               .body = (const uint8_t *)body,
                               .body_len = sizeof body - 1};
    struct dumpster_batch *b = NULL;
    assert_int_equal(dumpster_batch_add(&b, db, &e), 0);
    return b;
}

static size_t
count(const char *db)
{
    char **paths;
    size_t n;
    assert_int_equal(dumpster_list(datadir, db, INT64_MIN, &paths, &n), 0);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return n;
}

struct seen {
    int written;
    int status;     /* the callback's */
    size_t on_disk; /* entries of db1 when the callback ran */
};

static void
written_cb(void *ctx, int status)
{
    struct seen *s = ctx;
    s->written++;
    s->status = status;
    s->on_disk = count("db1");
}

/* For a dumpster that cannot be listed (its top is a file). */
static void
written_cb_no_count(void *ctx, int status)
{
    struct seen *s = ctx;
    s->written++;
    s->status = status;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    (*(int *)arg)++;
}

static void
test_loop_goes_on_while_the_disk_waits(void **state)
{
    (void)state;
    struct dumpster_writer *w = NULL;
    assert_int_equal(dumpster_writer_new(base, datadir, 0, &w), 0);
    atomic_store(&hold, true);
    struct dumpster_batch *b = batch_of("db1", 1);
    struct seen s = {0};
    assert_int_equal(dumpster_writer_put(w, &b, NULL, written_cb, &s), 0);
    assert_null(b);
    assert_int_equal(s.written, 0); /* never from inside the call */
    assert_false(atomic_load(&put_on_loop));
    /* The put is on the helper thread, waiting as a slow disk would... */
    while (atomic_load(&puts_begun) == 0)
        usleep(1000);
    /* ...while the loop serves its other events: a timer fires again and again. */
    int ticks = 0;
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, &ticks);
    struct timeval tv = {0, 1000};
    event_add(tick, &tv);
    while (ticks < 20)
        event_base_loop(base, EVLOOP_ONCE);
    assert_false(atomic_load(&put_on_loop));
    assert_int_equal(s.written, 0);
    assert_int_equal(count("db1"), 0);
    /* The disk answers: the callback runs on the loop, with the entry already on disk. */
    assert_int_equal(write(release[1], "x", 1), 1);
    while (s.written == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(s.written, 1);
    assert_int_equal(s.status, 0);
    assert_int_equal(s.on_disk, 1);
    event_free(tick);
    dumpster_writer_free(&w);
    assert_null(w);
}

/* Freed while a put waits and another is queued behind it: both are written (the queued one
 * on the calling thread if the helper never got to it), both callbacks run, in order. */
static void
test_free_writes_what_is_queued(void **state)
{
    (void)state;
    struct dumpster_writer *w = NULL;
    assert_int_equal(dumpster_writer_new(base, datadir, 0, &w), 0);
    atomic_store(&hold, true);
    struct dumpster_batch *b1 = batch_of("db1", 1), *b2 = batch_of("db1", 2);
    struct seen s1 = {0}, s2 = {0};
    assert_int_equal(dumpster_writer_put(w, &b1, NULL, written_cb, &s1), 0);
    struct dumpster_retention keep_all = {1764130000, 0, 0};
    assert_int_equal(dumpster_writer_put(w, &b2, &keep_all, written_cb, &s2), 0);
    while (atomic_load(&puts_begun) == 0)
        usleep(1000);
    atomic_store(&hold, false);
    assert_int_equal(write(release[1], "x", 1), 1); /* lets the waiting put finish */
    dumpster_writer_free(&w);
    assert_int_equal(s1.written, 1);
    assert_int_equal(s2.written, 1);
    assert_int_equal(s1.status, 0);
    assert_int_equal(s2.status, 0);
    assert_true(s1.on_disk >= 1); /* 2 if the helper got to the second before it stopped */
    assert_int_equal(s2.on_disk, 2);
}

static int n_failed;

static void
failed_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx, (void)subject, (void)message;
    if (id == TDM_EV_DUMPSTER_WRITE_FAILED)
        n_failed++;
}

/* A dumpster that cannot be written (its directory is a file): 5101, and the callback runs
 * all the same (the SMTP server then answers what the mailbox server said). */
static void
test_failed_write_is_said_and_calls_back(void **state)
{
    (void)state;
    char top[128];
    snprintf(top, sizeof top, "%s/dumpster", datadir);
    FILE *f = fopen(top, "w");
    assert_non_null(f);
    fclose(f);
    n_failed = 0;
    event_set_hook(failed_hook, NULL);
    struct dumpster_writer *w = NULL;
    assert_int_equal(dumpster_writer_new(base, datadir, 0, &w), 0);
    struct dumpster_batch *b = batch_of("db1", 1);
    struct seen s = {0};
    assert_int_equal(dumpster_writer_put(w, &b, NULL, written_cb_no_count, &s), 0);
    while (s.written == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(n_failed, 1);
    assert_true(s.status < 0); /* the SMTP server answers 451 on it */
    event_set_hook(NULL, NULL);
    dumpster_writer_free(&w);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_loop_goes_on_while_the_disk_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_writes_what_is_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_is_said_and_calls_back, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

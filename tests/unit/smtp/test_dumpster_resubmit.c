/*
 * Resubmission's disk reads off the loop (src/smtp/dumpster_resubmit.c). dumpster_read is
 * wrapped at link time: while held, the helper thread's read waits on a pipe, as a slow disk
 * would. Meanwhile the loop goes on (a timer fires again and again) and the run has not
 * finished; once released it goes on: here the entry's route cannot be found (the directory of
 * this datadir does not exist), so the run ends with the message read and its recipient
 * deferred (no directory answer is for now, not for good).
 */
#include "smtp/dumpster.h"
#include "smtp/dumpster_resubmit.h"

#include "lib/config.h"
#include "lib/conn.h"
#include "lib/err.h"

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
#include <unistd.h>

int __real_dumpster_read(const char *path, uint8_t **buf_r, size_t *len_r);
int __wrap_dumpster_read(const char *path, uint8_t **buf_r, size_t *len_r);

static atomic_int reads_begun;
static atomic_bool read_on_loop; /* the wrapped call ran on the loop's thread: it would block */
static pthread_t loop_thread;
static int release[2];

int
__wrap_dumpster_read(const char *path, uint8_t **buf_r, size_t *len_r)
{
    atomic_fetch_add(&reads_begun, 1);
    if (pthread_equal(pthread_self(), loop_thread)) {
        atomic_store(&read_on_loop, true);
        return -EIO; /* instead of waiting forever */
    }
    char c;
    while (read(release[0], &c, 1) < 0)
        ;
    return __real_dumpster_read(path, buf_r, len_r);
}

struct outcome {
    int calls, status;
    struct dumpster_resubmit_counts counts;
};

static void
done_cb(void *ctx, int status, const struct dumpster_resubmit_counts *c)
{
    struct outcome *o = ctx;
    o->calls++;
    o->status = status;
    o->counts = *c;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    (*(int *)arg)++;
}

static void
test_reads_off_the_loop(void **state)
{
    (void)state;
    char datadir[64] = "/tmp/tdm-test-dresub-XXXXXX";
    assert_non_null(mkdtemp(datadir));
    assert_int_equal(pipe(release), 0);
    loop_thread = pthread_self();
    struct dumpster_rcpt r = {.address = "alice@example.test"};
    memset(r.id, 7, sizeof r.id);
    static const char body[] = "Subject: kept\r\n\r\nhello\r\n";
    struct dumpster_entry e = {.time = 1764130000,
                               .sender = "s@example.org",
                               .n_rcpts = 1,
                               .rcpts = &r,
                               .body = (const uint8_t *)body,
                               .body_len = sizeof body - 1};
    assert_int_equal(dumpster_put(datadir, "db1", &e), 0);

    char conf[512];
    snprintf(conf, sizeof conf,
             "server = t1\nsite = dc1\ndatadir = %s\nroles = transport, directory\n\n"
             "[network public]\naddress = 127.0.0.1\n\n[smtp]\ndomains = example.test\n",
             datadir);
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    if (tdm_config_load_buffer(conf, strlen(conf), "t1", &cfg, &error) != 0)
        fail_msg("config: %s", error ? error : "?");

    struct event_base *base = event_base_new();
    struct outcome o = {0};
    assert_int_equal(dumpster_resubmit_start(base, cfg, "db1", INT64_MIN, done_cb, &o), 0);
    assert_int_equal(o.calls, 0);
    /* Wait until the read is on the helper thread, held... */
    int ticks = 0;
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, &ticks);
    struct timeval tv = {0, 1000};
    event_add(tick, &tv);
    while (atomic_load(&reads_begun) == 0)
        event_base_loop(base, EVLOOP_ONCE);
    /* ...while the loop serves its other events. */
    int before = ticks;
    while (ticks < before + 20)
        event_base_loop(base, EVLOOP_ONCE);
    assert_false(atomic_load(&read_on_loop));
    assert_int_equal(o.calls, 0);
    assert_int_equal(write(release[1], "x", 1), 1);
    while (o.calls == 0)
        event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(o.status, 0);
    assert_int_equal(o.counts.messages, 1);
    assert_int_equal(o.counts.resubmitted, 0);
    /* No directory to route it by: for now, not for good (a later run may send it). */
    assert_int_equal(o.counts.deferred, 1);
    assert_int_equal(o.counts.refused, 0);
    event_free(tick);
    conn_base_free(&base);
    tdm_config_free(&cfg);
    close(release[0]);
    close(release[1]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", datadir);
    assert_int_equal(system(cmd), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_off_the_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

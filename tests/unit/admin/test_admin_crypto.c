/*
 * The admin worker's argon2id thread (src/admin/admin_crypto.c): results come back on the
 * loop, the loop keeps running while a job does, the queue is bounded, and freeing with jobs
 * still queued or unreported loses nothing (LeakSanitizer judges) and calls no callback.
 */
#include "admin/admin_int.h"

#include "lib/err.h"

#include <errno.h>
#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct result {
    int calls;
    int result;
    char hash[DIR_PASSWORD_HASH_MAX];
    struct event_base *base;
};

/* The tests' calls carry no request (req NULL): nothing to watch, nothing to answer. The
 * result goes where the call's srv would be, which the thread never looks at. */
static struct result *
result_of(struct admin_call *call)
{
    return (struct result *)(void *)call->srv;
}

static void
done_cb(struct admin_call *call, int result, const char *hash)
{
    struct result *r = result_of(call);
    r->calls++;
    r->result = result;
    snprintf(r->hash, sizeof(r->hash), "%s", hash);
    event_base_loopbreak(r->base);
}

static void
run_until_called(struct event_base *base, struct result *r)
{
    while (r->calls == 0)
        event_base_loop(base, EVLOOP_ONCE);
}

static void
test_hash_then_verify(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct admin_crypto *c;
    assert_int_equal(admin_crypto_new(base, &c), 0);
    struct result r = {.base = base};
    struct admin_call call = {.srv = (struct admin_server *)(void *)&r};

    assert_int_equal(admin_crypto_hash(c, &call, "correct horse", done_cb), 0);
    run_until_called(base, &r);
    assert_int_equal(r.result, 0);
    assert_memory_equal(r.hash, "$argon2id$", 10);
    char hash[DIR_PASSWORD_HASH_MAX];
    memcpy(hash, r.hash, sizeof(hash));

    static const struct {
        const char *password;
        int want;
    } cases[] = {{"correct horse", 0}, {"correct horsf", -EACCES}, {"", -EACCES}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r.calls = 0;
        assert_int_equal(admin_crypto_verify(c, &call, hash, cases[i].password, done_cb), 0);
        run_until_called(base, &r);
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.result, cases[i].want);
    }
    admin_crypto_free(&c);
    assert_null(c);
    event_base_free(base);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (*(int *)arg)++;
}

/* While a hash runs (hundreds of ms), a 5 ms timer on the loop fires many times. */
static void
test_loop_runs_meanwhile(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct admin_crypto *c;
    assert_int_equal(admin_crypto_new(base, &c), 0);
    struct result r = {.base = base};
    struct admin_call call = {.srv = (struct admin_server *)(void *)&r};
    int ticks = 0;
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, &ticks);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    assert_int_equal(admin_crypto_hash(c, &call, "a password", done_cb), 0);
    run_until_called(base, &r);
    assert_int_equal(r.result, 0);
    assert_true(ticks >= 3);
    event_free(tick);
    admin_crypto_free(&c);
    event_base_free(base);
}

/* More jobs than the queue holds: the surplus is refused at once; freeing with jobs queued
 * drops them without a callback. */
static void
test_bounded_and_free_with_pending(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct admin_crypto *c;
    assert_int_equal(admin_crypto_new(base, &c), 0);
    struct result r = {.base = base};
    struct admin_call call = {.srv = (struct admin_server *)(void *)&r};
    int accepted = 0, refused = 0;
    for (int i = 0; i < 80; i++) {
        int ret = admin_crypto_hash(c, &call, "a password", done_cb);
        assert_true(ret == 0 || ret == TDM_ELIMIT);
        ret == 0 ? accepted++ : refused++;
    }
    /* 64 wait, and at most one more is already being worked on. */
    assert_in_range(accepted, 64, 65);
    assert_int_equal(accepted + refused, 80);
    admin_crypto_free(&c);
    assert_int_equal(r.calls, 0);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_then_verify),
        cmocka_unit_test(test_loop_runs_meanwhile),
        cmocka_unit_test(test_bounded_and_free_with_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "lib/auth_delay.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

/* 250 ms doubling per failure, capped at 4 s. */
static void
test_doubles_to_the_cap(void **state)
{
    (void)state;
    struct auth_delay *d;
    assert_int_equal(auth_delay_new(&d), 0);
    static const uint32_t want[] = {250, 500, 1000, 2000, 4000, 4000, 4000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(auth_delay_failure(d, "10.0.0.1", 1000), want[i]);
    /* Another key has its own count. */
    assert_int_equal(auth_delay_failure(d, "10.0.0.2", 1000), 250);
    auth_delay_free(&d);
    assert_null(d);
}

static void
test_success_and_quiet_time_forget(void **state)
{
    (void)state;
    struct auth_delay *d;
    assert_int_equal(auth_delay_new(&d), 0);
    auth_delay_failure(d, "user:alice", 1000);
    assert_int_equal(auth_delay_failure(d, "user:alice", 1000), 500);
    auth_delay_success(d, "user:alice");
    assert_int_equal(auth_delay_failure(d, "user:alice", 1000), 250);
    /* Failures keep the count alive; a minute without one forgets it. */
    assert_int_equal(auth_delay_failure(d, "user:alice", 1050), 500);
    assert_int_equal(auth_delay_failure(d, "user:alice", 1100), 1000);
    assert_int_equal(auth_delay_failure(d, "user:alice", 1161), 250);
    auth_delay_free(&d);
}

/* A flood of keys takes the stalest slots and never grows the table; recent guessers keep
 * their delays. */
static void
test_flood_reuses_the_stalest(void **state)
{
    (void)state;
    struct auth_delay *d;
    assert_int_equal(auth_delay_new(&d), 0);
    for (int i = 0; i < 3; i++)
        auth_delay_failure(d, "guesser", 2000);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "flood-%d", i);
        assert_int_equal(auth_delay_failure(d, key, 1990 + i / 100), 250);
    }
    /* "guesser" failed last at 2000, later than most of the flood: it kept its slot. */
    assert_int_equal(auth_delay_failure(d, "guesser", 2000), 2000);
    /* Keys longer than the table holds are cut, and still counted. */
    char long_key[AUTH_DELAY_KEY_MAX * 2];
    for (size_t i = 0; i < sizeof(long_key) - 1; i++)
        long_key[i] = 'k';
    long_key[sizeof(long_key) - 1] = '\0';
    auth_delay_failure(d, long_key, 2000);
    assert_int_equal(auth_delay_failure(d, long_key, 2000), 500);
    auth_delay_free(&d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles_to_the_cap),
        cmocka_unit_test(test_success_and_quiet_time_forget),
        cmocka_unit_test(test_flood_reuses_the_stalest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

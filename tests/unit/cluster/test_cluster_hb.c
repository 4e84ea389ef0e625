/*
 * The pure part of the heartbeats (src/cluster/cluster_hb_quorum.c, docs/cluster.md "Votes and
 * quorum" and "Timing"): the quorum of n votes, whether a member is seen at a time, and the
 * newest confirmation from what each vote answered. Times are passed in.
 */
#include "cluster/cluster_hb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void
test_quorum(void **state)
{
    (void)state;
    assert_int_equal(cluster_hb_quorum(1), 1);
    assert_int_equal(cluster_hb_quorum(2), 2);
    assert_int_equal(cluster_hb_quorum(3), 2); /* two nodes and a witness */
    assert_int_equal(cluster_hb_quorum(4), 3);
    assert_int_equal(cluster_hb_quorum(5), 3);
    assert_int_equal(cluster_hb_quorum(9), 5);
}

static void
test_seen(void **state)
{
    (void)state;
    /* interval 1000 ms x 5 misses: heard at 10000, seen up to 15000 inclusive, not after. */
    assert_false(cluster_hb_is_seen(0, 20000, 1000, 5)); /* never heard */
    assert_true(cluster_hb_is_seen(10000, 10000, 1000, 5));
    assert_true(cluster_hb_is_seen(10000, 15000, 1000, 5));
    assert_false(cluster_hb_is_seen(10000, 15001, 1000, 5));
    assert_true(cluster_hb_is_seen(10000, 10199, 100, 2));
    assert_true(cluster_hb_is_seen(10000, 10200, 100, 2));
    assert_false(cluster_hb_is_seen(10000, 10201, 100, 2));
    /* A time after now (the caller's clock read earlier): heard, not down. */
    assert_true(cluster_hb_is_seen(10001, 10000, 1000, 5));
}

static void
test_confirmation_three_votes(void **state)
{
    (void)state;
    uint64_t s = 0;
    /* Two nodes and a witness: the local vote plus one other is a majority, so the newest
     * confirmation is the newest send time any other vote answered. */
    uint64_t none[2] = {0, 0};
    assert_false(cluster_hb_confirmation(3, none, 2, &s));
    uint64_t one[2] = {0, 5000};
    assert_true(cluster_hb_confirmation(3, one, 2, &s));
    assert_int_equal(s, 5000);
    uint64_t both[2] = {7000, 5000};
    assert_true(cluster_hb_confirmation(3, both, 2, &s));
    assert_int_equal(s, 7000);
}

static void
test_confirmation_five_votes(void **state)
{
    (void)state;
    uint64_t s = 0;
    /* Five votes: the local one and two others. The newest s that two others each answered a
     * message sent at or after is the second newest of their times. */
    uint64_t a[4] = {100, 900, 400, 700};
    assert_true(cluster_hb_confirmation(5, a, 4, &s));
    assert_int_equal(s, 700);
    /* Only one other has ever answered: no majority yet. */
    uint64_t b[4] = {0, 900, 0, 0};
    assert_false(cluster_hb_confirmation(5, b, 4, &s));
    /* Ties count once each. */
    uint64_t c[4] = {800, 800, 0, 0};
    assert_true(cluster_hb_confirmation(5, c, 4, &s));
    assert_int_equal(s, 800);
}

static void
test_confirmation_never_newer_than_a_majority(void **state)
{
    (void)state;
    /* For every s the function returns, at least quorum - 1 others answered at or after s, and
     * no larger s has that property: checked against a brute force over small inputs. */
    uint64_t t[4];
    for (unsigned votes = 2; votes <= 5; votes++) {
        unsigned n = votes - 1;
        for (unsigned code = 0; code < 625; code++) {
            unsigned c = code;
            for (unsigned i = 0; i < 4; i++, c /= 5)
                t[i] = (uint64_t)(c % 5) * 100; /* 0 = never */
            uint64_t best = 0;
            for (uint64_t cand = 100; cand <= 400; cand += 100) {
                unsigned k = 0;
                for (unsigned i = 0; i < n; i++)
                    k += t[i] >= cand;
                if (k >= cluster_hb_quorum(votes) - 1)
                    best = cand;
            }
            uint64_t s = 0;
            bool ok = cluster_hb_confirmation(votes, t, n, &s);
            assert_int_equal(ok, best != 0);
            if (ok)
                assert_int_equal(s, best);
        }
    }
}

static void
test_confirmation_bounds(void **state)
{
    (void)state;
    uint64_t s = 0;
    uint64_t a[1] = {5};
    /* A lone vote has no one to confirm it: never "confirmed". */
    assert_false(cluster_hb_confirmation(1, a, 0, &s));
    /* More members than the snapshot holds is refused, not read past. */
    uint64_t many[CLUSTER_HB_MAX_MEMBERS + 1] = {0};
    assert_false(
        cluster_hb_confirmation(CLUSTER_HB_MAX_MEMBERS + 2, many, CLUSTER_HB_MAX_MEMBERS + 1, &s));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_seen),
        cmocka_unit_test(test_confirmation_three_votes),
        cmocka_unit_test(test_confirmation_five_votes),
        cmocka_unit_test(test_confirmation_never_newer_than_a_majority),
        cmocka_unit_test(test_confirmation_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

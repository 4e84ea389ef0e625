/*
 * The recorded log end's codec (src/cluster/cluster_end.c): a round trip, and every rule of
 * the format refused. Its fuzz target is fuzz/cluster_end.c.
 */
#include "cluster/cluster_end.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void
test_round_trip(void **state)
{
    (void)state;
    struct cluster_end_record r, back;
    memset(&r, 0, sizeof(r));
    snprintf(r.holder, sizeof(r.holder), "mb-2");
    r.epoch = UINT64_MAX;
    r.n_dbs = 2;
    snprintf(r.dbs[0].name, sizeof(r.dbs[0].name), "db1");
    r.dbs[0].pos =
        (struct cluster_fsm_logpos){.epoch = 3, .lsn = 105, .generation = 5, .offset = 3000};
    snprintf(r.dbs[1].name, sizeof(r.dbs[1].name), "db_2.x");
    char buf[CLUSTER_END_MAX];
    int n = cluster_end_encode(&r, buf, sizeof(buf));
    assert_true(n > 0);
    const char *want = "tandem-cms-end 1\nholder mb-2\nepoch 18446744073709551615\n"
                       "db db1 3 105 5 3000\ndb db_2.x 0 0 0 0\n";
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, (size_t)n);
    const char *why = NULL;
    assert_int_equal(cluster_end_decode(buf, (size_t)n, &back, &why), 0);
    assert_memory_equal(&back, &r, sizeof(r));

    /* The largest record fits CLUSTER_END_MAX. */
    memset(r.holder, 'h', CLUSTER_FSM_NAME_MAX);
    r.n_dbs = CLUSTER_FSM_MAX_DBS;
    for (unsigned d = 0; d < r.n_dbs; d++) {
        memset(r.dbs[d].name, 'd', CLUSTER_FSM_NAME_MAX);
        r.dbs[d].name[CLUSTER_FSM_NAME_MAX - 2] = (char)('a' + d / 10);
        r.dbs[d].name[CLUSTER_FSM_NAME_MAX - 1] = (char)('a' + d % 10);
        r.dbs[d].pos = (struct cluster_fsm_logpos){UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
    }
    n = cluster_end_encode(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(cluster_end_decode(buf, (size_t)n, &back, &why), 0);
    assert_memory_equal(&back, &r, sizeof(r));
    r.n_dbs = CLUSTER_FSM_MAX_DBS + 1;
    assert_int_equal(cluster_end_encode(&r, buf, sizeof(buf)), TDM_EINVAL);
}

static void
test_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "tandem-cms-end 2\nholder mb2\nepoch 3\n",
        "tandem-cms-end 1\nholder mb2\nepoch 3",    /* no final newline */
        "tandem-cms-end 1\nholder mb 2\nepoch 3\n", /* name with a space */
        "tandem-cms-end 1\nholder mb/2\nepoch 3\n", /* a byte outside the set */
        "tandem-cms-end 1\nholder \nepoch 3\n",     /* empty name */
        "tandem-cms-end 1\nholder mb2\nepoch 03\n", /* leading zero */
        "tandem-cms-end 1\nholder mb2\nepoch -3\n",
        "tandem-cms-end 1\nholder mb2\nepoch 18446744073709551616\n", /* overflow */
        "tandem-cms-end 1\nholder mb2\nepoch 3\ndb db1 3 105 5\n",    /* a number short */
        "tandem-cms-end 1\nholder mb2\nepoch 3\ndb db1 3 105 5 1 2\n",
        "tandem-cms-end 1\nholder mb2\nepoch 3\ndb db1 3 105 5 1\ndb db1 3 105 5 1\n",
        "tandem-cms-end 1\nepoch 3\nholder mb2\n",
        "tandem-cms-end 1\nholder mb2\nepoch 3\nxx db1 3 105 5 1\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct cluster_end_record r;
        const char *why = NULL;
        if (cluster_end_decode(bad[i], strlen(bad[i]), &r, &why) != TDM_EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(why);
    }
    /* A NUL inside a name. */
    struct cluster_end_record r;
    const char *why = NULL;
    static const char nul[] = "tandem-cms-end 1\nholder m\0b\nepoch 3\n";
    assert_int_equal(cluster_end_decode(nul, sizeof(nul) - 1, &r, &why), TDM_EINVAL);
    /* Seventeen databases. */
    char many[4096] = "tandem-cms-end 1\nholder mb2\nepoch 3\n";
    for (unsigned d = 0; d <= CLUSTER_FSM_MAX_DBS; d++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "db d%u 1 1 1 1\n", d);
    assert_int_equal(cluster_end_decode(many, strlen(many), &r, &why), TDM_EINVAL);
    assert_string_equal(why, "too many databases");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The coordination store's rules (src/coord/coord_store.c, docs/cluster.md "Leases and
 * epochs"): grants, denials, renewals, epochs, release, transfer, a holder's disconnect,
 * expiry, CAS, limits — and what survives a restart (the environment reopened).
 */
#include "coord/coord_store.h"

#include "lib/err.h"
#include "scratch.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char tmpdir[256];
static char dir[300];
static struct coord_store *s;
static struct coord_entry e;

static void
open_store(uint64_t now)
{
    const char *error = NULL;
    unsigned n;
    if (coord_store_open(dir, now, &s, &n, &error) != 0)
        fail_msg("open: %s", error);
}

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "coord"), 0);
    snprintf(dir, sizeof(dir), "%s/coord", tmpdir);
    open_store(1000);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    coord_store_close(&s);
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

static int
acquire(const char *key, const char *holder, uint32_t ttl, uint64_t min_epoch, uint64_t now)
{
    int outcome = 0;
    assert_int_equal(coord_store_acquire(s, key, holder, ttl, min_epoch, now, &outcome, &e), 0);
    return outcome;
}

static void
test_grant_deny_renew(void **state)
{
    (void)state;
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 1000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 1);
    assert_string_equal(e.holder, "a");
    assert_int_equal(e.remaining_ms, 4000);
    /* Another member is denied and told by whom, with what is left. */
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 2500), COORD_ACQ_DENIED);
    assert_string_equal(e.holder, "a");
    assert_int_equal(e.epoch, 1);
    assert_int_equal(e.remaining_ms, 2500);
    /* The holder renews: same epoch, time restarts. */
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 3000), COORD_ACQ_RENEWED);
    assert_int_equal(e.epoch, 1);
    assert_int_equal(e.remaining_ms, 4000);
    /* Expired: the next member gets epoch 2. */
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 7000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 2);
    assert_string_equal(e.holder, "b");
    /* The old holder after its expiry is a new grant too (a new epoch): it may have fenced. */
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 20000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 3);
}

static void
test_min_epoch(void **state)
{
    (void)state;
    assert_int_equal(acquire("cms/m", "a", 1000, 41, 1000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 41);
    /* Below the stored epoch + 1 it changes nothing. */
    assert_int_equal(acquire("cms/m", "b", 1000, 5, 5000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 42);
    /* A holder renewing with a higher known epoch raises it. */
    assert_int_equal(acquire("cms/m", "b", 1000, 50, 5100), COORD_ACQ_RENEWED);
    assert_int_equal(e.epoch, 50);
}

static void
test_release(void **state)
{
    (void)state;
    bool freed;
    acquire("cms/m", "a", 4000, 0, 1000);
    assert_int_equal(coord_store_release(s, "cms/m", "b", 1, 1100, &freed), TDM_ECONFLICT);
    assert_int_equal(coord_store_release(s, "cms/m", "a", 9, 1100, &freed), TDM_ECONFLICT);
    assert_false(freed);
    assert_int_equal(coord_store_release(s, "cms/m", "a", 1, 1100, &freed), 0);
    assert_true(freed);
    assert_int_equal(coord_store_get(s, "cms/m", 1200, &e), 0);
    assert_string_equal(e.holder, "");
    assert_int_equal(e.epoch, 1); /* kept: epochs never go back */
    /* Again: nothing to do, not an error. */
    assert_int_equal(coord_store_release(s, "cms/m", "a", 1, 1300, &freed), 0);
    assert_false(freed);
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 1400), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 2);
}

static void
test_transfer(void **state)
{
    (void)state;
    acquire("cms/m", "a", 4000, 0, 1000);
    assert_int_equal(coord_store_transfer(s, "cms/m", "b", 1, "c", 1100, &e), TDM_ECONFLICT);
    assert_string_equal(e.holder, "a");
    assert_int_equal(coord_store_transfer(s, "cms/m", "a", 2, "b", 1100, &e), TDM_ECONFLICT);
    assert_int_equal(coord_store_transfer(s, "cms/m", "a", 1, "a", 1100, &e), TDM_EINVAL);
    assert_int_equal(coord_store_transfer(s, "cms/x", "a", 1, "b", 1100, &e), TDM_ECONFLICT);
    assert_int_equal(coord_store_transfer(s, "cms/m", "a", 1, "b", 2000, &e), 0);
    assert_string_equal(e.holder, "b");
    assert_int_equal(e.epoch, 2);
    assert_int_equal(e.remaining_ms, 4000);
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 2100), COORD_ACQ_DENIED);
    /* Expired leases cannot be transferred. */
    assert_int_equal(coord_store_transfer(s, "cms/m", "b", 2, "a", 6000, &e), TDM_ECONFLICT);
}

static int n_freed;
static char freed_keys[8][600];

static void
on_freed(void *ctx, const struct coord_entry *entry)
{
    (void)ctx;
    snprintf(freed_keys[n_freed++ % 8], 600, "%s:%s:%llu", entry->key, entry->holder,
             (unsigned long long)entry->epoch);
}

static void
test_free_holder_and_expire(void **state)
{
    (void)state;
    n_freed = 0;
    acquire("cms/m1", "a", 4000, 0, 1000);
    acquire("cms/m2", "b", 4000, 0, 1000);
    acquire("cms/m3", "a", 10000, 0, 1000);
    assert_int_equal(coord_store_free_holder(s, "a", 1500, on_freed, NULL), 0);
    assert_int_equal(n_freed, 2);
    assert_string_equal(freed_keys[0], "cms/m1:a:1");
    assert_string_equal(freed_keys[1], "cms/m3:a:1");
    /* At once free for another. */
    assert_int_equal(acquire("cms/m1", "b", 4000, 0, 1600), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 2);
    assert_int_equal(coord_store_next_expiry(s, 2000), 3000); /* m2 at 5000 */
    n_freed = 0;
    assert_int_equal(coord_store_expire(s, 4999, on_freed, NULL), 0);
    assert_int_equal(n_freed, 0);
    assert_int_equal(coord_store_expire(s, 5000, on_freed, NULL), 0);
    assert_int_equal(n_freed, 1);
    assert_string_equal(freed_keys[0], "cms/m2:b:1");
    assert_int_equal(coord_store_next_expiry(s, 5000), 600); /* m1 at 5600 */
    coord_store_free_holder(s, "b", 5000, NULL, NULL);
    assert_true(coord_store_next_expiry(s, 5000) == UINT64_MAX);
}

/* A restart (the environment reopened): holders, epochs, ttls and values are kept, every
 * held lease runs a full ttl from the restart, and the next grant's epoch is higher. */
static void
test_restart(void **state)
{
    (void)state;
    acquire("cms/m", "a", 4000, 0, 1000);
    acquire("cms/m", "b", 4000, 0, 6000); /* epoch 2, expires 10000 */
    acquire("cms/f", "a", 3000, 0, 1000);
    bool freed;
    assert_int_equal(coord_store_release(s, "cms/f", "a", 1, 1100, &freed), 0);
    assert_int_equal(coord_store_cas(s, "rec", 0, "x", 1, 1000, &e), 0);
    coord_store_close(&s);

    /* The restart comes long after every lease would have run out. */
    const char *error;
    unsigned n_leases = 0;
    assert_int_equal(coord_store_open(dir, 50000, &s, &n_leases, &error), 0);
    assert_int_equal(n_leases, 1);
    assert_int_equal(coord_store_get(s, "cms/m", 50000, &e), 0);
    assert_string_equal(e.holder, "b");
    assert_int_equal(e.epoch, 2);
    assert_int_equal(e.remaining_ms, 4000);
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 53999), COORD_ACQ_DENIED);
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 53999), COORD_ACQ_RENEWED);
    assert_int_equal(e.epoch, 2);
    assert_int_equal(acquire("cms/m", "a", 4000, 0, 58000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 3);
    /* A released lease stays free, with its epoch. */
    assert_int_equal(coord_store_get(s, "cms/f", 50000, &e), 0);
    assert_string_equal(e.holder, "");
    assert_int_equal(e.epoch, 1);
    assert_int_equal(coord_store_get(s, "rec", 50000, &e), 0);
    assert_int_equal(e.value_version, 1);
    assert_int_equal(e.value_len, 1);
    assert_memory_equal(e.value, "x", 1);

    /* A freed-by-disconnect lease is durable as freed: not revived by a restart. */
    assert_int_equal(coord_store_free_holder(s, "a", 58001, NULL, NULL), 0);
    coord_store_close(&s);
    assert_int_equal(coord_store_open(dir, 90000, &s, &n_leases, &error), 0);
    assert_int_equal(n_leases, 0);
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 90000), COORD_ACQ_NEW);
    assert_int_equal(e.epoch, 4);
}

/* Status: what last gave each lease its time (grant, renewal, transfer, the store's opening)
 * and how long ago; kept after the lease is freed; a denial or a value write changes
 * nothing. */
static void
test_renewal(void **state)
{
    (void)state;
    assert_int_equal(coord_store_get(s, "cms/m", 1000, &e), 0);
    assert_int_equal(e.renewal, COORD_RENEWAL_NONE);
    assert_int_equal(e.renewed_ms_ago, 0);
    acquire("cms/m", "a", 4000, 0, 1000);
    assert_int_equal(e.renewal, COORD_RENEWAL_GRANT);
    assert_int_equal(e.renewed_ms_ago, 0);
    assert_int_equal(acquire("cms/m", "b", 4000, 0, 1700), COORD_ACQ_DENIED);
    assert_int_equal(e.renewal, COORD_RENEWAL_GRANT);
    assert_int_equal(e.renewed_ms_ago, 700);
    acquire("cms/m", "a", 4000, 0, 2000);
    assert_int_equal(e.renewal, COORD_RENEWAL_RENEW);
    assert_int_equal(coord_store_cas(s, "cms/m", 0, "x", 1, 2100, &e), 0);
    assert_int_equal(e.renewal, COORD_RENEWAL_RENEW);
    assert_int_equal(e.renewed_ms_ago, 100);
    assert_int_equal(coord_store_transfer(s, "cms/m", "a", 1, "b", 2500, &e), 0);
    assert_int_equal(e.renewal, COORD_RENEWAL_TRANSFER);
    assert_int_equal(coord_store_free_holder(s, "b", 2600, NULL, NULL), 0);
    assert_int_equal(coord_store_get(s, "cms/m", 3000, &e), 0);
    assert_string_equal(e.holder, "");
    assert_int_equal(e.renewal, COORD_RENEWAL_TRANSFER);
    assert_int_equal(e.renewed_ms_ago, 500);
    /* Reopened: a held lease was renewed by the opening, a free one by nothing yet. */
    acquire("cms/h", "a", 4000, 0, 3000);
    coord_store_close(&s);
    open_store(9000);
    assert_int_equal(coord_store_get(s, "cms/h", 9250, &e), 0);
    assert_int_equal(e.renewal, COORD_RENEWAL_RESTART);
    assert_int_equal(e.renewed_ms_ago, 250);
    assert_int_equal(coord_store_get(s, "cms/m", 9250, &e), 0);
    assert_int_equal(e.renewal, COORD_RENEWAL_NONE);
    assert_int_equal(e.renewed_ms_ago, 0);
}

static void
test_cas(void **state)
{
    (void)state;
    assert_int_equal(coord_store_get(s, "rec", 1000, &e), 0);
    assert_int_equal(e.value_version, 0);
    assert_int_equal(coord_store_cas(s, "rec", 1, "a", 1, 1000, &e), TDM_ECONFLICT);
    assert_int_equal(e.value_version, 0);
    assert_int_equal(coord_store_cas(s, "rec", 0, "first", 5, 1000, &e), 0);
    assert_int_equal(e.value_version, 1);
    assert_int_equal(coord_store_cas(s, "rec", 0, "again", 5, 1000, &e), TDM_ECONFLICT);
    assert_int_equal(e.value_version, 1);
    assert_memory_equal(e.value, "first", 5);
    static uint8_t big[COORD_STORE_VALUE_MAX + 1];
    assert_int_equal(coord_store_cas(s, "rec", 1, big, sizeof(big), 1000, &e), TDM_EINVAL);
    assert_int_equal(coord_store_cas(s, "rec", 1, big, COORD_STORE_VALUE_MAX, 1000, &e), 0);
    assert_int_equal(e.value_version, 2);
    /* A value and a lease share a key without touching each other. */
    acquire("rec", "a", 1000, 0, 1000);
    assert_int_equal(e.value_version, 2);
    assert_int_equal(coord_store_cas(s, "rec", 2, "", 0, 1100, &e), 0);
    assert_string_equal(e.holder, "a");
    assert_int_equal(e.epoch, 1);
}

static void
count_entry(void *ctx, const struct coord_entry *entry)
{
    (void)entry;
    (*(unsigned *)ctx)++;
}

static void
test_limits(void **state)
{
    (void)state;
    int outcome;
    char key[300];
    memset(key, 'k', 256);
    key[256] = 0;
    assert_int_equal(coord_store_acquire(s, key, "a", 1, 0, 0, &outcome, &e), TDM_EINVAL);
    assert_int_equal(coord_store_acquire(s, "", "a", 1, 0, 0, &outcome, &e), TDM_EINVAL);
    assert_int_equal(coord_store_acquire(s, "k", "", 1, 0, 0, &outcome, &e), TDM_EINVAL);
    assert_int_equal(coord_store_acquire(s, "k", "a", 0, 0, 0, &outcome, &e), TDM_EINVAL);
    for (unsigned i = 0; i < COORD_STORE_MAX_KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        assert_int_equal(coord_store_cas(s, key, 0, NULL, 0, 0, &e), 0);
    }
    assert_int_equal(coord_store_cas(s, "one-more", 0, NULL, 0, 0, &e), TDM_ELIMIT);
    assert_int_equal(coord_store_acquire(s, "one-more", "a", 1, 0, 0, &outcome, &e), TDM_ELIMIT);
    /* A refused new key leaves nothing behind. */
    assert_int_equal(coord_store_get(s, "one-more", 0, &e), 0);
    assert_int_equal(e.value_version, 0);
    unsigned count = 0;
    coord_store_list(s, 0, count_entry, &count);
    assert_int_equal(count, COORD_STORE_MAX_KEYS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grant_deny_renew, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_holder_and_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

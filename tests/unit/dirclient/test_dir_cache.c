/*
 * The directory cache's rules with a fake clock: logins and objects served while fresh,
 * freshness carried forward by journal reads, expiry ttl after the last one, invalidation by
 * journal entries, reset, and the size bound.
 */
#include "dirclient/dir_cache.h"

#include "lib/err.h"

#include <stdio.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define TTL 600000u /* 10 min */

static struct dir_cache *
cache_new(size_t max)
{
    struct dir_cache *c = NULL;
    assert_int_equal(dir_cache_new(TTL, max, &c), 0);
    return c;
}

static void
test_bad_arguments(void **state)
{
    (void)state;
    struct dir_cache *c = NULL;
    assert_int_equal(dir_cache_new(0, 10, &c), TDM_EINVAL);
    assert_int_equal(dir_cache_new(TTL, 0, &c), TDM_EINVAL);
    assert_null(c);
    dir_cache_free(&c); /* NULL is fine */
}

static void
test_login_exact_and_fresh(void **state)
{
    (void)state;
    struct dir_cache *c = cache_new(100);
    assert_false(dir_cache_login_ok(c, "alice", "secret", 1000));
    assert_int_equal(dir_cache_login_put(c, "alice", "secret", 1000), 0);
    assert_true(dir_cache_login_ok(c, "alice", "secret", 1000));
    /* Only the exact pair: another password, a prefix, another user, a shifted boundary. */
    assert_false(dir_cache_login_ok(c, "alice", "secreT", 1000));
    assert_false(dir_cache_login_ok(c, "alice", "secret ", 1000));
    assert_false(dir_cache_login_ok(c, "alice", "", 1000));
    assert_false(dir_cache_login_ok(c, "bob", "secret", 1000));
    assert_int_equal(dir_cache_login_put(c, "ab", "c", 1000), 0);
    assert_false(dir_cache_login_ok(c, "a", "bc", 1000));
    /* Without journal reads it expires ttl after it was stored, not a millisecond later. */
    assert_true(dir_cache_login_ok(c, "alice", "secret", 1000 + TTL));
    assert_false(dir_cache_login_ok(c, "alice", "secret", 1000 + TTL + 1));
    dir_cache_free(&c);
    assert_null(c);
}

static void
test_journal_keeps_fresh_then_expires(void **state)
{
    (void)state;
    struct dir_cache *c = cache_new(100);
    assert_int_equal(dir_cache_login_put(c, "alice", "pw", 0), 0);
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_USER, "alice", "{\"v\":1}", 0), 0);
    /* The journal followed every minute for an hour: still current. */
    for (uint64_t t = 60000; t <= 3600000; t += 60000)
        dir_cache_journal_ok(c, t);
    assert_true(dir_cache_login_ok(c, "alice", "pw", 3600000 + 1));
    assert_string_equal(dir_cache_object_get(c, DIR_KIND_USER, "alice", 3600000), "{\"v\":1}");
    /* Then the directory goes away: answers are served for ttl after the last read. */
    assert_true(dir_cache_login_ok(c, "alice", "pw", 3600000 + TTL));
    assert_false(dir_cache_login_ok(c, "alice", "pw", 3600000 + TTL + 1));
    assert_null(dir_cache_object_get(c, DIR_KIND_USER, "alice", 3600000 + TTL + 1));
    /* A journal read in the past never moves freshness back. */
    dir_cache_journal_ok(c, 5);
    assert_true(dir_cache_login_ok(c, "alice", "pw", 3600000 + TTL));
    dir_cache_free(&c);
}

static void
test_invalidate(void **state)
{
    (void)state;
    struct dir_cache *c = cache_new(100);
    assert_int_equal(dir_cache_login_put(c, "alice", "pw", 0), 0);
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_USER, "alice", "{}", 0), 0);
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_GROUP, "alice", "{\"g\":1}", 0), 0);
    assert_int_equal(dir_cache_login_put(c, "bob", "pw", 0), 0);
    assert_int_equal(dir_cache_size(c), 4);
    /* A group of the same name is another object: the user's answers stay. */
    dir_cache_invalidate(c, DIR_KIND_GROUP, "alice");
    assert_null(dir_cache_object_get(c, DIR_KIND_GROUP, "alice", 1));
    assert_true(dir_cache_login_ok(c, "alice", "pw", 1));
    /* A change to the user drops its object and its login, and nobody else's. */
    dir_cache_invalidate(c, DIR_KIND_USER, "alice");
    assert_false(dir_cache_login_ok(c, "alice", "pw", 1));
    assert_null(dir_cache_object_get(c, DIR_KIND_USER, "alice", 1));
    assert_true(dir_cache_login_ok(c, "bob", "pw", 1));
    assert_int_equal(dir_cache_size(c), 1);
    dir_cache_invalidate(c, DIR_KIND_USER, "nobody");
    dir_cache_reset(c);
    assert_int_equal(dir_cache_size(c), 0);
    assert_false(dir_cache_login_ok(c, "bob", "pw", 1));
    dir_cache_free(&c);
}

static void
test_recipients(void **state)
{
    (void)state;
    struct dir_cache *c = cache_new(100);
    assert_null(dir_cache_rcpt_get(c, "a@x.test", 0));
    assert_int_equal(dir_cache_rcpt_put(c, "a@x.test", "{\"status\":\"ok\"}", 0), 0);
    assert_int_equal(dir_cache_rcpt_put(c, "nobody@x.test", "{\"status\":\"unknown\"}", 0), 0);
    assert_int_equal(dir_cache_login_put(c, "bob", "pw", 0), 0);
    assert_string_equal(dir_cache_rcpt_get(c, "a@x.test", 1), "{\"status\":\"ok\"}");
    assert_null(dir_cache_rcpt_get(c, "a@x.test", TTL + 1));
    /* A group or a site changing leaves recipients alone; any user changing drops them all
     * (nobody@ may be somebody's address now), and only that user's login. */
    dir_cache_invalidate(c, DIR_KIND_GROUP, "sales");
    assert_non_null(dir_cache_rcpt_get(c, "nobody@x.test", 1));
    dir_cache_invalidate(c, DIR_KIND_USER, "carol");
    assert_null(dir_cache_rcpt_get(c, "nobody@x.test", 1));
    assert_null(dir_cache_rcpt_get(c, "a@x.test", 1));
    assert_true(dir_cache_login_ok(c, "bob", "pw", 1));
    assert_int_equal(dir_cache_size(c), 1);
    /* An answer carries its database's route: a database or a cms changing drops them too. */
    assert_int_equal(dir_cache_rcpt_put(c, "a@x.test", "{\"status\":\"ok\"}", 2), 0);
    dir_cache_invalidate(c, DIR_KIND_DATABASE, "db1");
    assert_null(dir_cache_rcpt_get(c, "a@x.test", 2));
    assert_int_equal(dir_cache_rcpt_put(c, "a@x.test", "{\"status\":\"ok\"}", 2), 0);
    dir_cache_invalidate(c, DIR_KIND_CMS, "cms1");
    assert_null(dir_cache_rcpt_get(c, "a@x.test", 2));
    assert_true(dir_cache_login_ok(c, "bob", "pw", 2));
    dir_cache_free(&c);
}

static void
test_replace_and_bound(void **state)
{
    (void)state;
    struct dir_cache *c = cache_new(3);
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_SITE, "a", "1", 0), 0);
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_SITE, "a", "2", 0), 0);
    assert_int_equal(dir_cache_size(c), 1);
    assert_string_equal(dir_cache_object_get(c, DIR_KIND_SITE, "a", 0), "2");
    /* A new password replaces the old proof. */
    assert_int_equal(dir_cache_login_put(c, "u", "old", 0), 0);
    assert_int_equal(dir_cache_login_put(c, "u", "new", 0), 0);
    assert_false(dir_cache_login_ok(c, "u", "old", 0));
    assert_true(dir_cache_login_ok(c, "u", "new", 0));
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_SITE, "b", "3", 0), 0);
    assert_int_equal(dir_cache_size(c), 3);
    /* Full: the oldest stored (site a) goes first. */
    assert_int_equal(dir_cache_object_put(c, DIR_KIND_SITE, "c", "4", 0), 0);
    assert_int_equal(dir_cache_size(c), 3);
    assert_null(dir_cache_object_get(c, DIR_KIND_SITE, "a", 0));
    assert_true(dir_cache_login_ok(c, "u", "new", 0));
    assert_string_equal(dir_cache_object_get(c, DIR_KIND_SITE, "c", 0), "4");
    /* Many more than fit, and the bound holds. */
    for (int i = 0; i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        assert_int_equal(dir_cache_object_put(c, DIR_KIND_SITE, name, "x", 0), 0);
        assert_true(dir_cache_size(c) <= 3);
    }
    assert_string_equal(dir_cache_object_get(c, DIR_KIND_SITE, "s999", 0), "x");
    dir_cache_free(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_login_exact_and_fresh),
        cmocka_unit_test(test_journal_keeps_fresh_then_expires),
        cmocka_unit_test(test_invalidate),
        cmocka_unit_test(test_replace_and_bound),
        cmocka_unit_test(test_recipients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The server key confirmations kept for a directory outage (dir_confirm.h), with fake clocks:
 * only the confirmed key, only within the bound, on the boot clock for this process's own
 * confirmations and on the wall clock for those read from disk, never one from the future;
 * the file's text round trip, its refusals, and the durable write read back.
 */
#include "dirclient/dir_confirm.h"

#include "lib/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define MIN 60000u

static void
hash_of(const char *key, unsigned char h[DIR_CONFIRM_HASH_BYTES])
{
    dir_confirm_hash(key, strlen(key), h);
}

static int
check(const struct dir_confirm *c, const char *server, const char *key, uint64_t boot,
      uint64_t wall, uint64_t bound, uint64_t *age_r)
{
    unsigned char h[DIR_CONFIRM_HASH_BYTES];
    hash_of(key, h);
    struct dir_confirm_now now = {.boot_ms = boot, .wall_ms = wall};
    const char *why = NULL;
    uint64_t age = 0;
    int ret = dir_confirm_check(c, server, h, &now, bound, &age, &why);
    if (ret == 0)
        *age_r = age;
    else
        assert_non_null(why);
    return ret;
}

static void
put(struct dir_confirm *c, const char *server, const char *key, uint64_t boot, uint64_t wall)
{
    unsigned char h[DIR_CONFIRM_HASH_BYTES];
    hash_of(key, h);
    struct dir_confirm_now now = {.boot_ms = boot, .wall_ms = wall};
    dir_confirm_put(c, server, h, &now);
}

static void
test_only_the_confirmed_key_within_the_bound(void **state)
{
    (void)state;
    static struct dir_confirm c;
    memset(&c, 0, sizeof(c));
    uint64_t age = 0;
    assert_int_equal(check(&c, "node-a", "k1", 1000, 5000, 10 * MIN, &age), -EACCES);
    put(&c, "node-a", "k1", 1000, 5000);
    assert_int_equal(check(&c, "node-a", "k1", 1000 + 3 * MIN, 5000, 10 * MIN, &age), 0);
    assert_int_equal(age, 3 * MIN);
    /* Another key, another server, the empty name. */
    assert_int_equal(check(&c, "node-a", "k2", 1000, 5000, 10 * MIN, &age), -EACCES);
    assert_int_equal(check(&c, "node-b", "k1", 1000, 5000, 10 * MIN, &age), -EACCES);
    assert_int_equal(check(&c, "", "k1", 1000, 5000, 10 * MIN, &age), -EACCES);
    /* The bound is inclusive, one millisecond more is too old; a shorter bound is shorter. */
    assert_int_equal(check(&c, "node-a", "k1", 1000 + 10 * MIN, 5000, 10 * MIN, &age), 0);
    assert_int_equal(check(&c, "node-a", "k1", 1001 + 10 * MIN, 5000, 10 * MIN, &age), -EACCES);
    assert_int_equal(check(&c, "node-a", "k1", 1000 + 3 * MIN, 5000, 2 * MIN, &age), -EACCES);
    /* A re-key: the directory confirmed the new key, the old one is refused. */
    put(&c, "node-a", "k2", 2000, 6000);
    assert_int_equal(check(&c, "node-a", "k1", 2000, 6000, 10 * MIN, &age), -EACCES);
    assert_int_equal(check(&c, "node-a", "k2", 2000, 6000, 10 * MIN, &age), 0);
    /* The directory refused: forgotten. */
    assert_true(dir_confirm_forget(&c, "node-a"));
    assert_false(dir_confirm_forget(&c, "node-a"));
    assert_int_equal(check(&c, "node-a", "k2", 2000, 6000, 10 * MIN, &age), -EACCES);
}

static void
test_own_confirmations_age_on_the_boot_clock(void **state)
{
    (void)state;
    static struct dir_confirm c;
    memset(&c, 0, sizeof(c));
    uint64_t age = 0;
    put(&c, "node-a", "k", 1000, 5000000);
    /* The wall clock stepped back an hour, or forward a day: the boot clock decides. */
    assert_int_equal(check(&c, "node-a", "k", 1000 + MIN, 5000000 - 60 * MIN, 10 * MIN, &age), 0);
    assert_int_equal(age, MIN);
    assert_int_equal(check(&c, "node-a", "k", 1000 + MIN, 5000000 + 1440 * MIN, 10 * MIN, &age), 0);
}

static void
test_from_disk_on_the_wall_clock_never_from_the_future(void **state)
{
    (void)state;
    static struct dir_confirm c, back;
    memset(&c, 0, sizeof(c));
    uint64_t age = 0;
    put(&c, "node-a", "k", 1000, 5000000);
    char *text = dir_confirm_encode(&c);
    assert_non_null(text);
    const char *why = NULL;
    assert_int_equal(dir_confirm_decode(&back, text, strlen(text), &why), 0);
    free(text);
    assert_int_equal(back.e[0].boot_ms, 0);
    /* After a reboot the boot clock starts again small: the wall clock ages it. */
    assert_int_equal(check(&back, "node-a", "k", 10, 5000000 + 4 * MIN, 10 * MIN, &age), 0);
    assert_int_equal(age, 4 * MIN);
    assert_int_equal(check(&back, "node-a", "k", 10, 5000001 + 10 * MIN, 10 * MIN, &age), -EACCES);
    /* Dated after now: refused, whatever the bound. */
    assert_int_equal(check(&back, "node-a", "k", 10, 4999999, 10 * MIN, &age), -EACCES);
    assert_int_equal(check(&back, "node-a", "k", 10, 5000000, 10 * MIN, &age), 0);
}

static void
test_text_round_trip_and_refusals(void **state)
{
    (void)state;
    static struct dir_confirm c, back;
    memset(&c, 0, sizeof(c));
    put(&c, "node-a", "ka", 1, 1764151200000);
    put(&c, "node-b", "kb", 2, 0);
    put(&c, "has space", "kc", 3, 7); /* kept in memory, not written */
    char *text = dir_confirm_encode(&c);
    assert_non_null(text);
    const char *why = NULL;
    assert_int_equal(dir_confirm_decode(&back, text, strlen(text), &why), 0);
    assert_string_equal(back.e[0].server, "node-a");
    assert_int_equal(back.e[0].wall_ms, 1764151200000);
    assert_memory_equal(back.e[0].hash, c.e[0].hash, DIR_CONFIRM_HASH_BYTES);
    assert_string_equal(back.e[1].server, "node-b");
    assert_string_equal(back.e[2].server, "");
    char *again = dir_confirm_encode(&back);
    assert_string_equal(again, text);
    free(again);

    /* Each refusal empties the table. */
    static const char *bad[] = {
        "",
        "tandem server key confirmations 2\n",
        "tandem server key confirmations 1\nnode-a 00 1\n",
        "tandem server key confirmations 1\nnode-a\n",
        "tandem server key confirmations 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1",
        "tandem server key confirmations 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 01\n",
        "tandem server key confirmations 1\n"
        "node-a 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef 1\n",
        "tandem server key confirmations 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1 x\n",
        "tandem server key confirmations 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef "
        "18446744073709551616\n",
        "tandem server key confirmations 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 1\n"
        "node-a 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 2\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        back = c;
        why = NULL;
        assert_int_equal(dir_confirm_decode(&back, bad[i], strlen(bad[i]), &why), TDM_EINVAL);
        assert_non_null(why);
        assert_string_equal(back.e[0].server, "");
    }
    free(text);
}

static void
test_saved_file_reads_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/dir_confirm.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], tmp[140];
    snprintf(path, sizeof(path), "%s/server-keys", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    static struct dir_confirm c, back;
    memset(&c, 0, sizeof(c));
    const char *why = NULL;
    /* No file yet: empty, no error. */
    assert_int_equal(dir_confirm_load(path, &back, &why), 0);
    assert_string_equal(back.e[0].server, "");
    put(&c, "node-a", "ka", 1, 1764151200000);
    char *text = dir_confirm_encode(&c);
    assert_int_equal(dir_confirm_save(path, text, &why), 0);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed, nothing left aside */
    assert_int_equal(dir_confirm_load(path, &back, &why), 0);
    assert_string_equal(back.e[0].server, "node-a");
    assert_int_equal(back.e[0].wall_ms, 1764151200000);
    /* A torn file is refused whole. */
    FILE *f = fopen(path, "w");
    fputs("tandem server key confirmations 1\nnode-a 01", f);
    fclose(f);
    assert_int_equal(dir_confirm_load(path, &back, &why), TDM_EINVAL);
    assert_string_equal(back.e[0].server, "");
    free(text);
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_the_confirmed_key_within_the_bound),
        cmocka_unit_test(test_own_confirmations_age_on_the_boot_clock),
        cmocka_unit_test(test_from_disk_on_the_wall_clock_never_from_the_future),
        cmocka_unit_test(test_text_round_trip_and_refusals),
        cmocka_unit_test(test_saved_file_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests of the transport dumpster's files (src/smtp/dumpster.c): an entry's round trip
 * through put, list, read and decode; damaged entries refused; retention by age and by size,
 * oldest first; statistics per database; a crash's dot-file removed.
 */
#include "smtp/dumpster.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char datadir[64];

static int
setup(void **state)
{
    (void)state;
    strcpy(datadir, "/tmp/tdm-test-dumpster-XXXXXX");
    assert_non_null(mkdtemp(datadir));
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", datadir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char body[] = "Subject: kept\r\n\r\nhello\r\n";

static void
put(const char *db, int64_t time, const char *rcpt, uint8_t idbyte)
{
    struct dumpster_rcpt r = {.address = rcpt};
    memset(r.id, idbyte, sizeof r.id);
    struct dumpster_entry e = {.time = time,
                               .sender = "s@example.org",
                               .n_rcpts = 1,
                               .rcpts = &r,
                               .body = (const uint8_t *)body,
                               .body_len = sizeof body - 1};
    assert_int_equal(dumpster_put(datadir, db, &e), 0);
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

static void
test_round_trip(void **state)
{
    (void)state;
    struct dumpster_rcpt r[2] = {{.address = "alice@example.test"}, {.address = "\"a b\"@x.test"}};
    memset(r[0].id, 0xa1, DUMPSTER_ID_LEN);
    memset(r[1].id, 0xb2, DUMPSTER_ID_LEN);
    struct dumpster_entry e = {.time = 1764130000,
                               .sender = "",
                               .body_8bit = true,
                               .n_rcpts = 2,
                               .rcpts = r,
                               .body = (const uint8_t *)body,
                               .body_len = sizeof body - 1};
    assert_int_equal(dumpster_put(datadir, "db1", &e), 0);
    put("db1", 1764130100, "bob@example.test", 3);
    put("db2", 1764130050, "carol@example.test", 4);

    char **paths;
    size_t n;
    assert_int_equal(dumpster_list(datadir, "db1", INT64_MIN, &paths, &n), 0);
    assert_int_equal(n, 2);
    uint8_t *buf;
    size_t len;
    assert_int_equal(dumpster_read(paths[0], &buf, &len), 0); /* the oldest first */
    struct dumpster_decoded d;
    const char *err = NULL;
    assert_int_equal(dumpster_entry_decode(buf, len, &d, &err), 0);
    assert_int_equal(d.e.time, 1764130000);
    assert_true(d.e.body_8bit);
    assert_string_equal(d.e.sender, "");
    assert_int_equal(d.e.n_rcpts, 2);
    assert_string_equal(d.e.rcpts[1].address, "\"a b\"@x.test");
    assert_memory_equal(d.e.rcpts[1].id, r[1].id, DUMPSTER_ID_LEN);
    assert_int_equal(d.e.body_len, sizeof body - 1);
    assert_memory_equal(d.e.body, body, sizeof body - 1);
    dumpster_decoded_clear(&d);

    /* Every cut, and every flipped byte, is refused. */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(dumpster_entry_decode(buf, cut, &d, &err), TDM_EINVAL);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x40;
        assert_int_equal(dumpster_entry_decode(buf, len, &d, &err), TDM_EINVAL);
        buf[i] ^= 0x40;
    }
    free(buf);
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);

    /* since: only the later one; no such database: none, not an error. */
    assert_int_equal(dumpster_list(datadir, "db1", 1764130001, &paths, &n), 0);
    assert_int_equal(n, 1);
    free(paths[0]);
    free(paths);
    assert_int_equal(count("db3"), 0);
    assert_int_equal(dumpster_list(datadir, "../x", 0, &paths, &n), TDM_EINVAL);

    /* An all-zero id and an empty recipient list are refused. */
    memset(r[0].id, 0, DUMPSTER_ID_LEN);
    assert_int_equal(dumpster_put(datadir, "db1", &e), TDM_EINVAL);
    e.n_rcpts = 0;
    assert_int_equal(dumpster_put(datadir, "db1", &e), TDM_EINVAL);
}

struct stats {
    char names[4][16];
    uint64_t count[4], bytes[4];
    int64_t oldest[4];
    size_t n;
};

static int
stat_cb(void *ctx, const struct dumpster_db_stat *st)
{
    struct stats *s = ctx;
    assert_true(s->n < 4);
    snprintf(s->names[s->n], sizeof s->names[0], "%s", st->database);
    s->count[s->n] = st->count;
    s->bytes[s->n] = st->bytes;
    s->oldest[s->n++] = st->oldest;
    return 0;
}

static void
test_prune_and_stat(void **state)
{
    (void)state;
    const int64_t now = 1764200000;
    put("db2", now - 300, "a@x.test", 1);
    put("db1", now - 200, "a@x.test", 2);
    put("db1", now - 100, "a@x.test", 3);
    put("db2", now - 10, "a@x.test", 4);

    struct stats st = {0};
    assert_int_equal(dumpster_stat(datadir, stat_cb, &st), 0);
    assert_int_equal(st.n, 2);
    assert_string_equal(st.names[0], "db1");
    assert_int_equal(st.count[0], 2);
    assert_int_equal(st.oldest[0], now - 200);
    assert_int_equal(st.oldest[1], now - 300);
    uint64_t one = st.bytes[0] / 2; /* every entry here has the same size */
    assert_true(one > sizeof body);

    /* A crash's dot-file: removed once it is old, never listed. */
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s/dumpster/db1/.0000001764199999-0011223344556677.msg", datadir);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(count("db1"), 2);

    unsigned removed;
    /* By age: what was delivered more than 250 s ago. */
    assert_int_equal(dumpster_prune(datadir, now, 250, 0, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(count("db2"), 1);
    assert_int_equal(access(tmp, F_OK), 0); /* not old yet */
    /* By size: the oldest go, across databases, until two entries fit. */
    assert_int_equal(dumpster_prune(datadir, now, 0, 2 * one, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(count("db1"), 1); /* now - 200 went, now - 100 stays */
    assert_int_equal(count("db2"), 1);
    /* An hour later the dot-file is a leftover. */
    assert_int_equal(dumpster_prune(datadir, (int64_t)time(NULL) + 2 * 3600, 0, 0, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_and_stat, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

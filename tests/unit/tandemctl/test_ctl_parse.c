/*
 * tandemctl's small parsers and tables (src/tandemctl/ctl_parse.c, ctl_table.c): sizes,
 * --since, HOST:PORT, path encoding (a name must never escape its path segment), and the
 * alignment of tables.
 */
#include "tandemctl/ctl_parse.h"
#include "tandemctl/ctl_table.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void
test_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
        uint64_t v;
    } cases[] = {
        {"0", true, 0},
        {"1048576", true, 1048576},
        {"64K", true, 65536},
        {"1m", true, 1u << 20},
        {"2G", true, 2ull << 30},
        {"3T", true, 3ull << 40},
        {"18446744073709551615", true, UINT64_MAX},
        {"18446744073709551616", false, 0},
        {"16777216T", false, 0}, /* 2^64: overflows */
        {"", false, 0},
        {"K", false, 0},
        {"-1", false, 0},
        {" 1", false, 0},
        {"1KB", false, 0},
        {"1.5G", false, 0},
        {"1P", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        bool ok = ctl_parse_size(cases[i].s, &v);
        if (ok != cases[i].ok)
            fail_msg("\"%s\": %s", cases[i].s, ok ? "accepted" : "refused");
        if (ok)
            assert_int_equal(v, cases[i].v);
    }
}

static void
test_since(void **state)
{
    (void)state;
    const time_t now = 1764081306; /* 2025-11-25T14:35:06Z */
    static const struct {
        const char *s;
        bool ok;
        long long v;
    } cases[] = {
        {"90s", true, 1764081306 - 90},
        {"10m", true, 1764081306 - 600},
        {"2h", true, 1764081306 - 7200},
        {"7d", true, 1764081306 - 7 * 86400},
        {"0s", true, 1764081306},
        {"1764000000", true, 1764000000},
        {"0", true, 0},
        {"2025-11-25T14:35:06Z", true, 1764081306},
        {"2025-11-25T14:35:06", true, 1764081306},
        {"2025-11-25 14:35:06", true, 1764081306},
        {"2025-11-25", true, 1764028800},
        {"1970-01-01", true, 0},
        {"30000d", false, 0}, /* before 1970 */
        {"10w", false, 0},
        {"10 m", false, 0},
        {"yesterday", false, 0},
        {"", false, 0},
        {"-5m", false, 0},
        {"2025-11-25T14:35", false, 0},
        {"2025-11-25Z", false, 0},
        {"2025-1-5", false, 0},
        {"2025-11-25T14:35:06+01:00", false, 0},
        {"99999999999999999999", false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long v = -1;
        bool ok = ctl_parse_since(cases[i].s, now, &v);
        if (ok != cases[i].ok)
            fail_msg("\"%s\": %s", cases[i].s, ok ? "accepted" : "refused");
        if (ok && v != cases[i].v)
            fail_msg("\"%s\": %lld, want %lld", cases[i].s, v, cases[i].v);
    }
}

static void
test_host_port(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        const char *host; /* NULL: refused */
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8440", "127.0.0.1", 8440},
        {"dir1.example.com:1", "dir1.example.com", 1},
        {"[::1]:65535", "::1", 65535},
        {"[2001:db8::10]:8443", "2001:db8::10", 8443},
        {"::1:8443", NULL, 0}, /* IPv6 without brackets is ambiguous */
        {"127.0.0.1", NULL, 0},
        {"127.0.0.1:", NULL, 0},
        {":8440", NULL, 0},
        {"[]:8440", NULL, 0},
        {"[::1]8440", NULL, 0},
        {"[::1", NULL, 0},
        {"host:0", NULL, 0},
        {"host:65536", NULL, 0},
        {"host:+1", NULL, 0},
        {"host:1x", NULL, 0},
        {"host:99999999999999999999", NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char host[64] = "unchanged";
        unsigned port = 0;
        bool ok = ctl_parse_host_port(cases[i].s, host, sizeof(host), &port);
        if (ok != (cases[i].host != NULL))
            fail_msg("\"%s\": %s", cases[i].s, ok ? "accepted" : "refused");
        if (ok) {
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
        }
    }
    /* A host that does not fit is refused, not cut. */
    char small[4];
    unsigned port;
    assert_false(ctl_parse_host_port("abcd:1", small, sizeof(small), &port));
    assert_true(ctl_parse_host_port("abc:1", small, sizeof(small), &port));
    /* A port alone, as cms --imap-port takes it. */
    assert_true(ctl_parse_port("143", &port));
    assert_int_equal(port, 143);
    assert_true(ctl_parse_port("65535", &port));
    assert_int_equal(port, 65535);
    static const char *const bad[] = {"", "0", "65536", "-1", "+1", " 1", "1 ", "1x", "0x10"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (ctl_parse_port(bad[i], &port))
            fail_msg("\"%s\": accepted", bad[i]);
}

static void
test_path_append(void **state)
{
    (void)state;
    char buf[64];
    strcpy(buf, "/v1/objects/user/");
    assert_true(ctl_path_append(buf, sizeof(buf), "alice.smith-1_~"));
    assert_string_equal(buf, "/v1/objects/user/alice.smith-1_~");
    /* Everything that could end the segment or start a query or fragment is encoded. */
    strcpy(buf, "/x/");
    assert_true(ctl_path_append(buf, sizeof(buf), "../a/b?c=d#e f%\xc3\xa9"));
    assert_string_equal(buf, "/x/..%2Fa%2Fb%3Fc%3Dd%23e%20f%25%C3%A9");
    /* Too long: false, and buf is as it was. */
    char tiny[8] = "/x/";
    assert_false(ctl_path_append(tiny, sizeof(tiny), "abcde"));
    assert_string_equal(tiny, "/x/");
    assert_false(ctl_path_append(tiny, sizeof(tiny), "ab c"));
    assert_string_equal(tiny, "/x/");
    assert_true(ctl_path_append(tiny, sizeof(tiny), "abcd")); /* exactly fills it */
    assert_string_equal(tiny, "/x/abcd");
}

static void
test_path_make(void **state)
{
    (void)state;
    char buf[32];
    assert_true(ctl_path_make(buf, sizeof(buf), "/v1/copies/", "a b", "/reseed"));
    assert_string_equal(buf, "/v1/copies/a%20b/reseed");
    assert_true(ctl_path_make(buf, sizeof(buf), "/q?database=", "db1", ""));
    assert_string_equal(buf, "/q?database=db1");
    /* Each part can be the one that does not fit. */
    char tiny[8];
    assert_true(ctl_path_make(tiny, sizeof(tiny), "/x/", "ab", "/c")); /* exactly fills it */
    assert_string_equal(tiny, "/x/ab/c");
    assert_false(ctl_path_make(tiny, sizeof(tiny), "/x/", "ab", "/cd"));
    assert_false(ctl_path_make(tiny, sizeof(tiny), "/x/", "abcde", ""));
    assert_false(ctl_path_make(tiny, sizeof(tiny), "/xxxxxxx/", "", ""));
}

/* The table printed into a string. */
static char *
render(const struct ctl_table *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ctl_table_print(t, f);
    fclose(f);
    return buf;
}

static void
test_table(void **state)
{
    (void)state;
    static const char *const headers[] = {"NAME", "DISPLAY NAME", "DATABASE"};
    struct ctl_table *t = ctl_table_new(3, headers);
    const char *r1[] = {"alice", "Al\xc3\xa9xandra", "db1"}; /* 9 characters, 10 bytes */
    const char *r2[] = {"bob", NULL, "db2\nx"};
    ctl_table_add(t, r1);
    ctl_table_add(t, r2);
    char *s = render(t);
    assert_string_equal(s, "NAME   DISPLAY NAME  DATABASE\n"
                           "alice  Al\xc3\xa9xandra     db1\n"
                           "bob    -             db2 x\n");
    free(s);
    ctl_table_free(&t);
    assert_null(t);
    /* No header row: key/value lines. */
    t = ctl_table_new(2, NULL);
    const char *k1[] = {"kind:", "user"};
    const char *k2[] = {"display_name:", "Alice"};
    ctl_table_add(t, k1);
    ctl_table_add(t, k2);
    s = render(t);
    assert_string_equal(s, "kind:          user\ndisplay_name:  Alice\n");
    free(s);
    ctl_table_free(&t);
    ctl_table_free(&t); /* NULL is fine */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size),      cmocka_unit_test(test_since),
        cmocka_unit_test(test_host_port), cmocka_unit_test(test_path_append),
        cmocka_unit_test(test_path_make),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

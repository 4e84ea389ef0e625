/*
 * The IMAP response writer (src/proto/imap/imap_write.c), modified UTF-7 (imap_mutf7.c) and
 * dates (imap_date.c). Writers are compared against reference outputs byte for byte; the
 * encoders are checked both ways (round trips, and refusal of every non-canonical form).
 */
#include "proto/imap/imap_date.h"
#include "proto/imap/imap_mutf7.h"
#include "proto/imap/imap_write.h"

#include "lib/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* ---- strings ---- */

struct string_case {
    const char *in;
    size_t len; /* 0: strlen */
    enum imap_write_mode mode;
    const char *astring, *string;
};

static const struct string_case strings[] = {
    {"INBOX", 0, IMAP_WRITE_REV1, "INBOX", "\"INBOX\""},
    {"a]b", 0, IMAP_WRITE_REV1, "a]b", "\"a]b\""},
    {"", 0, IMAP_WRITE_REV1, "\"\"", "\"\""},
    {"NIL", 0, IMAP_WRITE_REV1, "\"NIL\"", "\"NIL\""},
    {"nil", 0, IMAP_WRITE_REV1, "\"nil\"", "\"nil\""},
    {"two words", 0, IMAP_WRITE_REV1, "\"two words\"", "\"two words\""},
    {"q\"b\\s", 0, IMAP_WRITE_REV1, "\"q\\\"b\\\\s\"", "\"q\\\"b\\\\s\""},
    {"a(b", 0, IMAP_WRITE_REV1, "\"a(b\"", "\"a(b\""},
    {"50%", 0, IMAP_WRITE_REV1, "\"50%\"", "\"50%\""},
    {"line\r\nbreak", 0, IMAP_WRITE_REV1, "{11}\r\nline\r\nbreak", "{11}\r\nline\r\nbreak"},
    {"f\xc3\xbcr", 0, IMAP_WRITE_REV1, "{4}\r\nf\xc3\xbcr", "{4}\r\nf\xc3\xbcr"},
    {"f\xc3\xbcr", 0, IMAP_WRITE_UTF8, "\"f\xc3\xbcr\"", "\"f\xc3\xbcr\""},
    {"a\0b", 3, IMAP_WRITE_UTF8, "{3}\r\na\0b", "{3}\r\na\0b"},
};

static void
test_strings(void **state)
{
    (void)state;
    struct imap_buf b = IMAP_BUF_INIT;
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        const struct string_case *c = &strings[i];
        size_t len = c->len ? c->len : strlen(c->in);
        imap_buf_clear(&b);
        imap_write_astring(&b, c->in, len, c->mode);
        /* the one case with an explicit length has a NUL: the bytes after it are "\0b" */
        size_t extra = c->len ? 2 : 0;
        assert_int_equal(b.len, strlen(c->astring) + extra);
        assert_memory_equal(b.data, c->astring, b.len);
        imap_buf_clear(&b);
        imap_write_string(&b, c->in, len, c->mode);
        assert_int_equal(b.len, strlen(c->string) + extra);
        assert_memory_equal(b.data, c->string, b.len);
    }
    /* long strings go in a literal even when they could be quoted */
    char big[1100];
    memset(big, 'a', sizeof(big));
    imap_buf_clear(&b);
    imap_write_string(&b, big, 1024, IMAP_WRITE_REV1);
    assert_int_equal(b.len, 1026);
    imap_buf_clear(&b);
    imap_write_string(&b, big, 1025, IMAP_WRITE_REV1);
    assert_memory_equal(b.data, "{1025}\r\naaa", 11);
    imap_buf_clear(&b);
    imap_write_literal8(&b, "a\0b", 3);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "~{3}\r\na\0b", 9);
    imap_buf_clear(&b);
    imap_write_nstring(&b, NULL, 0, IMAP_WRITE_REV1);
    imap_buf_puts(&b, " ");
    imap_write_nstring(&b, "NIL", 3, IMAP_WRITE_REV1);
    assert_string_equal(b.data, "NIL \"NIL\"");
    imap_buf_free(&b);
    assert_null(b.data);
}

static void
test_flags_and_sets(void **state)
{
    (void)state;
    struct imap_buf b = IMAP_BUF_INIT;
    static const char *const flags[] = {"\\Seen", "\\Answered", "$Forwarded"};
    imap_write_flag_list(&b, flags, 3);
    imap_buf_puts(&b, " ");
    imap_write_flag_list(&b, flags, 0);
    assert_string_equal(b.data, "(\\Seen \\Answered $Forwarded) ()");

    static const struct {
        uint32_t uids[8];
        size_t n;
        const char *want;
    } sets[] = {
        {{1, 2, 3, 5, 7, 8}, 6, "1:3,5,7:8"},
        {{4}, 1, "4"},
        {{1, 3, 5}, 3, "1,3,5"},
        {{9, 8, 7}, 3, "9,8,7"}, /* unsorted: still correct, just not compressed */
        {{4294967294u, 4294967295u}, 2, "4294967294:4294967295"},
        {{4294967295u, 1}, 2, "4294967295,1"},
        {{0}, 0, ""},
    };
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
        imap_buf_clear(&b);
        imap_write_uid_set(&b, sets[i].uids, sets[i].n);
        assert_string_equal(b.data ? b.data : "", sets[i].want);
    }
    struct imap_seq_range r[] = {{5, IMAP_SEQ_STAR}, {3, 3}, {9, 2}};
    struct imap_seqset set = {.n = 3, .r = r};
    imap_buf_clear(&b);
    imap_write_seqset(&b, &set);
    assert_string_equal(b.data, "5:*,3,9:2");
    struct imap_seqset saved = {.saved = true};
    imap_buf_clear(&b);
    imap_write_seqset(&b, &saved);
    assert_string_equal(b.data, "$");
    imap_buf_free(&b);
}

static void
test_esearch(void **state)
{
    (void)state;
    struct imap_buf b = IMAP_BUF_INIT;
    static const uint32_t ids[] = {2, 10, 11, 12, 13, 14, 15, 16, 17, 22, 23, 27, 28, 29, 30};
    /* RFC 4731 section 3.1's example */
    imap_write_esearch(&b, "A282", false, IMAP_SEARCH_RETURN_MIN | IMAP_SEARCH_RETURN_COUNT, ids,
                       15, 0);
    assert_string_equal(b.data, "* ESEARCH (TAG \"A282\") MIN 2 COUNT 15\r\n");
    imap_buf_clear(&b);
    imap_write_esearch(&b, "A283", true,
                       IMAP_SEARCH_RETURN_ALL | IMAP_SEARCH_RETURN_MAX | IMAP_SEARCH_RETURN_MIN,
                       ids, 15, 0);
    assert_string_equal(b.data,
                        "* ESEARCH (TAG \"A283\") UID MIN 2 MAX 30 ALL 2,10:17,22:23,27:30\r\n");
    /* RFC 4731 3.2: a search with the MODSEQ key says the highest MODSEQ last */
    imap_buf_clear(&b);
    imap_write_esearch(&b, "a", false, IMAP_SEARCH_RETURN_COUNT, ids, 15, 917162500);
    assert_string_equal(b.data, "* ESEARCH (TAG \"a\") COUNT 15 MODSEQ 917162500\r\n");
    /* nothing matched: only COUNT says so */
    imap_buf_clear(&b);
    imap_write_esearch(&b, "A284", false,
                       IMAP_SEARCH_RETURN_ALL | IMAP_SEARCH_RETURN_MIN | IMAP_SEARCH_RETURN_MAX |
                           IMAP_SEARCH_RETURN_COUNT,
                       NULL, 0, 0);
    assert_string_equal(b.data, "* ESEARCH (TAG \"A284\") COUNT 0\r\n");
    imap_buf_clear(&b);
    imap_write_esearch(&b, NULL, true, IMAP_SEARCH_RETURN_ALL, NULL, 0, 0);
    assert_string_equal(b.data, "* ESEARCH UID\r\n");
    /* RFC 7162 3.2.10's example */
    static const uint32_t gone[] = {41, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56,
                                    57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
                                    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
                                    87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100};
    imap_buf_clear(&b);
    imap_write_vanished(&b, true, gone, sizeof(gone) / sizeof(gone[0]));
    imap_write_vanished(&b, false, gone, 1);
    imap_write_vanished(&b, false, gone, 0);
    assert_string_equal(b.data, "* VANISHED (EARLIER) 41,43:100\r\n* VANISHED 41\r\n");
    imap_buf_free(&b);
}

static void
test_list_and_status(void **state)
{
    (void)state;
    struct imap_buf b = IMAP_BUF_INIT;
    static const char *const attrs[] = {"\\HasNoChildren", "\\Drafts"};
    imap_write_list(&b, false, attrs, 2, '/', "Entw\xc3\xbcrfe", false, NULL, IMAP_WRITE_REV1);
    assert_string_equal(b.data, "* LIST (\\HasNoChildren \\Drafts) \"/\" Entw&APw-rfe\r\n");
    imap_buf_clear(&b);
    imap_write_list(&b, false, attrs, 2, '/', "Entw\xc3\xbcrfe", false, NULL, IMAP_WRITE_UTF8);
    assert_string_equal(b.data, "* LIST (\\HasNoChildren \\Drafts) \"/\" \"Entw\xc3\xbcrfe\"\r\n");
    imap_buf_clear(&b);
    imap_write_list(&b, true, attrs, 0, 0, "", false, NULL, IMAP_WRITE_REV1);
    assert_string_equal(b.data, "* LSUB () NIL \"\"\r\n");
    imap_buf_clear(&b);
    imap_write_list(&b, false, attrs, 0, '\\', "Sent Items", true, NULL, IMAP_WRITE_REV1);
    assert_string_equal(b.data,
                        "* LIST () \"\\\\\" \"Sent Items\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
    imap_buf_clear(&b);
    imap_write_list(&b, false, attrs, 0, '/', "New & Old", false, "Caf\xc3\xa9", IMAP_WRITE_REV1);
    assert_string_equal(b.data, "* LIST () \"/\" \"New &- Old\" (\"OLDNAME\" (Caf&AOk-))\r\n");

    /* A name that is not UTF-8 cannot be modified UTF-7: it goes out as it is, in a literal. */
    imap_buf_clear(&b);
    imap_write_list(&b, false, attrs, 0, '/', "bad\xff", false, NULL, IMAP_WRITE_REV1);
    assert_string_equal(b.data, "* LIST () \"/\" {4}\r\nbad\xff\r\n");

    struct imap_status_values v = {
        .items = IMAP_STATUS_MESSAGES | IMAP_STATUS_UIDNEXT | IMAP_STATUS_HIGHESTMODSEQ |
                 IMAP_STATUS_APPENDLIMIT,
        .messages = 231,
        .uidnext = 44292,
        .highestmodseq = 7011231777ull,
        .appendlimit = 67108864,
    };
    imap_buf_clear(&b);
    imap_write_status(&b, "blurdybloop", &v, IMAP_WRITE_REV1);
    assert_string_equal(b.data, "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 HIGHESTMODSEQ "
                                "7011231777 APPENDLIMIT 67108864)\r\n");
    imap_buf_clear(&b);
    imap_write_status_response(&b, "a1", "OK", "READ-WRITE", "SELECT completed");
    imap_write_status_response(&b, NULL, "BAD", NULL, "Invalid tag");
    assert_string_equal(b.data, "a1 OK [READ-WRITE] SELECT completed\r\n* BAD Invalid tag\r\n");
    imap_buf_free(&b);
}

/* ---- modified UTF-7 ---- */

static const struct {
    const char *mutf7, *utf8;
} mutf7_pairs[] = {
    {"INBOX", "INBOX"},
    {"&-", "&"},
    {"Tom &- Jerry", "Tom & Jerry"},
    {"Entw&APw-rfe", "Entw\xc3\xbcrfe"},
    /* RFC 3501 5.1.3's example: "~peter/mail/<Taipei>/<Japanese>" */
    {"~peter/mail/&U,BTFw-/&ZeVnLIqe-", "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
                                        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
    {"&2D3eAA-", "\xf0\x9f\x98\x80"}, /* U+1F600: a surrogate pair */
    {"&AAk-tab", "\ttab"},
    {"&AH8-", "\x7f"},
    {"&AOkA6QDp-", "\xc3\xa9\xc3\xa9\xc3\xa9"},
    {"", ""},
};

static void
test_mutf7_round_trip(void **state)
{
    (void)state;
    struct imap_buf b = IMAP_BUF_INIT;
    for (size_t i = 0; i < sizeof(mutf7_pairs) / sizeof(mutf7_pairs[0]); i++) {
        imap_buf_clear(&b);
        assert_int_equal(imap_mutf7_encode(mutf7_pairs[i].utf8, strlen(mutf7_pairs[i].utf8), &b),
                         0);
        assert_string_equal(b.data ? b.data : "", mutf7_pairs[i].mutf7);
        imap_buf_clear(&b);
        assert_int_equal(imap_mutf7_decode(mutf7_pairs[i].mutf7, strlen(mutf7_pairs[i].mutf7), &b),
                         0);
        assert_string_equal(b.data ? b.data : "", mutf7_pairs[i].utf8);
    }
    /* Every BMP code point and a sample above it survive encode then decode. */
    for (uint32_t cp = 1; cp < 0x110000; cp += cp < 0x10000 ? 1 : 997) {
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        char u[5];
        size_t n;
        if (cp < 0x80)
            u[0] = (char)cp, n = 1;
        else if (cp < 0x800)
            u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
        else if (cp < 0x10000)
            u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
            u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
        else
            u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
            u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
        struct imap_buf enc = IMAP_BUF_INIT, dec = IMAP_BUF_INIT;
        assert_int_equal(imap_mutf7_encode(u, n, &enc), 0);
        assert_int_equal(imap_mutf7_decode(enc.data, enc.len, &dec), 0);
        assert_int_equal(dec.len, n);
        assert_memory_equal(dec.data, u, n);
        imap_buf_free(&enc);
        imap_buf_free(&dec);
    }
    imap_buf_free(&b);
}

static void
test_mutf7_refusals(void **state)
{
    (void)state;
    static const char *const bad_mutf7[] = {
        "&AGE-",      /* encodes "a", which must be sent as itself */
        "&",          /* unterminated */
        "&Jjo",       /* run not closed */
        "&Jjp-",      /* leftover bits not zero */
        "&Jjo!-",     /* not base64 */
        "&Jjo=-",     /* padding is not used */
        "&AAA-",      /* U+0000 */
        "&2D0-",      /* high surrogate alone */
        "&3gA-",      /* low surrogate alone */
        "&2D3YPQ-",   /* high surrogate followed by another high */
        "&Jjo-&Jjo-", /* two runs back to back */
        "a\xc3\xa4",  /* raw 8-bit */
        "tab\t",      /* raw control character */
        "&-&",        /* trailing "&" */
        "&JjoAAA-",   /* 2 units then 2 bits... and U+0000 */
        "&AOkA-",     /* 24 bits: a unit and 8 leftover bits */
    };
    struct imap_buf b = IMAP_BUF_INIT;
    imap_buf_puts(&b, "keep");
    for (size_t i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
        if (imap_mutf7_decode(bad_mutf7[i], strlen(bad_mutf7[i]), &b) != TDM_EINVAL)
            fail_msg("%s was accepted", bad_mutf7[i]);
        assert_string_equal(b.data, "keep"); /* nothing left behind */
    }
    static const char *const bad_utf8[] = {
        "\xc3",             /* truncated */
        "\xc0\xaf",         /* overlong "/" */
        "\xe0\x80\xaf",     /* overlong */
        "\xed\xa0\x80",     /* a surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xff",
        "\x80",
    };
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        assert_int_equal(imap_mutf7_encode(bad_utf8[i], strlen(bad_utf8[i]), &b), TDM_EINVAL);
        assert_string_equal(b.data, "keep");
    }
    assert_int_equal(imap_mutf7_encode("a\0b", 3, &b), TDM_EINVAL);
    assert_string_equal(b.data, "keep");
    imap_buf_free(&b);
}

/* ---- dates ---- */

static void
test_date_time(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t t;
        int zone;
        const char *out;
    } good[] = {
        {"17-Jul-1996 02:44:25 -0700", 837596665, -420, "17-Jul-1996 02:44:25 -0700"},
        {" 1-Jan-1970 00:00:00 +0000", 0, 0, " 1-Jan-1970 00:00:00 +0000"},
        {"1-jan-1970 01:00:00 +0100", 0, 60, " 1-Jan-1970 01:00:00 +0100"},
        {"25-Nov-2026 17:20:00 +0000", 1795627200, 0, "25-Nov-2026 17:20:00 +0000"},
        {"29-Feb-2000 23:59:60 +0000", 951868799, 0, "29-Feb-2000 23:59:59 +0000"},
        {"01-Jan-0001 00:00:00 +0000", -62135596800, 0, " 1-Jan-0001 00:00:00 +0000"},
        {"31-Dec-1969 23:59:59 -9959", -1 + 5999 * 60, -5999, "31-Dec-1969 23:59:59 -9959"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct imap_date_time dt;
        if (!imap_date_time_parse(good[i].in, strlen(good[i].in), &dt))
            fail_msg("%s refused", good[i].in);
        assert_int_equal(dt.time, good[i].t);
        assert_int_equal(dt.zone_minutes, good[i].zone);
        char s[IMAP_DATE_TIME_LEN + 1];
        assert_true(imap_date_time_format(dt.time, dt.zone_minutes, s));
        assert_string_equal(s, good[i].out);
    }
    static const char *const bad[] = {
        "17-Jul-1996 02:44:25",
        "17-Jul-1996 24:00:00 +0000",
        "17-Jul-1996 02:60:00 +0000",
        "17-Jul-1996 02:44:25 +0060",
        "17-Jul-1996 02:44:25 0700",
        "30-Feb-2000 00:00:00 +0000",
        "29-Feb-1900 00:00:00 +0000",
        "17-Jly-1996 02:44:25 -0700",
        "17-Jul-96 02:44:25 -0700",
        "  1-Jan-1970 00:00:00 +0000",
        "17-Jul-1996 02:44:25 -0700 ",
        "0-Jan-1970 00:00:00 +0000",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct imap_date_time dt;
        if (imap_date_time_parse(bad[i], strlen(bad[i]), &dt))
            fail_msg("%s accepted", bad[i]);
    }
    char s[IMAP_DATE_TIME_LEN + 1];
    assert_false(imap_date_time_format(253402300800, 0, s)); /* year 10000 */
    assert_false(imap_date_time_format(0, 6000, s));
    struct imap_buf b = IMAP_BUF_INIT;
    imap_write_date_time(&b, 837596665, -420);
    assert_string_equal(b.data, "\"17-Jul-1996 02:44:25 -0700\"");
    imap_write_date_time(&b, INT64_MAX, 0);
    assert_int_equal(imap_buf_error(&b), -EINVAL);
    imap_buf_free(&b);
}

static void
test_date(void **state)
{
    (void)state;
    struct imap_date d;
    assert_true(imap_date_parse("1-Feb-1994", 10, &d));
    assert_int_equal(d.year, 1994);
    assert_int_equal(d.month, 2);
    assert_int_equal(d.day, 1);
    assert_int_equal(imap_date_to_time(&d), 760060800);
    char s[IMAP_DATE_MAX_LEN + 1];
    assert_int_equal(imap_date_format(&d, s), 10);
    assert_string_equal(s, "1-Feb-1994");
    assert_true(imap_date_parse("29-FEB-2024", 11, &d));
    assert_int_equal(imap_date_format(&d, s), 11);
    assert_string_equal(s, "29-Feb-2024");
    assert_false(imap_date_parse("29-Feb-2023", 11, &d));
    assert_false(imap_date_parse("1-Feb-94", 8, &d));
    assert_false(imap_date_parse("1-Feb-1994 ", 11, &d));
    assert_false(imap_date_parse("123-Feb-1994", 12, &d));
    assert_false(imap_date_parse("1-Feb1994", 9, &d));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),          cmocka_unit_test(test_flags_and_sets),
        cmocka_unit_test(test_esearch),          cmocka_unit_test(test_list_and_status),
        cmocka_unit_test(test_mutf7_round_trip), cmocka_unit_test(test_mutf7_refusals),
        cmocka_unit_test(test_date_time),        cmocka_unit_test(test_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

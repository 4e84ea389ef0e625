/*
 * The search side of the MIME module: charset conversion and RFC 2047 encoded words
 * (mime_charset.c), the text of a message, HTML to text, case folding and matching
 * (mime_search.c), and Date parsing (mime_date.c). Expected values were produced with another
 * implementation (Python's codecs and calendar.timegm), not with this code.
 */
#include "proto/mime/mime_charset.h"
#include "proto/mime/mime_date.h"
#include "proto/mime/mime_message.h"
#include "proto/mime/mime_search.h"
#include "proto/mime/mime_section.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void
test_encoded_words(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"=?UTF-8?B?UmVwb3J0IMO8YmVyIGRpZSBab2xsZQ==?= and =?KOI8-R?Q?=F0=D2=C9=D7=C5=D4?=",
         "Report \xc3\xbc"
         "ber die Zolle and \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},
        {"=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard"},
        /* RFC 2047 section 8's examples. */
        {"(=?ISO-8859-1?Q?a?=)", "(a)"},
        {"(=?ISO-8859-1?Q?a?= b)", "(a b)"},
        {"(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)"},
        {"(=?ISO-8859-1?Q?a?=  \t =?ISO-8859-1?Q?b?=)", "(ab)"},
        {"(=?ISO-8859-1?Q?a_b?=)", "(a b)"},
        {"(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)"},
        /* A character split across two words in the same charset. */
        {"=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?=", "caf\xc3\xa9"},
        {"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"},
        {"=?gb2312?B?xOO6ww==?=", "\xe4\xbd\xa0\xe5\xa5\xbd"},
        {"=?iso-8859-7?B?yuHr5+zd8eE=?=",
         "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1"},
        {"=?windows-1251?Q?=CF=F0=E8=E2=E5=F2?=",
         "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},
        /* iso-8859-1 is read as windows-1252: 0x80 is the euro sign. */
        {"=?iso-8859-1?Q?=80uro?=", "\xe2\x82\xac"
                                    "uro"},
        /* RFC 2231 language suffix. */
        {"=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore"},
        /* Unknown charset: not UTF-8, so windows-1252. */
        {"=?x-unknown?Q?caf=E9?=", "caf\xc3\xa9"},
        {"=?x-unknown?Q?caf=C3=A9?=", "caf\xc3\xa9"},
        /* A name that could carry iconv options is unknown: never given to iconv, the bytes
         * go through the fallback (windows-1252, as they are not UTF-8). */
        {"=?UTF-8//TRANSLIT?Q?x=E9?=", "x\xc3\xa9"},
        /* Not encoded words: kept as text. */
        {"=?utf-8?Q?unterminated", "=?utf-8?Q?unterminated"},
        {"=?utf-8?X?abc?=", "=?utf-8?X?abc?="},
        {"=?utf-8?Q?with space?=", "=?utf-8?Q?with space?="},
        {"a = b =? c", "a = b =? c"},
        /* Raw 8-bit: UTF-8 kept, anything else as windows-1252. */
        {"J\xc3\xb6rg", "J\xc3\xb6rg"},
        {"J\xf6rg", "J\xc3\xb6rg"},
        /* Bad base64 inside a word still gives what it can; invalid UTF-8 becomes U+FFFD. */
        {"=?utf-8?B?/w==?=", "\xc3\xbf"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mime_buf out = MIME_BUF_INIT;
        assert_int_equal(
            mime_header_decode_utf8((const uint8_t *)cases[i].in, strlen(cases[i].in), &out), 0);
        const char *got = out.data ? (const char *)out.data : "";
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("\"%s\": got \"%s\", want \"%s\"", cases[i].in, got, cases[i].want);
        mime_buf_clear(&out);
    }
}

static void
test_charsets(void **state)
{
    (void)state;
    static const struct {
        const char *charset, *in;
        size_t in_len;
        int ret;
        const char *want;
    } cases[] = {
        {"utf-8", "caf\xc3\xa9", 5, 0, "caf\xc3\xa9"},
        {"UTF-8", "caf\xe9", 4, 1, "caf\xc3\xa9"}, /* mislabelled Latin-1 */
        {"us-ascii", "plain", 5, 0, "plain"},
        {"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", 6, 0,
         "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},
        {"windows-1252", "\x80\x81", 2, 1, "\xe2\x82\xac\xef\xbf\xbd"}, /* 0x81 is undefined */
        {"utf-16le", "a\0b\0c", 5, 1, "ab\xef\xbf\xbd"},                /* cut short */
        {"shift_jis", "\x93\xfa\x96\x7b", 4, 0, "\xe6\x97\xa5\xe6\x9c\xac"},
        {"no-such-charset", "caf\xe9", 4, 1, "caf\xc3\xa9"},
        {"", "x", 1, 1, "x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mime_buf out = MIME_BUF_INIT;
        int ret = mime_charset_to_utf8(cases[i].charset, strlen(cases[i].charset),
                                       (const uint8_t *)cases[i].in, cases[i].in_len, &out);
        const char *got = out.data ? (const char *)out.data : "";
        if (ret != cases[i].ret || strcmp(got, cases[i].want) != 0)
            fail_msg("%s: %d \"%s\", want %d \"%s\"", cases[i].charset, ret, got, cases[i].ret,
                     cases[i].want);
        mime_buf_clear(&out);
    }
    assert_true(mime_utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4));
    assert_false(mime_utf8_valid((const uint8_t *)"\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(mime_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3));     /* surrogate */
    assert_false(mime_utf8_valid((const uint8_t *)"\xc0\xaf", 2));         /* overlong */
    assert_false(mime_utf8_valid((const uint8_t *)"\xe2\x82", 2));         /* cut short */
}

static void
test_fold_match(void **state)
{
    (void)state;
    static const struct {
        const char *hay, *needle;
        int want;
    } cases[] = {
        {"Hello World", "WORLD", 1},
        {"Hello World", "worlds", 0},
        {"anything", "", 1},
        {"", "a", 0},
        {"\xc3\x80\xc3\x89\xc3\x8e\xc3\x95\xc3\x9c", "\xc3\xa0\xc3\xa9\xc3\xae\xc3\xb5\xc3\xbc", 1},
        {"\xc5\xb8", "\xc3\xbf", 1},                                         /* Ÿ ÿ */
        {"\xc5\x81\xc3\x93\x44\xc5\xb9", "\xc5\x82\xc3\xb3\x64\xc5\xba", 1}, /* ŁÓDŹ łódź */
        {"Gr\xc3\xbc\xc3\x9f"
         "e",
         "GR\xc3\x9c\xc3\x9f"
         "E",
         1}, /* ß stays ß */
        {"Gr\xc3\xbc\xc3\x9f"
         "e",
         "GR\xc3\x9c"
         "SSE",
         0},                                /* no full folding */
        {"\xe1\xba\x9e", "\xc3\x9f", 1},    /* ẞ to ß */
        {"\xc4\xb0stanbul", "istanbul", 0}, /* İ is not folded */
        {"\xce\xa3\xce\x9f\xce\xa6\xce\x8a\xce\x91", "\xcf\x83\xce\xbf\xcf\x86\xce\xaf\xce\xb1", 1},
        {"\xce\x8c\xce\xa3\xce\x9f\xce\xa3", "\xcf\x8c\xcf\x83\xce\xbf\xcf\x82", 1}, /* final ς */
        {"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2 \xd0\xbc\xd0\xb8\xd1\x80",
         "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 1},
        {"\xd0\x81\xd0\xbb\xd0\xba\xd0\xb0", "\xd1\x91\xd0\xbb\xd0\xba\xd0\xb0", 1}, /* Ё ё */
        {"\xd2\x90", "\xd2\x91", 1},                                                 /* Ґ ґ */
        {"\xd4\xb1", "\xd5\xa1", 1},                                                 /* Armenian */
        {"\xe1\xba\xbc", "\xe1\xba\xbd", 1},                                         /* Ẽ ẽ */
        {"\xef\xbc\xa1\xef\xbc\xa2", "\xef\xbd\x81\xef\xbd\x82", 1}, /* full-width */
        {"\xef\xbc\xa1\xef\xbc\xa2", "ab", 0},
        {"\xff invalid ABC", "abc", 1},
        {"caf\xc3\xa9", "cafe", 0}, /* no accent stripping */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = mime_utf8_icontains((const uint8_t *)cases[i].hay, strlen(cases[i].hay),
                                      (const uint8_t *)cases[i].needle, strlen(cases[i].needle));
        if (got != cases[i].want)
            fail_msg("case %zu \"%s\" in \"%s\": %d", i, cases[i].needle, cases[i].hay, got);
    }
    /* Whole blocks: every upper case letter of the Latin-1 and basic Cyrillic ranges folds to
     * the letter 32 (Cyrillic 0x410-0x42f) above it. */
    for (uint32_t c = 0x410; c <= 0x42f; c++)
        assert_int_equal(mime_unicode_fold(c), c + 32);
    for (uint32_t c = 0x430; c <= 0x44f; c++)
        assert_int_equal(mime_unicode_fold(c), c);
    assert_int_equal(mime_unicode_fold(0xd7), 0xd7); /* × is not a letter */
    assert_int_equal(mime_unicode_fold(0x17f), 's');
    assert_int_equal(mime_unicode_fold(0x131), 0x131);
    assert_int_equal(mime_unicode_fold(0x3a2), 0x3a2); /* unassigned */
}

static char *load(const char *name, size_t *len_r);

/* Parameter values as UTF-8: RFC 2231 (with and without charset, continuations) and the
 * RFC 2047 words mailers put in filenames. */
static void
test_param_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *msg, *param, *want;
    } cases[] = {
        {"Content-Type: application/pdf; name*0*=utf-8''R%C3%A9sum%C3%A9%20; name*1=\"of.pdf\"",
         "name", "R\xc3\xa9sum\xc3\xa9 of.pdf"},
        {"Content-Type: text/plain; title*=iso-8859-1'fr'caf%E9", "title", "caf\xc3\xa9"},
        {"Content-Type: text/plain; title*=''caf%C3%A9", "title", "caf\xc3\xa9"},
        {"Content-Type: application/x; name=\"=?utf-8?B?w6l0w6kucGRm?=\"", "name",
         "\xc3\xa9t\xc3\xa9.pdf"},
        {"Content-Type: application/x; name=plain.txt", "name", "plain.txt"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s\r\n\r\n", cases[i].msg);
        struct mime_message *m;
        assert_int_equal(mime_message_parse((const uint8_t *)msg, strlen(msg), NULL, &m), 0);
        const struct mime_param *p = mime_param_find(mime_message_root(m)->params, cases[i].param);
        assert_non_null(p);
        struct mime_buf out = MIME_BUF_INIT;
        assert_int_equal(mime_param_utf8(p, &out), 0);
        if (strcmp((char *)out.data, cases[i].want) != 0)
            fail_msg("%s: got \"%s\"", cases[i].msg, out.data);
        mime_buf_clear(&out);
        mime_message_free(&m);
    }
    /* Outlook's RFC 2047 word in a quoted filename. */
    size_t len;
    char *data = load("related.eml", &len);
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)data, len, NULL, &m), 0);
    const struct mime_part *p;
    bool as_message;
    uint32_t two = 2;
    assert_int_equal(mime_section_part(m, &two, 1, &p, &as_message), 0);
    struct mime_buf out = MIME_BUF_INIT;
    assert_int_equal(mime_param_utf8(mime_param_find(p->disposition_params, "filename"), &out), 0);
    assert_string_equal((char *)out.data, "Quartalszahlen_Q1_\xc3\xbc"
                                          "bersicht.xlsx");
    mime_buf_clear(&out);
    mime_message_free(&m);
    free(data);
}

static char *
load(const char *name, size_t *len_r)
{
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof(path), "%.*s/mime/%s", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len_r = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

static void
test_body_text(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *want; /* NULL: see the contains checks */
        const char *contains[4];
        const char *absent[3];
    } cases[] = {
        {"alternative.eml",
         "Caf\xc3\xa9 cr\xc3\xa8me\r\nsoftbreak\n Caf\xc3\xa9 cr\xc3\xa8me \n",
         {NULL},
         {NULL}},
        {"mixed.eml",
         "Gr\xc3\xbc\xc3\x9f"
         "e, see the attachments.\n",
         {NULL},
         {NULL}},
        {"nested.eml",
         NULL,
         {"See below.", "Subject: the original\n", "plain text\n", " html & text \n"},
         {"<p>", "Content-Type: text/plain", NULL}},
        {"broken.eml",
         NULL,
         {"J\xc3\xb6rg was here ==ZZ end", "inner without close", NULL},
         {"last part", "garbage", NULL}},
        {"simple.eml", "Hi.\r\n\n", {NULL}, {NULL}},
        {"related.eml",
         "Hallo Team,\nanbei die Zahlen.\n\n   Hallo Team,  anbei die Zahlen.    \r\n\n",
         {NULL},
         {NULL}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len;
        char *data = load(cases[i].file, &len);
        struct mime_message *m;
        assert_int_equal(mime_message_parse((const uint8_t *)data, len, NULL, &m), 0);
        struct mime_buf out = MIME_BUF_INIT;
        assert_int_equal(mime_search_body_text(m, mime_message_root(m), &out), 0);
        const char *got = out.data ? (const char *)out.data : "";
        if (cases[i].want && strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got [%s]", cases[i].file, got);
        for (int k = 0; k < 4 && cases[i].contains[k]; k++)
            if (!strstr(got, cases[i].contains[k]))
                fail_msg("%s: [%s] lacks [%s]", cases[i].file, got, cases[i].contains[k]);
        for (int k = 0; k < 3 && cases[i].absent[k]; k++)
            if (strstr(got, cases[i].absent[k]))
                fail_msg("%s: [%s] has [%s]", cases[i].file, got, cases[i].absent[k]);
        mime_buf_clear(&out);
        mime_message_free(&m);
        free(data);
    }
}

static void
test_html(void **state)
{
    (void)state;
    static const struct {
        const char *html, *want;
    } cases[] = {
        {"<p>b<b>ol</b>d</p>", " bold \n"},
        {"a<br>b", "a b\n"},
        {"x<script type=\"a>b\">var s = '<p>';</script>y", "x y\n"},
        {"x<STYLE>p { }</style >y", "x y\n"},
        {"<!-- <p>hidden</p> -->shown", "shown\n"},
        {"&lt;tag&gt; &amp;&amp; &quot;q&quot; &#233;&#xE9; &nbsp;&bogus; &", "<tag> && \"q\" "
                                                                              "\xc3\xa9\xc3\xa9  "
                                                                              "&bogus; &\n"},
        {"<a href='x>y'>link</a>", "link\n"},
        {"unterminated <p", "unterminated  \n"},
        {"a < b and c<3 <>", "a < b and c<3 <>\n"},
        {"caf&eacute; &euro;5 &rsquo;n&hellip; &Auml;", "caf\xc3\xa9 \xe2\x82\xac"
                                                        "5 \xe2\x80\x99n"
                                                        "\xe2\x80\xa6 \xc3\x84\n"},
        {"&EACUTE; &eacute", "&EACUTE; &eacute\n"},
        {"<script>never closed", "\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[512];
        snprintf(msg, sizeof(msg), "Content-Type: text/html; charset=utf-8\r\n\r\n%s",
                 cases[i].html);
        struct mime_message *m;
        assert_int_equal(mime_message_parse((const uint8_t *)msg, strlen(msg), NULL, &m), 0);
        struct mime_buf out = MIME_BUF_INIT;
        assert_int_equal(mime_search_body_text(m, mime_message_root(m), &out), 0);
        if (strcmp((char *)out.data, cases[i].want) != 0)
            fail_msg("[%s]: got [%s], want [%s]", cases[i].html, out.data, cases[i].want);
        mime_buf_clear(&out);
        mime_message_free(&m);
    }
}

static void
test_header_text(void **state)
{
    (void)state;
    size_t len;
    char *data = load("mixed.eml", &len);
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)data, len, NULL, &m), 0);
    struct mime_buf out = MIME_BUF_INIT;
    assert_int_equal(mime_search_header_text(m, mime_message_root(m), "SUBJECT", &out), 0);
    assert_string_equal((char *)out.data, "Report \xc3\xbc"
                                          "ber die Zolle and "
                                          "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\n");
    out.len = 0;
    assert_int_equal(mime_search_header_text(m, mime_message_root(m), NULL, &out), 0);
    assert_non_null(strstr((char *)out.data, "From: Ann Example <ann@example.com>\n"));
    assert_non_null(strstr((char *)out.data, "Content-Type: multipart/mixed; boundary="));
    assert_int_equal(
        mime_utf8_icontains(out.data, out.len, (const uint8_t *)"\xd0\x9f\xd0\xa0\xd0\x98", 6), 1);
    mime_buf_clear(&out);
    mime_message_free(&m);
    free(data);
}

static void
test_dates(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int ret;
        int y, mo, d, h, mi, s, zone;
        bool known;
        int64_t utc;
    } cases[] = {
        {"Tue, 1 Jul 2003 10:52:37 +0200", 0, 2003, 7, 1, 10, 52, 37, 120, true, 1057049557},
        {"2 Jan 99 10:00 EST", 0, 1999, 1, 2, 10, 0, 0, -300, true, 915289200},
        {"Fri, 21 Nov 1997 09:55:06 -0600 (CST)", 0, 1997, 11, 21, 9, 55, 6, -360, true, 880127706},
        /* RFC 5322 A.6.3, unfolded. */
        {"Thu,      13        Feb          1969      23:32               -0330 (Newfoundland "
         "Time)",
         0, 1969, 2, 13, 23, 32, 0, -210, true, -27723480},
        {"Thu,      13        Feb          1969      23:32:54  -0330 (Newfoundland Time)", 0, 1969,
         2, 13, 23, 32, 54, -210, true, -27723426},
        {"Mon, 1 Jan 101 00:00:00 +0000", 0, 2001, 1, 1, 0, 0, 0, 0, true, 978307200},
        {"(comment) sat , 29 feb 2020 23:59:60 gmt", 0, 2020, 2, 29, 23, 59, 60, 0, true,
         1583020800},
        {"1 Jan 2001 00:00 -0000", 0, 2001, 1, 1, 0, 0, 0, 0, false, 978307200},
        {"1 Jan 2001 00:00 A", 0, 2001, 1, 1, 0, 0, 0, 0, false, 978307200},
        {"1 Jan 2001 00:00", 0, 2001, 1, 1, 0, 0, 0, 0, false, 978307200},
        {"1-Jan-2001 00:00:00 +0000", 0, 2001, 1, 1, 0, 0, 0, 0, true, 978307200},
        {"1 January 2001 00:00 +0000 trailing junk", 0, 2001, 1, 1, 0, 0, 0, 0, true, 978307200},
        {"29 Feb 2019 10:00 +0000", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"31 Apr 2020 10:00 +0000", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Foo 2020 10:00 +0000", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 2020", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 2020 24:00 +0000", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 2020 10:60 +0000", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 2020 10:00 +0099", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 2020 10:00 +01", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"123 Jan 2020 10:00", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"1 Jan 12345 10:00", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
        {"", TDM_EINVAL, 0, 0, 0, 0, 0, 0, 0, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mime_date d;
        int ret = mime_date_parse((const uint8_t *)cases[i].in, strlen(cases[i].in), &d);
        if (ret != cases[i].ret)
            fail_msg("\"%s\": %d, want %d", cases[i].in, ret, cases[i].ret);
        if (ret)
            continue;
        if (d.year != cases[i].y || d.month != cases[i].mo || d.day != cases[i].d ||
            d.hour != cases[i].h || d.min != cases[i].mi || d.sec != cases[i].s ||
            d.zone_minutes != cases[i].zone || d.zone_known != cases[i].known ||
            d.utc != cases[i].utc)
            fail_msg("\"%s\": %d-%d-%d %d:%d:%d %d %d %lld", cases[i].in, d.year, d.month, d.day,
                     d.hour, d.min, d.sec, d.zone_minutes, d.zone_known, (long long)d.utc);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoded_words), cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_fold_match),    cmocka_unit_test(test_body_text),
        cmocka_unit_test(test_html),          cmocka_unit_test(test_header_text),
        cmocka_unit_test(test_dates),         cmocka_unit_test(test_param_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The MIME parser and its IMAP views (src/proto/mime/). Sample messages live in the mime/ directory
 * with their exact bytes (CRLF, LF-only, 8-bit, broken boundaries). ENVELOPE and
 * BODYSTRUCTURE are compared whole against strings worked out by hand from RFC 3501's rules
 * (sizes and line counts counted on the samples); sections are compared byte for byte.
 * Decoders are fed whole, split at every offset and byte by byte, and must agree.
 */
#include "proto/mime/mime_decode.h"
#include "proto/mime/mime_imap.h"
#include "proto/mime/mime_message.h"
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

/* The samples sit next to this file; CMake compiles it by absolute path. */
static char *
load_sample(const char *name, size_t *len_r)
{
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    int dl = slash ? (int)(slash - __FILE__) : 1;
    snprintf(path, sizeof(path), "%.*s/mime/%s", dl, slash ? __FILE__ : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len_r = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Walks every part: spans inside the message and inside the parent. */
static void
check_spans(const struct mime_part *p, size_t size, size_t lo, size_t hi)
{
    assert_true(p->header.off >= lo && p->header.off + p->header.len <= hi);
    assert_true(p->body.off >= lo && p->body.off + p->body.len <= hi);
    assert_true(p->header.off + p->header.len <= p->body.off);
    assert_true(hi <= size);
    for (const struct mime_part *c = p->children; c; c = c->next) {
        assert_ptr_equal(c->parent, p);
        check_spans(c, size, p->body.off, p->body.off + p->body.len);
    }
    if (p->message)
        check_spans(p->message, size, p->body.off, p->body.off + p->body.len);
}

static struct mime_message *
parse_sample(const char *name, char **data_r, size_t *len_r)
{
    *data_r = load_sample(name, len_r);
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)*data_r, *len_r, NULL, &m), 0);
    check_spans(mime_message_root(m), *len_r, 0, *len_r);
    return m;
}

struct view_case {
    const char *file;
    unsigned flags;
    const char *envelope;
    const char *bodystructure;
    const char *body;
};

static const struct view_case view_cases[] = {
    {"simple.eml", 0,
     "(\"Tue, 1 Jul 2003 10:52:37 +0200\" \"Hello world\" "
     "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
     "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
     "((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
     "((\"Mary Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")"
     "(\"Who?\" NIL \"one\" \"y.test\")) "
     "((NIL NIL \"boss\" \"nil.test\")(\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" "
     "\"example.net\")) "
     "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL "
     "\"<5678.21-Nov-1997@example.com>\")",
     "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)",
     "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1)"},
    {"alternative.eml", 0,
     "(\"2 Jan 99 10:00 EST\" \"alternatives\" "
     "((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) "
     "((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) "
     "((\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" NIL \"PIRARD\" \"vm1.ulg.ac.be\")) "
     "((NIL NIL \"team\" NIL)(NIL NIL \"alice\" \"example.com\")"
     "(\"Bob B.\" NIL \"bob\" \"example.com\")(NIL NIL NIL NIL)"
     "(NIL \"@relay.test,@r2.test\" \"carol\" \"example.com\")) NIL NIL "
     "\"<parent@example.com>\" \"<alt@example.com>\")",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"ISO-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 28 3 NIL "
     "NIL NIL NIL)(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") \"<html@x>\" \"the HTML\" "
     "\"BASE64\" 28 1 NIL NIL (\"en\" \"fr\") NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"=_alt_42\") "
     "NIL NIL NIL)",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"ISO-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 28 3)"
     "(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") \"<html@x>\" \"the HTML\" \"BASE64\" 28 1) "
     "\"ALTERNATIVE\")"},
    {"mixed.eml", 0,
     "(\"Fri, 21 Nov 1997 09:55:06 -0600 (CST)\" "
     "\"=?UTF-8?B?UmVwb3J0IMO8YmVyIGRpZSBab2xsZQ==?= and =?KOI8-R?Q?=F0=D2=C9=D7=C5=D4?=\" "
     "((\"Ann Example\" NIL \"ann\" \"example.com\")) "
     "((\"Ann Example\" NIL \"ann\" \"example.com\")) "
     "((\"Ann Example\" NIL \"ann\" \"example.com\")) "
     "((NIL NIL \"bob\" \"example.org\")) NIL NIL NIL \"<mixed.1@example.com>\")",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 29 1 NIL NIL NIL NIL)"
     "(\"APPLICATION\" \"PDF\" (\"NAME*\" \"utf-8''R%C3%A9sum%C3%A9%20of%20Ann.pdf\") NIL NIL "
     "\"BASE64\" 8 \"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"ATTACHMENT\" (\"FILENAME*\" "
     "\"utf-8'en'R%C3%A9sum%C3%A9%20of%20Ann.pdf\" \"SIZE\" \"6\")) NIL NIL)"
     "(\"IMAGE\" \"PNG\" NIL \"<dot@example.com>\" NIL \"BASE64\" 12 NIL "
     "(\"INLINE\" (\"FILENAME\" \"dot.png\")) NIL \"http://example.com/dot.png\") \"MIXED\" "
     "(\"BOUNDARY\" \"----=_Part_0_123.456\") NIL NIL NIL)",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"8BIT\" 29 1)"
     "(\"APPLICATION\" \"PDF\" (\"NAME*\" \"utf-8''R%C3%A9sum%C3%A9%20of%20Ann.pdf\") NIL NIL "
     "\"BASE64\" 8)(\"IMAGE\" \"PNG\" NIL \"<dot@example.com>\" NIL \"BASE64\" 12) \"MIXED\")"},
    {"nested.eml", 0,
     "(\"Mon, 3 Feb 2020 12:00:00 +0000\" \"Fwd: the original\" "
     "((\"Forwarder\" NIL \"fwd\" \"example.com\")) ((\"Forwarder\" NIL \"fwd\" \"example.com\")) "
     "((\"Forwarder\" NIL \"fwd\" \"example.com\")) "
     "((\"Someone\" NIL \"someone\" \"example.net\")) NIL NIL NIL NIL)",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)"
     "(\"MESSAGE\" \"RFC822\" NIL NIL \"forwarded message\" \"7BIT\" 367 "
     "(\"Sun, 2 Feb 2020 08:30:00 -0500\" \"the original\" "
     "((\"Original Sender\" NIL \"orig\" \"example.org\")) "
     "((\"Original Sender\" NIL \"orig\" \"example.org\")) "
     "((\"Original Sender\" NIL \"orig\" \"example.org\")) "
     "((NIL NIL \"fwd\" \"example.com\")) NIL NIL NIL \"<orig@example.org>\") "
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 1 NIL NIL NIL NIL)"
     "(\"TEXT\" \"HTML\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 22 1 NIL NIL NIL NIL) "
     "\"ALTERNATIVE\" (\"BOUNDARY\" \"inner\") NIL NIL NIL) 16 NIL NIL NIL NIL)"
     "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 63 (NIL \"simple inner\" "
     "((NIL NIL \"x\" \"y.test\")) ((NIL NIL \"x\" \"y.test\")) ((NIL NIL \"x\" \"y.test\")) "
     "NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 22 1 "
     "NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"outer\") NIL NIL NIL)",
     NULL},
    /* LF-only; 8-bit name as a literal; the tab kept in the subject; garbage and a
     * "--b1-not-a-delimiter" line before the first boundary; a delimiter with transport
     * padding; an inner multipart and the outer one both without close delimiter. */
    {"broken.eml", MIME_MSG_BROKEN,
     "(NIL \"broken\tboundaries\" (({5}\r\nJ\xc3\xb6rg NIL \"joerg\" \"example.de\")) "
     "(({5}\r\nJ\xc3\xb6rg NIL \"joerg\" \"example.de\")) "
     "(({5}\r\nJ\xc3\xb6rg NIL \"joerg\" \"example.de\")) "
     "((\"Broken; List\" NIL \"list\" \"example.de\")(NIL NIL \"other\" \"example.de\")) "
     "NIL NIL NIL NIL)",
     "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"iso-8859-1\") NIL NIL \"QUOTED-PRINTABLE\" 28 2 NIL "
     "NIL NIL NIL)((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 19 1 NIL NIL "
     "NIL NIL) "
     "\"ALTERNATIVE\" (\"BOUNDARY\" \"b2\") NIL NIL NIL)(\"APPLICATION\" \"OCTET-STREAM\" NIL "
     "NIL NIL \"7BIT\" 30 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL)",
     NULL},
    /* multipart/digest: a part without Content-Type is message/rfc822. */
    {"digest.eml", 0,
     "(NIL \"digest\" ((NIL NIL \"digest\" \"example.com\")) "
     "((NIL NIL \"digest\" \"example.com\")) ((NIL NIL \"digest\" \"example.com\")) "
     "NIL NIL NIL NIL NIL)",
     "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 21 (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL "
     "NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL) "
     "3 NIL NIL NIL NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 13 1 "
     "NIL NIL NIL NIL) "
     "\"DIGEST\" (\"BOUNDARY\" \"d\") NIL NIL NIL)",
     NULL},
    /* Outlook's shape: mixed > related > alternative, an inline image by Content-ID, and an
     * attachment named with an RFC 2047 word in a quoted string. */
    {"related.eml", 0,
     "(\"Tue, 14 Mar 2023 08:15:01 +0000\" \"=?utf-8?Q?Quartalszahlen_Q1_=E2=80=93_bit"
     "te_pr=C3=BCfen?=\" (({13}\r\nM\xc3\xbcller, Anna NIL \"anna.mueller\" \"example."
     "com\")) (({13}\r\nM\xc3\xbcller, Anna NIL \"anna.mueller\" \"example.com\")) (({"
     "13}\r\nM\xc3\xbcller, Anna NIL \"anna.mueller\" \"example.com\")) ((\"team@examp"
     "le.org\" NIL \"team\" \"example.org\")) NIL NIL NIL \"<AM0PR01MB1234ABCD@AM0PR01"
     "MB1234.eurprd01.prod.outlook.com>\")",
     "((((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"BASE64\" 42 1 NIL NIL N"
     "IL NIL)(\"TEXT\" \"HTML\" (\"CHARSET\" \"utf-8\") NIL NIL \"QUOTED-PRINTABLE\" 1"
     "12 2 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"BOUNDARY\" \"_000_AM0PR01MB1234_\") NIL"
     " NIL NIL)(\"IMAGE\" \"PNG\" (\"NAME\" \"image001.png\") \"<image001.png@01D95640"
     ">\" \"image001.png\" \"BASE64\" 94 NIL (\"INLINE\" (\"FILENAME\" \"image001.png\""
     " \"SIZE\" \"68\" \"CREATION-DATE\" \"Tue, 14 Mar 2023 08:15:01 GMT\" \"MODIFICAT"
     "ION-DATE\" \"Tue, 14 Mar 2023 08:15:01 GMT\")) NIL NIL) \"RELATED\" (\"BOUNDARY\""
     " \"_003_AM0PR01MB1234_\" \"TYPE\" \"multipart/alternative\") NIL NIL NIL)(\"APPL"
     "ICATION\" \"VND.OPENXMLFORMATS-OFFICEDOCUMENT.SPREADSHEETML.SHEET\" (\"NAME\" \""
     "=?utf-8?B?UXVhcnRhbHN6YWhsZW5fUTFfw7xiZXJzaWNodC54bHN4?=\") NIL \"=?utf-8?B?UXVh"
     "cnRhbHN6YWhsZW5fUTFfw7xiZXJzaWNodC54bHN4?=\" \"BASE64\" 10 NIL (\"ATTACHMENT\" ("
     "\"FILENAME\" \"=?utf-8?B?UXVhcnRhbHN6YWhsZW5fUTFfw7xiZXJzaWNodC54bHN4?=\" \"SIZE"
     "\" \"4\" \"CREATION-DATE\" \"Tue, 14 Mar 2023 08:14:00 GMT\" \"MODIFICATION-DATE"
     "\" \"Tue, 14 Mar 2023 08:14:00 GMT\")) NIL NIL) \"MIXED\" (\"BOUNDARY\" \"_004_A"
     "M0PR01MB1234_\") NIL (\"de-DE\") NIL)",
     NULL},
};

static void
test_views(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(view_cases) / sizeof(view_cases[0]); i++) {
        const struct view_case *c = &view_cases[i];
        char *data;
        size_t len;
        struct mime_message *m = parse_sample(c->file, &data, &len);
        assert_int_equal(mime_message_flags(m), c->flags);
        struct mime_buf b = MIME_BUF_INIT;
        assert_int_equal(mime_imap_envelope(m, mime_message_root(m), &b), 0);
        if (strcmp((char *)b.data, c->envelope) != 0)
            fail_msg("%s ENVELOPE\n got %s\nwant %s", c->file, b.data, c->envelope);
        b.len = 0;
        assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), true, 0, &b), 0);
        if (strcmp((char *)b.data, c->bodystructure) != 0)
            fail_msg("%s BODYSTRUCTURE\n got %s\nwant %s", c->file, b.data, c->bodystructure);
        if (c->body) {
            b.len = 0;
            assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), false, 0, &b), 0);
            if (strcmp((char *)b.data, c->body) != 0)
                fail_msg("%s BODY\n got %s\nwant %s", c->file, b.data, c->body);
        }
        mime_buf_clear(&b);
        mime_message_free(&m);
        assert_null(m);
        free(data);
    }
}

struct section_case {
    const char *file;
    const char *section;
    const char *fields; /* space-separated, for HEADER.FIELDS[.NOT] */
    int ret;            /* 0, 1 (built) or TDM_ENOTFOUND */
    const char *want;
};

static const struct section_case section_cases[] = {
    {"simple.eml", "TEXT", NULL, 0, "Hi.\r\n"},
    {"simple.eml", "1", NULL, 0, "Hi.\r\n"}, /* a non-multipart message's part 1 is its body */
    {"simple.eml", "2", NULL, TDM_ENOTFOUND, NULL},
    {"simple.eml", "1.1", NULL, TDM_ENOTFOUND, NULL},
    {"simple.eml", "HEADER.FIELDS", "subject message-id", 1,
     "Subject: Hello\r\n world\r\nMessage-ID: <5678.21-Nov-1997@example.com>\r\n\r\n"},
    {"simple.eml", "HEADER.FIELDS", "X-Absent", 1, "\r\n"},
    {"simple.eml", "HEADER.FIELDS.NOT", "from to cc bcc subject message-id", 1,
     "Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\r\n"},
    {"simple.eml", "1.MIME", NULL, 0, NULL}, /* checked below: the message header */
    {"alternative.eml", "1", NULL, 0, "Caf=E9 cr=E8me\r\nsoft=\r\nbreak"},
    {"alternative.eml", "2", NULL, 0, "PHA+Q2Fmw6kgY3LDqG1lPC9wPg=="},
    {"alternative.eml", "2.MIME", NULL, 0,
     "Content-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n"
     "Content-ID: <html@x>\r\nContent-Description: the HTML\r\nContent-Language: en, fr\r\n\r\n"},
    {"alternative.eml", "3", NULL, TDM_ENOTFOUND, NULL},
    {"alternative.eml", "1.HEADER", NULL, TDM_ENOTFOUND, NULL}, /* not a message/rfc822 part */
    {"nested.eml", "1", NULL, 0, "See below.\r\n"},
    {"nested.eml", "2.HEADER.FIELDS", "SUBJECT", 1, "Subject: the original\r\n\r\n"},
    {"nested.eml", "2.1", NULL, 0, "plain text"},
    {"nested.eml", "2.2", NULL, 0, "<p>html &amp; text</p>"},
    {"nested.eml", "2.2.MIME", NULL, 0, "Content-Type: text/html; charset=us-ascii\r\n\r\n"},
    {"nested.eml", "2.MIME", NULL, 0,
     "Content-Type: message/rfc822\r\nContent-Description: forwarded message\r\n\r\n"},
    {"nested.eml", "3.TEXT", NULL, 0, "body of the simple one"},
    {"nested.eml", "3", NULL, 0,
     "Subject: simple inner\r\nFrom: x@y.test\r\n\r\nbody of the simple one"},
    {"nested.eml", "3.1", NULL, 0, "body of the simple one"}, /* non-multipart: its body */
    {"nested.eml", "3.HEADER", NULL, 0, "Subject: simple inner\r\nFrom: x@y.test\r\n\r\n"},
    {"nested.eml", "3.2", NULL, TDM_ENOTFOUND, NULL},
    {"nested.eml", "2.3", NULL, TDM_ENOTFOUND, NULL},
    {"nested.eml", "1.TEXT", NULL, TDM_ENOTFOUND, NULL},
    {"broken.eml", "1", NULL, 0, "J=F6rg was here=\n =3D=ZZ end"},
    {"broken.eml", "2.1", NULL, 0, "inner without close"},
    {"broken.eml", "3", NULL, 0, "last part, no close delimiter\n"},
    {"broken.eml", "2.1.MIME", NULL, 0, "Content-Type: text/plain\n\n"},
    {"digest.eml", "1.HEADER", NULL, 0, "Subject: one\r\n\r\n"},
    {"digest.eml", "1.MIME", NULL, 0, "\r\n"},
    {"related.eml", "1.1.1", NULL, 0, "SGFsbG8gVGVhbSwKYW5iZWkgZGllIFphaGxlbi4K\r\n"},
    {"related.eml", "2", NULL, 0, "UEsDBA==\r\n"},
    {"related.eml", "1.3", NULL, TDM_ENOTFOUND, NULL},
    {"related.eml", "1.1.3", NULL, TDM_ENOTFOUND, NULL},
    {"related.eml", "HEADER.FIELDS", "content-language accept-language", 1,
     "Accept-Language: de-DE, en-US\r\nContent-Language: de-DE\r\n\r\n"},
};

static void
test_sections(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(section_cases) / sizeof(section_cases[0]); i++) {
        const struct section_case *c = &section_cases[i];
        char *data;
        size_t len;
        struct mime_message *m = parse_sample(c->file, &data, &len);
        struct mime_section sec;
        assert_int_equal(mime_section_parse(c->section, strlen(c->section), &sec), 0);
        struct mime_str fields[8];
        char fbuf[256];
        if (c->fields) {
            snprintf(fbuf, sizeof(fbuf), "%s", c->fields);
            size_t n = 0;
            for (char *t = strtok(fbuf, " "); t; t = strtok(NULL, " "))
                fields[n++] = (struct mime_str){t, strlen(t)};
            sec.fields = fields;
            sec.n_fields = n;
        }
        struct mime_span span;
        struct mime_buf built = MIME_BUF_INIT;
        int ret = mime_section_fetch(m, &sec, &span, &built);
        if (ret != c->ret)
            fail_msg("%s BODY[%s]: %d, want %d", c->file, c->section, ret, c->ret);
        const char *got = NULL;
        size_t got_len = 0;
        if (ret == 0) {
            assert_true(span.off + span.len <= len);
            got = data + span.off;
            got_len = span.len;
        } else if (ret == 1) {
            got = (const char *)built.data;
            got_len = built.len;
        }
        if (c->want && (got_len != strlen(c->want) || memcmp(got, c->want, got_len) != 0))
            fail_msg("%s BODY[%s]\n got [%.*s]\nwant [%s]", c->file, c->section, (int)got_len, got,
                     c->want);
        if (strcmp(c->file, "simple.eml") == 0 && strcmp(c->section, "1.MIME") == 0) {
            /* The message header, as BODY[HEADER] gives it. */
            struct mime_section h;
            struct mime_span hs;
            assert_int_equal(mime_section_parse("HEADER", 6, &h), 0);
            assert_int_equal(mime_section_fetch(m, &h, &hs, &built), 0);
            assert_int_equal(hs.off, span.off);
            assert_int_equal(hs.len, span.len);
            assert_int_equal(hs.off, 0);
            assert_memory_equal(data + hs.len - 4, "\r\n\r\n", 4);
        }
        mime_buf_clear(&built);
        mime_message_free(&m);
        free(data);
    }
}

/* Every section of nested.eml by offset, worked out separately (by finding the delimiter
 * and empty lines in the file) rather than by this parser. */
static void
test_section_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *section;
        size_t off, len;
    } cases[] = {
        {"", 0, 803},         {"HEADER", 0, 185},    {"TEXT", 185, 618},    {"1.MIME", 194, 28},
        {"1", 222, 12},       {"2.MIME", 245, 72},   {"2", 317, 367},       {"2.HEADER", 317, 211},
        {"2.TEXT", 528, 156}, {"2.1.MIME", 537, 46}, {"2.1", 583, 10},      {"2.2.MIME", 604, 45},
        {"2.2", 649, 22},     {"3.MIME", 695, 32},   {"3", 727, 63},        {"3.HEADER", 727, 41},
        {"3.TEXT", 768, 22},  {"3.1", 768, 22},      {"3.1.MIME", 727, 41},
    };
    char *data;
    size_t len;
    struct mime_message *m = parse_sample("nested.eml", &data, &len);
    assert_int_equal(len, 803);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mime_section sec;
        struct mime_span span;
        struct mime_buf b = MIME_BUF_INIT;
        assert_int_equal(mime_section_parse(cases[i].section, strlen(cases[i].section), &sec), 0);
        assert_int_equal(mime_section_fetch(m, &sec, &span, &b), 0);
        if (span.off != cases[i].off || span.len != cases[i].len)
            fail_msg("BODY[%s]: %zu+%zu, want %zu+%zu", cases[i].section, span.off, span.len,
                     cases[i].off, cases[i].len);
        mime_buf_clear(&b);
    }
    mime_message_free(&m);
    free(data);
}

static void
test_section_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int ret;
        unsigned n;
        enum mime_section_text text;
    } cases[] = {
        {"", 0, 0, MIME_SECTION_ALL},
        {"1.2.3", 0, 3, MIME_SECTION_ALL},
        {"header", 0, 0, MIME_SECTION_HEADER},
        {"4.Header.Fields.Not", 0, 1, MIME_SECTION_HEADER_FIELDS_NOT},
        {"2.TEXT", 0, 1, MIME_SECTION_TEXT},
        {"2.MIME", 0, 1, MIME_SECTION_MIME},
        {"MIME", TDM_EINVAL, 0, 0},
        {"0", TDM_EINVAL, 0, 0},
        {"01", TDM_EINVAL, 0, 0},
        {"1.", TDM_EINVAL, 0, 0},
        {"1..2", TDM_EINVAL, 0, 0},
        {"4294967296", TDM_EINVAL, 0, 0},
        {"4294967295", 0, 1, MIME_SECTION_ALL},
        {"1.BODY", TDM_EINVAL, 0, 0},
        {"1.HEADER.", TDM_EINVAL, 0, 0},
        {"1x", TDM_EINVAL, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mime_section s;
        int ret = mime_section_parse(cases[i].s, strlen(cases[i].s), &s);
        if (ret != cases[i].ret)
            fail_msg("\"%s\": %d, want %d", cases[i].s, ret, cases[i].ret);
        if (ret == 0) {
            assert_int_equal(s.n_parts, cases[i].n);
            assert_int_equal(s.text, cases[i].text);
        }
    }
}

static void
test_partial(void **state)
{
    (void)state;
    static const struct {
        uint64_t total, origin, count, off, len;
    } cases[] = {
        {100, 0, 10, 0, 10},         {100, 95, 10, 95, 5}, {100, 100, 10, 100, 0},
        {100, 200, 1, 100, 0},       {0, 0, 5, 0, 0},      {100, 10, 0, 10, 0},
        {100, 1, UINT64_MAX, 1, 99},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t off, len;
        mime_partial(cases[i].total, cases[i].origin, cases[i].count, &off, &len);
        assert_int_equal(off, cases[i].off);
        assert_int_equal(len, cases[i].len);
    }
}

struct decode_case {
    enum mime_encoding enc;
    const char *in;
    const char *out;
    size_t out_len; /* 0: strlen(out) */
    bool clean;
};

static const struct decode_case decode_cases[] = {
    {MIME_ENC_BASE64, "SGVsbG8sIHdvcmxkIQ==", "Hello, world!", 0, true},
    {MIME_ENC_BASE64, "SGVs\r\nbG8s\r\nIHdv\r\ncmxk\r\nIQ==\r\n", "Hello, world!", 0, true},
    {MIME_ENC_BASE64, "SGVsbG8", "Hello", 0, true}, /* unpadded end */
    {MIME_ENC_BASE64, "SGVsbA==", "Hell", 0, true},
    {MIME_ENC_BASE64, "SGVsbG8=", "Hello", 0, true},
    {MIME_ENC_BASE64, "SGV*sbG8=", "Hello", 0, false},    /* junk skipped, counted */
    {MIME_ENC_BASE64, "SGVsbG8=SGVs", "Hello", 0, false}, /* data after padding */
    {MIME_ENC_BASE64, "SGVsb", "Hel", 0, false},          /* a lone sextet dropped */
    {MIME_ENC_BASE64, "=", "", 0, false},
    {MIME_ENC_BASE64, "AAEC/w==", "\x00\x01\x02\xff", 4, true},
    {MIME_ENC_BASE64, "", "", 0, true},
    {MIME_ENC_QP, "Caf=E9 cr=e8me", "Caf\xe9 cr\xe8me", 0, true},
    {MIME_ENC_QP, "soft=\r\nbreak", "softbreak", 0, true},
    {MIME_ENC_QP, "soft=\nbreak", "softbreak", 0, true},
    {MIME_ENC_QP, "soft=  \t\r\nbreak", "softbreak", 0, true}, /* padding before the break */
    {MIME_ENC_QP, "trailing   \r\nspace \t\nend  ", "trailing\r\nspace\nend", 0, true},
    {MIME_ENC_QP, "a = b", "a = b", 0, false},
    {MIME_ENC_QP, "=ZZ=3", "=ZZ=3", 0, false},
    {MIME_ENC_QP, "=4", "=4", 0, false},
    {MIME_ENC_QP, "x=", "x", 0, true},
    {MIME_ENC_QP, "bare\rcr", "bare\rcr", 0, true},
    {MIME_ENC_QP, "end\r", "end\r", 0, true},
    {MIME_ENC_QP, "=3D=0D=0A=00", "=\r\n\x00", 4, true},
    {MIME_ENC_QP, "a=\rb", "ab", 0, true},
    {MIME_ENC_8BIT, "as\r\nis=41", "as\r\nis=41", 0, true},
};

/* Decodes in, cut at cut1 and cut2 (pieces may be empty). */
static void
decode_pieces(const struct decode_case *c, size_t cut1, size_t cut2, struct mime_buf *out,
              bool *clean)
{
    size_t len = strlen(c->in);
    struct mime_decoder d;
    mime_decoder_init(&d, c->enc);
    size_t cuts[3] = {cut1, cut2, len};
    size_t prev = 0;
    out->len = 0;
    for (int k = 0; k < 3; k++) {
        uint8_t *o = mime_buf_reserve(out, MIME_DECODE_BOUND(cuts[k] - prev));
        assert_non_null(o);
        mime_buf_commit(out,
                        mime_decoder_feed(&d, (const uint8_t *)c->in + prev, cuts[k] - prev, o));
        prev = cuts[k];
    }
    uint8_t *o = mime_buf_reserve(out, MIME_DECODE_FINISH_MAX);
    assert_non_null(o);
    mime_buf_commit(out, mime_decoder_finish(&d, o));
    *clean = mime_decoder_clean(&d);
}

static void
test_decoders(void **state)
{
    (void)state;
    struct mime_buf out = MIME_BUF_INIT;
    for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
        const struct decode_case *c = &decode_cases[i];
        size_t len = strlen(c->in);
        size_t want_len = c->out_len ? c->out_len : strlen(c->out);
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++) {
                bool clean;
                decode_pieces(c, a, b, &out, &clean);
                if (out.len != want_len || memcmp(out.data, c->out, want_len) != 0 ||
                    clean != c->clean)
                    fail_msg("case %zu \"%s\" cut %zu/%zu: got %zu bytes [%.*s] clean %d", i, c->in,
                             a, b, out.len, (int)out.len, out.data, clean);
            }
    }
    mime_buf_clear(&out);
}

/* BINARY and BINARY.SIZE on the samples. */
static void
test_binary(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        uint32_t part[4];
        unsigned n;
        int ret;
        const char *want;
        size_t want_len;
        bool clean;
    } cases[] = {
        {"alternative.eml", {1}, 1, 1, "Caf\xe9 cr\xe8me\r\nsoftbreak", 0, true},
        {"alternative.eml", {2}, 1, 1, "<p>Caf\xc3\xa9 cr\xc3\xa8me</p>", 0, true},
        {"mixed.eml", {2}, 1, 1, "%PDF-1", 0, true},
        {"mixed.eml", {3}, 1, 1, "\x89PNG\r\n\x1a\n", 8, true},
        {"mixed.eml",
         {1},
         1,
         0,
         "Gr\xc3\xbc\xc3\x9f"
         "e, see the attachments.",
         0,
         true},
        {"broken.eml", {1}, 1, 1, "J\xf6rg was here ==ZZ end", 0, false},
        {"nested.eml", {3, 1}, 2, 0, "body of the simple one", 0, true},
        {"nested.eml", {4}, 1, TDM_ENOTFOUND, NULL, 0, true},
        {"related.eml", {1, 1, 1}, 3, 1, "Hallo Team,\nanbei die Zahlen.\n", 0, true},
        {"related.eml", {2}, 1, 1, "PK\x03\x04", 4, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *data;
        size_t len;
        struct mime_message *m = parse_sample(cases[i].file, &data, &len);
        struct mime_span span;
        struct mime_buf dec = MIME_BUF_INIT;
        bool clean;
        int ret = mime_binary_fetch(m, cases[i].part, cases[i].n, &span, &dec, &clean);
        assert_int_equal(ret, cases[i].ret);
        uint64_t size = 0;
        int sret = mime_binary_size(m, cases[i].part, cases[i].n, &size);
        assert_int_equal(sret, ret < 0 ? ret : 0);
        if (ret >= 0) {
            const char *got = ret ? (const char *)dec.data : data + span.off;
            size_t got_len = ret ? dec.len : span.len;
            size_t want_len = cases[i].want_len ? cases[i].want_len : strlen(cases[i].want);
            if (got_len != want_len || memcmp(got, cases[i].want, want_len) != 0)
                fail_msg("case %zu: got [%.*s]", i, (int)got_len, got);
            assert_int_equal(size, got_len);
            assert_int_equal(clean, cases[i].clean);
        }
        mime_buf_clear(&dec);
        mime_message_free(&m);
        free(data);
    }
}

/* BINARY streamed: the source span decoded in 7-byte pieces gives what mime_binary_fetch
 * gives, for every part of every sample. */
static void
test_binary_streamed(void **state)
{
    (void)state;
    static const char *files[] = {"alternative.eml", "mixed.eml", "related.eml", "broken.eml"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char *data;
        size_t len;
        struct mime_message *m = parse_sample(files[f], &data, &len);
        uint32_t parts[3];
        unsigned checked = 0;
        for (uint32_t a = 1; a <= 3; a++)
            for (uint32_t b = 0; b <= 2; b++) {
                parts[0] = a;
                parts[1] = b;
                unsigned n = b ? 2 : 1;
                struct mime_span span;
                enum mime_encoding enc;
                if (mime_binary_source(m, parts, n, &span, &enc) != 0)
                    continue;
                struct mime_buf whole = MIME_BUF_INIT, streamed = MIME_BUF_INIT;
                struct mime_span wspan;
                int ret = mime_binary_fetch(m, parts, n, &wspan, &whole, NULL);
                assert_true(ret == 0 || ret == 1);
                if (ret == 0)
                    mime_buf_append(&whole, data + wspan.off, wspan.len);
                struct mime_decoder d;
                mime_decoder_init(&d, enc);
                for (size_t off = 0; off < span.len; off += 7) {
                    size_t piece = span.len - off < 7 ? span.len - off : 7;
                    uint8_t *o = mime_buf_reserve(&streamed, MIME_DECODE_BOUND(piece));
                    mime_buf_commit(
                        &streamed,
                        mime_decoder_feed(&d, (const uint8_t *)data + span.off + off, piece, o));
                }
                uint8_t *o = mime_buf_reserve(&streamed, MIME_DECODE_FINISH_MAX);
                mime_buf_commit(&streamed, mime_decoder_finish(&d, o));
                assert_int_equal(streamed.len, whole.len);
                assert_memory_equal(streamed.data ? streamed.data : (uint8_t *)"",
                                    whole.data ? whole.data : (uint8_t *)"", whole.len);
                mime_buf_clear(&whole);
                mime_buf_clear(&streamed);
                checked++;
            }
        assert_true(checked >= 2); /* every sample has two parts or more */
        mime_message_free(&m);
        free(data);
    }
}

/* An unknown Content-Transfer-Encoding is TDM_EINVAL for BINARY (IMAP: [UNKNOWN-CTE]) but
 * still shows in BODYSTRUCTURE as written. */
static void
test_unknown_cte(void **state)
{
    (void)state;
    const char msg[] = "Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n"
                       "\r\nbegin 644 x\r\n";
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)msg, sizeof(msg) - 1, NULL, &m), 0);
    struct mime_span span;
    struct mime_buf b = MIME_BUF_INIT;
    uint32_t one = 1;
    assert_int_equal(mime_binary_fetch(m, &one, 1, &span, &b, NULL), TDM_EINVAL);
    uint64_t size;
    assert_int_equal(mime_binary_size(m, &one, 1, &size), TDM_EINVAL);
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), false, 0, &b), 0);
    assert_string_equal((char *)b.data,
                        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"X-UUENCODE\" "
                        "13 1)");
    mime_buf_clear(&b);
    mime_message_free(&m);
}

/* Writes one BODYSTRUCTURE for a message built from a header and a body. */
static void
expect_bs(const char *msg, const struct mime_limits *limits, unsigned flags, const char *want)
{
    struct mime_message *m;
    size_t len = strlen(msg);
    assert_int_equal(mime_message_parse((const uint8_t *)msg, len, limits, &m), 0);
    check_spans(mime_message_root(m), len, 0, len);
    assert_int_equal(mime_message_flags(m), flags);
    struct mime_buf b = MIME_BUF_INIT;
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), true, 0, &b), 0);
    if (strcmp((char *)b.data, want) != 0)
        fail_msg("BODYSTRUCTURE\n got %s\nwant %s", b.data, want);
    mime_buf_clear(&b);
    mime_message_free(&m);
}

static void
test_content_fields(void **state)
{
    (void)state;
    /* RFC 2231 section 3/4/5 examples, comments, obs white space before the colon. */
    expect_bs(
        "Content-Type : message/external-body; access-type=URL;\r\n"
        "  URL*0=\"ftp://\";\r\n  URL*1=\"cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\"\r\n"
        "\r\n",
        NULL, 0,
        "(\"MESSAGE\" \"EXTERNAL-BODY\" (\"ACCESS-TYPE\" \"URL\" \"URL\" "
        "\"ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar\") NIL NIL \"7BIT\" 0 "
        "NIL NIL NIL NIL)");
    expect_bs("Content-Type: application/x-stuff;\r\n"
              " title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\r\n\r\nx",
              NULL, 0,
              "(\"APPLICATION\" \"X-STUFF\" (\"TITLE*\" "
              "\"us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A\") NIL NIL \"7BIT\" 1 NIL NIL "
              "NIL NIL)");
    /* Sections joined in number order, whatever the order written; a gap ends the value;
     * the RFC 2231 form wins over the plain one; no-charset extended value. */
    expect_bs("Content-Type: text/plain (a comment) ; name*1=\"b\"; name*0=a; name*3=z;\r\n"
              " name=plain; x*='en'%41; charset=\"utf-8\" (why not)\r\n\r\n",
              NULL, 0,
              "(\"TEXT\" \"PLAIN\" (\"NAME\" \"ab\" \"X*\" \"'en'A\" \"CHARSET\" \"utf-8\") NIL "
              "NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
    /* Junk parameters skipped; unquoted boundary with '=' accepted. */
    expect_bs("Content-Type: multipart/mixed; ;; junk; boundary==_b=\r\n\r\n--=_b=\r\n\r\n"
              "x\r\n--=_b=--\r\n",
              NULL, 0,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 1 1 NIL NIL NIL "
              "NIL) \"MIXED\" (\"BOUNDARY\" \"=_b=\") NIL NIL NIL)");
    /* A delimiter right after a delimiter is an empty part (a fuzzer find: the part's end
     * was once computed before its start). */
    expect_bs("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\nx\r\n--b--", NULL, 0,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL "
              "NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 1 1 NIL NIL "
              "NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)");
    /* An unparseable Content-Type is the default; a quoted description with a literal. */
    expect_bs(
        "Content-Type: garbage\r\nContent-Description: caf\xc3\xa9 \"q\"\r\n"
        "Content-Disposition: ATTACHMENT\r\nContent-Language: de-CH\r\n\r\nx\r\ny",
        NULL, 0,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL {9}\r\ncaf\xc3\xa9 \"q\" \"7BIT\" 4 2 "
        "NIL (\"ATTACHMENT\" NIL) (\"de-CH\") NIL)");
    /* A quote and a backslash are escaped in a quoted string. */
    expect_bs("Content-Type: text/plain; name=\"a\\\"b\\\\c\"\r\n\r\n", NULL, 0,
              "(\"TEXT\" \"PLAIN\" (\"NAME\" \"a\\\"b\\\\c\" \"CHARSET\" \"us-ascii\") NIL NIL "
              "\"7BIT\" 0 "
              "0 NIL NIL NIL NIL)");
    /* A multipart without boundary, or without any delimiter, holds one empty text/plain
     * part (as Dovecot shows it: IMAP's grammar needs a part). */
    expect_bs("Content-Type: multipart/mixed\r\n\r\n--x\r\n", NULL, MIME_MSG_BROKEN,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL "
              "NIL) \"MIXED\" NIL NIL NIL NIL)");
    expect_bs("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n", NULL, MIME_MSG_BROKEN,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL "
              "NIL) \"MIXED\" (\"BOUNDARY\" \"x\") NIL NIL NIL)");
    /* Dovecot's own example of this: the same text, lower case aside. */
    expect_bs("Content-Type: multipart/mixed; boundary=\"foo\"\n\n", NULL, MIME_MSG_BROKEN,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL "
              "NIL) \"MIXED\" (\"BOUNDARY\" \"foo\") NIL NIL NIL)");
    /* A boundary folded inside its quoted string unfolds to "a b". */
    expect_bs("Content-Type: multipart/mixed; boundary=\"a\r\n b\"\r\n\r\n--a b\r\n\r\nx\r\n"
              "--a b--\r\n",
              NULL, 0,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 1 1 NIL NIL NIL "
              "NIL) \"MIXED\" (\"BOUNDARY\" \"a b\") NIL NIL NIL)");
    /* text without charset gets us-ascii, after the parameters it has. */
    expect_bs("Content-Type: text/html; format=flowed\r\n\r\n<p>", NULL, 0,
              "(\"TEXT\" \"HTML\" (\"FORMAT\" \"flowed\" \"CHARSET\" \"us-ascii\") NIL NIL "
              "\"7BIT\" 3 1 NIL NIL NIL NIL)");
    /* A base64 message/rfc822 is a leaf. */
    expect_bs(
        "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA==",
        NULL, 0, "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\" 16 NIL NIL NIL NIL)");
    /* A header without an empty line, and a body with no header at all. */
    expect_bs(
        "Subject: only a header", NULL, 0,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
    expect_bs(
        "no header here\r\n", NULL, 0,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 16 1 NIL NIL NIL NIL)");
    expect_bs(
        "", NULL, 0,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)");
}

/* message/global (RFC 6532) is an embedded message for IMAP4rev2 (RFC 9051 media-message),
 * a basic body for IMAP4rev1; sections and search see the embedded message either way. */
static void
test_message_global(void **state)
{
    (void)state;
    const char msg[] = "Content-Type: message/global\r\n\r\nSubject: \xc3\xa9t\xc3\xa9\r\n\r\nhi";
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)msg, sizeof(msg) - 1, NULL, &m), 0);
    struct mime_buf b = MIME_BUF_INIT;
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), false, 0, &b), 0);
    assert_string_equal((char *)b.data, "(\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 20)");
    b.len = 0;
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), false, MIME_IMAP_REV2, &b),
                     0);
    assert_string_equal((char *)b.data,
                        "(\"MESSAGE\" \"GLOBAL\" NIL NIL NIL \"7BIT\" 20 (NIL {5}\r\n"
                        "\xc3\xa9t\xc3\xa9 NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" "
                        "(\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 2 1) 3)");
    struct mime_section sec;
    struct mime_span span;
    assert_int_equal(mime_section_parse("1.TEXT", 6, &sec), 0);
    assert_int_equal(mime_section_fetch(m, &sec, &span, &b), 0);
    assert_int_equal(span.len, 2);
    assert_memory_equal(msg + span.off, "hi", 2);
    mime_buf_clear(&b);
    mime_message_free(&m);
}

/* Address lists as ENVELOPE writes them (the To member). */
static void
test_addresses(void **state)
{
    (void)state;
    static const struct {
        const char *to, *want;
    } cases[] = {
        {"\"Doe, John\" <jd@x>", "((\"Doe, John\" NIL \"jd\" \"x\"))"},
        {"jd@x (John Doe)", "((\"John Doe\" NIL \"jd\" \"x\"))"},
        {"jd@x (c1) (c2)", "((\"c2\" NIL \"jd\" \"x\"))"},
        {"John (middle) Doe <jd@x>", "((\"John Doe\" NIL \"jd\" \"x\"))"},
        {"John.Q.Public <jqp@x>", "((\"John.Q.Public\" NIL \"jqp\" \"x\"))"},
        {"<jd@x>", "((NIL NIL \"jd\" \"x\"))"},
        {"\"\" <jd@x>", "((NIL NIL \"jd\" \"x\"))"},
        {"jd", "((NIL NIL \"jd\" \"MISSING_DOMAIN\"))"},
        {"Foo <>", "((\"Foo\" NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\"))"},
        {"a@b, , c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))"},
        {"\"quoted local\"@x", "((NIL NIL \"quoted local\" \"x\"))"},
        {"jd @ x . y", "((NIL NIL \"jd\" \"x.y\"))"},
        {"x@[1.2.3.4]", "((NIL NIL \"x\" \"[1.2.3.4]\"))"},
        {"<@r1,@r2:jd@x>", "((NIL \"@r1,@r2\" \"jd\" \"x\"))"},
        {"g1: a@b; , g2:;",
         "((NIL NIL \"g1\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)(NIL NIL \"g2\" NIL)"
         "(NIL NIL NIL NIL))"},
        {"team: a@b", "((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL))"},
        {"Ann \"the \\\"boss\\\"\" <a@x>", "((\"Ann the \\\"boss\\\"\" NIL \"a\" \"x\"))"},
        {"=?utf-8?q?J=C3=B6rg?= <j@x>", "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x\"))"},
        {"J\xc3\xb6rg <j@x>", "(({5}\r\nJ\xc3\xb6rg NIL \"j\" \"x\"))"},
        {"@garbage, c@d", "((NIL NIL \"c\" \"d\"))"},
        {"a@b >junk, c@d", "((NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\"))"},
        {"", "NIL"},
        {"   ", "NIL"},
        {"(only a comment)", "NIL"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char msg[512], want[600];
        snprintf(msg, sizeof(msg), "From: f@x\r\nTo: %s\r\n\r\n", cases[i].to);
        snprintf(want, sizeof(want),
                 "(NIL NIL ((NIL NIL \"f\" \"x\")) ((NIL NIL \"f\" \"x\")) ((NIL NIL \"f\" \"x\")) "
                 "%s NIL NIL NIL NIL)",
                 cases[i].want);
        struct mime_message *m;
        assert_int_equal(mime_message_parse((const uint8_t *)msg, strlen(msg), NULL, &m), 0);
        struct mime_buf b = MIME_BUF_INIT;
        assert_int_equal(mime_imap_envelope(m, mime_message_root(m), &b), 0);
        if (strcmp((char *)b.data, want) != 0)
            fail_msg("To: %s\n got %s\nwant %s", cases[i].to, b.data, want);
        mime_buf_clear(&b);
        mime_message_free(&m);
    }
}

/* A type name too long for the writer's stack buffer still comes out whole, upper-cased. */
static void
test_long_type_name(void **state)
{
    (void)state;
    char msg[512], want[512], sub[201];
    memset(sub, 'x', 200);
    sub[200] = '\0';
    snprintf(msg, sizeof(msg), "Content-Type: application/%s\r\n\r\n", sub);
    memset(sub, 'X', 200);
    snprintf(want, sizeof(want), "(\"APPLICATION\" \"%s\" NIL NIL NIL \"7BIT\" 0)", sub);
    struct mime_message *m;
    assert_int_equal(mime_message_parse((const uint8_t *)msg, strlen(msg), NULL, &m), 0);
    struct mime_buf b = MIME_BUF_INIT;
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), false, 0, &b), 0);
    assert_string_equal((char *)b.data, want);
    mime_buf_clear(&b);
    mime_message_free(&m);
}

/* Builds depth nested multiparts, each holding the next. */
static char *
nested_multiparts(unsigned depth)
{
    struct mime_buf b = MIME_BUF_INIT;
    for (unsigned i = 0; i < depth; i++)
        mime_buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%u\r\n\r\n--b%u\r\n", i, i);
    mime_buf_append_str(&b, "\r\nleaf\r\n");
    for (unsigned i = depth; i-- > 0;)
        mime_buf_printf(&b, "--b%u--\r\n", i);
    assert_int_equal(b.error, 0);
    return (char *)b.data;
}

static unsigned
tree_depth(const struct mime_part *p)
{
    unsigned d = p->depth;
    for (const struct mime_part *c = p->children; c; c = c->next) {
        unsigned cd = tree_depth(c);
        d = cd > d ? cd : d;
    }
    if (p->message) {
        unsigned md = tree_depth(p->message);
        d = md > d ? md : d;
    }
    return d;
}

static void
test_limits(void **state)
{
    (void)state;
    /* Depth: at the limit the multipart becomes an application/octet-stream leaf. */
    char *deep = nested_multiparts(150);
    struct mime_message *m;
    assert_int_equal(mime_message_parse((uint8_t *)deep, strlen(deep), NULL, &m), 0);
    assert_true(mime_message_flags(m) & MIME_MSG_LIMIT_DEPTH);
    assert_int_equal(tree_depth(mime_message_root(m)), MIME_DEFAULT_MAX_DEPTH);
    check_spans(mime_message_root(m), strlen(deep), 0, strlen(deep));
    struct mime_buf b = MIME_BUF_INIT;
    assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), true, 0, &b), 0);
    assert_non_null(strstr((char *)b.data, "\"APPLICATION\" \"OCTET-STREAM\""));
    mime_buf_clear(&b);
    mime_message_free(&m);
    struct mime_limits lim = {.max_depth = 3};
    expect_bs(deep, &lim, MIME_MSG_LIMIT_DEPTH,
              "((((\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7BIT\" 9350 NIL NIL NIL NIL) "
              "\"MIXED\" (\"BOUNDARY\" \"b2\") NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b1\") NIL "
              "NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b0\") NIL NIL NIL)");
    free(deep);

    /* Parts: the rest of the multipart is not split once the count is reached. */
    struct mime_buf many = MIME_BUF_INIT;
    mime_buf_append_str(&many, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for (int i = 0; i < 20000; i++)
        mime_buf_append_str(&many, "--p\r\n\r\nx\r\n");
    mime_buf_append_str(&many, "--p--\r\n");
    assert_int_equal(mime_message_parse(many.data, many.len, NULL, &m), 0);
    assert_int_equal(mime_message_part_count(m), MIME_DEFAULT_MAX_PARTS);
    assert_int_equal(mime_message_root(m)->n_children, MIME_DEFAULT_MAX_PARTS - 1);
    assert_true(mime_message_flags(m) & MIME_MSG_LIMIT_PARTS);
    check_spans(mime_message_root(m), many.len, 0, many.len);
    mime_message_free(&m);
    mime_buf_clear(&many);

    /* Header: fields past max_header are not seen, sections stay exact. */
    const char *h = "Subject: s\r\nX-Pad: 0123456789012345678901234567890123456789\r\n"
                    "Content-Type: text/html\r\n\r\nbody";
    lim = (struct mime_limits){.max_header = 40};
    assert_int_equal(mime_message_parse((const uint8_t *)h, strlen(h), &lim, &m), 0);
    assert_int_equal(mime_message_flags(m), MIME_MSG_LIMIT_HEADER);
    assert_true(mime_part_is(mime_message_root(m), "text", "plain"));
    assert_int_equal(mime_message_root(m)->body.off, strlen(h) - 4);
    mime_message_free(&m);
    /* A field running past the limit is cut there: "Subject: " and 31 of the 100 digits. */
    char big[256];
    snprintf(big, sizeof(big), "Subject: %0100d\r\nX: y\r\n\r\nbody", 0);
    lim = (struct mime_limits){.max_header = 40};
    assert_int_equal(mime_message_parse((const uint8_t *)big, strlen(big), &lim, &m), 0);
    struct mime_buf b2 = MIME_BUF_INIT;
    assert_int_equal(mime_imap_envelope(m, mime_message_root(m), &b2), 0);
    assert_string_equal(
        (char *)b2.data,
        "(NIL \"0000000000000000000000000000000\" NIL NIL NIL NIL NIL NIL NIL NIL)");
    struct mime_section sec;
    struct mime_span span;
    struct mime_str subj = {"subject", 7};
    assert_int_equal(mime_section_parse("HEADER.FIELDS", 13, &sec), 0);
    sec.fields = &subj;
    sec.n_fields = 1;
    b2.len = 0;
    assert_int_equal(mime_section_fetch(m, &sec, &span, &b2), 1);
    assert_string_equal((char *)b2.data, "Subject: 0000000000000000000000000000000\r\n\r\n");
    mime_buf_clear(&b2);
    mime_message_free(&m);
}

/* Every prefix of every sample parses with spans inside it and balanced BODYSTRUCTURE text. */
static void
test_truncated(void **state)
{
    (void)state;
    static const char *files[] = {"simple.eml", "alternative.eml", "mixed.eml",  "nested.eml",
                                  "broken.eml", "digest.eml",      "related.eml"};
    struct mime_buf b = MIME_BUF_INIT;
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len;
        char *data = load_sample(files[f], &len);
        for (size_t cut = 0; cut <= len; cut++) {
            /* A copy of exactly cut bytes, so ASan sees any read past the end. */
            uint8_t *copy = malloc(cut ? cut : 1);
            memcpy(copy, data, cut);
            struct mime_message *m;
            assert_int_equal(mime_message_parse(copy, cut, NULL, &m), 0);
            check_spans(mime_message_root(m), cut, 0, cut);
            b.len = 0;
            assert_int_equal(mime_imap_bodystructure(m, mime_message_root(m), true, 0, &b), 0);
            assert_int_equal(mime_imap_envelope(m, mime_message_root(m), &b), 0);
            mime_message_free(&m);
            free(copy);
        }
        free(data);
    }
    mime_buf_clear(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_views),           cmocka_unit_test(test_sections),
        cmocka_unit_test(test_section_parse),   cmocka_unit_test(test_partial),
        cmocka_unit_test(test_decoders),        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_unknown_cte),     cmocka_unit_test(test_content_fields),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_message_global),  cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_section_offsets), cmocka_unit_test(test_binary_streamed),
        cmocka_unit_test(test_long_type_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

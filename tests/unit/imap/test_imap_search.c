/*
 * The SEARCH evaluator on its own (imap_search_eval.h): programs as a client writes them,
 * parsed by the real IMAP parser, evaluated against three messages whose store records
 * (flags, keywords, dates, sizes, UIDs, MODSEQs, \Recent) and bytes are chosen to tell the
 * keys apart. Each case names the messages it must match. Then what the evaluator reads: a
 * key on the store's record never loads the message, header keys parse the header alone,
 * one message is loaded once however many keys read it, and a failed load is the answer.
 */
#include "imap/imap_search_eval.h"

#include "lib/err.h"
#include "proto/imap/imap_parser.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* ---- The messages ---- */

static const char plain[] = "Return-Path: <a@example.org>\r\n"
                            "From: Anna Example <anna@example.org>\r\n"
                            "To: bob@example.test\r\n"
                            "Cc: carol@example.net\r\n"
                            "Subject: Hello World\r\n"
                            "Date: Mon, 3 Feb 2025 10:00:00 +0000\r\n"
                            "X-Ticket: 4711\r\n"
                            "\r\n"
                            "Body one mentions revenue.\r\n";

/* No Date (SENT* fall back to the internal date), a UTF-8 subject, a quoted-printable
 * ISO-8859-1 body. */
static const char qp[] = "From: =?ISO-8859-1?Q?J=F6rg?= <joerg@example.de>\r\n"
                         "To: alice@example.test\r\n"
                         "Subject: =?UTF-8?B?Q2Fmw6kgY3LDqG1l?=\r\n"
                         "MIME-Version: 1.0\r\n"
                         "Content-Type: text/plain; charset=iso-8859-1\r\n"
                         "Content-Transfer-Encoding: quoted-printable\r\n"
                         "\r\n"
                         "Sch=F6ne Gr=FC=DFe aus M=FCnchen\r\n";

/* Multipart: base64 text and an attachment; a Date written on the 4th west of UTC. */
static const char multi[] = "From: news@example.com\r\n"
                            "Bcc: hidden@example.com\r\n"
                            "Subject: Newsletter\r\n"
                            "Date: Tue, 4 Feb 2025 23:30:00 -0800\r\n"
                            "MIME-Version: 1.0\r\n"
                            "Content-Type: multipart/mixed; boundary=b\r\n"
                            "\r\n"
                            "--b\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: base64\r\n"
                            "\r\n"
                            "zpPOtc65zrEgz4POv8+FIM66z4zPg868zrU=\r\n" /* Γεια σου κόσμε */
                            "--b\r\n"
                            "Content-Type: application/octet-stream\r\n"
                            "\r\n"
                            "attachmentword\r\n"
                            "--b--\r\n";

#define N_MSGS 3

struct fixture {
    struct mail_message_info info[N_MSGS];
    const char *bytes[N_MSGS];
    bool recent[N_MSGS];
    unsigned loads[N_MSGS];
    int load_error; /* when non-zero, what every load returns */
};

static struct fixture fx;

static const uint32_t saved[] = {20, 30};

static const struct imap_search_env env = {
    .max_msn = N_MSGS,
    .max_uid = 30,
    .saved = saved,
    .n_saved = 2,
};

static void
fill(void)
{
    memset(&fx, 0, sizeof(fx));
    fx.bytes[0] = plain;
    fx.bytes[1] = qp;
    fx.bytes[2] = multi;
    /* 1: seen and answered, keyword $Label1, not recent, delivered late on 3 Feb (UTC). */
    fx.info[0] = (struct mail_message_info){.uid = 10,
                                            .internal_date = 1738625400, /* 2025-02-03 23:30Z */
                                            .size = 100,
                                            .flags = MAIL_FLAG_SEEN | MAIL_FLAG_ANSWERED,
                                            .modseq = 5,
                                            .n_keywords = 1};
    fx.info[0].keywords[0] = "$Label1";
    /* 2: flagged, deleted, draft, recent, delivered at midnight on 4 Feb (UTC). */
    fx.info[1] =
        (struct mail_message_info){.uid = 20,
                                   .internal_date = 1738627200, /* 2025-02-04 00:00Z */
                                   .size = 2000,
                                   .flags = MAIL_FLAG_FLAGGED | MAIL_FLAG_DELETED | MAIL_FLAG_DRAFT,
                                   .modseq = 9};
    fx.recent[1] = true;
    /* 3: no flags, recent, an internal date before the epoch (31 Dec 1969, UTC). */
    fx.info[2] =
        (struct mail_message_info){.uid = 30, .internal_date = -1, .size = 50, .modseq = 7};
    fx.recent[2] = true;
}

static int
load(void *ctx, const uint8_t **data_r, size_t *len_r)
{
    size_t i = (size_t)(uintptr_t)ctx;
    fx.loads[i]++;
    if (fx.load_error)
        return fx.load_error;
    *data_r = (const uint8_t *)fx.bytes[i];
    *len_r = strlen(fx.bytes[i]);
    return 0;
}

/* ---- Programs ---- */

/* Parses "t SEARCH <program>" with the real parser; the command owns the key tree. */
static struct imap_command *
parse(const char *program)
{
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&imap_parser_default_limits, &p), 0);
    char line[1024];
    int n = snprintf(line, sizeof(line), "t SEARCH %s\r\n", program);
    assert_true(n > 0 && (size_t)n < sizeof(line));
    struct imap_parser_out out;
    size_t off = 0;
    int item;
    while ((item = imap_parser_feed(p, (const uint8_t *)line + off, (size_t)n - off, &out)) ==
           IMAP_ITEM_CONTINUE)
        off += out.used;
    if (item != IMAP_ITEM_COMMAND)
        fail_msg("\"%s\" did not parse: %s", program, item == IMAP_ITEM_ERROR ? out.response : "");
    imap_parser_free(&p);
    return out.cmd;
}

/* The messages (1-based, in a string like "13") program matches. */
static void
expect(const char *program, const char *want)
{
    struct imap_command *cmd = parse(program);
    struct imap_search_prog *prog;
    assert_int_equal(imap_search_prog_new(cmd->u.search.key, &prog), 0);
    char got[N_MSGS + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_MSGS; i++) {
        struct imap_search_msg m;
        imap_search_msg_init(&m, (uint32_t)i + 1, &fx.info[i], fx.recent[i], load,
                             (void *)(uintptr_t)i);
        int ret = imap_search_match(prog, &env, &m);
        imap_search_msg_clear(&m);
        assert_true(ret == 0 || ret == 1);
        if (ret)
            got[n++] = (char)('1' + i);
    }
    got[n] = '\0';
    if (strcmp(got, want) != 0)
        fail_msg("SEARCH %s matched \"%s\", not \"%s\"", program, got, want);
    imap_search_prog_free(&prog);
    imap_command_free(&cmd);
}

static int
setup(void **state)
{
    (void)state;
    fill();
    return 0;
}

static void
test_flags_and_recent(void **state)
{
    (void)state;
    expect("ALL", "123");
    expect("SEEN", "1");
    expect("UNSEEN", "23");
    expect("ANSWERED", "1");
    expect("UNANSWERED", "23");
    expect("FLAGGED", "2");
    expect("UNFLAGGED", "13");
    expect("DELETED", "2");
    expect("UNDELETED", "13");
    expect("DRAFT", "2");
    expect("UNDRAFT", "13");
    expect("RECENT", "23");
    expect("OLD", "1");
    expect("NEW", "23");
    fx.info[2].flags = MAIL_FLAG_SEEN; /* NEW is RECENT UNSEEN */
    expect("NEW", "2");
    expect("KEYWORD $Label1", "1");
    expect("KEYWORD $label1", "1"); /* keywords compare case-insensitively */
    expect("UNKEYWORD $Label1", "23");
    expect("KEYWORD $Other", "");
}

static void
test_dates_sizes_modseq(void **state)
{
    (void)state;
    /* The internal date's UTC day. */
    expect("ON 3-Feb-2025", "1");
    expect("ON 4-Feb-2025", "2");
    expect("BEFORE 4-Feb-2025", "13");
    expect("SINCE 4-Feb-2025", "2");
    expect("SINCE 3-Feb-2025", "12");
    expect("ON 31-Dec-1969", "3");
    expect("BEFORE 1-Jan-1970", "3");
    /* The Date header's day as written; without one, the internal date's. */
    expect("SENTON 3-Feb-2025", "1");
    expect("SENTON 4-Feb-2025", "23");
    expect("SENTON 5-Feb-2025", "");
    expect("SENTBEFORE 4-Feb-2025", "1");
    expect("SENTSINCE 4-Feb-2025", "23");
    expect("LARGER 99", "12");
    expect("LARGER 100", "2");
    expect("SMALLER 100", "3");
    expect("SMALLER 101", "13");
    expect("MODSEQ 7", "23");
    expect("MODSEQ 10", "");
    expect("MODSEQ \"/flags/\\\\seen\" all 9", "2");
}

static void
test_sets(void **state)
{
    (void)state;
    expect("2", "2");
    expect("2:*", "23");
    expect("*:2", "23");
    expect("*", "3");
    expect("1,3", "13");
    expect("UID 20", "2");
    expect("UID 25:*", "3");
    expect("UID 31:40", "");
    expect("UID 40:*", "3"); /* "*" is the highest UID: 40:* is 30:40 */
    expect("$", "23");
    expect("UID $", "23");
    expect("NOT $", "1");
}

static void
test_strings(void **state)
{
    (void)state;
    expect("FROM anna", "1");
    expect("FROM EXAMPLE", "123");
    expect("FROM {5+}\r\nJÖRG", "2"); /* an encoded word in ISO-8859-1, folded */
    expect("TO bob", "1");
    expect("CC carol", "1");
    expect("BCC hidden", "3");
    expect("SUBJECT \"hello world\"", "1");
    expect("SUBJECT {5+}\r\nCAFÉ", "2");
    expect("SUBJECT \"\"", "123");
    expect("HEADER X-Ticket 4711", "1");
    expect("HEADER x-ticket \"\"", "1");
    expect("HEADER Date \"\"", "13");
    expect("HEADER Cc \"\"", "1");
    expect("SUBJECT revenue", ""); /* header keys read no body */
    expect("BODY revenue", "1");
    expect("BODY {7+}\r\nGRÜSSE", "");      /* no full case folding: ß is not ss */
    expect("BODY {11+}\r\nGRÜßE AUS", "2"); /* quoted-printable ISO-8859-1, decoded */
    expect("BODY {15+}\r\nΓΕΙΑ ΣΟΥ", "3");  /* base64 UTF-8 in a multipart, folded */
    expect("BODY attachmentword", "");      /* not text */
    expect("BODY hello", "");               /* BODY is not the header */
    expect("TEXT hello", "1");
    expect("TEXT revenue", "1");
    expect("TEXT x-ticket", "1");
    expect("TEXT newsletter", "3");
}

static void
test_logic(void **state)
{
    (void)state;
    expect("OR SEEN FLAGGED", "12");
    expect("NOT SEEN", "23");
    expect("NOT NOT SEEN", "1");
    expect("(SEEN) (ANSWERED)", "1");
    expect("OR (SEEN FLAGGED) RECENT", "23");
    expect("OR BODY revenue SUBJECT newsletter", "13");
    expect("NOT OR BODY revenue SUBJECT newsletter", "2");
    expect("SUBJECT newsletter UNSEEN RECENT 3", "3");
}

/* ---- What the evaluator reads ---- */

struct run {
    unsigned loads;
    bool header_parsed, message_parsed;
    int ret;
};

static struct run
run_one(const char *program, size_t i)
{
    struct imap_command *cmd = parse(program);
    struct imap_search_prog *prog;
    assert_int_equal(imap_search_prog_new(cmd->u.search.key, &prog), 0);
    struct imap_search_msg m;
    fx.loads[i] = 0;
    imap_search_msg_init(&m, (uint32_t)i + 1, &fx.info[i], fx.recent[i], load,
                         (void *)(uintptr_t)i);
    struct run r = {.ret = imap_search_match(prog, &env, &m)};
    r.loads = fx.loads[i];
    r.header_parsed = m.header != NULL;
    r.message_parsed = m.message != NULL;
    imap_search_msg_clear(&m);
    imap_search_prog_free(&prog);
    imap_command_free(&cmd);
    return r;
}

static void
test_reads_only_what_keys_need(void **state)
{
    (void)state;
    /* Keys on the store's record never load the message. */
    struct run r = run_one("OR SEEN (UID 1:* LARGER 3 SINCE 1-Jan-2000 MODSEQ 1)", 0);
    assert_int_equal(r.ret, 1);
    assert_int_equal(r.loads, 0);
    /* The cheap key decides first wherever the client wrote it: message 2 is unseen. */
    r = run_one("BODY revenue SUBJECT hello SEEN", 1);
    assert_int_equal(r.ret, 0);
    assert_int_equal(r.loads, 0);
    /* Header keys parse the header alone. */
    r = run_one("SUBJECT hello FROM anna SENTON 3-Feb-2025 HEADER X-Ticket \"\"", 0);
    assert_int_equal(r.ret, 1);
    assert_int_equal(r.loads, 1);
    assert_true(r.header_parsed);
    assert_false(r.message_parsed);
    /* Body keys parse it all, once, and header keys then use that parse. */
    r = run_one("BODY revenue TEXT world SUBJECT hello", 0);
    assert_int_equal(r.ret, 1);
    assert_int_equal(r.loads, 1);
    assert_true(r.message_parsed);
    assert_false(r.header_parsed);
    /* A message that cannot be read is the answer, not a silent non-match. */
    fx.load_error = -EIO;
    r = run_one("NOT SUBJECT hello", 0);
    assert_int_equal(r.ret, -EIO);
    r = run_one("OR SEEN BODY x", 0); /* decided without loading */
    assert_int_equal(r.ret, 1);
    fx.load_error = 0;
}

static void
test_has_modseq(void **state)
{
    (void)state;
    static const struct {
        const char *program;
        bool has;
    } cases[] = {{"ALL", false}, {"MODSEQ 1", true}, {"OR SEEN NOT (MODSEQ 3)", true}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct imap_command *cmd = parse(cases[i].program);
        struct imap_search_prog *prog;
        assert_int_equal(imap_search_prog_new(cmd->u.search.key, &prog), 0);
        assert_int_equal(imap_search_prog_has_modseq(prog), cases[i].has);
        imap_search_prog_free(&prog);
        imap_command_free(&cmd);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_flags_and_recent, setup),
        cmocka_unit_test_setup(test_dates_sizes_modseq, setup),
        cmocka_unit_test_setup(test_sets, setup),
        cmocka_unit_test_setup(test_strings, setup),
        cmocka_unit_test_setup(test_logic, setup),
        cmocka_unit_test_setup(test_reads_only_what_keys_need, setup),
        cmocka_unit_test_setup(test_has_modseq, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

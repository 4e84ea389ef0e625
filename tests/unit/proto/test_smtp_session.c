/*
 * The SMTP/LMTP session (src/proto/smtp/smtp_session.c), driven by a scripted caller through
 * whole transactions. Every script is fed whole, split in two at every byte offset, and one
 * byte at a time, each with the caller answering at once and again answering late (every
 * decision left pending while the session is fed again, LMTP results given in reverse order):
 * the replies and the events must be the same every way. That is what PIPELINING and an
 * asynchronous directory lookup demand, and what a parser that only works when reads line up
 * with commands gets wrong.
 */
#include "proto/smtp/smtp_reply.h"
#include "proto/smtp/smtp_session.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- the scripted caller ------------------------------------------------------------------- */

/*
 * Decisions come from the address, so a script says what it wants by the names it uses:
 * senders "refuse*" are refused, recipients "unknown*" refused for good and "later*" for now,
 * deliveries to "full*" fail over quota.
 */
static bool
starts(const struct smtp_path *p, const char *prefix)
{
    return strncmp(p->local, prefix, strlen(prefix)) == 0;
}

static struct smtp_verdict
mail_verdict(const struct smtp_path *p)
{
    if (starts(p, "refuse"))
        return (struct smtp_verdict){550, "5.7.1", "Sender refused"};
    return (struct smtp_verdict){250, NULL, NULL};
}

static struct smtp_verdict
rcpt_verdict(const struct smtp_path *p)
{
    if (starts(p, "unknown"))
        return (struct smtp_verdict){550, "5.1.1", "No such user"};
    if (starts(p, "later"))
        return (struct smtp_verdict){451, "4.3.0", "Directory unavailable"};
    return (struct smtp_verdict){250, NULL, NULL};
}

static void
path_text(const struct smtp_path *p, char *buf, size_t size)
{
    if (p->null)
        snprintf(buf, size, "<>");
    else if (p->postmaster)
        snprintf(buf, size, "<%s>", p->local);
    else
        snprintf(buf, size, "<%s@%s>", p->local, p->domain);
}

struct result {
    struct smtp_buf replies;
    struct smtp_buf events;
    struct smtp_buf msg;
    char with[16];
};

static void logf_(struct result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
logf_(struct result *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    assert_int_equal(smtp_buf_puts(&r->events, line), 0);
    assert_int_equal(smtp_buf_puts(&r->events, "\n"), 0);
}

static void
drain(struct smtp_session *s, struct result *r)
{
    size_t len;
    const uint8_t *o = smtp_session_output(s, &len);
    assert_int_equal(smtp_buf_append(&r->replies, o, len), 0);
    smtp_session_output_done(s, len);
}

/* Late mode: the session must take nothing and say nothing while a decision is pending. */
static void
assert_waits(struct smtp_session *s, const uint8_t *rest, size_t n)
{
    size_t before;
    smtp_session_output(s, &before);
    struct smtp_session_out out;
    assert_int_equal(smtp_session_feed(s, rest, n, &out), SMTP_EV_WAIT);
    assert_int_equal(out.used, 0);
    size_t after;
    smtp_session_output(s, &after);
    assert_int_equal(after, before);
}

/* The message as the events log shows it: C escapes for CR, LF and other controls. */
static void
log_message(struct result *r, uint64_t size)
{
    char text[800];
    size_t n = 0;
    for (size_t i = 0; i < r->msg.len && n + 5 < sizeof(text); i++) {
        uint8_t c = r->msg.data[i];
        if (c == '\r')
            n += (size_t)snprintf(text + n, sizeof(text) - n, "\\r");
        else if (c == '\n')
            n += (size_t)snprintf(text + n, sizeof(text) - n, "\\n");
        else if (c < 32 || c > 126)
            n += (size_t)snprintf(text + n, sizeof(text) - n, "\\x%02x", c);
        else
            text[n++] = (char)c;
    }
    text[n] = '\0';
    assert_int_equal(size, r->msg.len);
    logf_(r, "END %zu %s", r->msg.len, text);
}

static void
deliver_all(struct smtp_session *s, const struct smtp_session_config *cfg, bool late)
{
    bool lmtp = cfg->proto == SMTP_PROTO_LMTP;
    size_t n = lmtp ? smtp_session_rcpt_count(s) : 1;
    assert_true(n > 0);
    for (size_t k = 0; k < n; k++) {
        size_t i = late ? n - 1 - k : k;
        struct smtp_verdict v = {250, NULL, "Queued"};
        char text[600];
        if (lmtp) {
            const struct smtp_path *p = smtp_session_rcpt(s, i);
            assert_non_null(p);
            if (starts(p, "full"))
                v = (struct smtp_verdict){452, "4.2.2", "Over quota"};
            else {
                snprintf(text, sizeof(text), "Delivered to %s@%s", p->local, p->domain);
                v = (struct smtp_verdict){250, "2.0.0", text};
            }
        }
        size_t before;
        smtp_session_output(s, &before);
        assert_int_equal(smtp_session_delivered(s, i, &v), 0);
        /* Giving the same recipient twice is the caller's bug. */
        if (k + 1 < n)
            assert_int_equal(smtp_session_delivered(s, i, &v), TDM_EINVAL);
        size_t after;
        smtp_session_output(s, &after);
        /* RCPT order: nothing goes out while recipient 0 is still undecided. */
        if (late && k + 1 < n)
            assert_int_equal(after, before);
        else
            assert_true(after > before);
    }
}

/* Feeds text cut at cuts[0..n_cuts) (ascending); late: answer every decision late. */
static void
run(const struct smtp_session_config *cfg, const char *text, size_t len, const size_t *cuts,
    size_t n_cuts, bool late, struct result *r)
{
    memset(r, 0, sizeof(*r));
    struct smtp_session *s = NULL;
    assert_int_equal(smtp_session_new(cfg, &s), 0);
    drain(s, r);
    bool closed = false;
    size_t start = 0;
    for (size_t c = 0; c <= n_cuts && !closed; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        size_t n = end - start;
        /* A heap copy of exactly the piece, so ASan sees a read past it or a chunk kept from
         * an earlier piece. */
        uint8_t *piece = malloc(n + 1);
        assert_non_null(piece);
        memcpy(piece, text + start, n);
        size_t off = 0;
        while (!closed) {
            struct smtp_session_out out;
            int ev = smtp_session_feed(s, piece + off, n - off, &out);
            assert_true(ev >= 0);
            assert_true(out.used <= n - off);
            off += out.used;
            char p[600];
            switch (ev) {
            case SMTP_EV_NEED_MORE:
                assert_int_equal(off, n);
                break;
            case SMTP_EV_MAIL: {
                path_text(out.path, p, sizeof(p));
                const struct smtp_cmd *m = out.mail;
                logf_(r, "MAIL %s%s%llu body=%d%s", p, m->has_size ? " size=" : " size=-",
                      (unsigned long long)m->size, (int)m->body, m->smtputf8 ? " utf8" : "");
                struct smtp_verdict v = mail_verdict(out.path);
                if (late)
                    assert_waits(s, piece + off, n - off);
                assert_int_equal(smtp_session_verdict(s, &v), 0);
                assert_int_equal(smtp_session_verdict(s, &v), TDM_EINVAL);
                break;
            }
            case SMTP_EV_RCPT: {
                path_text(out.path, p, sizeof(p));
                assert_non_null(out.rcpt);
                if (out.rcpt->has_delivery_id)
                    logf_(r, "RCPT %s id=%02x..%02x", p, out.rcpt->delivery_id[0],
                          out.rcpt->delivery_id[SMTP_DELIVERY_ID_LEN - 1]);
                else
                    logf_(r, "RCPT %s", p);
                struct smtp_verdict v = rcpt_verdict(out.path);
                if (late)
                    assert_waits(s, piece + off, n - off);
                assert_int_equal(smtp_session_verdict(s, &v), 0);
                break;
            }
            case SMTP_EV_DATA_START:
                logf_(r, "DATA_START");
                r->msg.len = 0;
                snprintf(r->with, sizeof(r->with), "%s", smtp_session_with(s));
                break;
            case SMTP_EV_DATA:
                assert_true(out.data_len > 0);
                assert_int_equal(smtp_buf_append(&r->msg, out.data, out.data_len), 0);
                break;
            case SMTP_EV_DATA_END:
                log_message(r, out.message_size);
                if (late)
                    assert_waits(s, piece + off, n - off);
                deliver_all(s, cfg, late);
                break;
            case SMTP_EV_DATA_ABORTED:
                logf_(r, "ABORTED after %llu", (unsigned long long)out.message_size);
                break;
            case SMTP_EV_RESET:
                logf_(r, "RESET");
                break;
            case SMTP_EV_STARTTLS:
                logf_(r, "STARTTLS");
                assert_int_equal(smtp_session_feed(s, piece + off, n - off, &out), TDM_EINVAL);
                /* The script goes on as if the client had waited for the handshake. */
                assert_int_equal(smtp_session_tls_started(s), 0);
                break;
            case SMTP_EV_CLOSE:
                logf_(r, "CLOSE");
                closed = true;
                assert_int_equal(smtp_session_feed(s, piece + off, n - off, &out), TDM_EINVAL);
                break;
            default:
                fail_msg("unexpected event %d", ev);
            }
            drain(s, r);
            if (ev == SMTP_EV_NEED_MORE)
                break;
        }
        free(piece);
        start = end;
    }
    smtp_session_free(&s);
    assert_null(s);
}

static void
result_free(struct result *r)
{
    smtp_buf_free(&r->replies);
    smtp_buf_free(&r->events);
    smtp_buf_free(&r->msg);
}

static void
assert_buf_text(const struct smtp_buf *b, const char *want, const char *what, const char *how)
{
    if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
        fail_msg("%s (%s):\n--- got ---\n%.*s\n--- want ---\n%s", what, how, (int)b->len,
                 b->data ? (const char *)b->data : "", want);
}

/* ---- scripts ------------------------------------------------------------------------------- */

#define GREET_SMTP "220 mx.example ESMTP tandem\r\n"
#define GREET_LMTP "220 mx.example LMTP tandem\r\n"
/* The answer to EHLO/LHLO; STARTTLS is offered only on SMTP before TLS, and is then last. */
#define CAPS_HEAD                                                                                  \
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-ENHANCEDSTATUSCODES\r\n"             \
    "250-8BITMIME\r\n"
#define EHLO_SMTP CAPS_HEAD "250-SMTPUTF8\r\n250 STARTTLS\r\n"
#define EHLO_SMTP_TLS CAPS_HEAD "250 SMTPUTF8\r\n"
#define LHLO_LMTP CAPS_HEAD "250-SMTPUTF8\r\n250 XDELIVERYID\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_AHEAD "354 End data with <CR><LF>.<CR><LF>\r\n"
#define BYE "221 2.0.0 mx.example closing connection\r\n"
#define TOO_BIG "552 5.3.4 Message size exceeds fixed maximum message size\r\n"

struct script {
    const char *name;
    enum smtp_proto proto;
    uint64_t max_message; /* 0: 1000 */
    unsigned max_errors;  /* 0: 20 */
    const char *input;
    const char *replies;
    const char *events;
    const char *with; /* smtp_session_with() at DATA, or NULL */
};

static const struct script scripts[] = {
    {"smtp transaction, pipelined, with stuffing", SMTP_PROTO_SMTP, 0, 0,
     "EHLO client.example\r\nMAIL FROM:<alice@a.example> BODY=8BITMIME SIZE=20\r\n"
     "RCPT TO:<bob@b.example>\r\nDATA\r\nHello\r\n..dot\r\n.\r\nQUIT\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n" BYE,
     "MAIL <alice@a.example> size=20 body=2\nRCPT <bob@b.example>\nDATA_START\n"
     "END 13 Hello\\r\\n.dot\\r\\n\nCLOSE\n",
     "ESMTP"},
    {"lmtp: one reply per accepted recipient, in RCPT order, each its own", SMTP_PROTO_LMTP, 0, 0,
     "LHLO client.example\r\nMAIL FROM:<alice@a.example>\r\nRCPT TO:<bob@b.example>\r\n"
     "RCPT TO:<unknown@b.example>\r\nRCPT TO:<full@b.example>\r\nRCPT TO:<carol@b.example>\r\n"
     "DATA\r\nHi\r\n.\r\nQUIT\r\n",
     GREET_LMTP LHLO_LMTP OK_MAIL OK_RCPT
     "550 5.1.1 No such user\r\n" OK_RCPT OK_RCPT GO_AHEAD
     "250 2.0.0 Delivered to bob@b.example\r\n452 4.2.2 Over quota\r\n"
     "250 2.0.0 Delivered to carol@b.example\r\n" BYE,
     "MAIL <alice@a.example> size=-0 body=0\nRCPT <bob@b.example>\nRCPT <unknown@b.example>\n"
     "RCPT <full@b.example>\nRCPT <carol@b.example>\nDATA_START\nEND 4 Hi\\r\\n\nCLOSE\n",
     "LMTP"},
    {"lmtp: a RCPT's XDELIVERYID reaches the caller", SMTP_PROTO_LMTP, 0, 0,
     "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x> XDELIVERYID=a0000000000000000000000000000001\r\n"
     "RCPT TO:<b@x>\r\nQUIT\r\n",
     GREET_LMTP LHLO_LMTP OK_MAIL OK_RCPT OK_RCPT BYE,
     "MAIL <> size=-0 body=0\nRCPT <a@x> id=a0..01\nRCPT <b@x>\nCLOSE\n", NULL},
    {"smtp: XDELIVERYID is LMTP's only", SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x> XDELIVERYID=a0000000000000000000000000000001\r\n"
     "QUIT\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL "555 5.5.4 Unsupported parameter\r\n" BYE,
     "MAIL <> size=-0 body=0\nCLOSE\n", NULL},
    {"lmtp: commands pipelined behind the dot wait for every delivery reply", SMTP_PROTO_LMTP, 0, 0,
     "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
     "1\r\n.\r\nRSET\r\nMAIL FROM:<c@x>\r\nRCPT TO:<d@x>\r\nDATA\r\n2\r\n.\r\nQUIT\r\n",
     GREET_LMTP LHLO_LMTP OK_MAIL OK_RCPT OK_RCPT GO_AHEAD
     "250 2.0.0 Delivered to a@x\r\n250 2.0.0 Delivered to b@x\r\n"
     "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Delivered to d@x\r\n" BYE,
     "MAIL <> size=-0 body=0\nRCPT <a@x>\nRCPT <b@x>\nDATA_START\nEND 3 1\\r\\n\n"
     "MAIL <c@x> size=-0 body=0\nRCPT <d@x>\nDATA_START\nEND 3 2\\r\\n\nCLOSE\n",
     "LMTP"},
    {"dot-unstuffing edge cases", SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
     "..\r\n.x\r\n.\rX\r\n...\r\na.\r\nb\n.\nc\r\n\n.\r\nd\r.\r\n \r\n.\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\n"
     "END 37 .\\r\\nx\\r\\n\\rX\\r\\n..\\r\\na.\\r\\nb\\n.\\nc\\r\\n\\n.\\r\\nd\\r.\\r\\n \\r\\n\n",
     NULL},
    {"empty message, and a message of one empty line", SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n"
     "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n\r\n.\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n" OK_MAIL OK_RCPT GO_AHEAD
                                                   "250 2.0.0 Queued\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nEND 0 \n"
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nEND 2 \\r\\n\n",
     NULL},
    {"bad sequences are refused and the session goes on", SMTP_PROTO_SMTP, 0, 0,
     "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nLHLO c\r\nEHLO c\r\nRCPT TO:<b@x>\r\n"
     "DATA\r\nMAIL FROM:<a@x>\r\nMAIL FROM:<a@x>\r\nDATA\r\nRCPT TO:<unknown@x>\r\n"
     "RCPT TO:<later@x>\r\nDATA\r\nSTARTTLS\r\nRSET\r\nRSET\r\nBDAT 10\r\nNOOP\r\n",
     GREET_SMTP
     "503 5.5.1 Send EHLO first\r\n503 5.5.1 Need MAIL before RCPT\r\n"
     "503 5.5.1 Need MAIL command\r\n500 5.5.1 Command unrecognized: LHLO is for LMTP\r\n" EHLO_SMTP
     "503 5.5.1 Need MAIL before RCPT\r\n503 5.5.1 Need MAIL command\r\n" OK_MAIL
     "503 5.5.1 Nested MAIL command\r\n554 5.5.1 No valid recipients\r\n"
     "550 5.1.1 No such user\r\n451 4.3.0 Directory unavailable\r\n"
     "554 5.5.1 No valid recipients\r\n503 5.5.1 MAIL transaction in progress\r\n"
     "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n500 5.5.1 Command unrecognized\r\n250 2.0.0 Ok\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <unknown@x>\nRCPT <later@x>\nRESET\n", NULL},
    {"refused sender: no transaction", SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<refuse@x>\r\nRCPT TO:<b@x>\r\nRSET\r\n",
     GREET_SMTP EHLO_SMTP "550 5.7.1 Sender refused\r\n503 5.5.1 Need MAIL before RCPT\r\n"
                          "250 2.0.0 Ok\r\n",
     "MAIL <refuse@x> size=-0 body=0\n", NULL},
    {"lmtp: DATA without an accepted recipient is 503 (RFC 2033 4.2)", SMTP_PROTO_LMTP, 0, 0,
     "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<unknown@x>\r\nDATA\r\nRSET\r\n",
     GREET_LMTP LHLO_LMTP OK_MAIL "550 5.1.1 No such user\r\n"
                                  "503 5.5.1 No valid recipients\r\n250 2.0.0 Ok\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <unknown@x>\nRESET\n", NULL},
    {"lmtp refuses HELO and EHLO; a new LHLO resets the transaction", SMTP_PROTO_LMTP, 0, 0,
     "HELO c\r\nEHLO c\r\nMAIL FROM:<a@x>\r\nLHLO c\r\nMAIL FROM:<a@x>\r\nLHLO again\r\n"
     "STARTTLS\r\nRCPT TO:<b@x>\r\n",
     GREET_LMTP "500 5.5.1 Command unrecognized: this is LMTP, use LHLO\r\n"
                "500 5.5.1 Command unrecognized: this is LMTP, use LHLO\r\n503 5.5.1 Send LHLO "
                "first\r\n" LHLO_LMTP OK_MAIL LHLO_LMTP "502 5.5.1 STARTTLS not offered\r\n"
                "503 5.5.1 Need MAIL before RCPT\r\n",
     "MAIL <a@x> size=-0 body=0\nRESET\n", NULL},
    {"command lines: the configured bound, bare LF, CR kept inside, trailing space",
     SMTP_PROTO_SMTP, 0, 0,
     /* 511 bytes before the LF is the most a 512-byte bound takes; 512 is one too many. A CR
      * inside a line is not a line end. */
     "NOOP %506\nNOOP %507\nNOOP\nHELO c\r\nNOOP\rRSET\r\nQUIT   \r\n",
     GREET_SMTP "250 2.0.0 Ok\r\n500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n250 mx.example\r\n"
                "500 5.5.1 Command unrecognized\r\n" BYE,
     "CLOSE\n", NULL},
    {"declared SIZE over the limit is refused at MAIL; the limit itself is fine", SMTP_PROTO_SMTP,
     0, 0, "EHLO c\r\nMAIL FROM:<a@x> SIZE=1001\r\nMAIL FROM:<a@x> SIZE=1000\r\n",
     GREET_SMTP EHLO_SMTP TOO_BIG OK_MAIL, "MAIL <a@x> size=1000 body=0\n", NULL},
    {"a message over the limit is read to its end, refused, and the session goes on",
     SMTP_PROTO_SMTP, 10, 0,
     "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n0123456789\r\n.\r\n"
     "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n01234567\r\n.\r\nQUIT\r\n",
     GREET_SMTP
     "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10\r\n"
     "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n" OK_MAIL OK_RCPT
         GO_AHEAD TOO_BIG OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n" BYE,
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nABORTED after 10\n"
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nEND 10 01234567\\r\\n\nCLOSE\n",
     NULL},
    {"lmtp: an oversize message gets 552 once per accepted recipient", SMTP_PROTO_LMTP, 4, 0,
     "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<unknown@x>\r\nRCPT TO:<c@x>\r\n"
     "DATA\r\nab\r\n..\r\n.\r\nNOOP\r\n",
     GREET_LMTP "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 4\r\n"
                "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 XDELIVERYID\r\n" OK_MAIL OK_RCPT
                "550 5.1.1 No such user\r\n" OK_RCPT GO_AHEAD TOO_BIG TOO_BIG "250 2.0.0 Ok\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nRCPT <unknown@x>\nRCPT <c@x>\nDATA_START\n"
     "ABORTED after 4\n",
     NULL},
    {"too many recipients: 452 past max_rcpts, and the transaction goes on", SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<1@x>\r\nRCPT TO:<unknown@x>\r\nRCPT TO:<2@x>\r\n"
     "RCPT TO:<3@x>\r\nRCPT TO:<4@x>\r\nDATA\r\nm\r\n.\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL OK_RCPT "550 5.1.1 No such user\r\n" OK_RCPT OK_RCPT
                                          "452 4.5.3 Too many recipients\r\n" GO_AHEAD
                                          "250 2.0.0 Queued\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <1@x>\nRCPT <unknown@x>\nRCPT <2@x>\nRCPT <3@x>\n"
     "DATA_START\nEND 3 m\\r\\n\n",
     NULL},
    {"STARTTLS: 220, then the session forgets the client and stops offering it", SMTP_PROTO_SMTP, 0,
     0,
     "EHLO c\r\nSTARTTLS x\r\nSTARTTLS\r\nMAIL FROM:<a@x>\r\nEHLO c\r\nSTARTTLS\r\n"
     "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n.\r\n",
     GREET_SMTP EHLO_SMTP
     "501 5.5.4 Syntax error: no arguments allowed\r\n"
     "220 2.0.0 Ready to start TLS\r\n503 5.5.1 Send EHLO first\r\n" EHLO_SMTP_TLS
     "503 5.5.1 TLS already active\r\n" OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n",
     "STARTTLS\nMAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nEND 0 \n", "ESMTPS"},
    {"HELO, VRFY, EXPN, HELP, NOOP with arguments", SMTP_PROTO_SMTP, 0, 0,
     "HELO c.example\r\nVRFY bob\r\nVRFY\r\nEXPN staff\r\nHELP\r\nnoop whatever\r\n"
     "mail from:<a@x>\r\nrcpt to:<b@x>\r\ndata\r\n.\r\n",
     GREET_SMTP "250 mx.example\r\n"
                "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n"
                "501 5.5.4 Syntax: VRFY address\r\n502 5.5.1 EXPN not supported\r\n"
                "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n"
                "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT GO_AHEAD "250 2.0.0 Queued\r\n",
     "MAIL <a@x> size=-0 body=0\nRCPT <b@x>\nDATA_START\nEND 0 \n", "SMTP"},
    {"parameters, SMTPUTF8, null sender, postmaster, quoted local part, source route",
     SMTP_PROTO_SMTP, 0, 0,
     "EHLO c\r\nMAIL FROM:<> SIZE=5 BODY=7BIT RET=HDRS ENVID=QQ314159\r\n"
     "RCPT TO:<Postmaster> NOTIFY=NEVER\r\nRCPT TO:<\xc3\xa9@x>\r\n"
     "RCPT TO:<@relay.example,@r2.example:\"a b\\\"c\"@x> ORCPT=rfc822;a@x\r\nRSET\r\n"
     "MAIL FROM:<j\xc3\xb6rg@\xc3\xa9.example> SMTPUTF8\r\nRCPT TO:<\xc3\xa9@x>\r\n"
     "DATA\r\n\xc3\xa9\r\n.\r\n",
     GREET_SMTP EHLO_SMTP OK_MAIL OK_RCPT "553 5.6.7 Non-ASCII address needs SMTPUTF8\r\n" OK_RCPT
                                          "250 2.0.0 Ok\r\n" OK_MAIL OK_RCPT GO_AHEAD
                                          "250 2.0.0 Queued\r\n",
     "MAIL <> size=5 body=1\nRCPT <Postmaster>\nRCPT <a b\"c@x>\nRESET\n"
     "MAIL <j\xc3\xb6rg@\xc3\xa9.example> size=-0 body=0 utf8\nRCPT <\xc3\xa9@x>\nDATA_START\n"
     "END 4 \\xc3\\xa9\\r\\n\n",
     "UTF8SMTP"},
    {"too many errors: 421 and close, nothing after it is read", SMTP_PROTO_SMTP, 0, 3,
     "FOO\r\nMAIL FROM:<a@x>\r\nNOOP\r\nBAR\r\nNOOP\r\n",
     GREET_SMTP "500 5.5.1 Command unrecognized\r\n503 5.5.1 Send EHLO first\r\n"
                "250 2.0.0 Ok\r\n421 4.7.0 mx.example Too many errors, closing connection\r\n",
     "CLOSE\n", NULL},
};

/* Expands "%<n>" in a script's input to n bytes of 'x', for lines near the bound. */
static char *
expand(const char *in, size_t *len_r)
{
    size_t cap = strlen(in) + 4096;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = 0;
    for (const char *p = in; *p;) {
        if (*p == '%') {
            char *end;
            unsigned long k = strtoul(p + 1, &end, 10);
            assert_true(k < 2048);
            memset(out + n, 'x', k);
            n += k;
            p = end;
        } else
            out[n++] = *p++;
    }
    *len_r = n;
    return out;
}

static void
config_for(const struct script *sc, struct smtp_session_config *cfg)
{
    *cfg = (struct smtp_session_config){
        .proto = sc->proto,
        .hostname = "mx.example",
        .max_line = 512,
        .max_message = sc->max_message ? sc->max_message : 1000,
        .max_rcpts = 3,
        .max_errors = sc->max_errors ? sc->max_errors : 20,
        .offer_starttls = sc->proto == SMTP_PROTO_SMTP,
        .offer_smtputf8 = true,
    };
}

static void
check_result(const struct script *sc, const struct result *r, const char *how)
{
    char what[200];
    snprintf(what, sizeof(what), "%s: replies", sc->name);
    assert_buf_text(&r->replies, sc->replies, what, how);
    snprintf(what, sizeof(what), "%s: events", sc->name);
    assert_buf_text(&r->events, sc->events, what, how);
    if (sc->with)
        assert_string_equal(r->with, sc->with);
}

static void
test_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        const struct script *sc = &scripts[i];
        struct smtp_session_config cfg;
        config_for(sc, &cfg);
        size_t len;
        char *text = expand(sc->input, &len);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (int late = 0; late <= 1; late++) {
            struct result r;
            run(&cfg, text, len, NULL, 0, late, &r);
            check_result(sc, &r, late ? "whole, late" : "whole");
            result_free(&r);
            for (size_t cut = 0; cut <= len; cut++) {
                run(&cfg, text, len, &cut, 1, late, &r);
                char how[64];
                snprintf(how, sizeof(how), "split at %zu%s", cut, late ? ", late" : "");
                check_result(sc, &r, how);
                result_free(&r);
            }
            for (size_t k = 0; k < len; k++)
                cuts[k] = k;
            run(&cfg, text, len, cuts, len, late, &r);
            check_result(sc, &r, late ? "byte by byte, late" : "byte by byte");
            result_free(&r);
        }
        free(cuts);
        free(text);
    }
}

/* ---- the API's own rules ------------------------------------------------------------------- */

static void
test_config_checked(void **state)
{
    (void)state;
    struct smtp_session_config good = {SMTP_PROTO_SMTP, "mx", 1000, 1000, 10, 10, true, false};
    struct smtp_session *s = NULL;
    assert_int_equal(smtp_session_new(&good, &s), 0);
    smtp_session_free(&s);
    smtp_session_free(&s); /* NULL is fine */

    struct smtp_session_config bad[] = {
        {SMTP_PROTO_LMTP, "mx", 1000, 1000, 10, 10, true, false}, /* STARTTLS on LMTP */
        {SMTP_PROTO_SMTP, "m x", 1000, 1000, 10, 10, false, false},
        {SMTP_PROTO_SMTP, "", 1000, 1000, 10, 10, false, false},
        {SMTP_PROTO_SMTP, "mx", 511, 1000, 10, 10, false, false},
        {SMTP_PROTO_SMTP, "mx", 1000, 0, 10, 10, false, false},
        {SMTP_PROTO_SMTP, "mx", 1000, 1000, 0, 10, false, false},
        {SMTP_PROTO_SMTP, "mx", 1000, 1000, 10, 0, false, false},
        {0, "mx", 1000, 1000, 10, 10, false, false},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(smtp_session_new(&bad[i], &s), TDM_EINVAL);
        assert_null(s);
    }
}

static void
feed_str(struct smtp_session *s, const char *text, int want_ev)
{
    struct smtp_session_out out;
    assert_int_equal(smtp_session_feed(s, (const uint8_t *)text, strlen(text), &out), want_ev);
    assert_int_equal(out.used, strlen(text));
}

static void
test_bad_verdicts(void **state)
{
    (void)state;
    struct smtp_session_config cfg = {SMTP_PROTO_LMTP, "mx", 1000, 1000, 10, 10, false, false};
    struct smtp_session *s = NULL;
    assert_int_equal(smtp_session_new(&cfg, &s), 0);
    struct smtp_verdict ok = {250, NULL, NULL};
    /* Nothing pending yet. */
    assert_int_equal(smtp_session_verdict(s, &ok), TDM_EINVAL);
    assert_int_equal(smtp_session_delivered(s, 0, &ok), TDM_EINVAL);
    assert_int_equal(smtp_session_tls_started(s), TDM_EINVAL);
    assert_string_equal(smtp_session_helo(s), "");
    feed_str(s, "LHLO c\r\n", SMTP_EV_NEED_MORE);
    assert_string_equal(smtp_session_helo(s), "c");
    feed_str(s, "MAIL FROM:<a@x>\r\n", SMTP_EV_MAIL);
    const struct smtp_verdict bad[] = {
        {354, NULL, NULL},    {199, NULL, NULL},       {600, NULL, NULL},
        {250, "5.0.0", NULL}, {550, "5.1", NULL},      {550, "5.01.0", NULL},
        {250, NULL, "a\rb"},  {550, "5.1.1000", NULL}, {450, "4.1.1", "\x01"},
    };
    size_t before;
    smtp_session_output(s, &before);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(smtp_session_verdict(s, &bad[i]), TDM_EINVAL);
    assert_int_equal(smtp_session_verdict(s, NULL), TDM_EINVAL);
    size_t after;
    smtp_session_output(s, &after);
    assert_int_equal(after, before); /* a refused verdict writes nothing */
    assert_null(smtp_session_sender(s));
    assert_int_equal(smtp_session_verdict(s, &ok), 0);
    assert_non_null(smtp_session_sender(s));
    assert_string_equal(smtp_session_sender(s)->local, "a");
    feed_str(s, "RCPT TO:<b@x>\r\n", SMTP_EV_RCPT);
    /* A multi-line verdict: every line carries the code and the enhanced code. */
    struct smtp_verdict two = {250, "2.1.5", "first\nsecond"};
    assert_int_equal(smtp_session_verdict(s, &two), 0);
    assert_int_equal(smtp_session_rcpt_count(s), 1);
    assert_null(smtp_session_rcpt(s, 1));
    feed_str(s, "DATA\r\n", SMTP_EV_DATA_START);
    feed_str(s, ".\r\n", SMTP_EV_DATA_END);
    assert_int_equal(smtp_session_delivered(s, 1, &ok), TDM_EINVAL); /* one recipient only */
    assert_int_equal(smtp_session_delivered(s, 0, &bad[0]), TDM_EINVAL);
    assert_int_equal(smtp_session_delivered(s, 0, &ok), 0);
    assert_int_equal(smtp_session_delivered(s, 0, &ok), TDM_EINVAL); /* transaction over */
    assert_int_equal(smtp_session_rcpt_count(s), 0);
    size_t len;
    const uint8_t *o = smtp_session_output(s, &len);
    const char *want = "220 mx LMTP tandem\r\n250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
                       "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 XDELIVERYID\r\n250 2.1.0 Ok\r\n"
                       "250-2.1.5 first\r\n250 2.1.5 second\r\n"
                       "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok\r\n";
    assert_int_equal(len, strlen(want));
    assert_memory_equal(o, want, len);
    /* Output is consumed as the caller sends it, in any steps. */
    smtp_session_output_done(s, 4);
    o = smtp_session_output(s, &len);
    assert_int_equal(len, strlen(want) - 4);
    assert_memory_equal(o, want + 4, len);
    smtp_session_free(&s);
}

/* STARTTLS: the name the client gave in plaintext is forgotten (RFC 3207 4.2). */
static void
test_starttls_forgets(void **state)
{
    (void)state;
    struct smtp_session_config cfg = {SMTP_PROTO_SMTP, "mx", 1000, 1000, 10, 10, true, false};
    struct smtp_session *s = NULL;
    assert_int_equal(smtp_session_new(&cfg, &s), 0);
    feed_str(s, "EHLO before.example\r\n", SMTP_EV_NEED_MORE);
    assert_string_equal(smtp_session_helo(s), "before.example");
    assert_string_equal(smtp_session_with(s), "ESMTP");
    /* The event stops right after the STARTTLS line: what follows is the caller's to drop. */
    const char *in = "STARTTLS\r\nMAIL FROM:<injected@x>\r\n";
    struct smtp_session_out out;
    assert_int_equal(smtp_session_feed(s, (const uint8_t *)in, strlen(in), &out), SMTP_EV_STARTTLS);
    assert_int_equal(out.used, strlen("STARTTLS\r\n"));
    assert_int_equal(smtp_session_tls_started(s), 0);
    assert_int_equal(smtp_session_tls_started(s), TDM_EINVAL);
    assert_string_equal(smtp_session_helo(s), "");
    assert_string_equal(smtp_session_with(s), "ESMTPS");
    feed_str(s, "EHLO after.example\r\n", SMTP_EV_NEED_MORE);
    assert_string_equal(smtp_session_helo(s), "after.example");
    smtp_session_free(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_config_checked),
        cmocka_unit_test(test_bad_verdicts),
        cmocka_unit_test(test_starttls_forgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

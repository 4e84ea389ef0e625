/*
 * Fuzzes the SMTP/LMTP session (src/proto/smtp/smtp_session.c) with a scripted caller. Input:
 * byte 0 picks the protocol (bit 0: LMTP), whether decisions come late (bit 1: every MAIL,
 * RCPT and delivery verdict is held while the session is fed again, LMTP results are given
 * in a shuffled order) and the size of the pieces the rest is fed in (bits 2..7); byte 1 seeds
 * the caller's decisions; the rest is what the client sends.
 *
 * Invariants, any break aborts:
 * - every reply line is "ddd", "-" or " " or end, text in printable ASCII, CRLF; the lines of a
 *   multi-line reply share one code; an enhanced status code, when there is one, is valid and
 *   of the reply's class;
 * - one reply per command line, in order: after each step the number of complete replies is
 *   1 (greeting) + command lines taken + replies owed after each DATA (LMTP: one per accepted
 *   recipient, SMTP: one); a verdict's reply is the very next reply and carries its text;
 * - LMTP answers the end of data with exactly one reply per accepted recipient, in RCPT order,
 *   whatever order the caller reported them in;
 * - while a decision is pending the session takes no byte and says nothing;
 * - message chunks lie inside the piece given, the message never exceeds max_message, and
 *   message_size is what was handed over;
 * - the message equals what a plain line-by-line reading of the raw DATA bytes gives (split at
 *   CR LF, the line "." ends, one leading dot removed from any other line), or its first
 *   max_message bytes when it was too large;
 * - the same input fed whole and in pieces gives the same replies and events.
 */
#include "proto/smtp/smtp_reply.h"
#include "proto/smtp/smtp_session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

struct run {
    struct smtp_session *s;
    bool lmtp, late;
    uint8_t seed;
    unsigned decisions;
    struct smtp_buf replies; /* everything the session said */
    struct smtp_buf events;  /* what the caller saw */
    size_t checked;          /* replies[0..checked) has been parsed */
    size_t n_replies;        /* complete replies in it */
    size_t owed;             /* replies the session owes: greeting, lines, after DATA */
    bool in_data;
    size_t data_rcpts;   /* accepted recipients when DATA started */
    struct smtp_buf raw; /* the bytes of the DATA phase as the client sent them */
    struct smtp_buf msg; /* the message as the session handed it over */
    int open_code;       /* the code of a multi-line reply in progress, or -1 */
};

static bool
same(const struct smtp_buf *a, const struct smtp_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static const struct smtp_session_config *
config(bool lmtp)
{
    /* Small limits, so random input reaches them. */
    static struct smtp_session_config cfg[2];
    cfg[lmtp] = (struct smtp_session_config){
        .proto = lmtp ? SMTP_PROTO_LMTP : SMTP_PROTO_SMTP,
        .hostname = "mx.example",
        .max_line = 512,
        .max_message = 64,
        .max_rcpts = 4,
        .max_errors = 8,
        .offer_starttls = !lmtp,
        .offer_smtputf8 = true,
    };
    return &cfg[lmtp];
}

static void
log_event(struct run *r, const char *text, size_t n)
{
    check(smtp_buf_append(&r->events, text, n) == 0);
}

/* Parses the replies added since last time; returns how many final lines were added. */
static size_t
parse_replies(struct run *r)
{
    size_t added = 0;
    for (;;) {
        const uint8_t *p = r->replies.data + r->checked;
        size_t left = r->replies.len - r->checked;
        const uint8_t *lf = left ? memchr(p, '\n', left) : NULL;
        if (!lf)
            break;
        size_t n = (size_t)(lf - p); /* line without LF */
        check(n >= 4 && p[n - 1] == '\r');
        n--;
        check(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
              p[2] <= '9');
        int code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        check(n == 3 || p[3] == ' ' || p[3] == '-');
        for (size_t i = 4; i < n; i++)
            check(p[i] >= 32 && p[i] <= 126);
        check(r->open_code < 0 || r->open_code == code);
        /* An enhanced code, if the text starts with one, must be valid for this reply. */
        if (n > 5 && p[4] >= '0' && p[4] <= '9' && p[5] == '.') {
            char enh[16];
            size_t k = 0;
            while (4 + k < n && p[4 + k] != ' ' && k < sizeof(enh) - 1) {
                enh[k] = (char)p[4 + k];
                k++;
            }
            enh[k] = '\0';
            check(smtp_enh_valid(code, enh));
        } else {
            /* Only the greeting, 354, 220 and the HELO/EHLO/LHLO answer go without one. */
            check(code == 220 || code == 354 || code == 250);
        }
        bool last = n == 3 || p[3] == ' ';
        r->open_code = last ? -1 : code;
        if (last) {
            added++;
            r->n_replies++;
        }
        r->checked += (size_t)(lf - p) + 1;
    }
    return added;
}

static size_t
drain(struct run *r)
{
    size_t len;
    const uint8_t *o = smtp_session_output(r->s, &len);
    check(smtp_buf_append(&r->replies, o, len) == 0);
    smtp_session_output_done(r->s, len);
    return parse_replies(r);
}

static unsigned
next_decision(struct run *r)
{
    /* A mixed hash of seed and count, so any pattern of decisions is some seed's. */
    uint32_t h = (uint32_t)r->seed * 2654435761u ^ (uint32_t)r->decisions++ * 40503u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h % 7u;
}

/* The text of the last complete reply contains want. */
static void
check_last_reply(const struct run *r, const char *want)
{
    /* The last final line starts after the previous CRLF. */
    const uint8_t *d = r->replies.data;
    size_t end = r->replies.len;
    check(end >= 2);
    size_t start = end - 2;
    while (start > 0 && d[start - 1] != '\n')
        start--;
    check(memmem(d + start, end - start, want, strlen(want)) != NULL);
}

/* A pending decision: nothing taken, nothing said. */
static void
check_waits(struct run *r, const uint8_t *rest, size_t n)
{
    size_t before, after;
    smtp_session_output(r->s, &before);
    struct smtp_session_out out;
    check(smtp_session_feed(r->s, rest, n, &out) == SMTP_EV_WAIT && out.used == 0);
    smtp_session_output(r->s, &after);
    check(after == before);
}

static void
decide(struct run *r, const uint8_t *rest, size_t n)
{
    if (r->late)
        check_waits(r, rest, n);
    unsigned d = next_decision(r);
    char text[32];
    snprintf(text, sizeof(text), "v%u%s", r->decisions, d == 3 ? "\nsecond line" : "");
    struct smtp_verdict v = {250, NULL, text};
    if (d == 1)
        v = (struct smtp_verdict){550, "5.1.1", text};
    else if (d == 2)
        v = (struct smtp_verdict){451, NULL, text};
    check(smtp_session_verdict(r->s, &v) == 0);
    check(drain(r) == 1);
    char want[16];
    snprintf(want, sizeof(want), "v%u", r->decisions);
    check_last_reply(r, d == 3 ? "second line" : want);
    log_event(r, text, strlen(text));
}

static void
deliver(struct run *r, const uint8_t *rest, size_t n)
{
    if (r->late)
        check_waits(r, rest, n);
    size_t count = r->lmtp ? r->data_rcpts : 1;
    check(!r->lmtp || count == smtp_session_rcpt_count(r->s));
    size_t before = r->replies.len;
    size_t replies_before = r->n_replies;
    /* Late: report in a rotated order, so most replies wait for an earlier recipient. */
    size_t rot = r->late ? (r->seed % count) + 1 : 0;
    for (size_t k = 0; k < count; k++) {
        size_t i = (k + rot) % count;
        char text[32];
        snprintf(text, sizeof(text), "d%zu", i);
        struct smtp_verdict v = {250, "2.0.0", text};
        if (next_decision(r) == 4)
            v = (struct smtp_verdict){452, "4.2.2", text};
        check(smtp_session_delivered(r->s, i, &v) == 0);
        check(smtp_session_delivered(r->s, i, &v) != 0); /* once each */
        drain(r);
    }
    check(r->n_replies - replies_before == count);
    /* In RCPT order: the i-th new reply names recipient i. */
    const uint8_t *p = r->replies.data + before;
    size_t left = r->replies.len - before;
    for (size_t i = 0; i < count; i++) {
        char want[40];
        int w = snprintf(want, sizeof(want), " d%zu\r\n", i);
        const uint8_t *lf = memchr(p, '\n', left);
        check(lf != NULL);
        size_t n_line = (size_t)(lf - p) + 1;
        check(n_line >= (size_t)w && memcmp(lf + 1 - w, want, (size_t)w) == 0);
        p += n_line;
        left -= n_line;
    }
}

/* The oracle: RFC 5321 4.5.2 read the simplest way, one CRLF line at a time. */
static void
check_message(const struct run *r, bool aborted)
{
    struct smtp_buf want = {0};
    const uint8_t *p = r->raw.data;
    size_t n = r->raw.len, at = 0;
    for (;;) {
        const uint8_t *crlf = at < n ? memmem(p + at, n - at, "\r\n", 2) : NULL;
        check(crlf != NULL);
        size_t end = (size_t)(crlf - p);
        if (end - at == 1 && p[at] == '.') {
            check(end + 2 == n); /* the session stopped right after the final dot */
            break;
        }
        size_t from = at < end && p[at] == '.' ? at + 1 : at;
        check(smtp_buf_append(&want, p + from, end + 2 - from) == 0);
        at = end + 2;
    }
    if (aborted) {
        uint64_t max = config(r->lmtp)->max_message;
        check(want.len > max && r->msg.len == max);
        check(memcmp(want.data, r->msg.data, (size_t)max) == 0);
    } else {
        check(same(&want, &r->msg));
    }
    smtp_buf_free(&want);
}

static size_t
count_lf(const uint8_t *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

/* Feeds client[0..len) in pieces of step bytes (0: whole). */
static void
run(struct run *r, bool lmtp, bool late, uint8_t seed, const uint8_t *client, size_t len,
    size_t step)
{
    memset(r, 0, sizeof(*r));
    r->lmtp = lmtp;
    r->late = late;
    r->seed = seed;
    check(smtp_session_new(config(lmtp), &r->s) == 0);
    r->owed = 1;
    r->open_code = -1;
    drain(r);
    bool done = false;
    uint64_t msg = 0;
    for (size_t at = 0; at < len && !done;) {
        size_t n = step && len - at > step ? step : len - at;
        /* A copy of exactly the piece, so reading past it is an ASan error. */
        uint8_t *piece = malloc(n ? n : 1);
        check(piece != NULL);
        memcpy(piece, client + at, n);
        size_t off = 0;
        for (;;) {
            struct smtp_session_out out;
            int ev = smtp_session_feed(r->s, piece + off, n - off, &out);
            check(ev >= 0 && out.used <= n - off);
            if (!r->in_data)
                r->owed += count_lf(piece + off, out.used);
            else
                check(smtp_buf_append(&r->raw, piece + off, out.used) == 0);
            off += out.used;
            /* Not NEED_MORE nor DATA: how often those come depends on the pieces. */
            if (ev != SMTP_EV_NEED_MORE && ev != SMTP_EV_DATA) {
                char line[16];
                int ln = snprintf(line, sizeof(line), "[%d]", ev);
                log_event(r, line, (size_t)ln);
            }
            switch (ev) {
            case SMTP_EV_NEED_MORE:
                check(off == n);
                break;
            case SMTP_EV_MAIL:
            case SMTP_EV_RCPT:
                check(out.path != NULL);
                log_event(r, out.path->local, strlen(out.path->local));
                drain(r);
                decide(r, piece + off, n - off);
                break;
            case SMTP_EV_DATA_START:
                r->in_data = true;
                r->data_rcpts = smtp_session_rcpt_count(r->s);
                check(r->data_rcpts > 0);
                msg = 0;
                r->raw.len = r->msg.len = 0;
                break;
            case SMTP_EV_DATA:
                check(r->in_data && out.data_len > 0);
                check((out.data >= piece + off - out.used &&
                       out.data + out.data_len <= piece + off) ||
                      (out.data_len == 1 && out.data[0] == '\r'));
                msg += out.data_len;
                check(msg <= config(lmtp)->max_message);
                log_event(r, (const char *)out.data, out.data_len);
                check(smtp_buf_append(&r->msg, out.data, out.data_len) == 0);
                break;
            case SMTP_EV_DATA_END:
            case SMTP_EV_DATA_ABORTED:
                check(r->in_data && out.message_size == msg);
                r->in_data = false;
                r->owed += r->lmtp ? r->data_rcpts : 1;
                check_message(r, ev == SMTP_EV_DATA_ABORTED);
                if (ev == SMTP_EV_DATA_END) {
                    drain(r);
                    deliver(r, piece + off, n - off);
                }
                break;
            case SMTP_EV_RESET:
                break;
            case SMTP_EV_STARTTLS:
            case SMTP_EV_CLOSE:
                done = true; /* bytes after either may not be read as commands */
                break;
            default:
                check(false);
            }
            drain(r);
            check(r->n_replies == r->owed);
            if (ev == SMTP_EV_NEED_MORE || done)
                break;
        }
        free(piece);
        at += n;
    }
    drain(r);
    check(r->checked == r->replies.len && r->open_code < 0); /* no reply left half-written */
    smtp_session_free(&r->s);
}

static void
run_free(struct run *r)
{
    smtp_buf_free(&r->replies);
    smtp_buf_free(&r->events);
    smtp_buf_free(&r->raw);
    smtp_buf_free(&r->msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    bool lmtp = data[0] & 1;
    bool late = data[0] & 2;
    size_t step = (size_t)(data[0] >> 2) + 1;
    uint8_t seed = data[1];
    struct run whole, split;
    run(&whole, lmtp, late, seed, data + 2, size - 2, 0);
    run(&split, lmtp, late, seed, data + 2, size - 2, step);
    check(same(&whole.replies, &split.replies));
    check(same(&whole.events, &split.events));
    run_free(&whole);
    run_free(&split);
    return 0;
}

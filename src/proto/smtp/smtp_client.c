/* The LMTP client transaction (smtp_client.h): reply framing, the command sequence, and the
 * dot-stuffed message produced chunk by chunk. */
#include "proto/smtp/smtp_client.h"

#include "lib/err.h"
#include "proto/smtp/smtp_reply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum step {
    STEP_GREETING = 0,
    STEP_LHLO,
    STEP_MAIL,
    STEP_RCPT,    /* waiting for the reply to RCPT number next_rcpt */
    STEP_DATA,    /* waiting for 354 */
    STEP_BODY,    /* sending the message */
    STEP_RESULTS, /* waiting for the reply of recipient next_rcpt */
    STEP_DONE,
    STEP_BROKEN,
};

struct smtp_client {
    struct smtp_client_tx tx;
    enum step step;
    struct smtp_buf out;
    size_t next_rcpt;
    struct smtp_client_reply *replies; /* one per recipient */
    struct smtp_client_reply stop;

    /* The reply being read: the current line, and the reply so far. */
    char line[SMTP_CLIENT_MAX_REPLY_LINE];
    size_t line_len;
    bool line_overflow;
    bool in_reply; /* a first line with '-' was read */
    struct smtp_client_reply reply;

    struct smtp_buf held; /* what the server sent while the message went out */

    /* The message: the next byte to send and whether it starts a line. */
    size_t body_at;
    bool bol;
    bool data_sent;
};

int
smtp_client_new(const struct smtp_client_tx *tx, struct smtp_client **c_r)
{
    *c_r = NULL;
    if (tx->n_rcpts == 0 || !tx->helo || !tx->sender)
        return TDM_EINVAL;
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->tx = *tx;
    c->bol = true;
    c->replies = calloc(tx->n_rcpts, sizeof(*c->replies));
    if (!c->replies) {
        free(c);
        return -ENOMEM;
    }
    *c_r = c;
    return 0;
}

void
smtp_client_free(struct smtp_client **cp)
{
    struct smtp_client *c = *cp;
    if (!c)
        return;
    smtp_buf_free(&c->out);
    smtp_buf_free(&c->held);
    free(c->replies);
    free(c);
    *cp = NULL;
}

enum smtp_client_state
smtp_client_state(const struct smtp_client *c)
{
    if (c->step == STEP_BROKEN)
        return SMTP_CLIENT_BROKEN;
    return c->step == STEP_DONE ? SMTP_CLIENT_DONE : SMTP_CLIENT_BUSY;
}

bool
smtp_client_data_sent(const struct smtp_client *c)
{
    return c->data_sent;
}

const struct smtp_client_reply *
smtp_client_rcpt_reply(const struct smtp_client *c, size_t idx)
{
    static const struct smtp_client_reply none = {0};
    return idx < c->tx.n_rcpts ? &c->replies[idx] : &none;
}

const struct smtp_client_reply *
smtp_client_stop(const struct smtp_client *c)
{
    return &c->stop;
}

/* ---- Commands ---- */

/* "<" mailbox ">" with the path's own writer, "<>" for the null path. */
static int
put_path(struct smtp_buf *b, const struct smtp_path *p)
{
    int e = smtp_buf_puts(b, "<");
    if (!e && !p->null)
        e = smtp_mailbox_write(b, p);
    return e ? e : smtp_buf_puts(b, ">");
}

static int
send_command(struct smtp_client *c, enum step next)
{
    struct smtp_buf *b = &c->out;
    int e = 0;
    switch (next) {
    case STEP_LHLO:
        e = smtp_buf_puts(b, "LHLO ");
        if (!e)
            e = smtp_buf_puts(b, c->tx.helo);
        break;
    case STEP_MAIL:
        e = smtp_buf_puts(b, "MAIL FROM:");
        if (!e)
            e = put_path(b, c->tx.sender);
        if (!e && c->tx.body_8bit)
            e = smtp_buf_puts(b, " BODY=8BITMIME");
        if (!e && c->tx.smtputf8)
            e = smtp_buf_puts(b, " SMTPUTF8");
        break;
    case STEP_RCPT:
        e = smtp_buf_puts(b, "RCPT TO:");
        if (!e)
            e = put_path(b, &c->tx.rcpts[c->next_rcpt]);
        if (!e && c->tx.delivery_ids) {
            static const char hex[] = "0123456789abcdef";
            char v[sizeof " XDELIVERYID=" + 32] = " XDELIVERYID=";
            char *q = v + strlen(v);
            for (size_t i = 0; i < 16; i++) {
                *q++ = hex[c->tx.delivery_ids[c->next_rcpt][i] >> 4];
                *q++ = hex[c->tx.delivery_ids[c->next_rcpt][i] & 15];
            }
            *q = '\0';
            e = smtp_buf_puts(b, v);
        }
        break;
    case STEP_DATA:
        e = smtp_buf_puts(b, "DATA");
        break;
    case STEP_DONE:
        e = smtp_buf_puts(b, "QUIT");
        break;
    default:
        return TDM_EINVAL;
    }
    if (!e)
        e = smtp_buf_puts(b, "\r\n");
    if (!e)
        c->step = next;
    return e;
}

/* The transaction stops before the data: nobody got the message, whatever RCPT said. */
static int
stop(struct smtp_client *c, const struct smtp_client_reply *why)
{
    if (why)
        c->stop = *why;
    for (size_t i = 0; i < c->tx.n_rcpts; i++)
        if (c->replies[i].code / 100 == 2)
            c->replies[i] = (struct smtp_client_reply){0};
    return send_command(c, STEP_DONE);
}

/* A whole reply arrived. Returns 0 or -ENOMEM. */
static int
on_reply(struct smtp_client *c, const struct smtp_client_reply *r)
{
    bool ok = r->code / 100 == 2;
    switch (c->step) {
    case STEP_GREETING:
        return r->code == 220 ? send_command(c, STEP_LHLO) : stop(c, r);
    case STEP_LHLO:
        return ok ? send_command(c, STEP_MAIL) : stop(c, r);
    case STEP_MAIL:
        return ok ? send_command(c, STEP_RCPT) : stop(c, r);
    case STEP_RCPT:
        c->replies[c->next_rcpt++] = *r;
        if (c->next_rcpt < c->tx.n_rcpts)
            return send_command(c, STEP_RCPT);
        for (size_t i = 0; i < c->tx.n_rcpts; i++)
            if (c->replies[i].code / 100 != 2)
                return stop(c, NULL);
        c->next_rcpt = 0;
        return send_command(c, STEP_DATA);
    case STEP_DATA:
        if (r->code != 354)
            return stop(c, r);
        c->step = STEP_BODY;
        return 0;
    case STEP_RESULTS:
        c->replies[c->next_rcpt++] = *r;
        return c->next_rcpt < c->tx.n_rcpts ? 0 : send_command(c, STEP_DONE);
    case STEP_DONE:
        return 0;   /* the answer to QUIT */
    case STEP_BODY: /* held until the message is out (feed_bytes) */
    case STEP_BROKEN:
        break;
    }
    c->step = STEP_BROKEN;
    return 0;
}

/* ---- Replies ---- */

static bool
digits3(const char *s)
{
    return s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9';
}

/* "2.1.5 " at the start of text: its length without the space, or 0. */
static size_t
enh_len(const char *t, size_t len)
{
    size_t i = 0, parts = 0;
    while (parts < 3) {
        size_t start = i;
        while (i < len && i - start < 3 && t[i] >= '0' && t[i] <= '9')
            i++;
        if (i == start)
            return 0;
        if (++parts < 3) {
            if (i >= len || t[i] != '.')
                return 0;
            i++;
        }
    }
    return i < len && t[i] != ' ' ? 0 : i;
}

/* One reply line (without its line ending). Returns 0 or -ENOMEM. */
static int
on_line(struct smtp_client *c, const char *l, size_t len)
{
    if (len < 3 || !digits3(l) || (len > 3 && l[3] != ' ' && l[3] != '-')) {
        c->step = STEP_BROKEN;
        return 0;
    }
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    bool more = len > 3 && l[3] == '-';
    if (!c->in_reply) {
        c->reply = (struct smtp_client_reply){.code = code};
        const char *t = len > 4 ? l + 4 : "";
        size_t tl = len > 4 ? len - 4 : 0;
        size_t el = enh_len(t, tl);
        if (el > 0 && el < sizeof(c->reply.enh)) {
            memcpy(c->reply.enh, t, el);
            t += el;
            tl -= el;
            while (tl > 0 && *t == ' ')
                t++, tl--;
        }
        snprintf(c->reply.text, sizeof(c->reply.text), "%.*s", (int)tl, t);
        /* The text goes into our own replies: keep it printable. */
        for (char *p = c->reply.text; *p; p++)
            if ((unsigned char)*p < 32 || (unsigned char)*p > 126)
                *p = '?';
    } else if (code != c->reply.code) {
        c->step = STEP_BROKEN; /* a multi-line reply changed its code */
        return 0;
    }
    c->in_reply = more;
    if (more)
        return 0;
    return on_reply(c, &c->reply);
}

/* Frames reply lines out of in[0..len). While the message is being sent, bytes are held, not
 * read: a reply then is read once the message is out, whatever the reads were cut into, so the
 * outcome never depends on timing. Returns 0 or -ENOMEM. */
static int
feed_bytes(struct smtp_client *c, const uint8_t *in, size_t len)
{
    for (size_t i = 0; i < len && c->step != STEP_BROKEN; i++) {
        if (c->step == STEP_BODY) {
            if (c->held.len + (len - i) > SMTP_CLIENT_MAX_REPLY_LINE * 4) {
                c->step = STEP_BROKEN; /* a server talking over the message, at length */
                return 0;
            }
            return smtp_buf_append(&c->held, in + i, len - i);
        }
        char ch = (char)in[i];
        if (ch != '\n') {
            if (c->line_len < sizeof(c->line))
                c->line[c->line_len++] = ch;
            else
                c->line_overflow = true;
            continue;
        }
        size_t ll = c->line_len;
        if (ll > 0 && c->line[ll - 1] == '\r')
            ll--;
        bool overflow = c->line_overflow;
        c->line_len = 0;
        c->line_overflow = false;
        if (overflow) {
            c->step = STEP_BROKEN;
            break;
        }
        int e = on_line(c, c->line, ll);
        if (e < 0)
            return e;
    }
    return 0;
}

int
smtp_client_feed(struct smtp_client *c, const uint8_t *in, size_t len)
{
    int e = feed_bytes(c, in, len);
    if (e < 0) {
        c->step = STEP_BROKEN;
        return e;
    }
    return (int)smtp_client_state(c);
}

/* ---- The message ---- */

/* Appends the next piece of the message, dot-stuffed, and the final "." line after the last. */
static int
fill_body(struct smtp_client *c)
{
    const uint8_t *body = c->tx.body;
    size_t end = c->tx.body_len - c->body_at > SMTP_CLIENT_CHUNK ? c->body_at + SMTP_CLIENT_CHUNK
                                                                 : c->tx.body_len;
    size_t run = c->body_at;
    for (size_t i = c->body_at; i < end; i++) {
        if (c->bol && body[i] == '.') {
            int e = smtp_buf_append(&c->out, body + run, i - run);
            if (!e)
                e = smtp_buf_puts(&c->out, ".");
            if (e)
                return e;
            run = i; /* the dot itself goes with the next run */
        }
        c->bol = body[i] == '\n' && i > 0 && body[i - 1] == '\r';
    }
    int e = smtp_buf_append(&c->out, body + run, end - run);
    if (e)
        return e;
    c->body_at = end;
    if (end < c->tx.body_len)
        return 0;
    /* The CR LF before the final dot belongs to the message (RFC 5321 §4.1.1.4): a message
     * that does not end in one gets one, or the dot would not start a line. */
    e = smtp_buf_puts(&c->out, c->tx.body_len == 0 || c->bol ? ".\r\n" : "\r\n.\r\n");
    if (e)
        return e;
    c->data_sent = true;
    c->step = STEP_RESULTS;
    c->next_rcpt = 0;
    /* What the server said while the message went out (a broken server: we read nothing
     * before the end of the data). */
    struct smtp_buf held = c->held;
    c->held = (struct smtp_buf){0};
    e = feed_bytes(c, held.data, held.len);
    smtp_buf_free(&held);
    return e;
}

int
smtp_client_output(struct smtp_client *c, const uint8_t **out_r, size_t *len_r)
{
    if (c->out.len == 0 && c->step == STEP_BODY) {
        int e = fill_body(c);
        if (e) {
            c->step = STEP_BROKEN;
            return e;
        }
    }
    *out_r = c->out.data;
    *len_r = c->out.len;
    return 0;
}

void
smtp_client_output_done(struct smtp_client *c, size_t n)
{
    smtp_buf_consume(&c->out, n);
}

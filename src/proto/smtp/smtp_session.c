/*
 * The SMTP/LMTP server session (smtp_session.h): line framing in command mode, the command
 * state machine, the DATA phase through smtp_data, and the queue of replies after DATA.
 */
#include "proto/smtp/smtp_session.h"

#include "lib/err.h"
#include "proto/smtp/smtp_data.h"
#include "proto/smtp/smtp_reply.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum phase {
    PH_CMD = 0, /* reading command lines */
    PH_DATA,    /* reading message data after 354 */
    PH_RESULTS, /* message complete, waiting for smtp_session_delivered() */
    PH_TLS,     /* STARTTLS answered, waiting for smtp_session_tls_started() */
    PH_CLOSED,  /* QUIT or 421 answered */
};

enum pending {
    PEND_NONE = 0,
    PEND_MAIL,
    PEND_RCPT,
};

/* One reply after DATA, held until every earlier recipient's reply has gone out. */
struct result {
    bool given;
    struct smtp_buf reply;
};

struct smtp_session {
    struct smtp_session_config cfg;
    char *hostname; /* owned copy of cfg.hostname */
    struct smtp_buf out;
    enum phase phase;
    unsigned errors;
    int failed; /* the -ENOMEM that left the session half-updated; returned from then on */

    /* Command line being assembled: up to max_line - 1 bytes (the LF is never stored). */
    char *line;
    size_t line_len;
    bool line_overflow;

    enum pending pending;
    struct smtp_cmd cmd; /* the MAIL or RCPT waiting for a verdict */

    char helo[SMTP_DOMAIN_MAX + 1];
    bool extended; /* EHLO or LHLO rather than HELO */
    bool tls;

    /* The transaction: in_tx once MAIL was accepted. */
    bool in_tx;
    struct smtp_path sender;
    bool tx_utf8;
    struct smtp_path *rcpts;
    size_t n_rcpts;
    size_t cap_rcpts;

    struct smtp_data data;
    uint64_t msg_size;
    bool oversize;

    struct result *results;
    size_t n_results;
    size_t next_result; /* the first reply not yet queued */
};

static bool
name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > SMTP_DOMAIN_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 33 || (unsigned char)*s > 126)
            return false;
    return true;
}

int
smtp_session_new(const struct smtp_session_config *cfg, struct smtp_session **s_r)
{
    *s_r = NULL;
    if ((cfg->proto != SMTP_PROTO_SMTP && cfg->proto != SMTP_PROTO_LMTP) ||
        !name_ok(cfg->hostname) || cfg->max_line < 512 || cfg->max_message == 0 ||
        cfg->max_rcpts == 0 || cfg->max_errors == 0 ||
        (cfg->offer_starttls && cfg->proto == SMTP_PROTO_LMTP))
        return TDM_EINVAL;
    struct smtp_session *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->hostname = strdup(cfg->hostname);
    s->line = malloc(cfg->max_line - 1);
    char greeting[300];
    snprintf(greeting, sizeof(greeting), "%s %s tandem", s->hostname,
             cfg->proto == SMTP_PROTO_LMTP ? "LMTP" : "ESMTP");
    s->cfg.hostname = s->hostname;
    if (!s->hostname || !s->line || smtp_reply_write(&s->out, 220, NULL, greeting) != 0) {
        smtp_session_free(&s);
        return -ENOMEM;
    }
    *s_r = s;
    return 0;
}

static void
results_free(struct smtp_session *s)
{
    for (size_t i = 0; i < s->n_results; i++)
        smtp_buf_free(&s->results[i].reply);
    free(s->results);
    s->results = NULL;
    s->n_results = s->next_result = 0;
}

void
smtp_session_free(struct smtp_session **sp)
{
    struct smtp_session *s = *sp;
    if (!s)
        return;
    results_free(s);
    free(s->rcpts);
    free(s->line);
    free(s->hostname);
    smtp_buf_free(&s->out);
    free(s);
    *sp = NULL;
}

/* Ends the transaction (done, aborted or reset); true if there was one. */
static bool
tx_end(struct smtp_session *s)
{
    bool had = s->in_tx;
    s->in_tx = false;
    s->tx_utf8 = false;
    memset(&s->sender, 0, sizeof(s->sender));
    s->n_rcpts = 0;
    s->msg_size = 0;
    s->oversize = false;
    results_free(s);
    return had;
}

/* Queues a reply the session composed itself; its arguments are ours, so only -ENOMEM. */
static int
reply(struct smtp_session *s, int code, const char *enh, const char *text)
{
    return smtp_reply_write(&s->out, code, enh, text);
}

/*
 * Refuses a command. Past max_errors the answer is 421 and the session closes, so a client
 * sending garbage cannot keep a worker busy for ever. Returns an event or -ENOMEM.
 */
static int
refuse(struct smtp_session *s, int code, const char *enh, const char *text)
{
    if (++s->errors >= s->cfg.max_errors) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s Too many errors, closing connection", s->hostname);
        s->phase = PH_CLOSED;
        int r = reply(s, 421, "4.7.0", msg);
        return r ? r : SMTP_EV_CLOSE;
    }
    int r = reply(s, code, enh, text);
    return r ? r : SMTP_EV_NEED_MORE;
}

static int
do_hello(struct smtp_session *s, const struct smtp_cmd *c)
{
    bool lmtp = s->cfg.proto == SMTP_PROTO_LMTP;
    if (lmtp != (c->verb == SMTP_VERB_LHLO))
        return refuse(s, 500, "5.5.1",
                      lmtp ? "Command unrecognized: this is LMTP, use LHLO"
                           : "Command unrecognized: LHLO is for LMTP");
    /* A new greeting resets the transaction (RFC 5321 §4.1.4). */
    bool reset = tx_end(s);
    memcpy(s->helo, c->arg, c->arg_len);
    s->helo[c->arg_len] = '\0';
    s->extended = c->verb != SMTP_VERB_HELO;
    int r;
    if (!s->extended) {
        r = reply(s, 250, NULL, s->hostname);
    } else {
        char text[600];
        int n = snprintf(text, sizeof(text),
                         "%s\nPIPELINING\nSIZE %" PRIu64 "\nENHANCEDSTATUSCODES\n8BITMIME",
                         s->hostname, s->cfg.max_message);
        if (s->cfg.offer_smtputf8)
            n += snprintf(text + n, sizeof(text) - (size_t)n, "\nSMTPUTF8");
        if (s->cfg.proto == SMTP_PROTO_LMTP)
            n += snprintf(text + n, sizeof(text) - (size_t)n, "\nXDELIVERYID");
        if (s->cfg.offer_starttls && !s->tls)
            snprintf(text + n, sizeof(text) - (size_t)n, "\nSTARTTLS");
        r = reply(s, 250, NULL, text);
    }
    if (r)
        return r;
    return reset ? SMTP_EV_RESET : SMTP_EV_NEED_MORE;
}

static int
do_command(struct smtp_session *s, const char *line, size_t len, struct smtp_session_out *out)
{
    struct smtp_cmd_error err;
    struct smtp_cmd *c = &s->cmd;
    if (smtp_cmd_parse(line, len, s->cfg.offer_smtputf8, s->tx_utf8, c, &err) != 0)
        return refuse(s, err.code, err.enh, err.text);
    const char *hello = s->cfg.proto == SMTP_PROTO_LMTP ? "Send LHLO first" : "Send EHLO first";
    switch (c->verb) {
    case SMTP_VERB_HELO:
    case SMTP_VERB_EHLO:
    case SMTP_VERB_LHLO:
        return do_hello(s, c);
    case SMTP_VERB_MAIL:
        if (!s->helo[0])
            return refuse(s, 503, "5.5.1", hello);
        if (s->in_tx)
            return refuse(s, 503, "5.5.1", "Nested MAIL command");
        if (c->has_size && c->size > s->cfg.max_message) {
            int r = reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
            return r ? r : SMTP_EV_NEED_MORE;
        }
        s->pending = PEND_MAIL;
        out->path = &c->path;
        out->mail = c;
        return SMTP_EV_MAIL;
    case SMTP_VERB_RCPT:
        if (!s->in_tx)
            return refuse(s, 503, "5.5.1", "Need MAIL before RCPT");
        if (s->n_rcpts >= s->cfg.max_rcpts) {
            int r = reply(s, 452, "4.5.3", "Too many recipients");
            return r ? r : SMTP_EV_NEED_MORE;
        }
        /* Delivery ids name what a mailbox server stores: LMTP only (smtp_cmd.h). */
        if (c->has_delivery_id && s->cfg.proto != SMTP_PROTO_LMTP)
            return refuse(s, 555, "5.5.4", "Unsupported parameter");
        s->pending = PEND_RCPT;
        out->path = &c->path;
        out->rcpt = c;
        return SMTP_EV_RCPT;
    case SMTP_VERB_DATA: {
        if (!s->in_tx)
            return refuse(s, 503, "5.5.1", "Need MAIL command");
        /* RFC 2033 §4.2 demands 503 for LMTP; RFC 5321 §3.3 prefers 554 for SMTP. */
        if (s->n_rcpts == 0)
            return refuse(s, s->cfg.proto == SMTP_PROTO_LMTP ? 503 : 554, "5.5.1",
                          "No valid recipients");
        int r = reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
        if (r)
            return r;
        s->phase = PH_DATA;
        smtp_data_init(&s->data);
        s->msg_size = 0;
        s->oversize = false;
        return SMTP_EV_DATA_START;
    }
    case SMTP_VERB_RSET: {
        bool reset = tx_end(s);
        int r = reply(s, 250, "2.0.0", "Ok");
        return r ? r : reset ? SMTP_EV_RESET : SMTP_EV_NEED_MORE;
    }
    case SMTP_VERB_NOOP: {
        int r = reply(s, 250, "2.0.0", "Ok");
        return r ? r : SMTP_EV_NEED_MORE;
    }
    case SMTP_VERB_QUIT: {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s closing connection", s->hostname);
        s->phase = PH_CLOSED;
        int r = reply(s, 221, "2.0.0", msg);
        return r ? r : SMTP_EV_CLOSE;
    }
    case SMTP_VERB_VRFY: {
        /* RFC 5321 §3.5.3: 252 when we will not say whether an address exists. */
        int r = reply(s, 252, "2.0.0",
                      "Cannot VRFY user, but will accept message and attempt delivery");
        return r ? r : SMTP_EV_NEED_MORE;
    }
    case SMTP_VERB_EXPN:
        return refuse(s, 502, "5.5.1", "EXPN not supported");
    case SMTP_VERB_HELP: {
        int r = reply(s, 214, "2.0.0",
                      s->cfg.proto == SMTP_PROTO_LMTP
                          ? "Commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"
                          : "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP");
        return r ? r : SMTP_EV_NEED_MORE;
    }
    case SMTP_VERB_STARTTLS: {
        if (s->cfg.proto == SMTP_PROTO_LMTP || !s->cfg.offer_starttls)
            return refuse(s, 502, "5.5.1", "STARTTLS not offered");
        if (s->tls)
            return refuse(s, 503, "5.5.1", "TLS already active");
        if (s->in_tx)
            return refuse(s, 503, "5.5.1", "MAIL transaction in progress");
        int r = reply(s, 220, "2.0.0", "Ready to start TLS");
        if (r)
            return r;
        s->phase = PH_TLS;
        return SMTP_EV_STARTTLS;
    }
    case SMTP_VERB_UNKNOWN:
        break;
    }
    return refuse(s, 500, "5.5.1", "Command unrecognized");
}

/* The DATA phase: one chunk or the end per call. */
static int
feed_data(struct smtp_session *s, const uint8_t *in, size_t len, struct smtp_session_out *out)
{
    size_t at = 0;
    for (;;) {
        size_t used;
        const uint8_t *chunk = NULL;
        size_t clen = 0;
        int item = smtp_data_feed(&s->data, in + at, len - at, &used, &chunk, &clen);
        at += used;
        out->used = at;
        if (item == SMTP_DATA_NEED_MORE)
            return SMTP_EV_NEED_MORE;
        if (item == SMTP_DATA_CHUNK) {
            if (s->oversize)
                continue; /* read to the end, hand over nothing more */
            uint64_t room = s->cfg.max_message - s->msg_size;
            if (clen > room) {
                /* Hand over what fits, so where the message stops does not depend on how the
                 * reads were cut; the caller then learns at the end that it is refused. */
                s->oversize = true;
                if (room == 0)
                    continue;
                clen = (size_t)room;
            }
            s->msg_size += clen;
            out->data = chunk;
            out->data_len = clen;
            return SMTP_EV_DATA;
        }
        out->message_size = s->msg_size;
        size_t n = s->cfg.proto == SMTP_PROTO_LMTP ? s->n_rcpts : 1;
        if (s->oversize) {
            for (size_t i = 0; i < n; i++) {
                int r = reply(s, 552, "5.3.4", "Message size exceeds fixed maximum message size");
                if (r)
                    return r;
            }
            tx_end(s);
            s->phase = PH_CMD;
            return SMTP_EV_DATA_ABORTED;
        }
        s->results = calloc(n, sizeof(*s->results));
        if (!s->results)
            return -ENOMEM;
        s->n_results = n;
        s->next_result = 0;
        s->phase = PH_RESULTS;
        return SMTP_EV_DATA_END;
    }
}

static int
feed(struct smtp_session *s, const uint8_t *in, size_t len, struct smtp_session_out *out)
{
    if (s->phase == PH_CLOSED || s->phase == PH_TLS)
        return TDM_EINVAL;
    if (s->pending != PEND_NONE || s->phase == PH_RESULTS)
        return SMTP_EV_WAIT;
    if (s->phase == PH_DATA)
        return feed_data(s, in, len, out);

    size_t at = 0;
    while (at < len) {
        const uint8_t *lf = memchr(in + at, '\n', len - at);
        size_t end = lf ? (size_t)(lf - in) : len;
        size_t n = end - at;
        size_t room = s->cfg.max_line - 1 - s->line_len;
        if (n > room) {
            s->line_overflow = true; /* keep reading to the LF, keep nothing more */
            n = room;
        }
        memcpy(s->line + s->line_len, in + at, n);
        s->line_len += n;
        if (!lf) {
            at = len;
            break;
        }
        at = end + 1;
        size_t ll = s->line_len;
        bool overflow = s->line_overflow;
        s->line_len = 0;
        s->line_overflow = false;
        if (ll > 0 && s->line[ll - 1] == '\r')
            ll--;
        int ev =
            overflow ? refuse(s, 500, "5.5.2", "Line too long") : do_command(s, s->line, ll, out);
        if (ev != SMTP_EV_NEED_MORE) {
            out->used = at;
            return ev;
        }
    }
    out->used = at;
    return SMTP_EV_NEED_MORE;
}

int
smtp_session_feed(struct smtp_session *s, const uint8_t *in, size_t len,
                  struct smtp_session_out *out)
{
    memset(out, 0, sizeof(*out));
    if (s->failed)
        return s->failed;
    int ev = feed(s, in, len, out);
    /* Out of memory part-way through a command: what was taken and answered is no longer
     * certain, so the session refuses to go on rather than risk a reply out of order. */
    if (ev < 0 && ev != TDM_EINVAL)
        s->failed = ev;
    return ev;
}

/* Writes a caller's verdict into b, with defaults for what it left out. */
static int
write_verdict(struct smtp_buf *b, const struct smtp_verdict *v, const char *ok_enh)
{
    if (!v || v->code < 200 || v->code > 599 || v->code / 100 == 3)
        return TDM_EINVAL;
    bool ok = v->code < 300;
    const char *enh = v->enh ? v->enh : ok ? ok_enh : v->code < 500 ? "4.0.0" : "5.0.0";
    const char *text = v->text ? v->text : ok ? "Ok" : "Refused";
    return smtp_reply_write(b, v->code, enh, text);
}

int
smtp_session_verdict(struct smtp_session *s, const struct smtp_verdict *v)
{
    if (s->failed)
        return s->failed;
    if (s->pending == PEND_NONE)
        return TDM_EINVAL;
    bool ok = v && v->code >= 200 && v->code < 300;
    if (ok && s->pending == PEND_RCPT && s->n_rcpts == s->cap_rcpts) {
        size_t cap = s->cap_rcpts ? s->cap_rcpts * 2 : 4;
        struct smtp_path *p = realloc(s->rcpts, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        s->rcpts = p;
        s->cap_rcpts = cap;
    }
    int r = write_verdict(&s->out, v, s->pending == PEND_MAIL ? "2.1.0" : "2.1.5");
    if (r)
        return r;
    if (ok && s->pending == PEND_MAIL) {
        s->in_tx = true;
        s->sender = s->cmd.path;
        s->tx_utf8 = s->cmd.smtputf8;
    } else if (ok) {
        s->rcpts[s->n_rcpts++] = s->cmd.path;
    }
    s->pending = PEND_NONE;
    return 0;
}

int
smtp_session_answer(struct smtp_session *s, const struct smtp_verdict *v, bool *deferred_r)
{
    static const struct smtp_verdict no_memory = {451, "4.3.0", "Out of memory, try again later"};
    *deferred_r = false;
    int r = smtp_session_verdict(s, v);
    if (r != -ENOMEM || s->failed)
        return r;
    /* A refusal needs no room in the recipient list, only in the output. */
    *deferred_r = true;
    r = smtp_session_verdict(s, &no_memory);
    if (r == -ENOMEM)
        s->failed = r; /* the command stays unanswered: the session cannot go on */
    return r;
}

int
smtp_session_delivered(struct smtp_session *s, size_t idx, const struct smtp_verdict *v)
{
    if (s->failed)
        return s->failed;
    if (s->phase != PH_RESULTS || idx >= s->n_results || s->results[idx].given)
        return TDM_EINVAL;
    int r = write_verdict(&s->results[idx].reply, v, "2.0.0");
    if (r)
        return r;
    s->results[idx].given = true;
    /* Queue every reply whose turn has come: LMTP answers in RCPT order (RFC 2033 §4.2). */
    while (s->next_result < s->n_results && s->results[s->next_result].given) {
        struct smtp_buf *b = &s->results[s->next_result].reply;
        r = smtp_buf_append(&s->out, b->data, b->len);
        if (r)
            return s->failed = r; /* this result is given but not sent: cannot be retried */
        smtp_buf_free(b);
        s->next_result++;
    }
    if (s->next_result == s->n_results) {
        tx_end(s);
        s->phase = PH_CMD;
    }
    return 0;
}

int
smtp_session_tls_started(struct smtp_session *s)
{
    if (s->phase != PH_TLS)
        return TDM_EINVAL;
    /* RFC 3207 §4.2: forget everything learnt before TLS, the client's name included. */
    s->phase = PH_CMD;
    s->tls = true;
    s->helo[0] = '\0';
    s->extended = false;
    tx_end(s);
    return 0;
}

const uint8_t *
smtp_session_output(const struct smtp_session *s, size_t *len_r)
{
    *len_r = s->out.len;
    return s->out.data;
}

void
smtp_session_output_done(struct smtp_session *s, size_t n)
{
    smtp_buf_consume(&s->out, n);
}

size_t
smtp_session_rcpt_count(const struct smtp_session *s)
{
    return s->n_rcpts;
}

const struct smtp_path *
smtp_session_rcpt(const struct smtp_session *s, size_t idx)
{
    return idx < s->n_rcpts ? &s->rcpts[idx] : NULL;
}

const struct smtp_path *
smtp_session_sender(const struct smtp_session *s)
{
    return s->in_tx ? &s->sender : NULL;
}

const char *
smtp_session_helo(const struct smtp_session *s)
{
    return s->helo;
}

const char *
smtp_session_with(const struct smtp_session *s)
{
    /* [utf8][lmtp][tls]; plain SMTP is "SMTP" only after HELO (RFC 3848, RFC 6531 §3.7.3). */
    static const char *const names[2][2][2] = {
        {{"ESMTP", "ESMTPS"}, {"LMTP", "LMTPS"}},
        {{"UTF8SMTP", "UTF8SMTPS"}, {"UTF8LMTP", "UTF8LMTPS"}},
    };
    bool lmtp = s->cfg.proto == SMTP_PROTO_LMTP;
    if (!lmtp && !s->extended && !s->tls && !s->tx_utf8)
        return "SMTP";
    return names[s->tx_utf8][lmtp][s->tls];
}

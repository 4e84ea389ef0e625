/*
 * The transport role's SMTP server (smtp_server.h): connections (lib/conn.h) driving the
 * sans-IO session (proto/smtp/smtp_session.h), recipients from the directory
 * (rcpt/rcpt_lookup.h), and each message relayed over LMTP (smtp_relay.c).
 *
 * A connection's life: the session is fed whatever arrived. MAIL is accepted. RCPT is refused
 * at once when its domain is not one of ours (relaying), else looked up (at once in a local
 * directory, later from a remote one: reading pauses meanwhile) and accepted when the
 * directory knows the recipient and where its database's mail goes. All of a transaction's
 * recipients must go to the same mailbox server, so its one reply after the data can say
 * exactly what that server said; a recipient for another server is deferred (452) and the
 * client sends it in a second transaction. The message is gathered into one buffer that
 * starts with our Received: header; at its end reading pauses while it is relayed, and the
 * relay's outcome is the reply. Each recipient gets a random delivery id for the relay, and a
 * message the mailbox server took is kept in the dumpster (dumpster.h) with the ids of the
 * recipients it took, per database, before the client hears 250: the entries are written off
 * the loop (dumpster_writer.h) and the reply waits for their callback, reading still paused.
 *
 * Lifetime: a connection closed while a remote lookup or a dumpster write is in flight
 * lingers (without its conn) until it answers, so no callback touches freed memory. A relay in
 * flight is abandoned when its client goes: nobody is left to acknowledge the message, and a relay
 * cut before the end of the data leaves nothing on the mailbox server.
 */
#include "smtp/smtp_server.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proto/smtp/smtp_received.h"
#include "rcpt/rcpt_lookup.h"
#include "smtp/delivery_id.h"
#include "smtp/dumpster.h"
#include "smtp/dumpster_writer.h"
#include "smtp/smtp_int.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static_assert(SMTP_DELIVERY_ID_LEN == DUMPSTER_ID_LEN, "a delivery id is a dumpster id");

/* A command line: RFC 5321's 512 raised to the 1000 of a text line, ample for MAIL with its
 * parameters (§4.5.3.1). */
#define SMTP_MAX_LINE 1000u
#define SMTP_MAX_ERRORS 20u
#define SMTP_IDLE_TIMEOUT_MS (5u * 60u * 1000u) /* RFC 5321 §4.5.3.2.7: at least 5 minutes */

struct smtp_server {
    struct event_base *base;
    const struct tdm_config *cfg;
    struct conn_listener *listener;
    struct rcpt_lookup *rcpts;
    SSL_CTX *tls; /* for STARTTLS */
    struct dumpster_writer *dumpster;
    int64_t last_prune; /* when the dumpster was last pruned */
};

struct smtp_conn {
    struct smtp_server *srv;
    struct conn *conn; /* NULL once the client is gone */
    struct smtp_session *session;
    bool body_8bit;         /* the transaction's MAIL said BODY=8BITMIME */
    struct dir_route route; /* where the transaction's recipients' mail goes; UNSET before one */
    struct smtp_buf message; /* our Received: header, then the client's data */
    size_t received_len;     /* the length of that header */
    struct smtp_relay *relay; /* the message being relayed */
    bool looking_up;          /* a remote recipient lookup is in flight */
    /* Each accepted recipient's database, in RCPT order (for the dumpster), and the delivery
     * ids of the relay in flight. */
    char (*rcpt_dbs)[DIR_NAME_MAX + 1];
    size_t n_rcpt_dbs, cap_rcpt_dbs;
    uint8_t (*ids)[DUMPSTER_ID_LEN];
    unsigned inflight; /* remote lookups awaiting their answer */
    unsigned busy;     /* inside a callback that may resume the pump (which may close) */
    /* The relay's verdict, answered once the dumpster holds the message (keeping is set
     * while its write is in flight). */
    bool keeping;
    bool keep_failed; /* an entry could not even be encoded: the message is not kept */
    int verdict_code;
    char verdict_enh[16];
    char verdict_text[1024];
};

static void sc_maybe_free(struct smtp_conn *sc);
static void pump(struct smtp_conn *sc, struct evbuffer *in);

/* ---- Output ---- */

static void
flush(struct smtp_conn *sc)
{
    size_t len;
    const uint8_t *out = smtp_session_output(sc->session, &len);
    if (len == 0)
        return;
    if (sc->conn)
        conn_write(sc->conn, out, len);
    smtp_session_output_done(sc->session, len);
}

/* ---- Recipients ---- */

/* Is the recipient in one of our domains? <postmaster> alone always is (RFC 5321 §4.5.1). An
 * address literal never is: mail is taken for names, not for whatever this host is. */
static bool
domain_is_local(const struct tdm_config *cfg, const struct smtp_path *path)
{
    if (path->postmaster && !path->domain[0])
        return true;
    for (unsigned i = 0; i < cfg->smtp.n_domains; i++)
        if (strcasecmp(cfg->smtp.domains[i], path->domain) == 0)
            return true;
    return false;
}

static void
route_problem(const struct dir_recipient *r, char *text, size_t size)
{
    const struct dir_route *rt = &r->route;
    switch (rt->status) {
    case DIR_ROUTE_NO_DATABASE:
        snprintf(text, size, "Mailbox database %.64s is not in the directory; try again later",
                 r->database);
        break;
    case DIR_ROUTE_NO_CMS:
        snprintf(text, size,
                 "Mailbox database %.64s has no clustered mailbox server%s%.64s in the directory; "
                 "try again later",
                 r->database, rt->cms[0] ? " " : "", rt->cms);
        break;
    case DIR_ROUTE_NO_ADDRESS:
        snprintf(text, size,
                 "Clustered mailbox server %.64s of database %.64s has no IP address in the "
                 "directory; try again later",
                 rt->cms, r->database);
        break;
    default:
        snprintf(text, size, "The directory did not say where mail for %.64s goes; try again later",
                 r->database);
        break;
    }
    log_error("smtp: cannot relay to %s: %s", r->user, text);
}

/* The verdict on a recipient the directory answered for; text is room for a composed reply. */
static struct smtp_verdict
rcpt_verdict(struct smtp_conn *sc, int status, const struct dir_recipient *r, char *text,
             size_t size)
{
    if (status == -ENOTCONN)
        return (struct smtp_verdict){451, "4.3.0", rcpt_lookup_problem(sc->srv->rcpts)};
    if (status == -EPERM)
        return (struct smtp_verdict){
            451, "4.3.0", "The directory refused this server's credentials, try again later"};
    if (status < 0) {
        if (status != -EAGAIN && status != -EHOSTUNREACH)
            log_error("smtp: directory lookup failed: %s", tdm_strerror(status));
        return (struct smtp_verdict){451, "4.3.0", "Directory lookup failed, try again later"};
    }
    switch (r->status) {
    case DIR_RCPT_UNKNOWN:
    case DIR_RCPT_NO_MAILBOX:
        return (struct smtp_verdict){550, "5.1.1", "No such user here"};
    case DIR_RCPT_DISABLED:
        return (struct smtp_verdict){550, "5.2.1", "Mailbox disabled"};
    case DIR_RCPT_OK:
        break;
    }
    if (r->route.status != DIR_ROUTE_OK) {
        route_problem(r, text, size);
        return (struct smtp_verdict){451, "4.3.0", text};
    }
    const struct dir_route *tx = &sc->route;
    if (tx->status == DIR_ROUTE_OK &&
        (tx->port != r->route.port || strcmp(tx->address, r->route.address) != 0)) {
        snprintf(text, size,
                 "This recipient's mailbox is on another server (%.64s): send it in another "
                 "transaction",
                 r->route.cms);
        return (struct smtp_verdict){452, "4.5.3", text};
    }
    return (struct smtp_verdict){250, "2.1.5", "OK"};
}

/*
 * Gives the session a verdict; one it has no memory to record is answered 451 4.3.0 instead.
 * *given_r: whether the command was answered with v. Returns 0, or -ENOMEM when the session
 * failed (not even the 451 fits): its next feed says so too, and the connection must close.
 */
static int
answer(struct smtp_conn *sc, const struct smtp_verdict *v, bool *given_r)
{
    bool deferred;
    int ret = smtp_session_answer(sc->session, v, &deferred);
    if (ret < 0 || deferred)
        log_error("smtp: %s: out of memory recording a verdict%s", conn_peer(sc->conn),
                  ret < 0 ? "; closing" : ": answered 451 4.3.0");
    *given_r = ret == 0 && !deferred;
    return ret == -ENOMEM ? ret : 0;
}

/* Gives the session the verdict for a looked-up recipient. Returns answer()'s. */
static int
rcpt_decide(struct smtp_conn *sc, int status, const struct dir_recipient *r)
{
    char text[400];
    struct smtp_verdict v = rcpt_verdict(sc, status, r, text, sizeof(text));
    bool given;
    if (v.code == 250 && sc->n_rcpt_dbs == sc->cap_rcpt_dbs) {
        size_t cap = sc->cap_rcpt_dbs ? sc->cap_rcpt_dbs * 2 : 4;
        void *p = realloc(sc->rcpt_dbs, cap * sizeof(*sc->rcpt_dbs));
        if (p) {
            sc->rcpt_dbs = p;
            sc->cap_rcpt_dbs = cap;
        } else {
            v = (struct smtp_verdict){451, "4.3.0", "Out of memory, try again later"};
        }
    }
    int ret = answer(sc, &v, &given);
    if (given && v.code == 250) {
        sc->route = r->route;
        snprintf(sc->rcpt_dbs[sc->n_rcpt_dbs++], DIR_NAME_MAX + 1, "%s", r->database);
    }
    return ret;
}

/* The session failed (out of memory): says so if it can, and closes. */
static void
session_failed(struct smtp_conn *sc, int why)
{
    log_error("smtp: %s: session failed: %s", conn_peer(sc->conn), tdm_strerror(why));
    conn_printf(sc->conn, "421 4.3.0 Out of memory, closing\r\n");
    conn_close_after_flush(sc->conn);
}

static void
remote_rcpt_cb(void *ctx, int status, const struct dir_recipient *r, bool from_cache)
{
    (void)from_cache;
    struct smtp_conn *sc = ctx;
    sc->inflight--;
    sc->looking_up = false;
    if (sc->conn) {
        sc->busy++;
        int ret = rcpt_decide(sc, status, r);
        flush(sc);
        if (ret < 0)
            session_failed(sc, ret);
        else
            conn_resume(sc->conn); /* what was pipelined behind the RCPT */
        sc->busy--;
    }
    sc_maybe_free(sc);
}

/* Decides a RCPT now, or starts a remote lookup (sc->looking_up). */
static void
on_rcpt(struct smtp_conn *sc, const struct smtp_path *path)
{
    if (!domain_is_local(sc->srv->cfg, path)) {
        static const struct smtp_verdict relay = {
            550, "5.7.1", "Relaying denied: this server takes mail for its own domains only"};
        bool given;
        answer(sc, &relay, &given); /* a failed session closes at its next feed */
        return;
    }
    struct dir_recipient r;
    int ret = rcpt_lookup_find(sc->srv->rcpts, path->local, path->domain, &r, remote_rcpt_cb, sc);
    if (ret != RCPT_LOOKUP_PENDING) {
        rcpt_decide(sc, ret, &r); /* a failed session closes at its next feed */
        return;
    }
    sc->inflight++;
    sc->looking_up = true;
}

/* ---- The message ---- */

static void
tx_reset(struct smtp_conn *sc)
{
    smtp_buf_free(&sc->message);
    memset(&sc->route, 0, sizeof(sc->route));
    sc->body_8bit = false;
    sc->n_rcpt_dbs = 0;
    free(sc->ids);
    sc->ids = NULL;
}

/* The message starts with our Received: header (RFC 5321 §4.4); Return-Path: is the final
 * delivery's to add (the mailbox server's LMTP). */
static int
start_message(struct smtp_conn *sc)
{
    smtp_buf_free(&sc->message);
    bool one = smtp_session_rcpt_count(sc->session) == 1;
    struct smtp_received rcv = {
        .helo = smtp_session_helo(sc->session),
        .client_addr = conn_peer_address(sc->conn),
        .by = sc->srv->cfg->server,
        .with = smtp_session_with(sc->session),
        .for_rcpt = one ? smtp_session_rcpt(sc->session, 0) : NULL,
        .time = time(NULL),
    };
    int ret = smtp_received_build(&rcv, &sc->message);
    sc->received_len = sc->message.len;
    return ret;
}

static void keep_done(void *ctx, int status);

/* Keeps what the mailbox server took in the dumpster: one entry per database, with the
 * recipients of that database it answered 2xx for, encoded here and written off the loop.
 * Returns true when the write is under way (keep_done() answers the client), false when
 * there is nothing to keep, or it could not be started (said with 5101; *failed set): answer
 * now. */
static bool
dumpster_keep(struct smtp_conn *sc, const int *codes, bool *failed)
{
    *failed = false;
    size_t n = smtp_session_rcpt_count(sc->session);
    if (!codes || !sc->ids || n != sc->n_rcpt_dbs)
        return false;
    struct dumpster_rcpt *rcpts = calloc(n, sizeof(*rcpts));
    struct smtp_buf *addrs = calloc(n, sizeof(*addrs));
    bool *done = calloc(n, sizeof(*done));
    struct smtp_buf from = {0};
    struct dumpster_batch *batch = NULL;
    const struct smtp_path *sender = smtp_session_sender(sc->session);
    int ret = rcpts && addrs && done ? 0 : -ENOMEM;
    if (ret == 0 && sender && !sender->null)
        ret = smtp_mailbox_write(&from, sender);
    if (ret == 0)
        ret = smtp_buf_append(&from, "", 1);
    for (size_t i = 0; ret == 0 && i < n; i++) {
        ret = smtp_mailbox_write(&addrs[i], smtp_session_rcpt(sc->session, i));
        if (ret == 0)
            ret = smtp_buf_append(&addrs[i], "", 1);
    }
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; ret == 0 && i < n; i++) {
        if (done[i] || codes[i] / 100 != 2)
            continue;
        size_t k = 0;
        for (size_t j = i; j < n; j++) {
            if (done[j] || codes[j] / 100 != 2 || strcmp(sc->rcpt_dbs[j], sc->rcpt_dbs[i]) != 0)
                continue;
            done[j] = true;
            memcpy(rcpts[k].id, sc->ids[j], DUMPSTER_ID_LEN);
            rcpts[k++].address = (const char *)addrs[j].data;
        }
        struct dumpster_entry e = {
            .time = now,
            .sender = (const char *)from.data,
            .body_8bit = sc->body_8bit,
            .n_rcpts = k,
            .rcpts = rcpts,
            .body = sc->message.data,
            .body_len = sc->message.len,
        };
        int r = dumpster_batch_add(&batch, sc->rcpt_dbs[i], &e);
        if (r == -ENOMEM) {
            ret = r;
        } else if (r < 0) {
            event_emit(TDM_EV_DUMPSTER_WRITE_FAILED, sc->rcpt_dbs[i],
                       "cannot keep a delivered message in the dumpster of %s: %s", sc->rcpt_dbs[i],
                       tdm_strerror(r));
            *failed = true;
        }
    }
    for (size_t i = 0; addrs && i < n; i++)
        smtp_buf_free(&addrs[i]);
    smtp_buf_free(&from);
    free(addrs);
    free(rcpts);
    free(done);
    /* Retention, at most once a minute, after the writes: a directory walk per message would
     * cost more than the message. */
    const struct tdm_config_dumpster *dc = &sc->srv->cfg->dumpster;
    struct dumpster_retention retention = {now, dc->max_age_ms / 1000, dc->max_size};
    bool prune = now - sc->srv->last_prune >= 60 || now < sc->srv->last_prune;
    bool started = false;
    if (ret == 0 && (batch || prune)) {
        /* Takes the batch whatever it returns. */
        ret = dumpster_writer_put(sc->srv->dumpster, &batch, prune ? &retention : NULL, keep_done,
                                  sc);
        started = ret == 0;
        if (started && prune)
            sc->srv->last_prune = now;
    }
    dumpster_batch_free(&batch);
    if (ret < 0) {
        event_emit(TDM_EV_DUMPSTER_WRITE_FAILED, NULL,
                   "cannot keep a delivered message in the dumpster: %s", tdm_strerror(ret));
        *failed = true;
    }
    if (started && *failed)
        sc->keep_failed = true; /* an entry refused before the write: keep_done() says so */
    return started;
}

/* A message the mailbox server took but the dumpster could not keep is not acknowledged: a
 * lossy failover could lose it with nothing to resubmit. The client's retry carries the same
 * delivery ids (delivery_id.h), so the mailbox server drops its second copy, and the dumpster
 * gets another chance. */
static const struct smtp_verdict keep_failed_verdict = {
    451, "4.3.0", "Delivered, but not kept for failover; please send it again"};

/* Answers the message with v and takes the next command. */
static void
answer_message(struct smtp_conn *sc, const struct smtp_verdict *v)
{
    sc->busy++;
    if (smtp_session_delivered(sc->session, 0, v) == TDM_EINVAL) {
        /* A text the session will not send (a byte from the mailbox server's reply that
         * slipped through): the same outcome in our own words, so the client is answered. */
        log_error("smtp: the session refused a delivery verdict (%d %s)", v->code, v->text);
        struct smtp_verdict plain = {v->code < 300 ? 250 : v->code < 500 ? 451 : 554, NULL, NULL};
        smtp_session_delivered(sc->session, 0, &plain);
    }
    tx_reset(sc);
    flush(sc);
    if (sc->conn)
        conn_resume(sc->conn); /* hands over whatever was pipelined meanwhile */
    sc->busy--;
    sc_maybe_free(sc);
}

/* The dumpster holds the message (or said why not): now the client hears the verdict. */
static void
keep_done(void *ctx, int status)
{
    struct smtp_conn *sc = ctx;
    sc->keeping = false;
    bool failed = status < 0 || sc->keep_failed;
    sc->keep_failed = false;
    if (!sc->conn) {
        /* The client went meanwhile: nobody to answer; the message is kept all the same. */
        sc_maybe_free(sc);
        return;
    }
    struct smtp_verdict v = {sc->verdict_code, sc->verdict_enh[0] ? sc->verdict_enh : NULL,
                             sc->verdict_text[0] ? sc->verdict_text : NULL};
    answer_message(sc, failed && v.code < 300 ? &keep_failed_verdict : &v);
}

/* The relay's outcome is the message's reply, once the dumpster holds what was taken. */
static void
relay_done(void *ctx, const struct smtp_verdict *v, const int *codes)
{
    struct smtp_conn *sc = ctx;
    sc->relay = NULL;
    bool failed;
    if (dumpster_keep(sc, codes, &failed)) {
        /* v borrows from the relay, which is gone when this returns. */
        sc->keeping = true;
        sc->verdict_code = v->code;
        snprintf(sc->verdict_enh, sizeof(sc->verdict_enh), "%s", v->enh ? v->enh : "");
        snprintf(sc->verdict_text, sizeof(sc->verdict_text), "%s", v->text ? v->text : "");
        return;
    }
    answer_message(sc, failed && v->code < 300 ? &keep_failed_verdict : v);
}

/* One delivery id per recipient into sc->ids (delivery_id.h): the same message retried by
 * the client gets the same ones. */
static int
make_delivery_ids(struct smtp_conn *sc, size_t n)
{
    free(sc->ids);
    sc->ids = calloc(n ? n : 1, sizeof(*sc->ids));
    if (!sc->ids)
        return -ENOMEM;
    struct smtp_buf sender = {0}, rcpt = {0};
    const struct smtp_path *from = smtp_session_sender(sc->session);
    int ret = from && !from->null ? smtp_mailbox_write(&sender, from) : 0;
    const uint8_t *data = sc->message.data ? sc->message.data + sc->received_len : NULL;
    size_t data_len = sc->message.len - sc->received_len;
    for (size_t i = 0; ret == 0 && i < n; i++) {
        rcpt.len = 0;
        ret = smtp_mailbox_write(&rcpt, smtp_session_rcpt(sc->session, i));
        if (ret == 0)
            smtp_delivery_id((const char *)sender.data, sender.len, (const char *)rcpt.data,
                             rcpt.len, data, data_len, sc->ids[i]);
    }
    smtp_buf_free(&sender);
    smtp_buf_free(&rcpt);
    return ret;
}

/* Starts relaying the complete message; on failure answers at once. */
static void
relay_message(struct smtp_conn *sc)
{
    size_t n = smtp_session_rcpt_count(sc->session);
    const struct smtp_path **rcpts = calloc(n, sizeof(*rcpts));
    int ret = rcpts ? 0 : -ENOMEM;
    for (size_t i = 0; rcpts && i < n; i++)
        rcpts[i] = smtp_session_rcpt(sc->session, i);
    if (ret == 0)
        ret = make_delivery_ids(sc, n);
    struct smtp_relay_request req = {
        .cms = sc->route.cms,
        .address = sc->route.address,
        .port = sc->route.port,
        .helo = sc->srv->cfg->server,
        .sender = smtp_session_sender(sc->session),
        .rcpts = rcpts,
        .n_rcpts = n,
        .body_8bit = sc->body_8bit,
        .body = sc->message.data ? sc->message.data : (const uint8_t *)"",
        .body_len = sc->message.len,
        .delivery_ids = sc->ids,
    };
    if (ret == 0)
        ret = smtp__relay_start(sc->srv->base, &req, relay_done, sc, &sc->relay);
    free(rcpts);
    if (ret == 0) {
        conn_pause(sc->conn);
        return;
    }
    log_error("smtp: cannot relay to %s: %s", sc->route.cms, tdm_strerror(ret));
    struct smtp_verdict v = {451, "4.3.0", "Cannot relay the message now; try again later"};
    relay_done(sc, &v, NULL);
}

/* ---- The session pump ---- */

static void
on_starttls(struct smtp_conn *sc, struct evbuffer *in)
{
    flush(sc); /* the 220 */
    /* Bytes pipelined behind STARTTLS are an attack (RFC 3207 §5): conn discards what it
     * holds too; drop ours so the session starts clean after the handshake. */
    evbuffer_drain(in, evbuffer_get_length(in));
    if (conn_starttls(sc->conn, sc->srv->tls) < 0 || smtp_session_tls_started(sc->session) < 0)
        conn_close_after_flush(sc->conn);
}

/* Acts on one event. Returns false when the pump must stop (the input is then handled). */
static bool
on_event(struct smtp_conn *sc, int ev, const struct smtp_session_out *out, struct evbuffer *in)
{
    switch (ev) {
    case SMTP_EV_MAIL: {
        static const struct smtp_verdict ok = {250, "2.1.0", "OK"};
        tx_reset(sc);
        sc->body_8bit = out->mail->body == SMTP_BODY_8BITMIME;
        bool given;
        answer(sc, &ok, &given); /* a failed session closes at its next feed */
        break;
    }
    case SMTP_EV_RCPT:
        on_rcpt(sc, out->path);
        if (sc->looking_up) {
            /* The verdict comes later: take nothing more until it has. */
            evbuffer_drain(in, out->used);
            flush(sc);
            conn_pause(sc->conn);
            return false;
        }
        break;
    case SMTP_EV_DATA_START:
        if (start_message(sc) < 0)
            log_error("smtp: cannot start a message (out of memory)");
        break;
    case SMTP_EV_DATA:
        if (smtp_buf_append(&sc->message, out->data, out->data_len) < 0) {
            log_error("smtp: out of memory receiving a message");
            conn_close_after_flush(sc->conn);
            return false;
        }
        break;
    case SMTP_EV_DATA_END:
        evbuffer_drain(in, out->used);
        flush(sc); /* nothing is queued yet; keeps the order of replies obvious */
        relay_message(sc);
        return sc->relay == NULL;
    case SMTP_EV_DATA_ABORTED:
    case SMTP_EV_RESET:
        tx_reset(sc);
        break;
    case SMTP_EV_STARTTLS:
        evbuffer_drain(in, out->used);
        on_starttls(sc, in);
        return false;
    default:
        break;
    }
    evbuffer_drain(in, out->used);
    flush(sc);
    if (ev == SMTP_EV_CLOSE) {
        conn_close_after_flush(sc->conn);
        return false;
    }
    return ev != SMTP_EV_NEED_MORE && ev != SMTP_EV_WAIT;
}

static void
pump(struct smtp_conn *sc, struct evbuffer *in)
{
    while (sc->conn && !sc->relay && !sc->keeping && !sc->looking_up &&
           !conn_output_full(sc->conn)) {
        size_t len = evbuffer_get_length(in);
        const uint8_t *data = len ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
        struct smtp_session_out out;
        int ev = smtp_session_feed(sc->session, data, len, &out);
        if (ev < 0) {
            session_failed(sc, ev);
            return;
        }
        if (!on_event(sc, ev, &out, in))
            return;
    }
}

/* ---- Connections ---- */

static void
sc_maybe_free(struct smtp_conn *sc)
{
    if (sc->conn || sc->inflight > 0 || sc->busy > 0 || sc->keeping)
        return;
    smtp_session_free(&sc->session);
    smtp_buf_free(&sc->message);
    free(sc->rcpt_dbs);
    free(sc->ids);
    free(sc);
}

static void
on_open(struct conn *conn, void *ctx)
{
    struct smtp_server *srv = ctx;
    struct smtp_conn *sc = calloc(1, sizeof(*sc));
    struct smtp_session_config scfg = {
        .proto = SMTP_PROTO_SMTP,
        .hostname = srv->cfg->server,
        .max_line = SMTP_MAX_LINE,
        .max_message = srv->cfg->smtp.max_message_size,
        .max_rcpts = srv->cfg->smtp.max_recipients,
        .max_errors = SMTP_MAX_ERRORS,
        .offer_starttls = true,
    };
    if (!sc || smtp_session_new(&scfg, &sc->session) < 0) {
        free(sc);
        conn_printf(conn, "421 4.3.0 Out of memory\r\n");
        conn_close_after_flush(conn);
        return;
    }
    sc->srv = srv;
    sc->conn = conn;
    conn_set_ctx(conn, sc);
    flush(sc); /* the greeting */
}

static void
on_data(struct conn *conn, struct evbuffer *in)
{
    struct smtp_conn *sc = conn_ctx(conn);
    if (sc)
        pump(sc, in);
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct smtp_conn *sc = conn_ctx(conn);
    if (!sc)
        return;
    if (reason == CONN_CLOSE_IDLE)
        conn_printf(conn, "421 4.4.2 Idle for too long, closing\r\n");
    else if (reason == CONN_CLOSE_SHUTDOWN)
        conn_printf(conn, "421 4.3.2 Server shutting down, closing\r\n");
    /* Nobody is left to acknowledge the message: nothing was acknowledged, so nothing is
     * owed. */
    smtp__relay_abandon(&sc->relay);
    sc->conn = NULL;
    sc_maybe_free(sc);
}

/* No on_drained: conn calls on_data again once the client has read enough. */
static const struct conn_ops smtp_conn_ops = {on_open, on_data, NULL, on_close};

static int
tls_setup(struct smtp_server *srv, char **error_r)
{
    struct tls_files files;
    tls_files_from_config(srv->cfg, &files);
    int ret = tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE,
                                 &srv->tls, error_r);
    tls_files_clear(&files);
    return ret;
}

int
smtp_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                struct smtp_server **srv_r, char **error_r)
{
    *error_r = NULL;
    struct smtp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->base = base;
    srv->cfg = cfg;
    int ret = tls_setup(srv, error_r);
    if (ret == 0)
        ret = rcpt_lookup_new(base, cfg, &srv->rcpts);
    /* A write in flight per connection at most, and a retention pass or a few. */
    if (ret == 0 && (ret = dumpster_writer_new(base, cfg->datadir, cfg->smtp.max_connections + 16,
                                               &srv->dumpster)) < 0)
        *error_r = strdup("cannot start the dumpster's writer thread");
    if (ret == 0) {
        unsigned per_address = cfg->smtp.max_connections / 10;
        struct conn_listener_options lo = {
            .fd = listen_fd,
            .max_connections = cfg->smtp.max_connections,
            .max_per_address = per_address ? per_address : 1,
            .refusal_line = "421 4.7.0 Too many connections, try again later\r\n",
            .idle_timeout_ms = SMTP_IDLE_TIMEOUT_MS,
        };
        ret = conn_listener_new(base, &lo, &smtp_conn_ops, srv, &srv->listener);
        if (ret < 0)
            *error_r = strdup("cannot watch the listening socket");
    }
    if (ret < 0) {
        smtp_server_free(&srv);
        return ret;
    }
    *srv_r = srv;
    return 0;
}

int
smtp_server_add_socket(struct smtp_server *srv, int fd, uint32_t tag)
{
    return conn_listener_add_socket(srv->listener, fd, tag);
}

void
smtp_server_close_socket(struct smtp_server *srv, uint32_t tag)
{
    conn_listener_close_socket(srv->listener, tag);
}

unsigned
smtp_server_shutdown(struct smtp_server *srv)
{
    return conn_listener_shutdown(srv->listener);
}

void
smtp_server_free(struct smtp_server **srv_p)
{
    struct smtp_server *srv = *srv_p;
    if (!srv)
        return;
    /* Connections first (their relays are abandoned), then the lookups, which fails those
     * in flight so the connections lingering on them go too. */
    conn_listener_free(&srv->listener);
    rcpt_lookup_free(&srv->rcpts);
    /* Writes what is still queued and frees the connections that waited for it. */
    dumpster_writer_free(&srv->dumpster);
    if (srv->tls)
        SSL_CTX_free(srv->tls);
    free(srv);
    *srv_p = NULL;
}

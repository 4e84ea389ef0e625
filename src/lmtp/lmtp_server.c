/*
 * The LMTP server (lmtp_server.h): connections (lib/conn.h) driving the sans-IO session
 * (proto/smtp/smtp_session.h), recipients from the directory (rcpt/rcpt_lookup.h), delivery
 * through the core (lib/core_link.h).
 *
 * A connection's life: the session is fed whatever arrived; MAIL is accepted, RCPT is looked
 * up (at once in a local directory, later from a remote one), message bytes are gathered into
 * one buffer that starts with Return-Path: and Received:, and at the end of the data one APPEND per
 * mailbox database is committed. While those commits are in flight the connection reads
 * nothing more (conn_pause); each reply gives the verdicts of that database's recipients, and
 * when all are in the session answers them in RCPT order and reading resumes.
 *
 * Lifetime: a connection closed by its client while commits are in flight lingers (without
 * its conn) until the last reply, so no callback ever touches freed memory; the deliveries it
 * started complete in the store either way. A reply that resumes the pump holds the
 * connection ("busy") until it returns, since the pump may meet QUIT and close.
 */
#include "lmtp/lmtp_server.h"

#include "directory/directory.h"
#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "proto/smtp/smtp_received.h"
#include "proto/smtp/smtp_session.h"
#include "rcpt/rcpt_lookup.h"
#include "store/mail.h"
#include "store/mail_defaults.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LMTP_MAX_MESSAGE (48u << 20) /* below the log's 64 MiB record limit with room to spare */
#define LMTP_MAX_RCPTS MAIL_MAX_TARGETS
#define LMTP_MAX_LINE 4096u
#define LMTP_MAX_ERRORS 20u
/* While the core is away (starting, restarting after a crash) a delivery waits this long for
 * it before the recipients are answered 451: long enough for a restart, short enough for the
 * client's timeout. */
#define LMTP_CORE_WAIT_MS 5000u
#define LMTP_CORE_POLL_MS 50u

struct lmtp_server {
    struct event_base *base;
    const struct tdm_config *cfg;
    struct conn_listener *listener;
    struct core_link *core;
    struct rcpt_lookup *rcpts; /* who recipients are: the directory, local or remote */
    struct store_readers *dbs; /* mail databases, opened on first use */
};

struct lmtp_conn {
    struct lmtp_server *srv;
    struct conn *conn; /* NULL once the client is gone */
    struct smtp_session *session;
    struct dir_recipient rcpts[LMTP_MAX_RCPTS]; /* accepted, in RCPT order */
    size_t n_rcpts;
    struct smtp_verdict results[LMTP_MAX_RCPTS];
    /* Each accepted recipient's XDELIVERYID (docs/smtp.md, "Transport dumpster"), and the
     * one of the RCPT being decided. */
    bool rcpt_has_id[LMTP_MAX_RCPTS];
    uint8_t rcpt_id[LMTP_MAX_RCPTS][SMTP_DELIVERY_ID_LEN];
    bool pending_has_id;
    uint8_t pending_id[SMTP_DELIVERY_ID_LEN];
    struct smtp_buf message;
    unsigned inflight; /* commits awaiting the core's reply */
    unsigned batches;  /* APPENDs of the current message not answered yet */
    unsigned busy;     /* inside a callback that may resume the pump (which may close) */
    bool delivering;
    bool looking_up;   /* a remote recipient lookup is in flight */
    struct event *core_wait; /* polls for the core while a delivery waits for it */
    uint32_t core_waited_ms;
};

/* One database's share of a message: its APPEND's targets and whose verdicts they carry. */
struct batch {
    struct lmtp_conn *lc;
    size_t n_targets;
    struct mail_target targets[LMTP_MAX_RCPTS];
    const uint8_t *delivery_ids[LMTP_MAX_RCPTS]; /* per target: its first recipient's id */
    bool any_id;
    size_t rcpt_target[LMTP_MAX_RCPTS]; /* for each recipient of this batch: its target */
    size_t rcpt_idx[LMTP_MAX_RCPTS];
    size_t n_rcpts;
};

static const struct smtp_verdict v_try_later = {451, "4.3.0", "Temporary failure, try again later"};
static const struct smtp_verdict v_not_here = {
    451, "4.3.0", "The mailbox database is not available on this server now; try again later"};

static const struct smtp_verdict v_copy_only = {
    451, "4.3.0", "This server holds only a copy of the mailbox database; try again later"};

static void lc_maybe_free(struct lmtp_conn *lc);

/* ---- Output ---- */

static void
flush(struct lmtp_conn *lc)
{
    size_t len;
    const uint8_t *out = smtp_session_output(lc->session, &len);
    if (len == 0)
        return;
    if (lc->conn)
        conn_write(lc->conn, out, len);
    smtp_session_output_done(lc->session, len);
}

/* ---- Recipients ---- */

/*
 * Gives the session a verdict; one it has no memory to record is answered 451 4.3.0 instead.
 * *given_r: whether the command was answered with v. Returns 0, or -ENOMEM when the session
 * failed (not even the 451 fits): its next feed says so too, and the connection must close.
 */
static int
answer(struct lmtp_conn *lc, const struct smtp_verdict *v, bool *given_r)
{
    bool deferred;
    int ret = smtp_session_answer(lc->session, v, &deferred);
    if (ret < 0 || deferred)
        log_error("lmtp: %s: out of memory recording a verdict%s", conn_peer(lc->conn),
                  ret < 0 ? "; closing" : ": answered 451 4.3.0");
    *given_r = ret == 0 && !deferred;
    return ret == -ENOMEM ? ret : 0;
}

/* The session failed (out of memory): says so if it can, and closes. */
static void
session_failed(struct lmtp_conn *lc, int why)
{
    log_error("lmtp: %s: session failed: %s", conn_peer(lc->conn), tdm_strerror(why));
    conn_printf(lc->conn, "421 4.3.0 Out of memory, closing\r\n");
    conn_close_after_flush(lc->conn);
}

/* Gives the session the verdict for a looked-up recipient (status: the lookup's result).
 * Returns answer()'s. */
static int
rcpt_verdict(struct lmtp_conn *lc, int status, const struct dir_recipient *r)
{
    struct smtp_verdict v = {250, "2.1.5", "OK"};
    if (status == -ENOTCONN) {
        v = (struct smtp_verdict){451, "4.3.0", rcpt_lookup_problem(lc->srv->rcpts)};
    } else if (status == -EPERM) {
        v = (struct smtp_verdict){451, "4.3.0",
                                  "The directory refused this server's credentials, try again "
                                  "later"};
    } else if (status < 0) {
        if (status != -EAGAIN && status != -EHOSTUNREACH)
            log_error("lmtp: directory lookup failed: %s", tdm_strerror(status));
        v = (struct smtp_verdict){451, "4.3.0", "Directory lookup failed, try again later"};
    } else if (r->status == DIR_RCPT_UNKNOWN) {
        v = (struct smtp_verdict){550, "5.1.1", "No such user here"};
    } else if (r->status == DIR_RCPT_NO_MAILBOX) {
        v = (struct smtp_verdict){550, "5.1.1", "The user has no mailbox"};
    } else if (r->status == DIR_RCPT_DISABLED) {
        v = (struct smtp_verdict){550, "5.2.1", "Mailbox disabled"};
    }
    if (v.code == 250 && store_readers_is_copy(lc->srv->dbs, r->database)) {
        /* A mailbox server's LMTP delivers, never relays: mail for a database held here only
         * as a copy goes back to the transport role, which retries towards the active. */
        log_warn("lmtp: %s: recipient %s refused with 451: its database %s is only a copy on "
                 "this server, the active is elsewhere",
                 conn_peer(lc->conn), r->user, r->database);
        v = v_copy_only;
    }
    if (v.code == 250 && store_readers_is_dismounted(lc->srv->dbs, r->database)) {
        /* Refused at RCPT, not at the end of the data: the core would refuse the commit
         * anyway (it is fenced), and the sender should not send the message for nothing. */
        log_warn("lmtp: %s: recipient %s refused with 451: its database %s is dismounted",
                 conn_peer(lc->conn), r->user, r->database);
        v = (struct smtp_verdict){451, "4.3.0", "Mailbox database dismounted, try again later"};
    }
    if (v.code == 250) {
        if (lc->n_rcpts >= LMTP_MAX_RCPTS)
            v = (struct smtp_verdict){452, "4.5.3", "Too many recipients"};
        else {
            lc->rcpt_has_id[lc->n_rcpts] = lc->pending_has_id;
            memcpy(lc->rcpt_id[lc->n_rcpts], lc->pending_id, SMTP_DELIVERY_ID_LEN);
            lc->rcpts[lc->n_rcpts++] = *r;
        }
    }
    bool given;
    int ret = answer(lc, &v, &given);
    if (!given && v.code == 250)
        lc->n_rcpts--;
    return ret;
}

static void
remote_rcpt_cb(void *ctx, int status, const struct dir_recipient *r, bool from_cache)
{
    (void)from_cache;
    struct lmtp_conn *lc = ctx;
    lc->inflight--;
    lc->looking_up = false;
    if (lc->conn) {
        lc->busy++;
        int ret = rcpt_verdict(lc, status, r);
        flush(lc);
        if (ret < 0) {
            session_failed(lc, ret);
        } else {
            conn_resume(lc->conn); /* what was pipelined behind the RCPT */
        }
        lc->busy--;
    }
    lc_maybe_free(lc);
}

/* Decides a RCPT now (local directory) or starts a remote lookup (lc->looking_up). */
static void
on_rcpt(struct lmtp_conn *lc, const struct smtp_path *path, const struct smtp_cmd *cmd)
{
    lc->pending_has_id = cmd && cmd->has_delivery_id;
    if (lc->pending_has_id)
        memcpy(lc->pending_id, cmd->delivery_id, SMTP_DELIVERY_ID_LEN);
    struct dir_recipient r;
    int ret = rcpt_lookup_find(lc->srv->rcpts, path->local, path->domain, &r, remote_rcpt_cb, lc);
    if (ret != RCPT_LOOKUP_PENDING) {
        rcpt_verdict(lc, ret, &r); /* a failed session closes at its next feed */
        return;
    }
    lc->inflight++;
    lc->looking_up = true;
}

/* ---- The message ---- */

/* Return-Path: and Received: go first; the sender's address is re-quoted when needed. */
static int
start_message(struct lmtp_conn *lc)
{
    smtp_buf_free(&lc->message);
    const struct smtp_path *from = smtp_session_sender(lc->session);
    int ret = smtp_buf_puts(&lc->message, "Return-Path: <");
    if (ret == 0 && from && !from->null)
        ret = smtp_mailbox_write(&lc->message, from);
    if (ret == 0)
        ret = smtp_buf_puts(&lc->message, ">\r\n");
    const struct smtp_path *only = lc->n_rcpts == 1 ? smtp_session_rcpt(lc->session, 0) : NULL;
    struct smtp_received rcv = {
        .helo = smtp_session_helo(lc->session),
        .client_addr = lc->conn ? conn_peer_address(lc->conn) : "0.0.0.0",
        .by = lc->srv->cfg->server,
        .with = smtp_session_with(lc->session),
        .for_rcpt = only,
        .time = time(NULL),
    };
    if (ret == 0 && strcmp(rcv.client_addr, "local") != 0)
        ret = smtp_received_build(&rcv, &lc->message);
    return ret;
}

/* ---- Delivery ---- */

static bool
mailbox_exists(struct lmtp_server *srv, const char *database, const char *user)
{
    struct store_reader *r = store_readers_get(srv->dbs, database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return true; /* cannot tell: let the APPEND's answer speak */
    struct mail_mailbox_info info;
    int ret = mail_mailbox_get(store_reader_mail_dbis(r), txn, user, &info);
    mdb_txn_abort(txn);
    return ret != TDM_ENOTFOUND;
}

static void
create_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct lmtp_conn *lc = ctx;
    int st = status < 0 ? status : reply->u.commit_reply.status;
    if (st < 0 && st != TDM_EEXIST)
        log_error("lmtp: creating a mailbox failed: %s", tdm_strerror(st));
    lc->inflight--;
    lc_maybe_free(lc);
}

/* Commits op; done(ctx=lc or batch) is called exactly once unless this fails. */
static int
commit(struct lmtp_conn *lc, const char *database, const struct mail_op *op,
       core_link_reply_cb *done, void *ctx)
{
    uint8_t *payload;
    size_t len;
    const char *why = NULL;
    int ret = mail_op_encode(op, &payload, &len, &why);
    if (ret < 0) {
        log_error("lmtp: cannot encode a %u record: %s", op->type, why ? why : "out of memory");
        return ret;
    }
    ret = core_link_commit(lc->srv->core, database, op->type, payload, len, done, ctx);
    free(payload);
    if (ret == 0)
        lc->inflight++;
    return ret;
}

/* A new mailbox (mail_defaults.h). The core applies one connection's commits in order, so
 * the APPEND sent next finds it complete. */
static void
create_mailbox(struct lmtp_conn *lc, const char *database, const char *user)
{
    struct mail_op ops[MAIL_DEFAULT_OPS];
    mail_default_ops(user, (uint32_t)time(NULL), ops);
    for (size_t i = 0; i < MAIL_DEFAULT_OPS; i++)
        if (commit(lc, database, &ops[i], create_done, lc) < 0)
            return;
}

static struct smtp_verdict
verdict_of(int status)
{
    switch (status) {
    case 0:
        return (struct smtp_verdict){250, "2.0.0", "Delivered"};
    case TDM_EDUPLICATE: /* delivered before, under the same delivery id */
        return (struct smtp_verdict){250, "2.0.0", "Delivered (duplicate dropped)"};
    case TDM_EQUOTA:
        return (struct smtp_verdict){552, "5.2.2", "Mailbox is full"};
    case TDM_ENOTFOUND:
        return v_not_here;
    default:
        return v_try_later;
    }
}

static void deliveries_done(struct lmtp_conn *lc);

static void
append_done(void *ctx, int status, const struct ipc_msg *reply)
{
    struct batch *b = ctx;
    struct lmtp_conn *lc = b->lc;
    const struct ipc_commit_reply *cr = status == 0 ? &reply->u.commit_reply : NULL;
    for (size_t i = 0; i < b->n_rcpts; i++) {
        int st = status;
        if (cr) {
            size_t t = b->rcpt_target[i];
            /* A refusal of the whole record (not found, no space) has no per-target status. */
            st = t < cr->n_targets ? cr->targets[t].status : cr->status;
            if (cr->status != 0 && cr->n_targets == 0)
                st = cr->status;
        }
        if (st == TDM_EDUPLICATE && cr)
            log_info("lmtp: delivery to %s: duplicate dropped (delivered before as UID %u)",
                     b->targets[b->rcpt_target[i]].mailbox, cr->targets[b->rcpt_target[i]].uid);
        else if (st < 0 && st != TDM_EQUOTA)
            log_info("lmtp: delivery to %s failed: %s", b->targets[b->rcpt_target[i]].mailbox,
                     tdm_strerror(st));
        lc->results[b->rcpt_idx[i]] = verdict_of(st);
    }
    free(b);
    lc->inflight--;
    /* Answering resumes the pump, which may run into QUIT and close the connection: keep lc
     * until this callback is done with it. */
    lc->busy++;
    if (--lc->batches == 0)
        deliveries_done(lc);
    lc->busy--;
    lc_maybe_free(lc);
}

static void
deliver_now(struct lmtp_conn *lc)
{
    for (size_t i = 0; i < lc->n_rcpts; i++)
        lc->results[i] = v_try_later;
    uint8_t guid[MAIL_GUID_LEN];
    randombytes_buf(guid, sizeof(guid));
    bool done[LMTP_MAX_RCPTS] = {false};
    for (size_t i = 0; i < lc->n_rcpts; i++) {
        if (done[i])
            continue;
        const char *database = lc->rcpts[i].database;
        struct batch *b = calloc(1, sizeof(*b));
        if (!b)
            break; /* the rest keep "try again later" */
        b->lc = lc;
        /* Every recipient in this database; one target per user, however many of its
         * addresses were named. */
        for (size_t j = i; j < lc->n_rcpts; j++) {
            if (done[j] || strcmp(lc->rcpts[j].database, database) != 0)
                continue;
            done[j] = true;
            size_t t = 0;
            while (t < b->n_targets && strcmp(b->targets[t].mailbox, lc->rcpts[j].user) != 0)
                t++;
            if (t == b->n_targets) {
                b->targets[t] = (struct mail_target){lc->rcpts[j].user, "INBOX"};
                /* Two addresses of one user are one delivery: the first one's id names it. */
                b->delivery_ids[t] = lc->rcpt_has_id[j] ? lc->rcpt_id[j] : NULL;
                b->any_id |= lc->rcpt_has_id[j];
                b->n_targets++;
                if (!mailbox_exists(lc->srv, database, lc->rcpts[j].user))
                    create_mailbox(lc, database, lc->rcpts[j].user);
            }
            b->rcpt_target[b->n_rcpts] = t;
            b->rcpt_idx[b->n_rcpts++] = j;
        }
        struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = b->targets,
                             .n_targets = b->n_targets,
                             .delivery_ids = b->any_id ? b->delivery_ids : NULL,
                             .internal_date = time(NULL),
                             .body = lc->message.data ? (const void *)lc->message.data : "",
                             .body_len = lc->message.len};
        memcpy(op.guid, guid, sizeof(guid));
        if (commit(lc, database, &op, append_done, b) < 0) {
            for (size_t k = 0; k < b->n_rcpts; k++)
                lc->results[b->rcpt_idx[k]] = v_try_later;
            free(b);
            continue;
        }
        lc->batches++;
    }
    smtp_buf_free(&lc->message);
    if (lc->batches == 0)
        deliveries_done(lc);
}

static void
core_wait_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lmtp_conn *lc = arg;
    lc->core_waited_ms += LMTP_CORE_POLL_MS;
    if (!core_link_ready(lc->srv->core) && lc->core_waited_ms < LMTP_CORE_WAIT_MS) {
        struct timeval tv = {0, LMTP_CORE_POLL_MS * 1000};
        evtimer_add(lc->core_wait, &tv);
        return;
    }
    lc->inflight--;
    lc->busy++;
    deliver_now(lc);
    lc->busy--;
    lc_maybe_free(lc);
}

/* Delivers the message now, or as soon as the core is reachable again. */
static void
deliver(struct lmtp_conn *lc)
{
    lc->delivering = true;
    lc->core_waited_ms = 0;
    if (!core_link_ready(lc->srv->core)) {
        if (!lc->core_wait)
            lc->core_wait = evtimer_new(lc->srv->base, core_wait_cb, lc);
        if (lc->core_wait) {
            struct timeval tv = {0, LMTP_CORE_POLL_MS * 1000};
            evtimer_add(lc->core_wait, &tv);
            lc->inflight++; /* the wait holds the connection like a commit in flight */
            return;
        }
    }
    deliver_now(lc);
}

static void pump(struct lmtp_conn *lc, struct evbuffer *in);

static void
deliveries_done(struct lmtp_conn *lc)
{
    lc->delivering = false;
    for (size_t i = 0; i < lc->n_rcpts; i++)
        if (smtp_session_delivered(lc->session, i, &lc->results[i]) < 0)
            log_error("lmtp: the session refused a delivery verdict (a bug)");
    lc->n_rcpts = 0;
    flush(lc);
    if (lc->conn)
        conn_resume(lc->conn); /* hands over whatever was pipelined meanwhile */
}

/* ---- The session pump ---- */

static void
pump(struct lmtp_conn *lc, struct evbuffer *in)
{
    while (lc->conn && !lc->delivering && !lc->looking_up && !conn_output_full(lc->conn)) {
        size_t len = evbuffer_get_length(in);
        const uint8_t *data = len ? evbuffer_pullup(in, -1) : (const uint8_t *)"";
        struct smtp_session_out out;
        int ev = smtp_session_feed(lc->session, data, len, &out);
        if (ev < 0) {
            session_failed(lc, ev);
            return;
        }
        switch (ev) {
        case SMTP_EV_MAIL: {
            static const struct smtp_verdict ok = {250, "2.1.0", "OK"};
            bool given;
            answer(lc, &ok, &given); /* a failed session closes at its next feed */
            lc->n_rcpts = 0;
            break;
        }
        case SMTP_EV_RCPT:
            on_rcpt(lc, out.path, out.rcpt);
            if (lc->looking_up) {
                /* The verdict comes later: take nothing more until it has. */
                evbuffer_drain(in, out.used);
                flush(lc);
                conn_pause(lc->conn);
                return;
            }
            break;
        case SMTP_EV_DATA_START:
            if (start_message(lc) < 0)
                log_error("lmtp: out of memory starting a message");
            break;
        case SMTP_EV_DATA:
            if (smtp_buf_append(&lc->message, out.data, out.data_len) < 0) {
                log_error("lmtp: out of memory receiving a message");
                conn_close_after_flush(lc->conn);
                return;
            }
            break;
        case SMTP_EV_DATA_END:
            evbuffer_drain(in, out.used);
            deliver(lc);
            flush(lc);
            if (lc->delivering && lc->conn)
                conn_pause(lc->conn);
            continue;
        case SMTP_EV_DATA_ABORTED:
        case SMTP_EV_RESET:
            smtp_buf_free(&lc->message);
            lc->n_rcpts = 0;
            break;
        default:
            break;
        }
        evbuffer_drain(in, out.used);
        flush(lc);
        if (ev == SMTP_EV_CLOSE) {
            conn_close_after_flush(lc->conn);
            return;
        }
        if (ev == SMTP_EV_NEED_MORE || ev == SMTP_EV_WAIT)
            return;
    }
}

/* ---- Connections ---- */

static void
lc_maybe_free(struct lmtp_conn *lc)
{
    if (lc->conn || lc->inflight > 0 || lc->busy > 0)
        return;
    smtp_session_free(&lc->session);
    smtp_buf_free(&lc->message);
    if (lc->core_wait)
        event_free(lc->core_wait);
    free(lc);
}

static void
on_open(struct conn *conn, void *ctx)
{
    struct lmtp_server *srv = ctx;
    struct lmtp_conn *lc = calloc(1, sizeof(*lc));
    struct smtp_session_config sc = {
        .proto = SMTP_PROTO_LMTP,
        .hostname = srv->cfg->server,
        .max_line = LMTP_MAX_LINE,
        .max_message = LMTP_MAX_MESSAGE,
        .max_rcpts = LMTP_MAX_RCPTS,
        .max_errors = LMTP_MAX_ERRORS,
    };
    if (!lc || smtp_session_new(&sc, &lc->session) < 0) {
        free(lc);
        conn_printf(conn, "421 4.3.0 Out of memory\r\n");
        conn_close_after_flush(conn);
        return;
    }
    lc->srv = srv;
    lc->conn = conn;
    conn_set_ctx(conn, lc);
    flush(lc); /* the greeting */
}

static void
on_data(struct conn *conn, struct evbuffer *in)
{
    struct lmtp_conn *lc = conn_ctx(conn);
    if (lc)
        pump(lc, in);
}

static void
on_drained(struct conn *conn)
{
    (void)conn; /* the pump runs again from on_data, which conn calls after a drain */
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct lmtp_conn *lc = conn_ctx(conn);
    if (!lc)
        return;
    if (reason == CONN_CLOSE_IDLE)
        conn_printf(conn, "421 4.4.2 Idle for too long, closing\r\n");
    else if (reason == CONN_CLOSE_SHUTDOWN)
        conn_printf(conn, "421 4.3.2 Server shutting down, closing\r\n");
    lc->conn = NULL;
    if (lc->core_wait && evtimer_pending(lc->core_wait, NULL)) {
        /* Waiting for the core with nobody left to answer: nothing was acknowledged, so
         * nothing is delivered. */
        event_del(lc->core_wait);
        lc->inflight--;
        lc->delivering = false;
    }
    lc_maybe_free(lc);
}

static const struct conn_ops lmtp_conn_ops = {on_open, on_data, on_drained, on_close};

/* DB_DISMOUNTED (docs/formats/ipc.md): the listed databases' readers close, and their
 * recipients are refused at RCPT until a later list leaves them out. */
static void
dismounted_cb(void *ctx, const struct ipc_msg *msg)
{
    struct lmtp_server *srv = ctx;
    const struct ipc_db_dismounted *d = &msg->u.db_dismounted;
    static char names[TDM_IPC_MAX_DATABASES][TDM_IPC_NAME_MAX + 1]; /* bounded by ipc.h */
    const char *list[TDM_IPC_MAX_DATABASES];
    for (uint32_t i = 0; i < d->n_databases; i++) {
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)d->databases[i].len,
                 d->databases[i].ptr);
        list[i] = names[i];
    }
    if (store_readers_set_dismounted(srv->dbs, list, d->n_databases) < 0)
        log_fatal("out of memory");
}

int
lmtp_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                struct lmtp_server **srv_r, char **error_r)
{
    *error_r = NULL;
    if (sodium_init() < 0) {
        *error_r = strdup("libsodium failed to initialise");
        return -ENOMEM;
    }
    struct lmtp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->base = base;
    srv->cfg = cfg;
    if (store_readers_new(cfg->datadir, &srv->dbs) < 0) {
        free(srv);
        return -ENOMEM;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/run/core.sock", cfg->datadir);
    int ret = core_link_new(base, path, TDM_IPC_WORKER_LMTP, &srv->core);
    if (ret < 0) {
        if (asprintf(error_r, "cannot set up the link to the core at %s: %s", path,
                     tdm_strerror(ret)) < 0)
            *error_r = NULL;
        store_readers_free(&srv->dbs);
        free(srv);
        return ret;
    }
    core_link_set_dismounted_cb(srv->core, dismounted_cb, srv);
    if (rcpt_lookup_new(base, cfg, &srv->rcpts) < 0) {
        core_link_free(&srv->core);
        store_readers_free(&srv->dbs);
        free(srv);
        return -ENOMEM;
    }
    struct conn_listener_options lo = {
        .fd = listen_fd,
        .refusal_line = "421 4.7.0 Too many connections, try again later\r\n",
        .idle_timeout_ms = 10u * 60u * 1000u,
    };
    ret = conn_listener_new(base, &lo, &lmtp_conn_ops, srv, &srv->listener);
    if (ret < 0) {
        *error_r = strdup("cannot watch the listening socket");
        core_link_free(&srv->core);
        rcpt_lookup_free(&srv->rcpts);
        store_readers_free(&srv->dbs);
        free(srv);
        return ret;
    }
    *srv_r = srv;
    return 0;
}

int
lmtp_server_add_socket(struct lmtp_server *srv, int fd, uint32_t tag)
{
    return conn_listener_add_socket(srv->listener, fd, tag);
}

void
lmtp_server_close_socket(struct lmtp_server *srv, uint32_t tag)
{
    conn_listener_close_socket(srv->listener, tag);
}

unsigned
lmtp_server_shutdown(struct lmtp_server *srv)
{
    return conn_listener_shutdown(srv->listener);
}

void
lmtp_server_free(struct lmtp_server **srv_p)
{
    struct lmtp_server *srv = *srv_p;
    if (!srv)
        return;
    /* Connections first (their on_close), then the link: commits still in flight are failed
     * with TDM_ECLOSED, which frees the lingering connections. */
    conn_listener_free(&srv->listener);
    core_link_free(&srv->core);
    rcpt_lookup_free(&srv->rcpts); /* fails lookups in flight: lingering connections go */
    store_readers_free(&srv->dbs);
    free(srv);
    *srv_p = NULL;
}

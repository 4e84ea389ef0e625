/*
 * Answering heartbeats on [listen cluster] (docs/formats/cluster.md): each connection's first
 * message is HELLO, whose server/key the core checks (the verify callback, as replication's);
 * on a node the sender must also be one of its [member]s with the same cluster name and, once
 * its key is checked, have the same timers as this node (docs/cluster.md, "Timing"). Then
 * every HEARTBEAT is answered at once with HEARTBEAT_REPLY, echoing seq and sent_ms, with this
 * server's summary; the summary it carried is the sender's latest. A malformed or unexpected
 * message is answered with ERROR and that connection closed; the listener goes on.
 */
#include "cluster/cluster_hb_int.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hb_in {
    struct cluster_hb *hb;
    struct conn *conn; /* NULL once closed */
    bool verifying;    /* the verify callback has not answered yet */
    bool in_verify;    /* inside the verify call (which may answer, and close, from within) */
    bool ready;        /* HELLO accepted */
    uint32_t hello_id;
    char member[CLUSTER_WIRE_NAME_MAX + 1];
    uint64_t interval_ms, lease_ttl_ms; /* the HELLO's timers */
    uint16_t misses;
    struct hb_in *next, **pprev;
};

static void
in_maybe_free(struct hb_in *in)
{
    if (in->conn || in->verifying || in->in_verify)
        return;
    if (in->pprev) {
        *in->pprev = in->next;
        if (in->next)
            in->next->pprev = in->pprev;
    }
    free(in);
}

static void
in_send(struct hb_in *in, const struct cluster_msg *m)
{
    static uint8_t frame[CLUSTER_WIRE_MAX_FRAME];
    size_t len;
    const char *error = NULL;
    if (cluster_msg_encode(m, frame, sizeof(frame), &len, &error) != 0) {
        log_error("cluster: cannot encode %s: %s", cluster_type_name(m->type), error);
        return;
    }
    conn_write(in->conn, frame, len);
}

/* ERROR with code and text, then close once it is sent. */
__attribute__((format(printf, 3, 4))) static void
in_fail(struct hb_in *in, uint16_t code, const char *fmt, ...)
{
    struct cluster_msg m = {.type = CLUSTER_ERROR};
    m.u.error.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.u.error.text, sizeof(m.u.error.text), fmt, ap);
    va_end(ap);
    log_info("cluster: heartbeats from %s (%s): %s", in->member[0] ? in->member : "?",
             conn_peer(in->conn), m.u.error.text);
    in_send(in, &m);
    conn_close_after_flush(in->conn);
}

static void
in_refuse(struct hb_in *in, uint16_t code, const char *reason)
{
    struct cluster_msg m = {.type = CLUSTER_HELLO_REPLY, .request_id = in->hello_id};
    m.u.hello_reply.code = code;
    snprintf(m.u.hello_reply.member, sizeof(m.u.hello_reply.member), "%s", in->hb->cfg->server);
    snprintf(m.u.hello_reply.reason, sizeof(m.u.hello_reply.reason), "%s", reason);
    event_emit(code == CLUSTER_CODE_TIMERS ? TDM_EV_CLUSTER_TIMERS_DIFFER
                                           : TDM_EV_CLUSTER_PEER_REFUSED,
               in->member, "heartbeats from %s (%s) refused (%s): %s", in->member,
               conn_peer(in->conn), cluster_code_name(code), reason);
    in_send(in, &m);
    conn_close_after_flush(in->conn);
}

static void
verify_done(void *ctx, int status, const char *error)
{
    struct hb_in *in = ctx;
    in->verifying = false;
    if (!in->conn) {
        in_maybe_free(in);
        return;
    }
    if (status != 0) {
        char reason[CLUSTER_WIRE_TEXT_MAX + 1];
        snprintf(reason, sizeof(reason), "server %s %s: %s", in->member,
                 status == -EACCES ? "may not join the cluster" : "could not be checked now",
                 error ? error : tdm_strerror(status));
        in_refuse(in, status == -EACCES ? CLUSTER_CODE_AUTH : CLUSTER_CODE_INTERNAL, reason);
        return;
    }
    /* A node refuses a node whose timers are not its own: the fence (s + F) and the
     * takeover's wait (F + I/2) bound each other only with one I and one T on both sides
     * (docs/cluster.md, "Timing"). Refused, it is never heard nor a confirmation here. A
     * witness has no timers of its own: it answers every node. Checked after the key, so
     * only a member learns ours. */
    struct cluster_hb *hb = in->hb;
    struct hb_member *mem = cluster_hb__member(hb, in->member);
    if (hb->cfg->cluster.name[0] && mem) {
        if (in->interval_ms != hb->interval_ms || in->misses != hb->misses ||
            in->lease_ttl_ms != hb->cfg->cluster.lease_ttl_ms) {
            char reason[CLUSTER_WIRE_TEXT_MAX + 1];
            snprintf(reason, sizeof(reason),
                     "timers differ: %s has heartbeat_interval %llu ms, heartbeat_misses %u, "
                     "lease_ttl %llu ms; %s has %llu ms, %u, %llu ms",
                     hb->cfg->server, (unsigned long long)hb->interval_ms, (unsigned)hb->misses,
                     (unsigned long long)hb->cfg->cluster.lease_ttl_ms, in->member,
                     (unsigned long long)in->interval_ms, (unsigned)in->misses,
                     (unsigned long long)in->lease_ttl_ms);
            cluster_hb__timers_differ(hb, mem, reason);
            in_refuse(in, CLUSTER_CODE_TIMERS, reason);
            return;
        }
        cluster_hb__timers_differ(hb, mem, NULL);
    }
    in->ready = true;
    struct cluster_msg m = {.type = CLUSTER_HELLO_REPLY, .request_id = in->hello_id};
    m.u.hello_reply.version = CLUSTER_WIRE_VERSION;
    m.u.hello_reply.code = CLUSTER_CODE_OK;
    snprintf(m.u.hello_reply.member, sizeof(m.u.hello_reply.member), "%s", in->hb->cfg->server);
    in_send(in, &m);
    conn_resume(in->conn);
}

/* False when the connection is closing (in may be freed) or waits for verify. */
static bool
handle_hello(struct hb_in *in, const struct cluster_msg *msg)
{
    const struct cluster_hello *h = &msg->u.hello;
    struct cluster_hb *hb = in->hb;
    in->hello_id = msg->request_id;
    snprintf(in->member, sizeof(in->member), "%s", h->member);
    in->interval_ms = h->heartbeat_interval_ms;
    in->misses = h->heartbeat_misses;
    in->lease_ttl_ms = h->lease_ttl_ms;
    char reason[CLUSTER_WIRE_TEXT_MAX + 1];
    if (h->version_min > CLUSTER_WIRE_VERSION || h->version_max < CLUSTER_WIRE_VERSION) {
        snprintf(reason, sizeof(reason), "no common protocol version (this server speaks %u)",
                 CLUSTER_WIRE_VERSION);
        in_refuse(in, CLUSTER_CODE_VERSION, reason);
        return false;
    }
    /* A node answers only its own cluster's members; a witness answers any node that
     * authenticates as a server (it serves whichever cluster names it as witness). */
    if (hb->cfg->cluster.name[0]) {
        if (strcmp(h->cluster, hb->cfg->cluster.name) != 0) {
            snprintf(reason, sizeof(reason), "this server is in cluster %s, not %s",
                     hb->cfg->cluster.name, h->cluster);
            in_refuse(in, CLUSTER_CODE_CLUSTER, reason);
            return false;
        }
        if (!cluster_hb__member(hb, h->member)) {
            snprintf(reason, sizeof(reason), "%s is not a [member] of cluster %s here", h->member,
                     hb->cfg->cluster.name);
            in_refuse(in, CLUSTER_CODE_CLUSTER, reason);
            return false;
        }
    }
    in->verifying = true;
    conn_pause(in->conn);
    /* verify may answer from within the call, and a refusal closes the connection: in must
     * outlive the call, and is freed here if it closed. */
    in->in_verify = true;
    hb->verify(hb->verify_ctx, h->member, h->key, strlen(h->key), verify_done, in);
    in->in_verify = false;
    if (!in->conn) {
        in_maybe_free(in);
        return false;
    }
    return in->ready;
}

/* One message; false when the connection is closing. */
static bool
handle_msg(struct hb_in *in, const struct cluster_msg *m)
{
    if (!in->ready) {
        if (m->type != CLUSTER_HELLO) {
            in_fail(in, CLUSTER_CODE_PROTOCOL, "%s before HELLO", cluster_type_name(m->type));
            return false;
        }
        return handle_hello(in, m); /* false while verifying: the connection is paused */
    }
    switch (m->type) {
    case CLUSTER_HEARTBEAT: {
        static struct cluster_msg r;
        memset(&r, 0, sizeof(r));
        r.type = CLUSTER_HEARTBEAT_REPLY;
        r.u.heartbeat_reply.seq = m->u.heartbeat.seq;
        r.u.heartbeat_reply.sent_ms = m->u.heartbeat.sent_ms;
        r.u.heartbeat_reply.summary = in->hb->summary;
        in_send(in, &r);
        struct hb_member *mem = cluster_hb__member(in->hb, in->member);
        if (mem) {
            /* It is alive and reaching us: the takeover rule counts this as hearing it, or a
             * passive whose own link to the active is down would take over from an active
             * that counts this passive's replies as its confirmation. */
            mem->heard_in_ms = cluster_hb_now_ms();
            cluster_hb__got_summary(in->hb, mem, &m->u.heartbeat.summary);
        }
        return in->conn != NULL;
    }
    case CLUSTER_ERROR:
        log_info("cluster: %s ended its heartbeats: %s %s", in->member,
                 cluster_code_name(m->u.error.code), m->u.error.text);
        conn_close_after_flush(in->conn);
        return false;
    default:
        in_fail(in, CLUSTER_CODE_PROTOCOL, "unexpected %s", cluster_type_name(m->type));
        return false;
    }
}

bool
cluster_hb__listen_has_session(const struct cluster_hb *hb, const char *member)
{
    for (const struct hb_in *in = hb->ins; in; in = in->next)
        if (in->conn && in->ready && strcmp(in->member, member) == 0)
            return true;
    return false;
}

static void
on_open(struct conn *conn, void *listener_ctx)
{
    struct cluster_hb *hb = listener_ctx;
    struct hb_in *in = calloc(1, sizeof(*in));
    if (!in) {
        /* No session: on_data and on_close see no context and do nothing; the sender
         * reconnects. */
        event_emit(TDM_EV_CLUSTER_SESSION_DROPPED, conn_peer(conn),
                   "heartbeat session from %s dropped: out of memory accepting it",
                   conn_peer(conn));
        conn_close_after_flush(conn);
        return;
    }
    in->hb = hb;
    in->conn = conn;
    in->next = hb->ins;
    if (hb->ins)
        hb->ins->pprev = &in->next;
    in->pprev = &hb->ins;
    hb->ins = in;
    conn_set_ctx(conn, in);
}

static void
on_data(struct conn *conn, struct evbuffer *input)
{
    struct hb_in *in = conn_ctx(conn);
    while (in && in->conn && !in->verifying) {
        uint8_t head[4];
        if (evbuffer_copyout(input, head, sizeof(head)) < (ev_ssize_t)sizeof(head))
            return;
        size_t flen;
        const char *error = NULL;
        if (cluster_frame_length(head, sizeof(head), &flen, &error) != 0) {
            in_fail(in, CLUSTER_CODE_PROTOCOL, "%s", error);
            return;
        }
        if (evbuffer_get_length(input) < flen)
            return;
        static uint8_t frame[CLUSTER_WIRE_MAX_FRAME];
        static struct cluster_msg m;
        /* Out of the buffer before handling: a resume may hand the rest to a nested call. */
        evbuffer_remove(input, frame, flen);
        if (cluster_msg_decode(frame, flen, &m, NULL, &error) != 0) {
            in_fail(in, CLUSTER_CODE_PROTOCOL, "%s", error);
            return;
        }
        if (!handle_msg(in, &m))
            return;
    }
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct hb_in *in = conn_ctx(conn);
    if (!in)
        return; /* on_open ran out of memory */
    if (reason == CONN_CLOSE_SHUTDOWN && in->ready) {
        struct cluster_msg m = {.type = CLUSTER_ERROR};
        m.u.error.code = CLUSTER_CODE_SHUTDOWN;
        snprintf(m.u.error.text, sizeof(m.u.error.text), "%s is stopping", in->hb->cfg->server);
        in_send(in, &m);
    }
    in->conn = NULL;
    in_maybe_free(in);
}

static const struct conn_ops hb_conn_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_close = on_close,
};

int
cluster_hb__listen_start(struct cluster_hb *hb, int fd)
{
    if (!hb->verify)
        return TDM_EINVAL;
    struct conn_listener_options lo = {
        .fd = fd,
        .implicit_tls = hb->server_tls,
        .max_connections = 256,
        .max_per_address = 32,
        /* A sender heartbeats every interval; one silent for the whole miss allowance is
         * gone (a witness uses 1 s x 5). Never below 10 s: the HELLO's key check (argon2id,
         * or the directory's answer) may take that long, with the connection paused. */
        .idle_timeout_ms =
            (uint32_t)(hb->interval_ms * hb->misses > 10000 ? hb->interval_ms * hb->misses : 10000),
        .max_output = 256u * 1024u,
    };
    return conn_listener_new(hb->base, &lo, &hb_conn_ops, hb, &hb->listener);
}

void
cluster_hb__listen_free(struct cluster_hb *hb)
{
    /* Connections still verifying are freed when their check answers (verify_done). */
    conn_listener_free(&hb->listener);
    /* verify callbacks must not outlive the module: the core's checks answer on its loop
     * before free is called (the glue stops its verifier first), so none is pending here. */
    while (hb->ins) {
        struct hb_in *in = hb->ins;
        hb->ins = in->next;
        if (hb->ins)
            hb->ins->pprev = &hb->ins;
        in->pprev = NULL;
        if (!in->verifying)
            free(in);
        else
            in->hb = NULL; /* leaked only if a check never answers: the glue's contract */
    }
}

size_t
cluster_hb_listen_sessions(struct cluster_hb *hb, const char *server, const char *drop_why)
{
    size_t n = 0;
    for (struct hb_in *in = hb ? hb->ins : NULL, *next; in; in = next) {
        next = in->next; /* closing in may free it */
        if (!in->conn || !in->ready || strcmp(in->member, server) != 0)
            continue;
        n++;
        if (drop_why)
            in_fail(in, CLUSTER_CODE_AUTH, "%s", drop_why);
    }
    return n;
}

/*
 * Heartbeats (cluster_hb.h): the state of every member on every network, the timer that sends
 * a HEARTBEAT on each established session every heartbeat_interval and (re)connects the
 * sessions that are not, and the outgoing sessions themselves (TLS over TCP from this
 * server's address on the network, as a replication copy connects). Answering is in
 * cluster_hb_listen.c; the vote arithmetic in cluster_hb_quorum.c.
 *
 * A network is up while an answer came within interval x misses; a member is seen while any
 * of its networks is up. A session that hears nothing for interval x misses is closed (its
 * network is down by then anyway) and tried again on the next tick: a stopped peer's kernel
 * still accepts connections, so an attempt can hang in the handshake, and the same bound
 * ends it.
 */
#include "cluster/cluster_hb_int.h"

#include "lib/clock.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The handshake and the HELLO's key check (argon2id, or a round trip to the directory) may take
 * longer than the heartbeats' bound; the session has this long to get going. */
#define HELLO_TIMEOUT_MS 10000u

/* Reconnection back-off of a link whose attempts fail (hb_link.backoff_ms). */
#define HB_BACKOFF_MIN_MS 500u
#define HB_BACKOFF_MAX_MS 10000u

static void
set_timeouts(struct bufferevent *bev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(bev, &tv, &tv);
}

uint64_t
cluster_hb_now_ms(void)
{
    return tdm_clock_ms();
}

struct hb_member *
cluster_hb__member(struct cluster_hb *hb, const char *name)
{
    for (unsigned i = 0; i < hb->n_members; i++)
        if (strcmp(hb->members[i].conf->name, name) == 0)
            return &hb->members[i];
    return NULL;
}

static const char *
net_name(const struct hb_link *l)
{
    return l->hb->members[l->member].conf->nets[l->net].network;
}

static const char *
member_name(const struct hb_link *l)
{
    return l->hb->members[l->member].conf->name;
}

/* ---- sending ---- */

static void
link_send(struct hb_link *l, const struct cluster_msg *m)
{
    static uint8_t frame[CLUSTER_WIRE_MAX_FRAME]; /* one loop thread: no sharing */
    size_t len;
    const char *error = NULL;
    if (cluster_msg_encode(m, frame, sizeof(frame), &len, &error) != 0) {
        /* Our own message broke a rule: a bug here, not the peer's. */
        log_error("cluster: cannot encode %s for %s: %s", cluster_type_name(m->type),
                  member_name(l), error);
        return;
    }
    bufferevent_write(l->bev, frame, len);
}

static void
link_send_heartbeat(struct hb_link *l, uint64_t now)
{
    static struct cluster_msg m; /* ~10 KiB, one loop thread */
    memset(&m, 0, sizeof(m));
    m.type = CLUSTER_HEARTBEAT;
    m.u.heartbeat.seq = ++l->seq;
    m.u.heartbeat.sent_ms = now;
    l->sent_seq[l->seq % HB_SENT_RING] = l->seq;
    l->sent_ms[l->seq % HB_SENT_RING] = now;
    m.u.heartbeat.summary = l->hb->summary;
    link_send(l, &m);
}

/* ---- the session's end ---- */

static void
link_close(struct hb_link *l, const char *why, bool eof)
{
    if (l->bev) {
        bufferevent_free(l->bev);
        l->bev = NULL;
    }
    if (l->hello_done || l->tcp_up)
        log_info("cluster: heartbeat session with %s on network %s ended: %s", member_name(l),
                 net_name(l), why);
    /* The fast path of docs/cluster.md ("Timing" (b)) needs a session that ended with EOF,
     * then only refusals: a timeout clears it (the peer may be alive and cut off). */
    if (l->hello_done || l->tcp_up)
        l->ended_eof = eof;
    if (l->hello_done) {
        l->backoff_ms = 0;
        l->retry_at_ms = 0;
    } else {
        l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : HB_BACKOFF_MIN_MS;
        if (l->backoff_ms > HB_BACKOFF_MAX_MS)
            l->backoff_ms = HB_BACKOFF_MAX_MS;
        l->retry_at_ms = cluster_hb_now_ms() + l->backoff_ms;
    }
    l->tcp_up = false;
    l->hello_done = false;
    snprintf(l->last_error, sizeof(l->last_error), "%s", why);
}

/* ---- receiving ---- */

static void
handle_reply(struct hb_link *l, const struct cluster_heartbeat_reply *r)
{
    uint64_t now = cluster_hb_now_ms();
    /* Only an answer to a heartbeat of this session counts: seq is ours, sent_ms in our past. */
    if (r->seq == 0 || r->seq > l->seq || r->sent_ms > now) {
        link_close(l, "a HEARTBEAT_REPLY to a heartbeat never sent", false);
        return;
    }
    struct hb_member *m = &l->hb->members[l->member];
    l->last_heard_ms = now;
    /* Our own record of when that heartbeat left, not the echo. */
    unsigned slot = (unsigned)(r->seq % HB_SENT_RING);
    if (l->sent_seq[slot] == r->seq) {
        uint64_t sent = l->sent_ms[slot];
        l->rtt_ms = (uint32_t)(now - sent);
        if (sent > m->answered_sent_ms)
            m->answered_sent_ms = sent;
    }
    cluster_hb__got_summary(l->hb, m, &r->summary);
    cluster_hb__evaluate(l->hb, false);
}

static void
handle_msg(struct hb_link *l, const struct cluster_msg *m)
{
    if (!l->hello_done) {
        if (m->type == CLUSTER_HELLO_REPLY && m->request_id == l->hello_id) {
            const struct cluster_hello_reply *r = &m->u.hello_reply;
            if (r->code != CLUSTER_CODE_OK) {
                if (r->code == CLUSTER_CODE_TIMERS) {
                    /* Not heard, not seen: the fence and takeover bounds assume one set of
                     * timers (docs/cluster.md, "Timing"). */
                    cluster_hb__timers_differ(l->hb, &l->hb->members[l->member], r->reason);
                    event_emit(TDM_EV_CLUSTER_TIMERS_DIFFER, member_name(l),
                               "member %s refused this server's heartbeats on network %s: %s",
                               member_name(l), net_name(l), r->reason);
                } else {
                    event_emit(TDM_EV_CLUSTER_PEER_REFUSED, member_name(l),
                               "member %s refused this server's heartbeats on network %s (%s): %s",
                               member_name(l), net_name(l), cluster_code_name(r->code), r->reason);
                }
                link_close(l, r->reason, false);
                return;
            }
            if (strcmp(r->member, member_name(l)) != 0) {
                char why[256]; /* three names of at most 63 bytes and the words around them */
                snprintf(why, sizeof(why), "the endpoint of %s on network %s is server %s",
                         member_name(l), net_name(l), r->member);
                event_emit(TDM_EV_CLUSTER_PEER_REFUSED, member_name(l), "%s", why);
                link_close(l, why, false);
                return;
            }
            l->hello_done = true;
            l->refused = false;
            l->ended_eof = false;
            cluster_hb__timers_differ(l->hb, &l->hb->members[l->member], NULL);
            set_timeouts(l->bev, l->hb->interval_ms * l->hb->misses);
            link_send_heartbeat(l, cluster_hb_now_ms());
            return;
        }
        if (m->type != CLUSTER_ERROR) {
            link_close(l, "a message other than HELLO_REPLY first", false);
            return;
        }
    }
    switch (m->type) {
    case CLUSTER_HEARTBEAT_REPLY:
        handle_reply(l, &m->u.heartbeat_reply);
        return;
    case CLUSTER_ERROR: {
        char why[CLUSTER_WIRE_TEXT_MAX + 32];
        snprintf(why, sizeof(why), "ERROR %s: %s", cluster_code_name(m->u.error.code),
                 m->u.error.text);
        /* A member that is stopping says so: its core is going, as an EOF would say. */
        link_close(l, why, m->u.error.code == CLUSTER_CODE_SHUTDOWN);
        return;
    }
    default:
        link_close(l, "an unexpected message from the listener", false);
    }
}

static void
link_read_cb(struct bufferevent *bev, void *arg)
{
    struct hb_link *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (l->bev) {
        uint8_t head[4];
        if (evbuffer_copyout(in, head, sizeof(head)) < (ev_ssize_t)sizeof(head))
            return;
        size_t flen;
        const char *error = NULL;
        if (cluster_frame_length(head, sizeof(head), &flen, &error) != 0) {
            link_close(l, error, false);
            return;
        }
        if (evbuffer_get_length(in) < flen)
            return;
        static uint8_t frame[CLUSTER_WIRE_MAX_FRAME];
        static struct cluster_msg m;
        evbuffer_remove(in, frame, flen);
        if (cluster_msg_decode(frame, flen, &m, NULL, &error) != 0) {
            char why[200];
            snprintf(why, sizeof(why), "a malformed frame: %s", error);
            link_close(l, why, false);
            return;
        }
        handle_msg(l, &m);
    }
}

static int
socket_error(struct bufferevent *bev)
{
    int err = 0;
    socklen_t len = sizeof(err);
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return 0;
    return err;
}

/* Whether the TCP connection of bev never came up: a TLS bufferevent reports a refused connect
 * as an EOF, with the connect's error left in errno (SO_ERROR was read, and so cleared, by
 * libevent). An established connection has a peer. */
static bool
never_connected(struct bufferevent *bev)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = bufferevent_getfd(bev);
    return fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &len) < 0 && errno == ENOTCONN;
}

static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct hb_link *l = arg;
    if (what & BEV_EVENT_CONNECTED) {
        l->tcp_up = true;
        struct cluster_msg m = {.type = CLUSTER_HELLO};
        l->hello_id = ++l->hb->next_request_id ? l->hb->next_request_id : ++l->hb->next_request_id;
        m.request_id = l->hello_id;
        m.u.hello.version_min = CLUSTER_WIRE_VERSION;
        m.u.hello.version_max = CLUSTER_WIRE_VERSION;
        snprintf(m.u.hello.member, sizeof(m.u.hello.member), "%s", l->hb->cfg->server);
        snprintf(m.u.hello.cluster, sizeof(m.u.hello.cluster), "%s", l->hb->cfg->cluster.name);
        snprintf(m.u.hello.key, sizeof(m.u.hello.key), "%s", l->hb->key ? l->hb->key : "");
        m.u.hello.heartbeat_interval_ms = l->hb->interval_ms;
        m.u.hello.heartbeat_misses = (uint16_t)l->hb->misses;
        m.u.hello.lease_ttl_ms = l->hb->cfg->cluster.lease_ttl_ms;
        link_send(l, &m);
        explicit_bzero(m.u.hello.key, sizeof(m.u.hello.key));
        return;
    }
    char why[200];
    bool eof = false;
    int serr = socket_error(bev);
    int err = EVUTIL_SOCKET_ERROR();
    if (!l->tcp_up && serr == 0 && err != 0 && never_connected(bev))
        serr = err;
    if (what & BEV_EVENT_TIMEOUT) {
        /* A connect that timed out was not refused: the previous attempt's refusal is stale
         * (the member may be alive and cut off, so not "gone"). */
        if (!l->tcp_up)
            l->refused = false;
        snprintf(why, sizeof(why), "nothing heard for %llu ms",
                 (unsigned long long)(l->hello_done ? l->hb->interval_ms * l->hb->misses
                                                    : HELLO_TIMEOUT_MS));
    } else if (!l->tcp_up && serr != 0) {
        /* The connect's own error: refused means nothing listens there (the core is down). */
        l->refused = serr == ECONNREFUSED;
        snprintf(why, sizeof(why), "cannot connect: %s", strerror(serr));
    } else if ((what & BEV_EVENT_EOF) &&
               !((what & BEV_EVENT_ERROR) && (err == ECONNRESET || err == EPIPE))) {
        /* EOF alone: a reset that came with it is a reset (below), as in conn.c. */
        eof = true;
        snprintf(why, sizeof(why), "closed by the member");
    } else {
        SSL *ssl = l->bev ? bufferevent_openssl_get_ssl(l->bev) : NULL;
        if (!l->tcp_up && ssl && ERR_peek_error() != 0) {
            char *e = tls_handshake_error(ssl);
            snprintf(why, sizeof(why), "TLS: %s", e ? e : "handshake failed");
            free(e);
        } else {
            /* A killed peer's TLS session ends without close_notify, which OpenSSL 3 reports
             * as an unexpected-EOF error (the read returned 0: errno says nothing), not as
             * libevent's EOF: that is still a FIN, from the peer's kernel. A reset comes as
             * SSL_ERROR_SYSCALL (ECONNRESET, EPIPE) and is not proof of a gone core: a
             * firewall's REJECT with tcp-reset or a middlebox that lost state sends one while
             * the core runs on, and the same firewall then refuses the next connect. Nor is
             * any other error (ETIMEDOUT, EHOSTUNREACH): a path that failed (docs/cluster.md
             * "Timing" (b)). */
            unsigned long tls_err = l->bev ? bufferevent_get_openssl_error(l->bev) : 0;
            eof = l->tcp_up && tls_err != 0 && ERR_GET_LIB(tls_err) == ERR_LIB_SSL &&
                  ERR_GET_REASON(tls_err) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
            snprintf(why, sizeof(why), "%s",
                     eof   ? "closed by the member"
                     : err ? strerror(err)
                           : "connection broken");
        }
        ERR_clear_error();
    }
    if (!l->tcp_up && !l->refused)
        log_debug("cluster: %s on network %s: %s", member_name(l), net_name(l), why);
    link_close(l, why, eof);
    cluster_hb__evaluate(l->hb, false);
}

static socklen_t
fill_sockaddr(struct sockaddr_storage *ss, const struct tdm_config_addr *a, uint32_t port)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        memcpy(&a6->sin6_addr, a->bytes, 16);
        return sizeof(*a6);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    memcpy(&a4->sin_addr, a->bytes, 4);
    return sizeof(*a4);
}

/* This server's address on a network (config checked that it has the network). */
static const struct tdm_config_addr *
local_address(const struct tdm_config *cfg, const char *network)
{
    for (unsigned i = 0; i < cfg->n_networks; i++)
        if (strcmp(cfg->networks[i].name, network) == 0)
            return &cfg->networks[i].address;
    return NULL;
}

/* Starts an attempt on l; a failure to even start is logged and retried on the next tick. */
static void
link_open(struct hb_link *l)
{
    struct cluster_hb *hb = l->hb;
    const struct tdm_config_member_net *mn = &hb->members[l->member].conf->nets[l->net];
    const struct tdm_config_addr *local = local_address(hb->cfg, mn->network);
    SSL *ssl = NULL;
    char *err = NULL;
    if (hb->client_tls &&
        tls_client_ssl_new(hb->client_tls, mn->endpoint.address.text, &ssl, &err) < 0) {
        snprintf(l->last_error, sizeof(l->last_error), "%s", err ? err : "TLS setup failed");
        free(err);
        return;
    }
    /* From this server's own address on the network: the member is reached over that network
     * (and in a lab on loopback, the address says which network it is). */
    int fd = -1;
    if (local) {
        fd = socket(local->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ls;
        socklen_t lsl = fill_sockaddr(&ls, local, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&ls, lsl) < 0) {
            snprintf(l->last_error, sizeof(l->last_error), "cannot use address %s: %s", local->text,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            SSL_free(ssl);
            return;
        }
    }
    l->bev = ssl ? bufferevent_openssl_socket_new(hb->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                  BEV_OPT_CLOSE_ON_FREE)
                 : bufferevent_socket_new(hb->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!l->bev) {
        /* As conn.c's accept: the descriptor and the SSL are still ours. Tried again at the
         * next attempt, like any link that could not start; said once per run of these. */
        if (fd >= 0)
            close(fd);
        SSL_free(ssl);
        if (strcmp(l->last_error, "out of memory") != 0)
            event_emit(TDM_EV_CLUSTER_SESSION_DROPPED, hb->members[l->member].conf->name,
                       "heartbeat link to %s on network %s not opened: out of memory; tried "
                       "again at each attempt",
                       hb->members[l->member].conf->name, mn->network);
        snprintf(l->last_error, sizeof(l->last_error), "out of memory");
        return;
    }
    /* No allow_dirty_shutdown: with OpenSSL 3, libevent 2.1 would report a reset
     * (SSL_ERROR_SYSCALL, ECONNRESET, nothing queued) as a "dirty shutdown" EOF, and a reset
     * must not say that the member's core is gone. A FIN without close_notify comes as
     * OpenSSL's unexpected-EOF error instead (link_event_cb). */
    bufferevent_setcb(l->bev, link_read_cb, NULL, link_event_cb, l);
    set_timeouts(l->bev, HELLO_TIMEOUT_MS);
    struct sockaddr_storage ss;
    socklen_t sl = fill_sockaddr(&ss, &mn->endpoint.address, mn->endpoint.port);
    bufferevent_enable(l->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        /* An immediate failure (refused on loopback comes later, through the event). */
        int e = errno;
        l->refused = e == ECONNREFUSED;
        link_close(l, strerror(e), false);
    }
}

/* ---- state ---- */

void
cluster_hb__timers_differ(struct cluster_hb *hb, struct hb_member *m, const char *why)
{
    const char *now = why ? why : "";
    if (strcmp(m->timers_differ, now) == 0)
        return;
    snprintf(m->timers_differ, sizeof(m->timers_differ), "%s", now);
    cluster_hb__evaluate(hb, true);
}

void
cluster_hb__got_summary(struct cluster_hb *hb, struct hb_member *m, const struct cluster_summary *s)
{
    bool changed = !m->has_summary || memcmp(&m->summary, s, sizeof(*s)) != 0;
    m->summary = *s;
    m->has_summary = true;
    if (changed)
        cluster_hb__evaluate(hb, true);
}

void
cluster_hb_snapshot(const struct cluster_hb *hb, struct cluster_hb_snapshot *out)
{
    memset(out, 0, sizeof(*out));
    const struct tdm_config *cfg = hb->cfg;
    snprintf(out->cluster, sizeof(out->cluster), "%s", cfg->cluster.name);
    snprintf(out->self, sizeof(out->self), "%s", cfg->server);
    out->now_ms = cluster_hb_now_ms();
    out->interval_ms = hb->interval_ms;
    out->misses = hb->misses;
    out->lease_ttl_ms = cfg->cluster.lease_ttl_ms;
    out->n_members = hb->n_members;
    out->votes = hb->n_members + 1;
    out->votes_seen = 1;
    uint64_t answered[CLUSTER_HB_MAX_MEMBERS];
    for (unsigned i = 0; i < hb->n_members; i++) {
        const struct hb_member *m = &hb->members[i];
        struct cluster_hb_member *o = &out->members[i];
        snprintf(o->name, sizeof(o->name), "%s", m->conf->name);
        o->witness = m->witness;
        snprintf(o->timers_differ, sizeof(o->timers_differ), "%s", m->timers_differ);
        o->n_nets = m->n_links;
        bool gone = m->n_links > 0;
        for (unsigned j = 0; j < m->n_links; j++) {
            const struct hb_link *l = &m->links[j];
            struct cluster_hb_net *n = &o->nets[j];
            snprintf(n->network, sizeof(n->network), "%s", m->conf->nets[j].network);
            n->up = cluster_hb_is_seen(l->last_heard_ms, out->now_ms, hb->interval_ms, hb->misses);
            n->connected = l->hello_done;
            n->refused = l->refused;
            n->last_heard_ms = l->last_heard_ms;
            n->rtt_ms = l->rtt_ms;
            if (n->up)
                o->seen = true;
            if (l->last_heard_ms > o->last_heard_ms)
                o->last_heard_ms = l->last_heard_ms;
            if (!(l->ended_eof && l->refused))
                gone = false;
        }
        /* A member whose heartbeats reach our listener has a running core, whatever our own
         * links to it say. */
        if (gone && cluster_hb__listen_has_session(hb, m->conf->name))
            gone = false;
        /* Reported while still seen too: this is what lets a passive skip the wait for
         * silence (docs/cluster.md, "Timing" (b)). */
        o->gone = gone;
        o->heard_ms = o->last_heard_ms > m->heard_in_ms ? o->last_heard_ms : m->heard_in_ms;
        o->answered_sent_ms = m->answered_sent_ms;
        answered[i] = m->answered_sent_ms;
        o->has_summary = m->has_summary;
        o->summary = m->summary;
        if (o->seen)
            out->votes_seen++;
    }
    out->quorum = cluster_hb_quorum(out->votes);
    out->has_quorum = out->votes_seen >= out->quorum;
    out->confirmed =
        cluster_hb_confirmation(out->votes, answered, hb->n_members, &out->confirmation_ms);
}

void
cluster_hb__evaluate(struct cluster_hb *hb, bool changed)
{
    if (hb->freeing || hb->n_members == 0) {
        if (changed && hb->on_change && !hb->freeing)
            hb->on_change(hb->on_change_arg);
        return;
    }
    static struct cluster_hb_snapshot s; /* large; one loop thread */
    cluster_hb_snapshot(hb, &s);
    for (unsigned i = 0; i < hb->n_members; i++) {
        struct hb_member *m = &hb->members[i];
        const struct cluster_hb_member *o = &s.members[i];
        for (unsigned j = 0; j < m->n_links; j++) {
            struct hb_link *l = &m->links[j];
            if (l->up == o->nets[j].up)
                continue;
            l->up = o->nets[j].up;
            changed = true;
            if (l->up)
                event_emit(TDM_EV_CLUSTER_NETWORK_UP, m->conf->name,
                           "member %s is up on network %s (round trip %u ms)", m->conf->name,
                           o->nets[j].network, o->nets[j].rtt_ms);
            else
                event_emit(TDM_EV_CLUSTER_NETWORK_DOWN, m->conf->name,
                           "member %s is down on network %s: no answer for %llu ms (%s)",
                           m->conf->name, o->nets[j].network,
                           (unsigned long long)(s.now_ms - l->last_heard_ms),
                           l->last_error[0] ? l->last_error : "no reply");
        }
        if (m->seen != o->seen) {
            m->seen = o->seen;
            changed = true;
            if (m->seen)
                event_emit(TDM_EV_CLUSTER_MEMBER_UP, m->conf->name, "member %s%s is seen again",
                           m->witness ? "(witness) " : "", m->conf->name);
            else
                event_emit(TDM_EV_CLUSTER_MEMBER_DOWN, m->conf->name,
                           "member %s%s is down: no answer on any network for %llu ms",
                           m->witness ? "(witness) " : "", m->conf->name,
                           (unsigned long long)(hb->interval_ms * hb->misses));
        }
        if (m->gone != o->gone) {
            m->gone = o->gone;
            changed = true;
        }
    }
    if (s.has_quorum != hb->has_quorum || s.votes_seen != hb->votes_seen) {
        if (s.has_quorum && !hb->has_quorum)
            event_emit(TDM_EV_CLUSTER_QUORUM_REACHED, hb->cfg->cluster.name,
                       "cluster %s: quorum, %u of %u votes seen (quorum %u)", hb->cfg->cluster.name,
                       s.votes_seen, s.votes, s.quorum);
        else if (!s.has_quorum && hb->has_quorum)
            event_emit(TDM_EV_CLUSTER_QUORUM_LOST, hb->cfg->cluster.name,
                       "cluster %s: quorum lost, %u of %u votes seen (quorum %u)",
                       hb->cfg->cluster.name, s.votes_seen, s.votes, s.quorum);
        hb->has_quorum = s.has_quorum;
        hb->votes_seen = s.votes_seen;
        changed = true;
    }
    if (s.confirmed != hb->confirmed || s.confirmation_ms != hb->confirmation_ms) {
        hb->confirmed = s.confirmed;
        hb->confirmation_ms = s.confirmation_ms;
        changed = true;
    }
    if (changed && hb->on_change)
        hb->on_change(hb->on_change_arg);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cluster_hb *hb = arg;
    uint64_t now = cluster_hb_now_ms();
    for (unsigned i = 0; i < hb->n_members; i++) {
        struct hb_member *m = &hb->members[i];
        for (unsigned j = 0; j < m->n_links; j++) {
            struct hb_link *l = &m->links[j];
            if (l->hello_done)
                link_send_heartbeat(l, now);
            else if (!l->bev && now >= l->retry_at_ms)
                link_open(l);
        }
    }
    cluster_hb__evaluate(hb, false);
}

int
cluster_hb_set_summary(struct cluster_hb *hb, const struct cluster_summary *summary,
                       const char **error_r)
{
    struct cluster_msg m = {.type = CLUSTER_HEARTBEAT};
    m.u.heartbeat.seq = 1;
    m.u.heartbeat.summary = *summary;
    int ret = cluster_msg_check(&m, error_r);
    if (ret == 0)
        hb->summary = *summary;
    return ret;
}

int
cluster_hb_start(const struct cluster_hb_params *p, struct cluster_hb **hb_r)
{
    *hb_r = NULL;
    const struct tdm_config *cfg = p->cfg;
    struct cluster_hb *hb = calloc(1, sizeof(*hb));
    if (!hb)
        return -ENOMEM;
    hb->base = p->base;
    hb->cfg = cfg;
    hb->server_tls = p->server_tls;
    hb->client_tls = p->client_tls;
    hb->verify = p->verify;
    hb->verify_ctx = p->verify_ctx;
    hb->on_change = p->on_change;
    hb->on_change_arg = p->on_change_arg;
    bool node = cfg->cluster.name[0] != '\0';
    /* A witness only answers; it closes silent sessions after the default bound (1 s x 5). */
    hb->interval_ms = node ? cfg->cluster.heartbeat_interval_ms : 1000;
    hb->misses = node ? cfg->cluster.heartbeat_misses : 5;
    if (p->key && !(hb->key = strdup(p->key))) {
        free(hb);
        return -ENOMEM;
    }
    for (unsigned i = 0; node && i < cfg->n_members && i < CLUSTER_HB_MAX_MEMBERS; i++) {
        struct hb_member *m = &hb->members[hb->n_members++];
        m->conf = &cfg->members[i];
        m->witness = strcmp(m->conf->name, cfg->cluster.witness) == 0;
        m->n_links = m->conf->n_nets;
        for (unsigned j = 0; j < m->n_links; j++)
            m->links[j] = (struct hb_link){.hb = hb, .member = i, .net = j};
    }
    if (p->listen_fd >= 0) {
        int ret = cluster_hb__listen_start(hb, p->listen_fd);
        if (ret < 0) {
            free(hb->key);
            free(hb);
            return ret;
        }
    }
    if (hb->n_members > 0) {
        hb->tick = event_new(hb->base, -1, EV_PERSIST, tick_cb, hb);
        struct timeval tv = {(time_t)(hb->interval_ms / 1000),
                             (suseconds_t)(hb->interval_ms % 1000) * 1000};
        if (!hb->tick || event_add(hb->tick, &tv) < 0)
            log_fatal("cluster: cannot start the heartbeat timer");
        tick_cb(-1, 0, hb); /* the first attempts at once */
    }
    *hb_r = hb;
    return 0;
}

void
cluster_hb_free(struct cluster_hb **hbp)
{
    struct cluster_hb *hb = *hbp;
    if (!hb)
        return;
    *hbp = NULL;
    hb->freeing = true;
    if (hb->tick)
        event_free(hb->tick);
    for (unsigned i = 0; i < hb->n_members; i++)
        for (unsigned j = 0; j < hb->members[i].n_links; j++) {
            struct hb_link *l = &hb->members[i].links[j];
            if (l->bev)
                bufferevent_free(l->bev);
        }
    cluster_hb__listen_free(hb);
    if (hb->key) {
        explicit_bzero(hb->key, strlen(hb->key));
        free(hb->key);
    }
    free(hb);
}

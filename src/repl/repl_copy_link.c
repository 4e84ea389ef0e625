/*
 * The copy agent's connections to the active (repl_copy_int.h): TLS over TCP to the endpoint
 * of each network in the copy's order. An attempt that fails moves to the next network; when
 * every one has failed, the copy is Disconnected and tries again from the first after a
 * back-off that doubles (retry_min_ms .. retry_max_ms) and starts over once a session works.
 * While the session runs on a network other than the first, a probe tries the better ones
 * every probe_ms; a probe whose handshake completes replaces the session, which is how the
 * copy returns to its preferred network when it recovers.
 *
 * Frames are cut with repl_frame_length() and decoded with repl_msg_decode(); a read timeout
 * of timeout_ms (the active sends POSITION every second) ends a silent session.
 */
#include "repl/repl_copy_int.h"

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
#include <unistd.h>

#define MAX_OUTPUT (256u * 1024u) /* ACKs are small: more queued means a stuck peer */

static void link_read_cb(struct bufferevent *bev, void *arg);

#define LINK_READ_HIGH (16u * REPL_WIRE_MAX_FRAME)
static void link_event_cb(struct bufferevent *bev, short what, void *arg);

static void
link_free(struct repl_copy_link **lp)
{
    struct repl_copy_link *l = *lp;
    if (!l)
        return;
    *lp = NULL;
    if (l->bev)
        bufferevent_free(l->bev);
    free(l);
}

static void
endpoint_text(const struct repl_copy_source *s, char *buf, size_t size)
{
    const struct tdm_config_addr *a = &s->endpoint.address;
    snprintf(buf, size, "%s%s%s:%u", a->family == AF_INET6 ? "[" : "", a->text,
             a->family == AF_INET6 ? "]" : "", (unsigned)s->endpoint.port);
}

static socklen_t
fill_sockaddr(struct sockaddr_storage *ss, const struct tdm_config_addr *a, uint32_t port)
{
    if (a->family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
        a6->sin6_family = AF_INET6;
        memcpy(&a6->sin6_addr, a->bytes, 16);
        a6->sin6_port = htons((uint16_t)port);
        return sizeof(*a6);
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    a4->sin_family = AF_INET;
    memcpy(&a4->sin_addr, a->bytes, 4);
    a4->sin_port = htons((uint16_t)port);
    return sizeof(*a4);
}

/* Starts a TLS connection to network net. Returns the link, or NULL with *why. */
static struct repl_copy_link *
link_open(struct repl_copy *c, unsigned net, bool probe, char *why, size_t why_size)
{
    const struct repl_copy_source *s = &c->conf.sources[net];
    struct repl_copy_link *l = calloc(1, sizeof(*l));
    if (!l) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    l->copy = c;
    l->serial = ++c->link_serial;
    l->net = net;
    l->probe = probe;
    SSL *ssl;
    char *err = NULL;
    if (tls_client_ssl_new(c->ssl_ctx, s->endpoint.address.text, &ssl, &err) < 0) {
        snprintf(why, why_size, "%s", err ? err : "TLS setup failed");
        free(err);
        free(l);
        return NULL;
    }
    /* From this server's own address on the network, when it has one of that name. */
    evutil_socket_t fd = -1;
    const struct tdm_config_addr *local = &c->local[net];
    if (local->family) {
        fd = socket(local->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_storage ls;
        memset(&ls, 0, sizeof(ls));
        socklen_t lsl = fill_sockaddr(&ls, local, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&ls, lsl) < 0) {
            snprintf(why, why_size, "cannot use this server's address %s: %s", local->text,
                     strerror(errno));
            if (fd >= 0)
                close(fd);
            SSL_free(ssl);
            free(l);
            return NULL;
        }
    }
    l->bev = bufferevent_openssl_socket_new(c->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    if (!l->bev) {
        if (fd >= 0)
            close(fd);
        SSL_free(ssl);
        free(l);
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    /* The handshake's unclean close is how a refused or reset peer looks; the read path
     * handles whatever arrived. */
    bufferevent_openssl_set_allow_dirty_shutdown(l->bev, 1);
    bufferevent_setcb(l->bev, link_read_cb, NULL, link_event_cb, l);
    /* A bound on what waits unread while a message is parked behind a sync: libevent stops
     * reading the socket beyond it (TCP then holds the active back). Several frames' worth, so
     * that reading goes on during a sync, and always more than one whole frame. */
    bufferevent_setwatermark(l->bev, EV_READ, 0, LINK_READ_HIGH);
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(l->bev, &tv, &tv);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = fill_sockaddr(&ss, &s->endpoint.address, s->endpoint.port);
    if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        snprintf(why, why_size, "cannot connect: %s", strerror(errno));
        link_free(&l);
        return NULL;
    }
    bufferevent_enable(l->bev, EV_READ | EV_WRITE);
    return l;
}

static void
schedule_retry(struct repl_copy *c)
{
    struct timeval tv = {c->retry_ms / 1000, (c->retry_ms % 1000) * 1000};
    evtimer_add(c->retry_ev, &tv);
    c->retry_ms = c->retry_ms * 2 > c->retry_max_ms ? c->retry_max_ms : c->retry_ms * 2;
}

/* The attempt on c->next_net failed with why: the next network, or Disconnected. */
static void
attempt_failed(struct repl_copy *c, const char *why)
{
    char ep[80];
    endpoint_text(&c->conf.sources[c->next_net], ep, sizeof(ep));
    size_t used = strlen(c->net_errors);
    snprintf(c->net_errors + used, sizeof(c->net_errors) - used, "%s%s (%s): %s", used ? "; " : "",
             c->conf.sources[c->next_net].network, ep, why);
    log_debug("copy %s: network %s (%s): %s", c->database, c->conf.sources[c->next_net].network, ep,
              why);
    if (c->next_net + 1 < c->conf.n_sources) {
        c->next_net++;
        repl_copy__connect(c);
        return;
    }
    c->st.network[0] = '\0';
    c->st.endpoint[0] = '\0';
    repl_copy__set_state(c, REPL_COPY_DISCONNECTED, "no network reaches the active: %s",
                         c->net_errors);
    c->next_net = 0;
    schedule_retry(c);
}

void
repl_copy__connect(struct repl_copy *c)
{
    if (c->session)
        return;
    if (c->next_net == 0)
        c->net_errors[0] = '\0';
    char why[256];
    c->session = link_open(c, c->next_net, false, why, sizeof(why));
    if (!c->session)
        attempt_failed(c, why);
}

void
repl_copy__disconnect(struct repl_copy *c)
{
    link_free(&c->session);
    link_free(&c->probe_link);
    if (c->probe_ev)
        evtimer_del(c->probe_ev);
    c->st.network[0] = '\0';
    c->st.endpoint[0] = '\0';
}

void
repl_copy__reconnect(struct repl_copy *c)
{
    repl_copy__disconnect(c);
    c->next_net = 0;
    repl_copy__connect(c);
}

void
repl_copy__retry_later(struct repl_copy *c, bool retry)
{
    repl_copy__disconnect(c);
    c->next_net = 0;
    if (retry) {
        /* A refusal is slow to go away: straight to the longest back-off. */
        c->retry_ms = c->retry_max_ms;
        schedule_retry(c);
    }
}

int
repl_copy__send(struct repl_copy_link *link, const struct repl_msg *msg)
{
    uint8_t *buf;
    size_t len;
    const char *why;
    int ret = repl_msg_encode_alloc(msg, &buf, &len, &why);
    if (ret < 0) {
        /* Our own message breaking a rule is a bug. */
        log_panic("copy %s: cannot encode %s: %s", link->copy->database, repl_type_name(msg->type),
                  why);
    }
    struct evbuffer *out = bufferevent_get_output(link->bev);
    if (evbuffer_get_length(out) > MAX_OUTPUT) {
        free(buf);
        return TDM_ELIMIT;
    }
    ret = evbuffer_add(out, buf, len) < 0 ? -ENOMEM : 0;
    free(buf);
    return ret;
}

/* The handshake is done on l: send HELLO. A probe becomes the session here. */
static void
link_connected(struct repl_copy *c, struct repl_copy_link *l)
{
    l->connected = true;
    if (l->probe) {
        /* The better network answers again: it becomes the session (the change of network is
         * reported once the active accepts the copy there, on_hello_reply). */
        log_info("copy %s: network %s answers again; moving back to it", c->database,
                 c->conf.sources[l->net].network);
        link_free(&c->session);
        c->probe_link = NULL;
        l->probe = false;
        c->session = l;
    }
    c->next_net = l->net;
    struct repl_msg hello;
    l->hello_id = ++c->next_hello_id ? c->next_hello_id : ++c->next_hello_id;
    if (c->seed_wanted)
        repl_copy__seed_request(c, l, &hello, l->hello_id);
    else
        repl_copy__hello(c, &hello, l->hello_id);
    if (!l->seed) /* what copy.conf asks for on this network */
        hello.u.hello.compression = c->conf.sources[l->net].compression;
    if (repl_copy__send(l, &hello) < 0) {
        repl_copy__reconnect(c);
        return;
    }
    snprintf(c->st.network, sizeof(c->st.network), "%s", c->conf.sources[l->net].network);
    endpoint_text(&c->conf.sources[l->net], c->st.endpoint, sizeof(c->st.endpoint));
    c->st.compression = l->seed ? REPL_COMPRESSION_NONE : c->conf.sources[l->net].compression;
    if (l->seed) {
        repl_copy__set_state(c, REPL_COPY_SEEDING,
                             "asking the active for a snapshot on network %s (%s)", c->st.network,
                             c->st.endpoint);
        return;
    }
    /* A copy the active keeps refusing (ServiceDown, or Failed on its credentials) stays in
     * that state while it asks again: one event per change, not two per retry. */
    if (c->st.state == REPL_COPY_SERVICE_DOWN || c->st.state == REPL_COPY_FAILED)
        return;
    repl_copy__set_state(c, REPL_COPY_RESYNCHRONIZING, "on network %s (%s), from generation %llu",
                         c->st.network, c->st.endpoint,
                         (unsigned long long)hello.u.hello.start_generation);
}

/* The connect's own error (refused, unreachable): a TLS bufferevent reports a refused
 * connection as an EOF during the handshake. */
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

static void
link_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct repl_copy_link *l = arg;
    struct repl_copy *c = l->copy;
    if (what & BEV_EVENT_CONNECTED) {
        link_connected(c, l);
        return;
    }
    if (l->hello_done && evbuffer_get_length(bufferevent_get_input(l->bev)) > 0) {
        /* What came before the close is read first: a seed ends with SEED_END and a close,
         * which may be reported (as EOF or as an error of the TLS layer) before the last
         * frames were handed to the read callback. */
        uint64_t serial = l->serial;
        repl_copy__read(l);
        if (!c->session || c->session->serial != serial)
            return; /* the link went while reading (a seed that completed, a failure) */
    }
    char why[300];
    if (what & BEV_EVENT_TIMEOUT) {
        snprintf(why, sizeof(why), "nothing heard for %u ms", c->timeout_ms);
    } else if ((what & BEV_EVENT_EOF) && l->connected) {
        snprintf(why, sizeof(why), "the active closed the connection");
    } else if (!l->connected && socket_error(l->bev) != 0) {
        snprintf(why, sizeof(why), "%s", strerror(socket_error(l->bev)));
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        SSL *ssl = bufferevent_openssl_get_ssl(l->bev);
        if (!l->connected && ssl && ERR_peek_error() != 0) {
            char *e = tls_handshake_error(ssl);
            snprintf(why, sizeof(why), "TLS: %s", e ? e : "handshake failed");
            free(e);
        } else {
            snprintf(why, sizeof(why), "%s", err ? strerror(err) : "connection failed");
        }
        ERR_clear_error();
    }
    if (l->probe) {
        /* The better network is still down: stay where we are and try later. */
        log_debug("copy %s: probe of network %s: %s", c->database, c->conf.sources[l->net].network,
                  why);
        link_free(&c->probe_link);
        struct timeval tv = {c->probe_ms / 1000, (c->probe_ms % 1000) * 1000};
        evtimer_add(c->probe_ev, &tv);
        return;
    }
    if (!l->hello_done) {
        /* Never got going on this network: try the next one. */
        link_free(&c->session);
        attempt_failed(c, why);
        return;
    }
    /* A working session broke: reconnect at once from the first network; the state says why
     * if that fails too. */
    log_info("copy %s: session on network %s ended: %s", c->database,
             c->conf.sources[l->net].network, why);
    c->retry_ms = c->retry_min_ms;
    repl_copy__reconnect(c);
}

static void
link_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    repl_copy__read(arg);
}

void
repl_copy__read(struct repl_copy_link *l)
{
    struct repl_copy *c = l->copy;
    struct evbuffer *in = bufferevent_get_input(l->bev);
    bool got = false;
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            break;
        uint8_t head[4];
        evbuffer_copyout(in, head, sizeof(head));
        size_t frame_len;
        const char *why;
        int ret = repl_frame_length(head, sizeof(head), &frame_len, &why);
        if (ret == 0 && avail < frame_len)
            break;
        struct repl_msg msg;
        if (ret == 0) {
            const uint8_t *frame = evbuffer_pullup(in, (ssize_t)frame_len);
            ret = frame ? repl_msg_decode(frame, frame_len, &msg, NULL, &why) : -ENOMEM;
            if (ret == -ENOMEM)
                why = "out of memory";
        }
        if (ret < 0) {
            log_error("copy %s: a malformed frame from the active on network %s: %s", c->database,
                      c->conf.sources[l->net].network, why);
            repl_copy__reconnect(c);
            return;
        }
        /* msg borrows from the buffer until it is drained. */
        ret = l->seed ? repl_copy__seed_on_message(c, l, &msg) : repl_copy__on_message(c, l, &msg);
        if (ret < 0)
            return; /* l is gone */
        if (ret > 0)
            break; /* parked: read again, from this message, when the sync ends */
        evbuffer_drain(in, frame_len);
        got = true;
    }
    if (got || c->read_parked)
        repl_copy__flush(c, l);
}

void
repl_copy__probe(struct repl_copy *c)
{
    if (!c->session || !c->session->hello_done || c->session->net == 0 || c->probe_link)
        return;
    /* The best network first: the probe of a network below the session's. */
    char why[256];
    for (unsigned net = 0; net < c->session->net; net++) {
        c->probe_link = link_open(c, net, true, why, sizeof(why));
        if (c->probe_link)
            return;
    }
    struct timeval tv = {c->probe_ms / 1000, (c->probe_ms % 1000) * 1000};
    evtimer_add(c->probe_ev, &tv);
}

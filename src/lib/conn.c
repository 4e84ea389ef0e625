/*
 * Client connections (conn.h) over libevent bufferevents: plain, implicit TLS
 * (bufferevent_openssl_socket_new) or upgraded by STARTTLS (a filter bufferevent over the
 * plain one).
 *
 * Lifetime: a conn is freed only outside its own callbacks. Every callback entry takes a
 * "busy" count; a close decided inside one (by the protocol or by us) marks the conn and the
 * last callback to leave frees it, so no code path touches a freed conn after on_data returns.
 * After on_close the conn is "detached": the protocol has let go of it, and it lingers only
 * to flush what was queued (at most CONN_FLUSH_DEADLINE_MS).
 */
#include "lib/conn.h"

#include "lib/err.h"
#include "lib/log.h"

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

#define CONN_DEFAULT_MAX 10000u
#define CONN_DEFAULT_PER_ADDRESS 100u
#define CONN_DEFAULT_IDLE_MS (30u * 60u * 1000u)
#define CONN_DEFAULT_MAX_OUTPUT (1024u * 1024u)
#define CONN_FLUSH_DEADLINE_MS 5000u
#define CONN_ADDR_BUCKETS 256u
/* Out of file descriptors: how long the listener stops accepting before it tries again. */
#define CONN_ACCEPT_PAUSE_MS 250u

struct addr_count {
    struct addr_count *next;
    unsigned count;
    char addr[INET6_ADDRSTRLEN];
};

/* A listening socket besides opt.fd (conn_listener_add_socket): a CMS address. */
struct conn_socket {
    struct conn_listener *listener;
    int fd;           /* -1: free slot */
    uint32_t tag;     /* not 0; the connections accepted on it carry it */
    struct event *ev; /* EV_READ | EV_PERSIST on fd */
};

struct conn_listener {
    struct event_base *base;
    struct conn_listener_options opt;
    const struct conn_ops *ops;
    void *ctx;
    struct event *accept_ev;
    struct event *accept_pause; /* re-arms accept_ev after running out of descriptors */
    bool starved;               /* said so in the log; cleared by the next accept */
    bool shut;                  /* conn_listener_shutdown() ran: accepting no more */
    struct conn *conns;
    unsigned count;
    uint64_t refused;
    struct addr_count *addrs[CONN_ADDR_BUCKETS];
    struct conn_socket extra[CONN_MAX_SOCKETS];
    unsigned n_extra; /* slots in use at the front of extra */
};

struct conn {
    struct conn_listener *listener;
    uint32_t tag; /* of the socket it was accepted on: 0 opt.fd, else conn_listener_add_socket's */
    struct conn *prev, *next;
    struct bufferevent *bev;
    struct bufferevent *under; /* after STARTTLS: the plain bufferevent under the TLS filter */
    void *ctx;
    char peer[INET6_ADDRSTRLEN + 8];
    char addr[INET6_ADDRSTRLEN];
    bool tls;
    bool user_paused;
    bool output_paused;
    SSL_CTX *starttls; /* upgrade pending once the output is flushed */
    bool closing;      /* close once flushed (conn_close_after_flush) */
    bool detached;     /* on_close has run: only flushing remains */
    bool dead;         /* free when the last callback leaves */
    unsigned busy;
    struct event *flush_timer; /* detached: polls until the output is out or the deadline */
    uint32_t flush_waited_ms;
};

#define CONN_FLUSH_POLL_MS 10u

/* Bytes not yet handed to the kernel: under a TLS filter, the encrypted ones count too. */
static size_t
output_pending(const struct conn *c)
{
    size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->under)
        n += evbuffer_get_length(bufferevent_get_output(c->under));
    return n;
}

/* ---- Per-address counts ---- */

static struct addr_count **
addr_slot(struct conn_listener *l, const char *addr)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        h = (h ^ *p) * 16777619u;
    struct addr_count **pp = &l->addrs[h % CONN_ADDR_BUCKETS];
    while (*pp && strcmp((*pp)->addr, addr) != 0)
        pp = &(*pp)->next;
    return pp;
}

static unsigned
addr_get(struct conn_listener *l, const char *addr)
{
    struct addr_count *a = *addr_slot(l, addr);
    return a ? a->count : 0;
}

static int
addr_add(struct conn_listener *l, const char *addr)
{
    struct addr_count **pp = addr_slot(l, addr);
    if (!*pp) {
        struct addr_count *a = calloc(1, sizeof(*a));
        if (!a)
            return -ENOMEM;
        snprintf(a->addr, sizeof(a->addr), "%s", addr);
        *pp = a;
    }
    (*pp)->count++;
    return 0;
}

static void
addr_sub(struct conn_listener *l, const char *addr)
{
    struct addr_count **pp = addr_slot(l, addr);
    struct addr_count *a = *pp;
    if (!a)
        return;
    if (--a->count == 0) {
        *pp = a->next;
        free(a);
    }
}

/* ---- Freeing ---- */

static void
conn_free(struct conn *c)
{
    struct conn_listener *l = c->listener;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->count--;
    addr_sub(l, c->addr);
    if (c->flush_timer)
        event_free(c->flush_timer);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

/* Leaving a callback: frees a conn marked dead by the last one out. */
static void
conn_leave(struct conn *c)
{
    if (--c->busy == 0 && c->dead)
        conn_free(c);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg);

static void
flush_poll(struct conn *c)
{
    struct timeval tv = {0, CONN_FLUSH_POLL_MS * 1000};
    evtimer_add(c->flush_timer, &tv);
}

/*
 * Ends the connection: tells the protocol (once), then frees now or after flushing. flush:
 * whether queued output is worth waiting for (not when the peer is gone).
 */
static void
conn_finish(struct conn *c, enum conn_close_reason reason, bool flush)
{
    if (!c->detached) {
        c->detached = true;
        c->busy++;
        c->listener->ops->on_close(c, reason);
        c->busy--;
    }
    bufferevent_disable(c->bev, EV_READ);
    if (flush && output_pending(c) > 0) {
        /* Polled rather than driven by write callbacks: under a TLS filter the last bytes sit
         * in the plain bufferevent, whose callbacks belong to the filter. */
        if (!c->flush_timer)
            c->flush_timer = evtimer_new(c->listener->base, flush_cb, c);
        if (c->flush_timer) {
            flush_poll(c);
            return;
        }
    }
    if (c->busy > 0)
        c->dead = true;
    else
        conn_free(c);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    c->flush_waited_ms += CONN_FLUSH_POLL_MS;
    if (output_pending(c) > 0 && c->flush_waited_ms < CONN_FLUSH_DEADLINE_MS) {
        flush_poll(c);
        return;
    }
    c->busy++;
    c->dead = true;
    conn_leave(c);
}

/* ---- Callbacks ---- */

static void set_callbacks(struct conn *c);

static void
start_tls(struct conn *c)
{
    SSL_CTX *ctx = c->starttls;
    c->starttls = NULL;
    /* Whatever arrived after STARTTLS and before the handshake is not to be trusted. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    SSL *ssl = SSL_new(ctx);
    struct bufferevent *tls =
        ssl ? bufferevent_openssl_filter_new(c->listener->base, c->bev, ssl,
                                             BUFFEREVENT_SSL_ACCEPTING,
                                             BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
            : NULL;
    if (!tls) {
        if (ssl)
            SSL_free(ssl);
        log_error("%s: cannot start TLS: out of memory", c->peer);
        conn_finish(c, CONN_CLOSE_TLS, false);
        return;
    }
    c->under = c->bev;
    c->bev = tls; /* it owns the plain bufferevent now */
    c->tls = true;
    set_callbacks(c);
}

/*
 * After every write: past max_output, stop reading until the peer has taken half of it, and
 * then call on_drained. Checked here rather than after on_data so that output written from any
 * callback (a commit's reply, on_drained itself) is held back the same way and its producer
 * learns when to go on.
 */
static void
note_output(struct conn *c)
{
    if (c->output_paused || c->detached || c->dead ||
        evbuffer_get_length(bufferevent_get_output(c->bev)) <= c->listener->opt.max_output)
        return;
    c->output_paused = true;
    bufferevent_disable(c->bev, EV_READ);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->detached || c->closing || c->starttls) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->user_paused)
        return;
    c->busy++;
    c->listener->ops->on_data(c, in);
    conn_leave(c);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    c->busy++;
    if (c->detached || c->closing) {
        /* The flush timer finishes a detached connection. */
    } else if (c->starttls && pending == 0) {
        start_tls(c);
    } else if (c->output_paused && pending <= c->listener->opt.max_output / 2) {
        c->output_paused = false;
        if (!c->user_paused)
            bufferevent_enable(c->bev, EV_READ);
        if (c->listener->ops->on_drained)
            c->listener->ops->on_drained(c);
        /* Bytes that arrived while paused are waiting: hand them over now, unless on_drained
         * filled the output again (note_output paused it anew). */
        if (!c->detached && !c->user_paused && !c->output_paused &&
            evbuffer_get_length(bufferevent_get_input(c->bev)))
            read_cb(c->bev, c);
    }
    conn_leave(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->detached) {
        /* Flushing a goodbye and the peer went: nothing more to do. */
        c->busy++;
        c->dead = true;
        conn_leave(c);
        return;
    }
    c->busy++;
    if (what & BEV_EVENT_TIMEOUT) {
        conn_finish(c, CONN_CLOSE_IDLE, true);
    } else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* libevent keeps the socket's errno across a deferred callback. Taken first: the TLS
         * calls below may change it. */
        int err = errno;
        unsigned long tls_err = c->tls ? bufferevent_get_openssl_error(c->bev) : 0;
        /* The peer's kernel closing the socket without a TLS close_notify (a client killed,
         * or one that does not bother) is the peer closing, not a TLS failure: the witness
         * frees a holder's leases at once only on that (docs/cluster.md). */
        bool eof = what & BEV_EVENT_EOF;
        if (tls_err && ERR_GET_REASON(tls_err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            tls_err = 0;
            eof = true;
        }
        if (tls_err) {
            char buf[256];
            ERR_error_string_n(tls_err, buf, sizeof(buf));
            log_info("%s: TLS failed: %s", c->peer, buf);
        }
        /* Only EOF is the peer closing: a FIN comes from the peer's kernel alone. A reset
         * (also seen as EPIPE when writing) may come from a firewall or a middlebox while the
         * peer runs on; anything else (a timeout, an unreachable host) says the path failed.
         * A reset wins over an EOF flag: deferred callbacks merge the read's and the write's
         * events into one (a RST read as ECONNRESET comes with the write side's EOF), and
         * taking such an end for a FIN would be the unsafe mistake. */
        bool reset = (what & BEV_EVENT_ERROR) && (err == ECONNRESET || err == EPIPE);
        enum conn_close_reason r = CONN_CLOSE_PEER;
        if (tls_err)
            r = CONN_CLOSE_TLS;
        else if (reset)
            r = CONN_CLOSE_RESET;
        else if (!eof)
            r = CONN_CLOSE_BROKEN;
        if (r == CONN_CLOSE_BROKEN)
            log_info("%s: connection broke: %s", c->peer, strerror(err));
        conn_finish(c, r, false);
    }
    conn_leave(c);
}

static void
set_callbacks(struct conn *c)
{
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    uint32_t ms = c->listener->opt.idle_timeout_ms;
    struct timeval idle = {ms / 1000u, (ms % 1000u) * 1000u};
    bufferevent_set_timeouts(c->bev, &idle, NULL);
    bufferevent_enable(c->bev, c->user_paused || c->output_paused ? EV_WRITE : EV_READ | EV_WRITE);
}

/* ---- Accepting ---- */

static void
describe_peer(const struct sockaddr_storage *ss, char addr[INET6_ADDRSTRLEN], char *peer,
              size_t peer_len)
{
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const void *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, addr, INET6_ADDRSTRLEN);
        snprintf(peer, peer_len, "[%s]:%u", addr, ntohs(s6->sin6_port));
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const void *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, addr, INET6_ADDRSTRLEN);
        snprintf(peer, peer_len, "%s:%u", addr, ntohs(s4->sin_port));
    } else {
        snprintf(addr, INET6_ADDRSTRLEN, "local");
        snprintf(peer, peer_len, "local");
    }
}

static void
refuse(struct conn_listener *l, int fd, const char *peer, const char *why)
{
    l->refused++;
    log_info("%s: connection refused: %s", peer, why);
    if (l->opt.refusal_line) {
        /* Best effort on a fresh socket: the line fits its send buffer. */
        ssize_t w = write(fd, l->opt.refusal_line, strlen(l->opt.refusal_line));
        (void)w;
    }
    close(fd);
}

static void
accept_one(struct conn_listener *l, uint32_t tag, int fd, const struct sockaddr_storage *ss)
{
    char addr[INET6_ADDRSTRLEN], peer[INET6_ADDRSTRLEN + 8];
    describe_peer(ss, addr, peer, sizeof(peer));
    if (l->count >= l->opt.max_connections) {
        refuse(l, fd, peer, "the server's connection limit is reached");
        return;
    }
    if (addr_get(l, addr) >= l->opt.max_per_address) {
        refuse(l, fd, peer, "too many connections from this address");
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c || addr_add(l, addr) < 0) {
        free(c);
        refuse(l, fd, peer, "out of memory");
        return;
    }
    c->listener = l;
    c->tag = tag;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    evutil_make_socket_nonblocking(fd);
    if (l->opt.implicit_tls) {
        SSL *ssl = SSL_new(l->opt.implicit_tls);
        c->bev = ssl ? bufferevent_openssl_socket_new(l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE |
                                                          BEV_OPT_DEFER_CALLBACKS)
                     : NULL;
        if (!c->bev && ssl)
            SSL_free(ssl);
        c->tls = true;
    } else {
        c->bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (!c->bev) {
        addr_sub(l, addr);
        free(c);
        refuse(l, fd, peer, "out of memory");
        return;
    }
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->count++;
    set_callbacks(c);
    c->busy++;
    l->ops->on_open(c, l->ctx);
    conn_leave(c);
}

/*
 * accept() failed for want of a descriptor or memory: the connection stays in the kernel's
 * backlog and the listening socket stays readable, so trying again at once would spin the
 * loop (and every session on it) at full CPU. Stop accepting for a moment instead; the
 * sessions already open go on.
 */
static void
pause_accepting(struct conn_listener *l, int err)
{
    if (!l->starved)
        log_warn("accept: %s: not accepting new connections for %u ms at a time until some "
                 "close (%u open; raise the open file limit to hold more)",
                 strerror(err), CONN_ACCEPT_PAUSE_MS, l->count);
    l->starved = true;
    event_del(l->accept_ev);
    for (unsigned i = 0; i < l->n_extra; i++)
        event_del(l->extra[i].ev);
    struct timeval tv = {0, CONN_ACCEPT_PAUSE_MS * 1000u};
    evtimer_add(l->accept_pause, &tv);
}

static void
resume_accepting_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn_listener *l = arg;
    if (l->shut)
        return;
    event_add(l->accept_ev, NULL);
    for (unsigned i = 0; i < l->n_extra; i++)
        event_add(l->extra[i].ev, NULL);
}

static void
accept_on(struct conn_listener *l, uint32_t tag, evutil_socket_t lfd)
{
    /* One readiness may stand for many connections; a bounded batch keeps others served. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            l->starved = false;
            accept_one(l, tag, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            pause_accepting(l, errno);
            return;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_error("accept: %s", strerror(errno));
        return;
    }
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    accept_on(arg, 0, lfd);
}

static void
accept_extra_cb(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    struct conn_socket *sock = arg;
    accept_on(sock->listener, sock->tag, lfd);
}

int
conn_listener_add_socket(struct conn_listener *l, int fd, uint32_t tag)
{
    if (tag == 0 || l->n_extra == CONN_MAX_SOCKETS || l->shut)
        return TDM_EINVAL;
    struct conn_socket *sock = &l->extra[l->n_extra];
    sock->listener = l;
    sock->fd = fd;
    sock->tag = tag;
    sock->ev = event_new(l->base, fd, EV_READ | EV_PERSIST, accept_extra_cb, sock);
    if (!sock->ev)
        return -ENOMEM;
    /* Starved of descriptors: resume_accepting_cb adds it with the others. */
    if (!l->starved && event_add(sock->ev, NULL) < 0) {
        event_free(sock->ev);
        return -ENOMEM;
    }
    l->n_extra++;
    return 0;
}

unsigned
conn_listener_close_socket(struct conn_listener *l, uint32_t tag)
{
    unsigned closed = 0;
    for (unsigned i = 0; i < l->n_extra;) {
        struct conn_socket *sock = &l->extra[i];
        if (sock->tag != tag) {
            i++;
            continue;
        }
        event_free(sock->ev);
        close(sock->fd);
        closed++;
        /* Keep the slots in use at the front; the event's argument moves with its slot. */
        l->n_extra--;
        if (i != l->n_extra) {
            *sock = l->extra[l->n_extra];
            event_del(sock->ev);
            event_assign(sock->ev, l->base, sock->fd, EV_READ | EV_PERSIST, accept_extra_cb, sock);
            if (!l->starved && !l->shut)
                event_add(sock->ev, NULL);
        }
    }
    /* The connections accepted on it go as at shutdown: told goodbye, closed once it is sent.
     * conn_finish may free c (nothing left to send), never another connection. */
    for (struct conn *c = l->conns, *next; c; c = next) {
        next = c->next;
        if (c->tag != tag || c->detached)
            continue;
        c->busy++;
        conn_finish(c, CONN_CLOSE_SHUTDOWN, true);
        conn_leave(c);
    }
    return closed;
}

int
conn_listener_new(struct event_base *base, const struct conn_listener_options *opt,
                  const struct conn_ops *ops, void *listener_ctx,
                  struct conn_listener **listener_r)
{
    struct conn_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->base = base;
    l->opt = *opt;
    if (!l->opt.max_connections)
        l->opt.max_connections = CONN_DEFAULT_MAX;
    if (!l->opt.max_per_address)
        l->opt.max_per_address = CONN_DEFAULT_PER_ADDRESS;
    if (!l->opt.idle_timeout_ms)
        l->opt.idle_timeout_ms = CONN_DEFAULT_IDLE_MS;
    if (!l->opt.max_output)
        l->opt.max_output = CONN_DEFAULT_MAX_OUTPUT;
    l->ops = ops;
    l->ctx = listener_ctx;
    l->accept_ev = event_new(base, opt->fd, EV_READ | EV_PERSIST, accept_cb, l);
    l->accept_pause = evtimer_new(base, resume_accepting_cb, l);
    if (!l->accept_ev || !l->accept_pause || event_add(l->accept_ev, NULL) < 0) {
        if (l->accept_ev)
            event_free(l->accept_ev);
        if (l->accept_pause)
            event_free(l->accept_pause);
        free(l);
        return -ENOMEM;
    }
    *listener_r = l;
    return 0;
}

unsigned
conn_listener_shutdown(struct conn_listener *l)
{
    if (!l->shut) {
        l->shut = true;
        event_del(l->accept_ev);
        event_del(l->accept_pause);
        for (unsigned i = 0; i < l->n_extra; i++)
            event_del(l->extra[i].ev);
        /* conn_finish may free c (nothing left to send), never another connection. */
        for (struct conn *c = l->conns, *next; c; c = next) {
            next = c->next;
            if (c->detached)
                continue; /* already going */
            c->busy++;
            conn_finish(c, CONN_CLOSE_SHUTDOWN, true);
            conn_leave(c);
        }
    }
    return l->count;
}

void
conn_base_free(struct event_base **base)
{
    if (!*base)
        return;
    event_base_loop(*base, EVLOOP_NONBLOCK);
    event_base_free(*base);
    *base = NULL;
}

void
conn_listener_free(struct conn_listener **listener)
{
    struct conn_listener *l = *listener;
    if (!l)
        return;
    event_free(l->accept_ev);
    event_free(l->accept_pause);
    close(l->opt.fd);
    for (unsigned i = 0; i < l->n_extra; i++) {
        event_free(l->extra[i].ev);
        close(l->extra[i].fd);
    }
    while (l->conns) {
        struct conn *c = l->conns;
        if (!c->detached) {
            c->detached = true;
            l->ops->on_close(c, CONN_CLOSE_SHUTDOWN);
        }
        conn_free(c);
    }
    for (unsigned i = 0; i < CONN_ADDR_BUCKETS; i++)
        while (l->addrs[i]) {
            struct addr_count *a = l->addrs[i];
            l->addrs[i] = a->next;
            free(a);
        }
    free(l);
    *listener = NULL;
}

unsigned
conn_listener_count(const struct conn_listener *l)
{
    return l->count;
}

uint64_t
conn_listener_refused(const struct conn_listener *l)
{
    return l->refused;
}

/* ---- Per connection ---- */

void
conn_set_ctx(struct conn *c, void *ctx)
{
    c->ctx = ctx;
}

void *
conn_ctx(const struct conn *c)
{
    return c->ctx;
}

const char *
conn_peer(const struct conn *c)
{
    return c->peer;
}

const char *
conn_peer_address(const struct conn *c)
{
    return c->addr;
}

bool
conn_is_tls(const struct conn *c)
{
    return c->tls;
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->dead)
        return 0;
    if (bufferevent_write(c->bev, data, len) < 0) {
        log_error("%s: out of memory queueing output", c->peer);
        conn_finish(c, CONN_CLOSE_LOCAL, false);
        return -ENOMEM;
    }
    note_output(c);
    return 0;
}

int
conn_printf(struct conn *c, const char *fmt, ...)
{
    if (c->dead)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
    va_end(ap);
    if (n < 0) {
        log_error("%s: out of memory queueing output", c->peer);
        conn_finish(c, CONN_CLOSE_LOCAL, false);
        return -ENOMEM;
    }
    note_output(c);
    return 0;
}

size_t
conn_output_pending(const struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

bool
conn_output_full(const struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) > c->listener->opt.max_output;
}

int
conn_starttls(struct conn *c, SSL_CTX *ctx)
{
    if (c->tls || c->starttls)
        return TDM_EINVAL;
    c->starttls = ctx;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        c->busy++;
        start_tls(c);
        conn_leave(c);
    }
    return 0;
}

void
conn_pause(struct conn *c)
{
    c->user_paused = true;
    /* Stop reading from the socket too, or input would pile up in memory meanwhile. */
    bufferevent_disable(c->bev, EV_READ);
}

void
conn_resume(struct conn *c)
{
    if (!c->user_paused)
        return;
    c->user_paused = false;
    if (c->detached || c->closing || c->starttls)
        return;
    if (!c->output_paused)
        bufferevent_enable(c->bev, EV_READ);
    /* Input that arrived while paused would otherwise wait for the next packet. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        c->busy++;
        read_cb(c->bev, c);
        conn_leave(c);
    }
}

void
conn_close_after_flush(struct conn *c)
{
    if (c->closing || c->detached)
        return;
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    c->busy++;
    conn_finish(c, CONN_CLOSE_LOCAL, true);
    conn_leave(c);
}

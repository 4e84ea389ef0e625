/*
 * The coordination client (coord_client.h): one bufferevent (TLS, or plain for tests) to the
 * first endpoint that accepts, frames cut with coord_frame_length() and decoded with
 * coord_msg_decode(), requests matched to answers by request id.
 *
 * Liveness: a PING goes out every timeout/3, and the bufferevent's read timeout is the full
 * timeout, so a witness that stops answering (or a cut network) ends the session within
 * timeout_ms even with no request outstanding.
 *
 * Callbacks may free the client: every place that calls one checks c->freed_flag afterwards.
 */
#include "coord/coord_client.h"

#include "lib/err.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proto/coord/coord_wire.h"

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

struct pending {
    uint32_t id;
    uint16_t type; /* the request's */
    coord_lease_cb *lease_cb;
    coord_value_cb *value_cb;
    void *ctx;
    struct pending *next;
};

enum cl_state { CL_IDLE, CL_CONNECTING, CL_HELLO, CL_UP };

struct coord_client {
    struct event_base *base;
    struct coord_client_options opt;
    char hosts[COORD_CLIENT_MAX_ENDPOINTS][64];
    char *member, *key, *cluster;
    enum cl_state state;
    unsigned ep; /* endpoint being tried / in use */
    struct bufferevent *bev;
    struct event *ping_ev;
    struct event *start_ev; /* connect's first attempt, from the loop */
    uint32_t next_id;
    uint32_t hello_id;
    struct pending *head, *tail;
    char errors[512]; /* why each endpoint failed, this attempt */
    bool *freed_flag;
};

static void read_cb(struct bufferevent *bev, void *arg);
static void ping_cb(evutil_socket_t fd, short what, void *arg);
static void start_cb(evutil_socket_t fd, short what, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void try_endpoint(struct coord_client *c);

static uint32_t
new_id(struct coord_client *c)
{
    if (++c->next_id == 0)
        c->next_id = 1;
    return c->next_id;
}

int
coord_client_new(struct event_base *base, const struct coord_client_options *opt,
                 struct coord_client **client_r)
{
    if (opt->n_endpoints == 0 || opt->n_endpoints > COORD_CLIENT_MAX_ENDPOINTS || !opt->member ||
        !opt->member[0] || strlen(opt->member) > COORD_WIRE_NAME_MAX || !opt->key || !opt->key[0] ||
        strlen(opt->key) > COORD_WIRE_SECRET_MAX || !opt->on_lost ||
        (opt->cluster && strlen(opt->cluster) > COORD_WIRE_NAME_MAX))
        return TDM_EINVAL;
    struct coord_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->base = base;
    c->opt = *opt;
    if (!c->opt.timeout_ms)
        c->opt.timeout_ms = 2000;
    for (unsigned i = 0; i < opt->n_endpoints; i++) {
        if (!opt->endpoints[i].host || strlen(opt->endpoints[i].host) >= sizeof(c->hosts[i])) {
            free(c);
            return TDM_EINVAL;
        }
        strcpy(c->hosts[i], opt->endpoints[i].host);
        c->opt.endpoints[i].host = c->hosts[i];
    }
    c->member = strdup(opt->member);
    c->key = strdup(opt->key);
    c->cluster = strdup(opt->cluster ? opt->cluster : "");
    c->ping_ev = evtimer_new(base, ping_cb, c);
    c->start_ev = evtimer_new(base, start_cb, c);
    if (!c->member || !c->key || !c->cluster || !c->ping_ev || !c->start_ev) {
        coord_client_free(&c);
        return -ENOMEM;
    }
    *client_r = c;
    return 0;
}

static void
drop_link(struct coord_client *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->ping_ev)
        evtimer_del(c->ping_ev);
    if (c->start_ev)
        evtimer_del(c->start_ev);
}

void
coord_client_free(struct coord_client **cp)
{
    struct coord_client *c = *cp;
    if (!c)
        return;
    *cp = NULL;
    if (c->freed_flag)
        *c->freed_flag = true;
    drop_link(c);
    if (c->ping_ev)
        event_free(c->ping_ev);
    if (c->start_ev)
        event_free(c->start_ev);
    for (struct pending *p = c->head, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    if (c->key) {
        explicit_bzero(c->key, strlen(c->key));
        free(c->key);
    }
    free(c->member);
    free(c->cluster);
    free(c);
}

bool
coord_client_is_up(const struct coord_client *c)
{
    return c->state == CL_UP;
}

/* ---- sending ---- */

static int
send_msg(struct coord_client *c, const struct coord_msg *m)
{
    uint8_t buf[COORD_WIRE_MAX_FRAME];
    size_t len;
    const char *why;
    int rc = coord_msg_encode(m, buf, sizeof(buf), &len, &why);
    if (rc != 0)
        return rc;
    return evbuffer_add(bufferevent_get_output(c->bev), buf, len) < 0 ? -ENOMEM : 0;
}

/* ---- ending a session ---- */

/* Completes every pending request with TDM_ECLOSED, then on_lost(why). Returns false when a
 * callback freed the client. */
static bool
session_lost(struct coord_client *c, const char *why)
{
    drop_link(c);
    c->state = CL_IDLE;
    struct pending *list = c->head;
    c->head = c->tail = NULL;
    bool freed = false;
    bool *prev = c->freed_flag;
    /* GCC (-O2) sees the local's address outlive the call on the path where a callback freed
     * c; on that path nothing can read it any more, and on the other it is restored below. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
    c->freed_flag = &freed;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#pragma GCC diagnostic pop
#endif
    while (list) {
        struct pending *p = list;
        list = p->next;
        if (!freed) {
            if (p->lease_cb) {
                struct coord_lease_reply r = {.status = TDM_ECLOSED, .error = why};
                p->lease_cb(p->ctx, &r);
            } else if (p->value_cb) {
                struct coord_value_reply r = {.status = TDM_ECLOSED, .error = why};
                p->value_cb(p->ctx, &r);
            }
        }
        free(p);
    }
    if (!freed)
        c->opt.on_lost(c->opt.ctx, why);
    if (freed) {
        if (prev)
            *prev = true;
        return false;
    }
    c->freed_flag = prev;
    return true;
}

void
coord_client_disconnect(struct coord_client *c)
{
    if (c->state == CL_IDLE)
        return;
    session_lost(c, "closed");
}

/* ---- connecting ---- */

static socklen_t
fill_sockaddr(struct sockaddr_storage *ss, const char *host, uint16_t port)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        return sizeof(*a6);
    }
    return 0;
}

/* The attempt on c->ep failed: the next endpoint, or the session is lost. */
static void
attempt_failed(struct coord_client *c, const char *why)
{
    size_t used = strlen(c->errors);
    snprintf(c->errors + used, sizeof(c->errors) - used, "%s%s:%u: %s", used ? "; " : "",
             c->hosts[c->ep], (unsigned)c->opt.endpoints[c->ep].port, why);
    drop_link(c);
    if (c->ep + 1 < c->opt.n_endpoints) {
        c->ep++;
        try_endpoint(c);
        return;
    }
    char msg[600];
    snprintf(msg, sizeof(msg), "no witness endpoint accepted: %s", c->errors);
    session_lost(c, msg);
}

static void
try_endpoint(struct coord_client *c)
{
    c->state = CL_CONNECTING;
    struct sockaddr_storage ss;
    socklen_t sl = fill_sockaddr(&ss, c->hosts[c->ep], c->opt.endpoints[c->ep].port);
    if (sl == 0) {
        attempt_failed(c, "not a numeric address");
        return;
    }
    if (c->opt.tls) {
        SSL *ssl;
        char *err = NULL;
        if (tls_client_ssl_new(c->opt.tls, c->hosts[c->ep], &ssl, &err) < 0) {
            char why[256];
            snprintf(why, sizeof(why), "%s", err ? err : "TLS setup failed");
            free(err);
            attempt_failed(c, why);
            return;
        }
        c->bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (c->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else
            SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        attempt_failed(c, "out of memory");
        return;
    }
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    struct timeval tv = {c->opt.timeout_ms / 1000, (c->opt.timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)sl) < 0) {
        char why[128];
        snprintf(why, sizeof(why), "cannot connect: %s", strerror(errno));
        attempt_failed(c, why);
        return;
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
start_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    try_endpoint(arg);
}

int
coord_client_connect(struct coord_client *c)
{
    if (c->state != CL_IDLE)
        return 0;
    c->ep = 0;
    c->errors[0] = '\0';
    c->state = CL_CONNECTING;
    /* From the loop, so that on_lost is never called from inside this call. */
    struct timeval now = {0, 0};
    if (evtimer_add(c->start_ev, &now) < 0) {
        c->state = CL_IDLE;
        return -ENOMEM;
    }
    return 0;
}

static void
ping_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct coord_client *c = arg;
    if (c->state != CL_UP)
        return;
    struct coord_msg m = {.type = COORD_PING, .request_id = new_id(c), .nonce = c->next_id};
    /* A PING's PONG needs no pending entry: answers nobody waits for are dropped. */
    if (send_msg(c, &m) < 0) {
        session_lost(c, "out of memory");
        return;
    }
    uint32_t every = c->opt.timeout_ms / 3 ? c->opt.timeout_ms / 3 : 1;
    struct timeval tv = {every / 1000, (every % 1000) * 1000};
    evtimer_add(c->ping_ev, &tv);
}

static void
on_connected(struct coord_client *c)
{
    c->state = CL_HELLO;
    c->hello_id = new_id(c);
    struct coord_msg m = {.type = COORD_HELLO, .request_id = c->hello_id};
    m.version_min = COORD_WIRE_VERSION_MIN;
    m.version_max = COORD_WIRE_VERSION;
    m.member = coord_str_c(c->member);
    m.secret = coord_str_c(c->key);
    m.cluster = coord_str_c(c->cluster);
    if (send_msg(c, &m) < 0)
        attempt_failed(c, "cannot send HELLO");
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct coord_client *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        on_connected(c);
        return;
    }
    char why[300];
    if (what & BEV_EVENT_TIMEOUT) {
        snprintf(why, sizeof(why), "nothing heard from the witness for %u ms", c->opt.timeout_ms);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(why, sizeof(why), "the witness closed the connection");
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        unsigned long ssl_err = c->opt.tls ? bufferevent_get_openssl_error(bev) : 0;
        if (ssl_err) {
            char e[200];
            ERR_error_string_n(ssl_err, e, sizeof(e));
            snprintf(why, sizeof(why), "TLS: %s", e);
        } else {
            snprintf(why, sizeof(why), "%s", err ? strerror(err) : "connection failed");
        }
        ERR_clear_error();
    }
    if (c->state == CL_UP)
        session_lost(c, why);
    else
        attempt_failed(c, why);
}

/* ---- answers ---- */

static struct pending *
take_pending(struct coord_client *c, uint32_t id)
{
    for (struct pending **pp = &c->head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        struct pending *p = *pp;
        if (p->id != id)
            continue;
        *pp = p->next;
        if (c->tail == p)
            c->tail = prev;
        return p;
    }
    return NULL;
}

static void
fill_value(struct coord_value_reply *r, const struct coord_msg *m, char *key, char *holder)
{
    memcpy(key, m->key.ptr, m->key.len);
    key[m->key.len] = '\0';
    memcpy(holder, m->holder.ptr, m->holder.len);
    holder[m->holder.len] = '\0';
    r->holder = m->holder.len ? holder : NULL;
    r->epoch = m->epoch;
    r->remaining_ms = m->remaining_ms;
    r->version = m->value_version;
    r->value = m->value_version ? (const uint8_t *)m->value.ptr : NULL;
    r->value_len = m->value.len;
}

/* Handles one message; returns false when the client is gone or the session ended. */
static bool
on_message(struct coord_client *c, const struct coord_msg *m)
{
    char key[COORD_WIRE_KEY_MAX + 1], holder[COORD_WIRE_NAME_MAX + 1];
    char text[COORD_WIRE_TEXT_MAX + 1];
    if (c->state == CL_HELLO) {
        if (m->type == COORD_HELLO_REPLY && m->request_id == c->hello_id && m->code == 0) {
            c->state = CL_UP;
            uint32_t every = c->opt.timeout_ms / 3 ? c->opt.timeout_ms / 3 : 1;
            struct timeval tv = {every / 1000, (every % 1000) * 1000};
            evtimer_add(c->ping_ev, &tv);
            if (c->opt.on_up) {
                bool freed = false;
                bool *prev = c->freed_flag;
                c->freed_flag = &freed;
                c->opt.on_up(c->opt.ctx, c->ep);
                if (freed) {
                    if (prev)
                        *prev = true;
                    return false;
                }
                c->freed_flag = prev;
            }
            return c->state == CL_UP;
        }
        if (m->type == COORD_HELLO_REPLY || m->type == COORD_ERROR) {
            snprintf(text, sizeof(text), "the witness refused this node (%s): %.*s",
                     coord_code_name(m->code) ? coord_code_name(m->code) : "?", (int)m->text.len,
                     m->text.ptr);
            /* A refusal is the witness's answer: no other endpoint will say otherwise. */
            session_lost(c, text);
            return false;
        }
        session_lost(c, "the witness answered HELLO with something else");
        return false;
    }
    if (m->type == COORD_PONG)
        return true;
    if (m->type == COORD_NOTIFY) {
        if (!c->opt.on_notify)
            return true;
        struct coord_value_reply r = {0};
        fill_value(&r, m, key, holder);
        bool freed = false;
        bool *prev = c->freed_flag;
        c->freed_flag = &freed;
        c->opt.on_notify(c->opt.ctx, key, &r);
        if (freed) {
            if (prev)
                *prev = true;
            return false;
        }
        c->freed_flag = prev;
        return c->state == CL_UP;
    }
    if (m->type == COORD_ERROR && m->request_id == 0) {
        snprintf(text, sizeof(text), "the witness ended the session (%s): %.*s",
                 coord_code_name(m->code) ? coord_code_name(m->code) : "?", (int)m->text.len,
                 m->text.ptr);
        session_lost(c, text);
        return false;
    }
    struct pending *p = take_pending(c, m->request_id);
    if (!p)
        return true; /* a PING's PONG, or an answer nobody waits for */
    snprintf(text, sizeof(text), "%s: %.*s",
             coord_code_name(m->code) ? coord_code_name(m->code) : "?", (int)m->text.len,
             m->text.ptr);
    bool freed = false;
    bool *prev = c->freed_flag;
    c->freed_flag = &freed;
    if (p->lease_cb) {
        struct coord_lease_reply r = {0};
        if (m->type == COORD_ERROR) {
            r.status = TDM_EINVAL;
            r.error = text;
        } else if (m->type == COORD_GRANTED) {
            r.lease = COORD_LEASE_GRANTED;
            r.epoch = m->epoch;
            r.ttl_ms = m->ttl_ms;
        } else if (m->type == COORD_DENIED) {
            memcpy(holder, m->holder.ptr, m->holder.len);
            holder[m->holder.len] = '\0';
            r.lease = COORD_LEASE_DENIED;
            r.holder = holder;
            r.epoch = m->epoch;
            r.remaining_ms = m->remaining_ms;
        } else if (m->type == COORD_RELEASED) {
            r.lease = COORD_LEASE_RELEASED;
        } else {
            r.status = TDM_EINVAL;
            r.error = "the witness answered with the wrong message type";
        }
        p->lease_cb(p->ctx, &r);
    } else if (p->value_cb) {
        struct coord_value_reply r = {0};
        if (m->type == COORD_VALUE || m->type == COORD_CONFLICT) {
            fill_value(&r, m, key, holder);
            r.status = m->type == COORD_CONFLICT ? TDM_ECONFLICT : 0;
        } else {
            r.status = TDM_EINVAL;
            r.error = m->type == COORD_ERROR ? text : "the witness answered with the wrong type";
        }
        p->value_cb(p->ctx, &r);
    }
    free(p);
    if (freed) {
        if (prev)
            *prev = true;
        return false;
    }
    c->freed_flag = prev;
    return c->state == CL_UP;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
    struct coord_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            return;
        uint8_t head[4];
        evbuffer_copyout(in, head, sizeof(head));
        size_t flen;
        const char *why;
        int rc = coord_frame_length(head, sizeof(head), &flen, &why);
        if (rc == 0 && avail < flen)
            return;
        struct coord_msg m;
        if (rc == 0) {
            const uint8_t *frame = evbuffer_pullup(in, (ssize_t)flen);
            rc = frame ? coord_msg_decode(frame, flen, &m, NULL, &why) : -ENOMEM;
            if (rc == -ENOMEM)
                why = "out of memory";
        }
        if (rc < 0) {
            char text[300];
            snprintf(text, sizeof(text), "a malformed frame from the witness: %s", why);
            if (c->state == CL_UP)
                session_lost(c, text);
            else
                attempt_failed(c, text);
            return;
        }
        /* m borrows from the buffer: handled before it is drained. The buffer goes with the
         * link if the session ends in there. */
        if (!on_message(c, &m))
            return;
        evbuffer_drain(in, flen);
    }
}

/* ---- requests ---- */

static int
request(struct coord_client *c, struct coord_msg *m, coord_lease_cb *lcb, coord_value_cb *vcb,
        void *ctx)
{
    if (c->state != CL_UP)
        return TDM_ECLOSED;
    m->request_id = new_id(c);
    const char *why;
    size_t size;
    int rc = coord_msg_size(m, &size, &why);
    if (rc != 0)
        return rc;
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    rc = send_msg(c, m);
    if (rc != 0) {
        free(p);
        return rc;
    }
    *p = (struct pending){m->request_id, m->type, lcb, vcb, ctx, NULL};
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    return 0;
}

static bool
key_ok(const char *key)
{
    return key && key[0] && strlen(key) <= COORD_WIRE_KEY_MAX;
}

int
coord_client_acquire(struct coord_client *c, const char *key, uint32_t ttl_ms, uint64_t min_epoch,
                     coord_lease_cb *cb, void *ctx)
{
    if (!key_ok(key))
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_ACQUIRE, .ttl_ms = ttl_ms, .min_epoch = min_epoch};
    m.key = coord_str_c(key);
    m.holder = coord_str_c(c->member);
    return request(c, &m, cb, NULL, ctx);
}

int
coord_client_release(struct coord_client *c, const char *key, uint64_t epoch, coord_lease_cb *cb,
                     void *ctx)
{
    if (!key_ok(key))
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_RELEASE, .epoch = epoch};
    m.key = coord_str_c(key);
    m.holder = coord_str_c(c->member);
    return request(c, &m, cb, NULL, ctx);
}

int
coord_client_transfer(struct coord_client *c, const char *key, uint64_t epoch, const char *to,
                      coord_lease_cb *cb, void *ctx)
{
    if (!key_ok(key) || !to)
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_TRANSFER, .epoch = epoch};
    m.key = coord_str_c(key);
    m.holder = coord_str_c(c->member);
    m.to = coord_str_c(to);
    return request(c, &m, cb, NULL, ctx);
}

int
coord_client_get(struct coord_client *c, const char *key, coord_value_cb *cb, void *ctx)
{
    if (!key_ok(key))
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_GET};
    m.key = coord_str_c(key);
    return request(c, &m, NULL, cb, ctx);
}

int
coord_client_cas(struct coord_client *c, const char *key, uint64_t expected_version,
                 const void *value, uint32_t value_len, coord_value_cb *cb, void *ctx)
{
    if (!key_ok(key) || value_len > COORD_VALUE_MAX || (value_len && !value))
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_CAS, .value_version = expected_version};
    m.key = coord_str_c(key);
    m.value = (struct coord_str){value, value_len};
    return request(c, &m, NULL, cb, ctx);
}

int
coord_client_watch(struct coord_client *c, const char *key, coord_value_cb *cb, void *ctx)
{
    if (!key_ok(key))
        return TDM_EINVAL;
    struct coord_msg m = {.type = COORD_WATCH};
    m.key = coord_str_c(key);
    return request(c, &m, NULL, cb, ctx);
}

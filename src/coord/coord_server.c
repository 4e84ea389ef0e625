/*
 * The coordination server (coord_server.h). Sessions go HELLO -> VERIFY (input paused while
 * the core checks the key) -> READY; a malformed frame, or anything out of place, gets ERROR
 * `protocol` and the session is closed after it (the others go on). Requests on a READY
 * session are answered in order, each after the store call it needs returned, so a GRANTED
 * is never queued before its epoch is durable.
 */
#include "coord/coord_server.h"

#include "lib/clock.h"
#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "proto/coord/coord_wire.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WATCHES 64u /* keys one session may watch */

enum sess_state { S_HELLO, S_VERIFY, S_READY, S_GONE };

struct session {
    struct coord_server *srv;
    struct conn *conn; /* NULL once closed (a verify may still be pending) */
    enum sess_state state;
    bool verify_pending;
    unsigned busy; /* inside on_data or the verify call: on_close must not free it */
    bool paused;   /* input paused while an asynchronous verify runs */
    bool authed;   /* HELLO accepted: its member's leases go when the session does */
    bool replaced; /* ...unless a newer session of the member took over (and freed them) */
    uint32_t hello_id;
    char member[COORD_WIRE_NAME_MAX + 1];
    char cluster[COORD_WIRE_NAME_MAX + 1];
    char peer[64];
    uint64_t since_ms, last_request_ms; /* status: accepted at, last message read at */
    char *watches[MAX_WATCHES];
    unsigned n_watches;
    struct session *next;
};

struct coord_server {
    struct event_base *base;
    struct conn_listener *listener;
    struct coord_store *store;
    struct event *expiry_ev;
    struct coord_server_options opt;
    char witness[COORD_WIRE_NAME_MAX + 1];
    struct session *sessions;
    struct coord_server_counters counters;
};

/* ---- sending ---- */

static void
send_msg(struct session *s, const struct coord_msg *m)
{
    if (!s->conn)
        return;
    uint8_t buf[COORD_WIRE_MAX_FRAME];
    size_t len;
    const char *why;
    if (coord_msg_encode(m, buf, sizeof(buf), &len, &why) != 0)
        log_panic("coord: cannot encode %s: %s", coord_type_name(m->type), why);
    conn_write(s->conn, buf, len);
}

static void
send_error(struct session *s, uint32_t id, uint16_t code, const char *text)
{
    struct coord_msg m = {.type = COORD_ERROR, .request_id = id, .code = code};
    m.text = coord_str_c(text);
    if (m.text.len > COORD_WIRE_TEXT_MAX)
        m.text.len = COORD_WIRE_TEXT_MAX;
    send_msg(s, &m);
}

/* Ends s after a protocol error: ERROR, then close once it is sent. */
static void
protocol_error(struct session *s, uint32_t id, const char *why)
{
    log_info("coord: session from %s (%s): %s", s->peer, s->member[0] ? s->member : "?", why);
    send_error(s, id, COORD_CODE_PROTOCOL, why);
    s->state = S_GONE;
    if (s->conn)
        conn_close_after_flush(s->conn);
}

/* Memory ran out while serving s (doing says what): the session ends with ERROR `internal`,
 * as after a protocol error, and the witness goes on with the others. Its member's leases run
 * out their time, as after any end that is not the node's own close; the node reconnects. */
static void
session_drop_nomem(struct session *s, const char *doing)
{
    event_emit(TDM_EV_COORD_SESSION_DROPPED, s->member[0] ? s->member : s->peer,
               "session of %s from %s dropped: out of memory %s", s->member[0] ? s->member : "?",
               s->peer, doing);
    send_error(s, 0, COORD_CODE_INTERNAL, "the witness is out of memory");
    s->state = S_GONE;
    if (s->conn)
        conn_close_after_flush(s->conn);
}

static void
entry_msg(struct coord_msg *m, uint16_t type, uint32_t id, const struct coord_entry *e)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->request_id = id;
    m->key = coord_str_c(e->key);
    m->holder = coord_str_c(e->holder);
    m->epoch = e->epoch;
    m->remaining_ms = e->holder[0] ? e->remaining_ms : 0;
    if (m->remaining_ms > COORD_WIRE_TTL_MAX)
        m->remaining_ms = COORD_WIRE_TTL_MAX;
    m->value_version = e->value_version;
    m->value = (struct coord_str){(const char *)e->value, e->value_version ? e->value_len : 0};
}

/* Every READY session watching e's key hears of its change. */
static void
notify(struct coord_server *srv, const struct coord_entry *e)
{
    struct coord_msg m;
    entry_msg(&m, COORD_NOTIFY, 0, e);
    for (struct session *s = srv->sessions; s; s = s->next) {
        if (s->state != S_READY)
            continue;
        for (unsigned i = 0; i < s->n_watches; i++)
            if (strcmp(s->watches[i], e->key) == 0)
                send_msg(s, &m);
    }
}

/* The state after a change, for watchers (a freed entry reports its old holder). Without the
 * memory to read it, the sessions watching key end instead of keeping a view that is now
 * stale: a node that reconnects reads the key again. */
static void
notify_key(struct coord_server *srv, const char *key)
{
    struct coord_entry *e = malloc(sizeof(*e));
    if (!e) {
        for (struct session *s = srv->sessions, *n; s; s = n) {
            n = s->next; /* the close may free s */
            for (unsigned i = 0; s->state == S_READY && i < s->n_watches; i++) {
                if (strcmp(s->watches[i], key) == 0) {
                    session_drop_nomem(s, "notifying a watched key's change");
                    break; /* s may be gone */
                }
            }
        }
        return;
    }
    if (coord_store_get(srv->store, key, tdm_clock_ms(), e) == 0)
        notify(srv, e);
    free(e);
}

/* ---- expiry ---- */

static void
schedule_expiry(struct coord_server *srv)
{
    uint64_t in = coord_store_next_expiry(srv->store, tdm_clock_ms());
    if (in == UINT64_MAX) {
        evtimer_del(srv->expiry_ev);
        return;
    }
    in += 1; /* expired means now >= expiry: one past it */
    struct timeval tv = {(time_t)(in / 1000), (suseconds_t)((in % 1000) * 1000)};
    evtimer_add(srv->expiry_ev, &tv);
}

static void
store_failed(struct coord_server *srv, int rc, const char *what)
{
    event_emit(TDM_EV_COORD_STORE_FAILED, srv->witness,
               "cannot write the coordination store (%s): %s", what, tdm_strerror(rc));
}

static void
on_expired(void *ctx, const struct coord_entry *e)
{
    struct coord_server *srv = ctx;
    srv->counters.expired++;
    event_emit(TDM_EV_COORD_LEASE_EXPIRED, e->key, "lease %s of %s (epoch %llu) expired", e->key,
               e->holder, (unsigned long long)e->epoch);
    notify_key(srv, e->key);
}

static void
expiry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct coord_server *srv = arg;
    int rc = coord_store_expire(srv->store, tdm_clock_ms(), on_expired, srv);
    if (rc < 0) {
        store_failed(srv, rc, "expiry");
        /* Try again shortly: an expired lease is denied to nobody meanwhile (held() checks
         * the time), only its event and notification wait. */
        struct timeval tv = {1, 0};
        evtimer_add(srv->expiry_ev, &tv);
        return;
    }
    schedule_expiry(srv);
}

/* ---- requests ---- */

struct freed_ctx {
    struct coord_server *srv;
    const char *why;
};

static void
on_freed(void *ctx, const struct coord_entry *e)
{
    struct freed_ctx *f = ctx;
    f->srv->counters.freed++;
    event_emit(TDM_EV_COORD_LEASE_FREED, e->key, "lease %s of %s (epoch %llu) freed: %s", e->key,
               e->holder, (unsigned long long)e->epoch, f->why);
    notify_key(f->srv, e->key);
}

/* Frees member's leases (its session ended or was replaced). */
static void
free_leases(struct coord_server *srv, const char *member, const char *why)
{
    struct freed_ctx f = {srv, why};
    int rc = coord_store_free_holder(srv->store, member, tdm_clock_ms(), on_freed, &f);
    if (rc < 0)
        store_failed(srv, rc, "freeing a disconnected holder's leases");
    schedule_expiry(srv);
}

/* The store's error as the node's ERROR. */
static void
store_error(struct session *s, uint32_t id, int rc)
{
    if (rc == TDM_ELIMIT) {
        send_error(s, id, COORD_CODE_LIMIT, "the store holds as many keys as it may");
    } else if (rc == TDM_EINVAL) {
        send_error(s, id, COORD_CODE_PROTOCOL, "invalid request");
    } else {
        store_failed(s->srv, rc, "a request");
        send_error(s, id, COORD_CODE_INTERNAL, "the witness could not write its store");
    }
}

static char *
dup_str(struct coord_str s, char *buf, size_t size)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
    return buf;
}

static bool
holder_ok(struct session *s, const struct coord_msg *m)
{
    if (m->holder.len == strlen(s->member) && memcmp(m->holder.ptr, s->member, m->holder.len) == 0)
        return true;
    send_error(s, m->request_id, COORD_CODE_HOLDER,
               "the holder must be the member this session authenticated as");
    return false;
}

static void
handle_acquire(struct session *s, const struct coord_msg *m)
{
    if (!holder_ok(s, m))
        return;
    struct coord_server *srv = s->srv;
    char key[COORD_WIRE_KEY_MAX + 1];
    dup_str(m->key, key, sizeof(key));
    struct coord_entry *e = malloc(sizeof(*e));
    struct coord_entry *old = malloc(sizeof(*old));
    if (!e || !old) {
        free(e);
        free(old);
        session_drop_nomem(s, "serving ACQUIRE");
        return;
    }
    int outcome;
    uint64_t before_epoch = 0;
    uint64_t now = tdm_clock_ms();
    if (coord_store_get(srv->store, key, now, old) == 0)
        before_epoch = old->epoch;
    free(old);
    int rc =
        coord_store_acquire(srv->store, key, s->member, m->ttl_ms, m->min_epoch, now, &outcome, e);
    if (rc < 0) {
        store_error(s, m->request_id, rc);
    } else if (outcome == COORD_ACQ_DENIED) {
        srv->counters.denied++;
        struct coord_msg r = {.type = COORD_DENIED, .request_id = m->request_id};
        r.key = coord_str_c(e->key);
        r.holder = coord_str_c(e->holder);
        r.epoch = e->epoch;
        r.remaining_ms = e->remaining_ms;
        send_msg(s, &r);
    } else {
        struct coord_msg r = {.type = COORD_GRANTED, .request_id = m->request_id};
        r.key = coord_str_c(e->key);
        r.epoch = e->epoch;
        r.ttl_ms = e->ttl_ms;
        send_msg(s, &r);
        if (outcome == COORD_ACQ_NEW)
            srv->counters.granted++;
        else
            srv->counters.renewed++;
        if (outcome == COORD_ACQ_NEW)
            event_emit(TDM_EV_COORD_LEASE_GRANTED, e->key,
                       "lease %s granted to %s with epoch %llu (ttl %u ms)", e->key, e->holder,
                       (unsigned long long)e->epoch, e->ttl_ms);
        if (outcome == COORD_ACQ_NEW || e->epoch != before_epoch)
            notify(srv, e);
        schedule_expiry(srv);
    }
    free(e);
}

static void
handle_release(struct session *s, const struct coord_msg *m)
{
    if (!holder_ok(s, m))
        return;
    char key[COORD_WIRE_KEY_MAX + 1];
    dup_str(m->key, key, sizeof(key));
    bool freed;
    int rc =
        coord_store_release(s->srv->store, key, s->member, m->epoch, tdm_clock_ms(), &freed);
    if (rc == TDM_ECONFLICT) {
        send_error(s, m->request_id, COORD_CODE_EPOCH,
                   "the lease is held with another epoch, or by another member");
        return;
    }
    if (rc < 0) {
        store_error(s, m->request_id, rc);
        return;
    }
    struct coord_msg r = {.type = COORD_RELEASED, .request_id = m->request_id};
    r.key = coord_str_c(key);
    send_msg(s, &r);
    if (freed) {
        event_emit(TDM_EV_COORD_LEASE_RELEASED, key, "lease %s released by %s (epoch %llu)", key,
                   s->member, (unsigned long long)m->epoch);
        notify_key(s->srv, key);
        schedule_expiry(s->srv);
    }
}

static void
handle_transfer(struct session *s, const struct coord_msg *m)
{
    if (!holder_ok(s, m))
        return;
    char key[COORD_WIRE_KEY_MAX + 1], to[COORD_WIRE_NAME_MAX + 1];
    dup_str(m->key, key, sizeof(key));
    dup_str(m->to, to, sizeof(to));
    struct coord_entry *e = malloc(sizeof(*e));
    if (!e) {
        session_drop_nomem(s, "serving TRANSFER");
        return;
    }
    int rc =
        coord_store_transfer(s->srv->store, key, s->member, m->epoch, to, tdm_clock_ms(), e);
    if (rc == TDM_ECONFLICT && e->holder[0] && strcmp(e->holder, s->member) != 0) {
        struct coord_msg r = {.type = COORD_DENIED, .request_id = m->request_id};
        r.key = coord_str_c(key);
        r.holder = coord_str_c(e->holder);
        r.epoch = e->epoch;
        r.remaining_ms = e->remaining_ms;
        send_msg(s, &r);
    } else if (rc == TDM_ECONFLICT) {
        send_error(s, m->request_id, COORD_CODE_EPOCH,
                   "this member holds no live lease of that key with that epoch");
    } else if (rc < 0) {
        store_error(s, m->request_id, rc);
    } else {
        struct coord_msg r = {.type = COORD_GRANTED, .request_id = m->request_id};
        r.key = coord_str_c(key);
        r.epoch = e->epoch;
        r.ttl_ms = e->ttl_ms;
        send_msg(s, &r);
        event_emit(TDM_EV_COORD_LEASE_TRANSFERRED, key,
                   "lease %s transferred from %s to %s with epoch %llu", key, s->member, to,
                   (unsigned long long)e->epoch);
        notify(s->srv, e);
        schedule_expiry(s->srv);
    }
    free(e);
}

static void
handle_value(struct session *s, const struct coord_msg *m)
{
    char key[COORD_WIRE_KEY_MAX + 1];
    dup_str(m->key, key, sizeof(key));
    struct coord_entry *e = malloc(sizeof(*e));
    if (!e) {
        session_drop_nomem(s, "serving a value request");
        return;
    }
    uint64_t now = tdm_clock_ms();
    uint16_t type = COORD_VALUE;
    int rc;
    if (m->type == COORD_CAS) {
        rc = coord_store_cas(s->srv->store, key, m->value_version, m->value.ptr, m->value.len, now,
                             e);
        if (rc == TDM_ECONFLICT) {
            type = COORD_CONFLICT;
            rc = 0;
            s->srv->counters.cas_conflicts++;
        } else if (rc == 0) {
            s->srv->counters.cas_written++;
            notify(s->srv, e);
        }
    } else {
        if (m->type == COORD_WATCH) {
            bool have = false;
            for (unsigned i = 0; i < s->n_watches; i++)
                have |= strcmp(s->watches[i], key) == 0;
            if (!have && s->n_watches >= MAX_WATCHES) {
                send_error(s, m->request_id, COORD_CODE_LIMIT, "too many watches on a session");
                free(e);
                return;
            }
            if (!have) {
                if (!(s->watches[s->n_watches] = strdup(key))) {
                    free(e);
                    session_drop_nomem(s, "adding a watch");
                    return;
                }
                s->n_watches++;
            }
        }
        rc = coord_store_get(s->srv->store, key, now, e);
    }
    if (rc < 0) {
        store_error(s, m->request_id, rc);
    } else {
        struct coord_msg r;
        entry_msg(&r, type, m->request_id, e);
        send_msg(s, &r);
    }
    free(e);
}

/* ---- HELLO ---- */

static void session_maybe_free(struct session *s);

static void
verify_done(void *ctx, int status, const char *error)
{
    struct session *s = ctx;
    s->verify_pending = false;
    if (!s->conn) {
        session_maybe_free(s);
        return;
    }
    struct coord_server *srv = s->srv;
    if (status != 0) {
        srv->counters.sessions_refused++;
        char text[COORD_WIRE_TEXT_MAX + 1];
        snprintf(text, sizeof(text), "%s %s: %s", status == -EACCES ? "refused" : "cannot check",
                 s->member, error ? error : tdm_strerror(status));
        event_emit(TDM_EV_COORD_NODE_REFUSED, s->member, "node %s from %s refused: %s", s->member,
                   s->peer, text);
        struct coord_msg r = {.type = COORD_HELLO_REPLY, .request_id = s->hello_id};
        r.code = status == -EACCES ? COORD_CODE_AUTH : COORD_CODE_INTERNAL;
        r.text = coord_str_c(text);
        send_msg(s, &r);
        s->state = S_GONE;
        conn_close_after_flush(s->conn);
        return;
    }
    /* A newer session of the same member replaces the older: that one is gone for good (a
     * half-open connection the node gave up on), and so are its leases. */
    for (struct session *o = srv->sessions, *n; o; o = n) {
        n = o->next; /* closing o may free it */
        if (o == s || !o->authed || o->replaced || strcmp(o->member, s->member) != 0)
            continue;
        o->state = S_GONE;
        o->replaced = true;
        send_error(o, 0, COORD_CODE_PROTOCOL, "replaced by a newer session of the same member");
        if (o->conn)
            conn_close_after_flush(o->conn);
        free_leases(srv, s->member, "replaced by a newer session of the same node");
    }
    s->state = S_READY;
    s->authed = true;
    srv->counters.sessions_accepted++;
    log_info("coord: node %s (cluster %s) connected from %s", s->member,
             s->cluster[0] ? s->cluster : "-", s->peer);
    struct coord_msg r = {.type = COORD_HELLO_REPLY, .request_id = s->hello_id, .version = 1};
    r.witness = coord_str_c(srv->witness);
    r.boot_id = srv->opt.boot_id;
    send_msg(s, &r);
    if (s->paused) {
        s->paused = false;
        conn_resume(s->conn);
    }
}

static void
handle_hello(struct session *s, const struct coord_msg *m)
{
    s->hello_id = m->request_id;
    dup_str(m->member, s->member, sizeof(s->member));
    dup_str(m->cluster, s->cluster, sizeof(s->cluster));
    uint16_t version;
    const char *error;
    if (coord_version_negotiate(m->version_min, m->version_max, &version, &error) != 0) {
        struct coord_msg r = {.type = COORD_HELLO_REPLY, .request_id = m->request_id};
        r.code = COORD_CODE_VERSION;
        r.text = coord_str_c(error);
        send_msg(s, &r);
        s->state = S_GONE;
        conn_close_after_flush(s->conn);
        return;
    }
    char *key = malloc((size_t)m->secret.len + 1);
    if (!key) {
        session_drop_nomem(s, "checking HELLO");
        return;
    }
    memcpy(key, m->secret.ptr, m->secret.len);
    key[m->secret.len] = '\0';
    s->state = S_VERIFY;
    s->verify_pending = true;
    s->srv->opt.verify(s->srv->opt.verify_ctx, s->member, key, m->secret.len, verify_done, s);
    explicit_bzero(key, m->secret.len);
    free(key);
    /* Answered later: what the node sends meanwhile waits. (Answered at once, on_data goes on
     * by itself: resuming from in here would read the HELLO again before it is drained.) */
    if (s->verify_pending) {
        s->paused = true;
        conn_pause(s->conn);
    }
}

static void
handle(struct session *s, const struct coord_msg *m)
{
    s->last_request_ms = tdm_clock_ms();
    s->srv->counters.requests++;
    if (s->state == S_HELLO) {
        if (m->type == COORD_HELLO)
            handle_hello(s, m);
        else
            protocol_error(s, m->request_id, "the first message must be HELLO");
        return;
    }
    switch (m->type) {
    case COORD_ACQUIRE:
        handle_acquire(s, m);
        break;
    case COORD_RELEASE:
        handle_release(s, m);
        break;
    case COORD_TRANSFER:
        handle_transfer(s, m);
        break;
    case COORD_GET:
    case COORD_CAS:
    case COORD_WATCH:
        handle_value(s, m);
        break;
    case COORD_PING: {
        struct coord_msg r = {.type = COORD_PONG, .request_id = m->request_id, .nonce = m->nonce};
        send_msg(s, &r);
        break;
    }
    default:
        protocol_error(s, m->type == COORD_NOTIFY ? 0 : m->request_id,
                       "a message a node may not send here");
    }
}

/* ---- connections ---- */

static void
on_open(struct conn *conn, void *listener_ctx)
{
    struct coord_server *srv = listener_ctx;
    struct session *s = calloc(1, sizeof(*s));
    if (!s) {
        /* No session: on_data and on_close see no context and do nothing. */
        event_emit(TDM_EV_COORD_SESSION_DROPPED, conn_peer(conn),
                   "session from %s dropped: out of memory accepting it", conn_peer(conn));
        conn_close_after_flush(conn);
        return;
    }
    s->srv = srv;
    s->conn = conn;
    s->since_ms = tdm_clock_ms();
    snprintf(s->peer, sizeof(s->peer), "%s", conn_peer(conn));
    s->next = srv->sessions;
    srv->sessions = s;
    conn_set_ctx(conn, s);
}

static void
on_data(struct conn *conn, struct evbuffer *in)
{
    struct session *s = conn_ctx(conn);
    if (!s)
        return;
    /* conn_close_after_flush() may close at once (on_close runs from inside it). */
    s->busy++;
    while (s->conn && (s->state == S_HELLO || s->state == S_READY)) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            break;
        uint8_t head[4];
        evbuffer_copyout(in, head, sizeof(head));
        size_t flen;
        const char *why;
        int rc = coord_frame_length(head, sizeof(head), &flen, &why);
        if (rc == 0 && avail < flen)
            break;
        struct coord_msg m;
        if (rc == 0) {
            const uint8_t *frame = evbuffer_pullup(in, (ssize_t)flen);
            rc = frame ? coord_msg_decode(frame, flen, &m, NULL, &why) : -ENOMEM;
        }
        if (rc < 0) {
            evbuffer_drain(in, avail);
            protocol_error(s, 0, rc == -ENOMEM ? "out of memory" : why);
            break;
        }
        handle(s, &m); /* m borrows from the buffer until it is drained */
        if (s->conn)
            evbuffer_drain(in, flen);
    }
    /* VERIFY or GONE: what follows waits (VERIFY) or is dropped (GONE). */
    if (s->conn && s->state == S_GONE)
        evbuffer_drain(in, evbuffer_get_length(in));
    s->busy--;
    session_maybe_free(s);
}

static void
session_unlink(struct session *s)
{
    for (struct session **p = &s->srv->sessions; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            return;
        }
    }
}

static void
session_maybe_free(struct session *s)
{
    if (s->conn || s->verify_pending || s->busy)
        return;
    for (unsigned i = 0; i < s->n_watches; i++)
        free(s->watches[i]);
    free(s);
}

static const char *
close_reason(enum conn_close_reason r)
{
    switch (r) {
    case CONN_CLOSE_PEER:
        return "the node closed the connection";
    case CONN_CLOSE_RESET:
        return "the connection was reset";
    case CONN_CLOSE_BROKEN:
        return "the connection broke";
    case CONN_CLOSE_IDLE:
        return "nothing heard from the node for too long";
    case CONN_CLOSE_TLS:
        return "TLS failed";
    case CONN_CLOSE_SHUTDOWN:
        return "the witness is stopping";
    default:
        return "the witness closed the session";
    }
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct session *s = conn_ctx(conn);
    if (!s)
        return; /* on_open ran out of memory */
    struct coord_server *srv = s->srv;
    bool was_ready = s->authed && !s->replaced;
    s->conn = NULL;
    s->state = S_GONE;
    session_unlink(s);
    /* Only EOF (CONN_CLOSE_PEER) frees the holder's leases at once (docs/cluster.md): a FIN
     * comes from the holder's kernel alone, so its socket was closed, by its core (which drops
     * the witness's vote first) or its death. A reset is not that proof: a firewall's REJECT
     * with tcp-reset or a middlebox that lost state sends one while the holder runs on and
     * counts its last renewal. After a reset, a timeout or any other error (RESET, BROKEN,
     * IDLE, TLS) the leases run out their time. A stopping witness keeps them (the restart
     * rule renews them). */
    if (was_ready) {
        log_info("coord: node %s's session from %s ended: %s", s->member, s->peer,
                 close_reason(reason));
        if (reason == CONN_CLOSE_PEER)
            free_leases(srv, s->member, close_reason(reason));
    }
    session_maybe_free(s);
}

static const struct conn_ops server_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_close = on_close,
};

int
coord_server_new(struct event_base *base, const struct coord_server_options *opt,
                 struct coord_server **srv_r)
{
    if (!opt->store || !opt->verify || !opt->witness || !opt->witness[0] ||
        strlen(opt->witness) > COORD_WIRE_NAME_MAX || opt->fd < 0)
        return TDM_EINVAL;
    struct coord_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->base = base;
    srv->opt = *opt;
    srv->store = opt->store;
    snprintf(srv->witness, sizeof(srv->witness), "%s", opt->witness);
    srv->opt.witness = srv->witness;
    srv->expiry_ev = evtimer_new(base, expiry_cb, srv);
    if (!srv->expiry_ev) {
        free(srv);
        return -ENOMEM;
    }
    struct conn_listener_options lo = {
        .fd = opt->fd,
        .implicit_tls = opt->tls,
        .max_connections = 256,
        .max_per_address = 32,
        .idle_timeout_ms = opt->idle_timeout_ms ? opt->idle_timeout_ms : 30000,
        .max_output = 256 * 1024,
    };
    int rc = conn_listener_new(base, &lo, &server_ops, srv, &srv->listener);
    if (rc != 0) {
        event_free(srv->expiry_ev);
        free(srv);
        return rc;
    }
    schedule_expiry(srv);
    *srv_r = srv;
    return 0;
}

void
coord_server_free(struct coord_server **srvp)
{
    struct coord_server *srv = *srvp;
    if (!srv)
        return;
    *srvp = NULL;
    conn_listener_free(&srv->listener);
    /* Every session went with its connection (on_close); one whose verify is still pending
     * is orphaned, and verify_done frees it. */
    event_free(srv->expiry_ev);
    free(srv);
}

struct status_ctx {
    struct coord_server *srv;
    void (*lease_cb)(void *, const struct coord_server_lease_info *);
    void *ctx;
};

static bool
member_connected(struct coord_server *srv, const char *member)
{
    for (struct session *s = srv->sessions; s; s = s->next)
        if (s->state == S_READY && strcmp(s->member, member) == 0)
            return true;
    return false;
}

static void
status_entry(void *ctx, const struct coord_entry *e)
{
    struct status_ctx *c = ctx;
    struct coord_server_lease_info info = {
        .entry = e,
        .holder_connected = e->holder[0] && member_connected(c->srv, e->holder),
    };
    c->lease_cb(c->ctx, &info);
}

struct count_ctx {
    const char *member;
    unsigned n;
};

static void
count_entry(void *ctx, const struct coord_entry *e)
{
    struct count_ctx *c = ctx;
    if (e->holder[0] && strcmp(e->holder, c->member) == 0)
        c->n++;
}

void
coord_server_status(struct coord_server *srv,
                    void (*lease_cb)(void *ctx, const struct coord_server_lease_info *),
                    void (*session_cb)(void *ctx, const struct coord_server_session_info *),
                    void *ctx)
{
    uint64_t now = tdm_clock_ms();
    struct status_ctx c = {srv, lease_cb, ctx};
    if (lease_cb)
        coord_store_list(srv->store, now, status_entry, &c);
    if (!session_cb)
        return;
    for (struct session *s = srv->sessions; s; s = s->next) {
        struct count_ctx cc = {s->member, 0};
        if (s->state == S_READY)
            coord_store_list(srv->store, now, count_entry, &cc);
        struct coord_server_session_info info = {
            .member = s->state == S_READY ? s->member : "",
            .cluster = s->cluster,
            .peer = s->peer,
            .n_leases = cc.n,
            .connected_ms_ago = now > s->since_ms ? now - s->since_ms : 0,
            .last_request_ms_ago = now > s->last_request_ms ? now - s->last_request_ms : 0,
        };
        session_cb(ctx, &info);
    }
}

size_t
coord_server_sessions(struct coord_server *srv, const char *member, const char *drop_why)
{
    size_t n = 0;
    for (struct session *s = srv ? srv->sessions : NULL, *next; s; s = next) {
        next = s->next; /* closing s may unlink it */
        if (!s->conn || s->state != S_READY || strcmp(s->member, member) != 0)
            continue;
        n++;
        if (!drop_why)
            continue;
        log_info("coord: session of node %s from %s ended: %s", s->member, s->peer, drop_why);
        send_error(s, 0, COORD_CODE_AUTH, drop_why);
        s->state = S_GONE;
        conn_close_after_flush(s->conn);
    }
    return n;
}

void
coord_server_counters(const struct coord_server *srv, struct coord_server_counters *out)
{
    *out = srv->counters;
}

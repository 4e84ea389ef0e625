/*
 * The replication source: connections, HELLO, ACK, POSITION and heartbeats. Shipping the log
 * is repl_source_ship.c, the truncation floor repl_source_floor.c.
 *
 * A connection's life: REPL_SRC_HELLO (only HELLO is accepted) -> REPL_SRC_VERIFYING (the
 * core's verify callback runs; input is paused) -> HELLO_REPLY ok and REPL_SRC_STREAMING (only
 * ACK and ERROR are accepted) -> REPL_SRC_CLOSING. A peer outlives its connection while a
 * chunk job or a verify still refers to it; repl__peer_maybe_free() frees it when neither
 * does.
 */
#include "repl/repl_source_int.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "proto/repl/repl_zstd.h"
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_HEARTBEAT_MS 1000u
#define DEFAULT_IDLE_MS 30000u
#define DEFAULT_HIGH_WATER (4u * 1024u * 1024u)
#define DEFAULT_MAX_COPIES 16u
#define DEFAULT_HOLD_MS (24ull * 3600 * 1000)
#define DEFAULT_HOLD_GENERATIONS 1000u
#define DEFAULT_STARTUP_HOLD_MS (10ull * 60 * 1000)

uint64_t
repl__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
repl__wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct repl_src_db *
repl__db_find(struct repl_source *src, const char *name, size_t len)
{
    for (struct repl_src_db *db = src->dbs; db; db = db->next)
        if (strlen(db->name) == len && memcmp(db->name, name, len) == 0)
            return db;
    return NULL;
}

static const char *
peer_name(const struct repl_src_peer *p)
{
    return p->conn ? conn_peer(p->conn) : "(gone)";
}

/* ---- Peers ---- */

static void
peer_unlink(struct repl_src_peer *p)
{
    struct repl_source *src = p->src;
    if (p->prev)
        p->prev->next = p->next;
    else if (src && src->peers == p)
        src->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->next = p->prev = NULL;
}

void
repl__peer_maybe_free(struct repl_src_peer *p)
{
    if (p->conn || p->job_running || p->verify_pending || p->busy > 0)
        return;
    peer_unlink(p);
    if (p->fd >= 0)
        close(p->fd);
    if (p->seed_fd >= 0)
        close(p->seed_fd);
    repl_zstd_free(&p->zstd);
    free(p->server);
    free(p->database);
    free(p);
}

bool
repl__peer_send(struct repl_src_peer *p, const struct repl_msg *msg)
{
    if (p->conn == NULL)
        return false;
    uint8_t small[512];
    uint8_t *buf = small;
    size_t len;
    const char *error = NULL;
    int rc = repl_msg_encode(msg, small, sizeof(small), &len, &error);
    if (rc == -ENOBUFS)
        rc = repl_msg_encode_alloc(msg, &buf, &len, &error);
    if (rc != 0)
        log_panic("repl source: cannot encode %s: %s", repl_type_name(msg->type), error);
    rc = conn_write(p->conn, buf, len);
    if (buf != small)
        free(buf);
    p->last_sent_us = repl__mono_us();
    return rc == 0 && p->conn != NULL;
}

void
repl__peer_fail(struct repl_src_peer *p, uint16_t code, const char *fmt, ...)
{
    char text[REPL_WIRE_TEXT_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (p->conn == NULL)
        return;
    log_info("repl source: %s %s/%s: %s: %s", peer_name(p), p->server ? p->server : "?",
             p->db ? p->db->name : (p->database ? p->database : "?"), repl_code_name(code), text);
    struct repl_msg m = {.type = REPL_ERROR};
    m.u.error.code = code;
    m.u.error.text = repl_str_c(text[0] ? text : repl_code_name(code));
    repl__peer_send(p, &m);
    if (p->conn)
        conn_close_after_flush(p->conn); /* on_close runs now: p may be gone */
}

/* HELLO refused: the reply, then close. */
static void
peer_refuse(struct repl_src_peer *p, uint16_t code, const char *reason)
{
    if (p->conn == NULL)
        return;
    struct repl_msg m = {.type = REPL_HELLO_REPLY, .request_id = p->hello_id};
    m.u.hello_reply.code = code;
    m.u.hello_reply.reason = repl_str_c(reason);
    if (m.u.hello_reply.reason.len > REPL_WIRE_TEXT_MAX)
        m.u.hello_reply.reason.len = REPL_WIRE_TEXT_MAX;
    if (p->db) {
        memcpy(m.u.hello_reply.guid, p->db->guid, REPL_WIRE_GUID_LEN);
        if (p->db->store) {
            struct store_status st;
            store_get_status(p->db->store, &st);
            m.u.hello_reply.epoch = st.epoch;
            m.u.hello_reply.lowest_generation = st.lowest_generation;
            m.u.hello_reply.current_generation = st.current_generation;
        }
    }
    event_emit(TDM_EV_REPL_SOURCE_COPY_REFUSED, p->db ? p->db->name : p->database,
               "replication of database %s to server %s (%s) refused: %s: %s",
               p->database ? p->database : "?", p->server ? p->server : "?", peer_name(p),
               repl_code_name(code), reason);
    repl__peer_send(p, &m);
    if (p->conn)
        conn_close_after_flush(p->conn);
}

/* ---- POSITION ---- */

static struct repl_src_pos
db_position(struct repl_src_db *db)
{
    pthread_mutex_lock(&db->pos_lock);
    struct repl_src_pos pos = db->pos;
    pthread_mutex_unlock(&db->pos_lock);
    return pos;
}

static void
peer_send_position(struct repl_src_peer *p, const struct repl_src_pos *pos)
{
    struct repl_msg m = {.type = REPL_POSITION};
    m.u.position = (struct repl_position){
        .generation = pos->generation,
        .durable_end = pos->durable_end,
        .durable_lsn = pos->durable_lsn,
        .time_us = repl__wall_us(),
    };
    p->told = *pos;
    repl__peer_send(p, &m);
}

/* ---- HELLO ---- */

static void
hello_accept(struct repl_src_peer *p, struct repl_src_db *db)
{
    struct store_status st;
    store_get_status(db->store, &st);
    struct repl_src_pos pos = db_position(db);

    struct repl_msg m = {.type = REPL_HELLO_REPLY, .request_id = p->hello_id};
    struct repl_hello_reply *r = &m.u.hello_reply;
    r->version = REPL_WIRE_VERSION;
    r->code = REPL_CODE_OK;
    memcpy(r->guid, db->guid, REPL_WIRE_GUID_LEN);
    r->epoch = st.epoch;
    r->mode = db->mode;
    r->lowest_generation = st.lowest_generation;
    r->current_generation = pos.generation;
    r->durable_end = pos.durable_end;

    p->state = REPL_SRC_STREAMING;
    db->n_peers++;
    p->gen = p->hello.start_generation;
    p->off = p->hello.start_offset;
    p->boundary = p->off;
    p->needed = repl__floor_need(p);
    repl__floor_forget(db, p->server);
    repl__floor_update(db);
    event_emit(TDM_EV_REPL_SOURCE_COPY_CONNECTED, db->name,
               "%s copy of database %s on server %s (%s) connected, from generation %llu "
               "offset %llu, mode %s",
               repl_role_name(p->role), db->name, p->server, peer_name(p),
               (unsigned long long)p->gen, (unsigned long long)p->off, repl_mode_name(db->mode));
    if (!repl__peer_send(p, &m))
        return;
    peer_send_position(p, &pos);
    if (p->conn)
        conn_resume(p->conn);
    if (p->conn)
        repl__ship_pump(p);
}

/* A copy starting further back than the floor may be held for would be released at once:
 * refused in HELLO_REPLY instead, with the same code (released, not limit: waiting does not
 * help, only a reseed does). */
static bool
too_far_behind(const struct repl_src_peer *p, struct repl_src_db *db)
{
    struct store_status st;
    store_get_status(db->store, &st);
    uint64_t g = p->hello.start_generation;
    return st.current_generation > g && st.current_generation - g > p->src->opt.hold_generations;
}

static void
verify_done(void *ctx, int status, const char *error)
{
    struct repl_src_peer *p = ctx;
    p->verify_pending = false;
    if (p->src == NULL || p->conn == NULL) {
        /* The connection (or the whole source) went while the core was checking. */
        repl__peer_maybe_free(p);
        return;
    }
    p->busy++;
    char reason[REPL_WIRE_TEXT_MAX + 1];
    struct repl_src_db *db = repl__db_find(p->src, p->database, strlen(p->database));
    if (status == -EACCES) {
        snprintf(reason, sizeof(reason), "server %s may not replicate: %s", p->server,
                 error ? error : "refused");
        peer_refuse(p, REPL_CODE_AUTH, reason);
    } else if (status != 0) {
        snprintf(reason, sizeof(reason), "could not check server %s now: %s", p->server,
                 error ? error : tdm_strerror(status));
        peer_refuse(p, REPL_CODE_INTERNAL, reason);
    } else if (db == NULL) {
        snprintf(reason, sizeof(reason), "no database %s here", p->database);
        peer_refuse(p, REPL_CODE_UNKNOWN_DATABASE, reason);
    } else if (db->store == NULL) {
        p->db = db;
        snprintf(reason, sizeof(reason), "database %s is not active here", db->name);
        peer_refuse(p, REPL_CODE_NOT_ACTIVE, reason);
    } else {
        p->db = db;
        const char *why = NULL;
        uint16_t code = REPL_CODE_OK;
        if (p->seed) {
            /* A seed asks for no position: only the number of copies limits it. */
            if (db->n_peers >= p->src->opt.max_copies) {
                code = REPL_CODE_LIMIT;
                snprintf(reason, sizeof(reason), "database %s already has %u copies connected",
                         db->name, db->n_peers);
                why = reason;
            }
        } else if (!p->hello.guid_zero &&
                   memcmp(p->hello.guid, db->guid, REPL_WIRE_GUID_LEN) != 0) {
            code = REPL_CODE_GUID_MISMATCH;
            snprintf(reason, sizeof(reason),
                     "the copy holds another database named %s (its GUID differs): reseed it",
                     db->name);
            why = reason;
        } else if (too_far_behind(p, db)) {
            code = REPL_CODE_RELEASED;
            snprintf(reason, sizeof(reason),
                     "generation %llu is more than %llu generations behind the current one, "
                     "more than the source holds logs for: reseed",
                     (unsigned long long)p->hello.start_generation,
                     (unsigned long long)p->src->opt.hold_generations);
            why = reason;
        } else if (db->n_peers >= p->src->opt.max_copies) {
            code = REPL_CODE_LIMIT;
            snprintf(reason, sizeof(reason), "database %s already has %u copies connected",
                     db->name, db->n_peers);
            why = reason;
        } else {
            struct repl_hello h = {
                .start_generation = p->hello.start_generation,
                .start_offset = p->hello.start_offset,
                .last_lsn = p->hello.last_lsn,
                .epoch = p->hello.epoch,
            };
            code = repl__ship_check_start(db, &h, reason, sizeof(reason), &why);
        }
        if (code != REPL_CODE_OK) {
            p->db = NULL; /* not one of db's copies */
            peer_refuse(p, code, why);
        } else if (p->seed) {
            repl__seed_accept(p, db);
        } else {
            hello_accept(p, db);
        }
    }
    p->busy--;
    repl__peer_maybe_free(p);
}

static char *
dup_span(struct repl_str s)
{
    char *out = malloc((size_t)s.len + 1);
    if (out == NULL)
        log_fatal("repl source: out of memory");
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return out;
}

static void
handle_hello(struct repl_src_peer *p, const struct repl_hello *h, uint32_t request_id)
{
    p->hello_id = request_id;
    p->server = dup_span(h->server);
    p->database = dup_span(h->database);
    p->role = h->role;
    p->wants_zstd = h->compression == REPL_COMPRESSION_ZSTD;
    p->hello.start_generation = h->start_generation;
    p->hello.start_offset = h->start_offset;
    p->hello.last_lsn = h->last_lsn;
    p->hello.epoch = h->epoch;
    memcpy(p->hello.guid, h->guid, REPL_WIRE_GUID_LEN);
    p->hello.guid_zero = true;
    for (unsigned i = 0; i < REPL_WIRE_GUID_LEN; i++)
        if (h->guid[i])
            p->hello.guid_zero = false;

    uint16_t version;
    const char *error = NULL;
    if (repl_version_negotiate(h->version_min, h->version_max, &version, &error) != 0) {
        peer_refuse(p, REPL_CODE_VERSION, error);
        return;
    }
    char *key = dup_span(h->key);
    p->state = REPL_SRC_VERIFYING;
    p->verify_pending = true;
    conn_pause(p->conn);
    p->src->opt.verify(p->src->opt.verify_ctx, p->server, key, h->key.len, verify_done, p);
    /* Keys do not linger in memory longer than the check needs them. */
    explicit_bzero(key, h->key.len);
    free(key);
}

/* A seed connection's first message: checked as HELLO is, without a position. */
static void
handle_seed_request(struct repl_src_peer *p, const struct repl_seed_request *q, uint32_t request_id)
{
    p->seed = true;
    p->hello_id = request_id;
    p->server = dup_span(q->server);
    p->database = dup_span(q->database);
    p->role = q->role;
    uint16_t version;
    const char *error = NULL;
    if (repl_version_negotiate(q->version_min, q->version_max, &version, &error) != 0) {
        peer_refuse(p, REPL_CODE_VERSION, error);
        return;
    }
    char *key = dup_span(q->key);
    p->state = REPL_SRC_VERIFYING;
    p->verify_pending = true;
    conn_pause(p->conn);
    p->src->opt.verify(p->src->opt.verify_ctx, p->server, key, q->key.len, verify_done, p);
    explicit_bzero(key, q->key.len);
    free(key);
}

/* ---- ACK ---- */

static void
handle_ack(struct repl_src_peer *p, const struct repl_ack *a)
{
    /* A copy cannot hold more than it had at HELLO or was sent since: a claim beyond that
     * (a bug of the copy's) must neither release a sync commit nor lift the floor. */
    uint64_t held = p->shipped_lsn > p->hello.last_lsn ? p->shipped_lsn : p->hello.last_lsn;
    struct repl_ack capped = *a;
    if (capped.durable_lsn > held)
        capped.durable_lsn = held;
    if (capped.replayed_lsn > held)
        capped.replayed_lsn = held;
    p->acked = true;
    p->last_ack = capped;
    p->last_ack_us = repl__wall_us();
    if (p->src->opt.ack)
        p->src->opt.ack(p->src->opt.ack_ctx, p->db->name, p->server, p->role, &capped);
    p->needed = repl__floor_need(p);
    repl__floor_update(p->db); /* may release (close) this very copy */
}

/* ---- Connection callbacks ---- */

static void
on_open(struct conn *conn, void *listener_ctx)
{
    struct repl_source *src = listener_ctx;
    struct repl_src_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        log_fatal("repl source: out of memory");
    p->src = src;
    p->conn = conn;
    p->fd = -1;
    p->seed_fd = -1;
    p->state = REPL_SRC_HELLO;
    p->last_sent_us = repl__mono_us();
    p->next = src->peers;
    if (src->peers)
        src->peers->prev = p;
    src->peers = p;
    conn_set_ctx(conn, p);
}

/* One decoded message. Returns false when the peer is closing (stop reading). */
static bool
handle_msg(struct repl_src_peer *p, const struct repl_msg *m)
{
    switch (p->state) {
    case REPL_SRC_HELLO:
        if (m->type == REPL_SEED_REQUEST) {
            handle_seed_request(p, &m->u.seed_request, m->request_id);
            return p->conn != NULL && p->state == REPL_SRC_SEEDING;
        }
        if (m->type != REPL_HELLO) {
            repl__peer_fail(p, REPL_CODE_PROTOCOL, "%s before HELLO", repl_type_name(m->type));
            return false;
        }
        handle_hello(p, &m->u.hello, m->request_id);
        return p->conn != NULL && p->state == REPL_SRC_STREAMING;
    case REPL_SRC_SEEDING:
        /* ACKs on a seed connection are a sign of life only (the idle timer sees them). */
        if (m->type == REPL_ACK)
            return true;
        if (m->type == REPL_ERROR) {
            conn_close_after_flush(p->conn);
            return false;
        }
        repl__peer_fail(p, REPL_CODE_PROTOCOL, "unexpected %s on a seed connection",
                        repl_type_name(m->type));
        return false;
    case REPL_SRC_STREAMING:
        if (m->type == REPL_ACK) {
            handle_ack(p, &m->u.ack);
            return p->conn != NULL;
        }
        if (m->type == REPL_ERROR) {
            log_info("repl source: %s %s/%s: the copy ended with %s: %.*s", peer_name(p), p->server,
                     p->db->name, repl_code_name(m->u.error.code), (int)m->u.error.text.len,
                     m->u.error.text.ptr);
            conn_close_after_flush(p->conn);
            return false;
        }
        repl__peer_fail(p, REPL_CODE_PROTOCOL, "unexpected %s from a copy",
                        repl_type_name(m->type));
        return false;
    default:
        return false;
    }
}

static void
on_data(struct conn *conn, struct evbuffer *in)
{
    struct repl_src_peer *p = conn_ctx(conn);
    p->busy++;
    while (p->conn && (p->state == REPL_SRC_HELLO || p->state == REPL_SRC_STREAMING ||
                       p->state == REPL_SRC_SEEDING)) {
        uint8_t head[4];
        if (evbuffer_copyout(in, head, sizeof(head)) < (ev_ssize_t)sizeof(head))
            break;
        size_t flen;
        const char *error = NULL;
        if (repl_frame_length(head, sizeof(head), &flen, &error) != 0) {
            repl__peer_fail(p, REPL_CODE_PROTOCOL, "%s", error);
            break;
        }
        if (evbuffer_get_length(in) < flen)
            break;
        /* Taken out of the buffer before it is handled: handling can resume the connection,
         * which hands the rest of the input to a nested on_data. A copy's frames are small
         * (HELLO, ACK); a large one is a protocol error found by the decoder. */
        uint8_t small[4096];
        uint8_t *frame = flen <= sizeof(small) ? small : malloc(flen);
        if (frame == NULL)
            log_fatal("repl source: out of memory");
        evbuffer_remove(in, frame, flen);
        struct repl_msg m;
        int rc = repl_msg_decode(frame, flen, &m, NULL, &error);
        bool go_on = false;
        if (rc != 0)
            repl__peer_fail(p, REPL_CODE_PROTOCOL, "%s", error);
        else
            go_on = handle_msg(p, &m);
        if (frame != small)
            free(frame);
        if (!go_on)
            break;
    }
    p->busy--;
    repl__peer_maybe_free(p);
}

static void
on_drained(struct conn *conn)
{
    struct repl_src_peer *p = conn_ctx(conn);
    if (p->state == REPL_SRC_STREAMING)
        repl__ship_pump(p);
    else if (p->state == REPL_SRC_SEEDING)
        repl__seed_pump(p);
}

static void
on_close(struct conn *conn, enum conn_close_reason reason)
{
    struct repl_src_peer *p = conn_ctx(conn);
    if (reason == CONN_CLOSE_IDLE && p->state != REPL_SRC_CLOSING) {
        struct repl_msg m = {.type = REPL_ERROR};
        m.u.error.code = REPL_CODE_TIMEOUT;
        m.u.error.text = repl_str_c("nothing heard from the copy for too long");
        repl__peer_send(p, &m);
    } else if (reason == CONN_CLOSE_SHUTDOWN) {
        struct repl_msg m = {.type = REPL_ERROR};
        m.u.error.code = REPL_CODE_SHUTDOWN;
        m.u.error.text = repl_str_c("the replication source is stopping");
        repl__peer_send(p, &m);
    }
    bool was_streaming = p->state == REPL_SRC_STREAMING || p->state == REPL_SRC_SEEDING;
    p->state = REPL_SRC_CLOSING;
    if (was_streaming && p->db) {
        p->db->n_peers--;
        event_emit(TDM_EV_REPL_SOURCE_COPY_DISCONNECTED, p->db->name,
                   "%s copy of database %s on server %s (%s) disconnected after %llu bytes "
                   "(%s)",
                   repl_role_name(p->role), p->db->name, p->server, conn_peer(conn),
                   (unsigned long long)p->bytes_sent,
                   reason == CONN_CLOSE_IDLE    ? "idle timeout"
                   : reason == CONN_CLOSE_PEER  ? "closed by the copy"
                   : reason == CONN_CLOSE_RESET ? "connection reset"
                   : reason == CONN_CLOSE_BROKEN ? "connection broke"
                   : reason == CONN_CLOSE_TLS   ? "TLS failure"
                   : reason == CONN_CLOSE_LOCAL ? "closed here"
                                                : "source stopping");
        /* A seed whose copy already connected again with HELLO (its close came second) is
         * not held: that session holds what the copy needs. */
        bool again = false;
        for (struct repl_src_peer *q = p->src->peers; p->seed && q; q = q->next)
            again |= q != p && q->db == p->db && q->state == REPL_SRC_STREAMING && q->server &&
                     p->server && strcmp(q->server, p->server) == 0;
        if (!p->src->freeing) {
            if (!again)
                repl__floor_depart(p->db, p);
            repl__floor_update(p->db);
        }
    }
    p->conn = NULL;
    repl__peer_maybe_free(p);
}

static const struct conn_ops source_conn_ops = {
    .on_open = on_open,
    .on_data = on_data,
    .on_drained = on_drained,
    .on_close = on_close,
};

/* ---- Databases ---- */

/* The store's log thread, after each durable sync: keep it short. */
static void
durable_hook(void *ctx, uint64_t generation, uint64_t durable_end, uint64_t durable_lsn)
{
    struct repl_src_db *db = ctx;
    pthread_mutex_lock(&db->pos_lock);
    db->pos = (struct repl_src_pos){generation, durable_end, durable_lsn};
    pthread_mutex_unlock(&db->pos_lock);
    uint64_t one = 1;
    /* EAGAIN means the counter is already pending: the loop will look anyway. */
    ssize_t n = write(db->efd, &one, sizeof(one));
    (void)n;
}

static void
db_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct repl_src_db *db = arg;
    uint64_t count;
    ssize_t n = read(fd, &count, sizeof(count));
    (void)n;
    struct repl_src_pos pos = db_position(db);
    struct repl_src_peer *next;
    for (struct repl_src_peer *p = db->src->peers; p; p = next) {
        next = p->next;
        if (p->db != db || p->state != REPL_SRC_STREAMING || p->conn == NULL)
            continue;
        p->busy++;
        if (memcmp(&p->told, &pos, sizeof(pos)) != 0)
            peer_send_position(p, &pos);
        if (p->conn)
            repl__ship_pump(p);
        p->busy--;
        next = p->next; /* p stays linked while busy; its successor is current */
        repl__peer_maybe_free(p);
    }
}

int
repl_source_add_database(struct repl_source *src, const char *name, struct store *store,
                         uint16_t mode)
{
    size_t len = strlen(name);
    if (len == 0 || len > REPL_WIRE_NAME_MAX || (store && repl_mode_name(mode) == NULL))
        return TDM_EINVAL;
    if (repl__db_find(src, name, len))
        return TDM_EEXIST;
    struct repl_src_db *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return -ENOMEM;
    db->src = src;
    db->name = strdup(name);
    db->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    db->wake =
        db->efd >= 0 ? event_new(src->base, db->efd, EV_READ | EV_PERSIST, db_wake_cb, db) : NULL;
    if (db->name == NULL || db->wake == NULL || event_add(db->wake, NULL) != 0) {
        int rc = db->efd < 0 ? -errno : -ENOMEM;
        if (db->wake)
            event_free(db->wake);
        if (db->efd >= 0)
            close(db->efd);
        free(db->name);
        free(db);
        return rc;
    }
    pthread_mutex_init(&db->pos_lock, NULL);
    db->store = store;
    db->mode = mode;
    db->floor = UINT64_MAX;
    if (store) {
        struct store_status st;
        store_get_status(store, &st);
        memcpy(db->guid, st.guid, REPL_WIRE_GUID_LEN);
        struct store_log_extent ext = {0};
        if (store_log_extent(store, st.current_generation, &ext) != 0)
            ext.durable_end = 0;
        db->pos = (struct repl_src_pos){st.current_generation, ext.durable_end, st.durable_lsn};
        db->startup_floor = st.lowest_generation;
        db->startup_hold_until_us = repl__mono_us() + src->opt.startup_hold_ms * 1000u;
        store_set_durable_hook(store, durable_hook, db);
    }
    db->next = src->dbs;
    src->dbs = db;
    if (store)
        repl__floor_update(db);
    return 0;
}

static void
db_free(struct repl_src_db *db)
{
    /* The floor stays where the copies last needed it: the store may still checkpoint and
     * truncate after this (store_close() at shutdown does), and lifting it then deleted
     * generations a lagging copy needed, which then had to be reseeded. When the database is
     * added again (the next start) the startup hold keeps its lowest generation for the
     * copies to return. */
    if (db->store)
        store_set_durable_hook(db->store, NULL, NULL);
    event_free(db->wake);
    close(db->efd);
    pthread_mutex_destroy(&db->pos_lock);
    repl__floor_free_held(db);
    free(db->name);
    free(db);
}

void
repl_source_remove_database(struct repl_source *src, const char *name)
{
    struct repl_src_db **pp = &src->dbs;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    struct repl_src_db *db = *pp;
    if (db == NULL)
        return;
    *pp = db->next;
    struct repl_src_peer *next;
    for (struct repl_src_peer *p = src->peers; p; p = next) {
        next = p->next;
        if (p->db != db)
            continue;
        p->busy++;
        /* Detached first, so closing does not hold a floor on a database going away. */
        if (p->state == REPL_SRC_STREAMING || p->state == REPL_SRC_SEEDING)
            db->n_peers--;
        p->state = REPL_SRC_CLOSING;
        p->db = NULL;
        repl__peer_fail(p, REPL_CODE_SHUTDOWN, "database %s is no longer served here", name);
        p->busy--;
        next = p->next;
        repl__peer_maybe_free(p);
    }
    db_free(db);
}

/* ---- The source ---- */

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct repl_source *src = arg;
    uint64_t now = repl__mono_us();
    struct repl_src_peer *next;
    for (struct repl_src_peer *p = src->peers; p; p = next) {
        next = p->next;
        if (p->state == REPL_SRC_SEEDING && p->conn && !p->job_running) {
            /* A chunk the seed helper's full queue refused. */
            p->busy++;
            repl__seed_pump(p);
            p->busy--;
            next = p->next;
            repl__peer_maybe_free(p);
            continue;
        }
        if (p->state != REPL_SRC_STREAMING || p->conn == NULL)
            continue;
        p->busy++;
        if (now - p->last_sent_us >= (uint64_t)src->opt.heartbeat_ms * 1000u) {
            struct repl_src_pos pos = db_position(p->db);
            peer_send_position(p, &pos);
        }
        /* A chunk the helper's full queue refused is retried here. */
        if (p->conn && !p->job_running)
            repl__ship_pump(p);
        p->busy--;
        next = p->next;
        repl__peer_maybe_free(p);
    }
    for (struct repl_src_db *db = src->dbs; db; db = db->next)
        if (db->store)
            repl__floor_update(db);
}

int
repl_source_new(struct event_base *base, const struct repl_source_options *opt,
                struct repl_source **src_r)
{
    if (opt->verify == NULL || opt->fd < 0)
        return TDM_EINVAL;
    struct repl_source *src = calloc(1, sizeof(*src));
    if (src == NULL)
        return -ENOMEM;
    src->base = base;
    src->opt = *opt;
    struct repl_source_options *o = &src->opt;
    if (o->heartbeat_ms == 0)
        o->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    if (o->idle_timeout_ms == 0)
        o->idle_timeout_ms = DEFAULT_IDLE_MS;
    if (o->high_water == 0)
        o->high_water = DEFAULT_HIGH_WATER;
    if (o->max_copies == 0)
        o->max_copies = DEFAULT_MAX_COPIES;
    if (o->hold_ms == 0)
        o->hold_ms = DEFAULT_HOLD_MS;
    if (o->hold_generations == 0)
        o->hold_generations = DEFAULT_HOLD_GENERATIONS;
    if (o->startup_hold_ms == 0)
        o->startup_hold_ms = DEFAULT_STARTUP_HOLD_MS;

    /* One job per copy at most: a queue this deep is never full in practice, and when it
     * is, the tick retries. */
    int rc = offload_new(base, 4096, &src->offload);
    if (rc != 0) {
        free(src);
        return rc;
    }
    /* Snapshots take long: on a thread of their own, so log chunks never wait behind one. */
    rc = offload_new(base, 64, &src->seed_offload);
    if (rc != 0) {
        offload_free(&src->offload);
        free(src);
        return rc;
    }
    /* Heartbeats are due every heartbeat_ms of silence; looking four times as often keeps
     * them within a quarter period of due. */
    uint32_t tick_ms = o->heartbeat_ms / 4 ? o->heartbeat_ms / 4 : 1;
    struct timeval tv = {tick_ms / 1000, (tick_ms % 1000) * 1000};
    src->tick = event_new(base, -1, EV_PERSIST, tick_cb, src);
    if (src->tick == NULL || event_add(src->tick, &tv) != 0) {
        if (src->tick)
            event_free(src->tick);
        offload_free(&src->seed_offload);
        offload_free(&src->offload);
        free(src);
        return -ENOMEM;
    }
    struct conn_listener_options lo = {
        .fd = o->fd,
        .implicit_tls = o->tls,
        .max_connections = 1024,
        .max_per_address = 256,
        .idle_timeout_ms = o->idle_timeout_ms,
        .max_output = o->high_water,
    };
    rc = conn_listener_new(base, &lo, &source_conn_ops, src, &src->listener);
    if (rc != 0) {
        event_free(src->tick);
        offload_free(&src->seed_offload);
        offload_free(&src->offload);
        free(src);
        return rc;
    }
    *src_r = src;
    return 0;
}

void
repl_source_free(struct repl_source **srcp)
{
    struct repl_source *src = *srcp;
    if (src == NULL)
        return;
    src->freeing = true;
    conn_listener_free(&src->listener); /* on_close for each: ERROR shutdown */
    offload_free(&src->offload);        /* finishes every chunk job's done */
    offload_free(&src->seed_offload);   /* and every snapshot's */
    /* What is left waits for the core's verify to answer: orphaned, freed by verify_done. */
    while (src->peers) {
        struct repl_src_peer *p = src->peers;
        src->peers = p->next;
        p->next = p->prev = NULL;
        p->src = NULL;
        p->db = NULL;
        if (!p->verify_pending) {
            p->busy = 0;
            p->conn = NULL;
            p->job_running = false;
            repl__peer_maybe_free(p);
        }
    }
    while (src->dbs) {
        struct repl_src_db *db = src->dbs;
        src->dbs = db->next;
        db_free(db);
    }
    event_free(src->tick);
    free(src);
    *srcp = NULL;
}

void
repl_source_copies(struct repl_source *src, repl_source_copy_cb *cb, void *ctx)
{
    for (struct repl_src_peer *p = src->peers; p; p = p->next) {
        if (p->state != REPL_SRC_STREAMING || p->db == NULL)
            continue;
        struct repl_source_copy_info info = {
            .server = p->server,
            .database = p->db->name,
            .peer = p->conn ? conn_peer(p->conn) : NULL,
            .role = p->role,
            .connected = true,
            .acked = p->acked,
            .last_ack = p->last_ack,
            .last_ack_us = p->last_ack_us,
            .sent_generation = p->gen,
            .sent_offset = p->off,
            .bytes_sent = p->bytes_sent,
            .bytes_raw = p->bytes_raw,
            .needed_generation = p->needed,
        };
        cb(ctx, &info);
    }
    for (struct repl_src_db *db = src->dbs; db; db = db->next)
        for (struct repl_src_held *h = db->held; h; h = h->next) {
            struct repl_source_copy_info info = {
                .server = h->server,
                .database = db->name,
                .role = h->role,
                .acked = h->last_ack_us != 0,
                .last_ack = h->last_ack,
                .last_ack_us = h->last_ack_us,
                .needed_generation = h->needed,
            };
            cb(ctx, &info);
        }
}

int
repl_source_add_socket(struct repl_source *src, int fd, uint32_t tag)
{
    return conn_listener_add_socket(src->listener, fd, tag);
}

void
repl_source_close_socket(struct repl_source *src, uint32_t tag)
{
    conn_listener_close_socket(src->listener, tag);
}

size_t
repl_source_sessions(struct repl_source *src, const char *server, const char *drop_why)
{
    size_t n = 0;
    for (struct repl_src_peer *p = src ? src->peers : NULL, *next; p; p = next) {
        next = p->next; /* closing p may free it */
        if (!p->conn || !p->server || strcmp(p->server, server) != 0 ||
            (p->state != REPL_SRC_STREAMING && p->state != REPL_SRC_SEEDING))
            continue;
        n++;
        if (drop_why)
            repl__peer_fail(p, REPL_CODE_AUTH, "%s", drop_why);
    }
    return n;
}

/*
 * The core's side of the workers' IPC (docs/tandemd.md, "Core socket"; wire format
 * docs/formats/ipc.md): the unix socket <datadir>/run/core.sock, on the core's libevent loop.
 * This file owns the connections: accepting, reading frames, HELLO, STATUS, DB_STATUS and the
 * subscription sets; commits and the CHANGED they cause are core_commit.c's.
 *
 * Lifetimes: a connection that ends with commits in flight is closed (socket, buffers) at once,
 * but its struct stays, as a zombie, until the last of those commits comes back; only then is
 * it freed. The same guard (busy) keeps a connection alive while code that uses it runs.
 *
 * Limits, so one worker cannot hurt the others: at most CORE_IPC_MAX_INFLIGHT commits in flight
 * per connection (beyond that the core stops reading from it until replies go out: back
 * pressure, not an error); at most CORE_IPC_MAX_OUTPUT bytes queued to it (a worker that stops
 * reading is dropped); at most TDM_IPC_MAX_SUBSCRIPTIONS subscriptions. A malformed or out-of-place
 * message ends that connection only, with event 2003.
 */
#include "tandemd/core_ipc_int.h"

#include "lib/err.h"
#include "lib/core_link.h"
#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CORE_IPC_MAX_OUTPUT (8u << 20)

struct core_ipc_stats tandemd__core_stats;
struct core_conn *tandemd__conns;

static struct event_base *ipc_base;
static struct evconnlistener *ipc_listener;
static char *ipc_path;
static size_t n_conns;
static size_t n_zombies;

/* ---- Connection life ---- */

void
tandemd__conn_free_if_done(struct core_conn *c)
{
    if (!c->closed || c->busy || c->inflight > 0)
        return;
    free(c);
    n_zombies--;
}

/* Closes the socket at once; the struct lives on while commits are in flight. */
static void
conn_close(struct core_conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    n_zombies++;
    tandemd__subs_drop(c); /* a closed connection is told nothing more */
    bufferevent_free(c->bev);
    c->bev = NULL;
    ipc_reader_free(&c->reader);
    if (c->prev)
        c->prev->next = c->next;
    else
        tandemd__conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    n_conns--;
    tandemd__conn_free_if_done(c);
}

static void
conn_bug(struct core_conn *c, const char *what, const char *why)
{
    tandemd__core_stats.protocol_errors_total++;
    char subject[32];
    snprintf(subject, sizeof(subject), "worker pid %u", (unsigned)c->pid);
    event_emit(TDM_EV_PROCESS_IPC_ERROR, subject,
               "%s on the core socket: %s; the connection is closed", what, why);
    conn_close(c);
}

void
tandemd__conn_send(struct core_conn *c, const struct ipc_msg *msg)
{
    if (c->closed)
        return;
    uint8_t *buf;
    size_t len;
    const char *why;
    int ret = ipc_msg_encode_alloc(msg, &buf, &len, &why);
    if (ret == -ENOMEM)
        log_fatal("out of memory");
    /* Our own message breaking a rule is our bug, caught here rather than in the worker. */
    if (ret < 0)
        log_panic("cannot encode %s: %s", ipc_type_name(msg->type), why);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) + len > CORE_IPC_MAX_OUTPUT) {
        free(buf);
        tandemd__core_stats.slow_dropped_total++;
        log_error("worker pid %u does not read its replies (%zu bytes queued); dropping it",
                  (unsigned)c->pid, evbuffer_get_length(out));
        conn_close(c);
        return;
    }
    if (evbuffer_add(out, buf, len) < 0)
        log_fatal("out of memory");
    free(buf);
}

/* ---- Requests ---- */

char *
tandemd__xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        log_fatal("out of memory");
    return d;
}

static void
put_counter(struct ipc_status_reply *r, const char *name, uint64_t value)
{
    r->counters[r->n_counters++] = (struct ipc_counter){ipc_str_c(name), value};
}

static void
handle_status(struct core_conn *c, uint32_t request_id)
{
    /* ~6 KiB of reply: static, the loop is single-threaded. */
    static struct ipc_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_IPC_STATUS_REPLY;
    msg.request_id = request_id;
    struct ipc_status_reply *r = &msg.u.status_reply;
    uint64_t mounted = 0, failed = 0;
    for (size_t i = 0; i < tandemd__core_db_count(); i++) {
        const char *name, *kind;
        struct store *store;
        tandemd__core_db_get(i, &name, &kind, &store);
        if (store)
            mounted++;
        else
            failed++;
    }
    put_counter(r, "tandem_core_databases_mounted", mounted);
    put_counter(r, "tandem_core_databases_refused", failed);
    put_counter(r, "tandem_core_ipc_connections", n_conns);
    put_counter(r, "tandem_core_ipc_connections_total", tandemd__core_stats.connections_total);
    put_counter(r, "tandem_core_ipc_commits_total", tandemd__core_stats.commits_total);
    put_counter(r, "tandem_core_ipc_commit_errors_total", tandemd__core_stats.commit_errors_total);
    put_counter(r, "tandem_core_ipc_protocol_errors_total",
                tandemd__core_stats.protocol_errors_total);
    put_counter(r, "tandem_core_ipc_slow_workers_dropped_total",
                tandemd__core_stats.slow_dropped_total);
    put_counter(r, "tandem_core_ipc_changed_sent_total", tandemd__core_stats.changed_sent_total);
    tandemd__conn_send(c, &msg);
}

static void
handle_db_status(struct core_conn *c, uint32_t request_id)
{
    static struct ipc_msg msg;
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_IPC_DB_STATUS_REPLY;
    msg.request_id = request_id;
    struct ipc_db_status_reply *r = &msg.u.db_status_reply;
    size_t n = tandemd__core_db_count();
    if (n > TDM_IPC_MAX_DATABASES) {
        log_warn("DB_STATUS lists the first %u of %zu databases", TDM_IPC_MAX_DATABASES, n);
        n = TDM_IPC_MAX_DATABASES;
    }
    /* core.c keeps them in ascending name order, as the message requires. */
    for (size_t i = 0; i < n; i++) {
        const char *name, *kind;
        struct store *store;
        tandemd__core_db_get(i, &name, &kind, &store);
        struct ipc_db_status *d = &r->databases[r->n_databases++];
        d->name = ipc_str_c(name);
        d->kind = ipc_str_c(kind);
        if (!store) {
            d->state = TDM_IPC_DB_FAILED;
            continue;
        }
        struct store_status st;
        store_get_status(store, &st);
        d->state = st.failed         ? TDM_IPC_DB_FAILED
                   : st.disk_reserve ? TDM_IPC_DB_DISK_RESERVE
                                     : TDM_IPC_DB_MOUNTED;
        d->last_lsn = st.last_lsn;
        d->durable_lsn = st.durable_lsn;
        d->applied_lsn = st.applied_lsn;
        d->checkpoint_lsn = st.checkpoint_lsn;
        d->current_generation = st.current_generation;
        d->lowest_generation = st.lowest_generation;
        d->commits = st.commits;
        d->syncs = st.syncs;
        const char *sync = tandemd__sync_state(name);
        d->sync = !sync ? 0 : !strcmp(sync, "sync") ? 1 : 2;
    }
    tandemd__conn_send(c, &msg);
}

/* ---- DB_DISMOUNTED ---- */

/* msg gets every database fenced or dismounted now (a dismount fences first: its sessions end
 * from that instant), in core.c's name order, as the message requires. False when none. */
static bool
dismounted_fill(struct ipc_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = TDM_IPC_DB_DISMOUNTED;
    struct ipc_db_dismounted *d = &msg->u.db_dismounted;
    for (size_t i = 0; i < tandemd__core_db_count(); i++) {
        const char *name, *kind;
        struct store *store;
        bool dismounted;
        tandemd__core_db_get(i, &name, &kind, &store);
        tandemd__core_db_lookup(name, strlen(name), &store, &kind, &dismounted);
        if (!dismounted && !tandemd__core_db_fenced(name))
            continue;
        if (d->n_databases == TDM_IPC_MAX_DATABASES) {
            log_error("DB_DISMOUNTED lists the first %u dismounted databases only",
                      TDM_IPC_MAX_DATABASES);
            break;
        }
        d->databases[d->n_databases++] = ipc_str_c(name);
    }
    return d->n_databases > 0;
}

void
tandemd__core_ipc_dismounted_push(void)
{
    static struct ipc_msg msg; /* ~1.6 KiB; the loop is single-threaded */
    dismounted_fill(&msg);
    /* A send may drop a slow worker: take the next one first. */
    for (struct core_conn *c = tandemd__conns, *next; c; c = next) {
        next = c->next;
        if (c->hello_done)
            tandemd__conn_send(c, &msg);
    }
}

static void
handle_subscribe(struct core_conn *c, const struct ipc_msg *msg)
{
    if (msg->type == TDM_IPC_UNSUBSCRIBE) {
        tandemd__subs_remove(c, &msg->u.subscribe); /* idempotent: gone already is fine */
        return;
    }
    int ret = tandemd__subs_add(c, &msg->u.subscribe);
    if (ret == TDM_ELIMIT)
        conn_bug(c, "SUBSCRIBE", "more than TDM_IPC_MAX_SUBSCRIPTIONS subscriptions");
    else if (ret == 0)
        tandemd__commit_announce(c, &msg->u.subscribe);
}

static void
handle_hello(struct core_conn *c, const struct ipc_msg *msg)
{
    const struct ipc_hello *h = &msg->u.hello;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    int fd = bufferevent_getfd(c->bev);
    c->pid = h->pid;
    c->kind = h->kind;
    /* A HELLO that names another process is a confused or lying peer. */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0 &&
        (uint32_t)cred.pid != h->pid) {
        conn_bug(c, "HELLO", "its pid is not the sender's");
        return;
    }
    struct ipc_msg reply = {.type = TDM_IPC_HELLO_REPLY, .request_id = msg->request_id};
    const char *why;
    if (ipc_version_negotiate(h->version_min, h->version_max, &reply.u.hello_reply.version, &why) <
        0) {
        /* A version mismatch is an upgrade in progress, not a bug: say why and close. */
        reply.u.hello_reply.reason = ipc_str_c(why);
        log_warn("worker pid %u refused: %s", (unsigned)h->pid, why);
        tandemd__conn_send(c, &reply);
        c->close_on_flush = true;
        return;
    }
    c->hello_done = true;
    log_debug("worker pid %u (%s) connected, IPC version %u", (unsigned)h->pid,
              ipc_worker_kind_name(h->kind), (unsigned)reply.u.hello_reply.version);
    tandemd__conn_send(c, &reply);
    /* A worker that starts, or comes back after the core restarted, learns what is down here;
     * nothing sent means nothing is (ipc.h). */
    static struct ipc_msg down;
    if (dismounted_fill(&down))
        tandemd__conn_send(c, &down);
}

static void
handle(struct core_conn *c, const struct ipc_msg *msg)
{
    if (!c->hello_done) {
        if (msg->type == TDM_IPC_HELLO)
            handle_hello(c, msg);
        else
            conn_bug(c, ipc_type_name(msg->type), "sent before HELLO");
        return;
    }
    switch (msg->type) {
    case TDM_IPC_COMMIT:
        tandemd__commit_handle(c, msg);
        return;
    case TDM_IPC_STATUS_REQUEST:
        handle_status(c, msg->request_id);
        return;
    case TDM_IPC_DB_STATUS_REQUEST:
        handle_db_status(c, msg->request_id);
        return;
    case TDM_IPC_COPY_STATUS_REQUEST:
        tandemd__copy_status_handle(c, msg->request_id);
        return;
    case TDM_IPC_COPY_CONTROL:
        tandemd__copy_control_handle(c, msg);
        return;
    case TDM_IPC_CMS_STATUS_REQUEST:
        tandemd__cms_status_handle(c, msg->request_id);
        return;
    case TDM_IPC_CLUSTER_STATUS_REQUEST:
        tandemd__cluster_status_handle(c, msg->request_id);
        return;
    case TDM_IPC_CMS_MOVE:
        tandemd__cms_move_handle(c, msg);
        return;
    case TDM_IPC_SUBSCRIBE:
    case TDM_IPC_UNSUBSCRIBE:
        handle_subscribe(c, msg);
        return;
    default:
        conn_bug(c, ipc_type_name(msg->type), "not a message a worker sends to the core");
        return;
    }
}

/* ---- Reading ---- */

/* Handles whole frames from the input until it is empty, the connection closes, or too many
 * commits are in flight (then reading pauses until replies go out). */
void
tandemd__conn_process(struct core_conn *c)
{
    c->busy++;
    while (!c->closed && !c->close_on_flush) {
        if (c->inflight >= CORE_IPC_MAX_INFLIGHT) {
            c->paused = true;
            bufferevent_disable(c->bev, EV_READ);
            break;
        }
        struct evbuffer *in = bufferevent_get_input(c->bev);
        size_t avail = evbuffer_get_contiguous_space(in);
        if (avail == 0)
            break;
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t len = avail;
        struct ipc_frame frame;
        struct ipc_msg msg;
        const char *why;
        int ret = ipc_reader_next(c->reader, &data, &len, &frame, &why);
        if (ret == -ENOMEM)
            log_fatal("out of memory");
        if (ret < 0) {
            conn_bug(c, "a malformed message", why);
            break;
        }
        if (ret == 1 && ipc_msg_decode_frame(&frame, &msg, &why) < 0) {
            conn_bug(c, "a malformed message", why);
            break;
        }
        /* Handle before draining: msg borrows from the chunk. */
        if (ret == 1)
            handle(c, &msg);
        if (!c->closed)
            evbuffer_drain(in, avail - len);
    }
    c->busy--;
    tandemd__conn_free_if_done(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    tandemd__conn_process(arg);
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct core_conn *c = arg;
    if (c->close_on_flush)
        conn_close(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct core_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        log_debug("worker pid %u disconnected", (unsigned)c->pid);
        conn_close(c);
    }
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    (void)arg;
    struct core_conn *c = calloc(1, sizeof(*c));
    if (!c)
        log_fatal("out of memory");
    if (ipc_reader_new(0, &c->reader) < 0)
        log_fatal("out of memory");
    c->bev = bufferevent_socket_new(ipc_base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        log_fatal("cannot set up a worker connection");
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
    c->next = tandemd__conns;
    if (tandemd__conns)
        tandemd__conns->prev = c;
    tandemd__conns = c;
    n_conns++;
    tandemd__core_stats.connections_total++;
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and the like: the listener retries on the next readiness; say so once each. */
    log_error("core socket accept: %s", strerror(errno));
}

/* ---- Start and stop ---- */

void
tandemd__core_ipc_start(struct event_base *base, const char *datadir)
{
    ipc_base = base;
    tandemd__commit_start(base);

    if (asprintf(&ipc_path, "%s/" CORE_LINK_SOCKET, datadir) < 0)
        log_fatal("out of memory");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(ipc_path) >= sizeof(sun.sun_path)) {
        log_error("%s: path longer than a unix socket allows (%zu bytes); workers cannot reach "
                  "the core: use a shorter datadir",
                  ipc_path, sizeof(sun.sun_path) - 1);
        return;
    }
    memcpy(sun.sun_path, ipc_path, strlen(ipc_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        log_fatal("socket: %s", strerror(errno));
    /* The datadir lock makes us the only tandemd here: a socket file left there is a previous
     * core's, and binding needs the name free. */
    if (unlink(ipc_path) < 0 && errno != ENOENT)
        log_error("cannot remove the stale %s: %s", ipc_path, strerror(errno));
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(ipc_path, 0600) < 0) {
        /* The databases are still worth serving to nothing but a restart; keep them mounted
         * and say what is wrong (the supervisor made <datadir>/run). */
        log_error("cannot bind %s: %s", ipc_path, strerror(errno));
        close(fd);
        return;
    }
    ipc_listener = evconnlistener_new(base, accept_cb, NULL,
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 64, fd);
    if (!ipc_listener)
        log_fatal("cannot listen on %s", ipc_path);
    evconnlistener_set_error_cb(ipc_listener, accept_error_cb);
    log_info("listening for workers on %s", ipc_path);
}

void
tandemd__core_ipc_close(void)
{
    if (ipc_listener) {
        evconnlistener_free(ipc_listener);
        ipc_listener = NULL;
        /* The next core binds anew; a file left behind would only mislead someone looking. */
        unlink(ipc_path);
    }
    while (tandemd__conns)
        conn_close(tandemd__conns);
}

void
tandemd__core_ipc_free(void)
{
    tandemd__commit_free();
    tandemd__subs_free();
    if (n_zombies > 0)
        log_error("%zu worker connections still wait for commits no store will answer", n_zombies);
    free(ipc_path);
    ipc_path = NULL;
}

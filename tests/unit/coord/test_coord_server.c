/*
 * The witness's server (src/coord/coord_server.c) and the nodes' client
 * (src/coord/coord_client.c) on one loop over loopback TCP (plain: TLS is the conn layer's and
 * is covered by tests/integration/test_witness.py): HELLO and its refusal, grants and
 * denials, a holder's disconnect (EOF, reset) freeing its lease at once and any other socket
 * error keeping it, min_epoch, release, transfer,
 * CAS conflicts, watches, the holder rule, a malformed frame answered with ERROR while another
 * session goes on, and a restart of the server over the same store directory.
 */
#include "coord/coord_client.h"
#include "coord/coord_server.h"
#include "coord/coord_store.h"

#include "lib/clock.h"
#include "lib/conn.h"
#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"
#include "proto/coord/coord_wire.h"
#include "scratch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <dlfcn.h>
#include <sys/uio.h>

/* A socket error other than a reset, on the witness's end of one connection: readv() of the
 * server's socket whose peer has local port broken_port fails with broken_errno. (This binary's
 * readv is the one libevent calls: a definition in the executable comes first.) */
static uint16_t broken_port;
static int broken_errno;

ssize_t readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t
readv(int fd, const struct iovec *iov, int iovcnt)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real)
        real = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "readv");
    if (broken_port) {
        struct sockaddr_in peer;
        socklen_t sl = sizeof(peer);
        if (getpeername(fd, (struct sockaddr *)&peer, &sl) == 0 && peer.sin_family == AF_INET &&
            ntohs(peer.sin_port) == broken_port) {
            errno = broken_errno;
            return -1;
        }
    }
    return real(fd, iov, iovcnt);
}

static struct event_base *base;
static char tmpdir[256], dir[300];
static struct coord_store *store;
static struct coord_server *srv;
static uint16_t port;
static uint32_t idle_ms; /* the server's idle timeout; 0 = its default */

static void
verify(void *ctx, const char *server, const char *key, size_t key_len,
       coord_server_verify_done_cb *done, void *done_ctx)
{
    (void)ctx;
    bool ok = key_len == 4 && memcmp(key, "good", 4) == 0 && strncmp(server, "mb", 2) == 0;
    done(done_ctx, ok ? 0 : -EACCES, ok ? NULL : "wrong server key");
}

static void
start_server(void)
{
    const char *error;
    unsigned n;
    assert_int_equal(coord_store_open(dir, tdm_clock_ms(), &store, &n, &error), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    port = ntohs(sa.sin_port);
    struct coord_server_options o = {
        .fd = fd,
        .store = store,
        .witness = "wit1",
        .boot_id = 7,
        .verify = verify,
        .idle_timeout_ms = idle_ms,
    };
    assert_int_equal(coord_server_new(base, &o, &srv), 0);
}

static void
stop_server(void)
{
    coord_server_free(&srv);
    coord_store_close(&store);
}

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "coordsrv"), 0);
    snprintf(dir, sizeof(dir), "%s/coord", tmpdir);
    base = event_base_new();
    port = 0;
    idle_ms = 0;
    start_server();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    stop_server();
    conn_base_free(&base);
    scratch_remove(tmpdir);
    return 0;
}

/* ---- a node ---- */

struct node {
    struct coord_client *c;
    int ups, losts;
    char lost_why[600];
    int n_lease;
    struct coord_lease_reply lease;
    char holder[256];
    char error[1100];
    int n_value;
    struct coord_value_reply value;
    char value_bytes[4096];
    int n_notify;
    uint64_t notify_epoch;
    char notify_holder[256];
};

static void
on_up(void *ctx, unsigned index)
{
    (void)index;
    ((struct node *)ctx)->ups++;
}

static void
on_lost(void *ctx, const char *why)
{
    struct node *n = ctx;
    n->losts++;
    snprintf(n->lost_why, sizeof(n->lost_why), "%s", why);
}

static void
on_notify(void *ctx, const char *key, const struct coord_value_reply *r)
{
    (void)key;
    struct node *n = ctx;
    n->n_notify++;
    n->notify_epoch = r->epoch;
    snprintf(n->notify_holder, sizeof(n->notify_holder), "%s", r->holder ? r->holder : "");
}

static void
lease_cb(void *ctx, const struct coord_lease_reply *r)
{
    struct node *n = ctx;
    n->n_lease++;
    n->lease = *r;
    snprintf(n->holder, sizeof(n->holder), "%s", r->holder ? r->holder : "");
    snprintf(n->error, sizeof(n->error), "%s", r->error ? r->error : "");
    n->lease.holder = NULL;
    n->lease.error = NULL;
}

static void
value_cb(void *ctx, const struct coord_value_reply *r)
{
    struct node *n = ctx;
    n->n_value++;
    n->value = *r;
    if (r->value)
        memcpy(n->value_bytes, r->value, r->value_len);
    snprintf(n->holder, sizeof(n->holder), "%s", r->holder ? r->holder : "");
    n->value.holder = NULL;
    n->value.value = NULL;
    n->value.error = NULL;
}

static void
run_until(int *counter, int want)
{
    for (int i = 0; i < 2000 && *counter < want; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    assert_int_equal(*counter, want);
}

static void
node_new(struct node *n, const char *member, const char *key)
{
    memset(n, 0, sizeof(*n));
    struct coord_client_options o = {
        .n_endpoints = 2,
        .member = member,
        .key = key,
        .cluster = "ccr1",
        .timeout_ms = 3000,
        .on_up = on_up,
        .on_lost = on_lost,
        .on_notify = on_notify,
        .ctx = n,
    };
    /* The first endpoint refuses connections: the client moves on to the second. */
    o.endpoints[0] = (struct coord_client_endpoint){"127.0.0.1", 1};
    o.endpoints[1] = (struct coord_client_endpoint){"127.0.0.1", port};
    assert_int_equal(coord_client_new(base, &o, &n->c), 0);
}

static void
node_up(struct node *n, const char *member)
{
    node_new(n, member, "good");
    assert_int_equal(coord_client_connect(n->c), 0);
    run_until(&n->ups, 1);
    assert_true(coord_client_is_up(n->c));
}

static void
acquire(struct node *n, const char *key, uint32_t ttl, uint64_t min_epoch)
{
    int before = n->n_lease;
    assert_int_equal(coord_client_acquire(n->c, key, ttl, min_epoch, lease_cb, n), 0);
    run_until(&n->n_lease, before + 1);
    assert_int_equal(n->lease.status, 0);
}

static void
test_hello_refused(void **state)
{
    (void)state;
    struct node n;
    node_new(&n, "mb1", "bad!");
    assert_int_equal(coord_client_connect(n.c), 0);
    assert_int_equal(n.losts, 0); /* never from inside connect */
    run_until(&n.losts, 1);
    assert_int_equal(n.ups, 0);
    assert_non_null(strstr(n.lost_why, "auth"));
    /* No session: requests fail at once and never call back. */
    assert_int_equal(coord_client_acquire(n.c, "cms/m", 1000, 0, lease_cb, &n), TDM_ECLOSED);
    coord_client_free(&n.c);
}

static void
test_grant_deny_disconnect(void **state)
{
    (void)state;
    struct node a, b;
    node_up(&a, "mb1");
    node_up(&b, "mb2");
    acquire(&a, "cms/mail1", 60000, 0);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, 1);
    assert_int_equal(a.lease.ttl_ms, 60000);
    acquire(&b, "cms/mail1", 60000, 0);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    assert_string_equal(b.holder, "mb1");
    assert_int_equal(b.lease.epoch, 1);
    assert_true(b.lease.remaining_ms > 50000);
    /* Renewal keeps the epoch. */
    acquire(&a, "cms/mail1", 60000, 0);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, 1);
    /* The holder's session ends: the lease is free at once, for epoch 2. */
    coord_client_disconnect(a.c);
    assert_int_equal(a.losts, 1);
    int tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/mail1", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_DENIED && ++tries < 500);
    assert_int_equal(b.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(b.lease.epoch, 2);
    /* min_epoch above stored + 1 wins for a new holder. */
    coord_client_disconnect(b.c);
    assert_int_equal(coord_client_connect(a.c), 0);
    run_until(&a.ups, 2);
    tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&a, "cms/mail1", 60000, 40);
    } while (a.lease.lease == COORD_LEASE_DENIED && ++tries < 500);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, 40);
    coord_client_free(&a.c);
    coord_client_free(&b.c);
}

static void
test_release_transfer_holder(void **state)
{
    (void)state;
    struct node a, b;
    node_up(&a, "mb1");
    node_up(&b, "mb2");
    acquire(&a, "cms/m", 60000, 0);
    uint64_t e = a.lease.epoch;
    /* Transfer to mb2: epoch + 1, and mb2 holds it. */
    int before = a.n_lease;
    assert_int_equal(coord_client_transfer(a.c, "cms/m", e, "mb2", lease_cb, &a), 0);
    run_until(&a.n_lease, before + 1);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, e + 1);
    acquire(&b, "cms/m", 60000, 0);
    assert_int_equal(b.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(b.lease.epoch, e + 1);
    /* mb1 may no longer release it: ERROR epoch, as a failed request. */
    before = a.n_lease;
    assert_int_equal(coord_client_release(a.c, "cms/m", e + 1, lease_cb, &a), 0);
    run_until(&a.n_lease, before + 1);
    assert_int_equal(a.lease.status, TDM_EINVAL);
    assert_non_null(strstr(a.error, "epoch"));
    /* mb2 releases; mb1 then gets a new epoch. */
    before = b.n_lease;
    assert_int_equal(coord_client_release(b.c, "cms/m", e + 1, lease_cb, &b), 0);
    run_until(&b.n_lease, before + 1);
    assert_int_equal(b.lease.lease, COORD_LEASE_RELEASED);
    acquire(&a, "cms/m", 60000, 0);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, e + 2);
    assert_true(coord_client_is_up(a.c) && coord_client_is_up(b.c));
    coord_client_free(&a.c);
    coord_client_free(&b.c);
}

static void
test_cas_watch(void **state)
{
    (void)state;
    struct node a, b;
    node_up(&a, "mb1");
    node_up(&b, "mb2");
    assert_int_equal(coord_client_watch(b.c, "cms/m", value_cb, &b), 0);
    run_until(&b.n_value, 1);
    assert_int_equal(b.value.status, 0);
    assert_int_equal(b.value.version, 0);
    assert_int_equal(coord_client_cas(a.c, "cms/m", 0, "one", 3, value_cb, &a), 0);
    run_until(&a.n_value, 1);
    assert_int_equal(a.value.status, 0);
    assert_int_equal(a.value.version, 1);
    run_until(&b.n_notify, 1);
    /* A second writer with the old version gets CONFLICT and the current state. */
    assert_int_equal(coord_client_cas(b.c, "cms/m", 0, "two", 3, value_cb, &b), 0);
    run_until(&b.n_value, 2);
    assert_int_equal(b.value.status, TDM_ECONFLICT);
    assert_int_equal(b.value.version, 1);
    assert_memory_equal(b.value_bytes, "one", 3);
    /* A grant is a change watchers hear of. */
    acquire(&a, "cms/m", 60000, 0);
    run_until(&b.n_notify, 2);
    assert_string_equal(b.notify_holder, "mb1");
    assert_int_equal(b.notify_epoch, 1);
    assert_int_equal(coord_client_get(b.c, "cms/m", value_cb, &b), 0);
    run_until(&b.n_value, 3);
    assert_string_equal(b.holder, "mb1");
    assert_true(b.value.remaining_ms > 0);
    coord_client_free(&a.c);
    coord_client_free(&b.c);
}

/* Status: each session's age and last request, and the counters (coord_server_counters). */
struct sessions_seen {
    unsigned n;
    uint64_t connected_ms_ago, last_request_ms_ago;
};

static void
session_seen_cb(void *ctx, const struct coord_server_session_info *info)
{
    struct sessions_seen *seen = ctx;
    if (strcmp(info->member, "mb1") != 0)
        return;
    seen->n++;
    seen->connected_ms_ago = info->connected_ms_ago;
    seen->last_request_ms_ago = info->last_request_ms_ago;
}

static void
test_status_counters(void **state)
{
    (void)state;
    struct node a, b, bad;
    node_up(&a, "mb1");
    node_up(&b, "mb2");
    node_new(&bad, "mb1", "bad!");
    assert_int_equal(coord_client_connect(bad.c), 0);
    run_until(&bad.losts, 1);
    coord_client_free(&bad.c);
    acquire(&a, "cms/m", 60000, 0);
    acquire(&b, "cms/m", 60000, 0);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    acquire(&a, "cms/m", 60000, 0);
    assert_int_equal(coord_client_cas(a.c, "cms/m", 0, "one", 3, value_cb, &a), 0);
    run_until(&a.n_value, 1);
    assert_int_equal(coord_client_cas(b.c, "cms/m", 0, "two", 3, value_cb, &b), 0);
    run_until(&b.n_value, 1);
    struct coord_server_counters c;
    coord_server_counters(srv, &c);
    assert_int_equal(c.sessions_accepted, 2);
    assert_int_equal(c.sessions_refused, 1);
    assert_int_equal(c.granted, 1);
    assert_int_equal(c.renewed, 1);
    assert_int_equal(c.denied, 1);
    assert_int_equal(c.cas_written, 1);
    assert_int_equal(c.cas_conflicts, 1);
    assert_true(c.requests >= 3 + 5); /* 3 HELLOs, 5 requests, and any PINGs */
    assert_int_equal(c.expired, 0);
    assert_int_equal(c.freed, 0);
    /* mb1's session: connected before its last request, which was just now. */
    usleep(30000);
    struct sessions_seen seen = {0};
    coord_server_status(srv, NULL, session_seen_cb, &seen);
    assert_int_equal(seen.n, 1);
    assert_true(seen.connected_ms_ago >= 30);
    assert_true(seen.last_request_ms_ago >= 30);
    assert_true(seen.connected_ms_ago >= seen.last_request_ms_ago);
    /* Its session ends with EOF: its lease is freed and counted. */
    coord_client_disconnect(a.c);
    for (int i = 0; i < 3000 && c.freed == 0; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        coord_server_counters(srv, &c);
    }
    assert_int_equal(c.freed, 1);
    coord_client_free(&a.c);
    coord_client_free(&b.c);
}

/* A raw connection: a frame with a broken CRC gets ERROR `protocol` and is closed; a node's
 * session goes on. */
static void
test_malformed_frame(void **state)
{
    (void)state;
    struct node a;
    node_up(&a, "mb1");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t junk[29] = {29, 0, 0, 0, 1, 0, 28, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3, 1};
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t buf[2048];
    size_t got = 0;
    for (int i = 0; i < 2000; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        if (r == 0)
            break; /* closed after the ERROR */
        if (r > 0)
            got += (size_t)r;
        usleep(1000);
    }
    close(fd);
    struct coord_msg m;
    const char *error;
    assert_int_equal(coord_msg_decode(buf, got, &m, NULL, &error), 0);
    assert_int_equal(m.type, COORD_ERROR);
    assert_int_equal(m.code, COORD_CODE_PROTOCOL);
    acquire(&a, "cms/m", 60000, 0);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    coord_client_free(&a.c);
}

/* The server stops and starts again over the same store: the lease is held, same epoch, with
 * a full ttl from the restart; the holder (reconnected) renews it, and after it goes the next
 * grant's epoch is higher. */
static void
test_restart(void **state)
{
    (void)state;
    struct node a, b;
    node_up(&a, "mb1");
    acquire(&a, "cms/m", 60000, 0);
    assert_int_equal(a.lease.epoch, 1);
    stop_server();
    run_until(&a.losts, 1);
    start_server(); /* the same port */
    node_up(&b, "mb2");
    acquire(&b, "cms/m", 60000, 0);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    assert_string_equal(b.holder, "mb1");
    assert_int_equal(b.lease.epoch, 1);
    assert_true(b.lease.remaining_ms > 59000);
    assert_int_equal(coord_client_connect(a.c), 0);
    run_until(&a.ups, 2);
    acquire(&a, "cms/m", 60000, 0);
    assert_int_equal(a.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a.lease.epoch, 1);
    coord_client_free(&a.c);
    int tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_DENIED && ++tries < 500);
    assert_int_equal(b.lease.epoch, 2);
    coord_client_free(&b.c);
}

/* A second session of the same member replaces the first, whose leases are freed. */
static void
test_session_replaced(void **state)
{
    (void)state;
    struct node a1, a2;
    node_up(&a1, "mb1");
    acquire(&a1, "cms/m", 60000, 0);
    node_up(&a2, "mb1");
    run_until(&a1.losts, 1);
    acquire(&a2, "cms/m", 60000, 0);
    assert_int_equal(a2.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(a2.lease.epoch, 2);
    coord_client_free(&a1.c);
    coord_client_free(&a2.c);
}

/* A raw session: HELLO as mb1 and ACQUIRE cms/m, then whatever the caller does with fd. */
static int
raw_holder(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct coord_msg h = {.type = COORD_HELLO, .request_id = 1, .version_min = 1, .version_max = 1};
    h.member = coord_str_c("mb1");
    h.secret = coord_str_c("good");
    struct coord_msg a = {.type = COORD_ACQUIRE, .request_id = 2, .ttl_ms = 60000};
    a.key = coord_str_c("cms/m");
    a.holder = coord_str_c("mb1");
    uint8_t buf[2][256];
    size_t len[2];
    const char *error;
    assert_int_equal(coord_msg_encode(&h, buf[0], sizeof(buf[0]), &len[0], &error), 0);
    assert_int_equal(coord_msg_encode(&a, buf[1], sizeof(buf[1]), &len[1], &error), 0);
    assert_int_equal(write(fd, buf[0], len[0]), (ssize_t)len[0]);
    assert_int_equal(write(fd, buf[1], len[1]), (ssize_t)len[1]);
    return fd;
}

/* Reads what fd holds now (the loop has run since it was sent), without blocking. */
static void
drain(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    uint8_t junk[4096];
    while (read(fd, junk, sizeof(junk)) > 0)
        ;
    fcntl(fd, F_SETFL, fl);
}

/* Only EOF frees a lease at once: after the witness's idle timeout closed a silent
 * holder's session, the lease runs on (the holder may still count its last renewal). */
static void
test_idle_keeps_lease(void **state)
{
    (void)state;
    stop_server();
    idle_ms = 200;
    start_server();
    struct node b;
    node_up(&b, "mb2");
    int fd = raw_holder();
    int tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_GRANTED && ++tries < 500);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    /* Wait for the witness to close the silent session (read() sees its EOF). */
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t junk[4096];
    bool closed = false;
    for (int i = 0; i < 3000 && !closed; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        closed = read(fd, junk, sizeof(junk)) == 0;
        usleep(1000);
    }
    assert_true(closed);
    /* b's own session was as idle meanwhile and may have been closed too: ask on a new one. */
    coord_client_free(&b.c);
    node_up(&b, "mb2");
    acquire(&b, "cms/m", 60000, 0);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    assert_string_equal(b.holder, "mb1");
    close(fd);
    coord_client_free(&b.c);
}

/* The same holder closing its end (EOF): freed at once. */
static void
test_eof_frees_lease(void **state)
{
    (void)state;
    struct node b;
    node_up(&b, "mb2");
    int fd = raw_holder();
    int tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_GRANTED && ++tries < 500);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    /* The witness's answers to it (HELLO_REPLY, GRANTED) are read first: a socket closed with
     * unread input sends a RST, not a FIN (so does a holder killed before reading them). */
    drain(fd);
    close(fd);
    tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_DENIED && ++tries < 500);
    assert_int_equal(b.lease.lease, COORD_LEASE_GRANTED);
    assert_int_equal(b.lease.epoch, 2);
    coord_client_free(&b.c);
}

/* Whether the lease of key has its holder connected (a session of the holder is open). */
static void
holder_connected_cb(void *ctx, const struct coord_server_lease_info *info)
{
    int *r = ctx;
    if (strcmp(info->entry->key, "cms/m") == 0)
        *r = info->holder_connected;
}

/* A reset of the holder's end (SO_LINGER 0: a RST, as a firewall's REJECT --reject-with
 * tcp-reset or a middlebox that lost state sends while the holder runs on and counts its last
 * renewal): the session ends, the lease runs out its time (docs/cluster.md "Leases and
 * epochs"). Only EOF frees it at once. */
static void
test_reset_keeps_lease(void **state)
{
    (void)state;
    struct node b;
    node_up(&b, "mb2");
    int fd = raw_holder();
    int tries = 0;
    do {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
    } while (b.lease.lease == COORD_LEASE_GRANTED && ++tries < 500);
    assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(fd);
    /* The witness has seen the end of the holder's session... */
    int connected = 1;
    for (int i = 0; i < 3000 && connected; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        coord_server_status(srv, holder_connected_cb, NULL, &connected);
    }
    assert_int_equal(connected, 0);
    /* ...and the lease is still mb1's, for a while yet. */
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(2000);
        acquire(&b, "cms/m", 60000, 0);
        assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
        assert_string_equal(b.holder, "mb1");
    }
    coord_client_free(&b.c);
}

/* Any other error on the witness's end (a timeout, an unreachable host: the holder may not
 * know yet and still counts its last renewal) ends the session but keeps the lease to its
 * time to live (docs/cluster.md "Leases and epochs"). */
static void
test_broken_keeps_lease(void **state)
{
    (void)state;
    static const int errs[] = {ETIMEDOUT, EHOSTUNREACH};
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        struct node b;
        node_up(&b, "mb2");
        int fd = raw_holder();
        int tries = 0;
        do {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(2000);
            acquire(&b, "cms/m", 60000, 0);
        } while (b.lease.lease == COORD_LEASE_GRANTED && ++tries < 500);
        assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
        struct sockaddr_in me;
        socklen_t sl = sizeof(me);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &sl), 0);
        broken_port = ntohs(me.sin_port);
        broken_errno = errs[e];
        /* A byte makes the witness read, and its read fails. */
        assert_int_equal(write(fd, "x", 1), 1);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        uint8_t junk[4096];
        bool closed = false;
        for (int i = 0; i < 3000 && !closed; i++) {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            ssize_t n = read(fd, junk, sizeof(junk));
            closed = n == 0 || (n < 0 && errno == ECONNRESET);
            usleep(1000);
        }
        assert_true(closed);
        broken_port = 0;
        acquire(&b, "cms/m", 60000, 0);
        assert_int_equal(b.lease.lease, COORD_LEASE_DENIED);
        assert_string_equal(b.holder, "mb1");
        close(fd);
        coord_client_free(&b.c);
        /* The next round's holder is mb1 again: its lease is still there to renew. */
    }
}

/* ---- memory running out ---- */

/* malloc, calloc and strdup are wrapped at link time (tests/unit/CMakeLists.txt): while armed,
 * the fail_at-th allocation (counted from 0) fails. Disarmed, they are the real ones. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
char *__real_strdup(const char *str);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
char *__wrap_strdup(const char *str);

static bool nomem_armed, nomem_failed;
static long nomem_fail_at, nomem_count;

static bool
nomem_now(void)
{
    if (!nomem_armed || nomem_count++ != nomem_fail_at)
        return false;
    nomem_failed = true;
    return true;
}

void *
__wrap_malloc(size_t n)
{
    return nomem_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t k, size_t n)
{
    return nomem_now() ? NULL : __real_calloc(k, n);
}

char *
__wrap_strdup(const char *str)
{
    return nomem_now() ? NULL : __real_strdup(str);
}

static int n_dropped;

static void
dropped_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    (void)message;
    if (id == TDM_EV_COORD_SESSION_DROPPED)
        n_dropped++;
}

/* A raw session's HELLO as mb1, ACQUIRE and WATCH of cms/m; returns how many replies came
 * before the witness closed it, or 3 if it did not. */
static int
raw_session_replies(void)
{
    int fd = raw_holder();
    struct coord_msg w = {.type = COORD_WATCH, .request_id = 3};
    w.key = coord_str_c("cms/m");
    uint8_t out[256];
    size_t len;
    const char *error;
    assert_int_equal(coord_msg_encode(&w, out, sizeof(out), &len, &error), 0);
    assert_int_equal(write(fd, out, len), (ssize_t)len);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    uint8_t buf[16384];
    size_t got = 0;
    int replies = 0;
    bool closed = false;
    for (int i = 0; i < 3000 && !closed && replies < 3; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        closed = r == 0 || (r < 0 && errno == ECONNRESET);
        if (r > 0)
            got += (size_t)r;
        size_t flen;
        while (got >= 4 && coord_frame_length(buf, got, &flen, &error) == 0 && got >= flen) {
            replies++;
            memmove(buf, buf + flen, got - flen);
            got -= flen;
        }
        usleep(500);
    }
    assert_true(closed || replies == 3);
    close(fd);
    return replies;
}

/* Each allocation made while the witness serves one session (accepting it, HELLO, ACQUIRE,
 * WATCH) fails in turn: that session ends, the witness does not (it used to log_fatal), and
 * the next session is served as before. The failures in the witness's own code are said with
 * 5008; those in the conn layer refuse the connection. */
static void
test_out_of_memory(void **state)
{
    (void)state;
    event_set_hook(dropped_hook, NULL);
    n_dropped = 0;
    for (long k = 0;; k++) {
        nomem_fail_at = k;
        nomem_count = 0;
        nomem_failed = false;
        nomem_armed = true;
        int replies = raw_session_replies();
        nomem_armed = false;
        if (!nomem_failed) {
            assert_int_equal(replies, 3); /* past the last allocation: served whole */
            break;
        }
        struct node b;
        node_up(&b, "mb2");
        acquire(&b, "cms/other", 60000, 0);
        assert_int_equal(b.lease.lease, COORD_LEASE_GRANTED);
        coord_client_free(&b.c);
    }
    assert_true(n_dropped > 0);
    event_set_hook(NULL, NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hello_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grant_deny_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_transfer_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cas_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof_frees_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

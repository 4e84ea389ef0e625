/*
 * core_link against a fake core: a unix socket in a scratch directory, served on the same
 * libevent loop with the real codec, whose behaviour each test sets (answer or refuse HELLO,
 * answer requests or hold them, drop the connection, send garbage or CHANGED).
 */
#include "lib/core_link.h"

#include "lib/err.h"
#include "lib/ipc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- The fake core ---- */

struct fake {
    struct event_base *base;
    struct evconnlistener *listener;
    struct bufferevent *bev; /* the one connection (a new one replaces it) */
    struct ipc_reader *reader;
    char path[108];
    bool refuse_hello;
    uint16_t hello_version; /* 0: answer 1 */
    bool hold;              /* do not answer requests */
    /* What arrived. */
    unsigned hellos, commits, subscribes, unsubscribes, status_requests, db_status_requests;
    uint16_t hello_kind;
    uint32_t hello_pid;
    uint32_t held_ids[16];
    size_t n_held;
    char last_sub[300];
    uint64_t sub_sum; /* the sum of name_sum() over every SUBSCRIBE received */
};

static struct fake fk;

/* A hash of "database/mailbox/folder", summed over subscriptions: equal sums say (with
 * overwhelming likelihood) that the same set was sent. */
static uint64_t
name_sum(const char *name)
{
    uint64_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

static char scratch[64];

static void
fake_send(const struct ipc_msg *msg)
{
    uint8_t *buf;
    size_t len;
    const char *why;
    assert_int_equal(ipc_msg_encode_alloc(msg, &buf, &len, &why), 0);
    bufferevent_write(fk.bev, buf, len);
    free(buf);
}

static void
fake_reply_commit(uint32_t id, int32_t status, uint64_t lsn)
{
    struct ipc_msg r = {.type = TDM_IPC_COMMIT_REPLY, .request_id = id};
    r.u.commit_reply.status = status;
    r.u.commit_reply.lsn = lsn;
    fake_send(&r);
}

static void
fake_handle(const struct ipc_msg *m)
{
    switch (m->type) {
    case TDM_IPC_HELLO: {
        fk.hellos++;
        fk.hello_kind = m->u.hello.kind;
        fk.hello_pid = m->u.hello.pid;
        struct ipc_msg r = {.type = TDM_IPC_HELLO_REPLY, .request_id = m->request_id};
        if (fk.refuse_hello)
            r.u.hello_reply.reason = ipc_str_c("no");
        else
            r.u.hello_reply.version = fk.hello_version ? fk.hello_version : 1;
        fake_send(&r);
        return;
    }
    case TDM_IPC_COMMIT:
        fk.commits++;
        if (fk.hold) {
            if (fk.n_held < 16)
                fk.held_ids[fk.n_held] = m->request_id;
            fk.n_held++;
            return;
        }
        /* Echo the record type as the LSN, so a test can tell replies apart. */
        fake_reply_commit(m->request_id, TDM_EEXIST, m->u.commit.record_type);
        return;
    case TDM_IPC_SUBSCRIBE:
    case TDM_IPC_UNSUBSCRIBE:
        if (m->type == TDM_IPC_SUBSCRIBE)
            fk.subscribes++;
        else
            fk.unsubscribes++;
        snprintf(fk.last_sub, sizeof(fk.last_sub), "%.*s/%.*s/%.*s",
                 (int)m->u.subscribe.database.len, m->u.subscribe.database.ptr,
                 (int)m->u.subscribe.mailbox.len, m->u.subscribe.mailbox.ptr,
                 (int)m->u.subscribe.folder.len, m->u.subscribe.folder.ptr);
        if (m->type == TDM_IPC_SUBSCRIBE)
            fk.sub_sum += name_sum(fk.last_sub);
        return;
    case TDM_IPC_STATUS_REQUEST: {
        fk.status_requests++;
        struct ipc_msg r = {.type = TDM_IPC_STATUS_REPLY, .request_id = m->request_id};
        r.u.status_reply.n_counters = 1;
        r.u.status_reply.counters[0] = (struct ipc_counter){ipc_str_c("x_total"), 7};
        fake_send(&r);
        return;
    }
    case TDM_IPC_DB_STATUS_REQUEST: {
        fk.db_status_requests++;
        struct ipc_msg r = {.type = TDM_IPC_DB_STATUS_REPLY, .request_id = m->request_id};
        r.u.db_status_reply.n_databases = 1;
        r.u.db_status_reply.databases[0] = (struct ipc_db_status){.name = ipc_str_c("db1"),
                                                                  .kind = ipc_str_c("mail"),
                                                                  .state = TDM_IPC_DB_MOUNTED,
                                                                  .applied_lsn = 5};
        fake_send(&r);
        return;
    }
    default:
        fail_msg("fake core: unexpected %s", ipc_type_name(m->type));
    }
}

static void
fake_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0) {
        size_t avail = evbuffer_get_contiguous_space(in);
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t len = avail;
        struct ipc_frame frame;
        struct ipc_msg msg;
        const char *why;
        int ret = ipc_reader_next(fk.reader, &data, &len, &frame, &why);
        assert_true(ret >= 0);
        if (ret == 1) {
            assert_int_equal(ipc_msg_decode_frame(&frame, &msg, &why), 0);
            fake_handle(&msg);
        }
        evbuffer_drain(in, avail - len);
    }
}

static void
fake_drop(void)
{
    if (fk.bev)
        bufferevent_free(fk.bev);
    fk.bev = NULL;
    ipc_reader_free(&fk.reader);
}

static void
fake_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        fake_drop();
}

static void
fake_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int n, void *a)
{
    (void)l;
    (void)sa;
    (void)n;
    (void)a;
    fake_drop();
    assert_int_equal(ipc_reader_new(0, &fk.reader), 0);
    fk.bev = bufferevent_socket_new(fk.base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(fk.bev);
    bufferevent_setcb(fk.bev, fake_read_cb, NULL, fake_event_cb, NULL);
    bufferevent_enable(fk.bev, EV_READ);
}

static void
fake_listen(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", fk.path);
    if (fk.listener)
        evconnlistener_free(fk.listener);
    unlink(fk.path);
    fk.listener = evconnlistener_new_bind(fk.base, fake_accept_cb, NULL,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                          (struct sockaddr *)&sun, sizeof(sun));
    assert_non_null(fk.listener);
}

static void
fake_stop_listening(void)
{
    if (fk.listener)
        evconnlistener_free(fk.listener);
    fk.listener = NULL;
    unlink(fk.path);
}

/* Runs the loop until pred() or about 3 s; returns pred(). */
static bool
run_until(bool (*pred)(void))
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (pred())
            return true;
        event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 3)
            return pred();
        usleep(1000);
    }
}

/* Runs the loop for ms milliseconds whatever happens. */
static void
run_for(int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(fk.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static struct core_link *the_link;

static bool
link_ready(void)
{
    return core_link_ready(the_link);
}

static bool
link_not_ready(void)
{
    return !core_link_ready(the_link);
}

static int
setup(void **state)
{
    (void)state;
    memset(&fk, 0, sizeof(fk));
    snprintf(scratch, sizeof(scratch), "/tmp/tdm_core_link.XXXXXX");
    assert_non_null(mkdtemp(scratch));
    snprintf(fk.path, sizeof(fk.path), "%s/core.sock", scratch);
    fk.base = event_base_new();
    assert_non_null(fk.base);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    core_link_free(&the_link);
    fake_drop();
    fake_stop_listening();
    event_base_free(fk.base);
    rmdir(scratch);
    return 0;
}

/* ---- Callbacks that record ---- */

struct got {
    unsigned calls;
    int status;
    int32_t commit_status;
    uint64_t lsn;
    uint16_t type;
    bool free_link; /* free the link from inside the callback */
};

static void
reply_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct got *g = ctx;
    g->calls++;
    g->status = status;
    if (status == 0) {
        assert_non_null(reply);
        g->type = reply->type;
        if (reply->type == TDM_IPC_COMMIT_REPLY) {
            g->commit_status = reply->u.commit_reply.status;
            g->lsn = reply->u.commit_reply.lsn;
        } else if (reply->type == TDM_IPC_STATUS_REPLY) {
            g->lsn = reply->u.status_reply.counters[0].value;
        } else if (reply->type == TDM_IPC_DB_STATUS_REPLY) {
            g->lsn = reply->u.db_status_reply.databases[0].applied_lsn;
        }
    } else {
        assert_null(reply);
    }
    if (g->free_link)
        core_link_free(&the_link);
}

static struct got *waiting;
static bool
got_called(void)
{
    return waiting->calls > 0;
}

static void
connect_ready(void)
{
    fake_listen();
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_ADMIN, &the_link), 0);
    assert_true(run_until(link_ready));
}

/* ---- Tests ---- */

static void
test_bad_arguments(void **state)
{
    (void)state;
    struct core_link *link = NULL;
    char longpath[200];
    memset(longpath, 'p', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = 0;
    assert_int_equal(core_link_new(fk.base, longpath, TDM_IPC_WORKER_IMAP, &link), TDM_EINVAL);
    assert_int_equal(core_link_new(fk.base, "", TDM_IPC_WORKER_IMAP, &link), TDM_EINVAL);
    assert_int_equal(core_link_new(fk.base, fk.path, 99, &link), TDM_EINVAL);
    assert_null(link);
    core_link_free(&link); /* NULL is fine */

    connect_ready();
    struct got g = {0};
    assert_int_equal(core_link_commit(the_link, "", 0x100, "x", 1, reply_cb, &g), TDM_EINVAL);
    assert_int_equal(core_link_commit(the_link, "db", TDM_REC_END, "x", 1, reply_cb, &g),
                     TDM_EINVAL);
    assert_int_equal(core_link_subscribe(the_link, "db", "", NULL), TDM_EINVAL);
    run_for(20);
    assert_int_equal(g.calls, 0);
    assert_int_equal(fk.commits, 0);
    assert_int_equal(fk.subscribes, 0);
}

/* No core yet: requests fail at once; the link keeps trying and gets there. */
static void
test_no_core_then_core(void **state)
{
    (void)state;
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_LMTP, &the_link), 0);
    struct got g = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "x", 1, reply_cb, &g), TDM_ECLOSED);
    assert_int_equal(core_link_status(the_link, reply_cb, &g), TDM_ECLOSED);
    run_for(120); /* a few back-off rounds with nobody listening */
    assert_false(core_link_ready(the_link));
    assert_int_equal(g.calls, 0);
    fake_listen();
    assert_true(run_until(link_ready));
    assert_int_equal(fk.hellos, 1);
    assert_int_equal(fk.hello_kind, TDM_IPC_WORKER_LMTP);
    assert_int_equal(fk.hello_pid, (uint32_t)getpid());
}

static void
test_requests(void **state)
{
    (void)state;
    connect_ready();
    struct got c = {0}, s = {0}, d = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x123, "abc", 3, reply_cb, &c), 0);
    assert_int_equal(core_link_status(the_link, reply_cb, &s), 0);
    assert_int_equal(core_link_db_status(the_link, reply_cb, &d), 0);
    /* Never from inside the call. */
    assert_int_equal(c.calls + s.calls + d.calls, 0);
    waiting = &d;
    assert_true(run_until(got_called));
    run_for(10);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.type, TDM_IPC_COMMIT_REPLY);
    assert_int_equal(c.commit_status, TDM_EEXIST);
    assert_int_equal(c.lsn, 0x123);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.type, TDM_IPC_STATUS_REPLY);
    assert_int_equal(s.lsn, 7);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.type, TDM_IPC_DB_STATUS_REPLY);
    assert_int_equal(d.lsn, 5);
}

/* Replies out of order still reach their own request. */
static void
test_out_of_order(void **state)
{
    (void)state;
    connect_ready();
    fk.hold = true;
    struct got a = {0}, b = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "a", 1, reply_cb, &a), 0);
    assert_int_equal(core_link_commit(the_link, "db", 0x101, "b", 1, reply_cb, &b), 0);
    while (fk.n_held < 2)
        run_for(1);
    fake_reply_commit(fk.held_ids[1], 0, 222);
    fake_reply_commit(fk.held_ids[0], 0, 111);
    waiting = &a;
    assert_true(run_until(got_called));
    assert_int_equal(a.lsn, 111);
    assert_int_equal(b.lsn, 222);
    assert_int_equal(b.calls, 1);
}

/* The core drops the connection: every request in flight fails once with TDM_ECLOSED, the
 * link reconnects and sends its subscriptions again. */
static void
test_drop_and_reconnect(void **state)
{
    (void)state;
    connect_ready();
    assert_int_equal(core_link_subscribe(the_link, "db", "alice", "INBOX"), 0);
    assert_int_equal(core_link_subscribe(the_link, "db", "alice", "INBOX"), 0); /* once */
    fk.hold = true;
    struct got g[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(core_link_commit(the_link, "db", 0x100, "x", 1, reply_cb, &g[i]), 0);
    while (fk.n_held < 3)
        run_for(1);
    assert_int_equal(fk.subscribes, 1);
    fake_drop();
    assert_true(run_until(link_not_ready));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].status, TDM_ECLOSED);
    }
    /* Late replies to the old connection cannot reach anyone: they went with it. */
    fk.hold = false;
    assert_true(run_until(link_ready));
    run_for(20);
    assert_int_equal(fk.hellos, 2);
    assert_int_equal(fk.subscribes, 2);
    assert_string_equal(fk.last_sub, "db/alice/INBOX");
    for (int i = 0; i < 3; i++)
        assert_int_equal(g[i].calls, 1);

    assert_int_equal(core_link_unsubscribe(the_link, "db", "alice", "INBOX"), 0);
    run_for(20);
    assert_int_equal(fk.unsubscribes, 1);
    fake_drop();
    assert_true(run_until(link_not_ready));
    assert_true(run_until(link_ready));
    run_for(20);
    assert_int_equal(fk.subscribes, 2); /* not renewed after UNSUBSCRIBE */
}

/* Thousands of subscriptions, some repeated, a third taken back (and one never held), before
 * the core is there: exactly the ones still held are sent once it is, and again after a
 * drop. */
static void
test_many_subscriptions_renewed(void **state)
{
    (void)state;
    fake_listen();
    /* Not ready until the loop has run the HELLO exchange. */
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_IMAP, &the_link), 0);
    assert_false(core_link_ready(the_link));
    uint64_t want = 0;
    unsigned held = 0;
    char mailbox[32], name[64];
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(mailbox, sizeof(mailbox), "user%u", i);
        assert_int_equal(core_link_subscribe(the_link, "db", mailbox, "INBOX"), 0);
        assert_int_equal(core_link_subscribe(the_link, "db", mailbox, "INBOX"), 0);
    }
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(mailbox, sizeof(mailbox), "user%u", i);
        if (i % 3 == 1) {
            assert_int_equal(core_link_unsubscribe(the_link, "db", mailbox, "INBOX"), 0);
            continue;
        }
        snprintf(name, sizeof(name), "db/%s/INBOX", mailbox);
        want += name_sum(name);
        held++;
    }
    assert_int_equal(core_link_unsubscribe(the_link, "db", "nobody", "INBOX"), 0);
    assert_true(run_until(link_ready));
    run_for(50);
    assert_int_equal(fk.subscribes, held);
    assert_true(fk.sub_sum == want);
    fake_drop();
    assert_true(run_until(link_not_ready));
    assert_true(run_until(link_ready));
    run_for(50);
    assert_int_equal(fk.subscribes, 2 * held);
    assert_true(fk.sub_sum == 2 * want);
}

static unsigned limit_calls;
static void
count_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    (void)ctx;
    (void)reply;
    assert_int_equal(status, TDM_ECLOSED);
    limit_calls++;
}

/* A core that never answers cannot make the worker hold unbounded requests. */
static void
test_in_flight_limit(void **state)
{
    (void)state;
    connect_ready();
    fk.hold = true;
    unsigned sent = 0;
    int ret;
    while ((ret = core_link_commit(the_link, "db", 0x100, "x", 1, count_cb, NULL)) == 0)
        sent++;
    assert_int_equal(ret, TDM_ELIMIT);
    assert_int_equal(sent, 4096);
    core_link_free(&the_link);
    assert_int_equal(limit_calls, 4096);
}

static void
test_free_fails_inflight(void **state)
{
    (void)state;
    connect_ready();
    fk.hold = true;
    struct got a = {0}, b = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "a", 1, reply_cb, &a), 0);
    assert_int_equal(core_link_db_status(the_link, reply_cb, &b), 0);
    core_link_free(&the_link);
    assert_null(the_link);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, TDM_ECLOSED);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.status, TDM_ECLOSED);
    run_for(20);
    assert_int_equal(a.calls, 1);
}

/* Freeing the link from inside its own callbacks: on a reply, and on a drop. */
static void
test_free_inside_callback(void **state)
{
    (void)state;
    connect_ready();
    struct got a = {.free_link = true}, b = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "a", 1, reply_cb, &a), 0);
    assert_int_equal(core_link_commit(the_link, "db", 0x101, "b", 1, reply_cb, &b), 0);
    waiting = &a;
    assert_true(run_until(got_called));
    assert_null(the_link);
    /* b's reply may have been in the same read; either way it is answered exactly once. */
    assert_int_equal(b.calls, 1);

    connect_ready();
    fk.hold = true;
    struct got c = {.free_link = true}, d = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "c", 1, reply_cb, &c), 0);
    assert_int_equal(core_link_commit(the_link, "db", 0x101, "d", 1, reply_cb, &d), 0);
    while (fk.n_held < 2)
        run_for(1);
    fake_drop();
    waiting = &c;
    assert_true(run_until(got_called));
    assert_null(the_link);
    assert_int_equal(c.status, TDM_ECLOSED);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.status, TDM_ECLOSED);
}

static bool
second_hello(void)
{
    return fk.hellos >= 2 && core_link_ready(the_link);
}

/* Garbage, a reply to nothing, a reply of the wrong type: each drops the connection (failing
 * what is in flight) and the link reconnects. */
static void
test_core_bugs(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        connect_ready();
        fk.hold = true;
        struct got g = {0};
        assert_int_equal(core_link_commit(the_link, "db", 0x100, "x", 1, reply_cb, &g), 0);
        while (fk.n_held < 1)
            run_for(1);
        if (kind == 0) {
            bufferevent_write(fk.bev, "\x05\x00\x00\x00garbage", 11);
        } else if (kind == 1) {
            fake_reply_commit(fk.held_ids[0] + 1000, 0, 1);
        } else {
            struct ipc_msg r = {.type = TDM_IPC_STATUS_REPLY, .request_id = fk.held_ids[0]};
            fake_send(&r);
        }
        waiting = &g;
        assert_true(run_until(got_called));
        assert_int_equal(g.status, TDM_ECLOSED);
        assert_true(run_until(second_hello));
        core_link_free(&the_link);
        fake_drop();
        fake_stop_listening();
        memset(&fk.hellos, 0, sizeof(fk) - offsetof(struct fake, hellos));
        fk.hold = false;
    }
}

static void
test_hello_refused(void **state)
{
    (void)state;
    fk.refuse_hello = true;
    fake_listen();
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_IMAP, &the_link), 0);
    run_for(200);
    assert_true(fk.hellos >= 1);
    assert_false(core_link_ready(the_link));
    struct got g = {0};
    assert_int_equal(core_link_commit(the_link, "db", 0x100, "x", 1, reply_cb, &g), TDM_ECLOSED);
    fk.refuse_hello = false;
    assert_true(run_until(link_ready)); /* after the long back-off (2 s) */
}

/* A version the link never offered is a core bug: no READY, reconnect, and fine once fixed. */
static void
test_hello_version_not_offered(void **state)
{
    (void)state;
    fk.hello_version = TDM_IPC_VERSION + 1;
    fake_listen();
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_IMAP, &the_link), 0);
    run_for(300);
    assert_true(fk.hellos >= 2);
    assert_false(core_link_ready(the_link));
    fk.hello_version = 0;
    assert_true(run_until(link_ready));
}

static struct {
    unsigned calls;
    char folder[64];
    uint32_t exists;
} changed;

static void
changed_cb(void *ctx, const struct ipc_msg *msg)
{
    assert_ptr_equal(ctx, &changed);
    changed.calls++;
    snprintf(changed.folder, sizeof(changed.folder), "%.*s", (int)msg->u.changed.folder.len,
             msg->u.changed.folder.ptr);
    changed.exists = msg->u.changed.exists;
}

static bool
changed_called(void)
{
    return changed.calls > 0;
}

static void
test_changed(void **state)
{
    (void)state;
    connect_ready();
    core_link_set_changed_cb(the_link, changed_cb, &changed);
    struct ipc_msg m = {.type = TDM_IPC_CHANGED};
    m.u.changed =
        (struct ipc_changed){ipc_str_c("db"), ipc_str_c("bob"), ipc_str_c("Sent"), 1, 5, 4, 9};
    fake_send(&m);
    assert_true(run_until(changed_called));
    assert_string_equal(changed.folder, "Sent");
    assert_int_equal(changed.exists, 4);
    /* NULL stops delivery; the message is still read and the link stays up. */
    core_link_set_changed_cb(the_link, NULL, NULL);
    fake_send(&m);
    run_for(30);
    assert_int_equal(changed.calls, 1);
    assert_true(core_link_ready(the_link));
}

static struct {
    unsigned calls;
    uint16_t change;
    char new_folder[64];
} folder_changed;

static void
folder_cb(void *ctx, const struct ipc_msg *msg)
{
    assert_ptr_equal(ctx, &folder_changed);
    assert_int_equal(msg->type, TDM_IPC_FOLDER_CHANGED);
    folder_changed.calls++;
    folder_changed.change = msg->u.folder_changed.change;
    snprintf(folder_changed.new_folder, sizeof(folder_changed.new_folder), "%.*s",
             (int)msg->u.folder_changed.new_folder.len, msg->u.folder_changed.new_folder.ptr);
}

static bool
folder_called(void)
{
    return folder_changed.calls > 0;
}

/* FOLDER_CHANGED goes to its own callback, never to CHANGED's. */
static void
test_folder_changed(void **state)
{
    (void)state;
    connect_ready();
    changed.calls = 0;
    core_link_set_changed_cb(the_link, changed_cb, &changed);
    core_link_set_folder_cb(the_link, folder_cb, &folder_changed);
    struct ipc_msg m = {.type = TDM_IPC_FOLDER_CHANGED};
    m.u.folder_changed =
        (struct ipc_folder_changed){ipc_str_c("db"),        ipc_str_c("bob"), ipc_str_c("Work"),
                                    TDM_IPC_FOLDER_RENAMED, ipc_str_c("Job"), 7};
    fake_send(&m);
    assert_true(run_until(folder_called));
    assert_int_equal(folder_changed.change, TDM_IPC_FOLDER_RENAMED);
    assert_string_equal(folder_changed.new_folder, "Job");
    assert_int_equal(changed.calls, 0);
    core_link_set_folder_cb(the_link, NULL, NULL);
    fake_send(&m);
    run_for(30);
    assert_int_equal(folder_changed.calls, 1);
    assert_true(core_link_ready(the_link));
}

static unsigned ready_calls;

static void
ready_cb(void *ctx)
{
    assert_ptr_equal(ctx, &ready_calls);
    /* Called once READY, after the subscriptions went out again. */
    assert_true(core_link_ready(the_link));
    ready_calls++;
}

static bool
ready_called_twice(void)
{
    return ready_calls >= 2;
}

/* The ready callback runs at every (re)connection, so a subscriber can look at what changed
 * while the core was away. */
static void
test_ready_cb(void **state)
{
    (void)state;
    ready_calls = 0;
    fake_listen();
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_IMAP, &the_link), 0);
    core_link_set_ready_cb(the_link, ready_cb, &ready_calls);
    assert_true(run_until(link_ready));
    assert_int_equal(ready_calls, 1);
    assert_int_equal(core_link_subscribe(the_link, "db", "alice", "INBOX"), 0);
    run_for(20); /* sent before the drop: a write to the closed socket would raise SIGPIPE */
    fake_drop();
    assert_true(run_until(link_not_ready));
    assert_int_equal(ready_calls, 1);
    assert_true(run_until(ready_called_twice));
    run_for(20);
    assert_int_equal(fk.subscribes, 2);
    /* NULL stops the calls. */
    core_link_set_ready_cb(the_link, NULL, NULL);
    fake_drop();
    assert_true(run_until(link_not_ready));
    assert_true(run_until(link_ready));
    assert_int_equal(ready_calls, 2);
}

static struct {
    unsigned calls;
    uint32_t n;        /* in the last call */
    char first[64];    /* the first name of the last call */
    bool ready_before; /* the link was ready at each call */
} dismounted;

static void
dismounted_cb(void *ctx, const struct ipc_msg *msg)
{
    assert_ptr_equal(ctx, &dismounted);
    assert_int_equal(msg->type, TDM_IPC_DB_DISMOUNTED);
    dismounted.calls++;
    dismounted.n = msg->u.db_dismounted.n_databases;
    dismounted.first[0] = '\0';
    if (dismounted.n > 0)
        snprintf(dismounted.first, sizeof(dismounted.first), "%.*s",
                 (int)msg->u.db_dismounted.databases[0].len, msg->u.db_dismounted.databases[0].ptr);
    dismounted.ready_before = core_link_ready(the_link);
}

static bool
dismounted_called_3(void)
{
    return dismounted.calls >= 3;
}

static bool
dismounted_called_2(void)
{
    return dismounted.calls >= 2;
}

/* DB_DISMOUNTED reaches its callback with the core's list; each (re)connection first says
 * "none" (the core sends its list after HELLO_REPLY only when it is not empty). */
static void
test_dismounted(void **state)
{
    (void)state;
    memset(&dismounted, 0, sizeof(dismounted));
    fake_listen();
    assert_int_equal(core_link_new(fk.base, fk.path, TDM_IPC_WORKER_IMAP, &the_link), 0);
    core_link_set_dismounted_cb(the_link, dismounted_cb, &dismounted);
    core_link_set_changed_cb(the_link, changed_cb, &changed);
    changed.calls = 0;
    assert_true(run_until(link_ready));
    assert_int_equal(dismounted.calls, 1);
    assert_int_equal(dismounted.n, 0);
    assert_true(dismounted.ready_before);
    struct ipc_msg m = {.type = TDM_IPC_DB_DISMOUNTED};
    m.u.db_dismounted.n_databases = 2;
    m.u.db_dismounted.databases[0] = ipc_str_c("db1");
    m.u.db_dismounted.databases[1] = ipc_str_c("db2");
    fake_send(&m);
    assert_true(run_until(dismounted_called_2));
    assert_int_equal(dismounted.n, 2);
    assert_string_equal(dismounted.first, "db1");
    assert_int_equal(changed.calls, 0);
    /* A reconnect forgets it. */
    fake_drop();
    assert_true(run_until(link_not_ready));
    assert_true(run_until(dismounted_called_3));
    assert_int_equal(dismounted.n, 0);
    assert_true(core_link_ready(the_link));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_core_then_core, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_and_reconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_fails_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_bugs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_version_not_offered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_subscriptions_renewed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_cb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dismounted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The pure part of the heartbeats (src/cluster/cluster_hb_quorum.c, docs/cluster.md "Votes and
 * quorum" and "Timing"): the quorum of n votes, whether a member is seen at a time, and the
 * newest confirmation from what each vote answered. Times are passed in. And two nodes' heartbeats
 * on one loop over loopback TCP (plain), where one refuses the other's HELLO: the refused node
 * still hears the other by the heartbeats it sends (heard_ms), while seen stays on answers.
 * Two nodes with different timers refuse each other both ways (never heard, never seen). A
 * member whose session ends with a reset and whose port then refuses is not "gone"; with a
 * FIN (EOF) it is.
 */
#include "cluster/cluster_hb.h"

#include "lib/config.h"
#include "lib/conn.h"
#include "lib/event.h"
#include "proto/cluster/cluster_wire.h"

#include "scratch.h"
#include "tls_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

static void
test_quorum(void **state)
{
    (void)state;
    assert_int_equal(cluster_hb_quorum(1), 1);
    assert_int_equal(cluster_hb_quorum(2), 2);
    assert_int_equal(cluster_hb_quorum(3), 2); /* two nodes and a witness */
    assert_int_equal(cluster_hb_quorum(4), 3);
    assert_int_equal(cluster_hb_quorum(5), 3);
    assert_int_equal(cluster_hb_quorum(9), 5);
}

static void
test_seen(void **state)
{
    (void)state;
    /* interval 1000 ms x 5 misses: heard at 10000, seen up to 15000 inclusive, not after. */
    assert_false(cluster_hb_is_seen(0, 20000, 1000, 5)); /* never heard */
    assert_true(cluster_hb_is_seen(10000, 10000, 1000, 5));
    assert_true(cluster_hb_is_seen(10000, 15000, 1000, 5));
    assert_false(cluster_hb_is_seen(10000, 15001, 1000, 5));
    assert_true(cluster_hb_is_seen(10000, 10199, 100, 2));
    assert_true(cluster_hb_is_seen(10000, 10200, 100, 2));
    assert_false(cluster_hb_is_seen(10000, 10201, 100, 2));
    /* A time after now (the caller's clock read earlier): heard, not down. */
    assert_true(cluster_hb_is_seen(10001, 10000, 1000, 5));
}

static void
test_confirmation_three_votes(void **state)
{
    (void)state;
    uint64_t s = 0;
    /* Two nodes and a witness: the local vote plus one other is a majority, so the newest
     * confirmation is the newest send time any other vote answered. */
    uint64_t none[2] = {0, 0};
    assert_false(cluster_hb_confirmation(3, none, 2, &s));
    uint64_t one[2] = {0, 5000};
    assert_true(cluster_hb_confirmation(3, one, 2, &s));
    assert_int_equal(s, 5000);
    uint64_t both[2] = {7000, 5000};
    assert_true(cluster_hb_confirmation(3, both, 2, &s));
    assert_int_equal(s, 7000);
}

static void
test_confirmation_five_votes(void **state)
{
    (void)state;
    uint64_t s = 0;
    /* Five votes: the local one and two others. The newest s that two others each answered a
     * message sent at or after is the second newest of their times. */
    uint64_t a[4] = {100, 900, 400, 700};
    assert_true(cluster_hb_confirmation(5, a, 4, &s));
    assert_int_equal(s, 700);
    /* Only one other has ever answered: no majority yet. */
    uint64_t b[4] = {0, 900, 0, 0};
    assert_false(cluster_hb_confirmation(5, b, 4, &s));
    /* Ties count once each. */
    uint64_t c[4] = {800, 800, 0, 0};
    assert_true(cluster_hb_confirmation(5, c, 4, &s));
    assert_int_equal(s, 800);
}

static void
test_confirmation_never_newer_than_a_majority(void **state)
{
    (void)state;
    /* For every s the function returns, at least quorum - 1 others answered at or after s, and
     * no larger s has that property: checked against a brute force over small inputs. */
    uint64_t t[4];
    for (unsigned votes = 2; votes <= 5; votes++) {
        unsigned n = votes - 1;
        for (unsigned code = 0; code < 625; code++) {
            unsigned c = code;
            for (unsigned i = 0; i < 4; i++, c /= 5)
                t[i] = (uint64_t)(c % 5) * 100; /* 0 = never */
            uint64_t best = 0;
            for (uint64_t cand = 100; cand <= 400; cand += 100) {
                unsigned k = 0;
                for (unsigned i = 0; i < n; i++)
                    k += t[i] >= cand;
                if (k >= cluster_hb_quorum(votes) - 1)
                    best = cand;
            }
            uint64_t s = 0;
            bool ok = cluster_hb_confirmation(votes, t, n, &s);
            assert_int_equal(ok, best != 0);
            if (ok)
                assert_int_equal(s, best);
        }
    }
}

static void
test_confirmation_bounds(void **state)
{
    (void)state;
    uint64_t s = 0;
    uint64_t a[1] = {5};
    /* A lone vote has no one to confirm it: never "confirmed". */
    assert_false(cluster_hb_confirmation(1, a, 0, &s));
    /* More members than the snapshot holds is refused, not read past. */
    uint64_t many[CLUSTER_HB_MAX_MEMBERS + 1] = {0};
    assert_false(
        cluster_hb_confirmation(CLUSTER_HB_MAX_MEMBERS + 2, many, CLUSTER_HB_MAX_MEMBERS + 1, &s));
}

/* ---- two nodes, one refusing the other ---- */

static int
listener(uint16_t *port_r)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *port_r = ntohs(sa.sin_port);
    return fd;
}

static struct tdm_config *
node_config_ttl(const char *self, uint16_t own, const char *other, uint16_t other_port,
                const char *lease_ttl)
{
    char buf[1024];
    /* The witness's endpoints are a closed port: refused, never up. */
    snprintf(buf, sizeof(buf),
             "server = %s\nsite = dc1\ndatadir = /nonexistent\nroles = mailbox\n\n"
             "[directory]\nendpoints = 127.0.0.1:1\n\n[network public]\naddress = 127.0.0.1\n\n"
             "[listen cluster]\nnetwork = public\nport = %u\n\n"
             "[cluster]\nname = ccr1\nwitness = w\nheartbeat_interval = 100ms\n"
             "heartbeat_misses = 5\nlease_ttl = %s\n\n[member %s]\npublic = 127.0.0.1:%u\n\n"
             "[member w]\npublic = 127.0.0.1:1\ncoord = 127.0.0.1:1\n",
             self, own, lease_ttl, other, other_port);
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    int ret = tdm_config_load_buffer(buf, strlen(buf), self, &cfg, &error);
    if (ret != 0)
        fail_msg("config: %s", error ? error : "?");
    return cfg;
}

static struct tdm_config *
node_config(const char *self, uint16_t own, const char *other, uint16_t other_port)
{
    return node_config_ttl(self, own, other, other_port, "1s");
}

static void
verify_yes(void *ctx, const char *server, const char *key, size_t key_len,
           cluster_hb_verify_done_cb *done, void *done_ctx)
{
    (void)ctx, (void)server, (void)key, (void)key_len;
    done(done_ctx, 0, NULL);
}

/* As a node whose directory cannot be reached answers: not now. */
static void
verify_no(void *ctx, const char *server, const char *key, size_t key_len,
          cluster_hb_verify_done_cb *done, void *done_ctx)
{
    (void)ctx, (void)server, (void)key, (void)key_len;
    done(done_ctx, -EIO, "the directory is unreachable");
}

static const struct cluster_hb_member *
member_of(const struct cluster_hb_snapshot *s, const char *name)
{
    for (unsigned i = 0; i < s->n_members; i++)
        if (strcmp(s->members[i].name, name) == 0)
            return &s->members[i];
    fail_msg("no member %s", name);
    return NULL;
}

/* docs/cluster.md "Timing" (b): a passives's link to the active is refused (the active's
 * HELLO check fails) while the active's link to the passive works. The active counts the
 * passive's answers; the passive must count the active's heartbeats as hearing it. */
static void
test_heard_by_incoming_heartbeats(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config("a", pa, "p", pp), *cp = node_config("p", pp, "a", pa);
    struct cluster_hb *a = NULL, *p = NULL;
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_no};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    prm.cfg = cp;
    prm.listen_fd = fp;
    prm.verify = verify_yes;
    assert_int_equal(cluster_hb_start(&prm, &p), 0);
    static struct cluster_hb_snapshot sa, sp;
    bool done = false;
    for (int i = 0; i < 3000 && !done; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &sa);
        cluster_hb_snapshot(p, &sp);
        done = member_of(&sa, "p")->seen && member_of(&sp, "a")->heard_ms != 0;
    }
    const struct cluster_hb_member *ap = member_of(&sa, "p"), *pa_m = member_of(&sp, "a");
    /* a hears p's answers: p is seen there. */
    assert_true(ap->seen);
    assert_true(ap->answered_sent_ms != 0);
    /* p never had an answer from a (its HELLO is refused): not seen, no answer... */
    assert_false(pa_m->seen);
    assert_int_equal(pa_m->last_heard_ms, 0);
    assert_int_equal(pa_m->answered_sent_ms, 0);
    /* ...but it hears a, recently, and a's core is not "gone". */
    assert_true(pa_m->heard_ms != 0);
    assert_true(sp.now_ms - pa_m->heard_ms <= 1000);
    assert_false(pa_m->gone);
    cluster_hb_free(&a);
    cluster_hb_free(&p);
    tdm_config_free(&ca);
    tdm_config_free(&cp);
    conn_base_free(&base);
}

/* Attempts that fail in a row back off (0.5 s doubling to 10 s), instead of one per interval:
 * a member whose listener accepts and closes at once is tried about 4 times in 3 s, not 30. */
static void
test_reconnect_backoff(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config("a", pa, "p", pp);
    struct cluster_hb *a = NULL;
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_yes};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    unsigned accepted = 0;
    uint64_t until = cluster_hb_now_ms() + 3000;
    while (cluster_hb_now_ms() < until) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        int c = accept4(fp, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            accepted++;
            close(c);
        }
        usleep(1000);
    }
    /* At 0, 0.5, 1.5 s and perhaps 3.5: with the 100 ms interval and no back-off, ~30. */
    assert_in_range(accepted, 2, 5);
    cluster_hb_free(&a);
    close(fp);
    tdm_config_free(&ca);
    conn_base_free(&base);
}

/* ---- memory running out ---- */

/* malloc, calloc, strdup and bufferevent_socket_new are wrapped at link time
 * (tests/unit/CMakeLists.txt): while armed, the fail_at-th call (counted from 0) fails, or
 * every bufferevent_socket_new while bev_fail_all. Disarmed, they are the real ones. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
char *__real_strdup(const char *str);
struct bufferevent *__real_bufferevent_socket_new(struct event_base *b, evutil_socket_t fd,
                                                  int options);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
char *__wrap_strdup(const char *str);
struct bufferevent *__wrap_bufferevent_socket_new(struct event_base *b, evutil_socket_t fd,
                                                  int options);

static bool nomem_armed, nomem_failed, bev_fail_all;
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

struct bufferevent *
__wrap_bufferevent_socket_new(struct event_base *b, evutil_socket_t fd, int options)
{
    return bev_fail_all || nomem_now() ? NULL : __real_bufferevent_socket_new(b, fd, options);
}

static int n_dropped;

static void
dropped_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    (void)message;
    if (id == TDM_EV_CLUSTER_SESSION_DROPPED)
        n_dropped++;
}

/* A raw HELLO as member a to the listener on port: whether it was answered OK before the
 * connection closed. */
static bool
raw_hello(struct event_base *base, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    static struct cluster_msg m;
    memset(&m, 0, sizeof(m));
    m.type = CLUSTER_HELLO;
    m.request_id = 1;
    m.u.hello.version_min = CLUSTER_WIRE_VERSION;
    m.u.hello.version_max = CLUSTER_WIRE_VERSION;
    snprintf(m.u.hello.member, sizeof(m.u.hello.member), "a");
    snprintf(m.u.hello.cluster, sizeof(m.u.hello.cluster), "ccr1");
    snprintf(m.u.hello.key, sizeof(m.u.hello.key), "k");
    /* node_config's timers */
    m.u.hello.heartbeat_interval_ms = 100;
    m.u.hello.heartbeat_misses = 5;
    m.u.hello.lease_ttl_ms = 1000;
    static uint8_t buf[CLUSTER_WIRE_MAX_FRAME];
    size_t len, got = 0, flen;
    const char *error;
    assert_int_equal(cluster_msg_encode(&m, buf, sizeof(buf), &len, &error), 0);
    assert_int_equal(write(fd, buf, len), (ssize_t)len);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    bool closed = false, ok = false;
    for (int i = 0; i < 3000 && !closed && !ok; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t r = read(fd, buf + got, sizeof(buf) - got);
        closed = r == 0 || (r < 0 && errno == ECONNRESET);
        if (r > 0)
            got += (size_t)r;
        if (got >= 4 && cluster_frame_length(buf, got, &flen, &error) == 0 && got >= flen) {
            assert_int_equal(cluster_msg_decode(buf, flen, &m, NULL, &error), 0);
            ok = m.type == CLUSTER_HELLO_REPLY && m.u.hello_reply.code == CLUSTER_CODE_OK;
            closed = !ok;
        }
        usleep(500);
    }
    assert_true(closed || ok);
    close(fd);
    return ok;
}

/* Each allocation made while a node serves one heartbeat session (accepting it, its HELLO)
 * fails in turn: that session ends, never the node (it used to log_fatal), and the next
 * session is answered as before. */
static void
test_out_of_memory_listener(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    uint16_t pp;
    int fp = listener(&pp);
    /* Member a at a closed port: p's own link to it never comes up. */
    struct tdm_config *cp = node_config("p", pp, "a", 1);
    struct cluster_hb *p = NULL;
    struct cluster_hb_params prm = {.base = base, .cfg = cp, .listen_fd = fp, .key = "k",
                                    .verify = verify_yes};
    assert_int_equal(cluster_hb_start(&prm, &p), 0);
    event_set_hook(dropped_hook, NULL);
    n_dropped = 0;
    for (long k = 0;; k++) {
        nomem_fail_at = k;
        nomem_count = 0;
        nomem_failed = false;
        nomem_armed = true;
        bool ok = raw_hello(base, pp);
        nomem_armed = false;
        if (!nomem_failed) {
            assert_true(ok); /* past the last allocation: served whole */
            break;
        }
        assert_true(raw_hello(base, pp));
    }
    assert_true(n_dropped > 0);
    event_set_hook(NULL, NULL);
    cluster_hb_free(&p);
    tdm_config_free(&cp);
    conn_base_free(&base);
}

/* A node that cannot allocate its link to a member says so (5027) and tries again later: the
 * member is seen once memory is back. */
static void
test_out_of_memory_link(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config("a", pa, "p", pp), *cp = node_config("p", pp, "a", pa);
    struct cluster_hb *a = NULL, *p = NULL;
    event_set_hook(dropped_hook, NULL);
    n_dropped = 0;
    bev_fail_all = true;
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_yes};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    prm.cfg = cp;
    prm.listen_fd = fp;
    assert_int_equal(cluster_hb_start(&prm, &p), 0);
    static struct cluster_hb_snapshot sa;
    for (int i = 0; i < 300; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    bev_fail_all = false;
    assert_true(n_dropped >= 2); /* a's link to p and p's to a, at least once each */
    cluster_hb_snapshot(a, &sa);
    assert_false(member_of(&sa, "p")->seen);
    bool seen = false;
    for (int i = 0; i < 5000 && !seen; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &sa);
        seen = member_of(&sa, "p")->seen;
    }
    assert_true(seen);
    event_set_hook(NULL, NULL);
    cluster_hb_free(&a);
    cluster_hb_free(&p);
    tdm_config_free(&ca);
    tdm_config_free(&cp);
    conn_base_free(&base);
}

/* ---- timers that differ ---- */

static unsigned n_timers_events, n_refused_events;

static void
timers_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    (void)message;
    if (id == TDM_EV_CLUSTER_TIMERS_DIFFER)
        n_timers_events++;
    else if (id == TDM_EV_CLUSTER_PEER_REFUSED)
        n_refused_events++;
}

/* docs/cluster.md "Timing": a node whose lease_ttl is not ours is refused both ways (5028, not
 * 5026), so it is never heard, seen nor a confirmation, and the status says why with both
 * sides' values. */
static void
test_timers_differ_refused(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config_ttl("a", pa, "p", pp, "1s"),
                      *cp = node_config_ttl("p", pp, "a", pa, "2s");
    struct cluster_hb *a = NULL, *p = NULL;
    n_timers_events = n_refused_events = 0;
    event_set_hook(timers_hook, NULL);
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_yes};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    prm.cfg = cp;
    prm.listen_fd = fp;
    assert_int_equal(cluster_hb_start(&prm, &p), 0);
    static struct cluster_hb_snapshot sa, sp;
    /* 1.5 s: 15 heartbeat intervals, several reconnection attempts each way. */
    uint64_t until = cluster_hb_now_ms() + 1500;
    while (cluster_hb_now_ms() < until) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &sa);
        cluster_hb_snapshot(p, &sp);
        const struct cluster_hb_member *ap = member_of(&sa, "p"), *pa_m = member_of(&sp, "a");
        assert_false(ap->seen);
        assert_false(pa_m->seen);
        assert_int_equal(ap->heard_ms, 0);
        assert_int_equal(pa_m->heard_ms, 0);
        assert_int_equal(ap->answered_sent_ms, 0);
        assert_int_equal(pa_m->answered_sent_ms, 0);
        assert_false(ap->has_summary);
        assert_false(pa_m->has_summary);
        assert_false(sa.confirmed);
    }
    const struct cluster_hb_member *ap = member_of(&sa, "p"), *pa_m = member_of(&sp, "a");
    /* Each says why, with both sides' values. */
    const char *why[2] = {ap->timers_differ, pa_m->timers_differ};
    for (int i = 0; i < 2; i++) {
        assert_non_null(strstr(why[i], "timers differ: "));
        assert_non_null(strstr(why[i], "lease_ttl 1000 ms") ? strstr(why[i], "2000 ms")
                                                             : strstr(why[i], "lease_ttl 2000 ms"));
        assert_non_null(strstr(why[i], "1000 ms"));
    }
    /* Listener and connector side, on both nodes; never the generic refusal. */
    assert_true(n_timers_events >= 4);
    assert_int_equal(n_refused_events, 0);
    event_set_hook(NULL, NULL);
    cluster_hb_free(&a);
    cluster_hb_free(&p);
    tdm_config_free(&ca);
    tdm_config_free(&cp);
    conn_base_free(&base);
}

/* ---- how a session ends: FIN or RST ---- */

/* Runs node a against a fake member p on fp: accepts a's link, answers its HELLO, then closes
 * the listening socket (so a's next attempt is refused) and ends the session with a FIN
 * (shutdown) or a RST (SO_LINGER 0). Whether a ever reports p gone; *refused_r: whether a saw
 * its new attempt refused (so the test saw the second half of the rule). */
static bool
session_end_makes_gone(bool reset, bool *refused_r)
{
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config("a", pa, "p", pp);
    struct cluster_hb *a = NULL;
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_yes};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    int c = -1;
    for (int i = 0; i < 3000 && c < 0; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        c = accept4(fp, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        usleep(1000);
    }
    assert_true(c >= 0);
    static uint8_t buf[CLUSTER_WIRE_MAX_FRAME];
    static struct cluster_msg m;
    size_t got = 0, flen = 0;
    const char *error = NULL;
    for (int i = 0; i < 3000; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t r = read(c, buf + got, sizeof(buf) - got);
        if (r > 0)
            got += (size_t)r;
        if (got >= 4 && cluster_frame_length(buf, got, &flen, &error) == 0 && got >= flen)
            break;
        usleep(1000);
    }
    assert_int_equal(cluster_msg_decode(buf, flen, &m, NULL, &error), 0);
    assert_int_equal(m.type, CLUSTER_HELLO);
    uint32_t id = m.request_id;
    memset(&m, 0, sizeof(m));
    m.type = CLUSTER_HELLO_REPLY;
    m.request_id = id;
    m.u.hello_reply.version = CLUSTER_WIRE_VERSION;
    snprintf(m.u.hello_reply.member, sizeof(m.u.hello_reply.member), "p");
    size_t len = 0;
    assert_int_equal(cluster_msg_encode(&m, buf, sizeof(buf), &len, &error), 0);
    assert_int_equal(write(c, buf, len), (ssize_t)len);
    static struct cluster_hb_snapshot s;
    bool connected = false;
    for (int i = 0; i < 3000 && !connected; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &s);
        connected = member_of(&s, "p")->nets[0].connected;
    }
    assert_true(connected);
    close(fp); /* nothing listens there any more: a's next attempt is refused */
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        assert_int_equal(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(c);
    } else {
        /* A FIN whatever a's heartbeats left unread (close would send a RST then). */
        assert_int_equal(shutdown(c, SHUT_WR), 0);
    }
    bool gone = false, refused = false;
    uint64_t until = cluster_hb_now_ms() + 1500;
    while (cluster_hb_now_ms() < until && !gone) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &s);
        gone = member_of(&s, "p")->gone;
        refused |= member_of(&s, "p")->nets[0].refused;
    }
    if (!reset)
        close(c);
    *refused_r = refused;
    cluster_hb_free(&a);
    tdm_config_free(&ca);
    conn_base_free(&base);
    return gone;
}

/* The same under TLS, as in a deployment: the fake member p answers in a thread (blocking
 * SSL), node a's loop runs here. With OpenSSL 3 a FIN without close_notify is an
 * unexpected-EOF error and a RST an SSL_ERROR_SYSCALL; libevent's "dirty shutdown" would make
 * the second an EOF too (df5f40c). */
struct tls_member {
    SSL_CTX *ctx;
    int fd;
    SSL *ssl;
    atomic_bool done, ok;
};

static void *
tls_member_main(void *arg)
{
    struct tls_member *t = arg;
    static uint8_t buf[CLUSTER_WIRE_MAX_FRAME];
    static struct cluster_msg m;
    size_t got = 0, flen = 0;
    const char *error = NULL;
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    if (SSL_accept(t->ssl) != 1)
        goto out;
    while (!(got >= 4 && cluster_frame_length(buf, got, &flen, &error) == 0 && got >= flen)) {
        int r = SSL_read(t->ssl, buf + got, (int)(sizeof(buf) - got));
        if (r <= 0)
            goto out;
        got += (size_t)r;
    }
    if (cluster_msg_decode(buf, flen, &m, NULL, &error) != 0 || m.type != CLUSTER_HELLO)
        goto out;
    uint32_t id = m.request_id;
    memset(&m, 0, sizeof(m));
    m.type = CLUSTER_HELLO_REPLY;
    m.request_id = id;
    m.u.hello_reply.version = CLUSTER_WIRE_VERSION;
    snprintf(m.u.hello_reply.member, sizeof(m.u.hello_reply.member), "p");
    size_t len = 0;
    if (cluster_msg_encode(&m, buf, sizeof(buf), &len, &error) != 0 ||
        SSL_write(t->ssl, buf, (int)len) != (int)len)
        goto out;
    t->ok = true;
out:
    t->done = true;
    return NULL;
}

static bool
tls_session_end_makes_gone(bool reset, bool *refused_r)
{
    char dir[256];
    struct tls_files files;
    if (tls_fixture_make(dir, sizeof(dir), "cluster_hb", &files) < 0)
        fail_msg("no TLS fixture");
    SSL_CTX *server_ctx = NULL, *client_ctx = NULL;
    char *err = NULL;
    if (tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE, &server_ctx,
                           &err) < 0 ||
        tls_client_ctx_new(files.ca, NULL, NULL, &client_ctx, &err) < 0)
        fail_msg("ctx: %s", err);
    struct event_base *base = event_base_new();
    uint16_t pa, pp;
    int fa = listener(&pa), fp = listener(&pp);
    struct tdm_config *ca = node_config("a", pa, "p", pp);
    struct cluster_hb *a = NULL;
    struct cluster_hb_params prm = {.base = base, .cfg = ca, .listen_fd = fa, .key = "k",
                                    .verify = verify_yes, .client_tls = client_ctx};
    assert_int_equal(cluster_hb_start(&prm, &a), 0);
    int c = -1;
    for (int i = 0; i < 3000 && c < 0; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        c = accept4(fp, NULL, NULL, SOCK_CLOEXEC);
        usleep(1000);
    }
    assert_true(c >= 0);
    struct tls_member t = {.ctx = server_ctx, .fd = c};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, tls_member_main, &t), 0);
    static struct cluster_hb_snapshot s;
    bool connected = false;
    for (int i = 0; i < 5000 && !connected; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &s);
        connected = member_of(&s, "p")->nets[0].connected;
    }
    pthread_join(th, NULL);
    assert_true(t.ok);
    assert_true(connected);
    close(fp);
    if (reset) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        assert_int_equal(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(c);
    } else {
        assert_int_equal(shutdown(c, SHUT_WR), 0); /* a FIN, no close_notify: a killed peer */
    }
    bool gone = false, refused = false;
    uint64_t until = cluster_hb_now_ms() + 1500;
    while (cluster_hb_now_ms() < until && !gone) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
        cluster_hb_snapshot(a, &s);
        gone = member_of(&s, "p")->gone;
        refused |= member_of(&s, "p")->nets[0].refused;
    }
    if (!reset)
        close(c);
    SSL_free(t.ssl);
    *refused_r = refused;
    cluster_hb_free(&a);
    tdm_config_free(&ca);
    conn_base_free(&base);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    tls_files_clear(&files);
    assert_int_equal(scratch_remove(dir), 0);
    return gone;
}

static void
test_tls_eof_then_refused_is_gone(void **state)
{
    (void)state;
    bool refused = false;
    assert_true(tls_session_end_makes_gone(false, &refused));
    assert_true(refused);
}

static void
test_tls_reset_then_refused_is_not_gone(void **state)
{
    (void)state;
    bool refused = false;
    assert_false(tls_session_end_makes_gone(true, &refused));
    assert_true(refused);
}

/* A FIN comes from the member's kernel alone: with the port refusing after it, its core is not
 * running (docs/cluster.md "Timing" (b)). */
static void
test_eof_then_refused_is_gone(void **state)
{
    (void)state;
    bool refused = false;
    assert_true(session_end_makes_gone(false, &refused));
    assert_true(refused);
}

/* A RST and then a refused connect is what a firewall's REJECT --reject-with tcp-reset gives
 * while the member's core runs on: never "gone", the passive waits for silence. */
static void
test_reset_then_refused_is_not_gone(void **state)
{
    (void)state;
    bool refused = false;
    assert_false(session_end_makes_gone(true, &refused));
    assert_true(refused);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quorum),
        cmocka_unit_test(test_seen),
        cmocka_unit_test(test_confirmation_three_votes),
        cmocka_unit_test(test_confirmation_five_votes),
        cmocka_unit_test(test_confirmation_never_newer_than_a_majority),
        cmocka_unit_test(test_confirmation_bounds),
        cmocka_unit_test(test_heard_by_incoming_heartbeats),
        cmocka_unit_test(test_reconnect_backoff),
        cmocka_unit_test(test_out_of_memory_listener),
        cmocka_unit_test(test_out_of_memory_link),
        cmocka_unit_test(test_timers_differ_refused),
        cmocka_unit_test(test_eof_then_refused_is_gone),
        cmocka_unit_test(test_reset_then_refused_is_not_gone),
        cmocka_unit_test(test_tls_eof_then_refused_is_gone),
        cmocka_unit_test(test_tls_reset_then_refused_is_not_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The copy's agent (src/repl/repl_copy*.c) against scripted sources: small TLS servers on
 * 127.0.0.1 in threads of their own that answer HELLO as each test needs (accept, refuse with
 * a code, ship bytes that fail inspection). What the agent does is read from its published
 * status and the events it emits:
 *   - every network refusing: Disconnected, naming each;
 *   - the first network down: the second is used; once the first answers, the agent moves
 *     back to it (event 4011);
 *   - refusals: not-active is ServiceDown, auth is Failed and retried, diverged is Failed and
 *     not retried;
 *   - three ranges failing inspection in a row: Failed with the message, three 4010 events;
 *   - suspend and resume, both twice.
 * The happy path against the real source and store is tests/integration/test_replication.py.
 */
#include "repl/repl_copy.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/tls.h"
#include "proto/repl/repl_wire.h"
#include "scratch.h"
#include "tls_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static char tls_dir[256];
static struct tls_files tls_files;
static SSL_CTX *server_tls;

static const uint8_t GUID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* ---- events ---- */

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned events_seen[16]; /* 4000..4015 */

static void
event_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    (void)message;
    if (id >= 4000 && id < 4016) {
        pthread_mutex_lock(&events_lock);
        events_seen[id - 4000]++;
        pthread_mutex_unlock(&events_lock);
    }
}

static unsigned
events_count(enum tdm_event id)
{
    pthread_mutex_lock(&events_lock);
    unsigned n = events_seen[id - 4000];
    pthread_mutex_unlock(&events_lock);
    return n;
}

/* ---- a scripted source ---- */

enum behaviour {
    ACCEPT,              /* HELLO_REPLY OK, then POSITION every 100 ms until the copy leaves */
    NOT_ACTIVE,          /* HELLO_REPLY refused: not-active */
    AUTH,                /* HELLO_REPLY refused: auth */
    DIVERGED,            /* HELLO_REPLY refused: diverged */
    BAD_BYTES,           /* HELLO_REPLY OK, then LOG_DATA that fails inspection */
    ENDS,                /* HELLO_REPLY OK, then ERROR timeout: the active ends the session */
    LIMIT,               /* HELLO_REPLY refused: limit (too many copies now) */
    RELEASED,            /* HELLO_REPLY refused: released (too far behind) */
    RELEASED_IN_SESSION, /* HELLO_REPLY OK, then ERROR released */
};

struct fake {
    int fd;
    uint16_t port;
    enum behaviour how;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint hellos; /* HELLOs answered */
};

static void
send_msg(SSL *ssl, const struct repl_msg *m)
{
    uint8_t *buf;
    size_t len;
    const char *error = NULL;
    if (repl_msg_encode_alloc(m, &buf, &len, &error) != 0)
        fail_msg("encode: %s", error);
    SSL_write(ssl, buf, (int)len);
    free(buf);
}

/* Reads one frame into buf (cap bytes); 0, or -1 at EOF, error or after 200 ms of silence
 * (*idle set then). */
static int
recv_msg(SSL *ssl, int fd, uint8_t *buf, size_t cap, struct repl_msg *m, bool *idle)
{
    size_t have = 0;
    *idle = false;
    for (;;) {
        size_t flen;
        const char *error;
        if (have >= 4 && repl_msg_decode(buf, have, m, &flen, &error) == 0)
            return 0;
        if (SSL_pending(ssl) == 0) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 200) == 0) {
                *idle = have == 0;
                return -1;
            }
        }
        int n = SSL_read(ssl, buf + have, (int)(cap - have));
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
}

static void
serve(struct fake *f, int cfd)
{
    SSL *ssl = SSL_new(server_tls);
    SSL_set_fd(ssl, cfd);
    uint8_t *buf = malloc(65536);
    if (SSL_accept(ssl) != 1)
        goto out;
    struct repl_msg m;
    bool idle;
    while (recv_msg(ssl, cfd, buf, 65536, &m, &idle) < 0)
        if (!idle || atomic_load(&f->stop))
            goto out;
    if (m.type != REPL_HELLO)
        goto out;
    atomic_fetch_add(&f->hellos, 1);
    struct repl_msg r = {.type = REPL_HELLO_REPLY, .request_id = m.request_id};
    struct repl_hello_reply *hr = &r.u.hello_reply;
    memcpy(hr->guid, GUID, sizeof(GUID));
    hr->lowest_generation = 1;
    hr->current_generation = 1;
    switch (f->how) {
    case NOT_ACTIVE:
        hr->code = REPL_CODE_NOT_ACTIVE;
        hr->reason = repl_str_c("the database is not active here");
        break;
    case AUTH:
        hr->code = REPL_CODE_AUTH;
        hr->reason = repl_str_c("wrong server key");
        break;
    case DIVERGED:
        hr->code = REPL_CODE_DIVERGED;
        hr->reason = repl_str_c("the copy's log is not the active's");
        break;
    case LIMIT:
        hr->code = REPL_CODE_LIMIT;
        hr->reason = repl_str_c("database db1 already has 16 copies connected");
        break;
    case RELEASED:
        hr->code = REPL_CODE_RELEASED;
        hr->reason = repl_str_c("generation 1 is more than 50 generations behind");
        break;
    default:
        hr->version = 1;
        hr->mode = REPL_MODE_BLOCK;
        break;
    }
    send_msg(ssl, &r);
    if (f->how == BAD_BYTES) {
        /* A whole header block of zeros: not a generation header. */
        static uint8_t zeros[TDM_LOG_HEADER_SIZE + 64];
        struct repl_msg d = {.type = REPL_LOG_DATA};
        d.u.log_data = (struct repl_log_data){.generation = 1,
                                              .offset = 0,
                                              .file_size = 65536,
                                              .raw_length = sizeof(zeros),
                                              .data = zeros,
                                              .data_len = sizeof(zeros)};
        send_msg(ssl, &d);
    }
    if (f->how == ENDS || f->how == RELEASED_IN_SESSION) {
        struct repl_msg e = {.type = REPL_ERROR};
        e.u.error = f->how == ENDS
                        ? (struct repl_error){.code = REPL_CODE_TIMEOUT,
                                              .text = repl_str_c("nothing heard from the copy")}
                        : (struct repl_error){.code = REPL_CODE_RELEASED,
                                              .text = repl_str_c("this copy fell 51 generations "
                                                                 "behind")};
        send_msg(ssl, &e);
        goto out;
    }
    /* Keep the session (heartbeats) until the copy or the test leaves. */
    while (!atomic_load(&f->stop)) {
        struct repl_msg p = {.type = REPL_POSITION};
        p.u.position = (struct repl_position){.generation = 1, .time_us = 1};
        send_msg(ssl, &p);
        if (recv_msg(ssl, cfd, buf, 65536, &m, &idle) < 0 && !idle)
            break;
    }
out:
    free(buf);
    SSL_free(ssl);
    close(cfd);
}

static void *
fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int cfd = accept(f->fd, NULL, NULL);
        if (cfd >= 0)
            serve(f, cfd);
    }
    return NULL;
}

/* Listens on 127.0.0.1:port (0: any free one). */
static void
fake_start(struct fake *f, enum behaviour how, uint16_t port)
{
    memset(f, 0, sizeof(*f));
    f->how = how;
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->fd, 8), 0);
    socklen_t sl = sizeof(sa);
    getsockname(f->fd, (struct sockaddr *)&sa, &sl);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void
fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

/* A port nothing listens on: bound and closed again. */
static uint16_t
dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- the agent ---- */

struct agent {
    char dir[256];
    char db[300];
    struct repl_copy *copy;
};

/* The scratch directory and the copy's (empty) directory, before its agent starts. */
static void
agent_prepare(struct agent *a)
{
    assert_int_equal(scratch_make(a->dir, sizeof(a->dir), "repl-copy"), 0);
    snprintf(a->db, sizeof(a->db), "%s/db1", a->dir);
    assert_int_equal(mkdir(a->db, 0750), 0);
}

static void
agent_launch(struct agent *a, const uint16_t *ports, unsigned n)
{
    struct repl_copy_conf conf = {.role = REPL_ROLE_PASSIVE, .n_sources = n};
    snprintf(conf.kind, sizeof(conf.kind), "mail");
    static const char *const nets[] = {"first", "second"};
    for (unsigned i = 0; i < n; i++) {
        snprintf(conf.sources[i].network, sizeof(conf.sources[i].network), "%s", nets[i]);
        struct tdm_config_addr *ad = &conf.sources[i].endpoint.address;
        ad->family = AF_INET;
        inet_pton(AF_INET, "127.0.0.1", ad->bytes);
        snprintf(ad->text, sizeof(ad->text), "127.0.0.1");
        conf.sources[i].endpoint.port = ports[i];
    }
    char *err = NULL;
    assert_int_equal(repl_copy_conf_write(a->db, &conf, &err), 0);
    struct store_options so;
    store_options_init(&so);
    struct repl_copy_options o = {
        .database = "db1",
        .dir = a->db,
        .conf = &conf,
        .store = &so,
        .server_name = "copyhost",
        .key = "k3y",
        .ca_file = tls_files.ca,
        .cert_file = tls_files.certificate,
        .key_file = tls_files.key,
        .timeout_ms = 2000,
        .retry_min_ms = 50,
        .retry_max_ms = 200,
        .probe_ms = 100,
    };
    if (repl_copy_start(&o, &a->copy, &err) != 0)
        fail_msg("start: %s", err);
}

static void
agent_start(struct agent *a, const uint16_t *ports, unsigned n)
{
    agent_prepare(a);
    agent_launch(a, ports, n);
}

static void
agent_stop(struct agent *a)
{
    repl_copy_stop(&a->copy);
    assert_null(a->copy);
    scratch_remove(a->dir);
}

static struct repl_copy_status
status(struct agent *a)
{
    struct repl_copy_status st;
    repl_copy_get_status(a->copy, &st);
    return st;
}

/* Polls until the agent is in state (and, when network is not NULL, on that network). */
static struct repl_copy_status
wait_state(struct agent *a, enum repl_copy_state state, const char *network)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct repl_copy_status st = status(a);
        if (st.state == state && (!network || !strcmp(st.network, network)))
            return st;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 15)
            fail_msg("waited for %s%s%s; the copy is %s: %s", repl_copy_state_name(state),
                     network ? " on " : "", network ? network : "", repl_copy_state_name(st.state),
                     st.message);
        usleep(10000);
    }
}

/* ---- tests ---- */

static void
test_disconnected(void **state)
{
    (void)state;
    uint16_t ports[2] = {dead_port(), dead_port()};
    struct agent a;
    unsigned before = events_count(TDM_EV_REPL_COPY_DISCONNECTED);
    agent_start(&a, ports, 2);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_DISCONNECTED, NULL);
    assert_non_null(strstr(st.message, "first (127.0.0.1:"));
    assert_non_null(strstr(st.message, "second (127.0.0.1:"));
    assert_non_null(strstr(st.message, "refused"));
    assert_string_equal(st.network, "");
    /* Retries keep it Disconnected: one event, not one per round. */
    usleep(500000);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_DISCONNECTED), before + 1);
    /* Never Healthy: it did not lose a source it had (not eligible for failover). */
    assert_false(status(&a).lost_source_while_healthy);
    agent_stop(&a);
}

/* The source goes away from a Healthy copy: Disconnected, and the copy says it was Healthy
 * right before, through its retries, however soon after becoming Healthy (a reader sampling
 * the status need not have seen the Healthy). */
static void
test_lost_source_while_healthy(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, ACCEPT, 0);
    struct agent a;
    agent_start(&a, &f.port, 1);
    assert_false(wait_state(&a, REPL_COPY_HEALTHY, NULL).lost_source_while_healthy);
    fake_stop(&f);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_DISCONNECTED, NULL);
    assert_true(st.lost_source_while_healthy);
    usleep(500000); /* retries, refused */
    st = status(&a);
    assert_int_equal(st.state, REPL_COPY_DISCONNECTED);
    assert_true(st.lost_source_while_healthy);
    agent_stop(&a);
}

static void
test_fallback_and_return(void **state)
{
    (void)state;
    struct fake second;
    fake_start(&second, ACCEPT, 0);
    uint16_t first_port = dead_port();
    uint16_t ports[2] = {first_port, second.port};
    struct agent a;
    unsigned changed = events_count(TDM_EV_REPL_COPY_NETWORK_CHANGED);
    agent_start(&a, ports, 2);
    /* Seeded from the GUID the source named, then caught up: Healthy on the second. */
    struct repl_copy_status st = wait_state(&a, REPL_COPY_HEALTHY, "second");
    assert_int_equal(st.mode, REPL_MODE_BLOCK);
    assert_int_equal(st.copy_queue_generations, 0);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_SEEDING) > 0, 1);
    /* The first network comes back: the agent returns to it. */
    struct fake first;
    fake_start(&first, ACCEPT, first_port);
    wait_state(&a, REPL_COPY_HEALTHY, "first");
    /* One event for the one change (the first session, on the second network, is none). */
    assert_int_equal(events_count(TDM_EV_REPL_COPY_NETWORK_CHANGED), changed + 1);
    assert_true(atomic_load(&first.hellos) >= 1);
    agent_stop(&a);
    fake_stop(&first);
    fake_stop(&second);
}

static void
test_refusals(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, NOT_ACTIVE, 0);
    struct agent a;
    unsigned down = events_count(TDM_EV_REPL_COPY_SERVICE_DOWN);
    unsigned resync = events_count(TDM_EV_REPL_COPY_RESYNCHRONIZING);
    agent_start(&a, &f.port, 1);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_SERVICE_DOWN, NULL);
    assert_non_null(strstr(st.message, "not-active"));
    assert_non_null(strstr(st.message, "not active here"));
    /* It asks again, and stays ServiceDown meanwhile: one event each, not two per retry. */
    while (atomic_load(&f.hellos) < 3)
        usleep(10000);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_SERVICE_DOWN), down + 1);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_RESYNCHRONIZING), resync + 1);
    agent_stop(&a);
    fake_stop(&f);

    /* Credentials: Failed, and tried again (they are fixed on the directory). */
    fake_start(&f, AUTH, 0);
    agent_start(&a, &f.port, 1);
    st = wait_state(&a, REPL_COPY_FAILED, NULL);
    assert_non_null(strstr(st.message, "credentials"));
    while (atomic_load(&f.hellos) < 2)
        usleep(10000);
    agent_stop(&a);
    fake_stop(&f);

    /* The active ends a session it had accepted: the copy is no longer Healthy (status must
     * not show a session that is gone) and tries again. */
    unsigned disc = events_count(TDM_EV_REPL_COPY_DISCONNECTED);
    fake_start(&f, ENDS, 0);
    agent_start(&a, &f.port, 1);
    while (events_count(TDM_EV_REPL_COPY_DISCONNECTED) == disc)
        usleep(10000);
    while (atomic_load(&f.hellos) < 2)
        usleep(10000);
    agent_stop(&a);
    fake_stop(&f);

    /* Diverged: Failed for good, never asked again. */
    fake_start(&f, DIVERGED, 0);
    agent_start(&a, &f.port, 1);
    st = wait_state(&a, REPL_COPY_FAILED, NULL);
    /* Where it diverged (a new copy: nothing held), what to do, and the active's reason. */
    assert_non_null(strstr(st.message, "diverged from the active at LSN 0 (epoch 0): needs a "
                                       "reseed (the copy's log is not the active's)"));
    usleep(600000); /* three back-offs' worth */
    assert_int_equal(atomic_load(&f.hellos), 1);
    agent_stop(&a);
    fake_stop(&f);

    /* Limit (too many copies at the active now) goes away by itself: ServiceDown, asked
     * again. */
    fake_start(&f, LIMIT, 0);
    agent_start(&a, &f.port, 1);
    st = wait_state(&a, REPL_COPY_SERVICE_DOWN, NULL);
    assert_non_null(strstr(st.message, "(limit): database db1 already has 16 copies"));
    while (atomic_load(&f.hellos) < 2)
        usleep(10000);
    agent_stop(&a);
    fake_stop(&f);

    /* Released (further behind than the active holds logs for) does not: Failed, needing a
     * reseed, never asked again; at HELLO and in a session alike. */
    for (int in_session = 0; in_session < 2; in_session++) {
        fake_start(&f, in_session ? RELEASED_IN_SESSION : RELEASED, 0);
        agent_start(&a, &f.port, 1);
        st = wait_state(&a, REPL_COPY_FAILED, NULL);
        assert_non_null(strstr(st.message, in_session ? "(released): this copy fell 51"
                                                      : "(released): generation 1 is more"));
        assert_non_null(strstr(st.message, "; the copy needs a reseed"));
        usleep(600000);
        assert_int_equal(atomic_load(&f.hellos), 1);
        agent_stop(&a);
        fake_stop(&f);
    }
}

static void
test_three_inspection_failures(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, BAD_BYTES, 0);
    unsigned before = events_count(TDM_EV_REPL_COPY_INSPECTION_FAILED);
    struct agent a;
    agent_start(&a, &f.port, 1);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_FAILED, NULL);
    assert_non_null(strstr(st.message, "failed inspection 3 times in a row"));
    assert_int_equal(st.inspection_failures, 3);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_INSPECTION_FAILED), before + 3);
    /* Each failure asked again: three sessions, and no fourth once Failed. */
    usleep(600000);
    assert_int_equal(atomic_load(&f.hellos), 3);
    agent_stop(&a);
    fake_stop(&f);
}

static void
test_suspend_resume(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, ACCEPT, 0);
    struct agent a;
    agent_start(&a, &f.port, 1);
    wait_state(&a, REPL_COPY_HEALTHY, NULL);
    unsigned suspended = events_count(TDM_EV_REPL_COPY_SUSPENDED);
    assert_int_equal(repl_copy_suspend(a.copy, "maintenance"), 0);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_SUSPENDED, NULL);
    assert_string_equal(st.message, "maintenance");
    assert_string_equal(st.network, "");
    assert_int_equal(repl_copy_suspend(a.copy, "still"), 0);
    while (strcmp(status(&a).message, "still") != 0)
        usleep(10000);
    assert_int_equal(status(&a).state, REPL_COPY_SUSPENDED);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_SUSPENDED), suspended + 2);
    unsigned hellos = atomic_load(&f.hellos);
    assert_int_equal(repl_copy_resume(a.copy), 0);
    wait_state(&a, REPL_COPY_HEALTHY, NULL);
    assert_int_equal(atomic_load(&f.hellos), hellos + 1);
    /* Resuming a Healthy copy changes nothing. */
    unsigned init = events_count(TDM_EV_REPL_COPY_INITIALIZING);
    assert_int_equal(repl_copy_resume(a.copy), 0);
    usleep(300000);
    assert_int_equal(events_count(TDM_EV_REPL_COPY_INITIALIZING), init);
    assert_int_equal(status(&a).state, REPL_COPY_HEALTHY);
    agent_stop(&a);
    fake_stop(&f);
}

/* A suspension is written into copy.conf: an agent started again (a restart of tandemd)
 * comes up Suspended with the comment, and a resume takes it out of the file. */
static void
test_suspension_survives_restart(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, ACCEPT, 0);
    struct agent a;
    agent_start(&a, &f.port, 1);
    wait_state(&a, REPL_COPY_HEALTHY, NULL);
    assert_int_equal(repl_copy_suspend(a.copy, "until # the \"swap\""), 0);
    wait_state(&a, REPL_COPY_SUSPENDED, NULL);
    repl_copy_stop(&a.copy);

    struct repl_copy_conf conf;
    char *err = NULL;
    assert_int_equal(repl_copy_conf_read(a.db, &conf, &err), 0);
    assert_true(conf.suspended);
    assert_string_equal(conf.suspend_comment, "until # the \"swap\"");
    unsigned hellos = atomic_load(&f.hellos);
    struct store_options so;
    store_options_init(&so);
    struct repl_copy_options o = {
        .database = "db1",
        .dir = a.db,
        .conf = &conf,
        .store = &so,
        .server_name = "copyhost",
        .key = "k3y",
        .ca_file = tls_files.ca,
        .cert_file = tls_files.certificate,
        .key_file = tls_files.key,
        .retry_min_ms = 50,
        .retry_max_ms = 200,
    };
    assert_int_equal(repl_copy_start(&o, &a.copy, &err), 0);
    struct repl_copy_status st = wait_state(&a, REPL_COPY_SUSPENDED, NULL);
    assert_string_equal(st.message, "until # the \"swap\"");
    /* The copy it had is open (its position shows), and nobody was asked. */
    usleep(300000);
    assert_int_equal(atomic_load(&f.hellos), hellos);
    assert_int_equal(repl_copy_resume(a.copy), 0);
    wait_state(&a, REPL_COPY_HEALTHY, NULL);
    assert_int_equal(repl_copy_conf_read(a.db, &conf, &err), 0);
    assert_false(conf.suspended);
    agent_stop(&a);
    fake_stop(&f);
}

static void
test_seed_leftovers_removed_at_start(void **state)
{
    (void)state;
    /* What a crash during a seed leaves beside the copy: a snapshot cut short and a copy
     * being built (or the old files after the exchange). Gone once the agent has started,
     * even when nothing seeds again (no active reachable here). */
    struct agent a;
    agent_prepare(&a);
    char snap[400], tmp[400], inner[450];
    snprintf(snap, sizeof(snap), "%s/.db1.seed.mdb", a.dir);
    snprintf(tmp, sizeof(tmp), "%s/.db1.seed", a.dir);
    snprintf(inner, sizeof(inner), "%s/data.mdb", tmp);
    FILE *f = fopen(snap, "w");
    assert_non_null(f);
    fputs("half a snapshot", f);
    fclose(f);
    assert_int_equal(mkdir(tmp, 0750), 0);
    f = fopen(inner, "w");
    assert_non_null(f);
    fclose(f);
    uint16_t port = dead_port();
    agent_launch(&a, &port, 1);
    wait_state(&a, REPL_COPY_DISCONNECTED, NULL);
    struct stat st;
    assert_int_equal(lstat(snap, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(lstat(tmp, &st), -1);
    assert_int_equal(errno, ENOENT);
    agent_stop(&a);
}

static int
group_setup(void **state)
{
    (void)state;
    if (tls_fixture_make(tls_dir, sizeof(tls_dir), "repl-copy-tls", &tls_files) != 0)
        return -1;
    char *err = NULL;
    if (tls_server_ctx_new(tls_files.certificate, tls_files.key, NULL, TLS_CLIENT_AUTH_NONE,
                           &server_tls, &err) != 0) {
        fprintf(stderr, "tls: %s\n", err);
        return -1;
    }
    event_set_sink(NULL);
    event_set_hook(event_hook, NULL);
    /* As in tandemd: a write to a peer that left is an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(server_tls);
    tls_files_clear(&tls_files);
    scratch_remove(tls_dir);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disconnected),
        cmocka_unit_test(test_lost_source_while_healthy),
        cmocka_unit_test(test_fallback_and_return),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_three_inspection_failures),
        cmocka_unit_test(test_suspend_resume),
        cmocka_unit_test(test_suspension_survives_restart),
        cmocka_unit_test(test_seed_leftovers_removed_at_start),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

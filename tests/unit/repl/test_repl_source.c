/*
 * The replication source (src/repl/repl_source*.c) on a real loopback TLS socket with a real
 * store: the source runs on a libevent loop in a thread of its own, and the test speaks the
 * protocol as a minimal copy would, with the codec (blocking socket, OpenSSL client). It
 * rebuilds generation files from the LOG_DATA it receives and compares them with the active's
 * files byte for byte.
 *
 * Generations are 64 KiB (the smallest allowed) so a few hundred records span several.
 */
#include "repl/repl_source.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/tls.h"
#include "proto/repl/repl_wire.h"
#include "proto/repl/repl_zstd.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"
#include "tls_fixture.h"

#define GEN_SIZE (64u * 1024u)
#define MAX_GENS 512

static char tls_dir[256];
static struct tls_files tls_files;
static SSL_CTX *server_tls, *client_tls;

/* ---- The source on its loop thread ---- */

struct fixture {
    char dir[256];
    char dbdir[320];
    struct store *store;
    struct event_base *base;
    struct repl_source *src;
    pthread_t thread;
    int ctl[2];
    struct event *ctl_ev;
    uint16_t port;
};

struct call {
    void (*fn)(struct fixture *f, void *arg);
    void *arg;
    struct fixture *f;
    sem_t done;
};

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    struct call *c;
    if (read(fd, &c, sizeof(c)) != sizeof(c))
        return;
    c->fn(c->f, c->arg);
    sem_post(&c->done);
}

/* Runs fn on the loop thread and waits for it. */
static void
loop_call(struct fixture *f, void (*fn)(struct fixture *, void *), void *arg)
{
    struct call c = {.fn = fn, .arg = arg, .f = f};
    sem_init(&c.done, 0, 0);
    struct call *p = &c;
    assert_int_equal(write(f->ctl[1], &p, sizeof(p)), sizeof(p));
    while (sem_wait(&c.done) != 0)
        ;
    sem_destroy(&c.done);
}

static void *
loop_main(void *arg)
{
    struct fixture *f = arg;
    event_base_dispatch(f->base);
    return NULL;
}

/* The core's verify: "good-key" admits; server "slow" is answered 20 ms later, from the loop,
 * as a directory over the network would. */
struct deferred {
    repl_source_verify_done_cb *done;
    void *done_ctx;
    int status;
};

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct deferred *d = arg;
    d->done(d->done_ctx, d->status, d->status ? "wrong key" : NULL);
    free(d);
}

static void
test_verify(void *ctx, const char *server, const char *key, size_t key_len,
            repl_source_verify_done_cb *done, void *done_ctx)
{
    struct fixture *f = ctx;
    bool ok = key_len == 8 && memcmp(key, "good-key", 8) == 0 && strlen(key) == key_len;
    int status = ok ? 0 : -EACCES;
    if (strcmp(server, "slow") == 0) {
        struct deferred *d = malloc(sizeof(*d));
        *d = (struct deferred){done, done_ctx, status};
        struct timeval tv = {0, 20000};
        assert_int_equal(event_base_once(f->base, -1, EV_TIMEOUT, deferred_cb, d, &tv), 0);
        return;
    }
    done(done_ctx, status, ok ? NULL : "wrong key");
}

/* Opens f->store (created when create) at epoch min_epoch or the log's. */
static void
fixture_open_store(struct fixture *f, bool create, uint64_t min_epoch)
{
    struct store_options so;
    store_options_init(&so);
    so.generation_size = GEN_SIZE;
    so.idle_close_ms = 0; /* generations roll only when full or by store_roll() */
    so.min_epoch = min_epoch;
    const char *error = NULL;
    if ((create && store_create(f->dbdir, &so, &error) != 0) ||
        store_open(f->dbdir, &so, &f->store, &error))
        fail_msg("store: %s", error);
}

/* The source over f->store, which is open. */
static void
fixture_start_source(struct fixture *f, struct repl_source_options *o, uint16_t mode)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);

    f->base = event_base_new();
    assert_non_null(f->base);
    o->fd = lfd;
    o->tls = server_tls;
    o->verify = test_verify;
    o->verify_ctx = f;
    assert_int_equal(repl_source_new(f->base, o, &f->src), 0);
    assert_int_equal(repl_source_add_database(f->src, "db1", f->store, mode), 0);
    assert_int_equal(repl_source_add_database(f->src, "standby-only", NULL, 0), 0);
    assert_int_equal(pipe2(f->ctl, O_CLOEXEC), 0);
    f->ctl_ev = event_new(f->base, f->ctl[0], EV_READ | EV_PERSIST, ctl_cb, f);
    assert_int_equal(event_add(f->ctl_ev, NULL), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
}

/* A new store and its source. */
static void
fixture_start(struct fixture *f, struct repl_source_options *o, uint16_t mode, const char *tag)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(scratch_make(f->dir, sizeof(f->dir), tag), 0);
    snprintf(f->dbdir, sizeof(f->dbdir), "%s/db1", f->dir);
    fixture_open_store(f, true, 0);
    fixture_start_source(f, o, mode);
}

static void
do_break(struct fixture *f, void *arg)
{
    (void)arg;
    event_base_loopbreak(f->base);
}

static void
fixture_stop(struct fixture *f)
{
    loop_call(f, do_break, NULL);
    pthread_join(f->thread, NULL);
    repl_source_free(&f->src);
    assert_null(f->src);
    /* libevent frees TLS bufferevents with deferred callbacks from the loop: let it run. */
    struct timeval tv = {0, 100000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
    event_free(f->ctl_ev);
    close(f->ctl[0]);
    close(f->ctl[1]);
    event_base_free(f->base);
    assert_int_equal(store_close(&f->store), 0);
    scratch_remove(f->dir);
}

/* ---- A minimal copy ---- */

struct client {
    int fd;
    SSL *ssl;
    uint8_t *buf;
    size_t have, used, cap;
};

/* rcvbuf: the socket's receive buffer (before connect: set later, Linux's window stalls), 0 =
 * the default. */
static void
client_open_rcvbuf(struct client *c, struct fixture *f, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(f->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* Nothing the test waits for takes long: a stuck test fails instead of hanging. */
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char *err = NULL;
    assert_int_equal(tls_client_ssl_new(client_tls, "127.0.0.1", &c->ssl, &err), 0);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        ERR_print_errors_fp(stderr);
        fail_msg("TLS handshake failed");
    }
    c->cap = 2 * REPL_WIRE_MAX_FRAME;
    c->buf = malloc(c->cap);
}

static void
client_open(struct client *c, struct fixture *f)
{
    client_open_rcvbuf(c, f, 0);
}

static void
client_close(struct client *c)
{
    SSL_free(c->ssl);
    close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
}

static void
client_send(struct client *c, const struct repl_msg *m)
{
    uint8_t *buf;
    size_t len;
    const char *error = NULL;
    if (repl_msg_encode_alloc(m, &buf, &len, &error) != 0)
        fail_msg("encode: %s", error);
    assert_int_equal(SSL_write(c->ssl, buf, (int)len), (int)len);
    free(buf);
}

/* The next message (borrowing from c->buf until the next call), or -1 at EOF or timeout. */
static int
client_recv(struct client *c, struct repl_msg *m)
{
    memmove(c->buf, c->buf + c->used, c->have - c->used);
    c->have -= c->used;
    c->used = 0;
    for (;;) {
        size_t flen = 0;
        const char *error = NULL;
        int rc = repl_msg_decode(c->buf, c->have, m, &flen, &error);
        if (rc == 0) {
            c->used = flen;
            return 0;
        }
        if (rc != TDM_ENEEDMORE)
            fail_msg("the source sent a malformed frame: %s", error);
        int n = SSL_read(c->ssl, c->buf + c->have, (int)(c->cap - c->have));
        if (n <= 0)
            return -1;
        c->have += (size_t)n;
    }
}

static void
send_hello(struct client *c, const char *server, const char *key, const char *db,
           const uint8_t *guid, uint16_t role, uint64_t gen, uint64_t off, uint64_t lsn,
           uint64_t epoch)
{
    struct repl_msg m = {.type = REPL_HELLO, .request_id = 42};
    m.u.hello = (struct repl_hello){
        .version_min = 1,
        .version_max = 3,
        .server = repl_str_c(server),
        .key = repl_str_c(key),
        .database = repl_str_c(db),
        .role = role,
        .start_generation = gen,
        .start_offset = off,
        .last_lsn = lsn,
        .epoch = epoch,
    };
    if (guid)
        memcpy(m.u.hello.guid, guid, REPL_WIRE_GUID_LEN);
    client_send(c, &m);
}

static void
send_fresh_hello(struct client *c, const char *server, uint16_t role)
{
    send_hello(c, server, "good-key", "db1", NULL, role, 1, 0, 0, 0);
}

/* Reads HELLO_REPLY; returns its code (and, when refused, checks the connection then ends). */
static uint16_t
expect_reply(struct client *c, struct repl_hello_reply *reply_r)
{
    struct repl_msg m;
    assert_int_equal(client_recv(c, &m), 0);
    assert_int_equal(m.type, REPL_HELLO_REPLY);
    assert_int_equal(m.request_id, 42);
    if (reply_r) {
        *reply_r = m.u.hello_reply;
        reply_r->reason = (struct repl_str){0};
    }
    uint16_t code = m.u.hello_reply.code;
    if (code != REPL_CODE_OK)
        assert_int_equal(client_recv(c, &m), -1); /* closed after a refusal */
    return code;
}

/* ---- Rebuilding generation files from LOG_DATA ---- */

struct image {
    uint8_t *bytes[MAX_GENS + 1];
    uint64_t len[MAX_GENS + 1];
    bool closed[MAX_GENS + 1];
    uint64_t next_gen, next_off; /* where the next chunk must start */
    unsigned chunks, partial_chunks, compressed_chunks;
    struct repl_position pos; /* the latest POSITION */
    unsigned positions;
    struct repl_zstd *zstd;
};

static void
image_init(struct image *im, uint64_t gen, uint64_t off)
{
    memset(im, 0, sizeof(*im));
    im->next_gen = gen;
    im->next_off = off;
    assert_int_equal(repl_zstd_new(1, &im->zstd), 0);
}

static void
image_free(struct image *im)
{
    for (int i = 0; i <= MAX_GENS; i++)
        free(im->bytes[i]);
    repl_zstd_free(&im->zstd);
}

static void
image_apply(struct image *im, const struct repl_log_data *d)
{
    /* Contiguous: exactly where the previous chunk ended. */
    assert_true(d->generation == im->next_gen);
    assert_true(d->offset == im->next_off);
    assert_true(d->generation <= MAX_GENS);
    uint64_t g = d->generation;
    if (im->bytes[g] == NULL)
        im->bytes[g] = calloc(1, d->file_size);
    assert_true(d->offset + d->raw_length <= d->file_size);
    if (d->compression == REPL_COMPRESSION_ZSTD) {
        const char *error = NULL;
        if (repl_zstd_decompress(im->zstd, d->data, d->data_len, im->bytes[g] + d->offset,
                                 d->raw_length, &error) != 0)
            fail_msg("zstd: %s", error);
        im->compressed_chunks++;
    } else {
        memcpy(im->bytes[g] + d->offset, d->data, d->raw_length);
    }
    im->len[g] = d->offset + d->raw_length;
    im->chunks++;
    im->partial_chunks += d->partial;
    if (d->closes) {
        im->closed[g] = true;
        im->next_gen = g + 1;
        im->next_off = 0;
    } else {
        im->next_off = im->len[g];
    }
}

/* Handles one message; returns its type. */
static uint16_t
image_take(struct image *im, struct client *c)
{
    struct repl_msg m;
    if (client_recv(c, &m) != 0)
        fail_msg("the source closed the connection");
    if (m.type == REPL_LOG_DATA)
        image_apply(im, &m.u.log_data);
    else if (m.type == REPL_POSITION) {
        im->pos = m.u.position;
        im->positions++;
    } else
        fail_msg("unexpected %s %.*s", repl_type_name(m.type),
                 m.type == REPL_ERROR ? (int)m.u.error.text.len : 0,
                 m.type == REPL_ERROR ? m.u.error.text.ptr : "");
    return m.type;
}

/* The durable end of the active's current generation (from the test thread: any thread). */
static void
active_position(struct fixture *f, uint64_t *gen_r, uint64_t *end_r)
{
    struct store_status st;
    store_get_status(f->store, &st);
    struct store_log_extent ext;
    uint64_t g = st.current_generation;
    /* The status may name a generation made current but not begun yet. */
    if (store_log_extent(f->store, g, &ext) == TDM_ENOTFOUND)
        g--;
    assert_int_equal(store_log_extent(f->store, g, &ext), 0);
    *gen_r = g;
    *end_r = ext.durable_end;
}

/* Reads until the image holds everything durable on the active now. */
static void
image_catch_up(struct image *im, struct client *c, struct fixture *f)
{
    uint64_t gen, end;
    active_position(f, &gen, &end);
    while (!(im->len[gen] == end && (gen == 1 || im->closed[gen - 1])))
        image_take(im, c);
}

static uint8_t *
read_file(struct fixture *f, uint64_t gen, uint64_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/log/%016llx.log", f->dbdir, (unsigned long long)gen);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *b = malloc(len);
    assert_int_equal(pread(fd, b, len, 0), (ssize_t)len);
    close(fd);
    return b;
}

/* Every generation from..to of the image equals the active's file up to its durable end. */
static void
image_matches(struct image *im, struct fixture *f, uint64_t from, uint64_t to)
{
    for (uint64_t g = from; g <= to; g++) {
        struct store_log_extent ext;
        assert_int_equal(store_log_extent(f->store, g, &ext), 0);
        assert_true(im->len[g] == ext.durable_end);
        assert_int_equal(im->closed[g], ext.closed);
        uint8_t *want = read_file(f, g, ext.durable_end);
        assert_memory_equal(im->bytes[g], want, ext.durable_end);
        free(want);
    }
}

static void
commit_noops(struct fixture *f, unsigned n, size_t size)
{
    uint8_t *payload = malloc(size);
    for (unsigned i = 0; i < n; i++) {
        for (size_t k = 0; k < size; k++)
            payload[k] = (uint8_t)(i + k * 3);
        assert_int_equal(store_commit(f->store, TDM_REC_NOOP, payload, size, NULL, NULL), 0);
    }
    free(payload);
}

/* The highest generation begun. */
static uint64_t
current_generation(struct fixture *f)
{
    uint64_t gen, end;
    active_position(f, &gen, &end);
    return gen;
}

/* Waits (bounded) until the store's floor is want; the source sets it on its loop. */
static void
wait_floor(struct fixture *f, uint64_t want)
{
    struct store_status st;
    for (int i = 0; i < 1000; i++) {
        store_get_status(f->store, &st);
        if (st.truncation_floor == want)
            return;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("truncation floor %llu, want %llu", (unsigned long long)st.truncation_floor,
             (unsigned long long)want);
}

/* ---- Events seen ---- */

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned events_seen[5]; /* 4050..4054 */

static void
event_hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    (void)message;
    pthread_mutex_lock(&events_lock);
    if (id >= TDM_EV_REPL_SOURCE_COPY_CONNECTED && id <= TDM_EV_REPL_SOURCE_READ_FAILED)
        events_seen[id - TDM_EV_REPL_SOURCE_COPY_CONNECTED]++;
    pthread_mutex_unlock(&events_lock);
}

static unsigned
events_count(enum tdm_event id)
{
    pthread_mutex_lock(&events_lock);
    unsigned n = events_seen[id - TDM_EV_REPL_SOURCE_COPY_CONNECTED];
    pthread_mutex_unlock(&events_lock);
    return n;
}

/* ---- Status, read on the loop ---- */

struct status_seen {
    unsigned n;
    struct repl_source_copy_info info;
    char server[64];
};

static void
status_cb(void *ctx, const struct repl_source_copy_info *info)
{
    struct status_seen *s = ctx;
    s->n++;
    s->info = *info;
    snprintf(s->server, sizeof(s->server), "%s", info->server);
    s->info.server = s->info.database = s->info.peer = NULL;
}

static void
do_status(struct fixture *f, void *arg)
{
    repl_source_copies(f->src, status_cb, arg);
}

/* ---- Tests ---- */

static void
test_refusals(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {0};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-refuse");
    struct client c;
    unsigned refused = events_count(TDM_EV_REPL_SOURCE_COPY_REFUSED);

    client_open(&c, &f);
    send_hello(&c, "mb2", "bad-key!", "db1", NULL, REPL_ROLE_PASSIVE, 1, 0, 0, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_AUTH);
    client_close(&c);

    client_open(&c, &f); /* answered later, from the loop */
    send_hello(&c, "slow", "bad-key!", "db1", NULL, REPL_ROLE_PASSIVE, 1, 0, 0, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_AUTH);
    client_close(&c);

    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "nosuch", NULL, REPL_ROLE_PASSIVE, 1, 0, 0, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_UNKNOWN_DATABASE);
    client_close(&c);

    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "standby-only", NULL, REPL_ROLE_PASSIVE, 1, 0, 0, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_NOT_ACTIVE);
    client_close(&c);

    uint8_t other[REPL_WIRE_GUID_LEN];
    memset(other, 0x5a, sizeof(other));
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", other, REPL_ROLE_PASSIVE, 1, 0, 0, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_GUID_MISMATCH);
    client_close(&c);

    /* No version in common. */
    client_open(&c, &f);
    struct repl_msg m = {.type = REPL_HELLO, .request_id = 42};
    m.u.hello = (struct repl_hello){.version_min = 2,
                                    .version_max = 5,
                                    .server = repl_str_c("mb2"),
                                    .key = repl_str_c("good-key"),
                                    .database = repl_str_c("db1"),
                                    .role = REPL_ROLE_PASSIVE,
                                    .start_generation = 1};
    client_send(&c, &m);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_VERSION);
    client_close(&c);

    /* Anything before HELLO is a protocol error, answered with ERROR. */
    client_open(&c, &f);
    m = (struct repl_msg){.type = REPL_ACK};
    client_send(&c, &m);
    assert_int_equal(client_recv(&c, &m), 0);
    assert_int_equal(m.type, REPL_ERROR);
    assert_int_equal(m.u.error.code, REPL_CODE_PROTOCOL);
    client_close(&c);

    assert_int_equal(events_count(TDM_EV_REPL_SOURCE_COPY_REFUSED) - refused, 6);
    fixture_stop(&f);
}

/* A copy whose generation was truncated is told position-gone; one claiming more log than
 * the active has, or another history, is told diverged. */
static void
test_position_gone_and_diverged(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.startup_hold_ms = 1, .heartbeat_ms = 40};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-gone");
    commit_noops(&f, 150, 2000);
    assert_true(current_generation(&f) >= 4);
    wait_floor(&f, UINT64_MAX); /* the startup hold is over, no copy holds anything */
    assert_int_equal(store_checkpoint(f.store), 0);
    struct store_status st;
    store_get_status(f.store, &st);
    assert_true(st.lowest_generation > 1);

    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_POSITION_GONE);
    client_close(&c);

    /* Past the active's durable end of its current generation. */
    uint64_t gen, end;
    active_position(&f, &gen, &end);
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, gen, end + 28,
               st.durable_lsn + 1, st.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_DIVERGED);
    client_close(&c);

    /* Inside it, but claiming a last LSN that is not the one before the frame there. */
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(f.store, gen, &ext), 0);
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, gen, 4096,
               ext.first_lsn + 5, st.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_DIVERGED);
    client_close(&c);

    /* The same offset with the right LSN is accepted. */
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, gen, 4096,
               ext.first_lsn - 1, st.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    client_close(&c);

    /* With the current generation closed and the next not begun, a copy that has all of it
     * waits at offset 0 of the next; one generation further is beyond the active's log. */
    assert_int_equal(store_roll(f.store), 0);
    active_position(&f, &gen, &end);
    assert_int_equal(store_log_extent(f.store, gen, &ext), 0);
    assert_true(ext.closed);
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, gen + 1, 0, ext.last_lsn,
               st.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    client_close(&c);
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, gen + 2, 0, ext.last_lsn,
               st.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_DIVERGED);
    client_close(&c);
    fixture_stop(&f);
}

/* A HELLO from (gen, off, lsn, epoch) on a new connection: the reply's code, with its reason in
 * why (empty when accepted). */
static uint16_t
hello_code(struct fixture *f, const uint8_t *guid, uint64_t gen, uint64_t off, uint64_t lsn,
           uint64_t epoch, char *why, size_t why_len)
{
    struct client c;
    client_open(&c, f);
    send_hello(&c, "mb2", "good-key", "db1", guid, REPL_ROLE_PASSIVE, gen, off, lsn, epoch);
    struct repl_msg m;
    assert_int_equal(client_recv(&c, &m), 0);
    assert_int_equal(m.type, REPL_HELLO_REPLY);
    uint16_t code = m.u.hello_reply.code;
    snprintf(why, why_len, "%.*s", (int)m.u.hello_reply.reason.len, m.u.hello_reply.reason.ptr);
    client_close(&c);
    return code;
}

/*
 * The copy's last record must be the active's record at that LSN, epoch included: one writer
 * per epoch, so a copy whose record at that LSN is of another epoch holds another history,
 * even where its frames line up with the active's at the same offsets (records of the same
 * sizes). The active here wrote generation 1 (LSN 1-10) in epoch e1, then took epoch e2 and
 * wrote generation 2 (LSN 11-20), every record 2000 bytes: an old active of epoch e1 that
 * wrote LSN 11-13 into its own generation 2 before the failover ends at the same offset as
 * the active's LSN 13.
 */
static void
test_epoch_diverged(void **state)
{
    (void)state;
    struct fixture f;
    memset(&f, 0, sizeof(f));
    assert_int_equal(scratch_make(f.dir, sizeof(f.dir), "repl-src-epoch"), 0);
    snprintf(f.dbdir, sizeof(f.dbdir), "%s/db1", f.dir);
    fixture_open_store(&f, true, 0);
    commit_noops(&f, 10, 2000);
    assert_int_equal(store_roll(f.store), 0);
    struct store_status st;
    store_get_status(f.store, &st);
    uint64_t e1 = st.epoch, e2 = e1 + 1;
    assert_int_equal(store_close(&f.store), 0);
    fixture_open_store(&f, false, e2); /* activated under a new epoch */
    commit_noops(&f, 10, 2000);
    struct repl_source_options o = {0};
    fixture_start_source(&f, &o, REPL_MODE_BLOCK);
    store_get_status(f.store, &st);
    struct store_log_extent g1, g2;
    assert_int_equal(store_log_extent(f.store, 1, &g1), 0);
    assert_int_equal(store_log_extent(f.store, 2, &g2), 0);
    assert_true(g1.closed && g1.epoch == e1 && g1.first_lsn == 1 && g1.last_lsn == 10);
    assert_true(g2.epoch == e2 && g2.first_lsn == 11 && g2.last_lsn == 20);
    const uint64_t first = TDM_LOG_HEADER_SIZE + 52, frame = 2000 + 28; /* after BEGIN */
    char why[REPL_WIRE_TEXT_MAX + 1];

    /* The old active: LSN 13 of epoch e1 at the offset where the active has its LSN 13. */
    assert_int_equal(hello_code(&f, st.guid, 2, first + 3 * frame, 13, e1, why, sizeof(why)),
                     REPL_CODE_DIVERGED);
    assert_non_null(strstr(why, "LSN 13, is of epoch 1, the active's record at that LSN of "
                                "epoch 2 (generation 2)"));
    /* The same position in epoch e2 is the active's own: it continues. */
    assert_int_equal(hello_code(&f, st.guid, 2, first + 3 * frame, 13, e2, why, sizeof(why)),
                     REPL_CODE_OK);

    /* All of generation 1 in e1, waiting for generation 2: continues. Claiming its LSN 10 is
     * of e2 is another history (the active left e1 only after LSN 10). */
    assert_int_equal(hello_code(&f, st.guid, 2, 0, 10, e1, why, sizeof(why)), REPL_CODE_OK);
    assert_int_equal(hello_code(&f, st.guid, 2, 0, 10, e2, why, sizeof(why)), REPL_CODE_DIVERGED);

    /* Only generation 2's BEGIN: the epoch named is that generation's. */
    assert_int_equal(hello_code(&f, st.guid, 2, first, 10, e2, why, sizeof(why)), REPL_CODE_OK);
    assert_int_equal(hello_code(&f, st.guid, 2, first, 10, e1, why, sizeof(why)),
                     REPL_CODE_DIVERGED);
    assert_non_null(strstr(why, "generation 2 is of epoch 1, the active's of epoch 2"));

    /* A copy that got LSN 11 and 12 of e1 into generation 1 before the failover: the
     * active's LSN 12 is in e2 (its history left e1 after LSN 10). */
    assert_int_equal(hello_code(&f, st.guid, 1, first + 12 * frame, 12, e1, why, sizeof(why)),
                     REPL_CODE_DIVERGED);
    assert_non_null(strstr(why, "LSN 12, is of epoch 1"));

    /* More records than the active has at all. */
    assert_int_equal(hello_code(&f, st.guid, 2, first + 12 * frame, 22, e2, why, sizeof(why)),
                     REPL_CODE_DIVERGED);
    assert_non_null(strstr(why, "is not in the active's log, which ends at LSN 20"));
    fixture_stop(&f);
}

/* From generation 1, in block mode: every generation arrives byte-identical to the active's
 * files, closed ones with closes set; then each commit's range arrives as it becomes durable. */
static void
test_stream_block(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {0};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-block");
    /* Just added, the database's lowest generation is held for copies that were away. */
    wait_floor(&f, 1);
    commit_noops(&f, 100, 2000);
    uint64_t cur = current_generation(&f);
    assert_true(cur >= 3);

    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    struct repl_hello_reply reply;
    assert_int_equal(expect_reply(&c, &reply), REPL_CODE_OK);
    assert_int_equal(reply.mode, REPL_MODE_BLOCK);
    assert_int_equal(reply.current_generation, cur);
    struct store_status st;
    store_get_status(f.store, &st);
    assert_memory_equal(reply.guid, st.guid, REPL_WIRE_GUID_LEN);

    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    image_matches(&im, &f, 1, cur);
    for (uint64_t g = 1; g < cur; g++)
        assert_true(im.closed[g]);
    assert_int_equal(im.compressed_chunks, 0);
    assert_int_equal(im.partial_chunks, 0);

    /* Each new commit ships once durable, without a roll. */
    for (int i = 0; i < 5; i++) {
        unsigned before = im.chunks;
        commit_noops(&f, 1, 300);
        image_catch_up(&im, &c, &f);
        assert_true(im.chunks > before);
        uint64_t g = current_generation(&f);
        image_matches(&im, &f, g, g);
    }
    /* POSITION followed the commits. */
    assert_true(im.positions > 0);
    assert_int_equal(im.pos.durable_lsn, 105);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* File mode sends only closed generations, whole; the open one follows once it closes. */
static void
test_stream_file_mode(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.heartbeat_ms = 30, .startup_hold_ms = 1};
    fixture_start(&f, &o, REPL_MODE_FILE, "repl-src-file");
    commit_noops(&f, 70, 2000);
    uint64_t cur = current_generation(&f);
    assert_true(cur >= 2);

    struct client c;
    client_open(&c, &f); /* admitted through the asynchronous verify */
    send_fresh_hello(&c, "slow", REPL_ROLE_STANDBY);
    struct repl_hello_reply reply;
    assert_int_equal(expect_reply(&c, &reply), REPL_CODE_OK);
    assert_int_equal(reply.mode, REPL_MODE_FILE);

    struct image im;
    image_init(&im, 1, 0);
    while (!im.closed[cur - 1])
        image_take(&im, &c);
    image_matches(&im, &f, 1, cur - 1);
    /* Heartbeats go on, and nothing of the open generation comes with them. */
    unsigned positions = im.positions;
    while (im.positions < positions + 3)
        assert_int_equal(image_take(&im, &c), REPL_POSITION);
    assert_null(im.bytes[cur]);

    /* A copy claiming more than it was sent cannot lift the floor above the generation
     * being read for it, nor claim LSNs it was never sent (the sync gate believes those). */
    struct repl_msg m = {.type = REPL_ACK};
    m.u.ack = (struct repl_ack){.durable_generation = cur + 5,
                                .inspected_generation = cur + 5,
                                .durable_lsn = 1000000,
                                .replayed_lsn = 1000000};
    client_send(&c, &m);
    struct status_seen seen = {0};
    for (int i = 0; i < 1000 && !seen.info.acked; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        seen = (struct status_seen){0};
        loop_call(&f, do_status, &seen);
    }
    assert_true(seen.info.acked);
    assert_int_equal(seen.info.sent_generation, cur);
    struct store_log_extent shipped;
    assert_int_equal(store_log_extent(f.store, cur - 1, &shipped), 0);
    assert_int_equal(seen.info.last_ack.durable_lsn, shipped.last_lsn);
    assert_int_equal(seen.info.last_ack.replayed_lsn, shipped.last_lsn);
    wait_floor(&f, cur);

    assert_int_equal(store_roll(f.store), 0);
    while (!im.closed[cur])
        image_take(&im, &c);
    image_matches(&im, &f, cur, cur);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* Heartbeats: POSITION every heartbeat_ms while nothing changes. */
static void
test_heartbeats(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.heartbeat_ms = 20};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-heartbeat");
    commit_noops(&f, 3, 100);
    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    unsigned positions = im.positions;
    uint64_t last_time = im.pos.time_us;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(image_take(&im, &c), REPL_POSITION);
        assert_true(im.pos.time_us >= last_time);
        last_time = im.pos.time_us;
        assert_int_equal(im.pos.durable_lsn, 3);
    }
    assert_int_equal(im.positions, positions + 5);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* Compressed LOG_DATA decompresses to the same bytes. */
static void
test_stream_compressed(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.zstd_level = 3};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-zstd");
    commit_noops(&f, 80, 2000);
    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    image_matches(&im, &f, 1, current_generation(&f));
    assert_true(im.compressed_chunks > 0);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* With no level of its own, the source compresses for a copy that asks in its HELLO (its
 * copy.conf's compression on that network), and only for it. */
static void
test_stream_compressed_on_request(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {0};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-zstd-asked");
    commit_noops(&f, 80, 2000);
    for (int asked = 0; asked < 2; asked++) {
        struct client c;
        client_open(&c, &f);
        struct repl_msg m = {.type = REPL_HELLO, .request_id = 42};
        m.u.hello = (struct repl_hello){
            .version_min = 1,
            .version_max = 3,
            .server = repl_str_c(asked ? "mb3" : "mb2"),
            .key = repl_str_c("good-key"),
            .database = repl_str_c("db1"),
            .role = REPL_ROLE_PASSIVE,
            .start_generation = 1,
            .compression = asked ? REPL_COMPRESSION_ZSTD : REPL_COMPRESSION_NONE,
        };
        client_send(&c, &m);
        assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
        struct image im;
        image_init(&im, 1, 0);
        image_catch_up(&im, &c, &f);
        image_matches(&im, &f, 1, current_generation(&f));
        if (asked)
            assert_true(im.compressed_chunks > 0);
        else
            assert_int_equal(im.compressed_chunks, 0);
        client_close(&c);
        image_free(&im);
    }
    fixture_stop(&f);
}

/* A record longer than a chunk goes in several chunks, the first ones partial. */
static void
test_large_frame_partial(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {0};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-large");
    commit_noops(&f, 1, 100);
    commit_noops(&f, 1, REPL_WIRE_CHUNK_MAX + REPL_WIRE_CHUNK_MAX / 2);
    commit_noops(&f, 1, 100);
    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    image_matches(&im, &f, 1, current_generation(&f));
    assert_true(im.partial_chunks >= 1);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* A copy that does not read gets no more than the high-water mark, the kernel's socket
 * buffers and one chunk: the source stops reading the log for it; once it reads, everything
 * arrives intact. */
static void
test_back_pressure(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.high_water = 64 * 1024, .heartbeat_ms = 20};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-pressure");
    commit_noops(&f, 400, 60000); /* 24 MB: one generation each */
    uint64_t cur = current_generation(&f);
    assert_true(cur < MAX_GENS);

    struct client c;
    client_open_rcvbuf(&c, &f, 4096);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    /* The reply is read, then nothing for a while. */
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct status_seen seen = {0};
    uint64_t plateau = 0;
    for (int i = 0; i < 20; i++) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        seen = (struct status_seen){0};
        loop_call(&f, do_status, &seen);
        plateau = seen.info.bytes_raw;
    }
    /* 4 MiB of kernel send buffer (tcp_wmem's maximum here), the receive buffer, the high-water
     * mark and one chunk: far below the 24 MB waiting. */
    assert_true(plateau < 8u * 1024 * 1024);

    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    image_matches(&im, &f, 1, cur);
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

/* The floor follows what copies need: a connected copy's HELLO, then its ACKs; a departed
 * copy stays held; past the generation limit it is released, with an event. */
static void
test_truncation_floor(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {
        .startup_hold_ms = 1, .heartbeat_ms = 20, .hold_generations = 6};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-floor");
    wait_floor(&f, UINT64_MAX);
    commit_noops(&f, 150, 2000);
    uint64_t cur = current_generation(&f);
    assert_true(cur >= 5);

    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    wait_floor(&f, 1);

    /* Passive: the generation of its replayed LSN. */
    struct repl_msg m = {.type = REPL_ACK};
    m.u.ack = (struct repl_ack){.durable_generation = 4,
                                .durable_offset = 4096,
                                .durable_lsn = 90,
                                .inspected_generation = 3,
                                .replayed_lsn = 70,
                                .replayed_generation = 3};
    client_send(&c, &m);
    wait_floor(&f, 3);

    /* A second copy, standby: the generation after its inspected one. The floor is the
     * lower of the two. */
    struct client s;
    client_open(&s, &f);
    send_fresh_hello(&s, "sb1", REPL_ROLE_STANDBY);
    assert_int_equal(expect_reply(&s, NULL), REPL_CODE_OK);
    wait_floor(&f, 1);
    m.u.ack = (struct repl_ack){
        .durable_generation = 5, .inspected_generation = 4, .replayed_generation = 1};
    client_send(&s, &m);
    wait_floor(&f, 3);
    m.u.ack = (struct repl_ack){.durable_generation = 5, .replayed_generation = 5};
    client_send(&c, &m);
    wait_floor(&f, 5);

    /* Truncation honours it. */
    assert_int_equal(store_checkpoint(f.store), 0);
    struct store_status st;
    store_get_status(f.store, &st);
    assert_int_equal(st.lowest_generation, 5);

    /* The passive goes away: it is still held. */
    client_close(&c);
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    store_get_status(f.store, &st);
    assert_int_equal(st.truncation_floor, 5);

    /* Six generations on, both are released: the departed one quietly, the connected one
     * closed with ERROR released. */
    unsigned released = events_count(TDM_EV_REPL_SOURCE_COPY_RELEASED);
    while (current_generation(&f) <= 5 + 6)
        commit_noops(&f, 10, 2000);
    wait_floor(&f, UINT64_MAX);
    assert_int_equal(events_count(TDM_EV_REPL_SOURCE_COPY_RELEASED) - released, 2);
    for (;;) {
        assert_int_equal(client_recv(&s, &m), 0);
        if (m.type == REPL_ERROR) {
            assert_int_equal(m.u.error.code, REPL_CODE_RELEASED);
            break;
        }
    }
    client_close(&s);

    /* A copy asking for a generation further back than the limit is refused at once. */
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(f.store, 5, &ext), 0);
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, 5, 0, ext.first_lsn - 1,
               ext.epoch);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_RELEASED);
    client_close(&c);
    fixture_stop(&f);
}

/* Too many copies at once is limit (the copy tries again later: it passes once one leaves);
 * released is only for a copy too far behind (test_truncation_floor), which waiting cannot
 * fix. */
static void
test_copies_limit(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.max_copies = 1};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-limit");
    struct client c, d;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    client_open(&d, &f);
    send_fresh_hello(&d, "mb3", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&d, NULL), REPL_CODE_LIMIT);
    client_close(&d);
    /* Once the first has gone, the same HELLO is taken. */
    unsigned disconnected = events_count(TDM_EV_REPL_SOURCE_COPY_DISCONNECTED);
    client_close(&c);
    for (int i = 0; i < 1000 && events_count(TDM_EV_REPL_SOURCE_COPY_DISCONNECTED) == disconnected;
         i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    client_open(&d, &f);
    send_fresh_hello(&d, "mb3", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&d, NULL), REPL_CODE_OK);
    client_close(&d);
    fixture_stop(&f);
}

/* A seed: SEED_REQUEST is answered with a snapshot of the database (taken while commits go
 * on) in contiguous SEED_DATA chunks, then SEED_END with its size, SHA-256, GUID, applied LSN
 * and the generation holding the next LSN, which the floor holds after the seed connection
 * closes; a HELLO from that position without a generation (epoch 0) is accepted, the same
 * position claiming a generation of its own is not. */
static void
test_seed(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.startup_hold_ms = 1, .heartbeat_ms = 40};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-seed");
    commit_noops(&f, 150, 2000);
    wait_floor(&f, UINT64_MAX);
    assert_int_equal(store_checkpoint(f.store), 0);
    struct store_status st;
    store_get_status(f.store, &st);
    assert_true(st.lowest_generation > 1);

    struct client c;
    client_open(&c, &f);
    struct repl_msg req = {.type = REPL_SEED_REQUEST, .request_id = 42};
    req.u.seed_request = (struct repl_seed_request){
        .version_min = 1,
        .version_max = 3,
        .server = repl_str_c("mb2"),
        .key = repl_str_c("good-key"),
        .database = repl_str_c("db1"),
        .role = REPL_ROLE_PASSIVE,
    };
    client_send(&c, &req);
    struct repl_hello_reply reply;
    assert_int_equal(expect_reply(&c, &reply), REPL_CODE_OK);
    assert_memory_equal(reply.guid, st.guid, REPL_WIRE_GUID_LEN);
    /* Writes go on while the seed runs. */
    commit_noops(&f, 20, 2000);

    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    uint64_t got = 0, total = 0;
    unsigned chunks = 0;
    struct repl_msg m;
    struct repl_seed_end end;
    for (;;) {
        assert_int_equal(client_recv(&c, &m), 0);
        if (m.type == REPL_SEED_END) {
            end = m.u.seed_end;
            break;
        }
        assert_int_equal(m.type, REPL_SEED_DATA);
        assert_true(m.u.seed_data.offset == got);
        assert_true(total == 0 || m.u.seed_data.total_size == total);
        total = m.u.seed_data.total_size;
        crypto_hash_sha256_update(&h, m.u.seed_data.data, m.u.seed_data.raw_length);
        got += m.u.seed_data.raw_length;
        chunks++;
    }
    assert_true(chunks > 0);
    assert_true(end.total_size == got && got == total);
    uint8_t sha[32];
    crypto_hash_sha256_final(&h, sha);
    assert_memory_equal(sha, end.sha256, 32);
    assert_memory_equal(end.guid, st.guid, REPL_WIRE_GUID_LEN);
    assert_true(end.applied_lsn >= st.applied_lsn);
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(f.store, end.first_generation, &ext), 0);
    assert_true(ext.first_lsn <= end.applied_lsn + 1);
    assert_true(ext.last_lsn >= end.applied_lsn + 1 || !ext.closed);
    client_close(&c); /* the copy closes once it has SEED_END */

    /* The departed seed holds the log from its first generation for the HELLO to come. */
    wait_floor(&f, end.first_generation);

    if (ext.first_lsn != end.applied_lsn + 1) {
        client_open(&c, &f);
        send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, end.first_generation,
                   0, end.applied_lsn, st.epoch);
        assert_int_equal(expect_reply(&c, NULL), REPL_CODE_DIVERGED);
        client_close(&c);
    }
    client_open(&c, &f);
    send_hello(&c, "mb2", "good-key", "db1", st.guid, REPL_ROLE_PASSIVE, end.first_generation, 0,
               end.applied_lsn, 0);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct image im;
    image_init(&im, end.first_generation, 0);
    uint64_t gen, dend;
    active_position(&f, &gen, &dend);
    while (!(im.len[gen] == dend && (gen == end.first_generation || im.closed[gen - 1])))
        image_take(&im, &c);
    image_matches(&im, &f, end.first_generation, current_generation(&f));
    image_free(&im);
    client_close(&c);

    /* A seed of a database not active here is refused as a HELLO would be. */
    client_open(&c, &f);
    req.u.seed_request.database = repl_str_c("standby-only");
    client_send(&c, &req);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_NOT_ACTIVE);
    client_close(&c);
    fixture_stop(&f);
}

/* A copy that went away is held only for hold_ms: then it is released, with an event. */
static void
test_departed_copy_released_after_hold(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.startup_hold_ms = 1, .heartbeat_ms = 20, .hold_ms = 300};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-hold");
    wait_floor(&f, UINT64_MAX);
    commit_noops(&f, 40, 2000);
    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_STANDBY);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct repl_msg m = {.type = REPL_ACK};
    m.u.ack = (struct repl_ack){.durable_generation = 2, .inspected_generation = 1};
    client_send(&c, &m);
    wait_floor(&f, 2);
    unsigned released = events_count(TDM_EV_REPL_SOURCE_COPY_RELEASED);
    unsigned disconnected = events_count(TDM_EV_REPL_SOURCE_COPY_DISCONNECTED);
    client_close(&c);

    /* Still held right after it left (the status lists it as departed)... */
    struct status_seen seen = {0};
    for (int i = 0; i < 1000 && events_count(TDM_EV_REPL_SOURCE_COPY_DISCONNECTED) == disconnected;
         i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    loop_call(&f, do_status, &seen);
    if (events_count(TDM_EV_REPL_SOURCE_COPY_RELEASED) == released) {
        assert_int_equal(seen.n, 1);
        assert_false(seen.info.connected);
        assert_int_equal(seen.info.needed_generation, 2);
    }
    /* ...and released once the hold time has passed. */
    wait_floor(&f, UINT64_MAX);
    assert_int_equal(events_count(TDM_EV_REPL_SOURCE_COPY_RELEASED) - released, 1);
    seen = (struct status_seen){0};
    loop_call(&f, do_status, &seen);
    assert_int_equal(seen.n, 0);
    fixture_stop(&f);
}

/* Removing the database closes its copies with ERROR shutdown and leaves its floor where the
 * copy needed it, so a checkpoint after the removal (store_close at shutdown) cannot delete
 * what the copy will ask for when it comes back. */
static void
do_remove(struct fixture *f, void *arg)
{
    (void)arg;
    repl_source_remove_database(f->src, "db1");
}

static void
test_status_and_remove(void **state)
{
    (void)state;
    struct fixture f;
    struct repl_source_options o = {.startup_hold_ms = 1};
    fixture_start(&f, &o, REPL_MODE_BLOCK, "repl-src-remove");
    commit_noops(&f, 10, 1000);
    struct client c;
    client_open(&c, &f);
    send_fresh_hello(&c, "mb2", REPL_ROLE_PASSIVE);
    assert_int_equal(expect_reply(&c, NULL), REPL_CODE_OK);
    struct image im;
    image_init(&im, 1, 0);
    image_catch_up(&im, &c, &f);
    struct repl_msg m = {.type = REPL_ACK};
    m.u.ack = (struct repl_ack){
        .durable_generation = 1, .durable_lsn = 10, .replayed_lsn = 10, .replayed_generation = 1};
    client_send(&c, &m);

    /* The ACK is read on the loop some time after it was sent. */
    struct status_seen seen = {0};
    for (int i = 0; i < 1000 && !seen.info.acked; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        seen = (struct status_seen){0};
        loop_call(&f, do_status, &seen);
    }
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.server, "mb2");
    assert_true(seen.info.connected);
    assert_true(seen.info.acked);
    assert_int_equal(seen.info.last_ack.replayed_lsn, 10);
    assert_true(seen.info.bytes_raw == im.len[1]);
    assert_true(seen.info.bytes_sent == seen.info.bytes_raw);

    loop_call(&f, do_remove, NULL);
    for (;;) {
        assert_int_equal(client_recv(&c, &m), 0);
        if (m.type == REPL_ERROR) {
            assert_int_equal(m.u.error.code, REPL_CODE_SHUTDOWN);
            break;
        }
    }
    assert_int_equal(client_recv(&c, &m), -1);
    struct store_status st;
    store_get_status(f.store, &st);
    assert_int_equal(st.truncation_floor, 1); /* the copy replayed into generation 1 */
    client_close(&c);
    image_free(&im);
    fixture_stop(&f);
}

static int
group_setup(void **state)
{
    (void)state;
    if (tls_fixture_make(tls_dir, sizeof(tls_dir), "repl-src-tls", &tls_files) != 0)
        return -1;
    char *err = NULL;
    if (tls_server_ctx_new(tls_files.certificate, tls_files.key, NULL, TLS_CLIENT_AUTH_NONE,
                           &server_tls, &err) != 0 ||
        tls_client_ctx_new(tls_files.ca, NULL, NULL, &client_tls, &err) != 0) {
        fprintf(stderr, "tls: %s\n", err);
        return -1;
    }
    event_set_sink(NULL);
    event_set_hook(event_hook, NULL);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(server_tls);
    SSL_CTX_free(client_tls);
    tls_files_clear(&tls_files);
    scratch_remove(tls_dir);
    return 0;
}

int
main(void)
{
    /* UNIT_FILTER=test_stream_block runs one test (cmocka's glob). */
    if (getenv("UNIT_FILTER"))
        cmocka_set_test_filter(getenv("UNIT_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_position_gone_and_diverged),
        cmocka_unit_test(test_epoch_diverged),
        cmocka_unit_test(test_stream_block),
        cmocka_unit_test(test_stream_file_mode),
        cmocka_unit_test(test_heartbeats),
        cmocka_unit_test(test_stream_compressed),
        cmocka_unit_test(test_stream_compressed_on_request),
        cmocka_unit_test(test_large_frame_partial),
        cmocka_unit_test(test_truncation_floor),
        cmocka_unit_test(test_copies_limit),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_departed_copy_released_after_hold),
        cmocka_unit_test(test_status_and_remove),
        cmocka_unit_test(test_seed),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

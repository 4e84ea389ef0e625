/*
 * Client connections over real sockets on 127.0.0.1: a line-echo protocol on the server side
 * (this thread's event loop) and a blocking client in a second thread. Covers the greeting,
 * pipelined input, close after flush, per-address limits with the refusal line, the idle
 * timeout with a goodbye (and started again by input), accepting paused while out of file
 * descriptors, STARTTLS (injected plaintext after the command is never read),
 * implicit TLS, and back-pressure (a client that does not read stops the server reading).
 */
#include "lib/conn.h"
#include "lib/err.h"

#include "lib/config.h"
#include "lib/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"
#include "tls_fixture.h"

/* ---- Fixture: certificates from the local CA code ---- */

static char tmpdir[256];
static struct tls_files files;
static SSL_CTX *server_tls, *client_tls;

static int
group_setup(void **state)
{
    (void)state;
    if (tls_fixture_make(tmpdir, sizeof(tmpdir), "conn", &files) < 0)
        fail_msg("no TLS fixture");
    char *err = NULL;
    if (tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE, &server_tls,
                           &err) < 0 ||
        tls_client_ctx_new(files.ca, NULL, NULL, &client_tls, &err) < 0)
        fail_msg("ctx: %s", err);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(server_tls);
    SSL_CTX_free(client_tls);
    tls_files_clear(&files);
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

/* ---- The server side: a line echo protocol ---- */

struct server {
    struct event_base *base;
    struct conn_listener *l;
    uint16_t port;
    char seen[4096];   /* every line on_data consumed, ';'-separated */
    int closes[8];     /* count per enum conn_close_reason */
    int opens;
    int drained;
    bool big_sent;
    int drained_before_after; /* s->drained when the line "after" was read */
    size_t streamed;          /* "stream": bytes written so far, from on_data and on_drained */
};

#define STREAM_TOTAL (8u << 20)
#define STREAM_CHUNK (256u << 10)

/* A producer like IMAP's FETCH: writes until the output is full, then goes on only when
 * on_drained says the peer took it, until STREAM_TOTAL bytes and "end stream". */
static void
stream_some(struct conn *c, struct server *s)
{
    static char chunk[STREAM_CHUNK];
    memset(chunk, 'y', sizeof(chunk));
    while (s->streamed < STREAM_TOTAL && !conn_output_full(c)) {
        conn_write(c, chunk, sizeof(chunk));
        s->streamed += sizeof(chunk);
    }
    if (s->streamed == STREAM_TOTAL) {
        s->streamed++; /* once */
        conn_printf(c, "\r\nend stream\r\n");
        conn_resume(c);
    }
}

static void
on_open(struct conn *c, void *ctx)
{
    struct server *s = ctx;
    s->opens++;
    conn_set_ctx(c, s);
    conn_printf(c, "hello%s\r\n", conn_is_tls(c) ? " tls" : "");
}

static void
on_data(struct conn *c, struct evbuffer *in)
{
    struct server *s = conn_ctx(c);
    while (!conn_output_full(c)) {
        size_t len;
        char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
        if (!line)
            return;
        strncat(s->seen, line, sizeof(s->seen) - strlen(s->seen) - 2);
        strcat(s->seen, ";");
        if (strcmp(line, "quit") == 0) {
            conn_printf(c, "bye\r\n");
            conn_close_after_flush(c);
            free(line);
            return;
        }
        if (strcmp(line, "starttls") == 0) {
            conn_printf(c, "go ahead\r\n");
            assert_int_equal(conn_starttls(c, server_tls), 0);
            free(line);
            return; /* nothing after STARTTLS is read until the handshake */
        }
        if (strcmp(line, "stream") == 0) {
            conn_pause(c); /* nothing more is read until the stream is written */
            stream_some(c, s);
            free(line);
            return;
        }
        if (strcmp(line, "big") == 0) {
            /* 4 MiB the client will not read for a while. */
            char *blob = malloc(1 << 20);
            memset(blob, 'x', 1 << 20);
            for (int i = 0; i < 4; i++)
                conn_write(c, blob, 1 << 20);
            free(blob);
            conn_printf(c, "\r\nend big\r\n");
            s->big_sent = true;
        } else {
            if (strcmp(line, "after") == 0)
                s->drained_before_after = s->drained;
            conn_printf(c, "echo %s\r\n", line);
        }
        free(line);
    }
}

static void
on_drained(struct conn *c)
{
    struct server *s = conn_ctx(c);
    s->drained++;
    if (s->streamed && s->streamed < STREAM_TOTAL)
        stream_some(c, s);
}

static void
on_close(struct conn *c, enum conn_close_reason reason)
{
    struct server *s = conn_ctx(c);
    s->closes[reason]++;
    if (reason == CONN_CLOSE_IDLE)
        conn_printf(c, "timeout\r\n");
    else if (reason == CONN_CLOSE_SHUTDOWN)
        conn_printf(c, "shutting down\r\n");
}

static const struct conn_ops ops = {on_open, on_data, on_drained, on_close};

static void
server_start(struct server *s, struct conn_listener_options *opt)
{
    memset(s, 0, sizeof(*s));
    s->base = event_base_new();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    s->port = ntohs(sin.sin_port);
    opt->fd = fd;
    assert_int_equal(conn_listener_new(s->base, opt, &ops, s, &s->l), 0);
}

static void
server_stop(struct server *s)
{
    conn_listener_free(&s->l);
    assert_null(s->l);
    conn_base_free(&s->base);
    assert_null(s->base);
}

/* ---- The client side, in a thread ---- */

struct client {
    uint16_t port;
    void (*script)(struct client *);
    atomic_bool done;
    char got[8192]; /* what the script read, for the assertions after */
    int fails;
};

static int
dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until want appears (or EOF / timeout); appends to got. Returns true if seen. */
static bool
read_until(struct client *cl, int fd, SSL *ssl, const char *want)
{
    char buf[4096];
    for (;;) {
        if (strstr(cl->got, want))
            return true;
        ssize_t n = ssl ? SSL_read(ssl, buf, sizeof(buf) - 1) : read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
            return strstr(cl->got, want) != NULL;
        buf[n] = '\0';
        /* Keep the tail only: big replies would not fit. */
        if (strlen(cl->got) + (size_t)n >= sizeof(cl->got))
            memmove(cl->got, cl->got + sizeof(cl->got) / 2, strlen(cl->got + sizeof(cl->got) / 2) + 1);
        strncat(cl->got, buf, sizeof(cl->got) - strlen(cl->got) - 1);
    }
}

static bool
at_eof(int fd)
{
    char c;
    return read(fd, &c, 1) == 0;
}

static void *
client_main(void *arg)
{
    struct client *cl = arg;
    cl->script(cl);
    atomic_store(&cl->done, true);
    return NULL;
}

static void
run(struct server *s, struct client *cl)
{
    cl->port = s->port;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, cl), 0);
    for (int i = 0; i < 2000 && !atomic_load(&cl->done); i++) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(s->base, &tv);
        event_base_dispatch(s->base);
    }
    /* A little more loop for closes that follow the client's last read. */
    for (int i = 0; i < 10; i++) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(s->base, &tv);
        event_base_dispatch(s->base);
    }
    pthread_join(t, NULL);
    if (cl->fails)
        fprintf(stderr, "server saw: %s; closes peer %d local %d idle %d tls %d\n", s->seen,
                s->closes[CONN_CLOSE_PEER], s->closes[CONN_CLOSE_LOCAL], s->closes[CONN_CLOSE_IDLE],
                s->closes[CONN_CLOSE_TLS]);
    assert_true(atomic_load(&cl->done));
    assert_int_equal(cl->fails, 0);
}

#define CHECK(cl, cond)                                                                        \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "client check failed at line %d: %s\n", __LINE__, #cond);          \
            (cl)->fails++;                                                                     \
        }                                                                                      \
    } while (0)

/* ---- Tests ---- */

static void
script_echo(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, fd >= 0);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    const char *pipelined = "a\r\nb\r\nquit\r\nnever\r\n";
    CHECK(cl, write(fd, pipelined, strlen(pipelined)) == (ssize_t)strlen(pipelined));
    CHECK(cl, read_until(cl, fd, NULL, "bye\r\n"));
    CHECK(cl, strstr(cl->got, "echo a\r\necho b\r\nbye\r\n") != NULL);
    CHECK(cl, at_eof(fd));
    close(fd);
}

static void
test_echo_pipelined_and_close_after_flush(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    struct client cl = {.script = script_echo};
    run(&s, &cl);
    /* Nothing after "quit" was handed to the protocol. */
    assert_string_equal(s.seen, "a;b;quit;");
    assert_int_equal(s.closes[CONN_CLOSE_LOCAL], 1);
    assert_int_equal(conn_listener_count(s.l), 0);
    server_stop(&s);
}

static void
script_limits(struct client *cl)
{
    int a = dial(cl->port), b = dial(cl->port);
    CHECK(cl, read_until(cl, a, NULL, "hello"));
    cl->got[0] = '\0';
    CHECK(cl, read_until(cl, b, NULL, "hello"));
    cl->got[0] = '\0';
    int c = dial(cl->port);
    CHECK(cl, read_until(cl, c, NULL, "* BYE too many\r\n"));
    CHECK(cl, at_eof(c));
    close(c);
    /* One goes, and there is room again. */
    close(a);
    usleep(100 * 1000);
    cl->got[0] = '\0';
    int d = dial(cl->port);
    CHECK(cl, read_until(cl, d, NULL, "hello"));
    close(b);
    close(d);
}

static void
test_per_address_limit(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.max_per_address = 2, .refusal_line = "* BYE too many\r\n"};
    server_start(&s, &opt);
    struct client cl = {.script = script_limits};
    run(&s, &cl);
    assert_int_equal(conn_listener_refused(s.l), 1);
    assert_int_equal(s.opens, 3);
    assert_int_equal(s.closes[CONN_CLOSE_PEER], 3);
    server_stop(&s);
}

static void
script_idle(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    /* Say nothing: the server times out, says goodbye and closes. */
    CHECK(cl, read_until(cl, fd, NULL, "timeout\r\n"));
    CHECK(cl, at_eof(fd));
    close(fd);
}

static void
test_idle_timeout_says_goodbye(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.idle_timeout_ms = 200};
    server_start(&s, &opt);
    struct client cl = {.script = script_idle};
    run(&s, &cl);
    assert_int_equal(s.closes[CONN_CLOSE_IDLE], 1);
    server_stop(&s);
}

/* Input within the period starts it again: a client that speaks every 150 ms is never timed
 * out by a 200 ms timeout (IMAP's IDLE clients count on it: they re-issue IDLE within 30
 * minutes). */
static void
script_active(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    for (int i = 0; i < 4; i++) {
        usleep(150 * 1000);
        CHECK(cl, write(fd, "x\r\n", 3) == 3);
    }
    CHECK(cl, write(fd, "quit\r\n", 6) == 6);
    CHECK(cl, read_until(cl, fd, NULL, "bye\r\n"));
    CHECK(cl, strstr(cl->got, "timeout") == NULL);
    close(fd);
}

static void
test_idle_timeout_restarts_with_input(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.idle_timeout_ms = 200};
    server_start(&s, &opt);
    struct client cl = {.script = script_active};
    run(&s, &cl);
    assert_int_equal(s.closes[CONN_CLOSE_IDLE], 0);
    assert_int_equal(s.closes[CONN_CLOSE_LOCAL], 1);
    server_stop(&s);
}

static double
cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void
loop_for_ms(struct server *s, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(s->base, &tv);
    event_base_dispatch(s->base);
}

/* Out of file descriptors, connections wait in the backlog and the loop does not spin on the
 * readable listening socket; once descriptors are free again they are accepted. */
static void
test_out_of_descriptors_pauses_accepting(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    int clients[3];
    for (int i = 0; i < 3; i++) /* connected by the kernel, in the backlog: nobody accepted */
        assert_true((clients[i] = dial(s.port)) >= 0);
    struct rlimit was;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &was), 0);
    int lowest_free = dup(0);
    assert_true(lowest_free >= 0);
    close(lowest_free);
    struct rlimit none = {(rlim_t)lowest_free, was.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
    double cpu = cpu_seconds();
    loop_for_ms(&s, 600);
    cpu = cpu_seconds() - cpu;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &was), 0);
    assert_int_equal(s.opens, 0);
    /* Paused, the loop wakes a few times; spinning, it takes what CPU it gets (0.36 s of the
     * 0.6 on this 2-core VM at a load of 10). */
    assert_true(cpu < 0.05);
    loop_for_ms(&s, 400);   /* the next try, after the pause */
    assert_int_equal(s.opens, 3);
    for (int i = 0; i < 3; i++)
        close(clients[i]);
    loop_for_ms(&s, 50);
    server_stop(&s);
}

static SSL *
client_handshake(struct client *cl, int fd)
{
    SSL *ssl = NULL;
    char *err = NULL;
    CHECK(cl, tls_client_ssl_new(client_tls, "127.0.0.1", &ssl, &err) == 0);
    free(err);
    if (!ssl)
        return NULL;
    SSL_set_fd(ssl, fd);
    int ok = SSL_connect(ssl);
    CHECK(cl, ok == 1);
    if (ok != 1)
        ERR_print_errors_fp(stderr);
    return ssl;
}

static void
script_starttls(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    /* The injection attack: a command pipelined after STARTTLS, in the same packet. */
    const char *attack = "starttls\r\ninjected\r\n";
    CHECK(cl, write(fd, attack, strlen(attack)) == (ssize_t)strlen(attack));
    CHECK(cl, read_until(cl, fd, NULL, "go ahead\r\n"));
    SSL *ssl = client_handshake(cl, fd);
    if (!ssl)
        return;
    CHECK(cl, SSL_write(ssl, "ping\r\nquit\r\n", 12) == 12);
    cl->got[0] = '\0';
    CHECK(cl, read_until(cl, fd, ssl, "bye\r\n"));
    CHECK(cl, strstr(cl->got, "echo ping\r\n") != NULL);
    SSL_free(ssl);
    close(fd);
}

static void
test_starttls_discards_injected_plaintext(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    struct client cl = {.script = script_starttls};
    run(&s, &cl);
    assert_string_equal(s.seen, "starttls;ping;quit;");
    server_stop(&s);
}

static void
script_implicit(struct client *cl)
{
    int fd = dial(cl->port);
    SSL *ssl = client_handshake(cl, fd);
    if (!ssl)
        return;
    CHECK(cl, read_until(cl, fd, ssl, "hello tls\r\n"));
    CHECK(cl, SSL_write(ssl, "quit\r\n", 6) == 6);
    CHECK(cl, read_until(cl, fd, ssl, "bye\r\n"));
    SSL_free(ssl);
    close(fd);
    /* A client that does not speak TLS at all is dropped without a word. */
    int plain = dial(cl->port);
    CHECK(cl, write(plain, "hello?\r\n", 8) == 8);
    char buf[64];
    CHECK(cl, read(plain, buf, sizeof(buf)) <= 0);
    close(plain);
}

/* A TLS client that goes away without a close_notify (killed): the peer closed. */
static void
script_dirty_close(struct client *cl)
{
    int fd = dial(cl->port);
    SSL *ssl = client_handshake(cl, fd);
    if (!ssl)
        return;
    CHECK(cl, read_until(cl, fd, ssl, "hello tls\r\n"));
    close(fd); /* no SSL_shutdown: the server reads an EOF inside the TLS session */
    SSL_free(ssl);
}

static void
test_tls_peer_closes_without_notify(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.implicit_tls = server_tls};
    server_start(&s, &opt);
    struct client cl = {.script = script_dirty_close};
    run(&s, &cl);
    assert_int_equal(s.closes[CONN_CLOSE_PEER], 1);
    assert_int_equal(s.closes[CONN_CLOSE_TLS], 0);
    server_stop(&s);
}

/* A FIN and a RST: the first is the peer closing (CONN_CLOSE_PEER), the second only a reset
 * (CONN_CLOSE_RESET), which a firewall or a middlebox can send while the peer runs on: the
 * witness frees a lease at once on the first alone (docs/cluster.md). */
static void
script_fin_then_rst(struct client *cl)
{
    int a = dial(cl->port);
    CHECK(cl, a >= 0);
    CHECK(cl, read_until(cl, a, NULL, "hello"));
    close(a); /* nothing unread: a FIN */
    usleep(100 * 1000);
    int b = dial(cl->port);
    CHECK(cl, b >= 0);
    CHECK(cl, read_until(cl, b, NULL, "hello"));
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    CHECK(cl, setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0);
    close(b); /* a RST */
    usleep(100 * 1000);
}

static void
test_fin_is_peer_reset_is_reset(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    struct client cl = {.script = script_fin_then_rst};
    run(&s, &cl);
    assert_int_equal(s.closes[CONN_CLOSE_PEER], 1);
    assert_int_equal(s.closes[CONN_CLOSE_RESET], 1);
    assert_int_equal(s.closes[CONN_CLOSE_BROKEN], 0);
    server_stop(&s);
}

static void
test_implicit_tls(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.implicit_tls = server_tls};
    server_start(&s, &opt);
    struct client cl = {.script = script_implicit};
    run(&s, &cl);
    assert_int_equal(s.closes[CONN_CLOSE_LOCAL], 1);
    assert_int_equal(s.closes[CONN_CLOSE_TLS] + s.closes[CONN_CLOSE_PEER], 1);
    server_stop(&s);
}

static void
script_backpressure(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    CHECK(cl, write(fd, "big\r\nafter\r\n", 12) == 12);
    /* Do not read for a while: the server must not go on reading "after" meanwhile (it
     * records whether output had drained when it did). */
    usleep(300 * 1000);
    CHECK(cl, read_until(cl, fd, NULL, "end big\r\n"));
    CHECK(cl, read_until(cl, fd, NULL, "echo after\r\n"));
    close(fd);
}

static void
test_backpressure(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.max_output = 64 * 1024};
    server_start(&s, &opt);
    struct client cl = {.script = script_backpressure};
    run(&s, &cl);
    assert_true(s.big_sent);
    assert_true(s.drained_before_after >= 1);
    assert_string_equal(s.seen, "big;after;");
    server_stop(&s);
}

static void
script_stream(struct client *cl)
{
    int fd = dial(cl->port);
    CHECK(cl, read_until(cl, fd, NULL, "hello\r\n"));
    CHECK(cl, write(fd, "stream\r\nafter\r\n", 16) == 16);
    CHECK(cl, read_until(cl, fd, NULL, "end stream\r\n"));
    CHECK(cl, read_until(cl, fd, NULL, "echo after\r\n"));
    close(fd);
}

/* Every time the output fills, from on_data or from on_drained itself, a drain is reported:
 * a producer that waits for it is never left waiting. */
static void
test_drained_after_every_fill(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {.max_output = 64 * 1024};
    server_start(&s, &opt);
    struct client cl = {.script = script_stream};
    run(&s, &cl);
    assert_int_equal(s.streamed, STREAM_TOTAL + 1);
    assert_true(s.drained >= (int)(STREAM_TOTAL / STREAM_CHUNK) - 1);
    assert_string_equal(s.seen, "stream;after;");
    server_stop(&s);
}

/* ---- Shutdown ---- */

static void
break_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Runs the loop until pred(s) or 2 s. */
static void
loop_until(struct server *s, bool (*pred)(const struct server *))
{
    for (int i = 0; i < 400 && !pred(s); i++) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(s->base, &tv);
        event_base_dispatch(s->base);
    }
    assert_true(pred(s));
}

static bool
opened(const struct server *s)
{
    return s->opens == 1;
}

static bool
none_left(const struct server *s)
{
    return conn_listener_count(s->l) == 0;
}

/* Reads fd to its end (5 s at most) into buf. */
static void
read_all(int fd, char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n;
    while (len + 1 < size && (n = read(fd, buf + len, size - len - 1)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

/* The graceful stop: what on_close says is sent before the connection closes, and nobody new
 * is let in meanwhile. */
static void
test_shutdown_flushes_the_goodbye(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    int fd = dial(s.port);
    assert_true(fd >= 0);
    loop_until(&s, opened);
    assert_int_equal(conn_listener_shutdown(s.l), 1); /* its goodbye is not out yet */
    assert_int_equal(s.closes[CONN_CLOSE_SHUTDOWN], 1);
    int late = dial(s.port); /* waits in the backlog */
    loop_until(&s, none_left);
    assert_int_equal(conn_listener_shutdown(s.l), 0);
    assert_int_equal(s.closes[CONN_CLOSE_SHUTDOWN], 1);
    char got[256];
    read_all(fd, got, sizeof(got));
    assert_string_equal(got, "hello\r\nshutting down\r\n");
    assert_int_equal(s.opens, 1);
    close(fd);
    server_stop(&s);
    close(late);
}

/*
 * A client leaves and the server stops in the same turn of the loop: the connection's
 * bufferevent has read the end of the stream and scheduled its (deferred) event callback,
 * which never runs. Freeing the listener and the loop then must leave nothing behind
 * (LeakSanitizer fails this binary otherwise).
 */
static void
test_peer_gone_as_the_server_stops(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    int fd = dial(s.port);
    assert_true(fd >= 0);
    loop_until(&s, opened);
    close(fd); /* on loopback the end of stream is there at once */
    /* The read event goes first; the timer, activated after the poll, breaks the loop before
     * the deferred callbacks the read scheduled. */
    struct event *brk = evtimer_new(s.base, break_cb, s.base);
    struct timeval now = {0, 0};
    evtimer_add(brk, &now);
    event_base_loop(s.base, EVLOOP_ONCE);
    event_free(brk);
    assert_int_equal(s.closes[CONN_CLOSE_PEER], 0); /* not told yet */
    server_stop(&s);
}

/* A second listening socket on 127.0.0.1, port in *port_r. */
static int
extra_socket(uint16_t *port_r)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 64), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    *port_r = ntohs(sin.sin_port);
    return fd;
}

static bool
opened_three(const struct server *s)
{
    return s->opens == 3;
}

static bool
one_left(const struct server *s)
{
    return conn_listener_count(s->l) == 1;
}

static bool
two_left(const struct server *s)
{
    return conn_listener_count(s->l) == 2;
}

/* A CMS address: sockets added to a listener accept like its own; closing one tag ends only
 * the connections accepted on its sockets, with their goodbye, and stops accepting there. */
static void
test_extra_sockets_close_by_tag(void **state)
{
    (void)state;
    struct server s;
    struct conn_listener_options opt = {0};
    server_start(&s, &opt);
    uint16_t p1, p2;
    int e1 = extra_socket(&p1), e2 = extra_socket(&p2);
    assert_int_equal(conn_listener_add_socket(s.l, e1, 7), 0);
    assert_int_equal(conn_listener_add_socket(s.l, e2, 8), 0);
    assert_int_equal(conn_listener_add_socket(s.l, -1, 0), TDM_EINVAL); /* tag 0 is opt.fd's */
    int own = dial(s.port), on1 = dial(p1), on2 = dial(p2);
    assert_true(own >= 0 && on1 >= 0 && on2 >= 0);
    loop_until(&s, opened_three);
    assert_int_equal(conn_listener_close_socket(s.l, 7), 1);
    assert_int_equal(conn_listener_close_socket(s.l, 7), 0); /* gone already */
    assert_int_equal(s.closes[CONN_CLOSE_SHUTDOWN], 1);
    loop_until(&s, two_left); /* once its goodbye is sent */
    char got[256];
    read_all(on1, got, sizeof(got));
    assert_string_equal(got, "hello\r\nshutting down\r\n");
    assert_true(dial(p1) < 0); /* nothing listens there any more */
    /* Tag 8's socket still accepts, and the others still talk. */
    int again = dial(p2);
    assert_true(again >= 0);
    assert_int_equal(write(own, "x\r\n", 3), 3);
    assert_int_equal(write(on2, "y\r\n", 3), 3);
    for (int i = 0; i < 40 && !strstr(s.seen, "y;"); i++) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(s.base, &tv);
        event_base_dispatch(s.base);
    }
    assert_non_null(strstr(s.seen, "x;"));
    assert_non_null(strstr(s.seen, "y;"));
    close(again);
    close(on2);
    loop_until(&s, one_left); /* only the connection on the listener's own socket */
    assert_int_equal(s.closes[CONN_CLOSE_SHUTDOWN], 1);
    close(own);
    close(on1);
    server_stop(&s); /* frees tag 8's socket too (LeakSanitizer and fd checks) */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_pipelined_and_close_after_flush),
        cmocka_unit_test(test_per_address_limit),
        cmocka_unit_test(test_extra_sockets_close_by_tag),
        cmocka_unit_test(test_idle_timeout_says_goodbye),
        cmocka_unit_test(test_idle_timeout_restarts_with_input),
        cmocka_unit_test(test_out_of_descriptors_pauses_accepting),
        cmocka_unit_test(test_starttls_discards_injected_plaintext),
        cmocka_unit_test(test_implicit_tls),
        cmocka_unit_test(test_tls_peer_closes_without_notify),
        cmocka_unit_test(test_fin_is_peer_reset_is_reset),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_drained_after_every_fill),
        cmocka_unit_test(test_shutdown_flushes_the_goodbye),
        cmocka_unit_test(test_peer_gone_as_the_server_stops),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * imap_load: an IMAP load generator, the same load for any server (bench/imap runs it against
 * tandem and Dovecot side by side).
 *
 *   imap_load --host 127.0.0.1 --port 143 --connections 4 --seconds 10 --users 100
 *             [--password PW] [--keep 20] [--seed 1]
 *
 * Each connection (a thread with a blocking socket) runs whole sessions back to back, each for
 * a user picked at random among user1..userN (password PW, default "bench-pw"):
 *
 *   LOGIN, SELECT INBOX,
 *   UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])
 *     -- what a client does to list a folder,
 *   FETCH of three messages' BODY.PEEK[] -- reading mail,
 *   SEARCH UNSEEN and SEARCH FROM "sender7" -- a flag search and a header search,
 *   STORE +FLAGS (\Seen) on three messages,
 *   when the folder holds more than --keep messages: STORE +FLAGS (\Deleted) on one, EXPUNGE,
 *   LOGOUT.
 *
 * A session counts when every command was answered OK. Prints one line:
 * "connections=N sessions=S commands=C seconds=T sessions_per_s=R commands_per_s=R
 *  p50_ms=.. p99_ms=.. failures=F" (latencies are per session). Exit 0, or 1 when no session
 * completed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 256
#define MAX_SAMPLES 1000000u

struct options {
    const char *host;
    int port;
    int connections;
    double seconds;
    int users;
    const char *password;
    unsigned keep;
    unsigned seed;
};

static struct options opt = {"127.0.0.1", 143, 4, 10.0, 100, "bench-pw", 20, 1};
static atomic_bool stop;
static atomic_uint_fast64_t sessions, commands, failures;
static double *samples; /* session latencies, ms */
static atomic_uint_fast64_t n_samples;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static int
dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (fd < 0 || inet_pton(AF_INET, opt.host, &sin.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* A buffered reader of server responses. */
struct conn {
    int fd;
    char buf[65536];
    size_t len, off;
    unsigned next_tag;
    uint32_t exists; /* from "* n EXISTS" */
};

static int
fill(struct conn *c)
{
    ssize_t got = read(c->fd, c->buf, sizeof(c->buf));
    if (got <= 0)
        return -1;
    c->len = (size_t)got;
    c->off = 0;
    return 0;
}

/* Skips n bytes (a literal's content). */
static int
skip(struct conn *c, uint64_t n)
{
    while (n) {
        if (c->off == c->len && fill(c) < 0)
            return -1;
        size_t take = c->len - c->off < n ? c->len - c->off : (size_t)n;
        c->off += take;
        n -= take;
    }
    return 0;
}

/* One logical response line into line (truncated to cap; literals inside it are skipped, so
 * "{123}" stays in the text but its bytes do not). Returns 0 or -1 on EOF. */
static int
read_response_line(struct conn *c, char *line, size_t cap)
{
    size_t n = 0;
    for (;;) {
        if (c->off == c->len && fill(c) < 0)
            return -1;
        char ch = c->buf[c->off++];
        if (n + 1 < cap)
            line[n++] = ch;
        if (ch != '\n')
            continue;
        line[n] = '\0';
        /* "...{123}\r\n": a literal follows, then the rest of the same response. */
        char *brace = n >= 4 && line[n - 2] == '\r' && line[n - 3] == '}' ? strrchr(line, '{')
                                                                         : NULL;
        if (!brace)
            return 0;
        uint64_t size = strtoull(brace + 1, NULL, 10);
        if (skip(c, size) < 0)
            return -1;
        n -= 2; /* keep reading the line after the literal */
    }
}

/* Sends a command (printf-style, without tag or CRLF) and reads to its tagged response.
 * Returns 0 for OK, -1 otherwise. */
__attribute__((format(printf, 2, 3))) static int
command(struct conn *c, const char *fmt, ...)
{
    char cmd[512], tag[16];
    snprintf(tag, sizeof(tag), "a%u", ++c->next_tag);
    int len = snprintf(cmd, sizeof(cmd), "%s ", tag);
    va_list ap;
    va_start(ap, fmt);
    len += vsnprintf(cmd + len, sizeof(cmd) - (size_t)len - 2, fmt, ap);
    va_end(ap);
    if ((size_t)len > sizeof(cmd) - 3)
        return -1;
    cmd[len++] = '\r';
    cmd[len++] = '\n';
    if (write(c->fd, cmd, (size_t)len) != len)
        return -1;
    char line[1024];
    size_t tl = strlen(tag);
    for (;;) {
        if (read_response_line(c, line, sizeof(line)) < 0)
            return -1;
        unsigned n;
        if (sscanf(line, "* %u EXISTS", &n) == 1)
            c->exists = n;
        if (strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
            atomic_fetch_add(&commands, 1);
            if (strncmp(line + tl + 1, "OK", 2) == 0)
                return 0;
            /* Say what failed once, so a run with failures can be understood. */
            static atomic_bool told;
            if (!atomic_exchange(&told, true))
                fprintf(stderr, "imap_load: %s -> %s", cmd, line);
            return -1;
        }
    }
}

static int
session(uint64_t *seed)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    int ret = -1;
    c->fd = dial();
    char line[1024];
    if (c->fd < 0 || read_response_line(c, line, sizeof(line)) < 0)
        goto out;
    unsigned user = 1 + (unsigned)(rng(seed) % (uint64_t)opt.users);
    if (command(c, "LOGIN user%u %s", user, opt.password) < 0 ||
        command(c, "SELECT INBOX") < 0 ||
        command(c, "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO "
                   "SUBJECT DATE)])") < 0)
        goto out;
    uint32_t n = c->exists;
    for (int i = 0; i < 3 && n; i++)
        if (command(c, "FETCH %u BODY.PEEK[]", 1 + (unsigned)(rng(seed) % n)) < 0)
            goto out;
    if (command(c, "SEARCH UNSEEN") < 0 ||
        command(c, "SEARCH FROM \"sender%u\"", (unsigned)(rng(seed) % 10)) < 0)
        goto out;
    for (int i = 0; i < 3 && n; i++)
        if (command(c, "STORE %u +FLAGS (\\Seen)", 1 + (unsigned)(rng(seed) % n)) < 0)
            goto out;
    if (n > opt.keep && (command(c, "STORE %u +FLAGS (\\Deleted)", 1 + (unsigned)(rng(seed) % n)) < 0 ||
                         command(c, "EXPUNGE") < 0))
        goto out;
    if (command(c, "LOGOUT") < 0)
        goto out;
    ret = 0;
out:
    if (c->fd >= 0)
        close(c->fd);
    free(c);
    return ret;
}

static void *
connection(void *arg)
{
    uint64_t seed = ((uint64_t)opt.seed << 32) ^ (uint64_t)(intptr_t)arg ^ 0x9e3779b97f4a7c15ull;
    while (!atomic_load(&stop)) {
        double t0 = now_s();
        if (session(&seed) < 0) {
            atomic_fetch_add(&failures, 1);
            continue;
        }
        atomic_fetch_add(&sessions, 1);
        uint64_t i = atomic_fetch_add(&n_samples, 1);
        if (i < MAX_SAMPLES)
            samples[i] = (now_s() - t0) * 1000.0;
    }
    return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "imap_load: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--host"))
            opt.host = v;
        else if (!strcmp(a, "--port"))
            opt.port = atoi(v);
        else if (!strcmp(a, "--connections"))
            opt.connections = atoi(v);
        else if (!strcmp(a, "--seconds"))
            opt.seconds = atof(v);
        else if (!strcmp(a, "--users"))
            opt.users = atoi(v);
        else if (!strcmp(a, "--password"))
            opt.password = v;
        else if (!strcmp(a, "--keep"))
            opt.keep = (unsigned)atoi(v);
        else if (!strcmp(a, "--seed"))
            opt.seed = (unsigned)atoi(v);
        else {
            fprintf(stderr, "imap_load: unknown option %s (see the comment at the top of "
                            "bench/imap_load.c)\n", a);
            return 2;
        }
    }
    if (opt.connections < 1 || opt.connections > MAX_CONNECTIONS || opt.users < 1 ||
        opt.seconds <= 0) {
        fprintf(stderr, "imap_load: connections 1..%d, users >= 1, seconds > 0\n",
                MAX_CONNECTIONS);
        return 2;
    }
    samples = calloc(MAX_SAMPLES, sizeof(*samples));
    if (!samples)
        return 1;
    pthread_t threads[MAX_CONNECTIONS];
    double t0 = now_s();
    for (int i = 0; i < opt.connections; i++)
        pthread_create(&threads[i], NULL, connection, (void *)(intptr_t)i);
    struct timespec ts = {(time_t)opt.seconds,
                          (long)((opt.seconds - (double)(time_t)opt.seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < opt.connections; i++)
        pthread_join(threads[i], NULL);
    double elapsed = now_s() - t0;
    uint64_t n = atomic_load(&n_samples);
    if (n > MAX_SAMPLES)
        n = MAX_SAMPLES;
    qsort(samples, n, sizeof(*samples), cmp_double);
    double p50 = n ? samples[n / 2] : 0, p99 = n ? samples[(n * 99) / 100] : 0;
    uint64_t done = atomic_load(&sessions);
    printf("connections=%d sessions=%llu commands=%llu seconds=%.2f sessions_per_s=%.1f "
           "commands_per_s=%.1f p50_ms=%.2f p99_ms=%.2f failures=%llu\n",
           opt.connections, (unsigned long long)done,
           (unsigned long long)atomic_load(&commands), elapsed, (double)done / elapsed,
           (double)atomic_load(&commands) / elapsed, p50, p99,
           (unsigned long long)atomic_load(&failures));
    free(samples);
    return done > 0 ? 0 : 1;
}

/*
 * bench_lmtp_load: an LMTP load generator, the same load for any server (bench/lmtp runs it
 * against tandem and Dovecot side by side).
 *
 *   bench_lmtp_load --host 127.0.0.1 --port 24 --connections 4 --seconds 10 --users 100
 *                   [--domain bench.test] [--rcpts 1] [--seed 1]
 *
 * Each connection (a thread with a blocking socket) sends LHLO once, then transactions for the
 * given time: MAIL, RCPT (--rcpts users picked at random among user1..userN) and DATA pipelined
 * in one write (both servers offer PIPELINING), then the message and its end. A transaction
 * counts when every recipient got a 2xx reply after the data. Message sizes follow a fixed
 * mix (70% 4 KiB, 20% 32 KiB, 8% 128 KiB, 2% 1 MiB), every message is unique (its own
 * Message-ID and body offset, so neither server can store one body for many), and lines never
 * start with a dot.
 *
 * Prints one line: "connections=N messages=M seconds=S msg_per_s=R mib_per_s=B p50_ms=..
 * p99_ms=.. failures=F". Exit 0, or 1 when nothing was delivered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
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
#define TEXT_LEN (4u << 20)
#define MAX_SAMPLES 1000000u

struct options {
    const char *host;
    int port;
    int connections;
    double seconds;
    int users;
    const char *domain;
    int rcpts;
    unsigned seed;
};

static struct options opt = {"127.0.0.1", 24, 4, 10.0, 100, "bench.test", 1, 1};
static char *text; /* TEXT_LEN bytes of printable lines, none starting with '.' */
static atomic_bool stop;
static atomic_uint_fast64_t delivered, failures, bytes_sent;
static double *samples; /* transaction latencies, ms */
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
    /* xorshift64*: deterministic per connection, cheap, good enough for picking sizes. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void
make_text(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789";
    text = malloc(TEXT_LEN);
    if (!text)
        exit(1);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < TEXT_LEN;) {
        /* 76 characters and CRLF. */
        for (int c = 0; c < 76 && i < TEXT_LEN; c++)
            text[i++] = alphabet[rng(&s) % (sizeof(alphabet) - 1)];
        if (i < TEXT_LEN)
            text[i++] = '\r';
        if (i < TEXT_LEN)
            text[i++] = '\n';
    }
}

static size_t
pick_size(uint64_t *s)
{
    unsigned r = (unsigned)(rng(s) % 100);
    return r < 70 ? 4096 : r < 90 ? 32768 : r < 98 ? 131072 : 1048576;
}

static int
dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sin.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

struct reader {
    int fd;
    char buf[8192];
    size_t len, off;
};

/* One reply line (multi-line replies: returns each line; the caller skips "NNN-"). */
static int
read_line(struct reader *r, char *line, size_t cap)
{
    size_t n = 0;
    for (;;) {
        if (r->off == r->len) {
            ssize_t got = read(r->fd, r->buf, sizeof(r->buf));
            if (got <= 0)
                return -1;
            r->len = (size_t)got;
            r->off = 0;
        }
        char c = r->buf[r->off++];
        if (n + 1 < cap)
            line[n++] = c;
        if (c == '\n') {
            line[n] = '\0';
            return 0;
        }
    }
}

/* Reads one whole reply; returns its code, or -1. */
static int
read_reply(struct reader *r)
{
    char line[1024];
    for (;;) {
        if (read_line(r, line, sizeof(line)) < 0 || strlen(line) < 4)
            return -1;
        if (line[3] != '-')
            return atoi(line);
    }
}

static int
write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *
connection(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint64_t s = (uint64_t)opt.seed * 1000003u + (uint64_t)id + 1;
    int fd = dial();
    if (fd < 0) {
        fprintf(stderr, "bench_lmtp_load: cannot connect to %s:%d: %s\n", opt.host, opt.port,
                strerror(errno));
        atomic_fetch_add(&failures, 1);
        return NULL;
    }
    struct reader r = {.fd = fd};
    char cmd[4096];
    if (read_reply(&r) != 220 || write_all(fd, "LHLO load.test\r\n", 16) < 0 ||
        read_reply(&r) != 250) {
        fprintf(stderr, "bench_lmtp_load: the server did not greet or answer LHLO\n");
        atomic_fetch_add(&failures, 1);
        close(fd);
        return NULL;
    }
    uint64_t seq = 0;
    while (!atomic_load(&stop)) {
        double t0 = now_s();
        int n = snprintf(cmd, sizeof(cmd), "MAIL FROM:<load%d@load.test>\r\n", id);
        for (int i = 0; i < opt.rcpts; i++)
            n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "RCPT TO:<user%d@%s>\r\n",
                          (int)(rng(&s) % (uint64_t)opt.users) + 1, opt.domain);
        n += snprintf(cmd + n, sizeof(cmd) - (size_t)n, "DATA\r\n");
        if (write_all(fd, cmd, (size_t)n) < 0)
            break;
        bool ok = read_reply(&r) == 250;
        int accepted = 0;
        for (int i = 0; i < opt.rcpts; i++)
            accepted += read_reply(&r) / 100 == 2;
        if (read_reply(&r) != 354) {
            atomic_fetch_add(&failures, 1);
            break;
        }
        size_t size = pick_size(&s);
        size_t off = (size_t)(rng(&s) % (TEXT_LEN - size - 2));
        off -= off % 78; /* start at a line start */
        int h = snprintf(cmd, sizeof(cmd),
                         "From: load%d@load.test\r\nTo: users@%s\r\nSubject: load %d/%llu\r\n"
                         "Message-ID: <%d.%llu.%u@load.test>\r\n\r\n",
                         id, opt.domain, id, (unsigned long long)seq, id,
                         (unsigned long long)seq, opt.seed);
        /* The slice ends mid-line: close the line, then end the data. */
        if (write_all(fd, cmd, (size_t)h) < 0 || write_all(fd, text + off, size) < 0 ||
            write_all(fd, "\r\n.\r\n", 5) < 0)
            break;
        atomic_fetch_add(&bytes_sent, (uint64_t)h + size);
        for (int i = 0; i < accepted; i++)
            ok = (read_reply(&r) / 100 == 2) && ok;
        seq++;
        if (ok && accepted == opt.rcpts) {
            atomic_fetch_add(&delivered, 1);
            uint64_t k = atomic_fetch_add(&n_samples, 1);
            if (k < MAX_SAMPLES)
                samples[k] = (now_s() - t0) * 1000.0;
        } else {
            atomic_fetch_add(&failures, 1);
        }
    }
    write_all(fd, "QUIT\r\n", 6);
    close(fd);
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
            fprintf(stderr, "bench_lmtp_load: %s needs a value\n", a);
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
        else if (!strcmp(a, "--domain"))
            opt.domain = v;
        else if (!strcmp(a, "--rcpts"))
            opt.rcpts = atoi(v);
        else if (!strcmp(a, "--seed"))
            opt.seed = (unsigned)atoi(v);
        else {
            fprintf(stderr, "bench_lmtp_load: unknown option %s (see the comment at the top of "
                            "bench/lmtp_load.c)\n", a);
            return 2;
        }
    }
    if (opt.connections < 1 || opt.connections > MAX_CONNECTIONS || opt.users < 1 ||
        opt.rcpts < 1 || opt.rcpts > 50 || opt.seconds <= 0) {
        fprintf(stderr, "bench_lmtp_load: connections 1..%d, users >= 1, rcpts 1..50, "
                        "seconds > 0\n", MAX_CONNECTIONS);
        return 2;
    }
    make_text();
    samples = calloc(MAX_SAMPLES, sizeof(*samples));
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
    uint64_t msgs = atomic_load(&delivered);
    printf("connections=%d messages=%llu seconds=%.2f msg_per_s=%.1f mib_per_s=%.2f "
           "p50_ms=%.2f p99_ms=%.2f failures=%llu\n",
           opt.connections, (unsigned long long)msgs, elapsed, (double)msgs / elapsed,
           (double)atomic_load(&bytes_sent) / elapsed / 1048576.0, p50, p99,
           (unsigned long long)atomic_load(&failures));
    free(samples);
    free(text);
    return msgs > 0 ? 0 : 1;
}

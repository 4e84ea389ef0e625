/*
 * The admin API client's transport: connect (unix socket or TCP + TLS), write one request,
 * read until the parser says the response is complete. See admin_client.h.
 *
 * Everything here blocks, bounded by the target's timeout (poll before connect completes,
 * SO_RCVTIMEO/SO_SNDTIMEO after), so tandemctl can never hang on a server that accepted and
 * went silent; an events stream (--follow) sets no read timeout, since silence is normal there.
 */
#include "tandemctl/admin_client.h"

#include "lib/err.h"
#include "tandemctl/ctl.h"
#include "lib/tls.h"
#include "proto/http/http_response.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.1.0"
#endif

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* An allocated message; allocation failure ends tandemctl (it cannot report anything then). */
static char *
fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return s;
}

/* Sets *fail_r and *error_r; returns -1 for the caller to pass on. */
static int fail(enum admin_fail *fail_r, char **error_r, enum admin_fail kind, const char *f, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(enum admin_fail *fail_r, char **error_r, enum admin_fail kind, const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    *fail_r = kind;
    *error_r = s;
    return -1;
}

void
admin_target_clear(struct admin_target *t)
{
    if (t->password) {
        OPENSSL_cleanse(t->password, strlen(t->password));
        free(t->password);
    }
    free(t->socket_path);
    free(t->host);
    free(t->port);
    free(t->ca_file);
    free(t->user);
    free(t->datadir);
    memset(t, 0, sizeof(*t));
}

const char *
admin_target_name(const struct admin_target *t, char *buf, size_t size)
{
    if (t->socket_path)
        return t->socket_path;
    /* An IPv6 literal needs its brackets back to be read as host:port. */
    snprintf(buf, size, strchr(t->host, ':') ? "[%s]:%s" : "%s:%s", t->host, t->port);
    return buf;
}

void
admin_response_clear(struct admin_response *resp)
{
    free(resp->content_type);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

/* ------------------------------------------------------------------ */
/* Connections                                                        */

struct link {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl; /* NULL on the unix socket */
};

static void
link_close(struct link *l)
{
    if (l->ssl) {
        SSL_shutdown(l->ssl); /* a courtesy close_notify; the answer was already read */
        SSL_free(l->ssl);
    }
    SSL_CTX_free(l->ctx);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    l->ssl = NULL;
    l->ctx = NULL;
}

static void
set_io_timeouts(int fd, int timeout_ms, bool reads_too)
{
    if (timeout_ms <= 0)
        return;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (reads_too)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/*
 * connect() bounded by timeout_ms: non-blocking, poll for writability, read SO_ERROR.
 * Returns 0 or -errno (-ETIMEDOUT when the time ran out).
 */
static int
connect_bounded(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int r = connect(fd, sa, len);
    if (r < 0 && errno != EINPROGRESS)
        return -errno;
    if (r < 0) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        do
            r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        int err = 0;
        socklen_t elen = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            return -errno;
        if (err)
            return -err;
    }
    if (fcntl(fd, F_SETFL, fl) < 0)
        return -errno;
    return 0;
}

static int
connect_unix(const struct admin_target *t, struct link *l, enum admin_fail *fail_r, char **error_r)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(t->socket_path) >= sizeof(sun.sun_path))
        return fail(fail_r, error_r, ADMIN_FAIL_CONNECT,
                    "cannot connect to %s: the path is longer than a unix socket path may be "
                    "(%zu bytes); use a shorter datadir or --server",
                    t->socket_path, sizeof(sun.sun_path) - 1);
    strcpy(sun.sun_path, t->socket_path);
    l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l->fd < 0)
        return fail(fail_r, error_r, ADMIN_FAIL_CONNECT, "cannot make a socket: %s",
                    strerror(errno));
    int r = connect_bounded(l->fd, (struct sockaddr *)&sun, sizeof(sun), t->timeout_ms);
    if (r == 0)
        return 0;
    const char *hint;
    char *owned = NULL;
    switch (-r) {
    case ENOENT:
        hint = owned = t->datadir
                           ? fmt("no such file; is tandemd running with datadir %s?", t->datadir)
                           : fmt("no such file; is tandemd running, and is this its "
                                 "<datadir>/run/admin.sock?");
        break;
    case ECONNREFUSED:
        hint = "connection refused: nothing listens there; is tandemd running?";
        break;
    case EACCES:
    case EPERM:
        hint = "permission denied; run tandemctl as root or as the user tandemd runs as, or "
               "use --server HOST:PORT with --user";
        break;
    case ENOTSOCK:
        hint = "not a socket; give the admin socket, <datadir>/run/admin.sock";
        break;
    case ETIMEDOUT:
        hint = "no answer in time; is tandemd overloaded or stopped (SIGSTOP)?";
        break;
    default:
        hint = strerror(-r);
        break;
    }
    fail(fail_r, error_r, ADMIN_FAIL_CONNECT, "cannot connect to %s: %s", t->socket_path, hint);
    free(owned);
    return -1;
}

static int
connect_tcp(const struct admin_target *t, struct link *l, enum admin_fail *fail_r, char **error_r)
{
    char namebuf[300];
    const char *name = admin_target_name(t, namebuf, sizeof(namebuf));
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(t->host, t->port, &hints, &ai);
    if (g != 0)
        return fail(fail_r, error_r, ADMIN_FAIL_CONNECT,
                    "cannot connect to %s: cannot resolve \"%s\": %s; give an IP address or a "
                    "name that resolves",
                    name, t->host, gai_strerror(g));
    int r = -EHOSTUNREACH;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        l->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (l->fd < 0) {
            r = -errno;
            continue;
        }
        r = connect_bounded(l->fd, a->ai_addr, a->ai_addrlen, t->timeout_ms);
        if (r == 0)
            break;
        close(l->fd);
        l->fd = -1;
    }
    freeaddrinfo(ai);
    if (r == 0)
        return 0;
    const char *hint = strerror(-r);
    if (r == -ECONNREFUSED)
        hint = "connection refused; is tandemd running with [listen admin] on that address and "
               "port?";
    else if (r == -ETIMEDOUT)
        hint = "no answer in time; check the address and that the network is up";
    return fail(fail_r, error_r, ADMIN_FAIL_CONNECT, "cannot connect to %s: %s", name, hint);
}

static int
start_tls(const struct admin_target *t, struct link *l, enum admin_fail *fail_r, char **error_r)
{
    char namebuf[300], *err = NULL;
    const char *name = admin_target_name(t, namebuf, sizeof(namebuf));
    if (tls_client_ctx_new(t->ca_file, NULL, NULL, &l->ctx, &err) != 0) {
        fail(fail_r, error_r, ADMIN_FAIL_TLS,
             "cannot use CA file %s: %s; --ca (or TANDEM_CA) must name a PEM file such as the "
             "server's <datadir>/tls/ca.pem",
             t->ca_file, err ? err : "unknown error");
        free(err);
        return -1;
    }
    /* The end of our one response is known from its framing (Content-Length or chunked),
     * so a peer that closes without close_notify loses us nothing; the parser still
     * refuses a response cut short. */
    SSL_CTX_set_options(l->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (tls_client_ssl_new(l->ctx, t->host, &l->ssl, &err) != 0) {
        fail(fail_r, error_r, ADMIN_FAIL_TLS, "TLS with %s: %s", name, err ? err : "unknown error");
        free(err);
        return -1;
    }
    if (SSL_set_fd(l->ssl, l->fd) != 1) {
        ERR_clear_error();
        return fail(fail_r, error_r, ADMIN_FAIL_TLS, "TLS with %s: cannot attach the socket", name);
    }
    if (SSL_connect(l->ssl) != 1) {
        char *why = tls_handshake_error(l->ssl);
        fail(fail_r, error_r, ADMIN_FAIL_TLS,
             "TLS handshake with %s failed: %s; check that --ca is the CA of that server (its "
             "<datadir>/tls/ca.pem) and that \"%s\" is a name or address in its certificate",
             name, why ? why : "unknown error", t->host);
        free(why);
        return -1;
    }
    return 0;
}

/* Writes all of buf. Returns 0 or -errno. */
static int
link_write(struct link *l, const char *buf, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        if (l->ssl) {
            if (SSL_write_ex(l->ssl, buf, len, &n) != 1) {
                ERR_clear_error();
                return errno ? -errno : -EPIPE;
            }
        } else {
            ssize_t w = send(l->fd, buf, len, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            n = (size_t)w;
        }
        buf += n;
        len -= n;
    }
    return 0;
}

/* Reads some bytes. Returns the count, 0 at the end of the stream, or -errno. */
static ssize_t
link_read(struct link *l, uint8_t *buf, size_t size)
{
    if (l->ssl) {
        size_t n = 0;
        errno = 0;
        if (SSL_read_ex(l->ssl, buf, size, &n) == 1)
            return (ssize_t)n;
        int e = SSL_get_error(l->ssl, 0);
        int saved = errno;
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0))
            return 0;
        if (e == SSL_ERROR_WANT_READ) /* SO_RCVTIMEO ran out */
            return -EAGAIN;
        return e == SSL_ERROR_SYSCALL ? -saved : -EPROTO;
    }
    for (;;) {
        ssize_t r = recv(l->fd, buf, size, 0);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -errno : r;
    }
}

/* ------------------------------------------------------------------ */
/* The request                                                        */

/* "Authorization: Basic base64(user:password)" into an allocated string. */
static char *
basic_auth(const char *user, const char *password)
{
    char *plain = fmt("%s:%s", user, password);
    size_t len = strlen(plain);
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain, (int)len);
    OPENSSL_cleanse(plain, len);
    free(plain);
    char *line = fmt("Authorization: Basic %s\r\n", b64);
    OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    return line;
}

static char *
build_request(const struct admin_target *t, const char *method, const char *path, const char *body,
              size_t *len_r)
{
    char *auth = t->user ? basic_auth(t->user, t->password ? t->password : "") : NULL;
    char host[300];
    char *body_headers =
        body ? fmt("Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body))
             : NULL;
    char *req =
        fmt("%s %s HTTP/1.1\r\n"
            "Host: %s\r\n"
            "User-Agent: tandemctl/" TANDEM_VERSION "\r\n"
            "Accept: application/json\r\n"
            "Connection: close\r\n"
            "%s%s\r\n%s",
            method, path, t->socket_path ? "localhost" : admin_target_name(t, host, sizeof(host)),
            auth ? auth : "", body_headers ? body_headers : "", body ? body : "");
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    free(body_headers);
    *len_r = strlen(req);
    return req;
}

/* Collects a body that is not streamed; bounded by the parser's max_body. */
struct collect {
    char *buf;
    size_t len, cap;
};

static void
collect_add(struct collect *c, const uint8_t *data, size_t len)
{
    if (c->len + len + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        while (cap < c->len + len + 1)
            cap *= 2;
        char *nb = realloc(c->buf, cap);
        if (!nb) {
            fputs("tandemctl: out of memory\n", stderr);
            exit(CTL_EXIT_ERROR);
        }
        c->buf = nb;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
}

/* Reads and parses the response. Returns 0, a body_cb result, or -1 with *fail_r and *error_r. */
static int
read_response(const struct admin_target *t, struct link *l, admin_body_cb *body_cb, void *cb_ctx,
              struct admin_response *resp, enum admin_fail *fail_r, char **error_r)
{
    char namebuf[300];
    const char *name = admin_target_name(t, namebuf, sizeof(namebuf));
    struct http_response_limits lim = {.max_head = ADMIN_MAX_HEAD,
                                       .max_body = body_cb ? 0 : ADMIN_MAX_BODY};
    struct http_response *p = NULL;
    if (http_response_new(&lim, &p) != 0) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    struct collect body = {0};
    uint8_t buf[16384];
    int ret = 0;
    bool done = false;
    while (!done) {
        ssize_t n = link_read(l, buf, sizeof(buf));
        const char *perr = NULL;
        if (n < 0) {
            ret = fail(fail_r, error_r, ADMIN_FAIL_IO, "reading the answer from %s: %s", name,
                       n == -EAGAIN ? "no answer in time (is the server overloaded?)"
                                    : strerror((int)-n));
            break;
        }
        if (n == 0) {
            int r = http_response_eof(p, &perr);
            if (r < 0)
                ret = fail(fail_r, error_r, ADMIN_FAIL_PROTOCOL, "%s: %s", name, perr);
            break;
        }
        size_t off = 0;
        while (off < (size_t)n || !done) {
            struct http_response_out out;
            int r = http_response_feed(p, buf + off, (size_t)n - off, &out, &perr);
            if (r < 0) {
                ret = fail(fail_r, error_r, ADMIN_FAIL_PROTOCOL,
                           "%s sent a response tandemctl cannot read: %s; is that a tandem "
                           "admin endpoint?",
                           name, perr);
                done = true;
                break;
            }
            off += out.used;
            if (r == HTTP_RESPONSE_HEAD) {
                resp->status = http_response_status(p);
                const char *ct = http_response_header(p, "Content-Type");
                resp->content_type = ct ? fmt("%s", ct) : NULL;
            } else if (r == HTTP_RESPONSE_BODY) {
                /* Only a successful stream goes to the callback; an error document is
                 * collected like any other answer so the caller can read it. */
                if (body_cb && resp->status / 100 == 2) {
                    ret = body_cb(cb_ctx, out.body, out.body_len);
                    if (ret != 0)
                        done = true;
                } else if (body.len + out.body_len > ADMIN_MAX_BODY) {
                    /* The parser has no body limit for a stream; what is collected in its
                     * place (an error document) still gets one. */
                    ret = fail(fail_r, error_r, ADMIN_FAIL_PROTOCOL,
                               "%s sent an answer over %u bytes", name, ADMIN_MAX_BODY);
                    done = true;
                } else {
                    collect_add(&body, out.body, out.body_len);
                }
            } else if (r == HTTP_RESPONSE_END) {
                done = true;
            } else {
                break; /* NEED_MORE */
            }
            if (done)
                break;
        }
    }
    http_response_free(&p);
    if (ret == 0 && !(body_cb && resp->status / 100 == 2)) {
        if (!body.buf)
            collect_add(&body, (const uint8_t *)"", 0);
        resp->body = body.buf;
        resp->body_len = body.len;
    } else {
        free(body.buf);
    }
    return ret;
}

int
admin_request(const struct admin_target *t, const char *method, const char *path, const char *body,
              admin_body_cb *body_cb, void *cb_ctx, struct admin_response *resp_r,
              enum admin_fail *fail_r, char **error_r)
{
    memset(resp_r, 0, sizeof(*resp_r));
    *fail_r = ADMIN_FAIL_NONE;
    *error_r = NULL;
    /* A server that closes while we write must give an error, not kill tandemctl. */
    signal(SIGPIPE, SIG_IGN);

    struct link l = {.fd = -1};
    int r =
        t->socket_path ? connect_unix(t, &l, fail_r, error_r) : connect_tcp(t, &l, fail_r, error_r);
    if (r == 0) {
        set_io_timeouts(l.fd, t->timeout_ms, !t->stream);
        if (!t->socket_path)
            r = start_tls(t, &l, fail_r, error_r);
    }
    if (r == 0) {
        size_t len;
        char *req = build_request(t, method, path, body, &len);
        int w = link_write(&l, req, len);
        OPENSSL_cleanse(req, len); /* it holds the credentials */
        free(req);
        if (w < 0) {
            char name[300];
            r = fail(fail_r, error_r, ADMIN_FAIL_IO, "sending the request to %s: %s",
                     admin_target_name(t, name, sizeof(name)), strerror(-w));
        }
    }
    if (r == 0)
        r = read_response(t, &l, body_cb, cb_ctx, resp_r, fail_r, error_r);
    link_close(&l);
    if (r < 0)
        admin_response_clear(resp_r);
    return r;
}

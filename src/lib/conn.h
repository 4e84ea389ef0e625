#ifndef TANDEM_LIB_CONN_H
#define TANDEM_LIB_CONN_H

/*
 * Client connections of the line protocols (IMAP, LMTP, SMTP) in worker processes: the only
 * code that touches their sockets and OpenSSL (CONVENTIONS.md, "Protocol code is sans-IO").
 * A conn_listener accepts on a listening socket the supervisor bound, with limits per client
 * address and in total (a refused connection gets the protocol's refusal line, then is
 * closed); each connection is a libevent bufferevent, plain, implicit TLS, or upgraded by
 * STARTTLS. The protocol code sees bytes in and writes bytes out.
 *
 * Back-pressure: when more than max_output bytes wait to be sent, reading pauses until the
 * peer has taken them, so a client that does not read cannot make the server buffer without
 * bound; protocols check conn_output_full() between pipelined commands. A connection idle (nothing received) for idle_timeout_ms is closed with the reason
 * CONN_CLOSE_IDLE; the protocol may say goodbye in on_close (the bytes are flushed best-effort).
 * Every byte received starts that period again.
 *
 * Out of file descriptors (or memory) to accept with, a listener stops accepting for 250 ms at
 * a time, with one warning, instead of spinning on its readable socket; the connections
 * waiting meanwhile stay in the kernel's backlog.
 *
 * One libevent loop, one thread. Ownership: the listener owns its connections; a conn lives
 * until on_close has returned, after which the pointer is invalid.
 */

#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct conn;
struct conn_listener;

enum conn_close_reason {
    CONN_CLOSE_PEER = 1,   /* EOF (with or without a TLS close_notify): the peer's kernel
                            * sent a FIN, so its socket was closed, by its process or its death */
    CONN_CLOSE_LOCAL = 2,  /* conn_close() or conn_close_after_flush() */
    CONN_CLOSE_IDLE = 3,   /* idle_timeout_ms without input */
    CONN_CLOSE_TLS = 4,    /* the TLS handshake or session failed */
    CONN_CLOSE_SHUTDOWN = 5, /* conn_listener_shutdown() or conn_listener_free() */
    CONN_CLOSE_BROKEN = 6, /* any other socket error (ETIMEDOUT, EHOSTUNREACH...): the path
                            * failed, and the peer may not know yet (docs/cluster.md: the
                            * witness keeps a lease on this) */
    /* ECONNRESET or EPIPE: a RST arrived. The peer's kernel sends one when a socket closes with
     * unread input (a process killed mid-read), but so does a firewall's REJECT
     * --reject-with tcp-reset or a middlebox that lost the connection's state while the peer
     * runs on: it is no proof that the peer is gone (docs/cluster.md, "Leases and epochs"). */
    CONN_CLOSE_RESET = 7,
};

struct conn_ops {
    /* A new connection: set its context with conn_set_ctx() and write the greeting. */
    void (*on_open)(struct conn *conn, void *listener_ctx);
    /* Bytes arrived: consume what can be used from in (an evbuffer: evbuffer_pullup,
     * evbuffer_drain, evbuffer_remove...). Leftovers stay for the next call. */
    void (*on_data)(struct conn *conn, struct evbuffer *in);
    /* The output that filled past max_output (written from any callback: on_data, a reply
     * arriving, on_drained itself) has drained to half of it: a producer that stopped at
     * conn_output_full() goes on from here. May be NULL. */
    void (*on_drained)(struct conn *conn);
    /* The connection is going; free the context. conn_write() still queues (best effort). */
    void (*on_close)(struct conn *conn, enum conn_close_reason reason);
};

struct conn_listener_options {
    int fd;                    /* listening socket, non-blocking; owned by the listener */
    SSL_CTX *implicit_tls;     /* non-NULL: every connection starts with a TLS handshake
                                * (imaps); borrowed, must outlive the listener */
    unsigned max_connections;  /* in total; 0 = 10000 */
    unsigned max_per_address;  /* per client IP address; 0 = 100 */
    uint32_t idle_timeout_ms;  /* 0 = 30 min */
    size_t max_output;         /* bytes queued before reading pauses; 0 = 1 MiB */
    /* Sent before closing a connection refused by a limit, e.g. "* BYE Too many
     * connections from your address\r\n"; NULL sends nothing. Borrowed. */
    const char *refusal_line;
};

/* Returns 0 with an owned *listener_r, or -ENOMEM / -errno. On failure fd is not taken. */
int conn_listener_new(struct event_base *base, const struct conn_listener_options *opt,
                      const struct conn_ops *ops, void *listener_ctx,
                      struct conn_listener **listener_r);

/* Listening sockets a listener may hold besides opt.fd. */
#define CONN_MAX_SOCKETS 16

/*
 * Accepts on fd (listening, non-blocking) too, with the same protocol, limits and context:
 * a CMS address (docs/cluster.md). tag (not 0; several sockets may share one) marks the
 * connections accepted on it for conn_listener_close_socket(). Takes fd on success. Returns
 * 0, TDM_EINVAL (tag 0, CONN_MAX_SOCKETS reached, or shut down) or -ENOMEM.
 */
int conn_listener_add_socket(struct conn_listener *listener, int fd, uint32_t tag);

/*
 * Closes every socket added with tag and ends the connections accepted on them as
 * conn_listener_shutdown() does (on_close with CONN_CLOSE_SHUTDOWN, whose goodbye is sent);
 * the others go on. Returns how many sockets it closed.
 */
unsigned conn_listener_close_socket(struct conn_listener *listener, uint32_t tag);

/*
 * The graceful stop, while the loop still runs: stops accepting (new connections wait in the
 * backlog until the socket is closed) and closes every connection with CONN_CLOSE_SHUTDOWN;
 * each goes once what on_close queued (the protocol's goodbye) is sent, or after 5 s.
 * Returns how many connections are still going; call again to poll (it does nothing more).
 * Then conn_listener_free() as usual.
 */
unsigned conn_listener_shutdown(struct conn_listener *listener);

/* Closes every connection (on_close with CONN_CLOSE_SHUTDOWN, whose goodbye is not sent: the
 * loop no longer runs), the listening socket, frees. */
void conn_listener_free(struct conn_listener **listener);

/*
 * Frees a loop that ran connections, after everything else on it is freed. A connection
 * freed in the loop's last turn may still have a deferred callback pending, which holds
 * libevent's last reference to its buffers: the loop runs once more without blocking so that
 * it lets go, as event_base_free() alone would not (the buffers would leak).
 */
void conn_base_free(struct event_base **base);

/* Connections open now, and refused by a limit since the start (metrics). */
unsigned conn_listener_count(const struct conn_listener *listener);
uint64_t conn_listener_refused(const struct conn_listener *listener);

void conn_set_ctx(struct conn *conn, void *ctx);
void *conn_ctx(const struct conn *conn);

/* "127.0.0.1:40112" / "[::1]:40112". */
const char *conn_peer(const struct conn *conn);
/* The peer's address without the port, for limits and login delays. */
const char *conn_peer_address(const struct conn *conn);
bool conn_is_tls(const struct conn *conn);

/* Queues bytes. Returns 0, or -ENOMEM (the connection is then closed). */
int conn_write(struct conn *conn, const void *data, size_t len);
int conn_printf(struct conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bytes queued and not yet sent. */
size_t conn_output_pending(const struct conn *conn);

/* True when more than max_output bytes wait to be sent: a protocol handling pipelined
 * commands stops taking more from the input (leaving them there) until on_data is called
 * again, which happens once the peer has read enough. */
bool conn_output_full(const struct conn *conn);

/*
 * STARTTLS: after the reply already queued has been sent, starts a TLS handshake as the
 * server with ctx (borrowed). Input received after the command and before the handshake is
 * discarded (a client may not pipeline past STARTTLS; injected plaintext must never be read as
 * if it came over TLS). Returns 0, TDM_EINVAL when the connection is already TLS, or -ENOMEM.
 */
int conn_starttls(struct conn *conn, SSL_CTX *ctx);

/* Stops / resumes calling on_data (e.g. while an asynchronous commit is in flight). */
void conn_pause(struct conn *conn);
void conn_resume(struct conn *conn);

/* Closes once queued output is sent (or after 5 s). on_close follows with CONN_CLOSE_LOCAL. */
void conn_close_after_flush(struct conn *conn);

#endif

#ifndef TANDEM_REPL_REPL_SOURCE_H
#define TANDEM_REPL_REPL_SOURCE_H

/*
 * The source side of replication (docs/replication.md, "The source"; the protocol is
 * docs/formats/replication.md): on the core's libevent loop it accepts copies' connections on
 * [listen replication], authenticates each HELLO through the core's verify callback, answers
 * HELLO_REPLY for one of the databases the core registered, then streams that database's log
 * from the copy's position (LOG_DATA), tells it the active's durable position (POSITION, on
 * each durable change and as a heartbeat), reads its ACKs, and keeps every database's
 * truncation floor at the lowest generation a copy it serves still needs.
 *
 * File reads and compression run on one helper thread (lib/offload), one chunk of at most
 * 1 MiB per job and one job per copy at a time, so the loop never waits on the disk; the only
 * read on the loop is the 24-byte frame header a HELLO's position is checked against. A copy
 * whose TLS output holds more than high_water bytes gets no new chunk until it has drained.
 *
 * One loop, one thread: every function here is called on the loop's thread.
 */

#include "proto/repl/repl_wire.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct repl_source;

/*
 * How the core answers whether server/key may replicate (verify against the local directory,
 * or the directory's /v1/auth/verify, and membership of `servers`). Asynchronous, since the
 * second needs the network: verify must call done(done_ctx, status, error) exactly once,
 * either from inside verify or later on the loop. status 0 admits; -EACCES refuses (error:
 * the reason, for the copy and the event; may be NULL); any other negative status is "could
 * not check now" (the copy is refused with code `internal` and retries). server and key are
 * borrowed for the call; error for the call of done.
 */
typedef void repl_source_verify_done_cb(void *done_ctx, int status, const char *error);
typedef void repl_source_verify_fn(void *ctx, const char *server, const char *key, size_t key_len,
                                   repl_source_verify_done_cb *done, void *done_ctx);

/* The zstd level for a copy that asks for compression when the source has none set: one of
 * zstd's fast levels, since compressing runs on the source's one helper thread for all copies. */
#define REPL_SOURCE_DEFAULT_ZSTD_LEVEL 3

struct repl_source_options {
    int fd;       /* listening socket, non-blocking; owned by the source from a successful
                   * repl_source_new() */
    SSL_CTX *tls; /* server context ([tls] files); borrowed, outlives the source. NULL: plain
                   * TCP, for tests only */
    repl_source_verify_fn *verify; /* required */
    void *verify_ctx;
    /* Optional: told every ACK as it arrives (the core's sync gate releases the replies it
     * holds at or below a passive copy's durable LSN). database and server are borrowed for
     * the call; it must not free the source or remove the database. */
    void (*ack)(void *ctx, const char *database, const char *server, uint16_t role,
                const struct repl_ack *ack);
    void *ack_ctx;
    uint32_t heartbeat_ms;    /* POSITION when idle; 0 = 1000 */
    uint32_t idle_timeout_ms; /* close a copy silent this long; 0 = 30000 */
    size_t high_water;        /* output bytes above which no chunk is read; 0 = 4 MiB */
    int zstd_level; /* 0 = only for copies that ask in HELLO (at REPL_SOURCE_DEFAULT_ZSTD_LEVEL);
                     * else every copy, at 1..9 (clamped) */
    unsigned max_copies; /* connections per database; 0 = 16 */
    /* How long the floor is held for a copy that went away, and how many generations behind
     * the current one any copy may hold it; past either, the copy is released (event 4053)
     * and will have to reseed. 0 = 24 h and 1000 generations. */
    uint64_t hold_ms;
    uint64_t hold_generations;
    /* After a database is added, its floor is held at its lowest generation this long, so
     * copies that were away when the active started can reconnect before truncation runs;
     * 0 = 10 min. */
    uint64_t startup_hold_ms;
    /* Where seed snapshots are written (an unnamed O_TMPFILE, gone with its last fd): a
     * directory on a file system with room for a copy of the largest database; NULL = /tmp.
     * Borrowed, outlives the source. */
    const char *seed_dir;
};

/* Returns 0 with an owned *src_r, or -ENOMEM / -errno (thread, eventfd) / TDM_EINVAL. On
 * failure opt->fd is not taken. */
int repl_source_new(struct event_base *base, const struct repl_source_options *opt,
                    struct repl_source **src_r);

/* Serves copies on the listening socket fd too (a CMS address, docs/cluster.md); takes fd on
 * success. tag (not 0) marks it. 0 or conn_listener_add_socket's error. */
int repl_source_add_socket(struct repl_source *src, int fd, uint32_t tag);
/* Closes the sockets added with tag; the copies connected through them get ERROR `shutdown`
 * and are closed (they reconnect to the CMS address, wherever it is now). */
void repl_source_close_socket(struct repl_source *src, uint32_t tag);

/* The copies of server connected now (streaming or seeding; a HELLO still being checked is
 * not counted: its check decides). With drop_why non-NULL each gets ERROR `auth` saying it and
 * is closed: the core's check of live sessions found the server's key refused
 * (src/tandemd/core_server_auth.c). Returns how many there were. NULL src: 0. */
size_t repl_source_sessions(struct repl_source *src, const char *server, const char *drop_why);

/* Sends every copy ERROR `shutdown`, closes everything, clears the durable hook and floor of
 * every database. NULL allowed; *src is set to NULL. */
void repl_source_free(struct repl_source **src);

/*
 * Serves database name (1..255 bytes) from store in mode (enum repl_mode) — or, with store
 * NULL, knows it only to answer `not-active`. Sets the store's durable hook (the source owns
 * it while the database is added) and its truncation floor. The store is borrowed until
 * repl_source_remove_database() returns. Returns 0, TDM_EEXIST, TDM_EINVAL or -ENOMEM.
 */
int repl_source_add_database(struct repl_source *src, const char *name, struct store *store,
                             uint16_t mode);

/* Stops serving name: its copies get ERROR `shutdown` and are closed, the hook is cleared and
 * the floor lifted (UINT64_MAX). Nothing happens for an unknown name. Call before closing the
 * store. */
void repl_source_remove_database(struct repl_source *src, const char *name);

/* One copy the source knows of: connected now, or departed and still held. */
struct repl_source_copy_info {
    const char *server;   /* borrowed for the callback */
    const char *database; /* borrowed for the callback */
    const char *peer;     /* "127.0.0.1:40112"; NULL when departed */
    uint16_t role;        /* enum repl_role */
    bool connected;
    bool acked;               /* an ACK has arrived on this connection */
    struct repl_ack last_ack; /* the latest ACK (zero before the first) */
    uint64_t last_ack_us;     /* when it arrived (wall clock, µs); 0 = never */
    uint64_t sent_generation; /* where the next LOG_DATA starts */
    uint64_t sent_offset;
    uint64_t bytes_sent;        /* LOG_DATA bytes on the wire (compressed when compressed) */
    uint64_t bytes_raw;         /* log bytes they carried */
    uint64_t needed_generation; /* what it holds the floor at */
};
typedef void repl_source_copy_cb(void *ctx, const struct repl_source_copy_info *info);

/* Calls cb for every copy, connected first. */
void repl_source_copies(struct repl_source *src, repl_source_copy_cb *cb, void *ctx);

#endif

#ifndef TANDEM_REPL_REPL_SOURCE_INT_H
#define TANDEM_REPL_REPL_SOURCE_INT_H

/*
 * What the source's files share: repl_source.c (listener, sessions, HELLO, ACK, POSITION),
 * repl_source_ship.c (reading and sending chunks of the log), repl_source_floor.c (the
 * truncation floor and the copies it is held for).
 */

#include "repl/repl_source.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct conn;
struct conn_listener;
struct event;
struct offload;
struct repl_zstd;

/* The active's durable position, written by the store's log thread (durable hook), read on
 * the loop after the eventfd wakes it. */
struct repl_src_pos {
    uint64_t generation;
    uint64_t durable_end;
    uint64_t durable_lsn;
};

/* A copy that went away, holding the floor until released (repl_source_floor.c). */
struct repl_src_held {
    struct repl_src_held *next;
    char *server;
    uint16_t role;
    uint64_t needed;      /* generation it still needs */
    uint64_t departed_us; /* monotonic clock */
    struct repl_ack last_ack;
    uint64_t last_ack_us;
};

struct repl_src_db {
    struct repl_src_db *next;
    struct repl_source *src;
    char *name;
    struct store *store; /* NULL: known here but not active */
    uint16_t mode;
    uint8_t guid[REPL_WIRE_GUID_LEN];

    int efd;            /* eventfd the durable hook writes */
    struct event *wake; /* reads efd on the loop */
    pthread_mutex_t pos_lock;
    struct repl_src_pos pos; /* under pos_lock: the latest from the hook */

    unsigned n_peers;
    struct repl_src_held *held;
    uint64_t startup_hold_until_us; /* monotonic; 0 when over */
    uint64_t startup_floor;
    uint64_t floor; /* as last set on the store */
    bool updating;  /* inside repl__floor_update: a nested call only asks for a rerun */
    bool update_again;
};

enum repl_src_state {
    REPL_SRC_HELLO,     /* waiting for HELLO */
    REPL_SRC_VERIFYING, /* verify called, done not yet */
    REPL_SRC_STREAMING,
    REPL_SRC_SEEDING, /* a seed connection: SEED_REQUEST accepted (repl_source_seed.c) */
    REPL_SRC_CLOSING, /* closed or closing; freed once no job and no verify is pending */
};

/* One connection of a copy. */
struct repl_src_peer {
    struct repl_src_peer *next, *prev;
    struct repl_source *src;
    struct conn *conn; /* NULL once the connection is gone */
    enum repl_src_state state;
    bool job_running;    /* a chunk job holds fd and zstd */
    bool verify_pending; /* done not called yet */
    unsigned busy;       /* inside one of our callbacks for it: do not free yet */
    bool released;       /* fell too far behind: closed, and not held after it */

    struct repl_src_db *db; /* NULL until HELLO found it */
    char *server;
    char *database; /* as HELLO named it, until the database is found */
    uint16_t role;
    uint32_t hello_id;
    struct repl_hello_copy {
        uint64_t start_generation, start_offset, last_lsn, epoch;
        bool guid_zero;
        uint8_t guid[REPL_WIRE_GUID_LEN];
    } hello;

    /* Shipping: the next byte to send is (gen, off); boundary is the next frame boundary at or
     * after off (beyond off while in the middle of a frame longer than a chunk). */
    uint64_t gen, off, boundary;
    /* The last data LSN sent to this copy in a whole frame (0: none yet), and the LSN of the
     * frame longer than a chunk being sent (0: none). An ACK never claims more than the copy
     * had at HELLO or was sent since: the sync gate and the floor believe it. */
    uint64_t shipped_lsn, partial_lsn;
    int fd; /* of generation gen; -1 when not open */
    struct repl_zstd *zstd;
    bool wants_zstd; /* its HELLO asked for compression (its copy.conf, per network) */

    uint64_t last_sent_us;    /* monotonic, for heartbeats */
    struct repl_src_pos told; /* the last POSITION sent */
    bool acked;
    struct repl_ack last_ack;
    uint64_t last_ack_us; /* wall clock */
    uint64_t needed;      /* generation this copy holds the floor at */
    uint64_t bytes_sent, bytes_raw;

    /* A seed connection (SEED_REQUEST instead of HELLO): the snapshot in an unnamed
     * temporary file, sent from seed_off; ready once the snapshot job is done. */
    bool seed;
    bool seed_ready, seed_end_sent;
    int seed_fd;
    uint64_t seed_size, seed_off, seed_applied, seed_first;
    uint8_t seed_sha256[REPL_WIRE_SHA256_LEN];
};

struct repl_source {
    struct event_base *base;
    struct repl_source_options opt;
    struct conn_listener *listener;
    struct offload *offload;
    struct offload *seed_offload; /* snapshots and their chunks, apart from log chunks */
    struct event *tick;           /* heartbeats, hold expiry */
    struct repl_src_db *dbs;
    struct repl_src_peer *peers;
    bool freeing;
};

/* repl_source.c */
uint64_t repl__mono_us(void);
uint64_t repl__wall_us(void);
struct repl_src_db *repl__db_find(struct repl_source *src, const char *name, size_t len);
/* Sends ERROR code/text and closes. The peer may be freed: do not touch it afterwards. */
void repl__peer_fail(struct repl_src_peer *p, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Queues msg on the peer's connection; false (the peer is being closed) on failure. */
bool repl__peer_send(struct repl_src_peer *p, const struct repl_msg *msg);
/* Frees a peer once nothing refers to it any more. */
void repl__peer_maybe_free(struct repl_src_peer *p);

/* repl_source_ship.c */
/* Starts the next chunk job when there is something to send and room for it. */
void repl__ship_pump(struct repl_src_peer *p);
/* The HELLO position check: 0, or a refusal code with *reason_r (static or in buf). */
uint16_t repl__ship_check_start(struct repl_src_db *db, const struct repl_hello *h, char *buf,
                                size_t buf_len, const char **reason_r);

/* repl_source_seed.c */
/* A SEED_REQUEST passed the checks: answer, snapshot, stream. */
void repl__seed_accept(struct repl_src_peer *p, struct repl_src_db *db);
/* Sends the next SEED_DATA (or SEED_END) when there is room. */
void repl__seed_pump(struct repl_src_peer *p);

/* repl_source_floor.c */
/* The generation the copy on p needs now, from its HELLO and last ACK. */
uint64_t repl__floor_need(const struct repl_src_peer *p);
/* Recomputes and sets the database's floor; releases copies past the limits. */
void repl__floor_update(struct repl_src_db *db);
/* A copy of db departed (or was released when release is true): keep it held or not. */
void repl__floor_depart(struct repl_src_db *db, const struct repl_src_peer *p);
/* A copy reconnected: its held record goes. */
void repl__floor_forget(struct repl_src_db *db, const char *server);
void repl__floor_free_held(struct repl_src_db *db);

#endif

#ifndef TANDEM_REPL_REPL_COPY_INT_H
#define TANDEM_REPL_REPL_COPY_INT_H

/*
 * What the copy agent's files share (repl_copy.h): repl_copy.c owns the thread, the commands
 * from other threads, the state and the published status; repl_copy_link.c the connections
 * to the active (networks in order, back-off, probing the preferred network); repl_copy_ship.c
 * what arrives on them (HELLO_REPLY, LOG_DATA, POSITION) and what goes into the store.
 *
 * Everything here except the fields marked "lock" belongs to the agent's thread.
 */

#include "proto/repl/repl_wire.h"
#include "proto/repl/repl_zstd.h"
#include "repl/repl_copy.h"
#include "store/store_copy.h"

#include <event2/util.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

struct bufferevent;
struct event;
struct event_base;
struct offload;

/* When a generation was wholly replayed, for the truncation lag (repl_copy_ship.c). */
struct repl_copy_replay_mark {
    uint64_t generation, at_us;
};
#define REPL_COPY_REPLAY_MARKS 256

/* An idle session still ACKs this often: the protocol wants one at least every 5 s, and the
 * agent's tick runs every second, so once per tick without other ACKs keeps well inside it. */
#define REPL_COPY_ACK_IDLE_MS 1000u

/* While log streams in, replay (an LMDB transaction, checkpoints, truncation) runs at most this
 * often, covering everything durable since, instead of after every read: it runs on the thread
 * that reads the socket, and the active stops shipping while that thread is busy. A replay
 * that lags durability is safe: the active's floor follows the ACKed replayed position. A copy
 * that has not replayed for this long replays at once, so a lone commit is not delayed. */
#define REPL_COPY_REPLAY_EVERY_MS 100u

/* A sync job for less than this much log runs inline on the agent's thread instead of the
 * sync thread: two thread hand-offs (there and back through the loop) cost more latency than
 * the little reading such a batch could overlap, and sync mode's replies wait for exactly that
 * latency. A copy catching up (1 MiB chunks) always syncs on the sync thread. */
#define REPL_COPY_SYNC_INLINE (64u * 1024u)

/* One connection to the active: the session in use, or a probe of a better network. */
struct repl_copy_link {
    struct repl_copy *copy;
    struct bufferevent *bev;
    unsigned net;    /* index into conf.sources */
    bool probe;      /* a probe: adopted as the session once its handshake completes */
    bool connected;  /* TLS handshake done */
    bool hello_done; /* HELLO_REPLY OK received */
    bool seed;       /* a seed connection: SEED_REQUEST sent instead of HELLO */
    uint64_t serial; /* tells a link from a later one at the same address */
    uint32_t hello_id;
};

struct repl_copy {
    /* Set at start, read-only afterwards. */
    char *database, *dir, *server_name, *key;
    struct repl_copy_conf conf; /* the agent's thread changes only .suspended and its comment */
    /* This server's address on each source's network (family 0: none of that name). */
    struct tdm_config_addr local[REPL_COPY_MAX_SOURCES];
    struct store_options store_opt;
    SSL_CTX *ssl_ctx;
    uint32_t timeout_ms, retry_min_ms, retry_max_ms, probe_ms;
    pthread_t thread;
    int wake_fd; /* eventfd: other threads -> the agent's loop */

    /* lock: commands and the published status. */
    pthread_mutex_t lock;
    bool cmd_stop, cmd_suspend, cmd_resume, cmd_reseed;
    char *cmd_comment;
    struct repl_copy_status published;

    /* The agent's thread. */
    struct event_base *base;
    struct event *wake_ev, *retry_ev, *probe_ev, *tick_ev, *replay_ev;
    struct store_copy *store; /* NULL until the copy exists (a new copy before its seed) */
    struct repl_zstd *zstd;
    uint8_t *raw; /* REPL_WIRE_CHUNK_MAX bytes for decompressed chunks */
    /* A frame longer than a chunk arrives in `partial` chunks; inspection takes whole frames
     * only, so the pieces gather here (owned) until the chunk that ends on a frame boundary,
     * and go to store_copy_receive() together. Emptied at every new session (HELLO). */
    uint8_t *pending;
    size_t pending_len, pending_cap;
    uint64_t pending_generation, pending_offset; /* where pending[0] goes */
    struct repl_copy_link *session, *probe_link;
    unsigned next_net; /* the network the next connection attempt uses */
    uint32_t retry_ms; /* current back-off */
    unsigned used_net; /* network of the last session that reached HELLO_REPLY OK */
    bool used_any;     /* used_net is valid */
    bool dirty;        /* received since the last sync job started */
    uint64_t dirty_bytes; /* how much: a small batch is synced inline (REPL_COPY_SYNC_INLINE) */
    /* Durability off the receiving path: one store_copy_sync job at a time runs on the
     * syncer's thread (NULL: inline) while this thread goes on reading and writing; its end
     * moves the durable position and sends the ACK. A range that begins a generation waits,
     * unread in the session's input buffer (read_parked), until the sync of the generation
     * before it ended (store_copy_receive_ready()). */
    struct offload *syncer;
    struct store_copy_sync_job sync_job; /* the syncer's while sync_running */
    bool sync_running;
    /* Which opening of the store a job belongs to: a copy closed and opened again (reseed)
     * while its job ran must not take that job's position as its own. */
    uint64_t store_serial, sync_store_serial;
    bool read_parked;
    bool seeding;     /* created from nothing; Healthy once first caught up */
    bool seed_wanted; /* the next connection asks for a snapshot (repl_copy_seed.c) */
    uint64_t link_serial;
    int seed_fd; /* the snapshot being received; -1 when none */
    uint64_t seed_received, seed_total;
    uint8_t seed_guid[REPL_WIRE_GUID_LEN];
    crypto_hash_sha256_state seed_sha;
    uint32_t next_hello_id;
    char net_errors[1024];      /* why each network failed in this round, for Disconnected */
    struct repl_copy_status st; /* the thread's own copy; published on every change */
    uint64_t bytes_at_tick;
    struct repl_copy_replay_mark replay_marks[REPL_COPY_REPLAY_MARKS];
    size_t n_replay_marks;
    uint64_t last_ack_us;    /* when the last ACK was queued on the session */
    uint64_t last_replay_us; /* when replay last ran (REPL_COPY_REPLAY_EVERY_MS) */
};

/* ---- repl_copy.c ---- */

/* Enters state (an event when it changes; the message replaces the old one) and publishes. */
void repl_copy__set_state(struct repl_copy *c, enum repl_copy_state state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Refreshes the positions and queues from the store and publishes the status. */
void repl_copy__publish(struct repl_copy *c);
/* Milliseconds / microseconds of the wall clock. */
uint64_t repl_copy__now_us(void);

/* ---- repl_copy_link.c ---- */

/* Starts a connection attempt on c->next_net (the session), unless one is running. */
void repl_copy__connect(struct repl_copy *c);
/* Closes the session and any probe; no retry is scheduled. */
void repl_copy__disconnect(struct repl_copy *c);
/* Closes the session and connects again at once from the first network (a resynchronization:
 * the active ships again from the copy's position). */
void repl_copy__reconnect(struct repl_copy *c);
/* The session failed after HELLO_REPLY refused: close it and retry after the back-off (or
 * never, with retry false). */
void repl_copy__retry_later(struct repl_copy *c, bool retry);
/* The probe timer: on a network other than the first, tries the next better one; a probe
 * whose handshake completes becomes the session. */
void repl_copy__probe(struct repl_copy *c);
/* Acts on the whole messages in link's input buffer (its read callback; again after a sync
 * ended for a parked read). */
void repl_copy__read(struct repl_copy_link *link);
/* Queues msg on link. 0, or a negative code (the link is then closed by the caller). */
int repl_copy__send(struct repl_copy_link *link, const struct repl_msg *msg);

/* ---- repl_copy_ship.c ---- */

/* The HELLO for the copy's current position. */
void repl_copy__hello(struct repl_copy *c, struct repl_msg *msg_r, uint32_t request_id);
/* Acts on one message from the active on the session. Returns 0 to go on reading, 1 when the
 * message must wait in the buffer, undrained, until a sync ends (read_parked: the sync's end
 * reads the session again), or < 0 when the session was closed (stop reading its buffer). */
int repl_copy__on_message(struct repl_copy *c, struct repl_copy_link *link,
                          const struct repl_msg *msg);
/* After a batch of messages: starts the sync of what was received (its end ACKs and replays),
 * unless one is running (the next starts when it ends). */
void repl_copy__flush(struct repl_copy *c, struct repl_copy_link *link);
/* Replays what the limits allow now (a standby's lag passes with time) and ACKs on change, or
 * when no ACK went out for REPL_COPY_ACK_IDLE_MS (the source closes a silent copy). */
void repl_copy__replay_tick(struct repl_copy *c);
/* The deferred replay's timer (REPL_COPY_REPLAY_EVERY_MS): replay_tick, unless the copy is
 * Suspended or Failed. */
void repl_copy__replay_cb(evutil_socket_t fd, short what, void *arg);
/* Opens the copy if it exists (at thread start). 0, -ENOENT (not seeded yet) or an error
 * (the copy is then Failed). */
int repl_copy__open_store(struct repl_copy *c);

/* ---- repl_copy_seed.c ---- */

/* "<parent>/.<name><suffix>", beside the copy's directory (owned). */
char *repl_copy__sibling(const struct repl_copy *c, const char *suffix);
/* Removes path and everything under it; 0 when it is not there. 0 or -errno. */
int repl_copy__rm_tree(const char *path);
/* Writes copy.conf into the directory tmp, swaps it with the copy's directory in one
 * renameat2(RENAME_EXCHANGE), syncs the parent and deletes the old directory (now at tmp).
 * 0, or -errno with *why_r. */
int repl_copy__swap_in(struct repl_copy *c, const char *tmp, const char **why_r);
/* Removes what a crash left of a seed beside the copy (.<name>.seed.mdb, .<name>.seed): at
 * the agent's start, before anything can make them again. */
void repl_copy__seed_clean_leftovers(struct repl_copy *c);
/* The SEED_REQUEST for a seed connection on l (marks it one). */
void repl_copy__seed_request(struct repl_copy *c, struct repl_copy_link *l, struct repl_msg *msg,
                             uint32_t request_id);
/* A message on a seed connection: as repl_copy__on_message(). */
int repl_copy__seed_on_message(struct repl_copy *c, struct repl_copy_link *l,
                               const struct repl_msg *msg);
/* Every second: the seed connection's sign of life (ACK). */
void repl_copy__seed_tick(struct repl_copy *c);
/* Drops a snapshot partly received. */
void repl_copy__seed_abort(struct repl_copy *c);
/* tandemctl copy reseed: closes the copy, deletes its files and asks for a snapshot. */
void repl_copy__reseed_start(struct repl_copy *c);

#endif

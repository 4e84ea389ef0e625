#ifndef TANDEM_REPL_REPL_COPY_H
#define TANDEM_REPL_REPL_COPY_H

/*
 * A copy's agent: keeps one passive or standby copy of a database current by pulling the
 * active's log (DESIGN.md "Replication", docs/replication.md "Copies", the protocol in
 * docs/formats/replication.md).
 *
 * Each agent runs on a thread of its own with its own libevent loop: it connects over TLS to
 * the active's [listen replication] on the first network of its copy.conf that answers, says
 * where its log ends (HELLO), and then receives ranges of generation files (LOG_DATA), which it
 * inspects and writes (store_copy_receive), makes durable (store_copy_sync), replays
 * (store_copy_replay: a passive at once, a standby holding back 50 generations and its replay
 * lag) and acknowledges (ACK). Disk I/O blocks only this copy's own thread, never the core's
 * loop. The caller's thread talks to it only through the functions below.
 *
 * States (enum repl_copy_state; docs/replication.md has the table): every change emits one
 * event (4000-4007, include/tandem/events.h) whose subject is the database name.
 */

#include "repl/repl_copy_conf.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

struct repl_copy;

enum repl_copy_state {
    REPL_COPY_INITIALIZING,    /* started; not yet in touch with the active */
    REPL_COPY_HEALTHY,         /* connected, shipping and replaying */
    REPL_COPY_DISCONNECTED,    /* no network reaches the active; retrying with back-off */
    REPL_COPY_SERVICE_DOWN,    /* the active's server answers but does not serve the database */
    REPL_COPY_RESYNCHRONIZING, /* connected; the active is checking the copy's position */
    REPL_COPY_FAILED,          /* cannot go on without an operator (message says why) */
    REPL_COPY_SUSPENDED,       /* stopped by an operator (comment) */
    REPL_COPY_SEEDING,         /* a new copy receiving the log from the first generation */
};

/* "Initializing", "Healthy", ... (the words of tandemctl copy status); NULL when unknown. */
const char *repl_copy_state_name(enum repl_copy_state state);

struct repl_copy_options {
    const char *database; /* its name (the directory's under <datadir>/db/) */
    const char *dir;      /* <datadir>/db/<name> */
    const struct repl_copy_conf *conf;
    const struct store_options *store; /* io, map size, handler for the kind; borrowed */
    /* This server's own networks ([network] sections): a connection over a network of that
     * name leaves from this server's address on it, so the active sees who connects and
     * routing follows the network. Borrowed for the call; may be NULL. */
    const struct tdm_config_network *networks;
    unsigned n_networks;
    const char *server_name; /* this server: authenticates as server/<name> */
    const char *key;         /* its key (copied, wiped when freed) */
    const char *ca_file;     /* the active's certificate is checked against it */
    const char *cert_file;   /* this server's certificate and key, presented to the active */
    const char *key_file;
    uint32_t timeout_ms;   /* nothing heard from the active this long: reconnect; 0 = 10000 */
    uint32_t retry_min_ms; /* reconnect back-off: 0 = 500 ... */
    uint32_t retry_max_ms; /* ... doubling up to 0 = 10000 */
    uint32_t probe_ms;     /* on a network other than the first: try the better ones this
                            * often; 0 = 5000 */
};

/*
 * Starts the agent on its own thread (it opens the copy there). Every string of opt is copied.
 * Returns 0 with an owned *copy_r, or TDM_EINVAL / -ENOMEM / -errno with *error_r (allocated)
 * when the TLS files cannot be loaded or the thread cannot start.
 */
int repl_copy_start(const struct repl_copy_options *opt, struct repl_copy **copy_r, char **error_r);

/* Stops the thread (closing the connection and the copy cleanly) and frees; NULL allowed. */
void repl_copy_stop(struct repl_copy **copy);

struct repl_copy_status {
    enum repl_copy_state state;
    /* Disconnected or ServiceDown, and Healthy right before (through any run of those two):
     * the copy lost a source it was in touch with, which is what losing the active looks like.
     * Kept here, at the change of state, so a reader that samples the status (the cluster
     * agent) cannot miss a Healthy that lasted less than its period. */
    bool lost_source_while_healthy;
    char message[512]; /* Suspended: the comment; Failed/Disconnected/ServiceDown: why */
    uint16_t role;     /* REPL_ROLE_* */
    char network[TDM_CONFIG_NAME_MAX + 1]; /* in use; "" when not connected */
    char endpoint[64];                     /* in use, "addr:port"; "" when not connected */
    uint16_t mode;                         /* REPL_MODE_* the active ships in; 0 unknown */
    uint16_t compression; /* REPL_COMPRESSION_* this session asked for (copy.conf's, per network) */
    /* The active, from its last POSITION (0 before any). */
    uint64_t source_generation, source_durable_end, source_lsn, source_time_us;
    /* What the copy has: durable position, highest inspected (whole) generation, replay. */
    uint64_t copied_generation, copied_offset, copied_lsn;
    uint64_t inspected_generation;
    uint64_t replayed_generation, replayed_lsn;
    uint64_t last_copied_us, last_inspected_us, last_replayed_us; /* wall clock; 0 never */
    /* Copy queue: what the active has durable that the copy has not, in generations (counting
     * the one partly copied) and bytes. Replay queue: durable records not yet replayed, and
     * the generations holding them. */
    uint64_t copy_queue_generations, copy_queue_bytes;
    uint64_t replay_queue_generations, replay_queue_records;
    uint64_t bytes_received;
    uint64_t bytes_per_second; /* over the last second */
    /* Every LOG_DATA since the agent started: bytes on the wire (compressed when compressed)
     * and the log bytes they carried; their ratio is what compression saves. */
    uint64_t wire_bytes, wire_log_bytes;
    uint32_t inspection_failures; /* in a row */
};

/* Any thread: a snapshot of the agent's status. */
void repl_copy_get_status(struct repl_copy *copy, struct repl_copy_status *st_r);

/*
 * Any thread. Suspends copying and replay (the connection is closed) with comment (copied,
 * may be ""); a suspended copy stays so, with the new comment. Resume starts again
 * (Initializing) from a Suspended or Failed copy and does nothing otherwise. Both return at
 * once; the agent acts on its thread. 0 or -ENOMEM.
 */
int repl_copy_suspend(struct repl_copy *copy, const char *comment);
int repl_copy_resume(struct repl_copy *copy);

/*
 * Any thread: rebuilds the copy from a snapshot of the active's database (docs/replication.md,
 * "Reseed"), from any state: the agent closes the copy, deletes its files (keeping copy.conf,
 * without a suspension), asks the active for a snapshot, builds the copy from it and ships the
 * log on from there. Whether the copy may lose its files is the caller's decision. Returns at
 * once; 0.
 */
int repl_copy_reseed(struct repl_copy *copy);

#endif

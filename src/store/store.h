#ifndef TANDEM_STORE_STORE_H
#define TANDEM_STORE_STORE_H

/*
 * One mailbox database: a transaction log of fixed-size generations plus an LMDB environment.
 *
 *   <dir>/log/<G>.log   generations (format: tandem/log_format.h)
 *   <dir>/store/        LMDB environment (data.mdb)
 *
 * Write path: store_commit*() assigns the next LSN and queues the encoded record; the log
 * thread writes queued records and makes them durable with one fdatasync per batch (group
 * commit); the apply thread applies each durable batch to LMDB in one write transaction that
 * also stores the applied LSN, then calls every committer back. LMDB never syncs on its own;
 * a checkpoint (housekeeping thread) syncs it, after which logs wholly below the checkpoint
 * may be truncated (never below the replication floor).
 *
 * Thread-safety: every function may be called from any thread, except store_close(), which
 * must not race with other calls on the same store.
 */

#include "store/io_ops.h"
#include "store/mail.h"
#include "tandem/log_format.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/*
 * Record types beyond the mail model (the directory, later others) plug in here, so they are
 * logged, replayed, replicated and verified like mail without the store knowing them. The
 * store calls:
 *
 *   handles(type)   true for every type the handler owns (a range in tandem/log_format.h).
 *                   Must not claim NOOP, END or a mail type: those are the store's.
 *   validate(...)   at store_commit_async(): 0 if the payload decodes strictly (the same check
 *                   apply makes), so a record in the log always replays; else TDM_EINVAL (or
 *                   -ENOMEM) with *error_r a static or thread-local string. Any thread.
 *   open(txn, &st)  once per LMDB environment, in a write transaction at mount (creating its
 *                   sub-databases) or in a read-only one (store_verify). In a read-only
 *                   transaction where its sub-databases were never created it must still
 *                   succeed, reading as empty. *state_r is owned by the store until close().
 *                   It may open at most STORE_HANDLER_MAX_DBIS sub-databases.
 *   close(state)    frees state (NULL allowed).
 *   apply(...)      on the apply thread or during recovery, inside the store's write
 *                   transaction. Deterministic: no clock, no randomness, nothing outside the
 *                   payload and the database. A refusal (conflict, not found) is 0 with
 *                   result_r->status set and the transaction unchanged by this record; a
 *                   negative return is a storage failure (the store goes Failed). A payload
 *                   that does not decode returns TDM_ECORRUPT.
 *   digest(...)     SHA-256 (or any 32-byte fingerprint) of everything it stores, equal on
 *                   two environments exactly when they hold the same data; empty when its
 *                   sub-databases are absent.
 *
 * The handler struct is borrowed: it must outlive every store and verify that uses it.
 */
#define STORE_HANDLER_MAX_DBIS 8
struct store_record_handler {
    bool (*handles)(uint16_t type);
    int (*validate)(uint16_t type, const uint8_t *payload, size_t len, const char **error_r);
    int (*open)(MDB_txn *txn, void **state_r);
    void (*close)(void *state);
    int (*apply)(void *state, MDB_txn *txn, uint16_t type, const uint8_t *payload, size_t len,
                 struct mail_result *result_r);
    int (*digest)(void *state, MDB_txn *txn, uint8_t out[32]);
};

#define STORE_KIND_MAX 32      /* bytes in a database kind name */
#define STORE_KIND_MAIL "mail" /* the default kind, needing no handler */

/* True when kind is a valid kind name: [a-z0-9-]{1,STORE_KIND_MAX}. */
bool store_kind_valid(const char *kind);

struct store_options {
    uint32_t generation_size;      /* bytes per generation file; default 1 MiB */
    uint32_t idle_close_ms;        /* close a partly filled generation idle this long; 90 s */
    uint64_t checkpoint_bytes;     /* checkpoint after this much log; default 8 MiB */
    uint32_t checkpoint_ms;        /* ... or this long after the last; default 30 s */
    uint64_t reserve_bytes;        /* disk reserve kept for a clean shutdown; default 4 MiB */
    uint64_t map_size;             /* LMDB map size; default 64 GiB (sparse) */
    uint32_t group_commit_wait_us; /* longest wait for commits still in flight to join a batch;
                                    * default 2000; 0 = never wait (see store.c) */
    const struct io_ops *io;       /* default io_ops_posix; borrowed, must outlive the store */
    /* Record types beyond mail (see above); NULL = mail only. Borrowed. A database holding
     * records of a handler's types must always be opened with that handler: without it,
     * recovery refuses them as corrupt. */
    const struct store_record_handler *handler;
    /* The database's kind, recorded at store_create() (ignored by store_open()): which
     * handler its records need, so tools and tandemd can pick it (see store_read_kind()).
     * [a-z0-9-]{1,STORE_KIND_MAX}; NULL = STORE_KIND_MAIL. Borrowed for the call. */
    const char *kind;
    /* At store_open(): when the log's epoch is lower than this, the current generation is
     * closed and the next one begun with min_epoch, so that a copy activated under a new
     * epoch never writes into the old one. 0 = keep the log's epoch. */
    uint64_t min_epoch;
    /* Crash tests: called on the housekeeping thread after each successful checkpoint sync,
     * with the LSN it made durable in LMDB. */
    void (*checkpoint_hook)(void *ctx, uint64_t checkpoint_lsn);
    void *hook_ctx;
};

/* Fills o with the defaults. */
void store_options_init(struct store_options *o);

/*
 * Creates a new, empty database in dir (created if missing; must be empty) with a fresh GUID
 * and generation 1. Returns 0, TDM_EEXIST (dir holds a database or other files), or -errno,
 * with *error_r (static or thread-local string) saying what to do.
 */
int store_create(const char *dir, const struct store_options *opt, const char **error_r);

/*
 * Opens the database in dir, running recovery: a database whose kind is not "mail" needs a
 * handler (opt->handler), else TDM_EINVAL with *error_r naming the kind; then replays every record
 * after the LMDB applied LSN, cuts a torn tail of the current generation (event), refuses to mount
 * on a bad checksum in a closed generation or a missing generation (event naming file and offset),
 * marks the database dirty. Returns 0 with *store_r, or TDM_EFOREIGN / TDM_ECORRUPT / TDM_EGAP /
 * -errno with *error_r (valid until the next store call on this thread).
 */
int store_open(const char *dir, const struct store_options *opt, struct store **store_r,
               const char **error_r);

/*
 * Waits for queued commits, checkpoints, closes the current generation cleanly, marks the
 * database clean (unless it failed) and frees everything. Returns the first error seen, if any.
 * *store is set to NULL.
 */
int store_close(struct store **store);

/* Called once a commit is durable and applied (status 0), or failed (negative status: the
 * record may or may not be durable; the store is Failed). On the apply thread: keep it short.
 * result is borrowed for the call. */
typedef void store_commit_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result);

/*
 * Queues one record (the payload is copied). Returns 0 (cb will be called exactly once) or
 * an error (cb is never called): TDM_EFAILED, TDM_ENOSPACE, TDM_ECLOSED, TDM_ELIMIT, or
 * TDM_EINVAL for a type neither the mail model nor the handler owns, or a payload that does
 * not decode.
 */
int store_commit_async(struct store *store, uint16_t type, const void *payload, size_t len,
                       store_commit_cb *cb, void *ctx);

/* Blocking commit: returns when durable and applied. result_r and lsn_r may be NULL. */
int store_commit(struct store *store, uint16_t type, const void *payload, size_t len,
                 uint64_t *lsn_r, struct mail_result *result_r);

/* Encodes op with mail_op_encode() and commits it (blocking). */
int store_commit_op(struct store *store, const struct mail_op *op, uint64_t *lsn_r,
                    struct mail_result *result_r, const char **error_r);

/* Syncs LMDB now and records the checkpoint; then truncates what may go. */
int store_checkpoint(struct store *store);

/*
 * Sets the lowest generation that replication still needs: generations at or above it are
 * never truncated. UINT64_MAX (the default) means no copy constrains truncation.
 */
void store_set_truncation_floor(struct store *store, uint64_t generation);

/*
 * Replication, the active side: a copy's log is byte-identical to the active's (see
 * store_copy.h), so the source ships byte ranges of generation files that end on frame
 * boundaries. These tell it what is durable and let it read the files.
 */
struct store_log_extent {
    uint64_t generation;
    uint64_t durable_end; /* bytes [0, durable_end) of the file are durable and final: header,
                           * BEGIN, whole frames (END included once closed) */
    uint64_t file_size;   /* the size this generation was begun with */
    uint64_t epoch, first_lsn;
    uint64_t last_lsn; /* of the last durable data record (first_lsn - 1 if none) */
    bool closed;       /* its END record is durable */
};

/* For generation in [lowest present, current]: 0 with *ext_r; TDM_ENOTFOUND below the lowest
 * (truncated) or above the highest begun. Any thread. */
int store_log_extent(struct store *store, uint64_t generation, struct store_log_extent *ext_r);

/* Opens that generation file read-only (O_CLOEXEC); the caller owns the fd. Bytes below
 * durable_end never change while generation >= the truncation floor (set the floor first).
 * Returns 0, TDM_ENOTFOUND as store_log_extent(), or -errno. */
int store_log_open_generation(struct store *store, uint64_t generation, int *fd_r);

/* Called on a log worker after every fdatasync of the current generation (a batch of
 * records, or its END at a roll), with the new durable position: bytes [0, durable_end) of
 * generation are durable, and durable_lsn is the last durable data record. Calls come one at a
 * time and in log order (positions never go back), from either of the store's log workers.
 * Keep it short (the core writes to an eventfd), and it holds up the next batch's completion;
 * it may call store_log_extent(), never store_set_durable_hook() (deadlock). */
typedef void store_durable_cb(void *ctx, uint64_t generation, uint64_t durable_end,
                              uint64_t durable_lsn);
/* Sets (or with cb NULL clears) the hook. Any thread; after it returns, the old hook is no
 * longer called. */
void store_set_durable_hook(struct store *store, store_durable_cb *cb, void *ctx);

/*
 * A consistent snapshot of the database for seeding a copy (reseed): writes a compacted copy of
 * the LMDB environment (mdb_env_copyfd2, MDB_CP_COMPACT: a data.mdb file) to fd, from one read
 * transaction, while commits go on. *applied_lsn_r is a lower bound of the applied LSN the
 * snapshot holds (read just before it): a copy made from it (store_copy_create_from_snapshot())
 * needs the log from the generation holding *applied_lsn_r + 1, so hold the truncation floor at
 * or below the lowest generation before calling, and move it up to that generation after.
 * Returns 0, or a negative LMDB / -errno error with *error_r. Any thread; fd is borrowed.
 */
int store_snapshot(struct store *store, int fd, uint64_t *applied_lsn_r, const char **error_r);

/* Closes the current generation now, as the idle timer would, and starts the next one; a
 * generation without records is left open. Returns when done. */
int store_roll(struct store *store);

/*
 * The same roll without waiting for it (for an event loop, e.g. the cluster agent at a
 * switchover): asks the log worker to close the current generation at its next batch (after
 * every record durable by then), exactly as the idle close does: END made durable, the
 * durable hook called, so the replication source ships it like any closed generation, in
 * file mode too. Nothing more is asked while a roll is pending, so calling it again until
 * the generation is closed costs nothing. A generation without records is left open.
 * Returns 0, TDM_EFAILED or TDM_ECLOSED. See store_log_extent() for when it is done.
 */
int store_roll_request(struct store *store);

/* Read-only access to the mail model: a read transaction on the store's LMDB environment.
 * End it with mdb_txn_abort(). */
int store_read_begin(struct store *store, MDB_txn **txn_r);
const struct mail_dbis *store_mail_dbis(const struct store *store);
/* The handler's state (as its open() returned it), for its read functions; NULL without a
 * handler. Lives until store_close(). */
void *store_handler_state(const struct store *store);

struct store_status {
    uint8_t guid[TDM_LOG_GUID_LEN];
    uint64_t epoch;
    uint64_t last_lsn;       /* highest LSN assigned */
    uint64_t durable_lsn;    /* highest LSN made durable in the log */
    uint64_t applied_lsn;    /* highest LSN applied to LMDB */
    uint64_t checkpoint_lsn; /* highest LSN durable in LMDB */
    uint64_t current_generation;
    uint64_t lowest_generation; /* oldest generation file present */
    uint64_t needed_low;        /* generations [needed_low, current] are needed by recovery */
    uint64_t truncation_floor;
    uint64_t commits;    /* records committed since open */
    uint64_t syncs;      /* log fdatasync calls since open */
    uint64_t solo_syncs; /* of them, syncs no other write overlapped: a batch's that kept the
                          * writer's turn (it closed a generation or carried a roll) and the
                          * END sync of a roll in the middle of a batch */
    /* Generations begun larger than generation_size because the batches were large (at
     * most 8 times it), since open. */
    uint64_t large_generations;
    bool failed;
    bool disk_reserve;             /* reserve mode: new commits refused */
    char kind[STORE_KIND_MAX + 1]; /* "mail" for databases created before kinds existed */
};

void store_get_status(struct store *store, struct store_status *status_r);

#endif

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
#include <stdint.h>

struct store;

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
 * Opens the database in dir, running recovery: replays every record after the LMDB applied
 * LSN, cuts a torn tail of the current generation (event), refuses to mount on a bad checksum
 * in a closed generation or a missing generation (event naming file and offset), marks the
 * database dirty. Returns 0 with *store_r, or TDM_EFOREIGN / TDM_ECORRUPT / TDM_EGAP / -errno
 * with *error_r (valid until the next store call on this thread).
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
 * an error (cb is never called): TDM_EFAILED, TDM_ENOSPACE, TDM_ECLOSED, TDM_ELIMIT.
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

/* Closes the current generation now, as the idle timer would, and starts the next one; a
 * generation without records is left open. Returns when done. */
int store_roll(struct store *store);

/* Read-only access to the mail model: a read transaction on the store's LMDB environment.
 * End it with mdb_txn_abort(). */
int store_read_begin(struct store *store, MDB_txn **txn_r);
const struct mail_dbis *store_mail_dbis(const struct store *store);

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
    uint64_t commits; /* records committed since open */
    uint64_t syncs;   /* log fdatasync calls since open */
    bool failed;
    bool disk_reserve; /* reserve mode: new commits refused */
};

void store_get_status(struct store *store, struct store_status *status_r);

#endif

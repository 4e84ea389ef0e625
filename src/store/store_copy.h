#ifndef TANDEM_STORE_STORE_COPY_H
#define TANDEM_STORE_STORE_COPY_H

/*
 * A passive or standby copy of a database, the store side of replication.
 *
 * A copy's directory looks like the active's (<dir>/log/<G>.log, <dir>/store/), and its
 * generation files are byte-identical to the active's up to the end of their records: same
 * names, same file size, header block, BEGIN, frames, END. The active ships byte ranges of its
 * generation files that end on frame boundaries; the copy creates each generation file fresh
 * (zero-filled to the size its BEGIN names) and writes each range at the same offset, so the
 * bytes after its records are always zero. A copy never recycles files.
 *
 * Every range is inspected before it is written (store_copy_receive()); replay applies durable
 * records to the copy's own LMDB exactly as recovery does. Activation: store_copy_close(), then
 * store_open() on the same directory (with store_options.min_epoch set to the new epoch).
 *
 * Thread-safety: one thread calls every function on one copy, except store_copy_get_status(),
 * which any thread may call.
 */

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_copy;

/* The marker file of a copy: <datadir>/db/<name>/copy.conf (its contents: repl_copy_conf.h). */
#define STORE_COPY_MARKER "copy.conf"

/*
 * Whether the database directory dbdir is a copy (holds STORE_COPY_MARKER): a copy is never
 * mounted as active, served to clients or written through the core. Returns 1 (a copy), 0 (not
 * one), or -errno when it cannot tell; callers treat that as a copy, the side that never
 * serves or writes a database that may not be the active one.
 */
int store_is_copy(const char *dbdir);

/* Where the next shipped byte goes. offset 0: generation is not started here yet (the next
 * range must begin it with its header block). lsn: the last data record received; epoch: the
 * epoch of the last generation received (0 before any). */
struct store_copy_position {
    uint64_t generation, offset, lsn, epoch;
};

/*
 * Creates an empty copy in dir (created if missing; must be empty): log/ without generations,
 * store/ with the meta of database guid and kind, applied LSN 0, and the generation the copy
 * expects first (1 for a database shipped from its start). Returns 0, TDM_EEXIST, TDM_EINVAL
 * (kind not a kind name, first_generation 0) or -errno, with *error_r (thread-local string).
 */
int store_copy_create(const char *dir, const uint8_t guid[TDM_LOG_GUID_LEN], const char *kind,
                      uint64_t first_generation, const char **error_r);

/*
 * Creates a copy in dir (created if missing; must be empty) from a snapshot of the active's
 * LMDB (store_snapshot(), written to snapshot_path), which is moved into place: snapshot_path
 * must be on dir's file system. The snapshot must be of database guid (else TDM_EFOREIGN).
 * first_generation is the generation holding the snapshot's applied LSN + 1 on the active (the
 * copy's log starts there, with no generation yet). Returns 0, TDM_EEXIST, TDM_EFOREIGN,
 * TDM_EINVAL, or a negative LMDB / -errno error, with *error_r.
 */
int store_copy_create_from_snapshot(const char *dir, const char *snapshot_path,
                                    const uint8_t guid[TDM_LOG_GUID_LEN],
                                    uint64_t first_generation, const char **error_r);

/*
 * Opens a copy, recovering it: every closed generation must be intact (never touched; damage
 * is TDM_ECORRUPT), a torn tail of the last generation is cut at its last valid frame, and a
 * last generation whose header block or BEGIN never became durable is removed (it is shipped
 * again), as are generation files still under their temporary name (store_copy_receive()).
 * A directory last mounted as active is accepted (its spare files above the current
 * generation are removed). opt supplies io, map_size and the record handler (required for a
 * kind other than mail, as for store_open()); NULL = defaults. Returns 0 with *copy_r, or
 * TDM_EFOREIGN / TDM_ECORRUPT / TDM_EGAP / TDM_EINVAL / -errno with *error_r.
 */
int store_copy_open(const char *dir, const struct store_options *opt, struct store_copy **copy_r,
                    const char **error_r);

/* Syncs what was received, checkpoints LMDB, frees everything, sets *copy to NULL. Returns the
 * first error seen (the copy's sticky failure included). */
int store_copy_close(struct store_copy **copy);

void store_copy_get_position(struct store_copy *copy, struct store_copy_position *pos_r);

/*
 * Inspects, then writes (without syncing) len bytes shipped for generation at offset. A
 * generation begun while the one before is not durable yet is written under a temporary name,
 * which the next sync renames into place once it and every generation before it are durable
 * (store_copy.c, top comment): so every named generation below the top one is closed and
 * durable, and receiving never waits for the disk. They must continue exactly at the position,
 * or begin generation + 1 at offset 0 once the current one is closed (or begin the copy's first
 * generation). Whole frames only: offset 0 starts with the TDM_LOG_HEADER_SIZE-byte header
 * block, then BEGIN.
 *
 * Inspection: header GUID = the copy's; BEGIN names this generation, its file size is sane,
 * its epoch is never lower than the previous generation's; LSNs continue without a gap across
 * generations; every frame's CRC and the generation's epoch; at END the record count and
 * generation checksum; the chain (BEGIN's previous checksum = the previous END's checksum).
 *
 * Returns 0 (position advanced); TDM_EINVAL when not at the position, or for bytes after END;
 * -EBUSY for a range beginning a generation while STORE_COPY_MAX_UNNAMED generations wait for
 * a sync to name them (store_copy_receive_ready(); nothing changes);
 * TDM_ECORRUPT with *error_r naming generation, offset and the failed check (nothing from this
 * call is kept, the position is unchanged); -errno for an I/O error, which is sticky: the copy
 * is Failed and refuses everything after it (TDM_EFAILED).
 */
int store_copy_receive(struct store_copy *copy, uint64_t generation, uint64_t offset,
                       const uint8_t *bytes, size_t len, const char **error_r);

/* Makes everything received durable: fdatasync of the files written, the renames of temporary
 * generation files, and a sync of the log directory for new or renamed files (the steps below,
 * inline). Returns 0 with *durable_r (may be NULL), -EBUSY while a sync job runs, or -errno
 * (sticky). */
int store_copy_sync(struct store_copy *copy, struct store_copy_position *durable_r);

/*
 * The same sync in three steps, so that the fdatasync runs on another thread while the copy's
 * thread goes on receiving into the same generation (the copy agent: receiving never waits for
 * the disk). store_copy_sync_start() notes what to sync (by path: the job does not depend on
 * the copy staying open): every generation file written since the last start, the temporary
 * ones to rename after, and the position it makes durable: everything received so far, no
 * more. store_copy_sync_run() fdatasyncs the files oldest first, renames the temporary ones
 * in order, then syncs the directory; any thread may call it, and it touches only the job, the
 * files and the directory. store_copy_sync_end() (the copy's thread again) moves the durable
 * position to the job's and frees the job. Bytes received after the start are not counted
 * durable by this job even when its fdatasync happened to cover them: a durable position read
 * after the end (an ACK) never claims more than was synced.
 *
 * One job at a time. While it runs, store_copy_sync() is refused with -EBUSY (nothing
 * changes); ranges go on being received, a new generation under a temporary name, for the
 * next job. Replay and truncation may run meanwhile (they use the durable position and older
 * files). A copy closed while its job runs never sees the job again: free it with
 * store_copy_sync_job_free() once it has run (the generations received after its start stay
 * temporary, and the next store_copy_open() removes them). A job finds the log directory
 * replaced (another copy swapped in by a reseed) changes nothing and fails with -ESTALE. A job
 * also unlinks the files store_copy_truncate() dropped (after its renames, lowest first).
 *
 * store_copy_sync_start() returns 1 (a job to run), 0 (nothing to sync: the durable position
 * is already the received one, *job unused), -EBUSY, -ENOMEM or -errno (sticky).
 * store_copy_sync_end() returns 0 with *durable_r (may be NULL), or the job's -errno (sticky).
 */
struct store_copy_rename {
    char *from, *to; /* owned: a temporary generation file and its name */
};
struct store_copy_sync_job {
    const struct io_ops *io;
    char **files; /* owned: the generation files to fdatasync, oldest first */
    size_t n_files;
    struct store_copy_rename *renames; /* owned, in generation order */
    size_t n_renames;
    char **unlinks; /* owned: truncated generation files to unlink, lowest first */
    size_t n_unlinks;
    char *dir;                 /* owned: the log directory */
    bool sync_dir;             /* a generation was created, renamed or unlinked: sync dir */
    uint64_t dir_dev, dir_ino; /* dir's identity at the start (checked before any change) */
    struct store_copy_position pos;
    int ret; /* store_copy_sync_run()'s result */
};
int store_copy_sync_start(struct store_copy *copy, struct store_copy_sync_job *job);
void store_copy_sync_run(struct store_copy_sync_job *job);
int store_copy_sync_end(struct store_copy *copy, struct store_copy_sync_job *job,
                        struct store_copy_position *durable_r);
void store_copy_sync_job_free(struct store_copy_sync_job *job);

/* How many generations may wait under a temporary name for a sync (bounds what one sync job
 * covers, and what a crash can lose beyond the last ACK). */
#define STORE_COPY_MAX_UNNAMED 8

/*
 * Whether store_copy_receive() of a range at offset (0: beginning the next generation) would
 * not be refused: false when it begins a generation while STORE_COPY_MAX_UNNAMED generations
 * already wait for a sync to name them. The caller then syncs (a job) and offers the range
 * again once it ended.
 */
bool store_copy_receive_ready(struct store_copy *copy, uint64_t offset);

/*
 * Limits for one store_copy_replay() call; 0 = no limit for each. A standby holds back
 * hold_generations generations (replays none of the last hold_generations generations
 * received) and replays only generations begun before created_before_us (us since the Unix
 * epoch, the BEGIN's creation time: now - replay lag); max_lsn caps the LSN.
 */
struct store_copy_replay_limit {
    uint64_t max_lsn;
    uint32_t hold_generations;
    uint64_t created_before_us;
};

/*
 * Applies durable records (up to the last store_copy_sync()) to LMDB as recovery does,
 * idempotent by LSN, one write transaction per batch storing the applied LSN; checkpoints
 * (syncs LMDB) as the active does, every checkpoint_bytes of log. limit may be NULL. Returns
 * 0 with *replayed_lsn_r (may be NULL) = the applied LSN, TDM_ECORRUPT for a record that does
 * not apply (the copy is Failed), or -errno (sticky).
 */
int store_copy_replay(struct store_copy *copy, const struct store_copy_replay_limit *limit,
                      uint64_t *replayed_lsn_r);

struct store_copy_status {
    uint8_t guid[TDM_LOG_GUID_LEN];
    char kind[STORE_KIND_MAX + 1];
    uint64_t epoch;
    struct store_copy_position received, durable;
    uint64_t inspected_generation; /* the highest generation received whole (closed) */
    uint64_t replayed_lsn;
    uint64_t replayed_generation;                /* the highest generation wholly replayed */
    uint64_t lowest_generation;                  /* oldest generation file present (0: none) */
    uint64_t checkpoint_lsn;                     /* applied LSN durable in LMDB */
    uint64_t last_received_us, last_replayed_us; /* wall clock, 0 = never since open */
    bool failed;
    char failure[256];
};

/* Any thread. */
void store_copy_get_status(struct store_copy *copy, struct store_copy_status *st_r);

/*
 * Drops the generations below below_generation that are replayed and checkpointed (whole
 * generations whose last LSN is at or below the checkpoint LSN); never the current one. The
 * generation the copy continues with is recorded durably first (an LMDB sync); the files are
 * unlinked by the next sync (store_copy_sync() or a job: store_copy_unlinks_pending() says
 * one is due even with nothing received). Returns 0 or -errno (sticky).
 */
int store_copy_truncate(struct store_copy *copy, uint64_t below_generation);

/* Whether truncated generation files wait for a sync to unlink them. */
bool store_copy_unlinks_pending(struct store_copy *copy);

#endif

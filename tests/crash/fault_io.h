#ifndef TANDEM_TESTS_CRASH_FAULT_IO_H
#define TANDEM_TESTS_CRASH_FAULT_IO_H

/*
 * An io_ops layer that models a disk with a volatile write cache, for crash tests.
 *
 * Every write goes to the real file at once (so reads see it, as they would through the page
 * cache) and is also remembered as "unsynced" for the file. fdatasync makes the file's unsynced
 * changes durable; sync_dir makes the directory's unsynced entry changes (creations, unlinks,
 * renames) durable. The durable image of every file the layer has touched is kept in memory
 * (test files are small).
 *
 * At the chosen sync call (fdatasync or sync_dir number crash_at_sync, counted from 1) the
 * layer "crashes": that call fails with -EIO without making anything durable, and so does every
 * later call. After the store is closed, fault_io_apply_crash() rewrites what is on disk into a
 * state a real power loss could have left:
 *
 *   data   each file gets its durable content, then each unsynced change in the order it was
 *          made is dropped, kept, or torn. A torn write keeps a prefix of its 512-byte sectors,
 *          a random subset of them, or (rarely, to model a disk without atomic sectors) a byte
 *          prefix. Size changes (allocate, O_TRUNC) are kept or dropped whole.
 *   names  per directory, a prefix of the unsynced entry changes survives, in the order they
 *          were made (what a journaling file system gives; arbitrary subsets are not modelled,
 *          see docs in fault_io.c). So a file created but whose directory was never synced may
 *          vanish, and an unlinked file may come back with its durable content.
 *
 * Every choice comes from a PRNG seeded with the seed given at creation, so a schedule replays.
 * Thread-safe: one mutex serialises every call.
 */

#include "store/io_ops.h"

#include <stdbool.h>
#include <stdint.h>

struct fault_io;

/* What the crash did, for test statistics. */
struct fault_io_stats {
    uint64_t syncs;          /* sync calls seen (including the one that crashed) */
    unsigned crash_kind;     /* enum fault_io_sync_kind of the call that crashed */
    uint64_t pending_writes; /* unsynced writes at the crash */
    uint64_t dropped, kept, torn;
    uint64_t files_vanished; /* created, not durable in the directory, gone */
    uint64_t files_restored; /* unlinked, not durable in the directory, back */
    uint64_t lagged;         /* fdatasyncs held by fault_io_set_sync_lag() */
    uint64_t overlapped;     /* of those, how many a write to the same file overtook */
    bool crash_overlapped;   /* the crashing sync was one of them */
};

/* What a sync call was doing, guessed from what preceded it (for coverage statistics). */
enum fault_io_sync_kind {
    FAULT_IO_SYNC_NONE = 0,   /* no crash happened */
    FAULT_IO_SYNC_DATA,       /* fdatasync after ordinary writes (group commit) */
    FAULT_IO_SYNC_HEADER,     /* fdatasync after a write at offset 0 (a header, before log
                               * format 3 at the start of a generation) */
    FAULT_IO_SYNC_END,        /* fdatasync after a short write at the end (closing one) */
    FAULT_IO_SYNC_BEGIN,      /* fdatasync after a write of BEGIN and the first records
                               * (starting a generation, log format 3) */
    FAULT_IO_SYNC_PREALLOC,   /* fdatasync of a file just created and allocated */
    FAULT_IO_SYNC_DIR_CREATE, /* sync_dir with a pending creation */
    FAULT_IO_SYNC_DIR_UNLINK, /* sync_dir with pending unlinks only (truncation) */
    FAULT_IO_SYNC_DIR_RENAME, /* sync_dir with pending renames (recycling generations) */
    FAULT_IO_SYNC_OTHER,
    FAULT_IO_SYNC_KINDS
};
const char *fault_io_sync_kind_name(unsigned kind);

/*
 * Creates the layer. crash_at_sync 0 means never crash on its own (fault_io_crash_now() still
 * works). Returns NULL when out of memory.
 */
struct fault_io *fault_io_new(uint64_t crash_at_sync, uint64_t seed);
/* Frees the layer and its images (the files on disk stay). *f is set to NULL. */
void fault_io_free(struct fault_io **f);

/* The table to put in store_options.io; borrowed, valid until fault_io_free(). */
const struct io_ops *fault_io_ops(struct fault_io *f);

/*
 * Makes one fdatasync in one_in (0: none; chosen by a PRNG of the layer's seed) wait, before
 * it takes effect, for up to max_us or until another write to the same file arrives. Such a
 * write is then covered by that sync, and a crash at that sync loses it: the interleaving of
 * a log worker writing the next batch while another worker's sync is under way, which the
 * layer's one mutex would otherwise rarely let a test see (store_log.c).
 */
void fault_io_set_sync_lag(struct fault_io *f, unsigned one_in, unsigned max_us);

/* Moves the crash point to sync number n (absolute, from 1); 0 disarms it. */
void fault_io_set_crash_at(struct fault_io *f, uint64_t n);
/* Sync calls seen so far. */
uint64_t fault_io_syncs(struct fault_io *f);
/* Crashes now, as if the next sync had been the crash point. Idempotent. */
void fault_io_crash_now(struct fault_io *f);
bool fault_io_crashed(struct fault_io *f);

/*
 * Rewrites every file the layer touched to its post-crash state (see above). Call it after the
 * store is closed (no descriptor of the layer may still be open), and only once; the layer
 * crashes first if it had not. Returns 0 or -errno; stats_r may be NULL.
 */
int fault_io_apply_crash(struct fault_io *f, struct fault_io_stats *stats_r);

#endif

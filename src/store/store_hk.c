/*
 * The housekeeping thread: keeps STORE_PREALLOC_AHEAD generations preallocated, checkpoints
 * LMDB (every checkpoint_bytes of log or checkpoint_ms), and truncates generations wholly
 * below the checkpoint and the replication floor.
 */
#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int
store__checkpoint(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t target = s->applied_lsn;
    int failed = s->failed;
    pthread_mutex_unlock(&s->lock);
    if (failed)
        return TDM_EFAILED;

    int rc = mdb_env_sync(s->env, 1);
    pthread_mutex_lock(&s->lock);
    if (rc != 0) {
        int err = store__lmdb_err(rc);
        if (!s->failed) {
            event_emit(TDM_EV_STORE_WRITE_FAILED, s->name,
                       "syncing %s at a checkpoint failed: %s; the database is Failed", s->lmdb_dir,
                       mdb_strerror(rc));
            s->failed = err;
        }
        pthread_cond_broadcast(&s->progress);
        pthread_mutex_unlock(&s->lock);
        return err;
    }
    if (target > s->checkpoint_lsn)
        s->checkpoint_lsn = target;
    s->bytes_since_ckpt = 0;
    s->last_ckpt_ms = store__now_ms();
    pthread_mutex_unlock(&s->lock);
    if (s->opt.checkpoint_hook)
        s->opt.checkpoint_hook(s->opt.hook_ctx, target);
    return 0;
}

static int truncate_locked(struct store *s);

/* Deletes or recycles generations wholly below the checkpoint and the replication floor. */
int
store__truncate(struct store *s)
{
    /* One truncation at a time (store_checkpoint() and the housekeeping thread may race), and
     * never beside a preallocation: both name the next spare generation. */
    pthread_mutex_lock(&s->truncate_lock);
    int ret = truncate_locked(s);
    pthread_mutex_unlock(&s->truncate_lock);
    return ret;
}

/*
 * How many spare generations may wait above the current one. Recycling keeps the files that
 * one checkpoint interval truncates (8 at the defaults), so that in a steady state no
 * generation file is ever created or zero-filled; the bound keeps the disk that spares hold
 * at 64 MiB or STORE_PREALLOC_AHEAD generations, whichever is more, counted at the size
 * generations are begun with now (gen_want, up to 8 times generation_size for large batches).
 */
static uint64_t
spare_max(const struct store *s, uint64_t gen_want)
{
    uint64_t size = gen_want > s->opt.generation_size ? gen_want : s->opt.generation_size;
    uint64_t n = (64u << 20) / size;
    if (n > STORE_RECYCLE_MAX)
        n = STORE_RECYCLE_MAX;
    return n > STORE_PREALLOC_AHEAD ? n : STORE_PREALLOC_AHEAD;
}

/*
 * True when generation file path is worth recycling: at least the store's generation size and
 * at most the size generations are begun with now (gen_want: larger while batches are large,
 * store_gen.c), so that a file made for one large record, or for batches larger than today's,
 * is deleted rather than kept (a spare is begun whole); and a version 3 header of this
 * database, which a spare must have before the log thread may begin it without a sync of its
 * own (a generation written before version 3 is deleted, and its place filled by a new file).
 */
static bool
recyclable(struct store *s, const char *path, uint64_t gen_want)
{
    uint64_t size = 0;
    uint64_t max = gen_want > s->opt.generation_size ? gen_want : s->opt.generation_size;
    return store__gen_header_ready(s, path, &size) == 1 && size >= s->opt.generation_size &&
           size <= max && size % 4096 == 0;
}

static int
truncate_locked(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t low = s->lowest_gen, cur = s->cur_gen, ckpt = s->checkpoint_lsn, floor = s->floor;
    uint64_t upto = low; /* first generation to keep */
    while (upto < cur && upto < floor && s->gens[upto + 1 - low].first_lsn - 1 <= ckpt)
        upto++;
    /* Spares are named above prealloc_upto; only this function (under truncate_lock) and
     * the housekeeping thread's preallocation (same lock) add to it. */
    uint64_t gen_want = s->gen_want;
    uint64_t spare = s->prealloc_upto, spare_limit = cur + spare_max(s, gen_want);
    pthread_mutex_unlock(&s->lock);
    if (upto == low)
        return 0;

    /* Recycling renames a generation, whole and unchanged, to the next spare number (its
     * header still names the generation it was: docs/formats/log.md), instead of deleting it
     * and zero-filling a new file later, which cost a megabyte of writes and two syncs per
     * generation, competing with the log's fdatasync for the disk. Renames and unlinks go
     * in order from the lowest generation, so whatever prefix of them a crash keeps, the
     * log and the spares above it stay contiguous. */
    uint64_t g;
    uint64_t recycled = 0;
    int ret = 0;
    for (g = low; g < upto; g++) {
        char path[4096];
        store__gen_path(path, sizeof(path), s->log_dir, g);
        if (spare < spare_limit && recyclable(s, path, gen_want)) {
            char to[4096];
            store__gen_path(to, sizeof(to), s->log_dir, spare + 1);
            ret = s->io->rename(s->io, path, to);
            if (ret < 0)
                break;
            spare++;
            recycled++;
            continue;
        }
        ret = s->io->unlink(s->io, path);
        if (ret < 0 && ret != -ENOENT)
            break;
        ret = 0;
    }
    /* A recycled file is written as a new generation only after its new name is durable:
     * otherwise a crash could bring back the old name over new records. */
    int dret = g > low ? s->io->sync_dir(s->io, s->log_dir) : 0;

    pthread_mutex_lock(&s->lock);
    size_t drop = (size_t)(g - s->lowest_gen);
    memmove(s->gens, s->gens + drop, (size_t)(s->cur_gen - g + 1) * sizeof(*s->gens));
    s->lowest_gen = g;
    if (dret == 0 && recycled > 0) {
        s->prealloc_upto = spare;
        s->recycled += recycled;
        pthread_cond_broadcast(&s->progress);
    } else if (recycled > 0) {
        /* Renamed but not known durable: never use them (a remount sees them as spares). */
        s->next_gen_error = dret;
    }
    pthread_mutex_unlock(&s->lock);
    if (g > low)
        event_emit(TDM_EV_STORE_TRUNCATED, s->name,
                   "log generations %" PRIu64 "..%" PRIu64
                   " truncated (below checkpoint LSN %" PRIu64 "); %" PRIu64
                   " of them kept as spare generations",
                   low, g - 1, ckpt, recycled);
    return ret < 0 ? ret : dret;
}

void *
store__hk_thread_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->hk_stop) {
        uint64_t want = s->prealloc_upto + 1;
        bool need_gen = want <= s->writing_gen + STORE_PREALLOC_AHEAD && !s->failed;
        uint64_t since = store__now_ms() - s->last_ckpt_ms;
        bool need_ckpt =
            !s->failed && s->applied_lsn > s->checkpoint_lsn &&
            (s->bytes_since_ckpt >= s->opt.checkpoint_bytes || since >= s->opt.checkpoint_ms);
        if (!need_gen && !need_ckpt) {
            struct timespec ts;
            uint64_t wait = s->opt.checkpoint_ms > since ? s->opt.checkpoint_ms - since : 1000;
            store__deadline_after_ms(&ts, wait < 1000 ? wait : 1000);
            pthread_cond_timedwait(&s->hk_wake, &s->lock, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->lock);

        if (need_gen) {
            /* Under truncate_lock: a truncation may have recycled files into spares (and
             * raised prealloc_upto) since want was computed. */
            pthread_mutex_lock(&s->truncate_lock);
            pthread_mutex_lock(&s->lock);
            want = s->prealloc_upto + 1;
            bool still = want <= s->writing_gen + STORE_PREALLOC_AHEAD;
            /* Made as large as generations are begun now, so a roll need not grow it (a
             * sync on the commit path): store_gen.c. */
            uint64_t size =
                s->gen_want > s->opt.generation_size ? s->gen_want : s->opt.generation_size;
            pthread_mutex_unlock(&s->lock);
            int ret = still ? store__gen_file_create(s->io, s->log_dir, want, size, s->guid) : 0;
            pthread_mutex_unlock(&s->truncate_lock);
            pthread_mutex_lock(&s->lock);
            if (ret == 0 && still) {
                s->prealloc_upto = want;
                s->created++;
            } else if (ret < 0) {
                s->next_gen_error = ret;
            }
            pthread_cond_broadcast(&s->progress);
            pthread_mutex_unlock(&s->lock);
            if (ret < 0) {
                /* Do not spin on a full disk: the log thread decides what it means. */
                pthread_mutex_lock(&s->lock);
                struct timespec ts;
                store__deadline_after_ms(&ts, 1000);
                pthread_cond_timedwait(&s->hk_wake, &s->lock, &ts);
                pthread_mutex_unlock(&s->lock);
            }
        }
        if (need_ckpt && store__checkpoint(s) == 0)
            store__truncate(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/*
 * Generation files: preallocation (with the header), the BEGIN and END records that open and
 * close one, and the roll from one generation to the next. Called by the log thread (rolls), the
 * housekeeping thread (preallocation) and store_mount.c (creation, recovery).
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

/*
 * Creates generation file gen of size bytes, zero-filled and allocated, with the version 3
 * header of database guid, durable: a spare, ready to be begun by a BEGIN record with no
 * write or sync of its own (docs/formats/log.md).
 */
int
store__gen_file_create(const struct io_ops *io, const char *log_dir, uint64_t gen, uint64_t size,
                       const uint8_t guid[TDM_LOG_GUID_LEN])
{
    char path[4096];
    store__gen_path(path, sizeof(path), log_dir, gen);
    int fd = io->open(io, path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return fd;
    struct log_header hdr = {.version = TDM_LOG_VERSION};
    memcpy(hdr.guid, guid, sizeof(hdr.guid));
    uint8_t buf[TDM_LOG_HEADER_USED];
    log_header_encode(&hdr, buf);
    int ret = io->allocate(io, fd, (off_t)size);
    if (ret == 0)
        ret = io_pwrite_all(io, fd, buf, sizeof(buf), 0);
    if (ret == 0)
        ret = io->fdatasync(io, fd);
    io->close(io, fd);
    if (ret == 0)
        ret = io->sync_dir(io, log_dir);
    if (ret < 0)
        io->unlink(io, path);
    return ret;
}

int
store__gen_header_ready(const struct store *s, const char *path, uint64_t *size_r)
{
    int fd = s->io->open(s->io, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    off_t size = 0;
    uint8_t buf[TDM_LOG_HEADER_USED];
    int ret = s->io->file_size(s->io, fd, &size);
    if (ret == 0) {
        ssize_t got = io_pread_all(s->io, fd, buf, sizeof(buf), 0);
        ret = got < 0 ? (int)got : 0;
        struct log_header hdr;
        const char *why = NULL;
        if (ret == 0)
            ret = got == (ssize_t)sizeof(buf) && (uint64_t)size >= TDM_LOG_HEADER_SIZE &&
                  log_header_decode(buf, sizeof(buf), &hdr, &why) == 0 &&
                  hdr.version >= TDM_LOG_VERSION_BEGIN &&
                  memcmp(hdr.guid, s->guid, sizeof(hdr.guid)) == 0;
    }
    s->io->close(s->io, fd);
    *size_r = (uint64_t)size;
    return ret;
}

void
store__gen_begin_frame(const struct store *s, uint8_t frame[TDM_LOG_BEGIN_FRAME])
{
    const struct gen_state *g = &s->cur;
    struct log_header hdr = {
        .generation = g->gen,
        .created_us = store__now_us_wall(),
        .epoch = g->epoch,
        .first_lsn = g->first_lsn,
        .prev_checksum = g->prev_checksum,
        .file_size = (uint32_t)g->size,
    };
    log_begin_encode(&hdr, frame);
}

void
store__gen_pos(struct store *s, bool closed, struct gen_pos *pos_r)
{
    struct gen_state *g = &s->cur;
    *pos_r = (struct gen_pos){.gen = g->gen,
                              .first_lsn = g->first_lsn,
                              .epoch = g->epoch,
                              .size = g->size,
                              .end = g->off + (closed ? TDM_LOG_END_FRAME : 0),
                              .last_lsn = g->last_lsn,
                              .begun = g->begun,
                              .closed = closed,
                              .to_table = g->begun && !g->in_table};
    /* The sync of this position records the generation; no later position needs to, even if
     * its sync returns first (positions complete in order: store_log.c). */
    if (g->begun)
        g->in_table = true;
}

int
store__gen_durable_at(struct store *s, const struct gen_pos *pos)
{
    if (!pos->begun)
        return 0;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    if (pos->to_table)
        ret = store__gen_table_push(s, pos->gen, pos->first_lsn, pos->epoch, pos->size);
    if (ret == 0) {
        s->dur_end = pos->end;
        s->dur_last_lsn = pos->last_lsn;
        s->dur_closed = pos->closed;
        if (pos->closed)
            s->gens[pos->gen - s->lowest_gen].end = pos->end;
    }
    pthread_mutex_unlock(&s->lock);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&s->hook_lock);
    if (s->durable_cb)
        s->durable_cb(s->durable_ctx, pos->gen, pos->end, pos->last_lsn);
    pthread_mutex_unlock(&s->hook_lock);
    return 0;
}

int
store__gen_durable(struct store *s, bool closed)
{
    struct gen_pos pos;
    store__gen_pos(s, closed, &pos);
    return store__gen_durable_at(s, &pos);
}

int
store__gen_table_push(struct store *s, uint64_t gen, uint64_t first_lsn, uint64_t epoch,
                      uint64_t file_size)
{
    size_t idx = (size_t)(gen - s->lowest_gen);
    if (idx >= s->gen_cap) {
        size_t ncap = s->gen_cap ? s->gen_cap * 2 : 64;
        while (ncap <= idx)
            ncap *= 2;
        struct gen_entry *n = realloc(s->gens, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        s->gens = n;
        s->gen_cap = ncap;
    }
    s->gens[idx] =
        (struct gen_entry){.first_lsn = first_lsn, .epoch = epoch, .file_size = file_size};
    s->cur_gen = gen;
    return 0;
}

void
store__gen_end_frame(const struct store *s, uint8_t frame[TDM_LOG_END_FRAME])
{
    const struct gen_state *g = &s->cur;
    uint8_t payload[TDM_LOG_END_PAYLOAD];
    struct log_end end = {.record_count = g->records, .gen_checksum = g->checksum};
    log_end_encode(&end, payload);
    log_record_encode(g->records ? g->last_lsn : 0, g->epoch, TDM_REC_END, payload, sizeof(payload),
                      frame);
}

/* Writes the END record into the current generation and makes it durable. */
int
store__gen_close_current(struct store *s)
{
    struct gen_state *g = &s->cur;
    uint8_t frame[TDM_LOG_END_FRAME];

    TDM_ASSERT(!g->closed);
    TDM_ASSERT(g->off + TDM_LOG_END_FRAME <= g->size);
    store__gen_end_frame(s, frame);
    int ret = io_pwrite_all(s->io, g->fd, frame, sizeof(frame), (off_t)g->off);
    if (ret == 0)
        ret = s->io->fdatasync(s->io, g->fd);
    if (ret == 0)
        ret = store__gen_durable(s, true);
    if (ret == 0) {
        g->closed = true;
        pthread_mutex_lock(&s->lock);
        s->syncs++;
        s->solo_syncs++; /* in the writer's turn, after every earlier batch: nothing overlaps */
        pthread_mutex_unlock(&s->lock);
    }
    return ret;
}

/*
 * Waits until the housekeeping thread has preallocated the generation after the current one.
 * Returns 0, TDM_ENOSPACE when the disk is full, or another error.
 */
static int
gen_wait_next(struct store *s)
{
    uint64_t gen = s->cur.gen + 1;

    pthread_mutex_lock(&s->lock);
    if (s->prealloc_upto < gen) {
        s->roll_stalls++;
        s->next_gen_error = 0;
        pthread_cond_signal(&s->hk_wake);
        while (s->prealloc_upto < gen && s->next_gen_error == 0 && !s->failed)
            pthread_cond_wait(&s->progress, &s->lock);
    }
    int err = s->prealloc_upto >= gen ? 0 : s->next_gen_error ? s->next_gen_error : s->failed;
    pthread_mutex_unlock(&s->lock);
    if (err == -ENOSPC || err == -EDQUOT)
        return TDM_ENOSPACE;
    return err;
}

/*
 * Generations sized to the batches. A batch larger than what is left of a generation rolls in
 * its middle, and the END of a generation must be durable before anything is written to the
 * next (docs/formats/log.md: that is how recovery tells a torn roll from damage), so each roll
 * inside a batch is one fdatasync that nothing overlaps. At 64 committers x 64 KiB a batch is
 * 2-4 MiB: with 1 MiB generations it crossed four of them, four syncs in a row per batch
 * (docs/benchmarks.md). So while batches are large, the next generation is begun at the
 * smallest power-of-two multiple of generation_size that holds STORE_GEN_BATCHES batches as
 * large as the last one, at most STORE_GEN_GROW_MAX times generation_size; small batches keep
 * generation_size. The format is unchanged: every generation's BEGIN records its size, as it
 * did for a record too large for a standard generation (docs/decisions.md).
 */
void
store__gen_want_batch(struct store *s, uint64_t batch_bytes)
{
    uint64_t base = s->opt.generation_size;
    uint64_t need = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + STORE_GEN_BATCHES * batch_bytes +
                    TDM_LOG_END_FRAME;
    uint64_t max = base * STORE_GEN_GROW_MAX;
    if (max > TDM_LOG_MAX_GENERATION_SIZE)
        max = TDM_LOG_MAX_GENERATION_SIZE;
    uint64_t want = base;
    while (want < need && want * 2 <= max)
        want *= 2;
    pthread_mutex_lock(&s->lock);
    s->gen_want = want;
    pthread_mutex_unlock(&s->lock);
}

/* The size of a generation begun now that holds a frame of min_frame bytes after its BEGIN.
 * Only the writer's turn sets gen_want, so it reads it without the lock. */
uint64_t
store__gen_size_for(const struct store *s, uint64_t min_frame)
{
    uint64_t size = s->gen_want > s->opt.generation_size ? s->gen_want : s->opt.generation_size;
    uint64_t need = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + min_frame + TDM_LOG_END_FRAME;
    if (need > size) /* a record larger than a generation gets a generation of its own */
        size = (need + 4095) & ~(uint64_t)4095;
    return size;
}

/*
 * Makes file fd ready to be begun as a generation of at least *size_r bytes: grows it if it is
 * shorter, durably, and otherwise takes the whole file (*size_r becomes its size), so that
 * BEGIN's file size is always the file's: a spare made or recycled while batches were larger
 * than they are now is used whole. The file may be shorter than the generation: a record
 * larger than a standard generation, batches larger than when the spare was made, a
 * preallocation cut short by a crash (recovery keeps blank files whatever their size), or a
 * generation size changed since it was made. The growth must be durable before the BEGIN that
 * records the size: one fdatasync for both may keep BEGIN and lose the growth, and recovery
 * refuses a generation shorter than it says (tests/crash/test_oversize_roll_crash.c).
 */
static int
gen_ready(struct store *s, int fd, uint64_t *size_r)
{
    off_t have = 0;
    int ret = s->io->file_size(s->io, fd, &have);
    if (ret == 0 && (uint64_t)have < *size_r) {
        ret = s->io->allocate(s->io, fd, (off_t)*size_r);
        if (ret == 0)
            ret = s->io->fdatasync(s->io, fd);
    } else if (ret == 0 && (uint64_t)have % 4096 == 0 &&
               (uint64_t)have <= TDM_LOG_MAX_GENERATION_SIZE) {
        *size_r = (uint64_t)have;
    }
    return ret == -ENOSPC ? TDM_ENOSPACE : ret;
}

/*
 * Makes the spare after the current generation current, sized to hold a frame of min_frame
 * bytes. The current generation must be closed already, and the next one ready
 * (gen_wait_next). Nothing is written: the spare's header was written and synced when it was
 * made (version 3), and the log thread writes its BEGIN with its first records, so a roll costs
 * no sync of its own (before version 3 it wrote and synced a header here). It enters the
 * generation table once that BEGIN is durable (store__gen_durable()).
 */
int
store__gen_open_next(struct store *s, uint64_t min_frame)
{
    uint64_t gen = s->cur.gen + 1;

    pthread_mutex_lock(&s->lock);
    TDM_ASSERT(s->prealloc_upto >= gen);
    pthread_mutex_unlock(&s->lock);

    char path[4096];
    store__gen_path(path, sizeof(path), s->log_dir, gen);
    int fd = s->io->open(s->io, path, O_RDWR, 0);
    if (fd < 0)
        return fd;
    uint64_t size = store__gen_size_for(s, min_frame);
    int ret = gen_ready(s, fd, &size);
    if (ret < 0) {
        s->io->close(s->io, fd);
        return ret;
    }
    uint32_t prev_checksum = s->cur.checksum;
    uint64_t first_lsn = s->cur.last_lsn + 1;
    if (s->cur.fd >= 0)
        s->io->close(s->io, s->cur.fd);
    s->cur = (struct gen_state){
        .gen = gen,
        .fd = fd,
        .size = size,
        .off = TDM_LOG_HEADER_SIZE,
        .epoch = s->epoch,
        .first_lsn = first_lsn,
        .last_lsn = first_lsn - 1,
        .prev_checksum = prev_checksum,
    };
    pthread_mutex_lock(&s->lock);
    s->writing_gen = gen;
    if (size > s->opt.generation_size &&
        TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + min_frame + TDM_LOG_END_FRAME <=
            s->opt.generation_size)
        s->large_gens++;
    pthread_cond_signal(&s->hk_wake); /* keep STORE_PREALLOC_AHEAD generations ready */
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Makes the current generation, not begun yet, large enough for a frame of min_frame bytes. */
int
store__gen_fit_unbegun(struct store *s, uint64_t min_frame)
{
    TDM_ASSERT(!s->cur.begun);
    /* Only a first frame that does not fit grows it: the size for the batches was chosen
     * when it was opened (store__gen_open_next()). */
    uint64_t need = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME + min_frame + TDM_LOG_END_FRAME;
    if (need <= s->cur.size)
        return 0;
    uint64_t size = store__gen_size_for(s, min_frame);
    int ret = gen_ready(s, s->cur.fd, &size);
    if (ret == 0)
        s->cur.size = size;
    return ret;
}

/* Closes the current generation and opens the next, large enough for min_frame. */
int
store__gen_roll(struct store *s, uint64_t min_frame)
{
    /* Get the next file first: if the disk is full, the current generation stays open (its
     * END space is reserved) and what was written to it is still made durable. */
    int err = gen_wait_next(s);
    if (err) {
        int sret = s->io->fdatasync(s->io, s->cur.fd);
        if (sret == 0)
            sret = store__gen_durable(s, false);
        return sret < 0 ? sret : err;
    }
    int ret = store__gen_close_current(s);
    if (ret == 0)
        ret = store__gen_open_next(s, min_frame);
    if (ret == 0)
        event_emit(TDM_EV_STORE_GENERATION_CLOSED, s->name,
                   "generation %" PRIu64 " closed; generation %" PRIu64 " is current",
                   s->cur.gen - 1, s->cur.gen);
    return ret;
}

/* Opens the generation after a current one that is closed already (its END durable). */
int
store__gen_start_next(struct store *s)
{
    TDM_ASSERT(s->cur.closed);
    int ret = gen_wait_next(s);
    if (ret == 0)
        ret = store__gen_open_next(s, 0);
    if (ret == 0)
        event_emit(TDM_EV_STORE_GENERATION_CLOSED, s->name,
                   "generation %" PRIu64 " closed; generation %" PRIu64 " is current",
                   s->cur.gen - 1, s->cur.gen);
    return ret;
}

/*
 * Shipping the log to one copy: LOG_DATA chunks of at most REPL_WIRE_CHUNK_MAX raw bytes,
 * contiguous from the copy's position, each ending on a frame boundary unless one frame is
 * longer than a chunk (docs/formats/replication.md, LOG_DATA).
 *
 * The loop decides what to send next (store_log_extent: how much of the generation is
 * durable, whether it is closed) and hands the reading to a job on the source's helper thread
 * (lib/offload): pread of the range, the walk over its frame headers that finds the last
 * boundary, zstd, and encoding the frame. The job's done callback, on the loop, queues the
 * frame and starts the next job. One job per copy at a time, and none while the copy's output
 * is above the high-water mark (conn_output_full; on_drained resumes), so a copy that does not
 * read costs at most high_water + one chunk of memory.
 *
 * The walk trusts no length more than the log it reads: durable bytes of our own log, but a
 * frame header that runs past the durable end is reported as a read failure, never followed.
 */
#include "repl/repl_source_int.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/wire_field.h"
#include "proto/repl/repl_zstd.h"
#include "store/store.h"
#include "tandem/log_format.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct chunk_job {
    struct repl_src_peer *peer; /* never touched by the work function */
    /* In: */
    int fd;
    struct repl_zstd *zstd; /* the peer's; NULL = send raw */
    uint64_t gen, off, boundary, end, file_size;
    bool end_is_durable;  /* end is the durable end, not a cut at the chunk size */
    bool closed;          /* the generation's END is at its durable end */
    uint64_t partial_lsn; /* of the frame the chunk continues when boundary > off */
    /* Out: */
    int status;
    char error[256];
    uint8_t *frame;
    size_t frame_len;
    uint64_t sent_end, new_boundary;
    uint64_t shipped_lsn;     /* the last data LSN in a frame the chunk completes; 0 none */
    uint64_t new_partial_lsn; /* of the frame the chunk leaves unfinished; 0 none */
    uint32_t raw_len, wire_len;
};

static int __attribute__((format(printf, 3, 4)))
job_fail(struct chunk_job *j, int status, const char *fmt, ...)
{
    j->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof(j->error), fmt, ap);
    va_end(ap);
    return status;
}

static int
read_range(struct chunk_job *j, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(j->fd, buf + got, len - got, (off_t)(j->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return job_fail(j, -errno, "read failed at offset %llu",
                            (unsigned long long)(j->off + got));
        if (n == 0)
            return job_fail(j, TDM_ECORRUPT, "file ends at %llu, before its durable end %llu",
                            (unsigned long long)(j->off + got), (unsigned long long)j->end);
        got += (size_t)n;
    }
    return 0;
}

/*
 * Finds how much of buf (the bytes [off, end)) to send: up to the last unit boundary in it,
 * or all of it with *partial when one frame covers the whole chunk. Units are the 4096-byte
 * header and then frames (24-byte header whose bytes 20..23 are the payload length, payload,
 * 4-byte CRC).
 */
static int
walk_frames(struct chunk_job *j, const uint8_t *buf, bool *partial)
{
    uint64_t pos = j->boundary;
    uint64_t last = j->off;
    *partial = false;
    if (pos > j->end) {
        /* Still inside a frame longer than a chunk. */
        if (j->end_is_durable)
            return job_fail(j, TDM_ECORRUPT, "a frame runs past the durable end %llu (to %llu)",
                            (unsigned long long)j->end, (unsigned long long)pos);
        *partial = true;
        j->sent_end = j->end;
        j->new_boundary = pos;
        j->new_partial_lsn = j->partial_lsn;
        return 0;
    }
    if (pos > j->off)
        j->shipped_lsn = j->partial_lsn; /* the chunk ends a frame begun in earlier ones */
    last = pos;
    while (pos < j->end) {
        uint64_t unit_end, lsn = 0;
        if (pos < TDM_LOG_HEADER_SIZE) {
            unit_end = TDM_LOG_HEADER_SIZE;
        } else {
            if (j->end - pos < TDM_LOG_FRAME_HEADER) {
                if (j->end_is_durable)
                    return job_fail(j, TDM_ECORRUPT,
                                    "a frame header at %llu is cut by the durable end %llu",
                                    (unsigned long long)pos, (unsigned long long)j->end);
                break;
            }
            uint32_t payload = wire_get32(buf + (pos - j->off) + 20);
            if (payload > TDM_LOG_MAX_PAYLOAD)
                return job_fail(j, TDM_ECORRUPT, "a frame at %llu claims %llu payload bytes",
                                (unsigned long long)pos, (unsigned long long)payload);
            unit_end = pos + TDM_LOG_FRAME_OVERHEAD + payload;
            /* BEGIN's LSN field is the generation's first LSN, not a record's. */
            if (wire_get16(buf + (pos - j->off) + 16) != TDM_REC_BEGIN)
                lsn = wire_get64(buf + (pos - j->off));
        }
        if (unit_end > j->end) {
            if (j->end_is_durable)
                return job_fail(j, TDM_ECORRUPT, "a frame runs past the durable end %llu (to %llu)",
                                (unsigned long long)j->end, (unsigned long long)unit_end);
            if (pos == j->off) {
                /* One frame longer than the chunk: send the chunk, remember where it ends. */
                *partial = true;
                j->sent_end = j->end;
                j->new_boundary = unit_end;
                j->new_partial_lsn = lsn;
                return 0;
            }
            break;
        }
        if (lsn)
            j->shipped_lsn = lsn;
        pos = unit_end;
        last = pos;
    }
    j->sent_end = last;
    j->new_boundary = last;
    return 0;
}

static void
chunk_work(void *arg)
{
    struct chunk_job *j = arg;
    size_t len = (size_t)(j->end - j->off);
    uint8_t *buf = malloc(len);
    uint8_t *comp = NULL;
    if (buf == NULL) {
        job_fail(j, -ENOMEM, "out of memory for %zu bytes", len);
        return;
    }
    bool partial = false;
    if (read_range(j, buf, len) != 0 || walk_frames(j, buf, &partial) != 0)
        goto out;
    if (j->sent_end == j->off) {
        /* Cannot happen: a chunk holds at least one unit or is partial. */
        job_fail(j, TDM_ECORRUPT, "nothing to send at %llu of %llu", (unsigned long long)j->off,
                 (unsigned long long)j->end);
        goto out;
    }

    struct repl_msg m = {.type = REPL_LOG_DATA};
    struct repl_log_data *d = &m.u.log_data;
    d->generation = j->gen;
    d->offset = j->off;
    d->file_size = j->file_size;
    d->raw_length = (uint32_t)(j->sent_end - j->off);
    d->closes = j->closed && j->end_is_durable && j->sent_end == j->end;
    d->partial = partial;
    d->compression = REPL_COMPRESSION_NONE;
    d->data = buf;
    d->data_len = d->raw_length;
    if (j->zstd) {
        comp = malloc(d->raw_length);
        size_t clen = 0;
        int rc = comp ? repl_zstd_compress(j->zstd, buf, d->raw_length, comp, d->raw_length, &clen)
                      : -ENOMEM;
        if (rc == 0) {
            d->compression = REPL_COMPRESSION_ZSTD;
            d->data = comp;
            d->data_len = (uint32_t)clen;
        }
        /* TDM_ELIMIT (no smaller) or a failure of zstd: the chunk goes raw. */
    }
    const char *error = NULL;
    int rc = repl_msg_encode_alloc(&m, &j->frame, &j->frame_len, &error);
    if (rc != 0) {
        j->status = rc;
        snprintf(j->error, sizeof(j->error), "cannot encode LOG_DATA: %s", error);
        goto out;
    }
    j->raw_len = d->raw_length;
    j->wire_len = d->data_len;
out:
    free(comp);
    free(buf);
}

static void
peer_close_fd(struct repl_src_peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void
chunk_done(void *arg, bool ran)
{
    struct chunk_job *j = arg;
    struct repl_src_peer *p = j->peer;
    p->job_running = false;
    if (!ran || p->conn == NULL || p->state != REPL_SRC_STREAMING || p->db == NULL) {
        free(j->frame);
        free(j);
        repl__peer_maybe_free(p);
        return;
    }
    p->busy++;
    if (j->status != 0) {
        event_emit(TDM_EV_REPL_SOURCE_READ_FAILED, p->db->name,
                   "cannot ship generation %llu of database %s to server %s: %s (%s)",
                   (unsigned long long)j->gen, p->db->name, p->server, j->error,
                   tdm_strerror(j->status));
        repl__peer_fail(p, REPL_CODE_INTERNAL, "cannot read generation %llu here: %s",
                        (unsigned long long)j->gen, j->error);
    } else if (conn_write(p->conn, j->frame, j->frame_len) == 0 && p->conn) {
        p->last_sent_us = repl__mono_us();
        p->bytes_sent += j->wire_len;
        p->bytes_raw += j->raw_len;
        p->off = j->sent_end;
        p->boundary = j->new_boundary;
        if (j->shipped_lsn > p->shipped_lsn)
            p->shipped_lsn = j->shipped_lsn;
        p->partial_lsn = j->new_partial_lsn;
        repl__ship_pump(p);
    }
    free(j->frame);
    free(j);
    p->busy--;
    repl__peer_maybe_free(p);
}

void
repl__ship_pump(struct repl_src_peer *p)
{
    struct repl_src_db *db = p->db;
    for (;;) {
        if (p->state != REPL_SRC_STREAMING || p->conn == NULL || db == NULL || db->store == NULL ||
            p->job_running || conn_output_full(p->conn))
            return;
        struct store_log_extent ext;
        int rc = store_log_extent(db->store, p->gen, &ext);
        if (rc == TDM_ENOTFOUND) {
            struct store_status st;
            store_get_status(db->store, &st);
            if (p->gen >= st.lowest_generation)
                return; /* not begun yet: the durable hook wakes us once it is */
            repl__peer_fail(p, REPL_CODE_POSITION_GONE,
                            "generation %llu was truncated before it was sent: reseed",
                            (unsigned long long)p->gen);
            return;
        }
        if (rc != 0) {
            repl__peer_fail(p, REPL_CODE_INTERNAL, "cannot look at generation %llu: %s",
                            (unsigned long long)p->gen, tdm_strerror(rc));
            return;
        }
        if (p->off >= ext.durable_end) {
            if (!ext.closed)
                return; /* all durable bytes sent: wait for more */
            peer_close_fd(p);
            p->gen++;
            p->off = 0;
            p->boundary = 0;
            continue;
        }
        if (db->mode == REPL_MODE_FILE && !ext.closed)
            return;
        if (p->fd < 0) {
            rc = store_log_open_generation(db->store, p->gen, &p->fd);
            if (rc != 0) {
                p->fd = -1;
                repl__peer_fail(p, REPL_CODE_INTERNAL, "cannot open generation %llu: %s",
                                (unsigned long long)p->gen, tdm_strerror(rc));
                return;
            }
        }
        /* Compressed for a copy that asked (a WAN link), or for every copy when the source
         * was given a level; a copy that asked gets the default level otherwise. */
        int level = p->src->opt.zstd_level > 0 ? p->src->opt.zstd_level
                    : p->wants_zstd            ? REPL_SOURCE_DEFAULT_ZSTD_LEVEL
                                               : 0;
        if (level > 0 && p->zstd == NULL && repl_zstd_new(level, &p->zstd) != 0)
            log_fatal("repl source: out of memory");
        struct chunk_job *j = calloc(1, sizeof(*j));
        if (j == NULL)
            log_fatal("repl source: out of memory");
        uint64_t end = ext.durable_end;
        bool end_is_durable = true;
        if (end - p->off > REPL_WIRE_CHUNK_MAX) {
            end = p->off + REPL_WIRE_CHUNK_MAX;
            end_is_durable = false;
        }
        *j = (struct chunk_job){
            .peer = p,
            .fd = p->fd,
            .zstd = p->zstd,
            .gen = p->gen,
            .off = p->off,
            .boundary = p->boundary,
            .end = end,
            .file_size = ext.file_size,
            .end_is_durable = end_is_durable,
            .closed = ext.closed,
            .partial_lsn = p->partial_lsn,
        };
        rc = offload_submit(p->src->offload, chunk_work, chunk_done, j);
        if (rc != 0) {
            /* The helper's queue is full (many copies at once): the tick retries. */
            free(j);
            return;
        }
        p->job_running = true;
        return;
    }
}

/* Reads the 24-byte frame header at off of generation gen. */
static int
read_frame_header(struct store *store, uint64_t gen, uint64_t off, uint8_t hdr[24])
{
    int fd;
    int rc = store_log_open_generation(store, gen, &fd);
    if (rc != 0)
        return rc;
    ssize_t n;
    do
        n = pread(fd, hdr, TDM_LOG_FRAME_HEADER, (off_t)off);
    while (n < 0 && errno == EINTR);
    rc = n < 0 ? -errno : n != TDM_LOG_FRAME_HEADER ? TDM_ECORRUPT : 0;
    close(fd);
    return rc;
}

/*
 * The copy's last record (LSN h->last_lsn of epoch h->epoch) must be the active's record at
 * that LSN. There is one writer per epoch, so the same LSN in the same epoch is the same
 * record, and the copy's log is then a prefix of the active's. Where the epochs differ, the
 * copy holds records the active does not have (a lossy failover: the old active rejoining as a
 * copy), or its last record is of an epoch the active's history had left before that LSN. The
 * offsets alone cannot tell: records of the same sizes put frames of either history at the same
 * offsets. Every record of a generation carries the generation's epoch, so the active's
 * generation holding the LSN answers without reading the file.
 *
 * The copy names the epoch of the generation its log ends in (store_copy_position): its last
 * record's, unless it holds no record of that generation (only its header and BEGIN, or an
 * empty closed one), when that generation's own epoch is compared: the same generation in
 * another epoch is another history, even before its first record. Where the generation holding the
 * LSN was truncated here, nothing is compared: the position checks still apply, and the copy's
 * inspection of the next BEGIN checks the chain to its own last generation.
 */
static uint16_t
check_last_epoch(struct repl_src_db *db, const struct repl_hello *h, uint64_t lowest, uint64_t top,
                 char *buf, size_t buf_len)
{
    uint64_t lsn = h->last_lsn;
    if (lsn == 0 || h->epoch == 0)
        return REPL_CODE_OK; /* no record held, or seeded from a snapshot without a generation */
    uint64_t end_gen = h->start_offset == 0 ? h->start_generation - 1 : h->start_generation;
    if (end_gen > top)
        end_gen = top; /* beyond the active's log: the position check says so */
    if (end_gen < lowest || end_gen == 0)
        return REPL_CODE_OK; /* truncated here, or a position without a generation */
    /* From the copy's last generation to the one holding the LSN: the same one, or seldom a
     * neighbour (LSNs grow with generations, so the walk never turns back). */
    uint64_t g = end_gen;
    for (;;) {
        struct store_log_extent ext;
        int rc = store_log_extent(db->store, g, &ext);
        if (rc == TDM_ENOTFOUND)
            return REPL_CODE_OK; /* truncated meanwhile */
        if (rc != 0) {
            snprintf(buf, buf_len, "cannot look at generation %llu: %s", (unsigned long long)g,
                     tdm_strerror(rc));
            return REPL_CODE_INTERNAL;
        }
        if (g == end_gen && ext.first_lsn == lsn + 1) {
            /* The copy holds no record of its last generation: it named that one's epoch. */
            if (ext.epoch == h->epoch)
                return REPL_CODE_OK;
            snprintf(buf, buf_len,
                     "the copy's generation %llu is of epoch %llu, the active's of epoch %llu: "
                     "the logs differ after LSN %llu",
                     (unsigned long long)g, (unsigned long long)h->epoch,
                     (unsigned long long)ext.epoch, (unsigned long long)lsn);
            return REPL_CODE_DIVERGED;
        }
        if (ext.first_lsn > lsn) {
            if (g <= lowest)
                return REPL_CODE_OK; /* the LSN's generation was truncated here */
            g--;
            continue;
        }
        if (lsn > ext.last_lsn) {
            if (g < top) {
                g++;
                continue;
            }
            snprintf(buf, buf_len,
                     "the copy's last record, LSN %llu of epoch %llu, is not in the active's "
                     "log, which ends at LSN %llu: the copy holds records the active does not "
                     "have",
                     (unsigned long long)lsn, (unsigned long long)h->epoch,
                     (unsigned long long)ext.last_lsn);
            return REPL_CODE_DIVERGED;
        }
        if (ext.epoch != h->epoch) {
            snprintf(buf, buf_len,
                     "the copy's last record, LSN %llu, is of epoch %llu, the active's record "
                     "at that LSN of epoch %llu (generation %llu): the logs differ from there",
                     (unsigned long long)lsn, (unsigned long long)h->epoch,
                     (unsigned long long)ext.epoch, (unsigned long long)g);
            return REPL_CODE_DIVERGED;
        }
        return REPL_CODE_OK;
    }
}

uint16_t
repl__ship_check_start(struct repl_src_db *db, const struct repl_hello *h, char *buf,
                       size_t buf_len, const char **reason_r)
{
    struct store_status st;
    store_get_status(db->store, &st);
    uint64_t g = h->start_generation;
    unsigned long long G = (unsigned long long)g;
    *reason_r = buf;
    if (g < st.lowest_generation) {
        snprintf(buf, buf_len,
                 "generation %llu of database %s was truncated here (the lowest is %llu): "
                 "reseed",
                 G, db->name, (unsigned long long)st.lowest_generation);
        return REPL_CODE_POSITION_GONE;
    }
    /* The highest generation begun: the status's current one may be a spare the log
     * thread made current but has not begun yet. */
    struct store_log_extent ext;
    uint64_t top = st.current_generation;
    if (store_log_extent(db->store, top, &ext) == TDM_ENOTFOUND && top > st.lowest_generation)
        top--;
    uint16_t code = check_last_epoch(db, h, st.lowest_generation, top, buf, buf_len);
    if (code != REPL_CODE_OK)
        return code;
    if (g > top) {
        /* The generation after a closed one, with nothing of it yet, is where a copy that
         * has everything waits. */
        if (g == top + 1 && h->start_offset == 0 && store_log_extent(db->store, top, &ext) == 0 &&
            ext.closed && ext.last_lsn == h->last_lsn)
            return REPL_CODE_OK;
        snprintf(buf, buf_len,
                 "the copy's log reaches generation %llu, the active's only %llu (LSN %llu)", G,
                 (unsigned long long)top, (unsigned long long)st.durable_lsn);
        return REPL_CODE_DIVERGED;
    }
    int rc = store_log_extent(db->store, g, &ext);
    if (rc == TDM_ENOTFOUND) {
        snprintf(buf, buf_len, "generation %llu of database %s is no longer here: reseed", G,
                 db->name);
        return REPL_CODE_POSITION_GONE;
    }
    if (rc != 0) {
        snprintf(buf, buf_len, "cannot look at generation %llu: %s", G, tdm_strerror(rc));
        return REPL_CODE_INTERNAL;
    }
    uint64_t off = h->start_offset;
    if (off == 0) {
        /* A copy seeded from a snapshot holds no generation yet (it says epoch 0) and its
         * LMDB may reach into this generation: it starts with the generation holding its
         * applied LSN + 1, and replay skips what the snapshot already has. */
        if (h->epoch == 0 && h->last_lsn > 0 && ext.first_lsn <= h->last_lsn + 1 &&
            h->last_lsn <= ext.last_lsn)
            return REPL_CODE_OK;
        if (h->last_lsn + 1 != ext.first_lsn) {
            snprintf(buf, buf_len,
                     "the copy's last LSN is %llu but generation %llu starts at LSN %llu",
                     (unsigned long long)h->last_lsn, G, (unsigned long long)ext.first_lsn);
            return REPL_CODE_DIVERGED;
        }
        return REPL_CODE_OK;
    }
    if (off < TDM_LOG_HEADER_SIZE) {
        snprintf(buf, buf_len, "start offset %llu of generation %llu is inside its header",
                 (unsigned long long)off, G);
        return REPL_CODE_DIVERGED;
    }
    if (off > ext.durable_end) {
        snprintf(buf, buf_len,
                 "the copy holds %llu bytes of generation %llu, the active only %llu: its log "
                 "is not a prefix of the active's",
                 (unsigned long long)off, G, (unsigned long long)ext.durable_end);
        return REPL_CODE_DIVERGED;
    }
    if (off == ext.durable_end) {
        if (h->last_lsn != ext.last_lsn) {
            snprintf(buf, buf_len,
                     "the copy ends generation %llu at LSN %llu, the active at LSN %llu", G,
                     (unsigned long long)h->last_lsn, (unsigned long long)ext.last_lsn);
            return REPL_CODE_DIVERGED;
        }
        return REPL_CODE_OK;
    }
    /* Inside the durable part: the frame that starts there must be the one after the copy's
     * last record. One 24-byte read on the loop, of a page the log thread wrote. */
    uint8_t hdr[TDM_LOG_FRAME_HEADER];
    rc = read_frame_header(db->store, g, off, hdr);
    if (rc != 0) {
        snprintf(buf, buf_len, "cannot read generation %llu at %llu: %s", G,
                 (unsigned long long)off, tdm_strerror(rc));
        return REPL_CODE_INTERNAL;
    }
    uint64_t lsn = wire_get64(hdr);
    uint64_t epoch = wire_get64(hdr + 8);
    uint16_t type = wire_get16(hdr + 16);
    bool fits = type == TDM_REC_END
                    ? lsn == h->last_lsn || (lsn == 0 && h->last_lsn + 1 == ext.first_lsn)
                    : lsn == h->last_lsn + 1;
    if (!fits || epoch < h->epoch) {
        snprintf(buf, buf_len,
                 "at offset %llu of generation %llu the active has LSN %llu of epoch %llu, "
                 "which does not follow the copy's LSN %llu of epoch %llu",
                 (unsigned long long)off, G, (unsigned long long)lsn, (unsigned long long)epoch,
                 (unsigned long long)h->last_lsn, (unsigned long long)h->epoch);
        return REPL_CODE_DIVERGED;
    }
    return REPL_CODE_OK;
}

/*
 * Seeding a copy from a snapshot (docs/formats/replication.md, "Seeding"): on an accepted
 * SEED_REQUEST the source holds its truncation floor at the lowest generation it has, takes a
 * consistent snapshot of the database's LMDB (store_snapshot: one read transaction, while
 * commits go on) into an unnamed temporary file on the seed helper thread, finds the
 * generation that holds the snapshot's applied LSN + 1 and moves the floor up to it, then
 * streams the file as SEED_DATA chunks under the same back-pressure as LOG_DATA (one chunk job
 * at a time, none while the copy's output is above the high-water mark), and ends with
 * SEED_END (size, SHA-256, GUID, applied LSN, first generation); the copy then closes.
 *
 * The floor: while the seed runs, the copy holds it at `needed` as any copy does; when the seed
 * connection closes, the copy departs like any other and is held at its first generation until
 * its HELLO arrives or the hold time passes (repl_source_floor.c), so the generation its log
 * starts from is still there when it connects.
 */
#include "repl/repl_source_int.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the snapshot ---- */

struct snap_job {
    struct repl_src_peer *peer; /* never touched by the work function */
    struct store *store;
    const char *dir;
    /* Out: */
    int fd;
    int status;
    char error[256];
    uint64_t size, applied;
    uint8_t sha256[REPL_WIRE_SHA256_LEN];
};

static void
snap_work(void *arg)
{
    struct snap_job *j = arg;
    j->fd = open(j->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        j->status = -errno;
        snprintf(j->error, sizeof(j->error), "cannot make a temporary file in %s: %s", j->dir,
                 strerror(errno));
        return;
    }
    const char *why = NULL;
    int rc = store_snapshot(j->store, j->fd, &j->applied, &why);
    if (rc != 0) {
        j->status = rc;
        snprintf(j->error, sizeof(j->error), "%s", why ? why : tdm_strerror(rc));
        return;
    }
    struct stat st;
    if (fstat(j->fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > REPL_WIRE_SEED_MAX) {
        j->status = TDM_ECORRUPT;
        snprintf(j->error, sizeof(j->error), "the snapshot has an unusable size");
        return;
    }
    j->size = (uint64_t)st.st_size;
    /* The checksum the copy verifies the whole file against, read back from the file itself:
     * what is sent is what was checked. */
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    uint8_t *buf = malloc(REPL_WIRE_CHUNK_MAX);
    if (buf == NULL) {
        j->status = -ENOMEM;
        snprintf(j->error, sizeof(j->error), "out of memory");
        return;
    }
    for (uint64_t off = 0; off < j->size;) {
        ssize_t n = pread(j->fd, buf, REPL_WIRE_CHUNK_MAX, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            j->status = n < 0 ? -errno : TDM_ECORRUPT;
            snprintf(j->error, sizeof(j->error), "cannot read the snapshot back at %llu",
                     (unsigned long long)off);
            free(buf);
            return;
        }
        crypto_hash_sha256_update(&h, buf, (unsigned long long)n);
        off += (uint64_t)n;
    }
    free(buf);
    crypto_hash_sha256_final(&h, j->sha256);
}

/* The generation on the active that holds LSN applied + 1: where the copy's log starts. */
static uint64_t
first_generation(struct store *store, uint64_t applied)
{
    struct store_status st;
    store_get_status(store, &st);
    uint64_t top = 0;
    bool top_closed = false;
    for (uint64_t g = st.lowest_generation; g && g <= st.current_generation; g++) {
        struct store_log_extent ext;
        if (store_log_extent(store, g, &ext) != 0)
            continue; /* a spare made current but not begun yet */
        if (ext.last_lsn >= applied + 1)
            return g;
        top = g;
        top_closed = ext.closed;
    }
    /* Not durable anywhere yet: the next record goes into the highest generation begun, or
     * the one after it once that is closed. */
    if (top == 0)
        return st.current_generation ? st.current_generation : 1;
    return top_closed ? top + 1 : top;
}

static void
snap_done(void *arg, bool ran)
{
    struct snap_job *j = arg;
    struct repl_src_peer *p = j->peer;
    p->job_running = false;
    if (!ran || p->conn == NULL || p->state != REPL_SRC_SEEDING || p->db == NULL) {
        if (j->fd >= 0)
            close(j->fd);
        free(j);
        repl__peer_maybe_free(p);
        return;
    }
    p->busy++;
    if (j->status != 0) {
        if (j->fd >= 0)
            close(j->fd);
        event_emit(TDM_EV_REPL_SOURCE_READ_FAILED, p->db->name,
                   "cannot snapshot database %s to seed server %s: %s (%s)", p->db->name, p->server,
                   j->error, tdm_strerror(j->status));
        repl__peer_fail(p, REPL_CODE_INTERNAL, "cannot snapshot the database here: %s", j->error);
    } else {
        p->seed_fd = j->fd;
        p->seed_size = j->size;
        p->seed_applied = j->applied;
        memcpy(p->seed_sha256, j->sha256, sizeof(p->seed_sha256));
        p->seed_first = first_generation(p->db->store, j->applied);
        p->seed_ready = true;
        /* The log from the first generation is what the copy needs now. */
        p->needed = p->seed_first;
        repl__floor_update(p->db);
        log_info("repl source: seeding %s of %s: a snapshot of %llu bytes up to LSN %llu, the "
                 "log from generation %llu",
                 p->server, p->db->name, (unsigned long long)p->seed_size,
                 (unsigned long long)p->seed_applied, (unsigned long long)p->seed_first);
        if (p->conn)
            repl__seed_pump(p);
    }
    free(j);
    p->busy--;
    repl__peer_maybe_free(p);
}

void
repl__seed_accept(struct repl_src_peer *p, struct repl_src_db *db)
{
    struct store_status st;
    store_get_status(db->store, &st);
    struct repl_msg m = {.type = REPL_HELLO_REPLY, .request_id = p->hello_id};
    struct repl_hello_reply *r = &m.u.hello_reply;
    r->version = REPL_WIRE_VERSION;
    r->code = REPL_CODE_OK;
    memcpy(r->guid, db->guid, REPL_WIRE_GUID_LEN);
    r->epoch = st.epoch;
    r->mode = db->mode;
    r->lowest_generation = st.lowest_generation;
    r->current_generation = st.current_generation;
    struct store_log_extent ext;
    r->durable_end =
        store_log_extent(db->store, st.current_generation, &ext) == 0 ? ext.durable_end : 0;

    p->state = REPL_SRC_SEEDING;
    db->n_peers++;
    /* Everything the active has, from before the snapshot is taken: the generation holding
     * its applied LSN + 1 is at or above the lowest one now. */
    p->needed = st.lowest_generation ? st.lowest_generation : 1;
    repl__floor_forget(db, p->server);
    repl__floor_update(db);
    event_emit(TDM_EV_REPL_SOURCE_COPY_CONNECTED, db->name,
               "%s copy of database %s on server %s (%s) connected for a seed from a snapshot",
               repl_role_name(p->role), db->name, p->server, conn_peer(p->conn));
    if (!repl__peer_send(p, &m))
        return;
    struct snap_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        log_fatal("repl source: out of memory");
    *j = (struct snap_job){
        .peer = p,
        .store = db->store,
        .dir = p->src->opt.seed_dir ? p->src->opt.seed_dir : "/tmp",
        .fd = -1,
    };
    if (offload_submit(p->src->seed_offload, snap_work, snap_done, j) != 0) {
        free(j);
        repl__peer_fail(p, REPL_CODE_LIMIT, "too many seeds at once here: try again later");
        return;
    }
    p->job_running = true;
    if (p->conn)
        conn_resume(p->conn); /* ACKs, the copy's sign of life, are read meanwhile */
}

/* ---- streaming ---- */

struct seed_chunk_job {
    struct repl_src_peer *peer; /* never touched by the work function */
    int fd;
    uint64_t off, size;
    /* Out: */
    int status;
    uint8_t *frame;
    size_t frame_len;
    uint32_t raw_len;
};

static void
seed_chunk_work(void *arg)
{
    struct seed_chunk_job *j = arg;
    uint64_t left = j->size - j->off;
    uint32_t len = left > REPL_WIRE_CHUNK_MAX ? REPL_WIRE_CHUNK_MAX : (uint32_t)left;
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        j->status = -ENOMEM;
        return;
    }
    for (uint32_t got = 0; got < len;) {
        ssize_t n = pread(j->fd, buf + got, len - got, (off_t)(j->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            j->status = n < 0 ? -errno : TDM_ECORRUPT;
            free(buf);
            return;
        }
        got += (uint32_t)n;
    }
    struct repl_msg m = {.type = REPL_SEED_DATA};
    m.u.seed_data = (struct repl_seed_data){
        .offset = j->off,
        .total_size = j->size,
        .compression = REPL_COMPRESSION_NONE,
        .raw_length = len,
        .data = buf,
        .data_len = len,
    };
    const char *error = NULL;
    j->status = repl_msg_encode_alloc(&m, &j->frame, &j->frame_len, &error);
    j->raw_len = len;
    free(buf);
}

static void
seed_chunk_done(void *arg, bool ran)
{
    struct seed_chunk_job *j = arg;
    struct repl_src_peer *p = j->peer;
    p->job_running = false;
    if (!ran || p->conn == NULL || p->state != REPL_SRC_SEEDING || p->db == NULL) {
        free(j->frame);
        free(j);
        repl__peer_maybe_free(p);
        return;
    }
    p->busy++;
    if (j->status != 0) {
        repl__peer_fail(p, REPL_CODE_INTERNAL, "cannot read the snapshot at %llu: %s",
                        (unsigned long long)j->off, tdm_strerror(j->status));
    } else if (conn_write(p->conn, j->frame, j->frame_len) == 0 && p->conn) {
        p->last_sent_us = repl__mono_us();
        p->bytes_sent += j->raw_len;
        p->bytes_raw += j->raw_len;
        p->seed_off = j->off + j->raw_len;
        repl__seed_pump(p);
    }
    free(j->frame);
    free(j);
    p->busy--;
    repl__peer_maybe_free(p);
}

void
repl__seed_pump(struct repl_src_peer *p)
{
    if (p->state != REPL_SRC_SEEDING || p->conn == NULL || p->db == NULL || !p->seed_ready ||
        p->seed_end_sent || p->job_running || conn_output_full(p->conn))
        return;
    if (p->seed_off < p->seed_size) {
        struct seed_chunk_job *j = calloc(1, sizeof(*j));
        if (j == NULL)
            log_fatal("repl source: out of memory");
        *j = (struct seed_chunk_job){
            .peer = p, .fd = p->seed_fd, .off = p->seed_off, .size = p->seed_size};
        if (offload_submit(p->src->seed_offload, seed_chunk_work, seed_chunk_done, j) != 0) {
            free(j); /* the queue is full: the tick retries */
            return;
        }
        p->job_running = true;
        return;
    }
    struct repl_msg m = {.type = REPL_SEED_END};
    struct repl_seed_end *e = &m.u.seed_end;
    e->total_size = p->seed_size;
    memcpy(e->sha256, p->seed_sha256, sizeof(e->sha256));
    memcpy(e->guid, p->db->guid, REPL_WIRE_GUID_LEN);
    e->applied_lsn = p->seed_applied;
    e->first_generation = p->seed_first;
    p->seed_end_sent = true;
    log_info("repl source: seed of %s for %s sent (%llu bytes); its log goes on from "
             "generation %llu",
             p->db->name, p->server, (unsigned long long)p->seed_size,
             (unsigned long long)p->seed_first);
    /* The copy closes once it has SEED_END: a close here could reach it as a reset (its ACKs
     * unread here), which can discard the last bytes before it reads them. */
    repl__peer_send(p, &m);
}

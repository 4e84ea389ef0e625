/*
 * A copy of a database (store_copy.h): receives shipped byte ranges of the active's generation
 * files, inspects them, writes them at the same offsets of its own generation files, and
 * replays durable records into its own LMDB with the store's own replay code.
 *
 * What a copy's log directory holds (docs/formats/log.md, "Copies"): generations [lowest,
 * top], each created fresh by the copy at the size its BEGIN names and zero-filled, holding the
 * active's bytes from offset 0 to the end of what was received. Every generation below the top
 * is closed (its END received). No spares, no recycled files.
 *
 * Crash safety: a range is written without a sync, and every *named* generation below the top
 * named one is closed and durable, whatever the file system writes back on its own. A
 * generation begun while the one before is not durable yet (it holds unsynced bytes, or a
 * sync job runs) is created under a temporary name (<generation>.log.tmp: no generation's
 * name, so nothing that lists generations sees it) and written there; the sync that makes it
 * durable fdatasyncs every file written since the last sync, oldest first, then renames the
 * temporary ones into place in order, then syncs the directory, and only then moves the
 * durable position that replay (and the source, through the copy agent) rely on. So one sync
 * covers several generations, and the copy never waits for the disk to begin one. A crash
 * leaves the renames as a prefix in order (a journaling file system commits directory
 * changes in order; the crash tests' model, tests/crash/fault_io.h), so the named generations
 * stay contiguous. After a crash, store_copy_open() removes the temporary files and finds a
 * prefix of what was received: a named top file whose header block or BEGIN never became
 * durable is removed, and the torn tail of the top generation is zeroed from its last valid
 * frame.
 *
 * The LMDB side is a struct store that is never mounted: no threads, only its environment,
 * metadata, mail tables and handler, so that replay (store__replay_record()) and checkpoints
 * (store__checkpoint()) are the very code the active runs.
 */
#include "store/store_copy.h"

#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/event.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the copy knows of each generation it holds. */
struct copy_gen_info {
    uint64_t first_lsn, last_lsn;
    uint64_t created_us;
    uint64_t end; /* offset past the last frame received (END included once closed) */
    bool closed;
};

/* The generation being received (the top one). */
struct copy_cur {
    uint64_t gen; /* 0: the copy holds no generation */
    int fd;
    uint64_t size; /* file size its BEGIN names */
    uint64_t off;  /* where the next frame goes: the end of what was received */
    uint64_t epoch, first_lsn, created_us;
    uint64_t last_lsn; /* of the last data record received, first_lsn - 1 if none */
    uint64_t records;
    uint32_t checksum;     /* running CRC32C over its frames, BEGIN included */
    uint32_t end_checksum; /* once closed: its END's generation checksum */
    bool closed;
};

struct store_copy {
    struct store *db; /* owned, never mounted: environment, meta, tables, handler */
    const struct io_ops *io;
    uint64_t first_gen; /* expected first while the copy holds no generation */
    struct copy_cur cur;
    /* The generations written since the last sync started are [dirty_from, cur.gen] (0: none);
     * those above named_top are under their temporary name until a sync renames them. A sync
     * job started sets named_top to cur.gen: it renames them before it ends, and nothing reads
     * a generation by its name before the durable position reaches it. */
    uint64_t dirty_from;
    uint64_t named_top;
    bool dir_dirty;    /* a file created or removed since the last sync */
    bool sync_running; /* a store_copy_sync_start() job not ended yet */
    /* Truncated generations' files, for the next sync job to unlink (store_copy_truncate()). */
    char **doomed;
    size_t n_doomed, cap_doomed;

    uint64_t lowest;            /* lowest generation held (0: none) */
    struct copy_gen_info *gens; /* [g - lowest] for g in [lowest, cur.gen] */
    size_t cap;

    struct store_copy_position durable;
    uint64_t inspected_gen; /* highest generation received whole */
    /* Replay's cursor: the next frame to replay is at rp_off in generation rp_gen (0: not
     * known yet, found from the applied LSN), so that replay reads each frame once instead of
     * rescanning the current generation at every call. */
    uint64_t rp_gen, rp_off;
    uint64_t bytes_since_ckpt;
    uint64_t last_ckpt_ms;
    uint64_t last_received_us, last_replayed_us;
    int failed;

    pthread_mutex_t lock; /* guards st, the copy's status for other threads */
    struct store_copy_status st;
};

static bool
mem_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

static void
position_get(const struct store_copy *c, struct store_copy_position *pos)
{
    if (c->cur.gen == 0) {
        *pos = (struct store_copy_position){
            .generation = c->first_gen, .lsn = c->db->applied_lsn, .epoch = c->db->epoch};
    } else if (c->cur.closed) {
        *pos = (struct store_copy_position){
            .generation = c->cur.gen + 1, .lsn = c->cur.last_lsn, .epoch = c->cur.epoch};
    } else {
        *pos = (struct store_copy_position){.generation = c->cur.gen,
                                            .offset = c->cur.off,
                                            .lsn = c->cur.last_lsn,
                                            .epoch = c->cur.epoch};
    }
}

/* Publishes the status snapshot for other threads. */
static void
status_publish(struct store_copy *c, const char *failure)
{
    struct store_copy_status st;
    memset(&st, 0, sizeof(st));
    memcpy(st.guid, c->db->guid, sizeof(st.guid));
    memcpy(st.kind, c->db->kind, sizeof(st.kind));
    st.epoch = c->cur.gen ? c->cur.epoch : c->db->epoch;
    position_get(c, &st.received);
    st.durable = c->durable;
    st.inspected_generation = c->inspected_gen;
    st.replayed_lsn = c->db->applied_lsn;
    for (uint64_t g = c->lowest; c->lowest && g <= c->cur.gen; g++) {
        const struct copy_gen_info *i = &c->gens[g - c->lowest];
        if (i->closed && i->last_lsn <= c->db->applied_lsn)
            st.replayed_generation = g;
    }
    st.lowest_generation = c->lowest;
    st.checkpoint_lsn = c->db->checkpoint_lsn;
    st.last_received_us = c->last_received_us;
    st.last_replayed_us = c->last_replayed_us;
    st.failed = c->failed != 0;
    pthread_mutex_lock(&c->lock);
    if (failure)
        snprintf(st.failure, sizeof(st.failure), "%s", failure);
    else
        memcpy(st.failure, c->st.failure, sizeof(st.failure));
    c->st = st;
    pthread_mutex_unlock(&c->lock);
}

/* Sticky failure: the copy refuses everything after an I/O error (fsync errors are not
 * transient: CONVENTIONS.md). */
static int
copy_fail(struct store_copy *c, int err, const char *what)
{
    if (!c->failed) {
        c->failed = err;
        char msg[256];
        snprintf(msg, sizeof(msg), "%s: %s", what, tdm_strerror(err));
        event_emit(TDM_EV_STORE_WRITE_FAILED, c->db->name,
                   "copy %s failed: %s; the copy is Failed (reseed or restart it)", c->db->dir,
                   msg);
        status_publish(c, msg);
    }
    return err;
}

static int
gens_push(struct store_copy *c, uint64_t gen, const struct copy_gen_info *info)
{
    if (c->lowest == 0)
        c->lowest = gen;
    size_t idx = (size_t)(gen - c->lowest);
    if (idx >= c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        while (ncap <= idx)
            ncap *= 2;
        struct copy_gen_info *n = realloc(c->gens, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        c->gens = n;
        c->cap = ncap;
    }
    c->gens[idx] = *info;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Creation                                                           */

int
store_copy_create(const char *dir, const uint8_t guid[TDM_LOG_GUID_LEN], const char *kind,
                  uint64_t first_generation, const char **error_r)
{
    *error_r = NULL;
    if (first_generation == 0) {
        *error_r = "a copy's first generation is 1 or higher";
        return TDM_EINVAL;
    }
    if (kind && !store_kind_valid(kind)) {
        *error_r = store__errorf("database kind \"%.64s\" is not a kind name", kind);
        return TDM_EINVAL;
    }
    struct store *s = store__alloc(dir, NULL);
    if (!s)
        return -ENOMEM;
    memcpy(s->guid, guid, sizeof(s->guid));
    int ret = store__dirs_create(s, error_r);
    if (ret == 0)
        ret = store__lmdb_create(s, kind, error_r);
    MDB_txn *txn = NULL;
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret == 0) {
        ret = store__meta_put_u64(txn, s->meta, STORE_META_COPY_FIRST, first_generation);
        ret = ret == 0 ? store__lmdb_err(mdb_txn_commit(txn)) : (mdb_txn_abort(txn), ret);
    }
    if (ret == 0)
        ret = store__lmdb_err(mdb_env_sync(s->env, 1));
    if (ret == 0)
        ret = s->io->sync_dir(s->io, s->log_dir);
    if (ret == 0)
        ret = s->io->sync_dir(s->io, dir);
    if (ret < 0 && !*error_r)
        *error_r = store__errorf("cannot create copy in %s: %s", dir, tdm_strerror(ret));
    store__free(s);
    return ret;
}

int
store_copy_create_from_snapshot(const char *dir, const char *snapshot_path,
                                const uint8_t guid[TDM_LOG_GUID_LEN], uint64_t first_generation,
                                const char **error_r)
{
    *error_r = NULL;
    if (first_generation == 0) {
        *error_r = "a copy's first generation is 1 or higher";
        return TDM_EINVAL;
    }
    struct store *s = store__alloc(dir, NULL);
    if (!s)
        return -ENOMEM;
    char *mdb = store__path_join(s->lmdb_dir, "data.mdb");
    int ret = mdb ? store__dirs_create(s, error_r) : -ENOMEM;
    if (ret == 0 && rename(snapshot_path, mdb) < 0) {
        ret = -errno;
        *error_r = store__errorf("cannot move the snapshot %s to %s: %s", snapshot_path, mdb,
                                 strerror(errno));
    }
    if (ret == 0)
        ret = store__env_open(s->lmdb_dir, s->opt.map_size, false, &s->env, error_r);
    uint64_t applied = 0, ckpt = 0, clean = 0;
    char boot[40];
    if (ret == 0)
        ret = store__meta_read(s, &applied, &ckpt, &clean, boot, error_r);
    if (ret == 0 && memcmp(s->guid, guid, sizeof(s->guid)) != 0) {
        *error_r =
            store__errorf("the snapshot %s is of another database (GUID differs)", snapshot_path);
        ret = TDM_EFOREIGN;
    }
    MDB_txn *txn = NULL;
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret == 0) {
        ret = store__meta_put_u64(txn, s->meta, STORE_META_COPY_FIRST, first_generation);
        ret = ret == 0 ? store__lmdb_err(mdb_txn_commit(txn)) : (mdb_txn_abort(txn), ret);
    }
    /* Clean, with everything it holds checkpointed: the snapshot came from a running active. */
    s->applied_lsn = applied;
    if (ret == 0)
        ret = store__meta_mark(s, true);
    if (ret == 0)
        ret = s->io->sync_dir(s->io, s->lmdb_dir);
    if (ret == 0)
        ret = s->io->sync_dir(s->io, s->log_dir);
    if (ret == 0)
        ret = s->io->sync_dir(s->io, dir);
    if (ret < 0 && !*error_r)
        *error_r = store__errorf("cannot create copy in %s: %s", dir, tdm_strerror(ret));
    free(mdb);
    store__free(s);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Open and recovery                                                  */

static int
copy_corrupt(struct store_copy *c, const char *path, uint64_t offset, const char *reason,
             const char **error_r)
{
    char why[512];
    snprintf(why, sizeof(why), "%s", reason); /* reason may live in store__errorf's buffer */
    event_emit(TDM_EV_STORE_LOG_CORRUPT, c->db->name,
               "log generation %s of copy %s is corrupt at offset %" PRIu64 ": %s; reseed the "
               "copy",
               path, c->db->dir, offset, why);
    *error_r = store__errorf("%s: offset %" PRIu64 ": %s", path, offset, why);
    return TDM_ECORRUPT;
}

/*
 * True when the scan of a top file shows no durable generation of its own number: a header
 * or BEGIN never written or torn (a creation cut short by a crash), a file shorter than its
 * BEGIN says (the growth lost), a spare of a store last mounted as active (never begun, or
 * recycled: its BEGIN names the generation it was).
 */
static bool
top_is_junk(int scan_ret, const struct gen_scan *sc, uint64_t gen)
{
    if (scan_ret == TDM_ECORRUPT)
        return true;
    return sc->blank_header || sc->unbegun || sc->hdr.generation != gen;
}

/* Removes the top generation files that are not part of the log (see store_copy.h). */
static int
recover_top(struct store_copy *c, uint64_t *gens, size_t *n_r, const char **error_r)
{
    char path[4096];
    size_t n = *n_r;
    bool removed = false;
    int ret = 0;
    while (n > 0) {
        struct gen_scan sc;
        const char *why = NULL;
        store__gen_path(path, sizeof(path), c->db->log_dir, gens[n - 1]);
        ret = store__gen_scan(c->io, path, NULL, NULL, &sc, &why);
        if (ret < 0 && ret != TDM_ECORRUPT) {
            *error_r = why;
            return ret;
        }
        bool junk = top_is_junk(ret, &sc, gens[n - 1]);
        if (!junk)
            break;
        ret = c->io->unlink(c->io, path);
        if (ret < 0) {
            *error_r = store__errorf("cannot remove %s: %s", path, strerror(-ret));
            return ret;
        }
        removed = true;
        n--;
    }
    if (removed) {
        ret = c->io->sync_dir(c->io, c->db->log_dir);
        if (ret < 0) {
            *error_r = store__errorf("cannot sync %s: %s", c->db->log_dir, strerror(-ret));
            return ret;
        }
    }
    *n_r = n;
    return 0;
}

/* A generation's temporary name, until the sync that makes the one before it durable. */
#define COPY_TMP_SUFFIX ".tmp"

static void
tmp_path(char *buf, size_t size, const char *log_dir, uint64_t gen)
{
    snprintf(buf, size, "%s/%016" PRIx64 ".log" COPY_TMP_SUFFIX, log_dir, gen);
}

/* The path of generation g as it is now: temporary above named_top. */
static void
cur_path(const struct store_copy *c, char *buf, size_t size, uint64_t g)
{
    if (g > c->named_top)
        tmp_path(buf, size, c->db->log_dir, g);
    else
        store__gen_path(buf, size, c->db->log_dir, g);
}

/* Removes the temporary generation files a crash left: never durably renamed, so never
 * acknowledged (a sync renames before the durable position moves); shipped again. */
static int
remove_temporaries(struct store_copy *c, const char **error_r)
{
    DIR *d = opendir(c->db->log_dir);
    if (!d) {
        *error_r = store__errorf("cannot list %s: %s", c->db->log_dir, strerror(errno));
        return -errno;
    }
    char path[4096];
    bool removed = false;
    int ret = 0;
    struct dirent *de;
    const size_t gen_len = 20; /* <16 hex digits>.log */
    while (ret == 0 && (de = readdir(d)) != NULL) {
        char name[32];
        uint64_t g;
        if (strlen(de->d_name) != gen_len + strlen(COPY_TMP_SUFFIX) ||
            strcmp(de->d_name + gen_len, COPY_TMP_SUFFIX) != 0)
            continue;
        memcpy(name, de->d_name, gen_len);
        name[gen_len] = '\0';
        if (store__gen_parse_name(name, &g) < 0)
            continue;
        tmp_path(path, sizeof(path), c->db->log_dir, g);
        ret = c->io->unlink(c->io, path);
        if (ret < 0)
            *error_r = store__errorf("cannot remove %s: %s", path, strerror(-ret));
        removed = true;
    }
    closedir(d);
    if (ret == 0 && removed) {
        ret = c->io->sync_dir(c->io, c->db->log_dir);
        if (ret < 0)
            *error_r = store__errorf("cannot sync %s: %s", c->db->log_dir, strerror(-ret));
    }
    return ret;
}

/* Checks every generation held and makes the top one current. */
static int
recover_log(struct store_copy *c, const char **error_r)
{
    char path[4096];
    uint64_t *gens = NULL;
    size_t n = 0;
    int ret = remove_temporaries(c, error_r);
    if (ret < 0)
        return ret;
    ret = store__gen_list(c->db->log_dir, &gens, &n);
    if (ret < 0) {
        *error_r = store__errorf("cannot list %s: %s", c->db->log_dir, strerror(-ret));
        return ret;
    }
    for (size_t i = 1; i < n; i++)
        if (gens[i] != gens[i - 1] + 1) {
            store__gen_path(path, sizeof(path), c->db->log_dir, gens[i - 1] + 1);
            *error_r = store__errorf("log generation %s is missing", path);
            free(gens);
            return TDM_EGAP;
        }
    ret = recover_top(c, gens, &n, error_r);
    if (ret < 0)
        goto out;

    struct gen_scan sc, prev;
    memset(&prev, 0, sizeof(prev));
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        store__gen_path(path, sizeof(path), c->db->log_dir, gens[i]);
        ret = store__gen_scan(c->io, path, NULL, NULL, &sc, &why);
        if (ret == TDM_ECORRUPT) {
            ret = copy_corrupt(c, path, 0, why, error_r);
            goto out;
        }
        if (ret < 0) {
            *error_r = why;
            goto out;
        }
        if (sc.blank_header || sc.unbegun || sc.hdr.version < TDM_LOG_VERSION_BEGIN) {
            ret = copy_corrupt(c, path, TDM_LOG_HEADER_SIZE, "generation has no BEGIN record",
                               error_r);
            goto out;
        }
        if (memcmp(sc.hdr.guid, c->db->guid, sizeof(c->db->guid)) != 0) {
            *error_r = store__errorf("%s belongs to another database (GUID differs)", path);
            ret = TDM_EFOREIGN;
            goto out;
        }
        if (sc.hdr.generation != gens[i]) {
            ret = copy_corrupt(c, path, TDM_LOG_HEADER_SIZE,
                               "BEGIN names another generation than the file name", error_r);
            goto out;
        }
        if (i > 0 &&
            (sc.hdr.first_lsn != prev.last_lsn + 1 ||
             sc.hdr.prev_checksum != prev.end_rec.gen_checksum || sc.hdr.epoch < prev.hdr.epoch)) {
            ret = copy_corrupt(c, path, TDM_LOG_HEADER_SIZE,
                               "BEGIN does not chain to the previous generation", error_r);
            goto out;
        }
        if (i + 1 < n && sc.end != GEN_SCAN_END_RECORD) {
            ret = copy_corrupt(c, path, sc.end == GEN_SCAN_INVALID ? sc.bad_offset : sc.valid_end,
                               sc.end == GEN_SCAN_INVALID ? sc.bad_reason
                                                          : "closed generation has no END record",
                               error_r);
            goto out;
        }
        bool closed = sc.end == GEN_SCAN_END_RECORD;
        struct copy_gen_info info = {.first_lsn = sc.hdr.first_lsn,
                                     .last_lsn = sc.last_lsn,
                                     .created_us = sc.hdr.created_us,
                                     .end = sc.valid_end + (closed ? TDM_LOG_END_FRAME : 0),
                                     .closed = closed};
        ret = gens_push(c, gens[i], &info);
        if (ret < 0)
            goto out;
        prev = sc;
    }
    if (n == 0)
        goto out;

    /* The top generation: cut what follows its last valid frame (a torn or dropped write). */
    store__gen_path(path, sizeof(path), c->db->log_dir, gens[n - 1]);
    if (sc.end == GEN_SCAN_INVALID || (sc.end == GEN_SCAN_ZERO_FILL && sc.tail_dirty)) {
        ret = store__cut_tail(c->db, path, sc.valid_end, sc.file_size);
        if (ret < 0) {
            *error_r = store__errorf("cannot cut the torn tail of %s: %s", path, tdm_strerror(ret));
            goto out;
        }
        if (sc.end == GEN_SCAN_INVALID)
            event_emit(TDM_EV_STORE_TORN_TAIL_CUT, c->db->name,
                       "torn tail of %s cut at offset %" PRIu64 " (%s); it is shipped again", path,
                       sc.valid_end, sc.bad_reason);
    }
    c->cur = (struct copy_cur){
        .gen = gens[n - 1],
        .fd = -1,
        .size = sc.hdr.file_size,
        .off = sc.end == GEN_SCAN_END_RECORD ? sc.valid_end + TDM_LOG_END_FRAME : sc.valid_end,
        .epoch = sc.hdr.epoch,
        .first_lsn = sc.hdr.first_lsn,
        .created_us = sc.hdr.created_us,
        .last_lsn = sc.last_lsn,
        .records = sc.records,
        .checksum = sc.checksum,
        .end_checksum = sc.end_rec.gen_checksum,
        .closed = sc.end == GEN_SCAN_END_RECORD,
    };
    c->named_top = c->cur.gen;
    c->cur.fd = c->io->open(c->io, path, O_RDWR, 0);
    if (c->cur.fd < 0) {
        ret = c->cur.fd;
        *error_r = store__errorf("cannot open %s: %s", path, strerror(-ret));
        goto out;
    }
    /* What the scan read back may sit in the page cache only (a process crash, not a power
     * loss): make it durable before it counts as the durable position, which replay (and
     * then LMDB's checkpoints) rely on. */
    ret = c->io->fdatasync(c->io, c->cur.fd);
    if (ret == 0)
        ret = c->io->sync_dir(c->io, c->db->log_dir);
    if (ret < 0) {
        *error_r = store__errorf("cannot sync %s: %s", path, strerror(-ret));
        goto out;
    }
    if (c->cur.epoch > c->db->epoch)
        c->db->epoch = c->cur.epoch;
    /* Every generation below the top is closed, and the top one counts once closed. */
    c->inspected_gen = c->cur.closed ? c->cur.gen : c->cur.gen - 1;
    if (c->gens[0].first_lsn > c->db->applied_lsn + 1) {
        *error_r = store__errorf("the copy's log starts at LSN %" PRIu64 " but its database "
                                 "has applied only up to %" PRIu64 ": generations are missing",
                                 c->gens[0].first_lsn, c->db->applied_lsn);
        ret = TDM_EGAP;
    }
out:
    free(gens);
    return ret;
}

static int
meta_first_gen(struct store_copy *c, uint64_t *first_r)
{
    MDB_txn *txn;
    int ret = store__lmdb_err(mdb_txn_begin(c->db->env, NULL, MDB_RDONLY, &txn));
    if (ret < 0)
        return ret;
    if (store__meta_get_u64(txn, c->db->meta, STORE_META_COPY_FIRST, first_r) < 0)
        *first_r = 0; /* a database last mounted as active */
    mdb_txn_abort(txn);
    return 0;
}

static void
copy_free(struct store_copy *c)
{
    if (!c)
        return;
    if (c->cur.fd >= 0)
        c->io->close(c->io, c->cur.fd);
    store__free(c->db);
    free(c->gens);
    for (size_t i = 0; i < c->n_doomed; i++)
        free(c->doomed[i]);
    free(c->doomed);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int
store_copy_open(const char *dir, const struct store_options *opt, struct store_copy **copy_r,
                const char **error_r)
{
    struct store_options defaults;
    *error_r = NULL;
    if (!opt) {
        store_options_init(&defaults);
        opt = &defaults;
    }
    int ret = store__options_check(opt, error_r);
    if (ret < 0)
        return ret;
    struct store_copy *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    c->cur.fd = -1;
    c->db = store__alloc(dir, opt);
    if (!c->db) {
        copy_free(c);
        return -ENOMEM;
    }
    c->io = c->db->io;
    struct stat st_log, st_lmdb;
    if (stat(c->db->log_dir, &st_log) < 0 || !S_ISDIR(st_log.st_mode) ||
        stat(c->db->lmdb_dir, &st_lmdb) < 0 || !S_ISDIR(st_lmdb.st_mode)) {
        *error_r = store__errorf("%s is not a tandem database or copy: it has no log/ and "
                                 "store/ directories",
                                 dir);
        copy_free(c);
        return TDM_EFOREIGN;
    }
    ret = store__lock_dir(c->db, error_r);
    if (ret == 0)
        ret = store__env_open(c->db->lmdb_dir, c->db->opt.map_size, false, &c->db->env, error_r);
    uint64_t applied = 0, ckpt = 0, clean = 0;
    char boot[40];
    if (ret == 0)
        ret = store__meta_read(c->db, &applied, &ckpt, &clean, boot, error_r);
    if (ret == 0 && !c->db->opt.handler && strcmp(c->db->kind, STORE_KIND_MAIL) != 0) {
        *error_r = store__errorf("copy %s is of a '%s' database; open it with the %s handler", dir,
                                 c->db->kind, c->db->kind);
        ret = TDM_EINVAL;
    }
    if (ret == 0)
        ret = meta_first_gen(c, &c->first_gen);
    c->db->applied_lsn = applied;
    if (ret == 0)
        ret = recover_log(c, error_r);
    if (ret == 0 && c->first_gen == 0)
        c->first_gen = c->lowest ? c->lowest : 1;
    if (ret == 0) {
        /* Replay starts from LMDB's applied LSN, durable now (the first checkpoint). */
        ret = store__meta_mark(c->db, false);
        if (ret < 0)
            *error_r = store__errorf("cannot mark %s open: %s", c->db->lmdb_dir, tdm_strerror(ret));
    }
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot open copy %s: %s", dir, tdm_strerror(ret));
        copy_free(c);
        return ret;
    }
    c->last_ckpt_ms = store__now_ms();
    /* Everything found on disk after recovery is durable: the scan read it back, and cut
     * tails were synced. */
    position_get(c, &c->durable);
    status_publish(c, NULL);
    *copy_r = c;
    return 0;
}

int
store_copy_close(struct store_copy **cp)
{
    struct store_copy *c = *cp;
    if (!c)
        return 0;
    *cp = NULL;
    int ret = c->failed;
    if (!ret)
        ret = store_copy_sync(c, NULL);
    if (!ret)
        ret = store__meta_mark(c->db, true);
    copy_free(c);
    return ret;
}

void
store_copy_get_position(struct store_copy *c, struct store_copy_position *pos_r)
{
    position_get(c, pos_r);
}

void
store_copy_get_status(struct store_copy *c, struct store_copy_status *st_r)
{
    pthread_mutex_lock(&c->lock);
    *st_r = c->st;
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ */
/* Receiving                                                          */

/* The largest file a generation can be: one record larger than a generation gets its own. */
#define COPY_MAX_FILE_SIZE                                                                         \
    ((uint64_t)TDM_LOG_MAX_GENERATION_SIZE + TDM_LOG_MAX_PAYLOAD + 2 * TDM_LOG_HEADER_SIZE)

static int
bad(uint64_t gen, uint64_t off, const char *check, const char **error_r)
{
    char why[512];
    snprintf(why, sizeof(why), "%s", check); /* check may live in store__errorf's buffer */
    *error_r = store__errorf("generation %" PRIu64 " offset %" PRIu64 ": %s", gen, off, why);
    return TDM_ECORRUPT;
}

/* Inspects the header block and BEGIN of a new generation into *g. */
static int
inspect_begin(const struct store_copy *c, uint64_t gen, const uint8_t *b, size_t len,
              struct copy_cur *g, const char **error_r)
{
    if (len < TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME)
        return bad(gen, 0, "a generation's first range must hold its header block and BEGIN",
                   error_r);
    struct log_header hdr;
    const char *why = NULL;
    if (log_header_decode(b, TDM_LOG_HEADER_USED, &hdr, &why) < 0)
        return bad(gen, 0, store__errorf("header: %s", why), error_r);
    if (hdr.version < TDM_LOG_VERSION_BEGIN)
        return bad(gen, 8, "header version: only generations with a BEGIN record replicate",
                   error_r);
    if (memcmp(hdr.guid, c->db->guid, sizeof(hdr.guid)) != 0)
        return bad(gen, 16, "header GUID is another database's", error_r);
    if (!mem_zero(b + TDM_LOG_HEADER_USED, TDM_LOG_HEADER_SIZE - TDM_LOG_HEADER_USED))
        return bad(gen, TDM_LOG_HEADER_USED, "header block holds bytes after the header", error_r);
    struct log_record rec;
    size_t flen = 0;
    int rc =
        log_record_decode(b + TDM_LOG_HEADER_SIZE, len - TDM_LOG_HEADER_SIZE, &rec, &flen, &why);
    if (rc != 0 || rec.type != TDM_REC_BEGIN)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   rc < 0 ? store__errorf("BEGIN frame: %s", why) : "the first frame is not BEGIN",
                   error_r);
    if (log_begin_decode(&rec, &hdr, &why) < 0)
        return bad(gen, TDM_LOG_HEADER_SIZE, store__errorf("BEGIN: %s", why), error_r);
    if (hdr.generation != gen)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("BEGIN names generation %" PRIu64, hdr.generation), error_r);
    if (hdr.file_size % 4096 != 0 || hdr.file_size < TDM_LOG_MIN_GENERATION_SIZE ||
        hdr.file_size > COPY_MAX_FILE_SIZE)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("BEGIN's file size %u is not a generation's", hdr.file_size),
                   error_r);
    /* Only against a previous generation: a copy seeded from a snapshot holds the active's
     * current epoch in its metadata, and may need generations of an older one first. */
    uint64_t prev_epoch = c->cur.gen ? c->cur.epoch : 0;
    if (hdr.epoch < prev_epoch)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("epoch %" PRIu64
                                 " is older than the previous generation's %" PRIu64,
                                 hdr.epoch, prev_epoch),
                   error_r);
    if (c->cur.gen && hdr.first_lsn != c->cur.last_lsn + 1)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("gap in LSN: the generation begins at %" PRIu64
                                 ", the previous one ended at %" PRIu64,
                                 hdr.first_lsn, c->cur.last_lsn),
                   error_r);
    if (!c->cur.gen && (hdr.first_lsn == 0 || hdr.first_lsn > c->db->applied_lsn + 1))
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("gap in LSN: the generation begins at %" PRIu64
                                 ", the copy's database has applied up to %" PRIu64,
                                 hdr.first_lsn, c->db->applied_lsn),
                   error_r);
    if (c->cur.gen && hdr.prev_checksum != c->cur.end_checksum)
        return bad(gen, TDM_LOG_HEADER_SIZE,
                   store__errorf("broken chain: BEGIN's previous checksum %08x is not generation "
                                 "%" PRIu64 "'s END checksum %08x",
                                 hdr.prev_checksum, c->cur.gen, c->cur.end_checksum),
                   error_r);
    *g = (struct copy_cur){
        .gen = gen,
        .fd = -1,
        .size = hdr.file_size,
        .off = TDM_LOG_HEADER_SIZE + flen,
        .epoch = hdr.epoch,
        .first_lsn = hdr.first_lsn,
        .created_us = hdr.created_us,
        .last_lsn = hdr.first_lsn - 1,
        .checksum = crc32c(0, b + TDM_LOG_HEADER_SIZE, flen),
    };
    return 0;
}

/* Inspects the frames in b[pos, len) as the continuation of *g, advancing it. */
static int
inspect_frames(const uint8_t *b, size_t len, size_t pos, struct copy_cur *g, const char **error_r)
{
    while (pos < len) {
        if (g->closed) {
            *error_r = store__errorf("generation %" PRIu64 " offset %" PRIu64
                                     ": bytes after the END record",
                                     g->gen, g->off);
            return TDM_EINVAL;
        }
        struct log_record rec;
        size_t flen = 0;
        const char *why = NULL;
        int rc = log_record_decode(b + pos, len - pos, &rec, &flen, &why);
        if (rc == 1)
            return bad(g->gen, g->off, "a zero frame header: ranges hold whole frames only",
                       error_r);
        if (rc == TDM_ENEEDMORE)
            return bad(g->gen, g->off, "the range ends inside a frame", error_r);
        if (rc < 0)
            return bad(g->gen, g->off, store__errorf("frame: %s", why), error_r);
        if (g->off + flen > g->size)
            return bad(g->gen, g->off, "frame runs past the generation's file size", error_r);
        if (rec.epoch != g->epoch)
            return bad(g->gen, g->off, "record epoch differs from the generation's", error_r);
        if (rec.type == TDM_REC_BEGIN)
            return bad(g->gen, g->off, "BEGIN record after the start of the generation", error_r);
        if (rec.type == TDM_REC_END) {
            struct log_end end;
            if (log_end_decode(rec.payload, rec.length, &end) < 0 ||
                rec.lsn != (g->records ? g->last_lsn : 0) || end.record_count != g->records)
                return bad(g->gen, g->off, "END record does not match the generation's records",
                           error_r);
            if (end.gen_checksum != g->checksum)
                return bad(g->gen, g->off,
                           store__errorf("END's generation checksum %08x differs from the "
                                         "frames' %08x",
                                         end.gen_checksum, g->checksum),
                           error_r);
            g->closed = true;
            g->end_checksum = end.gen_checksum;
        } else {
            if (rec.lsn != g->last_lsn + 1)
                return bad(g->gen, g->off,
                           store__errorf("gap in LSN: record %" PRIu64 " after %" PRIu64, rec.lsn,
                                         g->last_lsn),
                           error_r);
            if (g->off + flen + TDM_LOG_END_FRAME > g->size)
                return bad(g->gen, g->off, "no room for the END record after this frame", error_r);
            g->checksum = crc32c(g->checksum, b + pos, flen);
            g->records++;
            g->last_lsn = rec.lsn;
        }
        g->off += flen;
        pos += flen;
    }
    return 0;
}

/* Creates generation g's file, zero-filled to its size, under its temporary name or its own. */
static int
create_file(struct store_copy *c, const struct copy_cur *g, bool temporary, int *fd_r)
{
    char path[4096];
    if (temporary)
        tmp_path(path, sizeof(path), c->db->log_dir, g->gen);
    else
        store__gen_path(path, sizeof(path), c->db->log_dir, g->gen);
    int fd = c->io->open(c->io, path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (fd < 0)
        return fd;
    int ret = c->io->allocate(c->io, fd, (off_t)g->size);
    if (ret < 0) {
        c->io->close(c->io, fd);
        c->io->unlink(c->io, path);
        return ret;
    }
    *fd_r = fd;
    return 0;
}

int
store_copy_receive(struct store_copy *c, uint64_t gen, uint64_t offset, const uint8_t *bytes,
                   size_t len, const char **error_r)
{
    *error_r = NULL;
    if (c->failed) {
        *error_r = "the copy is Failed";
        return TDM_EFAILED;
    }
    struct store_copy_position pos;
    position_get(c, &pos);
    if (gen != pos.generation || offset != pos.offset) {
        *error_r =
            store__errorf("bytes for generation %" PRIu64 " offset %" PRIu64
                          " are not at the copy's position: generation %" PRIu64 " offset %" PRIu64,
                          gen, offset, pos.generation, pos.offset);
        return TDM_EINVAL;
    }
    if (len == 0)
        return 0;
    if (!store_copy_receive_ready(c, offset)) {
        *error_r = "too many generations wait for a sync: begin the next one after it";
        return -EBUSY;
    }
    struct copy_cur g;
    size_t start = 0;
    int ret;
    if (offset == 0) {
        ret = inspect_begin(c, gen, bytes, len, &g, error_r);
        start = (size_t)g.off;
    } else {
        g = c->cur;
        ret = 0;
    }
    if (ret == 0)
        ret = inspect_frames(bytes, len, start, &g, error_r);
    if (ret < 0)
        return ret;

    /* Inspected: write it. */
    if (offset == 0) {
        /* Under its own name only when every generation before it is durable (see the top of
         * the file): the first one, or after a sync with nothing written since. */
        bool temporary = c->cur.gen != 0 && (c->sync_running || c->dirty_from || c->dir_dirty);
        ret = create_file(c, &g, temporary, &g.fd);
        if (ret < 0)
            return copy_fail(c, ret, store__errorf("creating generation %" PRIu64, gen));
        ret = io_pwrite_all(c->io, g.fd, bytes, len, 0);
        if (ret < 0) {
            c->io->close(c->io, g.fd);
            return copy_fail(c, ret, store__errorf("writing generation %" PRIu64, gen));
        }
        struct copy_gen_info info = {.first_lsn = g.first_lsn, .created_us = g.created_us};
        ret = gens_push(c, gen, &info);
        if (ret < 0) {
            c->io->close(c->io, g.fd);
            return copy_fail(c, ret, "recording a generation");
        }
        /* The one before needs no descriptor: a sync opens what it syncs by name. */
        if (c->cur.fd >= 0)
            c->io->close(c->io, c->cur.fd);
        if (!temporary)
            c->named_top = gen;
        c->dir_dirty = true;
    } else {
        ret = io_pwrite_all(c->io, c->cur.fd, bytes, len, (off_t)offset);
        if (ret < 0)
            return copy_fail(c, ret, store__errorf("writing generation %" PRIu64, gen));
    }
    c->cur = g;
    if (!c->dirty_from)
        c->dirty_from = gen;
    struct copy_gen_info *info = &c->gens[gen - c->lowest];
    info->last_lsn = g.last_lsn;
    info->end = g.off;
    info->closed = g.closed;
    if (g.closed)
        c->inspected_gen = gen;
    c->last_received_us = store__now_us_wall();
    status_publish(c, NULL);
    return 0;
}

int
store_copy_sync(struct store_copy *c, struct store_copy_position *durable_r)
{
    struct store_copy_sync_job job;
    int ret = store_copy_sync_start(c, &job);
    if (ret == -ENOMEM)
        return copy_fail(c, ret, "syncing received log");
    if (ret < 0)
        return ret;
    if (ret == 1) {
        store_copy_sync_run(&job);
        return store_copy_sync_end(c, &job, durable_r);
    }
    if (durable_r)
        *durable_r = c->durable;
    return 0;
}

bool
store_copy_unlinks_pending(struct store_copy *c)
{
    return c->n_doomed > 0;
}

bool
store_copy_receive_ready(struct store_copy *c, uint64_t offset)
{
    return offset != 0 || c->cur.gen == 0 || c->cur.gen - c->named_top < STORE_COPY_MAX_UNNAMED;
}

int
store_copy_sync_start(struct store_copy *c, struct store_copy_sync_job *job)
{
    if (c->failed)
        return TDM_EFAILED;
    if (c->sync_running)
        return -EBUSY;
    if (!c->dirty_from && !c->dir_dirty && !c->n_doomed) {
        position_get(c, &c->durable);
        status_publish(c, NULL);
        return 0;
    }
    *job = (struct store_copy_sync_job){.io = c->io};
    struct stat st;
    if (stat(c->db->log_dir, &st) < 0)
        return -errno;
    job->dir_dev = st.st_dev;
    job->dir_ino = st.st_ino;
    size_t n_files = c->dirty_from ? (size_t)(c->cur.gen - c->dirty_from + 1) : 0;
    size_t n_renames = (size_t)(c->cur.gen - c->named_top);
    char path[4096];
    bool nomem = false;
    if (n_files) {
        job->files = calloc(n_files, sizeof(*job->files));
        nomem = !job->files;
        for (size_t i = 0; !nomem && i < n_files; i++, job->n_files++) {
            cur_path(c, path, sizeof(path), c->dirty_from + i);
            nomem = !(job->files[i] = strdup(path));
        }
    }
    if (!nomem && n_renames) {
        job->renames = calloc(n_renames, sizeof(*job->renames));
        nomem = !job->renames;
        for (size_t i = 0; !nomem && i < n_renames; i++, job->n_renames++) {
            uint64_t g = c->named_top + 1 + i;
            tmp_path(path, sizeof(path), c->db->log_dir, g);
            job->renames[i].from = strdup(path);
            store__gen_path(path, sizeof(path), c->db->log_dir, g);
            job->renames[i].to = strdup(path);
            nomem = !job->renames[i].from || !job->renames[i].to;
        }
    }
    if (!nomem)
        nomem = !(job->dir = strdup(c->db->log_dir));
    if (nomem) {
        store_copy_sync_job_free(job);
        return -ENOMEM;
    }
    job->sync_dir = c->dir_dirty || n_renames || c->n_doomed;
    /* The unlinks go with the job (ownership moves): after the syncs and renames, under the
     * same directory sync. */
    job->unlinks = c->doomed;
    job->n_unlinks = c->n_doomed;
    c->doomed = NULL;
    c->n_doomed = c->cap_doomed = 0;
    position_get(c, &job->pos);
    /* The state moves now: what is written after this point is for the next job (which the
     * receiving thread may begin in new temporary files while this one renames), and a
     * failure of this one is sticky anyway. */
    c->dirty_from = 0;
    c->named_top = c->cur.gen;
    c->dir_dirty = false;
    c->sync_running = true;
    return 1;
}

void
store_copy_sync_run(struct store_copy_sync_job *job)
{
    job->ret = 0;
    /* A copy closed while its job was queued may have been replaced by another one in the
     * same directory (a reseed swaps directories): this job's names are not that copy's. */
    struct stat st;
    if (stat(job->dir, &st) < 0 || st.st_dev != job->dir_dev || st.st_ino != job->dir_ino) {
        job->ret = -ESTALE;
        return;
    }
    /* Every file's data first, oldest first: a generation gets its name only once it and
     * every one before it are durable. */
    for (size_t i = 0; job->ret == 0 && i < job->n_files; i++) {
        /* Its own descriptor: fdatasync covers the file's data whichever one writes it. */
        int fd = job->io->open(job->io, job->files[i], O_WRONLY, 0);
        job->ret = fd < 0 ? fd : job->io->fdatasync(job->io, fd);
        if (fd >= 0)
            job->io->close(job->io, fd);
    }
    for (size_t i = 0; job->ret == 0 && i < job->n_renames; i++)
        job->ret = job->io->rename(job->io, job->renames[i].from, job->renames[i].to);
    /* Lowest first, so that whatever prefix of them a crash keeps, the generations left stay
     * contiguous. */
    for (size_t i = 0; job->ret == 0 && i < job->n_unlinks; i++) {
        int ret = job->io->unlink(job->io, job->unlinks[i]);
        job->ret = ret == -ENOENT ? 0 : ret;
    }
    if (job->ret == 0 && job->sync_dir)
        job->ret = job->io->sync_dir(job->io, job->dir);
}

void
store_copy_sync_job_free(struct store_copy_sync_job *job)
{
    for (size_t i = 0; i < job->n_files; i++)
        free(job->files[i]);
    for (size_t i = 0; i < job->n_renames; i++) {
        free(job->renames[i].from);
        free(job->renames[i].to);
    }
    for (size_t i = 0; i < job->n_unlinks; i++)
        free(job->unlinks[i]);
    free(job->files);
    free(job->renames);
    free(job->unlinks);
    free(job->dir);
    job->files = NULL;
    job->renames = NULL;
    job->unlinks = NULL;
    job->dir = NULL;
    job->n_files = job->n_renames = job->n_unlinks = 0;
}

int
store_copy_sync_end(struct store_copy *c, struct store_copy_sync_job *job,
                    struct store_copy_position *durable_r)
{
    c->sync_running = false;
    int ret = job->ret;
    struct store_copy_position pos = job->pos;
    store_copy_sync_job_free(job);
    if (ret < 0)
        return copy_fail(c, ret, "syncing received log");
    if (c->failed)
        return TDM_EFAILED;
    c->durable = pos; /* one job at a time: positions only grow */
    status_publish(c, NULL);
    if (durable_r)
        *durable_r = c->durable;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Replay and truncation                                              */

/* The highest LSN replay may reach under limit (durable records only). */
static uint64_t
replay_target(const struct store_copy *c, const struct store_copy_replay_limit *limit)
{
    uint64_t target = c->durable.lsn;
    if (!limit || c->lowest == 0)
        return target;
    if (limit->max_lsn && limit->max_lsn < target)
        target = limit->max_lsn;
    /* The newest generation replay may enter. */
    uint64_t top = c->cur.gen;
    if (limit->hold_generations)
        top = top > limit->hold_generations ? top - limit->hold_generations : 0;
    if (limit->created_before_us)
        for (uint64_t g = c->lowest; g <= top; g++)
            if (c->gens[g - c->lowest].created_us >= limit->created_before_us) {
                top = g - 1;
                break;
            }
    if (top < c->lowest)
        return 0;
    uint64_t top_last = c->gens[top - c->lowest].last_lsn;
    return top_last < target ? top_last : target;
}

/* How much of generation g is durable. */
static uint64_t
durable_end(const struct store_copy *c, uint64_t g)
{
    if (g < c->durable.generation)
        return c->gens[g - c->lowest].end;
    return g == c->durable.generation ? c->durable.offset : 0;
}

/*
 * Replays the durable frames of generation g from *off on (their CRCs are checked again as
 * they are decoded), advancing *off past each frame replayed or skipped. Returns 0,
 * STORE_REPLAY_STOP at the target, or a negative error with *why_r.
 */
static int
replay_generation(struct store_copy *c, uint64_t g, uint64_t *off, struct store_replay *r,
                  const char **why_r)
{
    uint64_t end = durable_end(c, g);
    if (*off >= end)
        return 0;
    char path[4096];
    store__gen_path(path, sizeof(path), c->db->log_dir, g);
    int fd = c->io->open(c->io, path, O_RDONLY, 0);
    if (fd < 0) {
        *why_r = store__errorf("cannot open %s: %s", path, strerror(-fd));
        return fd;
    }
    size_t len = (size_t)(end - *off);
    uint8_t *buf = malloc(len);
    ssize_t got = buf ? io_pread_all(c->io, fd, buf, len, (off_t)*off) : -ENOMEM;
    c->io->close(c->io, fd);
    int ret = got < 0 ? (int)got : (size_t)got < len ? -EIO : 0;
    if (ret < 0)
        *why_r = store__errorf("cannot read %s: %s", path, tdm_strerror(ret));
    for (size_t pos = 0; ret == 0 && pos < len;) {
        struct log_record rec;
        size_t flen = 0;
        const char *why = NULL;
        if (log_record_decode(buf + pos, len - pos, &rec, &flen, &why) != 0) {
            *why_r = store__errorf("%s: offset %" PRIu64 ": %s", path, *off,
                                   why ? why : "frame changed since it was inspected");
            ret = TDM_ECORRUPT;
            break;
        }
        if (rec.type != TDM_REC_END) {
            ret = store__replay_record(r, &rec);
            if (ret != 0) {
                if (ret < 0)
                    *why_r = store__errorf("%s: offset %" PRIu64 ": %s", path, *off,
                                           r->why ? r->why : tdm_strerror(ret));
                break;
            }
        }
        pos += flen;
        *off += flen;
    }
    free(buf);
    return ret;
}

int
store_copy_replay(struct store_copy *c, const struct store_copy_replay_limit *limit,
                  uint64_t *replayed_lsn_r)
{
    if (c->failed)
        return TDM_EFAILED;
    struct store *db = c->db;
    uint64_t target = replay_target(c, limit);
    struct store_replay r = {.s = db, .applied = db->applied_lsn, .stop_after = target};
    int ret = 0;
    if (c->rp_gen < c->lowest || c->rp_gen > c->cur.gen) {
        /* Start at the generation holding the first record not applied. */
        c->rp_gen = c->lowest;
        while (c->rp_gen && c->rp_gen < c->cur.gen &&
               c->gens[c->rp_gen - c->lowest].last_lsn <= r.applied)
            c->rp_gen++;
        c->rp_off = 0;
    }
    while (c->rp_gen && target > r.applied) {
        if (c->rp_off == 0)
            c->rp_off = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME;
        const char *why = NULL;
        ret = replay_generation(c, c->rp_gen, &c->rp_off, &r, &why);
        if (ret == STORE_REPLAY_STOP)
            break;
        if (ret < 0) {
            if (r.txn)
                mdb_txn_abort(r.txn);
            return copy_fail(c, ret, store__errorf("replaying: %s", why));
        }
        /* The whole generation replayed: on to the next, once it is there. */
        const struct copy_gen_info *info = &c->gens[c->rp_gen - c->lowest];
        if (!info->closed || c->rp_off < info->end || c->rp_gen == c->cur.gen)
            break;
        c->rp_gen++;
        c->rp_off = 0;
    }
    ret = store__replay_commit(&r);
    if (ret < 0)
        return copy_fail(c, ret, store__errorf("replay: %s", r.why));
    if (r.replayed > 0) {
        pthread_mutex_lock(&db->lock);
        db->applied_lsn = r.applied;
        pthread_mutex_unlock(&db->lock);
        c->bytes_since_ckpt += r.bytes;
        c->last_replayed_us = store__now_us_wall();
    }
    /* Checkpoints as the active's housekeeping does: after checkpoint_bytes of log, or
     * checkpoint_ms after the last one. */
    if (db->applied_lsn > db->checkpoint_lsn &&
        (c->bytes_since_ckpt >= db->opt.checkpoint_bytes ||
         store__now_ms() - c->last_ckpt_ms >= db->opt.checkpoint_ms)) {
        ret = store__checkpoint(db);
        if (ret < 0)
            return copy_fail(c, ret, "checkpoint");
        c->bytes_since_ckpt = 0;
        c->last_ckpt_ms = store__now_ms();
    }
    status_publish(c, NULL);
    if (replayed_lsn_r)
        *replayed_lsn_r = db->applied_lsn;
    return 0;
}

/*
 * Records in the metadata, durably, the generation the copy expects first when it holds none:
 * truncation may leave only the top generation, and a crash may then remove that one (never
 * durably begun), and the copy must still know where its log goes on.
 */
static int
meta_set_first_gen(struct store_copy *c, uint64_t gen)
{
    MDB_txn *txn;
    int ret = store__lmdb_err(mdb_txn_begin(c->db->env, NULL, 0, &txn));
    if (ret < 0)
        return ret;
    ret = store__meta_put_u64(txn, c->db->meta, STORE_META_COPY_FIRST, gen);
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    if (ret == 0)
        ret = store__lmdb_err(mdb_env_sync(c->db->env, 1));
    if (ret == 0)
        c->first_gen = gen;
    return ret;
}

int
store_copy_truncate(struct store_copy *c, uint64_t below_generation)
{
    if (c->failed)
        return TDM_EFAILED;
    uint64_t upto = c->lowest; /* first generation to keep */
    for (; c->lowest && upto < below_generation && upto < c->cur.gen; upto++) {
        const struct copy_gen_info *info = &c->gens[upto - c->lowest];
        if (!info->closed || info->last_lsn > c->db->checkpoint_lsn)
            break;
    }
    if (upto == c->lowest)
        return 0;
    int ret = meta_set_first_gen(c, upto);
    if (ret < 0)
        return copy_fail(c, ret, "recording the copy's first generation");
    /* The files go with the next sync job (lowest first), off the receiving thread: an unlink
     * of a generation costs milliseconds. Until then, and if a crash comes first, they are
     * still there below the copy's lowest generation; a reopen takes them back, as after a
     * crash in the middle of the unlinks. */
    size_t n = (size_t)(upto - c->lowest);
    if (c->n_doomed + n > c->cap_doomed) {
        size_t cap = c->cap_doomed ? c->cap_doomed : 16;
        while (cap < c->n_doomed + n)
            cap *= 2;
        char **grown = realloc(c->doomed, cap * sizeof(*grown));
        if (!grown)
            return copy_fail(c, -ENOMEM, "truncating the copy's log");
        c->doomed = grown;
        c->cap_doomed = cap;
    }
    char path[4096];
    for (uint64_t g = c->lowest; g < upto; g++) {
        store__gen_path(path, sizeof(path), c->db->log_dir, g);
        if (!(c->doomed[c->n_doomed] = strdup(path)))
            return copy_fail(c, -ENOMEM, "truncating the copy's log");
        c->n_doomed++;
    }
    memmove(c->gens, c->gens + n, (size_t)(c->cur.gen - upto + 1) * sizeof(*c->gens));
    c->lowest = upto;
    status_publish(c, NULL);
    return 0;
}

int
store_is_copy(const char *dbdir)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dbdir, STORE_COPY_MARKER);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -ENAMETOOLONG;
    struct stat st;
    if (lstat(path, &st) == 0)
        return 1;
    return errno == ENOENT ? 0 : -errno;
}

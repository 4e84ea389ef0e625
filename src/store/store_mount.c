/*
 * The life cycle of a database: create, open with recovery, close.
 *
 * Recovery (store_open) in order:
 *   1. LMDB says which LSN it has applied (everything up to it is in LMDB).
 *   2. Every generation is scanned: headers must belong to this database and chain (GUID,
 *      generation number, first LSN, previous generation's checksum); every closed generation
 *      must end with a valid END record. Any failure there is corruption: the database refuses
 *      to mount and an event names the file and offset. Nothing is ever skipped.
 *   3. Spare files above the current generation (new, never begun, or recycled: see
 *      store__log_top()) are not part of the log; they are readied for the log thread
 *      (spares_prepare()). The current generation's records are read up to the first
 *      invalid frame; if that frame lies beyond what LMDB applied it is a torn tail of writes
 *      never acknowledged, and is cut (zeroed) with an event; otherwise it is corruption.
 *   4. Records after the applied LSN are applied (idempotent by LSN).
 *   5. The database is marked dirty (and the kernel boot id recorded) and synced.
 */
#include "store/store_int.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void
store_options_init(struct store_options *o)
{
    memset(o, 0, sizeof(*o));
    o->generation_size = TDM_LOG_DEFAULT_GENERATION_SIZE;
    o->idle_close_ms = 90000;
    o->checkpoint_bytes = 8u * 1024u * 1024u;
    o->checkpoint_ms = 30000;
    o->reserve_bytes = 4u * 1024u * 1024u;
    o->map_size = 64ull * 1024u * 1024u * 1024u;
    o->group_commit_wait_us = 2000;
    o->io = &io_ops_posix;
}

int
store__options_check(const struct store_options *o, const char **error_r)
{
    if (o->generation_size < TDM_LOG_MIN_GENERATION_SIZE ||
        o->generation_size > TDM_LOG_MAX_GENERATION_SIZE || o->generation_size % 4096 != 0) {
        *error_r = store__errorf("generation size %u must be a multiple of 4096 between %u and %u",
                                 o->generation_size, TDM_LOG_MIN_GENERATION_SIZE,
                                 TDM_LOG_MAX_GENERATION_SIZE);
        return TDM_EINVAL;
    }
    const struct store_record_handler *h = o->handler;
    if (h && (!h->handles || !h->validate || !h->open || !h->close || !h->apply || !h->digest)) {
        *error_r = "the record handler lacks a function: every one is required";
        return TDM_EINVAL;
    }
    if (o->kind && !store_kind_valid(o->kind)) {
        *error_r = store__errorf("database kind \"%.64s\" is not a kind name: 1 to %d of "
                                 "a-z, 0-9 and -",
                                 o->kind, STORE_KIND_MAX);
        return TDM_EINVAL;
    }
    return 0;
}

char *
store__path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void
read_boot_id(char out[40])
{
    out[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f)
        return;
    if (!fgets(out, 40, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

static const char *
base_name(const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    const char *p = dir + n;
    while (p > dir && p[-1] != '/')
        p--;
    return p;
}

static bool
dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)) != NULL)
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    return empty;
}

void
store__free(struct store *s)
{
    if (!s)
        return;
    if (s->cur.fd >= 0)
        s->io->close(s->io, s->cur.fd);
    if (s->opt.handler && s->handler_state)
        s->opt.handler->close(s->handler_state);
    if (s->env)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->truncate_lock);
    pthread_mutex_destroy(&s->hook_lock);
    pthread_cond_destroy(&s->log_wake);
    pthread_cond_destroy(&s->apply_wake);
    pthread_cond_destroy(&s->hk_wake);
    pthread_cond_destroy(&s->progress);
    free(s->gens);
    free(s->wbuf);
    free(s->dir);
    free(s->log_dir);
    free(s->lmdb_dir);
    free(s->reserve_path);
    free(s->lock_path);
    free(s->name);
    free(s);
}

struct store *
store__alloc(const char *dir, const struct store_options *opt)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->cur.fd = -1;
    s->lock_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->truncate_lock, NULL);
    pthread_mutex_init(&s->hook_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->log_wake, &ca);
    pthread_cond_init(&s->apply_wake, &ca);
    pthread_cond_init(&s->hk_wake, &ca);
    pthread_cond_init(&s->progress, &ca);
    pthread_condattr_destroy(&ca);
    if (opt)
        s->opt = *opt;
    else
        store_options_init(&s->opt);
    s->io = s->opt.io ? s->opt.io : &io_ops_posix;
    s->dir = strdup(dir);
    s->log_dir = store__path_join(dir, STORE_LOG_DIR);
    s->lmdb_dir = store__path_join(dir, STORE_LMDB_DIR);
    s->reserve_path = store__path_join(dir, STORE_RESERVE_FILE);
    s->lock_path = store__path_join(dir, "lock");
    s->name = strdup(base_name(dir));
    s->log_tailp = &s->log_head;
    s->apply_tailp = &s->apply_head;
    s->floor = UINT64_MAX;
    if (!s->dir || !s->log_dir || !s->lmdb_dir || !s->reserve_path || !s->lock_path || !s->name) {
        store__free(s);
        return NULL;
    }
    return s;
}

/* Only one process may have a database open: a second would interleave log writes. */
int
store__lock_dir(struct store *s, const char **error_r)
{
    s->lock_fd = open(s->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0) {
        int err = -errno;
        *error_r = store__errorf("cannot open lock file %s: %s", s->lock_path, strerror(errno));
        return err;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno == EWOULDBLOCK ? -EBUSY : -errno;
        *error_r = store__errorf("database %s is open in another process (lock %s held); stop "
                                 "it first",
                                 s->dir, s->lock_path);
        return err;
    }
    return 0;
}

static int
open_dbis(struct store *s, MDB_txn *txn, const char **error_r)
{
    int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta);
    if (rc != 0) {
        *error_r = store__errorf("cannot open metadata in %s: %s", s->lmdb_dir, mdb_strerror(rc));
        return store__lmdb_err(rc);
    }
    int ret = mail_dbis_open(txn, &s->mail);
    if (ret < 0) {
        *error_r =
            store__errorf("cannot open mail tables in %s: %s", s->lmdb_dir, tdm_strerror(ret));
        return ret;
    }
    /* The handler's tables are opened (created) in the same transaction as the store's own,
     * so its state's handles become valid for the environment when that transaction commits. */
    if (s->opt.handler && !s->handler_state) {
        ret = s->opt.handler->open(txn, &s->handler_state);
        if (ret < 0) {
            s->handler_state = NULL;
            *error_r = store__errorf("cannot open the record handler's tables in %s: %s",
                                     s->lmdb_dir, tdm_strerror(ret));
        }
    }
    return ret;
}

/*
 * Writes the BEGIN record of generation gen (a spare file of the generation size, made
 * already), with the zero frame header after it, durably: the first generation of a log, so
 * its previous-generation checksum is 0. The file stays open in s->cur.
 */
static int
gen_first_begin(struct store *s, uint64_t gen, uint64_t first_lsn, uint64_t epoch)
{
    char path[4096];
    store__gen_path(path, sizeof(path), s->log_dir, gen);
    s->cur = (struct gen_state){
        .gen = gen, .size = s->opt.generation_size, .epoch = epoch, .first_lsn = first_lsn};
    s->cur.fd = s->io->open(s->io, path, O_RDWR, 0);
    if (s->cur.fd < 0)
        return s->cur.fd;
    uint8_t buf[TDM_LOG_BEGIN_FRAME + TDM_LOG_FRAME_HEADER] = {0};
    store__gen_begin_frame(s, buf);
    int ret = io_pwrite_all(s->io, s->cur.fd, buf, sizeof(buf), TDM_LOG_HEADER_SIZE);
    if (ret == 0)
        ret = s->io->fdatasync(s->io, s->cur.fd);
    return ret;
}

/*
 * Makes dir (if missing) with empty log/ and store/ below it, for store_create() and
 * store_copy_create(). Returns 0, TDM_EEXIST (dir holds a database or other files) or -errno.
 */
int
store__dirs_create(struct store *s, const char **error_r)
{
    if (mkdir(s->dir, 0750) < 0 && errno != EEXIST) {
        int ret = -errno;
        *error_r = store__errorf("cannot create %s: %s", s->dir, strerror(errno));
        return ret;
    }
    struct stat st;
    if (stat(s->log_dir, &st) == 0 || stat(s->lmdb_dir, &st) == 0) {
        *error_r = store__errorf("%s already holds a database (log/ or store/ exists)", s->dir);
        return TDM_EEXIST;
    }
    if (!dir_is_empty(s->dir)) {
        *error_r =
            store__errorf("%s is not empty: a database needs a directory of its own", s->dir);
        return TDM_EEXIST;
    }
    if (mkdir(s->log_dir, 0750) < 0 || mkdir(s->lmdb_dir, 0750) < 0) {
        int ret = -errno;
        *error_r = store__errorf("cannot create directories in %s: %s", s->dir, strerror(errno));
        return ret;
    }
    return 0;
}

/*
 * Creates the LMDB environment of a new database: the metadata of database s->guid and kind
 * (NULL: mail), applied LSN 0, epoch 1, clean; durable. The environment stays open in s->env.
 */
int
store__lmdb_create(struct store *s, const char *kind, const char **error_r)
{
    int ret = store__env_open(s->lmdb_dir, s->opt.map_size, false, &s->env, error_r);
    MDB_txn *txn = NULL;
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret == 0)
        ret = open_dbis(s, txn, error_r);
    if (ret == 0) {
        MDB_val k = {strlen(STORE_META_GUID), STORE_META_GUID}, v = {sizeof(s->guid), s->guid};
        ret = store__lmdb_err(mdb_put(txn, s->meta, &k, &v, 0));
    }
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_APPLIED, 0);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CHECKPOINT, 0);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CLEAN, 1);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_EPOCH, 1);
    if (ret == 0) {
        if (!kind)
            kind = STORE_KIND_MAIL;
        MDB_val k = {strlen(STORE_META_KIND), STORE_META_KIND}, v = {strlen(kind), (void *)kind};
        ret = store__lmdb_err(mdb_put(txn, s->meta, &k, &v, 0));
    }
    if (ret == 0) {
        ret = store__lmdb_err(mdb_txn_commit(txn));
        txn = NULL;
    }
    if (txn)
        mdb_txn_abort(txn);
    if (ret == 0)
        ret = store__lmdb_err(mdb_env_sync(s->env, 1));
    return ret;
}

int
store_create(const char *dir, const struct store_options *opt, const char **error_r)
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
    if (sodium_init() < 0) {
        *error_r = "libsodium failed to initialise";
        return -EIO;
    }
    struct store *s = store__alloc(dir, opt);
    if (!s)
        return -ENOMEM;
    ret = store__dirs_create(s, error_r);
    if (ret < 0) {
        store__free(s);
        return ret;
    }
    randombytes_buf(s->guid, sizeof(s->guid));
    ret = store__lmdb_create(s, opt->kind, error_r);

    /* Generation 1, begun: header and BEGIN durable, so the log always holds a generation. */
    if (ret == 0)
        ret = store__gen_file_create(s->io, s->log_dir, 1, s->opt.generation_size, s->guid);
    if (ret == 0)
        ret = gen_first_begin(s, 1, 1, 1);
    if (ret == 0)
        ret = s->io->sync_dir(s->io, dir);
    if (ret < 0 && !*error_r)
        *error_r = store__errorf("cannot create database in %s: %s", dir, tdm_strerror(ret));
    store__free(s);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Open and recovery                                                  */

static int
corrupt(struct store *s, const char *path, uint64_t offset, const char *reason,
        const char **error_r)
{
    event_emit(TDM_EV_STORE_LOG_CORRUPT, s->name,
               "log generation %s is corrupt at offset %" PRIu64 ": %s; the database will not "
               "mount (never delete logs by hand: restore the file or reseed the copy)",
               path, offset, reason);
    /* reason may point into store__errorf()'s own buffer (a store__gen_scan() message):
     * formatting it into that buffer again would read what is being overwritten. */
    char why[1024];
    snprintf(why, sizeof(why), "%s", reason);
    *error_r = store__errorf("%s: offset %" PRIu64 ": %s", path, offset, why);
    return TDM_ECORRUPT;
}

int
store__meta_read(struct store *s, uint64_t *applied_r, uint64_t *ckpt_r, uint64_t *clean_r,
                 char boot_id[40], const char **error_r)
{
    MDB_txn *txn;
    int ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret < 0) {
        *error_r = store__errorf("cannot read %s: %s", s->lmdb_dir, tdm_strerror(ret));
        return ret;
    }
    ret = open_dbis(s, txn, error_r);
    if (ret == 0) {
        MDB_val k = {strlen(STORE_META_GUID), STORE_META_GUID}, v;
        if (mdb_get(txn, s->meta, &k, &v) != 0 || v.mv_size != sizeof(s->guid)) {
            *error_r = store__errorf("%s is not a tandem database: %s holds no tandem metadata",
                                     s->dir, s->lmdb_dir);
            ret = TDM_EFOREIGN;
        } else {
            memcpy(s->guid, v.mv_data, sizeof(s->guid));
        }
    }
    uint64_t epoch = 1;
    if (ret == 0 && (store__meta_get_u64(txn, s->meta, STORE_META_APPLIED, applied_r) < 0 ||
                     store__meta_get_u64(txn, s->meta, STORE_META_CLEAN, clean_r) < 0)) {
        *error_r = store__errorf("%s: metadata is incomplete", s->lmdb_dir);
        ret = TDM_ECORRUPT;
    }
    if (ret == 0) {
        if (store__meta_get_u64(txn, s->meta, STORE_META_CHECKPOINT, ckpt_r) < 0)
            *ckpt_r = 0;
        if (store__meta_get_u64(txn, s->meta, STORE_META_EPOCH, &epoch) == 0)
            s->epoch = epoch;
        ret = store__meta_get_kind(txn, s->meta, s->kind);
        if (ret < 0)
            *error_r = store__errorf("%s: the database kind in the metadata is unreadable: %s",
                                     s->lmdb_dir, tdm_strerror(ret));
    }
    if (ret == 0) {
        MDB_val k = {strlen(STORE_META_BOOT_ID), STORE_META_BOOT_ID}, v;
        boot_id[0] = '\0';
        if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size < 40) {
            memcpy(boot_id, v.mv_data, v.mv_size);
            boot_id[v.mv_size] = '\0';
        }
    }
    if (ret == 0)
        ret = store__lmdb_err(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    return ret;
}

/* Marks the database mounted (dirty) and makes LMDB durable: the first checkpoint. */
int
store__meta_mark(struct store *s, bool clean)
{
    MDB_txn *txn;
    char boot_id[40];
    int ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret < 0)
        return ret;
    read_boot_id(boot_id);
    MDB_val k = {strlen(STORE_META_BOOT_ID), STORE_META_BOOT_ID}, v = {strlen(boot_id), boot_id};
    ret = store__lmdb_err(mdb_put(txn, s->meta, &k, &v, 0));
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CLEAN, clean ? 1 : 0);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_APPLIED, s->applied_lsn);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_CHECKPOINT, s->applied_lsn);
    if (ret == 0)
        ret = store__meta_put_u64(txn, s->meta, STORE_META_EPOCH, s->epoch);
    if (ret < 0) {
        mdb_txn_abort(txn);
        return ret;
    }
    ret = store__lmdb_err(mdb_txn_commit(txn));
    if (ret == 0)
        ret = store__lmdb_err(mdb_env_sync(s->env, 1));
    if (ret == 0)
        s->checkpoint_lsn = s->applied_lsn;
    return ret;
}

/* Keeps reserve_bytes of disk for a clean shutdown on a full disk. */
static void
reserve_ensure(struct store *s)
{
    if (s->opt.reserve_bytes == 0)
        return;
    int fd = s->io->open(s->io, s->reserve_path, O_RDWR | O_CREAT, 0640);
    int ret = fd < 0 ? fd : 0;
    if (ret == 0) {
        off_t size = 0;
        ret = s->io->file_size(s->io, fd, &size);
        if (ret == 0 && (uint64_t)size < s->opt.reserve_bytes)
            ret = s->io->allocate(s->io, fd, (off_t)s->opt.reserve_bytes);
        if (ret == 0)
            ret = s->io->fdatasync(s->io, fd);
        s->io->close(s->io, fd);
    }
    if (ret < 0) {
        s->reserve_mode = true;
        event_emit(TDM_EV_STORE_DISK_RESERVE, s->name,
                   "cannot keep the %" PRIu64 "-byte disk reserve %s: %s; new commits are "
                   "refused until space is freed and the database is remounted",
                   s->opt.reserve_bytes, s->reserve_path, tdm_strerror(ret));
    }
}

/* Zeroes [from, size) of the current generation: a torn tail, never acknowledged. */
int
store__cut_tail(struct store *s, const char *path, uint64_t from, uint64_t size)
{
    static const uint8_t zeros[65536];
    int fd = s->io->open(s->io, path, O_RDWR, 0);
    if (fd < 0)
        return fd;
    int ret = 0;
    for (uint64_t off = from; off < size && ret == 0;) {
        size_t n = size - off < sizeof(zeros) ? (size_t)(size - off) : sizeof(zeros);
        ret = io_pwrite_all(s->io, fd, zeros, n, (off_t)off);
        off += n;
    }
    if (ret == 0)
        ret = s->io->fdatasync(s->io, fd);
    s->io->close(s->io, fd);
    return ret;
}

/* True when [from, end of file) of path is all zero; -errno on a read error. */
static int
file_zero_from(const struct io_ops *io, const char *path, uint64_t from)
{
    static uint8_t buf[65536];
    int fd = io->open(io, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    int ret = 1;
    for (uint64_t off = from; ret == 1;) {
        ssize_t got = io_pread_all(io, fd, buf, sizeof(buf), (off_t)off);
        if (got <= 0) {
            ret = got < 0 ? (int)got : 1;
            break;
        }
        for (ssize_t i = 0; i < got && ret == 1; i++)
            ret = buf[i] == 0;
        off += (uint64_t)got;
        if (got < (ssize_t)sizeof(buf))
            break;
    }
    io->close(io, fd);
    return ret;
}

/*
 * Readies the spares above the current generation for the log thread, which begins one with
 * no write or sync of its own: each must hold a durable version 3 header of this database,
 * and none may hold frames of a batch that was written but never made durable.
 *
 * Spares without such a header (left by a version 2 writer, or a creation cut short by a
 * crash) are deleted with every spare above them, from the highest down so that a crash keeps
 * the files contiguous; housekeeping makes new ones. So are spares larger than this mount's
 * generation size (made under a larger one, or for large batches before the restart): a spare
 * is begun whole (store_gen.c), and a database mounted with a smaller generation size should
 * get generations of that size from the start, not after its old spares. And when the
 * current generation is closed after a crash (a clean shutdown leaves no batch unsynced), the
 * spare right above it is the one file a lost batch can have written to (a roll writes into it
 * only after the END before it is durable): its BEGIN did not survive, or it would be the
 * current generation, but frames after it may have. The LSNs of such a batch are
 * given out again, so a stale frame could one day sit, with exactly the next LSN, behind a
 * later write cut short: its body is zeroed, as a torn tail is (store__cut_tail()).
 */
static int
spares_prepare(struct store *s, bool clean, const char **error_r)
{
    char path[4096];
    uint64_t keep = s->cur.gen; /* spares (cur.gen, keep] are ready */
    int ret = 0;
    while (keep < s->prealloc_upto) {
        uint64_t size = 0;
        store__gen_path(path, sizeof(path), s->log_dir, keep + 1);
        ret = store__gen_header_ready(s, path, &size);
        if (ret < 0)
            goto fail;
        if (ret == 0 || size > s->opt.generation_size)
            break;
        keep++;
    }
    if (keep < s->prealloc_upto) {
        for (uint64_t g = s->prealloc_upto; g > keep; g--) {
            store__gen_path(path, sizeof(path), s->log_dir, g);
            ret = s->io->unlink(s->io, path);
            if (ret < 0)
                goto fail;
        }
        ret = s->io->sync_dir(s->io, s->log_dir);
        if (ret < 0)
            goto fail;
        s->prealloc_upto = keep;
    }
    if (!clean && s->cur.closed && s->prealloc_upto > s->cur.gen) {
        uint64_t size = 0;
        store__gen_path(path, sizeof(path), s->log_dir, s->cur.gen + 1);
        ret = store__gen_header_ready(s, path, &size);
        if (ret >= 0)
            ret = file_zero_from(s->io, path, TDM_LOG_HEADER_SIZE);
        if (ret == 0)
            ret = store__cut_tail(s, path, TDM_LOG_HEADER_SIZE, size);
        if (ret < 0)
            goto fail;
    }
    return 0;
fail:
    *error_r = store__errorf("cannot ready the spare log generations in %s: %s", s->log_dir,
                             tdm_strerror(ret));
    return ret;
}

/*
 * A copy seeded from a snapshot holds no generation until the active ships one (in file mode,
 * only once the active closes the generation it writes), and a copy's truncation followed by a
 * crash can leave it none too: its LMDB has applied up to LSN `applied` and its metadata names
 * the generation it expects first (STORE_META_COPY_FIRST). Mounted as an active (activation,
 * which always gives a newer epoch), such a store begins its log there: that generation, first
 * LSN applied + 1, the new epoch, previous-generation checksum 0 (the log's first generation:
 * nothing of the generation before it is here to chain to). Nothing acknowledged is lost that
 * the copy held: the snapshot holds every record up to `applied` (docs/decisions.md, "A copy
 * without a generation mounts").
 *
 * Also when the only file is that generation, never begun (a crash cut this very step short:
 * made but no durable BEGIN): it is made again. Without the metadata key, a log without a
 * generation is lost log, and recover() refuses it. Once the log has a generation, the key is
 * deleted, so that a log lost later is never begun again over the loss.
 */
static int
log_begin_from_snapshot(struct store *s, uint64_t applied, const char **error_r)
{
    MDB_txn *txn;
    uint64_t first = 0;
    int ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn));
    if (ret < 0) {
        *error_r = store__errorf("cannot read %s: %s", s->lmdb_dir, tdm_strerror(ret));
        return ret;
    }
    if (store__meta_get_u64(txn, s->meta, STORE_META_COPY_FIRST, &first) < 0)
        first = 0;
    mdb_txn_abort(txn);
    if (first == 0)
        return 0; /* not a copy's store: recover() judges its log */

    uint64_t *gens = NULL;
    size_t n = 0;
    ret = store__gen_list(s->log_dir, &gens, &n);
    if (ret < 0) {
        *error_r = store__errorf("cannot list %s: %s", s->log_dir, strerror(-ret));
        return ret;
    }
    bool none = n == 0;
    if (n == 1 && gens[0] == first) {
        char path[4096];
        struct gen_scan sc;
        const char *why = NULL;
        store__gen_path(path, sizeof(path), s->log_dir, first);
        int sret = store__gen_scan(s->io, path, NULL, NULL, &sc, &why);
        none = (sret == 0 && (sc.blank_header || sc.unbegun)) ||
               (sret == TDM_ECORRUPT && sc.header_bad && sc.body_blank);
    }
    free(gens);
    if (none) {
        uint64_t epoch = s->opt.min_epoch > s->epoch ? s->opt.min_epoch : s->epoch;
        if (epoch <= s->epoch) {
            /* Its snapshot's epoch is the active's: a log begun in it could hold other records
             * under the same LSNs as the active's generation of that number. */
            *error_r = store__errorf("%s holds no log generation yet (a copy seeded from a "
                                     "snapshot at LSN %" PRIu64 "): only an activation, in a "
                                     "newer epoch than %" PRIu64 ", can begin its log",
                                     s->log_dir, applied, s->epoch);
            return TDM_EINVAL;
        }
        ret = store__gen_file_create(s->io, s->log_dir, first, s->opt.generation_size, s->guid);
        if (ret == 0)
            ret = gen_first_begin(s, first, applied + 1, epoch);
        if (s->cur.fd >= 0)
            s->io->close(s->io, s->cur.fd);
        s->cur = (struct gen_state){.fd = -1};
        if (ret == 0)
            ret = s->io->sync_dir(s->io, s->log_dir);
        if (ret < 0) {
            *error_r = store__errorf("cannot begin log generation %" PRIu64 " in %s after the "
                                     "snapshot: %s",
                                     first, s->log_dir, tdm_strerror(ret));
            return ret;
        }
        log_info("%s: the log begins at generation %" PRIu64 ", LSN %" PRIu64 ", epoch %" PRIu64
                 ", after the snapshot the copy was seeded from",
                 s->name, first, applied + 1, epoch);
    }
    /* The log has a generation now: the key has done its work. Made durable by the mount's
     * metadata sync (store__meta_mark()). */
    ret = store__lmdb_err(mdb_txn_begin(s->env, NULL, 0, &txn));
    if (ret == 0) {
        MDB_val k = {strlen(STORE_META_COPY_FIRST), STORE_META_COPY_FIRST};
        int rc = mdb_del(txn, s->meta, &k, NULL);
        ret = rc == 0 || rc == MDB_NOTFOUND ? store__lmdb_err(mdb_txn_commit(txn))
                                            : (mdb_txn_abort(txn), store__lmdb_err(rc));
    }
    if (ret < 0)
        *error_r = store__errorf("cannot update %s: %s", s->lmdb_dir, tdm_strerror(ret));
    return ret;
}

static int
recover(struct store *s, uint64_t applied, bool clean, const char **error_r)
{
    uint64_t *gens = NULL;
    size_t n = 0;
    struct gen_scan *scans = NULL;
    char path[4096];
    int ret = log_begin_from_snapshot(s, applied, error_r);
    if (ret < 0)
        return ret;
    ret = store__gen_list(s->log_dir, &gens, &n);
    if (ret < 0) {
        *error_r = store__errorf("cannot list %s: %s", s->log_dir, strerror(-ret));
        return ret;
    }
    if (n == 0) {
        *error_r = store__errorf("%s holds no log generations: the database cannot be "
                                 "recovered from it",
                                 s->log_dir);
        free(gens);
        return TDM_ECORRUPT;
    }
    for (size_t i = 1; i < n; i++)
        if (gens[i] != gens[i - 1] + 1) {
            store__gen_path(path, sizeof(path), s->log_dir, gens[i - 1] + 1);
            event_emit(TDM_EV_STORE_GENERATION_MISSING, s->name,
                       "log generation %s is missing (generations %" PRIu64 " and %" PRIu64
                       " exist); the database will not mount",
                       path, gens[i - 1], gens[i]);
            *error_r = store__errorf("log generation %s is missing", path);
            free(gens);
            return TDM_EGAP;
        }
    scans = calloc(n, sizeof(*scans));
    if (!scans) {
        free(gens);
        return -ENOMEM;
    }

    struct log_top top;
    ret = store__log_top(s->io, s->log_dir, gens, n, &top);
    if (ret < 0) {
        *error_r = store__errorf("cannot read %s: %s", s->log_dir, tdm_strerror(ret));
        goto out;
    }
    n = top.n_log;
    uint64_t prealloc_upto = top.prealloc_upto;

    /* Pass 1: every generation must be valid and chain to the one before. */
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        struct gen_scan *sc = &scans[i];
        store__gen_path(path, sizeof(path), s->log_dir, gens[i]);
        ret = store__gen_scan(s->io, path, NULL, NULL, sc, &why);
        if (ret == TDM_ECORRUPT) {
            ret = corrupt(s, path, 0, why, error_r);
            goto out;
        }
        if (ret < 0) {
            *error_r = why;
            goto out;
        }
        if (sc->blank_header) {
            ret = corrupt(s, path, 0, "generation header was never written", error_r);
            goto out;
        }
        if (sc->unbegun) {
            ret = corrupt(s, path, TDM_LOG_HEADER_SIZE, "generation has no BEGIN record", error_r);
            goto out;
        }
        if (memcmp(sc->hdr.guid, s->guid, sizeof(s->guid)) != 0) {
            *error_r = store__errorf("%s belongs to another database (GUID differs)", path);
            ret = TDM_EFOREIGN;
            goto out;
        }
        if (sc->hdr.generation != gens[i]) {
            ret =
                corrupt(s, path, 32, "generation number in header differs from file name", error_r);
            goto out;
        }
        if (i > 0 && (sc->hdr.first_lsn != scans[i - 1].last_lsn + 1 ||
                      sc->hdr.prev_checksum != scans[i - 1].end_rec.gen_checksum)) {
            ret = corrupt(s, path, 56, "header does not chain to the previous generation", error_r);
            goto out;
        }
        if (i + 1 < n && sc->end != GEN_SCAN_END_RECORD) {
            ret = corrupt(s, path, sc->end == GEN_SCAN_INVALID ? sc->bad_offset : sc->valid_end,
                          sc->end == GEN_SCAN_INVALID ? sc->bad_reason
                                                      : "closed generation has no END record",
                          error_r);
            goto out;
        }
    }

    struct gen_scan *cur = &scans[n - 1];
    store__gen_path(path, sizeof(path), s->log_dir, gens[n - 1]);
    if (cur->end == GEN_SCAN_INVALID && cur->last_lsn < applied) {
        ret = corrupt(s, path, cur->bad_offset, cur->bad_reason, error_r);
        goto out;
    }
    if (scans[0].hdr.first_lsn > applied + 1) {
        *error_r = store__errorf("the log starts at LSN %" PRIu64 " but the database has "
                                 "applied only up to %" PRIu64 ": generations are missing",
                                 scans[0].hdr.first_lsn, applied);
        ret = TDM_EGAP;
        goto out;
    }
    if (cur->last_lsn < applied) {
        ret = corrupt(s, path, cur->valid_end,
                      "the log ends before the last record the database applied", error_r);
        goto out;
    }

    /* Pass 2: replay what LMDB does not have yet. */
    struct store_replay r = {.s = s, .applied = applied};
    for (size_t i = 0; i < n; i++) {
        if (scans[i].last_lsn <= applied)
            continue;
        struct gen_scan again;
        const char *why = NULL;
        char gpath[4096];
        store__gen_path(gpath, sizeof(gpath), s->log_dir, gens[i]);
        ret = store__gen_scan(s->io, gpath, store__replay_record, &r, &again, &why);
        if (ret < 0) {
            if (r.txn)
                mdb_txn_abort(r.txn);
            if (ret == TDM_ECORRUPT)
                ret = corrupt(s, gpath, 0, r.why ? r.why : why, error_r);
            else
                *error_r = store__errorf("replaying %s failed: %s", gpath,
                                         r.why ? r.why : tdm_strerror(ret));
            goto out;
        }
    }
    ret = store__replay_commit(&r);
    if (ret < 0) {
        *error_r = store__errorf("replay failed: %s", r.why);
        goto out;
    }

    if (cur->end == GEN_SCAN_INVALID) {
        ret = store__cut_tail(s, path, cur->valid_end, cur->file_size);
        if (ret < 0) {
            *error_r = store__errorf("cannot cut the torn tail of %s: %s", path, tdm_strerror(ret));
            goto out;
        }
        event_emit(TDM_EV_STORE_TORN_TAIL_CUT, s->name,
                   "torn tail of %s cut at offset %" PRIu64 " (%s); these writes were never "
                   "acknowledged",
                   path, cur->valid_end, cur->bad_reason);
    } else if (cur->end == GEN_SCAN_ZERO_FILL && cur->tail_dirty) {
        /* Stale bytes after the records: a recycled file's, or a batch whose sync never
         * returned. Zeroed before writing on, because the LSNs of an unsynced batch are
         * given out again: if a later write were cut short just after a record, a stale
         * frame there could carry exactly the next LSN and pass for a record. */
        ret = store__cut_tail(s, path, cur->valid_end, cur->file_size);
        if (ret < 0) {
            *error_r = store__errorf("cannot zero the end of %s: %s", path, tdm_strerror(ret));
            goto out;
        }
    }
    if (r.replayed > 0)
        event_emit(TDM_EV_STORE_RECOVERED, s->name,
                   "replayed %" PRIu64 " log records (LSN %" PRIu64 "..%" PRIu64 ")", r.replayed,
                   applied + 1, r.applied);

    /* The writer continues where the log ends. */
    s->lowest_gen = gens[0];
    for (size_t i = 0; i < n && ret == 0; i++) {
        ret = store__gen_table_push(s, gens[i], scans[i].hdr.first_lsn, scans[i].hdr.epoch,
                                    scans[i].hdr.file_size);
        if (ret == 0 && scans[i].end == GEN_SCAN_END_RECORD)
            s->gens[i].end = scans[i].valid_end + TDM_LOG_END_FRAME;
    }
    if (ret < 0)
        goto out;
    s->dur_end = s->gens[n - 1].end ? s->gens[n - 1].end : cur->valid_end;
    s->dur_last_lsn = cur->last_lsn;
    s->dur_closed = cur->end == GEN_SCAN_END_RECORD;
    s->cur.fd = s->io->open(s->io, path, O_RDWR, 0);
    if (s->cur.fd < 0) {
        ret = s->cur.fd;
        *error_r = store__errorf("cannot open %s: %s", path, strerror(-ret));
        goto out;
    }
    s->cur.gen = s->writing_gen = gens[n - 1];
    s->cur.size = cur->file_size;
    s->cur.off = cur->valid_end;
    s->cur.epoch = cur->hdr.epoch;
    s->cur.first_lsn = cur->hdr.first_lsn;
    s->cur.last_lsn = cur->last_lsn;
    s->cur.records = cur->records;
    s->cur.checksum = cur->checksum;
    s->cur.begun = s->cur.in_table = true;
    s->cur.closed = cur->end == GEN_SCAN_END_RECORD;
    if (cur->hdr.epoch > s->epoch)
        s->epoch = cur->hdr.epoch;
    s->applied_lsn = r.applied;
    s->durable_lsn = cur->last_lsn;
    s->next_lsn = cur->last_lsn + 1;
    s->prealloc_upto = prealloc_upto > s->cur.gen ? prealloc_upto : s->cur.gen;
    ret = spares_prepare(s, clean, error_r);
    if (ret < 0)
        goto out;

    /* A copy activated under a newer epoch (store_options.min_epoch): the generation of the
     * old epoch is closed, so that the next record begins a generation of the new one and a
     * copy of the old history can tell where it ends. */
    if (s->opt.min_epoch > s->epoch)
        s->epoch = s->opt.min_epoch;
    if (s->epoch > s->cur.epoch && !s->cur.closed) {
        ret = store__gen_close_current(s);
        if (ret < 0) {
            *error_r = store__errorf("cannot close %s for epoch %" PRIu64 ": %s", path, s->epoch,
                                     tdm_strerror(ret));
            goto out;
        }
    }

    if (s->cur.closed) {
        /* Closed at the last clean shutdown, or early by the last batch: the next batch
         * begins the next generation. */
        if (s->prealloc_upto == s->cur.gen) {
            ret = store__gen_file_create(s->io, s->log_dir, s->cur.gen + 1, s->opt.generation_size,
                                         s->guid);
            if (ret < 0) {
                *error_r = store__errorf("cannot create the next log generation in %s: %s",
                                         s->log_dir, tdm_strerror(ret));
                goto out;
            }
            s->prealloc_upto = s->cur.gen + 1;
        }
        ret = store__gen_open_next(s, 0);
        if (ret < 0)
            *error_r = store__errorf("cannot start the next log generation in %s: %s", s->log_dir,
                                     tdm_strerror(ret));
    }
out:
    free(scans);
    free(gens);
    return ret;
}

int
store_open(const char *dir, const struct store_options *opt, struct store **store_r,
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
    struct stat st;
    if (stat(dir, &st) < 0) {
        ret = -errno;
        *error_r = store__errorf("database directory %s: %s", dir, strerror(errno));
        return ret;
    }
    struct store *s = store__alloc(dir, opt);
    if (!s)
        return -ENOMEM;
    struct stat st_log, st_lmdb;
    if (stat(s->log_dir, &st_log) < 0 || !S_ISDIR(st_log.st_mode) ||
        stat(s->lmdb_dir, &st_lmdb) < 0 || !S_ISDIR(st_lmdb.st_mode)) {
        *error_r = store__errorf("%s is not a tandem database: it has no log/ and store/ "
                                 "directories (create one with `tandemctl db create`)",
                                 dir);
        store__free(s);
        return TDM_EFOREIGN;
    }
    ret = store__lock_dir(s, error_r);
    if (ret == 0)
        ret = store__env_open(s->lmdb_dir, s->opt.map_size, false, &s->env, error_r);
    uint64_t applied = 0, ckpt = 0, clean = 0;
    char boot_then[40] = "";
    if (ret == 0)
        ret = store__meta_read(s, &applied, &ckpt, &clean, boot_then, error_r);
    if (ret == 0 && !s->opt.handler && strcmp(s->kind, STORE_KIND_MAIL) != 0) {
        /* Without the handler, recovery would refuse its records as corrupt: say why first. */
        *error_r = store__errorf("database %s is a '%s' database; open it with the %s handler", dir,
                                 s->kind, s->kind);
        ret = TDM_EINVAL;
    }
    if (ret == 0)
        ret = recover(s, applied, clean != 0, error_r);
    if (ret == 0) {
        char boot_now[40];
        read_boot_id(boot_now);
        if (!clean && boot_then[0] && strcmp(boot_then, boot_now) != 0)
            event_emit(TDM_EV_STORE_SYSTEM_CRASH, s->name,
                       "the machine restarted while the database was mounted: LMDB kept what "
                       "was checkpointed (LSN %" PRIu64 ") and the log replayed the rest",
                       ckpt);
        ret = store__meta_mark(s, false);
        if (ret < 0)
            *error_r = store__errorf("cannot mark %s mounted: %s", s->lmdb_dir, tdm_strerror(ret));
    }
    if (ret == 0) {
        s->last_ckpt_ms = store__now_ms();
        s->last_write_ms = s->last_ckpt_ms; /* the idle timer starts at mount, not at 0 */
        reserve_ensure(s);
        ret = store__threads_start(s);
        if (ret < 0)
            *error_r = store__errorf("cannot start store threads: %s", strerror(-ret));
    }
    if (ret < 0) {
        if (!*error_r)
            *error_r = store__errorf("cannot open %s: %s", dir, tdm_strerror(ret));
        store__free(s);
        return ret;
    }
    event_emit(TDM_EV_STORE_MOUNTED, s->name,
               "database %s mounted: generation %" PRIu64 ", LSN %" PRIu64, dir, s->cur.gen,
               s->applied_lsn);
    *store_r = s;
    return 0;
}

int
store_close(struct store **sp)
{
    struct store *s = *sp;
    if (!s)
        return 0;
    *sp = NULL;
    store__threads_stop(s);

    int ret = s->failed;
    if (!ret) {
        if (s->reserve_mode)
            unlink(s->reserve_path); /* the room LMDB needs for the last transaction */
        ret = store__checkpoint(s);
        if (ret == 0 && s->cur.records > 0 && !s->cur.closed && !s->reserve_mode)
            ret = store__gen_close_current(s);
        if (ret == 0)
            ret = store__meta_mark(s, true);
        if (ret == 0)
            store__truncate(s);
        if (ret == 0)
            event_emit(TDM_EV_STORE_DISMOUNTED, s->name,
                       "database %s dismounted cleanly at LSN %" PRIu64, s->dir, s->applied_lsn);
    }
    store__free(s);
    return ret;
}

/*
 * bench_store: the store's commit and replay speed beside the disk's own limit, measured in
 * the same run on the same file system.
 *
 * Commit rows: N threads each loop on a blocking store_commit() for a fixed time (or, with
 * --async, N commits kept in flight by completion callbacks, as the core's event loop will),
 * with
 * TDM_REC_NOOP payloads (the log path only: queue, write, fdatasync, empty LMDB transaction)
 * and with MESSAGE_APPEND records of the same size (the whole mail path: decode check, SHA-256,
 * single-instance body and message rows in LMDB, checkpoints). Each row's peer is a plain loop
 * of pwrite + fdatasync on a zero-written preallocated file writing N frames per sync: what a
 * perfect group commit of N committers could reach on this disk with one sync at a time. The
 * ratio is tandem/raw. A second peer, raw2, runs two such loops of N/2 frames at once: the
 * limit for two syncs in flight, which tandem's two log workers may use (ratio2).
 *
 * Replay rows: a child process commits a fixed amount of log and exits with _exit() (no
 * close); the parent puts back the empty data.mdb copied right after create, so every record
 * must be replayed, drops the log files from the page cache, and times store_open(). The peer
 * is a cold sequential read of the same log files.
 *
 * Everything runs in a fresh directory under $BENCH_DIR (default /var/tmp), removed at the end.
 * Not a test: nothing here asserts a speed.
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/log_codec.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)
/* The raw peer's file: large enough that a 64-record batch of 64 KiB frames fits many times,
 * small enough to write quickly. Writes wrap around; rewriting written blocks costs the same as
 * writing the zero-filled blocks of a fresh generation (no extent conversion either way). */
#define RAW_FILE_SIZE (256u * 1024u * 1024u)

struct config {
    double seconds;
    char base[2048];
    char work[4096];
    unsigned replay_mb;
    uint32_t generation_size; /* 0: the store's default */
    unsigned rounds;
    bool replay;
    bool commits;
    size_t sizes[8];
    size_t n_sizes;
    unsigned committers[8];
    size_t n_committers;
    bool async;     /* N commits in flight from callbacks instead of N blocking threads */
    bool noop_only; /* no MESSAGE_APPEND rows: the log path alone (profiling) */
};

static struct config cfg = {.seconds = 3.0,
                            .rounds = 6,
                            .replay_mb = 64,
                            .replay = true,
                            .commits = true,
                            .sizes = {4096, 65536},
                            .n_sizes = 2,
                            .committers = {1, 8, 64},
                            .n_committers = 3};

/* Parses "1,8,64" into at most 8 numbers in [lo, hi]; false if malformed. */
static bool
parse_list(const char *arg, unsigned long lo, unsigned long hi, unsigned long *out, size_t *n_r)
{
    size_t n = 0;
    const char *p = arg;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || errno || v < lo || v > hi || n == 8 || (*end && *end != ','))
            return false;
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    *n_r = n;
    return n > 0;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void
die(const char *fmt, const char *arg, int err)
{
    fprintf(stderr, "bench_store: ");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    fprintf(stderr, fmt, arg); /* fmt is always a literal at the call sites */
#pragma GCC diagnostic pop
    if (err)
        fprintf(stderr, ": %s", tdm_strerror(err));
    fprintf(stderr, "\n");
    exit(1);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    /* Incompressible bytes, so no layer below can cheat by compressing. */
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(seed >> 56);
    }
}

/* ---- The raw limit: write + fdatasync, N frames per sync ---- */

/* Counts of one kind of run, summed over the interleaved slices of a row. */
struct tally {
    uint64_t recs;
    uint64_t syncs;
    double seconds;
    double min_rate, max_rate; /* records/s of the slowest and fastest slice */
    double cpu_s;              /* user + system CPU of the whole process during the slices */
    uint64_t csw;              /* voluntary + involuntary context switches during them */
    uint64_t solo;             /* tandem: syncs nothing overlapped (store_status.solo_syncs) */
};

/* CPU time and context switches of the whole process (every thread) so far. */
struct usage {
    double cpu_s;
    uint64_t csw;
};

static struct usage
usage_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (struct usage){.cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
                          .csw = (uint64_t)(ru.ru_nvcsw + ru.ru_nivcsw)};
}

static void
tally_usage(struct tally *t, struct usage u0)
{
    struct usage u1 = usage_now();
    t->cpu_s += u1.cpu_s - u0.cpu_s;
    t->csw += u1.csw - u0.csw;
}

static double
tally_add(struct tally *t, uint64_t recs, uint64_t syncs, double seconds)
{
    double rate = (double)recs / seconds;
    if (t->seconds == 0 || rate < t->min_rate)
        t->min_rate = rate;
    if (t->seconds == 0 || rate > t->max_rate)
        t->max_rate = rate;
    t->recs += recs;
    t->syncs += syncs;
    t->seconds += seconds;
    return rate;
}

static double
tally_rate(const struct tally *t)
{
    return t->seconds > 0 ? (double)t->recs / t->seconds : 0.0;
}

static double
per_rec(const struct tally *t, uint64_t v)
{
    return t->recs ? (double)v / (double)t->recs : 0.0;
}

static double
per_rec_us(const struct tally *t)
{
    return t->recs ? t->cpu_s * 1e6 / (double)t->recs : 0.0;
}

static double
pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static int
prealloc_zeros(int fd, size_t size)
{
    static uint8_t zeros[1 << 20];
    for (size_t off = 0; off < size; off += sizeof(zeros))
        if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) != (ssize_t)sizeof(zeros))
            return -errno;
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* The raw peer's file, written with zeros once for the whole run and rewritten as it wraps, as
 * tandem's generations are written new and then recycled. */
static int raw_fd = -1;
static size_t raw_off;

static void
raw_open(void)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/raw.dat", cfg.work);
    raw_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (raw_fd < 0)
        die("cannot create %s", path, -errno);
    int ret = prealloc_zeros(raw_fd, RAW_FILE_SIZE);
    if (ret < 0)
        die("cannot preallocate %s", path, ret);
}

/* One slice of the raw limit: batches of `batch` frames, one pwrite and one fdatasync each. */
static double
raw_slice(size_t payload, unsigned batch, double seconds, struct tally *t)
{
    /* The same bytes tandem writes: a frame is the payload plus header and CRC. */
    size_t frame = log_frame_size((uint32_t)payload);
    size_t blen = frame * batch;
    uint8_t *buf = malloc(blen);
    if (!buf)
        die("%s", "out of memory", 0);
    fill_random(buf, blen, blen);

    uint64_t recs = 0, syncs = 0;
    double t0 = now_s(), now;
    do {
        if (raw_off + blen > RAW_FILE_SIZE)
            raw_off = 0;
        if (pwrite(raw_fd, buf, blen, (off_t)raw_off) != (ssize_t)blen)
            die("write to the raw file in %s failed", cfg.work, -errno);
        if (fdatasync(raw_fd) < 0)
            die("fdatasync of the raw file in %s failed", cfg.work, -errno);
        raw_off += blen;
        recs += batch;
        syncs++;
        now = now_s();
    } while (now - t0 < seconds);
    free(buf);
    return tally_add(t, recs, syncs, now - t0);
}

/*
 * The raw limit with two syncs in flight, the peer of tandem's two log workers: two threads,
 * each a plain pwrite + fdatasync loop of half the batch (n/2 and n - n/2 frames) into its own
 * half of the raw file. Each thread's sync starts after its own write, as each log worker's
 * does; the block layer may merge the two threads' cache flushes, which is what a disk with
 * one sync in flight at a time cannot show. With n = 1 it is the plain loop.
 */
struct raw2_half {
    size_t frame;
    unsigned batch;
    double seconds;
    size_t base, off; /* its half of the file, and where it writes next within it */
    uint64_t recs, syncs;
};

static void *
raw2_thread(void *arg)
{
    struct raw2_half *h = arg;
    size_t blen = h->frame * h->batch, half = RAW_FILE_SIZE / 2;
    uint8_t *buf = malloc(blen);
    if (!buf)
        die("%s", "out of memory", 0);
    fill_random(buf, blen, blen + h->base);
    double t0 = now_s();
    do {
        if (h->off + blen > half)
            h->off = 0;
        if (pwrite(raw_fd, buf, blen, (off_t)(h->base + h->off)) != (ssize_t)blen)
            die("write to the raw file in %s failed", cfg.work, -errno);
        if (fdatasync(raw_fd) < 0)
            die("fdatasync of the raw file in %s failed", cfg.work, -errno);
        h->off += blen;
        h->recs += h->batch;
        h->syncs++;
    } while (now_s() - t0 < h->seconds);
    free(buf);
    return NULL;
}

static double
raw2_slice(size_t payload, unsigned batch, double seconds, struct tally *t)
{
    if (batch < 2)
        return raw_slice(payload, batch, seconds, t);
    static size_t offs[2];
    struct raw2_half h[2];
    pthread_t th[2];
    double t0 = now_s();
    for (unsigned i = 0; i < 2; i++) {
        h[i] = (struct raw2_half){.frame = log_frame_size((uint32_t)payload),
                                  .batch = i == 0 ? batch / 2 : batch - batch / 2,
                                  .seconds = seconds,
                                  .base = i * (RAW_FILE_SIZE / 2),
                                  .off = offs[i]};
        if (pthread_create(&th[i], NULL, raw2_thread, &h[i]) != 0)
            die("%s", "cannot start a thread", 0);
    }
    for (unsigned i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        offs[i] = h[i].off;
    }
    return tally_add(t, h[0].recs + h[1].recs, h[0].syncs + h[1].syncs, now_s() - t0);
}

/* ---- tandem commits ---- */

#define BENCH_MAILBOX "bench@example.test"

struct committer {
    struct store *store;
    uint16_t type;
    size_t payload; /* NOOP: payload bytes; APPEND: body bytes giving that payload */
    unsigned id;
    uint64_t serial;
    atomic_bool *stop;
    uint64_t done;
    int error;
};

static void *
committer_main(void *arg)
{
    struct committer *c = arg;
    uint8_t *buf = malloc(c->payload);
    if (!buf) {
        c->error = -ENOMEM;
        return NULL;
    }
    fill_random(buf, c->payload, c->id + 1);
    struct mail_target target = {.mailbox = BENCH_MAILBOX, .folder = "INBOX"};
    while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
        /* A distinct body each time, so single-instance storage never short-cuts a write. */
        uint64_t tag[2] = {c->id, c->serial + c->done};
        memcpy(buf, tag, sizeof(tag));
        int ret;
        if (c->type == TDM_REC_NOOP) {
            ret = store_commit(c->store, TDM_REC_NOOP, buf, c->payload, NULL, NULL);
        } else {
            struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                                 .targets = &target,
                                 .n_targets = 1,
                                 .internal_date = 1704067200,
                                 .body = buf,
                                 .body_len = c->payload};
            memcpy(op.guid, tag, sizeof(op.guid));
            struct mail_result res;
            const char *why = NULL;
            ret = store_commit_op(c->store, &op, NULL, &res, &why);
            if (ret == 0)
                ret = res.status;
        }
        if (ret != 0) {
            c->error = ret;
            break;
        }
        c->done++;
    }
    free(buf);
    return NULL;
}

static void
store_opts(struct store_options *o)
{
    store_options_init(o);
    if (cfg.generation_size)
        o->generation_size = cfg.generation_size;
}

static void
create_mailbox(struct store *s)
{
    struct mail_op op = {
        .type = TDM_REC_MAILBOX_CREATE, .mailbox = BENCH_MAILBOX, .uidvalidity = 1};
    struct mail_result res;
    const char *why = NULL;
    int ret = store_commit_op(s, &op, NULL, &res, &why);
    if (ret != 0 || res.status != 0)
        die("cannot create the mailbox in %s", cfg.work, ret ? ret : res.status);
}

/* The body length whose MESSAGE_APPEND payload is exactly payload bytes. */
static size_t
append_body_for(size_t payload)
{
    struct mail_target target = {.mailbox = BENCH_MAILBOX, .folder = "INBOX"};
    uint8_t byte = 0;
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &target,
                         .n_targets = 1,
                         .body = &byte,
                         .body_len = 1};
    uint8_t *enc;
    size_t len;
    const char *why;
    if (mail_op_encode(&op, &enc, &len, &why) != 0)
        die("cannot encode an append: %s", why, 0);
    free(enc);
    return payload - (len - 1);
}

/* A database kept open for every slice of one row and kind. */
struct bench_db {
    char dir[4200];
    struct store *store;
    uint16_t type;
};

static void
bench_db_open(struct bench_db *db, uint16_t type)
{
    snprintf(db->dir, sizeof(db->dir), "%s/db-%u", cfg.work, type);
    db->type = type;
    struct store_options o;
    store_opts(&o);
    const char *why = NULL;
    int ret = store_create(db->dir, &o, &why);
    if (ret != 0)
        die("store_create: %s", why, ret);
    ret = store_open(db->dir, &o, &db->store, &why);
    if (ret != 0)
        die("store_open: %s", why, ret);
    if (type == TDM_REC_MESSAGE_APPEND)
        create_mailbox(db->store);
}

static void
bench_db_close(struct bench_db *db)
{
    int ret = store_close(&db->store);
    if (ret != 0)
        die("store_close of %s failed", db->dir, ret);
    rm_rf(db->dir);
}

/*
 * --async: n commits kept in flight without a thread each. Every completion callback (on the
 * store's apply thread) submits the slot's next record at once, as the core process's event
 * loop will for IPC requests from its workers: no thread wakes per commit.
 */
struct async_run {
    struct store *store;
    uint16_t type;
    size_t payload;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned active;
    uint64_t done, serial;
    int error;
};

struct async_slot {
    struct async_run *run;
    unsigned id;
    uint8_t *body;
};

static void async_done_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *res);

static int
async_submit(struct async_slot *sl)
{
    struct async_run *r = sl->run;
    uint64_t tag[2] = {sl->id, r->serial + __atomic_fetch_add(&r->done, 0, __ATOMIC_RELAXED)};
    memcpy(sl->body, tag, sizeof(tag));
    if (r->type == TDM_REC_NOOP)
        return store_commit_async(r->store, TDM_REC_NOOP, sl->body, r->payload, async_done_cb, sl);
    struct mail_target target = {.mailbox = BENCH_MAILBOX, .folder = "INBOX"};
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &target,
                         .n_targets = 1,
                         .internal_date = 1704067200,
                         .body = sl->body,
                         .body_len = r->payload};
    memcpy(op.guid, tag, sizeof(op.guid));
    uint8_t *enc = NULL;
    size_t len = 0;
    const char *why = NULL;
    int ret = mail_op_encode(&op, &enc, &len, &why);
    if (ret == 0)
        ret = store_commit_async(r->store, TDM_REC_MESSAGE_APPEND, enc, len, async_done_cb, sl);
    free(enc);
    return ret;
}

static void
async_finish(struct async_run *r, int error)
{
    pthread_mutex_lock(&r->lock);
    if (error && !r->error)
        r->error = error;
    if (--r->active == 0)
        pthread_cond_signal(&r->idle);
    pthread_mutex_unlock(&r->lock);
}

static void
async_done_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *res)
{
    struct async_slot *sl = ctx;
    struct async_run *r = sl->run;
    (void)lsn;
    if (status == 0 && r->type != TDM_REC_NOOP)
        status = res->status;
    if (status != 0) {
        async_finish(r, status);
        return;
    }
    __atomic_fetch_add(&r->done, 1, __ATOMIC_RELAXED);
    if (atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        async_finish(r, 0);
        return;
    }
    int ret = async_submit(sl);
    if (ret != 0)
        async_finish(r, ret);
}

static double
tandem_slice_async(struct bench_db *db, size_t payload, unsigned n, double seconds, struct tally *t)
{
    struct async_run r = {.store = db->store,
                          .type = db->type,
                          .payload = db->type == TDM_REC_NOOP ? payload : append_body_for(payload),
                          .lock = PTHREAD_MUTEX_INITIALIZER,
                          .idle = PTHREAD_COND_INITIALIZER};
    struct async_slot *slots = calloc(n, sizeof(*slots));
    if (!slots)
        die("%s", "out of memory", 0);
    struct store_status st0, st1;
    store_get_status(db->store, &st0);
    r.serial = st0.last_lsn;
    double t0 = now_s();
    pthread_mutex_lock(&r.lock);
    for (unsigned i = 0; i < n; i++) {
        slots[i] = (struct async_slot){.run = &r, .id = i, .body = malloc(r.payload)};
        if (!slots[i].body)
            die("%s", "out of memory", 0);
        fill_random(slots[i].body, r.payload, i + 1);
        r.active++;
    }
    pthread_mutex_unlock(&r.lock);
    for (unsigned i = 0; i < n; i++) {
        int ret = async_submit(&slots[i]);
        if (ret != 0)
            async_finish(&r, ret);
    }
    struct timespec nap = {.tv_sec = (time_t)seconds,
                           .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    atomic_store(&r.stop, true);
    pthread_mutex_lock(&r.lock);
    while (r.active > 0)
        pthread_cond_wait(&r.idle, &r.lock);
    pthread_mutex_unlock(&r.lock);
    if (r.error)
        die("a commit failed in %s", db->dir, r.error);
    double el = now_s() - t0;
    store_get_status(db->store, &st1);
    for (unsigned i = 0; i < n; i++)
        free(slots[i].body);
    free(slots);
    t->solo += st1.solo_syncs - st0.solo_syncs;
    return tally_add(t, r.done, st1.syncs - st0.syncs, el);
}

/* One slice: n threads commit for `seconds`, then stop. */
static double
tandem_slice(struct bench_db *db, size_t payload, unsigned n, double seconds, struct tally *t)
{
    if (cfg.async)
        return tandem_slice_async(db, payload, n, seconds, t);
    atomic_bool stop = false;
    struct committer *cs = calloc(n, sizeof(*cs));
    pthread_t *th = calloc(n, sizeof(*th));
    if (!cs || !th)
        die("%s", "out of memory", 0);
    struct store_status st0, st1;
    store_get_status(db->store, &st0);
    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        cs[i] = (struct committer){.store = db->store,
                                   .type = db->type,
                                   .payload = db->type == TDM_REC_NOOP ? payload
                                                                       : append_body_for(payload),
                                   .id = i,
                                   .serial = st0.last_lsn, /* keeps bodies distinct across slices */
                                   .stop = &stop};
        if (pthread_create(&th[i], NULL, committer_main, &cs[i]) != 0)
            die("%s", "cannot start a thread", 0);
    }
    struct timespec nap = {.tv_sec = (time_t)seconds,
                           .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    atomic_store(&stop, true);
    uint64_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        if (cs[i].error)
            die("a commit failed in %s", db->dir, cs[i].error);
        total += cs[i].done;
    }
    /* Until the last thread returns, commits were still completing: count that time too. */
    double el = now_s() - t0;
    store_get_status(db->store, &st1);
    free(cs);
    free(th);
    t->solo += st1.solo_syncs - st0.solo_syncs;
    return tally_add(t, total, st1.syncs - st0.syncs, el);
}

/* ---- Replay ---- */

struct replay_result {
    double log_mb; /* bytes of frames replayed */
    uint64_t records;
    double open_s;   /* store_open, cold cache */
    double raw_mb_s; /* cold sequential read of the same log files */
};

static void
copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (in < 0 || out < 0)
        die("cannot copy %s", from, -errno);
    static uint8_t buf[1 << 20];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            die("cannot write %s", to, -errno);
    if (n < 0 || fsync(out) < 0)
        die("cannot copy %s", from, -errno);
    close(in);
    close(out);
}

/* Drops the files of dir from the page cache (they are clean: fdatasync'd or fsync'd), or
 * with read, reads them sequentially and returns the bytes read. */
static uint64_t
files_in(const char *dir, bool read_them)
{
    DIR *d = opendir(dir);
    if (!d)
        die("cannot list %s", dir, -errno);
    static uint8_t buf[1 << 20];
    uint64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        fdatasync(fd); /* clean pages are the only ones DONTNEED may drop */
        if (read_them) {
            ssize_t n;
            while ((n = read(fd, buf, sizeof(buf))) > 0)
                total += (uint64_t)n;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
    return total;
}

struct inflight {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n;
    int error;
};

static void
inflight_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    struct inflight *f = ctx;
    (void)lsn;
    pthread_mutex_lock(&f->lock);
    if (status == 0 && result->status != 0)
        status = result->status;
    if (status != 0 && f->error == 0)
        f->error = status;
    f->n--;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
}

/* The child: commits about replay_mb of records, 64 in flight, then dies without closing. */
static _Noreturn void
replay_child(const char *dir, uint16_t type, size_t payload)
{
    struct store_options o;
    store_opts(&o);
    /* No checkpoint may run: then LMDB's applied LSN on disk stays where the copy says. */
    o.checkpoint_bytes = UINT64_MAX;
    o.checkpoint_ms = UINT32_MAX;
    struct store *s;
    const char *why = NULL;
    if (store_open(dir, &o, &s, &why) != 0)
        _exit(3);
    store_set_truncation_floor(s, 1);
    size_t body = type == TDM_REC_NOOP ? payload : append_body_for(payload);
    uint8_t *buf = malloc(body);
    struct inflight f = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    if (!buf)
        _exit(4);
    fill_random(buf, body, 7);
    struct mail_target target = {.mailbox = BENCH_MAILBOX, .folder = "INBOX"};
    uint64_t want = (uint64_t)cfg.replay_mb * 1024 * 1024;
    for (uint64_t i = 0, bytes = 0; bytes < want; i++, bytes += payload) {
        memcpy(buf, &i, sizeof(i));
        uint8_t *enc = buf;
        size_t len = body;
        if (type != TDM_REC_NOOP) {
            struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                                 .targets = &target,
                                 .n_targets = 1,
                                 .body = buf,
                                 .body_len = body};
            memcpy(op.guid, &i, sizeof(i));
            if (mail_op_encode(&op, &enc, &len, &why) != 0)
                _exit(5);
        }
        pthread_mutex_lock(&f.lock);
        while (f.n >= 64)
            pthread_cond_wait(&f.cond, &f.lock);
        f.n++;
        pthread_mutex_unlock(&f.lock);
        if (store_commit_async(s, type, enc, len, inflight_cb, &f) != 0)
            _exit(6);
        if (enc != buf)
            free(enc);
    }
    pthread_mutex_lock(&f.lock);
    while (f.n > 0)
        pthread_cond_wait(&f.cond, &f.lock);
    pthread_mutex_unlock(&f.lock);
    /* Every record is durable in the log; LMDB's pages are thrown away by the parent. */
    _exit(f.error ? 7 : 0);
}

static struct replay_result
replay_run(uint16_t type, size_t payload)
{
    char dir[4200], mdb[4300], saved[4300], logdir[4300];
    snprintf(dir, sizeof(dir), "%s/db", cfg.work);
    snprintf(mdb, sizeof(mdb), "%s/store/data.mdb", dir);
    snprintf(saved, sizeof(saved), "%s/empty.mdb", cfg.work);
    snprintf(logdir, sizeof(logdir), "%s/log", dir);
    struct store_options o;
    store_opts(&o);
    const char *why = NULL;
    int ret = store_create(dir, &o, &why);
    if (ret != 0)
        die("store_create: %s", why, ret);
    if (type == TDM_REC_MESSAGE_APPEND) {
        struct store *s;
        if ((ret = store_open(dir, &o, &s, &why)) != 0)
            die("store_open: %s", why, ret);
        create_mailbox(s);
        store_close(&s);
    }
    copy_file(mdb, saved);

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("%s", "fork failed", -errno);
    if (pid == 0)
        replay_child(dir, type, payload);
    int wst;
    if (waitpid(pid, &wst, 0) < 0 || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
        die("the committing child failed (status %s)", "see above", 0);

    copy_file(saved, mdb);
    files_in(logdir, false);
    double t0 = now_s();
    uint64_t log_bytes = files_in(logdir, true);
    double raw_s = now_s() - t0;
    files_in(logdir, false);
    sync();
    files_in(logdir, false);

    struct store *s;
    t0 = now_s();
    ret = store_open(dir, &o, &s, &why);
    double open_s = now_s() - t0;
    if (ret != 0)
        die("store_open after the crash: %s", why, ret);
    struct store_status st;
    store_get_status(s, &st);
    store_close(&s);
    rm_rf(dir);
    unlink(saved);
    /* The mailbox record (if any) was checkpointed before the copy: not replayed. */
    uint64_t records = type == TDM_REC_MESSAGE_APPEND ? st.applied_lsn - 1 : st.applied_lsn;
    return (struct replay_result){.log_mb = (double)records *
                                            (double)log_frame_size((uint32_t)payload) / MIB,
                                  .records = records,
                                  .open_s = open_s,
                                  .raw_mb_s = (double)log_bytes / MIB / raw_s};
}

/* ---- Report ---- */

static const char *
fs_name(long type)
{
    switch (type) {
    case TMPFS_MAGIC:
        return "tmpfs";
    case EXT4_SUPER_MAGIC:
        return "ext2/3/4";
    case XFS_SUPER_MAGIC:
        return "xfs";
    case BTRFS_SUPER_MAGIC:
        return "btrfs";
    case OVERLAYFS_SUPER_MAGIC:
        return "overlayfs";
    default:
        return "other";
    }
}

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: bench_store [--seconds S] [--dir DIR] [--rounds R] [--replay-mb MB]\n"
            "                   [--committers 1,8,64] [--sizes 4096,65536]\n"
            "                   [--generation-size BYTES] [--no-replay]\n"
            "                   [--no-commits] [--async] [--noop-only]\n"
            "\n"
            "Measures tandem's commit rate (1, 8 and 64 committers; 4 KiB and 64 KiB NOOP and\n"
            "MESSAGE_APPEND records) beside a raw write+fdatasync loop batched the same way,\n"
            "and log replay speed at store_open beside a cold sequential read, all on the\n"
            "disk holding DIR (default $BENCH_DIR, else /var/tmp). Not tmpfs: fdatasync is\n"
            "free there and the figures mean nothing.\n"
            "\n"
            "  --seconds S              duration of each commit row (default 3)\n"
            "  --replay-mb MB           log committed before each replay (default 64)\n"
            "  --committers LIST        concurrent committers per row (default 1,8,64)\n"
            "  --sizes LIST             record payload bytes (default 4096,65536)\n"
            "  --generation-size BYTES  store generation size (default: the store's, 1 MiB)\n"
            "  --async                  N commits in flight from completion callbacks (as the\n"
            "                           core's event loop submits them) instead of N blocking\n"
            "                           threads\n"
            "  --noop-only              only the NOOP rows (the log path alone, e.g. to profile\n"
            "                           it)\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"seconds", required_argument, NULL, 's'},
        {"dir", required_argument, NULL, 'd'},
        {"replay-mb", required_argument, NULL, 'r'},
        {"rounds", required_argument, NULL, 'o'},
        {"generation-size", required_argument, NULL, 'g'},
        {"committers", required_argument, NULL, 'n'},
        {"sizes", required_argument, NULL, 'z'},
        {"no-replay", no_argument, NULL, 'R'},
        {"no-commits", no_argument, NULL, 'C'},
        {"async", no_argument, NULL, 'a'},
        {"noop-only", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("BENCH_DIR");
    snprintf(cfg.base, sizeof(cfg.base), "%s", env && *env ? env : "/var/tmp");
    int c;
    while ((c = getopt_long(argc, argv, "s:d:r:o:g:n:z:RCaNh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            cfg.seconds = atof(optarg);
            if (cfg.seconds <= 0 || cfg.seconds > 3600) {
                fprintf(stderr, "bench_store: --seconds wants 0 < S <= 3600\n");
                return 2;
            }
            break;
        case 'd':
            snprintf(cfg.base, sizeof(cfg.base), "%s", optarg);
            break;
        case 'r':
            cfg.replay_mb = (unsigned)atoi(optarg);
            if (cfg.replay_mb < 1 || cfg.replay_mb > 4096) {
                fprintf(stderr, "bench_store: --replay-mb wants 1..4096\n");
                return 2;
            }
            break;
        case 'o':
            cfg.rounds = (unsigned)atoi(optarg);
            if (cfg.rounds < 1 || cfg.rounds > 1000) {
                fprintf(stderr, "bench_store: --rounds wants 1..1000\n");
                return 2;
            }
            break;
        case 'g':
            cfg.generation_size = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'n':
        case 'z': {
            unsigned long v[8];
            size_t n;
            if (!parse_list(optarg, c == 'n' ? 1 : 1, c == 'n' ? 1024 : 16u << 20, v, &n)) {
                fprintf(stderr,
                        "bench_store: --%s wants a comma-separated list of up to 8 "
                        "numbers\n",
                        c == 'n' ? "committers" : "sizes");
                return 2;
            }
            for (size_t i = 0; i < n; i++) {
                if (c == 'n')
                    cfg.committers[i] = (unsigned)v[i];
                else
                    cfg.sizes[i] = v[i];
            }
            *(c == 'n' ? &cfg.n_committers : &cfg.n_sizes) = n;
            break;
        }
        case 'R':
            cfg.replay = false;
            break;
        case 'C':
            cfg.commits = false;
            break;
        case 'a':
            cfg.async = true;
            break;
        case 'N':
            cfg.noop_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "bench_store: try --help\n");
            return 2;
        }
    }
    /* Rolls and mounts are operator events; hundreds of them would bury the table. */
    event_set_sink(NULL);

    snprintf(cfg.work, sizeof(cfg.work), "%s/tandem-bench.XXXXXX", cfg.base);
    if (!mkdtemp(cfg.work))
        die("cannot create a directory under %s (set BENCH_DIR)", cfg.base, -errno);
    struct statfs sfs;
    struct stat st;
    if (statfs(cfg.work, &sfs) != 0 || stat(cfg.work, &st) != 0)
        die("cannot stat %s", cfg.work, -errno);
    char host[256] = "?";
    gethostname(host, sizeof(host));
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));

    printf("bench_store  %s  host %s, %ld CPUs\n", date, host, sysconf(_SC_NPROCESSORS_ONLN));
    printf("dir %s: %s, device %u:%u, %.1f GiB free\n", cfg.work, fs_name((long)sfs.f_type),
           major(st.st_dev), minor(st.st_dev),
           (double)sfs.f_bavail * (double)sfs.f_bsize / (1024.0 * MIB));
    if (sfs.f_type == TMPFS_MAGIC)
        printf("WARNING: %s is tmpfs: fdatasync costs nothing there, so neither tandem's nor the "
               "raw figures say anything about a disk. Set BENCH_DIR to a directory on one.\n",
               cfg.work);
    /* The exact command, with every setting spelled out, so the table can be re-measured. */
    char lists[256] = "", *lp = lists;
    lp += sprintf(lp, " --committers ");
    for (size_t i = 0; i < cfg.n_committers; i++)
        lp += sprintf(lp, "%s%u", i ? "," : "", cfg.committers[i]);
    lp += sprintf(lp, " --sizes ");
    for (size_t i = 0; i < cfg.n_sizes; i++)
        lp += sprintf(lp, "%s%zu", i ? "," : "", cfg.sizes[i]);
    if (cfg.generation_size)
        sprintf(lp, " --generation-size %" PRIu32, cfg.generation_size);
    printf("reproduce: BENCH_DIR=%s %s --seconds %g --rounds %u --replay-mb %u%s%s%s%s%s\n\n",
           cfg.base, argv[0], cfg.seconds, cfg.rounds, cfg.replay_mb, lists,
           cfg.replay ? "" : " --no-replay", cfg.commits ? "" : " --no-commits",
           cfg.async ? " --async" : "", cfg.noop_only ? " --noop-only" : "");
    fflush(stdout);

    if (cfg.commits) {
        static char costs[8192];
        size_t costs_len = 0;
        raw_open();
        printf("Commits: per row %g s of each kind, run as %u interleaved rounds (raw, NOOP,\n"
               "APPEND, raw2, rotating) so that drift in the disk's speed hits all four alike.\n"
               "MB/s = payload MiB/s. rec/sync = records per log fdatasync (tandem's count\n"
               "includes generation END/header syncs). raw = one pwrite of N frames + fdatasync\n"
               "on a zero-filled file. ratio = tandem r/s / raw r/s over the row, and its range\n"
               "over the rounds. raw2 = two such loops of N/2 frames at once (two syncs in\n"
               "flight, as tandem's two log workers); ratio2 = tandem r/s / raw2 r/s.\n\n",
               cfg.seconds, cfg.rounds);
        printf("%-6s %6s %3s | %9s %7s %8s | %9s %7s | %5s %11s | %9s %6s\n", "record", "size", "N",
               "tandem/s", "MB/s", "rec/sync", "raw/s", "MB/s", "ratio", "range", "raw2/s",
               "ratio2");
        printf("------------------+----------------------------+-------------------+---------"
               "--------+-----------------\n");
        for (size_t si = 0; si < cfg.n_sizes; si++) {
            for (size_t ni = 0; ni < cfg.n_committers; ni++) {
                size_t size = cfg.sizes[si];
                unsigned n = cfg.committers[ni];
                double slice = cfg.seconds / cfg.rounds;
                struct bench_db dbs[2];
                bench_db_open(&dbs[0], TDM_REC_NOOP);
                bench_db_open(&dbs[1], TDM_REC_MESSAGE_APPEND);
                struct tally raw = {0}, raw2 = {0}, tt[2] = {{0}};
                double lo[2] = {1e30, 1e30}, hi[2] = {0, 0};
                for (unsigned r = 0; r < cfg.rounds; r++) {
                    double rate[4];
                    for (unsigned k = 0; k < 4; k++) {
                        unsigned kind = (r + k) % 4;
                        struct usage u0 = usage_now();
                        if (kind == 2 && cfg.noop_only) {
                            rate[2] = 0;
                        } else if (kind == 0) {
                            rate[0] = raw_slice(size, n, slice, &raw);
                            tally_usage(&raw, u0);
                        } else if (kind == 3) {
                            rate[3] = raw2_slice(size, n, slice, &raw2);
                            tally_usage(&raw2, u0);
                        } else {
                            rate[kind] =
                                tandem_slice(&dbs[kind - 1], size, n, slice, &tt[kind - 1]);
                            tally_usage(&tt[kind - 1], u0);
                        }
                    }
                    for (unsigned k = 0; k < 2; k++) {
                        double q = rate[k + 1] / rate[0];
                        lo[k] = q < lo[k] ? q : lo[k];
                        hi[k] = q > hi[k] ? q : hi[k];
                    }
                }
                bench_db_close(&dbs[0]);
                bench_db_close(&dbs[1]);
                double frame_mb = (double)size / MIB;
                for (size_t k = 0; k < (cfg.noop_only ? 1u : 2u); k++) {
                    char range[32];
                    snprintf(range, sizeof(range), "%.2f-%.2f", lo[k], hi[k]);
                    printf("%-6s %3zuKiB %3u | %9.0f %7.1f %8.1f | %9.0f %7.1f | %5.2f %11s | "
                           "%9.0f %6.2f\n",
                           k == 0 ? "NOOP" : "APPEND", size / 1024, n, tally_rate(&tt[k]),
                           tally_rate(&tt[k]) * frame_mb,
                           tt[k].syncs ? (double)tt[k].recs / (double)tt[k].syncs : 0.0,
                           tally_rate(&raw), tally_rate(&raw) * frame_mb,
                           tally_rate(&tt[k]) / tally_rate(&raw), range, tally_rate(&raw2),
                           tally_rate(&tt[k]) / tally_rate(&raw2));
                    costs_len += (size_t)snprintf(
                        costs + costs_len, sizeof(costs) - costs_len,
                        "%-6s %3zuKiB %3u | %8.1f %8.2f %6.1f%% | %8.1f %8.2f | %8.1f %8.2f\n",
                        k == 0 ? "NOOP" : "APPEND", size / 1024, n, per_rec_us(&tt[k]),
                        per_rec(&tt[k], tt[k].csw), pct(tt[k].solo, tt[k].syncs), per_rec_us(&raw),
                        per_rec(&raw, raw.csw), per_rec_us(&raw2), per_rec(&raw2, raw2.csw));
                }
                fflush(stdout);
            }
        }
        close(raw_fd);
        printf("\nCost per record over the same slices: CPU us/rec = user + system CPU of the\n"
               "whole process (committers, log workers, apply) per record; csw/rec = context\n"
               "switches per record; solo = share of tandem's syncs that nothing overlapped\n"
               "(a generation's END was in them: a roll waits for every earlier sync).\n\n");
        printf("%-6s %6s %3s | %8s %8s %7s | %8s %8s | %8s %8s\n", "record", "size", "N", "CPU us",
               "csw", "solo", "raw CPU", "raw csw", "raw2 CPU", "raw2 csw");
        printf("------------------+---------------------------+-------------------+---------"
               "--------\n%s\n",
               costs);
    }
    if (cfg.replay) {
        printf("Replay: store_open of a database whose LMDB lost every record (%u MiB of log,\n"
               "page cache dropped), beside a cold sequential read of the same log files.\n\n",
               cfg.replay_mb);
        printf("%-7s %6s | %9s %8s %10s %8s | %9s | %6s\n", "record", "size", "records", "open s",
               "records/s", "MB/s", "read MB/s", "ratio");
        printf("---------------+----------------------------------------+-----------+-------\n");
        static const struct {
            uint16_t type;
            size_t size;
        } rows[] = {{TDM_REC_NOOP, 4096},
                    {TDM_REC_NOOP, 65536},
                    {TDM_REC_MESSAGE_APPEND, 4096},
                    {TDM_REC_MESSAGE_APPEND, 65536}};
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            struct replay_result r = replay_run(rows[i].type, rows[i].size);
            double mbs = r.log_mb / r.open_s;
            printf("%-7s %3zuKiB | %9" PRIu64 " %8.2f %10.0f %8.1f | %9.1f | %6.2f\n",
                   rows[i].type == TDM_REC_NOOP ? "NOOP" : "APPEND", rows[i].size / 1024, r.records,
                   r.open_s, (double)r.records / r.open_s, mbs, r.raw_mb_s, mbs / r.raw_mb_s);
            fflush(stdout);
        }
    }
    rm_rf(cfg.work);
    return 0;
}

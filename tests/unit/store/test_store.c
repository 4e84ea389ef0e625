/*
 * The store core: create/open/close, group commit, generation roll, idle close, oversize
 * records, checkpoint and truncation (with the replication floor), recovery after a process
 * crash, torn tails, corruption, missing generations, foreign directories, disk full, and
 * write failures. Records are NOOPs here; the mail model has its own tests and the crash
 * tests combine both.
 */
#include "store/store.h"
#include "store/store_inspect.h"
#include "store/store_int.h"
#include "lib/crc32c.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"

/* ---- helpers ---- */

struct seen_events {
    int count[2100];
    char last_message[1024];
};
static struct seen_events seen;

static void
hook(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)ctx;
    (void)subject;
    if ((int)id >= 0 && (int)id < 2100)
        seen.count[id]++;
    snprintf(seen.last_message, sizeof(seen.last_message), "%s", message);
}

static char tmpdir[256];

static int
setup(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "store"), 0);
    event_set_sink(NULL);
    event_set_hook(hook, NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    event_set_hook(NULL, NULL);
    return 0;
}

static const char *
dbdir(void)
{
    static char p[300];
    snprintf(p, sizeof(p), "%s/db1", tmpdir);
    return p;
}

static void
small_options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->reserve_bytes = 64 * 1024;
}

static struct store *
create_open(const struct store_options *o)
{
    const char *err = NULL;
    int ret = store_create(dbdir(), o, &err);
    if (ret != 0)
        fail_msg("create: %s", err);
    struct store *s = NULL;
    ret = store_open(dbdir(), o, &s, &err);
    if (ret != 0)
        fail_msg("open: %s", err);
    return s;
}

static struct store *
reopen(const struct store_options *o, int expect)
{
    const char *err = NULL;
    struct store *s = NULL;
    int ret = store_open(dbdir(), o, &s, &err);
    if (ret != expect)
        fail_msg("open returned %d (%s), expected %d", ret, err ? err : "-", expect);
    return s;
}

static uint64_t
commit_noop(struct store *s, size_t len)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memset(buf, 0xab, len);
    uint64_t lsn = 0;
    assert_int_equal(store_commit(s, TDM_REC_NOOP, buf, len, &lsn, NULL), 0);
    free(buf);
    return lsn;
}

static size_t
count_generations(void)
{
    char log_dir[400];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dbdir());
    uint64_t *gens;
    size_t n;
    assert_int_equal(store__gen_list(log_dir, &gens, &n), 0);
    free(gens);
    return n;
}

static void
gen_path(char *buf, size_t size, uint64_t gen)
{
    char log_dir[400];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dbdir());
    store__gen_path(buf, size, log_dir, gen);
}

static uint8_t v2_guid[TDM_LOG_GUID_LEN]; /* the database's, for write_v2_generation() */

/*
 * Writes generation gen in the version 2 layout (the identity in the header, records right
 * after it): n NOOP records from first_lsn, closed by END when closed. Returns its generation
 * checksum.
 */
static uint32_t
write_v2_generation(uint64_t gen, uint64_t first_lsn, uint32_t prev_checksum, int n, bool closed)
{
    const size_t size = 64 * 1024, payload = 100;
    uint8_t *buf = calloc(1, size);
    assert_non_null(buf);
    struct log_header h = {.version = 2,
                           .generation = gen,
                           .created_us = 1,
                           .epoch = 1,
                           .first_lsn = first_lsn,
                           .prev_checksum = prev_checksum,
                           .file_size = (uint32_t)size};
    memcpy(h.guid, v2_guid, sizeof(h.guid));
    log_header_encode(&h, buf);
    size_t off = TDM_LOG_HEADER_SIZE;
    uint32_t checksum = 0;
    uint8_t body[100];
    memset(body, 0x5a, sizeof(body));
    for (int i = 0; i < n; i++) {
        log_record_encode(first_lsn + (uint64_t)i, 1, TDM_REC_NOOP, body, payload, buf + off);
        checksum = crc32c(checksum, buf + off, log_frame_size(payload));
        off += log_frame_size(payload);
    }
    if (closed) {
        struct log_end end = {.record_count = (uint64_t)n, .gen_checksum = checksum};
        uint8_t ep[TDM_LOG_END_PAYLOAD];
        log_end_encode(&end, ep);
        log_record_encode(first_lsn + (uint64_t)n - 1, 1, TDM_REC_END, ep, sizeof(ep), buf + off);
    }
    char p[512];
    gen_path(p, sizeof(p), gen);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    close(fd);
    free(buf);
    return checksum;
}

/* ---- tests ---- */

static void
test_create_open_close(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 1);
    assert_int_equal(st.last_lsn, 0);
    assert_int_equal(commit_noop(s, 10), 1);
    assert_int_equal(commit_noop(s, 0), 2);
    assert_int_equal(store_close(&s), 0);
    assert_null(s);
    assert_int_equal(seen.count[TDM_EV_STORE_MOUNTED], 1);
    assert_int_equal(seen.count[TDM_EV_STORE_DISMOUNTED], 1);

    s = reopen(&o, 0);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 2);
    assert_int_equal(st.last_lsn, 2);
    /* The generation closed at shutdown; the next one is current. */
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(commit_noop(s, 5), 3);
    assert_int_equal(store_close(&s), 0);

    /* A second create on the same directory is refused. */
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), TDM_EEXIST);
    assert_non_null(strstr(err, "already holds"));
    /* So is a directory holding anything else. */
    assert_int_equal(store_create(tmpdir, &o, &err), TDM_EEXIST);
    assert_non_null(strstr(err, "not empty"));
}

static void
test_refuses_missing_and_foreign(void **state)
{
    (void)state;
    const char *err = NULL;
    struct store *s = NULL;
    assert_int_equal(store_open("/nonexistent/tandem/db", NULL, &s, &err), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/tandem/db"));
    assert_int_equal(store_open(tmpdir, NULL, &s, &err), TDM_EFOREIGN);
    assert_non_null(strstr(err, "not a tandem database"));
    assert_null(s);
}

static void
test_second_open_refused(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    struct store *t = reopen(&o, -EBUSY);
    assert_null(t);
    assert_int_equal(store_close(&s), 0);
}

static void
test_generation_roll_and_chain(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    /* ~10 generations of 1 KiB records. */
    for (int i = 0; i < 600; i++)
        assert_int_equal(commit_noop(s, 1000), (uint64_t)i + 1);
    struct store_status st;
    store_get_status(s, &st);
    assert_true(st.current_generation >= 9);
    assert_true(count_generations() >= 9);
    assert_int_equal(st.durable_lsn, 600);
    assert_int_equal(store_close(&s), 0);
    assert_true(seen.count[TDM_EV_STORE_GENERATION_CLOSED] >= 8);

    /* Every closed generation verifies and chains. */
    char log_dir[400];
    snprintf(log_dir, sizeof(log_dir), "%s/log", dbdir());
    uint64_t *gens;
    size_t n;
    assert_int_equal(store__gen_list(log_dir, &gens, &n), 0);
    uint64_t next_first = 0;
    uint32_t prev_sum = 0;
    for (size_t i = 0; i < n; i++) {
        char p[500];
        struct gen_scan sc;
        const char *err = NULL;
        store__gen_path(p, sizeof(p), log_dir, gens[i]);
        assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &sc, &err), 0);
        if (sc.blank_header || sc.hdr.generation != gens[i])
            continue; /* spares above the log: new (blank) or recycled (an older header) */
        if (next_first) {
            assert_int_equal(sc.hdr.first_lsn, next_first);
            assert_int_equal(sc.hdr.prev_checksum, prev_sum);
        }
        assert_int_equal(sc.end, GEN_SCAN_END_RECORD);
        next_first = sc.last_lsn + 1;
        prev_sum = sc.end_rec.gen_checksum;
    }
    free(gens);
    s = reopen(&o, 0);
    assert_int_equal(commit_noop(s, 1), 601);
    assert_int_equal(store_close(&s), 0);
}

static void
test_oversize_record(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    commit_noop(s, 100);
    uint64_t lsn = commit_noop(s, 200 * 1024); /* three times a generation */
    commit_noop(s, 100);
    assert_int_equal(store_close(&s), 0);
    s = reopen(&o, 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, lsn + 1);
    assert_int_equal(store_close(&s), 0);

    /* Above the format's limit: refused before it reaches the log. */
    s = reopen(&o, 0);
    assert_int_equal(store_commit(s, TDM_REC_NOOP, "", TDM_LOG_MAX_PAYLOAD + 1ul, NULL, NULL),
                     TDM_ELIMIT);
    assert_int_equal(store_commit(s, 999, "x", 1, NULL, NULL), TDM_EINVAL);
    assert_int_equal(store_commit(s, TDM_REC_END, "x", 1, NULL, NULL), TDM_EINVAL);
    assert_int_equal(store_close(&s), 0);
}

/* Counts asynchronous commits answered (test_large_batches_begin_larger_generations). */
struct burst {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int done, failed;
};

static void
burst_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    (void)lsn;
    (void)result;
    struct burst *b = ctx;
    pthread_mutex_lock(&b->lock);
    b->done++;
    if (status != 0)
        b->failed++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Queues n records of len bytes at once and waits for all of them: batches of many records. */
static void
commit_burst(struct store *s, int n, size_t len)
{
    struct burst b = {.done = 0};
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    memset(buf, 0x3c, len);
    for (int i = 0; i < n; i++)
        assert_int_equal(store_commit_async(s, TDM_REC_NOOP, buf, len, burst_cb, &b), 0);
    pthread_mutex_lock(&b.lock);
    while (b.done < n)
        pthread_cond_wait(&b.cond, &b.lock);
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(b.failed, 0);
    free(buf);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);
}

/* The size generation gen was begun with (its BEGIN), after checking it is a generation of the
 * log whose file is exactly that size; 0 when it is not begun yet. */
static uint64_t
begun_size(uint64_t gen)
{
    char p[512];
    gen_path(p, sizeof(p), gen);
    struct gen_scan sc;
    const char *err = NULL;
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &sc, &err), 0);
    if (sc.unbegun)
        return 0; /* the current generation, opened and not begun yet */
    assert_int_equal(sc.hdr.generation, gen);
    assert_int_equal(sc.hdr.file_size, sc.file_size);
    return sc.hdr.file_size;
}

/*
 * Batches larger than a quarter of a generation begin larger generations (a power-of-two
 * multiple of generation_size, at most 8 times it: store_gen.c), so that such a batch no longer
 * rolls several times in its middle with one lone END sync each; small batches go back to
 * generation_size once the larger spares are used. Every record survives, the chain holds.
 */
static void
test_large_batches_begin_larger_generations(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    for (int i = 0; i < 8; i++)
        commit_burst(s, 48, 6000); /* batches of up to 24 x 6 KiB: 4 of them need 576 KiB */
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 8 * 48);
    assert_true(st.large_generations > 0);
    uint64_t big_gen = 0, gen1_end = st.current_generation;
    for (uint64_t g = 2; g <= st.current_generation; g++) {
        uint64_t size = begun_size(g);
        if (size == 0 && g == st.current_generation)
            break;
        /* 64 KiB times a power of two, at most 8 times */
        assert_true(size == 64 * 1024 || size == 128 * 1024 || size == 256 * 1024 ||
                    size == 512 * 1024);
        if (size == 512 * 1024)
            big_gen = g;
    }
    assert_true(big_gen > 0);
    /* One record at a time: small batches, standard generations once the larger spares (at
     * most STORE_PREALLOC_AHEAD made ahead) are used up. */
    for (int i = 0; i < 2000; i++)
        commit_noop(s, 1000);
    store_get_status(s, &st);
    assert_true(st.current_generation > gen1_end + 4);
    assert_int_equal(begun_size(st.current_generation - 1), 64 * 1024);
    assert_int_equal(store_close(&s), 0);

    s = reopen(&o, 0);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 8 * 48 + 2000);
    assert_int_equal(store_close(&s), 0);
    struct store_verify_options vo = {.tmp_dir = tmpdir};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dbdir(), &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.last_lsn, 8 * 48 + 2000); /* (truncation at close: no replay from 1) */
    store_verify_report_clear(&r);

    /* Offline recovery takes the generation size from the smallest generation, not from the
     * current one, which large batches have just begun larger. */
    s = reopen(&o, 0);
    for (int i = 0; i < 4; i++)
        commit_burst(s, 48, 6000);
    store_get_status(s, &st);
    uint64_t last = st.current_generation;
    assert_int_equal(store_close(&s), 0);
    assert_true(begun_size(last) > 64 * 1024);
    struct store_recovery rec;
    assert_int_equal(store_recover(dbdir(), &rec, &err), 0);
    assert_int_equal(rec.generation_size, 64 * 1024);
    store_recovery_clear(&rec);
}

/* Size of the file of generation gen, or 0 when there is none. */
static uint64_t
gen_file_size(uint64_t gen)
{
    char p[512];
    gen_path(p, sizeof(p), gen);
    struct stat sb;
    return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/*
 * A spare larger than the generation size a database is mounted with (made under a larger
 * one, or for large batches) is deleted at mount and made again: a spare is begun whole, so
 * it would otherwise give the next generation its old size.
 */
static void
test_mount_deletes_spares_larger_than_the_generation_size(void **state)
{
    (void)state;
    struct store_options big, o;
    small_options(&o);
    small_options(&big);
    big.generation_size = 128 * 1024;
    struct store *s = create_open(&big);
    commit_noop(s, 100);
    /* housekeeping makes the spares ahead */
    for (int i = 0; i < 500 && gen_file_size(2) != 128 * 1024; i++)
        usleep(10000);
    assert_int_equal(store_close(&s), 0); /* closes generation 1; 2 is a 128 KiB spare */
    assert_int_equal(gen_file_size(2), 128 * 1024);

    s = reopen(&o, 0);
    commit_noop(s, 100);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(begun_size(2), 64 * 1024);
    assert_int_equal(store_close(&s), 0);
}

static void
test_idle_close(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.idle_close_ms = 50;
    struct store *s = create_open(&o);
    commit_noop(s, 10);
    struct store_status st;
    for (int i = 0; i < 200; i++) {
        usleep(10000);
        store_get_status(s, &st);
        if (st.current_generation == 2)
            break;
    }
    assert_int_equal(st.current_generation, 2);
    /* An empty generation is not closed by the idle timer. */
    usleep(200000);
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(store_close(&s), 0);
}

static uint64_t crash_with_commits(const struct store_options *o, int n);

/* The idle timer starts at mount: a generation left open by a crash is not closed the
 * instant the database is mounted again. */
static void
test_idle_timer_starts_at_mount(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.idle_close_ms = 400;
    crash_with_commits(&o, 5);
    struct store *s = reopen(&o, 0);
    usleep(100000);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 1);
    for (int i = 0; i < 300 && st.current_generation == 1; i++) {
        usleep(10000);
        store_get_status(s, &st);
    }
    assert_int_equal(st.current_generation, 2); /* ...but it is once idle long enough */
    assert_int_equal(store_close(&s), 0);
}

static void
test_explicit_roll(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    commit_noop(s, 10);
    assert_int_equal(store_roll(s), 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(store_close(&s), 0);
}

/* What the durable hook saw last (test_roll_request). */
struct hook_seen {
    pthread_mutex_t lock;
    uint64_t generation, durable_end, durable_lsn, calls;
};

static void
hook_note(void *ctx, uint64_t generation, uint64_t durable_end, uint64_t durable_lsn)
{
    struct hook_seen *h = ctx;
    pthread_mutex_lock(&h->lock);
    h->generation = generation;
    h->durable_end = durable_end;
    h->durable_lsn = durable_lsn;
    h->calls++;
    pthread_mutex_unlock(&h->lock);
}

/* Polls until generation gen is closed (its END durable), at most 3 s. */
static struct store_log_extent
wait_closed(struct store *s, uint64_t gen)
{
    struct store_log_extent ext = {0};
    for (int i = 0; i < 300; i++) {
        assert_int_equal(store_log_extent(s, gen, &ext), 0);
        if (ext.closed)
            break;
        usleep(10000);
    }
    return ext;
}

/*
 * The early close a switchover asks for (store_roll_request): without waiting, and with no
 * idle close to do it, the partly filled generation is closed by the log worker, durably, the
 * durable hook is told of its END (so the replication source ships it), the next generation
 * is current, asking again while it holds no record closes nothing, and after a restart the
 * short generation is read back whole.
 */
static void
test_roll_request(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.idle_close_ms = 0; /* nothing closes a generation but the request */
    struct store *s = create_open(&o);
    store_set_truncation_floor(s, 1); /* keep generation 1 to read it back */
    struct hook_seen h = {.lock = PTHREAD_MUTEX_INITIALIZER};
    store_set_durable_hook(s, hook_note, &h);
    for (int i = 0; i < 10; i++)
        commit_noop(s, 100);
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(s, 1, &ext), 0);
    assert_false(ext.closed);
    uint64_t open_end = ext.durable_end;

    assert_int_equal(store_roll_request(s), 0);
    assert_int_equal(store_roll_request(s), 0); /* pending already: asks nothing more */
    ext = wait_closed(s, 1);
    assert_true(ext.closed);
    assert_int_equal(ext.last_lsn, 10);
    assert_true(ext.durable_end > open_end);      /* the END frame */
    assert_true(ext.durable_end < ext.file_size); /* a short generation */
    pthread_mutex_lock(&h.lock);
    assert_int_equal(h.generation, 1);
    assert_int_equal(h.durable_end, ext.durable_end);
    assert_int_equal(h.durable_lsn, 10);
    pthread_mutex_unlock(&h.lock);
    struct store_status st;
    for (int i = 0; i < 300; i++) {
        store_get_status(s, &st);
        if (st.current_generation == 2)
            break;
        usleep(10000);
    }
    assert_int_equal(st.current_generation, 2);

    /* Nothing in generation 2: a request leaves it open and the log as it was. */
    assert_int_equal(store_roll_request(s), 0);
    usleep(100000);
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(store_log_extent(s, 2, &ext), TDM_ENOTFOUND); /* not begun */

    assert_int_equal(commit_noop(s, 100), 11); /* writes go on in generation 2 */
    store_set_durable_hook(s, NULL, NULL);
    assert_int_equal(store_close(&s), 0);
    s = reopen(&o, 0);
    store_set_truncation_floor(s, 1);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 11);
    assert_int_equal(store_log_extent(s, 1, &ext), 0);
    assert_true(ext.closed);
    assert_int_equal(ext.last_lsn, 10);
    assert_int_equal(store_close(&s), 0);
}

static void
test_truncation_floor(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.checkpoint_ms = 3600000; /* only explicit checkpoints */
    o.checkpoint_bytes = UINT64_MAX;
    struct store *s = create_open(&o);
    store_set_truncation_floor(s, 3);
    for (int i = 0; i < 400; i++)
        commit_noop(s, 1000);
    struct store_status st;
    store_get_status(s, &st);
    assert_true(st.current_generation >= 6);
    assert_int_equal(st.lowest_generation, 1);

    assert_int_equal(store_checkpoint(s), 0);
    store_get_status(s, &st);
    /* Below the checkpoint, but the floor holds generation 3 and above. */
    assert_int_equal(st.lowest_generation, 3);
    assert_int_equal(st.checkpoint_lsn, 400);
    char p[500];
    gen_path(p, sizeof(p), 2);
    assert_int_equal(access(p, F_OK), -1);
    gen_path(p, sizeof(p), 3);
    assert_int_equal(access(p, F_OK), 0);

    store_set_truncation_floor(s, UINT64_MAX);
    assert_int_equal(store_checkpoint(s), 0);
    store_get_status(s, &st);
    /* Everything below the current generation goes. */
    assert_int_equal(st.lowest_generation, st.current_generation);
    assert_true(seen.count[TDM_EV_STORE_TRUNCATED] >= 2);
    assert_int_equal(store_close(&s), 0);

    /* The truncated database still opens and continues. */
    s = reopen(&o, 0);
    assert_int_equal(commit_noop(s, 1), 401);
    assert_int_equal(store_close(&s), 0);
}

struct committer {
    struct store *s;
    int n;
};

static void *
committer_main(void *arg)
{
    struct committer *c = arg;
    uint8_t buf[512];
    memset(buf, 7, sizeof(buf));
    for (int i = 0; i < c->n; i++)
        if (store_commit(c->s, TDM_REC_NOOP, buf, sizeof(buf), NULL, NULL) != 0)
            return (void *)1;
    return NULL;
}

static void
test_group_commit(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    pthread_t th[16];
    struct committer c = {.s = s, .n = 100};
    for (int i = 0; i < 16; i++)
        assert_int_equal(pthread_create(&th[i], NULL, committer_main, &c), 0);
    for (int i = 0; i < 16; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 1600);
    assert_int_equal(st.commits, 1600);
    /* Concurrent committers shared syncs. */
    assert_true(st.syncs < st.commits);
    assert_int_equal(store_close(&s), 0);
}

/* A child commits and dies without closing; everything it was told is durable survives. */
static void
test_recovery_after_process_crash(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.checkpoint_ms = 3600000;
    o.checkpoint_bytes = UINT64_MAX;
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *s = NULL;
        if (store_open(dbdir(), &o, &s, &err) != 0)
            _exit(2);
        for (int i = 0; i < 300; i++)
            if (commit_noop(s, 700) != (uint64_t)i + 1)
                _exit(3);
        _exit(0); /* no close: LMDB not synced since open, generation not closed */
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    struct store *s = reopen(&o, 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 300);
    assert_int_equal(commit_noop(s, 1), 301);
    assert_int_equal(store_close(&s), 0);
}

/* Simulates losing LMDB's unsynced state: restore data.mdb from a copy taken at open. */
static void
test_replay_after_lmdb_loss(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.checkpoint_ms = 3600000;
    o.checkpoint_bytes = UINT64_MAX;
    struct store *s = create_open(&o);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(scratch_lmdb_save(tmpdir, dbdir()), 0);
    s = reopen(&o, 0);
    store_set_truncation_floor(s, 1); /* keep every generation: LMDB will need them */
    for (int i = 0; i < 250; i++)
        commit_noop(s, 500);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(scratch_lmdb_restore(tmpdir, dbdir()), 0);

    s = reopen(&o, 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 250);
    assert_int_equal(seen.count[TDM_EV_STORE_RECOVERED], 1);
    assert_int_equal(store_close(&s), 0);
}

static uint64_t
crash_with_commits(const struct store_options *o, int n)
{
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), o, &err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct store *s = NULL;
        if (store_open(dbdir(), o, &s, &err) != 0)
            _exit(2);
        for (int i = 0; i < n; i++)
            commit_noop(s, 100);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);
    return (uint64_t)n;
}

static void
test_torn_tail_cut(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    crash_with_commits(&o, 20);
    /* A torn, unacknowledged write after the last record: half a frame of garbage. */
    char p[500];
    gen_path(p, sizeof(p), 1);
    struct gen_scan sc;
    const char *err = NULL;
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &sc, &err), 0);
    assert_int_equal(sc.end, GEN_SCAN_ZERO_FILL);
    int fd = open(p, O_WRONLY);
    uint8_t junk[40];
    memset(junk, 0x5a, sizeof(junk));
    le_put64(junk, 21); /* looks like the next LSN */
    assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)sc.valid_end), (ssize_t)sizeof(junk));
    close(fd);

    struct store *s = reopen(&o, 0);
    assert_int_equal(seen.count[TDM_EV_STORE_TORN_TAIL_CUT], 1);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 20);
    assert_int_equal(commit_noop(s, 3), 21);
    assert_int_equal(store_close(&s), 0);
    s = reopen(&o, 0);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 21);
    assert_int_equal(store_close(&s), 0);
}

static void
test_truncated_current_generation(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    crash_with_commits(&o, 30);
    char p[500];
    gen_path(p, sizeof(p), 1);
    struct gen_scan sc;
    const char *err = NULL;
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &sc, &err), 0);
    /* Cut the file in the middle of the last record, as a crash mid-write could. */
    assert_int_equal(truncate(p, (off_t)sc.valid_end - 10), 0);
    /* LMDB applied all 30 in the child (process crash keeps the page cache), so losing the
     * last record from the log is corruption: it was acknowledged. */
    struct store *s = reopen(&o, TDM_ECORRUPT);
    assert_null(s);
    assert_int_equal(seen.count[TDM_EV_STORE_LOG_CORRUPT], 1);
}

static void
test_flipped_byte_in_closed_generation(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    store_set_truncation_floor(s, 1); /* as a lagging copy would: keep closed generations */
    for (int i = 0; i < 200; i++)
        commit_noop(s, 1000);
    assert_int_equal(store_close(&s), 0);
    char p[500];
    gen_path(p, sizeof(p), 2);
    int fd = open(p, O_RDWR);
    uint8_t b;
    off_t off = 4096 + 5000;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);

    s = reopen(&o, TDM_ECORRUPT);
    assert_null(s);
    assert_int_equal(seen.count[TDM_EV_STORE_LOG_CORRUPT], 1);
    assert_non_null(strstr(seen.last_message, p));
    assert_non_null(strstr(seen.last_message, "offset"));
}

static void
test_missing_generation(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    store_set_truncation_floor(s, 1);
    for (int i = 0; i < 300; i++)
        commit_noop(s, 1000);
    assert_int_equal(store_close(&s), 0);
    char p[500];
    gen_path(p, sizeof(p), 3);
    assert_int_equal(unlink(p), 0);
    s = reopen(&o, TDM_EGAP);
    assert_null(s);
    assert_int_equal(seen.count[TDM_EV_STORE_GENERATION_MISSING], 1);
    assert_non_null(strstr(seen.last_message, p));
}

static void
digest_of(struct store *s, uint8_t out[32])
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    assert_int_equal(mail_digest(store_mail_dbis(s), txn, out), 0);
    mdb_txn_abort(txn);
}

/* Mail operations through the commit path: results come back, readers see them at once,
 * and a replay from the log rebuilds byte-identical mail state. */
static void
test_mail_through_store(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.checkpoint_ms = 3600000;
    o.checkpoint_bytes = UINT64_MAX;
    struct store *s = create_open(&o);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(scratch_lmdb_save(tmpdir, dbdir()), 0);
    s = reopen(&o, 0);
    store_set_truncation_floor(s, 1);

    const char *err = NULL;
    struct mail_result res;
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE,
                         .mailbox = "alice@example.test",
                         .quota_bytes = 1 << 20,
                         .uidvalidity = 1000};
    assert_int_equal(store_commit_op(s, &op, NULL, &res, &err), 0);
    assert_int_equal(res.status, 0);
    /* A refused operation is logged and reported, not an error of the commit. */
    assert_int_equal(store_commit_op(s, &op, NULL, &res, &err), 0);
    assert_int_equal(res.status, TDM_EEXIST);

    static const char body[] = "Subject: hi\r\n\r\nhello\r\n";
    struct mail_target t = {"alice@example.test", "INBOX"};
    for (int i = 0; i < 40; i++) {
        struct mail_op ap = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = &t,
                             .n_targets = 1,
                             .internal_date = 1700000000 + i,
                             .body = body,
                             .body_len = sizeof(body) - 1};
        ap.guid[0] = (uint8_t)i;
        ap.guid[1] = 1;
        assert_int_equal(store_commit_op(s, &ap, NULL, &res, &err), 0);
        assert_int_equal(res.status, 0);
        assert_int_equal(res.first_uid, (uint32_t)i + 1);
    }
    uint32_t uids[] = {3, 5};
    struct mail_op ex = {.type = TDM_REC_MESSAGE_EXPUNGE,
                         .mailbox = "alice@example.test",
                         .folder = "INBOX",
                         .uids = uids,
                         .n_uids = 2};
    assert_int_equal(store_commit_op(s, &ex, NULL, &res, &err), 0);
    assert_int_equal(res.count, 2);

    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct mail_folder_info fi;
    assert_int_equal(mail_folder_get(store_mail_dbis(s), txn, "alice@example.test", "INBOX", &fi),
                     0);
    assert_int_equal(fi.messages, 38);
    assert_int_equal(fi.uidnext, 41);
    struct mail_message_info mi;
    assert_int_equal(
        mail_message_get(store_mail_dbis(s), txn, "alice@example.test", "INBOX", 7, &mi), 0);
    const void *data;
    size_t len;
    assert_int_equal(mail_body_get(store_mail_dbis(s), txn, mi.body_hash, &data, &len), 0);
    assert_int_equal(len, sizeof(body) - 1);
    assert_memory_equal(data, body, len);
    mdb_txn_abort(txn);

    uint8_t before[32], after[32];
    digest_of(s, before);
    assert_int_equal(store_close(&s), 0);

    /* Lose LMDB entirely back to its empty state: the log rebuilds the same mail. */
    assert_int_equal(scratch_lmdb_restore(tmpdir, dbdir()), 0);
    s = reopen(&o, 0);
    digest_of(s, after);
    assert_memory_equal(before, after, 32);
    assert_int_equal(store_close(&s), 0);
}

/* Runs in a child: commits n records, optionally rolls, then dies without closing. */
static void
child_commits_then_dies(const struct store_options *o, int n, bool roll_after, int more)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *err = NULL;
        struct store *s = NULL;
        if (store_open(dbdir(), o, &s, &err) != 0)
            _exit(2);
        for (int i = 0; i < n; i++)
            commit_noop(s, 100);
        if (roll_after && store_roll(s) != 0)
            _exit(3);
        for (int i = 0; i < more; i++)
            commit_noop(s, 100);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void
overwrite(const char *path, off_t off, uint8_t byte, size_t len)
{
    uint8_t buf[4096];
    assert_true(len <= sizeof(buf));
    memset(buf, byte, len);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
    close(fd);
}

/* A roll makes the new generation's header durable before any record goes in, so a header
 * that does not read back is damage: the database refuses to mount and nothing is wiped,
 * whether or not LMDB holds the records under it. */
static void
test_damaged_header_of_current_generation_refused(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    child_commits_then_dies(&o, 10, true, 5); /* 5 records acknowledged in generation 2 */
    char p[500];
    gen_path(p, sizeof(p), 2);
    overwrite(p, 0, 0, TDM_LOG_HEADER_USED);
    assert_null(reopen(&o, TDM_ECORRUPT));
    assert_int_equal(seen.count[TDM_EV_STORE_LOG_CORRUPT], 1);
    if (!strstr(seen.last_message, p))
        fail_msg("event does not name %s: %s", p, seen.last_message);
    /* The records are still there for an operator to salvage. */
    struct gen_scan sc;
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &sc, &err), TDM_ECORRUPT);
    assert_true(sc.blank_header);
    assert_false(sc.body_blank);

    /* A torn (non-blank) header over data, above a generation never closed. */
    assert_int_equal(scratch_remove(dbdir()), 0);
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    child_commits_then_dies(&o, 10, false, 0);
    gen_path(p, sizeof(p), 2);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(truncate(p, 64 * 1024), 0);
    overwrite(p, 0, 0x33, 50);
    overwrite(p, 4096, 0x77, 100);
    assert_null(reopen(&o, TDM_ECORRUPT));
    assert_int_equal(seen.count[TDM_EV_STORE_LOG_CORRUPT], 2);
    /* Generation 1 is named: a generation below another must be closed. */
    gen_path(p, sizeof(p), 1);
    assert_non_null(strstr(seen.last_message, p));
    assert_non_null(strstr(seen.last_message, "no END record"));
}

/* Several preallocated generations above the current one are not part of the log. */
static void
test_preallocated_generations_ahead(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    child_commits_then_dies(&o, 10, false, 0);
    char p[500];
    for (uint64_t g = 2; g <= 3; g++) {
        /* As housekeeping leaves them: blank, and the second cut short by the kill (found by
         * the kill -9 test: a header then claimed more than the file held). */
        gen_path(p, sizeof(p), g);
        int fd = open(p, O_RDWR | O_CREAT, 0640);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(truncate(p, g == 2 ? 64 * 1024 : 55150), 0);
    }
    struct store *s = reopen(&o, 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 1);
    assert_int_equal(st.applied_lsn, 10);
    assert_int_equal(store_roll(s), 0);
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(commit_noop(s, 1), 11);
    assert_int_equal(store_roll(s), 0); /* into the short one */
    store_get_status(s, &st);
    assert_int_equal(st.current_generation, 3);
    assert_int_equal(commit_noop(s, 1), 12);
    assert_int_equal(store_close(&s), 0);
    struct stat sb;
    gen_path(p, sizeof(p), 3);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 64 * 1024);
    s = reopen(&o, 0);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 12);
    assert_int_equal(store_close(&s), 0);
}

/* ---- fault-injecting io for disk-full and write failures ---- */

struct fault_io {
    struct io_ops ops;
    int fail_allocate_after; /* allocations that succeed before ENOSPC; -1 never */
    int fail_sync_after;     /* fdatasyncs that succeed before EIO; -1 never */
    int allocs, syncs;
};

static int
fault_allocate(const struct io_ops *io, int fd, off_t len)
{
    struct fault_io *f = io->ctx;
    if (f->fail_allocate_after >= 0 && f->allocs++ >= f->fail_allocate_after)
        return -ENOSPC;
    return io_ops_posix.allocate(io, fd, len);
}

static int
fault_fdatasync(const struct io_ops *io, int fd)
{
    struct fault_io *f = io->ctx;
    if (f->fail_sync_after >= 0 && f->syncs++ >= f->fail_sync_after)
        return -EIO;
    return io_ops_posix.fdatasync(io, fd);
}

static void
fault_init(struct fault_io *f)
{
    f->ops = io_ops_posix;
    f->ops.allocate = fault_allocate;
    f->ops.fdatasync = fault_fdatasync;
    f->ops.ctx = f;
    f->fail_allocate_after = -1;
    f->fail_sync_after = -1;
}

static void
test_disk_full(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.reserve_bytes = 0;
    struct store *s = create_open(&o);
    assert_int_equal(store_close(&s), 0);

    struct fault_io f;
    fault_init(&f);
    f.fail_allocate_after = 2; /* the next generation or two, then the disk is full */
    o.io = &f.ops;
    s = reopen(&o, 0);
    int ret = 0;
    uint64_t ok = 0;
    uint8_t buf[1000] = {0};
    for (int i = 0; i < 1000 && ret == 0; i++) {
        ret = store_commit(s, TDM_REC_NOOP, buf, sizeof(buf), NULL, NULL);
        if (ret == 0)
            ok++;
    }
    assert_int_equal(ret, TDM_ENOSPACE);
    assert_true(ok > 50);
    assert_int_equal(seen.count[TDM_EV_STORE_DISK_RESERVE], 1);
    struct store_status st;
    store_get_status(s, &st);
    assert_true(st.disk_reserve);
    assert_false(st.failed);
    assert_int_equal(st.applied_lsn, ok);
    assert_int_equal(store_commit(s, TDM_REC_NOOP, buf, 10, NULL, NULL), TDM_ENOSPACE);
    /* A clean shutdown still works. */
    assert_int_equal(store_close(&s), 0);

    o.io = &io_ops_posix;
    s = reopen(&o, 0);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, ok);
    assert_int_equal(commit_noop(s, 1), ok + 1);
    assert_int_equal(store_close(&s), 0);
}

static void
test_sync_failure_is_sticky(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = create_open(&o);
    assert_int_equal(store_close(&s), 0);
    struct fault_io f;
    fault_init(&f);
    o.io = &f.ops;
    s = reopen(&o, 0);
    f.syncs = 0;
    f.fail_sync_after = 5;
    int ret = 0;
    for (int i = 0; i < 100 && ret == 0; i++)
        ret = store_commit(s, TDM_REC_NOOP, "abc", 3, NULL, NULL);
    assert_int_equal(ret, -EIO);
    assert_int_equal(store_commit(s, TDM_REC_NOOP, "abc", 3, NULL, NULL), TDM_EFAILED);
    assert_int_equal(seen.count[TDM_EV_STORE_WRITE_FAILED], 1);
    struct store_status st;
    store_get_status(s, &st);
    assert_true(st.failed);
    assert_int_equal(store_close(&s), -EIO);
}

/*
 * A database written before log format version 3 (headers with the generation's identity, no
 * BEGIN records, a blank spare without a header) mounts, replays, goes on writing its open
 * version 2 generation, and begins the next one as version 3, chained to the last version 2
 * one; the whole log verifies.
 */
static void
test_reads_version_2_log(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    char p[512];
    struct gen_scan g1;
    gen_path(p, sizeof(p), 1);
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &g1, &err), 0);
    memcpy(v2_guid, g1.hdr.guid, sizeof(v2_guid));
    uint32_t c1 = write_v2_generation(1, 1, 0, 3, true);
    write_v2_generation(2, 4, c1, 2, false);
    gen_path(p, sizeof(p), 3); /* a version 2 spare: zeros, no header */
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 64 * 1024), 0);
    close(fd);

    struct store *s = reopen(&o, 0);
    store_set_truncation_floor(s, 1); /* keep every generation for the checks below */
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 5);
    assert_int_equal(st.current_generation, 2);
    assert_int_equal(commit_noop(s, 10), 6); /* into the open version 2 generation */
    assert_int_equal(store_roll(s), 0);
    assert_int_equal(commit_noop(s, 10), 7); /* begins generation 3, version 3 */
    assert_int_equal(store_close(&s), 0);

    struct gen_scan g2, g3;
    gen_path(p, sizeof(p), 2);
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &g2, &err), 0);
    assert_int_equal(g2.hdr.version, 2);
    assert_int_equal(g2.records, 3);
    assert_int_equal(g2.end, GEN_SCAN_END_RECORD);
    gen_path(p, sizeof(p), 3);
    assert_int_equal(store__gen_scan(&io_ops_posix, p, NULL, NULL, &g3, &err), 0);
    assert_int_equal(g3.hdr.version, 3);
    assert_int_equal(g3.hdr.generation, 3);
    assert_int_equal(g3.hdr.first_lsn, 7);
    assert_int_equal(g3.hdr.prev_checksum, g2.end_rec.gen_checksum);
    assert_int_equal(g3.records, 1);

    s = reopen(&o, 0);
    store_set_truncation_floor(s, 1);
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 7);
    assert_int_equal(store_close(&s), 0);

    struct store_verify_options vo = {.tmp_dir = tmpdir};
    struct store_verify_report r;
    assert_int_equal(store_verify(dbdir(), &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.first_lsn, 1);
    assert_int_equal(r.last_lsn, 7);
    assert_true(r.replay_compared && r.digests_match);
    store_verify_report_clear(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_missing_and_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generation_roll_and_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversize_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_batches_begin_larger_generations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mount_deletes_spares_larger_than_the_generation_size,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timer_starts_at_mount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_roll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_after_process_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_after_lmdb_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_version_2_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_current_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_closed_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mail_through_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_header_of_current_generation_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_preallocated_generations_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failure_is_sticky, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

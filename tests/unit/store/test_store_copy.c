/*
 * Replication, the store side: the active's durable extents and hook (store_ship.c), min_epoch
 * at open, and copies (store_copy.c) fed real generation files byte range by byte range,
 * compared with the active by digest.
 */
#include "store/store.h"
#include "store/store_copy.h"
#include "store/store_inspect.h"
#include "store/store_int.h"

#include "lib/crc32c.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

static char tmpdir[256];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "store-copy"), 0);
    event_set_sink(NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

static const char *
active_dir(void)
{
    static char p[300];
    snprintf(p, sizeof(p), "%s/active", tmpdir);
    return p;
}

static void
small_options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->reserve_bytes = 64 * 1024;
    o->idle_close_ms = 0;
    o->checkpoint_ms = 3600 * 1000;
}

static struct store *
active_open(const struct store_options *o, bool create)
{
    const char *err = NULL;
    if (create && store_create(active_dir(), o, &err) != 0)
        fail_msg("create: %s", err);
    struct store *s = NULL;
    if (store_open(active_dir(), o, &s, &err) != 0)
        fail_msg("open: %s", err);
    return s;
}

static uint64_t
commit_noop(struct store *s, size_t len, uint8_t fill)
{
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    memset(buf, fill, len);
    uint64_t lsn = 0;
    assert_int_equal(store_commit(s, TDM_REC_NOOP, buf, len, &lsn, NULL), 0);
    free(buf);
    return lsn;
}

static const char *
copy_dir(const char *name)
{
    static char p[2][300];
    static int i;
    i ^= 1;
    snprintf(p[i], sizeof(p[i]), "%s/%s", tmpdir, name);
    return p[i];
}

/* xorshift64*: the tests' splits replay from their seed. */
static uint64_t rng_state;
static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* A mail workload: one mailbox, appends of varied sizes (some large enough to fill a 64 KiB
 * generation in a few records), flag changes and expunges. */
static void
mail_work(struct store *s, uint32_t from, uint32_t n)
{
    const char *err = NULL;
    if (from == 0) {
        struct mail_op mk = {
            .type = TDM_REC_MAILBOX_CREATE, .mailbox = "alice", .uidvalidity = 1700000000};
        assert_int_equal(store_commit_op(s, &mk, NULL, NULL, &err), 0);
    }
    static char body[20000];
    for (uint32_t i = from; i < from + n; i++) {
        size_t len = 40 + (size_t)(i * 7919u % 9000u);
        if (i % 17 == 0)
            len = 15000;
        memset(body, 'a' + (int)(i % 26), len);
        snprintf(body, 40, "Subject: %u\r\n\r\n", i);
        body[strlen(body)] = 'x';
        struct mail_target t = {.mailbox = "alice", .folder = "INBOX"};
        struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = &t,
                             .n_targets = 1,
                             .internal_date = 1700000000 + i,
                             .body = body,
                             .body_len = len};
        memcpy(op.guid, &i, sizeof(i));
        assert_int_equal(store_commit_op(s, &op, NULL, NULL, &err), 0);
        if (i % 5 == 4) {
            uint32_t uid = i / 2 + 1;
            struct mail_op fl = {.type = TDM_REC_MESSAGE_FLAGS,
                                 .mailbox = "alice",
                                 .folder = "INBOX",
                                 .flag_mode = MAIL_FLAGS_ADD,
                                 .flags = MAIL_FLAG_SEEN,
                                 .uids = &uid,
                                 .n_uids = 1};
            assert_int_equal(store_commit_op(s, &fl, NULL, NULL, &err), 0);
        }
        if (i % 11 == 10) {
            uint32_t uid = i / 3 + 1;
            struct mail_op ex = {.type = TDM_REC_MESSAGE_EXPUNGE,
                                 .mailbox = "alice",
                                 .folder = "INBOX",
                                 .uids = &uid,
                                 .n_uids = 1};
            assert_int_equal(store_commit_op(s, &ex, NULL, NULL, &err), 0);
        }
    }
}

/* Reads [0, durable_end) of an active generation. */
static uint8_t *
read_generation(struct store *s, uint64_t gen, struct store_log_extent *ext)
{
    assert_int_equal(store_log_extent(s, gen, ext), 0);
    int fd = -1;
    assert_int_equal(store_log_open_generation(s, gen, &fd), 0);
    uint8_t *buf = malloc(ext->durable_end);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, ext->durable_end, 0), (ssize_t)ext->durable_end);
    close(fd);
    return buf;
}

/* A frame boundary of buf (a generation's first end bytes) after from, picked at random: the
 * end of BEGIN, of any frame, or the end. */
static uint64_t
pick_boundary(const uint8_t *buf, uint64_t end, uint64_t from)
{
    uint64_t cand[4096];
    size_t n = 0;
    uint64_t off = TDM_LOG_HEADER_SIZE;
    while (off < end) {
        struct log_record rec;
        size_t flen = 0;
        const char *why = NULL;
        assert_int_equal(log_record_decode(buf + off, end - off, &rec, &flen, &why), 0);
        off += flen;
        if (off > from && n < 4096)
            cand[n++] = off;
    }
    assert_true(n > 0);
    if (rng() % 4 == 0)
        return end; /* everything there is, as file mode ships */
    return cand[rng() % n];
}

struct ship_stats {
    uint64_t ranges, generations_begun;
};

/*
 * Ships everything the active has durable that the copy lacks, in ranges split at random
 * frame boundaries, syncing and replaying now and then as the copy agent would.
 */
static void
ship(struct store *active, struct store_copy *copy, struct ship_stats *stats)
{
    for (;;) {
        struct store_copy_position pos;
        store_copy_get_position(copy, &pos);
        struct store_log_extent ext;
        if (store_log_extent(active, pos.generation, &ext) == TDM_ENOTFOUND)
            break;
        if (pos.offset == ext.durable_end)
            break; /* open, and nothing more durable yet */
        uint8_t *buf = read_generation(active, pos.generation, &ext);
        uint64_t to = pick_boundary(buf, ext.durable_end, pos.offset);
        const char *err = NULL;
        if (!store_copy_receive_ready(copy, pos.offset))
            assert_int_equal(store_copy_sync(copy, NULL), 0); /* names those waiting */
        int ret = store_copy_receive(copy, pos.generation, pos.offset, buf + pos.offset,
                                     to - pos.offset, &err);
        if (ret != 0)
            fail_msg("receive %d: %s", ret, err ? err : "-");
        free(buf);
        stats->ranges++;
        stats->generations_begun += pos.offset == 0;
        if (rng() % 3 == 0)
            assert_int_equal(store_copy_sync(copy, NULL), 0);
        if (rng() % 5 == 0)
            assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
    }
    assert_int_equal(store_copy_sync(copy, NULL), 0);
}

static struct store_copy *
copy_open(const char *dir)
{
    struct store_copy *c = NULL;
    const char *err = NULL;
    if (store_copy_open(dir, NULL, &c, &err) != 0)
        fail_msg("copy open: %s", err);
    return c;
}

static struct store_copy *
copy_new(const char *dir, struct store *active, uint64_t first_gen)
{
    struct store_status st;
    store_get_status(active, &st);
    const char *err = NULL;
    if (store_copy_create(dir, st.guid, st.kind, first_gen, &err) != 0)
        fail_msg("copy create: %s", err);
    return copy_open(dir);
}

/* The digest of the mail a closed database or copy holds (store_verify: `db verify`). */
static void
digest_of(const char *dir, uint8_t out[32])
{
    struct store_verify_options vo = {.tmp_dir = tmpdir, .skip_replay = true};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dir, &vo, &r, &err), 0);
    for (size_t i = 0; i < r.n_problems; i++)
        if (r.problems[i].severity == STORE_PROBLEM_ERROR)
            fail_msg("verify %s: %s: %s", dir, r.problems[i].file ? r.problems[i].file : "-",
                     r.problems[i].reason);
    memcpy(out, r.db_digest, 32);
    store_verify_report_clear(&r);
}

static void
assert_same_mail(const char *a, const char *b)
{
    uint8_t da[32], db[32];
    digest_of(a, da);
    digest_of(b, db);
    assert_memory_equal(da, db, 32);
}

/* ---- the active side ---- */

struct hook_calls {
    int n;
    uint64_t generation, end, lsn;
};

static void
durable_hook(void *ctx, uint64_t generation, uint64_t durable_end, uint64_t durable_lsn)
{
    struct hook_calls *h = ctx;
    h->n++;
    h->generation = generation;
    h->end = durable_end;
    h->lsn = durable_lsn;
}

static void
test_extent_follows_the_durable_position(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *s = active_open(&o, true);
    struct store_log_extent e;
    const uint64_t begun = TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME;

    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.generation, 1);
    assert_int_equal(e.durable_end, begun);
    assert_int_equal(e.file_size, 64 * 1024);
    assert_int_equal(e.epoch, 1);
    assert_int_equal(e.first_lsn, 1);
    assert_int_equal(e.last_lsn, 0);
    assert_false(e.closed);
    assert_int_equal(store_log_extent(s, 2, &e), TDM_ENOTFOUND);
    assert_int_equal(store_log_extent(s, 0, &e), TDM_ENOTFOUND);

    struct hook_calls h = {0};
    store_set_durable_hook(s, durable_hook, &h);
    assert_int_equal(commit_noop(s, 100, 1), 1);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.generation, 1);
    assert_int_equal(h.end, begun + log_frame_size(100));
    assert_int_equal(h.lsn, 1);
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.durable_end, h.end);
    assert_int_equal(e.last_lsn, 1);

    /* A roll: END durable, and the next generation is not part of the log until begun. */
    assert_int_equal(store_roll(s), 0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.end, begun + log_frame_size(100) + TDM_LOG_END_FRAME);
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_true(e.closed);
    assert_int_equal(e.durable_end, h.end);
    assert_int_equal(store_log_extent(s, 2, &e), TDM_ENOTFOUND);
    assert_int_equal(commit_noop(s, 10, 2), 2);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_int_equal(e.first_lsn, 2);
    assert_int_equal(e.last_lsn, 2);
    assert_int_equal(e.durable_end, begun + log_frame_size(10));
    assert_false(e.closed);
    /* Generation 1 stays as it was, its last LSN from the table. */
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_int_equal(e.last_lsn, 1);
    assert_true(e.closed);

    /* The file holds exactly those bytes: END just before durable_end. */
    int fd = -1;
    assert_int_equal(store_log_open_generation(s, 1, &fd), 0);
    uint8_t frame[TDM_LOG_END_FRAME];
    assert_int_equal(pread(fd, frame, sizeof(frame), (off_t)(e.durable_end - sizeof(frame))),
                     (ssize_t)sizeof(frame));
    close(fd);
    struct log_record rec;
    size_t flen = 0;
    const char *why = NULL;
    assert_int_equal(log_record_decode(frame, sizeof(frame), &rec, &flen, &why), 0);
    assert_int_equal(rec.type, TDM_REC_END);

    /* Cleared: no more calls. */
    store_set_durable_hook(s, NULL, NULL);
    commit_noop(s, 10, 3);
    assert_int_equal(h.n, 3);

    /* Truncated generations are gone from the extents (the floor allows it by default). */
    assert_int_equal(store_checkpoint(s), 0);
    assert_int_equal(store_log_extent(s, 1, &e), TDM_ENOTFOUND);
    assert_int_equal(store_log_open_generation(s, 1, &fd), TDM_ENOTFOUND);
    assert_int_equal(store_close(&s), 0);

    /* Recovery rebuilds the same extents. */
    s = active_open(&o, false);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_true(e.closed); /* closed at the clean shutdown */
    assert_int_equal(e.first_lsn, 2);
    assert_int_equal(e.last_lsn, 3);
    assert_int_equal(e.durable_end, begun + 2 * log_frame_size(10) + TDM_LOG_END_FRAME);
    assert_int_equal(store_close(&s), 0);
}

static void
test_min_epoch_begins_a_generation_of_the_new_epoch(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(active_dir(), &o, &err), 0);
    /* A crash (no clean close): the current generation is left open. */
    pid_t pid = fork();
    if (pid == 0) {
        struct store *c = NULL;
        if (store_open(active_dir(), &o, &c, &err) != 0)
            _exit(2);
        commit_noop(c, 50, 1);
        commit_noop(c, 50, 2);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);

    o.min_epoch = 7;
    struct store *s = active_open(&o, false);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    struct store_log_extent e;
    assert_int_equal(store_log_extent(s, 1, &e), 0);
    assert_true(e.closed);
    assert_int_equal(e.epoch, 1);
    assert_int_equal(commit_noop(s, 50, 3), 3);
    assert_int_equal(store_log_extent(s, 2, &e), 0);
    assert_int_equal(e.epoch, 7);
    assert_int_equal(e.first_lsn, 3);
    assert_int_equal(store_close(&s), 0);

    /* The epoch sticks without the option. */
    o.min_epoch = 0;
    s = active_open(&o, false);
    assert_int_equal(commit_noop(s, 50, 4), 4);
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    assert_int_equal(store_log_extent(s, 3, &e), 0);
    assert_int_equal(e.epoch, 7);
    assert_int_equal(store_close(&s), 0);
    /* A lower min_epoch changes nothing. */
    o.min_epoch = 3;
    s = active_open(&o, false);
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 7);
    assert_int_equal(store_close(&s), 0);
}

/* ---- copies fed by a real active ---- */

static void
test_ship_from_generation_one(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    rng_state = 0x5eed0001;
    struct ship_stats stats = {0};
    uint32_t done = 0;
    for (int round = 0; round < 12; round++) {
        mail_work(active, done, 15);
        done += 15;
        if (round % 4 == 3)
            assert_int_equal(store_roll(active), 0);
        ship(active, copy, &stats);
    }
    uint64_t replayed = 0;
    assert_int_equal(store_copy_replay(copy, NULL, &replayed), 0);
    struct store_status ast;
    store_get_status(active, &ast);
    assert_int_equal(replayed, ast.applied_lsn);
    assert_true(ast.current_generation > 5); /* the shipping crossed rolls */
    assert_true(stats.ranges > stats.generations_begun);

    struct store_copy_status cst;
    store_copy_get_status(copy, &cst);
    assert_memory_equal(cst.guid, ast.guid, 16);
    assert_string_equal(cst.kind, "mail");
    assert_int_equal(cst.replayed_lsn, ast.applied_lsn);
    assert_int_equal(cst.received.lsn, ast.durable_lsn);
    assert_int_equal(cst.durable.lsn, ast.durable_lsn);
    assert_int_equal(cst.lowest_generation, 1);
    assert_false(cst.failed);
    assert_true(cst.last_received_us > 0 && cst.last_replayed_us > 0);

    /* Byte-identical up to the end of the records. */
    struct store_copy_position pos;
    store_copy_get_position(copy, &pos);
    for (uint64_t g = 1; g < pos.generation; g++) {
        struct store_log_extent ext;
        uint8_t *a = read_generation(active, g, &ext);
        char p[400];
        snprintf(p, sizeof(p), "%s/log/%016llx.log", copy_dir("copy"), (unsigned long long)g);
        int fd = open(p, O_RDONLY);
        assert_true(fd >= 0);
        struct stat stt;
        assert_int_equal(fstat(fd, &stt), 0);
        assert_int_equal((uint64_t)stt.st_size, ext.file_size);
        uint8_t *b = malloc(ext.durable_end);
        assert_int_equal(pread(fd, b, ext.durable_end, 0), (ssize_t)ext.durable_end);
        close(fd);
        assert_memory_equal(a, b, ext.durable_end);
        free(a);
        free(b);
    }
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
}

static void
test_copy_reopens_mid_generation(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    rng_state = 0x5eed0002;
    struct ship_stats stats = {0};
    uint32_t done = 0;
    int mid = 0;
    for (int round = 0; round < 10; round++) {
        mail_work(active, done, 9);
        done += 9;
        ship(active, copy, &stats);
        struct store_copy_position before, after;
        store_copy_get_position(copy, &before);
        mid += before.offset > 0;
        /* Received but not synced when closing: close syncs it. */
        assert_int_equal(store_copy_close(&copy), 0);
        copy = copy_open(copy_dir("copy"));
        store_copy_get_position(copy, &after);
        assert_memory_equal(&before, &after, sizeof(before));
        if (round % 2)
            assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
    }
    assert_true(mid > 0);
    assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
}

/* Whether generation gen of the copy in dir is there under its name / its temporary name. */
static bool
gen_file_exists(const char *dir, uint64_t gen, bool temporary)
{
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/log/%016llx.log%s", dir, (unsigned long long)gen,
             temporary ? ".tmp" : "");
    return access(p, F_OK) == 0;
}

/*
 * The sync in steps (store_copy_sync_start/run/end), as the copy agent runs it on another
 * thread while it receives: the durable position it reports is the one at the start, never
 * what arrived during the job, even generations begun meanwhile (under temporary names, named
 * by the next job); a range beginning a generation once STORE_COPY_MAX_UNNAMED wait for a sync
 * is refused (-EBUSY, nothing changed); and the copy's mail ends up the active's.
 */
static void
test_sync_job_reports_only_what_it_synced(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    rng_state = 0x5eed0009;
    mail_work(active, 0, 160); /* more 64 KiB generations than STORE_COPY_MAX_UNNAMED */
    int jobs = 0, refused = 0, overtaken = 0, begun_during = 0;
    for (;;) {
        struct store_copy_position pos;
        store_copy_get_position(copy, &pos);
        struct store_log_extent ext;
        if (store_log_extent(active, pos.generation, &ext) == TDM_ENOTFOUND ||
            pos.offset == ext.durable_end)
            break;
        uint8_t *buf = read_generation(active, pos.generation, &ext);
        uint64_t to = pick_boundary(buf, ext.durable_end, pos.offset);
        const char *err = NULL;
        if (!store_copy_receive_ready(copy, pos.offset)) {
            /* STORE_COPY_MAX_UNNAMED generations wait for a sync: refused until one ran. */
            assert_int_equal(pos.offset, 0);
            assert_true(gen_file_exists(copy_dir("copy"), pos.generation - 1, true));
            assert_int_equal(store_copy_receive(copy, pos.generation, 0, buf, to, &err), -EBUSY);
            refused++;
            struct store_copy_position still;
            store_copy_get_position(copy, &still);
            assert_memory_equal(&still, &pos, sizeof(pos));
            struct store_copy_sync_job job;
            assert_int_equal(store_copy_sync_start(copy, &job), 1);
            store_copy_sync_run(&job);
            assert_int_equal(store_copy_sync_end(copy, &job, NULL), 0);
            assert_true(store_copy_receive_ready(copy, pos.offset));
            /* Every generation received is named now, and durable. */
            assert_true(gen_file_exists(copy_dir("copy"), pos.generation - 1, false));
            assert_false(gen_file_exists(copy_dir("copy"), pos.generation - 1, true));
        }
        assert_int_equal(store_copy_receive(copy, pos.generation, pos.offset, buf + pos.offset,
                                            to - pos.offset, &err),
                         0);
        free(buf);
        /* Until the first refusal, no sync: generations pile up under temporary names. */
        if (refused == 0 || rng() % 2)
            continue;
        struct store_copy_sync_job job;
        struct store_copy_position at_start, durable;
        store_copy_get_position(copy, &at_start);
        assert_int_equal(store_copy_sync_start(copy, &job), 1);
        assert_int_equal(store_copy_sync(copy, NULL), -EBUSY); /* one at a time */
        store_copy_sync_run(&job);
        /* More arrives after the job synced, before it ends: not durable, not reported. That
         * may begin a generation (under a temporary name, which this job does not rename). */
        for (int k = 0; k < 3; k++) {
            store_copy_get_position(copy, &pos);
            if (store_log_extent(active, pos.generation, &ext) != 0 ||
                pos.offset >= ext.durable_end)
                break;
            buf = read_generation(active, pos.generation, &ext);
            to = pick_boundary(buf, ext.durable_end, pos.offset);
            assert_int_equal(store_copy_receive(copy, pos.generation, pos.offset, buf + pos.offset,
                                                to - pos.offset, &err),
                             0);
            free(buf);
            overtaken++;
            if (pos.offset == 0) {
                begun_during++;
                assert_true(gen_file_exists(copy_dir("copy"), pos.generation, true));
                break;
            }
        }
        assert_int_equal(store_copy_sync_end(copy, &job, &durable), 0);
        jobs++;
        assert_memory_equal(&durable, &at_start, sizeof(durable));
        /* What the job covered is named; what began after its start is not yet. */
        uint64_t covered = at_start.offset ? at_start.generation : at_start.generation - 1;
        assert_true(gen_file_exists(copy_dir("copy"), covered, false));
        assert_false(gen_file_exists(copy_dir("copy"), covered, true));
        store_copy_get_position(copy, &pos);
        if (pos.offset && pos.generation > covered)
            assert_true(gen_file_exists(copy_dir("copy"), pos.generation, true));
        struct store_copy_status st;
        store_copy_get_status(copy, &st);
        assert_memory_equal(&st.durable, &at_start, sizeof(at_start));
        assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
        store_copy_get_status(copy, &st);
        assert_true(st.replayed_lsn <= at_start.lsn); /* replay stops at the durable LSN */
    }
    assert_true(jobs > 0 && refused > 0 && overtaken > 0 && begun_during > 0);
    /* Nothing unsynced: nothing to run, the durable position is the received one. */
    struct store_copy_sync_job job;
    if (store_copy_sync_start(copy, &job) == 1) {
        store_copy_sync_run(&job);
        assert_int_equal(store_copy_sync_end(copy, &job, NULL), 0);
    }
    assert_int_equal(store_copy_sync_start(copy, &job), 0);
    assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
}

/*
 * A sync job that runs after its copy was closed and another directory took its place (a
 * reseed swaps directories) changes nothing there: -ESTALE.
 */
static void
test_sync_job_of_a_replaced_directory_changes_nothing(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    mail_work(active, 0, 30);
    struct store_copy_position pos;
    for (int i = 0; i < 2; i++) { /* generation 1 whole, and 2 begun: temporary */
        store_copy_get_position(copy, &pos);
        struct store_log_extent ext;
        assert_int_equal(store_log_extent(active, pos.generation, &ext), 0);
        uint8_t *buf = read_generation(active, pos.generation, &ext);
        const char *err = NULL;
        assert_int_equal(store_copy_receive(copy, pos.generation, pos.offset, buf + pos.offset,
                                            ext.durable_end - pos.offset, &err),
                         0);
        free(buf);
    }
    assert_true(gen_file_exists(copy_dir("copy"), 2, true));
    struct store_copy_sync_job job;
    assert_int_equal(store_copy_sync_start(copy, &job), 1);
    assert_int_equal(store_copy_close(&copy), -EBUSY);
    /* Swap another directory in under the copy's name, with the same file names. */
    char old_dir[PATH_MAX], cmd[3 * PATH_MAX];
    snprintf(old_dir, sizeof(old_dir), "%s.old", copy_dir("copy"));
    assert_int_equal(rename(copy_dir("copy"), old_dir), 0);
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", old_dir, copy_dir("copy"));
    assert_int_equal(system(cmd), 0);
    store_copy_sync_run(&job);
    assert_int_equal(job.ret, -ESTALE);
    store_copy_sync_job_free(&job);
    assert_true(gen_file_exists(copy_dir("copy"), 2, true)); /* not renamed */
    assert_false(gen_file_exists(copy_dir("copy"), 2, false));
    assert_int_equal(store_close(&active), 0);
}

/*
 * A copy that stops with generations still under temporary names (received while the one
 * before was not durable, never synced: a crash, or a close while a sync job ran) reopens
 * without them, at the end of its last named generation, and ships them again.
 */
static void
test_temporary_generations_are_removed_at_open(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    mail_work(active, 0, 60);
    /* Whole generations, no sync: the first is named (nothing before it), the rest wait. */
    uint64_t last = 0;
    for (;;) {
        struct store_copy_position pos;
        store_copy_get_position(copy, &pos);
        struct store_log_extent ext;
        if (store_log_extent(active, pos.generation, &ext) != 0 || pos.offset == ext.durable_end ||
            !store_copy_receive_ready(copy, pos.offset))
            break;
        uint8_t *buf = read_generation(active, pos.generation, &ext);
        const char *err = NULL;
        assert_int_equal(store_copy_receive(copy, pos.generation, pos.offset, buf + pos.offset,
                                            ext.durable_end - pos.offset, &err),
                         0);
        free(buf);
        last = pos.generation;
    }
    assert_true(last >= 3);
    assert_true(gen_file_exists(copy_dir("copy"), 1, false));
    for (uint64_t g = 2; g <= last; g++) {
        assert_true(gen_file_exists(copy_dir("copy"), g, true));
        assert_false(gen_file_exists(copy_dir("copy"), g, false));
    }
    /* Closed while a sync job (never run here) holds them: they stay temporary. */
    struct store_copy_sync_job job;
    assert_int_equal(store_copy_sync_start(copy, &job), 1);
    assert_int_equal(store_copy_close(&copy), -EBUSY);
    store_copy_sync_job_free(&job);

    copy = copy_open(copy_dir("copy"));
    for (uint64_t g = 2; g <= last; g++) {
        assert_false(gen_file_exists(copy_dir("copy"), g, true));
        assert_false(gen_file_exists(copy_dir("copy"), g, false));
    }
    struct store_copy_position pos;
    store_copy_get_position(copy, &pos);
    assert_int_equal(pos.generation, 2);
    assert_int_equal(pos.offset, 0);
    rng_state = 0x5eed0010;
    struct ship_stats stats = {0};
    ship(active, copy, &stats);
    assert_int_equal(store_copy_replay(copy, NULL, NULL), 0);
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
}

static void
test_activation_continues_with_min_epoch(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    rng_state = 0x5eed0003;
    struct ship_stats stats = {0};
    mail_work(active, 0, 30);
    ship(active, copy, &stats);
    struct store_copy_position pos;
    store_copy_get_position(copy, &pos);
    assert_true(pos.offset > 0); /* the copy holds an open generation */
    /* Replay nothing: activation's recovery does it. */
    assert_int_equal(store_copy_close(&copy), 0);
    struct store_status ast;
    store_get_status(active, &ast);
    assert_int_equal(store_close(&active), 0);

    o.min_epoch = 2;
    const char *err = NULL;
    struct store *s = NULL;
    if (store_open(copy_dir("copy"), &o, &s, &err) != 0)
        fail_msg("activate: %s", err);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.epoch, 2);
    assert_int_equal(st.applied_lsn, ast.applied_lsn);
    /* Recovery replayed everything the copy had received. */
    assert_int_equal(store_close(&s), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
    assert_int_equal(store_open(copy_dir("copy"), &o, &s, &err), 0);
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(s, pos.generation, &ext), 0);
    assert_true(ext.closed);
    assert_int_equal(ext.epoch, 1);
    mail_work(s, 30, 5);
    store_get_status(s, &st);
    assert_true(st.applied_lsn > ast.applied_lsn);
    assert_int_equal(store_log_extent(s, pos.generation + 1, &ext), 0);
    assert_int_equal(ext.epoch, 2);
    assert_int_equal(ext.first_lsn, ast.applied_lsn + 1);
    assert_int_equal(store_close(&s), 0);
    s = NULL;
    assert_int_equal(store_open(copy_dir("copy"), &o, &s, &err), 0);
    assert_int_equal(store_close(&s), 0);
}

static void
test_copy_truncate_and_standby_limits(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    struct store_copy *copy = copy_new(copy_dir("copy"), active, 1);
    rng_state = 0x5eed0004;
    struct ship_stats stats = {0};
    uint32_t done = 0;
    for (int round = 0; round < 6; round++) {
        mail_work(active, done, 10);
        done += 10;
        assert_int_equal(store_roll(active), 0);
    }
    ship(active, copy, &stats);
    struct store_copy_status cst;
    store_copy_get_status(copy, &cst);
    uint64_t top = cst.received.generation - 1; /* the last one closed */
    assert_true(top >= 6);

    /* A standby holding back 2 generations replays up to the end of top - 2. */
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(active, top - 2, &ext), 0);
    struct store_copy_replay_limit hold = {.hold_generations = 2};
    uint64_t replayed = 0;
    assert_int_equal(store_copy_replay(copy, &hold, &replayed), 0);
    assert_int_equal(replayed, ext.last_lsn);
    /* ... and only generations begun before a time: none is older than 0 + 1 us. */
    struct store_copy_replay_limit lag = {.created_before_us = 1};
    assert_int_equal(store_copy_replay(copy, &lag, &replayed), 0);
    assert_int_equal(replayed, ext.last_lsn);
    struct store_copy_replay_limit cap = {.max_lsn = ext.last_lsn + 3};
    assert_int_equal(store_copy_replay(copy, &cap, &replayed), 0);
    assert_int_equal(replayed, ext.last_lsn + 3);

    /* Truncation takes only what is replayed and checkpointed. */
    assert_int_equal(store_copy_truncate(copy, top), 0);
    store_copy_get_status(copy, &cst);
    assert_int_equal(cst.lowest_generation, 1);   /* nothing checkpointed yet */
    assert_int_equal(store_copy_close(&copy), 0); /* close checkpoints */
    copy = copy_open(copy_dir("copy"));
    assert_int_equal(store_copy_truncate(copy, top), 0);
    store_copy_get_status(copy, &cst);
    /* Generation g goes when its last LSN <= the checkpoint: ext.last_lsn + 3 is inside
     * top - 1, so the generations below top - 1 go. */
    assert_int_equal(cst.lowest_generation, top - 1);
    assert_int_equal(cst.checkpoint_lsn, ext.last_lsn + 3);
    /* Their files go with the next sync (off the receiving thread, in the copy agent). */
    assert_true(store_copy_unlinks_pending(copy));
    assert_true(gen_file_exists(copy_dir("copy"), top - 2, false));
    struct store_copy_sync_job job;
    assert_int_equal(store_copy_sync_start(copy, &job), 1);
    assert_false(store_copy_unlinks_pending(copy));
    store_copy_sync_run(&job);
    assert_int_equal(store_copy_sync_end(copy, &job, NULL), 0);
    for (uint64_t g = 1; g < top - 1; g++)
        assert_false(gen_file_exists(copy_dir("copy"), g, false));
    assert_true(gen_file_exists(copy_dir("copy"), top - 1, false));
    assert_int_equal(store_copy_replay(copy, NULL, &replayed), 0);
    store_get_status(active, &(struct store_status){0});
    struct store_status ast;
    store_get_status(active, &ast);
    assert_int_equal(replayed, ast.applied_lsn);
    assert_int_equal(store_copy_close(&copy), 0);
    copy = copy_open(copy_dir("copy"));
    store_copy_get_status(copy, &cst);
    assert_int_equal(cst.lowest_generation, top - 1);
    assert_int_equal(cst.replayed_lsn, ast.applied_lsn);
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
}

static void
test_copy_opens_a_former_active(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    mail_work(active, 0, 20);
    struct store_status ast;
    store_get_status(active, &ast);
    assert_int_equal(store_close(&active), 0);
    /* The old active becomes a copy: its spares go, it continues where its log ends. */
    struct store_copy *copy = copy_open(active_dir());
    struct store_copy_status cst;
    store_copy_get_status(copy, &cst);
    assert_int_equal(cst.received.generation, ast.current_generation + 1);
    assert_int_equal(cst.received.offset, 0);
    assert_int_equal(cst.received.lsn, ast.applied_lsn);
    assert_int_equal(cst.replayed_lsn, ast.applied_lsn);
    char p[400];
    snprintf(p, sizeof(p), "%s/log/%016llx.log", active_dir(),
             (unsigned long long)ast.current_generation + 1);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(store_copy_close(&copy), 0);
}

/* ---- inspection ---- */

/* A synthetic generation for the inspection cases, with whatever identity a case needs. */
struct synth {
    uint8_t guid[16];
    uint64_t gen, epoch, first_lsn;
    uint32_t prev_checksum;
    int records;
    bool closed;
    uint32_t payload; /* bytes per record */
};

struct synth_out {
    uint8_t *buf; /* the file's first len bytes */
    size_t len;
    size_t frame_end[64]; /* offset past BEGIN ([0]) and each record ([1..records]) */
    uint32_t checksum;
    uint64_t last_lsn;
};

static void
synth_build(const struct synth *sy, struct synth_out *out)
{
    const size_t size = 64 * 1024;
    memset(out, 0, sizeof(*out));
    out->buf = calloc(1, size);
    assert_non_null(out->buf);
    struct log_header h = {.version = TDM_LOG_VERSION,
                           .generation = sy->gen,
                           .created_us = 1000 + sy->gen,
                           .epoch = sy->epoch,
                           .first_lsn = sy->first_lsn,
                           .prev_checksum = sy->prev_checksum,
                           .file_size = (uint32_t)size};
    memcpy(h.guid, sy->guid, 16);
    log_header_encode(&h, out->buf);
    size_t off = TDM_LOG_HEADER_SIZE;
    log_begin_encode(&h, out->buf + off);
    out->checksum = crc32c(0, out->buf + off, TDM_LOG_BEGIN_FRAME);
    off += TDM_LOG_BEGIN_FRAME;
    out->frame_end[0] = off;
    uint8_t body[256];
    memset(body, 0x33, sizeof(body));
    for (int i = 0; i < sy->records; i++) {
        log_record_encode(sy->first_lsn + (uint64_t)i, sy->epoch, TDM_REC_NOOP, body, sy->payload,
                          out->buf + off);
        out->checksum = crc32c(out->checksum, out->buf + off, log_frame_size(sy->payload));
        off += log_frame_size(sy->payload);
        out->frame_end[i + 1] = off;
    }
    out->last_lsn = sy->first_lsn + (uint64_t)sy->records - 1;
    if (sy->closed) {
        struct log_end end = {.record_count = (uint64_t)sy->records, .gen_checksum = out->checksum};
        uint8_t ep[TDM_LOG_END_PAYLOAD];
        log_end_encode(&end, ep);
        log_record_encode(sy->records ? out->last_lsn : 0, sy->epoch, TDM_REC_END, ep, sizeof(ep),
                          out->buf + off);
        off += TDM_LOG_END_FRAME;
    }
    out->len = off;
}

static const uint8_t guid_a[16] = {0xa, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const uint8_t guid_b[16] = {0xb, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* Receives bad bytes: the error expected, and nothing kept (same position, no new file). */
static void
refused(struct store_copy *c, uint64_t gen, uint64_t off, const uint8_t *b, size_t len, int expect,
        const char *expect_in_error)
{
    struct store_copy_position before, after;
    store_copy_get_position(c, &before);
    const char *err = NULL;
    int ret = store_copy_receive(c, gen, off, b, len, &err);
    if (ret != expect)
        fail_msg("receive returned %d (%s), expected %d", ret, err ? err : "-", expect);
    assert_non_null(err);
    if (expect_in_error && !strstr(err, expect_in_error))
        fail_msg("error \"%s\" does not name \"%s\"", err, expect_in_error);
    store_copy_get_position(c, &after);
    assert_memory_equal(&before, &after, sizeof(before));
    char p[400];
    snprintf(p, sizeof(p), "%s/log/%016llx.log", copy_dir("copy"), (unsigned long long)gen);
    if (off == 0)
        assert_int_equal(access(p, F_OK), -1);
    struct store_copy_status st;
    store_copy_get_status(c, &st);
    assert_false(st.failed);
}

static void
accepted(struct store_copy *c, uint64_t gen, uint64_t off, const uint8_t *b, size_t len)
{
    const char *err = NULL;
    int ret = store_copy_receive(c, gen, off, b, len, &err);
    if (ret != 0)
        fail_msg("receive returned %d (%s)", ret, err ? err : "-");
}

static struct store_copy *
synth_copy(uint64_t first_gen)
{
    const char *err = NULL;
    assert_int_equal(store_copy_create(copy_dir("copy"), guid_a, NULL, first_gen, &err), 0);
    return copy_open(copy_dir("copy"));
}

static void
test_inspection_refuses_bad_bytes(void **state)
{
    (void)state;
    struct store_copy *c = synth_copy(1);
    struct synth sy = {
        .gen = 1, .epoch = 5, .first_lsn = 1, .records = 6, .closed = true, .payload = 100};
    memcpy(sy.guid, guid_a, 16);
    struct synth_out g1;
    synth_build(&sy, &g1);

    /* Another database's generation. */
    struct synth other = sy;
    memcpy(other.guid, guid_b, 16);
    struct synth_out o1;
    synth_build(&other, &o1);
    refused(c, 1, 0, o1.buf, o1.len, TDM_ECORRUPT, "GUID");
    free(o1.buf);

    /* Not at the position. */
    refused(c, 2, 0, g1.buf, g1.len, TDM_EINVAL, "position");
    refused(c, 1, 4096, g1.buf + 4096, g1.len - 4096, TDM_EINVAL, "position");

    /* A flipped byte in a frame, anywhere in the range: nothing of the range is kept. */
    uint8_t *bad = malloc(g1.len);
    memcpy(bad, g1.buf, g1.len);
    bad[g1.frame_end[3] + 30] ^= 0x40;
    refused(c, 1, 0, bad, g1.len, TDM_ECORRUPT, "generation 1 offset");

    /* A range that ends inside a frame. */
    refused(c, 1, 0, g1.buf, g1.frame_end[2] + 10, TDM_ECORRUPT, "inside a frame");

    /* The header and BEGIN plus two records: accepted. */
    accepted(c, 1, 0, g1.buf, g1.frame_end[2]);

    /* A gap in LSN inside the generation: record 4 where 3 belongs (valid CRC). */
    uint8_t frame[200];
    uint8_t body[256];
    memset(body, 0x33, sizeof(body));
    log_record_encode(4, 5, TDM_REC_NOOP, body, 100, frame);
    refused(c, 1, g1.frame_end[2], frame, log_frame_size(100), TDM_ECORRUPT, "gap in LSN");
    /* A record of another epoch. */
    log_record_encode(3, 4, TDM_REC_NOOP, body, 100, frame);
    refused(c, 1, g1.frame_end[2], frame, log_frame_size(100), TDM_ECORRUPT, "epoch");
    /* A flipped byte in the middle of a continuing range. */
    memcpy(bad, g1.buf, g1.len);
    bad[g1.frame_end[4] + 5] ^= 1;
    refused(c, 1, g1.frame_end[2], bad + g1.frame_end[2], g1.frame_end[6] - g1.frame_end[2],
            TDM_ECORRUPT, NULL);

    /* END with a wrong checksum (its own CRC valid). */
    memcpy(bad, g1.buf, g1.len);
    {
        struct log_end end = {.record_count = 6, .gen_checksum = g1.checksum ^ 1};
        uint8_t ep[TDM_LOG_END_PAYLOAD];
        log_end_encode(&end, ep);
        log_record_encode(g1.last_lsn, 5, TDM_REC_END, ep, sizeof(ep), bad + g1.frame_end[6]);
    }
    refused(c, 1, g1.frame_end[2], bad + g1.frame_end[2], g1.len - g1.frame_end[2], TDM_ECORRUPT,
            "checksum");
    free(bad);

    /* The rest, closed: accepted. */
    accepted(c, 1, g1.frame_end[2], g1.buf + g1.frame_end[2], g1.len - g1.frame_end[2]);
    /* Bytes after END are not at the position. */
    refused(c, 1, g1.len, g1.buf + g1.frame_end[5], 128, TDM_EINVAL, "position");

    /* Generation 2: an older epoch, a broken chain, a gap in LSN at its start. */
    struct synth s2 = {.gen = 2,
                       .epoch = 4,
                       .first_lsn = 7,
                       .prev_checksum = g1.checksum,
                       .records = 2,
                       .closed = false,
                       .payload = 20};
    memcpy(s2.guid, guid_a, 16);
    struct synth_out g2;
    synth_build(&s2, &g2);
    refused(c, 2, 0, g2.buf, g2.len, TDM_ECORRUPT, "older");
    free(g2.buf);
    s2.epoch = 6;
    s2.prev_checksum = g1.checksum + 1;
    synth_build(&s2, &g2);
    refused(c, 2, 0, g2.buf, g2.len, TDM_ECORRUPT, "chain");
    free(g2.buf);
    s2.prev_checksum = g1.checksum;
    s2.first_lsn = 8;
    synth_build(&s2, &g2);
    refused(c, 2, 0, g2.buf, g2.len, TDM_ECORRUPT, "gap in LSN");
    free(g2.buf);
    /* BEGIN naming another generation than the one shipped. */
    s2.first_lsn = 7;
    s2.gen = 3;
    synth_build(&s2, &g2);
    refused(c, 2, 0, g2.buf, g2.len, TDM_ECORRUPT, "BEGIN names generation 3");
    free(g2.buf);
    /* A newer epoch is fine. */
    s2.gen = 2;
    synth_build(&s2, &g2);
    accepted(c, 2, 0, g2.buf, g2.len);
    free(g2.buf);

    struct store_copy_position pos;
    assert_int_equal(store_copy_sync(c, &pos), 0);
    assert_int_equal(pos.generation, 2);
    assert_int_equal(pos.lsn, 8);
    assert_int_equal(pos.epoch, 6);
    uint64_t replayed = 0;
    assert_int_equal(store_copy_replay(c, NULL, &replayed), 0);
    assert_int_equal(replayed, 8);
    struct store_copy_status st;
    store_copy_get_status(c, &st);
    assert_int_equal(st.inspected_generation, 1);
    assert_int_equal(st.replayed_generation, 1);
    assert_false(st.failed);
    assert_int_equal(store_copy_close(&c), 0);
    free(g1.buf);
}

static void
test_first_generation_must_not_leave_a_gap(void **state)
{
    (void)state;
    /* A copy expecting generation 3 with an empty database: generation 3 begins at LSN 20,
     * and records 1..19 are nowhere. */
    struct store_copy *c = synth_copy(3);
    struct store_copy_position pos;
    store_copy_get_position(c, &pos);
    assert_int_equal(pos.generation, 3);
    assert_int_equal(pos.offset, 0);
    struct synth sy = {.gen = 3, .epoch = 1, .first_lsn = 20, .records = 2, .payload = 10};
    memcpy(sy.guid, guid_a, 16);
    struct synth_out g;
    synth_build(&sy, &g);
    refused(c, 3, 0, g.buf, g.len, TDM_ECORRUPT, "gap in LSN");
    free(g.buf);
    assert_int_equal(store_copy_close(&c), 0);
}

/* The generation of the active that holds lsn (begun already). */
static uint64_t
generation_holding(struct store *s, uint64_t lsn)
{
    for (uint64_t g = 1;; g++) {
        struct store_log_extent ext;
        if (store_log_extent(s, g, &ext) != 0)
            fail_msg("no generation holds LSN %llu", (unsigned long long)lsn);
        if (ext.first_lsn <= lsn && (lsn <= ext.last_lsn || !ext.closed))
            return g;
    }
}

static void
test_copy_seeded_from_a_snapshot(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    store_set_truncation_floor(active, 1);
    mail_work(active, 0, 40);
    assert_int_equal(store_roll(active), 0);
    mail_work(active, 40, 7);

    /* Snapshot while the active takes commits. */
    char snap[400];
    snprintf(snap, sizeof(snap), "%s/snapshot.mdb", tmpdir);
    int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    uint64_t applied = 0;
    const char *err = NULL;
    assert_int_equal(store_snapshot(active, fd, &applied, &err), 0);
    close(fd);
    struct store_status ast;
    store_get_status(active, &ast);
    assert_true(applied > 0 && applied <= ast.applied_lsn);
    mail_work(active, 47, 20);
    uint64_t first = generation_holding(active, applied + 1);
    assert_true(first > 1);
    store_set_truncation_floor(active, first);

    /* Another database's snapshot is refused. */
    char snap2[400];
    snprintf(snap2, sizeof(snap2), "%s/snapshot2.mdb", tmpdir);
    fd = open(snap2, O_RDWR | O_CREAT | O_TRUNC, 0640);
    uint64_t applied2 = 0;
    assert_int_equal(store_snapshot(active, fd, &applied2, &err), 0);
    close(fd);
    assert_true(applied2 > applied);
    uint8_t other[16] = {0};
    assert_int_equal(store_copy_create_from_snapshot(copy_dir("other"), snap2, other, first, &err),
                     TDM_EFOREIGN);

    /* The copy: no generation yet, the snapshot's data, the log from `first`. */
    assert_int_equal(store_copy_create_from_snapshot(copy_dir("copy"), snap, ast.guid, first, &err),
                     0);
    assert_int_equal(access(snap, F_OK), -1); /* moved into place */
    struct store_copy *copy = copy_open(copy_dir("copy"));
    struct store_copy_position pos;
    store_copy_get_position(copy, &pos);
    assert_int_equal(pos.generation, first);
    assert_int_equal(pos.offset, 0);
    assert_true(pos.lsn >= applied);
    rng_state = 0x5eed0005;
    struct ship_stats stats = {0};
    ship(active, copy, &stats);
    uint64_t replayed = 0;
    assert_int_equal(store_copy_replay(copy, NULL, &replayed), 0);
    store_get_status(active, &ast);
    assert_int_equal(replayed, ast.applied_lsn);
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    assert_same_mail(active_dir(), copy_dir("copy"));
    /* And it activates. */
    struct store *s = NULL;
    o.min_epoch = 2;
    if (store_open(copy_dir("copy"), &o, &s, &err) != 0)
        fail_msg("activate: %s", err);
    mail_work(s, 67, 3);
    assert_int_equal(store_close(&s), 0);
}

/* The digest of the mail in dir's LMDB, whatever its log holds (a copy without a generation
 * has a log that `db verify` reports). */
static void
lmdb_digest_of(const char *dir, uint8_t out[32])
{
    struct store_verify_options vo = {.tmp_dir = tmpdir, .skip_replay = true};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dir, &vo, &r, &err), 0);
    memcpy(out, r.db_digest, 32);
    store_verify_report_clear(&r);
}

/* Seeds copy `name` from a snapshot of active; *applied_r: the snapshot's applied LSN. */
static void
seed_copy(struct store *active, const char *name, uint64_t first, uint64_t *applied_r)
{
    char snap[400];
    snprintf(snap, sizeof(snap), "%s/%s.mdb", tmpdir, name);
    int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    const char *err = NULL;
    assert_int_equal(store_snapshot(active, fd, applied_r, &err), 0);
    close(fd);
    struct store_status ast;
    store_get_status(active, &ast);
    if (store_copy_create_from_snapshot(copy_dir(name), snap, ast.guid, first, &err) != 0)
        fail_msg("seed: %s", err);
}

static size_t
log_files(const char *dir)
{
    char log[600];
    snprintf(log, sizeof(log), "%s/log", dir);
    uint64_t *gens = NULL;
    size_t n = 0;
    assert_int_equal(store__gen_list(log, &gens, &n), 0);
    free(gens);
    return n;
}

static void
remove_log_files(const char *dir)
{
    char log[600];
    snprintf(log, sizeof(log), "%s/log", dir);
    uint64_t *gens = NULL;
    size_t n = 0;
    assert_int_equal(store__gen_list(log, &gens, &n), 0);
    for (size_t i = 0; i < n; i++) {
        char path[700];
        store__gen_path(path, sizeof(path), log, gens[i]);
        assert_int_equal(unlink(path), 0);
    }
    free(gens);
}

/*
 * A copy seeded from a snapshot that never received a generation (file mode: the active's
 * generation holding the snapshot point was still open) is activated: it mounts under the new
 * epoch, with the snapshot's mail and applied LSN, and its log begins at the generation it
 * expected, first LSN applied + 1. Without a newer epoch it is refused and left as it was;
 * a first generation made but never begun (a crash during the activation) is made again; a
 * database that is not such a copy still refuses a log without generations, and so does the
 * activated one once its log is lost.
 */
static void
test_copy_seeded_without_generation_activates(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    struct store *active = active_open(&o, true);
    store_set_truncation_floor(active, 1);
    mail_work(active, 0, 40);
    assert_int_equal(store_roll(active), 0);
    mail_work(active, 40, 7);
    /* "probe" only finds the snapshot point, and so the generation a seed starts from. */
    uint64_t applied = 0, applied2 = 0;
    seed_copy(active, "probe", 1, &applied);
    uint64_t first = generation_holding(active, applied + 1);
    struct store_log_extent aext;
    assert_int_equal(store_log_extent(active, first, &aext), 0);
    assert_false(aext.closed);
    assert_true(aext.first_lsn < applied + 1); /* the snapshot ends inside the generation */
    /* The same point again (no commit between), as the seed does it. */
    seed_copy(active, "ref", first, &applied2);
    assert_int_equal(applied2, applied);
    /* The active goes on in its open generation; nothing of it reaches the copy. */
    for (int i = 0; i < 3; i++)
        commit_noop(active, 100, (uint8_t)i);
    struct store_status ast;
    store_get_status(active, &ast);
    assert_true(ast.applied_lsn > applied);
    assert_int_equal(store_log_extent(active, first, &aext), 0);
    assert_false(aext.closed);
    assert_int_equal(store_close(&active), 0);

    const char *err = NULL;
    struct store_copy *copy = copy_open(copy_dir("ref"));
    struct store_copy_position pos;
    store_copy_get_position(copy, &pos);
    assert_int_equal(pos.generation, first);
    assert_int_equal(pos.offset, 0);
    assert_int_equal(store_copy_close(&copy), 0);

    /* Not without a newer epoch: left as it was, still a copy that opens. */
    struct store *s = NULL;
    assert_int_equal(store_open(copy_dir("ref"), &o, &s, &err), TDM_EINVAL);
    assert_non_null(strstr(err, "no log generation yet"));
    assert_int_equal(log_files(copy_dir("ref")), 0);
    copy = copy_open(copy_dir("ref"));
    assert_int_equal(store_copy_close(&copy), 0);
    uint8_t want[32], got[32];
    lmdb_digest_of(copy_dir("ref"), want);
    /* db verify: a warning that the log has not begun, no error. */
    {
        struct store_verify_options vo = {.tmp_dir = tmpdir};
        struct store_verify_report r;
        assert_int_equal(store_verify(copy_dir("ref"), &vo, &r, &err), 0);
        assert_int_equal(r.n_problems, 1);
        assert_int_equal(r.problems[0].severity, STORE_PROBLEM_WARNING);
        assert_non_null(strstr(r.problems[0].reason, "no log generation yet"));
        store_verify_report_clear(&r);
    }

    /* A crash cut an earlier activation short after making the generation file. */
    char log[600];
    snprintf(log, sizeof(log), "%s/log", copy_dir("ref"));
    assert_int_equal(store__gen_file_create(&io_ops_posix, log, first, o.generation_size, ast.guid),
                     0);

    o.min_epoch = ast.epoch + 1;
    if (store_open(copy_dir("ref"), &o, &s, &err) != 0)
        fail_msg("activate: %s", err);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.epoch, ast.epoch + 1);
    assert_int_equal(st.applied_lsn, applied);
    assert_int_equal(st.lowest_generation, first);
    assert_int_equal(st.current_generation, first);
    struct store_log_extent ext;
    assert_int_equal(store_log_extent(s, first, &ext), 0);
    assert_int_equal(ext.first_lsn, applied + 1);
    assert_int_equal(ext.epoch, ast.epoch + 1);
    assert_false(ext.closed);
    assert_int_equal(store_close(&s), 0);
    /* It serves what the snapshot held, and nothing else. */
    lmdb_digest_of(copy_dir("ref"), got);
    assert_memory_equal(want, got, 32);
    uint8_t verified[32];
    digest_of(copy_dir("ref"), verified); /* db verify finds its log whole */
    assert_memory_equal(want, verified, 32);

    /* It writes on, in its own generations, and mounts again in its epoch. */
    o.min_epoch = 0;
    assert_int_equal(store_open(copy_dir("ref"), &o, &s, &err), 0);
    mail_work(s, 52, 20);
    store_get_status(s, &st);
    assert_true(st.current_generation > first);
    assert_int_equal(store_log_extent(s, first + 1, &ext), 0);
    assert_int_equal(ext.epoch, ast.epoch + 1);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(store_open(copy_dir("ref"), &o, &s, &err), 0);
    assert_int_equal(store_close(&s), 0);

    /* Once its log has generations, losing them is lost log, refused as before. */
    remove_log_files(copy_dir("ref"));
    o.min_epoch = ast.epoch + 2;
    assert_int_equal(store_open(copy_dir("ref"), &o, &s, &err), TDM_ECORRUPT);
    assert_non_null(strstr(err, "holds no log generations"));
    /* And a database that never was a copy: the same. */
    remove_log_files(active_dir());
    assert_int_equal(store_open(active_dir(), &o, &s, &err), TDM_ECORRUPT);
}

/* An io_ops whose fdatasync fails once armed: the disk of a copy going bad. */
static bool sync_fails;
static int
failing_fdatasync(const struct io_ops *io, int fd)
{
    if (sync_fails)
        return -EIO;
    return io_ops_posix.fdatasync(io, fd);
}

static void
test_io_failure_is_sticky(void **state)
{
    (void)state;
    struct store_copy *c = synth_copy(1);
    assert_int_equal(store_copy_close(&c), 0);
    struct io_ops io = io_ops_posix;
    io.fdatasync = failing_fdatasync;
    struct store_options o;
    store_options_init(&o);
    o.io = &io;
    const char *err = NULL;
    sync_fails = false;
    assert_int_equal(store_copy_open(copy_dir("copy"), &o, &c, &err), 0);

    struct synth sy = {.gen = 1, .epoch = 1, .first_lsn = 1, .records = 3, .payload = 10};
    memcpy(sy.guid, guid_a, 16);
    struct synth_out g;
    synth_build(&sy, &g);
    accepted(c, 1, 0, g.buf, g.frame_end[2]);
    sync_fails = true;
    assert_int_equal(store_copy_sync(c, NULL), -EIO);
    struct store_copy_status st;
    store_copy_get_status(c, &st);
    assert_true(st.failed);
    assert_non_null(strstr(st.failure, "syncing"));
    assert_int_equal(st.durable.lsn, 0);
    /* Never retried blindly: everything after it is refused, even once the disk answers. */
    sync_fails = false;
    assert_int_equal(store_copy_receive(c, 1, g.frame_end[2], g.buf + g.frame_end[2],
                                        g.frame_end[3] - g.frame_end[2], &err),
                     TDM_EFAILED);
    assert_int_equal(store_copy_sync(c, NULL), TDM_EFAILED);
    assert_int_equal(store_copy_replay(c, NULL, NULL), TDM_EFAILED);
    assert_int_equal(store_copy_close(&c), -EIO);
    /* Reopened, it holds a prefix of what it received. */
    c = copy_open(copy_dir("copy"));
    struct store_copy_position pos;
    store_copy_get_position(c, &pos);
    assert_true(pos.lsn <= 2);
    assert_int_equal(store_copy_close(&c), 0);
    free(g.buf);
}

/* ---- a kind with a record handler (directory databases replicate too) ---- */

#define TOY_PUT TDM_REC_TEST_FIRST

static bool
toy_handles(uint16_t type)
{
    return type == TOY_PUT;
}

static int
toy_validate(uint16_t type, const uint8_t *payload, size_t len, const char **error_r)
{
    (void)type;
    if (len == 0 || len > 64 || !memchr(payload, '=', len)) {
        *error_r = "toy: want key=value";
        return TDM_EINVAL;
    }
    return 0;
}

static int
toy_open(MDB_txn *txn, void **state_r)
{
    MDB_dbi *dbi = malloc(sizeof(*dbi));
    if (!dbi)
        return -ENOMEM;
    int rc = mdb_dbi_open(txn, "toy", MDB_CREATE, dbi);
    if (rc == EACCES) /* a read-only open of an environment without the table */
        rc = mdb_dbi_open(txn, "toy", 0, dbi) == MDB_NOTFOUND ? 0 : rc;
    if (rc != 0) {
        free(dbi);
        return -EIO;
    }
    *state_r = dbi;
    return 0;
}

static void
toy_close(void *state)
{
    free(state);
}

static int
toy_apply(void *state, MDB_txn *txn, uint16_t type, const uint8_t *payload, size_t len,
          struct mail_result *result_r)
{
    (void)type;
    (void)result_r;
    const uint8_t *eq = memchr(payload, '=', len);
    if (!eq)
        return TDM_ECORRUPT;
    MDB_val k = {(size_t)(eq - payload), (void *)payload};
    MDB_val v = {len - k.mv_size - 1, (void *)(eq + 1)};
    return mdb_put(txn, *(MDB_dbi *)state, &k, &v, 0) == 0 ? 0 : -EIO;
}

static int
toy_digest(void *state, MDB_txn *txn, uint8_t out[32])
{
    /* A fold of every key and value: equal exactly when the tables hold the same. */
    memset(out, 0, 32);
    MDB_cursor *c;
    if (mdb_cursor_open(txn, *(MDB_dbi *)state, &c) != 0)
        return 0; /* no table: empty */
    MDB_val k, v;
    uint32_t h = 0;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        h = crc32c(h, k.mv_data, k.mv_size);
        h = crc32c(h, v.mv_data, v.mv_size);
    }
    mdb_cursor_close(c);
    memcpy(out, &h, sizeof(h));
    return 0;
}

static const struct store_record_handler toy = {
    .handles = toy_handles,
    .validate = toy_validate,
    .open = toy_open,
    .close = toy_close,
    .apply = toy_apply,
    .digest = toy_digest,
};

static void
toy_digest_of(const char *dir, uint8_t out[32])
{
    struct store_verify_options vo = {.tmp_dir = tmpdir, .skip_replay = true, .handler = &toy};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dir, &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    memcpy(out, r.db_digest, 32);
    store_verify_report_clear(&r);
}

static void
test_copy_of_a_handler_kind(void **state)
{
    (void)state;
    struct store_options o;
    small_options(&o);
    o.handler = &toy;
    o.kind = "toy";
    struct store *active = active_open(&o, true);
    char rec[64];
    for (int i = 0; i < 300; i++) {
        int n = snprintf(rec, sizeof(rec), "key%03d=value %d", i % 50, i);
        assert_int_equal(store_commit(active, TOY_PUT, rec, (size_t)n, NULL, NULL), 0);
        if (i % 100 == 99)
            assert_int_equal(store_roll(active), 0);
    }
    struct store_status ast;
    store_get_status(active, &ast);
    const char *err = NULL;
    assert_int_equal(store_copy_create(copy_dir("copy"), ast.guid, "toy", 1, &err), 0);
    /* Without the handler, its records could not replay: refused at open, naming the kind. */
    struct store_copy *copy = NULL;
    assert_int_equal(store_copy_open(copy_dir("copy"), NULL, &copy, &err), TDM_EINVAL);
    assert_non_null(strstr(err, "toy"));
    assert_int_equal(store_copy_open(copy_dir("copy"), &o, &copy, &err), 0);
    rng_state = 0x5eed0006;
    struct ship_stats stats = {0};
    ship(active, copy, &stats);
    uint64_t replayed = 0;
    assert_int_equal(store_copy_replay(copy, NULL, &replayed), 0);
    assert_int_equal(replayed, 300);
    struct store_copy_status cst;
    store_copy_get_status(copy, &cst);
    assert_string_equal(cst.kind, "toy");
    assert_int_equal(store_copy_close(&copy), 0);
    assert_int_equal(store_close(&active), 0);
    uint8_t a[32], b[32];
    toy_digest_of(active_dir(), a);
    toy_digest_of(copy_dir("copy"), b);
    assert_memory_equal(a, b, 32);
}

/* store_is_copy: the marker makes a copy; what cannot be checked counts as one. */
static void
test_is_copy_by_its_marker(void **state)
{
    (void)state;
    char dir[512], marker[600], file[512];
    snprintf(dir, sizeof(dir), "%s/db1", tmpdir);
    assert_int_equal(store_is_copy(dir), 0); /* no such directory: nothing here at all */
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(store_is_copy(dir), 0);
    snprintf(marker, sizeof(marker), "%s/%s", dir, STORE_COPY_MARKER);
    FILE *f = fopen(marker, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(store_is_copy(dir), 1);
    assert_int_equal(unlink(marker), 0); /* activation removes it */
    assert_int_equal(store_is_copy(dir), 0);
    snprintf(file, sizeof(file), "%s/plain-file", tmpdir);
    assert_non_null(f = fopen(file, "w"));
    fclose(f);
    assert_int_equal(store_is_copy(file), -ENOTDIR);
    char *long_dir = calloc(1, PATH_MAX + 2);
    assert_non_null(long_dir);
    memset(long_dir, 'a', PATH_MAX);
    assert_int_equal(store_is_copy(long_dir), -ENAMETOOLONG);
    free(long_dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_extent_follows_the_durable_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_epoch_begins_a_generation_of_the_new_epoch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ship_from_generation_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_reopens_mid_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_job_reports_only_what_it_synced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_temporary_generations_are_removed_at_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sync_job_of_a_replaced_directory_changes_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_activation_continues_with_min_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_truncate_and_standby_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_opens_a_former_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspection_refuses_bad_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_generation_must_not_leave_a_gap, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_copy_seeded_from_a_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_seeded_without_generation_activates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_io_failure_is_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_of_a_handler_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_is_copy_by_its_marker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

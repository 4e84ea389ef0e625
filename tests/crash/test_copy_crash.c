/*
 * Power loss on a copy (store_copy.c): a real active's log is shipped into a copy whose file
 * I/O goes through the fault layer (fault_io.h), at random frame boundaries with syncs,
 * replays, checkpoints and truncations in between; at a chosen sync the layer crashes, and
 * the writes not yet synced are dropped, kept or torn. After store_copy_open():
 *
 *   - the copy's position lies between the last durable position a sync returned and the
 *     position it had received (a prefix of what was received, never less than was synced);
 *   - every generation file holds exactly the active's bytes up to that position, and no
 *     temporary generation file is left (generations begun while the one before was not
 *     durable, renamed into place by the sync that makes them durable: store_copy.c);
 *   - the copy's database never applied a record beyond it;
 *   - shipping resumes from the position, and once everything is replayed the copy holds the
 *     active's mail (db verify's digest).
 *
 * Every crash point of every seed's run is tried: the run is made once without a crash to
 * count its syncs. COPY_CRASH_SEEDS overrides the number of seeds. Plain main: prints what it
 * covered, "N schedules passed, N failed".
 */
#include "fault_io.h"

#include "lib/err.h"
#include "lib/event.h"
#include "store/log_codec.h"
#include "store/store.h"
#include "store/store_copy.h"
#include "store/store_inspect.h"

#include "scratch.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char base[256], active_dir[300], copy_dir[300];
static struct store *active;
static uint8_t active_digest[32];
static int failures;
static char fail_msg[512];

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    if (fail_msg[0])
        return; /* the first reason is the one worth reading */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fail_msg, sizeof(fail_msg), fmt, ap);
    va_end(ap);
}

static uint64_t rng_state;
static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void
options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->reserve_bytes = 64 * 1024;
    o->idle_close_ms = 0;
    o->checkpoint_bytes = 48 * 1024; /* copies checkpoint (and may truncate) mid-run */
}

/* The active: a mailbox, appends of varied sizes, flags; rolls now and then. */
static int
make_active(void)
{
    struct store_options o;
    options(&o);
    const char *err = NULL;
    if (store_create(active_dir, &o, &err) != 0 || store_open(active_dir, &o, &active, &err) != 0) {
        printf("cannot make the active: %s\n", err);
        return -1;
    }
    store_set_truncation_floor(active, 1); /* the copies ship from generation 1 */
    struct mail_op mk = {
        .type = TDM_REC_MAILBOX_CREATE, .mailbox = "alice", .uidvalidity = 1700000000};
    if (store_commit_op(active, &mk, NULL, NULL, &err) != 0)
        return -1;
    static char body[12000];
    for (uint32_t i = 0; i < 160; i++) {
        size_t len = 60 + (size_t)(i * 7919u % 6000u);
        memset(body, 'a' + (int)(i % 26), len);
        struct mail_target t = {.mailbox = "alice", .folder = "INBOX"};
        struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = &t,
                             .n_targets = 1,
                             .internal_date = 1700000000 + i,
                             .body = body,
                             .body_len = len};
        memcpy(op.guid, &i, sizeof(i));
        if (store_commit_op(active, &op, NULL, NULL, &err) != 0)
            return -1;
        if (i % 7 == 6) {
            uint32_t uid = i / 2 + 1;
            struct mail_op fl = {.type = TDM_REC_MESSAGE_FLAGS,
                                 .mailbox = "alice",
                                 .folder = "INBOX",
                                 .flag_mode = MAIL_FLAGS_ADD,
                                 .flags = MAIL_FLAG_FLAGGED,
                                 .uids = &uid,
                                 .n_uids = 1};
            if (store_commit_op(active, &fl, NULL, NULL, &err) != 0)
                return -1;
        }
        if (i % 40 == 39 && store_roll(active) != 0)
            return -1;
    }
    return 0;
}

/* [0, durable_end) of an active generation (malloc'd), or NULL when there is none. */
static uint8_t *
active_bytes(uint64_t gen, struct store_log_extent *ext)
{
    if (store_log_extent(active, gen, ext) != 0)
        return NULL;
    int fd = -1;
    if (store_log_open_generation(active, gen, &fd) != 0)
        return NULL;
    uint8_t *buf = malloc(ext->durable_end);
    if (buf && pread(fd, buf, ext->durable_end, 0) != (ssize_t)ext->durable_end) {
        free(buf);
        buf = NULL;
    }
    close(fd);
    return buf;
}

/* A random frame boundary of buf after from (the end of BEGIN, of a frame, or the end). */
static uint64_t
pick_boundary(const uint8_t *buf, uint64_t end, uint64_t from)
{
    if (rng() % 3 == 0)
        return end;
    uint64_t cand[1024];
    size_t n = 0;
    for (uint64_t off = TDM_LOG_HEADER_SIZE; off < end;) {
        struct log_record rec;
        size_t flen = 0;
        const char *why = NULL;
        if (log_record_decode(buf + off, end - off, &rec, &flen, &why) != 0)
            return end;
        off += flen;
        if (off > from && n < 1024)
            cand[n++] = off;
    }
    return n ? cand[rng() % n] : end;
}

static int
pos_cmp(const struct store_copy_position *a, const struct store_copy_position *b)
{
    /* (g, end of g) and (g + 1, 0) are the same place once g is closed: compare by LSN first,
     * which grows with every record, then by place. */
    if (a->lsn != b->lsn)
        return a->lsn < b->lsn ? -1 : 1;
    if (a->generation != b->generation)
        return a->generation < b->generation ? -1 : 1;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

/*
 * Ships until done or the copy fails. *synced_r: the last durable position a sync returned;
 * *received_r: the position after the last accepted range; *crashed_r: an I/O error (the
 * crash) stopped it. Anything else unexpected is a fail().
 */
static void
ship(struct store_copy *c, struct store_copy_position *synced_r,
     struct store_copy_position *received_r, bool *crashed_r)
{
    *crashed_r = false;
    for (;;) {
        struct store_copy_position pos;
        store_copy_get_position(c, &pos);
        *received_r = pos;
        struct store_log_extent ext;
        uint8_t *buf = active_bytes(pos.generation, &ext);
        if (!buf || pos.offset == ext.durable_end) {
            free(buf);
            break;
        }
        uint64_t to = pick_boundary(buf, ext.durable_end, pos.offset);
        const char *err = NULL;
        if (!store_copy_receive_ready(c, pos.offset)) {
            /* STORE_COPY_MAX_UNNAMED generations wait under temporary names: name them. */
            struct store_copy_position d;
            if (store_copy_sync(c, &d) != 0) {
                free(buf);
                *crashed_r = true;
                return;
            }
            *synced_r = d;
        }
        int ret = store_copy_receive(c, pos.generation, pos.offset, buf + pos.offset,
                                     to - pos.offset, &err);
        free(buf);
        if (ret == 0) {
            store_copy_get_position(c, received_r);
        } else if (ret < 0 && ret > TDM_E_BASE) {
            *crashed_r = true; /* an I/O error: the crash (a sync_later overflow sync) */
            return;
        } else {
            fail("receive at %" PRIu64 ":%" PRIu64 ": %s", pos.generation, pos.offset, err);
            return;
        }
        uint64_t r = rng() % 8;
        if (r < 2) {
            struct store_copy_position d;
            if (store_copy_sync(c, &d) != 0) {
                *crashed_r = true;
                return;
            }
            *synced_r = d;
        } else if (r == 3 && store_copy_replay(c, NULL, NULL) != 0) {
            *crashed_r = true;
            return;
        } else if (r == 4 && store_copy_truncate(c, received_r->generation) != 0) {
            *crashed_r = true;
            return;
        } else if (r == 5) {
            /* The copy agent's sync (store_copy_sync_start/run/end on another thread): more
             * arrives after its fdatasync and before its end, which the durable position it
             * reports must not count. A crash at any later sync then checks that the position
             * reported (what an ACK carries) survived. */
            struct store_copy_sync_job job;
            int sret = store_copy_sync_start(c, &job);
            if (sret < 0) {
                *crashed_r = true;
                return;
            }
            if (sret == 0)
                continue;
            /* Sometimes the job runs after ranges that begin generations (under temporary
             * names, which it must not rename) were received, sometimes before. */
            bool run_first = rng() % 2;
            if (run_first)
                store_copy_sync_run(&job);
            for (int k = 1 + (int)(rng() % 3); k > 0; k--) {
                store_copy_get_position(c, &pos);
                buf = active_bytes(pos.generation, &ext);
                if (!buf || pos.offset >= ext.durable_end ||
                    !store_copy_receive_ready(c, pos.offset)) {
                    free(buf);
                    break;
                }
                to = pick_boundary(buf, ext.durable_end, pos.offset);
                ret = store_copy_receive(c, pos.generation, pos.offset, buf + pos.offset,
                                         to - pos.offset, &err);
                free(buf);
                if (ret == 0) {
                    store_copy_get_position(c, received_r);
                } else {
                    if (!(ret < 0 && ret > TDM_E_BASE))
                        fail("receive at %" PRIu64 ":%" PRIu64 ": %s", pos.generation, pos.offset,
                             err);
                    break;
                }
            }
            if (!run_first)
                store_copy_sync_run(&job);
            struct store_copy_position d;
            if (store_copy_sync_end(c, &job, &d) != 0) {
                *crashed_r = true;
                return;
            }
            *synced_r = d;
        }
    }
    struct store_copy_position d;
    if (store_copy_sync(c, &d) != 0)
        *crashed_r = true;
    else
        *synced_r = d;
}

/* The copy's file of gen holds the active's bytes up to end. */
static bool
same_bytes(uint64_t gen, uint64_t end)
{
    struct store_log_extent ext;
    uint8_t *a = active_bytes(gen, &ext);
    if (!a || end > ext.durable_end) {
        free(a);
        return false;
    }
    char p[400];
    snprintf(p, sizeof(p), "%s/log/%016" PRIx64 ".log", copy_dir, gen);
    int fd = open(p, O_RDONLY);
    uint8_t *b = malloc(end ? end : 1);
    bool same = fd >= 0 && b && pread(fd, b, end, 0) == (ssize_t)end && memcmp(a, b, end) == 0;
    if (fd >= 0)
        close(fd);
    free(a);
    free(b);
    return same;
}

static void
digest(const char *dir, uint8_t out[32])
{
    struct store_verify_options vo = {.tmp_dir = base, .skip_replay = true};
    struct store_verify_report r;
    const char *err = NULL;
    memset(out, 0, 32);
    if (store_verify(dir, &vo, &r, &err) != 0) {
        fail("verify %s: %s", dir, err);
        return;
    }
    if (r.errors)
        fail("verify %s: %zu errors, first: %s", dir, r.errors,
             r.n_problems ? r.problems[0].reason : "-");
    memcpy(out, r.db_digest, 32);
    store_verify_report_clear(&r);
}

/* One schedule: a fresh copy, crashed at sync crash_at (0: never). Returns the syncs seen. */
static uint64_t
run(uint64_t seed, uint64_t crash_at, struct fault_io_stats *stats_r)
{
    scratch_remove(copy_dir);
    struct store_status ast;
    store_get_status(active, &ast);
    const char *err = NULL;
    if (store_copy_create(copy_dir, ast.guid, NULL, 1, &err) != 0) {
        fail("create: %s", err);
        return 0;
    }
    struct fault_io *f = fault_io_new(crash_at, seed * 1000003u + crash_at);
    struct store_options o;
    options(&o);
    o.io = fault_io_ops(f);
    struct store_copy *c = NULL;
    if (store_copy_open(copy_dir, &o, &c, &err) != 0) {
        fail("open: %s", err);
        fault_io_free(&f);
        return 0;
    }
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
    struct store_copy_position synced = {0}, received = {0};
    bool crashed = false;
    ship(c, &synced, &received, &crashed);
    store_copy_close(&c);
    uint64_t syncs = fault_io_syncs(f);
    fault_io_apply_crash(f, stats_r);
    fault_io_free(&f);
    if (fail_msg[0])
        return syncs;
    if (crash_at && !crashed)
        return syncs; /* the crash point lay beyond this run's syncs */

    /* Recovery. */
    options(&o);
    if (store_copy_open(copy_dir, &o, &c, &err) != 0) {
        fail("open after the crash: %s", err);
        return syncs;
    }
    struct store_copy_status st;
    store_copy_get_status(c, &st);
    if (pos_cmp(&st.received, &synced) < 0 || pos_cmp(&st.received, &received) > 0)
        fail("position %" PRIu64 ":%" PRIu64 " (LSN %" PRIu64 ") is not between the synced "
             "%" PRIu64 ":%" PRIu64 " and the received %" PRIu64 ":%" PRIu64,
             st.received.generation, st.received.offset, st.received.lsn, synced.generation,
             synced.offset, received.generation, received.offset);
    if (st.replayed_lsn > st.received.lsn)
        fail("replayed LSN %" PRIu64 " is beyond the log's %" PRIu64, st.replayed_lsn,
             st.received.lsn);
    for (uint64_t g = st.lowest_generation; g && g < st.received.generation; g++) {
        struct store_log_extent ext;
        store_log_extent(active, g, &ext);
        if (!same_bytes(g, ext.durable_end))
            fail("generation %" PRIu64 " differs from the active's", g);
    }
    if (st.received.offset && !same_bytes(st.received.generation, st.received.offset))
        fail("generation %" PRIu64 " up to %" PRIu64 " differs from the active's",
             st.received.generation, st.received.offset);
    /* Temporary generation files (begun before the one before was durable) never outlive
     * recovery. */
    char lp[400];
    snprintf(lp, sizeof(lp), "%s/log", copy_dir);
    DIR *d = opendir(lp);
    for (struct dirent *de; d && (de = readdir(d)) != NULL;) {
        size_t nl = strlen(de->d_name);
        if (nl > 4 && strcmp(de->d_name + nl - 4, ".tmp") == 0)
            fail("%s left after recovery", de->d_name);
    }
    if (d)
        closedir(d);

    /* Resume: everything, then replay, then the same mail. */
    ship(c, &synced, &received, &crashed);
    uint64_t replayed = 0;
    if (!fail_msg[0] && (crashed || store_copy_replay(c, NULL, &replayed) != 0))
        fail("resuming failed");
    else if (!fail_msg[0] && replayed != ast.applied_lsn)
        fail("replayed up to %" PRIu64 ", the active applied %" PRIu64, replayed, ast.applied_lsn);
    if (store_copy_close(&c) != 0)
        fail("close after resuming failed");
    if (!fail_msg[0]) {
        uint8_t b[32];
        digest(copy_dir, b);
        if (!fail_msg[0] && memcmp(active_digest, b, 32) != 0)
            fail("the copy's mail differs from the active's");
    }
    return syncs;
}

int
main(void)
{
    event_set_sink(NULL);
    if (scratch_make(base, sizeof(base), "copy-crash") != 0)
        return 1;
    snprintf(active_dir, sizeof(active_dir), "%s/active", base);
    snprintf(copy_dir, sizeof(copy_dir), "%s/copy", base);
    if (make_active() != 0)
        return 1;
    /* The active's digest needs it closed (LMDB must not be opened twice in one process);
     * reopened, it ships the same log (its last generation closed by the clean shutdown). */
    struct store_options o;
    options(&o);
    const char *err = NULL;
    if (store_close(&active) != 0)
        return 1;
    digest(active_dir, active_digest);
    if (fail_msg[0] || store_open(active_dir, &o, &active, &err) != 0) {
        printf("cannot reopen the active: %s %s\n", fail_msg, err ? err : "");
        return 1;
    }
    store_set_truncation_floor(active, 1);
    uint64_t seeds = 4;
    const char *v = getenv("COPY_CRASH_SEEDS");
    if (v)
        seeds = strtoull(v, NULL, 10);
    int passed = 0;
    uint64_t kinds[FAULT_IO_SYNC_KINDS] = {0}, torn = 0, dropped = 0;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct fault_io_stats stats;
        fail_msg[0] = '\0';
        uint64_t total = run(seed, 0, &stats);
        if (fail_msg[0]) {
            printf("FAIL seed %" PRIu64 " without a crash: %s\n", seed, fail_msg);
            failures++;
            continue;
        }
        passed++;
        for (uint64_t at = 1; at <= total; at++) {
            fail_msg[0] = '\0';
            run(seed, at, &stats);
            if (fail_msg[0]) {
                printf("FAIL seed %" PRIu64 " crash at sync %" PRIu64 " (%s): %s\n", seed, at,
                       fault_io_sync_kind_name(stats.crash_kind), fail_msg);
                failures++;
            } else {
                passed++;
            }
            kinds[stats.crash_kind]++;
            torn += stats.torn;
            dropped += stats.dropped;
        }
    }
    printf("crash kinds:");
    for (unsigned k = 1; k < FAULT_IO_SYNC_KINDS; k++)
        if (kinds[k])
            printf(" %s %" PRIu64, fault_io_sync_kind_name(k), kinds[k]);
    printf("; writes torn %" PRIu64 ", dropped %" PRIu64 "\n", torn, dropped);
    printf("%d schedules passed, %d failed\n", passed, failures);
    store_close(&active);
    if (failures == 0)
        scratch_remove(base);
    else
        printf("kept %s\n", base);
    return failures ? 1 : 0;
}

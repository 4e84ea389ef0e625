/*
 * Recycled generation files (store_hk.c, log_scan.c, docs/formats/log.md): truncation renames
 * a generation whole to a spare number, its old header and frames still in it. These cases
 * check what a crash can leave around such files:
 *
 *   reuse    records written into recycled files replay after a process crash, and the stale
 *            bytes after the records are zeroed at recovery;
 *   stale    a stale frame carrying exactly the next LSN, after the records of the current
 *            generation, is zeroed by recovery and never read as a record;
 *   torn     a header torn while a roll wrote it over a recycled file, right after a closed
 *            generation, is a spare that was never started: the database mounts and goes on;
 *   damaged  the same header damaged after records went in under it is corruption: refused;
 *   begin-damaged  (log format 3) the BEGIN record damaged after records went in under it is
 *            corruption too: refused;
 *   begin-lost  a batch written into a recycled file after the generation below was closed,
 *            whose first sector (BEGIN and the first record's header) a power loss undid: the
 *            file is a spare, and recovery zeroes the frames of that batch left in it (their
 *            LSNs are given out again);
 *   foreign  a recycled-looking spare from another database is refused, not reused.
 *
 * The fault-injected schedules (crash_schedules.c) crash inside recycling at random; these
 * are the states they reach only rarely. Plain main: "N passed, N failed".
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/log_codec.h"
#include "store/store.h"
#include "store/store_int.h"

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GEN_SIZE (64u * 1024u)
#define PAYLOAD 1000u

static char base[64], db[128], log_dir[160];
static int failures;
static const char *current_case;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s: ", current_case);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = GEN_SIZE;
    o->reserve_bytes = 0;
    o->checkpoint_bytes = UINT64_MAX; /* truncation only where the test asks for it */
    o->checkpoint_ms = 3600000;
}

static struct store *
open_db(int want)
{
    struct store_options o;
    options(&o);
    struct store *s = NULL;
    const char *err = NULL;
    int ret = store_open(db, &o, &s, &err);
    if (ret != want)
        fail("open returned %d (%s), expected %d", ret, err ? err : "-", want);
    if (ret != 0)
        return NULL;
    return s;
}

static uint64_t
commit(struct store *s)
{
    static uint8_t buf[PAYLOAD];
    uint64_t lsn = 0;
    int ret = store_commit(s, TDM_REC_NOOP, buf, sizeof(buf), &lsn, NULL);
    if (ret != 0)
        fail("commit failed: %s", tdm_strerror(ret));
    return lsn;
}

static struct store_status
status(struct store *s)
{
    struct store_status st;
    store_get_status(s, &st);
    return st;
}

static int
scan(uint64_t gen, struct gen_scan *sc)
{
    char p[256];
    const char *why = NULL;
    store__gen_path(p, sizeof(p), log_dir, gen);
    return store__gen_scan(&io_ops_posix, p, NULL, NULL, sc, &why);
}

static void
overwrite(uint64_t gen, off_t off, const void *buf, size_t len)
{
    char p[256];
    store__gen_path(p, sizeof(p), log_dir, gen);
    int fd = open(p, O_WRONLY);
    if (fd < 0 || pwrite(fd, buf, len, off) != (ssize_t)len)
        fail("cannot write %s", p);
    if (fd >= 0)
        close(fd);
}

/*
 * A fresh database whose lowest spare above the current generation is a recycled file (its
 * header names an older generation). Returns that spare's number, or 0. The store is closed
 * cleanly, so the current generation is closed and the next open starts a new one.
 */
static uint64_t
make_recycled(uint64_t *lsn_r)
{
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(base, 0750);
    struct store_options o;
    options(&o);
    const char *err = NULL;
    if (store_create(db, &o, &err) != 0) {
        fail("store_create: %s", err);
        return 0;
    }
    struct store *s = open_db(0);
    if (!s)
        return 0;
    uint64_t lsn = 0;
    while (status(s).current_generation < 5)
        lsn = commit(s);
    int ret = store_checkpoint(s); /* truncates generations 1..4: recycled as spares */
    if (ret != 0)
        fail("checkpoint: %s", tdm_strerror(ret));
    struct store_status st = status(s);
    /* Fill the new spares (blank) until a recycled one is next. */
    uint64_t want = 0;
    for (uint64_t g = st.current_generation + 1; g < st.current_generation + 20 && !want; g++) {
        struct gen_scan sc;
        if (scan(g, &sc) == 0 && !sc.blank_header && !sc.unbegun && sc.hdr.generation < g)
            want = g;
    }
    if (!want) {
        fail("no recycled spare above generation %" PRIu64, st.current_generation);
        store_close(&s);
        return 0;
    }
    while (status(s).current_generation < want - 1)
        lsn = commit(s);
    lsn = commit(s); /* at least one record in want - 1, so the clean close ENDs it */
    if (status(s).current_generation != want - 1)
        fail("generation %" PRIu64 " was skipped", want - 1);
    if (store_close(&s) != 0)
        fail("clean close failed");
    *lsn_r = lsn;
    return want;
}

static int
copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    int ret = in >= 0 && out >= 0 ? 0 : -1;
    static uint8_t buf[1 << 16];
    ssize_t n;
    while (ret == 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            ret = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        ret = -1;
    return ret;
}

/* Commits n records in a child that then dies without closing (a process crash). */
static void
child_commits_then_dies(int n)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct store_options o;
        options(&o);
        struct store *s = NULL;
        const char *err = NULL;
        if (store_open(db, &o, &s, &err) != 0)
            _exit(2);
        static uint8_t buf[PAYLOAD];
        for (int i = 0; i < n; i++)
            if (store_commit(s, TDM_REC_NOOP, buf, sizeof(buf), NULL, NULL) != 0)
                _exit(3);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("child failed (status %d)", st);
}

static void
case_reuse(void)
{
    current_case = "reuse";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    child_commits_then_dies(10); /* generation r is current, its tail stale */
    struct gen_scan sc;
    if (scan(r, &sc) != 0 || sc.hdr.generation != r || sc.records != 10 ||
        sc.end != GEN_SCAN_ZERO_FILL || !sc.tail_dirty)
        fail("generation %" PRIu64 " after the crash: not 10 records over stale bytes", r);
    struct store *s = open_db(0);
    if (!s)
        return;
    if (status(s).applied_lsn != lsn + 10)
        fail("applied %" PRIu64 ", expected %" PRIu64, status(s).applied_lsn, lsn + 10);
    if (scan(r, &sc) != 0 || sc.records != 10 || sc.tail_dirty)
        fail("recovery did not zero the stale bytes after the records");
    if (commit(s) != lsn + 11)
        fail("the next commit did not continue the LSNs");
    store_close(&s);
}

static void
case_stale_next_lsn(void)
{
    current_case = "stale";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    child_commits_then_dies(3);
    struct gen_scan sc;
    if (scan(r, &sc) != 0 || sc.end != GEN_SCAN_ZERO_FILL) {
        fail("generation %" PRIu64 " did not scan", r);
        return;
    }
    /* A valid frame with the LSN after the next one, where the next record's successor will
     * sit: had recovery left it, a later crash that lost only the end marker after the next
     * record would have made it a record. */
    static uint8_t payload[PAYLOAD];
    size_t flen = log_frame_size(PAYLOAD);
    uint8_t *frame = malloc(flen);
    if (!frame)
        abort();
    log_record_encode(sc.last_lsn + 2, sc.hdr.epoch, TDM_REC_NOOP, payload, PAYLOAD, frame);
    overwrite(r, (off_t)(sc.valid_end + flen), frame, flen);
    free(frame);
    struct store *s = open_db(0);
    if (!s)
        return;
    if (status(s).applied_lsn != lsn + 3)
        fail("applied %" PRIu64 ", expected %" PRIu64, status(s).applied_lsn, lsn + 3);
    if (scan(r, &sc) != 0 || sc.tail_dirty)
        fail("the planted frame survived recovery");
    store_close(&s);
}

static void
case_torn_header(void)
{
    current_case = "torn";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    uint8_t junk[50];
    memset(junk, 0x33, sizeof(junk));
    overwrite(r, 0, junk, sizeof(junk)); /* the roll's header write, cut short */
    struct store *s = open_db(0);
    if (!s)
        return;
    struct store_status st = status(s);
    if (st.current_generation != r || st.applied_lsn != lsn)
        fail("mounted at generation %" PRIu64 " LSN %" PRIu64 ", expected %" PRIu64 " and %" PRIu64,
             st.current_generation, st.applied_lsn, r, lsn);
    if (commit(s) != lsn + 1)
        fail("the next commit did not continue the LSNs");
    store_close(&s);
    s = open_db(0);
    if (s && status(s).applied_lsn != lsn + 1)
        fail("the record written after the torn header did not survive a remount");
    store_close(&s);
}

static void
case_damaged_header(void)
{
    current_case = "damaged";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    /* Acknowledged records under generation r's header, then a power loss: LMDB, which
     * does not sync between checkpoints, goes back to what the clean close synced, so only
     * the log can tell that records are missing. */
    char mdb[256], snap[256];
    snprintf(mdb, sizeof(mdb), "%s/store/data.mdb", db);
    snprintf(snap, sizeof(snap), "%s/data.mdb.snap", base);
    if (copy_file(mdb, snap) != 0)
        fail("cannot copy %s", mdb);
    child_commits_then_dies(5);
    if (copy_file(snap, mdb) != 0)
        fail("cannot restore %s", mdb);
    uint8_t junk[50];
    memset(junk, 0x33, sizeof(junk));
    overwrite(r, 0, junk, sizeof(junk));
    struct store *s = open_db(TDM_ECORRUPT);
    store_close(&s);
}

/* The data.mdb of the clean close, put back after a child's commits: LMDB, which does not sync
 * between checkpoints, lost them in a power loss, so only the log can say what happened. */
static void
child_commits_then_power_loss(int n, const char *snap)
{
    char mdb[256];
    snprintf(mdb, sizeof(mdb), "%s/store/data.mdb", db);
    if (copy_file(mdb, snap) != 0)
        fail("cannot copy %s", mdb);
    child_commits_then_dies(n);
    if (copy_file(snap, mdb) != 0)
        fail("cannot restore %s", mdb);
}

static void
case_begin_damaged(void)
{
    current_case = "begin-damaged";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    char snap[256];
    snprintf(snap, sizeof(snap), "%s/data.mdb.snap", base);
    child_commits_then_power_loss(5, snap);
    uint8_t junk[TDM_LOG_BEGIN_FRAME];
    memset(junk, 0x33, sizeof(junk));
    overwrite(r, TDM_LOG_HEADER_SIZE, junk, sizeof(junk)); /* BEGIN only: the records stay */
    struct store *s = open_db(TDM_ECORRUPT);
    store_close(&s);
}

static void
case_begin_lost(void)
{
    current_case = "begin-lost";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    /* The mount before the lost batch was not clean either: a crash, not a shutdown. */
    child_commits_then_dies(0);
    char snap[256];
    snprintf(snap, sizeof(snap), "%s/data.mdb.snap", base);
    child_commits_then_power_loss(5, snap);
    /* The power loss lost the batch's first sector (BEGIN and the first record's header):
     * other bytes are there, the rest of the batch stayed. */
    struct gen_scan sc;
    if (scan(r, &sc) != 0 || sc.hdr.generation != r || sc.records != 5) {
        fail("generation %" PRIu64 " does not hold the batch", r);
        return;
    }
    uint8_t junk[512];
    memset(junk, 0x33, sizeof(junk));
    overwrite(r, TDM_LOG_HEADER_SIZE, junk, sizeof(junk));
    struct store *s = open_db(0);
    if (!s)
        return;
    struct store_status st = status(s);
    if (st.applied_lsn != lsn || st.current_generation != r)
        fail("mounted at generation %" PRIu64 " LSN %" PRIu64 ", expected %" PRIu64 " and %" PRIu64,
             st.current_generation, st.applied_lsn, r, lsn);
    if (scan(r, &sc) != 0 || !sc.unbegun || sc.tail_dirty)
        fail("the lost batch's frames were left in spare %" PRIu64, r);
    if (commit(s) != lsn + 1)
        fail("the next commit did not continue the LSNs");
    store_close(&s);
}

static void
case_foreign_spare(void)
{
    current_case = "foreign";
    uint64_t lsn = 0, r = make_recycled(&lsn);
    if (!r)
        return;
    struct gen_scan sc;
    if (scan(r, &sc) != 0) {
        fail("spare %" PRIu64 " did not scan", r);
        return;
    }
    uint8_t hdr[TDM_LOG_HEADER_USED];
    sc.hdr.guid[0] ^= 0xff;
    log_header_encode(&sc.hdr, hdr);
    overwrite(r, 0, hdr, sizeof(hdr));
    struct store *s = open_db(TDM_EFOREIGN);
    store_close(&s);
}

int
main(void)
{
    snprintf(base, sizeof(base), "/tmp/tdm-recycle-XXXXXX");
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(db, sizeof(db), "%s/db", base);
    snprintf(log_dir, sizeof(log_dir), "%s/log", db);
    event_set_sink(NULL);
    void (*cases[])(void) = {case_reuse,          case_stale_next_lsn, case_torn_header,
                             case_damaged_header, case_begin_damaged,  case_begin_lost,
                             case_foreign_spare};
    size_t n = sizeof(cases) / sizeof(cases[0]);
    for (size_t i = 0; i < n; i++)
        cases[i]();
    nftw(base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%zu cases, %d failures\n", n, failures);
    return failures != 0;
}

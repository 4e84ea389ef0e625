/*
 * Regression test for a race found by crash_schedules: while the log thread started the
 * preallocated next generation (store__gen_open_next: header write + fdatasync), the
 * housekeeping thread saw "no next generation ready" for the old current generation and
 * created that same file again with O_TRUNC, wiping the header the log thread had just
 * written. Records then went into a file whose header was zero, and the next mount refused
 * the database ("header was never written but the file holds data").
 *
 * Since log format version 3 a generation starts with the write of its BEGIN record and first
 * records (at TDM_LOG_HEADER_SIZE) into a spare whose header housekeeping wrote when it made
 * it; the window is the same. The test makes the first sync of generation 2 (which covers its
 * BEGIN) slow (longer than the housekeeping thread's longest sleep, 1 s), so the window is
 * always open, then checks that the database reopens with every record. Plain main: "N
 * passed, N failed".
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"
#include "tandem/log_format.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct slow_io {
    struct io_ops ops;
    pthread_mutex_t lock;
    int begin_fd; /* fd whose last write started a generation (BEGIN), or -1 */
    int slowed;
};

static ssize_t
slow_pwrite(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off)
{
    struct slow_io *s = io->ctx;
    pthread_mutex_lock(&s->lock);
    /* BEGIN goes in one write with the first records; the mark stays until their sync. */
    if (off == TDM_LOG_HEADER_SIZE)
        s->begin_fd = fd;
    pthread_mutex_unlock(&s->lock);
    return io_ops_posix.pwrite(io, fd, buf, len, off);
}

static int
slow_fdatasync(const struct io_ops *io, int fd)
{
    struct slow_io *s = io->ctx;
    pthread_mutex_lock(&s->lock);
    /* The first BEGIN written after the store is open is generation 2's (store_roll). */
    bool slow = s->begin_fd == fd && s->slowed++ == 0;
    if (s->begin_fd == fd)
        s->begin_fd = -1;
    pthread_mutex_unlock(&s->lock);
    if (slow)
        usleep(1500 * 1000);
    return io_ops_posix.fdatasync(io, fd);
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

static int failures;

static void
check(bool ok, const char *what)
{
    if (!ok) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

int
main(void)
{
    char dir[] = "/tmp/tdm-roll-race-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char db[64];
    snprintf(db, sizeof(db), "%s/db", dir);
    event_set_sink(NULL);

    struct store_options o;
    store_options_init(&o);
    o.generation_size = 64 * 1024;
    o.reserve_bytes = 0;
    const char *err = NULL;
    int ret = store_create(db, &o, &err);
    check(ret == 0, "create");

    struct slow_io sio = {.begin_fd = -1};
    pthread_mutex_init(&sio.lock, NULL);
    sio.ops = io_ops_posix;
    sio.ops.pwrite = slow_pwrite;
    sio.ops.fdatasync = slow_fdatasync;
    sio.ops.ctx = &sio;
    o.io = &sio.ops;
    struct store *s = NULL;
    ret = store_open(db, &o, &s, &err);
    check(ret == 0, "open");
    if (ret == 0) {
        check(store_commit(s, TDM_REC_NOOP, "a", 1, NULL, NULL) == 0, "commit before roll");
        check(store_roll(s) == 0, "roll");
        for (int i = 0; i < 5; i++)
            check(store_commit(s, TDM_REC_NOOP, "bcd", 3, NULL, NULL) == 0, "commit after roll");
        check(sio.slowed > 0, "the first sync of generation 2 was slowed");
        check(store_close(&s) == 0, "close");
    }

    o.io = &io_ops_posix;
    ret = store_open(db, &o, &s, &err);
    if (ret != 0)
        printf("reopen: %s: %s\n", tdm_strerror(ret), err ? err : "-");
    check(ret == 0, "reopen after the roll");
    if (ret == 0) {
        struct store_status st;
        store_get_status(s, &st);
        check(st.applied_lsn == 6, "every record is there");
        check(store_close(&s) == 0, "second close");
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&sio.lock);
    printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures ? 1 : 0;
}

/*
 * Regression test for a crash found by crash_schedules (seed 918): a record larger than a
 * generation gets a generation of its own, grown with allocate() beyond the preallocated size.
 * store__gen_open_next() then wrote the header, which recorded that larger size, and one
 * fdatasync made the growth, the header (and, since rolls sync the header with the first
 * records, the record) durable together. A power loss during that sync may keep the header block
 * but not the size change; recovery then refused the database ("file is 65536 bytes, shorter than
 * the 98304 its header says") although nothing acknowledged was lost.
 *
 * Since log format version 3 the size is in the generation's BEGIN record, written at
 * TDM_LOG_HEADER_SIZE with the first records; the rule is the same: the growth must be durable
 * before the sync that carries BEGIN. The io here plays that power loss exactly: at the first
 * fdatasync after the BEGIN write on a grown file, a growth not yet synced is undone (ftruncate
 * back), BEGIN stays, and every later call fails. The database must reopen with every
 * acknowledged record.
 * Plain main: "N passed, N failed".
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"
#include "tandem/log_format.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FD 1024

struct lossy_io {
    struct io_ops ops;
    pthread_mutex_t lock;
    off_t grown_from[MAX_FD];   /* size before an unsynced allocate() growth, or -1 */
    bool grown[MAX_FD];         /* allocate() grew the file since it was opened */
    bool begin_written[MAX_FD]; /* a write at TDM_LOG_HEADER_SIZE: a generation's BEGIN */
    bool crashed;
};

static bool
fd_ok(int fd)
{
    return fd >= 0 && fd < MAX_FD;
}

static int
lossy_open(const struct io_ops *io, const char *path, int flags, mode_t mode)
{
    struct lossy_io *l = io->ctx;
    pthread_mutex_lock(&l->lock);
    int fd = l->crashed ? -EIO : io_ops_posix.open(io, path, flags, mode);
    if (fd_ok(fd)) {
        l->grown_from[fd] = -1;
        l->grown[fd] = false;
        l->begin_written[fd] = false;
    }
    pthread_mutex_unlock(&l->lock);
    return fd;
}

static ssize_t
lossy_pwrite(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off)
{
    struct lossy_io *l = io->ctx;
    pthread_mutex_lock(&l->lock);
    ssize_t ret = l->crashed ? -EIO : io_ops_posix.pwrite(io, fd, buf, len, off);
    if (ret > 0 && fd_ok(fd) && off == TDM_LOG_HEADER_SIZE)
        l->begin_written[fd] = true;
    pthread_mutex_unlock(&l->lock);
    return ret;
}

static int
lossy_allocate(const struct io_ops *io, int fd, off_t len)
{
    struct lossy_io *l = io->ctx;
    pthread_mutex_lock(&l->lock);
    int ret = l->crashed ? -EIO : 0;
    off_t size = 0;
    if (ret == 0)
        ret = io_ops_posix.file_size(io, fd, &size);
    if (ret == 0)
        ret = io_ops_posix.allocate(io, fd, len);
    if (ret == 0 && fd_ok(fd) && len > size) {
        l->grown[fd] = true;
        if (l->grown_from[fd] < 0)
            l->grown_from[fd] = size;
    }
    pthread_mutex_unlock(&l->lock);
    return ret;
}

static int
lossy_fdatasync(const struct io_ops *io, int fd)
{
    struct lossy_io *l = io->ctx;
    pthread_mutex_lock(&l->lock);
    int ret = l->crashed ? -EIO : 0;
    if (ret == 0 && fd_ok(fd) && l->begin_written[fd] && l->grown[fd]) {
        /* Power lost during the first sync of a grown generation: its BEGIN made it, a growth
         * not synced before it did not. */
        if (l->grown_from[fd] >= 0 && ftruncate(fd, l->grown_from[fd]) < 0)
            perror("ftruncate");
        l->crashed = true;
        ret = -EIO;
    }
    if (ret == 0 && fd_ok(fd)) {
        l->grown_from[fd] = -1;
        l->begin_written[fd] = false;
    }
    pthread_mutex_unlock(&l->lock);
    return ret;
}

static int
lossy_sync_dir(const struct io_ops *io, const char *dir)
{
    (void)dir; /* durability of entries is not what this test is about */
    struct lossy_io *l = io->ctx;
    pthread_mutex_lock(&l->lock);
    int ret = l->crashed ? -EIO : 0;
    pthread_mutex_unlock(&l->lock);
    return ret;
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

int
main(void)
{
    char dir[] = "/tmp/tdm-oversize-crash-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char db[64];
    snprintf(db, sizeof(db), "%s/db", dir);
    event_set_sink(NULL);
    int failed = 0;

    struct store_options o;
    store_options_init(&o);
    o.generation_size = 64 * 1024;
    o.reserve_bytes = 0;
    const char *err = NULL;
    if (store_create(db, &o, &err) != 0) {
        printf("FAIL: create: %s\n", err);
        return 1;
    }

    static struct lossy_io l;
    pthread_mutex_init(&l.lock, NULL);
    for (int i = 0; i < MAX_FD; i++)
        l.grown_from[i] = -1;
    l.ops = io_ops_posix;
    l.ops.open = lossy_open;
    l.ops.pwrite = lossy_pwrite;
    l.ops.allocate = lossy_allocate;
    l.ops.fdatasync = lossy_fdatasync;
    l.ops.sync_dir = lossy_sync_dir;
    l.ops.ctx = &l;
    o.io = &l.ops;
    struct store *s = NULL;
    if (store_open(db, &o, &s, &err) != 0) {
        printf("FAIL: open: %s\n", err);
        return 1;
    }
    int acked = 0;
    for (int i = 0; i < 3; i++)
        acked += store_commit(s, TDM_REC_NOOP, "small", 5, NULL, NULL) == 0;
    /* Larger than a generation: rolls into a generation of its own. The crash hits there. */
    size_t big_len = 80 * 1024;
    char *big = calloc(1, big_len);
    int ret = big ? store_commit(s, TDM_REC_NOOP, big, big_len, NULL, NULL) : -ENOMEM;
    free(big);
    if (ret == 0 || !l.crashed) {
        printf("FAIL: the oversize commit should have met the crash (ret %d)\n", ret);
        failed = 1;
    }
    store_close(&s); /* fails: the disk is gone */

    o.io = &io_ops_posix;
    ret = store_open(db, &o, &s, &err);
    if (ret != 0) {
        printf("FAIL: reopen after the crash: %s (%s)\n", tdm_strerror(ret), err ? err : "-");
        failed = 1;
    } else {
        struct store_status st;
        store_get_status(s, &st);
        /* The oversize record was not acknowledged; it may or may not have made it. */
        if (acked != 3 || st.applied_lsn < 3 || st.applied_lsn > 4) {
            printf("FAIL: recovered LSN %llu, %d acknowledged\n",
                   (unsigned long long)st.applied_lsn, acked);
            failed = 1;
        }
        if (store_commit(s, TDM_REC_NOOP, "after", 5, NULL, NULL) != 0 || store_close(&s) != 0) {
            printf("FAIL: commit and close after recovery\n");
            failed = 1;
        }
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&l.lock);
    printf("%d passed, %d failed\n", !failed, failed);
    return failed;
}

#include "scratch.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
scratch_make(char *buf, size_t size, const char *what)
{
    int n = snprintf(buf, size, "/tmp/tdm-test-%s-XXXXXX", what);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return mkdtemp(buf) ? 0 : -errno;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

int
scratch_remove(const char *dir)
{
    /* Depth first, not following symlinks, so only what the test made is removed. */
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

int
scratch_copy(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        int err = -errno;
        close(in);
        return err;
    }
    char buf[65536];
    int ret = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ret = n < 0 ? -errno : 0;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                ret = -errno;
                break;
            }
            done += w;
        }
        if (ret < 0)
            break;
    }
    close(in);
    if (close(out) < 0 && ret == 0)
        ret = -errno;
    return ret;
}

static int
lmdb_paths(const char *scratch, const char *db_dir, char *saved, char *live, size_t size)
{
    int a = snprintf(saved, size, "%s/saved.mdb", scratch);
    int b = snprintf(live, size, "%s/store/data.mdb", db_dir);
    return a < 0 || b < 0 || (size_t)a >= size || (size_t)b >= size ? -ENAMETOOLONG : 0;
}

int
scratch_lmdb_save(const char *scratch, const char *db_dir)
{
    char saved[4096], live[4096];
    int ret = lmdb_paths(scratch, db_dir, saved, live, sizeof(saved));
    return ret < 0 ? ret : scratch_copy(live, saved);
}

int
scratch_lmdb_restore(const char *scratch, const char *db_dir)
{
    char saved[4096], live[4096];
    int ret = lmdb_paths(scratch, db_dir, saved, live, sizeof(saved));
    return ret < 0 ? ret : scratch_copy(saved, live);
}

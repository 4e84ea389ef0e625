#include "scratch.h"

#include <errno.h>
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

/*
 * tandemctl copy remove (docs/replication.md, "Removing a copy"): stops a copy's agent and
 * deletes the copy's files on this server. Only ever a copy: the directory must still hold
 * copy.conf when it is deleted, so an active (or a copy activated meanwhile) is never touched.
 *
 * The directory is first renamed to a hidden sibling (".removing-<name>", which the core's
 * mount skips, as every name starting with '.') and the rename made durable; only then are its
 * files deleted. A crash in between leaves the hidden directory, never a half-deleted copy
 * that the next start would take for a database; the next removal of a copy of that name
 * deletes it first.
 * Runs on the core's loop: a copy's files are one LMDB file and its log generations.
 */
#include "tandemd/tandemd.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "repl/repl_copy.h"
#include "store/store_copy.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int
unlink_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int ret = type == FTW_DP ? rmdir(path) : unlink(path);
    return ret < 0 && errno != ENOENT ? -errno : 0;
}

static int
fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

int
tandemd__core_copy_remove(const char *name, size_t len)
{
    struct repl_copy_status st;
    const char *dir, *kind, *error;
    bool running;
    char db[TDM_IPC_NAME_MAX + 1];
    if (len >= sizeof(db) ||
        !tandemd__core_copy_find(name, len, &st, &dir, &kind, &error, &running))
        return TDM_ENOTFOUND;
    memcpy(db, name, len);
    db[len] = '\0';
    char path[4096], parent[4096], hidden[4096];
    snprintf(path, sizeof(path), "%s", dir);
    snprintf(parent, sizeof(parent), "%s", dir);
    const char *pdir = dirname(parent); /* in parent, or a static "." */
    snprintf(hidden, sizeof(hidden), "%s/.removing-%s", pdir, db);
    tandemd__core_copy_forget(name, len); /* stops the agent; dir is not valid after this */
    /* Never an active: the marker must still be there now that no agent can change it. */
    if (store_is_copy(path) != 1) {
        log_error("copy %s: %s no longer holds %s; not deleted", db, path, STORE_COPY_MARKER);
        return TDM_EINVAL;
    }
    /* A leftover of an earlier removal cut short goes first. */
    int ret = nftw(hidden, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (ret < 0 && errno != ENOENT)
        ret = -errno;
    else
        ret = 0;
    if (ret == 0 && rename(path, hidden) < 0)
        ret = -errno;
    if (ret == 0)
        ret = fsync_dir(pdir);
    if (ret == 0)
        ret = nftw(hidden, unlink_cb, 16, FTW_DEPTH | FTW_PHYS);
    if (ret == 0)
        ret = fsync_dir(pdir);
    if (ret < 0) {
        event_emit(TDM_EV_REPL_COPY_REMOVE_FAILED, db,
                   "copy %s: its agent is stopped but its files could not all be deleted: %s "
                   "(what is left is %s or %s)",
                   db, tdm_strerror(ret), path, hidden);
        return ret;
    }
    event_emit(TDM_EV_REPL_COPY_REMOVED, db, "copy %s removed: agent stopped, %s deleted", db,
               path);
    return 0;
}

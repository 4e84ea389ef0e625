/*
 * The crash-test disk: see fault_io.h for the model. Notes on what it does and does not model:
 *
 * - Files are tracked by path ("names") bound to "inodes". An inode holds its durable content
 *   and the list of unsynced changes since its last fdatasync. A name holds the inode it is
 *   bound to now and the one it is durably bound to. A file that existed before the layer
 *   first saw it is taken as durable as it is (tests start from a cleanly closed store).
 * - Directory changes are kept per directory, in order, and a crash keeps a prefix of them.
 *   That is what ext4 and XFS give (their journal commits metadata in order); a file system
 *   that reorders directory updates arbitrarily is not modelled. A rename is recorded in the
 *   target's directory only (the store renames within one directory, if at all).
 * - fdatasync makes data and size durable, but not the file's directory entry; that takes
 *   sync_dir of its directory, so a new file whose data was synced may still vanish.
 * - Nothing here calls the real fdatasync or fsync: durability is what this layer says it is,
 *   and the tests run at memory speed.
 * - Files changed behind the layer's back (plain unlink() by the store, the test itself) are
 *   not seen; the store only does that for its disk reserve, which the tests do not check.
 */
#include "fault_io.h"

#include "tandem/log_format.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SECTOR 512u

enum data_kind {
    DATA_WRITE,
    DATA_GROW,     /* allocate: size becomes at least len */
    DATA_SET_SIZE, /* O_TRUNC: size becomes exactly len */
};

struct data_op {
    struct data_op *next;
    enum data_kind kind;
    uint64_t off; /* DATA_WRITE: offset; otherwise the size */
    size_t len;
    uint8_t *data;
};

struct inode {
    struct inode *next_all;
    uint8_t *durable;
    size_t durable_len;
    struct data_op *ops, **ops_tail;
    uint64_t n_ops;
    unsigned last_kind; /* enum fault_io_sync_kind a sync of this file would be */
    bool fresh;         /* created by the layer and never synced */
    uint64_t writes;    /* pwrites so far (a lagging sync waits for the next) */
    /* apply_crash: the post-crash content, computed once */
    bool image_done;
    uint8_t *image;
    size_t image_len;
};

struct name {
    struct name *next;
    char *path;
    char *dir;
    struct inode *cur; /* bound now (NULL: absent) */
    struct inode
        *durable; /* durably bound (NULL: absent after a crash unless a kept op binds it) */
};

enum dir_kind { DIR_CREATE, DIR_UNLINK, DIR_RENAME };

struct dir_op {
    struct dir_op *next;
    enum dir_kind kind;
    struct name *name; /* DIR_RENAME: the target */
    struct name *from; /* DIR_RENAME: the source */
    struct inode *ino; /* DIR_CREATE: the new inode */
    const char *dir;   /* borrowed from the name */
};

struct fault_io {
    struct io_ops ops;
    pthread_mutex_t lock;
    uint64_t rng;
    uint64_t crash_at;
    uint64_t syncs;
    bool crashed;
    bool applied;
    unsigned crash_kind;
    struct name *names;
    struct inode *inodes;
    struct dir_op *dir_ops, **dir_tail;
    struct inode **fds;
    size_t n_fds;
    /* fault_io_set_sync_lag() */
    pthread_cond_t wrote; /* a pwrite happened */
    unsigned lag_one_in, lag_max_us;
    uint64_t lag_rng;
    uint64_t lagged, overlapped;
    bool crash_overlapped;
};

const char *
fault_io_sync_kind_name(unsigned kind)
{
    static const char *const names[FAULT_IO_SYNC_KINDS] = {
        "none",     "data",       "gen-header", "gen-end",    "gen-begin",
        "prealloc", "dir-create", "dir-unlink", "dir-rename", "other",
    };
    return kind < FAULT_IO_SYNC_KINDS ? names[kind] : "?";
}

/* splitmix64: small, good enough, and the same on every platform. */
static uint64_t
rnd(struct fault_io *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
rnd_below(struct fault_io *f, uint64_t n)
{
    return n ? rnd(f) % n : 0;
}

static char *
dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    if (slash)
        memcpy(d, path, n);
    else
        d[0] = '.';
    d[n] = '\0';
    return d;
}

static struct inode *
inode_new(struct fault_io *f)
{
    struct inode *ino = calloc(1, sizeof(*ino));
    if (!ino)
        return NULL;
    ino->ops_tail = &ino->ops;
    ino->next_all = f->inodes;
    f->inodes = ino;
    return ino;
}

/* Reads the whole of path into a new inode: a file that existed before the layer saw it. */
static int
inode_load(struct fault_io *f, const char *path, struct inode **ino_r)
{
    *ino_r = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct inode *ino = inode_new(f);
    if (!ino) {
        close(fd);
        return -ENOMEM;
    }
    ino->durable_len = (size_t)st.st_size;
    ino->durable = malloc(ino->durable_len ? ino->durable_len : 1);
    if (!ino->durable) {
        close(fd);
        return -ENOMEM;
    }
    size_t done = 0;
    while (done < ino->durable_len) {
        ssize_t n = pread(fd, ino->durable + done, ino->durable_len - done, (off_t)done);
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            close(fd);
            return err;
        }
        done += (size_t)n;
    }
    close(fd);
    *ino_r = ino;
    return 0;
}

/* The name for path, created (and its file loaded if it exists) on first sight. */
static int
name_get(struct fault_io *f, const char *path, struct name **name_r)
{
    for (struct name *n = f->names; n; n = n->next)
        if (strcmp(n->path, path) == 0) {
            *name_r = n;
            return 0;
        }
    struct name *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->path = strdup(path);
    n->dir = dir_of(path);
    if (!n->path || !n->dir) {
        free(n->path);
        free(n->dir);
        free(n);
        return -ENOMEM;
    }
    n->next = f->names;
    f->names = n;
    int ret = inode_load(f, path, &n->cur);
    n->durable = n->cur;
    *name_r = n;
    return ret;
}

static int
dir_op_add(struct fault_io *f, enum dir_kind kind, struct name *name, struct name *from,
           struct inode *ino)
{
    struct dir_op *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->kind = kind;
    d->name = name;
    d->from = from;
    d->ino = ino;
    d->dir = name->dir;
    *f->dir_tail = d;
    f->dir_tail = &d->next;
    return 0;
}

static int
data_op_add(struct inode *ino, enum data_kind kind, uint64_t off, const void *data, size_t len)
{
    struct data_op *op = calloc(1, sizeof(*op));
    if (!op)
        return -ENOMEM;
    op->kind = kind;
    op->off = off;
    op->len = len;
    if (kind == DATA_WRITE) {
        op->data = malloc(len ? len : 1);
        if (!op->data) {
            free(op);
            return -ENOMEM;
        }
        memcpy(op->data, data, len);
    }
    *ino->ops_tail = op;
    ino->ops_tail = &op->next;
    ino->n_ops++;
    return 0;
}

static int
fd_set_inode(struct fault_io *f, int fd, struct inode *ino)
{
    if ((size_t)fd >= f->n_fds) {
        size_t n = f->n_fds ? f->n_fds : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct inode **nf = realloc(f->fds, n * sizeof(*nf));
        if (!nf)
            return -ENOMEM;
        memset(nf + f->n_fds, 0, (n - f->n_fds) * sizeof(*nf));
        f->fds = nf;
        f->n_fds = n;
    }
    f->fds[fd] = ino;
    return 0;
}

static struct inode *
fd_inode(struct fault_io *f, int fd)
{
    return fd >= 0 && (size_t)fd < f->n_fds ? f->fds[fd] : NULL;
}

/* ---- sizing buffers for images ---- */

static int
buf_resize(uint8_t **buf, size_t *len, size_t new_len)
{
    if (new_len == *len)
        return 0;
    uint8_t *n = realloc(*buf, new_len ? new_len : 1);
    if (!n)
        return -ENOMEM;
    if (new_len > *len)
        memset(n + *len, 0, new_len - *len);
    *buf = n;
    *len = new_len;
    return 0;
}

static int
buf_write(uint8_t **buf, size_t *len, uint64_t off, const uint8_t *data, size_t n)
{
    if (off + n > *len) {
        int ret = buf_resize(buf, len, (size_t)(off + n));
        if (ret < 0)
            return ret;
    }
    memcpy(*buf + off, data, n);
    return 0;
}

/* Applies op in full to (buf, len). */
static int
data_op_apply(const struct data_op *op, uint8_t **buf, size_t *len)
{
    switch (op->kind) {
    case DATA_WRITE:
        return buf_write(buf, len, op->off, op->data, op->len);
    case DATA_GROW:
        return op->off > *len ? buf_resize(buf, len, (size_t)op->off) : 0;
    case DATA_SET_SIZE:
        return buf_resize(buf, len, (size_t)op->off);
    }
    return -EINVAL;
}

static void
data_ops_free(struct inode *ino)
{
    for (struct data_op *op = ino->ops, *next; op; op = next) {
        next = op->next;
        free(op->data);
        free(op);
    }
    ino->ops = NULL;
    ino->ops_tail = &ino->ops;
    ino->n_ops = 0;
}

/* ---- the io_ops table ---- */

static int
crash_check(struct fault_io *f)
{
    return f->crashed ? -EIO : 0;
}

static int
fio_open(const struct io_ops *io, const char *path, int flags, mode_t mode)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    int ret = crash_check(f);
    struct name *n = NULL;
    if (ret == 0)
        ret = name_get(f, path, &n);
    if (ret < 0)
        goto out;
    bool existed = n->cur != NULL;
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd < 0) {
        ret = -errno;
        goto out;
    }
    if (!existed) {
        /* Created now: empty and not yet in the directory for good. */
        struct inode *ino = inode_new(f);
        ret = ino ? dir_op_add(f, DIR_CREATE, n, NULL, ino) : -ENOMEM;
        if (ret == 0) {
            ino->fresh = true;
            ino->durable = malloc(1);
            n->cur = ino;
            ret = ino->durable ? 0 : -ENOMEM;
        }
    } else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
        ret = data_op_add(n->cur, DATA_SET_SIZE, 0, NULL, 0);
    }
    if (ret == 0)
        ret = fd_set_inode(f, fd, n->cur);
    if (ret < 0)
        close(fd);
    else
        ret = fd;
out:
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int
fio_close(const struct io_ops *io, int fd)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    if (fd_inode(f, fd))
        f->fds[fd] = NULL;
    /* Closed for real even after the crash: the test process lives on. */
    int ret = close(fd) < 0 ? -errno : 0;
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static ssize_t
fio_pread(const struct io_ops *io, int fd, void *buf, size_t len, off_t off)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    ssize_t ret = crash_check(f);
    if (ret == 0) {
        ret = pread(fd, buf, len, off);
        if (ret < 0)
            ret = -errno;
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static unsigned
classify_write(uint64_t off, const uint8_t *buf, size_t len)
{
    if (off == 0)
        return FAULT_IO_SYNC_HEADER;
    /* A generation's first write starts with its BEGIN frame (type at byte 16). */
    if (off == TDM_LOG_HEADER_SIZE && len >= TDM_LOG_BEGIN_FRAME &&
        buf[16] == (TDM_REC_BEGIN & 0xff) && buf[17] == 0)
        return FAULT_IO_SYNC_BEGIN;
    /* The END frame is written on its own; its type field sits at byte 16 of the frame. */
    if (len == TDM_LOG_END_FRAME && buf[16] == (TDM_REC_END & 0xff) && buf[17] == 0)
        return FAULT_IO_SYNC_END;
    return FAULT_IO_SYNC_DATA;
}

static ssize_t
fio_pwrite(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    ssize_t ret = crash_check(f);
    struct inode *ino = fd_inode(f, fd);
    if (ret == 0 && !ino)
        ret = -EBADF;
    if (ret == 0) {
        ret = pwrite(fd, buf, len, off);
        if (ret < 0)
            ret = -errno;
        else if (ret > 0) {
            int r = data_op_add(ino, DATA_WRITE, (uint64_t)off, buf, (size_t)ret);
            if (r < 0)
                ret = r;
            ino->last_kind = classify_write((uint64_t)off, buf, (size_t)ret);
            ino->writes++;
            pthread_cond_broadcast(&f->wrote);
        }
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

/* Counts a sync call; returns -EIO when it is (or comes after) the crash point. */
static int
sync_point(struct fault_io *f, unsigned kind)
{
    if (f->crashed)
        return -EIO;
    f->syncs++;
    if (f->crash_at && f->syncs >= f->crash_at) {
        f->crashed = true;
        f->crash_kind = kind;
        return -EIO;
    }
    return 0;
}

/*
 * fault_io_set_sync_lag(): holds a chosen fdatasync of ino, before it takes effect, until the
 * next write to the same file or the time limit (lock held; released while waiting). Returns
 * true when a write came: the sync then covers a write made after it was called, as a real
 * one may (or may not) when another thread writes during it.
 */
static bool
sync_lag(struct fault_io *f, struct inode *ino)
{
    if (!f->lag_one_in || f->crashed)
        return false;
    f->lag_rng = f->lag_rng * 6364136223846793005ull + 1442695040888963407ull;
    if ((f->lag_rng >> 33) % f->lag_one_in != 0)
        return false;
    f->lagged++;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)f->lag_max_us * 1000;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    uint64_t w0 = ino->writes;
    while (ino->writes == w0 && !f->crashed)
        if (pthread_cond_timedwait(&f->wrote, &f->lock, &deadline) != 0)
            break;
    bool came = ino->writes != w0;
    f->overlapped += came;
    return came;
}

static int
fio_fdatasync(const struct io_ops *io, int fd)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    struct inode *ino = fd_inode(f, fd);
    int ret = ino ? 0 : -EBADF;
    if (ret == 0) {
        bool overlapped = sync_lag(f, ino), was_crashed = f->crashed;
        unsigned kind = ino->fresh       ? FAULT_IO_SYNC_PREALLOC
                        : ino->last_kind ? ino->last_kind
                                         : FAULT_IO_SYNC_OTHER;
        ret = sync_point(f, kind);
        if (!was_crashed && f->crashed)
            f->crash_overlapped = overlapped;
    }
    if (ret == 0) {
        for (struct data_op *op = ino->ops; op && ret == 0; op = op->next)
            ret = data_op_apply(op, &ino->durable, &ino->durable_len);
        data_ops_free(ino);
        ino->fresh = false;
        ino->last_kind = 0;
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int
fio_allocate(const struct io_ops *io, int fd, off_t len)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    int ret = crash_check(f);
    struct inode *ino = fd_inode(f, fd);
    if (ret == 0 && !ino)
        ret = -EBADF;
    if (ret == 0)
        ret = -posix_fallocate(fd, 0, len);
    if (ret == 0)
        ret = data_op_add(ino, DATA_GROW, (uint64_t)len, NULL, 0);
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int
fio_file_size(const struct io_ops *io, int fd, off_t *size_r)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    int ret = crash_check(f);
    struct stat st;
    if (ret == 0 && fstat(fd, &st) < 0)
        ret = -errno;
    if (ret == 0)
        *size_r = st.st_size;
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int
fio_unlink(const struct io_ops *io, const char *path)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    int ret = crash_check(f);
    struct name *n = NULL;
    if (ret == 0)
        ret = name_get(f, path, &n);
    if (ret == 0 && unlink(path) < 0)
        ret = -errno;
    if (ret == 0) {
        n->cur = NULL;
        ret = dir_op_add(f, DIR_UNLINK, n, NULL, NULL);
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

static int
fio_rename(const struct io_ops *io, const char *from, const char *to)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    int ret = crash_check(f);
    struct name *nf = NULL, *nt = NULL;
    if (ret == 0)
        ret = name_get(f, from, &nf);
    if (ret == 0)
        ret = name_get(f, to, &nt);
    if (ret == 0 && rename(from, to) < 0)
        ret = -errno;
    if (ret == 0) {
        nt->cur = nf->cur;
        nf->cur = NULL;
        ret = dir_op_add(f, DIR_RENAME, nt, nf, NULL);
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

/* Makes a directory operation durable. */
static void
dir_op_commit(const struct dir_op *d)
{
    switch (d->kind) {
    case DIR_CREATE:
        d->name->durable = d->ino;
        break;
    case DIR_UNLINK:
        d->name->durable = NULL;
        break;
    case DIR_RENAME:
        d->name->durable = d->from->durable;
        d->from->durable = NULL;
        break;
    }
}

static int
fio_sync_dir(const struct io_ops *io, const char *dir)
{
    struct fault_io *f = io->ctx;
    pthread_mutex_lock(&f->lock);
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    unsigned kind = FAULT_IO_SYNC_OTHER;
    for (struct dir_op *d = f->dir_ops; d; d = d->next)
        if (strlen(d->dir) == dlen && memcmp(d->dir, dir, dlen) == 0) {
            if (d->kind == DIR_CREATE)
                kind = FAULT_IO_SYNC_DIR_CREATE;
            else if (d->kind == DIR_RENAME && kind != FAULT_IO_SYNC_DIR_CREATE)
                kind = FAULT_IO_SYNC_DIR_RENAME;
            else if (kind == FAULT_IO_SYNC_OTHER)
                kind = FAULT_IO_SYNC_DIR_UNLINK;
        }
    int ret = sync_point(f, kind);
    if (ret == 0) {
        struct dir_op **pp = &f->dir_ops;
        f->dir_tail = &f->dir_ops;
        while (*pp) {
            struct dir_op *d = *pp;
            if (strlen(d->dir) == dlen && memcmp(d->dir, dir, dlen) == 0) {
                dir_op_commit(d);
                *pp = d->next;
                free(d);
            } else {
                f->dir_tail = &d->next;
                pp = &d->next;
            }
        }
    }
    pthread_mutex_unlock(&f->lock);
    return ret;
}

/* ---- life cycle ---- */

struct fault_io *
fault_io_new(uint64_t crash_at_sync, uint64_t seed)
{
    struct fault_io *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->ops = (struct io_ops){
        .open = fio_open,
        .close = fio_close,
        .pread = fio_pread,
        .pwrite = fio_pwrite,
        .fdatasync = fio_fdatasync,
        .allocate = fio_allocate,
        .file_size = fio_file_size,
        .unlink = fio_unlink,
        .rename = fio_rename,
        .sync_dir = fio_sync_dir,
        .ctx = f,
    };
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wrote, &ca);
    pthread_condattr_destroy(&ca);
    f->rng = seed;
    f->lag_rng = seed ^ 0x2545f4914f6cdd1dull;
    f->crash_at = crash_at_sync;
    f->dir_tail = &f->dir_ops;
    return f;
}

void
fault_io_set_sync_lag(struct fault_io *f, unsigned one_in, unsigned max_us)
{
    pthread_mutex_lock(&f->lock);
    f->lag_one_in = one_in;
    f->lag_max_us = max_us;
    pthread_mutex_unlock(&f->lock);
}

void
fault_io_free(struct fault_io **fp)
{
    struct fault_io *f = *fp;
    if (!f)
        return;
    *fp = NULL;
    for (struct dir_op *d = f->dir_ops, *next; d; d = next) {
        next = d->next;
        free(d);
    }
    for (struct name *n = f->names, *next; n; n = next) {
        next = n->next;
        free(n->path);
        free(n->dir);
        free(n);
    }
    for (struct inode *i = f->inodes, *next; i; i = next) {
        next = i->next_all;
        data_ops_free(i);
        free(i->durable);
        free(i->image);
        free(i);
    }
    free(f->fds);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->wrote);
    free(f);
}

const struct io_ops *
fault_io_ops(struct fault_io *f)
{
    return &f->ops;
}

void
fault_io_set_crash_at(struct fault_io *f, uint64_t n)
{
    pthread_mutex_lock(&f->lock);
    f->crash_at = n;
    pthread_mutex_unlock(&f->lock);
}

uint64_t
fault_io_syncs(struct fault_io *f)
{
    pthread_mutex_lock(&f->lock);
    uint64_t n = f->syncs;
    pthread_mutex_unlock(&f->lock);
    return n;
}

void
fault_io_crash_now(struct fault_io *f)
{
    pthread_mutex_lock(&f->lock);
    if (!f->crashed) {
        f->crashed = true;
        f->crash_kind = FAULT_IO_SYNC_OTHER;
    }
    pthread_mutex_unlock(&f->lock);
}

bool
fault_io_crashed(struct fault_io *f)
{
    pthread_mutex_lock(&f->lock);
    bool c = f->crashed;
    pthread_mutex_unlock(&f->lock);
    return c;
}

/* How one crash treats unsynced writes: the mix is drawn per crash so that some crashes keep
 * nearly everything, some nearly nothing, and some tear a lot. Weights out of 8. */
struct fate_mix {
    unsigned drop, keep; /* the rest tears */
};

enum fate { FATE_DROP, FATE_KEEP, FATE_TEAR };

static enum fate
fate_pick(struct fault_io *f, const struct fate_mix *mix)
{
    unsigned r = (unsigned)rnd_below(f, 8);
    return r < mix->drop ? FATE_DROP : r < mix->drop + mix->keep ? FATE_KEEP : FATE_TEAR;
}

/* Applies part of a write: a prefix of its sectors, a subset of them, or a byte prefix. */
static int
tear_write(struct fault_io *f, const struct data_op *op, uint8_t **buf, size_t *len)
{
    uint64_t end = op->off + op->len;
    uint64_t first = op->off / SECTOR, last = (end - 1) / SECTOR;
    uint64_t n = last - first + 1;
    unsigned how = (unsigned)rnd_below(f, 8);
    if (how == 0) {
        size_t keep = (size_t)rnd_below(f, op->len);
        return buf_write(buf, len, op->off, op->data, keep);
    }
    uint64_t cut = how < 5 ? rnd_below(f, n) : n; /* sectors kept in order (prefix) */
    for (uint64_t s = 0; s < n; s++) {
        bool keep = how < 5 ? s < cut : (rnd(f) & 1) != 0;
        if (!keep)
            continue;
        uint64_t lo = (first + s) * SECTOR, hi = lo + SECTOR;
        if (lo < op->off)
            lo = op->off;
        if (hi > end)
            hi = end;
        int ret = buf_write(buf, len, lo, op->data + (lo - op->off), (size_t)(hi - lo));
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int
inode_image(struct fault_io *f, struct inode *ino, const struct fate_mix *mix,
            struct fault_io_stats *st)
{
    if (ino->image_done)
        return 0;
    ino->image_done = true;
    ino->image_len = ino->durable_len;
    ino->image = malloc(ino->image_len ? ino->image_len : 1);
    if (!ino->image)
        return -ENOMEM;
    memcpy(ino->image, ino->durable, ino->durable_len);
    for (struct data_op *op = ino->ops; op; op = op->next) {
        enum fate fate = fate_pick(f, mix);
        if (op->kind != DATA_WRITE && fate == FATE_TEAR)
            fate = FATE_KEEP; /* a size change is all or nothing */
        st->pending_writes++;
        int ret = 0;
        switch (fate) {
        case FATE_DROP:
            st->dropped++;
            break;
        case FATE_KEEP:
            st->kept++;
            ret = data_op_apply(op, &ino->image, &ino->image_len);
            break;
        case FATE_TEAR:
            st->torn++;
            ret = tear_write(f, op, &ino->image, &ino->image_len);
            break;
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

static int
write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, data + done, len - done, (off_t)done);
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            close(fd);
            return err;
        }
        done += (size_t)n;
    }
    return close(fd) < 0 ? -errno : 0;
}

int
fault_io_apply_crash(struct fault_io *f, struct fault_io_stats *stats_r)
{
    struct fault_io_stats st = {0};
    pthread_mutex_lock(&f->lock);
    if (f->applied) {
        pthread_mutex_unlock(&f->lock);
        return -EINVAL;
    }
    f->applied = true;
    if (!f->crashed) {
        f->crashed = true;
        f->crash_kind = FAULT_IO_SYNC_OTHER;
    }
    st.syncs = f->syncs;
    st.crash_kind = f->crash_kind;
    st.lagged = f->lagged;
    st.overlapped = f->overlapped;
    st.crash_overlapped = f->crash_overlapped;

    /* Directory entries: per directory, a random prefix of the unsynced changes survives. */
    struct dir_count {
        const char *dir;
        uint64_t n, keep;
    } dirs[16];
    size_t n_dirs = 0;
    for (struct dir_op *d = f->dir_ops; d; d = d->next) {
        size_t i;
        for (i = 0; i < n_dirs; i++)
            if (strcmp(dirs[i].dir, d->dir) == 0)
                break;
        if (i == n_dirs) {
            if (n_dirs == sizeof(dirs) / sizeof(dirs[0]))
                continue; /* tests use two directories; more stay unsynced (dropped) */
            dirs[n_dirs++] = (struct dir_count){.dir = d->dir};
        }
        dirs[i].n++;
    }
    for (size_t i = 0; i < n_dirs; i++)
        dirs[i].keep = rnd_below(f, dirs[i].n + 1);
    for (struct dir_op *d = f->dir_ops; d; d = d->next)
        for (size_t i = 0; i < n_dirs; i++)
            if (strcmp(dirs[i].dir, d->dir) == 0 && dirs[i].keep > 0) {
                dirs[i].keep--;
                dir_op_commit(d);
            }

    static const struct fate_mix mixes[] = {
        {.drop = 1, .keep = 6}, {.drop = 6, .keep = 1}, {.drop = 3, .keep = 3},
        {.drop = 2, .keep = 2}, {.drop = 8, .keep = 0}, {.drop = 0, .keep = 8},
    };
    const struct fate_mix *mix = &mixes[rnd_below(f, sizeof(mixes) / sizeof(mixes[0]))];

    int ret = 0;
    for (struct name *n = f->names; n && ret == 0; n = n->next) {
        bool existed = n->cur != NULL;
        if (n->durable) {
            ret = inode_image(f, n->durable, mix, &st);
            if (ret == 0)
                ret = write_file(n->path, n->durable->image, n->durable->image_len);
            if (!existed)
                st.files_restored++;
        } else {
            if (unlink(n->path) < 0 && errno != ENOENT)
                ret = -errno;
            if (existed)
                st.files_vanished++;
        }
    }
    pthread_mutex_unlock(&f->lock);
    if (stats_r)
        *stats_r = st;
    return ret;
}

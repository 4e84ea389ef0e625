#ifndef TANDEM_STORE_IO_OPS_H
#define TANDEM_STORE_IO_OPS_H

/*
 * Every file operation the log makes goes through this table, so crash tests can swap in a
 * layer that holds writes until fdatasync and then drops or tears them (tests/crash/fault_io.c).
 * LMDB does its own I/O; the crash tests model its loss separately (store_options hooks).
 * All functions return 0 (or a byte count / fd) on success and -errno on failure.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct io_ops {
    int (*open)(const struct io_ops *io, const char *path, int flags, mode_t mode);
    int (*close)(const struct io_ops *io, int fd);
    ssize_t (*pread)(const struct io_ops *io, int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off);
    int (*fdatasync)(const struct io_ops *io, int fd);
    /* Extend the file to len bytes of written zeros, so later writes within it neither fail
     * for lack of space nor change file metadata (fdatasync then syncs data only). */
    int (*allocate)(const struct io_ops *io, int fd, off_t len);
    int (*file_size)(const struct io_ops *io, int fd, off_t *size_r);
    int (*unlink)(const struct io_ops *io, const char *path);
    int (*rename)(const struct io_ops *io, const char *from, const char *to);
    /* Make directory entries (creations, renames, unlinks) in dir durable. */
    int (*sync_dir)(const struct io_ops *io, const char *dir);
    void *ctx; /* for the implementation */
};

/* Plain POSIX calls. */
extern const struct io_ops io_ops_posix;

/* Writes all len bytes or fails (-errno; -EIO for a short write that made no progress). */
int io_pwrite_all(const struct io_ops *io, int fd, const void *buf, size_t len, off_t off);
/* Reads up to len bytes; returns the count read (short only at end of file) or -errno. */
ssize_t io_pread_all(const struct io_ops *io, int fd, void *buf, size_t len, off_t off);

#endif

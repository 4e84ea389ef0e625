/*
 * Generation files on disk: naming, listing, and a validating scan of one file.
 * The scan reports what it found (closed by END, zero fill, or an invalid frame at an
 * offset); whether an invalid frame is a torn tail to cut or corruption to refuse is the
 * caller's decision, because it depends on which generation this is and on what LMDB holds.
 */
#include "store/store_int.h"

#include "lib/crc32c.h"
#include "lib/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
store__errorf(const char *fmt, ...)
{
    static _Thread_local char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return buf;
}

void
store__gen_path(char *buf, size_t size, const char *log_dir, uint64_t gen)
{
    snprintf(buf, size, "%s/%016" PRIx64 ".log", log_dir, gen);
}

int
store__gen_parse_name(const char *name, uint64_t *gen_r)
{
    if (strlen(name) != 20 || strcmp(name + 16, ".log") != 0)
        return -1;
    uint64_t g = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            return -1;
        g = (g << 4) | (uint64_t)v;
    }
    if (g == 0)
        return -1;
    *gen_r = g;
    return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int
store__gen_list(const char *log_dir, uint64_t **gens_r, size_t *n_r)
{
    DIR *d = opendir(log_dir);
    if (!d)
        return -errno;
    uint64_t *gens = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t g;
        if (store__gen_parse_name(de->d_name, &g) < 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint64_t *ng = realloc(gens, ncap * sizeof(*ng));
            if (!ng) {
                free(gens);
                closedir(d);
                return -ENOMEM;
            }
            gens = ng;
            cap = ncap;
        }
        gens[n++] = g;
    }
    closedir(d);
    if (n > 1)
        qsort(gens, n, sizeof(*gens), cmp_u64);
    *gens_r = gens;
    *n_r = n;
    return 0;
}

static bool
all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static int
scan_frames(const uint8_t *buf, size_t size, gen_record_cb *cb, void *ctx, struct gen_scan *s)
{
    size_t off = TDM_LOG_HEADER_SIZE;
    uint64_t expected_lsn = s->hdr.first_lsn;

    s->end = GEN_SCAN_ZERO_FILL;
    s->last_lsn = s->hdr.first_lsn - 1;
    s->valid_end = off;
    while (off < size) {
        struct log_record rec;
        size_t flen = 0;
        const char *why = NULL;
        int rc = log_record_decode(buf + off, size - off, &rec, &flen, &why);
        if (rc == 1) {
            if (!all_zero(buf + off, size - off)) {
                s->end = GEN_SCAN_INVALID;
                s->bad_offset = off;
                s->bad_reason = "non-zero bytes after the end of the records";
            }
            return 0;
        }
        if (rc < 0) {
            s->end = GEN_SCAN_INVALID;
            s->bad_offset = off;
            s->bad_reason = why;
            return 0;
        }
        if (rec.epoch != s->hdr.epoch) {
            s->end = GEN_SCAN_INVALID;
            s->bad_offset = off;
            s->bad_reason = "record epoch differs from the generation's epoch";
            return 0;
        }
        if (rec.type == TDM_REC_END) {
            struct log_end end;
            uint64_t want_lsn = s->records ? s->last_lsn : 0;
            if (log_end_decode(rec.payload, rec.length, &end) < 0 || rec.lsn != want_lsn ||
                end.record_count != s->records || end.gen_checksum != s->checksum) {
                s->end = GEN_SCAN_INVALID;
                s->bad_offset = off;
                s->bad_reason = "END record does not match the generation's records";
                return 0;
            }
            if (!all_zero(buf + off + flen, size - off - flen)) {
                s->end = GEN_SCAN_INVALID;
                s->bad_offset = off + flen;
                s->bad_reason = "non-zero bytes after the END record";
                return 0;
            }
            s->end = GEN_SCAN_END_RECORD;
            s->end_rec = end;
            return 0;
        }
        if (rec.lsn != expected_lsn) {
            s->end = GEN_SCAN_INVALID;
            s->bad_offset = off;
            s->bad_reason = "record LSN out of sequence";
            return 0;
        }
        if (cb) {
            int ret = cb(ctx, &rec);
            if (ret != 0)
                return ret;
        }
        s->checksum = crc32c(s->checksum, buf + off, flen);
        s->records++;
        s->last_lsn = rec.lsn;
        expected_lsn++;
        off += flen;
        s->valid_end = off;
    }
    return 0;
}

int
store__gen_scan(const struct io_ops *io, const char *path, gen_record_cb *cb, void *ctx,
                struct gen_scan *scan_r, const char **error_r)
{
    memset(scan_r, 0, sizeof(*scan_r));
    int fd = io->open(io, path, O_RDONLY, 0);
    if (fd < 0) {
        *error_r = store__errorf("cannot open %s: %s", path, strerror(-fd));
        return fd;
    }
    off_t size = 0;
    int ret = io->file_size(io, fd, &size);
    if (ret < 0) {
        io->close(io, fd);
        *error_r = store__errorf("cannot stat %s: %s", path, strerror(-ret));
        return ret;
    }
    if ((uint64_t)size > (uint64_t)TDM_LOG_MAX_GENERATION_SIZE + TDM_LOG_MAX_PAYLOAD) {
        io->close(io, fd);
        *error_r = store__errorf("%s: file is larger than any generation can be", path);
        return TDM_ECORRUPT;
    }
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
        io->close(io, fd);
        return -ENOMEM;
    }
    ssize_t got = io_pread_all(io, fd, buf, (size_t)size, 0);
    io->close(io, fd);
    if (got < 0) {
        free(buf);
        *error_r = store__errorf("cannot read %s: %s", path, strerror((int)-got));
        return (int)got;
    }
    scan_r->file_size = (uint64_t)got;

    size_t n = (size_t)got;
    size_t body = n > TDM_LOG_HEADER_SIZE ? TDM_LOG_HEADER_SIZE : n;
    if (log_header_is_blank(buf, n)) {
        scan_r->blank_header = true;
        scan_r->body_blank = all_zero(buf, n);
        ret = 0;
        if (!scan_r->body_blank) {
            *error_r = store__errorf("%s: header was never written but the file holds data", path);
            ret = TDM_ECORRUPT;
        }
        free(buf);
        return ret;
    }
    const char *why = NULL;
    ret = log_header_decode(buf, n, &scan_r->hdr, &why);
    if (ret < 0) {
        scan_r->header_bad = true;
        scan_r->body_blank = all_zero(buf + body, n - body);
        *error_r = store__errorf("%s: offset 0: bad generation header: %s", path, why);
        free(buf);
        return TDM_ECORRUPT;
    }
    if (scan_r->hdr.file_size > n) {
        *error_r = store__errorf("%s: file is %zu bytes, shorter than the %u its header says", path,
                                 n, scan_r->hdr.file_size);
        free(buf);
        return TDM_ECORRUPT;
    }
    ret = scan_frames(buf, n, cb, ctx, scan_r);
    free(buf);
    return ret;
}

int
store__log_top(const struct io_ops *io, const char *log_dir, const uint64_t *gens, size_t n,
               struct log_top *top_r)
{
    char path[4096];
    memset(top_r, 0, sizeof(*top_r));
    top_r->n_log = n;
    /* Preallocated generations (blank) sit above the current one; generation 1 never is. */
    while (top_r->n_log > 1) {
        struct gen_scan sc;
        const char *why = NULL;
        store__gen_path(path, sizeof(path), log_dir, gens[top_r->n_log - 1]);
        int ret = store__gen_scan(io, path, NULL, NULL, &sc, &why);
        if (ret == -ENOMEM || (ret < 0 && ret != TDM_ECORRUPT))
            return ret;
        if (!((ret == 0 && sc.blank_header) || (ret == TDM_ECORRUPT && sc.body_blank)))
            break;
        if (!top_r->prealloc_upto)
            top_r->prealloc_upto = gens[top_r->n_log - 1];
        top_r->n_log--;
    }
    return 0;
}

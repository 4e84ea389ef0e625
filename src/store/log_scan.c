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

/* Walks the frames from off (just past the header, or past BEGIN) to the end of the records. */
static int
scan_frames(const uint8_t *buf, size_t size, size_t off, gen_record_cb *cb, void *ctx,
            struct gen_scan *s)
{
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
            /* The zero frame header the writer puts after every write of records. What
             * follows is zero fill or, in a recycled file, stale bytes of the generation it
             * was (or of a batch never made durable): the caller zeroes that in the current
             * generation before writing on, so that no stale frame can ever sit right after
             * a record written later (see tail_dirty). */
            s->tail_dirty = !all_zero(buf + off, size - off);
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
            /* Bytes after END mean nothing: zeros, or stale bytes of a recycled file. */
            s->end = GEN_SCAN_END_RECORD;
            s->end_rec = end;
            return 0;
        }
        if (rec.type == TDM_REC_BEGIN) {
            s->end = GEN_SCAN_INVALID;
            s->bad_offset = off;
            s->bad_reason = "BEGIN record after the start of the generation";
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

/*
 * Version 3: the generation's identity, from the BEGIN frame at TDM_LOG_HEADER_SIZE. Returns 0
 * with s->hdr filled and s->checksum started (the generation checksum covers BEGIN); 1 when the
 * file was never begun (a zero frame header there: a spare); TDM_ECORRUPT with begin_bad set
 * when something else is there (a damaged BEGIN, or a first write torn by a crash).
 */
static int
scan_begin(const uint8_t *buf, size_t n, struct gen_scan *s, const char **why_r)
{
    struct log_record rec;
    size_t flen = 0;
    /* A file that ends before a frame header fits after the header is a spare whose
     * preallocation a crash cut short: nothing can have been begun in it. */
    int rc = n >= TDM_LOG_HEADER_SIZE + TDM_LOG_FRAME_HEADER
                 ? log_record_decode(buf + TDM_LOG_HEADER_SIZE, n - TDM_LOG_HEADER_SIZE, &rec,
                                     &flen, why_r)
                 : 1;
    if (rc == 1) {
        s->unbegun = true;
        s->end = GEN_SCAN_ZERO_FILL;
        s->valid_end = TDM_LOG_HEADER_SIZE;
        s->tail_dirty = n > TDM_LOG_HEADER_SIZE &&
                        !all_zero(buf + TDM_LOG_HEADER_SIZE, n - TDM_LOG_HEADER_SIZE);
        return 1;
    }
    if (rc == 0)
        rc = log_begin_decode(&rec, &s->hdr, why_r);
    else if (rc == TDM_ENEEDMORE)
        *why_r = "BEGIN record is cut short";
    if (rc < 0) {
        s->begin_bad = true;
        return TDM_ECORRUPT;
    }
    s->checksum = crc32c(0, buf + TDM_LOG_HEADER_SIZE, flen);
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
    size_t off = TDM_LOG_HEADER_SIZE;
    if (scan_r->hdr.version >= TDM_LOG_VERSION_BEGIN) {
        ret = scan_begin(buf, n, scan_r, &why);
        if (ret == 1) { /* a spare: its header was made ahead, nothing ever began it */
            free(buf);
            return 0;
        }
        if (ret < 0) {
            *error_r = store__errorf("%s: offset %u: bad BEGIN record: %s", path,
                                     TDM_LOG_HEADER_SIZE, why);
            free(buf);
            return TDM_ECORRUPT;
        }
        off += TDM_LOG_BEGIN_FRAME;
    }
    if (scan_r->hdr.file_size > n) {
        *error_r = store__errorf("%s: file is %zu bytes, shorter than the %u its generation was "
                                 "made with",
                                 path, n, scan_r->hdr.file_size);
        free(buf);
        return TDM_ECORRUPT;
    }
    ret = scan_frames(buf, n, off, cb, ctx, scan_r);
    free(buf);
    return ret;
}

/*
 * The LSN of the frame at off in fd (a file of size bytes), if a valid frame other than END
 * decodes there: 0 with *lsn_r, 1 when there is none, -errno.
 */
static int
frame_lsn_at(const struct io_ops *io, int fd, uint64_t size, uint64_t off, uint64_t *lsn_r)
{
    uint8_t head[TDM_LOG_FRAME_HEADER];
    if (size < off + TDM_LOG_FRAME_OVERHEAD)
        return 1;
    ssize_t got = io_pread_all(io, fd, head, sizeof(head), (off_t)off);
    if (got < 0)
        return (int)got;
    uint32_t plen = le_get32(head + 20);
    if (got < (ssize_t)sizeof(head) || plen > TDM_LOG_MAX_PAYLOAD ||
        size < off + log_frame_size(plen))
        return 1;
    size_t flen = log_frame_size(plen);
    uint8_t *frame = malloc(flen);
    if (!frame)
        return -ENOMEM;
    int ret = 1;
    got = io_pread_all(io, fd, frame, flen, (off_t)off);
    if (got < 0) {
        ret = (int)got;
    } else if ((size_t)got == flen) {
        struct log_record rec;
        size_t used = 0;
        const char *why = NULL;
        if (log_record_decode(frame, flen, &rec, &used, &why) == 0 && rec.type != TDM_REC_END &&
            rec.lsn != 0) {
            *lsn_r = rec.lsn;
            ret = 0;
        }
    }
    free(frame);
    return ret;
}

/*
 * Whether path holds frames that continue a log whose next LSN is next_lsn: a frame carrying
 * it where a generation's first frame goes, which is BEGIN (version 3) or the first data record
 * (version 3 after BEGIN, or older versions right after the header). Returns 1 (it does),
 * 0 (it does not) or -errno.
 */
static int
continues_log(const struct io_ops *io, const char *path, uint64_t next_lsn)
{
    int fd = io->open(io, path, O_RDONLY, 0);
    if (fd < 0)
        return fd;
    off_t size = 0;
    int ret = io->file_size(io, fd, &size);
    const uint64_t offs[] = {TDM_LOG_HEADER_SIZE, TDM_LOG_HEADER_SIZE + TDM_LOG_BEGIN_FRAME};
    bool found = false;
    for (size_t i = 0; ret == 0 && !found && i < sizeof(offs) / sizeof(offs[0]); i++) {
        uint64_t lsn = 0;
        int fret = frame_lsn_at(io, fd, (uint64_t)size, offs[i], &lsn);
        if (fret < 0)
            ret = fret;
        else
            found = fret == 0 && lsn == next_lsn;
    }
    io->close(io, fd);
    return ret < 0 ? ret : found;
}

/* What a file above the current generation can be. */
enum spare_kind {
    SPARE_NOT,      /* a generation of the log (the current one, or damage to report) */
    SPARE_BLANK,    /* new, zero-filled; its header never written (or torn while written),
                     * or (version 3) written but no BEGIN after it */
    SPARE_RECYCLED, /* an older generation renamed here whole: its header (BEGIN, version 3)
                     * names that one */
    SPARE_TORN,     /* a header or BEGIN that does not decode over other bytes: a first write
                     * cut short by a crash (a version 2 roll's header, a version 3 BEGIN), or
                     * damage */
};

int
store__log_top(const struct io_ops *io, const char *log_dir, const uint64_t *gens, size_t n,
               struct log_top *top_r)
{
    char path[4096];
    memset(top_r, 0, sizeof(*top_r));
    top_r->n_log = n;
    if (n < 2)
        return 0;
    enum spare_kind *kind = calloc(n, sizeof(*kind));
    uint8_t(*guid)[TDM_LOG_GUID_LEN] = calloc(n, sizeof(*guid));
    bool *named = calloc(n, sizeof(*named));
    int ret = kind && guid && named ? 0 : -ENOMEM;

    /* Spares sit above the current generation, several of them; generation files are
     * contiguous, and the lowest file is always part of the log. */
    size_t cur = n - 1;
    for (; ret == 0 && cur > 0; cur--) {
        struct gen_scan sc;
        const char *why = NULL;
        store__gen_path(path, sizeof(path), log_dir, gens[cur]);
        int sret = store__gen_scan(io, path, NULL, NULL, &sc, &why);
        if (sret == -ENOMEM || (sret < 0 && sret != TDM_ECORRUPT)) {
            ret = sret;
            break;
        }
        if ((sret == 0 && (sc.blank_header || sc.unbegun)) || (sc.header_bad && sc.body_blank))
            kind[cur] = SPARE_BLANK;
        else if (sret == 0 && sc.hdr.generation < gens[cur])
            kind[cur] = SPARE_RECYCLED;
        else if (sc.header_bad || sc.begin_bad)
            kind[cur] = SPARE_TORN;
        else
            break;
        /* A recycled spare, or a version 3 one never begun, names its database. */
        named[cur] = kind[cur] == SPARE_RECYCLED || (sret == 0 && sc.unbegun);
        memcpy(guid[cur], sc.hdr.guid, TDM_LOG_GUID_LEN);
    }
    if (ret < 0)
        goto out;

    /* Judge the spares against the current generation. */
    struct gen_scan cs;
    const char *why = NULL;
    store__gen_path(path, sizeof(path), log_dir, gens[cur]);
    int cret = store__gen_scan(io, path, NULL, NULL, &cs, &why);
    if (cret == -ENOMEM || (cret < 0 && cret != TDM_ECORRUPT)) {
        ret = cret;
        goto out;
    }
    bool cur_ok = cret == 0 && !cs.blank_header && !cs.unbegun;
    size_t top = cur + 1; /* the log is gens[0, top) */
    for (size_t i = cur + 1; i < n; i++) {
        if (named[i] && cur_ok && memcmp(guid[i], cs.hdr.guid, TDM_LOG_GUID_LEN) != 0) {
            top = i + 1; /* another database's file: part of the log, refused as foreign */
            break;
        }
        /* Only the file right after a closed generation can ever have been written as the
         * next one (a roll writes into it after the END before it is durable), so a torn
         * header or BEGIN anywhere else is damage. Right after a closed one, whatever the file
         * looks like: if a frame that continues the log sits where a generation's first frame
         * goes, a generation was begun there and became durable (its header synced before any
         * record in version 2; in version 3 the BEGIN and the first record share the first
         * sector of one write), and has since been damaged: corruption to report, not a
         * spare. Otherwise the first write into it was cut short by a crash, or never made:
         * nothing under it was acknowledged. */
        if (i == cur + 1 && cur_ok && cs.end == GEN_SCAN_END_RECORD) {
            store__gen_path(path, sizeof(path), log_dir, gens[i]);
            int cont = continues_log(io, path, cs.last_lsn + 1);
            if (cont < 0) {
                ret = cont;
                goto out;
            }
            if (cont) {
                top = i + 1;
                break;
            }
        } else if (kind[i] == SPARE_TORN) {
            top = i + 1;
            break;
        }
    }
    top_r->n_log = top;
    if (top < n)
        top_r->prealloc_upto = gens[n - 1];
out:
    free(kind);
    free(guid);
    free(named);
    return ret;
}

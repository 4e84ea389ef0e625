/*
 * The transport dumpster's files (dumpster.h): the entry codec, crash-safe writes, listing,
 * statistics and retention.
 */
#include "smtp/dumpster.h"

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "TDMDMP01"
#define MAGIC_LEN 8u
#define NAME_LEN (16 + 1 + 16 + 4) /* <time>-<random>.msg */
/* A dot-file this old is a crash's leftover, not a write in progress. */
#define STALE_TMP_S 3600

/* ---- Codec ---- */

static void
put_le(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static bool
id_is_zero(const uint8_t *id)
{
    static const uint8_t zero[DUMPSTER_ID_LEN];
    return memcmp(id, zero, DUMPSTER_ID_LEN) == 0;
}

int
dumpster_entry_encode(const struct dumpster_entry *e, uint8_t **buf_r, size_t *len_r)
{
    if (e->n_rcpts == 0 || e->n_rcpts > DUMPSTER_MAX_RCPTS || e->body_len > DUMPSTER_MAX_BODY ||
        strlen(e->sender) > DUMPSTER_ADDR_MAX || (e->body_len > 0 && !e->body))
        return TDM_EINVAL;
    size_t len = MAGIC_LEN + 8 + 1 + 2 + strlen(e->sender) + 1 + 2 + 4 + e->body_len + 4;
    for (size_t i = 0; i < e->n_rcpts; i++) {
        size_t n = strlen(e->rcpts[i].address);
        if (n == 0 || n > DUMPSTER_ADDR_MAX || id_is_zero(e->rcpts[i].id))
            return TDM_EINVAL;
        len += DUMPSTER_ID_LEN + 2 + n + 1;
    }
    uint8_t *buf = malloc(len), *p = buf;
    if (!buf)
        return -ENOMEM;
    memcpy(p, MAGIC, MAGIC_LEN);
    p += MAGIC_LEN;
    put_le(p, (uint64_t)e->time, 8);
    p += 8;
    *p++ = e->body_8bit ? 1 : 0;
    size_t n = strlen(e->sender);
    put_le(p, n, 2);
    memcpy(p + 2, e->sender, n + 1);
    p += 2 + n + 1;
    put_le(p, e->n_rcpts, 2);
    p += 2;
    for (size_t i = 0; i < e->n_rcpts; i++) {
        memcpy(p, e->rcpts[i].id, DUMPSTER_ID_LEN);
        p += DUMPSTER_ID_LEN;
        n = strlen(e->rcpts[i].address);
        put_le(p, n, 2);
        memcpy(p + 2, e->rcpts[i].address, n + 1);
        p += 2 + n + 1;
    }
    put_le(p, e->body_len, 4);
    p += 4;
    if (e->body_len)
        memcpy(p, e->body, e->body_len);
    p += e->body_len;
    put_le(p, crc32c(0, buf, (size_t)(p - buf)), 4);
    p += 4;
    *buf_r = buf;
    *len_r = (size_t)(p - buf);
    return 0;
}

struct reader {
    const uint8_t *p;
    size_t left;
};

static const uint8_t *
take(struct reader *r, size_t n)
{
    if (n > r->left)
        return NULL;
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

/* A str of at most DUMPSTER_ADDR_MAX bytes, borrowed; min is its least length. */
static bool
get_str(struct reader *r, size_t min, const char **s_r, const char **error_r)
{
    const uint8_t *lp = take(r, 2);
    if (!lp)
        return false;
    size_t n = (size_t)get_le(lp, 2);
    if (n < min || n > DUMPSTER_ADDR_MAX) {
        *error_r = "an address is empty or too long";
        return false;
    }
    const uint8_t *s = take(r, n + 1);
    if (!s)
        return false;
    if (s[n] != 0 || memchr(s, 0, n) != NULL) {
        *error_r = "an address is not NUL-terminated or holds a NUL";
        return false;
    }
    *s_r = (const char *)s;
    return true;
}

static bool
decode(struct reader *r, struct dumpster_decoded *d, const char **error_r)
{
    const uint8_t *p = take(r, MAGIC_LEN + 8 + 1);
    if (!p)
        return false;
    if (memcmp(p, MAGIC, MAGIC_LEN) != 0) {
        *error_r = "not a dumpster entry (magic)";
        return false;
    }
    uint64_t t = get_le(p + MAGIC_LEN, 8);
    d->e.time = t <= (uint64_t)INT64_MAX ? (int64_t)t : -(int64_t)(~t) - 1;
    if (p[MAGIC_LEN + 8] > 1) {
        *error_r = "unknown flags";
        return false;
    }
    d->e.body_8bit = p[MAGIC_LEN + 8] == 1;
    if (!get_str(r, 0, &d->e.sender, error_r))
        return false;
    const uint8_t *np = take(r, 2);
    if (!np)
        return false;
    size_t n = (size_t)get_le(np, 2);
    if (n == 0 || n > DUMPSTER_MAX_RCPTS) {
        *error_r = "recipient count out of range";
        return false;
    }
    /* Each recipient takes at least 19 bytes: refuse before allocating for what is not there. */
    if (n * (DUMPSTER_ID_LEN + 3) > r->left)
        return false;
    d->rcpts_storage = calloc(n, sizeof(*d->rcpts_storage));
    if (!d->rcpts_storage) {
        *error_r = "out of memory";
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = take(r, DUMPSTER_ID_LEN);
        if (!id)
            return false;
        if (id_is_zero(id)) {
            *error_r = "a delivery id is all zero";
            return false;
        }
        memcpy(d->rcpts_storage[i].id, id, DUMPSTER_ID_LEN);
        if (!get_str(r, 1, &d->rcpts_storage[i].address, error_r))
            return false;
    }
    d->e.rcpts = d->rcpts_storage;
    d->e.n_rcpts = n;
    const uint8_t *bl = take(r, 4);
    if (!bl)
        return false;
    size_t body_len = (size_t)get_le(bl, 4);
    if (body_len > DUMPSTER_MAX_BODY) {
        *error_r = "body too large";
        return false;
    }
    const uint8_t *body = take(r, body_len);
    if (!body)
        return false;
    d->e.body = body;
    d->e.body_len = body_len;
    return true;
}

int
dumpster_entry_decode(const uint8_t *buf, size_t len, struct dumpster_decoded *d,
                      const char **error_r)
{
    memset(d, 0, sizeof(*d));
    struct reader r = {buf, len};
    const char *why = NULL;
    if (!decode(&r, d, &why)) {
        *error_r = why ? why : "truncated";
        int rc = why && strcmp(why, "out of memory") == 0 ? -ENOMEM : TDM_EINVAL;
        dumpster_decoded_clear(d);
        return rc;
    }
    const uint8_t *cp = take(&r, 4);
    if (!cp || r.left != 0) {
        *error_r = cp ? "trailing bytes after the checksum" : "truncated";
        dumpster_decoded_clear(d);
        return TDM_EINVAL;
    }
    if (get_le(cp, 4) != crc32c(0, buf, len - 4)) {
        *error_r = "checksum mismatch";
        dumpster_decoded_clear(d);
        return TDM_EINVAL;
    }
    return 0;
}

void
dumpster_decoded_clear(struct dumpster_decoded *d)
{
    free(d->rcpts_storage);
    memset(d, 0, sizeof(*d));
}

/* ---- Files ---- */

bool
dumpster_database_ok(const char *database)
{
    /* A path component of our own: no separator, no dot-file (ours are temporary files), no
     * byte a shell or a log would trip over. */
    size_t n = strnlen(database, 256);
    if (n == 0 || n > 255 || database[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)database[i];
        if (c <= ' ' || c >= 0x7f || c == '/')
            return false;
    }
    return true;
}

/* out = a "/" b; false when it does not fit. */
static bool
join(char *out, size_t size, const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na + 1 + nb + 1 > size)
        return false;
    memcpy(out, a, na);
    out[na] = '/';
    memcpy(out + na + 1, b, nb + 1);
    return true;
}

static int
dir_path(char *out, size_t size, const char *datadir, const char *database)
{
    int n = database ? snprintf(out, size, "%s/dumpster/%s", datadir, database)
                     : snprintf(out, size, "%s/dumpster", datadir);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int
mkdir_p(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

static int
fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int
dumpster_put(const char *datadir, const char *database, const struct dumpster_entry *e)
{
    uint8_t *buf;
    size_t len;
    int rc = dumpster_entry_encode(e, &buf, &len);
    if (rc < 0)
        return rc;
    rc = dumpster_put_encoded(datadir, database, e->time, buf, len);
    free(buf);
    return rc;
}

int
dumpster_put_encoded(const char *datadir, const char *database, int64_t time, const uint8_t *buf,
                     size_t len)
{
    if (!dumpster_database_ok(database))
        return TDM_EINVAL;
    char top[4096], dir[4096], tmp[4200], final[4200];
    int rc;
    if ((rc = dir_path(top, sizeof(top), datadir, NULL)) < 0 ||
        (rc = dir_path(dir, sizeof(dir), datadir, database)) < 0)
        return rc;
    bool made_top = access(top, F_OK) != 0, made_dir = access(dir, F_OK) != 0;
    if ((rc = mkdir_p(top)) < 0 || (rc = mkdir_p(dir)) < 0)
        return rc;
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    char name[64];
    /* 16 digits last until the year 316 million. */
    snprintf(name, sizeof(name), "%016" PRId64 "-%02x%02x%02x%02x%02x%02x%02x%02x.msg",
             time < 0 ? (int64_t)0 : time, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6],
             rnd[7]);
    char dotname[65] = ".";
    strcat(dotname, name);
    if (!join(tmp, sizeof(tmp), dir, dotname) || !join(final, sizeof(final), dir, name))
        return -ENAMETOOLONG;

    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, buf, len);
    if (rc == 0 && fdatasync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, final) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    /* The new name, and any directory made for it, must survive a crash too. */
    if ((rc = fsync_path(dir)) < 0 || (made_dir && (rc = fsync_path(top)) < 0) ||
        (made_top && (rc = fsync_path(datadir)) < 0))
        return rc;
    return 0;
}

/* An entry's delivery time from its name; false for anything that is not an entry. */
static bool
entry_time(const char *name, int64_t *time_r)
{
    if (strlen(name) != NAME_LEN || name[16] != '-' || strcmp(name + NAME_LEN - 4, ".msg") != 0)
        return false;
    int64_t t = 0;
    for (int i = 0; i < 16; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        t = t * 10 + (name[i] - '0');
    }
    *time_r = t;
    return true;
}

struct file {
    char *path;
    int64_t time;
    uint64_t size;
};

static int
file_cmp(const void *a, const void *b)
{
    const struct file *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return strcmp(x->path, y->path);
}

/* Every entry of database (or of every database when NULL) at or after since, oldest first.
 * Also removes stale dot-files when prune is set. */
static int
collect(const char *datadir, const char *database, int64_t since, bool prune, int64_t now,
        struct file **files_r, size_t *n_r)
{
    *files_r = NULL;
    *n_r = 0;
    char top[4096];
    int rc = dir_path(top, sizeof(top), datadir, NULL);
    if (rc < 0)
        return rc;
    DIR *td = opendir(top);
    if (!td)
        return errno == ENOENT ? 0 : -errno;
    struct file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(td)) != NULL) {
        if (!dumpster_database_ok(de->d_name) || (database && strcmp(database, de->d_name) != 0))
            continue;
        char dir[4200];
        if (!join(dir, sizeof(dir), top, de->d_name))
            continue;
        DIR *dd = opendir(dir);
        if (!dd)
            continue; /* not a directory, or gone */
        struct dirent *fe;
        while (rc == 0 && (fe = readdir(dd)) != NULL) {
            char path[4500];
            if (!join(path, sizeof(path), dir, fe->d_name))
                continue;
            struct stat st;
            int64_t t;
            if (fe->d_name[0] == '.' && prune && entry_time(fe->d_name + 1, &t) &&
                stat(path, &st) == 0 && st.st_mtime + STALE_TMP_S < now) {
                unlink(path);
                continue;
            }
            if (!entry_time(fe->d_name, &t) || t < since || stat(path, &st) != 0)
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                struct file *f = realloc(files, nc * sizeof(*f));
                if (!f) {
                    rc = -ENOMEM;
                    break;
                }
                files = f;
                cap = nc;
            }
            files[n].path = strdup(path);
            if (!files[n].path) {
                rc = -ENOMEM;
                break;
            }
            files[n].time = t;
            files[n].size = (uint64_t)st.st_size;
            n++;
        }
        closedir(dd);
    }
    closedir(td);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            free(files[i].path);
        free(files);
        return rc;
    }
    if (n > 1)
        qsort(files, n, sizeof(*files), file_cmp);
    *files_r = files;
    *n_r = n;
    return 0;
}

static void
files_free(struct file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].path);
    free(files);
}

int
dumpster_list(const char *datadir, const char *database, int64_t since, char ***paths_r,
              size_t *n_r)
{
    *paths_r = NULL;
    *n_r = 0;
    if (!dumpster_database_ok(database))
        return TDM_EINVAL;
    struct file *files;
    size_t n;
    int rc = collect(datadir, database, since, false, 0, &files, &n);
    if (rc < 0 || n == 0)
        return rc;
    char **paths = calloc(n, sizeof(*paths));
    if (!paths) {
        files_free(files, n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        paths[i] = files[i].path; /* moved */
    free(files);
    *paths_r = paths;
    *n_r = n;
    return 0;
}

int
dumpster_prune(const char *datadir, int64_t now, uint64_t max_age_s, uint64_t max_size,
               unsigned *removed_r)
{
    *removed_r = 0;
    struct file *files;
    size_t n;
    int rc = collect(datadir, NULL, INT64_MIN, true, now, &files, &n);
    if (rc < 0)
        return rc;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += files[i].size;
    /* Oldest first: by age, then by size, the front of the list goes. */
    for (size_t i = 0; i < n; i++) {
        bool too_old = max_age_s > 0 && files[i].time < now - (int64_t)max_age_s;
        bool too_big = max_size > 0 && total > max_size;
        if (!too_old && !too_big)
            break;
        if (unlink(files[i].path) == 0) {
            (*removed_r)++;
            total -= files[i].size;
        } else if (errno != ENOENT) {
            log_warn("dumpster: cannot remove %s: %s", files[i].path, strerror(errno));
        }
    }
    files_free(files, n);
    return 0;
}

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
dumpster_stat(const char *datadir, dumpster_stat_cb *cb, void *ctx)
{
    char top[4096];
    int rc = dir_path(top, sizeof(top), datadir, NULL);
    if (rc < 0)
        return rc;
    DIR *td = opendir(top);
    if (!td)
        return errno == ENOENT ? 0 : -errno;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(td)) != NULL) {
        if (!dumpster_database_ok(de->d_name))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **p = realloc(names, nc * sizeof(*p));
            if (!p) {
                rc = -ENOMEM;
                break;
            }
            names = p;
            cap = nc;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        n++;
    }
    closedir(td);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct file *files;
        size_t nf;
        if ((rc = collect(datadir, names[i], INT64_MIN, false, 0, &files, &nf)) < 0)
            break;
        struct dumpster_db_stat st = {.database = names[i], .count = nf};
        for (size_t k = 0; k < nf; k++)
            st.bytes += files[k].size;
        st.oldest = nf ? files[0].time : 0;
        files_free(files, nf);
        rc = cb(ctx, &st);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

int
dumpster_read(const char *path, uint8_t **buf_r, size_t *len_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    /* The body bound plus every recipient at its largest. */
    size_t max = DUMPSTER_MAX_BODY + (size_t)DUMPSTER_MAX_RCPTS * (DUMPSTER_ID_LEN + 514) + 1024;
    if (st.st_size < 0 || (uint64_t)st.st_size > max) {
        close(fd);
        return TDM_ELIMIT;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rc = r < 0 ? -errno : TDM_ECORRUPT;
            close(fd);
            free(buf);
            return rc;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf_r = buf;
    *len_r = len;
    return 0;
}

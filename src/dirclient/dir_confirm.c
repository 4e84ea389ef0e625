/*
 * Server keys the directory confirmed (dir_confirm.h): the table, its text and its file.
 */
#include "dirclient/dir_confirm.h"

#include "lib/err.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The hash is keyed so that it names its purpose: it is no general hash of a key. */
static const unsigned char hash_key[32] = "tandem server-key confirmation.1";

void
dir_confirm_hash(const char *key, size_t key_len, unsigned char hash[DIR_CONFIRM_HASH_BYTES])
{
    crypto_generichash(hash, DIR_CONFIRM_HASH_BYTES, (const unsigned char *)key, key_len, hash_key,
                       sizeof(hash_key));
}

static struct dir_confirm_entry *
find(const struct dir_confirm *c, const char *server)
{
    for (size_t i = 0; i < DIR_CONFIRM_MAX; i++)
        if (strcmp(c->e[i].server, server) == 0)
            return (struct dir_confirm_entry *)&c->e[i];
    return NULL;
}

/* Ordering by age across both clocks is not possible; the wall time is good enough to pick
 * which entry to give up when all 64 are taken. */
void
dir_confirm_put(struct dir_confirm *c, const char *server,
                const unsigned char hash[DIR_CONFIRM_HASH_BYTES], const struct dir_confirm_now *now)
{
    if (!server[0] || strlen(server) > DIR_NAME_MAX)
        return;
    struct dir_confirm_entry *v = find(c, server);
    if (!v)
        v = find(c, "");
    if (!v) {
        v = &c->e[0];
        for (size_t i = 1; i < DIR_CONFIRM_MAX; i++)
            if (c->e[i].wall_ms < v->wall_ms)
                v = &c->e[i];
    }
    snprintf(v->server, sizeof(v->server), "%s", server);
    memcpy(v->hash, hash, DIR_CONFIRM_HASH_BYTES);
    v->wall_ms = now->wall_ms;
    v->boot_ms = now->boot_ms ? now->boot_ms : 1; /* 0 means "from disk" */
}

bool
dir_confirm_forget(struct dir_confirm *c, const char *server)
{
    struct dir_confirm_entry *v = server[0] ? find(c, server) : NULL;
    if (v)
        memset(v, 0, sizeof(*v));
    return v != NULL;
}

int
dir_confirm_check(const struct dir_confirm *c, const char *server,
                  const unsigned char hash[DIR_CONFIRM_HASH_BYTES],
                  const struct dir_confirm_now *now, uint64_t bound_ms, uint64_t *age_ms_r,
                  const char **why_r)
{
    const struct dir_confirm_entry *v = server[0] ? find(c, server) : NULL;
    uint64_t age;
    if (!v)
        *why_r = "the directory never confirmed this server's key here";
    else if (sodium_memcmp(v->hash, hash, DIR_CONFIRM_HASH_BYTES) != 0)
        *why_r = "the directory last confirmed another key for this server";
    else if (v->boot_ms ? v->boot_ms > now->boot_ms : v->wall_ms > now->wall_ms)
        *why_r = "the directory's confirmation is dated in the future (the clock went back)";
    else if ((age = v->boot_ms ? now->boot_ms - v->boot_ms : now->wall_ms - v->wall_ms) > bound_ms)
        *why_r = "the directory's last confirmation of this key is too old";
    else {
        *age_ms_r = age;
        return 0;
    }
    return -EACCES;
}

/* What a name may hold in the file: one word of printable ASCII. */
static bool
name_ok(const char *s, size_t len)
{
    if (len == 0 || len > DIR_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

char *
dir_confirm_encode(const struct dir_confirm *c)
{
    size_t cap = sizeof(DIR_CONFIRM_MAGIC) + DIR_CONFIRM_MAX * (DIR_NAME_MAX + 2 * 32 + 24);
    char *text = malloc(cap);
    if (!text)
        return NULL;
    size_t len = (size_t)snprintf(text, cap, "%s", DIR_CONFIRM_MAGIC);
    for (size_t i = 0; i < DIR_CONFIRM_MAX; i++) {
        const struct dir_confirm_entry *v = &c->e[i];
        if (!name_ok(v->server, strlen(v->server)))
            continue;
        char hex[2 * DIR_CONFIRM_HASH_BYTES + 1];
        sodium_bin2hex(hex, sizeof(hex), v->hash, DIR_CONFIRM_HASH_BYTES);
        len += (size_t)snprintf(text + len, cap - len, "%s %s %llu\n", v->server, hex,
                                (unsigned long long)v->wall_ms);
    }
    return text;
}

/* A decimal without sign, spaces or leading zeros that fits in 64 bits. */
static bool
parse_u64(const char *s, size_t len, uint64_t *v_r)
{
    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *v_r = v;
    return true;
}

static bool
parse_hex(const char *s, size_t len, unsigned char out[DIR_CONFIRM_HASH_BYTES])
{
    if (len != 2 * DIR_CONFIRM_HASH_BYTES)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false; /* lowercase only: one spelling per value */
    size_t bin_len = 0;
    return sodium_hex2bin(out, DIR_CONFIRM_HASH_BYTES, s, len, NULL, &bin_len, NULL) == 0 &&
           bin_len == DIR_CONFIRM_HASH_BYTES;
}

static int
decode(struct dir_confirm *c, const char *text, size_t len, const char **error_r)
{
    size_t magic = sizeof(DIR_CONFIRM_MAGIC) - 1;
    if (len < magic || memcmp(text, DIR_CONFIRM_MAGIC, magic) != 0) {
        *error_r = "not a file of server key confirmations (first line)";
        return TDM_EINVAL;
    }
    size_t n = 0;
    for (size_t off = magic; off < len;) {
        const char *line = text + off;
        const char *nl = memchr(line, '\n', len - off);
        if (!nl) {
            *error_r = "the last line has no end (a torn write)";
            return TDM_EINVAL;
        }
        size_t line_len = (size_t)(nl - line);
        off += line_len + 1;
        const char *sp1 = memchr(line, ' ', line_len);
        const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - line)) : NULL;
        if (!sp2) {
            *error_r = "a line is not \"<server> <key hash> <time>\"";
            return TDM_EINVAL;
        }
        if (n == DIR_CONFIRM_MAX) {
            *error_r = "more servers than a table holds";
            return TDM_EINVAL;
        }
        struct dir_confirm_entry *v = &c->e[n];
        size_t name_len = (size_t)(sp1 - line);
        if (!name_ok(line, name_len)) {
            *error_r = "a server name is empty, too long or not printable ASCII";
            return TDM_EINVAL;
        }
        memcpy(v->server, line, name_len);
        v->server[name_len] = '\0';
        for (size_t i = 0; i < n; i++)
            if (strcmp(c->e[i].server, v->server) == 0) {
                *error_r = "a server is named twice";
                return TDM_EINVAL;
            }
        if (!parse_hex(sp1 + 1, (size_t)(sp2 - sp1 - 1), v->hash)) {
            *error_r = "a key hash is not 64 lowercase hexadecimal digits";
            return TDM_EINVAL;
        }
        if (!parse_u64(sp2 + 1, (size_t)(nl - sp2 - 1), &v->wall_ms)) {
            *error_r = "a time is not a decimal number of milliseconds";
            return TDM_EINVAL;
        }
        v->boot_ms = 0;
        n++;
    }
    return 0;
}

int
dir_confirm_decode(struct dir_confirm *c, const char *text, size_t len, const char **error_r)
{
    memset(c, 0, sizeof(*c));
    int ret = decode(c, text, len, error_r);
    if (ret < 0)
        memset(c, 0, sizeof(*c));
    return ret;
}

int
dir_confirm_save(const char *path, const char *text, const char **step_r)
{
    char tmp[4096], dir[4096];
    const char *slash = strrchr(path, '/');
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp) ||
        snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
                 slash ? (slash == path ? "/" : path) : ".") >= (int)sizeof(dir)) {
        *step_r = "name";
        return -ENAMETOOLONG;
    }
    *step_r = "create";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int ret = 0;
    size_t len = strlen(text), off = 0;
    *step_r = "write";
    while (!ret && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno != EINTR)
            ret = -errno;
        else if (w > 0)
            off += (size_t)w;
    }
    if (!ret && fsync(fd) < 0) {
        *step_r = "fsync";
        ret = -errno;
    }
    if (close(fd) < 0 && !ret) {
        *step_r = "close";
        ret = -errno;
    }
    if (!ret && rename(tmp, path) < 0) {
        *step_r = "rename";
        ret = -errno;
    }
    if (ret < 0) {
        unlink(tmp);
        return ret;
    }
    /* The rename is durable only once the directory is. */
    *step_r = "fsync the directory of";
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        ret = -errno;
    if (dfd >= 0)
        close(dfd);
    return ret;
}

int
dir_confirm_load(const char *path, struct dir_confirm *c, const char **error_r)
{
    memset(c, 0, sizeof(*c));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error_r = "cannot open";
        return errno == ENOENT ? 0 : -errno;
    }
    /* The largest file the encoder writes, and one byte more to notice a larger one. */
    size_t cap = sizeof(DIR_CONFIRM_MAGIC) + DIR_CONFIRM_MAX * (DIR_NAME_MAX + 2 * 32 + 24) + 1;
    char *text = malloc(cap);
    if (!text) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    int ret = 0;
    while (len < cap) {
        ssize_t r = read(fd, text + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            ret = -errno;
            *error_r = "cannot read";
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (ret == 0 && len == cap) {
        *error_r = "larger than any file of confirmations";
        ret = TDM_EINVAL;
    }
    if (ret == 0)
        ret = dir_confirm_decode(c, text, len, error_r);
    free(text);
    return ret;
}

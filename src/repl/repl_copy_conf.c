/*
 * The copy marker file (repl_copy_conf.h): a small schema over the configuration dialect.
 * Sources keep the order of the file, which is the order networks are tried in.
 */
#include "repl/repl_copy_conf.h"

#include "lib/config_parse.h"
#include "lib/err.h"
#include "proto/repl/repl_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int __attribute__((format(printf, 4, 5)))
fail(char **error_r, int ret, const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!msg || asprintf(error_r, "%s:%s", file, msg) < 0)
        *error_r = NULL;
    free(msg);
    return ret;
}

static const char *const role_names[] = {"passive", "standby", NULL};

static int
top_key(struct repl_copy_conf *c, const struct config_entry *e, bool seen[5], const char *file,
        char **error_r)
{
    char reason[CONFIG_REASON_MAX];
    int idx;
    unsigned which;
    if (!strcmp(e->key, "role")) {
        which = 0;
        if (config_value_enum(e->value, role_names, &idx, reason) < 0)
            goto bad;
        c->role = idx == 0 ? REPL_ROLE_PASSIVE : REPL_ROLE_STANDBY;
    } else if (!strcmp(e->key, "kind")) {
        which = 1;
        if (!store_kind_valid(e->value)) {
            snprintf(reason, sizeof(reason), "\"%s\" is not a database kind ([a-z0-9-], 1 to %d)",
                     e->value, STORE_KIND_MAX);
            goto bad;
        }
        snprintf(c->kind, sizeof(c->kind), "%s", e->value);
    } else if (!strcmp(e->key, "replay_lag")) {
        which = 2;
        if (config_value_number(e->value, &config_duration_units, 0, REPL_COPY_MAX_REPLAY_LAG_MS, 0,
                                &c->replay_lag_ms, reason) < 0)
            goto bad;
    } else if (!strcmp(e->key, "truncation_lag")) {
        which = 4;
        if (config_value_number(e->value, &config_duration_units, 0, REPL_COPY_MAX_REPLAY_LAG_MS, 0,
                                &c->truncation_lag_ms, reason) < 0)
            goto bad;
    } else if (!strcmp(e->key, "suspended")) {
        which = 3;
        size_t n = strlen(e->value);
        if (n > REPL_COPY_COMMENT_MAX) {
            snprintf(reason, sizeof(reason), "a comment of at most %d bytes",
                     REPL_COPY_COMMENT_MAX);
            goto bad;
        }
        c->suspended = true;
        memcpy(c->suspend_comment, e->value, n + 1);
    } else {
        return fail(error_r, TDM_EINVAL, file,
                    "%u: key \"%s\": unknown key (known: role, kind, replay_lag, truncation_lag, "
                    "suspended, "
                    "[source])",
                    e->line, e->key);
    }
    if (seen[which])
        return fail(error_r, TDM_EINVAL, file, "%u: key \"%s\": given twice", e->line, e->key);
    seen[which] = true;
    return 0;
bad:
    return fail(error_r, TDM_EINVAL, file, "%u: key \"%s\": %s", e->line, e->key, reason);
}

int
repl_copy_conf_parse(const char *buf, size_t len, const char *filename,
                     struct repl_copy_conf *conf_r, char **error_r)
{
    *error_r = NULL;
    struct config_parsed *p;
    int ret = config_parse(buf, len, filename, &p, error_r);
    if (ret < 0)
        return ret;
    struct repl_copy_conf c = {.role = 0};
    snprintf(c.kind, sizeof(c.kind), "%s", STORE_KIND_MAIL);
    bool seen[5] = {false, false, false, false, false};
    bool lag_given = false;
    struct repl_copy_source *src = NULL; /* the [source] section open, until its endpoint */
    unsigned src_line = 0;
    bool seen_compression = false; /* in the [source] section open */
    char reason[CONFIG_REASON_MAX];
    for (size_t i = 0; i < p->count && ret == 0; i++) {
        const struct config_entry *e = &p->entries[i];
        if (!e->key) { /* a section header */
            if (src && src->endpoint.port == 0) {
                ret = fail(error_r, TDM_EINVAL, filename,
                           "%u: key \"endpoint\": missing in [source %s] (required)", src_line,
                           src->network);
                break;
            }
            if (strcmp(e->section, "source") != 0) {
                ret =
                    fail(error_r, TDM_EINVAL, filename,
                         "%u: section [%s]: unknown section (known: source)", e->line, e->section);
                break;
            }
            if (c.n_sources == REPL_COPY_MAX_SOURCES) {
                ret = fail(error_r, TDM_ELIMIT, filename,
                           "%u: section [source %s]: more than %d sources", e->line, e->name,
                           REPL_COPY_MAX_SOURCES);
                break;
            }
            char name[TDM_CONFIG_NAME_MAX + 1];
            if (config_value_name(e->name, TDM_CONFIG_NAME_MAX, name, reason) < 0) {
                ret = fail(error_r, TDM_EINVAL, filename, "%u: section [source %s]: %s", e->line,
                           e->name, reason);
                break;
            }
            for (unsigned j = 0; j < c.n_sources; j++)
                if (!strcmp(c.sources[j].network, name)) {
                    ret = fail(error_r, TDM_EINVAL, filename,
                               "%u: section [source %s]: given twice", e->line, name);
                    break;
                }
            if (ret < 0)
                break;
            src = &c.sources[c.n_sources++];
            memset(src, 0, sizeof(*src));
            seen_compression = false;
            snprintf(src->network, sizeof(src->network), "%s", name);
            src_line = e->line;
            continue;
        }
        if (!src) {
            ret = top_key(&c, e, seen, filename, error_r);
            if (!strcmp(e->key, "replay_lag"))
                lag_given = true;
            continue;
        }
        if (!strcmp(e->key, "compression")) {
            static const char *const compressions[] = {"none", "zstd", NULL};
            int idx;
            if (seen_compression) {
                ret = fail(error_r, TDM_EINVAL, filename, "%u: key \"compression\": given twice",
                           e->line);
                break;
            }
            seen_compression = true;
            if (config_value_enum(e->value, compressions, &idx, reason) < 0) {
                ret = fail(error_r, TDM_EINVAL, filename, "%u: key \"compression\": %s", e->line,
                           reason);
                break;
            }
            src->compression = idx == 1 ? REPL_COMPRESSION_ZSTD : REPL_COMPRESSION_NONE;
            continue;
        }
        if (strcmp(e->key, "endpoint") != 0) {
            ret = fail(error_r, TDM_EINVAL, filename,
                       "%u: key \"%s\": unknown key in [source %s] (known: endpoint, "
                       "compression)",
                       e->line, e->key, src->network);
            break;
        }
        if (src->endpoint.port != 0) {
            ret = fail(error_r, TDM_EINVAL, filename, "%u: key \"endpoint\": given twice", e->line);
            break;
        }
        struct tdm_config_addr *a = &src->endpoint.address;
        if (config_value_endpoint(e->value, &a->family, a->bytes, &src->endpoint.port, reason) <
            0) {
            ret = fail(error_r, TDM_EINVAL, filename, "%u: key \"endpoint\": %s", e->line, reason);
            break;
        }
        inet_ntop(a->family, a->bytes, a->text, sizeof(a->text));
    }
    if (ret == 0 && src && src->endpoint.port == 0)
        ret =
            fail(error_r, TDM_EINVAL, filename,
                 "%u: key \"endpoint\": missing in [source %s] (required)", src_line, src->network);
    if (ret == 0 && !seen[0])
        ret = fail(error_r, TDM_EINVAL, filename, "1: key \"role\": missing (required)");
    if (ret == 0 && c.n_sources == 0)
        ret = fail(error_r, TDM_EINVAL, filename,
                   " no [source <network>] section: a copy needs its active's address");
    if (ret == 0 && c.role == REPL_ROLE_PASSIVE && c.replay_lag_ms != 0)
        ret = fail(error_r, TDM_EINVAL, filename,
                   "1: key \"replay_lag\": a passive copy replays at once; only a standby has a "
                   "replay lag");
    if (ret == 0 && c.role == REPL_ROLE_STANDBY && !lag_given)
        c.replay_lag_ms = REPL_COPY_DEFAULT_STANDBY_LAG_MS;
    config_parsed_free(&p);
    if (ret == 0)
        *conf_r = c;
    return ret;
}

int
repl_copy_conf_read(const char *dbdir, struct repl_copy_conf *conf_r, char **error_r)
{
    *error_r = NULL;
    char *path;
    if (asprintf(&path, "%s/%s", dbdir, REPL_COPY_CONF_NAME) < 0)
        return -ENOMEM;
    int ret = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        ret = -errno;
        if (ret != -ENOENT && asprintf(error_r, "%s: %s", path, strerror(errno)) < 0)
            *error_r = NULL;
        goto out;
    }
    buf = malloc(CONFIG_MAX_FILE_SIZE + 1);
    if (!buf) {
        ret = -ENOMEM;
        goto out;
    }
    size_t n = fread(buf, 1, CONFIG_MAX_FILE_SIZE + 1, f);
    if (ferror(f)) {
        ret = -EIO;
        if (asprintf(error_r, "%s: read error", path) < 0)
            *error_r = NULL;
        goto out;
    }
    ret = repl_copy_conf_parse(buf, n, path, conf_r, error_r);
out:
    if (f)
        fclose(f);
    free(buf);
    free(path);
    return ret;
}

char *
repl_copy_conf_format(const struct repl_copy_conf *conf)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    char lag[32], tlag[32];
    config_value_format(lag, sizeof(lag), conf->replay_lag_ms, &config_duration_units);
    config_value_format(tlag, sizeof(tlag), conf->truncation_lag_ms, &config_duration_units);
    fprintf(f,
            "# This database is a copy: tandemd replicates it from its active and never mounts\n"
            "# it as active (docs/replication.md, \"Copies\").\n"
            "role = %s\nkind = %s\nreplay_lag = %s\ntruncation_lag = %s\n",
            conf->role == REPL_ROLE_STANDBY ? "standby" : "passive", conf->kind, lag, tlag);
    if (conf->suspended) {
        fputs("suspended = ", f);
        /* Always quoted: a comment may hold '#' or leading spaces. */
        fputc('"', f);
        for (const char *p = conf->suspend_comment; *p; p++) {
            if (*p == '"' || *p == '\\')
                fputc('\\', f);
            fputc(*p, f);
        }
        fputs("\"\n", f);
    }
    for (unsigned i = 0; i < conf->n_sources; i++) {
        const struct tdm_config_endpoint *ep = &conf->sources[i].endpoint;
        fprintf(f, "\n[source %s]\nendpoint = %s%s%s:%u\n", conf->sources[i].network,
                ep->address.family == AF_INET6 ? "[" : "", ep->address.text,
                ep->address.family == AF_INET6 ? "]" : "", (unsigned)ep->port);
        if (conf->sources[i].compression == REPL_COMPRESSION_ZSTD)
            fputs("compression = zstd\n", f);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

int
repl_copy_conf_write(const char *dbdir, const struct repl_copy_conf *conf, char **error_r)
{
    *error_r = NULL;
    char *text = repl_copy_conf_format(conf);
    char *tmp = NULL, *path = NULL;
    int ret = 0, fd = -1;
    if (!text || asprintf(&tmp, "%s/.%s.tmp", dbdir, REPL_COPY_CONF_NAME) < 0 ||
        asprintf(&path, "%s/%s", dbdir, REPL_COPY_CONF_NAME) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    const char *step = "create";
    bool renamed = false; /* after the rename, tmp is the file itself: never unlink it */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        goto sys;
    step = "write";
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto sys;
        }
        off += (size_t)n;
    }
    step = "fsync";
    if (fsync(fd) < 0)
        goto sys;
    close(fd);
    fd = -1;
    step = "rename";
    if (rename(tmp, path) < 0)
        goto sys;
    renamed = true;
    /* The rename is durable only once the directory is. */
    step = "fsync the directory of";
    fd = open(dbdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        goto sys;
    goto out;
sys:
    ret = -errno;
    if (asprintf(error_r, "cannot %s %s: %s", step, path, strerror(errno)) < 0)
        *error_r = NULL;
    if (!renamed)
        unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(text);
    free(tmp);
    free(path);
    return ret;
}

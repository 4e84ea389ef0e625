/*
 * Replication in the core (DESIGN.md "Replication", docs/replication.md): the copies this
 * server holds, each kept current by an agent on a thread of its own (src/repl/repl_copy.h),
 * and the source that serves the log of every active database here to other servers' copies
 * on [listen replication] (src/repl/repl_source.h).
 *
 * A directory under <datadir>/db/ holding copy.conf is a copy (repl_copy_conf.h): core.c hands
 * it here instead of mounting it. Copies authenticate to their active as server/<name> with
 * this server's key ([directory] key_file) and check its certificate against [tls] ca.
 * Loop thread only; the agents' own threads are reached only through repl_copy.h.
 */
#include "tandemd/tandemd.h"

#include "directory/directory.h"
#include "dirclient/dir_client.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "repl/repl_copy.h"
#include "repl/repl_copy_conf.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct core_copy {
    char *name;
    char *dir;
    struct repl_copy_conf conf;
    struct repl_copy *agent; /* NULL: could not start (the reason is in error) */
    char *error;
};

static struct core_copy *copies;
static size_t n_copies;

bool
tandemd__core_repl_is_copy(const char *dbdir)
{
    /* The workers ask the same (store_readers_is_copy), so the core never mounts what they
     * refuse to serve. One that cannot be told counts as a copy: its agent then reports why
     * copy.conf cannot be read, rather than the core mounting a copy as the active. */
    return store_is_copy(dbdir) != 0;
}

/* The [store] options, kept for activation (core_activate.c), which opens a copy as a store. */
static struct store_options repl_store_options;
/* The configuration the copies were started with (the core's, for its whole life): a copy
 * added later (the cluster agent's demotion) starts with the same. */
static const struct tdm_config *repl_cfg;

static int
copy_cmp(const void *a, const void *b)
{
    return strcmp(((const struct core_copy *)a)->name, ((const struct core_copy *)b)->name);
}

void
tandemd__core_repl_add_copy(const char *name, const char *dbdir)
{
    struct core_copy *grown = realloc(copies, (n_copies + 1) * sizeof(*copies));
    if (!grown)
        log_fatal("out of memory");
    copies = grown;
    struct core_copy *cp = &copies[n_copies++];
    memset(cp, 0, sizeof(*cp));
    cp->name = strdup(name);
    cp->dir = strdup(dbdir);
    if (!cp->name || !cp->dir)
        log_fatal("out of memory");
    int ret = repl_copy_conf_read(dbdir, &cp->conf, &cp->error);
    if (ret < 0) {
        if (!cp->error &&
            asprintf(&cp->error, "%s/%s: %s", dbdir, REPL_COPY_CONF_NAME, tdm_strerror(ret)) < 0)
            log_fatal("out of memory");
        log_error("copy %s not started: %s", name, cp->error);
    }
}

/* Starts cp's agent with key (NULL: key_why says why there is none); a copy that cannot start
 * keeps its reason for copy status. */
static void
start_one(struct core_copy *cp, const struct tdm_config *cfg, const struct store_options *o,
          const char *key, const char *key_why, const struct tls_files *files)
{
    if (cp->error)
        return;
    if (!key) {
        if (asprintf(&cp->error, "%s", key_why ? key_why : "out of memory") < 0)
            log_fatal("out of memory");
        log_error("copy %s not started: %s", cp->name, cp->error);
        return;
    }
    struct store_options opt = *o;
    if (dir_db_kind_handler(cp->conf.kind, &opt.handler) < 0) {
        if (asprintf(&cp->error, "its kind '%s' is not one this tandemd knows", cp->conf.kind) < 0)
            log_fatal("out of memory");
        log_error("copy %s not started: %s", cp->name, cp->error);
        return;
    }
    struct repl_copy_options co = {
        .database = cp->name,
        .dir = cp->dir,
        .conf = &cp->conf,
        .store = &opt,
        .networks = cfg->networks,
        .n_networks = cfg->n_networks,
        .server_name = cfg->server,
        .key = key,
        .ca_file = files->ca,
        .cert_file = files->certificate,
        .key_file = files->key,
    };
    if (repl_copy_start(&co, &cp->agent, &cp->error) < 0) {
        cp->agent = NULL;
        log_error("copy %s not started: %s", cp->name, cp->error ? cp->error : "out of memory");
    }
}

/* Starts the agent of every copy in [from, n_copies). */
static void
start_copies(const struct tdm_config *cfg, const struct store_options *o, size_t from)
{
    if (n_copies <= from)
        return;
    char *key = NULL, *why = NULL;
    if (dir_client_key_from_config(cfg, &key, &why) < 0)
        key = NULL;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    for (size_t i = from; i < n_copies; i++)
        start_one(&copies[i], cfg, o, key, why, &files);
    tls_files_clear(&files);
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    free(why);
}

void
tandemd__core_repl_start(struct event_base *base, const struct tdm_config *cfg,
                         const struct store_options *o, int listen_fd)
{
    tandemd__core_repl_source_start(base, cfg, listen_fd);
    repl_store_options = *o;
    repl_cfg = cfg;
    if (n_copies > 1)
        qsort(copies, n_copies, sizeof(*copies), copy_cmp);
    start_copies(cfg, o, 0);
}

void
tandemd__core_repl_stop(void)
{
    tandemd__core_repl_source_stop();
    for (size_t i = 0; i < n_copies; i++) {
        repl_copy_stop(&copies[i].agent);
        free(copies[i].name);
        free(copies[i].dir);
        free(copies[i].error);
    }
    free(copies);
    copies = NULL;
    n_copies = 0;
    repl_cfg = NULL;
}

size_t
tandemd__core_copy_count(void)
{
    return n_copies;
}

const char *
tandemd__core_copy_get(size_t i, struct repl_copy_status *st_r, const char **error_r)
{
    const struct core_copy *cp = &copies[i];
    memset(st_r, 0, sizeof(*st_r));
    *error_r = cp->error;
    if (cp->agent)
        repl_copy_get_status(cp->agent, st_r);
    else
        st_r->state = REPL_COPY_FAILED;
    st_r->role = cp->conf.role;
    return cp->name;
}

static struct core_copy *
find(const char *name, size_t len)
{
    for (size_t i = 0; i < n_copies; i++)
        if (strlen(copies[i].name) == len && memcmp(copies[i].name, name, len) == 0)
            return &copies[i];
    return NULL;
}

bool
tandemd__core_repl_holds_copy(const char *name, size_t len)
{
    return find(name, len) != NULL;
}

int
tandemd__core_copy_suspend(const char *name, size_t len, const char *comment)
{
    struct core_copy *cp = find(name, len);
    if (!cp)
        return TDM_ENOTFOUND;
    if (!cp->agent)
        return TDM_EFAILED;
    return repl_copy_suspend(cp->agent, comment);
}

int
tandemd__core_copy_resume(const char *name, size_t len)
{
    struct core_copy *cp = find(name, len);
    if (!cp)
        return TDM_ENOTFOUND;
    if (!cp->agent)
        return TDM_EFAILED;
    return repl_copy_resume(cp->agent);
}

int
tandemd__core_copy_reseed(const char *name, size_t len, bool delete_existing)
{
    struct core_copy *cp = find(name, len);
    if (!cp)
        return TDM_ENOTFOUND;
    if (!cp->agent)
        return TDM_EFAILED;
    /* A copy has files once it holds a log directory (a new copy holds only copy.conf);
     * Exchange's Update-StorageGroupCopy refuses the same without -DeleteExistingFiles. */
    char *log_dir;
    if (asprintf(&log_dir, "%s/log", cp->dir) < 0)
        return -ENOMEM;
    struct stat st;
    bool has_files = stat(log_dir, &st) == 0;
    free(log_dir);
    if (has_files && !delete_existing)
        return TDM_EEXIST;
    log_info("copy %s: reseed requested%s", cp->name,
             has_files ? "; its files are deleted first" : "");
    return repl_copy_reseed(cp->agent);
}

/* ---- for activation (core_activate.c) ---- */

const struct store_options *
tandemd__core_repl_store_options(void)
{
    return &repl_store_options;
}

bool
tandemd__core_copy_find(const char *name, size_t len, struct repl_copy_status *st_r,
                        const char **dir_r, const char **kind_r, const char **error_r,
                        bool *running_r)
{
    struct core_copy *cp = find(name, len);
    if (!cp)
        return false;
    memset(st_r, 0, sizeof(*st_r));
    if (cp->agent)
        repl_copy_get_status(cp->agent, st_r);
    *dir_r = cp->dir;
    *kind_r = cp->conf.kind;
    *error_r = cp->error;
    *running_r = cp->agent != NULL;
    return true;
}

void
tandemd__core_copy_stop_agent(const char *name, size_t len)
{
    struct core_copy *cp = find(name, len);
    if (!cp || !cp->agent)
        return;
    repl_copy_stop(&cp->agent);
    free(cp->error);
    cp->error = strdup("stopped for activation");
    if (!cp->error)
        log_fatal("out of memory");
}

void
tandemd__core_copy_forget(const char *name, size_t len)
{
    struct core_copy *cp = find(name, len);
    if (!cp)
        return;
    repl_copy_stop(&cp->agent);
    free(cp->name);
    free(cp->dir);
    free(cp->error);
    size_t i = (size_t)(cp - copies);
    /* Shifting keeps the list in name order, as COPY_STATUS needs. */
    memmove(&copies[i], &copies[i + 1], (n_copies - i - 1) * sizeof(*copies));
    n_copies--;
}

void
tandemd__core_repl_start_copy(const char *name, const char *dbdir)
{
    TDM_ASSERT(repl_cfg && !find(name, strlen(name)));
    tandemd__core_repl_add_copy(name, dbdir);
    start_copies(repl_cfg, &repl_store_options, n_copies - 1);
    /* Name order, as COPY_STATUS needs; the agents are pointers, so moving entries is fine. */
    qsort(copies, n_copies, sizeof(*copies), copy_cmp);
}

void
tandemd__core_repl_reload(const struct tdm_config *cfg)
{
    /* The old configuration is freed after the reload: copies started later use the new one
     * (its networks, key and TLS files). */
    if (repl_cfg)
        repl_cfg = cfg;
}

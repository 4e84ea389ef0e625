/*
 * The core process. For now it mounts the databases: with the mailbox role, every directory
 * under <datadir>/db/ is a database, opened (recovered if it was not closed cleanly) with the
 * [store] settings, and closed cleanly on shutdown so the next mount needs no replay. It
 * creates no database: that is an operator's (or, later, the directory's) decision.
 * Each database records its kind (store_options.kind); the kind picks the record handler it
 * is opened with (dir_db_kind_handler()), and a kind this build does not know is not mounted.
 */
#include "tandemd/tandemd.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "store/store.h"
#include "store/store_inspect.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct core_db {
    char *name;
    struct store *store;
};

static struct core_db *core_dbs;
static size_t core_n_dbs;

static void
core_store_options(const struct tdm_config *cfg, struct store_options *o)
{
    store_options_init(o);
    /* The config's ranges (docs/config.md) keep every value inside these types. */
    o->generation_size = (uint32_t)cfg->store.generation_size;
    o->idle_close_ms = (uint32_t)cfg->store.idle_close_ms;
    o->checkpoint_bytes = cfg->store.checkpoint_bytes;
    o->checkpoint_ms = (uint32_t)cfg->store.checkpoint_interval_ms;
    o->reserve_bytes = cfg->store.disk_reserve;
}

static void
core_mount(const char *dbdir, const char *name, const struct store_options *o)
{
    char *path;
    if (asprintf(&path, "%s/%s", dbdir, name) < 0)
        log_fatal("out of memory");
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
        free(path);
        return;
    }
    char kind[STORE_KIND_MAX + 1];
    const char *why;
    int ret = store_read_kind(path, kind, &why);
    if (ret < 0) {
        log_error("database %s not mounted: %s", path, why);
        free(path);
        return;
    }
    struct store_options opt = *o;
    if (dir_db_kind_handler(kind, &opt.handler) < 0) {
        log_error("database %s not mounted: its kind '%s' is not one this tandemd knows", path,
                  kind);
        free(path);
        return;
    }
    struct store *store;
    ret = store_open(path, &opt, &store, &why);
    if (ret < 0) {
        /* The store has emitted the operator event; one bad database must not keep the
         * others from serving, and restarting the core would not fix it. */
        log_error("database %s not mounted: %s", path, why);
        free(path);
        return;
    }
    free(path);
    struct core_db *grown = realloc(core_dbs, (core_n_dbs + 1) * sizeof(*core_dbs));
    if (!grown)
        log_fatal("out of memory");
    core_dbs = grown;
    core_dbs[core_n_dbs].name = strdup(name);
    if (!core_dbs[core_n_dbs].name)
        log_fatal("out of memory");
    core_dbs[core_n_dbs].store = store;
    core_n_dbs++;
    log_info("database %s mounted (%s)", name, kind);
}

static int
core_start(struct event_base *base, const struct tdm_config *cfg, int listen_fd)
{
    (void)base;
    (void)listen_fd;
    if (!(cfg->roles & TDM_ROLE_MAILBOX))
        return 0;
    char *dbdir;
    if (asprintf(&dbdir, "%s/db", cfg->datadir) < 0)
        log_fatal("out of memory");
    DIR *d = opendir(dbdir);
    if (!d) {
        /* The supervisor created it; gone now means someone removed it: nothing to mount. */
        log_error("cannot read %s: %s", dbdir, strerror(errno));
        free(dbdir);
        return 0;
    }
    struct store_options o;
    core_store_options(cfg, &o);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            core_mount(dbdir, e->d_name, &o);
    closedir(d);
    free(dbdir);
    return 0;
}

static void
core_stop(void)
{
    for (size_t i = 0; i < core_n_dbs; i++) {
        int ret = store_close(&core_dbs[i].store);
        if (ret < 0)
            log_error("database %s: closed with an error: %s", core_dbs[i].name, tdm_strerror(ret));
        else
            log_info("database %s closed cleanly", core_dbs[i].name);
        free(core_dbs[i].name);
    }
    free(core_dbs);
    core_dbs = NULL;
    core_n_dbs = 0;
}

const struct tandemd_child_ops tandemd__core_ops = {
    .start = core_start,
    .stop = core_stop,
};

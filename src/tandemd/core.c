/*
 * The core process: the databases. With the mailbox or the directory role, every directory
 * under <datadir>/db/ is a database, opened (recovered if it was not closed cleanly) with the
 * [store] settings, and closed cleanly on shutdown so the next mount needs no replay.
 * Each database records its kind (store_options.kind); the kind picks the record handler it
 * is opened with (dir_db_kind_handler()), and a kind this build does not know is not mounted.
 * The only database the core creates is the directory's own (<datadir>/db/directory, at the
 * first start of a directory-role server): mailbox databases are an operator's decision.
 * A directory holding copy.conf is a passive or standby copy, not mounted here but handed to
 * core_repl.c, which also serves the active databases' logs to other servers' copies.
 * Workers reach the databases through core_ipc.c; this file keeps the list of what is mounted.
 */
#include "tandemd/tandemd.h"
#include "tandemd/core_ipc_int.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "store/store.h"
#include "store/store_inspect.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every database found under <datadir>/db/, mounted or not (DB_STATUS shows both), sorted by
 * name once start-up is done. */
struct core_db {
    char *name;
    struct store *store;            /* NULL: refused at mount */
    char kind[STORE_KIND_MAX + 1]; /* "" when unreadable */
    /* Dismounted by an operator or the cluster agent (core_dismount.c); fenced: its commits
     * are answered TDM_ENOTFOUND, even durable ones. */
    bool dismounted;
    bool fenced;
};

static char core_datadir[4096];

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
core_add(const char *name, const char *kind, struct store *store)
{
    struct core_db *grown = realloc(core_dbs, (core_n_dbs + 1) * sizeof(*core_dbs));
    if (!grown)
        log_fatal("out of memory");
    core_dbs = grown;
    struct core_db *db = &core_dbs[core_n_dbs++];
    db->name = strdup(name);
    if (!db->name)
        log_fatal("out of memory");
    snprintf(db->kind, sizeof(db->kind), "%s", kind);
    db->store = store;
    db->dismounted = false;
    db->fenced = false;
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
    /* A copy is never mounted here: its agent opens it (core_repl.c). */
    if (tandemd__core_repl_is_copy(path)) {
        tandemd__core_repl_add_copy(name, path);
        free(path);
        return;
    }
    char kind[STORE_KIND_MAX + 1];
    const char *why;
    struct store *store = NULL;
    int ret = store_read_kind(path, kind, &why);
    if (ret < 0) {
        kind[0] = '\0';
        log_error("database %s not mounted: %s", path, why);
        goto out;
    }
    /* A CMS's database on a cluster node is never mounted on the memory of having been
     * active: it waits, dismounted, until this node wins the lease (docs/cluster.md "Start"). */
    if (tandemd__core_cluster_owns(name)) {
        log_info("database %s (%s) of a CMS: dismounted until this node wins its lease", name,
                 kind);
        free(path);
        core_add(name, kind, NULL);
        core_dbs[core_n_dbs - 1].dismounted = true;
        return;
    }
    struct store_options opt = *o;
    if (dir_db_kind_handler(kind, &opt.handler) < 0) {
        log_error("database %s not mounted: its kind '%s' is not one this tandemd knows", path,
                  kind);
        goto out;
    }
    ret = store_open(path, &opt, &store, &why);
    if (ret < 0) {
        /* The store has emitted the operator event; one bad database must not keep the
         * others from serving, and restarting the core would not fix it. */
        log_error("database %s not mounted: %s", path, why);
        store = NULL;
        goto out;
    }
    log_info("database %s mounted (%s)", name, kind);
out:
    free(path);
    core_add(name, kind, store);
}

/*
 * A directory-role server keeps its directory in <dbdir>/directory; at its first start there
 * is none yet and this creates it (with the built-in groups). An existing one, even one that
 * will not mount, is never touched: recreating it would throw away every object.
 */
static void
core_ensure_directory(const char *dbdir, const struct store_options *o)
{
    char *path;
    if (asprintf(&path, "%s/%s", dbdir, DIR_DB_KIND) < 0)
        log_fatal("out of memory");
    struct stat st;
    if (lstat(path, &st) == 0 || errno != ENOENT) {
        free(path);
        return;
    }
    const char *why;
    int ret = dir_db_create(path, o, &why);
    if (ret < 0)
        log_error("cannot create the directory database %s: %s", path, why);
    else
        event_emit(TDM_EV_DIRECTORY_CREATED, DIR_DB_KIND,
                   "created the directory database %s with the built-in groups", path);
    free(path);
}

static int
core_db_cmp(const void *a, const void *b)
{
    return strcmp(((const struct core_db *)a)->name, ((const struct core_db *)b)->name);
}

static void core_mount_all(const struct tdm_config *cfg);

static int
core_start(struct event_base *base, const struct tdm_config *cfg, int listen_fd)
{
    core_mount_all(cfg);
    struct store_options o;
    core_store_options(cfg, &o);
    tandemd__core_repl_start(base, cfg, &o, listen_fd);
    /* The witness role's coordination store: a server of its own on [listen coord]. */
    tandemd__core_coord_start(base, cfg);
    /* Heartbeats: a node's votes and a witness's answers (core_cluster_hb.c). */
    tandemd__core_cluster_hb_start(base, cfg);
    /* The cluster agent: leases, mounts and the CMS addresses of a node (core_cluster.c). */
    tandemd__core_cluster_start(base, cfg);
    /* After the mounts and the replication source, which serves on the CMS address too. */
    tandemd__core_cms_start(cfg);
    /* Listening only after the mounts: a worker that connects is answered at once, and a
     * COMMIT for a database still recovering cannot be told apart from an unknown one. */
    tandemd__core_ipc_start(base, cfg->datadir);
    return 0;
}

static void
core_mount_all(const struct tdm_config *cfg)
{
    if (!(cfg->roles & (TDM_ROLE_MAILBOX | TDM_ROLE_DIRECTORY)))
        return;
    snprintf(core_datadir, sizeof(core_datadir), "%s", cfg->datadir);
    char *dbdir;
    if (asprintf(&dbdir, "%s/db", cfg->datadir) < 0)
        log_fatal("out of memory");
    struct store_options o;
    core_store_options(cfg, &o);
    /* Before the listing, so the new database is mounted with the others. */
    if (cfg->roles & TDM_ROLE_DIRECTORY)
        core_ensure_directory(dbdir, &o);
    /* A cluster node's CMS databases it has no directory for yet: new copies (they seed). */
    tandemd__core_cluster_prepare(cfg, dbdir);
    DIR *d = opendir(dbdir);
    if (!d) {
        /* The supervisor created it; gone now means someone removed it: nothing to mount. */
        log_error("cannot read %s: %s", dbdir, strerror(errno));
        free(dbdir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            core_mount(dbdir, e->d_name, &o);
    closedir(d);
    free(dbdir);
    if (core_n_dbs > 1)
        qsort(core_dbs, core_n_dbs, sizeof(*core_dbs), core_db_cmp);
}

static void
core_stop(void)
{
    /* Connections first, so no new commit arrives; then the stores, whose close runs the
     * callbacks of commits still queued; then what those callbacks handed back. */
    tandemd__core_ipc_close();
    /* Replication before the stores: the source reads their logs, and the copies' agents
     * close their own copies on their threads. */
    tandemd__core_cluster_stop();
    tandemd__core_repl_stop();
    tandemd__core_cluster_hb_stop();
    tandemd__core_coord_stop();
    for (size_t i = 0; i < core_n_dbs; i++) {
        if (!core_dbs[i].store) {
            free(core_dbs[i].name);
            continue;
        }
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
    tandemd__core_ipc_free();
    tandemd__core_cms_stop();
}

static void
core_reload(const struct tdm_config *cfg)
{
    tandemd__core_cms_reload(cfg);
    tandemd__core_repl_reload(cfg);
}

void
tandemd__core_db_add(const char *name, const char *kind, struct store *store)
{
    core_add(name, kind, store);
    qsort(core_dbs, core_n_dbs, sizeof(*core_dbs), core_db_cmp);
}

size_t
tandemd__core_db_count(void)
{
    return core_n_dbs;
}

void
tandemd__core_db_get(size_t i, const char **name_r, const char **kind_r, struct store **store_r)
{
    *name_r = core_dbs[i].name;
    *kind_r = core_dbs[i].kind;
    *store_r = core_dbs[i].store;
}

struct store *
tandemd__core_db_find(const char *name, size_t len)
{
    for (size_t i = 0; i < core_n_dbs; i++)
        if (strlen(core_dbs[i].name) == len && memcmp(core_dbs[i].name, name, len) == 0)
            return core_dbs[i].store;
    return NULL;
}

static struct core_db *
core_db_named(const char *name, size_t len)
{
    for (size_t i = 0; i < core_n_dbs; i++)
        if (strlen(core_dbs[i].name) == len && memcmp(core_dbs[i].name, name, len) == 0)
            return &core_dbs[i];
    return NULL;
}

bool
tandemd__core_db_lookup(const char *name, size_t len, struct store **store_r, const char **kind_r,
                        bool *dismounted_r)
{
    struct core_db *db = core_db_named(name, len);
    if (!db)
        return false;
    *store_r = db->store;
    *kind_r = db->kind;
    *dismounted_r = db->dismounted;
    return true;
}

void
tandemd__core_db_set(const char *name, size_t len, struct store *store, bool dismounted,
                     bool fenced)
{
    struct core_db *db = core_db_named(name, len);
    TDM_ASSERT(db);
    db->store = store;
    db->dismounted = dismounted;
    db->fenced = fenced;
}

bool
tandemd__core_db_fenced(const char *name)
{
    struct core_db *db = core_db_named(name, strlen(name));
    return db && db->fenced;
}

bool
tandemd__core_db_remove(const char *name)
{
    struct core_db *db = core_db_named(name, strlen(name));
    if (!db || db->store)
        return false;
    free(db->name);
    size_t i = (size_t)(db - core_dbs);
    /* Shifting keeps the list in name order. */
    memmove(&core_dbs[i], &core_dbs[i + 1], (core_n_dbs - i - 1) * sizeof(*core_dbs));
    core_n_dbs--;
    /* It leaves the dismounted list: a copy now, which workers refer elsewhere by themselves;
     * activated here again later, it must not still be refused (DB_DISMOUNTED). */
    tandemd__core_ipc_dismounted_push();
    return true;
}

const char *
tandemd__core_datadir(void)
{
    return core_datadir;
}

const struct tandemd_child_ops tandemd__core_ops = {
    .start = core_start,
    .stop = core_stop,
    .reload = core_reload,
    .cms_listen = tandemd__core_cms_listen,
    .cms_close = tandemd__core_cms_close,
    .cms_state = tandemd__core_cms_state,
};

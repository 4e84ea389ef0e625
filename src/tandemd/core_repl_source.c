/*
 * The replication source in the core (core_repl.c starts and stops it): serves the log of
 * every database mounted here to other servers' copies on [listen replication]
 * (src/repl/repl_source.h), checking each copy's server key as core_server_auth.c does for
 * every server-to-server service.
 */
#include "tandemd/core_ipc_int.h"

#include "dirclient/dir_client.h"
#include "directory/directory.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"
#include "repl/repl_source.h"
#include "store/store.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct repl_source *source;
static SSL_CTX *source_tls;
static bool source_auth; /* holds a reference to core_server_auth.c's checker */

/* Every copy's ACK: the sync gate releases the replies a passive's durable LSN covers. */
static void
on_ack(void *ctx, const char *database, const char *server, uint16_t role,
       const struct repl_ack *ack)
{
    (void)ctx;
    tandemd__sync_ack(database, server, role, ack->durable_lsn);
}

/* sync_timeout_ms when the database object has none. */
#define SYNC_TIMEOUT_DEFAULT_MS 2000u
static struct event_base *sync_base; /* the loop the sync gate's timers run on */

/*
 * The modes this node's [cms] sections set for their databases (`replication`, other than
 * `directory`), copied from the configuration at start: a cluster node must serve its CMS's
 * databases in their mode after a failover with the directory unreachable, and the directory
 * is usually another server's (docs/cluster.md, "Configuration"). Read at start, as the
 * directory object's mode is.
 */
struct cms_db_mode {
    char name[TDM_CONFIG_NAME_MAX + 1];
    uint16_t mode;
    uint32_t sync_timeout_ms;
};
static struct cms_db_mode cms_modes[TDM_CONFIG_MAX_CMS * TDM_CONFIG_MAX_CMS_DATABASES];
static size_t n_cms_modes;

static void
cms_modes_load(const struct tdm_config *cfg)
{
    n_cms_modes = 0;
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        const struct tdm_config_cms *c = &cfg->cms[i];
        if (c->replication == TDM_CMS_REPL_DIRECTORY)
            continue;
        uint16_t mode = c->replication == TDM_CMS_REPL_SYNC   ? REPL_MODE_SYNC
                        : c->replication == TDM_CMS_REPL_FILE ? REPL_MODE_FILE
                                                              : REPL_MODE_BLOCK;
        for (unsigned d = 0; d < c->n_databases; d++) {
            struct cms_db_mode *m = &cms_modes[n_cms_modes++];
            snprintf(m->name, sizeof(m->name), "%s", c->databases[d]);
            m->mode = mode;
            /* The config bounds it to 100 ms..600 s. */
            m->sync_timeout_ms = (uint32_t)c->sync_timeout_ms;
        }
    }
}

/*
 * The mode database name is served in: its [cms]'s `replication` when that is set; otherwise
 * its `database` object's `replication` in this server's own directory, read at start (a
 * change takes effect at the next). Block when there is no local directory or no such object
 * or attribute. In sync mode the database's sync gate is set up from the [cms]'s
 * `sync_timeout`, or the object's `sync_timeout_ms` and `sync_strict` (core_sync.c).
 */
static uint16_t
db_mode(const char *name)
{
    for (size_t i = 0; i < n_cms_modes; i++)
        if (strcmp(cms_modes[i].name, name) == 0) {
            if (cms_modes[i].mode == REPL_MODE_SYNC)
                tandemd__sync_configure(sync_base, name, cms_modes[i].sync_timeout_ms, false);
            return cms_modes[i].mode;
        }
    struct store *dir = tandemd__core_db_find(DIR_DB_KIND, strlen(DIR_DB_KIND));
    MDB_txn *txn;
    if (!dir || store_read_begin(dir, &txn) < 0)
        return REPL_MODE_BLOCK;
    uint16_t mode = REPL_MODE_BLOCK;
    struct dir_object o;
    if (dir_object_get(store_handler_state(dir), txn, DIR_KIND_DATABASE, name, &o) == 0) {
        json_t *attrs = json_loads(o.attrs, 0, NULL);
        const char *m = json_string_value(json_object_get(attrs, "replication"));
        if (m && !strcmp(m, "file"))
            mode = REPL_MODE_FILE;
        else if (m && !strcmp(m, "sync")) {
            mode = REPL_MODE_SYNC;
            /* The schema bounds both (dir_schema.c). */
            json_t *t = json_object_get(attrs, "sync_timeout_ms");
            uint32_t timeout =
                json_is_integer(t) ? (uint32_t)json_integer_value(t) : SYNC_TIMEOUT_DEFAULT_MS;
            tandemd__sync_configure(sync_base, name, timeout,
                                    json_is_true(json_object_get(attrs, "sync_strict")));
        }
        json_decref(attrs);
        dir_object_clear(&o);
    }
    mdb_txn_abort(txn);
    return mode;
}

void
tandemd__core_repl_source_start(struct event_base *base, const struct tdm_config *cfg,
                                int listen_fd)
{
    if (listen_fd < 0)
        return;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    char *why = NULL;
    int ret = tls_server_ctx_new(files.certificate, files.key, files.ca, TLS_CLIENT_AUTH_REQUIRE,
                                 &source_tls, &why);
    tls_files_clear(&files);
    if (ret < 0) {
        log_error("replication not served: %s", why ? why : "out of memory");
        free(why);
        close(listen_fd);
        return;
    }
    tandemd__server_auth_start(base, cfg);
    source_auth = true;
    sync_base = base;
    cms_modes_load(cfg);
    struct repl_source_options so = {
        .fd = listen_fd,
        .tls = source_tls,
        .verify = tandemd__server_verify_replication,
        .ack = on_ack,
        /* [replication] silence_timeout: at most an hour, so it fits. */
        .idle_timeout_ms = (uint32_t)cfg->replication.silence_timeout_ms,
        /* Snapshots for seeds on the file system of the databases, which has room for them. */
        .seed_dir = cfg->datadir,
    };
    ret = repl_source_new(base, &so, &source);
    if (ret < 0) {
        log_error("replication not served: %s", tdm_strerror(ret));
        close(listen_fd);
        return;
    }
    for (size_t i = 0; i < tandemd__core_db_count(); i++) {
        const char *name, *kind;
        struct store *store;
        tandemd__core_db_get(i, &name, &kind, &store);
        /* A database that did not mount answers not-active. */
        ret = repl_source_add_database(source, name, store, db_mode(name));
        if (ret < 0)
            log_error("database %s not served to copies: %s", name, tdm_strerror(ret));
    }
}

void
tandemd__core_repl_source_stop(void)
{
    /* Pending key checks answer first, while the source that waits for them still exists
     * (unless another service keeps the checker: then they find the source gone, which it
     * handles). */
    if (source_auth)
        tandemd__server_auth_stop();
    source_auth = false;
    repl_source_free(&source);
    if (source_tls) {
        SSL_CTX_free(source_tls);
        source_tls = NULL;
    }
}
void
tandemd__core_repl_source_dismount(const char *name)
{
    if (!source)
        return;
    /* Its copies get ERROR shutdown and reconnect; known without a store, it is then
     * answered not-active, which a copy reports as ServiceDown. */
    repl_source_remove_database(source, name);
    int ret = repl_source_add_database(source, name, NULL, db_mode(name));
    if (ret < 0)
        log_error("database %s: cannot answer its copies while dismounted: %s", name,
                  tdm_strerror(ret));
}

void
tandemd__core_repl_source_mount(const char *name, struct store *store)
{
    if (!source)
        return;
    repl_source_remove_database(source, name);
    tandemd__core_repl_source_add(name, store);
}

void
tandemd__core_repl_source_add(const char *name, struct store *store)
{
    if (!source)
        return;
    int ret = repl_source_add_database(source, name, store, db_mode(name));
    if (ret < 0)
        log_error("database %s not served to copies: %s", name, tdm_strerror(ret));
}

void
tandemd__core_repl_source_add_socket(int fd, uint32_t tag)
{
    int ret = source ? repl_source_add_socket(source, fd, tag) : TDM_ENOTFOUND;
    if (ret < 0) {
        /* Copies cannot reach this server's databases through the CMS address; the node's
         * [listen replication] still serves them. */
        log_error("replication not served on a CMS address: %s",
                  source ? tdm_strerror(ret) : "no replication source runs");
        close(fd);
    }
}

void
tandemd__core_repl_source_close_socket(uint32_t tag)
{
    if (source)
        repl_source_close_socket(source, tag);
}

size_t
tandemd__core_repl_source_sessions(const char *server, const char *why)
{
    return repl_source_sessions(source, server, why);
}

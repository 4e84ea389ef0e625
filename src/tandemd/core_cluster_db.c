/*
 * The cluster agent's databases (docs/cluster.md "Start", "Rejoin"): which databases of this
 * node belong to a CMS, how each stands for the decisions (cluster_fsm_db_state and its durable
 * log end), and the demotion of an active database into a copy of the CMS address.
 *
 * A CMS's database is never mounted at start (core.c asks tandemd__core_cluster_owns): it
 * stays dismounted until this node wins the lease. A CMS database with no directory here yet
 * becomes a new copy (a directory holding only copy.conf, which seeds itself from the active).
 * copy.conf names the CMS address on the port of this node's [listen replication]: every node
 * of a cluster listens for replication on the same port, and so the CMS address serves it
 * wherever the CMS is active (docs/decisions.md).
 */
#include "tandemd/core_cluster_int.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "proto/repl/repl_wire.h"
#include "repl/repl_copy.h"
#include "repl/repl_copy_conf.h"
#include "store/store.h"
#include "store/store_inspect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What the agent needs of a node's configuration, copied at start: a reload frees the
 * configuration the core started with, and [cluster]/[cms] changes take effect at the next
 * start (docs/decisions.md). */
static bool is_node;
static struct tdm_config_cms node_cms[TDM_CONFIG_MAX_CMS];
static unsigned node_n_cms;
static bool has_repl;
static uint32_t repl_port;
static char repl_network[TDM_CONFIG_NAME_MAX + 1];

bool
cluster_db_is_node(void)
{
    return is_node;
}

unsigned
cluster_db_n_cms(void)
{
    return node_n_cms;
}

const struct tdm_config_cms *
cluster_db_cms(unsigned i)
{
    return &node_cms[i];
}

const struct tdm_config_cms *
cluster_db_cms_of(const char *db)
{
    for (unsigned c = 0; c < node_n_cms; c++)
        for (unsigned d = 0; d < node_cms[c].n_databases; d++)
            if (strcmp(node_cms[c].databases[d], db) == 0)
                return &node_cms[c];
    return NULL;
}

bool
tandemd__core_cluster_owns(const char *name)
{
    return cluster_db_cms_of(name) != NULL;
}

int
cluster_db_copy_conf(const struct tdm_config_cms *cms, const char *kind,
                     struct repl_copy_conf *conf, const char **why_r)
{
    if (!has_repl) {
        *why_r = "this node has no [listen replication], whose port the CMS address serves";
        return TDM_EINVAL;
    }
    memset(conf, 0, sizeof(*conf));
    conf->role = REPL_ROLE_PASSIVE;
    snprintf(conf->kind, sizeof(conf->kind), "%s", kind && kind[0] ? kind : "mail");
    snprintf(conf->sources[0].network, sizeof(conf->sources[0].network), "%s", repl_network);
    conf->sources[0].endpoint.address = cms->address;
    conf->sources[0].endpoint.port = repl_port;
    conf->n_sources = 1;
    return 0;
}

void
tandemd__core_cluster_prepare(const struct tdm_config *cfg, const char *dbdir)
{
    if (cfg->cluster.name[0] == '\0' || cfg->n_cms == 0)
        return;
    is_node = true;
    node_n_cms = cfg->n_cms;
    memcpy(node_cms, cfg->cms, cfg->n_cms * sizeof(cfg->cms[0]));
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct tdm_config_listener *l = &cfg->listeners[i];
        if (l->proto != TDM_PROTO_REPLICATION)
            continue;
        has_repl = true;
        repl_port = l->port;
        snprintf(repl_network, sizeof(repl_network), "%s",
                 l->network[0]      ? l->network
                 : cfg->n_networks ? cfg->networks[0].name
                                   : "public");
    }
    for (unsigned c = 0; c < cfg->n_cms; c++) {
        const struct tdm_config_cms *cms = &cfg->cms[c];
        for (unsigned d = 0; d < cms->n_databases; d++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", dbdir, cms->databases[d]);
            struct stat st;
            if (lstat(path, &st) == 0 || errno != ENOENT)
                continue;
            struct repl_copy_conf conf;
            const char *why = NULL;
            char *error = NULL;
            int ret = cluster_db_copy_conf(cms, "mail", &conf, &why);
            if (ret == 0 && mkdir(path, 0700) < 0) {
                ret = -errno;
                why = "cannot create its directory";
            }
            if (ret == 0 && (ret = repl_copy_conf_write(path, &conf, &error)) < 0)
                why = error;
            if (ret < 0)
                log_error("CMS %s: database %s not created as a copy: %s (%s)", cms->name,
                          cms->databases[d], why ? why : "?", tdm_strerror(ret));
            else
                log_info("CMS %s: database %s created as a new copy of %s (it seeds itself)",
                         cms->name, cms->databases[d], cms->address.text);
            free(error);
        }
    }
}

/* The durable log end of a closed database directory (a dismounted one), read from its log. */
static void
closed_pos(const char *name, struct cluster_fsm_logpos *pos)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/db/%s", tandemd__core_datadir(), name);
    struct store_inspection r;
    const char *why = NULL;
    if (store_inspect(dir, &r, &why) < 0) {
        log_warn("database %s: its log end cannot be read (%s): counted as empty", name,
                    why ? why : "?");
        return;
    }
    for (size_t i = r.n_gens; i-- > 0;) {
        const struct store_gen_info *g = &r.gens[i];
        if (g->blank || g->last_lsn < g->first_lsn)
            continue;
        pos->epoch = g->epoch;
        pos->lsn = g->last_lsn;
        pos->generation = g->generation;
        pos->offset = g->size;
        break;
    }
    if (pos->epoch < r.epoch)
        pos->epoch = r.epoch;
    store_inspection_clear(&r);
}

static uint16_t
wire_copy_state(enum repl_copy_state s)
{
    switch (s) {
    case REPL_COPY_INITIALIZING:
        return 1;
    case REPL_COPY_HEALTHY:
        return 2;
    case REPL_COPY_SEEDING:
        return 3;
    case REPL_COPY_SUSPENDED:
        return 4;
    case REPL_COPY_FAILED:
        return 5;
    case REPL_COPY_DISCONNECTED:
        return 6;
    case REPL_COPY_SERVICE_DOWN:
        return 7;
    case REPL_COPY_RESYNCHRONIZING:
        return 8;
    }
    return 1;
}

void
cluster_db_look(struct cluster_agent_db *adb, struct cluster_fsm_db *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", adb->name);
    out->mode = CLUSTER_MODE_BLOCK;
    out->generation_bytes = tandemd__core_repl_store_options()->generation_size;
    adb->wire_copy_state = 0;
    size_t len = strlen(adb->name);
    struct store *store;
    const char *kind;
    bool dismounted;
    if (tandemd__core_db_lookup(adb->name, len, &store, &kind, &dismounted)) {
        if (store) {
            struct store_status ss;
            store_get_status(store, &ss);
            out->state = CLUSTER_DB_MOUNTED;
            out->pos.epoch = ss.epoch;
            out->pos.lsn = ss.durable_lsn;
            out->pos.generation = ss.current_generation;
            out->last_lsn = ss.last_lsn; /* commits in flight end here (a switchover drains) */
            adb->closed_pos_read = false;
        } else if (dismounted) {
            out->state = CLUSTER_DB_DISMOUNTED;
            if (!adb->closed_pos_read) {
                memset(&adb->closed_pos, 0, sizeof(adb->closed_pos));
                closed_pos(adb->name, &adb->closed_pos);
                adb->closed_pos_read = true;
            }
            out->pos = adb->closed_pos;
        } else {
            out->state = CLUSTER_DB_COPY_UNHEALTHY; /* refused at mount */
            adb->wire_copy_state = 5;
        }
        adb->was_healthy = false;
        return;
    }
    adb->closed_pos_read = false;
    struct repl_copy_status st;
    const char *dir, *error;
    bool running;
    if (!tandemd__core_copy_find(adb->name, len, &st, &dir, &kind, &error, &running)) {
        out->state = CLUSTER_DB_ABSENT;
        adb->wire_copy_state = 1;
        return;
    }
    if (!running)
        st.state = REPL_COPY_FAILED;
    out->pos.lsn = st.copied_lsn;
    out->pos.generation = st.copied_generation;
    out->pos.offset = st.copied_offset;
    out->mode = st.mode == REPL_MODE_FILE   ? CLUSTER_MODE_FILE
                : st.mode == REPL_MODE_SYNC ? CLUSTER_MODE_SYNC
                                            : CLUSTER_MODE_BLOCK;
    adb->wire_copy_state = wire_copy_state(st.state);
    if (st.state == REPL_COPY_HEALTHY) {
        out->state = CLUSTER_DB_COPY_HEALTHY;
    } else if (st.lost_source_while_healthy) {
        /* Its source went away while it replicated: what losing the active looks like. The
         * copy says so itself: a Healthy between two looks here (the first seconds of a new
         * copy) counts as well. */
        out->state = CLUSTER_DB_COPY_LOST_SOURCE;
    } else {
        out->state = CLUSTER_DB_COPY_UNHEALTHY;
        /* A copy that never was Healthy here says so to the others: never a candidate. */
        if (st.state == REPL_COPY_DISCONNECTED || st.state == REPL_COPY_SERVICE_DOWN)
            adb->wire_copy_state = 1;
    }
    adb->was_healthy = out->state != CLUSTER_DB_COPY_UNHEALTHY;
}

int
cluster_db_demote(const struct tdm_config_cms *cms, struct cluster_agent_db *adb,
                  const char **why_r)
{
    size_t len = strlen(adb->name);
    struct store *store;
    const char *kind;
    bool dismounted;
    if (!tandemd__core_db_lookup(adb->name, len, &store, &kind, &dismounted))
        return 0; /* a copy already (or absent): nothing to do */
    if (store) {
        *why_r = "it is still mounted";
        return TDM_EINVAL;
    }
    struct repl_copy_conf conf;
    int ret = cluster_db_copy_conf(cms, kind, &conf, why_r);
    if (ret < 0)
        return ret;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/db/%s", tandemd__core_datadir(), adb->name);
    /* copy.conf first: a crash from here on leaves a copy (docs/cluster.md "Rejoin"). */
    char *error = NULL;
    ret = repl_copy_conf_write(dir, &conf, &error);
    if (ret < 0) {
        static char why[512];
        snprintf(why, sizeof(why), "%s", error ? error : "cannot write copy.conf");
        free(error);
        *why_r = why;
        return ret;
    }
    tandemd__core_db_remove(adb->name);
    tandemd__core_repl_start_copy(adb->name, dir);
    adb->closed_pos_read = false;
    adb->was_healthy = false;
    return 0;
}

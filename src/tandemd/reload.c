/*
 * SIGHUP: which settings differ between the running configuration and the file just reread, and
 * cannot change while tandemd runs. The listeners are bound and the datadir locked before any
 * child starts, the server name is its identity in the directory, and the store settings are
 * taken when a database is mounted (TLS files when a context is built): changing any of them
 * means a restart, which an operator chooses the moment of. The supervisor applies the rest
 * (log level, events file).
 */
#include "tandemd/tandemd.h"

#include "lib/event.h"

#include <stdbool.h>
#include <string.h>

static bool
endpoints_equal(const struct tdm_config_directory *a, const struct tdm_config_directory *b)
{
    if (a->n_endpoints != b->n_endpoints || a->cache_ttl_ms != b->cache_ttl_ms)
        return false;
    for (unsigned i = 0; i < a->n_endpoints; i++)
        if (strcmp(a->endpoints[i].address.text, b->endpoints[i].address.text) ||
            a->endpoints[i].port != b->endpoints[i].port)
            return false;
    return true;
}

static bool
listeners_equal(const struct tdm_config *a, const struct tdm_config *b)
{
    if (a->n_listeners != b->n_listeners)
        return false;
    for (unsigned i = 0; i < a->n_listeners; i++)
        if (a->listeners[i].proto != b->listeners[i].proto ||
            strcmp(a->listeners[i].address.text, b->listeners[i].address.text) ||
            a->listeners[i].port != b->listeners[i].port)
            return false;
    return true;
}

static bool
networks_equal(const struct tdm_config *a, const struct tdm_config *b)
{
    if (a->n_networks != b->n_networks)
        return false;
    for (unsigned i = 0; i < a->n_networks; i++)
        if (strcmp(a->networks[i].name, b->networks[i].name) ||
            strcmp(a->networks[i].address.text, b->networks[i].address.text))
            return false;
    return true;
}

/* Paths that may be unset (NULL: the default). */
static bool
path_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool
domains_equal(const struct tdm_config_smtp *a, const struct tdm_config_smtp *b)
{
    return a->n_domains == b->n_domains &&
           memcmp(a->domains, b->domains, a->n_domains * sizeof(a->domains[0])) == 0;
}

static bool
endpoint_equal(const struct tdm_config_endpoint *a, const struct tdm_config_endpoint *b)
{
    return a->port == b->port && strcmp(a->address.text, b->address.text) == 0;
}

/* [cluster] and every [member]: the heartbeats and the agent keep the ones they started with
 * (core_cluster_hb.c). Line numbers do not count. */
static bool
cluster_equal(const struct tdm_config *a, const struct tdm_config *b)
{
    const struct tdm_config_cluster *x = &a->cluster, *y = &b->cluster;
    if (strcmp(x->name, y->name) || strcmp(x->witness, y->witness) ||
        x->heartbeat_interval_ms != y->heartbeat_interval_ms ||
        x->heartbeat_misses != y->heartbeat_misses || x->lease_ttl_ms != y->lease_ttl_ms ||
        a->n_members != b->n_members)
        return false;
    for (unsigned i = 0; i < a->n_members; i++) {
        const struct tdm_config_member *m = &a->members[i], *n = &b->members[i];
        if (strcmp(m->name, n->name) || m->n_nets != n->n_nets ||
            !endpoint_equal(&m->coord, &n->coord))
            return false;
        for (unsigned j = 0; j < m->n_nets; j++)
            if (strcmp(m->nets[j].network, n->nets[j].network) ||
                !endpoint_equal(&m->nets[j].endpoint, &n->nets[j].endpoint))
                return false;
    }
    return true;
}

unsigned
tandemd__report_unreloadable(const struct tdm_config *cur, const struct tdm_config *fresh,
                             const char *config_path)
{
    const struct {
        const char *key;
        bool changed;
    } keys[] = {
        {"server", strcmp(cur->server, fresh->server) != 0},
        {"site", strcmp(cur->site, fresh->site) != 0},
        {"datadir", strcmp(cur->datadir, fresh->datadir) != 0},
        {"roles", cur->roles != fresh->roles},
        {"user", strcmp(cur->user, fresh->user) != 0},
        {"[network]", !networks_equal(cur, fresh)},
        {"[listen]", !listeners_equal(cur, fresh)},
        {"[directory]", !endpoints_equal(&cur->directory, &fresh->directory)},
        {"[cluster] or [member]", !cluster_equal(cur, fresh)},
        {"[store] generation_size", cur->store.generation_size != fresh->store.generation_size},
        {"[store] idle_close", cur->store.idle_close_ms != fresh->store.idle_close_ms},
        {"[store] checkpoint_bytes", cur->store.checkpoint_bytes != fresh->store.checkpoint_bytes},
        {"[store] checkpoint_interval",
         cur->store.checkpoint_interval_ms != fresh->store.checkpoint_interval_ms},
        {"[store] disk_reserve", cur->store.disk_reserve != fresh->store.disk_reserve},
        /* Contexts are built from these files at start (lib/tls.h). */
        {"[tls] certificate", !path_equal(cur->tls.certificate, fresh->tls.certificate)},
        {"[tls] key", !path_equal(cur->tls.key, fresh->tls.key)},
        {"[tls] ca", !path_equal(cur->tls.ca, fresh->tls.ca)},
        /* The SMTP worker takes its copy of these at start (src/smtp/). */
        {"[smtp] domains", !domains_equal(&cur->smtp, &fresh->smtp)},
        {"[smtp] max_message_size", cur->smtp.max_message_size != fresh->smtp.max_message_size},
        {"[smtp] max_recipients", cur->smtp.max_recipients != fresh->smtp.max_recipients},
        {"[smtp] max_connections", cur->smtp.max_connections != fresh->smtp.max_connections},
    };
    unsigned n = 0;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!keys[i].changed)
            continue;
        event_emit(TDM_EV_PROCESS_RELOAD_NEEDS_RESTART, cur->server,
                   "%s: %s changed, but only takes effect when tandemd restarts; the running "
                   "value stays in force until then",
                   config_path, keys[i].key);
        n++;
    }
    return n;
}

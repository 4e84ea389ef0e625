/*
 * Heartbeats in the core (docs/cluster.md, "Votes and quorum"): a node (with [cluster]) and a
 * witness (with [listen cluster]) run src/cluster/cluster_hb.h on the core's loop. TLS as
 * replication's: a server context that requires a client certificate, a client context that
 * checks the member's certificate against [tls] ca, and each HELLO's server key checked by
 * core_server_auth.c. This server's own key ([directory] key_file) goes in its HELLOs.
 *
 * As with [listen coord], the core binds [listen cluster] itself: the heartbeats, like the
 * coordination store, are the core's alone, and the supervisor hands the core one socket
 * (docs/decisions.md).
 */
#include "tandemd/core_ipc_int.h"

#include "cluster/cluster_hb.h"
#include "dirclient/dir_client.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/ipc.h"
#include "lib/tls.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct cluster_hb *hb;
/* The configuration the heartbeats started with, our own copy: cluster_hb and the key checks
 * keep pointers into it, and a reload frees the child's (changes to [cluster] and [member]
 * need a restart: reload.c says so). */
static struct tdm_config *hb_cfg;
static SSL_CTX *server_tls, *client_tls;
static bool auth_started;
static void (*change_hook)(void *arg);
static void *change_hook_arg;

struct cluster_hb *
tandemd__core_cluster_hb(void)
{
    return hb;
}

void
tandemd__core_cluster_hb_on_change(void (*fn)(void *arg), void *arg)
{
    change_hook = fn;
    change_hook_arg = arg;
}

static void
on_change(void *arg)
{
    (void)arg;
    if (change_hook)
        change_hook(change_hook_arg);
}

void
tandemd__core_cluster_hb_start(struct event_base *base, const struct tdm_config *child_cfg)
{
    char *why = NULL;
    if (tdm_config_clone(child_cfg, &hb_cfg, &why) < 0) {
        log_error("cluster heartbeats not served: %s", why ? why : "out of memory");
        free(why);
        return;
    }
    const struct tdm_config *cfg = hb_cfg;
    const struct tdm_config_listener *l = NULL;
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].proto == TDM_PROTO_CLUSTER)
            l = &cfg->listeners[i];
    /* Config checked that a node has [listen cluster]; a witness without one has no votes
     * to give (docs/config.md). */
    if (!l) {
        tdm_config_free(&hb_cfg);
        return;
    }
    bool node = cfg->cluster.name[0] != '\0';
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    int ret = tls_server_ctx_new(files.certificate, files.key, files.ca, TLS_CLIENT_AUTH_REQUIRE,
                                 &server_tls, &why);
    if (ret == 0 && node)
        ret = tls_client_ctx_new(files.ca, files.certificate, files.key, &client_tls, &why);
    tls_files_clear(&files);
    char *key = NULL;
    if (ret == 0 && node)
        ret = dir_client_key_from_config(cfg, &key, &why);
    int fd = -1;
    if (ret == 0 && (fd = tandemd__bind_listener(cfg, l, &why)) < 0)
        ret = fd;
    if (ret < 0) {
        log_error("cluster heartbeats not served: %s", why ? why : tdm_strerror(ret));
        free(why);
        free(key);
        tandemd__core_cluster_hb_stop();
        return;
    }
    tandemd__server_auth_start(base, cfg);
    auth_started = true;
    struct cluster_hb_params p = {
        .base = base,
        .cfg = cfg,
        .listen_fd = fd,
        .server_tls = server_tls,
        .client_tls = client_tls,
        .key = key,
        .verify = tandemd__server_verify,
        .on_change = on_change,
    };
    ret = cluster_hb_start(&p, &hb);
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    if (ret < 0) {
        log_error("cluster heartbeats not served: %s", tdm_strerror(ret));
        close(fd);
        tandemd__core_cluster_hb_stop();
        return;
    }
    if (node)
        log_info("cluster %s: heartbeats on %s:%u to %u member(s) every %llu ms", cfg->cluster.name,
                 l->address.text, (unsigned)l->port, cfg->n_members,
                 (unsigned long long)cfg->cluster.heartbeat_interval_ms);
    else
        log_info("witness: answering cluster heartbeats on %s:%u", l->address.text,
                 (unsigned)l->port);
}

void
tandemd__core_cluster_hb_stop(void)
{
    /* Pending key checks answer first, while the sessions waiting for them exist. */
    if (auth_started)
        tandemd__server_auth_stop();
    auth_started = false;
    cluster_hb_free(&hb);
    if (server_tls)
        SSL_CTX_free(server_tls);
    if (client_tls)
        SSL_CTX_free(client_tls);
    server_tls = client_tls = NULL;
    tdm_config_free(&hb_cfg);
}

/* Milliseconds since a monotonic time, or JSON null for "never". */
static json_t *
age(uint64_t now, uint64_t then)
{
    return then == 0 ? json_null() : json_integer((json_int_t)(now > then ? now - then : 0));
}

/*
 * GET /v1/cluster's object (docs/formats/admin-api.md). An object others extend: the cluster
 * agent adds its members (lease, epoch, CMS states) to the same one.
 */
static json_t *
cluster_hb_json(void)
{
    if (!hb)
        return json_object();
    static struct cluster_hb_snapshot s; /* large; the loop's thread only */
    cluster_hb_snapshot(hb, &s);
    bool node = s.cluster[0] != '\0';
    json_t *members = json_array();
    for (unsigned i = 0; i < s.n_members; i++) {
        const struct cluster_hb_member *m = &s.members[i];
        json_t *nets = json_array();
        for (unsigned j = 0; j < m->n_nets; j++) {
            const struct cluster_hb_net *n = &m->nets[j];
            json_array_append_new(
                nets, json_pack("{s:s,s:s,s:b,s:o,s:o}", "network", n->network, "state",
                                n->up ? "up" : "down", "connected", n->connected,
                                "last_heard_ms_ago", age(s.now_ms, n->last_heard_ms), "rtt_ms",
                                n->last_heard_ms ? json_integer(n->rtt_ms) : json_null()));
        }
        json_array_append_new(
            members, json_pack("{s:s,s:s,s:s,s:b,s:o,s:o,s:o}", "name", m->name, "kind",
                               m->witness ? "witness" : "node", "state", m->seen ? "up" : "down",
                               "gone", m->gone, "last_heard_ms_ago",
                               age(s.now_ms, m->last_heard_ms), "timers_differ",
                               m->timers_differ[0] ? json_string(m->timers_differ) : json_null(),
                               "networks", nets));
    }
    json_t *o = json_pack("{s:s,s:s,s:o}", "server", s.self, "role", node ? "node" : "witness",
                          "members", members);
    if (node) {
        json_object_set_new(o, "cluster", json_string(s.cluster));
        json_object_set_new(o, "heartbeat_interval_ms", json_integer((json_int_t)s.interval_ms));
        json_object_set_new(o, "heartbeat_misses", json_integer(s.misses));
        json_object_set_new(o, "lease_ttl_ms", json_integer((json_int_t)s.lease_ttl_ms));
        json_object_set_new(o, "votes", json_integer(s.votes));
        json_object_set_new(o, "votes_seen", json_integer(s.votes_seen));
        json_object_set_new(o, "quorum", json_integer(s.quorum));
        json_object_set_new(o, "has_quorum", json_boolean(s.has_quorum));
        json_object_set_new(o, "confirmation_ms_ago",
                            s.confirmed ? age(s.now_ms, s.confirmation_ms) : json_null());
    }
    /* The cluster agent's CMSs on a node, the leases and connected nodes on a witness. */
    json_t *more[] = {tandemd__core_cluster_status_json(), tandemd__core_coord_status_json()};
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++)
        if (more[i]) {
            json_object_update(o, more[i]);
            json_decref(more[i]);
        }
    return o;
}

static json_t *
cluster_json(void)
{
    json_t *o = cluster_hb_json();
    /* GET /v1/witness takes this member out of the same document (admin_witness.c), served
     * whether or not this witness answers heartbeats. */
    json_t *w = tandemd__core_coord_witness_json();
    if (w)
        json_object_set_new(o, "witness", w);
    return o;
}

void
tandemd__cluster_status_handle(struct core_conn *c, uint32_t request_id)
{
    json_t *o = cluster_json();
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        log_fatal("out of memory");
    struct ipc_msg msg = {.type = TDM_IPC_CLUSTER_STATUS_REPLY, .request_id = request_id};
    msg.u.cluster_status_reply.json = ipc_str_c(text);
    tandemd__conn_send(c, &msg);
    free(text);
}

/*
 * The witness role in the core (docs/cluster.md, "Leases and epochs"): with `witness` in roles
 * and a [listen coord], the core opens the coordination store in <datadir>/coord/ and serves
 * it to the cluster's nodes (src/coord/coord_server.h), over TLS with client certificates,
 * each node authenticated with its server key as copies are (core_server_auth.c).
 *
 * Unlike the other listeners, the core binds [listen coord] itself: the supervisor hands the
 * core one listening socket (replication's), and the store, the only thing behind this port,
 * is the core's (docs/decisions.md).
 */
#include "tandemd/core_ipc_int.h"

#include "cluster/cluster_end.h"
#include "coord/coord_server.h"
#include "coord/coord_store.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/tls.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

static struct coord_store *store;
static struct coord_server *server;
static SSL_CTX *server_tls;
static bool auth_started;
static char witness_name[256];

void
tandemd__core_coord_start(struct event_base *base, const struct tdm_config *cfg)
{
    const struct tdm_config_listener *l = NULL;
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].proto == TDM_PROTO_COORD)
            l = &cfg->listeners[i];
    if (!l || !(cfg->roles & TDM_ROLE_WITNESS))
        return;
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof(dir), "%s/coord", cfg->datadir) >= sizeof(dir))
        log_fatal("datadir too long");
    const char *error = NULL;
    unsigned n_leases = 0;
    int ret = coord_store_open(dir, tdm_clock_ms(), &store, &n_leases, &error);
    if (ret < 0) {
        event_emit(TDM_EV_COORD_STORE_FAILED, cfg->server,
                   "cannot open the coordination store %s: %s (%s); [listen coord] not served",
                   dir, error ? error : "", tdm_strerror(ret));
        return;
    }
    event_emit(TDM_EV_COORD_STORE_OPENED, cfg->server,
               "coordination store %s opened with %u held lease(s), each renewed from now", dir,
               n_leases);
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    char *why = NULL;
    ret = tls_server_ctx_new(files.certificate, files.key, files.ca, TLS_CLIENT_AUTH_REQUIRE,
                             &server_tls, &why);
    tls_files_clear(&files);
    if (ret < 0) {
        log_error("[listen coord] not served: %s", why ? why : "out of memory");
        free(why);
        tandemd__core_coord_stop();
        return;
    }
    int fd = tandemd__bind_listener(cfg, l, &why);
    if (fd < 0) {
        log_error("%s", why ? why : "cannot bind [listen coord]");
        free(why);
        tandemd__core_coord_stop();
        return;
    }
    tandemd__server_auth_start(base, cfg);
    auth_started = true;
    uint64_t boot_id = 0;
    if (getrandom(&boot_id, sizeof(boot_id), 0) != (ssize_t)sizeof(boot_id))
        boot_id = (uint64_t)getpid() << 32 ^ tdm_clock_ms();
    struct coord_server_options o = {
        .fd = fd,
        .tls = server_tls,
        .store = store,
        .witness = cfg->server,
        .boot_id = boot_id,
        .verify = tandemd__server_verify,
    };
    ret = coord_server_new(base, &o, &server);
    if (ret < 0) {
        log_error("[listen coord] not served: %s", tdm_strerror(ret));
        close(fd);
        tandemd__core_coord_stop();
        return;
    }
    snprintf(witness_name, sizeof(witness_name), "%s", cfg->server);
    log_info("witness: serving the coordination store on %s:%u", l->address.text,
             (unsigned)l->port);
}

void
tandemd__core_coord_stop(void)
{
    /* Pending key checks answer first (orphaned sessions free themselves), then the server
     * (whose sessions close keeping their leases: a restart renews them), then the store. */
    if (auth_started)
        tandemd__server_auth_stop();
    auth_started = false;
    coord_server_free(&server);
    coord_store_close(&store);
    if (server_tls) {
        SSL_CTX_free(server_tls);
        server_tls = NULL;
    }
}

/* ---- status ---- */

static json_t *
renewal_json(enum coord_renewal r)
{
    switch (r) {
    case COORD_RENEWAL_GRANT:
        return json_string("grant");
    case COORD_RENEWAL_RENEW:
        return json_string("renewal");
    case COORD_RENEWAL_TRANSFER:
        return json_string("transfer");
    case COORD_RENEWAL_RESTART:
        return json_string("restart");
    case COORD_RENEWAL_NONE:
        break;
    }
    return json_null();
}

static void
lease_json(void *ctx, const struct coord_server_lease_info *info)
{
    const struct coord_entry *e = info->entry;
    /* Keys with only a value (no lease ever granted) are records, not leases. */
    if (e->epoch == 0)
        return;
    bool renewed = e->renewal != COORD_RENEWAL_NONE;
    json_array_append_new(
        ctx, json_pack("{s:s,s:o,s:I,s:I,s:I,s:b,s:o,s:o}", "key", e->key, "holder",
                       e->holder[0] ? json_string(e->holder) : json_null(), "epoch",
                       (json_int_t)e->epoch, "remaining_ms", (json_int_t)e->remaining_ms,
                       "ttl_ms", (json_int_t)e->ttl_ms, "holder_connected",
                       info->holder_connected, "renewed_by", renewal_json(e->renewal),
                       "renewed_ms_ago",
                       renewed ? json_integer((json_int_t)e->renewed_ms_ago) : json_null()));
}

static void
session_json(void *ctx, const struct coord_server_session_info *info)
{
    if (!info->member[0])
        return; /* not authenticated yet */
    json_array_append_new(
        ctx, json_pack("{s:s,s:s,s:s,s:i,s:I,s:I}", "member", info->member, "cluster",
                       info->cluster, "peer", info->peer, "leases", (int)info->n_leases,
                       "connected_ms_ago", (json_int_t)info->connected_ms_ago,
                       "last_request_ms_ago", (json_int_t)info->last_request_ms_ago));
}

json_t *
tandemd__core_coord_status_json(void)
{
    if (!server)
        return NULL;
    json_t *leases = json_array(), *sessions = json_array();
    coord_server_status(server, lease_json, NULL, leases);
    coord_server_status(server, NULL, session_json, sessions);
    return json_pack("{s:o,s:o}", "leases", leases, "connected", sessions);
}

/* A key's value: a CMS's recorded log end decoded (docs/cluster.md "The recorded log end"),
 * any other value as text when it is UTF-8, else only its length. */
static void
value_json(void *ctx, const struct coord_server_lease_info *info)
{
    const struct coord_entry *e = info->entry;
    if (e->value_version == 0)
        return;
    json_t *v = json_pack("{s:s,s:I,s:i}", "key", e->key, "version",
                          (json_int_t)e->value_version, "length", (int)e->value_len);
    static struct cluster_end_record r; /* large; the loop's thread only */
    const char *why = NULL;
    if (cluster_end_decode(e->value, e->value_len, &r, &why) == 0) {
        json_t *dbs = json_array();
        for (unsigned i = 0; i < r.n_dbs; i++)
            json_array_append_new(
                dbs, json_pack("{s:s,s:I,s:I,s:I,s:I}", "name", r.dbs[i].name, "epoch",
                               (json_int_t)r.dbs[i].pos.epoch, "lsn",
                               (json_int_t)r.dbs[i].pos.lsn, "generation",
                               (json_int_t)r.dbs[i].pos.generation, "offset",
                               (json_int_t)r.dbs[i].pos.offset));
        json_object_set_new(v, "log_end",
                            json_pack("{s:s,s:I,s:o}", "holder", r.holder, "epoch",
                                      (json_int_t)r.epoch, "dbs", dbs));
    } else {
        /* NULL (not UTF-8) leaves the member out: the length says there is a value. */
        json_t *text = json_stringn((const char *)e->value, e->value_len);
        if (text)
            json_object_set_new(v, "text", text);
    }
    json_array_append_new(ctx, v);
}

json_t *
tandemd__core_coord_witness_json(void)
{
    if (!server)
        return NULL;
    json_t *leases = json_array(), *values = json_array(), *sessions = json_array();
    coord_server_status(server, lease_json, NULL, leases);
    coord_server_status(server, value_json, NULL, values);
    coord_server_status(server, NULL, session_json, sessions);
    struct coord_server_counters c;
    coord_server_counters(server, &c);
    json_t *counters = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "sessions_accepted",
        (json_int_t)c.sessions_accepted, "sessions_refused", (json_int_t)c.sessions_refused,
        "requests", (json_int_t)c.requests, "granted", (json_int_t)c.granted, "renewed",
        (json_int_t)c.renewed, "denied", (json_int_t)c.denied, "cas_written",
        (json_int_t)c.cas_written, "cas_conflicts", (json_int_t)c.cas_conflicts, "expired",
        (json_int_t)c.expired, "freed", (json_int_t)c.freed);
    return json_pack("{s:s,s:o,s:o,s:o,s:o}", "server", witness_name, "leases", leases,
                     "values", values, "connected", sessions, "counters", counters);
}

size_t
tandemd__core_coord_sessions(const char *member, const char *why)
{
    return coord_server_sessions(server, member, why);
}

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
#include "lib/tls.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct cluster_hb *hb;
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
tandemd__core_cluster_hb_start(struct event_base *base, const struct tdm_config *cfg)
{
    const struct tdm_config_listener *l = NULL;
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].proto == TDM_PROTO_CLUSTER)
            l = &cfg->listeners[i];
    /* Config checked that a node has [listen cluster]; a witness without one has no votes
     * to give (docs/config.md). */
    if (!l)
        return;
    bool node = cfg->cluster.name[0] != '\0';
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    char *why = NULL;
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
}

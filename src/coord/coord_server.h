#ifndef TANDEM_COORD_COORD_SERVER_H
#define TANDEM_COORD_COORD_SERVER_H

/*
 * The witness's side of the coordination protocol (docs/formats/coord.md): on the core's
 * libevent loop it accepts nodes' sessions on [listen coord], authenticates each HELLO
 * through the core's verify callback (the same check replication uses), and answers lease
 * and value requests from the coordination store (coord_store.h), whose every change is
 * durable before its answer is queued. A session's member is the holder of its lease
 * requests; when the session ends with EOF or a reset its member's leases are freed at once
 * (event 5003; after a timeout they run out their time), and a new session of the same member
 * replaces an older one (whose leases are freed: the node gave up on it).
 * Leases that run out are freed by a timer (5002). Watches send NOTIFY on each change of a
 * key's holder, epoch or value.
 *
 * One loop, one thread: every function here is called on the loop's thread.
 */

#include "coord/coord_store.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct coord_server;

/* As repl_source.h's verify: done(done_ctx, 0 | -EACCES | other, error) exactly once. */
typedef void coord_server_verify_done_cb(void *done_ctx, int status, const char *error);
typedef void coord_server_verify_fn(void *ctx, const char *server, const char *key, size_t key_len,
                                    coord_server_verify_done_cb *done, void *done_ctx);

struct coord_server_options {
    int fd;       /* listening socket, non-blocking; owned from a successful new() */
    SSL_CTX *tls; /* server context, client certificates required; borrowed. NULL: plain TCP,
                   * for tests only */
    struct coord_store *store;      /* borrowed; outlives the server */
    const char *witness;            /* this server's name, for HELLO_REPLY; copied */
    uint64_t boot_id;               /* HELLO_REPLY's boot id */
    coord_server_verify_fn *verify; /* required */
    void *verify_ctx;
    uint32_t idle_timeout_ms; /* close a silent session; 0 = 30000 */
};

/* 0 with *srv_r, or -ENOMEM / -errno / TDM_EINVAL; on failure opt->fd is not taken. */
int coord_server_new(struct event_base *base, const struct coord_server_options *opt,
                     struct coord_server **srv_r);
/* Closes every session (without freeing their leases in the store: a stopping witness keeps
 * them, as a restart would) and frees. NULL allowed. */
void coord_server_free(struct coord_server **srv);

/* The sessions member has open now (HELLO accepted; one still being checked is not counted:
 * its check decides). With drop_why non-NULL each gets ERROR `auth` saying it and is closed,
 * its leases left to run out their time as after any end but EOF: the core's check of live
 * sessions found the node's key refused (src/tandemd/core_server_auth.c). Returns how many
 * there were. NULL srv: 0. */
size_t coord_server_sessions(struct coord_server *srv, const char *member, const char *drop_why);

/* Status: every key (entry as coord_store_list gives it) and whether its holder has a session
 * now; then every session. Strings are borrowed for the callback. */
struct coord_server_lease_info {
    const struct coord_entry *entry;
    bool holder_connected;
};
struct coord_server_session_info {
    const char *member; /* "" before HELLO is accepted */
    const char *cluster;
    const char *peer;
    unsigned n_leases; /* leases it holds */
    uint64_t connected_ms_ago;    /* since its connection was accepted */
    uint64_t last_request_ms_ago; /* since its last message (any, PING too) */
};
void coord_server_status(struct coord_server *srv,
                         void (*lease_cb)(void *ctx, const struct coord_server_lease_info *),
                         void (*session_cb)(void *ctx, const struct coord_server_session_info *),
                         void *ctx);

/* Since the server started (status only). */
struct coord_server_counters {
    uint64_t sessions_accepted; /* HELLOs accepted */
    uint64_t sessions_refused;  /* HELLOs whose key check failed */
    uint64_t requests;          /* messages read from nodes, PING and HELLO too */
    uint64_t granted;           /* ACQUIREs that granted a new epoch */
    uint64_t renewed;           /* ACQUIREs by the live holder */
    uint64_t denied;            /* ACQUIREs of a lease another member holds */
    uint64_t cas_written;
    uint64_t cas_conflicts;
    uint64_t expired; /* leases that ran out their time */
    uint64_t freed;   /* leases freed by the end of their holder's session */
};
void coord_server_counters(const struct coord_server *srv, struct coord_server_counters *out);

#endif

#ifndef TANDEM_ADMIN_ADMIN_INT_H
#define TANDEM_ADMIN_ADMIN_INT_H

/* What the admin server's files share. Nothing outside src/admin includes this. */

#include "admin/admin_server.h"
#include "directory/directory.h"
#include "lib/core_link.h"
#include "lib/ipc.h"

#include <event2/http.h>
#include <jansson.h>
#include <lmdb.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct core_link;
struct store_reader;
struct admin_auth;

/* The principal a request acts as. LOCAL is the unix socket's operator: full control. */
enum admin_who {
    ADMIN_WHO_NONE,
    ADMIN_WHO_LOCAL,
    ADMIN_WHO_USER,
    ADMIN_WHO_SERVER,
};

struct admin_stats {
    uint64_t requests;
    uint64_t auth_failures;
    uint64_t forbidden;
    uint64_t commits;
    uint64_t commit_failures;
};

struct admin_server {
    struct event_base *base;
    const struct tdm_config *cfg;
    enum admin_transport transport;
    int listen_fd;
    struct evhttp *http;
    SSL_CTX *ssl_ctx;             /* TLS transport only */
    struct core_link *core;       /* changes and status go here */
    struct store_reader *dir;     /* NULL until opened and bootstrapped (dir_local.h) */
    struct admin_auth *auth;      /* credential cache and failure delays */
    struct admin_crypto *crypto;  /* the argon2id thread */
    struct dir_client *remote;    /* without the directory role: logins checked by it */
    char *remote_problem;         /* why there is no remote client (for the 503) */
    struct admin_call *calls;     /* every call waiting for something (list) */
    struct admin_stream *streams; /* /v1/events streams (list) */
    struct admin_poll *polls;     /* /v1/changes waiting for a change (list) */
    struct timespec started;
    struct admin_stats stats;
};

/*
 * One request being served. Owned by the server from the moment it is routed until it is
 * answered (admin_reply*), which frees it. When the client goes away first, gone is set:
 * whatever the call waited for then finishes without anyone to answer, and freeing the call
 * frees the request, which evhttp detached from its dead connection and left to us.
 */
struct admin_call {
    struct admin_server *srv;
    struct evhttp_request *req; /* NULL once handed back to evhttp with the reply */
    bool gone;                  /* the client went away (req detached, ours to free) */
    struct admin_call *next, *prev;
    enum evhttp_cmd_type method;
    char *segs[8]; /* percent-decoded path segments (owned) */
    size_t n_segs;
    char *query; /* raw query string (owned) or NULL */
    /* Who. */
    enum admin_who who;
    char who_name[DIR_NAME_MAX + 1];
    /* What a write remembers while its COMMIT is in flight. */
    int success_status; /* 200 or 201 */
    enum dir_kind kind; /* the object written */
    char name[DIR_NAME_MAX + 1];
    int (*on_commit)(struct admin_call *call); /* builds the answer after a durable commit */
    char *flush_name; /* a user or server (kind) whose cached credentials go after the commit */
    uint64_t version; /* /v1/auth/verify: the user's version, read with the hash */
    /* Authentication waiting for the argon2id thread (admin_auth.c). */
    void (*auth_next)(struct admin_call *call);
    uint8_t auth_mac[32]; /* crypto_generichash_BYTES */
    bool auth_server;
    bool auth_dummy; /* no stored secret: the check only takes the time a real one would */
    bool verify_server; /* /v1/auth/verify of a server's key (name is the server's) */
    /* POST /v1/copies/<database>/activate: the copy as COPY_STATUS showed it just before the
     * core was asked (admin_copies.c): what the answer names and reports. */
    bool activate_force;
    uint16_t activate_state;
    char activate_endpoint[TDM_IPC_NETWORK_MAX + 1];
    uint64_t activate_lost_generations, activate_lost_bytes, activate_lost_records;
    /* GET /v1/status: each [cms]'s state here (enum tdm_ipc_cms_state), by config index. */
    uint16_t cms_state[TDM_CONFIG_MAX_CMS];
};

/* ---- admin_server.c: replies ---- */

/* Sends a JSON document (stolen: decref'd here) with status, and frees the call. */
void admin_reply_json(struct admin_call *call, int status, json_t *doc);
/*
 * Sends the error document {"error":{"status","code","message",...}} for status, with extra
 * members (object, principal, right; stolen, may be NULL), and frees the call.
 */
void admin_reply_error(struct admin_call *call, int status, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Sends body (not freed) with status and content_type, and frees the call. */
void admin_reply_buffer(struct admin_call *call, int status, const char *content_type,
                        struct evbuffer *body);
/* Frees a call without answering (its reply was sent some other way, or nobody is left). */
void admin_call_free(struct admin_call *call);
/* From now until the call is answered, the client going away sets call->gone (for calls that
 * wait: commits, failure delays, password checks, streams). */
void admin_call_watch_close(struct admin_call *call);
/* Stops watching (before the call's request goes back to evhttp). */
void admin_call_unwatch(struct admin_call *call);

/* The principal as text: "local", "user:alice", "server:mbx1". */
const char *admin_who_text(const struct admin_call *call, char *buf, size_t size);
/* As a directory principal (USER or SERVER); false for LOCAL. */
bool admin_who_principal(const struct admin_call *call, struct dir_principal *who_r);

/*
 * The directory's handler state and a read transaction. Returns 0, or answers the call
 * itself (503: no directory database here or it cannot be opened; 500) and returns -1.
 */
int admin_dir_begin(struct admin_call *call, void **state_r, MDB_txn **txn_r);

/* Maps a storage error (TDM_*, -errno) from a read to an answer; frees the call. */
void admin_reply_storage_error(struct admin_call *call, int err, const char *what);

/* Commits op through the core; on a durable success calls call->on_commit (which answers),
 * otherwise answers the error. Answers at once when the core is unreachable (503). */
void admin_commit(struct admin_call *call, const struct dir_op *op);

/* ---- admin_crypto.c: argon2id on a helper thread ---- */

struct admin_crypto;

/*
 * Called on the loop thread when a job is done: result 0 (verify: the password matches; hash:
 * hash holds the new argon2id string), -EACCES (verify: it does not), -ENOMEM. The client may
 * have gone meanwhile (call->req NULL): the callback then frees the call.
 */
typedef void admin_crypto_cb(struct admin_call *call, int result, const char *hash);

/* Starts the thread. Returns 0 with an owned *crypto_r, or -errno. */
int admin_crypto_new(struct event_base *base, struct admin_crypto **crypto_r);
/* Stops and joins the thread; jobs not reported are dropped (their calls stay the server's). */
void admin_crypto_free(struct admin_crypto **crypto);
/* Queue a check of password against hash, or the hashing of password; both copied. Returns 0
 * (cb runs later, on the loop), or TDM_ELIMIT when too many jobs wait (answer 503). */
int admin_crypto_verify(struct admin_crypto *crypto, struct admin_call *call, const char *hash,
                        const char *password, admin_crypto_cb *cb);
int admin_crypto_hash(struct admin_crypto *crypto, struct admin_call *call, const char *password,
                      admin_crypto_cb *cb);

/* ---- admin_auth.c ---- */

int admin_auth_new(struct admin_auth **auth_r);
void admin_auth_free(struct admin_auth **auth);

/*
 * Decides who sent call (Authorization header, or SO_PEERCRED on the unix socket). On
 * success sets call->who / who_name and calls next(call). On failure answers 401 itself,
 * after the failure delay for the client (a timer: the loop goes on serving others).
 */
void admin_auth_request(struct admin_call *call, void (*next)(struct admin_call *call));

/* Forgets every cached credential of a user or server (after its password or key changed or
 * it was deleted). */
void admin_auth_forget(struct admin_auth *auth, bool server, const char *name);

/* Drops calls waiting in the failure delay for server shutdown. */
void admin_auth_cancel_all(struct admin_auth *auth);

/* ---- admin_objects.c ---- */

/* /v1/objects/...: routes by method and path (segs[2..]) and serves. Answers every case. */
void admin_objects_serve(struct admin_call *call);
/* /v1/whoami */
void admin_whoami_serve(struct admin_call *call);

/*
 * Whether call may act with right on (kind, name). LOCAL may do anything. Returns 1 when
 * allowed; 0 after answering 403 (or 404 when the object does not exist and
 * missing_is_404); -1 after answering a storage error. *had_r (may be NULL) gets the right
 * the principal has.
 */
int admin_authorize(struct admin_call *call, void *state, MDB_txn *txn, enum dir_kind kind,
                    const char *name, enum dir_right need, bool missing_is_404);

/* Whether the principal is a member of `admins` (LOCAL: yes). <0 on a storage error. */
int admin_is_admin(const struct admin_call *call, void *state, MDB_txn *txn, bool *admin_r);

/* Decodes the request body as type. Returns 0, or answers 400/413 and returns -1. */
struct admin_req;
int admin_read_body(struct admin_call *call, int type, struct admin_req *req_r);

/* ---- admin_peers.c: what other servers ask ---- */

void admin_auth_verify_serve(struct admin_call *call);
void admin_changes_serve(struct admin_call *call);
void admin_recipients_serve(struct admin_call *call);
/* Ends every held /v1/changes (shutdown). */
void admin_polls_close_all(struct admin_server *srv);

/* ---- admin_status.c ---- */

/*
 * need (read to see, write to change) on this server's `server` object. When the directory has
 * no object for this server yet, only admins (and `local`) may: there is no ACL to grant anyone
 * else. Returns 1 when allowed, 0 after answering.
 */
int admin_authorize_server(struct admin_call *call, enum dir_right need);
/* Sends a request to the core; answers 503 itself when it cannot. */
void admin_ask_core(struct admin_call *call,
                    int (*req)(struct core_link *, core_link_reply_cb *, void *),
                    core_link_reply_cb *cb);
void admin_status_serve(struct admin_call *call);
/* ---- admin_cluster.c: GET /v1/cluster, GET /v1/witness ---- */

void admin_cluster_serve(struct admin_call *call);
void admin_witness_serve(struct admin_call *call);
/* admin_cms.c: POST /v1/cms/<cms>/move (switchover). Answers every case. */
void admin_cms_serve(struct admin_call *call);
void admin_metrics_serve(struct admin_call *call);
void admin_events_serve(struct admin_call *call);
/* Ends every events stream (shutdown). */
void admin_streams_close_all(struct admin_server *srv);

/* ---- admin_dumpster.c: the transport dumpster (docs/smtp.md) ---- */

/* /v1/dumpster (GET) and /v1/dumpster/resubmit (POST). Answers every case. */
void admin_dumpster_serve(struct admin_call *call);

/* ---- admin_copies.c: this server's copies (docs/replication.md) ---- */

/* /v1/copies (GET), /v1/copies/<database> (DELETE) and
 * /v1/copies/<database>/suspend|resume|activate (POST). Answers every case. */
void admin_copies_serve(struct admin_call *call);
/* admin_databases.c: POST /v1/databases/<database>/dismount | mount. */
void admin_databases_serve(struct admin_call *call);
/* The copies' figures for /metrics, labelled by database. */
struct evbuffer;
void admin_metrics_copies(struct evbuffer *out, const struct ipc_copy_status_reply *r);

#endif

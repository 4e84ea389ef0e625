#ifndef TANDEM_LIB_CORE_LINK_H
#define TANDEM_LIB_CORE_LINK_H

/*
 * A worker's connection to its server's core process (DESIGN.md "Processes"): the way every
 * change reaches a database. The core listens on the unix socket <datadir>/run/core.sock; a
 * link connects there, sends HELLO (lib/ipc.h) with its worker kind, and then carries
 * COMMIT / COMMIT_REPLY, STATUS_REQUEST / STATUS_REPLY, DB_STATUS_REQUEST / DB_STATUS_REPLY
 * and SUBSCRIBE / CHANGED, matched by request id, and the core's pushes (CHANGED,
 * FOLDER_CHANGED, DB_DISMOUNTED).
 *
 * The link lives on the worker's libevent loop (one thread). When the core is not there (it is
 * starting, or restarting after a crash), the link reconnects with back-off (50 ms doubling to
 * 2 s) and requests made meanwhile fail at once with TDM_ECLOSED: a worker answers its client
 * "try again" rather than queueing writes it cannot vouch for. A request in flight when the
 * connection drops gets TDM_ECLOSED too: its record may or may not have been committed (the
 * client sees the same uncertainty as after any lost connection).
 *
 * A malformed frame from the core is a bug: the link logs it, drops the connection and
 * reconnects.
 */

#include "lib/ipc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct core_link;

/* Where the core listens, relative to the datadir: connect to "<datadir>/" CORE_LINK_SOCKET. */
#define CORE_LINK_SOCKET "run/core.sock"

/*
 * Creates a link that connects to socket_path (borrowed for the call) as a worker of kind
 * (enum tdm_ipc_worker_kind), on base. Connecting starts at once, asynchronously. Returns 0 with
 * an owned *link_r, or -ENOMEM / TDM_EINVAL (empty path, path too long for a sockaddr_un, or
 * an unknown kind).
 */
int core_link_new(struct event_base *base, const char *socket_path, uint16_t kind,
                  struct core_link **link_r);

/* Fails every request in flight with TDM_ECLOSED (their callbacks run before this returns),
 * closes the connection and frees the link. NULL allowed; *link is set to NULL. May be called
 * from inside one of the link's callbacks (the memory goes when that callback returns). */
void core_link_free(struct core_link **link);

/* True when HELLO has been answered and requests can be sent. */
bool core_link_ready(const struct core_link *link);

/*
 * Called once per request: status 0 with the reply message (borrowed for the call: strings
 * point into the received frame), or a negative code with reply NULL (TDM_ECLOSED: the link
 * dropped or was freed). For COMMIT, status 0 means the core answered; the store's verdict is
 * reply->u.commit_reply.status.
 */
typedef void core_link_reply_cb(void *ctx, int status, const struct ipc_msg *reply);

/*
 * Sends one log record to commit in database. payload is copied. Returns 0 (cb will be called
 * exactly once, never from inside this call) or an error, and then cb is never called:
 * TDM_ECLOSED (not connected), TDM_EINVAL (the message breaks a rule of ipc.h), TDM_ELIMIT
 * (4096 requests already in flight), -ENOMEM.
 * The store's verdicts come back in COMMIT_REPLY's status: TDM_ENOTFOUND (no database of that
 * name is mounted), TDM_EINVAL (the payload does not validate), TDM_ENOSPACE, TDM_EFAILED,
 * TDM_ECLOSED (the core is shutting down), or the mail model's refusals (TDM_EEXIST...).
 */
int core_link_commit(struct core_link *link, const char *database, uint16_t record_type,
                     const void *payload, size_t len, core_link_reply_cb *cb, void *ctx);

/* STATUS_REQUEST: the core's counters (for /metrics). Same contract as core_link_commit. */
int core_link_status(struct core_link *link, core_link_reply_cb *cb, void *ctx);

/* DB_STATUS_REQUEST: every mounted database's state. Same contract as core_link_commit. */
int core_link_db_status(struct core_link *link, core_link_reply_cb *cb, void *ctx);

/* COPY_STATUS_REQUEST: every copy this server holds. Same contract as core_link_commit. */
int core_link_copy_status(struct core_link *link, core_link_reply_cb *cb, void *ctx);

/* CMS_STATUS_REQUEST: every [cms] and whether its address is up here. Same contract. */
int core_link_cms_status(struct core_link *link, core_link_reply_cb *cb, void *ctx);
/* CLUSTER_STATUS_REQUEST; the reply is CLUSTER_STATUS_REPLY. */
int core_link_cluster_status(struct core_link *link, core_link_reply_cb *cb, void *ctx);
/* CMS_MOVE (strings copied into the frame); the reply is CMS_MOVE_REPLY. */
int core_link_cms_move(struct core_link *link, const char *cms, const char *to, const char *comment,
                       core_link_reply_cb *cb, void *ctx);

/* COPY_CONTROL: suspend (with comment, copied; may be NULL) or resume (comment NULL) the copy
 * of database. Same contract as core_link_commit; the core's verdict is COPY_CONTROL_REPLY's
 * status (TDM_ENOTFOUND: no such copy). */
int core_link_copy_control(struct core_link *link, const char *database, uint16_t action,
                           const char *comment, core_link_reply_cb *cb, void *ctx);

/*
 * Called for every CHANGED the core pushes for a subscription of this link (msg borrowed for
 * the call). Set once; NULL to stop.
 */
typedef void core_link_changed_cb(void *ctx, const struct ipc_msg *msg);
void core_link_set_changed_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx);
/* The same for FOLDER_CHANGED (a subscribed folder created, deleted or renamed). */
void core_link_set_folder_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx);
/* The same for DB_DISMOUNTED: the whole list of databases dismounted on this server now, at
 * every dismount and mount (a worker that sets none ignores them). Also called with an empty
 * list each time the link becomes ready, just before the ready callback: what was down before
 * the core went away is forgotten, and the core's list follows at once when it is not empty. */
void core_link_set_dismounted_cb(struct core_link *link, core_link_changed_cb *cb, void *ctx);

/*
 * Called each time the link becomes ready (HELLO answered), after the subscriptions were sent
 * again. While the core was away no CHANGED could come: a subscriber looks at its folders
 * again here. Set once; NULL to stop. The callback may free the link.
 */
typedef void core_link_ready_cb(void *ctx);
void core_link_set_ready_cb(struct core_link *link, core_link_ready_cb *cb, void *ctx);

/* SUBSCRIBE / UNSUBSCRIBE (one-way). Subscriptions are re-sent after a reconnect. Returns 0,
 * TDM_EINVAL or -ENOMEM. */
int core_link_subscribe(struct core_link *link, const char *database, const char *mailbox,
                        const char *folder);
int core_link_unsubscribe(struct core_link *link, const char *database, const char *mailbox,
                          const char *folder);

#endif

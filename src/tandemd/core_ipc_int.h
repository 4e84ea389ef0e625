#ifndef TANDEM_TANDEMD_CORE_IPC_INT_H
#define TANDEM_TANDEMD_CORE_IPC_INT_H

/* What core_ipc.c (connections) and core_commit.c (commits, CHANGED) share. Loop thread only. */

#include "lib/ipc.h"
#include "tandemd/tandemd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CORE_IPC_MAX_INFLIGHT 256u /* commits in flight per connection */

struct core_sub; /* core_subs.c */

struct core_conn {
    struct core_conn *prev, *next; /* live connections; a zombie is off the list */
    struct bufferevent *bev;       /* NULL once closed */
    struct ipc_reader *reader;
    uint32_t pid; /* from HELLO (checked against SO_PEERCRED); 0 before */
    uint16_t kind;
    bool hello_done;
    bool closed;         /* socket gone; freed when inflight == 0 and busy == 0 */
    bool paused;         /* reading stopped: CORE_IPC_MAX_INFLIGHT reached */
    bool close_on_flush; /* HELLO refused: close once the reply is written */
    unsigned busy;       /* nesting depth of code that still uses the struct (read, reply) */
    unsigned inflight;   /* commits handed to a store, not yet answered */
    struct core_sub *subs; /* its subscriptions (core_subs.c), dropped when it closes */
    size_t n_subs;
    uint64_t gather_stamp; /* core_subs.c: already gathered by the current lookup */
};

/* Counters for STATUS_REPLY. */
struct core_ipc_stats {
    uint64_t connections_total;
    uint64_t commits_total;
    uint64_t commit_errors_total;
    uint64_t protocol_errors_total;
    uint64_t slow_dropped_total;
    uint64_t changed_sent_total;
};
extern struct core_ipc_stats tandemd__core_stats;

/* The live connections (core_ipc.c's list). */
extern struct core_conn *tandemd__conns;

/* core_ipc.c. Sends msg (nothing if c is closed); a worker with too much unread output is
 * dropped here, so c may be closed on return. */
void tandemd__conn_send(struct core_conn *c, const struct ipc_msg *msg);
/* Frees a closed connection once nothing uses it (busy and inflight both 0). */
void tandemd__conn_free_if_done(struct core_conn *c);
/* Handles the frames buffered on c; called again when a paused connection may read. */
void tandemd__conn_process(struct core_conn *c);
/* Sends DB_DISMOUNTED, the databases fenced or dismounted now, to every worker
 * (core_dismount.c, after each change). */
void tandemd__core_ipc_dismounted_push(void);
/* strndup, fatal on allocation failure (CONVENTIONS: xmalloc outside store). */
char *tandemd__xstrndup(const char *s, size_t n);

/* core_subs.c: the subscriptions of every connection, indexed by folder. SUBSCRIBE: returns
 * 0, 1 when c already holds it, TDM_ELIMIT when c holds TDM_IPC_MAX_SUBSCRIPTIONS. */
int tandemd__subs_add(struct core_conn *c, const struct ipc_subscribe *s);
/* UNSUBSCRIBE: nothing when c does not hold it. */
void tandemd__subs_remove(struct core_conn *c, const struct ipc_subscribe *s);
/* Every subscription of c (it closes). */
void tandemd__subs_drop(struct core_conn *c);
/* Sends msg (unless NULL) once to each live connection subscribed to mailbox/folder, or to
 * every folder of mailbox; returns how many that is. A send may close a connection. */
size_t tandemd__subs_send(const char *database, const char *mailbox, const char *folder,
                          const struct ipc_msg *msg);
/* At the end: every connection has closed. */
void tandemd__subs_free(void);

/* core_commit.c. A decoded COMMIT from c (after HELLO): answered now (unknown database, a
 * refusal before the log) or when the store calls back. */
void tandemd__commit_handle(struct core_conn *c, const struct ipc_msg *msg);
/* After c's SUBSCRIBE to s took effect: sends c a CHANGED with the folder's state now, when
 * the folder exists in a database mounted here (docs/formats/ipc.md, SUBSCRIBE). */
void tandemd__commit_announce(struct core_conn *c, const struct ipc_subscribe *s);
/* The wake-up from the apply threads, on base. */
void tandemd__commit_start(struct event_base *base);
/* After every store closed: drops the replies nobody will read and the wake-up. */
void tandemd__commit_free(void);
/* Sends (send) or drops a commit's reply the sync gate held, and frees it. */
void tandemd__commit_release(void *item, bool send);

/* core_sync.c: the sync gate of databases served in sync mode (docs/replication.md). */
struct event_base;
/* Database is served in sync mode: replies wait for a passive copy's ACK, at most timeout_ms
 * unless strict. At start, once per database (a second call is ignored). */
void tandemd__sync_configure(struct event_base *base, const char *database, uint32_t timeout_ms,
                             bool strict);
/* A commit of database made durable and applied at lsn: true when the gate took item (it
 * comes back through tandemd__commit_release), false to answer it now. */
bool tandemd__sync_hold(const char *database, uint64_t lsn, void *item);
/* A copy's ACK (repl_source's ack callback): releases what a passive's durable LSN covers. */
void tandemd__sync_ack(const char *database, const char *server, uint16_t role,
                       uint64_t durable_lsn);
/* "sync", "degraded", or NULL when database is not in sync mode. */
const char *tandemd__sync_state(const char *database);
/* At the end: held replies are dropped unsent, every database forgotten. */
void tandemd__sync_free(void);

#endif

#ifndef TANDEM_IPC_H
#define TANDEM_IPC_H

/*
 * Wire contract between tandemd's supervisor, core and worker processes (DESIGN.md,
 * "Processes"). docs/formats/ipc.md says the same for developers and operators. The codec is
 * src/lib/ipc.h. All integers are little-endian. Changing any layout below means a new protocol
 * version.
 *
 * Frame, one per message, sent back to back on a stream socket:
 *    0   4  total length L of the frame in bytes, this field through the CRC:
 *           TDM_IPC_FRAME_OVERHEAD <= L <= TDM_IPC_MAX_FRAME
 *    4   2  protocol version (see "Versions" below)
 *    6   2  message type (enum tdm_ipc_type)
 *    8   4  request id: chosen by the sender of a request, echoed by the reply. Non-zero for
 *           HELLO, COMMIT, STATUS_REQUEST, DB_STATUS_REQUEST and their replies; zero for
 *           one-way messages
 *   12   4  flags: 0 (reserved)
 *   16   n  payload, n = L - 20 bytes
 * 16+n   4  CRC32C of bytes [0, 16+n)
 *
 * A receiver checks, in this order: the length bounds (as soon as 4 bytes are there, so a wild
 * length never makes it wait or allocate), the CRC, the type, the version, the flags, the
 * request id rule, then the payload to its last byte. Any failure means the peer has a bug: the
 * receiver says which check failed and ends the connection (and the supervisor the process).
 *
 * Payload: a fixed sequence of fields per message type, no optional fields, no padding, so a
 * message has exactly one encoding. Every field starts with a one-byte tag (enum
 * tdm_ipc_field) that must match the schema:
 *    U16, U32, U64, I32   tag, then the value (2, 4, 8, 4 bytes)
 *    STR                  tag, u32 length k, k bytes: no NUL byte, not NUL-terminated
 *    BYTES                tag, u32 length k, k bytes of anything
 *    LIST                 tag, u32 count c, then c elements, each the element's fields in order
 * A field's length or count may not run past the end of the payload, and the last field must
 * end exactly at the payload's end.
 *
 * Messages (field name: tag, rule):
 *   HELLO           worker -> core, first message on a worker's connection.
 *                   kind: U16 (enum tdm_ipc_worker_kind); pid: U32, > 0;
 *                   version_min: U16, >= 1; version_max: U16, >= version_min
 *   HELLO_REPLY     core -> worker. version: U16, the version both now speak, or 0 = refused;
 *                   reason: STR, <= TDM_IPC_REASON_MAX, empty if and only if version != 0
 *   COMMIT          worker -> core: one store log record to commit.
 *                   database: STR, 1..TDM_IPC_NAME_MAX; record_type: U16, not 0 or END (1);
 *                   payload: BYTES, <= TDM_LOG_MAX_PAYLOAD (the record payload, as the store's
 *                   mail record codec builds it)
 *   COMMIT_REPLY    core -> worker: the store's answer (struct mail_result in src/store/mail.h).
 *                   status: I32, <= 0 (0 or a lib/err.h code); lsn: U64; uidvalidity: U32;
 *                   first_uid: U32; count: U32; modseq: U64;
 *                   targets: LIST of <= TDM_IPC_MAX_TARGETS elements
 *                            {status: I32, <= 0; uid: U32; uidvalidity: U32}
 *   SUBSCRIBE       worker -> core: send CHANGED for this folder to this worker (and one at
 *                   once with its state, when the folder exists here: docs/formats/ipc.md).
 *   UNSUBSCRIBE     worker -> core: stop. Both: database: STR, 1..TDM_IPC_NAME_MAX;
 *                   mailbox: STR, 1..TDM_IPC_NAME_MAX; folder: STR, 0..TDM_IPC_NAME_MAX
 *                   (empty = every folder of the mailbox)
 *   CHANGED         core -> workers: a folder changed; IMAP sessions look and send
 *                   EXISTS/EXPUNGE/FETCH. database, mailbox: STR, 1..TDM_IPC_NAME_MAX;
 *                   folder: STR, 1..TDM_IPC_NAME_MAX; uidvalidity: U32 (a new value means the
 *                   folder was recreated); uidnext: U32; exists: U32 (messages now in the
 *                   folder); highestmodseq: U64
 *   FOLDER_CHANGED  core -> workers: a subscribed folder was created, deleted or renamed
 *                   (a rename moves inferiors too: one message per subscribed one).
 *                   database, mailbox, folder: STR, 1..TDM_IPC_NAME_MAX (folder: the name
 *                   before the change); change: U16 (enum tdm_ipc_folder_change);
 *                   new_folder: STR, 0..TDM_IPC_NAME_MAX, not empty if and only if renamed;
 *                   uidvalidity: U32, the folder's (kept by a rename), 0 if and only if deleted
 *   DB_DISMOUNTED   core -> workers: every database of this server that is dismounted now
 *                   (docs/replication.md, "Dismount and mount"), sent to every worker at each
 *                   dismount and mount, and right after HELLO_REPLY when the list is not empty
 *                   (a worker that hears nothing after HELLO_REPLY knows of none). Workers end
 *                   the sessions of a database listed, close its LMDB and refuse it until a
 *                   later DB_DISMOUNTED leaves it out. databases: LIST of
 *                   <= TDM_IPC_MAX_DATABASES elements {name: STR, 1..TDM_IPC_NAME_MAX, unique,
 *                   ascending byte order}
 *   SHUTDOWN        supervisor -> any: finish and exit. reason: STR, 1..TDM_IPC_REASON_MAX;
 *                   deadline_ms: U32 (after this the supervisor kills the process)
 *   RELOAD          supervisor -> any: reread the configuration. generation: U64
 *   STATUS_REQUEST  supervisor -> any, or worker -> core: empty payload
 *   STATUS_REPLY    the answer: counters for /metrics. counters: LIST of
 *                   <= TDM_IPC_MAX_COUNTERS elements {name: STR, 1..TDM_IPC_COUNTER_NAME_MAX,
 *                   [A-Za-z_][A-Za-z0-9_]*, unique in the list; value: U64}. Figures per
 *                   database are not counters here: they come from DB_STATUS_REPLY, so names
 *                   need no Prometheus labels
 *   DB_STATUS_REQUEST  worker -> core: empty payload
 *   DB_STATUS_REPLY    core -> worker: every database the core knows (mounted, or found under
 *                   <datadir>/db/ and refused at mount), in name order. databases: LIST of
 *                   <= TDM_IPC_MAX_DATABASES elements {name: STR, 1..TDM_IPC_NAME_MAX, unique in
 *                   the list, in ascending byte order; kind: STR, 0..TDM_IPC_KIND_MAX (empty when
 *                   unreadable); state: U16 (enum tdm_ipc_db_state); last_lsn, durable_lsn,
 *                   applied_lsn, checkpoint_lsn, current_generation, lowest_generation, commits,
 *                   syncs: U64 each (struct store_status in src/store/store.h; all 0 for a
 *                   database that did not mount); sync: U16 (0 not in sync mode, 1 replies
 *                   wait for a passive copy, 2 degraded to block: docs/replication.md)}
 *   COPY_STATUS_REQUEST  worker -> core: empty payload
 *   COPY_STATUS_REPLY    core -> worker: every copy this server holds (docs/replication.md,
 *                   "Copies"), in name order. copies: LIST of <= TDM_IPC_MAX_COPIES elements
 *                   {name: STR, 1..TDM_IPC_NAME_MAX, unique, ascending byte order; state: U16
 *                   (enum tdm_ipc_copy_state); role: U16 (1 passive, 2 standby); mode: U16 (0
 *                   unknown, 1 file, 2 block, 3 sync); compression: U16 (0 none, 1 zstd);
 *                   message: STR, 0..TDM_IPC_REASON_MAX;
 *                   network: STR, 0..TDM_IPC_NETWORK_MAX; endpoint: STR, 0..TDM_IPC_NETWORK_MAX;
 *                   inspection_failures: U32; then the TDM_IPC_COPY_N_FIGURES U64 figures in
 *                   the order of struct ipc_copy_status (src/lib/ipc.h)}; total: U32, the copies
 *                   the server holds (>= the list's length; more only when the list is full:
 *                   the first TDM_IPC_MAX_COPIES by name are listed)
 *   COPY_CONTROL    worker -> core: suspend, resume, reseed, activate or remove a copy. database: STR, 1..TDM_IPC_NAME_MAX;
 *                   action: U16 (enum tdm_ipc_copy_action); comment: STR, 0..TDM_IPC_REASON_MAX
 *                   (empty unless action is suspend). Actions 8 and 9 are not about a copy:
 *                   they dismount and mount an active database
 *   COPY_CONTROL_REPLY  core -> worker: status: I32 (0, TDM_ENOTFOUND: no such copy,
 *                   TDM_EFAILED: its agent never started; activate: TDM_ECONFLICT its source
 *                   still serves it as active, TDM_EGAP nothing proves it has all the log;
 *                   reseed: TDM_EEXIST the copy has files and the action is not
 *                   _DELETE_EXISTING; or
 *                   another negative lib/err.h code)
 *   CMS_CONTROL     core -> supervisor: bring the address of a [cms] up or down here
 *                   (docs/cluster.md, "CMS address"). cms: STR, 1..TDM_IPC_NAME_MAX; proto: U16,
 *                   0; state: U16, DOWN (0) or UP (1)
 *   CMS_STATE       supervisor -> core: where that stands. Same fields; state: DOWN, UP (every
 *                   port bound and handed over) or BINDING (a bind is being retried)
 *   CMS_LISTEN      supervisor -> worker or core. Same fields. state UP: a listening socket on
 *                   the CMS's address for proto (enum tdm_proto of src/lib/config.h, below
 *                   TDM_IPC_PROTO_MAX) is the next one on the receiver's descriptor channel
 *                   (SCM_RIGHTS; docs/formats/ipc.md), serve it too; state DOWN (proto 0):
 *                   close every socket of this CMS and end the connections accepted on them
 *   CMS_STATUS_REQUEST  worker -> core: empty payload
 *   CMS_STATUS_REPLY    core -> worker: every [cms] of the configuration, in name order.
 *                   cms: LIST of <= TDM_IPC_MAX_CMS elements {name: STR, 1..TDM_IPC_NAME_MAX,
 *                   unique, ascending byte order; state: U16 (enum tdm_ipc_cms_state)}
 *   CLUSTER_STATUS_REQUEST  worker -> core: empty payload
 *   CLUSTER_STATUS_REPLY    core -> worker: the cluster as this core sees it (GET /v1/cluster,
 *                   docs/formats/admin-api.md). json: STR, 2..TDM_IPC_CLUSTER_JSON_MAX, a JSON
 *                   object the core builds (heartbeats, and what the cluster agent adds), passed
 *                   through by the admin worker; {} on a server in no cluster
 *   CMS_MOVE        worker -> core: switch the CMS over to another node (docs/cluster.md,
 *                   "Switchover"). cms: STR, 1..TDM_IPC_NAME_MAX; to: STR, 1..TDM_IPC_NAME_MAX;
 *                   comment: STR, 0..TDM_IPC_REASON_MAX
 *   CMS_MOVE_REPLY  core -> worker: whether the move was asked (it runs on; GET /v1/cluster
 *                   says how it ends). status: I32 (0; TDM_ENOTFOUND no such CMS here or no
 *                   such node; TDM_ECONFLICT a move is running; TDM_EINVAL not active here or the
 *                   target cannot take it); error: STR, 0..TDM_IPC_REASON_MAX, empty exactly
 *                   when status is 0
 *
 * Versions: a build speaks versions TDM_IPC_VERSION_MIN..TDM_IPC_VERSION. HELLO and
 * HELLO_REPLY frames always carry TDM_IPC_HELLO_VERSION in the version field and their layouts
 * never change, so processes from different builds (a worker restarted after an upgrade) can
 * always negotiate: the core answers the highest version both ranges share, and every later
 * frame on the connection carries that version.
 */

#include "tandem/log_format.h"

#include <stdint.h>

#define TDM_IPC_VERSION 1u       /* the newest version this build speaks */
#define TDM_IPC_VERSION_MIN 1u   /* the oldest version this build speaks */
#define TDM_IPC_HELLO_VERSION 1u /* the version field of every HELLO and HELLO_REPLY frame */

#define TDM_IPC_HEADER_SIZE 16u
#define TDM_IPC_TRAILER_SIZE 4u
#define TDM_IPC_FRAME_OVERHEAD (TDM_IPC_HEADER_SIZE + TDM_IPC_TRAILER_SIZE)
/* A COMMIT carries a whole log record payload plus its small fields: 64 KiB of room for them. */
#define TDM_IPC_MAX_PAYLOAD (TDM_LOG_MAX_PAYLOAD + 64u * 1024u)
#define TDM_IPC_MAX_FRAME (TDM_IPC_MAX_PAYLOAD + TDM_IPC_FRAME_OVERHEAD)

#define TDM_IPC_NAME_MAX 255u         /* database, mailbox and folder names (MAIL_NAME_MAX) */
#define TDM_IPC_REASON_MAX 1024u      /* HELLO_REPLY and SHUTDOWN reasons */
#define TDM_IPC_MAX_TARGETS 64u       /* COMMIT_REPLY targets (MAIL_MAX_TARGETS) */
#define TDM_IPC_MAX_COUNTERS 256u     /* STATUS_REPLY counters */
#define TDM_IPC_COUNTER_NAME_MAX 128u /* bytes in a counter name */
#define TDM_IPC_MAX_DATABASES 100u    /* DB_STATUS_REPLY entries (Exchange 2007: 50 per server) */
#define TDM_IPC_KIND_MAX 32u          /* bytes in a database kind (STORE_KIND_MAX) */
#define TDM_IPC_MAX_COPIES 64u        /* COPY_STATUS_REPLY entries: copies held by one server */
#define TDM_IPC_NETWORK_MAX 63u       /* a network name, or an endpoint "[v6]:port" */
#define TDM_IPC_COPY_N_FIGURES 21u    /* U64 figures per copy in COPY_STATUS_REPLY */
#define TDM_IPC_MAX_CMS 16u           /* CMS_STATUS_REPLY entries (TDM_CONFIG_MAX_CMS fits) */
#define TDM_IPC_CLUSTER_JSON_MAX (256u * 1024u) /* CLUSTER_STATUS_REPLY.json */
#define TDM_IPC_PROTO_MAX 16u         /* CMS_LISTEN.proto: below it (enum tdm_proto in config.h) */
/* Subscriptions one worker may hold: an IMAP worker holds one per folder its sessions have
 * selected, so this bounds folders, not connections (10,000 and more per worker). */
#define TDM_IPC_MAX_SUBSCRIPTIONS 65536u

enum tdm_ipc_type {
    TDM_IPC_HELLO = 1,
    TDM_IPC_HELLO_REPLY = 2,
    TDM_IPC_COMMIT = 16,
    TDM_IPC_COMMIT_REPLY = 17,
    TDM_IPC_SUBSCRIBE = 32,
    TDM_IPC_UNSUBSCRIBE = 33,
    TDM_IPC_CHANGED = 34,
    TDM_IPC_FOLDER_CHANGED = 35,
    TDM_IPC_DB_DISMOUNTED = 36,
    TDM_IPC_SHUTDOWN = 48,
    TDM_IPC_RELOAD = 49,
    TDM_IPC_STATUS_REQUEST = 64,
    TDM_IPC_STATUS_REPLY = 65,
    TDM_IPC_DB_STATUS_REQUEST = 66,
    TDM_IPC_DB_STATUS_REPLY = 67,
    TDM_IPC_COPY_STATUS_REQUEST = 68,
    TDM_IPC_COPY_STATUS_REPLY = 69,
    TDM_IPC_COPY_CONTROL = 70,
    TDM_IPC_COPY_CONTROL_REPLY = 71,
    TDM_IPC_CMS_CONTROL = 80,
    TDM_IPC_CMS_STATE = 81,
    TDM_IPC_CMS_LISTEN = 82,
    TDM_IPC_CMS_STATUS_REQUEST = 83,
    TDM_IPC_CMS_STATUS_REPLY = 84,
    TDM_IPC_CMS_MOVE = 85,
    TDM_IPC_CMS_MOVE_REPLY = 86,
    TDM_IPC_CLUSTER_STATUS_REQUEST = 90,
    TDM_IPC_CLUSTER_STATUS_REPLY = 91,
};

/* CMS_CONTROL.state (what the core asks), CMS_STATE.state (where the supervisor is) and
 * CMS_STATUS_REPLY.cms.state (docs/cluster.md, "CMS address"). */
enum tdm_ipc_cms_state {
    TDM_IPC_CMS_DOWN = 0,    /* not here: nothing bound */
    TDM_IPC_CMS_UP = 1,      /* CMS_CONTROL: bring it up; CMS_STATE and status: every port bound */
    TDM_IPC_CMS_BINDING = 2, /* CMS_STATE and status: asked up, a bind is being retried */
};

enum tdm_ipc_field {
    TDM_IPC_F_U16 = 1,
    TDM_IPC_F_U32 = 2,
    TDM_IPC_F_U64 = 3,
    TDM_IPC_F_I32 = 4,
    TDM_IPC_F_STR = 5,
    TDM_IPC_F_BYTES = 6,
    TDM_IPC_F_LIST = 7,
};

enum tdm_ipc_db_state {
    TDM_IPC_DB_MOUNTED = 1,      /* serving */
    TDM_IPC_DB_FAILED = 2,       /* refused at mount, or a write or sync failed since */
    TDM_IPC_DB_DISK_RESERVE = 3, /* mounted, new commits refused: disk reserve reached */
};

/* FOLDER_CHANGED.change */
enum tdm_ipc_folder_change {
    TDM_IPC_FOLDER_CREATED = 1,
    TDM_IPC_FOLDER_DELETED = 2,
    TDM_IPC_FOLDER_RENAMED = 3,
};

/* A copy's state in COPY_STATUS_REPLY (docs/replication.md, "States"). */
enum tdm_ipc_copy_state {
    TDM_IPC_COPY_INITIALIZING = 1,
    TDM_IPC_COPY_HEALTHY = 2,
    TDM_IPC_COPY_DISCONNECTED = 3,
    TDM_IPC_COPY_SERVICE_DOWN = 4,
    TDM_IPC_COPY_RESYNCHRONIZING = 5,
    TDM_IPC_COPY_FAILED = 6,
    TDM_IPC_COPY_SUSPENDED = 7,
    TDM_IPC_COPY_SEEDING = 8,
};

enum tdm_ipc_copy_action {
    TDM_IPC_COPY_SUSPEND = 1,
    TDM_IPC_COPY_RESUME = 2,
    /* Rebuild the copy from a snapshot of its active (docs/replication.md, "Reseed"):
     * refused (TDM_EEXIST) while the copy has files, unless _DELETE_EXISTING. */
    TDM_IPC_COPY_RESEED = 3,
    /* Activate the copy here (docs/replication.md, "Activation"). */
    TDM_IPC_COPY_ACTIVATE = 4,
    TDM_IPC_COPY_ACTIVATE_FORCE = 5,
    /* Stop the copy's agent and delete its files (docs/replication.md, "Removing a copy"). */
    TDM_IPC_COPY_REMOVE = 6,
    /* Not about a copy: this server's active database (docs/replication.md, "Dismount and
     * mount"). 0 also when it already is as asked; TDM_ENOTFOUND when no active database of
     * that name is here (a copy included). */
    TDM_IPC_DB_DISMOUNT = 8,
    TDM_IPC_DB_MOUNT = 9,
    TDM_IPC_COPY_RESEED_DELETE_EXISTING = 7,
};

enum tdm_ipc_worker_kind {
    TDM_IPC_WORKER_IMAP = 1,
    TDM_IPC_WORKER_LMTP = 2,
    TDM_IPC_WORKER_SMTP = 3,
    TDM_IPC_WORKER_HTTP = 4,
    TDM_IPC_WORKER_ADMIN = 5,
};

#endif

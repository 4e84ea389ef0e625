#ifndef TANDEM_LIB_IPC_H
#define TANDEM_LIB_IPC_H

/*
 * Sans-IO codec for the IPC messages between tandemd's processes (wire layout and rules:
 * include/tandem/ipc.h; docs/formats/ipc.md). Never touches a socket: the connection code
 * feeds received bytes to an ipc_reader and writes what ipc_msg_encode() produced. Fuzzed in
 * fuzz/ipc.c.
 *
 * Errors: decoders return TDM_ENEEDMORE when the bytes end inside a frame and TDM_ECORRUPT
 * for anything malformed, with *error_r set to a static string naming the failed check (for
 * payload fields "TYPE.field: what"). A malformed message is a bug in its sender; the caller
 * decides what to do (normally: log, close, let the supervisor restart the sender). Encoders
 * return TDM_EINVAL, with *error_r, for a message that breaks a rule of ipc.h, so a bug is
 * caught in the process that has it rather than in its peer.
 *
 * A message decodes successfully only if re-encoding it gives the same bytes exactly.
 */

#include "tandem/ipc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A string or byte field. On decode it borrows from the frame (not NUL-terminated); on encode
 * it borrows from the caller for the duration of the call. */
struct ipc_str {
    const char *ptr;
    uint32_t len;
};

/* For encoding from a NUL-terminated C string (must be shorter than 4 GiB). */
struct ipc_str ipc_str_c(const char *s);

struct ipc_hello {
    uint16_t kind; /* enum tdm_ipc_worker_kind */
    uint32_t pid;
    uint16_t version_min;
    uint16_t version_max;
};

struct ipc_hello_reply {
    uint16_t version;      /* 0 = refused */
    struct ipc_str reason; /* empty if and only if version != 0 */
};

struct ipc_commit {
    struct ipc_str database;
    uint16_t record_type;   /* enum tdm_record_type */
    const uint8_t *payload; /* borrowed; payload_len bytes */
    uint32_t payload_len;
};

struct ipc_commit_target {
    int32_t status;
    uint32_t uid;
    uint32_t uidvalidity;
};

/* Mirrors struct mail_result (src/store/mail.h) plus the LSN; lib cannot see store types. */
struct ipc_commit_reply {
    int32_t status; /* 0 or a negative lib/err.h code */
    uint64_t lsn;
    uint32_t uidvalidity;
    uint32_t first_uid;
    uint32_t count;
    uint64_t modseq;
    uint32_t n_targets;
    struct ipc_commit_target targets[TDM_IPC_MAX_TARGETS];
};

/* SUBSCRIBE and UNSUBSCRIBE. */
struct ipc_subscribe {
    struct ipc_str database;
    struct ipc_str mailbox;
    struct ipc_str folder; /* empty = every folder */
};

struct ipc_changed {
    struct ipc_str database;
    struct ipc_str mailbox;
    struct ipc_str folder;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint32_t exists;
    uint64_t highestmodseq;
};

/* FOLDER_CHANGED: a folder was created, deleted or renamed (enum tdm_ipc_folder_change). */
struct ipc_folder_changed {
    struct ipc_str database;
    struct ipc_str mailbox;
    struct ipc_str folder;     /* its name before the change */
    uint16_t change;           /* enum tdm_ipc_folder_change */
    struct ipc_str new_folder; /* renamed: its name now; otherwise empty */
    uint32_t uidvalidity;      /* the folder's; 0 if and only if deleted */
};

struct ipc_shutdown {
    struct ipc_str reason;
    uint32_t deadline_ms;
};

struct ipc_reload {
    uint64_t generation;
};

struct ipc_counter {
    struct ipc_str name;
    uint64_t value;
};

struct ipc_status_reply {
    uint32_t n_counters;
    struct ipc_counter counters[TDM_IPC_MAX_COUNTERS];
};

/* One database in DB_STATUS_REPLY (struct store_status, which lib cannot see). */
struct ipc_db_status {
    struct ipc_str name;
    struct ipc_str kind; /* empty when the core could not read it */
    uint16_t state;      /* enum tdm_ipc_db_state */
    uint64_t last_lsn;
    uint64_t durable_lsn;
    uint64_t applied_lsn;
    uint64_t checkpoint_lsn;
    uint64_t current_generation;
    uint64_t lowest_generation;
    uint64_t commits;
    uint64_t syncs;
    uint16_t sync; /* 0 not in sync mode, 1 sync, 2 degraded to block */
};

struct ipc_db_status_reply {
    uint32_t n_databases;
    struct ipc_db_status databases[TDM_IPC_MAX_DATABASES]; /* ascending by name */
};

/* One copy in COPY_STATUS_REPLY (struct repl_copy_status, which lib cannot see). */
struct ipc_copy_status {
    struct ipc_str name;
    uint16_t state; /* enum tdm_ipc_copy_state */
    uint16_t role;  /* 1 passive, 2 standby */
    uint16_t mode;  /* 0 unknown, 1 file, 2 block, 3 sync */
    uint16_t compression; /* 0 none, 1 zstd: what the session asked for */
    struct ipc_str message;
    struct ipc_str network;
    struct ipc_str endpoint;
    uint32_t inspection_failures;
    /* The TDM_IPC_COPY_N_FIGURES figures, in this order on the wire. */
    uint64_t source_generation, source_durable_end, source_lsn, source_time_us;
    uint64_t copied_generation, copied_offset, copied_lsn;
    uint64_t inspected_generation, replayed_generation, replayed_lsn;
    uint64_t last_copied_us, last_inspected_us, last_replayed_us;
    uint64_t copy_queue_generations, copy_queue_bytes;
    uint64_t replay_queue_generations, replay_queue_records;
    uint64_t bytes_received, bytes_per_second;
    uint64_t wire_bytes, wire_log_bytes;
};

struct ipc_copy_status_reply {
    uint32_t n_copies;
    struct ipc_copy_status copies[TDM_IPC_MAX_COPIES]; /* ascending by name */
    /* Every copy the server holds: n_copies, or more when the list is full (the rest are
     * not listed: the reply's bound, which status readers must say). */
    uint32_t total;
};

struct ipc_copy_control {
    struct ipc_str database;
    uint16_t action; /* enum tdm_ipc_copy_action */
    struct ipc_str comment;
};

struct ipc_copy_control_reply {
    int32_t status;
};

struct ipc_cms_move {
    struct ipc_str cms;
    struct ipc_str to;
    struct ipc_str comment;
};

struct ipc_cms_move_reply {
    int32_t status;
    struct ipc_str error;
};

/* CMS_CONTROL, CMS_STATE and CMS_LISTEN. */
struct ipc_cms {
    struct ipc_str cms;
    uint16_t proto; /* CMS_LISTEN with state UP: enum tdm_proto; otherwise 0 */
    uint16_t state; /* enum tdm_ipc_cms_state */
};

struct ipc_cms_status {
    struct ipc_str name;
    uint16_t state; /* enum tdm_ipc_cms_state */
};

struct ipc_cms_status_reply {
    uint32_t n_cms;
    struct ipc_cms_status cms[TDM_IPC_MAX_CMS]; /* ascending by name */
};

/* DB_DISMOUNTED: the databases dismounted now. */
struct ipc_db_dismounted {
    uint32_t n_databases;
    struct ipc_str databases[TDM_IPC_MAX_DATABASES]; /* ascending, unique */
};

/* CLUSTER_STATUS_REPLY: a JSON object, borrowed as every STR is. */
struct ipc_cluster_status_reply {
    struct ipc_str json;
};

/* One message of any type. About 15 KiB (COPY_STATUS_REPLY's array): fine on a stack, not in a
 * per-connection struct by the thousand. */
struct ipc_msg {
    uint16_t type; /* enum tdm_ipc_type: says which member of u is meant */
    uint32_t request_id;
    union {
        struct ipc_hello hello;
        struct ipc_hello_reply hello_reply;
        struct ipc_commit commit;
        struct ipc_commit_reply commit_reply;
        struct ipc_subscribe subscribe; /* SUBSCRIBE and UNSUBSCRIBE */
        struct ipc_changed changed;
        struct ipc_folder_changed folder_changed;
        struct ipc_db_dismounted db_dismounted;
        struct ipc_shutdown shutdown;
        struct ipc_reload reload;
        struct ipc_status_reply status_reply;
        struct ipc_db_status_reply db_status_reply;
        struct ipc_copy_status_reply copy_status_reply;
        struct ipc_copy_control copy_control;
        struct ipc_copy_control_reply copy_control_reply;
        struct ipc_cms cms; /* CMS_CONTROL, CMS_STATE, CMS_LISTEN */
        struct ipc_cms_status_reply cms_status_reply;
        struct ipc_cluster_status_reply cluster_status_reply;
        struct ipc_cms_move cms_move;
        struct ipc_cms_move_reply cms_move_reply;
        /* STATUS_REQUEST, DB_STATUS_REQUEST and COPY_STATUS_REQUEST have no fields */
    } u;
};

/* A frame whose header, length and CRC have been checked; the payload is not decoded yet. */
struct ipc_frame {
    uint32_t length; /* of the whole frame */
    uint16_t version;
    uint16_t type;
    uint32_t request_id;
    uint32_t flags;
    const uint8_t *payload; /* borrowed from the decoded buffer */
    uint32_t payload_len;
};

/* "HELLO", "COMMIT_REPLY"...; NULL for a type ipc.h does not define. */
const char *ipc_type_name(uint16_t type);
/* "mounted", "failed", "disk-reserve"; NULL for an unknown enum tdm_ipc_db_state. */
const char *ipc_db_state_name(uint16_t state);
/* "Initializing", "Healthy"... (docs/replication.md); NULL for an unknown state. */
const char *ipc_copy_state_name(uint16_t state);
/* "down", "up", "binding"; NULL for an unknown enum tdm_ipc_cms_state. */
const char *ipc_cms_state_name(uint16_t state);
/* "imap", "lmtp"...; NULL for an unknown kind. */
const char *ipc_worker_kind_name(uint16_t kind);
/* True for types whose frames carry a non-zero request id (requests and their replies). */
bool ipc_type_has_request_id(uint16_t type);

/*
 * The core's side of HELLO: picks the highest version in both [peer_min, peer_max] and this
 * build's range. Returns 0 with *version_r, or TDM_EINVAL with *error_r (static) saying why
 * there is none: send that as HELLO_REPLY's reason.
 */
int ipc_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                          const char **error_r);

/* ---- Decoding ---- */

/*
 * Checks the frame at the start of buf (len bytes; more may follow). Returns 0 with *frame_r;
 * TDM_ENEEDMORE when buf ends inside the frame (checked after the length bounds, so a wild
 * length is TDM_ECORRUPT as soon as 4 bytes are there); TDM_ECORRUPT for a bad length, CRC,
 * type, version, flags or request id. *error_r is set on every failure.
 */
int ipc_frame_decode(const uint8_t *buf, size_t len, struct ipc_frame *frame_r,
                     const char **error_r);

/* Decodes frame's payload into *msg_r (strings borrow from the frame). Returns 0 or
 * TDM_ECORRUPT with *error_r. frame must come from ipc_frame_decode or an ipc_reader. */
int ipc_msg_decode_frame(const struct ipc_frame *frame, struct ipc_msg *msg_r,
                         const char **error_r);

/* ipc_frame_decode then ipc_msg_decode_frame; *frame_len_r (may be NULL) gets the frame's
 * length on success. */
int ipc_msg_decode(const uint8_t *buf, size_t len, struct ipc_msg *msg_r, size_t *frame_len_r,
                   const char **error_r);

/* ---- Encoding ---- */

/* Checks every rule of ipc.h for msg. Returns 0 or TDM_EINVAL with *error_r. */
int ipc_msg_check(const struct ipc_msg *msg, const char **error_r);

/* The encoded frame's length. Returns 0 or TDM_EINVAL (msg breaks a rule) with *error_r. */
int ipc_msg_size(const struct ipc_msg *msg, size_t *size_r, const char **error_r);

/* Encodes msg into out (cap bytes). Returns 0 with *len_r; TDM_EINVAL with *error_r; or
 * -ENOBUFS when cap < ipc_msg_size(). */
int ipc_msg_encode(const struct ipc_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                   const char **error_r);

/* As ipc_msg_encode into a malloc'd buffer the caller owns (free()). -ENOMEM on allocation
 * failure. */
int ipc_msg_encode_alloc(const struct ipc_msg *msg, uint8_t **out_r, size_t *len_r,
                         const char **error_r);

/* ---- Streaming ---- */

/*
 * Splits a byte stream (as read from a socket, in chunks of any size) into checked frames.
 * Holds at most one incomplete frame: its buffer grows with the bytes actually received (never
 * to a length only claimed by a header) up to the frame's length, and shrinks back after a
 * large frame. A malformed frame poisons the reader: every later call returns the same error.
 */
struct ipc_reader;

/* max_frame: the largest frame accepted, TDM_IPC_FRAME_OVERHEAD..TDM_IPC_MAX_FRAME (0 means
 * TDM_IPC_MAX_FRAME). Returns 0 with an owned *reader_r, TDM_EINVAL or -ENOMEM. */
int ipc_reader_new(size_t max_frame, struct ipc_reader **reader_r);
void ipc_reader_free(struct ipc_reader **reader);

/*
 * Consumes bytes from (*data, *len), advancing both, until one frame is complete.
 * Returns 1 with *frame_r: it borrows either from the caller's chunk (when the frame lay whole
 * in it: no copy) or from the reader, and stays valid until the next call on this reader or
 * until the chunk is reused, whichever is first. Bytes after the frame are left in
 * (*data, *len) for the next call.
 * Returns 0 when every byte was consumed and the frame is still incomplete (*len == 0).
 * Returns TDM_ECORRUPT with *error_r when a frame is malformed (sticky: the reader is poisoned
 * and consumes nothing more), or -ENOMEM (nothing is lost: call again with the same data).
 */
int ipc_reader_next(struct ipc_reader *reader, const uint8_t **data, size_t *len,
                    struct ipc_frame *frame_r, const char **error_r);

/* Bytes of an incomplete frame held, and the buffer's current capacity (for tests and
 * metrics). */
size_t ipc_reader_buffered(const struct ipc_reader *reader);
size_t ipc_reader_capacity(const struct ipc_reader *reader);

#endif

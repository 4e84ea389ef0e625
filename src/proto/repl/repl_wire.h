#ifndef TANDEM_PROTO_REPL_REPL_WIRE_H
#define TANDEM_PROTO_REPL_REPL_WIRE_H

/*
 * Sans-IO codec of the replication protocol between a copy (which pulls) and the source that
 * serves the active copy's log (docs/formats/replication.md is the contract; repl_wire.c opens
 * with the byte layout). Never touches a socket: the connection code hands received bytes to
 * repl_frame_length()/repl_msg_decode() and writes what repl_msg_encode() produced.
 * Fuzzed in fuzz/repl_wire.c.
 *
 * Frames and fields follow the IPC rules (docs/formats/ipc.md): length, version, type, request
 * id, flags, a payload of tagged fields with exactly one encoding, CRC32C; the field primitives
 * are shared with src/lib/ipc.c through src/lib/wire_field.h.
 *
 * Errors: decoders return TDM_ENEEDMORE while the bytes end inside a frame (never before the
 * length is checked: a wild length is TDM_ECORRUPT as soon as 4 bytes are there) and
 * TDM_ECORRUPT for anything malformed, with *error_r a static string naming the check ("frame
 * checksum mismatch", "LOG_DATA.raw_length: zero"). Encoders return TDM_EINVAL with *error_r
 * for a message that breaks a rule, so the bug shows in the process that has it.
 * A message decodes only if re-encoding it gives the same bytes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default TCP port of [listen replication] (docs/config.md). */
#define REPL_DEFAULT_PORT 7433

#define REPL_WIRE_VERSION_MIN 1u   /* oldest version this build speaks */
#define REPL_WIRE_VERSION 1u       /* newest */
#define REPL_WIRE_HELLO_VERSION 1u /* HELLO and HELLO_REPLY frames always carry this */

#define REPL_WIRE_HEADER_SIZE 16u
#define REPL_WIRE_TRAILER_SIZE 4u
#define REPL_WIRE_FRAME_OVERHEAD 20u
/* Raw log bytes per LOG_DATA, at most. */
#define REPL_WIRE_CHUNK_MAX (1024u * 1024u)
/* Largest frame: a full raw chunk plus every other LOG_DATA field, rounded up generously. */
#define REPL_WIRE_MAX_FRAME (REPL_WIRE_CHUNK_MAX + 4096u)

#define REPL_WIRE_NAME_MAX 255u  /* server and database names */
#define REPL_WIRE_KEY_MAX 1024u  /* a server key */
#define REPL_WIRE_TEXT_MAX 1024u /* reasons and error texts */
#define REPL_WIRE_GUID_LEN 16u
#define REPL_WIRE_SHA256_LEN 32u
/* Largest snapshot a seed may carry (2^48 bytes): far above any LMDB file, low enough that
 * offset + raw_length never wraps. */
#define REPL_WIRE_SEED_MAX (UINT64_C(1) << 48)

enum repl_type {
    REPL_HELLO = 1,        /* copy -> source, first message; request id != 0 */
    REPL_HELLO_REPLY = 2,  /* source -> copy; echoes HELLO's or SEED_REQUEST's request id */
    REPL_SEED_REQUEST = 3, /* copy -> source, first message of a seed; request id != 0 */
    REPL_LOG_DATA = 16,    /* source -> copy */
    REPL_POSITION = 17,    /* source -> copy */
    REPL_ACK = 18,         /* copy -> source */
    REPL_SEED_DATA = 19,   /* source -> copy: a chunk of the snapshot */
    REPL_SEED_END = 20,    /* source -> copy: the snapshot is complete; what it holds */
    REPL_ERROR = 32,       /* either way; the sender closes after it */
};

/* HELLO_REPLY.code and ERROR.code. */
enum repl_code {
    REPL_CODE_OK = 0,
    REPL_CODE_VERSION = 1,          /* no common protocol version */
    REPL_CODE_AUTH = 2,             /* server/key refused, or not in group servers */
    REPL_CODE_UNKNOWN_DATABASE = 3, /* this server serves no such database */
    REPL_CODE_NOT_ACTIVE = 4,       /* it is here, but not the active copy */
    REPL_CODE_GUID_MISMATCH = 5,    /* the copy holds another database of that name */
    REPL_CODE_POSITION_GONE = 6,    /* the start generation was truncated: reseed */
    REPL_CODE_DIVERGED = 7,         /* the copy's log is not a prefix of the active's */
    REPL_CODE_PROTOCOL = 8,         /* a malformed or unexpected message */
    REPL_CODE_INTERNAL = 9,         /* the source could not read its log (or similar) */
    REPL_CODE_SHUTDOWN = 10,        /* the source is stopping or dismounting the database */
    REPL_CODE_LIMIT = 11,           /* too many copies or seeds at once: try again later */
    REPL_CODE_TIMEOUT = 12,         /* nothing heard from the peer for too long */
    REPL_CODE_RELEASED = 13,        /* the copy fell further behind than logs are held: reseed */
};

enum repl_mode {
    REPL_MODE_FILE = 1,  /* closed generations only, whole */
    REPL_MODE_BLOCK = 2, /* durable ranges as they become durable */
    REPL_MODE_SYNC = 3,  /* as block; the active waits for a passive's ACK before answering */
};

enum repl_role {
    REPL_ROLE_PASSIVE = 1,
    REPL_ROLE_STANDBY = 2,
};

enum repl_compression {
    REPL_COMPRESSION_NONE = 0,
    REPL_COMPRESSION_ZSTD = 1, /* one zstd frame; sent only when smaller than raw */
};

/* A string or byte field. Decoded: borrows from the frame (not NUL-terminated). Encoding:
 * borrowed from the caller for the call. */
struct repl_str {
    const char *ptr;
    uint32_t len;
};

/* For encoding from a NUL-terminated C string. */
struct repl_str repl_str_c(const char *s);

struct repl_hello {
    uint16_t version_min;             /* >= 1 */
    uint16_t version_max;             /* >= version_min */
    struct repl_str server;           /* the copy's server name, 1..REPL_WIRE_NAME_MAX */
    struct repl_str key;              /* its server key, 1..REPL_WIRE_KEY_MAX, no NUL */
    struct repl_str database;         /* 1..REPL_WIRE_NAME_MAX */
    uint8_t guid[REPL_WIRE_GUID_LEN]; /* all zero: the copy has nothing yet */
    uint16_t role;                    /* enum repl_role */
    /* Where the copy's log ends: bytes [0, start_offset) of start_generation are what it
     * holds, ending on a frame boundary; 0 = nothing of start_generation (every generation
     * below it is whole). With an all-zero guid: generation 1, offset 0, lsn and epoch 0. */
    uint64_t start_generation; /* >= 1 */
    uint64_t start_offset;     /* <= TDM_LOG_MAX_GENERATION_SIZE */
    uint64_t last_lsn;         /* LSN of its last record, 0 if none */
    uint64_t epoch;            /* epoch of that record (0 if none) */
    /* enum repl_compression: how the copy asks for LOG_DATA on this connection (its
     * copy.conf's compression for the network in use). ZSTD: the source compresses each chunk
     * that zstd makes smaller; NONE: raw, unless the source compresses for every copy. */
    uint16_t compression;
};

struct repl_hello_reply {
    uint16_t version;                 /* agreed version, or 0 = refused */
    uint16_t code;                    /* enum repl_code: OK exactly when version != 0 */
    struct repl_str reason;           /* empty exactly when code is OK; <= REPL_WIRE_TEXT_MAX */
    uint8_t guid[REPL_WIRE_GUID_LEN]; /* the active's database GUID (zero when unknown) */
    uint64_t epoch;                   /* the active's current epoch */
    uint16_t mode;                    /* enum repl_mode when OK, 0 on a refusal */
    uint64_t lowest_generation;       /* oldest generation the source still has */
    uint64_t current_generation;      /* the active's current generation */
    uint64_t durable_end;             /* durable bytes of the current generation */
};

struct repl_log_data {
    uint64_t generation;  /* >= 1 */
    uint64_t offset;      /* where data goes in the generation file; chunks are contiguous */
    uint64_t file_size;   /* the generation's file size, 4140..TDM_LOG_MAX_GENERATION_SIZE */
    uint16_t compression; /* enum repl_compression */
    uint32_t raw_length;  /* 1..REPL_WIRE_CHUNK_MAX; offset + raw_length <= file_size */
    uint16_t closes;      /* 1: the bytes end with the generation's END frame; else 0 */
    uint16_t partial;     /* 1: the bytes end inside a frame longer than REPL_WIRE_CHUNK_MAX
                           * (more of it follows); else 0, the bytes end on a frame boundary */
    const uint8_t *data;  /* raw_length bytes, or the zstd frame (1..raw_length-1 bytes) */
    uint32_t data_len;
};

struct repl_position {
    uint64_t generation;  /* the active's durable generation, >= 1 */
    uint64_t durable_end; /* bytes of it that are durable */
    uint64_t durable_lsn; /* last durable LSN */
    uint64_t time_us;     /* the active's clock, microseconds since the Unix epoch */
};

struct repl_ack {
    uint64_t durable_generation; /* the copy's log is durable up to here... */
    uint64_t durable_offset;     /* ...byte offset in that generation */
    uint64_t durable_lsn;
    uint64_t inspected_generation; /* highest generation that passed inspection (0 none) */
    uint64_t replayed_lsn;         /* last LSN applied to the copy's LMDB */
    uint64_t replayed_generation;  /* the generation holding it */
};

/* A copy asks for a snapshot of the active's database instead of its log (a seed runs on a
 * connection of its own; afterwards the copy connects with HELLO from the snapshot). */
struct repl_seed_request {
    uint16_t version_min;     /* >= 1 */
    uint16_t version_max;     /* >= version_min */
    struct repl_str server;   /* 1..REPL_WIRE_NAME_MAX */
    struct repl_str key;      /* 1..REPL_WIRE_KEY_MAX, no NUL */
    struct repl_str database; /* 1..REPL_WIRE_NAME_MAX */
    uint16_t role;            /* enum repl_role */
};

/* Bytes [offset, offset + raw_length) of the snapshot file; chunks are contiguous from 0. */
struct repl_seed_data {
    uint64_t offset;
    uint64_t total_size;  /* the snapshot's size, 1..REPL_WIRE_SEED_MAX, the same in each */
    uint16_t compression; /* enum repl_compression */
    uint32_t raw_length;  /* 1..REPL_WIRE_CHUNK_MAX; offset + raw_length <= total_size */
    const uint8_t *data;  /* raw_length bytes, or the zstd frame (1..raw_length-1 bytes) */
    uint32_t data_len;
};

struct repl_seed_end {
    uint64_t total_size;                  /* 1..REPL_WIRE_SEED_MAX: every byte was sent */
    uint8_t sha256[REPL_WIRE_SHA256_LEN]; /* of the whole snapshot file */
    uint8_t guid[REPL_WIRE_GUID_LEN];     /* the database's GUID, not all zero */
    uint64_t applied_lsn;                 /* the snapshot holds every record up to this */
    uint64_t first_generation;            /* >= 1: the generation holding applied_lsn + 1 */
};

struct repl_error {
    uint16_t code;        /* enum repl_code, not OK */
    struct repl_str text; /* 1..REPL_WIRE_TEXT_MAX */
};

struct repl_msg {
    uint16_t type;       /* enum repl_type: which member of u is meant */
    uint32_t request_id; /* != 0 on HELLO and HELLO_REPLY, 0 on every other type */
    union {
        struct repl_hello hello;
        struct repl_hello_reply hello_reply;
        struct repl_log_data log_data;
        struct repl_position position;
        struct repl_ack ack;
        struct repl_error error;
        struct repl_seed_request seed_request;
        struct repl_seed_data seed_data;
        struct repl_seed_end seed_end;
    } u;
};

/* "HELLO", "LOG_DATA"...; NULL for an unknown type. */
const char *repl_type_name(uint16_t type);
/* "ok", "auth", "unknown-database", "position-gone"...; NULL for an unknown code. */
const char *repl_code_name(uint16_t code);
/* "file", "block", "sync"; NULL for unknown. */
const char *repl_mode_name(uint16_t mode);
/* "passive", "standby"; NULL for unknown. */
const char *repl_role_name(uint16_t role);

/* The source's side of HELLO: the highest version in both ranges. 0 with *version_r, or
 * TDM_EINVAL with a static *error_r for HELLO_REPLY's reason (code VERSION). */
int repl_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                           const char **error_r);

/* ---- Decoding ---- */

/*
 * The length of the frame starting at buf, from its first 4 bytes: 0 with *frame_len_r (the
 * caller waits until that many bytes are there); TDM_ENEEDMORE with fewer than 4 bytes;
 * TDM_ECORRUPT with *error_r when the length is out of bounds. For callers that buffer
 * (libevent evbuffers) instead of feeding a reader.
 */
int repl_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r);

/*
 * Decodes the frame at the start of buf (len bytes; more may follow): length bounds, CRC, type,
 * version, flags, request id, then every payload field. Returns 0 with *msg_r (borrowing from
 * buf) and *frame_len_r (may be NULL); TDM_ENEEDMORE; or TDM_ECORRUPT with *error_r.
 * Every frame carries version 1 until a second version exists; then the agreed version
 * becomes a parameter here and of repl_msg_encode.
 */
int repl_msg_decode(const uint8_t *buf, size_t len, struct repl_msg *msg_r, size_t *frame_len_r,
                    const char **error_r);

/* ---- Encoding ---- */

/* Checks every rule for msg. 0 or TDM_EINVAL with *error_r. */
int repl_msg_check(const struct repl_msg *msg, const char **error_r);

/* The encoded frame's length; 0 or TDM_EINVAL with *error_r. */
int repl_msg_size(const struct repl_msg *msg, size_t *size_r, const char **error_r);

/* Encodes msg into out (cap bytes): 0 with *len_r; TDM_EINVAL; -ENOBUFS when cap is short. */
int repl_msg_encode(const struct repl_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                    const char **error_r);

/* As repl_msg_encode into a malloc'd buffer the caller frees; -ENOMEM. */
int repl_msg_encode_alloc(const struct repl_msg *msg, uint8_t **out_r, size_t *len_r,
                          const char **error_r);

#endif

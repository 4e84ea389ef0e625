#ifndef TANDEM_PROTO_CLUSTER_CLUSTER_WIRE_H
#define TANDEM_PROTO_CLUSTER_CLUSTER_WIRE_H

/*
 * Sans-IO codec of the heartbeat protocol between cluster members on [listen cluster]
 * (docs/formats/cluster.md is the contract; docs/cluster.md says what the heartbeats are for).
 * Frames follow the replication protocol's rules (docs/formats/replication.md): the 16-byte
 * envelope and trailing CRC32C of src/lib/wire_field.h, a payload of tagged fields with exactly
 * one encoding. Fuzzed in fuzz/cluster_wire.c.
 *
 * Unlike replication, a decoded message is a copy, not a borrow: every string is bounded and
 * small, so struct cluster_msg holds them NUL-terminated and the frame can go at once.
 *
 * Errors: decoders return TDM_ENEEDMORE while the bytes end inside a frame and TDM_ECORRUPT for
 * anything malformed, with *error_r a static string naming the check; encoders return
 * TDM_EINVAL with *error_r for a message that breaks a rule. A message decodes only if
 * re-encoding it gives the same bytes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default TCP port of [listen cluster] (docs/config.md). */
#define CLUSTER_DEFAULT_PORT 7434

/* Version 2: HELLO carries the sender's timers (version 1 did not; every frame carries the
 * version and a decoder takes only its own, so a version-1 member's frames are refused). */
#define CLUSTER_WIRE_VERSION 2u
#define CLUSTER_WIRE_HEADER_SIZE 16u
#define CLUSTER_WIRE_TRAILER_SIZE 4u
#define CLUSTER_WIRE_NAME_MAX 63u  /* member, cluster, CMS and database names: one DNS label */
#define CLUSTER_WIRE_KEY_MAX 1024u /* a server key (as in replication's HELLO) */
#define CLUSTER_WIRE_TEXT_MAX 255u /* ERROR's text */
#define CLUSTER_WIRE_MAX_CMS 16u   /* CMSs in one summary */
#define CLUSTER_WIRE_MAX_DBS 64u   /* databases in one summary */
/* Largest frame: a HELLO with the longest key, or a summary with every list full; generous. */
#define CLUSTER_WIRE_MAX_FRAME 16384u

enum cluster_type {
    CLUSTER_HELLO = 1,            /* connector -> listener, first message; request id != 0 */
    CLUSTER_HELLO_REPLY = 2,      /* listener -> connector; echoes HELLO's request id */
    CLUSTER_HEARTBEAT = 16,       /* connector -> listener, every heartbeat_interval */
    CLUSTER_HEARTBEAT_REPLY = 17, /* listener -> connector, at once */
    CLUSTER_ERROR = 32,           /* either way; the sender closes after it */
};

/* HELLO_REPLY.code and ERROR.code. */
enum cluster_code {
    CLUSTER_CODE_OK = 0,
    CLUSTER_CODE_VERSION = 1,  /* no common protocol version */
    CLUSTER_CODE_AUTH = 2,     /* server/key refused, or not in group servers */
    CLUSTER_CODE_CLUSTER = 3,  /* another cluster's name, or the sender is not a [member] here */
    CLUSTER_CODE_PROTOCOL = 4, /* a malformed or unexpected message */
    CLUSTER_CODE_INTERNAL = 5,
    CLUSTER_CODE_SHUTDOWN = 6, /* the member is stopping */
    CLUSTER_CODE_TIMERS = 7,   /* the HELLO's timers are not the listener's (docs/cluster.md) */
};

/* A CMS as the sender holds it. */
enum cluster_cms_role {
    CLUSTER_CMS_NONE = 0,    /* not running here, no copy held for it */
    CLUSTER_CMS_ACTIVE = 1,  /* its databases are mounted here */
    CLUSTER_CMS_PASSIVE = 2, /* here as passive copies */
    /* Active here and moving to moving_to (switchover): writes wait, the target catches up
     * and takes the lease from this node (docs/cluster.md "Switchover"). */
    CLUSTER_CMS_MOVING = 3,
};

struct cluster_cms_state {
    char name[CLUSTER_WIRE_NAME_MAX + 1];
    uint16_t role;  /* enum cluster_cms_role */
    uint64_t epoch; /* the lease epoch the sender knows for it; 0 = none */
    /* role MOVING: the node it moves to (1..63); every other role: empty */
    char moving_to[CLUSTER_WIRE_NAME_MAX + 1];
};

/* A database's durable log end on the sender and the state of its copy there. */
struct cluster_db_state {
    char name[CLUSTER_WIRE_NAME_MAX + 1];
    uint64_t generation; /* the durable log ends in this generation (>= 1; 0 = no log) */
    uint64_t offset;     /* ...at this byte offset */
    uint64_t lsn;        /* LSN of the last durable record, 0 if none */
    uint64_t epoch;      /* epoch of that record */
    uint16_t copy_state; /* 0 = the active here; else the copy's state, 1 Initializing ..
                          * 8 Resynchronizing (docs/formats/cluster.md) */
};

/* What a member tells the others with every heartbeat and reply (filled by the cluster
 * agent, docs/cluster.md "Failover"). Bounded, so it is a plain value. */
struct cluster_summary {
    uint32_t n_cms;
    struct cluster_cms_state cms[CLUSTER_WIRE_MAX_CMS];
    uint32_t n_dbs;
    struct cluster_db_state dbs[CLUSTER_WIRE_MAX_DBS];
};

struct cluster_hello {
    uint16_t version_min;                    /* >= 1 */
    uint16_t version_max;                    /* >= version_min */
    char member[CLUSTER_WIRE_NAME_MAX + 1];  /* the connector's server name, non-empty */
    char cluster[CLUSTER_WIRE_NAME_MAX + 1]; /* its [cluster] name, non-empty */
    char key[CLUSTER_WIRE_KEY_MAX + 1];      /* its server key, non-empty */
    /* Its [cluster] timers, each >= 1: a listener that is a node refuses a sender whose
     * timers are not its own (docs/cluster.md, "Timing": the fence and takeover bounds hold
     * only between nodes with the same ones). */
    uint64_t heartbeat_interval_ms;
    uint16_t heartbeat_misses;
    uint64_t lease_ttl_ms;
};

struct cluster_hello_reply {
    uint16_t version;                       /* agreed version, 0 = refused */
    uint16_t code;                          /* enum cluster_code: OK exactly when version != 0 */
    char member[CLUSTER_WIRE_NAME_MAX + 1]; /* the listener's server name, non-empty */
    char reason[CLUSTER_WIRE_TEXT_MAX + 1]; /* empty exactly when code is OK */
};

struct cluster_heartbeat {
    uint64_t seq;     /* >= 1, increasing on one connection */
    uint64_t sent_ms; /* the sender's clock (tdm_clock_ms) at sending, milliseconds */
    struct cluster_summary summary;
};

struct cluster_heartbeat_reply {
    uint64_t seq;     /* the HEARTBEAT's, echoed */
    uint64_t sent_ms; /* the HEARTBEAT's, echoed (the sender's clock, not the replier's) */
    struct cluster_summary summary; /* the replier's */
};

struct cluster_error {
    uint16_t code;                        /* enum cluster_code, not OK */
    char text[CLUSTER_WIRE_TEXT_MAX + 1]; /* non-empty */
};

struct cluster_msg {
    uint16_t type;       /* enum cluster_type: which member of u is meant */
    uint32_t request_id; /* != 0 on HELLO and HELLO_REPLY, 0 on every other type */
    union {
        struct cluster_hello hello;
        struct cluster_hello_reply hello_reply;
        struct cluster_heartbeat heartbeat;
        struct cluster_heartbeat_reply heartbeat_reply;
        struct cluster_error error;
    } u;
};

/* "HELLO", "HEARTBEAT"...; NULL for an unknown type. */
const char *cluster_type_name(uint16_t type);
/* "ok", "auth", "cluster"...; NULL for an unknown code. */
const char *cluster_code_name(uint16_t code);
/* "none", "active", "passive"; NULL for unknown. */
const char *cluster_cms_role_name(uint16_t role);

/*
 * The length of the frame starting at buf, from its first 4 bytes: 0 with *frame_len_r;
 * TDM_ENEEDMORE with fewer than 4 bytes; TDM_ECORRUPT with *error_r when out of bounds.
 */
int cluster_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r);

/* Decodes the frame at the start of buf into *msg_r (a copy); *frame_len_r may be NULL.
 * 0, TDM_ENEEDMORE, or TDM_ECORRUPT with *error_r. */
int cluster_msg_decode(const uint8_t *buf, size_t len, struct cluster_msg *msg_r,
                       size_t *frame_len_r, const char **error_r);

/* Checks every rule for msg: 0 or TDM_EINVAL with *error_r. */
int cluster_msg_check(const struct cluster_msg *msg, const char **error_r);

/* Encodes msg into out (cap bytes, CLUSTER_WIRE_MAX_FRAME always suffices): 0 with *len_r;
 * TDM_EINVAL with *error_r; -ENOBUFS when cap is short. */
int cluster_msg_encode(const struct cluster_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                       const char **error_r);

#endif

#ifndef TANDEM_PROTO_COORD_COORD_WIRE_H
#define TANDEM_PROTO_COORD_COORD_WIRE_H

/*
 * Sans-IO codec of the coordination protocol between a cluster node and the coordination
 * store on a witness (docs/formats/coord.md is the contract; coord_wire.c opens with the byte
 * layout). Frames as the replication protocol's (lib/wire_field.h's envelope and tagged
 * fields): length, version, type, request id, flags, payload, CRC32C. Fuzzed in
 * fuzz/coord_wire.c.
 *
 * Errors: decoders return TDM_ENEEDMORE while the bytes end inside a frame (a wild length is
 * TDM_ECORRUPT as soon as 4 bytes are there) and TDM_ECORRUPT for anything malformed, with
 * *error_r a static string naming the check. Encoders return TDM_EINVAL with *error_r for a
 * message that breaks a rule. A message decodes only if re-encoding it gives the same bytes.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default TCP port of [listen coord] (docs/config.md). */
#define COORD_DEFAULT_PORT 7435

#define COORD_WIRE_VERSION_MIN 1u
#define COORD_WIRE_VERSION 1u

#define COORD_WIRE_HEADER_SIZE 16u
#define COORD_WIRE_TRAILER_SIZE 4u
#define COORD_WIRE_FRAME_OVERHEAD 20u
#define COORD_WIRE_MAX_FRAME 8192u

#define COORD_WIRE_NAME_MAX 255u    /* member, cluster, witness and holder names */
#define COORD_WIRE_KEY_MAX 255u     /* a store key: "cms/mail1" */
#define COORD_WIRE_SECRET_MAX 1024u /* a server key */
#define COORD_WIRE_TEXT_MAX 1024u   /* reasons and error texts */
#define COORD_WIRE_VALUE_MAX 4096u  /* a value set by CAS */
#define COORD_WIRE_TTL_MAX 600000u  /* a lease's time to live, ms */

enum coord_type {
    COORD_HELLO = 1,       /* node -> witness, first message */
    COORD_HELLO_REPLY = 2, /* witness -> node */
    COORD_ACQUIRE = 16,    /* -> GRANTED | DENIED */
    COORD_GRANTED = 17,
    COORD_DENIED = 18,
    COORD_RELEASE = 19, /* -> RELEASED */
    COORD_RELEASED = 20,
    COORD_TRANSFER = 21, /* -> GRANTED (the new holder's epoch) | DENIED */
    COORD_GET = 22,      /* -> VALUE */
    COORD_VALUE = 23,
    COORD_CAS = 24,      /* -> VALUE | CONFLICT */
    COORD_CONFLICT = 25, /* VALUE's layout: the current state */
    COORD_WATCH = 26,    /* -> VALUE, then NOTIFY on each change */
    COORD_NOTIFY = 27,   /* VALUE's layout; request id 0 */
    COORD_PING = 28,     /* -> PONG */
    COORD_PONG = 29,
    COORD_ERROR = 32, /* witness -> node: the request (its id, or 0) is refused */
};

enum coord_code {
    COORD_CODE_OK = 0,
    COORD_CODE_VERSION = 1,  /* no common protocol version */
    COORD_CODE_AUTH = 2,     /* member/key refused, or not in group servers */
    COORD_CODE_PROTOCOL = 3, /* a malformed or unexpected message; the witness closes */
    COORD_CODE_INTERNAL = 4, /* the store could not be written */
    COORD_CODE_HOLDER = 5,   /* holder is not the member the session authenticated */
    COORD_CODE_EPOCH = 6,    /* RELEASE/TRANSFER with an epoch that is not the lease's */
    COORD_CODE_LIMIT = 7,    /* too many keys, watches or sessions */
};

/* A string or byte field: decoded, borrows from the frame; encoding, from the caller. */
struct coord_str {
    const char *ptr;
    uint32_t len;
};

struct coord_str coord_str_c(const char *s);

/*
 * Every field of every message; each type uses the ones its layout names (coord.md), the
 * others are zero. One flat struct keeps the codec table-driven.
 */
struct coord_msg {
    uint16_t type;       /* enum coord_type */
    uint32_t request_id; /* != 0 on requests, echoed by their answer; 0 on NOTIFY; ERROR:
                          * the refused request's id, or 0 */
    uint16_t version_min, version_max; /* HELLO */
    uint16_t version, code;            /* HELLO_REPLY; code also ERROR */
    struct coord_str member;           /* HELLO: the node's server name */
    struct coord_str secret;           /* HELLO: its server key */
    struct coord_str cluster;          /* HELLO: its cluster's name (may be empty) */
    struct coord_str witness; /* HELLO_REPLY: the witness's server name (empty on refusal) */
    uint64_t boot_id;         /* HELLO_REPLY: changes at each start of the witness's store */
    struct coord_str text;    /* HELLO_REPLY reason, ERROR text */
    struct coord_str key;     /* every lease/value message */
    struct coord_str holder;  /* ACQUIRE, RELEASE, TRANSFER: the requester; DENIED, VALUE:
                               * the lease's holder (VALUE: empty when free) */
    struct coord_str to;      /* TRANSFER */
    uint32_t ttl_ms;          /* ACQUIRE, GRANTED: 1..COORD_WIRE_TTL_MAX */
    uint32_t remaining_ms;    /* DENIED, VALUE */
    uint64_t min_epoch;       /* ACQUIRE */
    uint64_t epoch;           /* GRANTED, DENIED, RELEASE, TRANSFER, VALUE */
    uint64_t value_version;   /* VALUE: 0 = never set; CAS: the expected version */
    struct coord_str value;   /* VALUE, CAS: 0..COORD_WIRE_VALUE_MAX bytes */
    uint64_t nonce;           /* PING, echoed by PONG */
};

const char *coord_type_name(uint16_t type); /* "HELLO"...; NULL unknown */
const char *coord_code_name(uint16_t code); /* "ok", "auth"...; NULL unknown */

/* The witness's side of HELLO: the highest version in both ranges, or TDM_EINVAL. */
int coord_version_negotiate(uint16_t peer_min, uint16_t peer_max, uint16_t *version_r,
                            const char **error_r);

/* The frame's length from its first 4 bytes: 0, TDM_ENEEDMORE, TDM_ECORRUPT. */
int coord_frame_length(const uint8_t *buf, size_t len, size_t *frame_len_r, const char **error_r);
/* Decodes the frame at buf: 0 with *msg_r (borrowing from buf) and *frame_len_r (may be NULL),
 * TDM_ENEEDMORE, or TDM_ECORRUPT with *error_r. */
int coord_msg_decode(const uint8_t *buf, size_t len, struct coord_msg *msg_r, size_t *frame_len_r,
                     const char **error_r);

/* Every rule for msg: 0 or TDM_EINVAL with *error_r. */
int coord_msg_check(const struct coord_msg *msg, const char **error_r);
/* The frame's length; 0 or TDM_EINVAL. */
int coord_msg_size(const struct coord_msg *msg, size_t *size_r, const char **error_r);
/* Encodes into out (cap bytes): 0 with *len_r, TDM_EINVAL, -ENOBUFS. */
int coord_msg_encode(const struct coord_msg *msg, uint8_t *out, size_t cap, size_t *len_r,
                     const char **error_r);

#endif

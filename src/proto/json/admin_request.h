#ifndef TANDEM_PROTO_JSON_ADMIN_REQUEST_H
#define TANDEM_PROTO_JSON_ADMIN_REQUEST_H

/*
 * Sans-IO decoder for admin API request bodies (docs/formats/admin-api.md): bytes in, a typed
 * request out, or one error message naming the member that is wrong. It never touches a
 * socket; the admin worker feeds it what evhttp received. Fuzzed by fuzz/admin_request.c.
 *
 * Limits are checked while bytes arrive, so an oversized or too deeply nested body is refused
 * before it is held whole or handed to jansson: the body (ADMIN_REQ_BODY_MAX), nesting
 * (ADMIN_REQ_DEPTH_MAX). At the end the JSON is parsed (duplicate members refused) and checked
 * against the request type: unknown and missing members, types, ranges, and the syntax of
 * names ("1..255 bytes, no '/', no control characters"), principals ("user:<name>",
 * "server:<name>", "group:<name>") and rights ("read", "write", "full-control").
 *
 * The attributes of an object are not checked here beyond "a JSON object": their schema
 * belongs to the directory (dir_attrs_check), which names the key that is wrong.
 *
 * Errors: TDM_EINVAL (the body is wrong: 400), TDM_ELIMIT (over ADMIN_REQ_BODY_MAX: 413),
 * -ENOMEM. *error_r is then a message for the client, thread-local, valid until the next call
 * of this module on the same thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_REQ_BODY_MAX (1u << 20) /* bytes */
#define ADMIN_REQ_DEPTH_MAX 32u       /* nesting of objects and arrays */
#define ADMIN_REQ_NAME_MAX 255u       /* bytes of an object or principal name */
#define ADMIN_REQ_PASSWORD_MIN 8u
#define ADMIN_REQ_PASSWORD_MAX 1024u
#define ADMIN_REQ_ACL_MAX 256u       /* entries in one ACL (the directory's DIR_MAX_ACL) */
#define ADMIN_REQ_MEMBERS_MAX 10000u /* members of one group (DIR_MAX_MEMBERS) */

/* Which body is expected: the route decides, the body never says. */
enum admin_req_type {
    ADMIN_REQ_OBJECT_PUT = 1, /* {"attrs":{...}, "version":N?} */
    ADMIN_REQ_ACL_SET,        /* {"acl":[{"principal":P,"right":R}...]} */
    ADMIN_REQ_ACL_GRANT,      /* {"principal":P,"right":R} */
    ADMIN_REQ_ACL_REVOKE,     /* {"principal":P} */
    ADMIN_REQ_PASSWORD_SET,   /* {"password":"..."} */
    ADMIN_REQ_MEMBERS_SET,    /* {"members":[P...]} users and servers only */
    ADMIN_REQ_MEMBER_ADD,     /* {"member":P} user or server */
    ADMIN_REQ_MEMBER_REMOVE,  /* {"member":P} user or server */
    ADMIN_REQ_AUTH_VERIFY,    /* {"user":name,"password":"..."} (a login another server checks),
                               * or {"server":name,"password":key} (a replication peer's key) */
    ADMIN_REQ_COPY_SUSPEND,   /* {"comment":"..."?} (why a copy is suspended; may be absent) */
};
#define ADMIN_REQ_TYPE_MAX ADMIN_REQ_COPY_SUSPEND
#define ADMIN_REQ_COMMENT_MAX 1024u /* bytes of a suspend comment (TDM_IPC_REASON_MAX) */

/* proto links only lib, so the directory's enums are mirrored; the admin server maps them. */
enum admin_req_principal_kind {
    ADMIN_PRINCIPAL_USER = 1,
    ADMIN_PRINCIPAL_SERVER,
    ADMIN_PRINCIPAL_GROUP,
};

enum admin_req_right {
    ADMIN_RIGHT_READ = 1,
    ADMIN_RIGHT_WRITE,
    ADMIN_RIGHT_FULL,
};

struct admin_req_principal {
    enum admin_req_principal_kind kind;
    char *name; /* owned by the request */
};

struct admin_req_acl_entry {
    struct admin_req_principal who;
    enum admin_req_right right;
};

/* A decoded request. Every pointer is owned by it: admin_req_clear() frees them. Members that
 * the type does not use are zero. */
struct admin_req {
    enum admin_req_type type;
    char *attrs;      /* OBJECT_PUT: the attrs object as compact JSON text */
    bool has_version; /* OBJECT_PUT: "version" was given */
    uint64_t version;
    struct admin_req_acl_entry *acl; /* ACL_SET, no principal twice */
    size_t n_acl;
    struct admin_req_principal principal; /* ACL_GRANT, ACL_REVOKE, MEMBER_ADD/REMOVE */
    enum admin_req_right right;           /* ACL_GRANT */
    char *password; /* PASSWORD_SET, AUTH_VERIFY (NUL-free: JSON cannot carry one) */
    char *user;     /* AUTH_VERIFY: a name (admin_req_name_ok) */
    bool verify_server; /* AUTH_VERIFY: user names a server, password is its key */
    char *comment;  /* COPY_SUSPEND: 0..ADMIN_REQ_COMMENT_MAX bytes, no control characters;
                     * "" when absent */
    struct admin_req_principal *members; /* MEMBERS_SET, no member twice */
    size_t n_members;
};

void admin_req_clear(struct admin_req *req);

/* The streaming side: feed the body in chunks of any size as they arrive, then finish. */
struct admin_req_parser;

/* Returns 0 with an owned *parser_r, TDM_EINVAL (type out of range) or -ENOMEM. */
int admin_req_parser_new(enum admin_req_type type, struct admin_req_parser **parser_r);
void admin_req_parser_free(struct admin_req_parser **parser);

/*
 * Takes len more bytes (copied). Returns 0; TDM_ELIMIT when the body passes
 * ADMIN_REQ_BODY_MAX; TDM_EINVAL when nesting passes ADMIN_REQ_DEPTH_MAX; -ENOMEM. A failure
 * is sticky: every later feed and finish returns it again with the same message.
 */
int admin_req_feed(struct admin_req_parser *parser, const void *data, size_t len,
                   const char **error_r);

/* Decodes everything fed. Returns 0 with *req_r filled (clear it), or an error as above;
 * on failure *req_r is zeroed and needs no clearing. */
int admin_req_finish(struct admin_req_parser *parser, struct admin_req *req_r,
                     const char **error_r);

/* new + feed + finish for a body held whole. */
int admin_req_decode(enum admin_req_type type, const void *body, size_t len,
                     struct admin_req *req_r, const char **error_r);

/* Syntax checks, shared with the admin server for names taken from a URL path. */
bool admin_req_name_ok(const char *name, size_t len);
/* "user:alice" -> kind and name (allocated into *who_r). Returns 0, TDM_EINVAL, -ENOMEM. */
int admin_req_principal_parse(const char *text, struct admin_req_principal *who_r);
/* "read" -> ADMIN_RIGHT_READ; 0 when not a right. */
enum admin_req_right admin_req_right_parse(const char *text);

#endif

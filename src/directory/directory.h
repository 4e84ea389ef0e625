#ifndef TANDEM_DIRECTORY_DIRECTORY_H
#define TANDEM_DIRECTORY_DIRECTORY_H

/*
 * The directory: who and what exists (sites, networks, servers, clusters, CMSs, databases,
 * copies, users, groups, address lists) and who may do what to each. It lives in a tandem
 * database like mail does: every change is one log record (TDM_REC_DIR_*, payloads in
 * dir_codec.c and docs/formats/directory.md), applied by dir_record_handler, which a store is
 * opened with (store_options.handler), so the directory is logged, replicated, recovered and
 * verified by the store without the store knowing it.
 *
 * Every object has a kind, a name unique within its kind, a version (1 at creation, +1 on
 * every change: the compare-and-set token), a JSON attribute document checked against its
 * kind's schema (dir_schema.c), and an ACL of (principal, right). Principals are users,
 * servers and groups; groups hold users and servers (not groups: no cycles to evaluate).
 * Members of the built-in group `admins` have full control of every object.
 *
 * Reads take the handler state (store_handler_state()) and any LMDB transaction, usually a
 * read-only one (store_read_begin()); borrowed pointers live until that transaction ends.
 */

#include "store/store.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dir_kind {
    DIR_KIND_SITE = 1,
    DIR_KIND_NETWORK = 2,
    DIR_KIND_SERVER = 3,
    DIR_KIND_CLUSTER = 4,
    DIR_KIND_CMS = 5,
    DIR_KIND_DATABASE = 6,
    DIR_KIND_COPY = 7,
    DIR_KIND_USER = 8,
    DIR_KIND_GROUP = 9,
    DIR_KIND_ADDRESS_LIST = 10,
};
#define DIR_KIND_MAX DIR_KIND_ADDRESS_LIST

/* Ordered: a higher right includes the lower ones. */
enum dir_right {
    DIR_RIGHT_NONE = 0,
    DIR_RIGHT_READ = 1,
    DIR_RIGHT_WRITE = 2,
    DIR_RIGHT_FULL = 3, /* full-control: may also change the ACL and delete */
};

#define DIR_NAME_MAX 255u          /* bytes in an object name */
#define DIR_ATTRS_MAX 16384u       /* bytes of canonical JSON attributes */
#define DIR_MAX_ACL 256u           /* entries in one ACL */
#define DIR_MAX_MEMBERS 10000u     /* members of one group */
#define DIR_PASSWORD_HASH_MAX 128u /* crypto_pwhash_STRBYTES, NUL included */
#define DIR_GROUP_SERVERS "servers"
#define DIR_GROUP_ADMINS "admins"
/* DIR_PUT expected_version: create or replace regardless; 0 means "must not exist". */
#define DIR_VERSION_ANY UINT64_MAX

/* "site", "network", ... "address-list"; NULL for an unknown kind. */
const char *dir_kind_name(enum dir_kind kind);
/* The reverse; 0 for an unknown name. */
enum dir_kind dir_kind_parse(const char *name);
const char *dir_right_name(enum dir_right right); /* "none", "read", "write", "full-control" */

struct dir_principal {
    enum dir_kind kind; /* USER, SERVER or GROUP */
    const char *name;
};

struct dir_acl_entry {
    struct dir_principal who;
    enum dir_right right; /* READ..FULL */
};

/*
 * One directory change. Strings are NUL-terminated UTF-8, borrowed for the call.
 *
 *   DIR_BOOTSTRAP        (nothing) creates the groups `servers` and `admins`; refused
 *                        (TDM_EEXIST) once done.
 *   DIR_PUT              kind, name, expected_version, attrs (JSON object text; the encoder
 *                        checks it against the kind's schema and writes it canonically).
 *                        Creates (expected 0 or ANY) or replaces (expected = current version,
 *                        or ANY); a mismatch is refused with TDM_ECONFLICT, keeping ACL,
 *                        password and members.
 *   DIR_DELETE           kind, name, expected_version (ANY allowed). Built-in groups cannot go.
 *                        A deleted user, server or group leaves every group and every ACL.
 *   DIR_ACL_SET          kind, name, expected_version (the version read, or ANY; never 0),
 *                        acl[n_acl] (replaces the ACL; any order, no principal twice: the
 *                        encoder sorts). A version mismatch is refused with TDM_ECONFLICT.
 *   DIR_PASSWORD_SET     kind (USER, or SERVER for a server's key; 0 means USER), name,
 *                        password_hash: an argon2id string from dir_password_hash(); never a
 *                        plaintext.
 *   DIR_GROUP_MEMBERS    name (a group), expected_version (as ACL_SET), members[n_members]
 *                        (users and servers; replaces the membership; every member must
 *                        exist).
 */
struct dir_op {
    uint16_t type;
    enum dir_kind kind;
    const char *name;
    uint64_t expected_version;
    const char *attrs;
    const struct dir_acl_entry *acl;
    size_t n_acl;
    const char *password_hash;
    const struct dir_principal *members;
    size_t n_members;
};

/* True for TDM_REC_DIR_* types this module knows. */
bool dir_is_dir_record(uint16_t type);

/*
 * Encodes op into a newly allocated payload (*payload_r, free() it). Returns 0, -ENOMEM, or
 * TDM_EINVAL / TDM_ELIMIT with *error_r (static or thread-local) naming what is wrong.
 */
int dir_op_encode(const struct dir_op *op, uint8_t **payload_r, size_t *len_r,
                  const char **error_r);

/* A decoded record: op's strings borrow from the payload; arrays are owned by the struct. */
struct dir_decoded {
    struct dir_op op;
    struct dir_acl_entry *acl_storage;
    struct dir_principal *members_storage;
};

/*
 * Decodes payload of record type strictly (canonical form only: what dir_op_encode() would
 * write). Returns 0, -ENOMEM, or TDM_EINVAL with *error_r. On failure nothing needs clearing.
 */
int dir_op_decode(uint16_t type, const uint8_t *payload, size_t len, struct dir_decoded *dec_r,
                  const char **error_r);
void dir_decoded_clear(struct dir_decoded *dec);

/* Encodes op and commits it to store (blocking); result_r->status holds the refusal, if any. */
int dir_commit(struct store *store, const struct dir_op *op, uint64_t *lsn_r,
               struct mail_result *result_r, const char **error_r);

/* The handler to put in store_options.handler / store_verify_options.handler. */
extern const struct store_record_handler dir_record_handler;

/* ---- Database kinds (store_options.kind) ---- */

/* The kind of a database holding the directory: it must be opened with dir_record_handler. */
#define DIR_DB_KIND "directory"

/*
 * The handler a database of kind needs: NULL for "mail", &dir_record_handler for "directory".
 * Returns 0 with *handler_r, or TDM_ENOTFOUND for a kind this program does not know.
 */
int dir_db_kind_handler(const char *kind, const struct store_record_handler **handler_r);

/*
 * Creates a directory database in dir (store_create() with kind "directory" and opt's other
 * settings; opt->handler and opt->kind are ignored), then opens it, commits DIR_BOOTSTRAP (the
 * built-in groups) and closes it. Returns 0, or what store_create(), store_open() or the
 * commit returned, with *error_r (static or thread-local). On a failure after the create the
 * database exists without its built-in groups.
 */
int dir_db_create(const char *dir, const struct store_options *opt, const char **error_r);

/*
 * Checks attrs (JSON text) against kind's schema: known keys, types, limits. On success
 * *canonical_r (free()) holds the canonical text. Returns 0, -ENOMEM or TDM_EINVAL with
 * *error_r naming the key (thread-local).
 */
int dir_attrs_check(enum dir_kind kind, const char *attrs, char **canonical_r,
                    const char **error_r);

/* ---- Passwords ---- */

/*
 * Hashes password with argon2id (libsodium crypto_pwhash_str) into out. opslimit/memlimit 0
 * mean libsodium's INTERACTIVE limits. Runs on the submitter, never in apply (it is salted,
 * so not deterministic). Returns 0 or -ENOMEM (the memory limit could not be had).
 */
int dir_password_hash(const char *password, unsigned long long opslimit, size_t memlimit,
                      char out[DIR_PASSWORD_HASH_MAX]);

/* ---- Reading ---- */

struct dir_object {
    enum dir_kind kind;
    const char *name; /* get: the caller's name pointer; list: valid during the callback */
    uint64_t version;
    const char *attrs; /* borrowed (txn): canonical JSON */
    bool has_password;
    size_t n_acl;
    struct dir_acl_entry *acl; /* owned (principal names borrowed): dir_object_clear() */
};

/* Each returns 0, TDM_ENOTFOUND, or a negative storage error (-ENOMEM, -EIO, TDM_ECORRUPT). */
int dir_object_get(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
                   struct dir_object *obj_r);
void dir_object_clear(struct dir_object *obj);

/* Calls cb for each object of kind in name order (obj borrowed for the call); a non-zero
 * return from cb stops the walk and is returned. */
typedef int dir_object_cb(void *ctx, const struct dir_object *obj);
int dir_object_list(void *state, MDB_txn *txn, enum dir_kind kind, dir_object_cb *cb, void *ctx);

/* The user an address or alias (ASCII case-insensitive) belongs to. *user_r is a thread-local
 * copy, valid until the next call on this thread. */
int dir_resolve_address(void *state, MDB_txn *txn, const char *address, const char **user_r);

/* Whether principal who is a direct member of group. Returns 0 with *member_r. */
int dir_is_member(void *state, MDB_txn *txn, const char *group, const struct dir_principal *who,
                  bool *member_r);

/*
 * The right who has on object (kind, name): the highest of the ACL entries naming who or a
 * group who belongs to; DIR_RIGHT_FULL for members of `admins`. An object that does not exist
 * gives TDM_ENOTFOUND (admins included: there is nothing to have rights on).
 */
int dir_effective_right(void *state, MDB_txn *txn, const struct dir_principal *who,
                        enum dir_kind kind, const char *name, enum dir_right *right_r);

/* ---- Change journal ----
 *
 * Every change that takes effect appends one entry (seq, kind, name) naming the object it
 * changed; seq counts from 1 without gaps and is the same on every copy (apply is
 * deterministic). Servers that cache directory answers follow the journal to invalidate them:
 * an entry for (kind, name) invalidates that object, and an entry for a user, server or group
 * also invalidates every answer that involved that principal (memberships, rights), because
 * deleting a principal also takes it out of groups and ACLs. Only the newest DIR_CHANGES_KEEP
 * entries are kept; a reader further behind must drop its whole cache (reset). */
#define DIR_CHANGES_KEEP 65536u

struct dir_change {
    uint64_t seq;
    enum dir_kind kind;
    const char *name; /* NUL-terminated copy, valid during the callback */
};

typedef int dir_change_cb(void *ctx, const struct dir_change *change);

/*
 * Calls cb for each entry after since, oldest first, at most max of them. *last_r gets the
 * seq of the last entry reported, or since when there was none (the caller's next since).
 * *reset_r is true (and cb is not called) when entries after since are no longer kept, or
 * since is ahead of the journal (another database, or one rebuilt): the caller must drop every
 * cached answer and restart from *last_r, the newest seq. A non-zero return from cb stops the
 * walk and is returned. Returns 0 or a storage error.
 */
int dir_changes_since(void *state, MDB_txn *txn, uint64_t since, size_t max, dir_change_cb *cb,
                      void *ctx, uint64_t *last_r, bool *reset_r);

/* The newest seq (0 when the journal is empty). */
int dir_changes_last(void *state, MDB_txn *txn, uint64_t *seq_r);

/* ---- Mail recipients ----
 *
 * Who a mail recipient is: the user an address belongs to and the mailbox database holding
 * that user's mailbox (the user's `database` attribute). local@domain is matched, in this
 * order, as a whole address or alias, as an alias equal to its local part ("postmaster"), and
 * as a user name equal to its local part (the deliveries MTAs make to bare user names).
 *
 * And where mail for that database goes (the transport role relays it there): LMTP on the
 * address of the clustered mailbox server that owns the database (the database's `cms`, that
 * CMS's `address` and `lmtp_port`, default DIR_LMTP_PORT). Other servers address the CMS,
 * never a node, so the route stays right across a failover that moves the CMS. The same CMS
 * serves the database's users over IMAP on its `imap_port` (default DIR_IMAP_PORT), where a
 * server that does not hold a user's database refers the login (RFC 2221).
 */
#define DIR_LMTP_PORT 24
#define DIR_IMAP_PORT 143
#define DIR_ROUTE_ADDRESS_MAX 64 /* the cms `address` attribute's bound */

enum dir_route_status {
    DIR_ROUTE_UNSET = 0,       /* not looked up, or not given by the directory */
    DIR_ROUTE_OK = 1,          /* cms, address and port are set */
    DIR_ROUTE_NO_DATABASE = 2, /* the user's database has no directory object */
    DIR_ROUTE_NO_CMS = 3,      /* the database names no cms, or that cms does not exist */
    DIR_ROUTE_NO_ADDRESS = 4,  /* the cms has no address, or it is not an IP address */
};

struct dir_route {
    enum dir_route_status status;
    char cms[DIR_NAME_MAX + 1];              /* set unless NO_DATABASE */
    char address[DIR_ROUTE_ADDRESS_MAX + 1]; /* OK: an IPv4 or IPv6 literal */
    uint16_t port;                           /* OK: LMTP, 1..65535 */
    uint16_t imap_port;                      /* OK: IMAP, 1..65535 */
};

enum dir_rcpt_status {
    DIR_RCPT_OK = 0,
    DIR_RCPT_UNKNOWN = 1,    /* no such address or user */
    DIR_RCPT_NO_MAILBOX = 2, /* the user has no mailbox database */
    DIR_RCPT_DISABLED = 3,   /* the user is disabled */
};

struct dir_recipient {
    enum dir_rcpt_status status;
    char user[DIR_NAME_MAX + 1];     /* set unless UNKNOWN */
    char database[DIR_NAME_MAX + 1]; /* set when OK */
    struct dir_route route;          /* looked up when OK; UNSET otherwise */
};

/* local and domain (domain may be ""). Returns 0 with *rcpt_r (its route too), or a storage
 * error. */
int dir_recipient_lookup(void *state, MDB_txn *txn, const char *local, const char *domain,
                         struct dir_recipient *rcpt_r);
/* "ok", "unknown", "no-mailbox", "disabled" (the admin API's words). */
const char *dir_rcpt_status_name(enum dir_rcpt_status status);

/* Where mail for database goes. Returns 0 with *route_r (its status says whether there is a
 * route), or a storage error. */
int dir_route_lookup(void *state, MDB_txn *txn, const char *database, struct dir_route *route_r);
/* "unset", "ok", "no-database", "no-cms", "no-address" (the admin API's words); the reverse
 * gives DIR_ROUTE_UNSET for a word it does not know. */
const char *dir_route_status_name(enum dir_route_status status);
enum dir_route_status dir_route_status_parse(const char *name);

/* 0 when password matches user's stored hash; -EACCES when it does not or the user has no
 * password; TDM_ENOTFOUND when there is no such user. */
int dir_password_verify(void *state, MDB_txn *txn, const char *user, const char *password);

/* The same for a user's password or a server's key (kind USER or SERVER; TDM_EINVAL for any
 * other kind). */
int dir_secret_verify(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
                      const char *password);

/* The stored argon2id string of a user's password or a server's key, copied into out, so that
 * the slow check (crypto_pwhash_str_verify) can run on a thread that holds no transaction (the
 * admin worker's). Returns 0; -EACCES when there is none; TDM_ENOTFOUND; TDM_EINVAL for a kind
 * other than USER and SERVER. */
int dir_secret_hash(void *state, MDB_txn *txn, enum dir_kind kind, const char *name,
                    char out[DIR_PASSWORD_HASH_MAX]);

#endif

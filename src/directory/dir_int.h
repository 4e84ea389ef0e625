#ifndef TANDEM_DIRECTORY_DIR_INT_H
#define TANDEM_DIRECTORY_DIR_INT_H

/* Internals shared by the directory's files. Nothing outside src/directory includes this. */

#include "directory/directory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR__CODEC_VERSION 1u

/* Sub-database names (part of the digest, so part of the format). */
#define DIR__DBI_OBJECTS "dir_objects"     /* u8 kind, name -> object value (dir_apply.c) */
#define DIR__DBI_ADDRESSES "dir_addresses" /* lower-cased address/alias -> user name */
#define DIR__DBI_MEMBERS "dir_members"     /* group, 0, u8 kind, name -> "" */
#define DIR__DBI_MEMBER_OF "dir_member_of" /* u8 kind, name, 0, group -> "" */
#define DIR__DBI_CHANGES "dir_changes"     /* u64 big-endian seq -> u8 kind, name (dir_changes.c) */
#define DIR__DBI_COUNT 5

/* The handler's state: the sub-database handles, or absent (read-only, never created). */
struct dir_state {
    bool present;
    MDB_dbi objects, addresses, members, member_of, changes;
};

/* dir_changes.c: appends one journal entry for (kind, name) in txn and trims the oldest
 * beyond DIR_CHANGES_KEEP. Called by apply for every change that took effect. */
int dir__change_append(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind,
                       const char *name);

/* Little-endian reader over a byte string; any overrun or bad field sets bad (sticky). */
struct dir__rd {
    const uint8_t *p;
    size_t len, off;
    const char *bad; /* first problem, static string */
};

uint8_t dir__rd_u8(struct dir__rd *r, const char *what);
uint16_t dir__rd_u16(struct dir__rd *r, const char *what);
uint64_t dir__rd_u64(struct dir__rd *r, const char *what);
/* str: u16 n, n bytes without NUL, 0x00. Returns the NUL-terminated string in place. */
const char *dir__rd_str(struct dir__rd *r, size_t max, const char *what);

/* Growable writer; a failed allocation sets nomem (sticky). */
struct dir__wr {
    uint8_t *buf;
    size_t len, cap;
    bool nomem;
};
void dir__wr_u8(struct dir__wr *w, uint8_t v);
void dir__wr_u16(struct dir__wr *w, uint16_t v);
void dir__wr_u64(struct dir__wr *w, uint64_t v);
void dir__wr_str(struct dir__wr *w, const char *s);

/* Name and principal checks shared by codec and apply. */
int dir__check_name(const char *name, const char *what, const char **error_r);
bool dir__principal_kind_ok(enum dir_kind kind);
int dir__acl_cmp(const void *a, const void *b);
int dir__principal_cmp(const void *a, const void *b);

/* dir_schema.c: the address keys of a user's canonical attributes, for the index. Calls cb
 * with each address and alias as stored (not lower-cased). */
typedef int dir__addr_cb(void *ctx, const char *address);
int dir__user_addresses(const char *canonical_attrs, dir__addr_cb *cb, void *ctx);
/* ASCII lower-case copy of s into out (size >= strlen(s) + 1). */
void dir__lower(char *out, const char *s);

/* The object value stored in dir_objects:
 *   u8 format version (1), u64 version, str attrs (canonical JSON), str password hash ("" for
 *   none), u16 ACL count, per entry u8 principal kind, str principal name, u8 right. */
struct dir__obj {
    uint64_t version;
    const char *attrs;
    const char *password_hash;
    size_t n_acl;
    struct dir_acl_entry *acl; /* owned */
};
int dir__obj_decode(const void *data, size_t len, struct dir__obj *obj_r);
int dir__obj_encode(const struct dir__obj *obj, struct dir__wr *w);

/* Key of an object: u8 kind then the name bytes (no NUL). buf >= DIR_NAME_MAX + 1. */
size_t dir__obj_key(uint8_t *buf, enum dir_kind kind, const char *name);

int dir__lmdb_err(int rc);

#endif

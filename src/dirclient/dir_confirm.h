#ifndef TANDEM_DIRCLIENT_DIR_CONFIRM_H
#define TANDEM_DIRCLIENT_DIR_CONFIRM_H

/*
 * Server keys the directory confirmed, for the time no directory server answers
 * (src/tandemd/core_server_auth.c, docs/cluster.md "Server keys during a directory outage").
 * Per server: a hash of the key the directory last confirmed and when. Pure: the caller gives
 * the clocks, and keeps the table on disk with dir_confirm_encode / dir_confirm_decode and
 * dir_confirm_save / dir_confirm_load, so that a restart during an outage still knows what
 * the directory vouched for.
 *
 * Two clocks. A confirmation made by this process is aged on the boot clock (lib/clock.h), which
 * no clock step moves. A confirmation read from disk has only its wall time (it must survive a
 * reboot): it is aged on the wall clock, and one dated after now (a clock set back, or a file
 * from a host whose clock ran ahead) is refused, since its age cannot be known.
 */

#include "directory/directory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIR_CONFIRM_HASH_BYTES 32u
#define DIR_CONFIRM_MAX 64u
/* The file's first line; a version other than 1 is refused. */
#define DIR_CONFIRM_MAGIC "tandem server key confirmations 1\n"

struct dir_confirm_entry {
    char server[DIR_NAME_MAX + 1]; /* "" = free */
    unsigned char hash[DIR_CONFIRM_HASH_BYTES];
    uint64_t wall_ms; /* wall clock (ms since 1970) of the confirmation */
    uint64_t boot_ms; /* boot clock of it; 0 when read from disk (age by wall_ms then) */
};

struct dir_confirm {
    struct dir_confirm_entry e[DIR_CONFIRM_MAX];
};

/* The clocks of "now": lib/clock.h's boot clock and the wall clock, both in ms. */
struct dir_confirm_now {
    uint64_t boot_ms;
    uint64_t wall_ms;
};

/* The hash of a key kept instead of the key (keyed BLAKE2b-256, domain-separated). */
void dir_confirm_hash(const char *key, size_t key_len, unsigned char hash[DIR_CONFIRM_HASH_BYTES]);

/* Remembers that the directory confirmed server's key now: its entry, a free one, or the
 * oldest. A server name longer than DIR_NAME_MAX is not remembered. */
void dir_confirm_put(struct dir_confirm *c, const char *server,
                     const unsigned char hash[DIR_CONFIRM_HASH_BYTES],
                     const struct dir_confirm_now *now);

/* Forgets server (the directory refused its key). True if it was known. */
bool dir_confirm_forget(struct dir_confirm *c, const char *server);

/*
 * 0 when the directory confirmed exactly this key of server at most bound_ms ago (*age_ms_r
 * says how long ago); -EACCES otherwise, with *why_r (static text): unknown server, another
 * key, too old, or dated in the future.
 */
int dir_confirm_check(const struct dir_confirm *c, const char *server,
                      const unsigned char hash[DIR_CONFIRM_HASH_BYTES],
                      const struct dir_confirm_now *now, uint64_t bound_ms, uint64_t *age_ms_r,
                      const char **why_r);

/* The file's text (docs/formats/server-key-confirmations.md), allocated; NULL on ENOMEM.
 * A server whose name cannot be written on one line without spaces is left out. */
char *dir_confirm_encode(const struct dir_confirm *c);

/* Replaces *c with the text's entries (boot_ms 0). 0, or TDM_EINVAL with *error_r (static)
 * and *c emptied: the text is refused whole, never half-read. */
int dir_confirm_decode(struct dir_confirm *c, const char *text, size_t len, const char **error_r);

/* Writes text to path durably: a temporary file in the same directory, fsync, rename, fsync
 * of the directory. Blocking (a helper thread's job). 0 or -errno with *step_r. */
int dir_confirm_save(const char *path, const char *text, const char **step_r);

/* Reads path into *c (empty when the file does not exist). 0, -errno, or TDM_EINVAL (a
 * malformed file) with *error_r (static). */
int dir_confirm_load(const char *path, struct dir_confirm *c, const char **error_r);

#endif

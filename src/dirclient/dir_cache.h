#ifndef TANDEM_DIRCLIENT_DIR_CACHE_H
#define TANDEM_DIRCLIENT_DIR_CACHE_H

/*
 * What a server that is not a directory server remembers of the directory's answers, so that
 * logins keep working while the directory is briefly unreachable (DESIGN.md "Directory";
 * docs/decisions.md, "Directory cache"). Pure bookkeeping: no sockets, no clock of its own (the
 * caller passes now_ms), so every rule below is unit-tested with a fake clock.
 *
 * Freshness. An answer is known current at the later of two times: when it was fetched, and
 * when the directory's change journal was last read up to date without naming it
 * (dir_cache_journal_ok()). It is served while now - that time <= ttl_ms. While the journal is
 * followed, answers therefore stay valid indefinitely; when the directory becomes unreachable
 * they expire ttl_ms after the last journal read ([directory] cache_ttl, default 10 min).
 *
 * Invalidation follows the journal's rule (docs/formats/directory.md, "Change journal"): an
 * entry for (kind, name) drops that object and, for a user, its cached logins; a reset drops
 * everything. Only successful logins are cached, under a keyed BLAKE2b of the password (the
 * key is random per cache and never leaves memory), so the cache never holds a password nor
 * a hash that could be attacked offline elsewhere.
 *
 * Size is bounded (max_entries); past it the least recently stored entry goes.
 * Not thread-safe: one owner (a worker's event loop).
 */

#include "directory/directory.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dir_cache;

/* Returns 0 with an owned *cache_r, TDM_EINVAL (ttl_ms or max_entries 0) or -ENOMEM. */
int dir_cache_new(uint64_t ttl_ms, size_t max_entries, struct dir_cache **cache_r);
void dir_cache_free(struct dir_cache **cache);

/* Remembers that user logged in with password at now_ms (principal: "user:<name>"). Returns 0
 * or -ENOMEM (nothing cached; the caller just asks again next time). */
int dir_cache_login_put(struct dir_cache *cache, const char *user, const char *password,
                        uint64_t now_ms);

/* True when a fresh cached login matches user and password exactly. A wrong password is
 * never answered from the cache (false: ask the directory). */
bool dir_cache_login_ok(struct dir_cache *cache, const char *user, const char *password,
                        uint64_t now_ms);

/* Remembers an object's JSON document (copied). Returns 0 or -ENOMEM. */
int dir_cache_object_put(struct dir_cache *cache, enum dir_kind kind, const char *name,
                         const char *json, uint64_t now_ms);

/* The fresh cached document of (kind, name), borrowed until the next call that changes the
 * cache; NULL when there is none or it is stale. */
const char *dir_cache_object_get(struct dir_cache *cache, enum dir_kind kind, const char *name,
                                 uint64_t now_ms);

/* Recipient answers (GET /v1/recipients/<address>), keyed by the address as asked, negative
 * ones included: any change to any user drops them all (an address may have moved between
 * users, or a new user may now hold an address that was unknown), and so does any change to a
 * database or a cms (an answer carries its database's route). json is copied. */
int dir_cache_rcpt_put(struct dir_cache *cache, const char *address, const char *json,
                       uint64_t now_ms);
const char *dir_cache_rcpt_get(struct dir_cache *cache, const char *address, uint64_t now_ms);

/* A journal entry: drops (kind, name); for a user, its logins; and for a user, a database
 * or a cms, every recipient answer. */
void dir_cache_invalidate(struct dir_cache *cache, enum dir_kind kind, const char *name);

/* The journal could not be followed from where we were: drop everything. */
void dir_cache_reset(struct dir_cache *cache);

/* The journal was read up to date at now_ms: every entry still cached is current then. */
void dir_cache_journal_ok(struct dir_cache *cache, uint64_t now_ms);

/* Entries held (objects and logins), for metrics and tests. */
size_t dir_cache_size(const struct dir_cache *cache);

#endif

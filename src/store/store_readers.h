#ifndef TANDEM_STORE_STORE_READERS_H
#define TANDEM_STORE_STORE_READERS_H

/*
 * The mail databases a worker reads (store_reader.h), opened on first use by name under
 * <datadir>/db/ and kept open for the worker's life: LMTP checks mailboxes there, IMAP reads
 * mail. One loop thread owns a set.
 */

#include "store/store_reader.h"

#include <stdbool.h>

#define STORE_READERS_MAX 64u

struct store_readers;

/* datadir is copied. Returns 0 with an owned *set_r, or -ENOMEM. */
int store_readers_new(const char *datadir, struct store_readers **set_r);
void store_readers_free(struct store_readers **set);

/* The reader of mail database name, or NULL when there is no such database on this server
 * (or it cannot be read now: a later call tries again), it is dismounted, or the set is full. A copy
 * (store_is_copy) is never opened: it is not this server's to serve. */
struct store_reader *store_readers_get(struct store_readers *set, const char *name);

/* Whether this server holds database name only as a copy (store_is_copy: an error counts as
 * a copy). Asks the file system each time, since a copy can be activated, and an active
 * become a copy, while a worker runs; a reader already open stays open. */
bool store_readers_is_copy(struct store_readers *set, const char *name);

/*
 * The databases its core has dismounted now (DB_DISMOUNTED: names, n of them, copied), replacing
 * the previous list. The reader of each one listed, when open, is freed here, which closes its
 * LMDB environment and with it the files (so a dismounted database is not held open by
 * workers); store_readers_get() answers NULL for it until a later list leaves it out.
 * Hazard: frees readers store_readers_get() handed out: call it only when no read transaction
 * is open on them (between two turns of the loop). Returns 0, or -ENOMEM with the previous list
 * kept and nothing freed.
 */
int store_readers_set_dismounted(struct store_readers *set, const char *const *names, size_t n);
/* Whether name is in the list. */
bool store_readers_is_dismounted(const struct store_readers *set, const char *name);

#endif

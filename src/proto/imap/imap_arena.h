#ifndef TANDEM_PROTO_IMAP_IMAP_ARENA_H
#define TANDEM_PROTO_IMAP_IMAP_ARENA_H

/*
 * A per-command arena: everything one parsed IMAP command points to (strings, lists, the
 * SEARCH tree) lives in one arena and is freed in one go with imap_arena_free(), so a command
 * can never leak a piece of itself and nothing has to be freed field by field. Nothing
 * long-lived may point into an arena (CONVENTIONS.md, memory ownership rule 4).
 *
 * Memory comes in blocks of at least IMAP_ARENA_BLOCK bytes; an allocation larger than a block
 * gets a block of its own. Allocation failure returns NULL (never aborts), so callers return
 * -ENOMEM and tests can inject it with imap_arena_fail_after().
 */

#include <stddef.h>

#define IMAP_ARENA_BLOCK 4096u

struct imap_arena;

/* Returns an owned, empty arena, or NULL when out of memory. */
struct imap_arena *imap_arena_new(void);

/* Frees every block and the arena; sets *a to NULL. NULL is fine. */
void imap_arena_free(struct imap_arena **a);

/* n bytes aligned for any type, zeroed, valid until the arena is freed; NULL on ENOMEM or
 * when n is absurd (overflow). */
void *imap_arena_alloc(struct imap_arena *a, size_t n);

/* An array of n elements of size sz, zeroed; NULL on overflow or ENOMEM. */
void *imap_arena_array(struct imap_arena *a, size_t n, size_t sz);

/* A NUL-terminated copy of s[0..len). */
char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t len);

/* Tests: the arena fails every allocation after n more succeed (n < 0: never fails). */
void imap_arena_fail_after(struct imap_arena *a, long n);

#endif

/*
 * Per-command arena (see imap_arena.h): a singly linked list of blocks, bump allocation in the
 * newest. Commands are small (a few hundred bytes typically), so the first block is allocated
 * together with the arena header and most commands cost one malloc.
 */
#include "proto/imap/imap_arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct block {
    struct block *next;
    size_t size; /* bytes usable after the header */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

struct imap_arena {
    struct block *head; /* the block allocations come from; older ones follow */
    long fail_after;    /* < 0: never */
    struct block first;
};

#define ALIGN_UP(n) (((n) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

struct imap_arena *
imap_arena_new(void)
{
    struct imap_arena *a = malloc(sizeof(*a) + IMAP_ARENA_BLOCK);
    if (!a)
        return NULL;
    a->first.next = NULL;
    a->first.size = IMAP_ARENA_BLOCK;
    a->first.used = 0;
    a->head = &a->first;
    a->fail_after = -1;
    return a;
}

void
imap_arena_free(struct imap_arena **ap)
{
    struct imap_arena *a = *ap;
    if (!a)
        return;
    struct block *b = a->head;
    while (b != &a->first) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    free(a);
    *ap = NULL;
}

void *
imap_arena_alloc(struct imap_arena *a, size_t n)
{
    if (a->fail_after == 0)
        return NULL;
    if (a->fail_after > 0)
        a->fail_after--;
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2)
        return NULL;
    n = ALIGN_UP(n);
    struct block *b = a->head;
    if (b->size - b->used < n) {
        size_t size = n > IMAP_ARENA_BLOCK ? n : IMAP_ARENA_BLOCK;
        b = malloc(sizeof(*b) + size);
        if (!b)
            return NULL;
        b->size = size;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void *
imap_arena_array(struct imap_arena *a, size_t n, size_t sz)
{
    if (sz && n > SIZE_MAX / 2 / sz)
        return NULL;
    return imap_arena_alloc(a, n * sz);
}

char *
imap_arena_strndup(struct imap_arena *a, const char *s, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *d = imap_arena_alloc(a, len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void
imap_arena_fail_after(struct imap_arena *a, long n)
{
    a->fail_after = n;
}

/*
 * The directory cache (dir_cache.h). Entries live in one hash table keyed by (type, kind,
 * name) and in one list in the order they were stored, oldest first, for eviction. A login
 * entry keeps BLAKE2b-256(key = per-cache random key, user NUL password), compared in constant
 * time.
 */
#include "dirclient/dir_cache.h"

#include "lib/err.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum entry_type {
    ENTRY_OBJECT = 1,
    ENTRY_LOGIN = 2,
    ENTRY_RCPT = 3, /* kind 0; name: the address */
};

struct entry {
    struct entry *hnext;             /* hash chain */
    struct entry *older, *newer;     /* store order */
    uint8_t type;                    /* enum entry_type */
    uint8_t kind;                    /* enum dir_kind; DIR_KIND_USER for logins */
    char *name;                      /* owned */
    char *json;                      /* objects: owned document */
    uint8_t proof[32];               /* logins: keyed hash of user and password */
    uint64_t stored_ms;
};

struct dir_cache {
    uint64_t ttl_ms;
    size_t max_entries;
    size_t n;
    size_t n_buckets;
    struct entry **buckets;
    struct entry *oldest, *newest;
    uint64_t journal_ok_ms; /* 0: never */
    uint8_t key[crypto_generichash_KEYBYTES];
};

static uint64_t
hash_of(uint8_t type, uint8_t kind, const char *name)
{
    /* FNV-1a: the keys are names an administrator chose, not attacker-controlled at a rate
     * that matters, and chains are short at the sizes we keep. */
    uint64_t h = 1469598103934665603ull;
    h = (h ^ type) * 1099511628211ull;
    h = (h ^ kind) * 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

int
dir_cache_new(uint64_t ttl_ms, size_t max_entries, struct dir_cache **cache_r)
{
    if (ttl_ms == 0 || max_entries == 0)
        return TDM_EINVAL;
    if (sodium_init() < 0)
        return -ENOMEM;
    struct dir_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->ttl_ms = ttl_ms;
    c->max_entries = max_entries;
    c->n_buckets = 64;
    while (c->n_buckets < max_entries && c->n_buckets < (1u << 20))
        c->n_buckets <<= 1;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    randombytes_buf(c->key, sizeof(c->key));
    *cache_r = c;
    return 0;
}

static void
entry_free(struct entry *e)
{
    free(e->name);
    free(e->json);
    sodium_memzero(e->proof, sizeof(e->proof));
    free(e);
}

/* Unlinks e from its chain and the store order, and frees it. */
static void
entry_drop(struct dir_cache *c, struct entry *e)
{
    struct entry **pp = &c->buckets[hash_of(e->type, e->kind, e->name) & (c->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    c->n--;
    entry_free(e);
}

static struct entry *
entry_find(const struct dir_cache *c, uint8_t type, uint8_t kind, const char *name)
{
    struct entry *e = c->buckets[hash_of(type, kind, name) & (c->n_buckets - 1)];
    for (; e; e = e->hnext)
        if (e->type == type && e->kind == kind && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

void
dir_cache_reset(struct dir_cache *c)
{
    while (c->oldest)
        entry_drop(c, c->oldest);
}

void
dir_cache_free(struct dir_cache **cache)
{
    struct dir_cache *c = *cache;
    if (!c)
        return;
    dir_cache_reset(c);
    free(c->buckets);
    sodium_memzero(c->key, sizeof(c->key));
    free(c);
    *cache = NULL;
}

/* Stores a new entry (replacing one with the same key), evicting the oldest past the bound.
 * Takes ownership of json. */
static struct entry *
entry_store(struct dir_cache *c, uint8_t type, uint8_t kind, const char *name, char *json,
            uint64_t now_ms)
{
    struct entry *old = entry_find(c, type, kind, name);
    if (old)
        entry_drop(c, old);
    struct entry *e = calloc(1, sizeof(*e));
    char *copy = strdup(name);
    if (!e || !copy) {
        free(e);
        free(copy);
        free(json);
        return NULL;
    }
    while (c->n >= c->max_entries)
        entry_drop(c, c->oldest);
    e->type = type;
    e->kind = kind;
    e->name = copy;
    e->json = json;
    e->stored_ms = now_ms;
    size_t b = hash_of(type, kind, name) & (c->n_buckets - 1);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
    c->n++;
    return e;
}

static bool
fresh(const struct dir_cache *c, const struct entry *e, uint64_t now_ms)
{
    uint64_t known = e->stored_ms > c->journal_ok_ms ? e->stored_ms : c->journal_ok_ms;
    return now_ms >= known ? now_ms - known <= c->ttl_ms : true;
}

static void
login_proof(const struct dir_cache *c, const char *user, const char *password, uint8_t out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, c->key, sizeof(c->key), 32);
    /* The NUL keeps ("ab","c") and ("a","bc") apart. */
    crypto_generichash_update(&st, (const unsigned char *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const unsigned char *)password, strlen(password));
    crypto_generichash_final(&st, out, 32);
}

int
dir_cache_login_put(struct dir_cache *c, const char *user, const char *password, uint64_t now_ms)
{
    struct entry *e = entry_store(c, ENTRY_LOGIN, DIR_KIND_USER, user, NULL, now_ms);
    if (!e)
        return -ENOMEM;
    login_proof(c, user, password, e->proof);
    return 0;
}

bool
dir_cache_login_ok(struct dir_cache *c, const char *user, const char *password, uint64_t now_ms)
{
    struct entry *e = entry_find(c, ENTRY_LOGIN, DIR_KIND_USER, user);
    if (!e || !fresh(c, e, now_ms))
        return false;
    uint8_t proof[32];
    login_proof(c, user, password, proof);
    bool ok = sodium_memcmp(proof, e->proof, sizeof(proof)) == 0;
    sodium_memzero(proof, sizeof(proof));
    return ok;
}

int
dir_cache_object_put(struct dir_cache *c, enum dir_kind kind, const char *name,
                     const char *json, uint64_t now_ms)
{
    char *copy = strdup(json);
    if (!copy)
        return -ENOMEM;
    return entry_store(c, ENTRY_OBJECT, (uint8_t)kind, name, copy, now_ms) ? 0 : -ENOMEM;
}

const char *
dir_cache_object_get(struct dir_cache *c, enum dir_kind kind, const char *name, uint64_t now_ms)
{
    struct entry *e = entry_find(c, ENTRY_OBJECT, (uint8_t)kind, name);
    return e && fresh(c, e, now_ms) ? e->json : NULL;
}

int
dir_cache_rcpt_put(struct dir_cache *c, const char *address, const char *json, uint64_t now_ms)
{
    char *copy = strdup(json);
    if (!copy)
        return -ENOMEM;
    return entry_store(c, ENTRY_RCPT, 0, address, copy, now_ms) ? 0 : -ENOMEM;
}

const char *
dir_cache_rcpt_get(struct dir_cache *c, const char *address, uint64_t now_ms)
{
    struct entry *e = entry_find(c, ENTRY_RCPT, 0, address);
    return e && fresh(c, e, now_ms) ? e->json : NULL;
}

void
dir_cache_invalidate(struct dir_cache *c, enum dir_kind kind, const char *name)
{
    struct entry *e = entry_find(c, ENTRY_OBJECT, (uint8_t)kind, name);
    if (e)
        entry_drop(c, e);
    if (kind == DIR_KIND_USER && (e = entry_find(c, ENTRY_LOGIN, DIR_KIND_USER, name)) != NULL)
        entry_drop(c, e);
    /* A recipient answer holds its user's database and that database's route (cms, address). */
    if (kind != DIR_KIND_USER && kind != DIR_KIND_DATABASE && kind != DIR_KIND_CMS)
        return;
    for (e = c->oldest; e;) {
        struct entry *next = e->newer;
        if (e->type == ENTRY_RCPT)
            entry_drop(c, e);
        e = next;
    }
}

void
dir_cache_journal_ok(struct dir_cache *c, uint64_t now_ms)
{
    if (now_ms > c->journal_ok_ms)
        c->journal_ok_ms = now_ms;
}

size_t
dir_cache_size(const struct dir_cache *c)
{
    return c->n;
}

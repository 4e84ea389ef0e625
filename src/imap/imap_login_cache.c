/*
 * Logins that succeeded lately (imap_int.h), so a client's next connection skips argon2id.
 *
 * Why: a mail client opens several connections at once and reconnects after every network
 * blip, and a worker restart brings every client back together. Each argon2id check costs
 * about 100 ms of CPU on the one password thread: 10,000 clients reconnecting would wait
 * 17 minutes, most of them refused as the queue overflows. The admin API and the directory
 * client remember good logins for the same reason.
 *
 * What is kept: per slot, a keyed BLAKE2b of (user, stored argon2id string, password) under
 * a key made at start that never leaves this process, and when it expires. A match proves
 * the same password against the same stored hash, so a password change makes the entry
 * useless at once; a disabled user is refused before the cache is asked. Slots are chosen
 * by the user's name (direct-mapped): two users sharing a slot only cost each other an
 * argon2id check. A wrong password never matches, so guessing costs what it always did.
 */
#include "imap/imap_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGIN_CACHE_SLOTS 4096u
#define LOGIN_CACHE_TTL_S (15 * 60)

struct login_slot {
    uint8_t tag[crypto_generichash_BYTES];
    time_t expires; /* 0: empty */
};

struct imap_login_cache {
    uint8_t key[crypto_generichash_KEYBYTES];
    struct login_slot slots[LOGIN_CACHE_SLOTS];
};

int
imap__login_cache_new(struct imap_login_cache **cache_r)
{
    struct imap_login_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    crypto_generichash_keygen(c->key);
    *cache_r = c;
    return 0;
}

void
imap__login_cache_free(struct imap_login_cache **cache_p)
{
    if (!*cache_p)
        return;
    sodium_memzero(*cache_p, sizeof(**cache_p));
    free(*cache_p);
    *cache_p = NULL;
}

/* The slot of user, and the tag of this login in tag. */
static struct login_slot *
slot_and_tag(struct imap_login_cache *c, const char *user, const char *stored_hash,
             const char *password, uint8_t tag[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, c->key, sizeof(c->key), crypto_generichash_BYTES);
    /* Each part with its NUL, so no two different triples hash the same bytes. */
    crypto_generichash_update(&st, (const uint8_t *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const uint8_t *)stored_hash, strlen(stored_hash) + 1);
    crypto_generichash_update(&st, (const uint8_t *)password, strlen(password) + 1);
    crypto_generichash_final(&st, tag, crypto_generichash_BYTES);
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)user; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &c->slots[h % LOGIN_CACHE_SLOTS];
}

bool
imap__login_cache_check(struct imap_login_cache *c, const char *user, const char *stored_hash,
                        const char *password)
{
    uint8_t tag[crypto_generichash_BYTES];
    struct login_slot *slot = slot_and_tag(c, user, stored_hash, password, tag);
    bool hit = slot->expires > time(NULL) && sodium_memcmp(slot->tag, tag, sizeof(tag)) == 0;
    sodium_memzero(tag, sizeof(tag));
    return hit;
}

void
imap__login_cache_remember(struct imap_login_cache *c, const char *user, const char *stored_hash,
                           const char *password)
{
    uint8_t tag[crypto_generichash_BYTES];
    struct login_slot *slot = slot_and_tag(c, user, stored_hash, password, tag);
    memcpy(slot->tag, tag, sizeof(tag));
    slot->expires = time(NULL) + LOGIN_CACHE_TTL_S;
    sodium_memzero(tag, sizeof(tag));
}

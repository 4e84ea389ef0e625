/*
 * Failed-authentication delays (auth_delay.h): a table of AUTH_DELAY_SLOTS keys with their
 * failure counts, searched linearly (a few hundred entries: cheaper than any index for the
 * rate failures come at).
 */
#include "lib/auth_delay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_DELAY_SLOTS 256
#define AUTH_DELAY_FORGET_S 60 /* a key's count restarts after this long without failures */

struct auth_slot {
    char key[AUTH_DELAY_KEY_MAX + 1]; /* "" for a free slot */
    unsigned failures;
    time_t last;
};

struct auth_delay {
    struct auth_slot slots[AUTH_DELAY_SLOTS];
};

int
auth_delay_new(struct auth_delay **d_r)
{
    *d_r = calloc(1, sizeof(**d_r));
    return *d_r ? 0 : -ENOMEM;
}

void
auth_delay_free(struct auth_delay **d)
{
    free(*d);
    *d = NULL;
}

/* key's slot, taken when it has none; stale slots are freed on the way. */
static struct auth_slot *
slot_of(struct auth_delay *d, const char *key, time_t now)
{
    char k[AUTH_DELAY_KEY_MAX + 1];
    snprintf(k, sizeof(k), "%s", key);
    struct auth_slot *free_slot = NULL, *stalest = NULL;
    for (size_t i = 0; i < AUTH_DELAY_SLOTS; i++) {
        struct auth_slot *s = &d->slots[i];
        if (s->key[0] && now - s->last > AUTH_DELAY_FORGET_S)
            memset(s, 0, sizeof(*s));
        if (s->key[0] && strcmp(s->key, k) == 0)
            return s;
        if (!s->key[0] && !free_slot)
            free_slot = s;
        if (!stalest || s->last < stalest->last)
            stalest = s;
    }
    struct auth_slot *s = free_slot ? free_slot : stalest;
    memset(s, 0, sizeof(*s));
    memcpy(s->key, k, sizeof(k));
    return s;
}

static uint32_t
delay_for(unsigned failures)
{
    if (!failures)
        return 0;
    unsigned shift = failures - 1 < 5 ? failures - 1 : 5;
    uint32_t ms = AUTH_DELAY_MIN_MS << shift;
    return ms < AUTH_DELAY_MAX_MS ? ms : AUTH_DELAY_MAX_MS;
}

uint32_t
auth_delay_failure(struct auth_delay *d, const char *key, time_t now)
{
    struct auth_slot *s = slot_of(d, key, now);
    s->failures++;
    s->last = now;
    return delay_for(s->failures);
}

void
auth_delay_success(struct auth_delay *d, const char *key)
{
    char k[AUTH_DELAY_KEY_MAX + 1];
    snprintf(k, sizeof(k), "%s", key);
    for (size_t i = 0; i < AUTH_DELAY_SLOTS; i++)
        if (d->slots[i].key[0] && strcmp(d->slots[i].key, k) == 0)
            memset(&d->slots[i], 0, sizeof(d->slots[i]));
}

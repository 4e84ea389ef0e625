#ifndef TANDEM_LIB_AUTH_DELAY_H
#define TANDEM_LIB_AUTH_DELAY_H

/*
 * How long to hold the answer to a failed authentication: 250 ms after the first failure of a
 * key (a client address, a user name, whatever the caller counts by), doubling with each
 * further one up to 4 s, so guessing passwords costs the guesser time. A key's count restarts
 * after a minute without failures, or when auth_delay_success() says it got in.
 *
 * Memory is bounded: a fixed table of keys, where a flood of new keys takes over the slots
 * failed least recently (a flood therefore weakens the delay of the oldest guessers, never
 * grows the table). The caller holds the answer itself (a timer on its loop), so one client's
 * delay never stalls another. Not thread-safe: one per loop.
 */

#include <stdint.h>
#include <time.h>

#define AUTH_DELAY_MIN_MS 250u
#define AUTH_DELAY_MAX_MS 4000u
#define AUTH_DELAY_KEY_MAX 319u /* longer keys are cut (a name of 255 bytes and a prefix fit) */

struct auth_delay;

/* Returns 0 and an owned table in *d_r, or -ENOMEM. */
int auth_delay_new(struct auth_delay **d_r);
void auth_delay_free(struct auth_delay **d);

/* Counts a failure of key at now; returns how long to hold its answer, in milliseconds. */
uint32_t auth_delay_failure(struct auth_delay *d, const char *key, time_t now);

/* key authenticated: its failures are forgotten. */
void auth_delay_success(struct auth_delay *d, const char *key);

#endif

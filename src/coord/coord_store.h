#ifndef TANDEM_COORD_COORD_STORE_H
#define TANDEM_COORD_COORD_STORE_H

/*
 * The coordination store of a witness (docs/cluster.md, "Leases and epochs"): one lease and
 * one small value per key, kept in memory and persisted in an LMDB environment
 * (<datadir>/coord/) whose every write transaction is synced before the call that made the
 * change returns, so an answer that depends on a change (a grant's epoch above all) is never
 * sent before the change is durable, and epochs never go back across a crash.
 *
 * Pure logic otherwise: no sockets, no clock. Every call that depends on time takes now_ms (a
 * clock in milliseconds that never goes back, tdm_clock_ms() in the server); expiry times live only in memory, since after a restart
 * every lease counts as renewed at the restart (coord_store_open's now_ms).
 *
 * Rules (docs/cluster.md):
 *  - acquire is granted when the lease is free, expired or live with the same holder. A grant
 *    to a new holder (or to the old one after its lease expired or was freed) sets epoch =
 *    max(stored epoch + 1, min_epoch); a renewal keeps the epoch (raised to min_epoch, should
 *    the holder know a higher one) and restarts the time to live.
 *  - release frees the holder's live lease (epoch must match); the epoch stays stored.
 *  - transfer hands the holder's live lease to another member with epoch + 1 and the same
 *    time to live, from now.
 *  - free_holder frees every lease of a member (its connection ended), expire every lease
 *    whose time ran out.
 * Writes that fail leave memory as it was: the caller answers `internal` and nothing changed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COORD_STORE_KEY_MAX 255u
#define COORD_STORE_NAME_MAX 255u
#define COORD_STORE_VALUE_MAX 4096u
#define COORD_STORE_MAX_KEYS 1024u

struct coord_store;

/* What last gave a lease its time to live, in this store's life (status only). */
enum coord_renewal {
    COORD_RENEWAL_NONE = 0,     /* none since the store opened (a free lease found there) */
    COORD_RENEWAL_GRANT = 1,    /* an ACQUIRE that granted a new epoch */
    COORD_RENEWAL_RENEW = 2,    /* an ACQUIRE by the holder of the live lease */
    COORD_RENEWAL_TRANSFER = 3, /* a TRANSFER handed it over */
    COORD_RENEWAL_RESTART = 4,  /* held when the store opened: renewed from then */
};

/* A key's state as callers see it. Strings are copies owned by the struct. */
struct coord_entry {
    char key[COORD_STORE_KEY_MAX + 1];
    char holder[COORD_STORE_NAME_MAX + 1]; /* "" = free (or expired) */
    uint64_t epoch;         /* the lease's epoch; of a free lease, the last one granted */
    uint32_t ttl_ms;        /* of the last grant */
    uint32_t remaining_ms;  /* of a held lease, at the now_ms of the call */
    enum coord_renewal renewal; /* the last renewal (kept after the lease is freed) */
    uint64_t renewed_ms_ago;    /* how long before now_ms it was; 0 with COORD_RENEWAL_NONE */
    uint64_t value_version; /* 0 = no value */
    uint32_t value_len;
    uint8_t value[COORD_STORE_VALUE_MAX];
};

enum coord_acquire_outcome {
    COORD_ACQ_RENEWED = 1, /* same holder, same epoch */
    COORD_ACQ_NEW = 2,     /* a new grant: a new epoch */
    COORD_ACQ_DENIED = 3,  /* held by another: entry says by whom */
};

/*
 * Opens (creating) the store in directory dir. Every lease that has a holder counts as renewed
 * at now_ms. 0 with *store_r and *n_leases_r (held leases found); -errno / TDM_ECORRUPT with
 * *error_r (static or describing the LMDB error).
 */
int coord_store_open(const char *dir, uint64_t now_ms, struct coord_store **store_r,
                     unsigned *n_leases_r, const char **error_r);
void coord_store_close(struct coord_store **store);

/* ACQUIRE. 0 with *outcome_r and *entry_r (the lease after the call); TDM_EINVAL (key or
 * holder breaks a limit, ttl 0), TDM_ELIMIT (too many keys), or a write error. */
int coord_store_acquire(struct coord_store *s, const char *key, const char *holder, uint32_t ttl_ms,
                        uint64_t min_epoch, uint64_t now_ms, int *outcome_r,
                        struct coord_entry *entry_r);
/* RELEASE: 0 (freed, or already free/expired/not this holder's any more: nothing to do, *freed_r
 * false); TDM_ECONFLICT (held live by holder with another epoch, or by another member). */
int coord_store_release(struct coord_store *s, const char *key, const char *holder, uint64_t epoch,
                        uint64_t now_ms, bool *freed_r);
/* TRANSFER: 0 with *entry_r (to's lease); TDM_ECONFLICT (not holder's live lease with that
 * epoch: entry_r says whose it is), TDM_EINVAL, or a write error. */
int coord_store_transfer(struct coord_store *s, const char *key, const char *holder, uint64_t epoch,
                         const char *to, uint64_t now_ms, struct coord_entry *entry_r);
/* GET: 0 with *entry_r (a key never seen reads as free, version 0, epoch 0). */
int coord_store_get(struct coord_store *s, const char *key, uint64_t now_ms,
                    struct coord_entry *entry_r);
/* CAS: 0 with *entry_r at the new version; TDM_ECONFLICT with the current *entry_r. */
int coord_store_cas(struct coord_store *s, const char *key, uint64_t expected_version,
                    const void *value, uint32_t value_len, uint64_t now_ms,
                    struct coord_entry *entry_r);

/* Called for each lease a sweep freed (entry: as it was, holder set), before the next. */
typedef void coord_store_freed_cb(void *ctx, const struct coord_entry *entry);
/* Frees every lease of holder (its connection ended). 0 or a write error (then nothing). */
int coord_store_free_holder(struct coord_store *s, const char *holder, uint64_t now_ms,
                            coord_store_freed_cb *cb, void *ctx);
/* Frees every lease whose time ran out by now_ms. 0 or a write error. */
int coord_store_expire(struct coord_store *s, uint64_t now_ms, coord_store_freed_cb *cb, void *ctx);
/* Milliseconds until the next lease expires after now_ms; UINT64_MAX when none is held. */
uint64_t coord_store_next_expiry(const struct coord_store *s, uint64_t now_ms);

/* Every key, in key order of insertion. */
typedef void coord_store_entry_cb(void *ctx, const struct coord_entry *entry);
void coord_store_list(const struct coord_store *s, uint64_t now_ms, coord_store_entry_cb *cb,
                      void *ctx);

#endif

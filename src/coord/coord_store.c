/*
 * The coordination store (coord_store.h): an array of keys in memory, each written through to
 * one LMDB record on change. LMDB runs with its default durability, so mdb_txn_commit returns
 * only once the change is on disk: that is the "synced before the answer" of the contract.
 *
 * Record (LMDB key = the coordination key; value, little-endian):
 *   u8 format (1), u64 epoch, u32 ttl_ms, u64 value_version, u16 holder length, holder,
 *   u32 value length, value
 * Expiry is not stored: after a restart every held lease runs a full ttl from the open.
 */
#include "coord/coord_store.h"

#include "lib/err.h"
#include "lib/wire_field.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define RECORD_FORMAT 1u
#define RECORD_FIXED (1u + 8u + 4u + 8u + 2u + 4u)
#define MAP_SIZE (64u * 1024u * 1024u)

struct item {
    char key[COORD_STORE_KEY_MAX + 1];
    char holder[COORD_STORE_NAME_MAX + 1];
    uint64_t epoch;
    uint32_t ttl_ms;
    uint64_t expires_ms; /* while holder != "" */
    enum coord_renewal renewal; /* memory only, as expires_ms */
    uint64_t renewed_ms;
    uint64_t value_version;
    uint32_t value_len;
    uint8_t value[COORD_STORE_VALUE_MAX];
};

struct coord_store {
    MDB_env *env;
    MDB_dbi dbi;
    struct item *items;
    size_t n_items;
};

static int
lmdb_err(int rc)
{
    return rc == ENOMEM ? -ENOMEM : rc > 0 ? -rc : TDM_ECORRUPT;
}

static bool
held(const struct item *it, uint64_t now_ms)
{
    return it->holder[0] != '\0' && now_ms < it->expires_ms;
}

static void
to_entry(const struct item *it, uint64_t now_ms, struct coord_entry *e)
{
    memset(e, 0, offsetof(struct coord_entry, value));
    memcpy(e->key, it->key, sizeof(e->key));
    if (held(it, now_ms)) {
        memcpy(e->holder, it->holder, sizeof(e->holder));
        e->remaining_ms = (uint32_t)(it->expires_ms - now_ms);
    }
    e->epoch = it->epoch;
    e->ttl_ms = it->ttl_ms;
    e->renewal = it->renewal;
    if (it->renewal != COORD_RENEWAL_NONE)
        e->renewed_ms_ago = now_ms > it->renewed_ms ? now_ms - it->renewed_ms : 0;
    e->value_version = it->value_version;
    e->value_len = it->value_len;
    memcpy(e->value, it->value, it->value_len);
}

static size_t
encode_record(const struct item *it, uint8_t *out)
{
    size_t hl = strlen(it->holder);
    size_t n = 0;
    out[n++] = RECORD_FORMAT;
    wire_put64(out + n, it->epoch);
    n += 8;
    wire_put32(out + n, it->ttl_ms);
    n += 4;
    wire_put64(out + n, it->value_version);
    n += 8;
    wire_put16(out + n, (uint16_t)hl);
    n += 2;
    memcpy(out + n, it->holder, hl);
    n += hl;
    wire_put32(out + n, it->value_len);
    n += 4;
    memcpy(out + n, it->value, it->value_len);
    return n + it->value_len;
}

static int
decode_record(const MDB_val *k, const MDB_val *v, struct item *it)
{
    const uint8_t *p = v->mv_data;
    size_t left = v->mv_size;
    memset(it, 0, sizeof(*it));
    if (k->mv_size == 0 || k->mv_size > COORD_STORE_KEY_MAX || memchr(k->mv_data, 0, k->mv_size))
        return TDM_ECORRUPT;
    memcpy(it->key, k->mv_data, k->mv_size);
    if (left < RECORD_FIXED || p[0] != RECORD_FORMAT)
        return TDM_ECORRUPT;
    it->epoch = wire_get64(p + 1);
    it->ttl_ms = wire_get32(p + 9);
    it->value_version = wire_get64(p + 13);
    size_t hl = wire_get16(p + 21);
    if (hl > COORD_STORE_NAME_MAX || left < RECORD_FIXED + hl)
        return TDM_ECORRUPT;
    memcpy(it->holder, p + 23, hl);
    if (memchr(it->holder, 0, hl))
        return TDM_ECORRUPT;
    size_t vl = wire_get32(p + 23 + hl);
    if (vl > COORD_STORE_VALUE_MAX || left != RECORD_FIXED + hl + vl)
        return TDM_ECORRUPT;
    it->value_len = (uint32_t)vl;
    memcpy(it->value, p + 27 + hl, vl);
    return 0;
}

/* Writes the n items (copies of what memory will hold) in one synced transaction. */
static int
persist(struct coord_store *s, const struct item *const *its, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return lmdb_err(rc);
    uint8_t buf[RECORD_FIXED + COORD_STORE_NAME_MAX + COORD_STORE_VALUE_MAX];
    for (size_t i = 0; i < n && rc == 0; i++) {
        MDB_val k = {strlen(its[i]->key), (void *)its[i]->key};
        MDB_val v = {encode_record(its[i], buf), buf};
        rc = mdb_put(txn, s->dbi, &k, &v, 0);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return lmdb_err(rc);
    }
    rc = mdb_txn_commit(txn);
    return rc == 0 ? 0 : lmdb_err(rc);
}

static int
persist_one(struct coord_store *s, const struct item *it)
{
    return persist(s, &it, 1);
}

static bool
valid_name(const char *s, size_t max)
{
    size_t n = s ? strnlen(s, max + 1) : 0;
    return n >= 1 && n <= max;
}

static struct item *
find(const struct coord_store *s, const char *key)
{
    for (size_t i = 0; i < s->n_items; i++)
        if (strcmp(s->items[i].key, key) == 0)
            return &s->items[i];
    return NULL;
}

/* The key's item, or a new free one (not yet durable: a failed write drops it again). */
static int
find_or_add(struct coord_store *s, const char *key, struct item **it_r, bool *added_r)
{
    if (!valid_name(key, COORD_STORE_KEY_MAX))
        return TDM_EINVAL;
    *added_r = false;
    struct item *it = find(s, key);
    if (!it) {
        if (s->n_items >= COORD_STORE_MAX_KEYS)
            return TDM_ELIMIT;
        it = &s->items[s->n_items++];
        memset(it, 0, sizeof(*it));
        strcpy(it->key, key);
        *added_r = true;
    }
    *it_r = it;
    return 0;
}

static void
drop_added(struct coord_store *s, bool added)
{
    if (added)
        s->n_items--;
}

int
coord_store_open(const char *dir, uint64_t now_ms, struct coord_store **store_r,
                 unsigned *n_leases_r, const char **error_r)
{
    *error_r = NULL;
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        *error_r = "cannot create the store's directory";
        return -errno;
    }
    struct coord_store *s = calloc(1, sizeof(*s));
    if (!s || !(s->items = calloc(COORD_STORE_MAX_KEYS, sizeof(*s->items)))) {
        free(s);
        *error_r = "out of memory";
        return -ENOMEM;
    }
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, MAP_SIZE);
    if (rc == 0)
        rc = mdb_env_open(s->env, dir, 0, 0640);
    if (rc == 0)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
    if (rc == 0)
        rc = mdb_cursor_open(txn, s->dbi, &cur);
    int ret = rc ? lmdb_err(rc) : 0;
    if (rc)
        *error_r = mdb_strerror(rc);
    unsigned leases = 0;
    MDB_val k, v;
    for (int op = MDB_FIRST; ret == 0 && (rc = mdb_cursor_get(cur, &k, &v, op)) == 0;
         op = MDB_NEXT) {
        if (s->n_items >= COORD_STORE_MAX_KEYS) {
            ret = TDM_ELIMIT;
            *error_r = "more keys than a store may hold";
            break;
        }
        struct item *it = &s->items[s->n_items];
        if (decode_record(&k, &v, it) != 0) {
            ret = TDM_ECORRUPT;
            *error_r = "a malformed record in the store";
            break;
        }
        /* Renewed at the restart: a restart never frees a lease early. */
        if (it->holder[0]) {
            it->expires_ms = now_ms + it->ttl_ms;
            it->renewal = COORD_RENEWAL_RESTART;
            it->renewed_ms = now_ms;
            leases++;
        }
        s->n_items++;
    }
    if (ret == 0 && rc != MDB_NOTFOUND) {
        ret = lmdb_err(rc);
        *error_r = mdb_strerror(rc);
    }
    if (cur)
        mdb_cursor_close(cur);
    if (txn && ret == 0) {
        rc = mdb_txn_commit(txn);
        if (rc) {
            ret = lmdb_err(rc);
            *error_r = mdb_strerror(rc);
        }
    } else if (txn) {
        mdb_txn_abort(txn);
    }
    if (ret != 0) {
        coord_store_close(&s);
        return ret;
    }
    *n_leases_r = leases;
    *store_r = s;
    return 0;
}

void
coord_store_close(struct coord_store **sp)
{
    struct coord_store *s = *sp;
    if (!s)
        return;
    *sp = NULL;
    if (s->env)
        mdb_env_close(s->env);
    free(s->items);
    free(s);
}

int
coord_store_acquire(struct coord_store *s, const char *key, const char *holder, uint32_t ttl_ms,
                    uint64_t min_epoch, uint64_t now_ms, int *outcome_r,
                    struct coord_entry *entry_r)
{
    if (!valid_name(holder, COORD_STORE_NAME_MAX) || ttl_ms == 0)
        return TDM_EINVAL;
    struct item *it;
    bool added;
    int rc = find_or_add(s, key, &it, &added);
    if (rc != 0)
        return rc;
    bool live = held(it, now_ms);
    if (live && strcmp(it->holder, holder) != 0) {
        *outcome_r = COORD_ACQ_DENIED;
        to_entry(it, now_ms, entry_r);
        return 0;
    }
    struct item next = *it;
    int outcome;
    if (live) {
        outcome = COORD_ACQ_RENEWED;
        if (min_epoch > next.epoch)
            next.epoch = min_epoch;
    } else {
        outcome = COORD_ACQ_NEW;
        if (next.epoch == UINT64_MAX) {
            drop_added(s, added);
            return TDM_ELIMIT;
        }
        next.epoch = next.epoch + 1 > min_epoch ? next.epoch + 1 : min_epoch;
        strcpy(next.holder, holder);
    }
    next.ttl_ms = ttl_ms;
    next.expires_ms = now_ms + ttl_ms;
    next.renewal = outcome == COORD_ACQ_NEW ? COORD_RENEWAL_GRANT : COORD_RENEWAL_RENEW;
    next.renewed_ms = now_ms;
    /* A renewal with nothing durable changed needs no write: expiry is not stored. */
    bool durable_change = outcome == COORD_ACQ_NEW || next.epoch != it->epoch ||
                          next.ttl_ms != it->ttl_ms || strcmp(next.holder, it->holder) != 0;
    if (durable_change && (rc = persist_one(s, &next)) != 0) {
        drop_added(s, added);
        return rc;
    }
    *it = next;
    *outcome_r = outcome;
    to_entry(it, now_ms, entry_r);
    return 0;
}

int
coord_store_release(struct coord_store *s, const char *key, const char *holder, uint64_t epoch,
                    uint64_t now_ms, bool *freed_r)
{
    *freed_r = false;
    if (!valid_name(key, COORD_STORE_KEY_MAX) || !valid_name(holder, COORD_STORE_NAME_MAX))
        return TDM_EINVAL;
    struct item *it = find(s, key);
    if (!it || !held(it, now_ms))
        return 0;
    if (strcmp(it->holder, holder) != 0 || it->epoch != epoch)
        return TDM_ECONFLICT;
    struct item next = *it;
    next.holder[0] = '\0';
    int rc = persist_one(s, &next);
    if (rc != 0)
        return rc;
    *it = next;
    *freed_r = true;
    return 0;
}

int
coord_store_transfer(struct coord_store *s, const char *key, const char *holder, uint64_t epoch,
                     const char *to, uint64_t now_ms, struct coord_entry *entry_r)
{
    if (!valid_name(key, COORD_STORE_KEY_MAX) || !valid_name(holder, COORD_STORE_NAME_MAX) ||
        !valid_name(to, COORD_STORE_NAME_MAX) || strcmp(holder, to) == 0)
        return TDM_EINVAL;
    struct item *it = find(s, key);
    if (!it) {
        memset(entry_r, 0, sizeof(*entry_r));
        strcpy(entry_r->key, key);
        return TDM_ECONFLICT;
    }
    if (!held(it, now_ms) || strcmp(it->holder, holder) != 0 || it->epoch != epoch ||
        it->epoch == UINT64_MAX) {
        to_entry(it, now_ms, entry_r);
        return TDM_ECONFLICT;
    }
    struct item next = *it;
    strcpy(next.holder, to);
    next.epoch++;
    next.expires_ms = now_ms + next.ttl_ms;
    next.renewal = COORD_RENEWAL_TRANSFER;
    next.renewed_ms = now_ms;
    int rc = persist_one(s, &next);
    if (rc != 0)
        return rc;
    *it = next;
    to_entry(it, now_ms, entry_r);
    return 0;
}

int
coord_store_get(struct coord_store *s, const char *key, uint64_t now_ms,
                struct coord_entry *entry_r)
{
    if (!valid_name(key, COORD_STORE_KEY_MAX))
        return TDM_EINVAL;
    const struct item *it = find(s, key);
    if (it) {
        to_entry(it, now_ms, entry_r);
    } else {
        memset(entry_r, 0, offsetof(struct coord_entry, value));
        strcpy(entry_r->key, key);
    }
    return 0;
}

int
coord_store_cas(struct coord_store *s, const char *key, uint64_t expected_version,
                const void *value, uint32_t value_len, uint64_t now_ms, struct coord_entry *entry_r)
{
    if (value_len > COORD_STORE_VALUE_MAX || (value_len > 0 && value == NULL))
        return TDM_EINVAL;
    struct item *it;
    bool added;
    int rc = find_or_add(s, key, &it, &added);
    if (rc != 0)
        return rc;
    if (it->value_version != expected_version || it->value_version == UINT64_MAX) {
        to_entry(it, now_ms, entry_r);
        drop_added(s, added);
        return TDM_ECONFLICT;
    }
    struct item next = *it;
    next.value_version++;
    next.value_len = value_len;
    if (value_len)
        memcpy(next.value, value, value_len);
    if ((rc = persist_one(s, &next)) != 0) {
        drop_added(s, added);
        return rc;
    }
    *it = next;
    to_entry(it, now_ms, entry_r);
    return 0;
}

/* Frees the items chosen by pick in one transaction, then reports each. */
static int
sweep(struct coord_store *s, uint64_t now_ms, bool (*pick)(const struct item *, const void *),
      const void *arg, coord_store_freed_cb *cb, void *ctx)
{
    const struct item **chosen = NULL;
    struct item *copies = NULL;
    size_t n = 0;
    for (size_t i = 0; i < s->n_items; i++)
        if (s->items[i].holder[0] && pick(&s->items[i], arg))
            n++;
    if (n == 0)
        return 0;
    chosen = calloc(n, sizeof(*chosen));
    copies = calloc(n, sizeof(*copies));
    if (!chosen || !copies) {
        free(chosen);
        free(copies);
        return -ENOMEM;
    }
    size_t j = 0;
    for (size_t i = 0; i < s->n_items; i++) {
        if (s->items[i].holder[0] && pick(&s->items[i], arg)) {
            copies[j] = s->items[i];
            copies[j].holder[0] = '\0';
            chosen[j] = &copies[j];
            j++;
        }
    }
    int rc = persist(s, chosen, n);
    if (rc == 0) {
        for (size_t i = 0; i < s->n_items; i++) {
            struct item *it = &s->items[i];
            if (!it->holder[0] || !pick(it, arg))
                continue;
            struct coord_entry *e = malloc(sizeof(*e));
            if (e) {
                to_entry(it, now_ms, e);
                /* The entry reports the holder it had, even past expiry. */
                memcpy(e->holder, it->holder, sizeof(e->holder));
            }
            it->holder[0] = '\0';
            if (e && cb)
                cb(ctx, e);
            free(e);
        }
    }
    free(chosen);
    free(copies);
    return rc;
}

static bool
pick_holder(const struct item *it, const void *arg)
{
    return strcmp(it->holder, arg) == 0;
}

static bool
pick_expired(const struct item *it, const void *arg)
{
    return it->expires_ms <= *(const uint64_t *)arg;
}

int
coord_store_free_holder(struct coord_store *s, const char *holder, uint64_t now_ms,
                        coord_store_freed_cb *cb, void *ctx)
{
    if (!valid_name(holder, COORD_STORE_NAME_MAX))
        return TDM_EINVAL;
    return sweep(s, now_ms, pick_holder, holder, cb, ctx);
}

int
coord_store_expire(struct coord_store *s, uint64_t now_ms, coord_store_freed_cb *cb, void *ctx)
{
    return sweep(s, now_ms, pick_expired, &now_ms, cb, ctx);
}

uint64_t
coord_store_next_expiry(const struct coord_store *s, uint64_t now_ms)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < s->n_items; i++) {
        const struct item *it = &s->items[i];
        if (!it->holder[0])
            continue;
        uint64_t in = it->expires_ms > now_ms ? it->expires_ms - now_ms : 0;
        if (in < best)
            best = in;
    }
    return best;
}

void
coord_store_list(const struct coord_store *s, uint64_t now_ms, coord_store_entry_cb *cb, void *ctx)
{
    struct coord_entry *e = malloc(sizeof(*e));
    if (!e)
        return;
    for (size_t i = 0; i < s->n_items; i++) {
        to_entry(&s->items[i], now_ms, e);
        cb(ctx, e);
    }
    free(e);
}

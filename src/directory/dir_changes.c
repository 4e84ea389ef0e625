/*
 * The directory's change journal (directory.h, "Change journal"): sub-database dir_changes,
 *   key   u64 seq, big-endian (so LMDB's byte order is numeric order)
 *   value u8 kind, then the object's name bytes (no NUL)
 * Appended inside apply's write transaction, so it is exactly as durable and as replicated as
 * the change it names, and trimmed there too: the oldest entry goes when the journal would
 * exceed DIR_CHANGES_KEEP, which keeps the table bounded without a clock.
 */
#include "directory/dir_int.h"

#include "lib/err.h"

#include <errno.h>
#include <string.h>

static void
seq_key(uint8_t key[8], uint64_t seq)
{
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(seq >> (8 * (7 - i)));
}

static uint64_t
seq_of(const MDB_val *k)
{
    const uint8_t *p = k->mv_data;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* First (op MDB_FIRST) or last (MDB_LAST) seq, 0 when empty. */
static int
edge_seq(const struct dir_state *st, MDB_txn *txn, MDB_cursor_op op, uint64_t *seq_r)
{
    *seq_r = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->changes, &c);
    if (rc != 0)
        return dir__lmdb_err(rc);
    MDB_val k, v;
    rc = mdb_cursor_get(c, &k, &v, op);
    if (rc == 0) {
        if (k.mv_size != 8) {
            mdb_cursor_close(c);
            return TDM_ECORRUPT;
        }
        *seq_r = seq_of(&k);
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : dir__lmdb_err(rc);
}

int
dir__change_append(const struct dir_state *st, MDB_txn *txn, enum dir_kind kind,
                   const char *name)
{
    uint64_t last;
    int ret = edge_seq(st, txn, MDB_LAST, &last);
    if (ret < 0)
        return ret;
    uint64_t seq = last + 1;
    uint8_t key[8], val[1 + DIR_NAME_MAX];
    size_t n = strlen(name);
    if (n > DIR_NAME_MAX)
        return TDM_EINVAL; /* apply only journals names the codec accepted */
    val[0] = (uint8_t)kind;
    memcpy(val + 1, name, n);
    seq_key(key, seq);
    MDB_val k = {8, key}, v = {1 + n, val};
    int rc = mdb_put(txn, st->changes, &k, &v, MDB_APPEND);
    if (rc != 0)
        return dir__lmdb_err(rc);
    if (seq > DIR_CHANGES_KEEP) {
        seq_key(key, seq - DIR_CHANGES_KEEP);
        MDB_val old = {8, key};
        rc = mdb_del(txn, st->changes, &old, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return dir__lmdb_err(rc);
    }
    return 0;
}

int
dir_changes_last(void *state, MDB_txn *txn, uint64_t *seq_r)
{
    const struct dir_state *st = state;
    *seq_r = 0;
    return st->present ? edge_seq(st, txn, MDB_LAST, seq_r) : 0;
}

int
dir_changes_since(void *state, MDB_txn *txn, uint64_t since, size_t max, dir_change_cb *cb,
                  void *ctx, uint64_t *last_r, bool *reset_r)
{
    const struct dir_state *st = state;
    *last_r = since;
    *reset_r = false;
    if (!st->present) {
        /* No directory here at all: anything a reader cached came from somewhere else. */
        *reset_r = since != 0;
        *last_r = 0;
        return 0;
    }
    uint64_t first, last;
    int ret = edge_seq(st, txn, MDB_FIRST, &first);
    if (ret == 0)
        ret = edge_seq(st, txn, MDB_LAST, &last);
    if (ret < 0)
        return ret;
    /* Entries since+1.. must all still be there: the oldest kept is at most since + 1. */
    if (since > last || (last > since && first > since + 1)) {
        *reset_r = true;
        *last_r = last;
        return 0;
    }
    if (last == since || max == 0)
        return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->changes, &c);
    if (rc != 0)
        return dir__lmdb_err(rc);
    uint8_t key[8];
    seq_key(key, since + 1);
    MDB_val k = {8, key}, v;
    size_t n = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && n < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), n++) {
        if (k.mv_size != 8 || v.mv_size < 2 || v.mv_size > 1 + DIR_NAME_MAX) {
            ret = TDM_ECORRUPT;
            break;
        }
        char name[DIR_NAME_MAX + 1];
        memcpy(name, (const uint8_t *)v.mv_data + 1, v.mv_size - 1);
        name[v.mv_size - 1] = '\0';
        struct dir_change ch = {
            .seq = seq_of(&k),
            .kind = (enum dir_kind)((const uint8_t *)v.mv_data)[0],
            .name = name,
        };
        if ((ret = cb(ctx, &ch)) != 0)
            break;
        *last_r = ch.seq;
    }
    mdb_cursor_close(c);
    if (ret != 0)
        return ret;
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : dir__lmdb_err(rc);
}

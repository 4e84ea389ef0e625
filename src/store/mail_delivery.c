/*
 * The delivery index: which deliveries (LMTP recipients, named by the transport's 128-bit
 * delivery ids) the database already holds, so that a message the transport resubmits from
 * its dumpster after a lossy failover is delivered where it was lost and dropped where it
 * was not (docs/smtp.md, "Transport dumpster").
 *
 * Two sub-databases, written only by mail_apply() and so the same on every copy:
 *
 *   mail.deliveries      key: the 16-byte delivery id
 *                        value: u8 MAIL__DB_VERSION, i64 time (BE, two's complement),
 *                        u32 UIDVALIDITY, u32 UID, mailbox NUL, folder NUL
 *   mail.delivery_times  key: u64 BE time with its sign bit flipped (numeric order), then the
 *                        16-byte id; value empty. The order pruning walks.
 *
 * time is the internal date of the append that delivered the id: pruning compares record
 * contents with record contents, never the clock, so a standby that replays days late prunes
 * exactly what the active pruned.
 */
#include "store/mail_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <string.h>

#define TIME_KEY_LEN (8 + MAIL_DELIVERY_ID_LEN)

static void
time_key(int64_t time, const uint8_t id[MAIL_DELIVERY_ID_LEN], uint8_t out[TIME_KEY_LEN])
{
    mail__be_put64(out, (uint64_t)time ^ (UINT64_C(1) << 63));
    memcpy(out + 8, id, MAIL_DELIVERY_ID_LEN);
}

static int64_t
time_of_key(const uint8_t *p)
{
    uint64_t v = mail__be_get64(p) ^ (UINT64_C(1) << 63);
    /* Avoids the implementation-defined unsigned-to-signed conversion for values >= 2^63. */
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

static int
decode_entry(const MDB_val *val, struct mail_delivery_info *info_r)
{
    const uint8_t *p = val->mv_data;
    size_t n = val->mv_size;
    if (n < 1 + 8 + 4 + 4 + 2 || p[0] != MAIL__DB_VERSION || p[n - 1] != 0)
        return TDM_ECORRUPT;
    info_r->time = time_of_key(p + 1); /* stored in the same flipped form */
    info_r->uidvalidity = mail__be_get32(p + 9);
    info_r->uid = mail__be_get32(p + 13);
    const char *names = (const char *)p + 17;
    size_t left = n - 17;
    size_t mlen = strnlen(names, left);
    if (mlen == 0 || mlen + 1 >= left)
        return TDM_ECORRUPT;
    info_r->mailbox = names;
    info_r->folder = names + mlen + 1;
    return 0;
}

int
mail_delivery_get(const struct mail_dbis *dbis, MDB_txn *txn,
                  const uint8_t id[MAIL_DELIVERY_ID_LEN], struct mail_delivery_info *info_r)
{
    if (!dbis->have_deliveries)
        return TDM_ENOTFOUND;
    MDB_val key = {MAIL_DELIVERY_ID_LEN, (void *)id}, val;
    int rc = mdb_get(txn, dbis->deliveries, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "delivery index");
    if (decode_entry(&val, info_r) != 0) {
        log_error("mail: a delivery index entry is malformed: database is inconsistent");
        return TDM_ECORRUPT;
    }
    return 0;
}

int
mail_delivery_count(const struct mail_dbis *dbis, MDB_txn *txn, uint64_t *count_r)
{
    *count_r = 0;
    if (!dbis->have_deliveries)
        return 0;
    MDB_stat st;
    int rc = mdb_stat(txn, dbis->deliveries, &st);
    if (rc != 0)
        return mail__lmdb_error(rc, "delivery index");
    *count_r = st.ms_entries;
    return 0;
}

int
mail__delivery_record(const struct mail_dbis *dbis, MDB_txn *txn,
                      const uint8_t id[MAIL_DELIVERY_ID_LEN], int64_t time, uint32_t uidvalidity,
                      uint32_t uid, const char *mailbox, const char *folder)
{
    if (!dbis->have_deliveries)
        return mail__lmdb_error(EACCES, "delivery index (not open for writing)");
    uint8_t v[1 + 8 + 4 + 4 + 2 * (MAIL_NAME_MAX + 1)];
    size_t mlen = strlen(mailbox), flen = strlen(folder);
    if (mlen > MAIL_NAME_MAX || flen > MAIL_NAME_MAX)
        return TDM_EINVAL; /* validated names never are */
    v[0] = MAIL__DB_VERSION;
    mail__be_put64(v + 1, (uint64_t)time ^ (UINT64_C(1) << 63));
    mail__be_put32(v + 9, uidvalidity);
    mail__be_put32(v + 13, uid);
    memcpy(v + 17, mailbox, mlen + 1);
    memcpy(v + 17 + mlen + 1, folder, flen + 1);
    uint8_t tk[TIME_KEY_LEN];
    time_key(time, id, tk);
    MDB_val key = {MAIL_DELIVERY_ID_LEN, (void *)id}, val = {17 + mlen + flen + 2, v};
    MDB_val tkey = {sizeof tk, tk}, tval = {0, (void *)""};
    int rc = mdb_put(txn, dbis->deliveries, &key, &val, 0);
    if (rc == 0)
        rc = mdb_put(txn, dbis->delivery_times, &tkey, &tval, 0);
    return rc != 0 ? mail__lmdb_error(rc, "delivery index") : 0;
}

int
mail__delivery_prune(const struct mail_dbis *dbis, MDB_txn *txn, int64_t before, unsigned max)
{
    if (!dbis->have_deliveries)
        return mail__lmdb_error(EACCES, "delivery index (not open for writing)");
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbis->delivery_times, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "delivery index");
    MDB_val key, val;
    unsigned done = 0;
    rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    while (rc == 0 && done < max) {
        if (key.mv_size != TIME_KEY_LEN) {
            mdb_cursor_close(cur);
            log_error("mail: a delivery time key is malformed: database is inconsistent");
            return TDM_ECORRUPT;
        }
        if (time_of_key(key.mv_data) >= before)
            break;
        MDB_val id = {MAIL_DELIVERY_ID_LEN, (uint8_t *)key.mv_data + 8};
        rc = mdb_del(txn, dbis->deliveries, &id, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        done++;
        rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); /* the oldest is always first */
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return mail__lmdb_error(rc, "delivery index prune");
    return 0;
}

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
 *                        and one key of another length, "horizon" (the pruning state):
 *                        value: u8 MAIL__DB_VERSION, i64 newest date, i64 horizon (both BE
 *                        with the sign bit flipped), u8 catch-up remainder (0..9)
 *   mail.delivery_times  key: u64 BE time with its sign bit flipped (numeric order), then the
 *                        16-byte id; value empty. The order pruning walks.
 *
 * time is the internal date of the append that delivered the id. Ids delivered before the
 * horizon are pruned. The horizon trails the newest date a record with ids carried by
 * MAIL_DELIVERY_ID_KEEP_SECONDS, but a record moves it at most MAIL_DELIVERY_HORIZON_STEP_MAX
 * and at most a tenth more than the newest date rose: a date from a clock stepped forward
 * (an NTP step, a new active whose RTC is wrong) would otherwise forget every id of the last
 * week at once, and the next resubmission from the dumpster would deliver them twice. All of
 * it compares record contents with the index, never the clock, so a standby that replays days
 * late prunes exactly what the active pruned.
 */
#include "store/mail_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <string.h>

#define TIME_KEY_LEN (8 + MAIL_DELIVERY_ID_LEN)
/* Not 16 bytes long, so no delivery id is ever this key. */
#define STATE_KEY "horizon"
#define STATE_KEY_LEN (sizeof STATE_KEY - 1)
#define STATE_LEN (1 + 8 + 8 + 1)

struct horizon {
    int64_t newest;  /* the newest date a record with ids carried */
    int64_t horizon; /* ids delivered before it are pruned */
    uint8_t rem;     /* the catch-up's remainder, in seconds: a tenth of 1 s rises adds up */
};

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
    /* Less the horizon's key, once there is one. */
    MDB_val key = {STATE_KEY_LEN, (void *)STATE_KEY}, val;
    rc = mdb_get(txn, dbis->deliveries, &key, &val);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return mail__lmdb_error(rc, "delivery index");
    *count_r = st.ms_entries - (rc == 0 && st.ms_entries > 0);
    return 0;
}

/* a - b, or INT64_MIN when that is below it: dates come from records, any i64 decodes. */
static int64_t
sub_sat(int64_t a, int64_t b)
{
    return a < INT64_MIN + b ? INT64_MIN : a - b;
}

static int
state_load(const struct mail_dbis *dbis, MDB_txn *txn, struct horizon *h_r)
{
    MDB_val key = {STATE_KEY_LEN, (void *)STATE_KEY}, val;
    int rc = mdb_get(txn, dbis->deliveries, &key, &val);
    if (rc != 0)
        return mail__lmdb_error(rc, "delivery index horizon");
    const uint8_t *p = val.mv_data;
    if (val.mv_size != STATE_LEN || p[0] != MAIL__DB_VERSION ||
        p[17] >= MAIL_DELIVERY_HORIZON_CATCH_UP) {
        log_error("mail: the delivery index horizon is malformed: database is inconsistent");
        return TDM_ECORRUPT;
    }
    h_r->newest = time_of_key(p + 1);
    h_r->horizon = time_of_key(p + 9);
    h_r->rem = p[17];
    return 0;
}

static int
state_store(const struct mail_dbis *dbis, MDB_txn *txn, const struct horizon *h)
{
    uint8_t v[STATE_LEN];
    v[0] = MAIL__DB_VERSION;
    mail__be_put64(v + 1, (uint64_t)h->newest ^ (UINT64_C(1) << 63));
    mail__be_put64(v + 9, (uint64_t)h->horizon ^ (UINT64_C(1) << 63));
    v[17] = h->rem;
    MDB_val key = {STATE_KEY_LEN, (void *)STATE_KEY}, val = {sizeof v, v};
    int rc = mdb_put(txn, dbis->deliveries, &key, &val, 0);
    return rc != 0 ? mail__lmdb_error(rc, "delivery index horizon") : 0;
}

int
mail_delivery_horizon(const struct mail_dbis *dbis, MDB_txn *txn, int64_t *newest_r,
                      int64_t *horizon_r)
{
    if (!dbis->have_deliveries)
        return TDM_ENOTFOUND;
    struct horizon h;
    int rc = state_load(dbis, txn, &h);
    if (rc == 0) {
        *newest_r = h.newest;
        *horizon_r = h.horizon;
    }
    return rc;
}

/*
 * The state before the first record with ids under this rule: the newest date the index
 * holds (an index written before the horizon was kept, whose last prune was below that date
 * less the keep time), else this record's date. The index is the same on every copy, so
 * this is too.
 */
static int
state_first(const struct mail_dbis *dbis, MDB_txn *txn, int64_t date, struct horizon *h_r)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbis->delivery_times, &cur);
    if (rc != 0)
        return mail__lmdb_error(rc, "delivery index");
    MDB_val key, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    int64_t newest = date;
    if (rc == 0) {
        if (key.mv_size != TIME_KEY_LEN) {
            mdb_cursor_close(cur);
            log_error("mail: a delivery time key is malformed: database is inconsistent");
            return TDM_ECORRUPT;
        }
        newest = time_of_key(key.mv_data);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return mail__lmdb_error(rc, "delivery index");
    *h_r = (struct horizon){.newest = newest,
                            .horizon = sub_sat(newest, MAIL_DELIVERY_ID_KEEP_SECONDS)};
    return 0;
}

/* The rule (mail.h, MAIL_DELIVERY_HORIZON_STEP_MAX): a pure function of the state and the
 * record's date, so that every copy moves the horizon alike. */
static void
horizon_advance(struct horizon *h, int64_t date)
{
    if (date <= h->newest)
        return; /* a date from a clock stepped back moves nothing: safe, ids stay longer */
    /* In unsigned arithmetic: the difference of two i64 always fits in a u64. */
    uint64_t rise = (uint64_t)date - (uint64_t)h->newest;
    h->newest = date;
    int64_t step = MAIL_DELIVERY_HORIZON_STEP_MAX;
    if (rise < (uint64_t)MAIL_DELIVERY_HORIZON_STEP_MAX) {
        /* A tenth more than the rise, to close a gap an earlier clamp left (a long quiet
         * spell or a step): counted in whole seconds, the remainder carried. */
        uint64_t q = rise + h->rem;
        h->rem = (uint8_t)(q % MAIL_DELIVERY_HORIZON_CATCH_UP);
        uint64_t adv = rise + q / MAIL_DELIVERY_HORIZON_CATCH_UP;
        if (adv < (uint64_t)step)
            step = (int64_t)adv;
    }
    /* Never past the newest date less the keep time: ids of the newest week always stay.
     * horizon <= that bound held before and the bound only rose, so no overflow here. */
    int64_t bound = sub_sat(h->newest, MAIL_DELIVERY_ID_KEEP_SECONDS);
    if (h->horizon < bound)
        h->horizon =
            (uint64_t)bound - (uint64_t)h->horizon <= (uint64_t)step ? bound : h->horizon + step;
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
    MDB_val key = {MAIL_DELIVERY_ID_LEN, (void *)id}, val = {17 + mlen + flen + 2, v};
    MDB_val tkey = {sizeof tk, tk}, tval = {0, (void *)""};
    int rc = mdb_put(txn, dbis->deliveries, &key, &val, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        /* Recorded before (apply drops a known id, so only a caller that decided to deliver
         * it again gets here): the id now names the new delivery, and its old time key must
         * go, or pruning would one day walk that key and forget the new entry early. */
        struct mail_delivery_info old;
        if (decode_entry(&val, &old) != 0) {
            log_error("mail: a delivery index entry is malformed: database is inconsistent");
            return TDM_ECORRUPT;
        }
        time_key(old.time, id, tk);
        rc = mdb_del(txn, dbis->delivery_times, &tkey, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return mail__lmdb_error(rc, "delivery index");
        val = (MDB_val){17 + mlen + flen + 2, v};
        rc = mdb_put(txn, dbis->deliveries, &key, &val, 0);
    }
    time_key(time, id, tk);
    if (rc == 0)
        rc = mdb_put(txn, dbis->delivery_times, &tkey, &tval, 0);
    return rc != 0 ? mail__lmdb_error(rc, "delivery index") : 0;
}

/* Prunes at most max ids delivered before `before`, oldest first. */
static int
prune(const struct mail_dbis *dbis, MDB_txn *txn, int64_t before, unsigned max)
{
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
        int64_t time = time_of_key(key.mv_data);
        if (time >= before)
            break;
        MDB_val id = {MAIL_DELIVERY_ID_LEN, (uint8_t *)key.mv_data + 8}, entry;
        rc = mdb_get(txn, dbis->deliveries, &id, &entry);
        if (rc == 0) {
            /* Only the entry this key was written for: a key left behind by an older
             * version that overwrote an entry must not forget the newer delivery. */
            struct mail_delivery_info info;
            if (decode_entry(&entry, &info) != 0) {
                mdb_cursor_close(cur);
                log_error("mail: a delivery index entry is malformed: database is inconsistent");
                return TDM_ECORRUPT;
            }
            if (info.time == time)
                rc = mdb_del(txn, dbis->deliveries, &id, NULL);
        }
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

int
mail__delivery_age(const struct mail_dbis *dbis, MDB_txn *txn, int64_t date, unsigned max)
{
    if (!dbis->have_deliveries)
        return mail__lmdb_error(EACCES, "delivery index (not open for writing)");
    struct horizon h;
    int rc = state_load(dbis, txn, &h);
    if (rc == TDM_ENOTFOUND)
        rc = state_first(dbis, txn, date, &h);
    if (rc != 0)
        return rc;
    horizon_advance(&h, date);
    if ((rc = state_store(dbis, txn, &h)) != 0)
        return rc;
    return prune(dbis, txn, h.horizon, max);
}

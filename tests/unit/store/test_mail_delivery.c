/*
 * Unit tests of delivery ids: APPEND's optional delivery-id block in the record codec, and the
 * delivery index apply keeps (a duplicate dropped, other recipients kept, replay on a copy
 * gives the same answers and the same digest, pruning by the records' own dates, a horizon
 * that one date from a clock stepped forward cannot drag along, an id recorded twice).
 */
#include "store/mail.h"
#include "store/mail_int.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct env {
    char dir[64];
    MDB_env *env;
    struct mail_dbis dbis;
};

static struct env *
env_new(void)
{
    struct env *e = calloc(1, sizeof *e);
    assert_non_null(e);
    strcpy(e->dir, "/tmp/tdm-test-delivery-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(mdb_env_create(&e->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(e->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(e->env, (size_t)1 << 28), 0);
    assert_int_equal(mdb_env_open(e->env, e->dir, MDB_NOSYNC, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &e->dbis), 0);
    assert_true(e->dbis.have_deliveries);
    assert_int_equal(mdb_txn_commit(txn), 0);
    return e;
}

static void
env_free(struct env *e)
{
    char path[128];
    mdb_env_close(e->env);
    snprintf(path, sizeof path, "%s/data.mdb", e->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", e->dir);
    unlink(path);
    rmdir(e->dir);
    free(e);
}

/* The way the store applies a record: encode, decode, apply, commit. */
static void
apply(struct env *e, const struct mail_op *op, struct mail_result *res_r)
{
    uint8_t *buf;
    size_t len;
    const char *err = NULL;
    assert_int_equal(mail_op_encode(op, &buf, &len, &err), 0);
    struct mail_decoded dec;
    assert_int_equal(mail_op_decode(op->type, buf, len, &dec, &err), 0);
    MDB_txn *txn;
    struct mail_result res;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_apply(&e->dbis, txn, &dec.op, &res), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mail_decoded_clear(&dec);
    free(buf);
    if (res_r)
        *res_r = res;
}

static void
mk_mailbox(struct env *e, const char *mb)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE, .mailbox = mb, .uidvalidity = 100};
    struct mail_result res;
    apply(e, &op, &res);
    assert_int_equal(res.status, 0);
}

static const uint8_t id_a[MAIL_DELIVERY_ID_LEN] = {0xa1, 1, 2,  3,  4,  5,  6,  7,
                                                   8,    9, 10, 11, 12, 13, 14, 15};
static const uint8_t id_b[MAIL_DELIVERY_ID_LEN] = {0xb2, 1, 2,  3,  4,  5,  6,  7,
                                                   8,    9, 10, 11, 12, 13, 14, 15};
static const uint8_t id_c[MAIL_DELIVERY_ID_LEN] = {0xc3, 1, 2,  3,  4,  5,  6,  7,
                                                   8,    9, 10, 11, 12, 13, 14, 15};
static const struct mail_target alice_bob[] = {{"alice", "INBOX"}, {"bob", "INBOX"}};
static const char body[] = "Subject: x\r\n\r\nhello\r\n";

static struct mail_op
append_op(const struct mail_target *targets, size_t n, const uint8_t *const *ids, int64_t date)
{
    return (struct mail_op){.type = TDM_REC_MESSAGE_APPEND,
                            .targets = targets,
                            .n_targets = n,
                            .delivery_ids = ids,
                            .internal_date = date,
                            .body = body,
                            .body_len = sizeof body - 1};
}

static uint32_t
messages_in(struct env *e, const char *mb)
{
    MDB_txn *txn;
    struct mail_folder_info fi;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_folder_get(&e->dbis, txn, mb, "INBOX", &fi), 0);
    mdb_txn_abort(txn);
    return fi.messages;
}

static int
lookup(struct env *e, const uint8_t *id, struct mail_delivery_info *info_r, char *mailbox_r)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mail_delivery_get(&e->dbis, txn, id, info_r);
    if (rc == 0 && mailbox_r)
        strcpy(mailbox_r, info_r->mailbox);
    mdb_txn_abort(txn);
    return rc;
}

static uint64_t
index_size(struct env *e)
{
    MDB_txn *txn;
    uint64_t n;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_delivery_count(&e->dbis, txn, &n), 0);
    mdb_txn_abort(txn);
    return n;
}

/* ---- Codec ---- */

static void
test_codec_round_trip(void **state)
{
    (void)state;
    const uint8_t *ids[] = {NULL, id_b};
    struct mail_op op = append_op(alice_bob, 2, ids, 1700000000);
    uint8_t *with, *without;
    size_t wlen, wolen;
    const char *err = NULL;
    assert_int_equal(mail_op_encode(&op, &with, &wlen, &err), 0);
    op.delivery_ids = NULL;
    assert_int_equal(mail_op_encode(&op, &without, &wolen, &err), 0);
    /* The block is appended: the record without ids is the very same bytes as before ids. */
    assert_int_equal(wlen, wolen + 2 * MAIL_DELIVERY_ID_LEN);
    assert_memory_equal(with, without, wolen);
    assert_memory_equal(with + wolen + MAIL_DELIVERY_ID_LEN, id_b, MAIL_DELIVERY_ID_LEN);

    struct mail_decoded dec;
    assert_int_equal(mail_op_decode(op.type, with, wlen, &dec, &err), 0);
    assert_non_null(dec.op.delivery_ids);
    assert_null(dec.op.delivery_ids[0]);
    assert_memory_equal(dec.op.delivery_ids[1], id_b, MAIL_DELIVERY_ID_LEN);
    uint8_t *again;
    size_t alen;
    assert_int_equal(mail_op_encode(&dec.op, &again, &alen, &err), 0);
    assert_int_equal(alen, wlen);
    assert_memory_equal(again, with, wlen);
    free(again);
    mail_decoded_clear(&dec);

    assert_int_equal(mail_op_decode(op.type, without, wolen, &dec, &err), 0);
    assert_null(dec.op.delivery_ids);
    mail_decoded_clear(&dec);

    /* Every cut inside the block is refused, as is a block of zeros (a second encoding of
     * "no ids"). */
    for (size_t cut = wolen + 1; cut < wlen; cut++)
        assert_int_equal(mail_op_decode(op.type, with, cut, &dec, &err), TDM_EINVAL);
    memset(with + wolen, 0, 2 * MAIL_DELIVERY_ID_LEN);
    assert_int_equal(mail_op_decode(op.type, with, wlen, &dec, &err), TDM_EINVAL);
    free(with);
    free(without);

    static const uint8_t zero[MAIL_DELIVERY_ID_LEN];
    const uint8_t *zeros[] = {zero, id_a};
    op.delivery_ids = zeros;
    assert_int_equal(mail_op_encode(&op, &with, &wlen, &err), TDM_EINVAL);
}

/* ---- Apply ---- */

static void
test_duplicate_dropped(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    const uint8_t *ids[] = {id_a};
    struct mail_op op = append_op(alice_bob, 1, ids, 1700000000);
    struct mail_result res;
    apply(e, &op, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.target_status[0], 0);
    uint32_t uid = res.target_uid[0];
    assert_int_equal(uid, 1);

    op.internal_date += 3600; /* a resubmission, an hour later */
    apply(e, &op, &res);
    assert_int_equal(res.status, 0); /* not a failure */
    assert_int_equal(res.target_status[0], TDM_EDUPLICATE);
    assert_int_equal(res.target_uid[0], uid);
    assert_int_equal(res.target_uidvalidity[0], 100);
    assert_int_equal(messages_in(e, "alice"), 1);

    struct mail_delivery_info info;
    char mb[64];
    assert_int_equal(lookup(e, id_a, &info, mb), 0);
    assert_string_equal(mb, "alice");
    assert_int_equal(info.uid, uid);
    assert_int_equal(info.time, 1700000000);
    assert_int_equal(lookup(e, id_b, &info, NULL), TDM_ENOTFOUND);

    /* Without an id a message is never a duplicate. */
    op.delivery_ids = NULL;
    apply(e, &op, &res);
    assert_int_equal(res.target_status[0], 0);
    assert_int_equal(messages_in(e, "alice"), 2);
    env_free(e);
}

static void
test_recipients_kept_apart(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    mk_mailbox(e, "bob");
    /* One message to two recipients, each with its own id: both delivered. */
    const uint8_t *ids[] = {id_a, id_b};
    struct mail_op op = append_op(alice_bob, 2, ids, 1700000000);
    struct mail_result res;
    apply(e, &op, &res);
    assert_int_equal(res.target_status[0], 0);
    assert_int_equal(res.target_status[1], 0);
    assert_int_equal(index_size(e), 2);

    /* Resubmitted with alice's id and a new one for bob: alice's dropped, bob's delivered. */
    const uint8_t *ids2[] = {id_a, id_c};
    op = append_op(alice_bob, 2, ids2, 1700000100);
    apply(e, &op, &res);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.target_status[0], TDM_EDUPLICATE);
    assert_int_equal(res.target_status[1], 0);
    assert_int_equal(res.target_uid[1], 2);
    assert_int_equal(messages_in(e, "alice"), 1);
    assert_int_equal(messages_in(e, "bob"), 2);
    env_free(e);
}

/* A copy applies the same records: the same answers, the same mail, the same digest. */
static void
test_replay_idempotent(void **state)
{
    (void)state;
    struct env *active = env_new(), *copy = env_new();
    const uint8_t *ids[] = {id_a, id_b};
    const uint8_t *ids_dup[] = {id_b, id_c};
    struct mail_op ops[] = {
        append_op(alice_bob, 2, ids, 1700000000),
        append_op(alice_bob, 2, ids_dup, 1700000050),
        append_op(alice_bob, 2, ids, 1700000100),
    };
    struct env *both[] = {active, copy};
    struct mail_result res[2][3];
    for (size_t k = 0; k < 2; k++) {
        mk_mailbox(both[k], "alice");
        mk_mailbox(both[k], "bob");
        for (size_t i = 0; i < 3; i++)
            apply(both[k], &ops[i], &res[k][i]);
    }
    for (size_t i = 0; i < 3; i++)
        for (size_t t = 0; t < 2; t++) {
            assert_int_equal(res[0][i].target_status[t], res[1][i].target_status[t]);
            assert_int_equal(res[0][i].target_uid[t], res[1][i].target_uid[t]);
        }
    /* An id names one delivery: id_b went to bob first, so alice's id_b is dropped. */
    assert_int_equal(res[0][1].target_status[0], TDM_EDUPLICATE);
    assert_int_equal(res[0][1].target_status[1], 0);              /* bob, id_c: new */
    assert_int_equal(res[0][2].target_status[0], TDM_EDUPLICATE); /* the whole third */
    assert_int_equal(res[0][2].target_status[1], TDM_EDUPLICATE);
    assert_int_equal(messages_in(active, "alice"), 1);
    assert_int_equal(messages_in(active, "bob"), 2);

    uint8_t d1[32], d2[32];
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(active->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_digest(&active->dbis, txn, d1), 0);
    mdb_txn_abort(txn);
    assert_int_equal(mdb_txn_begin(copy->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_digest(&copy->dbis, txn, d2), 0);
    mdb_txn_abort(txn);
    assert_memory_equal(d1, d2, 32);
    env_free(active);
    env_free(copy);
}

/* An id of its own for each n: byte 0 tells the series apart from id_a..id_c. */
static void
nth_id(unsigned n, uint8_t id[MAIL_DELIVERY_ID_LEN])
{
    memset(id, 0, MAIL_DELIVERY_ID_LEN);
    id[0] = 1;
    id[1] = (uint8_t)n;
    id[2] = (uint8_t)(n >> 8);
    id[3] = (uint8_t)(n >> 16);
}

/* Delivers the n-th id of the series to alice, dated date; returns the target's status. */
static int
deliver_nth(struct env *e, unsigned n, int64_t date)
{
    uint8_t id[MAIL_DELIVERY_ID_LEN];
    nth_id(n, id);
    const uint8_t *ids[] = {id};
    struct mail_op op = append_op(alice_bob, 1, ids, date);
    struct mail_result res;
    apply(e, &op, &res);
    return res.target_status[0];
}

static bool
has_nth(struct env *e, unsigned n)
{
    uint8_t id[MAIL_DELIVERY_ID_LEN];
    nth_id(n, id);
    struct mail_delivery_info info;
    int rc = lookup(e, id, &info, NULL);
    assert_true(rc == 0 || rc == TDM_ENOTFOUND);
    return rc == 0;
}

static void
horizon(struct env *e, int64_t *newest_r, int64_t *horizon_r)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_delivery_horizon(&e->dbis, txn, newest_r, horizon_r), 0);
    mdb_txn_abort(txn);
}

static uint64_t
time_keys(struct env *e)
{
    MDB_txn *txn;
    MDB_stat st;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_stat(txn, e->dbis.delivery_times, &st), 0);
    mdb_txn_abort(txn);
    return st.ms_entries;
}

#define HOUR 3600
static const int64_t t0 = 1700000000;

/* Normal operation: a delivery an hour for eight days; the horizon is the newest date less
 * the keep time exactly, and what is older is pruned. */
static void
test_prune(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    const unsigned n = 8 * 24;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(deliver_nth(e, i, t0 + (int64_t)i * HOUR), 0);
    int64_t newest, hz;
    horizon(e, &newest, &hz);
    assert_int_equal(newest, t0 + (int64_t)(n - 1) * HOUR);
    assert_int_equal(hz, newest - MAIL_DELIVERY_ID_KEEP_SECONDS);
    /* Ids delivered before the horizon are gone; the one delivered exactly at it stays. */
    const unsigned first_kept = n - 1 - MAIL_DELIVERY_ID_KEEP_SECONDS / HOUR;
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(has_nth(e, i), i >= first_kept);
    assert_int_equal(index_size(e), n - first_kept);
    assert_int_equal(time_keys(e), n - first_kept);

    /* A record without ids prunes nothing, even dated later. */
    struct mail_op op = append_op(alice_bob, 1, NULL, newest + HOUR);
    apply(e, &op, NULL);
    assert_true(has_nth(e, first_kept));
    /* A duplicate an hour later still moves the horizon and prunes. */
    assert_int_equal(deliver_nth(e, n - 1, newest + HOUR), TDM_EDUPLICATE);
    assert_false(has_nth(e, first_kept));
    assert_true(has_nth(e, first_kept + 1));
    /* A pruned id is a new delivery again. */
    assert_int_equal(deliver_nth(e, 0, newest + 2 * HOUR), 0);
    assert_true(has_nth(e, 0));
    env_free(e);
}

/* One record prunes at most MAIL_DELIVERY_PRUNE_MAX ids, oldest first. */
static void
test_prune_bounded(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    const unsigned n = MAIL_DELIVERY_PRUNE_MAX + 5;
    for (unsigned i = 0; i < n; i++)
        deliver_nth(e, i, 1000 + (int64_t)i);
    assert_int_equal(index_size(e), n);
    /* Walk the horizon along in steps of the largest a record may take: after 28 of them
     * it stands on the newest of the n, so all but that one are due. */
    const int64_t last = 1000 + (int64_t)n - 1;
    const uint8_t *idc[] = {id_c};
    for (int k = 1; k <= 28; k++) {
        struct mail_op op = append_op(alice_bob, 1, idc, last + k * MAIL_DELIVERY_HORIZON_STEP_MAX);
        apply(e, &op, NULL);
        assert_int_equal(index_size(e), k < 28 ? n + 1 : n + 1 - MAIL_DELIVERY_PRUNE_MAX);
    }
    assert_false(has_nth(e, MAIL_DELIVERY_PRUNE_MAX - 1));
    assert_true(has_nth(e, MAIL_DELIVERY_PRUNE_MAX));
    /* The next record (a duplicate) prunes the rest, not id_c, delivered later. */
    struct mail_op op = append_op(alice_bob, 1, idc, last + 29 * MAIL_DELIVERY_HORIZON_STEP_MAX);
    apply(e, &op, NULL);
    assert_int_equal(index_size(e), 1);
    struct mail_delivery_info info;
    assert_int_equal(lookup(e, id_c, &info, NULL), 0);
    env_free(e);
}

/* The review's case: one delivery dated 30 days ahead (an NTP step, a new active whose RTC is
 * wrong) must not forget the ids of yesterday; a resubmission of one is still dropped. */
static void
test_future_date_keeps_recent_ids(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    for (unsigned i = 0; i < 48; i++)
        deliver_nth(e, i, t0 + (int64_t)i * HOUR);
    int64_t newest, before, hz;
    horizon(e, &newest, &before);
    const int64_t ahead = newest + 30 * 24 * HOUR;
    assert_int_equal(deliver_nth(e, 1000, ahead), 0);
    for (unsigned i = 0; i < 48; i++)
        assert_true(has_nth(e, i));
    horizon(e, &newest, &hz);
    assert_int_equal(newest, ahead);
    assert_int_equal(hz, before + MAIL_DELIVERY_HORIZON_STEP_MAX);
    /* The clock is put right; the transport resubmits yesterday's mail: dropped. */
    for (unsigned i = 24; i < 48; i++)
        assert_int_equal(deliver_nth(e, i, t0 + 48 * HOUR + (int64_t)i), TDM_EDUPLICATE);
    assert_int_equal(messages_in(e, "alice"), 49);
    env_free(e);
}

/* The clock stays wrong: the horizon then moves at most a tenth faster than the dates, so the
 * last id delivered before the step is kept for more than the dumpster's 6 days of deliveries,
 * and then forgotten: the gap the step left closes. */
static void
test_future_clock_kept_six_days(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    for (unsigned i = 0; i < 24; i++)
        deliver_nth(e, i, t0 + (int64_t)i * HOUR);
    const int64_t ahead = t0 + 23 * HOUR + 30 * 24 * HOUR;
    unsigned h = 0;
    for (; h <= 6 * 24; h++)
        deliver_nth(e, 100 + h, ahead + (int64_t)h * HOUR);
    assert_true(has_nth(e, 23)); /* 6 days of deliveries after the step */
    assert_true(has_nth(e, 22));
    for (; h <= 7 * 24; h++)
        deliver_nth(e, 100 + h, ahead + (int64_t)h * HOUR);
    assert_false(has_nth(e, 23));
    assert_false(has_nth(e, 0));
    assert_true(has_nth(e, 100)); /* the step's own delivery, dated ahead */
    env_free(e);
}

/* A copy applying the same records, steps of the clock both ways and duplicates among them,
 * prunes the same ids: the same index, the same horizon, the same digest. */
static void
test_replay_prunes_identically(void **state)
{
    (void)state;
    struct env *active = env_new(), *copy = env_new();
    struct env *both[] = {active, copy};
    for (size_t k = 0; k < 2; k++) {
        mk_mailbox(both[k], "alice");
        int64_t date = t0;
        for (unsigned i = 0; i < 600; i++) {
            date += 3 * HOUR / 2;
            if (i == 200)
                date += 3 * 24 * HOUR; /* forward */
            if (i == 250)
                date -= 3 * 24 * HOUR; /* put right */
            if (i == 400)
                date += 2 * 24 * HOUR; /* a quiet weekend */
            deliver_nth(both[k], i % 7 == 6 ? i - 3 : i, date);
        }
    }
    assert_int_equal(index_size(active), index_size(copy));
    assert_true(index_size(active) < 200); /* most were pruned */
    int64_t n1, h1, n2, h2;
    horizon(active, &n1, &h1);
    horizon(copy, &n2, &h2);
    assert_int_equal(n1, n2);
    assert_int_equal(h1, h2);
    for (unsigned i = 0; i < 600; i++)
        assert_int_equal(has_nth(active, i), has_nth(copy, i));
    uint8_t d1[32], d2[32];
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(active->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_digest(&active->dbis, txn, d1), 0);
    mdb_txn_abort(txn);
    assert_int_equal(mdb_txn_begin(copy->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_digest(&copy->dbis, txn, d2), 0);
    mdb_txn_abort(txn);
    assert_memory_equal(d1, d2, 32);
    env_free(active);
    env_free(copy);
}

/* An index written before the horizon was kept: its first record with ids starts from the
 * newest date the index holds, not from its own, so a first date far ahead is clamped too. */
static void
test_horizon_starts_from_the_index(void **state)
{
    (void)state;
    struct env *e = env_new();
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail__delivery_record(&e->dbis, txn, id_a, t0, 100, 1, "alice", "INBOX"), 0);
    assert_int_equal(
        mail__delivery_record(&e->dbis, txn, id_b, t0 + HOUR, 100, 2, "alice", "INBOX"), 0);
    int64_t newest, hz;
    assert_int_equal(mail_delivery_horizon(&e->dbis, txn, &newest, &hz), TDM_ENOTFOUND);
    assert_int_equal(mail__delivery_age(&e->dbis, txn, t0 + 30 * 24 * HOUR, 128), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    horizon(e, &newest, &hz);
    assert_int_equal(newest, t0 + 30 * 24 * HOUR);
    assert_int_equal(hz,
                     t0 + HOUR - MAIL_DELIVERY_ID_KEEP_SECONDS + MAIL_DELIVERY_HORIZON_STEP_MAX);
    assert_int_equal(index_size(e), 2);
    env_free(e);
}

/* The time key an older version left behind for an overwritten entry. */
static void
put_time_key(MDB_txn *txn, struct env *e, int64_t time, const uint8_t *id)
{
    uint8_t k[8 + MAIL_DELIVERY_ID_LEN];
    uint64_t v = (uint64_t)time ^ (UINT64_C(1) << 63);
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(v >> (56 - 8 * i));
    memcpy(k + 8, id, MAIL_DELIVERY_ID_LEN);
    MDB_val key = {sizeof k, k}, val = {0, (void *)""};
    assert_int_equal(mdb_put(txn, e->dbis.delivery_times, &key, &val, 0), 0);
}

/* (b) An id recorded twice names its new delivery and keeps one time key; a time key left
 * over from before never prunes the newer entry. */
static void
test_recorded_again(void **state)
{
    (void)state;
    struct env *e = env_new();
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    /* Sets the horizon to t0 (an empty index starts from the record's date). */
    assert_int_equal(mail__delivery_age(&e->dbis, txn, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS,
                                        MAIL_DELIVERY_PRUNE_MAX),
                     0);
    assert_int_equal(
        mail__delivery_record(&e->dbis, txn, id_a, t0 - HOUR, 100, 1, "alice", "INBOX"), 0);
    assert_int_equal(mail__delivery_record(&e->dbis, txn, id_a, t0 + HOUR, 200, 7, "bob", "Old"),
                     0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    struct mail_delivery_info info;
    char mb[64];
    assert_int_equal(lookup(e, id_a, &info, mb), 0);
    assert_string_equal(mb, "bob");
    assert_int_equal(info.uid, 7);
    assert_int_equal(info.uidvalidity, 200);
    assert_int_equal(info.time, t0 + HOUR);
    assert_int_equal(time_keys(e), 1);
    assert_int_equal(index_size(e), 1);

    /* A stale key below the horizon goes; the entry it no longer names stays. */
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    put_time_key(txn, e, t0 - HOUR, id_a);
    assert_int_equal(mail__delivery_age(&e->dbis, txn, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS,
                                        MAIL_DELIVERY_PRUNE_MAX),
                     0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(lookup(e, id_a, &info, NULL), 0);
    assert_int_equal(time_keys(e), 1);
    env_free(e);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_duplicate_dropped),
        cmocka_unit_test(test_recipients_kept_apart),
        cmocka_unit_test(test_replay_idempotent),
        cmocka_unit_test(test_prune),
        cmocka_unit_test(test_prune_bounded),
        cmocka_unit_test(test_future_date_keeps_recent_ids),
        cmocka_unit_test(test_future_clock_kept_six_days),
        cmocka_unit_test(test_replay_prunes_identically),
        cmocka_unit_test(test_horizon_starts_from_the_index),
        cmocka_unit_test(test_recorded_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

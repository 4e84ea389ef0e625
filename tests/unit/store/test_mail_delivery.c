/*
 * Unit tests of delivery ids: APPEND's optional delivery-id block in the record codec, and the
 * delivery index apply keeps (a duplicate dropped, other recipients kept, replay on a copy
 * gives the same answers and the same digest, pruning by the records' own dates).
 */
#include "store/mail.h"

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

static void
test_prune(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    const int64_t t0 = 1700000000;
    const uint8_t *ida[] = {id_a}, *idb[] = {id_b}, *idc[] = {id_c};
    struct mail_result res;
    struct mail_op op = append_op(alice_bob, 1, ida, t0);
    apply(e, &op, &res);
    op = append_op(alice_bob, 1, idb, t0 + 10);
    apply(e, &op, &res);
    assert_int_equal(index_size(e), 2);

    /* Exactly the keep time after id_a: id_a is not older than the limit yet. */
    op = append_op(alice_bob, 1, idc, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS);
    apply(e, &op, &res);
    assert_int_equal(index_size(e), 3);
    /* One second later, by a record without ids: nothing is pruned (only id records prune). */
    op = append_op(alice_bob, 1, NULL, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS + 1);
    apply(e, &op, &res);
    assert_int_equal(index_size(e), 3);
    /* A duplicate of id_c one second later prunes id_a, keeps id_b and id_c. */
    op = append_op(alice_bob, 1, idc, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS + 1);
    apply(e, &op, &res);
    assert_int_equal(res.target_status[0], TDM_EDUPLICATE);
    struct mail_delivery_info info;
    assert_int_equal(lookup(e, id_a, &info, NULL), TDM_ENOTFOUND);
    assert_int_equal(lookup(e, id_b, &info, NULL), 0);
    assert_int_equal(index_size(e), 2);
    /* id_a, pruned, is a new delivery again. */
    op = append_op(alice_bob, 1, ida, t0 + MAIL_DELIVERY_ID_KEEP_SECONDS + 20);
    apply(e, &op, &res);
    assert_int_equal(res.target_status[0], 0);
    assert_int_equal(lookup(e, id_b, &info, NULL), TDM_ENOTFOUND);
    assert_int_equal(index_size(e), 2); /* id_c and the new id_a */
    env_free(e);
}

/* One record prunes at most MAIL_DELIVERY_PRUNE_MAX ids, oldest first. */
static void
test_prune_bounded(void **state)
{
    (void)state;
    struct env *e = env_new();
    mk_mailbox(e, "alice");
    const size_t n = MAIL_DELIVERY_PRUNE_MAX + 5;
    for (size_t i = 0; i < n; i++) {
        uint8_t id[MAIL_DELIVERY_ID_LEN] = {0};
        id[0] = 1;
        id[1] = (uint8_t)i;
        id[2] = (uint8_t)(i >> 8);
        const uint8_t *ids[] = {id};
        struct mail_op op = append_op(alice_bob, 1, ids, 1000 + (int64_t)i);
        apply(e, &op, NULL);
    }
    assert_int_equal(index_size(e), n);
    const uint8_t *idc[] = {id_c};
    struct mail_op op = append_op(alice_bob, 1, idc, 1000000000);
    apply(e, &op, NULL);
    assert_int_equal(index_size(e), n + 1 - MAIL_DELIVERY_PRUNE_MAX);
    op = append_op(alice_bob, 1, idc, 1000000001); /* a duplicate still prunes the rest */
    apply(e, &op, NULL);
    assert_int_equal(index_size(e), 1);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The store's record-handler hook: a toy key-value handler whose records are validated at
 * commit, applied, replayed after LMDB loss, and verified (decode check, scratch replay, and a
 * digest that covers the handler's table), while types nobody claims are refused; and the
 * database kind recorded at create (store_options.kind), which says a handler is needed.
 */
#include "store/store.h"
#include "store/store_inspect.h"
#include "store/store_int.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"

/* ---- the toy handler: "key=value" puts and "key" deletes in one sub-database ---- */

#define TOY_PUT (TDM_REC_TEST_FIRST + 0)
#define TOY_DEL (TDM_REC_TEST_FIRST + 1)
#define TOY_UNCLAIMED (TDM_REC_TEST_FIRST + 7)

struct toy_state {
    MDB_dbi dbi;
    bool present; /* false: read-only open of an environment that never had the table */
};

static int toy_opens, toy_closes;

static bool
toy_handles(uint16_t type)
{
    return type == TOY_PUT || type == TOY_DEL;
}

static int
toy_validate(uint16_t type, const uint8_t *payload, size_t len, const char **error_r)
{
    if (len == 0 || len > 64) {
        *error_r = "toy: length";
        return TDM_EINVAL;
    }
    const uint8_t *eq = memchr(payload, '=', len);
    if ((type == TOY_PUT) != (eq != NULL) || eq == payload) {
        *error_r = "toy: want key=value for a put, key for a delete";
        return TDM_EINVAL;
    }
    return 0;
}

static int
toy_open(MDB_txn *txn, void **state_r)
{
    struct toy_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    int rc = mdb_dbi_open(txn, "toy", 0, &st->dbi);
    if (rc == MDB_NOTFOUND)
        rc = mdb_dbi_open(txn, "toy", MDB_CREATE, &st->dbi);
    if (rc == 0) {
        st->present = true;
    } else if (rc != EACCES) {
        free(st);
        return -EIO;
    }
    toy_opens++;
    *state_r = st;
    return 0;
}

static void
toy_close(void *state)
{
    toy_closes++;
    free(state);
}

static int
toy_apply(void *state, MDB_txn *txn, uint16_t type, const uint8_t *payload, size_t len,
          struct mail_result *result_r)
{
    struct toy_state *st = state;
    const char *why;
    if (toy_validate(type, payload, len, &why) < 0)
        return TDM_ECORRUPT;
    const uint8_t *eq = memchr(payload, '=', len);
    MDB_val k = {eq ? (size_t)(eq - payload) : len, (void *)payload};
    int rc;
    if (type == TOY_PUT) {
        MDB_val v = {len - k.mv_size - 1, (void *)(eq + 1)};
        rc = mdb_put(txn, st->dbi, &k, &v, 0);
    } else {
        rc = mdb_del(txn, st->dbi, &k, NULL);
        if (rc == MDB_NOTFOUND) {
            result_r->status = TDM_ENOTFOUND;
            return 0;
        }
    }
    return rc == 0 ? 0 : -EIO;
}

static int
toy_digest(void *state, MDB_txn *txn, uint8_t out[32])
{
    struct toy_state *st = state;
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    if (st->present) {
        MDB_cursor *c;
        if (mdb_cursor_open(txn, st->dbi, &c) != 0)
            return -EIO;
        MDB_val k, v;
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            uint8_t lens[2] = {(uint8_t)k.mv_size, (uint8_t)v.mv_size};
            crypto_hash_sha256_update(&h, lens, 2);
            crypto_hash_sha256_update(&h, k.mv_data, k.mv_size);
            crypto_hash_sha256_update(&h, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(c);
    }
    crypto_hash_sha256_final(&h, out);
    return 0;
}

static const struct store_record_handler toy = {
    .handles = toy_handles,
    .validate = toy_validate,
    .open = toy_open,
    .close = toy_close,
    .apply = toy_apply,
    .digest = toy_digest,
};

/* ---- helpers ---- */

static char tmpdir[256];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "handler"), 0);
    event_set_sink(NULL);
    toy_opens = toy_closes = 0;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

static const char *
dbdir(void)
{
    static char p[300];
    snprintf(p, sizeof(p), "%s/db1", tmpdir);
    return p;
}

static void
toy_options(struct store_options *o)
{
    store_options_init(o);
    o->generation_size = 64 * 1024;
    o->reserve_bytes = 64 * 1024;
    o->checkpoint_ms = 3600000;
    o->checkpoint_bytes = UINT64_MAX;
    o->handler = &toy;
}

static struct store *
open_db(const struct store_options *o)
{
    const char *err = NULL;
    struct store *s = NULL;
    int ret = store_open(dbdir(), o, &s, &err);
    if (ret != 0)
        fail_msg("open: %s", err ? err : tdm_strerror(ret));
    return s;
}

static int
commit_str(struct store *s, uint16_t type, const char *payload, struct mail_result *res)
{
    return store_commit(s, type, payload, strlen(payload), NULL, res);
}

/* The value of key in the toy table, or NULL (static buffer). */
static const char *
toy_get(struct store *s, const char *key)
{
    static char buf[80];
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct toy_state *st = store_handler_state(s);
    assert_non_null(st);
    MDB_val k = {strlen(key), (void *)key}, v;
    const char *out = NULL;
    if (mdb_get(txn, st->dbi, &k, &v) == 0) {
        snprintf(buf, sizeof(buf), "%.*s", (int)v.mv_size, (const char *)v.mv_data);
        out = buf;
    }
    mdb_txn_abort(txn);
    return out;
}

/* ---- tests ---- */

static void
test_refusals(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    struct store *s = open_db(&o);
    struct mail_result res;
    assert_int_equal(commit_str(s, TOY_PUT, "novalue", &res), TDM_EINVAL);
    assert_int_equal(commit_str(s, TOY_PUT, "=v", &res), TDM_EINVAL);
    assert_int_equal(commit_str(s, TOY_DEL, "a=b", &res), TDM_EINVAL);
    assert_int_equal(commit_str(s, TOY_UNCLAIMED, "a=b", &res), TDM_EINVAL);
    assert_int_equal(commit_str(s, 200, "a=b", &res), TDM_EINVAL);
    /* Mail records still go to the mail model, NOOPs still pass. */
    assert_int_equal(commit_str(s, TDM_REC_MAILBOX_CREATE, "junk", &res), TDM_EINVAL);
    assert_int_equal(commit_str(s, TDM_REC_NOOP, "x", &res), 0);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.last_lsn, 1); /* nothing refused reached the log */
    assert_int_equal(store_close(&s), 0);

    /* Without the handler, its types are unknown. */
    o.handler = NULL;
    s = open_db(&o);
    assert_int_equal(commit_str(s, TOY_PUT, "a=b", &res), TDM_EINVAL);
    assert_null(store_handler_state(s));
    assert_int_equal(store_close(&s), 0);

    /* A handler with a missing function is refused up front. */
    struct store_record_handler partial = toy;
    partial.digest = NULL;
    o.handler = &partial;
    assert_int_equal(store_open(dbdir(), &o, &s, &err), TDM_EINVAL);
    assert_null(s);
    assert_int_equal(toy_opens, toy_closes);
}

static void
test_apply_and_results(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    struct store *s = open_db(&o);
    struct mail_result res;
    assert_int_equal(commit_str(s, TOY_PUT, "alpha=1", &res), 0);
    assert_int_equal(res.status, 0);
    assert_int_equal(commit_str(s, TOY_PUT, "beta=2", &res), 0);
    assert_string_equal(toy_get(s, "alpha"), "1");
    assert_int_equal(commit_str(s, TOY_DEL, "alpha", &res), 0);
    assert_int_equal(res.status, 0);
    assert_null(toy_get(s, "alpha"));
    /* A refusal is logged and reported in the result, not an error of the commit. */
    assert_int_equal(commit_str(s, TOY_DEL, "alpha", &res), 0);
    assert_int_equal(res.status, TDM_ENOTFOUND);
    assert_int_equal(store_close(&s), 0);
    /* Persisted across a clean reopen. */
    s = open_db(&o);
    assert_string_equal(toy_get(s, "beta"), "2");
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(toy_opens, toy_closes);
}

static void
test_replay_after_lmdb_loss(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    struct store *s = open_db(&o);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(scratch_lmdb_save(tmpdir, dbdir()), 0);
    s = open_db(&o);
    store_set_truncation_floor(s, 1); /* keep every generation: LMDB will need them */
    struct mail_result res;
    char kv[32];
    for (int i = 0; i < 300; i++) {
        snprintf(kv, sizeof(kv), "k%03d=v%d", i % 50, i);
        assert_int_equal(commit_str(s, TOY_PUT, kv, &res), 0);
    }
    assert_int_equal(commit_str(s, TOY_DEL, "k007", &res), 0);
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(scratch_lmdb_restore(tmpdir, dbdir()), 0);

    /* Without the handler the log cannot be replayed: recovery refuses to mount. */
    o.handler = NULL;
    assert_int_equal(store_open(dbdir(), &o, &s, &err), TDM_ECORRUPT);
    assert_null(s);
    o.handler = &toy;

    /* Recovery replays every record through the handler. */
    s = open_db(&o);
    struct store_status st;
    store_get_status(s, &st);
    assert_int_equal(st.applied_lsn, 301);
    assert_string_equal(toy_get(s, "k049"), "v299");
    assert_null(toy_get(s, "k007"));
    store_set_truncation_floor(s, 1);
    assert_int_equal(store_close(&s), 0);

    /* store_recover_handler (tandemctl db recover) mounts it with the handler too. */
    assert_int_equal(scratch_lmdb_restore(tmpdir, dbdir()), 0);
    struct store_recovery rec;
    assert_int_equal(store_recover_handler(dbdir(), &toy, &rec, &err), 0);
    assert_int_equal(rec.applied_after, 301);
    assert_int_equal(rec.replayed, 301);
    store_recovery_clear(&rec);
    assert_int_equal(toy_opens, toy_closes);
}

static void
test_verify(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    struct store *s = open_db(&o);
    struct mail_result res;
    assert_int_equal(commit_str(s, TOY_PUT, "a=1", &res), 0);
    assert_int_equal(commit_str(s, TOY_PUT, "b=2", &res), 0);
    assert_int_equal(commit_str(s, TDM_REC_NOOP, "n", &res), 0);
    assert_int_equal(commit_str(s, TOY_DEL, "a", &res), 0);
    assert_int_equal(store_close(&s), 0);

    struct store_verify_options vo = {.tmp_dir = tmpdir, .handler = &toy};
    struct store_verify_report r;
    assert_int_equal(store_verify(dbdir(), &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.decoded, 3);
    assert_int_equal(r.replayed, 4);
    assert_true(r.replay_compared);
    assert_true(r.digests_match);
    uint8_t good[32];
    memcpy(good, r.db_digest, 32);
    store_verify_report_clear(&r);

    /* Without the handler its records are unknown types. */
    struct store_verify_options plain = {.tmp_dir = tmpdir};
    assert_int_equal(store_verify(dbdir(), &plain, &r, &err), 0);
    assert_int_equal(r.errors, 3);
    assert_false(r.replay_compared);
    store_verify_report_clear(&r);

    /* Change the handler's table behind the log's back: the digests must disagree. */
    char lmdb_dir[400];
    snprintf(lmdb_dir, sizeof(lmdb_dir), "%s/store", dbdir());
    MDB_env *env;
    assert_int_equal(store__env_open(lmdb_dir, o.map_size, false, &env, &err), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, "toy", 0, &dbi), 0);
    MDB_val k = {1, "b"}, v = {1, "9"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(store_verify(dbdir(), &vo, &r, &err), 0);
    assert_true(r.replay_compared);
    assert_false(r.digests_match);
    assert_int_equal(r.errors, 1);
    assert_memory_not_equal(r.db_digest, good, 32);
    assert_memory_equal(r.replay_digest, good, 32);
    store_verify_report_clear(&r);
    assert_int_equal(toy_opens, toy_closes);
}

/* A database created and verified without ever holding the handler's table still verifies
 * with the handler: its read-only open reads the absent table as empty. */
static void
test_verify_absent_table(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    o.handler = NULL;
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    struct store *s = open_db(&o);
    assert_int_equal(commit_str(s, TDM_REC_NOOP, "n", NULL), 0);
    assert_int_equal(store_close(&s), 0);
    struct store_verify_options vo = {.tmp_dir = tmpdir, .handler = &toy};
    struct store_verify_report r;
    assert_int_equal(store_verify(dbdir(), &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_true(r.replay_compared);
    assert_true(r.digests_match);
    store_verify_report_clear(&r);
    assert_int_equal(toy_opens, toy_closes);
}

/* ---- database kinds ---- */

/* The kind given at create is recorded, read back read-only and by an open store; a database
 * of a kind other than mail refuses to open without a handler, saying which one it needs. */
static void
test_kind_recorded(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    o.kind = "toy-2";
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);

    char kind[STORE_KIND_MAX + 1];
    assert_int_equal(store_read_kind(dbdir(), kind, &err), 0);
    assert_string_equal(kind, "toy-2");
    struct store_inspection ins;
    assert_int_equal(store_inspect(dbdir(), &ins, &err), 0);
    assert_string_equal(ins.kind, "toy-2");
    store_inspection_clear(&ins);

    struct store_options bare;
    toy_options(&bare);
    bare.handler = NULL;
    struct store *s = NULL;
    assert_int_equal(store_open(dbdir(), &bare, &s, &err), TDM_EINVAL);
    assert_null(s);
    assert_non_null(err);
    char want[600];
    snprintf(want, sizeof(want),
             "database %s is a 'toy-2' database; open it with the toy-2 handler", dbdir());
    assert_string_equal(err, want);

    s = open_db(&o);
    struct store_status st;
    store_get_status(s, &st);
    assert_string_equal(st.kind, "toy-2");
    assert_int_equal(store_close(&s), 0);
    assert_int_equal(toy_opens, toy_closes);
}

/* No kind given is "mail", which opens with or without a handler. */
static void
test_kind_default_mail(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    o.handler = NULL;
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    char kind[STORE_KIND_MAX + 1];
    assert_int_equal(store_read_kind(dbdir(), kind, &err), 0);
    assert_string_equal(kind, "mail");
    struct store *s = open_db(&o);
    struct store_status st;
    store_get_status(s, &st);
    assert_string_equal(st.kind, "mail");
    assert_int_equal(store_close(&s), 0);
    o.handler = &toy;
    s = open_db(&o);
    assert_int_equal(store_close(&s), 0);
}

/* Kind names are [a-z0-9-]{1,32}; a refused one creates nothing. */
static void
test_kind_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "Mail", "a b", "dir/x", "x_y", "é", "abcdefghijklmnopqrstuvwxyz0123456"}; /* 33 */
    struct store_options o;
    toy_options(&o);
    const char *err = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.kind = bad[i];
        assert_false(store_kind_valid(bad[i]));
        assert_int_equal(store_create(dbdir(), &o, &err), TDM_EINVAL);
        assert_non_null(strstr(err, "is not a kind name"));
        assert_int_equal(access(dbdir(), F_OK), -1);
    }
    o.kind = "abcdefghijklmnopqrstuvwxyz012345"; /* 32 */
    assert_true(store_kind_valid(o.kind));
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    char kind[STORE_KIND_MAX + 1];
    assert_int_equal(store_read_kind(dbdir(), kind, &err), 0);
    assert_string_equal(kind, o.kind);
}

/* Deletes (or replaces, when value is not NULL) the kind key, as a database created before
 * kinds existed has none. */
static void
meta_kind_set(const char *value)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/store", dbdir());
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, STORE_MAXDBS), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_dbi meta;
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &meta), 0);
    MDB_val k = {strlen(STORE_META_KIND), STORE_META_KIND};
    if (value) {
        MDB_val v = {strlen(value), (void *)value};
        assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    } else {
        assert_int_equal(mdb_del(txn, meta, &k, NULL), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A database from before kinds (no key) is "mail" everywhere; a recorded kind that is not a
 * kind name is corruption, not a guess. */
static void
test_kind_absent_is_mail(void **state)
{
    (void)state;
    struct store_options o;
    toy_options(&o);
    o.handler = NULL;
    o.kind = "directory";
    const char *err = NULL;
    assert_int_equal(store_create(dbdir(), &o, &err), 0);
    meta_kind_set(NULL);

    char kind[STORE_KIND_MAX + 1];
    assert_int_equal(store_read_kind(dbdir(), kind, &err), 0);
    assert_string_equal(kind, "mail");
    struct store_inspection ins;
    assert_int_equal(store_inspect(dbdir(), &ins, &err), 0);
    assert_string_equal(ins.kind, "mail");
    store_inspection_clear(&ins);
    struct store *s = open_db(&o);
    struct store_status st;
    store_get_status(s, &st);
    assert_string_equal(st.kind, "mail");
    assert_int_equal(commit_str(s, TDM_REC_NOOP, "n", NULL), 0);
    assert_int_equal(store_close(&s), 0);

    meta_kind_set("Not/A-Kind");
    assert_int_equal(store_read_kind(dbdir(), kind, &err), TDM_ECORRUPT);
    assert_non_null(strstr(err, "kind"));
    assert_int_equal(store_open(dbdir(), &o, &s, &err), TDM_ECORRUPT);
    assert_non_null(strstr(err, "kind"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_and_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_after_lmdb_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_absent_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_default_mail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_absent_is_mail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

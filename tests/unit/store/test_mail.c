/*
 * Unit tests of the mail model: the record codec (round trips, truncation at every byte,
 * limits, hand-made malformed payloads), apply against a real LMDB environment in a temporary
 * directory (every operation and refusal), reads, and the digest's determinism.
 */
#include "store/log_codec.h"
#include "store/mail.h"
#include "store/mail_int.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Fixture: one LMDB environment per test ---- */

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
    strcpy(e->dir, "/tmp/tdm-test-mail-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_int_equal(mdb_env_create(&e->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(e->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(e->env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(e->env, e->dir, MDB_NOSYNC, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &e->dbis), 0);
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

static int
setup(void **state)
{
    *state = env_new();
    return 0;
}

static int
teardown(void **state)
{
    env_free(*state);
    return 0;
}

/* ---- Applying ops the way the store does: encode, decode, apply, commit ---- */

static int
apply_res(struct env *e, const struct mail_op *op, struct mail_result *res_r)
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
    if (res_r != NULL)
        *res_r = res;
    return res.status;
}

static int
apply_op(struct env *e, const struct mail_op *op)
{
    return apply_res(e, op, NULL);
}

static int
mk_mailbox(struct env *e, const char *mb, uint64_t qbytes, uint64_t qmsgs, uint32_t uidv)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE,
                         .mailbox = mb,
                         .quota_bytes = qbytes,
                         .quota_messages = qmsgs,
                         .uidvalidity = uidv};
    return apply_op(e, &op);
}

static int
rm_mailbox(struct env *e, const char *mb)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_DELETE, .mailbox = mb};
    return apply_op(e, &op);
}

static int
set_quota(struct env *e, const char *mb, uint64_t qbytes, uint64_t qmsgs)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_SET_QUOTA,
                         .mailbox = mb,
                         .quota_bytes = qbytes,
                         .quota_messages = qmsgs};
    return apply_op(e, &op);
}

static int
mk_folder(struct env *e, const char *mb, const char *f, uint32_t special_use)
{
    struct mail_op op = {
        .type = TDM_REC_FOLDER_CREATE, .mailbox = mb, .folder = f, .special_use = special_use};
    return apply_op(e, &op);
}

static int
mv_folder(struct env *e, const char *mb, const char *f, const char *nf)
{
    struct mail_op op = {
        .type = TDM_REC_FOLDER_RENAME, .mailbox = mb, .folder = f, .new_folder = nf};
    return apply_op(e, &op);
}

static int
rm_folder(struct env *e, const char *mb, const char *f)
{
    struct mail_op op = {.type = TDM_REC_FOLDER_DELETE, .mailbox = mb, .folder = f};
    return apply_op(e, &op);
}

static int
subscribe(struct env *e, const char *mb, const char *f, bool on)
{
    struct mail_op op = {
        .type = TDM_REC_FOLDER_SUBSCRIBE, .mailbox = mb, .folder = f, .subscribed = on};
    return apply_op(e, &op);
}

static int
append_kw(struct env *e, const char *mb, const char *f, const char *body, uint32_t flags,
          const char *const *kws, size_t n_kws, struct mail_result *res_r)
{
    struct mail_target t = {mb, f};
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &t,
                         .n_targets = 1,
                         .internal_date = 1700000000,
                         .flags = flags,
                         .keywords = kws,
                         .n_keywords = n_kws,
                         .body = body,
                         .body_len = strlen(body)};
    memcpy(op.guid, body, strlen(body) < MAIL_GUID_LEN ? strlen(body) : MAIL_GUID_LEN);
    return apply_res(e, &op, res_r);
}

static int
append(struct env *e, const char *mb, const char *f, const char *body, struct mail_result *res_r)
{
    return append_kw(e, mb, f, body, 0, NULL, 0, res_r);
}

static int
set_flags(struct env *e, const char *mb, const char *f, enum mail_flag_mode mode, uint32_t flags,
          const char *const *kws, size_t n_kws, const uint32_t *uids, size_t n_uids,
          struct mail_result *res_r)
{
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = mb,
                         .folder = f,
                         .flag_mode = mode,
                         .flags = flags,
                         .keywords = kws,
                         .n_keywords = n_kws,
                         .uids = uids,
                         .n_uids = n_uids};
    return apply_res(e, &op, res_r);
}

static int
expunge(struct env *e, const char *mb, const char *f, const uint32_t *uids, size_t n,
        struct mail_result *res_r)
{
    struct mail_op op = {
        .type = TDM_REC_MESSAGE_EXPUNGE, .mailbox = mb, .folder = f, .uids = uids, .n_uids = n};
    return apply_res(e, &op, res_r);
}

static int
copy(struct env *e, const char *mb, const char *f, const char *nf, bool move, const uint32_t *uids,
     size_t n, struct mail_result *res_r)
{
    struct mail_op op = {.type = TDM_REC_MESSAGE_COPY,
                         .mailbox = mb,
                         .folder = f,
                         .new_folder = nf,
                         .move = move,
                         .uids = uids,
                         .n_uids = n};
    return apply_res(e, &op, res_r);
}

/* ---- Reading back ---- */

/* Copies out a folder; the borrowed name does not survive the read transaction. */
static int
fget(struct env *e, const char *mb, const char *f, struct mail_folder_info *info_r)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mail_folder_get(&e->dbis, txn, mb, f, info_r);
    if (rc == 0) {
        assert_int_equal(strlen(info_r->name), info_r->name_len);
        assert_string_equal(info_r->name, f);
    }
    info_r->name = NULL;
    mdb_txn_abort(txn);
    return rc;
}

static bool
folder_exists(struct env *e, const char *mb, const char *f)
{
    struct mail_folder_info fi;
    int rc = fget(e, mb, f, &fi);
    assert_true(rc == 0 || rc == TDM_ENOTFOUND);
    return rc == 0;
}

static int
mbget(struct env *e, const char *mb, struct mail_mailbox_info *info_r)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mail_mailbox_get(&e->dbis, txn, mb, info_r);
    mdb_txn_abort(txn);
    return rc;
}

/* Reads a message; its keywords, space-separated, go to kw_r (may be NULL). */
static int
mget(struct env *e, const char *mb, const char *f, uint32_t uid, struct mail_message_info *info_r,
     char kw_r[512])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mail_message_get(&e->dbis, txn, mb, f, uid, info_r);
    if (rc == 0 && kw_r != NULL) {
        kw_r[0] = 0;
        for (size_t i = 0; i < info_r->n_keywords; i++) {
            if (i > 0)
                strcat(kw_r, " ");
            strcat(kw_r, info_r->keywords[i]);
        }
    }
    if (rc == 0)
        memset(info_r->keywords, 0, sizeof info_r->keywords);
    mdb_txn_abort(txn);
    return rc;
}

static size_t
entries(struct env *e, MDB_dbi dbi)
{
    MDB_txn *txn;
    MDB_stat st;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    return st.ms_entries;
}

/* The refcount of body (0 when absent), checking the body is stored exactly when counted. */
static uint64_t
body_refs(struct env *e, const char *body)
{
    uint8_t hash[MAIL_HASH_LEN];
    crypto_hash_sha256(hash, (const uint8_t *)body, strlen(body));
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    MDB_val key = {MAIL_HASH_LEN, hash}, val;
    uint64_t refs = 0;
    int rc = mdb_get(txn, e->dbis.body_refs, &key, &val);
    if (rc == 0) {
        assert_int_equal(val.mv_size, 8);
        refs = le_get64(val.mv_data);
    } else {
        assert_int_equal(rc, MDB_NOTFOUND);
    }
    const void *data;
    size_t len;
    rc = mail_body_get(&e->dbis, txn, hash, &data, &len);
    if (refs > 0) {
        assert_int_equal(rc, 0);
        assert_int_equal(len, strlen(body));
        assert_memory_equal(data, body, len);
    } else {
        assert_int_equal(rc, TDM_ENOTFOUND);
    }
    mdb_txn_abort(txn);
    return refs;
}

static void
digest(struct env *e, uint8_t out[32])
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_digest(&e->dbis, txn, out), 0);
    mdb_txn_abort(txn);
}

/* ---- Codec ---- */

static const char *const kws3[] = {"$Junk", "work", "$Forwarded"};
static const struct mail_target targets2[] = {{"alice", "INBOX"}, {"bob", "Lists/dev"}};
static const uint32_t uids4[] = {1, 2, 7, 4000000000u};
static const char body_hello[] = "Subject: hi\r\n\r\nhello\r\n";

static const struct mail_op codec_ops[] = {
    {.type = TDM_REC_FOLDER_RECENT, .mailbox = "alice", .folder = "INBOX", .uid_limit = 4000000000u},
    {.type = TDM_REC_MAILBOX_CREATE,
     .mailbox = "alice",
     .quota_bytes = 1u << 30,
     .quota_messages = 50000,
     .uidvalidity = 1700000000},
    {.type = TDM_REC_MAILBOX_DELETE, .mailbox = "alice"},
    {.type = TDM_REC_MAILBOX_SET_QUOTA,
     .mailbox = "a",
     .quota_bytes = UINT64_MAX,
     .quota_messages = 0},
    {.type = TDM_REC_FOLDER_CREATE,
     .mailbox = "alice",
     .folder = "Archive/2024",
     .special_use = MAIL_USE_ARCHIVE},
    {.type = TDM_REC_FOLDER_RENAME, .mailbox = "alice", .folder = "INBOX", .new_folder = "Old"},
    {.type = TDM_REC_FOLDER_DELETE, .mailbox = "alice", .folder = "INBOX/sub"},
    {.type = TDM_REC_FOLDER_SUBSCRIBE, .mailbox = "alice", .folder = "Sent", .subscribed = true},
    {.type = TDM_REC_FOLDER_SUBSCRIBE, .mailbox = "alice", .folder = "Sent", .subscribed = false},
    {.type = TDM_REC_MESSAGE_APPEND,
     .targets = targets2,
     .n_targets = 2,
     .guid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
     .internal_date = -86400,
     .flags = MAIL_FLAG_SEEN | MAIL_FLAG_DRAFT,
     .keywords = kws3,
     .n_keywords = 3,
     .body = body_hello,
     .body_len = sizeof body_hello - 1},
    {.type = TDM_REC_MESSAGE_APPEND,
     .targets = targets2,
     .n_targets = 1,
     .internal_date = INT64_MIN},
    {.type = TDM_REC_MESSAGE_FLAGS,
     .mailbox = "alice",
     .folder = "INBOX",
     .flag_mode = MAIL_FLAGS_REMOVE,
     .flags = MAIL_FLAG_ALL,
     .keywords = kws3,
     .n_keywords = 2,
     .uids = uids4,
     .n_uids = 4},
    {.type = TDM_REC_MESSAGE_FLAGS,
     .mailbox = "alice",
     .folder = "INBOX",
     .flag_mode = MAIL_FLAGS_ADD,
     .uids = uids4,
     .n_uids = 1},
    {.type = TDM_REC_MESSAGE_FLAGS,
     .mailbox = "alice",
     .folder = "INBOX",
     .flag_mode = MAIL_FLAGS_REPLACE,
     .flags = MAIL_FLAG_SEEN,
     .keywords = kws3,
     .n_keywords = 1,
     .unchanged_since = UINT64_MAX - 1,
     .uids = uids4,
     .n_uids = 2},
    {.type = TDM_REC_MESSAGE_EXPUNGE,
     .mailbox = "alice",
     .folder = "INBOX",
     .uids = uids4,
     .n_uids = 3},
    {.type = TDM_REC_MESSAGE_EXPUNGE,
     .mailbox = "alice",
     .folder = "INBOX",
     .deleted_only = true,
     .uids = uids4,
     .n_uids = 4},
    {.type = TDM_REC_MESSAGE_COPY,
     .mailbox = "alice",
     .folder = "INBOX",
     .new_folder = "Trash",
     .move = true,
     .uids = uids4,
     .n_uids = 4},
};

static void
assert_str_eq_or_null(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* Compares the fields type uses; the others must decode as zero. */
static void
assert_op_equal(const struct mail_op *want, const struct mail_op *got)
{
    uint16_t t = want->type;
    assert_int_equal(want->type, got->type);
    if (t == TDM_REC_MESSAGE_APPEND) {
        assert_null(got->mailbox);
        assert_int_equal(want->n_targets, got->n_targets);
        for (size_t i = 0; i < want->n_targets; i++) {
            assert_string_equal(want->targets[i].mailbox, got->targets[i].mailbox);
            assert_string_equal(want->targets[i].folder, got->targets[i].folder);
        }
        assert_memory_equal(want->guid, got->guid, MAIL_GUID_LEN);
        assert_true(want->internal_date == got->internal_date);
        assert_int_equal(want->body_len, got->body_len);
        if (want->body_len > 0)
            assert_memory_equal(want->body, got->body, want->body_len);
    } else {
        assert_string_equal(want->mailbox, got->mailbox);
        assert_str_eq_or_null(t >= TDM_REC_FOLDER_CREATE ? want->folder : NULL, got->folder);
        assert_str_eq_or_null(
            t == TDM_REC_FOLDER_RENAME || t == TDM_REC_MESSAGE_COPY ? want->new_folder : NULL,
            got->new_folder);
    }
    bool quotas = t == TDM_REC_MAILBOX_CREATE || t == TDM_REC_MAILBOX_SET_QUOTA;
    assert_true(got->quota_bytes == (quotas ? want->quota_bytes : 0));
    assert_true(got->quota_messages == (quotas ? want->quota_messages : 0));
    assert_int_equal(got->uidvalidity, t == TDM_REC_MAILBOX_CREATE ? want->uidvalidity : 0);
    assert_int_equal(got->special_use, t == TDM_REC_FOLDER_CREATE ? want->special_use : 0);
    assert_int_equal(got->subscribed, t == TDM_REC_FOLDER_SUBSCRIBE && want->subscribed);
    assert_int_equal(got->uid_limit, t == TDM_REC_FOLDER_RECENT ? want->uid_limit : 0);
    assert_int_equal(got->move, t == TDM_REC_MESSAGE_COPY && want->move);
    bool flags = t == TDM_REC_MESSAGE_APPEND || t == TDM_REC_MESSAGE_FLAGS;
    assert_int_equal(got->flags, flags ? want->flags : 0);
    assert_int_equal(got->flag_mode, t == TDM_REC_MESSAGE_FLAGS ? want->flag_mode : 0);
    assert_true(got->unchanged_since == (t == TDM_REC_MESSAGE_FLAGS ? want->unchanged_since : 0));
    assert_int_equal(got->deleted_only, t == TDM_REC_MESSAGE_EXPUNGE && want->deleted_only);
    assert_int_equal(got->n_keywords, flags ? want->n_keywords : 0);
    for (size_t i = 0; i < got->n_keywords; i++)
        assert_string_equal(want->keywords[i], got->keywords[i]);
    bool uids =
        t == TDM_REC_MESSAGE_FLAGS || t == TDM_REC_MESSAGE_EXPUNGE || t == TDM_REC_MESSAGE_COPY;
    assert_int_equal(got->n_uids, uids ? want->n_uids : 0);
    if (uids)
        assert_memory_equal(want->uids, got->uids, want->n_uids * sizeof *want->uids);
}

static void
test_codec_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof codec_ops / sizeof codec_ops[0]; i++) {
        const struct mail_op *op = &codec_ops[i];
        uint8_t *buf, *buf2;
        size_t len, len2;
        const char *err = NULL;
        struct mail_decoded dec;
        assert_true(mail_is_mail_record(op->type));
        assert_int_equal(mail_op_encode(op, &buf, &len, &err), 0);
        assert_int_equal(buf[0], MAIL__CODEC_VERSION);
        assert_int_equal(mail_op_decode(op->type, buf, len, &dec, &err), 0);
        assert_op_equal(op, &dec.op);

        /* Canonical: re-encoding the decoded op gives the same bytes. */
        assert_int_equal(mail_op_encode(&dec.op, &buf2, &len2, &err), 0);
        assert_int_equal(len, len2);
        assert_memory_equal(buf, buf2, len);
        free(buf2);
        mail_decoded_clear(&dec);
        assert_null(dec.targets_storage);

        /* Every truncation is refused, never over-read (ASan watches the exact-size copy). */
        for (size_t cut = 0; cut < len; cut++) {
            uint8_t *part = malloc(cut > 0 ? cut : 1);
            assert_non_null(part);
            memcpy(part, buf, cut);
            err = NULL;
            assert_int_equal(mail_op_decode(op->type, part, cut, &dec, &err), TDM_EINVAL);
            assert_non_null(err);
            free(part);
        }
        /* A trailing byte is refused too. */
        uint8_t *longer = malloc(len + 1);
        assert_non_null(longer);
        memcpy(longer, buf, len);
        longer[len] = 0;
        assert_int_equal(mail_op_decode(op->type, longer, len + 1, &dec, &err), TDM_EINVAL);
        /* Any single corrupted byte either decodes to something valid or is refused. */
        for (size_t at = 0; at < len; at++) {
            memcpy(longer, buf, len);
            longer[at] ^= 0xff;
            int rc = mail_op_decode(op->type, longer, len, &dec, &err);
            assert_true(rc == 0 || rc == TDM_EINVAL);
            if (rc == 0)
                mail_decoded_clear(&dec);
        }
        free(longer);
        /* Another record type over the same bytes never crashes. */
        for (uint16_t t = TDM_REC_MAILBOX_CREATE; t <= TDM_REC_MESSAGE_COPY; t++) {
            if (mail_op_decode(t, buf, len, &dec, &err) == 0)
                mail_decoded_clear(&dec);
        }
        free(buf);
    }
}

static void
test_codec_record_types(void **state)
{
    (void)state;
    static const uint8_t payload[] = {MAIL__CODEC_VERSION, 1, 0, 'a', 0};
    struct mail_decoded dec;
    const char *err;
    assert_false(mail_is_mail_record(TDM_REC_END));
    assert_false(mail_is_mail_record(TDM_REC_NOOP));
    assert_false(mail_is_mail_record(0));
    assert_false(mail_is_mail_record(52));
    assert_int_equal(mail_op_decode(TDM_REC_MAILBOX_DELETE, payload, sizeof payload, &dec, &err),
                     0);
    assert_string_equal(dec.op.mailbox, "a");
    mail_decoded_clear(&dec);
    assert_int_equal(mail_op_decode(TDM_REC_NOOP, payload, sizeof payload, &dec, &err), TDM_EINVAL);
    assert_int_equal(mail_op_decode(TDM_REC_MAILBOX_DELETE, NULL, 0, &dec, &err), TDM_EINVAL);
    uint8_t v2[sizeof payload];
    memcpy(v2, payload, sizeof v2);
    v2[0] = 2;
    assert_int_equal(mail_op_decode(TDM_REC_MAILBOX_DELETE, v2, sizeof v2, &dec, &err), TDM_EINVAL);
    assert_string_equal(err, "unsupported mail record format version");
    struct mail_op bad = {.type = TDM_REC_NOOP, .mailbox = "a"};
    uint8_t *buf;
    size_t len;
    assert_int_equal(mail_op_encode(&bad, &buf, &len, &err), TDM_EINVAL);
}

/* A name of n copies of c. */
static char *
repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static void
test_codec_limits(void **state)
{
    (void)state;
    char *name255 = repeat('n', MAIL_NAME_MAX), *name256 = repeat('n', MAIL_NAME_MAX + 1);
    char *kw64 = repeat('k', MAIL_KEYWORD_MAX), *kw65 = repeat('k', MAIL_KEYWORD_MAX + 1);
    static const uint32_t unsorted[] = {3, 2}, repeated[] = {2, 2}, zero[] = {0, 1};
    const char *kws_many[MAIL_MAX_KEYWORDS + 1];
    char kw_names[MAIL_MAX_KEYWORDS + 1][8];
    for (size_t i = 0; i <= MAIL_MAX_KEYWORDS; i++) {
        snprintf(kw_names[i], sizeof kw_names[i], "k%zu", i);
        kws_many[i] = kw_names[i];
    }
    const char *kw_ok[] = {kw64}, *kw_long[] = {kw65}, *kw_space[] = {"a b"},
               *kw_system[] = {"\\Seen"}, *kw_empty[] = {""}, *kw_null[] = {NULL};
    struct mail_target many_targets[MAIL_MAX_TARGETS + 1];
    for (size_t i = 0; i <= MAIL_MAX_TARGETS; i++)
        many_targets[i] = (struct mail_target){"u", "INBOX"};
    uint32_t *many_uids = malloc((MAIL_MAX_UIDS + 1) * sizeof *many_uids);
    assert_non_null(many_uids);
    for (uint32_t i = 0; i <= MAIL_MAX_UIDS; i++)
        many_uids[i] = i + 1;

#define MBX(n)                                                                                     \
    {                                                                                              \
        .type = TDM_REC_MAILBOX_DELETE, .mailbox = (n)                                             \
    }
#define FLD(n)                                                                                     \
    {                                                                                              \
        .type = TDM_REC_FOLDER_DELETE, .mailbox = "u", .folder = (n)                               \
    }
#define FLG(k, n)                                                                                  \
    {                                                                                              \
        .type = TDM_REC_MESSAGE_FLAGS, .mailbox = "u", .folder = "INBOX", .keywords = (k),         \
        .n_keywords = (n), .uids = uids4, .n_uids = 1                                              \
    }
#define EXP(u, n)                                                                                  \
    {                                                                                              \
        .type = TDM_REC_MESSAGE_EXPUNGE, .mailbox = "u", .folder = "INBOX", .uids = (u),           \
        .n_uids = (n)                                                                              \
    }
#define APP(t, n)                                                                                  \
    {                                                                                              \
        .type = TDM_REC_MESSAGE_APPEND, .targets = (t), .n_targets = (n)                           \
    }
    const struct {
        struct mail_op op;
        int rc;
    } cases[] = {
        {MBX(NULL), TDM_EINVAL},
        {MBX(""), TDM_EINVAL},
        {MBX(name255), 0},
        {MBX(name256), TDM_ELIMIT},
        {MBX("a\tb"), TDM_EINVAL},
        {MBX("a\x7f"), TDM_EINVAL},
        {MBX("ünïcödé"), 0},
        {FLD(NULL), TDM_EINVAL},
        {FLD(name255), 0},
        {FLD(name256), TDM_ELIMIT},
        {FLD("/a"), TDM_EINVAL},
        {FLD("a/"), TDM_EINVAL},
        {FLD("a//b"), TDM_EINVAL},
        {FLD("a\nb"), TDM_EINVAL},
        {FLD("inbox"), TDM_EINVAL},
        {FLD("Inbox/x"), TDM_EINVAL},
        {FLD("INBOX/x"), 0},
        {FLD("inboxes"), 0},
        {FLG(kw_ok, 1), 0},
        {FLG(kw_long, 1), TDM_ELIMIT},
        {FLG(kw_space, 1), TDM_EINVAL},
        {FLG(kw_system, 1), TDM_EINVAL},
        {FLG(kw_empty, 1), TDM_EINVAL},
        {FLG(kw_null, 1), TDM_EINVAL},
        {FLG(NULL, 1), TDM_EINVAL},
        {FLG(kws_many, MAIL_MAX_KEYWORDS), 0},
        {FLG(kws_many, MAIL_MAX_KEYWORDS + 1), TDM_ELIMIT},
        {{.type = TDM_REC_MESSAGE_FLAGS,
          .mailbox = "u",
          .folder = "INBOX",
          .flags = 1u << 5,
          .uids = uids4,
          .n_uids = 1},
         TDM_EINVAL},
        {{.type = TDM_REC_MESSAGE_FLAGS,
          .mailbox = "u",
          .folder = "INBOX",
          .flag_mode = (enum mail_flag_mode)3,
          .uids = uids4,
          .n_uids = 1},
         TDM_EINVAL},
        {EXP(uids4, 0), TDM_EINVAL},
        {EXP(NULL, 1), TDM_EINVAL},
        {EXP(unsorted, 2), TDM_EINVAL},
        {EXP(repeated, 2), TDM_EINVAL},
        {EXP(zero, 2), TDM_EINVAL},
        {EXP(many_uids, MAIL_MAX_UIDS), 0},
        {EXP(many_uids, MAIL_MAX_UIDS + 1), TDM_ELIMIT},
        {APP(many_targets, 0), TDM_EINVAL},
        {APP(NULL, 1), TDM_EINVAL},
        {APP(many_targets, MAIL_MAX_TARGETS), 0},
        {APP(many_targets, MAIL_MAX_TARGETS + 1), TDM_ELIMIT},
        {{.type = TDM_REC_MESSAGE_APPEND,
          .targets = many_targets,
          .n_targets = 1,
          .flags = MAIL_FLAG_ALL + 1},
         TDM_EINVAL},
        {{.type = TDM_REC_MESSAGE_APPEND, .targets = many_targets, .n_targets = 1, .body_len = 1},
         TDM_EINVAL},
        /* The body is never read when its length is refused. */
        {{.type = TDM_REC_MESSAGE_APPEND,
          .targets = many_targets,
          .n_targets = 1,
          .body = "",
          .body_len = TDM_LOG_MAX_PAYLOAD + 1u},
         TDM_ELIMIT},
        {{.type = TDM_REC_MAILBOX_CREATE, .mailbox = "u", .uidvalidity = 0}, TDM_EINVAL},
        {{.type = TDM_REC_FOLDER_CREATE, .mailbox = "u", .folder = "f", .special_use = 1u << 7},
         TDM_EINVAL},
        {{.type = TDM_REC_FOLDER_RENAME, .mailbox = "u", .folder = "f", .new_folder = NULL},
         TDM_EINVAL},
        {{.type = TDM_REC_FOLDER_RENAME, .mailbox = "u", .folder = "f", .new_folder = "inbox"},
         TDM_EINVAL},
        {{.type = TDM_REC_MESSAGE_COPY,
          .mailbox = "u",
          .folder = "f",
          .new_folder = "g/",
          .uids = uids4,
          .n_uids = 1},
         TDM_EINVAL},
        {{.type = TDM_REC_MESSAGE_COPY,
          .mailbox = "u",
          .folder = "f",
          .new_folder = "g",
          .uids = unsorted,
          .n_uids = 2},
         TDM_EINVAL},
    };
#undef MBX
#undef FLD
#undef FLG
#undef EXP
#undef APP
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *buf = NULL;
        size_t len;
        const char *err = NULL;
        int rc = mail_op_encode(&cases[i].op, &buf, &len, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: got %d (%s), want %d", i, rc, err ? err : "-", cases[i].rc);
        if (rc != 0) {
            assert_non_null(err);
            continue;
        }
        struct mail_decoded dec;
        assert_int_equal(mail_op_decode(cases[i].op.type, buf, len, &dec, &err), 0);
        mail_decoded_clear(&dec);
        free(buf);
    }
    free(many_uids);
    free(name255);
    free(name256);
    free(kw64);
    free(kw65);
}

/* MESSAGE_FLAGS byte for byte: a record without unchanged_since is laid out as before it
 * existed (records already in logs read the same), one with it sets 0x80 in the mode byte. */
static void
test_codec_flags_layout(void **state)
{
    (void)state;
    static const uint32_t uid7[] = {7};
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = "u",
                         .folder = "f",
                         .flag_mode = MAIL_FLAGS_ADD,
                         .flags = MAIL_FLAG_SEEN,
                         .uids = uid7,
                         .n_uids = 1};
    static const uint8_t plain[] = "\x01\x01\x00u\0\x01\x00"
                                   "f\0"
                                   "\x01\x01\0\0\0"
                                   "\0\x01\0\0\0\x07\0\0\0";
    static const uint8_t conditional[] = "\x01\x01\x00u\0\x01\x00"
                                         "f\0"
                                         "\x81\x01\0\0\0"
                                         "\x08\x07\x06\x05\x04\x03\x02\x01"
                                         "\0\x01\0\0\0\x07\0\0\0";
    uint8_t *payload;
    size_t len;
    const char *err;
    assert_int_equal(mail_op_encode(&op, &payload, &len, &err), 0);
    assert_int_equal(len, sizeof plain - 1);
    assert_memory_equal(payload, plain, len);
    free(payload);
    op.unchanged_since = 0x0102030405060708u;
    assert_int_equal(mail_op_encode(&op, &payload, &len, &err), 0);
    assert_int_equal(len, sizeof conditional - 1);
    assert_memory_equal(payload, conditional, len);
    free(payload);
}

/* MESSAGE_EXPUNGE byte for byte: a plain record is laid out as before deleted_only existed
 * (records already in logs read and apply the same), deleted_only sets the count's top bit. */
static void
test_codec_expunge_layout(void **state)
{
    (void)state;
    static const uint32_t uids[] = {7, 9};
    struct mail_op op = {
        .type = TDM_REC_MESSAGE_EXPUNGE, .mailbox = "u", .folder = "f", .uids = uids, .n_uids = 2};
    static const uint8_t plain[] = "\x01\x01\x00u\0\x01\x00"
                                   "f\0"
                                   "\x02\0\0\0\x07\0\0\0\x09\0\0\0";
    static const uint8_t deleted_only[] = "\x01\x01\x00u\0\x01\x00"
                                          "f\0"
                                          "\x02\0\0\x80\x07\0\0\0\x09\0\0\0";
    uint8_t *payload;
    size_t len;
    const char *err;
    struct mail_decoded dec;
    assert_int_equal(mail_op_encode(&op, &payload, &len, &err), 0);
    assert_int_equal(len, sizeof plain - 1);
    assert_memory_equal(payload, plain, len);
    assert_int_equal(mail_op_decode(op.type, payload, len, &dec, &err), 0);
    assert_false(dec.op.deleted_only);
    mail_decoded_clear(&dec);
    free(payload);
    op.deleted_only = true;
    assert_int_equal(mail_op_encode(&op, &payload, &len, &err), 0);
    assert_int_equal(len, sizeof deleted_only - 1);
    assert_memory_equal(payload, deleted_only, len);
    assert_int_equal(mail_op_decode(op.type, payload, len, &dec, &err), 0);
    assert_true(dec.op.deleted_only);
    assert_int_equal(dec.op.n_uids, 2);
    mail_decoded_clear(&dec);
    free(payload);
}

/* An append to u/INBOX up to its body length: GUID "0123456789abcdef", date 0, no flags or
 * keywords. */
#define APPEND_HEAD                                                                                \
    "\x01\x01\x00\x01\x00u\0\x05\x00INBOX\0"                                                       \
    "0123456789abcdef"                                                                             \
    "\0\0\0\0\0\0\0\0"                                                                             \
    "\0\0\0\0"                                                                                     \
    "\0"

/* Hand-made payloads the encoder would never produce. */
static void
test_codec_malformed(void **state)
{
    (void)state;
#define B(lit) lit, sizeof(lit) - 1
    const struct {
        uint16_t type;
        const char *bytes;
        size_t len;
    } cases[] = {
        /* string without its NUL, with an embedded NUL, longer than the limit, empty */
        {TDM_REC_MAILBOX_DELETE, B("\x01\x01\x00"
                                   "ab")},
        {TDM_REC_MAILBOX_DELETE, B("\x01\x02\x00"
                                   "a\0\0")},
        {TDM_REC_MAILBOX_DELETE, B("\x01\x00\x01")},
        {TDM_REC_MAILBOX_DELETE, B("\x01\x00\x00\x00")},
        /* boolean 2 */
        {TDM_REC_FOLDER_SUBSCRIBE, B("\x01\x01\x00u\0\x01\x00"
                                     "f\0\x02")},
        /* flag mode 3 */
        {TDM_REC_MESSAGE_FLAGS, B("\x01\x01\x00u\0\x01\x00"
                                  "f\0\x03\0\0\0\0\0\x01\0\0\0\x01\0\0\0")},
        /* conditional (0x80) with unchanged_since 0; conditional with flag mode 3 */
        {TDM_REC_MESSAGE_FLAGS, B("\x01\x01\x00u\0\x01\x00"
                                  "f\0\x81\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0")},
        {TDM_REC_MESSAGE_FLAGS, B("\x01\x01\x00u\0\x01\x00"
                                  "f\0\x83\0\0\0\0\x01\0\0\0\0\0\0\0\0\x01\0\0\0\x01\0\0\0")},
        /* keyword count 65 */
        {TDM_REC_MESSAGE_FLAGS, B("\x01\x01\x00u\0\x01\x00"
                                  "f\0\x00\0\0\0\0\x41")},
        /* UID count 2^32-1 with 4 bytes left: refused before allocating */
        {TDM_REC_MESSAGE_EXPUNGE, B("\x01\x01\x00u\0\x01\x00"
                                    "f\0\xff\xff\xff\xff\x01\0\0\0")},
        /* UID count 100001 */
        {TDM_REC_MESSAGE_EXPUNGE, B("\x01\x01\x00u\0\x01\x00"
                                    "f\0\xa1\x86\x01\x00\x01\0\0\0")},
        /* zero UIDs; zero UIDs with deleted_only */
        {TDM_REC_MESSAGE_EXPUNGE, B("\x01\x01\x00u\0\x01\x00"
                                    "f\0\0\0\0\0")},
        {TDM_REC_MESSAGE_EXPUNGE, B("\x01\x01\x00u\0\x01\x00"
                                    "f\0\0\0\0\x80")},
        /* deleted_only's bit is MESSAGE_EXPUNGE's alone: a flags or copy UID count with it */
        {TDM_REC_MESSAGE_FLAGS, B("\x01\x01\x00u\0\x01\x00"
                                  "f\0\x00\0\0\0\0\0\x01\0\0\x80\x01\0\0\0")},
        {TDM_REC_MESSAGE_COPY, B("\x01\x01\x00u\0\x01\x00"
                                 "f\0\x01\x00g\0\x00\x01\0\0\x80\x01\0\0\0")},
        /* target count 0 and 65 */
        {TDM_REC_MESSAGE_APPEND, B("\x01\x00\x00")},
        {TDM_REC_MESSAGE_APPEND, B("\x01\x41\x00")},
        /* body length past the end */
        {TDM_REC_MESSAGE_APPEND, B(APPEND_HEAD "\x05\0\0\0"
                                               "abcd")},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct mail_decoded dec;
        const char *err = NULL;
        int rc = mail_op_decode(cases[i].type, (const uint8_t *)cases[i].bytes, cases[i].len, &dec,
                                &err);
        if (rc != TDM_EINVAL)
            fail_msg("case %zu: got %d, want TDM_EINVAL", i, rc);
        assert_non_null(err);
    }
    /* The last case with its fifth body byte decodes: it was wrong only in that. */
    struct mail_decoded dec;
    const char *err;
    static const char ok[] = APPEND_HEAD "\x05\0\0\0"
                                         "abcde";
    assert_int_equal(
        mail_op_decode(TDM_REC_MESSAGE_APPEND, (const uint8_t *)ok, sizeof ok - 1, &dec, &err), 0);
    assert_int_equal(dec.op.body_len, 5);
    assert_memory_equal(dec.op.body, "abcde", 5);
    mail_decoded_clear(&dec);
#undef B
}

/* ---- Mailboxes ---- */

static int
collect_mailbox(void *ctx, const char *mailbox, const struct mail_mailbox_info *info)
{
    char *out = ctx;
    (void)info;
    strcat(out, mailbox);
    strcat(out, ";");
    return 0;
}

static void
test_mailbox_create_delete(void **state)
{
    struct env *e = *state;
    struct mail_mailbox_info mi;
    struct mail_folder_info fi;
    struct mail_result res;
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE,
                         .mailbox = "alice",
                         .quota_bytes = 1000,
                         .quota_messages = 10,
                         .uidvalidity = 5000};

    assert_int_equal(mbget(e, "alice", &mi), TDM_ENOTFOUND);
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.uidvalidity, 5000);
    assert_int_equal(mbget(e, "alice", &mi), 0);
    assert_int_equal(mi.id, 1);
    assert_int_equal(mi.quota_bytes, 1000);
    assert_int_equal(mi.quota_messages, 10);
    assert_int_equal(mi.used_bytes, 0);
    assert_int_equal(mi.used_messages, 0);
    /* MAILBOX_CREATE makes INBOX with the seeded UIDVALIDITY. */
    assert_int_equal(fget(e, "alice", "INBOX", &fi), 0);
    assert_int_equal(fi.uidvalidity, 5000);
    assert_int_equal(fi.uidnext, 1);
    assert_int_equal(fi.messages, 0);
    assert_true(fi.highestmodseq >= 1);

    assert_int_equal(apply_res(e, &op, &res), TDM_EEXIST);
    assert_int_equal(mk_mailbox(e, "bob", 0, 0, 1), 0);
    assert_int_equal(mbget(e, "bob", &mi), 0);
    assert_int_equal(mi.id, 2);

    char names[64] = "";
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_mailbox_list(&e->dbis, txn, collect_mailbox, names), 0);
    mdb_txn_abort(txn);
    assert_string_equal(names, "alice;bob;");

    /* Delete takes folders, messages and body references with it. */
    assert_int_equal(mk_folder(e, "alice", "a/b", 0), 0);
    assert_int_equal(append(e, "alice", "a/b", "body one", NULL), 0);
    assert_int_equal(append(e, "alice", "INBOX", "body two", NULL), 0);
    assert_int_equal(append(e, "bob", "INBOX", "body two", NULL), 0);
    assert_int_equal(body_refs(e, "body two"), 2);
    assert_int_equal(rm_mailbox(e, "alice"), 0);
    assert_int_equal(mbget(e, "alice", &mi), TDM_ENOTFOUND);
    assert_int_equal(fget(e, "alice", "INBOX", &fi), TDM_ENOTFOUND);
    assert_int_equal(body_refs(e, "body one"), 0);
    assert_int_equal(body_refs(e, "body two"), 1);
    assert_int_equal(entries(e, e->dbis.messages), 1);
    assert_int_equal(entries(e, e->dbis.folders), 1); /* bob's INBOX */
    assert_int_equal(entries(e, e->dbis.bodies), 1);
    assert_int_equal(rm_mailbox(e, "alice"), TDM_ENOTFOUND);

    /* A re-created mailbox is a new one: ids are never reused. */
    assert_int_equal(mk_mailbox(e, "alice", 0, 0, 9000), 0);
    assert_int_equal(mbget(e, "alice", &mi), 0);
    assert_int_equal(mi.id, 3);
    assert_int_equal(fget(e, "alice", "a/b", &fi), TDM_ENOTFOUND);
}

static void
test_quota(void **state)
{
    struct env *e = *state;
    struct mail_mailbox_info mi;
    struct mail_result res;
    assert_int_equal(set_quota(e, "nobody", 1, 1), TDM_ENOTFOUND);
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    assert_int_equal(set_quota(e, "u", 10, 0), 0);
    assert_int_equal(append(e, "u", "INBOX", "123456", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "12345", &res), TDM_EQUOTA);
    assert_int_equal(res.target_status[0], TDM_EQUOTA);
    assert_int_equal(append(e, "u", "INBOX", "1234", NULL), 0); /* exactly at the quota */
    assert_int_equal(mbget(e, "u", &mi), 0);
    assert_int_equal(mi.used_bytes, 10);
    assert_int_equal(mi.used_messages, 2);
    /* A message quota; 0 means unlimited. */
    assert_int_equal(set_quota(e, "u", 0, 3), 0);
    assert_int_equal(append(e, "u", "INBOX", "x", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "y", NULL), TDM_EQUOTA);
    /* Lowering below the usage is allowed and only refuses new mail. */
    assert_int_equal(set_quota(e, "u", 5, 0), 0);
    assert_int_equal(mbget(e, "u", &mi), 0);
    assert_int_equal(mi.quota_bytes, 5);
    assert_int_equal(mi.used_bytes, 11);
    assert_int_equal(append(e, "u", "INBOX", "z", NULL), TDM_EQUOTA);
    assert_int_equal(set_quota(e, "u", 0, 0), 0);
    assert_int_equal(append(e, "u", "INBOX", "z", NULL), 0);
    assert_int_equal(mbget(e, "u", &mi), 0);
    assert_int_equal(mi.used_messages, 4);
}

/* ---- Folders ---- */

static int
collect_folder(void *ctx, const struct mail_folder_info *info)
{
    char *out = ctx;
    assert_int_equal(info->name[info->name_len], 0);
    strcat(out, info->name);
    strcat(out, ";");
    return 0;
}

static void
folder_names(struct env *e, const char *mb, char out[512])
{
    MDB_txn *txn;
    out[0] = 0;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_folder_list(&e->dbis, txn, mb, collect_folder, out), 0);
    mdb_txn_abort(txn);
}

static int
stop_folder(void *ctx, const struct mail_folder_info *info)
{
    (void)info;
    ++*(int *)ctx;
    return 42;
}

static void
test_folder_create(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    char names[512];
    struct mail_op op = {.type = TDM_REC_FOLDER_CREATE,
                         .mailbox = "u",
                         .folder = "a/b/c",
                         .special_use = MAIL_USE_SENT};
    struct mail_result res;

    assert_int_equal(mk_folder(e, "u", "x", 0), TDM_ENOTFOUND);
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 100), 0);
    assert_int_equal(apply_res(e, &op, &res), 0);
    /* Missing parents come first, top down, each with the next UIDVALIDITY. */
    assert_int_equal(res.uidvalidity, 103);
    assert_int_equal(fget(e, "u", "a", &fi), 0);
    assert_int_equal(fi.uidvalidity, 101);
    assert_int_equal(fi.special_use, 0);
    assert_int_equal(fget(e, "u", "a/b", &fi), 0);
    assert_int_equal(fi.uidvalidity, 102);
    assert_int_equal(fget(e, "u", "a/b/c", &fi), 0);
    assert_int_equal(fi.special_use, MAIL_USE_SENT);
    assert_false(fi.subscribed);
    assert_int_equal(fi.uidnext, 1);
    assert_int_equal(mk_folder(e, "u", "a/b/c", 0), TDM_EEXIST);
    assert_int_equal(mk_folder(e, "u", "a/b", 0), TDM_EEXIST);
    assert_int_equal(mk_folder(e, "u", "a/d", 0), 0);
    assert_int_equal(mk_folder(e, "u", "a-z", 0), 0);
    assert_int_equal(fget(e, "u", "a/d", &fi), 0);
    assert_int_equal(fi.uidvalidity, 104);
    folder_names(e, "u", names);
    assert_string_equal(names, "INBOX;a;a-z;a/b;a/b/c;a/d;");

    MDB_txn *txn;
    int calls = 0;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_folder_list(&e->dbis, txn, "u", stop_folder, &calls), 42);
    assert_int_equal(mail_folder_list(&e->dbis, txn, "nobody", stop_folder, &calls), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    assert_int_equal(calls, 1);
}

static void
test_uidvalidity_exhausted(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, UINT32_MAX), 0);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.uidvalidity, UINT32_MAX);
    /* Wrapping around could hand out an old value again: refuse instead. */
    assert_int_equal(mk_folder(e, "u", "a", 0), TDM_ELIMIT);
    assert_false(folder_exists(e, "u", "a"));
}

static void
test_folder_rename(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    struct mail_message_info mi;
    char names[512];

    assert_int_equal(mk_mailbox(e, "u", 0, 0, 10), 0);
    assert_int_equal(mk_folder(e, "u", "a/b/c", 0), 0);
    assert_int_equal(mk_folder(e, "u", "a/b/c/d", 0), 0);
    assert_int_equal(mk_folder(e, "u", "a/bc", 0), 0);
    assert_int_equal(mk_folder(e, "u", "a/b-x", 0), 0);
    assert_int_equal(append(e, "u", "a/b/c", "msg in c", NULL), 0);
    assert_int_equal(fget(e, "u", "a/b/c", &fi), 0);
    uint32_t uidv_c = fi.uidvalidity;

    assert_int_equal(mv_folder(e, "u", "nope", "x"), TDM_ENOTFOUND);
    assert_int_equal(mv_folder(e, "u", "a/b", "a/bc"), TDM_EEXIST);
    assert_int_equal(mv_folder(e, "u", "a/b", "a/b"), TDM_EEXIST);
    assert_int_equal(mv_folder(e, "u", "a/b", "INBOX"), TDM_EEXIST);
    assert_int_equal(mv_folder(e, "u", "a/b", "a/b/q"), TDM_EINVAL);
    assert_int_equal(mv_folder(e, "nobody", "a/b", "x"), TDM_ENOTFOUND);

    /* "a/b" -> "x" moves the subtree, keeps siblings sharing a prefix, creates parents. */
    assert_int_equal(mv_folder(e, "u", "a/b", "p/x"), 0);
    folder_names(e, "u", names);
    assert_string_equal(names, "INBOX;a;a/b-x;a/bc;p;p/x;p/x/c;p/x/c/d;");
    /* Messages stay with their folder, under the same UIDVALIDITY and UIDs. */
    assert_int_equal(fget(e, "u", "p/x/c", &fi), 0);
    assert_int_equal(fi.uidvalidity, uidv_c);
    assert_int_equal(fi.messages, 1);
    assert_int_equal(mget(e, "u", "p/x/c", 1, &mi, NULL), 0);
    assert_int_equal(mi.size, strlen("msg in c"));
    /* The old name, re-created, gets a new and larger UIDVALIDITY. */
    assert_int_equal(mk_folder(e, "u", "a/b/c", 0), 0);
    assert_int_equal(fget(e, "u", "a/b/c", &fi), 0);
    assert_true(fi.uidvalidity > uidv_c);
    assert_int_equal(fi.messages, 0);

    /* A clash with any inferior refuses the whole rename and changes nothing. */
    assert_int_equal(mk_folder(e, "u", "q/c", 0), 0);
    assert_int_equal(rm_folder(e, "u", "q"), 0);
    uint8_t before[32], after[32];
    digest(e, before);
    assert_int_equal(mv_folder(e, "u", "p/x", "q"), TDM_EEXIST);
    digest(e, after);
    assert_memory_equal(before, after, 32);

    /* A new name that would be too long for an inferior: refused whole. */
    char *longname = repeat('l', MAIL_NAME_MAX - 2);
    assert_int_equal(mv_folder(e, "u", "p/x", longname), TDM_ELIMIT);
    assert_false(folder_exists(e, "u", longname));
    assert_true(folder_exists(e, "u", "p/x/c/d"));
    free(longname);

    /* Up one level, onto names inside the moved subtree ("p/x/x" becomes "p/x"). */
    assert_int_equal(mk_folder(e, "u", "p/x/x/y", 0), 0);
    assert_int_equal(rm_folder(e, "u", "p"), 0);
    assert_int_equal(mv_folder(e, "u", "p/x", "p"), 0);
    folder_names(e, "u", names);
    assert_string_equal(names, "INBOX;a;a/b;a/b-x;a/b/c;a/bc;p;p/c;p/c/d;p/x;p/x/y;q/c;");
    assert_int_equal(mget(e, "u", "p/c", 1, &mi, NULL), 0);
}

static void
test_inbox_rename(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi, old_inbox;
    struct mail_message_info mi;
    struct mail_mailbox_info mbi;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 10), 0);
    assert_int_equal(mk_folder(e, "u", "INBOX/child", 0), 0);
    assert_int_equal(subscribe(e, "u", "INBOX", true), 0);
    assert_int_equal(append(e, "u", "INBOX", "one", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "two", NULL), 0);
    assert_int_equal(fget(e, "u", "INBOX", &old_inbox), 0);

    assert_int_equal(mv_folder(e, "u", "INBOX", "Old/inbox"), 0);
    /* The messages moved, keeping UIDs and UIDVALIDITY. */
    assert_int_equal(fget(e, "u", "Old/inbox", &fi), 0);
    assert_int_equal(fi.messages, 2);
    assert_int_equal(fi.uidvalidity, old_inbox.uidvalidity);
    assert_int_equal(fi.uidnext, 3);
    assert_false(fi.subscribed);
    assert_int_equal(mget(e, "u", "Old/inbox", 2, &mi, NULL), 0);
    assert_true(folder_exists(e, "u", "Old"));
    /* INBOX stays, empty, renumbered; its inferiors stay put. */
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 0);
    assert_int_equal(fi.uidnext, 1);
    assert_true(fi.uidvalidity > old_inbox.uidvalidity);
    assert_true(fi.subscribed);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), TDM_ENOTFOUND);
    assert_true(folder_exists(e, "u", "INBOX/child"));
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mbi.used_messages, 2);
    /* Renaming INBOX below itself is allowed; onto an existing name is not. */
    assert_int_equal(mv_folder(e, "u", "INBOX", "Old"), TDM_EEXIST);
    assert_int_equal(append(e, "u", "INBOX", "three", NULL), 0);
    assert_int_equal(mv_folder(e, "u", "INBOX", "INBOX/saved"), 0);
    assert_int_equal(fget(e, "u", "INBOX/saved", &fi), 0);
    assert_int_equal(fi.messages, 1);
}

static void
test_folder_delete(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    struct mail_mailbox_info mbi;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 10), 0);
    assert_int_equal(mk_folder(e, "u", "a/b", 0), 0);
    assert_int_equal(append(e, "u", "a", "only in a", NULL), 0);
    assert_int_equal(append(e, "u", "a", "shared", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "shared", NULL), 0);
    assert_int_equal(fget(e, "u", "a", &fi), 0);
    uint32_t uidv = fi.uidvalidity;

    assert_int_equal(rm_folder(e, "u", "INBOX"), TDM_EINVAL);
    assert_int_equal(rm_folder(e, "u", "nope"), TDM_ENOTFOUND);
    assert_int_equal(rm_folder(e, "nobody", "a"), TDM_ENOTFOUND);
    assert_int_equal(rm_folder(e, "u", "a"), 0);
    assert_false(folder_exists(e, "u", "a"));
    assert_true(folder_exists(e, "u", "a/b")); /* children stay */
    assert_int_equal(body_refs(e, "only in a"), 0);
    assert_int_equal(body_refs(e, "shared"), 1);
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mbi.used_messages, 1);
    assert_int_equal(mbi.used_bytes, strlen("shared"));
    assert_int_equal(entries(e, e->dbis.messages), 1);
    assert_int_equal(mk_folder(e, "u", "a", 0), 0);
    assert_int_equal(fget(e, "u", "a", &fi), 0);
    assert_true(fi.uidvalidity > uidv);
    assert_int_equal(fi.uidnext, 1);
}

static void
test_subscribe(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 10), 0);
    assert_int_equal(mk_folder(e, "u", "Lists", MAIL_USE_ARCHIVE), 0);
    assert_int_equal(subscribe(e, "u", "Lists", true), 0);
    assert_int_equal(fget(e, "u", "Lists", &fi), 0);
    assert_true(fi.subscribed);
    assert_int_equal(fi.special_use, MAIL_USE_ARCHIVE);
    assert_int_equal(subscribe(e, "u", "Lists", true), 0);
    assert_int_equal(subscribe(e, "u", "Lists", false), 0);
    assert_int_equal(fget(e, "u", "Lists", &fi), 0);
    assert_false(fi.subscribed);
    assert_int_equal(subscribe(e, "u", "Nope", true), TDM_ENOTFOUND);
    assert_int_equal(subscribe(e, "nobody", "Lists", true), TDM_ENOTFOUND);
}

/* ---- Messages ---- */

static void
test_append(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    struct mail_message_info mi;
    struct mail_result res;
    char kw[512];
    static const char *const kws[] = {"work", "$Junk", "work"};
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 77), 0);
    assert_int_equal(append(e, "u", "Nope", "x", &res), TDM_ENOTFOUND);
    assert_int_equal(append(e, "nobody", "INBOX", "x", &res), TDM_ENOTFOUND);
    assert_int_equal(entries(e, e->dbis.bodies), 0);

    assert_int_equal(append_kw(e, "u", "INBOX", "hello", MAIL_FLAG_SEEN, kws, 3, &res), 0);
    assert_int_equal(res.n_targets, 1);
    assert_int_equal(res.first_uid, 1);
    assert_int_equal(res.uidvalidity, 77);
    assert_int_equal(res.target_uid[0], 1);
    assert_int_equal(res.target_uidvalidity[0], 77);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, kw), 0);
    assert_int_equal(mi.uid, 1);
    assert_int_equal(mi.size, 5);
    assert_int_equal(mi.flags, MAIL_FLAG_SEEN);
    assert_true(mi.internal_date == 1700000000);
    assert_memory_equal(mi.guid, "hello", 5);
    assert_true(mi.modseq == res.modseq);
    assert_string_equal(kw, "$Junk work"); /* sorted, unique */
    uint8_t hash[MAIL_HASH_LEN];
    crypto_hash_sha256(hash, (const uint8_t *)"hello", 5);
    assert_memory_equal(mi.body_hash, hash, MAIL_HASH_LEN);

    assert_int_equal(append(e, "u", "INBOX", "", &res), 0); /* an empty body is a body */
    assert_int_equal(res.first_uid, 2);
    assert_true(res.modseq > mi.modseq);
    assert_int_equal(body_refs(e, ""), 1);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.uidnext, 3);
    assert_int_equal(fi.messages, 2);
    assert_true(fi.highestmodseq == res.modseq);
}

static void
test_append_multi_target(void **state)
{
    struct env *e = *state;
    struct mail_mailbox_info mbi;
    struct mail_result res;
    assert_int_equal(mk_mailbox(e, "a", 0, 0, 100), 0);
    assert_int_equal(mk_mailbox(e, "b", 3, 0, 200), 0); /* too small for the message */
    assert_int_equal(mk_mailbox(e, "c", 0, 0, 300), 0);
    assert_int_equal(mk_folder(e, "c", "Lists", 0), 0);
    assert_int_equal(append(e, "c", "Lists", "earlier", NULL), 0);

    static const struct mail_target targets[] = {
        {"a", "INBOX"}, {"b", "INBOX"}, {"nobody", "INBOX"}, {"c", "Lists"}, {"a", "INBOX"}};
    static const char body[] = "delivered body";
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = targets,
                         .n_targets = 5,
                         .body = body,
                         .body_len = sizeof body - 1};
    assert_int_equal(apply_res(e, &op, &res), TDM_EQUOTA); /* the first failure */
    assert_int_equal(res.n_targets, 5);
    assert_int_equal(res.target_status[0], 0);
    assert_int_equal(res.target_status[1], TDM_EQUOTA);
    assert_int_equal(res.target_status[2], TDM_ENOTFOUND);
    assert_int_equal(res.target_status[3], 0);
    assert_int_equal(res.target_status[4], 0);
    assert_int_equal(res.target_uid[0], 1);
    assert_int_equal(res.target_uid[1], 0);
    assert_int_equal(res.target_uid[3], 2);
    assert_int_equal(res.target_uid[4], 2);
    assert_int_equal(res.target_uidvalidity[0], 100);
    assert_int_equal(res.target_uidvalidity[3], 301);
    assert_int_equal(res.first_uid, 1);
    assert_int_equal(res.uidvalidity, 100);
    /* One stored body for three messages; the refused target is untouched. */
    assert_int_equal(body_refs(e, body), 3);
    assert_int_equal(entries(e, e->dbis.bodies), 2);
    assert_int_equal(mbget(e, "b", &mbi), 0);
    assert_int_equal(mbi.used_bytes, 0);
    assert_int_equal(mbi.used_messages, 0);
    assert_int_equal(mbget(e, "a", &mbi), 0);
    assert_int_equal(mbi.used_messages, 2);
    assert_int_equal(mbi.used_bytes, 2 * (sizeof body - 1));
}

static void
test_flags(void **state)
{
    struct env *e = *state;
    struct mail_message_info mi;
    struct mail_folder_info fi;
    struct mail_result res;
    char kw[512];
    static const char *const start[] = {"b", "a"};
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    assert_int_equal(append_kw(e, "u", "INBOX", "m1", MAIL_FLAG_SEEN, start, 2, NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "m2", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "m3", NULL), 0);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    uint64_t hms = fi.highestmodseq;

    static const struct {
        enum mail_flag_mode mode;
        uint32_t flags;
        const char *kws[3];
        size_t n_kws;
        uint32_t want_flags;
        const char *want_kws;
        bool changes;
    } steps[] = {
        {MAIL_FLAGS_ADD,
         MAIL_FLAG_FLAGGED,
         {"c", "a"},
         2,
         MAIL_FLAG_SEEN | MAIL_FLAG_FLAGGED,
         "a b c",
         true},
        {MAIL_FLAGS_ADD,
         MAIL_FLAG_SEEN,
         {"a"},
         1,
         MAIL_FLAG_SEEN | MAIL_FLAG_FLAGGED,
         "a b c",
         false},
        {MAIL_FLAGS_REMOVE, MAIL_FLAG_SEEN, {"b", "zz"}, 2, MAIL_FLAG_FLAGGED, "a c", true},
        {MAIL_FLAGS_REMOVE, MAIL_FLAG_DRAFT, {"zz"}, 1, MAIL_FLAG_FLAGGED, "a c", false},
        {MAIL_FLAGS_REPLACE,
         MAIL_FLAG_ANSWERED,
         {"q", "p", "q"},
         3,
         MAIL_FLAG_ANSWERED,
         "p q",
         true},
        {MAIL_FLAGS_REPLACE, MAIL_FLAG_ANSWERED, {"p", "q"}, 2, MAIL_FLAG_ANSWERED, "p q", false},
        {MAIL_FLAGS_REPLACE, 0, {NULL}, 0, 0, "", true},
        /* Keywords compare without regard to case, kept as first spelled. */
        {MAIL_FLAGS_REPLACE, 0, {"Work", "$Junk"}, 2, 0, "$Junk Work", true},
        {MAIL_FLAGS_ADD, 0, {"work"}, 1, 0, "$Junk Work", false},
        {MAIL_FLAGS_REMOVE, 0, {"WORK"}, 1, 0, "$Junk", true},
        {MAIL_FLAGS_ADD, 0, {"Zed", "apple"}, 2, 0, "$Junk apple Zed", true},
        {MAIL_FLAGS_REPLACE, 0, {"APPLE", "zed", "$junk"}, 3, 0, "$Junk apple Zed", false},
        {MAIL_FLAGS_REPLACE, 0, {NULL}, 0, 0, "", true},
    };
    static const uint32_t uid1[] = {1};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(set_flags(e, "u", "INBOX", steps[i].mode, steps[i].flags, steps[i].kws,
                                   steps[i].n_kws, uid1, 1, &res),
                         0);
        assert_int_equal(res.count, steps[i].changes ? 1 : 0);
        if (steps[i].changes)
            hms++;
        assert_true(res.modseq == hms);
        assert_int_equal(mget(e, "u", "INBOX", 1, &mi, kw), 0);
        assert_int_equal(mi.flags, steps[i].want_flags);
        assert_string_equal(kw, steps[i].want_kws);
        assert_true(mi.modseq <= hms);
        if (steps[i].changes)
            assert_true(mi.modseq == hms);
    }

    /* Several UIDs, one missing: each changed message gets its own MODSEQ. */
    static const uint32_t uids[] = {1, 2, 3, 99};
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_DELETED, NULL, 0, uids, 4, &res), 0);
    assert_int_equal(res.count, 3);
    assert_true(res.modseq == hms + 3);
    assert_int_equal(mget(e, "u", "INBOX", 3, &mi, NULL), 0);
    assert_true(mi.modseq == hms + 3);
    assert_int_equal(mi.flags, MAIL_FLAG_DELETED);

    /* The keyword limit holds after the merge: refused whole, nothing changes. */
    const char *many[MAIL_MAX_KEYWORDS];
    char names[MAIL_MAX_KEYWORDS][8];
    for (size_t i = 0; i < MAIL_MAX_KEYWORDS; i++) {
        snprintf(names[i], sizeof names[i], "k%02zu", i);
        many[i] = names[i];
    }
    static const char *const one[] = {"zzz"};
    assert_int_equal(set_flags(e, "u", "INBOX", MAIL_FLAGS_ADD, 0, one, 1, uids, 1, NULL), 0);
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_ADD, 0, many, MAIL_MAX_KEYWORDS, uid1, 1, &res),
        TDM_ELIMIT);
    assert_int_equal(res.count, 0);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, kw), 0);
    assert_string_equal(kw, "zzz");
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_REPLACE, 0, many, MAIL_MAX_KEYWORDS, uid1, 1, &res),
        0);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), 0);
    assert_int_equal(mi.n_keywords, MAIL_MAX_KEYWORDS);

    assert_int_equal(set_flags(e, "u", "Nope", MAIL_FLAGS_ADD, 0, NULL, 0, uid1, 1, &res),
                     TDM_ENOTFOUND);
}

/* UNCHANGEDSINCE as a compare-and-set: one message changed since refuses the whole record. */
static void
test_flags_unchanged_since(void **state)
{
    struct env *e = *state;
    struct mail_message_info mi;
    struct mail_folder_info fi;
    struct mail_result res;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(append(e, "u", "INBOX", i == 0 ? "m1" : i == 1 ? "m2" : "m3", NULL), 0);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    uint64_t before = fi.highestmodseq; /* the client's view: every message at or below */
    static const uint32_t uid2[] = {2};
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_FLAGGED, NULL, 0, uid2, 1, NULL), 0);

    static const uint32_t uids[] = {1, 2, 3};
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = "u",
                         .folder = "INBOX",
                         .flag_mode = MAIL_FLAGS_ADD,
                         .flags = MAIL_FLAG_SEEN,
                         .unchanged_since = before,
                         .uids = uids,
                         .n_uids = 3};
    assert_int_equal(apply_res(e, &op, &res), TDM_ECONFLICT);
    assert_int_equal(res.count, 0);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), 0);
    assert_int_equal(mi.flags, 0); /* message 1 came before 2 in the record: taken back too */
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_true(fi.highestmodseq == before + 1);

    /* Without the changed message, or with a MODSEQ that covers it, the record applies. */
    static const uint32_t uids13[] = {1, 3};
    op.uids = uids13;
    op.n_uids = 2;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 2);
    op.uids = uids;
    op.n_uids = 3;
    op.unchanged_since = before + 3;
    op.flags = MAIL_FLAG_ANSWERED;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 3);
    /* A message expunged meanwhile is skipped, not a conflict. */
    assert_int_equal(expunge(e, "u", "INBOX", uid2, 1, NULL), 0);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    op.unchanged_since = fi.highestmodseq;
    op.flags = MAIL_FLAG_DRAFT;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(mget(e, "u", "INBOX", 3, &mi, NULL), 0);
    assert_int_equal(mi.flags, MAIL_FLAG_SEEN | MAIL_FLAG_ANSWERED | MAIL_FLAG_DRAFT);
}

static void
test_expunge(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    struct mail_mailbox_info mbi;
    struct mail_message_info mi;
    struct mail_result res;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    assert_int_equal(append(e, "u", "INBOX", "same", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "same", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "other", NULL), 0);
    assert_int_equal(body_refs(e, "same"), 2);
    assert_int_equal(entries(e, e->dbis.bodies), 2);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    uint64_t hms = fi.highestmodseq;

    static const uint32_t first[] = {1, 50};
    assert_int_equal(expunge(e, "u", "INBOX", first, 2, &res), 0);
    assert_int_equal(res.count, 1);
    assert_true(res.modseq > hms);
    assert_int_equal(body_refs(e, "same"), 1); /* still used by UID 2 */
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), TDM_ENOTFOUND);
    assert_int_equal(expunge(e, "u", "INBOX", first, 1, &res), 0); /* again: nothing */
    assert_int_equal(res.count, 0);

    static const uint32_t rest[] = {2, 3};
    assert_int_equal(expunge(e, "u", "INBOX", rest, 2, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(body_refs(e, "same"), 0); /* last reference: body gone */
    assert_int_equal(body_refs(e, "other"), 0);
    assert_int_equal(entries(e, e->dbis.bodies), 0);
    assert_int_equal(entries(e, e->dbis.body_refs), 0);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 0);
    assert_int_equal(fi.uidnext, 4); /* UIDs are never reused */
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mbi.used_bytes, 0);
    assert_int_equal(mbi.used_messages, 0);
    assert_int_equal(expunge(e, "u", "Nope", rest, 2, &res), TDM_ENOTFOUND);
}

static int
collect_uid(void *ctx, const struct mail_message_info *info)
{
    char *out = ctx;
    char buf[16];
    snprintf(buf, sizeof buf, "%u;", info->uid);
    strcat(out, buf);
    return 0;
}

static void
message_uids(struct env *e, const char *mb, const char *f, char out[512])
{
    MDB_txn *txn;
    out[0] = 0;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_message_list(&e->dbis, txn, mb, f, collect_uid, out), 0);
    mdb_txn_abort(txn);
}

static void
test_copy_move(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    struct mail_mailbox_info mbi;
    struct mail_message_info mi;
    struct mail_result res;
    char uids_s[512], kw[512];
    static const char *const kws[] = {"tag"};
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    assert_int_equal(mk_folder(e, "u", "Dst", 0), 0);
    assert_int_equal(append(e, "u", "Dst", "already there", NULL), 0);
    assert_int_equal(append_kw(e, "u", "INBOX", "b1", MAIL_FLAG_SEEN, kws, 1, NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "b2", NULL), 0);
    assert_int_equal(append(e, "u", "INBOX", "b3", NULL), 0);
    assert_int_equal(fget(e, "u", "Dst", &fi), 0);
    uint64_t dst_hms = fi.highestmodseq;

    /* Copy: new consecutive UIDs from the destination's UIDNEXT, bodies shared. */
    static const uint32_t all[] = {1, 2, 3, 9};
    assert_int_equal(copy(e, "u", "INBOX", "Dst", false, all, 4, &res), 0);
    assert_int_equal(res.count, 3);
    assert_int_equal(res.first_uid, 2);
    assert_int_equal(res.uidvalidity, fi.uidvalidity);
    assert_true(res.modseq == dst_hms + 3);
    message_uids(e, "u", "Dst", uids_s);
    assert_string_equal(uids_s, "1;2;3;4;");
    assert_int_equal(mget(e, "u", "Dst", 2, &mi, kw), 0);
    assert_int_equal(mi.flags, MAIL_FLAG_SEEN);
    assert_string_equal(kw, "tag");
    assert_true(mi.modseq == dst_hms + 1);
    assert_int_equal(body_refs(e, "b1"), 2);
    assert_int_equal(entries(e, e->dbis.bodies), 4);
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mbi.used_messages, 7);

    /* A copy answers to the quota, refused whole... */
    assert_int_equal(set_quota(e, "u", 0, 8), 0);
    assert_int_equal(copy(e, "u", "INBOX", "Dst", false, all, 3, &res), TDM_EQUOTA);
    assert_int_equal(res.count, 0);
    message_uids(e, "u", "Dst", uids_s);
    assert_string_equal(uids_s, "1;2;3;4;");
    /* ...a move does not: it changes no usage. */
    static const uint32_t two[] = {1, 3};
    assert_int_equal(copy(e, "u", "INBOX", "Dst", true, two, 2, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(res.first_uid, 5);
    message_uids(e, "u", "INBOX", uids_s);
    assert_string_equal(uids_s, "2;");
    message_uids(e, "u", "Dst", uids_s);
    assert_string_equal(uids_s, "1;2;3;4;5;6;");
    assert_int_equal(body_refs(e, "b1"), 2);
    assert_int_equal(body_refs(e, "b3"), 2);
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mbi.used_messages, 7);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 1);

    /* Into the same folder: a copy adds, a move renumbers. */
    assert_int_equal(set_quota(e, "u", 0, 0), 0);
    static const uint32_t uid2[] = {2};
    assert_int_equal(copy(e, "u", "INBOX", "INBOX", false, uid2, 1, &res), 0);
    assert_int_equal(res.first_uid, 4);
    assert_int_equal(copy(e, "u", "INBOX", "INBOX", true, uid2, 1, &res), 0);
    assert_int_equal(res.first_uid, 5);
    message_uids(e, "u", "INBOX", uids_s);
    assert_string_equal(uids_s, "4;5;");
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 2);
    assert_int_equal(fi.uidnext, 6);

    assert_int_equal(copy(e, "u", "INBOX", "Nope", false, uid2, 1, &res), TDM_ENOTFOUND);
    assert_int_equal(copy(e, "u", "Nope", "INBOX", true, uid2, 1, &res), TDM_ENOTFOUND);
}

/* ---- Apply details ---- */

static void
test_apply_refuses_invalid_op(void **state)
{
    struct env *e = *state;
    struct mail_result res;
    MDB_txn *txn;
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE, .mailbox = "u", .uidvalidity = 0};
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_apply(&e->dbis, txn, &op, &res), 0);
    assert_int_equal(res.status, TDM_EINVAL);
    op.type = TDM_REC_NOOP;
    assert_int_equal(mail_apply(&e->dbis, txn, &op, &res), 0);
    assert_int_equal(res.status, TDM_EINVAL);
    mdb_txn_abort(txn);
}

static void
test_uidnext_exhausted(void **state)
{
    struct env *e = *state;
    struct mail_folder_info fi;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    /* Forge a folder at the end of the UID space. */
    MDB_txn *txn;
    struct mail_mailbox_info mbi;
    assert_int_equal(mbget(e, "u", &mbi), 0);
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    struct mail__folder_rec f = {
        .folder_id = 1, .uidvalidity = 1, .uidnext = UINT32_MAX, .highestmodseq = 1};
    uint8_t k[MAIL__FOLDER_KEY_MAX], v[MAIL__FOLDER_REC_LEN];
    MDB_val key = {mail__folder_key(mbi.id, "INBOX", 5, k), k}, val = {sizeof v, v};
    mail__folder_rec_encode(&f, v);
    assert_int_equal(mdb_put(txn, e->dbis.folders, &key, &val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(append(e, "u", "INBOX", "x", NULL), TDM_ELIMIT);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 0);
    assert_int_equal(entries(e, e->dbis.bodies), 0);
}

static void
test_reads_not_found(void **state)
{
    struct env *e = *state;
    struct mail_message_info mi;
    struct mail_folder_info fi;
    struct mail_mailbox_info mbi;
    uint8_t hash[MAIL_HASH_LEN] = {0};
    const void *data;
    size_t len;
    char *longname = repeat('x', MAIL_NAME_MAX + 1);
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    assert_int_equal(mbget(e, longname, &mbi), TDM_ENOTFOUND);
    assert_int_equal(mbget(e, "", &mbi), TDM_ENOTFOUND);
    assert_int_equal(fget(e, "u", longname, &fi), TDM_ENOTFOUND);
    assert_int_equal(fget(e, "u", "", &fi), TDM_ENOTFOUND);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), TDM_ENOTFOUND);
    assert_int_equal(mget(e, "u", "Nope", 1, &mi, NULL), TDM_ENOTFOUND);
    assert_int_equal(mget(e, "nobody", "INBOX", 1, &mi, NULL), TDM_ENOTFOUND);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_body_get(&e->dbis, txn, hash, &data, &len), TDM_ENOTFOUND);
    assert_int_equal(mail_message_list(&e->dbis, txn, "u", "Nope", NULL, NULL), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    free(longname);
}

static void
test_dbis_open_read_only(void **state)
{
    (void)state;
    /* A read-only transaction on an environment never written to: nothing to open. */
    char dir[] = "/tmp/tdm-test-mail-ro-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    MDB_env *env;
    MDB_txn *txn;
    struct mail_dbis dbis;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOSYNC, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &dbis), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    /* Once created, a read-only transaction opens them. */
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &dbis), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &dbis), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- Digest and determinism ---- */

/* A workload touching every record type. */
static void
workload(struct env *e)
{
    static const uint32_t u12[] = {1, 2}, u1[] = {1};
    static const char *const kws[] = {"x", "y"};
    assert_int_equal(mk_mailbox(e, "alice", 1000, 100, 1700000000), 0);
    assert_int_equal(mk_mailbox(e, "bob", 0, 0, 1700000001), 0);
    assert_int_equal(mk_folder(e, "alice", "Work/Projects", MAIL_USE_ARCHIVE), 0);
    assert_int_equal(subscribe(e, "alice", "Work", true), 0);
    assert_int_equal(append_kw(e, "alice", "INBOX", "m1", MAIL_FLAG_SEEN, kws, 2, NULL), 0);
    assert_int_equal(append(e, "alice", "INBOX", "m2", NULL), 0);
    assert_int_equal(append(e, "bob", "INBOX", "m2", NULL), 0);
    assert_int_equal(
        set_flags(e, "alice", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_FLAGGED, NULL, 0, u12, 2, NULL),
        0);
    assert_int_equal(copy(e, "alice", "INBOX", "Work", false, u12, 2, NULL), 0);
    assert_int_equal(copy(e, "alice", "Work", "Work/Projects", true, u1, 1, NULL), 0);
    assert_int_equal(expunge(e, "alice", "INBOX", u1, 1, NULL), 0);
    assert_int_equal(mv_folder(e, "alice", "Work", "Done"), 0);
    assert_int_equal(mv_folder(e, "alice", "INBOX", "Old"), 0);
    assert_int_equal(set_quota(e, "bob", 10, 10), 0);
    assert_int_equal(rm_folder(e, "alice", "Done"), 0);
    assert_int_equal(mk_mailbox(e, "carol", 0, 0, 5), 0);
    assert_int_equal(rm_mailbox(e, "carol"), 0);
}

/* ---- The MODSEQ index: what changed since ---- */

struct changes {
    size_t n;
    struct mail_change c[32];
};

static int
collect_change(void *ctx, const struct mail_change *ch)
{
    struct changes *cs = ctx;
    assert_true(cs->n < 32);
    cs->c[cs->n++] = *ch;
    return 0;
}

static struct changes
changes_since(struct env *e, const char *mb, const char *f, uint64_t since)
{
    struct changes cs = {0};
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mail_folder_changes(&e->dbis, txn, mb, f, since, collect_change, &cs), 0);
    mdb_txn_abort(txn);
    return cs;
}

static void
assert_change(const struct mail_change *ch, uint32_t uid, uint64_t modseq, bool expunged)
{
    assert_int_equal(ch->uid, uid);
    assert_int_equal(ch->modseq, modseq);
    assert_int_equal(ch->expunged, expunged);
}

static void
test_folder_changes(void **state)
{
    struct env *e = *state;
    struct mail_result r;
    assert_int_equal(mk_mailbox(e, "alice", 0, 0, 7), 0);
    assert_int_equal(mk_folder(e, "alice", "Archive", 0), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(append(e, "alice", "INBOX", body_hello, &r), 0);
    /* A new folder starts at HIGHESTMODSEQ 1: UIDs 1..4 at MODSEQs 2..5. */
    struct changes cs = changes_since(e, "alice", "INBOX", 0);
    assert_int_equal(cs.n, 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_change(&cs.c[i], i + 1, i + 2, false);

    /* A flag change moves the message to a new MODSEQ: it appears once, at the new one. */
    const uint32_t two[] = {2};
    assert_int_equal(set_flags(e, "alice", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_SEEN, NULL, 0, two,
                               1, &r),
                     0);
    cs = changes_since(e, "alice", "INBOX", 0);
    assert_int_equal(cs.n, 4);
    assert_change(&cs.c[3], 2, 6, false);
    /* A no-op STORE takes no MODSEQ and leaves the index alone. */
    assert_int_equal(set_flags(e, "alice", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_SEEN, NULL, 0, two,
                               1, &r),
                     0);
    cs = changes_since(e, "alice", "INBOX", 5);
    assert_int_equal(cs.n, 1);
    assert_change(&cs.c[0], 2, 6, false);

    /* Expunge leaves a tombstone at the expunge's MODSEQ. */
    const uint32_t three[] = {3};
    assert_int_equal(expunge(e, "alice", "INBOX", three, 1, &r), 0);
    cs = changes_since(e, "alice", "INBOX", 6);
    assert_int_equal(cs.n, 1);
    assert_change(&cs.c[0], 3, 7, true);

    /* Move: a new entry in the destination, a tombstone in the source. */
    const uint32_t one[] = {1};
    assert_int_equal(copy(e, "alice", "INBOX", "Archive", true, one, 1, &r), 0);
    cs = changes_since(e, "alice", "INBOX", 7);
    assert_int_equal(cs.n, 1);
    assert_change(&cs.c[0], 1, 8, true);
    cs = changes_since(e, "alice", "Archive", 0);
    assert_int_equal(cs.n, 1);
    assert_change(&cs.c[0], 1, 2, false);
    /* Copy: only the destination changes. */
    const uint32_t four[] = {4};
    assert_int_equal(copy(e, "alice", "INBOX", "Archive", false, four, 1, &r), 0);
    assert_int_equal(changes_since(e, "alice", "INBOX", 8).n, 0);
    cs = changes_since(e, "alice", "Archive", 2);
    assert_int_equal(cs.n, 1);
    assert_change(&cs.c[0], 2, 3, false);

    /* The whole history of INBOX, in MODSEQ order: 4, 2 (flags), 3 (gone), 1 (moved away). */
    cs = changes_since(e, "alice", "INBOX", 0);
    assert_int_equal(cs.n, 4);
    assert_change(&cs.c[0], 4, 5, false);
    assert_change(&cs.c[1], 2, 6, false);
    assert_change(&cs.c[2], 3, 7, true);
    assert_change(&cs.c[3], 1, 8, true);
    /* Nothing past HIGHESTMODSEQ, and the folder's entries go with the folder. */
    assert_int_equal(changes_since(e, "alice", "INBOX", UINT64_MAX).n, 0);
    assert_int_equal(entries(e, e->dbis.modseq), 4 + 2);
    assert_int_equal(rm_folder(e, "alice", "Archive"), 0);
    assert_int_equal(entries(e, e->dbis.modseq), 4);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    struct changes none = {0};
    assert_int_equal(
        mail_folder_changes(&e->dbis, txn, "alice", "Archive", 0, collect_change, &none),
        TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    assert_int_equal(rm_mailbox(e, "alice"), 0);
    assert_int_equal(entries(e, e->dbis.modseq), 0);
}

/* ---- \Recent claims ---- */

static struct mail_result
claim_recent(struct env *e, const char *f, uint32_t limit)
{
    struct mail_op op = {
        .type = TDM_REC_FOLDER_RECENT, .mailbox = "alice", .folder = f, .uid_limit = limit};
    struct mail_result r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(apply_res(e, &op, &r), 0);
    return r;
}

static void
test_recent_claims(void **state)
{
    struct env *e = *state;
    struct mail_result r;
    assert_int_equal(mk_mailbox(e, "alice", 0, 0, 7), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(append(e, "alice", "INBOX", body_hello, &r), 0);
    struct mail_folder_info info;
    assert_int_equal(fget(e, "alice", "INBOX", &info), 0);
    assert_int_equal(info.first_recent_uid, 1);
    uint64_t modseq = info.highestmodseq;
    /* The first session to SELECT claims UIDs 1..3 (limit: its UIDNEXT, 4). */
    r = claim_recent(e, "INBOX", 4);
    assert_int_equal(r.first_uid, 1);
    assert_int_equal(r.count, 3);
    /* A second session at the same moment gets none of them. */
    r = claim_recent(e, "INBOX", 4);
    assert_int_equal(r.first_uid, 4);
    assert_int_equal(r.count, 0);
    /* New mail: the first to notice claims it; a limit past UIDNEXT is capped. */
    assert_int_equal(append(e, "alice", "INBOX", body_hello, &r), 0);
    assert_int_equal(append(e, "alice", "INBOX", body_hello, &r), 0);
    r = claim_recent(e, "INBOX", 1000);
    assert_int_equal(r.first_uid, 4);
    assert_int_equal(r.count, 2);
    assert_int_equal(fget(e, "alice", "INBOX", &info), 0);
    assert_int_equal(info.first_recent_uid, 6);
    /* A claim is no change a client sees: HIGHESTMODSEQ only moved with the appends. */
    assert_int_equal(info.highestmodseq, modseq + 2);
    /* An old limit claims nothing and moves nothing back. */
    r = claim_recent(e, "INBOX", 2);
    assert_int_equal(r.count, 0);
    assert_int_equal(fget(e, "alice", "INBOX", &info), 0);
    assert_int_equal(info.first_recent_uid, 6);
    /* A limit of 0 is refused by the encoder. */
    struct mail_op bad = {
        .type = TDM_REC_FOLDER_RECENT, .mailbox = "alice", .folder = "INBOX", .uid_limit = 0};
    uint8_t *payload;
    size_t len;
    const char *err;
    assert_int_equal(mail_op_encode(&bad, &payload, &len, &err), TDM_EINVAL);
}

static void
test_digest(void **state)
{
    struct env *e1 = *state, *e2 = env_new(), *e3 = env_new();
    uint8_t d1[32], d2[32], d3[32], empty[32];
    digest(e1, empty);
    workload(e1);
    workload(e2);
    workload(e3);
    digest(e1, d1);
    digest(e2, d2);
    digest(e3, d3);
    assert_memory_equal(d1, d2, 32);
    assert_memory_equal(d1, d3, 32);
    assert_memory_not_equal(d1, empty, 32);

    /* Determinism beyond the digest: the databases hold the same bytes item by item. */
    MDB_dbi a[] = {e1->dbis.mailboxes, e1->dbis.folders, e1->dbis.messages, e1->dbis.bodies,
                   e1->dbis.body_refs};
    MDB_dbi b[] = {e2->dbis.mailboxes, e2->dbis.folders, e2->dbis.messages, e2->dbis.bodies,
                   e2->dbis.body_refs};
    MDB_txn *t1, *t2;
    assert_int_equal(mdb_txn_begin(e1->env, NULL, MDB_RDONLY, &t1), 0);
    assert_int_equal(mdb_txn_begin(e2->env, NULL, MDB_RDONLY, &t2), 0);
    for (size_t i = 0; i < 5; i++) {
        MDB_cursor *c1, *c2;
        MDB_val k1, v1, k2, v2;
        assert_int_equal(mdb_cursor_open(t1, a[i], &c1), 0);
        assert_int_equal(mdb_cursor_open(t2, b[i], &c2), 0);
        int r1, r2;
        for (MDB_cursor_op op = MDB_FIRST;; op = MDB_NEXT) {
            r1 = mdb_cursor_get(c1, &k1, &v1, op);
            r2 = mdb_cursor_get(c2, &k2, &v2, op);
            assert_int_equal(r1, r2);
            if (r1 != 0)
                break;
            assert_int_equal(k1.mv_size, k2.mv_size);
            assert_memory_equal(k1.mv_data, k2.mv_data, k1.mv_size);
            assert_int_equal(v1.mv_size, v2.mv_size);
            assert_memory_equal(v1.mv_data, v2.mv_data, v1.mv_size);
        }
        assert_int_equal(r1, MDB_NOTFOUND);
        mdb_cursor_close(c1);
        mdb_cursor_close(c2);
    }
    mdb_txn_abort(t1);
    mdb_txn_abort(t2);

    /* One differing op, even a flag, changes the digest; the same op again matches. */
    static const uint32_t u2[] = {2};
    assert_int_equal(
        set_flags(e2, "alice", "Old", MAIL_FLAGS_ADD, MAIL_FLAG_ANSWERED, NULL, 0, u2, 1, NULL), 0);
    digest(e2, d2);
    assert_memory_not_equal(d1, d2, 32);
    assert_int_equal(
        set_flags(e1, "alice", "Old", MAIL_FLAGS_ADD, MAIL_FLAG_ANSWERED, NULL, 0, u2, 1, NULL), 0);
    digest(e1, d1);
    assert_memory_equal(d1, d2, 32);
    /* A refused op changes nothing. */
    uint8_t d3_after[32];
    assert_int_equal(mk_mailbox(e3, "alice", 0, 0, 1), TDM_EEXIST);
    assert_int_equal(rm_folder(e3, "alice", "INBOX"), TDM_EINVAL);
    digest(e3, d3_after);
    assert_memory_equal(d3, d3_after, 32);
    env_free(e2);
    env_free(e3);
}

/*
 * The race of IMAP's EXPUNGE: a session reads which messages have \Deleted, another takes
 * \Deleted back from one of them and commits first, then the expunge applies. deleted_only
 * decides at apply time, so that message stays; the result counts only what went, and the
 * tombstones at its MODSEQs name exactly those UIDs.
 */
static void
test_expunge_deleted_only(void **state)
{
    struct env *e = *state;
    struct mail_message_info mi;
    struct mail_folder_info fi;
    struct mail_result res;
    assert_int_equal(mk_mailbox(e, "u", 0, 0, 1), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(append(e, "u", "INBOX", i % 2 ? "odd" : "even", NULL), 0);
    static const uint32_t marked[] = {1, 2, 3};
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_ADD, MAIL_FLAG_DELETED, NULL, 0, marked, 3, NULL), 0);

    /* The expunger's read. */
    uint32_t seen[4];
    size_t n_seen = 0;
    MDB_txn *rtxn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &rtxn), 0);
    for (uint32_t uid = 1; uid <= 4; uid++) {
        assert_int_equal(mail_message_get(&e->dbis, rtxn, "u", "INBOX", uid, &mi), 0);
        if (mi.flags & MAIL_FLAG_DELETED)
            seen[n_seen++] = uid;
    }
    mdb_txn_abort(rtxn);
    assert_int_equal(n_seen, 3);

    /* Another session's -FLAGS \Deleted on UID 2 commits in between. */
    static const uint32_t two[] = {2};
    assert_int_equal(
        set_flags(e, "u", "INBOX", MAIL_FLAGS_REMOVE, MAIL_FLAG_DELETED, NULL, 0, two, 1, NULL), 0);

    struct mail_op op = {.type = TDM_REC_MESSAGE_EXPUNGE,
                         .mailbox = "u",
                         .folder = "INBOX",
                         .deleted_only = true,
                         .uids = seen,
                         .n_uids = n_seen};
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    uint64_t before = fi.highestmodseq;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 2);
    assert_true(res.modseq == before + 2);
    assert_int_equal(mget(e, "u", "INBOX", 1, &mi, NULL), TDM_ENOTFOUND);
    assert_int_equal(mget(e, "u", "INBOX", 2, &mi, NULL), 0);
    assert_int_equal(mi.flags, 0);
    assert_int_equal(mget(e, "u", "INBOX", 3, &mi, NULL), TDM_ENOTFOUND);
    struct changes cs = changes_since(e, "u", "INBOX", res.modseq - res.count);
    assert_int_equal(cs.n, 2);
    assert_change(&cs.c[0], 1, before + 1, true);
    assert_change(&cs.c[1], 3, before + 2, true);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 2);

    /* Nothing left with \Deleted: a refusal-free no-op that takes no MODSEQ. */
    static const uint32_t two_four[] = {2, 4};
    op.uids = two_four;
    op.n_uids = 2;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 0);
    assert_true(res.modseq == before + 2);
    /* The record as written before deleted_only existed expunges whatever it names. */
    op.deleted_only = false;
    assert_int_equal(apply_res(e, &op, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(fget(e, "u", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_record_types),
        cmocka_unit_test(test_codec_limits),
        cmocka_unit_test(test_codec_malformed),
        cmocka_unit_test_setup_teardown(test_mailbox_create_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidvalidity_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_multi_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags_unchanged_since, setup, teardown),
        cmocka_unit_test(test_codec_flags_layout),
        cmocka_unit_test(test_codec_expunge_layout),
        cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expunge_deleted_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_refuses_invalid_op, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uidnext_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_not_found, setup, teardown),
        cmocka_unit_test(test_dbis_open_read_only),
        cmocka_unit_test_setup_teardown(test_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent_claims, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The selected-folder view against a real mail model in LMDB: the MSN map after open, arrivals
 * (EXISTS), flag changes (with their MSN after expunges), expunges held back while a command
 * may not announce them and announced highest MSN first when it may, changes by MODSEQ only,
 * a re-created folder, and a callback that stops a sync (the same events come again).
 */
#include "imap/imap_view.h"

#include "lib/err.h"

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

struct env {
    char dir[256];
    MDB_env *env;
    struct mail_dbis dbis;
};

static int
setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    assert_int_equal(scratch_make(e->dir, sizeof(e->dir), "imapview"), 0);
    assert_int_equal(mdb_env_create(&e->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(e->env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(e->env, (size_t)1 << 28), 0);
    assert_int_equal(mdb_env_open(e->env, e->dir, MDB_NOSYNC, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_dbis_open(txn, &e->dbis), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    *state = e;
    return 0;
}

static int
teardown(void **state)
{
    struct env *e = *state;
    mdb_env_close(e->env);
    assert_int_equal(scratch_remove(e->dir), 0);
    free(e);
    return 0;
}

static void
apply(struct env *e, const struct mail_op *op)
{
    MDB_txn *txn;
    struct mail_result r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(mdb_txn_begin(e->env, NULL, 0, &txn), 0);
    assert_int_equal(mail_apply(&e->dbis, txn, op, &r), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

static void
mk_mailbox(struct env *e, uint32_t uidvalidity)
{
    struct mail_op op = {
        .type = TDM_REC_MAILBOX_CREATE, .mailbox = "alice", .uidvalidity = uidvalidity};
    apply(e, &op);
}

static void
deliver(struct env *e, int n)
{
    static const char body[] = "Subject: x\r\n\r\nx\r\n";
    struct mail_target t = {"alice", "INBOX"};
    for (int i = 0; i < n; i++) {
        struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                             .targets = &t,
                             .n_targets = 1,
                             .internal_date = 1700000000,
                             .body = body,
                             .body_len = sizeof(body) - 1};
        op.guid[0] = (uint8_t)i;
        apply(e, &op);
    }
}

static void
flag(struct env *e, uint32_t uid, uint32_t flags)
{
    struct mail_op op = {.type = TDM_REC_MESSAGE_FLAGS,
                         .mailbox = "alice",
                         .folder = "INBOX",
                         .flag_mode = MAIL_FLAGS_REPLACE,
                         .flags = flags,
                         .uids = &uid,
                         .n_uids = 1};
    apply(e, &op);
}

static void
expunge(struct env *e, const uint32_t *uids, size_t n)
{
    struct mail_op op = {.type = TDM_REC_MESSAGE_EXPUNGE,
                         .mailbox = "alice",
                         .folder = "INBOX",
                         .uids = uids,
                         .n_uids = n};
    apply(e, &op);
}

/* The events a sync reported, as text: "X3:7 E9 C2:4@12" (expunge MSN:UID, EXISTS, changed
 * MSN:UID@MODSEQ), and a way to stop after a number of them. */
struct log {
    char text[512];
    int stop_after; /* 0: never */
    int seen;
};

static int note(struct log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
note(struct log *l, const char *fmt, ...)
{
    if (l->stop_after && ++l->seen > l->stop_after)
        return 99;
    size_t len = strlen(l->text);
    if (len + 2 >= sizeof(l->text))
        return 0; /* full: the large-folder test only counts */
    va_list ap;
    va_start(ap, fmt);
    if (len)
        l->text[len++] = ' ';
    vsnprintf(l->text + len, sizeof(l->text) - len, fmt, ap);
    va_end(ap);
    return 0;
}

static int
on_expunged(void *ctx, uint32_t msn, uint32_t uid)
{
    return note(ctx, "X%u:%u", msn, uid);
}

static int
on_exists(void *ctx, uint32_t count)
{
    return note(ctx, "E%u", count);
}

static int
on_changed(void *ctx, uint32_t msn, uint32_t uid, uint64_t modseq)
{
    return note(ctx, "C%u:%u@%llu", msn, uid, (unsigned long long)modseq);
}

static const struct imap_view_events events = {on_expunged, on_exists, on_changed};

static int
sync_view(struct env *e, struct imap_view *v, bool allow_expunge, struct log *l)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    int ret = imap_view_sync(v, &e->dbis, txn, allow_expunge, &events, l);
    mdb_txn_abort(txn);
    return ret;
}

static struct imap_view *
open_view(struct env *e)
{
    MDB_txn *txn;
    struct imap_view *v = NULL;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(imap_view_open(&e->dbis, txn, "alice", "INBOX", &v), 0);
    mdb_txn_abort(txn);
    return v;
}

static void
test_open_and_map(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 5);
    deliver(e, 5);
    const uint32_t gone[] = {2};
    expunge(e, gone, 1);
    struct imap_view *v = open_view(e);
    assert_int_equal(imap_view_count(v), 4);
    assert_int_equal(imap_view_uid(v, 1), 1);
    assert_int_equal(imap_view_uid(v, 2), 3);
    assert_int_equal(imap_view_uid(v, 4), 5);
    assert_int_equal(imap_view_uid(v, 0), 0);
    assert_int_equal(imap_view_uid(v, 5), 0);
    assert_int_equal(imap_view_msn(v, 3), 2);
    assert_int_equal(imap_view_msn(v, 2), 0);
    assert_int_equal(imap_view_msn(v, 6), 0);
    assert_int_equal(imap_view_uidvalidity(v), 5);
    assert_int_equal(imap_view_uidnext(v), 6);
    assert_int_equal(imap_view_highestmodseq(v), 7);
    /* Nothing changed: a sync says nothing. */
    struct log l = {0};
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "");
    imap_view_free(&v);
    assert_null(v);
    struct imap_view *none = NULL;
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(imap_view_open(&e->dbis, txn, "alice", "Nope", &none), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
}

static void
test_arrivals_flags_and_expunges(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    deliver(e, 4); /* UIDs 1..4 at MODSEQ 2..5 */
    struct imap_view *v = open_view(e);
    struct log l = {0};

    /* Two arrivals, then the first of them flagged: EXISTS once, no FETCH for new mail. */
    deliver(e, 2); /* 5@6, 6@7 */
    flag(e, 5, MAIL_FLAG_SEEN); /* 5@8 */
    flag(e, 2, MAIL_FLAG_FLAGGED); /* 2@9 */
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "E6 C2:2@9");
    assert_int_equal(imap_view_uid(v, 5), 5);
    assert_int_equal(imap_view_uid(v, 6), 6);

    /* Expunges during a FETCH: held back, MSNs unchanged, marked pending. */
    const uint32_t gone[] = {1, 3};
    expunge(e, gone, 2); /* tombstones 1@10, 3@11 */
    flag(e, 4, MAIL_FLAG_SEEN); /* 4@12 */
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, false, &l), 0);
    assert_string_equal(l.text, "C4:4@12");
    assert_int_equal(imap_view_count(v), 6);
    assert_true(imap_view_pending(v, 1));
    assert_false(imap_view_pending(v, 2));
    assert_true(imap_view_pending(v, 3));
    /* A pending message's later changes are not announced (it is gone). */
    deliver(e, 1); /* 7@13 */
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, false, &l), 0);
    assert_string_equal(l.text, "E7");

    /* Then a NOOP: highest MSN first, so each is right when sent; MSNs close up after. */
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "X3:3 X1:1");
    assert_int_equal(imap_view_count(v), 5);
    assert_int_equal(imap_view_uid(v, 1), 2);
    assert_int_equal(imap_view_uid(v, 5), 7);
    for (uint32_t m = 1; m <= 5; m++)
        assert_false(imap_view_pending(v, m));
    /* A changed message's MSN is its MSN after the expunges sent before it. */
    const uint32_t two[] = {2};
    expunge(e, two, 1);
    flag(e, 6, MAIL_FLAG_ANSWERED);
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "X1:2 C3:6@15");
    /* An arrival expunged before anyone synced never reaches the client. */
    deliver(e, 1); /* UID 8 */
    const uint32_t eight[] = {8};
    expunge(e, eight, 1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "");
    assert_int_equal(imap_view_uidnext(v), 9);
    imap_view_free(&v);
}

/* A session's own flag changes, already told, are skipped; only when nothing came between. */
static void
test_own_changes(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    deliver(e, 3); /* UIDs 1..3 at MODSEQ 2..4 */
    struct imap_view *v = open_view(e);
    struct log l = {0};

    flag(e, 1, MAIL_FLAG_SEEN); /* ours: 1@5 */
    flag(e, 2, MAIL_FLAG_SEEN); /* ours: 2@6 */
    imap_view_own_changes(v, 4, 6);
    assert_int_equal(imap_view_highestmodseq(v), 6);
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "");

    /* Someone else's change came first: ours are not skipped, theirs are told with them. */
    flag(e, 3, MAIL_FLAG_FLAGGED);  /* theirs: 3@7 */
    flag(e, 1, MAIL_FLAG_ANSWERED); /* ours: 1@8 */
    imap_view_own_changes(v, 7, 8);
    assert_int_equal(imap_view_highestmodseq(v), 6);
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "C3:3@7 C1:1@8");
    /* A record that changed nothing moves nothing. */
    imap_view_own_changes(v, 8, 8);
    assert_int_equal(imap_view_highestmodseq(v), 8);
    imap_view_free(&v);
}

static void
test_stopped_sync_repeats(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    deliver(e, 3);
    struct imap_view *v = open_view(e);
    const uint32_t gone[] = {2};
    expunge(e, gone, 1);
    deliver(e, 1);
    flag(e, 3, MAIL_FLAG_SEEN);
    struct log l = {.stop_after = 2};
    assert_int_equal(sync_view(e, v, true, &l), 99);
    assert_int_equal(imap_view_count(v), 3);
    memset(&l, 0, sizeof(l));
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_string_equal(l.text, "X2:2 E3 C2:3@7");
    imap_view_free(&v);
}

static void
test_recreated_folder(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    struct mail_op mk = {.type = TDM_REC_FOLDER_CREATE, .mailbox = "alice", .folder = "Work"};
    apply(e, &mk);
    MDB_txn *txn;
    struct imap_view *v = NULL;
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(imap_view_open(&e->dbis, txn, "alice", "Work", &v), 0);
    mdb_txn_abort(txn);
    struct mail_op rm = {.type = TDM_REC_FOLDER_DELETE, .mailbox = "alice", .folder = "Work"};
    apply(e, &rm);
    struct log l = {0};
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(imap_view_sync(v, &e->dbis, txn, true, &events, &l), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    apply(e, &mk); /* same name, new UIDVALIDITY */
    assert_int_equal(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(imap_view_sync(v, &e->dbis, txn, true, &events, &l), TDM_ENOTFOUND);
    mdb_txn_abort(txn);
    assert_string_equal(l.text, "");
    imap_view_free(&v);
}

/* A renamed folder (same UIDVALIDITY) is gone under its old name; once the view follows the
 * new name it syncs on as before. */
static void
test_renamed_folder(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    deliver(e, 2);
    struct imap_view *v = open_view(e);
    struct mail_op mv = {.type = TDM_REC_FOLDER_RENAME,
                         .mailbox = "alice",
                         .folder = "INBOX",
                         .new_folder = "Old"};
    apply(e, &mv);
    struct log l = {0};
    assert_int_equal(sync_view(e, v, true, &l), TDM_ENOTFOUND);
    assert_int_equal(imap_view_rename(v, "Old"), 0);
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_int_equal(imap_view_count(v), 2);
    assert_string_equal(l.text, "");
    imap_view_free(&v);
}

static void
test_large_folder(void **state)
{
    struct env *e = *state;
    mk_mailbox(e, 1);
    deliver(e, 3000);
    struct imap_view *v = open_view(e);
    assert_int_equal(imap_view_count(v), 3000);
    uint32_t odd[1500];
    for (uint32_t i = 0; i < 1500; i++)
        odd[i] = 2 * i + 1;
    expunge(e, odd, 1500);
    struct log l = {0};
    assert_int_equal(sync_view(e, v, false, &l), 0);
    assert_int_equal(imap_view_count(v), 3000);
    assert_int_equal(sync_view(e, v, true, &l), 0);
    assert_int_equal(imap_view_count(v), 1500);
    for (uint32_t m = 1; m <= 1500; m++)
        assert_int_equal(imap_view_uid(v, m), 2 * m);
    imap_view_free(&v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_and_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arrivals_flags_and_expunges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_sync_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recreated_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renamed_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

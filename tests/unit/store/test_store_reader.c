/*
 * store_reader: read-only access to a database another party writes. A reader beside an open
 * store sees each commit once store_commit returned (the acknowledgement), keeps its snapshot
 * while a transaction is open, reads a closed database, and refuses a handler that does not
 * fit the database's kind.
 */
#include "store/store_reader.h"
#include "store/store_readers.h"

#include "lib/err.h"
#include "lib/event.h"
#include "scratch.h"
#include "store/mail.h"
#include "store/store.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char tmpdir[256];
static char dbdir[300];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "reader"), 0);
    snprintf(dbdir, sizeof(dbdir), "%s/db", tmpdir);
    event_set_sink(NULL);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

/* A handler for a kind that is not mail: one sub-database, read as empty when absent. */
struct toy_state {
    MDB_dbi dbi;
    bool present; /* false: opened read-only before the table existed */
};

static bool
toy_handles(uint16_t type)
{
    return type == TDM_REC_TEST_FIRST;
}

static int
toy_validate(uint16_t type, const uint8_t *payload, size_t len, const char **error_r)
{
    (void)type;
    (void)payload;
    (void)len;
    (void)error_r;
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
    if (rc != 0 && rc != EACCES) {
        free(st);
        return -EIO;
    }
    st->present = rc == 0;
    *state_r = st;
    return 0;
}

static void
toy_close(void *state)
{
    free(state);
}

static int
toy_apply(void *state, MDB_txn *txn, uint16_t type, const uint8_t *payload, size_t len,
          struct mail_result *result_r)
{
    (void)type;
    (void)result_r;
    struct toy_state *st = state;
    MDB_val k = {len, (void *)payload}, v = {1, "1"};
    return mdb_put(txn, st->dbi, &k, &v, 0) == 0 ? 0 : -EIO;
}

static int
toy_digest(void *state, MDB_txn *txn, uint8_t out[32])
{
    (void)state;
    (void)txn;
    memset(out, 0, 32);
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

static struct store *
create_open(const char *kind, const struct store_record_handler *handler)
{
    struct store_options o;
    store_options_init(&o);
    o.kind = kind;
    o.handler = handler;
    const char *why = NULL;
    if (store_create(dbdir, &o, &why) < 0)
        fail_msg("create: %s", why);
    struct store *s = NULL;
    if (store_open(dbdir, &o, &s, &why) < 0)
        fail_msg("open: %s", why);
    return s;
}

static uint64_t
commit_mailbox(struct store *s, const char *mailbox)
{
    struct mail_op op = {.type = TDM_REC_MAILBOX_CREATE, .mailbox = mailbox, .uidvalidity = 7};
    uint64_t lsn = 0;
    struct mail_result res;
    const char *why;
    assert_int_equal(store_commit_op(s, &op, &lsn, &res, &why), 0);
    assert_int_equal(res.status, 0);
    return lsn;
}

static uint64_t
commit_append(struct store *s, const char *mailbox, uint32_t i, uint32_t *uid_r)
{
    struct mail_target t = {mailbox, "INBOX"};
    char body[64];
    int n = snprintf(body, sizeof(body), "Subject: %u\r\n\r\nbody %u\r\n", i, i);
    struct mail_op op = {.type = TDM_REC_MESSAGE_APPEND,
                         .targets = &t,
                         .n_targets = 1,
                         .internal_date = 1700000000 + i,
                         .body = body,
                         .body_len = (size_t)n};
    memcpy(op.guid, &i, sizeof(i));
    uint64_t lsn = 0;
    struct mail_result res;
    const char *why;
    assert_int_equal(store_commit_op(s, &op, &lsn, &res, &why), 0);
    assert_int_equal(res.status, 0);
    *uid_r = res.first_uid;
    return lsn;
}

static void
test_sees_each_acknowledged_commit(void **state)
{
    (void)state;
    struct store *s = create_open(NULL, NULL);
    struct store_reader *r = NULL;
    const char *why = NULL;
    if (store_reader_open(dbdir, NULL, &r, &why) < 0)
        fail_msg("reader: %s", why);
    assert_null(store_reader_handler_state(r));

    MDB_txn *txn;
    uint64_t applied;
    assert_int_equal(store_reader_begin(r, &txn), 0);
    assert_int_equal(store_reader_applied_lsn(r, txn, &applied), 0);
    assert_int_equal(applied, 0);
    struct mail_mailbox_info mi;
    assert_int_equal(mail_mailbox_get(store_reader_mail_dbis(r), txn, "alice", &mi), TDM_ENOTFOUND);
    mdb_txn_abort(txn);

    uint64_t lsn = commit_mailbox(s, "alice");
    assert_int_equal(store_reader_begin(r, &txn), 0);
    assert_int_equal(store_reader_applied_lsn(r, txn, &applied), 0);
    assert_int_equal(applied, lsn);
    assert_int_equal(mail_mailbox_get(store_reader_mail_dbis(r), txn, "alice", &mi), 0);
    mdb_txn_abort(txn);

    /* A snapshot taken before a commit keeps what it saw; a new one sees the commit. */
    MDB_txn *old;
    assert_int_equal(store_reader_begin(r, &old), 0);
    for (uint32_t i = 1; i <= 20; i++) {
        uint32_t uid;
        lsn = commit_append(s, "alice", i, &uid);
        assert_int_equal(store_reader_begin(r, &txn), 0);
        assert_int_equal(store_reader_applied_lsn(r, txn, &applied), 0);
        assert_int_equal(applied, lsn);
        struct mail_folder_info fi;
        assert_int_equal(mail_folder_get(store_reader_mail_dbis(r), txn, "alice", "INBOX", &fi), 0);
        assert_int_equal(fi.messages, i);
        struct mail_message_info msg;
        assert_int_equal(
            mail_message_get(store_reader_mail_dbis(r), txn, "alice", "INBOX", uid, &msg), 0);
        assert_memory_equal(msg.guid, &i, sizeof(i));
        const void *body;
        size_t len;
        assert_int_equal(mail_body_get(store_reader_mail_dbis(r), txn, msg.body_hash, &body, &len),
                         0);
        char want[64];
        snprintf(want, sizeof(want), "Subject: %u\r\n\r\nbody %u\r\n", i, i);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(body, want, len);
        mdb_txn_abort(txn);
    }
    struct mail_folder_info fi;
    assert_int_equal(mail_folder_get(store_reader_mail_dbis(r), old, "alice", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 0);
    mdb_txn_abort(old);

    /* The store first: see store_reader.c on LMDB's locks within one process. */
    assert_int_equal(store_close(&s), 0);
    store_reader_free(&r);
    assert_null(r);
    store_reader_free(&r); /* NULL is fine */
}

/* A database nobody has mounted reads as of its last applied transaction. */
static void
test_closed_database(void **state)
{
    (void)state;
    struct store *s = create_open(NULL, NULL);
    commit_mailbox(s, "bob");
    uint32_t uid;
    uint64_t lsn = commit_append(s, "bob", 1, &uid);
    assert_int_equal(store_close(&s), 0);

    struct store_reader *r = NULL;
    const char *why = NULL;
    if (store_reader_open(dbdir, NULL, &r, &why) < 0)
        fail_msg("reader: %s", why);
    MDB_txn *txn;
    uint64_t applied;
    assert_int_equal(store_reader_begin(r, &txn), 0);
    assert_int_equal(store_reader_applied_lsn(r, txn, &applied), 0);
    assert_int_equal(applied, lsn);
    struct mail_folder_info fi;
    assert_int_equal(mail_folder_get(store_reader_mail_dbis(r), txn, "bob", "INBOX", &fi), 0);
    assert_int_equal(fi.messages, 1);
    assert_int_equal(fi.uidnext, uid + 1);
    mdb_txn_abort(txn);
    store_reader_free(&r);

    /* Reading changed nothing: the store mounts again without recovery work. */
    struct store_options o;
    store_options_init(&o);
    assert_int_equal(store_open(dbdir, &o, &s, &why), 0);
    assert_int_equal(store_close(&s), 0);
}

/* Descriptors of this process open on a file under dir. */
static unsigned
fds_under(const char *dir)
{
    char real[4096];
    assert_non_null(realpath(dir, real));
    unsigned n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        char link[300], target[4096];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strncmp(target, real, strlen(real)) == 0;
    }
    closedir(d);
    return n;
}

/* A worker's set: a dismounted database's reader is closed with its files, refused while
 * listed, opened again once a later list leaves it out. */
static void
test_readers_dismounted(void **state)
{
    (void)state;
    struct store *s = create_open(NULL, NULL);
    commit_mailbox(s, "bob");
    assert_int_equal(store_close(&s), 0);
    /* The set looks for <datadir>/db/<name>. */
    char datadir[400], link[420];
    snprintf(datadir, sizeof(datadir), "%s/dd", tmpdir);
    snprintf(link, sizeof(link), "%s/db", datadir);
    assert_int_equal(mkdir(datadir, 0700), 0);
    assert_int_equal(mkdir(link, 0700), 0);
    snprintf(link, sizeof(link), "%s/db/db1", datadir);
    assert_int_equal(symlink(dbdir, link), 0);

    struct store_readers *set = NULL;
    assert_int_equal(store_readers_new(datadir, &set), 0);
    assert_int_equal(fds_under(dbdir), 0);
    assert_non_null(store_readers_get(set, "db1"));
    assert_true(fds_under(dbdir) > 0);
    const char *down[] = {"db0", "db1"};
    assert_int_equal(store_readers_set_dismounted(set, down, 2), 0);
    assert_true(store_readers_is_dismounted(set, "db1"));
    assert_false(store_readers_is_dismounted(set, "db2"));
    assert_int_equal(fds_under(dbdir), 0);
    assert_null(store_readers_get(set, "db1"));
    assert_int_equal(fds_under(dbdir), 0);
    /* Mounted again: readable again. */
    assert_int_equal(store_readers_set_dismounted(set, down, 1), 0);
    assert_false(store_readers_is_dismounted(set, "db1"));
    struct store_reader *r = store_readers_get(set, "db1");
    assert_non_null(r);
    MDB_txn *txn;
    struct mail_mailbox_info info;
    assert_int_equal(store_reader_begin(r, &txn), 0);
    assert_int_equal(mail_mailbox_get(store_reader_mail_dbis(r), txn, "bob", &info), 0);
    mdb_txn_abort(txn);
    assert_int_equal(store_readers_set_dismounted(set, NULL, 0), 0);
    assert_ptr_equal(store_readers_get(set, "db1"), r); /* left open */
    store_readers_free(&set);
    assert_int_equal(fds_under(dbdir), 0);
    assert_int_equal(unlink(link), 0);
}

static void
test_handler_must_fit_the_kind(void **state)
{
    (void)state;
    struct store *s = create_open(NULL, NULL);
    assert_int_equal(store_close(&s), 0);
    struct store_reader *r = NULL;
    const char *why = NULL;
    assert_int_equal(store_reader_open(dbdir, &toy, &r, &why), TDM_EINVAL);
    assert_non_null(strstr(why, "kind 'mail'"));
    assert_null(r);

    assert_int_equal(scratch_remove(dbdir), 0);
    s = create_open("toy", &toy);
    uint64_t lsn;
    assert_int_equal(store_commit(s, TDM_REC_TEST_FIRST, "k", 1, &lsn, NULL), 0);
    why = NULL;
    assert_int_equal(store_reader_open(dbdir, NULL, &r, &why), TDM_EINVAL);
    assert_non_null(strstr(why, "kind 'toy'"));
    assert_null(r);

    if (store_reader_open(dbdir, &toy, &r, &why) < 0)
        fail_msg("reader: %s", why);
    struct toy_state *st = store_reader_handler_state(r);
    assert_non_null(st);
    MDB_txn *txn;
    assert_int_equal(store_reader_begin(r, &txn), 0);
    MDB_val k = {1, "k"}, v;
    assert_int_equal(mdb_get(txn, st->dbi, &k, &v), 0);
    mdb_txn_abort(txn);
    assert_int_equal(store_close(&s), 0);
    store_reader_free(&r);
}

/* A reader opened on a database whose handler tables do not exist yet (created, never
 * mounted) sees them, and what is committed into them, once the store has mounted it. */
static void
test_tables_created_after_the_reader_opened(void **state)
{
    (void)state;
    struct store_options o;
    store_options_init(&o);
    o.kind = "toy";
    /* Created without its handler: the store's own tables exist, the handler's do not until
     * the first mount (as for a database made by a tool that does not know the kind). */
    const char *why = NULL;
    assert_int_equal(store_create(dbdir, &o, &why), 0);
    o.handler = &toy;
    struct store_reader *r = NULL;
    if (store_reader_open(dbdir, &toy, &r, &why) < 0)
        fail_msg("reader: %s", why);
    MDB_txn *txn;
    assert_int_equal(store_reader_begin(r, &txn), 0);
    struct toy_state *before = store_reader_handler_state(r);
    assert_false(before->present);
    mdb_txn_abort(txn);

    struct store *s = NULL;
    assert_int_equal(store_open(dbdir, &o, &s, &why), 0);
    uint64_t lsn;
    assert_int_equal(store_commit(s, TDM_REC_TEST_FIRST, "k", 1, &lsn, NULL), 0);
    assert_int_equal(store_reader_begin(r, &txn), 0);
    struct toy_state *after = store_reader_handler_state(r);
    assert_true(after->present);
    MDB_val k = {1, "k"}, v;
    assert_int_equal(mdb_get(txn, after->dbi, &k, &v), 0);
    assert_false(before->present); /* the old state is still there, and still readable */
    mdb_txn_abort(txn);
    /* Later snapshots keep the state: nothing new was created. */
    assert_int_equal(store_reader_begin(r, &txn), 0);
    assert_ptr_equal(store_reader_handler_state(r), after);
    mdb_txn_abort(txn);
    assert_int_equal(store_close(&s), 0);
    store_reader_free(&r);
}

static void
test_not_a_database(void **state)
{
    (void)state;
    struct store_reader *r = NULL;
    const char *why = NULL;
    assert_int_equal(store_reader_open(dbdir, NULL, &r, &why), -ENOENT);
    assert_non_null(why);
    assert_int_equal(mkdir(dbdir, 0700), 0);
    assert_int_equal(store_reader_open(dbdir, NULL, &r, &why), TDM_EFOREIGN);
    assert_non_null(strstr(why, "not a tandem database"));
    char sub[400];
    snprintf(sub, sizeof(sub), "%s/log", dbdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/store", dbdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    /* An empty store/: no LMDB environment there, and a read-only open creates none. */
    assert_true(store_reader_open(dbdir, NULL, &r, &why) < 0);
    assert_null(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sees_each_acknowledged_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handler_must_fit_the_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tables_created_after_the_reader_opened, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readers_dismounted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

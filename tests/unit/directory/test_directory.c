/*
 * The directory through a real store: schemas of every kind, put/replace/compare-and-set,
 * delete, address and alias uniqueness, ACL evaluation with groups and admins, passwords,
 * the record codec, and determinism (two databases fed the same records have equal digests,
 * and verify's replay agrees with the database).
 */
#include "directory/directory.h"
#include "store/store_inspect.h"

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

static char tmpdir[256];

static int
setup(void **state)
{
    (void)state;
    assert_int_equal(scratch_make(tmpdir, sizeof(tmpdir), "dir"), 0);
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

static struct store *
open_db(const char *name)
{
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
    struct store_options o;
    store_options_init(&o);
    o.generation_size = 64 * 1024;
    o.reserve_bytes = 64 * 1024;
    o.handler = &dir_record_handler;
    const char *err = NULL;
    if (access(dir, F_OK) != 0 && store_create(dir, &o, &err) != 0)
        fail_msg("create: %s", err);
    struct store *s = NULL;
    if (store_open(dir, &o, &s, &err) != 0)
        fail_msg("open: %s", err);
    return s;
}

/* Commits op; returns the commit error, or else the apply status. */
static int
run(struct store *s, const struct dir_op *op)
{
    struct mail_result res;
    const char *err = NULL;
    int ret = dir_commit(s, op, NULL, &res, &err);
    return ret < 0 ? ret : res.status;
}

static int
put(struct store *s, enum dir_kind kind, const char *name, uint64_t expected, const char *attrs)
{
    struct dir_op op = {.type = TDM_REC_DIR_PUT,
                        .kind = kind,
                        .name = name,
                        .expected_version = expected,
                        .attrs = attrs};
    return run(s, &op);
}

static int
bootstrap(struct store *s)
{
    struct dir_op op = {.type = TDM_REC_DIR_BOOTSTRAP};
    return run(s, &op);
}

static uint64_t
version_of(struct store *s, enum dir_kind kind, const char *name)
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct dir_object obj;
    int ret = dir_object_get(store_handler_state(s), txn, kind, name, &obj);
    uint64_t v = ret == 0 ? obj.version : 0;
    dir_object_clear(&obj);
    mdb_txn_abort(txn);
    return v;
}

/* ---- schemas ---- */

static const struct {
    enum dir_kind kind;
    const char *attrs;
    bool ok;
} schema_cases[] = {
    {DIR_KIND_SITE, "{}", true},
    {DIR_KIND_SITE, "{\"description\":\"Main site\"}", true},
    {DIR_KIND_SITE, "{\"descr\":\"typo\"}", false},
    {DIR_KIND_SITE, "[]", false},
    {DIR_KIND_SITE, "{\"description\":1}", false},
    {DIR_KIND_NETWORK, "{\"role\":\"replication\",\"subnets\":[\"10.0.0.0/8\"]}", true},
    {DIR_KIND_NETWORK, "{\"role\":\"other\"}", false},
    {DIR_KIND_SERVER, "{\"fqdn\":\"mx1.example.test\",\"roles\":[\"mailbox\",\"directory\"]}",
     true},
    {DIR_KIND_SERVER, "{\"roles\":[\"a\",\"a\"]}", false},
    {DIR_KIND_SERVER, "{\"addresses\":[1]}", false},
    {DIR_KIND_CLUSTER, "{\"servers\":[\"mx1\",\"mx2\"],\"witness\":\"fs1\"}", true},
    {DIR_KIND_CLUSTER, "{\"servers\":\"mx1\"}", false},
    {DIR_KIND_CMS, "{\"cluster\":\"c1\",\"address\":\"127.0.1.1\",\"network\":\"n1\"}", true},
    {DIR_KIND_CMS, "{\"port\":25}", false},
    {DIR_KIND_DATABASE, "{\"replication\":\"sync\",\"quota_bytes\":1073741824}", true},
    {DIR_KIND_DATABASE, "{\"quota_bytes\":-1}", false},
    {DIR_KIND_DATABASE, "{\"quota_bytes\":1.5}", false},
    {DIR_KIND_COPY, "{\"activation_preference\":2,\"database\":\"db1\",\"server\":\"mx2\"}", true},
    {DIR_KIND_COPY, "{\"activation_preference\":0}", false},
    {DIR_KIND_COPY, "{\"replay_lag_minutes\":10081}", false}, /* 7 days + 1 minute */
    {DIR_KIND_COPY, "{\"replay_lag_minutes\":10080}", true},
    {DIR_KIND_COPY, "{\"role\":\"standby\",\"replay_lag_minutes\":1440,\"truncation_lag_minutes\":10080}",
     true},
    {DIR_KIND_COPY, "{\"role\":\"active\"}", false},
    {DIR_KIND_COPY, "{\"truncation_lag_minutes\":10081}", false},
    {DIR_KIND_CMS, "{\"replication_port\":7433}", true},
    {DIR_KIND_CMS, "{\"replication_port\":0}", false},
    {DIR_KIND_USER,
     "{\"display_name\":\"Alice A.\",\"addresses\":[\"alice@example.test\"],\"aliases\":"
     "[\"al\"],\"phone\":\"+1 555\",\"title\":\"CTO\",\"department\":\"R&D\",\"office\":\"B2\","
     "\"disabled\":false}",
     true},
    {DIR_KIND_USER, "{\"addresses\":[\"not-an-address\"]}", false},
    {DIR_KIND_USER, "{\"addresses\":[\"a@b.test\",\"A@B.test\"]}", false},
    {DIR_KIND_USER, "{\"addresses\":[\"a@b.test\"],\"aliases\":[\"A@b.test\"]}", false},
    {DIR_KIND_USER, "{\"aliases\":[\"has space\"]}", false},
    {DIR_KIND_USER, "{\"disabled\":\"no\"}", false},
    {DIR_KIND_USER, "{\"password\":\"x\"}", false},
    {DIR_KIND_USER, "{\"phone\":\"a\\u0001b\"}", false},
    {DIR_KIND_USER, "{\"title\":\"a\",\"title\":\"b\"}", false},
    {DIR_KIND_GROUP, "{\"email\":\"staff@example.test\"}", true},
    {DIR_KIND_GROUP, "{\"email\":\"staff\"}", false},
    {DIR_KIND_ADDRESS_LIST, "{\"filter\":\"department=R&D\",\"hidden\":true}", true},
    {DIR_KIND_ADDRESS_LIST, "{\"hidden\":1}", false},
    {DIR_KIND_ADDRESS_LIST, "not json", false},
};

static void
test_schemas(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    for (size_t i = 0; i < sizeof(schema_cases) / sizeof(schema_cases[0]); i++) {
        char name[32];
        snprintf(name, sizeof(name), "obj%zu", i);
        int ret = put(s, schema_cases[i].kind, name, 0, schema_cases[i].attrs);
        if (schema_cases[i].ok && ret != 0)
            fail_msg("case %zu (%s) refused: %d", i, schema_cases[i].attrs, ret);
        if (!schema_cases[i].ok && ret != TDM_EINVAL)
            fail_msg("case %zu (%s) accepted: %d", i, schema_cases[i].attrs, ret);
    }
    /* Canonical form: compact, sorted keys. */
    char *canon = NULL;
    const char *err = NULL;
    assert_int_equal(
        dir_attrs_check(DIR_KIND_COPY, "{ \"server\" : \"b\", \"database\":\"a\" }", &canon, &err),
        0);
    assert_string_equal(canon, "{\"database\":\"a\",\"server\":\"b\"}");
    free(canon);
    assert_int_equal(dir_attrs_check(DIR_KIND_USER, "{\"nope\":1}", &canon, &err), TDM_EINVAL);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(dir_kind_parse("address-list"), DIR_KIND_ADDRESS_LIST);
    assert_string_equal(dir_kind_name(DIR_KIND_CMS), "cms");
    assert_int_equal(dir_kind_parse("bogus"), 0);
    assert_int_equal(store_close(&s), 0);
}

/* ---- put, replace, compare-and-set, delete ---- */

static void
test_put_cas_delete(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(bootstrap(s), 0);
    assert_int_equal(bootstrap(s), TDM_EEXIST);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 0, "{}"), 0);
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 1);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 0, "{}"), TDM_EEXIST);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 1, "{\"description\":\"x\"}"), 0);
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 2);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 1, "{}"), TDM_ECONFLICT);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", DIR_VERSION_ANY, "{}"), 0);
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 3);
    assert_int_equal(put(s, DIR_KIND_SITE, "s2", 4, "{}"), TDM_ENOTFOUND);
    assert_int_equal(put(s, DIR_KIND_SITE, "s2", DIR_VERSION_ANY, "{}"), 0);
    /* Same name, other kind: a different object. */
    assert_int_equal(put(s, DIR_KIND_NETWORK, "s1", 0, "{}"), 0);

    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct dir_object obj;
    assert_int_equal(dir_object_get(store_handler_state(s), txn, DIR_KIND_SITE, "s1", &obj), 0);
    assert_string_equal(obj.attrs, "{}");
    assert_false(obj.has_password);
    dir_object_clear(&obj);
    assert_int_equal(dir_object_get(store_handler_state(s), txn, DIR_KIND_SITE, "nope", &obj),
                     TDM_ENOTFOUND);
    mdb_txn_abort(txn);

    struct dir_op del = {.type = TDM_REC_DIR_DELETE, .kind = DIR_KIND_SITE, .name = "s1"};
    del.expected_version = 2;
    assert_int_equal(run(s, &del), TDM_ECONFLICT);
    del.expected_version = 3;
    assert_int_equal(run(s, &del), 0);
    assert_int_equal(run(s, &del), TDM_ENOTFOUND);
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 0);
    assert_int_equal(version_of(s, DIR_KIND_NETWORK, "s1"), 1);
    struct dir_op del_admins = {.type = TDM_REC_DIR_DELETE,
                                .kind = DIR_KIND_GROUP,
                                .name = DIR_GROUP_ADMINS,
                                .expected_version = DIR_VERSION_ANY};
    assert_int_equal(run(s, &del_admins), TDM_EINVAL);
    assert_int_equal(version_of(s, DIR_KIND_GROUP, DIR_GROUP_ADMINS), 1);
    assert_int_equal(store_close(&s), 0);
}

struct list_ctx {
    char names[8][32];
    int n;
};

static int
list_cb(void *ctx, const struct dir_object *obj)
{
    struct list_ctx *l = ctx;
    if (l->n < 8)
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", obj->name);
    l->n++;
    return 0;
}

static void
test_list(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(put(s, DIR_KIND_SERVER, "mx2", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_SERVER, "mx1", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_SITE, "a", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_CLUSTER, "z", 0, "{}"), 0);
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct list_ctx l = {0};
    assert_int_equal(dir_object_list(store_handler_state(s), txn, DIR_KIND_SERVER, list_cb, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.names[0], "mx1");
    assert_string_equal(l.names[1], "mx2");
    l.n = 0;
    assert_int_equal(dir_object_list(store_handler_state(s), txn, DIR_KIND_USER, list_cb, &l), 0);
    assert_int_equal(l.n, 0);
    mdb_txn_abort(txn);
    assert_int_equal(store_close(&s), 0);
}

/* ---- addresses ---- */

static const char *
resolve(struct store *s, const char *address)
{
    static char user[300];
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    const char *u = NULL;
    int ret = dir_resolve_address(store_handler_state(s), txn, address, &u);
    if (ret == 0)
        snprintf(user, sizeof(user), "%s", u);
    mdb_txn_abort(txn);
    return ret == 0 ? user : NULL;
}

static void
test_addresses(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(
        put(s, DIR_KIND_USER, "alice", 0,
            "{\"addresses\":[\"Alice@Example.test\",\"a@example.test\"],\"aliases\":[\"al\"]}"),
        0);
    assert_string_equal(resolve(s, "alice@example.TEST"), "alice");
    assert_string_equal(resolve(s, "AL"), "alice");
    assert_null(resolve(s, "bob@example.test"));
    /* Unique across users, case-insensitively, addresses and aliases alike. */
    assert_int_equal(put(s, DIR_KIND_USER, "bob", 0, "{\"addresses\":[\"ALICE@example.test\"]}"),
                     TDM_EEXIST);
    assert_int_equal(put(s, DIR_KIND_USER, "bob", 0, "{\"aliases\":[\"a@example.test\"]}"),
                     TDM_EEXIST);
    assert_int_equal(version_of(s, DIR_KIND_USER, "bob"), 0); /* refused as a whole */
    assert_int_equal(
        put(s, DIR_KIND_USER, "bob", 0, "{\"addresses\":[\"bob@example.test\"],\"aliases\":[]}"),
        0);
    /* Replacing alice frees what she no longer has, keeps what she still has. */
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 1, "{\"addresses\":[\"alice@example.test\"]}"),
                     0);
    assert_null(resolve(s, "al"));
    assert_null(resolve(s, "a@example.test"));
    assert_string_equal(resolve(s, "alice@example.test"), "alice");
    assert_int_equal(put(s, DIR_KIND_USER, "bob", 1,
                         "{\"addresses\":[\"bob@example.test\"],\"aliases\":[\"al\"]}"),
                     0);
    assert_string_equal(resolve(s, "al"), "bob");
    struct dir_op del = {.type = TDM_REC_DIR_DELETE,
                         .kind = DIR_KIND_USER,
                         .name = "alice",
                         .expected_version = DIR_VERSION_ANY};
    assert_int_equal(run(s, &del), 0);
    assert_null(resolve(s, "alice@example.test"));
    assert_string_equal(resolve(s, "bob@example.test"), "bob");
    assert_int_equal(store_close(&s), 0);
}

/* ---- Mail recipients and their routes ---- */

static struct dir_recipient
recipient(struct store *s, const char *local, const char *domain)
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct dir_recipient r;
    assert_int_equal(dir_recipient_lookup(store_handler_state(s), txn, local, domain, &r), 0);
    mdb_txn_abort(txn);
    return r;
}

static void
test_recipients_and_routes(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0,
                         "{\"addresses\":[\"alice@example.test\"],\"aliases\":[\"ally\"],"
                         "\"database\":\"db1\"}"),
                     0);
    assert_int_equal(put(s, DIR_KIND_USER, "dave", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "carol", 0, "{\"database\":\"db1\",\"disabled\":true}"),
                     0);

    /* Matched as an address, an alias by local part, a user name by local part. */
    struct dir_recipient r = recipient(s, "alice", "example.test");
    assert_int_equal(r.status, DIR_RCPT_OK);
    assert_string_equal(r.user, "alice");
    assert_string_equal(r.database, "db1");
    assert_int_equal(recipient(s, "ally", "elsewhere.test").status, DIR_RCPT_OK);
    assert_int_equal(recipient(s, "nobody", "example.test").status, DIR_RCPT_UNKNOWN);
    assert_int_equal(recipient(s, "dave", "example.test").status, DIR_RCPT_NO_MAILBOX);
    r = recipient(s, "carol", "example.test");
    assert_int_equal(r.status, DIR_RCPT_DISABLED);
    assert_int_equal(r.route.status, DIR_ROUTE_UNSET); /* only an OK recipient has a route */

    /* The route follows database -> cms -> address and lmtp_port, saying where it stops. */
    assert_int_equal(recipient(s, "alice", "example.test").route.status, DIR_ROUTE_NO_DATABASE);
    assert_int_equal(put(s, DIR_KIND_DATABASE, "db1", 0, "{}"), 0);
    assert_int_equal(recipient(s, "alice", "example.test").route.status, DIR_ROUTE_NO_CMS);
    assert_int_equal(put(s, DIR_KIND_DATABASE, "db1", 1, "{\"cms\":\"cms1\"}"), 0);
    r = recipient(s, "alice", "example.test");
    assert_int_equal(r.route.status, DIR_ROUTE_NO_CMS);
    assert_string_equal(r.route.cms, "cms1");
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 0, "{\"address\":\"mbx.example.test\"}"), 0);
    assert_int_equal(recipient(s, "alice", "example.test").route.status, DIR_ROUTE_NO_ADDRESS);
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 1, "{\"address\":\"192.0.2.7\"}"), 0);
    r = recipient(s, "alice", "example.test");
    assert_int_equal(r.route.status, DIR_ROUTE_OK);
    assert_string_equal(r.route.address, "192.0.2.7");
    assert_int_equal(r.route.port, DIR_LMTP_PORT);
    assert_int_equal(r.route.imap_port, DIR_IMAP_PORT);
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 2,
                         "{\"address\":\"2001:db8::7\",\"lmtp_port\":2424,\"imap_port\":1143}"),
                     0);
    r = recipient(s, "alice", "example.test");
    assert_int_equal(r.route.status, DIR_ROUTE_OK);
    assert_string_equal(r.route.address, "2001:db8::7");
    assert_int_equal(r.route.port, 2424);
    assert_int_equal(r.route.imap_port, 1143);
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 3, "{\"lmtp_port\":0}"), TDM_EINVAL);
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 3, "{\"imap_port\":65536}"), TDM_EINVAL);
    assert_int_equal(put(s, DIR_KIND_CMS, "cms1", 3, "{\"imap_port\":\"143\"}"), TDM_EINVAL);

    /* The admin API's words, both ways. */
    for (int st = DIR_ROUTE_OK; st <= DIR_ROUTE_NO_ADDRESS; st++)
        assert_int_equal(dir_route_status_parse(dir_route_status_name((enum dir_route_status)st)),
                         st);
    assert_int_equal(dir_route_status_parse("sideways"), DIR_ROUTE_UNSET);
    assert_int_equal(store_close(&s), 0);
}

/* ---- ACLs ---- */

static enum dir_right
right_of(struct store *s, enum dir_kind pk, const char *pname, enum dir_kind kind, const char *name)
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    struct dir_principal who = {pk, pname};
    enum dir_right r = DIR_RIGHT_NONE;
    int ret = dir_effective_right(store_handler_state(s), txn, &who, kind, name, &r);
    mdb_txn_abort(txn);
    assert_int_equal(ret, 0);
    return r;
}

static int
members(struct store *s, const char *group, const struct dir_principal *m, size_t n)
{
    struct dir_op op = {
        .type = TDM_REC_DIR_GROUP_MEMBERS,
        .name = group,
        .expected_version = DIR_VERSION_ANY,
        .members = m,
        .n_members = n};
    return run(s, &op);
}

static void
test_acl(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(bootstrap(s), 0);
    const char *users[] = {"alice", "bob", "carol", "dave"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(put(s, DIR_KIND_USER, users[i], 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_SERVER, "mx1", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_GROUP, "staff", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 0, "{}"), 0);
    struct dir_principal staff[] = {{DIR_KIND_SERVER, "mx1"}, {DIR_KIND_USER, "alice"}};
    assert_int_equal(members(s, "staff", staff, 2), 0);
    struct dir_acl_entry acl[] = {
        {{DIR_KIND_USER, "bob"}, DIR_RIGHT_READ},
        {{DIR_KIND_GROUP, "staff"}, DIR_RIGHT_WRITE},
        {{DIR_KIND_USER, "alice"}, DIR_RIGHT_READ}, /* lower than via staff: max wins */
    };
    struct dir_op set = {
        .type = TDM_REC_DIR_ACL_SET,
        .kind = DIR_KIND_SITE,
        .name = "s1",
        .expected_version = DIR_VERSION_ANY,
        .acl = acl,
        .n_acl = 3};
    assert_int_equal(run(s, &set), 0);
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 2);

    static const struct {
        enum dir_kind pk;
        const char *who;
        enum dir_right want;
    } cases[] = {
        {DIR_KIND_USER, "bob", DIR_RIGHT_READ},     {DIR_KIND_USER, "alice", DIR_RIGHT_WRITE},
        {DIR_KIND_SERVER, "mx1", DIR_RIGHT_WRITE},  {DIR_KIND_USER, "carol", DIR_RIGHT_NONE},
        {DIR_KIND_GROUP, "staff", DIR_RIGHT_WRITE}, {DIR_KIND_USER, "nobody", DIR_RIGHT_NONE},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(right_of(s, cases[i].pk, cases[i].who, DIR_KIND_SITE, "s1"),
                         cases[i].want);

    /* Admins have full control of everything, including objects with no ACL. */
    struct dir_principal admins[] = {{DIR_KIND_USER, "carol"}};
    assert_int_equal(members(s, DIR_GROUP_ADMINS, admins, 1), 0);
    assert_int_equal(right_of(s, DIR_KIND_USER, "carol", DIR_KIND_SITE, "s1"), DIR_RIGHT_FULL);
    assert_int_equal(right_of(s, DIR_KIND_USER, "carol", DIR_KIND_USER, "dave"), DIR_RIGHT_FULL);
    assert_int_equal(right_of(s, DIR_KIND_USER, "dave", DIR_KIND_USER, "dave"), DIR_RIGHT_NONE);

    /* Refusals: missing object, missing principal, missing member, groups in groups. */
    set.name = "nope";
    assert_int_equal(run(s, &set), TDM_ENOTFOUND);
    set.name = "s1";
    struct dir_acl_entry ghost[] = {{{DIR_KIND_USER, "ghost"}, DIR_RIGHT_FULL}};
    set.acl = ghost;
    set.n_acl = 1;
    assert_int_equal(run(s, &set), TDM_ENOTFOUND);
    struct dir_principal bad[] = {{DIR_KIND_USER, "ghost"}};
    assert_int_equal(members(s, "staff", bad, 1), TDM_ENOTFOUND);
    struct dir_principal nested[] = {{DIR_KIND_GROUP, "admins"}};
    assert_int_equal(members(s, "staff", nested, 1), TDM_EINVAL);
    struct dir_acl_entry twice[] = {{{DIR_KIND_USER, "bob"}, DIR_RIGHT_READ},
                                    {{DIR_KIND_USER, "bob"}, DIR_RIGHT_FULL}};
    set.acl = twice;
    set.n_acl = 2;
    assert_int_equal(run(s, &set), TDM_EINVAL);
    assert_int_equal(right_of(s, DIR_KIND_USER, "bob", DIR_KIND_SITE, "s1"), DIR_RIGHT_READ);

    /* A deleted user leaves its groups: recreated with the same name, it gets nothing. */
    struct dir_op del = {.type = TDM_REC_DIR_DELETE,
                         .kind = DIR_KIND_USER,
                         .name = "alice",
                         .expected_version = DIR_VERSION_ANY};
    assert_int_equal(run(s, &del), 0);
    MDB_txn *txn;
    bool is = true;
    struct dir_principal alice = {DIR_KIND_USER, "alice"}, mx1 = {DIR_KIND_SERVER, "mx1"};
    assert_int_equal(store_read_begin(s, &txn), 0);
    assert_int_equal(dir_is_member(store_handler_state(s), txn, "staff", &alice, &is), 0);
    assert_false(is);
    assert_int_equal(dir_is_member(store_handler_state(s), txn, "staff", &mx1, &is), 0);
    assert_true(is);
    mdb_txn_abort(txn);
    /* ... and every ACL: its direct grant on s1 does not pass to a new alice. */
    assert_int_equal(version_of(s, DIR_KIND_SITE, "s1"), 3);
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0, "{}"), 0);
    assert_int_equal(right_of(s, DIR_KIND_USER, "alice", DIR_KIND_SITE, "s1"), DIR_RIGHT_NONE);
    assert_int_equal(right_of(s, DIR_KIND_USER, "bob", DIR_KIND_SITE, "s1"), DIR_RIGHT_READ);
    /* A deleted group takes its memberships along. */
    del.kind = DIR_KIND_GROUP;
    del.name = "staff";
    assert_int_equal(run(s, &del), 0);
    assert_int_equal(store_read_begin(s, &txn), 0);
    assert_int_equal(dir_is_member(store_handler_state(s), txn, "staff", &mx1, &is), 0);
    assert_false(is);
    mdb_txn_abort(txn);
    assert_int_equal(right_of(s, DIR_KIND_SERVER, "mx1", DIR_KIND_SITE, "s1"), DIR_RIGHT_NONE);
    MDB_txn *rt;
    struct dir_object obj;
    assert_int_equal(store_read_begin(s, &rt), 0);
    assert_int_equal(dir_object_get(store_handler_state(s), rt, DIR_KIND_SITE, "s1", &obj), 0);
    assert_int_equal(obj.n_acl, 1); /* only bob's entry is left */
    assert_string_equal(obj.acl[0].who.name, "bob");
    dir_object_clear(&obj);
    mdb_txn_abort(rt);
    assert_int_equal(store_close(&s), 0);
}

/* Replacing a large membership clears every old entry in both directions. */
static void
test_members_replace(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    enum { N = 300 };
    static char names[N][16];
    static struct dir_principal all[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "u%03d", i);
        all[i] = (struct dir_principal){DIR_KIND_USER, names[i]};
        assert_int_equal(put(s, DIR_KIND_USER, names[i], 0, "{}"), 0);
    }
    assert_int_equal(put(s, DIR_KIND_GROUP, "g", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_GROUP, "h", 0, "{}"), 0);
    assert_int_equal(members(s, "g", all, N), 0);
    assert_int_equal(members(s, "h", all, N), 0);
    assert_int_equal(members(s, "g", &all[7], 1), 0);
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    for (int i = 0; i < N; i++) {
        bool in_g = false, in_h = false;
        assert_int_equal(dir_is_member(store_handler_state(s), txn, "g", &all[i], &in_g), 0);
        assert_int_equal(dir_is_member(store_handler_state(s), txn, "h", &all[i], &in_h), 0);
        assert_int_equal(in_g, i == 7);
        assert_true(in_h);
    }
    mdb_txn_abort(txn);
    /* Deleting members one by one leaves h consistent too. */
    for (int i = 0; i < N; i += 2) {
        struct dir_op del = {.type = TDM_REC_DIR_DELETE,
                             .kind = DIR_KIND_USER,
                             .name = names[i],
                             .expected_version = DIR_VERSION_ANY};
        assert_int_equal(run(s, &del), 0);
    }
    assert_int_equal(store_read_begin(s, &txn), 0);
    for (int i = 0; i < N; i++) {
        bool in_h = true;
        assert_int_equal(dir_is_member(store_handler_state(s), txn, "h", &all[i], &in_h), 0);
        assert_int_equal(in_h, i % 2 == 1);
    }
    mdb_txn_abort(txn);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/db", tmpdir);
    assert_int_equal(store_close(&s), 0);
    struct store_verify_options vo = {.tmp_dir = tmpdir, .handler = &dir_record_handler};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dir, &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_true(r.digests_match);
    store_verify_report_clear(&r);
}

/* ---- passwords ---- */

static int
verify_pw(struct store *s, const char *user, const char *pw)
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    int ret = dir_password_verify(store_handler_state(s), txn, user, pw);
    mdb_txn_abort(txn);
    return ret;
}

static void
test_passwords(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0, "{}"), 0);
    char hash[DIR_PASSWORD_HASH_MAX];
    assert_int_equal(dir_password_hash("correct horse", crypto_pwhash_OPSLIMIT_MIN,
                                       crypto_pwhash_MEMLIMIT_MIN, hash),
                     0);
    assert_memory_equal(hash, "$argon2id$", 10);
    assert_int_equal(verify_pw(s, "alice", "correct horse"), -EACCES); /* none set yet */
    struct dir_op op = {.type = TDM_REC_DIR_PASSWORD_SET, .name = "alice", .password_hash = hash};
    assert_int_equal(run(s, &op), 0);
    assert_int_equal(verify_pw(s, "alice", "correct horse"), 0);
    assert_int_equal(verify_pw(s, "alice", "wrong"), -EACCES);
    assert_int_equal(verify_pw(s, "bob", "x"), TDM_ENOTFOUND);
    op.name = "bob";
    assert_int_equal(run(s, &op), TDM_ENOTFOUND);
    /* A plaintext never reaches the log: the encoder and the store both refuse it. */
    op.name = "alice";
    op.password_hash = "correct horse";
    assert_int_equal(run(s, &op), TDM_EINVAL);
    static const uint8_t raw[] = {1, 8, 5, 0, 'a', 'l', 'i', 'c', 'e', 0, 3, 0, 'a', 'b', 'c', 0};
    assert_int_equal(store_commit(s, TDM_REC_DIR_PASSWORD_SET, raw, sizeof(raw), NULL, NULL),
                     TDM_EINVAL);
    /* Replacing the user's attributes keeps the password. */
    assert_int_equal(put(s, DIR_KIND_USER, "alice", DIR_VERSION_ANY, "{\"title\":\"x\"}"), 0);
    assert_int_equal(verify_pw(s, "alice", "correct horse"), 0);

    /* A server's key is its password; a user of the same name is another principal. */
    assert_int_equal(put(s, DIR_KIND_SERVER, "mbx1", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "mbx1", 0, "{}"), 0);
    op.kind = DIR_KIND_SERVER;
    op.name = "mbx1";
    op.password_hash = hash;
    assert_int_equal(run(s, &op), 0);
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    void *st = store_handler_state(s);
    assert_int_equal(dir_secret_verify(st, txn, DIR_KIND_SERVER, "mbx1", "correct horse"), 0);
    assert_int_equal(dir_secret_verify(st, txn, DIR_KIND_SERVER, "mbx1", "wrong"), -EACCES);
    assert_int_equal(dir_secret_verify(st, txn, DIR_KIND_USER, "mbx1", "correct horse"), -EACCES);
    assert_int_equal(dir_secret_verify(st, txn, DIR_KIND_GROUP, "admins", "x"), TDM_EINVAL);
    /* The stored string itself, for callers that verify off the transaction's thread. */
    char got[DIR_PASSWORD_HASH_MAX];
    assert_int_equal(dir_secret_hash(st, txn, DIR_KIND_SERVER, "mbx1", got), 0);
    assert_string_equal(got, hash);
    assert_int_equal(dir_secret_hash(st, txn, DIR_KIND_USER, "mbx1", got), -EACCES);
    assert_string_equal(got, "");
    assert_int_equal(dir_secret_hash(st, txn, DIR_KIND_SERVER, "nosuch", got), TDM_ENOTFOUND);
    assert_int_equal(dir_secret_hash(st, txn, DIR_KIND_SITE, "mbx1", got), TDM_EINVAL);
    mdb_txn_abort(txn);
    /* Nothing else has a password. */
    op.kind = DIR_KIND_GROUP;
    op.name = DIR_GROUP_ADMINS;
    assert_int_equal(run(s, &op), TDM_EINVAL);
    assert_int_equal(store_close(&s), 0);
}

/* ---- codec ---- */

/* ACL and membership changes are compare-and-set on the object's version. */
static void
test_acl_and_members_cas(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(bootstrap(s), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "bob", 0, "{}"), 0);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 0, "{}"), 0);
    uint64_t v = version_of(s, DIR_KIND_SITE, "s1");
    struct dir_acl_entry acl[] = {{{DIR_KIND_USER, "bob"}, DIR_RIGHT_READ}};
    struct dir_op op = {.type = TDM_REC_DIR_ACL_SET,
                        .kind = DIR_KIND_SITE,
                        .name = "s1",
                        .expected_version = v,
                        .acl = acl,
                        .n_acl = 1};
    assert_int_equal(run(s, &op), 0);
    /* A second writer that read the same version loses, and says so. */
    assert_int_equal(run(s, &op), TDM_ECONFLICT);
    op.expected_version = v + 1;
    assert_int_equal(run(s, &op), 0);
    /* Left unset (0) is a caller's mistake, caught before the log. */
    op.expected_version = 0;
    uint8_t *payload;
    size_t len;
    const char *err;
    assert_int_equal(dir_op_encode(&op, &payload, &len, &err), TDM_EINVAL);
    uint64_t g = version_of(s, DIR_KIND_GROUP, "admins");
    struct dir_principal m[] = {{DIR_KIND_USER, "bob"}};
    struct dir_op mem = {.type = TDM_REC_DIR_GROUP_MEMBERS,
                         .name = "admins",
                         .expected_version = g + 5,
                         .members = m,
                         .n_members = 1};
    assert_int_equal(run(s, &mem), TDM_ECONFLICT);
    mem.expected_version = g;
    assert_int_equal(run(s, &mem), 0);
    assert_int_equal(store_close(&s), 0);
}

/* ---- change journal ---- */

struct collected {
    size_t n;
    uint64_t seq[16];
    enum dir_kind kind[16];
    char name[16][32];
};

static int
collect_cb(void *ctx, const struct dir_change *ch)
{
    struct collected *c = ctx;
    assert_true(c->n < 16);
    c->seq[c->n] = ch->seq;
    c->kind[c->n] = ch->kind;
    snprintf(c->name[c->n], sizeof(c->name[0]), "%s", ch->name);
    c->n++;
    return 0;
}

static void
changes(struct store *s, uint64_t since, size_t max, struct collected *c, uint64_t *last_r,
        bool *reset_r)
{
    memset(c, 0, sizeof(*c));
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    assert_int_equal(
        dir_changes_since(store_handler_state(s), txn, since, max, collect_cb, c, last_r, reset_r),
        0);
    mdb_txn_abort(txn);
}

static void
test_change_journal(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(bootstrap(s), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0, "{}"), 0);
    /* A refused change takes no entry: nothing changed, nothing to invalidate. */
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0, "{}"), TDM_EEXIST);
    struct dir_op pw = {.type = TDM_REC_DIR_PASSWORD_SET,
                        .name = "alice",
                        .password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaA"};
    assert_int_equal(run(s, &pw), 0);
    struct dir_principal m[] = {{DIR_KIND_USER, "alice"}};
    assert_int_equal(members(s, DIR_GROUP_ADMINS, m, 1), 0);
    struct dir_op del = {.type = TDM_REC_DIR_DELETE,
                         .kind = DIR_KIND_USER,
                         .name = "alice",
                         .expected_version = DIR_VERSION_ANY};
    assert_int_equal(run(s, &del), 0);

    struct collected c;
    uint64_t last;
    bool reset;
    changes(s, 0, 100, &c, &last, &reset);
    assert_false(reset);
    assert_int_equal(c.n, 6);
    assert_int_equal(last, 6);
    const struct {
        enum dir_kind kind;
        const char *name;
    } want[] = {{DIR_KIND_GROUP, "admins"}, {DIR_KIND_GROUP, "servers"},
                {DIR_KIND_USER, "alice"},   {DIR_KIND_USER, "alice"},
                {DIR_KIND_GROUP, "admins"}, {DIR_KIND_USER, "alice"}};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(c.seq[i], i + 1);
        assert_int_equal(c.kind[i], want[i].kind);
        assert_string_equal(c.name[i], want[i].name);
    }
    /* Paging: max bounds a call and last is the next since. */
    changes(s, 2, 2, &c, &last, &reset);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.seq[0], 3);
    assert_int_equal(last, 4);
    changes(s, 6, 100, &c, &last, &reset);
    assert_int_equal(c.n, 0);
    assert_int_equal(last, 6);
    assert_false(reset);
    /* A reader ahead of the journal (another database) must reset. */
    changes(s, 99, 100, &c, &last, &reset);
    assert_true(reset);
    assert_int_equal(c.n, 0);
    assert_int_equal(last, 6);
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    uint64_t newest;
    assert_int_equal(dir_changes_last(store_handler_state(s), txn, &newest), 0);
    mdb_txn_abort(txn);
    assert_int_equal(newest, 6);
    assert_int_equal(store_close(&s), 0);
}

static void
count_failures_cb(void *ctx, int status, uint64_t lsn, const struct mail_result *result)
{
    (void)lsn;
    if (status != 0 || result->status != 0)
        (*(unsigned *)ctx)++;
}

/* Past DIR_CHANGES_KEEP entries the oldest go, and a reader that far behind is told to reset. */
static void
test_change_journal_trim(void **state)
{
    (void)state;
    struct store *s = open_db("db");
    assert_int_equal(bootstrap(s), 0);
    /* Each PUT of an existing object with ANY is one entry; commit asynchronously so the test
     * does not pay one fdatasync per entry. */
    uint8_t *payload;
    size_t len;
    const char *err;
    struct dir_op op = {.type = TDM_REC_DIR_PUT,
                        .kind = DIR_KIND_SITE,
                        .name = "dc1",
                        .expected_version = DIR_VERSION_ANY,
                        .attrs = "{}"};
    assert_int_equal(dir_op_encode(&op, &payload, &len, &err), 0);
    unsigned failures = 0;
    for (uint32_t i = 0; i < DIR_CHANGES_KEEP; i++)
        assert_int_equal(
            store_commit_async(s, TDM_REC_DIR_PUT, payload, len, count_failures_cb, &failures),
            0);
    free(payload);
    assert_int_equal(put(s, DIR_KIND_SITE, "dc2", 0, "{}"), 0);
    /* Callbacks run in LSN order, before the later blocking put returned. */
    assert_int_equal(failures, 0);
    uint64_t total = 2 + DIR_CHANGES_KEEP + 1;
    struct collected c;
    uint64_t last;
    bool reset;
    changes(s, 0, 1, &c, &last, &reset);
    assert_true(reset);
    assert_int_equal(last, total);
    /* The oldest kept is total - KEEP + 1: reading from just before it works. */
    changes(s, total - DIR_CHANGES_KEEP, 1, &c, &last, &reset);
    assert_false(reset);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.seq[0], total - DIR_CHANGES_KEEP + 1);
    changes(s, total - DIR_CHANGES_KEEP - 1, 1, &c, &last, &reset);
    assert_true(reset);
    changes(s, total - 1, 5, &c, &last, &reset);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.name[0], "dc2");
    assert_int_equal(store_close(&s), 0);
}

static void
roundtrip(const struct dir_op *op)
{
    uint8_t *p = NULL, *q = NULL;
    size_t n = 0, m = 0;
    const char *err = NULL;
    assert_int_equal(dir_op_encode(op, &p, &n, &err), 0);
    struct dir_decoded dec;
    assert_int_equal(dir_op_decode(op->type, p, n, &dec, &err), 0);
    assert_int_equal(dir_op_encode(&dec.op, &q, &m, &err), 0);
    assert_int_equal(n, m);
    assert_memory_equal(p, q, n);
    dir_decoded_clear(&dec);
    /* One byte short or one too many is refused. */
    assert_int_equal(dir_op_decode(op->type, p, n - 1, &dec, &err), TDM_EINVAL);
    uint8_t *longer = malloc(n + 1);
    assert_non_null(longer);
    memcpy(longer, p, n);
    longer[n] = 0;
    assert_int_equal(dir_op_decode(op->type, longer, n + 1, &dec, &err), TDM_EINVAL);
    longer[0] = 2; /* unknown format version */
    assert_int_equal(dir_op_decode(op->type, longer, n, &dec, &err), TDM_EINVAL);
    free(longer);
    free(p);
    free(q);
}

static void
test_codec(void **state)
{
    (void)state;
    struct dir_acl_entry acl[] = {{{DIR_KIND_USER, "b"}, DIR_RIGHT_READ},
                                  {{DIR_KIND_USER, "a"}, DIR_RIGHT_FULL},
                                  {{DIR_KIND_GROUP, "g"}, DIR_RIGHT_WRITE}};
    struct dir_principal m[] = {{DIR_KIND_USER, "z"}, {DIR_KIND_SERVER, "mx"}};
    char hash[DIR_PASSWORD_HASH_MAX];
    assert_int_equal(
        dir_password_hash("pw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN, hash), 0);
    struct dir_op ops[] = {
        {.type = TDM_REC_DIR_PUT,
         .kind = DIR_KIND_USER,
         .name = "u",
         .expected_version = 7,
         .attrs = "{\"title\":\"t\",\"display_name\":\"D\"}"},
        {.type = TDM_REC_DIR_DELETE, .kind = DIR_KIND_SITE, .name = "s", .expected_version = 1},
        {.type = TDM_REC_DIR_ACL_SET,
         .kind = DIR_KIND_SITE,
         .name = "s",
         .expected_version = 7,
         .acl = acl,
         .n_acl = 3},
        {.type = TDM_REC_DIR_PASSWORD_SET, .name = "u", .password_hash = hash},
        {.type = TDM_REC_DIR_GROUP_MEMBERS,
         .name = "g",
         .expected_version = DIR_VERSION_ANY,
         .members = m,
         .n_members = 2},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        roundtrip(&ops[i]);

    /* The decoder takes only the canonical form: unsorted entries and loose JSON are refused. */
    const char *err = NULL;
    struct dir_decoded dec;
    static const uint8_t sorted[] = {1, 1, 1, 0, 's', 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0,
                                     8, 1, 0, 'a', 0, 1, 8, 1, 0, 'b', 0, 1};
    assert_int_equal(dir_op_decode(TDM_REC_DIR_ACL_SET, sorted, sizeof(sorted), &dec, &err), 0);
    assert_int_equal(dec.op.expected_version, 7);
    dir_decoded_clear(&dec);
    static const uint8_t unsorted[] = {1, 1, 1, 0, 's', 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0,
                                       8, 1, 0, 'b', 0, 1, 8, 1, 0, 'a', 0, 1};
    assert_int_equal(dir_op_decode(TDM_REC_DIR_ACL_SET, unsorted, sizeof(unsorted), &dec, &err),
                     TDM_EINVAL);
    assert_string_equal(err, "acl: entries not strictly ascending");
    /* Version 0 ("must not exist") cannot be meant by an ACL change. */
    static const uint8_t zero[] = {1, 1, 1, 0, 's', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(dir_op_decode(TDM_REC_DIR_ACL_SET, zero, sizeof(zero), &dec, &err),
                     TDM_EINVAL);
    static const uint8_t loose[] = {1, 1, 1, 0, 's', 0, 0,   0,   0,   0,
                                    0, 0, 0, 0, 3,   0, '{', ' ', '}', 0};
    assert_int_equal(dir_op_decode(TDM_REC_DIR_PUT, loose, sizeof(loose), &dec, &err), TDM_EINVAL);
    static const uint8_t boot[] = {1};
    assert_int_equal(dir_op_decode(TDM_REC_DIR_BOOTSTRAP, boot, 1, &dec, &err), 0);
    dir_decoded_clear(&dec);
    assert_int_equal(dir_op_decode(TDM_REC_DIR_BOOTSTRAP + 40, boot, 1, &dec, &err), TDM_EINVAL);
}

/* ---- determinism ---- */

static void
feed(struct store *s)
{
    assert_int_equal(bootstrap(s), 0);
    assert_int_equal(put(s, DIR_KIND_SITE, "s1", 0, "{\"description\":\"x\"}"), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "alice", 0, "{\"addresses\":[\"a@x.test\"]}"), 0);
    assert_int_equal(put(s, DIR_KIND_USER, "bob", 0, "{\"addresses\":[\"a@x.test\"]}"), TDM_EEXIST);
    struct dir_principal m[] = {{DIR_KIND_USER, "alice"}};
    assert_int_equal(members(s, DIR_GROUP_ADMINS, m, 1), 0);
    struct dir_op pw = {.type = TDM_REC_DIR_PASSWORD_SET,
                        .name = "alice",
                        .password_hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"};
    assert_int_equal(run(s, &pw), 0);
}

static void
digest_of(struct store *s, uint8_t out[32])
{
    MDB_txn *txn;
    assert_int_equal(store_read_begin(s, &txn), 0);
    assert_int_equal(dir_record_handler.digest(store_handler_state(s), txn, out), 0);
    mdb_txn_abort(txn);
}

static void
test_determinism(void **state)
{
    (void)state;
    struct store *a = open_db("a"), *b = open_db("b");
    feed(a);
    feed(b);
    uint8_t da[32], db[32];
    digest_of(a, da);
    digest_of(b, db);
    assert_memory_equal(da, db, 32);
    assert_int_equal(put(b, DIR_KIND_SITE, "s2", 0, "{}"), 0);
    digest_of(b, db);
    assert_memory_not_equal(da, db, 32);
    assert_int_equal(store_close(&a), 0);
    assert_int_equal(store_close(&b), 0);

    /* verify replays the log through the handler into a scratch environment and agrees. */
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/a", tmpdir);
    struct store_verify_options vo = {.tmp_dir = tmpdir, .handler = &dir_record_handler};
    struct store_verify_report r;
    const char *err = NULL;
    assert_int_equal(store_verify(dir, &vo, &r, &err), 0);
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.decoded, r.records);
    assert_true(r.replay_compared);
    assert_true(r.digests_match);
    store_verify_report_clear(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schemas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_cas_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recipients_and_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_members_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codec, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acl_and_members_cas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_journal_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_determinism, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

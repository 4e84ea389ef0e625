/*
 * The admin API request decoder (src/proto/json/admin_request.c): a table of bodies, good and
 * bad, with the message each bad one must give; every good body fed split at every byte offset
 * (same result) and truncated at every byte offset (refused, never a crash); the limits.
 */
#include "proto/json/admin_request.h"

#include "lib/err.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct good_case {
    enum admin_req_type type;
    const char *body;
    const char *want; /* describe() of the decoded request */
};

/* One line that says everything a request holds, so a table can compare it. */
static char *
describe(const struct admin_req *r)
{
    static const char *const kinds[] = {"?", "user", "server", "group"};
    static const char *const rights[] = {"?", "read", "write", "full-control"};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    switch (r->type) {
    case ADMIN_REQ_OBJECT_PUT:
        fprintf(f, "put attrs=%s", r->attrs);
        if (r->has_version)
            fprintf(f, " version=%llu", (unsigned long long)r->version);
        break;
    case ADMIN_REQ_ACL_SET:
        fprintf(f, "acl");
        for (size_t i = 0; i < r->n_acl; i++)
            fprintf(f, " %s:%s=%s", kinds[r->acl[i].who.kind], r->acl[i].who.name,
                    rights[r->acl[i].right]);
        break;
    case ADMIN_REQ_ACL_GRANT:
        fprintf(f, "grant %s:%s=%s", kinds[r->principal.kind], r->principal.name, rights[r->right]);
        break;
    case ADMIN_REQ_ACL_REVOKE:
        fprintf(f, "revoke %s:%s", kinds[r->principal.kind], r->principal.name);
        break;
    case ADMIN_REQ_PASSWORD_SET:
        fprintf(f, "password %s", r->password);
        break;
    case ADMIN_REQ_MEMBERS_SET:
        fprintf(f, "members");
        for (size_t i = 0; i < r->n_members; i++)
            fprintf(f, " %s:%s", kinds[r->members[i].kind], r->members[i].name);
        break;
    case ADMIN_REQ_MEMBER_ADD:
    case ADMIN_REQ_MEMBER_REMOVE:
        fprintf(f, "%s %s:%s", r->type == ADMIN_REQ_MEMBER_ADD ? "add" : "remove",
                kinds[r->principal.kind], r->principal.name);
        break;
    case ADMIN_REQ_AUTH_VERIFY:
        fprintf(f, "verify %s%s/%s", r->verify_server ? "server:" : "", r->user, r->password);
        break;
    case ADMIN_REQ_COPY_SUSPEND:
        fprintf(f, "suspend [%s]", r->comment);
        break;
    }
    fclose(f);
    return buf;
}

static const struct good_case good[] = {
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{}}", "put attrs={}"},
    {ADMIN_REQ_OBJECT_PUT, " {\"attrs\" : {\"b\":1, \"a\":[\"x\"]}, \"version\": 0}\n",
     "put attrs={\"a\":[\"x\"],\"b\":1} version=0"},
    {ADMIN_REQ_OBJECT_PUT,
     "{\"version\":18446744073709551,\"attrs\":{\"display_name\":\"A\\u00e9\"}}",
     "put attrs={\"display_name\":\"A\xc3\xa9\"} version=18446744073709551"},
    {ADMIN_REQ_ACL_SET, "{\"acl\":[]}", "acl"},
    {ADMIN_REQ_ACL_SET,
     "{\"acl\":[{\"principal\":\"user:bob\",\"right\":\"read\"},"
     "{\"right\":\"full-control\",\"principal\":\"group:ops team\"},"
     "{\"principal\":\"server:mbx1\",\"right\":\"write\"}]}",
     "acl user:bob=read group:ops team=full-control server:mbx1=write"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:b\xc3\xa9\",\"right\":\"write\"}",
     "grant user:b\xc3\xa9=write"},
    {ADMIN_REQ_ACL_REVOKE, "{\"principal\":\"group:admins\"}", "revoke group:admins"},
    {ADMIN_REQ_PASSWORD_SET, "{\"password\":\"12345678\"}", "password 12345678"},
    {ADMIN_REQ_PASSWORD_SET, "{\"password\":\"with \\\"quote\\\" and \\\\\"}",
     "password with \"quote\" and \\"},
    {ADMIN_REQ_MEMBERS_SET, "{\"members\":[]}", "members"},
    {ADMIN_REQ_MEMBERS_SET, "{\"members\":[\"user:alice\",\"server:mbx1\",\"user:bob\"]}",
     "members user:alice server:mbx1 user:bob"},
    {ADMIN_REQ_MEMBER_ADD, "{\"member\":\"user:alice\"}", "add user:alice"},
    {ADMIN_REQ_MEMBER_REMOVE, "{\"member\":\"server:x:y\"}", "remove server:x:y"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"user\":\"alice\",\"password\":\"\"}", "verify alice/"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"password\":\"pw\",\"user\":\"a b\"}", "verify a b/pw"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"server\":\"mbx2\",\"password\":\"k\"}", "verify server:mbx2/k"},
    {ADMIN_REQ_COPY_SUSPEND, "{}", "suspend []"},
    {ADMIN_REQ_COPY_SUSPEND, "{\"comment\":\"disk swap, back at 14:00\"}",
     "suspend [disk swap, back at 14:00]"},
};

struct bad_case {
    enum admin_req_type type;
    const char *body;
    int err;
    const char *message; /* a substring the message must hold */
};

static const struct bad_case bad[] = {
    {ADMIN_REQ_OBJECT_PUT, "", TDM_EINVAL, "body is empty"},
    {ADMIN_REQ_OBJECT_PUT, " \r\n", TDM_EINVAL, "body is empty"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{}", TDM_EINVAL, "body is not valid JSON"},
    {ADMIN_REQ_OBJECT_PUT, "[]", TDM_EINVAL, "body must be a JSON object"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{}} {}", TDM_EINVAL, "body is not valid JSON"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{},\"attrs\":{}}", TDM_EINVAL, "duplicate"},
    {ADMIN_REQ_OBJECT_PUT, "{}", TDM_EINVAL, "missing member \"attrs\""},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":[]}", TDM_EINVAL, "attrs: must be a JSON object"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{},\"colour\":1}", TDM_EINVAL, "unknown member \"colour\""},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{},\"version\":-1}", TDM_EINVAL, "version: must be"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{},\"version\":\"3\"}", TDM_EINVAL, "version: must be"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{},\"version\":1.5}", TDM_EINVAL, "version: must be"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{\"a\":\"\\u0000\"}}", TDM_EINVAL, "body is not valid JSON"},
    {ADMIN_REQ_OBJECT_PUT, "{\"attrs\":{\"a\":\"\xff\"}}", TDM_EINVAL, "body is not valid JSON"},
    {ADMIN_REQ_OBJECT_PUT, "{\"\\u0001\\u0002\":1,\"attrs\":{}}", TDM_EINVAL,
     "unknown member \"??\""},
    {ADMIN_REQ_ACL_SET, "{\"acl\":{}}", TDM_EINVAL, "acl: must be an array"},
    {ADMIN_REQ_ACL_SET, "{\"acl\":[1]}", TDM_EINVAL, "acl[0]: must be an object"},
    {ADMIN_REQ_ACL_SET, "{\"acl\":[{\"principal\":\"user:a\",\"right\":\"read\",\"x\":1}]}",
     TDM_EINVAL, "acl[0]: unknown member \"x\""},
    {ADMIN_REQ_ACL_SET, "{\"acl\":[{\"principal\":\"user:a\"}]}", TDM_EINVAL,
     "acl[0]: missing member \"right\""},
    {ADMIN_REQ_ACL_SET,
     "{\"acl\":[{\"principal\":\"user:a\",\"right\":\"read\"},"
     "{\"principal\":\"role:a\",\"right\":\"read\"}]}",
     TDM_EINVAL, "acl[1].principal: \"role:a\" is not a principal"},
    {ADMIN_REQ_ACL_SET, "{\"acl\":[{\"principal\":\"user:a\",\"right\":\"admin\"}]}", TDM_EINVAL,
     "acl[0].right: must be one of"},
    {ADMIN_REQ_ACL_SET,
     "{\"acl\":[{\"principal\":\"user:a\",\"right\":\"read\"},"
     "{\"principal\":\"user:a\",\"right\":\"write\"}]}",
     TDM_EINVAL, "acl[1].principal: the same principal as acl[0]"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:\",\"right\":\"read\"}", TDM_EINVAL,
     "principal: \"user:\" is not a principal"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:a/b\",\"right\":\"read\"}", TDM_EINVAL,
     "is not a principal"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:a\\tb\",\"right\":\"read\"}", TDM_EINVAL,
     "is not a principal"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":7,\"right\":\"read\"}", TDM_EINVAL,
     "principal: must be a string"},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:a\"}", TDM_EINVAL, "missing member \"right\""},
    {ADMIN_REQ_ACL_GRANT, "{\"principal\":\"user:a\",\"right\":null}", TDM_EINVAL,
     "right: must be one of"},
    {ADMIN_REQ_ACL_REVOKE, "{\"principal\":\"user:a\",\"right\":\"read\"}", TDM_EINVAL,
     "unknown member \"right\""},
    {ADMIN_REQ_PASSWORD_SET, "{\"password\":\"1234567\"}", TDM_EINVAL,
     "password: must be a string of 8 to 1024 bytes"},
    {ADMIN_REQ_PASSWORD_SET, "{\"password\":12345678}", TDM_EINVAL, "password: must be"},
    {ADMIN_REQ_PASSWORD_SET, "{}", TDM_EINVAL, "missing member \"password\""},
    {ADMIN_REQ_MEMBERS_SET, "{\"members\":\"user:a\"}", TDM_EINVAL, "members: must be an array"},
    {ADMIN_REQ_MEMBERS_SET, "{\"members\":[\"user:a\",\"group:b\"]}", TDM_EINVAL,
     "members[1]: a group cannot be a member"},
    {ADMIN_REQ_MEMBERS_SET, "{\"members\":[\"user:a\",\"user:a\"]}", TDM_EINVAL,
     "members[1]: the same member as members[0]"},
    {ADMIN_REQ_MEMBER_ADD, "{\"member\":\"group:a\"}", TDM_EINVAL, "member: a group cannot"},
    {ADMIN_REQ_MEMBER_REMOVE, "{\"members\":\"user:a\"}", TDM_EINVAL, "unknown member \"members\""},
    {ADMIN_REQ_AUTH_VERIFY, "{\"user\":\"alice\"}", TDM_EINVAL, "missing member \"password\""},
    {ADMIN_REQ_AUTH_VERIFY, "{\"server\":\"a\",\"user\":\"b\",\"password\":\"k\"}", TDM_EINVAL,
     "not both"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"server\":\"a/b\",\"password\":\"k\"}", TDM_EINVAL,
     "server: must be a server name"},
    {ADMIN_REQ_COPY_SUSPEND, "{\"comment\":1}", TDM_EINVAL, "comment: must be a string"},
    {ADMIN_REQ_COPY_SUSPEND, "{\"comment\":\"a\\nb\"}", TDM_EINVAL,
     "comment: control characters are not allowed"},
    {ADMIN_REQ_COPY_SUSPEND, "{\"comment\":\"a\\u007fb\"}", TDM_EINVAL,
     "comment: control characters are not allowed"},
    {ADMIN_REQ_COPY_SUSPEND, "{\"reason\":\"x\"}", TDM_EINVAL, "reason"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"user\":\"a/b\",\"password\":\"x\"}", TDM_EINVAL,
     "user: must be a user name"},
    {ADMIN_REQ_AUTH_VERIFY, "{\"user\":\"user:a\",\"password\":1}", TDM_EINVAL,
     "password: must be a string"},
};

static void
test_good_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct admin_req req;
        const char *error = NULL;
        int ret = admin_req_decode(good[i].type, good[i].body, strlen(good[i].body), &req, &error);
        if (ret != 0)
            fail_msg("good[%zu] %s: %d %s", i, good[i].body, ret, error);
        char *d = describe(&req);
        if (strcmp(d, good[i].want) != 0)
            fail_msg("good[%zu]: got \"%s\", want \"%s\"", i, d, good[i].want);
        free(d);
        admin_req_clear(&req);
    }
}

/* Fed in two pieces split at every offset, and byte by byte: the same request every time. */
static void
test_good_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t len = strlen(good[i].body);
        for (size_t cut = 0; cut <= len + 1; cut++) {
            struct admin_req_parser *p;
            const char *error = NULL;
            assert_int_equal(admin_req_parser_new(good[i].type, &p), 0);
            if (cut <= len) {
                assert_int_equal(admin_req_feed(p, good[i].body, cut, &error), 0);
                assert_int_equal(admin_req_feed(p, good[i].body + cut, len - cut, &error), 0);
            } else {
                for (size_t b = 0; b < len; b++)
                    assert_int_equal(admin_req_feed(p, good[i].body + b, 1, &error), 0);
            }
            struct admin_req req;
            assert_int_equal(admin_req_finish(p, &req, &error), 0);
            char *d = describe(&req);
            if (strcmp(d, good[i].want) != 0)
                fail_msg("good[%zu] cut %zu: got \"%s\"", i, cut, d);
            free(d);
            admin_req_clear(&req);
            admin_req_parser_free(&p);
            assert_null(p);
        }
    }
}

/* Every proper prefix of a good body (up to its last '}') is refused with a message. */
static void
test_good_truncated(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *body = good[i].body;
        size_t end = (size_t)(strrchr(body, '}') - body);
        for (size_t cut = 0; cut <= end; cut++) {
            /* An exact-size copy, so ASan sees any read past the end. */
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, body, cut);
            struct admin_req req;
            const char *error = NULL;
            int ret = admin_req_decode(good[i].type, copy, cut, &req, &error);
            if (ret != TDM_EINVAL)
                fail_msg("good[%zu] cut at %zu: got %d", i, cut, ret);
            assert_non_null(error);
            assert_true(strlen(error) > 0);
            free(copy);
        }
    }
}

static void
test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct admin_req req;
        const char *error = NULL;
        int ret = admin_req_decode(bad[i].type, bad[i].body, strlen(bad[i].body), &req, &error);
        if (ret != bad[i].err || !error || !strstr(error, bad[i].message))
            fail_msg("bad[%zu] %s: got %d \"%s\", want %d \"...%s...\"", i, bad[i].body, ret,
                     error ? error : "(null)", bad[i].err, bad[i].message);
        /* Refused means nothing to clear: the struct is all zero. */
        assert_null(req.attrs);
        assert_null(req.acl);
        assert_null(req.members);
        assert_null(req.principal.name);
        assert_null(req.password);
        assert_null(req.user);
    }
}

static char *
repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * n + strlen(tail);
    char *s = malloc(len + 1);
    assert_non_null(s);
    strcpy(s, head);
    char *p = s + strlen(head);
    for (size_t i = 0; i < n; i++, p += strlen(unit))
        memcpy(p, unit, strlen(unit));
    strcpy(p, tail);
    return s;
}

static void
test_depth(void **state)
{
    (void)state;
    const char *error = NULL;
    struct admin_req req;
    /* 32 levels: the body and attrs are two, then 30 nested arrays. Accepted. */
    char *open = repeat("{\"attrs\":{\"a\":", "[", 30, "");
    char *ok = repeat(open, "]", 30, "}}");
    assert_int_equal(admin_req_decode(ADMIN_REQ_OBJECT_PUT, ok, strlen(ok), &req, &error), 0);
    admin_req_clear(&req);
    /* 33: refused while feeding, before the JSON parser sees any of it. */
    char *open2 = repeat("{\"attrs\":{\"a\":", "[", 31, "");
    struct admin_req_parser *p;
    assert_int_equal(admin_req_parser_new(ADMIN_REQ_OBJECT_PUT, &p), 0);
    assert_int_equal(admin_req_feed(p, open2, strlen(open2), &error), TDM_EINVAL);
    assert_non_null(strstr(error, "deeper than 32"));
    /* Sticky. */
    assert_int_equal(admin_req_feed(p, "]", 1, &error), TDM_EINVAL);
    assert_int_equal(admin_req_finish(p, &req, &error), TDM_EINVAL);
    assert_non_null(strstr(error, "deeper than 32"));
    admin_req_parser_free(&p);
    /* Brackets inside strings, escaped quotes included, do not count. */
    char *str = repeat("{\"attrs\":{\"a\":\"\\\"", "[{", 40, "\"}}");
    assert_int_equal(admin_req_decode(ADMIN_REQ_OBJECT_PUT, str, strlen(str), &req, &error), 0);
    admin_req_clear(&req);
    free(open);
    free(ok);
    free(open2);
    free(str);
}

static void
test_size(void **state)
{
    (void)state;
    const char *error = NULL;
    struct admin_req req;
    /* Exactly the limit: accepted (padding with spaces inside the body). */
    char *body = malloc(ADMIN_REQ_BODY_MAX + 1);
    memset(body, ' ', ADMIN_REQ_BODY_MAX);
    memcpy(body, "{\"attrs\":{}}", 12);
    assert_int_equal(admin_req_decode(ADMIN_REQ_OBJECT_PUT, body, ADMIN_REQ_BODY_MAX, &req, &error),
                     0);
    admin_req_clear(&req);
    /* One more byte, in a second feed: TDM_ELIMIT, sticky. */
    struct admin_req_parser *p;
    assert_int_equal(admin_req_parser_new(ADMIN_REQ_OBJECT_PUT, &p), 0);
    assert_int_equal(admin_req_feed(p, body, ADMIN_REQ_BODY_MAX, &error), 0);
    assert_int_equal(admin_req_feed(p, " ", 1, &error), TDM_ELIMIT);
    assert_non_null(strstr(error, "larger than 1048576"));
    assert_int_equal(admin_req_finish(p, &req, &error), TDM_ELIMIT);
    admin_req_parser_free(&p);
    free(body);

    /* Count limits name the member. */
    char *acl = repeat("{\"acl\":[", "{\"principal\":\"user:a\",\"right\":\"read\"},", 256,
                       "{\"principal\":\"user:b\",\"right\":\"read\"}]}");
    assert_int_equal(admin_req_decode(ADMIN_REQ_ACL_SET, acl, strlen(acl), &req, &error),
                     TDM_EINVAL);
    assert_non_null(strstr(error, "acl: 257 entries"));
    free(acl);
    char *m = repeat("{\"members\":[", "\"user:a\",", 10000, "\"user:b\"]}");
    assert_int_equal(admin_req_decode(ADMIN_REQ_MEMBERS_SET, m, strlen(m), &req, &error),
                     TDM_EINVAL);
    assert_non_null(strstr(error, "members: 10001 entries"));
    free(m);
}

static void
test_names(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', sizeof(name));
    assert_true(admin_req_name_ok(name, 255));
    assert_false(admin_req_name_ok(name, 256));
    assert_false(admin_req_name_ok(name, 0));
    assert_true(admin_req_name_ok("a b:c", 5));
    assert_false(admin_req_name_ok("a/b", 3));
    assert_false(admin_req_name_ok("a\x7f", 2));
    assert_false(admin_req_name_ok("a\0b", 3));
    assert_int_equal(admin_req_right_parse("full-control"), ADMIN_RIGHT_FULL);
    assert_int_equal(admin_req_right_parse("Read"), 0);
    struct admin_req_principal who;
    assert_int_equal(admin_req_principal_parse("server:mbx1", &who), 0);
    assert_int_equal(who.kind, ADMIN_PRINCIPAL_SERVER);
    assert_string_equal(who.name, "mbx1");
    free(who.name);
    assert_int_equal(admin_req_principal_parse("users:a", &who), TDM_EINVAL);
    assert_null(who.name);
    /* The password limit is in bytes, at both ends. */
    char pw[1100], letters[1030];
    memset(letters, 'p', sizeof(letters));
    struct admin_req req;
    const char *error;
    for (size_t n = 1023; n <= 1025; n++) {
        snprintf(pw, sizeof(pw), "{\"password\":\"%.*s\"}", (int)n, letters);
        int ret = admin_req_decode(ADMIN_REQ_PASSWORD_SET, pw, strlen(pw), &req, &error);
        assert_int_equal(ret, n <= 1024 ? 0 : TDM_EINVAL);
        admin_req_clear(&req);
    }
    assert_int_equal(admin_req_parser_new(0, &(struct admin_req_parser *){NULL}), TDM_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_whole),     cmocka_unit_test(test_good_split),
        cmocka_unit_test(test_good_truncated), cmocka_unit_test(test_bad),
        cmocka_unit_test(test_depth),          cmocka_unit_test(test_size),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

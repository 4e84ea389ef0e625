/*
 * The IMAP parser and writer when memory runs out (src/proto/imap/): every allocation made
 * while a client stream is parsed is made to fail in turn (malloc, calloc and realloc are
 * wrapped at link time). The feed must then return -ENOMEM and keep returning it, free
 * everything (LeakSanitizer checks at exit), and what came out before the failure must be a
 * prefix of what a run without failure gives: running out of memory may end a connection,
 * never invent or reorder a command. The writer's error must be sticky the same way.
 */
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);

static bool armed;
static long fail_at = -1; /* the allocation (counted from 0 while armed) that fails */
static long count;

static bool
fail_now(void)
{
    return armed && count++ == fail_at;
}

void *
__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}

void *
__wrap_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : __real_calloc(k, n);
}

void *
__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}

/* Commands with literals, a SEARCH tree, an APPEND of two messages, a refusal that skips a
 * literal, and a raw line: every allocation site of the parser is on this path. */
static const char stream[] =
    "a LOGIN {3}\r\njoe {6+}\r\nsecret\r\n"
    "b UID SEARCH RETURN (MIN) CHARSET UTF-8 OR (FROM x SINCE 1-Feb-1994) NOT 1:3,5:*\r\n"
    "c UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>) (CHANGEDSINCE 5)\r\n"
    "d APPEND {5}\r\nINBOX (\\Seen) {5+}\r\nhello \"1-Jan-2020 00:00:00 +0000\" {3+}\r\nabc\r\n"
    "e FOO {4+}\r\nskip me\r\n"
    "f LIST (SUBSCRIBED) \"\" (\"INBOX\" \"%\") RETURN (STATUS (MESSAGES))\r\n"
    "g IDLE\r\nDONE\r\n"
    "h SELECT INBOX (QRESYNC (1 2 1:9 (1 2)))\r\n";

struct transcript {
    char text[8192];
    size_t len;
    int rc; /* 0 when the stream ran to its end, else the error */
};

static void
add(struct transcript *t, const char *s, size_t n)
{
    assert_true(t->len + n + 1 < sizeof(t->text));
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = '\0';
}

static void
run(struct transcript *t)
{
    memset(t, 0, sizeof(*t));
    count = 0;
    armed = true;
    struct imap_parser *p;
    int rc = imap_parser_new(&imap_parser_default_limits, &p);
    if (rc < 0) {
        armed = false;
        t->rc = rc;
        return;
    }
    size_t off = 0, len = sizeof(stream) - 1;
    for (;;) {
        struct imap_parser_out out;
        rc = imap_parser_feed(p, (const uint8_t *)stream + off, len - off, &out);
        if (rc < 0) {
            assert_int_equal(rc, -ENOMEM);
            /* sticky */
            assert_int_equal(imap_parser_feed(p, (const uint8_t *)"x NOOP\r\n", 8, &out), -ENOMEM);
            t->rc = rc;
            break;
        }
        off += out.used;
        if (rc == IMAP_ITEM_NEED_MORE)
            break;
        armed = false; /* the test's own formatting is not under test */
        switch (rc) {
        case IMAP_ITEM_COMMAND: {
            struct imap_buf b = IMAP_BUF_INIT;
            assert_int_equal(imap_command_format(out.cmd, &b), 0);
            add(t, b.data, b.len);
            imap_buf_free(&b);
            if (out.cmd->cmd == IMAP_CMD_IDLE)
                imap_parser_expect_line(p);
            imap_command_free(&out.cmd);
            break;
        }
        case IMAP_ITEM_CONTINUE:
            add(t, "+\n", 2);
            break;
        case IMAP_ITEM_LITERAL_DATA:
            add(t, (const char *)out.data, out.len);
            add(t, "\n", 1);
            break;
        case IMAP_ITEM_ERROR:
            add(t, out.response, strlen(out.response));
            break;
        case IMAP_ITEM_LINE:
            add(t, (const char *)out.data, out.len);
            add(t, "\n", 1);
            break;
        }
        armed = true;
    }
    armed = false;
    imap_parser_free(&p);
}

static void
test_parser_nomem(void **state)
{
    (void)state;
    static struct transcript base, t;
    fail_at = -1;
    run(&base);
    assert_int_equal(base.rc, 0);
    assert_non_null(strstr(base.text, "h SELECT"));
    long total = count;
    assert_true(total > 10);
    for (fail_at = 0; fail_at < total; fail_at++) {
        run(&t);
        if (t.rc != -ENOMEM)
            fail_msg("allocation %ld of %ld failed unnoticed", fail_at, total);
        assert_true(t.len <= base.len);
        assert_memory_equal(t.text, base.text, t.len);
    }
    fail_at = -1;
}

static void
test_writer_nomem(void **state)
{
    (void)state;
    static const char *const attrs[] = {"\\HasNoChildren"};
    for (fail_at = 0;; fail_at++) {
        struct imap_buf b = IMAP_BUF_INIT;
        count = 0;
        armed = true;
        imap_write_list(&b, false, attrs, 1, '/', "Entw\xc3\xbcrfe", true, "Caf\xc3\xa9",
                        IMAP_WRITE_REV1);
        imap_write_astring(&b, "x y", 3, IMAP_WRITE_REV1);
        armed = false;
        long used = count;
        if (fail_at >= used) {
            assert_int_equal(imap_buf_error(&b), 0);
            imap_buf_free(&b);
            break;
        }
        assert_int_equal(imap_buf_error(&b), -ENOMEM);
        imap_buf_free(&b);
    }
    fail_at = -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_nomem),
        cmocka_unit_test(test_writer_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

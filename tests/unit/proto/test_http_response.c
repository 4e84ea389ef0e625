/*
 * The HTTP/1.1 response parser (src/proto/http/http_response.c). Every case is fed whole, then
 * split in two at every byte offset, then one byte at a time, and must give the same status,
 * header, body and outcome each way: a parser that only works when a read happens to return
 * the whole response is the bug this catches.
 */
#include "proto/http/http_response.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BODY_MAX 4096

struct result {
    int rc; /* HTTP_RESPONSE_END or the error */
    int heads;
    int status;
    char reason[64];
    char ctype[64]; /* Content-Type, "" when absent */
    int64_t content_length;
    char body[BODY_MAX];
    size_t body_len;
    char error[200];
};

static const struct http_response_limits default_limits = {.max_head = 1024, .max_body = 1024};

/* Feeds one piece; returns false once the parser has failed. */
static bool
feed_piece(struct http_response *p, const uint8_t *in, size_t len, struct result *res)
{
    size_t off = 0;
    for (;;) {
        struct http_response_out out;
        const char *err = NULL;
        int r = http_response_feed(p, in + off, len - off, &out, &err);
        if (r < 0) {
            assert_non_null(err);
            res->rc = r;
            snprintf(res->error, sizeof(res->error), "%s", err);
            return false;
        }
        assert_true(out.used <= len - off);
        switch (r) {
        case HTTP_RESPONSE_HEAD: {
            res->heads++;
            res->status = http_response_status(p);
            snprintf(res->reason, sizeof(res->reason), "%s", http_response_reason(p));
            const char *ct = http_response_header(p, "content-type");
            snprintf(res->ctype, sizeof(res->ctype), "%s", ct ? ct : "");
            res->content_length = http_response_content_length(p);
            break;
        }
        case HTTP_RESPONSE_BODY:
            /* Zero-copy: the body lies inside what this call was given. */
            assert_true(out.body >= in + off && out.body + out.body_len <= in + len);
            assert_true(out.body_len > 0);
            assert_true(res->body_len + out.body_len <= BODY_MAX);
            memcpy(res->body + res->body_len, out.body, out.body_len);
            res->body_len += out.body_len;
            break;
        case HTTP_RESPONSE_END:
            res->rc = HTTP_RESPONSE_END;
            if (off + out.used == len)
                return true;
            break;
        case HTTP_RESPONSE_NEED_MORE:
            assert_int_equal(off + out.used, len);
            return true;
        default:
            fail_msg("unexpected item %d", r);
        }
        off += out.used;
    }
}

/* Feeds text cut at the offsets in cuts[0..n_cuts) (ascending), then the end of input. */
static void
run(const struct http_response_limits *lim, const char *text, size_t len, const size_t *cuts,
    size_t n_cuts, struct result *res)
{
    memset(res, 0, sizeof(*res));
    res->content_length = -2;
    struct http_response *p = NULL;
    assert_int_equal(http_response_new(lim, &p), 0);
    /* Each piece gets its own heap copy, so ASan catches a read past its end and a body
     * pointer kept from an earlier piece. */
    size_t start = 0;
    bool ok = true;
    for (size_t i = 0; i <= n_cuts && ok; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        uint8_t *piece = malloc(end - start + 1);
        assert_non_null(piece);
        memcpy(piece, text + start, end - start);
        ok = feed_piece(p, piece, end - start, res);
        free(piece);
        start = end;
    }
    if (ok) {
        const char *err = NULL;
        int r = http_response_eof(p, &err);
        res->rc = r;
        if (r < 0)
            snprintf(res->error, sizeof(res->error), "%s", err);
        else
            assert_int_equal(r, HTTP_RESPONSE_END);
    }
    /* The first error is sticky. */
    if (res->rc < 0) {
        struct http_response_out out;
        const char *err = NULL;
        assert_int_equal(http_response_feed(p, (const uint8_t *)"x", 1, &out, &err), res->rc);
        assert_string_equal(err, res->error);
    }
    http_response_free(&p);
    assert_null(p);
}

static void
assert_same(const struct result *a, const struct result *b, const char *how)
{
    if (a->rc != b->rc || a->heads != b->heads || a->status != b->status ||
        strcmp(a->reason, b->reason) != 0 || strcmp(a->ctype, b->ctype) != 0 ||
        a->content_length != b->content_length || a->body_len != b->body_len ||
        memcmp(a->body, b->body, a->body_len) != 0 || strcmp(a->error, b->error) != 0)
        fail_msg("%s: rc %d/%d status %d/%d body %zu/%zu error \"%s\"/\"%s\"", how, a->rc, b->rc,
                 a->status, b->status, a->body_len, b->body_len, a->error, b->error);
}

/* Whole, split in two at every offset, and byte by byte: all must agree with whole. */
static void
run_all_splits(const struct http_response_limits *lim, const char *text, size_t len,
               struct result *whole)
{
    run(lim, text, len, NULL, 0, whole);
    struct result *split = malloc(sizeof(*split));
    assert_non_null(split);
    for (size_t cut = 0; cut <= len; cut++) {
        run(lim, text, len, &cut, 1, split);
        char how[64];
        snprintf(how, sizeof(how), "split at %zu", cut);
        assert_same(whole, split, how);
    }
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    run(lim, text, len, cuts, len, split);
    assert_same(whole, split, "byte by byte");
    free(cuts);
    free(split);
}

/* ---- responses that parse ------------------------------------------------------------------ */

struct good {
    const char *name;
    const char *text;
    int status;
    const char *reason;
    const char *ctype;
    int64_t content_length;
    const char *body;
};

#define JSON_OK "{\"ok\":true}"

static const struct good goods[] = {
    {"content-length",
     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n" JSON_OK, 200,
     "OK", "application/json", 11, JSON_OK},
    {"chunked with extension and trailer",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-ndjson\r\n\r\n"
     "5;name=value\r\nhello\r\nA\r\n, world!\n\n\r\n0\r\nX-Trailer: yes\r\n\r\n",
     200, "OK", "application/x-ndjson", -1, "hello, world!\n\n"},
    {"chunked, upper-case hex, leading zeros, no trailer",
     "HTTP/1.1 201 Created\r\ntransfer-encoding: Chunked\r\n\r\n"
     "0001\r\na\r\n0F\r\n0123456789abcde\r\n000\r\n\r\n",
     201, "Created", "", -1, "a0123456789abcde"},
    {"interim 100 Continue is skipped",
     "HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 409 Conflict\r\nContent-Length: 2\r\n\r\n{}",
     409, "Conflict", "", 2, "{}"},
    {"204 has no body whatever Content-Length says",
     "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, "No Content", "", 0, ""},
    {"body delimited by close", "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
     200, "OK", "text/plain", -1, "until close"},
    {"no reason phrase and no space", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 404, "", "", 0,
     ""},
    {"empty reason phrase", "HTTP/1.1 500 \r\nContent-Length: 1\r\n\r\nx", 500, "", "", 1, "x"},
    {"white space around values, name case",
     "HTTP/1.1 403 Forbidden\r\nCONTENT-TYPE: \t application/json \t\r\ncontent-length:2\r\n\r\n"
     "[]",
     403, "Forbidden", "application/json", 2, "[]"},
    {"equal duplicate Content-Length",
     "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200, "OK", "", 3,
     "abc"},
    {"empty header value and obs-text in reason",
     "HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\nX-Empty:\r\nContent-Length: 1\r\n\r\n!", 200,
     "\xc3\xa9t\xc3\xa9", "", 1, "!"},
};

static void
test_good(void **state)
{
    (void)state;
    struct result *whole = malloc(sizeof(*whole));
    assert_non_null(whole);
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        const struct good *g = &goods[i];
        run_all_splits(&default_limits, g->text, strlen(g->text), whole);
        if (whole->rc != HTTP_RESPONSE_END)
            fail_msg("%s: rc %d: %s", g->name, whole->rc, whole->error);
        assert_int_equal(whole->heads, 1);
        assert_int_equal(whole->status, g->status);
        assert_string_equal(whole->reason, g->reason);
        assert_string_equal(whole->ctype, g->ctype);
        assert_int_equal(whole->content_length, g->content_length);
        assert_int_equal(whole->body_len, strlen(g->body));
        assert_memory_equal(whole->body, g->body, whole->body_len);
    }
    free(whole);
}

/* ---- responses that are refused, at any split --------------------------------------------- */

struct bad {
    const char *text;
    size_t len; /* 0: strlen */
    int rc;
    const char *error_part; /* a substring of the message */
};

static const struct bad bads[] = {
    {"HTTP/2 200 OK\r\n\r\n", 0, TDM_EINVAL, "not an HTTP/1.x status line"},
    /* Not HTTP at all, and never sending CRLF CRLF: refused from the first bytes, without
     * waiting for a head that will not come. */
    {"SSH-2.0-OpenSSH_9.2", 0, TDM_EINVAL, "not an HTTP/1.x status line"},
    {"* OK IMAP4rev1 ready", 0, TDM_EINVAL, "not an HTTP/1.x status line"},
    {"HTTP/1", 0, TDM_EINVAL, "in the middle of the response head"},
    {"HTTP/1.1 2000 OK\r\n\r\n", 0, TDM_EINVAL, "no space after the status code"},
    {"HTTP/1.1 20x OK\r\n\r\n", 0, TDM_EINVAL, "three digits"},
    {"HTTP/1.1 600 Odd\r\n\r\n", 0, TDM_EINVAL, "out of range"},
    {"HTTP/1.1 099 Odd\r\n\r\n", 0, TDM_EINVAL, "out of range"},
    {"HTTP/1.1 101 Switching\r\n\r\n", 0, TDM_EINVAL, "never asked for"},
    {"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 0, TDM_EINVAL, "does not end in CRLF"},
    {"HTTP/1.1 200 O\rK\r\n\r\n", 0, TDM_EINVAL, "bare CR"},
    {"HTTP/1.1 200 OK\r\nX-A: 1\r\n continued\r\n\r\n", 0, TDM_EINVAL, "line folding"},
    {"HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n", 0, TDM_EINVAL, "bad character in the name"},
    {"HTTP/1.1 200 OK\r\n: 1\r\n\r\n", 0, TDM_EINVAL, "no \"name:\""},
    {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", 0, TDM_EINVAL, "no \"name:\""},
    {"HTTP/1.1 200 OK\r\nX-A: a\x01z\r\n\r\n", 0, TDM_EINVAL, "control character"},
    {"HTTP/1.1 200 OK\r\nX-A: a\0z\r\n\r\n", 29, TDM_EINVAL, "NUL byte"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, TDM_EINVAL, "only chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     TDM_EINVAL, "only chunked"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 0, TDM_EINVAL,
     "ambiguous"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 0, TDM_EINVAL,
     "two different"},
    {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0, TDM_EINVAL, "not a length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n", 0, TDM_EINVAL, "not a length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", 0, TDM_EINVAL, "not a length"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n", 0, TDM_EINVAL,
     "not a length"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, TDM_EINVAL,
     "not hexadecimal"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\na\r\n0\r\n\r\n", 0, TDM_EINVAL,
     "junk after"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\na\r\n0\r\n\r\n", 0, TDM_EINVAL,
     "chunk size line does not end in CRLF"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", 0, TDM_EINVAL,
     "not followed by CRLF"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a\x01\r\na\r\n0\r\n\r\n", 0,
     TDM_EINVAL, "control character in a chunk extension"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n", 0, TDM_EINVAL,
     "trailer line does not end in CRLF"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \r1\r\n\r\n", 0, TDM_EINVAL,
     "bare CR in a trailer"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", 0, TDM_EINVAL, "1 bytes after the end"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, TDM_EINVAL,
     "closed in the middle of the body"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", 0, TDM_EINVAL,
     "closed in the middle of the body"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", 0, TDM_EINVAL,
     "in the middle of the response head"},
    {"", 0, TDM_EINVAL, "closed without a response"},
    /* Limits (default_limits: 1024-byte head, 1024-byte body). */
    {"HTTP/1.1 200 OK\r\nContent-Length: 1025\r\n\r\n", 0, TDM_ELIMIT, "over the limit of 1024"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n", 0, TDM_EINVAL,
     "closed in the middle of the body"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n", 0, TDM_ELIMIT,
     "over the limit of 1024"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 0, TDM_ELIMIT,
     "more than 15 hex digits"},
};

static void
test_bad(void **state)
{
    (void)state;
    struct result *whole = malloc(sizeof(*whole));
    assert_non_null(whole);
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        const struct bad *b = &bads[i];
        size_t len = b->len ? b->len : strlen(b->text);
        run_all_splits(&default_limits, b->text, len, whole);
        if (whole->rc != b->rc || !strstr(whole->error, b->error_part))
            fail_msg("case %zu: want %d \"%s\", got %d \"%s\"", i, b->rc, b->error_part, whole->rc,
                     whole->error);
    }
    free(whole);
}

/* ---- limits that need long inputs ---------------------------------------------------------- */

/* Appends fmt to buf at *len. */
static void add(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < size - *len);
    *len += (size_t)n;
}

static void
test_head_limit(void **state)
{
    (void)state;
    /* Exactly max_head bytes parses; one more byte of header is refused. */
    struct http_response_limits lim = {.max_head = 64, .max_body = 0};
    char text[128];
    const char *fixed = "HTTP/1.1 200 OK\r\nX: \r\nContent-Length: 0\r\n\r\n";
    size_t pad = 64 - strlen(fixed);
    size_t len = 0;
    add(text, sizeof(text), &len, "HTTP/1.1 200 OK\r\nX: %.*s\r\nContent-Length: 0\r\n\r\n",
        (int)pad, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(len, 64);
    struct result *res = malloc(sizeof(*res));
    assert_non_null(res);
    run_all_splits(&lim, text, len, res);
    assert_int_equal(res->rc, HTTP_RESPONSE_END);
    len = 0;
    add(text, sizeof(text), &len, "HTTP/1.1 200 OK\r\nX: %.*s\r\nContent-Length: 0\r\n\r\n",
        (int)pad + 1, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    run_all_splits(&lim, text, len, res);
    assert_int_equal(res->rc, TDM_ELIMIT);
    assert_non_null(strstr(res->error, "over 64 bytes"));
    free(res);
}

static void
test_header_count_limit(void **state)
{
    (void)state;
    struct http_response_limits lim = {.max_head = 4096, .max_body = 0};
    char text[4096];
    for (int n = HTTP_RESPONSE_MAX_HEADERS; n <= HTTP_RESPONSE_MAX_HEADERS + 1; n++) {
        size_t len = 0;
        add(text, sizeof(text), &len, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; i < n - 1; i++)
            add(text, sizeof(text), &len, "X-%d: %d\r\n", i, i);
        add(text, sizeof(text), &len, "Content-Length: 0\r\n\r\n");
        struct result res;
        run(&lim, text, len, NULL, 0, &res);
        assert_int_equal(res.rc, n == HTTP_RESPONSE_MAX_HEADERS ? HTTP_RESPONSE_END : TDM_ELIMIT);
    }
}

static void
test_body_limit_and_stream(void **state)
{
    (void)state;
    /* Chunked: the sum of chunks counts, not each one. */
    const char *two = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    struct http_response_limits lim5 = {.max_head = 256, .max_body = 5};
    struct http_response_limits lim6 = {.max_head = 256, .max_body = 6};
    struct result *res = malloc(sizeof(*res));
    assert_non_null(res);
    run_all_splits(&lim5, two, strlen(two), res);
    assert_int_equal(res->rc, TDM_ELIMIT);
    run_all_splits(&lim6, two, strlen(two), res);
    assert_int_equal(res->rc, HTTP_RESPONSE_END);
    assert_int_equal(res->body_len, 6);
    /* Close-delimited bodies count too. */
    const char *closed = "HTTP/1.1 200 OK\r\n\r\nabcdef";
    run_all_splits(&lim5, closed, strlen(closed), res);
    assert_int_equal(res->rc, TDM_ELIMIT);
    assert_int_equal(res->body_len, 5); /* what fits is given before the error */
    /* max_body 0: a stream without limit (events --follow). */
    struct http_response_limits unlimited = {.max_head = 256, .max_body = 0};
    run_all_splits(&unlimited, closed, strlen(closed), res);
    assert_int_equal(res->rc, HTTP_RESPONSE_END);
    assert_int_equal(res->body_len, 6);
    free(res);
}

static void
test_trailer_limit(void **state)
{
    (void)state;
    struct http_response_limits lim = {.max_head = 80, .max_body = 0};
    char text[512];
    size_t len = 0;
    add(text, sizeof(text), &len, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    for (int i = 0; i < 10; i++)
        add(text, sizeof(text), &len, "X-Trailer-%d: 0123456789\r\n", i);
    add(text, sizeof(text), &len, "\r\n");
    struct result res;
    run(&lim, text, len, NULL, 0, &res);
    assert_int_equal(res.rc, TDM_ELIMIT);
    assert_non_null(strstr(res.error, "trailers are over 80 bytes"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_body_limit_and_stream),
        cmocka_unit_test(test_trailer_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

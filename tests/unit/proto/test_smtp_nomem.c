/*
 * The SMTP/LMTP session when memory runs out (src/proto/smtp/): every allocation the session
 * makes during a pipelined LMTP transaction is made to fail in turn (malloc, calloc, realloc
 * and strdup are wrapped at link time). Each call must then return -ENOMEM, keep returning it,
 * free everything (LeakSanitizer checks at exit), and what was answered before the failure
 * must be a prefix of the answers of a run with no failure: running out of memory may end a
 * session, never reorder or invent a reply.
 */
#include "proto/smtp/smtp_session.h"

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

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static bool armed;
static long fail_at = -1; /* the allocation (counted from 0 while armed) that fails */
static long count;
static bool fail_all; /* while armed, every allocation fails */

static bool
fail_now(void)
{
    return armed && (fail_all || count++ == fail_at);
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

char *
__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}

static const char script[] =
    "LHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nRCPT TO:<d@x>\r\n"
    "RCPT TO:<e@x>\r\nRCPT TO:<f@x>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\nQUIT\r\n";

struct transcript {
    char text[4096];
    size_t len;
    int rc; /* SMTP_EV_CLOSE, or the error that ended the run */
};

static void
take_output(struct smtp_session *s, struct transcript *t)
{
    size_t len;
    const uint8_t *o = smtp_session_output(s, &len);
    assert_true(t->len + len <= sizeof(t->text));
    memcpy(t->text + t->len, o, len);
    t->len += len;
    smtp_session_output_done(s, len);
}

/* Runs the script with allocation number fail (or none, -1) failing. */
static void
run(long fail, struct transcript *t)
{
    memset(t, 0, sizeof(*t));
    fail_at = fail;
    count = 0;
    struct smtp_session_config cfg = {SMTP_PROTO_LMTP, "mx", 512, 1000, 10, 10, false, false};
    struct smtp_session *s = NULL;
    armed = true;
    int rc = smtp_session_new(&cfg, &s);
    armed = false;
    if (rc != 0) {
        assert_int_equal(rc, -ENOMEM);
        assert_null(s);
        t->rc = rc;
        return;
    }
    take_output(s, t);
    const uint8_t *in = (const uint8_t *)script;
    size_t len = sizeof(script) - 1, at = 0;
    struct smtp_verdict ok = {250, NULL, NULL};
    for (;;) {
        struct smtp_session_out out;
        armed = true;
        int ev = smtp_session_feed(s, in + at, len - at, &out);
        armed = false;
        if (ev >= 0)
            at += out.used;
        int step = ev < 0 ? ev : 0; /* this step's outcome */
        if (ev == SMTP_EV_MAIL || ev == SMTP_EV_RCPT) {
            armed = true;
            step = smtp_session_verdict(s, &ok);
            armed = false;
            if (step == -ENOMEM) {
                /* Nothing changed: the verdict may be given again. */
                assert_int_equal(smtp_session_verdict(s, &ok), 0);
                step = 0;
            }
        } else if (ev == SMTP_EV_DATA_END) {
            for (size_t i = 0; i < smtp_session_rcpt_count(s) && step == 0; i++) {
                armed = true;
                step = smtp_session_delivered(s, i, &ok);
                armed = false;
                /* Either nothing changed and it may be repeated, or the session failed. */
                if (step == -ENOMEM)
                    step = smtp_session_delivered(s, i, &ok);
            }
        }
        take_output(s, t);
        if (step < 0) {
            assert_int_equal(step, -ENOMEM);
            /* Sticky: the session says so from now on and takes nothing. */
            struct smtp_session_out out2;
            assert_int_equal(smtp_session_feed(s, in + at, len - at, &out2), -ENOMEM);
            assert_int_equal(out2.used, 0);
            assert_int_equal(smtp_session_verdict(s, &ok), -ENOMEM);
            assert_int_equal(smtp_session_delivered(s, 0, &ok), -ENOMEM);
            t->rc = step;
            break;
        }
        if (ev == SMTP_EV_CLOSE) {
            t->rc = ev;
            break;
        }
        assert_true(at <= len);
        assert_true(ev != SMTP_EV_NEED_MORE || at == len);
    }
    smtp_session_free(&s);
}

static void
test_every_allocation_fails(void **state)
{
    (void)state;
    struct transcript *good = malloc(sizeof(*good));
    struct transcript *t = malloc(sizeof(*t));
    assert_non_null(good);
    assert_non_null(t);
    run(-1, good);
    assert_int_equal(good->rc, SMTP_EV_CLOSE);
    long total = count;
    assert_true(total > 5); /* greeting, line buffer, replies, recipients, results */
    long ended = 0, recovered = 0;
    for (long k = 0; k < total; k++) {
        run(k, t);
        ended += t->rc == -ENOMEM;
        recovered += t->rc == SMTP_EV_CLOSE;
        if (t->rc != -ENOMEM && t->rc != SMTP_EV_CLOSE)
            fail_msg("allocation %ld: rc %d", k, t->rc);
        /* Only the failure ends it early; what was said is what a good run says first. */
        assert_true(t->len <= good->len);
        assert_memory_equal(t->text, good->text, t->len);
        if (t->rc == SMTP_EV_CLOSE) {
            assert_int_equal(t->len, good->len);
        }
    }
    /* Both outcomes happen: failures that end the session, and verdicts given again. */
    assert_true(ended > 0);
    assert_true(recovered > 0);
    free(good);
    free(t);
}

/* Feeds text (whole commands) and returns the last event; every byte must be taken. */
static int
feed_all(struct smtp_session *s, const char *text, struct smtp_session_out *out)
{
    size_t len = strlen(text), at = 0;
    int ev;
    do {
        ev = smtp_session_feed(s, (const uint8_t *)text + at, len - at, out);
        assert_true(ev >= 0);
        at += out->used;
        if (ev == SMTP_EV_MAIL) {
            struct smtp_verdict ok = {250, NULL, NULL};
            assert_int_equal(smtp_session_verdict(s, &ok), 0);
        }
    } while (at < len || (ev != SMTP_EV_NEED_MORE && ev != SMTP_EV_RCPT));
    return ev;
}

static bool
output_has(struct smtp_session *s, const char *want)
{
    size_t len;
    const uint8_t *o = smtp_session_output(s, &len);
    return memmem(o, len, want, strlen(want)) != NULL;
}

/*
 * A recipient the server accepts, but the session has no memory to record: the client is
 * answered 451 4.3.0 for it (it may try again), the recipient is not added, and the session
 * goes on. The output is left unread before the RCPT, more of it each round, so that in some
 * rounds even the 451 finds no room: then the session fails for good, with no reply half
 * written, and the server closes the connection.
 */
static void
test_answer_when_a_verdict_cannot_be_recorded(void **state)
{
    (void)state;
    struct smtp_session_config cfg = {SMTP_PROTO_LMTP, "mx", 512, 1000, 10, 10, false, false};
    int deferred = 0, failed = 0;
    for (int noops = 0; noops < 64; noops++) {
        struct smtp_session *s;
        struct smtp_session_out out;
        assert_int_equal(smtp_session_new(&cfg, &s), 0);
        assert_int_equal(feed_all(s, "LHLO c\r\nMAIL FROM:<a@x>\r\n", &out), SMTP_EV_NEED_MORE);
        for (int i = 0; i < noops; i++)
            assert_int_equal(feed_all(s, "NOOP\r\n", &out), SMTP_EV_NEED_MORE);
        size_t before;
        smtp_session_output(s, &before);
        assert_int_equal(feed_all(s, "RCPT TO:<b@x>\r\n", &out), SMTP_EV_RCPT);
        struct smtp_verdict ok = {250, NULL, NULL};
        bool was_deferred;
        armed = fail_all = true;
        int rc = smtp_session_answer(s, &ok, &was_deferred);
        armed = fail_all = false;
        assert_true(was_deferred);
        assert_int_equal(smtp_session_rcpt_count(s), 0);
        assert_false(output_has(s, "250 2.1.5"));
        if (rc == 0) {
            deferred++;
            assert_true(output_has(s, "451 4.3.0 Out of memory, try again later\r\n"));
            /* The session goes on: the client may give the recipient again. */
            assert_int_equal(feed_all(s, "RCPT TO:<b@x>\r\n", &out), SMTP_EV_RCPT);
            assert_int_equal(smtp_session_answer(s, &ok, &was_deferred), 0);
            assert_false(was_deferred);
            assert_int_equal(smtp_session_rcpt_count(s), 1);
        } else {
            failed++;
            assert_int_equal(rc, -ENOMEM);
            size_t after;
            smtp_session_output(s, &after);
            assert_int_equal(after, before); /* nothing of a reply */
            assert_int_equal(smtp_session_feed(s, (const uint8_t *)"NOOP\r\n", 6, &out), -ENOMEM);
            assert_int_equal(smtp_session_answer(s, &ok, &was_deferred), -ENOMEM);
        }
        smtp_session_free(&s);
    }
    assert_true(deferred > 0);
    assert_true(failed > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails),
        cmocka_unit_test(test_answer_when_a_verdict_cannot_be_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

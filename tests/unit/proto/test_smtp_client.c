/*
 * The LMTP client transaction (src/proto/smtp/smtp_client.c) against scripted servers: the
 * commands it sends, one per reply, the dot-stuffed message in chunks, the outcome per
 * recipient, and a stop before the data whenever one recipient is refused. Every server script
 * is fed whole and one byte at a time: the result must not depend on how replies are cut.
 */
#include "proto/smtp/smtp_client.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct smtp_path
path(const char *local, const char *domain)
{
    struct smtp_path p = {0};
    snprintf(p.local, sizeof(p.local), "%s", local);
    snprintf(p.domain, sizeof(p.domain), "%s", domain);
    return p;
}

/* Everything the client has to send now, appended to *sent (malloc'd, NUL-terminated). */
static void
drain(struct smtp_client *c, char **sent, size_t *len)
{
    for (;;) {
        const uint8_t *out;
        size_t n;
        assert_int_equal(smtp_client_output(c, &out, &n), 0);
        if (n == 0)
            return;
        /* A chunk of message, each line's stuffed dot, and the final line at most. */
        assert_true(n <= 2 * SMTP_CLIENT_CHUNK + 5);
        *sent = realloc(*sent, *len + n + 1);
        memcpy(*sent + *len, out, n);
        *len += n;
        (*sent)[*len] = '\0';
        smtp_client_output_done(c, n);
    }
}

/* Runs a transaction: each server reply in replies[] is fed (whole or byte by byte) after the
 * client's output so far is taken. Returns what the client sent. */
static char *
run(struct smtp_client *c, const char *const *replies, bool bytewise)
{
    char *sent = NULL;
    size_t len = 0;
    drain(c, &sent, &len);
    assert_int_equal(len, 0); /* nothing before the greeting */
    for (size_t i = 0; replies[i]; i++) {
        const uint8_t *r = (const uint8_t *)replies[i];
        size_t n = strlen(replies[i]);
        if (bytewise)
            for (size_t k = 0; k < n; k++)
                smtp_client_feed(c, r + k, 1);
        else
            smtp_client_feed(c, r, n);
        drain(c, &sent, &len);
    }
    return sent ? sent : strdup("");
}

static const struct smtp_path sender_path = {.local = "s", .domain = "example.org"};

static void
test_two_recipients_delivered(void **state)
{
    (void)state;
    struct smtp_path rcpts[2] = {path("alice", "example.test"), path("a b", "example.test")};
    const char *body = "Subject: x\r\n\r\n.dot\r\nmid.dot\r\n..two\r\nend\r\n";
    static const char *const replies[] = {
        "220 mbx LMTP tandem\r\n",
        "250-mbx\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        "250 2.1.0 OK\r\n",
        "250 2.1.5 OK\r\n",
        "250 2.1.5 OK\r\n",
        "354 End data with <CR><LF>.<CR><LF>\r\n",
        "250 2.0.0 Delivered\r\n452 4.2.2 Mailbox is full\r\n",
        "221 2.0.0 bye\r\n",
        NULL,
    };
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct smtp_client_tx tx = {.helo = "hub.test",
                                    .sender = &sender_path,
                                    .rcpts = rcpts,
                                    .n_rcpts = 2,
                                    .body_8bit = true,
                                    .body = (const uint8_t *)body,
                                    .body_len = strlen(body)};
        struct smtp_client *c;
        assert_int_equal(smtp_client_new(&tx, &c), 0);
        char *sent = run(c, replies, bytewise);
        assert_string_equal(sent, "LHLO hub.test\r\n"
                                  "MAIL FROM:<s@example.org> BODY=8BITMIME\r\n"
                                  "RCPT TO:<alice@example.test>\r\n"
                                  "RCPT TO:<\"a b\"@example.test>\r\n"
                                  "DATA\r\n"
                                  "Subject: x\r\n\r\n..dot\r\nmid.dot\r\n...two\r\nend\r\n.\r\n"
                                  "QUIT\r\n");
        assert_int_equal(smtp_client_state(c), SMTP_CLIENT_DONE);
        assert_true(smtp_client_data_sent(c));
        assert_int_equal(smtp_client_rcpt_reply(c, 0)->code, 250);
        assert_string_equal(smtp_client_rcpt_reply(c, 0)->enh, "2.0.0");
        assert_string_equal(smtp_client_rcpt_reply(c, 0)->text, "Delivered");
        assert_int_equal(smtp_client_rcpt_reply(c, 1)->code, 452);
        assert_string_equal(smtp_client_rcpt_reply(c, 1)->enh, "4.2.2");
        assert_int_equal(smtp_client_stop(c)->code, 0);
        free(sent);
        smtp_client_free(&c);
        assert_null(c);
    }
}

/* Delivery ids go out as RCPT's XDELIVERYID, in lower-case hex, one per recipient. */
static void
test_delivery_ids(void **state)
{
    (void)state;
    struct smtp_path rcpts[2] = {path("alice", "example.test"), path("bob", "example.test")};
    static const uint8_t ids[2][16] = {{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff},
                                       {0x10}};
    static const char *const replies[] = {
        "220 mbx LMTP tandem\r\n", "250-mbx\r\n250 XDELIVERYID\r\n", "250 2.1.0 OK\r\n",
        "250 2.1.5 OK\r\n",        "250 2.1.5 OK\r\n", "354 go\r\n",
        "250 2.0.0 a\r\n250 2.0.0 b\r\n", NULL,
    };
    struct smtp_client_tx tx = {.helo = "hub.test",
                                .sender = &sender_path,
                                .rcpts = rcpts,
                                .n_rcpts = 2,
                                .delivery_ids = ids,
                                .body = (const uint8_t *)"x\r\n",
                                .body_len = 3};
    struct smtp_client *c;
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    char *sent = run(c, replies, 0);
    assert_string_equal(sent, "LHLO hub.test\r\n"
                              "MAIL FROM:<s@example.org>\r\n"
                              "RCPT TO:<alice@example.test> "
                              "XDELIVERYID=ab0102030405060708090a0b0c0d0eff\r\n"
                              "RCPT TO:<bob@example.test> "
                              "XDELIVERYID=10000000000000000000000000000000\r\n"
                              "DATA\r\nx\r\n.\r\nQUIT\r\n");
    assert_int_equal(smtp_client_rcpt_reply(c, 1)->code, 250);
    free(sent);
    smtp_client_free(&c);
}

static void
test_refused_recipient_stops_before_the_data(void **state)
{
    (void)state;
    struct smtp_path rcpts[2] = {path("alice", "example.test"), path("gone", "example.test")};
    struct smtp_path null_sender = {.null = true};
    static const char *const replies[] = {
        "220 mbx\r\n",
        "250 mbx\r\n",
        "250 2.1.0 OK\r\n",
        "250 2.1.5 OK\r\n",
        "550 5.1.1 No such user here\r\n",
        NULL,
    };
    struct smtp_client_tx tx = {.helo = "hub.test",
                                .sender = &null_sender,
                                .rcpts = rcpts,
                                .n_rcpts = 2,
                                .body = (const uint8_t *)"x\r\n",
                                .body_len = 3};
    struct smtp_client *c;
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    char *sent = run(c, replies, false);
    assert_string_equal(sent, "LHLO hub.test\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\n"
                              "RCPT TO:<gone@example.test>\r\nQUIT\r\n");
    assert_int_equal(smtp_client_state(c), SMTP_CLIENT_DONE);
    assert_false(smtp_client_data_sent(c));
    /* alice's RCPT was accepted, but she never got the message. */
    assert_int_equal(smtp_client_rcpt_reply(c, 0)->code, 0);
    assert_int_equal(smtp_client_rcpt_reply(c, 1)->code, 550);
    assert_string_equal(smtp_client_rcpt_reply(c, 1)->text, "No such user here");
    free(sent);
    smtp_client_free(&c);
}

static void
test_refused_greeting_and_mail(void **state)
{
    (void)state;
    struct smtp_path rcpt = path("alice", "example.test");
    struct smtp_client_tx tx = {.helo = "h",
                                .sender = &sender_path,
                                .rcpts = &rcpt,
                                .n_rcpts = 1,
                                .body = (const uint8_t *)"",
                                .body_len = 0};
    struct smtp_client *c;
    static const char *const busy[] = {"421 4.3.2 Shutting down\r\n", NULL};
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    char *sent = run(c, busy, false);
    assert_string_equal(sent, "QUIT\r\n");
    assert_int_equal(smtp_client_stop(c)->code, 421);
    assert_string_equal(smtp_client_stop(c)->enh, "4.3.2");
    free(sent);
    smtp_client_free(&c);

    static const char *const no_data[] = {"220 x\r\n",  "250 x\r\n",           "250 ok\r\n",
                                          "250 ok\r\n", "451 4.3.0 later\r\n", NULL};
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    sent = run(c, no_data, true);
    assert_string_equal(sent, "LHLO h\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<alice@example.test>"
                              "\r\nDATA\r\nQUIT\r\n");
    assert_int_equal(smtp_client_stop(c)->code, 451);
    assert_string_equal(smtp_client_stop(c)->enh, "4.3.0");
    assert_string_equal(smtp_client_stop(c)->text, "later");
    assert_int_equal(smtp_client_rcpt_reply(c, 0)->code, 0);
    free(sent);
    smtp_client_free(&c);
}

/* A message larger than a chunk, with dots at chunk edges, and without a final CR LF. */
static void
test_long_message_in_chunks(void **state)
{
    (void)state;
    size_t n = 3 * SMTP_CLIENT_CHUNK + 17;
    char *body = malloc(n);
    size_t at = 0;
    while (at < n) {
        const char *line = ".a line that starts with a dot\r\n";
        size_t l = strlen(line);
        memcpy(body + at, line, at + l <= n ? l : n - at);
        at += l;
    }
    struct smtp_path rcpt = path("alice", "example.test");
    struct smtp_client_tx tx = {.helo = "h",
                                .sender = &sender_path,
                                .rcpts = &rcpt,
                                .n_rcpts = 1,
                                .body = (const uint8_t *)body,
                                .body_len = n};
    static const char *const replies[] = {"220 x\r\n",  "250 x\r\n",  "250 ok\r\n",
                                          "250 ok\r\n", "354 go\r\n", "250 2.0.0 ok\r\n",
                                          NULL};
    struct smtp_client *c;
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    char *sent = run(c, replies, false);
    char *data = strstr(sent, "DATA\r\n") + 6;
    char *end = strstr(data, "QUIT\r\n");
    assert_non_null(end);
    /* Undo the stuffing the way the server does, and compare. */
    size_t out = 0;
    bool bol = true;
    char *plain = malloc(n + 8);
    for (char *p = data; p < end; p++) {
        if (bol && *p == '.')
            p++;
        plain[out++] = *p;
        bol = out >= 2 && plain[out - 2] == '\r' && plain[out - 1] == '\n';
    }
    /* The message, then the CR LF the client added before the final dot, then ".\r\n"'s
     * CR LF, its dot having been taken as stuffing. */
    assert_int_equal(out, n + 4);
    assert_memory_equal(plain, body, n);
    assert_memory_equal(plain + n, "\r\n\r\n", 4);
    assert_int_equal(smtp_client_rcpt_reply(c, 0)->code, 250);
    free(plain);
    free(sent);
    free(body);
    smtp_client_free(&c);
}

static void
test_broken_servers(void **state)
{
    (void)state;
    struct smtp_path rcpt = path("alice", "example.test");
    struct smtp_client_tx tx = {.helo = "h", .sender = &sender_path, .rcpts = &rcpt, .n_rcpts = 1};
    static const char *const scripts[][3] = {
        {"hello there\r\n", NULL, NULL},
        {"220-x\r\n250 y\r\n", NULL, NULL}, /* the code changed inside a reply */
        {"2200 x\r\n", NULL, NULL},
        {"220 x\r\n", "250 x\r\n", "250 ok\r\n250 ok\r\n354 go\r\n250 early\r\n"},
    };
    for (size_t i = 0; i < sizeof(scripts) / sizeof(scripts[0]); i++) {
        struct smtp_client *c;
        assert_int_equal(smtp_client_new(&tx, &c), 0);
        for (size_t k = 0; k < 3 && scripts[i][k]; k++)
            smtp_client_feed(c, (const uint8_t *)scripts[i][k], strlen(scripts[i][k]));
        if (i < 3)
            assert_int_equal(smtp_client_state(c), SMTP_CLIENT_BROKEN);
        smtp_client_free(&c);
    }
    /* A line longer than any reply line may be. */
    struct smtp_client *c;
    assert_int_equal(smtp_client_new(&tx, &c), 0);
    char *longline = malloc(SMTP_CLIENT_MAX_REPLY_LINE + 10);
    memset(longline, 'x', SMTP_CLIENT_MAX_REPLY_LINE + 8);
    memcpy(longline, "220 ", 4);
    memcpy(longline + SMTP_CLIENT_MAX_REPLY_LINE + 8, "\r\n", 2);
    assert_int_equal(
        smtp_client_feed(c, (const uint8_t *)longline, SMTP_CLIENT_MAX_REPLY_LINE + 10),
        SMTP_CLIENT_BROKEN);
    free(longline);
    smtp_client_free(&c);
    assert_int_equal(
        smtp_client_new(&(struct smtp_client_tx){.helo = "h", .sender = &sender_path}, &c),
        TDM_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_recipients_delivered),
        cmocka_unit_test(test_delivery_ids),
        cmocka_unit_test(test_refused_recipient_stops_before_the_data),
        cmocka_unit_test(test_refused_greeting_and_mail),
        cmocka_unit_test(test_long_message_in_chunks),
        cmocka_unit_test(test_broken_servers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

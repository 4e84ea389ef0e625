/*
 * Fuzzes the LMTP client transaction (src/proto/smtp/smtp_client.c): the server's replies are
 * the input, as a mailbox server that misbehaves would send them. Input: byte 0 gives the
 * number of recipients (bits 0..1, plus one) and the size of the pieces the replies are fed in
 * (bits 2..7); byte 1 the length of the message, which follows; the rest is what the server
 * says.
 *
 * Invariants, any break aborts:
 * - nothing is sent before the server has said something;
 * - once the end of the message is sent, what went between "DATA" CR LF and the final "." line,
 *   read back line by line the way our server does (split at CR LF, one leading dot removed),
 *   is the message, with a CR LF added when it did not end in one;
 * - every outcome is a code of 0 or 200..599; a stop and data sent never go together;
 * - the same replies fed whole and in pieces give the same bytes sent and the same outcomes.
 */
#include "proto/smtp/smtp_client.h"
#include "proto/smtp/smtp_reply.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

struct outcome {
    struct smtp_buf sent;
    int state;
    bool data_sent;
    int codes[5]; /* the stop, then each recipient */
};

static void
take_output(struct smtp_client *c, struct smtp_buf *sent)
{
    for (;;) {
        const uint8_t *out;
        size_t n;
        if (smtp_client_output(c, &out, &n) < 0 || n == 0)
            return;
        check(smtp_buf_append(sent, out, n) == 0);
        smtp_client_output_done(c, n);
    }
}

static void
run(const struct smtp_client_tx *tx, const uint8_t *replies, size_t len, size_t piece,
    struct outcome *o)
{
    struct smtp_client *c;
    check(smtp_client_new(tx, &c) == 0);
    take_output(c, &o->sent);
    check(o->sent.len == 0);
    for (size_t at = 0; at < len; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        if (smtp_client_feed(c, replies + at, n) < 0)
            break;
        take_output(c, &o->sent);
    }
    o->state = smtp_client_state(c);
    o->data_sent = smtp_client_data_sent(c);
    o->codes[0] = smtp_client_stop(c)->code;
    for (size_t i = 0; i < tx->n_rcpts; i++)
        o->codes[i + 1] = smtp_client_rcpt_reply(c, i)->code;
    smtp_client_free(&c);
}

/* The message as our server's decoder would read it from what was sent after DATA. */
static void
check_message(const struct outcome *o, const uint8_t *body, size_t body_len)
{
    const uint8_t *s = o->sent.data;
    size_t n = o->sent.len, at = 0;
    while (at + 6 <= n && memcmp(s + at, "DATA\r\n", 6) != 0)
        at++;
    check(at + 6 <= n);
    at += 6;
    struct smtp_buf msg = {0};
    for (;;) {
        size_t end = at;
        while (end + 1 < n && !(s[end] == '\r' && s[end + 1] == '\n'))
            end++;
        check(end + 1 < n); /* the final "." line is always there */
        if (end - at == 1 && s[at] == '.')
            break;
        size_t from = at < end && s[at] == '.' ? at + 1 : at;
        check(smtp_buf_append(&msg, s + from, end + 2 - from) == 0);
        at = end + 2;
    }
    bool crlf = body_len >= 2 && body[body_len - 2] == '\r' && body[body_len - 1] == '\n';
    size_t want = body_len + (body_len > 0 && !crlf ? 2 : 0);
    check(msg.len == want);
    check(body_len == 0 || memcmp(msg.data, body, body_len) == 0);
    smtp_buf_free(&msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n_rcpts = (size_t)(data[0] & 3) + 1;
    size_t piece = (size_t)(data[0] >> 2) + 1;
    size_t body_len = data[1];
    if (size - 2 < body_len)
        return 0;
    const uint8_t *body = data + 2;
    const uint8_t *replies = body + body_len;
    size_t len = size - 2 - body_len;

    static const struct smtp_path sender = {.local = "s", .domain = "example.org"};
    struct smtp_path rcpts[4];
    for (size_t i = 0; i < 4; i++)
        rcpts[i] = (struct smtp_path){.local = {(char)('a' + i)}, .domain = "example.test"};
    struct smtp_client_tx tx = {.helo = "hub.test",
                                .sender = &sender,
                                .rcpts = rcpts,
                                .n_rcpts = n_rcpts,
                                .body = body,
                                .body_len = body_len};

    struct outcome whole = {0}, pieces = {0};
    run(&tx, replies, len, len ? len : 1, &whole);
    run(&tx, replies, len, piece, &pieces);
    check(whole.state == pieces.state && whole.data_sent == pieces.data_sent);
    check(whole.sent.len == pieces.sent.len &&
          (whole.sent.len == 0 || memcmp(whole.sent.data, pieces.sent.data, whole.sent.len) == 0));
    check(memcmp(whole.codes, pieces.codes, sizeof(whole.codes)) == 0);
    for (size_t i = 0; i <= n_rcpts; i++)
        check(whole.codes[i] == 0 || (whole.codes[i] >= 200 && whole.codes[i] <= 599));
    check(!(whole.codes[0] != 0 && whole.data_sent));
    if (whole.data_sent)
        check_message(&whole, body, body_len);
    smtp_buf_free(&whole.sent);
    smtp_buf_free(&pieces.sent);
    return 0;
}

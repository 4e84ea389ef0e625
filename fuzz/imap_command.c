/*
 * Fuzzes the IMAP command parser (src/proto/imap/). Input: byte 0 picks the limits (bit 0:
 * small limits, so every limit is reachable with short inputs; bit 1: LITERAL-) and whether
 * the "session" refuses APPEND messages of odd size instead of sending "+" (bit 2:
 * imap_parser_cancel_literal); byte 1 seeds the piece sizes; the rest is a client byte stream.
 * Invariants, any break aborts:
 *   - the stream fed whole, fed in pieces of pseudo-random sizes, and fed one byte at a time
 *     gives the same transcript (commands in canonical form, continuations, APPEND bytes,
 *     refusals);
 *   - every command, formatted canonically and parsed again by a fresh parser, formats to the
 *     same bytes (the parser and the formatter agree on every field);
 *   - modified UTF-7 is canonical both ways on every mailbox name parsed: what decodes
 *     re-encodes to the same bytes, what encodes decodes back;
 *   - every refusal is one line "tag BAD|NO ..." or "* BAD|BYE ..." ending in CRLF, and a fatal
 *     one is "* BYE"; APPEND bytes come with consistent offsets and point into the input.
 */
#include "proto/imap/imap_mutf7.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"

#include "lib/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Names the broken invariant's line before aborting, so a crash report says which. */
static void
fail_at(int line)
{
    fprintf(stderr, "imap_command: invariant at line %d broken\n", line);
    abort();
}
#define check(ok) ((ok) ? (void)0 : fail_at(__LINE__))

static const struct imap_parser_limits small = {
    .max_line = 80,
    .max_literal = 40,
    .max_command = 400,
    .max_message = 200,
    .max_items = 16,
    .max_depth = 4,
    .max_ranges = 8,
};

static void
check_response(const char *r, bool fatal)
{
    size_t n = strlen(r);
    check(n >= 4 && r[n - 2] == '\r' && r[n - 1] == '\n');
    check(strchr(r, '\n') == r + n - 1);
    check(!fatal || strncmp(r, "* BYE ", 6) == 0);
    check(strstr(r, " BAD ") || strstr(r, " NO ") || strstr(r, " BYE "));
}

/* Parses text (a canonical command) with generous limits; its format must be text again. */
static void
reparse(const struct imap_parser_limits *lim, const struct imap_buf *text)
{
    struct imap_parser_limits big = *lim;
    big.max_line = big.max_literal = big.max_command = 1u << 24;
    big.literal_minus = false;
    struct imap_parser *p;
    check(imap_parser_new(&big, &p) == 0);
    size_t off = 0;
    struct imap_command *cmd = NULL;
    while (!cmd) {
        struct imap_parser_out out;
        int r = imap_parser_feed(p, (const uint8_t *)text->data + off, text->len - off, &out);
        check(r == IMAP_ITEM_COMMAND || r == IMAP_ITEM_CONTINUE || r == IMAP_ITEM_LITERAL_DATA);
        off += out.used;
        if (r == IMAP_ITEM_COMMAND)
            cmd = out.cmd;
    }
    check(off == text->len);
    struct imap_buf again = IMAP_BUF_INIT;
    check(imap_command_format(cmd, &again) == 0);
    check(again.len == text->len && memcmp(again.data, text->data, text->len) == 0);
    imap_buf_free(&again);
    imap_command_free(&cmd);
    imap_parser_free(&p);
}

/* encode(decode(s)) == s when s decodes; decode(encode(s)) == s when s encodes. */
static void
check_mutf7(const char *s)
{
    if (!s)
        return;
    size_t n = strlen(s);
    struct imap_buf a = IMAP_BUF_INIT, b = IMAP_BUF_INIT;
    int r = imap_mutf7_decode(s, n, &a);
    check(r == 0 || r == TDM_EINVAL);
    if (r == 0) {
        check(imap_mutf7_encode(a.data ? a.data : "", a.len, &b) == 0);
        check(b.len == n && memcmp(b.data ? b.data : "", s, n) == 0);
    }
    imap_buf_free(&a);
    imap_buf_free(&b);
    r = imap_mutf7_encode(s, n, &a);
    check(r == 0 || r == TDM_EINVAL);
    if (r == 0) {
        check(imap_mutf7_decode(a.data ? a.data : "", a.len, &b) == 0);
        check(b.len == n && memcmp(b.data ? b.data : "", s, n) == 0);
    }
    imap_buf_free(&a);
    imap_buf_free(&b);
}

static void
check_mailboxes(const struct imap_command *c)
{
    switch (c->cmd) {
    case IMAP_CMD_SELECT:
    case IMAP_CMD_EXAMINE:
    case IMAP_CMD_DELETE:
    case IMAP_CMD_SUBSCRIBE:
    case IMAP_CMD_UNSUBSCRIBE:
    case IMAP_CMD_GETQUOTAROOT:
        check_mutf7(c->u.select.mailbox);
        break;
    case IMAP_CMD_CREATE:
        check_mutf7(c->u.create.mailbox);
        break;
    case IMAP_CMD_RENAME:
        check_mutf7(c->u.rename.from);
        check_mutf7(c->u.rename.to);
        break;
    case IMAP_CMD_STATUS:
        check_mutf7(c->u.status.mailbox);
        break;
    case IMAP_CMD_APPEND:
        check_mutf7(c->u.append.mailbox);
        break;
    case IMAP_CMD_COPY:
    case IMAP_CMD_MOVE:
        check_mutf7(c->u.copy.mailbox);
        break;
    case IMAP_CMD_LIST:
    case IMAP_CMD_LSUB:
        for (size_t i = 0; i < c->u.list.n_patterns; i++)
            check_mutf7(c->u.list.patterns[i]);
        break;
    default:
        break;
    }
}

struct run {
    bool cancel_odd;   /* cancel odd-sized message literals at CONTINUE */
    struct imap_buf t; /* the transcript */
    int last;
    size_t last_msg;
    bool dead;
};

static void
feed(struct imap_parser *p, const struct imap_parser_limits *lim, const uint8_t *in, size_t len,
     struct run *run, bool check_reparse)
{
    size_t off = 0;
    while (!run->dead) {
        struct imap_parser_out out;
        int r = imap_parser_feed(p, in + off, len - off, &out);
        check(r >= 0 || r == -ENOMEM);
        if (r < 0) {
            run->dead = true;
            imap_buf_puts(&run->t, "!ENOMEM\n");
            return;
        }
        check(out.used <= len - off);
        switch (r) {
        case IMAP_ITEM_NEED_MORE:
            check(off + out.used == len);
            return;
        case IMAP_ITEM_COMMAND: {
            struct imap_buf b = IMAP_BUF_INIT;
            check(imap_command_format(out.cmd, &b) == 0);
            if (check_reparse) {
                reparse(lim, &b);
                check_mailboxes(out.cmd);
            }
            imap_buf_puts(&run->t, "C ");
            imap_buf_append(&run->t, b.data, b.len);
            imap_buf_free(&b);
            if (out.cmd->cmd == IMAP_CMD_IDLE ||
                (out.cmd->cmd == IMAP_CMD_AUTHENTICATE && !out.cmd->u.authenticate.initial))
                imap_parser_expect_line(p);
            imap_command_free(&out.cmd);
            break;
        }
        case IMAP_ITEM_CONTINUE:
            check(strcmp(out.response, "+ Ready for literal data\r\n") == 0);
            if (run->cancel_odd && out.message && out.msg_size % 2) {
                check(imap_parser_cancel_literal(p) == 0);
                imap_buf_puts(&run->t, "+cancelled\n");
            } else {
                imap_buf_puts(&run->t, "+\n");
            }
            break;
        case IMAP_ITEM_LITERAL_DATA:
            check(out.data >= in + off && out.data + out.len <= in + len && out.len > 0);
            check(out.msg_offset + out.len <= out.msg_size);
            if (run->last != IMAP_ITEM_LITERAL_DATA || run->last_msg != out.msg_index) {
                check(out.msg_offset == 0);
                imap_buf_printf(&run->t, "\nD%zu ", out.msg_index);
            }
            imap_buf_append(&run->t, out.data, out.len);
            run->last_msg = out.msg_index;
            break;
        case IMAP_ITEM_ERROR:
            check_response(out.response, out.fatal);
            check(!out.tag || strncmp(out.response, out.tag, strlen(out.tag)) == 0);
            imap_buf_printf(&run->t, "\nE %s", out.response);
            if (out.fatal)
                run->dead = true;
            break;
        case IMAP_ITEM_LINE:
            check(memchr(out.data, '\n', out.len) == NULL);
            imap_buf_puts(&run->t, "\nL ");
            imap_buf_append(&run->t, out.data, out.len);
            break;
        default:
            check(false);
        }
        run->last = r;
        off += out.used;
    }
}

/* Feeds in[0..len) in pieces: sizes from a small LCG seeded by seed; 0 means byte by byte. */
static void
run_stream(const struct imap_parser_limits *lim, bool cancel_odd, const uint8_t *in, size_t len,
           unsigned seed, bool whole, struct run *run)
{
    struct imap_parser *p;
    check(imap_parser_new(lim, &p) == 0);
    memset(run, 0, sizeof(*run));
    run->cancel_odd = cancel_odd;
    run->last = -1;
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < len && !run->dead) {
        size_t n = len - off;
        if (!whole) {
            x = x * 1103515245u + 12345u;
            size_t piece = seed ? 1 + (x >> 16) % 64 : 1;
            if (piece < n)
                n = piece;
        }
        feed(p, lim, in + off, n, run, whole);
        off += n;
    }
    check(imap_buf_error(&run->t) == 0);
    imap_parser_free(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct imap_parser_limits lim = data[0] & 1 ? small : imap_parser_default_limits;
    lim.literal_minus = data[0] & 2;
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    struct run whole, pieces, bytes;
    bool cancel_odd = data[0] & 4;
    run_stream(&lim, cancel_odd, in, len, 0, true, &whole);
    run_stream(&lim, cancel_odd, in, len, data[1] | 1u, false, &pieces);
    run_stream(&lim, cancel_odd, in, len, 0, false, &bytes);
    check(whole.t.len == pieces.t.len && whole.t.len == bytes.t.len);
    check(whole.t.len == 0 || (memcmp(whole.t.data, pieces.t.data, whole.t.len) == 0 &&
                               memcmp(whole.t.data, bytes.t.data, whole.t.len) == 0));
    imap_buf_free(&whole.t);
    imap_buf_free(&pieces.t);
    imap_buf_free(&bytes.t);
    return 0;
}

/*
 * The IMAP command framer (see imap_parser.h for the contract): it cuts the byte stream into
 * commands, handles literals and limits, and hands each complete command to the grammar
 * (imap_grammar.c).
 *
 * A command is held in buf exactly as the client sent it: its lines and, after each "{n}"
 * CRLF, the literal's n bytes; APPEND messages are the exception, streamed to the caller and
 * left out (their offsets go to streamed[]). Only when a line ends does the framer look at it:
 * a line that ends in a literal announcement outside a quoted string continues the command,
 * any other line ends it. Looking only at whole lines keeps the state machine small: the one
 * partial thing carried between feeds is the current line or literal.
 *
 * Which literal of an APPEND is a message is decided by running the grammar over what is
 * held so far, stopping at the announced literal (imap__reader.stop): the grammar knows
 * whether it stands at the mailbox or at a message, and has checked everything before it,
 * so a bad APPEND is refused before the client sends megabytes. After the first message the
 * check resumes after the previous one, so each byte of an APPEND is checked about twice
 * (here and in the final parse), however many messages it carries.
 *
 * After a refusal the framer skips the rest of the command: to the end of the line, over any
 * non-synchronizing literal that line announces, and on. A skipped line is still collected up
 * to max_line so its literal announcement can be read with quotes taken into account; past
 * that, only its last bytes are kept, and a "{n+}" at its very end is taken as an
 * announcement (there is no way to know whether an unseen quote opened before it).
 */
#include "proto/imap/imap_parser.h"

#include "lib/err.h"
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct imap_parser_limits imap_parser_default_limits = {
    .max_line = 64 * 1024,
    .max_literal = 64 * 1024,
    .max_command = 1024 * 1024,
    .max_message = 64 * 1024 * 1024,
    .max_items = 4096,
    .max_depth = 32,
    .max_ranges = 65536,
    .literal_minus = false,
};

/* Tags longer than this are not echoed in a refusal ("*" instead): a refusal must fit a
 * fixed buffer, and no real client uses tags of more than a few characters. */
#define TAG_ECHO_MAX 128
/* Bytes of a skipped line kept to find a literal announcement at its end:
 * "~{" + 19 digits + "+}" CRLF. */
#define TAIL_MAX 32

enum state {
    ST_LINE,         /* collecting a line of a command (or a raw line) */
    ST_LITERAL,      /* copying a literal into buf */
    ST_MESSAGE,      /* streaming an APPEND message to the caller */
    ST_SKIP_LINE,    /* discarding the rest of a refused command's line */
    ST_SKIP_LITERAL, /* discarding a refused command's non-synchronizing literal */
    ST_DEAD,         /* after a fatal error */
};

struct imap_parser {
    struct imap_parser_limits lim;
    enum state state;
    int dead_error;        /* ST_DEAD: what every later feed returns */
    bool continue_pending; /* the last item was CONTINUE: imap_parser_cancel_literal() may */

    uint8_t *buf; /* the command so far */
    size_t len, cap;
    size_t line_start; /* offset of the current line */
    bool raw_line;     /* imap_parser_expect_line(): the next line is not a command */

    size_t *streamed; /* offsets of streamed messages (see imap_int.h) */
    size_t n_streamed, cap_streamed;
    unsigned n_literals;  /* in this command, against max_items */
    int is_append;        /* -1 unknown, 0 no, 1 the command is APPEND */
    char *append_mailbox; /* owned: an APPEND's mailbox, from its first message's announcement */

    uint64_t remaining; /* ST_LITERAL, ST_MESSAGE, ST_SKIP_LITERAL */
    uint64_t msg_size, msg_offset;

    /* ST_SKIP_LINE */
    bool skip_overflow; /* the line outgrew max_line: only its tail is known */
    uint8_t tail[TAIL_MAX];
    size_t tail_len;

    char response[TAG_ECHO_MAX + 256];
    char tag[TAG_ECHO_MAX + 1];
};

int
imap_parser_new(const struct imap_parser_limits *limits, struct imap_parser **p_r)
{
    struct imap_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->lim = *limits;
    p->is_append = -1;
    *p_r = p;
    return 0;
}

void
imap_parser_free(struct imap_parser **pp)
{
    struct imap_parser *p = *pp;
    if (!p)
        return;
    free(p->buf);
    free(p->streamed);
    free(p->append_mailbox);
    free(p);
    *pp = NULL;
}

void
imap_parser_expect_line(struct imap_parser *p)
{
    p->raw_line = true;
}

bool
imap_line_is_done(const uint8_t *data, size_t len)
{
    return len == 4 && strncasecmp((const char *)data, "DONE", 4) == 0;
}

/* Forget the command held; a large buffer is given back so one big command does not pin
 * memory for the rest of the connection. */
static void
reset_command(struct imap_parser *p)
{
    p->len = 0;
    p->line_start = 0;
    p->n_streamed = 0;
    p->n_literals = 0;
    p->is_append = -1;
    free(p->append_mailbox);
    p->append_mailbox = NULL;
    if (p->cap > 2 * p->lim.max_line) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
    p->state = ST_LINE;
}

int
imap_parser_cancel_literal(struct imap_parser *p)
{
    if (!p->continue_pending)
        return TDM_EINVAL;
    p->continue_pending = false;
    reset_command(p);
    return 0;
}

static int
reserve(struct imap_parser *p, size_t more)
{
    if (p->cap - p->len >= more)
        return 0;
    size_t ncap = p->cap ? p->cap : 256;
    while (ncap - p->len < more)
        ncap *= 2;
    uint8_t *nb = realloc(p->buf, ncap);
    if (!nb)
        return -ENOMEM;
    p->buf = nb;
    p->cap = ncap;
    return 0;
}

/* The tag at the start of buf, into p->tag ("" when there is none or it is too long). */
static void
find_tag(struct imap_parser *p)
{
    size_t n = 0;
    while (n < p->len && imap__is_astring_char(p->buf[n]) && p->buf[n] != '+')
        n++;
    if (n == 0 || n > TAG_ECHO_MAX || n >= p->len || p->buf[n] != ' ')
        n = 0;
    memcpy(p->tag, p->buf, n);
    p->tag[n] = '\0';
}

static int refuse(struct imap_parser *p, struct imap_parser_out *out, const char *status,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fills out with an ERROR "tag <status> <text>" for the command in buf. */
static int
refuse(struct imap_parser *p, struct imap_parser_out *out, const char *status, const char *fmt, ...)
{
    find_tag(p);
    int n = snprintf(p->response, sizeof(p->response), "%s %s ", p->tag[0] ? p->tag : "*", status);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->response + n, sizeof(p->response) - (size_t)n - 2, fmt, ap);
    va_end(ap);
    strcat(p->response, "\r\n");
    out->response = p->response;
    out->tag = p->tag[0] ? p->tag : NULL;
    out->fatal = false;
    return IMAP_ITEM_ERROR;
}

static int
fatal(struct imap_parser *p, struct imap_parser_out *out, const char *text)
{
    snprintf(p->response, sizeof(p->response), "* BYE %s\r\n", text);
    out->response = p->response;
    out->tag = NULL;
    out->fatal = true;
    p->state = ST_DEAD;
    p->dead_error = TDM_EINVAL;
    return IMAP_ITEM_ERROR;
}

struct announce {
    uint64_t size; /* UINT64_MAX: more digits than fit */
    bool sync;
    bool binary;
    size_t at; /* offset of '{' or '~' within the line */
};

/* Whether line[0..n) (LF included) ends in a literal announcement; with quotes known when
 * quotes_known (the whole line is there), else the last bytes of a line. */
static bool
announces_literal(const uint8_t *line, size_t n, bool quotes_known, struct announce *a)
{
    if (n && line[n - 1] == '\n')
        n--;
    if (n && line[n - 1] == '\r')
        n--;
    if (n < 3 || line[n - 1] != '}')
        return false;
    size_t i = n - 1;
    a->sync = true;
    if (line[i - 1] == '+') {
        a->sync = false;
        i--;
    }
    size_t end = i;
    while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
        i--;
    if (i == end || i == 0 || line[i - 1] != '{')
        return false;
    a->size = 0;
    for (size_t k = i; k < end; k++) {
        if (a->size > (UINT64_MAX - 9) / 10) {
            a->size = UINT64_MAX;
            break;
        }
        a->size = a->size * 10 + (uint64_t)(line[k] - '0');
    }
    a->at = i - 1;
    a->binary = a->at > 0 && line[a->at - 1] == '~';
    if (a->binary)
        a->at--;
    if (!quotes_known)
        return true;
    /* Inside a quoted string "{5}" is just text. */
    bool q = false;
    for (size_t k = 0; k < a->at; k++) {
        if (q && line[k] == '\\')
            k++;
        else if (line[k] == '"')
            q = !q;
    }
    return !q;
}

/* Runs the grammar over the whole command in buf; COMMAND or ERROR. */
static int
parse_held(struct imap_parser *p, struct imap_parser_out *out)
{
    struct imap__reader r = {
        .buf = p->buf,
        .len = p->len,
        .streamed = p->streamed,
        .n_streamed = p->n_streamed,
        .stop = SIZE_MAX,
        .lim = &p->lim,
        .a = imap_arena_new(),
    };
    if (!r.a)
        return -ENOMEM;
    struct imap_command *cmd;
    const uint8_t *tag;
    size_t tag_len;
    if (imap__parse_command(&r, &cmd, &tag, &tag_len)) {
        cmd->arena = r.a;
        out->cmd = cmd;
        reset_command(p);
        return IMAP_ITEM_COMMAND;
    }
    imap_arena_free(&r.a);
    if (r.enomem)
        return -ENOMEM;
    int rc = refuse(p, out, "BAD", "%s", r.err ? r.err : "Syntax error");
    reset_command(p);
    return rc;
}

/* The literal announced at the end of the line just completed: is it an APPEND message
 * (1), another argument (0), or is the command already wrong (refusal in out, -1)? */
static int
literal_kind(struct imap_parser *p, const struct announce *a, struct imap_parser_out *out,
             int *rc_r)
{
    if (p->is_append < 0) {
        /* tag SP "APPEND" SP, case-insensitive; the first line is in buf whole. */
        const uint8_t *sp = memchr(p->buf, ' ', p->len);
        p->is_append = sp && (size_t)(p->buf + p->len - sp) > 8 &&
                       strncasecmp((const char *)sp + 1, "APPEND ", 7) == 0;
    }
    /* Other commands are checked up to their first literal only: that refuses an unknown
     * command or a misplaced literal before "+" is sent, and later literals are strings the
     * final parse checks (checking at each would re-parse the command once per literal). */
    if (!p->is_append && p->n_literals > 1)
        return 0;
    struct imap__reader r = {
        .buf = p->buf,
        .len = p->len,
        .streamed = p->streamed,
        .n_streamed = p->n_streamed,
        .stop = p->line_start + a->at,
        .lim = &p->lim,
        .a = imap_arena_new(),
    };
    if (!r.a) {
        *rc_r = -ENOMEM;
        return -1;
    }
    bool ok;
    if (p->n_streamed) {
        /* Everything up to the last message was checked when it was announced: resume
         * after it, so a MULTIAPPEND of n messages costs n short checks, not n full parses. */
        struct imap_append_msg scratch = {0};
        r.pos = p->streamed[p->n_streamed - 1];
        r.next_streamed = p->n_streamed;
        if (imap__peek(&r) == ')') /* the end of a "UTF8 (~{n})"; the final parse checks it */
            r.pos++;
        ok = imap__sp(&r) && imap__append_message(&r, &scratch);
    } else {
        struct imap_command *cmd;
        const uint8_t *tag;
        size_t tag_len;
        ok = imap__parse_command(&r, &cmd, &tag, &tag_len);
        /* The first message: the mailbox before it is known now, and the caller may want to
         * refuse the APPEND (no such mailbox) before the client sends the bytes. */
        if (r.stopped == IMAP__STOP_MESSAGE && p->is_append && r.cmd->u.append.mailbox &&
            !(p->append_mailbox = strdup(r.cmd->u.append.mailbox)))
            r.enomem = true;
    }
    imap_arena_free(&r.a);
    if (r.enomem) {
        *rc_r = -ENOMEM;
        return -1;
    }
    if (r.stopped == IMAP__STOP_MESSAGE && p->is_append)
        return 1;
    if (r.stopped == IMAP__STOP_OTHER)
        return 0;
    *rc_r = refuse(p, out, "BAD", "%s", ok || !r.err ? "Syntax error" : r.err);
    return -1;
}

/* A refused literal: a synchronizing one is never sent, so the next line is a new command;
 * a non-synchronizing one is on its way and is skipped with the rest of the command. */
static int
refuse_literal(struct imap_parser *p, const struct announce *a, struct imap_parser_out *out, int rc)
{
    if (rc < 0 || a->sync) {
        reset_command(p);
        return rc;
    }
    uint64_t bound =
        p->lim.max_message > p->lim.max_literal ? p->lim.max_message : p->lim.max_literal;
    if (a->size > bound)
        return fatal(p, out, "Literal too large to skip");
    reset_command(p);
    p->remaining = a->size;
    p->skip_overflow = false;
    p->tail_len = 0;
    p->state = ST_SKIP_LITERAL;
    return rc;
}

/* A command line is complete in buf[line_start..len). */
static int
line_done(struct imap_parser *p, struct imap_parser_out *out)
{
    const uint8_t *line = p->buf + p->line_start;
    size_t n = p->len - p->line_start;
    if (p->raw_line) {
        p->raw_line = false;
        n--; /* LF */
        if (n && line[n - 1] == '\r')
            n--;
        out->data = line;
        out->len = n;
        /* buf is given back on the next feed, which is when data stops being valid. */
        p->len = 0;
        p->line_start = 0;
        return IMAP_ITEM_LINE;
    }
    if (p->line_start == 0 && (n == 1 || (n == 2 && line[0] == '\r'))) {
        p->len = 0; /* an empty line between commands: ignored */
        return IMAP_ITEM_NEED_MORE;
    }
    struct announce a;
    if (!announces_literal(line, n, true, &a))
        return parse_held(p, out);

    int rc = 0;
    if (++p->n_literals > p->lim.max_items)
        return refuse_literal(p, &a, out,
                              refuse(p, out, "BAD", "[LIMIT] Too many literals in one command"));
    int kind = literal_kind(p, &a, out, &rc);
    if (kind < 0)
        return refuse_literal(p, &a, out, rc);
    if (a.binary && kind == 0)
        return refuse_literal(
            p, &a, out, refuse(p, out, "BAD", "literal8 is only allowed for APPEND messages"));
    if (!a.sync && p->lim.literal_minus && a.size > IMAP_LITERAL_MINUS_MAX)
        return refuse_literal(
            p, &a, out,
            refuse(p, out, "BAD",
                   "[TOOBIG] Non-synchronizing literals are limited to %u bytes (LITERAL-)",
                   IMAP_LITERAL_MINUS_MAX));
    if (kind == 1 && a.size > p->lim.max_message)
        return refuse_literal(p, &a, out,
                              refuse(p, out, "NO",
                                     "[TOOBIG] Message too large (limit %" PRIu64 " bytes)",
                                     p->lim.max_message));
    if (kind == 0 && (a.size > p->lim.max_literal || a.size > p->lim.max_command - p->len))
        return refuse_literal(p, &a, out, refuse(p, out, "BAD", "[TOOBIG] Literal too large"));

    if (kind == 1) {
        if (p->n_streamed == p->cap_streamed) {
            size_t ncap = p->cap_streamed ? p->cap_streamed * 2 : 4;
            size_t *ns = realloc(p->streamed, ncap * sizeof(*ns));
            if (!ns)
                return -ENOMEM;
            p->streamed = ns;
            p->cap_streamed = ncap;
        }
        p->streamed[p->n_streamed++] = p->len;
        p->msg_size = a.size;
        p->msg_offset = 0;
        p->state = ST_MESSAGE;
    } else {
        if ((rc = reserve(p, a.size)) < 0)
            return rc;
        p->state = ST_LITERAL;
    }
    p->remaining = a.size;
    p->line_start = p->len;
    if (a.size == 0)
        p->state = ST_LINE; /* nothing to copy or stream: the next line goes on */
    if (!a.sync)
        return IMAP_ITEM_NEED_MORE; /* go on at once */
    snprintf(p->response, sizeof(p->response), "+ Ready for literal data\r\n");
    out->response = p->response;
    find_tag(p);
    out->tag = p->tag[0] ? p->tag : NULL;
    if (kind == 1) {
        out->message = true;
        out->mailbox = p->append_mailbox;
        out->msg_index = p->n_streamed - 1;
        out->msg_size = a.size;
    }
    p->continue_pending = true;
    return IMAP_ITEM_CONTINUE;
}

/* A skipped line ended in buf (whole, unless skip_overflow) or tail. */
static int
skip_line_done(struct imap_parser *p, struct imap_parser_out *out)
{
    struct announce a;
    bool lit = p->skip_overflow ? announces_literal(p->tail, p->tail_len, false, &a)
                                : announces_literal(p->buf, p->len, true, &a);
    p->len = 0;
    if (!lit || a.sync) {
        /* The client got its BAD instead of "+" and will not send a synchronizing literal. */
        reset_command(p);
        return IMAP_ITEM_NEED_MORE;
    }
    uint64_t bound =
        p->lim.max_message > p->lim.max_literal ? p->lim.max_message : p->lim.max_literal;
    if (a.size > bound)
        return fatal(p, out, "Literal too large to skip");
    p->remaining = a.size;
    p->state = ST_SKIP_LITERAL;
    return IMAP_ITEM_NEED_MORE;
}

static void
keep_tail(struct imap_parser *p, const uint8_t *in, size_t n)
{
    if (n == 0)
        return;
    if (n >= TAIL_MAX) {
        memcpy(p->tail, in + n - TAIL_MAX, TAIL_MAX);
        p->tail_len = TAIL_MAX;
        return;
    }
    if (p->tail_len + n > TAIL_MAX) {
        size_t drop = p->tail_len + n - TAIL_MAX;
        memmove(p->tail, p->tail + drop, p->tail_len - drop);
        p->tail_len -= drop;
    }
    memcpy(p->tail + p->tail_len, in, n);
    p->tail_len += n;
}

/*
 * The line in buf[line_start..len) plus in[0..n) is over a limit: refuse the command and skip
 * the rest of it. The tag is read from the first bytes of the command, so those are held
 * even when the overflow happens on the first line.
 */
static int
overflow(struct imap_parser *p, const uint8_t *in, size_t n, bool line_too_long,
         struct imap_parser_out *out)
{
    p->tail_len = 0;
    if (p->len > p->line_start) /* buf may still be NULL */
        keep_tail(p, p->buf + p->line_start, p->len - p->line_start);
    keep_tail(p, in, n);
    int rc;
    if (p->raw_line) {
        p->raw_line = false;
        snprintf(p->response, sizeof(p->response), "* BAD [LIMIT] Line too long\r\n");
        out->response = p->response;
        rc = IMAP_ITEM_ERROR;
    } else {
        /* Hold the first min(max_line, TAG_ECHO_MAX + 1) bytes however the line was split,
         * so whether the tag is echoed never depends on how the bytes arrived. */
        size_t want = p->lim.max_line < TAG_ECHO_MAX + 1 ? p->lim.max_line : TAG_ECHO_MAX + 1;
        if (p->line_start == 0 && p->len < want) {
            size_t k = want - p->len;
            if (k > n)
                k = n;
            if ((rc = reserve(p, k)) < 0)
                return rc;
            memcpy(p->buf + p->len, in, k);
            p->len += k;
        }
        rc = refuse(p, out, "BAD", "[LIMIT] %s",
                    line_too_long ? "Line too long" : "Command too long");
    }
    reset_command(p);
    p->skip_overflow = true;
    p->state = ST_SKIP_LINE;
    return rc;
}

static int feed(struct imap_parser *p, const uint8_t *in, size_t len, struct imap_parser_out *out);

int
imap_parser_feed(struct imap_parser *p, const uint8_t *in, size_t len, struct imap_parser_out *out)
{
    memset(out, 0, sizeof(*out));
    if (p->state == ST_DEAD)
        return p->dead_error;
    p->continue_pending = false;
    int rc = feed(p, in, len, out);
    if (rc == -ENOMEM) {
        /* Part of a command may have been consumed: the stream cannot be trusted any more. */
        p->state = ST_DEAD;
        p->dead_error = -ENOMEM;
    }
    return rc;
}

static int
feed(struct imap_parser *p, const uint8_t *in, size_t len, struct imap_parser_out *out)
{
    size_t off = 0;
    int rc = IMAP_ITEM_NEED_MORE;
    while (rc == IMAP_ITEM_NEED_MORE && off < len) {
        switch (p->state) {
        case ST_LINE: {
            const uint8_t *lf = memchr(in + off, '\n', len - off);
            size_t n = lf ? (size_t)(lf - (in + off)) + 1 : len - off;
            size_t line_len = p->len - p->line_start + n;
            if (line_len > p->lim.max_line || p->len + n > p->lim.max_command) {
                /* The LF is left for ST_SKIP_LINE: what the line's end announces (maybe a
                 * BYE) must come after this BAD in its own call however the bytes were
                 * split. */
                size_t take = lf ? n - 1 : n;
                rc = overflow(p, in + off, take, line_len > p->lim.max_line, out);
                off += take;
                if (rc < 0)
                    return rc;
                break;
            }
            if ((rc = reserve(p, n)) < 0)
                return rc;
            memcpy(p->buf + p->len, in + off, n);
            p->len += n;
            off += n;
            rc = lf ? line_done(p, out) : IMAP_ITEM_NEED_MORE;
            break;
        }
        case ST_LITERAL: {
            size_t n = len - off < p->remaining ? len - off : (size_t)p->remaining;
            memcpy(p->buf + p->len, in + off, n);
            p->len += n;
            off += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                p->line_start = p->len;
                p->state = ST_LINE;
            }
            break;
        }
        case ST_MESSAGE: {
            size_t n = len - off < p->remaining ? len - off : (size_t)p->remaining;
            out->data = in + off;
            out->len = n;
            out->mailbox = p->append_mailbox;
            out->msg_index = p->n_streamed - 1;
            out->msg_offset = p->msg_offset;
            out->msg_size = p->msg_size;
            off += n;
            p->msg_offset += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                p->line_start = p->len;
                p->state = ST_LINE;
            }
            rc = IMAP_ITEM_LITERAL_DATA;
            break;
        }
        case ST_SKIP_LITERAL: {
            size_t n = len - off < p->remaining ? len - off : (size_t)p->remaining;
            off += n;
            p->remaining -= n;
            if (p->remaining == 0) {
                p->len = 0;
                p->skip_overflow = false;
                p->tail_len = 0;
                p->state = ST_SKIP_LINE;
            }
            break;
        }
        case ST_SKIP_LINE: {
            const uint8_t *lf = memchr(in + off, '\n', len - off);
            size_t n = lf ? (size_t)(lf - (in + off)) + 1 : len - off;
            if (!p->skip_overflow && p->len + n > p->lim.max_line) {
                p->tail_len = 0;
                if (p->len)
                    keep_tail(p, p->buf, p->len);
                p->skip_overflow = true;
                p->len = 0;
            }
            if (p->skip_overflow) {
                keep_tail(p, in + off, n);
            } else {
                if ((rc = reserve(p, n)) < 0)
                    return rc;
                memcpy(p->buf + p->len, in + off, n);
                p->len += n;
            }
            off += n;
            if (lf)
                rc = skip_line_done(p, out);
            break;
        }
        case ST_DEAD:
            return p->dead_error;
        }
    }
    out->used = off;
    return rc;
}

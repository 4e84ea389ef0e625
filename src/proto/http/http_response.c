/*
 * HTTP/1.1 response parser (RFC 9112), sans-IO. See http_response.h for the contract.
 *
 * The head is collected whole into a buffer of max_head bytes before it is parsed, because a
 * header may arrive split anywhere and parsing a complete head is far simpler than resuming
 * mid-token; the buffer then holds the NUL-terminated header names and values the accessors
 * lend out. Body bytes are never copied: a BODY item points into the caller's input. Chunk
 * size lines and trailers are scanned byte by byte with their lengths bounded, so no input
 * can make the parser hold more than max_head plus a small line buffer.
 */
#include "proto/http/http_response.h"

#include "lib/err.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A chunk-size line with extensions; ours carry none, others' are short. */
#define CHUNK_LINE_MAX 256
/* 15 hex digits: at most 2^60 - 1, so the size can never overflow a uint64_t sum. */
#define CHUNK_HEX_MAX 15

enum state {
    ST_HEAD,        /* collecting status line and headers */
    ST_BODY_LENGTH, /* Content-Length: remaining bytes */
    ST_BODY_CLOSE,  /* until the peer closes */
    ST_CHUNK_SIZE,  /* collecting a chunk-size line */
    ST_CHUNK_DATA,  /* remaining bytes of this chunk */
    ST_CHUNK_CR,    /* the CRLF after chunk data */
    ST_CHUNK_LF,
    ST_TRAILER, /* trailer lines after the last chunk, up to an empty line */
    ST_DONE,    /* END is next (or was returned) */
    ST_FAILED,
};

struct header {
    const char *name;
    const char *value;
};

struct http_response {
    struct http_response_limits limits;
    enum state state;
    int error; /* sticky, in ST_FAILED */
    char errbuf[160];

    char *head; /* max_head + 1 bytes (room for a NUL) */
    size_t head_len;

    int status;
    const char *reason;
    struct header headers[HTTP_RESPONSE_MAX_HEADERS];
    size_t n_headers;
    int64_t content_length; /* -1: none */

    uint64_t remaining;  /* ST_BODY_LENGTH, ST_CHUNK_DATA */
    uint64_t body_total; /* decoded body bytes so far, against max_body */
    char line[CHUNK_LINE_MAX];
    size_t line_len;      /* ST_CHUNK_SIZE; ST_TRAILER: bytes in the current trailer line */
    size_t trailer_total; /* ST_TRAILER: bytes of all trailer lines, bounded by max_head */
    bool trailer_cr;      /* ST_TRAILER: the last byte was CR */
};

int
http_response_new(const struct http_response_limits *limits, struct http_response **p_r)
{
    struct http_response *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->limits = *limits;
    p->head = malloc(limits->max_head + 1);
    if (!p->head) {
        free(p);
        return -ENOMEM;
    }
    p->state = ST_HEAD;
    p->content_length = -1;
    *p_r = p;
    return 0;
}

void
http_response_free(struct http_response **p)
{
    if (!*p)
        return;
    free((*p)->head);
    free(*p);
    *p = NULL;
}

static int fail(struct http_response *p, int err, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Poisons the parser with err and a message; returns err. */
static int
fail(struct http_response *p, int err, const char **error_r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errbuf, sizeof(p->errbuf), fmt, ap);
    va_end(ap);
    p->state = ST_FAILED;
    p->error = err;
    *error_r = p->errbuf;
    return err;
}

/* RFC 9110 tchar. */
static bool
is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* field-vchar, SP, HTAB and obs-text: anything but controls other than HTAB. */
static bool
is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Parses "HTTP/1.x SP 3DIGIT SP reason" in line (NUL-terminated, without CRLF). Writes the
 * reason's start into p.
 */
static int
parse_status_line(struct http_response *p, char *line, const char **error_r)
{
    if (strncmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' || line[7] > '9' || line[8] != ' ')
        return fail(p, TDM_EINVAL, error_r, "not an HTTP/1.x status line");
    const char *s = line + 9;
    for (int i = 0; i < 3; i++)
        if (s[i] < '0' || s[i] > '9')
            return fail(p, TDM_EINVAL, error_r, "status code is not three digits");
    int status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (status < 100 || status > 599)
        return fail(p, TDM_EINVAL, error_r, "status code %d is out of range", status);
    /* RFC 9112 4 requires the space even before an empty reason; servers that leave out
     * both are common enough, and harmless, to accept. */
    if (s[3] != ' ' && s[3] != '\0')
        return fail(p, TDM_EINVAL, error_r, "no space after the status code");
    const char *reason = s[3] ? s + 4 : s + 3;
    for (const char *r = reason; *r; r++)
        if (!is_field_char((unsigned char)*r))
            return fail(p, TDM_EINVAL, error_r, "control character in the reason phrase");
    p->status = status;
    p->reason = reason;
    return 0;
}

/* Parses "name: value" (NUL-terminated, without CRLF) in place into p->headers. */
static int
parse_header_line(struct http_response *p, char *line, unsigned lineno, const char **error_r)
{
    if (line[0] == ' ' || line[0] == '\t')
        return fail(p, TDM_EINVAL, error_r, "header line %u: obsolete line folding", lineno);
    char *colon = line;
    while (*colon && *colon != ':') {
        if (!is_tchar((unsigned char)*colon))
            return fail(p, TDM_EINVAL, error_r, "header line %u: bad character in the name",
                        lineno);
        colon++;
    }
    if (*colon != ':' || colon == line)
        return fail(p, TDM_EINVAL, error_r, "header line %u: no \"name:\"", lineno);
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    char *end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *end = '\0';
    for (const char *c = v; *c; c++)
        if (!is_field_char((unsigned char)*c))
            return fail(p, TDM_EINVAL, error_r, "header %s: control character in the value", line);
    if (p->n_headers == HTTP_RESPONSE_MAX_HEADERS)
        return fail(p, TDM_ELIMIT, error_r, "more than %d headers", HTTP_RESPONSE_MAX_HEADERS);
    p->headers[p->n_headers].name = line;
    p->headers[p->n_headers].value = v;
    p->n_headers++;
    return 0;
}

/* Decides how the body is framed, from the parsed headers. */
static int
choose_framing(struct http_response *p, const char **error_r)
{
    const char *te = NULL;
    int64_t cl = -1;
    for (size_t i = 0; i < p->n_headers; i++) {
        const struct header *h = &p->headers[i];
        if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
            if (te || strcasecmp(h->value, "chunked") != 0)
                return fail(p, TDM_EINVAL, error_r,
                            "Transfer-Encoding \"%.40s\": only chunked is understood", h->value);
            te = h->value;
        } else if (strcasecmp(h->name, "Content-Length") == 0) {
            const char *d = h->value;
            if (*d == '\0' || strlen(d) > 18)
                return fail(p, TDM_EINVAL, error_r, "Content-Length \"%.40s\" is not a length", d);
            int64_t v = 0;
            for (; *d; d++) {
                if (*d < '0' || *d > '9')
                    return fail(p, TDM_EINVAL, error_r, "Content-Length \"%.40s\" is not a length",
                                h->value);
                v = v * 10 + (*d - '0');
            }
            if (cl >= 0 && cl != v)
                return fail(p, TDM_EINVAL, error_r, "two different Content-Length headers");
            cl = v;
        }
    }
    if (te && cl >= 0)
        return fail(p, TDM_EINVAL, error_r,
                    "both Transfer-Encoding and Content-Length: the framing is ambiguous");
    p->content_length = cl;
    /* RFC 9112 6.3: 1xx, 204 and 304 have no body whatever the headers say. */
    if (p->status == 204 || p->status == 304) {
        p->content_length = 0;
        p->state = ST_DONE;
        return 0;
    }
    if (cl >= 0 && p->limits.max_body && (uint64_t)cl > p->limits.max_body)
        return fail(p, TDM_ELIMIT, error_r,
                    "body of %" PRId64 " bytes is over the limit of %" PRIu64, cl,
                    p->limits.max_body);
    if (te) {
        p->state = ST_CHUNK_SIZE;
        p->line_len = 0;
    } else if (cl >= 0) {
        p->remaining = (uint64_t)cl;
        p->state = cl == 0 ? ST_DONE : ST_BODY_LENGTH;
    } else {
        p->state = ST_BODY_CLOSE;
    }
    return 0;
}

/*
 * Parses the complete head in p->head[0..head_len), which ends in CRLF CRLF. Returns 0 with
 * the state set for the body, 1 for an interim (1xx) response to skip, or an error.
 */
static int
parse_head(struct http_response *p, const char **error_r)
{
    char *buf = p->head;
    size_t len = p->head_len - 2; /* keep the CRLF ending the last line; drop the empty one */
    buf[len] = '\0';
    p->n_headers = 0;
    unsigned lineno = 0;
    char *line = buf;
    while (line < buf + len) {
        char *lf = memchr(line, '\n', (size_t)(buf + len - line));
        /* The terminator search guarantees the last line ends in CRLF; any other LF must too. */
        if (!lf || lf == line || lf[-1] != '\r')
            return fail(p, TDM_EINVAL, error_r, "line %u does not end in CRLF", lineno + 1);
        lf[-1] = '\0';
        if (memchr(line, '\r', (size_t)(lf - 1 - line)))
            return fail(p, TDM_EINVAL, error_r, "bare CR in line %u", lineno + 1);
        int r = lineno == 0 ? parse_status_line(p, line, error_r)
                            : parse_header_line(p, line, lineno, error_r);
        if (r < 0)
            return r;
        lineno++;
        line = lf + 1;
    }
    if (p->status < 200) {
        if (p->status == 101)
            return fail(p, TDM_EINVAL, error_r, "101 Switching Protocols was never asked for");
        return 1;
    }
    return choose_framing(p, error_r);
}

/* ST_HEAD: takes bytes until CRLF CRLF; returns HEAD, NEED_MORE or an error. */
static int
feed_head(struct http_response *p, const uint8_t *in, size_t len, struct http_response_out *out,
          const char **error_r)
{
    size_t i = 0;
    while (i < len) {
        if (p->head_len == p->limits.max_head)
            return fail(p, TDM_ELIMIT, error_r, "status line and headers are over %zu bytes",
                        p->limits.max_head);
        char c = (char)in[i++];
        /* A NUL would cut the strings the head is parsed into. */
        if (c == '\0')
            return fail(p, TDM_EINVAL, error_r, "NUL byte in the response head");
        p->head[p->head_len++] = c;
        size_t n = p->head_len;
        /* Judge the first bytes at once: a peer that is not HTTP (an IMAP greeting, the
         * core's binary socket) may wait for us forever instead of sending CRLF CRLF. */
        if (n <= 7 && c != "HTTP/1."[n - 1])
            return fail(p, TDM_EINVAL, error_r, "not an HTTP/1.x status line");
        if (n >= 4 && memcmp(p->head + n - 4, "\r\n\r\n", 4) == 0) {
            int r = parse_head(p, error_r);
            if (r < 0)
                return r;
            p->head_len = 0;
            if (r == 1) /* interim response: start over with the real one */
                continue;
            out->used += i;
            return HTTP_RESPONSE_HEAD;
        }
    }
    out->used += i;
    return HTTP_RESPONSE_NEED_MORE;
}

/* Counts n body bytes against max_body. */
static int
count_body(struct http_response *p, uint64_t n, const char **error_r)
{
    p->body_total += n;
    if (p->limits.max_body && p->body_total > p->limits.max_body)
        return fail(p, TDM_ELIMIT, error_r, "body is over the limit of %" PRIu64 " bytes",
                    p->limits.max_body);
    return 0;
}

/* ST_CHUNK_SIZE: one byte of "hex[;ext]CRLF". Returns 0, or an error. */
static int
chunk_size_byte(struct http_response *p, uint8_t c, const char **error_r)
{
    if (c != '\n') {
        if (p->line_len == sizeof(p->line))
            return fail(p, TDM_ELIMIT, error_r, "chunk size line over %d bytes", CHUNK_LINE_MAX);
        p->line[p->line_len++] = (char)c;
        return 0;
    }
    if (p->line_len == 0 || p->line[p->line_len - 1] != '\r')
        return fail(p, TDM_EINVAL, error_r, "chunk size line does not end in CRLF");
    size_t n = p->line_len - 1, i = 0;
    uint64_t size = 0;
    for (; i < n && hexval((unsigned char)p->line[i]) >= 0; i++) {
        if (i == CHUNK_HEX_MAX)
            return fail(p, TDM_ELIMIT, error_r, "chunk size has more than %d hex digits",
                        CHUNK_HEX_MAX);
        size = size * 16 + (uint64_t)hexval((unsigned char)p->line[i]);
    }
    if (i == 0)
        return fail(p, TDM_EINVAL, error_r, "chunk size is not hexadecimal");
    /* Whatever follows the digits must be chunk extensions, which we ignore; but they may not
     * hide a CR or other control character. */
    while (i < n && (p->line[i] == ' ' || p->line[i] == '\t'))
        i++;
    if (i < n && p->line[i] != ';')
        return fail(p, TDM_EINVAL, error_r, "junk after the chunk size");
    for (; i < n; i++)
        if (!is_field_char((unsigned char)p->line[i]))
            return fail(p, TDM_EINVAL, error_r, "control character in a chunk extension");
    p->line_len = 0;
    if (size == 0) {
        p->state = ST_TRAILER;
        p->trailer_total = 0;
        p->trailer_cr = false;
        return 0;
    }
    int r = count_body(p, size, error_r);
    if (r < 0)
        return r;
    p->remaining = size;
    p->state = ST_CHUNK_DATA;
    return 0;
}

/* ST_TRAILER: one byte of the trailer section; lines are skipped, the empty one ends it. */
static int
trailer_byte(struct http_response *p, uint8_t c, const char **error_r)
{
    if (++p->trailer_total > p->limits.max_head)
        return fail(p, TDM_ELIMIT, error_r, "trailers are over %zu bytes", p->limits.max_head);
    if (c == '\n') {
        if (!p->trailer_cr)
            return fail(p, TDM_EINVAL, error_r, "trailer line does not end in CRLF");
        bool empty = p->line_len == 1; /* just the CR */
        p->line_len = 0;
        p->trailer_cr = false;
        if (empty)
            p->state = ST_DONE;
        return 0;
    }
    if (p->trailer_cr)
        return fail(p, TDM_EINVAL, error_r, "bare CR in a trailer");
    if (c == '\0')
        return fail(p, TDM_EINVAL, error_r, "NUL byte in a trailer");
    p->trailer_cr = c == '\r';
    p->line_len++;
    return 0;
}

int
http_response_feed(struct http_response *p, const uint8_t *in, size_t len,
                   struct http_response_out *out, const char **error_r)
{
    memset(out, 0, sizeof(*out));
    for (;;) {
        size_t avail = len - out->used;
        const uint8_t *at = in + out->used;
        int r = 0;
        switch (p->state) {
        case ST_FAILED:
            *error_r = p->errbuf;
            return p->error;
        case ST_HEAD:
            return feed_head(p, at, avail, out, error_r);
        case ST_DONE:
            if (avail)
                return fail(p, TDM_EINVAL, error_r, "%zu bytes after the end of the response",
                            avail);
            return HTTP_RESPONSE_END;
        case ST_BODY_CLOSE: {
            if (!avail)
                return HTTP_RESPONSE_NEED_MORE;
            /* Give what fits under the limit first and fail on the byte past it, so the
             * caller sees the same body however the input was split. (body_total never
             * exceeds max_body here: count_body() fails first.) */
            size_t n = avail;
            if (p->limits.max_body) {
                uint64_t room = p->limits.max_body - p->body_total;
                if (room == 0)
                    return count_body(p, 1, error_r);
                if (n > room)
                    n = (size_t)room;
            }
            p->body_total += n;
            out->body = at;
            out->body_len = n;
            out->used += n;
            return HTTP_RESPONSE_BODY;
        }
        case ST_BODY_LENGTH:
        case ST_CHUNK_DATA: {
            if (!avail)
                return HTTP_RESPONSE_NEED_MORE;
            size_t n = avail < p->remaining ? avail : (size_t)p->remaining;
            if (p->state == ST_BODY_LENGTH && (r = count_body(p, n, error_r)) < 0)
                return r;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = p->state == ST_BODY_LENGTH ? ST_DONE : ST_CHUNK_CR;
            out->body = at;
            out->body_len = n;
            out->used += n;
            return HTTP_RESPONSE_BODY;
        }
        case ST_CHUNK_CR:
        case ST_CHUNK_LF:
            if (!avail)
                return HTTP_RESPONSE_NEED_MORE;
            if (*at != (p->state == ST_CHUNK_CR ? '\r' : '\n'))
                return fail(p, TDM_EINVAL, error_r, "chunk data is not followed by CRLF");
            p->state = p->state == ST_CHUNK_CR ? ST_CHUNK_LF : ST_CHUNK_SIZE;
            out->used++;
            break;
        case ST_CHUNK_SIZE:
        case ST_TRAILER:
            if (!avail)
                return HTTP_RESPONSE_NEED_MORE;
            r = p->state == ST_CHUNK_SIZE ? chunk_size_byte(p, *at, error_r)
                                          : trailer_byte(p, *at, error_r);
            if (r < 0)
                return r;
            out->used++;
            break;
        }
    }
}

int
http_response_eof(struct http_response *p, const char **error_r)
{
    switch (p->state) {
    case ST_FAILED:
        *error_r = p->errbuf;
        return p->error;
    case ST_DONE:
    case ST_BODY_CLOSE:
        p->state = ST_DONE;
        return HTTP_RESPONSE_END;
    case ST_HEAD:
        return fail(p, TDM_EINVAL, error_r,
                    p->head_len ? "connection closed in the middle of the response head"
                                : "connection closed without a response");
    default:
        return fail(p, TDM_EINVAL, error_r, "connection closed in the middle of the body");
    }
}

int
http_response_status(const struct http_response *p)
{
    return p->status;
}

const char *
http_response_reason(const struct http_response *p)
{
    return p->reason ? p->reason : "";
}

const char *
http_response_header(const struct http_response *p, const char *name)
{
    for (size_t i = 0; i < p->n_headers; i++)
        if (strcasecmp(p->headers[i].name, name) == 0)
            return p->headers[i].value;
    return NULL;
}

int64_t
http_response_content_length(const struct http_response *p)
{
    return p->content_length;
}

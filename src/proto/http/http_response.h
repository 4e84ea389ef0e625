#ifndef TANDEM_PROTO_HTTP_HTTP_RESPONSE_H
#define TANDEM_PROTO_HTTP_HTTP_RESPONSE_H

/*
 * An HTTP/1.1 response parser that never touches a socket (sans-IO): the caller feeds it the
 * bytes it read, in pieces of any size, and gets back one item at a time: the head (status
 * line and headers) once, then body bytes, then the end. Bodies are framed by Content-Length,
 * by chunked transfer coding, or, with neither, by the peer closing the connection
 * (http_response_eof()). Interim 1xx responses are skipped. Responses to HEAD are not
 * supported: tandemctl never sends HEAD.
 *
 * Strict on purpose, because the peer is our own server: lines end in CRLF, no obsolete line
 * folding, Transfer-Encoding may only be "chunked", and a response with both Transfer-Encoding
 * and Content-Length (the request-smuggling shape) is refused.
 *
 * The first error poisons the parser: every later call returns the same error.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_response;

struct http_response_limits {
    size_t max_head;   /* bytes of status line and headers, CRLFs included; also bounds trailers */
    uint64_t max_body; /* bytes of decoded body; 0 = no limit (a stream such as events --follow) */
};

#define HTTP_RESPONSE_MAX_HEADERS 64

enum http_response_item {
    HTTP_RESPONSE_NEED_MORE = 0, /* every byte given was taken; feed more */
    HTTP_RESPONSE_HEAD = 1,      /* status and headers are available (accessors below) */
    HTTP_RESPONSE_BODY = 2,      /* out->body[0..body_len) is body, borrowed from the input */
    HTTP_RESPONSE_END = 3,       /* the response is complete */
};

struct http_response_out {
    size_t used;         /* bytes of the input consumed by this call */
    const uint8_t *body; /* HTTP_RESPONSE_BODY: points into the input given to this call */
    size_t body_len;
};

/* Returns 0 and an owned parser in *p_r, or -ENOMEM. */
int http_response_new(const struct http_response_limits *limits, struct http_response **p_r);

/* Frees *p and sets it to NULL; NULL is fine. */
void http_response_free(struct http_response **p);

/*
 * Feeds in[0..len) (len may be 0). Returns an enum http_response_item with out filled in;
 * the caller calls again with in + out->used until it has what it wants. After END, feeding
 * more bytes is an error (a second response was never asked for). Returns TDM_EINVAL
 * (malformed) or TDM_ELIMIT (a limit) with *error_r, a message owned by the parser and valid
 * until it is freed.
 */
int http_response_feed(struct http_response *p, const uint8_t *in, size_t len,
                       struct http_response_out *out, const char **error_r);

/*
 * The peer closed the connection. Returns HTTP_RESPONSE_END when that ends the response (a
 * body delimited by close, or a response already complete), else TDM_EINVAL with *error_r.
 */
int http_response_eof(struct http_response *p, const char **error_r);

/* After HEAD: the status code (100..599), the reason phrase (borrowed from the parser). */
int http_response_status(const struct http_response *p);
const char *http_response_reason(const struct http_response *p);

/* After HEAD: the value of the first header called name (case-insensitive), leading and
 * trailing white space removed, borrowed from the parser; NULL when absent. */
const char *http_response_header(const struct http_response *p, const char *name);

/* After HEAD: the body length from Content-Length, or -1 when chunked or close-delimited. */
int64_t http_response_content_length(const struct http_response *p);

#endif

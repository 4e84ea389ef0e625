/*
 * Fuzzes the HTTP/1.1 response parser (src/proto/http/http_response.c) that tandemctl runs
 * on whatever an admin endpoint (or something pretending to be one) sends. Beyond not
 * crashing, the parser must not care how the bytes were cut: the input is fed whole, then in
 * pieces whose sizes come from the input's first byte, and both runs must give the same
 * status, body and outcome. Body items must point inside the piece they came from.
 */
#include "proto/http/http_response.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
    int rc;
    int status;
    int heads;
    uint8_t *body;
    size_t body_len;
};

/* Feeds data in pieces of `step` bytes (0: whole), then the end of input. */
static void
run(const uint8_t *data, size_t size, size_t step, struct outcome *o)
{
    /* Small limits so the fuzzer reaches them. */
    const struct http_response_limits lim = {.max_head = 512, .max_body = 4096};
    struct http_response *p = NULL;
    memset(o, 0, sizeof(*o));
    o->body = malloc(4096 + 1);
    if (!o->body || http_response_new(&lim, &p) != 0)
        abort();
    size_t at = 0;
    bool failed = false;
    while (!failed && at < size) {
        size_t n = step && size - at > step ? step : size - at;
        /* A copy of exactly the piece, so reading past it is an ASan error. */
        uint8_t *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, data + at, n);
        size_t off = 0;
        for (;;) {
            struct http_response_out out;
            const char *err = NULL;
            int r = http_response_feed(p, piece + off, n - off, &out, &err);
            if (r < 0) {
                if (!err || !*err)
                    abort();
                o->rc = r;
                failed = true;
                break;
            }
            if (out.used > n - off)
                abort();
            if (r == HTTP_RESPONSE_HEAD) {
                o->heads++;
                o->status = http_response_status(p);
                if (o->status < 200 || o->status > 599)
                    abort();
            } else if (r == HTTP_RESPONSE_BODY) {
                if (out.body < piece + off || out.body + out.body_len > piece + n ||
                    out.body_len == 0 || o->body_len + out.body_len > lim.max_body)
                    abort();
                memcpy(o->body + o->body_len, out.body, out.body_len);
                o->body_len += out.body_len;
            } else if (r == HTTP_RESPONSE_NEED_MORE) {
                if (off + out.used != n)
                    abort();
                break;
            } else if (r == HTTP_RESPONSE_END && off + out.used == n) {
                break;
            }
            off += out.used;
        }
        free(piece);
        at += n;
    }
    if (!failed) {
        const char *err = NULL;
        o->rc = http_response_eof(p, &err);
        if (o->rc < 0 && (!err || !*err))
            abort();
    }
    if (o->heads > 1)
        abort();
    http_response_free(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] % 17 + 1;
    data++, size--;
    struct outcome whole, split;
    run(data, size, 0, &whole);
    run(data, size, step, &split);
    if (whole.rc != split.rc || whole.status != split.status || whole.heads != split.heads ||
        whole.body_len != split.body_len || memcmp(whole.body, split.body, whole.body_len) != 0)
        abort();
    free(whole.body);
    free(split.body);
    return 0;
}

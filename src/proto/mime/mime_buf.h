#ifndef TANDEM_PROTO_MIME_MIME_BUF_H
#define TANDEM_PROTO_MIME_MIME_BUF_H

/*
 * A growable byte buffer for what the MIME module writes (IMAP text, decoded content, UTF-8
 * text for search). The caller owns it: start from MIME_BUF_INIT, free with mime_buf_clear().
 * An allocation failure is sticky: later appends do nothing and mime_buf_error() returns
 * -ENOMEM, so a writer can append freely and check once at the end.
 */

#include <stddef.h>
#include <stdint.h>

struct mime_buf {
    uint8_t *data; /* NUL-terminated when len > 0 (the NUL is not counted) */
    size_t len;
    size_t cap;
    int error; /* 0 or -ENOMEM */
};

#define MIME_BUF_INIT                                                                              \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

void mime_buf_append(struct mime_buf *b, const void *p, size_t len);
void mime_buf_append_str(struct mime_buf *b, const char *s);
void mime_buf_append_byte(struct mime_buf *b, uint8_t c);
void mime_buf_printf(struct mime_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Makes room for len more bytes and returns where they go (NULL after a failure); the caller
 * writes at most len bytes there and then calls mime_buf_commit() with how many it wrote. */
uint8_t *mime_buf_reserve(struct mime_buf *b, size_t len);
void mime_buf_commit(struct mime_buf *b, size_t len);

/* 0 or -ENOMEM (sticky). */
int mime_buf_error(const struct mime_buf *b);

/* Frees the data and resets b to MIME_BUF_INIT. */
void mime_buf_clear(struct mime_buf *b);

#endif

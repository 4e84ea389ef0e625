#ifndef TANDEM_PROTO_SMTP_SMTP_REPLY_H
#define TANDEM_PROTO_SMTP_SMTP_REPLY_H

/*
 * SMTP/LMTP reply writer (RFC 5321 §4.2, RFC 2034, RFC 3463) and the growable byte buffer the
 * smtp module writes into. A reply is a three-digit code, an optional enhanced status code
 * ("class.subject.detail") and text; text with '\n' in it becomes a multi-line reply in which
 * every line repeats the code (with '-' after it on all but the last) and the enhanced code.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes owned by the buffer; {0} is an empty buffer. */
struct smtp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Appends data[0..n). Returns 0 or -ENOMEM (the buffer is then unchanged). */
int smtp_buf_append(struct smtp_buf *b, const void *data, size_t n);

/* Appends a NUL-terminated string. Returns 0 or -ENOMEM. */
int smtp_buf_puts(struct smtp_buf *b, const char *s);

/* Drops the first n bytes (n <= b->len), keeping the rest. */
void smtp_buf_consume(struct smtp_buf *b, size_t n);

/* Frees the bytes and leaves an empty buffer. */
void smtp_buf_free(struct smtp_buf *b);

/*
 * True when enh is a valid RFC 3463 code ("2.1.0": class 2, 4 or 5, subject and detail of one
 * to three digits without leading zeros beyond "0") whose class equals code's first digit.
 */
bool smtp_enh_valid(int code, const char *enh);

/*
 * Appends one reply. code is 200..599; enh is NULL (no enhanced code: greetings, 354, the
 * EHLO answer) or a code smtp_enh_valid() accepts; text is printable ASCII, and each '\n' starts
 * a new line of the reply. Returns 0, TDM_EINVAL (the caller's bug: bad code, enh or a control
 * character in text; nothing is appended) or -ENOMEM.
 */
int smtp_reply_write(struct smtp_buf *b, int code, const char *enh, const char *text);

#endif

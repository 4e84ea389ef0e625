/* Growable byte buffer with a sticky allocation error; see mime_buf.h. */
#include "proto/mime/mime_buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *
mime_buf_reserve(struct mime_buf *b, size_t len)
{
    if (b->error)
        return NULL;
    /* +1 keeps room for the terminating NUL. */
    if (len > SIZE_MAX / 2 - b->len - 1) {
        b->error = -ENOMEM;
        return NULL;
    }
    size_t need = b->len + len + 1;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->error = -ENOMEM;
            return NULL;
        }
        b->data = d;
        b->cap = cap;
    }
    return b->data + b->len;
}

void
mime_buf_commit(struct mime_buf *b, size_t len)
{
    if (b->error)
        return;
    b->len += len;
    b->data[b->len] = '\0';
}

void
mime_buf_append(struct mime_buf *b, const void *p, size_t len)
{
    uint8_t *d = mime_buf_reserve(b, len);
    if (!d)
        return;
    if (len)
        memcpy(d, p, len);
    mime_buf_commit(b, len);
}

void
mime_buf_append_str(struct mime_buf *b, const char *s)
{
    mime_buf_append(b, s, strlen(s));
}

void
mime_buf_append_byte(struct mime_buf *b, uint8_t c)
{
    mime_buf_append(b, &c, 1);
}

void
mime_buf_printf(struct mime_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    /* Only short numeric text goes through here; longer output would be a caller bug. */
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->error = b->error ? b->error : -ENOMEM;
        return;
    }
    mime_buf_append(b, tmp, (size_t)n);
}

int
mime_buf_error(const struct mime_buf *b)
{
    return b->error;
}

void
mime_buf_clear(struct mime_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->error = 0;
}

/* The reply writer and the buffer it writes into (smtp_reply.h). */
#include "proto/smtp/smtp_reply.h"

#include "lib/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
smtp_buf_append(struct smtp_buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

int
smtp_buf_puts(struct smtp_buf *b, const char *s)
{
    return smtp_buf_append(b, s, strlen(s));
}

void
smtp_buf_consume(struct smtp_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void
smtp_buf_free(struct smtp_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* One to three digits, no leading zero unless the number is 0 (RFC 3463 §2). */
static const char *
enh_number(const char *p)
{
    size_t n = 0;
    while (p[n] >= '0' && p[n] <= '9')
        n++;
    if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
        return NULL;
    return p + n;
}

bool
smtp_enh_valid(int code, const char *enh)
{
    if (!enh || code < 200 || code > 599)
        return false;
    char cls = (char)('0' + code / 100);
    if (cls != '2' && cls != '4' && cls != '5')
        return false;
    if (enh[0] != cls || enh[1] != '.')
        return false;
    const char *p = enh_number(enh + 2);
    if (!p || *p != '.')
        return false;
    p = enh_number(p + 1);
    return p && *p == '\0';
}

int
smtp_reply_write(struct smtp_buf *b, int code, const char *enh, const char *text)
{
    if (code < 200 || code > 599 || (enh && !smtp_enh_valid(code, enh)))
        return TDM_EINVAL;
    for (const char *p = text; *p; p++)
        if (*p != '\n' && ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e))
            return TDM_EINVAL;
    size_t start = b->len;
    const char *line = text;
    for (;;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        /* Reply-code ( "-" / [SP] ) [enh [SP]] text: no space dangles before CRLF (§4.2). */
        char head[32];
        int n = snprintf(head, sizeof(head), "%d%s%s%s", code,
                         nl             ? "-"
                         : (enh || len) ? " "
                                        : "",
                         enh ? enh : "", enh && len ? " " : "");
        int r = smtp_buf_append(b, head, (size_t)n);
        if (r == 0)
            r = smtp_buf_append(b, line, len);
        if (r == 0)
            r = smtp_buf_append(b, "\r\n", 2);
        if (r != 0) {
            b->len = start; /* never leave half a reply behind */
            return r;
        }
        if (!nl)
            return 0;
        line = nl + 1;
    }
}

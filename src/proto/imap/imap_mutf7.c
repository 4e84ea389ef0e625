/*
 * Modified UTF-7 (see imap_mutf7.h). Text is UTF-16 in the base64 runs: a code point above
 * U+FFFF is a surrogate pair. The alphabet is base64's with ',' in place of '/', no padding.
 * Both functions build into the output buffer and roll it back on an error, so a refused name
 * never leaves half an encoding behind.
 */
#include "proto/imap/imap_mutf7.h"

#include "lib/err.h"
#include "proto/imap/imap_write.h"

#include <stdbool.h>
#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',')
        return 63;
    return -1;
}

static bool
printable(uint32_t c)
{
    return c >= 0x20 && c <= 0x7e;
}

/* One code point from s[*i..len) (strict UTF-8), or -1. */
static int32_t
utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if ((c & 0xe0) == 0xc0) {
        n = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 3, cp = c & 0x07, min = 0x10000;
    } else {
        return -1;
    }
    if (len - *i <= n)
        return -1;
    for (size_t k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[*i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *i += n + 1;
    return (int32_t)cp;
}

static void
put_utf8(struct imap_buf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
    }
    imap_buf_append(b, u, n);
}

static int
rollback(struct imap_buf *out, size_t mark, int err)
{
    if (out->error)
        return out->error;
    out->len = mark;
    if (out->data)
        out->data[mark] = '\0';
    return err;
}

int
imap_mutf7_encode(const char *utf8, size_t len, struct imap_buf *out)
{
    const unsigned char *s = (const unsigned char *)utf8;
    size_t mark = out->len, i = 0;
    while (i < len) {
        if (printable(s[i])) {
            imap_buf_append(out, s[i] == '&' ? "&-" : (const char *)&s[i], s[i] == '&' ? 2 : 1);
            i++;
            continue;
        }
        /* A run of non-printable code points, as UTF-16 in modified base64. */
        imap_buf_append(out, "&", 1);
        uint32_t bits = 0;
        int nbits = 0;
        while (i < len && !printable(s[i])) {
            int32_t cp = utf8_next(s, len, &i);
            if (cp <= 0)
                return rollback(out, mark, TDM_EINVAL);
            uint16_t units[2];
            int nu = 1;
            if (cp >= 0x10000) {
                units[0] = (uint16_t)(0xd800 + ((cp - 0x10000) >> 10));
                units[1] = (uint16_t)(0xdc00 + ((cp - 0x10000) & 0x3ff));
                nu = 2;
            } else {
                units[0] = (uint16_t)cp;
            }
            for (int k = 0; k < nu; k++) {
                bits = (bits << 16) | units[k];
                nbits += 16;
                while (nbits >= 6) {
                    nbits -= 6;
                    imap_buf_append(out, &alphabet[(bits >> nbits) & 0x3f], 1);
                }
            }
        }
        if (nbits > 0)
            imap_buf_append(out, &alphabet[(bits << (6 - nbits)) & 0x3f], 1);
        imap_buf_append(out, "-", 1);
    }
    return out->error;
}

int
imap_mutf7_decode(const char *str, size_t len, struct imap_buf *out)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t mark = out->len, i = 0;
    bool after_run = false; /* the previous thing was a base64 run */
    while (i < len) {
        if (s[i] != '&') {
            if (!printable(s[i]))
                return rollback(out, mark, TDM_EINVAL);
            imap_buf_append(out, &s[i], 1);
            i++;
            after_run = false;
            continue;
        }
        i++;
        if (i < len && s[i] == '-') {
            imap_buf_append(out, "&", 1);
            i++;
            after_run = false;
            continue;
        }
        if (after_run)
            return rollback(out, mark, TDM_EINVAL); /* "&..-&..-" should have been one run */
        uint32_t bits = 0, high = 0;
        int nbits = 0;
        size_t units = 0;
        while (i < len && s[i] != '-') {
            int v = b64_value(s[i]);
            if (v < 0)
                return rollback(out, mark, TDM_EINVAL);
            bits = (bits << 6) | (uint32_t)v;
            nbits += 6;
            i++;
            if (nbits < 16)
                continue;
            nbits -= 16;
            uint32_t u = (bits >> nbits) & 0xffff;
            units++;
            if (high) {
                if (u < 0xdc00 || u > 0xdfff)
                    return rollback(out, mark, TDM_EINVAL);
                put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00));
                high = 0;
            } else if (u >= 0xd800 && u <= 0xdbff) {
                high = u;
            } else if (u >= 0xdc00 && u <= 0xdfff) {
                return rollback(out, mark, TDM_EINVAL);
            } else if (printable(u) || u == 0) {
                return rollback(out, mark, TDM_EINVAL); /* must be sent as itself */
            } else {
                put_utf8(out, u);
            }
        }
        /* Closed by "-", at least one unit, no dangling surrogate, and the leftover bits are
         * padding: fewer than 6 and all zero. */
        if (i == len || units == 0 || high || nbits >= 6 || (bits & ((1u << nbits) - 1)))
            return rollback(out, mark, TDM_EINVAL);
        i++;
        after_run = true;
    }
    return out->error;
}

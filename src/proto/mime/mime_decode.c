/* base64 and quoted-printable decoders as state machines fed byte by byte; see mime_decode.h. */
#include "proto/mime/mime_decode.h"

#include "proto/mime/mime_int.h"

#include <string.h>

enum {
    /* base64 */
    B64_DATA = 0,
    B64_DONE, /* padding seen */
    /* quoted-printable */
    QP_TEXT = 0,
    QP_CR,    /* a CR that may start a CRLF */
    QP_EQ,    /* after '=' */
    QP_EQ1,   /* after '=' and one hex digit (in acc) */
    QP_EQ_WS, /* after '=' and white space: a soft break if the line ends now */
    QP_SOFT_CR,
};

void
mime_decoder_init(struct mime_decoder *d, enum mime_encoding enc)
{
    memset(d, 0, sizeof(*d));
    d->enc = enc;
}

bool
mime_decoder_clean(const struct mime_decoder *d)
{
    return d->errors == 0;
}

/* base64 alphabet: value + 1, so that 0 means "not in the alphabet". */
static const uint8_t b64tab[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

static size_t
b64_feed(struct mime_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        /* Fast path: four alphabet characters on a group boundary are three bytes. Lines of
         * 76 characters make this nearly all of the input. */
        while (d->n == 0 && d->state == B64_DATA && len - i >= 4) {
            uint32_t a = b64tab[in[i]], b = b64tab[in[i + 1]], c2 = b64tab[in[i + 2]],
                     e = b64tab[in[i + 3]];
            if (!a || !b || !c2 || !e)
                break;
            uint32_t v = (a - 1) << 18 | (b - 1) << 12 | (c2 - 1) << 6 | (e - 1);
            out[o++] = (uint8_t)(v >> 16);
            out[o++] = (uint8_t)(v >> 8);
            out[o++] = (uint8_t)v;
            i += 4;
        }
        if (i == len)
            break;
        uint8_t c = in[i];
        if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
            continue;
        if (d->state == B64_DONE) {
            if (c != '=') /* more padding is fine, more data is not */
                d->errors++;
            continue;
        }
        if (c == '=') {
            /* "xx==" and "xxx=" end the data; '=' anywhere else is an error. */
            if (d->n == 2)
                out[o++] = (uint8_t)(d->acc >> 4);
            else if (d->n == 3) {
                out[o++] = (uint8_t)(d->acc >> 10);
                out[o++] = (uint8_t)(d->acc >> 2);
            } else
                d->errors++;
            d->n = 0;
            d->acc = 0;
            d->state = B64_DONE;
            continue;
        }
        if (!b64tab[c]) {
            d->errors++;
            continue;
        }
        d->acc = (d->acc << 6) | (uint32_t)(b64tab[c] - 1);
        if (++d->n == 4) {
            out[o++] = (uint8_t)(d->acc >> 16);
            out[o++] = (uint8_t)(d->acc >> 8);
            out[o++] = (uint8_t)d->acc;
            d->n = 0;
            d->acc = 0;
        }
    }
    return o;
}

static size_t
b64_finish(struct mime_decoder *d, uint8_t *out)
{
    size_t o = 0;
    /* Unpadded ends are common (and harmless): decode what the bits give. */
    if (d->n == 2)
        out[o++] = (uint8_t)(d->acc >> 4);
    else if (d->n == 3) {
        out[o++] = (uint8_t)(d->acc >> 10);
        out[o++] = (uint8_t)(d->acc >> 2);
    } else if (d->n == 1)
        d->errors++;
    d->n = 0;
    return o;
}

static size_t
flush_ws(struct mime_decoder *d, uint8_t *out)
{
    size_t n = d->ws_len;
    memcpy(out, d->ws, n);
    d->ws_len = 0;
    return n;
}

static size_t
qp_feed(struct mime_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
    again:
        switch (d->state) {
        case QP_TEXT:
            if (c == '=') {
                o += flush_ws(d, out + o);
                d->state = QP_EQ;
            } else if (mime__is_wsp(c)) {
                if (d->ws_len == MIME_QP_WS_MAX)
                    o += flush_ws(d, out + o);
                d->ws[d->ws_len++] = c;
            } else if (c == '\r') {
                d->state = QP_CR;
            } else if (c == '\n') {
                d->ws_len = 0; /* trailing white space is padding */
                out[o++] = '\n';
            } else {
                o += flush_ws(d, out + o);
                out[o++] = c;
            }
            break;
        case QP_CR:
            d->state = QP_TEXT;
            if (c == '\n') {
                d->ws_len = 0;
                out[o++] = '\r';
                out[o++] = '\n';
                break;
            }
            o += flush_ws(d, out + o);
            out[o++] = '\r'; /* a bare CR is data */
            goto again;
        case QP_EQ:
            if (mime__hexval(c) >= 0) {
                d->acc = c;
                d->state = QP_EQ1;
            } else if (c == '\r') {
                d->state = QP_SOFT_CR;
            } else if (c == '\n') {
                d->state = QP_TEXT;
            } else if (mime__is_wsp(c)) {
                d->ws[d->ws_len++] = c;
                d->state = QP_EQ_WS;
            } else {
                d->errors++;
                out[o++] = '=';
                d->state = QP_TEXT;
                goto again;
            }
            break;
        case QP_EQ1:
            d->state = QP_TEXT;
            if (mime__hexval(c) >= 0) {
                out[o++] = (uint8_t)(mime__hexval((uint8_t)d->acc) * 16 + mime__hexval(c));
                break;
            }
            d->errors++;
            out[o++] = '=';
            out[o++] = (uint8_t)d->acc;
            goto again;
        case QP_EQ_WS:
            if (mime__is_wsp(c)) {
                if (d->ws_len == MIME_QP_WS_MAX) {
                    /* Too long to be padding before a soft break: it is text. */
                    d->errors++;
                    out[o++] = '=';
                    o += flush_ws(d, out + o);
                    d->state = QP_TEXT;
                    goto again;
                }
                d->ws[d->ws_len++] = c;
            } else if (c == '\r') {
                d->ws_len = 0;
                d->state = QP_SOFT_CR;
            } else if (c == '\n') {
                d->ws_len = 0;
                d->state = QP_TEXT;
            } else {
                d->errors++;
                out[o++] = '=';
                o += flush_ws(d, out + o);
                d->state = QP_TEXT;
                goto again;
            }
            break;
        case QP_SOFT_CR:
            d->state = QP_TEXT;
            if (c == '\n')
                break;
            goto again; /* "=\r" then text: the CR ended the soft break */
        }
    }
    return o;
}

static size_t
qp_finish(struct mime_decoder *d, uint8_t *out)
{
    size_t o = 0;
    switch (d->state) {
    case QP_CR:
        out[o++] = '\r';
        break;
    case QP_EQ1:
        d->errors++;
        out[o++] = '=';
        out[o++] = (uint8_t)d->acc;
        break;
    default:
        /* '=' at the very end is a soft break before nothing; white space at the end of
         * the last line is padding like any other trailing white space. */
        break;
    }
    d->ws_len = 0;
    d->state = QP_TEXT;
    return o;
}

size_t
mime_decoder_feed(struct mime_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    switch (d->enc) {
    case MIME_ENC_BASE64:
        return b64_feed(d, in, len, out);
    case MIME_ENC_QP:
        return qp_feed(d, in, len, out);
    default:
        if (len)
            memcpy(out, in, len);
        return len;
    }
}

size_t
mime_decoder_finish(struct mime_decoder *d, uint8_t *out)
{
    switch (d->enc) {
    case MIME_ENC_BASE64:
        return b64_finish(d, out);
    case MIME_ENC_QP:
        return qp_finish(d, out);
    default:
        return 0;
    }
}

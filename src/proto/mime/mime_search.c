/* Search text and case-insensitive matching; what is matched and folded is in mime_search.h. */
#include "proto/mime/mime_search.h"

#include "proto/mime/mime_charset.h"
#include "proto/mime/mime_decode.h"
#include "proto/mime/mime_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

uint32_t
mime_unicode_fold(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c < 0x100) {
        if (c == 0xb5)
            return 0x3bc; /* micro sign to mu */
        if (c >= 0xc0 && c <= 0xde && c != 0xd7)
            return c + 32;
        return c;
    }
    if (c < 0x180) { /* Latin Extended-A: pairs, upper case first */
        if (c == 0x130)
            return c; /* Turkic: only full folding exists */
        if (c == 0x178)
            return 0xff;
        if (c == 0x17f)
            return 's';
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e))
            return (c & 1) ? c + 1 : c;
        if (c == 0x149 || c == 0x138)
            return c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x370 && c < 0x400) { /* Greek */
        if (c == 0x386)
            return 0x3ac;
        if (c >= 0x388 && c <= 0x38a)
            return c + 37;
        if (c == 0x38c)
            return 0x3cc;
        if (c == 0x38e || c == 0x38f)
            return c + 63;
        if ((c >= 0x391 && c <= 0x3a1) || (c >= 0x3a3 && c <= 0x3ab))
            return c + 32;
        /* Final sigma and the symbol forms: single mappings. */
        static const uint16_t singles[][2] = {
            {0x3c2, 0x3c3}, {0x3cf, 0x3d7}, {0x3d0, 0x3b2}, {0x3d1, 0x3b8}, {0x3d5, 0x3c6},
            {0x3d6, 0x3c0}, {0x3f0, 0x3ba}, {0x3f1, 0x3c1}, {0x3f4, 0x3b8}, {0x3f5, 0x3b5},
            {0x3f7, 0x3f8}, {0x3f9, 0x3f2}, {0x3fa, 0x3fb},
        };
        for (size_t i = 0; i < sizeof(singles) / sizeof(singles[0]); i++)
            if (c == singles[i][0])
                return singles[i][1];
        if (c >= 0x3d8 && c <= 0x3ef)
            return (c & 1) ? c : c + 1;
        if (c >= 0x3fd && c <= 0x3ff)
            return c - 130;
        return c;
    }
    if (c == 0x345)
        return 0x3b9;
    if (c >= 0x400 && c < 0x530) { /* Cyrillic, Cyrillic Supplement */
        if (c <= 0x40f)
            return c + 80;
        if (c <= 0x42f)
            return c + 32;
        if ((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f))
            return (c & 1) ? c : c + 1;
        if (c == 0x4c0)
            return 0x4cf;
        if (c >= 0x4c1 && c <= 0x4ce)
            return (c & 1) ? c + 1 : c;
        return c;
    }
    if (c >= 0x531 && c <= 0x556) /* Armenian */
        return c + 48;
    if (c >= 0x1e00 && c <= 0x1eff) { /* Latin Extended Additional */
        if (c == 0x1e9e)
            return 0xdf;
        if (c == 0x1e9b)
            return 0x1e61;
        if ((c <= 0x1e95) || (c >= 0x1ea0))
            return (c & 1) ? c : c + 1;
        return c;
    }
    if (c >= 0xff21 && c <= 0xff3a) /* full-width A-Z */
        return c + 32;
    return c;
}

/* Decodes one code point at p (U+FFFD and 1 byte for an invalid sequence). */
static uint32_t
utf8_next(const uint8_t *p, size_t len, size_t *n_r)
{
    uint8_t c = p[0];
    size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c >= 0x80 && (n > len || !mime_utf8_valid(p, n))) {
        *n_r = 1;
        return 0xfffd;
    }
    *n_r = n;
    if (n == 1)
        return c;
    uint32_t cp = c & (0xff >> (n + 1));
    for (size_t i = 1; i < n; i++)
        cp = cp << 6 | (p[i] & 0x3f);
    return cp;
}

static void
utf8_put(struct mime_buf *out, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (uint8_t)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (uint8_t)(0xc0 | cp >> 6);
        b[1] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xe0 | cp >> 12);
        b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (uint8_t)(0xf0 | cp >> 18);
        b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (uint8_t)(0x80 | (cp & 0x3f));
        n = 4;
    }
    mime_buf_append(out, b, n);
}

int
mime_utf8_fold(const uint8_t *in, size_t len, struct mime_buf *out)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII runs are the common case: fold them without decoding. */
        if (in[i] < 0x80) {
            mime_buf_append_byte(out, (uint8_t)mime_unicode_fold(in[i]));
            i++;
            continue;
        }
        size_t n;
        uint32_t cp = utf8_next(in + i, len - i, &n);
        utf8_put(out, mime_unicode_fold(cp));
        i += n;
    }
    return out->error;
}

int
mime_utf8_icontains(const uint8_t *hay, size_t hay_len, const uint8_t *needle, size_t needle_len)
{
    if (needle_len == 0)
        return 1;
    struct mime_buf h = MIME_BUF_INIT, n = MIME_BUF_INIT;
    int ret = mime_utf8_fold(hay, hay_len, &h);
    if (!ret)
        ret = mime_utf8_fold(needle, needle_len, &n);
    /* Folded UTF-8 is self-synchronising: a byte match is a character match. */
    if (!ret)
        ret = h.len >= n.len && memmem(h.data, h.len, n.data, n.len) != NULL;
    mime_buf_clear(&h);
    mime_buf_clear(&n);
    return ret;
}

/* --- HTML to text ------------------------------------------------------------------------ */

static bool
tag_is(const uint8_t *name, size_t len, const char *const *list)
{
    for (; *list; list++)
        if (mime__ieq(name, len, *list))
            return true;
    return false;
}

/* "&name;" / "&#N;" / "&#xH;" at p: appends the character and returns bytes used, or 0. */
static size_t
entity(const uint8_t *p, const uint8_t *end, struct mime_buf *out)
{
    const uint8_t *semi = memchr(p, ';', (size_t)(end - p) < 12 ? (size_t)(end - p) : 12);
    if (!semi)
        return 0;
    const uint8_t *n = p + 1;
    size_t nl = (size_t)(semi - n);
    uint32_t cp = 0;
    if (nl >= 2 && n[0] == '#') {
        bool hex = n[1] == 'x' || n[1] == 'X';
        for (size_t i = hex ? 2 : 1; i < nl; i++) {
            int v = hex ? mime__hexval(n[i]) : (n[i] >= '0' && n[i] <= '9' ? n[i] - '0' : -1);
            if (v < 0 || cp > 0x10ffff)
                return 0;
            cp = cp * (hex ? 16 : 10) + (uint32_t)v;
        }
        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            cp = 0xfffd;
    } else {
        /* The markup ones, and the letters and punctuation mail editors write as entities
         * (Outlook and Gmail use these); a search for "café" must find "caf&eacute;". */
        static const struct {
            const char *name;
            uint32_t cp;
        } names[] = {
            {"amp", '&'},      {"lt", '<'},        {"gt", '>'},       {"quot", '"'},
            {"apos", '\''},    {"nbsp", ' '},      {"shy", 0xad},     {"copy", 0xa9},
            {"reg", 0xae},     {"trade", 0x2122},  {"deg", 0xb0},     {"euro", 0x20ac},
            {"pound", 0xa3},   {"laquo", 0xab},    {"raquo", 0xbb},   {"middot", 0xb7},
            {"bull", 0x2022},  {"hellip", 0x2026}, {"ndash", 0x2013}, {"mdash", 0x2014},
            {"lsquo", 0x2018}, {"rsquo", 0x2019},  {"ldquo", 0x201c}, {"rdquo", 0x201d},
            {"szlig", 0xdf},   {"Auml", 0xc4},     {"Ouml", 0xd6},    {"Uuml", 0xdc},
            {"auml", 0xe4},    {"ouml", 0xf6},     {"uuml", 0xfc},    {"agrave", 0xe0},
            {"aacute", 0xe1},  {"acirc", 0xe2},    {"ccedil", 0xe7},  {"egrave", 0xe8},
            {"eacute", 0xe9},  {"ecirc", 0xea},    {"iacute", 0xed},  {"ntilde", 0xf1},
            {"oacute", 0xf3},  {"ocirc", 0xf4},    {"uacute", 0xfa},  {"Eacute", 0xc9},
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (nl == strlen(names[i].name) && memcmp(n, names[i].name, nl) == 0)
                cp = names[i].cp;
        if (!cp)
            return 0;
    }
    utf8_put(out, cp);
    return (size_t)(semi + 1 - p);
}

static void
html_to_text(const uint8_t *p, size_t len, struct mime_buf *out)
{
    if (!p)
        return; /* empty */
    static const char *const inline_tags[] = {"a",      "b",    "i",    "u",     "em",
                                              "strong", "span", "font", "small", "big",
                                              "sub",    "sup",  "code", "tt",    NULL};
    static const char *const skip_tags[] = {"script", "style", NULL};
    const uint8_t *end = p + len;
    while (p < end) {
        if (*p == '&') {
            size_t used = entity(p, end, out);
            if (used) {
                p += used;
                continue;
            }
            mime_buf_append_byte(out, *p++);
            continue;
        }
        /* "a < b" is text: a tag starts with a letter, '/' or '!'. */
        if (*p != '<' || end - p < 2 ||
            !((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z') || p[1] == '/' ||
              p[1] == '!')) {
            mime_buf_append_byte(out, *p++);
            continue;
        }
        if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
            const uint8_t *c = memmem(p + 4, (size_t)(end - p - 4), "-->", 3);
            p = c ? c + 3 : end;
            continue;
        }
        const uint8_t *name = p + 1;
        if (name < end && *name == '/')
            name++;
        const uint8_t *ne = name;
        while (ne < end && ((*ne >= 'a' && *ne <= 'z') || (*ne >= 'A' && *ne <= 'Z') ||
                            (*ne >= '0' && *ne <= '9')))
            ne++;
        /* The tag ends at '>' outside quoted attribute values. */
        const uint8_t *q = ne;
        uint8_t quote = 0;
        while (q < end && (quote || *q != '>')) {
            if (quote && *q == quote)
                quote = 0;
            else if (!quote && (*q == '"' || *q == '\''))
                quote = *q;
            q++;
        }
        bool closing = p[1] == '/';
        p = q < end ? q + 1 : end;
        size_t nl = (size_t)(ne - name);
        if (!closing && tag_is(name, nl, skip_tags)) {
            /* Skip to the matching end tag. */
            char endtag[10];
            int el = snprintf(endtag, sizeof(endtag), "</%.*s", (int)nl, (const char *)name);
            const uint8_t *s = p;
            while (s < end) {
                const uint8_t *lt = memchr(s, '<', (size_t)(end - s));
                if (!lt || (size_t)(end - lt) < (size_t)el) {
                    s = end;
                    break;
                }
                if (mime__ieq(lt, (size_t)el, endtag)) {
                    s = lt;
                    break;
                }
                s = lt + 1;
            }
            p = s;
            continue;
        }
        if (!tag_is(name, nl, inline_tags))
            mime_buf_append_byte(out, ' ');
    }
}

/* --- body and header text -------------------------------------------------------------------- */

static int
leaf_text(const struct mime_message *msg, const struct mime_part *part, struct mime_buf *out)
{
    const uint8_t *data = mime_message_data(msg) + part->body.off;
    size_t len = part->body.len;
    struct mime_buf dec = MIME_BUF_INIT, utf8 = MIME_BUF_INIT;
    int ret = 0;
    if (part->encoding == MIME_ENC_BASE64 || part->encoding == MIME_ENC_QP) {
        struct mime_decoder d;
        mime_decoder_init(&d, part->encoding);
        uint8_t *o = mime_buf_reserve(&dec, MIME_DECODE_BOUND(len));
        if (!o)
            return -ENOMEM;
        size_t n = mime_decoder_feed(&d, data, len, o);
        n += mime_decoder_finish(&d, o + n);
        mime_buf_commit(&dec, n);
        data = dec.data;
        len = dec.len;
    }
    const struct mime_param *cs = mime_param_find(part->params, "charset");
    bool html = mime_part_is(part, "text", "html");
    ret = mime_charset_to_utf8(cs ? cs->value.s : "us-ascii", cs ? cs->value.len : 8, data, len,
                               html ? &utf8 : out);
    if (ret >= 0 && html)
        html_to_text(utf8.data, utf8.len, out);
    mime_buf_append_byte(out, '\n');
    mime_buf_clear(&dec);
    mime_buf_clear(&utf8);
    return ret < 0 ? ret : out->error;
}

int
mime_search_header_text(const struct mime_message *msg, const struct mime_part *part,
                        const char *name, struct mime_buf *out)
{
    const uint8_t *data = mime_message_data(msg);
    struct mime_buf v = MIME_BUF_INIT;
    size_t pos = 0;
    struct mime_field f;
    int ret = 0;
    while (mime_header_next(data, part->header, part->header_seen, &pos, &f)) {
        if (name && !mime__ieq(data + f.name.off, f.name.len, name))
            continue;
        if (!name) {
            mime_buf_append(out, data + f.name.off, f.name.len);
            mime_buf_append(out, ": ", 2);
        }
        v.len = 0;
        mime_header_unfold(data, f.value, &v);
        if (v.error || mime_header_decode_utf8(v.data, v.len, out) < 0) {
            ret = -ENOMEM;
            break;
        }
        mime_buf_append_byte(out, '\n');
    }
    mime_buf_clear(&v);
    return ret ? ret : out->error;
}

int
mime_search_body_text(const struct mime_message *msg, const struct mime_part *part,
                      struct mime_buf *out)
{
    if (part->children) {
        for (const struct mime_part *c = part->children; c; c = c->next) {
            int ret = mime_search_body_text(msg, c, out);
            if (ret < 0)
                return ret;
        }
        return 0;
    }
    if (part->message) {
        int ret = mime_search_header_text(msg, part->message, NULL, out);
        if (ret < 0)
            return ret;
        return mime_search_body_text(msg, part->message, out);
    }
    if (mime_part_is(part, "text", NULL))
        return leaf_text(msg, part, out);
    return 0;
}

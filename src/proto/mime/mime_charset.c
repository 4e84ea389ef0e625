/*
 * Charset conversion (iconv) and RFC 2047 encoded words; the fallbacks are in mime_charset.h.
 */
#include "proto/mime/mime_charset.h"

#include "proto/mime/mime_decode.h"
#include "proto/mime/mime_int.h"

#include <errno.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>

#define CHARSET_NAME_MAX 64

static const uint8_t replacement[] = {0xef, 0xbf, 0xbd}; /* U+FFFD */

/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t
utf8_seq(const uint8_t *p, size_t len)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t min, cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool
mime_utf8_valid(const uint8_t *in, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(in + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

/* Converts with an open iconv descriptor; returns 0 or 1 (replacements made). */
static int
convert(iconv_t cd, const uint8_t *in, size_t len, struct mime_buf *out)
{
    int lossy = 0;
    char *ip = (char *)in;
    size_t ileft = len;
    while (ileft > 0) {
        size_t room = ileft * 4 + 16;
        char *op = (char *)mime_buf_reserve(out, room);
        if (!op)
            return -ENOMEM;
        char *ostart = op;
        size_t oleft = room;
        size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
        mime_buf_commit(out, (size_t)(op - ostart));
        if (r != (size_t)-1)
            continue;
        int err = errno;
        if (err == E2BIG)
            continue;
        /* EILSEQ: an undefined sequence; EINVAL: cut short at the end. */
        lossy = 1;
        mime_buf_append(out, replacement, sizeof(replacement));
        iconv(cd, NULL, NULL, NULL, NULL);
        if (err == EINVAL) {
            ileft = 0;
            break;
        }
        ip++;
        ileft--;
    }
    /* Flush a stateful encoding's shift sequence. */
    char *op = (char *)mime_buf_reserve(out, 16);
    if (!op)
        return -ENOMEM;
    char *ostart = op;
    size_t oleft = 16;
    iconv(cd, NULL, NULL, &op, &oleft);
    mime_buf_commit(out, (size_t)(op - ostart));
    return out->error ? out->error : lossy;
}

static int
convert_named(const char *name, const uint8_t *in, size_t len, struct mime_buf *out)
{
    iconv_t cd = iconv_open("UTF-8", name);
    if (cd == (iconv_t)-1)
        return -1;
    int ret = convert(cd, in, len, out);
    iconv_close(cd);
    return ret;
}

/* UTF-8 as it is when valid, otherwise windows-1252. */
static int
utf8_or_1252(const uint8_t *in, size_t len, struct mime_buf *out)
{
    if (mime_utf8_valid(in, len)) {
        mime_buf_append(out, in, len);
        return out->error;
    }
    int ret = convert_named("WINDOWS-1252", in, len, out);
    if (ret != -1)
        return ret < 0 ? ret : 1;
    /* No gconv modules at all (a stripped system): ASCII and U+FFFD. */
    for (size_t i = 0; i < len; i++)
        if (in[i] < 0x80)
            mime_buf_append_byte(out, in[i]);
        else
            mime_buf_append(out, replacement, sizeof(replacement));
    return out->error ? out->error : 1;
}

int
mime_charset_to_utf8(const char *charset, size_t charset_len, const uint8_t *in, size_t len,
                     struct mime_buf *out)
{
    char name[CHARSET_NAME_MAX + 1];
    bool usable = charset && charset_len > 0 && charset_len <= CHARSET_NAME_MAX;
    for (size_t i = 0; usable && i < charset_len; i++) {
        uint8_t c = (uint8_t)charset[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-_.:+()", c)) ||
            c == 0)
            usable = false;
        name[i] = (char)mime__lower(c);
    }
    if (!usable)
        return utf8_or_1252(in, len, out) < 0 ? -ENOMEM : 1;
    name[charset_len] = '\0';
    if (strcmp(name, "utf-8") == 0 || strcmp(name, "utf8") == 0 || strcmp(name, "us-ascii") == 0 ||
        strcmp(name, "ascii") == 0) {
        if (mime_utf8_valid(in, len)) {
            mime_buf_append(out, in, len);
            return out->error;
        }
        return utf8_or_1252(in, len, out);
    }
    static const struct {
        const char *label, *as;
    } aliases[] = {{"iso-8859-1", "WINDOWS-1252"},
                   {"iso8859-1", "WINDOWS-1252"},
                   {"latin1", "WINDOWS-1252"},
                   {"gb2312", "GB18030"},
                   {"ks_c_5601-1987", "CP949"}};
    const char *use = name;
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(name, aliases[i].label) == 0)
            use = aliases[i].as;
    int ret = convert_named(use, in, len, out);
    if (ret == -1)
        return utf8_or_1252(in, len, out) < 0 ? -ENOMEM : 1;
    return ret;
}

int
mime_param_utf8(const struct mime_param *p, struct mime_buf *out)
{
    if (p->extended) {
        int ret = mime_charset_to_utf8(p->charset.s, p->charset.len, (const uint8_t *)p->value.s,
                                       p->value.len, out);
        return ret < 0 ? ret : 0;
    }
    return mime_header_decode_utf8((const uint8_t *)p->value.s, p->value.len, out);
}

/* Q encoding (RFC 2047 4.2): '_' is a space, =XX a byte. */
static void
decode_q(const uint8_t *p, size_t len, struct mime_buf *out)
{
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (p[i] == '_')
            mime_buf_append_byte(out, ' ');
        else if (p[i] == '=' && i + 2 < len && (h = mime__hexval(p[i + 1])) >= 0 &&
                 (l = mime__hexval(p[i + 2])) >= 0) {
            mime_buf_append_byte(out, (uint8_t)(h * 16 + l));
            i += 2;
        } else
            mime_buf_append_byte(out, p[i]);
    }
}

struct word {
    const uint8_t *charset;
    size_t charset_len;
    const uint8_t *end; /* after "?=" */
};

/* Parses "=?charset?B|Q?text?=" at p; appends the decoded bytes to raw. */
static bool
parse_word(const uint8_t *p, const uint8_t *end, struct word *w, struct mime_buf *raw)
{
    if (end - p < 8 || p[0] != '=' || p[1] != '?')
        return false;
    const uint8_t *cs = p + 2, *q = cs;
    while (q < end && *q != '?' && *q > ' ' && *q < 0x7f)
        q++;
    if (q == cs || end - q < 5 || *q != '?' || q[2] != '?')
        return false;
    uint8_t enc = mime__upper(q[1]);
    if (enc != 'B' && enc != 'Q')
        return false;
    const uint8_t *text = q + 3, *t = text;
    while (t + 1 < end && !(t[0] == '?' && t[1] == '=')) {
        if (*t <= ' ' || *t >= 0x7f)
            return false; /* no white space or 8-bit inside an encoded word */
        t++;
    }
    if (t + 1 >= end)
        return false;
    /* RFC 2231 5: "charset*language". */
    const uint8_t *star = memchr(cs, '*', (size_t)(q - cs));
    w->charset = cs;
    w->charset_len = (size_t)((star ? star : q) - cs);
    w->end = t + 2;
    if (enc == 'Q') {
        decode_q(text, (size_t)(t - text), raw);
    } else {
        struct mime_decoder d;
        mime_decoder_init(&d, MIME_ENC_BASE64);
        uint8_t *o = mime_buf_reserve(raw, MIME_DECODE_BOUND((size_t)(t - text)));
        if (o) {
            size_t n = mime_decoder_feed(&d, text, (size_t)(t - text), o);
            n += mime_decoder_finish(&d, o + n);
            mime_buf_commit(raw, n);
        }
    }
    return true;
}

int
mime_header_decode_utf8(const uint8_t *in, size_t len, struct mime_buf *out)
{
    if (!in)
        in = (const uint8_t *)""; /* an empty buffer's data may be NULL */
    const uint8_t *p = in, *end = in + len;
    const uint8_t *text = p; /* start of plain text not yet written */
    struct mime_buf raw = MIME_BUF_INIT;
    const uint8_t *pend_cs = NULL; /* charset of the bytes held in raw */
    size_t pend_cs_len = 0;
    int ret = 0;
    while (p < end) {
        const uint8_t *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq)
            break;
        struct word w;
        size_t before = raw.len;
        if (!parse_word(eq, end, &w, &raw)) {
            raw.len = before;
            p = eq + 1;
            continue;
        }
        if (raw.error) {
            ret = -ENOMEM;
            break;
        }
        /* Text between the previous word and this one: dropped when it is only white space
         * after a word, otherwise written (after flushing the held bytes). */
        bool only_ws = true;
        for (const uint8_t *s = text; s < eq; s++)
            if (!mime__is_wsp(*s) && *s != '\r' && *s != '\n')
                only_ws = false;
        bool same = pend_cs && only_ws && pend_cs_len == w.charset_len &&
                    strncasecmp((const char *)pend_cs, (const char *)w.charset, pend_cs_len) == 0;
        if (!same && pend_cs) {
            /* Flush the held bytes, except those of the new word. */
            if (mime_charset_to_utf8((const char *)pend_cs, pend_cs_len, raw.data, before, out) <
                0) {
                ret = -ENOMEM;
                break;
            }
            if (before) {
                memmove(raw.data, raw.data + before, raw.len - before);
                raw.len -= before;
            }
        }
        if (!(pend_cs && only_ws)) {
            if (utf8_or_1252(text, (size_t)(eq - text), out) < 0) {
                ret = -ENOMEM;
                break;
            }
        }
        pend_cs = w.charset;
        pend_cs_len = w.charset_len;
        p = text = w.end;
    }
    if (!ret && pend_cs &&
        mime_charset_to_utf8((const char *)pend_cs, pend_cs_len, raw.data, raw.len, out) < 0)
        ret = -ENOMEM;
    if (!ret && utf8_or_1252(text, (size_t)(end - text), out) < 0)
        ret = -ENOMEM;
    if (raw.error)
        ret = -ENOMEM;
    mime_buf_clear(&raw);
    return ret ? ret : out->error;
}

/*
 * Content-Type, Content-Disposition and Content-Language values (RFC 2045 5.1, RFC 2183,
 * RFC 3282), with RFC 2231 parameter continuations and charsets. Tolerant the way real mail
 * needs: a parameter that does not parse is skipped up to the next ';', token values may hold
 * characters RFC 2045 reserves (boundary=----=_Part_1 is common), and of a parameter given
 * both plainly and in RFC 2231 form, the RFC 2231 form wins (RFC 2231 says senders give both
 * for old readers).
 */
#include "proto/mime/mime_int.h"

#include <errno.h>
#include <string.h>

/* Parameters looked at per field; the rest are ignored, bounding the work any header costs. */
#define PARAMS_MAX 64
/* RFC 2231 section numbers beyond this are ignored (no real name needs a hundred pieces). */
#define SECTION_MAX 999
/* Content-Language tags kept. */
#define LANGUAGES_MAX 32

struct raw_param {
    const uint8_t *name; /* base name, without '*' and section */
    size_t name_len;
    int section; /* -1: none */
    bool ext;
    struct mime_str value;
    bool used;
};

static void
skip_to_semicolon(struct mime_lex *lx)
{
    while (lx->p < lx->end && *lx->p != ';') {
        if (*lx->p == '"') {
            struct mime_buf junk = MIME_BUF_INIT;
            mime__lex_word(lx, "", &junk);
            mime_buf_clear(&junk);
            continue;
        }
        lx->p++;
    }
}

/* Splits "name*12*" into base, section and extended flag. */
static void
split_name(struct raw_param *r, const uint8_t *n, size_t len)
{
    r->section = -1;
    r->ext = false;
    if (len > 1 && n[len - 1] == '*') {
        r->ext = true;
        len--;
    }
    size_t d = len;
    while (d > 0 && n[d - 1] >= '0' && n[d - 1] <= '9')
        d--;
    if (d < len && d > 1 && n[d - 1] == '*' && len - d <= 3) {
        int sec = 0;
        for (size_t i = d; i < len; i++)
            sec = sec * 10 + (n[i] - '0');
        /* "*01" is not a section number (RFC 2231 3: no leading zeros). */
        if (!(len - d > 1 && n[d] == '0')) {
            r->section = sec;
            len = d - 1;
        }
    }
    r->name = n;
    r->name_len = len;
}

static void
percent_decode(const char *s, size_t len, struct mime_buf *out)
{
    for (size_t i = 0; i < len; i++) {
        int h, l;
        if (s[i] == '%' && i + 2 < len && (h = mime__hexval((uint8_t)s[i + 1])) >= 0 &&
            (l = mime__hexval((uint8_t)s[i + 2])) >= 0) {
            mime_buf_append_byte(out, (uint8_t)(h * 16 + l));
            i += 2;
        } else {
            mime_buf_append_byte(out, (uint8_t)s[i]);
        }
    }
}

/* Reads "; name=value" pairs up to the end of the value into raw[], returns how many. */
static int
read_raw(struct mime_arena *a, struct mime_lex *lx, struct raw_param *raw, size_t *n_r)
{
    struct mime_buf name = MIME_BUF_INIT, value = MIME_BUF_INIT;
    size_t n = 0;
    int ret = 0;
    for (;;) {
        mime__lex_cfws(lx, NULL);
        if (lx->p >= lx->end)
            break;
        if (*lx->p != ';') {
            skip_to_semicolon(lx);
            continue;
        }
        lx->p++;
        mime__lex_cfws(lx, NULL);
        name.len = 0;
        if (mime__lex_word(lx, MIME_TSPECIALS, &name) != MIME_WORD_ATOM)
            continue;
        mime__lex_cfws(lx, NULL);
        if (lx->p >= lx->end || *lx->p != '=')
            continue;
        lx->p++;
        mime__lex_cfws(lx, NULL);
        value.len = 0;
        /* Token values: anything up to ';', white space or a comment; an empty value
         * ("name=;") is kept as empty. */
        (void)mime__lex_word(lx, ";()", &value);
        if (n == PARAMS_MAX || name.error || value.error) {
            ret = (name.error || value.error) ? -ENOMEM : 0;
            if (ret)
                break;
            continue;
        }
        struct mime_str nm;
        if (mime__strdup(a, name.data, name.len, &nm) < 0 ||
            mime__strdup(a, value.len ? (const void *)value.data : "", value.len, &raw[n].value) <
                0) {
            ret = -ENOMEM;
            break;
        }
        split_name(&raw[n], (const uint8_t *)nm.s, nm.len);
        raw[n].used = false;
        n++;
    }
    mime_buf_clear(&name);
    mime_buf_clear(&value);
    *n_r = n;
    return ret;
}

static bool
same_name(const struct raw_param *a, const struct raw_param *b)
{
    if (a->name_len != b->name_len)
        return false;
    for (size_t i = 0; i < a->name_len; i++)
        if (mime__lower(a->name[i]) != mime__lower(b->name[i]))
            return false;
    return true;
}

/* Builds the parameter for raw[first]'s base name from every raw entry with that name. */
static int
build_param(struct mime_arena *a, struct raw_param *raw, size_t n, size_t first,
            struct mime_param **out)
{
    struct mime_param *p = mime__alloc(a, sizeof(*p));
    if (!p)
        return -ENOMEM;
    struct mime_buf v = MIME_BUF_INIT;
    int ret = 0;
    /* Which form wins: sections (name*0...), else name*, else plain name. */
    int best = 0; /* 0 plain, 1 name*, 2 sections */
    for (size_t i = first; i < n; i++) {
        if (!same_name(&raw[first], &raw[i]))
            continue;
        raw[i].used = true;
        int form = raw[i].section >= 0 ? 2 : raw[i].ext ? 1 : 0;
        if (form > best)
            best = form;
    }
    if (mime__strdup(a, raw[first].name, raw[first].name_len, &p->name) < 0)
        goto nomem;
    struct mime_str charset = {NULL, 0}, lang = {NULL, 0};
    if (best == 2) {
        for (int sec = 0; sec <= SECTION_MAX; sec++) {
            size_t i;
            for (i = first; i < n; i++)
                if (same_name(&raw[first], &raw[i]) && raw[i].section == sec)
                    break;
            if (i == n)
                break; /* the first gap ends the value */
            const char *s = raw[i].value.s;
            size_t len = raw[i].value.len;
            if (raw[i].ext) {
                p->extended = true;
                if (sec == 0) {
                    /* charset'language'value; a missing quote means no charset part. */
                    const char *q1 = memchr(s, '\'', len);
                    const char *q2 = q1 ? memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - s)) : NULL;
                    if (q2) {
                        if (mime__strdup(a, s, (size_t)(q1 - s), &charset) < 0 ||
                            mime__strdup(a, q1 + 1, (size_t)(q2 - q1 - 1), &lang) < 0)
                            goto nomem;
                        len -= (size_t)(q2 + 1 - s);
                        s = q2 + 1;
                    }
                }
                percent_decode(s, len, &v);
            } else {
                mime_buf_append(&v, s, len);
            }
        }
    } else {
        for (size_t i = first; i < n; i++) {
            if (!same_name(&raw[first], &raw[i]) || raw[i].section >= 0 ||
                (best == 1) != raw[i].ext)
                continue;
            const char *s = raw[i].value.s;
            size_t len = raw[i].value.len;
            if (best == 1) {
                p->extended = true;
                const char *q1 = memchr(s, '\'', len);
                const char *q2 = q1 ? memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - s)) : NULL;
                if (q2) {
                    if (mime__strdup(a, s, (size_t)(q1 - s), &charset) < 0 ||
                        mime__strdup(a, q1 + 1, (size_t)(q2 - q1 - 1), &lang) < 0)
                        goto nomem;
                    len -= (size_t)(q2 + 1 - s);
                    s = q2 + 1;
                }
                percent_decode(s, len, &v);
            } else {
                mime_buf_append(&v, s, len);
            }
            break;
        }
    }
    if (v.error)
        goto nomem;
    if (mime__strdup(a, v.len ? (const void *)v.data : "", v.len, &p->value) < 0)
        goto nomem;
    if (p->extended) {
        if (!charset.s && mime__strdup(a, "", 0, &charset) < 0)
            goto nomem;
        if (!lang.s && mime__strdup(a, "", 0, &lang) < 0)
            goto nomem;
        p->charset = charset;
        p->language = lang;
    }
    *out = p;
    goto done;
nomem:
    ret = -ENOMEM;
done:
    mime_buf_clear(&v);
    return ret;
}

static int
parse_params(struct mime_arena *a, struct mime_lex *lx, struct mime_param **params)
{
    struct raw_param raw[PARAMS_MAX];
    size_t n;
    *params = NULL;
    int ret = read_raw(a, lx, raw, &n);
    if (ret < 0)
        return ret;
    struct mime_param **tail = params;
    for (size_t i = 0; i < n; i++) {
        if (raw[i].used)
            continue;
        struct mime_param *p;
        if ((ret = build_param(a, raw, n, i, &p)) < 0)
            return ret;
        *tail = p;
        tail = &p->next;
    }
    return 0;
}

static int
lower_dup(struct mime_arena *a, const struct mime_buf *b, struct mime_str *out)
{
    if (mime__strdup(a, b->data, b->len, out) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < out->len; i++)
        ((char *)out->s)[i] = (char)mime__lower((uint8_t)out->s[i]);
    return 0;
}

/* Returns 0, 1 when the value is not a usable type/subtype (the caller applies the default),
 * or -ENOMEM. */
int
mime__parse_content_type(struct mime_arena *a, const uint8_t *v, size_t len, struct mime_str *type,
                         struct mime_str *subtype, struct mime_param **params)
{
    struct mime_lex lx = {v, v + len};
    struct mime_buf t = MIME_BUF_INIT, st = MIME_BUF_INIT;
    int ret = 1;
    mime__lex_cfws(&lx, NULL);
    if (mime__lex_word(&lx, MIME_TSPECIALS, &t) != MIME_WORD_ATOM)
        goto out;
    mime__lex_cfws(&lx, NULL);
    if (lx.p >= lx.end || *lx.p != '/')
        goto out;
    lx.p++;
    mime__lex_cfws(&lx, NULL);
    if (mime__lex_word(&lx, MIME_TSPECIALS, &st) != MIME_WORD_ATOM)
        goto out;
    if (t.error || st.error) {
        ret = -ENOMEM;
        goto out;
    }
    if (lower_dup(a, &t, type) < 0 || lower_dup(a, &st, subtype) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    ret = parse_params(a, &lx, params);
out:
    mime_buf_clear(&t);
    mime_buf_clear(&st);
    return ret;
}

int
mime__parse_disposition(struct mime_arena *a, const uint8_t *v, size_t len, struct mime_str *disp,
                        struct mime_param **params)
{
    struct mime_lex lx = {v, v + len};
    struct mime_buf t = MIME_BUF_INIT;
    int ret = 0;
    mime__lex_cfws(&lx, NULL);
    /* An empty or unparseable disposition is as if absent. */
    if (mime__lex_word(&lx, MIME_TSPECIALS, &t) != MIME_WORD_ATOM)
        goto out;
    if (t.error || lower_dup(a, &t, disp) < 0) {
        ret = -ENOMEM;
        goto out;
    }
    ret = parse_params(a, &lx, params);
out:
    mime_buf_clear(&t);
    return ret;
}

int
mime__parse_languages(struct mime_arena *a, const uint8_t *v, size_t len, struct mime_str **langs,
                      unsigned *n)
{
    struct mime_str tmp[LANGUAGES_MAX];
    unsigned count = 0;
    struct mime_lex lx = {v, v + len};
    struct mime_buf t = MIME_BUF_INIT;
    int ret = 0;
    while (lx.p < lx.end && count < LANGUAGES_MAX) {
        mime__lex_cfws(&lx, NULL);
        t.len = 0;
        if (mime__lex_word(&lx, MIME_TSPECIALS, &t) == MIME_WORD_ATOM) {
            if (t.error || mime__strdup(a, t.data, t.len, &tmp[count]) < 0) {
                ret = -ENOMEM;
                goto out;
            }
            count++;
        }
        /* Skip to the next comma: anything else between tags is junk. */
        while (lx.p < lx.end && *lx.p != ',')
            lx.p++;
        if (lx.p < lx.end)
            lx.p++;
    }
    *n = count;
    *langs = NULL;
    if (count) {
        *langs = mime__alloc(a, count * sizeof(**langs));
        if (!*langs) {
            ret = -ENOMEM;
            goto out;
        }
        memcpy(*langs, tmp, count * sizeof(**langs));
    }
out:
    mime_buf_clear(&t);
    return ret;
}

/* Section addressing, BINARY and partial ranges; the rules are in mime_section.h. */
#include "proto/mime/mime_section.h"

#include "proto/mime/mime_decode.h"
#include "proto/mime/mime_int.h"

#include "lib/err.h"

#include <errno.h>
#include <string.h>

int
mime_section_parse(const char *s, size_t len, struct mime_section *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        uint64_t v = 0;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (uint64_t)(s[i] - '0');
            if (v > UINT32_MAX)
                return TDM_EINVAL;
            i++;
        }
        /* nz-number: no zero, no leading zero. */
        if (v == 0 || s[start] == '0' || out->n_parts == MIME_SECTION_PARTS_MAX)
            return TDM_EINVAL;
        out->part[out->n_parts++] = (uint32_t)v;
        if (i == len)
            return 0;
        if (s[i] != '.')
            return TDM_EINVAL;
        i++;
        if (i == len)
            return TDM_EINVAL; /* "1." */
    }
    const char *w = s + i;
    size_t wl = len - i;
    if (wl == 0) {
        out->text = MIME_SECTION_ALL;
        return i == 0 || out->n_parts == 0 ? 0 : TDM_EINVAL;
    }
    static const struct {
        const char *name;
        enum mime_section_text text;
    } words[] = {{"HEADER", MIME_SECTION_HEADER},
                 {"HEADER.FIELDS", MIME_SECTION_HEADER_FIELDS},
                 {"HEADER.FIELDS.NOT", MIME_SECTION_HEADER_FIELDS_NOT},
                 {"TEXT", MIME_SECTION_TEXT},
                 {"MIME", MIME_SECTION_MIME}};
    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
        if (mime__ieq(w, wl, words[k].name)) {
            out->text = words[k].text;
            if (out->text == MIME_SECTION_MIME && out->n_parts == 0)
                return TDM_EINVAL;
            return 0;
        }
    return TDM_EINVAL;
}

int
mime_section_part(const struct mime_message *msg, const uint32_t *part, unsigned n,
                  const struct mime_part **part_r, bool *as_message_r)
{
    const struct mime_part *cur = mime_message_root(msg);
    bool as_message = true;
    for (unsigned i = 0; i < n; i++) {
        /* A number after a message/rfc822 part addresses the embedded message. */
        if (!as_message && cur->message) {
            cur = cur->message;
            as_message = true;
        }
        if (cur->children) {
            const struct mime_part *c = cur->children;
            for (uint32_t k = 1; c && k < part[i]; k++)
                c = c->next;
            if (!c)
                return TDM_ENOTFOUND;
            cur = c;
        } else if (!as_message || part[i] != 1) {
            /* A leaf has no subparts; a non-multipart message has only part 1, its body. */
            return TDM_ENOTFOUND;
        }
        as_message = false;
    }
    *part_r = cur;
    *as_message_r = as_message;
    return 0;
}

static bool
field_listed(const uint8_t *data, const struct mime_field *f, const struct mime_section *sec)
{
    for (size_t i = 0; i < sec->n_fields; i++)
        if (mime__ieq(data + f->name.off, f->name.len, sec->fields[i].s ? sec->fields[i].s : ""))
            return true;
    return false;
}

int
mime_section_fetch(const struct mime_message *msg, const struct mime_section *sec,
                   struct mime_span *span_r, struct mime_buf *built)
{
    const struct mime_part *p;
    bool as_message;
    int ret = mime_section_part(msg, sec->part, sec->n_parts, &p, &as_message);
    if (ret < 0)
        return ret;
    if (sec->text == MIME_SECTION_ALL) {
        *span_r = as_message ? (struct mime_span){0, mime_message_size(msg)} : p->body;
        return 0;
    }
    if (sec->text == MIME_SECTION_MIME) {
        if (as_message)
            return TDM_ENOTFOUND;
        *span_r = p->header;
        return 0;
    }
    /* HEADER, TEXT, HEADER.FIELDS: of the message itself or of a message/rfc822 part. */
    if (!as_message) {
        if (!p->message)
            return TDM_ENOTFOUND;
        p = p->message;
    }
    if (sec->text == MIME_SECTION_HEADER) {
        *span_r = p->header;
        return 0;
    }
    if (sec->text == MIME_SECTION_TEXT) {
        *span_r = p->body;
        return 0;
    }
    const uint8_t *data = mime_message_data(msg);
    bool want = sec->text == MIME_SECTION_HEADER_FIELDS;
    size_t pos = 0;
    struct mime_field f;
    while (mime_header_next(data, p->header, p->header_seen, &pos, &f)) {
        if (field_listed(data, &f, sec) != want)
            continue;
        mime_buf_append(built, data + f.field.off, f.field.len);
        /* A last field cut off by the end of the message still ends its line. */
        if (f.field.len && data[f.field.off + f.field.len - 1] != '\n')
            mime_buf_append(built, "\r\n", 2);
    }
    mime_buf_append(built, "\r\n", 2);
    return built->error ? built->error : 1;
}

int
mime_binary_source(const struct mime_message *msg, const uint32_t *part, unsigned n,
                   struct mime_span *span_r, enum mime_encoding *enc_r)
{
    const struct mime_part *p;
    bool as_message;
    int ret = mime_section_part(msg, part, n, &p, &as_message);
    if (ret < 0)
        return ret;
    if (as_message) {
        *span_r = (struct mime_span){0, mime_message_size(msg)};
        *enc_r = MIME_ENC_BINARY;
        return 0;
    }
    *span_r = p->body;
    *enc_r = p->encoding;
    /* A multipart's or an embedded message's bytes are not encoded as a whole (RFC 2045
     * 6.4: only identity encodings are allowed there). */
    if (p->children || p->message)
        *enc_r = MIME_ENC_BINARY;
    if (*enc_r == MIME_ENC_UNKNOWN)
        return TDM_EINVAL;
    return 0;
}

int
mime_binary_fetch(const struct mime_message *msg, const uint32_t *part, unsigned n,
                  struct mime_span *span_r, struct mime_buf *decoded, bool *clean_r)
{
    enum mime_encoding enc;
    int ret = mime_binary_source(msg, part, n, span_r, &enc);
    if (clean_r)
        *clean_r = true;
    if (ret < 0)
        return ret;
    if (enc != MIME_ENC_BASE64 && enc != MIME_ENC_QP)
        return 0;
    struct mime_decoder d;
    mime_decoder_init(&d, enc);
    const uint8_t *in = mime_message_data(msg) + span_r->off;
    uint8_t *o = mime_buf_reserve(decoded, MIME_DECODE_BOUND(span_r->len));
    if (!o)
        return -ENOMEM;
    size_t w = mime_decoder_feed(&d, in, span_r->len, o);
    w += mime_decoder_finish(&d, o + w);
    mime_buf_commit(decoded, w);
    if (clean_r)
        *clean_r = mime_decoder_clean(&d);
    return 1;
}

int
mime_binary_size(const struct mime_message *msg, const uint32_t *part, unsigned n, uint64_t *size_r)
{
    struct mime_span span;
    enum mime_encoding enc;
    int ret = mime_binary_source(msg, part, n, &span, &enc);
    if (ret < 0)
        return ret;
    if (enc != MIME_ENC_BASE64 && enc != MIME_ENC_QP) {
        *size_r = span.len;
        return 0;
    }
    struct mime_decoder d;
    mime_decoder_init(&d, enc);
    const uint8_t *in = mime_message_data(msg) + span.off;
    uint8_t out[MIME_DECODE_BOUND(4096)];
    uint64_t total = 0;
    for (size_t off = 0; off < span.len; off += 4096) {
        size_t chunk = span.len - off < 4096 ? span.len - off : 4096;
        total += mime_decoder_feed(&d, in + off, chunk, out);
    }
    total += mime_decoder_finish(&d, out);
    *size_r = total;
    return 0;
}

void
mime_partial(uint64_t total, uint64_t origin, uint64_t count, uint64_t *off_r, uint64_t *len_r)
{
    if (origin >= total) {
        *off_r = total;
        *len_r = 0;
        return;
    }
    *off_r = origin;
    *len_r = total - origin < count ? total - origin : count;
}

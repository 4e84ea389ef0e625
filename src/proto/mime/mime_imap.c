/*
 * BODY / BODYSTRUCTURE text (RFC 3501 7.4.2 and 9 "body") and IMAP string quoting; the rules
 * chosen where the RFC leaves room are in mime_imap.h.
 */
#include "proto/mime/mime_imap.h"

#include "proto/mime/mime_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
mime_imap_string(struct mime_buf *out, const void *s, size_t len)
{
    const uint8_t *p = s ? s : (const void *)"";
    bool literal = false;
    for (size_t i = 0; i < len; i++)
        if (p[i] >= 0x80 || p[i] == '\r' || p[i] == '\n') {
            literal = true;
            break;
        }
    if (literal) {
        mime_buf_printf(out, "{%zu}\r\n", len);
        uint8_t *d = mime_buf_reserve(out, len);
        if (!d)
            return;
        for (size_t i = 0; i < len; i++)
            d[i] = p[i] ? p[i] : '?';
        mime_buf_commit(out, len);
        return;
    }
    mime_buf_append_byte(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (c == '"' || c == '\\' || c == 0) {
            mime_buf_append(out, p + run, i - run);
            run = i + 1;
            if (c == 0) {
                mime_buf_append_byte(out, '?');
                continue;
            }
            mime_buf_append_byte(out, '\\');
            mime_buf_append_byte(out, c);
        }
    }
    mime_buf_append(out, p + run, len - run);
    mime_buf_append_byte(out, '"');
}

void
mime_imap_nstring(struct mime_buf *out, const struct mime_str *s)
{
    if (!s->s)
        mime_buf_append_str(out, "NIL");
    else
        mime_imap_string(out, s->s, s->len);
}

/* s upper-cased, plus suffix, as a string. Type names and parameter names are short tokens,
 * so they are cased on the stack; only a freak long one costs an allocation. */
static void
upper_string(struct mime_buf *out, const char *s, size_t len, const char *suffix)
{
    uint8_t stack[128];
    size_t slen = strlen(suffix);
    uint8_t *d = stack;
    if (len + slen > sizeof(stack)) {
        d = malloc(len + slen);
        if (!d) {
            out->error = -ENOMEM;
            return;
        }
    }
    for (size_t i = 0; i < len; i++)
        d[i] = mime__upper((uint8_t)s[i]);
    memcpy(d + len, suffix, slen);
    mime_imap_string(out, d, len + slen);
    if (d != stack)
        free(d);
}

/* RFC 2231 attribute-char: what may stay unencoded in an extended value. */
static bool
is_attr_char(uint8_t c)
{
    return c > ' ' && c < 0x7f && !strchr("*'%()<>@,;:\\\"/[]?=", c);
}

static void
write_params(struct mime_buf *out, const struct mime_param *p)
{
    if (!p) {
        mime_buf_append_str(out, "NIL");
        return;
    }
    mime_buf_append_byte(out, '(');
    for (bool first = true; p; p = p->next, first = false) {
        if (!first)
            mime_buf_append_byte(out, ' ');
        upper_string(out, p->name.s, p->name.len, p->extended ? "*" : "");
        mime_buf_append_byte(out, ' ');
        if (!p->extended) {
            mime_imap_string(out, p->value.s, p->value.len);
            continue;
        }
        struct mime_buf v = MIME_BUF_INIT;
        mime_buf_append(&v, p->charset.s, p->charset.len);
        mime_buf_append_byte(&v, '\'');
        mime_buf_append(&v, p->language.s, p->language.len);
        mime_buf_append_byte(&v, '\'');
        for (size_t i = 0; i < p->value.len; i++) {
            uint8_t c = (uint8_t)p->value.s[i];
            if (is_attr_char(c))
                mime_buf_append_byte(&v, c);
            else
                mime_buf_printf(&v, "%%%02X", c);
        }
        if (v.error)
            out->error = v.error;
        else
            mime_imap_string(out, v.data, v.len);
        mime_buf_clear(&v);
    }
    mime_buf_append_byte(out, ')');
}

/* body-ext-1part / body-ext-mpart after md5 or params: disposition, language, location. */
static void
write_ext_tail(struct mime_buf *out, const struct mime_part *part)
{
    mime_buf_append_byte(out, ' ');
    if (part->disposition.s) {
        mime_buf_append_byte(out, '(');
        upper_string(out, part->disposition.s, part->disposition.len, "");
        mime_buf_append_byte(out, ' ');
        write_params(out, part->disposition_params);
        mime_buf_append_byte(out, ')');
    } else {
        mime_buf_append_str(out, "NIL");
    }
    mime_buf_append_byte(out, ' ');
    if (part->n_languages) {
        mime_buf_append_byte(out, '(');
        for (unsigned i = 0; i < part->n_languages; i++) {
            if (i)
                mime_buf_append_byte(out, ' ');
            mime_imap_string(out, part->languages[i].s, part->languages[i].len);
        }
        mime_buf_append_byte(out, ')');
    } else {
        mime_buf_append_str(out, "NIL");
    }
    mime_buf_append_byte(out, ' ');
    mime_imap_nstring(out, &part->location);
}

static void write_body(const struct mime_message *msg, const struct mime_part *part, bool extended,
                       unsigned flags, struct mime_buf *out);

static void
write_leaf(const struct mime_message *msg, const struct mime_part *part, bool extended,
           unsigned flags, struct mime_buf *out)
{
    const uint8_t *data = mime_message_data(msg);
    mime_buf_append_byte(out, '(');
    upper_string(out, part->type.s, part->type.len, "");
    mime_buf_append_byte(out, ' ');
    upper_string(out, part->subtype.s, part->subtype.len, "");
    mime_buf_append_byte(out, ' ');
    write_params(out, part->params);
    mime_buf_append_byte(out, ' ');
    mime_imap_nstring(out, &part->id);
    mime_buf_append_byte(out, ' ');
    mime_imap_nstring(out, &part->description);
    mime_buf_append_byte(out, ' ');
    if (part->encoding_name.len)
        upper_string(out, part->encoding_name.s, part->encoding_name.len, "");
    else
        mime_buf_append_str(out, "\"7BIT\"");
    mime_buf_printf(out, " %zu", part->body.len);
    bool as_message =
        part->message && (mime_part_is(part, "message", "rfc822") || (flags & MIME_IMAP_REV2));
    if (as_message) {
        mime_buf_append_byte(out, ' ');
        if (mime_imap_envelope(msg, part->message, out) < 0)
            return;
        mime_buf_append_byte(out, ' ');
        write_body(msg, part->message, extended, flags, out);
        mime_buf_printf(out, " %zu", mime__count_lines(data, part->body));
    } else if (mime_part_is(part, "text", NULL)) {
        mime_buf_printf(out, " %zu", mime__count_lines(data, part->body));
    }
    if (extended) {
        mime_buf_append_byte(out, ' ');
        mime_imap_nstring(out, &part->md5);
        write_ext_tail(out, part);
    }
    mime_buf_append_byte(out, ')');
}

static void
write_body(const struct mime_message *msg, const struct mime_part *part, bool extended,
           unsigned flags, struct mime_buf *out)
{
    if (!part->children) {
        write_leaf(msg, part, extended, flags, out);
        return;
    }
    mime_buf_append_byte(out, '(');
    for (const struct mime_part *c = part->children; c; c = c->next)
        write_body(msg, c, extended, flags, out);
    mime_buf_append_byte(out, ' ');
    upper_string(out, part->subtype.s, part->subtype.len, "");
    if (extended) {
        mime_buf_append_byte(out, ' ');
        write_params(out, part->params);
        write_ext_tail(out, part);
    }
    mime_buf_append_byte(out, ')');
}

int
mime_imap_bodystructure(const struct mime_message *msg, const struct mime_part *part, bool extended,
                        unsigned flags, struct mime_buf *out)
{
    write_body(msg, part, extended, flags, out);
    return mime_buf_error(out);
}

/*
 * Header fields: iteration, lookup and unfolding over a part's header span, the arena, and
 * the lexer for structured values. Nothing here copies the message; unfolding writes into a
 * caller's buffer because an unfolded value is not a contiguous range of the message.
 */
#include "proto/mime/mime_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mime_arena_chunk {
    struct mime_arena_chunk *next;
    max_align_t data[];
};

#define ARENA_CHUNK 8192

void *
mime__alloc(struct mime_arena *a, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    if (size == 0)
        size = sizeof(max_align_t);
    if (size > a->left) {
        size_t n = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        struct mime_arena_chunk *c = malloc(sizeof(*c) + n);
        if (!c)
            return NULL;
        c->next = a->chunks;
        a->chunks = c;
        a->cur = (uint8_t *)c->data;
        a->left = n;
    }
    void *p = a->cur;
    a->cur += size;
    a->left -= size;
    memset(p, 0, size);
    return p;
}

int
mime__strdup(struct mime_arena *a, const void *p, size_t len, struct mime_str *out)
{
    out->s = NULL;
    out->len = 0;
    if (len >= SIZE_MAX / 2)
        return -ENOMEM;
    char *s = mime__alloc(a, len + 1);
    if (!s)
        return -ENOMEM;
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    out->s = s;
    out->len = len;
    return 0;
}

void
mime__arena_free(struct mime_arena *a)
{
    while (a->chunks) {
        struct mime_arena_chunk *n = a->chunks->next;
        free(a->chunks);
        a->chunks = n;
    }
    a->cur = NULL;
    a->left = 0;
}

bool
mime__ieq(const void *a, size_t alen, const char *b)
{
    const uint8_t *p = a;
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (mime__lower(p[i]) != mime__lower((uint8_t)b[i]))
            return false;
    return true;
}

int
mime__hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t
mime__count_lines(const uint8_t *data, struct mime_span s)
{
    const uint8_t *p = data + s.off, *end = p + s.len;
    size_t n = 0;
    while (p < end) {
        const uint8_t *lf = memchr(p, '\n', (size_t)(end - p));
        n++;
        if (!lf)
            break;
        p = lf + 1;
    }
    return n;
}

bool
mime_header_next(const uint8_t *data, struct mime_span header, size_t seen, size_t *pos,
                 struct mime_field *field_r)
{
    if (seen > header.len)
        seen = header.len;
    const uint8_t *base = data + header.off;
    size_t end = header.len;
    size_t i = *pos;
    while (i < seen) {
        size_t start = i;
        /* The empty line ends the header. */
        if (base[i] == '\n' || (base[i] == '\r' && i + 1 < end && base[i + 1] == '\n'))
            return false;
        /* The whole field: up to a line break not followed by white space, and never past
         * what lookups may see, so one endless field costs no more than max_header. */
        size_t fe = i;
        for (;;) {
            const uint8_t *lf = memchr(base + fe, '\n', seen - fe);
            if (!lf) {
                fe = seen;
                break;
            }
            fe = (size_t)(lf - base) + 1;
            if (fe >= seen || !mime__is_wsp(base[fe]))
                break;
        }
        *pos = fe;
        /* Name: up to the colon, obsolete white space before it dropped. A line that is no
         * field (only possible for a continuation at the very start) is skipped. */
        const uint8_t *colon = memchr(base + start, ':', fe - start);
        if (!colon || colon == base + start) {
            i = fe;
            continue;
        }
        size_t ne = (size_t)(colon - base);
        while (ne > start && mime__is_wsp(base[ne - 1]))
            ne--;
        size_t ve = fe;
        if (ve > start && base[ve - 1] == '\n')
            ve--;
        if (ve > start && base[ve - 1] == '\r')
            ve--;
        size_t vs = (size_t)(colon - base) + 1;
        if (ve < vs)
            ve = vs;
        field_r->name = (struct mime_span){header.off + start, ne - start};
        field_r->value = (struct mime_span){header.off + vs, ve - vs};
        field_r->field = (struct mime_span){header.off + start, fe - start};
        return true;
    }
    return false;
}

bool
mime_header_find(const uint8_t *data, const struct mime_part *part, const char *name,
                 struct mime_field *field_r)
{
    size_t pos = 0;
    while (mime_header_next(data, part->header, part->header_seen, &pos, field_r))
        if (mime__ieq(data + field_r->name.off, field_r->name.len, name))
            return true;
    return false;
}

size_t
mime_header_unfold(const uint8_t *data, struct mime_span value, struct mime_buf *out)
{
    const uint8_t *p = data + value.off, *end = p + value.len;
    while (p < end && (mime__is_wsp(*p) || *p == '\r' || *p == '\n'))
        p++;
    while (end > p && (mime__is_wsp(end[-1]) || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    size_t before = out->len;
    while (p < end) {
        /* Copy up to the next line break, then drop the break (a fold: the next byte is
         * white space, which is kept). */
        const uint8_t *q = p;
        while (q < end && *q != '\r' && *q != '\n')
            q++;
        mime_buf_append(out, p, (size_t)(q - p));
        if (q < end && *q == '\r' && q + 1 < end && q[1] == '\n')
            q += 2;
        else if (q < end && *q == '\n')
            q++;
        else if (q < end) {
            /* A bare CR is data, not a line break. */
            mime_buf_append_byte(out, '\r');
            q++;
        }
        p = q;
    }
    return out->error ? 0 : out->len - before;
}

void
mime__lex_cfws(struct mime_lex *lx, struct mime_buf *comment)
{
    while (lx->p < lx->end) {
        uint8_t c = *lx->p;
        if (mime__is_wsp(c) || c == '\r' || c == '\n') {
            lx->p++;
            continue;
        }
        if (c != '(')
            return;
        /* Nested comments with quoted pairs. */
        if (comment) {
            comment->len = 0;
            if (comment->data)
                comment->data[0] = '\0';
        }
        unsigned level = 0;
        while (lx->p < lx->end) {
            c = *lx->p++;
            if (c == '\\' && lx->p < lx->end) {
                if (comment)
                    mime_buf_append_byte(comment, *lx->p);
                lx->p++;
                continue;
            }
            if (c == '(') {
                if (level++ == 0)
                    continue;
            } else if (c == ')') {
                if (--level == 0)
                    break;
            }
            if (comment)
                mime_buf_append_byte(comment, c);
        }
    }
}

enum mime_word
mime__lex_word(struct mime_lex *lx, const char *specials, struct mime_buf *out)
{
    if (lx->p >= lx->end)
        return MIME_WORD_NONE;
    if (*lx->p == '"') {
        lx->p++;
        while (lx->p < lx->end && *lx->p != '"') {
            uint8_t c = *lx->p++;
            if (c == '\\' && lx->p < lx->end)
                c = *lx->p++;
            else if (c == '\r' || c == '\n')
                continue; /* a fold inside a quoted string */
            mime_buf_append_byte(out, c);
        }
        if (lx->p < lx->end)
            lx->p++;
        return MIME_WORD_QUOTED;
    }
    const uint8_t *s = lx->p;
    while (lx->p < lx->end) {
        uint8_t c = *lx->p;
        if (c <= ' ' || c == 0x7f || strchr(specials, c))
            break;
        lx->p++;
    }
    if (lx->p == s)
        return MIME_WORD_NONE;
    mime_buf_append(out, s, (size_t)(lx->p - s));
    return MIME_WORD_ATOM;
}

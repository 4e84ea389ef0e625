/*
 * The part tree (RFC 2045, RFC 2046 5.1 multipart, 5.2.1 message/rfc822). See mime_message.h
 * for the contract, the tolerance rules and the limits.
 *
 * One pass per entity: find where its header ends, read the Content-* fields from it, then
 * split a multipart body at its delimiter lines or parse a message/rfc822 body as a message,
 * recursing with the depth bounded by max_depth. A child's end is fixed by its parent's
 * delimiter before the child is parsed, so no inner entity can ever reach outside its parent
 * (this is also what makes a lost inner close delimiter harmless).
 */
#include "proto/mime/mime_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whatever the caller asks for, recursion stays bounded by this. */
#define DEPTH_CAP 256

struct mime_message {
    struct mime_arena arena;
    const uint8_t *data;
    size_t len;
    struct mime_limits limits;
    unsigned flags;
    unsigned n_parts;
    struct mime_part *root;
    struct mime_buf tmp; /* unfolded values while parsing; freed at the end of the parse */
};

const struct mime_part *
mime_message_root(const struct mime_message *msg)
{
    return msg->root;
}

const uint8_t *
mime_message_data(const struct mime_message *msg)
{
    return msg->data;
}

size_t
mime_message_size(const struct mime_message *msg)
{
    return msg->len;
}

unsigned
mime_message_flags(const struct mime_message *msg)
{
    return msg->flags;
}

unsigned
mime_message_part_count(const struct mime_message *msg)
{
    return msg->n_parts;
}

bool
mime_part_is(const struct mime_part *part, const char *type, const char *subtype)
{
    return mime__ieq(part->type.s, part->type.len, type) &&
           (!subtype || mime__ieq(part->subtype.s, part->subtype.len, subtype));
}

const struct mime_param *
mime_param_find(const struct mime_param *list, const char *name)
{
    for (; list; list = list->next)
        if (mime__ieq(list->name.s, list->name.len, name))
            return list;
    return NULL;
}

/* "name:" with obsolete white space before the colon; name is printable ASCII. */
static bool
is_field_line(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *s = p;
    while (p<end && * p> ' ' && *p < 0x7f && *p != ':')
        p++;
    if (p == s)
        return false;
    while (p < end && mime__is_wsp(*p))
        p++;
    return p < end && *p == ':';
}

/* Finds the end of the header that starts at start; sets part->header and part->body. */
static void
scan_header(struct mime_message *m, struct mime_part *part, size_t start, size_t end)
{
    const uint8_t *d = m->data;
    size_t pos = start, body = end;
    bool have_field = false;
    for (;;) {
        if (pos >= end) {
            body = end;
            break;
        }
        if (d[pos] == '\n') {
            pos += 1;
            body = pos;
            break;
        }
        if (d[pos] == '\r' && pos + 1 < end && d[pos + 1] == '\n') {
            pos += 2;
            body = pos;
            break;
        }
        const uint8_t *lf = memchr(d + pos, '\n', end - pos);
        size_t next = lf ? (size_t)(lf - d) + 1 : end;
        if (mime__is_wsp(d[pos]) ? have_field : is_field_line(d + pos, d + next)) {
            have_field = true;
            pos = next;
            continue;
        }
        /* Not a field: the header ends before this line, which starts the body. */
        body = pos;
        break;
    }
    part->header = (struct mime_span){start, pos - start};
    part->body = (struct mime_span){body, end - body};
    part->header_seen = part->header.len;
    if (part->header_seen > m->limits.max_header) {
        part->header_seen = m->limits.max_header;
        m->flags |= MIME_MSG_LIMIT_HEADER;
    }
}

static int
set_str(struct mime_message *m, struct mime_str *s, const char *v)
{
    return mime__strdup(&m->arena, v, strlen(v), s);
}

/* text/plain; charset=us-ascii, RFC 2045 5.2's default. */
static int
set_default_text(struct mime_message *m, struct mime_part *part)
{
    struct mime_param *p = mime__alloc(&m->arena, sizeof(*p));
    if (!p || set_str(m, &part->type, "text") < 0 || set_str(m, &part->subtype, "plain") < 0 ||
        set_str(m, &p->name, "charset") < 0 || set_str(m, &p->value, "us-ascii") < 0)
        return -ENOMEM;
    part->params = p;
    return 0;
}

/* What an entity that a limit stops from being expanded becomes. */
static int
set_octet_stream(struct mime_message *m, struct mime_part *part)
{
    part->params = NULL;
    if (set_str(m, &part->type, "application") < 0 ||
        set_str(m, &part->subtype, "octet-stream") < 0)
        return -ENOMEM;
    return 0;
}

static int
parse_encoding(struct mime_message *m, struct mime_part *part, const uint8_t *v, size_t len)
{
    struct mime_lex lx = {v, v + len};
    struct mime_buf t = MIME_BUF_INIT;
    mime__lex_cfws(&lx, NULL);
    mime__lex_word(&lx, MIME_TSPECIALS, &t);
    int ret = t.error;
    if (!ret &&
        mime__strdup(&m->arena, t.len ? (const void *)t.data : "", t.len, &part->encoding_name) < 0)
        ret = -ENOMEM;
    mime_buf_clear(&t);
    if (ret)
        return ret;
    char *s = (char *)part->encoding_name.s;
    for (size_t i = 0; i < part->encoding_name.len; i++)
        s[i] = (char)mime__lower((uint8_t)s[i]);
    static const struct {
        const char *name;
        enum mime_encoding enc;
    } known[] = {{"7bit", MIME_ENC_7BIT},
                 {"8bit", MIME_ENC_8BIT},
                 {"binary", MIME_ENC_BINARY},
                 {"base64", MIME_ENC_BASE64},
                 {"quoted-printable", MIME_ENC_QP}};
    part->encoding = MIME_ENC_UNKNOWN;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(s, known[i].name) == 0)
            part->encoding = known[i].enc;
    return 0;
}

/* Unfolds into m->tmp and copies the result into the arena. */
static int
dup_unfolded(struct mime_message *m, const struct mime_field *f, struct mime_str *out)
{
    m->tmp.len = 0;
    mime_header_unfold(m->data, f->value, &m->tmp);
    if (m->tmp.error)
        return -ENOMEM;
    return mime__strdup(&m->arena, m->tmp.len ? (const void *)m->tmp.data : "", m->tmp.len, out);
}

/* Reads the Content-* fields (the first of each name counts). Returns 0 or -ENOMEM. */
static int
parse_content_fields(struct mime_message *m, struct mime_part *part, bool in_digest)
{
    size_t pos = 0;
    struct mime_field f;
    bool have_type = false, have_enc = false, have_disp = false, have_lang = false;
    int ret = 0;
    while (mime_header_next(m->data, part->header, part->header_seen, &pos, &f)) {
        const uint8_t *name = m->data + f.name.off;
        if (f.name.len < 8 || !mime__ieq(name, 8, "content-"))
            continue;
        const uint8_t *n = name + 8;
        size_t nl = f.name.len - 8;
        struct mime_str *dst = NULL;
        if (mime__ieq(n, nl, "id"))
            dst = &part->id;
        else if (mime__ieq(n, nl, "description"))
            dst = &part->description;
        else if (mime__ieq(n, nl, "md5"))
            dst = &part->md5;
        else if (mime__ieq(n, nl, "location"))
            dst = &part->location;
        if (dst) {
            if (!dst->s && (ret = dup_unfolded(m, &f, dst)) < 0)
                return ret;
            continue;
        }
        bool is_type = mime__ieq(n, nl, "type"), is_enc = mime__ieq(n, nl, "transfer-encoding");
        bool is_disp = mime__ieq(n, nl, "disposition"), is_lang = mime__ieq(n, nl, "language");
        if ((is_type && have_type) || (is_enc && have_enc) || (is_disp && have_disp) ||
            (is_lang && have_lang) || !(is_type || is_enc || is_disp || is_lang))
            continue;
        m->tmp.len = 0;
        mime_header_unfold(m->data, f.value, &m->tmp);
        if (m->tmp.error)
            return -ENOMEM;
        const uint8_t *v = m->tmp.data ? m->tmp.data : (const uint8_t *)"";
        size_t vl = m->tmp.len;
        if (is_type) {
            have_type = true;
            ret = mime__parse_content_type(&m->arena, v, vl, &part->type, &part->subtype,
                                           &part->params);
            if (ret < 0)
                return ret;
            if (ret == 1) {
                part->type.s = NULL;
                part->params = NULL;
                ret = 0;
            }
        } else if (is_enc) {
            have_enc = true;
            if ((ret = parse_encoding(m, part, v, vl)) < 0)
                return ret;
        } else if (is_disp) {
            have_disp = true;
            if ((ret = mime__parse_disposition(&m->arena, v, vl, &part->disposition,
                                               &part->disposition_params)) < 0)
                return ret;
        } else {
            have_lang = true;
            if ((ret = mime__parse_languages(&m->arena, v, vl, &part->languages,
                                             &part->n_languages)) < 0)
                return ret;
        }
    }
    if (part->type.s && mime_part_is(part, "text", NULL) &&
        !mime_param_find(part->params, "charset")) {
        /* RFC 2046 4.1.2: text without a charset is us-ascii; say so, as other servers do. */
        struct mime_param **tail = &part->params;
        while (*tail)
            tail = &(*tail)->next;
        struct mime_param *p = mime__alloc(&m->arena, sizeof(*p));
        if (!p || set_str(m, &p->name, "charset") < 0 || set_str(m, &p->value, "us-ascii") < 0)
            return -ENOMEM;
        *tail = p;
    }
    if (!part->type.s) {
        if (in_digest) {
            if (set_str(m, &part->type, "message") < 0 || set_str(m, &part->subtype, "rfc822") < 0)
                return -ENOMEM;
        } else if (set_default_text(m, part) < 0) {
            return -ENOMEM;
        }
    }
    return 0;
}

/*
 * Finds the next delimiter line "--boundary" at or after from (which is a line start) and
 * before end. Sets *line to where the delimiter line starts, *content_end to where the content
 * before it ends (its preceding line break excluded), *after to the start of the line after
 * it, and *close for "--boundary--". Returns false when there is none.
 */
static bool
find_delimiter(const uint8_t *d, size_t body_start, size_t from, size_t end, const char *b,
               size_t blen, size_t *content_end, size_t *after, bool *close)
{
    size_t pos = from;
    while (pos < end && end - pos >= blen + 2) {
        /* memchr for one '-' is far faster than a two-byte search, and base64 bodies (the
         * bulk of large messages) hold none. */
        const uint8_t *hit = memchr(d + pos, '-', end - pos);
        if (!hit)
            return false;
        size_t at = (size_t)(hit - d);
        pos = at + 1;
        if (end - at < 2 || d[at + 1] != '-')
            continue;
        if (at != body_start && d[at - 1] != '\n')
            continue;
        if (end - at < blen + 2 || memcmp(d + at + 2, b, blen) != 0)
            continue;
        size_t q = at + 2 + blen;
        bool is_close = false;
        if (q + 1 < end && d[q] == '-' && d[q + 1] == '-') {
            is_close = true;
            q += 2;
        }
        while (q < end && (mime__is_wsp(d[q]) || d[q] == '\r'))
            q++;
        if (q < end && d[q] != '\n')
            continue; /* "--boundaryX": a longer boundary, or text */
        *after = q < end ? q + 1 : end;
        /* The line break before the delimiter is the delimiter's, unless it is the one
         * that ended the previous delimiter line (an empty part). */
        size_t ce = at;
        if (ce > from && d[ce - 1] == '\n') {
            ce--;
            if (ce > from && d[ce - 1] == '\r')
                ce--;
        }
        *content_end = ce;
        *close = is_close;
        return true;
    }
    return false;
}

static int parse_entity(struct mime_message *m, struct mime_part *part, size_t start, size_t end,
                        bool in_digest);

static struct mime_part *
new_part(struct mime_message *m, struct mime_part *parent, unsigned depth)
{
    struct mime_part *p = mime__alloc(&m->arena, sizeof(*p));
    if (!p)
        return NULL;
    p->parent = parent;
    p->depth = depth;
    m->n_parts++;
    return p;
}

/* True when the limits allow expanding part (a multipart or message); otherwise flags it. */
static bool
may_expand(struct mime_message *m, const struct mime_part *part)
{
    if (part->depth >= m->limits.max_depth) {
        m->flags |= MIME_MSG_LIMIT_DEPTH;
        return false;
    }
    if (m->n_parts >= m->limits.max_parts) {
        m->flags |= MIME_MSG_LIMIT_PARTS;
        return false;
    }
    return true;
}

static int
split_multipart(struct mime_message *m, struct mime_part *part)
{
    const struct mime_param *bp = mime_param_find(part->params, "boundary");
    size_t bstart = part->body.off, end = part->body.off + part->body.len;
    size_t ce, after;
    bool close;
    if (!bp || bp->value.len == 0 ||
        !find_delimiter(m->data, bstart, bstart, end, bp->value.s, bp->value.len, &ce, &after,
                        &close) ||
        close) {
        /* No part at all: one empty text/plain part at the end, so that BODYSTRUCTURE keeps
         * its multipart type and its grammar (at least one body), and BODY[1] is empty. */
        m->flags |= MIME_MSG_BROKEN;
        struct mime_part *child = new_part(m, part, part->depth + 1);
        if (!child)
            return -ENOMEM;
        child->header = child->body = (struct mime_span){end, 0};
        part->children = child;
        part->n_children = 1;
        return set_default_text(m, child);
    }
    bool digest = mime_part_is(part, "multipart", "digest");
    struct mime_part **tail = &part->children;
    size_t start = after;
    for (;;) {
        size_t next_after;
        bool found = find_delimiter(m->data, bstart, start, end, bp->value.s, bp->value.len, &ce,
                                    &next_after, &close);
        if (!found) {
            ce = end;
            m->flags |= MIME_MSG_BROKEN;
        }
        if (m->n_parts >= m->limits.max_parts) {
            m->flags |= MIME_MSG_LIMIT_PARTS;
            break;
        }
        struct mime_part *child = new_part(m, part, part->depth + 1);
        if (!child)
            return -ENOMEM;
        int ret = parse_entity(m, child, start, ce, digest);
        if (ret < 0)
            return ret;
        *tail = child;
        tail = &child->next;
        part->n_children++;
        if (!found || close)
            break;
        start = next_after;
    }
    return 0;
}

static int
parse_entity(struct mime_message *m, struct mime_part *part, size_t start, size_t end,
             bool in_digest)
{
    scan_header(m, part, start, end);
    int ret = parse_content_fields(m, part, in_digest);
    if (ret < 0)
        return ret;
    if (mime_part_is(part, "multipart", NULL)) {
        if (!may_expand(m, part))
            return set_octet_stream(m, part);
        return split_multipart(m, part);
    }
    if (mime_part_is(part, "message", "rfc822") || mime_part_is(part, "message", "global")) {
        /* Encoded bytes are not a message we could point into. */
        if (part->encoding == MIME_ENC_BASE64 || part->encoding == MIME_ENC_QP)
            return 0;
        if (!may_expand(m, part))
            return set_octet_stream(m, part);
        struct mime_part *inner = new_part(m, part, part->depth + 1);
        if (!inner)
            return -ENOMEM;
        inner->is_message = true;
        part->message = inner;
        return parse_entity(m, inner, part->body.off, part->body.off + part->body.len, false);
    }
    return 0;
}

int
mime_message_parse(const uint8_t *data, size_t len, const struct mime_limits *limits,
                   struct mime_message **msg_r)
{
    struct mime_message *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->data = data ? data : (const uint8_t *)"";
    m->len = data ? len : 0;
    m->limits.max_depth = MIME_DEFAULT_MAX_DEPTH;
    m->limits.max_parts = MIME_DEFAULT_MAX_PARTS;
    m->limits.max_header = MIME_DEFAULT_MAX_HEADER;
    if (limits && limits->max_depth)
        m->limits.max_depth = limits->max_depth;
    if (limits && limits->max_parts)
        m->limits.max_parts = limits->max_parts;
    if (limits && limits->max_header)
        m->limits.max_header = limits->max_header;
    if (m->limits.max_depth > DEPTH_CAP)
        m->limits.max_depth = DEPTH_CAP;
    int ret = -ENOMEM;
    m->root = new_part(m, NULL, 0);
    if (m->root) {
        m->root->is_message = true;
        ret = parse_entity(m, m->root, 0, m->len, false);
    }
    mime_buf_clear(&m->tmp);
    if (ret < 0) {
        mime_message_free(&m);
        return ret;
    }
    *msg_r = m;
    return 0;
}

void
mime_message_free(struct mime_message **msg)
{
    if (!*msg)
        return;
    mime__arena_free(&(*msg)->arena);
    mime_buf_clear(&(*msg)->tmp);
    free(*msg);
    *msg = NULL;
}

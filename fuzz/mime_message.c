/*
 * Fuzzes the MIME parser and its IMAP views (src/proto/mime/). The first byte picks limits
 * (small ones, so the depth, part and header limits are hit often) and a split point for the
 * decoders; the rest is the message. Checked, aborting on any break:
 *   - every part's header and body lie inside the message and inside its parent's body, the
 *     part count and depth keep to the limits;
 *   - ENVELOPE and BODYSTRUCTURE text is balanced in parentheses outside quoted strings and
 *     literals, every literal's length is right, and the text follows RFC 3501's grammar
 *     for envelope and body (with extension data exactly as BODYSTRUCTURE writes it);
 *   - every section reachable by part number resolves to spans inside the message, and the
 *     BINARY.SIZE of a part equals the length BINARY gives;
 *   - the decoders give the same bytes whether the body is fed whole or in two pieces;
 *   - the search text of the body and header, and RFC 2047 decoding of the raw input, are
 *     valid UTF-8; case folding is idempotent and a text contains itself ignoring case;
 *   - a Date header that parses has every field in range.
 */
#include "proto/mime/mime_charset.h"
#include "proto/mime/mime_date.h"
#include "proto/mime/mime_decode.h"
#include "proto/mime/mime_imap.h"
#include "proto/mime/mime_message.h"
#include "proto/mime/mime_search.h"
#include "proto/mime/mime_section.h"

#include "lib/err.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

/* Parentheses balance outside "quoted" strings and {n}\r\n literals. */
static void
check_balanced(const struct mime_buf *b)
{
    const uint8_t *p = b->data, *end = b->data + b->len;
    long depth = 0;
    while (p < end) {
        uint8_t c = *p++;
        if (c == '"') {
            while (p < end && *p != '"') {
                check(*p != '\r' && *p != '\n' && *p < 0x80 && *p != 0);
                if (*p == '\\') {
                    p++;
                    check(p < end && (*p == '"' || *p == '\\'));
                }
                p++;
            }
            check(p < end);
            p++;
        } else if (c == '{') {
            size_t n = 0;
            while (p < end && *p >= '0' && *p <= '9')
                n = n * 10 + (size_t)(*p++ - '0');
            check(end - p >= 3 && p[0] == '}' && p[1] == '\r' && p[2] == '\n');
            p += 3;
            check((size_t)(end - p) >= n);
            check(memchr(p, 0, n) == NULL);
            p += n;
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            check(--depth >= 0);
        } else {
            check(c != '\r' && c != '\n');
        }
    }
    check(depth == 0);
}

/* A recursive-descent reader of RFC 3501 section 9's envelope and body; any deviation aborts.
 * Not a general IMAP parser: it knows what this writer may produce. */
struct gram {
    const uint8_t *p, *end;
    bool extended;
    unsigned flags;
};

static void
g_char(struct gram *g, uint8_t c)
{
    check(g->p < g->end && *g->p == c);
    g->p++;
}

static bool
g_peek(const struct gram *g, uint8_t c)
{
    return g->p < g->end && *g->p == c;
}

/* string: quoted or literal. Copies up to cap-1 bytes of its value into buf (for type
 * names), NUL-terminated. */
static void
g_string(struct gram *g, char *buf, size_t cap)
{
    size_t n = 0;
    if (g_peek(g, '{')) {
        g->p++;
        size_t len = 0;
        check(g->p < g->end && *g->p >= '0' && *g->p <= '9');
        while (g->p < g->end && *g->p >= '0' && *g->p <= '9')
            len = len * 10 + (size_t)(*g->p++ - '0');
        g_char(g, '}');
        g_char(g, '\r');
        g_char(g, '\n');
        check((size_t)(g->end - g->p) >= len);
        for (size_t i = 0; i < len; i++)
            if (buf && n + 1 < cap)
                buf[n++] = (char)g->p[i];
        g->p += len;
    } else {
        g_char(g, '"');
        while (!g_peek(g, '"')) {
            check(g->p < g->end);
            uint8_t c = *g->p++;
            if (c == '\\') {
                check(g->p < g->end && (*g->p == '"' || *g->p == '\\'));
                c = *g->p++;
            }
            if (buf && n + 1 < cap)
                buf[n++] = (char)c;
        }
        g->p++;
    }
    if (buf)
        buf[n] = '\0';
}

static bool
g_nil(struct gram *g)
{
    if (g->end - g->p >= 3 && memcmp(g->p, "NIL", 3) == 0) {
        g->p += 3;
        return true;
    }
    return false;
}

static void
g_nstring(struct gram *g)
{
    if (!g_nil(g))
        g_string(g, NULL, 0);
}

static void
g_number(struct gram *g)
{
    check(g->p < g->end && *g->p >= '0' && *g->p <= '9');
    while (g->p < g->end && *g->p >= '0' && *g->p <= '9')
        g->p++;
}

/* body-fld-param: NIL or ( string SP string *(SP string SP string) ) */
static void
g_params(struct gram *g)
{
    if (g_nil(g))
        return;
    g_char(g, '(');
    for (bool first = true; !g_peek(g, ')'); first = false) {
        if (!first)
            g_char(g, ' ');
        g_string(g, NULL, 0);
        g_char(g, ' ');
        g_string(g, NULL, 0);
    }
    g->p++;
}

static void
g_addresses(struct gram *g)
{
    if (g_nil(g))
        return;
    g_char(g, '(');
    check(g_peek(g, '('));
    while (g_peek(g, '(')) {
        g->p++;
        for (int i = 0; i < 4; i++) {
            if (i)
                g_char(g, ' ');
            g_nstring(g);
        }
        g_char(g, ')');
    }
    g_char(g, ')');
}

static void
g_envelope(struct gram *g)
{
    g_char(g, '(');
    g_nstring(g); /* date */
    g_char(g, ' ');
    g_nstring(g); /* subject */
    for (int i = 0; i < 6; i++) {
        g_char(g, ' ');
        g_addresses(g);
    }
    g_char(g, ' ');
    g_nstring(g); /* in-reply-to */
    g_char(g, ' ');
    g_nstring(g); /* message-id */
    g_char(g, ')');
}

/* disposition, language and location, after md5 or the multipart's parameters */
static void
g_ext_tail(struct gram *g)
{
    g_char(g, ' ');
    if (!g_nil(g)) {
        g_char(g, '(');
        g_string(g, NULL, 0);
        g_char(g, ' ');
        g_params(g);
        g_char(g, ')');
    }
    g_char(g, ' ');
    if (g_peek(g, '(')) {
        g->p++;
        g_string(g, NULL, 0);
        while (g_peek(g, ' ')) {
            g->p++;
            g_string(g, NULL, 0);
        }
        g_char(g, ')');
    } else {
        g_nstring(g);
    }
    g_char(g, ' ');
    g_nstring(g);
}

static void
g_body(struct gram *g, unsigned depth)
{
    check(depth < 1000);
    g_char(g, '(');
    if (g_peek(g, '(')) {
        while (g_peek(g, '('))
            g_body(g, depth + 1);
        g_char(g, ' ');
        g_string(g, NULL, 0);
        if (g->extended) {
            g_char(g, ' ');
            g_params(g);
            g_ext_tail(g);
        }
        g_char(g, ')');
        return;
    }
    char type[16], subtype[16];
    g_string(g, type, sizeof(type));
    g_char(g, ' ');
    g_string(g, subtype, sizeof(subtype));
    g_char(g, ' ');
    g_params(g);
    g_char(g, ' ');
    g_nstring(g); /* id */
    g_char(g, ' ');
    g_nstring(g); /* description */
    g_char(g, ' ');
    g_string(g, NULL, 0); /* encoding */
    g_char(g, ' ');
    g_number(g); /* octets */
    bool message = strcmp(type, "MESSAGE") == 0 &&
                   (strcmp(subtype, "RFC822") == 0 ||
                    (strcmp(subtype, "GLOBAL") == 0 && (g->flags & MIME_IMAP_REV2)));
    if (message && g->end - g->p > 1 && g->p[0] == ' ' && g->p[1] == '(') {
        g->p++;
        g_envelope(g);
        g_char(g, ' ');
        g_body(g, depth + 1);
        g_char(g, ' ');
        g_number(g);
    } else if (strcmp(type, "TEXT") == 0) {
        g_char(g, ' ');
        g_number(g); /* lines */
    }
    if (g->extended) {
        g_char(g, ' ');
        g_nstring(g); /* md5 */
        g_ext_tail(g);
    }
    g_char(g, ')');
}

static void
check_grammar(const struct mime_buf *b, bool is_envelope, bool extended, unsigned flags)
{
    struct gram g = {b->data, b->data + b->len, extended, flags};
    if (is_envelope)
        g_envelope(&g);
    else
        g_body(&g, 0);
    check(g.p == g.end);
}

static unsigned
check_part(const struct mime_part *p, size_t size, size_t lo, size_t hi, unsigned max_depth)
{
    check(p->header.off >= lo && p->header.len <= hi - p->header.off);
    check(p->body.off >= lo && p->body.len <= hi - p->body.off);
    check(p->header.off + p->header.len <= p->body.off);
    check(hi <= size);
    check(p->depth <= max_depth);
    check(p->type.s && p->subtype.s);
    unsigned n = 1, kids = 0;
    for (const struct mime_part *c = p->children; c; c = c->next) {
        check(c->parent == p && c->depth == p->depth + 1);
        n += check_part(c, size, p->body.off, p->body.off + p->body.len, max_depth);
        kids++;
    }
    check(kids == p->n_children);
    check(!p->children || mime_part_is(p, "multipart", NULL));
    if (p->message) {
        check(p->message->is_message && p->message->parent == p);
        n += check_part(p->message, size, p->body.off, p->body.off + p->body.len, max_depth);
    }
    return n;
}

static void
check_span(struct mime_span s, size_t size)
{
    check(s.off <= size && s.len <= size - s.off);
}

/* Visits the sections of every part reachable by part number, up to a bounded count. */
static void
check_sections(const struct mime_message *m, struct mime_section *sec, unsigned *budget)
{
    static const enum mime_section_text texts[] = {MIME_SECTION_ALL, MIME_SECTION_MIME,
                                                   MIME_SECTION_HEADER, MIME_SECTION_TEXT,
                                                   MIME_SECTION_HEADER_FIELDS_NOT};
    size_t size = mime_message_size(m);
    for (uint32_t k = 1; k < 64 && *budget; k++) {
        (*budget)--;
        if (sec->n_parts == MIME_SECTION_PARTS_MAX)
            return;
        sec->part[sec->n_parts++] = k;
        const struct mime_part *part;
        bool as_message;
        if (mime_section_part(m, sec->part, sec->n_parts, &part, &as_message) != 0) {
            sec->n_parts--;
            return;
        }
        for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
            struct mime_span span;
            struct mime_buf built = MIME_BUF_INIT;
            sec->text = texts[t];
            int ret = mime_section_fetch(m, sec, &span, &built);
            check(ret == 0 || ret == 1 || ret == TDM_ENOTFOUND);
            if (ret == 0)
                check_span(span, size);
            if (ret == 1)
                check(built.len >= 2 && memcmp(built.data + built.len - 2, "\r\n", 2) == 0);
            mime_buf_clear(&built);
        }
        struct mime_span span;
        struct mime_buf dec = MIME_BUF_INIT;
        bool clean;
        int ret = mime_binary_fetch(m, sec->part, sec->n_parts, &span, &dec, &clean);
        uint64_t bsize;
        int sret = mime_binary_size(m, sec->part, sec->n_parts, &bsize);
        check(ret < 0 ? sret == ret : sret == 0);
        if (ret == 0)
            check(bsize == span.len);
        if (ret == 1)
            check(bsize == dec.len);
        mime_buf_clear(&dec);
        check_sections(m, sec, budget);
        sec->n_parts--;
    }
}

/* The body fed whole and in two pieces decodes the same. */
static void
check_decoders(const uint8_t *in, size_t len, size_t cut)
{
    static const enum mime_encoding encs[] = {MIME_ENC_BASE64, MIME_ENC_QP};
    uint8_t *a = malloc(MIME_DECODE_BOUND(len) + MIME_DECODE_FINISH_MAX);
    uint8_t *b = malloc(2 * MIME_DECODE_BOUND(len) + MIME_DECODE_FINISH_MAX);
    check(a && b);
    for (size_t e = 0; e < 2; e++) {
        struct mime_decoder d;
        mime_decoder_init(&d, encs[e]);
        size_t na = mime_decoder_feed(&d, in, len, a);
        na += mime_decoder_finish(&d, a + na);
        check(na <= len);
        mime_decoder_init(&d, encs[e]);
        size_t nb = mime_decoder_feed(&d, in, cut, b);
        nb += mime_decoder_feed(&d, in + cut, len - cut, b + nb);
        nb += mime_decoder_finish(&d, b + nb);
        check(na == nb && memcmp(a, b, na) == 0);
    }
    free(a);
    free(b);
}

static void
check_text(const struct mime_message *m, const uint8_t *in, size_t len)
{
    const struct mime_part *root = mime_message_root(m);
    struct mime_buf t = MIME_BUF_INIT, f1 = MIME_BUF_INIT, f2 = MIME_BUF_INIT;
    check(mime_search_body_text(m, root, &t) == 0);
    check(mime_utf8_valid(t.data, t.len));
    t.len = 0;
    check(mime_search_header_text(m, root, NULL, &t) == 0);
    check(mime_utf8_valid(t.data, t.len));
    t.len = 0;
    check(mime_header_decode_utf8(in, len, &t) == 0);
    check(mime_utf8_valid(t.data, t.len));
    check(mime_utf8_fold(in, len, &f1) == 0);
    check(mime_utf8_fold(f1.data, f1.len, &f2) == 0);
    check(f1.len == f2.len && (f1.len == 0 || memcmp(f1.data, f2.data, f1.len) == 0));
    /* The needle is the whole input: a piece cut inside a UTF-8 sequence would fold to U+FFFD
     * where the haystack has a character, and rightly not match. */
    check(mime_utf8_icontains(in, len, in, len) == 1);
    mime_buf_clear(&t);
    mime_buf_clear(&f1);
    mime_buf_clear(&f2);

    struct mime_field field;
    if (mime_header_find(mime_message_data(m), root, "date", &field)) {
        struct mime_buf v = MIME_BUF_INIT;
        mime_header_unfold(mime_message_data(m), field.value, &v);
        struct mime_date d;
        if (!v.error && mime_date_parse(v.data, v.len, &d) == 0)
            check(d.month >= 1 && d.month <= 12 && d.day >= 1 && d.day <= 31 && d.hour <= 23 &&
                  d.min <= 59 && d.sec <= 60 && d.zone_minutes > -6000 && d.zone_minutes < 6000 &&
                  d.year >= 0 && d.year <= 9999);
        mime_buf_clear(&v);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    struct mime_limits lim = {0};
    if (sel & 1) {
        lim.max_depth = 1 + (sel >> 1 & 7);
        lim.max_parts = 1 + (sel >> 4 & 15);
        lim.max_header = 16 + (sel & 0xf0);
    }
    struct mime_message *m;
    if (mime_message_parse(msg, len, &lim, &m) != 0)
        return 0;
    unsigned max_depth = lim.max_depth ? lim.max_depth : MIME_DEFAULT_MAX_DEPTH;
    unsigned max_parts = lim.max_parts ? lim.max_parts : MIME_DEFAULT_MAX_PARTS;
    const struct mime_part *root = mime_message_root(m);
    unsigned n = check_part(root, len, 0, len, max_depth + 1);
    check(n == mime_message_part_count(m) && n <= max_parts);

    struct mime_buf b = MIME_BUF_INIT;
    check(mime_imap_envelope(m, root, &b) == 0);
    check_balanced(&b);
    check_grammar(&b, true, false, 0);
    for (int ext = 0; ext < 2; ext++)
        for (unsigned flags = 0; flags <= MIME_IMAP_REV2; flags++) {
            b.len = 0;
            check(mime_imap_bodystructure(m, root, ext, flags, &b) == 0);
            check_balanced(&b);
            check_grammar(&b, false, ext, flags);
        }
    mime_buf_clear(&b);

    struct mime_section sec;
    memset(&sec, 0, sizeof(sec));
    unsigned budget = 256;
    check_sections(m, &sec, &budget);

    check_decoders(msg, len, len ? sel % (len + 1) : 0);
    check_text(m, msg, len);
    mime_message_free(&m);
    return 0;
}

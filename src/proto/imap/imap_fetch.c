/*
 * FETCH arguments (RFC 9051 6.4.5, RFC 3501 6.4.5, RFC 3516 BINARY, RFC 7162 CHANGEDSINCE and
 * VANISHED). Items are matched by prefix rather than as atoms because "[" is an atom character:
 * "BODY[1]" is one token to the atom rules, three to the FETCH grammar.
 */
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_int.h"

#include <string.h>
#include <strings.h>

/* Consumes the literal text p (case-insensitive) when the input starts with it. */
static bool
prefix(struct imap__reader *r, const char *p)
{
    size_t n = strlen(p);
    if (r->len - r->pos < n || strncasecmp((const char *)r->buf + r->pos, p, n) != 0)
        return false;
    r->pos += n;
    return true;
}

/* A section-text keyword must end at ']' or, for HEADER.FIELDS, at SP. */
static bool
text_kw(struct imap__reader *r, const char *kw)
{
    size_t save = r->pos;
    if (!prefix(r, kw))
        return false;
    int c = imap__peek(r);
    if (c == ']' || c == ' ')
        return true;
    r->pos = save;
    return false;
}

static bool
header_list(struct imap__reader *r, struct imap_fetch_att *f)
{
    if (!imap__sp(r) || !imap__char(r, '(', "Header field list expected"))
        return false;
    size_t cap = 0;
    for (;;) {
        if (!imap__count_item(r))
            return false;
        if (f->n_fields == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            const char **nf = imap_arena_array(r->a, ncap, sizeof(*nf));
            if (!nf)
                return imap__nomem(r);
            if (f->n_fields)
                memcpy(nf, f->fields, f->n_fields * sizeof(*nf));
            f->fields = nf;
            cap = ncap;
        }
        if (!imap__astring(r, &f->fields[f->n_fields], "Header field name expected"))
            return false;
        f->n_fields++;
        if (!imap__at_sp(r))
            break;
        r->pos++;
    }
    return imap__char(r, ')', "Invalid header field list");
}

/* "[" has been read. section-spec for BODY; section-part only for BINARY. */
static bool
section(struct imap__reader *r, struct imap_fetch_att *f, bool binary)
{
    size_t cap = 0;
    while (imap__peek(r) >= '0' && imap__peek(r) <= '9') {
        if (f->n_part == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            uint32_t *np = imap_arena_array(r->a, ncap, sizeof(*np));
            if (!np)
                return imap__nomem(r);
            if (f->n_part)
                memcpy(np, f->part, f->n_part * sizeof(*np));
            f->part = np;
            cap = ncap;
        }
        if (!imap__count_item(r) ||
            !imap__nz_number(r, &f->part[f->n_part], "Invalid section part"))
            return false;
        f->n_part++;
        if (imap__peek(r) != '.')
            break;
        r->pos++;
        if (imap__peek(r) < '0' || imap__peek(r) > '9')
            break; /* section-text follows */
    }
    bool after_dot = f->n_part && r->buf[r->pos - 1] == '.';
    if (imap__peek(r) == ']' && !after_dot) {
        r->pos++;
        return true;
    }
    if (binary || (f->n_part && !after_dot))
        return imap__fail(r, "Invalid section");
    if (text_kw(r, "HEADER.FIELDS.NOT")) {
        f->text = IMAP_SECTION_HEADER_FIELDS_NOT;
        if (!header_list(r, f))
            return false;
    } else if (text_kw(r, "HEADER.FIELDS")) {
        f->text = IMAP_SECTION_HEADER_FIELDS;
        if (!header_list(r, f))
            return false;
    } else if (text_kw(r, "HEADER")) {
        f->text = IMAP_SECTION_HEADER;
    } else if (text_kw(r, "TEXT")) {
        f->text = IMAP_SECTION_TEXT;
    } else if (f->n_part && text_kw(r, "MIME")) {
        f->text = IMAP_SECTION_MIME;
    } else {
        return imap__fail(r, "Invalid section");
    }
    return imap__char(r, ']', "Invalid section");
}

static bool
partial(struct imap__reader *r, struct imap_fetch_att *f)
{
    if (imap__peek(r) != '<')
        return true;
    r->pos++;
    f->partial = true;
    /* partial = "<" number64 "." nz-number64 ">" */
    return imap__number(r, INT64_MAX, &f->offset, "Invalid partial range") &&
           imap__char(r, '.', "Invalid partial range") &&
           imap__number(r, INT64_MAX, &f->length, "Invalid partial range") &&
           (f->length > 0 || imap__fail(r, "Invalid partial range")) &&
           imap__char(r, '>', "Invalid partial range");
}

static const struct {
    const char *name;
    enum imap_fetch_kind kind;
} simple[] = {
    {"ENVELOPE", IMAP_FETCH_ENVELOPE},
    {"FLAGS", IMAP_FETCH_FLAGS},
    {"INTERNALDATE", IMAP_FETCH_INTERNALDATE},
    {"RFC822.HEADER", IMAP_FETCH_RFC822_HEADER},
    {"RFC822.SIZE", IMAP_FETCH_RFC822_SIZE},
    {"RFC822.TEXT", IMAP_FETCH_RFC822_TEXT},
    {"RFC822", IMAP_FETCH_RFC822},
    {"BODYSTRUCTURE", IMAP_FETCH_BODYSTRUCTURE},
    {"BODY", IMAP_FETCH_BODY},
    {"UID", IMAP_FETCH_UID},
    {"MODSEQ", IMAP_FETCH_MODSEQ},
};

static bool
fetch_att(struct imap__reader *r, struct imap_fetch_att *f)
{
    if (!imap__count_item(r))
        return false;
    if (prefix(r, "BODY.PEEK[") || prefix(r, "BODY[")) {
        f->kind = IMAP_FETCH_BODY_SECTION;
        f->peek = r->buf[r->pos - 2] == 'K' || r->buf[r->pos - 2] == 'k';
        return section(r, f, false) && partial(r, f);
    }
    if (prefix(r, "BINARY.PEEK[") || prefix(r, "BINARY[")) {
        f->kind = IMAP_FETCH_BINARY;
        f->peek = r->buf[r->pos - 2] == 'K' || r->buf[r->pos - 2] == 'k';
        return section(r, f, true) && partial(r, f);
    }
    if (prefix(r, "BINARY.SIZE[")) {
        f->kind = IMAP_FETCH_BINARY_SIZE;
        return section(r, f, true);
    }
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
        if (imap__keyword(r, simple[i].name)) {
            f->kind = simple[i].kind;
            return true;
        }
    return imap__fail(r, "Unknown FETCH item");
}

static bool
macro(struct imap__reader *r, struct imap_command *c)
{
    static const enum imap_fetch_kind all[] = {IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
                                               IMAP_FETCH_RFC822_SIZE, IMAP_FETCH_ENVELOPE,
                                               IMAP_FETCH_BODY};
    size_t n;
    if (imap__keyword(r, "ALL")) {
        c->u.fetch.macro = IMAP_FETCH_MACRO_ALL;
        n = 4;
    } else if (imap__keyword(r, "FAST")) {
        c->u.fetch.macro = IMAP_FETCH_MACRO_FAST;
        n = 3;
    } else if (imap__keyword(r, "FULL")) {
        c->u.fetch.macro = IMAP_FETCH_MACRO_FULL;
        n = 5;
    } else {
        return false;
    }
    c->u.fetch.atts = imap_arena_array(r->a, n, sizeof(*c->u.fetch.atts));
    if (!c->u.fetch.atts)
        return imap__nomem(r);
    for (size_t i = 0; i < n; i++)
        c->u.fetch.atts[i].kind = all[i];
    c->u.fetch.n = n;
    return true;
}

static bool
modifiers(struct imap__reader *r, struct imap_command *c)
{
    /* fetch-modifiers = SP "(" fetch-modifier *(SP fetch-modifier) ")" */
    if (!imap__char(r, '(', "FETCH modifiers expected"))
        return false;
    for (;;) {
        if (!imap__count_item(r))
            return false;
        if (imap__keyword(r, "CHANGEDSINCE")) {
            if (!imap__sp(r) ||
                !imap__number(r, INT64_MAX, &c->u.fetch.changedsince, "Invalid mod-sequence"))
                return false;
            if (c->u.fetch.changedsince == 0)
                return imap__fail(r, "Invalid mod-sequence");
            c->u.fetch.has_changedsince = true;
        } else if (imap__keyword(r, "VANISHED")) {
            c->u.fetch.vanished = true;
        } else {
            return imap__fail(r, "Unknown FETCH modifier");
        }
        if (!imap__at_sp(r))
            break;
        r->pos++;
    }
    if (!imap__char(r, ')', "Invalid FETCH modifiers"))
        return false;
    /* RFC 7162 3.2.6: VANISHED only in UID FETCH, and only with CHANGEDSINCE. */
    if (c->u.fetch.vanished && (!c->uid || !c->u.fetch.has_changedsince))
        return imap__fail(r, "VANISHED needs UID FETCH and CHANGEDSINCE");
    return true;
}

bool
imap__parse_fetch(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !imap__seqset(r, true, &c->u.fetch.set) || !imap__sp(r))
        return false;
    if (!macro(r, c)) {
        if (r->err || r->enomem)
            return false;
        size_t cap = 0;
        bool list = imap__peek(r) == '(';
        r->pos += list;
        for (;;) {
            if (c->u.fetch.n == cap) {
                size_t ncap = cap ? cap * 2 : 4;
                struct imap_fetch_att *na = imap_arena_array(r->a, ncap, sizeof(*na));
                if (!na)
                    return imap__nomem(r);
                if (c->u.fetch.n)
                    memcpy(na, c->u.fetch.atts, c->u.fetch.n * sizeof(*na));
                c->u.fetch.atts = na;
                cap = ncap;
            }
            if (!fetch_att(r, &c->u.fetch.atts[c->u.fetch.n]))
                return false;
            c->u.fetch.n++;
            if (!list || !imap__at_sp(r))
                break;
            r->pos++;
        }
        if (list && !imap__char(r, ')', "Invalid FETCH item list"))
            return false;
    }
    if (!imap__at_sp(r))
        return true;
    r->pos++;
    return modifiers(r, c);
}

/*
 * ENVELOPE (RFC 3501 7.4.2) and the RFC 5322 address-list parser it needs (3.4, with the
 * obsolete forms of 4.4: routes, phrases with dots, CFWS anywhere). Rules chosen where the
 * RFCs leave room are in mime_imap.h. The parser never fails on content: a piece it cannot
 * read is skipped up to the next ',' and what it could read is kept.
 */
#include "proto/mime/mime_imap.h"

#include "proto/mime/mime_int.h"

#include <errno.h>
#include <string.h>

struct addr {
    struct addr *next;
    struct mime_str name, route, mailbox, host;
    int group; /* 0 address, 1 group start (mailbox = group name), 2 group end */
};

struct addr_parser {
    struct mime_arena arena;
    struct mime_lex lx;
    struct addr *head, **tail;
    struct mime_buf phrase, local, comment, tmp;
    int error;
};

static struct mime_str
dup_buf(struct addr_parser *ap, const struct mime_buf *b)
{
    struct mime_str s = {NULL, 0};
    if (b->error || mime__strdup(&ap->arena, b->len ? (const void *)b->data : "", b->len, &s) < 0)
        ap->error = -ENOMEM;
    return s;
}

static struct addr *
emit(struct addr_parser *ap, int group)
{
    struct addr *a = mime__alloc(&ap->arena, sizeof(*a));
    if (!a) {
        ap->error = -ENOMEM;
        return NULL;
    }
    a->group = group;
    *ap->tail = a;
    ap->tail = &a->next;
    return a;
}

/* The phrase (display name) words: atoms may hold '.' (obs-phrase), quoted strings are
 * unquoted, words are joined by one space. Also collects the words run together as a local
 * part, for an addr-spec without angle brackets. */
static unsigned
read_phrase(struct addr_parser *ap)
{
    ap->phrase.len = 0;
    ap->local.len = 0;
    unsigned words = 0;
    for (;;) {
        mime__lex_cfws(&ap->lx, &ap->comment);
        ap->tmp.len = 0;
        if (mime__lex_word(&ap->lx, MIME_PHRASE_SPECIALS, &ap->tmp) == MIME_WORD_NONE)
            break;
        if (words++)
            mime_buf_append_byte(&ap->phrase, ' ');
        mime_buf_append(&ap->phrase, ap->tmp.data, ap->tmp.len);
        mime_buf_append(&ap->local, ap->tmp.data, ap->tmp.len);
    }
    return words;
}

/* domain: dot-atoms or a domain literal, CFWS between pieces dropped. */
static void
read_domain(struct addr_parser *ap, struct mime_buf *out)
{
    out->len = 0;
    for (;;) {
        mime__lex_cfws(&ap->lx, &ap->comment);
        struct mime_lex *lx = &ap->lx;
        if (lx->p < lx->end && *lx->p == '[') {
            const uint8_t *s = lx->p;
            while (lx->p < lx->end && *lx->p != ']')
                lx->p++;
            if (lx->p < lx->end)
                lx->p++;
            mime_buf_append(out, s, (size_t)(lx->p - s));
            continue;
        }
        ap->tmp.len = 0;
        if (mime__lex_word(lx, MIME_PHRASE_SPECIALS, &ap->tmp) != MIME_WORD_ATOM)
            break;
        mime_buf_append(out, ap->tmp.data, ap->tmp.len);
    }
}

static void
set_addr(struct addr_parser *ap, struct addr *a, const struct mime_buf *local,
         const struct mime_buf *host)
{
    static const struct mime_buf missing_mailbox = {(uint8_t *)"MISSING_MAILBOX", 15, 0, 0};
    static const struct mime_buf missing_domain = {(uint8_t *)"MISSING_DOMAIN", 14, 0, 0};
    a->mailbox = dup_buf(ap, local->len ? local : &missing_mailbox);
    a->host = dup_buf(ap, host && host->len ? host : &missing_domain);
}

/* After '<': [route ':'] local '@' domain '>'. */
static void
read_angle(struct addr_parser *ap, struct addr *a)
{
    struct mime_lex *lx = &ap->lx;
    struct mime_buf host = MIME_BUF_INIT;
    mime__lex_cfws(lx, NULL);
    if (lx->p < lx->end && *lx->p == '@') {
        /* obs-route: "@a,@b:" kept without white space as the adl. */
        ap->tmp.len = 0;
        while (lx->p < lx->end && *lx->p != ':' && *lx->p != '>') {
            if (!mime__is_wsp(*lx->p) && *lx->p != '\r' && *lx->p != '\n')
                mime_buf_append_byte(&ap->tmp, *lx->p);
            lx->p++;
        }
        if (lx->p < lx->end && *lx->p == ':') {
            lx->p++;
            a->route = dup_buf(ap, &ap->tmp);
        }
    }
    read_phrase(ap);
    bool have_host = false;
    if (lx->p < lx->end && *lx->p == '@') {
        lx->p++;
        read_domain(ap, &host);
        have_host = true;
    }
    set_addr(ap, a, &ap->local, have_host ? &host : NULL);
    if (host.error)
        ap->error = -ENOMEM;
    mime_buf_clear(&host);
    while (lx->p < lx->end && *lx->p != '>' && *lx->p != ',')
        lx->p++;
    if (lx->p < lx->end && *lx->p == '>')
        lx->p++;
}

static void
parse_list(struct addr_parser *ap)
{
    struct mime_lex *lx = &ap->lx;
    bool in_group = false;
    while (!ap->error) {
        ap->comment.len = 0;
        mime__lex_cfws(lx, &ap->comment);
        if (lx->p >= lx->end)
            break;
        uint8_t c = *lx->p;
        if (c == ',') {
            lx->p++;
            continue;
        }
        if (c == ';') {
            lx->p++;
            if (in_group) {
                emit(ap, 2);
                in_group = false;
            }
            continue;
        }
        ap->comment.len = 0;
        unsigned words = read_phrase(ap);
        c = lx->p < lx->end ? *lx->p : ',';
        if (c == ':' && words && !in_group) {
            lx->p++;
            struct addr *a = emit(ap, 1);
            if (a)
                a->mailbox = dup_buf(ap, &ap->phrase);
            in_group = true;
        } else if (c == '<') {
            lx->p++;
            struct addr *a = emit(ap, 0);
            if (!a)
                break;
            /* "" <a@b> has no name: NIL, not an empty string. */
            if (words && ap->phrase.len)
                a->name = dup_buf(ap, &ap->phrase);
            read_angle(ap, a);
        } else if (c == '@' && words) {
            lx->p++;
            struct addr *a = emit(ap, 0);
            if (!a)
                break;
            struct mime_buf local = MIME_BUF_INIT, host = MIME_BUF_INIT;
            mime_buf_append(&local, ap->local.data, ap->local.len);
            read_domain(ap, &host);
            set_addr(ap, a, &local, &host);
            if (local.error || host.error)
                ap->error = -ENOMEM;
            mime_buf_clear(&local);
            mime_buf_clear(&host);
            /* "user@host (Name)": the comment names the address. */
            mime__lex_cfws(lx, &ap->comment);
            if (ap->comment.len)
                a->name = dup_buf(ap, &ap->comment);
        } else if (words && (c == ',' || c == ';')) {
            /* A bare word: a local part without a domain. */
            struct addr *a = emit(ap, 0);
            if (a)
                set_addr(ap, a, &ap->local, NULL);
        } else {
            /* Junk: skip to the next address. */
            while (lx->p < lx->end && *lx->p != ',' && *lx->p != ';')
                lx->p++;
        }
        if (ap->phrase.error || ap->local.error || ap->comment.error || ap->tmp.error)
            ap->error = -ENOMEM;
    }
    if (in_group && !ap->error)
        emit(ap, 2);
}

static void
write_addr_list(struct mime_buf *out, const struct addr *a)
{
    if (!a) {
        mime_buf_append_str(out, "NIL");
        return;
    }
    static const struct mime_str nil = {NULL, 0};
    mime_buf_append_byte(out, '(');
    for (; a; a = a->next) {
        mime_buf_append_byte(out, '(');
        mime_imap_nstring(out, a->group ? &nil : &a->name);
        mime_buf_append_byte(out, ' ');
        mime_imap_nstring(out, a->group ? &nil : &a->route);
        mime_buf_append_byte(out, ' ');
        mime_imap_nstring(out, a->group == 2 ? &nil : &a->mailbox);
        mime_buf_append_byte(out, ' ');
        mime_imap_nstring(out, a->group ? &nil : &a->host);
        mime_buf_append_byte(out, ')');
    }
    mime_buf_append_byte(out, ')');
}

/* Parses the first field called name into a list in ap (NULL when absent or empty). */
static struct addr *
parse_field(struct addr_parser *ap, const uint8_t *data, const struct mime_part *root,
            const char *name)
{
    struct mime_field f;
    ap->head = NULL;
    ap->tail = &ap->head;
    if (!mime_header_find(data, root, name, &f))
        return NULL;
    struct mime_buf v = MIME_BUF_INIT;
    mime_header_unfold(data, f.value, &v);
    if (v.error) {
        ap->error = -ENOMEM;
    } else if (v.len) {
        ap->lx = (struct mime_lex){v.data, v.data + v.len};
        parse_list(ap);
    }
    mime_buf_clear(&v);
    return ap->head;
}

static void
write_unstructured(struct mime_buf *out, const uint8_t *data, const struct mime_part *root,
                   const char *name)
{
    struct mime_field f;
    if (!mime_header_find(data, root, name, &f)) {
        mime_buf_append_str(out, "NIL");
        return;
    }
    struct mime_buf v = MIME_BUF_INIT;
    mime_header_unfold(data, f.value, &v);
    if (v.error)
        out->error = v.error;
    else
        mime_imap_string(out, v.data ? (const void *)v.data : "", v.len);
    mime_buf_clear(&v);
}

int
mime_imap_envelope(const struct mime_message *msg, const struct mime_part *root,
                   struct mime_buf *out)
{
    const uint8_t *data = mime_message_data(msg);
    struct addr_parser ap = {0};
    mime_buf_append_byte(out, '(');
    write_unstructured(out, data, root, "date");
    mime_buf_append_byte(out, ' ');
    write_unstructured(out, data, root, "subject");
    struct addr *from = parse_field(&ap, data, root, "from");
    static const char *const fields[] = {"sender", "reply-to", "to", "cc", "bcc"};
    mime_buf_append_byte(out, ' ');
    write_addr_list(out, from);
    for (size_t i = 0; i < 5; i++) {
        struct addr *l = parse_field(&ap, data, root, fields[i]);
        mime_buf_append_byte(out, ' ');
        /* RFC 3501: an absent or empty Sender or Reply-To is the From list. */
        write_addr_list(out, !l && i < 2 ? from : l);
    }
    mime_buf_append_byte(out, ' ');
    write_unstructured(out, data, root, "in-reply-to");
    mime_buf_append_byte(out, ' ');
    write_unstructured(out, data, root, "message-id");
    mime_buf_append_byte(out, ')');
    if (ap.error && !out->error)
        out->error = ap.error;
    mime_buf_clear(&ap.phrase);
    mime_buf_clear(&ap.local);
    mime_buf_clear(&ap.comment);
    mime_buf_clear(&ap.tmp);
    mime__arena_free(&ap.arena);
    return mime_buf_error(out);
}

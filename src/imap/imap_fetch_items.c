/*
 * FETCH data items (imap_fetch.h): the plan made from the command, and one message's
 * "* n FETCH (...)" written from it with the MIME layer (src/proto/mime): ENVELOPE, BODY,
 * BODYSTRUCTURE, BODY[section]<partial>, RFC822.*, BINARY[part]<partial>, BINARY.SIZE, and
 * the simple ones (FLAGS, UID, RFC822.SIZE, INTERNALDATE, MODSEQ).
 *
 * A section that does not exist in a message (BODY[3] of a message with two parts) is NIL, and
 * its BINARY.SIZE 0, rather than an error: the other messages of the same FETCH may have it,
 * and NIL is what the grammar offers for "nothing there" (Dovecot answers the same way).
 *
 * Bodies are read in place from LMDB's map; the parse of a message lives only while its
 * response is written, inside the batch's read transaction.
 */
#include "imap/imap_fetch.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "proto/mime/mime_buf.h"
#include "proto/mime/mime_imap.h"
#include "proto/mime/mime_message.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bodies at least this long skip the session's buffer and go to the connection directly. */
#define DIRECT_WRITE_MIN (64u * 1024u)

/* ---- The plan ---- */

static enum mime_section_text
section_text(enum imap_section_text t)
{
    switch (t) {
    case IMAP_SECTION_HEADER:
        return MIME_SECTION_HEADER;
    case IMAP_SECTION_HEADER_FIELDS:
        return MIME_SECTION_HEADER_FIELDS;
    case IMAP_SECTION_HEADER_FIELDS_NOT:
        return MIME_SECTION_HEADER_FIELDS_NOT;
    case IMAP_SECTION_TEXT:
        return MIME_SECTION_TEXT;
    case IMAP_SECTION_MIME:
        return MIME_SECTION_MIME;
    case IMAP_SECTION_NONE:
        break;
    }
    return MIME_SECTION_ALL;
}

static bool
is_body_kind(enum imap_fetch_kind k)
{
    return k == IMAP_FETCH_BODY_SECTION || k == IMAP_FETCH_BINARY || k == IMAP_FETCH_RFC822 ||
           k == IMAP_FETCH_RFC822_TEXT || k == IMAP_FETCH_RFC822_HEADER;
}

/* The response's name for a: the request without .PEEK, with only the origin of a partial
 * (RFC 3501 7.4.2: "BODY[]<0>"). */
static int
make_label(const struct imap_fetch_att *a, char **label_r)
{
    static const char *const texts[] = {
        [IMAP_SECTION_NONE] = "",
        [IMAP_SECTION_HEADER] = "HEADER",
        [IMAP_SECTION_HEADER_FIELDS] = "HEADER.FIELDS",
        [IMAP_SECTION_HEADER_FIELDS_NOT] = "HEADER.FIELDS.NOT",
        [IMAP_SECTION_TEXT] = "TEXT",
        [IMAP_SECTION_MIME] = "MIME",
    };
    struct imap_buf b = IMAP_BUF_INIT;
    imap_buf_puts(&b, a->kind == IMAP_FETCH_BODY_SECTION ? "BODY["
                      : a->kind == IMAP_FETCH_BINARY     ? "BINARY["
                                                         : "BINARY.SIZE[");
    for (size_t i = 0; i < a->n_part; i++)
        imap_buf_printf(&b, "%s%u", i ? "." : "", a->part[i]);
    if (a->text != IMAP_SECTION_NONE)
        imap_buf_printf(&b, "%s%s", a->n_part ? "." : "", texts[a->text]);
    if (a->text == IMAP_SECTION_HEADER_FIELDS || a->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
        imap_buf_puts(&b, " (");
        for (size_t i = 0; i < a->n_fields; i++) {
            imap_buf_puts(&b, i ? " " : "");
            imap_write_astring(&b, a->fields[i], strlen(a->fields[i]), IMAP_WRITE_REV1);
        }
        imap_buf_puts(&b, ")");
    }
    imap_buf_puts(&b, "]");
    if (a->partial)
        imap_buf_printf(&b, "<%llu>", (unsigned long long)a->offset);
    if (imap_buf_error(&b) < 0) {
        imap_buf_free(&b);
        return -ENOMEM;
    }
    *label_r = b.data; /* taken */
    return 0;
}

static const char *
simple_label(enum imap_fetch_kind k)
{
    switch (k) {
    case IMAP_FETCH_RFC822:
        return "RFC822";
    case IMAP_FETCH_RFC822_HEADER:
        return "RFC822.HEADER";
    case IMAP_FETCH_RFC822_TEXT:
        return "RFC822.TEXT";
    default:
        return NULL; /* written by kind, no label needed */
    }
}

/* Copies the HEADER.FIELDS names of every item into one owned array the sections borrow. */
static int
copy_field_names(const struct imap_command *cmd, struct imap_fetch_plan *plan)
{
    size_t total = 0;
    for (size_t i = 0; i < cmd->u.fetch.n; i++)
        total += cmd->u.fetch.atts[i].n_fields;
    if (!total)
        return 0;
    plan->field_names = calloc(total, sizeof(*plan->field_names));
    if (!plan->field_names)
        return -ENOMEM;
    for (size_t i = 0; i < cmd->u.fetch.n; i++) {
        const struct imap_fetch_att *a = &cmd->u.fetch.atts[i];
        for (size_t j = 0; j < a->n_fields; j++) {
            struct mime_str *f = &plan->field_names[plan->n_field_names];
            f->len = strlen(a->fields[j]);
            f->s = strdup(a->fields[j]);
            if (!f->s)
                return -ENOMEM;
            plan->n_field_names++;
        }
    }
    return 0;
}

/* One item of the plan from a; fields: where a's field names start in plan->field_names. */
static int
add_item(struct imap_fetch_plan *plan, const struct imap_fetch_att *a,
         const struct mime_str *fields)
{
    struct imap_fetch_item *it = &plan->items[plan->n];
    memset(it, 0, sizeof(*it));
    it->kind = a->kind;
    it->partial = a->partial;
    it->offset = a->offset;
    it->length = a->length;
    bool sectioned = a->kind == IMAP_FETCH_BODY_SECTION || a->kind == IMAP_FETCH_BINARY ||
                     a->kind == IMAP_FETCH_BINARY_SIZE;
    if (sectioned) {
        if (a->n_part)
            memcpy(it->section.part, a->part, a->n_part * sizeof(a->part[0]));
        it->section.n_parts = (unsigned)a->n_part;
        it->section.text = section_text(a->text);
        it->section.fields = fields;
        it->section.n_fields = a->n_fields;
        if (make_label(a, &it->label) < 0)
            return -ENOMEM;
    } else if (simple_label(a->kind) && !(it->label = strdup(simple_label(a->kind)))) {
        return -ENOMEM;
    }
    plan->n++;
    switch (a->kind) {
    case IMAP_FETCH_FLAGS:
        plan->has_flags = true;
        break;
    case IMAP_FETCH_UID:
        plan->has_uid = true;
        break;
    case IMAP_FETCH_MODSEQ:
        plan->has_modseq = true;
        break;
    case IMAP_FETCH_ENVELOPE:
    case IMAP_FETCH_BODY:
    case IMAP_FETCH_BODYSTRUCTURE:
    case IMAP_FETCH_RFC822_HEADER:
    case IMAP_FETCH_RFC822_TEXT:
        plan->reads_body = plan->parses_mime = true;
        break;
    case IMAP_FETCH_RFC822:
        plan->reads_body = true;
        break;
    case IMAP_FETCH_BODY_SECTION:
        plan->reads_body = true;
        /* BODY[] and BODY[]<p> are the stored bytes as they are: no parse. */
        if (a->n_part || a->text != IMAP_SECTION_NONE)
            plan->parses_mime = true;
        break;
    case IMAP_FETCH_BINARY:
    case IMAP_FETCH_BINARY_SIZE:
        plan->reads_body = plan->parses_mime = plan->has_binary = true;
        break;
    default:
        break;
    }
    bool peek = a->peek || a->kind == IMAP_FETCH_RFC822_HEADER;
    if (is_body_kind(a->kind) && !peek)
        plan->sets_seen = true;
    return 0;
}

int
imap__fetch_plan_build(const struct imap_command *cmd, bool rev2, struct imap_fetch_plan *plan,
                       const char **why_r)
{
    memset(plan, 0, sizeof(*plan));
    for (size_t i = 0; i < cmd->u.fetch.n; i++)
        if (cmd->u.fetch.atts[i].n_part > MIME_SECTION_PARTS_MAX) {
            *why_r = "Section part numbers nested too deep";
            return TDM_EINVAL;
        }
    /* Room for the items and the implied UID and MODSEQ. */
    plan->items = calloc(cmd->u.fetch.n + 2, sizeof(*plan->items));
    int ret = plan->items ? copy_field_names(cmd, plan) : -ENOMEM;
    const struct imap_fetch_att uid = {.kind = IMAP_FETCH_UID};
    const struct imap_fetch_att modseq = {.kind = IMAP_FETCH_MODSEQ};
    bool uid_asked = false;
    for (size_t i = 0; i < cmd->u.fetch.n; i++)
        uid_asked |= cmd->u.fetch.atts[i].kind == IMAP_FETCH_UID;
    if (ret == 0 && cmd->uid && !uid_asked) /* RFC 3501 6.4.8: UID FETCH always says UIDs */
        ret = add_item(plan, &uid, NULL);
    size_t field = 0;
    for (size_t i = 0; ret == 0 && i < cmd->u.fetch.n; i++) {
        const struct imap_fetch_att *a = &cmd->u.fetch.atts[i];
        ret = add_item(plan, a, plan->field_names ? plan->field_names + field : NULL);
        field += a->n_fields;
    }
    /* RFC 7162 3.1.4.1: CHANGEDSINCE implies MODSEQ. */
    if (ret == 0 && cmd->u.fetch.has_changedsince && !plan->has_modseq)
        ret = add_item(plan, &modseq, NULL);
    if (ret < 0) {
        imap__fetch_plan_clear(plan);
        return ret;
    }
    plan->mime_flags = rev2 ? MIME_IMAP_REV2 : 0;
    return 0;
}

void
imap__fetch_plan_clear(struct imap_fetch_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++)
        free(plan->items[i].label);
    free(plan->items);
    for (size_t i = 0; i < plan->n_field_names; i++)
        free((char *)plan->field_names[i].s);
    free(plan->field_names);
    memset(plan, 0, sizeof(*plan));
}

/* ---- Writing one message ---- */

/* What the items of one message are written from. */
struct message_src {
    const struct mail_message_info *m;
    const uint8_t *body; /* the stored message, in LMDB's map; NULL unless the plan reads it */
    size_t len;
    struct mime_message *mime; /* owned; NULL unless the plan parses */
};

static void
put_bytes(struct imap_session *s, const uint8_t *data, size_t len)
{
    if (len >= DIRECT_WRITE_MIN && s->conn) {
        imap__flush(s); /* keep the order: what is queued goes first */
        if (s->conn)
            conn_write(s->conn, data, len);
        return;
    }
    imap_buf_append(&s->out, data, len);
}

/* "label {n}" CRLF and the bytes, or "~{n}" (RFC 3516 literal8) when binary content holds a
 * NUL, which a plain literal may not carry. */
static void
put_literal(struct imap_session *s, const char *label, const uint8_t *data, size_t len,
            bool may_be_binary)
{
    bool literal8 = may_be_binary && memchr(data, '\0', len) != NULL;
    imap_buf_printf(&s->out, "%s %s{%zu}\r\n", label, literal8 ? "~" : "", len);
    put_bytes(s, data, len);
}

static void
put_partial(struct imap_session *s, const struct imap_fetch_item *it, const uint8_t *data,
            size_t len, bool may_be_binary)
{
    uint64_t off = 0, n = len;
    if (it->partial)
        mime_partial(len, it->offset, it->length, &off, &n);
    put_literal(s, it->label, data + off, (size_t)n, may_be_binary);
}

/* Appends what the MIME layer built, or fails with its sticky error. */
static int
put_built(struct imap_session *s, const struct mime_buf *b)
{
    if (mime_buf_error(b) < 0)
        return -ENOMEM;
    imap_buf_append(&s->out, b->data, b->len);
    return 0;
}

/* BODY[section]<partial>, RFC822, RFC822.HEADER, RFC822.TEXT. */
static int
put_section(struct imap_session *s, const struct imap_fetch_item *it, const struct message_src *src)
{
    /* RFC822, RFC822.HEADER and RFC822.TEXT are BODY[], BODY.PEEK[HEADER] and BODY[TEXT]. */
    static const struct mime_section whole = {.text = MIME_SECTION_ALL};
    static const struct mime_section header = {.text = MIME_SECTION_HEADER};
    static const struct mime_section body_text = {.text = MIME_SECTION_TEXT};
    const struct mime_section *sec = it->kind == IMAP_FETCH_RFC822_HEADER ? &header
                                     : it->kind == IMAP_FETCH_RFC822_TEXT ? &body_text
                                     : it->kind == IMAP_FETCH_RFC822      ? &whole
                                                                          : &it->section;
    if (sec->n_parts == 0 && sec->text == MIME_SECTION_ALL) { /* the stored bytes */
        put_partial(s, it, src->body, src->len, false);
        return 0;
    }
    struct mime_span span;
    struct mime_buf built = MIME_BUF_INIT;
    int ret = mime_section_fetch(src->mime, sec, &span, &built);
    if (ret == 0)
        put_partial(s, it, src->body + span.off, span.len, false);
    else if (ret == 1)
        put_partial(s, it, built.data ? built.data : (const uint8_t *)"", built.len, false);
    else if (ret == TDM_ENOTFOUND)
        imap_buf_printf(&s->out, "%s NIL", it->label);
    mime_buf_clear(&built);
    return ret == TDM_ENOTFOUND || ret == 1 ? 0 : ret;
}

static int
put_binary(struct imap_session *s, const struct imap_fetch_item *it, const struct message_src *src)
{
    struct mime_span span;
    struct mime_buf decoded = MIME_BUF_INIT;
    int ret =
        mime_binary_fetch(src->mime, it->section.part, it->section.n_parts, &span, &decoded, NULL);
    if (ret == 0)
        put_partial(s, it, src->body + span.off, span.len, true);
    else if (ret == 1)
        put_partial(s, it, decoded.data ? decoded.data : (const uint8_t *)"", decoded.len, true);
    else if (ret == TDM_ENOTFOUND)
        imap_buf_printf(&s->out, "%s NIL", it->label);
    mime_buf_clear(&decoded);
    return ret == TDM_ENOTFOUND || ret == 1 ? 0 : ret;
}

static int
put_binary_size(struct imap_session *s, const struct imap_fetch_item *it,
                const struct message_src *src)
{
    uint64_t size = 0;
    int ret = mime_binary_size(src->mime, it->section.part, it->section.n_parts, &size);
    if (ret < 0 && ret != TDM_ENOTFOUND)
        return ret;
    imap_buf_printf(&s->out, "%s %llu", it->label, (unsigned long long)size);
    return 0;
}

static int
put_structure(struct imap_session *s, const struct imap_fetch_plan *plan,
              const struct imap_fetch_item *it, const struct message_src *src)
{
    struct mime_buf b = MIME_BUF_INIT;
    const struct mime_part *root = mime_message_root(src->mime);
    if (it->kind == IMAP_FETCH_ENVELOPE) {
        imap_buf_puts(&s->out, "ENVELOPE ");
        mime_imap_envelope(src->mime, root, &b);
    } else {
        bool extended = it->kind == IMAP_FETCH_BODYSTRUCTURE;
        imap_buf_puts(&s->out, extended ? "BODYSTRUCTURE " : "BODY ");
        mime_imap_bodystructure(src->mime, root, extended, plan->mime_flags, &b);
    }
    int ret = put_built(s, &b);
    mime_buf_clear(&b);
    return ret;
}

static int
put_item(struct imap_session *s, const struct imap_fetch_plan *plan,
         const struct imap_fetch_item *it, const struct message_src *src)
{
    const struct mail_message_info *m = src->m;
    switch (it->kind) {
    case IMAP_FETCH_FLAGS:
        imap__write_flags(&s->out, m, imap__is_recent(s, m->uid));
        return 0;
    case IMAP_FETCH_UID:
        imap_buf_printf(&s->out, "UID %u", m->uid);
        return 0;
    case IMAP_FETCH_RFC822_SIZE:
        imap_buf_printf(&s->out, "RFC822.SIZE %llu", (unsigned long long)m->size);
        return 0;
    case IMAP_FETCH_INTERNALDATE:
        imap_buf_puts(&s->out, "INTERNALDATE ");
        imap_write_date_time(&s->out, m->internal_date, 0);
        return 0;
    case IMAP_FETCH_MODSEQ:
        imap_buf_printf(&s->out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
        return 0;
    case IMAP_FETCH_ENVELOPE:
    case IMAP_FETCH_BODY:
    case IMAP_FETCH_BODYSTRUCTURE:
        return put_structure(s, plan, it, src);
    case IMAP_FETCH_BODY_SECTION:
    case IMAP_FETCH_RFC822:
    case IMAP_FETCH_RFC822_HEADER:
    case IMAP_FETCH_RFC822_TEXT:
        return put_section(s, it, src);
    case IMAP_FETCH_BINARY:
        return put_binary(s, it, src);
    case IMAP_FETCH_BINARY_SIZE:
        return put_binary_size(s, it, src);
    }
    return 0;
}

/* RFC 3516 4.3: a part whose encoding cannot be undone fails the command; found before any
 * byte of the message's response is written. */
static bool
binary_decodable(const struct imap_fetch_plan *plan, const struct mime_message *msg)
{
    for (size_t i = 0; i < plan->n; i++) {
        const struct imap_fetch_item *it = &plan->items[i];
        if (it->kind != IMAP_FETCH_BINARY && it->kind != IMAP_FETCH_BINARY_SIZE)
            continue;
        struct mime_span span;
        enum mime_encoding enc;
        if (mime_binary_source(msg, it->section.part, it->section.n_parts, &span, &enc) ==
            TDM_EINVAL)
            return false;
    }
    return true;
}

static int
write_items(struct imap_session *s, const struct imap_fetch_plan *plan,
            const struct message_src *src, uint32_t msn, bool flags_changed)
{
    imap_buf_printf(&s->out, "* %u FETCH (", msn);
    for (size_t i = 0; i < plan->n; i++) {
        if (i)
            imap_buf_puts(&s->out, " ");
        int ret = put_item(s, plan, &plan->items[i], src);
        if (ret < 0)
            return ret;
    }
    if (flags_changed) {
        /* RFC 3501 6.4.5: the flags that changed; RFC 7162 3.2: with UID and MODSEQ once
         * CONDSTORE is on. */
        const char *sep = plan->n ? " " : "";
        bool condstore = s->enabled & IMAP_ENABLED_CONDSTORE;
        if (!plan->has_flags) {
            imap_buf_puts(&s->out, sep);
            imap__write_flags(&s->out, src->m, imap__is_recent(s, src->m->uid));
            sep = " ";
        }
        if (condstore && !plan->has_uid) {
            imap_buf_printf(&s->out, "%sUID %u", sep, src->m->uid);
            sep = " ";
        }
        if (condstore && !plan->has_modseq)
            imap_buf_printf(&s->out, "%sMODSEQ (%llu)", sep, (unsigned long long)src->m->modseq);
    }
    imap_buf_puts(&s->out, ")\r\n");
    return 0;
}

int
imap__fetch_write(struct imap_session *s, const struct imap_fetch_plan *plan,
                  const struct mail_dbis *dbis, MDB_txn *txn, uint32_t msn,
                  const struct mail_message_info *m, bool flags_changed)
{
    struct message_src src = {.m = m};
    int ret = 0;
    if (plan->reads_body) {
        const void *body;
        ret = mail_body_get(dbis, txn, m->body_hash, &body, &src.len);
        if (ret < 0)
            return ret;
        src.body = body;
    }
    if (plan->parses_mime && (ret = mime_message_parse(src.body, src.len, NULL, &src.mime)) < 0)
        return ret;
    if (plan->has_binary && !binary_decodable(plan, src.mime))
        ret = TDM_EINVAL;
    else
        ret = write_items(s, plan, &src, msn, flags_changed);
    mime_message_free(&src.mime);
    return ret;
}

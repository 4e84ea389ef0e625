/*
 * imap_command_free() and the canonical formatter imap_command_format() (see imap_command.h).
 * The formatter writes every field the parser fills, in the grammar's order, so that "parse,
 * format, parse, format" reaching the same bytes twice proves the parser lost nothing the
 * formatter knows about; tests and the fuzz target rely on that.
 */
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_date.h"
#include "proto/imap/imap_int.h"
#include "proto/imap/imap_write.h"

#include <inttypes.h>
#include <string.h>

void
imap_command_free(struct imap_command **cmd)
{
    if (!*cmd)
        return;
    struct imap_arena *a = (*cmd)->arena;
    imap_arena_free(&a); /* the command lives in its own arena */
    *cmd = NULL;
}

static void
str(struct imap_buf *b, const char *s)
{
    imap_buf_append(b, " ", 1);
    imap_write_string(b, s, strlen(s), IMAP_WRITE_UTF8);
}

static void
sp_puts(struct imap_buf *b, const char *s)
{
    imap_buf_append(b, " ", 1);
    imap_buf_puts(b, s);
}

static void
set(struct imap_buf *b, const struct imap_seqset *s)
{
    imap_buf_append(b, " ", 1);
    imap_write_seqset(b, s);
}

static void
flags(struct imap_buf *b, const char *const *f, size_t n)
{
    imap_buf_append(b, " ", 1);
    imap_write_flag_list(b, f, n);
}

static const char *const status_names[IMAP_STATUS_ITEM_COUNT] = {
    "MESSAGES", "RECENT", "UIDNEXT",       "UIDVALIDITY", "UNSEEN",
    "DELETED",  "SIZE",   "HIGHESTMODSEQ", "APPENDLIMIT", "DELETED-STORAGE"};

static void
status_items(struct imap_buf *b, unsigned items)
{
    imap_buf_puts(b, " (");
    bool first = true;
    for (int i = 0; i < IMAP_STATUS_ITEM_COUNT; i++)
        if (items & (1u << i)) {
            imap_buf_printf(b, "%s%s", first ? "" : " ", status_names[i]);
            first = false;
        }
    imap_buf_puts(b, ")");
}

static void
opts(struct imap_buf *b, unsigned mask, const char *const *names, size_t n)
{
    imap_buf_puts(b, " (");
    bool first = true;
    for (size_t i = 0; i < n; i++)
        if (mask & (1u << i)) {
            imap_buf_printf(b, "%s%s", first ? "" : " ", names[i]);
            first = false;
        }
    imap_buf_puts(b, ")");
}

static void
date(struct imap_buf *b, const struct imap_date *d)
{
    char s[IMAP_DATE_MAX_LEN + 1];
    imap_date_format(d, s);
    sp_puts(b, s);
}

static const char *const search_names[IMAP_SEARCH_OP_MAX + 1] = {
    [IMAP_SEARCH_OR] = "OR",
    [IMAP_SEARCH_NOT] = "NOT",
    [IMAP_SEARCH_ALL] = "ALL",
    [IMAP_SEARCH_ANSWERED] = "ANSWERED",
    [IMAP_SEARCH_DELETED] = "DELETED",
    [IMAP_SEARCH_DRAFT] = "DRAFT",
    [IMAP_SEARCH_FLAGGED] = "FLAGGED",
    [IMAP_SEARCH_NEW] = "NEW",
    [IMAP_SEARCH_OLD] = "OLD",
    [IMAP_SEARCH_RECENT] = "RECENT",
    [IMAP_SEARCH_SEEN] = "SEEN",
    [IMAP_SEARCH_UNANSWERED] = "UNANSWERED",
    [IMAP_SEARCH_UNDELETED] = "UNDELETED",
    [IMAP_SEARCH_UNDRAFT] = "UNDRAFT",
    [IMAP_SEARCH_UNFLAGGED] = "UNFLAGGED",
    [IMAP_SEARCH_UNSEEN] = "UNSEEN",
    [IMAP_SEARCH_KEYWORD] = "KEYWORD",
    [IMAP_SEARCH_UNKEYWORD] = "UNKEYWORD",
    [IMAP_SEARCH_BCC] = "BCC",
    [IMAP_SEARCH_BODY] = "BODY",
    [IMAP_SEARCH_CC] = "CC",
    [IMAP_SEARCH_FROM] = "FROM",
    [IMAP_SEARCH_SUBJECT] = "SUBJECT",
    [IMAP_SEARCH_TEXT] = "TEXT",
    [IMAP_SEARCH_TO] = "TO",
    [IMAP_SEARCH_HEADER] = "HEADER",
    [IMAP_SEARCH_BEFORE] = "BEFORE",
    [IMAP_SEARCH_ON] = "ON",
    [IMAP_SEARCH_SINCE] = "SINCE",
    [IMAP_SEARCH_SENTBEFORE] = "SENTBEFORE",
    [IMAP_SEARCH_SENTON] = "SENTON",
    [IMAP_SEARCH_SENTSINCE] = "SENTSINCE",
    [IMAP_SEARCH_LARGER] = "LARGER",
    [IMAP_SEARCH_SMALLER] = "SMALLER",
    [IMAP_SEARCH_UID] = "UID",
    [IMAP_SEARCH_MODSEQ] = "MODSEQ",
};

/* One key after a space. The top-level AND is written by the caller without parentheses. */
static void
search_key(struct imap_buf *b, const struct imap_search_key *k)
{
    static const char *const entry_types[] = {"", "priv", "shared", "all"};
    switch (k->op) {
    case IMAP_SEARCH_AND:
        imap_buf_puts(b, " (");
        for (size_t i = 0; i < k->n_sub; i++) {
            if (i == 0) {
                /* the first key without its leading space */
                struct imap_buf tmp = IMAP_BUF_INIT;
                search_key(&tmp, k->sub[0]);
                imap_buf_append(b, tmp.data ? tmp.data + 1 : "", tmp.len ? tmp.len - 1 : 0);
                if (tmp.error)
                    b->error = tmp.error;
                imap_buf_free(&tmp);
            } else {
                search_key(b, k->sub[i]);
            }
        }
        imap_buf_puts(b, ")");
        return;
    case IMAP_SEARCH_SEQSET:
        set(b, &k->set);
        return;
    default:
        break;
    }
    sp_puts(b, search_names[k->op]);
    switch (k->op) {
    case IMAP_SEARCH_OR:
    case IMAP_SEARCH_NOT:
        for (size_t i = 0; i < k->n_sub; i++)
            search_key(b, k->sub[i]);
        break;
    case IMAP_SEARCH_KEYWORD:
    case IMAP_SEARCH_UNKEYWORD:
        sp_puts(b, k->value);
        break;
    case IMAP_SEARCH_BCC:
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_CC:
    case IMAP_SEARCH_FROM:
    case IMAP_SEARCH_SUBJECT:
    case IMAP_SEARCH_TEXT:
    case IMAP_SEARCH_TO:
        str(b, k->value);
        break;
    case IMAP_SEARCH_HEADER:
        str(b, k->field);
        str(b, k->value);
        break;
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SINCE:
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        date(b, &k->date);
        break;
    case IMAP_SEARCH_LARGER:
    case IMAP_SEARCH_SMALLER:
        imap_buf_printf(b, " %" PRIu64, k->number);
        break;
    case IMAP_SEARCH_UID:
        set(b, &k->set);
        break;
    case IMAP_SEARCH_MODSEQ:
        if (k->field) {
            str(b, k->field);
            sp_puts(b, entry_types[k->entry_type]);
        }
        imap_buf_printf(b, " %" PRIu64, k->number);
        break;
    default:
        break;
    }
}

static void
fetch_att(struct imap_buf *b, const struct imap_fetch_att *f)
{
    static const char *const names[IMAP_FETCH_KIND_MAX + 1] = {
        [IMAP_FETCH_ENVELOPE] = "ENVELOPE",
        [IMAP_FETCH_FLAGS] = "FLAGS",
        [IMAP_FETCH_INTERNALDATE] = "INTERNALDATE",
        [IMAP_FETCH_RFC822] = "RFC822",
        [IMAP_FETCH_RFC822_HEADER] = "RFC822.HEADER",
        [IMAP_FETCH_RFC822_SIZE] = "RFC822.SIZE",
        [IMAP_FETCH_RFC822_TEXT] = "RFC822.TEXT",
        [IMAP_FETCH_BODY] = "BODY",
        [IMAP_FETCH_BODYSTRUCTURE] = "BODYSTRUCTURE",
        [IMAP_FETCH_UID] = "UID",
        [IMAP_FETCH_MODSEQ] = "MODSEQ",
        [IMAP_FETCH_BODY_SECTION] = "BODY",
        [IMAP_FETCH_BINARY] = "BINARY",
        [IMAP_FETCH_BINARY_SIZE] = "BINARY.SIZE",
    };
    static const char *const texts[] = {"",     "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
                                        "TEXT", "MIME"};
    imap_buf_puts(b, names[f->kind]);
    if (f->kind < IMAP_FETCH_BODY_SECTION)
        return;
    imap_buf_puts(b, f->peek ? ".PEEK[" : "[");
    for (size_t i = 0; i < f->n_part; i++)
        imap_buf_printf(b, "%s%" PRIu32, i ? "." : "", f->part[i]);
    if (f->text != IMAP_SECTION_NONE) {
        imap_buf_printf(b, "%s%s", f->n_part ? "." : "", texts[f->text]);
        if (f->text == IMAP_SECTION_HEADER_FIELDS || f->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
            imap_buf_puts(b, " (");
            for (size_t i = 0; i < f->n_fields; i++) {
                if (i)
                    imap_buf_append(b, " ", 1);
                imap_write_string(b, f->fields[i], strlen(f->fields[i]), IMAP_WRITE_UTF8);
            }
            imap_buf_puts(b, ")");
        }
    }
    imap_buf_puts(b, "]");
    if (f->partial)
        imap_buf_printf(b, "<%" PRIu64 ".%" PRIu64 ">", f->offset, f->length);
}

static void
format_args(const struct imap_command *c, struct imap_buf *b)
{
    static const char *const list_select[] = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH",
                                              "SPECIAL-USE"};
    static const char *const list_return[] = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"};
    static const char *const search_returns[] = {"MIN", "MAX", "ALL", "COUNT", "SAVE"};
    static const char *const macros[] = {"", "ALL", "FAST", "FULL"};
    static const char *const store_ops[] = {"", "", "+", "-"};

    switch (c->cmd) {
    case IMAP_CMD_AUTHENTICATE:
        sp_puts(b, c->u.authenticate.mechanism);
        if (c->u.authenticate.initial)
            sp_puts(b, c->u.authenticate.initial[0] ? c->u.authenticate.initial : "=");
        break;
    case IMAP_CMD_LOGIN:
        str(b, c->u.login.user);
        str(b, c->u.login.password);
        break;
    case IMAP_CMD_ENABLE:
        for (size_t i = 0; i < c->u.enable.n; i++)
            sp_puts(b, c->u.enable.caps[i]);
        break;
    case IMAP_CMD_ID:
        if (c->u.id.nil) {
            sp_puts(b, "NIL");
            break;
        }
        imap_buf_puts(b, " (");
        for (size_t i = 0; i < c->u.id.n; i++) {
            if (i)
                imap_buf_append(b, " ", 1);
            imap_write_string(b, c->u.id.keys[i], strlen(c->u.id.keys[i]), IMAP_WRITE_UTF8);
            const char *v = c->u.id.values[i];
            imap_buf_append(b, " ", 1);
            imap_write_nstring(b, v, v ? strlen(v) : 0, IMAP_WRITE_UTF8);
        }
        imap_buf_puts(b, ")");
        break;
    case IMAP_CMD_SELECT:
    case IMAP_CMD_EXAMINE:
        str(b, c->u.select.mailbox);
        if (c->u.select.condstore || c->u.select.qresync) {
            imap_buf_puts(b, " (");
            if (c->u.select.condstore)
                imap_buf_puts(b, c->u.select.qresync ? "CONDSTORE " : "CONDSTORE");
            if (c->u.select.qresync) {
                imap_buf_printf(b, "QRESYNC (%" PRIu32 " %" PRIu64, c->u.select.uidvalidity,
                                c->u.select.modseq);
                if (c->u.select.known_uids.n)
                    set(b, &c->u.select.known_uids);
                if (c->u.select.match_seqs.n) {
                    imap_buf_puts(b, " (");
                    imap_write_seqset(b, &c->u.select.match_seqs);
                    set(b, &c->u.select.match_uids);
                    imap_buf_puts(b, ")");
                }
                imap_buf_puts(b, ")");
            }
            imap_buf_puts(b, ")");
        }
        break;
    case IMAP_CMD_CREATE:
        str(b, c->u.create.mailbox);
        if (c->u.create.has_use) {
            imap_buf_puts(b, " (USE");
            flags(b, c->u.create.use, c->u.create.n_use);
            imap_buf_puts(b, ")");
        }
        break;
    case IMAP_CMD_DELETE:
    case IMAP_CMD_SUBSCRIBE:
    case IMAP_CMD_UNSUBSCRIBE:
    case IMAP_CMD_GETQUOTAROOT:
        str(b, c->u.select.mailbox);
        break;
    case IMAP_CMD_RENAME:
        str(b, c->u.rename.from);
        str(b, c->u.rename.to);
        break;
    case IMAP_CMD_LIST:
    case IMAP_CMD_LSUB:
        if (!c->u.list.extended) {
            str(b, c->u.list.reference);
            str(b, c->u.list.patterns[0]);
            break;
        }
        opts(b, c->u.list.select_opts, list_select, 4);
        str(b, c->u.list.reference);
        imap_buf_puts(b, " (");
        for (size_t i = 0; i < c->u.list.n_patterns; i++) {
            if (i)
                imap_buf_append(b, " ", 1);
            imap_write_string(b, c->u.list.patterns[i], strlen(c->u.list.patterns[i]),
                              IMAP_WRITE_UTF8);
        }
        imap_buf_puts(b, ") RETURN (");
        bool first = true;
        for (size_t i = 0; i < 3; i++)
            if (c->u.list.return_opts & (1u << i)) {
                imap_buf_printf(b, "%s%s", first ? "" : " ", list_return[i]);
                first = false;
            }
        if (c->u.list.return_opts & IMAP_LIST_RETURN_STATUS) {
            imap_buf_puts(b, first ? "STATUS" : " STATUS");
            status_items(b, c->u.list.status_items);
        }
        imap_buf_puts(b, ")");
        break;
    case IMAP_CMD_STATUS:
        str(b, c->u.status.mailbox);
        status_items(b, c->u.status.items);
        break;
    case IMAP_CMD_APPEND:
        str(b, c->u.append.mailbox);
        for (size_t i = 0; i < c->u.append.n; i++) {
            const struct imap_append_msg *m = &c->u.append.msgs[i];
            if (m->has_flags)
                flags(b, m->flags, m->n_flags);
            if (m->has_date) {
                char s[IMAP_DATE_TIME_LEN + 1];
                imap_date_time_format(m->date.time, m->date.zone_minutes, s);
                imap_buf_printf(b, " \"%s\"", s);
            }
            imap_buf_printf(b, " %s%s{%" PRIu64 "}\r\n", m->utf8 ? "UTF8 (" : "",
                            m->binary ? "~" : "", m->size);
            for (uint64_t k = 0; k < m->size && !b->error; k++)
                imap_buf_append(b, "x", 1);
            if (m->utf8)
                imap_buf_append(b, ")", 1);
        }
        break;
    case IMAP_CMD_GETQUOTA:
        str(b, c->u.quota.root);
        break;
    case IMAP_CMD_SETQUOTA:
        str(b, c->u.quota.root);
        imap_buf_puts(b, " (");
        for (size_t i = 0; i < c->u.quota.n; i++)
            imap_buf_printf(b, "%s%s %" PRIu64, i ? " " : "", c->u.quota.res[i].name,
                            c->u.quota.res[i].limit);
        imap_buf_puts(b, ")");
        break;
    case IMAP_CMD_SEARCH:
        if (c->u.search.esearch) {
            imap_buf_puts(b, " RETURN");
            opts(b, c->u.search.returns, search_returns, 5);
        }
        if (c->u.search.charset) {
            sp_puts(b, "CHARSET");
            str(b, c->u.search.charset);
        }
        for (size_t i = 0; i < c->u.search.key->n_sub; i++)
            search_key(b, c->u.search.key->sub[i]);
        break;
    case IMAP_CMD_FETCH:
        set(b, &c->u.fetch.set);
        if (c->u.fetch.macro) {
            sp_puts(b, macros[c->u.fetch.macro]);
        } else {
            imap_buf_puts(b, " (");
            for (size_t i = 0; i < c->u.fetch.n; i++) {
                if (i)
                    imap_buf_append(b, " ", 1);
                fetch_att(b, &c->u.fetch.atts[i]);
            }
            imap_buf_puts(b, ")");
        }
        if (c->u.fetch.has_changedsince || c->u.fetch.vanished) {
            imap_buf_puts(b, " (");
            if (c->u.fetch.has_changedsince)
                imap_buf_printf(b, "CHANGEDSINCE %" PRIu64, c->u.fetch.changedsince);
            if (c->u.fetch.vanished)
                imap_buf_puts(b, c->u.fetch.has_changedsince ? " VANISHED" : "VANISHED");
            imap_buf_puts(b, ")");
        }
        break;
    case IMAP_CMD_STORE:
        set(b, &c->u.store.set);
        if (c->u.store.has_unchangedsince)
            imap_buf_printf(b, " (UNCHANGEDSINCE %" PRIu64 ")", c->u.store.unchangedsince);
        imap_buf_printf(b, " %sFLAGS%s", store_ops[c->u.store.op],
                        c->u.store.silent ? ".SILENT" : "");
        flags(b, c->u.store.flags, c->u.store.n_flags);
        break;
    case IMAP_CMD_COPY:
    case IMAP_CMD_MOVE:
        set(b, &c->u.copy.set);
        str(b, c->u.copy.mailbox);
        break;
    case IMAP_CMD_EXPUNGE:
        if (c->uid)
            set(b, &c->u.copy.set);
        break;
    default:
        break;
    }
}

int
imap_command_format(const struct imap_command *c, struct imap_buf *b)
{
    imap_buf_puts(b, c->tag);
    if (c->uid)
        imap_buf_puts(b, " UID");
    sp_puts(b, imap_cmd_name(c->cmd));
    format_args(c, b);
    imap_buf_puts(b, "\r\n");
    return b->error;
}

/*
 * SEARCH arguments (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 4731 ESEARCH, RFC 5182 SEARCHRES,
 * RFC 7162 MODSEQ): the program becomes a tree of struct imap_search_key whose root is an AND
 * of the top-level keys. Recursion (NOT, OR, parentheses) is bounded by max_depth and every
 * key counts against max_items, so the tree is as large as the command's bytes allow and no
 * deeper than the caller said.
 */
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_int.h"

#include <string.h>
#include <strings.h>

enum arg {
    ARG_NONE,
    ARG_ASTRING, /* value */
    ARG_ATOM,    /* value: a keyword (flag-keyword) */
    ARG_DATE,
    ARG_NUMBER,
    ARG_HEADER, /* field SP value */
    ARG_SET,
    ARG_MODSEQ,
};

struct key_def {
    const char *name;
    enum imap_search_op op;
    enum arg arg;
};

/* NOT and OR are handled before this table; the order does not matter because a keyword must
 * be followed by a non-atom byte to match. */
static const struct key_def keys[] = {
    {"ALL", IMAP_SEARCH_ALL, ARG_NONE},
    {"ANSWERED", IMAP_SEARCH_ANSWERED, ARG_NONE},
    {"BCC", IMAP_SEARCH_BCC, ARG_ASTRING},
    {"BEFORE", IMAP_SEARCH_BEFORE, ARG_DATE},
    {"BODY", IMAP_SEARCH_BODY, ARG_ASTRING},
    {"CC", IMAP_SEARCH_CC, ARG_ASTRING},
    {"DELETED", IMAP_SEARCH_DELETED, ARG_NONE},
    {"DRAFT", IMAP_SEARCH_DRAFT, ARG_NONE},
    {"FLAGGED", IMAP_SEARCH_FLAGGED, ARG_NONE},
    {"FROM", IMAP_SEARCH_FROM, ARG_ASTRING},
    {"HEADER", IMAP_SEARCH_HEADER, ARG_HEADER},
    {"KEYWORD", IMAP_SEARCH_KEYWORD, ARG_ATOM},
    {"LARGER", IMAP_SEARCH_LARGER, ARG_NUMBER},
    {"MODSEQ", IMAP_SEARCH_MODSEQ, ARG_MODSEQ},
    {"NEW", IMAP_SEARCH_NEW, ARG_NONE},
    {"OLD", IMAP_SEARCH_OLD, ARG_NONE},
    {"ON", IMAP_SEARCH_ON, ARG_DATE},
    {"RECENT", IMAP_SEARCH_RECENT, ARG_NONE},
    {"SEEN", IMAP_SEARCH_SEEN, ARG_NONE},
    {"SENTBEFORE", IMAP_SEARCH_SENTBEFORE, ARG_DATE},
    {"SENTON", IMAP_SEARCH_SENTON, ARG_DATE},
    {"SENTSINCE", IMAP_SEARCH_SENTSINCE, ARG_DATE},
    {"SINCE", IMAP_SEARCH_SINCE, ARG_DATE},
    {"SMALLER", IMAP_SEARCH_SMALLER, ARG_NUMBER},
    {"SUBJECT", IMAP_SEARCH_SUBJECT, ARG_ASTRING},
    {"TEXT", IMAP_SEARCH_TEXT, ARG_ASTRING},
    {"TO", IMAP_SEARCH_TO, ARG_ASTRING},
    {"UID", IMAP_SEARCH_UID, ARG_SET},
    {"UNANSWERED", IMAP_SEARCH_UNANSWERED, ARG_NONE},
    {"UNDELETED", IMAP_SEARCH_UNDELETED, ARG_NONE},
    {"UNDRAFT", IMAP_SEARCH_UNDRAFT, ARG_NONE},
    {"UNFLAGGED", IMAP_SEARCH_UNFLAGGED, ARG_NONE},
    {"UNKEYWORD", IMAP_SEARCH_UNKEYWORD, ARG_ATOM},
    {"UNSEEN", IMAP_SEARCH_UNSEEN, ARG_NONE},
};

static bool key(struct imap__reader *r, struct imap_search_key **k_r);

static struct imap_search_key *
new_key(struct imap__reader *r, enum imap_search_op op, size_t n_sub)
{
    struct imap_search_key *k = imap_arena_alloc(r->a, sizeof(*k));
    if (!k) {
        imap__nomem(r);
        return NULL;
    }
    k->op = op;
    if (n_sub) {
        k->sub = imap_arena_array(r->a, n_sub, sizeof(*k->sub));
        if (!k->sub) {
            imap__nomem(r);
            return NULL;
        }
    }
    return k;
}

/* search-key *(SP search-key), up to ')' (inner) or the end of the line (top). */
static bool
key_list(struct imap__reader *r, struct imap_search_key **k_r, bool inner)
{
    struct imap_search_key **subs = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            struct imap_search_key **ns = imap_arena_array(r->a, ncap, sizeof(*ns));
            if (!ns)
                return imap__nomem(r);
            if (n)
                memcpy(ns, subs, n * sizeof(*ns));
            subs = ns;
            cap = ncap;
        }
        if (!key(r, &subs[n]))
            return false;
        n++;
        if (!imap__at_sp(r))
            break;
        r->pos++;
    }
    if (inner && !imap__char(r, ')', "Invalid search key list"))
        return false;
    struct imap_search_key *k = new_key(r, IMAP_SEARCH_AND, 0);
    if (!k)
        return false;
    k->sub = subs;
    k->n_sub = n;
    *k_r = k;
    return true;
}

static bool
modseq_arg(struct imap__reader *r, struct imap_search_key *k)
{
    /* "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer */
    if (!imap__sp(r))
        return false;
    if (imap__peek(r) == '"') {
        if (!imap__string(r, &k->field, "Invalid MODSEQ entry name"))
            return false;
        if (strncasecmp(k->field, "/flags/", 7) != 0 || !k->field[7])
            return imap__fail(r, "Invalid MODSEQ entry name");
        if (!imap__sp(r))
            return false;
        if (imap__keyword(r, "priv"))
            k->entry_type = IMAP_ENTRY_PRIV;
        else if (imap__keyword(r, "shared"))
            k->entry_type = IMAP_ENTRY_SHARED;
        else if (imap__keyword(r, "all"))
            k->entry_type = IMAP_ENTRY_ALL;
        else
            return imap__fail(r, "Invalid MODSEQ entry type");
        if (!imap__sp(r))
            return false;
    }
    return imap__number(r, INT64_MAX, &k->number, "Invalid mod-sequence");
}

static bool
key(struct imap__reader *r, struct imap_search_key **k_r)
{
    if (!imap__count_item(r))
        return false;
    int c = imap__peek(r);
    if (c == '(') {
        r->pos++;
        if (!imap__enter(r) || !key_list(r, k_r, true))
            return false;
        imap__leave(r);
        return true;
    }
    if ((c >= '0' && c <= '9') || c == '*' || c == '$') {
        struct imap_search_key *k = new_key(r, IMAP_SEARCH_SEQSET, 0);
        if (!k || !imap__seqset(r, true, &k->set))
            return false;
        *k_r = k;
        return true;
    }
    if (imap__keyword(r, "NOT") || imap__keyword(r, "OR")) {
        bool is_or = r->buf[r->pos - 1] == 'R' || r->buf[r->pos - 1] == 'r';
        struct imap_search_key *k = new_key(r, is_or ? IMAP_SEARCH_OR : IMAP_SEARCH_NOT, 2);
        if (!k || !imap__enter(r) || !imap__sp(r) || !key(r, &k->sub[0]))
            return false;
        if (is_or && (!imap__sp(r) || !key(r, &k->sub[1])))
            return false;
        imap__leave(r);
        k->n_sub = is_or ? 2 : 1;
        *k_r = k;
        return true;
    }
    const struct key_def *def = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]) && !def; i++)
        if (imap__keyword(r, keys[i].name))
            def = &keys[i];
    if (!def)
        return imap__fail(r, c < 0 || c == '\r' || c == '\n' ? "Search key expected"
                                                             : "Unknown search key");
    struct imap_search_key *k = new_key(r, def->op, 0);
    if (!k)
        return false;
    *k_r = k;
    const uint8_t *s;
    size_t len;
    switch (def->arg) {
    case ARG_NONE:
        return true;
    case ARG_ASTRING:
        return imap__sp(r) && imap__astring(r, &k->value, "Search string expected");
    case ARG_ATOM:
        if (!imap__sp(r) || !imap__atom(r, &s, &len, "Keyword expected"))
            return false;
        k->value = imap_arena_strndup(r->a, (const char *)s, len);
        return k->value || imap__nomem(r);
    case ARG_DATE:
        return imap__sp(r) && imap__date(r, &k->date);
    case ARG_NUMBER:
        return imap__sp(r) && imap__number(r, INT64_MAX, &k->number, "Invalid size");
    case ARG_HEADER:
        return imap__sp(r) && imap__astring(r, &k->field, "Header field name expected") &&
               imap__sp(r) && imap__astring(r, &k->value, "Search string expected");
    case ARG_SET:
        return imap__sp(r) && imap__seqset(r, true, &k->set);
    case ARG_MODSEQ:
        return modseq_arg(r, k);
    }
    return imap__fail(r, "Unknown search key");
}

static const struct {
    const char *name;
    unsigned bit;
} returns[] = {
    {"MIN", IMAP_SEARCH_RETURN_MIN},   {"MAX", IMAP_SEARCH_RETURN_MAX},
    {"ALL", IMAP_SEARCH_RETURN_ALL},   {"COUNT", IMAP_SEARCH_RETURN_COUNT},
    {"SAVE", IMAP_SEARCH_RETURN_SAVE},
};

bool
imap__parse_search(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r))
        return false;
    if (imap__keyword(r, "RETURN")) {
        /* search-return-opts = SP "RETURN" SP "(" [search-return-opt *(SP ...)] ")" */
        c->u.search.esearch = true;
        if (!imap__sp(r) || !imap__char(r, '(', "RETURN options expected"))
            return false;
        while (imap__peek(r) != ')') {
            if (c->u.search.returns && !imap__sp(r))
                return false;
            size_t i = 0;
            while (i < sizeof(returns) / sizeof(returns[0]) && !imap__keyword(r, returns[i].name))
                i++;
            if (i == sizeof(returns) / sizeof(returns[0]))
                return imap__fail(r, "Unknown SEARCH RETURN option");
            c->u.search.returns |= returns[i].bit;
        }
        r->pos++;
        /* RFC 4731 3.1: "RETURN ()" is RETURN (ALL). */
        if (!c->u.search.returns)
            c->u.search.returns = IMAP_SEARCH_RETURN_ALL;
        if (!imap__sp(r))
            return false;
    }
    if (imap__keyword(r, "CHARSET")) {
        const char *cs;
        if (!imap__sp(r) || !imap__astring(r, &cs, "Charset expected") || !imap__sp(r))
            return false;
        if (!(c->u.search.charset = imap__upper(r, (const uint8_t *)cs, strlen(cs))))
            return false;
    }
    return key_list(r, &c->u.search.key, false);
}

/*
 * LIST and LSUB (imap_int.h): RFC 3501 6.3.8-9, with LIST-EXTENDED (RFC 5258), LIST-STATUS
 * (RFC 5819) and SPECIAL-USE (RFC 6154).
 *
 * The user's folders are read once into a sorted table, together with the ancestors a folder
 * has that do not exist themselves (a parent deleted while its children stayed): those are
 * listed as \NonExistent (\Noselect in the RFC 3501 form) so a client walking the hierarchy
 * with "%" still finds the children. In a sorted table the descendants of "a" are one run,
 * the names that start with "a/", so every question about children is a binary search and a
 * scan of that run.
 *
 * Selection options: SUBSCRIBED, SPECIAL-USE, REMOTE (there are no remote mailboxes) and
 * RECURSIVEMATCH, which lists a parent that is not subscribed but has a subscribed descendant,
 * with CHILDINFO ("SUBSCRIBED"). RFC 5258 defines CHILDINFO for SUBSCRIBED only, so with
 * SPECIAL-USE alone it changes nothing. Return options: SUBSCRIBED, CHILDREN, SPECIAL-USE and
 * STATUS; \HasChildren / \HasNoChildren and special-use attributes are always given (RFC 5258
 * and RFC 6154 allow it), \Subscribed when asked for or selected by.
 */
#include "imap/imap_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct list_entry {
    char *name; /* owned, UTF-8 */
    bool exists;
    bool subscribed;
    uint32_t special_use;
};

struct list_table {
    struct list_entry *e;
    size_t n, cap;
};

static void
table_free(struct list_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].name);
    free(t->e);
}

static void
table_add(struct list_table *t, const char *name, size_t len, const struct list_entry *proto)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->e = realloc(t->e, t->cap * sizeof(*t->e));
        if (!t->e)
            log_fatal("out of memory");
    }
    struct list_entry *e = &t->e[t->n++];
    *e = *proto;
    if (!(e->name = strndup(name, len)))
        log_fatal("out of memory");
}

static int
add_folder(void *ctx, const struct mail_folder_info *f)
{
    struct list_table *t = ctx;
    struct list_entry folder = {
        .exists = true, .subscribed = f->subscribed, .special_use = f->special_use};
    table_add(t, f->name, f->name_len, &folder);
    /* Every ancestor too; the sort below merges them with the folders that do exist. */
    static const struct list_entry gap = {.exists = false};
    for (size_t i = 0; i < f->name_len; i++)
        if (f->name[i] == MAIL_HIER_SEP)
            table_add(t, f->name, i, &gap);
    return 0;
}

static int
entry_cmp(const void *a, const void *b)
{
    const struct list_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (int)y->exists - (int)x->exists; /* an existing one first */
}

/* Sorts and keeps one entry per name: the folder itself when it exists. */
static void
table_finish(struct list_table *t)
{
    if (t->n > 1)
        qsort(t->e, t->n, sizeof(*t->e), entry_cmp);
    size_t kept = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (kept && strcmp(t->e[kept - 1].name, t->e[i].name) == 0) {
            free(t->e[i].name);
            continue;
        }
        t->e[kept++] = t->e[i];
    }
    t->n = kept;
}

/* The run of entries below name, those that start with name + "/": [*lo_r, *hi_r). */
static void
descendants(const struct list_table *t, const char *name, size_t *lo_r, size_t *hi_r)
{
    char prefix[MAIL_NAME_MAX + 2];
    int len = snprintf(prefix, sizeof(prefix), "%s%c", name, MAIL_HIER_SEP);
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(t->e[mid].name, prefix) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < t->n && strncmp(t->e[end].name, prefix, (size_t)len) == 0)
        end++;
    *lo_r = lo;
    *hi_r = end;
}

/* ---- Patterns ---- */

/*
 * RFC 3501 6.3.8: '*' matches anything, '%' anything but the hierarchy separator. A pattern is
 * matched by stepping the set of pattern positions reached along the name, so the cost is at
 * most |pattern| x |name| whatever the wildcards (backtracking would take exponential time on
 * "*a*a*a...b"). Patterns are kept compiled: each run of wildcards is one ('*' if it holds
 * one, else '%'), and a pattern with more other characters than a name can hold matches
 * nothing, so a compiled pattern is at most PATTERN_MAX bytes.
 */
#define PATTERN_MAX (2 * MAIL_NAME_MAX + 1)
/* The most steps one LIST may take matching (patterns' bytes times names' bytes): about a
 * tenth of a second. Beyond it the command is refused rather than stall the worker. */
#define LIST_MATCH_BUDGET (1u << 26)

static bool
match(const char *pat, size_t plen, const char *name)
{
    bool at[PATTERN_MAX + 1], next[PATTERN_MAX + 1];
    memset(at, 0, plen + 1);
    at[0] = true;
    for (const char *n = name;; n++) {
        /* A wildcard may match nothing: reaching it reaches what follows it too. */
        for (size_t i = 0; i < plen; i++)
            if (at[i] && (pat[i] == '*' || pat[i] == '%'))
                at[i + 1] = true;
        if (!*n)
            return at[plen];
        memset(next, 0, plen + 1);
        bool any = false;
        for (size_t i = 0; i < plen; i++) {
            if (!at[i])
                continue;
            if (pat[i] == '*' || (pat[i] == '%' && *n != MAIL_HIER_SEP))
                next[i] = any = true;
            else if (pat[i] == *n)
                next[i + 1] = any = true;
        }
        if (!any)
            return false;
        memcpy(at, next, plen + 1);
    }
}

struct patterns {
    char **compiled; /* owned; reference prepended, INBOX upper-cased */
    size_t *len;
    size_t n;
    size_t bytes; /* of all of them, for the budget */
};

static void
patterns_free(struct patterns *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->compiled[i]);
    free(p->compiled);
    free(p->len);
}

/* Collapses runs of wildcards in place; returns the new length, or 0 when the pattern cannot
 * match any name (a compiled pattern is never empty: "" matches only "", no folder's name). */
static size_t
compile(char *pat)
{
    size_t out = 0, literal = 0;
    for (size_t i = 0; pat[i];) {
        if (pat[i] != '*' && pat[i] != '%') {
            pat[out++] = pat[i++];
            literal++;
            continue;
        }
        char w = '%';
        for (; pat[i] == '*' || pat[i] == '%'; i++)
            if (pat[i] == '*')
                w = '*';
        pat[out++] = w;
    }
    pat[out] = '\0';
    return literal > MAIL_NAME_MAX ? 0 : out;
}

/* Reference and pattern as one compiled UTF-8 pattern; NULL when they cannot match (not valid
 * names, or longer than any name). INBOX is case-insensitive (RFC 3501 5.1), also as a parent. */
static char *
pattern_utf8(const struct imap_session *s, const char *ref, const char *pat, size_t *len_r)
{
    char *full;
    if (asprintf(&full, "%s%s", ref, pat) < 0)
        log_fatal("out of memory");
    struct imap_buf utf8 = IMAP_BUF_INIT;
    int ret = imap__wire_to_utf8(s, full, &utf8);
    free(full);
    if (ret < 0 || !utf8.data || !(*len_r = compile(utf8.data))) {
        imap_buf_free(&utf8);
        return NULL;
    }
    if (strncasecmp(utf8.data, "INBOX", 5) == 0 &&
        (utf8.data[5] == '\0' || utf8.data[5] == MAIL_HIER_SEP))
        memcpy(utf8.data, "INBOX", 5);
    return utf8.data; /* taken from the buffer */
}

static void
patterns_read(const struct imap_session *s, const struct imap_command *cmd, struct patterns *p)
{
    size_t n = cmd->u.list.n_patterns;
    p->compiled = calloc(n ? n : 1, sizeof(*p->compiled));
    p->len = calloc(n ? n : 1, sizeof(*p->len));
    if (!p->compiled || !p->len)
        log_fatal("out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        char *c = pattern_utf8(s, cmd->u.list.reference, cmd->u.list.patterns[i], &len);
        if (!c)
            continue;
        p->compiled[p->n] = c;
        p->len[p->n++] = len;
        p->bytes += len;
    }
}

static bool
patterns_match(const struct patterns *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (match(p->compiled[i], p->len[i], name))
            return true;
    return false;
}

/* ---- Answering ---- */

struct list_req {
    bool lsub, extended;
    bool sel_subscribed, sel_special_use, recursive;
    bool ret_subscribed;
    unsigned status_items; /* 0: no STATUS */
};

/* Whether an entry is one the selection options ask for. */
static bool
selected(const struct list_req *q, const struct list_entry *e)
{
    return e->exists && (!q->sel_subscribed || e->subscribed) &&
           (!q->sel_special_use || e->special_use);
}

size_t
imap__special_use_attrs(uint32_t use, const char **attrs)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } uses[] = {{MAIL_USE_ALL, "\\All"},       {MAIL_USE_ARCHIVE, "\\Archive"},
                {MAIL_USE_DRAFTS, "\\Drafts"}, {MAIL_USE_FLAGGED, "\\Flagged"},
                {MAIL_USE_JUNK, "\\Junk"},     {MAIL_USE_SENT, "\\Sent"},
                {MAIL_USE_TRASH, "\\Trash"}};
    size_t n = 0;
    for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++)
        if (use & uses[i].bit)
            attrs[n++] = uses[i].name;
    return n;
}

/* One matching entry's answer, if it has one: its LIST (or LSUB) line and, asked for, its
 * STATUS. hit[j]: whether entry j matches the patterns. */
static void
list_entry(struct imap_session *s, const struct list_req *q, const struct list_table *t, size_t i,
           const bool *hit, const struct mail_dbis *dbis, MDB_txn *txn)
{
    const struct list_entry *e = &t->e[i];
    size_t lo, hi;
    descendants(t, e->name, &lo, &hi);
    bool shown = selected(q, e), child_info = false;
    if (!shown && (q->sel_subscribed || q->sel_special_use)) {
        /* A parent of what the selection asks for (RFC 5258 RECURSIVEMATCH; for LSUB, RFC
         * 3501 6.3.9's \Noselect parent, when "%" stops above the subscribed ones). */
        bool below = false, below_matched = false;
        for (size_t j = lo; j < hi; j++)
            if (selected(q, &t->e[j])) {
                below = true;
                below_matched |= hit[j];
            }
        if (q->recursive && q->sel_subscribed)
            shown = child_info = below;
        else if (q->lsub)
            shown = below && !below_matched;
    } else if (!shown) {
        shown = !e->exists; /* a hierarchy gap: listed so its children can be found */
    }
    if (!shown)
        return;
    const char *attrs[4 + 7];
    size_t n = 0;
    if (!e->exists)
        attrs[n++] = q->extended ? "\\NonExistent" : "\\Noselect";
    else if (q->lsub && !e->subscribed)
        attrs[n++] = "\\Noselect";
    if (!q->lsub) {
        attrs[n++] = lo < hi ? "\\HasChildren" : "\\HasNoChildren";
        if (e->subscribed && (q->ret_subscribed || q->sel_subscribed))
            attrs[n++] = "\\Subscribed";
        n += imap__special_use_attrs(e->special_use, attrs + n);
    }
    imap_write_list(&s->out, q->lsub, attrs, n, MAIL_HIER_SEP, e->name, child_info, NULL,
                    imap__mode(s));
    struct imap_status_values v;
    if (q->status_items && e->exists &&
        imap__status_values(s, dbis, txn, e->name, q->status_items, &v) == 0)
        imap_write_status(&s->out, e->name, &v, imap__mode(s));
}

/* Whether matching every pattern against every name stays within LIST_MATCH_BUDGET steps. */
static bool
within_budget(const struct patterns *p, const struct list_table *t)
{
    uint64_t names = 0;
    for (size_t i = 0; i < t->n; i++)
        names += strlen(t->e[i].name) + 1;
    return (uint64_t)p->bytes * names <= LIST_MATCH_BUDGET;
}

/* Reads the request from the command; false after answering BAD. */
static bool
list_request(struct imap_session *s, const struct imap_command *cmd, struct list_req *q)
{
    unsigned sel = cmd->u.list.select_opts, ret = cmd->u.list.return_opts;
    *q = (struct list_req){
        .lsub = cmd->cmd == IMAP_CMD_LSUB,
        .extended = cmd->u.list.extended,
        .sel_subscribed = cmd->cmd == IMAP_CMD_LSUB || (sel & IMAP_LIST_SELECT_SUBSCRIBED),
        .sel_special_use = sel & IMAP_LIST_SELECT_SPECIAL_USE,
        .recursive = sel & IMAP_LIST_SELECT_RECURSIVEMATCH,
        .ret_subscribed = ret & IMAP_LIST_RETURN_SUBSCRIBED,
        .status_items = ret & IMAP_LIST_RETURN_STATUS ? cmd->u.list.status_items : 0,
    };
    /* RFC 5258 3.1: RECURSIVEMATCH alone (or with REMOTE only) means nothing: BAD. */
    if (q->recursive && !(sel & (IMAP_LIST_SELECT_SUBSCRIBED | IMAP_LIST_SELECT_SPECIAL_USE))) {
        imap__reply(s, cmd->tag, "BAD", NULL, "RECURSIVEMATCH needs another selection option");
        return false;
    }
    if (q->status_items && !cmd->u.list.status_items) {
        imap__reply(s, cmd->tag, "BAD", NULL, "RETURN (STATUS ()) names no item");
        return false;
    }
    return imap__status_items_ok(s, cmd->tag, q->status_items);
}

void
imap__cmd_list(struct imap_session *s, const struct imap_command *cmd)
{
    const char *tag = cmd->tag;
    const char *done = cmd->cmd == IMAP_CMD_LSUB ? "LSUB completed" : "LIST completed";
    struct list_req q;
    if (!list_request(s, cmd, &q))
        return;
    if (!q.lsub && !q.extended && cmd->u.list.patterns[0][0] == '\0') {
        /* The hierarchy delimiter and root (RFC 3501 6.3.8). */
        imap_buf_puts(&s->out, "* LIST (\\Noselect) \"/\" \"\"\r\n");
        imap__reply(s, tag, "OK", NULL, done);
        return;
    }
    struct patterns pats = {0};
    patterns_read(s, cmd, &pats);
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    if (!imap__begin_read(s, tag, &dbis, &txn)) {
        patterns_free(&pats);
        return;
    }
    struct list_table t = {0};
    int ret = pats.n ? mail_folder_list(dbis, txn, s->user, add_folder, &t) : 0;
    if (ret < 0 && ret != TDM_ENOTFOUND) {
        imap__reply(s, tag, "NO", "SERVERBUG", "Cannot read the mailbox list");
    } else {
        table_finish(&t);
        if (!within_budget(&pats, &t)) {
            imap__reply(s, tag, "NO", "LIMIT", "Too many or too long patterns for this LIST");
        } else {
            bool *hit = calloc(t.n ? t.n : 1, sizeof(*hit));
            if (!hit)
                log_fatal("out of memory");
            for (size_t i = 0; i < t.n; i++)
                hit[i] = patterns_match(&pats, t.e[i].name);
            for (size_t i = 0; i < t.n; i++)
                if (hit[i])
                    list_entry(s, &q, &t, i, hit, dbis, txn);
            free(hit);
            imap__reply(s, tag, "OK", NULL, done);
        }
    }
    mdb_txn_abort(txn);
    table_free(&t);
    patterns_free(&pats);
}

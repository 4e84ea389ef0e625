/*
 * The IMAP command grammar (RFC 9051 section 9, RFC 3501 section 9 and the extensions named
 * in imap_parser.h): a recursive-descent parser over one complete command held in memory.
 * imap_parser.c frames commands (lines, literals, limits) and calls imap__parse_command();
 * SEARCH and FETCH, the two large sub-grammars, are in imap_search.c and imap_fetch.c.
 *
 * Every list the grammar allows counts against max_items and every parenthesis or NOT/OR
 * against max_depth, so no input can make the parser allocate or recurse without bound: the
 * arena can hold at most what the bytes of the command describe, and the command's size is
 * bounded by the framer.
 */
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_date.h"
#include "proto/imap/imap_int.h"

#include <string.h>
#include <strings.h>

/* ---- character classes ---- */

bool
imap__is_atom_char(uint8_t c)
{
    /* atom-specials: ( ) { SP CTL % * " \ ]; 8-bit bytes are taken (see imap_parser.h). */
    if (c <= 0x1f || c == 0x7f)
        return false;
    return c != '(' && c != ')' && c != '{' && c != ' ' && c != '%' && c != '*' && c != '"' &&
           c != '\\' && c != ']';
}

bool
imap__is_astring_char(uint8_t c)
{
    return imap__is_atom_char(c) || c == ']';
}

static bool
is_list_char(uint8_t c)
{
    return imap__is_astring_char(c) || c == '%' || c == '*';
}

/* ---- primitives ---- */

bool
imap__fail(struct imap__reader *r, const char *why)
{
    if (!r->err && !r->enomem)
        r->err = why;
    return false;
}

bool
imap__nomem(struct imap__reader *r)
{
    r->enomem = true;
    return false;
}

int
imap__peek(const struct imap__reader *r)
{
    return r->pos < r->len ? r->buf[r->pos] : -1;
}

bool
imap__at_sp(const struct imap__reader *r)
{
    return imap__peek(r) == ' ';
}

bool
imap__sp(struct imap__reader *r)
{
    if (imap__peek(r) != ' ')
        return imap__fail(r, "Missing argument or space expected");
    r->pos++;
    return true;
}

bool
imap__char(struct imap__reader *r, char c, const char *why)
{
    if (imap__peek(r) != (unsigned char)c)
        return imap__fail(r, why);
    r->pos++;
    return true;
}

bool
imap__count_item(struct imap__reader *r)
{
    if (++r->items > r->lim->max_items)
        return imap__fail(r, "[LIMIT] Too many arguments");
    return true;
}

bool
imap__enter(struct imap__reader *r)
{
    if (++r->depth > r->lim->max_depth)
        return imap__fail(r, "[LIMIT] Nested too deeply");
    return true;
}

void
imap__leave(struct imap__reader *r)
{
    r->depth--;
}

bool
imap__end(struct imap__reader *r)
{
    if (imap__peek(r) == '\r')
        r->pos++;
    if (imap__peek(r) != '\n' || r->pos + 1 != r->len)
        return imap__fail(r, imap__peek(r) == ' ' ? "Unexpected extra arguments"
                                                  : "Unexpected characters after the arguments");
    r->pos++;
    return true;
}

bool
imap__atom(struct imap__reader *r, const uint8_t **s_r, size_t *len_r, const char *why)
{
    size_t start = r->pos;
    while (r->pos < r->len && imap__is_atom_char(r->buf[r->pos]))
        r->pos++;
    if (r->pos == start)
        return imap__fail(r, why);
    *s_r = r->buf + start;
    *len_r = r->pos - start;
    return true;
}

bool
imap__keyword(struct imap__reader *r, const char *kw)
{
    size_t n = strlen(kw);
    if (r->len - r->pos < n || strncasecmp((const char *)r->buf + r->pos, kw, n) != 0)
        return false;
    if (r->pos + n < r->len && imap__is_atom_char(r->buf[r->pos + n]))
        return false;
    r->pos += n;
    return true;
}

char *
imap__upper(struct imap__reader *r, const uint8_t *s, size_t len)
{
    char *d = imap_arena_strndup(r->a, (const char *)s, len);
    if (!d) {
        imap__nomem(r);
        return NULL;
    }
    for (size_t i = 0; i < len; i++)
        if (d[i] >= 'a' && d[i] <= 'z')
            d[i] = (char)(d[i] - 'a' + 'A');
    return d;
}

static bool
dup(struct imap__reader *r, const uint8_t *s, size_t len, const char **s_r)
{
    char *d = imap_arena_strndup(r->a, (const char *)s, len);
    if (!d)
        return imap__nomem(r);
    *s_r = d;
    return true;
}

static bool
quoted(struct imap__reader *r, const char **s_r)
{
    r->pos++; /* the DQUOTE */
    /* The unescaped text is never longer than the quoted one: copy into arena memory sized
     * for the worst case. */
    size_t start = r->pos, end = start;
    while (end < r->len && r->buf[end] != '"') {
        if (r->buf[end] == '\\')
            end++;
        end++;
    }
    char *d = imap_arena_alloc(r->a, (end > r->len ? r->len : end) - start + 1);
    if (!d)
        return imap__nomem(r);
    size_t n = 0;
    for (;;) {
        int c = imap__peek(r);
        if (c < 0 || c == '\r' || c == '\n')
            return imap__fail(r, "Unterminated quoted string");
        r->pos++;
        if (c == '"')
            break;
        if (c == '\\') {
            c = imap__peek(r);
            if (c != '"' && c != '\\')
                return imap__fail(r, "Invalid escape in quoted string");
            r->pos++;
        } else if (c == 0) {
            return imap__fail(r, "NUL in quoted string");
        }
        d[n++] = (char)c;
    }
    d[n] = '\0';
    *s_r = d;
    return true;
}

/*
 * A literal or literal8 at r->pos ('{' or '~'). For a string (message == NULL) the bytes
 * become a NUL-terminated string; for an APPEND message the literal must be one the framer
 * streamed, and only its size and kind are returned.
 */
static bool
literal(struct imap__reader *r, const char **s_r, struct imap_append_msg *message)
{
    if (r->pos == r->stop) {
        r->stopped = message ? IMAP__STOP_MESSAGE : IMAP__STOP_OTHER;
        return false;
    }
    bool binary = false;
    if (imap__peek(r) == '~') {
        binary = true;
        r->pos++;
    }
    if (!imap__char(r, '{', "Invalid literal"))
        return false;
    uint64_t n = 0;
    size_t digits = 0;
    while (r->pos < r->len && r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') {
        if (++digits > 19)
            return imap__fail(r, "Invalid literal size");
        n = n * 10 + (uint64_t)(r->buf[r->pos++] - '0');
    }
    if (!digits)
        return imap__fail(r, "Invalid literal size");
    if (imap__peek(r) == '+')
        r->pos++;
    if (!imap__char(r, '}', "Invalid literal"))
        return false;
    if (imap__peek(r) == '\r')
        r->pos++;
    if (!imap__char(r, '\n', "Invalid literal"))
        return false;
    bool streamed = r->next_streamed < r->n_streamed && r->streamed[r->next_streamed] == r->pos;
    if (message) {
        if (!streamed)
            return imap__fail(r, "Literal expected"); /* not reached: the framer streams these */
        r->next_streamed++;
        message->size = n;
        message->binary = binary;
        return true;
    }
    if (binary)
        return imap__fail(r, "literal8 is only allowed for APPEND messages");
    if (streamed || n > r->len - r->pos)
        return imap__fail(r, "Invalid literal"); /* not reached: the framer holds them */
    if (memchr(r->buf + r->pos, 0, n))
        return imap__fail(r, "NUL in literal");
    if (!dup(r, r->buf + r->pos, n, s_r))
        return false;
    r->pos += n;
    return true;
}

/* Whether a literal (or literal8: "~{") starts here; "~" alone starts an atom ("~/Mail"). */
static bool
at_literal(const struct imap__reader *r)
{
    int c = imap__peek(r);
    return c == '{' || (c == '~' && r->pos + 1 < r->len && r->buf[r->pos + 1] == '{');
}

bool
imap__string(struct imap__reader *r, const char **s_r, const char *why)
{
    if (imap__peek(r) == '"')
        return quoted(r, s_r);
    if (at_literal(r))
        return literal(r, s_r, NULL);
    return imap__fail(r, why);
}

bool
imap__astring(struct imap__reader *r, const char **s_r, const char *why)
{
    if (imap__peek(r) == '"' || at_literal(r))
        return imap__string(r, s_r, why);
    size_t start = r->pos;
    while (r->pos < r->len && imap__is_astring_char(r->buf[r->pos]))
        r->pos++;
    if (r->pos == start)
        return imap__fail(r, why);
    return dup(r, r->buf + start, r->pos - start, s_r);
}

bool
imap__nstring(struct imap__reader *r, const char **s_r, const char *why)
{
    if (imap__keyword(r, "NIL")) {
        *s_r = NULL;
        return true;
    }
    return imap__string(r, s_r, why);
}

bool
imap__number(struct imap__reader *r, uint64_t max, uint64_t *n_r, const char *why)
{
    uint64_t n = 0;
    size_t start = r->pos;
    while (r->pos < r->len && r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') {
        unsigned d = r->buf[r->pos] - '0';
        if (n > (max - d) / 10)
            return imap__fail(r, why);
        n = n * 10 + d;
        r->pos++;
    }
    if (r->pos == start)
        return imap__fail(r, why);
    *n_r = n;
    return true;
}

bool
imap__nz_number(struct imap__reader *r, uint32_t *n_r, const char *why)
{
    uint64_t n;
    if (!imap__number(r, UINT32_MAX, &n, why))
        return false;
    if (n == 0)
        return imap__fail(r, why);
    *n_r = (uint32_t)n;
    return true;
}

static bool
seq_number(struct imap__reader *r, uint32_t *n_r)
{
    if (imap__peek(r) == '*') {
        r->pos++;
        *n_r = IMAP_SEQ_STAR;
        return true;
    }
    return imap__nz_number(r, n_r, "Invalid sequence set");
}

bool
imap__seqset(struct imap__reader *r, bool allow_saved, struct imap_seqset *s_r)
{
    memset(s_r, 0, sizeof(*s_r));
    if (imap__peek(r) == '$') {
        if (!allow_saved)
            return imap__fail(r, "Invalid sequence set");
        r->pos++;
        s_r->saved = true;
        return true;
    }
    /* Count the ranges first, so the array is allocated once at its final size. */
    size_t n = 1;
    for (size_t i = r->pos; i < r->len && r->buf[i] != ' ' && r->buf[i] != '\n' &&
                            r->buf[i] != ')' && r->buf[i] != '\r';
         i++)
        n += r->buf[i] == ',';
    if (n > r->lim->max_ranges)
        return imap__fail(r, "[LIMIT] Too many ranges in the sequence set");
    s_r->r = imap_arena_array(r->a, n, sizeof(*s_r->r));
    if (!s_r->r)
        return imap__nomem(r);
    for (;;) {
        struct imap_seq_range *rg = &s_r->r[s_r->n];
        if (s_r->n == n || !seq_number(r, &rg->lo))
            return imap__fail(r, "Invalid sequence set");
        rg->hi = rg->lo;
        if (imap__peek(r) == ':') {
            r->pos++;
            if (!seq_number(r, &rg->hi))
                return false;
        }
        s_r->n++;
        if (imap__peek(r) != ',')
            break;
        r->pos++;
    }
    return true;
}

bool
imap__date(struct imap__reader *r, struct imap_date *d_r)
{
    bool q = imap__peek(r) == '"';
    r->pos += q;
    size_t start = r->pos;
    while (r->pos < r->len && (imap__is_atom_char(r->buf[r->pos])))
        r->pos++;
    if (!imap_date_parse((const char *)r->buf + start, r->pos - start, d_r))
        return imap__fail(r, "Invalid date");
    return !q || imap__char(r, '"', "Invalid date");
}

/* Canonical spelling of the system flags, so callers compare with strcmp. */
static const char *const system_flags[] = {"\\Answered", "\\Flagged", "\\Deleted",
                                           "\\Seen",     "\\Draft",   "\\Recent"};

bool
imap__flag(struct imap__reader *r, const char **f_r)
{
    bool ext = imap__peek(r) == '\\';
    r->pos += ext;
    const uint8_t *s;
    size_t len;
    if (!imap__atom(r, &s, &len, "Invalid flag"))
        return false;
    if (ext) {
        for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++)
            if (strlen(system_flags[i]) == len + 1 &&
                strncasecmp(system_flags[i] + 1, (const char *)s, len) == 0) {
                *f_r = system_flags[i];
                return true;
            }
    }
    return dup(r, s - ext, len + ext, f_r);
}

/* Grows an arena array of elements of size sz to hold n + 1. */
static bool
grow(struct imap__reader *r, void **arr, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *na = imap_arena_array(r->a, ncap, sz);
    if (!na)
        return imap__nomem(r);
    if (n)
        memcpy(na, *arr, n * sz);
    *arr = na;
    *cap = ncap;
    return true;
}
#define GROW(r, arr, n, cap) grow((r), (void **)&(arr), (n), &(cap), sizeof(*(arr)))

bool
imap__flag_list(struct imap__reader *r, const char ***flags_r, size_t *n_r)
{
    if (!imap__char(r, '(', "Flag list expected"))
        return false;
    const char **flags = NULL;
    size_t n = 0, cap = 0;
    if (imap__peek(r) != ')') {
        for (;;) {
            if (!imap__count_item(r) || !GROW(r, flags, n, cap) || !imap__flag(r, &flags[n]))
                return false;
            n++;
            if (imap__peek(r) != ' ')
                break;
            r->pos++;
        }
    }
    if (!imap__char(r, ')', "Invalid flag list"))
        return false;
    *flags_r = flags;
    *n_r = n;
    return true;
}

/* "(" atom *(SP atom) ")" of keywords matched against a table; bits in *mask_r. */
struct opt {
    const char *name;
    unsigned bit;
};

static bool
find_opt(struct imap__reader *r, const struct opt *opts, unsigned *bit_r)
{
    for (const struct opt *o = opts; o->name; o++)
        if (imap__keyword(r, o->name)) {
            *bit_r = o->bit;
            return true;
        }
    return false;
}

static const struct opt status_items[] = {
    {"MESSAGES", IMAP_STATUS_MESSAGES},
    {"RECENT", IMAP_STATUS_RECENT},
    {"UIDNEXT", IMAP_STATUS_UIDNEXT},
    {"UIDVALIDITY", IMAP_STATUS_UIDVALIDITY},
    {"UNSEEN", IMAP_STATUS_UNSEEN},
    {"DELETED-STORAGE", IMAP_STATUS_DELETED_STORAGE},
    {"DELETED", IMAP_STATUS_DELETED},
    {"SIZE", IMAP_STATUS_SIZE},
    {"HIGHESTMODSEQ", IMAP_STATUS_HIGHESTMODSEQ},
    {"APPENDLIMIT", IMAP_STATUS_APPENDLIMIT},
    {NULL, 0},
};

/* "(" status-att *(SP status-att) ")" */
static bool
status_list(struct imap__reader *r, unsigned *items_r)
{
    if (!imap__char(r, '(', "Status items expected"))
        return false;
    unsigned items = 0, bit;
    for (;;) {
        if (!imap__count_item(r))
            return false;
        if (!find_opt(r, status_items, &bit))
            return imap__fail(r, "Unknown STATUS item");
        items |= bit;
        if (imap__peek(r) != ' ')
            break;
        r->pos++;
    }
    *items_r = items;
    return imap__char(r, ')', "Invalid STATUS items");
}

/* mailbox = "INBOX" / astring; any case of INBOX is INBOX. */
static bool
mailbox(struct imap__reader *r, const char **m_r)
{
    if (!imap__astring(r, m_r, "Mailbox name expected"))
        return false;
    if (strcasecmp(*m_r, "INBOX") == 0)
        *m_r = "INBOX";
    return true;
}

/* ---- commands ---- */

static bool
parse_authenticate(struct imap__reader *r, struct imap_command *c)
{
    const uint8_t *s;
    size_t len;
    if (!imap__sp(r) || !imap__atom(r, &s, &len, "SASL mechanism expected"))
        return false;
    if (!(c->u.authenticate.mechanism = imap__upper(r, s, len)))
        return false;
    if (!imap__at_sp(r))
        return true;
    r->pos++;
    /* initial-resp = base64 / "=" (RFC 4959) */
    size_t start = r->pos;
    while (r->pos < r->len && ((r->buf[r->pos] >= 'A' && r->buf[r->pos] <= 'Z') ||
                               (r->buf[r->pos] >= 'a' && r->buf[r->pos] <= 'z') ||
                               (r->buf[r->pos] >= '0' && r->buf[r->pos] <= '9') ||
                               r->buf[r->pos] == '+' || r->buf[r->pos] == '/'))
        r->pos++;
    size_t body = r->pos - start;
    while (r->pos < r->len && r->buf[r->pos] == '=' && r->pos - start < body + 2)
        r->pos++;
    size_t n = r->pos - start;
    if (n == 1 && body == 0) {
        c->u.authenticate.initial = "";
        return true;
    }
    if (n == 0 || body == 0 || n % 4 != 0)
        return imap__fail(r, "Invalid initial response (base64 expected)");
    return dup(r, r->buf + start, n, &c->u.authenticate.initial);
}

static bool
parse_login(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && imap__astring(r, &c->u.login.user, "User name expected") && imap__sp(r) &&
           imap__astring(r, &c->u.login.password, "Password expected");
}

static bool
parse_enable(struct imap__reader *r, struct imap_command *c)
{
    size_t cap = 0;
    do {
        const uint8_t *s;
        size_t len;
        if (!imap__sp(r) || !imap__count_item(r) ||
            !GROW(r, c->u.enable.caps, c->u.enable.n, cap) ||
            !imap__atom(r, &s, &len, "Capability expected") ||
            !(c->u.enable.caps[c->u.enable.n] = imap__upper(r, s, len)))
            return false;
        c->u.enable.n++;
    } while (imap__at_sp(r));
    return true;
}

static bool
parse_id(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r))
        return false;
    if (imap__keyword(r, "NIL")) {
        c->u.id.nil = true;
        return true;
    }
    if (!imap__char(r, '(', "ID parameter list or NIL expected"))
        return false;
    size_t cap = 0, vcap = 0;
    /* RFC 2971 allows an empty list only as NIL, but clients send "()" too. */
    while (imap__peek(r) != ')') {
        size_t n = c->u.id.n;
        if (n && !imap__sp(r))
            return false;
        if (!imap__count_item(r) || !GROW(r, c->u.id.keys, n, cap) ||
            !GROW(r, c->u.id.values, n, vcap) ||
            !imap__string(r, &c->u.id.keys[n], "ID field name expected") || !imap__sp(r) ||
            !imap__nstring(r, &c->u.id.values[n], "ID field value expected"))
            return false;
        c->u.id.n++;
    }
    r->pos++;
    return true;
}

static bool
parse_select(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !mailbox(r, &c->u.select.mailbox))
        return false;
    if (!imap__at_sp(r))
        return true;
    r->pos++;
    if (!imap__char(r, '(', "SELECT parameters expected"))
        return false;
    for (;;) {
        if (!imap__count_item(r))
            return false;
        if (imap__keyword(r, "CONDSTORE")) {
            c->u.select.condstore = true;
        } else if (imap__keyword(r, "QRESYNC")) {
            /* "QRESYNC" SP "(" uidvalidity SP mod-sequence-value [SP known-uids]
             *   [SP seq-match-data] ")" */
            uint64_t v;
            if (c->u.select.qresync)
                return imap__fail(r, "QRESYNC given twice");
            c->u.select.qresync = true;
            if (!imap__sp(r) || !imap__char(r, '(', "QRESYNC parameters expected") ||
                !imap__number(r, UINT32_MAX, &v, "Invalid UIDVALIDITY") ||
                (v == 0 && !imap__fail(r, "Invalid UIDVALIDITY")) || !imap__sp(r))
                return false;
            c->u.select.uidvalidity = (uint32_t)v;
            if (!imap__number(r, INT64_MAX, &c->u.select.modseq, "Invalid mod-sequence") ||
                (c->u.select.modseq == 0 && !imap__fail(r, "Invalid mod-sequence")))
                return false;
            if (imap__at_sp(r) && r->pos + 1 < r->len && r->buf[r->pos + 1] != '(') {
                r->pos++;
                if (!imap__seqset(r, false, &c->u.select.known_uids))
                    return false;
            }
            if (imap__at_sp(r)) {
                r->pos++;
                if (!imap__char(r, '(', "Sequence match data expected") ||
                    !imap__seqset(r, false, &c->u.select.match_seqs) || !imap__sp(r) ||
                    !imap__seqset(r, false, &c->u.select.match_uids) ||
                    !imap__char(r, ')', "Invalid sequence match data"))
                    return false;
            }
            if (!imap__char(r, ')', "Invalid QRESYNC parameters"))
                return false;
        } else {
            return imap__fail(r, "Unknown SELECT parameter");
        }
        if (imap__peek(r) != ' ')
            break;
        r->pos++;
    }
    return imap__char(r, ')', "Invalid SELECT parameters");
}

static const char *const special_uses[] = {"\\All",  "\\Archive", "\\Drafts", "\\Flagged",
                                           "\\Junk", "\\Sent",    "\\Trash"};

static bool
parse_create(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !mailbox(r, &c->u.create.mailbox))
        return false;
    if (!imap__at_sp(r))
        return true;
    r->pos++;
    /* create-params = "(" create-param *(SP create-param) ")"; only USE is known (RFC 6154) */
    if (!imap__char(r, '(', "CREATE parameters expected"))
        return false;
    if (!imap__keyword(r, "USE"))
        return imap__fail(r, "Unknown CREATE parameter");
    if (!imap__sp(r) || !imap__char(r, '(', "USE attributes expected"))
        return false;
    c->u.create.has_use = true;
    size_t cap = 0;
    while (imap__peek(r) != ')') {
        size_t n = c->u.create.n_use;
        if (n && !imap__sp(r))
            return false;
        if (!imap__count_item(r) || !GROW(r, c->u.create.use, n, cap))
            return false;
        if (!imap__char(r, '\\', "Special-use attribute expected"))
            return false;
        const uint8_t *s;
        size_t len;
        if (!imap__atom(r, &s, &len, "Special-use attribute expected"))
            return false;
        c->u.create.use[n] = NULL;
        for (size_t i = 0; i < sizeof(special_uses) / sizeof(special_uses[0]); i++)
            if (strlen(special_uses[i]) == len + 1 &&
                strncasecmp(special_uses[i] + 1, (const char *)s, len) == 0)
                c->u.create.use[n] = special_uses[i];
        if (!c->u.create.use[n] && !dup(r, s - 1, len + 1, &c->u.create.use[n]))
            return false;
        c->u.create.n_use++;
    }
    r->pos++;
    return imap__char(r, ')', "Invalid CREATE parameters");
}

static bool
parse_rename(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && mailbox(r, &c->u.rename.from) && imap__sp(r) &&
           mailbox(r, &c->u.rename.to);
}

/* list-mailbox = 1*list-char / string */
static bool
list_mailbox(struct imap__reader *r, const char **s_r)
{
    if (imap__peek(r) == '"' || at_literal(r))
        return imap__string(r, s_r, "Mailbox pattern expected");
    size_t start = r->pos;
    while (r->pos < r->len && is_list_char(r->buf[r->pos]))
        r->pos++;
    if (r->pos == start)
        return imap__fail(r, "Mailbox pattern expected");
    return dup(r, r->buf + start, r->pos - start, s_r);
}

static const struct opt list_select_opts[] = {
    {"SUBSCRIBED", IMAP_LIST_SELECT_SUBSCRIBED},
    {"REMOTE", IMAP_LIST_SELECT_REMOTE},
    {"RECURSIVEMATCH", IMAP_LIST_SELECT_RECURSIVEMATCH},
    {"SPECIAL-USE", IMAP_LIST_SELECT_SPECIAL_USE},
    {NULL, 0},
};

static const struct opt list_return_opts[] = {
    {"SUBSCRIBED", IMAP_LIST_RETURN_SUBSCRIBED},
    {"CHILDREN", IMAP_LIST_RETURN_CHILDREN},
    {"SPECIAL-USE", IMAP_LIST_RETURN_SPECIAL_USE},
    {"STATUS", IMAP_LIST_RETURN_STATUS},
    {NULL, 0},
};

static bool
parse_list(struct imap__reader *r, struct imap_command *c)
{
    unsigned bit;
    if (!imap__sp(r))
        return false;
    /* list-select-opts = "(" [list-select-opt *(SP list-select-opt)] ")" */
    if (imap__peek(r) == '(') {
        r->pos++;
        c->u.list.extended = true;
        while (imap__peek(r) != ')') {
            if (c->u.list.select_opts && !imap__sp(r))
                return false;
            if (!imap__count_item(r))
                return false;
            if (!find_opt(r, list_select_opts, &bit))
                return imap__fail(r, "Unknown LIST selection option");
            c->u.list.select_opts |= bit;
        }
        r->pos++;
        /* RFC 5258 3.1: RECURSIVEMATCH alone is meaningless and must be refused. */
        if ((c->u.list.select_opts & IMAP_LIST_SELECT_RECURSIVEMATCH) &&
            !(c->u.list.select_opts & (IMAP_LIST_SELECT_SUBSCRIBED | IMAP_LIST_SELECT_SPECIAL_USE)))
            return imap__fail(r, "RECURSIVEMATCH needs another selection option");
        if (!imap__sp(r))
            return false;
    }
    /* The reference is a prefix, not a mailbox: "inbox" stays as written. */
    if (!imap__astring(r, &c->u.list.reference, "Reference name expected") || !imap__sp(r))
        return false;
    size_t cap = 0;
    if (imap__peek(r) == '(') {
        r->pos++;
        c->u.list.extended = true;
        for (;;) {
            size_t n = c->u.list.n_patterns;
            if (!imap__count_item(r) || !GROW(r, c->u.list.patterns, n, cap) ||
                !list_mailbox(r, &c->u.list.patterns[n]))
                return false;
            c->u.list.n_patterns++;
            if (imap__peek(r) != ' ')
                break;
            r->pos++;
        }
        if (!imap__char(r, ')', "Invalid mailbox patterns"))
            return false;
    } else {
        if (!GROW(r, c->u.list.patterns, 0, cap) || !list_mailbox(r, &c->u.list.patterns[0]))
            return false;
        c->u.list.n_patterns = 1;
    }
    if (!imap__at_sp(r))
        return true;
    r->pos++;
    /* list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")" */
    if (!imap__keyword(r, "RETURN"))
        return imap__fail(r, "RETURN expected");
    c->u.list.extended = true;
    if (!imap__sp(r) || !imap__char(r, '(', "Return options expected"))
        return false;
    bool first = true;
    while (imap__peek(r) != ')') {
        if (!first && !imap__sp(r))
            return false;
        first = false;
        if (!imap__count_item(r))
            return false;
        if (!find_opt(r, list_return_opts, &bit))
            return imap__fail(r, "Unknown LIST return option");
        c->u.list.return_opts |= bit;
        if (bit == IMAP_LIST_RETURN_STATUS &&
            (!imap__sp(r) || !status_list(r, &c->u.list.status_items)))
            return false;
    }
    r->pos++;
    return true;
}

static bool
parse_lsub(struct imap__reader *r, struct imap_command *c)
{
    c->u.list.patterns = imap_arena_array(r->a, 1, sizeof(*c->u.list.patterns));
    if (!c->u.list.patterns)
        return imap__nomem(r);
    c->u.list.n_patterns = 1;
    return imap__sp(r) && imap__astring(r, &c->u.list.reference, "Reference name expected") &&
           imap__sp(r) && list_mailbox(r, &c->u.list.patterns[0]);
}

static bool
parse_status(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && mailbox(r, &c->u.status.mailbox) && imap__sp(r) &&
           status_list(r, &c->u.status.items);
}

/* append-message after its SP: [flag-list SP] [date-time SP] append-data, where
 * append-data = literal / literal8 / "UTF8" SP "(" literal8 ")"     (RFC 6855 4) */
bool
imap__append_message(struct imap__reader *r, struct imap_append_msg *m)
{
    if (imap__peek(r) == '(') {
        m->has_flags = true;
        if (!imap__flag_list(r, &m->flags, &m->n_flags) || !imap__sp(r))
            return false;
    }
    if (imap__peek(r) == '"') {
        const char *s;
        if (!quoted(r, &s))
            return false;
        if (!imap_date_time_parse(s, strlen(s), &m->date))
            return imap__fail(r, "Invalid date-time");
        m->has_date = true;
        if (!imap__sp(r))
            return false;
    }
    if (imap__keyword(r, "UTF8")) {
        m->utf8 = true;
        if (!imap__sp(r) || !imap__char(r, '(', "UTF8 needs (~{n})"))
            return false;
        if (imap__peek(r) != '~')
            return imap__fail(r, "UTF8 needs a literal8 (~{n})");
        return literal(r, NULL, m) && imap__char(r, ')', "UTF8 (~{n}) needs its \")\"");
    }
    if (!at_literal(r))
        return imap__fail(r, "Message literal expected");
    return literal(r, NULL, m);
}

/* append = "APPEND" SP mailbox 1*(SP append-message)        (RFC 3502 MULTIAPPEND) */
static bool
parse_append(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !mailbox(r, &c->u.append.mailbox))
        return false;
    size_t cap = 0;
    do {
        size_t n = c->u.append.n;
        if (!imap__sp(r) || !imap__count_item(r) || !GROW(r, c->u.append.msgs, n, cap) ||
            !imap__append_message(r, &c->u.append.msgs[n]))
            return false;
        c->u.append.n++;
    } while (imap__at_sp(r));
    return true;
}

static bool
parse_setquota(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !imap__astring(r, &c->u.quota.root, "Quota root expected") ||
        !imap__sp(r) || !imap__char(r, '(', "Quota resource list expected"))
        return false;
    size_t cap = 0;
    while (imap__peek(r) != ')') {
        size_t n = c->u.quota.n;
        const uint8_t *s;
        size_t len;
        if (n && !imap__sp(r))
            return false;
        if (!imap__count_item(r) || !GROW(r, c->u.quota.res, n, cap) ||
            !imap__atom(r, &s, &len, "Quota resource name expected") ||
            !(c->u.quota.res[n].name = imap__upper(r, s, len)) || !imap__sp(r) ||
            !imap__number(r, INT64_MAX, &c->u.quota.res[n].limit, "Invalid quota limit"))
            return false;
        c->u.quota.n++;
    }
    r->pos++;
    return true;
}

static const struct opt store_flags[] = {
    {"FLAGS.SILENT", 1},
    {"FLAGS", 0},
    {NULL, 0},
};

/* store = "STORE" SP sequence-set [SP "(" "UNCHANGEDSINCE" SP mod-sequence-valzer ")"]
 *         SP (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag))) */
static bool
parse_store(struct imap__reader *r, struct imap_command *c)
{
    if (!imap__sp(r) || !imap__seqset(r, true, &c->u.store.set) || !imap__sp(r))
        return false;
    if (imap__peek(r) == '(') {
        r->pos++;
        if (!imap__keyword(r, "UNCHANGEDSINCE"))
            return imap__fail(r, "Unknown STORE modifier");
        if (!imap__sp(r) ||
            !imap__number(r, INT64_MAX, &c->u.store.unchangedsince, "Invalid mod-sequence") ||
            !imap__char(r, ')', "Invalid STORE modifiers") || !imap__sp(r))
            return false;
        c->u.store.has_unchangedsince = true;
    }
    c->u.store.op = IMAP_STORE_SET;
    if (imap__peek(r) == '+' || imap__peek(r) == '-') {
        c->u.store.op = imap__peek(r) == '+' ? IMAP_STORE_ADD : IMAP_STORE_REMOVE;
        r->pos++;
    }
    unsigned silent;
    if (!find_opt(r, store_flags, &silent))
        return imap__fail(r, "Invalid STORE data item");
    c->u.store.silent = silent;
    if (!imap__sp(r))
        return false;
    if (imap__peek(r) == '(')
        return imap__flag_list(r, &c->u.store.flags, &c->u.store.n_flags);
    size_t cap = 0;
    for (;;) {
        size_t n = c->u.store.n_flags;
        if (!imap__count_item(r) || !GROW(r, c->u.store.flags, n, cap) ||
            !imap__flag(r, &c->u.store.flags[n]))
            return false;
        c->u.store.n_flags++;
        if (!imap__at_sp(r))
            return true;
        r->pos++;
    }
}

static bool
parse_copy(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && imap__seqset(r, true, &c->u.copy.set) && imap__sp(r) &&
           mailbox(r, &c->u.copy.mailbox);
}

static bool
parse_uid_expunge(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && imap__seqset(r, true, &c->u.copy.set);
}

static bool
parse_one_mailbox(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && mailbox(r, &c->u.select.mailbox);
}

static bool
parse_getquota(struct imap__reader *r, struct imap_command *c)
{
    return imap__sp(r) && imap__astring(r, &c->u.quota.root, "Quota root expected");
}

static bool
parse_none(struct imap__reader *r, struct imap_command *c)
{
    (void)r;
    (void)c;
    return true;
}

struct cmd_def {
    const char *name;
    enum imap_cmd cmd;
    bool (*parse)(struct imap__reader *r, struct imap_command *c);
    enum { PLAIN, BOTH, UID_ONLY } uid; /* whether it may or must follow "UID" */
};

static const struct cmd_def cmds[] = {
    {"CAPABILITY", IMAP_CMD_CAPABILITY, parse_none, PLAIN},
    {"NOOP", IMAP_CMD_NOOP, parse_none, PLAIN},
    {"LOGOUT", IMAP_CMD_LOGOUT, parse_none, PLAIN},
    {"ID", IMAP_CMD_ID, parse_id, PLAIN},
    {"ENABLE", IMAP_CMD_ENABLE, parse_enable, PLAIN},
    {"STARTTLS", IMAP_CMD_STARTTLS, parse_none, PLAIN},
    {"AUTHENTICATE", IMAP_CMD_AUTHENTICATE, parse_authenticate, PLAIN},
    {"LOGIN", IMAP_CMD_LOGIN, parse_login, PLAIN},
    {"SELECT", IMAP_CMD_SELECT, parse_select, PLAIN},
    {"EXAMINE", IMAP_CMD_EXAMINE, parse_select, PLAIN},
    {"CREATE", IMAP_CMD_CREATE, parse_create, PLAIN},
    {"DELETE", IMAP_CMD_DELETE, parse_one_mailbox, PLAIN},
    {"RENAME", IMAP_CMD_RENAME, parse_rename, PLAIN},
    {"SUBSCRIBE", IMAP_CMD_SUBSCRIBE, parse_one_mailbox, PLAIN},
    {"UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE, parse_one_mailbox, PLAIN},
    {"LIST", IMAP_CMD_LIST, parse_list, PLAIN},
    {"LSUB", IMAP_CMD_LSUB, parse_lsub, PLAIN},
    {"NAMESPACE", IMAP_CMD_NAMESPACE, parse_none, PLAIN},
    {"STATUS", IMAP_CMD_STATUS, parse_status, PLAIN},
    {"APPEND", IMAP_CMD_APPEND, parse_append, PLAIN},
    {"IDLE", IMAP_CMD_IDLE, parse_none, PLAIN},
    {"GETQUOTA", IMAP_CMD_GETQUOTA, parse_getquota, PLAIN},
    {"GETQUOTAROOT", IMAP_CMD_GETQUOTAROOT, parse_one_mailbox, PLAIN},
    {"SETQUOTA", IMAP_CMD_SETQUOTA, parse_setquota, PLAIN},
    {"CHECK", IMAP_CMD_CHECK, parse_none, PLAIN},
    {"CLOSE", IMAP_CMD_CLOSE, parse_none, PLAIN},
    {"UNSELECT", IMAP_CMD_UNSELECT, parse_none, PLAIN},
    {"EXPUNGE", IMAP_CMD_EXPUNGE, parse_none, PLAIN},
    {"EXPUNGE", IMAP_CMD_EXPUNGE, parse_uid_expunge, UID_ONLY},
    {"SEARCH", IMAP_CMD_SEARCH, imap__parse_search, BOTH},
    {"FETCH", IMAP_CMD_FETCH, imap__parse_fetch, BOTH},
    {"STORE", IMAP_CMD_STORE, parse_store, BOTH},
    {"COPY", IMAP_CMD_COPY, parse_copy, BOTH},
    {"MOVE", IMAP_CMD_MOVE, parse_copy, BOTH},
};

const char *
imap_cmd_name(enum imap_cmd cmd)
{
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (cmds[i].cmd == cmd)
            return cmds[i].name;
    return "?";
}

bool
imap__parse_command(struct imap__reader *r, struct imap_command **cmd_r, const uint8_t **tag_r,
                    size_t *tag_len_r)
{
    *tag_r = NULL;
    *tag_len_r = 0;
    /* tag = 1*<any ASTRING-CHAR except "+"> */
    size_t start = r->pos;
    while (r->pos < r->len && imap__is_astring_char(r->buf[r->pos]) && r->buf[r->pos] != '+')
        r->pos++;
    if (r->pos == start || imap__peek(r) != ' ')
        return imap__fail(r, "Invalid tag");
    *tag_r = r->buf + start;
    *tag_len_r = r->pos - start;
    struct imap_command *c = imap_arena_alloc(r->a, sizeof(*c));
    if (!c || !dup(r, r->buf + start, r->pos - start, &c->tag))
        return imap__nomem(r);
    r->cmd = c;
    r->pos++;

    const uint8_t *name;
    size_t len;
    if (!imap__atom(r, &name, &len, "Command expected"))
        return false;
    if (len == 3 && strncasecmp((const char *)name, "UID", 3) == 0) {
        c->uid = true;
        if (!imap__sp(r) || !imap__atom(r, &name, &len, "UID command expected"))
            return false;
    }
    const struct cmd_def *def = NULL;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]) && !def; i++)
        if (strlen(cmds[i].name) == len &&
            strncasecmp(cmds[i].name, (const char *)name, len) == 0 &&
            (c->uid ? cmds[i].uid != PLAIN : cmds[i].uid != UID_ONLY))
            def = &cmds[i];
    if (!def)
        return imap__fail(r, c->uid ? "Unknown UID command" : "Unknown command");
    c->cmd = def->cmd;
    if (!def->parse(r, c) || !imap__end(r))
        return false;
    *cmd_r = c;
    return true;
}

/*
 * The SEARCH evaluator (imap_search_eval.h): a program prepared from the parser's key tree,
 * evaluated against one message at a time.
 */
#include "imap/imap_search_eval.h"

#include "imap/imap_int.h"
#include "lib/log.h"
#include "proto/mime/mime_date.h"
#include "proto/mime/mime_message.h"
#include "proto/mime/mime_search.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a key needs to read, in the order evaluation prefers: keys of one AND or OR are run
 * cheapest first, so a message that fails a flag is never parsed. */
enum cost {
    COST_INFO = 0, /* the store's record: flags, dates, size, UID, MODSEQ */
    COST_HEADER,   /* the message's header, parsed alone */
    COST_BODY,     /* the whole message, parsed and decoded */
};

struct node {
    /* The parser's key, copied so that the program outlives the command (a search runs in
     * slices, after the command is freed): its strings and ranges point at the copies below,
     * and its sub-keys are this node's sub. */
    struct imap_search_key key;
    char *field, *value;           /* owned */
    struct imap_seq_range *ranges; /* owned */
    struct node *sub;              /* AND, OR, NOT: n_sub of them, owned */
    size_t n_sub;
    struct mime_buf needle; /* string keys: the value case-folded */
    enum cost cost;         /* the most this node (and its subtree) may need */
};

struct imap_search_prog {
    struct node root;
    bool has_modseq;
};

/* ---- Preparing ---- */

/* The header field a string key looks in, or NULL when it is not a header key. */
static const char *
header_field(const struct imap_search_key *k)
{
    switch (k->op) {
    case IMAP_SEARCH_BCC:
        return "Bcc";
    case IMAP_SEARCH_CC:
        return "Cc";
    case IMAP_SEARCH_FROM:
        return "From";
    case IMAP_SEARCH_SUBJECT:
        return "Subject";
    case IMAP_SEARCH_TO:
        return "To";
    case IMAP_SEARCH_HEADER:
        return k->field;
    default:
        return NULL;
    }
}

static enum cost
own_cost(const struct imap_search_key *k)
{
    if (header_field(k))
        return COST_HEADER;
    switch (k->op) {
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        return COST_HEADER;
    case IMAP_SEARCH_BODY:
    case IMAP_SEARCH_TEXT:
        return COST_BODY;
    default:
        return COST_INFO;
    }
}

static void
node_clear(struct node *n)
{
    for (size_t i = 0; i < n->n_sub; i++)
        node_clear(&n->sub[i]);
    free(n->sub);
    free(n->field);
    free(n->value);
    free(n->ranges);
    mime_buf_clear(&n->needle);
}

/* n->key = *k, with what k points to copied into n. */
static int
copy_key(struct node *n, const struct imap_search_key *k)
{
    n->key = *k;
    n->key.sub = NULL;
    n->key.n_sub = 0;
    if (k->field && !(n->key.field = n->field = strdup(k->field)))
        return -ENOMEM;
    if (k->value && !(n->key.value = n->value = strdup(k->value)))
        return -ENOMEM;
    if (k->set.n) {
        if (!(n->ranges = calloc(k->set.n, sizeof(*n->ranges))))
            return -ENOMEM;
        memcpy(n->ranges, k->set.r, k->set.n * sizeof(*n->ranges));
        n->key.set.r = n->ranges;
    }
    return 0;
}

/* Stable insertion sort by cost: the client's order is kept among keys of equal cost, so
 * evaluation stays predictable. */
static void
sort_by_cost(struct node *sub, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        struct node moving = sub[i];
        size_t j = i;
        for (; j > 0 && sub[j - 1].cost > moving.cost; j--)
            sub[j] = sub[j - 1];
        sub[j] = moving;
    }
}

static int
prepare(struct node *n, const struct imap_search_key *k, bool *has_modseq)
{
    int ret = copy_key(n, k);
    if (ret < 0)
        return ret;
    n->cost = own_cost(k);
    if (k->op == IMAP_SEARCH_MODSEQ)
        *has_modseq = true;
    if (header_field(k) || k->op == IMAP_SEARCH_BODY || k->op == IMAP_SEARCH_TEXT) {
        if (mime_utf8_fold((const uint8_t *)k->value, strlen(k->value), &n->needle) < 0)
            return -ENOMEM;
    }
    if (k->n_sub == 0)
        return 0;
    if (!(n->sub = calloc(k->n_sub, sizeof(*n->sub))))
        return -ENOMEM;
    n->n_sub = k->n_sub;
    for (size_t i = 0; i < k->n_sub; i++) {
        ret = prepare(&n->sub[i], k->sub[i], has_modseq);
        if (ret < 0)
            return ret;
        if (n->sub[i].cost > n->cost)
            n->cost = n->sub[i].cost;
    }
    sort_by_cost(n->sub, n->n_sub);
    return 0;
}

int
imap_search_prog_new(const struct imap_search_key *key, struct imap_search_prog **prog_r)
{
    struct imap_search_prog *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    int ret = prepare(&p->root, key, &p->has_modseq);
    if (ret < 0) {
        imap_search_prog_free(&p);
        return ret;
    }
    *prog_r = p;
    return 0;
}

void
imap_search_prog_free(struct imap_search_prog **prog)
{
    if (!*prog)
        return;
    node_clear(&(*prog)->root);
    free(*prog);
    *prog = NULL;
}

bool
imap_search_prog_has_modseq(const struct imap_search_prog *prog)
{
    return prog->has_modseq;
}

/* ---- One message's content, read as far as needed ---- */

void
imap_search_msg_init(struct imap_search_msg *m, uint32_t msn, const struct mail_message_info *info,
                     bool recent, imap_search_load_fn *load, void *load_ctx)
{
    memset(m, 0, sizeof(*m));
    m->msn = msn;
    m->info = info;
    m->recent = recent;
    m->load = load;
    m->load_ctx = load_ctx;
}

void
imap_search_msg_clear(struct imap_search_msg *m)
{
    mime_message_free(&m->header);
    mime_message_free(&m->message);
    mime_buf_clear(&m->header_text);
    mime_buf_clear(&m->body_text);
    m->loaded = m->have_header_text = m->have_body_text = false;
    m->sent_day = 0;
}

static int
load(struct imap_search_msg *m)
{
    if (m->loaded)
        return 0;
    int ret = m->load(m->load_ctx, &m->data, &m->len);
    if (ret < 0)
        return ret;
    m->loaded = true;
    return 0;
}

/* Where the header ends: just past the first empty line, or the end of the message. The MIME
 * parser may end it earlier (at a line that is not a field), and then ends it at the same
 * place when given only these bytes, so parsing them gives the same header. */
static size_t
header_length(const uint8_t *d, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *nl = memchr(d + pos, '\n', len - pos);
        if (!nl)
            return len;
        size_t line = (size_t)(nl - (d + pos));
        size_t next = (size_t)(nl - d) + 1;
        if (line == 0 || (line == 1 && d[pos] == '\r'))
            return next;
        pos = next;
    }
    return len;
}

/* The parsed header: from the whole message when that was parsed already, else the header
 * bytes alone, so header keys never walk a large body. */
static int
parsed_header(struct imap_search_msg *m, const struct mime_message **msg_r)
{
    if (m->message) {
        *msg_r = m->message;
        return 0;
    }
    if (!m->header) {
        int ret = load(m);
        if (ret < 0)
            return ret;
        ret = mime_message_parse(m->data, header_length(m->data, m->len), NULL, &m->header);
        if (ret < 0)
            return ret;
    }
    *msg_r = m->header;
    return 0;
}

/* The whole message parsed. Hazard: this frees the header-only parse, so a pointer that
 * parsed_header() gave must not be held across this call. */
static int
parsed_message(struct imap_search_msg *m, const struct mime_message **msg_r)
{
    if (!m->message) {
        int ret = load(m);
        if (ret < 0)
            return ret;
        ret = mime_message_parse(m->data, m->len, NULL, &m->message);
        if (ret < 0)
            return ret;
        mime_message_free(&m->header); /* the whole message answers for it from now on */
    }
    *msg_r = m->message;
    return 0;
}

/* Appends raw (UTF-8 search text) case-folded to *folded; frees raw. */
static int
fold_into(struct mime_buf *raw, struct mime_buf *folded)
{
    int ret = raw->error;
    if (!ret && raw->len)
        ret = mime_utf8_fold(raw->data, raw->len, folded);
    mime_buf_clear(raw);
    return ret < 0 ? ret : folded->error;
}

static bool
contains(const struct mime_buf *hay, const struct mime_buf *needle)
{
    if (needle->len == 0)
        return true;
    /* Folded UTF-8 is self-synchronising: a byte match is a character match. */
    return hay->len >= needle->len && memmem(hay->data, hay->len, needle->data, needle->len);
}

static int
header_text(struct imap_search_msg *m)
{
    if (m->have_header_text)
        return 0;
    const struct mime_message *msg;
    int ret = parsed_header(m, &msg);
    if (ret < 0)
        return ret;
    struct mime_buf raw = MIME_BUF_INIT;
    ret = mime_search_header_text(msg, mime_message_root(msg), NULL, &raw);
    if (ret < 0) {
        mime_buf_clear(&raw);
        return ret;
    }
    if ((ret = fold_into(&raw, &m->header_text)) < 0)
        return ret;
    m->have_header_text = true;
    return 0;
}

static int
body_text(struct imap_search_msg *m)
{
    if (m->have_body_text)
        return 0;
    const struct mime_message *msg;
    int ret = parsed_message(m, &msg);
    if (ret < 0)
        return ret;
    struct mime_buf raw = MIME_BUF_INIT;
    ret = mime_search_body_text(msg, mime_message_root(msg), &raw);
    if (ret < 0) {
        mime_buf_clear(&raw);
        return ret;
    }
    if ((ret = fold_into(&raw, &m->body_text)) < 0)
        return ret;
    m->have_body_text = true;
    return 0;
}

/* HEADER field value, FROM, TO...: the needle in any field called field; "" when the message
 * has the field at all (RFC 9051 6.4.4). */
static int
header_has(struct imap_search_msg *m, const char *field, const struct mime_buf *needle)
{
    const struct mime_message *msg;
    int ret = parsed_header(m, &msg);
    if (ret < 0)
        return ret;
    struct mime_buf raw = MIME_BUF_INIT, folded = MIME_BUF_INIT;
    ret = mime_search_header_text(msg, mime_message_root(msg), field, &raw);
    if (ret < 0) {
        mime_buf_clear(&raw);
        return ret;
    }
    /* Every field found adds at least its line break, so an empty text means no field. */
    bool present = raw.len > 0;
    if (present && needle->len)
        ret = fold_into(&raw, &folded);
    mime_buf_clear(&raw);
    if (ret >= 0)
        ret = present && contains(&folded, needle);
    mime_buf_clear(&folded);
    return ret;
}

static int
body_has(struct imap_search_msg *m, const struct mime_buf *needle)
{
    int ret = body_text(m);
    return ret < 0 ? ret : contains(&m->body_text, needle);
}

static int
text_has(struct imap_search_msg *m, const struct mime_buf *needle)
{
    int ret = header_text(m);
    if (ret < 0)
        return ret;
    if (contains(&m->header_text, needle))
        return 1;
    return body_has(m, needle);
}

/* ---- Dates, as yyyymmdd numbers that compare like the days they name ---- */

static int
day_number(int year, int month, int day)
{
    return year * 10000 + month * 100 + day;
}

/* The UTC day of t (seconds since the epoch), by the proleptic Gregorian calendar; works for
 * any instant, unlike gmtime_r, which fails outside its year range. */
static int
utc_day(int64_t t)
{
    int64_t days = t / 86400 - (t % 86400 < 0);
    /* Days since 0000-03-01, in 400-year eras of 146097 days. */
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int day = (int)(doy - (153 * mp + 2) / 5 + 1);
    int month = (int)(mp < 10 ? mp + 3 : mp - 9);
    int64_t year = yoe + era * 400 + (month <= 2);
    return day_number((int)year, month, day);
}

/* The Date header's day as written, or the internal date's UTC day without a usable one. */
static int
sent_day(struct imap_search_msg *m, int *day_r)
{
    if (m->sent_day) {
        *day_r = m->sent_day;
        return 0;
    }
    const struct mime_message *msg;
    int ret = parsed_header(m, &msg);
    if (ret < 0)
        return ret;
    int day = utc_day(m->info->internal_date);
    struct mime_field f;
    if (mime_header_find(mime_message_data(msg), mime_message_root(msg), "Date", &f)) {
        struct mime_buf v = MIME_BUF_INIT;
        mime_header_unfold(mime_message_data(msg), f.value, &v);
        struct mime_date d;
        if ((ret = v.error) == 0 && mime_date_parse(v.data, v.len, &d) == 0)
            day = day_number(d.year, d.month, d.day);
        mime_buf_clear(&v);
        if (ret < 0)
            return ret;
    }
    *day_r = m->sent_day = day;
    return 0;
}

/* BEFORE, ON, SINCE and their SENT forms: whether day is before, on, or on or after d. */
static bool
day_matches(enum imap_search_op op, int day, const struct imap_date *d)
{
    int want = day_number(d->year, d->month, d->day);
    switch (op) {
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_SENTBEFORE:
        return day < want;
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SENTON:
        return day == want;
    default: /* SINCE, SENTSINCE: on or after */
        return day >= want;
    }
}

/* ---- Sets ---- */

static bool
saved_has(const struct imap_search_env *env, uint32_t uid)
{
    size_t lo = 0, hi = env->n_saved;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (env->saved[mid] == uid)
            return true;
        if (env->saved[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool
in_set(const struct imap_seqset *set, const struct imap_search_env *env, uint32_t n, uint32_t star,
       uint32_t uid)
{
    return set->saved ? saved_has(env, uid) : imap__set_contains(set, n, star);
}

static bool
has_keyword(const struct mail_message_info *info, const char *keyword)
{
    /* Keywords compare case-insensitively (RFC 9051 2.3.2), as STORE keeps them. */
    for (size_t i = 0; i < info->n_keywords; i++)
        if (strcasecmp(info->keywords[i], keyword) == 0)
            return true;
    return false;
}

/* ---- Evaluation ---- */

static int eval(const struct node *n, const struct imap_search_env *env, struct imap_search_msg *m);

static int
eval_logic(const struct node *n, const struct imap_search_env *env, struct imap_search_msg *m)
{
    int ret;
    switch (n->key.op) {
    case IMAP_SEARCH_AND:
        for (size_t i = 0; i < n->n_sub; i++)
            if ((ret = eval(&n->sub[i], env, m)) <= 0)
                return ret;
        return 1;
    case IMAP_SEARCH_OR:
        for (size_t i = 0; i < n->n_sub; i++)
            if ((ret = eval(&n->sub[i], env, m)) != 0)
                return ret;
        return 0;
    default: /* NOT */
        ret = eval(&n->sub[0], env, m);
        return ret < 0 ? ret : !ret;
    }
}

/* Keys answered from the store's record alone; -1 for the others. */
static int
eval_info(const struct imap_search_key *k, const struct imap_search_env *env,
          const struct imap_search_msg *m)
{
    const struct mail_message_info *info = m->info;
    uint32_t flags = info->flags;
    switch (k->op) {
    case IMAP_SEARCH_ALL:
        return 1;
    case IMAP_SEARCH_ANSWERED:
        return (flags & MAIL_FLAG_ANSWERED) != 0;
    case IMAP_SEARCH_DELETED:
        return (flags & MAIL_FLAG_DELETED) != 0;
    case IMAP_SEARCH_DRAFT:
        return (flags & MAIL_FLAG_DRAFT) != 0;
    case IMAP_SEARCH_FLAGGED:
        return (flags & MAIL_FLAG_FLAGGED) != 0;
    case IMAP_SEARCH_SEEN:
        return (flags & MAIL_FLAG_SEEN) != 0;
    case IMAP_SEARCH_UNANSWERED:
        return !(flags & MAIL_FLAG_ANSWERED);
    case IMAP_SEARCH_UNDELETED:
        return !(flags & MAIL_FLAG_DELETED);
    case IMAP_SEARCH_UNDRAFT:
        return !(flags & MAIL_FLAG_DRAFT);
    case IMAP_SEARCH_UNFLAGGED:
        return !(flags & MAIL_FLAG_FLAGGED);
    case IMAP_SEARCH_UNSEEN:
        return !(flags & MAIL_FLAG_SEEN);
    case IMAP_SEARCH_RECENT:
        return m->recent;
    case IMAP_SEARCH_NEW: /* RFC 3501: RECENT UNSEEN */
        return m->recent && !(flags & MAIL_FLAG_SEEN);
    case IMAP_SEARCH_OLD: /* NOT RECENT */
        return !m->recent;
    case IMAP_SEARCH_KEYWORD:
        return has_keyword(info, k->value);
    case IMAP_SEARCH_UNKEYWORD:
        return !has_keyword(info, k->value);
    case IMAP_SEARCH_BEFORE:
    case IMAP_SEARCH_ON:
    case IMAP_SEARCH_SINCE:
        return day_matches(k->op, utc_day(info->internal_date), &k->date);
    case IMAP_SEARCH_LARGER:
        return info->size > k->number;
    case IMAP_SEARCH_SMALLER:
        return info->size < k->number;
    case IMAP_SEARCH_SEQSET:
        return in_set(&k->set, env, m->msn, env->max_msn, info->uid);
    case IMAP_SEARCH_UID:
        return in_set(&k->set, env, info->uid, env->max_uid, info->uid);
    case IMAP_SEARCH_MODSEQ:
        return info->modseq >= k->number;
    default:
        return -1;
    }
}

static int
eval(const struct node *n, const struct imap_search_env *env, struct imap_search_msg *m)
{
    const struct imap_search_key *k = &n->key;
    if (k->op == IMAP_SEARCH_AND || k->op == IMAP_SEARCH_OR || k->op == IMAP_SEARCH_NOT)
        return eval_logic(n, env, m);
    const char *field = header_field(k);
    if (field)
        return header_has(m, field, &n->needle);
    int day, ret;
    switch (k->op) {
    case IMAP_SEARCH_BODY:
        return body_has(m, &n->needle);
    case IMAP_SEARCH_TEXT:
        return text_has(m, &n->needle);
    case IMAP_SEARCH_SENTBEFORE:
    case IMAP_SEARCH_SENTON:
    case IMAP_SEARCH_SENTSINCE:
        if ((ret = sent_day(m, &day)) < 0)
            return ret;
        return day_matches(k->op, day, &k->date);
    default:
        ret = eval_info(k, env, m);
        /* The parser gives no other key: a new one must be taught here first. */
        TDM_ASSERT(ret >= 0);
        return ret;
    }
}

int
imap_search_match(const struct imap_search_prog *prog, const struct imap_search_env *env,
                  struct imap_search_msg *m)
{
    return eval(&prog->root, env, m);
}

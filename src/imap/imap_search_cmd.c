/*
 * SEARCH and UID SEARCH (imap_int.h), answered as "* SEARCH" (RFC 3501, RFC 9051) or, when
 * RETURN options are given, as "* ESEARCH" (RFC 4731), with RETURN (SAVE) keeping the result
 * for "$" (RFC 5182) and the MODSEQ key answering the highest MODSEQ found (RFC 7162 3.1.5).
 * What each key means is imap_search_eval.h's; this file runs the program over the selected
 * folder inside one read transaction and writes the answer.
 *
 * Untagged EXPUNGE is not sent during SEARCH, only during UID SEARCH (RFC 3501 7.4.1), so a
 * SEARCH's sequence numbers are the ones the client holds; a message expunged meanwhile
 * matches nothing.
 *
 * Cost: the whole folder is evaluated on the loop, one message at a time; a message is read
 * from the store only when a key needs its content, and parsed only as far as that key needs
 * (imap_search_eval.h).
 */
#include "imap/imap_int.h"
#include "imap/imap_search_eval.h"

#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- Before searching: what can be refused without reading the folder ---- */

/* CHARSET: search strings are matched as UTF-8, of which US-ASCII is a part. */
static bool
charset_accepted(struct imap_session *s, const struct imap_command *cmd)
{
    const char *cs = cmd->u.search.charset;
    if (!cs)
        return true;
    if (s->enabled & IMAP_ENABLED_UTF8) {
        /* RFC 6855 3: after ENABLE UTF8=ACCEPT the strings are UTF-8, so a charset conflicts. */
        imap__reply(s, cmd->tag, "BAD", NULL, "No CHARSET after ENABLE UTF8=ACCEPT");
        return false;
    }
    if (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "US-ASCII") == 0)
        return true;
    imap__reply(s, cmd->tag, "NO", "BADCHARSET (US-ASCII UTF-8)",
                "Search strings can be US-ASCII or UTF-8");
    return false;
}

/* Every sequence-set key names MSNs the client holds: one beyond EXISTS is answered BAD, as
 * for every other command (imap__resolve_set says how). */
static bool
msns_in_range(struct imap_session *s, const char *tag, const struct imap_search_key *k)
{
    if (k->op == IMAP_SEARCH_SEQSET && !k->set.saved) {
        struct imap_msg_ref *refs;
        size_t n;
        if (imap__resolve_set(s, tag, &k->set, false, &refs, &n) < 0)
            return false;
        free(refs);
    }
    for (size_t i = 0; i < k->n_sub; i++)
        if (!msns_in_range(s, tag, k->sub[i]))
            return false;
    return true;
}

/* ---- Running the program over the folder ---- */

struct hits {
    struct imap_msg_ref *refs; /* ascending MSN (and so UID), owned */
    size_t n, cap;
    uint64_t *modseqs; /* of each hit, kept only when the program has a MODSEQ key */
};

static void
hits_free(struct hits *h)
{
    free(h->refs);
    free(h->modseqs);
}

static int
hits_add(struct hits *h, uint32_t msn, uint32_t uid, uint64_t modseq, bool keep_modseq)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct imap_msg_ref *refs = realloc(h->refs, cap * sizeof(*refs));
        if (!refs)
            return -ENOMEM;
        h->refs = refs;
        if (keep_modseq) {
            uint64_t *m = realloc(h->modseqs, cap * sizeof(*m));
            if (!m)
                return -ENOMEM;
            h->modseqs = m;
        }
        h->cap = cap;
    }
    h->refs[h->n] = (struct imap_msg_ref){msn, uid};
    if (keep_modseq)
        h->modseqs[h->n] = modseq;
    h->n++;
    return 0;
}

/* Where a message's bytes come from when a key needs them: LMDB's map, zero-copy, valid
 * until the transaction ends. */
struct body_source {
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    const struct mail_message_info *info;
};

static int
load_body(void *ctx, const uint8_t **data_r, size_t *len_r)
{
    struct body_source *src = ctx;
    const void *data;
    int ret = mail_body_get(src->dbis, src->txn, src->info->body_hash, &data, len_r);
    if (ret != 0)
        return ret < 0 ? ret : -EIO; /* a message without its body: the store is damaged */
    *data_r = data;
    return 0;
}

/* Evaluates the program on every message of the view; 0, or a negative code. */
static int
run(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn,
    const struct imap_search_prog *prog, struct hits *h)
{
    uint32_t count = imap_view_count(s->view);
    struct imap_search_env env = {
        .max_msn = count,
        .max_uid = count ? imap_view_uid(s->view, count) : 0,
        .saved = s->saved_uids,
        .n_saved = s->n_saved,
    };
    bool keep_modseq = imap_search_prog_has_modseq(prog);
    for (uint32_t msn = 1; msn <= count; msn++) {
        if (imap_view_pending(s->view, msn))
            continue;
        uint32_t uid = imap_view_uid(s->view, msn);
        struct mail_message_info info;
        int ret = mail_message_get(dbis, txn, s->user, s->folder, uid, &info);
        if (ret == TDM_ENOTFOUND)
            continue; /* expunged since the view was synced: announced later */
        if (ret < 0)
            return ret;
        struct body_source src = {dbis, txn, &info};
        struct imap_search_msg m;
        imap_search_msg_init(&m, msn, &info, imap__is_recent(s, uid), load_body, &src);
        ret = imap_search_match(prog, &env, &m);
        imap_search_msg_clear(&m);
        if (ret > 0)
            ret = hits_add(h, msn, uid, info.modseq, keep_modseq);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* ---- Answers ---- */

static uint64_t
highest_modseq(const struct hits *h)
{
    uint64_t top = 0;
    for (size_t i = 0; i < h->n; i++)
        if (h->modseqs[i] > top)
            top = h->modseqs[i];
    return top;
}

/* "* SEARCH n..." [(MODSEQ m)]: the highest MODSEQ of the matches, none when nothing matched. */
static void
answer_search(struct imap_session *s, bool uid, const struct hits *h, bool modseq)
{
    struct imap_buf *b = &s->out;
    imap_buf_puts(b, "* SEARCH");
    for (size_t i = 0; i < h->n; i++)
        imap_buf_printf(b, " %" PRIu32, uid ? h->refs[i].uid : h->refs[i].msn);
    if (modseq && h->n)
        imap_buf_printf(b, " (MODSEQ %" PRIu64 ")", highest_modseq(h));
    imap_buf_puts(b, "\r\n");
}

/*
 * Which hits the RETURN options answer for: with ALL or COUNT (or SAVE alone) every hit; with
 * only MIN and/or MAX, the one or two messages they name. RFC 5182 2.1 saves, and RFC 4731 3.2
 * takes the MODSEQ of, exactly those messages.
 */
static bool
only_min_max(unsigned returns)
{
    return (returns & (IMAP_SEARCH_RETURN_MIN | IMAP_SEARCH_RETURN_MAX)) &&
           !(returns & (IMAP_SEARCH_RETURN_ALL | IMAP_SEARCH_RETURN_COUNT));
}

/* Whether hit i is among those the RETURN options answer for. */
static bool
returned(unsigned returns, const struct hits *h, size_t i)
{
    if (!only_min_max(returns))
        return true;
    return ((returns & IMAP_SEARCH_RETURN_MIN) && i == 0) ||
           ((returns & IMAP_SEARCH_RETURN_MAX) && i == h->n - 1);
}

static int
answer_esearch(struct imap_session *s, const struct imap_command *cmd, const struct hits *h,
               bool modseq)
{
    unsigned returns = cmd->u.search.returns;
    uint32_t *ids = h->n ? malloc(h->n * sizeof(*ids)) : NULL;
    if (h->n && !ids)
        return -ENOMEM;
    uint64_t top = 0;
    for (size_t i = 0; i < h->n; i++) {
        ids[i] = cmd->uid ? h->refs[i].uid : h->refs[i].msn;
        if (modseq && returned(returns, h, i) && h->modseqs[i] > top)
            top = h->modseqs[i];
    }
    imap_write_esearch(&s->out, cmd->tag, cmd->uid, returns, ids, h->n, top);
    free(ids);
    return 0;
}

/* RETURN (SAVE): "$" becomes the UIDs the RETURN options answer for (RFC 5182 2.1), replacing
 * what it held even when nothing matched. */
static int
save_result(struct imap_session *s, unsigned returns, const struct hits *h)
{
    uint32_t *uids = h->n ? malloc(h->n * sizeof(*uids)) : NULL;
    if (h->n && !uids)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < h->n; i++)
        if (returned(returns, h, i))
            uids[n++] = h->refs[i].uid;
    imap__forget_saved(s);
    s->saved_uids = uids;
    s->n_saved = n;
    return 0;
}

/* RFC 7162 3.1: a SEARCH with the MODSEQ key makes the session CONDSTORE-aware (every later
 * untagged FETCH carries MODSEQ). SELECT already told the client HIGHESTMODSEQ: every folder
 * has MODSEQs here. */
static void
enable_condstore(struct imap_session *s)
{
    s->enabled |= IMAP_ENABLED_CONDSTORE;
}

static void
answer(struct imap_session *s, const struct imap_command *cmd, const struct hits *h, bool modseq)
{
    unsigned returns = cmd->u.search.returns;
    int ret = 0;
    if (modseq)
        enable_condstore(s);
    if (!cmd->u.search.esearch)
        answer_search(s, cmd->uid, h, modseq);
    else if (returns & ~(unsigned)IMAP_SEARCH_RETURN_SAVE)
        ret = answer_esearch(s, cmd, h, modseq);
    /* RETURN (SAVE) alone answers nothing but the tagged OK (RFC 5182 2.1). */
    if (ret == 0 && (returns & IMAP_SEARCH_RETURN_SAVE))
        ret = save_result(s, returns, h);
    if (ret < 0) {
        imap__forget_saved(s);
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    imap__reply(s, cmd->tag, "OK", NULL, cmd->uid ? "UID SEARCH completed" : "SEARCH completed");
}

/* Runs the program in one read transaction and answers; false (after answering NO) when the
 * folder could not be read. */
static bool
search(struct imap_session *s, const struct imap_command *cmd, const struct imap_search_prog *prog)
{
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0) {
        imap__reply(s, cmd->tag, "NO", "UNAVAILABLE", "Your mailbox is not available now");
        return false;
    }
    struct hits h = {0};
    int ret = run(s, store_reader_mail_dbis(r), txn, prog, &h);
    if (ret == 0)
        answer(s, cmd, &h, imap_search_prog_has_modseq(prog));
    mdb_txn_abort(txn);
    hits_free(&h);
    if (ret == -ENOMEM) {
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return false;
    }
    if (ret < 0) {
        log_error("imap: %s: SEARCH in %s could not read a message: %s", s->user, s->folder,
                  tdm_strerror(ret));
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "A message could not be read");
        return false;
    }
    return true;
}

void
imap__cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
    /* RFC 5182 2.1: a SEARCH that was to save its result and fails leaves "$" empty. */
    bool saves = cmd->u.search.returns & IMAP_SEARCH_RETURN_SAVE;
    if (!charset_accepted(s, cmd)) {
        if (saves)
            imap__forget_saved(s);
        return;
    }
    /* New mail and flag changes first; expunges only for UID SEARCH (RFC 3501 7.4.1). */
    imap__sync(s, cmd->uid);
    if (s->state == IMAP_STATE_LOGOUT)
        return;
    struct imap_search_prog *prog = NULL;
    bool ok = msns_in_range(s, cmd->tag, cmd->u.search.key);
    if (ok && imap_search_prog_new(cmd->u.search.key, &prog) < 0) {
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        ok = false;
    }
    if (ok)
        ok = search(s, cmd, prog);
    imap_search_prog_free(&prog);
    if (!ok && saves)
        imap__forget_saved(s);
}

/*
 * SEARCH and UID SEARCH (imap_int.h), answered as "* SEARCH" (RFC 3501) or, when RETURN
 * options are given or IMAP4rev2 is on, as "* ESEARCH" (RFC 4731, RFC 9051), with RETURN
 * (SAVE) keeping the result for "$" (RFC 5182) and the MODSEQ key answering the highest MODSEQ
 * found (RFC 7162 3.1.5). What each key means is imap_search_eval.h's; this file runs the
 * program over the selected folder and writes the answer.
 *
 * Untagged EXPUNGE is not sent during SEARCH, only during UID SEARCH (RFC 3501 7.4.1), so a
 * SEARCH's sequence numbers are the ones the client holds; a message expunged meanwhile
 * matches nothing.
 *
 * Cost: a message is read from the store only when a key needs its content, and parsed only
 * as far as that key needs (imap_search_eval.h). A body search over a large folder still takes
 * long (about 1 s for 2000 messages of 54 MB, docs/imap.md), so the folder is searched in
 * slices of SLICE_NS on the loop, other sessions served between them, each slice in its own
 * read transaction (no reader held for long). Meanwhile the session waits (s->waiting):
 * nothing else it sent is read, so its view and "$" stay as they were when the search began;
 * a message expunged by another session between slices matches nothing.
 */
#include "imap/imap_int.h"
#include "imap/imap_search_eval.h"

#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Whether k uses RECENT, NEW or OLD: keys on \Recent, which IMAP4rev2 removed (RFC 9051
 * appendix E; its search-key grammar has none of them). */
static bool
uses_recent(const struct imap_search_key *k)
{
    if (k->op == IMAP_SEARCH_RECENT || k->op == IMAP_SEARCH_NEW || k->op == IMAP_SEARCH_OLD)
        return true;
    for (size_t i = 0; i < k->n_sub; i++)
        if (uses_recent(k->sub[i]))
            return true;
    return false;
}

/* Evaluation time per slice before other sessions get a turn. */
#define SLICE_NS (20 * 1000 * 1000)

/* ---- The matches ---- */

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

/* ---- A search in progress ---- */

/* One SEARCH being run: what the command asked, where the next slice starts, what matched so
 * far. Owned by itself while in flight, listed on the server's searches (so a shutdown can
 * end it); the session's tag is in s->tag. */
struct imap_search {
    struct imap_search *prev, *next; /* the server's searches in flight */
    struct imap_session *s;
    struct imap_search_prog *prog; /* owned */
    bool uid, esearch;
    unsigned returns;
    uint32_t next_msn;   /* the next message to evaluate */
    bool expunge_issued; /* messages another session expunged were not evaluated */
    struct hits hits;
    struct event *resume; /* the next slice, owned; NULL until the search must wait */
};

static void
search_free(struct imap_search **p)
{
    struct imap_search *q = *p;
    if (!q)
        return;
    if (q->resume)
        event_free(q->resume);
    imap_search_prog_free(&q->prog);
    hits_free(&q->hits);
    free(q);
    *p = NULL;
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

/* Evaluates the program on message msn; records it when it matches. 0 or a negative code. */
static int
evaluate(struct imap_search *q, const struct imap_search_env *env, const struct mail_dbis *dbis,
         MDB_txn *txn, uint32_t msn)
{
    struct imap_session *s = q->s;
    if (imap_view_pending(s->view, msn)) {
        q->expunge_issued = true;
        return 0;
    }
    uint32_t uid = imap_view_uid(s->view, msn);
    struct mail_message_info info;
    int ret = mail_message_get(dbis, txn, s->user, s->folder, uid, &info);
    if (ret == TDM_ENOTFOUND) {
        q->expunge_issued = true; /* expunged since the view was synced: announced later */
        return 0;
    }
    if (ret < 0)
        return ret;
    struct body_source src = {dbis, txn, &info};
    struct imap_search_msg m;
    imap_search_msg_init(&m, msn, &info, imap__is_recent(s, uid), load_body, &src);
    ret = imap_search_match(q->prog, env, &m);
    imap_search_msg_clear(&m);
    if (ret > 0)
        ret = hits_add(&q->hits, msn, uid, info.modseq, imap_search_prog_has_modseq(q->prog));
    return ret;
}

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Evaluates messages from q->next_msn on, in one read transaction, for about SLICE_NS.
 * Returns 1 when the folder is done, 0 when more is left, or a negative code (TDM_ENOTFOUND:
 * the mailbox cannot be read now). */
static int
slice(struct imap_search *q)
{
    struct imap_session *s = q->s;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return TDM_ENOTFOUND;
    uint32_t count = imap_view_count(s->view);
    struct imap_search_env env = {
        .max_msn = count,
        .max_uid = count ? imap_view_uid(s->view, count) : 0,
        .saved = s->saved_uids,
        .n_saved = s->n_saved,
    };
    int64_t until = now_ns() + SLICE_NS;
    int ret = 0;
    while (ret == 0 && q->next_msn <= count) {
        ret = evaluate(q, &env, store_reader_mail_dbis(r), txn, q->next_msn++);
        if (ret == 0 && now_ns() > until)
            break;
    }
    mdb_txn_abort(txn);
    return ret < 0 ? ret : q->next_msn > count;
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
answer_search(struct imap_session *s, const struct imap_search *q, bool modseq)
{
    const struct hits *h = &q->hits;
    struct imap_buf *b = &s->out;
    imap_buf_puts(b, "* SEARCH");
    for (size_t i = 0; i < h->n; i++)
        imap_buf_printf(b, " %" PRIu32, q->uid ? h->refs[i].uid : h->refs[i].msn);
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
answer_esearch(struct imap_session *s, const struct imap_search *q, bool modseq)
{
    const struct hits *h = &q->hits;
    uint32_t *ids = h->n ? malloc(h->n * sizeof(*ids)) : NULL;
    if (h->n && !ids)
        return -ENOMEM;
    uint64_t top = 0;
    for (size_t i = 0; i < h->n; i++) {
        ids[i] = q->uid ? h->refs[i].uid : h->refs[i].msn;
        if (modseq && returned(q->returns, h, i) && h->modseqs[i] > top)
            top = h->modseqs[i];
    }
    imap_write_esearch(&s->out, s->tag, q->uid, q->returns, ids, h->n, top);
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

/* A search that failed: NO, and "$" left empty when it was to be replaced (RFC 5182 2.1). */
static void
answer_failure(struct imap_session *s, const struct imap_search *q, int status)
{
    if (q->returns & IMAP_SEARCH_RETURN_SAVE)
        imap__forget_saved(s);
    if (status == -ENOMEM) {
        imap__reply(s, s->tag, "NO", "SERVERBUG", "Out of memory");
    } else if (status == TDM_ENOTFOUND) {
        imap__reply(s, s->tag, "NO", "UNAVAILABLE", "Your mailbox is not available now");
    } else {
        log_error("imap: %s: SEARCH in %s could not read a message: %s", s->user, s->folder,
                  tdm_strerror(status));
        imap__reply(s, s->tag, "NO", "SERVERBUG", "A message could not be read");
    }
}

/* The answer of a search that ran to its end (status 1) or failed (negative). */
static void
answer(struct imap_session *s, const struct imap_search *q, int status)
{
    if (status < 0) {
        answer_failure(s, q, status);
        return;
    }
    bool modseq = imap_search_prog_has_modseq(q->prog);
    /* RFC 7162 3.1: the MODSEQ key makes the session CONDSTORE-aware (every later untagged
     * FETCH carries MODSEQ). SELECT has told HIGHESTMODSEQ already: every folder has one. */
    if (modseq)
        s->enabled |= IMAP_ENABLED_CONDSTORE;
    int ret = 0;
    if (!q->esearch)
        answer_search(s, q, modseq);
    else if (q->returns & ~(unsigned)IMAP_SEARCH_RETURN_SAVE)
        ret = answer_esearch(s, q, modseq);
    /* RETURN (SAVE) alone answers nothing but the tagged OK (RFC 5182 2.1). */
    if (ret == 0 && (q->returns & IMAP_SEARCH_RETURN_SAVE))
        ret = save_result(s, q->returns, &q->hits);
    if (ret < 0)
        answer_failure(s, q, ret);
    else
        /* As FETCH and STORE (RFC 9051 7.1): the messages another session expunged, not told
         * during SEARCH (RFC 3501 7.4.1), were left out of the result; a NOOP tells them. */
        imap__reply(s, s->tag, "OK", q->expunge_issued ? "EXPUNGEISSUED" : NULL,
                    q->uid ? "UID SEARCH completed" : "SEARCH completed");
}

/* ---- Slices on the loop ---- */

static void
unlist(struct imap_search *q)
{
    struct imap_server *srv = q->s->srv;
    if (q->prev)
        q->prev->next = q->next;
    else
        srv->searches = q->next;
    if (q->next)
        q->next->prev = q->prev;
}

/* The search no longer holds the session: off the server's list, freed, and the session
 * reads again (the caller then lets it go with imap__release()). */
static void
detach(struct imap_search *q)
{
    struct imap_session *s = q->s;
    unlist(q);
    search_free(&q);
    s->waiting--;
}

static void
next_slice(evutil_socket_t fd, short what, void *ctx)
{
    (void)fd;
    (void)what;
    struct imap_search *q = ctx;
    struct imap_session *s = q->s;
    if (!s->conn) { /* the client left: nobody to answer */
        detach(q);
        imap__release(s);
        return;
    }
    int ret = slice(q);
    if (ret == 0) {
        static const struct timeval now = {0, 0};
        evtimer_add(q->resume, &now);
        return;
    }
    s->busy++;
    answer(s, q, ret);
    detach(q);
    imap__resume(s); /* what the client pipelined meanwhile */
    s->busy--;
    imap__release(s);
}

/* Runs the first slice at once: a small folder is answered without a turn of the loop. What
 * is left runs in later slices while the session waits. Takes q. */
static void
start(struct imap_session *s, struct imap_search *q)
{
    int ret = slice(q);
    if (ret == 0) {
        /* A zero timer, not event_active(): the loop polls sockets before it runs timers, so
         * every other session gets its turn between two slices. */
        q->resume = evtimer_new(s->srv->base, next_slice, q);
        if (q->resume) {
            static const struct timeval now = {0, 0};
            evtimer_add(q->resume, &now);
            q->next = s->srv->searches;
            if (q->next)
                q->next->prev = q;
            s->srv->searches = q;
            s->waiting++;
            return;
        }
        ret = -ENOMEM;
    }
    answer(s, q, ret);
    search_free(&q);
}

void
imap__searches_end(struct imap_server *srv)
{
    while (srv->searches) {
        struct imap_session *s = srv->searches->s;
        detach(srv->searches);
        imap__release(s);
    }
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
    if ((s->enabled & IMAP_ENABLED_REV2) && uses_recent(cmd->u.search.key)) {
        if (saves)
            imap__forget_saved(s);
        imap__reply(s, cmd->tag, "BAD", NULL, "RECENT, NEW and OLD are not part of IMAP4rev2");
        return;
    }
    /* New mail and flag changes first; expunges only for UID SEARCH (RFC 3501 7.4.1). */
    imap__sync(s, cmd->uid);
    if (s->state == IMAP_STATE_LOGOUT)
        return;
    if (!msns_in_range(s, cmd->tag, cmd->u.search.key)) {
        if (saves)
            imap__forget_saved(s);
        return;
    }
    struct imap_search *q = calloc(1, sizeof(*q));
    if (!q || imap_search_prog_new(cmd->u.search.key, &q->prog) < 0) {
        free(q);
        if (saves)
            imap__forget_saved(s);
        imap__reply(s, cmd->tag, "NO", "SERVERBUG", "Out of memory");
        return;
    }
    q->s = s;
    q->uid = cmd->uid;
    q->esearch = cmd->u.search.esearch;
    q->returns = cmd->u.search.returns;
    if (!q->esearch && (s->enabled & IMAP_ENABLED_REV2)) {
        /* RFC 9051 6.4.4 and appendix E: IMAP4rev2 has no "* SEARCH"; without RETURN a
         * search answers as RETURN (ALL). */
        q->esearch = true;
        q->returns = IMAP_SEARCH_RETURN_ALL;
    }
    q->next_msn = 1;
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    start(s, q);
}

/*
 * Message sets (imap_int.h): a command's sequence set, by MSN or by UID, or "$" (the result
 * SEARCH saved, RFC 5182), turned into the messages of the session's view it names, in
 * ascending order. Every command that acts on messages (FETCH, STORE, COPY, MOVE, UID
 * EXPUNGE, SEARCH's UID and sequence keys) goes through here, so "*", reversed ranges, MSNs
 * out of range and messages pending an expunge announcement are treated the same everywhere.
 */
#include "imap/imap_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void
bounds(const struct imap_seq_range *r, uint32_t star, uint32_t *lo_r, uint32_t *hi_r)
{
    uint32_t lo = r->lo == IMAP_SEQ_STAR ? star : r->lo;
    uint32_t hi = r->hi == IMAP_SEQ_STAR ? star : r->hi;
    *lo_r = lo < hi ? lo : hi;
    *hi_r = lo < hi ? hi : lo;
}

bool
imap__set_contains(const struct imap_seqset *set, uint32_t n, uint32_t star)
{
    for (size_t i = 0; i < set->n; i++) {
        uint32_t lo, hi;
        bounds(&set->r[i], star, &lo, &hi);
        if (n >= lo && n <= hi)
            return true;
    }
    return false;
}

static bool
saved_contains(const struct imap_session *s, uint32_t uid)
{
    size_t lo = 0, hi = s->n_saved;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->saved_uids[mid] == uid)
            return true;
        if (s->saved_uids[mid] < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int
imap__resolve_set(struct imap_session *s, const char *tag, const struct imap_seqset *set,
                  bool by_uid, struct imap_msg_ref **refs_r, size_t *n_r)
{
    *refs_r = NULL;
    *n_r = 0;
    uint32_t count = imap_view_count(s->view);
    if (!set->saved && !by_uid) {
        /* RFC 3501 6.4.8 / 9051 7.1: an MSN beyond EXISTS is an error; "*" in an empty
         * folder names nothing there is. */
        for (size_t i = 0; i < set->n; i++) {
            const struct imap_seq_range *r = &set->r[i];
            bool star = r->lo == IMAP_SEQ_STAR || r->hi == IMAP_SEQ_STAR;
            if ((star && count == 0) || (r->lo != IMAP_SEQ_STAR && r->lo > count) ||
                (r->hi != IMAP_SEQ_STAR && r->hi > count)) {
                imap__reply(s, tag, "BAD", NULL,
                            count ? "Message sequence number out of range"
                                  : "No messages: there is no sequence number");
                return -ERANGE;
            }
        }
    }
    uint32_t star = by_uid ? (count ? imap_view_uid(s->view, count) : 0) : count;
    struct imap_msg_ref *refs = NULL;
    size_t n = 0, cap = 0;
    bool pending = false;
    for (uint32_t msn = 1; msn <= count; msn++) {
        uint32_t uid = imap_view_uid(s->view, msn);
        bool hit = set->saved ? saved_contains(s, uid)
                              : imap__set_contains(set, by_uid ? uid : msn, star);
        if (!hit)
            continue;
        if (imap_view_pending(s->view, msn)) {
            pending = true; /* expunged by another session, not announced yet */
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *p = realloc(refs, ncap * sizeof(*refs));
            if (!p) {
                free(refs);
                imap__reply(s, tag, "NO", "SERVERBUG", "Out of memory");
                return -ENOMEM;
            }
            refs = p;
            cap = ncap;
        }
        refs[n].msn = msn;
        refs[n].uid = uid;
        n++;
    }
    *refs_r = refs;
    *n_r = n;
    return pending ? 1 : 0;
}

void
imap__forget_saved(struct imap_session *s)
{
    free(s->saved_uids);
    s->saved_uids = NULL;
    s->n_saved = 0;
}

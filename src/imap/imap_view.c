/*
 * The selected folder's view (imap_view.h). The map is an array of slots in UID order (MSN =
 * index + 1), each a UID and a pending-expunge mark. A sync computes the next map completely
 * before it reports anything, so that a failed allocation or a callback that stops leaves the
 * view as it was and the same changes are reported again next time.
 */
#include "imap/imap_view.h"

#include "lib/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint32_t uid;
    bool pending; /* expunged in the database, not yet announced */
};

struct imap_view {
    char *mailbox, *folder;
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t modseq; /* HIGHESTMODSEQ the view is synced to */
    struct slot *slots;
    uint32_t n, cap;
    uint32_t n_pending;
};

/* ---- Slots ---- */

static int
slots_reserve(struct slot **slots, uint32_t *cap, uint64_t want)
{
    if (want <= *cap)
        return 0;
    if (want > UINT32_MAX)
        return TDM_ELIMIT;
    uint64_t c = *cap ? *cap : 64;
    while (c < want)
        c *= 2;
    if (c > UINT32_MAX)
        c = UINT32_MAX;
    struct slot *grown = realloc(*slots, c * sizeof(**slots));
    if (!grown)
        return -ENOMEM;
    *slots = grown;
    *cap = (uint32_t)c;
    return 0;
}

/* Index of uid in slots[0..n), or -1. */
static int64_t
slot_find(const struct slot *slots, uint32_t n, uint32_t uid)
{
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (slots[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && slots[lo].uid == uid ? (int64_t)lo : -1;
}

/* ---- Open ---- */

static int
collect_uid(void *ctx, const struct mail_message_info *info)
{
    struct imap_view *v = ctx;
    int ret = slots_reserve(&v->slots, &v->cap, (uint64_t)v->n + 1);
    if (ret < 0)
        return ret;
    v->slots[v->n++] = (struct slot){.uid = info->uid};
    return 0;
}

int
imap_view_open(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
               const char *folder, struct imap_view **view_r)
{
    struct mail_folder_info info;
    int ret = mail_folder_get(dbis, txn, mailbox, folder, &info);
    if (ret != 0)
        return ret;
    struct imap_view *v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->mailbox = strdup(mailbox);
    v->folder = strdup(folder);
    v->uidvalidity = info.uidvalidity;
    v->uidnext = info.uidnext;
    v->modseq = info.highestmodseq;
    if (!v->mailbox || !v->folder)
        ret = -ENOMEM;
    else
        ret = mail_message_list(dbis, txn, mailbox, folder, collect_uid, v);
    if (ret != 0) {
        imap_view_free(&v);
        return ret;
    }
    *view_r = v;
    return 0;
}

int
imap_view_rename(struct imap_view *view, const char *folder)
{
    char *name = strdup(folder);
    if (!name)
        return -ENOMEM;
    free(view->folder);
    view->folder = name;
    return 0;
}

void
imap_view_free(struct imap_view **view)
{
    struct imap_view *v = *view;
    if (!v)
        return;
    free(v->mailbox);
    free(v->folder);
    free(v->slots);
    free(v);
    *view = NULL;
}

/* ---- Queries ---- */

uint32_t
imap_view_count(const struct imap_view *v)
{
    return v->n;
}

uint32_t
imap_view_uid(const struct imap_view *v, uint32_t msn)
{
    return msn >= 1 && msn <= v->n ? v->slots[msn - 1].uid : 0;
}

uint32_t
imap_view_msn(const struct imap_view *v, uint32_t uid)
{
    int64_t i = slot_find(v->slots, v->n, uid);
    return i < 0 ? 0 : (uint32_t)i + 1;
}

bool
imap_view_pending(const struct imap_view *v, uint32_t msn)
{
    return msn >= 1 && msn <= v->n && v->slots[msn - 1].pending;
}

uint32_t
imap_view_uidvalidity(const struct imap_view *v)
{
    return v->uidvalidity;
}

uint32_t
imap_view_uidnext(const struct imap_view *v)
{
    return v->uidnext;
}

uint64_t
imap_view_highestmodseq(const struct imap_view *v)
{
    return v->modseq;
}

void
imap_view_own_changes(struct imap_view *v, uint64_t from, uint64_t to)
{
    if (v->modseq == from && to > from)
        v->modseq = to;
}

/* ---- Sync ---- */

struct change_list {
    struct mail_change *items;
    size_t n, cap;
};

static int
collect_change(void *ctx, const struct mail_change *ch)
{
    struct change_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct mail_change *grown = realloc(l->items, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = *ch;
    return 0;
}

static int
uid_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The next state, built completely before anything is reported. */
struct plan {
    struct slot *slots; /* the map after this sync */
    uint32_t n, cap;
    uint32_t n_pending;
    uint32_t *expunged_msn; /* MSNs (in the old map) announced now, descending */
    uint32_t *expunged_uid;
    uint32_t n_expunged;
    bool new_messages;
    struct mail_change *changed; /* present messages whose flags changed; uid, modseq */
    size_t n_changed;
};

static void
plan_free(struct plan *p)
{
    free(p->slots);
    free(p->expunged_msn);
    free(p->expunged_uid);
    free(p->changed);
}

static int
plan_build(const struct imap_view *v, const struct change_list *cl, bool allow_expunge,
           struct plan *p)
{
    /* Start from the current map, marking new expunges; new UIDs are gathered apart. */
    struct slot *marked = v->n ? malloc(v->n * sizeof(*marked)) : NULL;
    uint32_t *fresh = cl->n ? malloc(cl->n * sizeof(*fresh)) : NULL;
    p->changed = cl->n ? malloc(cl->n * sizeof(*p->changed)) : NULL;
    if ((v->n && !marked) || (cl->n && (!fresh || !p->changed))) {
        free(marked);
        free(fresh);
        return -ENOMEM;
    }
    if (v->n)
        memcpy(marked, v->slots, v->n * sizeof(*marked));
    uint32_t n_pending = v->n_pending, n_fresh = 0;
    for (size_t i = 0; i < cl->n; i++) {
        const struct mail_change *ch = &cl->items[i];
        if (ch->uid >= v->uidnext) {
            /* Arrived after the view's last sync; one expunged since never existed for the
             * client. */
            if (!ch->expunged)
                fresh[n_fresh++] = ch->uid;
            continue;
        }
        int64_t at = slot_find(marked, v->n, ch->uid);
        if (at < 0 || marked[at].pending)
            continue; /* not the client's to hear about */
        if (ch->expunged) {
            marked[at].pending = true;
            n_pending++;
        } else {
            p->changed[p->n_changed++] = *ch;
        }
    }
    /* Arrivals come in MODSEQ order, which a later flag change can make differ from UID
     * order; the map must stay in UID order. */
    if (n_fresh > 1)
        qsort(fresh, n_fresh, sizeof(*fresh), uid_cmp);
    p->new_messages = n_fresh > 0;

    uint32_t announce = allow_expunge ? n_pending : 0;
    uint64_t total = (uint64_t)v->n - announce + n_fresh;
    int ret = slots_reserve(&p->slots, &p->cap, total ? total : 1);
    if (ret == 0 && announce) {
        p->expunged_msn = malloc(announce * sizeof(uint32_t));
        p->expunged_uid = malloc(announce * sizeof(uint32_t));
        if (!p->expunged_msn || !p->expunged_uid)
            ret = -ENOMEM;
    }
    if (ret < 0) {
        free(marked);
        free(fresh);
        return ret;
    }
    for (uint32_t i = v->n; i-- > 0;)
        if (announce && marked[i].pending) {
            p->expunged_msn[p->n_expunged] = i + 1;
            p->expunged_uid[p->n_expunged++] = marked[i].uid;
        }
    for (uint32_t i = 0; i < v->n; i++)
        if (!(announce && marked[i].pending))
            p->slots[p->n++] = marked[i];
    for (uint32_t i = 0; i < n_fresh; i++)
        p->slots[p->n++] = (struct slot){.uid = fresh[i]};
    p->n_pending = announce ? 0 : n_pending;
    free(marked);
    free(fresh);
    return 0;
}

int
imap_view_sync(struct imap_view *v, const struct mail_dbis *dbis, MDB_txn *txn,
               bool allow_expunge, const struct imap_view_events *events, void *ctx)
{
    struct mail_folder_info info;
    int ret = mail_folder_get(dbis, txn, v->mailbox, v->folder, &info);
    if (ret != 0)
        return ret;
    if (info.uidvalidity != v->uidvalidity)
        return TDM_ENOTFOUND; /* deleted and re-created: not the folder the client selected */
    if (info.highestmodseq == v->modseq && !(allow_expunge && v->n_pending))
        return 0;

    struct change_list cl = {0};
    ret = mail_folder_changes(dbis, txn, v->mailbox, v->folder, v->modseq, collect_change, &cl);
    struct plan p = {0};
    if (ret == 0)
        ret = plan_build(v, &cl, allow_expunge, &p);
    free(cl.items);
    if (ret != 0) {
        plan_free(&p);
        return ret;
    }

    for (uint32_t i = 0; i < p.n_expunged && ret == 0; i++)
        if (events->expunged)
            ret = events->expunged(ctx, p.expunged_msn[i], p.expunged_uid[i]);
    /* EXISTS announces arrivals; after EXPUNGEs the client has already counted down. */
    if (ret == 0 && events->exists && p.new_messages)
        ret = events->exists(ctx, p.n);
    for (size_t i = 0; i < p.n_changed && ret == 0; i++) {
        if (!events->changed)
            break;
        int64_t at = slot_find(p.slots, p.n, p.changed[i].uid);
        if (at >= 0)
            ret = events->changed(ctx, (uint32_t)at + 1, p.changed[i].uid, p.changed[i].modseq);
    }
    if (ret != 0) {
        plan_free(&p);
        return ret;
    }
    free(v->slots);
    v->slots = p.slots;
    v->n = p.n;
    v->cap = p.cap;
    v->n_pending = p.n_pending;
    v->uidnext = info.uidnext;
    v->modseq = info.highestmodseq;
    p.slots = NULL;
    plan_free(&p);
    return 0;
}

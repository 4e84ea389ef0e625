/*
 * Which sessions watch which folder, and the core's CHANGED routed to them (imap_int.h).
 *
 * A worker has one link to the core, and many sessions may select one folder. The registry
 * keeps one entry per watched (database, mailbox, folder), with the list of its sessions, and
 * holds one core subscription per entry: SUBSCRIBE with the first watcher, UNSUBSCRIBE with the
 * last. A CHANGED for an entry marks each of its sessions due; the due sessions are told
 * (imap__idle_changed) from a zero-delay timer, so a burst of CHANGED read together (a
 * delivery of many messages, a large STORE) costs each session one look, not one per message,
 * and all of them look at one snapshot (imap__burst_begin), not one each.
 * FOLDER_CHANGED (the folder was deleted or renamed) marks them due the same way: looking at
 * the folder is how a session finds it gone (BYE) or under its new name (imap__sync).
 * A session reads its folder before the core holds the subscription, so the core answers
 * each SUBSCRIBE with a CHANGED once it is in place, and the session looks again (a commit
 * in between would otherwise be announced to nobody). The same covers a link that comes back
 * after the core was away: the link sends every subscription again, and each brings a CHANGED
 * for whatever was committed meanwhile.
 *
 * Memory: a session costs one struct imap_watcher while selected; entries are shared.
 */
#include "imap/imap_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WATCH_MIN_BUCKETS 64u

/* One watched folder. */
struct watched_folder {
    struct watched_folder *next; /* hash chain */
    uint32_t hash;
    struct imap_watcher *watchers;
    char *database, *mailbox, *folder; /* the key, owned (one allocation from database) */
};

/* One session's registration, owned by the session (s->watcher). */
struct imap_watcher {
    struct imap_session *s;
    struct watched_folder *folder;
    struct imap_watcher *prev, *next;         /* the folder's watchers */
    struct imap_watcher *due_prev, *due_next; /* the due list, when due */
    bool due;
};

struct imap_watches {
    struct imap_server *srv;
    struct watched_folder **buckets;
    size_t n_buckets, n_folders;
    struct imap_watcher *due; /* to be told at the next turn of the loop */
    struct event *due_ev;
};

/* ---- The table ---- */

static uint32_t
key_hash(const char *database, const char *mailbox, const char *folder)
{
    uint32_t h = 2166136261u; /* FNV-1a; the NULs keep ("ab","c") apart from ("a","bc") */
    const char *parts[] = {database, mailbox, folder};
    for (size_t i = 0; i < 3; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++)
            h = (h ^ *p) * 16777619u;
        h *= 16777619u;
    }
    return h;
}

static struct watched_folder **
folder_slot(struct imap_watches *w, uint32_t hash, const char *database, const char *mailbox,
            const char *folder)
{
    struct watched_folder **pp = &w->buckets[hash % w->n_buckets];
    while (*pp && ((*pp)->hash != hash || strcmp((*pp)->database, database) != 0 ||
                   strcmp((*pp)->mailbox, mailbox) != 0 || strcmp((*pp)->folder, folder) != 0))
        pp = &(*pp)->next;
    return pp;
}

/* Doubles the buckets when entries outnumber them; on allocation failure chains just grow. */
static void
maybe_grow(struct imap_watches *w)
{
    if (w->n_folders < w->n_buckets)
        return;
    size_t n = w->n_buckets * 2;
    struct watched_folder **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < w->n_buckets; i++)
        while (w->buckets[i]) {
            struct watched_folder *f = w->buckets[i];
            w->buckets[i] = f->next;
            f->next = b[f->hash % n];
            b[f->hash % n] = f;
        }
    free(w->buckets);
    w->buckets = b;
    w->n_buckets = n;
}

static struct watched_folder *
folder_new(uint32_t hash, const char *database, const char *mailbox, const char *folder)
{
    size_t ld = strlen(database) + 1, lm = strlen(mailbox) + 1, lf = strlen(folder) + 1;
    struct watched_folder *f = calloc(1, sizeof(*f));
    char *key = malloc(ld + lm + lf);
    if (!f || !key) {
        free(f);
        free(key);
        return NULL;
    }
    f->hash = hash;
    f->database = memcpy(key, database, ld);
    f->mailbox = memcpy(key + ld, mailbox, lm);
    f->folder = memcpy(key + ld + lm, folder, lf);
    return f;
}

static void
folder_free(struct watched_folder *f)
{
    free(f->database);
    free(f);
}

/* ---- Due sessions ---- */

static void
due_remove(struct imap_watches *w, struct imap_watcher *x)
{
    if (!x->due)
        return;
    if (x->due_prev)
        x->due_prev->due_next = x->due_next;
    else
        w->due = x->due_next;
    if (x->due_next)
        x->due_next->due_prev = x->due_prev;
    x->due_prev = x->due_next = NULL;
    x->due = false;
}

static void
due_add(struct imap_watches *w, struct imap_watcher *x)
{
    if (x->due)
        return;
    x->due = true;
    x->due_prev = NULL;
    x->due_next = w->due;
    if (w->due)
        w->due->due_prev = x;
    w->due = x;
    if (!evtimer_pending(w->due_ev, NULL)) { /* once for a burst, not once per session */
        static const struct timeval now = {0, 0};
        evtimer_add(w->due_ev, &now);
    }
}

/* The timer: tells each due session. Taken one at a time from the head, because telling one
 * may end it (a write that fails closes the connection), and with it its registration. */
static void
due_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct imap_watches *w = arg;
    imap__burst_begin(w->srv);
    while (w->due) {
        struct imap_watcher *x = w->due;
        due_remove(w, x);
        imap__idle_changed(x->s);
    }
    imap__burst_end(w->srv);
}

/* ---- The core's messages ---- */

/* Marks the watchers of (database, mailbox, folder) due. */
static void
folder_due(struct imap_watches *w, const struct ipc_str *d, const struct ipc_str *m,
           const struct ipc_str *fo)
{
    char database[TDM_IPC_NAME_MAX + 1], mailbox[TDM_IPC_NAME_MAX + 1],
        folder[TDM_IPC_NAME_MAX + 1];
    /* ipc.h bounds every name by TDM_IPC_NAME_MAX; the strings are not NUL-terminated. */
    snprintf(database, sizeof(database), "%.*s", (int)d->len, d->ptr);
    snprintf(mailbox, sizeof(mailbox), "%.*s", (int)m->len, m->ptr);
    snprintf(folder, sizeof(folder), "%.*s", (int)fo->len, fo->ptr);
    struct watched_folder *f =
        *folder_slot(w, key_hash(database, mailbox, folder), database, mailbox, folder);
    if (!f)
        return; /* the last watcher left while this was on its way */
    for (struct imap_watcher *x = f->watchers; x; x = x->next)
        due_add(w, x);
}

static void
changed_cb(void *ctx, const struct ipc_msg *msg)
{
    const struct ipc_changed *c = &msg->u.changed;
    folder_due(ctx, &c->database, &c->mailbox, &c->folder);
}

static void
folder_cb(void *ctx, const struct ipc_msg *msg)
{
    const struct ipc_folder_changed *c = &msg->u.folder_changed;
    if (c->change != TDM_IPC_FOLDER_CREATED) /* a session never watches a folder not there */
        folder_due(ctx, &c->database, &c->mailbox, &c->folder);
}

/* ---- Interface ---- */

int
imap__watches_new(struct imap_server *srv)
{
    struct imap_watches *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->srv = srv;
    w->n_buckets = WATCH_MIN_BUCKETS;
    w->buckets = calloc(w->n_buckets, sizeof(*w->buckets));
    w->due_ev = evtimer_new(srv->base, due_cb, w);
    if (!w->buckets || !w->due_ev) {
        free(w->buckets);
        if (w->due_ev)
            event_free(w->due_ev);
        free(w);
        return -ENOMEM;
    }
    core_link_set_changed_cb(srv->core, changed_cb, w);
    core_link_set_folder_cb(srv->core, folder_cb, w);
    srv->watches = w;
    return 0;
}

void
imap__watches_free(struct imap_server *srv)
{
    struct imap_watches *w = srv->watches;
    if (!w)
        return;
    /* After the link (which took its callbacks along) and the sessions, which unwatch as
     * they go: with none left, no entry is left either. */
    TDM_ASSERT(!srv->core && w->n_folders == 0);
    event_free(w->due_ev);
    free(w->buckets);
    free(w);
    srv->watches = NULL;
}

void
imap__watch(struct imap_session *s)
{
    struct imap_watches *w = s->srv->watches;
    imap__unwatch(s);
    struct imap_watcher *x = calloc(1, sizeof(*x));
    if (!x)
        log_fatal("out of memory");
    uint32_t hash = key_hash(s->database, s->user, s->folder);
    struct watched_folder **slot = folder_slot(w, hash, s->database, s->user, s->folder);
    struct watched_folder *f = *slot;
    if (!f) {
        if (!(f = folder_new(hash, s->database, s->user, s->folder)))
            log_fatal("out of memory");
        /* Kept when this fails: the session still sees changes at its next command, and
         * the entry keeps the bookkeeping simple. Past the core's bound one more
         * subscription would be taken for a bug and end the link. */
        int ret = w->n_folders < TDM_IPC_MAX_SUBSCRIPTIONS
                      ? core_link_subscribe(s->srv->core, f->database, f->mailbox, f->folder)
                      : TDM_ELIMIT;
        if (ret < 0)
            log_error("imap: cannot ask the core for changes of %s/%s: %s", f->mailbox,
                      f->folder, tdm_strerror(ret));
        *slot = f;
        w->n_folders++;
        maybe_grow(w);
    }
    x->s = s;
    x->folder = f;
    x->next = f->watchers;
    if (f->watchers)
        f->watchers->prev = x;
    f->watchers = x;
    s->watcher = x;
}

void
imap__unwatch(struct imap_session *s)
{
    struct imap_watcher *x = s->watcher;
    if (!x)
        return;
    struct imap_watches *w = s->srv->watches;
    struct watched_folder *f = x->folder;
    due_remove(w, x);
    if (x->prev)
        x->prev->next = x->next;
    else
        f->watchers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    free(x);
    s->watcher = NULL;
    if (f->watchers)
        return;
    struct watched_folder **slot = folder_slot(w, f->hash, f->database, f->mailbox, f->folder);
    TDM_ASSERT(*slot == f);
    *slot = f->next;
    w->n_folders--;
    /* No link while the server is being freed: sessions lingering on a commit go when the
     * link fails it, after it was let go of. */
    int ret = s->srv->core ? core_link_unsubscribe(s->srv->core, f->database, f->mailbox,
                                                   f->folder)
                           : 0;
    if (ret < 0) /* the core keeps sending CHANGED nobody wants: harmless, ignored above */
        log_error("imap: cannot tell the core to stop sending changes of %s/%s: %s",
                  f->mailbox, f->folder, tdm_strerror(ret));
    folder_free(f);
}

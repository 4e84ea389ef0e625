/*
 * Untagged updates of the selected folder (imap_int.h): what other sessions and deliveries
 * changed, announced in the order RFC 3501 7.4.1 requires (expunges, then EXISTS, then FETCH
 * FLAGS), as far as the command being answered allows expunges to be told.
 *
 * Expunges go out as "* n EXPUNGE", one per message, or, once the client enabled QRESYNC, as
 * one "* VANISHED uid-set" (RFC 7162 3.2.10), which says the same with UIDs and in one line.
 *
 * A selected folder that another session renamed is followed under its new name (RFC 3501
 * and 9051 say nothing of it; the session's own RENAME does the same); one that was deleted,
 * or deleted and created again, ends the session with BYE, as Dovecot and Cyrus do: RFC 3501
 * 2.3.1.1 forbids going on with UIDs of an old UIDVALIDITY, and an untagged BYE is the one
 * response a client must take at any moment, IDLE included. docs/decisions.md.
 *
 * Bursts: the sessions told of one change together (imap_watch.c) read one shared snapshot,
 * one LMDB read transaction per database per burst instead of one per session. Each session
 * still syncs its own view against it, so it is told exactly what a transaction of its own,
 * begun at that moment, would have shown.
 */
#include "imap/imap_int.h"

#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <stdlib.h>
#include <string.h>

struct sync_ctx {
    struct imap_session *s;
    const struct mail_dbis *dbis;
    MDB_txn *txn;
    /* QRESYNC: the expunged UIDs gathered for one VANISHED (owned), descending as reported */
    uint32_t *vanished;
    size_t n_vanished, cap_vanished;
};

void
imap__write_flag_update(struct imap_session *s, uint32_t msn, const struct mail_message_info *m)
{
    imap_buf_printf(&s->out, "* %u FETCH (", msn);
    imap__write_flags(&s->out, m, imap__is_recent(s, m->uid));
    imap_buf_printf(&s->out, " UID %u", m->uid);
    if (s->enabled & IMAP_ENABLED_CONDSTORE)
        imap_buf_printf(&s->out, " MODSEQ (%llu)", (unsigned long long)m->modseq);
    imap_buf_puts(&s->out, ")\r\n");
}

/* Sends the VANISHED gathered so far: before EXISTS and FETCH, which count after it. */
static void
flush_vanished(struct sync_ctx *c)
{
    if (!c->n_vanished)
        return;
    /* Reported highest MSN first, so highest UID first: ascending compresses best. */
    for (size_t i = 0, j = c->n_vanished - 1; i < j; i++, j--) {
        uint32_t t = c->vanished[i];
        c->vanished[i] = c->vanished[j];
        c->vanished[j] = t;
    }
    imap_write_vanished(&c->s->out, false, c->vanished, c->n_vanished);
    c->n_vanished = 0;
}

static int
on_expunged(void *ctx, uint32_t msn, uint32_t uid)
{
    struct sync_ctx *c = ctx;
    if (!(c->s->enabled & IMAP_ENABLED_QRESYNC)) {
        imap_buf_printf(&c->s->out, "* %u EXPUNGE\r\n", msn);
        return 0;
    }
    if (c->n_vanished == c->cap_vanished) {
        c->cap_vanished = c->cap_vanished ? c->cap_vanished * 2 : 64;
        c->vanished = realloc(c->vanished, c->cap_vanished * sizeof(*c->vanished));
        if (!c->vanished)
            log_fatal("out of memory");
    }
    c->vanished[c->n_vanished++] = uid;
    return 0;
}

static int
on_exists(void *ctx, uint32_t count)
{
    struct sync_ctx *c = ctx;
    flush_vanished(c);
    imap_buf_printf(&c->s->out, "* %u EXISTS\r\n", count);
    return 0;
}

static int
on_changed(void *ctx, uint32_t msn, uint32_t uid, uint64_t modseq)
{
    (void)modseq; /* the message is read anyway, and its MODSEQ may have moved on since */
    struct sync_ctx *c = ctx;
    flush_vanished(c);
    struct mail_message_info m;
    if (mail_message_get(c->dbis, c->txn, c->s->user, c->s->folder, uid, &m) != 0)
        return 0; /* gone again meanwhile: the next sync says so */
    imap__write_flag_update(c->s, msn, &m);
    return 0;
}

/* ---- Bursts ---- */

/* The loop thread's one burst: snapshots opened by its first sync of each database. */
static struct {
    struct imap_server *srv; /* NULL: no burst */
    size_t n;
    struct {
        struct store_reader *reader;
        MDB_txn *txn;
    } open[STORE_READERS_MAX];
} burst;

void
imap__burst_begin(struct imap_server *srv)
{
    TDM_ASSERT(!burst.srv);
    burst.srv = srv;
    burst.n = 0;
}

void
imap__burst_end(struct imap_server *srv)
{
    TDM_ASSERT(burst.srv == srv);
    for (size_t i = 0; i < burst.n; i++)
        mdb_txn_abort(burst.open[i].txn);
    burst.n = 0;
    burst.srv = NULL;
}

/* A read transaction on r: the burst's when one runs (*shared_r: not the caller's to end),
 * else a new one. Returns 0 or a negative code. */
static int
sync_begin(struct imap_server *srv, struct store_reader *r, MDB_txn **txn_r, bool *shared_r)
{
    *shared_r = false;
    if (burst.srv != srv)
        return store_reader_begin(r, txn_r);
    for (size_t i = 0; i < burst.n; i++)
        if (burst.open[i].reader == r) {
            *txn_r = burst.open[i].txn;
            *shared_r = true;
            return 0;
        }
    int ret = store_reader_begin(r, txn_r);
    if (ret < 0 || burst.n == STORE_READERS_MAX)
        return ret; /* a set holds no more readers than that; but should it, go unshared */
    burst.open[burst.n].reader = r;
    burst.open[burst.n++].txn = *txn_r;
    *shared_r = true;
    return 0;
}

/* ---- Renamed away ---- */

struct find_uidvalidity {
    uint32_t uidvalidity;
    char name[MAIL_NAME_MAX + 1]; /* found: not empty */
};

static int
find_uidvalidity_cb(void *ctx, const struct mail_folder_info *fi)
{
    struct find_uidvalidity *f = ctx;
    if (fi->uidvalidity != f->uidvalidity || fi->name_len > MAIL_NAME_MAX)
        return 0;
    memcpy(f->name, fi->name, fi->name_len + 1);
    return 1; /* found: stop */
}

/* The selected folder is not there under its name. A folder of the mailbox with the view's
 * UIDVALIDITY is the same folder renamed (the mail model never gives two folders of a
 * mailbox one UIDVALIDITY, and RENAME keeps it): the session follows it and watches it
 * there. Not INBOX: renaming INBOX moves its messages to a new folder and leaves the INBOX
 * the client selected in place, emptied, under a new UIDVALIDITY. Returns whether it
 * followed. */
static bool
follow_rename(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn)
{
    if (!strcmp(s->folder, "INBOX"))
        return false;
    struct find_uidvalidity f = {.uidvalidity = imap_view_uidvalidity(s->view)};
    if (mail_folder_list(dbis, txn, s->user, find_uidvalidity_cb, &f) < 0 || !f.name[0] ||
        !strcmp(f.name, s->folder) || imap_view_rename(s->view, f.name) < 0)
        return false;
    memcpy(s->folder, f.name, strlen(f.name) + 1);
    imap__watch(s); /* changes come under the new name now */
    return true;
}

void
imap__sync(struct imap_session *s, bool allow_expunge)
{
    if (!s->view)
        return;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    bool shared;
    if (!r || sync_begin(s->srv, r, &txn, &shared) < 0)
        return;
    struct sync_ctx c = {.s = s, .dbis = store_reader_mail_dbis(r), .txn = txn};
    static const struct imap_view_events events = {on_expunged, on_exists, on_changed};
    int ret = imap_view_sync(s->view, c.dbis, txn, allow_expunge, &events, &c);
    if (ret == TDM_ENOTFOUND && follow_rename(s, c.dbis, txn))
        ret = imap_view_sync(s->view, c.dbis, txn, allow_expunge, &events, &c);
    if (!shared)
        mdb_txn_abort(txn);
    if (ret == 0)
        flush_vanished(&c);
    free(c.vanished);
    if (ret == TDM_ENOTFOUND) {
        /* The folder was deleted or re-created under us (RFC 3501 2.3.1.1). */
        imap_buf_puts(&s->out, "* BYE The selected mailbox was deleted\r\n");
        s->state = IMAP_STATE_LOGOUT;
    }
}

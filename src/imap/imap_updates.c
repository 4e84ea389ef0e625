/*
 * Untagged updates of the selected folder (imap_int.h): what other sessions and deliveries
 * changed, announced in the order RFC 3501 7.4.1 requires (expunges, then EXISTS, then FETCH
 * FLAGS), as far as the command being answered allows expunges to be told.
 *
 * Expunges go out as "* n EXPUNGE", one per message, or, once the client enabled QRESYNC, as
 * one "* VANISHED uid-set" (RFC 7162 3.2.10), which says the same with UIDs and in one line.
 */
#include "imap/imap_int.h"

#include "lib/err.h"
#include "lib/log.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <stdlib.h>

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

void
imap__sync(struct imap_session *s, bool allow_expunge)
{
    if (!s->view)
        return;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0)
        return;
    struct sync_ctx c = {.s = s, .dbis = store_reader_mail_dbis(r), .txn = txn};
    static const struct imap_view_events events = {on_expunged, on_exists, on_changed};
    int ret = imap_view_sync(s->view, c.dbis, txn, allow_expunge, &events, &c);
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

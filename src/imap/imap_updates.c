/*
 * Untagged updates of the selected folder (imap_int.h): what other sessions and deliveries
 * changed, announced in the order RFC 3501 7.4.1 requires (EXPUNGE, then EXISTS, then FETCH
 * FLAGS), as far as the command being answered allows expunges to be told.
 */
#include "imap/imap_int.h"

#include "lib/err.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

struct sync_ctx {
    struct imap_session *s;
    const struct mail_dbis *dbis;
    MDB_txn *txn;
};

static int
on_expunged(void *ctx, uint32_t msn, uint32_t uid)
{
    (void)uid;
    struct sync_ctx *c = ctx;
    imap_buf_printf(&c->s->out, "* %u EXPUNGE\r\n", msn);
    return 0;
}

static int
on_exists(void *ctx, uint32_t count)
{
    struct sync_ctx *c = ctx;
    imap_buf_printf(&c->s->out, "* %u EXISTS\r\n", count);
    return 0;
}

static int
on_changed(void *ctx, uint32_t msn, uint32_t uid, uint64_t modseq)
{
    (void)modseq;
    struct sync_ctx *c = ctx;
    struct mail_message_info m;
    if (mail_message_get(c->dbis, c->txn, c->s->user, c->s->folder, uid, &m) != 0)
        return 0; /* gone again meanwhile: the next sync says so */
    imap_buf_printf(&c->s->out, "* %u FETCH (", msn);
    imap__write_flags(&c->s->out, &m, imap__is_recent(c->s, uid));
    imap_buf_printf(&c->s->out, " UID %u)\r\n", uid);
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
    struct sync_ctx c = {s, store_reader_mail_dbis(r), txn};
    static const struct imap_view_events events = {on_expunged, on_exists, on_changed};
    int ret = imap_view_sync(s->view, c.dbis, txn, allow_expunge, &events, &c);
    mdb_txn_abort(txn);
    if (ret == TDM_ENOTFOUND) {
        /* The folder was deleted or re-created under us (RFC 3501 2.3.1.1). */
        imap_buf_puts(&s->out, "* BYE The selected mailbox was deleted\r\n");
        s->state = IMAP_STATE_LOGOUT;
    }
}


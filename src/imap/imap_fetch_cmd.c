/*
 * FETCH (imap_int.h) and the untagged updates of the selected folder. Served so far: FLAGS,
 * UID, RFC822.SIZE, INTERNALDATE, the FAST macro, and whole messages (BODY.PEEK[], and
 * BODY[] / RFC822 when the folder is read-only, where they set no flag). Anything else is
 * answered NO [CANNOT] without a partial answer: the message structure (ENVELOPE,
 * BODYSTRUCTURE, sections) comes with src/proto/mime, and setting \Seen with STORE.
 *
 * Bodies are written straight from LMDB's map into the output buffer, inside one read
 * transaction per command.
 */
#include "imap/imap_int.h"

#include "lib/err.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <stdio.h>
#include <string.h>

/* ---- FETCH ---- */

enum want {
    WANT_FLAGS = 1u << 0,
    WANT_UID = 1u << 1,
    WANT_SIZE = 1u << 2,
    WANT_DATE = 1u << 3,
    WANT_BODY = 1u << 4,   /* BODY[] (or BODY.PEEK[]) */
    WANT_RFC822 = 1u << 5, /* RFC822 */
};

/* What the command asks, or 0 (after answering) when it asks for something not served. */
static unsigned
wanted(struct imap_session *s, const struct imap_command *cmd)
{
    unsigned w = cmd->uid ? WANT_UID : 0;
    switch (cmd->u.fetch.macro) {
    case IMAP_FETCH_MACRO_FAST:
        w |= WANT_FLAGS | WANT_DATE | WANT_SIZE;
        break;
    case IMAP_FETCH_MACRO_NONE:
        break;
    default:
        imap__reply(s, cmd->tag, "NO", "CANNOT", "ALL and FULL (ENVELOPE, BODY) are not served yet");
        return 0;
    }
    for (size_t i = 0; i < cmd->u.fetch.n; i++) {
        const struct imap_fetch_att *a = &cmd->u.fetch.atts[i];
        bool whole = a->n_part == 0 && a->text == IMAP_SECTION_NONE && !a->partial;
        switch (a->kind) {
        case IMAP_FETCH_FLAGS:
            w |= WANT_FLAGS;
            continue;
        case IMAP_FETCH_UID:
            w |= WANT_UID;
            continue;
        case IMAP_FETCH_RFC822_SIZE:
            w |= WANT_SIZE;
            continue;
        case IMAP_FETCH_INTERNALDATE:
            w |= WANT_DATE;
            continue;
        case IMAP_FETCH_BODY_SECTION:
        case IMAP_FETCH_RFC822:
            if (a->kind == IMAP_FETCH_BODY_SECTION && !whole)
                break;
            if (!(a->peek || s->read_only)) {
                imap__reply(s, cmd->tag, "NO", "CANNOT",
                            "Fetching a body that sets \\Seen is not served yet: use BODY.PEEK[]");
                return 0;
            }
            w |= a->kind == IMAP_FETCH_RFC822 ? WANT_RFC822 : WANT_BODY;
            continue;
        default:
            break;
        }
        imap__reply(s, cmd->tag, "NO", "CANNOT",
                    "Only FLAGS, UID, RFC822.SIZE, INTERNALDATE and whole bodies are served yet");
        return 0;
    }
    return w;
}

static void
fetch_one(struct imap_session *s, const struct mail_dbis *dbis, MDB_txn *txn, uint32_t msn,
          uint32_t uid, unsigned w)
{
    struct mail_message_info m;
    if (mail_message_get(dbis, txn, s->user, s->folder, uid, &m) != 0)
        return; /* expunged and not yet announced: nothing left to show */
    const void *body = NULL;
    size_t len = 0;
    if ((w & (WANT_BODY | WANT_RFC822)) && mail_body_get(dbis, txn, m.body_hash, &body, &len) != 0)
        return;
    struct imap_buf *b = &s->out;
    imap_buf_printf(b, "* %u FETCH (", msn);
    const char *sep = "";
    if (w & WANT_UID) {
        imap_buf_printf(b, "UID %u", uid);
        sep = " ";
    }
    if (w & WANT_FLAGS) {
        imap_buf_puts(b, sep);
        imap__write_flags(b, &m, imap__is_recent(s, uid));
        sep = " ";
    }
    if (w & WANT_SIZE) {
        imap_buf_printf(b, "%sRFC822.SIZE %llu", sep, (unsigned long long)m.size);
        sep = " ";
    }
    if (w & WANT_DATE) {
        imap_buf_printf(b, "%sINTERNALDATE ", sep);
        imap_write_date_time(b, m.internal_date, 0);
        sep = " ";
    }
    if (w & WANT_RFC822) {
        imap_buf_printf(b, "%sRFC822 ", sep);
        imap_write_literal(b, body, len);
        sep = " ";
    }
    if (w & WANT_BODY) {
        imap_buf_printf(b, "%sBODY[] ", sep);
        imap_write_literal(b, body, len);
    }
    imap_buf_puts(b, ")\r\n");
}

void
imap__cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
    const struct imap_seqset *set = &cmd->u.fetch.set;
    if (set->saved || cmd->u.fetch.has_changedsince || cmd->u.fetch.vanished) {
        imap__reply(s, cmd->tag, "NO", "CANNOT", "$, CHANGEDSINCE and VANISHED are not served yet");
        return;
    }
    unsigned w = wanted(s, cmd);
    if (!w)
        return;
    /* New mail and flag changes first (no EXPUNGE during a FETCH, except UID FETCH). */
    imap__sync(s, cmd->uid);
    if (s->state == IMAP_STATE_LOGOUT)
        return;
    struct store_reader *r = store_readers_get(s->srv->dbs, s->database);
    MDB_txn *txn;
    if (!r || store_reader_begin(r, &txn) < 0) {
        imap__reply(s, cmd->tag, "NO", "UNAVAILABLE", "Your mailbox is not available now");
        return;
    }
    const struct mail_dbis *dbis = store_reader_mail_dbis(r);
    uint32_t count = imap_view_count(s->view);
    uint32_t star = cmd->uid ? (count ? imap_view_uid(s->view, count) : 0) : count;
    if (!cmd->uid && count == 0) {
        mdb_txn_abort(txn);
        imap__reply(s, cmd->tag, "BAD", NULL, "No messages: there is no sequence number");
        return;
    }
    bool bad = false;
    if (!cmd->uid)
        for (size_t i = 0; i < set->n; i++)
            if ((set->r[i].lo != IMAP_SEQ_STAR && set->r[i].lo > count) ||
                (set->r[i].hi != IMAP_SEQ_STAR && set->r[i].hi > count))
                bad = true;
    if (bad) {
        mdb_txn_abort(txn);
        imap__reply(s, cmd->tag, "BAD", NULL, "Message sequence number out of range");
        return;
    }
    for (uint32_t msn = 1; msn <= count; msn++) {
        uint32_t uid = imap_view_uid(s->view, msn);
        if (imap__set_contains(set, cmd->uid ? uid : msn, star) && !imap_view_pending(s->view, msn))
            fetch_one(s, dbis, txn, msn, uid, w);
    }
    mdb_txn_abort(txn);
    imap__reply(s, cmd->tag, "OK", NULL, cmd->uid ? "UID FETCH completed" : "FETCH completed");
}

#ifndef TANDEM_IMAP_IMAP_VIEW_H
#define TANDEM_IMAP_IMAP_VIEW_H

/*
 * One IMAP session's view of its selected folder (RFC 3501 §2.3.1, §7.4.1; RFC 9051; RFC 7162):
 * the message sequence number map (MSN <-> UID) and what the client has been told, brought up
 * to date with the database by imap_view_sync(), which reports the changes in the order the
 * untagged responses must go out: expunges, then EXISTS, then flag changes.
 *
 * MSNs are the client's, not the database's: a message expunged by another session keeps its
 * MSN here until a command is allowed to announce it (RFC 3501 §7.4.1: never during FETCH,
 * STORE or SEARCH, UID versions excepted); meanwhile it is "pending" (imap_view_pending()),
 * and readers answer for it as for a message that is gone.
 *
 * Catching up reads only what changed since the MODSEQ the view was last synced to (the mail
 * model's MODSEQ index), so a sync costs the number of changes, not the folder's size.
 *
 * Not thread-safe: one session owns a view. Allocation failure returns -ENOMEM and leaves the
 * view as it was before the call.
 */

#include "store/mail.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_view;

/*
 * Opens mailbox/folder as of txn's snapshot. Returns 0 with an owned *view_r, TDM_ENOTFOUND
 * (no such mailbox or folder), -ENOMEM, or a storage error.
 */
int imap_view_open(const struct mail_dbis *dbis, MDB_txn *txn, const char *mailbox,
                   const char *folder, struct imap_view **view_r);
void imap_view_free(struct imap_view **view);
/* The folder was renamed (RENAME keeps its UIDs and UIDVALIDITY): the view reads it under
 * its new name from now on. Returns 0, or -ENOMEM with the view unchanged. */
int imap_view_rename(struct imap_view *view, const char *folder);

/* Messages the client knows of (pending expunges included): its EXISTS. */
uint32_t imap_view_count(const struct imap_view *view);
/* UID of MSN 1..count; 0 when out of range. */
uint32_t imap_view_uid(const struct imap_view *view, uint32_t msn);
/* MSN of uid; 0 when the view does not hold it. */
uint32_t imap_view_msn(const struct imap_view *view, uint32_t uid);
/* True when MSN's message was expunged and the client has not been told yet. */
bool imap_view_pending(const struct imap_view *view, uint32_t msn);

uint32_t imap_view_uidvalidity(const struct imap_view *view);
/* UIDNEXT and HIGHESTMODSEQ as of the last open or sync. */
uint32_t imap_view_uidnext(const struct imap_view *view);
uint64_t imap_view_highestmodseq(const struct imap_view *view);

/*
 * The session itself just made every change with a MODSEQ in (from, to], and all of them were
 * flag changes of messages the view holds, already told to the client or not to be told
 * (STORE and STORE .SILENT): a view synced to exactly from moves to to, so the next sync does
 * not report them again. Otherwise (someone else's change came between) nothing happens and
 * the next sync reports ours along with theirs, which is merely redundant.
 */
void imap_view_own_changes(struct imap_view *view, uint64_t from, uint64_t to);

/*
 * What imap_view_sync() reports, in this order (each may be NULL):
 *   expunged(msn, uid)   once per expunged message, highest MSN first, so each MSN is right
 *                        when it is sent (RFC 3501 §7.4.1); only when allow_expunge
 *   exists(count)        once, when messages arrived (count includes them)
 *   changed(msn, uid, modseq)  once per message still present whose flags or keywords
 *                        changed (its MSN as of after the expunges above); the caller reads
 *                        the message to send FETCH (FLAGS ...) [MODSEQ]
 * A non-zero return from a callback stops the sync and is returned; the view is then as if
 * the sync had not happened (it will report the same changes again).
 */
struct imap_view_events {
    int (*expunged)(void *ctx, uint32_t msn, uint32_t uid);
    int (*exists)(void *ctx, uint32_t count);
    int (*changed)(void *ctx, uint32_t msn, uint32_t uid, uint64_t modseq);
};

/*
 * Brings the view up to txn's snapshot. allow_expunge: whether the command being answered may
 * announce expunges (false during FETCH, STORE, SEARCH; true for NOOP, IDLE, CHECK, after
 * other commands and for UID commands). Returns 0; TDM_ENOTFOUND when the folder is gone or
 * was re-created (its UIDVALIDITY changed: the session must end the selection, RFC 3501
 * §2.3.1.1); -ENOMEM; a storage error; or a callback's return.
 */
int imap_view_sync(struct imap_view *view, const struct mail_dbis *dbis, MDB_txn *txn,
                   bool allow_expunge, const struct imap_view_events *events, void *ctx);

#endif

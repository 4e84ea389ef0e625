#ifndef TANDEM_IMAP_IMAP_FETCH_H
#define TANDEM_IMAP_IMAP_FETCH_H

/*
 * What FETCH's two files share: imap_fetch_items.c turns the command's data items into a plan
 * and writes one message's response from it; imap_fetch_cmd.c runs the command (the message
 * set, CHANGEDSINCE, VANISHED, \Seen, batches under back-pressure).
 *
 * The plan is a copy, owned by the FETCH in progress: the parsed command dies when dispatch
 * returns, and a large FETCH goes on long after that.
 */

#include "imap/imap_int.h"
#include "proto/mime/mime_section.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One data item. */
struct imap_fetch_item {
    enum imap_fetch_kind kind;
    char *label;                 /* owned: how the response names it, e.g. "BODY[1.MIME]<0>" */
    struct mime_section section; /* BODY[...], BINARY[...], BINARY.SIZE[...] */
    bool partial;                /* <offset.length> */
    uint64_t offset, length;
};

struct imap_fetch_plan {
    struct imap_fetch_item *items; /* owned, in the order the client asked (UID first for UID
                                      FETCH, MODSEQ last for CHANGEDSINCE when not asked) */
    size_t n;
    struct mime_str *field_names; /* owned: every HEADER.FIELDS name of every item */
    size_t n_field_names;
    bool sets_seen;   /* a body item without PEEK (RFC 3501 6.4.5) */
    bool reads_body;  /* an item needs the stored message */
    bool parses_mime; /* an item needs its structure */
    bool has_binary;  /* BINARY or BINARY.SIZE: an unknown encoding fails the command */
    bool has_flags, has_uid, has_modseq;
    unsigned mime_flags; /* MIME_IMAP_* for BODY and BODYSTRUCTURE */
};

/*
 * Builds the plan of cmd (a FETCH). Returns 0, TDM_EINVAL with *why_r (a request this server
 * can never answer: a section nested deeper than MIME_SECTION_PARTS_MAX), or -ENOMEM. On
 * failure nothing needs clearing.
 */
int imap__fetch_plan_build(const struct imap_command *cmd, bool rev2, struct imap_fetch_plan *plan,
                           const char **why_r);
void imap__fetch_plan_clear(struct imap_fetch_plan *plan);

/*
 * Appends "* msn FETCH (...)" CRLF for message m (read in txn) to the session's output; large
 * bodies go straight to the connection after what is queued. flags_changed: this command set
 * \Seen on it, so FLAGS is included even when not asked (and UID and MODSEQ once CONDSTORE is
 * on, RFC 7162 3.2). Returns 0; TDM_ENOTFOUND when the body is gone (nothing written);
 * TDM_EINVAL when a BINARY item meets a Content-Transfer-Encoding it cannot undo (nothing
 * written: the command answers NO [UNKNOWN-CTE]); -ENOMEM or a storage error.
 */
int imap__fetch_write(struct imap_session *s, const struct imap_fetch_plan *plan,
                      const struct mail_dbis *dbis, MDB_txn *txn, uint32_t msn,
                      const struct mail_message_info *m, bool flags_changed);

#endif

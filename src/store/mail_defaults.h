#ifndef TANDEM_STORE_MAIL_DEFAULTS_H
#define TANDEM_STORE_MAIL_DEFAULTS_H

/*
 * What a new mailbox is made of, for whoever creates one on first use (an LMTP delivery, an
 * IMAP login): the mailbox with its INBOX, the special-use folders clients expect (RFC 6154:
 * Sent, Drafts, Trash, Junk, Archive) and a subscription to each. The records are committed in
 * this order over one core connection, which applies them in order.
 */

#include "store/mail.h"

#define MAIL_DEFAULT_OPS 12u

/* Fills ops[0..MAIL_DEFAULT_OPS) for mailbox (borrowed: it must outlive the ops);
 * uidvalidity: the first UIDVALIDITY (usually the current time). */
void mail_default_ops(const char *mailbox, uint32_t uidvalidity,
                      struct mail_op ops[MAIL_DEFAULT_OPS]);

#endif

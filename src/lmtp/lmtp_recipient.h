#ifndef TANDEM_LMTP_LMTP_RECIPIENT_H
#define TANDEM_LMTP_LMTP_RECIPIENT_H

/*
 * Who an LMTP recipient is: the directory user an address belongs to, and the mailbox database
 * that holds that user's mailbox (the user's `database` attribute). Read from the directory
 * database through a store_reader.
 *
 * An address is matched, in this order, as a whole address or alias ("alice@example.test"),
 * as an alias equal to its local part ("postmaster"), and as a user name equal to its local
 * part, so that the local deliveries MTAs make to bare user names keep working.
 */

#include "directory/directory.h"
#include "store/store_reader.h"

enum lmtp_rcpt_status {
    LMTP_RCPT_OK = 0,
    LMTP_RCPT_UNKNOWN = 1,    /* no such address or user */
    LMTP_RCPT_NO_MAILBOX = 2, /* the user has no mailbox database */
    LMTP_RCPT_DISABLED = 3,   /* the user is disabled */
};

struct lmtp_recipient {
    char user[DIR_NAME_MAX + 1];
    char database[DIR_NAME_MAX + 1];
};

/*
 * Looks up local@domain (domain may be "") in the directory dir. Returns 0 with *status_r
 * (and *rcpt_r filled when LMTP_RCPT_OK), or a negative storage error.
 */
int lmtp_recipient_lookup(struct store_reader *dir, const char *local, const char *domain,
                          struct lmtp_recipient *rcpt_r, enum lmtp_rcpt_status *status_r);

#endif

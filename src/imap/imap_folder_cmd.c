/*
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, NAMESPACE and the QUOTA commands (imap_int.h). Not served yet.
 */
#include "imap/imap_int.h"

void
imap__cmd_folder(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

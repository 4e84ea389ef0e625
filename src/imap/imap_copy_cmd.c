/*
 * COPY and MOVE, and their UID forms (imap_int.h). Not served yet.
 */
#include "imap/imap_int.h"

void
imap__cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

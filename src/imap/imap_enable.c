/*
 * ENABLE (imap_int.h). Not served yet.
 */
#include "imap/imap_int.h"

void
imap__cmd_enable(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

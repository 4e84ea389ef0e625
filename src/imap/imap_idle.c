/*
 * IDLE (imap_int.h). Not served yet.
 */
#include "imap/imap_int.h"

void
imap__cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

void
imap__idle_line(struct imap_session *s, const uint8_t *data, size_t len)
{
    (void)s;
    (void)data;
    (void)len;
}

/*
 * STORE, EXPUNGE, UID EXPUNGE and the expunge of CLOSE (imap_int.h). Not served yet.
 */
#include "imap/imap_int.h"

void
imap__cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

void
imap__cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

/* CLOSE would also expunge \Deleted messages; expunging is not served yet, so it is refused
 * rather than half done. */
void
imap__cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
    if (!s->read_only) {
        imap__reply(s, cmd->tag, "NO", "CANNOT",
                    "CLOSE (which expunges) is not served yet: use UNSELECT");
        return;
    }
    imap__unselect(s);
    imap__reply(s, cmd->tag, "OK", NULL, "CLOSE completed");
}

/*
 * APPEND (imap_int.h). Not served yet: refused before the client sends the message.
 */
#include "imap/imap_int.h"

void
imap__append_announced(struct imap_session *s, const struct imap_parser_out *out)
{
    imap__reply(s, out->tag, "NO", "CANNOT", "APPEND is not served yet");
    imap_parser_cancel_literal(s->parser);
}

void
imap__append_data(struct imap_session *s, const struct imap_parser_out *out)
{
    (void)s;
    (void)out;
}

void
imap__cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
    imap__not_served(s, cmd);
}

void
imap__append_discard(struct imap_session *s)
{
    (void)s;
}

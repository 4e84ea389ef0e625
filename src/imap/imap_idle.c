/*
 * IDLE (RFC 2177; imap_int.h): "+ idling", then the selected folder's changes pushed as
 * untagged updates as they happen, until the client sends "DONE" (any case), which ends it
 * with the tagged OK. Any other line ends it too, answered BAD, as the RFC asks.
 *
 * Pushing: the session watches its selected folder from SELECT (imap_watch.c); a change
 * reaches imap__idle_changed(), which looks at the folder and sends what is new, expunges
 * included (RFC 2177 allows them during IDLE: no command is in progress whose sequence
 * numbers they could upset). In the authenticated state IDLE is allowed and has nothing to
 * push.
 *
 * The inactivity timeout (30 minutes without input, lib/conn) is left as it is: RFC 2177 asks
 * clients to re-issue IDLE at least every 29 minutes, and each DONE and IDLE is input.
 * Meanwhile "* OK Still here" keeps NAT boxes from forgetting the connection (imap_keepalive.c).
 */
#include "imap/imap_int.h"

#include "lib/conn.h"

#include <stdio.h>

/* Sends what changed in the selected folder; a deleted folder ends the session (BYE). */
static void
announce(struct imap_session *s)
{
    if (s->state != IMAP_STATE_SELECTED)
        return;
    imap__sync(s, true);
    imap__flush(s);
    if (s->state == IMAP_STATE_LOGOUT && s->conn)
        conn_close_after_flush(s->conn);
}

void
imap__cmd_idle(struct imap_session *s, const struct imap_command *cmd)
{
    snprintf(s->tag, sizeof(s->tag), "%s", cmd->tag);
    s->idling = true;
    s->line_for = IMAP_LINE_IDLE;
    imap_parser_expect_line(s->parser);
    imap_buf_puts(&s->out, "+ idling\r\n");
    imap__keepalive_start(s);
    /* What changed since the last command, before waiting for more. */
    announce(s);
    imap__flush(s);
    /* An idle session may wait for hours: its output buffer is made again when needed. */
    imap_buf_free(&s->out);
}

void
imap__idle_line(struct imap_session *s, const uint8_t *data, size_t len)
{
    s->idling = false;
    imap__keepalive_stop(s);
    if (!imap_line_is_done(data, len)) {
        imap__reply(s, s->tag, "BAD", NULL, "Expected DONE to end IDLE");
        return;
    }
    /* A change may be on its way from the core still: the client gets what is there now. */
    if (s->state == IMAP_STATE_SELECTED)
        imap__sync(s, true);
    imap__reply(s, s->tag, "OK", NULL, "IDLE terminated");
}

void
imap__idle_changed(struct imap_session *s)
{
    if (!s->idling || !s->conn)
        return; /* the others hear of it at their next command (RFC 3501 5.2) */
    s->busy++; /* a failed write closes the connection, whose on_close releases s */
    announce(s);
    imap_buf_free(&s->out); /* as at the start of IDLE */
    s->busy--;
    imap__release(s);
}

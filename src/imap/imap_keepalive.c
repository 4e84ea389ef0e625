/*
 * IDLE keepalive (imap_int.h): while a session is in IDLE, "* OK Still here" every
 * [imap] idle_keepalive (2 minutes by default, Dovecot's imap_idle_notify_interval), so NAT
 * boxes and stateful firewalls, which forget a TCP flow after a few quiet minutes, keep the
 * connection of a client that waits for mail. An untagged OK carries no state, so any client
 * may receive it at any time (RFC 9051 7.1.1).
 *
 * It is output only: the inactivity timeout (30 minutes without input, lib/conn) still holds,
 * so a client that went away without closing is let go as before (RFC 2177 asks clients to
 * re-issue IDLE at least every 29 minutes).
 *
 * The timer exists only while the session idles: a session not in IDLE costs nothing here.
 */
#include "imap/imap_int.h"

#include "lib/config.h"
#include "lib/conn.h"
#include "lib/log.h"

#include <event2/event.h>

static void
tick(evutil_socket_t fd, short what, void *ctx)
{
    (void)fd;
    (void)what;
    struct imap_session *s = ctx;
    /* A client that reads nothing gains nothing from more lines queued behind the ones it
     * has not read. */
    if (!s->idling || !s->conn || conn_output_full(s->conn))
        return;
    s->busy++; /* a failed write closes the connection, whose on_close releases s */
    imap_buf_puts(&s->out, "* OK Still here\r\n");
    imap__flush(s);
    imap_buf_free(&s->out); /* an idle session keeps no output buffer (imap_idle.c) */
    s->busy--;
    imap__release(s);
}

void
imap__keepalive_start(struct imap_session *s)
{
    uint64_t ms = s->srv->cfg->imap.idle_keepalive_ms;
    if (!ms || s->keepalive)
        return;
    s->keepalive = event_new(s->srv->base, -1, EV_PERSIST, tick, s);
    if (!s->keepalive)
        log_fatal("out of memory");
    struct timeval tv = {(time_t)(ms / 1000u), (suseconds_t)(ms % 1000u) * 1000};
    event_add(s->keepalive, &tv);
}

void
imap__keepalive_stop(struct imap_session *s)
{
    if (s->keepalive)
        event_free(s->keepalive);
    s->keepalive = NULL;
}

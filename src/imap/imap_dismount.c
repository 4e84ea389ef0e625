/*
 * Databases the core dismounted (imap_int.h; DB_DISMOUNTED in docs/formats/ipc.md): tandemctl
 * db dismount, or the cluster agent's fence when this node lost its quorum or its CMS.
 *
 * At each list from the core: the worker's readers of the listed databases are closed
 * (store_readers_set_dismounted: LMDB's environment and files let go of), and every session
 * whose mailbox is in one of them ends with
 *
 *   * BYE [UNAVAILABLE] Database dismounted: reconnect later
 *
 * and its connection closes: its view is of a database that no longer changes here, and after
 * a failover the client must reconnect to the CMS address, which reaches the new active. IDLE
 * sessions are ended the same way. A login to a listed database is answered as for any
 * database not served here (imap_referral.c: a referral to its CMS, or NO [UNAVAILABLE]).
 *
 * Safe to free readers here: the list arrives from the link's read callback, a turn of the loop
 * of its own, and no read transaction outlives the turn that opened it (store_reader.h).
 */
#include "imap/imap_int.h"

#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/log.h"
#include "store/store_readers.h"

#include <stdio.h>

/* Ends s: what it was sending is cut short (a FETCH answered NO), BYE, and the connection
 * closes once that is sent. */
static void
end_session(struct imap_session *s)
{
    s->busy++; /* a failed write closes the connection, whose on_close releases s */
    log_info("imap: %s: %s's session ended: database %s dismounted", conn_peer(s->conn), s->user,
             s->database);
    s->state = IMAP_STATE_LOGOUT; /* first: a FETCH's end resumes the pump; it takes no more */
    imap__fetch_abandon(s);
    imap__keepalive_stop(s);
    s->idling = false;
    imap__unwatch(s);
    imap_buf_puts(&s->out, "* BYE [UNAVAILABLE] Database dismounted: reconnect later\r\n");
    imap__flush(s);
    if (s->conn)
        conn_close_after_flush(s->conn);
    s->busy--;
    imap__release(s);
}

static void
dismounted_cb(void *ctx, const struct ipc_msg *msg)
{
    struct imap_server *srv = ctx;
    const struct ipc_db_dismounted *d = &msg->u.db_dismounted;
    /* ipc.h bounds the names; they are not NUL-terminated on the wire. */
    static char names[TDM_IPC_MAX_DATABASES][TDM_IPC_NAME_MAX + 1];
    const char *list[TDM_IPC_MAX_DATABASES];
    for (uint32_t i = 0; i < d->n_databases; i++) {
        snprintf(names[i], sizeof(names[i]), "%.*s", (int)d->databases[i].len,
                 d->databases[i].ptr);
        list[i] = names[i];
    }
    if (store_readers_set_dismounted(srv->dbs, list, d->n_databases) < 0)
        log_fatal("out of memory");
    if (d->n_databases == 0)
        return;
    /* Taken one at a time: ending one may free it (and only it). */
    for (struct imap_session *s = srv->sessions, *next; s; s = next) {
        next = s->next_session;
        if (s->conn && s->database[0] && s->state != IMAP_STATE_LOGOUT &&
            store_readers_is_dismounted(srv->dbs, s->database))
            end_session(s);
    }
}

void
imap__dismount_start(struct imap_server *srv)
{
    core_link_set_dismounted_cb(srv->core, dismounted_cb, srv);
}

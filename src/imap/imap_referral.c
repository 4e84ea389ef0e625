/*
 * Logins whose mailbox is elsewhere (imap_int.h; RFC 2221 LOGIN-REFERRALS, docs/imap.md).
 *
 * Only a login whose password was right gets here: RFC 2221 6 forbids telling anything about
 * an account to whoever fails to authenticate, so a wrong password is answered as usual,
 * referral or not. When the user's database is not held here, the client is referred to the
 * clustered mailbox server that owns it (the database's cms: its address and imap_port, the
 * route the transport role relays mail on), with a tagged
 *
 *   NO [REFERRAL imap://user;AUTH=*@address:imap_port/] text
 *
 * (RFC 2221 4.1: this server has no mailbox of the user's). The URL is always imap://, the
 * STARTTLS port, even for a client that came over implicit TLS: RFC 5092 defines no other
 * scheme, and every tandem IMAP port offers STARTTLS (docs/decisions.md).
 *
 * A database this server holds only as a copy (copy.conf) is not served here either, nor one
 * its core has dismounted (imap_dismount.c): after a fence, the CMS has moved to another node
 * and the referral leads there.
 *
 * No referral when the directory gives no route (no database object, no cms, no address) or
 * when the route leads back to this server (one of its own addresses): RFC 2221 3 says a
 * server SHOULD NOT refer to one that would refer again, and a database missing from its own
 * CMS is an outage, not a move. Those answer NO [UNAVAILABLE] with a log line that says why.
 *
 * A right password is not a failed login either way: the client's failure counts are
 * forgotten as on a success (imap_login_delay.c).
 */
#include "imap/imap_int.h"

#include "lib/conn.h"
#include "lib/log.h"
#include "proto/imap/imap_url.h"
#include "store/store_readers.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

bool
imap__served_here(struct imap_session *s, const char *database)
{
    /* Readable under <datadir>/db/ and not a copy is what the core mounts as active. A copy
     * is readable too, but its view lags the active's and nothing can be committed to it, so
     * its users are referred to the cms that holds the active (docs/replication.md). */
    return !store_readers_is_copy(s->srv->dbs, database) &&
           store_readers_get(s->srv->dbs, database) != NULL;
}

static bool
same_address(const struct tdm_config_addr *mine, int family, const unsigned char *bytes)
{
    return mine->family == family && memcmp(mine->bytes, bytes, family == AF_INET ? 4 : 16) == 0;
}

/* Whether address (an IP literal, as every route holds) is one of this server's own: its
 * networks' and listeners' addresses from the config. Hazard: a CMS address that a cluster
 * node brings up at run time is not in the config; once that exists it must be counted here,
 * or a database missing from the CMS this node runs would be referred back to this node. */
static bool
is_own_address(const struct tdm_config *cfg, const char *address)
{
    unsigned char bytes[16];
    int family = AF_INET;
    if (inet_pton(AF_INET, address, bytes) != 1) {
        family = AF_INET6;
        if (inet_pton(AF_INET6, address, bytes) != 1)
            return false;
    }
    for (unsigned i = 0; i < cfg->n_networks; i++)
        if (same_address(&cfg->networks[i].address, family, bytes))
            return true;
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (same_address(&cfg->listeners[i].address, family, bytes))
            return true;
    return false;
}

static void
unavailable(struct imap_session *s)
{
    imap__reply(s, s->tag, "NO", "UNAVAILABLE",
                "Your mailbox is not available on this server now: try again later");
}

void
imap__refer(struct imap_session *s, const char *database, const struct dir_route *route)
{
    imap__login_succeeded(s);
    const char *peer = conn_peer(s->conn);
    if (!route || route->status != DIR_ROUTE_OK) {
        log_warn("imap: %s: %s gave the right password, but database %s is %s and the "
                 "directory gives no route to it (%s%s%s): answered UNAVAILABLE",
                 peer, s->user, database,
                 store_readers_is_dismounted(s->srv->dbs, database) ? "dismounted here"
                                                                    : "not here",
                 dir_route_status_name(route ? route->status : DIR_ROUTE_UNSET),
                 route && route->cms[0] ? ", cms " : "", route ? route->cms : "");
        unavailable(s);
    } else if (is_own_address(s->srv->cfg, route->address)) {
        log_error("imap: %s: %s gave the right password, but database %s is not mounted here "
                  "although its cms %s is at %s, an address of this server: answered "
                  "UNAVAILABLE rather than referring the client back here",
                  peer, s->user, database, route->cms, route->address);
        unavailable(s);
    } else {
        struct imap_buf code = IMAP_BUF_INIT;
        imap_buf_puts(&code, "REFERRAL ");
        imap_write_server_url(&code, s->user, route->address, route->imap_port);
        /* The text names the place for people whose client does not follow referrals; no
         * brackets in it (imap_url.h). */
        char text[160];
        snprintf(text, sizeof(text), "Your mailbox is on another server: log in at %s port %u",
                 route->address, route->imap_port);
        if (imap_buf_error(&code) < 0) {
            log_error("imap: out of memory writing a referral");
            unavailable(s);
        } else {
            imap__reply(s, s->tag, "NO", code.data, text);
            log_info("imap: %s: %s referred to cms %s at %s port %u, which holds database %s", peer,
                     s->user, route->cms, route->address, route->imap_port, database);
        }
        imap_buf_free(&code);
    }
    s->user[0] = s->database[0] = '\0';
}

#ifndef TANDEM_LMTP_LMTP_SERVER_H
#define TANDEM_LMTP_LMTP_SERVER_H

/*
 * The LMTP server of the mailbox role (RFC 2033), in a worker process: it accepts on the
 * [listen lmtp] socket, runs the sans-IO session of src/proto/smtp for each connection,
 * resolves each recipient in the directory (dir_recipient_lookup()), and delivers each message with
 * one APPEND record per mailbox database holding recipients, committed through the core
 * (lib/core_link.h). A recipient's reply is sent only when the core has answered its commit,
 * that is when the message is durable in the store (group commit makes that cheap). A mailbox
 * that does not exist yet is created on the first delivery, with INBOX and the special-use
 * folders Sent, Drafts, Trash, Junk and Archive (RFC 6154).
 *
 * Replies per recipient:
 *   250 2.0.0  delivered (durable)
 *   550 5.1.1  no such user; the user has no mailbox database
 *   550 5.2.1  the user is disabled
 *   552 5.2.2  the mailbox is over its quota
 *   451 4.3.0  the database is not mounted here, the core is unreachable or the store refused
 *              (full disk, failed): the sending MTA retries later, after a failover
 *
 * Ownership: the server borrows cfg for its whole life.
 */

#include "lib/config.h"

#include <stdint.h>

struct event_base;
struct lmtp_server;

/* Returns 0 with an owned *srv_r, or a negative code with *error_r (allocated). Takes the
 * listening socket listen_fd. */
int lmtp_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                    struct lmtp_server **srv_r, char **error_r);
/* Serves the listening socket fd too (a CMS address, docs/cluster.md): takes fd on success.
 * tag (not 0) marks it and the connections accepted on it. Returns 0 or
 * conn_listener_add_socket's error. */
int lmtp_server_add_socket(struct lmtp_server *srv, int fd, uint32_t tag);
/* Closes the sockets added with tag; each connection accepted on them is told goodbye, as at
 * shutdown, and closed. The others go on. */
void lmtp_server_close_socket(struct lmtp_server *srv, uint32_t tag);
/* The graceful stop (conn_listener_shutdown): every connection is told goodbye and closed once
 * that is sent. Returns how many are still going; call again to poll. Then _free as usual. */
unsigned lmtp_server_shutdown(struct lmtp_server *srv);
void lmtp_server_free(struct lmtp_server **srv);

#endif

#ifndef TANDEM_SMTP_SMTP_SERVER_H
#define TANDEM_SMTP_SMTP_SERVER_H

/*
 * The SMTP server of the transport role (RFC 5321), in a worker process: it accepts mail on
 * the [listen smtp] socket for the recipients the directory knows in the [smtp] domains, and
 * relays each message over LMTP (RFC 2033) to the mailbox server that holds its recipients'
 * database: the route is the database's clustered mailbox server, its address and LMTP port
 * (directory.h, "Mail recipients"). The client's "250" after the data is sent only when that
 * server has answered 250 for every recipient, that is when the message is durable there, so
 * nothing is acknowledged that a crash of this worker, or of any process, could lose. There is
 * no queue here: a message that cannot be relayed now is refused with a 4xx and stays in the
 * sending MTA's queue. docs/tandemd.md ("SMTP") and docs/decisions.md ("SMTP relay") say what
 * is answered when.
 *
 * Extensions: PIPELINING, SIZE ([smtp] max_message_size), 8BITMIME, ENHANCEDSTATUSCODES and
 * STARTTLS with the server's certificate (lib/tls.h). No AUTH: this is port 25, where mail
 * arrives for local recipients only; submission is another listener.
 *
 * Ownership: the server borrows cfg for its whole life.
 */

#include "lib/config.h"

#include <stdint.h>

struct event_base;
struct smtp_server;

/* Returns 0 with an owned *srv_r, or a negative code with *error_r (allocated). Takes the
 * listening socket listen_fd. */
int smtp_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                    struct smtp_server **srv_r, char **error_r);

/* Serves the listening socket fd too (a CMS address, docs/cluster.md): takes fd on success.
 * tag (not 0) marks it and the connections accepted on it. Returns 0 or
 * conn_listener_add_socket's error. */
int smtp_server_add_socket(struct smtp_server *srv, int fd, uint32_t tag);
/* Closes the sockets added with tag; each connection accepted on them is told goodbye, as at
 * shutdown, and closed. The others go on. */
void smtp_server_close_socket(struct smtp_server *srv, uint32_t tag);
/* The graceful stop (conn_listener_shutdown): every connection is told goodbye and closed once
 * that is sent. Returns how many are still going; call again to poll. Then _free as usual. */
unsigned smtp_server_shutdown(struct smtp_server *srv);

/* Closes every connection and abandons the relays in flight (a message whose relay had not
 * been answered was never acknowledged), then frees. NULL is fine. */
void smtp_server_free(struct smtp_server **srv);

#endif

#ifndef TANDEM_IMAP_IMAP_SERVER_H
#define TANDEM_IMAP_IMAP_SERVER_H

/*
 * The IMAP server of the mailbox role, in a worker process (DESIGN.md "Processes"): it accepts
 * on the [listen imap] socket (STARTTLS) or [listen imaps] (implicit TLS), parses commands
 * with src/proto/imap, checks logins with the directory (locally, with argon2id on an offload
 * thread, or through the directory client on servers without the directory role), reads mail
 * straight from the user's mailbox database (store_reader) and sends every change to the core
 * (core_link). docs/tandemd.md lists what is served so far.
 *
 * Ownership: the server borrows cfg for its whole life and takes listen_fd.
 */

#include "lib/config.h"

#include <stdint.h>

#include <stdbool.h>

struct event_base;
struct imap_server;

/* implicit_tls: [listen imaps]. Returns 0 with an owned *srv_r, or a negative code with
 * *error_r (allocated). */
int imap_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                    bool implicit_tls, struct imap_server **srv_r, char **error_r);
/* Serves the listening socket fd too (a CMS address, docs/cluster.md): takes fd on success.
 * tag (not 0) marks it and the sessions accepted on it. Returns 0 or
 * conn_listener_add_socket's error. */
int imap_server_add_socket(struct imap_server *srv, int fd, uint32_t tag);
/* Closes the sockets added with tag; each session accepted on them is told goodbye, as at
 * shutdown, and closed. The others go on. */
void imap_server_close_socket(struct imap_server *srv, uint32_t tag);
/* The graceful stop (conn_listener_shutdown): every session is told goodbye and closed once
 * that is sent. Returns how many are still going; call again to poll. Then _free as usual. */
unsigned imap_server_shutdown(struct imap_server *srv);
void imap_server_free(struct imap_server **srv);

#endif

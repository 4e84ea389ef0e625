#ifndef TANDEM_ADMIN_ADMIN_SERVER_H
#define TANDEM_ADMIN_ADMIN_SERVER_H

/*
 * The admin API server (docs/formats/admin-api.md): HTTP/1.1 with JSON bodies, served by
 * libevent's evhttp on the admin worker's one loop. Reads come from the directory database's
 * LMDB (store_reader, read-only); changes go to the core as one COMMIT each (core_link) and
 * are answered only when the core says they are durable.
 *
 * One server serves one listening socket: the TCP [listen admin] socket (TLS, every request
 * authenticated with a password) or the unix socket <datadir>/run/admin.sock (plain HTTP; a
 * request without credentials from uid 0 or tandemd's own uid is the principal `local`).
 */

#include "lib/config.h"

#include <stdbool.h>

struct event_base;
struct admin_server;

enum admin_transport {
    ADMIN_TRANSPORT_TLS,   /* TCP with TLS: [listen admin] */
    ADMIN_TRANSPORT_LOCAL, /* the unix socket: SO_PEERCRED decides `local` */
};

/*
 * Starts serving listen_fd (inherited, listening; owned from now on) on base. cfg is
 * borrowed and must outlive the server (the worker's config snapshot; admin_server_reload
 * swaps it). Returns 0 with an owned *server_r, or a negative code with *error_r (allocated,
 * the caller frees): the TLS certificate or key cannot be loaded, evhttp cannot be set up.
 */
int admin_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                     enum admin_transport transport, struct admin_server **server_r,
                     char **error_r);

/* The configuration changed (RELOAD): cfg replaces the old one, which may be freed after. */
void admin_server_reload(struct admin_server *server, const struct tdm_config *cfg);

/* Closes every connection and the listening socket, fails what is in flight, frees. NULL ok. */
void admin_server_free(struct admin_server **server);

#endif

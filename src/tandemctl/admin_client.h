#ifndef TANDEM_TANDEMCTL_ADMIN_CLIENT_H
#define TANDEM_TANDEMCTL_ADMIN_CLIENT_H

/*
 * A small blocking HTTP/1.1 client for the admin API (docs/formats/admin-api.md): one request
 * per connection, over the unix socket <datadir>/run/admin.sock or over TLS to [listen admin].
 * The response is parsed by proto/http/http_response (sans-IO); this file only moves bytes.
 *
 * tandemctl runs one or two requests per command, so a connection per request costs nothing
 * that matters and leaves no connection state to get wrong.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the admin API is and who asks. Strings are owned (admin_target_clear frees them). */
struct admin_target {
    char *socket_path; /* the unix socket; NULL for TLS */
    char *host;        /* TLS: IP literal or host name, checked against the certificate */
    char *port;        /* TLS: decimal port */
    char *ca_file;     /* TLS: the CA the server's certificate must chain to */
    char *user;        /* NULL: no Authorization (the `local` principal on the socket) */
    char *password;    /* with user; wiped before it is freed */
    char *datadir;     /* when the socket came from -c: named in hints; else NULL */
    int timeout_ms;    /* connect, and each read and write; 0 = no limit */
    bool stream;       /* no read timeout: an answer may stay silent for long (events --follow) */
};

/* Frees the strings (the password wiped first) and zeroes *t. */
void admin_target_clear(struct admin_target *t);

/* "/x/run/admin.sock" or "host:port", for messages. Borrowed from t. */
const char *admin_target_name(const struct admin_target *t, char *buf, size_t size);

/* What went wrong when there is no HTTP answer (all map to exit 9 but USAGE). */
enum admin_fail {
    ADMIN_FAIL_NONE = 0,
    ADMIN_FAIL_CONNECT,  /* could not connect: no socket file, refused, unreachable, timeout */
    ADMIN_FAIL_TLS,      /* TLS setup or handshake failed (CA file, certificate, name) */
    ADMIN_FAIL_PROTOCOL, /* the peer sent something that is not a valid HTTP response */
    ADMIN_FAIL_IO,       /* the connection broke or timed out in the middle */
};

struct admin_response {
    int status;         /* HTTP status */
    char *content_type; /* owned, NULL when absent */
    char *body;         /* owned, NUL-terminated (not part of body_len); NULL when streamed */
    size_t body_len;
};

void admin_response_clear(struct admin_response *resp);

/*
 * Called with each piece of a streamed body as it arrives. A non-zero return stops the
 * request, and admin_request returns it.
 */
typedef int admin_body_cb(void *ctx, const uint8_t *data, size_t len);

/*
 * Sends method path (already percent-encoded) with body (JSON text, NULL for none) and reads
 * the answer into *resp_r. With body_cb, the body is handed to it as it arrives (no size
 * limit: an events stream) instead of being collected (limit ADMIN_MAX_BODY).
 *
 * Returns 0 when an HTTP response arrived (whatever its status), a non-zero body_cb result,
 * or a negative code with *fail_r and *error_r (allocated; the caller frees), a message for a
 * person that already names the target and says what to try.
 */
#define ADMIN_MAX_HEAD (64u * 1024)
#define ADMIN_MAX_BODY (64u * 1024 * 1024)
int admin_request(const struct admin_target *t, const char *method, const char *path,
                  const char *body, admin_body_cb *body_cb, void *cb_ctx,
                  struct admin_response *resp_r, enum admin_fail *fail_r, char **error_r);

#endif

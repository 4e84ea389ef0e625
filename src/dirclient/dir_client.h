#ifndef TANDEM_DIRCLIENT_DIR_CLIENT_H
#define TANDEM_DIRCLIENT_DIR_CLIENT_H

/*
 * How a server without the directory role asks the directory (DESIGN.md "Directory"): over
 * the admin API (docs/formats/admin-api.md) with HTTPS, authenticated as the server
 * ("server/<name>" and its key), trying the configured directory endpoints in order and moving
 * to the next when one fails. Answers are kept in a dir_cache, which a long poll of the
 * directory's change journal (GET /v1/changes) keeps current, so:
 *   - a login the cache vouches for is answered without a round trip (and without argon2id on
 *     the directory);
 *   - while the directory is unreachable, logins it confirmed are still accepted for
 *     [directory] cache_ttl after the journal was last read (dir_cache.h).
 *
 * One libevent loop, one thread. Callbacks are never called from inside the call that
 * started them.
 */

#include "directory/directory.h"
#include "lib/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct dir_client;

struct dir_client_options {
    const struct tdm_config_endpoint *endpoints; /* borrowed for the call */
    size_t n_endpoints;                          /* 1..TDM_CONFIG_MAX_ENDPOINTS */
    const char *ca_file;     /* the CA the directory's certificate is checked against */
    const char *server_name; /* this server: authenticates as "server/<name>" */
    const char *key;         /* its key (the server object's password) */
    uint64_t cache_ttl_ms;   /* [directory] cache_ttl */
    uint32_t timeout_ms;     /* per request; 0 = 5000 */
    uint32_t poll_wait_s;    /* long-poll wait of the journal; 0 = 25 */
};

/*
 * Creates the client and starts following the journal. Returns 0 with an owned *client_r, or
 * TDM_EINVAL / -ENOMEM with *error_r (allocated; the caller frees) naming the problem (no
 * endpoint, a CA file OpenSSL cannot load).
 */
int dir_client_new(struct event_base *base, const struct dir_client_options *opt,
                   struct dir_client **client_r, char **error_r);

/*
 * The client a server's configuration describes: [directory] endpoints and cache_ttl, the CA
 * of [tls] (tls_files_from_config), this server's name, and its key from [directory] key_file
 * (default <datadir>/server.key, first line). Returns as dir_client_new(); TDM_EINVAL with
 * *error_r naming the file when the key cannot be read.
 */
int dir_client_from_config(struct event_base *base, const struct tdm_config *cfg,
                           struct dir_client **client_r, char **error_r);

/*
 * This server's key, the first line of [directory] key_file (default <datadir>/server.key),
 * which also authenticates it to other servers (replication). Returns 0 with *key_r
 * (allocated; wipe it before freeing), -ENOMEM, or TDM_EINVAL with *error_r (allocated)
 * naming the file that cannot be read or is empty.
 */
int dir_client_key_from_config(const struct tdm_config *cfg, char **key_r, char **error_r);

/* Calls every pending callback with TDM_ECLOSED, closes every connection, frees. NULL
 * allowed; *client is set to NULL. */
void dir_client_free(struct dir_client **client);

/*
 * The answer to a login: status 0 = the password is right (from_cache says whether the
 * directory was asked), -EACCES = wrong user or password (the directory said so),
 * -EHOSTUNREACH = no directory endpoint answered and the cache cannot vouch, TDM_ECLOSED = the
 * client was freed, other negative codes for a broken answer (logged).
 */
typedef void dir_client_login_cb(void *ctx, int status, bool from_cache);

/* Checks user's password. Copies both. Returns 0 (cb will be called once) or -ENOMEM. */
int dir_client_login(struct dir_client *client, const char *user, const char *password,
                     dir_client_login_cb *cb, void *ctx);

/*
 * Checks a server's key (another server replicating from this one, authenticating as
 * server/<name>): POST /v1/auth/verify {"server","password"}, which says yes only for the
 * right key of a member of `servers`. Never cached: a copy connects rarely, and a key must
 * stop working the moment it is changed. cb's status: 0 yes, -EACCES no, -EHOSTUNREACH no
 * directory answered, TDM_ECLOSED, -EPERM (this server's own credentials refused), other
 * negative codes for a broken answer; from_cache is always false. Copies both strings.
 * Returns 0 (cb will be called once) or -ENOMEM.
 */
int dir_client_verify_server(struct dir_client *client, const char *server, const char *key,
                             dir_client_login_cb *cb, void *ctx);

/*
 * The answer to a recipient lookup: status 0 with *rcpt (its status field says ok, unknown,
 * no mailbox or disabled; borrowed for the call), or -EHOSTUNREACH (no endpoint answered and
 * the cache has no fresh answer), TDM_ECLOSED, -EPERM (the directory refused this server's
 * credentials), or another negative code for a broken answer.
 */
typedef void dir_client_rcpt_cb(void *ctx, int status, const struct dir_recipient *rcpt,
                                bool from_cache);

/* Looks up local@domain (GET /v1/recipients/<address>). Copies both. Returns 0 (cb will be
 * called once) or -ENOMEM / TDM_EINVAL (an address longer than the directory can hold). */
int dir_client_recipient(struct dir_client *client, const char *local, const char *domain,
                         dir_client_rcpt_cb *cb, void *ctx);

struct dir_client_stats {
    bool following;          /* the last journal read succeeded */
    uint64_t journal_seq;    /* position in the directory's change journal */
    size_t endpoint;         /* index of the endpoint in use */
    size_t cache_entries;
    uint64_t logins_cached;  /* answered from the cache */
    uint64_t logins_remote;  /* answered by the directory */
    uint64_t rcpts_cached;   /* recipient lookups answered from the cache */
    uint64_t rcpts_remote;
    uint64_t failures;       /* requests no endpoint answered */
    uint64_t resets;         /* journal resets (cache dropped) */
};
void dir_client_get_stats(const struct dir_client *client, struct dir_client_stats *stats_r);

#endif

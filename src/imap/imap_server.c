/*
 * The IMAP server's shared resources (imap_int.h): the listener, the TLS context, the link to
 * the core, the directory (local reader or remote client), the offload thread for argon2id,
 * and the readers of the mailbox databases, opened on first use.
 *
 * Logins. With the directory role the stored hash is read on the loop and checked on the
 * offload thread (argon2id costs tens of milliseconds and must not stall other sessions);
 * without it the directory servers check the password and say where the mailbox is, both
 * through the directory client's cache (src/dirclient/), so known users keep logging in
 * through a short directory outage. An unknown user costs a hash like a wrong password, so
 * timing does not tell them apart.
 */
#include "imap/imap_int.h"

#include "dirclient/dir_client.h"
#include "directory/dir_local.h"
#include "lib/auth_delay.h"
#include "lib/conn.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"
#include "store/store_reader.h"
#include "store/store_readers.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Logins ---- */

struct login {
    struct imap_session *s;
    imap_login_cb *cb;
    char *password; /* owned, wiped */
    char hash[DIR_PASSWORD_HASH_MAX];
    char database[DIR_NAME_MAX + 1];
    struct dir_route route; /* where database is served (imap_referral.c) */
    bool known; /* the user exists, may log in, and has a mailbox database */
    bool cached; /* known, and this password succeeded lately (imap_login_cache.c) */
    int result;
};

static void
login_free(struct login *l)
{
    if (l->password) {
        sodium_memzero(l->password, strlen(l->password));
        free(l->password);
    }
    sodium_memzero(l->hash, sizeof(l->hash));
    free(l);
}

/* Offload thread: the slow part. */
static void
login_work(void *arg)
{
    struct login *l = arg;
    if (l->cached) {
        l->result = 0;
    } else if (l->known) {
        l->result = crypto_pwhash_str_verify(l->hash, l->password, strlen(l->password)) == 0
                        ? 0
                        : -EACCES;
    } else {
        /* The same cost for an unknown user as for a wrong password. */
        char dummy[DIR_PASSWORD_HASH_MAX];
        dir_password_hash(l->password, 0, 0, dummy);
        sodium_memzero(dummy, sizeof(dummy));
        l->result = -EACCES;
    }
}

static void
login_done(void *arg, bool ran)
{
    struct login *l = arg;
    if (ran && l->result == 0 && !l->cached)
        imap__login_cache_remember(l->s->srv->logins, l->s->user, l->hash, l->password);
    l->cb(l->s, ran ? l->result : TDM_ECLOSED, l->database, &l->route);
    login_free(l);
}

/* The user's mailbox database from its attributes; false when disabled or without one. */
static bool
user_database(const char *attrs, char out[DIR_NAME_MAX + 1])
{
    json_t *doc = json_loads(attrs, 0, NULL);
    const char *db = json_string_value(json_object_get(doc, "database"));
    bool ok = !json_is_true(json_object_get(doc, "disabled")) && db && db[0] &&
              strlen(db) <= DIR_NAME_MAX;
    if (ok)
        snprintf(out, DIR_NAME_MAX + 1, "%s", db);
    json_decref(doc);
    return ok;
}

static void
login_local(struct imap_session *s, const char *user, const char *password, imap_login_cb *cb)
{
    struct imap_server *srv = s->srv;
    struct login *l = calloc(1, sizeof(*l));
    if (!l || !(l->password = strdup(password)))
        log_fatal("out of memory");
    l->s = s;
    l->cb = cb;
    const char *why;
    int ret = dir_local_reader(srv->cfg->datadir, &srv->directory, &why);
    if (ret < 0 && ret != -EAGAIN)
        log_error("imap: cannot read the directory of %s: %s", srv->cfg->datadir,
                  why ? why : tdm_strerror(ret));
    MDB_txn *txn;
    if (ret == 0 && (ret = store_reader_begin(srv->directory, &txn)) == 0) {
        void *st = store_reader_handler_state(srv->directory);
        struct dir_object obj = {0};
        if (dir_object_get(st, txn, DIR_KIND_USER, user, &obj) == 0 &&
            user_database(obj.attrs, l->database) &&
            dir_secret_hash(st, txn, DIR_KIND_USER, user, l->hash) == 0)
            l->known = true;
        /* Asked only if the database is not here, after the password (imap_referral.c); a
         * storage error leaves no route, which answers UNAVAILABLE rather than failing. */
        if (l->known && dir_route_lookup(st, txn, l->database, &l->route) < 0)
            l->route.status = DIR_ROUTE_UNSET;
        l->cached = l->known && imap__login_cache_check(srv->logins, user, l->hash, password);
        dir_object_clear(&obj);
        mdb_txn_abort(txn);
    }
    if (ret == 0)
        ret = offload_submit(srv->offload, login_work, login_done, l);
    if (ret < 0) {
        login_free(l);
        cb(s, ret == TDM_ELIMIT ? -EBUSY : ret, NULL, NULL);
    }
}

struct remote_login {
    struct imap_session *s;
    imap_login_cb *cb;
    char user[DIR_NAME_MAX + 1];
};

static void
remote_rcpt_cb(void *ctx, int status, const struct dir_recipient *r, bool from_cache)
{
    (void)from_cache;
    struct remote_login *rl = ctx;
    if (status == 0 && r->status != DIR_RCPT_OK)
        status = -EACCES; /* disabled, or no mailbox here to log in to */
    /* The lookup is by address: another user's alias spelled like this user's name wins, and
     * its database is not this user's. Using it would put the mailbox in the wrong database,
     * or refer the login where it is referred back (imap_referral.c). */
    if (status == 0 && strcmp(r->user, rl->user) != 0) {
        log_error("imap: %s logged in, but the directory answers that name with user %s (an "
                  "alias of theirs?), so where %s's mailbox is cannot be told: answered "
                  "UNAVAILABLE",
                  rl->user, r->user, rl->user);
        status = -EAGAIN;
    }
    rl->cb(rl->s, status, status == 0 ? r->database : NULL, status == 0 ? &r->route : NULL);
    free(rl);
}

static void
remote_login_cb(void *ctx, int status, bool from_cache)
{
    (void)from_cache;
    struct remote_login *rl = ctx;
    struct imap_server *srv = rl->s->srv;
    /* Where the mailbox is: the user's recipient entry, by user name. */
    if (status == 0 &&
        (status = dir_client_recipient(srv->remote, rl->user, "", remote_rcpt_cb, rl)) == 0)
        return;
    rl->cb(rl->s, status, NULL, NULL);
    free(rl);
}

void
imap__login(struct imap_session *s, const char *user, const char *password, imap_login_cb *cb)
{
    struct imap_server *srv = s->srv;
    if (srv->cfg->roles & TDM_ROLE_DIRECTORY) {
        login_local(s, user, password, cb);
        return;
    }
    struct remote_login *rl = calloc(1, sizeof(*rl));
    if (!rl)
        log_fatal("out of memory");
    rl->s = s;
    rl->cb = cb;
    snprintf(rl->user, sizeof(rl->user), "%s", user);
    int ret = srv->remote ? dir_client_login(srv->remote, user, password, remote_login_cb, rl)
                          : -EHOSTUNREACH;
    if (ret < 0) {
        free(rl);
        cb(s, ret, NULL, NULL);
    }
}

/* ---- Life cycle ---- */

int
imap_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                bool implicit_tls, struct imap_server **srv_r, char **error_r)
{
    *error_r = NULL;
    if (sodium_init() < 0) {
        *error_r = strdup("libsodium failed to initialise");
        return -ENOMEM;
    }
    struct imap_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return -ENOMEM;
    srv->base = base;
    srv->cfg = cfg;
    srv->implicit_tls = implicit_tls;
    if (store_readers_new(cfg->datadir, &srv->dbs) < 0) {
        free(srv);
        return -ENOMEM;
    }
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    int ret = tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE,
                                 &srv->tls, error_r);
    tls_files_clear(&files);
    char sock[4096];
    snprintf(sock, sizeof(sock), "%s/run/core.sock", cfg->datadir);
    if (ret == 0 && (ret = core_link_new(base, sock, TDM_IPC_WORKER_IMAP, &srv->core)) < 0 &&
        asprintf(error_r, "cannot set up the link to the core at %s: %s", sock,
                 tdm_strerror(ret)) < 0)
        *error_r = NULL;
    if (ret == 0 && (ret = imap__login_cache_new(&srv->logins)) < 0)
        *error_r = strdup("out of memory");
    if (ret == 0 && (ret = imap__watches_new(srv)) < 0)
        *error_r = strdup("out of memory setting up change notifications");
    if (ret == 0)
        imap__dismount_start(srv);
    if (ret == 0 && (ret = auth_delay_new(&srv->login_delays)) < 0)
        *error_r = strdup("out of memory");
    if (ret == 0 && (ret = offload_new(base, 0, &srv->offload)) < 0 &&
        asprintf(error_r, "cannot start the password thread: %s", tdm_strerror(ret)) < 0)
        *error_r = NULL;
    if (ret == 0 && !(cfg->roles & TDM_ROLE_DIRECTORY)) {
        char *why = NULL;
        if (dir_client_from_config(base, cfg, &srv->remote, &why) < 0) {
            srv->remote = NULL;
            log_error("imap: logins cannot be checked: %s", why ? why : "out of memory");
        }
        free(why);
    }
    if (ret == 0)
        ret = imap__listen(srv, listen_fd);
    if (ret < 0) {
        if (!*error_r)
            *error_r = strdup("cannot start the IMAP server");
        imap_server_free(&srv);
        return ret;
    }
    *srv_r = srv;
    return 0;
}

int
imap_server_add_socket(struct imap_server *srv, int fd, uint32_t tag)
{
    return conn_listener_add_socket(srv->listener, fd, tag);
}

void
imap_server_close_socket(struct imap_server *srv, uint32_t tag)
{
    conn_listener_close_socket(srv->listener, tag);
}

unsigned
imap_server_shutdown(struct imap_server *srv)
{
    return conn_listener_shutdown(srv->listener);
}

void
imap_server_free(struct imap_server **srv_p)
{
    struct imap_server *srv = *srv_p;
    if (!srv)
        return;
    /* Sessions first; then what their asynchronous steps wait on, which answers them as
     * closed so lingering sessions go too. */
    conn_listener_free(&srv->listener);
    imap__searches_end(srv);
    offload_free(&srv->offload);
    auth_delay_free(&srv->login_delays);
    dir_client_free(&srv->remote);
    core_link_free(&srv->core);
    imap__watches_free(srv); /* after the sessions lingering on the link's commits */
    imap__login_cache_free(&srv->logins);
    store_reader_free(&srv->directory);
    store_readers_free(&srv->dbs);
    if (srv->tls)
        SSL_CTX_free(srv->tls);
    free(srv);
    *srv_p = NULL;
}

/*
 * Who sent a request (docs/formats/admin-api.md, "Authentication"):
 *   - `Authorization: Basic` with a user's password, or "server/<name>" with a server's key,
 *     checked with argon2id against the directory (dir_secret_verify);
 *   - on the unix socket without credentials: the peer's uid from SO_PEERCRED; root or
 *     tandemd's own uid is `local`.
 *
 * argon2id costs tens to hundreds of milliseconds of CPU by design; it runs on the helper
 * thread (admin_crypto.c), and still: a verified pair is cached for ADMIN_AUTH_CACHE_S under a
 * keyed BLAKE2b of user and password (the key is random per process, so the cache holds
 * nothing an attacker could test passwords against offline), and every failure is answered
 * only after a delay that doubles per client (lib/auth_delay.h: 250 ms to 4 s, the same rule
 * as IMAP's), so guessing costs the guesser time while the loop goes on serving others.
 */
#include "admin/admin_int.h"
#include "dirclient/dir_client.h"
#include "store/store_reader.h"

#include "lib/auth_delay.h"
#include "lib/err.h"
#include "lib/log.h"
#include "proto/json/admin_request.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADMIN_AUTH_CACHE_S 300
#define ADMIN_AUTH_CACHE_SLOTS 128

struct auth_cached {
    uint8_t mac[crypto_generichash_BYTES];
    bool server; /* a server's key rather than a user's password */
    char user[DIR_NAME_MAX + 1];
    time_t expires; /* 0: free slot */
};

/* A call held in the failure delay. */
struct auth_delayed {
    struct admin_auth *auth;
    struct admin_call *call;
    struct event *timer;
    struct auth_delayed *next;
    char message[256];
};

struct admin_auth {
    uint8_t key[crypto_generichash_KEYBYTES];
    struct auth_cached cache[ADMIN_AUTH_CACHE_SLOTS];
    uint64_t journal_seq; /* the directory's change journal is read up to here */
    bool journal_known;
    struct auth_delay *delays; /* failures by client: "127.0.0.1" or "uid:1000" */
    struct auth_delayed *delayed;
};

int
admin_auth_new(struct admin_auth **auth_r)
{
    if (sodium_init() < 0)
        return -EIO;
    struct admin_auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    if (auth_delay_new(&a->delays) < 0) {
        free(a);
        return -ENOMEM;
    }
    randombytes_buf(a->key, sizeof(a->key));
    *auth_r = a;
    return 0;
}

void
admin_auth_cancel_all(struct admin_auth *auth)
{
    while (auth->delayed) {
        struct auth_delayed *d = auth->delayed;
        auth->delayed = d->next;
        event_free(d->timer);
        admin_call_free(d->call);
        free(d);
    }
}

void
admin_auth_free(struct admin_auth **auth)
{
    if (!*auth)
        return;
    admin_auth_cancel_all(*auth);
    auth_delay_free(&(*auth)->delays);
    sodium_memzero(*auth, sizeof(**auth));
    free(*auth);
    *auth = NULL;
}

static void
mac_of(const struct admin_auth *a, bool server, const char *user, const char *password,
       uint8_t out[crypto_generichash_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, a->key, sizeof(a->key), crypto_generichash_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)(server ? "s" : "u"), 1);
    /* NUL-separated: "ab"+"c" and "a"+"bc" must not collide. */
    crypto_generichash_update(&st, (const uint8_t *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const uint8_t *)password, strlen(password));
    crypto_generichash_final(&st, out, crypto_generichash_BYTES);
}

static bool
cache_hit(struct admin_auth *a, bool server, const char *user,
          const uint8_t mac[crypto_generichash_BYTES])
{
    time_t now = time(NULL);
    for (size_t i = 0; i < ADMIN_AUTH_CACHE_SLOTS; i++) {
        struct auth_cached *c = &a->cache[i];
        if (c->expires > now && c->server == server && strcmp(c->user, user) == 0 &&
            sodium_memcmp(c->mac, mac, crypto_generichash_BYTES) == 0)
            return true;
    }
    return false;
}

static void
cache_put(struct admin_auth *a, bool server, const char *user,
          const uint8_t mac[crypto_generichash_BYTES])
{
    /* The slot that expires first: a free or expired one if any. */
    struct auth_cached *slot = &a->cache[0];
    for (size_t i = 1; i < ADMIN_AUTH_CACHE_SLOTS; i++)
        if (a->cache[i].expires < slot->expires)
            slot = &a->cache[i];
    memcpy(slot->mac, mac, crypto_generichash_BYTES);
    slot->server = server;
    snprintf(slot->user, sizeof(slot->user), "%s", user);
    slot->expires = time(NULL) + ADMIN_AUTH_CACHE_S;
}

void
admin_auth_forget(struct admin_auth *auth, bool server, const char *name)
{
    for (size_t i = 0; i < ADMIN_AUTH_CACHE_SLOTS; i++)
        if (auth->cache[i].expires && auth->cache[i].server == server &&
            strcmp(auth->cache[i].user, name) == 0)
            memset(&auth->cache[i], 0, sizeof(auth->cache[i]));
}

/* ---- Staying current with the journal ---- */

static int
forget_cb(void *ctx, const struct dir_change *ch)
{
    if (ch->kind == DIR_KIND_USER || ch->kind == DIR_KIND_SERVER)
        admin_auth_forget(ctx, ch->kind == DIR_KIND_SERVER, ch->name);
    return 0;
}

/*
 * Drops cached credentials whose principal changed since the last look. A password can change
 * through another process (the other admin worker, a replicated change), which this worker's
 * own flush never hears of; the directory's change journal names every changed principal, and
 * reading its tail is one short LMDB read per request.
 */
static void
forget_changed(struct admin_server *srv)
{
    struct admin_auth *a = srv->auth;
    if (!srv->dir)
        return; /* nothing was cached: caching needs the directory */
    MDB_txn *txn;
    if (store_reader_begin(srv->dir, &txn) < 0) {
        memset(a->cache, 0, sizeof(a->cache)); /* cannot tell what changed: trust nothing */
        return;
    }
    void *st = store_reader_handler_state(srv->dir);
    if (!a->journal_known) {
        /* The first look: the cache is empty, so only the position matters. */
        if (dir_changes_last(st, txn, &a->journal_seq) == 0)
            a->journal_known = true;
        mdb_txn_abort(txn);
        return;
    }
    for (;;) {
        uint64_t last = a->journal_seq;
        bool reset = false;
        int ret = dir_changes_since(st, txn, a->journal_seq, 1000, forget_cb, a, &last, &reset);
        if (ret < 0 || reset) {
            memset(a->cache, 0, sizeof(a->cache));
            if (ret == 0)
                a->journal_seq = last;
            break;
        }
        if (last == a->journal_seq)
            break;
        a->journal_seq = last;
    }
    mdb_txn_abort(txn);
}

/* The client's key for the failure delay: its address, or its uid on the unix socket. */
static void
client_addr(const struct admin_call *call, char out[64])
{
    out[0] = '\0';
    struct evhttp_connection *evcon = evhttp_request_get_connection(call->req);
    if (call->srv->transport == ADMIN_TRANSPORT_LOCAL) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            snprintf(out, 64, "uid:%u", (unsigned)cred.uid);
        return;
    }
    char *host = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evcon, &host, &port);
    snprintf(out, 64, "%s", host ? host : "?");
}

static void
delayed_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct auth_delayed *d = arg;
    struct admin_auth *a = d->auth;
    for (struct auth_delayed **pp = &a->delayed; *pp; pp = &(*pp)->next)
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    event_free(d->timer);
    struct admin_call *call = d->call;
    char message[sizeof(d->message)];
    memcpy(message, d->message, sizeof(message));
    free(d);
    admin_reply_error(call, 401, NULL, "%s", message);
}

/* Answers 401 after the client's current delay; the delay doubles with each failure. */
static void
refuse(struct admin_call *call, const char *message)
{
    struct admin_server *srv = call->srv;
    struct admin_auth *a = srv->auth;
    srv->stats.auth_failures++;
    char addr[64];
    client_addr(call, addr);
    uint32_t ms = auth_delay_failure(a->delays, addr, time(NULL));
    struct auth_delayed *d = calloc(1, sizeof(*d));
    if (!d)
        log_fatal("out of memory");
    d->auth = a;
    d->call = call;
    snprintf(d->message, sizeof(d->message), "%s", message);
    d->timer = evtimer_new(srv->base, delayed_cb, d);
    if (!d->timer)
        log_fatal("out of memory");
    d->next = a->delayed;
    a->delayed = d;
    admin_call_watch_close(call);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(d->timer, &tv);
}

static void
succeed(struct admin_call *call, void (*next)(struct admin_call *call))
{
    char addr[64];
    client_addr(call, addr);
    auth_delay_success(call->srv->auth->delays, addr);
    next(call);
}

/* The argon2id thread's verdict on a call's credentials. */
static void
verified_cb(struct admin_call *call, int result, const char *hash)
{
    (void)hash;
    if (call->gone) { /* the client went away while we checked */
        admin_call_free(call);
        return;
    }
    if (result == 0 && !call->auth_dummy) {
        cache_put(call->srv->auth, call->auth_server, call->who_name, call->auth_mac);
        succeed(call, call->auth_next);
        return;
    }
    call->who = ADMIN_WHO_NONE;
    if (result == 0 || result == -EACCES)
        refuse(call, "wrong user name or password");
    else
        admin_reply_error(call, 500, NULL, "cannot check the password: %s", tdm_strerror(result));
}

/* ---- Logins on servers without the directory role ---- */

static void
remote_login_cb(void *ctx, int status, bool from_cache)
{
    (void)from_cache;
    struct admin_call *call = ctx;
    if (call->gone) {
        admin_call_free(call);
        return;
    }
    if (status == 0) {
        succeed(call, call->auth_next);
        return;
    }
    call->who = ADMIN_WHO_NONE;
    if (status == -EACCES)
        refuse(call, "wrong user name or password");
    else if (status == -EHOSTUNREACH)
        admin_reply_error(call, 503, NULL,
                          "the directory cannot be reached and has not vouched for this login "
                          "recently: try again later");
    else
        admin_reply_error(call, 503, NULL, "cannot check the login with the directory: %s",
                          tdm_strerror(status));
}

/*
 * This server holds no passwords: the directory servers check a person's login, through the
 * directory client, whose cache keeps logins working through a short directory outage
 * (src/dirclient/). A server's key is checked by the directory too (POST /v1/auth/verify:
 * the right key of a member of `servers`, never cached): the cluster agent of a mailbox
 * server asks a transport's dumpster to resubmit after a failover (docs/cluster.md). Without
 * the directory here nothing can be authorized against an ACL, so what a server may do on
 * such a server is decided per endpoint (admin_dumpster.c).
 */
static void
remote_login(struct admin_call *call, bool server, const char *user, const char *password,
             void (*next)(struct admin_call *call))
{
    struct admin_server *srv = call->srv;
    if (!srv->remote) {
        call->who = ADMIN_WHO_NONE;
        admin_reply_error(call, 503, NULL, "%s", srv->remote_problem);
        return;
    }
    call->auth_next = next;
    admin_call_watch_close(call);
    int ret = server ? dir_client_verify_server(srv->remote, user, password, remote_login_cb, call)
                     : dir_client_login(srv->remote, user, password, remote_login_cb, call);
    if (ret < 0) {
        admin_call_unwatch(call);
        call->who = ADMIN_WHO_NONE;
        admin_reply_error(call, 503, NULL, "cannot check the login: %s", tdm_strerror(ret));
    }
}

/* Basic credentials: "user:password" or "server/<name>:key". */
static void
auth_basic(struct admin_call *call, const char *value, void (*next)(struct admin_call *call))
{
    const char *b64 = value + 6;
    while (*b64 == ' ')
        b64++;
    size_t b64_len = strlen(b64);
    /* 1024-byte password plus a 255-byte name fits well within this. */
    uint8_t raw[2048];
    size_t raw_len = 0;
    if (b64_len > 4 * sizeof(raw) / 3 ||
        sodium_base642bin(raw, sizeof(raw) - 1, b64, b64_len, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        refuse(call, "the Authorization header is not valid Basic credentials");
        return;
    }
    raw[raw_len] = '\0';
    char *colon = memchr(raw, ':', raw_len);
    if (!colon || memchr(raw, '\0', raw_len)) {
        sodium_memzero(raw, sizeof(raw));
        refuse(call, "Basic credentials must be user:password");
        return;
    }
    *colon = '\0';
    const char *user = (const char *)raw, *password = colon + 1;
    /* "server/<name>": a server authenticating with its key (its object's password). '/'
     * cannot occur in a name, so no user can be mistaken for a server. */
    bool server = !strncmp(user, "server/", 7);
    if (server)
        user += 7;
    if (!admin_req_name_ok(user, strlen(user))) {
        sodium_memzero(raw, sizeof(raw));
        refuse(call, "wrong user name or password");
        return;
    }
    uint8_t mac[crypto_generichash_BYTES];
    mac_of(call->srv->auth, server, user, password, mac);
    call->who = server ? ADMIN_WHO_SERVER : ADMIN_WHO_USER;
    memcpy(call->who_name, user, strlen(user) + 1); /* name_ok: at most DIR_NAME_MAX bytes */
    if (!(call->srv->cfg->roles & TDM_ROLE_DIRECTORY)) {
        remote_login(call, server, user, password, next);
        sodium_memzero(raw, sizeof(raw));
        return;
    }
    forget_changed(call->srv);
    if (cache_hit(call->srv->auth, server, user, mac)) {
        sodium_memzero(raw, sizeof(raw));
        succeed(call, next);
        return;
    }
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0) {
        sodium_memzero(raw, sizeof(raw));
        return;
    }
    char hash[DIR_PASSWORD_HASH_MAX];
    int ret = dir_secret_hash(state, txn, server ? DIR_KIND_SERVER : DIR_KIND_USER, user, hash);
    mdb_txn_abort(txn);
    if (ret < 0 && ret != -EACCES && ret != TDM_ENOTFOUND) {
        sodium_memzero(raw, sizeof(raw));
        call->who = ADMIN_WHO_NONE;
        admin_reply_error(call, 500, NULL, "cannot read the credentials: %s", tdm_strerror(ret));
        return;
    }
    call->auth_next = next;
    memcpy(call->auth_mac, mac, sizeof(mac));
    call->auth_server = server;
    call->auth_dummy = ret < 0;
    /* No stored secret (no such principal, or none set): hash the password instead, which
     * costs what a check costs, so the answer's timing does not tell a missing user from a
     * wrong password. */
    ret = call->auth_dummy
              ? admin_crypto_hash(call->srv->crypto, call, password, verified_cb)
              : admin_crypto_verify(call->srv->crypto, call, hash, password, verified_cb);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(hash, sizeof(hash));
    if (ret < 0) {
        call->who = ADMIN_WHO_NONE;
        admin_reply_error(call, 503, NULL,
                          "too many password checks in progress: try again in a moment");
    }
}

void
admin_auth_request(struct admin_call *call, void (*next)(struct admin_call *call))
{
    const char *h =
        evhttp_find_header(evhttp_request_get_input_headers(call->req), "Authorization");
    if (h) {
        if (strncasecmp(h, "Basic ", 6) != 0) {
            refuse(call, "only Basic authorization is supported");
            return;
        }
        auth_basic(call, h, next);
        return;
    }
    if (call->srv->transport != ADMIN_TRANSPORT_LOCAL) {
        /* No delay: nothing was guessed, and clients first try without credentials. */
        admin_reply_error(call, 401, NULL, "credentials required (Authorization: Basic)");
        return;
    }
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int fd = bufferevent_getfd(
        evhttp_connection_get_bufferevent(evhttp_request_get_connection(call->req)));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        admin_reply_error(call, 500, NULL, "SO_PEERCRED: %s", strerror(errno));
        return;
    }
    if (cred.uid != 0 && cred.uid != geteuid()) {
        admin_reply_error(call, 401, NULL,
                          "no credentials, and peer uid %u is neither root nor tandemd's "
                          "user (uid %u): give a user and password",
                          (unsigned)cred.uid, (unsigned)geteuid());
        return;
    }
    call->who = ADMIN_WHO_LOCAL;
    next(call);
}

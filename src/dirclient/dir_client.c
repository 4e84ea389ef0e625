/*
 * The directory client (dir_client.h). Every request opens its own HTTPS connection
 * (evhttp over an OpenSSL bufferevent): evhttp cannot re-handshake TLS on a connection it
 * reconnects, logins are rare next to the journal poll, and a fresh connection per request
 * makes moving to the next endpoint trivial. A request that finds no endpoint answering tries
 * each one once, starting with the one last in use.
 *
 * Lifetimes: a struct dc_req lives from dc_send() until its completion has run; evhttp owns
 * the evhttp_request and frees it after done_cb returns, so the connection (which must not be
 * freed from inside its own callback) is freed from a zero-delay event afterwards.
 */
#include "dirclient/dir_client.h"

#include "dirclient/dir_cache.h"
#include "lib/clock.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DC_DEFAULT_TIMEOUT_MS 5000u
#define DC_DEFAULT_POLL_WAIT_S 25u
#define DC_MAX_BODY (1024u * 1024u)
#define DC_CACHE_ENTRIES 65536u
#define DC_RETRY_MIN_MS 500u
#define DC_RETRY_MAX_MS 10000u
#define DC_PAGE 1000u /* journal entries asked for per poll (the server's cap) */

enum dc_type {
    DC_LOGIN,
    DC_CHANGES,
    DC_RCPT,
};

struct dc_req {
    struct dc_req *prev, *next; /* the client's requests in flight */
    struct dir_client *client;
    enum dc_type type;
    struct evhttp_connection *conn;
    size_t tries;          /* endpoints tried so far */
    struct event *answer;  /* a cached answer, given from the loop rather than the call */
    char *user, *password; /* DC_LOGIN: owned; the password is wiped before it is freed */
    bool server_key;       /* DC_LOGIN of a server's key (never cached): user is the server */
    dir_client_login_cb *cb;
    char *address; /* DC_RCPT: owned */
    struct dir_recipient rcpt;
    dir_client_rcpt_cb *rcpt_cb;
    void *ctx;
};

struct dir_client {
    struct event_base *base;
    SSL_CTX *ssl_ctx;
    struct tdm_config_endpoint endpoints[TDM_CONFIG_MAX_ENDPOINTS];
    size_t n_endpoints;
    size_t current;
    char *authorization; /* "Basic ..." */
    uint32_t timeout_ms;
    uint32_t poll_wait_s;
    struct dir_cache *cache;
    struct dc_req *requests;
    struct event *poll_timer; /* next journal poll */
    uint32_t retry_ms;
    bool polling;                    /* a DC_CHANGES request is in flight */
    struct evhttp_connection **dead; /* finished connections, freed by the reaper */
    size_t n_dead, cap_dead;
    struct event *reaper;
    bool freeing;
    struct dir_client_stats stats;
};

/* ---- Deferred work: connections freed and cache answers given outside callbacks ---- */

static void
reap(struct dir_client *c)
{
    for (size_t i = 0; i < c->n_dead; i++)
        evhttp_connection_free(c->dead[i]);
    c->n_dead = 0;
}

static void
reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap(arg);
}

/* A connection must not be freed inside its own callback: queue it for the reaper. */
static void
conn_release(struct dir_client *c, struct evhttp_connection *conn)
{
    if (!conn)
        return;
    if (c->freeing) {
        evhttp_connection_free(conn);
        return;
    }
    if (c->n_dead == c->cap_dead) {
        size_t cap = c->cap_dead ? c->cap_dead * 2 : 8;
        void *grown = realloc(c->dead, cap * sizeof(*c->dead));
        if (!grown)
            log_fatal("out of memory");
        c->dead = grown;
        c->cap_dead = cap;
    }
    c->dead[c->n_dead++] = conn;
    event_active(c->reaper, EV_TIMEOUT, 0);
}

static void
req_unlink(struct dc_req *r)
{
    struct dir_client *c = r->client;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void
req_free(struct dc_req *r)
{
    if (r->answer)
        event_free(r->answer);
    if (r->password) {
        sodium_memzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->user);
    free(r->address);
    free(r);
}

static void schedule_poll(struct dir_client *c, uint32_t delay_ms);

/* Ends r: unlinks it, releases its connection, reports status, frees it. */
static void
req_finish(struct dc_req *r, int status, bool from_cache)
{
    struct dir_client *c = r->client;
    req_unlink(r);
    conn_release(c, r->conn);
    r->conn = NULL;
    if (r->type == DC_LOGIN) {
        if (status == 0) {
            if (from_cache)
                c->stats.logins_cached++;
            else
                c->stats.logins_remote++;
        }
        r->cb(r->ctx, status, from_cache);
    } else if (r->type == DC_RCPT) {
        if (status == 0) {
            if (from_cache)
                c->stats.rcpts_cached++;
            else
                c->stats.rcpts_remote++;
        }
        r->rcpt_cb(r->ctx, status, status == 0 ? &r->rcpt : NULL, from_cache);
    } else {
        c->polling = false;
        if (!c->freeing) {
            if (status == 0) {
                c->retry_ms = 0;
                schedule_poll(c, 0);
            } else {
                c->stats.following = false;
                c->retry_ms = c->retry_ms ? c->retry_ms * 2 : DC_RETRY_MIN_MS;
                if (c->retry_ms > DC_RETRY_MAX_MS)
                    c->retry_ms = DC_RETRY_MAX_MS;
                schedule_poll(c, c->retry_ms);
            }
        }
    }
    req_free(r);
}

/* ---- Answers ---- */

/* Reads the response body as a JSON object; NULL when it is not one or too large. */
static json_t *
body_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > DC_MAX_BODY)
        return NULL;
    const char *data = (const char *)evbuffer_pullup(in, -1);
    json_error_t jerr;
    json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static int
login_answer(struct dc_req *r, json_t *doc)
{
    json_t *ok = json_object_get(doc, "ok");
    if (!json_is_boolean(ok))
        return TDM_EINVAL;
    if (!json_is_true(ok))
        return -EACCES;
    if (r->server_key)
        return 0;
    if (dir_cache_login_put(r->client->cache, r->user, r->password, tdm_clock_ms()) < 0)
        log_warn("directory client: out of memory caching a login; it will be asked again");
    return 0;
}

/* {"status":"ok","cms":"cms1","address":"192.0.2.7","port":24,"imap_port":143} into *route;
 * absent (a directory that does not say) leaves it UNSET. A directory from before imap_port
 * does not send it: the CMS's IMAP is then on the default port, as its schema says. */
static int
route_parse(json_t *doc, struct dir_route *route)
{
    memset(route, 0, sizeof(*route));
    if (!doc)
        return 0;
    const char *st = json_string_value(json_object_get(doc, "status"));
    const char *cms = json_string_value(json_object_get(doc, "cms"));
    const char *addr = json_string_value(json_object_get(doc, "address"));
    json_int_t port = json_integer_value(json_object_get(doc, "port"));
    json_t *imap = json_object_get(doc, "imap_port");
    json_int_t imap_port = imap ? json_integer_value(imap) : DIR_IMAP_PORT;
    route->status = st ? dir_route_status_parse(st) : DIR_ROUTE_UNSET;
    if (route->status == DIR_ROUTE_UNSET || (cms && strlen(cms) > DIR_NAME_MAX))
        return TDM_EINVAL;
    if (cms)
        snprintf(route->cms, sizeof(route->cms), "%s", cms);
    if (route->status != DIR_ROUTE_OK)
        return 0;
    if (!addr || strlen(addr) > DIR_ROUTE_ADDRESS_MAX || port < 1 || port > 65535 ||
        imap_port < 1 || imap_port > 65535)
        return TDM_EINVAL;
    snprintf(route->address, sizeof(route->address), "%s", addr);
    route->port = (uint16_t)port;
    route->imap_port = (uint16_t)imap_port;
    return 0;
}

/* {"status":"ok","user":"alice","database":"db1","route":{...}} into r->rcpt. */
static int
rcpt_parse(struct dc_req *r, json_t *doc)
{
    const char *st = json_string_value(json_object_get(doc, "status"));
    const char *user = json_string_value(json_object_get(doc, "user"));
    const char *db = json_string_value(json_object_get(doc, "database"));
    static const enum dir_rcpt_status all[] = {DIR_RCPT_OK, DIR_RCPT_UNKNOWN, DIR_RCPT_NO_MAILBOX,
                                               DIR_RCPT_DISABLED};
    memset(&r->rcpt, 0, sizeof(r->rcpt));
    bool known = false;
    for (size_t i = 0; st && i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(st, dir_rcpt_status_name(all[i]))) {
            r->rcpt.status = all[i];
            known = true;
        }
    if (!known || (user && strlen(user) > DIR_NAME_MAX) || (db && strlen(db) > DIR_NAME_MAX))
        return TDM_EINVAL;
    if (r->rcpt.status == DIR_RCPT_OK && (!user || !db || !user[0] || !db[0]))
        return TDM_EINVAL;
    if (user)
        snprintf(r->rcpt.user, sizeof(r->rcpt.user), "%s", user);
    if (db)
        snprintf(r->rcpt.database, sizeof(r->rcpt.database), "%s", db);
    if (r->rcpt.status != DIR_RCPT_OK)
        return 0;
    return route_parse(json_object_get(doc, "route"), &r->rcpt.route);
}

static int
rcpt_answer(struct dc_req *r, json_t *doc)
{
    int ret = rcpt_parse(r, doc);
    if (ret < 0)
        return ret;
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text || dir_cache_rcpt_put(r->client->cache, r->address, text, tdm_clock_ms()) < 0)
        log_warn("directory client: out of memory caching a recipient; it will be asked again");
    free(text);
    return 0;
}

static int
changes_answer(struct dir_client *c, json_t *doc)
{
    json_t *last = json_object_get(doc, "last");
    json_t *reset = json_object_get(doc, "reset");
    json_t *changes = json_object_get(doc, "changes");
    if (!json_is_integer(last) || json_integer_value(last) < 0 || !json_is_boolean(reset) ||
        !json_is_array(changes))
        return TDM_EINVAL;
    if (json_is_true(reset)) {
        dir_cache_reset(c->cache);
        c->stats.resets++;
    } else {
        size_t i;
        json_t *ch;
        json_array_foreach(changes, i, ch)
        {
            const char *kind = json_string_value(json_object_get(ch, "kind"));
            const char *name = json_string_value(json_object_get(ch, "name"));
            enum dir_kind k = kind ? dir_kind_parse(kind) : 0;
            if (!k || !name) {
                /* We cannot tell what changed: the only safe answer is to forget it all. */
                dir_cache_reset(c->cache);
                c->stats.resets++;
                break;
            }
            dir_cache_invalidate(c->cache, k, name);
        }
    }
    c->stats.journal_seq = (uint64_t)json_integer_value(last);
    c->stats.following = true;
    dir_cache_journal_ok(c->cache, tdm_clock_ms());
    return 0;
}

static int dc_send(struct dc_req *r);

static void
done_cb(struct evhttp_request *req, void *arg)
{
    struct dc_req *r = arg;
    struct dir_client *c = r->client;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0 || code >= 500) {
        /* Unreachable, TLS failed, timed out, or the server could not answer: next endpoint. */
        log_info("directory client: %s:%u %s", c->endpoints[c->current].address.text,
                 c->endpoints[c->current].port,
                 code ? "answered with a server error" : "did not answer");
        conn_release(c, r->conn);
        r->conn = NULL;
        c->current = (c->current + 1) % c->n_endpoints;
        if (++r->tries < c->n_endpoints && dc_send(r) == 0)
            return;
        c->stats.failures++;
        if (r->type == DC_LOGIN && !r->server_key &&
            dir_cache_login_ok(c->cache, r->user, r->password, tdm_clock_ms())) {
            req_finish(r, 0, true);
            return;
        }
        req_finish(r, -EHOSTUNREACH, false);
        return;
    }
    int status;
    json_t *doc = code == 200 ? body_json(req) : NULL;
    if (code == 401 || code == 403) {
        log_error("directory client: the directory refused this server's credentials (HTTP %d):"
                  " check the server object's key and its membership of servers",
                  code);
        status = -EPERM;
    } else if (!doc) {
        log_error("directory client: unexpected answer (HTTP %d) from %s:%u", code,
                  c->endpoints[c->current].address.text, c->endpoints[c->current].port);
        status = TDM_EINVAL;
    } else if (r->type == DC_LOGIN) {
        status = login_answer(r, doc);
    } else if (r->type == DC_RCPT) {
        status = rcpt_answer(r, doc);
    } else {
        status = changes_answer(c, doc);
    }
    json_decref(doc);
    req_finish(r, status, false);
}

/* ---- Sending ---- */

static char *
request_uri(const struct dc_req *r)
{
    char *uri = NULL;
    if (r->type == DC_LOGIN)
        return strdup("/v1/auth/verify");
    if (r->type == DC_RCPT) {
        char *enc = evhttp_uriencode(r->address, -1, 0);
        if (enc && asprintf(&uri, "/v1/recipients/%s", enc) < 0)
            uri = NULL;
        free(enc);
        return uri;
    }
    if (asprintf(&uri, "/v1/changes?since=%llu&wait=%u",
                 (unsigned long long)r->client->stats.journal_seq, r->client->poll_wait_s) < 0)
        return NULL;
    return uri;
}

static char *
request_body(const struct dc_req *r)
{
    if (r->type != DC_LOGIN)
        return NULL;
    json_t *doc = json_pack("{s:s, s:s}", r->server_key ? "server" : "user", r->user, "password",
                            r->password);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return text;
}

/* Sends r to the current endpoint. Returns 0 (done_cb will run) or a negative code. */
static int
dc_send(struct dc_req *r)
{
    struct dir_client *c = r->client;
    const struct tdm_config_endpoint *ep = &c->endpoints[c->current];
    SSL *ssl;
    char *why = NULL;
    if (tls_client_ssl_new(c->ssl_ctx, ep->address.text, &ssl, &why) < 0) {
        log_error("directory client: %s", why ? why : "out of memory");
        free(why);
        return TDM_EINVAL;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                       BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return -ENOMEM;
    }
    r->conn = evhttp_connection_base_bufferevent_new(c->base, NULL, bev, ep->address.text,
                                                     (uint16_t)ep->port);
    if (!r->conn) {
        bufferevent_free(bev);
        return -ENOMEM;
    }
    uint32_t timeout = c->timeout_ms;
    if (r->type == DC_CHANGES)
        timeout += c->poll_wait_s * 1000u;
    struct timeval tv = {.tv_sec = timeout / 1000u, .tv_usec = (timeout % 1000u) * 1000u};
    evhttp_connection_set_timeout_tv(r->conn, &tv);
    evhttp_connection_set_retries(r->conn, 0);

    struct evhttp_request *req = evhttp_request_new(done_cb, r);
    char *uri = request_uri(r);
    char *body = request_body(r);
    int ret = -ENOMEM;
    if (!req || !uri || (r->type == DC_LOGIN && !body))
        goto fail;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", ep->address.text);
    evhttp_add_header(h, "Authorization", c->authorization);
    evhttp_add_header(h, "Connection", "close");
    if (body) {
        evhttp_add_header(h, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    }
    if (evhttp_make_request(r->conn, req, body ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, uri) < 0) {
        req = NULL; /* evhttp_make_request frees it on failure */
        goto fail;
    }
    if (body) {
        sodium_memzero(body, strlen(body)); /* it held the password */
        free(body);
    }
    free(uri);
    return 0;
fail:
    if (req)
        evhttp_request_free(req);
    if (body) {
        sodium_memzero(body, strlen(body));
        free(body);
    }
    free(uri);
    evhttp_connection_free(r->conn);
    r->conn = NULL;
    return ret;
}

static struct dc_req *
req_new(struct dir_client *c, enum dc_type type)
{
    struct dc_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->client = c;
    r->type = type;
    r->next = c->requests;
    if (c->requests)
        c->requests->prev = r;
    c->requests = r;
    return r;
}

/* ---- The journal follower ---- */

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dir_client *c = arg;
    if (c->polling)
        return;
    struct dc_req *r = req_new(c, DC_CHANGES);
    if (!r) {
        schedule_poll(c, DC_RETRY_MAX_MS);
        return;
    }
    c->polling = true;
    if (dc_send(r) < 0)
        req_finish(r, -EHOSTUNREACH, false);
}

static void
schedule_poll(struct dir_client *c, uint32_t delay_ms)
{
    struct timeval tv = {.tv_sec = delay_ms / 1000u, .tv_usec = (delay_ms % 1000u) * 1000u};
    event_add(c->poll_timer, &tv);
}

/* ---- Logins ---- */

static void
cached_login_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req_finish(arg, 0, true);
}

int
dir_client_login(struct dir_client *c, const char *user, const char *password,
                 dir_client_login_cb *cb, void *ctx)
{
    struct dc_req *r = req_new(c, DC_LOGIN);
    if (!r)
        return -ENOMEM;
    r->cb = cb;
    r->ctx = ctx;
    r->user = strdup(user);
    r->password = strdup(password);
    if (!r->user || !r->password) {
        req_unlink(r);
        req_free(r);
        return -ENOMEM;
    }
    /* While the journal is followed, a cached login is as good as the directory's word. */
    if (dir_cache_login_ok(c->cache, user, password, tdm_clock_ms()) &&
        (r->answer = evtimer_new(c->base, cached_login_cb, r)) != NULL) {
        event_active(r->answer, EV_TIMEOUT, 0);
        return 0;
    }
    int ret = dc_send(r);
    if (ret < 0) {
        req_unlink(r);
        req_free(r);
    }
    return ret;
}

int
dir_client_verify_server(struct dir_client *c, const char *server, const char *key,
                         dir_client_login_cb *cb, void *ctx)
{
    struct dc_req *r = req_new(c, DC_LOGIN);
    if (!r)
        return -ENOMEM;
    r->cb = cb;
    r->ctx = ctx;
    r->server_key = true;
    r->user = strdup(server);
    r->password = strdup(key);
    int ret = !r->user || !r->password ? -ENOMEM : dc_send(r);
    if (ret < 0) {
        req_unlink(r);
        req_free(r);
    }
    return ret;
}

/* ---- Recipients ---- */

static void
cached_rcpt_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    req_finish(arg, 0, true);
}

int
dir_client_recipient(struct dir_client *c, const char *local, const char *domain,
                     dir_client_rcpt_cb *cb, void *ctx)
{
    if (strlen(local) + strlen(domain) + 1 > 2 * DIR_NAME_MAX + 1)
        return TDM_EINVAL;
    struct dc_req *r = req_new(c, DC_RCPT);
    if (!r)
        return -ENOMEM;
    r->rcpt_cb = cb;
    r->ctx = ctx;
    if (asprintf(&r->address, domain[0] ? "%s@%s" : "%s%s", local, domain) < 0) {
        r->address = NULL;
        req_unlink(r);
        req_free(r);
        return -ENOMEM;
    }
    const char *cached = dir_cache_rcpt_get(c->cache, r->address, tdm_clock_ms());
    if (cached) {
        json_t *doc = json_loads(cached, 0, NULL);
        int ok = doc ? rcpt_parse(r, doc) : TDM_EINVAL;
        json_decref(doc);
        if (ok == 0 && (r->answer = evtimer_new(c->base, cached_rcpt_cb, r)) != NULL) {
            event_active(r->answer, EV_TIMEOUT, 0);
            return 0;
        }
    }
    int ret = dc_send(r);
    if (ret < 0) {
        req_unlink(r);
        req_free(r);
    }
    return ret;
}

/* ---- Life cycle ---- */

int
dir_client_new(struct event_base *base, const struct dir_client_options *opt,
               struct dir_client **client_r, char **error_r)
{
    *error_r = NULL;
    if (opt->n_endpoints == 0 || opt->n_endpoints > TDM_CONFIG_MAX_ENDPOINTS) {
        *error_r = strdup("no directory endpoint configured ([directory] endpoints)");
        return TDM_EINVAL;
    }
    struct dir_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->base = base;
    memcpy(c->endpoints, opt->endpoints, opt->n_endpoints * sizeof(*opt->endpoints));
    c->n_endpoints = opt->n_endpoints;
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DC_DEFAULT_TIMEOUT_MS;
    c->poll_wait_s = opt->poll_wait_s ? opt->poll_wait_s : DC_DEFAULT_POLL_WAIT_S;
    int ret = tls_client_ctx_new(opt->ca_file, NULL, NULL, &c->ssl_ctx, error_r);
    if (ret < 0)
        goto fail;
    ret = -ENOMEM;
    /* Basic credentials: base64("server/<name>:<key>"). */
    char *cred = NULL;
    if (asprintf(&cred, "server/%s:%s", opt->server_name, opt->key) < 0)
        goto fail;
    size_t b64 = sodium_base64_ENCODED_LEN(strlen(cred), sodium_base64_VARIANT_ORIGINAL);
    c->authorization = malloc(6 + b64);
    if (!c->authorization) {
        sodium_memzero(cred, strlen(cred));
        free(cred);
        goto fail;
    }
    memcpy(c->authorization, "Basic ", 6);
    sodium_bin2base64(c->authorization + 6, b64, (const unsigned char *)cred, strlen(cred),
                      sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(cred, strlen(cred));
    free(cred);
    if ((ret = dir_cache_new(opt->cache_ttl_ms, DC_CACHE_ENTRIES, &c->cache)) < 0)
        goto fail;
    ret = -ENOMEM;
    c->poll_timer = evtimer_new(base, poll_cb, c);
    c->reaper = evtimer_new(base, reaper_cb, c);
    if (!c->poll_timer || !c->reaper)
        goto fail;
    schedule_poll(c, 0);
    *client_r = c;
    return 0;
fail:
    if (!*error_r && ret == -ENOMEM)
        *error_r = strdup("out of memory");
    dir_client_free(&c);
    return ret;
}

void
dir_client_free(struct dir_client **client)
{
    struct dir_client *c = *client;
    if (!c)
        return;
    c->freeing = true;
    while (c->requests) {
        struct dc_req *r = c->requests;
        if (r->conn) {
            /* Freeing the connection cancels its request without calling done_cb. */
            evhttp_connection_free(r->conn);
            r->conn = NULL;
        }
        req_finish(r, TDM_ECLOSED, false);
    }
    if (c->poll_timer)
        event_free(c->poll_timer);
    reap(c);
    free(c->dead);
    if (c->reaper)
        event_free(c->reaper);
    dir_cache_free(&c->cache);
    if (c->authorization) {
        sodium_memzero(c->authorization, strlen(c->authorization));
        free(c->authorization);
    }
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    free(c);
    *client = NULL;
}

void
dir_client_get_stats(const struct dir_client *c, struct dir_client_stats *stats_r)
{
    *stats_r = c->stats;
    stats_r->endpoint = c->current;
    stats_r->cache_entries = dir_cache_size(c->cache);
}

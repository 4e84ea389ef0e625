/*
 * The admin API's HTTP side: evhttp on the listening socket (TLS through a bufferevent_openssl
 * for [listen admin], plain on the unix socket), one call per request, routing by path, the
 * JSON answers and errors of docs/formats/admin-api.md, and the one way a change leaves this
 * process: a COMMIT to the core, answered only when the core says it is durable.
 */
#include "admin/admin_int.h"
#include "dirclient/dir_client.h"
#include "directory/dir_local.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proto/json/admin_request.h"
#include "store/store_reader.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* evhttp refuses bodies over this itself (with its own 413 page). Ours is a little larger
 * than the decoder's limit so that the decoder, which answers in JSON, sees most too-large
 * bodies first. */
#define ADMIN_HTTP_BODY_MAX (ADMIN_REQ_BODY_MAX + 64 * 1024)
#define ADMIN_HTTP_HEADERS_MAX (16 * 1024)
#define ADMIN_HTTP_TIMEOUT_S 90 /* above the longest held answer (/v1/changes?wait=60) */

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static const char *
error_code(int status)
{
    switch (status) {
    case 400:
        return "bad-request";
    case 401:
        return "unauthenticated";
    case 403:
        return "forbidden";
    case 404:
        return "not-found";
    case 405:
        return "method-not-allowed";
    case 409:
        return "conflict";
    case 413:
        return "too-large";
    case 503:
        return "unavailable";
    default:
        return "internal";
    }
}

/* ---- calls ---- */

static void
call_closed_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct admin_call *call = arg;
    /* We have not replied, so evhttp detached the request from the dying connection instead
     * of freeing it (evhttp_connection_incoming_fail): nothing can reach the client any more,
     * and the request is ours to free, which admin_call_free does. */
    call->gone = true;
}

void
admin_call_watch_close(struct admin_call *call)
{
    if (call->req && !call->gone)
        evhttp_connection_set_closecb(evhttp_request_get_connection(call->req), call_closed_cb,
                                      call);
}

void
admin_call_unwatch(struct admin_call *call)
{
    struct evhttp_connection *evcon =
        call->req && !call->gone ? evhttp_request_get_connection(call->req) : NULL;
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
}

void
admin_call_free(struct admin_call *call)
{
    struct admin_server *srv = call->srv;
    if (call->req && call->gone)
        evhttp_request_free(call->req); /* detached: see call_closed_cb */
    else
        admin_call_unwatch(call); /* the request stays evhttp's (shutdown frees it) */
    if (call->prev)
        call->prev->next = call->next;
    else
        srv->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    for (size_t i = 0; i < call->n_segs; i++)
        free(call->segs[i]);
    free(call->query);
    free(call->flush_name);
    free(call);
}

void
admin_reply_buffer(struct admin_call *call, int status, const char *content_type,
                   struct evbuffer *body)
{
    if (!call->gone) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(call->req);
        evhttp_add_header(h, "Content-Type", content_type);
        evhttp_add_header(h, "Cache-Control", "no-store");
        admin_call_unwatch(call);
        evhttp_send_reply(call->req, status, reason_phrase(status), body);
        call->req = NULL; /* evhttp's again: it frees the request once the reply is sent */
    }
    admin_call_free(call);
}

void
admin_reply_json(struct admin_call *call, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    struct evbuffer *out = evbuffer_new();
    if (!text || !out)
        log_fatal("out of memory");
    evbuffer_add(out, text, strlen(text));
    evbuffer_add(out, "\n", 1);
    free(text);
    json_decref(doc);
    admin_reply_buffer(call, status, "application/json", out);
    evbuffer_free(out);
}

void
admin_reply_error(struct admin_call *call, int status, json_t *extra, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *err = extra ? extra : json_object();
    json_object_set_new(err, "status", json_integer(status));
    json_object_set_new(err, "code", json_string(error_code(status)));
    /* json_string refuses invalid UTF-8 (a name from a path may hold any byte): fall back to
     * a message without the detail rather than no message. */
    json_t *m = json_string(msg);
    json_object_set_new(err, "message", m ? m : json_string("(message not valid UTF-8)"));
    if (status == 401 && !call->gone)
        evhttp_add_header(evhttp_request_get_output_headers(call->req), "WWW-Authenticate",
                          "Basic realm=\"tandem\"");
    if (status == 403)
        call->srv->stats.forbidden++;
    if (status >= 500)
        log_warn("%s %s: %d %s", call->method == EVHTTP_REQ_GET ? "GET" : "request",
                 call->gone ? "(client gone)" : evhttp_request_get_uri(call->req), status, msg);
    admin_reply_json(call, status, json_pack("{s:o}", "error", err));
}

const char *
admin_who_text(const struct admin_call *call, char *buf, size_t size)
{
    switch (call->who) {
    case ADMIN_WHO_LOCAL:
        snprintf(buf, size, "local");
        break;
    case ADMIN_WHO_USER:
        snprintf(buf, size, "user:%s", call->who_name);
        break;
    case ADMIN_WHO_SERVER:
        snprintf(buf, size, "server:%s", call->who_name);
        break;
    case ADMIN_WHO_NONE:
        snprintf(buf, size, "nobody");
        break;
    }
    return buf;
}

bool
admin_who_principal(const struct admin_call *call, struct dir_principal *who_r)
{
    if (call->who != ADMIN_WHO_USER && call->who != ADMIN_WHO_SERVER)
        return false;
    who_r->kind = call->who == ADMIN_WHO_USER ? DIR_KIND_USER : DIR_KIND_SERVER;
    who_r->name = call->who_name;
    return true;
}

/* ---- the directory database ---- */

int
admin_dir_begin(struct admin_call *call, void **state_r, MDB_txn **txn_r)
{
    struct admin_server *srv = call->srv;
    if (!(srv->cfg->roles & TDM_ROLE_DIRECTORY)) {
        admin_reply_error(call, 503, NULL,
                          "server %s does not have the directory role: ask a directory server",
                          srv->cfg->server);
        return -1;
    }
    const char *why;
    int ret = dir_local_reader(srv->cfg->datadir, &srv->dir, &why);
    if (ret == -EAGAIN) {
        admin_reply_error(call, 503, NULL,
                          "the directory database is still being created: try again");
        return -1;
    }
    if (ret < 0) {
        admin_reply_error(call, 503, NULL, "the directory database of %s cannot be read: %s",
                          srv->cfg->datadir, why ? why : tdm_strerror(ret));
        return -1;
    }
    if ((ret = store_reader_begin(srv->dir, txn_r)) < 0) {
        admin_reply_error(call, 503, NULL, "cannot read the directory database: %s",
                          tdm_strerror(ret));
        return -1;
    }
    *state_r = store_reader_handler_state(srv->dir);
    return 0;
}

void
admin_reply_storage_error(struct admin_call *call, int err, const char *what)
{
    if (err == TDM_ENOTFOUND)
        admin_reply_error(call, 404, json_pack("{s:s}", "object", what), "no such object: %s",
                          what);
    else
        admin_reply_error(call, 500, NULL, "reading %s: %s", what, tdm_strerror(err));
}

/* ---- commits ---- */

static void
commit_done_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    struct admin_server *srv = call->srv;
    char obj[DIR_NAME_MAX + 32];
    snprintf(obj, sizeof(obj), "%s/%s", dir_kind_name(call->kind) ? dir_kind_name(call->kind) : "?",
             call->name);
    if (status < 0) {
        srv->stats.commit_failures++;
        /* The record may or may not be in the log: say so, rather than guess. */
        admin_reply_error(call, 503, NULL,
                          "the connection to the core dropped while committing the change to %s; "
                          "it may or may not have been made: read it back, then retry",
                          obj);
        return;
    }
    int st = reply->u.commit_reply.status;
    if (st == 0) {
        srv->stats.commits++;
        if (call->flush_name)
            admin_auth_forget(srv->auth, call->kind == DIR_KIND_SERVER, call->flush_name);
        if (call->gone) {
            admin_call_free(call); /* durable, but nobody is left to tell */
            return;
        }
        call->on_commit(call);
        return;
    }
    srv->stats.commit_failures++;
    switch (st) {
    case TDM_ECONFLICT:
        admin_reply_error(call, 409, json_pack("{s:s}", "object", obj),
                          "%s changed since the version given: read it again", obj);
        break;
    case TDM_EEXIST:
        admin_reply_error(call, 409, json_pack("{s:s}", "object", obj), "%s already exists", obj);
        break;
    case TDM_ENOTFOUND:
        admin_reply_error(call, 409, json_pack("{s:s}", "object", obj),
                          "%s, or an object it names, does not exist", obj);
        break;
    case TDM_EINVAL:
        admin_reply_error(call, 400, NULL, "the directory refused the change to %s", obj);
        break;
    case TDM_ENOSPACE:
    case TDM_EFAILED:
    case TDM_ECLOSED:
        admin_reply_error(call, 503, NULL, "the directory database refuses commits: %s",
                          tdm_strerror(st));
        break;
    default:
        admin_reply_error(call, 500, NULL, "committing the change to %s: %s", obj,
                          tdm_strerror(st));
    }
}

void
admin_commit(struct admin_call *call, const struct dir_op *op)
{
    struct admin_server *srv = call->srv;
    uint8_t *payload = NULL;
    size_t len = 0;
    const char *why = NULL;
    int ret = dir_op_encode(op, &payload, &len, &why);
    if (ret == -ENOMEM)
        log_fatal("out of memory");
    if (ret < 0) {
        /* The encoder checks attrs against the kind's schema and names the key. */
        admin_reply_error(call, 400, NULL, "%s", why ? why : tdm_strerror(ret));
        return;
    }
    ret = core_link_commit(srv->core, DIR_LOCAL_DB, op->type, payload, len, commit_done_cb, call);
    free(payload);
    if (ret == TDM_ECLOSED) {
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting); nothing "
                          "was changed: try again in a moment");
        return;
    }
    if (ret < 0) {
        admin_reply_error(call, 500, NULL, "cannot send the change to the core: %s",
                          tdm_strerror(ret));
        return;
    }
    /* The client may leave before the core answers. */
    admin_call_watch_close(call);
}

/* ---- routing ---- */

static bool
seg_is(const struct admin_call *call, size_t i, const char *s)
{
    return i < call->n_segs && strcmp(call->segs[i], s) == 0;
}

static void
route_authed(struct admin_call *call)
{
    if (seg_is(call, 0, "metrics") && call->n_segs == 1)
        return call->method == EVHTTP_REQ_GET ? admin_metrics_serve(call)
                                              : admin_reply_error(call, 405, NULL, "use GET");
    if (!seg_is(call, 0, "v1") || call->n_segs < 2) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    const char *what = call->segs[1];
    if (!strcmp(what, "objects"))
        return admin_objects_serve(call);
    if (!strcmp(what, "auth") && call->n_segs == 3 && seg_is(call, 2, "verify"))
        return admin_auth_verify_serve(call);
    if (!strcmp(what, "recipients") && call->n_segs == 3)
        return admin_recipients_serve(call);
    if (!strcmp(what, "copies"))
        return admin_copies_serve(call);
    if (!strcmp(what, "databases"))
        return admin_databases_serve(call);
    if (!strcmp(what, "dumpster"))
        return admin_dumpster_serve(call);
    if (!strcmp(what, "cms"))
        return admin_cms_serve(call);
    void (*get)(struct admin_call *) = !strcmp(what, "whoami")    ? admin_whoami_serve
                                       : !strcmp(what, "status")  ? admin_status_serve
                                       : !strcmp(what, "cluster") ? admin_cluster_serve
                                       : !strcmp(what, "witness") ? admin_witness_serve
                                       : !strcmp(what, "events")  ? admin_events_serve
                                       : !strcmp(what, "changes") ? admin_changes_serve
                                                                  : NULL;
    if (!get || call->n_segs != 2) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != EVHTTP_REQ_GET) {
        admin_reply_error(call, 405, NULL, "use GET");
        return;
    }
    get(call);
}

/* Splits the path into percent-decoded segments. Returns false after answering 400/404. */
static bool
split_path(struct admin_call *call, const char *path)
{
    if (!path || path[0] != '/') {
        admin_reply_error(call, 404, NULL, "no such path");
        return false;
    }
    const char *p = path + 1;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (call->n_segs == sizeof(call->segs) / sizeof(call->segs[0])) {
            admin_reply_error(call, 404, NULL, "no such path");
            return false;
        }
        char *raw = strndup(p, n);
        size_t dlen = 0;
        char *seg = raw ? evhttp_uridecode(raw, 0, &dlen) : NULL;
        free(raw);
        if (!seg)
            log_fatal("out of memory");
        call->segs[call->n_segs++] = seg;
        /* A NUL from %00 would cut the name short: refuse it here, with the other bytes a name
         * cannot hold checked where the segment is used as a name. */
        if (dlen != strlen(seg)) {
            admin_reply_error(call, 400, NULL, "path segment %zu holds a NUL byte", call->n_segs);
            return false;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

static void
http_request_cb(struct evhttp_request *req, void *arg)
{
    struct admin_server *srv = arg;
    struct admin_call *call = calloc(1, sizeof(*call));
    if (!call)
        log_fatal("out of memory");
    call->srv = srv;
    call->req = req;
    call->method = evhttp_request_get_command(req);
    call->next = srv->calls;
    if (srv->calls)
        srv->calls->prev = call;
    srv->calls = call;
    srv->stats.requests++;

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q && !(call->query = strdup(q)))
        log_fatal("out of memory");
    if (!split_path(call, uri ? evhttp_uri_get_path(uri) : NULL))
        return;
    /* The one unauthenticated endpoint: load balancers and `tandemctl` probe it. */
    if (call->n_segs == 2 && seg_is(call, 0, "v1") && seg_is(call, 1, "health")) {
        admin_reply_json(call, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    admin_auth_request(call, route_authed);
}

static struct bufferevent *
tls_bevcb(struct event_base *base, void *arg)
{
    struct admin_server *srv = arg;
    SSL *ssl = SSL_new(srv->ssl_ctx);
    if (!ssl)
        return NULL; /* evhttp drops the connection */
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

int
admin_server_new(struct event_base *base, const struct tdm_config *cfg, int listen_fd,
                 enum admin_transport transport, struct admin_server **server_r, char **error_r)
{
    struct admin_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        log_fatal("out of memory");
    srv->base = base;
    srv->cfg = cfg;
    srv->transport = transport;
    srv->listen_fd = listen_fd;
    clock_gettime(CLOCK_MONOTONIC, &srv->started);
    int ret;
    if (transport == ADMIN_TRANSPORT_TLS) {
        struct tls_files files;
        tls_files_from_config(cfg, &files);
        ret = tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE,
                                 &srv->ssl_ctx, error_r);
        tls_files_clear(&files);
        if (ret < 0) {
            free(srv);
            return ret;
        }
    }
    if (admin_auth_new(&srv->auth) < 0)
        log_fatal("out of memory");
    ret = admin_crypto_new(base, &srv->crypto);
    if (ret < 0) {
        if (asprintf(error_r, "cannot start the password thread: %s", strerror(-ret)) < 0)
            *error_r = NULL;
        goto fail;
    }
    if (!(cfg->roles & TDM_ROLE_DIRECTORY)) {
        /* People's logins are checked by the directory servers; a problem here is the answer
         * to each login (503), not a reason to refuse the local socket's operator. */
        char *why = NULL;
        if (dir_client_from_config(base, cfg, &srv->remote, &why) < 0) {
            srv->remote = NULL;
            log_error("admin API: logins cannot be checked: %s", why ? why : "out of memory");
            if (asprintf(&srv->remote_problem, "logins cannot be checked with the directory: %s",
                         why ? why : "out of memory") < 0)
                log_fatal("out of memory");
        }
        free(why);
    }
    char sock[4096];
    snprintf(sock, sizeof(sock), "%s/run/core.sock", cfg->datadir);
    ret = core_link_new(base, sock, TDM_IPC_WORKER_ADMIN, &srv->core);
    if (ret < 0) {
        if (asprintf(error_r, "cannot set up the link to the core at %s: %s", sock,
                     tdm_strerror(ret)) < 0)
            *error_r = NULL;
        goto fail;
    }
    srv->http = evhttp_new(base);
    if (!srv->http)
        log_fatal("out of memory");
    evhttp_set_max_body_size(srv->http, ADMIN_HTTP_BODY_MAX);
    evhttp_set_max_headers_size(srv->http, ADMIN_HTTP_HEADERS_MAX);
    evhttp_set_timeout(srv->http, ADMIN_HTTP_TIMEOUT_S);
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST |
                                              EVHTTP_REQ_DELETE);
    evhttp_set_gencb(srv->http, http_request_cb, srv);
    if (srv->ssl_ctx)
        evhttp_set_bevcb(srv->http, tls_bevcb, srv);
    evutil_make_socket_nonblocking(listen_fd);
    /* evhttp's listener closes listen_fd when the server is freed. */
    if (!evhttp_accept_socket_with_handle(srv->http, listen_fd)) {
        if (asprintf(error_r, "evhttp cannot accept on the admin socket") < 0)
            *error_r = NULL;
        goto fail;
    }
    *server_r = srv;
    return 0;
fail:
    if (srv->http)
        evhttp_free(srv->http);
    dir_client_free(&srv->remote);
    free(srv->remote_problem);
    core_link_free(&srv->core);
    admin_crypto_free(&srv->crypto);
    admin_auth_free(&srv->auth);
    if (srv->ssl_ctx)
        SSL_CTX_free(srv->ssl_ctx);
    free(srv);
    return -EIO;
}

void
admin_server_reload(struct admin_server *server, const struct tdm_config *cfg)
{
    server->cfg = cfg;
}

void
admin_server_free(struct admin_server **server)
{
    struct admin_server *srv = *server;
    if (!srv)
        return;
    admin_streams_close_all(srv);
    admin_polls_close_all(srv);
    admin_auth_cancel_all(srv->auth);
    /* Joins the argon2id thread; calls it still held are freed with the others below. */
    admin_crypto_free(&srv->crypto);
    /* Fails remote logins in flight: their callbacks answer 503 while evhttp is still here. */
    dir_client_free(&srv->remote);
    free(srv->remote_problem);
    /* Fails commits in flight: their callbacks answer 503 on connections evhttp is about to
     * close, and free the calls. */
    core_link_free(&srv->core);
    while (srv->calls)
        admin_call_free(srv->calls);
    evhttp_free(srv->http);
    admin_auth_free(&srv->auth);
    store_reader_free(&srv->dir);
    if (srv->ssl_ctx)
        SSL_CTX_free(srv->ssl_ctx);
    free(srv);
    *server = NULL;
}

/*
 * The last failover of each CMS and the resubmission from the transports' dumpsters
 * (core_cluster_failover.h). The record is a JSON document, the same one GET /v1/cluster
 * shows and the file in <datadir>/cluster/ holds; the requests update its "resubmission" part
 * in place and have it written again at every change.
 *
 * Each request is one HTTPS exchange on its own connection (as dir_client.c does): the
 * transport answers when its resubmission is done, so a request may last long
 * (RESUBMIT_TIMEOUT_S). A connection is never freed inside its own callback: it is freed
 * from a zero-delay event afterwards.
 */
#include "tandemd/core_cluster_failover.h"

#include "dirclient/dir_client.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESUBMIT_TIMEOUT_S 600u /* one request: the transport answers when it is done */
#define RETRY_MIN_MS 1000u
#define RETRY_MAX_MS 60000u
#define RESUBMIT_MAX_BODY (64u * 1024u)

struct fo_cms;

/* One (transport, database) request. */
struct fo_req {
    struct fo_cms *owner;
    struct tdm_config_endpoint ep;
    char ep_text[46 + 16];
    char db[TDM_CONFIG_NAME_MAX + 1];
    json_t *item; /* its entry in the record's "requests" (borrowed from the record) */
    struct event *timer;
    struct evhttp_connection *conn;
    uint32_t delay_ms;
    unsigned attempts, refused_tries;
    bool failure_said;
};

struct fo_cms {
    char name[TDM_CONFIG_NAME_MAX + 1];
    json_t *record; /* NULL: none known */
    int64_t since;
    struct fo_req *reqs;
    unsigned n_reqs;
};

static struct event_base *base;
static struct fo_cms cmss[TDM_CONFIG_MAX_CMS];
static unsigned n_cmss;
static struct tdm_config_endpoint transports[TDM_CONFIG_MAX_ENDPOINTS];
static unsigned n_transports;
static char *dir;           /* <datadir>/cluster */
static char *authorization; /* "Basic base64(server/<name>:<key>)"; NULL: no key */
static SSL_CTX *tls;        /* NULL: the CA could not be loaded */
static char setup_problem[256];
static struct offload *writer;

const char *
cluster_failover_cause_name(enum cluster_failover_cause c)
{
    switch (c) {
    case CLUSTER_CAUSE_NODE_LOST:
        return "node lost";
    case CLUSTER_CAUSE_LEASE_EXPIRED:
        return "lease expired";
    case CLUSTER_CAUSE_FORCED:
        return "forced";
    case CLUSTER_CAUSE_SWITCHOVER:
        return "switchover";
    }
    return "?";
}

static struct fo_cms *
cms_get(const char *name)
{
    for (unsigned i = 0; i < n_cmss; i++)
        if (strcmp(cmss[i].name, name) == 0)
            return &cmss[i];
    if (n_cmss == TDM_CONFIG_MAX_CMS)
        return NULL;
    struct fo_cms *c = &cmss[n_cmss++];
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    return c;
}

/* ---- keeping the record: written aside, synced, renamed, on the helper thread ---- */

struct write_job {
    char *path;
    char *text;
    int err; /* set on the helper thread, said on the loop */
};

static void
write_work(void *arg)
{
    struct write_job *j = arg;
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", j->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(j->text), off = 0;
    int err = fd < 0 ? errno : 0;
    while (!err && off < len) {
        ssize_t n = write(fd, j->text + off, len - off);
        if (n < 0 && errno != EINTR)
            err = errno;
        else if (n > 0)
            off += (size_t)n;
    }
    if (!err && fdatasync(fd) < 0)
        err = errno;
    if (fd >= 0 && close(fd) < 0 && !err)
        err = errno;
    if (!err && rename(tmp, j->path) < 0)
        err = errno;
    if (!err) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || fsync(dfd) < 0)
            err = errno;
        if (dfd >= 0)
            close(dfd);
    }
    j->err = err;
}

static void
write_done(void *arg, bool ran)
{
    struct write_job *j = arg;
    if (ran && j->err)
        log_error("cluster agent: the last failover could not be kept in %s: %s", j->path,
                  strerror(j->err));
    free(j->path);
    free(j->text);
    free(j);
}

static void
keep(struct fo_cms *c)
{
    if (!writer || !dir || !c->record)
        return;
    struct write_job *j = calloc(1, sizeof(*j));
    if (!j || asprintf(&j->path, "%s/last-failover.%s.json", dir, c->name) < 0 ||
        !(j->text = json_dumps(c->record, JSON_COMPACT | JSON_SORT_KEYS))) {
        if (j)
            write_done(j, false);
        log_error("cluster agent: out of memory keeping the last failover of %s", c->name);
        return;
    }
    int ret = offload_submit(writer, write_work, write_done, j);
    if (ret < 0) {
        write_done(j, false);
        log_error("cluster agent: the last failover of %s not kept: %s", c->name,
                  tdm_strerror(ret));
    }
}

/* ---- the resubmission's status ---- */

static json_t *
resub(struct fo_cms *c)
{
    return json_object_get(c->record, "resubmission");
}

/* The resubmission's state from its requests' states; said (5071/5072) when it ends. */
static void
update_state(struct fo_cms *c)
{
    json_t *r = resub(c);
    json_t *list = json_object_get(r, "requests");
    size_t i, pending = 0, refused = 0;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *st = json_string_value(json_object_get(it, "state"));
        if (st && !strcmp(st, "pending"))
            pending++;
        else if (st && !strcmp(st, "refused"))
            refused++;
    }
    const char *before = json_string_value(json_object_get(r, "state"));
    const char *now = pending ? "pending" : refused ? "done with refusals" : "done";
    if (before && !strcmp(before, now))
        return;
    json_object_set_new(r, "state", json_string(now));
    if (!pending)
        log_info("CMS %s: resubmission from the dumpsters %s", c->name, now);
}

static void
req_free(struct fo_req *q)
{
    if (q->timer)
        event_free(q->timer);
    q->timer = NULL;
    if (q->conn)
        evhttp_connection_free(q->conn); /* its request is freed unanswered */
    q->conn = NULL;
}

static void
cancel_all(struct fo_cms *c)
{
    for (unsigned i = 0; i < c->n_reqs; i++)
        req_free(&c->reqs[i]);
    free(c->reqs);
    c->reqs = NULL;
    c->n_reqs = 0;
}

static void
free_conn_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evhttp_connection_free(arg);
}

static void
retry_later(struct fo_req *q)
{
    q->delay_ms = q->delay_ms ? q->delay_ms * 2 : RETRY_MIN_MS;
    if (q->delay_ms > RETRY_MAX_MS)
        q->delay_ms = RETRY_MAX_MS;
    struct timeval tv = {.tv_sec = q->delay_ms / 1000u, .tv_usec = (q->delay_ms % 1000u) * 1000};
    evtimer_add(q->timer, &tv);
}

static void
failed(struct fo_req *q, const char *why)
{
    struct fo_cms *c = q->owner;
    json_object_set_new(q->item, "error", json_string(why));
    if (!q->failure_said)
        event_emit(TDM_EV_CLUSTER_RESUBMIT_FAILED, c->name,
                   "CMS %s: the transport at %s did not take the request to resubmit database "
                   "%s (%s): asked again until it does",
                   c->name, q->ep_text, q->db, why);
    else
        log_info("CMS %s: resubmission of %s at %s: %s; asked again in %u ms", c->name, q->db,
                 q->ep_text, why, q->delay_ms ? q->delay_ms * 2 : RETRY_MIN_MS);
    q->failure_said = true;
    retry_later(q);
    keep(c);
}

static void
answered(struct fo_req *q, json_t *doc)
{
    struct fo_cms *c = q->owner;
    json_int_t messages = json_integer_value(json_object_get(doc, "messages"));
    json_int_t resubmitted = json_integer_value(json_object_get(doc, "resubmitted"));
    json_int_t deferred = json_integer_value(json_object_get(doc, "deferred"));
    json_int_t refused = json_integer_value(json_object_get(doc, "refused"));
    json_object_set_new(q->item, "messages", json_integer(messages));
    json_object_set_new(q->item, "resubmitted", json_integer(resubmitted));
    json_object_set_new(q->item, "deferred", json_integer(deferred));
    json_object_set_new(q->item, "refused", json_integer(refused));
    if (deferred > 0) {
        /* Not taken for now (this CMS's address still binding, the directory slow, a 4xx):
         * asked again with the back-off until taken, however long that is; only refusals
         * that cannot change (5xx, no route) are given up on. */
        char why[96];
        snprintf(why, sizeof(why), "%" JSON_INTEGER_FORMAT " recipient(s) deferred", deferred);
        failed(q, why);
        return;
    }
    if (refused > 0 && ++q->refused_tries < CLUSTER_RESUBMIT_REFUSED_TRIES) {
        char why[96];
        snprintf(why, sizeof(why), "%" JSON_INTEGER_FORMAT " recipient(s) refused", refused);
        failed(q, why);
        return;
    }
    if (refused > 0) {
        json_object_set_new(q->item, "state", json_string("refused"));
        event_emit(TDM_EV_CLUSTER_RESUBMIT_FAILED, c->name,
                   "CMS %s: the transport at %s resubmitted database %s %u times and %"
                   JSON_INTEGER_FORMAT " recipient(s) were still refused: not asked again",
                   c->name, q->ep_text, q->db, q->attempts, refused);
    } else {
        json_object_set_new(q->item, "state", json_string("acknowledged"));
        json_object_set_new(q->item, "error", json_null());
        event_emit(TDM_EV_CLUSTER_RESUBMIT_ACKED, c->name,
                   "CMS %s: the transport at %s resubmitted database %s: %" JSON_INTEGER_FORMAT
                   " message(s), %" JSON_INTEGER_FORMAT " recipient(s) taken (delivered, or "
                   "dropped as duplicates)",
                   c->name, q->ep_text, q->db, messages, resubmitted);
    }
    update_state(c);
    keep(c);
}

static void
done_cb(struct evhttp_request *req, void *arg)
{
    struct fo_req *q = arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    json_t *doc = NULL;
    if (code == 200) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        if (len <= RESUBMIT_MAX_BODY)
            doc = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
    }
    char why[160];
    if (code == 0)
        snprintf(why, sizeof(why), "no answer (unreachable, TLS refused or timed out)");
    else if (code != 200)
        snprintf(why, sizeof(why), "HTTP %d%s", code,
                 code == 401 || code == 403
                     ? ": this server's key refused (is it a member of servers?)"
                     : "");
    else if (!json_is_object(doc))
        snprintf(why, sizeof(why), "an answer that is not the resubmission's counts");
    /* evhttp frees the request after this returns; the connection goes after that. */
    struct evhttp_connection *conn = q->conn;
    q->conn = NULL;
    if (conn && event_base_once(base, -1, EV_TIMEOUT, free_conn_cb, conn, NULL) < 0)
        log_fatal("out of memory");
    if (code == 200 && json_is_object(doc))
        answered(q, doc);
    else
        failed(q, why);
    json_decref(doc);
}

/* Sends q now; a failure to even start is a failure like any other. */
static void
send_req(struct fo_req *q)
{
    struct fo_cms *c = q->owner;
    q->attempts++;
    json_object_set_new(q->item, "attempts", json_integer(q->attempts));
    if (!tls || !authorization) {
        failed(q, setup_problem);
        return;
    }
    SSL *ssl = NULL;
    char *why = NULL;
    if (tls_client_ssl_new(tls, q->ep.address.text, &ssl, &why) < 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", why ? why : "out of memory");
        free(why);
        failed(q, msg);
        return;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        log_fatal("out of memory");
    }
    q->conn = evhttp_connection_base_bufferevent_new(base, NULL, bev, q->ep.address.text,
                                                     (uint16_t)q->ep.port);
    if (!q->conn)
        log_fatal("out of memory");
    struct timeval tv = {.tv_sec = RESUBMIT_TIMEOUT_S};
    evhttp_connection_set_timeout_tv(q->conn, &tv);
    evhttp_connection_set_retries(q->conn, 0);
    struct evhttp_request *req = evhttp_request_new(done_cb, q);
    char *db = evhttp_uriencode(q->db, -1, 0);
    char uri[512], since[32];
    if (c->since == INT64_MIN)
        snprintf(since, sizeof(since), "all");
    else
        snprintf(since, sizeof(since), "%" PRId64, c->since < 0 ? 0 : c->since);
    if (!req || !db)
        log_fatal("out of memory");
    snprintf(uri, sizeof(uri), "/v1/dumpster/resubmit?database=%s&since=%s", db, since);
    free(db);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", q->ep.address.text);
    evhttp_add_header(h, "Authorization", authorization);
    evhttp_add_header(h, "Connection", "close");
    evhttp_add_header(h, "Content-Length", "0");
    if (evhttp_make_request(q->conn, req, EVHTTP_REQ_POST, uri) < 0) {
        /* evhttp_make_request freed req; not inside a callback, so the connection goes now. */
        evhttp_connection_free(q->conn);
        q->conn = NULL;
        failed(q, "the request could not be sent");
    }
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_req(arg);
}

/* Starts a request for every item of the record's "requests" still pending. */
static void
start_requests(struct fo_cms *c)
{
    json_t *list = json_object_get(resub(c), "requests");
    size_t n = json_array_size(list);
    c->reqs = n ? calloc(n, sizeof(*c->reqs)) : NULL;
    if (n && !c->reqs)
        log_fatal("out of memory");
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it)
    {
        const char *st = json_string_value(json_object_get(it, "state"));
        if (!st || strcmp(st, "pending") != 0)
            continue;
        const char *ep = json_string_value(json_object_get(it, "transport"));
        const char *db = json_string_value(json_object_get(it, "database"));
        struct fo_req *q = &c->reqs[c->n_reqs];
        memset(q, 0, sizeof(*q));
        for (unsigned t = 0; t < n_transports && ep; t++) {
            char text[sizeof(q->ep_text)];
            bool v6 = transports[t].address.family == AF_INET6;
            snprintf(text, sizeof(text), "%s%s%s:%u", v6 ? "[" : "", transports[t].address.text,
                     v6 ? "]" : "", transports[t].port);
            if (strcmp(text, ep) == 0) {
                q->ep = transports[t];
                memcpy(q->ep_text, text, sizeof(text));
            }
        }
        if (!q->ep_text[0] || !db) {
            /* Read back from a record of before a change of [cluster] transports. */
            json_object_set_new(it, "state", json_string("refused"));
            json_object_set_new(it, "error", json_string("no longer in [cluster] transports"));
            continue;
        }
        snprintf(q->db, sizeof(q->db), "%s", db);
        q->owner = c;
        q->item = it;
        q->attempts = (unsigned)json_integer_value(json_object_get(it, "attempts"));
        q->timer = evtimer_new(base, timer_cb, q);
        if (!q->timer)
            log_fatal("out of memory");
        struct timeval now = {0, 0};
        evtimer_add(q->timer, &now); /* from the loop, never inside the agent's step */
        c->n_reqs++;
    }
    update_state(c);
}

/* ---- entry points ---- */

void
cluster_failover_record(const struct cluster_failover_info *info)
{
    struct fo_cms *c = cms_get(info->cms);
    if (!c)
        return;
    cancel_all(c);
    json_decref(c->record);
    bool lossy = info->lost_records > 0 || info->lost_generations > 0;
    c->record = json_pack("{s:I,s:o,s:s,s:I,s:s,s:s,s:I,s:b,s:I,s:I}", "at", (json_int_t)info->at,
                          "from",
                          info->from && info->from[0] ? json_string(info->from) : json_null(),
                          "to", info->to, "epoch", (json_int_t)info->epoch, "cause",
                          cluster_failover_cause_name(info->cause), "why",
                          info->why ? info->why : "", "took_ms", (json_int_t)info->took_ms,
                          "lossy", lossy, "lost_records", (json_int_t)info->lost_records,
                          "lost_generations", (json_int_t)info->lost_generations);
    json_t *dbs = json_array();
    for (unsigned d = 0; d < info->n_databases; d++)
        json_array_append_new(dbs, json_string(info->databases[d]));
    json_t *r = json_pack(
        "{s:s,s:o,s:o,s:o}", "state",
        info->cause == CLUSTER_CAUSE_SWITCHOVER ? "not needed" : "not asked", "since",
        info->since == INT64_MIN ? json_null() : json_integer(info->since), "databases", dbs,
        "requests", json_array());
    if (!c->record || !r || json_object_set_new(c->record, "resubmission", r) < 0)
        log_fatal("out of memory");
    c->since = info->since;
    keep(c);
}

void
cluster_failover_resubmit(const char *cms)
{
    struct fo_cms *c = cms_get(cms);
    const char *st = c ? json_string_value(json_object_get(resub(c), "state")) : NULL;
    if (!st || strcmp(st, "not asked") != 0)
        return;
    json_t *r = resub(c);
    json_t *dbs = json_object_get(r, "databases");
    json_t *list = json_object_get(r, "requests");
    const char *from = json_string_value(json_object_get(c->record, "from"));
    bool lossy = json_is_true(json_object_get(c->record, "lossy"));
    size_t i;
    json_t *db;
    for (unsigned t = 0; t < n_transports; t++)
        json_array_foreach(dbs, i, db)
        {
            char text[46 + 16];
            bool v6 = transports[t].address.family == AF_INET6;
            snprintf(text, sizeof(text), "%s%s%s:%u", v6 ? "[" : "", transports[t].address.text,
                     v6 ? "]" : "", transports[t].port);
            json_array_append_new(list, json_pack("{s:s,s:O,s:s,s:i,s:n}", "transport", text,
                                                  "database", db, "state", "pending",
                                                  "attempts", 0, "error"));
        }
    if (n_transports == 0) {
        json_object_set_new(r, "state", json_string("no transports configured"));
        event_emit(TDM_EV_CLUSTER_RESUBMIT_FAILED, c->name,
                   "CMS %s: after the failover from %s no transport is asked to resubmit from "
                   "its dumpster: [cluster] transports names none",
                   c->name, from ? from : "(unknown)");
        keep(c);
        return;
    }
    char since[64];
    if (c->since == INT64_MIN)
        snprintf(since, sizeof(since), "all they hold");
    else
        snprintf(since, sizeof(since), "what they delivered since Unix time %" PRId64, c->since);
    event_emit(TDM_EV_CLUSTER_RESUBMIT_REQUESTED, c->name,
               "CMS %s: failover from %s%s: asking %u transport(s) to resubmit %zu database(s) "
               "from their dumpsters, %s",
               c->name, from ? from : "(unknown)", lossy ? " (lossy)" : "", n_transports,
               json_array_size(dbs), since);
    start_requests(c);
    keep(c);
}

json_t *
cluster_failover_json(const char *cms)
{
    for (unsigned i = 0; i < n_cmss; i++)
        if (strcmp(cmss[i].name, cms) == 0 && cmss[i].record)
            return json_deep_copy(cmss[i].record);
    return json_null();
}

/* The record of cms kept by an earlier run, if any. */
static void
load(const char *cms)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/last-failover.%s.json", dir, cms);
    json_error_t e;
    json_t *doc = json_load_file(path, 0, &e);
    if (!doc) {
        if (access(path, F_OK) == 0)
            log_error("cluster agent: %s cannot be read (%s): the last failover of %s is not "
                      "known",
                      path, e.text, cms);
        return;
    }
    struct fo_cms *c = json_is_object(doc) ? cms_get(cms) : NULL;
    if (!c) {
        json_decref(doc);
        return;
    }
    c->record = doc;
    json_t *since = json_object_get(resub(c), "since");
    c->since = json_is_integer(since) ? json_integer_value(since) : INT64_MIN;
    const char *st = json_string_value(json_object_get(resub(c), "state"));
    if (st && !strcmp(st, "pending")) {
        log_info("CMS %s: the resubmission after the failover from %s had not finished: asked "
                 "again",
                 cms, json_string_value(json_object_get(doc, "from")));
        start_requests(c);
    }
}

void
cluster_failover_start(struct event_base *b, const struct tdm_config *cfg)
{
    base = b;
    n_transports = cfg->cluster.transports.n;
    memcpy(transports, cfg->cluster.transports.items, n_transports * sizeof(transports[0]));
    if (asprintf(&dir, "%s/cluster", cfg->datadir) < 0)
        log_fatal("out of memory");
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        log_error("cluster agent: cannot create %s (%s): the last failover is not kept", dir,
                  strerror(errno));
    int ret = offload_new(b, 0, &writer);
    if (ret < 0)
        log_error("cluster agent: no helper thread (%s): the last failover is not kept",
                  tdm_strerror(ret));
    /* How this server authenticates to the transports: its key, as to the directory. */
    char *why = NULL, *key = NULL;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    ret = tls_client_ctx_new(files.ca, NULL, NULL, &tls, &why);
    tls_files_clear(&files);
    if (ret == 0)
        ret = dir_client_key_from_config(cfg, &key, &why);
    if (ret == 0) {
        char *cred = NULL;
        if (asprintf(&cred, "server/%s:%s", cfg->server, key) < 0)
            log_fatal("out of memory");
        size_t b64 = sodium_base64_ENCODED_LEN(strlen(cred), sodium_base64_VARIANT_ORIGINAL);
        authorization = malloc(6 + b64);
        if (!authorization)
            log_fatal("out of memory");
        memcpy(authorization, "Basic ", 6);
        sodium_bin2base64(authorization + 6, b64, (const unsigned char *)cred, strlen(cred),
                          sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero(cred, strlen(cred));
        free(cred);
    } else {
        snprintf(setup_problem, sizeof(setup_problem), "this server cannot authenticate: %s",
                 why ? why : tdm_strerror(ret));
        if (n_transports)
            log_error("cluster agent: %s; the transports cannot be asked to resubmit",
                      setup_problem);
    }
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    free(why);
    for (unsigned i = 0; i < cfg->n_cms; i++)
        load(cfg->cms[i].name);
}

void
cluster_failover_stop(void)
{
    for (unsigned i = 0; i < n_cmss; i++) {
        cancel_all(&cmss[i]);
        json_decref(cmss[i].record);
        cmss[i].record = NULL;
    }
    n_cmss = 0;
    offload_free(&writer); /* a write still queued is dropped: the one before it stays */
    if (tls)
        SSL_CTX_free(tls);
    tls = NULL;
    if (authorization) {
        sodium_memzero(authorization, strlen(authorization));
        free(authorization);
    }
    authorization = NULL;
    free(dir);
    dir = NULL;
}

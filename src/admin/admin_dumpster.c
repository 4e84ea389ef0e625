/*
 * /v1/dumpster on a transport server (docs/smtp.md, "Transport dumpster"): what the dumpster
 * holds per database (GET), and resubmission of a database's entries (POST
 * /v1/dumpster/resubmit?database=<name>&since=<unix time>|all), answered when it is done.
 */
#include "admin/admin_int.h"

#include "lib/err.h"
#include "smtp/dumpster.h"
#include "smtp/dumpster_resubmit.h"

#include <errno.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

static int
stat_cb(void *ctx, const struct dumpster_db_stat *st)
{
    json_t *list = ctx;
    json_t *o =
        json_pack("{s:s,s:I,s:I,s:I}", "database", st->database, "count", (json_int_t)st->count,
                  "bytes", (json_int_t)st->bytes, "oldest", (json_int_t)st->oldest);
    return o && json_array_append_new(list, o) == 0 ? 0 : -ENOMEM;
}

static void
status_serve(struct admin_call *call)
{
    json_t *list = json_array();
    int ret = list ? dumpster_stat(call->srv->cfg->datadir, stat_cb, list) : -ENOMEM;
    if (ret < 0) {
        json_decref(list);
        admin_reply_error(call, 500, NULL, "cannot read the dumpster: %s", tdm_strerror(ret));
        return;
    }
    admin_reply_json(call, 200, json_pack("{s:o}", "databases", list));
}

static void
resubmit_done(void *ctx, int status, const struct dumpster_resubmit_counts *c)
{
    struct admin_call *call = ctx;
    if (call->gone) {
        admin_call_free(call);
        return;
    }
    if (status < 0) {
        admin_reply_error(call, 500, NULL, "cannot list the dumpster: %s", tdm_strerror(status));
        return;
    }
    admin_reply_json(call, 200,
                     json_pack("{s:b,s:I,s:I,s:I,s:I}", "ok", 1, "messages",
                               (json_int_t)c->messages, "resubmitted", (json_int_t)c->resubmitted,
                               "deferred", (json_int_t)c->deferred, "refused",
                               (json_int_t)c->refused));
}

/* since: a Unix time, or "all". false after answering 400. */
static bool
parse_since(struct admin_call *call, const char *v, int64_t *since_r)
{
    if (v && !strcmp(v, "all")) {
        *since_r = INT64_MIN;
        return true;
    }
    char *end;
    errno = 0;
    long long t = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || t < 0) {
        admin_reply_error(call, 400, NULL, "since: a Unix time in seconds, or \"all\"");
        return false;
    }
    *since_r = t;
    return true;
}

static void
resubmit_serve(struct admin_call *call)
{
    struct evkeyvalq q;
    if (!call->query || evhttp_parse_query_str(call->query, &q) < 0) {
        admin_reply_error(call, 400, NULL, "needs ?database=<name>&since=<unix time>|all");
        return;
    }
    const char *db = evhttp_find_header(&q, "database");
    int64_t since;
    if (!db || !dumpster_database_ok(db)) {
        admin_reply_error(call, 400, NULL, "database: the name of a mailbox database");
    } else if (parse_since(call, evhttp_find_header(&q, "since"), &since)) {
        admin_call_watch_close(call);
        int ret = dumpster_resubmit_start(call->srv->base, call->srv->cfg, db, since, resubmit_done,
                                          call);
        if (ret < 0)
            admin_reply_error(call, 500, NULL, "cannot start the resubmission: %s",
                              tdm_strerror(ret));
    }
    evhttp_clear_headers(&q);
}

void
admin_dumpster_serve(struct admin_call *call)
{
    if (!(call->srv->cfg->roles & TDM_ROLE_TRANSPORT)) {
        admin_reply_error(call, 404, NULL, "this server has no transport role, so no dumpster");
        return;
    }
    bool resubmit = call->n_segs == 3 && !strcmp(call->segs[2], "resubmit");
    if (call->n_segs != 2 && !resubmit) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != (resubmit ? EVHTTP_REQ_POST : EVHTTP_REQ_GET)) {
        admin_reply_error(call, 405, NULL, resubmit ? "use POST" : "use GET");
        return;
    }
    /* On a server without the directory role, a server the directory vouched for (its key,
     * a member of `servers`: admin_auth.c's remote_login) may ask for a resubmission and see
     * the dumpster: the cluster agent of a mailbox server does after a failover
     * (docs/cluster.md). A resubmission only delivers again what was delivered, and the
     * mailbox server drops what it holds. With the directory here, its ACLs decide. */
    bool vouched = call->who == ADMIN_WHO_SERVER && !(call->srv->cfg->roles & TDM_ROLE_DIRECTORY);
    if (!vouched &&
        admin_authorize_server(call, resubmit ? DIR_RIGHT_WRITE : DIR_RIGHT_READ) != 1)
        return;
    if (resubmit)
        resubmit_serve(call);
    else
        status_serve(call);
}

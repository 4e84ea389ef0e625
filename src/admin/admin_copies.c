/*
 * This server's copies (docs/formats/admin-api.md, docs/replication.md): GET /v1/copies asks
 * the core for every copy's status (COPY_STATUS_REQUEST); POST /v1/copies/<database>/suspend
 * (optional {"comment": "..."}), .../resume, .../reseed[?delete_existing=true],
 * .../activate[?force=true] and DELETE
 * /v1/copies/<database> ask it to act (COPY_CONTROL; activate asks COPY_STATUS first, for what
 * its answer reports). Reading needs read on this server's `server` object, acting needs
 * write.
 */
#include "admin/admin_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "proto/json/admin_request.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>

#include <stdlib.h>
#include <string.h>

static json_t *
str_json(struct ipc_str s)
{
    return json_stringn(s.ptr, s.len);
}

static const char *
role_name(uint16_t role)
{
    return role == 2 ? "standby" : "passive";
}

static const char *
mode_name(uint16_t mode)
{
    static const char *const names[] = {"", "file", "block", "sync"};
    return mode < 4 ? names[mode] : "";
}

static json_t *
copy_json(const struct ipc_copy_status *c)
{
    const char *state = ipc_copy_state_name(c->state);
    json_t *o =
        json_pack("{s:o,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:i}", "database", str_json(c->name), "state",
                  state ? state : "unknown", "role", role_name(c->role), "mode", mode_name(c->mode),
                  "compression", c->compression ? "zstd" : "none", "message", str_json(c->message),
                  "network", str_json(c->network), "endpoint", str_json(c->endpoint),
                  "inspection_failures", (int)c->inspection_failures);
    static const struct {
        const char *key;
        size_t off;
    } figures[] = {
#define F(x) {#x, offsetof(struct ipc_copy_status, x)}
        F(source_generation),    F(source_durable_end),
        F(source_lsn),           F(source_time_us),
        F(copied_generation),    F(copied_offset),
        F(copied_lsn),           F(inspected_generation),
        F(replayed_generation),  F(replayed_lsn),
        F(last_copied_us),       F(last_inspected_us),
        F(last_replayed_us),     F(copy_queue_generations),
        F(copy_queue_bytes),     F(replay_queue_generations),
        F(replay_queue_records), F(bytes_received),
        F(bytes_per_second),     F(wire_bytes),
        F(wire_log_bytes),
#undef F
    };
    for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)c + figures[i].off, sizeof(v));
        json_object_set_new(o, figures[i].key, json_integer((json_int_t)v));
    }
    return o;
}

void
admin_metrics_copies(struct evbuffer *out, const struct ipc_copy_status_reply *r)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"tandem_copy_queue_generations", "gauge",
         "generations the active has durable that the copy has not",
         offsetof(struct ipc_copy_status, copy_queue_generations)},
        {"tandem_copy_queue_bytes", "gauge", "bytes the active has durable that the copy has not",
         offsetof(struct ipc_copy_status, copy_queue_bytes)},
        {"tandem_copy_replay_queue_generations", "gauge",
         "generations received and not yet replayed",
         offsetof(struct ipc_copy_status, replay_queue_generations)},
        {"tandem_copy_replay_queue_records", "gauge", "records received and not yet replayed",
         offsetof(struct ipc_copy_status, replay_queue_records)},
        {"tandem_copy_copied_lsn", "gauge", "LSN up to which the copy's log is durable",
         offsetof(struct ipc_copy_status, copied_lsn)},
        {"tandem_copy_replayed_lsn", "gauge", "LSN replayed into the copy's LMDB",
         offsetof(struct ipc_copy_status, replayed_lsn)},
        {"tandem_copy_received_bytes_total", "counter",
         "log bytes received since the agent started",
         offsetof(struct ipc_copy_status, bytes_received)},
        {"tandem_copy_inspection_failures", "gauge", "inspection failures in a row",
         offsetof(struct ipc_copy_status, inspection_failures)},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        evbuffer_add_printf(out, "# HELP %s %s.\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                            m[k].type);
        for (uint32_t i = 0; i < r->n_copies; i++) {
            const struct ipc_copy_status *c = &r->copies[i];
            uint64_t v;
            if (m[k].off == offsetof(struct ipc_copy_status, inspection_failures))
                v = c->inspection_failures;
            else
                memcpy(&v, (const char *)c + m[k].off, sizeof(v));
            /* Database names are directory names the core checked (ipc.h). */
            evbuffer_add_printf(out, "%s{database=\"%.*s\"} %" PRIu64 "\n", m[k].name,
                                (int)c->name.len, c->name.ptr, v);
        }
    }
    evbuffer_add_printf(out, "# HELP tandem_copy_state Copy state (1 for the current one).\n"
                             "# TYPE tandem_copy_state gauge\n");
    for (uint32_t i = 0; i < r->n_copies; i++) {
        const struct ipc_copy_status *c = &r->copies[i];
        for (uint16_t st = TDM_IPC_COPY_INITIALIZING; st <= TDM_IPC_COPY_SEEDING; st++)
            evbuffer_add_printf(out, "tandem_copy_state{database=\"%.*s\",state=\"%s\"} %d\n",
                                (int)c->name.len, c->name.ptr, ipc_copy_state_name(st),
                                c->state == st);
    }
}

static void
status_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_COPY_STATUS_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    json_t *list = json_array();
    const struct ipc_copy_status_reply *r = &reply->u.copy_status_reply;
    for (uint32_t i = 0; i < r->n_copies; i++)
        json_array_append_new(list, copy_json(&r->copies[i]));
    /* total > the list's length: the server holds more copies than one reply carries. */
    admin_reply_json(call, 200,
                     json_pack("{s:s,s:o,s:I}", "server", call->srv->cfg->server, "copies", list,
                               "total", (json_int_t)r->total));
}

static void
control_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_COPY_CONTROL_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    int ret = reply->u.copy_control_reply.status;
    if (ret == TDM_ENOTFOUND)
        admin_reply_error(call, 404, NULL, "this server holds no copy of %s", call->segs[2]);
    else if (ret == TDM_EFAILED)
        admin_reply_error(call, 409, NULL,
                          "the copy of %s could not start (see GET /v1/copies for why)",
                          call->segs[2]);
    else if (ret == TDM_EINVAL)
        admin_reply_error(call, 409, NULL,
                          "%s no longer holds copy.conf here (activated?): not deleted",
                          call->segs[2]);
    else if (ret == TDM_EEXIST)
        admin_reply_error(call, 409, NULL,
                          "the copy of %s has files: a reseed deletes them, so say so "
                          "(delete_existing=true, tandemctl copy reseed --delete-existing)",
                          call->segs[2]);
    else if (ret < 0)
        admin_reply_error(call, 500, NULL, "cannot do it: %s", tdm_strerror(ret));
    else
        admin_reply_json(call, 200, json_pack("{s:b}", "ok", 1));
}

static void
control(struct admin_call *call, uint16_t action, const char *comment)
{
    int ret =
        core_link_copy_control(call->srv->core, call->segs[2], action, comment, control_cb, call);
    if (ret < 0) {
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
        return;
    }
    admin_call_watch_close(call);
}

/* ---- POST /v1/copies/<database>/reseed[?delete_existing=true] ---- */

/* Returns 0 with *on_r, or -1 after answering 400. */
static int
query_bool(struct admin_call *call, const char *name, bool *on_r)
{
    *on_r = false;
    if (!call->query)
        return 0;
    struct evkeyvalq q;
    if (evhttp_parse_query_str(call->query, &q) < 0) {
        admin_reply_error(call, 400, NULL, "the query string is malformed");
        return -1;
    }
    const char *v = evhttp_find_header(&q, name);
    int ret = 0;
    if (v && !strcmp(v, "true"))
        *on_r = true;
    else if (v && strcmp(v, "false") != 0) {
        admin_reply_error(call, 400, NULL, "%s: true or false", name);
        ret = -1;
    }
    evhttp_clear_headers(&q);
    return ret;
}

/* ---- POST /v1/copies/<database>/activate[?force=true] ---- */

static void
activate_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_COPY_CONTROL_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const char *db = call->segs[2];
    const char *state = ipc_copy_state_name(call->activate_state);
    int ret = reply->u.copy_control_reply.status;
    if (ret == TDM_ENOTFOUND)
        admin_reply_error(call, 404, NULL, "this server holds no copy of %s", db);
    else if (ret == TDM_ECONFLICT)
        admin_reply_error(call, 409, NULL,
                          "refused: the source at %s still serves %s as active, or %s belongs "
                          "to a CMS whose cluster agent cannot take it over here now (the "
                          "reason: tandemctl events, 4020)",
                          call->activate_endpoint[0] ? call->activate_endpoint : "?", db, db);
    else if (ret == TDM_EGAP)
        admin_reply_error(call, 409, NULL,
                          "refused: the copy of %s is %s, so nothing proves it holds all of the "
                          "source's log (%" PRIu64 " generations, %" PRIu64 " bytes, %" PRIu64
                          " records behind the source's last report); --force mounts what is here",
                          db, state ? state : "unknown", call->activate_lost_generations,
                          call->activate_lost_bytes, call->activate_lost_records);
    else if (ret < 0)
        admin_reply_error(call, 500, NULL,
                          "activation of %s failed: %s; it stays a copy (see tandemctl events)", db,
                          tdm_strerror(ret));
    else
        admin_reply_json(call, 200,
                         json_pack("{s:b,s:s,s:b,s:{s:I,s:I,s:I}}", "ok", 1, "database", db,
                                   "forced", call->activate_force, "lost", "generations",
                                   (json_int_t)call->activate_lost_generations, "bytes",
                                   (json_int_t)call->activate_lost_bytes, "records",
                                   (json_int_t)call->activate_lost_records));
}

/* The copy's status first: what the answer reports as lost and names as the active. The
 * core decides on its own, newer, view; the source is gone or silent when these differ. */
static void
activate_status_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_COPY_STATUS_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    if (call->gone) {
        admin_call_free(call);
        return;
    }
    const struct ipc_copy_status_reply *r = &reply->u.copy_status_reply;
    for (uint32_t i = 0; i < r->n_copies; i++) {
        const struct ipc_copy_status *c = &r->copies[i];
        if (c->name.len != strlen(call->segs[2]) ||
            memcmp(c->name.ptr, call->segs[2], c->name.len) != 0)
            continue;
        call->activate_state = c->state;
        snprintf(call->activate_endpoint, sizeof(call->activate_endpoint), "%.*s",
                 (int)c->endpoint.len, c->endpoint.ptr);
        call->activate_lost_generations = c->copy_queue_generations;
        call->activate_lost_bytes = c->copy_queue_bytes;
        call->activate_lost_records =
            c->source_lsn > c->copied_lsn ? c->source_lsn - c->copied_lsn : 0;
    }
    int ret = core_link_copy_control(call->srv->core, call->segs[2],
                                     call->activate_force ? TDM_IPC_COPY_ACTIVATE_FORCE
                                                          : TDM_IPC_COPY_ACTIVATE,
                                     NULL, activate_cb, call);
    if (ret < 0)
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
}

/* force=true|false from the query; -1 after answering 400. */
static int
activate_force(struct admin_call *call)
{
    call->activate_force = false;
    if (!call->query)
        return 0;
    struct evkeyvalq q;
    if (evhttp_parse_query_str(call->query, &q) < 0) {
        admin_reply_error(call, 400, NULL, "the query string is malformed");
        return -1;
    }
    const char *v = evhttp_find_header(&q, "force");
    int ret = 0;
    if (v && !strcmp(v, "true"))
        call->activate_force = true;
    else if (v && strcmp(v, "false") != 0) {
        admin_reply_error(call, 400, NULL, "force: true or false");
        ret = -1;
    }
    evhttp_clear_headers(&q);
    return ret;
}

void
admin_copies_serve(struct admin_call *call)
{
    if (call->n_segs == 2) {
        if (call->method != EVHTTP_REQ_GET) {
            admin_reply_error(call, 405, NULL, "use GET");
            return;
        }
        if (admin_authorize_server(call, DIR_RIGHT_READ) != 1)
            return;
        admin_ask_core(call, core_link_copy_status, status_cb);
        return;
    }
    if (call->n_segs == 3) {
        /* DELETE /v1/copies/<database>: stop the copy and delete its files. */
        if (call->method != EVHTTP_REQ_DELETE) {
            admin_reply_error(call, 405, NULL, "use DELETE");
            return;
        }
        if (strlen(call->segs[2]) > TDM_IPC_NAME_MAX || !call->segs[2][0]) {
            admin_reply_error(call, 404, NULL, "this server holds no copy of that name");
            return;
        }
        if (admin_authorize_server(call, DIR_RIGHT_WRITE) == 1)
            control(call, TDM_IPC_COPY_REMOVE, NULL);
        return;
    }
    bool suspend = call->n_segs == 4 && !strcmp(call->segs[3], "suspend");
    bool resume = call->n_segs == 4 && !strcmp(call->segs[3], "resume");
    bool activate = call->n_segs == 4 && !strcmp(call->segs[3], "activate");
    bool reseed = call->n_segs == 4 && !strcmp(call->segs[3], "reseed");
    if (!suspend && !resume && !activate && !reseed) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != EVHTTP_REQ_POST) {
        admin_reply_error(call, 405, NULL, "use POST");
        return;
    }
    if (strlen(call->segs[2]) > TDM_IPC_NAME_MAX || !call->segs[2][0]) {
        admin_reply_error(call, 404, NULL, "this server holds no copy of that name");
        return;
    }
    if (admin_authorize_server(call, DIR_RIGHT_WRITE) != 1)
        return;
    if (activate) {
        if (activate_force(call) == 0)
            admin_ask_core(call, core_link_copy_status, activate_status_cb);
        return;
    }
    if (resume) {
        control(call, TDM_IPC_COPY_RESUME, NULL);
        return;
    }
    if (reseed) {
        bool delete_existing;
        if (query_bool(call, "delete_existing", &delete_existing) == 0)
            control(call,
                    delete_existing ? TDM_IPC_COPY_RESEED_DELETE_EXISTING : TDM_IPC_COPY_RESEED,
                    NULL);
        return;
    }
    struct admin_req req;
    /* No body is a suspend without a comment. */
    if (evbuffer_get_length(evhttp_request_get_input_buffer(call->req)) == 0) {
        control(call, TDM_IPC_COPY_SUSPEND, "");
        return;
    }
    if (admin_read_body(call, ADMIN_REQ_COPY_SUSPEND, &req) < 0)
        return;
    control(call, TDM_IPC_COPY_SUSPEND, req.comment);
    admin_req_clear(&req);
}

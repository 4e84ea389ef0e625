/*
 * POST /v1/cms/<cms>/move?to=<node>&comment=<text> (docs/formats/admin-api.md): asks this
 * node's cluster agent for a switchover of the CMS (docs/cluster.md "Switchover"). The answer
 * says whether it was asked; the move runs on, and GET /v1/cluster's cms "move" says how it
 * ends. A node where the CMS is not active refuses and names the active node (no forwarding:
 * docs/decisions.md).
 */
#include "admin/admin_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/ipc.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <string.h>

static void
move_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_CMS_MOVE_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const struct ipc_cms_move_reply *r = &reply->u.cms_move_reply;
    int code = r->status == 0                ? 202
               : r->status == TDM_ENOTFOUND  ? 404
               : r->status == TDM_ECONFLICT  ? 409
               : r->status == TDM_EINVAL     ? 409
                                             : 500;
    if (code != 202) {
        admin_reply_error(call, code, NULL, "%.*s", (int)r->error.len, r->error.ptr);
        return;
    }
    admin_reply_json(call, 202, json_pack("{s:b,s:s}", "ok", 1, "cms", call->segs[2]));
}

void
admin_cms_serve(struct admin_call *call)
{
    if (call->n_segs != 4 || strcmp(call->segs[3], "move") != 0) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != EVHTTP_REQ_POST) {
        admin_reply_error(call, 405, NULL, "use POST");
        return;
    }
    if (!call->segs[2][0] || strlen(call->segs[2]) > TDM_IPC_NAME_MAX) {
        admin_reply_error(call, 404, NULL, "no such CMS on this cluster node");
        return;
    }
    if (admin_authorize_server(call, DIR_RIGHT_WRITE) != 1)
        return;
    struct evkeyvalq q;
    if (!call->query || evhttp_parse_query_str(call->query, &q) < 0) {
        admin_reply_error(call, 400, NULL, "say where to: ?to=<node>[&comment=<text>]");
        return;
    }
    const char *to = evhttp_find_header(&q, "to");
    const char *comment = evhttp_find_header(&q, "comment");
    if (!comment)
        comment = "";
    if (!to || !to[0] || strlen(to) > TDM_IPC_NAME_MAX || strlen(comment) > TDM_IPC_REASON_MAX) {
        evhttp_clear_headers(&q);
        admin_reply_error(call, 400, NULL,
                          "to: a node's name (1..%u bytes); comment: at most %u bytes",
                          (unsigned)TDM_IPC_NAME_MAX, (unsigned)TDM_IPC_REASON_MAX);
        return;
    }
    int ret = core_link_cms_move(call->srv->core, call->segs[2], to, comment, move_cb, call);
    evhttp_clear_headers(&q);
    if (ret < 0) {
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
        return;
    }
    admin_call_watch_close(call);
}

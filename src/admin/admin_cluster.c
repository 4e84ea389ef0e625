/*
 * GET /v1/cluster (docs/formats/admin-api.md): the cluster as this server's core sees it.
 * The core builds the JSON object (src/tandemd/core_cluster_hb.c: heartbeats, votes, quorum;
 * the cluster agent adds its part to the same object), so the admin worker only checks that
 * it is an object and passes it on.
 *
 * GET /v1/witness: the same document's `witness` member (the coordination store of a witness,
 * src/tandemd/core_coord.c), so both come from one core request (docs/decisions.md).
 */
#include "admin/admin_int.h"

#include "lib/config.h"
#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/ipc.h"

#include <jansson.h>
#include <string.h>

static void
cluster_reply_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_CLUSTER_STATUS_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const struct ipc_str *j = &reply->u.cluster_status_reply.json;
    json_error_t err;
    json_t *doc = json_loadb(j->ptr, j->len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(doc)) {
        json_decref(doc);
        admin_reply_error(call, 500, NULL, "the core's cluster status is not a JSON object: %s",
                          err.text);
        return;
    }
    if (!call->segs[1] || strcmp(call->segs[1], "witness") != 0) {
        admin_reply_json(call, 200, doc);
        return;
    }
    json_t *w = json_incref(json_object_get(doc, "witness"));
    json_decref(doc);
    if (!json_is_object(w)) {
        json_decref(w);
        if (call->srv->cfg->roles & TDM_ROLE_WITNESS)
            admin_reply_error(call, 503, NULL,
                              "this server has the witness role but serves no coordination "
                              "store (no [listen coord], or the store did not open: event 5006)");
        else
            admin_reply_error(call, 404, NULL, "this server has no witness role");
        return;
    }
    admin_reply_json(call, 200, w);
}

void
admin_cluster_serve(struct admin_call *call)
{
    if (admin_authorize_server(call, DIR_RIGHT_READ) != 1)
        return;
    admin_ask_core(call, core_link_cluster_status, cluster_reply_cb);
}

void
admin_witness_serve(struct admin_call *call)
{
    admin_cluster_serve(call);
}

/*
 * This server's active databases (docs/formats/admin-api.md): POST
 * /v1/databases/<database>/dismount and .../mount ask the core to dismount or mount it
 * (COPY_CONTROL with TDM_IPC_DB_DISMOUNT / TDM_IPC_DB_MOUNT; docs/replication.md "Dismount and
 * mount"). Needs write on this server's `server` object, as copy actions do.
 */
#include "admin/admin_int.h"

#include "lib/core_link.h"
#include "lib/err.h"

#include <string.h>

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
    bool dismount = !strcmp(call->segs[3], "dismount");
    if (ret == TDM_ENOTFOUND)
        admin_reply_error(call, 404, NULL, "this server holds no active database %s",
                          call->segs[2]);
    else if (ret == TDM_ECONFLICT)
        admin_reply_error(call, 409, NULL,
                          "%s belongs to a CMS of this cluster: the cluster agent mounts it when "
                          "this node wins the CMS's lease (tandemctl cms move to move it here)",
                          call->segs[2]);
    else if (ret < 0)
        admin_reply_error(call, 500, NULL, "%s of %s failed: %s (see the events)",
                          dismount ? "dismount" : "mount", call->segs[2], tdm_strerror(ret));
    else
        admin_reply_json(call, 200,
                         json_pack("{s:s,s:b}", "database", call->segs[2], "mounted", !dismount));
}

void
admin_databases_serve(struct admin_call *call)
{
    bool dismount = call->n_segs == 4 && !strcmp(call->segs[3], "dismount");
    bool mount = call->n_segs == 4 && !strcmp(call->segs[3], "mount");
    if (!dismount && !mount) {
        admin_reply_error(call, 404, NULL, "no such path");
        return;
    }
    if (call->method != EVHTTP_REQ_POST) {
        admin_reply_error(call, 405, NULL, "use POST");
        return;
    }
    if (strlen(call->segs[2]) > TDM_IPC_NAME_MAX || !call->segs[2][0]) {
        admin_reply_error(call, 404, NULL, "this server holds no active database of that name");
        return;
    }
    if (admin_authorize_server(call, DIR_RIGHT_WRITE) != 1)
        return;
    int ret = core_link_copy_control(call->srv->core, call->segs[2],
                                     dismount ? TDM_IPC_DB_DISMOUNT : TDM_IPC_DB_MOUNT, NULL,
                                     control_cb, call);
    if (ret < 0) {
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
        return;
    }
    admin_call_watch_close(call);
}

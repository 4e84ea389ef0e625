/*
 * Operator-forced activations of a CMS on a cluster node (core_cluster_force.h). One record per
 * CMS; the worker's connection is held (its inflight count) until the answer is sent, so a
 * worker that went away meanwhile leaves a zombie that goes with the answer.
 */
#include "tandemd/core_cluster_force.h"
#include "tandemd/core_ipc_int.h"
#include "tandemd/tandemd.h"

#include "lib/config.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct force {
    bool running;
    char cms[CLUSTER_FSM_NAME_MAX + 1];
    char db[CLUSTER_FSM_NAME_MAX + 1];
    struct core_conn *conn;
    uint32_t request_id;
    uint64_t started_ms;
    bool asking_seen; /* the decisions took it up (FailingOver) */
};

static struct force forces[TDM_CONFIG_MAX_CMS];

static struct force *
find(const char *cms)
{
    for (unsigned i = 0; i < TDM_CONFIG_MAX_CMS; i++)
        if (forces[i].running && strcmp(forces[i].cms, cms) == 0)
            return &forces[i];
    return NULL;
}

int
cluster_force_start(const char *cms, const char *db, struct core_conn *c, uint32_t request_id,
                    uint64_t now_ms)
{
    if (find(cms))
        return TDM_ECONFLICT;
    for (unsigned i = 0; i < TDM_CONFIG_MAX_CMS; i++) {
        struct force *f = &forces[i];
        if (f->running)
            continue;
        memset(f, 0, sizeof(*f));
        f->running = true;
        snprintf(f->cms, sizeof(f->cms), "%s", cms);
        snprintf(f->db, sizeof(f->db), "%s", db);
        f->conn = c;
        f->request_id = request_id;
        f->started_ms = now_ms;
        c->inflight++; /* held until the answer */
        log_info("CMS %s: forced activation of %s asked: the cluster agent takes the lease "
                 "beyond the mount dial",
                 cms, db);
        return 0;
    }
    return TDM_ELIMIT;
}

bool
cluster_force_asked(const char *cms)
{
    return find(cms) != NULL;
}

static void
answer(struct force *f, int status)
{
    struct ipc_msg reply = {.type = TDM_IPC_COPY_CONTROL_REPLY, .request_id = f->request_id};
    reply.u.copy_control_reply.status = status;
    struct core_conn *c = f->conn;
    tandemd__conn_send(c, &reply); /* nothing when it closed meanwhile */
    c->inflight--;
    f->running = false;
    tandemd__conn_free_if_done(c);
}

void
cluster_force_stepped(const char *cms, const struct cluster_fsm_output *out,
                      enum cluster_fsm_state state, uint64_t now_ms)
{
    struct force *f = find(cms);
    if (!f)
        return;
    if (state == CLUSTER_STATE_ACTIVE) {
        /* Mounted in the new epoch: 4021 said what was lost against the last reports. */
        answer(f, 0);
        return;
    }
    if (out->state == CLUSTER_STATE_FAILING_OVER) {
        f->asking_seen = true;
        if (now_ms < f->started_ms + CLUSTER_FORCE_TIMEOUT_MS)
            return;
    }
    bool late = now_ms >= f->started_ms + CLUSTER_FORCE_TIMEOUT_MS;
    event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, f->db,
               "activation of %s with --force: CMS %s not taken over here%s (%s%s%s)", f->db, cms,
               late ? " within the time allowed" : "", cluster_fsm_state_name(out->state),
               out->reason[0] ? ": " : "", out->reason);
    answer(f, TDM_ECONFLICT);
}

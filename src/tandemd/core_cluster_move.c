/*
 * Switchover requests (core_cluster_move.h, docs/cluster.md "Switchover"). One record per CMS:
 * the running move (its target goes into the FSM's input as move_to until it ends) and, once
 * it ended, how, for status. The FSM does the switchover; this file checks a request before it
 * reaches the FSM, gives up on one that takes too long, and says how it ended.
 */
#include "tandemd/core_cluster_move.h"
#include "tandemd/core_ipc_int.h"
#include "tandemd/tandemd.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/config.h"
#include "lib/ipc.h"
#include "store/store.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct move {
    char cms[CLUSTER_FSM_NAME_MAX + 1]; /* "" = slot free */
    bool running;
    char to[CLUSTER_FSM_NAME_MAX + 1];
    char comment[CLUSTER_MOVE_COMMENT_MAX + 1];
    time_t at;             /* wall clock, when asked */
    uint64_t started_ms;   /* tdm clock, when asked */
    uint64_t epoch_before; /* the lease epoch when asked */
    bool moving_seen;      /* the FSM took it up (state MOVING) */
    /* Once ended. */
    bool completed;
    char why[CLUSTER_FSM_REASON_MAX + 64];
    uint64_t took_ms, epoch_after;
};

static struct move moves[TDM_CONFIG_MAX_CMS];

static struct move *
find(const char *cms, bool create)
{
    for (unsigned i = 0; i < TDM_CONFIG_MAX_CMS; i++)
        if (strcmp(moves[i].cms, cms) == 0)
            return &moves[i];
    if (!create)
        return NULL;
    for (unsigned i = 0; i < TDM_CONFIG_MAX_CMS; i++)
        if (moves[i].cms[0] == '\0') {
            snprintf(moves[i].cms, sizeof(moves[i].cms), "%s", cms);
            return &moves[i];
        }
    return NULL;
}

int
cluster_move_start(const struct cluster_fsm_input *in, enum cluster_fsm_state state,
                   const char *to, const char *comment, uint64_t now_ms, const char **why_r)
{
    static char why[CLUSTER_FSM_REASON_MAX + 1];
    *why_r = why;
    struct move *mv = find(in->cms, true);
    if (!mv) {
        snprintf(why, sizeof(why), "no room to record a move of %s", in->cms);
        return TDM_ELIMIT;
    }
    if (mv->running || state == CLUSTER_STATE_MOVING) {
        snprintf(why, sizeof(why), "a move of %s to %s is already running", in->cms,
                 mv->running ? mv->to : "another node");
        return TDM_ECONFLICT;
    }
    if (state != CLUSTER_STATE_ACTIVE) {
        if (in->lease.holder[0] && strcmp(in->lease.holder, in->self) != 0)
            snprintf(why, sizeof(why), "%s is not active here (%s): ask %s, its active node",
                     in->cms, cluster_fsm_state_name(state), in->lease.holder);
        else
            snprintf(why, sizeof(why), "%s is not active here (%s)", in->cms,
                     cluster_fsm_state_name(state));
        return TDM_EINVAL;
    }
    if (strcmp(to, in->self) == 0) {
        snprintf(why, sizeof(why), "%s is active on %s already", in->cms, to);
        return TDM_EINVAL;
    }
    const struct cluster_fsm_member *m = NULL;
    for (unsigned k = 0; k < in->n_members; k++)
        if (!in->members[k].is_witness && strcmp(in->members[k].name, to) == 0)
            m = &in->members[k];
    if (!m) {
        snprintf(why, sizeof(why), "%s is not a node of this cluster", to);
        return TDM_ENOTFOUND;
    }
    /* Healthy now: a passive whose summary lists every database of the CMS eligible, heard
     * within the last misses intervals. A target that is not would only make writes wait. */
    bool heard = m->last_heard_ms && now_ms < m->last_heard_ms + in->interval_ms * in->misses;
    if (!heard || m->role != CLUSTER_ROLE_PASSIVE || !m->candidate) {
        snprintf(why, sizeof(why),
                 "%s cannot take %s now: %s", to, in->cms,
                 !heard                            ? "not heard from"
                 : m->role != CLUSTER_ROLE_PASSIVE ? "it holds no passive copies of it"
                                                   : "its copies are not all Healthy");
        return TDM_EINVAL;
    }
    mv->running = true;
    mv->completed = false;
    mv->moving_seen = false;
    snprintf(mv->to, sizeof(mv->to), "%s", to);
    snprintf(mv->comment, sizeof(mv->comment), "%s", comment ? comment : "");
    mv->at = time(NULL);
    mv->started_ms = now_ms;
    mv->epoch_before = in->lease.epoch;
    mv->why[0] = '\0';
    mv->took_ms = mv->epoch_after = 0;
    event_emit(TDM_EV_CLUSTER_MOVE_STARTED, in->cms,
               "switchover of CMS %s from %s to %s started (epoch %" PRIu64 "): %s", in->cms,
               in->self, to, in->lease.epoch, mv->comment[0] ? mv->comment : "(no comment)");
    return 0;
}

const char *
cluster_move_target(const char *cms)
{
    const struct move *mv = find(cms, false);
    return mv && mv->running ? mv->to : NULL;
}

static void
end(struct move *mv, bool completed, const char *why, uint64_t epoch, uint64_t now_ms)
{
    mv->running = false;
    mv->completed = completed;
    mv->took_ms = now_ms - mv->started_ms;
    mv->epoch_after = epoch;
    snprintf(mv->why, sizeof(mv->why), "%s", why);
    if (completed)
        event_emit(TDM_EV_CLUSTER_MOVE_DONE, mv->cms,
                   "switchover of CMS %s to %s done in %" PRIu64 " ms, epoch %" PRIu64
                   " -> %" PRIu64 ": %s",
                   mv->cms, mv->to, mv->took_ms, mv->epoch_before, epoch,
                   mv->comment[0] ? mv->comment : "(no comment)");
    else
        event_emit(TDM_EV_CLUSTER_MOVE_FAILED, mv->cms,
                   "switchover of CMS %s to %s failed after %" PRIu64 " ms: %s; (%s)", mv->cms,
                   mv->to, mv->took_ms, why, mv->comment[0] ? mv->comment : "no comment");
}

void
cluster_move_stepped(const char *cms, enum cluster_fsm_state before,
                     const struct cluster_fsm_output *out, uint64_t epoch, uint64_t now_ms)
{
    struct move *mv = find(cms, false);
    if (!mv || !mv->running)
        return;
    (void)before;
    if (out->moved) {
        /* Left after the witness gave the lease to the target: epoch is the target's. */
        end(mv, true, "", epoch, now_ms);
        return;
    } else if (out->state == CLUSTER_STATE_MOVING) {
        mv->moving_seen = true;
    } else if (mv->moving_seen || out->state != CLUSTER_STATE_ACTIVE) {
        /* Fenced, or resumed: the FSM gave the switchover up. */
        char why[CLUSTER_FSM_REASON_MAX + 64]; /* cut to the record's size by end() */
        snprintf(why, sizeof(why), "this node went %s%s%s", cluster_fsm_state_name(out->state),
                 out->reason[0] ? ": " : "", out->reason);
        end(mv, false, why, epoch, now_ms);
        return;
    }
    if (now_ms >= mv->started_ms + CLUSTER_MOVE_TIMEOUT_MS) {
        char why[CLUSTER_FSM_REASON_MAX + 96];
        /* Before the TRANSFER the FSM resumes at once; after it, once the witness says the
         * lease is still this node's in its epoch (cluster_fsm.c step_transferred). */
        snprintf(why, sizeof(why),
                 "not done within %u s (%s); writes resume here unless the lease has moved",
                 CLUSTER_MOVE_TIMEOUT_MS / 1000, out->reason[0] ? out->reason : "no reason");
        end(mv, false, why, epoch, now_ms);
    }
}

void
cluster_move_close_generation(const char *cms, const char *db)
{
    struct store *store;
    const char *kind;
    bool dismounted;
    if (!tandemd__core_db_lookup(db, strlen(db), &store, &kind, &dismounted) || !store)
        return;
    struct store_status ss;
    store_get_status(store, &ss);
    /* Commits still in flight would land after the END, in a generation a file-mode copy
     * would again not receive: wait for them (the FSM waits for the same, and steps again). */
    if (ss.failed || ss.durable_lsn != ss.last_lsn)
        return;
    struct store_log_extent ext;
    if (store_log_extent(store, ss.current_generation, &ext) != 0 || ext.closed ||
        ext.last_lsn < ext.first_lsn)
        return; /* not begun, closed, or no record in it: the target can have it all */
    int ret = store_roll_request(store);
    if (ret == 0)
        log_info("CMS %s: switchover: closing generation %" PRIu64 " of %s early (LSN %" PRIu64
                 "), so that every copy receives it",
                 cms, ext.generation, db, ext.last_lsn);
    else
        log_warn("CMS %s: switchover: cannot close generation %" PRIu64 " of %s: %s", cms,
                 ext.generation, db, tdm_strerror(ret));
}

void
cluster_move_failed(const char *cms, const char *why, uint64_t now_ms)
{
    struct move *mv = find(cms, false);
    if (mv && mv->running)
        end(mv, false, why, 0, now_ms);
}

json_t *
cluster_move_json(const char *cms)
{
    const struct move *mv = find(cms, false);
    if (!mv || mv->at == 0)
        return json_null();
    json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:I}", "to", mv->to, "comment", mv->comment, "state",
                          mv->running ? "running" : mv->completed ? "completed" : "failed", "at",
                          (json_int_t)mv->at, "epoch_before", (json_int_t)mv->epoch_before);
    if (!mv->running) {
        json_object_set_new(o, "took_ms", json_integer((json_int_t)mv->took_ms));
        if (mv->completed)
            json_object_set_new(o, "epoch_after", json_integer((json_int_t)mv->epoch_after));
        else
            json_object_set_new(o, "why", json_string(mv->why));
    }
    return o;
}

void
tandemd__cms_move_handle(struct core_conn *c, const struct ipc_msg *msg)
{
    const struct ipc_cms_move *m = &msg->u.cms_move;
    char cms[TDM_IPC_NAME_MAX + 1], to[TDM_IPC_NAME_MAX + 1], comment[TDM_IPC_REASON_MAX + 1];
    snprintf(cms, sizeof(cms), "%.*s", (int)m->cms.len, m->cms.ptr);
    snprintf(to, sizeof(to), "%.*s", (int)m->to.len, m->to.ptr);
    snprintf(comment, sizeof(comment), "%.*s", (int)m->comment.len, m->comment.ptr);
    const char *why = NULL;
    int ret = tandemd__core_cluster_move(cms, to, comment, &why);
    struct ipc_msg reply = {.type = TDM_IPC_CMS_MOVE_REPLY, .request_id = msg->request_id};
    reply.u.cms_move_reply.status = ret;
    if (ret != 0) {
        char text[TDM_IPC_REASON_MAX + 1];
        snprintf(text, sizeof(text), "%s", why && why[0] ? why : tdm_strerror(ret));
        reply.u.cms_move_reply.error = ipc_str_c(text);
        tandemd__conn_send(c, &reply);
        return;
    }
    tandemd__conn_send(c, &reply);
}

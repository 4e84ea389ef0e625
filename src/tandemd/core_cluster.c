/*
 * The cluster agent in the core of a node (docs/cluster.md): for each [cms], the decisions of
 * src/cluster/cluster_fsm.h carried out. Inputs: the heartbeats' snapshot (core_cluster_hb.c),
 * the lease as last heard from the witness (a coord_client session, with a watch on each
 * cms/<name> key), and this node's databases (core_cluster_db.c). Outputs: lease requests,
 * the fence (commits answered as for a database not here, at once: core.c's fenced flag),
 * dismount and mount (core_dismount.c), activation of copies in the lease's epoch
 * (core_activate.c), demotion into copies of the CMS address, the CMS address (core_cms.c),
 * this node's heartbeat summary, events 5050-5057 and the status of GET /v1/cluster.
 *
 * It steps every CMS on every change of the snapshot, on every answer of the witness, and on a
 * timer at the FSM's next_step_ms (at most one heartbeat interval away). Nothing here blocks
 * the loop but what activation does: it replays the copy's log on the loop (core_activate.c),
 * which for a passive copy (replayed continuously) is short.
 */
#include "tandemd/core_cluster_int.h"
#include "tandemd/core_ack.h"
#include "tandemd/core_cluster_end.h"
#include "tandemd/core_cluster_failover.h"
#include "tandemd/core_cluster_force.h"
#include "tandemd/core_cluster_move.h"
#include "tandemd/core_ipc_int.h"

#include "cluster/cluster_hb.h"
#include "coord/coord_client.h"
#include "dirclient/dir_client.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "proto/cluster/cluster_wire.h"
#include "store/store.h"
#include "store/store_inspect.h"

#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct agent_cms {
    const struct tdm_config_cms *cfg;
    char key[COORD_KEY_MAX + 1]; /* cms/<name> */
    struct cluster_fsm fsm;
    struct cluster_fsm_output out; /* of the last step */
    struct cluster_agent_db dbs[CLUSTER_FSM_MAX_DBS];
    unsigned n_dbs;
    /* The lease as last heard from the witness. */
    char holder[CLUSTER_FSM_NAME_MAX + 1];
    uint64_t epoch;
    bool pending; /* an ACQUIRE (or renewal) waits for its answer */
    uint64_t pending_sent_ms, renew_sent_ms, renew_acked_sent_ms;
    /* The last node seen active for this CMS (summary or lease), for the failover record. */
    char last_active[CLUSTER_FSM_NAME_MAX + 1];
    /* Events said once per cause. */
    bool waiting_said, rejoin_waiting;
    char failover_why[CLUSTER_FSM_REASON_MAX + 1];
    enum cluster_failover_cause failover_cause;
    uint64_t failover_started_ms;
    /* Measured at the activation, before it (core_cluster_failover.h): the loss against the
     * members' last reports, and since when the transports resubmit. */
    uint64_t lost_records, lost_generations;
    int64_t resubmit_since;
    uint64_t recorded_epoch; /* the activation whose failover record was made */
    /* Switchover to this node: who handed the lease over (its holder before), until this
     * node is active or the lease is another's. Its summary may say Passive before this node
     * has renewed (it demotes at the witness's answer), yet it is the mover the decisions
     * need to see (core_cluster_move.h). */
    char transfer_from[CLUSTER_FSM_NAME_MAX + 1];
};

static struct event_base *base;
static struct event *timer;
static struct coord_client *coord;
static SSL_CTX *client_tls;
static struct agent_cms agents[TDM_CONFIG_MAX_CMS];
static unsigned n_agents;
static char self[TDM_CONFIG_NAME_MAX + 1];
static uint64_t interval_ms, ttl_ms;
static uint64_t started_ms; /* the agent's start: silence of a node never heard counts from it */
static unsigned misses;
static bool stepping, step_again;
static struct cluster_hb_snapshot snap; /* large: static, loop thread only */

static void step_all(void);
static void ask_lease(struct agent_cms *a, uint64_t min_epoch, uint64_t now);

/* ---- the witness ---- */

static struct agent_cms *
agent_by_key(const char *key)
{
    for (unsigned i = 0; i < n_agents; i++)
        if (strcmp(agents[i].key, key) == 0)
            return &agents[i];
    return NULL;
}

static void
lease_heard(struct agent_cms *a, const char *holder, uint64_t epoch)
{
    snprintf(a->holder, sizeof(a->holder), "%s", holder ? holder : "");
    if (epoch > a->epoch || holder)
        a->epoch = epoch;
    if (holder && strcmp(holder, self) != 0)
        snprintf(a->last_active, sizeof(a->last_active), "%s", holder);
}

static void
on_lease(void *ctx, const struct coord_lease_reply *r)
{
    struct agent_cms *a = ctx;
    a->pending = false;
    if (r->status == 0 && r->lease == COORD_LEASE_GRANTED) {
        bool won = strcmp(a->holder, self) != 0 || a->epoch != r->epoch;
        lease_heard(a, self, r->epoch);
        a->renew_acked_sent_ms = a->pending_sent_ms;
        if (won)
            log_info("CMS %s: lease granted in epoch %" PRIu64, a->cfg->name, r->epoch);
    } else if (r->status == 0 && r->lease == COORD_LEASE_DENIED) {
        lease_heard(a, r->holder, r->epoch);
    } else if (r->status != 0 && r->status != TDM_ECLOSED) {
        log_warn("CMS %s: lease request refused by the witness: %s", a->cfg->name,
                    r->error ? r->error : tdm_strerror(r->status));
    }
    step_all();
}

static void
on_release(void *ctx, const struct coord_lease_reply *r)
{
    struct agent_cms *a = ctx;
    if (r->status == 0 && strcmp(a->holder, self) == 0)
        a->holder[0] = '\0';
    step_all();
}

static void
on_watch(void *ctx, const struct coord_value_reply *r)
{
    struct agent_cms *a = ctx;
    if (r->status == 0) {
        lease_heard(a, r->holder, r->epoch);
        cluster_end_heard(a->cfg->name, r);
    }
    step_all();
}

static void
on_notify(void *ctx, const char *key, const struct coord_value_reply *r)
{
    (void)ctx;
    struct agent_cms *a = agent_by_key(key);
    if (a && r->status == 0)
        cluster_end_heard(a->cfg->name, r); /* the recorded log end rides on the lease's key */
    if (a && r->status == 0 && r->holder && strcmp(r->holder, self) == 0 &&
        strcmp(a->holder, self) != 0 && !a->pending) {
        /* Handed to this node by a switchover's TRANSFER: the witness's vote counts only from
         * a request this node sent (docs/cluster.md "Timing"), so renew first and let the
         * decisions see the lease with that grant (on_lease), or activation fences at once. */
        memcpy(a->transfer_from, a->holder, sizeof(a->transfer_from));
        ask_lease(a, r->epoch, cluster_hb_now_ms());
        return;
    }
    if (a && r->status == 0) {
        lease_heard(a, r->holder, r->epoch);
        step_all();
    }
}

static void
on_up(void *ctx, unsigned index)
{
    (void)ctx;
    (void)index;
    log_info("cluster agent: connected to the witness");
    for (unsigned i = 0; i < n_agents; i++)
        if (coord_client_watch(coord, agents[i].key, on_watch, &agents[i]) < 0)
            log_warn("CMS %s: cannot watch its lease", agents[i].cfg->name);
    step_all();
}

static void
on_lost(void *ctx, const char *why)
{
    (void)ctx;
    log_warn("cluster agent: the witness is lost (%s): its vote no longer counts", why);
    for (unsigned i = 0; i < n_agents; i++)
        agents[i].pending = false;
    cluster_end_lost();
    step_all();
}

/* ---- the input ---- */

static enum cluster_fsm_role
wire_role(uint16_t r)
{
    return r == CLUSTER_CMS_ACTIVE    ? CLUSTER_ROLE_ACTIVE
           : r == CLUSTER_CMS_MOVING  ? CLUSTER_ROLE_MOVING
           : r == CLUSTER_CMS_PASSIVE ? CLUSTER_ROLE_PASSIVE
                                      : CLUSTER_ROLE_NONE;
}

/* A member's copy state on the wire that may take the CMS over (docs/cluster.md "Failover"):
 * the active's own database (0), Healthy, Disconnected, ServiceDown. */
static bool
wire_eligible(uint16_t s)
{
    return s == 0 || s == 2 || s == 6 || s == 7;
}

static void
member_input(const struct agent_cms *a, const struct cluster_hb_member *hm,
             struct cluster_fsm_member *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", hm->name);
    m->is_witness = hm->witness;
    m->last_heard_ms = hm->heard_ms; /* answers to us, and heartbeats it sent us */
    m->acked_sent_ms = hm->answered_sent_ms;
    m->core_dead = hm->gone;
    if (hm->witness || !hm->has_summary)
        return;
    const struct cluster_summary *s = &hm->summary;
    for (uint32_t c = 0; c < s->n_cms; c++)
        if (strcmp(s->cms[c].name, a->cfg->name) == 0) {
            m->role = wire_role(s->cms[c].role);
            m->epoch = s->cms[c].epoch;
            snprintf(m->moving_to, sizeof(m->moving_to), "%s", s->cms[c].moving_to);
        }
    bool all = a->n_dbs > 0;
    for (unsigned d = 0; d < a->n_dbs; d++) {
        bool found = false;
        for (uint32_t k = 0; k < s->n_dbs; k++) {
            const struct cluster_db_state *w = &s->dbs[k];
            if (strcmp(w->name, a->dbs[d].name) != 0)
                continue;
            found = true;
            m->dbs[d].pos.epoch = w->epoch;
            m->dbs[d].pos.lsn = w->lsn;
            m->dbs[d].pos.generation = w->generation;
            m->dbs[d].pos.offset = w->offset;
            m->dbs[d].eligible = wire_eligible(w->copy_state);
        }
        if (!found || !m->dbs[d].eligible)
            all = false;
    }
    /* The summary carries no candidate flag: a passive with every copy eligible counts as
     * one (docs/decisions.md). */
    m->candidate = m->role == CLUSTER_ROLE_PASSIVE && all;
}

static void
build_input(struct agent_cms *a, struct cluster_fsm_input *in)
{
    memset(in, 0, sizeof(*in));
    in->now_ms = snap.now_ms;
    in->interval_ms = interval_ms;
    in->misses = misses;
    in->ttl_ms = ttl_ms;
    in->self = self;
    in->cms = a->cfg->name;
    in->dial = a->cfg->mount_dial == TDM_MOUNT_DIAL_LOSSLESS ? CLUSTER_DIAL_LOSSLESS
               : a->cfg->mount_dial == TDM_MOUNT_DIAL_BEST ? CLUSTER_DIAL_BEST
                                                            : CLUSTER_DIAL_GOOD;
    in->n_dbs = a->n_dbs;
    for (unsigned d = 0; d < a->n_dbs; d++)
        cluster_db_look(&a->dbs[d], &in->dbs[d]);
    for (unsigned k = 0; k < snap.n_members && k < CLUSTER_FSM_MAX_MEMBERS; k++) {
        member_input(a, &snap.members[k], &in->members[in->n_members]);
        struct cluster_fsm_member *m = &in->members[in->n_members++];
        if (m->role == CLUSTER_ROLE_ACTIVE)
            snprintf(a->last_active, sizeof(a->last_active), "%s", m->name);
    }
    in->lease.witness_up = coord && coord_client_is_up(coord);
    snprintf(in->lease.holder, sizeof(in->lease.holder), "%s", in->lease.witness_up ? a->holder : "");
    in->lease.epoch = a->epoch;
    in->lease.request_pending = a->pending;
    in->lease.renew_sent_ms = a->renew_sent_ms;
    in->lease.renew_acked_sent_ms = a->renew_acked_sent_ms;
    in->move_to = cluster_move_target(a->cfg->name);
    in->force_activate = cluster_force_asked(a->cfg->name);
    in->started_ms = started_ms;
    cluster_end_input(a->cfg->name, in);
    if (a->transfer_from[0] && (a->fsm.state == CLUSTER_STATE_ACTIVE || strcmp(a->holder, self) != 0))
        a->transfer_from[0] = '\0';
    for (unsigned k = 0; k < in->n_members && a->transfer_from[0]; k++) {
        struct cluster_fsm_member *m = &in->members[k];
        if (strcmp(m->name, a->transfer_from) == 0 &&
            (m->role == CLUSTER_ROLE_PASSIVE || m->role == CLUSTER_ROLE_MOVING)) {
            m->role = CLUSTER_ROLE_MOVING;
            snprintf(m->moving_to, sizeof(m->moving_to), "%s", self);
        }
    }
}

/* ---- the actions ---- */

static void
set_fenced(struct agent_cms *a, bool fenced)
{
    for (unsigned d = 0; d < a->n_dbs; d++) {
        const char *name = a->dbs[d].name;
        struct store *store;
        const char *kind;
        bool dismounted;
        if (tandemd__core_db_lookup(name, strlen(name), &store, &kind, &dismounted) && store &&
            !dismounted && tandemd__core_db_fenced(name) != fenced)
            tandemd__core_db_set(name, strlen(name), store, false, fenced);
    }
}

static void
dismount_all(struct agent_cms *a)
{
    /* The address first: clients and copies reconnect to whoever is active next. */
    tandemd__cms_down(a->cfg->name);
    for (unsigned d = 0; d < a->n_dbs; d++) {
        const char *name = a->dbs[d].name;
        struct store *store;
        const char *kind;
        bool dismounted;
        if (tandemd__core_db_lookup(name, strlen(name), &store, &kind, &dismounted) && store)
            tandemd__core_db_dismount(name, strlen(name));
    }
}

static void
demote_all(struct agent_cms *a)
{
    unsigned n = 0;
    for (unsigned d = 0; d < a->n_dbs; d++) {
        struct store *store;
        const char *kind;
        bool dismounted;
        const char *name = a->dbs[d].name;
        if (!tandemd__core_db_lookup(name, strlen(name), &store, &kind, &dismounted))
            continue;
        const char *why = NULL;
        int ret = cluster_db_demote(a->cfg, &a->dbs[d], &why);
        if (ret < 0) {
            log_error("CMS %s: database %s not demoted: %s (%s)", a->cfg->name, name,
                      why ? why : "?", tdm_strerror(ret));
            continue;
        }
        n++;
    }
    if (n) {
        event_emit(TDM_EV_CLUSTER_DEMOTED, a->cfg->name,
                   "CMS %s: %u database(s) demoted to copies of %s (the CMS is %s's)",
                   a->cfg->name, n, a->cfg->address.text,
                   a->holder[0] ? a->holder : (a->last_active[0] ? a->last_active : "another node's"));
        a->rejoin_waiting = true;
    }
}

/* Activates every database of the CMS in epoch; false (with the databases dismounted and the
 * lease given back) when one cannot be. */
static bool
activate_all(struct agent_cms *a, uint64_t epoch, uint64_t *lost_r)
{
    *lost_r = 0;
    for (unsigned d = 0; d < a->n_dbs; d++) {
        const char *name = a->dbs[d].name;
        size_t len = strlen(name);
        struct store *store;
        const char *kind;
        bool dismounted;
        int ret;
        uint64_t lost = 0;
        if (tandemd__core_db_lookup(name, len, &store, &kind, &dismounted))
            ret = store ? 0 : tandemd__core_db_mount_epoch(name, len, epoch);
        else
            ret = tandemd__core_copy_activate_epoch(name, len, epoch, &lost);
        *lost_r += lost;
        a->dbs[d].closed_pos_read = false;
        if (ret < 0) {
            event_emit(TDM_EV_CLUSTER_ACTIVATION_FAILED, a->cfg->name,
                       "CMS %s: database %s could not be mounted in epoch %" PRIu64
                       " (%s): the CMS stays down here and its lease is given back",
                       a->cfg->name, name, epoch, tdm_strerror(ret));
            set_fenced(a, true);
            dismount_all(a);
            if (coord && coord_client_is_up(coord))
                coord_client_release(coord, a->key, epoch, on_release, a);
            cluster_fsm_init(&a->fsm);
            return false;
        }
    }
    return true;
}

static void
ask_lease(struct agent_cms *a, uint64_t min_epoch, uint64_t now)
{
    if (!coord)
        return;
    int ret = coord_client_acquire(coord, a->key, (uint32_t)ttl_ms, min_epoch, on_lease, a);
    if (ret < 0)
        return; /* no session: the next step, after on_up, asks again */
    a->pending = true;
    a->pending_sent_ms = a->renew_sent_ms = now;
}

/* Before an activation: what this node lacks against the most log any member last reported
 * (as the mount dial counts it, docs/cluster.md "Failover"), and since when the transports
 * resubmit: the creation time of the generation holding this node's last record, minus
 * CLUSTER_RESUBMIT_MARGIN_S (docs/decisions.md); INT64_MIN (all) when it has none. Reads each
 * copy's log (store_inspect) on the loop, as the activation that follows replays it. */
static void
measure_loss(struct agent_cms *a)
{
    a->lost_records = a->lost_generations = 0;
    a->resubmit_since = INT64_MAX;
    /* The log end the old active recorded at the witness counts as a member's report. */
    static struct cluster_fsm_input recorded; /* large: static, loop thread only */
    memset(&recorded, 0, sizeof(recorded));
    recorded.n_dbs = a->n_dbs;
    for (unsigned d = 0; d < a->n_dbs; d++)
        memcpy(recorded.dbs[d].name, a->dbs[d].name, sizeof(recorded.dbs[d].name));
    cluster_end_input(a->cfg->name, &recorded);
    for (unsigned d = 0; d < a->n_dbs; d++) {
        struct cluster_fsm_db own;
        struct cluster_agent_db copy = a->dbs[d];
        cluster_db_look(&copy, &own); /* on a copy: the step's bookkeeping stays */
        uint64_t best_lsn = own.pos.lsn, best_gen = own.pos.generation;
        if (recorded.end.known && recorded.end.dbs[d].lsn > best_lsn) {
            best_lsn = recorded.end.dbs[d].lsn;
            best_gen = recorded.end.dbs[d].generation;
        }
        for (unsigned k = 0; k < snap.n_members; k++) {
            const struct cluster_hb_member *m = &snap.members[k];
            for (uint32_t j = 0; m->has_summary && !m->witness && j < m->summary.n_dbs; j++) {
                const struct cluster_db_state *w = &m->summary.dbs[j];
                if (strcmp(w->name, a->dbs[d].name) == 0 && w->lsn > best_lsn) {
                    best_lsn = w->lsn;
                    best_gen = w->generation;
                }
            }
        }
        if (best_lsn > own.pos.lsn) {
            a->lost_records += best_lsn - own.pos.lsn;
            a->lost_generations +=
                best_gen > own.pos.generation ? best_gen - own.pos.generation : 1;
        }
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/db/%s", tandemd__core_datadir(), a->dbs[d].name);
        struct store_inspection r;
        const char *why = NULL;
        int64_t created = INT64_MIN;
        if (store_inspect(dir, &r, &why) == 0) {
            for (size_t i = r.n_gens; i-- > 0 && created == INT64_MIN;)
                if (!r.gens[i].blank && r.gens[i].last_lsn >= r.gens[i].first_lsn &&
                    r.gens[i].first_lsn > 0)
                    created = (int64_t)(r.gens[i].created_us / 1000000u);
            store_inspection_clear(&r);
        } else {
            log_warn("CMS %s: the log of %s cannot be read (%s): the transports resubmit all "
                     "they hold",
                     a->cfg->name, a->dbs[d].name, why ? why : "?");
        }
        int64_t since = created == INT64_MIN ? INT64_MIN : created - CLUSTER_RESUBMIT_MARGIN_S;
        if (since < a->resubmit_since)
            a->resubmit_since = since;
    }
    if (a->resubmit_since == INT64_MAX)
        a->resubmit_since = INT64_MIN;
}

/* The failover (or switchover) record of the activation in epoch (core_cluster_failover.h). */
static void
record(struct agent_cms *a, uint64_t epoch, enum cluster_failover_cause cause, const char *from,
       const char *why, uint64_t took_ms)
{
    const char *dbs[CLUSTER_FSM_MAX_DBS];
    for (unsigned d = 0; d < a->n_dbs; d++)
        dbs[d] = a->dbs[d].name;
    struct cluster_failover_info info = {
        .cms = a->cfg->name,
        .at = (int64_t)time(NULL),
        .from = from,
        .to = self,
        .epoch = epoch,
        .cause = cause,
        .why = why,
        .took_ms = took_ms,
        .lost_records = cause == CLUSTER_CAUSE_SWITCHOVER ? 0 : a->lost_records,
        .lost_generations = cause == CLUSTER_CAUSE_SWITCHOVER ? 0 : a->lost_generations,
        .since = a->resubmit_since,
        .databases = dbs,
        .n_databases = a->n_dbs,
    };
    cluster_failover_record(&info);
    a->recorded_epoch = epoch;
}

static void
won(struct agent_cms *a, uint64_t epoch, uint64_t lost, uint64_t now)
{
    event_emit(TDM_EV_CLUSTER_LEASE_WON, a->cfg->name,
               "CMS %s: lease won in epoch %" PRIu64 "; its databases are mounted here",
               a->cfg->name, epoch);
    if (a->transfer_from[0]) {
        /* Handed over by a switchover (lossless), even when the renewal it waited for first
         * was slow enough to show as failing over (said()). */
        a->failover_started_ms = 0;
        record(a, epoch, CLUSTER_CAUSE_SWITCHOVER, a->transfer_from, "cms move (switchover)", 0);
        return;
    }
    if (a->failover_started_ms == 0)
        return; /* the first mount of the CMS */
    if (lost > a->lost_records)
        a->lost_records = lost;
    uint64_t took = now - a->failover_started_ms;
    record(a, epoch, a->failover_cause, a->last_active, a->failover_why, took);
    event_emit(TDM_EV_CLUSTER_FAILOVER_DONE, a->cfg->name,
               "CMS %s: failover from %s done in %" PRIu64 " ms, epoch %" PRIu64 "; %" PRIu64
               " record(s) lost against the copies' last reports",
               a->cfg->name, a->last_active[0] ? a->last_active : "(none)", took, epoch,
               a->lost_records);
    a->failover_started_ms = 0;
}

/* The witness's answer to a switchover's TRANSFER: granted, the lease is the target's in the
 * new epoch (this node demotes at the next step); refused, the move failed. */
static void
on_transfer(void *ctx, const struct coord_lease_reply *r)
{
    struct agent_cms *a = ctx;
    a->pending = false;
    const char *to = cluster_move_target(a->cfg->name);
    if (r->status == 0 && r->lease == COORD_LEASE_GRANTED && to) {
        lease_heard(a, to, r->epoch);
        log_info("CMS %s: lease transferred to %s in epoch %" PRIu64, a->cfg->name, to,
                 r->epoch);
    } else if (r->status == 0 && r->lease == COORD_LEASE_DENIED) {
        lease_heard(a, r->holder, r->epoch);
        cluster_move_failed(a->cfg->name, "the witness refused the transfer", cluster_hb_now_ms());
    } else if (r->status != 0) {
        cluster_move_failed(a->cfg->name, r->error ? r->error : tdm_strerror(r->status),
                            cluster_hb_now_ms());
    }
    step_all();
}

static void
transfer(struct agent_cms *a, uint64_t epoch, const char *to, uint64_t now)
{
    if (!coord || !coord_client_is_up(coord))
        return; /* the FSM asks only while the witness is up; the next step sees it down */
    int ret = coord_client_transfer(coord, a->key, epoch, to, on_transfer, a);
    if (ret < 0) {
        cluster_move_failed(a->cfg->name, tdm_strerror(ret), now);
        return;
    }
    a->pending = true;
    a->pending_sent_ms = now;
}

static void
execute(struct agent_cms *a, const struct cluster_fsm_output *out, uint64_t now)
{
    for (unsigned i = 0; i < out->n_actions; i++) {
        const struct cluster_fsm_action *act = &out->actions[i];
        uint64_t lost = 0;
        switch (act->kind) {
        case CLUSTER_ACT_FENCE:
            set_fenced(a, true);
            break;
        case CLUSTER_ACT_RESUME:
            set_fenced(a, false);
            break;
        case CLUSTER_ACT_DISMOUNT:
            dismount_all(a);
            break;
        case CLUSTER_ACT_RELEASE:
            if (coord && coord_client_is_up(coord))
                coord_client_release(coord, a->key, act->epoch, on_release, a);
            break;
        case CLUSTER_ACT_DEMOTE:
            demote_all(a);
            break;
        case CLUSTER_ACT_ACQUIRE:
        case CLUSTER_ACT_RENEW:
            ask_lease(a, act->epoch, now);
            break;
        case CLUSTER_ACT_LAST_LOGS:
            /* Not built: the copies keep what they had when the active went away. */
            log_info("CMS %s: the last logs of %s are not copied (not built); the mount dial "
                     "allowed the loss",
                     a->cfg->name, act->peer);
            break;
        case CLUSTER_ACT_ACTIVATE:
            measure_loss(a);
            if (!activate_all(a, act->epoch, &lost))
                return; /* nothing after it: no address for what is not mounted */
            won(a, act->epoch, lost, now);
            step_again = true; /* writes are allowed at the next step's confirmation */
            break;
        case CLUSTER_ACT_ADDRESS_UP:
            tandemd__cms_up(a->cfg->name);
            break;
        case CLUSTER_ACT_TRANSFER:
            transfer(a, act->epoch, act->peer, now);
            break;
        case CLUSTER_ACT_RESUBMIT:
            /* After every failover, lossy or not: a loss may be larger than the members'
             * last reports show, and the store drops what it holds (docs/decisions.md). */
            if (a->recorded_epoch != act->epoch)
                record(a, act->epoch, CLUSTER_CAUSE_NODE_LOST, act->peer,
                       "took over from the node last seen active", 0);
            cluster_failover_resubmit(a->cfg->name);
            break;
        }
    }
}

/* Why the active node named name is taken over from, as the snapshot says. */
static const char *
failover_cause(const char *name, enum cluster_failover_cause *cause_r)
{
    *cause_r = CLUSTER_CAUSE_NODE_LOST;
    for (unsigned k = 0; k < snap.n_members; k++) {
        const struct cluster_hb_member *m = &snap.members[k];
        if (strcmp(m->name, name) != 0)
            continue;
        if (m->gone)
            return "is not running (its connections closed and are refused)";
        if (!m->seen)
            return "is silent";
        break;
    }
    *cause_r = CLUSTER_CAUSE_LEASE_EXPIRED;
    return "lost its lease";
}

/* Events on changes of state (docs/events.md 5050-5057). */
static void
said(struct agent_cms *a, enum cluster_fsm_state before, const struct cluster_fsm_output *out,
     uint64_t now)
{
    /* A failover: taking over from a node that was active (not the first mount of a CMS). */
    if (out->state == CLUSTER_STATE_FAILING_OVER && before != CLUSTER_STATE_FAILING_OVER &&
        a->failover_started_ms == 0 && a->last_active[0] && !a->transfer_from[0]) {
        a->failover_started_ms = now;
        snprintf(a->failover_why, sizeof(a->failover_why), "%s %s", a->last_active,
                 failover_cause(a->last_active, &a->failover_cause));
        event_emit(TDM_EV_CLUSTER_FAILOVER_STARTED, a->cfg->name,
                   "CMS %s: taking over from %s (%s): %s", a->cfg->name, a->last_active,
                   a->failover_why, out->reason);
    }
    if (out->state != CLUSTER_STATE_FAILING_OVER && out->state != CLUSTER_STATE_ACTIVE)
        a->failover_started_ms = 0;
    if (out->state == CLUSTER_STATE_WAITING && strncmp(out->reason, "beyond mount dial", 17) == 0) {
        if (!a->waiting_said)
            event_emit(TDM_EV_CLUSTER_WAITING, a->cfg->name,
                       "CMS %s not taken over here: %s; waiting for the old active or "
                       "tandemctl copy activate",
                       a->cfg->name, out->reason);
        a->waiting_said = true;
    } else {
        a->waiting_said = false;
    }
    if (a->rejoin_waiting && out->state == CLUSTER_STATE_PASSIVE) {
        bool healthy = true;
        for (unsigned d = 0; d < a->n_dbs; d++)
            if (!a->dbs[d].was_healthy)
                healthy = false;
        if (healthy) {
            event_emit(TDM_EV_CLUSTER_REJOINED, a->cfg->name,
                       "CMS %s: rejoined as passive; every copy is Healthy", a->cfg->name);
            a->rejoin_waiting = false;
        }
    }
}

/* The recorded log end (core_cluster_end.h): kept at the witness while this node is the
 * CMS's active and holds the lease in the epoch it writes in; no write of an epoch is
 * acknowledged before the witness has a record of it. True when writes may be. */
static bool
end_recorded(struct agent_cms *a, uint64_t now)
{
    if (a->fsm.state != CLUSTER_STATE_ACTIVE && a->fsm.state != CLUSTER_STATE_MOVING)
        return true; /* writes are not this function's to allow */
    if (strcmp(a->holder, self) == 0 && a->epoch == a->fsm.active_epoch)
        cluster_end_record(coord, a->key, a->cfg->name, self, a->fsm.active_epoch, a->dbs,
                           a->n_dbs, now, interval_ms);
    if (cluster_end_recorded(a->cfg->name, self, a->fsm.active_epoch))
        return true;
    if (a->out.writes_allowed)
        snprintf(a->out.reason, sizeof(a->out.reason),
                 "writes wait until the witness has recorded the log end of epoch %" PRIu64,
                 a->fsm.active_epoch);
    a->out.writes_allowed = false; /* for status: none is acknowledged */
    return false;
}

static void
step_one(struct agent_cms *a)
{
    struct cluster_fsm_input in;
    build_input(a, &in);
    enum cluster_fsm_state before = a->out.state;
    char reason_before[sizeof(a->out.reason)];
    memcpy(reason_before, a->out.reason, sizeof(reason_before));
    cluster_fsm_step(&a->fsm, &in, &a->out);
    /* Said before the actions, so it comes before the demotion and the address going down. */
    if (a->out.state == CLUSTER_STATE_FENCED && before != CLUSTER_STATE_FENCED)
        event_emit(TDM_EV_CLUSTER_FENCED, a->cfg->name,
                   "CMS %s fenced here: %s; commits are refused, its databases dismount and "
                   "become copies",
                   a->cfg->name, a->out.reason);
    execute(a, &a->out, in.now_ms);
    if (a->out.state == CLUSTER_STATE_MOVING)
        for (unsigned d = 0; d < a->n_dbs; d++)
            cluster_move_close_generation(a->cfg->name, a->dbs[d].name);
    cluster_move_stepped(a->cfg->name, before, &a->out, a->epoch, in.now_ms);
    cluster_force_stepped(a->cfg->name, &a->out, a->fsm.state, in.now_ms);
    bool may_write = end_recorded(a, in.now_ms) && a->out.writes_allowed;
    /* Active: commits are acknowledged only while the FSM allows writes (until next_step_ms,
     * where the confirmation runs out unless renewed). */
    if (a->fsm.state == CLUSTER_STATE_ACTIVE)
        set_fenced(a, !may_write);
    /* And never past the self-fence, on the clock, wherever a commit is answered: the step at
     * next_step_ms may run late (the loop blocked, a suspend), the deadline cannot
     * (core_ack.h). Anything but ACTIVE with writes allowed acknowledges nothing. */
    uint64_t until = a->fsm.state == CLUSTER_STATE_ACTIVE && may_write ? a->out.writes_until_ms : 0;
    for (unsigned d = 0; d < a->n_dbs; d++)
        tandemd__core_db_set_ack_deadline(a->dbs[d].name, until);
    said(a, before, &a->out, in.now_ms);
    /* Renewals are the steady state: logged are changes of state or reason. */
    if (a->out.state != before || strcmp(a->out.reason, reason_before) != 0)
        log_info("CMS %s: %s%s%s (%u action(s))", a->cfg->name,
                 cluster_fsm_state_name(a->out.state), a->out.reason[0] ? ": " : "",
                 a->out.reason, a->out.n_actions);
}

static void
set_summary(void)
{
    struct cluster_hb *hb = tandemd__core_cluster_hb();
    if (!hb)
        return;
    static struct cluster_summary s;
    memset(&s, 0, sizeof(s));
    for (unsigned i = 0; i < n_agents && s.n_cms < CLUSTER_WIRE_MAX_CMS; i++) {
        const struct agent_cms *a = &agents[i];
        struct cluster_cms_state *c = &s.cms[s.n_cms++];
        snprintf(c->name, sizeof(c->name), "%s", a->cfg->name);
        switch (a->out.role) {
        case CLUSTER_ROLE_MOVING:
            if (a->out.moving_to) {
                c->role = CLUSTER_CMS_MOVING;
                snprintf(c->moving_to, sizeof(c->moving_to), "%s", a->out.moving_to);
                break;
            }
            /* fall through */
        case CLUSTER_ROLE_ACTIVE:
        case CLUSTER_ROLE_FENCED:
            c->role = CLUSTER_CMS_ACTIVE;
            break;
        case CLUSTER_ROLE_PASSIVE:
            c->role = CLUSTER_CMS_PASSIVE;
            break;
        case CLUSTER_ROLE_NONE:
            c->role = CLUSTER_CMS_NONE;
            break;
        }
        c->epoch = a->fsm.epoch;
        for (unsigned d = 0; d < a->n_dbs && s.n_dbs < CLUSTER_WIRE_MAX_DBS; d++) {
            struct cluster_fsm_db db;
            struct cluster_agent_db copy = a->dbs[d];
            cluster_db_look(&copy, &db); /* on a copy: the step's bookkeeping stays */
            struct cluster_db_state *w = &s.dbs[s.n_dbs++];
            snprintf(w->name, sizeof(w->name), "%s", db.name);
            w->generation = db.pos.generation;
            w->offset = db.pos.offset;
            w->lsn = db.pos.lsn;
            w->epoch = db.pos.epoch;
            w->copy_state = copy.wire_copy_state;
        }
    }
    const char *error = NULL;
    if (cluster_hb_set_summary(hb, &s, &error) < 0)
        log_error("cluster agent: summary refused: %s", error ? error : "?");
}

static void
arm_timer(void)
{
    uint64_t now = cluster_hb_now_ms(), next = now + interval_ms;
    for (unsigned i = 0; i < n_agents; i++)
        if (agents[i].out.next_step_ms && agents[i].out.next_step_ms < next)
            next = agents[i].out.next_step_ms;
    uint64_t delay = next > now ? next - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(delay / 1000), .tv_usec = (suseconds_t)(delay % 1000) * 1000};
    evtimer_add(timer, &tv);
}

/* Tells the workers when the databases not served here (dismounted or fenced) changed, as
 * core_dismount.c does: a worker ends the sessions of one that went and serves one that came
 * back (an activated copy, a mount). Once per round of steps, so a fence that a step set and
 * the next lifted (an activation's first step) never reaches them. */
static void
push_dismounted(void)
{
    static char last[4096];
    char now[4096];
    size_t used = 0;
    now[0] = '\0';
    for (size_t i = 0; i < tandemd__core_db_count(); i++) {
        const char *name, *kind;
        struct store *store;
        bool dismounted;
        tandemd__core_db_get(i, &name, &kind, &store);
        tandemd__core_db_lookup(name, strlen(name), &store, &kind, &dismounted);
        if (!dismounted && !tandemd__core_db_fenced(name))
            continue;
        int n = snprintf(now + used, sizeof(now) - used, "%s/", name);
        if (n < 0 || (size_t)n >= sizeof(now) - used)
            break;
        used += (size_t)n;
    }
    if (strcmp(now, last) == 0)
        return;
    memcpy(last, now, sizeof(last));
    tandemd__core_ipc_dismounted_push();
}

static void
step_all(void)
{
    if (stepping) {
        step_again = true;
        return;
    }
    struct cluster_hb *hb = tandemd__core_cluster_hb();
    if (!hb || n_agents == 0)
        return;
    stepping = true;
    for (int round = 0; round < 4; round++) {
        step_again = false;
        cluster_hb_snapshot(hb, &snap);
        for (unsigned i = 0; i < n_agents; i++)
            step_one(&agents[i]);
        if (!step_again)
            break;
    }
    set_summary();
    push_dismounted();
    stepping = false;
    arm_timer();
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    /* A lost session is tried again at every tick; connecting while one is up is a no-op. */
    if (coord && !coord_client_is_up(coord))
        coord_client_connect(coord);
    step_all();
}

static void
on_hb_change(void *arg)
{
    (void)arg;
    step_all();
}

/* ---- start, stop ---- */

void
tandemd__core_cluster_start(struct event_base *b, const struct tdm_config *cfg)
{
    if (!cluster_db_is_node())
        return;
    if (!tandemd__core_cluster_hb()) {
        log_error("cluster agent not started: the heartbeats are not running, so no CMS is "
                  "mounted here");
        return;
    }
    const struct tdm_config_member *w = NULL;
    for (unsigned i = 0; i < cfg->n_members; i++)
        if (strcmp(cfg->members[i].name, cfg->cluster.witness) == 0)
            w = &cfg->members[i];
    if (!w || w->coord_line == 0) {
        log_error("cluster agent not started: the witness [member %s] has no coord endpoint",
                  cfg->cluster.witness);
        return;
    }
    base = b;
    snprintf(self, sizeof(self), "%s", cfg->server);
    interval_ms = cfg->cluster.heartbeat_interval_ms;
    started_ms = cluster_hb_now_ms();
    misses = cfg->cluster.heartbeat_misses;
    ttl_ms = cfg->cluster.lease_ttl_ms;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    char *why = NULL, *key = NULL;
    int ret = tls_client_ctx_new(files.ca, files.certificate, files.key, &client_tls, &why);
    tls_files_clear(&files);
    if (ret == 0)
        ret = dir_client_key_from_config(cfg, &key, &why);
    if (ret == 0) {
        struct coord_client_options o = {
            .n_endpoints = 1,
            .tls = client_tls,
            .member = cfg->server,
            .key = key,
            .cluster = cfg->cluster.name,
            /* Silence for this long loses the witness: its vote is gone then (docs/cluster.md). */
            .timeout_ms = (uint32_t)(interval_ms * misses < 3000 ? 3000 : interval_ms * misses),
            .on_up = on_up,
            .on_lost = on_lost,
            .on_notify = on_notify,
        };
        o.endpoints[0].host = w->coord.address.text;
        o.endpoints[0].port = (uint16_t)w->coord.port;
        ret = coord_client_new(b, &o, &coord);
    }
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    if (ret < 0) {
        log_error("cluster agent not started: %s", why ? why : tdm_strerror(ret));
        free(why);
        tandemd__core_cluster_stop();
        return;
    }
    for (unsigned c = 0; c < cluster_db_n_cms(); c++) {
        struct agent_cms *a = &agents[n_agents++];
        memset(a, 0, sizeof(*a));
        a->cfg = cluster_db_cms(c); /* a copy: the configuration may be reloaded */
        snprintf(a->key, sizeof(a->key), "cms/%s", a->cfg->name);
        cluster_fsm_init(&a->fsm);
        a->out.state = CLUSTER_STATE_WAITING;
        snprintf(a->out.reason, sizeof(a->out.reason), "starting");
        for (unsigned d = 0; d < a->cfg->n_databases && d < CLUSTER_FSM_MAX_DBS; d++)
            snprintf(a->dbs[a->n_dbs++].name, sizeof(a->dbs[0].name), "%s",
                     a->cfg->databases[d]);
    }
    timer = evtimer_new(b, on_timer, NULL);
    if (!timer)
        log_fatal("out of memory");
    tandemd__core_cluster_hb_on_change(on_hb_change, NULL);
    cluster_failover_start(b, cfg);
    cluster_end_start(step_all);
    coord_client_connect(coord);
    log_info("cluster agent: %u CMS(s), witness %s at %s:%u", n_agents, w->name,
             w->coord.address.text, (unsigned)w->coord.port);
    step_all();
}

void
tandemd__core_cluster_stop(void)
{
    cluster_failover_stop();
    cluster_end_stop();
    tandemd__core_cluster_hb_on_change(NULL, NULL);
    if (timer)
        event_free(timer);
    timer = NULL;
    coord_client_free(&coord);
    if (client_tls)
        SSL_CTX_free(client_tls);
    client_tls = NULL;
    n_agents = 0;
}

/* ---- status ---- */

static const char *
state_word(const struct agent_cms *a)
{
    return cluster_fsm_state_name(a->out.state);
}

struct json_t *
tandemd__core_cluster_status_json(void)
{
    if (n_agents == 0)
        return NULL;
    bool witness_up = coord && coord_client_is_up(coord);
    json_t *list = json_array();
    for (unsigned i = 0; i < n_agents; i++) {
        const struct agent_cms *a = &agents[i];
        json_t *dbs = json_array();
        for (unsigned d = 0; d < a->n_dbs; d++)
            json_array_append_new(dbs, json_string(a->dbs[d].name));
        json_t *c = json_pack(
            "{s:s,s:s,s:o,s:s,s:s,s:b,s:{s:o,s:I,s:b},s:I}", "name", a->cfg->name, "address",
            a->cfg->address.text, "databases", dbs, "state", state_word(a), "reason",
            a->out.reason, "writes_allowed", a->out.writes_allowed, "lease", "holder",
            a->holder[0] ? json_string(a->holder) : json_null(), "epoch", (json_int_t)a->epoch,
            "witness_connected", witness_up, "epoch", (json_int_t)a->fsm.epoch);
        json_object_set_new(c, "last_failover", cluster_failover_json(a->cfg->name));
        json_object_set_new(c, "move", cluster_move_json(a->cfg->name));
        json_array_append_new(list, c);
    }
    return json_pack("{s:o}", "cms", list);
}

/* ---- switchover ---- */

int
tandemd__core_cluster_move(const char *cms, const char *to, const char *comment,
                           const char **why_r)
{
    struct cluster_hb *hb = tandemd__core_cluster_hb();
    for (unsigned i = 0; i < n_agents && hb; i++) {
        struct agent_cms *a = &agents[i];
        if (strcmp(a->cfg->name, cms) != 0)
            continue;
        static struct cluster_fsm_input in; /* large: static, loop thread only */
        cluster_hb_snapshot(hb, &snap);
        build_input(a, &in);
        int ret = cluster_move_start(&in, a->out.state, to, comment, in.now_ms, why_r);
        if (ret == 0)
            step_all(); /* writes stop now, not at the next tick */
        return ret;
    }
    *why_r = "no such CMS on this cluster node";
    return TDM_ENOTFOUND;
}

/* ---- the operator's activation ---- */

int
tandemd__core_cluster_activate(const char *db, bool force, struct core_conn *c,
                               uint32_t request_id)
{
    const struct tdm_config_cms *cfg = cluster_db_cms_of(db);
    struct cluster_hb *hb = tandemd__core_cluster_hb();
    struct agent_cms *a = NULL;
    for (unsigned i = 0; i < n_agents && cfg && hb; i++)
        if (strcmp(agents[i].cfg->name, cfg->name) == 0)
            a = &agents[i];
    if (!a) {
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s refused: it belongs to a CMS of this cluster and the "
                   "cluster agent does not run here",
                   db);
        return TDM_ECONFLICT;
    }
    if (!force) {
        /* The agent takes the CMS over by itself wherever the rules allow; beyond the dial
         * only the operator's --force may. */
        bool beyond = a->out.state == CLUSTER_STATE_WAITING &&
                      strncmp(a->out.reason, "beyond mount dial", 17) == 0;
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s refused: it belongs to CMS %s, which the cluster agent "
                   "activates when it wins the lease (%s%s%s)%s",
                   db, a->cfg->name, cluster_fsm_state_name(a->out.state),
                   a->out.reason[0] ? ": " : "", a->out.reason,
                   beyond ? "; --force takes it over beyond the dial" : "");
        return beyond ? TDM_EGAP : TDM_ECONFLICT;
    }
    if (cluster_force_asked(a->cfg->name))
        return TDM_ECONFLICT;
    /* What the decisions would do with the request, on a copy of their state: the request is
     * taken only where it leads to a takeover (the old active silent, the witness, quorum...). */
    static struct cluster_fsm_input in; /* large: static, loop thread only */
    cluster_hb_snapshot(hb, &snap);
    build_input(a, &in);
    in.force_activate = true;
    struct cluster_fsm trial = a->fsm;
    static struct cluster_fsm_output out;
    cluster_fsm_step(&trial, &in, &out);
    if (out.state != CLUSTER_STATE_FAILING_OVER && out.state != CLUSTER_STATE_ACTIVE) {
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s with --force refused: CMS %s cannot be taken over here "
                   "(%s%s%s)",
                   db, a->cfg->name, cluster_fsm_state_name(out.state), out.reason[0] ? ": " : "",
                   out.reason);
        return TDM_ECONFLICT;
    }
    if (a->fsm.state == CLUSTER_STATE_ACTIVE) {
        event_emit(TDM_EV_REPL_COPY_ACTIVATION_REFUSED, db,
                   "activation of %s refused: CMS %s is active here already", db, a->cfg->name);
        return TDM_ECONFLICT;
    }
    int ret = cluster_force_start(a->cfg->name, db, c, request_id, in.now_ms);
    if (ret == 0) {
        step_all();
        return 1;
    }
    return ret;
}

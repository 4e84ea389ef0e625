/*
 * The cluster agent's decisions (cluster_fsm.h; the rules are docs/cluster.md's, each marked
 * here with the section it comes from). One step looks at the whole input afresh: the little
 * kept in struct cluster_fsm is what the node has done (it is active in an epoch, it asked for
 * the lease, it asked for a transfer), never what it believes about others.
 */
#include "cluster/cluster_fsm.h"

#include "lib/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The derived timers of docs/cluster.md "Timing". */
struct timers {
    uint64_t i, f, down, takeover; /* I, F = T - I, I x misses, F + I/2 */
};

static struct timers
timers_of(const struct cluster_fsm_input *in)
{
    struct timers t;
    t.i = in->interval_ms;
    t.f = in->ttl_ms > in->interval_ms ? in->ttl_ms - in->interval_ms : 0;
    t.down = in->interval_ms * in->misses;
    t.takeover = t.f + in->interval_ms / 2;
    return t;
}

static bool
seen(const struct cluster_fsm_member *m, uint64_t now, const struct timers *t)
{
    return m->last_heard_ms != 0 && now < m->last_heard_ms + t->down;
}

static unsigned
n_votes(const struct cluster_fsm_input *in)
{
    return in->n_members + 1; /* every other member and this node */
}

static unsigned
quorum(const struct cluster_fsm_input *in)
{
    return n_votes(in) / 2 + 1;
}

/* Votes this node sees, itself included; the witness also counts while its coordination
 * connection is up (a lease answer is an answer). */
static unsigned
votes_seen(const struct cluster_fsm_input *in, const struct timers *t)
{
    unsigned n = 1;
    for (unsigned k = 0; k < in->n_members; k++) {
        const struct cluster_fsm_member *m = &in->members[k];
        if (seen(m, in->now_ms, t) || (m->is_witness && in->lease.witness_up))
            n++;
    }
    return n;
}

uint64_t
cluster_fsm_confirmed_at(const struct cluster_fsm_input *in, uint64_t nodes_since)
{
    /* Nodes' answers, newest first. */
    uint64_t acks[CLUSTER_FSM_MAX_MEMBERS];
    unsigned n_nodes = 0;
    bool has_witness = false;
    for (unsigned k = 0; k < in->n_members; k++) {
        if (in->members[k].is_witness) {
            has_witness = true;
            continue;
        }
        uint64_t a = in->members[k].acked_sent_ms;
        if (a < nodes_since)
            a = 0; /* answered a heartbeat that did not say we are active */
        unsigned j = n_nodes++;
        while (j > 0 && acks[j - 1] < a) {
            acks[j] = acks[j - 1];
            j--;
        }
        acks[j] = a;
    }
    unsigned q = quorum(in);
    uint64_t best = 0;
    /* (i) a majority with the witness: the witness and the (q - 2) newest node answers. */
    uint64_t w = in->lease.witness_up ? in->lease.renew_acked_sent_ms : 0;
    if (has_witness && w != 0 && q >= 2) {
        uint64_t s = w;
        if (q >= 3) {
            if (q - 2 > n_nodes)
                s = 0;
            else if (acks[q - 3] < s)
                s = acks[q - 3];
        }
        if (s > best)
            best = s;
    }
    /* (ii) without the witness: every node of the cluster (the failsafe), if they are a
     * majority. A majority of nodes short of all of them is not enough: a passive that does
     * not hear the active could take the lease while the others confirm it. */
    if (n_nodes + 1 >= q && n_nodes > 0) {
        uint64_t s = acks[n_nodes - 1]; /* the oldest */
        if (s > best)
            best = s;
    }
    return best;
}

/* ---- output helpers ---- */

static void
act(struct cluster_fsm_output *out, enum cluster_fsm_action_kind kind, uint64_t epoch,
    const char *peer)
{
    TDM_ASSERT(out->n_actions < CLUSTER_FSM_MAX_ACTIONS);
    struct cluster_fsm_action *a = &out->actions[out->n_actions++];
    a->kind = kind;
    a->epoch = epoch;
    snprintf(a->peer, sizeof(a->peer), "%s", peer ? peer : "");
}

static bool
emitted(const struct cluster_fsm_output *out, enum cluster_fsm_action_kind kind)
{
    for (unsigned i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == kind)
            return true;
    return false;
}

static void __attribute__((format(printf, 2, 3)))
because(struct cluster_fsm_output *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
    va_end(ap);
}

static void
wake_at(struct cluster_fsm_output *out, uint64_t t)
{
    if (t != 0 && (out->next_step_ms == 0 || t < out->next_step_ms))
        out->next_step_ms = t;
}

static bool
any_db(const struct cluster_fsm_input *in, enum cluster_fsm_db_state s)
{
    for (unsigned d = 0; d < in->n_dbs; d++)
        if (in->dbs[d].state == s)
            return true;
    return false;
}

static bool
db_eligible(enum cluster_fsm_db_state s)
{
    return s == CLUSTER_DB_DISMOUNTED || s == CLUSTER_DB_COPY_HEALTHY ||
           s == CLUSTER_DB_COPY_LOST_SOURCE;
}

static uint64_t
total_log(const struct cluster_fsm_input *in)
{
    uint64_t sum = 0;
    for (unsigned d = 0; d < in->n_dbs; d++)
        sum += in->dbs[d].pos.lsn;
    return sum;
}

static uint64_t
member_log(const struct cluster_fsm_input *in, const struct cluster_fsm_member *m)
{
    uint64_t sum = 0;
    for (unsigned d = 0; d < in->n_dbs; d++)
        sum += m->dbs[d].pos.lsn;
    return sum;
}

static bool
member_eligible(const struct cluster_fsm_input *in, const struct cluster_fsm_member *m)
{
    for (unsigned d = 0; d < in->n_dbs; d++)
        if (!m->dbs[d].eligible)
            return false;
    return true;
}

static bool
is_self(const struct cluster_fsm_input *in, const char *name)
{
    return name[0] != '\0' && strcmp(name, in->self) == 0;
}

static const struct cluster_fsm_member *
member_named(const struct cluster_fsm_input *in, const char *name)
{
    for (unsigned k = 0; k < in->n_members; k++)
        if (strcmp(in->members[k].name, name) == 0)
            return &in->members[k];
    return NULL;
}

static bool
claims_writer(enum cluster_fsm_role r)
{
    return r == CLUSTER_ROLE_ACTIVE || r == CLUSTER_ROLE_MOVING || r == CLUSTER_ROLE_FENCED;
}

/* Updates the highest epoch this node knows of. */
static void
learn_epochs(struct cluster_fsm *fsm, const struct cluster_fsm_input *in)
{
    if (in->lease.epoch > fsm->epoch)
        fsm->epoch = in->lease.epoch;
    for (unsigned k = 0; k < in->n_members; k++)
        if (in->members[k].epoch > fsm->epoch)
            fsm->epoch = in->members[k].epoch;
    for (unsigned d = 0; d < in->n_dbs; d++)
        if (in->dbs[d].pos.epoch > fsm->epoch)
            fsm->epoch = in->dbs[d].pos.epoch;
}

/* ---- the mount dial (docs/cluster.md "Failover") ---- */

static unsigned
dial_generations(enum cluster_mount_dial d)
{
    switch (d) {
    case CLUSTER_DIAL_LOSSLESS:
        return 0;
    case CLUSTER_DIAL_GOOD:
        return 3;
    case CLUSTER_DIAL_BEST:
        return 6;
    }
    return 0;
}

/* A database that is an active store of this node's own, not a copy: it followed no active
 * since this node started. */
static bool
own_store(enum cluster_fsm_db_state s)
{
    return s == CLUSTER_DB_MOUNTED || s == CLUSTER_DB_DISMOUNTED;
}

/*
 * Checks every database against the most log any member last reported for it (the old
 * active's last report, or a fenced active's, is the most there is) and the witness's record
 * of the active's log end (in->end, which outlives the node that wrote it). A database lacks
 * records when the reference's LSN is beyond its own; it then lacks max(1, reference
 * generation - own generation) generations, and (block and sync modes, where the open
 * generation ships too) the bytes between the two ends. An active store of this node's own in
 * an older epoch than the record's never saw the record's epoch: it lacks at least one record
 * whatever the LSNs say (docs/cluster.md "The recorded log end"). A copy is eligible only
 * after it followed the CMS address in this run, so it holds what it was shipped of the
 * newest epoch. Returns false with the reason.
 */
static bool
within_dial(const struct cluster_fsm_input *in, struct cluster_fsm_output *out, bool *lossy_r)
{
    unsigned allow = dial_generations(in->dial);
    *lossy_r = false;
    for (unsigned d = 0; d < in->n_dbs; d++) {
        const struct cluster_fsm_db *db = &in->dbs[d];
        const struct cluster_fsm_logpos *ref = NULL;
        for (unsigned k = 0; k < in->n_members; k++) {
            const struct cluster_fsm_member *m = &in->members[k];
            if (m->is_witness || m->role == CLUSTER_ROLE_NONE)
                continue;
            if (!ref || m->dbs[d].pos.lsn > ref->lsn)
                ref = &m->dbs[d].pos;
        }
        const struct cluster_fsm_logpos *rec = in->end.known ? &in->end.dbs[d] : NULL;
        if (rec && (!ref || rec->lsn > ref->lsn))
            ref = rec;
        bool older = rec && own_store(db->state) && rec->epoch > db->pos.epoch;
        if (older && ref->lsn <= db->pos.lsn)
            ref = rec;
        if (!older && (!ref || ref->lsn <= db->pos.lsn))
            continue;
        *lossy_r = true;
        uint64_t records = ref->lsn > db->pos.lsn ? ref->lsn - db->pos.lsn : 1;
        uint64_t gens =
            ref->generation > db->pos.generation ? ref->generation - db->pos.generation : 0;
        if (gens == 0)
            gens = 1;
        uint64_t ref_bytes = ref->generation * db->generation_bytes + ref->offset;
        uint64_t own_bytes = db->pos.generation * db->generation_bytes + db->pos.offset;
        uint64_t bytes = ref_bytes > own_bytes ? ref_bytes - own_bytes : 0;
        bool beyond = in->dial == CLUSTER_DIAL_LOSSLESS || gens > allow;
        if (!beyond && db->mode != CLUSTER_MODE_FILE &&
            bytes > (uint64_t)allow * db->generation_bytes)
            beyond = true;
        if (beyond) {
            char epochs[120] = "";
            if (older)
                snprintf(epochs, sizeof(epochs),
                         "; its log is of epoch %" PRIu64 ", %s wrote in epoch %" PRIu64,
                         db->pos.epoch, in->end.holder[0] ? in->end.holder : "the active",
                         rec->epoch);
            because(out,
                    "beyond mount dial: %s has %" PRIu64 " generations missing (%s%" PRIu64
                    " records, %" PRIu64 " bytes)%s, dial %s allows %u%s",
                    db->name, gens, older ? "at least " : "", records, bytes,
                    ref == rec ? " against the witness's record" : "",
                    cluster_mount_dial_name(in->dial), allow, epochs);
            return false;
        }
    }
    return true;
}

/* ---- active ---- */

/* Stops writing and dismounts; the databases stay what they are (not copies yet), so they stay
 * eligible: should no other node take the CMS over (its only peer is dead, the witness was
 * slow to answer this node's takeover), this node takes it back by the normal rules. They
 * become copies when another node says it is active (rejoin), as after any other leave. A
 * demotion here left the CMS down for good when no other node could take it: copies of an
 * address nobody served (the chaos test's late lease grant). */
static void
fence(struct cluster_fsm *fsm, const struct cluster_fsm_input *in, struct cluster_fsm_output *out,
      const char *why)
{
    act(out, CLUSTER_ACT_FENCE, 0, NULL);
    act(out, CLUSTER_ACT_DISMOUNT, 0, NULL);
    if (in->lease.witness_up && is_self(in, in->lease.holder))
        act(out, CLUSTER_ACT_RELEASE, in->lease.epoch, NULL);
    fsm->state = CLUSTER_STATE_FENCED;
    fsm->active_epoch = 0;
    fsm->transfer_sent = false;
    out->state = CLUSTER_STATE_FENCED;
    out->role = CLUSTER_ROLE_FENCED;
    because(out, "%s", why);
}

/* Leaves the CMS after a TRANSFER without demoting: its databases stay dismounted here, which
 * keeps them eligible, so should the target never activate (it died right after the transfer)
 * the normal failover rules bring the CMS back here or to another passive. They become copies
 * once a node says it is active (rejoin). */
static void
leave_after_transfer(struct cluster_fsm *fsm, struct cluster_fsm_output *out)
{
    act(out, CLUSTER_ACT_DISMOUNT, 0, NULL);
    fsm->state = CLUSTER_STATE_PASSIVE;
    fsm->active_epoch = 0;
    fsm->transfer_sent = false;
    out->state = CLUSTER_STATE_PASSIVE;
    out->role = CLUSTER_ROLE_PASSIVE;
}

/*
 * MOVING with the TRANSFER sent (docs/cluster.md "Switchover"): writes are paused and stay so
 * unless the witness proves the lease is still this node's in the epoch it writes in. Returns
 * true when it decided this step; false with fsm->transfer_sent cleared when the transfer did
 * not happen, so the caller goes on as MOVING (the move is still asked for: the TRANSFER goes
 * out again) or resumes the writes (the move was given up).
 *  - The lease is another node's, or free: this node leaves (dismount, no demotion). The
 *    target's (a switchover that completed), or anyone's after it: either way not ours.
 *  - A grant of a RENEW sent after the TRANSFER (strictly later: never in its step), in our epoch: the witness took the RENEW after
 *    the TRANSFER (one session keeps the order; a new session comes after the old one ended),
 *    and a transfer would have made it the target's: the transfer did not happen.
 *  - Granted in a newer epoch (the lease had gone free meanwhile): the target may have written
 *    in between; leave, and let the failover rules decide who mounts.
 *  - No answer yet (pending, the witness away): wait, paused; the RENEW goes out every I. Once
 *    the confirmation runs out (s + F), leave: the target may hold the lease by then and needs
 *    the CMS address, which this node must not keep bound.
 */
static bool
step_transferred(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
                 struct cluster_fsm_output *out, const struct timers *t)
{
    uint64_t now = in->now_ms;
    const struct cluster_fsm_lease *l = &in->lease;
    if (l->witness_up && !is_self(in, l->holder)) {
        bool to_target = l->holder[0] && strcmp(l->holder, fsm->transfer_to) == 0;
        out->moved = to_target;
        leave_after_transfer(fsm, out);
        if (to_target)
            because(out, "moved to %s", l->holder);
        else if (l->holder[0])
            because(out, "after the transfer to %s the lease is held by %s in epoch %" PRIu64,
                    fsm->transfer_to, l->holder, l->epoch);
        else
            because(out, "after the transfer to %s the lease is free", fsm->transfer_to);
        return true;
    }
    if (l->witness_up && !l->request_pending && l->renew_acked_sent_ms > fsm->transfer_sent_ms) {
        if (l->epoch == fsm->active_epoch) {
            fsm->transfer_sent = false; /* not transferred: the caller resumes or retries */
            return false;
        }
        leave_after_transfer(fsm, out);
        because(out, "the lease came back in epoch %" PRIu64 " after the transfer to %s",
                l->epoch, fsm->transfer_to);
        return true;
    }
    uint64_t s = cluster_fsm_confirmed_at(in, fsm->active_since_ms);
    if (s == 0 || now >= s + t->f) {
        leave_after_transfer(fsm, out);
        because(out, "the transfer to %s is unanswered and the confirmation ran out",
                fsm->transfer_to);
        return true;
    }
    wake_at(out, s + t->f);
    out->state = CLUSTER_STATE_MOVING;
    out->role = CLUSTER_ROLE_MOVING;
    out->moving_to = fsm->transfer_to;
    /* Ask the witness again where the lease is: a RENEW answers it. */
    if (l->witness_up && !l->request_pending) {
        if (now >= l->renew_sent_ms + t->i)
            act(out, CLUSTER_ACT_RENEW, fsm->active_epoch, NULL);
        else
            wake_at(out, l->renew_sent_ms + t->i);
    }
    wake_at(out, now + t->i);
    because(out, "waiting for the witness to answer the transfer to %s", fsm->transfer_to);
    return true;
}

/*
 * Switchover: the target must hold every record this node will ever write in its epoch before
 * the lease moves. Commits are asynchronous: one submitted before the FENCE may still become
 * durable after it, so the end is the highest LSN assigned (last_lsn), and the lease waits
 * until that is durable here (nothing more can come: new commits are refused since the
 * FENCE) and the target reports it. Comparing with the durable end alone, a commit made
 * durable after the TRANSFER would be in the old epoch only here: the old active would
 * rejoin diverged. True when both hold; false with the reason and a wake-up.
 */
static bool
drained_and_caught_up(const struct cluster_fsm_input *in, struct cluster_fsm_output *out,
                      const struct cluster_fsm_member *m, const struct timers *t)
{
    for (unsigned d = 0; d < in->n_dbs; d++) {
        const struct cluster_fsm_db *db = &in->dbs[d];
        uint64_t last = db->last_lsn > db->pos.lsn ? db->last_lsn : db->pos.lsn;
        if (last > db->pos.lsn) {
            because(out, "waiting for commits in flight on %s to become durable: LSN %" PRIu64
                    " of %" PRIu64, db->name, db->pos.lsn, last);
            /* A group commit away: look again soon. */
            wake_at(out, in->now_ms + t->i / 10 + 1);
            return false;
        }
        if (m->dbs[d].pos.lsn < last) {
            because(out, "waiting for %s to catch up: %s at LSN %" PRIu64 " of %" PRIu64, m->name,
                    db->name, m->dbs[d].pos.lsn, last);
            wake_at(out, in->now_ms + t->i);
            return false;
        }
    }
    return true;
}

static void
step_active(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
            struct cluster_fsm_output *out, const struct timers *t)
{
    uint64_t now = in->now_ms;
    const struct cluster_fsm_lease *l = &in->lease;
    bool moving = fsm->state == CLUSTER_STATE_MOVING;

    /* Switchover after the TRANSFER went out: writes stay paused until the witness says where
     * the lease is (step_transferred); it may resume the move or the writes here. */
    if (moving && fsm->transfer_sent && step_transferred(fsm, in, out, t))
        return;
    moving = fsm->state == CLUSTER_STATE_MOVING;
    /* Timing: the lease went to another node, or the confirmation ran out. */
    if (l->witness_up && l->holder[0] && !is_self(in, l->holder) && l->epoch > fsm->active_epoch) {
        char why[CLUSTER_FSM_REASON_MAX + 1];
        snprintf(why, sizeof(why), "the lease is held by %s in epoch %" PRIu64, l->holder,
                 l->epoch);
        fence(fsm, in, out, why);
        return;
    }
    uint64_t s = cluster_fsm_confirmed_at(in, fsm->active_since_ms);
    /* Just activated: a confirmation counts only answers to heartbeats sent since, so with
     * three nodes or more (the witness alone is no majority) there is none until the first
     * round comes back. Writes wait for it; the fence comes only if none comes within F of
     * the activation (before, the node fenced at its first step and demoted). */
    bool first_round = s == 0 && now < fsm->first_round_until_ms;
    if (!first_round && (s == 0 || now >= s + t->f)) {
        fence(fsm, in, out, "no confirmation from a majority of votes");
        return;
    }
    wake_at(out, first_round ? fsm->first_round_until_ms : s + t->f);
    /* Renew every I; a free lease (it expired while the witness was away, and the failsafe
     * kept this node writing) is asked for again. */
    if (l->witness_up && !l->request_pending) {
        if (is_self(in, l->holder)) {
            if (now >= l->renew_sent_ms + t->i)
                act(out, CLUSTER_ACT_RENEW, l->epoch, NULL);
            else
                wake_at(out, l->renew_sent_ms + t->i);
        } else if (l->holder[0] == '\0') {
            act(out, CLUSTER_ACT_ACQUIRE, fsm->epoch, NULL);
        }
    }

    const char *to = in->move_to && in->move_to[0] ? in->move_to : NULL;
    if (to && is_self(in, to))
        to = NULL; /* moving to itself: nothing to do */
    if (!moving && to) {
        act(out, CLUSTER_ACT_FENCE, 0, NULL);
        fsm->state = CLUSTER_STATE_MOVING;
        moving = true;
    } else if (moving && !to && !fsm->transfer_sent) {
        act(out, CLUSTER_ACT_RESUME, 0, NULL);
        fsm->state = CLUSTER_STATE_ACTIVE;
        moving = false;
    }
    if (!moving) {
        out->state = CLUSTER_STATE_ACTIVE;
        out->role = CLUSTER_ROLE_ACTIVE;
        out->writes_allowed = !first_round;
        out->writes_until_ms = first_round ? 0 : s + t->f;
        if (first_round)
            because(out, "waiting for the first confirmation of a majority");
        return;
    }
    /* Switchover: writes wait until the target holds every record (always lossless). */
    out->state = CLUSTER_STATE_MOVING;
    out->role = CLUSTER_ROLE_MOVING;
    out->moving_to = to;
    const struct cluster_fsm_member *m = to ? member_named(in, to) : NULL;
    if (!m || m->is_witness) {
        because(out, "%s is not a node of this cluster", to ? to : "?");
        return;
    }
    if (!seen(m, now, t) || m->role != CLUSTER_ROLE_PASSIVE || !member_eligible(in, m)) {
        because(out, "waiting for %s to report healthy copies", to);
        wake_at(out, now + t->i);
        return;
    }
    if (!drained_and_caught_up(in, out, m, t))
        return;
    /* Never in the step that renews: the glue would have two requests out, and a grant of the
     * RENEW must only ever answer one sent after the TRANSFER (step_transferred). */
    if (!fsm->transfer_sent && l->witness_up && is_self(in, l->holder) &&
        l->epoch == fsm->active_epoch && !l->request_pending && !emitted(out, CLUSTER_ACT_RENEW)) {
        act(out, CLUSTER_ACT_TRANSFER, l->epoch, to);
        fsm->transfer_sent = true;
        fsm->transfer_sent_ms = now;
        snprintf(fsm->transfer_to, sizeof(fsm->transfer_to), "%s", to);
    }
    because(out, "handing the lease to %s", to);
}

/* ---- not active ---- */

static void
become_active(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
              struct cluster_fsm_output *out)
{
    fsm->state = CLUSTER_STATE_ACTIVE;
    fsm->active_epoch = in->lease.epoch;
    fsm->active_since_ms = in->now_ms;
    /* Counted from the grant's request, not from now: a grant that took long to arrive leaves
     * less of the lease, and the node must be down before another could take it. */
    fsm->first_round_until_ms = in->lease.renew_acked_sent_ms + timers_of(in).f;
    fsm->acquire_sent_ms = 0;
    act(out, CLUSTER_ACT_ACTIVATE, in->lease.epoch, NULL);
    act(out, CLUSTER_ACT_ADDRESS_UP, 0, NULL);
    out->state = CLUSTER_STATE_ACTIVE;
    out->role = CLUSTER_ROLE_ACTIVE;
    /* Writes wait for the next step's confirmation check. */
}

/* Not active: a passive whose databases that are not copies yet become copies when another
 * node is the CMS's (docs/cluster.md "Rejoin"). Mounted ones are dismounted at once; the
 * demotion waits until that node says it is active (claims): a node that only holds the lease
 * (a switchover's target that has not activated yet, and may never: it died) would leave this
 * node with copies that never were Healthy, so no node could take the CMS over. */
static void
rejoin(const struct cluster_fsm_input *in, struct cluster_fsm_output *out, bool claims)
{
    bool mounted = any_db(in, CLUSTER_DB_MOUNTED);
    if (mounted) {
        act(out, CLUSTER_ACT_FENCE, 0, NULL);
        act(out, CLUSTER_ACT_DISMOUNT, 0, NULL);
    }
    if (claims && (mounted || any_db(in, CLUSTER_DB_DISMOUNTED)))
        act(out, CLUSTER_ACT_DEMOTE, 0, NULL);
}

static void
wait_for(struct cluster_fsm *fsm, struct cluster_fsm_output *out,
         const struct cluster_fsm_input *in)
{
    fsm->state = CLUSTER_STATE_WAITING;
    out->state = CLUSTER_STATE_WAITING;
    /* A lease granted for a takeover that no longer holds goes back at once (one handed
     * over by a switchover stays while the target waits for its last records). */
    if (fsm->acquire_sent_ms != 0 && in->lease.witness_up && is_self(in, in->lease.holder) &&
        !in->lease.request_pending)
        act(out, CLUSTER_ACT_RELEASE, in->lease.epoch, NULL);
    fsm->acquire_sent_ms = 0;
}

/* Does candidate m rank ahead of this node: more log, then lower preference, then name. */
static bool
ranks_ahead(const struct cluster_fsm_input *in, const struct cluster_fsm_member *m)
{
    uint64_t mine = total_log(in), theirs = member_log(in, m);
    if (theirs != mine)
        return theirs > mine;
    if (m->preference != in->self_preference)
        return m->preference < in->self_preference;
    return strcmp(m->name, in->self) < 0;
}

static void
step_passive(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
             struct cluster_fsm_output *out, const struct timers *t)
{
    uint64_t now = in->now_ms;
    const struct cluster_fsm_lease *l = &in->lease;
    out->role = CLUSTER_ROLE_PASSIVE;
    out->state = CLUSTER_STATE_PASSIVE;
    wake_at(out, now + t->i);

    bool all_eligible = in->n_dbs > 0;
    const char *bad_db = NULL;
    for (unsigned d = 0; d < in->n_dbs; d++)
        if (!db_eligible(in->dbs[d].state)) {
            all_eligible = false;
            bad_db = in->dbs[d].name;
            break;
        }
    unsigned sees = votes_seen(in, t);
    out->candidate = l->witness_up && sees >= quorum(in) && all_eligible;

    /* A switchover to this node: the lease was handed here by an active that stopped
     * writing first (its summary says MOVING to us). */
    bool transfer = false;
    const struct cluster_fsm_member *from = NULL;
    if (l->witness_up && is_self(in, l->holder) && fsm->acquire_sent_ms == 0) {
        for (unsigned k = 0; k < in->n_members; k++) {
            const struct cluster_fsm_member *m = &in->members[k];
            if (m->role == CLUSTER_ROLE_MOVING && is_self(in, m->moving_to))
                from = m;
        }
        transfer = from != NULL;
    }

    /* Timing (b): every node that may still write — its last summary says it is (or was)
     * active, or it holds the lease — must be silent for F + I/2, or its core dead. */
    const struct cluster_fsm_member *writer = NULL;
    uint64_t writer_until = 0;
    bool writer_claims = false; /* one of them says it is active (not only the lease holder) */
    for (unsigned k = 0; k < in->n_members; k++) {
        const struct cluster_fsm_member *m = &in->members[k];
        if (m->is_witness || m == from)
            continue;
        bool holds = l->holder[0] && strcmp(l->holder, m->name) == 0;
        /* Start: a node not heard since this agent started may be an active writing on its
         * confirmation from before (the failsafe, a lease that ran out at the witness while
         * the node still counts it): its silence counts from the start (docs/cluster.md). */
        bool unheard = m->last_heard_ms == 0;
        if (!claims_writer(m->role) && !holds && !unheard)
            continue;
        uint64_t heard = m->last_heard_ms > in->started_ms ? m->last_heard_ms : in->started_ms;
        if (m->core_dead || heard == 0 || now >= heard + t->takeover)
            continue;
        if (claims_writer(m->role))
            writer_claims = true;
        if (!writer || heard + t->takeover > writer_until) {
            writer = m;
            writer_until = heard + t->takeover;
        }
    }
    if (writer) {
        /* Someone is (or may still be) the CMS's: stay a passive of it. */
        rejoin(in, out, writer_claims);
        if (fsm->acquire_sent_ms != 0 && l->witness_up && is_self(in, l->holder) &&
            !l->request_pending)
            act(out, CLUSTER_ACT_RELEASE, l->epoch, NULL);
        fsm->state = CLUSTER_STATE_PASSIVE;
        fsm->acquire_sent_ms = 0;
        if (writer->last_heard_ms == 0) {
            out->state = CLUSTER_STATE_WAITING;
            because(out,
                    "%s not heard since this node started (it may be active); takeover "
                    "possible %" PRIu64 " ms after the start",
                    writer->name, t->takeover);
        } else if (seen(writer, now, t) && now < writer->last_heard_ms + t->i * 2) {
            because(out, "%s is active", writer->name);
        } else {
            out->state = CLUSTER_STATE_WAITING;
            because(out,
                    "%s (active) silent for %" PRIu64 " ms; takeover possible after %" PRIu64 " ms",
                    writer->name, now - writer->last_heard_ms, t->takeover);
        }
        wake_at(out, writer_until);
        return;
    }
    /* No writer: the CMS is this node's if the rules allow (docs/cluster.md "Failover"). */
    if (sees < quorum(in)) {
        wait_for(fsm, out, in);
        because(out, "no quorum: sees %u of %u votes, needs %u", sees, n_votes(in), quorum(in));
        return;
    }
    if (!l->witness_up) {
        wait_for(fsm, out, in);
        because(out, "witness not reachable: the lease cannot be taken");
        return;
    }
    if (!all_eligible) {
        wait_for(fsm, out, in);
        because(out, "copy of %s is not healthy", bad_db ? bad_db : "(none)");
        return;
    }
    bool lossy = false;
    if (transfer) {
        /* Switchover is lossless: the old active waited for this node to hold its last
         * record before it handed the lease over. */
        for (unsigned d = 0; d < in->n_dbs; d++)
            if (from->dbs[d].pos.lsn > in->dbs[d].pos.lsn) {
                wait_for(fsm, out, in);
                because(out, "lease transferred from %s, but %s lacks its records", from->name,
                        in->dbs[d].name);
                return;
            }
        /* A handed-over lease is renewed first (the witness's vote counts only from a request
         * this node sent; the glue sends one at the handover): mounting without a fresh grant
         * would fence at once, demote, and leave no healthy copy anywhere if the old active
         * demoted meanwhile. */
        if (l->request_pending || l->renew_acked_sent_ms == 0 ||
            now >= l->renew_acked_sent_ms + t->f) {
            /* No fresh grant yet (the glue's renewal unanswered or lost): ask again. */
            if (!l->request_pending && now >= l->renew_sent_ms + t->i)
                act(out, CLUSTER_ACT_RENEW, l->epoch, NULL);
            fsm->state = CLUSTER_STATE_FAILING_OVER;
            out->state = CLUSTER_STATE_FAILING_OVER;
            because(out, "lease handed over by %s: renewing it before mounting", from->name);
            return;
        }
        become_active(fsm, in, out);
        return;
    }
    for (unsigned k = 0; k < in->n_members; k++) {
        const struct cluster_fsm_member *m = &in->members[k];
        if (m->is_witness || !seen(m, now, t) || m->role != CLUSTER_ROLE_PASSIVE || !m->candidate ||
            !member_eligible(in, m))
            continue;
        if (ranks_ahead(in, m)) {
            wait_for(fsm, out, in);
            because(out, "another passive has more log or is preferred: %s", m->name);
            return;
        }
    }
    /* Beyond the dial only the operator's `copy activate --force` takes it over. */
    bool beyond = !within_dial(in, out, &lossy);
    if (beyond && !in->force_activate) {
        wait_for(fsm, out, in);
        return;
    }
    /* A grant whose request went out F ago or more is not acted on: mounting would leave no
     * time to confirm before the fence (docs/cluster.md "Timing"); it is asked for again. */
    if (is_self(in, l->holder) && fsm->acquire_sent_ms != 0 &&
        l->renew_acked_sent_ms >= fsm->acquire_sent_ms && now < l->renew_acked_sent_ms + t->f) {
        /* Granted (an answer to an ACQUIRE of this failover, not a lease remembered from
         * before), and every rule still holds at this instant: mount. */
        const struct cluster_fsm_member *old = NULL;
        for (unsigned k = 0; k < in->n_members; k++) {
            const struct cluster_fsm_member *m = &in->members[k];
            if (!m->is_witness && claims_writer(m->role) && (!old || m->epoch > old->epoch))
                old = m;
        }
        if (old && lossy && !old->core_dead)
            act(out, CLUSTER_ACT_LAST_LOGS, 0, old->name);
        become_active(fsm, in, out);
        out->forced = beyond;
        /* A failover from the node last seen active, or from the writer of the witness's
         * record when that node was not heard since this one started (the recorded log end):
         * the transports resubmit what the lost tail may have held. */
        const char *lost = old ? old->name : NULL;
        if (!lost && in->end.known && in->end.holder[0] && !is_self(in, in->end.holder))
            lost = in->end.holder;
        if (lost)
            act(out, CLUSTER_ACT_RESUBMIT, in->lease.epoch, lost);
        return;
    }
    fsm->state = CLUSTER_STATE_FAILING_OVER;
    out->state = CLUSTER_STATE_FAILING_OVER;
    if (!l->request_pending && (fsm->acquire_sent_ms == 0 || now >= fsm->acquire_sent_ms + t->i)) {
        act(out, CLUSTER_ACT_ACQUIRE, fsm->epoch + 1, NULL);
        fsm->acquire_sent_ms = now;
    }
    wake_at(out, fsm->acquire_sent_ms + t->i);
    const char *forced = beyond ? "beyond the mount dial, forced by the operator: " : "";
    if (l->holder[0] && !is_self(in, l->holder))
        because(out, "%sasking for the lease (held by %s in epoch %" PRIu64 ")", forced, l->holder,
                l->epoch);
    else
        because(out, "%sasking for the lease", forced);
}

/* ---- entry points ---- */

void
cluster_fsm_init(struct cluster_fsm *fsm)
{
    memset(fsm, 0, sizeof(*fsm));
    fsm->state = CLUSTER_STATE_WAITING;
}

void
cluster_fsm_step(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
                 struct cluster_fsm_output *out)
{
    TDM_ASSERT(in->n_members <= CLUSTER_FSM_MAX_MEMBERS && in->n_dbs <= CLUSTER_FSM_MAX_DBS);
    TDM_ASSERT(in->interval_ms > 0 && in->ttl_ms > in->interval_ms && in->misses > 0);
    memset(out, 0, sizeof(*out));
    struct timers t = timers_of(in);
    learn_epochs(fsm, in);
    if (fsm->state == CLUSTER_STATE_ACTIVE || fsm->state == CLUSTER_STATE_MOVING) {
        step_active(fsm, in, out, &t);
        return;
    }
    if (fsm->state == CLUSTER_STATE_FENCED && any_db(in, CLUSTER_DB_MOUNTED)) {
        /* The dismount did not happen yet: ask again, nothing else. */
        act(out, CLUSTER_ACT_FENCE, 0, NULL);
        act(out, CLUSTER_ACT_DISMOUNT, 0, NULL);
        out->state = CLUSTER_STATE_FENCED;
        out->role = CLUSTER_ROLE_FENCED;
        wake_at(out, in->now_ms + t.i);
        because(out, "dismounting");
        return;
    }
    step_passive(fsm, in, out, &t);
}

const char *
cluster_fsm_state_name(enum cluster_fsm_state s)
{
    switch (s) {
    case CLUSTER_STATE_PASSIVE:
        return "Passive";
    case CLUSTER_STATE_WAITING:
        return "Waiting";
    case CLUSTER_STATE_FAILING_OVER:
        return "FailingOver";
    case CLUSTER_STATE_ACTIVE:
        return "Active";
    case CLUSTER_STATE_MOVING:
        return "Moving";
    case CLUSTER_STATE_FENCED:
        return "Fenced";
    }
    return "?";
}

const char *
cluster_fsm_action_name(enum cluster_fsm_action_kind k)
{
    switch (k) {
    case CLUSTER_ACT_FENCE:
        return "fence";
    case CLUSTER_ACT_RESUME:
        return "resume";
    case CLUSTER_ACT_DISMOUNT:
        return "dismount";
    case CLUSTER_ACT_RELEASE:
        return "release";
    case CLUSTER_ACT_DEMOTE:
        return "demote";
    case CLUSTER_ACT_ACQUIRE:
        return "acquire";
    case CLUSTER_ACT_RENEW:
        return "renew";
    case CLUSTER_ACT_LAST_LOGS:
        return "last-logs";
    case CLUSTER_ACT_ACTIVATE:
        return "activate";
    case CLUSTER_ACT_ADDRESS_UP:
        return "address-up";
    case CLUSTER_ACT_TRANSFER:
        return "transfer";
    case CLUSTER_ACT_RESUBMIT:
        return "resubmit";
    }
    return "?";
}

const char *
cluster_mount_dial_name(enum cluster_mount_dial d)
{
    switch (d) {
    case CLUSTER_DIAL_LOSSLESS:
        return "lossless";
    case CLUSTER_DIAL_GOOD:
        return "good";
    case CLUSTER_DIAL_BEST:
        return "best";
    }
    return "?";
}

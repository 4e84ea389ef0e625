/*
 * The cluster agent's decisions (src/cluster/cluster_fsm.c), one rule of docs/cluster.md per
 * test, each at its boundary: a millisecond before a deadline nothing moves, at it the rule
 * fires. Timers throughout: I = 1 s, 5 misses, T = 4 s, so F = 3 s and a passive may take
 * over after F + I/2 = 3.5 s of silence.
 */
#include "cluster/cluster_fsm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

enum { I = 1000, T = 4000, F = 3000, TAKEOVER = 3500, GEN = 1 << 20 };

/* mb1 is this node; mb2 the other node; wit1 the witness. */
static void
base(struct cluster_fsm_input *in, uint64_t now)
{
    memset(in, 0, sizeof(*in));
    in->now_ms = now;
    in->interval_ms = I;
    in->misses = 5;
    in->ttl_ms = T;
    in->self = "mb1";
    in->self_preference = 1;
    in->cms = "mail1";
    in->dial = CLUSTER_DIAL_GOOD;
    in->n_dbs = 1;
    snprintf(in->dbs[0].name, sizeof(in->dbs[0].name), "db1");
    in->dbs[0].mode = CLUSTER_MODE_BLOCK;
    in->dbs[0].generation_bytes = GEN;
    in->dbs[0].state = CLUSTER_DB_COPY_LOST_SOURCE;
    in->dbs[0].pos =
        (struct cluster_fsm_logpos){.epoch = 3, .lsn = 100, .generation = 5, .offset = 1000};
    in->n_members = 2;
    struct cluster_fsm_member *m = &in->members[0];
    snprintf(m->name, sizeof(m->name), "mb2");
    m->preference = 2;
    m->role = CLUSTER_ROLE_ACTIVE;
    m->epoch = 3;
    m->dbs[0].pos = in->dbs[0].pos;
    m->dbs[0].eligible = true;
    m = &in->members[1];
    snprintf(m->name, sizeof(m->name), "wit1");
    m->is_witness = true;
    in->lease.witness_up = true;
    in->members[1].last_heard_ms = now;
}

static bool
has(const struct cluster_fsm_output *out, enum cluster_fsm_action_kind k)
{
    for (unsigned i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == k)
            return true;
    return false;
}

static const struct cluster_fsm_action *
get(const struct cluster_fsm_output *out, enum cluster_fsm_action_kind k)
{
    for (unsigned i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == k)
            return &out->actions[i];
    return NULL;
}

/* An FSM of mb1 that is active in epoch 4, confirmed by the witness at renew time s. */
static void
active(struct cluster_fsm *fsm, struct cluster_fsm_input *in, uint64_t s)
{
    cluster_fsm_init(fsm);
    fsm->state = CLUSTER_STATE_ACTIVE;
    fsm->active_epoch = 4;
    fsm->epoch = 4;
    base(in, s);
    in->dbs[0].state = CLUSTER_DB_MOUNTED;
    in->members[0].role = CLUSTER_ROLE_PASSIVE;
    snprintf(in->lease.holder, sizeof(in->lease.holder), "mb1");
    in->lease.epoch = 4;
    in->lease.renew_sent_ms = s;
    in->lease.renew_acked_sent_ms = s;
}

/* ---- confirmation ---- */

static void
test_confirmation_witness_or_all_nodes(void **state)
{
    (void)state;
    struct cluster_fsm_input in;
    base(&in, 50000);
    in.lease.renew_acked_sent_ms = 40000;
    in.members[0].acked_sent_ms = 30000;
    /* 3 votes, quorum 2: the newer of the witness's renewal and the node's reply. */
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 40000);
    in.members[0].acked_sent_ms = 45000;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 45000);
    /* The witness's vote goes with its connection, at once. */
    in.lease.witness_up = false;
    in.members[0].acked_sent_ms = 30000;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 30000);
    in.members[0].acked_sent_ms = 0;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 0);

    /* 3 nodes + witness: 4 votes, quorum 3. With the witness: witness + the newest node. */
    in.lease.witness_up = true;
    in.n_members = 3;
    snprintf(in.members[2].name, sizeof(in.members[2].name), "mb3");
    in.members[0].acked_sent_ms = 44000;
    in.members[2].acked_sent_ms = 20000;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 40000);
    /* Without it, a majority of nodes is not enough: it takes all of them (the oldest). */
    in.lease.witness_up = false;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 20000);
    in.members[2].acked_sent_ms = 0;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 0), 0);
    /* A node's answer to a heartbeat sent before we were active confirms nothing. */
    in.n_members = 2;
    in.members[0].acked_sent_ms = 44000;
    assert_int_equal(cluster_fsm_confirmed_at(&in, 44000), 44000);
    assert_int_equal(cluster_fsm_confirmed_at(&in, 44001), 0);
}

/* ---- the active: self-fence at s + F ---- */

static void
test_active_fences_at_s_plus_f(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    in.lease.witness_up = false; /* renewals stopped getting through... */
    in.lease.renew_acked_sent_ms = 10000;
    in.members[0].acked_sent_ms = 10000; /* ...and the passive's replies too */
    in.now_ms = 10000 + F - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_true(out.writes_allowed);
    assert_int_equal(out.writes_until_ms, 10000 + F); /* the glue's ack deadline */
    assert_int_equal(out.next_step_ms, 10000 + F);
    assert_int_equal(out.n_actions, 0);

    in.now_ms = 10000 + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    assert_false(out.writes_allowed);
    assert_int_equal(out.actions[0].kind, CLUSTER_ACT_FENCE);
    assert_int_equal(out.actions[1].kind, CLUSTER_ACT_DISMOUNT);
    assert_false(has(&out, CLUSTER_ACT_DEMOTE)); /* copies only once another node is active */
    assert_false(has(&out, CLUSTER_ACT_RELEASE)); /* witness unreachable */
}

static void
test_active_renews_every_interval_and_releases_when_fenced(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    in.now_ms = 10000 + I - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_RENEW));
    assert_int_equal(out.next_step_ms, 10000 + I);
    in.now_ms = 10000 + I;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(out.writes_allowed);
    assert_true(has(&out, CLUSTER_ACT_RENEW));
    assert_int_equal(get(&out, CLUSTER_ACT_RENEW)->epoch, 4);
    /* Renewals sent but never answered: fenced at s + F, and the lease released. */
    in.lease.renew_sent_ms = 10000 + 2 * I;
    in.now_ms = 10000 + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    assert_true(has(&out, CLUSTER_ACT_RELEASE));
    assert_int_equal(get(&out, CLUSTER_ACT_RELEASE)->epoch, 4);
}

static void
test_active_fences_when_lease_is_elsewhere(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    in.now_ms = 10500;
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb2");
    in.lease.epoch = 5;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    assert_false(out.writes_allowed);
    assert_true(has(&out, CLUSTER_ACT_FENCE));
    assert_non_null(strstr(out.reason, "mb2"));
}

/* Failsafe: the witness is lost, the nodes see each other: nothing moves. */
static void
test_failsafe_witness_lost_nothing_moves(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    in.lease.witness_up = false;
    for (uint64_t now = 10000; now < 30000; now += 500) {
        in.now_ms = now;
        in.members[0].last_heard_ms = now;
        in.members[0].acked_sent_ms = now - 200; /* the passive answers our heartbeats */
        cluster_fsm_step(&fsm, &in, &out);
        assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
        assert_true(out.writes_allowed);
    }
    /* ...and the passive: it hears the active, so it stays a passive. */
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.lease.witness_up = false;
    in.members[0].last_heard_ms = 29900;
    in.members[1].last_heard_ms = 0;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* ---- the passive: takeover after F + I/2 of silence, or at once if the core is dead ---- */

static void
test_passive_takes_over_after_silence(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 20000 + TAKEOVER - 1);
    in.members[0].last_heard_ms = 20000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_int_equal(out.next_step_ms, 20000 + TAKEOVER);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_non_null(strstr(out.reason, "mb2"));

    in.now_ms = 20000 + TAKEOVER;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_int_equal(get(&out, CLUSTER_ACT_ACQUIRE)->epoch, 4); /* highest known + 1 */
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));

    /* Pending: not asked again. Granted: activate in the lease's epoch, resubmit. */
    in.lease.request_pending = true;
    in.now_ms += 10;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    in.lease.request_pending = false;
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    /* The holder alone is not a grant: a lease remembered from before is not one. */
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    in.lease.renew_acked_sent_ms = 20000 + TAKEOVER;
    in.now_ms += 10;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_false(out.writes_allowed); /* until a step sees the confirmation */
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_int_equal(get(&out, CLUSTER_ACT_ACTIVATE)->epoch, 4);
    assert_true(has(&out, CLUSTER_ACT_ADDRESS_UP));
    assert_true(has(&out, CLUSTER_ACT_RESUBMIT));
    assert_false(has(&out, CLUSTER_ACT_LAST_LOGS)); /* nothing missing */
    in.lease.renew_acked_sent_ms = in.now_ms - 20;
    in.now_ms += 10;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(out.writes_allowed);
}

static void
test_passive_fast_path_core_dead(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 20100);
    in.members[0].last_heard_ms = 20000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    in.members[0].core_dead = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
}

static void
test_granted_but_active_heard_again_releases(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 20000 + TAKEOVER);
    in.members[0].last_heard_ms = 20000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* The grant comes, but the active spoke in between: it may be confirmed by us. */
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.now_ms += 50;
    in.members[0].last_heard_ms = in.now_ms - 10;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_RELEASE));
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
}

static void
test_lossy_failover_asks_for_last_logs(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.members[0].last_heard_ms = 20000;
    in.members[0].dbs[0].pos.lsn = 120;
    in.members[0].dbs[0].pos.generation = 6;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.lease.renew_acked_sent_ms = 30000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.actions[0].kind, CLUSTER_ACT_LAST_LOGS);
    assert_string_equal(out.actions[0].peer, "mb2");
    assert_int_equal(out.actions[1].kind, CLUSTER_ACT_ACTIVATE);
    assert_true(has(&out, CLUSTER_ACT_RESUBMIT));
}

static void
test_no_quorum_and_no_witness_wait(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.members[0].last_heard_ms = 20000;
    in.lease.witness_up = false;
    in.members[1].last_heard_ms = 30000 - 5 * I + 1; /* seen for one more millisecond */
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_string_equal(out.reason, "witness not reachable: the lease cannot be taken");
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    in.members[1].last_heard_ms = 30000 - 5 * I;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_non_null(strstr(out.reason, "no quorum: sees 1 of 3 votes"));
    assert_false(out.candidate);
}

/* Start: never mount on memory; ask for the lease, and only with a quorum. */
static void
test_start_must_win_lease(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 1000);
    in.started_ms = 1000; /* the agent's start, as the glue gives it */
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in.members[0].role = CLUSTER_ROLE_NONE; /* nothing heard from mb2 yet */
    in.members[0].last_heard_ms = 0;
    /* The witness still names us (a lease from before our restart): no activation yet. */
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 3;
    /* mb2, unheard since the start, may be an active that still writes: its silence counts
     * from the start, so nothing is asked before F + I/2 (docs/cluster.md "Start"). */
    in.now_ms = 1000 + TAKEOVER - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_non_null(strstr(out.reason, "mb2 not heard since this node started"));
    assert_int_equal(out.next_step_ms, 1000 + TAKEOVER);
    in.now_ms = 1000 + TAKEOVER;
    in.members[1].last_heard_ms = in.now_ms;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    in.lease.renew_acked_sent_ms = in.now_ms;
    cluster_fsm_step(&fsm, &in, &out); /* the grant (same holder: epoch kept) */
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_false(has(&out, CLUSTER_ACT_RESUBMIT)); /* no other active was known */

    /* Without a quorum it does not even ask. */
    cluster_fsm_init(&fsm);
    base(&in, 1000);
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in.members[0].role = CLUSTER_ROLE_NONE;
    in.members[1].last_heard_ms = 0;
    in.lease.witness_up = false;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.n_actions, 0);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
}

/* Most log, then activation preference, then name; only healthy candidates count. */
static void
test_most_log_passive_wins(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    /* Three nodes: mb2 (active, gone), mb3 another passive, and the witness. */
    in.n_members = 3;
    in.members[0].last_heard_ms = 20000;
    struct cluster_fsm_member *c = &in.members[2];
    snprintf(c->name, sizeof(c->name), "mb3");
    c->role = CLUSTER_ROLE_PASSIVE;
    c->candidate = true;
    c->last_heard_ms = 29900;
    c->preference = 5;
    c->dbs[0].eligible = true;
    c->dbs[0].pos = in.dbs[0].pos;
    c->dbs[0].pos.lsn = 101;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_non_null(strstr(out.reason, "another passive has more log"));
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    /* Same log: preference decides (ours is 1, theirs 5)... */
    c->dbs[0].pos.lsn = 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* ...then the name. */
    cluster_fsm_init(&fsm);
    c->preference = 1;
    snprintf(c->name, sizeof(c->name), "mb0");
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    /* A candidate with an unhealthy copy, or one that cannot take over, is not waited for. */
    c->dbs[0].pos.lsn = 150;
    c->dbs[0].eligible = false;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    cluster_fsm_init(&fsm);
    c->dbs[0].eligible = true;
    c->candidate = false;
    in.dial = CLUSTER_DIAL_BEST; /* its 50 records are within the dial */
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* Our own copy unhealthy: we wait. */
    cluster_fsm_init(&fsm);
    in.dbs[0].state = CLUSTER_DB_COPY_UNHEALTHY;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_string_equal(out.reason, "copy of db1 is not healthy");
    assert_false(out.candidate);
}

/* The mount dial: lossless 0, good 3, best 6 generations; bytes too in block/sync mode. */
static bool
dial_allows(enum cluster_mount_dial dial, enum cluster_repl_mode mode, uint64_t gen_ahead,
            uint64_t ref_offset, uint64_t records, char *reason, size_t cap)
{
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.dial = dial;
    in.dbs[0].mode = mode;
    in.members[0].last_heard_ms = 20000;
    in.members[0].dbs[0].pos.lsn = in.dbs[0].pos.lsn + records;
    in.members[0].dbs[0].pos.generation = in.dbs[0].pos.generation + gen_ahead;
    in.members[0].dbs[0].pos.offset = ref_offset;
    cluster_fsm_step(&fsm, &in, &out);
    snprintf(reason, cap, "%s", out.reason);
    return has(&out, CLUSTER_ACT_ACQUIRE);
}

static void
test_mount_dial(void **state)
{
    (void)state;
    char r[CLUSTER_FSM_REASON_MAX + 1];
    /* Lossless: nothing at all may be missing. */
    assert_true(dial_allows(CLUSTER_DIAL_LOSSLESS, CLUSTER_MODE_BLOCK, 0, 1000, 0, r, sizeof(r)));
    assert_false(dial_allows(CLUSTER_DIAL_LOSSLESS, CLUSTER_MODE_BLOCK, 0, 1001, 1, r, sizeof(r)));
    assert_string_equal(r, "beyond mount dial: db1 has 1 generations missing (1 records, 1 "
                           "bytes), dial lossless allows 0");
    /* Good: 3 generations (file mode counts generations only). */
    assert_true(dial_allows(CLUSTER_DIAL_GOOD, CLUSTER_MODE_FILE, 3, 1000, 50, r, sizeof(r)));
    assert_false(dial_allows(CLUSTER_DIAL_GOOD, CLUSTER_MODE_FILE, 4, 1000, 50, r, sizeof(r)));
    assert_string_equal(r, "beyond mount dial: db1 has 4 generations missing (50 records, "
                           "4194304 bytes), dial good allows 3");
    /* Best: 6. */
    assert_true(dial_allows(CLUSTER_DIAL_BEST, CLUSTER_MODE_FILE, 6, 1000, 50, r, sizeof(r)));
    assert_false(dial_allows(CLUSTER_DIAL_BEST, CLUSTER_MODE_FILE, 7, 1000, 50, r, sizeof(r)));
    /* Block mode: 3 generations but one byte more than 3 generations' worth is beyond. */
    assert_true(dial_allows(CLUSTER_DIAL_GOOD, CLUSTER_MODE_BLOCK, 3, 1000, 50, r, sizeof(r)));
    assert_false(dial_allows(CLUSTER_DIAL_GOOD, CLUSTER_MODE_SYNC, 3, 1001, 50, r, sizeof(r)));
    assert_true(dial_allows(CLUSTER_DIAL_GOOD, CLUSTER_MODE_FILE, 3, 1001, 50, r, sizeof(r)));
}

/* Rejoin: with another node active, what is not a copy here becomes one. */
static void
test_rejoin_demotes(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.members[0].last_heard_ms = 29900;
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_string_equal(out.reason, "mb2 is active");
    assert_int_equal(out.n_actions, 1);
    assert_int_equal(out.actions[0].kind, CLUSTER_ACT_DEMOTE);
    /* Mounted here (it should not be): fence and dismount first. */
    in.dbs[0].state = CLUSTER_DB_MOUNTED;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.actions[0].kind, CLUSTER_ACT_FENCE);
    assert_int_equal(out.actions[1].kind, CLUSTER_ACT_DISMOUNT);
    assert_int_equal(out.actions[2].kind, CLUSTER_ACT_DEMOTE);
    /* Already a copy: nothing to do. */
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.n_actions, 0);
    /* A fenced active that has not dismounted yet is asked again. */
    cluster_fsm_init(&fsm);
    fsm.state = CLUSTER_STATE_FENCED;
    in.dbs[0].state = CLUSTER_DB_MOUNTED;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
}

/* Switchover, on the active: pause, wait for the target, transfer, demote. */
static void
test_switchover_active_side(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    in.members[0].last_heard_ms = 10000;
    in.members[0].dbs[0].pos.lsn = 90;
    in.move_to = "mb2";
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_int_equal(out.role, CLUSTER_ROLE_MOVING);
    assert_string_equal(out.moving_to, "mb2");
    assert_false(out.writes_allowed);
    assert_true(has(&out, CLUSTER_ACT_FENCE));
    assert_false(has(&out, CLUSTER_ACT_TRANSFER));
    assert_non_null(strstr(out.reason, "catch up"));
    /* Given up before the transfer: writes resume. */
    in.move_to = NULL;
    in.now_ms += 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_true(has(&out, CLUSTER_ACT_RESUME));
    assert_true(out.writes_allowed);
    /* Again, and the target catches up: the lease moves. */
    in.move_to = "mb2";
    cluster_fsm_step(&fsm, &in, &out);
    in.members[0].dbs[0].pos.lsn = 100;
    in.now_ms += 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_TRANSFER));
    assert_string_equal(get(&out, CLUSTER_ACT_TRANSFER)->peer, "mb2");
    assert_int_equal(get(&out, CLUSTER_ACT_TRANSFER)->epoch, 4);
    assert_false(out.writes_allowed);
    /* The witness says mb2 holds it: dismount and become its passive. */
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb2");
    in.lease.epoch = 5;
    in.now_ms += 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_true(out.moved);
    assert_string_equal(out.reason, "moved to mb2");
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
    assert_false(has(&out, CLUSTER_ACT_RELEASE));
    /* Its databases become copies only once mb2 says it is active: until then they stay
     * dismounted, eligible, should mb2 never activate. */
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in.now_ms += 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    in.members[0].role = CLUSTER_ROLE_ACTIVE;
    in.members[0].last_heard_ms = in.now_ms;
    in.now_ms += 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_DEMOTE));
}

/* Three nodes: a node that has just activated has no confirmation yet (the witness alone is no
 * majority of four votes, and a node's answer counts only for a heartbeat sent since the
 * activation). It does not write, and does not fence either, until F after the activation. */
static void
test_three_nodes_first_confirmation(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    active(&fsm, &in, 10000);
    fsm.active_since_ms = 10000;
    fsm.first_round_until_ms = 10000 + F; /* granted at once */
    in.n_members = 3;
    struct cluster_fsm_member *c = &in.members[2];
    snprintf(c->name, sizeof(c->name), "mb3");
    c->role = CLUSTER_ROLE_PASSIVE;
    in.members[0].last_heard_ms = c->last_heard_ms = 10000;
    in.members[0].acked_sent_ms = c->acked_sent_ms = 9000; /* before the activation */
    in.now_ms = 10050;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_false(out.writes_allowed);
    assert_false(has(&out, CLUSTER_ACT_FENCE));
    assert_true(out.next_step_ms <= 10000 + F);
    /* mb3 answers a heartbeat sent since: witness + mb3 + itself, three of four. */
    c->acked_sent_ms = 10100;
    in.now_ms = 10200;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(out.writes_allowed);
    assert_int_equal(out.writes_until_ms, 10000 + F); /* the witness's renewal is the older */
    /* Nobody answers: at F after the activation it fences. */
    active(&fsm, &in, 10000);
    fsm.active_since_ms = 10000;
    fsm.first_round_until_ms = 10000 + F;
    in.n_members = 3;
    c = &in.members[2];
    snprintf(c->name, sizeof(c->name), "mb3");
    in.now_ms = 10000 + F - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_FENCE));
    in.now_ms = 10000 + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
}

/* Three nodes, a grant that took 1.5 s to come back (the second review's F3): the first
 * round without a confirmation ends F after the ACQUIRE was sent, not F after the mount,
 * since the lease may run out T after that send and another node then take it. And a grant
 * whose request went out F ago or more is not mounted on at all: it is asked for again. */
static void
test_late_grant_first_round_counts_from_the_request(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 20000);
    in.n_members = 3;
    struct cluster_fsm_member *c = &in.members[2];
    snprintf(c->name, sizeof(c->name), "mb3");
    c->role = CLUSTER_ROLE_PASSIVE;
    c->dbs[0].pos = in.dbs[0].pos;
    c->dbs[0].eligible = true;
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    in.started_ms = 1000;
    /* mb2, the active, went silent long ago; mb3 and the witness are heard. */
    in.members[0].last_heard_ms = 20000 - 6 * I;
    c->last_heard_ms = 20000;
    in.members[1].last_heard_ms = 20000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    uint64_t g = 20000;
    /* The grant arrives 1.5 s after its request. */
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.lease.renew_sent_ms = g;
    in.lease.renew_acked_sent_ms = g;
    in.now_ms = g + 1500;
    in.members[0].last_heard_ms = 0;
    c->last_heard_ms = in.now_ms;
    in.members[1].last_heard_ms = in.now_ms;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    in.dbs[0].state = CLUSTER_DB_MOUNTED;
    /* Cut off now: no confirmation. Still first round just before g + F... */
    in.lease.witness_up = false;
    in.now_ms = g + F - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_false(out.writes_allowed);
    /* ...and fenced at g + F, though the mount was only F - 1.5 s ago. */
    in.now_ms = g + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);

    /* A grant that comes back F after its request: not mounted on, asked again. */
    cluster_fsm_init(&fsm);
    base(&in, 20000);
    in.n_members = 3;
    c = &in.members[2];
    snprintf(c->name, sizeof(c->name), "mb3");
    c->role = CLUSTER_ROLE_PASSIVE;
    c->dbs[0].pos = in.dbs[0].pos;
    c->dbs[0].eligible = true;
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    in.started_ms = 1000;
    in.members[0].last_heard_ms = 20000 - 6 * I;
    c->last_heard_ms = 20000;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.lease.renew_sent_ms = g;
    in.lease.renew_acked_sent_ms = g;
    in.now_ms = g + F;
    in.members[0].last_heard_ms = 0;
    c->last_heard_ms = in.now_ms;
    in.members[1].last_heard_ms = in.now_ms;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* mb1 active in epoch 4 at 10 s, moving to mb2 (caught up): the step that sends the TRANSFER. */
static void
transfer_sent(struct cluster_fsm *fsm, struct cluster_fsm_input *in, struct cluster_fsm_output *out)
{
    active(fsm, in, 10000);
    in->members[0].last_heard_ms = 10000;
    in->members[0].acked_sent_ms = 10000;
    in->move_to = "mb2";
    in->now_ms = 10100;
    cluster_fsm_step(fsm, in, out);
    assert_true(has(out, CLUSTER_ACT_TRANSFER));
    in->lease.request_pending = true; /* the glue sent it */
}

/* A move whose TRANSFER the witness refused or never answered (docs/cluster.md "Switchover"):
 * writes stay paused until a grant of a RENEW sent after the TRANSFER says the lease is still
 * this node's in its epoch; then the writes resume, or the move is tried again. */
static void
test_switchover_transfer_not_done_resumes(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    transfer_sent(&fsm, &in, &out);
    /* Pending: paused, nothing asked. */
    in.now_ms = 10300;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_false(out.writes_allowed);
    assert_int_equal(out.n_actions, 0);
    assert_string_equal(out.moving_to, "mb2");
    /* Refused (the glue gives the move up): the holder still says mb1, but that is what we
     * knew before: a RENEW asks the witness again; still paused. */
    in.lease.request_pending = false;
    in.move_to = NULL;
    in.now_ms = 11100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_false(out.writes_allowed);
    assert_true(has(&out, CLUSTER_ACT_RENEW));
    assert_int_equal(get(&out, CLUSTER_ACT_RENEW)->epoch, 4);
    /* A grant of a RENEW sent in the TRANSFER's own millisecond proves nothing. */
    in.lease.renew_sent_ms = 11100;
    in.lease.renew_acked_sent_ms = 10100;
    in.now_ms = 11200;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    /* Granted, sent after it, in epoch 4: the transfer did not happen; writes resume. */
    in.lease.renew_acked_sent_ms = 11100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_true(has(&out, CLUSTER_ACT_RESUME));
    assert_true(out.writes_allowed);
    assert_false(out.moved);

    /* The same, with the move still asked for (the session was lost with the TRANSFER out):
     * it stays MOVING and sends the TRANSFER again, never in the step that renews. */
    transfer_sent(&fsm, &in, &out);
    in.lease.request_pending = false;
    in.now_ms = 11100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_RENEW));
    assert_false(has(&out, CLUSTER_ACT_TRANSFER));
    in.lease.renew_sent_ms = 11100;
    in.lease.renew_acked_sent_ms = 11100;
    in.now_ms = 11200;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_false(has(&out, CLUSTER_ACT_RESUME));
    assert_true(has(&out, CLUSTER_ACT_TRANSFER));
    assert_false(has(&out, CLUSTER_ACT_RENEW));
    assert_false(out.writes_allowed);
}

/* After the TRANSFER, any answer but "still ours in our epoch" makes this node leave: dismount,
 * no demotion, no writes; and with no answer it leaves at s + F of its last confirmation. */
static void
test_switchover_transfer_unclear_leaves(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    /* The lease came back to us in a newer epoch (it had gone free after the transfer). */
    transfer_sent(&fsm, &in, &out);
    in.lease.request_pending = false;
    in.lease.epoch = 6;
    in.lease.renew_acked_sent_ms = 10500;
    in.now_ms = 10600;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_false(out.writes_allowed);
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    assert_false(has(&out, CLUSTER_ACT_RESUME));
    assert_false(out.moved);
    /* Free. */
    transfer_sent(&fsm, &in, &out);
    in.lease.request_pending = false;
    in.lease.holder[0] = '\0';
    in.now_ms = 10600;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
    assert_non_null(strstr(out.reason, "free"));
    /* Another node than the target. */
    transfer_sent(&fsm, &in, &out);
    in.lease.request_pending = false;
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb3");
    in.lease.epoch = 6;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_false(out.moved);
    /* No answer at all, the witness away: paused, then gone at s + F of the last
     * confirmation (every node's answer: mb2 answered the heartbeat of 10 s). */
    transfer_sent(&fsm, &in, &out);
    in.lease.witness_up = false;
    in.lease.request_pending = false;
    in.now_ms = 10000 + F - 1;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_int_equal(out.n_actions, 0);
    assert_true(out.next_step_ms <= 10000 + F);
    in.now_ms = 10000 + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_PASSIVE);
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    assert_false(has(&out, CLUSTER_ACT_RELEASE));
}

/* The target died right after the transfer: the old active, passive with its databases
 * dismounted, takes the CMS back by the failover rules once the target is silent or dead and
 * the witness grants the lease. */
static void
test_switchover_target_dies_old_active_takes_back(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    transfer_sent(&fsm, &in, &out);
    in.lease.request_pending = false;
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb2");
    in.lease.epoch = 5;
    in.now_ms = 10200;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(out.moved);
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    /* mb2 holds the lease and is heard, but never says it is active: no demotion, no
     * takeover. */
    in.members[0].last_heard_ms = 10300;
    in.now_ms = 10400;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    /* Its core is gone (kill -9): the lease is free or runs out; we ask for it. */
    in.members[0].core_dead = true;
    in.now_ms = 10500;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_int_equal(get(&out, CLUSTER_ACT_ACQUIRE)->epoch, 6);
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 6;
    in.lease.renew_acked_sent_ms = 10500;
    in.now_ms = 10600;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_int_equal(get(&out, CLUSTER_ACT_ACTIVATE)->epoch, 6);
    assert_false(out.forced);
}

/* Beyond the mount dial: waiting, until the operator's copy activate --force; which changes
 * nothing else (the old active must still be silent, the witness must grant). */
static void
test_force_activate_beyond_dial(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.members[0].last_heard_ms = 30000 - TAKEOVER + 1;
    in.members[0].dbs[0].pos.lsn = 500;
    in.members[0].dbs[0].pos.generation = 10;
    in.force_activate = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE)); /* the active is not silent long enough */
    in.force_activate = false;
    in.now_ms = 30001;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_non_null(strstr(out.reason, "beyond mount dial: db1 has 5 generations missing"));
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    in.force_activate = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "forced"));
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.lease.renew_acked_sent_ms = 30001;
    in.now_ms = 30100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_true(out.forced);
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_LAST_LOGS)); /* mb2's core may still answer */
    /* Without quorum the request changes nothing. */
    cluster_fsm_init(&fsm);
    in.lease.holder[0] = '\0';
    in.lease.witness_up = false;
    in.members[1].last_heard_ms = 0;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* Switchover, on the target: the lease arrives; mount once the old active says it stopped. */
static void
test_switchover_target_side(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    base(&in, 30000);
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    in.members[0].last_heard_ms = 29900;
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 5;
    /* Its last summary still says ACTIVE (a heartbeat lost): not yet. */
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_false(has(&out, CLUSTER_ACT_RELEASE)); /* a handed-over lease is kept */
    in.members[0].role = CLUSTER_ROLE_MOVING;
    snprintf(in.members[0].moving_to, sizeof(in.members[0].moving_to), "mb1");
    /* Not before a fresh grant of its own renewal: pending, nothing; lost, asked again. */
    in.lease.request_pending = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_int_equal(out.n_actions, 0);
    in.lease.request_pending = false;
    in.lease.renew_sent_ms = 30000 - I;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_RENEW));
    assert_int_equal(get(&out, CLUSTER_ACT_RENEW)->epoch, 5);
    in.lease.renew_sent_ms = in.lease.renew_acked_sent_ms = 30000;
    in.now_ms = 30010;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_ACTIVE);
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_int_equal(get(&out, CLUSTER_ACT_ACTIVATE)->epoch, 5);
    assert_false(has(&out, CLUSTER_ACT_RESUBMIT));
    assert_false(has(&out, CLUSTER_ACT_LAST_LOGS));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_confirmation_witness_or_all_nodes),
        cmocka_unit_test(test_active_fences_at_s_plus_f),
        cmocka_unit_test(test_active_renews_every_interval_and_releases_when_fenced),
        cmocka_unit_test(test_active_fences_when_lease_is_elsewhere),
        cmocka_unit_test(test_failsafe_witness_lost_nothing_moves),
        cmocka_unit_test(test_passive_takes_over_after_silence),
        cmocka_unit_test(test_passive_fast_path_core_dead),
        cmocka_unit_test(test_granted_but_active_heard_again_releases),
        cmocka_unit_test(test_lossy_failover_asks_for_last_logs),
        cmocka_unit_test(test_no_quorum_and_no_witness_wait),
        cmocka_unit_test(test_start_must_win_lease),
        cmocka_unit_test(test_most_log_passive_wins),
        cmocka_unit_test(test_mount_dial),
        cmocka_unit_test(test_rejoin_demotes),
        cmocka_unit_test(test_switchover_active_side),
        cmocka_unit_test(test_switchover_target_side),
        cmocka_unit_test(test_three_nodes_first_confirmation),
        cmocka_unit_test(test_late_grant_first_round_counts_from_the_request),
        cmocka_unit_test(test_switchover_transfer_not_done_resumes),
        cmocka_unit_test(test_switchover_transfer_unclear_leaves),
        cmocka_unit_test(test_switchover_target_dies_old_active_takes_back),
        cmocka_unit_test(test_force_activate_beyond_dial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

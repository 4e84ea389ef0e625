/*
 * The cluster agent's decisions (src/cluster/cluster_fsm.c) in the cases a review (and the chaos
 * test) found unsafe, each at its boundary:
 *  - a node that starts while the newer active is down, with its own old active store, must
 *    not mount it as if nothing happened since: the witness's record of the active's log end
 *    (in->end) is the reference of the mount dial (docs/cluster.md "The recorded log end");
 *  - a node not heard since this node started counts as silent from the start, not since
 *    forever: it may be an active writing on its confirmation (docs/cluster.md "Start");
 *  - a switchover hands the lease over only once the commits in flight are durable and the
 *    target has them (docs/cluster.md "Switchover");
 *  - a fence keeps the node's store (no demotion): it takes the CMS back when nobody else
 *    can, and the witness's record keeps it from mounting that store over a newer epoch's
 *    writes beyond the dial (docs/cluster.md "Rejoin").
 * Timers: I = 1 s, 5 misses, T = 4 s, so F = 3 s and a takeover after F + I/2 = 3.5 s.
 */
#include "cluster/cluster_fsm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

enum { I = 1000, T = 4000, F = 3000, TAKEOVER = 3500, GEN = 1 << 20, START = 10000 };

static bool
has(const struct cluster_fsm_output *out, enum cluster_fsm_action_kind k)
{
    for (unsigned i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == k)
            return true;
    return false;
}

/*
 * mb1 (this node) started at START; mb2 the other node, never heard since (it is down); the
 * witness is up and the lease is free in epoch 3. mb1's database is an active store of its
 * own, closed (the old active: killed in epoch 1 at LSN 100).
 */
static void
restarted_alone(struct cluster_fsm_input *in, uint64_t now, enum cluster_mount_dial dial)
{
    memset(in, 0, sizeof(*in));
    in->now_ms = now;
    in->started_ms = START;
    in->interval_ms = I;
    in->misses = 5;
    in->ttl_ms = T;
    in->self = "mb1";
    in->self_preference = 1;
    in->cms = "mail1";
    in->dial = dial;
    in->n_dbs = 1;
    snprintf(in->dbs[0].name, sizeof(in->dbs[0].name), "db1");
    in->dbs[0].mode = CLUSTER_MODE_BLOCK;
    in->dbs[0].generation_bytes = GEN;
    in->dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in->dbs[0].pos =
        (struct cluster_fsm_logpos){.epoch = 1, .lsn = 100, .generation = 5, .offset = 1000};
    in->n_members = 2;
    snprintf(in->members[0].name, sizeof(in->members[0].name), "mb2");
    in->members[0].preference = 2;
    snprintf(in->members[1].name, sizeof(in->members[1].name), "wit1");
    in->members[1].is_witness = true;
    in->members[1].last_heard_ms = now;
    in->lease.witness_up = true;
    in->lease.epoch = 3;
}

/* The witness's record: mb2 wrote in epoch 3 up to pos. */
static void
recorded(struct cluster_fsm_input *in, const char *holder, uint64_t epoch,
         struct cluster_fsm_logpos pos)
{
    in->end.known = true;
    snprintf(in->end.holder, sizeof(in->end.holder), "%s", holder);
    in->end.epoch = epoch;
    in->end.dbs[0] = pos;
}

/* ---- the recorded log end ---- */

/* The reviewer's case: mb1 (old active, epoch 1) killed, mb2 took over in epoch 3 and
 * acknowledged 5 records, mb2 killed, mb1 started alone. */
static void
test_stale_store_waits_for_the_newer_history(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    uint64_t now = START + TAKEOVER; /* mb2's silence since the start has run out */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, now, CLUSTER_DIAL_LOSSLESS);
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 105, .generation = 5, .offset = 3000});
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "beyond mount dial"));
    assert_non_null(strstr(out.reason, "5 records"));
    assert_non_null(strstr(out.reason, "the witness's record"));

    /* The record written at mb2's activation, before it acknowledged anything: the same LSN,
     * but mb2's epoch, which this store never saw. */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, now, CLUSTER_DIAL_LOSSLESS);
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 100, .generation = 6, .offset = 200});
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_WAITING);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "its log is of epoch 1, mb2 wrote in epoch 3"));
    /* Even with more records of its own in the old epoch (a tail never shipped). */
    in.dbs[0].pos.lsn = 110;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));

    /* A dial that allows the loss takes it over (lossy: the transports resubmit). */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, now, CLUSTER_DIAL_GOOD);
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 105, .generation = 5, .offset = 3000});
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* Granted: a failover from mb2, the record's writer, unheard since the start: the
     * transports resubmit what its lost tail held. */
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 4;
    in.lease.renew_acked_sent_ms = now;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    assert_true(has(&out, CLUSTER_ACT_RESUBMIT));
    assert_string_equal(out.actions[out.n_actions - 1].peer, "mb2");
    /* ...but not beyond it: 4 generations written without this node. */
    restarted_alone(&in, now, CLUSTER_DIAL_GOOD);
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 105, .generation = 5, .offset = 3000});
    cluster_fsm_init(&fsm);
    in.end.dbs[0].generation = 9;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "4 generations missing"));

    /* mb2 comes back and reports its log: it ranks ahead, mb1 waits for it as before. */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, now, CLUSTER_DIAL_LOSSLESS);
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 105, .generation = 5, .offset = 3000});
    in.members[0].last_heard_ms = now;
    in.members[0].role = CLUSTER_ROLE_PASSIVE;
    in.members[0].candidate = true;
    in.members[0].dbs[0].pos = in.end.dbs[0];
    in.members[0].dbs[0].eligible = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "mb2"));
}

/* The record is this node's own, or older than its store: nothing is missing. */
static void
test_own_record_restarts(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START + TAKEOVER, CLUSTER_DIAL_LOSSLESS);
    /* mb1 recorded LSN 90 in epoch 1 a heartbeat before it was killed at 100. */
    recorded(&in, "mb1", 1,
             (struct cluster_fsm_logpos){.epoch = 1, .lsn = 90, .generation = 5, .offset = 800});
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* No record at all (a new cluster): only the members' reports count. */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START + TAKEOVER, CLUSTER_DIAL_LOSSLESS);
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* A copy that followed the active in this run is measured by LSN against the record too; its
 * epoch is not compared (it holds what it was shipped of the newest epoch). */
static void
test_copy_is_measured_against_the_record(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START + TAKEOVER, CLUSTER_DIAL_LOSSLESS);
    in.dbs[0].state = CLUSTER_DB_COPY_LOST_SOURCE;
    in.dbs[0].pos.epoch = 0; /* copies report none */
    /* mb2's last report said 100, its record at the witness says 103: the record counts. */
    in.members[0].last_heard_ms = START + 1;
    in.members[0].role = CLUSTER_ROLE_ACTIVE;
    in.members[0].dbs[0].pos = in.dbs[0].pos;
    recorded(&in, "mb2", 3,
             (struct cluster_fsm_logpos){.epoch = 3, .lsn = 103, .generation = 5, .offset = 1500});
    in.now_ms = START + 1 + TAKEOVER;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "3 records"));
    in.end.dbs[0].lsn = 100;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* ---- silence counts from the start ---- */

/*
 * mb2 is active with its witness link cut: it writes on its confirmation until s + F, s its
 * newest (mb1's answer just before mb1 crashed). Its lease has run out at the witness. mb1
 * restarts within F and never hears mb2 (the heartbeat exchange has not happened yet): it
 * must not take the free lease before mb2's silence, counted from mb1's start, is F + I/2.
 */
static void
test_unheard_node_is_silent_only_since_the_start(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    uint64_t s = START - 500; /* mb2's newest confirmation: mb1 answered, then crashed */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START, CLUSTER_DIAL_GOOD);
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY; /* its copy is Healthy again */
    in.dbs[0].pos.epoch = 0;
    bool acquired = false;
    for (uint64_t now = START; now < START + TAKEOVER; now += 50) {
        in.now_ms = now;
        in.members[1].last_heard_ms = now;
        cluster_fsm_step(&fsm, &in, &out);
        assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
        assert_int_equal(out.state, CLUSTER_STATE_WAITING);
        assert_non_null(strstr(out.reason, "mb2 not heard since this node started"));
        assert_true(out.next_step_ms != 0 && out.next_step_ms <= START + TAKEOVER);
    }
    in.now_ms = START + TAKEOVER;
    cluster_fsm_step(&fsm, &in, &out);
    acquired = has(&out, CLUSTER_ACT_ACQUIRE);
    assert_true(acquired);
    /* The first instant it may write is after mb2 stopped: s + F. */
    assert_true(START + TAKEOVER > s + F);

    /* A node heard since the start that says it is passive holds nothing back. */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START + 100, CLUSTER_DIAL_GOOD);
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    in.members[0].last_heard_ms = START + 50;
    in.members[0].role = CLUSTER_ROLE_PASSIVE;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    /* Nor does one whose core is known not to run (EOF, refused). */
    cluster_fsm_init(&fsm);
    restarted_alone(&in, START + 100, CLUSTER_DIAL_GOOD);
    in.dbs[0].state = CLUSTER_DB_COPY_HEALTHY;
    in.members[0].core_dead = true;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
}

/* ---- switchover: commits in flight ---- */

static void
moving(struct cluster_fsm *fsm, struct cluster_fsm_input *in, uint64_t now)
{
    cluster_fsm_init(fsm);
    fsm->state = CLUSTER_STATE_ACTIVE;
    fsm->active_epoch = 4;
    fsm->epoch = 4;
    restarted_alone(in, now, CLUSTER_DIAL_GOOD);
    in->dbs[0].state = CLUSTER_DB_MOUNTED;
    in->dbs[0].pos.epoch = 4;
    snprintf(in->lease.holder, sizeof(in->lease.holder), "mb1");
    in->lease.epoch = 4;
    in->lease.renew_sent_ms = now;
    in->lease.renew_acked_sent_ms = now;
    struct cluster_fsm_member *m = &in->members[0];
    m->last_heard_ms = now;
    m->role = CLUSTER_ROLE_PASSIVE;
    m->candidate = true;
    m->dbs[0].pos = in->dbs[0].pos;
    m->dbs[0].eligible = true;
    in->move_to = "mb2";
}

static void
test_move_waits_for_commits_in_flight(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    uint64_t now = 50000;
    moving(&fsm, &in, now);
    /* One commit submitted before the fence is not durable yet: the target has all that is. */
    in.dbs[0].last_lsn = 101;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_MOVING);
    assert_true(has(&out, CLUSTER_ACT_FENCE));
    assert_false(has(&out, CLUSTER_ACT_TRANSFER));
    assert_non_null(strstr(out.reason, "commits in flight on db1"));
    assert_true(out.next_step_ms > now && out.next_step_ms <= now + I);
    /* Durable now, but the target has not reported it. */
    in.now_ms = now += 20;
    in.dbs[0].pos.lsn = 101;
    in.lease.renew_acked_sent_ms = now;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_TRANSFER));
    assert_non_null(strstr(out.reason, "waiting for mb2 to catch up: db1 at LSN 100 of 101"));
    in.now_ms = now += 20;
    in.members[0].dbs[0].pos.lsn = 101;
    in.members[0].last_heard_ms = now;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_TRANSFER));
}

/* ---- a fence keeps the store (no demotion) ---- */

/*
 * mb1 activated in epoch 4 at START + 1000 (its ACQUIRE granted just before) with its store
 * mounted at LSN 100; mb2 last heard at START + 500 as in role, with its copy level with ours.
 * The lease and the witness's record are mb1's own.
 */
static void
just_active(struct cluster_fsm *fsm, struct cluster_fsm_input *in, enum cluster_mount_dial dial)
{
    uint64_t a = START + 1000;
    cluster_fsm_init(fsm);
    fsm->state = CLUSTER_STATE_ACTIVE;
    fsm->active_epoch = 4;
    fsm->active_since_ms = a;
    fsm->epoch = 4;
    restarted_alone(in, a, dial);
    in->dbs[0].state = CLUSTER_DB_MOUNTED;
    in->dbs[0].pos.epoch = 4;
    snprintf(in->lease.holder, sizeof(in->lease.holder), "mb1");
    in->lease.epoch = 4;
    in->lease.renew_sent_ms = a - 10;
    in->lease.renew_acked_sent_ms = a - 10;
    in->members[0].last_heard_ms = START + 500;
    in->members[0].role = CLUSTER_ROLE_PASSIVE;
    in->members[0].epoch = 3;
    in->members[0].dbs[0].pos = in->dbs[0].pos;
    in->members[0].dbs[0].eligible = true;
    recorded(in, "mb1", 4, in->dbs[0].pos);
}

/*
 * The chaos test's late grant: mb2, the old active of epoch 3, was killed; mb1 took over, but
 * the witness (stopped for a while) answers none of its renewals, so no confirmation comes
 * within F of the activation and mb1 fences. Nobody else can take the CMS: mb1 must keep its
 * store, not make it a copy of an address nobody serves, and take the CMS back once the
 * witness answers again. A demotion at the fence left it "copy of db1 is not healthy" for
 * good.
 */
static void
test_fenced_alone_takes_the_cms_back(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    just_active(&fsm, &in, CLUSTER_DIAL_LOSSLESS);
    uint64_t a = in.now_ms;
    in.members[0].role = CLUSTER_ROLE_ACTIVE; /* its last word, before the kill */
    in.members[0].core_dead = true;
    in.lease.request_pending = true; /* the renewals hang at the stopped witness */
    in.now_ms = a + F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    assert_true(has(&out, CLUSTER_ACT_DISMOUNT));
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));

    /* Dismounted (its own store, epoch 4); the witness answers again: the lease ran out. */
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in.lease.request_pending = false;
    in.lease.holder[0] = '\0';
    uint64_t now = a + F + 2500;
    in.now_ms = now;
    in.members[1].last_heard_ms = now;
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_DEMOTE));
    assert_int_equal(out.state, CLUSTER_STATE_FAILING_OVER);
    assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
    snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
    in.lease.epoch = 5;
    in.lease.renew_sent_ms = in.lease.renew_acked_sent_ms = now;
    in.now_ms = now + 5;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
    /* A failover from mb2, last seen active: its lost tail is asked for again. */
    assert_true(has(&out, CLUSTER_ACT_RESUBMIT));
}

/*
 * The guard that makes the kept store safe: mb1 is cut off and fences (no demotion: it never
 * hears mb2 say it is active); mb2 takes the CMS over in epoch 5, records its log end at the
 * witness, writes, and dies. mb1's store is still an eligible active store, of epoch 4: the
 * witness's record tells it that it never saw epoch 5, so it takes the CMS back only within
 * the dial (lossy, the transports resubmit from mb2), never with lossless.
 */
static void
test_fenced_store_measured_against_the_newer_record(void **state)
{
    (void)state;
    struct cluster_fsm fsm;
    struct cluster_fsm_input in;
    struct cluster_fsm_output out;
    enum cluster_mount_dial dials[] = {CLUSTER_DIAL_LOSSLESS, CLUSTER_DIAL_GOOD};
    for (unsigned i = 0; i < 4; i++) {
        just_active(&fsm, &in, dials[i % 2]);
        uint64_t s = in.now_ms + 200; /* its newest confirmation: the witness and mb2 */
        in.lease.renew_sent_ms = in.lease.renew_acked_sent_ms = s;
        in.members[0].acked_sent_ms = s;
        in.members[0].last_heard_ms = s;
        in.lease.witness_up = false; /* cut from both */
        in.now_ms = s + F;
        cluster_fsm_step(&fsm, &in, &out);
        assert_int_equal(out.state, CLUSTER_STATE_FENCED);
        assert_false(has(&out, CLUSTER_ACT_DEMOTE));
        assert_false(has(&out, CLUSTER_ACT_RELEASE));

        /* Healed towards the witness only; mb2 (epoch 5) is dead. */
        in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
        in.lease.witness_up = true;
        in.lease.holder[0] = '\0';
        in.lease.epoch = 5;
        uint64_t now = s + 30000;
        in.now_ms = now;
        in.members[1].last_heard_ms = now;
        /* i < 2: mb2 wrote 5 records in epoch 5; else none (it recorded at its activation
         * and died): the same LSN, but an epoch this store never saw. */
        struct cluster_fsm_logpos end = {.epoch = 5, .lsn = 105, .generation = 5, .offset = 3000};
        if (i >= 2)
            end = (struct cluster_fsm_logpos){.epoch = 5, .lsn = 100, .generation = 6, .offset = 0};
        recorded(&in, "mb2", 5, end);
        cluster_fsm_step(&fsm, &in, &out);
        assert_false(has(&out, CLUSTER_ACT_DEMOTE));
        if (dials[i % 2] == CLUSTER_DIAL_LOSSLESS) {
            assert_int_equal(out.state, CLUSTER_STATE_WAITING);
            assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
            assert_non_null(strstr(out.reason, "beyond mount dial"));
            assert_non_null(strstr(out.reason, "its log is of epoch 4, mb2 wrote in epoch 5"));
            continue;
        }
        assert_true(has(&out, CLUSTER_ACT_ACQUIRE));
        snprintf(in.lease.holder, sizeof(in.lease.holder), "mb1");
        in.lease.epoch = 6;
        in.lease.renew_sent_ms = in.lease.renew_acked_sent_ms = now;
        in.now_ms = now + 5;
        cluster_fsm_step(&fsm, &in, &out);
        assert_true(has(&out, CLUSTER_ACT_ACTIVATE));
        assert_true(has(&out, CLUSTER_ACT_RESUBMIT));
        assert_string_equal(out.actions[out.n_actions - 1].peer, "mb2");
    }
    /* Good, but mb2 wrote 4 generations without mb1: beyond the dial, it waits. */
    just_active(&fsm, &in, CLUSTER_DIAL_GOOD);
    in.lease.witness_up = false;
    in.now_ms += F;
    cluster_fsm_step(&fsm, &in, &out);
    assert_int_equal(out.state, CLUSTER_STATE_FENCED);
    in.dbs[0].state = CLUSTER_DB_DISMOUNTED;
    in.lease.witness_up = true;
    in.lease.holder[0] = '\0';
    in.now_ms += 30000;
    in.members[1].last_heard_ms = in.now_ms;
    recorded(&in, "mb2", 5,
             (struct cluster_fsm_logpos){.epoch = 5, .lsn = 5000, .generation = 9, .offset = 10});
    cluster_fsm_step(&fsm, &in, &out);
    assert_false(has(&out, CLUSTER_ACT_ACQUIRE));
    assert_non_null(strstr(out.reason, "4 generations missing"));
    /* Had it heard mb2 say it is active, its store would have become a copy (rejoin). */
    in.members[0].role = CLUSTER_ROLE_ACTIVE;
    in.members[0].epoch = 5;
    in.members[0].last_heard_ms = in.now_ms;
    cluster_fsm_step(&fsm, &in, &out);
    assert_true(has(&out, CLUSTER_ACT_DEMOTE));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_store_waits_for_the_newer_history),
        cmocka_unit_test(test_own_record_restarts),
        cmocka_unit_test(test_copy_is_measured_against_the_record),
        cmocka_unit_test(test_unheard_node_is_silent_only_since_the_start),
        cmocka_unit_test(test_move_waits_for_commits_in_flight),
        cmocka_unit_test(test_fenced_alone_takes_the_cms_back),
        cmocka_unit_test(test_fenced_store_measured_against_the_newer_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

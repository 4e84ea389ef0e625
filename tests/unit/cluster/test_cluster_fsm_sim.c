/*
 * Two cluster agents (src/cluster/cluster_fsm.c; three in unit_cluster_fsm_sim3) and a
 * simulated witness, driven through random message loss, delays, link cuts and crashes on
 * one simulated clock. At every instant at most one node may be writing: a node writes from a
 * step that said writes_allowed until that step's writes_until_ms (the acknowledgement deadline
 * the glue sets, core_ack.h), even when its next step comes later. And no two nodes ever
 * activate in the same epoch.
 *
 * Heartbeats travel per connection, as in cluster_hb: a node's HEARTBEAT and the answer to it
 * go over the connection it opened to the other, which may be broken while the other's
 * connection back works. A node hears another when any message of it arrives: an answer to its
 * own heartbeat, or a heartbeat the other sent it (cluster_hb's heard_ms). Counting only the
 * answers is the broken variant test_reply_only_is_caught must find two writers in: a passive
 * whose own connection to the active is down would take over from an active that counts the
 * passive's answers on the active's connection as its confirmation.
 *
 * SIM_FIRST/SIM_SEEDS=<n> choose the seeds (1..40 by default); SIM_TRACE=<seed>:<ms> prints
 * every step and lease answer in the 8 s before that instant; SIM_DEBUG=1 every node's state
 * every 5 s.
 *
 * Switchovers (test_moves_whose_target_dies, and asked now and then in the chaos runs): the
 * active is asked to move to another node; the witness hands the lease over at TRANSFER
 * (epoch + 1), tells every node through its watch, and the target renews it before it
 * mounts, as core_cluster.c does. Half of the targets die right after the handover.
 *
 * The witness also keeps the recorded log end (docs/cluster.md "The recorded log end", the
 * glue's core_cluster_end.c): an active records its log end when it activated and every I, and
 * writes nothing before the witness took a record of its epoch; every node hears the record
 * with the lease and gives it to its decisions (in->end), as it gives them its start
 * (in->started_ms). test_stale_store_never_mounted holds the dial at lossless and checks that
 * no node ever mounts an old active's store of an older epoch than the newest write.
 *
 * The witness is the lease of docs/cluster.md "Leases and epochs": ACQUIRE granted when free,
 * expired or the caller's; RENEW by the holder extends it by T from its arrival; a holder whose
 * core dies with the connection up frees it at once (EOF).
 */
#include "cluster/cluster_fsm.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Nodes in the cluster: 2 by default; the unit_cluster_fsm_sim3 binary is built with 3, where
 * a confirmation without the witness must come from every node. */
#ifndef SIM_NODES
#define SIM_NODES 2
#endif
enum { I = 1000, T = 4000, MISSES = 5, TICK = 10, N = SIM_NODES, W = N /* the witness's index */ };

enum msg_kind {
    HB, HB_REPLY, ACQUIRE, RENEW, RELEASE, LEASE_REPLY, TRANSFER, NOTIFY,
    RECORD,      /* the active's durable log end to the witness (core_cluster_end.c) */
    RECORD_REPLY /* ...taken (granted) or not: a newer epoch's is there */
};

/* The witness's record of the active's log end (docs/cluster.md "The recorded log end"). */
struct record {
    int holder; /* -1: none yet */
    uint64_t epoch;
    struct cluster_fsm_logpos pos;
};

struct msg {
    bool used;
    uint64_t seq; /* send order */
    enum msg_kind kind;
    int from, to;
    uint64_t at;      /* delivery time */
    uint64_t sent_at; /* HB: its send time; HB_REPLY/LEASE_REPLY: the request's */
    uint64_t epoch;   /* ACQUIRE: min_epoch; RENEW/RELEASE: epoch; LEASE_REPLY: lease's */
    bool granted;
    int holder; /* LEASE_REPLY, NOTIFY: -1 free */
    int target; /* TRANSFER: the node it hands the lease to */
    bool transfer; /* LEASE_REPLY: answers a TRANSFER */
    struct record rec; /* RECORD: what is asked; NOTIFY, LEASE_REPLY: the witness's */
    /* summary */
    enum cluster_fsm_role role;
    bool candidate;
    struct cluster_fsm_logpos pos;
};

struct node {
    bool alive;
    uint64_t down_until;
    struct cluster_fsm fsm;
    struct cluster_fsm_output out;
    bool stepped;
    enum cluster_fsm_db_state db_state;
    struct cluster_fsm_logpos pos;
    uint64_t last_hb;
    uint64_t heard[N + 1], acked[N + 1];
    enum cluster_fsm_role role[N + 1];
    bool candidate[N + 1];
    struct cluster_fsm_logpos peer_pos[N + 1];
    int holder;
    uint64_t lease_epoch, renew_sent, renew_acked, pending_since;
    bool pending;
    /* Switchover (core_cluster_move.c's part): the target asked for, -1 none */
    int move_to;
    uint64_t move_since;
    bool move_seen;
    int transfer_from; /* the glue's: who handed the lease here, -1 none */
    uint64_t started;  /* its agent's start (in->started_ms) */
    struct record rec; /* the witness's record as last heard */
    uint64_t recorded_epoch, record_sent; /* its own record the witness took; last sent */
    bool record_pending;
};

static struct sim {
    uint64_t now;
    struct node n[N];
    bool link[N + 1][N + 1]; /* link[a][b]: messages a -> b get through */
    /* hbconn[a][b]: the heartbeat connection a opened to b works (its HEARTBEATs and their
     * answers get through, if the links let them) */
    bool hbconn[N + 1][N + 1];
    bool reply_only; /* the broken variant: only answers count as hearing a node */
    bool moves;      /* switchovers are asked now and then; a target may die at the transfer */
    bool calm;       /* no link cuts, no random crashes (only message loss and moves) */
    unsigned transfers, target_deaths;
    uint64_t served_at; /* sim_settle_ms: the first instant after the end with one writer */
    bool two_writers; /* reply_only: the violation was seen (instead of failing) */
    bool stale_mounted; /* sim_no_record: a stale store was mounted (instead of failing) */
    uint64_t last_at[N + 1][N + 1];
    uint64_t seq;
    struct msg q[1024];
    /* the witness */
    int w_holder;
    uint64_t w_epoch, w_expires;
    struct record w_rec;
    /* the newest epoch a write was acknowledged in (the stale-store check) */
    uint64_t written_epoch;
    /* checks */
    int epoch_owner[100000];
    unsigned activations, write_ticks[N];
    uint64_t trace_at; /* SIM_TRACE=<seed>:<ms>: print the steps before that instant */
} S;

/* Not reset by run(): the dial at lossless (the stale-store check is on), and the broken
 * variant without the witness's record. */
static bool sim_lossless, sim_no_record;

static const char *
name_of(int k)
{
    static const char *nodes[] = {"mb1", "mb2", "mb3", "mb4"};
    return k == W ? "wit1" : nodes[k];
}

static void
send(int from, int to, struct msg m)
{
    /* cut, or lost (a watch's notification rides the coordination session, which loses
     * nothing while it lasts) */
    if (!S.link[from][to] || (m.kind != NOTIFY && rand() % 10 == 0))
        return;
    if ((m.kind == HB && !S.hbconn[from][to]) || (m.kind == HB_REPLY && !S.hbconn[to][from]))
        return; /* the connection it travels on is broken */
    m.used = true;
    m.seq = ++S.seq;
    m.from = from;
    m.to = to;
    /* Delayed, but in order on a link: each pair talks over one TCP connection. */
    m.at = S.now + TICK + (uint64_t)(rand() % 300);
    if (m.at < S.last_at[from][to])
        m.at = S.last_at[from][to];
    S.last_at[from][to] = m.at;
    for (size_t i = 0; i < sizeof(S.q) / sizeof(S.q[0]); i++)
        if (!S.q[i].used) {
            S.q[i] = m;
            return;
        }
    fail_msg("message queue full");
}

/* The recorded log end's compare-and-set and its answer ride the coordination session, which
 * loses nothing while it lasts: delivered after a tick, if the link carries them, and drawn
 * from no random number, so the record leaves the runs' network as it was. */
static void
send_record(int from, int to, struct msg m)
{
    if (!S.link[from][to])
        return;
    m.used = true;
    m.seq = ++S.seq;
    m.from = from;
    m.to = to;
    m.at = S.now + TICK;
    if (m.at < S.last_at[from][to])
        m.at = S.last_at[from][to];
    S.last_at[from][to] = m.at;
    for (size_t i = 0; i < sizeof(S.q) / sizeof(S.q[0]); i++)
        if (!S.q[i].used) {
            S.q[i] = m;
            return;
        }
    fail_msg("message queue full");
}

static int
by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct msg *)a)->seq, y = ((const struct msg *)b)->seq;
    return x < y ? -1 : x > y;
}

static struct msg
summary_of(int k)
{
    struct msg m;
    memset(&m, 0, sizeof(m));
    m.role = S.n[k].stepped ? S.n[k].out.role : CLUSTER_ROLE_NONE;
    m.candidate = S.n[k].out.candidate;
    m.pos = S.n[k].pos;
    m.epoch = S.n[k].fsm.epoch;
    return m;
}

static void crash(int k);
static void lease_request(int k, enum msg_kind kind, uint64_t epoch);

/* The watches on the lease: every node hears the holder and epoch after a change, and again
 * every I (a node whose session came back watches again and reads the value). */
static void
notify_all(void)
{
    for (int k = 0; k < N; k++) {
        struct msg nt;
        memset(&nt, 0, sizeof(nt));
        nt.kind = NOTIFY;
        nt.holder = S.w_holder;
        nt.epoch = S.w_epoch;
        nt.rec = S.w_rec;
        send(W, k, nt);
    }
}

static void
witness_receive(const struct msg *m)
{
    struct msg r;
    memset(&r, 0, sizeof(r));
    r.sent_at = m->sent_at;
    r.rec = S.w_rec;
    if (m->kind == HB) {
        r.kind = HB_REPLY;
        send(W, m->from, r);
        return;
    }
    bool expired = S.w_holder >= 0 && S.now >= S.w_expires;
    if (expired)
        S.w_holder = -1;
    if (m->kind == RECORD) {
        /* A compare-and-set that never goes back to an older epoch (core_cluster_end.c). */
        r.kind = RECORD_REPLY;
        r.epoch = m->rec.epoch;
        if (S.w_rec.holder < 0 || m->rec.epoch >= S.w_rec.epoch) {
            S.w_rec = m->rec;
            r.granted = true;
        }
        /* The others hear it with the lease (a NOTIFY, an answer to their request). */
        send_record(W, m->from, r);
        return;
    }
    if (m->kind == RELEASE) {
        if (S.w_holder == m->from && S.w_epoch == m->epoch)
            S.w_holder = -1;
        return;
    }
    r.kind = LEASE_REPLY;
    if (m->kind == TRANSFER) {
        r.transfer = true;
        if (S.w_holder == m->from && S.w_epoch == m->epoch) {
            S.w_holder = m->target;
            S.w_epoch++;
            S.w_expires = S.now + T;
            r.granted = true;
            S.transfers++;
        }
        r.holder = S.w_holder;
        r.epoch = S.w_epoch;
        send(W, m->from, r);
        if (!r.granted)
            return;
        notify_all();
        /* The worst moment for the target to die: the lease is its own, nothing mounted. */
        if (rand() % 2 == 0 && S.n[m->target].alive) {
            S.target_deaths++;
            crash(m->target);
        }
        return;
    }
    if (m->kind == ACQUIRE && (S.w_holder < 0 || S.w_holder == m->from)) {
        if (S.w_holder != m->from) {
            S.w_epoch = S.w_epoch + 1 > m->epoch ? S.w_epoch + 1 : m->epoch;
            S.w_holder = m->from;
        }
        S.w_expires = S.now + T;
        r.granted = true;
    } else if (m->kind == RENEW && S.w_holder == m->from && S.w_epoch == m->epoch) {
        S.w_expires = S.now + T;
        r.granted = true;
    }
    r.holder = S.w_holder;
    r.epoch = S.w_epoch;
    if (S.trace_at && S.now + 8000 > S.trace_at && S.now <= S.trace_at)
        printf("%llu witness: %s from %s (sent %llu): %s, holder %d epoch %llu until %llu\n",
               (unsigned long long)S.now, m->kind == ACQUIRE ? "ACQUIRE" : "RENEW",
               name_of(m->from), (unsigned long long)m->sent_at, r.granted ? "granted" : "refused",
               S.w_holder, (unsigned long long)S.w_epoch, (unsigned long long)S.w_expires);
    send(W, m->from, r);
}

static void
node_receive(int k, const struct msg *m)
{
    struct node *n = &S.n[k];
    if (!(S.reply_only && m->kind == HB))
        n->heard[m->from] = S.now;
    if (m->kind == HB || m->kind == HB_REPLY) {
        if (m->from != W) {
            /* A new copy (a demotion) becomes Healthy once it reaches an active. */
            if (m->role == CLUSTER_ROLE_ACTIVE && n->db_state == CLUSTER_DB_COPY_UNHEALTHY)
                n->db_state = CLUSTER_DB_COPY_HEALTHY;
            n->role[m->from] = m->role;
            n->candidate[m->from] = m->candidate;
            n->peer_pos[m->from] = m->pos;
            /* Replication rides along: a copy takes what the active had. */
            if ((m->role == CLUSTER_ROLE_ACTIVE || m->role == CLUSTER_ROLE_MOVING) &&
                n->db_state != CLUSTER_DB_MOUNTED &&
                n->db_state != CLUSTER_DB_DISMOUNTED && m->pos.lsn > n->pos.lsn)
                n->pos = m->pos;
        }
        if (m->kind == HB_REPLY && m->sent_at > n->acked[m->from])
            n->acked[m->from] = m->sent_at;
        if (m->kind == HB) {
            struct msg r = summary_of(k);
            r.kind = HB_REPLY;
            r.sent_at = m->sent_at;
            send(k, m->from, r);
        }
        return;
    }
    if (m->kind == RECORD_REPLY) {
        n->record_pending = false;
        if (m->granted && m->epoch > n->recorded_epoch)
            n->recorded_epoch = m->epoch;
        return;
    }
    if (m->kind == NOTIFY || m->kind == LEASE_REPLY)
        n->rec = m->rec; /* the watch carries the key's value with its lease */
    if (m->kind == NOTIFY) {
        /* core_cluster.c on_notify: handed to us by a TRANSFER: renew before anything. */
        if (m->holder == k && n->holder != k && !n->pending) {
            n->transfer_from = n->holder;
            lease_request(k, ACQUIRE, m->epoch);
        } else {
            n->holder = m->holder;
            n->lease_epoch = m->epoch;
        }
        return;
    }
    if (m->kind == LEASE_REPLY) {
        n->pending = false;
        n->holder = m->holder;
        n->lease_epoch = m->epoch;
        if (m->granted && !m->transfer && m->sent_at > n->renew_acked)
            n->renew_acked = m->sent_at;
        if (m->transfer && !m->granted)
            n->move_to = -1; /* the move failed */
    }
}

static void
fill_input(int k, struct cluster_fsm_input *in)
{
    struct node *n = &S.n[k];
    memset(in, 0, sizeof(*in));
    in->now_ms = S.now;
    in->interval_ms = I;
    in->misses = MISSES;
    in->ttl_ms = T;
    in->self = name_of(k);
    in->self_preference = (unsigned)k;
    in->cms = "mail1";
    in->dial = CLUSTER_DIAL_BEST;
    in->n_dbs = 1;
    snprintf(in->dbs[0].name, sizeof(in->dbs[0].name), "db1");
    in->dbs[0].mode = CLUSTER_MODE_FILE;
    in->dbs[0].generation_bytes = 1 << 20;
    in->dbs[0].state = n->db_state;
    if (n->db_state == CLUSTER_DB_COPY_HEALTHY || n->db_state == CLUSTER_DB_COPY_LOST_SOURCE) {
        bool source = false;
        for (int j = 0; j < N; j++)
            if (j != k && n->role[j] == CLUSTER_ROLE_ACTIVE && n->heard[j] &&
                S.now < n->heard[j] + I * MISSES)
                source = true;
        in->dbs[0].state = source ? CLUSTER_DB_COPY_HEALTHY : CLUSTER_DB_COPY_LOST_SOURCE;
    }
    in->dbs[0].pos = n->pos;
    for (int j = 0; j <= N; j++) {
        if (j == k)
            continue;
        struct cluster_fsm_member *m = &in->members[in->n_members++];
        snprintf(m->name, sizeof(m->name), "%s", name_of(j));
        m->is_witness = j == W;
        m->last_heard_ms = n->heard[j];
        m->acked_sent_ms = n->acked[j];
        if (j != W) {
            /* EOF and refused: it is down and the network to it works. */
            m->core_dead = !S.n[j].alive && S.link[k][j] && S.link[j][k];
            m->role = n->role[j];
            m->candidate = n->candidate[j];
            m->preference = (unsigned)j;
            m->dbs[0].pos = n->peer_pos[j];
            m->dbs[0].eligible = true;
        }
    }
    /* The coordination connection: something from the witness lately. */
    in->lease.witness_up = n->heard[W] && S.now < n->heard[W] + 2 * I + I / 2;
    if (n->holder >= 0)
        snprintf(in->lease.holder, sizeof(in->lease.holder), "%s", name_of(n->holder));
    in->lease.epoch = n->lease_epoch;
    in->lease.request_pending = n->pending;
    in->lease.renew_sent_ms = n->renew_sent;
    in->lease.renew_acked_sent_ms = n->renew_acked;
    in->move_to = n->move_to >= 0 ? name_of(n->move_to) : NULL;
    in->started_ms = n->started;
    if (sim_lossless)
        in->dial = CLUSTER_DIAL_LOSSLESS;
    if (n->rec.holder >= 0 && !sim_no_record) {
        in->end.known = true;
        snprintf(in->end.holder, sizeof(in->end.holder), "%s", name_of(n->rec.holder));
        in->end.epoch = n->rec.epoch;
        in->end.dbs[0] = n->rec.pos;
    }
    /* core_cluster.c build_input: the node that handed the lease over is its mover. */
    if (n->transfer_from >= 0 && (n->fsm.state == CLUSTER_STATE_ACTIVE || n->holder != k))
        n->transfer_from = -1;
    for (unsigned j = 0; j < in->n_members && n->transfer_from >= 0; j++) {
        struct cluster_fsm_member *m = &in->members[j];
        if (strcmp(m->name, name_of(n->transfer_from)) == 0 &&
            (m->role == CLUSTER_ROLE_PASSIVE || m->role == CLUSTER_ROLE_MOVING)) {
            m->role = CLUSTER_ROLE_MOVING;
            snprintf(m->moving_to, sizeof(m->moving_to), "%s", name_of(k));
        }
    }
}

static void
lease_request(int k, enum msg_kind kind, uint64_t epoch)
{
    struct node *n = &S.n[k];
    struct msg m;
    memset(&m, 0, sizeof(m));
    m.kind = kind;
    m.epoch = epoch;
    m.sent_at = S.now;
    if (kind != RELEASE) {
        n->pending = true;
        n->pending_since = S.now;
        n->renew_sent = S.now;
    }
    send(k, W, m);
}

static void
step(int k)
{
    struct node *n = &S.n[k];
    struct cluster_fsm_input in;
    fill_input(k, &in);
    cluster_fsm_step(&n->fsm, &in, &n->out);
    n->stepped = true;
    if (S.trace_at && S.now + 8000 > S.trace_at && S.now <= S.trace_at) {
        printf("%llu %s %s w=%d next=%llu [%s] conf=%llu wu=%d holder=%s/%llu acked=%llu,%llu "
               "heard=%llu:",
               (unsigned long long)S.now, name_of(k), cluster_fsm_state_name(n->out.state),
               n->out.writes_allowed, (unsigned long long)n->out.next_step_ms, n->out.reason,
               (unsigned long long)cluster_fsm_confirmed_at(&in, n->fsm.active_since_ms),
               in.lease.witness_up, in.lease.holder, (unsigned long long)in.lease.epoch,
               (unsigned long long)in.lease.renew_acked_sent_ms,
               (unsigned long long)in.members[0].acked_sent_ms,
               (unsigned long long)in.members[0].last_heard_ms);
        for (unsigned a = 0; a < n->out.n_actions; a++)
            printf(" %s/%llu", cluster_fsm_action_name(n->out.actions[a].kind),
                   (unsigned long long)n->out.actions[a].epoch);
        printf("\n");
    }
    for (unsigned a = 0; a < n->out.n_actions; a++) {
        const struct cluster_fsm_action *act = &n->out.actions[a];
        switch (act->kind) {
        case CLUSTER_ACT_DISMOUNT:
            if (n->db_state == CLUSTER_DB_MOUNTED)
                n->db_state = CLUSTER_DB_DISMOUNTED;
            break;
        case CLUSTER_ACT_DEMOTE:
            /* A new copy: not eligible until it reaches an active (node_receive); or, in the
             * chaos runs, at once (see test_never_two_writers). */
            if (n->db_state == CLUSTER_DB_DISMOUNTED)
                n->db_state = S.calm ? CLUSTER_DB_COPY_UNHEALTHY : CLUSTER_DB_COPY_LOST_SOURCE;
            break;
        case CLUSTER_ACT_TRANSFER: {
            struct msg m;
            memset(&m, 0, sizeof(m));
            m.kind = TRANSFER;
            m.epoch = act->epoch;
            m.sent_at = S.now;
            m.target = -1;
            for (int j = 0; j < N; j++)
                if (strcmp(act->peer, name_of(j)) == 0)
                    m.target = j;
            assert_true(m.target >= 0);
            n->pending = true;
            n->pending_since = S.now;
            send(k, W, m);
            break;
        }
        case CLUSTER_ACT_ACQUIRE:
            lease_request(k, ACQUIRE, act->epoch);
            break;
        case CLUSTER_ACT_RENEW:
            lease_request(k, RENEW, act->epoch);
            break;
        case CLUSTER_ACT_RELEASE:
            lease_request(k, RELEASE, act->epoch);
            break;
        case CLUSTER_ACT_ACTIVATE:
            /* Lossless: an own store (the old active's) of an older epoch than the newest
             * acknowledged write never mounts: it would lose that epoch's mail. */
            if (sim_lossless && n->db_state == CLUSTER_DB_DISMOUNTED &&
                n->pos.epoch < S.written_epoch) {
                if (sim_no_record) {
                    S.stale_mounted = true;
                } else {
                    fail_msg("%s mounted its store of epoch %llu after writes in epoch %llu",
                             name_of(k), (unsigned long long)n->pos.epoch,
                             (unsigned long long)S.written_epoch);
                }
            }
            assert_true(act->epoch < sizeof(S.epoch_owner) / sizeof(S.epoch_owner[0]));
            if (S.epoch_owner[act->epoch] != 0 && S.epoch_owner[act->epoch] != k + 1)
                fail_msg("epoch %llu activated by two nodes", (unsigned long long)act->epoch);
            S.epoch_owner[act->epoch] = k + 1;
            S.activations++;
            n->db_state = CLUSTER_DB_MOUNTED;
            n->pos.epoch = act->epoch;
            break;
        default:
            break;
        }
    }
    /* core_cluster_end.c: the active records its log end at the witness when it activated,
     * and every I while it changes; no write is acknowledged before the witness took one of
     * its epoch (the write check below). */
    bool active = n->fsm.state == CLUSTER_STATE_ACTIVE || n->fsm.state == CLUSTER_STATE_MOVING;
    if (active && n->holder == k && n->lease_epoch == n->fsm.active_epoch &&
        n->db_state == CLUSTER_DB_MOUNTED && !n->record_pending &&
        (n->recorded_epoch < n->fsm.active_epoch || S.now >= n->record_sent + I)) {
        struct msg m;
        memset(&m, 0, sizeof(m));
        m.kind = RECORD;
        m.rec.holder = k;
        m.rec.epoch = n->fsm.active_epoch;
        m.rec.pos = n->pos;
        n->record_pending = true;
        n->record_sent = S.now;
        send_record(k, W, m);
    }
    if (n->record_pending && S.now >= n->record_sent + I)
        n->record_pending = false; /* lost: the glue's session would have ended */
    /* core_cluster_move.c: how a move ends. */
    if (n->move_to >= 0) {
        if (n->out.state == CLUSTER_STATE_MOVING)
            n->move_seen = true;
        else if (n->move_seen || n->out.state != CLUSTER_STATE_ACTIVE)
            n->move_to = -1;
        if (S.now >= n->move_since + 8000)
            n->move_to = -1;
    }
}

static void
crash(int k)
{
    struct node *n = &S.n[k];
    n->alive = false;
    n->down_until = S.now + 500 + (uint64_t)(rand() % 6000);
    /* Its connection to the witness ends with EOF if the network carries it. */
    if (S.w_holder == k && S.link[k][W])
        S.w_holder = -1;
    for (size_t i = 0; i < sizeof(S.q) / sizeof(S.q[0]); i++)
        if (S.q[i].used && (S.q[i].to == k || S.q[i].from == k))
            S.q[i].used = false;
}

static void
start(int k)
{
    struct node *n = &S.n[k];
    struct cluster_fsm_logpos pos = n->pos;
    enum cluster_fsm_db_state st = n->db_state;
    memset(n, 0, sizeof(*n));
    n->alive = true;
    n->holder = -1;
    n->move_to = -1;
    n->transfer_from = -1;
    cluster_fsm_init(&n->fsm);
    n->pos = pos;
    /* A restart mounts nothing: an active's store comes back dismounted. */
    n->db_state = st == CLUSTER_DB_MOUNTED ? CLUSTER_DB_DISMOUNTED : st;
    n->last_hb = S.now - (uint64_t)(rand() % I);
    n->started = S.now;
    n->rec.holder = -1;
}

/* Not reset by run(): after its duration a run goes on, without moves, for at most this long
 * until exactly one node writes (S.served_at); 0 ends it at its duration. */
static uint64_t sim_settle_ms;

static void
run(unsigned seed, uint64_t duration, bool reply_only, bool moves, bool calm)
{
    memset(&S, 0, sizeof(S));
    S.reply_only = reply_only;
    S.moves = moves;
    S.calm = calm;
    srand(seed);
    const char *tr = getenv("SIM_TRACE");
    if (tr && (unsigned)atoi(tr) == seed && strchr(tr, ':'))
        S.trace_at = strtoull(strchr(tr, ':') + 1, NULL, 10);
    S.now = 1000;
    S.w_holder = -1;
    S.w_rec.holder = -1;
    for (int a = 0; a <= N; a++)
        for (int b = 0; b <= N; b++)
            S.link[a][b] = S.hbconn[a][b] = true;
    for (int k = 0; k < N; k++) {
        S.n[k].db_state = k == 0 ? CLUSTER_DB_DISMOUNTED : CLUSTER_DB_COPY_LOST_SOURCE;
        start(k);
    }
    for (; S.now < duration + sim_settle_ms; S.now += TICK) {
        /* The network changes: a link is cut or healed now and then, one way or both. */
        for (int a = 0; a <= N && !S.calm; a++)
            for (int b = 0; b <= N; b++)
                if (a != b && rand() % 400 == 0)
                    S.link[a][b] = !S.link[a][b];
        /* A heartbeat connection breaks or comes back on its own (refused, EMFILE...). */
        for (int a = 0; a <= N && !S.calm; a++)
            for (int b = 0; b <= N; b++)
                if (a != b && rand() % 400 == 0)
                    S.hbconn[a][b] = !S.hbconn[a][b];
        bool woke[N] = {false};
        /* What is due this tick, in the order it was sent. */
        struct msg due[sizeof(S.q) / sizeof(S.q[0])];
        size_t n_due = 0;
        for (size_t i = 0; i < sizeof(S.q) / sizeof(S.q[0]); i++) {
            struct msg *m = &S.q[i];
            if (!m->used || m->at > S.now)
                continue;
            m->used = false;
            due[n_due++] = *m;
        }
        qsort(due, n_due, sizeof(due[0]), by_seq);
        if (S.moves && S.now % I == 0) {
            if (S.w_holder >= 0 && S.now >= S.w_expires)
                S.w_holder = -1;
            notify_all();
        }
        for (size_t i = 0; i < n_due; i++) {
            struct msg copy = due[i];
            if (copy.to == W) {
                witness_receive(&copy);
            } else if (S.n[copy.to].alive) {
                node_receive(copy.to, &copy);
                woke[copy.to] = true;
            }
        }
        for (int k = 0; k < N; k++) {
            struct node *n = &S.n[k];
            if (!n->alive) {
                if (S.now >= n->down_until)
                    start(k);
                continue;
            }
            if (!S.calm && rand() % 3000 == 0) {
                crash(k);
                continue;
            }
            /* The operator asks for a switchover now and then (the last 20 s are quiet). */
            if (S.moves && n->fsm.state == CLUSTER_STATE_ACTIVE && n->move_to < 0 &&
                S.now + 20000 < duration && rand() % 500 == 0) {
                n->move_to = (k + 1 + rand() % (N - 1)) % N;
                n->move_since = S.now;
                n->move_seen = false;
            }
            if (n->pending && S.now >= n->pending_since + I)
                n->pending = false; /* the glue's request timeout */
            if (S.now >= n->last_hb + I) {
                n->last_hb = S.now;
                for (int j = 0; j <= N; j++)
                    if (j != k) {
                        struct msg m = summary_of(k);
                        m.kind = HB;
                        m.sent_at = S.now;
                        send(k, j, m);
                    }
            }
            if (!n->stepped || woke[k] || S.now >= n->out.next_step_ms || rand() % 20 == 0)
                step(k);
        }
        /* The invariant, at this instant. */
        int writers = 0;
        for (int k = 0; k < N; k++) {
            struct node *n = &S.n[k];
            if (n->alive && n->stepped && n->out.writes_allowed && S.now < n->out.writes_until_ms &&
                (sim_no_record || n->recorded_epoch >= n->fsm.active_epoch)) {
                assert_int_equal(n->db_state, CLUSTER_DB_MOUNTED);
                /* Never in MOVING: writes resume only as ACTIVE in the lease's epoch. */
                assert_int_equal(n->out.state, CLUSTER_STATE_ACTIVE);
                writers++;
                S.write_ticks[k]++;
                n->pos.lsn++;
                n->pos.generation = n->pos.lsn / 1000 + 1;
                if (n->pos.epoch > S.written_epoch)
                    S.written_epoch = n->pos.epoch;
            }
        }
        if (getenv("SIM_DEBUG") && S.now % 5000 == 0) {
            printf("%llu:", (unsigned long long)S.now);
            for (int k = 0; k < N; k++)
                printf(" %s%s %s [%s] db=%d h=%d/%llu mv=%d |", name_of(k), S.n[k].alive ? "" : "(dead)",
                       cluster_fsm_state_name(S.n[k].out.state), S.n[k].out.reason, S.n[k].db_state,
                       S.n[k].holder, (unsigned long long)S.n[k].lease_epoch, S.n[k].move_to);
            printf(" W=%d/%llu\n", S.w_holder, (unsigned long long)S.w_epoch);
        }
        if (writers > 1 && S.reply_only) {
            S.two_writers = true;
            return;
        }
        if (writers > 1)
            fail_msg("seed %u: two nodes writing at t=%llu ms", seed, (unsigned long long)S.now);
        if (writers == 1 && S.now >= duration) {
            S.served_at = S.now;
            return;
        }
    }
}

static void
test_never_two_writers(void **state)
{
    (void)state;
    unsigned total_activations = 0, both_wrote = 0;
    /* SIM_SEEDS=<n> runs n seeds instead of 40 (a longer search by hand). */
    unsigned last = getenv("SIM_SEEDS") ? (unsigned)atoi(getenv("SIM_SEEDS")) : 40;
    unsigned first = getenv("SIM_FIRST") ? (unsigned)atoi(getenv("SIM_FIRST")) : 1;
    unsigned seeds = last >= first ? last - first + 1 : 0;
    for (unsigned seed = first; seed <= last; seed++) {
        run(seed, 600 * 1000, false, true, false);
        total_activations += S.activations;
        unsigned wrote = 0;
        for (int k = 0; k < N; k++)
            wrote += S.write_ticks[k] > 0;
        if (wrote >= 2)
            both_wrote++;
    }
    /* Not vacuous: the CMS moved many times, between nodes, in most runs. A demoted copy
     * counts as eligible at once here: with copies that must first reach an active (as in
     * test_moves_whose_target_dies, and as in the code) the chaos leaves the CMS stuck far
     * more often, since a fence demotes at once (activations fall from ~550 to ~30 over 10
     * seeds): liveness under chaos is not what this test holds the decisions to. */
    printf("%d nodes: activations %u; runs where two nodes or more wrote: %u of %u\n", N,
           total_activations, both_wrote, seeds);
    assert_true(total_activations > 5 * seeds);
    /* With three nodes the old active mostly wins back (it restarts with the most log, and
     * the most log wins), so only two nodes are held to moving the CMS around. */
    if (N == 2)
        assert_true(both_wrote > seeds * 3 / 4);
}

/* The check can fail: with only answers counted as hearing a node (what cluster_hb did before
 * heard_ms), some seed ends with two writers. Two nodes only: with three, a confirmation
 * without the witness needs every node, and 200 seeds (3 minutes) found none. */
static void
test_reply_only_is_caught(void **state)
{
    (void)state;
    if (N != 2)
        skip();
    unsigned found = 0, seed;
    for (seed = 1; seed <= 200 && !found; seed++) {
        run(seed, 600 * 1000, true, false, false);
        found += S.two_writers;
    }
    printf("%d nodes, answers only: two writers found at seed %u\n", N, seed - 1);
    assert_true(found);
}

/*
 * Switchovers whose target dies half of the times right after the witness handed it the lease
 * (before it could mount): the CMS never has two writers (at any instant), and is never left
 * without one. Liveness: each run ends with 20 quiet seconds (no moves asked, the last dead
 * target restarted) and then goes on, still without moves, until exactly one node writes,
 * which must happen within SETTLE. Not "one writer at the last instant": the 10% message loss
 * may fence the writer at any moment (a lost renewal), and it then takes the CMS back, a
 * legitimate re-takeover that an instant may fall into. Without the decisions' recovery (the
 * old active demoted at once after a transfer, or at a fence) a move whose target died left
 * only copies that never were Healthy: nobody could take the CMS, and no wait helps.
 */
static void
test_moves_whose_target_dies(void **state)
{
    (void)state;
    enum { SETTLE = 60000 };
    unsigned last = getenv("SIM_SEEDS") ? (unsigned)atoi(getenv("SIM_SEEDS")) : 40;
    unsigned first = getenv("SIM_FIRST") ? (unsigned)atoi(getenv("SIM_FIRST")) : 1;
    unsigned transfers = 0, deaths = 0, at_once = 0;
    uint64_t longest = 0, duration = 300 * 1000;
    sim_settle_ms = SETTLE;
    for (unsigned seed = first; seed <= last; seed++) {
        run(seed, duration, false, true, true);
        transfers += S.transfers;
        deaths += S.target_deaths;
        if (S.served_at == 0) {
            for (int k = 0; k < N; k++)
                printf("  %s alive=%d %s [%s] db=%d holder=%d/%llu\n", name_of(k), S.n[k].alive,
                       cluster_fsm_state_name(S.n[k].out.state), S.n[k].out.reason,
                       S.n[k].db_state, S.n[k].holder, (unsigned long long)S.n[k].lease_epoch);
            sim_settle_ms = 0;
            fail_msg("seed %u: no node writes %d s after the quiet end (transfers %u, target "
                     "deaths %u)",
                     seed, SETTLE / 1000, S.transfers, S.target_deaths);
        }
        at_once += S.served_at == duration;
        if (S.served_at - duration > longest)
            longest = S.served_at - duration;
    }
    sim_settle_ms = 0;
    printf("%d nodes: one writer at the quiet end in %u of %u runs; the longest wait after it "
           "%llu ms\n",
           N, at_once, last - first + 1, (unsigned long long)longest);
    printf("%d nodes: %u transfers, %u targets killed right after theirs\n", N, transfers, deaths);
    assert_true(deaths > 2 * (last - first + 1)); /* not vacuous */
}

/*
 * The review's stale start (docs/cluster.md "The recorded log end"), dial at lossless: an
 * active is killed, the other takes over and writes, is killed too, and the first restarts
 * while it is down. Its store is an old active's, of an older epoch than the newest write: it
 * must never mount it. Checked at every activation of every run; and the check can fail:
 * without the witness's record (in->end left empty) some seed mounts a stale store.
 */
static void
test_stale_store_never_mounted(void **state)
{
    (void)state;
    /* 20 seeds by default: the run's cost is test_never_two_writers's again. */
    unsigned last = getenv("SIM_SEEDS") ? (unsigned)atoi(getenv("SIM_SEEDS")) : 20;
    unsigned first = getenv("SIM_FIRST") ? (unsigned)atoi(getenv("SIM_FIRST")) : 1;
    unsigned activations = 0;
    sim_lossless = true;
    for (unsigned seed = first; seed <= last; seed++) {
        run(seed, 600 * 1000, false, false, false);
        activations += S.activations;
    }
    printf("%d nodes, lossless: activations %u, no stale store mounted\n", N, activations);
    assert_true(activations > 2 * (last - first + 1)); /* not vacuous */
    sim_no_record = true;
    unsigned found = 0, seed;
    for (seed = 1; seed <= 200 && !found; seed++) {
        run(seed, 600 * 1000, false, false, false);
        found += S.stale_mounted;
    }
    sim_lossless = sim_no_record = false;
    printf("%d nodes, lossless, no record: a stale store mounted at seed %u\n", N, seed - 1);
    assert_true(found);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_store_never_mounted),
        cmocka_unit_test(test_never_two_writers),
        cmocka_unit_test(test_moves_whose_target_dies),
        cmocka_unit_test(test_reply_only_is_caught),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

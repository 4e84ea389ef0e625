#ifndef TANDEM_CLUSTER_CLUSTER_FSM_H
#define TANDEM_CLUSTER_CLUSTER_FSM_H

/*
 * The cluster agent's decisions for one CMS on one node (docs/cluster.md "Timing", "Failover",
 * "Switchover", "Rejoin", "Start"): pure logic, no I/O and no clock reads. The glue
 * (tandemd/core_cluster.c) fills a struct cluster_fsm_input with what the node knows now — its
 * peers, the lease as last heard from the witness, its copies, the time — calls
 * cluster_fsm_step(), carries out the actions in order, and calls it again when something
 * changes or at out->next_step_ms at the latest. Results of actions (a lease granted, copies
 * activated, a dismount done) come back through the next input, never through callbacks.
 *
 * Times are milliseconds on one clock of this node that never goes back and counts a suspend
 * (tdm_clock_ms, lib/clock.h); 0 means "never". Nothing here
 * compares times of two nodes.
 *
 * Writing is allowed (out->writes_allowed) only while this node is active and holds a
 * confirmation: every vote of a majority answered a message it sent at or after s (the witness
 * through a lease renewal while its connection is up, a node through a heartbeat reply), and
 * either the witness is among them or every node of the cluster is (docs/cluster.md,
 * "Failsafe"). Writing stops at s + F, F = lease_ttl - heartbeat_interval.
 */

#include <stdbool.h>
#include <stdint.h>

#define CLUSTER_FSM_NAME_MAX 63    /* a member, CMS or database name */
#define CLUSTER_FSM_MAX_MEMBERS 16 /* other members (nodes and the witness) */
#define CLUSTER_FSM_MAX_DBS 16     /* databases of one CMS */
#define CLUSTER_FSM_MAX_ACTIONS 8
#define CLUSTER_FSM_REASON_MAX 200

enum cluster_mount_dial {
    CLUSTER_DIAL_LOSSLESS, /* 0 generations missing */
    CLUSTER_DIAL_GOOD,     /* at most 3 */
    CLUSTER_DIAL_BEST,     /* at most 6 */
};

enum cluster_repl_mode { CLUSTER_MODE_FILE, CLUSTER_MODE_BLOCK, CLUSTER_MODE_SYNC };

/* What a member says it is for this CMS in its heartbeats' summary. */
enum cluster_fsm_role {
    CLUSTER_ROLE_NONE,    /* no summary yet, or holds none of the CMS's databases */
    CLUSTER_ROLE_PASSIVE, /* copies; candidate for failover if all are eligible */
    CLUSTER_ROLE_ACTIVE,  /* mounted and writing (or believes it may) */
    CLUSTER_ROLE_MOVING,  /* active that stopped acknowledging writes for a switchover */
    CLUSTER_ROLE_FENCED,  /* active that lost its confirmation and is dismounting */
};

/* This node's database of the CMS, as the core holds it. */
enum cluster_fsm_db_state {
    CLUSTER_DB_ABSENT,       /* not here at all: cannot be active or a candidate */
    CLUSTER_DB_MOUNTED,      /* an active store, serving */
    CLUSTER_DB_DISMOUNTED,   /* an active store (no copy.conf), closed */
    CLUSTER_DB_COPY_HEALTHY, /* copy in touch with its source (Healthy) */
    /* copy whose source went away (Disconnected, ServiceDown) while it was replicating:
     * eligible for failover, which is what losing the active looks like from a copy */
    CLUSTER_DB_COPY_LOST_SOURCE,
    CLUSTER_DB_COPY_UNHEALTHY, /* Failed, Suspended, Seeding, Initializing, Resynchronizing */
};

/* End of a database's durable log. */
struct cluster_fsm_logpos {
    uint64_t epoch;
    uint64_t lsn;        /* last durable record; 0 = none */
    uint64_t generation; /* the generation holding it */
    uint64_t offset;     /* bytes of that generation up to its end */
};

struct cluster_fsm_db_summary {
    struct cluster_fsm_logpos pos;
    bool eligible; /* the member's copy is Healthy or lost its source (see above) */
};

/* One other member (node or witness) as this node sees it. */
struct cluster_fsm_member {
    char name[CLUSTER_FSM_NAME_MAX + 1];
    bool is_witness;
    uint64_t last_heard_ms; /* receipt of its newest message on any network */
    uint64_t acked_sent_ms; /* send time of our newest heartbeat it answered */
    /* Every heartbeat connection to it ended with EOF and a new one is refused on every
     * network: its core is not running (docs/cluster.md, (b)). */
    bool core_dead;
    /* Its last summary for this CMS (nodes only; meaningless while role is NONE). */
    enum cluster_fsm_role role;
    uint64_t epoch;                           /* the epoch it holds or last held */
    char moving_to[CLUSTER_FSM_NAME_MAX + 1]; /* role MOVING: the target */
    unsigned preference;                      /* activation preference: lower first */
    /* It could take the CMS over: it sees the witness and a quorum, and all its copies are
     * eligible. A passive that cannot is never waited for as "more log". */
    bool candidate;
    struct cluster_fsm_db_summary dbs[CLUSTER_FSM_MAX_DBS]; /* in the CMS's database order */
};

/* The lease cms/<name> as last heard from the witness. */
struct cluster_fsm_lease {
    bool witness_up;                       /* the coordination connection is established */
    char holder[CLUSTER_FSM_NAME_MAX + 1]; /* "" = free or unknown */
    uint64_t epoch;                        /* of that holder */
    bool request_pending;                  /* an ACQUIRE/RENEW/TRANSFER is on its way */
    uint64_t renew_sent_ms;                /* our newest RENEW (or ACQUIRE) sent */
    /* Send time of our newest ACQUIRE or RENEW the witness granted (a grant counts as a
     * renewal); the witness's vote in a confirmation while witness_up. */
    uint64_t renew_acked_sent_ms;
};

struct cluster_fsm_db {
    char name[CLUSTER_FSM_NAME_MAX + 1];
    enum cluster_repl_mode mode;
    uint64_t generation_bytes; /* size of a generation of this database */
    enum cluster_fsm_db_state state;
    struct cluster_fsm_logpos pos; /* this node's durable log end */
    /* MOUNTED: the highest LSN assigned, durable or not (store_status.last_lsn): commits in
     * flight end at most there. A switchover hands the lease over only once it is durable
     * (docs/cluster.md "Switchover"). 0, or below pos.lsn: same as pos.lsn. */
    uint64_t last_lsn;
};

/*
 * The active's durable log end as recorded at the witness, in the value of the lease's key
 * (docs/cluster.md "The recorded log end"): written by the active when it activates, before
 * it acknowledges a write in its epoch, and every heartbeat interval after while it changes.
 * A takeover measures the mount dial against it as against the members' reports, so a node
 * that starts while the newer active is down knows how far the history went without it.
 */
struct cluster_fsm_end {
    bool known;                            /* the witness holds one, and this node heard it */
    char holder[CLUSTER_FSM_NAME_MAX + 1]; /* the node that wrote it */
    uint64_t epoch;                        /* the lease epoch it was written in */
    struct cluster_fsm_logpos dbs[CLUSTER_FSM_MAX_DBS]; /* the CMS's database order; lsn 0 =
                                                         * none recorded */
};

struct cluster_fsm_input {
    uint64_t now_ms;
    /* Timers of the cluster (lib/config: [cluster]). */
    uint64_t interval_ms; /* I */
    unsigned misses;      /* down after I x misses without a word */
    uint64_t ttl_ms;      /* T > 2 I */
    /* This node and the CMS. */
    const char *self;
    unsigned self_preference;
    const char *cms;
    enum cluster_mount_dial dial;
    struct cluster_fsm_db dbs[CLUSTER_FSM_MAX_DBS];
    unsigned n_dbs;
    struct cluster_fsm_member members[CLUSTER_FSM_MAX_MEMBERS];
    unsigned n_members; /* every other node and the witness */
    struct cluster_fsm_lease lease;
    /* The operator's `cms move --to <node>` (NULL or "" = none); cleared by the glue when
     * out->state is no longer MOVING or the request failed. */
    const char *move_to;
    /* When this node's agent started (its clock): a node not heard since may be an active
     * that writes, so its silence counts from here (docs/cluster.md "Start"). */
    uint64_t started_ms;
    struct cluster_fsm_end end;
    /* The operator's `copy activate --force` of a database of the CMS here: a takeover may go
     * beyond the mount dial. Every other rule holds (the old active silent or dead, the
     * witness's grant, quorum, eligible copies, no passive ahead). Cleared by the glue. */
    bool force_activate;
};

enum cluster_fsm_action_kind {
    CLUSTER_ACT_FENCE,      /* stop acknowledging writes on every database of the CMS now */
    /* acknowledge writes again: a switchover gave up before TRANSFER, or the witness confirmed
     * after it that the lease is still this node's in its epoch (the transfer did not happen) */
    CLUSTER_ACT_RESUME,
    CLUSTER_ACT_DISMOUNT,   /* dismount every mounted database and release the CMS address */
    CLUSTER_ACT_RELEASE,    /* RELEASE the lease (epoch) */
    CLUSTER_ACT_DEMOTE,     /* every non-copy database becomes a copy of the CMS address */
    CLUSTER_ACT_ACQUIRE,    /* ACQUIRE the lease with min_epoch */
    CLUSTER_ACT_RENEW,      /* renew the lease (epoch) */
    CLUSTER_ACT_LAST_LOGS,  /* copy what it can of the last logs from the old active (peer) */
    CLUSTER_ACT_ACTIVATE,   /* activate/mount every database with this epoch */
    CLUSTER_ACT_ADDRESS_UP, /* bind the CMS address */
    CLUSTER_ACT_TRANSFER,   /* TRANSFER the lease (epoch) to peer */
    CLUSTER_ACT_RESUBMIT,   /* ask the site's transports to resubmit from their dumpsters */
};

struct cluster_fsm_action {
    enum cluster_fsm_action_kind kind;
    uint64_t epoch;                      /* ACQUIRE: min_epoch; RENEW/RELEASE/TRANSFER/ACTIVATE */
    char peer[CLUSTER_FSM_NAME_MAX + 1]; /* LAST_LOGS, TRANSFER */
};

/* What this node is for the CMS (status, and the role in its heartbeats' summary). */
enum cluster_fsm_state {
    CLUSTER_STATE_PASSIVE,      /* another node is active; copies replicate */
    CLUSTER_STATE_WAITING,      /* no active and this node may not take over: see reason */
    CLUSTER_STATE_FAILING_OVER, /* asked for the lease, or activating */
    CLUSTER_STATE_ACTIVE,
    CLUSTER_STATE_MOVING, /* switchover: writes paused, waiting for the target */
    CLUSTER_STATE_FENCED, /* lost confirmation: dismounting, then rejoins as passive */
};

struct cluster_fsm_output {
    enum cluster_fsm_state state;
    enum cluster_fsm_role role; /* for this node's summary */
    bool candidate;             /* for this node's summary (see struct cluster_fsm_member) */
    const char *moving_to;      /* MOVING: the target (borrowed from the input) */
    bool writes_allowed;        /* commits may be acknowledged until writes_until_ms */
    bool moved;                 /* this step ended a switchover: the lease is the target's */
    bool forced;                /* ACTIVATE of this step went beyond the mount dial (forced) */
    uint64_t writes_until_ms;   /* writes_allowed: s + F of the newest confirmation (the
                                 * self-fence); the glue's acknowledgement deadline */
    uint64_t next_step_ms;      /* call again at this time at the latest (0: on input only) */
    char reason[CLUSTER_FSM_REASON_MAX + 1]; /* WAITING/FAILING_OVER/MOVING: why, for status */
    struct cluster_fsm_action actions[CLUSTER_FSM_MAX_ACTIONS];
    unsigned n_actions;
};

/* What one node keeps between steps. Zero it (or cluster_fsm_init) at start: a node never
 * mounts on its memory of having been active (docs/cluster.md "Start"). */
struct cluster_fsm {
    enum cluster_fsm_state state;
    uint64_t epoch;           /* the highest epoch this node knows of */
    uint64_t active_epoch;    /* ACTIVE/MOVING: the epoch it writes in */
    uint64_t active_since_ms; /* ACTIVE/MOVING: when it activated (see confirmed_at) */
    /* ACTIVE, no confirmation yet: mounted (not writing) until then at most, F after the send
     * time of the request the grant answered (the lease may run out T after it). */
    uint64_t first_round_until_ms;
    uint64_t acquire_sent_ms; /* last ACQUIRE asked while not active (retried every I) */
    bool transfer_sent;       /* MOVING: TRANSFER asked */
    uint64_t transfer_sent_ms; /* ...at this time: a later grant of our RENEW says it failed */
    char transfer_to[CLUSTER_FSM_NAME_MAX + 1]; /* ...to this node */
};

void cluster_fsm_init(struct cluster_fsm *fsm);

/* One decision from in; fills *out (actions to carry out in order). Never fails: a malformed
 * input (a count above the maxima) is a bug of the caller and panics. */
void cluster_fsm_step(struct cluster_fsm *fsm, const struct cluster_fsm_input *in,
                      struct cluster_fsm_output *out);

/* Names for status and logs ("Active", "Passive", "Waiting"...). */
const char *cluster_fsm_state_name(enum cluster_fsm_state s);
const char *cluster_fsm_action_name(enum cluster_fsm_action_kind k);
const char *cluster_mount_dial_name(enum cluster_mount_dial d);

/* The newest s of a confirmation (see above), or 0 when there is none, counting a node's
 * answer only to a heartbeat sent at or after nodes_since (the moment this node became active:
 * an answer to a heartbeat whose summary did not say "active" confirms nothing, since its
 * sender did not then hold back from a takeover). Exposed for tests and status. */
uint64_t cluster_fsm_confirmed_at(const struct cluster_fsm_input *in, uint64_t nodes_since);

#endif

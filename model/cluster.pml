/*
 * The lease and epoch protocol of docs/cluster.md ("Leases and epochs", "Timing"), for spin.
 *
 * What is checked (assertions, exhaustively over every interleaving):
 *   (1) mutual exclusion: at no instant are two nodes allowed to write;
 *   (2) epochs never go back: every write carries an epoch at least as new as every write
 *       before it, so a copy never has to accept an older epoch after a newer one.
 *
 * One process, the world, takes one atomic step at a time, any of:
 *   tick            time passes by one tick on every clock (timers count down, answers not
 *                   yet delivered are lost)
 *   heartbeat       node i's heartbeat reaches node j (j hears i), and later j's answer
 *                   reaches i (i hears j and counts j's confirmation); the answer may be lost
 *   acquire         a node sends ACQUIRE (a renewal when it is the holder) to the witness, the
 *                   witness answers, the node acts on the grant
 *   close / EOF     a node's connection to the witness ends on the node's side (the node drops
 *                   the witness's vote at once); the witness sees the EOF then or later and
 *                   frees the lease if the node held it; later they reconnect
 *   crash/restart   of any node (durable: its highest epoch) and of the witness (durable: holder
 *                   and epoch; at restart the lease counts as renewed for a full T)
 *   EOF+refused     a node notices that another node's core is not running
 *   write           a node that is allowed writes a record with its epoch
 *
 * Abstractions (all but the bounds let the model do more than the implementation, so safety
 * here carries over there; the bounds are CRASHES crashes and MAXE epochs per run):
 *   - Clocks: every member measures durations on its own clock in whole ticks; clocks have
 *     arbitrary offsets (only durations are ever compared) and the same rate. Drift between
 *     clocks is not modelled: the margin I/2 in the passive's silence rule and I between F and
 *     T are there to absorb it.
 *   - Timers are countdowns (time left of a confirmation, of the lease) and counters that
 *     saturate (silence), so the state space is finite; epochs are bounded by MAXE (the witness
 *     grants no epoch above it: a run simply has no more failovers).
 *   - Messages: a request is delivered as it is sent and its answer before the next tick, or
 *     lost. This is the worst case, not a simplification: a confirmation counts from the
 *     moment its request was sent (on the sender's clock), while the peer's "last heard" and
 *     the witness's renewal count from delivery, so every delay makes a confirmation worth less
 *     and the peer's silence or the lease's expiry later. Other steps may still happen between
 *     a request and its answer.
 *   - When heartbeats and ACQUIREs are sent is left to chance (any time, at most one of each in
 *     flight per pair): the safety argument does not depend on the heartbeat interval. Nodes
 *     may ask for the lease at any time (the real one only while it sees a quorum).
 *   - The passive's takeover rule is checked against every other node, not only the one it
 *     believes active (the two coincide with two nodes; with three it is the conservative
 *     reading).
 *   - The witness's free-at-EOF happens when or after the node's side of the connection ended
 *     (EOF is the node closing, or the node's core gone). A witness-side timeout that frees the
 *     lease while the node still counts the witness's vote is unsafe: BROKEN_EARLY_FREE shows it.
 *   - Writes pause, TRANSFER (switchover) and RELEASE are not modelled: they only ever end a
 *     holder's rights earlier.
 *   - Stores, copies, demotion and the mount dial are not modelled: any node that is up may
 *     ask for the lease at any time, a fenced one too. So a fence that keeps the node's store
 *     (it no longer demotes: docs/cluster.md "Rejoin") and lets it take the CMS back adds no
 *     behaviour here; which store may be mounted is the mount dial's question, checked by
 *     unit_cluster_fsm_safety and unit_cluster_fsm_sim (the stale start).
 *
 * Parameters (cpp: spin -DN=3 ...): N nodes (2 or 3), I and T in ticks, CRASHES. Broken
 * variants, each of which spin must find a violation in (model/check-model):
 *   BROKEN_NO_SILENCE    the passive takes over on the witness's grant alone
 *   BROKEN_LONG_FENCE    fence time F = T + 1 (later than the lease's expiry)
 *   BROKEN_EARLY_FREE    the witness frees the lease on its side first (a timeout), while the
 *                        node still counts the witness's confirmation
 *   BROKEN_RESTART       a restarted node counts the other nodes as silent since forever
 */

#ifndef N
#define N 2
#endif
#ifndef I
#define I 2 /* heartbeat interval */
#endif
#ifndef T
#define T 4 /* lease time to live */
#endif
#ifndef CRASHES
#define CRASHES 1 /* crashes of nodes and of the witness in one run (2: 5 M states, ~110 s) */
#endif
#ifdef BROKEN_LONG_FENCE
#define F (T + 1)
#else
#define F (T - I) /* fence time: the active writes until s + F of its newest majority confirmation */
#endif
#define SILENT (F + I / 2) /* the passive's silence before it may take over */
#define MAXE 3             /* the highest epoch the witness grants */
#define W N                /* the witness's index among a node's voters */
#define K ((N + 1) / 2)    /* votes a node needs besides its own for a majority of N + 1 */
#define NONE 255

typedef row {
    byte v[N + 1]
};

/* nodes */
bool up[N];
bool mounted[N];  /* mounted: allowed to write (a fence ends it at once) */
byte myepoch[N]; /* durable: the highest epoch it knows (its store's epoch) */
row cf[N];       /* cf[i].v[x]: ticks left of i's newest confirmation from voter x (0: none) */
row silent[N];   /* silent[i].v[j]: ticks since i last heard j (saturates at SILENT) */
row eofref[N];   /* eofref[i].v[j]: i saw EOF from j and j refuses connections */

/* replies in flight (a request is delivered as it is sent: see "Messages" above); a reply not
   delivered before the next tick is lost */
row hbrep[N];  /* hbrep[j].v[i]: j's answer to i's heartbeat */
bool wrep[N];  /* the witness's grant to i ... */
byte wrepe[N]; /* ... and the epoch it grants */

/* the witness */
bool wup;
byte holder; /* durable, NONE: free */
byte wepoch; /* durable */
byte wexp;   /* ticks left of the lease; 0: expired */
bool wconn[N]; /* the witness's side of each node's connection */
bool nconn[N]; /* the node's side */

byte maxw;    /* the newest epoch written so far */
byte crashes; /* crashes so far */

inline allowed_count(c) {
    c = 0;
    for (k : 0 .. N - 1) {
        if
        :: up[k] && mounted[k] -> c++
        :: else -> skip
        fi
    }
    k = 0
}

/* votes: how many voters other than i hold an unexpired confirmation */
inline votes(i, c) {
    c = 0;
    for (k : 0 .. N) {
        if
        :: k != i && cf[i].v[k] > 0 -> c++
        :: else -> skip
        fi
    }
    k = 0
}

/* the passive's rule (b): silent for F + I/2, or EOF and refused, from every other node */
inline takeover_ok(i, ok) {
    ok = 1;
#ifndef BROKEN_NO_SILENCE
    for (k : 0 .. N - 1) {
        if
        :: k != i && silent[i].v[k] < SILENT && !eofref[i].v[k] -> ok = 0
        :: else -> skip
        fi
    }
    k = 0
#endif
}

/* self-fence: a mounted node without a majority confirmation (s + F passed, or the witness's
   vote lost with its connection) stops writing at once */
inline fence(i) {
    votes(i, n);
    if
    :: mounted[i] && n < K -> mounted[i] = 0
    :: else -> skip
    fi;
    n = 0
}

inline tick() {
    for (i : 0 .. N - 1) {
        if
        :: up[i] ->
            for (j : 0 .. N) {
                if
                :: cf[i].v[j] > 0 -> cf[i].v[j]--
                :: else -> skip
                fi;
                if
                :: j < N && j != i && silent[i].v[j] < SILENT -> silent[i].v[j]++
                :: else -> skip
                fi
            }
            fence(i)
        :: else -> skip
        fi;
        for (j : 0 .. N - 1) {
            hbrep[i].v[j] = 0
        }
        wrep[i] = 0;
        wrepe[i] = 0
    }
    if
    :: wup && wexp > 0 -> wexp--
    :: else -> skip
    fi
}

/* the witness handles i's ACQUIRE(cms, i, T, min_epoch = myepoch[i]) */
inline witness_acquire(i) {
    if
    :: holder == i || holder == NONE || wexp == 0 ->
        if
        :: holder == i -> wexp = T /* renewal: same epoch */
        :: else ->
            n = wepoch + 1;
            if
            :: n < myepoch[i] -> n = myepoch[i]
            :: else -> skip
            fi;
            if
            :: n <= MAXE -> holder = i; wepoch = n; wexp = T
            :: else -> skip
            fi
        fi;
        if
        :: holder == i -> wrep[i] = 1; wrepe[i] = wepoch
        :: else -> skip
        fi
    :: else -> skip /* refused: the node hears no grant */
    fi;
    n = 0
}

/* node i receives the witness's grant */
inline node_granted(i) {
    cf[i].v[W] = F;
    if
    :: mounted[i] -> myepoch[i] = wrepe[i] /* a lease freed and granted again: a new epoch */
    :: else ->
        takeover_ok(i, ok);
        if
        :: ok ->
            allowed_count(n);
            assert(n == 0); /* (1): see the end of the file */
            mounted[i] = 1;
            myepoch[i] = wrepe[i]
        :: else -> skip
        fi
    fi;
    wrep[i] = 0;
    wrepe[i] = 0;
    ok = 0;
    n = 0
}

inline node_crash(i) {
    up[i] = 0;
    mounted[i] = 0;
    nconn[i] = 0;
    wrep[i] = 0;
    wrepe[i] = 0;
    for (j : 0 .. N) {
        cf[i].v[j] = 0;
        if
        :: j < N ->
            silent[i].v[j] = 0;
            eofref[i].v[j] = 0;
            hbrep[i].v[j] = 0;
            hbrep[j].v[i] = 0
        :: else -> skip
        fi
    }
}

inline node_restart(i) {
    up[i] = 1;
    for (j : 0 .. N - 1) {
#ifdef BROKEN_RESTART
        if
        :: j != i -> silent[i].v[j] = SILENT
        :: else -> skip
        fi
#else
        silent[i].v[j] = 0 /* silence counts from the start: it heard nobody before */
#endif
    }
}

/*
 * The steps, one atomic step each, written out per node and per pair of nodes (the guard first,
 * so a step that cannot happen is not a step at all: spin then has nothing to stutter on).
 */

/* heartbeats: send; deliver the request (j hears i); deliver the reply (i hears j and counts
   j's confirmation of the moment it sent the request) */
#define HB(i, j) \
    :: atomic { up[i] && up[j] && !hbrep[j].v[i] -> \
        silent[j].v[i] = 0; eofref[j].v[i] = 0; hbrep[j].v[i] = 1 } \
    :: atomic { hbrep[j].v[i] && up[i] -> \
        silent[i].v[j] = 0; eofref[i].v[j] = 0; cf[i].v[j] = F; hbrep[j].v[i] = 0 } \
    :: atomic { up[i] && !up[j] && !eofref[i].v[j] -> eofref[i].v[j] = 1 }

#ifdef BROKEN_EARLY_FREE
#define WITNESS_SEES_EOF(i) (wup && wconn[i])
#else
#define WITNESS_SEES_EOF(i) (wup && wconn[i] && !nconn[i])
#endif

/* per node: the witness (ACQUIRE out, handled, grant back; the connection ends on the node's
   side, the witness sees the EOF and frees the holder's lease, they reconnect), crash and
   restart, and writes (only while allowed, with the node's epoch) */
#define NODE(i) \
    :: atomic { up[i] && nconn[i] && wup && wconn[i] && !wrep[i] -> witness_acquire(i) } \
    :: atomic { up[i] && nconn[i] && wrep[i] -> node_granted(i) } \
    :: atomic { nconn[i] -> \
        nconn[i] = 0; cf[i].v[W] = 0; wrep[i] = 0; wrepe[i] = 0; fence(i) } \
    :: atomic { WITNESS_SEES_EOF(i) -> \
        wconn[i] = 0; wrep[i] = 0; wrepe[i] = 0; \
        if \
        :: holder == i -> holder = NONE \
        :: else -> skip \
        fi } \
    :: atomic { up[i] && wup && !nconn[i] && !wconn[i] -> nconn[i] = 1; wconn[i] = 1 } \
    :: atomic { up[i] && crashes < CRASHES -> crashes++; node_crash(i); j = 0 } \
    :: atomic { !up[i] -> node_restart(i); j = 0 } \
    :: atomic { up[i] && mounted[i] -> \
        allowed_count(n); \
        assert(n == 1);             /* (1) */ \
        assert(myepoch[i] >= maxw); /* (2) */ \
        maxw = myepoch[i]; n = 0 }

#if N == 2
#define PAIRS HB(0, 1) HB(1, 0)
#define NODES NODE(0) NODE(1)
#elif N == 3
#define PAIRS HB(0, 1) HB(1, 0) HB(0, 2) HB(2, 0) HB(1, 2) HB(2, 1)
#define NODES NODE(0) NODE(1) NODE(2)
#else
#error "N is 2 or 3"
#endif


active proctype world() {
    byte i, j, k, n;
    bool ok;

    atomic {
        for (i : 0 .. N - 1) {
            up[i] = 1;
            nconn[i] = 1;
            wconn[i] = 1
        }
        wup = 1;
        holder = NONE;
        i = 0;
        j = 0
    }

    do
    :: atomic { tick(); i = 0; j = 0; n = 0 }
    PAIRS
    NODES

    /* the witness crashes (its connections die with it; the nodes notice when they notice) and
       restarts with its durable lease, renewed for a full T */
    :: atomic {
        wup && crashes < CRASHES ->
        crashes++;
        wup = 0;
        for (i : 0 .. N - 1) {
            wconn[i] = 0;
            wrep[i] = 0;
            wrepe[i] = 0
        }
        i = 0
    }
    :: atomic {
        !wup ->
        wup = 1;
        if
        :: holder != NONE -> wexp = T
        :: else -> skip
        fi
    }
    od
}

/*
 * Why the assertion at mount time is the whole of (1): a node is allowed from the moment it
 * mounts until it fences, crashes or dismounts, one interval each time. If two intervals ever
 * overlap, the later of the two starts while the other is open, and that start is a mount where
 * allowed_count() sees the other one.
 */

#ifndef TANDEM_CLUSTER_CLUSTER_HB_H
#define TANDEM_CLUSTER_CLUSTER_HB_H

/*
 * Heartbeats between cluster members (docs/cluster.md, "Votes and quorum" and "Timing").
 *
 * Runs in the core of a node (a server with [cluster]) and of a witness, on the core's loop,
 * never blocking it. Every member answers heartbeats on [listen cluster]. A node also connects
 * to every other [member] on every network it shares with it (TLS; each end authenticated as a
 * member of the directory's `servers` group, as replication does), sends a HEARTBEAT every
 * heartbeat_interval and tracks the replies. A witness only answers: its vote counts on a node
 * through its replies.
 *
 * What it knows is read through a snapshot (a plain value); a callback says when any of it
 * changed. The cluster agent (src/tandemd/core_cluster.*) sets the summary sent with each
 * heartbeat and reply (its CMS roles and log positions) and reads the others' from the
 * snapshot.
 *
 * Time is tdm_clock_ms() (lib/clock.h: CLOCK_BOOTTIME, so a suspend counts) in milliseconds
 * (cluster_hb_now_ms) everywhere in this API.
 */

#include "lib/config.h"
#include "proto/cluster/cluster_wire.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct cluster_hb;

/* Members other than this one; networks per member: one [member] key per network. */
#define CLUSTER_HB_MAX_MEMBERS 8
#define CLUSTER_HB_MAX_NETWORKS TDM_CONFIG_MAX_NETWORKS

/* One member on one network, as this member sees it. */
struct cluster_hb_net {
    char network[TDM_CONFIG_NAME_MAX + 1];
    bool up;                /* an answer on this network within interval x misses */
    bool connected;         /* a session is established (HELLO answered) now */
    bool refused;           /* the last connection attempt was refused (ECONNREFUSED) */
    uint64_t last_heard_ms; /* monotonic time of the last answer here; 0 = never */
    uint32_t rtt_ms;        /* round trip of the last answered heartbeat here */
};

struct cluster_hb_member {
    char name[TDM_CONFIG_NAME_MAX + 1];
    bool witness; /* the member [cluster] witness names */
    /* Non-empty while its heartbeat sessions are refused, either way, because its timers
     * (heartbeat_interval, heartbeat_misses, lease_ttl) are not this node's: what they are on
     * each side. Such a member is never heard, seen or a confirmation (docs/cluster.md). */
    char timers_differ[CLUSTER_WIRE_TEXT_MAX + 1];
    bool seen;    /* up on at least one network */
    /* On every network its last session ended with EOF (a FIN from its kernel) or ERROR
     * shutdown, never a reset or a timeout, and the newest connection attempt was refused:
     * its core is not running (docs/cluster.md, "Timing" (b)). May be true while it is still
     * seen. */
    bool gone;
    uint64_t last_heard_ms; /* newest of the networks' last_heard_ms; 0 = never */
    /* Newest word from it: last_heard_ms, or the arrival of a HEARTBEAT it sent us (answered
     * on our listener), whichever is newer; 0 = never. What the takeover rule (docs/cluster.md
     * "Timing" (b)) counts as hearing it: its own link to us may be up while ours to it is
     * down. Seen, votes and quorum stay on answers to our heartbeats (last_heard_ms). */
    uint64_t heard_ms;
    /* The send time (our clock) of the newest heartbeat of ours it answered, on any network;
     * 0 = none. The agent replaces the witness's with its lease renewals where newer. */
    uint64_t answered_sent_ms;
    unsigned n_nets;
    struct cluster_hb_net nets[CLUSTER_HB_MAX_NETWORKS];
    bool has_summary;               /* summary holds what it last sent (reply or heartbeat) */
    struct cluster_summary summary; /* its last summary to us */
};

struct cluster_hb_snapshot {
    char cluster[TDM_CONFIG_NAME_MAX + 1]; /* "" on a witness (it has no [cluster]) */
    char self[TDM_CONFIG_NAME_MAX + 1];
    uint64_t now_ms; /* when the snapshot was taken */
    uint64_t interval_ms;
    uint32_t misses;
    uint64_t lease_ttl_ms;
    unsigned n_members; /* the others; votes = n_members + 1 */
    struct cluster_hb_member members[CLUSTER_HB_MAX_MEMBERS];
    unsigned votes;      /* every member, this one included */
    unsigned votes_seen; /* this one plus every member seen */
    unsigned quorum;     /* a majority of votes: votes / 2 + 1 */
    bool has_quorum;     /* votes_seen >= quorum */
    /* The newest confirmation through heartbeat replies alone (cluster_hb_confirmation). */
    bool confirmed;
    uint64_t confirmation_ms;
};

/* The snapshot is large (the summaries): callers keep it on the heap or in their state. */

/* Called on the loop whenever anything in the snapshot other than now_ms, last_heard_ms and heard_ms
 * changed (a member or network up or down, quorum, a new summary, a newer confirmation).
 * It may call cluster_hb_snapshot and cluster_hb_set_summary, not cluster_hb_free. */
typedef void cluster_hb_change_fn(void *arg);

/* How an incoming HELLO's server/key is checked: done(done_ctx, 0 | -EACCES | other, error)
 * exactly once, from inside the call or later on the loop (as the replication source's verify,
 * src/repl/repl_source.h). */
typedef void cluster_hb_verify_done_cb(void *done_ctx, int status, const char *error);
typedef void cluster_hb_verify_fn(void *ctx, const char *server, const char *key, size_t key_len,
                                  cluster_hb_verify_done_cb *done, void *done_ctx);

struct cluster_hb_params {
    struct event_base *base;
    const struct tdm_config *cfg; /* [cluster], [member]s, [network]s; borrowed until free */
    int listen_fd;                /* [listen cluster]'s socket (taken over), or -1 */
    /* TLS: a server context requiring client certificates, and a client context checking the
     * peer against [tls] ca (both borrowed, outliving the module). NULL: plain TCP, for tests. */
    SSL_CTX *server_tls;
    SSL_CTX *client_tls;
    /* This server's key ([directory] key_file), sent in HELLO; copied. */
    const char *key;
    cluster_hb_verify_fn *verify; /* required when listen_fd >= 0 */
    void *verify_ctx;
    cluster_hb_change_fn *on_change; /* may be NULL */
    void *on_change_arg;
};

/* Starts listening (listen_fd) and, on a node, connecting to every member on every network.
 * 0 with *hb_r, or a negative error code with a log line. */
int cluster_hb_start(const struct cluster_hb_params *params, struct cluster_hb **hb_r);

/* Closes every connection (the peers see EOF: a stopping core looks like a stopped one) and
 * frees; *hb becomes NULL. NULL is fine. Checks still pending with verify answer later into
 * nothing (their sessions are gone), so the glue may stop its verifier before or after. */
void cluster_hb_free(struct cluster_hb **hb);

/* The heartbeat sessions server has open to our listener now (HELLO accepted; one still
 * being checked is not counted: its check decides). With drop_why non-NULL each gets ERROR
 * `auth` saying it and is closed: the core's check of live sessions found the server's key
 * refused (src/tandemd/core_server_auth.c). Returns how many there were. NULL hb: 0. */
size_t cluster_hb_listen_sessions(struct cluster_hb *hb, const char *server, const char *drop_why);

/* Fills *out with the current state (now_ms = cluster_hb_now_ms()). */
void cluster_hb_snapshot(const struct cluster_hb *hb, struct cluster_hb_snapshot *out);

/* The summary sent from now on with every HEARTBEAT and HEARTBEAT_REPLY (copied). 0 or
 * TDM_EINVAL with *error_r when it breaks a codec rule (cluster_msg_check). */
int cluster_hb_set_summary(struct cluster_hb *hb, const struct cluster_summary *summary,
                           const char **error_r);

/* tdm_clock_ms(): the clock of every cluster deadline (the glue and cluster_fsm's callers). */
uint64_t cluster_hb_now_ms(void);

/* ---- the pure part: unit-tested without sockets ---- */

/* A majority of votes (every member, the local one included). */
static inline unsigned
cluster_hb_quorum(unsigned votes)
{
    return votes / 2 + 1;
}

/*
 * The newest confirmation (docs/cluster.md, "Timing"): the largest s such that a majority of
 * votes, the local one included, each answered a message the local member sent at or after s.
 * answered[i] is, for each of the n other votes, the send time of the newest message of ours
 * it answered (0 = none yet). votes is the total, the local one included (n + 1 normally).
 * Returns true with *s_r, or false when fewer than a majority have ever answered.
 */
bool cluster_hb_confirmation(unsigned votes, const uint64_t *answered, unsigned n, uint64_t *s_r);

/* Whether a member last heard at last_heard_ms (0 = never) is seen at now_ms: heard within
 * interval x misses. */
bool cluster_hb_is_seen(uint64_t last_heard_ms, uint64_t now_ms, uint64_t interval_ms,
                        uint32_t misses);

#endif

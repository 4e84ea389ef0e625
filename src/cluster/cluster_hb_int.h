#ifndef TANDEM_CLUSTER_CLUSTER_HB_INT_H
#define TANDEM_CLUSTER_CLUSTER_HB_INT_H

/* What cluster_hb.c (state, timer, outgoing links) and cluster_hb_listen.c (answering) share. */

#include "cluster/cluster_hb.h"

#include <stdbool.h>
#include <stdint.h>

struct bufferevent;
struct conn_listener;
struct event;

/* Send times of a link's newest heartbeats, by seq: a reply's timing is taken from here, never
 * from the sent_ms it echoes (a peer's bug must not make an old answer look new). An answer
 * to an older heartbeat still counts as hearing the member, not as a confirmation. */
#define HB_SENT_RING 16

/* One network to one member: the outgoing heartbeat session (a node's only). */
struct hb_link {
    struct cluster_hb *hb;
    unsigned member, net;
    struct bufferevent *bev; /* NULL: no attempt in progress */
    bool tcp_up;             /* connected (TLS handshake done) */
    bool hello_done;         /* HELLO_REPLY ok: heartbeats flow */
    uint32_t hello_id;
    uint64_t seq;           /* of the last HEARTBEAT sent */
    /* Reconnection back-off: attempts that fail in a row wait 0.5 s, doubling to 10 s, as the
     * copy agent's; a session that came up resets it, and one that ended is tried again at the
     * next tick (its refusal is what says the member's core is gone). */
    uint32_t backoff_ms;
    uint64_t retry_at_ms;
    uint64_t sent_seq[HB_SENT_RING], sent_ms[HB_SENT_RING]; /* at seq % HB_SENT_RING */
    uint64_t last_heard_ms; /* 0 = never */
    uint32_t rtt_ms;
    bool refused;         /* the last attempt was refused (ECONNREFUSED) */
    bool ended_eof;       /* the last session ended with EOF (a FIN), not a reset or timeout */
    bool up;              /* as last reported (events, on_change) */
    char last_error[160]; /* why the last session or attempt ended, for the log */
};

struct hb_member {
    const struct tdm_config_member *conf;
    bool witness;
    struct hb_link links[CLUSTER_HB_MAX_NETWORKS];
    unsigned n_links;
    uint64_t answered_sent_ms;
    /* Arrival of its newest HEARTBEAT answered on our listener (0 = never): hearing it, even
     * where our own link to it is down (docs/cluster.md "Timing" (b)). */
    uint64_t heard_in_ms;
    bool has_summary;
    struct cluster_summary summary;
    bool seen, gone; /* as last reported */
    /* Why its heartbeat sessions are refused, either way, because its timers are not ours
     * (CLUSTER_CODE_TIMERS); "" once a session with it is accepted, either way. */
    char timers_differ[CLUSTER_WIRE_TEXT_MAX + 1];
};

struct cluster_hb {
    struct event_base *base;
    const struct tdm_config *cfg;
    SSL_CTX *server_tls, *client_tls;
    char *key;
    cluster_hb_verify_fn *verify;
    void *verify_ctx;
    cluster_hb_change_fn *on_change;
    void *on_change_arg;
    uint64_t interval_ms;
    uint32_t misses;
    struct hb_member members[CLUSTER_HB_MAX_MEMBERS];
    unsigned n_members;
    struct cluster_summary summary; /* ours */
    struct event *tick;
    struct conn_listener *listener;
    struct hb_in *ins; /* incoming sessions (cluster_hb_listen.c) */
    uint32_t next_request_id;
    /* As last reported. */
    bool has_quorum, confirmed;
    uint64_t confirmation_ms;
    unsigned votes_seen;
    bool freeing;
};

/* The member of that name, or NULL. */
struct hb_member *cluster_hb__member(struct cluster_hb *hb, const char *name);
/* A member sent its summary (in a reply, or in a heartbeat it sent us). */
void cluster_hb__got_summary(struct cluster_hb *hb, struct hb_member *m,
                             const struct cluster_summary *s);
/* Sets (why) or clears (NULL) m's timers_differ; on_change when it changed. */
void cluster_hb__timers_differ(struct cluster_hb *hb, struct hb_member *m, const char *why);
/* Something changed: recompute, emit events, call on_change when the snapshot changed. */
void cluster_hb__evaluate(struct cluster_hb *hb, bool changed);

/* cluster_hb_listen.c */
int cluster_hb__listen_start(struct cluster_hb *hb, int fd);
/* Whether member has a heartbeat session to our listener open now (HELLO accepted). */
bool cluster_hb__listen_has_session(const struct cluster_hb *hb, const char *member);
void cluster_hb__listen_free(struct cluster_hb *hb);

#endif

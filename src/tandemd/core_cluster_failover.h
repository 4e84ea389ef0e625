#ifndef TANDEM_TANDEMD_CORE_CLUSTER_FAILOVER_H
#define TANDEM_TANDEMD_CORE_CLUSTER_FAILOVER_H

/*
 * The last failover of each CMS on this node, kept across restarts, and the resubmission from
 * the transports' dumpsters that follows a failover (docs/cluster.md, "Resubmission after a
 * failover"; docs/decisions.md).
 *
 * The record is written to <datadir>/cluster/last-failover.<cms>.json (a file written aside,
 * synced, renamed, and the directory synced, on a helper thread: lib/offload.h) at the
 * activation and at every change of the resubmission's status, and read back at start.
 *
 * The resubmission asks every transport of [cluster] transports, for every database of the
 * CMS: POST /v1/dumpster/resubmit?database=<db>&since=<unix time>|all on its admin API (HTTPS,
 * authenticated as server/<this server> with its key). Each request is retried until that
 * transport answered 200 with nothing deferred or refused (unreachable, an error, or some
 * recipients deferred — a 4xx, the mailbox server unreachable: for ever, the delay doubling
 * from 1 s to 60 s; some refused — a 5xx, no route: at most CLUSTER_RESUBMIT_REFUSED_TRIES
 * times, since that refusal is for good). Nothing blocks the loop. A record read at start
 * whose resubmission had not finished resumes it (duplicates are dropped by the store).
 *
 * Loop thread only.
 */

#include "lib/config.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct json_t;

#define CLUSTER_RESUBMIT_REFUSED_TRIES 5
/* Subtracted from the creation time of the generation holding the new active's last record:
 * the transports' clocks against the old active's (docs/decisions.md). */
#define CLUSTER_RESUBMIT_MARGIN_S 300

enum cluster_failover_cause {
    CLUSTER_CAUSE_NODE_LOST,     /* the old active's core is gone, or it went silent */
    CLUSTER_CAUSE_LEASE_EXPIRED, /* it was heard, but lost its lease */
    CLUSTER_CAUSE_FORCED,        /* an operator forced the activation */
    CLUSTER_CAUSE_SWITCHOVER,    /* cms move: lossless, nothing to resubmit */
};

struct cluster_failover_info {
    const char *cms;
    int64_t at; /* Unix time of the mount */
    const char *from, *to;
    uint64_t epoch;
    enum cluster_failover_cause cause;
    const char *why; /* in words, for people */
    uint64_t took_ms;
    uint64_t lost_records, lost_generations; /* against the members' last reports */
    /* Resubmit entries delivered at or after this Unix time (INT64_MIN: all). */
    int64_t since;
    const char *const *databases;
    unsigned n_databases;
};

/* Reads the records kept in <datadir>/cluster/ for cms_names and resumes unfinished
 * resubmissions. Never fails: what cannot be set up is logged, and status says so. */
void cluster_failover_start(struct event_base *base, const struct tdm_config *cfg);
void cluster_failover_stop(void);

/* Records a failover (or switchover) of info->cms done here, replacing the last one (and
 * ending its resubmission's requests), and keeps it. Its resubmission is "not needed" for a
 * switchover, "not asked" otherwise until cluster_failover_resubmit(). Copies everything. */
void cluster_failover_record(const struct cluster_failover_info *info);

/* Asks every transport to resubmit every database of the last record of cms, unless it was
 * asked already or is a switchover. */
void cluster_failover_resubmit(const char *cms);

/* The last failover of cms for GET /v1/cluster (docs/formats/admin-api.md), a new reference,
 * or JSON null when none is known. */
struct json_t *cluster_failover_json(const char *cms);

/* The cause's name in status ("node lost", "lease expired", "forced", "switchover"). */
const char *cluster_failover_cause_name(enum cluster_failover_cause c);

#endif

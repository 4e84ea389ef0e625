#ifndef TANDEM_TANDEMD_CORE_CLUSTER_END_H
#define TANDEM_TANDEMD_CORE_CLUSTER_END_H

/*
 * The recorded log end of each CMS (docs/cluster.md "The recorded log end"): the active keeps
 * its durable log end in the value of the lease's key at the witness (cluster/cluster_end.h),
 * written with compare-and-set when it activates and every heartbeat interval after while it
 * moves; every node hears it through its watch of the key and hands it to the decisions
 * (in->end), which measure a takeover against it. The active acknowledges no write of an
 * epoch before the witness has a record of that epoch, so a node that starts while the newer
 * active is down always learns that there is a newer history. Loop thread only.
 */

#include "cluster/cluster_fsm.h"

#include <stdbool.h>
#include <stdint.h>

struct coord_client;
struct coord_value_reply;
struct cluster_agent_db;

/* changed: called when a write of ours is answered (the agent steps again). */
void cluster_end_start(void (*changed)(void));
void cluster_end_stop(void);

/* What the witness says of cms's key: a watch's answer or notification (status 0). */
void cluster_end_heard(const char *cms, const struct coord_value_reply *r);
/* The session ended: no write of ours is pending any more; what was heard stays. */
void cluster_end_lost(void);

/* in->end from what was last heard of cms's key (in->dbs[].name give the order). */
void cluster_end_input(const char *cms, struct cluster_fsm_input *in);

/* After a step in which this node (self) is active in epoch and holds the lease: records its
 * durable end (looked at now, dbs) unless the witness has it already; at once when the
 * witness has no record of this epoch from us, else at most every interval_ms. Never over a
 * record of a newer epoch. */
void cluster_end_record(struct coord_client *c, const char *key, const char *cms, const char *self,
                        uint64_t epoch, struct cluster_agent_db *dbs, unsigned n_dbs, uint64_t now,
                        uint64_t interval_ms);

/* Whether the witness holds a record of ours in epoch (or later): writes of epoch may be
 * acknowledged. */
bool cluster_end_recorded(const char *cms, const char *self, uint64_t epoch);

#endif

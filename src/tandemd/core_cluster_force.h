#ifndef TANDEM_TANDEMD_CORE_CLUSTER_FORCE_H
#define TANDEM_TANDEMD_CORE_CLUSTER_FORCE_H

/* The operator's `tandemctl copy activate --force` of a CMS's database on a cluster node
 * (docs/cluster.md "Failover"): it goes through the cluster agent, never around the lease.
 * The decisions take it as force_activate (a takeover may go beyond the mount dial, every
 * other rule holds); this file keeps the request, answers the worker that asked once the CMS
 * is mounted here or the takeover gave up, and says so (event 4020 for a refusal; the
 * activation itself says 4021 with what was lost). Loop thread only. */

#include "cluster/cluster_fsm.h"

#include <stdbool.h>
#include <stdint.h>

struct core_conn;

/* Answered within this long at the latest (tandemctl waits 30 s). */
#define CLUSTER_FORCE_TIMEOUT_MS 20000u

/* Records the request of database db of cms from connection c (request_id): the answer is
 * COPY_CONTROL_REPLY, sent later. TDM_ECONFLICT when one runs for cms already. */
int cluster_force_start(const char *cms, const char *db, struct core_conn *c,
                        uint32_t request_id, uint64_t now_ms);
/* Whether a request for cms runs (the FSM's force_activate). */
bool cluster_force_asked(const char *cms);
/* After each step of cms (state: the FSM's kept state after the actions): answers 0 once
 * it is Active here, the refusal once the takeover gave up (out->reason) or timed out. */
void cluster_force_stepped(const char *cms, const struct cluster_fsm_output *out,
                           enum cluster_fsm_state state, uint64_t now_ms);

#endif

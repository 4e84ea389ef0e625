#ifndef TANDEM_TANDEMD_CORE_CLUSTER_MOVE_H
#define TANDEM_TANDEMD_CORE_CLUSTER_MOVE_H

/* Switchover requests of the cluster agent (docs/cluster.md "Switchover"): the operator's
 * `cms move`, its checks, its time limit, its events (5058-5060) and its record for status.
 * The decisions themselves are the FSM's (role MOVING, TRANSFER); this file only holds what
 * was asked and says how it ended. Loop thread only. */

#include "cluster/cluster_fsm.h"

#include <stdbool.h>
#include <stdint.h>

struct json_t;

#define CLUSTER_MOVE_COMMENT_MAX 255
/* A move that has not finished after this long fails and writes resume (docs/decisions.md). */
#define CLUSTER_MOVE_TIMEOUT_MS 30000u

/* Asks for a move of in->cms to node to, checked against what this node sees now (in: the
 * FSM's input; state: its state). 0, or TDM_ECONFLICT (a move is running), TDM_ENOTFOUND (to
 * is no node of the cluster), TDM_EINVAL (not active here, to is this node, or to is not a
 * passive with every copy Healthy) with *why_r (static, valid until the next call). */
int cluster_move_start(const struct cluster_fsm_input *in, enum cluster_fsm_state state,
                       const char *to, const char *comment, uint64_t now_ms,
                       const char **why_r);
/* The target of cms's running move, for the FSM's input; NULL when none. */
const char *cluster_move_target(const char *cms);
/* After each step of cms: says when the move completed (out->moved: the witness gave the
 * lease to the target, epoch the new one), failed (time limit) or the FSM gave it up. */
void cluster_move_stepped(const char *cms, enum cluster_fsm_state before,
                          const struct cluster_fsm_output *out, uint64_t epoch, uint64_t now_ms);
/* While cms is MOVING (writes paused), for each of its databases: once every commit of db is
 * durable, asks its store to close the generation that holds its last records
 * (store_roll_request()), so that a copy in `file` mode, which receives closed generations
 * only, receives them too and the target can catch up. Nothing for a database not mounted
 * here, with commits in flight, or whose current generation holds no record. */
void cluster_move_close_generation(const char *cms, const char *db);
/* The witness refused the TRANSFER: the move failed (why). */
void cluster_move_failed(const char *cms, const char *why, uint64_t now_ms);
/* cms's running or last move for GET /v1/cluster (new reference), or JSON null. */
struct json_t *cluster_move_json(const char *cms);

#endif

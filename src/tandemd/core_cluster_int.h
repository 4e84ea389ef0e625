#ifndef TANDEM_TANDEMD_CORE_CLUSTER_INT_H
#define TANDEM_TANDEMD_CORE_CLUSTER_INT_H

/* Between the cluster agent's files (core_cluster.c, core_cluster_db.c). Loop thread only. */

#include "cluster/cluster_fsm.h"
#include "lib/config.h"
#include "tandemd/tandemd.h"

#include <stdbool.h>
#include <stdint.h>

struct repl_copy_conf;

/* A database of a CMS as the agent follows it between steps. */
struct cluster_agent_db {
    char name[CLUSTER_FSM_NAME_MAX + 1];
    /* Its copy, at the last look, was Healthy or had lost its source while Healthy (the copy
     * agent keeps that: repl_copy_status.lost_source_while_healthy): eligible for failover. */
    bool was_healthy;
    /* The durable log end of the dismounted database, read once from its log. */
    bool closed_pos_read;
    struct cluster_fsm_logpos closed_pos;
    uint16_t wire_copy_state; /* for the summary (docs/formats/cluster.md) */
};

/* Whether this server is a cluster node with a [cms] (its [cms] sections, copied at start). */
bool cluster_db_is_node(void);
unsigned cluster_db_n_cms(void);
const struct tdm_config_cms *cluster_db_cms(unsigned i);
/* The [cms] that lists database db, or NULL. */
const struct tdm_config_cms *cluster_db_cms_of(const char *db);
/* copy.conf for a database of cms of kind: a passive copy of the CMS address on this node's
 * [listen replication] port. 0, or TDM_EINVAL with *why_r. */
int cluster_db_copy_conf(const struct tdm_config_cms *cms, const char *kind,
                         struct repl_copy_conf *conf, const char **why_r);
/* How adb stands now, for the decisions (also updates adb). */
void cluster_db_look(struct cluster_agent_db *adb, struct cluster_fsm_db *out);
/* Makes the dismounted active database adb a copy of cms's address: copy.conf (crash-safe)
 * first, then its agent. 0 (also when it is a copy already), or an error with *why_r. */
int cluster_db_demote(const struct tdm_config_cms *cms, struct cluster_agent_db *adb,
                      const char **why_r);

#endif

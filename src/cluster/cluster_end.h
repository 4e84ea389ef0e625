#ifndef TANDEM_CLUSTER_CLUSTER_END_H
#define TANDEM_CLUSTER_CLUSTER_END_H

/*
 * The recorded log end of a CMS (docs/cluster.md "The recorded log end"): the value of the
 * lease's key cms/<name> at the witness, written by the active with compare-and-set. Text,
 * one item a line, every line ending in '\n' (docs/formats/coord.md, "Values the
 * cluster keeps"):
 *
 *   tandem-cms-end 1
 *   holder mb2
 *   epoch 3
 *   db db1 3 105 5 3000          name, epoch, LSN, generation, offset of its durable end
 *
 * Names are 1..63 bytes of [A-Za-z0-9._-]; numbers are decimal without sign or leading
 * zeros; at most CLUSTER_FSM_MAX_DBS db lines, names distinct. Pure: no I/O.
 */

#include "cluster/cluster_fsm.h"

#include <stddef.h>
#include <stdint.h>

struct cluster_end_record {
    char holder[CLUSTER_FSM_NAME_MAX + 1];
    uint64_t epoch; /* the lease epoch the holder wrote it in */
    unsigned n_dbs;
    struct {
        char name[CLUSTER_FSM_NAME_MAX + 1];
        struct cluster_fsm_logpos pos;
    } dbs[CLUSTER_FSM_MAX_DBS];
};

/* Room enough for any record. */
#define CLUSTER_END_MAX (64 + 2 * CLUSTER_FSM_NAME_MAX + CLUSTER_FSM_MAX_DBS * (80 + 4 * 21))

/* Writes r into buf (size >= CLUSTER_END_MAX). Returns the length, or TDM_EINVAL for a
 * record that breaks the rules above (a bad name, too many databases). */
int cluster_end_encode(const struct cluster_end_record *r, char *buf, size_t size);

/* Decodes len bytes. 0 with *r filled, or TDM_EINVAL with *why_r. */
int cluster_end_decode(const void *data, size_t len, struct cluster_end_record *r,
                       const char **why_r);

#endif

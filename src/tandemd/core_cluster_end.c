/*
 * The recorded log end of each CMS at the witness (core_cluster_end.h).
 */
#include "tandemd/core_cluster_end.h"
#include "tandemd/core_cluster_int.h"

#include "cluster/cluster_end.h"
#include "coord/coord_client.h"
#include "lib/err.h"
#include "lib/log.h"

#include <stdio.h>
#include <string.h>

struct end_state {
    char cms[CLUSTER_FSM_NAME_MAX + 1];
    bool known;       /* the witness told us the key's state in this process's life */
    uint64_t version; /* of its value (0: never set) */
    bool has_rec;     /* ...and the value is a record (rec) */
    struct cluster_end_record rec;
    bool pending; /* a CAS of ours waits for its answer */
    uint64_t sent_ms;
    struct cluster_end_record sent; /* what it carries */
    uint64_t acked_epoch;           /* the newest epoch of a record of ours the witness took */
    bool bad_said;                  /* a value that is not a record: said once */
};

static struct end_state states[TDM_CONFIG_MAX_CMS];
static unsigned n_states;
static void (*on_changed)(void);

static struct end_state *
state_of(const char *cms)
{
    for (unsigned i = 0; i < n_states; i++)
        if (strcmp(states[i].cms, cms) == 0)
            return &states[i];
    if (n_states == TDM_CONFIG_MAX_CMS)
        return NULL;
    struct end_state *st = &states[n_states++];
    memset(st, 0, sizeof(*st));
    snprintf(st->cms, sizeof(st->cms), "%s", cms);
    return st;
}

void
cluster_end_start(void (*changed)(void))
{
    on_changed = changed;
    n_states = 0;
}

void
cluster_end_stop(void)
{
    on_changed = NULL;
    n_states = 0;
}

static void
heard(struct end_state *st, const struct coord_value_reply *r)
{
    /* Answers and notifications of one session come in order, but a CAS answer and the
     * notification of the same change both arrive: never go back to an older version. */
    if (st->known && r->version < st->version)
        return;
    st->known = true;
    st->version = r->version;
    st->has_rec = false;
    if (r->version == 0 || !r->value)
        return;
    const char *why = NULL;
    if (cluster_end_decode(r->value, r->value_len, &st->rec, &why) < 0) {
        if (!st->bad_said)
            log_warn("CMS %s: the value of its lease key at the witness is not a recorded log "
                     "end (%s): overwritten by the next active",
                     st->cms, why ? why : "?");
        st->bad_said = true;
        return;
    }
    st->has_rec = true;
}

void
cluster_end_heard(const char *cms, const struct coord_value_reply *r)
{
    struct end_state *st = state_of(cms);
    if (st && r->status == 0)
        heard(st, r);
}

void
cluster_end_lost(void)
{
    for (unsigned i = 0; i < n_states; i++) {
        states[i].pending = false;
        /* The next session's watch tells the state again. */
        states[i].known = false;
    }
}

void
cluster_end_input(const char *cms, struct cluster_fsm_input *in)
{
    memset(&in->end, 0, sizeof(in->end));
    struct end_state *st = state_of(cms);
    if (!st || !st->has_rec)
        return;
    in->end.known = true;
    snprintf(in->end.holder, sizeof(in->end.holder), "%s", st->rec.holder);
    in->end.epoch = st->rec.epoch;
    for (unsigned d = 0; d < in->n_dbs; d++)
        for (unsigned k = 0; k < st->rec.n_dbs; k++)
            if (strcmp(st->rec.dbs[k].name, in->dbs[d].name) == 0)
                in->end.dbs[d] = st->rec.dbs[k].pos;
}

static void
on_cas(void *ctx, const struct coord_value_reply *r)
{
    struct end_state *st = ctx;
    st->pending = false;
    if (r->status == 0) {
        st->known = true;
        st->version = r->version;
        st->rec = st->sent;
        st->has_rec = true;
        if (st->sent.epoch > st->acked_epoch)
            st->acked_epoch = st->sent.epoch;
    } else if (r->status == TDM_ECONFLICT) {
        heard(st, r); /* someone wrote in between: the next step looks at it */
    } else if (r->status != TDM_ECLOSED) {
        log_warn("CMS %s: the witness refused the recorded log end: %s", st->cms,
                 r->error ? r->error : tdm_strerror(r->status));
    }
    if (on_changed)
        on_changed();
}

bool
cluster_end_recorded(const char *cms, const char *self, uint64_t epoch)
{
    struct end_state *st = state_of(cms);
    if (!st || epoch == 0)
        return false;
    if (st->acked_epoch >= epoch)
        return true;
    return st->has_rec && st->rec.epoch >= epoch && strcmp(st->rec.holder, self) == 0;
}

void
cluster_end_record(struct coord_client *c, const char *key, const char *cms, const char *self,
                   uint64_t epoch, struct cluster_agent_db *dbs, unsigned n_dbs, uint64_t now,
                   uint64_t interval_ms)
{
    struct end_state *st = state_of(cms);
    if (!st || !c || !coord_client_is_up(c) || st->pending || !st->known)
        return;
    if (st->has_rec && st->rec.epoch > epoch)
        return; /* a newer active recorded: this node is about to learn it lost the CMS */
    struct cluster_end_record rec;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.holder, sizeof(rec.holder), "%s", self);
    rec.epoch = epoch;
    for (unsigned d = 0; d < n_dbs && d < CLUSTER_FSM_MAX_DBS; d++) {
        struct cluster_agent_db copy = dbs[d]; /* the step's bookkeeping stays */
        struct cluster_fsm_db look;
        cluster_db_look(&copy, &look);
        snprintf(rec.dbs[d].name, sizeof(rec.dbs[d].name), "%s", look.name);
        rec.dbs[d].pos = look.pos;
        rec.n_dbs++;
    }
    bool first = !cluster_end_recorded(cms, self, epoch);
    bool same = st->has_rec && memcmp(&rec, &st->rec, sizeof(rec)) == 0;
    if (!first && (same || now < st->sent_ms + interval_ms))
        return;
    char buf[CLUSTER_END_MAX];
    int n = cluster_end_encode(&rec, buf, sizeof(buf));
    if (n < 0) {
        log_error("CMS %s: its log end cannot be recorded (a name outside [A-Za-z0-9._-])", cms);
        return;
    }
    if (coord_client_cas(c, key, st->version, buf, (uint32_t)n, on_cas, st) < 0)
        return; /* no session: the next step after on_up tries again */
    st->pending = true;
    st->sent_ms = now;
    st->sent = rec;
}

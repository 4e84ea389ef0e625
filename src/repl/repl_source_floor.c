/*
 * The truncation floor of each database the source serves: the lowest generation that any
 * copy still needs, so the active never deletes a generation a copy would have to reseed
 * without (DESIGN.md "Truncation").
 *
 * A copy needs, from its latest ACK: a passive copy the generation holding its replayed LSN,
 * a standby copy the one after its highest inspected generation, and neither more than the
 * generation its durable log ends in (what it would ask for after a reconnect) nor the one
 * being sent to it. Before its first ACK, the generation its HELLO started from.
 *
 * The floor must not make the active's disk grow without bound (docs/decisions.md): a copy
 * that goes away is held for hold_ms at most, and no copy, connected or not, is held more
 * than hold_generations behind the current generation. Past either, the copy is released
 * with event 4053 (a connected one is also closed with ERROR `limit`), and when it returns it
 * finds its position gone and reseeds. After a database is added, its lowest generation is
 * held for startup_hold_ms, so copies that were away while the active restarted can come back
 * before truncation runs.
 */
#include "repl/repl_source_int.h"

#include "lib/event.h"
#include "lib/log.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

uint64_t
repl__floor_need(const struct repl_src_peer *p)
{
    if (p->seed) /* set by repl_source_seed.c: all it has, then the snapshot's first */
        return p->needed ? p->needed : 1;
    if (!p->acked)
        return p->hello.start_generation;
    const struct repl_ack *a = &p->last_ack;
    uint64_t durable = a->durable_generation ? a->durable_generation : p->hello.start_generation;
    uint64_t role_need = p->role == REPL_ROLE_STANDBY
                             ? a->inspected_generation + 1
                             : (a->replayed_generation ? a->replayed_generation : 1);
    uint64_t need = min64(durable, role_need);
    /* Never above what is being read for it: a copy claiming more than it was sent must not
     * let truncation recycle the file under a chunk in flight. */
    if (p->gen != 0)
        need = min64(need, p->gen);
    return need ? need : 1;
}

static void
held_free(struct repl_src_held *h)
{
    free(h->server);
    free(h);
}

void
repl__floor_forget(struct repl_src_db *db, const char *server)
{
    struct repl_src_held **pp = &db->held;
    while (*pp) {
        struct repl_src_held *h = *pp;
        if (strcmp(h->server, server) == 0) {
            *pp = h->next;
            held_free(h);
        } else {
            pp = &h->next;
        }
    }
}

void
repl__floor_depart(struct repl_src_db *db, const struct repl_src_peer *p)
{
    if (p->released || p->server == NULL)
        return;
    repl__floor_forget(db, p->server);
    struct repl_src_held *h = calloc(1, sizeof(*h));
    char *server = strdup(p->server);
    if (h == NULL || server == NULL)
        log_fatal("repl source: out of memory");
    h->server = server;
    h->role = p->role;
    h->needed = p->needed;
    h->departed_us = repl__mono_us();
    h->last_ack = p->last_ack;
    h->last_ack_us = p->last_ack_us;
    h->next = db->held;
    db->held = h;
}

void
repl__floor_free_held(struct repl_src_db *db)
{
    while (db->held) {
        struct repl_src_held *h = db->held;
        db->held = h->next;
        held_free(h);
    }
}

/* One pass; closing a released copy may call back into repl__floor_update, which then only
 * asks for another pass. */
static void
floor_pass(struct repl_src_db *db)
{
    struct repl_source *src = db->src;
    uint64_t now = repl__mono_us();
    struct store_status st;
    store_get_status(db->store, &st);
    uint64_t limit = src->opt.hold_generations;

    uint64_t floor = UINT64_MAX;
    if (db->startup_hold_until_us != 0) {
        if (now < db->startup_hold_until_us)
            floor = db->startup_floor;
        else
            db->startup_hold_until_us = 0;
    }

    struct repl_src_peer *next;
    for (struct repl_src_peer *p = src->peers; p; p = next) {
        next = p->next;
        if (p->db != db || (p->state != REPL_SRC_STREAMING && p->state != REPL_SRC_SEEDING) ||
            p->released)
            continue;
        /* Recomputed each pass: it follows the generation being sent as well as the ACKs. */
        p->needed = repl__floor_need(p);
        if (st.current_generation > p->needed && st.current_generation - p->needed > limit) {
            p->released = true;
            event_emit(TDM_EV_REPL_SOURCE_COPY_RELEASED, db->name,
                       "%s copy of database %s on server %s released: it needs generation "
                       "%llu, %llu behind the current one (limit %llu); it will have to reseed",
                       repl_role_name(p->role), db->name, p->server, (unsigned long long)p->needed,
                       (unsigned long long)(st.current_generation - p->needed),
                       (unsigned long long)limit);
            p->busy++;
            repl__peer_fail(p, REPL_CODE_RELEASED,
                            "this copy fell %llu generations behind, more than the %llu the "
                            "source holds logs for: reseed it",
                            (unsigned long long)(st.current_generation - p->needed),
                            (unsigned long long)limit);
            p->busy--;
            next = p->next;
            repl__peer_maybe_free(p);
            continue;
        }
        floor = min64(floor, p->needed);
    }

    struct repl_src_held **pp = &db->held;
    while (*pp) {
        struct repl_src_held *h = *pp;
        bool too_old = now - h->departed_us > src->opt.hold_ms * 1000u;
        bool too_far =
            st.current_generation > h->needed && st.current_generation - h->needed > limit;
        if (too_old || too_far) {
            event_emit(TDM_EV_REPL_SOURCE_COPY_RELEASED, db->name,
                       "%s copy of database %s on server %s released: %s; its generations "
                       "from %llu may now be truncated and it will have to reseed",
                       repl_role_name(h->role), db->name, h->server,
                       too_old ? "away longer than the hold time"
                               : "more generations behind than the hold limit",
                       (unsigned long long)h->needed);
            *pp = h->next;
            held_free(h);
            continue;
        }
        floor = min64(floor, h->needed);
        pp = &h->next;
    }

    if (floor != db->floor) {
        db->floor = floor;
        store_set_truncation_floor(db->store, floor);
    }
}

void
repl__floor_update(struct repl_src_db *db)
{
    if (db == NULL || db->store == NULL)
        return;
    if (db->updating) {
        db->update_again = true;
        return;
    }
    db->updating = true;
    do {
        db->update_again = false;
        floor_pass(db);
    } while (db->update_again);
    db->updating = false;
}

/*
 * The sync gate (docs/replication.md, "Sync mode"): in a database served in `sync` mode, a
 * commit's reply to its worker (so the client's 250 or OK) waits until a passive copy's ACK
 * says its log is durable at or beyond the commit's LSN. core_commit.c hands each applied
 * commit here (tandemd__sync_hold); the replication source reports every ACK
 * (tandemd__sync_ack); one ACK releases every reply at or below its durable LSN.
 *
 * Only passive copies count: a standby is in another site, where losing the active's site is
 * what it is for, and a wait on a WAN round trip is not what `sync` promises
 * (docs/decisions.md). When the oldest held reply has waited timeout_ms, the database
 * degrades to block (event 4070) and every held reply goes; it returns to sync (4071) at a
 * passive ACK that covers every commit answered so far, or every commit answered by the
 * previous ACK (a copy within one ACK of the active under steady load). With strict, nothing
 * degrades: replies stay held, and event 4072 says so once per wait.
 *
 * Loop thread only. Held items are core_commit.c's (opaque here): released through
 * tandemd__commit_release, which sends or drops them.
 */
#include "tandemd/core_ipc_int.h"

#include "lib/clock.h"
#include "lib/log.h"
#include "proto/repl/repl_wire.h"
#include "tandem/events.h"
#include "lib/event.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sync_held {
    struct sync_held *next;
    uint64_t lsn;
    uint64_t since_ms; /* tdm_clock_ms(): a suspend counts as waiting */
    void *item;
};

struct sync_db {
    struct sync_db *next;
    char *name;
    uint32_t timeout_ms;
    bool strict;
    bool degraded;
    bool holding_told;             /* strict: 4072 sent for the current oldest reply */
    uint64_t acked_lsn;            /* highest durable LSN a passive copy has ACKed */
    uint64_t answered_lsn;         /* highest LSN of a commit handed to the gate */
    uint64_t catch_up;             /* degraded: answered_lsn at the previous passive ACK */
    struct sync_held *head, *tail; /* in arrival order, which is LSN order per store */
    struct event *timer;
};

static struct sync_db *dbs;

static struct sync_db *
find(const char *name)
{
    for (struct sync_db *d = dbs; d; d = d->next)
        if (!strcmp(d->name, name))
            return d;
    return NULL;
}

/* Arms the timer for the oldest held reply's deadline (nothing held: off). */
static void
arm(struct sync_db *d)
{
    if (!d->head || d->degraded) {
        event_del(d->timer);
        return;
    }
    uint64_t deadline = d->head->since_ms + d->timeout_ms;
    uint64_t now = tdm_clock_ms();
    uint64_t wait = deadline > now ? deadline - now : 0;
    if (d->strict && d->holding_told)
        wait = d->timeout_ms; /* only to notice a new oldest reply */
    struct timeval tv = {(time_t)(wait / 1000u), (suseconds_t)(wait % 1000u) * 1000};
    event_add(d->timer, &tv);
}

/* Releases held replies up to lsn (UINT64_MAX: all). */
static void
release_upto(struct sync_db *d, uint64_t lsn)
{
    bool any = false;
    while (d->head && d->head->lsn <= lsn) {
        struct sync_held *h = d->head;
        d->head = h->next;
        if (!d->head)
            d->tail = NULL;
        tandemd__commit_release(h->item, true);
        free(h);
        any = true;
    }
    if (any)
        d->holding_told = false;
    arm(d);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sync_db *d = arg;
    if (!d->head)
        return;
    uint64_t waited_ms = tdm_clock_ms() - d->head->since_ms;
    if (waited_ms < d->timeout_ms) {
        arm(d);
        return;
    }
    if (d->strict) {
        if (!d->holding_told)
            event_emit(TDM_EV_REPL_SYNC_HOLDING, d->name,
                       "no passive copy has acknowledged LSN %" PRIu64 " after %" PRIu64
                       " ms; replies are held (strict) until one does",
                       d->head->lsn, waited_ms);
        d->holding_told = true;
        arm(d);
        return;
    }
    d->degraded = true;
    d->catch_up = UINT64_MAX;
    event_emit(TDM_EV_REPL_SYNC_DEGRADED, d->name,
               "no passive copy acknowledged LSN %" PRIu64 " within %" PRIu32
               " ms (last acknowledged %" PRIu64 "); commits are answered as in block mode",
               d->head->lsn, d->timeout_ms, d->acked_lsn);
    release_upto(d, UINT64_MAX);
}

void
tandemd__sync_configure(struct event_base *base, const char *database, uint32_t timeout_ms,
                        bool strict)
{
    if (find(database))
        return;
    struct sync_db *d = calloc(1, sizeof(*d));
    if (!d)
        log_fatal("out of memory");
    d->name = tandemd__xstrndup(database, strlen(database));
    d->timeout_ms = timeout_ms;
    d->strict = strict;
    d->timer = evtimer_new(base, timer_cb, d);
    if (!d->timer)
        log_fatal("out of memory");
    d->next = dbs;
    dbs = d;
    log_info("database %s: replication mode sync (timeout %" PRIu32 " ms%s)", database, timeout_ms,
             strict ? ", strict" : "");
}

bool
tandemd__sync_hold(const char *database, uint64_t lsn, void *item)
{
    struct sync_db *d = find(database);
    if (!d)
        return false;
    if (lsn > d->answered_lsn)
        d->answered_lsn = lsn;
    if (d->degraded || lsn <= d->acked_lsn)
        return false;
    struct sync_held *h = calloc(1, sizeof(*h));
    if (!h)
        log_fatal("out of memory");
    *h = (struct sync_held){NULL, lsn, tdm_clock_ms(), item};
    if (d->tail)
        d->tail->next = h;
    else
        d->head = h;
    d->tail = h;
    if (d->head == h)
        arm(d);
    return true;
}

void
tandemd__sync_ack(const char *database, const char *server, uint16_t role, uint64_t durable_lsn)
{
    struct sync_db *d = find(database);
    if (!d || role != REPL_ROLE_PASSIVE)
        return;
    if (durable_lsn > d->acked_lsn)
        d->acked_lsn = durable_lsn;
    if (d->degraded) {
        if (durable_lsn < d->answered_lsn && durable_lsn < d->catch_up) {
            d->catch_up = d->answered_lsn;
            return;
        }
        d->degraded = false;
        event_emit(TDM_EV_REPL_SYNC_RESTORED, d->name,
                   "passive copy on %s has the log durable to LSN %" PRIu64
                   "; commits wait for a passive copy again",
                   server, durable_lsn);
        return;
    }
    release_upto(d, d->acked_lsn);
}

const char *
tandemd__sync_state(const char *database)
{
    struct sync_db *d = find(database);
    return !d ? NULL : d->degraded ? "degraded" : "sync";
}

void
tandemd__sync_free(void)
{
    while (dbs) {
        struct sync_db *d = dbs;
        dbs = d->next;
        /* The server stops: a held reply was never confirmed by a copy, so it is not sent
         * (its worker fails the command, and the client retries). */
        while (d->head) {
            struct sync_held *h = d->head;
            d->head = h->next;
            tandemd__commit_release(h->item, false);
            free(h);
        }
        event_free(d->timer);
        free(d->name);
        free(d);
    }
}

/*
 * What the copy agent does with the active's messages (repl_copy_int.h): HELLO_REPLY decides
 * whether the session goes on (and seeds a new copy), LOG_DATA goes through inspection into the
 * copy's log, POSITION says how far behind the copy is. After each batch of frames, what was
 * received is made durable, replayed and acknowledged.
 *
 * Inspection failures: a range that fails inspection is dropped (the store keeps nothing of
 * it) and the session starts again from the copy's position, so the active ships the range
 * again; the third failure in a row makes the copy Failed (DESIGN.md, "Replication").
 */
#include "repl/repl_copy_int.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INSPECTION_FAILURES 3
#define STANDBY_HOLD_GENERATIONS 50

static bool
guid_zero(const uint8_t *g)
{
    for (unsigned i = 0; i < REPL_WIRE_GUID_LEN; i++)
        if (g[i])
            return false;
    return true;
}

/* Failed for good (until an operator resumes): the session closes and is not retried. */
static void
fail_copy(struct repl_copy *c, const char *what, const char *detail)
{
    repl_copy__retry_later(c, false);
    repl_copy__set_state(c, REPL_COPY_FAILED, "%s%s", what, detail);
}

/* Failed, diverged: the copy's log is not a prefix of the active's (it holds records the
 * active does not have, after a lossy failover). Its LMDB has applied them and cannot be rolled
 * back, so only a reseed brings it back (docs/replication.md, "Divergence"). The LSN and epoch
 * are those of its last record, as its HELLO said. */
static void
fail_diverged(struct repl_copy *c, const char *reason)
{
    struct store_copy_position p = {0};
    if (c->store) {
        struct store_copy_status s;
        store_copy_get_status(c->store, &s);
        store_copy_get_position(c->store, &p);
        if (!s.lowest_generation)
            p.epoch = 0; /* as repl_copy__hello() said: no generation here yet */
    }
    repl_copy__retry_later(c, false);
    repl_copy__set_state(c, REPL_COPY_FAILED,
                         "diverged from the active at LSN %llu (epoch %llu): needs a reseed (%s)",
                         (unsigned long long)p.lsn, (unsigned long long)p.epoch, reason);
}

int
repl_copy__open_store(struct repl_copy *c)
{
    char *log_dir;
    if (asprintf(&log_dir, "%s/log", c->dir) < 0)
        log_fatal("out of memory");
    struct stat st;
    int exists = stat(log_dir, &st) == 0;
    free(log_dir);
    if (!exists)
        return -ENOENT; /* a new copy: seeded from the active at the first HELLO_REPLY */
    const char *why;
    int ret = store_copy_open(c->dir, &c->store_opt, &c->store, &why);
    if (ret < 0) {
        c->store = NULL;
        repl_copy__set_state(c, REPL_COPY_FAILED, "the copy does not open: %s", why);
        return ret;
    }
    c->store_serial++; /* a sync job of an earlier one is not this copy's */
    return 0;
}

/*
 * Creates a new, empty copy of the database guid, whose log is shipped from generation 1:
 * store_copy_create() wants a directory of its own, and this one already holds copy.conf, so
 * the copy is made in a hidden sibling beside it (the core skips names starting with '.'),
 * and swapped in with copy.conf (repl_copy__swap_in: a crash leaves either the marker alone,
 * seeded again, or the whole copy).
 */
static int
seed(struct repl_copy *c, const uint8_t *guid)
{
    char *tmp = repl_copy__sibling(c, ".seed");
    const char *why = NULL;
    /* What a crash left of an earlier seed: removed whole, so the create starts clean. */
    int ret = repl_copy__rm_tree(tmp);
    if (ret < 0)
        log_warn("copy %s: cannot remove the leftover %s: %s", c->database, tmp, tdm_strerror(ret));
    ret = store_copy_create(tmp, guid, c->conf.kind, 1, &why);
    if (ret == 0)
        ret = repl_copy__swap_in(c, tmp, &why);
    if (ret < 0)
        repl_copy__set_state(c, REPL_COPY_FAILED, "cannot create the copy in %s: %s (%s)", c->dir,
                             why ? why : "error", tdm_strerror(ret));
    free(tmp);
    return ret;
}

void
repl_copy__hello(struct repl_copy *c, struct repl_msg *msg, uint32_t request_id)
{
    memset(msg, 0, sizeof(*msg));
    msg->type = REPL_HELLO;
    msg->request_id = request_id;
    struct repl_hello *h = &msg->u.hello;
    h->version_min = REPL_WIRE_VERSION_MIN;
    h->version_max = REPL_WIRE_VERSION;
    h->server = repl_str_c(c->server_name);
    h->key = repl_str_c(c->key);
    h->database = repl_str_c(c->database);
    h->role = c->conf.role;
    h->start_generation = 1;
    c->pending_len = 0;     /* the new session ships again from the copy's position */
    c->read_parked = false; /* ... and the old session's buffer is gone */
    if (c->store) {
        struct store_copy_status s;
        store_copy_get_status(c->store, &s);
        struct store_copy_position p;
        store_copy_get_position(c->store, &p);
        memcpy(h->guid, s.guid, REPL_WIRE_GUID_LEN);
        h->start_generation = p.generation ? p.generation : 1;
        h->start_offset = p.offset;
        h->last_lsn = p.lsn;
        /* Epoch 0 says "no generation here yet": a copy seeded from a snapshot, whose LMDB may
         * reach into the generation it starts from (the source accepts that). */
        h->epoch = s.lowest_generation ? p.epoch : 0;
    }
}

static int
on_hello_reply(struct repl_copy *c, struct repl_copy_link *l, const struct repl_hello_reply *r)
{
    char reason[REPL_WIRE_TEXT_MAX + 1];
    snprintf(reason, sizeof(reason), "%.*s", (int)r->reason.len, r->reason.ptr);
    const char *code = repl_code_name(r->code);
    switch (r->code) {
    case REPL_CODE_OK:
        break;
    case REPL_CODE_UNKNOWN_DATABASE:
    case REPL_CODE_NOT_ACTIVE:
    case REPL_CODE_SHUTDOWN:
    case REPL_CODE_INTERNAL:
    case REPL_CODE_LIMIT:
    case REPL_CODE_TIMEOUT:
        repl_copy__retry_later(c, true);
        repl_copy__set_state(c, REPL_COPY_SERVICE_DOWN, "the active refused (%s): %s", code,
                             reason);
        return -1;
    case REPL_CODE_AUTH:
        /* Fixed on the directory (the key, membership of servers), not here: keep trying,
         * slowly, so the copy recovers by itself once it is. */
        repl_copy__retry_later(c, true);
        repl_copy__set_state(c, REPL_COPY_FAILED,
                             "the active refused this server's credentials (%s): %s", code, reason);
        return -1;
    case REPL_CODE_DIVERGED:
        fail_diverged(c, reason);
        return -1;
    case REPL_CODE_POSITION_GONE:
        if (!c->store) {
            /* A new copy whose active no longer has generation 1: a seed from a snapshot. */
            repl_copy__disconnect(c);
            c->seed_wanted = true;
            repl_copy__set_state(c, REPL_COPY_SEEDING,
                                 "the active no longer has generation 1: seeding from a snapshot");
            c->next_net = 0;
            repl_copy__connect(c);
            return -1;
        }
        /* A copy with a log needs an operator's reseed: */
        __attribute__((fallthrough));
    default: /* guid-mismatch, position-gone, released, version, protocol */
        repl_copy__retry_later(c, false);
        repl_copy__set_state(c, REPL_COPY_FAILED, "the active refused (%s): %s%s",
                             code ? code : "?", reason,
                             r->code == REPL_CODE_POSITION_GONE || r->code == REPL_CODE_RELEASED
                                 ? "; the copy needs a reseed"
                                 : "");
        return -1;
    }
    if (c->store) {
        struct store_copy_status s;
        store_copy_get_status(c->store, &s);
        if (memcmp(s.guid, r->guid, REPL_WIRE_GUID_LEN) != 0) {
            fail_copy(c, "the active's database has another GUID than this copy", "");
            return -1;
        }
    } else {
        if (guid_zero(r->guid)) {
            fail_copy(c, "the active named no database GUID to seed the copy with", "");
            return -1;
        }
        if (seed(c, r->guid) < 0 || repl_copy__open_store(c) < 0) {
            repl_copy__retry_later(c, false);
            return -1;
        }
        c->seeding = true;
    }
    l->hello_done = true;
    c->st.mode = r->mode;
    c->retry_ms = c->retry_min_ms;
    if (!c->used_any || c->used_net != l->net) {
        if (c->used_any)
            event_emit(TDM_EV_REPL_COPY_NETWORK_CHANGED, c->database,
                       "copy of %s now ships over network %s (%s), not %s", c->database,
                       c->st.network, c->st.endpoint, c->conf.sources[c->used_net].network);
        c->used_net = l->net;
        c->used_any = true;
    }
    if (l->net > 0) {
        struct timeval tv = {c->probe_ms / 1000, (c->probe_ms % 1000) * 1000};
        evtimer_add(c->probe_ev, &tv);
    }
    c->st.source_generation = r->current_generation;
    c->st.source_durable_end = r->durable_end;
    if (c->seeding)
        repl_copy__set_state(c, REPL_COPY_SEEDING, "a new copy, copying the log over network %s",
                             c->st.network);
    else
        repl_copy__set_state(c, REPL_COPY_HEALTHY, "%s mode, over network %s (%s)",
                             repl_mode_name(r->mode) ? repl_mode_name(r->mode) : "?", c->st.network,
                             c->st.endpoint);
    return 0;
}

/* The most a frame split over partial chunks can gather: the largest frame, plus the whole
 * frames the chunk that ends it may carry after it. */
#define PENDING_MAX ((size_t)TDM_LOG_MAX_PAYLOAD + TDM_LOG_FRAME_OVERHEAD + REPL_WIRE_CHUNK_MAX)

/*
 * Adds a chunk to the pieces of a frame longer than a chunk. Returns 1 when the chunk
 * completed them (*bytes_r, *len_r, *offset_r: everything gathered, for inspection), 0 when
 * more is to come (partial), or -1 for pieces that do not follow each other (a bug of the
 * active's: resynchronize).
 */
static int
gather_partial(struct repl_copy *c, const struct repl_log_data *d, const uint8_t *bytes,
               const uint8_t **bytes_r, size_t *len_r, uint64_t *offset_r)
{
    if (c->pending_len == 0) {
        c->pending_generation = d->generation;
        c->pending_offset = d->offset;
    } else if (d->generation != c->pending_generation ||
               d->offset != c->pending_offset + c->pending_len) {
        return -1;
    }
    if (d->raw_length > PENDING_MAX - c->pending_len)
        return -1;
    if (c->pending_len + d->raw_length > c->pending_cap) {
        size_t cap = c->pending_cap ? c->pending_cap : REPL_WIRE_CHUNK_MAX;
        while (cap < c->pending_len + d->raw_length)
            cap *= 2;
        uint8_t *grown = realloc(c->pending, cap);
        if (!grown)
            log_fatal("out of memory");
        c->pending = grown;
        c->pending_cap = cap;
    }
    memcpy(c->pending + c->pending_len, bytes, d->raw_length);
    c->pending_len += d->raw_length;
    if (d->partial)
        return 0;
    *bytes_r = c->pending;
    *len_r = c->pending_len;
    *offset_r = c->pending_offset;
    return 1;
}

static int
on_log_data(struct repl_copy *c, const struct repl_log_data *d)
{
    /* Too many generations wait for a sync to name them (store_copy_receive_ready()): never
     * wait for the disk here, leave the message in the buffer until the sync (started by the
     * flush after this batch) ends. */
    if (!store_copy_receive_ready(c->store, c->pending_len ? c->pending_offset : d->offset)) {
        c->read_parked = true;
        return 1;
    }
    c->st.wire_bytes += d->data_len;
    c->st.wire_log_bytes += d->raw_length;
    const uint8_t *bytes = d->data;
    if (d->compression == REPL_COMPRESSION_ZSTD) {
        const char *why;
        int ret = repl_zstd_decompress(c->zstd, d->data, d->data_len, c->raw, d->raw_length, &why);
        if (ret == -ENOMEM)
            log_fatal("out of memory");
        if (ret < 0) {
            log_error("copy %s: generation %llu at %llu does not decompress: %s", c->database,
                      (unsigned long long)d->generation, (unsigned long long)d->offset, why);
            repl_copy__reconnect(c);
            return -1;
        }
        bytes = c->raw;
    }
    size_t len = d->raw_length;
    uint64_t offset = d->offset;
    if (d->partial || c->pending_len) {
        int gathered = gather_partial(c, d, bytes, &bytes, &len, &offset);
        if (gathered < 0) {
            log_error("copy %s: a piece of a long frame at generation %llu offset %llu does not "
                      "follow the pieces before it",
                      c->database, (unsigned long long)d->generation,
                      (unsigned long long)d->offset);
            repl_copy__reconnect(c);
            return -1;
        }
        if (gathered == 0)
            return 0;       /* counted once the frame is whole and inspected */
        c->pending_len = 0; /* inspected below; kept or not, it is not gathered again */
    }
    const char *why = NULL;
    int ret = store_copy_receive(c->store, d->generation, offset, bytes, len, &why);
    if (ret == 0) {
        c->st.inspection_failures = 0;
        c->st.bytes_received += len;
        c->dirty = true;
        c->dirty_bytes += len;
        return 0;
    }
    if (ret == TDM_ECORRUPT || ret == TDM_EINVAL) {
        uint32_t n = ++c->st.inspection_failures;
        event_emit(TDM_EV_REPL_COPY_INSPECTION_FAILED, c->database,
                   "copy of %s: generation %llu from offset %llu failed inspection (%u of %u): %s",
                   c->database, (unsigned long long)d->generation, (unsigned long long)offset,
                   (unsigned)n, MAX_INSPECTION_FAILURES, why ? why : tdm_strerror(ret));
        if (n >= MAX_INSPECTION_FAILURES) {
            char msg[400];
            snprintf(msg, sizeof(msg), "generation %llu failed inspection %u times in a row: %s",
                     (unsigned long long)d->generation, (unsigned)n, why ? why : tdm_strerror(ret));
            fail_copy(c, msg, "; the copy needs a reseed");
            return -1;
        }
        /* Ask again from the copy's position. */
        repl_copy__reconnect(c);
        return -1;
    }
    fail_copy(c, "cannot write the copy's log: ", why ? why : tdm_strerror(ret));
    return -1;
}

int
repl_copy__on_message(struct repl_copy *c, struct repl_copy_link *l, const struct repl_msg *msg)
{
    if (!l->hello_done) {
        if (msg->type == REPL_HELLO_REPLY && msg->request_id == l->hello_id)
            return on_hello_reply(c, l, &msg->u.hello_reply);
        if (msg->type == REPL_ERROR)
            goto error;
        log_error("copy %s: %s before HELLO_REPLY", c->database, repl_type_name(msg->type));
        repl_copy__reconnect(c);
        return -1;
    }
    switch (msg->type) {
    case REPL_LOG_DATA:
        return on_log_data(c, &msg->u.log_data);
    case REPL_POSITION:
        c->st.source_generation = msg->u.position.generation;
        c->st.source_durable_end = msg->u.position.durable_end;
        c->st.source_lsn = msg->u.position.durable_lsn;
        c->st.source_time_us = msg->u.position.time_us;
        return 0;
    case REPL_ERROR:
        goto error;
    default:
        log_error("copy %s: unexpected %s from the active", c->database,
                  repl_type_name(msg->type) ? repl_type_name(msg->type) : "message");
        repl_copy__reconnect(c);
        return -1;
    }
error:;
    char text[REPL_WIRE_TEXT_MAX + 1];
    snprintf(text, sizeof(text), "%.*s", (int)msg->u.error.text.len, msg->u.error.text.ptr);
    const char *code = repl_code_name(msg->u.error.code);
    if (msg->u.error.code == REPL_CODE_SHUTDOWN || msg->u.error.code == REPL_CODE_NOT_ACTIVE ||
        msg->u.error.code == REPL_CODE_UNKNOWN_DATABASE) {
        repl_copy__retry_later(c, true);
        repl_copy__set_state(c, REPL_COPY_SERVICE_DOWN, "the active stopped serving (%s): %s",
                             code ? code : "?", text);
    } else if (msg->u.error.code == REPL_CODE_DIVERGED) {
        fail_diverged(c, text);
    } else if (msg->u.error.code == REPL_CODE_POSITION_GONE ||
               msg->u.error.code == REPL_CODE_RELEASED ||
               msg->u.error.code == REPL_CODE_GUID_MISMATCH) {
        /* Released: the active let its logs go past this copy's position, so waiting cannot
         * help (unlike limit, which the next try may pass). */
        repl_copy__retry_later(c, false);
        repl_copy__set_state(
            c, REPL_COPY_FAILED, "the active ended the session (%s): %s%s", code ? code : "?", text,
            msg->u.error.code == REPL_CODE_GUID_MISMATCH ? "" : "; the copy needs a reseed");
    } else {
        /* Not Healthy any more, whatever the reason: status must not show a session that is
         * gone (activation, for one, refuses while the copy looks in touch with its active). */
        repl_copy__retry_later(c, true);
        repl_copy__set_state(c, REPL_COPY_DISCONNECTED,
                             "the active ended the session (%s): %s; retrying", code ? code : "?",
                             text);
    }
    return -1;
}

/* Returns 0, or -1 when the ACK could not be queued (l is gone: reconnecting). */
static int
send_ack(struct repl_copy *c, struct repl_copy_link *l)
{
    struct store_copy_status s;
    store_copy_get_status(c->store, &s);
    struct repl_msg ack = {.type = REPL_ACK};
    ack.u.ack.durable_generation = s.durable.generation ? s.durable.generation : 1;
    ack.u.ack.durable_offset = s.durable.offset;
    ack.u.ack.durable_lsn = s.durable.lsn;
    ack.u.ack.inspected_generation = s.inspected_generation;
    ack.u.ack.replayed_lsn = s.replayed_lsn;
    ack.u.ack.replayed_generation = s.replayed_generation;
    if (repl_copy__send(l, &ack) < 0) {
        repl_copy__reconnect(c);
        return -1;
    }
    c->last_ack_us = repl_copy__now_us();
    return 0;
}

/*
 * The generation below which the log may go: the highest generation wholly replayed at least
 * truncation_lag ago (the replay times are kept as (generation, when) marks, oldest first;
 * when the list is full the two oldest merge, keeping the later time, which only keeps
 * generations longer). Without a lag, the highest wholly replayed now.
 */
static uint64_t
truncation_bound(struct repl_copy *c, uint64_t replayed_generation)
{
    if (c->conf.truncation_lag_ms == 0)
        return replayed_generation;
    uint64_t now = repl_copy__now_us();
    struct repl_copy_replay_mark *m = c->replay_marks;
    if (replayed_generation > 0 &&
        (c->n_replay_marks == 0 || m[c->n_replay_marks - 1].generation < replayed_generation)) {
        if (c->n_replay_marks == REPL_COPY_REPLAY_MARKS) {
            m[1].generation = m[1].generation > m[0].generation ? m[1].generation : m[0].generation;
            memmove(m, m + 1, (REPL_COPY_REPLAY_MARKS - 1) * sizeof(*m));
            c->n_replay_marks--;
        }
        m[c->n_replay_marks++] =
            (struct repl_copy_replay_mark){.generation = replayed_generation, .at_us = now};
    }
    uint64_t lag_us = c->conf.truncation_lag_ms * 1000u, below = 0;
    size_t used = 0;
    while (used < c->n_replay_marks && m[used].at_us + lag_us <= now)
        below = m[used++].generation;
    /* The marks passed are spent: the bound only grows. */
    if (used > 0 && used < c->n_replay_marks) {
        memmove(m, m + used - 1, (c->n_replay_marks - used + 1) * sizeof(*m));
        c->n_replay_marks -= used - 1;
    }
    return below;
}

static void start_sync(struct repl_copy *c);

/* Replays what the role allows. Returns 0 or -1 when the copy is Failed. */
static int
replay(struct repl_copy *c)
{
    struct store_copy_replay_limit limit = {0};
    if (c->conf.role == REPL_ROLE_STANDBY) {
        limit.hold_generations = STANDBY_HOLD_GENERATIONS;
        if (c->conf.replay_lag_ms)
            limit.created_before_us = repl_copy__now_us() - c->conf.replay_lag_ms * 1000u;
    }
    uint64_t lsn;
    c->last_replay_us = repl_copy__now_us();
    int ret = store_copy_replay(c->store, &limit, &lsn);
    if (ret < 0) {
        fail_copy(c, "replay failed: ", tdm_strerror(ret));
        return -1;
    }
    struct store_copy_status s;
    store_copy_get_status(c->store, &s);
    /* What is replayed (and checkpointed: the store checks) is no longer needed here, once
     * the truncation lag has passed since its replay. */
    uint64_t below = truncation_bound(c, s.replayed_generation);
    if (below > 0) {
        ret = store_copy_truncate(c->store, below);
        if (ret < 0)
            log_warn("copy %s: cannot truncate below generation %llu: %s", c->database,
                     (unsigned long long)below, tdm_strerror(ret));
    }
    /* The truncated files are unlinked by a sync job: start one if none runs to take them. */
    if (!c->sync_running && store_copy_unlinks_pending(c->store))
        start_sync(c);
    return 0;
}

/* A new copy becomes Healthy once it has caught up with the active the first time. */
static void
check_caught_up(struct repl_copy *c)
{
    repl_copy__publish(c);
    if (c->seeding && c->st.state == REPL_COPY_SEEDING && c->st.copy_queue_generations == 0 &&
        c->st.source_generation != 0) {
        c->seeding = false;
        repl_copy__set_state(c, REPL_COPY_HEALTHY, "seeded; %s mode, over network %s (%s)",
                             repl_mode_name(c->st.mode) ? repl_mode_name(c->st.mode) : "?",
                             c->st.network, c->st.endpoint);
    }
}

/* Replays now when replay has not run for REPL_COPY_REPLAY_EVERY_MS; otherwise the timer
 * replays then, in one go, whatever became durable in between. */
static void
replay_soon(struct repl_copy *c)
{
    if (!c->store || c->st.state == REPL_COPY_SUSPENDED || c->st.state == REPL_COPY_FAILED)
        return;
    uint64_t now = repl_copy__now_us(), every = REPL_COPY_REPLAY_EVERY_MS * 1000u;
    if (now - c->last_replay_us < every) {
        if (!evtimer_pending(c->replay_ev, NULL)) {
            uint64_t wait = c->last_replay_us + every - now;
            struct timeval tv = {(time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u)};
            evtimer_add(c->replay_ev, &tv);
        }
        check_caught_up(c);
        return;
    }
    evtimer_del(c->replay_ev);
    uint64_t before = c->st.replayed_lsn;
    if (replay(c) < 0)
        return;
    repl_copy__publish(c);
    if (c->st.replayed_lsn != before && c->session && c->session->hello_done &&
        send_ack(c, c->session) < 0)
        return;
    check_caught_up(c);
}

/* The durable position moved: acknowledge it at once (the active's sync mode waits for exactly
 * this, not for the replay), read on past a parked message, then replay. */
static void
durable_moved(struct repl_copy *c)
{
    if (c->session && c->session->hello_done && send_ack(c, c->session) < 0)
        return;
    if (c->read_parked) {
        c->read_parked = false;
        if (c->session)
            repl_copy__read(c->session); /* may start the next sync: replay then overlaps it */
    }
    /* What arrived while the job ran goes into the next one now. */
    if (c->dirty && !c->sync_running && c->st.state != REPL_COPY_FAILED)
        start_sync(c);
    replay_soon(c);
}

static void
sync_work(void *arg)
{
    struct repl_copy *c = arg;
    store_copy_sync_run(&c->sync_job); /* touches only the job, the file and the directory */
}

static void
sync_done(void *arg, bool ran)
{
    struct repl_copy *c = arg;
    if (!ran)
        store_copy_sync_run(&c->sync_job); /* dropped unrun at stop: the store closes next */
    c->sync_running = false;
    if (!c->store || c->sync_store_serial != c->store_serial) {
        store_copy_sync_job_free(&c->sync_job); /* its copy was closed meanwhile (reseed) */
        return;
    }
    int ret = store_copy_sync_end(c->store, &c->sync_job, NULL);
    if (ret < 0) {
        fail_copy(c, "cannot make the copy's log durable: ", tdm_strerror(ret));
        return;
    }
    durable_moved(c);
}

/* Starts making durable what was received (and written) so far; its end ACKs. */
static void
start_sync(struct repl_copy *c)
{
    bool small = c->dirty_bytes < REPL_COPY_SYNC_INLINE;
    c->dirty = false;
    c->dirty_bytes = 0;
    int ret = store_copy_sync_start(c->store, &c->sync_job);
    if (ret < 0) {
        fail_copy(c, "cannot make the copy's log durable: ", tdm_strerror(ret));
        return;
    }
    if (ret == 0) { /* nothing unsynced */
        durable_moved(c);
        return;
    }
    c->sync_running = true;
    c->sync_store_serial = c->store_serial;
    /* Unlinks cost milliseconds each: never inline. */
    if ((small && c->sync_job.n_unlinks == 0) || !c->syncer ||
        offload_submit(c->syncer, sync_work, sync_done, c) < 0) {
        sync_work(c);
        sync_done(c, true);
    }
}

void
repl_copy__flush(struct repl_copy *c, struct repl_copy_link *l)
{
    if (!c->store || c->session != l || !l->hello_done)
        return;
    /* One job at a time: what arrives meanwhile goes into the next, started when it ends. */
    if ((c->dirty || c->read_parked) && !c->sync_running)
        start_sync(c);
    else
        check_caught_up(c);
}

void
repl_copy__replay_tick(struct repl_copy *c)
{
    uint64_t before = c->st.replayed_lsn;
    if (replay(c) < 0)
        return;
    repl_copy__publish(c);
    /* An idle pair must still be heard: the source closes a copy silent for its
     * silence_timeout (30 s by default), which would make an idle copy reconnect forever. */
    bool idle = repl_copy__now_us() - c->last_ack_us >= REPL_COPY_ACK_IDLE_MS * 1000u;
    if ((c->st.replayed_lsn != before || idle) && c->session && c->session->hello_done &&
        send_ack(c, c->session) < 0)
        return;
    check_caught_up(c);
}

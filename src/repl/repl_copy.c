/*
 * The copy agent (repl_copy.h): its thread, the commands other threads send it, its state and
 * the status it publishes. The loop runs until stop; suspend and resume arrive through an
 * eventfd, so no libevent call ever crosses threads.
 */
#include "repl/repl_copy_int.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "lib/tls.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_RETRY_MIN_MS 500u
#define DEFAULT_RETRY_MAX_MS 10000u
#define DEFAULT_PROBE_MS 5000u

static const char *const state_names[] = {
    [REPL_COPY_INITIALIZING] = "Initializing",
    [REPL_COPY_HEALTHY] = "Healthy",
    [REPL_COPY_DISCONNECTED] = "Disconnected",
    [REPL_COPY_SERVICE_DOWN] = "ServiceDown",
    [REPL_COPY_RESYNCHRONIZING] = "Resynchronizing",
    [REPL_COPY_FAILED] = "Failed",
    [REPL_COPY_SUSPENDED] = "Suspended",
    [REPL_COPY_SEEDING] = "Seeding",
};

static const enum tdm_event state_events[] = {
    [REPL_COPY_INITIALIZING] = TDM_EV_REPL_COPY_INITIALIZING,
    [REPL_COPY_HEALTHY] = TDM_EV_REPL_COPY_HEALTHY,
    [REPL_COPY_DISCONNECTED] = TDM_EV_REPL_COPY_DISCONNECTED,
    [REPL_COPY_SERVICE_DOWN] = TDM_EV_REPL_COPY_SERVICE_DOWN,
    [REPL_COPY_RESYNCHRONIZING] = TDM_EV_REPL_COPY_RESYNCHRONIZING,
    [REPL_COPY_FAILED] = TDM_EV_REPL_COPY_FAILED,
    [REPL_COPY_SUSPENDED] = TDM_EV_REPL_COPY_SUSPENDED,
    [REPL_COPY_SEEDING] = TDM_EV_REPL_COPY_SEEDING,
};

const char *
repl_copy_state_name(enum repl_copy_state state)
{
    return (unsigned)state < sizeof(state_names) / sizeof(state_names[0]) ? state_names[state]
                                                                          : NULL;
}

uint64_t
repl_copy__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- status ---- */

void
repl_copy__publish(struct repl_copy *c)
{
    struct repl_copy_status *st = &c->st;
    if (c->store) {
        struct store_copy_status s;
        store_copy_get_status(c->store, &s);
        st->copied_generation = s.durable.generation;
        st->copied_offset = s.durable.offset;
        st->copied_lsn = s.durable.lsn;
        if (s.inspected_generation != st->inspected_generation)
            st->last_inspected_us = s.last_received_us;
        st->inspected_generation = s.inspected_generation;
        st->replayed_generation = s.replayed_generation;
        st->replayed_lsn = s.replayed_lsn;
        st->last_copied_us = s.last_received_us;
        st->last_replayed_us = s.last_replayed_us;
    }
    /* Copy queue: from the copy's durable position to the active's. A position at offset 0
     * holds nothing of its generation. */
    uint64_t sg = st->source_generation, se = st->source_durable_end;
    /* In file mode the active's open generation does not ship yet, so it is not queued (as
     * Exchange's copy queue leaves out E00.log). */
    if (st->mode == REPL_MODE_FILE)
        se = 0;
    uint64_t cg = st->copied_generation ? st->copied_generation : 1, co = st->copied_offset;
    if (sg == 0 || cg > sg || (cg == sg && co >= se)) {
        st->copy_queue_generations = 0;
        st->copy_queue_bytes = 0;
    } else if (cg == sg) {
        st->copy_queue_generations = 1;
        st->copy_queue_bytes = se - co;
    } else {
        uint64_t size = c->store_opt.generation_size;
        st->copy_queue_generations = sg - cg + (se > 0 ? 1 : 0);
        /* Whole generations between are counted at the configured size: an estimate, since
         * the active's generation size is its own. */
        st->copy_queue_bytes = (co < size ? size - co : 0) + (sg - cg - 1) * size + se;
    }
    if (st->copied_lsn > st->replayed_lsn) {
        st->replay_queue_records = st->copied_lsn - st->replayed_lsn;
        uint64_t last = st->copied_offset ? st->copied_generation : st->copied_generation - 1;
        st->replay_queue_generations =
            last > st->replayed_generation ? last - st->replayed_generation : 1;
    } else {
        st->replay_queue_records = 0;
        st->replay_queue_generations = 0;
    }
    pthread_mutex_lock(&c->lock);
    c->published = *st;
    pthread_mutex_unlock(&c->lock);
}

void
repl_copy__set_state(struct repl_copy *c, enum repl_copy_state state, const char *fmt, ...)
{
    char msg[sizeof(c->st.message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Initializing is also where an agent starts (and resume returns to): say so each time. */
    bool changed = c->st.state != state || state == REPL_COPY_INITIALIZING;
    snprintf(c->st.message, sizeof(c->st.message), "%s", msg);
    bool lost = state == REPL_COPY_DISCONNECTED || state == REPL_COPY_SERVICE_DOWN;
    bool was_lost = c->st.state == REPL_COPY_DISCONNECTED || c->st.state == REPL_COPY_SERVICE_DOWN;
    c->st.lost_source_while_healthy =
        lost && (c->st.state == REPL_COPY_HEALTHY || (was_lost && c->st.lost_source_while_healthy));
    c->st.state = state;
    if (changed) {
        log_info("copy %s: %s%s%s", c->database, state_names[state], msg[0] ? ": " : "", msg);
        event_emit(state_events[state], c->database, "copy of %s is %s%s%s", c->database,
                   state_names[state], msg[0] ? ": " : "", msg);
    }
    repl_copy__publish(c);
}

void
repl_copy_get_status(struct repl_copy *copy, struct repl_copy_status *st_r)
{
    pthread_mutex_lock(&copy->lock);
    *st_r = copy->published;
    pthread_mutex_unlock(&copy->lock);
}

/* ---- commands ---- */

static void
wake(struct repl_copy *c)
{
    uint64_t one = 1;
    /* An eventfd counter cannot overflow from these few writes; EAGAIN would mean it is
     * already readable, which is all a wake-up needs. */
    if (write(c->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_error("copy %s: cannot wake its agent: %s", c->database, strerror(errno));
}

int
repl_copy_suspend(struct repl_copy *copy, const char *comment)
{
    char *dup = strdup(comment ? comment : "");
    if (!dup)
        return -ENOMEM;
    pthread_mutex_lock(&copy->lock);
    free(copy->cmd_comment);
    copy->cmd_comment = dup;
    copy->cmd_suspend = true;
    copy->cmd_resume = false;
    pthread_mutex_unlock(&copy->lock);
    wake(copy);
    return 0;
}

int
repl_copy_resume(struct repl_copy *copy)
{
    pthread_mutex_lock(&copy->lock);
    copy->cmd_resume = true;
    copy->cmd_suspend = false;
    pthread_mutex_unlock(&copy->lock);
    wake(copy);
    return 0;
}

int
repl_copy_reseed(struct repl_copy *copy)
{
    pthread_mutex_lock(&copy->lock);
    copy->cmd_reseed = true;
    copy->cmd_suspend = false;
    copy->cmd_resume = false;
    pthread_mutex_unlock(&copy->lock);
    wake(copy);
    return 0;
}

/* Records the suspension in copy.conf, so a restart keeps it. Returns "" or why not. */
static const char *
persist_suspension(struct repl_copy *c, bool suspended, const char *comment)
{
    c->conf.suspended = suspended;
    snprintf(c->conf.suspend_comment, sizeof(c->conf.suspend_comment), "%s",
             suspended ? comment : "");
    /* One line of text in the file: anything else in a comment becomes '?'. */
    for (char *p = c->conf.suspend_comment; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    char *why = NULL;
    if (repl_copy_conf_write(c->dir, &c->conf, &why) == 0)
        return "";
    log_error("copy %s: %s", c->database, why ? why : "cannot rewrite copy.conf");
    free(why);
    return suspended ? " (not kept across a restart: copy.conf cannot be written)"
                     : " (copy.conf still says suspended: it cannot be written)";
}

/* Enters Initializing and starts over: the copy (if it exists) and a connection; or, for a
 * copy suspended before a restart, Suspended again. */
static void
begin(struct repl_copy *c)
{
    c->st.inspection_failures = 0;
    c->retry_ms = c->retry_min_ms;
    c->next_net = 0;
    if (c->conf.suspended) {
        if (!c->store && repl_copy__open_store(c) < 0 && c->st.state == REPL_COPY_FAILED)
            return;
        repl_copy__set_state(c, REPL_COPY_SUSPENDED, "%s", c->conf.suspend_comment);
        return;
    }
    repl_copy__set_state(c, REPL_COPY_INITIALIZING, "%s copy, from %u network(s)",
                         c->conf.role == REPL_ROLE_STANDBY ? "standby" : "passive",
                         c->conf.n_sources);
    if (!c->store) {
        int ret = repl_copy__open_store(c);
        if (ret < 0 && ret != -ENOENT)
            return; /* Failed, with the reason */
    }
    repl_copy__connect(c);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct repl_copy *c = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_error("copy %s: reading its wake-up: %s", c->database, strerror(errno));
    pthread_mutex_lock(&c->lock);
    bool stop = c->cmd_stop, suspend = c->cmd_suspend, resume = c->cmd_resume;
    bool reseed = c->cmd_reseed;
    char *comment = c->cmd_comment;
    c->cmd_suspend = c->cmd_resume = c->cmd_reseed = false;
    c->cmd_comment = NULL;
    pthread_mutex_unlock(&c->lock);
    if (stop) {
        free(comment);
        event_base_loopbreak(c->base);
        return;
    }
    if (reseed) {
        repl_copy__reseed_start(c);
    } else if (suspend) {
        repl_copy__disconnect(c);
        evtimer_del(c->retry_ev);
        /* Suspending again replaces the comment, and says so. */
        bool again = c->st.state == REPL_COPY_SUSPENDED;
        const char *note = persist_suspension(c, true, comment ? comment : "");
        repl_copy__set_state(c, REPL_COPY_SUSPENDED, "%s%s", c->conf.suspend_comment, note);
        if (again)
            event_emit(TDM_EV_REPL_COPY_SUSPENDED, c->database,
                       "copy of %s stays Suspended, now: %s", c->database, c->st.message);
    } else if (resume && (c->st.state == REPL_COPY_SUSPENDED || c->st.state == REPL_COPY_FAILED)) {
        evtimer_del(c->retry_ev);
        if (c->conf.suspended)
            persist_suspension(c, false, "");
        begin(c);
    }
    free(comment);
}

/* Every second: the receive rate, a standby's replay as its lag passes, the status. */
static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct repl_copy *c = arg;
    c->st.bytes_per_second = c->st.bytes_received - c->bytes_at_tick;
    c->bytes_at_tick = c->st.bytes_received;
    if (c->store && c->st.state != REPL_COPY_SUSPENDED && c->st.state != REPL_COPY_FAILED)
        repl_copy__replay_tick(c);
    repl_copy__seed_tick(c);
    repl_copy__publish(c);
}

void
repl_copy__replay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct repl_copy *c = arg;
    if (c->store && c->st.state != REPL_COPY_SUSPENDED && c->st.state != REPL_COPY_FAILED)
        repl_copy__replay_tick(c);
}

static void *
thread_main(void *arg)
{
    struct repl_copy *c = arg;
    /* Without its thread the copy still works, syncing inline on this one. */
    int oret = offload_new(c->base, 1, &c->syncer);
    if (oret < 0)
        log_warn("copy %s: no sync thread (%s): the copy syncs on its receiving thread",
                 c->database, tdm_strerror(oret));
    repl_copy__seed_clean_leftovers(c);
    begin(c);
    event_base_dispatch(c->base);
    repl_copy__disconnect(c);
    repl_copy__seed_abort(c);
    /* Ends a running sync job (its end runs here, before the store closes); a sync started
     * from that end runs inline. */
    struct offload *syncer = c->syncer;
    c->syncer = NULL;
    offload_free(&syncer);
    if (c->store) {
        int ret = store_copy_close(&c->store);
        if (ret < 0)
            log_error("copy %s: closed with an error: %s", c->database, tdm_strerror(ret));
    }
    return NULL;
}

/* ---- start and stop ---- */

static void
copy_free(struct repl_copy *c)
{
    if (c->tick_ev)
        event_free(c->tick_ev);
    if (c->replay_ev)
        event_free(c->replay_ev);
    if (c->probe_ev)
        event_free(c->probe_ev);
    if (c->retry_ev)
        event_free(c->retry_ev);
    if (c->wake_ev)
        event_free(c->wake_ev);
    if (c->base)
        event_base_free(c->base);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    if (c->ssl_ctx)
        SSL_CTX_free(c->ssl_ctx);
    repl_zstd_free(&c->zstd);
    free(c->raw);
    free(c->pending);
    if (c->key) {
        sodium_memzero(c->key, strlen(c->key));
        free(c->key);
    }
    free(c->database);
    free(c->dir);
    free(c->server_name);
    free(c->cmd_comment);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg);
static void probe_cb(evutil_socket_t fd, short what, void *arg);

int
repl_copy_start(const struct repl_copy_options *opt, struct repl_copy **copy_r, char **error_r)
{
    *error_r = NULL;
    struct repl_copy *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    c->wake_fd = -1;
    c->seed_fd = -1;
    c->conf = *opt->conf;
    for (unsigned i = 0; i < c->conf.n_sources; i++)
        for (unsigned j = 0; opt->networks && j < opt->n_networks; j++)
            if (!strcmp(opt->networks[j].name, c->conf.sources[i].network) &&
                opt->networks[j].address.family == c->conf.sources[i].endpoint.address.family)
                c->local[i] = opt->networks[j].address;
    c->store_opt = *opt->store;
    c->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->retry_min_ms = opt->retry_min_ms ? opt->retry_min_ms : DEFAULT_RETRY_MIN_MS;
    c->retry_max_ms = opt->retry_max_ms ? opt->retry_max_ms : DEFAULT_RETRY_MAX_MS;
    c->probe_ms = opt->probe_ms ? opt->probe_ms : DEFAULT_PROBE_MS;
    c->st.role = c->conf.role;
    c->st.state = REPL_COPY_INITIALIZING;
    c->published = c->st;
    c->database = strdup(opt->database);
    c->dir = strdup(opt->dir);
    c->server_name = strdup(opt->server_name);
    c->key = strdup(opt->key);
    c->raw = malloc(REPL_WIRE_CHUNK_MAX);
    int ret = -ENOMEM;
    if (!c->database || !c->dir || !c->server_name || !c->key || !c->raw ||
        repl_zstd_new(REPL_ZSTD_LEVEL_DEFAULT, &c->zstd) < 0)
        goto fail;
    ret = tls_client_ctx_new(opt->ca_file, opt->cert_file, opt->key_file, &c->ssl_ctx, error_r);
    if (ret < 0)
        goto fail;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd < 0) {
        ret = -errno;
        goto fail;
    }
    c->base = event_base_new();
    ret = -ENOMEM;
    if (!c->base)
        goto fail;
    c->wake_ev = event_new(c->base, c->wake_fd, EV_READ | EV_PERSIST, wake_cb, c);
    c->retry_ev = evtimer_new(c->base, retry_cb, c);
    c->probe_ev = evtimer_new(c->base, probe_cb, c);
    c->tick_ev = event_new(c->base, -1, EV_PERSIST, tick_cb, c);
    c->replay_ev = evtimer_new(c->base, repl_copy__replay_cb, c);
    struct timeval second = {1, 0};
    if (!c->wake_ev || !c->retry_ev || !c->probe_ev || !c->tick_ev || !c->replay_ev ||
        event_add(c->wake_ev, NULL) < 0 || event_add(c->tick_ev, &second) < 0)
        goto fail;
    ret = -pthread_create(&c->thread, NULL, thread_main, c);
    if (ret < 0)
        goto fail;
    *copy_r = c;
    return 0;
fail:
    if (!*error_r && asprintf(error_r, "cannot start the agent of copy %s: %s", opt->database,
                              tdm_strerror(ret)) < 0)
        *error_r = NULL;
    copy_free(c);
    return ret;
}

void
repl_copy_stop(struct repl_copy **copy)
{
    struct repl_copy *c = *copy;
    if (!c)
        return;
    *copy = NULL;
    pthread_mutex_lock(&c->lock);
    c->cmd_stop = true;
    pthread_mutex_unlock(&c->lock);
    wake(c);
    pthread_join(c->thread, NULL);
    copy_free(c);
}

/* ---- timers owned here, acting through the link ---- */

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct repl_copy *c = arg;
    c->next_net = 0;
    repl_copy__connect(c);
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    repl_copy__probe(arg);
}

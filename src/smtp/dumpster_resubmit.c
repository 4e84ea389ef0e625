/*
 * Resubmission from the transport dumpster (dumpster_resubmit.h): entries one after the other,
 * each a recipient lookup for its route and one LMTP relay (smtp_relay.c) with its delivery ids.
 * The listing and each entry's read (up to the body limit, 64 MiB) run on the run's own helper
 * thread (lib/offload.h), so the loop that serves the admin API never waits for the disk.
 */
#include "smtp/dumpster_resubmit.h"

#include "lib/err.h"
#include "lib/event.h"
#include "lib/log.h"
#include "lib/offload.h"
#include "rcpt/rcpt_lookup.h"
#include "smtp/dumpster.h"
#include "smtp/smtp_int.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dumpster_resubmit {
    struct event_base *base;
    const struct tdm_config *cfg;
    char database[256];
    struct rcpt_lookup *rl;
    char **paths;
    size_t n_paths, next;
    struct dumpster_resubmit_counts counts;
    dumpster_resubmit_cb *cb;
    void *ctx;
    struct event *step; /* runs the next entry from the loop, never from a callback's depth */
    struct offload *io; /* the listing and the reads; one job at a time */
    char datadir[4096];
    int status; /* of the listing */
    /* The entry in flight. */
    uint8_t *buf;
    struct dumpster_decoded d;
    struct smtp_path sender;
    struct smtp_path *rcpts;
    const struct smtp_path **rcpt_ptrs;
    uint8_t (*ids)[16];
    struct smtp_relay *relay;
};

static void
entry_clear(struct dumpster_resubmit *rs)
{
    dumpster_decoded_clear(&rs->d);
    free(rs->buf);
    free(rs->rcpts);
    free(rs->rcpt_ptrs);
    free(rs->ids);
    rs->buf = NULL;
    rs->rcpts = NULL;
    rs->rcpt_ptrs = NULL;
    rs->ids = NULL;
}

static void
finish(struct dumpster_resubmit *rs)
{
    event_emit(TDM_EV_DUMPSTER_RESUBMITTED, rs->database,
               "resubmitted %" PRIu64 " message(s) of %s: %" PRIu64 " recipient(s) taken, %" PRIu64
               " deferred, %" PRIu64 " refused",
               rs->counts.messages, rs->database, rs->counts.resubmitted, rs->counts.deferred,
               rs->counts.refused);
    struct dumpster_resubmit_counts c = rs->counts;
    dumpster_resubmit_cb *cb = rs->cb;
    void *ctx = rs->ctx;
    int status = rs->status;
    entry_clear(rs);
    for (size_t i = 0; i < rs->n_paths; i++)
        free(rs->paths[i]);
    free(rs->paths);
    rcpt_lookup_free(&rs->rl);
    event_free(rs->step);
    offload_free(&rs->io); /* idle: finish runs from step_cb, with no job in flight */
    free(rs);
    cb(ctx, status, &c);
}

static void
schedule(struct dumpster_resubmit *rs)
{
    event_active(rs->step, 0, 0);
}

/* The entry in flight did not go out: every recipient of it counts as deferred (transient:
 * a later run may send it) or refused. */
static void
entry_not_sent(struct dumpster_resubmit *rs, bool transient, const char *why)
{
    event_emit(TDM_EV_DUMPSTER_RESUBMIT_REFUSED, rs->database, "cannot resubmit %s: %s",
               rs->paths[rs->next - 1], why);
    uint64_t n = rs->d.e.n_rcpts ? rs->d.e.n_rcpts : 1;
    if (transient)
        rs->counts.deferred += n;
    else
        rs->counts.refused += n;
    entry_clear(rs);
    schedule(rs);
}

static void
entry_refused(struct dumpster_resubmit *rs, const char *why)
{
    entry_not_sent(rs, false, why);
}

static void
relay_done(void *ctx, const struct smtp_verdict *v, const int *codes)
{
    struct dumpster_resubmit *rs = ctx;
    rs->relay = NULL;
    /* No codes: the relay did not reach the mailbox server, or lost it (transient). */
    for (size_t i = 0; i < rs->d.e.n_rcpts; i++) {
        if (codes && codes[i] / 100 == 2)
            rs->counts.resubmitted++;
        else if (!codes || codes[i] / 100 == 4)
            rs->counts.deferred++;
        else
            rs->counts.refused++;
    }
    if (v->code / 100 != 2)
        event_emit(TDM_EV_DUMPSTER_RESUBMIT_REFUSED, rs->database, "resubmitting %s: %d %s",
                   rs->paths[rs->next - 1], v->code, v->text);
    entry_clear(rs);
    schedule(rs);
}

/* The route of the entry's first recipient is where it goes. */
static void
route_known(struct dumpster_resubmit *rs, int status, const struct dir_recipient *r)
{
    if (status < 0) { /* no directory answer now */
        entry_not_sent(rs, true, tdm_strerror(status));
        return;
    }
    if (r->status != DIR_RCPT_OK || r->route.status != DIR_ROUTE_OK) {
        entry_refused(rs, "its first recipient has no route in the directory now");
        return;
    }
    struct smtp_relay_request req = {
        .cms = r->route.cms,
        .address = r->route.address,
        .port = r->route.port,
        .helo = rs->cfg->server,
        .sender = &rs->sender,
        .rcpts = rs->rcpt_ptrs,
        .n_rcpts = rs->d.e.n_rcpts,
        .body_8bit = rs->d.e.body_8bit,
        .body = rs->d.e.body_len ? rs->d.e.body : (const uint8_t *)"",
        .body_len = rs->d.e.body_len,
        .delivery_ids = (const uint8_t(*)[16])rs->ids,
    };
    int ret = smtp__relay_start(rs->base, &req, relay_done, rs, &rs->relay);
    if (ret < 0)
        entry_not_sent(rs, true, tdm_strerror(ret));
}

static void
lookup_cb(void *ctx, int status, const struct dir_recipient *r, bool from_cache)
{
    (void)from_cache;
    route_known(ctx, status, r);
}

static int
parse_path(const char *mailbox, unsigned flags, struct smtp_path *path)
{
    char buf[DUMPSTER_ADDR_MAX + 3];
    size_t n = strlen(mailbox), used;
    const char *why;
    buf[0] = '<';
    memcpy(buf + 1, mailbox, n);
    buf[n + 1] = '>';
    return smtp_path_parse(buf, n + 2, flags, path, &used, &why);
}

/* One job on the helper thread: the listing (path NULL) or the read of path. It carries copies
 * of what it reads; the results are the run's once done runs on the loop. */
struct io_job {
    struct dumpster_resubmit *rs; /* not touched on the thread */
    char datadir[4096], database[256];
    int64_t since;
    const char *path; /* the run's, unchanged until the job is done */
    char **paths;
    size_t n_paths;
    uint8_t *buf;
    size_t len;
    int ret;
};

static void
io_work(void *arg)
{
    struct io_job *j = arg;
    if (!j->path)
        j->ret = dumpster_list(j->datadir, j->database, j->since, &j->paths, &j->n_paths);
    else
        j->ret = dumpster_read(j->path, &j->buf, &j->len);
}

static void entry_read(struct dumpster_resubmit *rs, int ret, size_t len);

static void
io_done(void *arg, bool ran)
{
    struct io_job *j = arg;
    struct dumpster_resubmit *rs = j->rs;
    /* Never dropped: offload_free runs only in finish(), with no job in flight. */
    TDM_ASSERT(ran);
    if (!j->path) {
        rs->status = j->ret;
        rs->paths = j->paths;
        rs->n_paths = j->ret < 0 ? 0 : j->n_paths;
        log_info("dumpster: resubmitting %zu message(s) of %s", rs->n_paths, rs->database);
        free(j);
        schedule(rs);
        return;
    }
    rs->buf = j->buf;
    int ret = j->ret;
    size_t len = j->len;
    free(j);
    entry_read(rs, ret, len);
}

static int
io_submit(struct dumpster_resubmit *rs, const char *path, int64_t since)
{
    struct io_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->rs = rs;
    snprintf(j->datadir, sizeof(j->datadir), "%s", rs->datadir);
    snprintf(j->database, sizeof(j->database), "%s", rs->database);
    j->since = since;
    j->path = path;
    int ret = offload_submit(rs->io, io_work, io_done, j);
    if (ret < 0)
        free(j);
    return ret;
}

static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dumpster_resubmit *rs = arg;
    if (rs->next == rs->n_paths) {
        finish(rs);
        return;
    }
    const char *path = rs->paths[rs->next++];
    int ret = io_submit(rs, path, 0);
    if (ret < 0) { /* the read could not be queued now: a later run may */
        rs->counts.messages++;
        entry_not_sent(rs, true, tdm_strerror(ret));
    }
}

/* The entry in rs->buf was read (ret, len: dumpster_read's): decode it and look up its route. */
static void
entry_read(struct dumpster_resubmit *rs, int ret, size_t len)
{
    const char *why = NULL;
    if (ret == -ENOENT) { /* pruned meanwhile */
        schedule(rs);
        return;
    }
    rs->counts.messages++;
    if (ret < 0) {
        entry_refused(rs, tdm_strerror(ret));
        return;
    }
    if (dumpster_entry_decode(rs->buf, len, &rs->d, &why) < 0) {
        entry_refused(rs, why);
        return;
    }
    size_t n = rs->d.e.n_rcpts;
    rs->rcpts = calloc(n, sizeof(*rs->rcpts));
    rs->rcpt_ptrs = calloc(n, sizeof(*rs->rcpt_ptrs));
    rs->ids = calloc(n, sizeof(*rs->ids));
    if (!rs->rcpts || !rs->rcpt_ptrs || !rs->ids) {
        entry_refused(rs, "out of memory");
        return;
    }
    if (rs->d.e.sender[0] ? parse_path(rs->d.e.sender, 0, &rs->sender) < 0
                          : parse_path("", SMTP_PATH_NULL_OK, &rs->sender) < 0) {
        entry_refused(rs, "its sender does not parse");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (parse_path(rs->d.e.rcpts[i].address, SMTP_PATH_POSTMASTER_OK, &rs->rcpts[i]) < 0) {
            entry_refused(rs, "a recipient does not parse");
            return;
        }
        rs->rcpt_ptrs[i] = &rs->rcpts[i];
        memcpy(rs->ids[i], rs->d.e.rcpts[i].id, 16);
    }
    struct dir_recipient r;
    ret = rcpt_lookup_find(rs->rl, rs->rcpts[0].local, rs->rcpts[0].domain, &r, lookup_cb, rs);
    if (ret != RCPT_LOOKUP_PENDING)
        route_known(rs, ret, &r);
}

int
dumpster_resubmit_start(struct event_base *base, const struct tdm_config *cfg, const char *database,
                        int64_t since, dumpster_resubmit_cb *cb, void *ctx)
{
    if (!dumpster_database_ok(database))
        return TDM_EINVAL;
    struct dumpster_resubmit *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    rs->base = base;
    rs->cfg = cfg;
    rs->cb = cb;
    rs->ctx = ctx;
    snprintf(rs->database, sizeof(rs->database), "%s", database);
    rs->step = event_new(base, -1, 0, step_cb, rs);
    int ret = rs->step ? rcpt_lookup_new(base, cfg, &rs->rl) : -ENOMEM;
    if (ret < 0) {
        if (rs->step)
            event_free(rs->step);
        free(rs);
        return ret;
    }
    snprintf(rs->datadir, sizeof(rs->datadir), "%s", cfg->datadir);
    ret = offload_new(base, 1, &rs->io);
    if (ret == 0 && (ret = io_submit(rs, NULL, since)) < 0)
        offload_free(&rs->io);
    if (ret < 0) {
        rcpt_lookup_free(&rs->rl);
        event_free(rs->step);
        free(rs);
        return ret;
    }
    return 0; /* the listing's done schedules the first step */
}

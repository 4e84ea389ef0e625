/*
 * /v1/status, /metrics and /v1/events (docs/formats/admin-api.md). Status and metrics ask the
 * core (DB_STATUS, STATUS) and answer when it replies; events are read from the events file
 * (docs/events.md), which every process of the server appends to, so the admin worker needs
 * nothing from the core to serve them. A follow stream polls the file: events are rare and a
 * quarter-second delay is nothing to an operator, and polling survives rotation without any
 * inotify bookkeeping.
 */
#include "admin/admin_int.h"

#include "lib/core_link.h"
#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STREAM_POLL_MS 250
#define STREAM_HEARTBEAT_S 15         /* a blank line keeps idle proxies and clients honest */
#define STREAM_READ_MAX (256 * 1024)  /* per poll, so one stream never hogs the loop */
#define STREAM_BACKLOG_MAX (1u << 20) /* unsent bytes for a slow client before we wait */

/* ---- who may see (and change) this server's state ---- */

int
admin_authorize_server(struct admin_call *call, enum dir_right need)
{
    if (call->who == ADMIN_WHO_LOCAL)
        return 1;
    void *state;
    MDB_txn *txn;
    if (admin_dir_begin(call, &state, &txn) < 0)
        return 0;
    const char *self = call->srv->cfg->server;
    struct dir_object o;
    int ret = dir_object_get(state, txn, DIR_KIND_SERVER, self, &o);
    dir_object_clear(&o);
    int ok;
    if (ret == 0) {
        ok = admin_authorize(call, state, txn, DIR_KIND_SERVER, self, need, false);
    } else if (ret == TDM_ENOTFOUND) {
        bool admin = false;
        ret = admin_is_admin(call, state, txn, &admin);
        ok = ret == 0 && admin;
        if (ret < 0) {
            admin_reply_storage_error(call, ret, "group/admins");
        } else if (!admin) {
            char who[DIR_NAME_MAX + 16], obj[DIR_NAME_MAX + 16];
            admin_who_text(call, who, sizeof(who));
            snprintf(obj, sizeof(obj), "server/%s", self);
            admin_reply_error(call, 403,
                              json_pack("{s:s,s:s,s:s}", "object", obj, "principal", who, "right",
                                        dir_right_name(need)),
                              "%s lacks %s on %s (has none: the directory has no such object "
                              "yet, so only admins may %s this server's state)",
                              who, dir_right_name(need), obj,
                              need == DIR_RIGHT_READ ? "read" : "change");
        }
    } else {
        admin_reply_storage_error(call, ret, self);
        ok = 0;
    }
    mdb_txn_abort(txn);
    return ok;
}

/* ---- the supervisor process ---- */

/* tandemd's pid (our parent) and how long it has run, from /proc. */
static void
supervisor_uptime(pid_t *pid_r, uint64_t *uptime_r)
{
    *pid_r = getppid();
    *uptime_r = 0;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)*pid_r);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Field 22 (starttime, clock ticks after boot) counts from the last ')': the command
     * name may hold spaces. */
    char *p = strrchr(buf, ')');
    unsigned long long start = 0;
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (!p || sscanf(p + 1, "%llu", &start) != 1)
        return;
    double up = 0;
    f = fopen("/proc/uptime", "re");
    if (f) {
        if (fscanf(f, "%lf", &up) != 1)
            up = 0;
        fclose(f);
    }
    double s = up - (double)start / (double)sysconf(_SC_CLK_TCK);
    *uptime_r = s > 0 ? (uint64_t)s : 0;
}

/* ---- /v1/status ---- */

static json_t *
roles_json(unsigned roles)
{
    json_t *a = json_array();
    for (unsigned bit = 1; bit && bit <= TDM_ROLE_DIRECTORY; bit <<= 1)
        if (roles & bit)
            json_array_append_new(a, json_string(tdm_config_role_name((enum tdm_role)bit)));
    return a;
}

static json_t *
str_json(struct ipc_str s)
{
    return json_stringn(s.ptr, s.len);
}

static void
status_reply_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_DB_STATUS_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const struct tdm_config *cfg = call->srv->cfg;
    json_t *dbs = json_array();
    const struct ipc_db_status_reply *r = &reply->u.db_status_reply;
    for (uint32_t i = 0; i < r->n_databases; i++) {
        const struct ipc_db_status *d = &r->databases[i];
        const char *state = ipc_db_state_name(d->state);
        json_array_append_new(
            dbs,
            json_pack("{s:o,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "name", str_json(d->name),
                      "kind", str_json(d->kind), "state", state ? state : "unknown", "last_lsn",
                      (json_int_t)d->last_lsn, "durable_lsn", (json_int_t)d->durable_lsn,
                      "applied_lsn", (json_int_t)d->applied_lsn, "checkpoint_lsn",
                      (json_int_t)d->checkpoint_lsn, "current_generation",
                      (json_int_t)d->current_generation, "lowest_generation",
                      (json_int_t)d->lowest_generation, "commits", (json_int_t)d->commits, "syncs",
                      (json_int_t)d->syncs));
        /* Only a database in sync mode has one: whether replies wait for a passive copy. */
        if (d->sync)
            json_object_set_new(json_array_get(dbs, json_array_size(dbs) - 1), "sync",
                                json_string(d->sync == 1 ? "sync" : "degraded"));
    }
    /* Each [cms]: its address, its databases, and whether its address is up here. */
    json_t *cms = json_array();
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        const struct tdm_config_cms *c = &cfg->cms[i];
        json_t *names = json_array();
        for (unsigned d = 0; d < c->n_databases; d++)
            json_array_append_new(names, json_string(c->databases[d]));
        const char *state = ipc_cms_state_name(call->cms_state[i]);
        json_array_append_new(
            cms, json_pack("{s:s,s:s,s:o,s:s,s:s,s:b}", "name", c->name, "address", c->address.text,
                           "databases", names, "mount_dial",
                           tdm_config_mount_dial_name(c->mount_dial), "state",
                           state ? state : "unknown", "up", call->cms_state[i] == TDM_IPC_CMS_UP));
        /* Only a CMS whose address lives on an interface (docs/cluster.md, "CMS address"). */
        if (c->interface[0])
            json_object_set_new(json_array_get(cms, json_array_size(cms) - 1), "interface",
                                json_string(c->interface));
    }
    pid_t pid;
    uint64_t uptime;
    supervisor_uptime(&pid, &uptime);
    admin_reply_json(call, 200,
                     json_pack("{s:s,s:s,s:o,s:s,s:i,s:I,s:o,s:o}", "server", cfg->server, "site",
                               cfg->site, "roles", roles_json(cfg->roles), "version",
                               TANDEM_VERSION, "pid", (int)pid, "uptime_s", (json_int_t)uptime,
                               "databases", dbs, "cms", cms));
}

/* The CMS states first (kept in the call by config index), then the databases. */
static void
status_cms_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct admin_call *call = ctx;
    if (status < 0 || reply->type != TDM_IPC_CMS_STATUS_REPLY) {
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const struct tdm_config *cfg = call->srv->cfg;
    const struct ipc_cms_status_reply *r = &reply->u.cms_status_reply;
    for (unsigned i = 0; i < cfg->n_cms; i++)
        for (uint32_t j = 0; j < r->n_cms; j++)
            if (r->cms[j].name.len == strlen(cfg->cms[i].name) &&
                !memcmp(r->cms[j].name.ptr, cfg->cms[i].name, r->cms[j].name.len))
                call->cms_state[i] = r->cms[j].state;
    admin_ask_core(call, core_link_db_status, status_reply_cb);
}

void
admin_ask_core(struct admin_call *call,
               int (*req)(struct core_link *, core_link_reply_cb *, void *), core_link_reply_cb *cb)
{
    int ret = req(call->srv->core, cb, call);
    if (ret < 0) {
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
        return;
    }
    admin_call_watch_close(call);
}

void
admin_status_serve(struct admin_call *call)
{
    if (admin_authorize_server(call, DIR_RIGHT_READ) != 1)
        return;
    admin_ask_core(call, core_link_cms_status, status_cms_cb);
}

/* ---- /metrics ---- */

/* Per-database figures, labelled by database. */
static void
metrics_db(struct evbuffer *out, const struct ipc_db_status_reply *r)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } m[] = {
        {"tandem_db_last_lsn", "gauge", "LSN of the last record written",
         offsetof(struct ipc_db_status, last_lsn)},
        {"tandem_db_durable_lsn", "gauge", "LSN up to which the log is synced",
         offsetof(struct ipc_db_status, durable_lsn)},
        {"tandem_db_applied_lsn", "gauge", "LSN applied to LMDB",
         offsetof(struct ipc_db_status, applied_lsn)},
        {"tandem_db_checkpoint_lsn", "gauge", "LSN of the last checkpoint",
         offsetof(struct ipc_db_status, checkpoint_lsn)},
        {"tandem_db_current_generation", "gauge", "log generation being written",
         offsetof(struct ipc_db_status, current_generation)},
        {"tandem_db_lowest_generation", "gauge", "oldest log generation kept",
         offsetof(struct ipc_db_status, lowest_generation)},
        {"tandem_db_commits_total", "counter", "records committed since mount",
         offsetof(struct ipc_db_status, commits)},
        {"tandem_db_syncs_total", "counter", "log fdatasyncs since mount",
         offsetof(struct ipc_db_status, syncs)},
    };
    for (size_t k = 0; k < sizeof(m) / sizeof(m[0]); k++) {
        evbuffer_add_printf(out, "# HELP %s %s.\n# TYPE %s %s\n", m[k].name, m[k].help, m[k].name,
                            m[k].type);
        for (uint32_t i = 0; i < r->n_databases; i++) {
            const struct ipc_db_status *d = &r->databases[i];
            uint64_t v;
            memcpy(&v, (const char *)d + m[k].off, sizeof(v));
            /* Database names are checked by the core (no quotes or backslashes: ipc.h). */
            evbuffer_add_printf(out, "%s{database=\"%.*s\"} %" PRIu64 "\n", m[k].name,
                                (int)d->name.len, d->name.ptr, v);
        }
    }
    evbuffer_add_printf(out, "# HELP tandem_db_state Database state (1 for the current one).\n"
                             "# TYPE tandem_db_state gauge\n");
    for (uint32_t i = 0; i < r->n_databases; i++) {
        const struct ipc_db_status *d = &r->databases[i];
        for (uint16_t s = TDM_IPC_DB_MOUNTED; s <= TDM_IPC_DB_DISK_RESERVE; s++)
            evbuffer_add_printf(out, "tandem_db_state{database=\"%.*s\",state=\"%s\"} %d\n",
                                (int)d->name.len, d->name.ptr, ipc_db_state_name(s), d->state == s);
    }
}

struct metrics_call {
    struct admin_call *call;
    struct evbuffer *out;
};

static void
metrics_finish(struct admin_call *call, struct evbuffer *out)
{
    const struct admin_stats *st = &call->srv->stats;
    pid_t pid;
    uint64_t uptime;
    supervisor_uptime(&pid, &uptime);
    evbuffer_add_printf(out,
                        "# HELP tandem_uptime_seconds Seconds since tandemd started.\n"
                        "# TYPE tandem_uptime_seconds gauge\ntandem_uptime_seconds %" PRIu64 "\n",
                        uptime);
    static const char *const names[] = {"requests", "auth_failures", "forbidden", "commits",
                                        "commit_failures"};
    const uint64_t values[] = {st->requests, st->auth_failures, st->forbidden, st->commits,
                               st->commit_failures};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        evbuffer_add_printf(out,
                            "# TYPE tandem_admin_%s_total counter\n"
                            "tandem_admin_%s_total{transport=\"%s\"} %" PRIu64 "\n",
                            names[i], names[i],
                            call->srv->transport == ADMIN_TRANSPORT_LOCAL ? "socket" : "tls",
                            values[i]);
    admin_reply_buffer(call, 200, "text/plain; version=0.0.4", out);
    evbuffer_free(out);
}

static void
metrics_copies_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct metrics_call *mc = ctx;
    struct admin_call *call = mc->call;
    struct evbuffer *out = mc->out;
    free(mc);
    if (status < 0 || reply->type != TDM_IPC_COPY_STATUS_REPLY) {
        evbuffer_free(out);
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    admin_metrics_copies(out, &reply->u.copy_status_reply);
    metrics_finish(call, out);
}

static void
metrics_db_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct metrics_call *mc = ctx;
    struct admin_call *call = mc->call;
    struct evbuffer *out = mc->out;
    if (status < 0 || reply->type != TDM_IPC_DB_STATUS_REPLY) {
        evbuffer_free(out);
        free(mc);
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    metrics_db(out, &reply->u.db_status_reply);
    /* Then the copies this server holds, from the same core. */
    int ret = core_link_copy_status(call->srv->core, metrics_copies_cb, mc);
    if (ret < 0) {
        evbuffer_free(out);
        free(mc);
        admin_reply_error(call, 503, NULL, "the core process is not reachable: %s",
                          tdm_strerror(ret));
    }
}

static void
metrics_core_cb(void *ctx, int status, const struct ipc_msg *reply)
{
    struct metrics_call *mc = ctx;
    if (status < 0 || reply->type != TDM_IPC_STATUS_REPLY) {
        struct admin_call *call = mc->call;
        evbuffer_free(mc->out);
        free(mc);
        admin_reply_error(call, 503, NULL, "the core process did not answer: %s",
                          status < 0 ? tdm_strerror(status) : "unexpected reply");
        return;
    }
    const struct ipc_status_reply *r = &reply->u.status_reply;
    for (uint32_t i = 0; i < r->n_counters; i++) {
        /* The core names its counters for Prometheus already ("tandem_core_..."); anything
         * else gets that prefix so every metric of ours starts with tandem_. */
        const struct ipc_str *n = &r->counters[i].name;
        const char *prefix = n->len >= 7 && !memcmp(n->ptr, "tandem_", 7) ? "" : "tandem_core_";
        bool total = n->len >= 6 && !memcmp(n->ptr + n->len - 6, "_total", 6);
        evbuffer_add_printf(mc->out, "# TYPE %s%.*s %s\n%s%.*s %" PRIu64 "\n", prefix, (int)n->len,
                            n->ptr, total ? "counter" : "gauge", prefix, (int)n->len, n->ptr,
                            r->counters[i].value);
    }
    int ret = core_link_db_status(mc->call->srv->core, metrics_db_cb, mc);
    if (ret < 0) {
        struct admin_call *call = mc->call;
        evbuffer_free(mc->out);
        free(mc);
        admin_reply_error(call, 503, NULL, "the core process is not reachable: %s",
                          tdm_strerror(ret));
    }
}

void
admin_metrics_serve(struct admin_call *call)
{
    if (admin_authorize_server(call, DIR_RIGHT_READ) != 1)
        return;
    struct metrics_call *mc = calloc(1, sizeof(*mc));
    if (!mc || !(mc->out = evbuffer_new()))
        log_fatal("out of memory");
    mc->call = call;
    int ret = core_link_status(call->srv->core, metrics_core_cb, mc);
    if (ret < 0) {
        evbuffer_free(mc->out);
        free(mc);
        admin_reply_error(call, 503, NULL,
                          "the core process is not reachable (starting or restarting): %s",
                          tdm_strerror(ret));
        return;
    }
    admin_call_watch_close(call);
}

/* ---- /v1/events ---- */

struct admin_stream {
    struct admin_server *srv;
    struct admin_call *call;
    struct admin_stream *next, *prev;
    struct event *timer;
    int old_fd;    /* <events>.1, the last rotated file, read first; -1 when done or none */
    off_t old_off; /* read up to here */
    int fd;        /* the events file, or -1 while it does not exist */
    dev_t dev;     /* what fd is, to notice rotation */
    ino_t ino;
    off_t off;             /* read up to here */
    struct evbuffer *line; /* an incomplete last line */
    int64_t since;         /* unix seconds; events before are skipped */
    bool follow;
    time_t last_sent;
};

static void
stream_free(struct admin_stream *s, bool end_reply)
{
    struct admin_server *srv = s->srv;
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->timer);
    if (s->old_fd >= 0)
        close(s->old_fd);
    if (s->fd >= 0)
        close(s->fd);
    evbuffer_free(s->line);
    if (end_reply && !s->call->gone) {
        admin_call_unwatch(s->call);
        evhttp_send_reply_end(s->call->req);
        s->call->req = NULL; /* evhttp's again */
    }
    admin_call_free(s->call); /* frees a request detached by the client's going */
    free(s);
}

void
admin_streams_close_all(struct admin_server *srv)
{
    while (srv->streams)
        stream_free(srv->streams, true);
}

/* An event line's time ("ts":"2026-11-25T14:35:06.123Z") in unix seconds; -1 if it has none. */
static int64_t
line_time(const char *line)
{
    const char *p = strstr(line, "\"ts\":\"");
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!p || !strptime(p + 6, "%Y-%m-%dT%H:%M:%S", &tm))
        return -1;
    return (int64_t)timegm(&tm);
}

/* Opens (or reopens after rotation) the events file. */
static void
stream_open(struct admin_stream *s)
{
    const char *path = s->srv->cfg->log.events;
    struct stat st;
    if (!path || stat(path, &st) < 0)
        return;
    if (s->fd >= 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->off = 0;
    evbuffer_drain(s->line, evbuffer_get_length(s->line));
}

/* The file rotated away last, read before the current one so a rotation does not hide the
 * events just before it. tandemd does not rotate; logrotate's default is to rename to
 * "<events>.1" (and with delaycompress, to leave that one uncompressed), which is the one
 * name looked for: older or compressed generations are the operator's archive. Opened after
 * the current file: a rotation in between makes ".1" the file already open, skipped by its
 * inode, so no line is served twice. */
static void
stream_open_rotated(struct admin_stream *s)
{
    char path[4096];
    struct stat st;
    if (s->fd < 0 ||
        snprintf(path, sizeof(path), "%s.1", s->srv->cfg->log.events) >= (int)sizeof(path))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* Skip it when it is the current file, or holds nothing as recent as since (its last
     * line is no newer than its last write). */
    if (fstat(fd, &st) < 0 || (st.st_dev == s->dev && st.st_ino == s->ino) ||
        (int64_t)st.st_mtime < s->since) {
        close(fd);
        return;
    }
    s->old_fd = fd;
    s->old_off = 0;
}

static void
stream_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admin_stream *s = arg;
    if (s->call->gone) { /* the client went away */
        stream_free(s, false);
        return;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(s->call->req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    struct timeval tv = {.tv_sec = 0, .tv_usec = STREAM_POLL_MS * 1000};
    if (evbuffer_get_length(bufferevent_get_output(bev)) > STREAM_BACKLOG_MAX) {
        evtimer_add(s->timer, &tv); /* a slow reader: wait for it to catch up */
        return;
    }
    /* Rotation: a new file at the path means the old one is complete. Read the old to its
     * end first (below), then switch at the next tick. */
    struct stat st;
    bool at_end = false;
    if (s->fd >= 0 && fstat(s->fd, &st) == 0 && st.st_size < s->off)
        s->off = 0; /* truncated in place */
    struct evbuffer *out = evbuffer_new();
    if (!out)
        log_fatal("out of memory");
    /* The rotated file first, then the current one, through the same line buffer: a file
     * ends with a whole line, so nothing is joined across them. */
    bool old = s->old_fd >= 0;
    int rfd = old ? s->old_fd : s->fd;
    off_t *roff = old ? &s->old_off : &s->off;
    if (rfd >= 0) {
        char buf[16384];
        size_t total = 0;
        for (;;) {
            ssize_t n = pread(rfd, buf, sizeof(buf), *roff);
            if (n <= 0) {
                at_end = true;
                break;
            }
            *roff += n;
            evbuffer_add(s->line, buf, (size_t)n);
            total += (size_t)n;
            if (total >= STREAM_READ_MAX)
                break;
        }
        char *line;
        size_t len;
        while ((line = evbuffer_readln(s->line, &len, EVBUFFER_EOL_LF))) {
            if (len && line_time(line) >= s->since) {
                evbuffer_add(out, line, len);
                evbuffer_add(out, "\n", 1);
            }
            free(line);
        }
    } else {
        at_end = true;
    }
    if (old && at_end) {
        close(s->old_fd);
        s->old_fd = -1;
        evbuffer_drain(s->line, evbuffer_get_length(s->line)); /* a torn last line: dropped */
        at_end = false; /* the current file is next, at once */
    } else if (at_end) {
        stream_open(s);
    }
    time_t now = time(NULL);
    if (evbuffer_get_length(out) == 0 && s->follow && now - s->last_sent >= STREAM_HEARTBEAT_S)
        evbuffer_add(out, "\n", 1);
    if (evbuffer_get_length(out) > 0) {
        evhttp_send_reply_chunk(s->call->req, out);
        s->last_sent = now;
    }
    evbuffer_free(out);
    if (at_end && !s->follow) {
        stream_free(s, true);
        return;
    }
    if (!at_end)
        tv.tv_usec = 0; /* more to read: come back at once, after others had their turn */
    evtimer_add(s->timer, &tv);
}

void
admin_events_serve(struct admin_call *call)
{
    if (admin_authorize_server(call, DIR_RIGHT_READ) != 1)
        return;
    int64_t since = 0;
    bool follow = false;
    if (call->query) {
        struct evkeyvalq q;
        if (evhttp_parse_query_str(call->query, &q) < 0) {
            admin_reply_error(call, 400, NULL, "the query string is malformed");
            return;
        }
        const char *v = evhttp_find_header(&q, "since");
        const char *f = evhttp_find_header(&q, "follow");
        char *end = NULL;
        if (v) {
            errno = 0;
            since = strtoll(v, &end, 10);
        }
        bool bad_since = v && (errno || !*v || *end || since < 0);
        bool bad_follow = f && strcmp(f, "0") && strcmp(f, "1");
        follow = f && !strcmp(f, "1");
        evhttp_clear_headers(&q);
        if (bad_since || bad_follow) {
            admin_reply_error(call, 400, NULL,
                              bad_since ? "since: must be unix seconds (an integer >= 0)"
                                        : "follow: must be 0 or 1");
            return;
        }
    }
    if (!call->srv->cfg->log.events) {
        admin_reply_error(call, 404, NULL, "this server writes no events file ([log] events)");
        return;
    }
    struct admin_stream *s = calloc(1, sizeof(*s));
    if (!s || !(s->line = evbuffer_new()))
        log_fatal("out of memory");
    s->srv = call->srv;
    s->call = call;
    s->fd = -1;
    s->old_fd = -1;
    s->since = since;
    s->follow = follow;
    s->last_sent = time(NULL);
    s->timer = evtimer_new(call->srv->base, stream_tick, s);
    if (!s->timer)
        log_fatal("out of memory");
    s->next = call->srv->streams;
    if (s->next)
        s->next->prev = s;
    call->srv->streams = s;
    stream_open(s);
    stream_open_rotated(s);
    admin_call_watch_close(call);
    struct evkeyvalq *h = evhttp_request_get_output_headers(call->req);
    evhttp_add_header(h, "Content-Type", "application/x-ndjson");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply_start(call->req, 200, "OK");
    struct timeval now = {0, 0};
    evtimer_add(s->timer, &now);
}

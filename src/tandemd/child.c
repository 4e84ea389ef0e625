/*
 * The part every child process (core, workers) shares: its hidden command line, the
 * configuration snapshot, the IPC channel to the supervisor and the shutdown path.
 *
 * A child's life: load the snapshot, set the log role and event sink, start its libevent loop,
 * send HELLO (workers: the core has no worker kind in ipc.h, see docs/tandemd.md), wait for
 * HELLO_REPLY, then serve until SHUTDOWN. Whatever ends the loop (SHUTDOWN, SIGTERM, the
 * supervisor's end closing) goes through the role's stop() and exit 0 via return from main,
 * so LeakSanitizer checks the child too. SHUTDOWN and SIGTERM first let a role with drain()
 * say goodbye to its clients while the loop still runs (the bytes a connection queued are
 * only sent by the loop), for at most half the deadline. A malformed message from the
 * supervisor is a bug: fatal, and the supervisor (if it is still there) restarts us.
 */
#include "tandemd/tandemd.h"

#include "lib/conn.h"
#include "lib/err.h"
#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static FILE *child_event_file; /* ours to close; NULL when events go to stderr */

/* SIGTERM's deadline, as the supervisor gives with SHUTDOWN. */
#define CHILD_SIGTERM_DEADLINE_MS 10000u
#define CHILD_DRAIN_POLL_MS 10u

struct child_ctx {
    struct event_base *base;
    struct bufferevent *bev;
    struct ipc_reader *reader;
    const struct tandemd_child_ops *ops;
    struct tdm_config *cfg;
    int config_fd;
    bool is_worker;
    bool hello_done;
    uint16_t version;          /* negotiated; frames after HELLO carry it */
    struct event *drain_timer; /* shutting down: polls ops->drain() */
    uint32_t drain_left_ms;
    int cms_fd; /* the CMS socket channel (--cms-fd), -1 without one */
};

/* For tandemd__child_send: the one child context of this process. */
static struct child_ctx *child_self;

uint16_t
tandemd__worker_kind(enum tdm_proto proto)
{
    switch (proto) {
    case TDM_PROTO_IMAP:
    case TDM_PROTO_IMAPS:
        return TDM_IPC_WORKER_IMAP;
    case TDM_PROTO_LMTP:
        return TDM_IPC_WORKER_LMTP;
    case TDM_PROTO_SMTP:
    case TDM_PROTO_SUBMISSION:
        return TDM_IPC_WORKER_SMTP;
    case TDM_PROTO_HTTP:
    case TDM_PROTO_HTTPS:
        return TDM_IPC_WORKER_HTTP;
    case TDM_PROTO_ADMIN:
    case TDM_PROTO_REPLICATION: /* the core's; never a worker (supervisor.c) */
    case TDM_PROTO_CLUSTER:
    case TDM_PROTO_COORD: /* the core's too: it binds it itself (core_coord.c) */
    case TDM_PROTO_COUNT:
        break;
    }
    return TDM_IPC_WORKER_ADMIN;
}

int
tandemd__config_from_fd(int fd, struct tdm_config **cfg_r, char **error_r)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        if (asprintf(error_r, "configuration snapshot: %s", strerror(errno)) < 0)
            *error_r = NULL;
        return err;
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len + 1);
    if (!buf)
        log_fatal("out of memory");
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            free(buf);
            if (asprintf(error_r, "configuration snapshot: short read") < 0)
                *error_r = NULL;
            return err;
        }
        got += (size_t)n;
    }
    int ret = tdm_config_load_buffer(buf, len, "<configuration snapshot>", cfg_r, error_r);
    free(buf);
    return ret;
}

void
tandemd__close_event_sink(void)
{
    event_set_sink(stderr);
    if (child_event_file)
        fclose(child_event_file);
    child_event_file = NULL;
}

void
tandemd__set_event_sink(const struct tdm_config *cfg)
{
    /* Reopened on every reload even when the path is the same, so a rotated file is let go. */
    FILE *f = NULL;
    if (cfg->log.events) {
        f = fopen(cfg->log.events, "ae");
        if (!f)
            log_error("cannot open events file %s: %s; events go to stderr", cfg->log.events,
                      strerror(errno));
    }
    event_set_sink(f ? f : stderr);
    if (child_event_file)
        fclose(child_event_file);
    child_event_file = f;
}

static void
child_send(struct child_ctx *c, const struct ipc_msg *msg)
{
    uint8_t *buf;
    size_t len;
    const char *why;
    /* Our own message breaking a rule is our bug, caught here rather than in the peer. */
    if (ipc_msg_encode_alloc(msg, &buf, &len, &why) < 0)
        log_panic("cannot encode %s: %s", ipc_type_name(msg->type), why);
    if (bufferevent_write(c->bev, buf, len) < 0)
        log_fatal("cannot queue %s to the supervisor", ipc_type_name(msg->type));
    free(buf);
}

void
tandemd__child_send(const struct ipc_msg *msg)
{
    child_send(child_self, msg);
}

/* The descriptor the supervisor queued on the CMS channel before this CMS_LISTEN; it must be
 * there (docs/formats/ipc.md), so anything else is a bug on one side or the other. */
static int
child_recv_cms_fd(struct child_ctx *c)
{
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    if (c->cms_fd < 0)
        log_fatal("IPC: CMS_LISTEN without a CMS channel");
    ssize_t n = recvmsg(c->cms_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (!cm || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
        cm->cmsg_len != CMSG_LEN(sizeof(int)) || (mh.msg_flags & MSG_CTRUNC))
        log_fatal("IPC: CMS_LISTEN without its socket on the CMS channel (%s)",
                  n < 0 ? strerror(errno) : "no descriptor");
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
    return fd;
}

static void
child_cms_listen(struct child_ctx *c, const struct ipc_msg *msg)
{
    char name[TDM_IPC_NAME_MAX + 1];
    memcpy(name, msg->u.cms.cms.ptr, msg->u.cms.cms.len);
    name[msg->u.cms.cms.len] = '\0';
    if (msg->u.cms.state == TDM_IPC_CMS_DOWN) {
        if (c->ops->cms_close)
            c->ops->cms_close(name);
        return;
    }
    int fd = child_recv_cms_fd(c);
    if (c->ops->cms_listen && msg->u.cms.proto < TDM_PROTO_COUNT)
        c->ops->cms_listen(name, (enum tdm_proto)msg->u.cms.proto, fd);
    else
        close(fd);
}

static void
child_reload(struct child_ctx *c)
{
    struct tdm_config *cfg = NULL;
    char *why = NULL;
    if (tandemd__config_from_fd(c->config_fd, &cfg, &why) < 0) {
        /* The supervisor checked what it wrote; keep going with what we have. */
        log_error("reload: %s", why ? why : "out of memory");
        free(why);
        return;
    }
    log_set_min_level(cfg->log.level);
    tandemd__set_event_sink(cfg);
    if (c->ops->reload)
        c->ops->reload(cfg);
    tdm_config_free(&c->cfg);
    c->cfg = cfg;
    log_info("configuration reloaded");
}

static void
child_drain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct child_ctx *c = arg;
    if (c->ops->drain() || c->drain_left_ms < CHILD_DRAIN_POLL_MS) {
        event_base_loopbreak(c->base);
        return;
    }
    c->drain_left_ms -= CHILD_DRAIN_POLL_MS;
    struct timeval tv = {0, CHILD_DRAIN_POLL_MS * 1000u};
    evtimer_add(c->drain_timer, &tv);
}

/* Ends the loop, after the role's drain() when it has one; the other half of deadline_ms is
 * left for stop() before the supervisor kills. */
static void
child_shutdown(struct child_ctx *c, uint32_t deadline_ms)
{
    if (c->drain_timer)
        return; /* already on its way */
    if (c->ops->drain)
        c->drain_timer = evtimer_new(c->base, child_drain_cb, c);
    if (!c->drain_timer) {
        event_base_loopbreak(c->base);
        return;
    }
    c->drain_left_ms = deadline_ms / 2;
    child_drain_cb(-1, 0, c);
}

static void
child_handle(struct child_ctx *c, const struct ipc_msg *msg)
{
    switch (msg->type) {
    case TDM_IPC_HELLO_REPLY:
        if (!c->is_worker || c->hello_done)
            log_fatal("IPC: unexpected HELLO_REPLY from the supervisor");
        if (msg->u.hello_reply.version == 0)
            log_fatal("IPC: the supervisor refused HELLO: %.*s", (int)msg->u.hello_reply.reason.len,
                      msg->u.hello_reply.reason.ptr);
        c->version = msg->u.hello_reply.version;
        c->hello_done = true;
        log_debug("IPC: speaking version %u with the supervisor", (unsigned)c->version);
        return;
    case TDM_IPC_SHUTDOWN:
        log_info("shutting down: %.*s", (int)msg->u.shutdown.reason.len,
                 msg->u.shutdown.reason.ptr);
        child_shutdown(c, msg->u.shutdown.deadline_ms);
        return;
    case TDM_IPC_RELOAD:
        child_reload(c);
        return;
    case TDM_IPC_CMS_LISTEN:
        child_cms_listen(c, msg);
        return;
    case TDM_IPC_CMS_STATE:
        if (c->is_worker || !c->ops->cms_state)
            log_fatal("IPC: unexpected CMS_STATE from the supervisor");
        {
            char name[TDM_IPC_NAME_MAX + 1];
            memcpy(name, msg->u.cms.cms.ptr, msg->u.cms.cms.len);
            name[msg->u.cms.cms.len] = '\0';
            c->ops->cms_state(name, msg->u.cms.state);
        }
        return;
    default:
        log_fatal("IPC: unexpected %s from the supervisor", ipc_type_name(msg->type));
    }
}

static void
child_read_cb(struct bufferevent *bev, void *arg)
{
    struct child_ctx *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) > 0 && !event_base_got_break(c->base)) {
        size_t avail = evbuffer_get_contiguous_space(in);
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t len = avail;
        struct ipc_frame frame;
        struct ipc_msg msg;
        const char *why;
        int ret = ipc_reader_next(c->reader, &data, &len, &frame, &why);
        if (ret == -ENOMEM)
            log_fatal("out of memory");
        if (ret < 0)
            log_fatal("IPC: malformed message from the supervisor: %s", why);
        if (ret == 1 && ipc_msg_decode_frame(&frame, &msg, &why) < 0)
            log_fatal("IPC: malformed message from the supervisor: %s", why);
        /* Handle before draining: msg borrows from the chunk. */
        if (ret == 1)
            child_handle(c, &msg);
        evbuffer_drain(in, avail - len);
    }
}

static void
child_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct child_ctx *c = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        /* Nobody would stop or restart us any more: do not outlive the supervisor. */
        log_warn("the supervisor went away; exiting");
        event_base_loopbreak(c->base);
    }
}

static void
child_sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
    struct child_ctx *c = arg;
    (void)what;
    log_info("signal %d: shutting down", (int)sig);
    child_shutdown(c, CHILD_SIGTERM_DEADLINE_MS);
}

static int
parse_fd(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > 65535)
        return -1;
    return (int)v;
}

int
tandemd__child_main(int argc, char **argv)
{
    struct child_ctx c = {.config_fd = -1, .cms_fd = -1};
    child_self = &c;
    int ipc_fd = -1, listen_fd = -1;
    const char *kind = NULL, *role = NULL;

    /* The supervisor built this command line: anything odd is a bug or a person typing it. */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--child"))
            kind = argv[i + 1];
        else if (!strcmp(argv[i], "--role"))
            role = argv[i + 1];
        else if (!strcmp(argv[i], "--ipc-fd"))
            ipc_fd = parse_fd(argv[i + 1]);
        else if (!strcmp(argv[i], "--config-fd"))
            c.config_fd = parse_fd(argv[i + 1]);
        else if (!strcmp(argv[i], "--listen-fd"))
            listen_fd = parse_fd(argv[i + 1]);
        else if (!strcmp(argv[i], "--cms-fd"))
            c.cms_fd = parse_fd(argv[i + 1]);
    }
    if (!kind || !role || ipc_fd < 0 || c.config_fd < 0) {
        fprintf(stderr, "tandemd: --child is internal to tandemd's supervisor\n");
        return TANDEMD_EXIT_CONFIG;
    }
    /* role points into argv, which lives as long as the process. */
    log_set_role(role);
    if (!strcmp(kind, "core")) {
        c.ops = &tandemd__core_ops;
    } else if (!strcmp(kind, "worker") && listen_fd >= 0) {
        c.ops = &tandemd__worker_ops;
        c.is_worker = true;
    } else {
        fprintf(stderr, "tandemd: bad --child arguments\n");
        return TANDEMD_EXIT_CONFIG;
    }

    char *why = NULL;
    if (tandemd__config_from_fd(c.config_fd, &c.cfg, &why) < 0)
        log_fatal("%s", why ? why : "out of memory");
    log_set_min_level(c.cfg->log.level);
    tandemd__set_event_sink(c.cfg);

    /* The supervisor owns the terminal's SIGINT and SIGHUP and tells us by IPC. */
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    c.base = event_base_new();
    if (!c.base)
        log_fatal("cannot create the event loop");
    if (ipc_reader_new(0, &c.reader) < 0)
        log_fatal("out of memory");
    evutil_make_socket_nonblocking(ipc_fd);
    c.bev = bufferevent_socket_new(c.base, ipc_fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c.bev)
        log_fatal("cannot set up the IPC channel");
    bufferevent_setcb(c.bev, child_read_cb, NULL, child_event_cb, &c);
    bufferevent_enable(c.bev, EV_READ);
    struct event *sigterm = evsignal_new(c.base, SIGTERM, child_sigterm_cb, &c);
    if (!sigterm || event_add(sigterm, NULL) < 0)
        log_fatal("cannot watch SIGTERM");

    if (c.is_worker) {
        struct ipc_msg hello = {.type = TDM_IPC_HELLO, .request_id = 1};
        hello.u.hello.pid = (uint32_t)getpid();
        hello.u.hello.version_min = TDM_IPC_VERSION_MIN;
        hello.u.hello.version_max = TDM_IPC_VERSION;
        /* The supervisor names a worker "worker-<protocol>", and the one on the admin unix
         * socket "worker-admin-socket". */
        for (int p = 0; p < TDM_PROTO_COUNT; p++)
            if (!strncmp(role, "worker-", 7) && !strcmp(role + 7, tdm_config_proto_name(p)))
                hello.u.hello.kind = tandemd__worker_kind((enum tdm_proto)p);
        if (!strcmp(role, "worker-admin-socket"))
            hello.u.hello.kind = tandemd__worker_kind(TDM_PROTO_ADMIN);
        if (!hello.u.hello.kind)
            log_fatal("bad worker role \"%s\"", role);
        child_send(&c, &hello);
    }

    c.ops->start(c.base, c.cfg, listen_fd);
    log_debug("started");
    event_base_dispatch(c.base);

    c.ops->stop();
    if (c.drain_timer)
        event_free(c.drain_timer);
    event_free(sigterm);
    bufferevent_free(c.bev);
    ipc_reader_free(&c.reader);
    conn_base_free(&c.base);
    close(c.config_fd);
    if (c.cms_fd >= 0)
        close(c.cms_fd);
    tdm_config_free(&c.cfg);
    tandemd__close_event_sink();
    return TANDEMD_EXIT_OK;
}

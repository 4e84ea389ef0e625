/*
 * The supervisor: starts the core and one worker per listener, answers their HELLO, restarts
 * any that exits with exponential back-off, and turns signals into IPC (SIGTERM/SIGINT:
 * SHUTDOWN; SIGHUP: reread the file, apply what can change at runtime, RELOAD). It never serves
 * a client and never opens a database, so nothing a client sends can take it down.
 */
#include "tandemd/tandemd.h"

#include "lib/event.h"
#include "lib/ipc.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SUP_BACKOFF_MIN_MS 100u
#define SUP_BACKOFF_MAX_MS 30000u
#define SUP_BACKOFF_RESET_MS 60000u /* a child that ran this long starts over at the minimum */
#define SUP_SHUTDOWN_DEADLINE_MS 10000u

struct sup;

struct sup_child {
    struct sup *sup;
    enum tandemd_child_kind kind;
    char role[32];           /* "core", "worker-imap": also the child's log role */
    int listen_fd;           /* the socket it serves, -1 none (owned by struct sup) */
    int proto;               /* the protocol whose CMS sockets it gets, -1 none */
    int cms_chan;            /* our end of its CMS socket channel, -1 when not running */
    pid_t pid;               /* 0 when not running */
    struct bufferevent *bev; /* NULL when not running or after an IPC error */
    struct ipc_reader *reader;
    struct event *restart_ev;
    struct timespec started;
    uint32_t backoff_ms; /* the delay before the next restart */
    bool hello_done;
};

struct sup {
    struct event_base *base;
    const char *config_path;
    struct tdm_config *cfg;
    char exe[4096]; /* our binary, resolved before any privilege drop */
    int config_fd;  /* memfd: the effective configuration the children load */
    int listen_fds[TDM_PROTO_COUNT];
    int admin_sock_fd; /* <datadir>/run/admin.sock, always there */
    struct sup_child children[2 + TDM_PROTO_COUNT];
    unsigned n_children;
    unsigned n_running;
    bool stopping;
    uint64_t reload_generation;
    struct event *deadline_ev;
    struct sup_cms *cms; /* the CMS addresses the core asked for (supervisor_cms.c) */
};

static uint64_t
ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)(now.tv_sec - t->tv_sec) * 1000u +
           (uint64_t)((now.tv_nsec - t->tv_nsec) / 1000000);
}

/* Writes the effective configuration into the memfd children load it from. A child that
 * starts while this runs may read a partial file: it fails to load, exits and is restarted. */
static int
sup_write_snapshot(struct sup *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        log_fatal("out of memory");
    int ret = tdm_config_dump(s->cfg, f);
    if (fclose(f) != 0 && ret == 0)
        ret = -ENOMEM;
    if (ret == 0 &&
        (ftruncate(s->config_fd, 0) < 0 || pwrite(s->config_fd, buf, len, 0) != (ssize_t)len))
        ret = -errno;
    free(buf);
    return ret;
}

static void sup_send(struct sup_child *c, const struct ipc_msg *msg);

/* ---- starting and restarting children ---- */

static void
sup_exec_child(struct sup_child *c, int ipc_fd, int cms_fd)
{
    struct sup *s = c->sup;
    char ipc[16], conf[16], lfd[16], cfd[16];
    snprintf(ipc, sizeof(ipc), "%d", ipc_fd);
    snprintf(conf, sizeof(conf), "%d", s->config_fd);
    snprintf(lfd, sizeof(lfd), "%d", c->listen_fd);
    /* Inherit exactly these three: every other descriptor of ours is close-on-exec. */
    fcntl(ipc_fd, F_SETFD, 0);
    fcntl(s->config_fd, F_SETFD, 0);
    char *argv[14] = {s->exe,   "--child",     c->kind == TANDEMD_CHILD_CORE ? "core" : "worker",
                      "--role", c->role,       "--ipc-fd",
                      ipc,      "--config-fd", conf};
    int n = 9;
    /* Workers serve their listener; the core serves [listen replication] when there is one. */
    if (c->listen_fd >= 0) {
        fcntl(c->listen_fd, F_SETFD, 0);
        argv[n++] = "--listen-fd";
        argv[n++] = lfd;
    }
    if (cms_fd >= 0) {
        snprintf(cfd, sizeof(cfd), "%d", cms_fd);
        fcntl(cms_fd, F_SETFD, 0);
        argv[n++] = "--cms-fd";
        argv[n++] = cfd;
    }
    execv(s->exe, argv);
    fprintf(stderr, "tandemd: cannot run %s for %s: %s\n", s->exe, c->role, strerror(errno));
    /* _exit: exit() would flush stdio buffers copied from the supervisor a second time. */
    _exit(127);
}

static void sup_read_cb(struct bufferevent *bev, void *arg);
static void sup_channel_event_cb(struct bufferevent *bev, short what, void *arg);

static int
sup_spawn(struct sup_child *c)
{
    int sv[2], cv[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    /* Datagrams, so each descriptor arrives alone and in order (docs/formats/ipc.md). */
    if (c->proto >= 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, cv) < 0) {
        int err = -errno;
        close(sv[0]);
        close(sv[1]);
        return err;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        close(sv[0]);
        close(sv[1]);
        if (cv[0] >= 0) {
            close(cv[0]);
            close(cv[1]);
        }
        return err;
    }
    if (pid == 0) {
        close(sv[0]);
        if (cv[0] >= 0)
            close(cv[0]);
        sup_exec_child(c, sv[1], cv[1]);
    }
    close(sv[1]);
    if (cv[1] >= 0) {
        close(cv[1]);
        evutil_make_socket_nonblocking(cv[0]);
    }
    c->cms_chan = cv[0];
    evutil_make_socket_nonblocking(sv[0]);
    c->bev = bufferevent_socket_new(c->sup->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev || ipc_reader_new(0, &c->reader) < 0)
        log_fatal("out of memory");
    bufferevent_setcb(c->bev, sup_read_cb, NULL, sup_channel_event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
    c->pid = pid;
    c->hello_done = false;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->sup->n_running++;
    log_info("started %s (pid %d)", c->role, (int)pid);
    /* A restarted worker serves the CMS addresses that are up, like its own listener. The
     * core gets nothing: it decides again what is up. */
    if (c->kind == TANDEMD_CHILD_WORKER && c->proto >= 0 && c->sup->cms)
        tandemd__sup_cms_resend(c->sup->cms, (enum tdm_proto)c->proto);
    return 0;
}

static void
sup_schedule_restart(struct sup_child *c)
{
    struct timeval tv = {.tv_sec = c->backoff_ms / 1000, .tv_usec = (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->restart_ev, &tv);
    c->backoff_ms = c->backoff_ms * 2 > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void
sup_restart_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sup_child *c = arg;
    (void)fd;
    (void)what;
    if (c->sup->stopping)
        return;
    int ret = sup_spawn(c);
    if (ret < 0) {
        log_error("cannot start %s: %s; trying again in %u ms", c->role, strerror(-ret),
                  (unsigned)c->backoff_ms);
        sup_schedule_restart(c);
    }
}

static void
sup_close_channel(struct sup_child *c)
{
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = NULL;
    ipc_reader_free(&c->reader);
    if (c->cms_chan >= 0)
        close(c->cms_chan);
    c->cms_chan = -1;
}

static void
sup_child_exited(struct sup_child *c, int status)
{
    struct sup *s = c->sup;
    uint64_t ran_ms = ms_since(&c->started);
    pid_t pid = c->pid;
    sup_close_channel(c);
    c->pid = 0;
    s->n_running--;
    char how[64];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    if (s->stopping) {
        log_info("%s (pid %d) %s", c->role, (int)pid, how);
        if (s->n_running == 0)
            event_base_loopexit(s->base, NULL);
        return;
    }
    /* Only the core decides that a CMS is up here; with it gone, nothing holds that decision
     * (on a cluster node it may have lost its lease), so every address goes down now. */
    if (c->kind == TANDEMD_CHILD_CORE)
        tandemd__sup_cms_all_down(s->cms);
    /* Not asked to stop: a crash or a fatal error. A child that ran a while is presumed
     * healthy again, so it restarts fast; one that keeps dying backs off to 30 s. */
    if (ran_ms >= SUP_BACKOFF_RESET_MS)
        c->backoff_ms = SUP_BACKOFF_MIN_MS;
    event_emit(TDM_EV_PROCESS_CHILD_RESTART, c->role,
               "%s (pid %d) %s after running %llu ms; restarting it in %u ms", c->role, (int)pid,
               how, (unsigned long long)ran_ms, (unsigned)c->backoff_ms);
    sup_schedule_restart(c);
}

/* ---- IPC with children ---- */

static void
sup_send(struct sup_child *c, const struct ipc_msg *msg)
{
    uint8_t *buf;
    size_t len;
    const char *why;
    if (ipc_msg_encode_alloc(msg, &buf, &len, &why) < 0)
        log_panic("cannot encode %s: %s", ipc_type_name(msg->type), why);
    if (bufferevent_write(c->bev, buf, len) < 0)
        log_fatal("out of memory");
    free(buf);
}

/* The child sent something malformed or out of place: a bug in it. End it; the SIGCHLD that
 * follows restarts it. SIGKILL because a process with a bug cannot be trusted to stop. */
static void
sup_ipc_error(struct sup_child *c, const char *why)
{
    event_emit(TDM_EV_PROCESS_IPC_ERROR, c->role,
               "%s (pid %d) sent a malformed IPC message (%s); killing it", c->role, (int)c->pid,
               why);
    sup_close_channel(c);
    kill(c->pid, SIGKILL);
}

static void
sup_handle(struct sup_child *c, const struct ipc_msg *msg)
{
    if (msg->type == TDM_IPC_CMS_CONTROL && c->kind == TANDEMD_CHILD_CORE) {
        const struct ipc_cms *m = &msg->u.cms;
        if (tandemd__sup_cms_control(c->sup->cms, m->cms.ptr, m->cms.len,
                                     m->state == TDM_IPC_CMS_UP) < 0) {
            /* Not a bug: a reload may have removed it between the core's decision and now.
             * The core hears that it stays down. */
            log_warn("CMS_CONTROL up for CMS %.*s, which the configuration no longer has",
                     (int)m->cms.len, m->cms.ptr);
            struct ipc_msg st = {.type = TDM_IPC_CMS_STATE};
            st.u.cms = (struct ipc_cms){m->cms, 0, TDM_IPC_CMS_DOWN};
            sup_send(c, &st);
        }
        return;
    }
    if (msg->type != TDM_IPC_HELLO) {
        sup_ipc_error(c, ipc_type_name(msg->type) ? "unexpected message type" : "unknown type");
        return;
    }
    if (c->kind != TANDEMD_CHILD_WORKER || c->hello_done) {
        sup_ipc_error(c, "unexpected HELLO");
        return;
    }
    if (msg->u.hello.pid != (uint32_t)c->pid) {
        sup_ipc_error(c, "HELLO.pid is not the process's pid");
        return;
    }
    struct ipc_msg reply = {.type = TDM_IPC_HELLO_REPLY, .request_id = msg->request_id};
    const char *why;
    if (ipc_version_negotiate(msg->u.hello.version_min, msg->u.hello.version_max,
                              &reply.u.hello_reply.version, &why) < 0)
        reply.u.hello_reply.reason = ipc_str_c(why); /* the child exits and is restarted */
    sup_send(c, &reply);
    c->hello_done = true;
    log_debug("%s (pid %d): HELLO kind %s", c->role, (int)c->pid,
              ipc_worker_kind_name(msg->u.hello.kind));
}

static void
sup_read_cb(struct bufferevent *bev, void *arg)
{
    struct sup_child *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (c->bev && evbuffer_get_length(in) > 0) {
        size_t avail = evbuffer_get_contiguous_space(in);
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)avail);
        size_t len = avail;
        struct ipc_frame frame;
        struct ipc_msg msg;
        const char *why;
        int ret = ipc_reader_next(c->reader, &data, &len, &frame, &why);
        if (ret == -ENOMEM)
            log_fatal("out of memory");
        if (ret == 1 && ipc_msg_decode_frame(&frame, &msg, &why) < 0)
            ret = -1; /* why says which check failed */
        if (ret < 0) {
            sup_ipc_error(c, why); /* frees bev, and with it in */
            return;
        }
        if (ret == 1)
            sup_handle(c, &msg); /* before the drain: msg borrows from the chunk */
        if (c->bev)
            evbuffer_drain(in, avail - len);
    }
}

static void
sup_channel_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct sup_child *c = arg;
    (void)bev;
    /* The child is exiting (or has a bug and closed its end): SIGCHLD tells us which. */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        sup_close_channel(c);
}

/* ---- the CMS addresses' hooks (supervisor_cms.c) ---- */

/* Passes fd on c's descriptor channel; the CMS_LISTEN that says what it is follows on the IPC
 * channel, where the child looks for it only after the descriptor is queued. */
static int
sup_pass_fd(struct sup_child *c, int fd)
{
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return sendmsg(c->cms_chan, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == 1 ? 0 : -errno;
}

static void
sup_cms_listen_hook(void *ctx, const char *cms, enum tdm_proto proto, int fd)
{
    struct sup *s = ctx;
    for (unsigned i = 0; i < s->n_children; i++) {
        struct sup_child *c = &s->children[i];
        if (c->proto != (int)proto || !c->bev || c->cms_chan < 0)
            continue;
        int ret = sup_pass_fd(c, fd);
        if (ret < 0) {
            /* A child that does not empty its channel is stuck: restarted, it gets the
             * sockets again. */
            log_error("%s (pid %d): cannot pass the CMS %s socket: %s; restarting it", c->role,
                      (int)c->pid, cms, strerror(-ret));
            sup_close_channel(c);
            kill(c->pid, SIGKILL);
            continue;
        }
        struct ipc_msg msg = {.type = TDM_IPC_CMS_LISTEN};
        msg.u.cms = (struct ipc_cms){ipc_str_c(cms), (uint16_t)proto, TDM_IPC_CMS_UP};
        sup_send(c, &msg);
    }
}

static void
sup_cms_close_hook(void *ctx, const char *cms)
{
    struct sup *s = ctx;
    struct ipc_msg msg = {.type = TDM_IPC_CMS_LISTEN};
    msg.u.cms = (struct ipc_cms){ipc_str_c(cms), 0, TDM_IPC_CMS_DOWN};
    for (unsigned i = 0; i < s->n_children; i++)
        if (s->children[i].proto >= 0 && s->children[i].bev)
            sup_send(&s->children[i], &msg);
}

static void
sup_cms_state_hook(void *ctx, const char *cms, uint16_t state)
{
    struct sup *s = ctx;
    struct sup_child *core = &s->children[0]; /* added first */
    if (!core->bev)
        return;
    struct ipc_msg msg = {.type = TDM_IPC_CMS_STATE};
    msg.u.cms = (struct ipc_cms){ipc_str_c(cms), 0, state};
    sup_send(core, &msg);
}

/* ---- signals ---- */

static void
sup_sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sup *s = arg;
    (void)sig;
    (void)what;
    int status;
    pid_t pid;
    /* One SIGCHLD may stand for several exits. */
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < s->n_children; i++)
            if (s->children[i].pid == pid)
                sup_child_exited(&s->children[i], status);
    }
}

static void
sup_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sup *s = arg;
    (void)fd;
    (void)what;
    for (unsigned i = 0; i < s->n_children; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid == 0)
            continue;
        event_emit(TDM_EV_PROCESS_KILLED_AT_SHUTDOWN, c->role,
                   "%s (pid %d) did not exit within %u ms of SHUTDOWN; killed", c->role,
                   (int)c->pid, SUP_SHUTDOWN_DEADLINE_MS);
        kill(c->pid, SIGKILL);
    }
}

static void
sup_shutdown_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sup *s = arg;
    (void)what;
    if (s->stopping) {
        log_info("signal %d: already shutting down", (int)sig);
        return;
    }
    log_info("signal %d: shutting down", (int)sig);
    s->stopping = true;
    char reason[32];
    snprintf(reason, sizeof(reason), "%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    struct ipc_msg msg = {.type = TDM_IPC_SHUTDOWN};
    msg.u.shutdown.reason = ipc_str_c(reason);
    msg.u.shutdown.deadline_ms = SUP_SHUTDOWN_DEADLINE_MS;
    for (unsigned i = 0; i < s->n_children; i++) {
        struct sup_child *c = &s->children[i];
        evtimer_del(c->restart_ev);
        if (c->pid == 0)
            continue;
        if (c->bev)
            sup_send(c, &msg);
        else
            kill(c->pid, SIGTERM); /* no channel (it is exiting anyway): the signal says it */
    }
    if (s->n_running == 0) {
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {.tv_sec = SUP_SHUTDOWN_DEADLINE_MS / 1000};
    evtimer_add(s->deadline_ev, &tv);
}

static void
sup_reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sup *s = arg;
    (void)sig;
    (void)what;
    if (s->stopping)
        return;
    struct tdm_config *fresh = NULL;
    char *why = NULL;
    if (tdm_config_load_file(s->config_path, &fresh, &why) < 0) {
        event_emit(TDM_EV_PROCESS_RELOAD_FAILED, s->cfg->server,
                   "SIGHUP: %s; the running configuration stays in force",
                   why ? why : "out of memory");
        free(why);
        return;
    }
    unsigned n_restart = tandemd__report_unreloadable(s->cfg, fresh, s->config_path);

    /* Apply what can change at runtime: the log level, the events file, and the [cms]
     * sections (the core brings a standalone CMS added up and one removed down; an address
     * changed takes effect at its next up). */
    memcpy(s->cfg->cms, fresh->cms, sizeof(fresh->cms));
    s->cfg->n_cms = fresh->n_cms;
    s->cfg->log.level = fresh->log.level;
    free(s->cfg->log.events);
    s->cfg->log.events = fresh->log.events;
    fresh->log.events = NULL;
    tdm_config_free(&fresh);
    log_set_min_level(s->cfg->log.level);
    tandemd__set_event_sink(s->cfg);

    int ret = sup_write_snapshot(s);
    if (ret < 0) {
        log_error("SIGHUP: cannot pass the configuration to the children: %s", strerror(-ret));
        return;
    }
    struct ipc_msg msg = {.type = TDM_IPC_RELOAD};
    msg.u.reload.generation = ++s->reload_generation;
    for (unsigned i = 0; i < s->n_children; i++)
        if (s->children[i].bev)
            sup_send(&s->children[i], &msg);
    event_emit(TDM_EV_PROCESS_RELOADED, s->cfg->server,
               "configuration reloaded from %s (generation %llu); %u changed setting(s) need "
               "a restart",
               s->config_path, (unsigned long long)s->reload_generation, n_restart);
}

/* ---- the admin socket ---- */

/*
 * Binds <datadir>/run/admin.sock (mode 0600), so a local operator can reach the admin API
 * even with no [listen admin] and no user yet (docs/formats/admin-api.md). Bound here, after
 * any privilege drop, so the socket belongs to the user tandemd runs as, which is who the
 * admin worker lets in without credentials. A file left by a crashed instance is replaced:
 * we hold the datadir lock, so nobody else can be using it. Returns the descriptor, or -errno
 * after logging why.
 */
static int
sup_bind_admin_socket(const struct tdm_config *cfg)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/run", cfg->datadir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int err = -errno;
        log_error("cannot create %s: %s", dir, strerror(errno));
        return err;
    }
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/admin.sock", dir);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        log_error("%s/admin.sock: the path is longer than a unix socket allows (%zu bytes)", dir,
                  sizeof(sun.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(sun.sun_path);
    /* The directory is 0700 already; the mode is for anyone who loosens it. */
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(sun.sun_path, 0600) < 0 ||
        listen(fd, 128) < 0) {
        int err = -errno;
        log_error("cannot listen on %s: %s", sun.sun_path, strerror(errno));
        close(fd);
        return err;
    }
    return fd;
}

/* ---- the supervisor's life ---- */

/* proto: the protocol whose CMS sockets the child gets (-1 none). */
static void
sup_add_child(struct sup *s, enum tandemd_child_kind kind, const char *role, int listen_fd,
              int proto)
{
    struct sup_child *c = &s->children[s->n_children++];
    c->sup = s;
    c->kind = kind;
    snprintf(c->role, sizeof(c->role), "%s", role);
    c->listen_fd = listen_fd;
    c->proto = proto;
    c->cms_chan = -1;
    c->backoff_ms = SUP_BACKOFF_MIN_MS;
    c->restart_ev = evtimer_new(s->base, sup_restart_cb, c);
    if (!c->restart_ev)
        log_fatal("out of memory");
}

int
tandemd__supervise(const char *config_path, struct tdm_config **cfg, const int *listen_fds)
{
    /* First, so that a socket that cannot be bound stops the start with status 1 (its reason
     * logged) before anything else is set up. */
    int admin_sock_fd = sup_bind_admin_socket(*cfg);
    if (admin_sock_fd < 0) {
        for (unsigned i = 0; i < (*cfg)->n_listeners; i++)
            close(listen_fds[i]);
        tdm_config_free(cfg);
        return TANDEMD_EXIT_START;
    }
    struct sup *s = calloc(1, sizeof(*s));
    if (!s)
        log_fatal("out of memory");
    s->config_path = config_path;
    s->cfg = *cfg;
    *cfg = NULL;
    memcpy(s->listen_fds, listen_fds, sizeof(int) * s->cfg->n_listeners);

    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
    if (n <= 0 || (size_t)n >= sizeof(s->exe) - 1)
        log_fatal("cannot find tandemd's own binary in /proc/self/exe");
    s->exe[n] = '\0';
    s->config_fd = memfd_create("tandemd-config", MFD_CLOEXEC);
    if (s->config_fd < 0)
        log_fatal("memfd_create: %s", strerror(errno));
    int ret = sup_write_snapshot(s);
    if (ret < 0)
        log_fatal("cannot write the configuration snapshot: %s", strerror(-ret));

    s->base = event_base_new();
    if (!s->base)
        log_fatal("cannot create the event loop");
    const struct {
        int sig;
        event_callback_fn cb;
    } sigs[] = {{SIGTERM, sup_shutdown_cb},
                {SIGINT, sup_shutdown_cb},
                {SIGHUP, sup_reload_cb},
                {SIGCHLD, sup_sigchld_cb}};
    struct event *sig_evs[4];
    for (size_t i = 0; i < 4; i++) {
        sig_evs[i] = evsignal_new(s->base, sigs[i].sig, sigs[i].cb, s);
        if (!sig_evs[i] || event_add(sig_evs[i], NULL) < 0)
            log_fatal("cannot watch signal %d", sigs[i].sig);
    }
    s->deadline_ev = evtimer_new(s->base, sup_deadline_cb, s);
    if (!s->deadline_ev)
        log_fatal("out of memory");
    s->admin_sock_fd = admin_sock_fd;

    /* Replication is the core's (it owns the stores whose logs it ships): its listener goes
     * to the core, and no worker is started for it. */
    int repl_fd = -1;
    for (unsigned i = 0; i < s->cfg->n_listeners; i++)
        if (s->cfg->listeners[i].proto == TDM_PROTO_REPLICATION)
            repl_fd = s->listen_fds[i];
    sup_add_child(s, TANDEMD_CHILD_CORE, "core", repl_fd, TDM_PROTO_REPLICATION);
    for (unsigned i = 0; i < s->cfg->n_listeners; i++) {
        /* Heartbeats are the core's too (docs/cluster.md): never a worker for them. */
        if (s->cfg->listeners[i].proto == TDM_PROTO_REPLICATION ||
            s->cfg->listeners[i].proto == TDM_PROTO_CLUSTER ||
            s->cfg->listeners[i].proto == TDM_PROTO_COORD)
            continue;
        char role[32];
        snprintf(role, sizeof(role), "worker-%s",
                 tdm_config_proto_name(s->cfg->listeners[i].proto));
        enum tdm_proto proto = s->cfg->listeners[i].proto;
        sup_add_child(s, TANDEMD_CHILD_WORKER, role, s->listen_fds[i],
                      tandemd__cms_proto(proto) ? (int)proto : -1);
    }
    sup_add_child(s, TANDEMD_CHILD_WORKER, "worker-admin-socket", s->admin_sock_fd, -1);
    struct sup_cms_hooks hooks = {.ctx = s,
                                  .listen = sup_cms_listen_hook,
                                  .close = sup_cms_close_hook,
                                  .state = sup_cms_state_hook};
    s->cms = tandemd__sup_cms_new(s->base, s->cfg, &hooks);
    event_emit(TDM_EV_PROCESS_STARTED, s->cfg->server,
               "tandemd %s started (pid %d, datadir %s, %u worker(s))", s->cfg->server,
               (int)getpid(), s->cfg->datadir, s->n_children - 1);
    for (unsigned i = 0; i < s->n_children; i++) {
        ret = sup_spawn(&s->children[i]);
        if (ret < 0) {
            log_error("cannot start %s: %s", s->children[i].role, strerror(-ret));
            sup_schedule_restart(&s->children[i]);
        }
    }

    event_base_dispatch(s->base);

    event_emit(TDM_EV_PROCESS_STOPPED, s->cfg->server, "tandemd %s stopped (pid %d)",
               s->cfg->server, (int)getpid());
    for (unsigned i = 0; i < s->n_children; i++) {
        sup_close_channel(&s->children[i]);
        event_free(s->children[i].restart_ev);
    }
    tandemd__sup_cms_free(&s->cms);
    for (unsigned i = 0; i < s->cfg->n_listeners; i++)
        close(s->listen_fds[i]);
    close(s->admin_sock_fd);
    event_free(s->deadline_ev);
    for (size_t i = 0; i < 4; i++)
        event_free(sig_evs[i]);
    event_base_free(s->base);
    close(s->config_fd);
    tdm_config_free(&s->cfg);
    free(s);
    return TANDEMD_EXIT_OK;
}

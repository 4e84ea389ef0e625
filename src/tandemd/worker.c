/*
 * A protocol worker. Which protocol it serves follows from its listening socket: the unix
 * socket <datadir>/run/admin.sock and the [listen admin] socket are served by the admin API
 * (src/admin/), the [listen lmtp] socket by the LMTP server (src/lmtp/), [listen imap] and
 * [listen imaps] by the IMAP server (src/imap/), [listen smtp] by the transport role's SMTP
 * server (src/smtp/); no other protocol is served yet, so those workers accept each
 * connection and close it at once without writing a byte, which lets the process structure
 * (inherited sockets, restarts, shutdown) be run and tested before the protocols exist.
 * docs/tandemd.md says the same to operators.
 */
#include "tandemd/tandemd.h"

#include "admin/admin_server.h"
#include "lib/err.h"
#include "lib/log.h"
#include "imap/imap_server.h"
#include "lmtp/lmtp_server.h"
#include "smtp/smtp_server.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event *worker_accept_ev;
static int worker_listen_fd = -1;
static struct admin_server *worker_admin;
static struct lmtp_server *worker_lmtp;
static struct imap_server *worker_imap;
static struct smtp_server *worker_smtp;
/* The admin server borrows a configuration for its whole life, and the child's snapshot is
 * replaced at RELOAD: so it gets a copy of its own, taken at start. */
static struct tdm_config *worker_admin_cfg;
/* The same for the LMTP, IMAP and SMTP servers. */
static struct tdm_config *worker_lmtp_cfg;
static struct tdm_config *worker_imap_cfg;
static struct tdm_config *worker_smtp_cfg;

/* The CMS addresses this worker serves too (docs/cluster.md): a CMS's tag is its index + 1
 * here, given at its first CMS_LISTEN and kept for the process's life. The workers that do
 * not serve their protocol yet accept on them as on their own socket. */
#define WORKER_MAX_CMS 16
static char worker_cms_names[WORKER_MAX_CMS][TDM_CONFIG_NAME_MAX + 1];
static unsigned worker_n_cms;
static struct event *worker_cms_ev[WORKER_MAX_CMS]; /* the accept-and-close workers' */

static void
worker_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    /* Drain the backlog: one readiness may stand for many connections. */
    for (;;) {
        int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn >= 0) {
            close(conn);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        /* EAGAIN: done. EMFILE and the like: say so and try again on the next readiness,
         * rather than exiting and losing the listener for every client. */
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_error("accept: %s", strerror(errno));
        return;
    }
}

/* The protocol of the listener cfg bound to fd, or -1 when fd is the admin unix socket. */
static int
listener_proto(const struct tdm_config *cfg, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        log_fatal("getsockname on the listening socket: %s", strerror(errno));
    if (ss.ss_family == AF_UNIX)
        return -1;
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct tdm_config_listener *l = &cfg->listeners[i];
        bool same;
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
            same = l->address.family == AF_INET6 && ntohs(s6->sin6_port) == l->port &&
                   memcmp(&s6->sin6_addr, l->address.bytes, 16) == 0;
        } else {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
            same = l->address.family == AF_INET && ntohs(s4->sin_port) == l->port &&
                   memcmp(&s4->sin_addr, l->address.bytes, 4) == 0;
        }
        if (same)
            return (int)l->proto;
    }
    log_fatal("the listening socket matches no listener of the configuration");
}

static struct tdm_config *
config_copy(const struct tdm_config *cfg)
{
    char *buf = NULL, *why = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f || tdm_config_dump(cfg, f) < 0 || fclose(f) != 0)
        log_fatal("cannot copy the configuration");
    struct tdm_config *copy = NULL;
    if (tdm_config_load_buffer(buf, len, cfg->path, &copy, &why) < 0)
        log_fatal("cannot copy the configuration: %s", why ? why : "out of memory");
    free(buf);
    return copy;
}

static int
worker_start(struct event_base *base, const struct tdm_config *cfg, int listen_fd)
{
    int proto = listener_proto(cfg, listen_fd);
    if (proto < 0 || proto == TDM_PROTO_ADMIN) {
        char *why = NULL;
        worker_admin_cfg = config_copy(cfg);
        if (admin_server_new(base, worker_admin_cfg, listen_fd,
                             proto < 0 ? ADMIN_TRANSPORT_LOCAL : ADMIN_TRANSPORT_TLS, &worker_admin,
                             &why) < 0)
            log_fatal("admin API: %s", why ? why : "out of memory");
        return 0;
    }
    if (proto == TDM_PROTO_LMTP) {
        char *why = NULL;
        worker_lmtp_cfg = config_copy(cfg);
        evutil_make_socket_nonblocking(listen_fd);
        if (lmtp_server_new(base, worker_lmtp_cfg, listen_fd, &worker_lmtp, &why) < 0)
            log_fatal("lmtp: %s", why ? why : "out of memory");
        return 0;
    }
    if (proto == TDM_PROTO_IMAP || proto == TDM_PROTO_IMAPS) {
        char *why = NULL;
        worker_imap_cfg = config_copy(cfg);
        evutil_make_socket_nonblocking(listen_fd);
        if (imap_server_new(base, worker_imap_cfg, listen_fd, proto == TDM_PROTO_IMAPS,
                            &worker_imap, &why) < 0)
            log_fatal("imap: %s", why ? why : "out of memory");
        return 0;
    }
    if (proto == TDM_PROTO_SMTP) {
        char *why = NULL;
        worker_smtp_cfg = config_copy(cfg);
        evutil_make_socket_nonblocking(listen_fd);
        if (smtp_server_new(base, worker_smtp_cfg, listen_fd, &worker_smtp, &why) < 0)
            log_fatal("smtp: %s", why ? why : "out of memory");
        return 0;
    }
    worker_listen_fd = listen_fd;
    evutil_make_socket_nonblocking(listen_fd);
    worker_accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, worker_accept_cb, NULL);
    if (!worker_accept_ev || event_add(worker_accept_ev, NULL) < 0)
        log_fatal("cannot watch the listening socket");
    return 0;
}

static void
worker_stop(void)
{
    admin_server_free(&worker_admin); /* closes its listening socket */
    tdm_config_free(&worker_admin_cfg);
    lmtp_server_free(&worker_lmtp); /* closes its listening socket */
    tdm_config_free(&worker_lmtp_cfg);
    imap_server_free(&worker_imap); /* closes its listening socket */
    tdm_config_free(&worker_imap_cfg);
    smtp_server_free(&worker_smtp); /* closes its listening socket */
    tdm_config_free(&worker_smtp_cfg);
    for (unsigned i = 0; i < worker_n_cms; i++)
        if (worker_cms_ev[i]) {
            int fd = event_get_fd(worker_cms_ev[i]);
            event_free(worker_cms_ev[i]);
            worker_cms_ev[i] = NULL;
            close(fd);
        }
    if (worker_accept_ev)
        event_free(worker_accept_ev);
    worker_accept_ev = NULL;
    if (worker_listen_fd >= 0)
        close(worker_listen_fd);
    worker_listen_fd = -1;
}

/* The tag of cms; 0 when it has none and create is false (or the table is full). */
static uint32_t
worker_cms_tag(const char *cms, bool create)
{
    for (unsigned i = 0; i < worker_n_cms; i++)
        if (!strcmp(worker_cms_names[i], cms))
            return i + 1;
    if (!create || worker_n_cms == WORKER_MAX_CMS)
        return 0;
    snprintf(worker_cms_names[worker_n_cms], sizeof(worker_cms_names[0]), "%s", cms);
    return ++worker_n_cms;
}

static void
worker_cms_listen(const char *cms, enum tdm_proto proto, int fd)
{
    uint32_t tag = worker_cms_tag(cms, true);
    int ret = tag ? 0 : TDM_ELIMIT;
    evutil_make_socket_nonblocking(fd);
    if (ret == 0 && worker_imap)
        ret = imap_server_add_socket(worker_imap, fd, tag);
    else if (ret == 0 && worker_lmtp)
        ret = lmtp_server_add_socket(worker_lmtp, fd, tag);
    else if (ret == 0 && worker_smtp)
        ret = smtp_server_add_socket(worker_smtp, fd, tag);
    else if (ret == 0 && worker_accept_ev && !worker_cms_ev[tag - 1]) {
        worker_cms_ev[tag - 1] = event_new(event_get_base(worker_accept_ev), fd,
                                           EV_READ | EV_PERSIST, worker_accept_cb, NULL);
        if (!worker_cms_ev[tag - 1] || event_add(worker_cms_ev[tag - 1], NULL) < 0)
            log_fatal("cannot watch the listening socket of CMS %s", cms);
    } else if (ret == 0) {
        ret = TDM_EINVAL; /* the admin API is not served on CMS addresses */
    }
    if (ret < 0) {
        /* Clients of this protocol cannot reach it on the CMS address; the others can. */
        log_error("CMS %s: cannot serve %s on its address: %s", cms, tdm_config_proto_name(proto),
                  tdm_strerror(ret));
        close(fd);
        return;
    }
    log_info("CMS %s: serving %s on its address too", cms, tdm_config_proto_name(proto));
}

static void
worker_cms_close(const char *cms)
{
    uint32_t tag = worker_cms_tag(cms, false);
    if (!tag)
        return;
    if (worker_imap)
        imap_server_close_socket(worker_imap, tag);
    if (worker_lmtp)
        lmtp_server_close_socket(worker_lmtp, tag);
    if (worker_smtp)
        smtp_server_close_socket(worker_smtp, tag);
    if (worker_cms_ev[tag - 1]) {
        int fd = event_get_fd(worker_cms_ev[tag - 1]);
        event_free(worker_cms_ev[tag - 1]);
        worker_cms_ev[tag - 1] = NULL;
        close(fd);
    }
    log_info("CMS %s: its address closed here", cms);
}

static bool
worker_drain(void)
{
    unsigned left = 0;
    if (worker_lmtp)
        left += lmtp_server_shutdown(worker_lmtp);
    if (worker_imap)
        left += imap_server_shutdown(worker_imap);
    if (worker_smtp)
        left += smtp_server_shutdown(worker_smtp);
    return left == 0;
}

/* The admin API serves the events file named by [log] events, which a reload may change. */
static void
worker_reload(const struct tdm_config *cfg)
{
    if (!worker_admin)
        return;
    struct tdm_config *old = worker_admin_cfg;
    worker_admin_cfg = config_copy(cfg);
    admin_server_reload(worker_admin, worker_admin_cfg);
    tdm_config_free(&old);
}

const struct tandemd_child_ops tandemd__worker_ops = {
    .start = worker_start,
    .stop = worker_stop,
    .drain = worker_drain,
    .reload = worker_reload,
    .cms_listen = worker_cms_listen,
    .cms_close = worker_cms_close,
};

/*
 * A protocol worker. No protocol is served yet: the worker accepts each connection on its
 * listening socket and closes it at once without writing a byte, so the process structure
 * (inherited sockets, restarts, shutdown) can be run and tested before the protocols exist.
 * docs/tandemd.md says the same to operators.
 */
#include "tandemd/tandemd.h"

#include "lib/log.h"

#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct event *worker_accept_ev;
static int worker_listen_fd = -1;

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

static int
worker_start(struct event_base *base, const struct tdm_config *cfg, int listen_fd)
{
    (void)cfg;
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
    if (worker_accept_ev)
        event_free(worker_accept_ev);
    worker_accept_ev = NULL;
    if (worker_listen_fd >= 0)
        close(worker_listen_fd);
    worker_listen_fd = -1;
}

const struct tandemd_child_ops tandemd__worker_ops = {
    .start = worker_start,
    .stop = worker_stop,
};

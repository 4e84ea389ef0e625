/*
 * Blocking work off the loop (offload.h): a FIFO of jobs for one helper thread, a list of
 * finished ones, one mutex, and an eventfd that wakes the loop when something finished.
 */
#include "lib/offload.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define OFFLOAD_DEFAULT_QUEUE 64u

struct job {
    struct job *next;
    offload_work_fn *work;
    offload_done_fn *done;
    void *arg;
};

struct offload {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *todo, **todo_tail; /* FIFO */
    struct job *finished;          /* newest first; reported oldest first */
    unsigned n_todo, max_queued;
    bool stopping;
    int efd;
    struct event *ev;
};

static void *
offload_thread(void *p)
{
    struct offload *o = p;
    pthread_mutex_lock(&o->lock);
    for (;;) {
        while (!o->todo && !o->stopping)
            pthread_cond_wait(&o->wake, &o->lock);
        if (o->stopping)
            break;
        struct job *j = o->todo;
        o->todo = j->next;
        if (!o->todo)
            o->todo_tail = &o->todo;
        o->n_todo--;
        pthread_mutex_unlock(&o->lock);

        j->work(j->arg);

        pthread_mutex_lock(&o->lock);
        j->next = o->finished;
        o->finished = j;
        uint64_t one = 1;
        /* Cannot fail short of a bug: the counter would need 2^64 - 1 unread wake-ups. */
        if (write(o->efd, &one, sizeof(one)) != sizeof(one))
            log_panic("eventfd write: %s", strerror(errno));
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

/* Reports finished jobs oldest first (the list is newest first). */
static void
report(struct job *list, bool ran)
{
    struct job *rev = NULL;
    while (list) {
        struct job *j = list;
        list = j->next;
        j->next = rev;
        rev = j;
    }
    while (rev) {
        struct job *j = rev;
        rev = j->next;
        j->done(j->arg, ran);
        free(j);
    }
}

static void
finished_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct offload *o = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_panic("eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&o->lock);
    struct job *list = o->finished;
    o->finished = NULL;
    pthread_mutex_unlock(&o->lock);
    report(list, true);
}

int
offload_new(struct event_base *base, unsigned max_queued, struct offload **off_r)
{
    struct offload *o = calloc(1, sizeof(*o));
    if (!o)
        return -ENOMEM;
    o->todo_tail = &o->todo;
    o->max_queued = max_queued ? max_queued : OFFLOAD_DEFAULT_QUEUE;
    o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (o->efd < 0) {
        int err = -errno;
        free(o);
        return err;
    }
    o->ev = event_new(base, o->efd, EV_READ | EV_PERSIST, finished_cb, o);
    if (!o->ev || event_add(o->ev, NULL) < 0) {
        if (o->ev)
            event_free(o->ev);
        close(o->efd);
        free(o);
        return -ENOMEM;
    }
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->wake, NULL);
    int ret = pthread_create(&o->thread, NULL, offload_thread, o);
    if (ret != 0) {
        event_free(o->ev);
        close(o->efd);
        pthread_mutex_destroy(&o->lock);
        pthread_cond_destroy(&o->wake);
        free(o);
        return -ret;
    }
    *off_r = o;
    return 0;
}

void
offload_free(struct offload **off)
{
    struct offload *o = *off;
    if (!o)
        return;
    pthread_mutex_lock(&o->lock);
    o->stopping = true;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
    pthread_join(o->thread, NULL);
    /* The thread is gone: no lock needed. Finished ones first, as they came. */
    report(o->finished, true);
    for (struct job *j = o->todo; j;) {
        struct job *next = j->next;
        j->done(j->arg, false);
        free(j);
        j = next;
    }
    event_free(o->ev);
    close(o->efd);
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->wake);
    free(o);
    *off = NULL;
}

int
offload_submit(struct offload *o, offload_work_fn *work, offload_done_fn *done, void *arg)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j)
        return -ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&o->lock);
    if (o->n_todo >= o->max_queued) {
        pthread_mutex_unlock(&o->lock);
        free(j);
        return TDM_ELIMIT;
    }
    *o->todo_tail = j;
    o->todo_tail = &j->next;
    o->n_todo++;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
    return 0;
}

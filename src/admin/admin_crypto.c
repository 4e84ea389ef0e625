/*
 * argon2id off the loop thread. Checking or hashing a password costs tens to hundreds of
 * milliseconds of CPU by design (libsodium's INTERACTIVE limits, 64 MiB); on the loop it would
 * stall every other client of the worker for that long per new credential. One helper thread
 * runs the jobs in order and hands each result back to the loop through an eventfd (the
 * conventions' "blocking work goes to a worker thread that reports back through the loop").
 *
 * The thread touches no LMDB transaction and no libevent object: the loop reads the stored
 * hash first (dir_secret_hash) and the job carries copies of everything it needs, so the only
 * shared state is the two queues under one mutex.
 */
#include "admin/admin_int.h"

#include "lib/err.h"
#include "lib/log.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ADMIN_CRYPTO_QUEUE_MAX 64u /* jobs waiting: beyond, callers answer 503 */

struct crypto_job {
    struct crypto_job *next;
    struct admin_call *call;
    admin_crypto_cb *cb;
    bool hash_only; /* hash password (result: hash) rather than verify it against hash */
    int result;     /* 0, -EACCES (no match), -ENOMEM */
    char hash[DIR_PASSWORD_HASH_MAX];
    char *password; /* owned copy, wiped before free */
};

struct admin_crypto {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct crypto_job *todo, **todo_tail; /* FIFO */
    struct crypto_job *done;              /* any order: each answers its own call */
    unsigned n_todo;
    bool stopping;
    int efd;
    struct event *ev;
};

static void
job_free(struct crypto_job *j)
{
    if (j->password) {
        sodium_memzero(j->password, strlen(j->password));
        free(j->password);
    }
    sodium_memzero(j->hash, sizeof(j->hash));
    free(j);
}

static void *
crypto_thread(void *arg)
{
    struct admin_crypto *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->todo && !c->stopping)
            pthread_cond_wait(&c->wake, &c->lock);
        if (c->stopping)
            break;
        struct crypto_job *j = c->todo;
        c->todo = j->next;
        if (!c->todo)
            c->todo_tail = &c->todo;
        c->n_todo--;
        pthread_mutex_unlock(&c->lock);

        if (j->hash_only)
            j->result = dir_password_hash(j->password, 0, 0, j->hash);
        else
            j->result = crypto_pwhash_str_verify(j->hash, j->password, strlen(j->password)) == 0
                            ? 0
                            : -EACCES;

        pthread_mutex_lock(&c->lock);
        j->next = c->done;
        c->done = j;
        uint64_t one = 1;
        /* Cannot fail short of a bug: the counter would need 2^64 - 1 unread wake-ups. */
        if (write(c->efd, &one, sizeof(one)) != sizeof(one))
            log_panic("eventfd write: %s", strerror(errno));
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct admin_crypto *c = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_panic("eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&c->lock);
    struct crypto_job *list = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->lock);
    while (list) {
        struct crypto_job *j = list;
        list = j->next;
        /* The callback answers (or, the client gone, frees) the call. */
        j->cb(j->call, j->result, j->hash);
        job_free(j);
    }
}

int
admin_crypto_new(struct event_base *base, struct admin_crypto **crypto_r)
{
    if (sodium_init() < 0)
        return -EIO;
    struct admin_crypto *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->todo_tail = &c->todo;
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd < 0) {
        int err = -errno;
        free(c);
        return err;
    }
    c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, done_cb, c);
    if (!c->ev || event_add(c->ev, NULL) < 0)
        log_fatal("out of memory");
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    int ret = pthread_create(&c->thread, NULL, crypto_thread, c);
    if (ret != 0) {
        event_free(c->ev);
        close(c->efd);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->wake);
        free(c);
        return -ret;
    }
    *crypto_r = c;
    return 0;
}

void
admin_crypto_free(struct admin_crypto **crypto)
{
    struct admin_crypto *c = *crypto;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    /* Jobs never run or never reported: their calls are freed by the server, unanswered. */
    for (struct crypto_job *lists[2] = {c->todo, c->done}, **l = lists; l < lists + 2; l++)
        while (*l) {
            struct crypto_job *j = *l;
            *l = j->next;
            job_free(j);
        }
    event_free(c->ev);
    close(c->efd);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
    *crypto = NULL;
}

static int
submit(struct admin_crypto *c, struct admin_call *call, bool hash_only, const char *hash,
       const char *password, admin_crypto_cb *cb)
{
    struct crypto_job *j = calloc(1, sizeof(*j));
    if (!j || !(j->password = strdup(password)))
        log_fatal("out of memory");
    j->call = call;
    j->cb = cb;
    j->hash_only = hash_only;
    if (hash)
        snprintf(j->hash, sizeof(j->hash), "%s", hash);
    pthread_mutex_lock(&c->lock);
    if (c->n_todo >= ADMIN_CRYPTO_QUEUE_MAX) {
        pthread_mutex_unlock(&c->lock);
        job_free(j);
        return TDM_ELIMIT;
    }
    *c->todo_tail = j;
    c->todo_tail = &j->next;
    c->n_todo++;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    admin_call_watch_close(call);
    return 0;
}

int
admin_crypto_verify(struct admin_crypto *c, struct admin_call *call, const char *hash,
                    const char *password, admin_crypto_cb *cb)
{
    return submit(c, call, false, hash, password, cb);
}

int
admin_crypto_hash(struct admin_crypto *c, struct admin_call *call, const char *password,
                  admin_crypto_cb *cb)
{
    return submit(c, call, true, NULL, password, cb);
}

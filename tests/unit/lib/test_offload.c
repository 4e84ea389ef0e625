/*
 * Offloaded work: jobs run on another thread in submission order and report on the loop
 * thread in the same order; the queue bound refuses with TDM_ELIMIT; freeing reports every
 * job exactly once (finished ones as ran, waiting ones as not).
 */
#include "lib/offload.h"

#include "lib/err.h"

#include <event2/event.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

struct job {
    int id;
    pthread_t ran_on;
    sem_t *gate;    /* when set, the work waits here first */
    sem_t *started; /* when set, posted as the work starts */
    int *order;  /* done appends id here */
    int *n_order;
    bool ran;
    bool reported;
};

static pthread_t loop_thread;

static void
work(void *arg)
{
    struct job *j = arg;
    if (j->started)
        sem_post(j->started);
    if (j->gate)
        sem_wait(j->gate);
    j->ran_on = pthread_self();
}

static void
done(void *arg, bool ran)
{
    struct job *j = arg;
    assert_true(pthread_equal(pthread_self(), loop_thread));
    assert_false(j->reported);
    j->reported = true;
    j->ran = ran;
    j->order[(*j->n_order)++] = j->id;
}

static void
run_loop_until(struct event_base *base, const int *n, int want)
{
    for (int i = 0; i < 2000 && *n < want; i++) {
        struct timeval tv = {0, 2000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    assert_int_equal(*n, want);
}

static void
test_order_and_threads(void **state)
{
    (void)state;
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct offload *o = NULL;
    assert_int_equal(offload_new(base, 0, &o), 0);
    struct job jobs[20];
    int order[20], n = 0;
    for (int i = 0; i < 20; i++) {
        jobs[i] = (struct job){.id = i, .order = order, .n_order = &n};
        assert_int_equal(offload_submit(o, work, done, &jobs[i]), 0);
    }
    /* Never from inside the call: nothing is reported before the loop runs. */
    assert_int_equal(n, 0);
    run_loop_until(base, &n, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(order[i], i);
        assert_true(jobs[i].ran);
        assert_false(pthread_equal(jobs[i].ran_on, loop_thread));
    }
    offload_free(&o);
    assert_null(o);
    offload_free(&o); /* NULL is fine */
    event_base_free(base);
}

static void
test_bound_and_free_reports_everything(void **state)
{
    (void)state;
    loop_thread = pthread_self();
    struct event_base *base = event_base_new();
    struct offload *o = NULL;
    assert_int_equal(offload_new(base, 3, &o), 0);
    sem_t gate, started;
    sem_init(&gate, 0, 0);
    sem_init(&started, 0, 0);
    int order[8], n = 0;
    struct job first = {.id = 0, .gate = &gate, .started = &started, .order = order, .n_order = &n};
    assert_int_equal(offload_submit(o, work, done, &first), 0);
    sem_wait(&started); /* the thread holds the first job: the queue is empty */
    struct job waiting[3];
    for (int i = 0; i < 3; i++) {
        waiting[i] = (struct job){.id = i + 1, .order = order, .n_order = &n};
        assert_int_equal(offload_submit(o, work, done, &waiting[i]), 0);
    }
    struct job refused = {.id = 9, .order = order, .n_order = &n};
    assert_int_equal(offload_submit(o, work, done, &refused), TDM_ELIMIT);
    /* Free while the first runs: every job is reported exactly once, in order; those that
     * ran form a prefix (the first, and maybe some the thread took before it saw the stop). */
    sem_post(&gate);
    offload_free(&o);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(order[i], i);
    assert_true(first.reported && first.ran);
    bool stopped = false;
    for (int i = 0; i < 3; i++) {
        assert_true(waiting[i].reported);
        if (!waiting[i].ran)
            stopped = true;
        else
            assert_false(stopped);
    }
    assert_false(refused.reported);
    sem_destroy(&gate);
    sem_destroy(&started);
    event_base_free(base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_threads),
        cmocka_unit_test(test_bound_and_free_reports_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

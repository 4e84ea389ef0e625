/*
 * bench_core_link: what a worker's core link spends on SUBSCRIBE and UNSUBSCRIBE as the
 * subscriptions it holds grow (lib/core_link.c keeps them to renew after a reconnect). An IMAP
 * worker holds one per folder its sessions selected, so each SELECT of a new folder and each
 * last UNSELECT pays this. The peer is the same operation with 100 held: a cost that does not
 * grow with the count is the goal.
 *
 *   bench_core_link [--held "100 10000 60000"] [--ops N]
 *
 * The link points at a socket that does not exist, so nothing is sent: what is timed is the
 * bookkeeping alone, on the calling thread.
 */
#include "lib/core_link.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
one(unsigned held, unsigned ops)
{
    struct event_base *base = event_base_new();
    struct core_link *link;
    if (!base || core_link_new(base, "/nonexistent/core.sock", TDM_IPC_WORKER_IMAP, &link) < 0) {
        fprintf(stderr, "bench_core_link: cannot set up a link\n");
        exit(1);
    }
    char mailbox[32];
    double t0 = now();
    for (unsigned i = 0; i < held; i++) {
        snprintf(mailbox, sizeof(mailbox), "user%u", i);
        if (core_link_subscribe(link, "db1", mailbox, "INBOX") < 0)
            exit(1);
    }
    double t1 = now();
    for (unsigned i = 0; i < ops; i++) {
        snprintf(mailbox, sizeof(mailbox), "other%u", i);
        if (core_link_subscribe(link, "db1", mailbox, "INBOX") < 0 ||
            core_link_unsubscribe(link, "db1", mailbox, "INBOX") < 0)
            exit(1);
    }
    double t2 = now();
    printf("%10u %22.1f %30.2f\n", held, (t1 - t0) * 1e3, (t2 - t1) * 1e6 / ops);
    core_link_free(&link);
    event_base_free(base);
}

int
main(int argc, char **argv)
{
    const char *held = "100 10000 60000";
    unsigned ops = 20000;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--held"))
            held = argv[++i];
        else if (!strcmp(argv[i], "--ops"))
            ops = (unsigned)strtoul(argv[++i], NULL, 10);
        /* bench/run passes every benchmark the same options; ignore the others */
    }
    printf("bench_core_link: subscriptions held by one worker's core link, %u SUBSCRIBE + "
           "UNSUBSCRIBE pairs timed\n",
           ops);
    printf("%10s %22s %30s\n", "held", "subscribing them, ms", "one more and back, us/pair");
    char *list = strdup(held);
    for (char *tok = strtok(list, " "); tok; tok = strtok(NULL, " "))
        one((unsigned)strtoul(tok, NULL, 10), ops);
    free(list);
    return 0;
}

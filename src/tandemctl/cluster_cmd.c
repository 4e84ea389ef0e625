/*
 * tandemctl cluster status: the cluster as one server sees it (GET /v1/cluster,
 * docs/formats/admin-api.md): its members, each up or down on each network with when it was
 * last heard and the round trip, the votes seen and the quorum; on a node each CMS (its state
 * here, the lease, the last failover), on a witness its leases. The cluster objects of the
 * directory are topology_cmd.c's verbs of the same noun.
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_obj.h"
#include "tandemctl/ctl_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "123 ms ago", "never" */
static char *
ago(json_t *v)
{
    char *s = NULL;
    if (!json_is_integer(v))
        return strdup("never");
    if (asprintf(&s, "%" JSON_INTEGER_FORMAT " ms ago", json_integer_value(v)) < 0)
        return NULL;
    return s;
}


/* The cluster agent's CMSs on a node: "Active here", "Waiting: <reason>"... */
static void
print_cms(json_t *list)
{
    static const char *const headers[] = {"CMS", "ADDRESS", "STATE HERE", "LEASE",
                                          "LAST FAILOVER"};
    putchar('\n');
    struct ctl_table *t = ctl_table_new(5, headers);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *state = json_string_value(json_object_get(c, "state"));
        const char *reason = json_string_value(json_object_get(c, "reason"));
        char st[320], lease[160], last[320] = "none";
        if (state && !strcmp(state, "Active"))
            snprintf(st, sizeof(st), "Active here");
        else if (state && !strcmp(state, "FailingOver"))
            snprintf(st, sizeof(st), "Failing over");
        else if (state &&
                 (!strcmp(state, "Waiting") || !strcmp(state, "Fenced") ||
                  !strcmp(state, "Moving")) &&
                 reason && reason[0])
            snprintf(st, sizeof(st), "%s: %s", state, reason);
        else
            snprintf(st, sizeof(st), "%s", state ? state : "?");
        json_t *l = json_object_get(c, "lease");
        const char *holder = json_string_value(json_object_get(l, "holder"));
        snprintf(lease, sizeof(lease), "%s, epoch %" JSON_INTEGER_FORMAT "%s",
                 holder ? holder : "free", json_integer_value(json_object_get(l, "epoch")),
                 json_is_true(json_object_get(l, "witness_connected")) ? ""
                                                                        : " (witness lost)");
        json_t *f = json_object_get(c, "last_failover");
        if (json_is_object(f)) {
            const char *from = json_string_value(json_object_get(f, "from"));
            snprintf(last, sizeof(last),
                     "%s -> %s, epoch %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                     " ms, %" JSON_INTEGER_FORMAT " record(s) lost (%s)",
                     from ? from : "?", json_string_value(json_object_get(f, "to")),
                     json_integer_value(json_object_get(f, "epoch")),
                     json_integer_value(json_object_get(f, "took_ms")),
                     json_integer_value(json_object_get(f, "lost_records")),
                     json_string_value(json_object_get(f, "why")));
        }
        const char *cells[5] = {json_string_value(json_object_get(c, "name")),
                                json_string_value(json_object_get(c, "address")), st, lease,
                                last};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
    /* The last failover's loss and the resubmission from the dumpsters that followed it
     * (docs/cluster.md "Resubmission after a failover"). */
    json_array_foreach(list, i, c)
    {
        json_t *f = json_object_get(c, "last_failover");
        if (!json_is_object(f))
            continue;
        json_t *r = json_object_get(f, "resubmission");
        const char *rstate = json_string_value(json_object_get(r, "state"));
        size_t k, acked = 0, n = json_array_size(json_object_get(r, "requests"));
        json_t *q;
        json_array_foreach(json_object_get(r, "requests"), k, q)
        {
            const char *qs = json_string_value(json_object_get(q, "state"));
            acked += qs && !strcmp(qs, "acknowledged");
        }
        printf("%s: last failover (%s) ", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(f, "cause")));
        if (json_is_true(json_object_get(f, "lossy")))
            printf("lossy: %" JSON_INTEGER_FORMAT " record(s), %" JSON_INTEGER_FORMAT
                   " generation(s) missing",
                   json_integer_value(json_object_get(f, "lost_records")),
                   json_integer_value(json_object_get(f, "lost_generations")));
        else
            printf("not lossy as far as the copies' last reports show");
        printf("; resubmission %s", rstate ? rstate : "?");
        if (n)
            printf(" (%zu of %zu request(s) acknowledged)", acked, n);
        putchar('\n');
    }
    /* The running or last switchover asked here (docs/cluster.md "Switchover"). */
    json_array_foreach(list, i, c)
    {
        json_t *m = json_object_get(c, "move");
        if (!json_is_object(m))
            continue;
        const char *mstate = json_string_value(json_object_get(m, "state"));
        const char *comment = json_string_value(json_object_get(m, "comment"));
        printf("%s: move to %s %s", json_string_value(json_object_get(c, "name")),
               json_string_value(json_object_get(m, "to")), mstate ? mstate : "?");
        if (mstate && !strcmp(mstate, "completed"))
            printf(" in %" JSON_INTEGER_FORMAT " ms, epoch %" JSON_INTEGER_FORMAT
                   " -> %" JSON_INTEGER_FORMAT,
                   json_integer_value(json_object_get(m, "took_ms")),
                   json_integer_value(json_object_get(m, "epoch_before")),
                   json_integer_value(json_object_get(m, "epoch_after")));
        else if (mstate && !strcmp(mstate, "failed"))
            printf(" after %" JSON_INTEGER_FORMAT " ms: %s",
                   json_integer_value(json_object_get(m, "took_ms")),
                   json_string_value(json_object_get(m, "why")));
        printf(" (%s)\n", comment && comment[0] ? comment : "no comment");
    }
}

/* A witness's leases. */
static void
print_leases(json_t *list)
{
    static const char *const headers[] = {"LEASE", "HOLDER", "EPOCH", "REMAINING"};
    putchar('\n');
    struct ctl_table *t = ctl_table_new(4, headers);
    size_t i;
    json_t *l;
    json_array_foreach(list, i, l)
    {
        char epoch[32], remaining[48];
        const char *holder = json_string_value(json_object_get(l, "holder"));
        snprintf(epoch, sizeof(epoch), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(l, "epoch")));
        snprintf(remaining, sizeof(remaining), "%" JSON_INTEGER_FORMAT " ms",
                 json_integer_value(json_object_get(l, "remaining_ms")));
        const char *cells[4] = {json_string_value(json_object_get(l, "key")),
                                holder ? holder : "(free)", epoch, holder ? remaining : "-"};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static void
print_cluster(json_t *doc)
{
    json_t *role = json_object_get(doc, "role");
    if (!role) {
        puts("This server is not in a cluster and answers no heartbeats.");
        return;
    }
    struct ctl_table *t = ctl_table_new(2, NULL);
    char buf[256];
    if (json_object_get(doc, "cluster")) {
        const char *c1[2] = {"Cluster:", json_string_value(json_object_get(doc, "cluster"))};
        ctl_table_add(t, c1);
        snprintf(buf, sizeof(buf),
                 "%" JSON_INTEGER_FORMAT " seen of %" JSON_INTEGER_FORMAT
                 ", quorum %" JSON_INTEGER_FORMAT " (%s)",
                 json_integer_value(json_object_get(doc, "votes_seen")),
                 json_integer_value(json_object_get(doc, "votes")),
                 json_integer_value(json_object_get(doc, "quorum")),
                 json_is_true(json_object_get(doc, "has_quorum")) ? "held" : "LOST");
        const char *c2[2] = {"Votes:", buf};
        ctl_table_add(t, c2);
        char hb[128];
        snprintf(hb, sizeof(hb),
                 "every %" JSON_INTEGER_FORMAT " ms, down after %" JSON_INTEGER_FORMAT
                 " missed; lease_ttl %" JSON_INTEGER_FORMAT " ms",
                 json_integer_value(json_object_get(doc, "heartbeat_interval_ms")),
                 json_integer_value(json_object_get(doc, "heartbeat_misses")),
                 json_integer_value(json_object_get(doc, "lease_ttl_ms")));
        const char *c3[2] = {"Heartbeats:", hb};
        ctl_table_add(t, c3);
    } else {
        const char *c1[2] = {"Witness:", "answers the nodes' heartbeats (no cluster of its own)"};
        ctl_table_add(t, c1);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);

    json_t *cms = json_object_get(doc, "cms");
    if (json_array_size(cms) > 0)
        print_cms(cms);
    json_t *leases = json_object_get(doc, "leases");
    if (json_array_size(leases) > 0)
        print_leases(leases);
    json_t *members = json_object_get(doc, "members");
    if (json_array_size(members) == 0)
        return;
    static const char *const headers[] = {"MEMBER",    "KIND",       "STATE", "NETWORK",
                                          "NET STATE", "LAST HEARD", "RTT"};
    putchar('\n');
    t = ctl_table_new(7, headers);
    size_t i, j;
    json_t *m, *n;
    json_array_foreach(members, i, m)
    {
        json_array_foreach(json_object_get(m, "networks"), j, n)
        {
            json_t *rtt = json_object_get(n, "rtt_ms");
            char rtt_text[32] = "-";
            if (json_is_integer(rtt))
                snprintf(rtt_text, sizeof(rtt_text), "%" JSON_INTEGER_FORMAT " ms",
                         json_integer_value(rtt));
            char *heard = ago(json_object_get(n, "last_heard_ms_ago"));
            const char *state = json_string_value(json_object_get(m, "state"));
            if (json_is_true(json_object_get(m, "gone")))
                state = "down (not running)";
            if (json_is_string(json_object_get(m, "timers_differ")))
                state = "refused: timers differ";
            const char *cells[7] = {j == 0 ? json_string_value(json_object_get(m, "name")) : "",
                                    j == 0 ? json_string_value(json_object_get(m, "kind")) : "",
                                    j == 0 ? state : "",
                                    json_string_value(json_object_get(n, "network")),
                                    json_string_value(json_object_get(n, "state")),
                                    heard ? heard : "?",
                                    rtt_text};
            ctl_table_add(t, cells);
            free(heard);
        }
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
    /* Why a member is refused: both sides' timers (docs/cluster.md, "Timing"). */
    json_array_foreach(members, i, m)
    {
        const char *why = json_string_value(json_object_get(m, "timers_differ"));
        if (why)
            printf("%s: %s\n", json_string_value(json_object_get(m, "name")), why);
    }
}

int
ctl_cluster_status_run(const struct ctl_verb *verb, int argc, char **argv)
{
    return ctl_api_show(verb, argc, argv, "/v1/cluster", print_cluster);
}

/* tandemctl cms status <cms>: one CMS as this node's cluster agent sees it (from the same
 * GET /v1/cluster). */
int
ctl_cms_status_run(const struct ctl_verb *verb, int argc, char **argv)
{
    const char *pos[1];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, 1, 1, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    json_t *doc = NULL;
    r = ctl_api_call(&o, &t, "GET", "/v1/cluster", NULL, &doc);
    if (r == 0) {
        json_t *found = NULL, *c;
        size_t i;
        json_array_foreach(json_object_get(doc, "cms"), i, c)
        {
            const char *name = json_string_value(json_object_get(c, "name"));
            if (name && !strcmp(name, pos[0]))
                found = c;
        }
        if (!found) {
            ctl_error("%s is not a CMS of a cluster node here (no [cms %s] with [cluster])",
                      pos[0], pos[0]);
            r = CTL_EXIT_NOT_FOUND;
        } else if (o.json) {
            ctl_print_json(found);
        } else {
            json_t *one = json_array();
            json_array_append(one, found);
            print_cms(one);
            json_decref(one);
        }
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

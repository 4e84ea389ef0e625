/*
 * tandemctl witness status: a witness's coordination store (GET /v1/witness,
 * docs/formats/admin-api.md): every lease (holder, epoch, time left, what last renewed it
 * and when), every value (a CMS's
 * recorded log end decoded, docs/cluster.md "The recorded log end") and the nodes connected
 * now. Asked of a server without the witness role the API answers 404 (exit 7).
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INT(o, k) json_integer_value(json_object_get(o, k))
#define STR(o, k) json_string_value(json_object_get(o, k))

static void
print_leases(json_t *list)
{
    static const char *const headers[] = {"LEASE", "HOLDER",       "EPOCH",    "EXPIRES IN",
                                          "TTL",   "LAST RENEWED", "CONNECTED"};
    struct ctl_table *t = ctl_table_new(7, headers);
    size_t i;
    json_t *l;
    json_array_foreach(list, i, l)
    {
        const char *holder = STR(l, "holder");
        const char *by = STR(l, "renewed_by");
        char epoch[32], left[48], ttl[48], renewed[64] = "-";
        snprintf(epoch, sizeof(epoch), "%" JSON_INTEGER_FORMAT, INT(l, "epoch"));
        snprintf(left, sizeof(left), "%" JSON_INTEGER_FORMAT " ms", INT(l, "remaining_ms"));
        snprintf(ttl, sizeof(ttl), "%" JSON_INTEGER_FORMAT " ms", INT(l, "ttl_ms"));
        if (by)
            snprintf(renewed, sizeof(renewed), "%s %" JSON_INTEGER_FORMAT " ms ago", by,
                     INT(l, "renewed_ms_ago"));
        const char *cells[7] = {STR(l, "key"),
                                holder ? holder : "(free)",
                                epoch,
                                holder ? left : "-",
                                ttl,
                                renewed,
                                !holder                                                ? "-"
                                : json_is_true(json_object_get(l, "holder_connected")) ? "yes"
                                                                                       : "no"};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

/* "mb1 in epoch 3: db1 at lsn 105 (epoch 3, generation 5, offset 3000), ..." */
static char *
log_end_text(json_t *e)
{
    char *s = NULL;
    if (asprintf(&s, "%s in epoch %" JSON_INTEGER_FORMAT ":", STR(e, "holder"), INT(e, "epoch")) <
        0)
        return NULL;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(e, "dbs"), i, d)
    {
        char *more = NULL;
        if (asprintf(&more,
                     "%s%s %s at lsn %" JSON_INTEGER_FORMAT " (epoch %" JSON_INTEGER_FORMAT
                     ", generation %" JSON_INTEGER_FORMAT ", offset %" JSON_INTEGER_FORMAT ")",
                     s, i ? "," : "", STR(d, "name"), INT(d, "lsn"), INT(d, "epoch"),
                     INT(d, "generation"), INT(d, "offset")) < 0)
            more = NULL;
        free(s);
        s = more;
        if (!s)
            return NULL;
    }
    if (json_array_size(json_object_get(e, "dbs")) == 0) {
        char *more = NULL;
        if (asprintf(&more, "%s no databases", s) < 0)
            more = NULL;
        free(s);
        s = more;
    }
    return s;
}

static void
print_values(json_t *list)
{
    static const char *const headers[] = {"VALUE", "VERSION", "CONTENT"};
    struct ctl_table *t = ctl_table_new(3, headers);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        char version[32];
        snprintf(version, sizeof(version), "%" JSON_INTEGER_FORMAT, INT(v, "version"));
        char *content = NULL;
        json_t *end = json_object_get(v, "log_end");
        if (json_is_object(end))
            content = log_end_text(end);
        else if (STR(v, "text")) {
            /* One line in the table: newlines and tabs shown escaped. */
            char *j = json_dumps(json_object_get(v, "text"), JSON_ENCODE_ANY);
            content = j ? strdup(j) : NULL;
            free(j);
        } else if (asprintf(&content, "(%" JSON_INTEGER_FORMAT " bytes, not text)",
                            INT(v, "length")) < 0)
            content = NULL;
        const char *cells[3] = {STR(v, "key"), version, content ? content : "?"};
        ctl_table_add(t, cells);
        free(content);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static void
print_connected(json_t *list)
{
    static const char *const headers[] = {"NODE",   "CLUSTER", "ADDRESS",
                                          "LEASES", "SINCE",   "LAST REQUEST"};
    struct ctl_table *t = ctl_table_new(6, headers);
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        char leases[32], since[48], last[48];
        snprintf(leases, sizeof(leases), "%" JSON_INTEGER_FORMAT, INT(s, "leases"));
        snprintf(since, sizeof(since), "%" JSON_INTEGER_FORMAT " ms ago",
                 INT(s, "connected_ms_ago"));
        snprintf(last, sizeof(last), "%" JSON_INTEGER_FORMAT " ms ago",
                 INT(s, "last_request_ms_ago"));
        const char *cells[6] = {
            STR(s, "member"), STR(s, "cluster"), STR(s, "peer"), leases, since, last};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static void
print_witness(json_t *doc)
{
    json_t *leases = json_object_get(doc, "leases");
    json_t *values = json_object_get(doc, "values");
    json_t *connected = json_object_get(doc, "connected");
    size_t held = 0, i;
    json_t *l;
    json_array_foreach(leases, i, l) held += json_is_string(json_object_get(l, "holder"));
    printf("Witness %s: %zu lease(s), %zu held; %zu value(s); %zu node(s) connected\n",
           STR(doc, "server") ? STR(doc, "server") : "?", json_array_size(leases), held,
           json_array_size(values), json_array_size(connected));
    json_t *c = json_object_get(doc, "counters");
    printf("Since its start: %" JSON_INTEGER_FORMAT " session(s) accepted, %" JSON_INTEGER_FORMAT
           " refused, %" JSON_INTEGER_FORMAT " request(s); leases %" JSON_INTEGER_FORMAT
           " granted, %" JSON_INTEGER_FORMAT " renewed, %" JSON_INTEGER_FORMAT
           " denied, %" JSON_INTEGER_FORMAT " expired, %" JSON_INTEGER_FORMAT
           " freed at a session's end; values %" JSON_INTEGER_FORMAT
           " written, %" JSON_INTEGER_FORMAT " conflict(s)\n",
           INT(c, "sessions_accepted"), INT(c, "sessions_refused"), INT(c, "requests"),
           INT(c, "granted"), INT(c, "renewed"), INT(c, "denied"), INT(c, "expired"),
           INT(c, "freed"), INT(c, "cas_written"), INT(c, "cas_conflicts"));
    if (json_array_size(leases)) {
        putchar('\n');
        print_leases(leases);
    }
    if (json_array_size(values)) {
        putchar('\n');
        print_values(values);
    }
    if (json_array_size(connected)) {
        putchar('\n');
        print_connected(connected);
    }
}

static int
witness_status(const struct ctl_verb *verb, int argc, char **argv)
{
    return ctl_api_show(verb, argc, argv, "/v1/witness", print_witness);
}

const struct ctl_verb ctl_witness_verbs[] = {
    {"status", "[--json] [options]", "a witness's leases, recorded log ends and connected nodes",
     "Asks the server's admin API (GET /v1/witness); needs read on its server object.\n"
     "Every lease of the coordination store (holder, epoch, time left, time to live, what\n"
     "last renewed it and when: grant, renewal, transfer, or the witness's restart; whether\n"
     "the holder is connected), every value (a CMS's recorded log end decoded: its holder,\n"
     "epoch and each database's durable end), the nodes connected now (since when, their\n"
     "last request) and counters since the witness started. Exit status 7 when\n"
     "the server has no witness role, 10 when it has but serves no coordination store.\n",
     witness_status},
    {NULL, NULL, NULL, NULL, NULL},
};

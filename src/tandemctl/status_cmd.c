/*
 * tandemctl status, events and whoami: the commands that are about a server rather than a
 * directory object. Each is a noun without verbs (its table's one entry has the verb "").
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_obj.h"
#include "tandemctl/ctl_parse.h"
#include "tandemctl/ctl_table.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* status                                                             */

static void
kv(struct ctl_table *t, const char *key, json_t *v)
{
    char *s = ctl_obj_value_text(v);
    const char *cells[2] = {key, s};
    ctl_table_add(t, cells);
    free(s);
}

/* The [cms] sections: whether each address is up here (docs/cluster.md, "CMS address"). */
static void
print_cms(json_t *cms)
{
    if (json_array_size(cms) == 0)
        return;
    static const char *const headers[] = {"CMS", "ADDRESS", "HERE", "DATABASES"};
    putchar('\n');
    struct ctl_table *t = ctl_table_new(4, headers);
    size_t i;
    json_t *c;
    json_array_foreach(cms, i, c)
    {
        char *cells[4] = {ctl_obj_value_text(json_object_get(c, "name")),
                          ctl_obj_value_text(json_object_get(c, "address")),
                          ctl_obj_value_text(json_object_get(c, "state")),
                          ctl_obj_value_text(json_object_get(c, "databases"))};
        ctl_table_add(t, (const char *const *)cells);
        for (int k = 0; k < 4; k++)
            free(cells[k]);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static void
print_status(json_t *doc)
{
    struct ctl_table *t = ctl_table_new(2, NULL);
    kv(t, "Server:", json_object_get(doc, "server"));
    kv(t, "Site:", json_object_get(doc, "site"));
    kv(t, "Roles:", json_object_get(doc, "roles"));
    kv(t, "Version:", json_object_get(doc, "version"));
    kv(t, "PID:", json_object_get(doc, "pid"));
    json_int_t up = json_integer_value(json_object_get(doc, "uptime_s"));
    char buf[64];
    snprintf(buf, sizeof(buf),
             "%" JSON_INTEGER_FORMAT "d %02" JSON_INTEGER_FORMAT ":%02" JSON_INTEGER_FORMAT
             ":%02" JSON_INTEGER_FORMAT,
             up / 86400, up / 3600 % 24, up / 60 % 60, up % 60);
    const char *cells[2] = {"Uptime:", buf};
    ctl_table_add(t, cells);
    ctl_table_print(t, stdout);
    ctl_table_free(&t);

    static const char *const headers[] = {"DATABASE", "KIND",    "STATE",      "LAST LSN",
                                          "DURABLE",  "APPLIED", "CHECKPOINT", "GENERATIONS",
                                          "COMMITS",  "SYNCS"};
    static const char *const keys[] = {"name",        "kind",        "state",          "last_lsn",
                                       "durable_lsn", "applied_lsn", "checkpoint_lsn", NULL,
                                       "commits",     "syncs"};
    print_cms(json_object_get(doc, "cms"));
    json_t *dbs = json_object_get(doc, "databases");
    if (json_array_size(dbs) == 0) {
        puts("\nNo databases mounted.");
        return;
    }
    putchar('\n');
    t = ctl_table_new(10, headers);
    size_t i;
    json_t *db;
    json_array_foreach(dbs, i, db)
    {
        char *c[10];
        for (int k = 0; k < 10; k++) {
            if (keys[k]) {
                c[k] = ctl_obj_value_text(json_object_get(db, keys[k]));
                continue;
            }
            if (asprintf(&c[k], "%" JSON_INTEGER_FORMAT "-%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(db, "lowest_generation")),
                         json_integer_value(json_object_get(db, "current_generation"))) < 0)
                c[k] = NULL;
        }
        ctl_table_add(t, (const char *const *)c);
        for (int k = 0; k < 10; k++)
            free(c[k]);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static int
status_run(const struct ctl_verb *verb, int argc, char **argv)
{
    return ctl_api_show(verb, argc, argv, "/v1/status", print_status);
}

/* ------------------------------------------------------------------ */
/* whoami                                                             */

static void
print_whoami(json_t *doc)
{
    const char *who = json_string_value(json_object_get(doc, "principal"));
    bool admin = json_is_true(json_object_get(doc, "admin"));
    printf("%s%s\n", who ? who : "?",
           who && strcmp(who, "local") == 0 ? " (the local operator: full control)"
           : admin                          ? " (member of admins: full control)"
                                            : "");
}

static int
whoami_run(const struct ctl_verb *verb, int argc, char **argv)
{
    return ctl_api_show(verb, argc, argv, "/v1/whoami", print_whoami);
}

/* ------------------------------------------------------------------ */
/* events                                                             */

struct events_ctx {
    bool json;
    char line[65536];
    size_t len;
    bool overlong; /* the current line did not fit: it is skipped with a note */
};

/* Prints the line collected in c. Returns 0, or 1 when stdout cannot be written (a closed
 * pipe: SIGPIPE is ignored while tandemctl talks to a server). */
static int
print_event(struct events_ctx *c)
{
    c->line[c->len] = '\0';
    if (c->len == 0)
        return 0;
    if (c->json) {
        puts(c->line);
    } else {
        json_t *e = json_loads(c->line, 0, NULL);
        if (!e) {
            printf("%s\n", c->line); /* not ours to judge: show it as it came */
        } else {
            const char *subject = json_string_value(json_object_get(e, "subject"));
            printf("%s %-7s %s(%" JSON_INTEGER_FORMAT ")%s%s: %s\n",
                   json_string_value(json_object_get(e, "ts")),
                   json_string_value(json_object_get(e, "severity")),
                   json_string_value(json_object_get(e, "name")),
                   json_integer_value(json_object_get(e, "id")), subject ? " " : "",
                   subject ? subject : "", json_string_value(json_object_get(e, "message")));
            json_decref(e);
        }
    }
    /* Followers read as events happen, often through a pipe. */
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

static int
events_cb(void *ctx, const uint8_t *data, size_t len)
{
    struct events_ctx *c = ctx;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (c->overlong)
                fprintf(stderr, "tandemctl: an event line over %zu bytes was skipped\n",
                        sizeof(c->line) - 1);
            else if (print_event(c) != 0)
                return 1;
            c->len = 0;
            c->overlong = false;
        } else if (c->len + 1 < sizeof(c->line)) {
            c->line[c->len++] = (char)data[i];
        } else {
            c->overlong = true;
        }
    }
    return 0;
}

static int
events_run(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o = {0};
    bool follow = false;
    const char *since = NULL;
    for (int i = 1; i < argc; i++) {
        int r = ctl_api_option(verb, argc, argv, &i, &o);
        if (r == 1)
            continue;
        if (r != 0)
            return r;
        if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
            follow = true;
            continue;
        }
        if ((r = ctl_opt_value(verb, "--since", argc, argv, &i, &since)) != 0) {
            if (r != 1)
                return r;
            continue;
        }
        return ctl_usage_error(verb, "unknown %s \"%s\"", argv[i][0] == '-' ? "option" : "argument",
                               argv[i]);
    }
    if (o.help) {
        ctl_verb_help_with(verb, ctl_api_options_help);
        return CTL_EXIT_OK;
    }
    long long from = 0;
    if (since && !ctl_parse_since(since, time(NULL), &from))
        return ctl_usage_error(verb,
                               "--since \"%s\" is not a duration (90s, 10m, 2h, 7d), unix "
                               "seconds or a UTC time (2026-11-25T14:35:06Z)",
                               since);
    struct admin_target t;
    int r = ctl_api_target(verb, &o, follow, &t);
    if (r != 0)
        return r;
    char path[128];
    snprintf(path, sizeof(path), "/v1/events?since=%lld%s", from < 0 ? 0 : from,
             follow ? "&follow=1" : "");
    struct events_ctx *c = calloc(1, sizeof(*c));
    if (!c) {
        ctl_error("out of memory");
        admin_target_clear(&t);
        return CTL_EXIT_ERROR;
    }
    c->json = o.json;
    /* Streamed (events_cb): a follower's answer never ends, and a long history need not fit
     * in memory. */
    struct admin_response resp;
    enum admin_fail why;
    char *err = NULL;
    r = admin_request(&t, "GET", path, NULL, events_cb, c, &resp, &why, &err);
    if (r > 0) {
        r = CTL_EXIT_OK; /* our reader went away (`| head`): nothing more to do */
    } else if (r < 0) {
        ctl_error("%s", err);
        free(err);
        r = CTL_EXIT_UNREACHABLE;
    } else if (resp.status / 100 != 2) {
        r = ctl_api_report_error(&o, &t, &resp, 0, NULL);
    } else if (c->len) {
        print_event(c); /* a last line without its newline */
    }
    admin_response_clear(&resp);
    free(c);
    admin_target_clear(&t);
    return r;
}

const struct ctl_verb ctl_status_verbs[] = {
    {"", "[options]", "show the server: name, site, roles, uptime and its databases",
     "Needs read on the server's own directory object (server/<name>).\n", status_run},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct ctl_verb ctl_events_verbs[] = {
    {"", "[--since DURATION|TIME] [--follow] [options]",
     "print the server's operator events (docs/events.md), oldest first",
     "--since 10m | 2h | 7d       events of the last 10 minutes, 2 hours, 7 days\n"
     "--since 1764081306          events since that unix time\n"
     "--since 2026-11-25T14:35:06Z  events since that UTC time\n"
     "--follow, -f                keep printing new events as they happen (until ^C)\n"
     "Without --since: every event the server still has. --json prints the JSON lines\n"
     "as the server sends them.\n",
     events_run},
    {NULL, NULL, NULL, NULL, NULL},
};

const struct ctl_verb ctl_whoami_verbs[] = {
    {"", "[options]", "show the principal the server sees you as, and whether it is an admin", NULL,
     whoami_run},
    {NULL, NULL, NULL, NULL, NULL},
};

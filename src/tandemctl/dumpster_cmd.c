/*
 * tandemctl dumpster: a transport server's copies of the mail it delivered (docs/smtp.md,
 * "Transport dumpster").
 *   status    GET /v1/dumpster
 *   resubmit  POST /v1/dumpster/resubmit?database=<name>&since=<unix time>|all
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
print_dumpster(json_t *doc)
{
    printf("%-24s %10s %14s  %s\n", "DATABASE", "MESSAGES", "BYTES", "OLDEST");
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(doc, "databases"), i, d)
    {
        time_t oldest = (time_t)json_integer_value(json_object_get(d, "oldest"));
        char when[32] = "-";
        struct tm tm;
        if (oldest > 0 && gmtime_r(&oldest, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
        printf("%-24s %10" JSON_INTEGER_FORMAT " %14" JSON_INTEGER_FORMAT "  %s\n",
               json_string_value(json_object_get(d, "database")),
               json_integer_value(json_object_get(d, "count")),
               json_integer_value(json_object_get(d, "bytes")), when);
    }
}

static int
dumpster_status(const struct ctl_verb *verb, int argc, char **argv)
{
    return ctl_api_show(verb, argc, argv, "/v1/dumpster", print_dumpster);
}

/* --since: "all", a Unix time, or a duration back from now (30m, 2h, 2d). */
static bool
parse_since(const char *v, char *out, size_t size)
{
    if (!strcmp(v, "all")) {
        snprintf(out, size, "all");
        return true;
    }
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || n < 0)
        return false;
    long long unit = !strcmp(end, "")    ? 0
                     : !strcmp(end, "s") ? 1
                     : !strcmp(end, "m") ? 60
                     : !strcmp(end, "h") ? 3600
                     : !strcmp(end, "d") ? 86400
                                         : -1;
    if (unit < 0 || (unit > 0 && n > 365LL * 86400 / unit))
        return false;
    long long t = unit == 0 ? n : (long long)time(NULL) - n * unit;
    snprintf(out, size, "%lld", t < 0 ? 0 : t);
    return true;
}

static int
dumpster_resubmit(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *db, *since = NULL;
    const struct ctl_opt opts[] = {
        {"--since", NULL, &since, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, opts, "database", &o, &db);
    if (r >= 0)
        return r;
    if (!since)
        return ctl_usage_error(verb, "missing --since (a Unix time, a duration back, or all)");
    char when[32];
    if (!parse_since(since, when, sizeof(when)))
        return ctl_usage_error(verb, "--since %s: a Unix time, a duration (30m, 2h, 2d), or all",
                               since);
    char path[1024], since_q[48];
    snprintf(since_q, sizeof(since_q), "&since=%s", when);
    if (!ctl_path_make(path, sizeof(path), "/v1/dumpster/resubmit?database=", db, since_q))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *doc;
    r = ctl_api_request(verb, &o, "POST", path, NULL, &doc);
    if (r == 0 && !o.json)
        printf("%s: %" JSON_INTEGER_FORMAT " message(s); %" JSON_INTEGER_FORMAT
               " recipient(s) resubmitted, %" JSON_INTEGER_FORMAT " deferred, %"
               JSON_INTEGER_FORMAT " refused\n",
               db, json_integer_value(json_object_get(doc, "messages")),
               json_integer_value(json_object_get(doc, "resubmitted")),
               json_integer_value(json_object_get(doc, "deferred")),
               json_integer_value(json_object_get(doc, "refused")));
    json_decref(doc);
    return r;
}

const struct ctl_verb ctl_dumpster_verbs[] = {
    {"status", "[--json]", "messages, bytes and the oldest entry per database",
     "What a transport server keeps of the mail it delivered, per mailbox database\n"
     "([dumpster] max_age and max_size bound it).\n",
     dumpster_status},
    {"resubmit", "<database> --since TIME|all [--json]",
     "deliver again what the dumpster holds for <database> since TIME",
     "Relays every kept message of <database> delivered at or after TIME (a Unix time, or a\n"
     "duration back from now: 30m, 2h, 2d; or all) to where the directory routes it now, with\n"
     "the same delivery ids: the mailbox server delivers what a lossy failover lost and drops\n"
     "what it still has. Prints how many recipients it took and how many it refused.\n",
     dumpster_resubmit},
    {NULL, NULL, NULL, NULL, NULL},
};

/*
 * tandemctl copy: the copies a server holds (docs/replication.md, "Copies").
 *   add      offline: copy.conf built from the directory's copy, database and cms objects
 *            (GET /v1/objects/...), written into the datadir of the server -c names
 *   create   offline: writes <dir>/copy.conf, which makes the directory a copy at the next
 *            start of the server whose datadir holds it
 *   status   GET /v1/copies
 *   suspend  POST /v1/copies/<database>/suspend {"comment": ...}
 *   resume   POST /v1/copies/<database>/resume
 *   reseed   POST /v1/copies/<database>/reseed[?delete_existing=true]
 *   activate POST /v1/copies/<database>/activate[?force=true]
 *   remove   DELETE /v1/copies/<database>
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_parse.h"
#include "tandemctl/ctl_obj.h"
#include "tandemctl/ctl_table.h"

#include "lib/config.h"

#include "lib/config_parse.h"
#include "lib/err.h"
#include "proto/repl/repl_wire.h"
#include "repl/repl_copy_conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* create                                                             */

/* "NETWORK=ADDRESS:PORT" into the next source. Returns 0 or the usage error's exit code. */
static int
add_source(const struct ctl_verb *verb, struct repl_copy_conf *c, const char *v)
{
    if (c->n_sources == REPL_COPY_MAX_SOURCES)
        return ctl_usage_error(verb, "at most %d --source", REPL_COPY_MAX_SOURCES);
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || (size_t)(eq - v) > TDM_CONFIG_NAME_MAX)
        return ctl_usage_error(verb, "--source %s: give NETWORK=ADDRESS:PORT", v);
    char net[TDM_CONFIG_NAME_MAX + 1], reason[CONFIG_REASON_MAX];
    snprintf(net, sizeof(net), "%.*s", (int)(eq - v), v);
    struct repl_copy_source *s = &c->sources[c->n_sources];
    memset(s, 0, sizeof(*s));
    if (config_value_name(net, TDM_CONFIG_NAME_MAX, s->network, reason) < 0)
        return ctl_usage_error(verb, "--source %s: network: %s", v, reason);
    for (unsigned i = 0; i < c->n_sources; i++)
        if (!strcmp(c->sources[i].network, s->network))
            return ctl_usage_error(verb, "--source: network %s given twice", s->network);
    struct tdm_config_addr *a = &s->endpoint.address;
    if (config_value_endpoint(eq + 1, &a->family, a->bytes, &s->endpoint.port, reason) < 0)
        return ctl_usage_error(verb, "--source %s: %s", v, reason);
    inet_ntop(a->family, a->bytes, a->text, sizeof(a->text));
    c->n_sources++;
    return 0;
}

/* Writes dir/copy.conf for c and says so. A new copy: an empty directory (its agent seeds it
 * from the active), or one holding nothing but an older copy.conf (rewritten); a directory
 * holding a database that is not a copy is refused. Returns an exit code. */
static int
write_marker(const char *dir, const struct repl_copy_conf *c)
{
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        ctl_error("cannot create %s: %s", dir, strerror(errno));
        return CTL_EXIT_ERROR;
    }
    char *logdir;
    if (asprintf(&logdir, "%s/log", dir) < 0)
        return CTL_EXIT_ERROR;
    struct stat st;
    bool has_log = stat(logdir, &st) == 0;
    free(logdir);
    char *conf_path;
    if (asprintf(&conf_path, "%s/%s", dir, REPL_COPY_CONF_NAME) < 0)
        return CTL_EXIT_ERROR;
    bool has_conf = stat(conf_path, &st) == 0;
    free(conf_path);
    if (has_log && !has_conf) {
        ctl_error("%s holds a database that is not a copy: activating or converting one is "
                  "not what copy create or copy add does",
                  dir);
        return CTL_EXIT_USAGE;
    }
    char *why = NULL;
    int ret = repl_copy_conf_write(dir, c, &why);
    if (ret < 0) {
        ctl_error("%s", why ? why : tdm_strerror(ret));
        free(why);
        return CTL_EXIT_ERROR;
    }
    printf("%s is a %s copy from %s (%s:%u)%s\n", dir,
           c->role == REPL_ROLE_STANDBY ? "standby" : "passive", c->sources[0].network,
           c->sources[0].endpoint.address.text, (unsigned)c->sources[0].endpoint.port,
           has_conf ? ", rewritten" : "");
    return CTL_EXIT_OK;
}

static int
copy_create(const struct ctl_verb *verb, int argc, char **argv)
{
    struct repl_copy_conf c = {.role = 0};
    snprintf(c.kind, sizeof(c.kind), "%s", STORE_KIND_MAIL);
    const char *dir = NULL, *lag = NULL;
    const char *compress[REPL_COPY_MAX_SOURCES];
    unsigned n_compress = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ctl_verb_help(verb);
            return CTL_EXIT_OK;
        }
        if ((r = ctl_opt_value(verb, "--role", argc, argv, &i, &v)) != 0) {
            if (r != 1)
                return r;
            if (!strcmp(v, "passive"))
                c.role = REPL_ROLE_PASSIVE;
            else if (!strcmp(v, "standby"))
                c.role = REPL_ROLE_STANDBY;
            else
                return ctl_usage_error(verb, "--role must be passive or standby");
            continue;
        }
        if ((r = ctl_opt_value(verb, "--source", argc, argv, &i, &v)) != 0) {
            if (r != 1 || (r = add_source(verb, &c, v)) != 0)
                return r;
            continue;
        }
        if ((r = ctl_opt_value(verb, "--compress", argc, argv, &i, &v)) != 0) {
            if (r != 1)
                return r;
            if (n_compress == REPL_COPY_MAX_SOURCES)
                return ctl_usage_error(verb, "at most %d --compress", REPL_COPY_MAX_SOURCES);
            compress[n_compress++] = v;
            continue;
        }
        if ((r = ctl_opt_value(verb, "--replay-lag", argc, argv, &i, &v)) != 0) {
            if (r != 1)
                return r;
            lag = v;
            continue;
        }
        if ((r = ctl_opt_value(verb, "--truncation-lag", argc, argv, &i, &v)) != 0) {
            if (r != 1)
                return r;
            char reason[CONFIG_REASON_MAX];
            if (config_value_number(v, &config_duration_units, 0, REPL_COPY_MAX_REPLAY_LAG_MS, 0,
                                    &c.truncation_lag_ms, reason) < 0)
                return ctl_usage_error(verb, "--truncation-lag: %s", reason);
            continue;
        }
        if ((r = ctl_opt_value(verb, "--kind", argc, argv, &i, &v)) != 0) {
            if (r != 1)
                return r;
            if (!store_kind_valid(v))
                return ctl_usage_error(verb, "--kind %s is not a database kind", v);
            snprintf(c.kind, sizeof(c.kind), "%s", v);
            continue;
        }
        if (argv[i][0] == '-')
            return ctl_usage_error(verb, "unknown option %s", argv[i]);
        if (dir)
            return ctl_usage_error(verb, "one directory only");
        dir = argv[i];
    }
    if (!dir)
        return ctl_usage_error(verb, "missing the database directory");
    if (!c.role)
        return ctl_usage_error(verb, "missing --role passive|standby");
    if (c.n_sources == 0)
        return ctl_usage_error(verb, "missing --source NETWORK=ADDRESS:PORT (the active's "
                                     "[listen replication] on that network)");
    /* zstd on the networks named: a WAN link, where bytes cost more than the CPU. */
    for (unsigned k = 0; k < n_compress; k++) {
        unsigned j = 0;
        while (j < c.n_sources && strcmp(c.sources[j].network, compress[k]) != 0)
            j++;
        if (j == c.n_sources)
            return ctl_usage_error(verb, "--compress %s: no --source on that network", compress[k]);
        c.sources[j].compression = REPL_COMPRESSION_ZSTD;
    }
    char reason[CONFIG_REASON_MAX];
    if (lag) {
        if (c.role != REPL_ROLE_STANDBY)
            return ctl_usage_error(verb, "--replay-lag is for a standby copy only");
        if (config_value_number(lag, &config_duration_units, 0, REPL_COPY_MAX_REPLAY_LAG_MS, 0,
                                &c.replay_lag_ms, reason) < 0)
            return ctl_usage_error(verb, "--replay-lag: %s", reason);
    } else if (c.role == REPL_ROLE_STANDBY) {
        c.replay_lag_ms = REPL_COPY_DEFAULT_STANDBY_LAG_MS;
    }
    return write_marker(dir, &c);
}

/* ------------------------------------------------------------------ */
/* add                                                                */

static json_t *
attr(json_t *obj, const char *key)
{
    return json_object_get(json_object_get(obj, "attrs"), key);
}

/* GET /v1/objects/<kind>/<name> into *obj_r; on 404 the error line says what needs it. */
static int
get_object(const struct ctl_api_opts *o, const struct admin_target *t, const char *kind,
           const char *name, const char *needed_by, json_t **obj_r)
{
    char path[1024], hint[512];
    if (!ctl_obj_path(path, sizeof(path), kind, name, "")) {
        ctl_error("%s %s: the name is too long", kind, name);
        return CTL_EXIT_USAGE;
    }
    snprintf(hint, sizeof(hint), "%s names %s object %s, which the directory does not hold",
             needed_by, kind, name);
    return ctl_api_call_hint(o, t, "GET", path, NULL, 404, hint, obj_r);
}

/* The one copy object naming database db and server, into *copy_r (a new reference). */
static int
find_copy_object(const struct ctl_api_opts *o, const struct admin_target *t, const char *db,
                 const char *server, json_t **copy_r)
{
    json_t *doc = NULL;
    int r = ctl_api_call(o, t, "GET", "/v1/objects/copy", NULL, &doc);
    if (r != 0)
        return r;
    json_t *found = NULL, *c;
    size_t i, n = 0;
    json_array_foreach(json_object_get(doc, "objects"), i, c)
    {
        const char *d = json_string_value(attr(c, "database"));
        const char *s = json_string_value(attr(c, "server"));
        if (d && s && !strcmp(d, db) && !strcmp(s, server)) {
            if (n++ == 0)
                found = c;
        }
    }
    if (n == 0) {
        ctl_error("no copy object in the directory names database %s and server %s: define "
                  "one (attributes database, server, role) or give the whole copy to "
                  "copy create",
                  db, server);
        r = CTL_EXIT_NOT_FOUND;
    } else if (n > 1) {
        ctl_error("%zu copy objects name database %s and server %s (one is %s): a server holds "
                  "one copy of a database; remove the others",
                  n, db, server, json_string_value(json_object_get(found, "name")));
        r = CTL_EXIT_CONFLICT;
    } else {
        *copy_r = json_incref(found);
    }
    json_decref(doc);
    return r;
}

/* copy.conf's role and lags from the copy object. Returns 0 or an exit code after printing
 * what is missing. */
static int
conf_from_copy(json_t *copy, const char *kind, struct repl_copy_conf *c)
{
    const char *copy_name = json_string_value(json_object_get(copy, "name"));
    memset(c, 0, sizeof(*c));
    snprintf(c->kind, sizeof(c->kind), "%s", kind);
    const char *role = json_string_value(attr(copy, "role"));
    if (!role) {
        ctl_error("copy object %s has no role (passive: same site, replays at once; standby: "
                  "another site, replay lag)",
                  copy_name);
        return CTL_EXIT_NOT_FOUND;
    }
    c->role = !strcmp(role, "standby") ? REPL_ROLE_STANDBY : REPL_ROLE_PASSIVE;
    json_t *lag = attr(copy, "replay_lag_minutes");
    if (lag && c->role == REPL_ROLE_PASSIVE && json_integer_value(lag) != 0) {
        ctl_error("copy object %s: a passive copy replays at once, but its replay_lag_minutes "
                  "is %" JSON_INTEGER_FORMAT ": make it a standby or unset the lag",
                  copy_name, json_integer_value(lag));
        return CTL_EXIT_USAGE;
    }
    /* The schema holds both lags to 7 days, as copy.conf does. */
    if (c->role == REPL_ROLE_STANDBY)
        c->replay_lag_ms =
            lag ? (uint64_t)json_integer_value(lag) * 60000u : REPL_COPY_DEFAULT_STANDBY_LAG_MS;
    c->truncation_lag_ms =
        (uint64_t)json_integer_value(attr(copy, "truncation_lag_minutes")) * 60000u;
    return 0;
}

/* copy.conf's source from the database's cms object: [source <network>] at <address>:
 * <replication_port>. Returns 0 or an exit code after printing what is missing. */
static int
conf_from_cms(json_t *cms, struct repl_copy_conf *c)
{
    const char *cms_name = json_string_value(json_object_get(cms, "name"));
    const char *address = json_string_value(attr(cms, "address"));
    const char *network = json_string_value(attr(cms, "network"));
    if (!address || !network) {
        ctl_error("cms object %s has no %s: the copy pulls from the cms's address on its "
                  "network",
                  cms_name, !address ? "address" : "network");
        return CTL_EXIT_NOT_FOUND;
    }
    json_t *port = attr(cms, "replication_port");
    char endpoint[96], reason[CONFIG_REASON_MAX];
    snprintf(endpoint, sizeof(endpoint), "%s%s%s:%u", strchr(address, ':') ? "[" : "", address,
             strchr(address, ':') ? "]" : "",
             port ? (unsigned)json_integer_value(port) : REPL_DEFAULT_PORT);
    struct repl_copy_source *s = &c->sources[0];
    if (config_value_name(network, TDM_CONFIG_NAME_MAX, s->network, reason) < 0) {
        ctl_error("cms object %s: network \"%s\": %s", cms_name, network, reason);
        return CTL_EXIT_USAGE;
    }
    struct tdm_config_addr *a = &s->endpoint.address;
    if (config_value_endpoint(endpoint, &a->family, a->bytes, &s->endpoint.port, reason) < 0) {
        ctl_error("cms object %s: address %s: %s", cms_name, address, reason);
        return CTL_EXIT_USAGE;
    }
    inet_ntop(a->family, a->bytes, a->text, sizeof(a->text));
    c->n_sources = 1;
    return 0;
}

static int
copy_add(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *db, *server_name = NULL, *kind = STORE_KIND_MAIL;
    const struct ctl_opt opts[] = {
        {"--server-name", NULL, &server_name, NULL, NULL},
        {"--kind", NULL, &kind, store_kind_valid, "is not a database kind"},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, opts, "database", &o, &db);
    if (r >= 0)
        return r;
    /* A directory under <datadir>/db/: never a path. */
    if (!db[0] || db[0] == '.' || strchr(db, '/') || strlen(db) > 255)
        return ctl_usage_error(verb, "%s is not a database name", db);
    if (!o.config)
        return ctl_usage_error(verb, "give -c <tandemd config> of the server that will hold "
                                     "the copy: its datadir gets the copy, its name finds the "
                                     "copy object");
    struct tdm_config *cfg = NULL;
    char *err = NULL;
    r = tdm_config_load_file(o.config, &cfg, &err);
    if (r != 0) {
        ctl_error("cannot use the tandemd config: %s", err ? err : "out of memory");
        free(err);
        return r == -ENOENT || r == -EACCES ? CTL_EXIT_ERROR : CTL_EXIT_USAGE;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/db/%s", cfg->datadir, db);
    char server[TDM_CONFIG_NAME_MAX + 1];
    snprintf(server, sizeof(server), "%s", server_name ? server_name : cfg->server);
    tdm_config_free(&cfg);

    struct admin_target t;
    if ((r = ctl_api_target(verb, &o, false, &t)) != 0)
        return r;
    json_t *copy = NULL, *dbobj = NULL, *cms = NULL;
    struct repl_copy_conf c;
    r = find_copy_object(&o, &t, db, server, &copy);
    if (r == 0)
        r = conf_from_copy(copy, kind, &c);
    char needed_by[256];
    if (r == 0) {
        snprintf(needed_by, sizeof(needed_by), "copy object %s",
                 json_string_value(json_object_get(copy, "name")));
        r = get_object(&o, &t, "database", db, needed_by, &dbobj);
    }
    if (r == 0) {
        const char *cms_name = json_string_value(attr(dbobj, "cms"));
        if (!cms_name) {
            ctl_error("database object %s has no cms: a copy pulls from the address of the "
                      "cms that owns the database",
                      db);
            r = CTL_EXIT_NOT_FOUND;
        } else {
            snprintf(needed_by, sizeof(needed_by), "database object %s", db);
            r = get_object(&o, &t, "cms", cms_name, needed_by, &cms);
        }
    }
    if (r == 0)
        r = conf_from_cms(cms, &c);
    if (r == 0)
        r = write_marker(dir, &c);
    json_decref(copy);
    json_decref(dbobj);
    json_decref(cms);
    admin_target_clear(&t);
    return r;
}

/* ------------------------------------------------------------------ */
/* status                                                             */

static uint64_t
u64(json_t *o, const char *key)
{
    return (uint64_t)json_integer_value(json_object_get(o, key));
}

static const char *
str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* "2026-11-26 02:03:04" (UTC) or "-" for 0. */
static void
when(char out[32], uint64_t us)
{
    if (!us) {
        snprintf(out, 32, "-");
        return;
    }
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

static void
print_copies(json_t *doc)
{
    json_t *copies = json_object_get(doc, "copies");
    if (json_array_size(copies) == 0) {
        printf("%s holds no copies.\n", str(doc, "server"));
        return;
    }
    static const char *const headers[] = {"DATABASE",   "STATE",        "ROLE",
                                          "COPY QUEUE", "REPLAY QUEUE", "INSPECTED",
                                          "REPLAYED",   "NETWORK",      "RATE"};
    struct ctl_table *t = ctl_table_new(9, headers);
    size_t i;
    json_t *c;
    json_array_foreach(copies, i, c)
    {
        char cq[48], rq[48], ins[32], rep[32], rate[32];
        snprintf(cq, sizeof(cq), "%" PRIu64 " (%" PRIu64 " B)", u64(c, "copy_queue_generations"),
                 u64(c, "copy_queue_bytes"));
        snprintf(rq, sizeof(rq), "%" PRIu64 " (%" PRIu64 " rec)",
                 u64(c, "replay_queue_generations"), u64(c, "replay_queue_records"));
        snprintf(ins, sizeof(ins), "%" PRIu64, u64(c, "inspected_generation"));
        snprintf(rep, sizeof(rep), "%" PRIu64, u64(c, "replayed_generation"));
        snprintf(rate, sizeof(rate), "%" PRIu64 " B/s", u64(c, "bytes_per_second"));
        const char *cells[9] = {str(c, "database"),
                                str(c, "state"),
                                str(c, "role"),
                                cq,
                                rq,
                                ins,
                                rep,
                                str(c, "network")[0] ? str(c, "network") : "-",
                                rate};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
    /* What does not fit a row: messages and times, per copy. */
    json_array_foreach(copies, i, c)
    {
        char tc[32], ti[32], tr[32];
        when(tc, u64(c, "last_copied_us"));
        when(ti, u64(c, "last_inspected_us"));
        when(tr, u64(c, "last_replayed_us"));
        /* The mode comes from the active's HELLO_REPLY; whether a sync database is degraded
         * right now is known on the active only (its GET /v1/status). */
        const char *mode = str(c, "mode");
        /* Compression asked for on this session, and what it saved: log bytes per wire byte. */
        char comp[96];
        uint64_t wire = u64(c, "wire_bytes"), logb = u64(c, "wire_log_bytes");
        if (!strcmp(str(c, "compression"), "zstd"))
            snprintf(comp, sizeof(comp),
                     "; compressed (zstd), %" PRIu64 " log bytes in %" PRIu64
                     " on the wire (ratio %.2f)",
                     logb, wire, wire ? (double)logb / (double)wire : 0.0);
        else
            snprintf(comp, sizeof(comp), "; not compressed");
        printf("\n%s: %s%s%s\n  replication mode %s%s%s\n  copied up to generation %" PRIu64
               " offset %" PRIu64 " (LSN %" PRIu64 ") at %s; active at generation %" PRIu64
               " (LSN %" PRIu64 ")\n  last inspected %s, last replayed %s (LSN %" PRIu64 ")%s%s\n",
               str(c, "database"), str(c, "state"), str(c, "message")[0] ? ": " : "",
               str(c, "message"), mode[0] ? mode : "not known yet (not connected since the start)",
               !strcmp(mode, "sync") ? " (whether the active is degraded to block now: its "
                                       "tandemctl status)"
                                     : "",
               comp, u64(c, "copied_generation"), u64(c, "copied_offset"), u64(c, "copied_lsn"), tc,
               u64(c, "source_generation"), u64(c, "source_lsn"), ti, tr, u64(c, "replayed_lsn"),
               str(c, "endpoint")[0] ? "; endpoint " : "", str(c, "endpoint"));
    }
}

static int
copy_status(const struct ctl_verb *verb, int argc, char **argv)
{
    const char *pos[1];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, 0, 1, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    json_t *doc = NULL;
    r = ctl_api_call(&o, &t, "GET", "/v1/copies", NULL, &doc);
    /* One status reply lists at most the first 64 copies by name (docs/replication.md,
     * "Status"): say so rather than show a partial list as the whole. */
    size_t listed = json_array_size(json_object_get(doc, "copies"));
    uint64_t total = u64(doc, "total");
    bool partial = r == 0 && total > listed;
    if (partial)
        fprintf(stderr,
                "tandemctl: %s holds %" PRIu64 " copies; a status lists the first %zu by name "
                "(the limit of one status reply)\n",
                str(doc, "server"), total, listed);
    if (r == 0 && n == 1) {
        /* One database: keep only its entry; none is "no such copy". */
        json_t *copies = json_object_get(doc, "copies"), *keep = json_array();
        size_t i;
        json_t *c;
        json_array_foreach(copies, i, c) if (!strcmp(str(c, "database"), pos[0]))
            json_array_append(keep, c);
        json_object_set_new(doc, "copies", keep);
        if (json_array_size(keep) == 0 && partial) {
            ctl_error("%s: not among the %zu copies listed of the %" PRIu64 " %s holds", pos[0],
                      listed, total, str(doc, "server"));
            r = CTL_EXIT_ERROR;
        } else if (json_array_size(keep) == 0) {
            ctl_error("%s holds no copy of %s", str(doc, "server"), pos[0]);
            r = CTL_EXIT_NOT_FOUND;
        }
    }
    if (r == 0) {
        if (o.json)
            ctl_print_json(doc);
        else
            print_copies(doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

/* ------------------------------------------------------------------ */
/* suspend, resume                                                    */

/* /v1/copies/<database>/<action> (action "": /v1/copies/<database>), the name percent-encoded. */
static bool
control_path(char *buf, size_t size, const char *db, const char *action)
{
    char suffix[64];
    snprintf(suffix, sizeof(suffix), "%s%s", action[0] ? "/" : "", action);
    return ctl_path_make(buf, size, "/v1/copies/", db, suffix);
}

static int
copy_control(const struct ctl_verb *verb, int argc, char **argv, bool suspend)
{
    struct ctl_api_opts o;
    const char *db, *comment = NULL;
    /* resume takes no --comment: it is an unknown option there. */
    const struct ctl_opt opts[] = {
        {"--comment", NULL, &comment, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, suspend ? opts : NULL, "database", &o, &db);
    if (r >= 0)
        return r;
    char path[1024];
    if (!control_path(path, sizeof(path), db, suspend ? "suspend" : "resume"))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *body = suspend ? json_pack("{s:s}", "comment", comment ? comment : "") : NULL;
    json_t *doc;
    r = ctl_api_request(verb, &o, "POST", path, body, &doc);
    if (r == 0 && !o.json)
        printf("copy of %s: %s requested\n", db, suspend ? "suspend" : "resume");
    json_decref(body);
    json_decref(doc);
    return r;
}

static int
copy_suspend(const struct ctl_verb *verb, int argc, char **argv)
{
    return copy_control(verb, argc, argv, true);
}

static int
copy_resume(const struct ctl_verb *verb, int argc, char **argv)
{
    return copy_control(verb, argc, argv, false);
}

/* ------------------------------------------------------------------ */
/* remove                                                             */

static int
copy_remove(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *db;
    int r = ctl_api_one(verb, argc, argv, NULL, "database", &o, &db);
    if (r >= 0)
        return r;
    char path[1024];
    if (!control_path(path, sizeof(path), db, ""))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *doc;
    r = ctl_api_request(verb, &o, "DELETE", path, NULL, &doc);
    if (r == 0 && !o.json)
        printf("copy of %s removed\n", db);
    json_decref(doc);
    return r;
}

/* ------------------------------------------------------------------ */
/* activate                                                           */

static int
copy_activate(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *db;
    bool force = false;
    const struct ctl_opt opts[] = {
        {"--force", &force, NULL, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, opts, "database", &o, &db);
    if (r >= 0)
        return r;
    char path[1024];
    if (!control_path(path, sizeof(path), db, force ? "activate?force=true" : "activate"))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *doc;
    r = ctl_api_request(verb, &o, "POST", path, NULL, &doc);
    if (r == 0 && !o.json) {
        json_t *lost = json_object_get(doc, "lost");
        printf("%s activated%s: lost %" JSON_INTEGER_FORMAT " generations (%" JSON_INTEGER_FORMAT
               " bytes, %" JSON_INTEGER_FORMAT " records) against the source's last report\n",
               db, force ? " with --force" : "",
               json_integer_value(json_object_get(lost, "generations")),
               json_integer_value(json_object_get(lost, "bytes")),
               json_integer_value(json_object_get(lost, "records")));
    }
    json_decref(doc);
    return r;
}

/* ------------------------------------------------------------------ */
/* reseed                                                             */

static int
copy_reseed(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *db;
    bool delete_existing = false;
    const struct ctl_opt opts[] = {
        {"--delete-existing", &delete_existing, NULL, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, opts, "database", &o, &db);
    if (r >= 0)
        return r;
    char path[1024];
    if (!control_path(path, sizeof(path), db,
                      delete_existing ? "reseed?delete_existing=true" : "reseed"))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *doc;
    r = ctl_api_request(verb, &o, "POST", path, NULL, &doc);
    if (r == 0 && !o.json)
        printf("copy of %s: reseed requested (tandemctl copy status shows its progress)\n", db);
    json_decref(doc);
    return r;
}

const struct ctl_verb ctl_copy_verbs[] = {
    {"add", "<database> -c <tandemd config> [--server-name NAME] [--kind KIND]",
     "make this server's copy of <database> from the directory's copy, database and cms objects",
     "Offline, like create: writes <datadir>/db/<database>/copy.conf of the server whose\n"
     "config -c names, built from the directory: the copy object whose database is\n"
     "<database> and whose server is that server (--server-name: another name) gives role,\n"
     "replay_lag_minutes (standby: default 24h) and truncation_lag_minutes; the database\n"
     "object gives its cms; the cms object gives the source: [source <network>] at\n"
     "<address>:<replication_port> (default 7433). The directory is asked at --socket or\n"
     "--server when given (a directory server), else at -c's own admin socket. A missing\n"
     "object or attribute is named (exit 7). The server starts the copy at its next start.\n",
     copy_add},
    {"create",
     "<dir> --role passive|standby --source NETWORK=ADDRESS:PORT [--source ...] "
     "[--compress NETWORK]... [--replay-lag DURATION] [--truncation-lag DURATION] [--kind KIND]",
     "make <dir> (under a server's <datadir>/db/) a copy of the database of that name",
     "Offline: writes <dir>/copy.conf (docs/replication.md, \"Copies\"). At its next start the\n"
     "server whose datadir holds <dir> runs the copy's agent, which connects to the active's\n"
     "[listen replication] on the first --source network that answers, in the order given,\n"
     "and seeds the copy from generation 1. --compress NETWORK: ask the active for zstd on\n"
     "that network (a WAN link; default none). --replay-lag (standby only, 0s..7d, default 24h).\n"
     "--truncation-lag: keep generations this long after their replay (0s..7d, default 0s).\n"
     "--kind: the database's kind (default mail). <dir> must be new, empty, or a copy already\n"
     "(its copy.conf is rewritten).\n",
     copy_create},
    {"status", "[<database>] [--json]",
     "state, queues, positions and network of the server's copies",
     "States: Initializing, Resynchronizing, Healthy, Seeding, Disconnected, ServiceDown,\n"
     "Failed (with its message), Suspended (with its comment). COPY QUEUE: generations (and\n"
     "bytes) the active has durable that the copy has not; REPLAY QUEUE: generations (and\n"
     "records) received but not replayed yet.\n",
     copy_status},
    {"suspend", "<database> [--comment TEXT]",
     "stop copying and replaying (idempotent; a new comment replaces the old)", NULL, copy_suspend},
    {"resume", "<database>", "start a Suspended or Failed copy again (idempotent)", NULL,
     copy_resume},
    {"reseed", "<database> [--delete-existing]",
     "rebuild the copy from a snapshot of the active's database, then its log",
     "The active keeps serving meanwhile. Refused (exit 8) while the copy has files, unless\n"
     "--delete-existing: they are deleted first (Exchange's Update-StorageGroupCopy\n"
     "-DeleteExistingFiles). Works from any state, Failed and Suspended included (a\n"
     "suspension ends). The copy is Seeding, with the snapshot's bytes received in its\n"
     "message, until it first catches up (docs/replication.md, \"Reseed\").\n",
     copy_reseed},
    {"remove", "<database>", "stop the copy held by this server and delete its files",
     "Only a copy (its directory holds copy.conf), never an active. The server's copy of the\n"
     "database is gone; the directory's copy object, if any, is the operator's to delete.\n",
     copy_remove},
    {"activate", "<database> [--force]",
     "make the copy held by this server the database's active, and mount it",
     "Refused while the copy's source still serves the database as active (exit 1, naming it).\n"
     "Without --force, also refused unless the source's server answers but no longer serves\n"
     "the database and the copy holds everything the source last reported durable. With\n"
     "--force, mounts what is here and reports how many generations, bytes and records the\n"
     "source's last report had beyond it. Replays everything first (a standby's replay lag\n"
     "is ignored), then mounts in a new epoch (docs/replication.md, \"Activation\").\n"
     "On a cluster node, a database of its CMS goes to the cluster agent: refused without\n"
     "--force; with it, the agent takes the whole CMS beyond the mount dial if every other\n"
     "rule holds, and this returns once it is mounted (docs/cluster.md, \"Failover\").\n",
     copy_activate},
    {NULL, NULL, NULL, NULL, NULL},
};

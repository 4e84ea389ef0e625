/*
 * tandemctl db create|inspect|verify|recover: offline tools over one database directory;
 * db dismount|mount: a running server's active database, through its admin API.
 * The work is in src/store/store_inspect.c; this file parses arguments and prints reports,
 * for people ("Key: value" lines, like eseutil /mh) or for scripts (--json, jansson; the
 * field names are a contract documented in docs/tandemctl.md).
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_parse.h"

#include "directory/directory.h"
#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"
#include "store/store_inspect.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Arguments                                                          */

struct db_args {
    const char *dir;
    bool json;
    bool help;
    bool have_gen_size;
    uint64_t gen_size;
    const char *kind; /* create: --kind, NULL when not given */
};

/* Returns 0, or CTL_EXIT_USAGE after printing why. */
static int
db_args_parse(const struct ctl_verb *verb, int argc, char **argv, bool takes_gen_size,
              struct db_args *a)
{
    memset(a, 0, sizeof(*a));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            a->help = true;
        } else if (strcmp(arg, "--json") == 0 && !takes_gen_size) {
            a->json = true;
        } else if (takes_gen_size && strncmp(arg, "--generation-size", 17) == 0 &&
                   (arg[17] == '\0' || arg[17] == '=')) {
            const char *val = arg[17] == '=' ? arg + 18 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val)
                return ctl_usage_error(verb, "--generation-size needs a value in bytes");
            if (!ctl_parse_size(val, &a->gen_size) || a->gen_size > UINT32_MAX)
                return ctl_usage_error(verb,
                                       "--generation-size \"%s\" is not a size in bytes "
                                       "(e.g. 1048576 or 1M)",
                                       val);
            a->have_gen_size = true;
        } else if (takes_gen_size && strncmp(arg, "--kind", 6) == 0 &&
                   (arg[6] == '\0' || arg[6] == '=')) {
            const char *val = arg[6] == '=' ? arg + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val)
                return ctl_usage_error(verb, "--kind needs a value: mail or directory");
            if (strcmp(val, STORE_KIND_MAIL) != 0 && strcmp(val, DIR_DB_KIND) != 0)
                return ctl_usage_error(verb,
                                       "--kind \"%s\" is not a database kind: mail or "
                                       "directory",
                                       val);
            a->kind = val;
        } else if (arg[0] == '-' && arg[1] != '\0') {
            return ctl_usage_error(verb, "unknown option \"%s\"", arg);
        } else if (a->dir) {
            return ctl_usage_error(verb, "one database directory only (got \"%s\" and \"%s\")",
                                   a->dir, arg);
        } else {
            a->dir = arg;
        }
    }
    if (!a->help && !a->dir)
        return ctl_usage_error(verb, "no database directory given");
    return 0;
}

/*
 * Every db verb starts the same way: parse, answer --help, or stop on a usage error.
 * Returns true when the verb should go on; otherwise *exit_r is the exit code.
 */
static bool
db_args_begin(const struct ctl_verb *verb, int argc, char **argv, bool takes_gen_size,
              struct db_args *a, int *exit_r)
{
    *exit_r = db_args_parse(verb, argc, argv, takes_gen_size, a);
    if (*exit_r != 0)
        return false;
    if (a->help) {
        ctl_verb_help(verb);
        *exit_r = CTL_EXIT_OK;
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Printing                                                           */

#define KEY_WIDTH 22

static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One aligned "Key: value" line. */
static void
kv(const char *key, const char *fmt, ...)
{
    char k[64];
    snprintf(k, sizeof(k), "%s:", key);
    printf("%*s ", KEY_WIDTH, k);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void
format_time_us(char out[32], uint64_t us)
{
    if (us == 0) {
        snprintf(out, 32, "-");
        return;
    }
    time_t t = (time_t)(us / 1000000u);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "?");
}

static void
hex(char *out, const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Prints the JSON document on stdout; a failure to build one is our bug or out of memory. */
static int
json_print(json_t *doc)
{
    if (!doc) {
        ctl_error("out of memory building the JSON report");
        return CTL_EXIT_ERROR;
    }
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!s) {
        ctl_error("out of memory building the JSON report");
        return CTL_EXIT_ERROR;
    }
    puts(s);
    free(s);
    return CTL_EXIT_OK;
}

/* A failure before any report: the message says what was wrong; --json also gets a document
 * so that scripts always have something to parse. */
static int
report_error(bool json, const char *dir, int err, const char *why)
{
    int code = ctl_exit_for(err);
    ctl_error("%s", why ? why : tdm_strerror(err));
    if (json) {
        json_t *doc = json_pack("{s:s, s:b, s:s, s:i}", "database", dir, "ok", 0, "error",
                                why ? why : tdm_strerror(err), "exit_code", code);
        json_print(doc);
    }
    return code;
}

/* ------------------------------------------------------------------ */
/* Kinds                                                              */

/* The handler dir's database needs, from the kind it recorded at create. Returns 0, or the
 * error store_read_kind() gave, or TDM_ENOTFOUND for a kind this tandemctl does not know,
 * with *why_r. */
static int
db_handler(const char *dir, const struct store_record_handler **handler_r, const char **why_r)
{
    static _Thread_local char msg[512];
    char kind[STORE_KIND_MAX + 1];
    int ret = store_read_kind(dir, kind, why_r);
    if (ret < 0)
        return ret;
    if (dir_db_kind_handler(kind, handler_r) < 0) {
        snprintf(msg, sizeof(msg),
                 "%s is a '%s' database, a kind this tandemctl does not know (it knows mail and "
                 "directory): use the tandemctl that created it",
                 dir, kind);
        *why_r = msg;
        return TDM_ENOTFOUND;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* db create                                                          */

static int
dir_has_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    int found = 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            found = 1;
    closedir(d);
    return found;
}

static int
db_create(const struct ctl_verb *verb, int argc, char **argv)
{
    struct db_args a;
    int rc;
    if (!db_args_begin(verb, argc, argv, true, &a, &rc))
        return rc;
    /* store_create() only refuses a directory that already holds log/ or store/; a database
     * must not be scattered among other files (think `db create /tmp`), so refuse those too. */
    int has = dir_has_entries(a.dir);
    if (has < 0) {
        ctl_error("%s: %s", a.dir, strerror(-has));
        return ctl_exit_for(has);
    }
    if (has > 0) {
        ctl_error("%s is not empty: a new database needs an empty or missing directory", a.dir);
        return CTL_EXIT_ERROR;
    }
    struct store_options o;
    store_options_init(&o);
    if (a.have_gen_size)
        o.generation_size = (uint32_t)a.gen_size;
    const char *kind = a.kind ? a.kind : STORE_KIND_MAIL;
    const char *why = NULL;
    int ret;
    if (strcmp(kind, DIR_DB_KIND) == 0) {
        ret = dir_db_create(a.dir, &o, &why); /* store_create() checks o before creating */
    } else {
        o.kind = kind;
        ret = store_create(a.dir, &o, &why);
    }
    if (ret == TDM_EINVAL)
        return ctl_usage_error(verb, "%s", why);
    if (ret < 0) {
        ctl_error("%s", why ? why : tdm_strerror(ret));
        return ret == TDM_EEXIST ? CTL_EXIT_ERROR : ctl_exit_for(ret);
    }
    printf("created %s database %s (generation size %u bytes)\n", kind, a.dir, o.generation_size);
    return CTL_EXIT_OK;
}

/* ------------------------------------------------------------------ */
/* db inspect                                                         */

static void
gen_name(char out[32], uint64_t g)
{
    snprintf(out, 32, "%016" PRIx64 ".log", g);
}

static void
inspect_human(const char *dir, const struct store_inspection *r)
{
    char a[32], b[32];
    kv("Database", "%s", dir);
    kv("Kind", "%s", r->kind);
    kv("GUID", "%s", r->guid_hex);
    kv("Epoch", "%" PRIu64, r->epoch);
    kv("State", "%s", r->clean ? "Clean Shutdown" : "Dirty Shutdown");
    kv("Mounted", "%s",
       r->mounted ? "Yes (another process holds the lock; figures may be moving)" : "No");
    kv("Applied LSN", "%" PRIu64, r->applied_lsn);
    kv("Checkpoint LSN", "%" PRIu64, r->checkpoint_lsn);
    if (r->required_low) {
        gen_name(a, r->required_low);
        gen_name(b, r->required_high);
        kv("Log Required", "%" PRIu64 "-%" PRIu64 " (%s - %s)", r->required_low, r->required_high,
           a, b);
    } else {
        kv("Log Required", "0-0 (none: clean shutdown)");
    }
    if (r->gen_count) {
        gen_name(a, r->gen_low);
        gen_name(b, r->gen_high);
        kv("Generations", "%" PRIu64 "-%" PRIu64 " (%" PRIu64 " files, %" PRIu64 " bytes)",
           r->gen_low, r->gen_high, r->gen_count, r->gen_bytes);
    } else {
        kv("Generations", "none");
    }
    if (r->current_gen)
        kv("Current Generation", "%" PRIu64 " (%s)", r->current_gen,
           r->current_closed ? "closed" : "open");
    else
        kv("Current Generation", "none");
    if (r->next_blank_gen)
        kv("Next Generation", "%" PRIu64 " (preallocated, not started)", r->next_blank_gen);
    else
        kv("Next Generation", "none");
    kv("LMDB Size", "%" PRIu64 " bytes", r->lmdb_bytes);
    kv("Log Size", "%" PRIu64 " bytes", r->log_bytes);
    kv("Mailboxes", "%" PRIu64, r->mailboxes);
    kv("Folders", "%" PRIu64, r->folders);
    kv("Messages", "%" PRIu64, r->messages);
    kv("Bodies", "%" PRIu64, r->bodies);
    if (r->lmdb_nolock)
        kv("Note", "store/lock.mdb is not writable: LMDB was read without its lock");

    printf("\n%-20s %10s %10s %8s %10s %-7s %6s  %s\n", "Generation", "First LSN", "Last LSN",
           "Records", "Size", "State", "Epoch", "Created");
    for (size_t i = 0; i < r->n_gens; i++) {
        const struct store_gen_info *g = &r->gens[i];
        char t[32];
        gen_name(a, g->generation);
        if (g->blank) {
            printf("%-20s %10s %10s %8s %10" PRIu64 " %-7s %6s  %s\n", a, "-", "-", "-", g->size,
                   "blank", "-", "-");
            continue;
        }
        format_time_us(t, g->created_us);
        printf("%-20s %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %10" PRIu64 " %-7s %6" PRIu64
               "  %s\n",
               a, g->first_lsn, g->last_lsn, g->records, g->size, g->closed ? "closed" : "open",
               g->epoch, t);
        if (g->problem[0])
            printf("%20s stops at offset %" PRIu64 ": %s (`tandemctl db verify` judges it)\n", "",
                   g->problem_offset, g->problem);
    }
}

static json_t *
inspect_json(const char *dir, const struct store_inspection *r)
{
    json_t *gens = json_array();
    for (size_t i = 0; gens && i < r->n_gens; i++) {
        const struct store_gen_info *g = &r->gens[i];
        char t[32], name[32];
        format_time_us(t, g->created_us);
        gen_name(name, g->generation);
        json_t *o = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:s, s:b, s:b}",
                              "generation", (json_int_t)g->generation, "file", name, "first_lsn",
                              (json_int_t)g->first_lsn, "last_lsn", (json_int_t)g->last_lsn,
                              "records", (json_int_t)g->records, "size", (json_int_t)g->size,
                              "epoch", (json_int_t)g->epoch, "created", g->blank ? "" : t,
                              "created_us", (json_int_t)g->created_us, "state",
                              g->blank ? "blank" : (g->closed ? "closed" : "open"), "closed",
                              g->closed, "blank", g->blank);
        if (!o) {
            json_decref(gens);
            return NULL;
        }
        if (g->problem[0])
            json_object_set_new(o, "problem",
                                json_pack("{s:I, s:s}", "offset", (json_int_t)g->problem_offset,
                                          "reason", g->problem));
        else
            json_object_set_new(o, "problem", json_null());
        json_array_append_new(gens, o);
    }
    if (!gens)
        return NULL;
    json_t *required = r->required_low ? json_pack("{s:I, s:I}", "low", (json_int_t)r->required_low,
                                                   "high", (json_int_t)r->required_high)
                                       : json_null();
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:b, s:b, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:b, "
        "s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:b, s:o}",
        "database", dir, "kind", r->kind, "guid", r->guid_hex, "epoch", (json_int_t)r->epoch,
        "state", r->clean ? "clean" : "dirty", "clean", r->clean, "mounted", r->mounted,
        "applied_lsn", (json_int_t)r->applied_lsn, "checkpoint_lsn", (json_int_t)r->checkpoint_lsn,
        "log_required", required, "lowest_generation", (json_int_t)r->gen_low, "highest_generation",
        (json_int_t)r->gen_high, "generation_count", (json_int_t)r->gen_count, "generation_bytes",
        (json_int_t)r->gen_bytes, "current_generation", (json_int_t)r->current_gen,
        "current_closed", r->current_closed, "next_generation", (json_int_t)r->next_blank_gen,
        "lmdb_bytes", (json_int_t)r->lmdb_bytes, "log_bytes", (json_int_t)r->log_bytes, "tables",
        "mailboxes", (json_int_t)r->mailboxes, "folders", (json_int_t)r->folders, "messages",
        (json_int_t)r->messages, "bodies", (json_int_t)r->bodies, "lmdb_nolock", r->lmdb_nolock,
        "generations", gens);
}

static int
db_inspect(const struct ctl_verb *verb, int argc, char **argv)
{
    struct db_args a;
    int rc;
    if (!db_args_begin(verb, argc, argv, false, &a, &rc))
        return rc;
    struct store_inspection r;
    const char *why = NULL;
    int ret = store_inspect(a.dir, &r, &why);
    if (ret < 0)
        return report_error(a.json, a.dir, ret, why);
    if (a.json)
        rc = json_print(inspect_json(a.dir, &r));
    else
        inspect_human(a.dir, &r);
    store_inspection_clear(&r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* db verify                                                          */

static const char *
severity_name(enum store_problem_severity s)
{
    return s == STORE_PROBLEM_ERROR ? "error" : "warning";
}

static void
verify_human(const char *dir, const struct store_verify_report *r)
{
    char d[65];
    kv("Database", "%s", dir);
    kv("Mounted", "%s", r->mounted ? "Yes (verified a live database)" : "No");
    kv("Applied LSN", "%" PRIu64, r->applied_lsn);
    if (r->last_lsn >= r->first_lsn && r->first_lsn > 0)
        kv("Log LSNs", "%" PRIu64 "-%" PRIu64, r->first_lsn, r->last_lsn);
    else
        kv("Log LSNs", "none (the log holds no records)");
    kv("Generations Checked", "%" PRIu64, r->generations);
    kv("Records Checked", "%" PRIu64, r->records);
    kv("Records Decoded", "%" PRIu64, r->decoded);
    if (r->replay_compared)
        kv("Replay", "LSN 1-%" PRIu64 " replayed (%" PRIu64 " records): %s", r->applied_lsn,
           r->replayed, r->digests_match ? "matches the database" : "DIFFERS from the database");
    else
        kv("Replay", "not compared: %s", r->replay_note);
    hex(d, r->db_digest, 32);
    kv("Database Digest", "%s", d);
    if (r->replay_compared) {
        hex(d, r->replay_digest, 32);
        kv("Replay Digest", "%s", d);
    }
    kv("Problems", "%zu error%s, %zu warning%s", r->errors, r->errors == 1 ? "" : "s", r->warnings,
       r->warnings == 1 ? "" : "s");
    for (size_t i = 0; i < r->n_problems; i++) {
        const struct store_problem *p = &r->problems[i];
        printf("  %s: ", severity_name(p->severity));
        if (p->file)
            printf("%s: ", p->file);
        if (p->has_offset)
            printf("offset %" PRIu64 ": ", p->offset);
        printf("%s\n", p->reason);
    }
    kv("Result", "%s",
       r->errors ? "CORRUPT (the database would not mount or differs from its log; restore the "
                   "named files or reseed)"
                 : "OK");
}

static json_t *
verify_json(const char *dir, const struct store_verify_report *r)
{
    char d[65], rd[65];
    hex(d, r->db_digest, 32);
    hex(rd, r->replay_digest, 32);
    json_t *problems = json_array();
    for (size_t i = 0; problems && i < r->n_problems; i++) {
        const struct store_problem *p = &r->problems[i];
        json_t *o = json_pack("{s:s, s:o, s:o, s:s}", "severity", severity_name(p->severity),
                              "file", p->file ? json_string(p->file) : json_null(), "offset",
                              p->has_offset ? json_integer((json_int_t)p->offset) : json_null(),
                              "reason", p->reason);
        if (!o || json_array_append_new(problems, o) < 0) {
            json_decref(problems);
            return NULL;
        }
    }
    if (!problems)
        return NULL;
    json_t *replay =
        json_pack("{s:b, s:o, s:I, s:s, s:o, s:o}", "compared", r->replay_compared, "reason",
                  r->replay_compared ? json_null() : json_string(r->replay_note), "records",
                  (json_int_t)r->replayed, "database_digest", d, "replay_digest",
                  r->replay_compared ? json_string(rd) : json_null(), "match",
                  r->replay_compared ? json_boolean(r->digests_match) : json_null());
    return json_pack("{s:s, s:b, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
                     "database", dir, "ok", r->errors == 0, "mounted", r->mounted, "errors",
                     (json_int_t)r->errors, "warnings", (json_int_t)r->warnings, "applied_lsn",
                     (json_int_t)r->applied_lsn, "first_lsn", (json_int_t)r->first_lsn, "last_lsn",
                     (json_int_t)r->last_lsn, "generations_checked", (json_int_t)r->generations,
                     "records_checked", (json_int_t)r->records, "records_decoded",
                     (json_int_t)r->decoded, "replay", replay, "problems", problems);
}

static int
db_verify(const struct ctl_verb *verb, int argc, char **argv)
{
    struct db_args a;
    int rc;
    if (!db_args_begin(verb, argc, argv, false, &a, &rc))
        return rc;
    struct store_verify_options vo = {0};
    const char *why = NULL;
    int ret = db_handler(a.dir, &vo.handler, &why);
    if (ret < 0)
        return report_error(a.json, a.dir, ret, why);
    struct store_verify_report r;
    ret = store_verify(a.dir, &vo, &r, &why);
    if (ret < 0)
        return report_error(a.json, a.dir, ret, why);
    if (a.json)
        rc = json_print(verify_json(a.dir, &r));
    else
        verify_human(a.dir, &r);
    if (rc == CTL_EXIT_OK && r.errors > 0)
        rc = CTL_EXIT_FAILED;
    store_verify_report_clear(&r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* db recover                                                         */

static const char *
severity_word(enum tdm_event id)
{
    static const char *const names[] = {"info", "warning", "error"};
    return names[event_severity(id)];
}

static int
db_recover(const struct ctl_verb *verb, int argc, char **argv)
{
    struct db_args a;
    int rc;
    if (!db_args_begin(verb, argc, argv, false, &a, &rc))
        return rc;
    const struct store_record_handler *handler = NULL;
    const char *why = NULL;
    int ret = db_handler(a.dir, &handler, &why);
    /* A missing or foreign directory is reported below, by the recovery's own report. */
    if (ret == TDM_ENOTFOUND)
        return report_error(a.json, a.dir, ret, why);
    struct store_recovery r;
    ret = store_recover_handler(a.dir, handler, &r, &why);
    /* A foreign generation found by recovery (not a foreign directory) is a refusal to mount. */
    int code = ret == TDM_EFOREIGN && r.inspected ? CTL_EXIT_FAILED : ctl_exit_for(ret);
    const char *result = ret == 0                  ? "recovered"
                         : code == CTL_EXIT_FAILED ? "refused"
                         : code == CTL_EXIT_BUSY   ? "in_use"
                         : code == CTL_EXIT_NOT_DB ? "not_a_database"
                                                   : "error";
    if (a.json) {
        json_t *events = json_array();
        for (size_t i = 0; events && i < r.n_events; i++)
            json_array_append_new(
                events, json_pack("{s:i, s:s, s:s, s:s}", "id", (int)r.events[i].id, "name",
                                  event_name(r.events[i].id), "severity",
                                  severity_word(r.events[i].id), "message", r.events[i].message));
        json_t *doc = json_pack(
            "{s:s, s:b, s:s, s:o, s:i, s:o, s:o, s:o, s:o, s:b, s:o}", "database", a.dir, "ok",
            ret == 0, "result", result, "error",
            ret == 0 ? json_null() : json_string(why ? why : tdm_strerror(ret)), "exit_code", code,
            "was_clean", r.inspected ? json_boolean(r.was_clean) : json_null(),
            "applied_lsn_before",
            r.inspected ? json_integer((json_int_t)r.applied_before) : json_null(),
            "applied_lsn_after", ret == 0 ? json_integer((json_int_t)r.applied_after) : json_null(),
            "records_replayed", ret == 0 ? json_integer((json_int_t)r.replayed) : json_null(),
            "torn_tail_cut", r.torn_tail_cut, "events", events ? events : json_array());
        if (ret < 0)
            ctl_error("%s", why ? why : tdm_strerror(ret));
        rc = json_print(doc);
    } else {
        for (size_t i = 0; i < r.n_events; i++)
            fprintf(stderr, "event: %s (%s): %s\n", event_name(r.events[i].id),
                    severity_word(r.events[i].id), r.events[i].message);
        if (r.inspected) {
            kv("Database", "%s", a.dir);
            kv("State Before", "%s", r.was_clean ? "Clean Shutdown" : "Dirty Shutdown");
            kv("Applied LSN Before", "%" PRIu64, r.applied_before);
        }
        if (ret == 0) {
            kv("Records Replayed", "%" PRIu64, r.replayed);
            kv("Torn Tail Cut", "%s", r.torn_tail_cut ? "Yes" : "No");
            kv("Applied LSN After", "%" PRIu64, r.applied_after);
            kv("State After", "Clean Shutdown");
            kv("Result", "Recovered");
        } else {
            if (r.inspected)
                kv("Result", "%s: %s", code == CTL_EXIT_FAILED ? "Refused to mount" : "Failed",
                   why ? why : tdm_strerror(ret));
            ctl_error("%s", why ? why : tdm_strerror(ret));
        }
    }
    store_recovery_clear(&r);
    return rc != CTL_EXIT_OK ? rc : code;
}

/* ------------------------------------------------------------------ */
/* dismount, mount: POST /v1/databases/<database>/dismount | mount    */

static int
db_mount_control(const struct ctl_verb *verb, int argc, char **argv, bool dismount)
{
    struct ctl_api_opts o;
    const char *db;
    int r = ctl_api_one(verb, argc, argv, NULL, "database", &o, &db);
    if (r >= 0)
        return r;
    /* The name percent-encoded into /v1/databases/<database>/<action>. */
    char path[1024];
    if (!ctl_path_make(path, sizeof(path), "/v1/databases/", db,
                       dismount ? "/dismount" : "/mount"))
        return ctl_usage_error(verb, "the database name is too long");
    json_t *doc;
    r = ctl_api_request(verb, &o, "POST", path, NULL, &doc);
    if (r == 0 && !o.json)
        printf("%s %s\n", db, dismount ? "dismounted" : "mounted");
    json_decref(doc);
    return r;
}

static int
db_dismount(const struct ctl_verb *verb, int argc, char **argv)
{
    return db_mount_control(verb, argc, argv, true);
}

static int
db_mount(const struct ctl_verb *verb, int argc, char **argv)
{
    return db_mount_control(verb, argc, argv, false);
}

/* ------------------------------------------------------------------ */

const struct ctl_verb ctl_db_verbs[] = {
    {"create", "<dir> [--generation-size BYTES] [--kind mail|directory]",
     "create a new, empty database in <dir> (created if missing; must be empty)",
     "Options:\n"
     "  --generation-size BYTES  size of each log generation file: a multiple of 4096 between\n"
     "                           65536 and 1073741824; K, M, G suffixes allowed (default 1M)\n"
     "  --kind KIND              what the database holds, recorded in it so every tool and\n"
     "                           tandemd opens it with the right record handler: mail\n"
     "                           (default) or directory (created with the built-in groups\n"
     "                           `servers` and `admins`)\n",
     db_create},
    {"inspect", "<dir> [--json]",
     "read-only summary: GUID, clean/dirty state, LSNs, the log generations recovery needs, "
     "sizes, table counts, and every generation",
     "Never modifies the database; may run while it is mounted (\"Mounted: Yes\").\n"
     "Options:\n"
     "  --json  one JSON object on stdout (fields: docs/tandemctl.md)\n",
     db_inspect},
    {"verify", "<dir> [--json]",
     "read-only full check: every header, frame and checksum, every record decoded, and a "
     "replay of the whole log compared with the database",
     "Never modifies the database. Problems name the file and offset. An invalid frame at the\n"
     "end of the current generation past what LMDB applied is a warning (a torn tail that\n"
     "recovery would cut); anything else is an error (exit 1). When the log was truncated, the\n"
     "replay comparison is impossible and is reported as not compared.\n"
     "Options:\n"
     "  --json  one JSON object on stdout (fields: docs/tandemctl.md)\n",
     db_verify},
    {"recover", "<dir> [--json]",
     "offline soft recovery: mount (replaying the log, cutting a torn tail) and dismount "
     "cleanly",
     "Needs the database not to be mounted elsewhere (exit 4 if it is). Refuses, with exit 1,\n"
     "when the log is corrupt or a generation is missing: the events name the file and offset.\n"
     "Events go to stderr as \"event: ...\" lines (or under \"events\" with --json).\n"
     "Options:\n"
     "  --json  one JSON object on stdout (fields: docs/tandemctl.md)\n",
     db_recover},
    {"dismount", "<database>",
     "on a running server: stop serving an active database (Dismount-Database)",
     "Commits are refused from the first instant (LMTP answers 451, IMAP NO), copies see the\n"
     "database as not active (ServiceDown), and the store is closed cleanly, so `db inspect`\n"
     "reads it as clean. A restart of the server mounts it again. Needs write on the server.\n",
     db_dismount},
    {"mount", "<database>", "on a running server: mount a dismounted database again", NULL,
     db_mount},
    {NULL, NULL, NULL, NULL, NULL},
};

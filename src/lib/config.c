/*
 * Schema-driven loader for the tandemd configuration (docs/config.md). config_parse.c cuts the
 * file into entries; this file checks them against the tables below (which sections exist, their
 * keys, types, ranges and defaults), fills struct tdm_config, then checks what spans sections
 * (a listener's network exists, addresses are not used twice, the directory is reachable).
 *
 * Defaults are written in file syntax and go through the same parsers as the file, so a default
 * can never be a value the file itself could not hold, and dump prints them the same way.
 */
#include "lib/config.h"

#include "lib/config_parse.h"
#include "lib/err.h"
#include "tandem/log_format.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * 1024ull * 1024ull)
#define SEC 1000ull
#define MIN (60ull * SEC)
#define HOUR (60ull * MIN)
#define DAY (24ull * HOUR)

#define MAX_KEYS 8      /* per section, for the seen-at-line bookkeeping */
#define MAX_SECTIONS 64 /* 1 top + 16 networks + 9 listeners + 7 singletons + 8 cms + ... */

enum key_type {
    KT_NAME,      /* char[TDM_CONFIG_NAME_MAX + 1]: one lower-case DNS label */
    KT_USER,      /* char[TDM_CONFIG_USER_MAX + 1]: a POSIX user name */
    KT_PATH,      /* char *: an absolute path, owned */
    KT_INT,       /* uint32_t in [min, max] */
    KT_SIZE,      /* uint64_t bytes: 4096, 64K, 1M, 1G */
    KT_DURATION,  /* uint64_t ms: 500ms, 30s, 10m, 2h, 7d */
    KT_ENUM,      /* int: index into names */
    KT_ROLES,     /* unsigned: bit per name, a comma-separated list */
    KT_ADDRESS,   /* struct tdm_config_addr */
    KT_ENDPOINTS, /* struct tdm_config_directory: a list of address:port */
    KT_ENDPOINT_LIST, /* struct tdm_config_endpoint_list: a list of address:port */
    KT_DOMAINS,   /* struct tdm_config_smtp: a list of domain names */
    KT_CMS_DBS,   /* struct tdm_config_cms: a list of database names */
    KT_CMS_ADDRESS, /* struct tdm_config_cms: address[/prefix length] */
    KT_IFNAME,    /* char[TDM_CONFIG_IFNAME_MAX + 1]: a network interface's name */
};

struct key_spec {
    const char *key;
    enum key_type type;
    bool required;
    const char *def;          /* default in file syntax; NULL = none (unset) */
    uint64_t min, max, align; /* INT, SIZE, DURATION; align 0 = any */
    const char *const *names; /* ENUM, ROLES: NULL-terminated */
    size_t offset;            /* into the section's struct */
};

struct loader;
struct opened;

struct section_spec {
    const char *type;
    bool named;
    unsigned max; /* instances */
    const struct key_spec *keys;
    size_t offset; /* of the struct the keys fill, for a singleton */
    /* Checks between the keys of one instance, at its end; NULL when none. */
    int (*finish)(struct loader *ld, const struct opened *o);
};

struct opened {
    const struct section_spec *spec;
    const char *name;
    void *base;
    unsigned line;
    unsigned key_line[MAX_KEYS]; /* 0 = key not given */
};

struct loader {
    const char *file;
    struct tdm_config *cfg;
    struct opened sec[MAX_SECTIONS];
    unsigned n_sec;
    char **error_r;
};

static const char *const role_names[] = {"mailbox", "access",    "transport",
                                         "witness", "directory", NULL};
static const char *const proto_names[] = {"imap", "imaps", "lmtp",        "smtp", "submission",
                                          "http", "https", "admin",       "replication", "cluster", "coord", NULL};
static const char *const mount_dial_names[] = {"lossless", "good", "best", NULL};
static const char *const cms_repl_names[] = {"directory", "block", "file", "sync", NULL};
/* In enum log_level order; "warning" because that is the word operators write. */
static const char *const level_names[] = {"debug", "info", "warning", "error", NULL};
_Static_assert(LOG_LEVEL_DEBUG == 0 && LOG_LEVEL_INFO == 1 && LOG_LEVEL_WARN == 2 &&
                   LOG_LEVEL_ERROR == 3,
               "level_names follows enum log_level");
_Static_assert(sizeof(enum log_level) == sizeof(int), "KT_ENUM stores an int");

#define K(name, t, req, d, lo, hi, al, nm, strct, field)                                           \
    {                                                                                              \
        .key = name, .type = t, .required = req, .def = d, .min = lo, .max = hi, .align = al,      \
        .names = nm, .offset = offsetof(strct, field)                                              \
    }

static const struct key_spec top_keys[] = {
    K("server", KT_NAME, true, NULL, 0, 0, 0, NULL, struct tdm_config, server),
    K("site", KT_NAME, true, NULL, 0, 0, 0, NULL, struct tdm_config, site),
    K("datadir", KT_PATH, true, NULL, 0, 0, 0, NULL, struct tdm_config, datadir),
    K("roles", KT_ROLES, true, NULL, 0, 0, 0, role_names, struct tdm_config, roles),
    K("user", KT_USER, false, NULL, 0, 0, 0, NULL, struct tdm_config, user),
    {0}};
static const struct key_spec network_keys[] = {
    K("address", KT_ADDRESS, true, NULL, 0, 0, 0, NULL, struct tdm_config_network, address), {0}};
static const struct key_spec listen_keys[] = {
    K("network", KT_NAME, false, NULL, 0, 0, 0, NULL, struct tdm_config_listener, network),
    K("address", KT_ADDRESS, false, NULL, 0, 0, 0, NULL, struct tdm_config_listener, address),
    K("port", KT_INT, true, NULL, 1, 65535, 0, NULL, struct tdm_config_listener, port),
    {0}};
static const struct key_spec directory_keys[] = {
    /* KT_ENDPOINTS fills the whole struct (list and count), hence offset 0. */
    {.key = "endpoints", .type = KT_ENDPOINTS, .required = true, .offset = 0},
    K("cache_ttl", KT_DURATION, false, "10m", SEC, 7 * DAY, 0, NULL, struct tdm_config_directory,
      cache_ttl_ms),
    K("key_file", KT_PATH, false, NULL, 0, 0, 0, NULL, struct tdm_config_directory, key_file),
    {0}};
/* Sizes within what the log format allows (include/tandem/log_format.h). */
static const struct key_spec store_keys[] = {
    K("generation_size", KT_SIZE, false, "1M", TDM_LOG_MIN_GENERATION_SIZE,
      TDM_LOG_MAX_GENERATION_SIZE, 4096, NULL, struct tdm_config_store, generation_size),
    K("idle_close", KT_DURATION, false, "90s", 0, DAY, 0, NULL, struct tdm_config_store,
      idle_close_ms),
    K("checkpoint_bytes", KT_SIZE, false, "8M", TDM_LOG_MIN_GENERATION_SIZE, 4 * GIB, 0, NULL,
      struct tdm_config_store, checkpoint_bytes),
    K("checkpoint_interval", KT_DURATION, false, "30s", SEC, HOUR, 0, NULL, struct tdm_config_store,
      checkpoint_interval_ms),
    K("disk_reserve", KT_SIZE, false, "4M", 0, GIB, 0, NULL, struct tdm_config_store, disk_reserve),
    {0}};
static const struct key_spec log_keys[] = {
    K("level", KT_ENUM, false, "info", 0, 0, 0, level_names, struct tdm_config_log, level),
    K("events", KT_PATH, false, NULL, 0, 0, 0, NULL, struct tdm_config_log, events),
    {0}};

static const struct key_spec tls_keys[] = {
    K("certificate", KT_PATH, false, NULL, 0, 0, 0, NULL, struct tdm_config_tls, certificate),
    K("key", KT_PATH, false, NULL, 0, 0, 0, NULL, struct tdm_config_tls, key),
    K("ca", KT_PATH, false, NULL, 0, 0, 0, NULL, struct tdm_config_tls, ca),
    {0}};

/* The SMTP limits stay below LMTP's 48 MiB message bound (src/lmtp/), which must also hold
 * the trace headers added on the way, and at or above RFC 5321's 100 recipients. */
static const struct key_spec smtp_keys[] = {
    /* KT_DOMAINS fills the array and the count, at offset 0. */
    {.key = "domains", .type = KT_DOMAINS, .required = false, .offset = 0},
    K("max_message_size", KT_SIZE, false, "25M", 64 * KIB, 40 * MIB, 0, NULL,
      struct tdm_config_smtp, max_message_size),
    K("max_recipients", KT_INT, false, "100", 100, 1000, 0, NULL, struct tdm_config_smtp,
      max_recipients),
    K("max_connections", KT_INT, false, "1000", 1, 100000, 0, NULL, struct tdm_config_smtp,
      max_connections),
    {0}};

/* One address may hold every connection by default: the access role's proxy and the
 * benchmarks connect from one address each. Servers that face clients directly lower it. */
static const struct key_spec imap_keys[] = {
    K("max_connections", KT_INT, false, "10000", 1, 1000000, 0, NULL, struct tdm_config_imap,
      max_connections),
    K("max_per_address", KT_INT, false, "10000", 1, 1000000, 0, NULL, struct tdm_config_imap,
      max_per_address),
    K("max_login_failures", KT_INT, false, "10", 1, 1000, 0, NULL, struct tdm_config_imap,
      max_login_failures),
    /* Dovecot's imap_idle_notify_interval, 2 minutes: NAT boxes forget quiet TCP flows after a
     * few minutes. Under the 30 minutes a connection may stay silent, or it would never run. */
    K("idle_keepalive", KT_DURATION, false, "2m", 0, 29 * MIN, 0, NULL, struct tdm_config_imap,
      idle_keepalive_ms),
    {0}};

/* The protocol has a copy ACK at least every 5 s (docs/formats/replication.md), so a limit
 * below 6 s would close copies that follow it; 30 s is the protocol's own. */
static const struct key_spec replication_keys[] = {
    K("silence_timeout", KT_DURATION, false, "30s", 6 * SEC, HOUR, 0, NULL,
      struct tdm_config_replication, silence_timeout_ms),
    {0}};

/* [dumpster]: the transport role's copies of what it delivered (docs/smtp.md, "Transport
 * dumpster"). max_age stays below the 7 days a mailbox database remembers delivery ids
 * (MAIL_DELIVERY_ID_KEEP_SECONDS), so every resubmitted message still finds its id there. */
static const struct key_spec dumpster_keys[] = {
    K("max_age", KT_DURATION, false, "2d", SEC, 6 * DAY, 0, NULL, struct tdm_config_dumpster,
      max_age_ms),
    K("max_size", KT_SIZE, false, "1G", 4 * KIB, 1024 * GIB, 0, NULL, struct tdm_config_dumpster,
      max_size),
    {0}};

/* [cms <name>] (docs/cluster.md, "CMS address"). */
static const struct key_spec cms_keys[] = {
    /* KT_CMS_DBS fills the array and the count, at offset 0. */
    {.key = "databases", .type = KT_CMS_DBS, .required = true, .offset = 0},
    /* KT_CMS_ADDRESS fills the address and its prefix length, at offset 0. */
    {.key = "address", .type = KT_CMS_ADDRESS, .required = true, .offset = 0},
    /* Where the address is added on the active node (docs/cluster.md, "CMS address"). */
    K("interface", KT_IFNAME, false, NULL, 0, 0, 0, NULL, struct tdm_config_cms, interface),
    K("mount_dial", KT_ENUM, false, "good", 0, 0, 0, mount_dial_names, struct tdm_config_cms,
      mount_dial),
    K("replication", KT_ENUM, false, "directory", 0, 0, 0, cms_repl_names,
      struct tdm_config_cms, replication),
    /* The database object's sync_timeout_ms bounds (dir_schema.c). */
    K("sync_timeout", KT_DURATION, false, "2s", 100, 600 * SEC, 0, NULL, struct tdm_config_cms,
      sync_timeout_ms),
    {0}};

/* [cluster] (docs/cluster.md, "Configuration"). The interval is bounded so a heartbeat fits
 * many times in the smallest lease; lease_ttl > 2 x interval is checked across keys. */
static const struct key_spec cluster_keys[] = {
    K("name", KT_NAME, true, NULL, 0, 0, 0, NULL, struct tdm_config_cluster, name),
    K("witness", KT_NAME, true, NULL, 0, 0, 0, NULL, struct tdm_config_cluster, witness),
    K("heartbeat_interval", KT_DURATION, false, "1s", 100, 10 * SEC, 0, NULL,
      struct tdm_config_cluster, heartbeat_interval_ms),
    K("heartbeat_misses", KT_INT, false, "5", 2, 60, 0, NULL, struct tdm_config_cluster,
      heartbeat_misses),
    K("lease_ttl", KT_DURATION, false, "4s", SEC, 60 * SEC, 0, NULL, struct tdm_config_cluster,
      lease_ttl_ms),
    K("transports", KT_ENDPOINT_LIST, false, NULL, 0, 0, 0, NULL, struct tdm_config_cluster,
      transports),
    {0}};
/* [member <name>]: its keys are network names (member_key), so the schema lists none. */
static const struct key_spec member_keys[] = {{0}};

static int listen_finish(struct loader *ld, const struct opened *o);
static int member_finish(struct loader *ld, const struct opened *o);
static int tls_finish(struct loader *ld, const struct opened *o);

/* Singletons live at offset in struct tdm_config; named sections are placed by open_section. */
static const struct section_spec top_spec = {"", false, 1, top_keys, 0, NULL};
static const struct section_spec sections[] = {
    {"network", true, TDM_CONFIG_MAX_NETWORKS, network_keys, 0, NULL},
    {"listen", true, TDM_PROTO_COUNT, listen_keys, 0, listen_finish},
    {"directory", false, 1, directory_keys, offsetof(struct tdm_config, directory), NULL},
    {"store", false, 1, store_keys, offsetof(struct tdm_config, store), NULL},
    {"log", false, 1, log_keys, offsetof(struct tdm_config, log), NULL},
    {"tls", false, 1, tls_keys, offsetof(struct tdm_config, tls), tls_finish},
    {"smtp", false, 1, smtp_keys, offsetof(struct tdm_config, smtp), NULL},
    {"imap", false, 1, imap_keys, offsetof(struct tdm_config, imap), NULL},
    {"replication", false, 1, replication_keys, offsetof(struct tdm_config, replication), NULL},
    {"cms", true, TDM_CONFIG_MAX_CMS, cms_keys, 0, NULL},
    {"cluster", false, 1, cluster_keys, offsetof(struct tdm_config, cluster), NULL},
    {"member", true, TDM_CONFIG_MAX_MEMBERS, member_keys, 0, member_finish},
    {"dumpster", false, 1, dumpster_keys, offsetof(struct tdm_config, dumpster), NULL},
};
static const struct section_spec *const cms_spec = &sections[9];
static const struct section_spec *const cluster_spec = &sections[10];
static const struct section_spec *const member_spec = &sections[11];
static const struct section_spec *const dumpster_spec = &sections[12];
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

/* ---- messages ---------------------------------------------------------------------------- */

/* "in [listen imap]", "in [store]" or "at the top of the file". */
static const char *
label(const struct opened *o, char *buf, size_t size)
{
    if (o->spec == &top_spec)
        return "at the top of the file";
    snprintf(buf, size, "in [%s%s%s]", o->spec->type, o->name[0] ? " " : "", o->name);
    return buf;
}

/* Sets *error_r to "<file>:<line>: <message>" (no ":<line>" when line is 0); returns ret. */
__attribute__((format(printf, 4, 5))) static int
fail(struct loader *ld, int ret, unsigned line, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    char lbuf[16] = "";
    if (line > 0)
        snprintf(lbuf, sizeof(lbuf), ":%u", line);
    if (n < 0 || asprintf(ld->error_r, "%s%s: %s", ld->file, lbuf, msg) < 0) {
        *ld->error_r = NULL;
        ret = -ENOMEM;
    }
    free(n < 0 ? NULL : msg);
    return ret;
}

/* ---- values: the forms are in config_parse.c, this binds them to the struct ---------------- */

__attribute__((format(printf, 2, 3))) static int
why(char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, CONFIG_REASON_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

static bool
addr_equal(const struct tdm_config_addr *a, const struct tdm_config_addr *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

static void
addr_set(struct tdm_config_addr *a, int family, const unsigned char bytes[16])
{
    *a = (struct tdm_config_addr){.family = family};
    memcpy(a->bytes, bytes, sizeof(a->bytes));
    inet_ntop(family, a->bytes, a->text, sizeof(a->text));
}

static int
parse_path(const char *v, char **out, char *reason)
{
    if (v[0] != '/')
        return why(reason, "\"%.64s\" is not an absolute path (it must start with '/')", v);
    char *copy = strdup(v);
    if (!copy)
        return -ENOMEM;
    free(*out);
    *out = copy;
    return 0;
}

static int
parse_roles(const char *v, const char *const *names, unsigned *out, char *reason)
{
    char buf[CONFIG_MAX_LINE + 1];
    const char *items[16];
    unsigned n, bits = 0;
    if (config_value_list(v, buf, sizeof(buf), items, 16, &n, reason) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        int r;
        if (config_value_enum(items[i], names, &r, reason) < 0)
            return -1;
        if (bits & (1u << r))
            return why(reason, "role \"%s\" is listed twice", items[i]);
        bits |= 1u << r;
    }
    *out = bits;
    return 0;
}

static int
parse_endpoint_list(const char *v, struct tdm_config_endpoint_list *l, char *reason)
{
    char buf[CONFIG_MAX_LINE + 1];
    const char *items[TDM_CONFIG_MAX_ENDPOINTS];
    struct tdm_config_endpoint eps[TDM_CONFIG_MAX_ENDPOINTS];
    unsigned n;
    if (config_value_list(v, buf, sizeof(buf), items, TDM_CONFIG_MAX_ENDPOINTS, &n, reason) < 0)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        int family;
        unsigned char bytes[16];
        if (config_value_endpoint(items[i], &family, bytes, &eps[i].port, reason) < 0)
            return -1;
        addr_set(&eps[i].address, family, bytes);
        for (unsigned j = 0; j < i; j++)
            if (eps[j].port == eps[i].port && addr_equal(&eps[j].address, &eps[i].address))
                return why(reason, "endpoint \"%s\" is listed twice", items[i]);
    }
    memcpy(l->items, eps, n * sizeof(eps[0]));
    l->n = n;
    return 0;
}

static int
parse_endpoints(const char *v, struct tdm_config_directory *d, char *reason)
{
    struct tdm_config_endpoint_list l;
    if (parse_endpoint_list(v, &l, reason) < 0)
        return -1;
    memcpy(d->endpoints, l.items, l.n * sizeof(l.items[0]));
    d->n_endpoints = l.n;
    return 0;
}

/* A DNS name: dot-separated labels of letters, digits and inner hyphens, each 1..63 bytes. */
static bool
domain_ok(const char *d)
{
    size_t len = strlen(d), label = 0;
    if (len == 0 || len > TDM_CONFIG_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char c = d[i];
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63 || d[i - 1] == '-')
                return false;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static int
parse_domains(const char *v, struct tdm_config_smtp *smtp, char *reason)
{
    char buf[CONFIG_MAX_LINE + 1];
    const char *items[TDM_CONFIG_MAX_DOMAINS];
    unsigned n;
    if (config_value_list(v, buf, sizeof(buf), items, TDM_CONFIG_MAX_DOMAINS, &n, reason) < 0)
        return -1;
    char lower[TDM_CONFIG_MAX_DOMAINS][TDM_CONFIG_DOMAIN_MAX + 1];
    for (unsigned i = 0; i < n; i++) {
        if (!domain_ok(items[i]))
            return why(reason, "\"%.64s\" is not a domain name (letters, digits, '-' and '.')",
                       items[i]);
        size_t k = 0;
        for (; items[i][k]; k++)
            lower[i][k] = (char)tolower((unsigned char)items[i][k]);
        lower[i][k] = '\0';
        for (unsigned j = 0; j < i; j++)
            if (strcmp(lower[j], lower[i]) == 0)
                return why(reason, "domain \"%s\" is listed twice", items[i]);
    }
    memcpy(smtp->domains, lower, n * sizeof(lower[0]));
    smtp->n_domains = n;
    return 0;
}

/* A CMS's databases: names of directories under <datadir>/db/, each one DNS label. */
static int
parse_cms_dbs(const char *v, struct tdm_config_cms *cms, char *reason)
{
    char buf[CONFIG_MAX_LINE + 1];
    const char *items[TDM_CONFIG_MAX_CMS_DATABASES];
    unsigned n;
    if (config_value_list(v, buf, sizeof(buf), items, TDM_CONFIG_MAX_CMS_DATABASES, &n,
                          reason) < 0)
        return -1;
    char names[TDM_CONFIG_MAX_CMS_DATABASES][TDM_CONFIG_NAME_MAX + 1];
    for (unsigned i = 0; i < n; i++) {
        if (config_value_name(items[i], TDM_CONFIG_NAME_MAX, names[i], reason) < 0)
            return -1;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                return why(reason, "database \"%s\" is listed twice", items[i]);
    }
    memcpy(cms->databases, names, n * sizeof(names[0]));
    cms->n_databases = n;
    return 0;
}

/* address[/prefix length] of a [cms]: the length only says something for an address added to
 * an interface, which check_cms() requires. */
static int
parse_cms_address(const char *v, struct tdm_config_cms *c, char *reason)
{
    char buf[CONFIG_MAX_LINE + 1];
    snprintf(buf, sizeof(buf), "%s", v);
    char *slash = strchr(buf, '/');
    unsigned prefix = 0;
    if (slash) {
        *slash = '\0';
        uint64_t n;
        if (config_value_number(slash + 1, &config_number_units, 1, 128, 0, &n, reason) < 0)
            return -1;
        prefix = (unsigned)n;
    }
    int family;
    unsigned char bytes[16];
    if (config_value_address(buf, &family, bytes, reason) < 0)
        return -1;
    if (family == AF_INET && prefix > 32)
        return why(reason, "prefix length /%u is longer than an IPv4 address (32 bits)", prefix);
    addr_set(&c->address, family, bytes);
    c->prefix_len = prefix;
    return 0;
}

/* A network interface's name as Linux takes it (dev_valid_name): 1 to IFNAMSIZ - 1 bytes, no
 * '/', ':' or space; narrowed to what `ip link` prints for ordinary interfaces. */
static int
parse_ifname(const char *v, char *out, char *reason)
{
    size_t n = strlen(v);
    if (n == 0 || n > TDM_CONFIG_IFNAME_MAX)
        return why(reason, "an interface name is 1 to %d characters", TDM_CONFIG_IFNAME_MAX);
    if (!strcmp(v, ".") || !strcmp(v, ".."))
        return why(reason, "\"%s\" is not an interface name", v);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
            return why(reason,
                       "an interface name has letters, digits, '.', '-' and '_' only, not '%c'",
                       v[i]);
    memcpy(out, v, n + 1);
    return 0;
}

/* Parses v as k's type into base + k->offset. */
static int
parse_value(const struct key_spec *k, const char *v, void *base, char *reason)
{
    void *p = (char *)base + k->offset;
    uint64_t n;
    int family;
    unsigned char bytes[16];
    switch (k->type) {
    case KT_NAME:
        return config_value_name(v, TDM_CONFIG_NAME_MAX, p, reason);
    case KT_USER:
        return config_value_user(v, TDM_CONFIG_USER_MAX, p, reason);
    case KT_PATH:
        return parse_path(v, p, reason);
    case KT_INT:
        if (config_value_number(v, &config_number_units, k->min, k->max, 0, &n, reason) < 0)
            return -1;
        *(uint32_t *)p = (uint32_t)n;
        return 0;
    case KT_SIZE:
        return config_value_number(v, &config_size_units, k->min, k->max, k->align, p, reason);
    case KT_DURATION:
        return config_value_number(v, &config_duration_units, k->min, k->max, 0, p, reason);
    case KT_ENUM:
        return config_value_enum(v, k->names, p, reason);
    case KT_ROLES:
        return parse_roles(v, k->names, p, reason);
    case KT_ADDRESS:
        if (config_value_address(v, &family, bytes, reason) < 0)
            return -1;
        addr_set(p, family, bytes);
        return 0;
    case KT_ENDPOINTS:
        return parse_endpoints(v, p, reason);
    case KT_ENDPOINT_LIST:
        return parse_endpoint_list(v, p, reason);
    case KT_DOMAINS:
        return parse_domains(v, p, reason);
    case KT_CMS_DBS:
        return parse_cms_dbs(v, p, reason);
    case KT_CMS_ADDRESS:
        return parse_cms_address(v, p, reason);
    case KT_IFNAME:
        return parse_ifname(v, p, reason);
    }
    return why(reason, "unknown key type");
}

static int
set_defaults(const struct section_spec *spec, void *base)
{
    char reason[CONFIG_REASON_MAX];
    for (const struct key_spec *k = spec->keys; k->key; k++) {
        if (!k->def)
            continue;
        int ret = parse_value(k, k->def, base, reason);
        if (ret == -ENOMEM)
            return ret;
        TDM_ASSERT(ret == 0); /* a default the schema rejects is our bug */
    }
    return 0;
}

/* ---- the loader -------------------------------------------------------------------------- */

static int
check_required(struct loader *ld, const struct opened *o)
{
    char lb[96];
    for (unsigned i = 0; o->spec->keys[i].key; i++) {
        if (o->spec->keys[i].required && o->key_line[i] == 0)
            return fail(ld, TDM_EINVAL, o->line, "key \"%s\": missing %s (required)",
                        o->spec->keys[i].key, label(o, lb, sizeof(lb)));
    }
    return o->spec->finish ? o->spec->finish(ld, o) : 0;
}

/* [listen]: exactly one of network (resolved at the end) and address. */
static int
listen_finish(struct loader *ld, const struct opened *o)
{
    unsigned net = o->key_line[0], addr = o->key_line[1];
    if (net && addr)
        return fail(ld, TDM_EINVAL, net > addr ? net : addr,
                    "key \"%s\": [listen %s] has both \"network\" and \"address\"; give one",
                    net > addr ? "network" : "address", o->name);
    if (!net && !addr)
        return fail(ld, TDM_EINVAL, o->line,
                    "key \"network\": missing in [listen %s] (give \"network\", a [network] "
                    "name, or \"address\", an address literal)",
                    o->name);
    return 0;
}

/* [member]: heard on at least one network, or it could never count as seen. */
static int
member_finish(struct loader *ld, const struct opened *o)
{
    const struct tdm_config_member *m = o->base;
    if (m->n_nets == 0)
        return fail(ld, TDM_EINVAL, o->line,
                    "section [member %s]: names no network (give one key per network shared "
                    "with it: <network> = <its [listen cluster] address:port>)",
                    m->name);
    return 0;
}

/* [tls]: a certificate without its key (or the reverse) cannot be served, and mixing the
 * operator's certificate with the local key would fail only at the first handshake. */
static int
tls_finish(struct loader *ld, const struct opened *o)
{
    unsigned cert = o->key_line[0], key = o->key_line[1];
    if (cert && !key)
        return fail(ld, TDM_EINVAL, cert,
                    "key \"certificate\": [tls] gives \"certificate\" without \"key\"; give "
                    "both (the operator's certificate and its key) or neither (the local CA's)");
    if (key && !cert)
        return fail(ld, TDM_EINVAL, key,
                    "key \"key\": [tls] gives \"key\" without \"certificate\"; give both (the "
                    "operator's certificate and its key) or neither (the local CA's)");
    return 0;
}

static int
open_section(struct loader *ld, const struct config_entry *e)
{
    const struct section_spec *spec = NULL;
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (strcmp(sections[i].type, e->section) == 0)
            spec = &sections[i];
    if (!spec)
        return fail(ld, TDM_EINVAL, e->line,
                    "section [%s]: unknown section (known: network, listen, directory, store, "
                    "log, tls, smtp, imap, replication, cms, cluster, member, dumpster)",
                    e->section);
    if (spec->named && !e->name[0])
        return fail(ld, TDM_EINVAL, e->line, "section [%s]: needs a name: [%s <name>]", spec->type,
                    spec->type);
    if (!spec->named && e->name[0])
        return fail(ld, TDM_EINVAL, e->line, "section [%s %s]: [%s] takes no name", spec->type,
                    e->name, spec->type);
    char reason[CONFIG_REASON_MAX], scratch[TDM_CONFIG_NAME_MAX + 1];
    int proto;
    if (spec == &sections[0] &&
        config_value_name(e->name, TDM_CONFIG_NAME_MAX, scratch, reason) < 0)
        return fail(ld, TDM_EINVAL, e->line, "section [%s %s]: %s", spec->type, e->name, reason);
    if ((spec == cms_spec || spec == member_spec) &&
        config_value_name(e->name, TDM_CONFIG_NAME_MAX, scratch, reason) < 0)
        return fail(ld, TDM_EINVAL, e->line, "section [%s %s]: %s", spec->type, e->name, reason);
    if (spec == &sections[1] && config_value_enum(e->name, proto_names, &proto, reason) < 0)
        return fail(ld, TDM_EINVAL, e->line, "section [%s %s]: unknown protocol: %s", spec->type,
                    e->name, reason);
    unsigned count = 0;
    for (unsigned i = 0; i < ld->n_sec; i++) {
        const struct opened *o = &ld->sec[i];
        if (o->spec != spec)
            continue;
        count++;
        if (strcmp(o->name, e->name) == 0)
            return fail(ld, TDM_EINVAL, e->line, "section [%s%s%s]: duplicate (first at line %u)",
                        spec->type, e->name[0] ? " " : "", e->name, o->line);
    }
    if (count == spec->max)
        return fail(ld, TDM_ELIMIT, e->line, "section [%s %s]: more than %u [%s] sections",
                    spec->type, e->name, spec->max, spec->type);
    struct tdm_config *cfg = ld->cfg;
    struct opened *o = &ld->sec[ld->n_sec++];
    *o = (struct opened){.spec = spec, .name = e->name, .line = e->line};
    if (spec == &sections[0]) {
        struct tdm_config_network *n = &cfg->networks[cfg->n_networks++];
        memcpy(n->name, scratch, sizeof(n->name));
        n->line = e->line;
        o->base = n;
    } else if (spec == &sections[1]) {
        struct tdm_config_listener *l = &cfg->listeners[cfg->n_listeners++];
        l->proto = (enum tdm_proto)proto;
        l->line = e->line;
        o->base = l;
    } else if (spec == member_spec) {
        struct tdm_config_member *m = &cfg->members[cfg->n_members++];
        memcpy(m->name, scratch, sizeof(m->name));
        m->line = e->line;
        o->base = m;
    } else if (spec == cms_spec) {
        struct tdm_config_cms *c = &cfg->cms[cfg->n_cms++];
        memcpy(c->name, scratch, sizeof(c->name));
        c->line = e->line;
        o->base = c;
    } else {
        o->base = (char *)cfg + spec->offset;
    }
    return spec->named ? set_defaults(spec, o->base) : 0;
}

/* A [member] key: a network name (or coord) = an endpoint. The order is the try order. */
static int
member_key(struct loader *ld, const struct opened *o, const struct config_entry *e)
{
    struct tdm_config_member *m = o->base;
    char reason[CONFIG_REASON_MAX], net[TDM_CONFIG_NAME_MAX + 1];
    if (config_value_name(e->key, TDM_CONFIG_NAME_MAX, net, reason) < 0)
        return fail(ld, TDM_EINVAL, e->line,
                    "key \"%s\": not a network name in [member %s] (its keys are this "
                    "server's [network] names, and coord for the witness): %s",
                    e->key, m->name, reason);
    bool coord = strcmp(net, "coord") == 0;
    if (coord && m->coord_line)
        return fail(ld, TDM_EINVAL, e->line, "key \"coord\": duplicate in [member %s] (first at "
                    "line %u)", m->name, m->coord_line);
    for (unsigned i = 0; !coord && i < m->n_nets; i++)
        if (strcmp(m->nets[i].network, net) == 0)
            return fail(ld, TDM_EINVAL, e->line,
                        "key \"%s\": duplicate in [member %s] (first at line %u)", e->key,
                        m->name, m->nets[i].line);
    if (!coord && m->n_nets == TDM_CONFIG_MAX_NETWORKS)
        return fail(ld, TDM_ELIMIT, e->line, "key \"%s\": more than %u networks in [member %s]",
                    e->key, TDM_CONFIG_MAX_NETWORKS, m->name);
    int family;
    unsigned char bytes[16];
    struct tdm_config_endpoint ep;
    if (config_value_endpoint(e->value, &family, bytes, &ep.port, reason) < 0)
        return fail(ld, TDM_EINVAL, e->line, "key \"%s\": %s", e->key, reason);
    addr_set(&ep.address, family, bytes);
    if (coord) {
        m->coord = ep;
        m->coord_line = e->line;
    } else {
        struct tdm_config_member_net *n = &m->nets[m->n_nets++];
        memcpy(n->network, net, sizeof(n->network));
        n->endpoint = ep;
        n->line = e->line;
    }
    return 0;
}

static int
set_key(struct loader *ld, const struct config_entry *e)
{
    struct opened *o = &ld->sec[ld->n_sec - 1];
    char lb[96], reason[CONFIG_REASON_MAX];
    if (o->spec == member_spec)
        return member_key(ld, o, e);
    unsigned i = 0;
    while (o->spec->keys[i].key && strcmp(o->spec->keys[i].key, e->key) != 0)
        i++;
    if (!o->spec->keys[i].key) {
        char known[CONFIG_REASON_MAX] = "";
        for (unsigned j = 0; o->spec->keys[j].key; j++)
            snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", j ? ", " : "",
                     o->spec->keys[j].key);
        return fail(ld, TDM_EINVAL, e->line, "key \"%s\": unknown key %s (known: %s)", e->key,
                    label(o, lb, sizeof(lb)), known);
    }
    if (o->key_line[i])
        return fail(ld, TDM_EINVAL, e->line, "key \"%s\": duplicate %s (first at line %u)", e->key,
                    label(o, lb, sizeof(lb)), o->key_line[i]);
    o->key_line[i] = e->line;
    int ret = parse_value(&o->spec->keys[i], e->value, o->base, reason);
    if (ret == -ENOMEM)
        return fail(ld, -ENOMEM, e->line, "out of memory");
    if (ret < 0)
        return fail(ld, TDM_EINVAL, e->line, "key \"%s\": %s", e->key, reason);
    return 0;
}

static const struct opened *
find_opened(const struct loader *ld, const void *base)
{
    for (unsigned i = 0; i < ld->n_sec; i++)
        if (ld->sec[i].base == base)
            return &ld->sec[i];
    return NULL;
}

static bool
same_bind(const struct tdm_config_addr *a, const struct tdm_config_addr *b)
{
    static const unsigned char any[16];
    size_t len = a->family == AF_INET ? 4 : 16;
    return a->family == b->family &&
           (memcmp(a->bytes, b->bytes, len) == 0 || memcmp(a->bytes, any, len) == 0 ||
            memcmp(b->bytes, any, len) == 0);
}

/* [cms]: its address is its own (never a [network]'s or another CMS's: the node's address must
 * stay reachable when the CMS moves away), and a database belongs to one CMS. */
static int
check_cms(struct loader *ld)
{
    struct tdm_config *cfg = ld->cfg;
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        const struct tdm_config_cms *c = &cfg->cms[i];
        const struct opened *o = find_opened(ld, c);
        if (!(cfg->roles & TDM_ROLE_MAILBOX))
            return fail(ld, TDM_EINVAL, c->line,
                        "section [cms %s]: a CMS's databases are mailbox databases; add "
                        "\"mailbox\" to roles",
                        c->name);
        if (c->prefix_len && !c->interface[0])
            return fail(ld, TDM_EINVAL, o->key_line[1],
                        "key \"address\": a prefix length (/%u) is for an address added to an "
                        "interface: add key \"interface\", or leave the length out",
                        c->prefix_len);
        /* Announcing an IPv6 address takes an unsolicited neighbour advertisement, not built
         * yet (docs/decisions.md); without it clients would keep the old node's MAC. */
        if (c->interface[0] && c->address.family != AF_INET)
            return fail(ld, TDM_EINVAL, o->key_line[2],
                        "key \"interface\": only an IPv4 CMS address can be added to an "
                        "interface yet; %s is IPv6 (bind it on an address the host already has: "
                        "leave \"interface\" out)",
                        c->address.text);
        for (unsigned j = 0; j < cfg->n_networks; j++)
            if (addr_equal(&c->address, &cfg->networks[j].address))
                return fail(ld, TDM_EINVAL, o->key_line[1],
                            "key \"address\": %s is the address of [network %s] (line %u); a "
                            "CMS needs an address of its own, which moves with it",
                            c->address.text, cfg->networks[j].name, cfg->networks[j].line);
        for (unsigned j = 0; j < cfg->n_listeners; j++)
            if (addr_equal(&c->address, &cfg->listeners[j].address))
                return fail(ld, TDM_EINVAL, o->key_line[1],
                            "key \"address\": %s is the address of [listen %s] (line %u); a "
                            "CMS needs an address of its own, which moves with it",
                            c->address.text, proto_names[cfg->listeners[j].proto],
                            cfg->listeners[j].line);
        for (unsigned j = 0; j < i; j++) {
            const struct tdm_config_cms *d = &cfg->cms[j];
            if (addr_equal(&c->address, &d->address))
                return fail(ld, TDM_EINVAL, o->key_line[1],
                            "key \"address\": %s is also the address of [cms %s] (line %u)",
                            c->address.text, d->name, d->line);
            for (unsigned a = 0; a < c->n_databases; a++)
                for (unsigned b = 0; b < d->n_databases; b++)
                    if (strcmp(c->databases[a], d->databases[b]) == 0)
                        return fail(ld, TDM_EINVAL, o->key_line[0],
                                    "key \"databases\": database \"%s\" also belongs to [cms "
                                    "%s] (line %u)",
                                    c->databases[a], d->name, d->line);
        }
    }
    return 0;
}

static const struct tdm_config_network *
find_network(const struct tdm_config *cfg, const char *name)
{
    for (unsigned i = 0; i < cfg->n_networks; i++)
        if (strcmp(cfg->networks[i].name, name) == 0)
            return &cfg->networks[i];
    return NULL;
}

/* [listen cluster], [cluster] and [member] (docs/cluster.md, "Configuration"). */
static int
check_cluster(struct loader *ld)
{
    struct tdm_config *cfg = ld->cfg;
    const struct tdm_config_cluster *c = &cfg->cluster;
    const struct opened *co = find_opened(ld, c);
    const struct tdm_config_listener *listen = NULL;
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].proto == TDM_PROTO_CLUSTER)
            listen = &cfg->listeners[i];
    if (listen && !(cfg->roles & (TDM_ROLE_MAILBOX | TDM_ROLE_WITNESS)))
        return fail(ld, TDM_EINVAL, listen->line,
                    "section [listen cluster]: only cluster members answer heartbeats: a node "
                    "(\"mailbox\" in roles, with [cluster]) or a witness (\"witness\")");
    if (!co) {
        if (cfg->n_members > 0)
            return fail(ld, TDM_EINVAL, cfg->members[0].line,
                        "section [member %s]: members belong to a cluster; add a [cluster] "
                        "section (name, witness)",
                        cfg->members[0].name);
        return 0;
    }
    if (!(cfg->roles & TDM_ROLE_MAILBOX))
        return fail(ld, TDM_EINVAL, co->line,
                    "section [cluster]: only a mailbox server is a cluster node; add \"mailbox\" "
                    "to roles (a witness has no [cluster] section)");
    if (!listen)
        return fail(ld, TDM_EINVAL, co->line,
                    "section [cluster]: a node answers heartbeats; add [listen cluster] (default "
                    "port 7434)");
    if (c->lease_ttl_ms <= 2 * c->heartbeat_interval_ms)
        return fail(ld, TDM_EINVAL, co->key_line[4] ? co->key_line[4] : co->line,
                    "key \"lease_ttl\": %llu ms is not more than twice heartbeat_interval "
                    "(%llu ms): the lease must outlive two heartbeats (docs/cluster.md, \"Timing\")",
                    (unsigned long long)c->lease_ttl_ms,
                    (unsigned long long)c->heartbeat_interval_ms);
    const struct tdm_config_member *witness = NULL;
    unsigned nodes = 0;
    for (unsigned i = 0; i < cfg->n_members; i++) {
        const struct tdm_config_member *m = &cfg->members[i];
        if (strcmp(m->name, cfg->server) == 0)
            return fail(ld, TDM_EINVAL, m->line,
                        "section [member %s]: that is this server; list only the other members",
                        m->name);
        bool is_witness = strcmp(m->name, c->witness) == 0;
        if (is_witness)
            witness = m;
        else
            nodes++;
        if (is_witness && !m->coord_line)
            return fail(ld, TDM_EINVAL, m->line,
                        "section [member %s]: the witness needs \"coord\", the address:port of "
                        "its [listen coord] (default port 7435)",
                        m->name);
        if (!is_witness && m->coord_line)
            return fail(ld, TDM_EINVAL, m->coord_line,
                        "key \"coord\": only the witness ([cluster] witness = %s) has one; "
                        "[member %s] is a node",
                        c->witness, m->name);
        for (unsigned j = 0; j < m->n_nets; j++) {
            if (find_network(cfg, m->nets[j].network))
                continue;
            char known[CONFIG_REASON_MAX] = "";
            for (unsigned k = 0; k < cfg->n_networks; k++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         k ? ", " : "", cfg->networks[k].name);
            return fail(ld, TDM_EINVAL, m->nets[j].line,
                        "key \"%s\": network \"%s\" is not one of this server's (defined: %s); "
                        "a member is heard only on networks both are on",
                        m->nets[j].network, m->nets[j].network, known);
        }
    }
    if (!witness)
        return fail(ld, TDM_EINVAL, co->key_line[1],
                    "key \"witness\": no [member %s] section: the witness is a member, with its "
                    "[listen cluster] and coord endpoints",
                    c->witness);
    if (nodes == 0)
        return fail(ld, TDM_EINVAL, co->line,
                    "section [cluster]: no other node: a cluster is two or more nodes and a "
                    "witness; add a [member] for each other node");
    return 0;
}

/* What spans sections, once the whole file is read. */
static int
check_cross(struct loader *ld)
{
    struct tdm_config *cfg = ld->cfg;
    if (cfg->n_networks == 0)
        return fail(ld, TDM_EINVAL, 0,
                    "no [network <name>] section: at least one is required, with this server's "
                    "address on it");
    for (unsigned i = 0; i < cfg->n_networks; i++) {
        for (unsigned j = 0; j < i; j++) {
            if (addr_equal(&cfg->networks[i].address, &cfg->networks[j].address))
                return fail(ld, TDM_EINVAL, find_opened(ld, &cfg->networks[i])->key_line[0],
                            "key \"address\": %s is also the address of [network %s] (line %u)",
                            cfg->networks[i].address.text, cfg->networks[j].name,
                            cfg->networks[j].line);
        }
    }
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        struct tdm_config_listener *l = &cfg->listeners[i];
        const struct opened *o = find_opened(ld, l);
        if (l->network[0]) {
            unsigned j = 0;
            while (j < cfg->n_networks && strcmp(cfg->networks[j].name, l->network) != 0)
                j++;
            if (j == cfg->n_networks) {
                char known[CONFIG_REASON_MAX] = "";
                for (unsigned k = 0; k < cfg->n_networks; k++)
                    snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                             k ? ", " : "", cfg->networks[k].name);
                return fail(ld, TDM_EINVAL, o->key_line[0],
                            "key \"network\": network \"%s\" is not defined (defined: %s)",
                            l->network, known);
            }
            l->address = cfg->networks[j].address;
        }
        for (unsigned j = 0; j < i; j++) {
            const struct tdm_config_listener *m = &cfg->listeners[j];
            if (m->port == l->port && same_bind(&m->address, &l->address))
                return fail(ld, TDM_EINVAL, o->key_line[2],
                            "key \"port\": %s port %u is already used by [listen %s] (line %u)",
                            l->address.text, l->port, proto_names[m->proto], m->line);
        }
    }
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct tdm_config_listener *l = &cfg->listeners[i];
        if (l->proto != TDM_PROTO_SMTP)
            continue;
        if (!(cfg->roles & TDM_ROLE_TRANSPORT))
            return fail(ld, TDM_EINVAL, l->line,
                        "section [listen smtp]: SMTP is served by the transport role; add "
                        "\"transport\" to roles");
        if (cfg->smtp.n_domains == 0)
            return fail(ld, TDM_EINVAL, l->line,
                        "section [listen smtp]: needs [smtp] \"domains\", the mail domains to "
                        "accept mail for (any other is relaying, which is refused)");
    }
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct tdm_config_listener *l = &cfg->listeners[i];
        /* Only the databases' owner can ship their logs: the mailbox role's, and the
         * directory role's (the directory is a database like any other). */
        if (l->proto == TDM_PROTO_REPLICATION &&
            !(cfg->roles & (TDM_ROLE_MAILBOX | TDM_ROLE_DIRECTORY)))
            return fail(ld, TDM_EINVAL, l->line,
                        "section [listen replication]: only a server with databases ships their "
                        "logs; add \"mailbox\" or \"directory\" to roles");
    }
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        const struct tdm_config_listener *l = &cfg->listeners[i];
        if (l->proto == TDM_PROTO_COORD && !(cfg->roles & TDM_ROLE_WITNESS))
            return fail(ld, TDM_EINVAL, l->line,
                        "section [listen coord]: only a witness serves the coordination store; "
                        "add \"witness\" to roles");
    }
    int ret = check_cms(ld);
    if (ret < 0)
        return ret;
    if ((ret = check_cluster(ld)) < 0)
        return ret;
    if (!(cfg->roles & TDM_ROLE_DIRECTORY) && cfg->directory.n_endpoints == 0)
        return fail(ld, TDM_EINVAL, ld->sec[0].key_line[3],
                    "key \"roles\": without the directory role this server needs a [directory] "
                    "section with \"endpoints\" to reach it");
    /* Events go to a file unless told otherwise, so `tandemctl events` (which reads this file
     * through the admin API) works out of the box; "/dev/stderr" sends them to the journal. */
    if (!cfg->log.events && asprintf(&cfg->log.events, "%s/events.log", cfg->datadir) < 0) {
        cfg->log.events = NULL;
        return fail(ld, -ENOMEM, 0, "out of memory");
    }
    return 0;
}

static int
load(struct loader *ld, const struct config_parsed *parsed)
{
    int ret;
    ld->sec[0] = (struct opened){.spec = &top_spec, .name = "", .base = ld->cfg, .line = 1};
    ld->n_sec = 1;
    /* Sections that may be absent still hold their defaults. */
    for (size_t i = 0; i < N_SECTIONS; i++) {
        if (!sections[i].named &&
            (ret = set_defaults(&sections[i], (char *)ld->cfg + sections[i].offset)) < 0)
            return fail(ld, ret, 0, "out of memory");
    }
    for (size_t i = 0; i < parsed->count; i++) {
        const struct config_entry *e = &parsed->entries[i];
        if (e->key)
            ret = set_key(ld, e);
        else if ((ret = check_required(ld, &ld->sec[ld->n_sec - 1])) == 0)
            ret = open_section(ld, e);
        if (ret < 0)
            return ret;
    }
    if ((ret = check_required(ld, &ld->sec[ld->n_sec - 1])) < 0)
        return ret;
    return check_cross(ld);
}

int
tdm_config_load_buffer(const char *buf, size_t len, const char *filename, struct tdm_config **cfg_r,
                       char **error_r)
{
    struct config_parsed *parsed = NULL;
    *cfg_r = NULL;
    *error_r = NULL;
    int ret = config_parse(buf, len, filename, &parsed, error_r);
    if (ret < 0)
        return ret;
    struct tdm_config *cfg = calloc(1, sizeof(*cfg));
    struct loader ld = {.file = filename, .cfg = cfg, .error_r = error_r};
    if (!cfg || !(cfg->path = strdup(filename)))
        ret = fail(&ld, -ENOMEM, 0, "out of memory");
    else
        ret = load(&ld, parsed);
    config_parsed_free(&parsed);
    if (ret < 0) {
        tdm_config_free(&cfg);
        return ret;
    }
    *cfg_r = cfg;
    return 0;
}

int
tdm_config_load_file(const char *path, struct tdm_config **cfg_r, char **error_r)
{
    *cfg_r = NULL;
    *error_r = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (asprintf(error_r, "%s: cannot open: %s", path, strerror(err)) < 0)
            *error_r = NULL;
        return -err;
    }
    /* Read one byte past the limit, so a file that grows while read still gets the limit
     * message instead of a silently cut configuration. */
    size_t cap = CONFIG_MAX_FILE_SIZE + 1, len = 0;
    char *buf = malloc(cap);
    int ret = buf ? 0 : -ENOMEM;
    while (ret == 0 && len < cap) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            ret = -errno;
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    close(fd);
    if (ret == 0)
        ret = tdm_config_load_buffer(buf, len, path, cfg_r, error_r);
    else if (asprintf(error_r, "%s: cannot read: %s", path, strerror(-ret)) < 0)
        *error_r = NULL;
    free(buf);
    return ret;
}

/* ---- dump -------------------------------------------------------------------------------- */

static void
dump_number(FILE *out, uint64_t n, const struct config_units *units)
{
    char buf[32];
    config_value_format(buf, sizeof(buf), n, units);
    fputs(buf, out);
}

static void
dump_keys(FILE *out, const struct section_spec *spec, const void *base)
{
    for (const struct key_spec *k = spec->keys; k->key; k++) {
        const char *p = (const char *)base + k->offset;
        const struct tdm_config_addr *addr = (const void *)p;
        const struct tdm_config_directory *dir = (const void *)p;
        const struct tdm_config_smtp *smtp = (const void *)p;
        const struct tdm_config_endpoint_list *eps = (const void *)p;
        /* A listener's address was filled from its network: printing both would not load. */
        if (spec == &sections[1] && k->type == KT_ADDRESS &&
            ((const struct tdm_config_listener *)base)->network[0])
            continue;
        if (((k->type == KT_NAME || k->type == KT_USER || k->type == KT_IFNAME) &&
             p[0] == '\0') ||
            (k->type == KT_PATH && !*(char *const *)(const void *)p) ||
            (k->type == KT_ADDRESS && addr->family == 0) ||
            (k->type == KT_DOMAINS && smtp->n_domains == 0) ||
            (k->type == KT_ENDPOINT_LIST && eps->n == 0))
            continue;
        fprintf(out, "%s = ", k->key);
        switch (k->type) {
        case KT_NAME:
        case KT_USER:
        case KT_IFNAME:
            fputs(p, out);
            break;
        case KT_CMS_ADDRESS: {
            const struct tdm_config_cms *c = (const void *)p;
            fputs(c->address.text, out);
            if (c->prefix_len)
                fprintf(out, "/%u", c->prefix_len);
            break;
        }
        case KT_PATH:
            config_value_write(out, *(char *const *)(const void *)p);
            break;
        case KT_INT:
            fprintf(out, "%u", *(const uint32_t *)(const void *)p);
            break;
        case KT_SIZE:
            dump_number(out, *(const uint64_t *)(const void *)p, &config_size_units);
            break;
        case KT_DURATION:
            dump_number(out, *(const uint64_t *)(const void *)p, &config_duration_units);
            break;
        case KT_ENUM:
            fputs(k->names[*(const int *)(const void *)p], out);
            break;
        case KT_ROLES:
            for (unsigned i = 0, first = 1; k->names[i]; i++) {
                if (*(const unsigned *)(const void *)p & (1u << i)) {
                    fprintf(out, "%s%s", first ? "" : ", ", k->names[i]);
                    first = 0;
                }
            }
            break;
        case KT_ADDRESS:
            fputs(addr->text, out);
            break;
        case KT_DOMAINS:
            for (unsigned i = 0; i < smtp->n_domains; i++)
                fprintf(out, "%s%s", i ? ", " : "", smtp->domains[i]);
            break;
        case KT_CMS_DBS: {
            const struct tdm_config_cms *c = (const void *)p;
            for (unsigned i = 0; i < c->n_databases; i++)
                fprintf(out, "%s%s", i ? ", " : "", c->databases[i]);
            break;
        }
        case KT_ENDPOINTS:
        case KT_ENDPOINT_LIST:
            for (unsigned i = 0, n = k->type == KT_ENDPOINTS ? dir->n_endpoints : eps->n; i < n;
                 i++) {
                const struct tdm_config_endpoint *ep =
                    k->type == KT_ENDPOINTS ? &dir->endpoints[i] : &eps->items[i];
                bool v6 = ep->address.family == AF_INET6;
                fprintf(out, "%s%s%s%s:%u", i ? ", " : "", v6 ? "[" : "", ep->address.text,
                        v6 ? "]" : "", ep->port);
            }
            break;
        }
        fputc('\n', out);
    }
}

int
tdm_config_dump(const struct tdm_config *cfg, FILE *out)
{
    fputs("# effective configuration from ", out);
    for (const char *s = cfg->path; *s; s++) /* a newline in the path would end the comment */
        fputc((unsigned char)*s < 0x20 ? '?' : *s, out);
    fputs(", defaults filled in\n", out);
    dump_keys(out, &top_spec, cfg);
    for (unsigned i = 0; i < cfg->n_networks; i++) {
        fprintf(out, "\n[network %s]\n", cfg->networks[i].name);
        dump_keys(out, &sections[0], &cfg->networks[i]);
    }
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        fprintf(out, "\n[listen %s]\n", proto_names[cfg->listeners[i].proto]);
        dump_keys(out, &sections[1], &cfg->listeners[i]);
    }
    /* Absent only on a directory server that names no peers; endpoints is then required. */
    if (cfg->directory.n_endpoints > 0) {
        fputs("\n[directory]\n", out);
        dump_keys(out, &sections[2], &cfg->directory);
        if (!cfg->directory.key_file)
            fputs("# key_file: not set, <datadir>/server.key\n", out);
    }
    fputs("\n[store]\n", out);
    dump_keys(out, &sections[3], &cfg->store);
    fputs("\n[log]\n", out);
    dump_keys(out, &sections[4], &cfg->log);
    fputs("\n[tls]\n", out);
    dump_keys(out, &sections[5], &cfg->tls);
    if (!cfg->tls.certificate || !cfg->tls.ca)
        fputs("# not set: the local CA's files in <datadir>/tls/\n", out);
    fputs("\n[smtp]\n", out);
    dump_keys(out, &sections[6], &cfg->smtp);
    fputs("\n[imap]\n", out);
    dump_keys(out, &sections[7], &cfg->imap);
    fputs("\n[replication]\n", out);
    dump_keys(out, &sections[8], &cfg->replication);
    fputs("\n[dumpster]\n", out);
    dump_keys(out, dumpster_spec, &cfg->dumpster);
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        fprintf(out, "\n[cms %s]\n", cfg->cms[i].name);
        dump_keys(out, cms_spec, &cfg->cms[i]);
    }
    if (cfg->cluster.name[0]) {
        fputs("\n[cluster]\n", out);
        dump_keys(out, cluster_spec, &cfg->cluster);
    }
    for (unsigned i = 0; i < cfg->n_members; i++) {
        const struct tdm_config_member *m = &cfg->members[i];
        fprintf(out, "\n[member %s]\n", m->name);
        for (unsigned j = 0; j <= m->n_nets; j++) {
            const struct tdm_config_endpoint *ep = j < m->n_nets ? &m->nets[j].endpoint : &m->coord;
            if (j == m->n_nets && !m->coord_line)
                break;
            bool v6 = ep->address.family == AF_INET6;
            fprintf(out, "%s = %s%s%s:%u\n", j < m->n_nets ? m->nets[j].network : "coord",
                    v6 ? "[" : "", ep->address.text, v6 ? "]" : "", ep->port);
        }
    }
    if (fflush(out) != 0)
        return -errno;
    return ferror(out) ? -EIO : 0;
}

int
tdm_config_clone(const struct tdm_config *cfg, struct tdm_config **clone_r, char **error_r)
{
    *clone_r = NULL;
    *error_r = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -errno;
    int ret = tdm_config_dump(cfg, f);
    if (fclose(f) != 0 && ret == 0)
        ret = -errno;
    if (ret == 0)
        ret = tdm_config_load_buffer(text, len, cfg->path, clone_r, error_r);
    else if (asprintf(error_r, "cannot copy the configuration: %s", tdm_strerror(ret)) < 0)
        *error_r = NULL;
    free(text);
    return ret;
}

const char *
tdm_config_role_name(enum tdm_role role)
{
    for (unsigned i = 0; role_names[i]; i++)
        if ((unsigned)role == 1u << i)
            return role_names[i];
    return NULL;
}

const char *
tdm_config_mount_dial_name(int dial)
{
    return dial >= 0 && dial <= TDM_MOUNT_DIAL_BEST ? mount_dial_names[dial] : NULL;
}

const char *
tdm_config_proto_name(enum tdm_proto proto)
{
    return (unsigned)proto < TDM_PROTO_COUNT ? proto_names[proto] : NULL;
}

void
tdm_config_free(struct tdm_config **cfg)
{
    if (!*cfg)
        return;
    free((*cfg)->path);
    free((*cfg)->datadir);
    free((*cfg)->log.events);
    free((*cfg)->tls.certificate);
    free((*cfg)->tls.key);
    free((*cfg)->tls.ca);
    free((*cfg)->directory.key_file);
    free(*cfg);
    *cfg = NULL;
}

/*
 * The tandemd configuration file (src/lib/config_parse.c, src/lib/config.c): every key type
 * good and bad, every error naming file:line and key, the syntax corners (quotes, comments,
 * CRLF), the limits, the example files in etc/, and every prefix of a valid file.
 */
#include "lib/config.h"

#include "lib/config_parse.h"
#include "lib/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FILE_NAME "test.conf"

/* Lines 1-4, 5-6 and 7-8 of a minimal valid file; cases append from line 9. */
#define TOP "server = mbx1\nsite = dc1\ndatadir = /var/lib/tandem/mbx1\nroles = mailbox\n"
#define NET "[network public]\naddress = 127.0.1.1\n"
#define DIR "[directory]\nendpoints = 127.0.0.10:8443\n"
#define BASE TOP NET DIR
/* A node of a cluster (docs/cluster.md): lines 9-13, 14-16, 17-19, 20-22 after BASE. */
#define CLNET                                                                                      \
    "[network heartbeat]\naddress = 127.0.3.11\n[listen cluster]\nnetwork = heartbeat\nport = "   \
    "7434\n"
#define CLUSTER "[cluster]\nname = ccr1\nwitness = wit1\n"
#define MB2 "[member mb2]\nheartbeat = 127.0.3.12:7434\npublic = 127.0.1.12:7434\n"
#define WIT "[member wit1]\nheartbeat = 127.0.3.20:7434\ncoord = 127.0.3.20:7435\n"

static int
load(const char *text, struct tdm_config **cfg_r, char **error_r)
{
    return tdm_config_load_buffer(text, strlen(text), FILE_NAME, cfg_r, error_r);
}

/* The dump of cfg, malloc'd. */
static char *
dump(const struct tdm_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(tdm_config_dump(cfg, f), 0);
    fclose(f);
    return buf;
}

static struct tdm_config *
load_ok(const char *text)
{
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    int r = load(text, &cfg, &error);
    if (r != 0)
        fail_msg("expected to load, got %d: %s\n--- text:\n%s", r, error ? error : "(null)", text);
    assert_null(error);
    assert_non_null(cfg);
    return cfg;
}

/* ---- values that load: the dump shows the normalised value -------------------------------- */

struct good {
    const char *text;
    const char *dump_line; /* expected, whole, in the dump */
};

static const struct good goods[] = {
    {BASE, "server = mbx1\n"},
    {BASE, "roles = mailbox\n"},
    {TOP NET "[directory]\nendpoints = 127.0.0.10:8443, [::1]:9, 10.0.0.1:65535\n",
     "endpoints = 127.0.0.10:8443, [::1]:9, 10.0.0.1:65535\n"},
    {"server = a\nsite = b-2\ndatadir = /\nroles = directory , mailbox,witness\n" NET,
     "roles = mailbox, witness, directory\n"},
    {"server = a\nsite = b\ndatadir = /d\nroles = directory\nuser = _tandem-1\n" NET,
     "user = _tandem-1\n"},
    /* names: 63 characters is the most */
    {"server = "
     "abcdefghij"
     "abcdefghij"
     "abcdefghij"
     "abcdefghij"
     "abcdefghij"
     "abcdefghij"
     "abc\nsite = 0\ndatadir = /d\nroles = directory\n" NET,
     "server = abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabc\n"},
    {BASE "[network v6]\naddress = 2001:DB8:0:0::1\n", "address = 2001:db8::1\n"},
    {BASE "[listen imap]\nnetwork = public\nport = 1\n", "port = 1\n"},
    {BASE "[listen imaps]\naddress = ::\nport = 65535\n", "address = ::\n"},
    {BASE "[store]\ngeneration_size = 65536\n", "generation_size = 64K\n"},
    {BASE "[store]\ngeneration_size = 1G\n", "generation_size = 1G\n"},
    {BASE "[store]\ngeneration_size = 4100K\n", "generation_size = 4100K\n"},
    {BASE "[store]\ndisk_reserve = 0\n", "disk_reserve = 0\n"},
    {BASE "[store]\ndisk_reserve = 1536K\n", "disk_reserve = 1536K\n"},
    {BASE "[store]\ncheckpoint_bytes = 4G\n", "checkpoint_bytes = 4G\n"},
    {BASE "[store]\nidle_close = 0s\n", "idle_close = 0s\n"},
    {BASE "[store]\nidle_close = 1d\n", "idle_close = 1d\n"},
    {BASE "[store]\nidle_close = 1500ms\n", "idle_close = 1500ms\n"},
    {BASE "[store]\ncheckpoint_interval = 60m\n", "checkpoint_interval = 1h\n"},
    {BASE "[store]\ncheckpoint_interval = 1s\n", "checkpoint_interval = 1s\n"},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5\ncache_ttl = 7d\n", "cache_ttl = 7d\n"},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5\ncache_ttl = 90s\n", "cache_ttl = 90s\n"},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5\nkey_file = /etc/tandem/mbx1.key\n",
     "key_file = /etc/tandem/mbx1.key\n"},
    {BASE, "# key_file: not set, <datadir>/server.key\n"},
    /* defaults, all of them */
    {BASE, "cache_ttl = 10m\n"},
    {BASE, "generation_size = 1M\n"},
    {BASE, "idle_close = 90s\n"},
    {BASE, "checkpoint_bytes = 8M\n"},
    {BASE, "checkpoint_interval = 30s\n"},
    {BASE, "disk_reserve = 4M\n"},
    {BASE, "level = info\n"},
    {BASE "[log]\nlevel = debug\n", "level = debug\n"},
    {BASE "[log]\nlevel = warning\n", "level = warning\n"},
    {BASE "[log]\nlevel = error\nevents = /var/log/e.jsonl\n", "events = /var/log/e.jsonl\n"},
    /* [tls]: absent means the local CA's files; certificate and key come together */
    {BASE, "[tls]\n# not set: the local CA's files in <datadir>/tls/\n"},
    {BASE "[tls]\nca = /etc/tandem/peers.pem\n", "ca = /etc/tandem/peers.pem\n"},
    {BASE "[tls]\ncertificate = /etc/tandem/c.pem\nkey = /etc/tandem/k.pem\n",
     "certificate = /etc/tandem/c.pem\nkey = /etc/tandem/k.pem\n"},
    {BASE "[tls]\nkey = /k\ncertificate = /c\nca = /a\n", "certificate = /c\nkey = /k\nca = /a\n"},
    /* [smtp]: domains lower-cased, limits with their defaults */
    {BASE, "[smtp]\nmax_message_size = 25M\nmax_recipients = 100\nmax_connections = 1000\n"},
    {BASE "[smtp]\ndomains = Example.TEST, mail.example-2.org\nmax_message_size = 40M\n",
     "domains = example.test, mail.example-2.org\nmax_message_size = 40M\n"},
    {"server = t\nsite = dc1\ndatadir = /d\nroles = transport\n" NET DIR
     "[listen smtp]\nnetwork = public\nport = 25\n[smtp]\ndomains = example.test\n",
     "domains = example.test\n"},
    /* [imap]: connection and login limits with their defaults */
    {BASE, "[imap]\nmax_connections = 10000\nmax_per_address = 10000\nmax_login_failures = 10\n"
           "idle_keepalive = 2m\n"},
    {BASE "[imap]\nmax_per_address = 50\nmax_login_failures = 3\n",
     "max_per_address = 50\nmax_login_failures = 3\n"},
    {BASE "[imap]\nidle_keepalive = 0s\n", "idle_keepalive = 0s\n"},
    {BASE "[imap]\nidle_keepalive = 90s\n", "idle_keepalive = 90s\n"},
    /* [replication]: how long a copy may stay silent */
    {BASE, "[replication]\nsilence_timeout = 30s\n"},
    {BASE "[replication]\nsilence_timeout = 6s\n", "silence_timeout = 6s\n"},
    /* syntax: comments, spacing, quotes and escapes */
    {"# only a comment\n\n   \t\n" BASE, "site = dc1\n"},
    {BASE "[log]   # trailing comment\n\tlevel\t=\tdebug\t# why\n", "level = debug\n"},
    {BASE "[ log ]\nlevel=error\n", "level = error\n"},
    {BASE "[log]\nevents = /a b/c  # spaces inside stay\n", "events = /a b/c\n"},
    {BASE "[log]\nevents = \"/var/log/#1.jsonl\"  # a quoted '#'\n",
     "events = \"/var/log/#1.jsonl\"\n"},
    {BASE "[log]\nevents = \"/q\\\"uote\\\\back\"\n", "events = \"/q\\\"uote\\\\back\"\n"},
    {BASE "[log]\nevents = \"/trailing \"\n", "events = \"/trailing \"\n"},
    {BASE "[log]\nevents = /back\\slash\n", "events = /back\\slash\n"},
    {TOP "[network public]\naddress = \"127.0.1.1\"\n" DIR, "address = 127.0.1.1\n"},
    {"server = mbx1\r\nsite = dc1\r\ndatadir = /d\r\nroles = mailbox\r\n[network public]\r\n"
     "address = 127.0.1.1\r\n[directory]\r\nendpoints = 127.0.0.10:8443\r\n",
     "endpoints = 127.0.0.10:8443\n"},
    /* no newline at the end */
    {TOP NET "[directory]\nendpoints = 127.0.0.10:8443", "endpoints = 127.0.0.10:8443\n"},
};

static void
test_good_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
        struct tdm_config *cfg = load_ok(goods[i].text);
        char *text = dump(cfg);
        if (!strstr(text, goods[i].dump_line))
            fail_msg("case %zu: dump lacks \"%s\":\n%s", i, goods[i].dump_line, text);
        /* The dump loads back to the same dump. */
        struct tdm_config *again = load_ok(text);
        char *text2 = dump(again);
        assert_string_equal(text, text2);
        free(text);
        free(text2);
        tdm_config_free(&cfg);
        tdm_config_free(&again);
        assert_null(cfg);
    }
}

static void
test_fields(void **state)
{
    (void)state;
    struct tdm_config *cfg =
        load_ok("server = mbx1\nsite = dc1\ndatadir = /var/lib/tandem/mbx1\n"
                "roles = mailbox, directory\nuser = tandem\n" NET "[network replication]\n"
                "address = ::1\n[listen imap]\nnetwork = replication\nport = 143\n"
                "[listen lmtp]\naddress = 10.1.2.3\nport = 24\n"
                "[directory]\nendpoints = 127.0.0.10:8443, [fe80::1]:1\ncache_ttl = 1500ms\n"
                "[store]\ngeneration_size = 2M\nidle_close = 2h\ncheckpoint_bytes = 64K\n"
                "checkpoint_interval = 10s\ndisk_reserve = 1G\n[log]\nlevel = warning\n"
                "events = \"/e e\"\n");
    assert_string_equal(cfg->path, FILE_NAME);
    assert_string_equal(cfg->server, "mbx1");
    assert_string_equal(cfg->site, "dc1");
    assert_string_equal(cfg->datadir, "/var/lib/tandem/mbx1");
    assert_int_equal(cfg->roles, TDM_ROLE_MAILBOX | TDM_ROLE_DIRECTORY);
    assert_string_equal(cfg->user, "tandem");
    assert_int_equal(cfg->n_networks, 2);
    assert_string_equal(cfg->networks[0].name, "public");
    assert_int_equal(cfg->networks[0].address.family, AF_INET);
    assert_string_equal(cfg->networks[0].address.text, "127.0.1.1");
    assert_int_equal(cfg->networks[0].line, 6);
    assert_int_equal(cfg->networks[1].address.family, AF_INET6);
    assert_int_equal(cfg->networks[1].address.bytes[15], 1);
    assert_int_equal(cfg->n_listeners, 2);
    assert_int_equal(cfg->listeners[0].proto, TDM_PROTO_IMAP);
    assert_string_equal(cfg->listeners[0].network, "replication");
    assert_string_equal(cfg->listeners[0].address.text, "::1"); /* from the network */
    assert_int_equal(cfg->listeners[0].port, 143);
    assert_int_equal(cfg->listeners[0].line, 10);
    assert_int_equal(cfg->listeners[1].proto, TDM_PROTO_LMTP);
    assert_string_equal(cfg->listeners[1].network, "");
    assert_string_equal(cfg->listeners[1].address.text, "10.1.2.3");
    assert_int_equal(cfg->directory.n_endpoints, 2);
    assert_int_equal(cfg->directory.endpoints[1].address.family, AF_INET6);
    assert_int_equal(cfg->directory.endpoints[1].port, 1);
    assert_int_equal(cfg->directory.cache_ttl_ms, 1500);
    assert_int_equal(cfg->store.generation_size, 2u << 20);
    assert_int_equal(cfg->store.idle_close_ms, 2 * 3600 * 1000);
    assert_int_equal(cfg->store.checkpoint_bytes, 64 * 1024);
    assert_int_equal(cfg->store.checkpoint_interval_ms, 10000);
    assert_int_equal(cfg->store.disk_reserve, 1u << 30);
    assert_int_equal(cfg->log.level, LOG_LEVEL_WARN);
    assert_string_equal(cfg->log.events, "/e e");
    tdm_config_free(&cfg);
    assert_null(cfg);
    tdm_config_free(&cfg); /* NULL is fine */

    cfg = load_ok(BASE "[cms mail1]\ndatabases = db1, db2\naddress = 127.0.1.100\n"
                       "[cms mail2]\naddress = ::2\ndatabases = db3\nmount_dial = lossless\n"
                       "replication = sync\nsync_timeout = 500ms\n");
    assert_int_equal(cfg->n_cms, 2);
    assert_string_equal(cfg->cms[0].name, "mail1");
    assert_int_equal(cfg->cms[0].line, 9);
    assert_string_equal(cfg->cms[0].address.text, "127.0.1.100");
    assert_int_equal(cfg->cms[0].n_databases, 2);
    assert_string_equal(cfg->cms[0].databases[1], "db2");
    assert_int_equal(cfg->cms[0].mount_dial, TDM_MOUNT_DIAL_GOOD); /* the default */
    assert_int_equal(cfg->cms[1].address.family, AF_INET6);
    assert_int_equal(cfg->cms[1].mount_dial, TDM_MOUNT_DIAL_LOSSLESS);
    assert_int_equal(cfg->cms[0].replication, TDM_CMS_REPL_DIRECTORY); /* the default */
    assert_int_equal(cfg->cms[0].sync_timeout_ms, 2000);
    assert_int_equal(cfg->cms[1].replication, TDM_CMS_REPL_SYNC);
    assert_int_equal(cfg->cms[1].sync_timeout_ms, 500);
    assert_string_equal(tdm_config_mount_dial_name(TDM_MOUNT_DIAL_BEST), "best");
    assert_null(tdm_config_mount_dial_name(3));
    char *d = dump(cfg);
    assert_non_null(strstr(d, "\n[cms mail1]\ndatabases = db1, db2\naddress = 127.0.1.100\n"
                              "mount_dial = good\n"));
    struct tdm_config *again = load_ok(d);
    assert_int_equal(again->n_cms, 2);
    assert_string_equal(again->cms[1].databases[0], "db3");
    assert_int_equal(again->cms[1].replication, TDM_CMS_REPL_SYNC);
    assert_int_equal(again->cms[1].sync_timeout_ms, 500);
    free(d);
    tdm_config_free(&again);
    tdm_config_free(&cfg);

    /* A cluster node: [cluster] with its defaults, [member]s with their networks in order. */
    cfg = load_ok(BASE CLNET CLUSTER MB2 WIT);
    assert_string_equal(cfg->cluster.name, "ccr1");
    assert_string_equal(cfg->cluster.witness, "wit1");
    assert_int_equal(cfg->cluster.heartbeat_interval_ms, 1000);
    assert_int_equal(cfg->cluster.heartbeat_misses, 5);
    assert_int_equal(cfg->cluster.lease_ttl_ms, 4000);
    assert_int_equal(cfg->n_members, 2);
    assert_string_equal(cfg->members[0].name, "mb2");
    assert_int_equal(cfg->members[0].n_nets, 2);
    assert_string_equal(cfg->members[0].nets[1].network, "public");
    assert_string_equal(cfg->members[0].nets[1].endpoint.address.text, "127.0.1.12");
    assert_int_equal(cfg->members[0].nets[1].endpoint.port, 7434);
    assert_int_equal(cfg->members[0].coord_line, 0);
    assert_int_equal(cfg->members[1].coord.port, 7435);
    assert_int_equal(cfg->members[1].coord_line, 22);
    assert_int_equal(cfg->listeners[0].proto, TDM_PROTO_CLUSTER);
    d = dump(cfg);
    assert_non_null(strstr(d, "\n[cluster]\nname = ccr1\nwitness = wit1\nheartbeat_interval = 1s\n"
                              "heartbeat_misses = 5\nlease_ttl = 4s\n"));
    assert_non_null(strstr(d, "\n[member mb2]\nheartbeat = 127.0.3.12:7434\npublic = "
                              "127.0.1.12:7434\n"));
    assert_non_null(strstr(d, "\n[member wit1]\nheartbeat = 127.0.3.20:7434\ncoord = "
                              "127.0.3.20:7435\n"));
    again = load_ok(d);
    assert_int_equal(again->n_members, 2);
    assert_int_equal(again->members[1].coord.port, 7435);
    free(d);
    tdm_config_free(&again);
    tdm_config_free(&cfg);
    cfg = load_ok(BASE CLNET "[cluster]\nname = c\nwitness = wit1\nheartbeat_interval = 100ms\n"
                  "heartbeat_misses = 60\nlease_ttl = 1s\n" MB2 WIT);
    assert_int_equal(cfg->cluster.heartbeat_interval_ms, 100);
    assert_int_equal(cfg->cluster.heartbeat_misses, 60);
    assert_int_equal(cfg->cluster.lease_ttl_ms, 1000);
    assert_int_equal(cfg->cluster.transports.n, 0);
    tdm_config_free(&cfg);
    /* The site's transports, asked to resubmit after a failover: admin endpoints in order. */
    cfg = load_ok(BASE CLNET "[cluster]\nname = c\nwitness = wit1\n"
                  "transports = 127.0.1.30:8443, [::1]:8444\n" MB2 WIT);
    assert_int_equal(cfg->cluster.transports.n, 2);
    assert_string_equal(cfg->cluster.transports.items[0].address.text, "127.0.1.30");
    assert_int_equal(cfg->cluster.transports.items[1].port, 8444);
    d = dump(cfg);
    assert_non_null(strstr(d, "\ntransports = 127.0.1.30:8443, [::1]:8444\n"));
    free(d);
    tdm_config_free(&cfg);
    /* A witness answers heartbeats without a [cluster] of its own. */
    cfg = load_ok("server = wit1\nsite = dc1\ndatadir = /d\nroles = witness\n" NET DIR CLNET);
    assert_string_equal(cfg->cluster.name, "");
    assert_int_equal(cfg->n_members, 0);
    tdm_config_free(&cfg);

    cfg = load_ok("server = d\nsite = s\ndatadir = /d\nroles = directory\n" NET);
    assert_int_equal(cfg->directory.n_endpoints, 0);
    assert_int_equal(cfg->directory.cache_ttl_ms, 600000);
    assert_string_equal(cfg->user, "");
    assert_string_equal(cfg->log.events, "/d/events.log"); /* the default: beside the data */
    assert_null(cfg->tls.certificate); /* NULL: the local CA's files */
    assert_null(cfg->tls.key);
    assert_null(cfg->tls.ca);
    assert_int_equal(cfg->log.level, LOG_LEVEL_INFO);
    tdm_config_free(&cfg);
}

static void
test_names(void **state)
{
    (void)state;
    assert_string_equal(tdm_config_role_name(TDM_ROLE_WITNESS), "witness");
    assert_null(tdm_config_role_name(TDM_ROLE_MAILBOX | TDM_ROLE_ACCESS));
    assert_string_equal(tdm_config_proto_name(TDM_PROTO_SUBMISSION), "submission");
    assert_string_equal(tdm_config_proto_name(TDM_PROTO_REPLICATION), "replication");
    assert_string_equal(tdm_config_proto_name(TDM_PROTO_CLUSTER), "cluster");
    assert_null(tdm_config_proto_name(TDM_PROTO_COUNT));
}

/* ---- mistakes: each names the file, the line and the key (or section) --------------------- */

struct bad {
    const char *text;
    unsigned line;    /* 0: an error about the whole file, which has no line */
    const char *key;  /* NULL: the message names a section instead */
    const char *what; /* a fragment the message must hold */
    int ret;
};

#define E TDM_EINVAL
#define L TDM_ELIMIT
static const struct bad bads[] = {
    /* name */
    {"server = MBX1\nsite = dc1\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server",
     "\"MBX1\" is not a name", E},
    {"server = -a\nsite = dc1\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server", "not a name",
     E},
    {"server = a-\nsite = dc1\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server", "not a name",
     E},
    {"server =\nsite = dc1\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server", "\"\" is not",
     E},
    {"server = a.b\nsite = dc1\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server", "not a name",
     E},
    {"server = abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd\nsite = dc1\n"
     "datadir = /d\nroles = mailbox\n" NET DIR,
     1, "server", "1 to 63", E},
    {"server = a\nsite = d c\ndatadir = /d\nroles = mailbox\n" NET DIR, 2, "site", "not a name", E},
    /* user */
    {TOP "user = 1abc\n" NET DIR, 5, "user", "not a user name", E},
    {TOP "user = Tandem\n" NET DIR, 5, "user", "not a user name", E},
    {TOP "user = abcdefghijabcdefghijabcdefghijabc\n" NET DIR, 5, "user", "at most 32", E},
    /* path */
    {"server = a\nsite = b\ndatadir = var/lib\nroles = mailbox\n" NET DIR, 3, "datadir",
     "not an absolute path", E},
    {BASE "[log]\nevents = \"\"\n", 10, "events", "not an absolute path", E},
    /* [tls] */
    {BASE "[tls]\ncertificate = /c.pem\n", 10, "certificate", "without \"key\"", E},
    {BASE "[tls]\nkey = /k.pem\nca = /a.pem\n", 10, "key", "without \"certificate\"", E},
    {BASE "[tls]\nca = relative.pem\n", 10, "ca", "not an absolute path", E},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5\nkey_file = server.key\n", 9, "key_file",
     "not an absolute path", E},
    {BASE "[tls]\ncertificate = /c\nkey = /k\ncertificate = /d\n", 12, "certificate",
     "duplicate in [tls] (first at line 10)", E},
    {BASE "[tls]\ncert = /c\n", 10, "cert", "unknown key in [tls] (known: certificate, key, ca)",
     E},
    {BASE "[tls]\nca = /a\n[tls]\n", 11, NULL, "section [tls]: duplicate (first at line 9)", E},
    {BASE "[tls x]\n", 9, NULL, "[tls] takes no name", E},
    /* [imap] */
    {BASE "[imap]\nmax_per_address = 0\n", 10, "max_per_address", "out of range", E},
    {BASE "[imap]\nmax_logins = 3\n", 10, "max_logins", "unknown key in [imap]", E},
    {BASE "[imap]\nidle_keepalive = 30m\n", 10, "idle_keepalive", "out of range 0s..29m", E},
    {BASE "[imap]\nidle_keepalive = 2\n", 10, "idle_keepalive", "needs a unit", E},
    {BASE "[replication]\nsilence_timeout = 5s\n", 10, "silence_timeout", "out of range 6s..1h", E},
    /* [smtp] */
    {BASE "[smtp]\ndomains = example.test, -bad.test\n", 10, "domains", "is not a domain name", E},
    {BASE "[smtp]\ndomains = a..b\n", 10, "domains", "is not a domain name", E},
    {BASE "[smtp]\ndomains = a.test, A.test\n", 10, "domains", "listed twice", E},
    {BASE "[smtp]\nmax_message_size = 41M\n", 10, "max_message_size", "out of range", E},
    {BASE "[smtp]\nmax_recipients = 99\n", 10, "max_recipients", "out of range", E},
    {BASE "[listen smtp]\nnetwork = public\nport = 25\n[smtp]\ndomains = a.test\n", 9, NULL,
     "add \"transport\" to roles", E},
    {"server = t\nsite = dc1\ndatadir = /d\nroles = transport\n" NET DIR
     "[listen smtp]\nnetwork = public\nport = 25\n",
     9, NULL, "needs [smtp] \"domains\"", E},
    {"server = t\nsite = dc1\ndatadir = /d\nroles = transport\n" NET DIR
     "[listen replication]\nnetwork = public\nport = 7000\n",
     9, NULL, "add \"mailbox\" or \"directory\" to roles", E},
    {BASE "[listen coord]\nnetwork = public\nport = 7435\n", 9, NULL,
     "only a witness serves the coordination store; add \"witness\" to roles", E},
    /* roles: list of enum */
    {"server = a\nsite = b\ndatadir = /d\nroles = mailbox, mail\n" NET DIR, 4, "roles",
     "\"mail\" is not one of: mailbox, access, transport, witness, directory", E},
    {"server = a\nsite = b\ndatadir = /d\nroles = mailbox, mailbox\n" NET DIR, 4, "roles",
     "listed twice", E},
    {"server = a\nsite = b\ndatadir = /d\nroles = mailbox,,witness\n" NET DIR, 4, "roles",
     "empty item", E},
    {"server = a\nsite = b\ndatadir = /d\nroles =\n" NET DIR, 4, "roles", "empty item", E},
    /* address */
    {TOP "[network public]\naddress = 127.0.1\n" DIR, 6, "address",
     "\"127.0.1\" is not an IPv4 or IPv6 address literal", E},
    {TOP "[network public]\naddress = localhost\n" DIR, 6, "address", "not an IPv4", E},
    {TOP "[network public]\naddress = fe80::1%eth0\n" DIR, 6, "address", "not an IPv4", E},
    /* int */
    {BASE "[listen imap]\nnetwork = public\nport = 0\n", 11, "port",
     "number 0 is out of range 1..65535", E},
    {BASE "[listen imap]\nnetwork = public\nport = 65536\n", 11, "port", "out of range", E},
    {BASE "[listen imap]\nnetwork = public\nport = -1\n", 11, "port", "is not a number", E},
    {BASE "[listen imap]\nnetwork = public\nport = 0x10\n", 11, "port", "is not a number", E},
    {BASE "[listen imap]\nnetwork = public\nport = 99999999999999999999999\n", 11, "port",
     "out of range", E},
    /* size */
    {BASE "[store]\ngeneration_size = 1000\n", 10, "generation_size",
     "size 1000 must be a multiple of 4096 between 64K and 1G", E},
    {BASE "[store]\ngeneration_size = 60K\n", 10, "generation_size", "between 64K and 1G", E},
    {BASE "[store]\ngeneration_size = 2G\n", 10, "generation_size", "between 64K and 1G", E},
    {BASE "[store]\ngeneration_size = 1m\n", 10, "generation_size", "is not a size", E},
    {BASE "[store]\ngeneration_size = 1 M\n", 10, "generation_size", "is not a size", E},
    {BASE "[store]\ngeneration_size = M\n", 10, "generation_size", "is not a size", E},
    {BASE "[store]\ndisk_reserve = 18446744073709551615G\n", 10, "disk_reserve", "out of range", E},
    {BASE "[store]\ncheckpoint_bytes = 5G\n", 10, "checkpoint_bytes", "out of range 64K..4G", E},
    /* duration */
    {BASE "[store]\nidle_close = 90\n", 10, "idle_close", "needs a unit", E},
    {BASE "[store]\nidle_close = 2d\n", 10, "idle_close", "out of range 0s..1d", E},
    {BASE "[store]\nidle_close = 1w\n", 10, "idle_close", "is not a duration", E},
    {BASE "[store]\ncheckpoint_interval = 999ms\n", 10, "checkpoint_interval",
     "out of range 1s..1h", E},
    {BASE "[store]\ncheckpoint_interval = 99999999999999999d\n", 10, "checkpoint_interval",
     "out of range", E},
    {BASE "[directory]\n", 9, NULL, "duplicate (first at line 7)", E},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5\ncache_ttl = 8d\n", 9, "cache_ttl",
     "out of range 1s..7d", E},
    /* enum */
    {BASE "[log]\nlevel = warn\n", 10, "level",
     "\"warn\" is not one of: debug, info, warning, error", E},
    /* endpoints */
    {TOP NET "[directory]\nendpoints = 127.0.0.10\n", 8, "endpoints", "is not address:port", E},
    {TOP NET "[directory]\nendpoints = 127.0.0.10:0\n", 8, "endpoints", "not address:port", E},
    {TOP NET "[directory]\nendpoints = ::1:80\n", 8, "endpoints", "IPv6 goes in []", E},
    {TOP NET "[directory]\nendpoints = [127.0.0.1]:80\n", 8, "endpoints", "IPv6 goes in []", E},
    {TOP NET "[directory]\nendpoints = dir.example:80\n", 8, "endpoints", "not an address", E},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5, 1.2.3.4:5\n", 8, "endpoints", "listed twice", E},
    {TOP NET "[directory]\nendpoints = 1.2.3.4:5,\n", 8, "endpoints", "empty item", E},
    {TOP NET "[directory]\nendpoints = 1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,"
             "1.1.1.1:6,1.1.1.1:7,1.1.1.1:8,1.1.1.1:9,1.1.1.1:10,1.1.1.1:11,1.1.1.1:12,1.1.1.1:13,"
             "1.1.1.1:14,1.1.1.1:15,1.1.1.1:16,1.1.1.1:17\n",
     8, "endpoints", "more than 16 items", E},
    /* unknown keys and sections */
    {BASE "[listen imap]\nnetwork = public\nprot = 143\n", 11, "prot",
     "unknown key in [listen imap] (known: network, address, port)", E},
    {"servr = a\n" BASE, 1, "servr",
     "unknown key at the top of the file (known: server, site, datadir, roles, user)", E},
    {BASE "port = 1\n", 9, "port", "unknown key in [directory] (known: endpoints, cache_ttl, key_file)", E},
    {BASE "[listener imap]\n", 9, NULL, "[listener]: unknown section (known: network, listen,", E},
    {BASE "[listen pop3]\nport = 110\n", 9, NULL, "[listen pop3]: unknown protocol", E},
    {BASE "[network]\n", 9, NULL, "[network]: needs a name", E},
    {BASE "[network Public]\naddress = 1.1.1.1\n", 9, NULL, "\"Public\" is not a name", E},
    {BASE "[store main]\n", 9, NULL, "[store main]: [store] takes no name", E},
    /* duplicates */
    {"server = a\nserver = b\nsite = b\ndatadir = /d\nroles = mailbox\n" NET DIR, 2, "server",
     "duplicate at the top of the file (first at line 1)", E},
    {BASE "[store]\nidle_close = 1s\nidle_close = 2s\n", 11, "idle_close",
     "duplicate in [store] (first at line 10)", E},
    {BASE "[network public]\naddress = 1.1.1.1\n", 9, NULL,
     "section [network public]: duplicate (first at line 5)", E},
    {BASE "[listen imap]\nnetwork = public\nport = 1\n[listen imap]\n", 12, NULL,
     "[listen imap]: duplicate (first at line 9)", E},
    /* missing required */
    {"site = b\ndatadir = /d\nroles = mailbox\n" NET DIR, 1, "server",
     "missing at the top of the file (required)", E},
    {"server = a\nsite = b\ndatadir = /d\n" NET DIR, 1, "roles", "missing at the top", E},
    {"server = a\nsite = b\nroles = mailbox\n", 1, "datadir", "missing at the top", E},
    {TOP "[network public]\n" DIR, 5, "address", "missing in [network public] (required)", E},
    {BASE "[listen imap]\nnetwork = public\n", 9, "port", "missing in [listen imap]", E},
    {BASE "[listen imap]\nport = 143\n", 9, "network", "missing in [listen imap] (give", E},
    {BASE "[listen imap]\nnetwork = public\naddress = 1.2.3.4\nport = 1\n", 11, "address",
     "has both \"network\" and \"address\"", E},
    {TOP NET "[directory]\ncache_ttl = 1m\n", 7, "endpoints", "missing in [directory]", E},
    {TOP DIR, 0, NULL, "no [network <name>] section: at least one is required", E},
    {"", 1, "server", "missing at the top of the file", E},
    /* cross-references */
    {TOP NET, 4, "roles", "without the directory role this server needs a [directory]", E},
    {BASE "[listen imap]\nnetwork = pubic\nport = 143\n", 10, "network",
     "network \"pubic\" is not defined (defined: public)", E},
    {BASE "[listen imap]\nnetwork = public\nport = 143\n[listen lmtp]\naddress = 127.0.1.1\n"
          "port = 143\n",
     14, "port", "127.0.1.1 port 143 is already used by [listen imap] (line 9)", E},
    {BASE "[listen imap]\naddress = 0.0.0.0\nport = 143\n[listen lmtp]\nnetwork = public\n"
          "port = 143\n",
     14, "port", "already used by [listen imap]", E},
    {BASE "[network other]\naddress = 127.0.1.1\n", 10, "address",
     "127.0.1.1 is also the address of [network public] (line 5)", E},
    /* [cms] */
    {BASE "[cms mail1]\naddress = 127.0.1.100\n", 9, "databases", "missing in [cms mail1]", E},
    {BASE "[cms mail1]\ndatabases = db1\n", 9, "address", "missing in [cms mail1]", E},
    {BASE "[cms Mail1]\n", 9, NULL, "section [cms Mail1]: \"Mail1\" is not a name", E},
    {BASE "[cms m]\ndatabases = db1, db1\naddress = 127.0.1.100\n", 10, "databases",
     "database \"db1\" is listed twice", E},
    {BASE "[cms m]\ndatabases = db1\naddress = 127.0.1.100\nmount_dial = best-effort\n", 12,
     "mount_dial", "is not one of: lossless, good, best", E},
    {BASE "[cms m]\ndatabases = db1\naddress = 127.0.1.100\nreplication = async\n", 12,
     "replication", "is not one of: directory, block, file, sync", E},
    {BASE "[cms m]\ndatabases = db1\naddress = 127.0.1.100\nsync_timeout = 50ms\n", 12,
     "sync_timeout", "out of range 100ms..10m", E},
    {BASE "[cms m]\ndatabases = db1\naddress = 127.0.1.1\n", 11, "address",
     "127.0.1.1 is the address of [network public] (line 5); a CMS needs an address of its own",
     E},
    {BASE "[listen imap]\naddress = 127.0.1.7\nport = 143\n[cms m]\ndatabases = db1\n"
          "address = 127.0.1.7\n",
     14, "address", "is the address of [listen imap] (line 9)", E},
    {BASE "[cms m]\ndatabases = db1\naddress = 127.0.1.100\n[cms n]\ndatabases = db2\n"
          "address = 127.0.1.100\n",
     14, "address", "127.0.1.100 is also the address of [cms m] (line 9)", E},
    {BASE "[cms m]\ndatabases = db1, db2\naddress = 127.0.1.100\n[cms n]\ndatabases = db2\n"
          "address = 127.0.1.101\n",
     13, "databases", "database \"db2\" also belongs to [cms m] (line 9)", E},
    {"server = t\nsite = dc1\ndatadir = /d\nroles = transport\n" NET DIR
     "[cms m]\ndatabases = db1\naddress = 127.0.1.100\n", 9, NULL,
     "section [cms m]: a CMS's databases are mailbox databases", E},
    /* [listen cluster], [cluster], [member] */
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nheartbeat_interval = 50ms\n" MB2 WIT, 17,
     "heartbeat_interval", "50ms", E},
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nheartbeat_interval = 11s\n" MB2 WIT, 17,
     "heartbeat_interval", "11s", E},
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nheartbeat_misses = 1\n" MB2 WIT, 17,
     "heartbeat_misses", "1", E},
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nlease_ttl = 61s\n" MB2 WIT, 17,
     "lease_ttl", "61s", E},
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nlease_ttl = 2s\n" MB2 WIT, 17, "lease_ttl",
     "2000 ms is not more than twice heartbeat_interval (1000 ms)", E},
    {BASE CLNET "[cluster]\nname = c\nwitness = wit1\nheartbeat_interval = 3s\n" MB2 WIT, 14,
     "lease_ttl", "4000 ms is not more than twice heartbeat_interval (3000 ms)", E},
    {BASE CLNET "[cluster]\nwitness = wit1\n" MB2 WIT, 14, "name", "missing in [cluster]", E},
    {BASE CLNET CLUSTER MB2 WIT "[member mb3]\nreplication = 127.0.4.13:7434\n", 24,
     "replication", "network \"replication\" is not one of this server's (defined: public, "
     "heartbeat)", E},
    {BASE CLNET CLUSTER MB2 "[member wit1]\nheartbeat = 127.0.3.20:7434\n", 20, NULL,
     "section [member wit1]: the witness needs \"coord\"", E},
    {BASE CLNET CLUSTER "[member mb2]\nheartbeat = 127.0.3.12:7434\ncoord = 127.0.3.12:7435\n" WIT,
     19, "coord", "only the witness ([cluster] witness = wit1) has one; [member mb2] is a node",
     E},
    {BASE CLNET CLUSTER MB2, 16, "witness", "no [member wit1] section", E},
    {BASE CLNET CLUSTER WIT, 14, NULL, "section [cluster]: no other node", E},
    {BASE "[member mb2]\npublic = 127.0.1.12:7434\n", 9, NULL,
     "section [member mb2]: members belong to a cluster", E},
    {BASE "[network heartbeat]\naddress = 127.0.3.11\n" CLUSTER MB2 WIT, 11, NULL,
     "section [cluster]: a node answers heartbeats; add [listen cluster]", E},
    {BASE CLNET CLUSTER MB2 WIT "[member mb3]\n", 23, NULL, "section [member mb3]: names no network",
     E},
    {BASE CLNET CLUSTER MB2 WIT "[member mb3]\npublic = 127.0.1.13:7434\npublic = 127.0.1.14:1\n",
     25, "public", "duplicate in [member mb3] (first at line 24)", E},
    {BASE CLNET CLUSTER MB2 WIT "[member mb3]\npublic = 127.0.1.13\n", 24, "public", "", E},
    {BASE CLNET CLUSTER MB2 WIT "[member mbx1]\npublic = 127.0.1.13:7434\n", 23, NULL,
     "section [member mbx1]: that is this server", E},
    {BASE CLNET CLUSTER MB2 WIT "[member Mb3]\n", 23, NULL, "section [member Mb3]: \"Mb3\" is not a name",
     E},
    {"server = w\nsite = dc1\ndatadir = /d\nroles = witness\n" NET DIR CLNET CLUSTER MB2 WIT, 14,
     NULL, "section [cluster]: only a mailbox server is a cluster node", E},
    {"server = t\nsite = dc1\ndatadir = /d\nroles = transport\n" NET DIR
     "[listen cluster]\nnetwork = public\nport = 7434\n", 9, NULL,
     "section [listen cluster]: only cluster members answer heartbeats", E},
    /* syntax */
    {BASE "[log]\nlevel info\n", 10, "level", "expected '=' after the key", E},
    {BASE "[log]\nLevel = info\n", 10, NULL, "found \"Level\"", E},
    {BASE "[log]\n= info\n", 10, NULL, "expected \"key = value\" or \"[section]\"", E},
    {BASE "[log\n", 9, NULL, "section header [log: missing ']'", E},
    {BASE "[log] x\n", 9, NULL, "unexpected text after ']'", E},
    {BASE "[]\n", 9, NULL, "expected a section type", E},
    {BASE "[listen im/ap]\n", 9, NULL, "unexpected '/'", E},
    {BASE "[log]\nevents = \"/a\n", 10, "events", "unterminated quoted value", E},
    {BASE "[log]\nevents = \"/a\\n\"\n", 10, "events", "unknown escape", E},
    {BASE "[log]\nevents = \"/a\" b\n", 10, "events", "unexpected text after the closing quote", E},
    {BASE "[log]\nevents = /a\"b\n", 10, "events", "'\"' inside an unquoted value", E},
    {BASE "[log]\nevents = /a\rb\n", 10, NULL, "control character 0x0d at column 12", E},
    {BASE "[log]\nevents = /a\x1b[0m\n", 10, NULL, "control character 0x1b", E},
    {"\xef\xbb\xbf" BASE, 1, NULL, "byte-order mark", E},
};
#undef E
#undef L

static void
check_bad(size_t i, const struct bad *b, const char *text, size_t len)
{
    struct tdm_config *cfg = (struct tdm_config *)1;
    char *error = NULL;
    int r = tdm_config_load_buffer(text, len, FILE_NAME, &cfg, &error);
    assert_null(cfg);
    if (!error)
        fail_msg("case %zu: no message (ret %d)", i, r);
    char prefix[128];
    if (b->line == 0)
        snprintf(prefix, sizeof(prefix), "%s: ", FILE_NAME);
    else if (b->key)
        snprintf(prefix, sizeof(prefix), "%s:%u: key \"%s\": ", FILE_NAME, b->line, b->key);
    else
        snprintf(prefix, sizeof(prefix), "%s:%u: ", FILE_NAME, b->line);
    if (strncmp(error, prefix, strlen(prefix)) != 0 || !strstr(error, b->what) || r != b->ret)
        fail_msg("case %zu: got %d \"%s\"\nwanted %d \"%s...%s\"", i, r, error, b->ret, prefix,
                 b->what);
    free(error);
}

static void
test_bad_values(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++)
        check_bad(i, &bads[i], bads[i].text, strlen(bads[i].text));
}

/* A NUL byte cannot be written in a C string literal case. */
static void
test_nul_byte(void **state)
{
    (void)state;
    static const char text[] = BASE "[log]\nlevel = in\0fo\n";
    struct bad b = {text, 10, NULL, "control character 0x00 at column 11", TDM_EINVAL};
    check_bad(0, &b, text, sizeof(text) - 1);
}

/* ---- limits ----------------------------------------------------------------------------- */

/* BASE followed by count copies of line, malloc'd. */
static char *
repeat(const char *line, size_t count)
{
    size_t base = strlen(BASE), one = strlen(line);
    char *s = malloc(base + one * count + 1);
    assert_non_null(s);
    memcpy(s, BASE, base);
    for (size_t i = 0; i < count; i++)
        memcpy(s + base + i * one, line, one);
    s[base + one * count] = '\0';
    return s;
}

static void
test_limits(void **state)
{
    (void)state;
    /* A line of exactly CONFIG_MAX_LINE bytes is fine, one more is not (CRLF not counted). */
    char *line = malloc(CONFIG_MAX_LINE + 8);
    assert_non_null(line);
    for (unsigned extra = 0; extra <= 1; extra++) {
        memset(line, ' ', CONFIG_MAX_LINE + extra);
        memcpy(line, "# long", 6);
        strcpy(line + CONFIG_MAX_LINE + extra, "\r\n");
        char *text = repeat(line, 1);
        struct tdm_config *cfg = NULL;
        char *error = NULL;
        int r = load(text, &cfg, &error);
        if (extra == 0) {
            assert_int_equal(r, 0);
            tdm_config_free(&cfg);
        } else {
            struct bad b = {NULL, 9, NULL, "line is 4097 bytes, longer than the limit of 4096",
                            TDM_ELIMIT};
            assert_int_equal(r, TDM_ELIMIT);
            check_bad(0, &b, text, strlen(text));
            free(error);
        }
        free(text);
    }
    free(line);

    /* A file over 1 MiB, even of comments: whole-file error, no line. */
    char *text = repeat("# a comment line that is repeated to make the file big\n", 20000);
    struct bad big = {NULL, 0, NULL, "larger than the limit of 1048576", TDM_ELIMIT};
    check_bad(0, &big, text, strlen(text));
    free(text);

    /* More headers and keys than the parser keeps. */
    text = repeat("[store]\n", CONFIG_MAX_ENTRIES);
    struct bad many = {NULL, 8 + CONFIG_MAX_ENTRIES - 8 + 1, NULL,
                       "more than 4096 section headers and keys", TDM_ELIMIT};
    check_bad(0, &many, text, strlen(text));
    free(text);

    /* More sections of one kind than the config holds. */
    size_t len = 0;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, &len);
    fputs(BASE, f);
    for (int i = 0; i < TDM_CONFIG_MAX_NETWORKS; i++)
        fprintf(f, "[network n%d]\naddress = 10.0.0.%d\n", i, i);
    fclose(f);
    struct bad nets = {NULL, 9 + 2 * (TDM_CONFIG_MAX_NETWORKS - 1), NULL,
                       "more than 16 [network] sections", TDM_ELIMIT};
    check_bad(0, &nets, buf, len);
    free(buf);
}

/* ---- files ------------------------------------------------------------------------------ */

static const char *const examples[] = {"etc/mailbox.conf", "etc/directory.conf",
                                       "etc/witness.conf", "etc/transport.conf"};

static struct tdm_config *
load_example(const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", TANDEM_SOURCE_DIR, name);
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    int r = tdm_config_load_file(path, &cfg, &error);
    if (r != 0)
        fail_msg("%s does not load: %s", path, error);
    assert_string_equal(cfg->path, path);
    return cfg;
}

static void
test_examples(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
        struct tdm_config *cfg = load_example(examples[i]);
        char *text = dump(cfg);
        struct tdm_config *again = load_ok(text);
        char *text2 = dump(again);
        /* The first line names the file, the rest must match. */
        assert_string_equal(strchr(text, '\n'), strchr(text2, '\n'));
        free(text);
        free(text2);
        tdm_config_free(&again);
        tdm_config_free(&cfg);
    }
    struct tdm_config *cfg = load_example("etc/mailbox.conf");
    assert_int_equal(cfg->roles, TDM_ROLE_MAILBOX);
    assert_int_equal(cfg->n_networks, 3);
    assert_int_equal(cfg->n_listeners, 5);
    assert_int_equal(cfg->listeners[3].proto, TDM_PROTO_REPLICATION);
    assert_string_equal(cfg->listeners[3].address.text, "127.0.2.1");
    assert_int_equal(cfg->listeners[4].proto, TDM_PROTO_CLUSTER);
    assert_int_equal(cfg->directory.n_endpoints, 2);
    assert_string_equal(cfg->cluster.name, "ccr1");
    assert_int_equal(cfg->n_members, 2);
    assert_int_equal(cfg->members[1].coord.port, 7435);
    tdm_config_free(&cfg);
    cfg = load_example("etc/directory.conf");
    assert_int_equal(cfg->roles, TDM_ROLE_DIRECTORY);
    tdm_config_free(&cfg);
    cfg = load_example("etc/witness.conf");
    assert_int_equal(cfg->roles, TDM_ROLE_WITNESS);
    assert_int_equal(cfg->log.level, LOG_LEVEL_WARN);
    assert_int_equal(cfg->listeners[0].proto, TDM_PROTO_CLUSTER);
    assert_int_equal(cfg->listeners[1].proto, TDM_PROTO_COORD);
    assert_int_equal(cfg->listeners[1].port, 7435);
    tdm_config_free(&cfg);
}

static void
test_load_file_errors(void **state)
{
    (void)state;
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    assert_int_equal(tdm_config_load_file("/nonexistent/tandemd.conf", &cfg, &error), -ENOENT);
    assert_null(cfg);
    assert_string_equal(error, "/nonexistent/tandemd.conf: cannot open: No such file or directory");
    free(error);
    assert_int_equal(tdm_config_load_file(TANDEM_SOURCE_DIR "/etc", &cfg, &error), -EISDIR);
    assert_non_null(strstr(error, "/etc: cannot read: Is a directory"));
    free(error);
}

/*
 * The parser takes a whole buffer, so the sans-IO "split at every offset" test becomes: every
 * prefix of a valid file, LF and CRLF, either loads or fails with a message, never crashes.
 */
static void
test_every_prefix(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/etc/mailbox.conf", TANDEM_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char lf[8192], crlf[16384];
    size_t n = fread(lf, 1, sizeof(lf), f), m = 0;
    fclose(f);
    assert_true(n > 0 && n < sizeof(lf));
    for (size_t i = 0; i < n; i++) {
        if (lf[i] == '\n')
            crlf[m++] = '\r';
        crlf[m++] = lf[i];
    }
    const char *texts[] = {lf, crlf};
    size_t lens[] = {n, m};
    unsigned loaded = 0;
    for (int t = 0; t < 2; t++) {
        for (size_t len = 0; len <= lens[t]; len++) {
            /* An exact-size copy, so ASan sees any read past the end. */
            char *copy = malloc(len ? len : 1);
            memcpy(copy, texts[t], len);
            struct tdm_config *cfg = NULL;
            char *error = NULL;
            int r = tdm_config_load_buffer(copy, len, FILE_NAME, &cfg, &error);
            if (r == 0) {
                assert_null(error);
                loaded++;
                tdm_config_free(&cfg);
            } else {
                assert_null(cfg);
                assert_non_null(error);
                assert_int_equal(strncmp(error, FILE_NAME ":", strlen(FILE_NAME) + 1), 0);
                free(error);
            }
            free(copy);
        }
    }
    assert_true(loaded >= 2); /* at least the whole files */
}

static void
test_parser_entries(void **state)
{
    (void)state;
    static const char text[] = "a = 1\n[x]\n[y z]\nb = \" q \"\nc =\n";
    struct config_parsed *p = NULL;
    char *error = NULL;
    assert_int_equal(config_parse(text, sizeof(text) - 1, "f", &p, &error), 0);
    assert_null(error);
    assert_int_equal(p->count, 5);
    static const struct {
        const char *section, *name, *key, *value;
        unsigned line;
    } want[] = {{"", "", "a", "1", 1},
                {"x", "", NULL, NULL, 2},
                {"y", "z", NULL, NULL, 3},
                {"y", "z", "b", " q ", 4},
                {"y", "z", "c", "", 5}};
    for (size_t i = 0; i < 5; i++) {
        const struct config_entry *e = &p->entries[i];
        assert_string_equal(e->section, want[i].section);
        assert_string_equal(e->name, want[i].name);
        if (want[i].key) {
            assert_string_equal(e->key, want[i].key);
            assert_string_equal(e->value, want[i].value);
        } else {
            assert_null(e->key);
            assert_null(e->value);
        }
        assert_int_equal(e->line, want[i].line);
    }
    config_parsed_free(&p);
    assert_null(p);
    config_parsed_free(&p);
}

/* A clone lives on when the original is freed, and dumps the same. */
static void
test_clone(void **state)
{
    (void)state;
    struct tdm_config *cfg = load_example("etc/mailbox.conf");
    char *text = dump(cfg);
    struct tdm_config *clone = NULL;
    char *error = NULL;
    assert_int_equal(tdm_config_clone(cfg, &clone, &error), 0);
    assert_null(error);
    tdm_config_free(&cfg);
    char *text2 = dump(clone);
    assert_string_equal(strchr(text, '\n'), strchr(text2, '\n'));
    assert_string_equal(clone->cluster.name, "ccr1");
    assert_int_equal(clone->n_members, 2);
    free(text);
    free(text2);
    tdm_config_free(&clone);
}

/* [cms] with an interface (docs/cluster.md, "CMS address"): the address with its prefix
 * length, the interface's name, both back from the dump; and what is refused, with why. */
static void
test_cms_interface(void **state)
{
    (void)state;
    struct tdm_config *cfg =
        load_ok(BASE "[cms m]\ndatabases = db1\naddress = 198.18.1.10/24\ninterface = eth0.7\n"
                     "[cms n]\ndatabases = db2\naddress = 198.18.1.11\ninterface = lan_0-b\n"
                     "[cms o]\ndatabases = db3\naddress = 127.0.1.100\n");
    assert_string_equal(cfg->cms[0].address.text, "198.18.1.10");
    assert_int_equal(cfg->cms[0].prefix_len, 24);
    assert_string_equal(cfg->cms[0].interface, "eth0.7");
    assert_int_equal(cfg->cms[1].prefix_len, 0); /* a host address */
    assert_string_equal(cfg->cms[1].interface, "lan_0-b");
    assert_string_equal(cfg->cms[2].interface, "");
    char *d = dump(cfg);
    assert_non_null(strstr(d, "address = 198.18.1.10/24\ninterface = eth0.7\n"));
    assert_non_null(strstr(d, "address = 198.18.1.11\ninterface = lan_0-b\n"));
    assert_non_null(strstr(d, "address = 127.0.1.100\nmount_dial"));
    struct tdm_config *again = load_ok(d);
    assert_int_equal(again->cms[0].prefix_len, 24);
    assert_string_equal(again->cms[1].interface, "lan_0-b");
    free(d);
    tdm_config_free(&again);
    tdm_config_free(&cfg);

#define CMS9 BASE "[cms m]\ndatabases = db1\n"
    static const struct bad cases[] = {
        {CMS9 "address = 198.18.1.10/24\n", 11, "address",
         "a prefix length (/24) is for an address added to an interface", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10/33\ninterface = eth0\n", 11, "address",
         "prefix length /33 is longer than an IPv4 address", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10/0\ninterface = eth0\n", 11, "address", "", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10/x\ninterface = eth0\n", 11, "address", "", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10\ninterface = eth0/1\n", 12, "interface",
         "letters, digits, '.', '-' and '_' only, not '/'", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10\ninterface = abcdefghijklmnop\n", 12, "interface",
         "an interface name is 1 to 15 characters", TDM_EINVAL},
        {CMS9 "address = 198.18.1.10\ninterface = ..\n", 12, "interface",
         "\"..\" is not an interface name", TDM_EINVAL},
        {CMS9 "address = 2001:db8::10/64\ninterface = eth0\n", 12, "interface",
         "only an IPv4 CMS address can be added to an interface yet", TDM_EINVAL},
    };
#undef CMS9
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_bad(i, &cases[i], cases[i].text, strlen(cases[i].text));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_values),  cmocka_unit_test(test_fields),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_nul_byte),     cmocka_unit_test(test_limits),
        cmocka_unit_test(test_examples),     cmocka_unit_test(test_clone),     cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_every_prefix), cmocka_unit_test(test_parser_entries),
        cmocka_unit_test(test_cms_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

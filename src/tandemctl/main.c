/*
 * tandemctl: the administration tool. A thin dispatcher over per-noun tables (ctl.h): it
 * finds the noun and verb and hands over the rest of the command line.
 */
#include "tandemctl/ctl.h"

#include "lib/err.h"
#include "lib/event.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.1.0"
#endif

static const struct ctl_noun ctl_nouns[] = {
    {"db", "database tools: create, inspect, verify, recover (offline); dismount, mount",
     ctl_db_verbs},
    {"user", "mailbox users: add, list, show, set, remove, password", ctl_user_verbs},
    {"group", "groups of users and servers, and their members", ctl_group_verbs},
    {"acl", "who may do what to an object: show, grant, revoke", ctl_acl_verbs},
    {"site", "sites (datacenters)", ctl_site_verbs},
    {"network", "networks (public, replication, heartbeat...)", ctl_network_verbs},
    {"server", "servers (tandemd instances) and their keys", ctl_server_verbs},
    {"cluster", "clusters of servers in one site", ctl_cluster_verbs},
    {"cms", "clustered mailbox servers", ctl_cms_verbs},
    {"database", "mailbox databases in the directory", ctl_database_verbs},
    {"copy", "this server's copies of databases: add, create, status, suspend, resume, activate, remove",
     ctl_copy_verbs},
    {"dumpster", "a transport server's copies of delivered mail: status, resubmit",
     ctl_dumpster_verbs},
    {"witness", "a witness's coordination store: status", ctl_witness_verbs},
    {"address-list", "address lists (what offline address books hold)", ctl_address_list_verbs},
    {"status", "a server's state and its databases", ctl_status_verbs},
    {"events", "a server's operator events, past and (--follow) live", ctl_events_verbs},
    {"whoami", "who the server takes you for", ctl_whoami_verbs},
};
#define CTL_N_NOUNS (sizeof(ctl_nouns) / sizeof(ctl_nouns[0]))

static const char exit_codes_help[] =
    "Exit status:\n"
    "  0  success\n"
    "  1  verify or recover found corruption, or the database refuses to mount\n"
    "  2  usage error, or a request the server found malformed (an unknown attribute)\n"
    "  3  the directory does not exist or is not a tandem database\n"
    "  4  the database is in use (mounted by another process)\n"
    "  5  I/O or other error\n"
    "  6  refused by the ACL (the message names object, principal and missing right)\n"
    "  7  no such object\n"
    "  8  conflict: the object exists already, changed since it was read, or a member\n"
    "     does not exist\n"
    "  9  cannot reach the server (connect, TLS) or authentication failed\n"
    " 10  the server cannot do it now (no directory there, core unreachable, database\n"
    "     refusing commits); try again later\n";

void
ctl_error(const char *fmt, ...)
{
    va_list ap;
    fputs("tandemctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *
ctl_noun_of(const struct ctl_verb *verb)
{
    for (size_t i = 0; i < CTL_N_NOUNS; i++)
        for (const struct ctl_verb *v = ctl_nouns[i].verbs; v->verb; v++)
            if (v == verb)
                return ctl_nouns[i].noun;
    return "?";
}

int
ctl_usage_error(const struct ctl_verb *verb, const char *fmt, ...)
{
    va_list ap;
    fputs("tandemctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const char *sp = verb->verb[0] ? " " : "";
    fprintf(stderr, "\nusage: tandemctl %s%s%s %s\n(see `tandemctl %s%s%s --help`)\n",
            ctl_noun_of(verb), sp, verb->verb, verb->usage, ctl_noun_of(verb), sp, verb->verb);
    return CTL_EXIT_USAGE;
}

void
ctl_verb_help_with(const struct ctl_verb *verb, const char *options)
{
    printf("usage: tandemctl %s%s%s %s\n\n%s\n", ctl_noun_of(verb), verb->verb[0] ? " " : "",
           verb->verb, verb->usage, verb->summary);
    if (verb->help)
        printf("\n%s", verb->help);
    if (options)
        printf("\n%s", options);
    printf("\n%s", exit_codes_help);
}

void
ctl_verb_help(const struct ctl_verb *verb)
{
    ctl_verb_help_with(verb, NULL);
}

int
ctl_exit_for(int err)
{
    switch (err) {
    case 0:
        return CTL_EXIT_OK;
    case TDM_ECORRUPT:
    case TDM_EGAP:
        return CTL_EXIT_FAILED;
    case -ENOENT:
    case -ENOTDIR:
    case TDM_EFOREIGN:
        return CTL_EXIT_NOT_DB;
    case -EBUSY:
        return CTL_EXIT_BUSY;
    case TDM_EINVAL:
        return CTL_EXIT_USAGE;
    default:
        return CTL_EXIT_ERROR;
    }
}

static void
main_help(FILE *out)
{
    fprintf(out, "usage: tandemctl <noun> <verb> [arguments]\n"
                 "       tandemctl <noun> --help | tandemctl --help | tandemctl --version\n\n"
                 "Nouns:\n");
    for (size_t i = 0; i < CTL_N_NOUNS; i++)
        fprintf(out, "  %-13s %s\n", ctl_nouns[i].noun, ctl_nouns[i].summary);
    fprintf(out,
            "\nEvery noun but db talks to a server's admin API: say where with --socket PATH,\n"
            "--server HOST:PORT --ca FILE --user NAME, or -c <tandemd config> (or TANDEM_SOCKET,\n"
            "TANDEM_SERVER, TANDEM_CA, TANDEM_PASSWORD); `tandemctl user list --help` has more.\n"
            "\ndb: events the libraries emit are printed as \"event: ...\" lines on stderr,\n"
            "or included under \"events\" in --json output.\n\n%s"
            "\nSee docs/tandemctl.md.\n",
            exit_codes_help);
}

static void
noun_help(const struct ctl_noun *n, FILE *out)
{
    fprintf(out, "usage: tandemctl %s <verb> [arguments]\n\n%s\n\nVerbs:\n", n->noun, n->summary);
    for (const struct ctl_verb *v = n->verbs; v->verb; v++)
        fprintf(out, "  %s %s\n      %s\n", v->verb, v->usage, v->summary);
    fprintf(out, "\n`tandemctl %s <verb> --help` says more.\n\n%s", n->noun, exit_codes_help);
}

static bool
is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "help") == 0;
}

int
main(int argc, char **argv)
{
    /* Raw JSON event lines would interleave with the report; handlers that run the store
     * collect events through the hook and print them their own way. */
    event_set_sink(NULL);

    if (argc < 2) {
        ctl_error("no command given");
        main_help(stderr);
        return CTL_EXIT_USAGE;
    }
    if (is_help(argv[1])) {
        main_help(stdout);
        return CTL_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tandemctl %s\n", TANDEM_VERSION);
        return CTL_EXIT_OK;
    }
    const struct ctl_noun *noun = NULL;
    for (size_t i = 0; i < CTL_N_NOUNS; i++)
        if (strcmp(argv[1], ctl_nouns[i].noun) == 0)
            noun = &ctl_nouns[i];
    if (!noun) {
        ctl_error("unknown noun \"%s\" (`tandemctl --help` lists them)", argv[1]);
        return CTL_EXIT_USAGE;
    }
    if (noun->verbs[0].verb[0] == '\0') /* a noun without verbs: the rest are its arguments */
        return noun->verbs[0].run(&noun->verbs[0], argc - 1, argv + 1);
    if (argc < 3) {
        ctl_error("%s: no verb given", noun->noun);
        noun_help(noun, stderr);
        return CTL_EXIT_USAGE;
    }
    if (is_help(argv[2])) {
        noun_help(noun, stdout);
        return CTL_EXIT_OK;
    }
    for (const struct ctl_verb *v = noun->verbs; v->verb; v++)
        if (strcmp(argv[2], v->verb) == 0)
            return v->run(v, argc - 2, argv + 2);
    ctl_error("unknown verb \"%s %s\" (`tandemctl %s --help` lists them)", noun->noun, argv[2],
              noun->noun);
    return CTL_EXIT_USAGE;
}

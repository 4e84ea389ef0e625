#ifndef TANDEM_TANDEMCTL_CTL_H
#define TANDEM_TANDEMCTL_CTL_H

/*
 * tandemctl's command table. Each noun (db, user, group, acl, site, server, cluster, cms,
 * copy, status, events...) lives in its own <noun>_cmd.c that exports a table of verbs,
 * terminated by an entry whose verb is NULL, and is listed once in main.c's ctl_nouns[].
 * main.c parses nothing but the noun and verb (and --help/--version); a handler parses its
 * own options.
 */

#include <stdbool.h>

/* Exit codes: a contract with scripts, listed in --help and docs/tandemctl.md. */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAILED = 1, /* verify/recover found corruption, or the database refuses to mount */
    CTL_EXIT_USAGE = 2,  /* bad command line */
    CTL_EXIT_NOT_DB = 3, /* the directory is missing or is not a tandem database */
    CTL_EXIT_BUSY = 4,   /* the database is mounted by another process */
    CTL_EXIT_ERROR = 5,  /* I/O or any other error */
    /* Verbs that talk to a server (ctl_api.h): */
    CTL_EXIT_FORBIDDEN = 6,    /* the ACL refuses (HTTP 403) */
    CTL_EXIT_NOT_FOUND = 7,    /* no such object (404) */
    CTL_EXIT_CONFLICT = 8,     /* exists already, changed meanwhile, a member is missing (409) */
    CTL_EXIT_UNREACHABLE = 9,  /* cannot connect, TLS failed, or authentication failed (401) */
    CTL_EXIT_UNAVAILABLE = 10, /* the server cannot serve it now: no directory there, core
                                * unreachable, database refusing commits (503); try later */
};

struct ctl_verb;

/* argv[0] is the verb; argv[1..argc-1] its arguments. Returns an enum ctl_exit value. */
typedef int ctl_handler(const struct ctl_verb *verb, int argc, char **argv);

struct ctl_verb {
    const char *verb;
    const char *usage;   /* arguments, e.g. "<dir> [--json]" */
    const char *summary; /* one line for the noun's --help */
    const char *help;    /* more lines for "<noun> <verb> --help"; may be NULL */
    ctl_handler *run;
};

struct ctl_noun {
    const char *noun;
    const char *summary;
    const struct ctl_verb *verbs; /* terminated by {NULL} */
};

/* A noun whose table has one entry with the verb "" takes no verb ("tandemctl status"). */
extern const struct ctl_verb ctl_db_verbs[];
extern const struct ctl_verb ctl_user_verbs[];  /* user_cmd.c */
extern const struct ctl_verb ctl_group_verbs[]; /* group_cmd.c */
extern const struct ctl_verb ctl_acl_verbs[];   /* acl_cmd.c */
extern const struct ctl_verb ctl_site_verbs[];  /* topology_cmd.c */
extern const struct ctl_verb ctl_network_verbs[];
extern const struct ctl_verb ctl_server_verbs[];
extern const struct ctl_verb ctl_cluster_verbs[];
/* cluster_cmd.c: tandemctl cluster status (GET /v1/cluster). */
int ctl_cms_status_run(const struct ctl_verb *verb, int argc, char **argv);
int ctl_cms_move_run(const struct ctl_verb *verb, int argc, char **argv);
int ctl_cluster_status_run(const struct ctl_verb *verb, int argc, char **argv);
extern const struct ctl_verb ctl_cms_verbs[];
extern const struct ctl_verb ctl_database_verbs[];
extern const struct ctl_verb ctl_copy_verbs[]; /* copy_cmd.c */
extern const struct ctl_verb ctl_dumpster_verbs[]; /* dumpster_cmd.c */
extern const struct ctl_verb ctl_witness_verbs[];  /* witness_cmd.c */
extern const struct ctl_verb ctl_address_list_verbs[];
extern const struct ctl_verb ctl_status_verbs[]; /* status_cmd.c */
extern const struct ctl_verb ctl_events_verbs[];
extern const struct ctl_verb ctl_whoami_verbs[];

/* The noun a verb belongs to, for messages ("tandemctl db inspect ..."). */
const char *ctl_noun_of(const struct ctl_verb *verb);

/* "tandemctl: <message>" on stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "tandemctl: <message>" and the verb's usage line on stderr; returns CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl_verb *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints the verb's full help on stdout. */
void ctl_verb_help(const struct ctl_verb *verb);
/* The same with more option lines (may be NULL) between the verb's help and the exit codes. */
void ctl_verb_help_with(const struct ctl_verb *verb, const char *options);

/* The exit code an error from the libraries (0, -errno, TDM_E*) maps to. */
int ctl_exit_for(int err);

#endif

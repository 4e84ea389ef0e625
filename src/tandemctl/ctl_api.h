#ifndef TANDEM_TANDEMCTL_CTL_API_H
#define TANDEM_TANDEMCTL_CTL_API_H

/*
 * What every verb that talks to a server shares: the options that say where the server is
 * and who asks (--socket, --server, --ca, -c, --user, --password-file, --json), turning them
 * into an admin_target (flags, else TANDEM_* environment, else the tandemd config), making a
 * call, and turning an HTTP error into a message and an exit code (ctl.h).
 */

#include "tandemctl/admin_client.h"
#include "tandemctl/ctl.h"

#include <jansson.h>
#include <stdbool.h>

struct ctl_api_opts {
    const char *socket;        /* --socket PATH */
    const char *server;        /* --server HOST:PORT */
    const char *ca;            /* --ca FILE */
    const char *config;        /* -c, --config FILE (tandemd's config: its datadir) */
    const char *user;          /* --user NAME */
    const char *password_file; /* --password-file FILE */
    bool json;                 /* --json */
    bool help;                 /* --help, -h */
};

/* The lines "<noun> <verb> --help" shows for the options above. */
extern const char ctl_api_options_help[];

/*
 * If argv[*i] is one of the common options, takes it (and its value: "--opt VALUE" or
 * "--opt=VALUE"), advancing *i past the value, and returns 1; returns 0 when it is not one;
 * CTL_EXIT_USAGE after printing when its value is missing.
 */
int ctl_api_option(const struct ctl_verb *verb, int argc, char **argv, int *i,
                   struct ctl_api_opts *o);

/*
 * The same for a verb's own option called name ("--display-name"): returns 1 with *val_r
 * (borrowed from argv), 0 when argv[*i] is something else, or CTL_EXIT_USAGE.
 */
int ctl_opt_value(const struct ctl_verb *verb, const char *name, int argc, char **argv, int *i,
                  const char **val_r);

/*
 * Resolves o into *t: where (flags, else TANDEM_SOCKET / TANDEM_SERVER + TANDEM_CA, else -c),
 * and who (--user with the password from --password-file, TANDEM_PASSWORD or a prompt on the
 * terminal). stream: no read timeout (events --follow). Returns 0, or an exit code after
 * printing what is missing and how to give it.
 */
int ctl_api_target(const struct ctl_verb *verb, const struct ctl_api_opts *o, bool stream,
                   struct admin_target *t);

/*
 * Reads a secret: from the terminal without echo (prompt; asked twice when confirm), else one
 * line of standard input when it is not a terminal. Returns an allocated string (the caller
 * wipes and frees it) or NULL after printing why.
 */
char *ctl_read_secret(const char *prompt, bool confirm);

/*
 * The first line of the file at path, without its line ending: a password file. Returns an
 * allocated string (wipe and free it) or NULL after printing why (unreadable, empty, longer
 * than 1024 bytes).
 */
char *ctl_read_secret_file(const char *path);

/*
 * One request. body (may be NULL) is borrowed. On a 2xx answer returns CTL_EXIT_OK with the
 * JSON document in *doc_r (owned; NULL when the body was empty). Otherwise prints what went
 * wrong and what to do (with o->json also the server's error document on stdout) and returns
 * the exit code for it.
 */
int ctl_api_call(const struct ctl_api_opts *o, const struct admin_target *t, const char *method,
                 const char *path, json_t *body, json_t **doc_r);

/*
 * The whole preamble of a verb that takes only the common options and min_pos..max_pos
 * positionals (into pos[], borrowed from argv): parse, answer --help, resolve the target.
 * Returns -1 when the verb should go on with *o and *t (admin_target_clear it), else the
 * exit code after printing.
 */
int ctl_api_begin(const struct ctl_verb *verb, int argc, char **argv, int min_pos, int max_pos,
                  const char **pos, int *n_pos, struct ctl_api_opts *o, struct admin_target *t);

/* A verb's own option for ctl_api_one: a flag (set) or an option with a value (value). */
struct ctl_opt {
    const char *name;     /* "--force" */
    bool *set;            /* a flag: set to true when given */
    const char **value;   /* takes a value: borrowed from argv */
    bool (*valid)(const char *value); /* may be NULL; false: usage error "<name> <value> <invalid>" */
    const char *invalid;  /* "is not a database kind" */
};

/*
 * The command line of a verb on one object (a database, a CMS): the common options, the
 * verb's own (opts, terminated by {NULL}; may be NULL) and exactly one positional, into *o and
 * *obj_r (borrowed from argv). what names the object in the usage errors ("one database only",
 * "missing the database"). Answers --help. Returns -1 when the verb should go on, else the
 * exit code after printing.
 */
int ctl_api_one(const struct ctl_verb *verb, int argc, char **argv, const struct ctl_opt *opts,
                const char *what, struct ctl_api_opts *o, const char **obj_r);

/*
 * The whole of a verb without arguments that shows one GET: parse the common options, answer
 * --help, resolve the target, GET path, and print the answer, as JSON with --json, else with
 * print(doc). Returns the exit code.
 */
int ctl_api_show(const struct ctl_verb *verb, int argc, char **argv, const char *path,
                 void (*print)(json_t *doc));

/*
 * A verb's one request after its own parsing: resolves o's target, sends it (body borrowed,
 * may be NULL) and, on success, prints the answer with --json. Returns the exit code; the
 * answer is in *doc_r (owned; NULL when none) for the verb's text without --json.
 */
int ctl_api_request(const struct ctl_verb *verb, const struct ctl_api_opts *o,
                    const char *method, const char *path, json_t *body, json_t **doc_r);

/*
 * The same, with hint appended to the error line ("...; run the command again") when the
 * answer's status is hint_status (0: any error). hint may be NULL.
 */
int ctl_api_call_hint(const struct ctl_api_opts *o, const struct admin_target *t,
                      const char *method, const char *path, json_t *body, int hint_status,
                      const char *hint, json_t **doc_r);

/*
 * For an answer that is not 2xx: prints the error it carries and what to do, as one line,
 * with hint as for ctl_api_call_hint (with o->json also the server's error document on
 * stdout). Returns the exit code for it.
 */
int ctl_api_report_error(const struct ctl_api_opts *o, const struct admin_target *t,
                         const struct admin_response *resp, int hint_status, const char *hint);

/* The exit code for an HTTP error status (4xx, 5xx). */
int ctl_exit_for_status(int status);

/* Prints doc as indented JSON and a newline on stdout. */
void ctl_print_json(json_t *doc);

#endif

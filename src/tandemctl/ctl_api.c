/*
 * The common part of every verb that talks to a server (ctl_api.h): options, where the
 * server is, credentials, one call with its errors mapped to messages and exit codes.
 */
#include "tandemctl/ctl_api.h"

#include "lib/config.h"
#include "lib/tls.h"
#include "tandemctl/ctl_kinds.h"
#include "tandemctl/ctl_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Connect, and each read and write, of an ordinary call. */
#define CTL_API_TIMEOUT_MS 30000
/* Longest secret read from a file, a terminal or stdin (the API takes 8..1024 bytes). */
#define SECRET_MAX 1024

const char ctl_api_options_help[] =
    "Where the server is (the first that is given wins):\n"
    "  --socket PATH        the admin unix socket, <datadir>/run/admin.sock\n"
    "  --server HOST:PORT   [listen admin] over TLS; needs --user and a CA\n"
    "  --ca FILE            the CA that signed the server's certificate (TLS)\n"
    "  -c, --config FILE    tandemd's config: its <datadir>/run/admin.sock, and its CA\n"
    "                       (<datadir>/tls/ca.pem or [tls] ca) for --server\n"
    "  environment          TANDEM_SOCKET, or TANDEM_SERVER with TANDEM_CA\n"
    "Who asks:\n"
    "  --user NAME          authenticate as user NAME, or as a server with its key:\n"
    "                       --user server/NAME (over the socket without --user: the\n"
    "                       local operator, allowed everything)\n"
    "  --password-file FILE the password is the first line of FILE; else TANDEM_PASSWORD;\n"
    "                       else it is asked for on the terminal\n"
    "Output:\n"
    "  --json               print the server's JSON document instead of a table\n";

static bool
opt_is(const char *arg, const char *name, const char **inline_val_r)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return false;
    if (arg[n] == '\0') {
        *inline_val_r = NULL;
        return true;
    }
    if (arg[n] == '=' && name[1] == '-') {
        *inline_val_r = arg + n + 1;
        return true;
    }
    return false;
}

int
ctl_opt_value(const struct ctl_verb *verb, const char *name, int argc, char **argv, int *i,
              const char **val_r)
{
    const char *v;
    if (!opt_is(argv[*i], name, &v))
        return 0;
    if (!v) {
        if (*i + 1 >= argc)
            return ctl_usage_error(verb, "%s needs a value", name);
        v = argv[++*i];
    }
    *val_r = v;
    return 1;
}

int
ctl_api_option(const struct ctl_verb *verb, int argc, char **argv, int *i, struct ctl_api_opts *o)
{
    const char *a = argv[*i];
    if (strcmp(a, "--json") == 0) {
        o->json = true;
        return 1;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        o->help = true;
        return 1;
    }
    static const struct {
        const char *name;
        size_t off;
    } opts[] = {
        {"--socket", offsetof(struct ctl_api_opts, socket)},
        {"--server", offsetof(struct ctl_api_opts, server)},
        {"--ca", offsetof(struct ctl_api_opts, ca)},
        {"--config", offsetof(struct ctl_api_opts, config)},
        {"-c", offsetof(struct ctl_api_opts, config)},
        {"--user", offsetof(struct ctl_api_opts, user)},
        {"--password-file", offsetof(struct ctl_api_opts, password_file)},
    };
    for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
        const char *v;
        int r = ctl_opt_value(verb, opts[k].name, argc, argv, i, &v);
        if (r == 1) {
            if (*v == '\0')
                return ctl_usage_error(verb, "%s needs a value", opts[k].name);
            *(const char **)((char *)o + opts[k].off) = v;
        }
        if (r != 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Secrets                                                            */

static void
wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* One line from f without its line ending, or NULL at EOF/error. Over SECRET_MAX is an error. */
static char *
read_line(FILE *f, bool *too_long_r)
{
    char buf[SECRET_MAX + 2];
    *too_long_r = false;
    if (!fgets(buf, sizeof(buf), f))
        return NULL;
    size_t len = strcspn(buf, "\r\n");
    if (len > SECRET_MAX) {
        *too_long_r = true;
        OPENSSL_cleanse(buf, sizeof(buf));
        return NULL;
    }
    buf[len] = '\0';
    char *s = strdup(buf);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (!s) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return s;
}

/* The terminal's settings while echo is off, so a signal can put them back. */
static struct termios saved_termios;
static volatile sig_atomic_t saved_fd = -1;

/* ^C at the prompt must not leave the operator's terminal without echo. */
static void
restore_echo_and_die(int sig)
{
    if (saved_fd >= 0)
        tcsetattr(saved_fd, TCSAFLUSH, &saved_termios);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Asks on the terminal tty with echo off. NULL on EOF or error. */
static char *
ask_tty(FILE *tty, const char *prompt)
{
    struct termios quiet;
    struct sigaction sa = {.sa_handler = restore_echo_and_die}, old_int, old_term, old_hup;
    int fd = fileno(tty);
    bool restore = tcgetattr(fd, &saved_termios) == 0;
    if (restore) {
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGHUP, &sa, &old_hup);
        saved_fd = fd;
        quiet = saved_termios;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    fputs(prompt, tty);
    fflush(tty);
    bool too_long;
    char *s = read_line(tty, &too_long);
    if (restore) {
        tcsetattr(fd, TCSAFLUSH, &saved_termios);
        saved_fd = -1;
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
    }
    if (too_long)
        ctl_error("longer than %d bytes", SECRET_MAX);
    return s;
}

char *
ctl_read_secret(const char *prompt, bool confirm)
{
    FILE *tty = isatty(STDIN_FILENO) ? fopen("/dev/tty", "r+e") : NULL;
    if (!tty) {
        bool too_long;
        char *s = read_line(stdin, &too_long);
        if (!s)
            ctl_error(too_long ? "the secret on standard input is longer than %d bytes"
                               : "nothing to read on standard input (%d bytes at most, one "
                                 "line)",
                      SECRET_MAX);
        return s;
    }
    char *s = ask_tty(tty, prompt);
    if (s && confirm) {
        char *again = ask_tty(tty, "Again: ");
        if (!again || strcmp(s, again) != 0) {
            ctl_error("the two entries differ; nothing was changed");
            wipe_free(s);
            s = NULL;
        }
        wipe_free(again);
    }
    fclose(tty);
    return s;
}

char *
ctl_read_secret_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        ctl_error("cannot read the password file %s: %s", path, strerror(errno));
        return NULL;
    }
    bool too_long;
    char *s = read_line(f, &too_long);
    fclose(f);
    if (!s)
        ctl_error("the password file %s is %s", path,
                  too_long ? "longer than 1024 bytes on its first line" : "empty");
    return s;
}

/* ------------------------------------------------------------------ */
/* Where the server is                                                */

static char *
xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return d;
}

/* "host:port" or "[v6]:port" into t->host / t->port. */
static bool
parse_host_port(const char *s, struct admin_target *t)
{
    char host[256], port[8];
    unsigned p;
    if (!ctl_parse_host_port(s, host, sizeof(host), &p))
        return false;
    snprintf(port, sizeof(port), "%u", p);
    t->host = xstrdup(host);
    t->port = xstrdup(port);
    return true;
}

/* Loads tandemd's config for its datadir and CA. Returns 0 or an exit code after printing. */
static int
from_config(const char *path, bool want_socket, bool want_ca, struct admin_target *t)
{
    struct tdm_config *cfg = NULL;
    char *err = NULL;
    int r = tdm_config_load_file(path, &cfg, &err);
    if (r != 0) {
        ctl_error("cannot use the tandemd config: %s", err ? err : "out of memory");
        free(err);
        return r == -ENOENT || r == -EACCES ? CTL_EXIT_ERROR : CTL_EXIT_USAGE;
    }
    t->datadir = xstrdup(cfg->datadir);
    if (want_socket) {
        char *sock = NULL;
        if (asprintf(&sock, "%s/run/admin.sock", cfg->datadir) < 0)
            exit(CTL_EXIT_ERROR);
        t->socket_path = sock;
    }
    if (want_ca) {
        /* The CA that signed this server's certificate, which is not [tls] ca when that names
         * the peers' CA (tls_server_ca_file). */
        t->ca_file = tls_server_ca_file(cfg);
        if (!t->ca_file) {
            fprintf(stderr, "tandemctl: %s uses the operator's certificate and names no [tls] ca: "
                            "give --ca FILE with the CA that signed it\n",
                    path);
            tdm_config_free(&cfg);
            exit(CTL_EXIT_USAGE);
        }
    }
    tdm_config_free(&cfg);
    return 0;
}

static int
where(const struct ctl_verb *verb, const struct ctl_api_opts *o, struct admin_target *t)
{
    if (o->socket && o->server)
        return ctl_usage_error(verb, "give --socket or --server, not both");
    const char *server = o->server, *socket = o->socket;
    bool from_env = false;
    if (!server && !socket && !o->config) {
        socket = getenv("TANDEM_SOCKET");
        server = getenv("TANDEM_SERVER");
        if (socket && *socket && server && *server)
            return ctl_usage_error(verb, "both TANDEM_SOCKET and TANDEM_SERVER are set; unset "
                                         "one, or say which with --socket or --server");
        if (socket && !*socket)
            socket = NULL;
        if (server && !*server)
            server = NULL;
        from_env = true;
    }
    if (!server && !socket && !o->config)
        return ctl_usage_error(verb, "which server? give --socket <datadir>/run/admin.sock, "
                                     "--server HOST:PORT with --ca, or -c <tandemd config> "
                                     "(or set TANDEM_SOCKET, or TANDEM_SERVER and TANDEM_CA)");
    if (socket) {
        t->socket_path = xstrdup(socket);
        return 0;
    }
    if (server) {
        if (!parse_host_port(server, t))
            return ctl_usage_error(verb,
                                   "%s \"%s\" is not HOST:PORT (an IPv6 address goes in "
                                   "brackets: [::1]:8443)",
                                   from_env ? "TANDEM_SERVER" : "--server", server);
        /* Options before the environment, as for the server itself: -c is as explicit as
         * --ca, and a TANDEM_CA left in the shell must not override it. */
        const char *ca = getenv("TANDEM_CA");
        if (o->ca)
            t->ca_file = xstrdup(o->ca);
        else if (o->config)
            return from_config(o->config, false, true, t);
        else if (ca && *ca)
            t->ca_file = xstrdup(ca);
        else
            return ctl_usage_error(verb, "TLS needs the CA that signed the server's "
                                         "certificate: give --ca FILE (the server's "
                                         "<datadir>/tls/ca.pem), set TANDEM_CA, or give -c "
                                         "<tandemd config>");
        return 0;
    }
    return from_config(o->config, true, false, t);
}

static int
who(const struct ctl_verb *verb, const struct ctl_api_opts *o, struct admin_target *t)
{
    if (!o->user) {
        if (!t->socket_path)
            return ctl_usage_error(verb, "--server needs --user NAME: requests over TLS are "
                                         "authenticated with a password");
        if (o->password_file)
            return ctl_usage_error(verb, "--password-file needs --user NAME");
        return 0;
    }
    t->user = xstrdup(o->user);
    if (o->password_file) {
        t->password = ctl_read_secret_file(o->password_file);
        return t->password ? 0 : CTL_EXIT_USAGE;
    }
    const char *env = getenv("TANDEM_PASSWORD");
    if (env) {
        t->password = xstrdup(env);
        return 0;
    }
    if (!isatty(STDIN_FILENO))
        return ctl_usage_error(verb,
                               "no password for user %s: set TANDEM_PASSWORD, give "
                               "--password-file FILE, or run on a terminal to be asked",
                               o->user);
    char prompt[300];
    snprintf(prompt, sizeof(prompt), "Password for %s: ", o->user);
    t->password = ctl_read_secret(prompt, false);
    return t->password ? 0 : CTL_EXIT_USAGE;
}

int
ctl_api_target(const struct ctl_verb *verb, const struct ctl_api_opts *o, bool stream,
               struct admin_target *t)
{
    memset(t, 0, sizeof(*t));
    t->timeout_ms = CTL_API_TIMEOUT_MS;
    t->stream = stream;
    int r = where(verb, o, t);
    if (r == 0)
        r = who(verb, o, t);
    if (r != 0)
        admin_target_clear(t);
    return r;
}

/* ------------------------------------------------------------------ */
/* Calls                                                              */

int
ctl_exit_for_status(int status)
{
    switch (status) {
    case 400:
    case 413:
        return CTL_EXIT_USAGE;
    case 401:
        return CTL_EXIT_UNREACHABLE;
    case 403:
        return CTL_EXIT_FORBIDDEN;
    case 404:
        return CTL_EXIT_NOT_FOUND;
    case 409:
        return CTL_EXIT_CONFLICT;
    case 503:
        return CTL_EXIT_UNAVAILABLE;
    default:
        return CTL_EXIT_ERROR;
    }
}

void
ctl_print_json(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s) {
        puts(s);
        free(s);
    }
}

static const char *
str_member(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
msgf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return s;
}

/* The error an HTTP answer carries, with what to do about it; allocated. */
static char *
http_error_text(const struct admin_target *t, const struct admin_response *resp, json_t *doc)
{
    json_t *err = json_object_get(doc, "error");
    const char *msg = str_member(err, "message");
    char namebuf[300];
    const char *name = admin_target_name(t, namebuf, sizeof(namebuf));
    /* A 401 says enough by itself; anything else without our error document did not come
     * from tandem's admin API. */
    if (!msg && resp->status != 401)
        return msgf("%s answered HTTP %d without an error document; is that a tandem admin "
                    "endpoint?",
                    name, resp->status);
    switch (resp->status) {
    case 401:
        return msgf("%s refused the credentials of %s%s: %s; check the user name and the "
                    "password (--password-file, TANDEM_PASSWORD)",
                    name, t->user ? "user " : "", t->user ? t->user : "this process",
                    msg ? msg : "unauthenticated");
    case 403: {
        const char *obj = str_member(err, "object"), *pr = str_member(err, "principal"),
                   *right = str_member(err, "right");
        bool acl_right = right && (strcmp(right, "read") == 0 || strcmp(right, "write") == 0 ||
                                   strcmp(right, "full-control") == 0);
        if (obj && pr && acl_right)
            return msgf("%s; someone with full-control on %s can grant it: tandemctl acl grant "
                        "%s %s %s",
                        msg, obj, obj, pr, right);
        /* Creating is not a right on an object (it does not exist yet): it comes with
         * membership of admins. */
        if (pr && strncmp(pr, "user:", 5) == 0 && right && strcmp(right, "create") == 0)
            return msgf("%s; an admin can add you: tandemctl group add-member admins %s", msg, pr);
        break;
    }
    case 503:
        return msgf("%s cannot do that now: %s", name, msg);
    case 404: {
        /* "user/alice": the list of that kind shows what does exist. */
        const char *obj = str_member(err, "object");
        const char *slash = obj ? strchr(obj, '/') : NULL;
        char kind[32];
        size_t klen = slash ? (size_t)(slash - obj) : 0;
        if (slash && klen < sizeof(kind)) {
            memcpy(kind, obj, klen);
            kind[klen] = '\0';
            if (ctl_kind_find(kind))
                return msgf("%s (`tandemctl %s list` shows what exists)", msg, kind);
        }
        break;
    }
    default:
        break;
    }
    return msgf("%s", msg);
}

int
ctl_api_report_error(const struct ctl_api_opts *o, const struct admin_target *t,
                     const struct admin_response *resp, int hint_status, const char *hint)
{
    json_t *doc = resp->body_len ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    char *text = http_error_text(t, resp, doc);
    bool with_hint = hint && (hint_status == 0 || hint_status == resp->status);
    /* One line: what went wrong, then what the verb knows to do about it. */
    ctl_error("%s%s%s", text, with_hint ? "; " : "", with_hint ? hint : "");
    free(text);
    if (o->json && doc)
        ctl_print_json(doc);
    json_decref(doc);
    return ctl_exit_for_status(resp->status);
}

int
ctl_api_call(const struct ctl_api_opts *o, const struct admin_target *t, const char *method,
             const char *path, json_t *body, json_t **doc_r)
{
    return ctl_api_call_hint(o, t, method, path, body, 0, NULL, doc_r);
}

int
ctl_api_call_hint(const struct ctl_api_opts *o, const struct admin_target *t, const char *method,
                  const char *path, json_t *body, int hint_status, const char *hint, json_t **doc_r)
{
    *doc_r = NULL;
    char *text = NULL;
    if (body && !(text = json_dumps(body, JSON_COMPACT))) {
        ctl_error("out of memory");
        return CTL_EXIT_ERROR;
    }
    struct admin_response resp;
    enum admin_fail why;
    char *err = NULL;
    int r = admin_request(t, method, path, text, NULL, NULL, &resp, &why, &err);
    free(text);
    if (r != 0) {
        ctl_error("%s", err);
        free(err);
        return CTL_EXIT_UNREACHABLE;
    }
    if (resp.status / 100 != 2) {
        int code = ctl_api_report_error(o, t, &resp, hint_status, hint);
        admin_response_clear(&resp);
        return code;
    }
    json_error_t jerr;
    json_t *doc = resp.body_len ? json_loadb(resp.body, resp.body_len, 0, &jerr) : NULL;
    int code = CTL_EXIT_OK;
    if (resp.body_len && !doc) {
        char name[300];
        ctl_error("%s answered %d with a body that is not JSON (%s at byte %d)",
                  admin_target_name(t, name, sizeof(name)), resp.status, jerr.text, jerr.position);
        code = CTL_EXIT_ERROR;
    } else {
        *doc_r = doc;
    }
    admin_response_clear(&resp);
    return code;
}

int
ctl_api_begin(const struct ctl_verb *verb, int argc, char **argv, int min_pos, int max_pos,
              const char **pos, int *n_pos, struct ctl_api_opts *o, struct admin_target *t)
{
    memset(o, 0, sizeof(*o));
    *n_pos = 0;
    for (int i = 1; i < argc; i++) {
        int r = ctl_api_option(verb, argc, argv, &i, o);
        if (r == 1)
            continue;
        if (r != 0)
            return r;
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return ctl_usage_error(verb, "unknown option \"%s\"", argv[i]);
        if (*n_pos == max_pos)
            return ctl_usage_error(verb, "unexpected argument \"%s\"", argv[i]);
        pos[(*n_pos)++] = argv[i];
    }
    if (o->help) {
        ctl_verb_help_with(verb, ctl_api_options_help);
        return CTL_EXIT_OK;
    }
    if (*n_pos < min_pos)
        return ctl_usage_error(verb, "%s", *n_pos ? "too few arguments" : "no arguments given");
    int r = ctl_api_target(verb, o, false, t);
    return r == 0 ? -1 : r;
}

int
ctl_api_one(const struct ctl_verb *verb, int argc, char **argv, const struct ctl_opt *opts,
            const char *what, struct ctl_api_opts *o, const char **obj_r)
{
    memset(o, 0, sizeof(*o));
    *obj_r = NULL;
    for (int i = 1; i < argc; i++) {
        int r = ctl_api_option(verb, argc, argv, &i, o);
        if (r == 1)
            continue;
        if (r != 0)
            return r;
        const struct ctl_opt *op = opts;
        for (; op && op->name; op++) {
            if (op->set && !strcmp(argv[i], op->name)) {
                *op->set = true;
                break;
            }
            const char *v;
            if (op->value && (r = ctl_opt_value(verb, op->name, argc, argv, &i, &v)) != 0) {
                if (r != 1)
                    return r;
                /* Checked here, before the rest of the line, as each verb did on its own. */
                if (op->valid && !op->valid(v))
                    return ctl_usage_error(verb, "%s %s %s", op->name, v, op->invalid);
                *op->value = v;
                break;
            }
        }
        if (op && op->name)
            continue;
        if (argv[i][0] == '-')
            return ctl_usage_error(verb, "unknown option %s", argv[i]);
        if (*obj_r)
            return ctl_usage_error(verb, "one %s only", what);
        *obj_r = argv[i];
    }
    if (o->help) {
        ctl_verb_help_with(verb, ctl_api_options_help);
        return CTL_EXIT_OK;
    }
    if (!*obj_r)
        return ctl_usage_error(verb, "missing the %s", what);
    return -1;
}

int
ctl_api_show(const struct ctl_verb *verb, int argc, char **argv, const char *path,
             void (*print)(json_t *doc))
{
    const char *pos[1];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, 0, 0, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    json_t *doc = NULL;
    r = ctl_api_call(&o, &t, "GET", path, NULL, &doc);
    if (r == 0) {
        if (o.json)
            ctl_print_json(doc);
        else
            print(doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

int
ctl_api_request(const struct ctl_verb *verb, const struct ctl_api_opts *o, const char *method,
                const char *path, json_t *body, json_t **doc_r)
{
    *doc_r = NULL;
    struct admin_target t;
    int r = ctl_api_target(verb, o, false, &t);
    if (r != 0)
        return r;
    r = ctl_api_call(o, &t, method, path, body, doc_r);
    if (r == 0 && o->json)
        ctl_print_json(*doc_r);
    admin_target_clear(&t);
    return r;
}

/*
 * tandemd: the server daemon. This file is the command line and the start-up sequence; the
 * supervisor (supervisor.c) then starts the core (core.c) and the protocol workers (worker.c).
 * docs/tandemd.md is the operator's description.
 */
#include "tandemd/tandemd.h"

#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TANDEM_VERSION
#define TANDEM_VERSION "0.1.0"
#endif

static const char usage_text[] =
    "Usage: tandemd -c FILE [--foreground] [--check-config | --print-ca]\n"
    "       tandemd --version | --help\n"
    "\n"
    "Runs a tandem server as configured in FILE (docs/config.md): a supervisor, a core\n"
    "process, one worker process per [listen] section, and one serving the admin API on\n"
    "<datadir>/run/admin.sock (docs/formats/admin-api.md).\n"
    "\n"
    "  -c, --config FILE   the configuration file (required)\n"
    "  -f, --foreground    stay attached to the terminal and keep logging to stderr;\n"
    "                      without it tandemd detaches once it is listening\n"
    "  -t, --check-config  load FILE, print the effective configuration and exit\n"
    "      --print-ca      print the path of the CA certificate that clients need to\n"
    "                      trust this server (tandemctl --ca), and exit\n"
    "  -V, --version       print the version and exit\n"
    "  -h, --help          print this help and exit\n"
    "\n"
    "Signals: SIGTERM or SIGINT stops cleanly; SIGHUP rereads FILE (log level and events\n"
    "file change at once; other changes need a restart and are reported as events).\n"
    "\n"
    "Exit status:\n"
    "  0  stopped cleanly, or --check-config found FILE valid\n"
    "  1  could not start: the datadir is locked by another tandemd, a port or the admin\n"
    "     socket could not be bound, a directory could not be created, the user could not\n"
    "     be switched to, or the TLS files could not be created or loaded (the message\n"
    "     names the file)\n"
    "  2  usage error, or FILE is invalid (the message names file:line and key), or\n"
    "     --print-ca with the operator's certificate and no [tls] ca\n"
    " 75  a fatal internal failure (out of memory, a broken invariant), logged as \"fatal:\"\n";

struct opts {
    const char *config;
    bool foreground;
    bool check;
    bool print_ca;
};

static int
parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"foreground", no_argument, NULL, 'f'},
        {"check-config", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"print-ca", no_argument, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:ftVh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'f':
            o->foreground = true;
            break;
        case 't':
            o->check = true;
            break;
        case 'P':
            o->print_ca = true;
            break;
        case 'V':
            printf("tandemd %s\n", TANDEM_VERSION);
            exit(TANDEMD_EXIT_OK);
        case 'h':
            fputs(usage_text, stdout);
            exit(TANDEMD_EXIT_OK);
        default:
            fputs("Try 'tandemd --help'.\n", stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tandemd: unexpected argument \"%s\"\nTry 'tandemd --help'.\n",
                argv[optind]);
        return -1;
    }
    if (!o->config) {
        fputs("tandemd: -c FILE is required\nTry 'tandemd --help'.\n", stderr);
        return -1;
    }
    return 0;
}

/*
 * Without --foreground: fork; the parent waits until the child is listening (one byte on the
 * pipe, then exit 0) or has failed (the pipe closes: exit with the child's status), so a start
 * script still sees a lock or bind failure. Returns, in the child, the pipe's write end.
 */
static int
detach(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        perror("tandemd: pipe");
        exit(TANDEMD_EXIT_START);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("tandemd: fork");
        exit(TANDEMD_EXIT_START);
    }
    if (pid > 0) {
        close(p[1]);
        char b;
        ssize_t n = read(p[0], &b, 1);
        if (n == 1)
            exit(TANDEMD_EXIT_OK);
        int status;
        if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
            exit(WEXITSTATUS(status));
        exit(TANDEMD_EXIT_START);
    }
    close(p[0]);
    setsid();
    return p[1];
}

/* After a successful start: let go of the terminal and release the waiting parent. */
static void
detach_done(int ready_fd)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    if (write(ready_fd, "", 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(ready_fd);
}

/*
 * Every client connection holds a file descriptor, and an IMAP worker is meant to hold
 * 10,000 idle ones; the soft limit a service usually starts with (1024 under systemd) would
 * stop it at a tenth of that, with accept() failing. The hard limit is what the operator
 * allows: take all of it, for this process and the children that inherit it.
 */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot raise the open file limit from %llu to %llu: %s",
                 (unsigned long long)was, (unsigned long long)rl.rlim_max, strerror(errno));
    else
        log_info("open file limit raised from %llu to %llu (the hard limit)",
                 (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

static int
start_failed(char *why)
{
    fprintf(stderr, "tandemd: %s\n", why ? why : "out of memory");
    free(why);
    return TANDEMD_EXIT_START;
}

int
main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--child"))
        return tandemd__child_main(argc, argv);

    struct opts o = {0};
    if (parse_args(argc, argv, &o) < 0)
        return TANDEMD_EXIT_CONFIG;

    struct tdm_config *cfg = NULL;
    char *why = NULL;
    if (tdm_config_load_file(o.config, &cfg, &why) < 0) {
        fprintf(stderr, "tandemd: %s\n", why ? why : "out of memory");
        free(why);
        return TANDEMD_EXIT_CONFIG;
    }
    if (o.check) {
        int ret = tdm_config_dump(cfg, stdout);
        tdm_config_free(&cfg);
        return ret < 0 ? TANDEMD_EXIT_START : TANDEMD_EXIT_OK;
    }
    if (o.print_ca) {
        int ret = tandemd__print_ca(cfg);
        tdm_config_free(&cfg);
        return ret;
    }

    log_set_role("supervisor");
    log_set_min_level(cfg->log.level);
    raise_fd_limit();
    int ready_fd = o.foreground ? -1 : detach();

    /* Order matters: the lock before anything is touched in the datadir; the ports bound
     * before the privilege drop (ports below 1024). The events file is opened before the drop,
     * so the running-as-root warning is recorded, and again after it, as the user the children
     * open it as, so a file the user cannot write shows up at once. */
    int lock_fd = -1;
    int listen_fds[TDM_PROTO_COUNT];
    if (tandemd__make_dirs(cfg, &why) < 0 ||
        tandemd__lock_datadir(cfg->datadir, &lock_fd, &why) < 0 ||
        tandemd__bind_listeners(cfg, listen_fds, &why) < 0) {
        tdm_config_free(&cfg);
        if (lock_fd >= 0)
            close(lock_fd);
        return start_failed(why);
    }
    tandemd__set_event_sink(cfg);
    /* TLS files before the drop: as root they can still be given to the service user. */
    if (tandemd__ensure_tls(cfg, &why) < 0 || tandemd__drop_privileges(cfg, &why) < 0) {
        for (unsigned i = 0; i < cfg->n_listeners; i++)
            close(listen_fds[i]);
        tdm_config_free(&cfg);
        close(lock_fd);
        return start_failed(why);
    }
    tandemd__set_event_sink(cfg);
    signal(SIGPIPE, SIG_IGN);
    if (ready_fd >= 0)
        detach_done(ready_fd);

    int ret = tandemd__supervise(o.config, &cfg, listen_fds);
    tandemd__close_event_sink();
    close(lock_fd);
    return ret;
}

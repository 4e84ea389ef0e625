/*
 * What the supervisor does before it starts any child: the datadir, its lock, the listening
 * sockets (bound here, while still root if started as root, and inherited by the workers) and
 * the privilege drop.
 */
#include "tandemd/tandemd.h"

#include "lib/event.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char *xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An allocated message; allocation failure here is fatal (CONVENTIONS: xmalloc outside store). */
static char *
xfmt(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        log_fatal("out of memory");
    return s;
}

static int
make_dir(const char *path, char **error_r)
{
    if (mkdir(path, 0750) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        int err = errno ? -errno : -ENOTDIR;
        *error_r = xfmt("%s exists and is not a directory", path);
        return err;
    }
    int err = -errno;
    *error_r = xfmt("cannot create directory %s: %s", path, strerror(errno));
    return err;
}

int
tandemd__make_dirs(const struct tdm_config *cfg, char **error_r)
{
    int ret = make_dir(cfg->datadir, error_r);
    if (ret < 0)
        return ret;
    char *db = xfmt("%s/db", cfg->datadir);
    ret = make_dir(db, error_r);
    free(db);
    if (ret < 0)
        return ret;
    /* <datadir>/run holds the core's socket: 0700, so only tandemd's own user (and root) can
     * connect and send commits. The core binds it after the privilege drop, so when started
     * as root the directory must belong to the user we drop to. */
    char *run = xfmt("%s/run", cfg->datadir);
    ret = make_dir(run, error_r);
    if (ret == 0 && chmod(run, 0700) < 0) {
        ret = -errno;
        *error_r = xfmt("cannot set the mode of %s: %s", run, strerror(errno));
    }
    if (ret == 0 && geteuid() == 0 && cfg->user[0]) {
        errno = 0;
        struct passwd *pw = getpwnam(cfg->user);
        if (!pw) {
            ret = errno ? -errno : -ENOENT;
            *error_r = xfmt("%s: key \"user\": no such user \"%s\"", cfg->path, cfg->user);
        } else if (chown(run, pw->pw_uid, pw->pw_gid) < 0) {
            ret = -errno;
            *error_r = xfmt("cannot give %s to user \"%s\": %s", run, cfg->user, strerror(errno));
        }
    }
    free(run);
    return ret;
}

int
tandemd__lock_datadir(const char *datadir, int *fd_r, char **error_r)
{
    char *path = xfmt("%s/tandemd.lock", datadir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        int err = -errno;
        *error_r = xfmt("cannot open lock file %s: %s", path, strerror(errno));
        free(path);
        return err;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = -errno;
        if (errno == EWOULDBLOCK) {
            /* The holder wrote its pid after locking; it may be mid-write, so "unknown" is
             * possible and said as such rather than guessed. */
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
            buf[n > 0 ? n : 0] = '\0';
            buf[strcspn(buf, "\n")] = '\0';
            *error_r = xfmt("%s is locked by pid %s: another tandemd runs on datadir %s", path,
                            buf[0] ? buf : "(unknown)", datadir);
        } else {
            *error_r = xfmt("cannot lock %s: %s", path, strerror(errno));
        }
        close(fd);
        free(path);
        return err;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int err = errno ? -errno : -EIO;
        *error_r = xfmt("cannot write pid to %s: %s", path, strerror(errno));
        close(fd);
        free(path);
        return err;
    }
    free(path);
    *fd_r = fd;
    return 0;
}

int
tandemd__bound_socket(const struct tdm_config_addr *address, uint32_t port)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    if (address->family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        memcpy(&s6->sin6_addr, address->bytes, 16);
        sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        memcpy(&s4->sin_addr, address->bytes, 4);
        sslen = sizeof(*s4);
    }
    int fd = socket(address->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* SO_REUSEADDR so a restart does not wait out TIME_WAIT connections of the previous
     * instance; Linux still refuses a second listener on the same address and port
     * (EADDRINUSE), which is what keeps two nodes from serving one CMS address. Never
     * SO_REUSEPORT. "::" means IPv6 only: 0.0.0.0 is a listener of its own in the config. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (address->family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&ss, sslen) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int
tandemd__listen_socket(const struct tdm_config_addr *address, uint32_t port)
{
    int fd = tandemd__bound_socket(address, port);
    if (fd < 0)
        return fd;
    if (listen(fd, TANDEMD_LISTEN_BACKLOG) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int
bind_one(const struct tdm_config *cfg, const struct tdm_config_listener *l, char **error_r)
{
    int fd = tandemd__listen_socket(&l->address, l->port);
    if (fd >= 0)
        return fd;
    bool v6 = l->address.family == AF_INET6;
    char where[64];
    snprintf(where, sizeof(where), "%s%s%s:%u", v6 ? "[" : "", l->address.text, v6 ? "]" : "",
             (unsigned)l->port);
    *error_r = xfmt("%s:%u: cannot listen for %s on %s: %s", cfg->path, l->line,
                    tdm_config_proto_name(l->proto), where, strerror(-fd));
    return fd;
}

int
tandemd__bind_listener(const struct tdm_config *cfg, const struct tdm_config_listener *l,
                       char **error_r)
{
    return bind_one(cfg, l, error_r);
}

int
tandemd__bind_listeners(const struct tdm_config *cfg, int *fds_r, char **error_r)
{
    for (unsigned i = 0; i < cfg->n_listeners; i++) {
        /* The core binds [listen coord] and [listen cluster] itself (core_coord.c,
         * core_cluster_hb.c); -1 is "none" to the rest. */
        if (cfg->listeners[i].proto == TDM_PROTO_COORD ||
            cfg->listeners[i].proto == TDM_PROTO_CLUSTER) {
            fds_r[i] = -1;
            continue;
        }
        int fd = bind_one(cfg, &cfg->listeners[i], error_r);
        if (fd < 0) {
            while (i-- > 0)
                close(fds_r[i]);
            return fd;
        }
        fds_r[i] = fd;
    }
    return 0;
}

/* Whether a CMS address may need a port below 1024: a client protocol's or replication's
 * listener uses one. Judged on the listeners, not on [cms], since a reload may add a CMS while
 * the listeners stay as they were bound. */
static bool
needs_bind_capability(const struct tdm_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_listeners; i++)
        if (cfg->listeners[i].port < 1024 && tandemd__cms_proto(cfg->listeners[i].proto))
            return true;
    return false;
}

/* Whether a CMS address lives on an interface: the supervisor then adds and deletes it
 * (CAP_NET_ADMIN) and announces it on a raw socket (CAP_NET_RAW). Judged on [cms] at start. */
static bool
needs_interface_capabilities(const struct tdm_config *cfg)
{
    for (unsigned i = 0; i < cfg->n_cms; i++)
        if (cfg->cms[i].interface[0])
            return true;
    return false;
}

static void
cap_add(struct __user_cap_data_struct *data, int cap)
{
    data[CAP_TO_INDEX(cap)].permitted |= CAP_TO_MASK(cap);
    data[CAP_TO_INDEX(cap)].effective |= CAP_TO_MASK(cap);
}

/*
 * After setuid with PR_SET_KEEPCAPS: of everything root had, keeps only what the CMS addresses
 * need: CAP_NET_BIND_SERVICE (bind) and/or CAP_NET_ADMIN and CAP_NET_RAW (iface), permitted
 * and effective; nothing inheritable, so no child gets them: a child is exec'ed as the
 * unprivileged user, which clears what it would have inherited. Through the raw system call,
 * so no new library is needed. Returns 0 or -errno.
 */
static int
keep_only_cms_capabilities(bool bind, bool iface)
{
    struct __user_cap_header_struct head = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof(data));
    if (bind)
        cap_add(data, CAP_NET_BIND_SERVICE);
    if (iface) {
        cap_add(data, CAP_NET_ADMIN);
        cap_add(data, CAP_NET_RAW);
    }
    return syscall(SYS_capset, &head, data) == 0 ? 0 : -errno;
}

int
tandemd__drop_privileges(const struct tdm_config *cfg, char **error_r)
{
    if (geteuid() != 0)
        return 0;
    if (!cfg->user[0]) {
        event_emit(TDM_EV_PROCESS_RUNNING_AS_ROOT, cfg->server,
                   "tandemd runs as root because %s sets no \"user\"; a bug in any process "
                   "would have full control of the machine: set user = <unprivileged account>",
                   cfg->path);
        return 0;
    }
    errno = 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        int err = errno ? -errno : -ENOENT;
        *error_r = xfmt("%s: key \"user\": no such user \"%s\"", cfg->path, cfg->user);
        return err;
    }
    /* A CMS address is bound after the drop, whenever the core asks: when one of its ports is
     * below 1024 the supervisor keeps the one capability that allows it; when one lives on an
     * interface, the two that add and announce it (docs/decisions.md). */
    bool keep_bind = needs_bind_capability(cfg);
    bool keep_iface = needs_interface_capabilities(cfg);
    char caps[80];
    snprintf(caps, sizeof(caps), "%s%s%s", keep_bind ? "CAP_NET_BIND_SERVICE" : "",
             keep_bind && keep_iface ? ", " : "", keep_iface ? "CAP_NET_ADMIN, CAP_NET_RAW" : "");
    bool keep = keep_bind || keep_iface;
    if (keep && prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) < 0) {
        int err = -errno;
        *error_r = xfmt("cannot keep %s across the switch to user \"%s\": %s", caps, cfg->user,
                        strerror(errno));
        return err;
    }
    if (initgroups(cfg->user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        int err = -errno;
        *error_r = xfmt("cannot switch to user \"%s\": %s", cfg->user, strerror(errno));
        return err;
    }
    if (keep) {
        int ret = keep_only_cms_capabilities(keep_bind, keep_iface);
        prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L);
        if (ret < 0) {
            *error_r = xfmt("cannot keep %s as user \"%s\": %s", caps, cfg->user,
                            strerror(-ret));
            return ret;
        }
    }
    if (pw->pw_uid != 0 && setuid(0) == 0) {
        *error_r = xfmt("dropped to user \"%s\" but could become root again", cfg->user);
        return -EPERM;
    }
    log_info("running as user %s (uid %u)%s%s%s", cfg->user, (unsigned)pw->pw_uid,
             keep ? ", keeping " : "", caps, keep ? " for the CMS addresses" : "");
    return 0;
}

/*
 * The local CA and server certificate tandemd creates at first start (lib/tls.h lists the
 * files and their contents; docs/decisions.md says why a local CA and why never regenerate).
 *
 * Crash safety: the four files are written into a staging directory <datadir>/tls.new, each
 * file fsynced, the staging directory fsynced, then renamed to <datadir>/tls in one rename(2)
 * and <datadir> fsynced. So <datadir>/tls is either absent (or empty) or holds a complete set
 * whose bytes are on disk, and a crash part-way leaves only tls.new, which was never trusted by
 * anyone and is cleared at the next start. Per-file renames would have left a CA without its
 * server certificate after a crash, which the "incomplete set" rule would then refuse forever.
 *
 * Private keys go through OpenSSL's secure-memory BIO, so their PEM text is wiped when freed.
 * The certificates themselves are built in tls_cert.c.
 */
#include "lib/err.h"
#include "lib/tls.h"
#include "lib/tls_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGING_NAME "tls.new"

#define N_LOCAL 4
static const char *const local_names[N_LOCAL] = {TLS_CA_CERT_NAME, TLS_CA_KEY_NAME,
                                                 TLS_SERVER_CERT_NAME, TLS_SERVER_KEY_NAME};

/* The four files in memory, before they are written. */
struct local_set {
    BIO *pem[N_LOCAL]; /* in local_names order */
};

static void
local_set_free(struct local_set *set)
{
    for (unsigned i = 0; i < N_LOCAL; i++)
        BIO_free(set->pem[i]);
    *set = (struct local_set){0};
}

/* Creates both keys and both certificates as PEM in memory. */
static int
local_set_make(const struct tdm_config *cfg, struct local_set *set, char **error_r)
{
    char *ca_cn = tls__fmt("tandem local CA %s", cfg->server);
    /* P-256: every TLS stack verifies it, signatures are small and fast; see decisions.md. */
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *srv_key = ca_key ? EVP_EC_gen("P-256") : NULL;
    X509 *ca = srv_key ? tls__make_cert(ca_key, ca_cn, TLS__CA_DAYS, NULL, NULL, cfg) : NULL;
    X509 *srv = ca ? tls__make_cert(srv_key, cfg->server, TLS__SERVER_DAYS, ca, ca_key, cfg) : NULL;
    bool ok = srv != NULL;
    for (unsigned i = 0; ok && i < N_LOCAL; i++) {
        /* Keys (odd indexes) in secure memory, wiped on free. */
        set->pem[i] = BIO_new(i % 2 ? BIO_s_secmem() : BIO_s_mem());
        ok = set->pem[i] != NULL;
    }
    ok = ok && PEM_write_bio_X509(set->pem[0], ca) &&
         PEM_write_bio_PrivateKey(set->pem[1], ca_key, NULL, NULL, 0, NULL, NULL) &&
         PEM_write_bio_X509(set->pem[2], srv) &&
         PEM_write_bio_PrivateKey(set->pem[3], srv_key, NULL, NULL, 0, NULL, NULL);
    X509_free(srv);
    X509_free(ca);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(ca_key);
    if (!ok) {
        *error_r = tls__ssl_error("cannot create the local CA \"%s\"", ca_cn);
        local_set_free(set);
    }
    free(ca_cn);
    return ok ? 0 : TDM_EINVAL;
}

/* ---- files ----------------------------------------------------------------------------- */

int
tls__fsync_dir(const char *path, char **error_r)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) {
        int err = -errno;
        *error_r = tls__fmt("cannot sync directory %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return err;
    }
    close(fd);
    return 0;
}

int
tls__chown_fd(int fd, uid_t owner, gid_t group)
{
    if (owner == (uid_t)-1 && group == (gid_t)-1)
        return 0;
    return fchown(fd, owner, group);
}

int
tls__write_file(int dfd, const char *dir, const char *name, BIO *data, mode_t mode, uid_t owner,
                gid_t group, char **error_r)
{
    char *buf;
    long len = BIO_get_mem_data(data, &buf);
    /* O_EXCL: callers clear the name first, so anything there now is not ours. */
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    int ret = fd < 0 ? -errno : 0;
    /* fchmod: the umask must not decide who can read a key (or make a certificate
     * unreadable to the peers' tools). */
    if (ret == 0 && (fchmod(fd, mode) < 0 || tls__chown_fd(fd, owner, group) < 0))
        ret = -errno;
    for (long off = 0; ret == 0 && off < len;) {
        ssize_t n = write(fd, buf + off, (size_t)(len - off));
        if (n < 0 && errno != EINTR)
            ret = -errno;
        else if (n > 0)
            off += n;
    }
    if (ret == 0 && fsync(fd) < 0)
        ret = -errno;
    if (fd >= 0 && close(fd) < 0 && ret == 0)
        ret = -errno;
    if (ret < 0)
        *error_r = tls__fmt("cannot write %s/%s: %s", dir, name, strerror(-ret));
    return ret;
}

/*
 * Removes a staging directory left by a crash. Only the four names are removed: anything else
 * in it was not put there by us, and then rmdir fails and says so.
 */
static int
clear_staging(const char *staging, char **error_r)
{
    int dfd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return 0;
    if (dfd < 0) {
        int err = -errno;
        *error_r = tls__fmt("cannot open %s: %s", staging, strerror(errno));
        return err;
    }
    for (unsigned i = 0; i < N_LOCAL; i++)
        (void)unlinkat(dfd, local_names[i], 0); /* missing ones are fine */
    close(dfd);
    if (rmdir(staging) < 0) {
        int err = -errno;
        *error_r = tls__fmt("cannot remove %s (left by an interrupted start): %s; remove it by "
                            "hand",
                            staging, strerror(errno));
        return err;
    }
    return 0;
}

/* Writes the set into staging, synced, ready to be renamed. */
static int
write_staging(const char *staging, const struct local_set *set, uid_t owner, gid_t group,
              char **error_r)
{
    if (mkdir(staging, 0750) < 0) {
        int err = -errno;
        *error_r = tls__fmt("cannot create directory %s: %s", staging, strerror(errno));
        return err;
    }
    int dfd = open(staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || tls__chown_fd(dfd, owner, group) < 0) {
        int err = -errno;
        *error_r = tls__fmt("cannot prepare %s: %s", staging, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return err;
    }
    int ret = 0;
    for (unsigned i = 0; ret == 0 && i < N_LOCAL; i++)
        ret = tls__write_file(dfd, staging, local_names[i], set->pem[i], i % 2 ? 0600 : 0644, owner,
                              group, error_r);
    if (ret == 0 && fsync(dfd) < 0) {
        ret = -errno;
        *error_r = tls__fmt("cannot sync directory %s: %s", staging, strerror(errno));
    }
    close(dfd);
    return ret;
}

/* What an existing <datadir>/tls holds: a bit per local name, and whether anything else. */
static int
inspect_dir(const char *dir, unsigned *present_r, bool *other_r, char **error_r)
{
    *present_r = 0;
    *other_r = false;
    DIR *d = opendir(dir);
    if (!d) {
        int err = -errno;
        *error_r = tls__fmt("cannot read directory %s: %s", dir, strerror(errno));
        return err;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        unsigned i = 0;
        while (i < N_LOCAL && strcmp(e->d_name, local_names[i]) != 0)
            i++;
        if (i < N_LOCAL)
            *present_r |= 1u << i;
        else
            *other_r = true;
    }
    closedir(d);
    return 0;
}

/*
 * An existing set made by a run under another user (no `user` then, or a different one) would
 * leave the keys unreadable after the privilege drop: give the directory and files to
 * owner/group when they belong to someone else. Symbolic links are not followed, so a link
 * planted in the directory cannot redirect the chown.
 */
static int
give_existing(const char *dir, uid_t owner, gid_t group, char **error_r)
{
    if (owner == (uid_t)-1 && group == (gid_t)-1)
        return 0;
    for (int i = -1; i < N_LOCAL; i++) {
        char *path = i < 0 ? tls__fmt("%s", dir) : tls__fmt("%s/%s", dir, local_names[i]);
        struct stat st;
        int ret = lstat(path, &st) < 0 ? -errno : 0;
        if (ret == 0 &&
            ((owner != (uid_t)-1 && st.st_uid != owner) ||
             (group != (gid_t)-1 && st.st_gid != group)) &&
            lchown(path, owner, group) < 0)
            ret = -errno;
        if (ret < 0)
            *error_r = tls__fmt("cannot give %s to the service user: %s", path, strerror(-ret));
        free(path);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* "ca.key, server.pem" for the bits not in present. */
static char *
missing_list(unsigned present)
{
    char buf[128] = "";
    for (unsigned i = 0; i < N_LOCAL; i++)
        if (!(present & (1u << i)))
            snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", buf[0] ? ", " : "",
                     local_names[i]);
    return tls__fmt("%s", buf);
}

int
tls_local_ensure(const struct tdm_config *cfg, uid_t owner, gid_t group, bool *created_r,
                 char **error_r)
{
    *created_r = false;
    *error_r = NULL;
    char *dir = tls__fmt("%s/%s", cfg->datadir, TLS_DIR_NAME);
    char *staging = tls__fmt("%s/%s", cfg->datadir, STAGING_NAME);
    struct local_set set = {0};
    int ret = 0;

    struct stat st;
    if (lstat(dir, &st) == 0) {
        unsigned present;
        bool other;
        if (!S_ISDIR(st.st_mode)) {
            *error_r = tls__fmt("%s exists and is not a directory", dir);
            ret = -ENOTDIR;
        } else if ((ret = inspect_dir(dir, &present, &other, error_r)) < 0) {
            /* error_r is set */
        } else if (present == (1u << N_LOCAL) - 1) {
            /* Complete: used as it is, never regenerated. */
            ret = give_existing(dir, owner, group, error_r);
            goto out;
        } else if (present != 0) {
            char *missing = missing_list(present);
            *error_r = tls__fmt(
                "incomplete local CA in %s: missing %s. tandemd never replaces a CA that peers "
                "and tandemctl may trust: restore the missing files from a backup, or move the "
                "directory away to create a new CA (everyone who trusted the old ca.pem must "
                "then be given the new one)",
                dir, missing);
            free(missing);
            ret = TDM_EINVAL;
        } else if (other) {
            *error_r = tls__fmt("%s holds other files but no local CA; move them away so "
                                "tandemd can create the CA there, or set [tls] certificate, key "
                                "and ca",
                                dir);
            ret = TDM_EINVAL;
        }
        /* else: empty, e.g. made by an installer; rename(2) replaces an empty directory. */
    } else if (errno != ENOENT) {
        ret = -errno;
        *error_r = tls__fmt("cannot examine %s: %s", dir, strerror(errno));
    }
    if (ret < 0)
        goto out;

    if ((ret = clear_staging(staging, error_r)) < 0 ||
        (ret = local_set_make(cfg, &set, error_r)) < 0)
        goto out;
    if ((ret = write_staging(staging, &set, owner, group, error_r)) < 0) {
        char *ignored = NULL;
        (void)clear_staging(staging, &ignored); /* the first error is the one to report */
        free(ignored);
        goto out;
    }
    if (rename(staging, dir) < 0) {
        ret = -errno;
        *error_r = tls__fmt("cannot rename %s to %s: %s", staging, dir, strerror(errno));
        char *ignored = NULL;
        (void)clear_staging(staging, &ignored);
        free(ignored);
        goto out;
    }
    /* Only now is the rename itself durable; before this sync a crash may undo it, which
     * leaves tls.new for the next start to clear. */
    if ((ret = tls__fsync_dir(cfg->datadir, error_r)) < 0)
        goto out;
    *created_r = true;
out:
    local_set_free(&set);
    free(staging);
    free(dir);
    return ret;
}

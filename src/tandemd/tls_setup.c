/*
 * TLS at start (docs/tandemd.md, "TLS"): the supervisor makes sure of the local CA set while it
 * may still be root, so the files can be given to the user it drops to, and loads the
 * certificate and key in force once, so a wrong path or a key that does not match its
 * certificate stops the start with the file named, instead of failing every admin connection
 * later in a worker.
 */
#include "tandemd/tandemd.h"

#include "lib/event.h"
#include "lib/tls.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Who the files belong to: the user tandemd drops to when started as root, else whoever runs
 * it (no chown at all). */
static int
tls_owner(const struct tdm_config *cfg, uid_t *uid_r, gid_t *gid_r, char **error_r)
{
    *uid_r = (uid_t)-1;
    *gid_r = (gid_t)-1;
    if (geteuid() != 0 || !cfg->user[0])
        return 0;
    errno = 0;
    struct passwd *pw = getpwnam(cfg->user);
    if (!pw) {
        int err = errno ? -errno : -ENOENT;
        if (asprintf(error_r, "%s: key \"user\": no such user \"%s\"", cfg->path, cfg->user) < 0)
            *error_r = NULL;
        return err;
    }
    *uid_r = pw->pw_uid;
    *gid_r = pw->pw_gid;
    return 0;
}

int
tandemd__ensure_tls(const struct tdm_config *cfg, char **error_r)
{
    *error_r = NULL;
    int ret;
    if (tls_local_needed(cfg)) {
        uid_t uid;
        gid_t gid;
        bool created = false;
        if ((ret = tls_owner(cfg, &uid, &gid, error_r)) < 0 ||
            (ret = tls_local_ensure(cfg, uid, gid, &created, error_r)) < 0)
            return ret;
        if (created)
            event_emit(TDM_EV_TLS_LOCAL_CA_CREATED, cfg->server,
                       "created the local CA \"tandem local CA %s\" and this server's certificate "
                       "in %s/%s; tandemctl and peers trust this server through %s/%s/%s "
                       "(tandemctl --ca)",
                       cfg->server, cfg->datadir, TLS_DIR_NAME, cfg->datadir, TLS_DIR_NAME,
                       TLS_CA_CERT_NAME);
        char *reason = NULL;
        if ((ret = tls_local_renew(cfg, uid, gid, &reason, error_r)) < 0)
            return ret;
        if (reason)
            event_emit(TDM_EV_TLS_SERVER_CERT_RENEWED, cfg->server,
                       "renewed this server's certificate %s/%s/%s from the local CA, because %s; "
                       "the CA is unchanged",
                       cfg->datadir, TLS_DIR_NAME, TLS_SERVER_CERT_NAME, reason);
        free(reason);
    }
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    SSL_CTX *ctx = NULL;
    ret =
        tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE, &ctx, error_r);
    SSL_CTX_free(ctx);
    tls_files_clear(&files);
    return ret;
}

int
tandemd__print_ca(const struct tdm_config *cfg)
{
    char *ca = tls_server_ca_file(cfg);
    if (!ca) {
        fprintf(stderr,
                "tandemd: this server presents the operator's certificate %s: give tandemctl "
                "the CA that issued it (or set [tls] ca to that CA's file)\n",
                cfg->tls.certificate);
        return TANDEMD_EXIT_CONFIG;
    }
    printf("%s\n", ca);
    if (access(ca, R_OK) < 0)
        fprintf(stderr, "tandemd: %s: %s%s\n", ca, strerror(errno),
                cfg->tls.certificate ? "" : " (tandemd creates it at its first start)");
    free(ca);
    return TANDEMD_EXIT_OK;
}

/*
 * Renewal of the local server certificate from the local CA (tls_local_renew in lib/tls.h).
 *
 * Why: the CA is never regenerated, because others trust it; but the server certificate it
 * signed must follow the configuration (a new network address that the certificate lacks
 * makes every client that connects there refuse the server) and the calendar (2 years). A new
 * server certificate from the same CA changes nothing for anyone who trusts ca.pem.
 *
 * Only a server.pem the local CA issued is renewed: a file put there by hand is the
 * operator's, and [tls] certificate is the place for those anyway.
 *
 * Crash safety: server.key.new and server.pem.new are written and fsynced, then renamed over
 * server.key and server.pem in that order, then the directory is fsynced. A crash between the
 * two renames leaves a new key beside the old certificate; they do not match, which is itself
 * a reason to renew, so the next start finishes the job.
 */
#include "lib/err.h"
#include "lib/tls.h"
#include "lib/tls_int.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_TMP TLS_SERVER_KEY_NAME ".new"
#define CERT_TMP TLS_SERVER_CERT_NAME ".new"

static X509 *
read_cert(const char *path, char **error_r)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x)
        *error_r = tls__ssl_error("cannot read certificate %s", path);
    return x;
}

static EVP_PKEY *
read_key(const char *path, char **error_r)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!k)
        *error_r = tls__ssl_error("cannot read private key %s", path);
    return k;
}

/* Whether srv names exactly cfg's server (CN and one DNS name) and addresses. */
static bool
names_match(X509 *srv, const struct tdm_config *cfg)
{
    char cn[TDM_CONFIG_NAME_MAX + 2];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(srv), NID_commonName, cn, sizeof(cn)) < 0 ||
        strcmp(cn, cfg->server) != 0)
        return false;
    const struct tdm_config_addr *addrs[TLS__MAX_SAN_ADDRS];
    unsigned n = tls__san_addrs(cfg, addrs);
    GENERAL_NAMES *gens = X509_get_ext_d2i(srv, NID_subject_alt_name, NULL, NULL);
    if (!gens) {
        ERR_clear_error(); /* "no such extension" is an answer here, not an error */
        return false;
    }
    bool dns = false, extra = false;
    unsigned long found = 0; /* bit j: addrs[j] is named */
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS) {
            const ASN1_STRING *s = g->d.dNSName;
            bool same = (size_t)ASN1_STRING_length(s) == strlen(cfg->server) &&
                        !memcmp(ASN1_STRING_get0_data(s), cfg->server, strlen(cfg->server));
            extra |= !same || dns;
            dns |= same;
        } else if (g->type == GEN_IPADD) {
            const ASN1_STRING *s = g->d.iPAddress;
            unsigned j = 0;
            for (; j < n; j++) {
                int len = addrs[j]->family == AF_INET ? 4 : 16;
                if (ASN1_STRING_length(s) == len &&
                    !memcmp(ASN1_STRING_get0_data(s), addrs[j]->bytes, (size_t)len))
                    break;
            }
            if (j < n && !(found & (1ul << j)))
                found |= 1ul << j;
            else
                extra = true; /* an address the server no longer has, or one named twice */
        } else {
            extra = true;
        }
    }
    GENERAL_NAMES_free(gens);
    return dns && !extra && found == (n ? (1ul << n) - 1 : 0);
}

/* Why srv/srv_key need renewing, as an allocated reason, or NULL when they do not. */
static char *
renew_reason(X509 *srv, EVP_PKEY *srv_key, const struct tdm_config *cfg)
{
    if (X509_check_private_key(srv, srv_key) != 1) {
        ERR_clear_error();
        return tls__fmt("%s does not match %s (a renewal was interrupted)", TLS_SERVER_KEY_NAME,
                        TLS_SERVER_CERT_NAME);
    }
    if (!names_match(srv, cfg))
        return tls__fmt("its names differ from the configuration's (server name and the "
                        "addresses of the [network]s and [listen]ers)");
    int days, secs;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(srv)) != 1) {
        ERR_clear_error();
        return tls__fmt("its expiry date cannot be read");
    }
    if (days < TLS__RENEW_DAYS)
        return days < 0 || (days == 0 && secs <= 0) ? tls__fmt("it has expired")
                                                    : tls__fmt("it expires in %d days", days);
    return NULL;
}

/* Removes what an interrupted renewal may have left; a missing file is fine. */
static int
clear_tmp(int dfd, const char *dir, char **error_r)
{
    static const char *const names[] = {KEY_TMP, CERT_TMP};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (unlinkat(dfd, names[i], 0) < 0 && errno != ENOENT) {
            int err = -errno;
            *error_r = tls__fmt("cannot remove %s/%s: %s", dir, names[i], strerror(errno));
            return err;
        }
    }
    return 0;
}

/* Issues a new key and certificate for cfg from ca/ca_key and puts them in place. */
static int
reissue(const struct tdm_config *cfg, const char *dir, X509 *ca, EVP_PKEY *ca_key, uid_t owner,
        gid_t group, char **error_r)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key ? tls__make_cert(key, cfg->server, TLS__SERVER_DAYS, ca, ca_key, cfg) : NULL;
    BIO *key_pem = BIO_new(BIO_s_secmem()), *cert_pem = BIO_new(BIO_s_mem());
    bool ok = cert && key_pem && cert_pem &&
              PEM_write_bio_PrivateKey(key_pem, key, NULL, NULL, 0, NULL, NULL) &&
              PEM_write_bio_X509(cert_pem, cert);
    X509_free(cert);
    EVP_PKEY_free(key);
    int ret = 0;
    if (!ok) {
        *error_r = tls__ssl_error("cannot create a new certificate for %s", cfg->server);
        ret = TDM_EINVAL;
    }
    int dfd = -1;
    if (ret == 0 && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        ret = -errno;
        *error_r = tls__fmt("cannot open %s: %s", dir, strerror(errno));
    }
    if (ret == 0 && (ret = clear_tmp(dfd, dir, error_r)) == 0 &&
        (ret = tls__write_file(dfd, dir, KEY_TMP, key_pem, 0600, owner, group, error_r)) == 0 &&
        (ret = tls__write_file(dfd, dir, CERT_TMP, cert_pem, 0644, owner, group, error_r)) == 0) {
        /* Key first: see the top of the file for what a crash between the two leaves. */
        if (renameat(dfd, KEY_TMP, dfd, TLS_SERVER_KEY_NAME) < 0 ||
            renameat(dfd, CERT_TMP, dfd, TLS_SERVER_CERT_NAME) < 0) {
            ret = -errno;
            *error_r =
                tls__fmt("cannot put the new certificate in place in %s: %s", dir, strerror(errno));
        } else if (fsync(dfd) < 0) {
            ret = -errno;
            *error_r = tls__fmt("cannot sync directory %s: %s", dir, strerror(errno));
        }
    }
    if (ret < 0 && dfd >= 0) {
        char *ignored = NULL;
        (void)clear_tmp(dfd, dir, &ignored); /* the first error is the one to report */
        free(ignored);
    }
    if (dfd >= 0)
        close(dfd);
    BIO_free(key_pem);
    BIO_free(cert_pem);
    return ret;
}

int
tls_local_renew(const struct tdm_config *cfg, uid_t owner, gid_t group, char **reason_r,
                char **error_r)
{
    *reason_r = NULL;
    *error_r = NULL;
    if (cfg->tls.certificate)
        return 0; /* the operator's certificate is served; the local one is not used */
    char *dir = tls__fmt("%s/%s", cfg->datadir, TLS_DIR_NAME);
    char *ca_path = tls__fmt("%s/%s", dir, TLS_CA_CERT_NAME);
    char *ca_key_path = tls__fmt("%s/%s", dir, TLS_CA_KEY_NAME);
    char *srv_path = tls__fmt("%s/%s", dir, TLS_SERVER_CERT_NAME);
    char *srv_key_path = tls__fmt("%s/%s", dir, TLS_SERVER_KEY_NAME);
    X509 *ca = NULL, *srv = NULL;
    EVP_PKEY *ca_key = NULL, *srv_key = NULL;
    char *reason = NULL;
    int ret = TDM_EINVAL;

    if (!(ca = read_cert(ca_path, error_r)) || !(srv = read_cert(srv_path, error_r)) ||
        !(srv_key = read_key(srv_key_path, error_r)))
        goto out;
    /* Issued by the local CA: names chain up and the CA's key made the signature. */
    if (X509_check_issued(ca, srv) != X509_V_OK || X509_verify(srv, X509_get0_pubkey(ca)) != 1) {
        ERR_clear_error();
        ret = 0; /* not ours to renew */
        goto out;
    }
    if (!(reason = renew_reason(srv, srv_key, cfg))) {
        ret = 0;
        goto out;
    }
    if (!(ca_key = read_key(ca_key_path, error_r)))
        goto out;
    if (X509_check_private_key(ca, ca_key) != 1) {
        *error_r = tls__ssl_error("cannot renew %s (%s): %s does not match %s", srv_path, reason,
                                  ca_key_path, ca_path);
        goto out;
    }
    if ((ret = reissue(cfg, dir, ca, ca_key, owner, group, error_r)) == 0) {
        *reason_r = reason;
        reason = NULL;
    }
out:
    free(reason);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(ca_key);
    X509_free(srv);
    X509_free(ca);
    free(srv_key_path);
    free(srv_path);
    free(ca_key_path);
    free(ca_path);
    free(dir);
    return ret;
}

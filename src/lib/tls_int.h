#ifndef TANDEM_LIB_TLS_INT_H
#define TANDEM_LIB_TLS_INT_H

/* What tls.c, tls_cert.c, tls_local.c and tls_renew.c share. */

#include "lib/config.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/types.h>

/* Validity. Leap days are counted so "10 years" does not end days early. */
#define TLS__CA_DAYS (10 * 365 + 3)
#define TLS__SERVER_DAYS (2 * 365 + 1)
/* A server certificate with less than this left is renewed at start (tls_local_renew). */
#define TLS__RENEW_DAYS 30
/* notBefore is set this far in the past, so a peer whose clock runs a little behind still
 * accepts a certificate created a moment ago. */
#define TLS__BACKDATE_SECONDS 3600

#define TLS__MAX_SAN_ADDRS (TDM_CONFIG_MAX_NETWORKS + TDM_PROTO_COUNT + TDM_CONFIG_MAX_CMS)

/* An allocated message; allocation failure is fatal (CONVENTIONS: xmalloc outside store). */
char *tls__fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * An allocated message "<what>: <reasons>", the reasons taken (and removed) from OpenSSL's
 * error queue of this thread, or "<what>" alone when the queue is empty. The queue is always
 * left empty, so a later failure never reports an older reason.
 */
char *tls__ssl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- tls_cert.c ---- */

/*
 * The addresses a server certificate for cfg names: every distinct address of its networks,
 * listeners and CMSs (copies and clients reach a CMS's address, docs/cluster.md), in that
 * order, without the wildcard addresses (0.0.0.0, ::), which no peer can
 * connect to. addrs_r has room for TLS__MAX_SAN_ADDRS; the pointers borrow from cfg. Returns
 * how many.
 */
unsigned tls__san_addrs(const struct tdm_config *cfg, const struct tdm_config_addr **addrs_r);

/*
 * A certificate for key with common name cn, valid days, signed by issuer_key with issuer's
 * name; issuer NULL means a self-signed CA certificate, otherwise a server certificate for cfg
 * (subjectAltName DNS:cfg->server plus tls__san_addrs). Returns an owned X509 or NULL with the
 * reason in OpenSSL's error queue.
 */
X509 *tls__make_cert(EVP_PKEY *key, const char *cn, long days, X509 *issuer, EVP_PKEY *issuer_key,
                     const struct tdm_config *cfg);

/* ---- tls_local.c: file helpers ---- */

/* fsyncs the directory path. Returns 0 or -errno with *error_r. */
int tls__fsync_dir(const char *path, char **error_r);

/* fchown unless both are -1. Returns 0 or -1 with errno. */
int tls__chown_fd(int fd, uid_t owner, gid_t group);

/*
 * Creates dir/name (dfd is dir, open; name must not exist) with mode and owner/group, writes
 * the memory BIO data into it and fsyncs it. Returns 0 or -errno with *error_r.
 */
int tls__write_file(int dfd, const char *dir, const char *name, BIO *data, mode_t mode, uid_t owner,
                    gid_t group, char **error_r);

#endif

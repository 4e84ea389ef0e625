/*
 * TLS contexts for both ends of a connection, and the files they are built from (lib/tls.h).
 * The local CA itself is created in tls_local.c.
 *
 * Both ends refuse anything below TLS 1.2 (1.0 and 1.1 are deprecated by RFC 8996) and leave
 * cipher choice to OpenSSL's defaults, which Debian configures system-wide (SECLEVEL 2): a
 * cipher list of our own would only age worse than the distribution's.
 */
#include "lib/tls.h"

#include "lib/err.h"
#include "lib/log.h"
#include "lib/tls_int.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages ------------------------------------------------------------------------------ */

__attribute__((format(printf, 1, 0))) static char *
vfmt(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        log_fatal("out of memory");
    return s;
}

char *
tls__fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vfmt(fmt, ap);
    va_end(ap);
    return s;
}

char *
tls__ssl_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *what = vfmt(fmt, ap);
    va_end(ap);

    /* The queue lists the innermost reason first ("No such file or directory", then "system
     * lib", then "PEM lib"); all of them joined read as a person would want them. A cap keeps
     * a long queue from making a message nobody reads to the end. */
    char reasons[512] = "";
    size_t used = 0;
    unsigned n = 0;
    const char *data;
    int flags;
    unsigned long e;
    while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
        if (n++ >= 4 || used >= sizeof(reasons) - 1)
            continue; /* keep draining: the queue must end empty */
        char one[256];
        const char *r = ERR_reason_error_string(e);
        if (!r) {
            ERR_error_string_n(e, one, sizeof(one));
            r = one;
        }
        int w = snprintf(reasons + used, sizeof(reasons) - used, "%s%s%s%s%s", used ? "; " : "", r,
                         (flags & ERR_TXT_STRING) && data[0] ? " (" : "",
                         (flags & ERR_TXT_STRING) ? data : "",
                         (flags & ERR_TXT_STRING) && data[0] ? ")" : "");
        used = w < 0 ? used : used + (size_t)w;
        if (used > sizeof(reasons) - 1)
            used = sizeof(reasons) - 1;
    }
    if (!reasons[0])
        return what;
    char *s = tls__fmt("%s: %s", what, reasons);
    free(what);
    return s;
}

/* ---- files --------------------------------------------------------------------------------- */

void
tls_files_from_config(const struct tdm_config *cfg, struct tls_files *files_r)
{
    const char *d = cfg->datadir;
    const char *t = TLS_DIR_NAME;
    files_r->certificate = cfg->tls.certificate ? tls__fmt("%s", cfg->tls.certificate)
                                                : tls__fmt("%s/%s/%s", d, t, TLS_SERVER_CERT_NAME);
    files_r->key = cfg->tls.key ? tls__fmt("%s", cfg->tls.key)
                                : tls__fmt("%s/%s/%s", d, t, TLS_SERVER_KEY_NAME);
    files_r->ca =
        cfg->tls.ca ? tls__fmt("%s", cfg->tls.ca) : tls__fmt("%s/%s/%s", d, t, TLS_CA_CERT_NAME);
}

void
tls_files_clear(struct tls_files *files)
{
    free(files->certificate);
    free(files->key);
    free(files->ca);
    *files = (struct tls_files){0};
}

char *
tls_server_ca_file(const struct tdm_config *cfg)
{
    if (!cfg->tls.certificate)
        return tls__fmt("%s/%s/%s", cfg->datadir, TLS_DIR_NAME, TLS_CA_CERT_NAME);
    return cfg->tls.ca ? tls__fmt("%s", cfg->tls.ca) : NULL;
}

bool
tls_local_needed(const struct tdm_config *cfg)
{
    /* config.c guarantees certificate and key come together. */
    return !cfg->tls.certificate || !cfg->tls.ca;
}

/* ---- contexts ------------------------------------------------------------------------------ */

/* A context of method with the floor every tandem connection shares. */
static SSL_CTX *
ctx_base(const SSL_METHOD *method, char **error_r)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        *error_r = tls__ssl_error("cannot create a TLS context");
        return NULL;
    }
    /* Renegotiation is a DoS lever and nothing here needs it (TLS 1.3 dropped it). */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !(SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION) & SSL_OP_NO_RENEGOTIATION)) {
        *error_r = tls__ssl_error("cannot set the TLS version floor");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Loads the chain and key into ctx and checks they belong together. */
static int
load_identity(SSL_CTX *ctx, const char *cert_file, const char *key_file, char **error_r)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *error_r = tls__ssl_error("cannot load certificate %s", cert_file);
        return TDM_EINVAL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        *error_r = tls__ssl_error("cannot load private key %s", key_file);
        return TDM_EINVAL;
    }
    /* use_PrivateKey already refuses most mismatches; checking again costs nothing and
     * states the rule where a reader looks for it. */
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *error_r =
            tls__ssl_error("private key %s does not match certificate %s", key_file, cert_file);
        return TDM_EINVAL;
    }
    return 0;
}

static int
load_ca(SSL_CTX *ctx, const char *ca_file, char **error_r)
{
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        *error_r = tls__ssl_error("cannot load CA certificates %s", ca_file);
        return TDM_EINVAL;
    }
    return 0;
}

int
tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                   enum tls_client_auth client_auth, SSL_CTX **ctx_r, char **error_r)
{
    *ctx_r = NULL;
    *error_r = NULL;
    if (client_auth != TLS_CLIENT_AUTH_NONE && !ca_file) {
        *error_r = tls__fmt("client certificates are requested but no CA file is given");
        return TDM_EINVAL;
    }
    SSL_CTX *ctx = ctx_base(TLS_server_method(), error_r);
    if (!ctx)
        return TDM_EINVAL;
    int ret = load_identity(ctx, cert_file, key_file, error_r);
    if (ret == 0 && client_auth != TLS_CLIENT_AUTH_NONE) {
        ret = load_ca(ctx, ca_file, error_r);
        /* The CA names in the CertificateRequest tell a client with several certificates
         * which one to send. */
        STACK_OF(X509_NAME) *names = ret == 0 ? SSL_load_client_CA_file(ca_file) : NULL;
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        else
            ERR_clear_error(); /* a CA file without names only costs the hint */
        int mode = SSL_VERIFY_PEER;
        if (client_auth == TLS_CLIENT_AUTH_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        /* Without a session id context, resuming a session whose client was verified fails
         * the handshake (OpenSSL refuses to guess the context). */
        static const unsigned char sid_ctx[] = "tandem";
        if (ret == 0 && SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
            *error_r = tls__ssl_error("cannot set the session id context");
            ret = TDM_EINVAL;
        }
    }
    if (ret < 0) {
        SSL_CTX_free(ctx);
        return ret;
    }
    *ctx_r = ctx;
    return 0;
}

int
tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                   SSL_CTX **ctx_r, char **error_r)
{
    *ctx_r = NULL;
    *error_r = NULL;
    if (!ca_file) {
        *error_r = tls__fmt("no CA file to verify the server against");
        return TDM_EINVAL;
    }
    if (!cert_file != !key_file) {
        *error_r = tls__fmt("a client certificate needs both a certificate and a key file");
        return TDM_EINVAL;
    }
    SSL_CTX *ctx = ctx_base(TLS_client_method(), error_r);
    if (!ctx)
        return TDM_EINVAL;
    int ret = load_ca(ctx, ca_file, error_r);
    if (ret == 0 && cert_file)
        ret = load_identity(ctx, cert_file, key_file, error_r);
    if (ret < 0) {
        SSL_CTX_free(ctx);
        return ret;
    }
    /* A peer that does not verify ends the handshake: a client never talks to an unverified
     * server, so there is no mode that would let one through. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    *ctx_r = ctx;
    return 0;
}

int
tls_client_ssl_new(SSL_CTX *ctx, const char *peer, SSL **ssl_r, char **error_r)
{
    *ssl_r = NULL;
    *error_r = NULL;
    if (!peer || !peer[0]) {
        /* Verifying the chain without the name would accept any certificate the CA signed. */
        *error_r = tls__fmt("no peer name or address to check the certificate against");
        return TDM_EINVAL;
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        *error_r = tls__ssl_error("cannot create a TLS connection");
        return TDM_EINVAL;
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, peer, addr) == 1 || inet_pton(AF_INET6, peer, addr) == 1;
    int ok;
    if (is_ip) {
        /* An address is checked against IP subjectAltNames only, and never sent as SNI
         * (RFC 6066 forbids literal addresses there). */
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, peer);
    } else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = X509_VERIFY_PARAM_set1_host(param, peer, 0) && SSL_set_tlsext_host_name(ssl, peer);
    }
    if (!ok) {
        *error_r = tls__ssl_error("cannot check the peer's certificate against \"%s\"", peer);
        SSL_free(ssl);
        return TDM_EINVAL;
    }
    SSL_set_connect_state(ssl);
    *ssl_r = ssl;
    return 0;
}

char *
tls_handshake_error(const SSL *ssl)
{
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        ERR_clear_error(); /* the queue only repeats "certificate verify failed" */
        return tls__fmt("certificate verify failed: %s", X509_verify_cert_error_string(v));
    }
    if (ERR_peek_error() == 0)
        return tls__fmt("TLS handshake failed: the connection was closed");
    return tls__ssl_error("TLS handshake failed");
}

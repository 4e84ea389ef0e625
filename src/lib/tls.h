#ifndef TANDEM_LIB_TLS_H
#define TANDEM_LIB_TLS_H

/*
 * TLS for the admin API and replication (OpenSSL 3): the local CA and server certificate that
 * tandemd creates at first start, the files in force ([tls] in the config, or those local
 * ones), and SSL_CTX constructors for both ends of a connection. Only src/lib/conn and the
 * programs' connection code touch sockets; this module never does.
 *
 * The local set lives in <datadir>/tls/ (docs/tandemd.md, "TLS"):
 *   ca.pem      the local CA certificate: EC P-256, 10 years, CN "tandem local CA <server>",
 *               basicConstraints CA:TRUE (critical), keyUsage keyCertSign + cRLSign
 *   ca.key      its private key (PKCS#8 PEM, mode 0600)
 *   server.pem  the server certificate the CA signs: EC P-256, 2 years, CN <server>,
 *               subjectAltName DNS:<server> + IP:<every address of [network]s and listeners>,
 *               extendedKeyUsage serverAuth + clientAuth (the same certificate authenticates
 *               this server to peers when it replicates)
 *   server.key  its private key (mode 0600)
 *
 * Errors: every function that can fail returns 0 or a negative code (-errno, TDM_E*) and
 * writes *error_r, an allocated message for a person that the caller frees (NULL only when
 * even that allocation failed). OpenSSL's reasons are taken from its error queue, which is
 * left empty afterwards.
 */

#include "lib/config.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/types.h>

/* File names inside <datadir>/tls/. */
#define TLS_DIR_NAME "tls"
#define TLS_CA_CERT_NAME "ca.pem"
#define TLS_CA_KEY_NAME "ca.key"
#define TLS_SERVER_CERT_NAME "server.pem"
#define TLS_SERVER_KEY_NAME "server.key"

/* The files in force for this server: [tls] certificate/key/ca, or the local set. */
struct tls_files {
    char *certificate; /* PEM chain presented to peers (leaf first) */
    char *key;         /* its private key */
    char *ca;          /* CA certificates that peers' certificates are checked against */
};

/*
 * Fills *files_r (owned strings; release with tls_files_clear) from cfg: each path is the
 * [tls] key when given, else <datadir>/tls/<file>. Allocation failure is fatal (xmalloc).
 */
void tls_files_from_config(const struct tdm_config *cfg, struct tls_files *files_r);

/* Frees the strings and zeroes *files. */
void tls_files_clear(struct tls_files *files);

/*
 * The CA file a client needs to trust this server (what tandemctl --ca wants): the local
 * ca.pem while the server presents the local certificate, even when [tls] ca names another CA
 * for peers (that one checks peers; it did not sign this server); [tls] ca with the operator's
 * certificate, assuming their CA issued both; NULL with the operator's certificate and no
 * [tls] ca, when only the operator knows. Allocated (the caller frees); allocation failure is
 * fatal.
 */
char *tls_server_ca_file(const struct tdm_config *cfg);

/* Whether cfg uses any file of the local set (so tls_local_ensure must run at start). */
bool tls_local_needed(const struct tdm_config *cfg);

/*
 * Makes sure <datadir>/tls/ holds the complete local set for cfg->server and the addresses of
 * cfg's networks and listeners. When none of the four files exists, creates the directory
 * (0750) and all four (keys 0600, certificates 0644), each written to a temporary name,
 * fsynced, renamed, then the directory fsynced, so a crash leaves either no file or a whole
 * one; *created_r is then true. When all four exist, changes nothing but their owner
 * (*created_r false): an existing CA is never regenerated, because peers and tandemctl may
 * trust it. When some but
 * not all exist, fails with TDM_EINVAL and a message naming the missing files.
 *
 * owner/group: when not (uid_t)-1 / (gid_t)-1, the directory and the files, new or existing,
 * are chowned to them (a supervisor started as root gives them to the user it drops to, also
 * when an earlier run as another user made them).
 *
 * Returns 0, -errno (file system) or TDM_EINVAL (incomplete set, OpenSSL failure), with
 * *error_r on failure. On failure no temporary file is left behind.
 */
int tls_local_ensure(const struct tdm_config *cfg, uid_t owner, gid_t group, bool *created_r,
                     char **error_r);

/*
 * After tls_local_ensure: renews the local server certificate (and its key) from the local CA,
 * which stays as it is, so whoever trusts ca.pem keeps trusting the server. Renews only a
 * server.pem that ca.pem issued, and only when server.key does not match it, its names (CN,
 * DNS and IP subjectAltNames) are not exactly those tls_local_ensure would give it now, or it
 * expires within 30 days. Does nothing when cfg names the operator's certificate. Files are
 * written as in tls_local_ensure (fsynced, renamed, directory fsynced; owner/group likewise).
 *
 * Returns 0 with *reason_r NULL (nothing to do) or an allocated reason for a person ("it
 * expires in 12 days"; the caller frees); or TDM_EINVAL (unreadable file, ca.key not matching
 * ca.pem, OpenSSL failure) or -errno, with *error_r.
 */
int tls_local_renew(const struct tdm_config *cfg, uid_t owner, gid_t group, char **reason_r,
                    char **error_r);

/* Who must present a certificate to a server context. */
enum tls_client_auth {
    TLS_CLIENT_AUTH_NONE,     /* no certificate requested (people: password over TLS) */
    TLS_CLIENT_AUTH_OPTIONAL, /* requested, and verified against ca_file when presented */
    TLS_CLIENT_AUTH_REQUIRE,  /* a certificate verified against ca_file, or no handshake */
};

/*
 * A server context: TLS 1.2 or later, the certificate chain in cert_file and the key in
 * key_file, checked to match. ca_file is needed (and only read) when client_auth is not NONE.
 * Returns 0 and an owned *ctx_r (SSL_CTX_free), or TDM_EINVAL with *error_r naming the file
 * and OpenSSL's reason.
 */
int tls_server_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                       enum tls_client_auth client_auth, SSL_CTX **ctx_r, char **error_r);

/*
 * A client context: TLS 1.2 or later, the peer's certificate verified against ca_file (a
 * handshake with an unverified peer fails). cert_file and key_file, both or neither (NULL),
 * give a client certificate (a server replicating from another). Returns 0 and an owned
 * *ctx_r (SSL_CTX_free), or TDM_EINVAL with *error_r.
 */
int tls_client_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                       SSL_CTX **ctx_r, char **error_r);

/*
 * A client connection object for ctx that checks the peer's certificate names peer: an IP
 * literal (v4, or v6 without brackets) is matched against the certificate's IP
 * subjectAltNames, anything else is a host name matched against its DNS names (and sent as
 * SNI). Returns 0 and an owned
 * *ssl_r (SSL_free; or hand it to bufferevent_openssl_socket_new with
 * BEV_OPT_CLOSE_ON_FREE), or TDM_EINVAL with *error_r.
 */
int tls_client_ssl_new(SSL_CTX *ctx, const char *peer, SSL **ssl_r, char **error_r);

/*
 * Describes why a handshake on ssl failed, for a person: the certificate verification result
 * when that was the reason ("certificate verify failed: unable to get local issuer
 * certificate"), else OpenSSL's error queue (which is emptied), else "the connection was closed".
 * Returns an allocated string the caller frees.
 */
char *tls_handshake_error(const SSL *ssl);

#endif

/*
 * The certificates of the local set (lib/tls.h lists their contents; docs/decisions.md says why
 * these choices). Everything here builds values in memory; tls_local.c and tls_renew.c write
 * them.
 */
#include "lib/tls.h"
#include "lib/tls_int.h"

#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <string.h>

/*
 * A random positive serial of 126 bits: unique without any state to keep (RFC 5280 asks for
 * unique serials per CA, and at most 20 octets), and unpredictable, which is what the
 * CA/Browser Forum asks of public CAs for the same reason (chosen-prefix collisions).
 */
static int
set_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, and never a short encoding */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = serial && X509_set_serialNumber(x, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok ? 0 : -1;
}

static int
add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static bool
addr_unspecified(const struct tdm_config_addr *a)
{
    static const unsigned char zero[16];
    return memcmp(a->bytes, zero, a->family == AF_INET ? 4 : 16) == 0;
}

unsigned
tls__san_addrs(const struct tdm_config *cfg, const struct tdm_config_addr **addrs_r)
{
    unsigned n = 0;
    unsigned n_fixed = cfg->n_networks + cfg->n_listeners;
    for (unsigned i = 0; i < n_fixed + cfg->n_cms; i++) {
        const struct tdm_config_addr *a =
            i < cfg->n_networks ? &cfg->networks[i].address
            : i < n_fixed       ? &cfg->listeners[i - cfg->n_networks].address
                                : &cfg->cms[i - n_fixed].address;
        if (a->family == 0 || addr_unspecified(a))
            continue;
        bool seen = false;
        for (unsigned j = 0; j < n; j++)
            seen |= addrs_r[j]->family == a->family &&
                    !memcmp(addrs_r[j]->bytes, a->bytes, a->family == AF_INET ? 4 : 16);
        if (!seen)
            addrs_r[n++] = a;
    }
    return n;
}

static int
push_name(GENERAL_NAMES *gens, int type, const void *data, int len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *s = type == GEN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
    if (!g || !s || !ASN1_STRING_set(s, data, len)) {
        GENERAL_NAME_free(g);
        ASN1_STRING_free(s);
        return -1;
    }
    GENERAL_NAME_set0_value(g, type, s);
    if (!sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        return -1;
    }
    return 0;
}

/*
 * subjectAltName: DNS:<server> and IP:<address> for every distinct address the server has on
 * its networks and listeners. Wildcard listeners (0.0.0.0, ::) are no address a peer can
 * connect to and are left out. Built as GENERAL_NAMEs rather than a "DNS:..,IP:.." string so
 * no value is ever parsed.
 */
static int
add_san(X509 *x, const struct tdm_config *cfg)
{
    const struct tdm_config_addr *addrs[TLS__MAX_SAN_ADDRS];
    unsigned n = tls__san_addrs(cfg, addrs);
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int ret = gens ? push_name(gens, GEN_DNS, cfg->server, (int)strlen(cfg->server)) : -1;
    for (unsigned i = 0; ret == 0 && i < n; i++)
        ret = push_name(gens, GEN_IPADD, addrs[i]->bytes, addrs[i]->family == AF_INET ? 4 : 16);
    if (ret == 0 && X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
        ret = -1;
    GENERAL_NAMES_free(gens);
    return ret;
}

/*
 * A certificate for key with common name cn, valid days, signed by issuer_key; issuer NULL
 * means self-signed (the CA). The CA's extensions make it a CA that can sign only
 * certificates (and CRLs, should revocation ever be needed); the server's make it a leaf for
 * TLS servers and clients.
 */
X509 *
tls__make_cert(EVP_PKEY *key, const char *cn, long days, X509 *issuer, EVP_PKEY *issuer_key,
               const struct tdm_config *cfg)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = x && name && X509_set_version(x, X509_VERSION_3) && set_serial(x) == 0 &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                         -1, 0) &&
              X509_set_subject_name(x, name) &&
              X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) &&
              X509_gmtime_adj(X509_getm_notBefore(x), -TLS__BACKDATE_SECONDS) &&
              X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) &&
              X509_set_pubkey(x, key);
    X509_NAME_free(name);
    if (ok) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
        if (issuer) {
            ok = add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
                 add_ext(x, &v3, NID_key_usage, "critical,digitalSignature") == 0 &&
                 add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
                 add_san(x, cfg) == 0;
        } else {
            ok = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
                 add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
        }
        /* The key identifiers let a verifier pick the right CA certificate after a CA is
         * renewed with the same name. */
        ok = ok && add_ext(x, &v3, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") == 0;
    }
    if (ok)
        ok = X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

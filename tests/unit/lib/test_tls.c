/*
 * TLS (src/lib/tls.c, tls_local.c): the local CA set created in a scratch datadir and checked
 * with OpenSSL's own verifier (chain, names, purposes, validity, permissions), kept across
 * calls, refused when incomplete; the contexts' errors; and real handshakes between a server
 * and a client context over a socketpair, good ones and ones that must fail.
 */
#include "lib/tls.h"

#include "lib/err.h"
#include "scratch.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

struct fixture {
    char dir[256];
    struct tdm_config *cfg;
};

/* A config for server mbx1 with datadir <dir>/<sub>: two networks (one IPv6), a listener on
 * a literal address, and one on the wildcard address, which must not become a SAN. */
static struct tdm_config *
config_for(const char *dir, const char *sub, const char *extra)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server = mbx1\nsite = dc1\ndatadir = %s/%s\nroles = directory\n"
                         "[network public]\naddress = 127.0.1.1\n"
                         "[network replication]\naddress = fd00::7\n"
                         "[listen admin]\naddress = 127.0.0.1\nport = 8441\n"
                         "[listen imap]\naddress = 0.0.0.0\nport = 1143\n"
                         "[listen lmtp]\nnetwork = public\nport = 1024\n%s",
                         dir, sub, extra) > 0);
    struct tdm_config *cfg = NULL;
    char *error = NULL;
    if (tdm_config_load_buffer(text, strlen(text), "test.conf", &cfg, &error) != 0)
        fail_msg("config: %s", error);
    free(text);
    return cfg;
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(scratch_make(f->dir, sizeof(f->dir), "tls"), 0);
    f->cfg = config_for(f->dir, "data", "");
    assert_int_equal(mkdir(f->cfg->datadir, 0750), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    tdm_config_free(&f->cfg);
    assert_int_equal(scratch_remove(f->dir), 0);
    free(f);
    /* Every failure path must have drained OpenSSL's queue (tls.h promises it). */
    assert_int_equal(ERR_peek_error(), 0);
    return 0;
}

static char *
path_in(const struct tdm_config *cfg, const char *name)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/tls/%s", cfg->datadir, name) > 0);
    return p;
}

static void
ensure_ok(const struct tdm_config *cfg, bool want_created)
{
    bool created = !want_created;
    char *error = NULL;
    int r = tls_local_ensure(cfg, (uid_t)-1, (gid_t)-1, &created, &error);
    if (r != 0)
        fail_msg("tls_local_ensure: %d %s", r, error);
    assert_null(error);
    assert_int_equal(created, want_created);
}

static X509 *
read_cert(const struct tdm_config *cfg, const char *name)
{
    char *p = path_in(cfg, name);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    assert_non_null(x);
    fclose(fp);
    free(p);
    return x;
}

/* The whole file, malloc'd and NUL-terminated. */
static char *
slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, fp);
    assert_true(n > 0 && n < 65535);
    fclose(fp);
    return buf;
}

static bool
has_ip_san(X509 *x, const char *ip)
{
    return X509_check_ip_asc(x, ip, 0) == 1;
}

/* Whole days from now until t (negative when t is past). */
static int
days_from_now(const ASN1_TIME *t)
{
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
    return days;
}

/* ---- the local set --------------------------------------------------------------------- */

static void
test_create_and_verify(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);

    /* Permissions: keys only for the owner; certificates readable; the directory 0750. */
    static const struct {
        const char *name;
        mode_t mode;
    } modes[] = {{"ca.pem", 0644}, {"ca.key", 0600}, {"server.pem", 0644}, {"server.key", 0600}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char *p = path_in(f->cfg, modes[i].name);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        if ((st.st_mode & 07777) != modes[i].mode)
            fail_msg("%s has mode %o", p, st.st_mode & 07777);
        free(p);
    }
    char *tlsdir = path_in(f->cfg, "");
    struct stat st;
    assert_int_equal(stat(tlsdir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    free(tlsdir);
    char *staging = NULL;
    assert_true(asprintf(&staging, "%s/tls.new", f->cfg->datadir) > 0);
    assert_int_equal(access(staging, F_OK), -1); /* nothing left beside it */
    free(staging);

    X509 *ca = read_cert(f->cfg, "ca.pem");
    X509 *srv = read_cert(f->cfg, "server.pem");

    /* The CA: a CA (critical basicConstraints), signing only certificates and CRLs. */
    assert_int_equal(X509_check_ca(ca), 1);
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(ca, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_false(X509_get_key_usage(ca) & KU_DIGITAL_SIGNATURE);
    char cn[128];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "tandem local CA mbx1");
    int ca_days = days_from_now(X509_get0_notAfter(ca));
    assert_true(ca_days >= 3650 && ca_days <= 3654);
    assert_true(days_from_now(X509_get0_notBefore(ca)) <= 0);

    /* The server certificate: not a CA, names and purposes as promised. */
    assert_int_equal(X509_check_ca(srv), 0);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(srv), NID_commonName, cn, sizeof(cn)) > 0);
    assert_string_equal(cn, "mbx1");
    assert_int_equal(X509_check_host(srv, "mbx1", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(srv, "mbx2", 0, 0, NULL), 0);
    assert_true(has_ip_san(srv, "127.0.1.1"));
    assert_true(has_ip_san(srv, "fd00::7"));
    assert_true(has_ip_san(srv, "127.0.0.1"));
    assert_false(has_ip_san(srv, "0.0.0.0"));
    assert_false(has_ip_san(srv, "127.0.0.2"));
    GENERAL_NAMES *gens = X509_get_ext_d2i(srv, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    /* DNS:mbx1 + 3 distinct addresses; the lmtp listener's network address is not repeated. */
    assert_int_equal(sk_GENERAL_NAME_num(gens), 4);
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_check_purpose(srv, X509_PURPOSE_SSL_SERVER, 0), 1);
    assert_int_equal(X509_check_purpose(srv, X509_PURPOSE_SSL_CLIENT, 0), 1);
    int srv_days = days_from_now(X509_get0_notAfter(srv));
    assert_true(srv_days >= 730 && srv_days <= 731);

    /* Serials: positive, random, so the two differ. */
    const ASN1_INTEGER *s1 = X509_get0_serialNumber(ca), *s2 = X509_get0_serialNumber(srv);
    assert_int_equal(ASN1_STRING_type(s1), V_ASN1_INTEGER);
    assert_int_equal(ASN1_STRING_type(s2), V_ASN1_INTEGER);
    assert_int_not_equal(ASN1_INTEGER_cmp(s1, s2), 0);

    /* The chain verifies with OpenSSL's verifier, as a TLS client would check it. */
    X509_STORE *store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(vctx, store, srv, NULL), 1);
    X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
    if (X509_verify_cert(vctx) != 1)
        fail_msg("verify: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);

    /* A server certificate from another datadir's CA does not verify against this CA. */
    struct tdm_config *other = config_for(f->dir, "other", "");
    assert_int_equal(mkdir(other->datadir, 0750), 0);
    ensure_ok(other, true);
    X509 *other_ca = read_cert(other, "ca.pem");
    store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, other_ca), 1);
    vctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(vctx, store, srv, NULL), 1);
    assert_int_not_equal(X509_verify_cert(vctx), 1);
    assert_int_equal(X509_STORE_CTX_get_error(vctx), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    X509_free(other_ca);
    tdm_config_free(&other);

    X509_free(srv);
    X509_free(ca);
}

static void
test_kept_across_calls(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    char *p = path_in(f->cfg, "ca.pem"), *k = path_in(f->cfg, "ca.key");
    char *before = slurp(p), *key_before = slurp(k);
    ensure_ok(f->cfg, false);
    char *after = slurp(p), *key_after = slurp(k);
    assert_string_equal(before, after);
    assert_string_equal(key_before, key_after);
    free(before);
    free(after);
    free(key_before);
    free(key_after);
    free(p);
    free(k);
}

static void
expect_refused(const struct tdm_config *cfg, int want, const char *fragment)
{
    bool created = true;
    char *error = NULL;
    int r = tls_local_ensure(cfg, (uid_t)-1, (gid_t)-1, &created, &error);
    assert_false(created);
    assert_non_null(error);
    if (r != want || !strstr(error, fragment))
        fail_msg("got %d \"%s\", wanted %d \"...%s...\"", r, error, want, fragment);
    free(error);
}

static void
test_incomplete_refused(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    char *ca = path_in(f->cfg, "ca.pem"), *ca_key = path_in(f->cfg, "ca.key");
    char *srv_key = path_in(f->cfg, "server.key");
    char *before = slurp(ca);

    assert_int_equal(unlink(srv_key), 0);
    expect_refused(f->cfg, TDM_EINVAL, "incomplete local CA in ");
    expect_refused(f->cfg, TDM_EINVAL, "missing server.key. tandemd never replaces a CA");
    assert_int_equal(unlink(ca_key), 0);
    expect_refused(f->cfg, TDM_EINVAL, "missing ca.key, server.key.");
    /* Never regenerated: what is left is untouched, and nothing came back. */
    char *after = slurp(ca);
    assert_string_equal(before, after);
    assert_int_equal(access(srv_key, F_OK), -1);
    assert_int_equal(access(ca_key, F_OK), -1);

    free(before);
    free(after);
    free(ca);
    free(ca_key);
    free(srv_key);
}

static void
test_directory_states(void **state)
{
    struct fixture *f = *state;
    char *dir = NULL;
    assert_true(asprintf(&dir, "%s/tls", f->cfg->datadir) > 0); /* no trailing '/': a file */
    char *foreign = path_in(f->cfg, "mine.pem");
    char *staging = NULL;
    assert_true(asprintf(&staging, "%s/tls.new", f->cfg->datadir) > 0);

    /* tls is a file: refused, named. */
    int fd = open(dir, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    expect_refused(f->cfg, -ENOTDIR, "is not a directory");
    assert_int_equal(unlink(dir), 0);

    /* tls holds something else but none of ours: refused, nothing of it touched. */
    assert_int_equal(mkdir(dir, 0700), 0);
    fd = open(foreign, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    expect_refused(f->cfg, TDM_EINVAL, "holds other files but no local CA");
    assert_int_equal(access(foreign, F_OK), 0);
    assert_int_equal(unlink(foreign), 0);

    /* A staging directory left by a crash (with a half-written key) is cleared, and an
     * empty tls directory is filled. */
    assert_int_equal(mkdir(staging, 0750), 0);
    char *half = NULL;
    assert_true(asprintf(&half, "%s/ca.key", staging) > 0);
    fd = open(half, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "-----BEGIN", 10), 10);
    close(fd);
    ensure_ok(f->cfg, true);
    assert_int_equal(access(staging, F_OK), -1);
    X509 *ca = read_cert(f->cfg, "ca.pem");
    X509_free(ca);

    /* A staging directory holding something not ours is not deleted. */
    assert_int_equal(mkdir(staging, 0750), 0);
    char *stray = NULL;
    assert_true(asprintf(&stray, "%s/notes.txt", staging) > 0);
    fd = open(stray, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    ensure_ok(f->cfg, false); /* the complete set is used; staging is not even looked at */
    char *rm = path_in(f->cfg, "server.pem");
    char *ca_pem = path_in(f->cfg, "ca.pem"), *ca_key = path_in(f->cfg, "ca.key");
    char *srv_key = path_in(f->cfg, "server.key");
    assert_int_equal(unlink(rm), 0);
    assert_int_equal(unlink(ca_pem), 0);
    assert_int_equal(unlink(ca_key), 0);
    assert_int_equal(unlink(srv_key), 0);
    expect_refused(f->cfg, -ENOTEMPTY, "remove it by hand");
    assert_int_equal(access(stray, F_OK), 0);

    free(rm);
    free(ca_pem);
    free(ca_key);
    free(srv_key);
    free(stray);
    free(half);
    free(staging);
    free(foreign);
    free(dir);
}

static void
check_owner(const struct tdm_config *cfg, uid_t uid, gid_t gid)
{
    static const char *const names[] = {"", "ca.pem", "ca.key", "server.pem", "server.key"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = path_in(cfg, names[i]);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        if (st.st_uid != uid || st.st_gid != gid)
            fail_msg("%s belongs to %u:%u, not %u:%u", p, (unsigned)st.st_uid, (unsigned)st.st_gid,
                     (unsigned)uid, (unsigned)gid);
        free(p);
    }
}

static void
test_owner(void **state)
{
    struct fixture *f = *state;
    /* As root (the supervisor before the drop) the files go to the service user; as anyone
     * else chown to oneself is all that is allowed, which still runs the code path. */
    uid_t uid = geteuid() == 0 ? 65534 : geteuid();
    gid_t gid = geteuid() == 0 ? 65534 : getegid();
    bool created = false;
    char *error = NULL;
    assert_int_equal(tls_local_ensure(f->cfg, uid, gid, &created, &error), 0);
    assert_true(created);
    check_owner(f->cfg, uid, gid);

    /* A set made by a run as another user is given to the service user, not recreated. */
    struct tdm_config *other = config_for(f->dir, "other", "");
    assert_int_equal(mkdir(other->datadir, 0750), 0);
    ensure_ok(other, true);
    check_owner(other, geteuid(), getegid());
    char *ca = path_in(other, "ca.pem");
    char *before = slurp(ca);
    assert_int_equal(tls_local_ensure(other, uid, gid, &created, &error), 0);
    assert_false(created);
    check_owner(other, uid, gid);
    char *after = slurp(ca);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(ca);
    tdm_config_free(&other);
}

static void
test_files_from_config(void **state)
{
    struct fixture *f = *state;
    struct tls_files files;
    tls_files_from_config(f->cfg, &files);
    char *want = path_in(f->cfg, "server.pem");
    assert_string_equal(files.certificate, want);
    free(want);
    want = path_in(f->cfg, "server.key");
    assert_string_equal(files.key, want);
    free(want);
    want = path_in(f->cfg, "ca.pem");
    assert_string_equal(files.ca, want);
    free(want);
    tls_files_clear(&files);
    assert_null(files.certificate);
    assert_true(tls_local_needed(f->cfg));
    char *ca = tls_server_ca_file(f->cfg);
    want = path_in(f->cfg, "ca.pem");
    assert_string_equal(ca, want);
    free(want);
    free(ca);

    struct tdm_config *own =
        config_for(f->dir, "own", "[tls]\ncertificate = /c.pem\nkey = /k.pem\nca = /ca.pem\n");
    tls_files_from_config(own, &files);
    assert_string_equal(files.certificate, "/c.pem");
    assert_string_equal(files.key, "/k.pem");
    assert_string_equal(files.ca, "/ca.pem");
    tls_files_clear(&files);
    assert_false(tls_local_needed(own));
    ca = tls_server_ca_file(own);
    assert_string_equal(ca, "/ca.pem"); /* the operator's CA issued their certificate */
    free(ca);
    tdm_config_free(&own);

    /* The local certificate but another CA for peers: clients still need the local CA. */
    own = config_for(f->dir, "own", "[tls]\nca = /peers.pem\n");
    tls_files_from_config(own, &files);
    assert_string_equal(files.ca, "/peers.pem");
    tls_files_clear(&files);
    ca = tls_server_ca_file(own);
    want = path_in(own, "ca.pem");
    assert_string_equal(ca, want);
    free(want);
    free(ca);
    assert_true(tls_local_needed(own));
    tdm_config_free(&own);

    /* The operator's certificate, but peers checked against the local CA: still needed. */
    own = config_for(f->dir, "own", "[tls]\ncertificate = /c.pem\nkey = /k.pem\n");
    assert_true(tls_local_needed(own));
    assert_null(tls_server_ca_file(own)); /* only the operator knows who issued it */
    tdm_config_free(&own);
}

/* ---- renewal of the server certificate ----------------------------------------------------- */

static char *
renew_ok(const struct tdm_config *cfg)
{
    char *reason = (char *)1, *error = NULL;
    int r = tls_local_renew(cfg, (uid_t)-1, (gid_t)-1, &reason, &error);
    if (r != 0)
        fail_msg("tls_local_renew: %d %s", r, error);
    assert_null(error);
    return reason;
}

/* Fails unless server.pem verifies against ca.pem, names addr, and matches server.key. */
static void
check_server_cert(const struct tdm_config *cfg, const char *addr)
{
    X509 *ca = read_cert(cfg, "ca.pem"), *srv = read_cert(cfg, "server.pem");
    X509_STORE *store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(vctx, store, srv, NULL), 1);
    X509_STORE_CTX_set_purpose(vctx, X509_PURPOSE_SSL_SERVER);
    if (X509_verify_cert(vctx) != 1)
        fail_msg("verify: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
    X509_STORE_CTX_free(vctx);
    X509_STORE_free(store);
    assert_true(has_ip_san(srv, addr));
    char *kp = path_in(cfg, "server.key");
    FILE *fp = fopen(kp, "r");
    assert_non_null(fp);
    EVP_PKEY *key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(key);
    assert_int_equal(X509_check_private_key(srv, key), 1);
    struct stat st;
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    EVP_PKEY_free(key);
    free(kp);
    X509_free(srv);
    X509_free(ca);
    /* Nothing of the renewal is left beside them. */
    char *tmp = path_in(cfg, "server.key.new");
    assert_int_equal(access(tmp, F_OK), -1);
    free(tmp);
    tmp = path_in(cfg, "server.pem.new");
    assert_int_equal(access(tmp, F_OK), -1);
    free(tmp);
}

static void
expect_reason(char *reason, const char *fragment)
{
    if (!reason || !strstr(reason, fragment))
        fail_msg("renewal reason \"%s\", wanted \"...%s...\"", reason ? reason : "(none)",
                 fragment);
    free(reason);
}

/* Copies file name from one config's tls directory to another's. */
static void
copy_local(const struct tdm_config *from, const struct tdm_config *to, const char *name)
{
    char *a = path_in(from, name), *b = path_in(to, name);
    assert_int_equal(scratch_copy(a, b), 0);
    free(a);
    free(b);
}

static void
test_renew_on_new_address(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    assert_null(renew_ok(f->cfg)); /* a fresh certificate needs nothing */

    char *ca = path_in(f->cfg, "ca.pem"), *ca_key = path_in(f->cfg, "ca.key");
    char *srv = path_in(f->cfg, "server.pem");
    char *ca_before = slurp(ca), *ca_key_before = slurp(ca_key), *srv_before = slurp(srv);

    /* The same datadir, with one more network. */
    struct tdm_config *more =
        config_for(f->dir, "data", "[network heartbeat]\naddress = 127.0.3.9\n");
    ensure_ok(more, false);
    expect_reason(renew_ok(more), "its names differ from the configuration's");
    check_server_cert(more, "127.0.3.9");
    check_server_cert(more, "127.0.1.1");
    char *ca_after = slurp(ca), *ca_key_after = slurp(ca_key), *srv_after = slurp(srv);
    assert_string_equal(ca_before, ca_after); /* the CA is never touched */
    assert_string_equal(ca_key_before, ca_key_after);
    assert_string_not_equal(srv_before, srv_after);
    assert_null(renew_ok(more)); /* and once is enough */

    /* Back to the old configuration: an address the server no longer has is dropped too. */
    expect_reason(renew_ok(f->cfg), "its names differ");
    X509 *x = read_cert(f->cfg, "server.pem");
    assert_false(has_ip_san(x, "127.0.3.9"));
    X509_free(x);

    /* A renewal cut between its two renames: new key, old certificate. Finished next time. */
    struct tdm_config *other = config_for(f->dir, "other", "");
    assert_int_equal(mkdir(other->datadir, 0750), 0);
    ensure_ok(other, true);
    copy_local(other, f->cfg, "server.key");
    char *stale = path_in(f->cfg, "server.pem.new");
    int fd = open(stale, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    close(fd);
    expect_reason(renew_ok(f->cfg), "server.key does not match server.pem");
    check_server_cert(f->cfg, "127.0.1.1");

    /* A server.pem the local CA did not issue is not ours to renew. */
    copy_local(other, f->cfg, "server.pem");
    copy_local(other, f->cfg, "server.key");
    char *foreign_before = slurp(srv);
    struct tdm_config *more2 =
        config_for(f->dir, "data", "[network heartbeat]\naddress = 127.0.3.9\n");
    assert_null(renew_ok(more2));
    char *foreign_after = slurp(srv);
    assert_string_equal(foreign_before, foreign_after);

    /* With the operator's certificate the local one is not served, so it is left alone. */
    struct tdm_config *own =
        config_for(f->dir, "data", "[tls]\ncertificate = /c.pem\nkey = /k.pem\n");
    copy_local(f->cfg, own, "ca.pem"); /* a no-op copy: the same datadir */
    assert_null(renew_ok(own));

    free(foreign_before);
    free(foreign_after);
    free(stale);
    free(ca_before);
    free(ca_key_before);
    free(srv_before);
    free(ca_after);
    free(ca_key_after);
    free(srv_after);
    free(ca);
    free(ca_key);
    free(srv);
    tdm_config_free(&own);
    tdm_config_free(&more2);
    tdm_config_free(&other);
    tdm_config_free(&more);
}

/* Replaces server.pem with one for the same key, names and CA that ends in days. */
static void
put_short_lived_cert(const struct tdm_config *cfg, long days)
{
    X509 *ca = read_cert(cfg, "ca.pem"), *old = read_cert(cfg, "server.pem");
    char *kp = path_in(cfg, "ca.key");
    FILE *fp = fopen(kp, "r");
    assert_non_null(fp);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(ca_key);
    X509 *x = X509_new();
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    assert_int_equal(X509_set_subject_name(x, X509_get_subject_name(old)), 1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(ca)), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL));
    assert_int_equal(X509_set_pubkey(x, X509_get0_pubkey(old)), 1);
    for (int i = 0; i < X509_get_ext_count(old); i++)
        assert_int_equal(X509_add_ext(x, X509_get_ext(old, i), -1), 1);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    char *sp = path_in(cfg, "server.pem");
    fp = fopen(sp, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);
    free(sp);
    free(kp);
    X509_free(x);
    EVP_PKEY_free(ca_key);
    X509_free(old);
    X509_free(ca);
}

static void
test_renew_before_expiry(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    put_short_lived_cert(f->cfg, 31);
    assert_null(renew_ok(f->cfg)); /* 30 days and more left: not yet */
    put_short_lived_cert(f->cfg, 10);
    /* 10 days within the second it was made, 9 and some hours after. */
    char *reason = renew_ok(f->cfg);
    if (!reason ||
        (strcmp(reason, "it expires in 10 days") && strcmp(reason, "it expires in 9 days")))
        fail_msg("renewal reason \"%s\"", reason ? reason : "(none)");
    free(reason);
    check_server_cert(f->cfg, "127.0.1.1");
    X509 *x = read_cert(f->cfg, "server.pem");
    int days = days_from_now(X509_get0_notAfter(x));
    assert_true(days >= 730 && days <= 731);
    X509_free(x);
    put_short_lived_cert(f->cfg, -1);
    expect_reason(renew_ok(f->cfg), "it has expired");
    check_server_cert(f->cfg, "127.0.1.1");
}

static void
test_renew_errors(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    char *reason = NULL, *error = NULL;

    /* The CA's key replaced by another CA's: renewing is refused, naming both files. */
    struct tdm_config *other = config_for(f->dir, "other", "");
    assert_int_equal(mkdir(other->datadir, 0750), 0);
    ensure_ok(other, true);
    put_short_lived_cert(f->cfg, 5); /* signed with the right key, before the swap */
    copy_local(other, f->cfg, "ca.key");
    int r = tls_local_renew(f->cfg, (uid_t)-1, (gid_t)-1, &reason, &error);
    assert_int_equal(r, TDM_EINVAL);
    assert_null(reason);
    if (!error || !strstr(error, "ca.key does not match ") || !strstr(error, "it expires in"))
        fail_msg("got: %s", error ? error : "(nothing)");
    free(error);

    /* An unreadable certificate is named. */
    char *srv = path_in(f->cfg, "server.pem");
    FILE *fp = fopen(srv, "w");
    assert_non_null(fp);
    fputs("not a certificate\n", fp);
    fclose(fp);
    r = tls_local_renew(f->cfg, (uid_t)-1, (gid_t)-1, &reason, &error);
    assert_int_equal(r, TDM_EINVAL);
    if (!error || !strstr(error, "cannot read certificate ") || !strstr(error, "server.pem"))
        fail_msg("got: %s", error ? error : "(nothing)");
    free(error);
    free(srv);
    tdm_config_free(&other);
}

/* ---- contexts and handshakes ----------------------------------------------------------- */

static SSL_CTX *
server_ctx(const struct tdm_config *cfg, enum tls_client_auth auth)
{
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    SSL_CTX *ctx = NULL;
    char *error = NULL;
    if (tls_server_ctx_new(files.certificate, files.key, files.ca, auth, &ctx, &error) != 0)
        fail_msg("server ctx: %s", error);
    tls_files_clear(&files);
    return ctx;
}

static SSL_CTX *
client_ctx(const struct tdm_config *ca_of, const struct tdm_config *identity)
{
    struct tls_files ca, id;
    tls_files_from_config(ca_of, &ca);
    tls_files_from_config(identity ? identity : ca_of, &id);
    SSL_CTX *ctx = NULL;
    char *error = NULL;
    if (tls_client_ctx_new(ca.ca, identity ? id.certificate : NULL, identity ? id.key : NULL, &ctx,
                           &error) != 0)
        fail_msg("client ctx: %s", error);
    tls_files_clear(&ca);
    tls_files_clear(&id);
    return ctx;
}

struct outcome {
    bool ok;
    char *client_error; /* NULL when the client side succeeded */
    char *server_error;
};

/*
 * A handshake between the two contexts over a non-blocking socketpair, both ends driven in
 * turn from this thread until both finish or one fails, then one byte each way as proof.
 */
static struct outcome
handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *peer)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    SSL *s = SSL_new(sctx);
    assert_non_null(s);
    SSL_set_fd(s, sv[0]);
    SSL_set_accept_state(s);
    SSL *c = NULL;
    char *error = NULL;
    if (tls_client_ssl_new(cctx, peer, &c, &error) != 0)
        fail_msg("client ssl: %s", error);
    SSL_set_fd(c, sv[1]);

    struct outcome o = {0};
    bool s_done = false, c_done = false, failed = false;
    for (int i = 0; i < 100 && !failed && !(s_done && c_done); i++) {
        if (!c_done) {
            int r = SSL_do_handshake(c);
            int e = SSL_get_error(c, r);
            if (r == 1)
                c_done = true;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                o.client_error = tls_handshake_error(c);
                failed = true;
            }
        }
        if (!s_done) {
            int r = SSL_do_handshake(s);
            int e = SSL_get_error(s, r);
            if (r == 1)
                s_done = true;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                o.server_error = tls_handshake_error(s);
                failed = true;
            }
        }
    }
    if (!failed) {
        assert_true(s_done && c_done);
        /* TLS 1.3 servers send session tickets after the handshake: reading drains them. */
        assert_int_equal(SSL_write(c, "q", 1), 1);
        char b = 0;
        for (int i = 0; i < 10 && SSL_read(s, &b, 1) != 1; i++)
            ;
        assert_int_equal(b, 'q');
        assert_int_equal(SSL_write(s, "a", 1), 1);
        for (int i = 0; i < 10 && SSL_read(c, &b, 1) != 1; i++)
            ;
        assert_int_equal(b, 'a');
        assert_true(SSL_version(c) >= TLS1_2_VERSION);
        o.ok = true;
    } else {
        /* The side that did not fail first may still hold an alert's reason; clear it so the
         * queue check in teardown sees only what the code under test left. */
        ERR_clear_error();
    }
    SSL_free(c);
    SSL_free(s);
    close(sv[0]);
    close(sv[1]);
    return o;
}

static void
outcome_free(struct outcome *o)
{
    free(o->client_error);
    free(o->server_error);
}

static void
test_handshakes(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    struct tdm_config *other = config_for(f->dir, "other", "");
    assert_int_equal(mkdir(other->datadir, 0750), 0);
    ensure_ok(other, true);

    SSL_CTX *sctx = server_ctx(f->cfg, TLS_CLIENT_AUTH_NONE);
    SSL_CTX *cctx = client_ctx(f->cfg, NULL);

    /* By address (IP SAN) and by name (DNS SAN). */
    struct outcome o = handshake(sctx, cctx, "127.0.1.1");
    assert_true(o.ok);
    o = handshake(sctx, cctx, "fd00::7");
    assert_true(o.ok);
    o = handshake(sctx, cctx, "mbx1");
    assert_true(o.ok);

    /* A certificate the CA signed, but for other names, is refused by the client. */
    o = handshake(sctx, cctx, "127.0.0.9");
    assert_false(o.ok);
    assert_non_null(o.client_error);
    if (!strstr(o.client_error, "certificate verify failed: IP address mismatch"))
        fail_msg("got: %s", o.client_error);
    outcome_free(&o);
    o = handshake(sctx, cctx, "mbx2");
    assert_false(o.ok);
    if (!strstr(o.client_error, "certificate verify failed: hostname mismatch"))
        fail_msg("got: %s", o.client_error);
    outcome_free(&o);

    /* A client that trusts another CA refuses this server. */
    SSL_CTX *wrong = client_ctx(other, NULL);
    o = handshake(sctx, wrong, "127.0.1.1");
    assert_false(o.ok);
    if (!o.client_error || !strstr(o.client_error, "unable to get local issuer certificate"))
        fail_msg("got: %s", o.client_error ? o.client_error : "(client succeeded)");
    outcome_free(&o);
    SSL_CTX_free(wrong);
    SSL_CTX_free(sctx);

    /* Client certificates: required by the server, the server's own certificate (clientAuth)
     * passes; none, or one from another CA, fails on the server's side. */
    sctx = server_ctx(f->cfg, TLS_CLIENT_AUTH_REQUIRE);
    SSL_CTX *with_cert = client_ctx(f->cfg, f->cfg);
    o = handshake(sctx, with_cert, "mbx1");
    assert_true(o.ok);
    o = handshake(sctx, cctx, "mbx1");
    assert_false(o.ok);
    outcome_free(&o);
    SSL_CTX *foreign_cert = client_ctx(f->cfg, other);
    o = handshake(sctx, foreign_cert, "mbx1");
    assert_false(o.ok);
    if (!o.server_error || !strstr(o.server_error, "certificate verify failed"))
        fail_msg("server said: %s", o.server_error ? o.server_error : "(nothing)");
    outcome_free(&o);
    SSL_CTX_free(sctx);

    /* Optional: no certificate is fine, a bad one is not. */
    sctx = server_ctx(f->cfg, TLS_CLIENT_AUTH_OPTIONAL);
    o = handshake(sctx, cctx, "mbx1");
    assert_true(o.ok);
    o = handshake(sctx, foreign_cert, "mbx1");
    assert_false(o.ok);
    outcome_free(&o);

    SSL_CTX_free(sctx);
    SSL_CTX_free(foreign_cert);
    SSL_CTX_free(with_cert);
    SSL_CTX_free(cctx);
    tdm_config_free(&other);
}

static void
expect_ctx_error(int r, SSL_CTX *ctx, char *error, const char *fragment)
{
    assert_int_equal(r, TDM_EINVAL);
    assert_null(ctx);
    assert_non_null(error);
    if (!strstr(error, fragment))
        fail_msg("got \"%s\", wanted \"...%s...\"", error, fragment);
    free(error);
}

static void
test_ctx_errors(void **state)
{
    struct fixture *f = *state;
    ensure_ok(f->cfg, true);
    char *ca = path_in(f->cfg, "ca.pem"), *ca_key = path_in(f->cfg, "ca.key");
    char *srv = path_in(f->cfg, "server.pem"), *srv_key = path_in(f->cfg, "server.key");
    char *missing = path_in(f->cfg, "nope.pem");
    SSL_CTX *ctx = (SSL_CTX *)1;
    char *error = NULL;
    int r;

    r = tls_server_ctx_new(missing, srv_key, NULL, TLS_CLIENT_AUTH_NONE, &ctx, &error);
    expect_ctx_error(r, ctx, error, "cannot load certificate ");
    r = tls_server_ctx_new(missing, srv_key, NULL, TLS_CLIENT_AUTH_NONE, &ctx, &error);
    expect_ctx_error(r, ctx, error, "nope.pem: ");
    /* The CA's key with the server's certificate: caught at load, naming the key file. */
    r = tls_server_ctx_new(srv, ca_key, NULL, TLS_CLIENT_AUTH_NONE, &ctx, &error);
    expect_ctx_error(r, ctx, error, "ca.key");
    r = tls_server_ctx_new(srv, srv_key, NULL, TLS_CLIENT_AUTH_REQUIRE, &ctx, &error);
    expect_ctx_error(r, ctx, error, "no CA file is given");
    r = tls_server_ctx_new(srv, srv_key, missing, TLS_CLIENT_AUTH_OPTIONAL, &ctx, &error);
    expect_ctx_error(r, ctx, error, "cannot load CA certificates ");
    /* A key file that is not PEM at all. */
    r = tls_server_ctx_new(srv, ca, NULL, TLS_CLIENT_AUTH_NONE, &ctx, &error);
    expect_ctx_error(r, ctx, error, "cannot load private key ");

    r = tls_client_ctx_new(NULL, NULL, NULL, &ctx, &error);
    expect_ctx_error(r, ctx, error, "no CA file");
    r = tls_client_ctx_new(ca, srv, NULL, &ctx, &error);
    expect_ctx_error(r, ctx, error, "both a certificate and a key");
    r = tls_client_ctx_new(missing, NULL, NULL, &ctx, &error);
    expect_ctx_error(r, ctx, error, "nope.pem");

    assert_int_equal(tls_client_ctx_new(ca, NULL, NULL, &ctx, &error), 0);
    assert_null(error);
    SSL *ssl = (SSL *)1;
    assert_int_equal(tls_client_ssl_new(ctx, "", &ssl, &error), TDM_EINVAL);
    assert_null(ssl);
    assert_non_null(strstr(error, "no peer name or address"));
    free(error);
    SSL_CTX_free(ctx);

    free(ca);
    free(ca_key);
    free(srv);
    free(srv_key);
    free(missing);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_across_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_incomplete_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_from_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_on_new_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_before_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshakes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctx_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

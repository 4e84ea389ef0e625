/*
 * The local TLS files when the file system fails part-way (src/lib/tls_local.c, tls_renew.c):
 * fsync, rename and renameat are wrapped (-Wl,--wrap) to fail at a chosen call, which is where
 * a crash would also cut the sequence. After every failure what is on disk must be something
 * the next start accepts: no tls/ at all, or a complete set, and never a stray temporary; and
 * the next call must finish the job.
 */
#include "lib/tls.h"

#include "lib/err.h"
#include "scratch.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- the wrapped calls ------------------------------------------------------------------- */

int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);
int __real_renameat(int fd1, const char *from, int fd2, const char *to);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);
int __wrap_renameat(int fd1, const char *from, int fd2, const char *to);

/* Calls so far of each, and the one (1-based) that fails with EIO; 0 = none fails. */
static unsigned n_fsync, fail_fsync, n_rename, fail_rename;

int
__wrap_fsync(int fd)
{
    if (++n_fsync == fail_fsync) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

/* rename and renameat count as one sequence: the set uses one, renewal the other. */
int
__wrap_rename(const char *from, const char *to)
{
    if (++n_rename == fail_rename) {
        errno = EIO;
        return -1;
    }
    return __real_rename(from, to);
}

int
__wrap_renameat(int fd1, const char *from, int fd2, const char *to)
{
    if (++n_rename == fail_rename) {
        errno = EIO;
        return -1;
    }
    return __real_renameat(fd1, from, fd2, to);
}

static void
arm(unsigned fsync_at, unsigned rename_at)
{
    n_fsync = n_rename = 0;
    fail_fsync = fsync_at;
    fail_rename = rename_at;
}

/* ---- fixture ----------------------------------------------------------------------------- */

struct fixture {
    char dir[256];
};

static struct tdm_config *
config_in(const char *dir, const char *extra)
{
    char *text = NULL;
    assert_true(asprintf(&text,
                         "server = mbx1\nsite = dc1\ndatadir = %s/data\nroles = directory\n"
                         "[network public]\naddress = 127.0.1.1\n%s",
                         dir, extra) > 0);
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
    assert_int_equal(scratch_make(f->dir, sizeof(f->dir), "tls-faults"), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    arm(0, 0);
    assert_int_equal(scratch_remove(f->dir), 0);
    free(f);
    assert_int_equal(ERR_peek_error(), 0);
    return 0;
}

static bool
exists(const struct tdm_config *cfg, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", cfg->datadir, rel) > 0);
    bool e = access(p, F_OK) == 0;
    free(p);
    return e;
}

static int
ensure(const struct tdm_config *cfg, bool *created_r, char **error_r)
{
    return tls_local_ensure(cfg, (uid_t)-1, (gid_t)-1, created_r, error_r);
}

/* ---- creating the set ---------------------------------------------------------------------- */

static void
test_create_fails_at_every_fsync(void **state)
{
    struct fixture *f = *state;
    /* A clean run first, to learn how many fsyncs a creation makes. */
    struct tdm_config *cfg = config_in(f->dir, "");
    assert_int_equal(mkdir(cfg->datadir, 0750), 0);
    bool created = false;
    char *error = NULL;
    arm(0, 0);
    assert_int_equal(ensure(cfg, &created, &error), 0);
    unsigned total = n_fsync;
    assert_int_equal(total, 6); /* four files, the staging directory, the datadir */
    assert_int_equal(scratch_remove(cfg->datadir), 0);

    for (unsigned k = 1; k <= total; k++) {
        assert_int_equal(mkdir(cfg->datadir, 0750), 0);
        arm(k, 0);
        int r = ensure(cfg, &created, &error);
        assert_int_equal(r, -EIO);
        assert_false(created);
        if (!error || (!strstr(error, "cannot write ") && !strstr(error, "cannot sync ")))
            fail_msg("fsync %u: %s", k, error ? error : "(no message)");
        free(error);
        error = NULL;
        /* Before the rename nothing is visible; the last fsync follows the rename, so the
         * set is there, whole. Never a staging directory left over. */
        assert_false(exists(cfg, "tls.new"));
        if (k < total) {
            assert_false(exists(cfg, "tls"));
        } else {
            assert_true(exists(cfg, "tls/ca.pem") && exists(cfg, "tls/ca.key") &&
                        exists(cfg, "tls/server.pem") && exists(cfg, "tls/server.key"));
        }
        /* The next start goes on from there. */
        arm(0, 0);
        assert_int_equal(ensure(cfg, &created, &error), 0);
        assert_int_equal(created, k < total);
        assert_int_equal(scratch_remove(cfg->datadir), 0);
    }
    tdm_config_free(&cfg);
}

static void
test_create_fails_at_rename(void **state)
{
    struct fixture *f = *state;
    struct tdm_config *cfg = config_in(f->dir, "");
    assert_int_equal(mkdir(cfg->datadir, 0750), 0);
    bool created = true;
    char *error = NULL;
    arm(0, 1);
    assert_int_equal(ensure(cfg, &created, &error), -EIO);
    assert_false(created);
    assert_non_null(strstr(error, "cannot rename "));
    free(error);
    assert_false(exists(cfg, "tls"));
    assert_false(exists(cfg, "tls.new"));
    arm(0, 0);
    assert_int_equal(ensure(cfg, &created, &error), 0);
    assert_true(created);
    tdm_config_free(&cfg);
}

/* ---- renewing the server certificate ------------------------------------------------------ */

static char *
slurp(const struct tdm_config *cfg, const char *rel)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", cfg->datadir, rel) > 0);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    assert_true(fread(buf, 1, 65535, fp) > 0);
    fclose(fp);
    free(p);
    return buf;
}

static bool
key_matches(const struct tdm_config *cfg)
{
    char *cp = NULL, *kp = NULL;
    assert_true(asprintf(&cp, "%s/tls/server.pem", cfg->datadir) > 0);
    assert_true(asprintf(&kp, "%s/tls/server.key", cfg->datadir) > 0);
    FILE *fc = fopen(cp, "r"), *fk = fopen(kp, "r");
    assert_non_null(fc);
    assert_non_null(fk);
    X509 *x = PEM_read_X509(fc, NULL, NULL, NULL);
    EVP_PKEY *k = PEM_read_PrivateKey(fk, NULL, NULL, NULL);
    assert_non_null(x);
    assert_non_null(k);
    bool ok = X509_check_private_key(x, k) == 1;
    ERR_clear_error();
    fclose(fc);
    fclose(fk);
    X509_free(x);
    EVP_PKEY_free(k);
    free(cp);
    free(kp);
    return ok;
}

static void
test_renew_cut_between_renames(void **state)
{
    struct fixture *f = *state;
    struct tdm_config *cfg = config_in(f->dir, "");
    assert_int_equal(mkdir(cfg->datadir, 0750), 0);
    bool created;
    char *error = NULL, *reason = NULL;
    arm(0, 0);
    assert_int_equal(ensure(cfg, &created, &error), 0);
    struct tdm_config *more = config_in(f->dir, "[network heartbeat]\naddress = 127.0.3.1\n");
    char *ca_before = slurp(cfg, "tls/ca.pem");
    char *pem_before = slurp(cfg, "tls/server.pem");
    char *key_before = slurp(cfg, "tls/server.key");

    /* The first rename (the key) fails: nothing changed, nothing left behind. */
    arm(0, 1);
    assert_int_equal(tls_local_renew(more, (uid_t)-1, (gid_t)-1, &reason, &error), -EIO);
    assert_null(reason);
    assert_non_null(strstr(error, "cannot put the new certificate in place"));
    free(error);
    char *pem = slurp(cfg, "tls/server.pem"), *key = slurp(cfg, "tls/server.key");
    assert_string_equal(pem, pem_before);
    assert_string_equal(key, key_before);
    free(pem);
    free(key);
    assert_false(exists(cfg, "tls/server.key.new"));
    assert_false(exists(cfg, "tls/server.pem.new"));

    /* The second (the certificate) fails: a new key beside the old certificate, as a crash
     * there would leave. The next call sees the mismatch and finishes. */
    arm(0, 2);
    assert_int_equal(tls_local_renew(more, (uid_t)-1, (gid_t)-1, &reason, &error), -EIO);
    free(error);
    assert_false(key_matches(cfg));
    arm(0, 0);
    assert_int_equal(tls_local_renew(more, (uid_t)-1, (gid_t)-1, &reason, &error), 0);
    if (!reason || !strstr(reason, "server.key does not match server.pem"))
        fail_msg("reason: %s", reason ? reason : "(none)");
    free(reason);
    assert_true(key_matches(cfg));
    assert_false(exists(cfg, "tls/server.pem.new"));
    assert_int_equal(tls_local_renew(more, (uid_t)-1, (gid_t)-1, &reason, &error), 0);
    assert_null(reason);
    char *ca_after = slurp(cfg, "tls/ca.pem");
    assert_string_equal(ca_before, ca_after);

    /* A failed directory sync after both renames: reported, and the files are complete. */
    struct tdm_config *less = config_in(f->dir, "");
    arm(3, 0); /* two file fsyncs, then the directory */
    assert_int_equal(tls_local_renew(less, (uid_t)-1, (gid_t)-1, &reason, &error), -EIO);
    assert_non_null(strstr(error, "cannot sync directory"));
    free(error);
    assert_true(key_matches(cfg));

    free(ca_before);
    free(ca_after);
    free(pem_before);
    free(key_before);
    tdm_config_free(&less);
    tdm_config_free(&more);
    tdm_config_free(&cfg);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_fails_at_every_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_fails_at_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renew_cut_between_renames, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

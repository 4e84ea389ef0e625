/*
 * The copy marker file (src/repl/repl_copy_conf.c): a passive and a standby file read back,
 * sources in file order, defaults, every mistake named with file:line and key, the formatted
 * text parsing back to the same struct, and the crash-safe write read back from disk.
 */
#include "repl/repl_copy_conf.h"

#include "lib/err.h"
#include "proto/repl/repl_wire.h"

#include <errno.h>
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

static int
parse(const char *text, struct repl_copy_conf *c, char **error_r)
{
    return repl_copy_conf_parse(text, strlen(text), "copy.conf", c, error_r);
}

static void
test_passive(void **state)
{
    (void)state;
    struct repl_copy_conf c;
    char *err = NULL;
    assert_int_equal(parse("role = passive\n[source replication]\nendpoint = 127.0.2.1:7433\n"
                           "[source public]\nendpoint = [::1]:7000\n",
                           &c, &err),
                     0);
    assert_null(err);
    assert_int_equal(c.role, REPL_ROLE_PASSIVE);
    assert_string_equal(c.kind, "mail");
    assert_int_equal(c.replay_lag_ms, 0);
    assert_int_equal(c.n_sources, 2);
    assert_string_equal(c.sources[0].network, "replication");
    assert_string_equal(c.sources[0].endpoint.address.text, "127.0.2.1");
    assert_int_equal(c.sources[0].endpoint.port, 7433);
    assert_string_equal(c.sources[1].network, "public");
    assert_string_equal(c.sources[1].endpoint.address.text, "::1");
    assert_int_equal(c.sources[1].endpoint.port, 7000);
}

static void
test_standby(void **state)
{
    (void)state;
    struct repl_copy_conf c;
    char *err = NULL;
    /* A standby's lag defaults to 24 h. */
    assert_int_equal(
        parse("role = standby\nkind = directory\n[source a]\nendpoint = 10.0.0.1:1\n", &c, &err),
        0);
    assert_int_equal(c.role, REPL_ROLE_STANDBY);
    assert_string_equal(c.kind, "directory");
    assert_int_equal(c.replay_lag_ms, 24ull * 3600 * 1000);
    assert_int_equal(
        parse("role = standby\nreplay_lag = 0s\n[source a]\nendpoint = 10.0.0.1:1\n", &c, &err), 0);
    assert_int_equal(c.replay_lag_ms, 0);
    assert_int_equal(
        parse("role = standby\nreplay_lag = 7d\n[source a]\nendpoint = 10.0.0.1:1\n", &c, &err), 0);
    assert_int_equal(c.replay_lag_ms, 7ull * 24 * 3600 * 1000);
    assert_int_equal(c.truncation_lag_ms, 0);
    assert_int_equal(parse("role = passive\ntruncation_lag = 2h\n[source a]\nendpoint = "
                           "10.0.0.1:1\n",
                           &c, &err),
                     0);
    assert_int_equal(c.truncation_lag_ms, 2ull * 3600 * 1000);
}

static const struct {
    const char *text;
    const char *what; /* a fragment of the message */
} bads[] = {
    {"[source a]\nendpoint = 10.0.0.1:1\n", "copy.conf:1: key \"role\": missing"},
    {"role = active\n[source a]\nendpoint = 10.0.0.1:1\n", "copy.conf:1: key \"role\""},
    {"role = passive\n", "no [source <network>] section"},
    {"role = passive\n[source a]\n", "copy.conf:2: key \"endpoint\": missing in [source a]"},
    {"role = passive\n[source a]\n[source b]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"endpoint\": missing in [source a]"},
    {"role = passive\n[source a]\nendpoint = host:1\n", "copy.conf:3: key \"endpoint\""},
    {"role = passive\n[source a]\nendpoint = 10.0.0.1:1\nendpoint = 10.0.0.1:2\n",
     "copy.conf:4: key \"endpoint\": given twice"},
    {"role = passive\n[source a]\nendpoint = 10.0.0.1:1\n[source a]\nendpoint = 10.0.0.1:2\n",
     "copy.conf:4: section [source a]: given twice"},
    {"role = passive\n[source A]\nendpoint = 10.0.0.1:1\n", "copy.conf:2: section [source A]"},
    {"role = passive\nreplay_lag = 1h\n[source a]\nendpoint = 10.0.0.1:1\n",
     "only a standby has a replay lag"},
    {"role = standby\nreplay_lag = 8d\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"replay_lag\""},
    {"role = standby\nreplay_lag = 10081m\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"replay_lag\""}, /* the directory's limit + 1 minute */
    {"role = passive\nrole = passive\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"role\": given twice"},
    {"role = passive\ntruncation_lag = 8d\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"truncation_lag\""},
    {"role = passive\n[source a]\nendpoint = 10.0.0.1:1\ncompression = lz4\n",
     "copy.conf:4: key \"compression\""},
    {"role = passive\n[source a]\ncompression = none\ncompression = zstd\nendpoint = 10.0.0.1:1\n",
     "copy.conf:4: key \"compression\": given twice"},
    {"role = passive\ncompression = zstd\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"compression\": unknown key"},
    {"role = passive\nkind = Mail\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"kind\""},
    {"role = passive\nsource = x\n[source a]\nendpoint = 10.0.0.1:1\n",
     "copy.conf:2: key \"source\": unknown key"},
    {"role = passive\n[source a]\nendpoint = 10.0.0.1:1\nport = 1\n",
     "copy.conf:4: key \"port\": unknown key in [source a]"},
    {"role = passive\n[listen a]\nendpoint = 10.0.0.1:1\n", "copy.conf:2: section [listen]"},
    {"role = passive\n[source a\n", "copy.conf:2:"},
};

static void
test_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
        struct repl_copy_conf c;
        char *err = NULL;
        int ret = parse(bads[i].text, &c, &err);
        if (ret >= 0 || !err || !strstr(err, bads[i].what))
            fail_msg("case %zu: ret %d, message \"%s\", expected \"%s\"", i, ret,
                     err ? err : "(none)", bads[i].what);
        free(err);
    }
    /* Seventeen sources are one too many. */
    char text[4096] = "role = passive\n";
    for (int i = 0; i < 17; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "[source n%d]\nendpoint = 10.0.0.1:%d\n", i, i + 1);
    struct repl_copy_conf c;
    char *err = NULL;
    assert_int_equal(parse(text, &c, &err), TDM_ELIMIT);
    assert_non_null(strstr(err, "more than 16 sources"));
    free(err);
}

static void
test_suspended(void **state)
{
    (void)state;
    struct repl_copy_conf c, back;
    char *err = NULL;
    assert_int_equal(parse("role = passive\n[source a]\nendpoint = 10.0.0.1:1\n", &c, &err), 0);
    assert_false(c.suspended);
    assert_int_equal(parse("role = passive\nsuspended = \"swap #2, \\\"disk\\\" \\\\ \"\n"
                           "[source a]\nendpoint = 10.0.0.1:1\n",
                           &c, &err),
                     0);
    assert_true(c.suspended);
    assert_string_equal(c.suspend_comment, "swap #2, \"disk\" \\ ");
    /* The comment comes back through the file as it was. */
    char *text = repl_copy_conf_format(&c);
    assert_int_equal(parse(text, &back, &err), 0);
    assert_memory_equal(&c, &back, sizeof(c));
    free(text);
    /* Suspended without a comment is still suspended. */
    assert_int_equal(
        parse("role = passive\nsuspended = \"\"\n[source a]\nendpoint = 10.0.0.1:1\n", &c, &err),
        0);
    assert_true(c.suspended);
    assert_string_equal(c.suspend_comment, "");
}

static void
test_format_round_trip(void **state)
{
    (void)state;
    struct repl_copy_conf c, back;
    char *err = NULL;
    assert_int_equal(parse("role = standby\nreplay_lag = 90m\ntruncation_lag = 1d\n[source "
                           "replication]\nendpoint = "
                           "127.0.2.1:7433\n[source public]\ncompression = zstd\nendpoint = "
                           "[2001:db8::1]:7000\n",
                           &c, &err),
                     0);
    /* Compression is per network: asked on public only, none by default. */
    assert_int_equal(c.sources[0].compression, REPL_COMPRESSION_NONE);
    assert_int_equal(c.sources[1].compression, REPL_COMPRESSION_ZSTD);
    char *text = repl_copy_conf_format(&c);
    assert_non_null(text);
    assert_int_equal(parse(text, &back, &err), 0);
    assert_memory_equal(&c, &back, sizeof(c));
    free(text);
}

static void
test_write_read(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_repl_copy_conf.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct repl_copy_conf c, back;
    char *err = NULL;
    assert_int_equal(repl_copy_conf_read(dir, &back, &err), -ENOENT);
    assert_null(err);
    assert_int_equal(parse("role = passive\n[source r]\nendpoint = 127.0.0.1:7433\n", &c, &err), 0);
    assert_int_equal(repl_copy_conf_write(dir, &c, &err), 0);
    assert_int_equal(repl_copy_conf_read(dir, &back, &err), 0);
    assert_memory_equal(&c, &back, sizeof(c));
    /* Rewriting replaces it whole and leaves no temporary file. */
    c.sources[0].endpoint.port = 7434;
    assert_int_equal(repl_copy_conf_write(dir, &c, &err), 0);
    assert_int_equal(repl_copy_conf_read(dir, &back, &err), 0);
    assert_int_equal(back.sources[0].endpoint.port, 7434);
    char path[128];
    snprintf(path, sizeof(path), "%s/.copy.conf.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    /* A directory that does not exist: an error naming the file. */
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    assert_true(repl_copy_conf_write(missing, &c, &err) < 0);
    assert_non_null(strstr(err, "copy.conf"));
    free(err);
    snprintf(path, sizeof(path), "%s/copy.conf", dir);
    unlink(path);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passive),
        cmocka_unit_test(test_standby),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_suspended),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_write_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

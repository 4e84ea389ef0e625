/*
 * The directory client against a fake directory in the same process: an evhttp server over
 * TLS with a certificate from the local CA code, answering /v1/auth/verify and /v1/changes
 * the way docs/formats/admin-api.md says. Covers logins answered remotely then from the
 * cache, invalidation by the journal, a reset, moving past a dead endpoint, logins while the
 * directory is down (within and beyond the TTL), refused server credentials, and freeing with
 * requests in flight.
 */
#include "dirclient/dir_client.h"

#include "lib/config.h"
#include "lib/err.h"
#include "lib/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "scratch.h"
#include "tls_fixture.h"

/* ---- The fake directory ---- */

struct fake {
    struct event_base *base;
    SSL_CTX *ssl;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    uint16_t port;
    char expected_auth[256];
    unsigned verifies;   /* /v1/auth/verify requests answered */
    unsigned polls;      /* /v1/changes requests answered */
    unsigned lookups;    /* /v1/recipients requests answered */
    uint64_t last;       /* journal position it reports */
    bool reset;          /* next poll answers reset */
    char change_kind[16], change_name[64]; /* next poll carries this entry, when set */
    struct evhttp_request *held; /* a poll waiting (the long-poll) */
    struct event *release;
};

static void
reply_json(struct evhttp_request *req, int code, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, text, strlen(text));
    free(text);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static void
answer_poll(struct fake *f, struct evhttp_request *req)
{
    json_t *changes = json_array();
    if (f->change_name[0]) {
        f->last++;
        json_array_append_new(changes, json_pack("{s:I,s:s,s:s}", "seq", (json_int_t)f->last,
                                                 "kind", f->change_kind, "name",
                                                 f->change_name));
        f->change_name[0] = '\0';
    }
    json_t *doc = json_pack("{s:I,s:b,s:o}", "last", (json_int_t)f->last, "reset", f->reset,
                            "changes", changes);
    f->reset = false;
    f->polls++;
    reply_json(req, 200, doc);
}

static void
release_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fake *f = arg;
    if (f->held) {
        struct evhttp_request *req = f->held;
        f->held = NULL;
        answer_poll(f, req);
    }
}

static void
fake_cb(struct evhttp_request *req, void *arg)
{
    struct fake *f = arg;
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!auth || strcmp(auth, f->expected_auth) != 0) {
        reply_json(req, 401, json_pack("{s:{s:s}}", "error", "code", "unauthenticated"));
        return;
    }
    const char *uri = evhttp_request_get_uri(req);
    if (strcmp(uri, "/v1/auth/verify") == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1),
                                  evbuffer_get_length(in), 0, NULL);
        const char *user = json_string_value(json_object_get(body, "user"));
        const char *pw = json_string_value(json_object_get(body, "password"));
        bool ok = user && pw && strcmp(user, "alice") == 0 && strcmp(pw, "right") == 0;
        json_decref(body);
        f->verifies++;
        reply_json(req, 200, json_pack("{s:b}", "ok", ok));
        return;
    }
    if (strncmp(uri, "/v1/recipients/", 15) == 0) {
        f->lookups++;
        bool alice = strcmp(uri + 15, "alice%40x.test") == 0;
        /* A directory from before imap_port: its routes do not say. */
        bool old = strcmp(uri + 15, "old%40x.test") == 0;
        if (!alice && !old) {
            reply_json(req, 200, json_pack("{s:s}", "status", "unknown"));
            return;
        }
        json_t *route = json_pack("{s:s,s:s,s:s,s:i}", "status", "ok", "cms", "cms1", "address",
                                  "192.0.2.7", "port", alice ? 2424 : 24);
        if (alice)
            json_object_set_new(route, "imap_port", json_integer(1143));
        reply_json(req, 200,
                   json_pack("{s:s,s:s,s:s,s:o}", "status", "ok", "user", alice ? "alice" : "old",
                             "database", "db1", "route", route));
        return;
    }
    if (strncmp(uri, "/v1/changes?", 12) == 0) {
        /* Hold a poll with nothing new briefly, as the real long poll does, so the client
         * does not spin. */
        if (!f->change_name[0] && !f->reset && !f->held) {
            f->held = req;
            struct timeval tv = {0, 100000};
            evtimer_add(f->release, &tv);
            return;
        }
        answer_poll(f, req);
        return;
    }
    reply_json(req, 404, json_pack("{s:{s:s}}", "error", "code", "not-found"));
}

static struct bufferevent *
fake_bevcb(struct event_base *base, void *arg)
{
    struct fake *f = arg;
    return bufferevent_openssl_socket_new(base, -1, SSL_new(f->ssl), BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static char tmpdir[256];
static struct tls_files files;

static void
fake_start(struct fake *f, struct event_base *base)
{
    memset(f, 0, sizeof(*f));
    f->base = base;
    char *err = NULL;
    if (tls_server_ctx_new(files.certificate, files.key, NULL, TLS_CLIENT_AUTH_NONE, &f->ssl,
                           &err) < 0)
        fail_msg("server ctx: %s", err);
    f->http = evhttp_new(base);
    evhttp_set_bevcb(f->http, fake_bevcb, f);
    evhttp_set_gencb(f->http, fake_cb, f);
    f->bound = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
    assert_non_null(f->bound);
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(f->bound), (struct sockaddr *)&sin,
                                 &len),
                     0);
    f->port = ntohs(sin.sin_port);
    f->release = evtimer_new(base, release_cb, f);
    /* What the client must send: Basic base64("server/mbx1:the-key"). */
    const char *cred = "server/mbx1:the-key";
    char b64[128];
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)cred, strlen(cred),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(f->expected_auth, sizeof(f->expected_auth), "Basic %s", b64);
}

static void
fake_stop(struct fake *f)
{
    if (f->held) {
        evhttp_send_error(f->held, 503, "stopping");
        f->held = NULL;
    }
    if (f->release)
        event_free(f->release);
    f->release = NULL;
    if (f->http)
        evhttp_free(f->http);
    f->http = NULL;
    if (f->ssl)
        SSL_CTX_free(f->ssl);
    f->ssl = NULL;
}

/* ---- Fixture ---- */

static int
group_setup(void **state)
{
    (void)state;
    if (tls_fixture_make(tmpdir, sizeof(tmpdir), "dirclient", &files) < 0)
        fail_msg("no TLS fixture");
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    tls_files_clear(&files);
    assert_int_equal(scratch_remove(tmpdir), 0);
    return 0;
}

static struct tdm_config_endpoint
endpoint(uint16_t port)
{
    struct tdm_config_endpoint ep = {.port = port};
    ep.address.family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", ep.address.bytes);
    snprintf(ep.address.text, sizeof(ep.address.text), "127.0.0.1");
    return ep;
}

static struct dir_client *
client_new(struct event_base *base, const struct tdm_config_endpoint *eps, size_t n,
           const char *key, uint64_t ttl_ms)
{
    struct dir_client_options o = {
        .endpoints = eps,
        .n_endpoints = n,
        .ca_file = files.ca,
        .server_name = "mbx1",
        .key = key,
        .cache_ttl_ms = ttl_ms,
        .timeout_ms = 1000,
        .poll_wait_s = 1,
    };
    struct dir_client *c = NULL;
    char *err = NULL;
    if (dir_client_new(base, &o, &c, &err) < 0)
        fail_msg("client: %s", err);
    return c;
}

struct answer {
    bool done;
    int status;
    bool from_cache;
};

static void
login_cb(void *ctx, int status, bool from_cache)
{
    struct answer *a = ctx;
    a->done = true;
    a->status = status;
    a->from_cache = from_cache;
}

/* Runs the loop in 10 ms steps until pred(ctx) holds or 5 s have passed; returns pred. */
static bool
spin_until(struct event_base *base, bool (*pred)(void *ctx), void *ctx)
{
    for (unsigned waited = 0; !pred(ctx) && waited < 5000; waited += 10) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return pred(ctx);
}

static bool
flag_set(void *ctx)
{
    return *(const bool *)ctx;
}

static void
run_until(struct event_base *base, bool *flag)
{
    if (!spin_until(base, flag_set, flag))
        fail_msg("timed out after 5000 ms");
}

/* The journal entry the fake holds has been served and read. */
struct journal_wait {
    struct dir_client *c;
    const struct fake *f;
};

static bool
journal_taken(void *ctx)
{
    struct journal_wait *w = ctx;
    struct dir_client_stats st;
    dir_client_get_stats(w->c, &st);
    return st.journal_seq == w->f->last && w->f->change_name[0] == '\0';
}

static bool
reset_seen(void *ctx)
{
    struct dir_client_stats st;
    dir_client_get_stats(ctx, &st);
    return st.resets > 0;
}

static struct answer
login(struct event_base *base, struct dir_client *c, const char *user, const char *pw)
{
    struct answer a = {0};
    assert_int_equal(dir_client_login(c, user, pw, login_cb, &a), 0);
    /* Never called from inside the call. */
    assert_false(a.done);
    run_until(base, &a.done);
    return a;
}

static bool
following_cb(void *ctx)
{
    struct dir_client_stats st;
    dir_client_get_stats(ctx, &st);
    return st.following;
}

static bool
following(struct dir_client *c)
{
    return following_cb(c);
}

static void
wait_following(struct event_base *base, struct dir_client *c)
{
    assert_true(spin_until(base, following_cb, c));
}

/* ---- Tests ---- */

static void
test_login_remote_then_cached_then_invalidated(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f;
    fake_start(&f, base);
    struct tdm_config_endpoint ep = endpoint(f.port);
    struct dir_client *c = client_new(base, &ep, 1, "the-key", 600000);
    wait_following(base, c);

    struct answer a = login(base, c, "alice", "wrong");
    assert_int_equal(a.status, -EACCES);
    a = login(base, c, "alice", "right");
    assert_int_equal(a.status, 0);
    assert_false(a.from_cache);
    assert_int_equal(f.verifies, 2);
    /* The cache vouches now: no round trip. */
    a = login(base, c, "alice", "right");
    assert_int_equal(a.status, 0);
    assert_true(a.from_cache);
    assert_int_equal(f.verifies, 2);
    /* A wrong password is never answered from the cache. */
    a = login(base, c, "alice", "wrong");
    assert_int_equal(a.status, -EACCES);
    assert_int_equal(f.verifies, 3);

    /* The journal names alice: her cached login goes, the next one asks again. */
    snprintf(f.change_kind, sizeof(f.change_kind), "user");
    snprintf(f.change_name, sizeof(f.change_name), "alice");
    struct dir_client_stats st;
    struct journal_wait jw = {c, &f};
    spin_until(base, journal_taken, &jw);
    dir_client_get_stats(c, &st);
    assert_int_equal(st.journal_seq, 1);
    assert_int_equal(st.cache_entries, 0);
    a = login(base, c, "alice", "right");
    assert_false(a.from_cache);
    assert_int_equal(f.verifies, 4);

    /* A reset drops everything. */
    f.reset = true;
    spin_until(base, reset_seen, c);
    dir_client_get_stats(c, &st);
    assert_int_equal(st.resets, 1);
    assert_int_equal(st.cache_entries, 0);
    a = login(base, c, "alice", "right");
    assert_false(a.from_cache);

    dir_client_free(&c);
    assert_null(c);
    fake_stop(&f);
    event_base_free(base);
}

struct rcpt_answer {
    bool done;
    int status;
    bool from_cache;
    struct dir_recipient rcpt;
};

static void
rcpt_cb(void *ctx, int status, const struct dir_recipient *r, bool from_cache)
{
    struct rcpt_answer *a = ctx;
    a->done = true;
    a->status = status;
    a->from_cache = from_cache;
    if (r)
        a->rcpt = *r;
}

static struct rcpt_answer
recipient(struct event_base *base, struct dir_client *c, const char *local, const char *domain)
{
    struct rcpt_answer a = {0};
    assert_int_equal(dir_client_recipient(c, local, domain, rcpt_cb, &a), 0);
    assert_false(a.done);
    run_until(base, &a.done);
    return a;
}

static void
test_recipients_cached_until_a_user_changes(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f;
    fake_start(&f, base);
    struct tdm_config_endpoint ep = endpoint(f.port);
    struct dir_client *c = client_new(base, &ep, 1, "the-key", 600000);
    wait_following(base, c);
    struct rcpt_answer a = recipient(base, c, "alice", "x.test");
    assert_int_equal(a.status, 0);
    assert_false(a.from_cache);
    assert_int_equal(a.rcpt.status, DIR_RCPT_OK);
    assert_string_equal(a.rcpt.user, "alice");
    assert_string_equal(a.rcpt.database, "db1");
    assert_int_equal(a.rcpt.route.status, DIR_ROUTE_OK);
    assert_string_equal(a.rcpt.route.cms, "cms1");
    assert_string_equal(a.rcpt.route.address, "192.0.2.7");
    assert_int_equal(a.rcpt.route.port, 2424);
    assert_int_equal(a.rcpt.route.imap_port, 1143);
    a = recipient(base, c, "nobody", "x.test");
    assert_int_equal(a.rcpt.status, DIR_RCPT_UNKNOWN);
    assert_int_equal(a.rcpt.route.status, DIR_ROUTE_UNSET);
    assert_int_equal(f.lookups, 2);
    /* Both answers, the negative one too, now come from the cache. */
    a = recipient(base, c, "alice", "x.test");
    assert_true(a.from_cache);
    assert_string_equal(a.rcpt.database, "db1");
    assert_int_equal(a.rcpt.route.port, 2424);
    assert_int_equal(a.rcpt.route.imap_port, 1143);
    a = recipient(base, c, "nobody", "x.test");
    assert_true(a.from_cache);
    assert_int_equal(a.rcpt.status, DIR_RCPT_UNKNOWN);
    assert_int_equal(f.lookups, 2);
    /* Any user changing drops them. */
    snprintf(f.change_kind, sizeof(f.change_kind), "user");
    snprintf(f.change_name, sizeof(f.change_name), "somebody");
    struct journal_wait jw = {c, &f};
    spin_until(base, journal_taken, &jw);
    a = recipient(base, c, "nobody", "x.test");
    assert_false(a.from_cache);
    assert_int_equal(f.lookups, 3);
    /* A route without imap_port (a directory from before it) means IMAP's own port. */
    a = recipient(base, c, "old", "x.test");
    assert_int_equal(a.rcpt.route.status, DIR_ROUTE_OK);
    assert_int_equal(a.rcpt.route.port, 24);
    assert_int_equal(a.rcpt.route.imap_port, DIR_IMAP_PORT);
    /* The directory gone: no fresh answer, no guess. */
    fake_stop(&f);
    a = recipient(base, c, "somebody", "x.test");
    assert_int_equal(a.status, -EHOSTUNREACH);
    dir_client_free(&c);
    event_base_free(base);
}

static void
test_dead_endpoint_then_directory_down(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f;
    fake_start(&f, base);
    /* A port nobody listens on: bind one, note it, close it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(s, (struct sockaddr *)&sin, &len);
    uint16_t dead = ntohs(sin.sin_port);
    close(s);

    struct tdm_config_endpoint eps[2] = {endpoint(dead), endpoint(f.port)};
    struct dir_client *c = client_new(base, eps, 2, "the-key", 600000);
    struct answer a = login(base, c, "alice", "right");
    assert_int_equal(a.status, 0);
    assert_false(a.from_cache);
    struct dir_client_stats st;
    dir_client_get_stats(c, &st);
    assert_int_equal(st.endpoint, 1);

    /* The directory goes away: the confirmed login is still served, a new one cannot be. */
    fake_stop(&f);
    a = login(base, c, "alice", "right");
    assert_int_equal(a.status, 0);
    assert_true(a.from_cache);
    a = login(base, c, "bob", "pw");
    assert_int_equal(a.status, -EHOSTUNREACH);
    dir_client_get_stats(c, &st);
    assert_true(st.failures >= 1);
    dir_client_free(&c);
    event_base_free(base);
}

static void
test_ttl_expires_while_down(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f;
    fake_start(&f, base);
    struct tdm_config_endpoint ep = endpoint(f.port);
    struct dir_client *c = client_new(base, &ep, 1, "the-key", 300);
    struct answer a = login(base, c, "alice", "right");
    assert_int_equal(a.status, 0);
    fake_stop(&f);
    usleep(400 * 1000);
    a = login(base, c, "alice", "right");
    assert_int_equal(a.status, -EHOSTUNREACH);
    dir_client_free(&c);
    event_base_free(base);
}

static void
test_refused_credentials_and_free_in_flight(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fake f;
    fake_start(&f, base);
    struct tdm_config_endpoint ep = endpoint(f.port);
    struct dir_client *c = client_new(base, &ep, 1, "not-the-key", 600000);
    struct answer a = login(base, c, "alice", "right");
    assert_int_equal(a.status, -EPERM);
    assert_false(following(c));
    /* Freed with a login in flight: its callback runs once, with TDM_ECLOSED. */
    struct answer b = {0};
    assert_int_equal(dir_client_login(c, "alice", "right", login_cb, &b), 0);
    dir_client_free(&c);
    assert_true(b.done);
    assert_int_equal(b.status, TDM_ECLOSED);
    fake_stop(&f);
    event_base_free(base);
}

int
main(void)
{
    /* As in every process that runs the client (tandemd's children, tandemctl): a write to a
     * connection the fake server just closed is EPIPE to handle, not the end of the process.
     * Without this, about one run in forty died of SIGPIPE in the recipients test. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_login_remote_then_cached_then_invalidated),
        cmocka_unit_test(test_dead_endpoint_then_directory_down),
        cmocka_unit_test(test_recipients_cached_until_a_user_changes),
        cmocka_unit_test(test_ttl_expires_while_down),
        cmocka_unit_test(test_refused_credentials_and_free_in_flight),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

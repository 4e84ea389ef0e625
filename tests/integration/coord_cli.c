/*
 * tdm_coord_cli: a cluster node's side of the coordination protocol for the integration tests
 * (test_witness.py), built on src/coord/coord_client.h as the cluster agent is.
 *
 *   tdm_coord_cli --ca CA --cert CERT --key KEY --member NAME --secret-file FILE HOST:PORT
 *
 * Connects (TLS, client certificate), then reads one command per line on stdin and prints one
 * JSON line per answer on stdout:
 *   acquire KEY TTL_MS MIN_EPOCH   {"op":"acquire","status":0,"lease":"granted","epoch":1,...}
 *   release KEY EPOCH | transfer KEY EPOCH TO | get KEY | cas KEY VERSION VALUE | quit
 * (cas's VALUE is percent-decoded, %20 a space, %0A a newline: a recorded log end in one word)
 * and {"event":"up"} / {"event":"lost","why":...} as the session comes and goes (it exits 3
 * when lost). stdin is read on the loop, so answers and events interleave as they happen.
 */
#include "coord/coord_client.h"

#include "lib/err.h"
#include "lib/tls.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct event_base *base;
static struct coord_client *client;
static int exit_code;

static void
json_str(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void
on_up(void *ctx, unsigned index)
{
    (void)ctx;
    printf("{\"event\":\"up\",\"endpoint\":%u}\n", index);
    fflush(stdout);
}

static void
on_lost(void *ctx, const char *why)
{
    (void)ctx;
    printf("{\"event\":\"lost\",\"why\":");
    json_str(why);
    printf("}\n");
    fflush(stdout);
    exit_code = 3;
    event_base_loopexit(base, NULL);
}

static void
lease_cb(void *ctx, const struct coord_lease_reply *r)
{
    static const char *const names[] = {"granted", "denied", "released"};
    printf("{\"op\":");
    json_str(ctx);
    printf(",\"status\":%d", r->status);
    if (r->status == 0)
        printf(",\"lease\":\"%s\",\"epoch\":%llu,\"ttl_ms\":%u,\"remaining_ms\":%u,\"holder\":",
               names[r->lease], (unsigned long long)r->epoch, r->ttl_ms, r->remaining_ms);
    else
        printf(",\"error\":");
    json_str(r->status == 0 ? r->holder : r->error);
    printf("}\n");
    fflush(stdout);
}

static void
value_cb(void *ctx, const struct coord_value_reply *r)
{
    printf("{\"op\":");
    json_str(ctx);
    printf(",\"status\":%d,\"holder\":", r->status);
    json_str(r->holder);
    char v[COORD_VALUE_MAX + 1] = "";
    if (r->value) {
        memcpy(v, r->value, r->value_len);
        v[r->value_len] = '\0';
    }
    printf(",\"epoch\":%llu,\"remaining_ms\":%u,\"version\":%llu,\"value\":",
           (unsigned long long)r->epoch, r->remaining_ms, (unsigned long long)r->version);
    json_str(v);
    printf("}\n");
    fflush(stdout);
}

static void
refused(const char *op, int rc)
{
    printf("{\"op\":\"%s\",\"status\":%d,\"error\":\"refused at once\"}\n", op, rc);
    fflush(stdout);
}

/* %XX to its byte, in place; returns the length. A '%' without two hex digits stays. */
static size_t
percent_decode(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        unsigned x;
        if (s[i] == '%' && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2]) && sscanf(s + i + 1, "%2x", &x) == 1) {
            s[o++] = (char)x;
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    s[o] = '\0';
    return o;
}

static void
command(char *line)
{
    char op[16], key[300], arg3[300];
    unsigned long long a = 0, b = 0;
    int rc = 0;
    if (sscanf(line, "acquire %299s %llu %llu", key, &a, &b) == 3)
        rc = coord_client_acquire(client, key, (uint32_t)a, b, lease_cb, "acquire");
    else if (sscanf(line, "release %299s %llu", key, &a) == 2)
        rc = coord_client_release(client, key, a, lease_cb, "release");
    else if (sscanf(line, "transfer %299s %llu %299s", key, &a, arg3) == 3)
        rc = coord_client_transfer(client, key, a, arg3, lease_cb, "transfer");
    else if (sscanf(line, "get %299s", key) == 1)
        rc = coord_client_get(client, key, value_cb, "get");
    else if (sscanf(line, "cas %299s %llu %299s", key, &a, arg3) == 3)
        rc = coord_client_cas(client, key, a, arg3, (uint32_t)percent_decode(arg3), value_cb,
                              "cas");
    else if (sscanf(line, "%15s", op) == 1 && !strcmp(op, "quit"))
        event_base_loopexit(base, NULL);
    else
        rc = TDM_EINVAL;
    if (rc != 0)
        refused("command", rc);
}

static void
stdin_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    char *line;
    size_t n;
    while ((line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_LF))) {
        command(line);
        free(line);
    }
}

static void
stdin_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    (void)arg;
    event_base_loopexit(base, NULL); /* stdin closed: done */
}

int
main(int argc, char **argv)
{
    const char *ca = NULL, *cert = NULL, *keyf = NULL, *member = NULL, *secret_file = NULL;
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "--ca"))
            ca = argv[i + 1];
        else if (!strcmp(argv[i], "--cert"))
            cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key"))
            keyf = argv[i + 1];
        else if (!strcmp(argv[i], "--member"))
            member = argv[i + 1];
        else if (!strcmp(argv[i], "--secret-file"))
            secret_file = argv[i + 1];
    }
    if (i + 1 != argc || !ca || !member || !secret_file) {
        fprintf(stderr, "usage: tdm_coord_cli --ca CA [--cert C --key K] --member NAME "
                        "--secret-file F HOST:PORT\n");
        return 2;
    }
    char host[64];
    unsigned port;
    char *colon = strrchr(argv[i], ':');
    if (!colon || (size_t)(colon - argv[i]) >= sizeof(host) || sscanf(colon + 1, "%u", &port) != 1)
        return 2;
    memcpy(host, argv[i], (size_t)(colon - argv[i]));
    host[colon - argv[i]] = '\0';
    char secret[1100] = "";
    FILE *f = fopen(secret_file, "r");
    if (!f || !fgets(secret, sizeof(secret), f))
        return 2;
    fclose(f);
    secret[strcspn(secret, "\r\n")] = '\0';

    SSL_CTX *tls;
    char *why = NULL;
    if (tls_client_ctx_new(ca, cert, keyf, &tls, &why) < 0) {
        fprintf(stderr, "TLS: %s\n", why ? why : "?");
        return 2;
    }
    base = event_base_new();
    struct coord_client_options o = {
        .n_endpoints = 1,
        .tls = tls,
        .member = member,
        .key = secret,
        .cluster = "ccr1",
        .timeout_ms = 3000,
        .on_up = on_up,
        .on_lost = on_lost,
    };
    o.endpoints[0] = (struct coord_client_endpoint){host, (uint16_t)port};
    if (coord_client_new(base, &o, &client) != 0 || coord_client_connect(client) != 0)
        return 2;
    struct bufferevent *in = bufferevent_socket_new(base, STDIN_FILENO, 0);
    bufferevent_setcb(in, stdin_cb, NULL, stdin_event_cb, NULL);
    bufferevent_enable(in, EV_READ);
    event_base_dispatch(base);
    bufferevent_free(in);
    coord_client_free(&client);
    event_base_free(base);
    SSL_CTX_free(tls);
    return exit_code;
}

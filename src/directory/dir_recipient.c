/* Mail recipients (directory.h, "Mail recipients"). */
#include "directory/directory.h"

#include "lib/err.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

const char *
dir_rcpt_status_name(enum dir_rcpt_status status)
{
    switch (status) {
    case DIR_RCPT_OK:
        return "ok";
    case DIR_RCPT_UNKNOWN:
        return "unknown";
    case DIR_RCPT_NO_MAILBOX:
        return "no-mailbox";
    case DIR_RCPT_DISABLED:
        return "disabled";
    }
    return "unknown";
}

const char *
dir_route_status_name(enum dir_route_status status)
{
    switch (status) {
    case DIR_ROUTE_UNSET:
        return "unset";
    case DIR_ROUTE_OK:
        return "ok";
    case DIR_ROUTE_NO_DATABASE:
        return "no-database";
    case DIR_ROUTE_NO_CMS:
        return "no-cms";
    case DIR_ROUTE_NO_ADDRESS:
        return "no-address";
    }
    return "unset";
}

enum dir_route_status
dir_route_status_parse(const char *name)
{
    for (int s = DIR_ROUTE_OK; s <= DIR_ROUTE_NO_ADDRESS; s++)
        if (strcmp(name, dir_route_status_name((enum dir_route_status)s)) == 0)
            return (enum dir_route_status)s;
    return DIR_ROUTE_UNSET;
}

/* An IPv4 or IPv6 literal: a route names no host to resolve, so a relay never waits on DNS
 * and a CMS address means the same thing on every server. */
static bool
ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* A port attribute of doc: the schema holds each to 1..65535; absent means def. */
static uint16_t
port_of(json_t *doc, const char *key, uint16_t def)
{
    json_int_t v = json_integer_value(json_object_get(doc, key));
    return v > 0 && v <= 65535 ? (uint16_t)v : def;
}

/* One string attribute of (kind, name) into out (empty when absent); TDM_ENOTFOUND when the
 * object does not exist. route_r, when not NULL, gets the object's `lmtp_port` and
 * `imap_port` (their defaults when absent). */
static int
attr_of(void *state, MDB_txn *txn, enum dir_kind kind, const char *name, const char *key, char *out,
        size_t out_len, struct dir_route *route_r)
{
    struct dir_object obj = {0};
    int ret = dir_object_get(state, txn, kind, name, &obj);
    out[0] = '\0';
    if (ret == 0) {
        json_t *doc = json_loads(obj.attrs, 0, NULL);
        const char *v = json_string_value(json_object_get(doc, key));
        if (v && strlen(v) < out_len)
            snprintf(out, out_len, "%s", v);
        if (route_r) {
            route_r->port = port_of(doc, "lmtp_port", DIR_LMTP_PORT);
            route_r->imap_port = port_of(doc, "imap_port", DIR_IMAP_PORT);
        }
        json_decref(doc);
    }
    dir_object_clear(&obj);
    return ret;
}

int
dir_route_lookup(void *state, MDB_txn *txn, const char *database, struct dir_route *route_r)
{
    memset(route_r, 0, sizeof(*route_r));
    route_r->status = DIR_ROUTE_NO_DATABASE;
    int ret = attr_of(state, txn, DIR_KIND_DATABASE, database, "cms", route_r->cms,
                      sizeof(route_r->cms), NULL);
    if (ret < 0)
        return ret == TDM_ENOTFOUND ? 0 : ret;
    route_r->status = DIR_ROUTE_NO_CMS;
    if (!route_r->cms[0])
        return 0;
    struct dir_route ports = {0};
    ret = attr_of(state, txn, DIR_KIND_CMS, route_r->cms, "address", route_r->address,
                  sizeof(route_r->address), &ports);
    if (ret < 0)
        return ret == TDM_ENOTFOUND ? 0 : ret;
    if (!ip_literal(route_r->address)) {
        route_r->status = DIR_ROUTE_NO_ADDRESS;
        return 0;
    }
    route_r->port = ports.port;
    route_r->imap_port = ports.imap_port;
    route_r->status = DIR_ROUTE_OK;
    return 0;
}

/* The user's mailbox database and whether the user may receive, from its attributes. */
static void
from_attrs(const char *attrs, struct dir_recipient *r)
{
    json_t *doc = json_loads(attrs, 0, NULL);
    const char *db = json_string_value(json_object_get(doc, "database"));
    r->status = DIR_RCPT_NO_MAILBOX;
    if (json_is_true(json_object_get(doc, "disabled"))) {
        r->status = DIR_RCPT_DISABLED;
    } else if (db && db[0] && strlen(db) <= DIR_NAME_MAX) {
        snprintf(r->database, sizeof(r->database), "%s", db);
        r->status = DIR_RCPT_OK;
    }
    json_decref(doc);
}

int
dir_recipient_lookup(void *state, MDB_txn *txn, const char *local, const char *domain,
                     struct dir_recipient *rcpt_r)
{
    memset(rcpt_r, 0, sizeof(*rcpt_r));
    rcpt_r->status = DIR_RCPT_UNKNOWN;
    char address[2 * DIR_NAME_MAX + 2];
    int n = domain[0] ? snprintf(address, sizeof(address), "%s@%s", local, domain)
                      : snprintf(address, sizeof(address), "%s", local);
    if (n < 0 || (size_t)n >= sizeof(address) || strlen(local) > DIR_NAME_MAX)
        return 0; /* longer than any name the directory can hold */
    const char *user = NULL;
    int ret = dir_resolve_address(state, txn, address, &user);
    if (ret == TDM_ENOTFOUND && domain[0])
        ret = dir_resolve_address(state, txn, local, &user);
    if (ret == TDM_ENOTFOUND) {
        user = local;
        ret = 0;
    }
    if (ret < 0)
        return ret;
    char name[DIR_NAME_MAX + 1];
    snprintf(name, sizeof(name), "%s", user);
    struct dir_object obj = {0};
    ret = dir_object_get(state, txn, DIR_KIND_USER, name, &obj);
    if (ret == 0) {
        snprintf(rcpt_r->user, sizeof(rcpt_r->user), "%s", name);
        from_attrs(obj.attrs, rcpt_r);
    }
    dir_object_clear(&obj);
    if (ret == 0 && rcpt_r->status == DIR_RCPT_OK)
        return dir_route_lookup(state, txn, rcpt_r->database, &rcpt_r->route);
    return ret == TDM_ENOTFOUND ? 0 : ret;
}

/*
 * Per-kind attribute schemas. An object's attributes are one JSON object whose keys must all
 * be known for its kind, each of its declared type and within its limits; anything else is
 * refused rather than kept, so a typo never silently becomes data and every copy holds the
 * same canonical text (compact, keys sorted: what the log carries and the digest covers).
 *
 * Only strings, integers, booleans and string arrays exist: no reals, whose printed form
 * would make the canonical text depend on the JSON library's float formatting.
 */
#include "directory/dir_int.h"

#include "lib/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum attr_type {
    ATTR_STR,    /* string of 0..max bytes without control characters */
    ATTR_INT,    /* integer in [min, max] */
    ATTR_BOOL,   /* true / false */
    ATTR_ENUM,   /* one of values[] */
    ATTR_EMAIL,  /* one address: local@domain */
    ATTR_LIST,   /* array of 0..max strings, each 1..item_max bytes, no duplicates */
    ATTR_EMAILS, /* array of 0..max addresses, no duplicates (case-insensitive) */
};

struct attr_spec {
    const char *key;
    enum attr_type type;
    long long min, max;
    size_t item_max;
    const char *const *values;
};

#define STR(k, n)                                                                                  \
    {                                                                                              \
        k, ATTR_STR, 0, n, 0, NULL                                                                 \
    }
#define INT(k, lo, hi)                                                                             \
    {                                                                                              \
        k, ATTR_INT, lo, hi, 0, NULL                                                               \
    }
#define BOOL(k)                                                                                    \
    {                                                                                              \
        k, ATTR_BOOL, 0, 0, 0, NULL                                                                \
    }
#define LIST(k, n, m)                                                                              \
    {                                                                                              \
        k, ATTR_LIST, 0, n, m, NULL                                                                \
    }
#define END                                                                                        \
    {                                                                                              \
        NULL, ATTR_STR, 0, 0, 0, NULL                                                              \
    }

static const char *const repl_modes[] = {"file", "block", "sync", NULL};
static const char *const net_roles[] = {"client", "replication", "both", NULL};
static const char *const copy_roles[] = {"passive", "standby", NULL};

static const struct attr_spec site_attrs[] = {STR("description", 256), END};
static const struct attr_spec network_attrs[] = {
    STR("description", 256),
    LIST("subnets", 16, 64),
    {"role", ATTR_ENUM, 0, 0, 0, net_roles},
    END,
};
static const struct attr_spec server_attrs[] = {
    STR("description", 256),   STR("site", DIR_NAME_MAX), STR("fqdn", 253),
    LIST("addresses", 16, 64), LIST("roles", 8, 32),      END,
};
static const struct attr_spec cluster_attrs[] = {
    STR("description", 256),
    LIST("servers", 16, DIR_NAME_MAX),
    STR("witness", 253),
    END,
};
static const struct attr_spec cms_attrs[] = {
    STR("description", 256),
    STR("cluster", DIR_NAME_MAX),
    STR("address", DIR_ROUTE_ADDRESS_MAX),
    STR("network", DIR_NAME_MAX),
    INT("lmtp_port", 1, 65535),
    INT("imap_port", 1, 65535),
    INT("replication_port", 1, 65535),
    END,
};
static const struct attr_spec database_attrs[] = {
    STR("description", 256),
    STR("cms", DIR_NAME_MAX),
    {"replication", ATTR_ENUM, 0, 0, 0, repl_modes},
    INT("quota_bytes", 0, (long long)1 << 50),
    INT("sync_timeout_ms", 100, 600000), /* sync mode: how long a reply waits for a passive */
    BOOL("sync_strict"),                 /* sync mode: never degrade to block */
    END,
};
static const struct attr_spec copy_attrs[] = {
    STR("database", DIR_NAME_MAX),
    STR("server", DIR_NAME_MAX),
    INT("activation_preference", 1, 16),
    INT("replay_lag_minutes", 0, 10080), /* 7 days: DESIGN.md; copy.conf's replay_lag agrees */
    {"role", ATTR_ENUM, 0, 0, 0, copy_roles},
    INT("truncation_lag_minutes", 0, 10080),
    END,
};
static const struct attr_spec user_attrs[] = {
    STR("display_name", 256), {"addresses", ATTR_EMAILS, 0, 32, 254, NULL},
    LIST("aliases", 32, 128), STR("phone", 64),
    STR("title", 128),        STR("department", 128),
    STR("office", 128),       STR("database", DIR_NAME_MAX),
    BOOL("disabled"),         END,
};
static const struct attr_spec group_attrs[] = {
    STR("description", 256),
    {"email", ATTR_EMAIL, 0, 0, 254, NULL},
    END,
};
static const struct attr_spec address_list_attrs[] = {
    STR("description", 256),
    STR("filter", 1024),
    BOOL("hidden"),
    END,
};

static const struct {
    const char *name;
    const struct attr_spec *attrs;
} kinds[DIR_KIND_MAX + 1] = {
    [DIR_KIND_SITE] = {"site", site_attrs},
    [DIR_KIND_NETWORK] = {"network", network_attrs},
    [DIR_KIND_SERVER] = {"server", server_attrs},
    [DIR_KIND_CLUSTER] = {"cluster", cluster_attrs},
    [DIR_KIND_CMS] = {"cms", cms_attrs},
    [DIR_KIND_DATABASE] = {"database", database_attrs},
    [DIR_KIND_COPY] = {"copy", copy_attrs},
    [DIR_KIND_USER] = {"user", user_attrs},
    [DIR_KIND_GROUP] = {"group", group_attrs},
    [DIR_KIND_ADDRESS_LIST] = {"address-list", address_list_attrs},
};

const char *
dir_kind_name(enum dir_kind kind)
{
    return kind >= 1 && kind <= DIR_KIND_MAX ? kinds[kind].name : NULL;
}

enum dir_kind
dir_kind_parse(const char *name)
{
    for (int k = 1; k <= DIR_KIND_MAX; k++)
        if (strcmp(kinds[k].name, name) == 0)
            return (enum dir_kind)k;
    return 0;
}

const char *
dir_right_name(enum dir_right right)
{
    static const char *const names[] = {"none", "read", "write", "full-control"};
    return right <= DIR_RIGHT_FULL ? names[right] : "invalid";
}

void
dir__lower(char *out, const char *s)
{
    for (; *s; s++)
        *out++ = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
    *out = '\0';
}

static _Thread_local char err_buf[300];

static int
bad(const char **error_r, const char *key, const char *why)
{
    snprintf(err_buf, sizeof(err_buf), "attrs: %s: %s", key, why);
    *error_r = err_buf;
    return TDM_EINVAL;
}

static bool
text_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* local@domain: one '@', both sides non-empty, no spaces or characters that would need
 * quoting in a header. Deliberately simpler than RFC 5321: these are what we hand out. */
static bool
email_ok(const char *s, size_t len, size_t max)
{
    const char *at = memchr(s, '@', len);
    if (len < 3 || len > max || !at || at == s || at == s + len - 1 ||
        memchr(at + 1, '@', len - (size_t)(at + 1 - s)))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || strchr("<>(),;:\"[]\\", s[i]))
            return false;
    return true;
}

static bool
alias_ok(const char *s, size_t len, size_t max)
{
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr(".-_+@", s[i])))
            return false;
    return true;
}

/* Case-insensitive duplicate check over a small array (<= 32 items). */
static bool
has_dup(json_t *arr)
{
    for (size_t i = 0; i < json_array_size(arr); i++)
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(json_string_value(json_array_get(arr, i)),
                           json_string_value(json_array_get(arr, j))) == 0)
                return true;
    return false;
}

static int
check_value(const struct attr_spec *a, json_t *v, const char **error_r)
{
    switch (a->type) {
    case ATTR_STR:
        if (!json_is_string(v))
            return bad(error_r, a->key, "must be a string");
        if (json_string_length(v) > (size_t)a->max)
            return bad(error_r, a->key, "too long");
        if (!text_ok(json_string_value(v), json_string_length(v)))
            return bad(error_r, a->key, "control character");
        return 0;
    case ATTR_INT:
        if (!json_is_integer(v))
            return bad(error_r, a->key, "must be an integer");
        if (json_integer_value(v) < a->min || json_integer_value(v) > a->max)
            return bad(error_r, a->key, "out of range");
        return 0;
    case ATTR_BOOL:
        return json_is_boolean(v) ? 0 : bad(error_r, a->key, "must be true or false");
    case ATTR_ENUM:
        if (json_is_string(v))
            for (const char *const *e = a->values; *e; e++)
                if (strcmp(*e, json_string_value(v)) == 0)
                    return 0;
        return bad(error_r, a->key, "not one of the allowed values");
    case ATTR_EMAIL:
        if (!json_is_string(v) ||
            !email_ok(json_string_value(v), json_string_length(v), a->item_max))
            return bad(error_r, a->key, "must be an address local@domain");
        return 0;
    case ATTR_LIST:
    case ATTR_EMAILS:
        if (!json_is_array(v))
            return bad(error_r, a->key, "must be an array of strings");
        if (json_array_size(v) > (size_t)a->max)
            return bad(error_r, a->key, "too many items");
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *it = json_array_get(v, i);
            if (!json_is_string(it))
                return bad(error_r, a->key, "must be an array of strings");
            const char *s = json_string_value(it);
            size_t n = json_string_length(it);
            bool ok = a->type == ATTR_EMAILS ? email_ok(s, n, a->item_max)
                      : strcmp(a->key, "aliases") == 0
                          ? alias_ok(s, n, a->item_max)
                          : n >= 1 && n <= a->item_max && text_ok(s, n);
            if (!ok)
                return bad(error_r, a->key, a->type == ATTR_EMAILS ? "bad address" : "bad item");
        }
        if (has_dup(v))
            return bad(error_r, a->key, "an item appears twice");
        return 0;
    }
    return bad(error_r, a->key, "unknown type");
}

int
dir_attrs_check(enum dir_kind kind, const char *attrs, char **canonical_r, const char **error_r)
{
    *canonical_r = NULL;
    if (kind < 1 || kind > DIR_KIND_MAX) {
        *error_r = "kind: unknown";
        return TDM_EINVAL;
    }
    if (!attrs || strlen(attrs) > DIR_ATTRS_MAX) {
        *error_r = "attrs: missing or longer than DIR_ATTRS_MAX";
        return TDM_EINVAL;
    }
    json_error_t jerr;
    json_t *root = json_loads(attrs, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err_buf, sizeof(err_buf), "attrs: not JSON: %s", jerr.text);
        *error_r = err_buf;
        return TDM_EINVAL;
    }
    int ret = 0;
    if (!json_is_object(root)) {
        *error_r = "attrs: must be a JSON object";
        ret = TDM_EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (ret < 0)
            break;
        const struct attr_spec *a = kinds[kind].attrs;
        while (a->key && strcmp(a->key, key) != 0)
            a++;
        if (!a->key) {
            snprintf(err_buf, sizeof(err_buf), "attrs: %.64s: not an attribute of a %s", key,
                     kinds[kind].name);
            *error_r = err_buf;
            ret = TDM_EINVAL;
        } else {
            ret = check_value(a, v, error_r);
        }
    }
    /* Addresses and aliases of one user share the index: no name twice across both. */
    json_t *addrs = json_object_get(root, "addresses"), *aliases = json_object_get(root, "aliases");
    if (ret == 0 && kind == DIR_KIND_USER && addrs && aliases) {
        for (size_t i = 0; i < json_array_size(addrs) && ret == 0; i++)
            for (size_t j = 0; j < json_array_size(aliases) && ret == 0; j++)
                if (strcasecmp(json_string_value(json_array_get(addrs, i)),
                               json_string_value(json_array_get(aliases, j))) == 0)
                    ret = bad(error_r, "aliases", "repeats an address");
    }
    if (ret == 0) {
        *canonical_r = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        if (!*canonical_r)
            ret = -ENOMEM;
        else if (strlen(*canonical_r) > DIR_ATTRS_MAX) {
            free(*canonical_r);
            *canonical_r = NULL;
            *error_r = "attrs: longer than DIR_ATTRS_MAX once canonical";
            ret = TDM_EINVAL;
        }
    }
    json_decref(root);
    return ret;
}

int
dir__user_addresses(const char *canonical_attrs, dir__addr_cb *cb, void *ctx)
{
    json_t *root = json_loads(canonical_attrs, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return TDM_ECORRUPT; /* it passed dir_attrs_check before it was stored */
    int ret = 0;
    static const char *const keys[] = {"addresses", "aliases"};
    for (size_t k = 0; k < 2 && ret == 0; k++) {
        json_t *arr = json_object_get(root, keys[k]);
        for (size_t i = 0; i < json_array_size(arr) && ret == 0; i++)
            ret = cb(ctx, json_string_value(json_array_get(arr, i)));
    }
    json_decref(root);
    return ret;
}

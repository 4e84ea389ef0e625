/* Mail recipients (directory.h, "Mail recipients"). */
#include "directory/directory.h"

#include "lib/err.h"

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
    return ret == TDM_ENOTFOUND ? 0 : ret;
}

/* Recipient lookup (lmtp_recipient.h). */
#include "lmtp/lmtp_recipient.h"

#include "lib/err.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* The user's mailbox database and whether the user may receive, from its attributes. */
static enum lmtp_rcpt_status
user_status(const char *attrs, struct lmtp_recipient *r)
{
    json_t *doc = json_loads(attrs, 0, NULL);
    enum lmtp_rcpt_status st = LMTP_RCPT_NO_MAILBOX;
    const char *db = json_string_value(json_object_get(doc, "database"));
    if (json_is_true(json_object_get(doc, "disabled")))
        st = LMTP_RCPT_DISABLED;
    else if (db && db[0] && strlen(db) <= DIR_NAME_MAX) {
        snprintf(r->database, sizeof(r->database), "%s", db);
        st = LMTP_RCPT_OK;
    }
    json_decref(doc);
    return st;
}

int
lmtp_recipient_lookup(struct store_reader *dir, const char *local, const char *domain,
                      struct lmtp_recipient *rcpt_r, enum lmtp_rcpt_status *status_r)
{
    *status_r = LMTP_RCPT_UNKNOWN;
    char address[2 * DIR_NAME_MAX + 2];
    int n = domain[0] ? snprintf(address, sizeof(address), "%s@%s", local, domain)
                      : snprintf(address, sizeof(address), "%s", local);
    if (n < 0 || (size_t)n >= sizeof(address) || strlen(local) > DIR_NAME_MAX)
        return 0; /* longer than any name the directory can hold */
    MDB_txn *txn;
    int ret = store_reader_begin(dir, &txn);
    if (ret < 0)
        return ret;
    void *st = store_reader_handler_state(dir);
    const char *user = NULL;
    ret = dir_resolve_address(st, txn, address, &user);
    if (ret == TDM_ENOTFOUND && domain[0])
        ret = dir_resolve_address(st, txn, local, &user);
    if (ret == TDM_ENOTFOUND) {
        user = local; /* a bare user name */
        ret = 0;
    }
    if (ret == 0) {
        snprintf(rcpt_r->user, sizeof(rcpt_r->user), "%s", user);
        struct dir_object obj = {0};
        ret = dir_object_get(st, txn, DIR_KIND_USER, rcpt_r->user, &obj);
        if (ret == 0)
            *status_r = user_status(obj.attrs, rcpt_r);
        dir_object_clear(&obj);
        if (ret == TDM_ENOTFOUND)
            ret = 0;
    }
    mdb_txn_abort(txn);
    return ret;
}

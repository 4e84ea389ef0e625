/*
 * Database kinds to record handlers, for the programs that open databases they did not
 * create (tandemd's core, tandemctl db verify|recover). It lives beside the directory, not in
 * the store, so the store never depends on the handlers that plug into it.
 */
#include "directory/directory.h"

#include "lib/err.h"

#include <string.h>

int
dir_db_kind_handler(const char *kind, const struct store_record_handler **handler_r)
{
    if (strcmp(kind, STORE_KIND_MAIL) == 0) {
        *handler_r = NULL;
        return 0;
    }
    if (strcmp(kind, DIR_DB_KIND) == 0) {
        *handler_r = &dir_record_handler;
        return 0;
    }
    return TDM_ENOTFOUND;
}

int
dir_db_create(const char *dir, const struct store_options *opt, const char **error_r)
{
    struct store_options o = *opt;
    o.handler = &dir_record_handler;
    o.kind = DIR_DB_KIND;
    int ret = store_create(dir, &o, error_r);
    if (ret < 0)
        return ret;
    struct store *store = NULL;
    ret = store_open(dir, &o, &store, error_r);
    if (ret < 0)
        return ret;
    struct dir_op op = {.type = TDM_REC_DIR_BOOTSTRAP};
    struct mail_result res;
    ret = dir_commit(store, &op, NULL, &res, error_r);
    if (ret == 0 && res.status != 0) {
        *error_r = "the directory was already bootstrapped";
        ret = res.status;
    }
    int cret = store_close(&store);
    if (ret == 0 && cret < 0) {
        *error_r = "closing the database after the bootstrap failed";
        ret = cret;
    }
    return ret;
}

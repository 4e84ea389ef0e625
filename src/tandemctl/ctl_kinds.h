#ifndef TANDEM_TANDEMCTL_CTL_KINDS_H
#define TANDEM_TANDEMCTL_CTL_KINDS_H

/*
 * What tandemctl knows about each directory object kind (ctl_kinds.c): named options for
 * common attributes and the columns of `<kind> list`. The schemas themselves are the
 * server's (src/directory/dir_schema.c); tandemctl checks only the shape of what it sends,
 * so a schema change never needs a new tandemctl.
 */

#include <stdbool.h>

enum ctl_attr_type {
    CTL_ATTR_STR,   /* --flag VALUE: a string */
    CTL_ATTR_LIST,  /* --flag VALUE, repeated: an array of strings (the whole list) */
    CTL_ATTR_SIZE,  /* --flag BYTES[K|M|G|T]: an integer */
    CTL_ATTR_PORT,  /* --flag PORT: an integer 1..65535 */
    CTL_ATTR_TRUE,  /* --flag: true */
    CTL_ATTR_FALSE, /* --flag: false */
};

struct ctl_attr_flag {
    const char *flag; /* "--display-name" */
    const char *key;  /* "display_name" */
    enum ctl_attr_type type;
};

struct ctl_kind {
    const char *kind;                  /* the API's kind, also the noun */
    const struct ctl_attr_flag *flags; /* terminated by {NULL} */
    const char *const *columns;        /* attribute keys `list` shows, NULL-terminated */
    bool has_password;                 /* user, server: `password`, add --new-password-file */
};

/* The description of kind ("user"), or NULL for a kind without a noun. */
const struct ctl_kind *ctl_kind_find(const char *kind);

/* Whether the API has this kind (site ... address-list), noun or not. */
bool ctl_kind_known(const char *kind);

#endif

/*
 * What tandemctl knows about each directory object kind: the attributes worth a named option
 * and the columns `<kind> list` shows. Keys are those of src/directory/dir_schema.c; whatever
 * has no option here is still reachable with --attr KEY=VALUE.
 *
 * The cluster's member list is `--node`, not `--server`: --server already says where the
 * admin API is.
 */
#include "tandemctl/ctl_kinds.h"

#include <string.h>

static const struct ctl_attr_flag site_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {NULL, NULL, 0},
};
static const char *const site_cols[] = {"description", NULL};

static const struct ctl_attr_flag network_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--subnet", "subnets", CTL_ATTR_LIST},
    {"--role", "role", CTL_ATTR_STR},
    {NULL, NULL, 0},
};
static const char *const network_cols[] = {"role", "subnets", "description", NULL};

static const struct ctl_attr_flag server_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--site", "site", CTL_ATTR_STR},
    {"--fqdn", "fqdn", CTL_ATTR_STR},
    {"--address", "addresses", CTL_ATTR_LIST},
    {"--role", "roles", CTL_ATTR_LIST},
    {NULL, NULL, 0},
};
static const char *const server_cols[] = {"site", "addresses", "roles", NULL};

static const struct ctl_attr_flag cluster_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--node", "servers", CTL_ATTR_LIST},
    {"--witness", "witness", CTL_ATTR_STR},
    {NULL, NULL, 0},
};
static const char *const cluster_cols[] = {"servers", "witness", NULL};

static const struct ctl_attr_flag cms_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--cluster", "cluster", CTL_ATTR_STR},
    {"--address", "address", CTL_ATTR_STR},
    {"--network", "network", CTL_ATTR_STR},
    {"--lmtp-port", "lmtp_port", CTL_ATTR_PORT},
    {"--imap-port", "imap_port", CTL_ATTR_PORT},
    {NULL, NULL, 0},
};
static const char *const cms_cols[] = {"cluster", "address", "network", NULL};

static const struct ctl_attr_flag database_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--cms", "cms", CTL_ATTR_STR},
    {"--replication", "replication", CTL_ATTR_STR},
    {"--quota", "quota_bytes", CTL_ATTR_SIZE},
    {NULL, NULL, 0},
};
static const char *const database_cols[] = {"cms", "replication", "quota_bytes", NULL};

static const struct ctl_attr_flag user_flags[] = {
    {"--display-name", "display_name", CTL_ATTR_STR},
    {"--address", "addresses", CTL_ATTR_LIST},
    {"--alias", "aliases", CTL_ATTR_LIST},
    {"--phone", "phone", CTL_ATTR_STR},
    {"--title", "title", CTL_ATTR_STR},
    {"--department", "department", CTL_ATTR_STR},
    {"--office", "office", CTL_ATTR_STR},
    {"--database", "database", CTL_ATTR_STR},
    {"--disabled", "disabled", CTL_ATTR_TRUE},
    {"--enabled", "disabled", CTL_ATTR_FALSE},
    {NULL, NULL, 0},
};
static const char *const user_cols[] = {"display_name", "addresses", "database", NULL};

static const struct ctl_attr_flag group_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--email", "email", CTL_ATTR_STR},
    {NULL, NULL, 0},
};
static const char *const group_cols[] = {"email", "description", NULL};

static const struct ctl_attr_flag address_list_flags[] = {
    {"--description", "description", CTL_ATTR_STR},
    {"--filter", "filter", CTL_ATTR_STR},
    {"--hidden", "hidden", CTL_ATTR_TRUE},
    {"--visible", "hidden", CTL_ATTR_FALSE},
    {NULL, NULL, 0},
};
static const char *const address_list_cols[] = {"filter", "hidden", "description", NULL};

/* clang-format off: one kind per line reads better than packed columns */
static const struct ctl_kind kinds[] = {
    {"site", site_flags, site_cols, false},
    {"network", network_flags, network_cols, false},
    {"server", server_flags, server_cols, true},
    {"cluster", cluster_flags, cluster_cols, false},
    {"cms", cms_flags, cms_cols, false},
    {"database", database_flags, database_cols, false},
    {"user", user_flags, user_cols, true},
    {"group", group_flags, group_cols, false},
    {"address-list", address_list_flags, address_list_cols, false},
};
/* clang-format on */

const struct ctl_kind *
ctl_kind_find(const char *kind)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcmp(kinds[i].kind, kind) == 0)
            return &kinds[i];
    return NULL;
}

bool
ctl_kind_known(const char *kind)
{
    /* Every kind the API has, including those tandemctl has no noun for yet (ACL targets). */
    static const char *const api_kinds[] = {"site",  "network",      "server", "cluster",
                                            "cms",   "database",     "copy",   "user",
                                            "group", "address-list", NULL};
    for (const char *const *k = api_kinds; *k; k++)
        if (strcmp(*k, kind) == 0)
            return true;
    return false;
}

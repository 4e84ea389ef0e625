/*
 * tandemctl site|network|server|cluster|cms|database|address-list list|show|add|set|remove:
 * the topology nouns, and the address lists offline address books are made from. Each is only a
 * table over the shared object verbs (ctl_obj.c); what differs between them (named options, list
 * columns) is in ctl_kinds.c.
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_obj.h"

/* One table per noun: ctl_noun_of() finds the kind by the table a verb is in. */
/* clang-format off */
#define OBJ_VERBS(kind)                                                                            \
    {"list", "[options]", "list every " kind " (that you may read)", NULL, ctl_obj_list},          \
    {"show", "<name> [options]", "show one " kind ": attributes, version, ACL", NULL,              \
     ctl_obj_show},                                                                                \
    {"add", CTL_OBJ_ATTR_USAGE, "create a " kind " (it must not exist yet)", NULL, ctl_obj_add},   \
    {"set", CTL_OBJ_ATTR_USAGE " [--unset KEY]...",                                                \
     "change some attributes of a " kind ", keeping the others", NULL, ctl_obj_set},               \
    {"remove", "<name> [options]", "delete a " kind, NULL, ctl_obj_remove}
/* clang-format on */

const struct ctl_verb ctl_site_verbs[] = {OBJ_VERBS("site"), {NULL, NULL, NULL, NULL, NULL}};
const struct ctl_verb ctl_network_verbs[] = {OBJ_VERBS("network"), {NULL, NULL, NULL, NULL, NULL}};
const struct ctl_verb ctl_server_verbs[] = {
    OBJ_VERBS("server"),
    {"password", "<name> [--new-password-file FILE] [options]",
     "set the key a server authenticates with (server/<name>)",
     "Without --new-password-file, the key is asked for twice on the terminal, or read as\n"
     "one line from standard input when that is not a terminal. 8 to 1024 bytes.\n",
     ctl_obj_password},
    {NULL, NULL, NULL, NULL, NULL},
};
const struct ctl_verb ctl_cluster_verbs[] = {
    OBJ_VERBS("cluster"),
    {"status", "[--json] [options]",
     "the cluster as this server sees it: members, each network up or down, votes and quorum",
     "Asks the server's admin API (GET /v1/cluster); needs read on its server object.\n",
     ctl_cluster_status_run},
    {NULL, NULL, NULL, NULL, NULL}};
const struct ctl_verb ctl_cms_verbs[] = {
    OBJ_VERBS("clustered mailbox server"),
    {"status", "<cms> [--json] [options]",
     "the CMS as this cluster node sees it: state here, lease holder and epoch, last failover",
     "Asks the server's admin API (GET /v1/cluster); needs read on its server object.\n",
     ctl_cms_status_run},
    {"move", "<cms> --to <node> [--comment TEXT] [--json] [options]",
     "switchover: move the CMS to another node, losslessly; waits until it ended",
     "Asks the CMS's active node (POST /v1/cms/<cms>/move); needs write on its server object.\n"
     "Writes wait while the node catches up, the lease passes to it (epoch + 1), this node\n"
     "demotes and the node activates. Refused: an unknown node, one whose copies are not all\n"
     "Healthy, a move already running, a node where the CMS is not active (it names the\n"
     "active). Prints the outcome and the time the active node counted; exit 1 if it failed.\n",
     ctl_cms_move_run},
    {NULL, NULL, NULL, NULL, NULL}};
const struct ctl_verb ctl_address_list_verbs[] = {OBJ_VERBS("address list"),
                                                  {NULL, NULL, NULL, NULL, NULL}};
const struct ctl_verb ctl_database_verbs[] = {OBJ_VERBS("database"),
                                              {NULL, NULL, NULL, NULL, NULL}};

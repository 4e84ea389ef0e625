/*
 * tandemctl user add|list|show|set|remove|password: mailbox users. The shared object verbs
 * (ctl_obj.c) do the work; user attributes get named options in ctl_kinds.c.
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_obj.h"

const struct ctl_verb ctl_user_verbs[] = {
    {"add", CTL_OBJ_ATTR_USAGE " [--new-password-file FILE]",
     "create a user (it must not exist yet)",
     "With --new-password-file FILE the user gets the password on the first line of FILE\n"
     "right after it is created.\n"
     "Example: tandemctl user add alice --display-name 'Alice Smith' \\\n"
     "             --address alice@example.com --database db1\n",
     ctl_obj_add},
    {"list", "[options]", "list users (those you may read)", NULL, ctl_obj_list},
    {"show", "<name> [options]", "show one user: attributes, version, ACL", NULL, ctl_obj_show},
    {"set", CTL_OBJ_ATTR_USAGE " [--unset KEY]...",
     "change some attributes of a user, keeping the others", NULL, ctl_obj_set},
    {"remove", "<name> [options]", "delete a user (it also leaves every group and every ACL)", NULL,
     ctl_obj_remove},
    {"password", "<name> [--new-password-file FILE] [options]", "set a user's password",
     "Without --new-password-file, the password is asked for twice on the terminal, or read\n"
     "as one line from standard input when that is not a terminal. 8 to 1024 bytes.\n"
     "A user may set its own password; anyone else needs write on user/<name>.\n",
     ctl_obj_password},
    {NULL, NULL, NULL, NULL, NULL},
};

/*
 * tandemctl group add|list|show|set|remove|members|add-member|remove-member. Groups hold
 * users and servers (not groups); `admins` and `servers` are built in. A member is written
 * user:<name> or server:<name>; a bare name means a user.
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_obj.h"

#include <stdio.h>
#include <string.h>

static void
print_members(json_t *doc)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(doc, "members"), i, m) puts(json_string_value(m));
}

static int
group_members(const struct ctl_verb *verb, int argc, char **argv)
{
    const char *pos[1];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, 1, 1, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    char path[1024];
    json_t *doc = NULL;
    if (!ctl_obj_path(path, sizeof(path), "group", pos[0], "/members"))
        r = ctl_usage_error(verb, "the name is too long");
    else
        r = ctl_api_call(&o, &t, "GET", path, NULL, &doc);
    if (r == 0) {
        if (o.json)
            ctl_print_json(doc);
        else
            print_members(doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

/* add-member / remove-member: one POST per member, stopping at the first refusal. */
static int
change_members(const struct ctl_verb *verb, int argc, char **argv, const char *op)
{
    const char *pos[64];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, 2, 64, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    char path[1024], suffix[32];
    snprintf(suffix, sizeof(suffix), "/members/%s", op);
    json_t *doc = NULL;
    if (!ctl_obj_path(path, sizeof(path), "group", pos[0], suffix))
        r = ctl_usage_error(verb, "the name is too long");
    for (int i = 1; i < n && r < 0; i++) {
        char buf[300];
        json_t *body = json_pack("{s:s}", "member", ctl_principal(pos[i], buf, sizeof(buf)));
        json_decref(doc);
        doc = NULL;
        /* Stopping half-way leaves the earlier members changed: say so on the same line. */
        char hint[400];
        snprintf(hint, sizeof(hint), "the members before %s were %s", pos[i],
                 strcmp(op, "add") == 0 ? "added" : "removed");
        int c = ctl_api_call_hint(&o, &t, "POST", path, body, 0, i > 1 ? hint : NULL, &doc);
        json_decref(body);
        if (c != 0)
            r = c;
    }
    if (r < 0) {
        r = CTL_EXIT_OK;
        if (o.json)
            ctl_print_json(doc);
        else
            print_members(doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

static int
group_add_member(const struct ctl_verb *verb, int argc, char **argv)
{
    return change_members(verb, argc, argv, "add");
}

static int
group_remove_member(const struct ctl_verb *verb, int argc, char **argv)
{
    return change_members(verb, argc, argv, "remove");
}

const struct ctl_verb ctl_group_verbs[] = {
    {"add", CTL_OBJ_ATTR_USAGE, "create a group (it must not exist yet)", NULL, ctl_obj_add},
    {"list", "[options]", "list groups (those you may read)", NULL, ctl_obj_list},
    {"show", "<name> [options]", "show one group: attributes, version, ACL", NULL, ctl_obj_show},
    {"set", CTL_OBJ_ATTR_USAGE " [--unset KEY]...",
     "change some attributes of a group, keeping the others", NULL, ctl_obj_set},
    {"remove", "<name> [options]", "delete a group (not admins or servers)", NULL, ctl_obj_remove},
    {"members", "<group> [options]", "list the members of a group, one per line", NULL,
     group_members},
    {"add-member", "<group> <member>... [options]",
     "add users (alice, user:alice) or servers (server:mbx1) to a group",
     "Prints the members afterwards. Each member must exist (else exit 8).\n", group_add_member},
    {"remove-member", "<group> <member>... [options]", "remove members from a group",
     "Prints the members afterwards.\n", group_remove_member},
    {NULL, NULL, NULL, NULL, NULL},
};

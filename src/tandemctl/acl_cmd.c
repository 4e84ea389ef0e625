/*
 * tandemctl acl show|grant|revoke <kind>/<name> ...: the access control list of any directory
 * object. Principals are user:<name>, server:<name> or group:<name> (a bare name is a user);
 * rights are read, write and full-control, each including the ones before it.
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_obj.h"
#include "tandemctl/ctl_table.h"

#include <stdio.h>
#include <string.h>

static void
print_acl(json_t *doc)
{
    static const char *const headers[] = {"PRINCIPAL", "RIGHT"};
    struct ctl_table *t = ctl_table_new(2, headers);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "acl"), i, e)
    {
        const char *cells[2] = {json_string_value(json_object_get(e, "principal")),
                                json_string_value(json_object_get(e, "right"))};
        ctl_table_add(t, cells);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

/* The path of spec's ACL plus suffix; returns 0 or the usage error's exit code. */
static int
acl_path(const struct ctl_verb *verb, const char *spec, const char *suffix, char *path, size_t size)
{
    char kind[32];
    const char *name;
    if (!ctl_obj_spec(spec, kind, sizeof(kind), &name))
        return ctl_usage_error(verb,
                               "\"%s\" is not <kind>/<name> (kinds: site network server "
                               "cluster cms database copy user group address-list)",
                               spec);
    if (!ctl_obj_path(path, size, kind, name, suffix))
        return ctl_usage_error(verb, "the name is too long");
    return 0;
}

static bool
right_ok(const char *r)
{
    return strcmp(r, "read") == 0 || strcmp(r, "write") == 0 || strcmp(r, "full-control") == 0;
}

/* show (body NULL), grant, revoke: one call, then the ACL it answers with. */
static int
acl_run(const struct ctl_verb *verb, int argc, char **argv, int n_args, const char *suffix)
{
    const char *pos[3];
    int n;
    struct ctl_api_opts o;
    struct admin_target t;
    int r = ctl_api_begin(verb, argc, argv, n_args, n_args, pos, &n, &o, &t);
    if (r >= 0)
        return r;
    char path[1024], pbuf[300];
    json_t *body = NULL, *doc = NULL;
    r = acl_path(verb, pos[0], suffix, path, sizeof(path));
    if (r == 0 && n_args == 3 && !right_ok(pos[2]))
        r = ctl_usage_error(verb, "\"%s\" is not a right: read, write or full-control", pos[2]);
    if (r == 0 && n_args == 3)
        body = json_pack("{s:s,s:s}", "principal", ctl_principal(pos[1], pbuf, sizeof(pbuf)),
                         "right", pos[2]);
    else if (r == 0 && n_args == 2)
        body = json_pack("{s:s}", "principal", ctl_principal(pos[1], pbuf, sizeof(pbuf)));
    if (r == 0)
        r = ctl_api_call(&o, &t, body ? "POST" : "GET", path, body, &doc);
    if (r == 0) {
        if (o.json)
            ctl_print_json(doc);
        else
            print_acl(doc);
    }
    json_decref(body);
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

static int
acl_show(const struct ctl_verb *verb, int argc, char **argv)
{
    return acl_run(verb, argc, argv, 1, "/acl");
}

static int
acl_grant(const struct ctl_verb *verb, int argc, char **argv)
{
    return acl_run(verb, argc, argv, 3, "/acl/grant");
}

static int
acl_revoke(const struct ctl_verb *verb, int argc, char **argv)
{
    return acl_run(verb, argc, argv, 2, "/acl/revoke");
}

const struct ctl_verb ctl_acl_verbs[] = {
    {"show", "<kind>/<name> [options]", "show an object's ACL (needs full-control on it)", NULL,
     acl_show},
    {"grant", "<kind>/<name> <principal> <right> [options]",
     "give a principal a right on an object, replacing the right it had there",
     "Example: tandemctl acl grant user/alice user:bob write\n"
     "Principals: user:<name> (or just <name>), server:<name>, group:<name>.\n"
     "Rights: read, write (includes read), full-control (includes write; also the ACL and\n"
     "delete). Prints the ACL afterwards.\n",
     acl_grant},
    {"revoke", "<kind>/<name> <principal> [options]",
     "take every right a principal has on an object", "Prints the ACL afterwards.\n", acl_revoke},
    {NULL, NULL, NULL, NULL, NULL},
};

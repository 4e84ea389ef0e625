#ifndef TANDEM_TANDEMCTL_CTL_OBJ_H
#define TANDEM_TANDEMCTL_CTL_OBJ_H

/*
 * The verbs every directory object kind shares (list, show, add, set, remove, password),
 * driven by the kind's description (ctl_kinds.h): which attributes get named options (the
 * rest are reached with --attr/--attrs) and which show as columns in a list.
 *
 * The kind is the noun the verb was called under (ctl_noun_of()), so each noun's verb table
 * (topology_cmd.c, user_cmd.c, group_cmd.c) can point at these handlers directly.
 */

#include "tandemctl/ctl.h"
#include "tandemctl/ctl_kinds.h"

#include <jansson.h>

/* Handlers (ctl_handler) for the shared verbs. */
int ctl_obj_list(const struct ctl_verb *verb, int argc, char **argv);
int ctl_obj_show(const struct ctl_verb *verb, int argc, char **argv);
int ctl_obj_add(const struct ctl_verb *verb, int argc, char **argv);
int ctl_obj_set(const struct ctl_verb *verb, int argc, char **argv);
int ctl_obj_remove(const struct ctl_verb *verb, int argc, char **argv);
int ctl_obj_password(const struct ctl_verb *verb, int argc, char **argv);

/* Usage and help text of add and set, which take attributes. */
#define CTL_OBJ_ATTR_USAGE "<name> [attribute options] [--attr KEY=VALUE]... [--attrs JSON]"
extern const char ctl_obj_attr_help[];

/* An attribute value as text for a table cell or a show line ("a, b" for a list); owned. */
char *ctl_obj_value_text(json_t *v);

/*
 * "user/alice" -> kind "user" and name "alice" (name borrowed from spec). Returns false when
 * spec is not KIND/NAME with a known kind.
 */
bool ctl_obj_spec(const char *spec, char *kind, size_t kind_size, const char **name_r);

/* "alice" -> "user:alice"; "server:mbx1", "group:x" unchanged. Writes into buf. */
const char *ctl_principal(const char *s, char *buf, size_t size);

/* The path /v1/objects/<kind>/<name><suffix>, percent-encoded, into buf; false if too long. */
bool ctl_obj_path(char *buf, size_t size, const char *kind, const char *name, const char *suffix);

#endif

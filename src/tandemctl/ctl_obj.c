/*
 * list, show, add, set, remove and password for any directory object kind (ctl_obj.h).
 *
 * `set` reads the object, changes only the attributes given, and writes it back with the
 * version it read, so two operators changing different attributes at once never silently
 * undo each other: the second write is refused (exit 8) and can simply be run again.
 */
#include "tandemctl/ctl_obj.h"

#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_parse.h"
#include "tandemctl/ctl_table.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 1024

const char ctl_obj_attr_help[] =
    "Attributes (the server's schema, docs/formats/directory.md, says which keys exist):\n"
    "  --attr KEY=VALUE     a string value; repeat for more keys\n"
    "  --attr KEY:=JSON     any JSON value: --attr quota_bytes:=1048576, --attr 'roles:=[\"a\"]'\n"
    "  --attrs JSON         a JSON object of attributes\n"
    "  --unset KEY          (set) remove the attribute\n"
    "  A list option given several times gives the whole list: --address a@x --address b@x\n"
    "  Options apply in the order given; a later one wins.\n";

static void *
must(void *p)
{
    if (!p) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return p;
}

/* ------------------------------------------------------------------ */
/* Names and paths                                                    */

bool
ctl_obj_path(char *buf, size_t size, const char *kind, const char *name, const char *suffix)
{
    int n = snprintf(buf, size, "/v1/objects/%s/", kind);
    if (n < 0 || (size_t)n >= size || !ctl_path_append(buf, size, name))
        return false;
    size_t len = strlen(buf);
    return len + strlen(suffix) < size && strcat(buf, suffix);
}

bool
ctl_obj_spec(const char *spec, char *kind, size_t kind_size, const char **name_r)
{
    const char *slash = strchr(spec, '/');
    if (!slash || slash == spec || slash[1] == '\0' || (size_t)(slash - spec) >= kind_size)
        return false;
    memcpy(kind, spec, (size_t)(slash - spec));
    kind[slash - spec] = '\0';
    *name_r = slash + 1;
    return ctl_kind_known(kind);
}

const char *
ctl_principal(const char *s, char *buf, size_t size)
{
    if (strchr(s, ':'))
        return s;
    snprintf(buf, size, "user:%s", s);
    return buf;
}

char *
ctl_obj_value_text(json_t *v)
{
    char *s = NULL;
    if (json_is_string(v))
        return must(strdup(json_string_value(v)));
    if (json_is_integer(v)) {
        if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
            s = NULL;
        return must(s);
    }
    if (json_is_boolean(v))
        return must(strdup(json_is_true(v) ? "yes" : "no"));
    if (json_is_array(v)) {
        size_t len = 0;
        FILE *f = must(open_memstream(&s, &len));
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            char *t = ctl_obj_value_text(item);
            fprintf(f, "%s%s", i ? ", " : "", t);
            free(t);
        }
        fclose(f);
        return must(s);
    }
    if (!v || json_is_null(v))
        return must(strdup("-"));
    return must(json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY));
}

/* ------------------------------------------------------------------ */
/* Arguments                                                          */

struct obj_args {
    struct ctl_api_opts api;
    const char *pos[4];
    int n_pos;
    json_t *attrs; /* owned; what add/set were told to write */
    json_t *unset; /* owned array of keys */
    json_t *lists; /* owned: list keys already started by an option in this command */
    const char *new_password_file;
};

static void
obj_args_clear(struct obj_args *a)
{
    json_decref(a->attrs);
    json_decref(a->unset);
    json_decref(a->lists);
    memset(a, 0, sizeof(*a));
}

/* One named attribute option with its value (NULL for the boolean ones). */
static int
apply_flag(const struct ctl_verb *verb, struct obj_args *a, const struct ctl_attr_flag *f,
           const char *val)
{
    switch (f->type) {
    case CTL_ATTR_STR:
        json_object_set_new(a->attrs, f->key, json_string(val));
        break;
    case CTL_ATTR_LIST:
        /* The first use in this command replaces the list; later ones add to it. */
        if (!json_object_get(a->lists, f->key)) {
            json_object_set_new(a->lists, f->key, json_true());
            json_object_set_new(a->attrs, f->key, json_array());
        }
        json_array_append_new(json_object_get(a->attrs, f->key), json_string(val));
        break;
    case CTL_ATTR_SIZE: {
        uint64_t v;
        if (!ctl_parse_size(val, &v) || v > INT64_MAX)
            return ctl_usage_error(verb,
                                   "%s \"%s\" is not a size in bytes (e.g. 1073741824 "
                                   "or 1G)",
                                   f->flag, val);
        json_object_set_new(a->attrs, f->key, json_integer((json_int_t)v));
        break;
    }
    case CTL_ATTR_PORT: {
        unsigned port;
        if (!ctl_parse_port(val, &port))
            return ctl_usage_error(verb, "%s \"%s\" is not a port (1..65535)", f->flag, val);
        json_object_set_new(a->attrs, f->key, json_integer(port));
        break;
    }
    case CTL_ATTR_TRUE:
    case CTL_ATTR_FALSE:
        json_object_set_new(a->attrs, f->key, json_boolean(f->type == CTL_ATTR_TRUE));
        break;
    }
    return 0;
}

/* --attr KEY=VALUE (string) or KEY:=JSON. */
static int
apply_attr(const struct ctl_verb *verb, struct obj_args *a, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (eq == spec + 1 && spec[0] == ':'))
        return ctl_usage_error(verb, "--attr \"%s\" is not KEY=VALUE or KEY:=JSON", spec);
    bool is_json = eq[-1] == ':';
    size_t klen = (size_t)(eq - spec) - (is_json ? 1 : 0);
    char *key = must(strndup(spec, klen));
    json_t *v;
    if (is_json) {
        json_error_t jerr;
        v = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
        if (!v) {
            int r = ctl_usage_error(verb, "--attr %s:= is not JSON: %s", key, jerr.text);
            free(key);
            return r;
        }
    } else {
        v = json_string(eq + 1);
        if (!v) {
            int r = ctl_usage_error(verb, "--attr %s= is not valid UTF-8", key);
            free(key);
            return r;
        }
    }
    json_object_set_new(a->attrs, key, v);
    json_object_del(a->lists, key);
    free(key);
    return 0;
}

/*
 * Parses a shared object verb's arguments: the common options, n_pos positionals, and with
 * takes_attrs the attribute options. Returns 0, or an exit code after printing.
 */
static int
obj_args_parse(const struct ctl_verb *verb, const struct ctl_kind *k, int argc, char **argv,
               int n_pos, bool takes_attrs, bool takes_unset, bool takes_password,
               struct obj_args *a)
{
    memset(a, 0, sizeof(*a));
    a->attrs = must(json_object());
    a->unset = must(json_array());
    a->lists = must(json_object());
    for (int i = 1; i < argc; i++) {
        int r = ctl_api_option(verb, argc, argv, &i, &a->api);
        if (r == 1)
            continue;
        if (r != 0)
            return r;
        const char *val = NULL;
        if (takes_attrs) {
            if ((r = ctl_opt_value(verb, "--attr", argc, argv, &i, &val)) != 0) {
                if (r != 1 || (r = apply_attr(verb, a, val)) != 0)
                    return r;
                continue;
            }
            if ((r = ctl_opt_value(verb, "--attrs", argc, argv, &i, &val)) != 0) {
                if (r != 1)
                    return r;
                json_error_t jerr;
                json_t *obj = json_loads(val, 0, &jerr);
                if (!json_is_object(obj)) {
                    json_decref(obj);
                    return ctl_usage_error(verb, "--attrs must be a JSON object%s%s",
                                           obj ? "" : ": ", obj ? "" : jerr.text);
                }
                const char *key;
                json_t *v;
                json_object_foreach(obj, key, v) json_object_del(a->lists, key);
                json_object_update(a->attrs, obj);
                json_decref(obj);
                continue;
            }
            bool matched = false;
            for (const struct ctl_attr_flag *f = k->flags; f->flag && !matched; f++) {
                if (f->type == CTL_ATTR_TRUE || f->type == CTL_ATTR_FALSE) {
                    if (strcmp(argv[i], f->flag) != 0)
                        continue;
                    matched = true;
                    r = apply_flag(verb, a, f, NULL);
                } else if ((r = ctl_opt_value(verb, f->flag, argc, argv, &i, &val)) != 0) {
                    matched = true;
                    if (r == 1)
                        r = apply_flag(verb, a, f, val);
                }
                if (matched && r != 0)
                    return r;
            }
            if (matched)
                continue;
        }
        if (takes_unset && (r = ctl_opt_value(verb, "--unset", argc, argv, &i, &val)) != 0) {
            if (r != 1)
                return r;
            json_array_append_new(a->unset, json_string(val));
            json_object_del(a->attrs, val);
            continue;
        }
        if (takes_password &&
            (r = ctl_opt_value(verb, "--new-password-file", argc, argv, &i, &val)) != 0) {
            if (r != 1)
                return r;
            a->new_password_file = val;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return ctl_usage_error(verb, "unknown option \"%s\"", argv[i]);
        if (a->n_pos == n_pos)
            return ctl_usage_error(verb, "unexpected argument \"%s\"", argv[i]);
        a->pos[a->n_pos++] = argv[i];
    }
    if (a->api.help)
        return 0;
    if (a->n_pos < n_pos)
        return ctl_usage_error(verb, "no %s name given", k->kind);
    return 0;
}

/* --help for a shared verb: its usage, the kind's attribute options, the common options. */
static void
obj_help(const struct ctl_verb *verb, const struct ctl_kind *k, bool attrs)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = must(open_memstream(&text, &len));
    if (attrs) {
        fprintf(f, "Options for %s attributes:\n", k->kind);
        for (const struct ctl_attr_flag *fl = k->flags; fl->flag; fl++)
            fprintf(f, "  %-20s %s%s\n", fl->flag, fl->key,
                    fl->type == CTL_ATTR_LIST    ? " (a list: repeat the option)"
                    : fl->type == CTL_ATTR_SIZE  ? " (bytes; K, M, G, T suffixes)"
                    : fl->type == CTL_ATTR_PORT  ? " (a port, 1..65535)"
                    : fl->type == CTL_ATTR_TRUE  ? " = true"
                    : fl->type == CTL_ATTR_FALSE ? " = false"
                                                 : "");
        fprintf(f, "%s\n", ctl_obj_attr_help);
    }
    fputs(ctl_api_options_help, f);
    fclose(f);
    ctl_verb_help_with(verb, must(text));
    free(text);
}

/* The verb's kind, from the noun it was called under. */
static const struct ctl_kind *
verb_kind(const struct ctl_verb *verb)
{
    const struct ctl_kind *k = ctl_kind_find(ctl_noun_of(verb));
    if (!k) {
        /* A table wired to these handlers under a noun ctl_kinds.c does not describe. */
        fprintf(stderr, "tandemctl: bug: no kind for noun %s\n", ctl_noun_of(verb));
        abort();
    }
    return k;
}

/* Parses, answers --help, resolves the target. Returns -1 to go on, else the exit code. */
static int
obj_begin(const struct ctl_verb *verb, int argc, char **argv, int n_pos, bool attrs, bool unset,
          bool password, struct obj_args *a, struct admin_target *t, const struct ctl_kind **k_r)
{
    const struct ctl_kind *k = *k_r = verb_kind(verb);
    int r = obj_args_parse(verb, k, argc, argv, n_pos, attrs, unset, password, a);
    if (r == 0 && a->api.help) {
        obj_help(verb, k, attrs);
        r = CTL_EXIT_OK;
    } else if (r == 0) {
        r = ctl_api_target(verb, &a->api, false, t);
        if (r == 0)
            return -1;
    }
    obj_args_clear(a);
    return r;
}

/* ------------------------------------------------------------------ */
/* Printing                                                           */

static void
kv_add(struct ctl_table *t, const char *key, const char *value)
{
    char k[300];
    snprintf(k, sizeof(k), "%s:", key);
    const char *cells[2] = {k, value};
    ctl_table_add(t, cells);
}

/* An object for people: what it is, its attributes, its ACL when the server showed it. */
static void
print_object(json_t *obj)
{
    struct ctl_table *t = ctl_table_new(2, NULL);
    char *s;
    kv_add(t, "kind", json_string_value(json_object_get(obj, "kind")));
    kv_add(t, "name", json_string_value(json_object_get(obj, "name")));
    kv_add(t, "version", s = ctl_obj_value_text(json_object_get(obj, "version")));
    free(s);
    json_t *pw = json_object_get(obj, "has_password");
    if (pw)
        kv_add(t, "password", json_is_true(pw) ? "set" : "not set");
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(obj, "attrs"), key, v)
    {
        kv_add(t, key, s = ctl_obj_value_text(v));
        free(s);
    }
    json_t *acl = json_object_get(obj, "acl");
    if (json_is_array(acl)) {
        size_t i;
        json_t *e;
        if (json_array_size(acl) == 0)
            kv_add(t, "acl", "(empty: only admins)");
        json_array_foreach(acl, i, e)
        {
            char line[600];
            snprintf(line, sizeof(line), "%s %s",
                     json_string_value(json_object_get(e, "principal")),
                     json_string_value(json_object_get(e, "right")));
            const char *cells[2] = {i ? "" : "acl:", line};
            ctl_table_add(t, cells);
        }
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

static void
print_list(const struct ctl_kind *k, json_t *doc)
{
    size_t n_cols = 1;
    while (k->columns[n_cols - 1])
        n_cols++;
    const char *headers[8];
    char upper[8][64];
    headers[0] = "NAME";
    for (size_t c = 1; c < n_cols && c < 8; c++) {
        size_t j = 0;
        for (const char *p = k->columns[c - 1]; *p && j < sizeof(upper[c]) - 1; p++)
            upper[c][j++] = *p == '_' ? ' ' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        upper[c][j] = '\0';
        headers[c] = upper[c];
    }
    struct ctl_table *t = ctl_table_new(n_cols, headers);
    size_t i;
    json_t *obj;
    json_array_foreach(json_object_get(doc, "objects"), i, obj)
    {
        char *cells[8] = {0};
        json_t *attrs = json_object_get(obj, "attrs");
        cells[0] = ctl_obj_value_text(json_object_get(obj, "name"));
        for (size_t c = 1; c < n_cols && c < 8; c++)
            cells[c] = ctl_obj_value_text(json_object_get(attrs, k->columns[c - 1]));
        ctl_table_add(t, (const char *const *)cells);
        for (size_t c = 0; c < n_cols; c++)
            free(cells[c]);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(&t);
}

/* ------------------------------------------------------------------ */
/* Verbs                                                              */

int
ctl_obj_list(const struct ctl_verb *verb, int argc, char **argv)
{
    struct obj_args a;
    struct admin_target t;
    const struct ctl_kind *k;
    int r = obj_begin(verb, argc, argv, 0, false, false, false, &a, &t, &k);
    if (r >= 0)
        return r;
    char path[PATH_MAX_LEN];
    snprintf(path, sizeof(path), "/v1/objects/%s", k->kind);
    json_t *doc = NULL;
    r = ctl_api_call(&a.api, &t, "GET", path, NULL, &doc);
    if (r == 0) {
        if (a.api.json)
            ctl_print_json(doc);
        else
            print_list(k, doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    obj_args_clear(&a);
    return r;
}

/* show and remove: one request on kind/name, then the answer printed as print() says (or as
 * JSON with --json). */
static int
obj_one(const struct ctl_verb *verb, int argc, char **argv, const char *method,
        void (*print)(const struct ctl_kind *k, const char *name, json_t *doc))
{
    struct obj_args a;
    struct admin_target t;
    const struct ctl_kind *k;
    int r = obj_begin(verb, argc, argv, 1, false, false, false, &a, &t, &k);
    if (r >= 0)
        return r;
    char path[PATH_MAX_LEN];
    json_t *doc = NULL;
    if (!ctl_obj_path(path, sizeof(path), k->kind, a.pos[0], ""))
        r = ctl_usage_error(verb, "the name is too long");
    else
        r = ctl_api_call(&a.api, &t, method, path, NULL, &doc);
    if (r == 0) {
        if (a.api.json)
            ctl_print_json(doc);
        else
            print(k, a.pos[0], doc);
    }
    json_decref(doc);
    admin_target_clear(&t);
    obj_args_clear(&a);
    return r;
}

static void
print_shown(const struct ctl_kind *k, const char *name, json_t *doc)
{
    (void)k;
    (void)name;
    print_object(doc);
}

int
ctl_obj_show(const struct ctl_verb *verb, int argc, char **argv)
{
    return obj_one(verb, argc, argv, "GET", print_shown);
}

/* Reads the new password for kind/name: --new-password-file, or asked (twice on a tty). */
static char *
new_password(const char *file, const char *kind, const char *name)
{
    if (file)
        return ctl_read_secret_file(file);
    char prompt[400];
    snprintf(prompt, sizeof(prompt), "New password for %s/%s: ", kind, name);
    return ctl_read_secret(prompt, true);
}

/* PUT .../password. Returns an exit code. */
static int
set_password(const struct obj_args *a, const struct admin_target *t, const char *kind,
             const char *name, const char *password)
{
    size_t len = strlen(password);
    if (len < 8 || len > 1024) {
        ctl_error("a password is 8 to 1024 bytes; this one is %zu", len);
        return CTL_EXIT_USAGE;
    }
    char path[PATH_MAX_LEN];
    if (!ctl_obj_path(path, sizeof(path), kind, name, "/password")) {
        ctl_error("the name is too long");
        return CTL_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:s}", "password", password);
    json_t *doc = NULL;
    int r = body ? ctl_api_call(&a->api, t, "PUT", path, body, &doc) : CTL_EXIT_ERROR;
    /* The body held the password: wipe jansson's copy before it is freed. */
    if (body) {
        json_t *p = json_object_get(body, "password");
        OPENSSL_cleanse((char *)json_string_value(p), json_string_length(p));
    }
    json_decref(body);
    json_decref(doc);
    return r;
}

int
ctl_obj_add(const struct ctl_verb *verb, int argc, char **argv)
{
    struct obj_args a;
    struct admin_target t;
    const struct ctl_kind *k;
    int r = obj_begin(verb, argc, argv, 1, true, false, true, &a, &t, &k);
    if (r >= 0)
        return r;
    const char *name = a.pos[0];
    char path[PATH_MAX_LEN];
    char *password = NULL;
    json_t *doc = NULL;
    if (a.new_password_file && !k->has_password) {
        r = ctl_usage_error(verb, "a %s has no password", k->kind);
        goto out;
    }
    /* Read the password before creating anything, so a typo cannot leave a half-made user. */
    if (a.new_password_file && !(password = new_password(a.new_password_file, k->kind, name))) {
        r = CTL_EXIT_USAGE;
        goto out;
    }
    if (!ctl_obj_path(path, sizeof(path), k->kind, name, "")) {
        r = ctl_usage_error(verb, "the name is too long");
        goto out;
    }
    json_t *body = json_pack("{s:O,s:i}", "attrs", a.attrs, "version", 0);
    char hint[400];
    snprintf(hint, sizeof(hint), "to change it: tandemctl %s set %s ...", k->kind, name);
    r = ctl_api_call_hint(&a.api, &t, "PUT", path, body, 409, hint, &doc);
    json_decref(body);
    if (r == 0 && password) {
        r = set_password(&a, &t, k->kind, name, password);
        if (r != 0)
            ctl_error("%s/%s was created, but without a password; set it with: tandemctl %s "
                      "password %s",
                      k->kind, name, k->kind, name);
    }
    if (r == 0) {
        if (a.api.json)
            ctl_print_json(doc);
        else
            /* The version is the create's; setting the password made the next one. */
            printf("created %s/%s (version %" JSON_INTEGER_FORMAT ")%s\n", k->kind, name,
                   json_integer_value(json_object_get(doc, "version")),
                   password ? ", then set its password" : "");
    }
out:
    if (password) {
        OPENSSL_cleanse(password, strlen(password));
        free(password);
    }
    json_decref(doc);
    admin_target_clear(&t);
    obj_args_clear(&a);
    return r;
}

int
ctl_obj_set(const struct ctl_verb *verb, int argc, char **argv)
{
    struct obj_args a;
    struct admin_target t;
    const struct ctl_kind *k;
    int r = obj_begin(verb, argc, argv, 1, true, true, false, &a, &t, &k);
    if (r >= 0)
        return r;
    const char *name = a.pos[0];
    char path[PATH_MAX_LEN];
    json_t *cur = NULL, *doc = NULL;
    if (json_object_size(a.attrs) == 0 && json_array_size(a.unset) == 0) {
        r = ctl_usage_error(verb, "nothing to change: give attribute options, --attr, "
                                  "--attrs or --unset");
        goto out;
    }
    if (!ctl_obj_path(path, sizeof(path), k->kind, name, "")) {
        r = ctl_usage_error(verb, "the name is too long");
        goto out;
    }
    if ((r = ctl_api_call(&a.api, &t, "GET", path, NULL, &cur)) != 0)
        goto out;
    json_t *attrs = json_deep_copy(json_object_get(cur, "attrs"));
    if (!json_is_object(attrs)) {
        json_decref(attrs);
        attrs = must(json_object());
    }
    size_t i;
    json_t *key;
    json_array_foreach(a.unset, i, key)
    {
        if (!json_object_get(attrs, json_string_value(key)))
            fprintf(stderr, "tandemctl: note: %s/%s has no attribute %s to unset\n", k->kind, name,
                    json_string_value(key));
        json_object_del(attrs, json_string_value(key));
    }
    json_object_update(attrs, a.attrs);
    json_t *body =
        json_pack("{s:o,s:O}", "attrs", attrs, "version", json_object_get(cur, "version"));
    /* The version just read is the only 409 a set can meet (the object exists). */
    r = ctl_api_call_hint(&a.api, &t, "PUT", path, body, 409,
                          "it changed since it was read: run the command again", &doc);
    json_decref(body);
    if (r == 0) {
        if (a.api.json)
            ctl_print_json(doc);
        else
            printf("changed %s/%s (version %" JSON_INTEGER_FORMAT ")\n", k->kind, name,
                   json_integer_value(json_object_get(doc, "version")));
    }
out:
    json_decref(cur);
    json_decref(doc);
    admin_target_clear(&t);
    obj_args_clear(&a);
    return r;
}

static void
print_removed(const struct ctl_kind *k, const char *name, json_t *doc)
{
    (void)doc;
    printf("removed %s/%s\n", k->kind, name);
}

int
ctl_obj_remove(const struct ctl_verb *verb, int argc, char **argv)
{
    return obj_one(verb, argc, argv, "DELETE", print_removed);
}

int
ctl_obj_password(const struct ctl_verb *verb, int argc, char **argv)
{
    struct obj_args a;
    struct admin_target t;
    const struct ctl_kind *k;
    int r = obj_begin(verb, argc, argv, 1, false, false, true, &a, &t, &k);
    if (r >= 0)
        return r;
    char *password = new_password(a.new_password_file, k->kind, a.pos[0]);
    if (!password) {
        r = CTL_EXIT_USAGE;
    } else {
        r = set_password(&a, &t, k->kind, a.pos[0], password);
        OPENSSL_cleanse(password, strlen(password));
        free(password);
    }
    if (r == 0) {
        if (a.api.json)
            puts("{\"ok\": true}");
        else
            printf("password of %s/%s set\n", k->kind, a.pos[0]);
    }
    admin_target_clear(&t);
    obj_args_clear(&a);
    return r;
}

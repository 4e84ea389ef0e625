/*
 * tandemctl cms move <cms> --to <node> [--comment TEXT]: a switchover (docs/cluster.md
 * "Switchover"). Asks the CMS's active node (POST /v1/cms/<cms>/move), then follows its
 * GET /v1/cluster until the move is no longer running, and prints how it ended and how long it
 * took (the active node's own count, from the request to its demotion).
 */
#include "tandemctl/ctl.h"
#include "tandemctl/ctl_api.h"
#include "tandemctl/ctl_parse.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Longer than the node's own limit (CLUSTER_MOVE_TIMEOUT_MS, 30 s): the node says how it ended. */
#define WAIT_MS 45000

static json_t *
find_move(json_t *doc, const char *cms)
{
    json_t *c;
    size_t i;
    json_array_foreach(json_object_get(doc, "cms"), i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        if (name && !strcmp(name, cms))
            return json_object_get(c, "move");
    }
    return NULL;
}

int
ctl_cms_move_run(const struct ctl_verb *verb, int argc, char **argv)
{
    struct ctl_api_opts o;
    const char *cms, *to = NULL, *comment = "";
    const struct ctl_opt opts[] = {
        {"--to", NULL, &to, NULL, NULL},
        {"--comment", NULL, &comment, NULL, NULL},
        {NULL, NULL, NULL, NULL, NULL},
    };
    int r = ctl_api_one(verb, argc, argv, opts, "CMS", &o, &cms);
    if (r >= 0)
        return r;
    if (!to || !to[0])
        return ctl_usage_error(verb, "missing --to <node>");
    char e_cms[200] = "", e_to[200] = "", e_comment[800] = "", path[1300];
    if (strlen(cms) > 63 || strlen(to) > 63 || strlen(comment) > 255)
        return ctl_usage_error(verb, "names are at most 63 bytes, a comment 255");
    /* Always fit: at most 3 bytes per byte, with the lengths bounded just above. */
    (void)ctl_path_append(e_cms, sizeof(e_cms), cms);
    (void)ctl_path_append(e_to, sizeof(e_to), to);
    (void)ctl_path_append(e_comment, sizeof(e_comment), comment);
    snprintf(path, sizeof(path), "/v1/cms/%s/move?to=%s&comment=%s", e_cms, e_to, e_comment);
    struct admin_target t;
    r = ctl_api_target(verb, &o, false, &t);
    if (r != 0)
        return r;
    json_t *doc = NULL;
    r = ctl_api_call(&o, &t, "POST", path, NULL, &doc);
    json_decref(doc);
    doc = NULL;
    json_t *move = NULL;
    for (int waited = 0; r == 0; waited += 100) {
        r = ctl_api_call(&o, &t, "GET", "/v1/cluster", NULL, &doc);
        if (r != 0)
            break;
        move = find_move(doc, cms);
        const char *state = json_string_value(json_object_get(move, "state"));
        if (state && strcmp(state, "running") != 0)
            break;
        if (waited >= WAIT_MS) {
            ctl_error("the move of %s to %s is still running after %d s; see tandemctl cms status",
                      cms, to, WAIT_MS / 1000);
            r = CTL_EXIT_ERROR;
            break;
        }
        json_decref(doc);
        doc = NULL;
        move = NULL;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (r == 0) {
        const char *state = json_string_value(json_object_get(move, "state"));
        json_int_t took = json_integer_value(json_object_get(move, "took_ms"));
        if (o.json)
            ctl_print_json(move);
        if (state && !strcmp(state, "completed")) {
            if (!o.json)
                printf("CMS %s moved to %s in %" JSON_INTEGER_FORMAT " ms (epoch %" JSON_INTEGER_FORMAT
                       " -> %" JSON_INTEGER_FORMAT ")\n",
                       cms, to, took, json_integer_value(json_object_get(move, "epoch_before")),
                       json_integer_value(json_object_get(move, "epoch_after")));
        } else {
            ctl_error("the move of %s to %s failed after %" JSON_INTEGER_FORMAT " ms: %s", cms, to,
                      took, json_string_value(json_object_get(move, "why")));
            r = CTL_EXIT_FAILED;
        }
    }
    json_decref(doc);
    admin_target_clear(&t);
    return r;
}

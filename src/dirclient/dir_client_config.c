/*
 * A directory client set up from a server's configuration (dir_client.h): the endpoints of
 * [directory], the CA of [tls], this server's name and the key in [directory] key_file
 * (default <datadir>/server.key).
 */
#include "dirclient/dir_client.h"

#include "lib/err.h"
#include "lib/tls.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first line of path: this server's key (a new string), or NULL with *why. */
static char *
read_key(const char *path, char **why)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (asprintf(why, "cannot read this server's directory key %s: %s", path,
                     strerror(errno)) < 0)
            *why = NULL;
        return NULL;
    }
    char line[1100];
    char *key = NULL;
    if (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0])
            key = strdup(line);
    }
    sodium_memzero(line, sizeof(line));
    fclose(f);
    if (!key && asprintf(why, "this server's directory key %s is empty", path) < 0)
        *why = NULL;
    return key;
}

int
dir_client_key_from_config(const struct tdm_config *cfg, char **key_r, char **error_r)
{
    *error_r = NULL;
    char *key_path = NULL;
    if (cfg->directory.key_file)
        key_path = strdup(cfg->directory.key_file);
    else if (asprintf(&key_path, "%s/server.key", cfg->datadir) < 0)
        key_path = NULL;
    if (!key_path)
        return -ENOMEM;
    *key_r = read_key(key_path, error_r);
    free(key_path);
    if (!*key_r)
        return *error_r ? TDM_EINVAL : -ENOMEM;
    return 0;
}

int
dir_client_from_config(struct event_base *base, const struct tdm_config *cfg,
                       struct dir_client **client_r, char **error_r)
{
    char *key;
    int ret = dir_client_key_from_config(cfg, &key, error_r);
    if (ret < 0)
        return ret;
    struct tls_files files;
    tls_files_from_config(cfg, &files);
    struct dir_client_options o = {
        .endpoints = cfg->directory.endpoints,
        .n_endpoints = cfg->directory.n_endpoints,
        .ca_file = files.ca,
        .server_name = cfg->server,
        .key = key,
        .cache_ttl_ms = cfg->directory.cache_ttl_ms,
    };
    ret = dir_client_new(base, &o, client_r, error_r);
    tls_files_clear(&files);
    sodium_memzero(key, strlen(key));
    free(key);
    return ret;
}

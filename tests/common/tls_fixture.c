/* TLS fixture for tests (tls_fixture.h). */
#include "tls_fixture.h"

#include "lib/config.h"
#include "scratch.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
tls_fixture_make(char *dir, size_t dir_size, const char *tag, struct tls_files *files_r)
{
    if (scratch_make(dir, dir_size, tag) != 0)
        return -1;
    char text[1024];
    snprintf(text, sizeof(text),
             "server = mbx1\nsite = dc1\ndatadir = %s\nroles = directory\n"
             "[network public]\naddress = 127.0.0.1\n",
             dir);
    struct tdm_config *cfg = NULL;
    char *err = NULL;
    if (tdm_config_load_buffer(text, strlen(text), "test.conf", &cfg, &err) < 0) {
        fprintf(stderr, "tls fixture: config: %s\n", err ? err : "out of memory");
        free(err);
        return -1;
    }
    bool created;
    int ret = tls_local_ensure(cfg, (uid_t)-1, (gid_t)-1, &created, &err);
    if (ret < 0) {
        fprintf(stderr, "tls fixture: %s\n", err ? err : "out of memory");
        free(err);
    } else {
        tls_files_from_config(cfg, files_r);
    }
    tdm_config_free(&cfg);
    return ret < 0 ? -1 : 0;
}

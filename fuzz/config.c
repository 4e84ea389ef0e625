/*
 * Fuzzes the configuration loader (src/lib/config_parse.c, src/lib/config.c). Whatever loads
 * must dump to text that loads again to the same dump: dump is what `tandemd --check-config`
 * shows, so it has to say exactly what the server runs with. Whatever fails must say why, with
 * the file name first.
 */
#include "lib/config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The dump of cfg in a malloc'd buffer (*len_r bytes), or NULL. */
static char *
dump(const struct tdm_config *cfg, size_t *len_r)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len_r);
    if (!f)
        abort();
    if (tdm_config_dump(cfg, f) != 0)
        abort();
    fclose(f);
    return buf;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tdm_config *cfg = NULL, *again = NULL;
    char *error = NULL;
    int r = tdm_config_load_buffer((const char *)data, size, "fuzz.conf", &cfg, &error);
    if (r < 0) {
        if (!error || strncmp(error, "fuzz.conf", 9) != 0 || cfg)
            abort();
        free(error);
        return 0;
    }
    if (error || !cfg)
        abort();
    size_t len1, len2;
    char *text1 = dump(cfg, &len1);
    if (tdm_config_load_buffer(text1, len1, "fuzz.conf", &again, &error) != 0)
        abort();
    char *text2 = dump(again, &len2);
    if (len1 != len2 || memcmp(text1, text2, len1) != 0)
        abort();
    free(text1);
    free(text2);
    tdm_config_free(&cfg);
    tdm_config_free(&again);
    return 0;
}

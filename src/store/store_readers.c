/* A worker's readers of mail databases (store_readers.h). */
#include "store/store_readers.h"

#include "store/store_copy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct entry {
    char *name;
    struct store_reader *reader;
};

struct store_readers {
    char *datadir;
    struct entry entries[STORE_READERS_MAX];
    size_t n;
};

int
store_readers_new(const char *datadir, struct store_readers **set_r)
{
    struct store_readers *s = calloc(1, sizeof(*s));
    if (!s || !(s->datadir = strdup(datadir))) {
        free(s);
        return -ENOMEM;
    }
    *set_r = s;
    return 0;
}

void
store_readers_free(struct store_readers **set)
{
    struct store_readers *s = *set;
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        store_reader_free(&s->entries[i].reader);
        free(s->entries[i].name);
    }
    free(s->datadir);
    free(s);
    *set = NULL;
}

struct store_reader *
store_readers_get(struct store_readers *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->entries[i].name, name) == 0)
            return s->entries[i].reader;
    /* A name from the directory is a single path component under db/, never more. */
    if (s->n == STORE_READERS_MAX || !name[0] || strchr(name, '/') || name[0] == '.')
        return NULL;
    char *path;
    if (asprintf(&path, "%s/db/%s", s->datadir, name) < 0)
        return NULL;
    struct store_reader *r = NULL;
    const char *why = NULL;
    if (access(path, F_OK) != 0 || store_is_copy(path) != 0 ||
        store_reader_open(path, NULL, &r, &why) < 0) {
        free(path);
        return NULL;
    }
    free(path);
    char *copy = strdup(name);
    if (!copy) {
        store_reader_free(&r);
        return NULL;
    }
    s->entries[s->n++] = (struct entry){copy, r};
    return r;
}

/* A name that could not be under db/ is no copy: there is no such database here at all. */
bool
store_readers_is_copy(struct store_readers *s, const char *name)
{
    if (!name[0] || strchr(name, '/') || name[0] == '.')
        return false;
    char *path;
    if (asprintf(&path, "%s/db/%s", s->datadir, name) < 0)
        return true;
    int ret = store_is_copy(path);
    free(path);
    return ret != 0;
}

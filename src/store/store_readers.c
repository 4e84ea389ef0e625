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
    char **dismounted; /* the core's list, owned; never opened while listed */
    size_t n_dismounted;
};

static void
free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

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
    free_names(s->dismounted, s->n_dismounted);
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
    if (store_readers_is_dismounted(s, name) || s->n == STORE_READERS_MAX || !name[0] || strchr(name, '/') || name[0] == '.')
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

bool
store_readers_is_dismounted(const struct store_readers *s, const char *name)
{
    for (size_t i = 0; i < s->n_dismounted; i++)
        if (strcmp(s->dismounted[i], name) == 0)
            return true;
    return false;
}

int
store_readers_set_dismounted(struct store_readers *s, const char *const *names, size_t n)
{
    char **list = n ? calloc(n, sizeof(*list)) : NULL;
    if (n && !list)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(list[i] = strdup(names[i]))) {
            free_names(list, i);
            return -ENOMEM;
        }
    free_names(s->dismounted, s->n_dismounted);
    s->dismounted = list;
    s->n_dismounted = n;
    /* Close what is listed now; the last entry fills each hole (the order means nothing). */
    for (size_t i = 0; i < s->n;) {
        if (!store_readers_is_dismounted(s, s->entries[i].name)) {
            i++;
            continue;
        }
        store_reader_free(&s->entries[i].reader);
        free(s->entries[i].name);
        s->entries[i] = s->entries[--s->n];
    }
    return 0;
}

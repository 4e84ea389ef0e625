/*
 * Aligned text tables (ctl_table.h). Every cell is kept as one string in one growing array,
 * row after row, so freeing is one loop.
 */
#include "tandemctl/ctl_table.h"

#include "tandemctl/ctl.h"

#include <stdlib.h>
#include <string.h>

struct ctl_table {
    size_t n_cols;
    size_t n_cells, cap;
    char **cells; /* header row first; owned */
};

static void *
must(void *p)
{
    if (!p) {
        fputs("tandemctl: out of memory\n", stderr);
        exit(CTL_EXIT_ERROR);
    }
    return p;
}

static void
add_cell(struct ctl_table *t, const char *s)
{
    if (t->n_cells == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->cells = must(realloc(t->cells, t->cap * sizeof(*t->cells)));
    }
    /* A control character in a cell (a newline in a description) would break the columns. */
    char *c = must(strdup(s ? s : "-"));
    for (char *p = c; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    t->cells[t->n_cells++] = c;
}

struct ctl_table *
ctl_table_new(size_t n_cols, const char *const *headers)
{
    struct ctl_table *t = must(calloc(1, sizeof(*t)));
    t->n_cols = n_cols;
    if (headers)
        for (size_t i = 0; i < n_cols; i++)
            add_cell(t, headers[i]);
    return t;
}

void
ctl_table_add(struct ctl_table *t, const char *const *cells)
{
    for (size_t i = 0; i < t->n_cols; i++)
        add_cell(t, cells[i]);
}

/* Characters, not bytes: continuation bytes of UTF-8 take no column. */
static size_t
width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

void
ctl_table_print(const struct ctl_table *t, FILE *out)
{
    size_t *w = must(calloc(t->n_cols, sizeof(*w)));
    for (size_t i = 0; i < t->n_cells; i++) {
        size_t cw = width(t->cells[i]);
        if (cw > w[i % t->n_cols])
            w[i % t->n_cols] = cw;
    }
    for (size_t i = 0; i < t->n_cells; i++) {
        size_t col = i % t->n_cols;
        fputs(t->cells[i], out);
        if (col + 1 == t->n_cols)
            fputc('\n', out);
        else
            fprintf(out, "%*s", (int)(w[col] - width(t->cells[i]) + 2), "");
    }
    free(w);
}

void
ctl_table_free(struct ctl_table **t)
{
    if (!*t)
        return;
    for (size_t i = 0; i < (*t)->n_cells; i++)
        free((*t)->cells[i]);
    free((*t)->cells);
    free(*t);
    *t = NULL;
}

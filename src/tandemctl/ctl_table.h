#ifndef TANDEM_TANDEMCTL_CTL_TABLE_H
#define TANDEM_TANDEMCTL_CTL_TABLE_H

/*
 * Aligned text tables for people: a header row in capitals, then rows, each column as wide as
 * its widest cell (counted in UTF-8 characters, not bytes), two spaces between columns, the
 * last column not padded. Cells are copied, so callers may pass temporaries.
 */

#include <stddef.h>
#include <stdio.h>

struct ctl_table;

/* A table with n_cols columns headed by headers[0..n_cols), or without a header row when
 * headers is NULL ("Key:  value" lines). Allocation failure is fatal. */
struct ctl_table *ctl_table_new(size_t n_cols, const char *const *headers);

/* Adds a row of n_cols cells; a NULL cell prints as "-". */
void ctl_table_add(struct ctl_table *t, const char *const *cells);

/* Prints the table to out (only the header when it has no rows). */
void ctl_table_print(const struct ctl_table *t, FILE *out);

void ctl_table_free(struct ctl_table **t);

#endif

#ifndef TANDEM_LIB_CONFIG_PARSE_H
#define TANDEM_LIB_CONFIG_PARSE_H

/*
 * Tokenizer for the tandemd configuration dialect (docs/config.md). Sans-IO: it is given the
 * whole file as a buffer and knows nothing of sections or keys beyond their syntax; the schema
 * (which sections and keys exist, their types) lives in lib/config.c.
 *
 * Syntax, line by line (LF or CRLF):
 *   blank or "# comment"                     ignored
 *   [type]  or  [type name]   # comment      section header
 *   key = value               # comment      key, value unquoted and trimmed, '#' ends it
 *   key = "va#lue \" \\ "     # comment      quoted value: keeps spaces and '#'; \" and \\ only
 * type and key are [a-z][a-z0-9_]*; name is [A-Za-z0-9._-]+. Keys before the first header
 * belong to the top-level section, whose type and name are "".
 * The first syntax error stops the parse: later lines cannot be trusted once one is wrong, and
 * an operator fixes one line at a time.
 */

#include <stddef.h>

#define CONFIG_MAX_FILE_SIZE (1024u * 1024u) /* bytes */
#define CONFIG_MAX_LINE 4096u                /* bytes, without the line ending */
#define CONFIG_MAX_ENTRIES 4096u             /* section headers plus keys */

/* One section header (key and value NULL) or one key. All strings are NUL-terminated and
 * live as long as the struct config_parsed they came from. */
struct config_entry {
    const char *section; /* section type: "network"; "" for the top-level section */
    const char *name;    /* section name: "public"; "" when the header has none */
    const char *key;     /* NULL for a section header */
    const char *value;   /* unquoted; NULL for a section header; may be "" */
    unsigned line;       /* 1-based */
};

struct config_parsed {
    char *text; /* owned copy of the input that every entry points into */
    struct config_entry *entries;
    size_t count;
};

/*
 * Parses len bytes of buf. filename is used only in messages. On success returns 0 and an owned
 * *parsed_r (free with config_parsed_free). On failure returns TDM_EINVAL (syntax), TDM_ELIMIT
 * (a limit above) or -ENOMEM, with *error_r an allocated "<filename>:<line>: ..." message the
 * caller frees (NULL only when even that allocation failed).
 */
int config_parse(const char *buf, size_t len, const char *filename, struct config_parsed **parsed_r,
                 char **error_r);

/* Frees *parsed and sets it to NULL; NULL is fine. */
void config_parsed_free(struct config_parsed **parsed);

#endif

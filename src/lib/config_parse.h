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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/*
 * Value syntax: the forms a value can take, independent of which key holds it (lib/config.c
 * binds keys to forms). Each parser returns 0, or -1 with a sentence in reason (at least
 * CONFIG_REASON_MAX bytes) that the caller puts after "key \"k\": ". Outputs are written only
 * on success.
 */
#define CONFIG_REASON_MAX 256

/* A number with a unit: units largest first, the last with factor 1, then a NULL suffix. */
struct config_units {
    const char *what; /* "size": for messages */
    const char *hint; /* how to write one */
    struct {
        const char *suffix;
        uint64_t factor;
    } unit[6];
};
extern const struct config_units config_size_units;     /* 4096, 64K, 1M, 1G (binary) */
extern const struct config_units config_duration_units; /* 500ms, 30s, 10m, 2h, 7d; in ms */
extern const struct config_units config_number_units;   /* decimal digits only */

/* v in [min, max] and a multiple of align (0: any) into *out. */
int config_value_number(const char *v, const struct config_units *units, uint64_t min, uint64_t max,
                        uint64_t align, uint64_t *out, char *reason);
/* n in the largest unit that divides it exactly ("64K"), which config_value_number reads. */
void config_value_format(char *buf, size_t size, uint64_t n, const struct config_units *units);

/* A DNS label of at most max lower-case letters, digits and '-', into out[max + 1]. */
int config_value_name(const char *v, size_t max, char *out, char *reason);
/* A POSIX user name of at most max characters, into out[max + 1]. */
int config_value_user(const char *v, size_t max, char *out, char *reason);
/* One of names (NULL-terminated); its index into *out. */
int config_value_enum(const char *v, const char *const *names, int *out, char *reason);
/* Splits v at commas into at most max trimmed, non-empty items, copied into buf (size bytes,
 * more than strlen(v)); items point into buf. */
int config_value_list(const char *v, char *buf, size_t size, const char **items, unsigned max,
                      unsigned *n_r, char *reason);
/* An IPv4 or IPv6 literal: *family_r AF_INET or AF_INET6, bytes_r in network order. */
int config_value_address(const char *v, int *family_r, unsigned char bytes_r[16], char *reason);
/* "address:port" or "[address]:port" (IPv6 only in brackets), port 1..65535. */
int config_value_endpoint(const char *v, int *family_r, unsigned char bytes_r[16], uint32_t *port_r,
                          char *reason);

/* Writes s so that the parser reads s back: quoted and escaped when it needs to be. */
void config_value_write(FILE *out, const char *s);

#endif

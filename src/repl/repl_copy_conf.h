#ifndef TANDEM_REPL_REPL_COPY_CONF_H
#define TANDEM_REPL_REPL_COPY_CONF_H

/*
 * The copy marker: <datadir>/db/<name>/copy.conf says "this database directory is a copy, not
 * the active", and where its active is. The core mounts a directory with that file as a copy
 * (store_copy_open + an agent, repl_copy.h) and never with store_open(); without it, as the
 * active. Activating a copy (issue 6, `copy activate`) removes the file; adding a copy writes
 * it (`tandemctl copy create`, docs/replication.md "Copies").
 *
 * The file is the server's local record of what the directory's copy, database and cms
 * objects say, so a copy replicates with the directory unreachable (docs/decisions.md).
 * Syntax: the configuration dialect (lib/config_parse.h):
 *
 *   role = passive                 # passive (same site, replay at once) | standby (lagged)
 *   kind = mail                    # the database's kind, for the record handler (default mail)
 *   replay_lag = 24h               # standby only: 0s..7d, default 24h; passive: 0s
 *   truncation_lag = 0s            # keep replayed generations this long: 0s..7d, default 0s
 *   suspended = "disk swap"        # present while an operator has it suspended (the comment)
 *   [source replication]           # the active's [listen replication] on each network, in
 *   endpoint = 127.0.2.1:7433      # the order they are tried (at least 1, at most 16)
 *   compression = zstd             # zstd | none (default): asked of the active in HELLO
 *   [source public]
 *   endpoint = 127.0.1.1:7433
 *
 * Written crash-safely (temporary file, fsync, rename, fsync of the directory).
 */

#include "lib/config.h"
#include "store/store.h"
#include "store/store_copy.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPL_COPY_CONF_NAME STORE_COPY_MARKER /* what makes a directory a copy */
#define REPL_COPY_MAX_SOURCES TDM_CONFIG_MAX_NETWORKS
#define REPL_COPY_MAX_REPLAY_LAG_MS (7ull * 24 * 3600 * 1000)
#define REPL_COPY_DEFAULT_STANDBY_LAG_MS (24ull * 3600 * 1000)
#define REPL_COPY_COMMENT_MAX 1024 /* bytes of a suspend comment */

struct repl_copy_source {
    char network[TDM_CONFIG_NAME_MAX + 1];
    struct tdm_config_endpoint endpoint;
    uint16_t compression; /* enum repl_compression asked for in HELLO; default NONE */
};

struct repl_copy_conf {
    uint16_t role; /* REPL_ROLE_PASSIVE or REPL_ROLE_STANDBY (proto/repl/repl_wire.h) */
    char kind[STORE_KIND_MAX + 1];
    uint64_t replay_lag_ms;
    uint64_t truncation_lag_ms; /* a replayed generation is deleted this long after its replay */
    /* Suspended by an operator: kept here so a restart does not resume it behind their back. */
    bool suspended;
    char suspend_comment[REPL_COPY_COMMENT_MAX + 1];
    struct repl_copy_source sources[REPL_COPY_MAX_SOURCES];
    unsigned n_sources; /* >= 1 */
};

/*
 * Parses len bytes of buf (filename for messages). Returns 0 with *conf_r filled, or
 * TDM_EINVAL / TDM_ELIMIT / -ENOMEM with *error_r (allocated, "<file>:<line>: ...").
 */
int repl_copy_conf_parse(const char *buf, size_t len, const char *filename,
                         struct repl_copy_conf *conf_r, char **error_r);

/* Reads <dbdir>/copy.conf. Returns 0, -ENOENT (not a copy: *error_r NULL), or an error as
 * repl_copy_conf_parse / -errno with *error_r (allocated). */
int repl_copy_conf_read(const char *dbdir, struct repl_copy_conf *conf_r, char **error_r);

/* The file's text for conf (allocated, the caller frees), which parses back to conf. */
char *repl_copy_conf_format(const struct repl_copy_conf *conf);

/* Writes <dbdir>/copy.conf crash-safely (dbdir must exist). Returns 0 or -errno with
 * *error_r (allocated). */
int repl_copy_conf_write(const char *dbdir, const struct repl_copy_conf *conf, char **error_r);

#endif

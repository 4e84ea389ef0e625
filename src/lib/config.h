#ifndef TANDEM_LIB_CONFIG_H
#define TANDEM_LIB_CONFIG_H

/*
 * The tandemd configuration file: loaded, checked against the schema in config.c and turned
 * into a struct tdm_config. Every section and key, with type, default and meaning, is in
 * docs/config.md; the syntax is in lib/config_parse.h.
 *
 * Errors are one message for a person: "<file>:<line>: key \"<key>\": <what is wrong>", or
 * "<file>:<line>: section [<type> <name>]: ..." for a header, or "<file>: ..." for something
 * missing from the whole file. The first error stops the load.
 */

#include "lib/log.h"

#include <stdint.h>
#include <stdio.h>

#define TDM_CONFIG_NAME_MAX 63 /* server, site and network names: one DNS label */
#define TDM_CONFIG_IFNAME_MAX 15 /* a network interface's name: IFNAMSIZ - 1 */
#define TDM_CONFIG_USER_MAX 32
#define TDM_CONFIG_MAX_NETWORKS 16
#define TDM_CONFIG_MAX_ENDPOINTS 16
#define TDM_CONFIG_MAX_DOMAINS 16
#define TDM_CONFIG_DOMAIN_MAX 253 /* a DNS name's text form */
#define TDM_CONFIG_MAX_MEMBERS 8 /* [member] sections: the other nodes and the witness */
#define TDM_CONFIG_MAX_CMS 8            /* [cms] sections */
#define TDM_CONFIG_MAX_CMS_DATABASES 50 /* databases of one CMS (Exchange 2007: 50 per server) */

/* Roles, as bits of tdm_config.roles. */
enum tdm_role {
    TDM_ROLE_MAILBOX = 1u << 0,
    TDM_ROLE_ACCESS = 1u << 1,
    TDM_ROLE_TRANSPORT = 1u << 2,
    TDM_ROLE_WITNESS = 1u << 3,
    TDM_ROLE_DIRECTORY = 1u << 4,
};

/* Listener protocols: the name in [listen <proto>]. */
enum tdm_proto {
    TDM_PROTO_IMAP,
    TDM_PROTO_IMAPS,
    TDM_PROTO_LMTP,
    TDM_PROTO_SMTP,
    TDM_PROTO_SUBMISSION,
    TDM_PROTO_HTTP,
    TDM_PROTO_HTTPS,
    TDM_PROTO_ADMIN,
    TDM_PROTO_REPLICATION, /* served by the core itself, not by a worker (DESIGN.md) */
    TDM_PROTO_CLUSTER,     /* heartbeats (docs/cluster.md): the core's too */
    TDM_PROTO_COORD,       /* a witness's coordination store (docs/cluster.md): the core's */
    TDM_PROTO_COUNT,
};

/* An IP address literal. family 0 means "not set". */
struct tdm_config_addr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char bytes[16]; /* network order; the first 4 for AF_INET */
    char text[46];           /* canonical form (inet_ntop), INET6_ADDRSTRLEN */
};

struct tdm_config_network {
    char name[TDM_CONFIG_NAME_MAX + 1];
    struct tdm_config_addr address;
    unsigned line; /* of the [network] header, for later messages (bind failures) */
};

struct tdm_config_listener {
    enum tdm_proto proto;
    char network[TDM_CONFIG_NAME_MAX + 1]; /* "" when the file gave a literal address */
    struct tdm_config_addr address;        /* where to bind: the network's address or literal */
    uint32_t port;                         /* 1..65535 */
    unsigned line;                         /* of the [listen] header */
};

struct tdm_config_endpoint {
    struct tdm_config_addr address;
    uint32_t port;
};

/* A list of endpoints in file order (a KT_ENDPOINT_LIST key). */
struct tdm_config_endpoint_list {
    struct tdm_config_endpoint items[TDM_CONFIG_MAX_ENDPOINTS];
    unsigned n;
};

/* [directory]: how this server reaches the directory role. */
struct tdm_config_directory {
    struct tdm_config_endpoint endpoints[TDM_CONFIG_MAX_ENDPOINTS];
    unsigned n_endpoints; /* 0 only when roles has TDM_ROLE_DIRECTORY and [directory] is absent */
    uint64_t cache_ttl_ms;
    char *key_file; /* this server's key for the directory; NULL = <datadir>/server.key */
};

/* [store]: defaults for the databases this server mounts (struct store_options). */
struct tdm_config_store {
    uint64_t generation_size; /* bytes */
    uint64_t idle_close_ms;   /* 0 = never close an idle generation early */
    uint64_t checkpoint_bytes;
    uint64_t checkpoint_interval_ms;
    uint64_t disk_reserve; /* bytes; 0 = no reserve */
};

/* [smtp]: the transport role's SMTP server (docs/config.md). */
struct tdm_config_smtp {
    /* Mail domains this system accepts mail for, lower-case; a recipient in any other domain
     * is relaying, which is refused. Listed first: the key fills the array and the count. */
    char domains[TDM_CONFIG_MAX_DOMAINS][TDM_CONFIG_DOMAIN_MAX + 1];
    unsigned n_domains;
    uint64_t max_message_size; /* bytes, SIZE */
    uint32_t max_recipients;   /* per transaction */
    uint32_t max_connections;  /* in total; a tenth of it, at least 1, per client address */
};

/* [imap]: limits of each IMAP listener ([listen imap], [listen imaps]). */
struct tdm_config_imap {
    uint32_t max_connections;    /* at once, in total */
    uint32_t max_per_address;    /* at once, from one client address */
    uint32_t max_login_failures; /* on one connection, before it is closed */
    uint64_t idle_keepalive_ms;  /* "* OK Still here" this often during IDLE; 0 = never */
};

/* [replication]: the source that serves this server's active databases to their copies. */
struct tdm_config_replication {
    uint64_t silence_timeout_ms; /* close a copy's connection that sent nothing this long */
};

/* [dumpster]: the transport role's copies of delivered mail (docs/smtp.md). */
struct tdm_config_dumpster {
    uint64_t max_age_ms; /* entries older than this go */
    uint64_t max_size;   /* bytes: the oldest entries go beyond it */
};

/* The mount dial of a CMS (docs/cluster.md, "Failover"). */
enum tdm_mount_dial {
    TDM_MOUNT_DIAL_LOSSLESS = 0,
    TDM_MOUNT_DIAL_GOOD = 1,
    TDM_MOUNT_DIAL_BEST = 2,
};

/* The replication mode of a CMS's databases on this node (docs/cluster.md, "Configuration"):
 * DIRECTORY reads each database object's `replication` in this server's own directory, as a
 * database outside any CMS (block without one). */
enum tdm_cms_replication {
    TDM_CMS_REPL_DIRECTORY = 0,
    TDM_CMS_REPL_BLOCK = 1,
    TDM_CMS_REPL_FILE = 2,
    TDM_CMS_REPL_SYNC = 3,
};

/* [cms <name>]: a clustered mailbox server this server may run (docs/cluster.md). Databases are
 * listed first: the key fills the array and the count. */
struct tdm_config_cms {
    char databases[TDM_CONFIG_MAX_CMS_DATABASES][TDM_CONFIG_NAME_MAX + 1];
    unsigned n_databases; /* at least 1 */
    char name[TDM_CONFIG_NAME_MAX + 1];
    struct tdm_config_addr address; /* bound on the node where the CMS is active */
    /* "": the address is on the host already (loopback) and only bound. Else it is added to
     * this interface on the active node, with prefix_len (0: not given, a host address), and
     * announced (gratuitous ARP). */
    char interface[TDM_CONFIG_IFNAME_MAX + 1];
    unsigned prefix_len;
    int mount_dial;                 /* enum tdm_mount_dial */
    int replication;                /* enum tdm_cms_replication */
    uint64_t sync_timeout_ms;       /* with TDM_CMS_REPL_SYNC: degrade to block after it */
    unsigned line;                  /* of the [cms] header */
};

/* [cluster]: this node's cluster (docs/cluster.md, "Configuration"). name[0] == '\0' when the
 * section is absent (a witness, or a server outside any cluster). */
struct tdm_config_cluster {
    char name[TDM_CONFIG_NAME_MAX + 1];
    char witness[TDM_CONFIG_NAME_MAX + 1]; /* the [member] that is the witness */
    uint64_t heartbeat_interval_ms;        /* 100 ms..10 s */
    uint32_t heartbeat_misses;             /* 2..60 */
    uint64_t lease_ttl_ms;                 /* 1 s..60 s, > 2 x heartbeat_interval */
    /* The site's transport servers' [listen admin] endpoints: asked to resubmit from their
     * dumpsters after a failover (docs/cluster.md "Failover"); none = nobody is asked. */
    struct tdm_config_endpoint_list transports;
};

/* One network a [member] shares with this server: its [listen cluster] endpoint there. */
struct tdm_config_member_net {
    char network[TDM_CONFIG_NAME_MAX + 1]; /* one of this server's [network]s */
    struct tdm_config_endpoint endpoint;
    unsigned line;
};

/* [member <name>]: another member of this server's cluster (a node or the witness). */
struct tdm_config_member {
    char name[TDM_CONFIG_NAME_MAX + 1];
    struct tdm_config_member_net nets[TDM_CONFIG_MAX_NETWORKS]; /* in file order: try order */
    unsigned n_nets; /* at least 1 */
    struct tdm_config_endpoint coord; /* the witness's [listen coord]; port 0 on a node */
    unsigned coord_line;              /* 0 = no coord key */
    unsigned line;                    /* of the [member] header */
};

/* [log] */
struct tdm_config_log {
    enum log_level level;
    char *events; /* path of the operator events file; a load sets <datadir>/events.log when
                   * the file names none, so never NULL in a loaded config */
};

/* [tls]: each NULL means the local file in <datadir>/tls/ (lib/tls.h resolves them). */
struct tdm_config_tls {
    char *certificate; /* the operator's own certificate chain; set together with key */
    char *key;
    char *ca; /* CA certificates that peers' certificates are checked against */
};

struct tdm_config {
    char *path; /* the file name as given, for messages */

    char server[TDM_CONFIG_NAME_MAX + 1];
    char site[TDM_CONFIG_NAME_MAX + 1];
    char *datadir;                      /* absolute path */
    unsigned roles;                     /* enum tdm_role bits; never 0 */
    char user[TDM_CONFIG_USER_MAX + 1]; /* "" when not set: keep the starting user */

    struct tdm_config_network networks[TDM_CONFIG_MAX_NETWORKS];
    unsigned n_networks; /* at least 1 */
    struct tdm_config_listener listeners[TDM_PROTO_COUNT];
    unsigned n_listeners; /* in file order, one per protocol at most */

    struct tdm_config_directory directory;
    struct tdm_config_store store;
    struct tdm_config_log log;
    struct tdm_config_tls tls;
    struct tdm_config_smtp smtp;
    struct tdm_config_imap imap;
    struct tdm_config_replication replication;
    struct tdm_config_dumpster dumpster;
    struct tdm_config_cms cms[TDM_CONFIG_MAX_CMS];
    unsigned n_cms; /* in file order */
    struct tdm_config_cluster cluster;
    struct tdm_config_member members[TDM_CONFIG_MAX_MEMBERS];
    unsigned n_members; /* in file order */
};

/*
 * Loads and checks the file at path. On success returns 0 and an owned *cfg_r (free with
 * tdm_config_free). On failure returns -errno (the file could not be read), TDM_EINVAL (a
 * mistake in the file), TDM_ELIMIT (a size or count limit) or -ENOMEM, with *error_r an
 * allocated message the caller frees (NULL only when even that allocation failed).
 */
int tdm_config_load_file(const char *path, struct tdm_config **cfg_r, char **error_r);

/* The same for len bytes of buf, already read; filename names it in messages. */
int tdm_config_load_buffer(const char *buf, size_t len, const char *filename,
                           struct tdm_config **cfg_r, char **error_r);

/*
 * Writes the effective configuration, defaults filled in, in the file's own syntax (it loads
 * back to an equal config). Returns 0 or -errno from the stream.
 */
int tdm_config_dump(const struct tdm_config *cfg, FILE *out);

/*
 * An independent copy of cfg (dumped and loaded back), for a module that must keep its
 * configuration while a reload frees the one it started with. 0 with an owned *clone_r, or an
 * error as tdm_config_load_buffer with *error_r (allocated).
 */
int tdm_config_clone(const struct tdm_config *cfg, struct tdm_config **clone_r, char **error_r);

/* The names used in the file: "mailbox", "imap"; NULL for a value out of range. */
const char *tdm_config_role_name(enum tdm_role role);
const char *tdm_config_proto_name(enum tdm_proto proto);

/* "lossless", "good", "best"; NULL for a value out of range. */
const char *tdm_config_mount_dial_name(int dial);

/* Frees *cfg and sets it to NULL; NULL is fine. */
void tdm_config_free(struct tdm_config **cfg);

#endif

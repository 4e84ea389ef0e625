#ifndef TANDEM_TANDEMD_TANDEMD_H
#define TANDEM_TANDEMD_TANDEMD_H

/*
 * What tandemd's own files share (docs/tandemd.md describes the process structure).
 *
 * The supervisor (supervisor.c) starts each child by fork + exec of its own binary with hidden
 * arguments (child.c parses them): a fresh image means no libevent state, signal handlers or
 * heap copied from the supervisor, so every child runs its own clean loop and LeakSanitizer sees
 * only what the child allocated. A child receives, as inherited descriptors:
 *   --ipc-fd N      its end of a socketpair to the supervisor (typed IPC, lib/ipc.h)
 *   --config-fd N   a memfd holding the supervisor's effective configuration in the file's
 *                   syntax (tdm_config_dump); the supervisor rewrites it in place before it
 *                   sends RELOAD, so a child rereads it then
 *   --listen-fd N   a worker: the listening socket the supervisor bound for it; the core:
 *                   [listen replication]'s socket, when the config has one
 *   --cms-fd N      its end of a SOCK_SEQPACKET pair on which the supervisor passes the
 *                   sockets of CMS addresses (SCM_RIGHTS), one per CMS_LISTEN message
 */

#include "lib/config.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct ipc_msg;

/* Exit codes, documented in --help and docs/tandemd.md. */
enum tandemd_exit {
    TANDEMD_EXIT_OK = 0,
    TANDEMD_EXIT_START = 1,  /* could not start: lock held, bind failed, datadir, privileges */
    TANDEMD_EXIT_CONFIG = 2, /* usage error or invalid configuration */
};

/* ---- sockets.c: what the supervisor sets up before it forks anything ---- */

/*
 * Creates datadir and <datadir>/db if missing (mode 0750), and <datadir>/run (mode 0700, owned
 * by cfg->user when running as root: the core binds its socket there after the drop). Returns 0
 * or -errno with *error_r (allocated; the caller frees).
 */
int tandemd__make_dirs(const struct tdm_config *cfg, char **error_r);

/*
 * Takes the exclusive lock <datadir>/tandemd.lock and writes our pid into it. Returns 0 with
 * the locked descriptor in *fd_r (keep it open for the life of the process: closing it drops
 * the lock), or -errno with *error_r (allocated) naming the pid that holds the lock.
 */
int tandemd__lock_datadir(const char *datadir, int *fd_r, char **error_r);

/*
 * Binds and listens on every listener of cfg; fds_r[i] is cfg->listeners[i]'s socket
 * (non-blocking, close-on-exec). Returns 0, or -errno with *error_r (allocated) naming the
 * listener, its address and its config line; on failure nothing stays open.
 */
int tandemd__bind_listeners(const struct tdm_config *cfg, int *fds_r, char **error_r);
/* A listening TCP socket on address:port (non-blocking, close-on-exec, SO_REUSEADDR, never
 * SO_REUSEPORT): the fd, or -errno. For the listeners and the CMS addresses alike. */
int tandemd__listen_socket(const struct tdm_config_addr *address, uint32_t port);
/* The same socket bound but not listening yet: it holds the port against binds without
 * SO_REUSEADDR while a connection to it is refused, not queued. A listen() on it later can
 * still fail with EADDRINUSE (another socket listens there meanwhile). The fd, or -errno. */
int tandemd__bound_socket(const struct tdm_config_addr *address, uint32_t port);
#define TANDEMD_LISTEN_BACKLOG 128
/* Binds and listens on one listener (as tandemd__bind_listeners does each): the fd, or -errno
 * with *error_r (malloc'd). For [listen coord], which the core binds itself. */
int tandemd__bind_listener(const struct tdm_config *cfg, const struct tdm_config_listener *l,
                           char **error_r);

/*
 * When running as root: drops to cfg->user (initgroups, setgid, setuid) and checks that root
 * cannot be regained. Without a user, keeps root and emits an event. Returns 0 or -errno with
 * *error_r (allocated).
 */
int tandemd__drop_privileges(const struct tdm_config *cfg, char **error_r);

/* ---- tls_setup.c ---- */

/*
 * Before the privilege drop: creates the local CA set in <datadir>/tls when cfg uses it and it
 * does not exist (owned by cfg->user when running as root; emits TDM_EV_TLS_LOCAL_CA_CREATED),
 * then loads the certificate and key in force once as a check. Returns 0 or an error with
 * *error_r (allocated) naming the file.
 */
int tandemd__ensure_tls(const struct tdm_config *cfg, char **error_r);

/* --print-ca: prints the path of the CA file clients need to trust this server; returns an
 * exit code. */
int tandemd__print_ca(const struct tdm_config *cfg);

/* ---- supervisor.c ---- */

/*
 * Runs the supervisor until SIGTERM/SIGINT; takes ownership of *cfg (set to NULL) and of the
 * cfg->n_listeners sockets in listen_fds (from tandemd__bind_listeners). Returns an exit code.
 * config_path (borrowed, must outlive the call) is the file SIGHUP rereads.
 */
int tandemd__supervise(const char *config_path, struct tdm_config **cfg, const int *listen_fds);

/* ---- supervisor_cms.c: binding the CMS addresses (docs/cluster.md, "CMS address") ---- */

struct sup_cms;

/* What supervisor.c does for supervisor_cms.c; every call is on the supervisor's loop. */
struct sup_cms_hooks {
    void *ctx;
    /* Gives the listening socket fd (borrowed: the child gets its own copy) on cms's address
     * to the child serving proto: the worker of that protocol, or the core for replication. */
    void (*listen)(void *ctx, const char *cms, enum tdm_proto proto, int fd);
    /* Tells every child that may hold a socket of cms to close it (CMS_LISTEN down). */
    void (*close)(void *ctx, const char *cms);
    /* Tells the core where cms stands (CMS_STATE, enum tdm_ipc_cms_state). */
    void (*state)(void *ctx, const char *cms, uint16_t state);
};

/* Whether proto listens on CMS addresses too: the client protocols and replication. */
bool tandemd__cms_proto(enum tdm_proto proto);
/* cfg (borrowed, outlives it) is read at each UP for the CMS's address and the ports. */
struct sup_cms *tandemd__sup_cms_new(struct event_base *base, const struct tdm_config *cfg,
                                     const struct sup_cms_hooks *hooks);
/* The core's CMS_CONTROL for the CMS named name (len bytes): up binds (retrying while a bind
 * fails) and hands the sockets over once all are bound; down closes them. 0, or TDM_ENOTFOUND
 * for an up of a name the configuration does not have. */
int tandemd__sup_cms_control(struct sup_cms *sc, const char *name, size_t len, bool up);
/* The core is gone: its decisions go with it, every CMS goes down. */
void tandemd__sup_cms_all_down(struct sup_cms *sc);
/* The child serving proto was (re)started: it gets the sockets of every CMS that is up. */
void tandemd__sup_cms_resend(struct sup_cms *sc, enum tdm_proto proto);
void tandemd__sup_cms_free(struct sup_cms **sc);

/* ---- reload.c ---- */

/*
 * Emits one event (TDM_EV_PROCESS_RELOAD_NEEDS_RESTART) for each setting that differs between
 * cur and fresh but only takes effect at a restart, naming the key; returns how many.
 */
unsigned tandemd__report_unreloadable(const struct tdm_config *cur, const struct tdm_config *fresh,
                                      const char *config_path);

/* ---- child.c: the parts every child shares ---- */

enum tandemd_child_kind {
    TANDEMD_CHILD_CORE,
    TANDEMD_CHILD_WORKER,
};

/* The role of a child process, as given by the hooks below. */
struct tandemd_child_ops {
    /* Called once the loop exists; returns 0 or exits with log_fatal. */
    int (*start)(struct event_base *base, const struct tdm_config *cfg, int listen_fd);
    /* Called on SHUTDOWN, on SIGTERM, or when the supervisor goes away: release everything
     * (close databases cleanly) before the process exits 0. */
    void (*stop)(void);
    /* Optional: on SHUTDOWN or SIGTERM, while the loop still runs: starts closing the clients
     * gracefully (each is told goodbye, which must reach it before the socket closes), and
     * says whether they are all gone. Called again until true or half the shutdown deadline
     * has passed; stop() follows either way. */
    bool (*drain)(void);
    /* Optional: after RELOAD, with the new configuration (valid until the next reload or
     * stop), for a role that keeps settings of its own. */
    void (*reload)(const struct tdm_config *cfg);
    /* Optional: CMS_LISTEN up: serve fd (taken) too, a socket on the address of CMS cms for
     * proto. Without the hook the socket is closed. */
    void (*cms_listen)(const char *cms, enum tdm_proto proto, int fd);
    /* Optional: CMS_LISTEN down: close every socket of cms and end what was accepted on them
     * (nothing to do for a CMS the child has no socket of). */
    void (*cms_close)(const char *cms);
    /* Optional (the core): CMS_STATE from the supervisor. */
    void (*cms_state)(const char *cms, uint16_t state);
};

/* Queues msg to the supervisor on this child's IPC channel (the core's CMS_CONTROL). */
void tandemd__child_send(const struct ipc_msg *msg);

/* ---- core.c: the databases the core knows, for core_ipc.c (loop thread only) ---- */

struct store;

/* Databases found under <datadir>/db/ at start, in ascending name order. */
size_t tandemd__core_db_count(void);
/* The i-th: its name, its kind ("" when unreadable) and its store (NULL: refused at mount),
 * all borrowed until the core stops. */
void tandemd__core_db_get(size_t i, const char **name_r, const char **kind_r,
                          struct store **store_r);
/* The mounted store named name (len bytes, not NUL-terminated), or NULL. */
struct store *tandemd__core_db_find(const char *name, size_t len);

/* ---- core_repl.c: replication (loop thread only) ---- */

struct store_options;
struct repl_copy_status;

/* True when the database directory dbdir is a copy (holds copy.conf). */
bool tandemd__core_repl_is_copy(const char *dbdir);
/* Whether database name (len bytes) is one this server holds as a copy. */
bool tandemd__core_repl_holds_copy(const char *name, size_t len);
/* Records the copy name in dbdir (its copy.conf is read now; a bad one is kept as the copy's
 * error for copy status). At start, before tandemd__core_repl_start. */
void tandemd__core_repl_add_copy(const char *name, const char *dbdir);
/* After the mounts: starts every copy's agent, and the source on listen_fd ([listen
 * replication], -1 without one) with every mounted database. o: the [store] options. */
void tandemd__core_repl_start(struct event_base *base, const struct tdm_config *cfg,
                              const struct store_options *o, int listen_fd);
/* Stops the source and every agent (closing the copies); before the stores close. */
void tandemd__core_repl_stop(void);
/* core_repl_source.c: serves every mounted database on listen_fd (-1: nothing to do). A
 * source that cannot start is logged; the databases stay mounted. */
void tandemd__core_repl_source_start(struct event_base *base, const struct tdm_config *cfg,
                                     int listen_fd);
/* Stops it: every copy gets ERROR shutdown; before the stores close. */
void tandemd__core_repl_source_stop(void);
/* Copies in ascending name order: the i-th's name (borrowed until stop), its status, and the
 * reason it could not start (*error_r, NULL when its agent runs). */
size_t tandemd__core_copy_count(void);
const char *tandemd__core_copy_get(size_t i, struct repl_copy_status *st_r, const char **error_r);
/* Suspend (comment: copied) or resume the copy named name (len bytes). 0, TDM_ENOTFOUND,
 * TDM_EFAILED (its agent never started) or -ENOMEM. */
int tandemd__core_copy_suspend(const char *name, size_t len, const char *comment);
int tandemd__core_copy_resume(const char *name, size_t len);
/* Reseeds it from a snapshot of its active: TDM_EEXIST while the copy has files (a log
 * directory) and delete_existing is false; otherwise as resume. */
int tandemd__core_copy_reseed(const char *name, size_t len, bool delete_existing);
/* For activation (core_activate.c): the copy named name (len bytes): its status (zero when
 * its agent is not running: *running_r false), directory, kind and start error, all borrowed
 * until the copy is forgotten; false when there is none. */
bool tandemd__core_copy_find(const char *name, size_t len, struct repl_copy_status *st_r,
                             const char **dir_r, const char **kind_r, const char **error_r,
                             bool *running_r);
/* Stops its agent (which closes the copy); the copy stays listed, "stopped for activation". */
void tandemd__core_copy_stop_agent(const char *name, size_t len);
/* Takes it out of the list (stopping its agent if it runs). */
void tandemd__core_copy_forget(const char *name, size_t len);
/* After start: records the copy name in dbdir (as tandemd__core_repl_add_copy) and starts its
 * agent (the cluster agent's demotion of a database). There must be no copy of that name. */
void tandemd__core_repl_start_copy(const char *name, const char *dbdir);
/* After RELOAD: the configuration copies started from now on use (the old one is freed). */
void tandemd__core_repl_reload(const struct tdm_config *cfg);
/* The [store] options the copies were started with. */
const struct store_options *tandemd__core_repl_store_options(void);
/* core_repl_source.c: a dismounted database: its copies are closed, then answered
 * not-active; mount serves it again from store. */
void tandemd__core_repl_source_dismount(const char *name);
void tandemd__core_repl_source_mount(const char *name, struct store *store);
/* core_repl_source.c: serves a database mounted after start (an activated copy). */
void tandemd__core_repl_source_add(const char *name, struct store *store);
/* core.c: adds a database mounted after start (an activated copy) to the list; takes store. */
void tandemd__core_db_add(const char *name, const char *kind, struct store *store);
/* core.c, for core_dismount.c: database name (len bytes): its store (NULL when dismounted or
 * refused at mount), kind and whether it is dismounted; false when it is not listed. */
bool tandemd__core_db_lookup(const char *name, size_t len, struct store **store_r,
                             const char **kind_r, bool *dismounted_r);
/* Sets them (the database must be listed); fenced: its commits are answered TDM_ENOTFOUND. */
void tandemd__core_db_set(const char *name, size_t len, struct store *store, bool dismounted,
                          bool fenced);
/* Whether commits to database name (NUL-terminated) are refused even when durable. */
bool tandemd__core_db_fenced(const char *name);
/* Takes a dismounted database out of the list (the cluster agent's demotion: it is a copy
 * now). False when it is not listed or still has a store. */
bool tandemd__core_db_remove(const char *name);
/* [server] datadir. */
const char *tandemd__core_datadir(void);

/* ---- core_dismount.c: tandemctl db dismount / mount (docs/replication.md) ---- */

/* Dismounts active database name (len bytes): stops acknowledging its commits (answered
 * TDM_ENOTFOUND from now on, as for a database not here), stops serving it to copies (which
 * see it as not active: ServiceDown), closes the store cleanly. 0 (also when already
 * dismounted), TDM_ENOTFOUND (no active database of that name), or the close's error (it is
 * dismounted all the same). A restart mounts it again. */
int tandemd__core_db_dismount(const char *name, size_t len);
/* Mounts it again: 0 (also when mounted), TDM_ENOTFOUND, or store_open's error. */
int tandemd__core_db_mount(const char *name, size_t len);
/* The same with store_open's min_epoch (the cluster agent mounts in the lease's epoch). */
int tandemd__core_db_mount_epoch(const char *name, size_t len, uint64_t min_epoch);

/* ---- core_activate.c: tandemctl copy activate ---- */

/* Activates the copy named name (len bytes) here (docs/replication.md, "Activation"): 0 when
 * it is mounted as active; TDM_ENOTFOUND (no such copy), TDM_ECONFLICT (its source still
 * serves it as active), TDM_EGAP (without force: nothing proves it has all the log), or the
 * error that stopped it (it stays a copy, its agent stopped). Emits an event for each. */
int tandemd__core_copy_activate(const char *name, size_t len, bool force);
/* The cluster agent's activation (docs/cluster.md "Failover"): the same steps without the
 * checks (the agent decided), everything durable replayed, the store opened with min_epoch at
 * least that; 0, TDM_ENOTFOUND or the error (event 4022, it stays a copy, agent stopped).
 * *lost_records_r: what the copy's source last reported beyond it. */
int tandemd__core_copy_activate_epoch(const char *name, size_t len, uint64_t min_epoch,
                                      uint64_t *lost_records_r);

/* ---- core_copy_remove.c: tandemctl copy remove ---- */

/* Stops the agent of the copy named name (len bytes) and deletes its directory, which must
 * still hold copy.conf (docs/replication.md, "Removing a copy"): 0, TDM_ENOTFOUND (no such
 * copy), TDM_EINVAL (no marker any more: not deleted), or -errno (event 4024 says what is
 * left). */
int tandemd__core_copy_remove(const char *name, size_t len);

/* ---- core_cms.c: the CMS addresses (docs/cluster.md, "CMS address") ---- */

/*
 * Asks the supervisor to bring the address of the [cms] named cms up here (bind every client
 * protocol's and replication's port on it, hand the sockets to the workers and the core) or
 * down (close them; the workers end the connections accepted on them). The core decides, the
 * supervisor binds: it may hold privileges the core does not. Idempotent: asking for the state
 * already asked for does nothing. Returns 0, or TDM_ENOTFOUND when the configuration has no
 * [cms] of that name. Loop thread of the core only. A standalone CMS (a [cms] without
 * [cluster]) is brought up by the core itself after the mounts; the cluster agent calls these
 * on cluster nodes.
 */
int tandemd__cms_up(const char *cms);
int tandemd__cms_down(const char *cms);
/* After the mounts: a standalone CMS (no [cluster]) is brought up. */
void tandemd__core_cms_start(const struct tdm_config *cfg);
/* After RELOAD: a standalone CMS added to the file comes up, one removed goes down. */
void tandemd__core_cms_reload(const struct tdm_config *cfg);
/* CMS_STATE from the supervisor. */
void tandemd__core_cms_state(const char *cms, uint16_t state);
/* The replication socket of a CMS (core_repl_source.c serves it); fd taken. */
void tandemd__core_cms_listen(const char *cms, enum tdm_proto proto, int fd);
void tandemd__core_cms_close(const char *cms);
/* For CMS_STATUS_REPLY: every [cms] of the configuration in name order, with its state here
 * (borrowed until the next reload). */
size_t tandemd__core_cms_count(void);
void tandemd__core_cms_get(size_t i, const char **name_r, uint16_t *state_r);
void tandemd__core_cms_stop(void);
/* core_repl_source.c: serves copies on fd (a CMS address) too; fd taken (closed without a
 * source). tag marks it for tandemd__core_repl_source_close_socket. */
void tandemd__core_repl_source_add_socket(int fd, uint32_t tag);
void tandemd__core_repl_source_close_socket(uint32_t tag);
/* core_repl_source.c: the copies of server connected now; with why, they are ended with it
 * (repl_source_sessions; core_server_auth.c's check of live sessions). */
size_t tandemd__core_repl_source_sessions(const char *server, const char *why);

/* ---- core_ipc_copy.c: COPY_STATUS_REQUEST and COPY_CONTROL from a worker ---- */

struct core_conn;
void tandemd__copy_status_handle(struct core_conn *c, uint32_t request_id);
void tandemd__copy_control_handle(struct core_conn *c, const struct ipc_msg *msg);
/* core_cms.c: CMS_STATUS_REQUEST. */
void tandemd__cms_status_handle(struct core_conn *c, uint32_t request_id);

/* ---- core_ipc.c: the workers' way in (docs/tandemd.md, "Core socket") ---- */

/* Binds <datadir>/run/core.sock and serves workers on base. A socket that cannot be bound is
 * logged and the core goes on without it (the databases stay mounted). */
void tandemd__core_ipc_start(struct event_base *base, const char *datadir);
/* Stops accepting and closes every connection; commits still in the stores keep what their
 * callbacks need until tandemd__core_ipc_free(). Before the stores close. */
void tandemd__core_ipc_close(void);
/* Frees what is left, after every store has closed (no callback can come any more). */
void tandemd__core_ipc_free(void);

/* Core and worker hooks (core.c, worker.c). */
extern const struct tandemd_child_ops tandemd__core_ops;
extern const struct tandemd_child_ops tandemd__worker_ops;

/*
 * Entry point of a child: argv as built by the supervisor ("--child" first). Returns the exit
 * code.
 */
int tandemd__child_main(int argc, char **argv);

/* ---- shared helpers (child.c) ---- */

/* Reads the whole configuration snapshot from fd (from offset 0) and loads it; the config's
 * path is set to name for messages. Returns 0 or an error with *error_r (allocated). */
int tandemd__config_from_fd(int fd, struct tdm_config **cfg_r, char **error_r);

/* Opens the events file named by cfg (or stderr) as the event sink; the previous sink, if a
 * file of ours, is closed. Logs and falls back to stderr when the file cannot be opened. */
void tandemd__set_event_sink(const struct tdm_config *cfg);

/* Frees what tandemd__set_event_sink opened (at exit). */
void tandemd__close_event_sink(void);

/* The IPC worker kind (enum tdm_ipc_worker_kind) that serves a listener protocol. */
uint16_t tandemd__worker_kind(enum tdm_proto proto);

/* ---- core_server_auth.c: who may use a server-to-server service (loop thread only) ---- */

/* As repl_source.h's and coord_server.h's verify: done(done_ctx, status, error) once. */
typedef void tandemd_verify_done_cb(void *done_ctx, int status, const char *error);
/* Checks server/key (0 admits, -EACCES refuses, other: could not check now). */
void tandemd__server_verify(void *ctx, const char *server, const char *key, size_t key_len,
                            tandemd_verify_done_cb *done, void *done_ctx);
/* The same for a copy (replication): a confirmation the directory gave before is accepted
 * during a directory outage within a shorter bound than for heartbeats (docs/cluster.md). */
void tandemd__server_verify_replication(void *ctx, const char *server, const char *key,
                                        size_t key_len, tandemd_verify_done_cb *done,
                                        void *done_ctx);
/* Each service that uses tandemd__server_verify starts and stops the checker (counted). */
void tandemd__server_auth_start(struct event_base *base, const struct tdm_config *cfg);
void tandemd__server_auth_stop(void);

/* ---- core_cluster_hb.c: heartbeats, votes and quorum (loop thread only) ---- */

struct cluster_hb;
/* With [listen cluster]: a node heartbeats its [member]s and answers theirs; a witness only
 * answers (docs/cluster.md). Binds the listener itself. */
void tandemd__core_cluster_hb_start(struct event_base *base, const struct tdm_config *cfg);
void tandemd__core_cluster_hb_stop(void);
/* The running heartbeats (cluster_hb.h: snapshot, summary), or NULL. */
struct cluster_hb *tandemd__core_cluster_hb(void);
/* The cluster agent's callback on any change of the heartbeat snapshot (one; NULL clears). */
void tandemd__core_cluster_hb_on_change(void (*fn)(void *arg), void *arg);
/* CLUSTER_STATUS_REQUEST: the JSON object of GET /v1/cluster (docs/formats/admin-api.md). */
struct core_conn;
void tandemd__cluster_status_handle(struct core_conn *c, uint32_t request_id);
/* CMS_MOVE from a worker (core_cluster_move.c): asks the switchover, answers CMS_MOVE_REPLY. */
void tandemd__cms_move_handle(struct core_conn *c, const struct ipc_msg *msg);

/* ---- core_cluster.c: the cluster agent of a node (docs/cluster.md; loop thread only) ---- */

/* Before the databases are listed: remembers cfg's [cms] databases (a node only) and creates
 * each one that has no directory under dbdir as a new copy of the CMS address. */
void tandemd__core_cluster_prepare(const struct tdm_config *cfg, const char *dbdir);
/* Whether database name belongs to a [cms] of this cluster node (never mounted at start). */
bool tandemd__core_cluster_owns(const char *name);
/* After the heartbeats: connects to the witness and runs each CMS's decisions. */
void tandemd__core_cluster_start(struct event_base *base, const struct tdm_config *cfg);
/* Before replication stops: leaves every database as it is (the core's stop closes them). */
void tandemd__core_cluster_stop(void);
/* {"cms": [...]} for GET /v1/cluster on a node, NULL elsewhere (owned by the caller). */
struct json_t *tandemd__core_cluster_status_json(void);
/* The operator's switchover of cms to node to (docs/cluster.md "Switchover"; checks and
 * codes in core_cluster_move.h, TDM_ENOTFOUND also for a CMS not on this node): 0 once it is
 * asked; it runs on and ends with event 5059 or 5060 and in GET /v1/cluster's "move". */
int tandemd__core_cluster_move(const char *cms, const char *to, const char *comment,
                               const char **why_r);
/* The operator's `copy activate [--force]` of db, a database of a CMS of this node, from
 * connection c (docs/cluster.md "Failover"): never around the lease. 1 when the request was
 * taken and the agent answers c (COPY_CONTROL_REPLY with request_id) once the CMS is mounted
 * here or the takeover gave up (core_cluster_force.h); else refused now: TDM_EGAP (beyond the
 * mount dial, without --force), TDM_ECONFLICT (any other reason), with event 4020. */
int tandemd__core_cluster_activate(const char *db, bool force, struct core_conn *c,
                                   uint32_t request_id);

/* ---- core_coord.c: the witness's coordination store on [listen coord] (loop thread) ---- */

/* With the witness role and [listen coord]: opens <datadir>/coord/ and serves it. */
void tandemd__core_coord_start(struct event_base *base, const struct tdm_config *cfg);
void tandemd__core_coord_stop(void);
/* The witness's leases and connected nodes for status documents (GET /v1/cluster on a witness):
 * {"leases": [{"key", "holder" (null when free), "epoch", "remaining_ms", "ttl_ms",
 * "holder_connected"}], "connected": [{"member", "cluster", "peer", "leases"}]}, owned by the
 * caller; NULL when this core serves no coordination store. */
struct json_t *tandemd__core_coord_status_json(void);
/* GET /v1/witness's object (docs/formats/admin-api.md): {"server", "leases" (as above, with
 * "renewed_by", "renewed_ms_ago"), "values": [{"key", "version", "length", "log_end" (a
 * recorded log end decoded) or "text"}], "connected" (as above, with "connected_ms_ago",
 * "last_request_ms_ago"), "counters"}, owned by the caller; NULL when this core serves no coordination
 * store. The cluster status document carries it as its "witness" member. */
struct json_t *tandemd__core_coord_witness_json(void);
/* The coordination sessions of node member now; with why, they are ended with it
 * (coord_server_sessions; core_server_auth.c's check of live sessions). */
size_t tandemd__core_coord_sessions(const char *member, const char *why);

#endif

#ifndef TANDEM_EVENTS_H
#define TANDEM_EVENTS_H

/*
 * Operator-facing events. The numbers are a stable contract: never reuse or renumber one.
 * Each is catalogued in docs/events.md with its cause and remedy.
 * Ranges: 1000-1999 store; 2000-2099 process (tandemd's supervisor); 2100-2199 tls;
 * 3000-3099 directory; 4000-4099 replication (4000-4049 a copy's agent, 4050-4099 the
 * source that serves the active's log).
 */
enum tdm_event {
    TDM_EV_STORE_MOUNTED = 1000,
    TDM_EV_STORE_DISMOUNTED = 1001,
    TDM_EV_STORE_RECOVERED = 1002,
    TDM_EV_STORE_TORN_TAIL_CUT = 1003,
    TDM_EV_STORE_LOG_CORRUPT = 1004,
    TDM_EV_STORE_GENERATION_MISSING = 1005,
    TDM_EV_STORE_WRITE_FAILED = 1006,
    TDM_EV_STORE_DISK_RESERVE = 1007,
    TDM_EV_STORE_TRUNCATED = 1008,
    TDM_EV_STORE_SYSTEM_CRASH = 1009,
    TDM_EV_STORE_GENERATION_CLOSED = 1010,

    TDM_EV_PROCESS_STARTED = 2000,
    TDM_EV_PROCESS_STOPPED = 2001,
    TDM_EV_PROCESS_CHILD_RESTART = 2002,
    TDM_EV_PROCESS_IPC_ERROR = 2003,
    TDM_EV_PROCESS_KILLED_AT_SHUTDOWN = 2004,
    TDM_EV_PROCESS_RELOADED = 2005,
    TDM_EV_PROCESS_RELOAD_FAILED = 2006,
    TDM_EV_PROCESS_RELOAD_NEEDS_RESTART = 2007,
    TDM_EV_PROCESS_RUNNING_AS_ROOT = 2008,

    TDM_EV_TLS_LOCAL_CA_CREATED = 2100,
    TDM_EV_TLS_SERVER_CERT_RENEWED = 2101,

    TDM_EV_DIRECTORY_CREATED = 3000,
    /* Server keys of other servers (src/tandemd/core_server_auth.c, docs/cluster.md). */
    TDM_EV_SERVER_SESSIONS_DROPPED = 3050,
    TDM_EV_SERVER_KEY_FROM_CONFIRMATION = 3051,

    /* A copy's agent (src/repl/repl_copy*.c): one id per state it enters, then the rest. */
    TDM_EV_REPL_COPY_INITIALIZING = 4000,
    TDM_EV_REPL_COPY_HEALTHY = 4001,
    TDM_EV_REPL_COPY_DISCONNECTED = 4002,
    TDM_EV_REPL_COPY_SERVICE_DOWN = 4003,
    TDM_EV_REPL_COPY_RESYNCHRONIZING = 4004,
    TDM_EV_REPL_COPY_FAILED = 4005,
    TDM_EV_REPL_COPY_SUSPENDED = 4006,
    TDM_EV_REPL_COPY_SEEDING = 4007,
    TDM_EV_REPL_COPY_INSPECTION_FAILED = 4010,
    TDM_EV_REPL_COPY_NETWORK_CHANGED = 4011,
    /* tandemctl copy activate (src/tandemd/core_activate.c). */
    TDM_EV_REPL_COPY_ACTIVATION_REFUSED = 4020,
    TDM_EV_REPL_COPY_ACTIVATED = 4021,
    TDM_EV_REPL_COPY_ACTIVATION_FAILED = 4022,
    /* tandemctl copy remove (src/tandemd/core_copy_remove.c). */
    TDM_EV_REPL_COPY_REMOVED = 4023,
    TDM_EV_REPL_COPY_REMOVE_FAILED = 4024,

    /* The replication source (src/repl/repl_source*.c), serving the active's log. */
    TDM_EV_REPL_SOURCE_COPY_CONNECTED = 4050,
    TDM_EV_REPL_SOURCE_COPY_REFUSED = 4051,
    TDM_EV_REPL_SOURCE_COPY_DISCONNECTED = 4052,
    TDM_EV_REPL_SOURCE_COPY_RELEASED = 4053,
    TDM_EV_REPL_SOURCE_READ_FAILED = 4054,
    /* The sync gate (src/tandemd/core_sync.c) of a database in sync mode. */
    TDM_EV_REPL_SYNC_DEGRADED = 4070,
    TDM_EV_REPL_SYNC_RESTORED = 4071,
    TDM_EV_REPL_SYNC_HOLDING = 4072,
    /* The CMS addresses (src/tandemd/supervisor_cms.c, docs/cluster.md "CMS address"). */
    TDM_EV_CMS_ADDRESS_UP = 5040,
    TDM_EV_CMS_ADDRESS_DOWN = 5041,
    TDM_EV_CMS_BIND_RETRYING = 5042,
    TDM_EV_CMS_BIND_FAILED = 5043,
    TDM_EV_CMS_INTERFACE_FAILED = 5044,
    TDM_EV_CMS_STALE_ADDRESS_REMOVED = 5045,
    TDM_EV_CMS_ANNOUNCE_FAILED = 5046,
    /* The cluster agent (src/tandemd/core_cluster.c, docs/cluster.md). */
    TDM_EV_CLUSTER_LEASE_WON = 5050,
    TDM_EV_CLUSTER_FENCED = 5051,
    TDM_EV_CLUSTER_FAILOVER_STARTED = 5052,
    TDM_EV_CLUSTER_FAILOVER_DONE = 5053,
    TDM_EV_CLUSTER_WAITING = 5054,
    TDM_EV_CLUSTER_DEMOTED = 5055,
    TDM_EV_CLUSTER_REJOINED = 5056,
    TDM_EV_CLUSTER_ACTIVATION_FAILED = 5057,
    TDM_EV_CLUSTER_MOVE_STARTED = 5058, /* switchover: src/tandemd/core_cluster_move.c */
    TDM_EV_CLUSTER_MOVE_DONE = 5059,
    TDM_EV_CLUSTER_MOVE_FAILED = 5060,
    /* Resubmission from the transports' dumpsters after a failover
     * (src/tandemd/core_cluster_failover.c). */
    TDM_EV_CLUSTER_RESUBMIT_REQUESTED = 5070,
    TDM_EV_CLUSTER_RESUBMIT_ACKED = 5071,
    TDM_EV_CLUSTER_RESUBMIT_FAILED = 5072,
    /* The transport dumpster (src/smtp/dumpster*.c, docs/smtp.md "Transport dumpster"). */
    TDM_EV_DUMPSTER_RESUBMITTED = 5100,
    TDM_EV_DUMPSTER_WRITE_FAILED = 5101,
    TDM_EV_DUMPSTER_RESUBMIT_REFUSED = 5102,
    /* The coordination store of a witness (src/coord/coord_server.c). */
    TDM_EV_COORD_STORE_OPENED = 5000,
    TDM_EV_COORD_LEASE_GRANTED = 5001,
    TDM_EV_COORD_LEASE_EXPIRED = 5002,
    TDM_EV_COORD_LEASE_FREED = 5003,
    TDM_EV_COORD_LEASE_TRANSFERRED = 5004,
    TDM_EV_COORD_LEASE_RELEASED = 5005,
    TDM_EV_COORD_STORE_FAILED = 5006,
    TDM_EV_COORD_NODE_REFUSED = 5007,
    TDM_EV_COORD_SESSION_DROPPED = 5008,
    /* Heartbeats and quorum (src/cluster/cluster_hb*.c, docs/cluster.md "Votes and quorum"). */
    TDM_EV_CLUSTER_NETWORK_DOWN = 5020,
    TDM_EV_CLUSTER_NETWORK_UP = 5021,
    TDM_EV_CLUSTER_MEMBER_DOWN = 5022,
    TDM_EV_CLUSTER_MEMBER_UP = 5023,
    TDM_EV_CLUSTER_QUORUM_LOST = 5024,
    TDM_EV_CLUSTER_QUORUM_REACHED = 5025,
    TDM_EV_CLUSTER_PEER_REFUSED = 5026,
    TDM_EV_CLUSTER_SESSION_DROPPED = 5027,
    TDM_EV_CLUSTER_TIMERS_DIFFER = 5028,
};

enum tdm_event_severity {
    TDM_EV_SEV_INFO,
    TDM_EV_SEV_WARNING,
    TDM_EV_SEV_ERROR,
};

#endif

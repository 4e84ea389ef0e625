#include "lib/event.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *event_sink;
static int event_sink_set;
static event_hook_cb *event_hook;
static void *event_hook_ctx;

static const struct {
    enum tdm_event id;
    const char *name;
    enum tdm_event_severity severity;
} event_catalogue[] = {
    {TDM_EV_STORE_MOUNTED, "store.mounted", TDM_EV_SEV_INFO},
    {TDM_EV_STORE_DISMOUNTED, "store.dismounted", TDM_EV_SEV_INFO},
    {TDM_EV_STORE_RECOVERED, "store.recovered", TDM_EV_SEV_INFO},
    {TDM_EV_STORE_TORN_TAIL_CUT, "store.torn_tail_cut", TDM_EV_SEV_WARNING},
    {TDM_EV_STORE_LOG_CORRUPT, "store.log_corrupt", TDM_EV_SEV_ERROR},
    {TDM_EV_STORE_GENERATION_MISSING, "store.generation_missing", TDM_EV_SEV_ERROR},
    {TDM_EV_STORE_WRITE_FAILED, "store.write_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_STORE_DISK_RESERVE, "store.disk_reserve", TDM_EV_SEV_ERROR},
    {TDM_EV_STORE_TRUNCATED, "store.truncated", TDM_EV_SEV_INFO},
    {TDM_EV_STORE_SYSTEM_CRASH, "store.system_crash", TDM_EV_SEV_WARNING},
    {TDM_EV_STORE_GENERATION_CLOSED, "store.generation_closed", TDM_EV_SEV_INFO},
    {TDM_EV_PROCESS_STARTED, "process.started", TDM_EV_SEV_INFO},
    {TDM_EV_PROCESS_STOPPED, "process.stopped", TDM_EV_SEV_INFO},
    {TDM_EV_PROCESS_CHILD_RESTART, "process.child_restart", TDM_EV_SEV_WARNING},
    {TDM_EV_PROCESS_IPC_ERROR, "process.ipc_error", TDM_EV_SEV_ERROR},
    {TDM_EV_PROCESS_KILLED_AT_SHUTDOWN, "process.killed_at_shutdown", TDM_EV_SEV_ERROR},
    {TDM_EV_PROCESS_RELOADED, "process.reloaded", TDM_EV_SEV_INFO},
    {TDM_EV_PROCESS_RELOAD_FAILED, "process.reload_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_PROCESS_RELOAD_NEEDS_RESTART, "process.reload_needs_restart", TDM_EV_SEV_WARNING},
    {TDM_EV_PROCESS_RUNNING_AS_ROOT, "process.running_as_root", TDM_EV_SEV_WARNING},
    {TDM_EV_TLS_LOCAL_CA_CREATED, "tls.local_ca_created", TDM_EV_SEV_INFO},
    {TDM_EV_TLS_SERVER_CERT_RENEWED, "tls.server_certificate_renewed", TDM_EV_SEV_INFO},
    {TDM_EV_DIRECTORY_CREATED, "directory.created", TDM_EV_SEV_INFO},
    {TDM_EV_SERVER_SESSIONS_DROPPED, "server.sessions_dropped", TDM_EV_SEV_WARNING},
    {TDM_EV_SERVER_KEY_FROM_CONFIRMATION, "server.key_from_confirmation", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_INITIALIZING, "repl.copy_initializing", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_HEALTHY, "repl.copy_healthy", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_DISCONNECTED, "repl.copy_disconnected", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_SERVICE_DOWN, "repl.copy_service_down", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_RESYNCHRONIZING, "repl.copy_resynchronizing", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_FAILED, "repl.copy_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_REPL_COPY_SUSPENDED, "repl.copy_suspended", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_SEEDING, "repl.copy_seeding", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_INSPECTION_FAILED, "repl.copy_inspection_failed", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_NETWORK_CHANGED, "repl.copy_network_changed", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_ACTIVATION_REFUSED, "repl.copy_activation_refused", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_ACTIVATED, "repl.copy_activated", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_COPY_ACTIVATION_FAILED, "repl.copy_activation_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_REPL_COPY_REMOVED, "repl.copy_removed", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_COPY_REMOVE_FAILED, "repl.copy_remove_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_REPL_SOURCE_COPY_CONNECTED, "repl.source_copy_connected", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_SOURCE_COPY_REFUSED, "repl.source_copy_refused", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_SOURCE_COPY_DISCONNECTED, "repl.source_copy_disconnected", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_SOURCE_COPY_RELEASED, "repl.source_copy_released", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_SOURCE_READ_FAILED, "repl.source_read_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_REPL_SYNC_DEGRADED, "repl.sync_degraded", TDM_EV_SEV_WARNING},
    {TDM_EV_REPL_SYNC_RESTORED, "repl.sync_restored", TDM_EV_SEV_INFO},
    {TDM_EV_REPL_SYNC_HOLDING, "repl.sync_holding", TDM_EV_SEV_ERROR},
    {TDM_EV_CMS_ADDRESS_UP, "cms.address_up", TDM_EV_SEV_INFO},
    {TDM_EV_CMS_ADDRESS_DOWN, "cms.address_down", TDM_EV_SEV_INFO},
    {TDM_EV_CMS_BIND_RETRYING, "cms.bind_retrying", TDM_EV_SEV_WARNING},
    {TDM_EV_CMS_BIND_FAILED, "cms.bind_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_CMS_INTERFACE_FAILED, "cms.interface_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_CMS_STALE_ADDRESS_REMOVED, "cms.stale_address_removed", TDM_EV_SEV_WARNING},
    {TDM_EV_CMS_ANNOUNCE_FAILED, "cms.announce_failed", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_LEASE_WON, "cluster.lease_won", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_FENCED, "cluster.fenced", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_FAILOVER_STARTED, "cluster.failover_started", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_FAILOVER_DONE, "cluster.failover_done", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_WAITING, "cluster.waiting", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_DEMOTED, "cluster.demoted", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_REJOINED, "cluster.rejoined", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_ACTIVATION_FAILED, "cluster.activation_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_MOVE_STARTED, "cluster.move_started", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_MOVE_DONE, "cluster.move_done", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_MOVE_FAILED, "cluster.move_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_RESUBMIT_REQUESTED, "cluster.resubmit_requested", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_RESUBMIT_ACKED, "cluster.resubmit_acknowledged", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_RESUBMIT_FAILED, "cluster.resubmit_failed", TDM_EV_SEV_WARNING},
    {TDM_EV_DUMPSTER_RESUBMITTED, "dumpster.resubmitted", TDM_EV_SEV_INFO},
    {TDM_EV_DUMPSTER_WRITE_FAILED, "dumpster.write_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_DUMPSTER_RESUBMIT_REFUSED, "dumpster.resubmit_refused", TDM_EV_SEV_WARNING},
    {TDM_EV_COORD_STORE_OPENED, "coord.store_opened", TDM_EV_SEV_INFO},
    {TDM_EV_COORD_LEASE_GRANTED, "coord.lease_granted", TDM_EV_SEV_INFO},
    {TDM_EV_COORD_LEASE_EXPIRED, "coord.lease_expired", TDM_EV_SEV_WARNING},
    {TDM_EV_COORD_LEASE_FREED, "coord.lease_freed", TDM_EV_SEV_WARNING},
    {TDM_EV_COORD_LEASE_TRANSFERRED, "coord.lease_transferred", TDM_EV_SEV_INFO},
    {TDM_EV_COORD_LEASE_RELEASED, "coord.lease_released", TDM_EV_SEV_INFO},
    {TDM_EV_COORD_STORE_FAILED, "coord.store_failed", TDM_EV_SEV_ERROR},
    {TDM_EV_COORD_NODE_REFUSED, "coord.node_refused", TDM_EV_SEV_WARNING},
    {TDM_EV_COORD_SESSION_DROPPED, "coord.session_dropped", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_NETWORK_DOWN, "cluster.network_down", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_NETWORK_UP, "cluster.network_up", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_MEMBER_DOWN, "cluster.member_down", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_MEMBER_UP, "cluster.member_up", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_QUORUM_LOST, "cluster.quorum_lost", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_QUORUM_REACHED, "cluster.quorum_reached", TDM_EV_SEV_INFO},
    {TDM_EV_CLUSTER_PEER_REFUSED, "cluster.peer_refused", TDM_EV_SEV_WARNING},
    {TDM_EV_CLUSTER_SESSION_DROPPED, "cluster.session_dropped", TDM_EV_SEV_ERROR},
    {TDM_EV_CLUSTER_TIMERS_DIFFER, "cluster.timers_differ", TDM_EV_SEV_ERROR},
};

const char *
event_name(enum tdm_event id)
{
    for (size_t i = 0; i < sizeof(event_catalogue) / sizeof(event_catalogue[0]); i++)
        if (event_catalogue[i].id == id)
            return event_catalogue[i].name;
    return "unknown";
}

enum tdm_event_severity
event_severity(enum tdm_event id)
{
    for (size_t i = 0; i < sizeof(event_catalogue) / sizeof(event_catalogue[0]); i++)
        if (event_catalogue[i].id == id)
            return event_catalogue[i].severity;
    return TDM_EV_SEV_ERROR;
}

void
event_set_sink(FILE *sink)
{
    pthread_mutex_lock(&event_lock);
    event_sink = sink;
    event_sink_set = 1;
    pthread_mutex_unlock(&event_lock);
}

void
event_set_hook(event_hook_cb *cb, void *ctx)
{
    pthread_mutex_lock(&event_lock);
    event_hook = cb;
    event_hook_ctx = ctx;
    pthread_mutex_unlock(&event_lock);
}

/*
 * Replaces every byte that is not part of valid UTF-8 with '?', in place. Events name files
 * and mailboxes whose names may be in any encoding, and a message may be cut mid-character;
 * JSON needs UTF-8, and an event must never be lost for it.
 */
static void
utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int len = *p < 0x80             ? 1
                  : (*p & 0xe0) == 0xc0 ? 2
                  : (*p & 0xf0) == 0xe0 ? 3
                  : (*p & 0xf8) == 0xf0 ? 4
                                        : 0;
        int ok = len > 0 && !(len == 2 && *p < 0xc2) && !(len == 4 && *p > 0xf4);
        for (int i = 1; ok && i < len; i++)
            ok = (p[i] & 0xc0) == 0x80;
        if (ok && len == 3) {
            unsigned cp = ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && len == 4) {
            unsigned cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

void
event_emit(enum tdm_event id, const char *subject, const char *fmt, ...)
{
    static const char *const sev_names[] = {"info", "warning", "error"};
    char message[1024];
    char ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    char subject_buf[512];
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    utf8_sanitize(message);
    if (subject) {
        snprintf(subject_buf, sizeof(subject_buf), "%s", subject);
        utf8_sanitize(subject_buf);
        subject = subject_buf;
    }

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    json_t *obj = json_pack("{s:s, s:i, s:s, s:s, s:s?, s:s}", "ts", ts, "id", (int)id, "name",
                            event_name(id), "severity", sev_names[event_severity(id)], "subject",
                            subject, "message", message);
    char *line = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    pthread_mutex_lock(&event_lock);
    FILE *sink = event_sink_set ? event_sink : stderr;
    if (sink && line) {
        fprintf(sink, "%s\n", line);
        fflush(sink);
    }
    if (event_hook)
        event_hook(event_hook_ctx, id, subject, message);
    pthread_mutex_unlock(&event_lock);

    free(line);
    json_decref(obj);
}

/*
 * Operator events (src/lib/event.c): one JSON line per event with the fields documented in
 * event.h, names and severities as catalogued in docs/events.md, the test hook, escaping.
 */
#include "lib/event.h"

#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A memory sink: everything emitted since sink_open(). */
struct sink {
    FILE *f;
    char *buf;
    size_t len;
};

static struct sink sink;

static int
sink_open(void **state)
{
    (void)state;
    sink.buf = NULL;
    sink.len = 0;
    sink.f = open_memstream(&sink.buf, &sink.len);
    assert_non_null(sink.f);
    event_set_sink(sink.f);
    event_set_hook(NULL, NULL);
    return 0;
}

static int
sink_close(void **state)
{
    (void)state;
    event_set_sink(NULL);
    event_set_hook(NULL, NULL);
    fclose(sink.f);
    free(sink.buf);
    sink.f = NULL;
    sink.buf = NULL;
    return 0;
}

static size_t
count_lines(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

/* Parses the single line in the sink; the caller decrefs. */
static json_t *
only_line(void)
{
    fflush(sink.f);
    assert_true(sink.len > 0);
    assert_int_equal(count_lines(sink.buf, sink.len), 1);
    assert_int_equal(sink.buf[sink.len - 1], '\n');
    json_error_t jerr;
    json_t *obj = json_loadb(sink.buf, sink.len - 1, 0, &jerr);
    if (!obj)
        fail_msg("not JSON (%s): %.*s", jerr.text, (int)sink.len, sink.buf);
    assert_true(json_is_object(obj));
    return obj;
}

static const char *
str_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fail_msg("field %s is missing or not a string", key);
    return json_string_value(v);
}

static void
test_emit_line(void **state)
{
    (void)state;
    event_emit(TDM_EV_STORE_LOG_CORRUPT, "db1", "%s at offset %d", "0000000000000003.log", 8192);
    json_t *obj = only_line();

    /* Exactly the documented fields, in the documented order. */
    static const char *const keys[] = {"ts", "id", "name", "severity", "subject", "message"};
    assert_int_equal(json_object_size(obj), 6);
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach(obj, key, val)
    {
        (void)val;
        assert_string_equal(key, keys[i]);
        i++;
    }
    /* Key order is also visible in the raw text (jansson's objects keep insertion order). */
    assert_true(strncmp(sink.buf, "{\"ts\":\"", 7) == 0);

    json_t *id = json_object_get(obj, "id");
    assert_true(json_is_integer(id));
    assert_int_equal(json_integer_value(id), 1004);
    assert_string_equal(str_field(obj, "name"), "store.log_corrupt");
    assert_string_equal(str_field(obj, "severity"), "error");
    assert_string_equal(str_field(obj, "subject"), "db1");
    assert_string_equal(str_field(obj, "message"), "0000000000000003.log at offset 8192");

    /* ts: 2026-11-25T14:35:06.123Z */
    const char *ts = str_field(obj, "ts");
    assert_int_equal(strlen(ts), 24);
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t k = 0; k < 24; k++) {
        if (shape[k] == 'd')
            assert_true(ts[k] >= '0' && ts[k] <= '9');
        else
            assert_int_equal(ts[k], shape[k]);
    }
    json_decref(obj);
}

static void
test_subject_null(void **state)
{
    (void)state;
    event_emit(TDM_EV_STORE_MOUNTED, NULL, "no subject");
    json_t *obj = only_line();
    json_t *subject = json_object_get(obj, "subject");
    /* Absent or null, never a string. */
    assert_true(subject == NULL || json_is_null(subject));
    assert_string_equal(str_field(obj, "message"), "no subject");
    json_decref(obj);
}

struct hook_log {
    int calls;
    enum tdm_event id;
    char subject[64];
    char message[256];
};

static void
hook_cb(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    struct hook_log *h = ctx;
    h->calls++;
    h->id = id;
    snprintf(h->subject, sizeof(h->subject), "%s", subject ? subject : "(null)");
    snprintf(h->message, sizeof(h->message), "%s", message);
}

static void
test_hook(void **state)
{
    (void)state;
    struct hook_log h = {0};
    event_set_hook(hook_cb, &h);
    event_emit(TDM_EV_STORE_RECOVERED, "db2", "replayed %d records", 17);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.id, TDM_EV_STORE_RECOVERED);
    assert_string_equal(h.subject, "db2");
    assert_string_equal(h.message, "replayed 17 records");
    json_t *obj = only_line();
    json_decref(obj);

    /* With a silenced sink, the hook still sees every event. */
    event_set_sink(NULL);
    event_emit(TDM_EV_STORE_TRUNCATED, NULL, "x");
    assert_int_equal(h.calls, 2);
    assert_int_equal(h.id, TDM_EV_STORE_TRUNCATED);
    assert_string_equal(h.subject, "(null)");
    event_set_sink(sink.f);

    event_set_hook(NULL, NULL);
    event_emit(TDM_EV_STORE_MOUNTED, "db2", "y");
    assert_int_equal(h.calls, 2);
}

static void
test_silenced_sink(void **state)
{
    (void)state;
    event_set_sink(NULL);
    event_emit(TDM_EV_STORE_MOUNTED, "db", "silent");
    event_set_sink(sink.f);
    fflush(sink.f);
    assert_int_equal(sink.len, 0);
}

/* The catalogue: ids, names and severities are a contract with operators (docs/events.md). */
static const struct {
    enum tdm_event id;
    int number;
    const char *name;
    enum tdm_event_severity severity;
    const char *severity_text;
} catalogue[] = {
    {TDM_EV_STORE_MOUNTED, 1000, "store.mounted", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_STORE_DISMOUNTED, 1001, "store.dismounted", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_STORE_RECOVERED, 1002, "store.recovered", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_STORE_TORN_TAIL_CUT, 1003, "store.torn_tail_cut", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_STORE_LOG_CORRUPT, 1004, "store.log_corrupt", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_STORE_GENERATION_MISSING, 1005, "store.generation_missing", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_STORE_WRITE_FAILED, 1006, "store.write_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_STORE_DISK_RESERVE, 1007, "store.disk_reserve", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_STORE_TRUNCATED, 1008, "store.truncated", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_STORE_SYSTEM_CRASH, 1009, "store.system_crash", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_STORE_GENERATION_CLOSED, 1010, "store.generation_closed", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_PROCESS_STARTED, 2000, "process.started", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_PROCESS_STOPPED, 2001, "process.stopped", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_PROCESS_CHILD_RESTART, 2002, "process.child_restart", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_PROCESS_IPC_ERROR, 2003, "process.ipc_error", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_PROCESS_KILLED_AT_SHUTDOWN, 2004, "process.killed_at_shutdown", TDM_EV_SEV_ERROR,
     "error"},
    {TDM_EV_PROCESS_RELOADED, 2005, "process.reloaded", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_PROCESS_RELOAD_FAILED, 2006, "process.reload_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_PROCESS_RELOAD_NEEDS_RESTART, 2007, "process.reload_needs_restart", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_PROCESS_RUNNING_AS_ROOT, 2008, "process.running_as_root", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_TLS_LOCAL_CA_CREATED, 2100, "tls.local_ca_created", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_TLS_SERVER_CERT_RENEWED, 2101, "tls.server_certificate_renewed", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_DIRECTORY_CREATED, 3000, "directory.created", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_SERVER_SESSIONS_DROPPED, 3050, "server.sessions_dropped", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_SERVER_KEY_FROM_CONFIRMATION, 3051, "server.key_from_confirmation", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_REPL_COPY_INITIALIZING, 4000, "repl.copy_initializing", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_COPY_HEALTHY, 4001, "repl.copy_healthy", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_COPY_DISCONNECTED, 4002, "repl.copy_disconnected", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_REPL_COPY_SERVICE_DOWN, 4003, "repl.copy_service_down", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_REPL_COPY_RESYNCHRONIZING, 4004, "repl.copy_resynchronizing", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_REPL_COPY_FAILED, 4005, "repl.copy_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_REPL_COPY_SUSPENDED, 4006, "repl.copy_suspended", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_REPL_COPY_SEEDING, 4007, "repl.copy_seeding", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_COPY_INSPECTION_FAILED, 4010, "repl.copy_inspection_failed",
     TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_REPL_COPY_NETWORK_CHANGED, 4011, "repl.copy_network_changed", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_REPL_COPY_ACTIVATION_REFUSED, 4020, "repl.copy_activation_refused",
     TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_REPL_COPY_ACTIVATED, 4021, "repl.copy_activated", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_REPL_COPY_ACTIVATION_FAILED, 4022, "repl.copy_activation_failed", TDM_EV_SEV_ERROR,
     "error"},
    {TDM_EV_REPL_COPY_REMOVED, 4023, "repl.copy_removed", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_COPY_REMOVE_FAILED, 4024, "repl.copy_remove_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_REPL_SOURCE_COPY_CONNECTED, 4050, "repl.source_copy_connected", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_REPL_SOURCE_COPY_REFUSED, 4051, "repl.source_copy_refused", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_REPL_SOURCE_COPY_DISCONNECTED, 4052, "repl.source_copy_disconnected",
     TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_SOURCE_COPY_RELEASED, 4053, "repl.source_copy_released", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_REPL_SOURCE_READ_FAILED, 4054, "repl.source_read_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_REPL_SYNC_DEGRADED, 4070, "repl.sync_degraded", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_REPL_SYNC_RESTORED, 4071, "repl.sync_restored", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_REPL_SYNC_HOLDING, 4072, "repl.sync_holding", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CMS_ADDRESS_UP, 5040, "cms.address_up", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CMS_ADDRESS_DOWN, 5041, "cms.address_down", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CMS_BIND_RETRYING, 5042, "cms.bind_retrying", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CMS_BIND_FAILED, 5043, "cms.bind_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CMS_INTERFACE_FAILED, 5044, "cms.interface_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CMS_STALE_ADDRESS_REMOVED, 5045, "cms.stale_address_removed", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_CMS_ANNOUNCE_FAILED, 5046, "cms.announce_failed", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_LEASE_WON, 5050, "cluster.lease_won", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_FENCED, 5051, "cluster.fenced", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_FAILOVER_STARTED, 5052, "cluster.failover_started", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_CLUSTER_FAILOVER_DONE, 5053, "cluster.failover_done", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_WAITING, 5054, "cluster.waiting", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CLUSTER_DEMOTED, 5055, "cluster.demoted", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_REJOINED, 5056, "cluster.rejoined", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_ACTIVATION_FAILED, 5057, "cluster.activation_failed", TDM_EV_SEV_ERROR,
     "error"},
    {TDM_EV_DUMPSTER_RESUBMITTED, 5100, "dumpster.resubmitted", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_DUMPSTER_WRITE_FAILED, 5101, "dumpster.write_failed", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_DUMPSTER_RESUBMIT_REFUSED, 5102, "dumpster.resubmit_refused", TDM_EV_SEV_WARNING,
     "warning"},
    {TDM_EV_CLUSTER_NETWORK_DOWN, 5020, "cluster.network_down", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_NETWORK_UP, 5021, "cluster.network_up", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_MEMBER_DOWN, 5022, "cluster.member_down", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_MEMBER_UP, 5023, "cluster.member_up", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_QUORUM_LOST, 5024, "cluster.quorum_lost", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CLUSTER_QUORUM_REACHED, 5025, "cluster.quorum_reached", TDM_EV_SEV_INFO, "info"},
    {TDM_EV_CLUSTER_PEER_REFUSED, 5026, "cluster.peer_refused", TDM_EV_SEV_WARNING, "warning"},
    {TDM_EV_CLUSTER_SESSION_DROPPED, 5027, "cluster.session_dropped", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CLUSTER_TIMERS_DIFFER, 5028, "cluster.timers_differ", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_COORD_SESSION_DROPPED, 5008, "coord.session_dropped", TDM_EV_SEV_ERROR, "error"},
    {TDM_EV_CLUSTER_RESUBMIT_REQUESTED, 5070, "cluster.resubmit_requested", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_CLUSTER_RESUBMIT_ACKED, 5071, "cluster.resubmit_acknowledged", TDM_EV_SEV_INFO,
     "info"},
    {TDM_EV_CLUSTER_RESUBMIT_FAILED, 5072, "cluster.resubmit_failed", TDM_EV_SEV_WARNING,
     "warning"},
};

static void
test_catalogue(void **state)
{
    (void)state;
    size_t n = sizeof(catalogue) / sizeof(catalogue[0]);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal((int)catalogue[i].id, catalogue[i].number);
        assert_string_equal(event_name(catalogue[i].id), catalogue[i].name);
        assert_int_equal(event_severity(catalogue[i].id), catalogue[i].severity);

        fclose(sink.f);
        free(sink.buf);
        sink.buf = NULL;
        sink.f = open_memstream(&sink.buf, &sink.len);
        assert_non_null(sink.f);
        event_set_sink(sink.f);
        event_emit(catalogue[i].id, "db", "m");
        json_t *obj = only_line();
        assert_int_equal(json_integer_value(json_object_get(obj, "id")), catalogue[i].number);
        assert_string_equal(str_field(obj, "name"), catalogue[i].name);
        assert_string_equal(str_field(obj, "severity"), catalogue[i].severity_text);
        json_decref(obj);

        /* Names are unique. */
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(catalogue[i].name, catalogue[j].name);
    }
    /* Every id in the store, process, tls, directory and copy-agent ranges that the catalogue
     * lacks is unknown (no stale entries). */
    for (int id = 1000; id < 4050; id++) {
        int known = 0;
        for (size_t i = 0; i < n; i++)
            known |= catalogue[i].number == id;
        if (!known)
            assert_string_equal(event_name((enum tdm_event)id), "unknown");
    }
}

static void
test_unknown_id(void **state)
{
    (void)state;
    static const int unknown[] = {0, -1, 1, 999, 1011, 1999, 2009, 2099, 2102, 2199, 65535};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        enum tdm_event id = (enum tdm_event)unknown[i];
        assert_string_equal(event_name(id), "unknown");
        enum tdm_event_severity sev = event_severity(id);
        assert_true(sev == TDM_EV_SEV_INFO || sev == TDM_EV_SEV_WARNING || sev == TDM_EV_SEV_ERROR);
    }
    /* An unknown id still makes a valid line, so a bad caller cannot break the stream. */
    event_emit((enum tdm_event)4242, "db", "odd");
    json_t *obj = only_line();
    assert_int_equal(json_integer_value(json_object_get(obj, "id")), 4242);
    assert_string_equal(str_field(obj, "name"), "unknown");
    json_decref(obj);
}

static void
test_escaping(void **state)
{
    (void)state;
    static const char nasty[] = "quote \" backslash \\ newline \n cr \r tab \t bell \a "
                                "nul-ish \x01 del \x7f utf-8 \xc3\xa9 \xe2\x82\xac "
                                "json }{\"],";
    static const char subject[] = "db \"x\"\nsecond line";
    event_emit(TDM_EV_STORE_WRITE_FAILED, subject, "%s", nasty);
    json_t *obj = only_line(); /* checks there is exactly one '\n' */
    assert_string_equal(str_field(obj, "message"), nasty);
    assert_string_equal(str_field(obj, "subject"), subject);
    json_decref(obj);
    /* No raw control byte in the line but its terminator. */
    for (size_t i = 0; i + 1 < sink.len; i++)
        assert_true((unsigned char)sink.buf[i] >= 0x20);
}

static void
test_long_message(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    event_emit(TDM_EV_STORE_LOG_CORRUPT, "db", "%s", big);
    json_t *obj = only_line();
    const char *m = str_field(obj, "message");
    /* Truncated, but a prefix of what was asked, and still one valid line. */
    assert_true(strlen(m) > 0 && strlen(m) < sizeof(big));
    assert_memory_equal(m, big, strlen(m));
    json_decref(obj);
}

#define THREADS 4
#define PER_THREAD 200

/* A Latin-1 file name or a message cut mid-character must not make the event vanish. */
static void
test_invalid_utf8(void **state)
{
    (void)state;
    event_emit(TDM_EV_STORE_LOG_CORRUPT, "db\xe9", "file /var/mail/caf\xe9.log: \xe2\x82 cut %s",
               "\xf0\x9f\x98\x80ok");
    json_t *obj = only_line();
    assert_string_equal(str_field(obj, "subject"), "db?");
    assert_string_equal(str_field(obj, "message"),
                        "file /var/mail/caf?.log: ?? cut \xf0\x9f\x98\x80ok");
    json_decref(obj);
}

static void *
emit_many(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < PER_THREAD; i++)
        event_emit(TDM_EV_STORE_RECOVERED, "db", "thread %d event %d", t, i);
    return NULL;
}

static void
count_cb(void *ctx, enum tdm_event id, const char *subject, const char *message)
{
    (void)id;
    (void)subject;
    (void)message;
    (*(int *)ctx)++; /* called under the event lock */
}

/* Concurrent emitters never interleave inside a line. */
static void
test_threads(void **state)
{
    (void)state;
    int calls = 0;
    event_set_hook(count_cb, &calls);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, emit_many, (void *)(intptr_t)t), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    event_set_hook(NULL, NULL);
    assert_int_equal(calls, THREADS * PER_THREAD);

    fflush(sink.f);
    assert_int_equal(count_lines(sink.buf, sink.len), THREADS * PER_THREAD);
    int seen[THREADS] = {0};
    char *p = sink.buf;
    for (int i = 0; i < THREADS * PER_THREAD; i++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t jerr;
        json_t *obj = json_loadb(p, (size_t)(nl - p), 0, &jerr);
        assert_non_null(obj);
        int t, k;
        assert_int_equal(sscanf(str_field(obj, "message"), "thread %d event %d", &t, &k), 2);
        assert_true(t >= 0 && t < THREADS);
        assert_int_equal(k, seen[t]); /* each thread's events in its own order */
        seen[t]++;
        json_decref(obj);
        p = nl + 1;
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_emit_line, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_subject_null, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_hook, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_silenced_sink, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_catalogue, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_unknown_id, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_escaping, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_long_message, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_threads, sink_open, sink_close),
        cmocka_unit_test_setup_teardown(test_invalid_utf8, sink_open, sink_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The workers' questions about this server's copies (docs/formats/ipc.md): COPY_STATUS_REQUEST
 * answered from each agent's published status (core_repl.c), and COPY_CONTROL: suspend and
 * resume handed to the agent, which acts on its own thread; activate (core_activate.c) and
 * remove (core_copy_remove.c).
 */
#include "tandemd/core_ipc_int.h"
#include "tandemd/tandemd.h"

#include "lib/err.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "proto/repl/repl_wire.h"
#include "repl/repl_copy.h"

#include <stdio.h>
#include <string.h>

static uint16_t
ipc_state(enum repl_copy_state s)
{
    switch (s) {
    case REPL_COPY_INITIALIZING:
        return TDM_IPC_COPY_INITIALIZING;
    case REPL_COPY_HEALTHY:
        return TDM_IPC_COPY_HEALTHY;
    case REPL_COPY_DISCONNECTED:
        return TDM_IPC_COPY_DISCONNECTED;
    case REPL_COPY_SERVICE_DOWN:
        return TDM_IPC_COPY_SERVICE_DOWN;
    case REPL_COPY_RESYNCHRONIZING:
        return TDM_IPC_COPY_RESYNCHRONIZING;
    case REPL_COPY_FAILED:
        return TDM_IPC_COPY_FAILED;
    case REPL_COPY_SUSPENDED:
        return TDM_IPC_COPY_SUSPENDED;
    case REPL_COPY_SEEDING:
        return TDM_IPC_COPY_SEEDING;
    }
    return TDM_IPC_COPY_FAILED;
}

/* A string for the message, cut to max bytes (statuses are NUL-terminated C strings). */
static struct ipc_str
cut(const char *s, uint32_t max)
{
    struct ipc_str r = ipc_str_c(s);
    if (r.len > max)
        r.len = max;
    return r;
}

void
tandemd__copy_status_handle(struct core_conn *c, uint32_t request_id)
{
    /* Static: the message is about 15 KiB, and the loop thread is the only caller. The
     * statuses its strings point into live as long. */
    static struct ipc_msg msg;
    static struct repl_copy_status sts[TDM_IPC_MAX_COPIES];
    memset(&msg, 0, sizeof(msg));
    msg.type = TDM_IPC_COPY_STATUS_REPLY;
    msg.request_id = request_id;
    struct ipc_copy_status_reply *r = &msg.u.copy_status_reply;
    size_t n = tandemd__core_copy_count();
    /* One reply holds at most TDM_IPC_MAX_COPIES; total tells the reader how many were left
     * out, so the limit is reported where it is read (docs/replication.md, "Status"). */
    r->total = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    if (n > TDM_IPC_MAX_COPIES)
        n = TDM_IPC_MAX_COPIES;
    /* core_repl.c keeps them in ascending name order, as the message requires. */
    for (size_t i = 0; i < n; i++) {
        struct repl_copy_status *st = &sts[i];
        const char *error;
        const char *name = tandemd__core_copy_get(i, st, &error);
        struct ipc_copy_status *d = &r->copies[r->n_copies++];
        d->name = ipc_str_c(name);
        d->state = ipc_state(st->state);
        d->role = st->role;
        d->mode = st->mode <= 3 ? st->mode : 0;
        d->message = cut(error ? error : st->message, TDM_IPC_REASON_MAX);
        d->network = cut(st->network, TDM_IPC_NETWORK_MAX);
        d->endpoint = cut(st->endpoint, TDM_IPC_NETWORK_MAX);
        d->inspection_failures = st->inspection_failures;
        d->source_generation = st->source_generation;
        d->source_durable_end = st->source_durable_end;
        d->source_lsn = st->source_lsn;
        d->source_time_us = st->source_time_us;
        d->copied_generation = st->copied_generation;
        d->copied_offset = st->copied_offset;
        d->copied_lsn = st->copied_lsn;
        d->inspected_generation = st->inspected_generation;
        d->replayed_generation = st->replayed_generation;
        d->replayed_lsn = st->replayed_lsn;
        d->last_copied_us = st->last_copied_us;
        d->last_inspected_us = st->last_inspected_us;
        d->last_replayed_us = st->last_replayed_us;
        d->copy_queue_generations = st->copy_queue_generations;
        d->copy_queue_bytes = st->copy_queue_bytes;
        d->replay_queue_generations = st->replay_queue_generations;
        d->replay_queue_records = st->replay_queue_records;
        d->bytes_received = st->bytes_received;
        d->bytes_per_second = st->bytes_per_second;
        d->wire_bytes = st->wire_bytes;
        d->wire_log_bytes = st->wire_log_bytes;
        d->compression = st->compression == REPL_COMPRESSION_ZSTD ? 1 : 0;
    }
    tandemd__conn_send(c, &msg);
}

void
tandemd__copy_control_handle(struct core_conn *c, const struct ipc_msg *msg)
{
    const struct ipc_copy_control *cc = &msg->u.copy_control;
    char comment[TDM_IPC_REASON_MAX + 1];
    memcpy(comment, cc->comment.ptr, cc->comment.len);
    comment[cc->comment.len] = '\0';
    int ret;
    switch (cc->action) {
    case TDM_IPC_COPY_SUSPEND:
        ret = tandemd__core_copy_suspend(cc->database.ptr, cc->database.len, comment);
        break;
    case TDM_IPC_COPY_ACTIVATE:
    case TDM_IPC_COPY_ACTIVATE_FORCE: {
        bool force = cc->action == TDM_IPC_COPY_ACTIVATE_FORCE;
        char db[TDM_IPC_NAME_MAX + 1];
        snprintf(db, sizeof(db), "%.*s", (int)cc->database.len, cc->database.ptr);
        /* A CMS's database on a cluster node: through the cluster agent, which answers
         * later when it takes the request (docs/cluster.md "Failover"). */
        if (cc->database.len < sizeof(db) && tandemd__core_cluster_owns(db)) {
            ret = tandemd__core_cluster_activate(db, force, c, msg->request_id);
            if (ret == 1)
                return;
            break;
        }
        ret = tandemd__core_copy_activate(cc->database.ptr, cc->database.len, force);
        break;
    }
    case TDM_IPC_DB_DISMOUNT:
        ret = tandemd__core_db_dismount(cc->database.ptr, cc->database.len);
        break;
    case TDM_IPC_DB_MOUNT:
        ret = tandemd__core_db_mount(cc->database.ptr, cc->database.len);
        break;
    case TDM_IPC_COPY_REMOVE:
        ret = tandemd__core_copy_remove(cc->database.ptr, cc->database.len);
        break;
    case TDM_IPC_COPY_RESEED:
    case TDM_IPC_COPY_RESEED_DELETE_EXISTING:
        ret = tandemd__core_copy_reseed(cc->database.ptr, cc->database.len,
                                        cc->action == TDM_IPC_COPY_RESEED_DELETE_EXISTING);
        break;
    default: /* resume: the codec lets no other action through */
        ret = tandemd__core_copy_resume(cc->database.ptr, cc->database.len);
        break;
    }
    struct ipc_msg reply = {.type = TDM_IPC_COPY_CONTROL_REPLY, .request_id = msg->request_id};
    reply.u.copy_control_reply.status = ret;
    tandemd__conn_send(c, &reply);
}

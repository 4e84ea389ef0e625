/*
 * The CMS addresses, core side (docs/cluster.md, "CMS address"). The core decides whether a
 * CMS is up here, since it owns the databases; the supervisor binds (supervisor_cms.c). This
 * file keeps, for each [cms] of the configuration, what was asked (wanted) and what the
 * supervisor last said (state), sends CMS_CONTROL, serves the replication socket of a CMS
 * that is up through core_repl_source.c, and answers CMS_STATUS_REQUEST.
 *
 * A [cms] on a server without [cluster] is a standalone CMS: always active here, brought up
 * once the databases are mounted, and down when a reload removes it. On cluster nodes the
 * cluster agent calls tandemd__cms_up() and tandemd__cms_down().
 */
#include "tandemd/tandemd.h"

#include "core_ipc_int.h"
#include "lib/err.h"
#include "lib/ipc.h"
#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct core_cms {
    char name[TDM_CONFIG_NAME_MAX + 1];
    bool configured; /* in the configuration in force (a removed one stays while not down) */
    bool wanted;     /* asked up */
    uint16_t state;  /* enum tdm_ipc_cms_state, from the supervisor */
    uint32_t tag;    /* of its replication socket in the source: index + 1, kept for life */
};

#define CORE_MAX_CMS 16 /* TDM_CONFIG_MAX_CMS, plus room for those a reload removes */
static struct core_cms core_cms[CORE_MAX_CMS];
static size_t core_n_cms;

static struct core_cms *
cms_find(const char *name)
{
    for (size_t i = 0; i < core_n_cms; i++)
        if (!strcmp(core_cms[i].name, name))
            return &core_cms[i];
    return NULL;
}

static int
cms_cmp(const void *a, const void *b)
{
    return strcmp(((const struct core_cms *)a)->name, ((const struct core_cms *)b)->name);
}

/* Marks the configured ones; adds new names (in name order, as CMS_STATUS_REPLY lists). */
static void
cms_sync_config(const struct tdm_config *cfg)
{
    for (size_t i = 0; i < core_n_cms; i++)
        core_cms[i].configured = false;
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        struct core_cms *c = cms_find(cfg->cms[i].name);
        if (!c) {
            if (core_n_cms == CORE_MAX_CMS) {
                log_error("CMS %s: more CMSs than this process can follow since it started; "
                          "restart tandemd",
                          cfg->cms[i].name);
                continue;
            }
            c = &core_cms[core_n_cms++];
            memset(c, 0, sizeof(*c));
            snprintf(c->name, sizeof(c->name), "%s", cfg->cms[i].name);
        }
        c->configured = true;
    }
    /* Tags follow the entry, not its index, so sorting keeps them. */
    for (size_t i = 0; i < core_n_cms; i++)
        if (!core_cms[i].tag) {
            uint32_t t = 1;
            for (size_t j = 0; j < core_n_cms; j++)
                if (core_cms[j].tag >= t)
                    t = core_cms[j].tag + 1;
            core_cms[i].tag = t;
        }
    qsort(core_cms, core_n_cms, sizeof(core_cms[0]), cms_cmp);
}

static void
cms_control(struct core_cms *c, bool up)
{
    c->wanted = up;
    struct ipc_msg msg = {.type = TDM_IPC_CMS_CONTROL};
    msg.u.cms = (struct ipc_cms){ipc_str_c(c->name), 0, up ? TDM_IPC_CMS_UP : TDM_IPC_CMS_DOWN};
    tandemd__child_send(&msg);
    log_info("CMS %s: asked the supervisor to bring its address %s", c->name, up ? "up" : "down");
}

int
tandemd__cms_up(const char *cms)
{
    struct core_cms *c = cms_find(cms);
    if (!c || !c->configured)
        return TDM_ENOTFOUND;
    if (!c->wanted)
        cms_control(c, true);
    return 0;
}

int
tandemd__cms_down(const char *cms)
{
    struct core_cms *c = cms_find(cms);
    if (!c)
        return TDM_ENOTFOUND;
    if (c->wanted)
        cms_control(c, false);
    return 0;
}

/* A standalone CMS: a [cms] without [cluster] (docs/cluster.md, "CMS address"). The cluster
 * section is recognised by its name being set. */
static bool
cms_standalone(const struct tdm_config *cfg)
{
    return cfg->cluster.name[0] == '\0';
}

static void
cms_bring_standalone(const struct tdm_config *cfg)
{
    if (!cms_standalone(cfg))
        return;
    for (unsigned i = 0; i < cfg->n_cms; i++) {
        const struct tdm_config_cms *cc = &cfg->cms[i];
        /* Up even with a database missing: the others it holds are served, and the missing
         * one answers as any database not mounted here (docs/decisions.md). */
        for (unsigned d = 0; d < cc->n_databases; d++)
            if (!tandemd__core_db_find(cc->databases[d], strlen(cc->databases[d])))
                log_warn("CMS %s: database %s is not mounted here", cc->name, cc->databases[d]);
        tandemd__cms_up(cc->name);
    }
}

void
tandemd__core_cms_start(const struct tdm_config *cfg)
{
    cms_sync_config(cfg);
    cms_bring_standalone(cfg);
}

void
tandemd__core_cms_reload(const struct tdm_config *cfg)
{
    cms_sync_config(cfg);
    /* A CMS removed from the file goes down, whoever brought it up. */
    for (size_t i = 0; i < core_n_cms; i++)
        if (!core_cms[i].configured && core_cms[i].wanted)
            cms_control(&core_cms[i], false);
    cms_bring_standalone(cfg);
}

void
tandemd__core_cms_state(const char *cms, uint16_t state)
{
    struct core_cms *c = cms_find(cms);
    if (!c)
        return;
    c->state = state;
    log_debug("CMS %s: %s", cms, ipc_cms_state_name(state));
}

void
tandemd__core_cms_listen(const char *cms, enum tdm_proto proto, int fd)
{
    struct core_cms *c = cms_find(cms);
    if (!c || proto != TDM_PROTO_REPLICATION) {
        close(fd);
        return;
    }
    tandemd__core_repl_source_add_socket(fd, c->tag);
}

void
tandemd__core_cms_close(const char *cms)
{
    struct core_cms *c = cms_find(cms);
    if (c)
        tandemd__core_repl_source_close_socket(c->tag);
}

size_t
tandemd__core_cms_count(void)
{
    return core_n_cms;
}

void
tandemd__core_cms_get(size_t i, const char **name_r, uint16_t *state_r)
{
    *name_r = core_cms[i].name;
    *state_r = core_cms[i].state;
}

void
tandemd__core_cms_stop(void)
{
    core_n_cms = 0;
}

void
tandemd__cms_status_handle(struct core_conn *conn, uint32_t request_id)
{
    struct ipc_msg msg = {.type = TDM_IPC_CMS_STATUS_REPLY, .request_id = request_id};
    struct ipc_cms_status_reply *r = &msg.u.cms_status_reply;
    for (size_t i = 0; i < core_n_cms && r->n_cms < TDM_IPC_MAX_CMS; i++) {
        if (!core_cms[i].configured)
            continue;
        r->cms[r->n_cms++] =
            (struct ipc_cms_status){ipc_str_c(core_cms[i].name), core_cms[i].state};
    }
    tandemd__conn_send(conn, &msg);
}

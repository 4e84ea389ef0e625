/*
 * The recorded log end's codec (cluster_end.h). The decoder takes what a witness returns,
 * which any member of the cluster may have written: it checks every byte and never reads
 * past len.
 */
#include "cluster/cluster_end.h"

#include "lib/err.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char MAGIC[] = "tandem-cms-end 1";

static bool
name_ok(const char *s, size_t len)
{
    if (len == 0 || len > CLUSTER_FSM_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int
cluster_end_encode(const struct cluster_end_record *r, char *buf, size_t size)
{
    if (r->n_dbs > CLUSTER_FSM_MAX_DBS || !name_ok(r->holder, strlen(r->holder)))
        return TDM_EINVAL;
    size_t used = 0;
    int n = snprintf(buf, size, "%s\nholder %s\nepoch %" PRIu64 "\n", MAGIC, r->holder, r->epoch);
    if (n < 0 || (size_t)n >= size)
        return TDM_EINVAL;
    used = (size_t)n;
    for (unsigned d = 0; d < r->n_dbs; d++) {
        const struct cluster_fsm_logpos *p = &r->dbs[d].pos;
        if (!name_ok(r->dbs[d].name, strlen(r->dbs[d].name)))
            return TDM_EINVAL;
        n = snprintf(buf + used, size - used,
                     "db %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", r->dbs[d].name,
                     p->epoch, p->lsn, p->generation, p->offset);
        if (n < 0 || (size_t)n >= size - used)
            return TDM_EINVAL;
        used += (size_t)n;
    }
    return (int)used;
}

/* A cursor over the value: one line at a time, one word of it at a time. */
struct cur {
    const char *p, *end;
};

/* The next word of the line: up to a space, or the line's end (not consumed). */
static bool
word(struct cur *c, const char **w, size_t *len)
{
    const char *s = c->p;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\n')
        c->p++;
    *w = s;
    *len = (size_t)(c->p - s);
    return *len > 0;
}

static bool
space(struct cur *c)
{
    if (c->p < c->end && *c->p == ' ') {
        c->p++;
        return true;
    }
    return false;
}

static bool
eol(struct cur *c)
{
    if (c->p < c->end && *c->p == '\n') {
        c->p++;
        return true;
    }
    return false;
}

static bool
number(struct cur *c, uint64_t *v)
{
    const char *w;
    size_t len;
    if (!word(c, &w, &len) || len > 20 || (len > 1 && w[0] == '0'))
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (w[i] < '0' || w[i] > '9')
            return false;
        unsigned dgt = (unsigned)(w[i] - '0');
        if (x > (UINT64_MAX - dgt) / 10)
            return false;
        x = x * 10 + dgt;
    }
    *v = x;
    return true;
}

static bool
name(struct cur *c, char out[CLUSTER_FSM_NAME_MAX + 1])
{
    const char *w;
    size_t len;
    if (!word(c, &w, &len) || !name_ok(w, len))
        return false;
    memcpy(out, w, len);
    out[len] = '\0';
    return true;
}

/* "<key> " at the cursor. */
static bool
key(struct cur *c, const char *k)
{
    size_t len = strlen(k);
    if ((size_t)(c->end - c->p) < len + 1 || memcmp(c->p, k, len) != 0 || c->p[len] != ' ')
        return false;
    c->p += len + 1;
    return true;
}

int
cluster_end_decode(const void *data, size_t len, struct cluster_end_record *r, const char **why_r)
{
    memset(r, 0, sizeof(*r));
    struct cur c = {.p = data, .end = (const char *)data + len};
    size_t mlen = sizeof(MAGIC) - 1;
    if (len < mlen + 1 || memcmp(c.p, MAGIC, mlen) != 0 || c.p[mlen] != '\n') {
        *why_r = "not a recorded log end (tandem-cms-end 1)";
        return TDM_EINVAL;
    }
    c.p += mlen + 1;
    if (!key(&c, "holder") || !name(&c, r->holder) || !eol(&c)) {
        *why_r = "bad holder line";
        return TDM_EINVAL;
    }
    if (!key(&c, "epoch") || !number(&c, &r->epoch) || !eol(&c)) {
        *why_r = "bad epoch line";
        return TDM_EINVAL;
    }
    while (c.p < c.end) {
        if (r->n_dbs == CLUSTER_FSM_MAX_DBS) {
            *why_r = "too many databases";
            return TDM_EINVAL;
        }
        unsigned d = r->n_dbs;
        struct cluster_fsm_logpos *p = &r->dbs[d].pos;
        if (!key(&c, "db") || !name(&c, r->dbs[d].name) || !space(&c) || !number(&c, &p->epoch) ||
            !space(&c) || !number(&c, &p->lsn) || !space(&c) || !number(&c, &p->generation) ||
            !space(&c) || !number(&c, &p->offset) || !eol(&c)) {
            *why_r = "bad db line";
            return TDM_EINVAL;
        }
        for (unsigned k = 0; k < d; k++)
            if (strcmp(r->dbs[k].name, r->dbs[d].name) == 0) {
                *why_r = "a database twice";
                return TDM_EINVAL;
            }
        r->n_dbs++;
    }
    return 0;
}

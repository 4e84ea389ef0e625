/*
 * Fuzzes the SEARCH evaluator (src/imap/imap_search_eval.h) with what clients and senders
 * control: the search program and the message. The first byte picks the message's system
 * flags and \Recent; the input up to the first NUL is the program (as after "SEARCH ",
 * literals included: IMAP strings never hold NUL), the rest is the message. Programs the
 * parser refuses end the run. Checked, aborting on any break:
 *   - every evaluation answers 0 or 1 (the message always loads, memory never runs out here);
 *   - NOT (program) answers the opposite;
 *   - the answer is the same whether the header keys read the header parsed alone (the
 *     cheap path) or the whole message parsed first (as after a BODY key), so the evaluator's
 *     idea of where the header ends agrees with the MIME parser's.
 */
#include "imap/imap_search_eval.h"

#include "proto/imap/imap_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(bool ok)
{
    if (!ok)
        abort();
}

struct message {
    const uint8_t *data;
    size_t len;
};

static int
load(void *ctx, const uint8_t **data_r, size_t *len_r)
{
    const struct message *m = ctx;
    *data_r = m->data;
    *len_r = m->len;
    return 0;
}

/* "t SEARCH <before><program><after>" parsed, or NULL when the parser refuses it. */
static struct imap_command *
parse(const char *before, const uint8_t *program, size_t len, const char *after)
{
    struct imap_parser *p;
    check(imap_parser_new(&imap_parser_default_limits, &p) == 0);
    size_t n = strlen("t SEARCH ") + strlen(before) + len + strlen(after) + 2; /* CRLF */
    char *line = malloc(n + 1);
    check(line != NULL);
    int head = snprintf(line, n + 1, "t SEARCH %s", before);
    memcpy(line + head, program, len);
    snprintf(line + head + len, n + 1 - (size_t)head - len, "%s\r\n", after);
    struct imap_parser_out out;
    size_t off = 0;
    int item;
    /* A literal in the program: "+" is what a client waits for, then the bytes follow. */
    while ((item = imap_parser_feed(p, (const uint8_t *)line + off, n - off, &out)) ==
           IMAP_ITEM_CONTINUE)
        off += out.used;
    free(line);
    imap_parser_free(&p);
    return item == IMAP_ITEM_COMMAND && out.cmd->cmd == IMAP_CMD_SEARCH ? out.cmd : NULL;
}

/* Evaluates prog on the message; with body_first (BODY "", which matches every message),
 * the whole message is parsed before prog runs. */
static int
evaluate(const struct imap_search_prog *prog, const struct imap_search_prog *body_first,
         const struct mail_message_info *info, bool recent, struct message *msg)
{
    static const uint32_t saved[] = {1, 7};
    static const struct imap_search_env env = {
        .max_msn = 3, .max_uid = 7, .saved = saved, .n_saved = 2};
    struct imap_search_msg m;
    imap_search_msg_init(&m, 2, info, recent, load, msg);
    if (body_first)
        check(imap_search_match(body_first, &env, &m) == 1);
    int ret = imap_search_match(prog, &env, &m);
    imap_search_msg_clear(&m);
    check(ret == 0 || ret == 1);
    return ret;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *program = data + 1, *end = data + size;
    const uint8_t *nul = memchr(program, 0, (size_t)(end - program));
    if (!nul)
        return 0;
    struct message msg = {nul + 1, (size_t)(end - nul - 1)};
    struct mail_message_info info = {
        .uid = 7, .internal_date = 1738625400, .size = msg.len, .modseq = 4, .n_keywords = 1};
    info.flags = data[0] & MAIL_FLAG_ALL;
    info.keywords[0] = "$Label1";
    bool recent = data[0] & 0x80;

    struct imap_command *cmd = parse("", program, (size_t)(nul - program), "");
    struct imap_command *neg = parse("NOT (", program, (size_t)(nul - program), ")");
    struct imap_command *body = parse("BODY \"\"", (const uint8_t *)"", 0, "");
    check(body != NULL);
    struct imap_search_prog *p = NULL, *np = NULL, *bp = NULL;
    check(imap_search_prog_new(body->u.search.key, &bp) == 0);
    if (cmd) {
        check(imap_search_prog_new(cmd->u.search.key, &p) == 0);
        int plain = evaluate(p, NULL, &info, recent, &msg);
        check(evaluate(p, bp, &info, recent, &msg) == plain);
        if (neg) {
            check(imap_search_prog_new(neg->u.search.key, &np) == 0);
            check(evaluate(np, NULL, &info, recent, &msg) == !plain);
        }
    }
    imap_search_prog_free(&p);
    imap_search_prog_free(&np);
    imap_search_prog_free(&bp);
    imap_command_free(&cmd);
    imap_command_free(&neg);
    imap_command_free(&body);
    return 0;
}

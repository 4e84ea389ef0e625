/*
 * FETCH plans (imap_fetch.h) from commands as a client writes them, parsed by the real IMAP
 * parser: the items in answer order with their response names (".PEEK" dropped, only the
 * origin of a partial, HEADER.FIELDS lists as asked), the implied UID of UID FETCH and MODSEQ
 * of CHANGEDSINCE, and what a plan needs: the stored body, a MIME parse, \Seen.
 */
#include "imap/imap_fetch.h"

#include "lib/err.h"
#include "proto/imap/imap_parser.h"

#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static struct imap_command *
parse(const char *line)
{
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&imap_parser_default_limits, &p), 0);
    char buf[2048];
    int n = snprintf(buf, sizeof(buf), "%s\r\n", line);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    struct imap_parser_out out;
    int item = imap_parser_feed(p, (const uint8_t *)buf, (size_t)n, &out);
    if (item != IMAP_ITEM_COMMAND)
        fail_msg("\"%s\" did not parse: %s", line, item == IMAP_ITEM_ERROR ? out.response : "");
    imap_parser_free(&p);
    return out.cmd;
}

/* The items as "NAME;NAME;...": the response name, or the kind for items without one. */
static void
describe(const struct imap_fetch_plan *plan, char *out, size_t size)
{
    static const char *const kinds[] = {
        [IMAP_FETCH_ENVELOPE] = "ENVELOPE",
        [IMAP_FETCH_FLAGS] = "FLAGS",
        [IMAP_FETCH_INTERNALDATE] = "INTERNALDATE",
        [IMAP_FETCH_RFC822_SIZE] = "RFC822.SIZE",
        [IMAP_FETCH_BODY] = "BODY",
        [IMAP_FETCH_BODYSTRUCTURE] = "BODYSTRUCTURE",
        [IMAP_FETCH_UID] = "UID",
        [IMAP_FETCH_MODSEQ] = "MODSEQ",
    };
    out[0] = '\0';
    for (size_t i = 0; i < plan->n; i++) {
        const struct imap_fetch_item *it = &plan->items[i];
        const char *name = it->label ? it->label : kinds[it->kind];
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? ";" : "", name);
    }
}

struct plan_case {
    const char *command;
    const char *items;
    bool sets_seen, reads_body, parses_mime, has_binary;
};

static const struct plan_case cases[] = {
    {"t FETCH 1 FAST", "FLAGS;INTERNALDATE;RFC822.SIZE", false, false, false, false},
    {"t FETCH 1 FULL", "FLAGS;INTERNALDATE;RFC822.SIZE;ENVELOPE;BODY", false, true, true, false},
    {"t UID FETCH 1:* (FLAGS)", "UID;FLAGS", false, false, false, false},
    {"t UID FETCH 1 (FLAGS UID)", "FLAGS;UID", false, false, false, false},
    /* The whole message needs no parse; a peek sets nothing. */
    {"t FETCH 1 BODY.PEEK[]", "BODY[]", false, true, false, false},
    {"t FETCH 1 BODY[]<0.100>", "BODY[]<0>", true, true, false, false},
    {"t FETCH 1 (RFC822)", "RFC822", true, true, false, false},
    {"t FETCH 1 (RFC822.HEADER)", "RFC822.HEADER", false, true, true, false},
    {"t FETCH 1 (RFC822.TEXT)", "RFC822.TEXT", true, true, true, false},
    {"t FETCH 1 (BODY.PEEK[1.2.MIME] body[2.header]<10.5>)", "BODY[1.2.MIME];BODY[2.HEADER]<10>",
     true, true, true, false},
    {"t FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"X Y\")])", "BODY[HEADER.FIELDS (From \"X Y\")]",
     false, true, true, false},
    {"t FETCH 1 (BODY.PEEK[3.HEADER.FIELDS.NOT (To)])", "BODY[3.HEADER.FIELDS.NOT (To)]", false,
     true, true, false},
    {"t FETCH 1 (BINARY.PEEK[1]<0.4> BINARY.SIZE[2])", "BINARY[1]<0>;BINARY.SIZE[2]", false, true,
     true, true},
    {"t FETCH 1 (BINARY[])", "BINARY[]", true, true, true, true},
    {"t FETCH 1 (FLAGS) (CHANGEDSINCE 5)", "FLAGS;MODSEQ", false, false, false, false},
    {"t FETCH 1 (MODSEQ FLAGS) (CHANGEDSINCE 5)", "MODSEQ;FLAGS", false, false, false, false},
    {"t UID FETCH 1 (BODYSTRUCTURE) (CHANGEDSINCE 5 VANISHED)", "UID;BODYSTRUCTURE;MODSEQ", false,
     true, true, false},
};

static void
test_plans(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct plan_case *c = &cases[i];
        struct imap_command *cmd = parse(c->command);
        struct imap_fetch_plan plan;
        const char *why = NULL;
        assert_int_equal(imap__fetch_plan_build(cmd, false, &plan, &why), 0);
        imap_command_free(&cmd); /* the plan is a copy: it outlives the command */
        char got[512];
        describe(&plan, got, sizeof(got));
        if (strcmp(got, c->items) != 0)
            fail_msg("%s: items %s, want %s", c->command, got, c->items);
        if (plan.sets_seen != c->sets_seen || plan.reads_body != c->reads_body ||
            plan.parses_mime != c->parses_mime || plan.has_binary != c->has_binary)
            fail_msg("%s: seen %d body %d mime %d binary %d", c->command, plan.sets_seen,
                     plan.reads_body, plan.parses_mime, plan.has_binary);
        imap__fetch_plan_clear(&plan);
    }
}

/* The sections keep the parts and the field names, which the MIME layer reads. */
static void
test_sections_copied(void **state)
{
    (void)state;
    struct imap_command *cmd = parse("t FETCH 1 (BODY.PEEK[2.1.HEADER.FIELDS (Subject Date)])");
    struct imap_fetch_plan plan;
    const char *why = NULL;
    assert_int_equal(imap__fetch_plan_build(cmd, true, &plan, &why), 0);
    imap_command_free(&cmd);
    const struct mime_section *sec = &plan.items[0].section;
    assert_int_equal(sec->n_parts, 2);
    assert_int_equal(sec->part[0], 2);
    assert_int_equal(sec->part[1], 1);
    assert_int_equal(sec->text, MIME_SECTION_HEADER_FIELDS);
    assert_int_equal(sec->n_fields, 2);
    assert_string_equal(sec->fields[0].s, "Subject");
    assert_int_equal(sec->fields[1].len, 4);
    assert_true(plan.mime_flags != 0); /* IMAP4rev2: message/global is a message */
    imap__fetch_plan_clear(&plan);
}

/* Deeper than the MIME layer can address: refused with a reason, nothing to clear. */
static void
test_too_deep(void **state)
{
    (void)state;
    char line[2048] = "t FETCH 1 (BODY.PEEK[1";
    for (int i = 0; i < MIME_SECTION_PARTS_MAX; i++)
        strcat(line, ".1");
    strcat(line, "])");
    struct imap_command *cmd = parse(line);
    struct imap_fetch_plan plan;
    const char *why = NULL;
    assert_int_equal(imap__fetch_plan_build(cmd, false, &plan, &why), TDM_EINVAL);
    assert_non_null(why);
    imap_command_free(&cmd);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plans),
        cmocka_unit_test(test_sections_copied),
        cmocka_unit_test(test_too_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The IMAP command parser (src/proto/imap/imap_parser.c and the grammar files). Every case is
 * a client byte stream and the transcript the parser must produce from it: commands (in the
 * canonical form imap_command_format() writes, which names every parsed field), continuation
 * requests, APPEND message bytes, refusals with their exact response text, raw lines. Each
 * stream is fed whole, split in two at every byte offset, and one byte at a time, and must
 * give the same transcript each way. Then a few commands are checked field by field, so the
 * canonical form itself is pinned to the struct.
 */
#include "proto/imap/imap_arena.h"
#include "proto/imap/imap_parser.h"
#include "proto/imap/imap_write.h"

#include "lib/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define TRANSCRIPT_MAX (256 * 1024)
#define FATAL 1000 /* transcript.last after "* BYE": the connection is closed, feed no more */

struct transcript {
    char text[TRANSCRIPT_MAX];
    size_t len;
    int last; /* the last item, to merge LITERAL_DATA pieces */
    size_t last_msg;
};

static void
add(struct transcript *t, const char *s, size_t n)
{
    assert_true(t->len + n < TRANSCRIPT_MAX);
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = '\0';
}

static void
add_entry(struct transcript *t, const char *prefix, const char *s, size_t n)
{
    if (t->len)
        add(t, "\n", 1);
    add(t, prefix, strlen(prefix));
    add(t, s, n);
}

/* Strips the CRLF a response or a formatted command ends in. */
static size_t
chomp(const char *s, size_t n)
{
    assert_true(n >= 2 && s[n - 2] == '\r' && s[n - 1] == '\n');
    return n - 2;
}

/* Feeds one piece until the parser needs more; records what comes out. */
static void
feed_piece(struct imap_parser *p, const uint8_t *in, size_t len, struct transcript *t)
{
    size_t off = 0;
    for (;;) {
        struct imap_parser_out out;
        int r = imap_parser_feed(p, in + off, len - off, &out);
        if (r < 0) {
            char s[64];
            snprintf(s, sizeof(s), "%d", r);
            add_entry(t, "! ", s, strlen(s));
            t->last = r;
            return;
        }
        assert_true(out.used <= len - off);
        switch (r) {
        case IMAP_ITEM_NEED_MORE:
            assert_int_equal(off + out.used, len);
            return;
        case IMAP_ITEM_COMMAND: {
            struct imap_buf b = IMAP_BUF_INIT;
            assert_int_equal(imap_command_format(out.cmd, &b), 0);
            add_entry(t, "C ", b.data, chomp(b.data, b.len));
            imap_buf_free(&b);
            /* The session's part: IDLE and AUTHENTICATE without SASL-IR read raw lines next. */
            if (out.cmd->cmd == IMAP_CMD_IDLE ||
                (out.cmd->cmd == IMAP_CMD_AUTHENTICATE && !out.cmd->u.authenticate.initial))
                imap_parser_expect_line(p);
            imap_command_free(&out.cmd);
            assert_null(out.cmd);
            break;
        }
        case IMAP_ITEM_CONTINUE:
            assert_string_equal(out.response, "+ Ready for literal data\r\n");
            add_entry(t, "+", "", 0);
            break;
        case IMAP_ITEM_LITERAL_DATA:
            /* Zero-copy: the bytes lie inside what this call was given. */
            assert_true(out.data >= in + off && out.data + out.len <= in + len);
            assert_true(out.len > 0 && out.msg_offset + out.len <= out.msg_size);
            if (t->last == IMAP_ITEM_LITERAL_DATA && t->last_msg == out.msg_index) {
                add(t, (const char *)out.data, out.len);
            } else {
                char s[32];
                snprintf(s, sizeof(s), "D%zu ", out.msg_index);
                assert_int_equal(out.msg_offset, 0);
                add_entry(t, s, (const char *)out.data, out.len);
            }
            t->last_msg = out.msg_index;
            break;
        case IMAP_ITEM_ERROR:
            add_entry(t, out.fatal ? "X " : "E ", out.response,
                      chomp(out.response, strlen(out.response)));
            if (out.tag)
                assert_memory_equal(out.response, out.tag, strlen(out.tag));
            else
                assert_true(out.response[0] == '*');
            break;
        case IMAP_ITEM_LINE:
            add_entry(t, "L ", (const char *)out.data, out.len);
            break;
        default:
            fail_msg("unexpected item %d", r);
        }
        t->last = out.fatal ? FATAL : r;
        off += out.used;
        if (out.fatal)
            return;
    }
}

/* Feeds in[0..len) in pieces ending at cuts[0..n) and then len. */
static void
run(const struct imap_parser_limits *lim, const char *in, size_t len, const size_t *cuts, size_t n,
    struct transcript *t)
{
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(lim, &p), 0);
    t->len = 0;
    t->text[0] = '\0';
    t->last = -1;
    size_t prev = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t end = i < n ? cuts[i] : len;
        if (t->last == FATAL)
            break;
        feed_piece(p, (const uint8_t *)in + prev, end - prev, t);
        prev = end;
    }
    imap_parser_free(&p);
    assert_null(p);
}

struct parse_case {
    const char *name;
    const char *in;
    const char *want;
};

static struct transcript *whole, *split;

static void
check_case_limits(const struct imap_parser_limits *lim, const char *name, const char *in,
                  size_t len, const char *want)
{
    run(lim, in, len, NULL, 0, whole);
    if (strcmp(whole->text, want) != 0)
        fail_msg("%s: whole input gave\n%s\nwant\n%s", name, whole->text, want);
    for (size_t cut = 1; cut < len; cut++) {
        run(lim, in, len, &cut, 1, split);
        if (strcmp(split->text, want) != 0)
            fail_msg("%s: split at %zu gave\n%s\nwant\n%s", name, cut, split->text, want);
    }
    size_t *cuts = malloc((len ? len : 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i + 1 < len; i++)
        cuts[i] = i + 1;
    run(lim, in, len, cuts, len ? len - 1 : 0, split);
    free(cuts);
    if (strcmp(split->text, want) != 0)
        fail_msg("%s: byte by byte gave\n%s\nwant\n%s", name, split->text, want);
}

static void
check_cases(const struct imap_parser_limits *lim, const struct parse_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_case_limits(lim, cases[i].name, cases[i].in, strlen(cases[i].in), cases[i].want);
}

/* ---- every command of RFC 3501 / RFC 9051 and the extensions ---- */

static const struct parse_case commands[] = {
    /* any state */
    {"capability", "a CAPABILITY\r\n", "C a CAPABILITY"},
    {"noop lower case", "a noop\r\n", "C a NOOP"},
    {"logout", "a LOGOUT\r\n", "C a LOGOUT"},
    {"id nil", "a ID NIL\r\n", "C a ID NIL"},
    {"id list", "a ID (\"name\" \"Thunderbird\" \"version\" \"115.0\" \"os\" NIL)\r\n",
     "C a ID (\"name\" \"Thunderbird\" \"version\" \"115.0\" \"os\" NIL)"},
    {"id empty list", "a ID ()\r\n", "C a ID ()"},
    {"enable", "a ENABLE CONDSTORE qresync UTF8=ACCEPT IMAP4rev2\r\n",
     "C a ENABLE CONDSTORE QRESYNC UTF8=ACCEPT IMAP4REV2"},
    /* not authenticated */
    {"starttls", "a STARTTLS\r\n", "C a STARTTLS"},
    {"authenticate", "a AUTHENTICATE plain\r\nAGpvZQBzZWNyZXQ=\r\n",
     "C a AUTHENTICATE PLAIN\nL AGpvZQBzZWNyZXQ="},
    {"authenticate sasl-ir", "a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n",
     "C a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ="},
    {"authenticate sasl-ir empty", "a AUTHENTICATE EXTERNAL =\r\n", "C a AUTHENTICATE EXTERNAL ="},
    {"login atoms", "a LOGIN joe secret\r\n", "C a LOGIN \"joe\" \"secret\""},
    {"login quoted", "a LOGIN \"joe@example.org\" \"p\\\"a\\\\ss word\"\r\n",
     "C a LOGIN \"joe@example.org\" \"p\\\"a\\\\ss word\""},
    {"login sync literal", "a LOGIN {3}\r\njoe {6}\r\nsec\"et\r\n",
     "+\n+\nC a LOGIN \"joe\" \"sec\\\"et\""},
    {"login literal+", "a LOGIN {3+}\r\njoe {2+}\r\n\r\n\r\n", "C a LOGIN \"joe\" {2}\r\n\r\n"},
    {"login empty strings", "a LOGIN \"\" {0}\r\n\r\n", "+\nC a LOGIN \"\" \"\""},
    /* authenticated */
    {"select", "a SELECT INBOX\r\n", "C a SELECT \"INBOX\""},
    {"select inbox any case", "a select iNbOx\r\n", "C a SELECT \"INBOX\""},
    {"select other", "a SELECT \"Sent Items\"\r\n", "C a SELECT \"Sent Items\""},
    {"select condstore", "a SELECT INBOX (CONDSTORE)\r\n", "C a SELECT \"INBOX\" (CONDSTORE)"},
    {"select qresync min", "a SELECT INBOX (QRESYNC (67890007 90060115194045000))\r\n",
     "C a SELECT \"INBOX\" (QRESYNC (67890007 90060115194045000))"},
    {"select qresync known uids",
     "a SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541))\r\n",
     "C a SELECT \"INBOX\" (QRESYNC (67890007 90060115194045000 41:211,214:541))"},
    {"select qresync all (RFC 7162 example)",
     "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 "
     "(1:15,18:20 4,7:10,12:20)))\r\n",
     "C A02 SELECT \"INBOX\" (QRESYNC (67890007 20050715194045000 41,43:211,214:541 "
     "(1:15,18:20 4,7:10,12:20)))"},
    {"select qresync seq match only", "a SELECT INBOX (QRESYNC (1 2 (1 5)))\r\n",
     "C a SELECT \"INBOX\" (QRESYNC (1 2 (1 5)))"},
    {"select condstore qresync", "a SELECT INBOX (QRESYNC (1 2) CONDSTORE)\r\n",
     "C a SELECT \"INBOX\" (CONDSTORE QRESYNC (1 2))"},
    {"examine", "a EXAMINE Archive/2024\r\n", "C a EXAMINE \"Archive/2024\""},
    {"create", "a CREATE Projects/\r\n", "C a CREATE \"Projects/\""},
    {"create use", "a CREATE MySpecialTrash (USE (\\trash \\Junk))\r\n",
     "C a CREATE \"MySpecialTrash\" (USE (\\Trash \\Junk))"},
    {"create use empty", "a CREATE x (USE ())\r\n", "C a CREATE \"x\" (USE ())"},
    {"delete", "a DELETE \"old stuff\"\r\n", "C a DELETE \"old stuff\""},
    {"rename", "a RENAME blurdybloop sarasoop\r\n", "C a RENAME \"blurdybloop\" \"sarasoop\""},
    {"subscribe", "a SUBSCRIBE #news.comp.mail.mime\r\n", "C a SUBSCRIBE \"#news.comp.mail.mime\""},
    {"unsubscribe", "a UNSUBSCRIBE inbox\r\n", "C a UNSUBSCRIBE \"INBOX\""},
    {"list", "a LIST \"\" *\r\n", "C a LIST \"\" \"*\""},
    {"list percent", "a LIST ~/Mail/ %\r\n", "C a LIST \"~/Mail/\" \"%\""},
    {"list reference keeps case", "a LIST inbox/ %\r\n", "C a LIST \"inbox/\" \"%\""},
    {"list brackets in pattern", "a LIST \"\" foo]*\r\n", "C a LIST \"\" \"foo]*\""},
    {"list select opts", "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)\r\n",
     "C a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\") RETURN (CHILDREN)"},
    {"list empty select opts", "a LIST () \"\" %\r\n", "C a LIST () \"\" (\"%\") RETURN ()"},
    {"list patterns", "a LIST \"\" (\"INBOX\" \"Drafts\" Sent/%)\r\n",
     "C a LIST () \"\" (\"INBOX\" \"Drafts\" \"Sent/%\") RETURN ()"},
    {"list special-use", "a LIST (SPECIAL-USE) \"\" *\r\n",
     "C a LIST (SPECIAL-USE) \"\" (\"*\") RETURN ()"},
    {"list return special-use", "a LIST \"\" * RETURN (SPECIAL-USE)\r\n",
     "C a LIST () \"\" (\"*\") RETURN (SPECIAL-USE)"},
    {"list remote subscribed", "a LIST (REMOTE SUBSCRIBED) \"\" *\r\n",
     "C a LIST (SUBSCRIBED REMOTE) \"\" (\"*\") RETURN ()"},
    {"list-status", "a LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))\r\n",
     "C a LIST () \"\" (\"%\") RETURN (STATUS (MESSAGES UNSEEN))"},
    {"list return subscribed children status",
     "a LIST \"\" % RETURN (SUBSCRIBED CHILDREN STATUS (UIDNEXT HIGHESTMODSEQ SIZE))\r\n",
     "C a LIST () \"\" (\"%\") RETURN (SUBSCRIBED CHILDREN STATUS (UIDNEXT SIZE "
     "HIGHESTMODSEQ))"},
    {"list literal pattern", "a LIST \"\" {1+}\r\n*\r\n", "C a LIST \"\" \"*\""},
    {"lsub", "a LSUB \"#news.\" \"comp.mail.*\"\r\n", "C a LSUB \"#news.\" \"comp.mail.*\""},
    {"namespace", "a NAMESPACE\r\n", "C a NAMESPACE"},
    {"status", "a STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
     "C a STATUS \"blurdybloop\" (MESSAGES UIDNEXT)"},
    {"status every item",
     "a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ "
     "APPENDLIMIT DELETED-STORAGE)\r\n",
     "C a STATUS \"INBOX\" (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE "
     "HIGHESTMODSEQ APPENDLIMIT DELETED-STORAGE)"},
    {"append", "a APPEND saved-messages {5}\r\nhello\r\n",
     "+\nD0 hello\nC a APPEND \"saved-messages\" {5}\r\nxxxxx"},
    {"append flags date (RFC 3501 example)",
     "A003 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {11}\r\n"
     "Hello Joe\r\n\r\n",
     "+\nD0 Hello Joe\r\n\nC A003 APPEND \"saved-messages\" (\\Seen) \"17-Jul-1996 02:44:25 "
     "-0700\" {11}\r\nxxxxxxxxxxx"},
    {"append space-padded day", "a APPEND INBOX \" 7-Jul-1996 02:44:25 +0000\" {1+}\r\nx\r\n",
     "D0 x\nC a APPEND \"INBOX\" \" 7-Jul-1996 02:44:25 +0000\" {1}\r\nx"},
    {"append empty flags", "a APPEND INBOX () {1+}\r\nx\r\n",
     "D0 x\nC a APPEND \"INBOX\" () {1}\r\nx"},
    {"append keywords", "a APPEND INBOX (\\Seen $Forwarded \\flagged) {1+}\r\nx\r\n",
     "D0 x\nC a APPEND \"INBOX\" (\\Seen $Forwarded \\Flagged) {1}\r\nx"},
    {"append literal8", "a APPEND INBOX ~{3}\r\na\0b\r\n", "+\nD0 a\0b"},
    /* RFC 6855 UTF8 data, alone and after another message */
    {"append utf8", "a APPEND INBOX UTF8 (~{3}\r\nabc)\r\n",
     "+\nD0 abc\nC a APPEND \"INBOX\" UTF8 (~{3}\r\nxxx)"},
    {"append utf8 multi", "a APPEND INBOX (\\Seen) utf8 (~{2+}\r\nab) {1+}\r\nc\r\n",
     "D0 ab\nD1 c\nC a APPEND \"INBOX\" (\\Seen) UTF8 (~{2}\r\nxx) {1}\r\nx"},
    {"append mailbox literal", "a APPEND {5}\r\nINBOX {2}\r\nhi\r\n",
     "+\n+\nD0 hi\nC a APPEND \"INBOX\" {2}\r\nxx"},
    {"append zero", "a APPEND INBOX {0}\r\n\r\n", "+\nC a APPEND \"INBOX\" {0}\r\n"},
    {"multiappend",
     "a APPEND INBOX (\\Seen) {3+}\r\none \"1-Jan-2020 00:00:00 +0000\" {3+}\r\ntwo ~{5+}\r\n"
     "three\r\n",
     "D0 one\nD1 two\nD2 three\nC a APPEND \"INBOX\" (\\Seen) {3}\r\nxxx \" 1-Jan-2020 "
     "00:00:00 +0000\" {3}\r\nxxx ~{5}\r\nxxxxx"},
    {"idle done", "a IDLE\r\nDONE\r\nb NOOP\r\n", "C a IDLE\nL DONE\nC b NOOP"},
    {"getquota", "a GETQUOTA \"\"\r\n", "C a GETQUOTA \"\""},
    {"getquotaroot", "a GETQUOTAROOT INBOX\r\n", "C a GETQUOTAROOT \"INBOX\""},
    {"setquota", "a SETQUOTA \"\" (STORAGE 512 message 1000)\r\n",
     "C a SETQUOTA \"\" (STORAGE 512 MESSAGE 1000)"},
    {"setquota empty", "a SETQUOTA root ()\r\n", "C a SETQUOTA \"root\" ()"},
    /* selected */
    {"check", "a CHECK\r\n", "C a CHECK"},
    {"close", "a CLOSE\r\n", "C a CLOSE"},
    {"unselect", "a UNSELECT\r\n", "C a UNSELECT"},
    {"expunge", "a EXPUNGE\r\n", "C a EXPUNGE"},
    {"uid expunge", "a UID EXPUNGE 3000:3002\r\n", "C a UID EXPUNGE 3000:3002"},
    {"copy", "a COPY 2:4 MEETING\r\n", "C a COPY 2:4 \"MEETING\""},
    {"uid copy", "a UID COPY 4827313:4828442 Trash\r\n", "C a UID COPY 4827313:4828442 \"Trash\""},
    {"move", "a MOVE 1:* \"[Gmail]/All Mail\"\r\n", "C a MOVE 1:* \"[Gmail]/All Mail\""},
    {"uid move saved", "a UID MOVE $ Archive\r\n", "C a UID MOVE $ \"Archive\""},
    {"store", "a STORE 2:4 +FLAGS (\\Deleted)\r\n", "C a STORE 2:4 +FLAGS (\\Deleted)"},
    {"store silent no parens", "a STORE 1 -FLAGS.SILENT \\Seen $Junk\r\n",
     "C a STORE 1 -FLAGS.SILENT (\\Seen $Junk)"},
    {"store replace", "a UID STORE 1:* FLAGS ()\r\n", "C a UID STORE 1:* FLAGS ()"},
    {"store unchangedsince",
     "a STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n",
     "C a STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)"},
    {"store unchangedsince zero", "a UID STORE 1 (unchangedsince 0) flags (\\seen)\r\n",
     "C a UID STORE 1 (UNCHANGEDSINCE 0) FLAGS (\\Seen)"},
    {"store saved", "a STORE $ +FLAGS \\Flagged\r\n", "C a STORE $ +FLAGS (\\Flagged)"},
    /* FETCH */
    {"fetch macros", "a FETCH 1 ALL\r\nb FETCH 2 fast\r\nc FETCH 3 FULL\r\n",
     "C a FETCH 1 ALL\nC b FETCH 2 FAST\nC c FETCH 3 FULL"},
    {"fetch one item", "a FETCH 1:* FLAGS\r\n", "C a FETCH 1:* (FLAGS)"},
    {"fetch simple items",
     "a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT "
     "BODY BODYSTRUCTURE UID MODSEQ)\r\n",
     "C a FETCH 1 (ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE RFC822.TEXT "
     "BODY BODYSTRUCTURE UID MODSEQ)"},
    {"fetch body sections",
     "a FETCH 2 (BODY[] BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[1.MIME] "
     "BODY[4.2.HEADER] BODY[3.TEXT])\r\n",
     "C a FETCH 2 (BODY[] BODY[HEADER] BODY[TEXT] BODY[1] BODY[1.2.3] BODY[1.MIME] "
     "BODY[4.2.HEADER] BODY[3.TEXT])"},
    {"fetch header fields (Thunderbird)",
     "a UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject "
     "Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type "
     "Reply-To)])\r\n",
     "C a UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (\"From\" \"To\" \"Cc\" "
     "\"Bcc\" \"Subject\" \"Date\" \"Message-ID\" \"Priority\" \"X-Priority\" \"References\" "
     "\"Newsgroups\" \"In-Reply-To\" \"Content-Type\" \"Reply-To\")])"},
    {"fetch header fields not", "a FETCH 1 BODY[1.HEADER.FIELDS.NOT (\"Received\")]\r\n",
     "C a FETCH 1 (BODY[1.HEADER.FIELDS.NOT (\"Received\")])"},
    {"fetch partial", "a FETCH 1 (BODY[]<0.2048> BODY.PEEK[TEXT]<100.1>)\r\n",
     "C a FETCH 1 (BODY[]<0.2048> BODY.PEEK[TEXT]<100.1>)"},
    {"fetch binary",
     "a FETCH 1 (BINARY[] BINARY[1.2] BINARY.PEEK[3]<0.1024> BINARY.SIZE[1] BINARY.SIZE[])\r\n",
     "C a FETCH 1 (BINARY[] BINARY[1.2] BINARY.PEEK[3]<0.1024> BINARY.SIZE[1] "
     "BINARY.SIZE[])"},
    {"fetch changedsince", "a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
     "C a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)"},
    {"uid fetch vanished", "a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
     "C a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)"},
    {"fetch saved", "a FETCH $ (UID)\r\n", "C a FETCH $ (UID)"},
    {"fetch set forms", "a FETCH 4:2,*,*:5,7,4294967295 UID\r\n",
     "C a FETCH 4:2,*,*:5,7,4294967295 (UID)"},
    /* SEARCH */
    {"search flags",
     "a SEARCH ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED "
     "UNDRAFT UNFLAGGED UNSEEN\r\n",
     "C a SEARCH ALL ANSWERED DELETED DRAFT FLAGGED NEW OLD RECENT SEEN UNANSWERED UNDELETED "
     "UNDRAFT UNFLAGGED UNSEEN"},
    {"search strings",
     "a SEARCH BCC a BODY \"b c\" CC {1+}\r\nd FROM e SUBJECT \"\" TEXT f TO g\r\n",
     "C a SEARCH BCC \"a\" BODY \"b c\" CC \"d\" FROM \"e\" SUBJECT \"\" TEXT \"f\" TO \"g\""},
    {"search dates",
     "a SEARCH BEFORE 1-Feb-1994 ON 01-feb-1994 SINCE \"28-Feb-2000\" SENTBEFORE 29-Feb-2024 "
     "SENTON 31-Dec-1999 SENTSINCE 1-Jan-2000\r\n",
     "C a SEARCH BEFORE 1-Feb-1994 ON 1-Feb-1994 SINCE 28-Feb-2000 SENTBEFORE 29-Feb-2024 "
     "SENTON 31-Dec-1999 SENTSINCE 1-Jan-2000"},
    {"search sizes keywords header",
     "a SEARCH LARGER 1024 SMALLER 9999999999 KEYWORD $Junk UNKEYWORD $NotJunk HEADER "
     "Message-ID <x@y> HEADER X-Spam \"\"\r\n",
     "C a SEARCH LARGER 1024 SMALLER 9999999999 KEYWORD $Junk UNKEYWORD $NotJunk HEADER "
     "\"Message-ID\" \"<x@y>\" HEADER \"X-Spam\" \"\""},
    {"search sets", "a UID SEARCH UID 1:100,200 2,4:* $ NOT UID $\r\n",
     "C a UID SEARCH UID 1:100,200 2,4:* $ NOT UID $"},
    {"search or not parens (RFC 3501 example)",
     "A283 SEARCH TEXT \"string not in mailbox\" OR (FROM \"Smith\" SINCE 1-Feb-1994) NOT "
     "(DELETED)\r\n",
     "C A283 SEARCH TEXT \"string not in mailbox\" OR (FROM \"Smith\" SINCE 1-Feb-1994) NOT "
     "(DELETED)"},
    {"search nested or", "a SEARCH OR OR SEEN DRAFT OR FLAGGED (NOT NEW UID 5)\r\n",
     "C a SEARCH OR OR SEEN DRAFT OR FLAGGED (NOT NEW UID 5)"},
    {"search charset", "a SEARCH CHARSET utf-8 SUBJECT {6}\r\nf\xc3\xbc\x72 x\r\n",
     "+\nC a SEARCH CHARSET \"UTF-8\" SUBJECT \"f\xc3\xbcr x\""},
    {"search modseq", "a SEARCH MODSEQ 620162338\r\n", "C a SEARCH MODSEQ 620162338"},
    {"search modseq shared priv",
     "a SEARCH MODSEQ \"/flags/$Junk\" shared 0 MODSEQ \"/flags/\\\\Seen\" PRIV 1\r\n",
     "C a SEARCH MODSEQ \"/flags/$Junk\" shared 0 MODSEQ \"/flags/\\\\Seen\" priv 1"},
    {"search modseq entry",
     "a SEARCH OR NOT MODSEQ 720162338 LARGER 50000 MODSEQ \"/flags/\\\\draft\" all "
     "620162338\r\n",
     "C a SEARCH OR NOT MODSEQ 720162338 LARGER 50000 MODSEQ \"/flags/\\\\draft\" all "
     "620162338"},
    {"esearch", "a SEARCH RETURN (MIN MAX COUNT) UNSEEN\r\n",
     "C a SEARCH RETURN (MIN MAX COUNT) UNSEEN"},
    {"esearch empty return is all", "a UID SEARCH RETURN () FLAGGED\r\n",
     "C a UID SEARCH RETURN (ALL) FLAGGED"},
    {"searchres save", "a UID SEARCH RETURN (SAVE ALL) CHARSET US-ASCII SINCE 1-Jan-2024\r\n",
     "C a UID SEARCH RETURN (ALL SAVE) CHARSET \"US-ASCII\" SINCE 1-Jan-2024"},
    /* framing */
    {"pipelined commands", "a NOOP\r\nb NOOP\r\nc CHECK\r\n", "C a NOOP\nC b NOOP\nC c CHECK"},
    {"bare lf", "a NOOP\nb LOGIN x {1}\ny\n", "C a NOOP\n+\nC b LOGIN \"x\" \"y\""},
    {"empty lines ignored", "\r\n\na NOOP\r\n\r\n", "C a NOOP"},
    {"escaped quote before a literal", "a LOGIN \"x\\\"y\" {1}\r\nz\r\n",
     "+\nC a LOGIN \"x\\\"y\" \"z\""},
    {"quoted brace is not a literal", "a LOGIN x \"{5}\"\r\nb NOOP\r\n",
     "C a LOGIN \"x\" \"{5}\"\nC b NOOP"},
    {"8-bit atom", "a SELECT Entw\xc3\xbcrfe\r\n", "C a SELECT \"Entw\xc3\xbcrfe\""},
    {"8-bit quoted", "a SELECT \"Entw\xc3\xbcrfe\"\r\n", "C a SELECT \"Entw\xc3\xbcrfe\""},
    {"tag chars", "A.1]* NOOP\r\n", "E * BAD Invalid tag"},
    {"odd tag", "a.1]x NOOP\r\n", "C a.1]x NOOP"},
};

/* ---- refusals: the exact BAD text, and the next command still parses ---- */

static const struct parse_case refusals[] = {
    {"unknown command", "a FOO\r\nb NOOP\r\n", "E a BAD Unknown command\nC b NOOP"},
    {"unknown uid command", "a UID NOOP\r\n", "E a BAD Unknown UID command"},
    {"uid alone", "a UID\r\n", "E a BAD Missing argument or space expected"},
    {"tag alone", "a\r\n", "E * BAD Invalid tag"},
    {"plus tag", "+ NOOP\r\n", "E * BAD Invalid tag"},
    {"missing argument", "a SELECT\r\n", "E a BAD Missing argument or space expected"},
    {"extra argument", "a NOOP x\r\n", "E a BAD Unexpected extra arguments"},
    {"trailing space", "a NOOP \r\n", "E a BAD Unexpected extra arguments"},
    {"garbage after", "a NOOP)\r\n", "E a BAD Unexpected characters after the arguments"},
    {"double space", "a LOGIN  x y\r\n", "E a BAD User name expected"},
    {"seqset zero", "a FETCH 0 FLAGS\r\n", "E a BAD Invalid sequence set"},
    {"saved set inside a set", "a FETCH 1,$ FLAGS\r\n", "E a BAD Invalid sequence set"},
    {"seqset trailing comma", "a FETCH 1, FLAGS\r\n", "E a BAD Invalid sequence set"},
    {"seqset open range", "a FETCH 1: FLAGS\r\n", "E a BAD Invalid sequence set"},
    {"seqset overflow", "a FETCH 4294967296 FLAGS\r\n", "E a BAD Invalid sequence set"},
    {"saved set in qresync", "a SELECT INBOX (QRESYNC (1 2 $))\r\n",
     "E a BAD Invalid sequence set"},
    {"qresync uidvalidity zero", "a SELECT INBOX (QRESYNC (0 2))\r\n",
     "E a BAD Invalid UIDVALIDITY"},
    {"bad date", "a SEARCH SINCE 30-Feb-2024\r\n", "E a BAD Invalid date"},
    {"not a leap year", "a SEARCH ON 29-Feb-2023\r\n", "E a BAD Invalid date"},
    {"bad month", "a SEARCH ON 1-Foo-2023\r\n", "E a BAD Invalid date"},
    {"bad date-time refused before the literal",
     "a APPEND INBOX \"1-Jan-2020 25:00:00 +0000\" {1}\r\nb NOOP\r\n",
     "E a BAD Invalid date-time\nC b NOOP"},
    {"unknown search key", "a SEARCH FOO\r\n", "E a BAD Unknown search key"},
    {"empty search", "a SEARCH\r\n", "E a BAD Missing argument or space expected"},
    {"search unbalanced", "a SEARCH (SEEN\r\n", "E a BAD Invalid search key list"},
    {"search empty parens", "a SEARCH ()\r\n", "E a BAD Unknown search key"},
    {"search or one key", "a SEARCH OR SEEN\r\n", "E a BAD Missing argument or space expected"},
    {"search bad modseq entry", "a SEARCH MODSEQ \"/foo/x\" all 5\r\n",
     "E a BAD Invalid MODSEQ entry name"},
    {"search bad modseq type", "a SEARCH MODSEQ \"/flags/x\" some 5\r\n",
     "E a BAD Invalid MODSEQ entry type"},
    {"search unknown return", "a SEARCH RETURN (PARTIAL) ALL\r\n",
     "E a BAD Unknown SEARCH RETURN option"},
    {"unknown fetch item", "a FETCH 1 (FLAGS FOO)\r\n", "E a BAD Unknown FETCH item"},
    {"fetch empty list", "a FETCH 1 ()\r\n", "E a BAD Unknown FETCH item"},
    {"section text unknown", "a FETCH 1 BODY[HEADERS]\r\n", "E a BAD Invalid section"},
    {"list without pattern", "a LIST \"\" \r\n", "E a BAD Mailbox pattern expected"},
    {"literal size beyond 64 bits", "a LOGIN {99999999999999999999999}\r\nb NOOP\r\n",
     "E a BAD [TOOBIG] Literal too large\nC b NOOP"},
    {"mime without part", "a FETCH 1 BODY[MIME]\r\n", "E a BAD Invalid section"},
    {"binary with text", "a FETCH 1 BINARY[1.HEADER]\r\n", "E a BAD Invalid section"},
    {"part zero", "a FETCH 1 BODY[0]\r\n", "E a BAD Invalid section part"},
    {"header fields empty", "a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
     "E a BAD Header field name expected"},
    {"partial length zero", "a FETCH 1 BODY[]<0.0>\r\n", "E a BAD Invalid partial range"},
    {"binary.size partial", "a FETCH 1 BINARY.SIZE[1]<0.1>\r\n",
     "E a BAD Unexpected characters after the arguments"},
    {"vanished without uid", "a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)\r\n",
     "E a BAD VANISHED needs UID FETCH and CHANGEDSINCE"},
    {"vanished without changedsince", "a UID FETCH 1 FLAGS (VANISHED)\r\n",
     "E a BAD VANISHED needs UID FETCH and CHANGEDSINCE"},
    {"changedsince zero", "a FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n", "E a BAD Invalid mod-sequence"},
    {"unknown fetch modifier", "a FETCH 1 FLAGS (FOO)\r\n", "E a BAD Unknown FETCH modifier"},
    {"unknown select param", "a SELECT INBOX (FOO)\r\n", "E a BAD Unknown SELECT parameter"},
    {"unknown list option", "a LIST (FOO) \"\" *\r\n", "E a BAD Unknown LIST selection option"},
    {"unknown list return", "a LIST \"\" * RETURN (FOO)\r\n", "E a BAD Unknown LIST return option"},
    {"recursivematch alone", "a LIST (RECURSIVEMATCH) \"\" *\r\n",
     "E a BAD RECURSIVEMATCH needs another selection option"},
    {"unknown status item", "a STATUS INBOX (FOO)\r\n", "E a BAD Unknown STATUS item"},
    {"empty status list", "a STATUS INBOX ()\r\n", "E a BAD Unknown STATUS item"},
    {"unknown create param", "a CREATE x (FOO)\r\n", "E a BAD Unknown CREATE parameter"},
    {"store bad item", "a STORE 1 FLAGZ (\\Seen)\r\n", "E a BAD Invalid STORE data item"},
    {"store bad modifier", "a STORE 1 (FOO 1) FLAGS (\\Seen)\r\n",
     "E a BAD Unknown STORE modifier"},
    {"bad flag", "a STORE 1 FLAGS (\\)\r\n", "E a BAD Invalid flag"},
    {"unterminated quote", "a LOGIN \"joe\r\n", "E a BAD Unterminated quoted string"},
    {"bad escape", "a LOGIN \"j\\oe\" x\r\n", "E a BAD Invalid escape in quoted string"},
    {"literal8 outside append", "a LOGIN ~{3}\r\nb NOOP\r\n",
     "E a BAD literal8 is only allowed for APPEND messages\nC b NOOP"},
    {"literal8+ outside append is skipped", "a LOGIN ~{3+}\r\nabc x\r\nb NOOP\r\n",
     "E a BAD literal8 is only allowed for APPEND messages\nC b NOOP"},
    {"append without message", "a APPEND INBOX\r\n", "E a BAD Missing argument or space expected"},
    {"append quoted message", "a APPEND INBOX \"hello\"\r\n", "E a BAD Invalid date-time"},
    {"append garbage before literal", "a APPEND INBOX (\\Seen) foo {3}\r\nb NOOP\r\n",
     "E a BAD Message literal expected\nC b NOOP"},
    {"append utf8 with a plain literal", "a APPEND INBOX UTF8 ({3}\r\nb NOOP\r\n",
     "E a BAD UTF8 needs a literal8 (~{n})\nC b NOOP"},
    {"append utf8 unclosed", "a APPEND INBOX UTF8 (~{1+}\r\nx\r\nb NOOP\r\n",
     "D0 x\nE a BAD UTF8 (~{n}) needs its \")\"\nC b NOOP"},
    {"append literal in flags", "a APPEND INBOX (\\Seen {3}\r\nb NOOP\r\n",
     "E a BAD Invalid flag\nC b NOOP"},
    {"append bad second message refused before its bytes",
     "a APPEND INBOX {2+}\r\nhi (x y {3+}\r\nabc\r\nb NOOP\r\n",
     "D0 hi\nE a BAD Invalid flag\nC b NOOP"},
    {"authenticate bad initial response", "a AUTHENTICATE PLAIN abc\r\n",
     "E a BAD Invalid initial response (base64 expected)"},
    {"unknown command refused before its literal", "a FOO {3}\r\nb NOOP\r\n",
     "E a BAD Unknown command\nC b NOOP"},
    {"misplaced literal refused before +", "a FETCH {1}\r\nb NOOP\r\n",
     "E a BAD Invalid sequence set\nC b NOOP"},
    {"only the first literal is checked early", "a LOGIN {1}\r\nx {1}\r\ny z\r\nb NOOP\r\n",
     "+\n+\nE a BAD Unexpected extra arguments\nC b NOOP"},
    {"error then literal is skipped", "a FOO {3+}\r\nabc more\r\nb NOOP\r\n",
     "E a BAD Unknown command\nC b NOOP"},
    {"refused sync literal then quoted brace", "a LOGIN ~{1}\r\nb LOGIN x \"{1}\"\r\nc NOOP\r\n",
     "E a BAD literal8 is only allowed for APPEND messages\nC b LOGIN \"x\" \"{1}\"\nC c NOOP"},
};

static void
test_refusals(void **state)
{
    (void)state;
    check_cases(&imap_parser_default_limits, refusals, sizeof(refusals) / sizeof(refusals[0]));
}

static const struct imap_parser_limits small = {
    .max_line = 64,
    .max_literal = 16,
    .max_command = 256,
    .max_message = 32,
    .max_items = 8,
    .max_depth = 3,
    .max_ranges = 4,
    .literal_minus = false,
};

#define X10 "xxxxxxxxxx"
#define X70 X10 X10 X10 X10 X10 X10 X10
#define X16 X10 "xxxxxx"
#define H40 "X-A-Header-Name-Of-Forty-Characters-Long"

static const struct parse_case limits[] = {
    {"line at the limit", "a LOGIN " X10 X10 X10 X10 X10 "xx y\r\n",
     "C a LOGIN \"" X10 X10 X10 X10 X10 "xx\" \"y\""},
    {"line too long", "a LOGIN " X10 X10 X10 X10 X10 "xxx y\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Line too long\nC b NOOP"},
    {"long line skipped over its non-sync literal", "a LOGIN " X70 " {3+}\r\nabc\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Line too long\nC b NOOP"},
    {"long line with a sync literal", "a LOGIN " X70 " {3}\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Line too long\nC b NOOP"},
    /* Found by fuzzing: whether a long line's tag was echoed depended on how it was split. */
    {"long tag on a long line", X70 " NOOP\r\nb NOOP\r\n",
     "E * BAD [LIMIT] Line too long\nC b NOOP"},
    {"tag at the limit of a long line", X10 X10 X10 X10 X10 X10 "xx LOGIN a b\r\nb NOOP\r\n",
     "E " X10 X10 X10 X10 X10 X10 "xx BAD [LIMIT] Line too long\nC b NOOP"},
    /* Found by fuzzing: the BAD was lost when the line's end came in the same piece. */
    {"long line announcing a literal too large to skip", "a LOGIN " X70 " {33+}\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Line too long\nX * BYE Literal too large to skip"},
    {"long second line", "a LOGIN {1}\r\nx " X70 "\r\nb NOOP\r\n",
     "+\nE a BAD [LIMIT] Line too long\nC b NOOP"},
    {"literal at the limit", "a LOGIN {16}\r\n" X10 "xxxxxx y\r\n",
     "+\nC a LOGIN \"" X10 "xxxxxx\" \"y\""},
    {"literal too large", "a LOGIN {17}\r\nb NOOP\r\n",
     "E a BAD [TOOBIG] Literal too large\nC b NOOP"},
    {"non-sync literal too large is skipped", "a LOGIN {17+}\r\n" X10 "xxxxxxx y\r\nb NOOP\r\n",
     "E a BAD [TOOBIG] Literal too large\nC b NOOP"},
    {"skipped literal followed by another",
     "a LOGIN {17+}\r\n" X10 "xxxxxxx {2+}\r\nzz\r\nb NOOP\r\n",
     "E a BAD [TOOBIG] Literal too large\nC b NOOP"},
    {"message at the limit", "a APPEND INBOX {32+}\r\n" X10 X10 X10 "xx\r\n",
     "D0 " X10 X10 X10 "xx\nC a APPEND \"INBOX\" {32}\r\n" X10 X10 X10 "xx"},
    {"message too large", "a APPEND INBOX {33}\r\nb NOOP\r\n",
     "E a NO [TOOBIG] Message too large (limit 32 bytes)\nC b NOOP"},
    {"second message too large", "a APPEND INBOX {1+}\r\nx {33}\r\nb NOOP\r\n",
     "D0 x\nE a NO [TOOBIG] Message too large (limit 32 bytes)\nC b NOOP"},
    {"non-sync message too large to skip", "a APPEND INBOX {33+}\r\nb NOOP\r\n",
     "X * BYE Literal too large to skip"},
    {"items at the limit", "a FETCH 1 (UID UID UID UID UID UID UID UID)\r\n",
     "C a FETCH 1 (UID UID UID UID UID UID UID UID)"},
    {"too many items", "a FETCH 1 (UID UID UID UID UID UID UID UID UID)\r\n",
     "E a BAD [LIMIT] Too many arguments"},
    {"too many search keys", "a SEARCH SEEN SEEN SEEN SEEN SEEN SEEN SEEN SEEN SEEN\r\n",
     "E a BAD [LIMIT] Too many arguments"},
    {"depth at the limit", "a SEARCH NOT NOT NOT SEEN\r\n", "C a SEARCH NOT NOT NOT SEEN"},
    {"too deep", "a SEARCH NOT NOT NOT NOT SEEN\r\n", "E a BAD [LIMIT] Nested too deeply"},
    {"too deep parens", "a SEARCH ((((SEEN))))\r\n", "E a BAD [LIMIT] Nested too deeply"},
    {"too deep or", "a SEARCH OR SEEN OR SEEN OR SEEN (SEEN)\r\n",
     "E a BAD [LIMIT] Nested too deeply"},
    {"ranges at the limit", "a FETCH 1,2:3,4,* UID\r\n", "C a FETCH 1,2:3,4,* (UID)"},
    {"too many ranges", "a FETCH 1,2,3,4,5 UID\r\n",
     "E a BAD [LIMIT] Too many ranges in the sequence set"},
    {"too many literals",
     "a SEARCH TEXT {1+}\r\na TEXT {1+}\r\na TEXT {1+}\r\na TEXT {1+}\r\na TEXT {1+}\r\na "
     "TEXT {1+}\r\na TEXT {1+}\r\na TEXT {1+}\r\na TEXT {1+}\r\na\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Too many literals in one command\nC b NOOP"},
    {"command too long",
     "a SEARCH HEADER " H40 " {16+}\r\n" X16 " HEADER " H40 " {16+}\r\n" X16 " HEADER " H40
     " {16+}\r\n" X16 " HEADER " H40 " {16+}\r\n" X16 "\r\nb NOOP\r\n",
     "E a BAD [LIMIT] Command too long\nC b NOOP"},
    {"skipped line after a literal is too long to hold",
     "a LOGIN {17+}\r\n" X10 "xxxxxxx " X70 " {2+}\r\nzz\r\nb NOOP\r\n",
     "E a BAD [TOOBIG] Literal too large\nC b NOOP"},
    {"raw line too long", "a IDLE\r\n" X70 "\r\nb NOOP\r\n",
     "C a IDLE\nE * BAD [LIMIT] Line too long\nC b NOOP"},
};

static void
test_limits(void **state)
{
    (void)state;
    check_cases(&small, limits, sizeof(limits) / sizeof(limits[0]));
}

/* RFC 7888: under LITERAL- a non-synchronizing literal over 4096 bytes is refused and its
 * bytes skipped; a synchronizing one of any allowed size is fine. */
static void
test_literal_minus(void **state)
{
    (void)state;
    struct imap_parser_limits lim = imap_parser_default_limits;
    lim.literal_minus = true;
    static char in[3 * 5000 + 200], want[3 * 5000 + 400];
    for (size_t n = 4095; n <= 4098; n++) {
        for (int sync = 0; sync <= 1; sync++) {
            char lit[5000];
            memset(lit, 'p', n);
            lit[n] = '\0';
            int len = snprintf(in, sizeof(in), "a LOGIN {%zu%s}\r\n%s u\r\nb NOOP\r\n", n,
                               sync ? "" : "+", lit);
            if (!sync && n > IMAP_LITERAL_MINUS_MAX)
                snprintf(want, sizeof(want),
                         "E a BAD [TOOBIG] Non-synchronizing literals are limited to 4096 "
                         "bytes (LITERAL-)\nC b NOOP");
            else /* the canonical form writes a string this long as a literal */
                snprintf(want, sizeof(want), "%sC a LOGIN {%zu}\r\n%s \"u\"\nC b NOOP",
                         sync ? "+\n" : "", n, lit);
            check_case_limits(&lim, "literal-", in, (size_t)len, want);
        }
    }
    /* LITERAL+ takes the same non-synchronizing literal. */
    memset(in, 0, sizeof(in));
    int len = snprintf(in, sizeof(in), "a APPEND INBOX {5000+}\r\n");
    memset(in + len, 'm', 5000);
    memcpy(in + len + 5000, "\r\n", 3);
    run(&imap_parser_default_limits, in, (size_t)len + 5002, NULL, 0, whole);
    assert_memory_equal(whole->text, "D0 mmm", 6);
    lim.max_message = 64 * 1024;
    run(&lim, in, (size_t)len + 5002, NULL, 0, whole);
    assert_string_equal(whole->text, "E a BAD [TOOBIG] Non-synchronizing literals are limited "
                                     "to 4096 bytes (LITERAL-)");
}

/* A NUL is refused in every string a command carries, and allowed in a literal8 message. */
static void
test_nul(void **state)
{
    (void)state;
    static const char lit[] = "a LOGIN {3+}\r\nj\0e x\r\nb NOOP\r\n";
    run(&imap_parser_default_limits, lit, sizeof(lit) - 1, NULL, 0, whole);
    assert_string_equal(whole->text, "E a BAD NUL in literal\nC b NOOP");
    static const char quoted[] = "a LOGIN \"j\0e\" x\r\nb NOOP\r\n";
    run(&imap_parser_default_limits, quoted, sizeof(quoted) - 1, NULL, 0, whole);
    assert_string_equal(whole->text, "E a BAD NUL in quoted string\nC b NOOP");
    static const char atom[] = "a LOGIN j\0e x\r\nb NOOP\r\n";
    run(&imap_parser_default_limits, atom, sizeof(atom) - 1, NULL, 0, whole);
    assert_string_equal(whole->text, "E a BAD Missing argument or space expected\nC b NOOP");
}

/* After "* BYE" the parser refuses to go on: the connection must be closed. */
static void
test_fatal_is_sticky(void **state)
{
    (void)state;
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&small, &p), 0);
    static const char in[] = "a APPEND INBOX {1000+}\r\n";
    struct imap_parser_out out;
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, sizeof(in) - 1, &out),
                     IMAP_ITEM_ERROR);
    assert_true(out.fatal);
    assert_null(out.tag);
    assert_string_equal(out.response, "* BYE Literal too large to skip\r\n");
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)"b NOOP\r\n", 8, &out), TDM_EINVAL);
    imap_parser_free(&p);
}

/* The literal8 APPEND case has a NUL in its input, so it is checked with an explicit length. */
static void
test_commands(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        const struct parse_case *c = &commands[i];
        if (strcmp(c->name, "append literal8") == 0) {
            static const char in[] = "a APPEND INBOX ~{3}\r\na\0b\r\n";
            static const char want[] = "+\nD0 a\0b\nC a APPEND \"INBOX\" ~{3}\r\nxxx";
            /* transcripts are compared as C strings, so compare up to the NUL by hand */
            run(&imap_parser_default_limits, in, sizeof(in) - 1, NULL, 0, whole);
            assert_int_equal(whole->len, sizeof(want) - 1);
            assert_memory_equal(whole->text, want, sizeof(want) - 1);
            continue;
        }
        check_case_limits(&imap_parser_default_limits, c->name, c->in, strlen(c->in), c->want);
    }
}

/* ---- the struct, field by field ---- */

/* Parses one complete command fed whole; fails the test unless it comes out. */
static struct imap_command *
parse_one(const char *in)
{
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&imap_parser_default_limits, &p), 0);
    size_t len = strlen(in), off = 0;
    struct imap_command *cmd = NULL;
    while (!cmd) {
        struct imap_parser_out out;
        int r = imap_parser_feed(p, (const uint8_t *)in + off, len - off, &out);
        off += out.used;
        if (r == IMAP_ITEM_COMMAND)
            cmd = out.cmd;
        else if (r == IMAP_ITEM_ERROR)
            fail_msg("%s: %s", in, out.response);
        else if (r == IMAP_ITEM_NEED_MORE)
            fail_msg("%s: incomplete", in);
    }
    assert_int_equal(off, len);
    imap_parser_free(&p);
    return cmd;
}

static void
test_struct_fetch(void **state)
{
    (void)state;
    struct imap_command *c;
    c = parse_one("A7 UID FETCH 5:*,7 (UID BODY.PEEK[1.2.HEADER.FIELDS.NOT (Received x)]<5.10> "
                  "BINARY.SIZE[3]) (CHANGEDSINCE 77 VANISHED)\r\n");
    const struct imap_seqset *set = &c->u.fetch.set;
    assert_false(set->saved);
    assert_int_equal(set->n, 2);
    assert_int_equal(set->r[0].lo, 5);
    assert_int_equal(set->r[0].hi, IMAP_SEQ_STAR);
    assert_int_equal(set->r[1].lo, 7);
    assert_int_equal(set->r[1].hi, 7);
    assert_string_equal(c->tag, "A7");
    assert_int_equal(c->cmd, IMAP_CMD_FETCH);
    assert_true(c->uid);
    assert_int_equal(c->u.fetch.macro, IMAP_FETCH_MACRO_NONE);
    assert_int_equal(c->u.fetch.n, 3);
    assert_int_equal(c->u.fetch.atts[0].kind, IMAP_FETCH_UID);
    const struct imap_fetch_att *f = &c->u.fetch.atts[1];
    assert_int_equal(f->kind, IMAP_FETCH_BODY_SECTION);
    assert_true(f->peek);
    assert_int_equal(f->n_part, 2);
    assert_int_equal(f->part[0], 1);
    assert_int_equal(f->part[1], 2);
    assert_int_equal(f->text, IMAP_SECTION_HEADER_FIELDS_NOT);
    assert_int_equal(f->n_fields, 2);
    assert_string_equal(f->fields[0], "Received");
    assert_string_equal(f->fields[1], "x");
    assert_true(f->partial);
    assert_int_equal(f->offset, 5);
    assert_int_equal(f->length, 10);
    f = &c->u.fetch.atts[2];
    assert_int_equal(f->kind, IMAP_FETCH_BINARY_SIZE);
    assert_int_equal(f->n_part, 1);
    assert_int_equal(f->part[0], 3);
    assert_false(f->partial);
    assert_true(c->u.fetch.has_changedsince);
    assert_int_equal(c->u.fetch.changedsince, 77);
    assert_true(c->u.fetch.vanished);
    imap_command_free(&c);
    assert_null(c);

    c = parse_one("b FETCH $ FULL\r\n");
    assert_true(c->u.fetch.set.saved);
    assert_int_equal(c->u.fetch.set.n, 0);
    assert_int_equal(c->u.fetch.macro, IMAP_FETCH_MACRO_FULL);
    static const enum imap_fetch_kind full[] = {IMAP_FETCH_FLAGS, IMAP_FETCH_INTERNALDATE,
                                                IMAP_FETCH_RFC822_SIZE, IMAP_FETCH_ENVELOPE,
                                                IMAP_FETCH_BODY};
    assert_int_equal(c->u.fetch.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(c->u.fetch.atts[i].kind, full[i]);
    imap_command_free(&c);
}

static void
test_struct_search(void **state)
{
    (void)state;
    struct imap_command *c = parse_one(
        "s UID SEARCH RETURN (COUNT MIN) CHARSET utf-8 OR (FROM \"Smith\" SINCE 1-Feb-1994) "
        "NOT 1:3 HEADER X-Spam yes MODSEQ \"/flags/$junk\" priv 9 LARGER 5000000000\r\n");
    assert_true(c->uid);
    assert_true(c->u.search.esearch);
    assert_int_equal(c->u.search.returns, IMAP_SEARCH_RETURN_COUNT | IMAP_SEARCH_RETURN_MIN);
    assert_string_equal(c->u.search.charset, "UTF-8");
    const struct imap_search_key *k = c->u.search.key;
    assert_int_equal(k->op, IMAP_SEARCH_AND);
    /* OR takes the next two keys: the parenthesized list and NOT 1:3. */
    assert_int_equal(k->n_sub, 4);
    const struct imap_search_key * or = k->sub[0];
    assert_int_equal(or->op, IMAP_SEARCH_OR);
    assert_int_equal(or->n_sub, 2);
    assert_int_equal(or->sub[0]->op, IMAP_SEARCH_AND);
    assert_int_equal(or->sub[0]->n_sub, 2);
    assert_int_equal(or->sub[0]->sub[0]->op, IMAP_SEARCH_FROM);
    assert_string_equal(or->sub[0]->sub[0]->value, "Smith");
    assert_int_equal(or->sub[0]->sub[1]->op, IMAP_SEARCH_SINCE);
    assert_int_equal(or->sub[0]->sub[1]->date.year, 1994);
    assert_int_equal(or->sub[0]->sub[1]->date.month, 2);
    assert_int_equal(or->sub[0]->sub[1]->date.day, 1);
    const struct imap_search_key *not = or->sub[1];
    assert_int_equal(not ->op, IMAP_SEARCH_NOT);
    assert_int_equal(not ->n_sub, 1);
    assert_int_equal(not ->sub[0]->op, IMAP_SEARCH_SEQSET);
    assert_int_equal(not ->sub[0]->set.r[0].lo, 1);
    assert_int_equal(not ->sub[0]->set.r[0].hi, 3);
    assert_int_equal(k->sub[1]->op, IMAP_SEARCH_HEADER);
    assert_string_equal(k->sub[1]->field, "X-Spam");
    assert_string_equal(k->sub[1]->value, "yes");
    assert_int_equal(k->sub[2]->op, IMAP_SEARCH_MODSEQ);
    assert_string_equal(k->sub[2]->field, "/flags/$junk");
    assert_int_equal(k->sub[2]->entry_type, IMAP_ENTRY_PRIV);
    assert_int_equal(k->sub[2]->number, 9);
    assert_int_equal(k->sub[3]->op, IMAP_SEARCH_LARGER);
    assert_int_equal(k->sub[3]->number, 5000000000u);
    imap_command_free(&c);

    c = parse_one("t SEARCH UNSEEN\r\n");
    assert_false(c->u.search.esearch);
    assert_null(c->u.search.charset);
    assert_int_equal(c->u.search.key->n_sub, 1);
    assert_int_equal(c->u.search.key->sub[0]->op, IMAP_SEARCH_UNSEEN);
    imap_command_free(&c);
}

static void
test_struct_store_append(void **state)
{
    (void)state;
    struct imap_command *c =
        parse_one("s STORE 2 (UNCHANGEDSINCE 5) -FLAGS.SILENT (\\seen \\DELETED $Label1)\r\n");
    assert_int_equal(c->u.store.op, IMAP_STORE_REMOVE);
    assert_true(c->u.store.silent);
    assert_true(c->u.store.has_unchangedsince);
    assert_int_equal(c->u.store.unchangedsince, 5);
    assert_int_equal(c->u.store.n_flags, 3);
    assert_string_equal(c->u.store.flags[0], "\\Seen");
    assert_string_equal(c->u.store.flags[1], "\\Deleted");
    assert_string_equal(c->u.store.flags[2], "$Label1");
    imap_command_free(&c);

    c = parse_one("a APPEND inbox (\\Draft) \"17-Jul-1996 02:44:25 -0700\" {2+}\r\nhi "
                  "~{3+}\r\na\x01z\r\n");
    assert_int_equal(c->cmd, IMAP_CMD_APPEND);
    assert_string_equal(c->u.append.mailbox, "INBOX");
    assert_int_equal(c->u.append.n, 2);
    const struct imap_append_msg *m = &c->u.append.msgs[0];
    assert_true(m->has_flags);
    assert_int_equal(m->n_flags, 1);
    assert_string_equal(m->flags[0], "\\Draft");
    assert_true(m->has_date);
    assert_int_equal(m->date.time, 837596665); /* 1996-07-17 09:44:25 UTC */
    assert_int_equal(m->date.zone_minutes, -420);
    assert_int_equal(m->size, 2);
    assert_false(m->binary);
    m = &c->u.append.msgs[1];
    assert_false(m->has_flags);
    assert_false(m->has_date);
    assert_int_equal(m->size, 3);
    assert_true(m->binary);
    imap_command_free(&c);
}

static void
test_struct_mailbox_commands(void **state)
{
    (void)state;
    struct imap_command *c =
        parse_one("q SELECT Lists (CONDSTORE QRESYNC (67890007 90060115194045000 41:211))\r\n");
    assert_int_equal(c->cmd, IMAP_CMD_SELECT);
    assert_string_equal(c->u.select.mailbox, "Lists");
    assert_true(c->u.select.condstore);
    assert_true(c->u.select.qresync);
    assert_int_equal(c->u.select.uidvalidity, 67890007);
    assert_int_equal(c->u.select.modseq, 90060115194045000ull);
    assert_int_equal(c->u.select.known_uids.n, 1);
    assert_int_equal(c->u.select.known_uids.r[0].lo, 41);
    assert_int_equal(c->u.select.known_uids.r[0].hi, 211);
    assert_int_equal(c->u.select.match_seqs.n, 0);
    imap_command_free(&c);

    c = parse_one("l LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent\") RETURN (CHILDREN "
                  "STATUS (MESSAGES DELETED))\r\n");
    assert_true(c->u.list.extended);
    assert_int_equal(c->u.list.select_opts,
                     IMAP_LIST_SELECT_SUBSCRIBED | IMAP_LIST_SELECT_RECURSIVEMATCH);
    assert_string_equal(c->u.list.reference, "");
    assert_int_equal(c->u.list.n_patterns, 2);
    assert_string_equal(c->u.list.patterns[0], "INBOX");
    assert_string_equal(c->u.list.patterns[1], "Sent");
    assert_int_equal(c->u.list.return_opts, IMAP_LIST_RETURN_CHILDREN | IMAP_LIST_RETURN_STATUS);
    assert_int_equal(c->u.list.status_items, IMAP_STATUS_MESSAGES | IMAP_STATUS_DELETED);
    imap_command_free(&c);

    c = parse_one("l LIST \"\" %\r\n");
    assert_false(c->u.list.extended);
    assert_int_equal(c->u.list.select_opts, 0);
    assert_int_equal(c->u.list.return_opts, 0);
    imap_command_free(&c);

    c = parse_one("c CREATE Trash (USE (\\trash))\r\n");
    assert_true(c->u.create.has_use);
    assert_int_equal(c->u.create.n_use, 1);
    assert_string_equal(c->u.create.use[0], "\\Trash");
    imap_command_free(&c);

    c = parse_one("i ID (\"name\" NIL \"x\" {1}\r\ny)\r\n");
    assert_false(c->u.id.nil);
    assert_int_equal(c->u.id.n, 2);
    assert_string_equal(c->u.id.keys[0], "name");
    assert_null(c->u.id.values[0]);
    assert_string_equal(c->u.id.values[1], "y");
    imap_command_free(&c);

    c = parse_one("x AUTHENTICATE plain =\r\n");
    assert_string_equal(c->u.authenticate.mechanism, "PLAIN");
    assert_string_equal(c->u.authenticate.initial, "");
    imap_command_free(&c);
    c = parse_one("x AUTHENTICATE XOAUTH2\r\n");
    assert_null(c->u.authenticate.initial);
    imap_command_free(&c);

    c = parse_one("s SETQUOTA \"\" (STORAGE 512)\r\n");
    assert_string_equal(c->u.quota.root, "");
    assert_int_equal(c->u.quota.n, 1);
    assert_string_equal(c->u.quota.res[0].name, "STORAGE");
    assert_int_equal(c->u.quota.res[0].limit, 512);
    imap_command_free(&c);

    c = parse_one("e UID EXPUNGE 1:2,9\r\n");
    assert_int_equal(c->cmd, IMAP_CMD_EXPUNGE);
    assert_true(c->uid);
    assert_int_equal(c->u.copy.set.n, 2);
    imap_command_free(&c);

    c = parse_one("m UID MOVE 1 \"[Gmail]/Trash\"\r\n");
    assert_int_equal(c->cmd, IMAP_CMD_MOVE);
    assert_string_equal(c->u.copy.mailbox, "[Gmail]/Trash");
    imap_command_free(&c);
    assert_string_equal(imap_cmd_name(IMAP_CMD_GETQUOTAROOT), "GETQUOTAROOT");
}

/* APPEND message bytes come out in the order sent, with offsets, never held by the parser:
 * a large message fed in pieces comes back piece by piece, pointing into each piece. */
static void
test_append_streaming(void **state)
{
    (void)state;
    struct imap_parser_limits lim = imap_parser_default_limits;
    lim.max_command = 4096; /* far below the message: it cannot be held */
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&lim, &p), 0);
    const size_t size = 1000000;
    char head[64];
    int hl = snprintf(head, sizeof(head), "a APPEND INBOX {%zu}\r\n", size);
    struct imap_parser_out out;
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)head, (size_t)hl, &out),
                     IMAP_ITEM_CONTINUE);
    assert_int_equal(out.used, (size_t)hl);
    uint8_t piece[4096];
    uint64_t got = 0;
    while (got < size) {
        size_t n = size - got < sizeof(piece) ? size - got : sizeof(piece);
        for (size_t i = 0; i < n; i++)
            piece[i] = (uint8_t)((got + i) % 251);
        int r = imap_parser_feed(p, piece, n, &out);
        assert_int_equal(r, IMAP_ITEM_LITERAL_DATA);
        assert_ptr_equal(out.data, piece);
        assert_int_equal(out.len, n);
        assert_int_equal(out.used, n);
        assert_int_equal(out.msg_index, 0);
        assert_int_equal(out.msg_offset, got);
        assert_int_equal(out.msg_size, size);
        assert_string_equal(out.mailbox, "INBOX");
        got += n;
    }
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)"\r\n", 2, &out), IMAP_ITEM_COMMAND);
    assert_int_equal(out.cmd->u.append.msgs[0].size, size);
    imap_command_free(&out.cmd);
    imap_parser_free(&p);
}

/* The session may answer a synchronizing literal with its own NO instead of "+". */
static void
test_cancel_literal(void **state)
{
    (void)state;
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&imap_parser_default_limits, &p), 0);
    assert_int_equal(imap_parser_cancel_literal(p), TDM_EINVAL);
    static const char in[] = "A9 APPEND Nowhere (\\Seen) {1}\r\n{2+}\r\nhi\r\nb NOOP\r\n";
    struct imap_parser_out out;
    size_t off = 0;
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, sizeof(in) - 1, &out),
                     IMAP_ITEM_CONTINUE);
    assert_string_equal(out.tag, "A9");
    assert_true(out.message);
    assert_string_equal(out.mailbox, "Nowhere");
    assert_int_equal(out.msg_index, 0);
    assert_int_equal(out.msg_size, 1);
    off += out.used;
    assert_int_equal(imap_parser_cancel_literal(p), 0);
    assert_int_equal(imap_parser_cancel_literal(p), TDM_EINVAL);
    /* What follows is a new command: here a line that is not one, then b NOOP. */
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + off, sizeof(in) - 1 - off, &out),
                     IMAP_ITEM_ERROR);
    assert_string_equal(out.response, "* BAD Invalid tag\r\n");
    off += out.used;
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + off, sizeof(in) - 1 - off, &out),
                     IMAP_ITEM_COMMAND);
    assert_int_equal(out.cmd->cmd, IMAP_CMD_NOOP);
    imap_command_free(&out.cmd);
    /* A string literal: CONTINUE says it is not a message. */
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)"c LOGIN {3}\r\n", 13, &out),
                     IMAP_ITEM_CONTINUE);
    assert_false(out.message);
    assert_string_equal(out.tag, "c");
    imap_parser_free(&p);
}

/* The mailbox of an APPEND is known from its first message on, however it was written (here
 * a literal) and whether or not the message's literal is synchronizing; the next command does
 * not inherit it. */
static void
test_append_mailbox(void **state)
{
    (void)state;
    struct imap_parser *p;
    assert_int_equal(imap_parser_new(&imap_parser_default_limits, &p), 0);
    static const char in[] = "a APPEND {12+}\r\nEntw&APw-rfe (\\Seen) {2+}\r\nhi {1+}\r\nx\r\n"
                             "b APPEND inbox {1}\r\n";
    struct imap_parser_out out;
    size_t off = 0, len = sizeof(in) - 1;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + off, len - off, &out),
                         IMAP_ITEM_LITERAL_DATA);
        assert_string_equal(out.mailbox, "Entw&APw-rfe");
        assert_int_equal(out.msg_index, (size_t)i);
        off += out.used;
    }
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + off, len - off, &out),
                     IMAP_ITEM_COMMAND);
    assert_null(out.mailbox);
    imap_command_free(&out.cmd);
    off += out.used;
    assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + off, len - off, &out),
                     IMAP_ITEM_CONTINUE);
    assert_string_equal(out.mailbox, "INBOX");
    imap_parser_free(&p);
}

static void
test_line_is_done(void **state)
{
    (void)state;
    assert_true(imap_line_is_done((const uint8_t *)"DONE", 4));
    assert_true(imap_line_is_done((const uint8_t *)"done", 4));
    assert_false(imap_line_is_done((const uint8_t *)"DONE ", 5));
    assert_false(imap_line_is_done((const uint8_t *)"DON", 3));
}

/* Allocation failure in the arena comes back as NULL, never an abort. */
static void
test_arena(void **state)
{
    (void)state;
    struct imap_arena *a = imap_arena_new();
    assert_non_null(a);
    char *s = imap_arena_strndup(a, "abc", 3);
    assert_string_equal(s, "abc");
    /* larger than a block: a block of its own */
    uint8_t *big = imap_arena_alloc(a, 3 * IMAP_ARENA_BLOCK);
    assert_non_null(big);
    for (size_t i = 0; i < 3 * IMAP_ARENA_BLOCK; i++)
        assert_int_equal(big[i], 0);
    assert_null(imap_arena_array(a, SIZE_MAX / 4, 8));
    imap_arena_fail_after(a, 1);
    assert_non_null(imap_arena_alloc(a, 10));
    assert_null(imap_arena_alloc(a, 10));
    assert_null(imap_arena_strndup(a, "x", 1));
    assert_string_equal(s, "abc");
    imap_arena_free(&a);
    assert_null(a);
    imap_arena_free(&a);
}

int
main(void)
{
    whole = malloc(sizeof(*whole));
    split = malloc(sizeof(*split));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_literal_minus),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_fatal_is_sticky),
        cmocka_unit_test(test_struct_fetch),
        cmocka_unit_test(test_struct_search),
        cmocka_unit_test(test_struct_store_append),
        cmocka_unit_test(test_struct_mailbox_commands),
        cmocka_unit_test(test_append_streaming),
        cmocka_unit_test(test_cancel_literal),
        cmocka_unit_test(test_append_mailbox),
        cmocka_unit_test(test_line_is_done),
        cmocka_unit_test(test_arena),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    free(whole);
    free(split);
    return r;
}

#ifndef TANDEM_PROTO_IMAP_IMAP_COMMAND_H
#define TANDEM_PROTO_IMAP_IMAP_COMMAND_H

/*
 * A parsed IMAP command (RFC 3501, RFC 9051 and the extensions listed in imap_parser.h), as
 * imap_parser_feed() returns it. The command owns an arena (imap_arena.h) that holds the
 * struct itself and everything it points to; imap_command_free() frees it all at once.
 *
 * Strings are NUL-terminated: IMAP forbids NUL in every string a command carries (CHAR8 is
 * %x01-ff), and the parser refuses one, so a C string never hides a byte. Strings are as the
 * client sent them (after quoting is undone), except where a comment says otherwise: keywords
 * such as mechanism names, capabilities and system flags are case-insensitive in IMAP and are
 * given in their canonical case so callers can compare with strcmp. Mailbox names are not
 * decoded: whether they are modified UTF-7 or UTF-8 depends on what the session has enabled
 * (imap_mutf7.h), except that any case of "INBOX" is given as "INBOX" (RFC 3501 5.1).
 *
 * APPEND message bodies are not in the command: they were handed to the caller as
 * IMAP_ITEM_LITERAL_DATA items before the command completed; the command gives each
 * message's flags, date-time and size, in the same order.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct imap_arena;

enum imap_cmd {
    /* any state */
    IMAP_CMD_CAPABILITY = 1,
    IMAP_CMD_NOOP,
    IMAP_CMD_LOGOUT,
    IMAP_CMD_ID,     /* RFC 2971 */
    IMAP_CMD_ENABLE, /* RFC 5161 */
    /* not authenticated */
    IMAP_CMD_STARTTLS,
    IMAP_CMD_AUTHENTICATE, /* with SASL-IR (RFC 4959) */
    IMAP_CMD_LOGIN,
    /* authenticated */
    IMAP_CMD_SELECT,
    IMAP_CMD_EXAMINE,
    IMAP_CMD_CREATE,
    IMAP_CMD_DELETE,
    IMAP_CMD_RENAME,
    IMAP_CMD_SUBSCRIBE,
    IMAP_CMD_UNSUBSCRIBE,
    IMAP_CMD_LIST, /* RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 */
    IMAP_CMD_LSUB,
    IMAP_CMD_NAMESPACE, /* RFC 2342 */
    IMAP_CMD_STATUS,
    IMAP_CMD_APPEND,       /* MULTIAPPEND (RFC 3502), BINARY literal8 (RFC 3516) */
    IMAP_CMD_IDLE,         /* RFC 2177; the session then calls imap_parser_expect_line() */
    IMAP_CMD_GETQUOTA,     /* RFC 9208 */
    IMAP_CMD_GETQUOTAROOT, /* RFC 9208 */
    IMAP_CMD_SETQUOTA,     /* RFC 9208 */
    /* selected */
    IMAP_CMD_CHECK,
    IMAP_CMD_CLOSE,
    IMAP_CMD_UNSELECT, /* RFC 3691 */
    IMAP_CMD_EXPUNGE,  /* uid: UID EXPUNGE (RFC 4315) with a set */
    IMAP_CMD_SEARCH,   /* uid: UID SEARCH */
    IMAP_CMD_FETCH,    /* uid: UID FETCH */
    IMAP_CMD_STORE,    /* uid: UID STORE */
    IMAP_CMD_COPY,     /* uid: UID COPY */
    IMAP_CMD_MOVE,     /* uid: UID MOVE (RFC 6851) */
};
#define IMAP_CMD_MAX IMAP_CMD_MOVE

/* The command's name as IMAP spells it ("UID" not included), e.g. "GETQUOTAROOT". */
const char *imap_cmd_name(enum imap_cmd cmd);

/*
 * A sequence set: ranges as written, lo and hi in the order the client gave them ("4:2" is
 * lo 4, hi 2; the set means the same as "2:4"). IMAP_SEQ_STAR is "*", the largest number in
 * use. A single number is a range with lo == hi. saved: the set is "$" (RFC 5182 SEARCHRES),
 * and n is 0.
 */
#define IMAP_SEQ_STAR 0u
struct imap_seq_range {
    uint32_t lo, hi;
};
struct imap_seqset {
    bool saved;
    size_t n;
    struct imap_seq_range *r;
};

/* A date (SEARCH BEFORE/ON/SINCE...): day 1..31, month 1..12, year 0..9999 as written. */
struct imap_date {
    int year, month, day;
};

/* A date-time (APPEND): the instant in seconds since the epoch, and the zone the client gave,
 * in minutes east of UTC (so the internal date can be echoed as it was written). */
struct imap_date_time {
    int64_t time;
    int zone_minutes;
};

enum imap_search_op {
    IMAP_SEARCH_AND = 1, /* all of sub[0..n_sub): the program's top level and "( ... )" */
    IMAP_SEARCH_OR,      /* sub[0] or sub[1] */
    IMAP_SEARCH_NOT,     /* not sub[0] */
    IMAP_SEARCH_ALL,
    IMAP_SEARCH_ANSWERED,
    IMAP_SEARCH_DELETED,
    IMAP_SEARCH_DRAFT,
    IMAP_SEARCH_FLAGGED,
    IMAP_SEARCH_NEW,
    IMAP_SEARCH_OLD,
    IMAP_SEARCH_RECENT,
    IMAP_SEARCH_SEEN,
    IMAP_SEARCH_UNANSWERED,
    IMAP_SEARCH_UNDELETED,
    IMAP_SEARCH_UNDRAFT,
    IMAP_SEARCH_UNFLAGGED,
    IMAP_SEARCH_UNSEEN,
    IMAP_SEARCH_KEYWORD,   /* value: the keyword */
    IMAP_SEARCH_UNKEYWORD, /* value: the keyword */
    IMAP_SEARCH_BCC,       /* value: the substring; likewise the next six */
    IMAP_SEARCH_BODY,
    IMAP_SEARCH_CC,
    IMAP_SEARCH_FROM,
    IMAP_SEARCH_SUBJECT,
    IMAP_SEARCH_TEXT,
    IMAP_SEARCH_TO,
    IMAP_SEARCH_HEADER, /* field (header name), value (substring, may be "") */
    IMAP_SEARCH_BEFORE, /* date: internal date */
    IMAP_SEARCH_ON,
    IMAP_SEARCH_SINCE,
    IMAP_SEARCH_SENTBEFORE, /* date: the Date: header */
    IMAP_SEARCH_SENTON,
    IMAP_SEARCH_SENTSINCE,
    IMAP_SEARCH_LARGER, /* number: RFC 822 size */
    IMAP_SEARCH_SMALLER,
    IMAP_SEARCH_SEQSET, /* set: message sequence numbers */
    IMAP_SEARCH_UID,    /* set: UIDs */
    IMAP_SEARCH_MODSEQ, /* number: mod-sequence (RFC 7162), field: entry name or NULL */
};
#define IMAP_SEARCH_OP_MAX IMAP_SEARCH_MODSEQ

enum imap_modseq_entry_type {
    IMAP_ENTRY_NONE = 0, /* no entry name given */
    IMAP_ENTRY_PRIV,
    IMAP_ENTRY_SHARED,
    IMAP_ENTRY_ALL,
};

struct imap_search_key {
    enum imap_search_op op;
    struct imap_search_key **sub; /* AND, OR, NOT */
    size_t n_sub;
    const char *field; /* HEADER: field name; MODSEQ: entry name ("/flags/\\seen") or NULL */
    const char *value;
    struct imap_date date;
    uint64_t number;
    enum imap_modseq_entry_type entry_type;
    struct imap_seqset set;
};

/* SEARCH RETURN (RFC 4731, RFC 5182, RFC 9051) options, a bit mask. */
enum imap_search_return {
    IMAP_SEARCH_RETURN_MIN = 1u << 0,
    IMAP_SEARCH_RETURN_MAX = 1u << 1,
    IMAP_SEARCH_RETURN_ALL = 1u << 2,
    IMAP_SEARCH_RETURN_COUNT = 1u << 3,
    IMAP_SEARCH_RETURN_SAVE = 1u << 4,
};

enum imap_fetch_kind {
    IMAP_FETCH_ENVELOPE = 1,
    IMAP_FETCH_FLAGS,
    IMAP_FETCH_INTERNALDATE,
    IMAP_FETCH_RFC822,
    IMAP_FETCH_RFC822_HEADER,
    IMAP_FETCH_RFC822_SIZE,
    IMAP_FETCH_RFC822_TEXT,
    IMAP_FETCH_BODY, /* BODY without a section: the non-extensible structure */
    IMAP_FETCH_BODYSTRUCTURE,
    IMAP_FETCH_UID,
    IMAP_FETCH_MODSEQ,       /* RFC 7162 */
    IMAP_FETCH_BODY_SECTION, /* BODY[section]<partial> and BODY.PEEK[...] */
    IMAP_FETCH_BINARY,       /* BINARY[part]<partial> and BINARY.PEEK[...] (RFC 3516) */
    IMAP_FETCH_BINARY_SIZE,  /* BINARY.SIZE[part] */
};
#define IMAP_FETCH_KIND_MAX IMAP_FETCH_BINARY_SIZE

enum imap_section_text {
    IMAP_SECTION_NONE = 0, /* BODY[] or BODY[1.2]: the whole (part) */
    IMAP_SECTION_HEADER,
    IMAP_SECTION_HEADER_FIELDS, /* fields[0..n_fields) */
    IMAP_SECTION_HEADER_FIELDS_NOT,
    IMAP_SECTION_TEXT,
    IMAP_SECTION_MIME, /* only after a part number */
};

struct imap_fetch_att {
    enum imap_fetch_kind kind;
    bool peek;      /* BODY.PEEK / BINARY.PEEK: do not set \Seen */
    uint32_t *part; /* section part numbers, 1.2.3 -> {1,2,3} */
    size_t n_part;
    enum imap_section_text text;
    const char **fields; /* HEADER.FIELDS (NOT): header names as written */
    size_t n_fields;
    bool partial;            /* <offset.length> */
    uint64_t offset, length; /* length >= 1 */
};

/* FETCH ALL / FAST / FULL: the macro named; atts holds its expansion (RFC 3501 6.4.5). */
enum imap_fetch_macro {
    IMAP_FETCH_MACRO_NONE = 0,
    IMAP_FETCH_MACRO_ALL,
    IMAP_FETCH_MACRO_FAST,
    IMAP_FETCH_MACRO_FULL,
};

enum imap_store_op {
    IMAP_STORE_SET = 1, /* FLAGS */
    IMAP_STORE_ADD,     /* +FLAGS */
    IMAP_STORE_REMOVE,  /* -FLAGS */
};

/* STATUS items (and LIST RETURN (STATUS (...))), a bit mask. */
enum imap_status_item {
    IMAP_STATUS_MESSAGES = 1u << 0,
    IMAP_STATUS_RECENT = 1u << 1,
    IMAP_STATUS_UIDNEXT = 1u << 2,
    IMAP_STATUS_UIDVALIDITY = 1u << 3,
    IMAP_STATUS_UNSEEN = 1u << 4,
    IMAP_STATUS_DELETED = 1u << 5,         /* RFC 9051 */
    IMAP_STATUS_SIZE = 1u << 6,            /* RFC 8438 / RFC 9051 */
    IMAP_STATUS_HIGHESTMODSEQ = 1u << 7,   /* RFC 7162 */
    IMAP_STATUS_APPENDLIMIT = 1u << 8,     /* RFC 7889 */
    IMAP_STATUS_DELETED_STORAGE = 1u << 9, /* RFC 9208 */
};
#define IMAP_STATUS_ITEM_COUNT 10

/* LIST selection options (RFC 5258, RFC 6154), a bit mask. */
enum imap_list_select {
    IMAP_LIST_SELECT_SUBSCRIBED = 1u << 0,
    IMAP_LIST_SELECT_REMOTE = 1u << 1,
    IMAP_LIST_SELECT_RECURSIVEMATCH = 1u << 2,
    IMAP_LIST_SELECT_SPECIAL_USE = 1u << 3,
};

/* LIST return options, a bit mask; STATUS carries its items in list.status_items. */
enum imap_list_return {
    IMAP_LIST_RETURN_SUBSCRIBED = 1u << 0,
    IMAP_LIST_RETURN_CHILDREN = 1u << 1,
    IMAP_LIST_RETURN_SPECIAL_USE = 1u << 2,
    IMAP_LIST_RETURN_STATUS = 1u << 3,
};

struct imap_append_msg {
    const char **flags; /* flags of the flag list, system flags in canonical case */
    size_t n_flags;
    bool has_flags; /* a flag list was given (it may be empty) */
    bool has_date;
    struct imap_date_time date;
    uint64_t size; /* bytes of the literal, delivered as IMAP_ITEM_LITERAL_DATA */
    bool binary;   /* literal8 "~{n}" (RFC 3516): the body may hold NUL and raw 8-bit */
    bool utf8;     /* "UTF8 (~{n})" (RFC 6855): the message may hold UTF-8 header fields */
};

struct imap_quota_resource {
    const char *name; /* upper-cased: STORAGE, MESSAGE, MAILBOX, ANNOTATION-STORAGE... */
    uint64_t limit;
};

struct imap_command {
    const char *tag;
    enum imap_cmd cmd;
    bool uid; /* the UID prefix (FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE) */
    union {
        struct {
            const char *mechanism; /* upper-cased */
            const char *initial;   /* SASL-IR: base64 as sent, "" for "=", NULL: none */
        } authenticate;
        struct {
            const char *user, *password;
        } login;
        struct {
            const char **caps; /* upper-cased */
            size_t n;
        } enable;
        struct {
            bool nil;            /* ID NIL */
            const char **keys;   /* as sent */
            const char **values; /* NULL for NIL */
            size_t n;
        } id;
        struct {
            /* SELECT, EXAMINE, and the one-mailbox commands: DELETE, SUBSCRIBE, UNSUBSCRIBE,
             * GETQUOTAROOT use only mailbox */
            const char *mailbox;
            bool condstore;
            bool qresync;
            uint32_t uidvalidity;          /* QRESYNC */
            uint64_t modseq;               /* QRESYNC */
            struct imap_seqset known_uids; /* QRESYNC, optional (n == 0) */
            struct imap_seqset match_seqs; /* QRESYNC seq-match-data, optional */
            struct imap_seqset match_uids;
        } select;
        struct {
            const char *mailbox;
            bool has_use;     /* USE (...) given (RFC 6154); the list may be empty */
            const char **use; /* special-use attributes, canonical case for the known ones */
            size_t n_use;
        } create;
        struct {
            const char *from, *to;
        } rename;
        struct {
            /* LIST and LSUB (LSUB: pattern[0] only, no options) */
            bool extended;        /* selection options, several patterns or RETURN were given */
            unsigned select_opts; /* enum imap_list_select */
            const char *reference;
            const char **patterns;
            size_t n_patterns;
            unsigned return_opts;  /* enum imap_list_return */
            unsigned status_items; /* RETURN (STATUS (...)): enum imap_status_item */
        } list;
        struct {
            const char *mailbox;
            unsigned items; /* enum imap_status_item */
        } status;
        struct {
            const char *mailbox;
            struct imap_append_msg *msgs;
            size_t n;
        } append;
        struct {
            const char *root;
            struct imap_quota_resource *res; /* SETQUOTA */
            size_t n;
        } quota; /* GETQUOTA, SETQUOTA */
        struct {
            bool esearch;        /* RETURN (...) given: answer with ESEARCH */
            unsigned returns;    /* enum imap_search_return; RETURN () means ALL (RFC 4731) */
            const char *charset; /* upper-cased, NULL when not given */
            struct imap_search_key *key; /* an AND of the program's keys */
        } search;
        struct {
            struct imap_seqset set;
            enum imap_fetch_macro macro;
            struct imap_fetch_att *atts;
            size_t n;
            bool has_changedsince;
            uint64_t changedsince;
            bool vanished; /* UID FETCH ... (VANISHED) (RFC 7162 QRESYNC) */
        } fetch;
        struct {
            struct imap_seqset set;
            enum imap_store_op op;
            bool silent;
            const char **flags;
            size_t n_flags;
            bool has_unchangedsince;
            uint64_t unchangedsince;
        } store;
        struct {
            struct imap_seqset set; /* COPY, MOVE, UID EXPUNGE */
            const char *mailbox;    /* COPY, MOVE */
        } copy;
    } u;
    struct imap_arena *arena; /* owns this struct and everything it points to */
};

/* Frees the command and everything it points to; sets *cmd to NULL. NULL is fine. */
void imap_command_free(struct imap_command **cmd);

struct imap_buf;

/*
 * Appends the command to out in one canonical IMAP form: tag, upper-case names, every string
 * quoted (or a synchronizing literal when it cannot be quoted), sets and lists as parsed, CRLF
 * at the end. APPEND messages are written as literals of their size filled with 'x'. Parsing
 * the output gives a command that formats to the same bytes, which is what the tests and the
 * fuzz target compare. Returns 0 or -ENOMEM.
 */
int imap_command_format(const struct imap_command *cmd, struct imap_buf *out);

#endif

#ifndef TANDEM_STORE_STORE_INSPECT_H
#define TANDEM_STORE_STORE_INSPECT_H

/*
 * Offline tools over one database directory: what `tandemctl db inspect|verify|recover` run.
 *
 * store_inspect() and store_verify() never modify the database: LMDB is opened read-only and
 * the store's lock is only probed (flock LOCK_SH|LOCK_NB, released at once), so both may run
 * while tandemd has the database mounted. store_recover() mounts the database (recovery) and
 * dismounts it cleanly, so it needs the database not to be mounted anywhere else.
 *
 * Errors: each returns 0 when it could do its job (what it found is in the report), or a
 * negative code with *error_r (thread-local string, valid until the next store call on this
 * thread) saying what was wrong and what to do:
 *   -ENOENT / -ENOTDIR  the directory does not exist
 *   TDM_EFOREIGN        not a tandem database (no log/ and store/, or no tandem metadata)
 *   -EBUSY              (recover) mounted by another process
 *   TDM_ECORRUPT / TDM_EGAP  (recover) recovery refused to mount the database
 *   other -errno        I/O errors
 */

#include "store/store.h"
#include "tandem/events.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One generation file as found on disk. */
struct store_gen_info {
    uint64_t generation;
    uint64_t first_lsn;  /* from the header */
    uint64_t last_lsn;   /* of the last valid record; first_lsn - 1 when it has none */
    uint64_t records;    /* valid data records */
    uint64_t size;       /* file size in bytes */
    uint64_t epoch;      /* from the header */
    uint64_t created_us; /* header creation time, microseconds since the Unix epoch */
    bool closed;         /* ends with a valid END record */
    bool blank;          /* preallocated next generation: header never written */
    /* Why the scan stopped early or the header is bad; "" when the file read cleanly.
     * Judging it (torn tail or corruption) is verify's job. */
    char problem[256];
    uint64_t problem_offset;
};

struct store_inspection {
    char guid_hex[2 * TDM_LOG_GUID_LEN + 1];
    char kind[STORE_KIND_MAX + 1]; /* store_options.kind at create; "mail" when not recorded */
    uint64_t epoch;
    bool clean;   /* meta "clean": the last dismount was clean */
    bool mounted; /* another process holds <dir>/lock right now */
    uint64_t applied_lsn;
    uint64_t checkpoint_lsn;
    /* Generation files present (the blank preallocated one included in count and bytes). */
    uint64_t gen_low, gen_high, gen_count, gen_bytes;
    uint64_t current_gen; /* highest generation that was started; 0 when none */
    bool current_closed;
    uint64_t next_blank_gen; /* preallocated, never started; 0 when none */
    /* Generations recovery still needs: [required_low, required_high]; both 0 when clean. */
    uint64_t required_low, required_high;
    uint64_t lmdb_bytes; /* store/data.mdb */
    uint64_t log_bytes;  /* every file in log/ */
    uint64_t mailboxes, folders, messages, bodies;
    bool lmdb_nolock;            /* LMDB's lock file was not writable: read without it (see .c) */
    struct store_gen_info *gens; /* owned, ascending by generation */
    size_t n_gens;
};

/*
 * The database's kind (store_options.kind at create; "mail" for databases created before
 * kinds were recorded) into out, read-only like store_inspect(), so a caller can choose the
 * handler to open it with. Returns 0 or an error as above (TDM_ECORRUPT: the recorded kind is
 * not a kind name).
 */
int store_read_kind(const char *dir, char out[STORE_KIND_MAX + 1], const char **error_r);

/* Fills *r (free with store_inspection_clear()). On failure *r is left cleared. */
int store_inspect(const char *dir, struct store_inspection *r, const char **error_r);
void store_inspection_clear(struct store_inspection *r);

enum store_problem_severity {
    STORE_PROBLEM_ERROR,   /* the database would not mount, or LMDB disagrees with the log */
    STORE_PROBLEM_WARNING, /* e.g. a torn tail that recovery would cut */
};

struct store_problem {
    enum store_problem_severity severity;
    char *file; /* owned; NULL when the problem is not about one file */
    bool has_offset;
    uint64_t offset;
    char *reason; /* owned */
};

struct store_verify_options {
    bool skip_replay;    /* only check the log and decode records */
    const char *tmp_dir; /* where the replay environment goes; NULL: $TMPDIR or /tmp */
    /* Record types beyond mail (store.h), borrowed; NULL = mail only, and then records of
     * other types are reported as unknown. With a handler, its records are decode-checked
     * with validate() and replayed with apply(), and both digests are combined:
     * SHA-256(mail digest || handler digest). */
    const struct store_record_handler *handler;
};

struct store_verify_report {
    bool mounted;
    bool lmdb_nolock;
    uint64_t applied_lsn;
    uint64_t generations; /* generation files checked (the blank next one included) */
    uint64_t records;     /* valid data records read */
    uint64_t decoded;     /* mail and handler records decoded (NOOPs have nothing to decode) */
    uint64_t first_lsn;   /* first LSN the log holds */
    uint64_t last_lsn;    /* last valid LSN the log holds */
    /* Replay of LSN 1..applied into a temporary LMDB, compared with the database. */
    bool replay_compared;
    bool digests_match;
    uint64_t replayed;
    char replay_note[256];          /* why no comparison was made, when !replay_compared */
    uint8_t db_digest[32];          /* mail digest, or combined with the handler's (see options) */
    uint8_t replay_digest[32];      /* valid when replay_compared */
    struct store_problem *problems; /* owned */
    size_t n_problems;
    size_t errors, warnings;
};

/* Fills *r (free with store_verify_report_clear()); 0 even when problems were found. */
int store_verify(const char *dir, const struct store_verify_options *options,
                 struct store_verify_report *r, const char **error_r);
void store_verify_report_clear(struct store_verify_report *r);

/* An event the store emitted during recovery. */
struct store_event_copy {
    enum tdm_event id;
    char *message; /* owned */
};

struct store_recovery {
    bool inspected; /* the fields below from before recovery are valid */
    bool was_clean; /* the database had been dismounted cleanly */
    uint64_t applied_before;
    uint64_t applied_after; /* valid when recovery succeeded */
    uint64_t replayed;      /* records applied by recovery */
    bool torn_tail_cut;
    uint64_t generation_size;        /* used for new generations: the smallest one's size */
    struct store_event_copy *events; /* owned, in emission order */
    size_t n_events;
};

/*
 * Soft recovery: store_open() (which replays the log and cuts a torn tail) then store_close().
 * Every event emitted meanwhile is copied into r->events; the event hook is set for the
 * duration and reset to none afterwards, so a caller must not rely on its own hook across
 * this call. The event sink is left as the caller set it. r is filled even on failure (the
 * events say what recovery found); free it with store_recovery_clear().
 */
int store_recover(const char *dir, struct store_recovery *r, const char **error_r);
/* The same for a database holding a handler's records (handler borrowed; NULL = mail only). */
int store_recover_handler(const char *dir, const struct store_record_handler *handler,
                          struct store_recovery *r, const char **error_r);
void store_recovery_clear(struct store_recovery *r);

#endif

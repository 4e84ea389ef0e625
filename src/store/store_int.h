#ifndef TANDEM_STORE_STORE_INT_H
#define TANDEM_STORE_STORE_INT_H

/* Internals shared by the store's files (store.c, store_log.c, store_apply.c, store_recover.c,
 * log_scan.c). Nothing outside src/store includes this. */

#include "store/log_codec.h"
#include "store/store.h"

#include <pthread.h>

/* Keys in the "meta" sub-database. Values are little-endian u64 unless said otherwise. */
#define STORE_META_GUID "guid"           /* 16 bytes */
#define STORE_META_APPLIED "applied_lsn" /* last LSN applied, written in the same txn */
#define STORE_META_CHECKPOINT "checkpoint_lsn"
#define STORE_META_CLEAN "clean"     /* 1 after a clean shutdown, 0 while mounted */
#define STORE_META_BOOT_ID "boot_id" /* kernel boot id (string) when last mounted */
#define STORE_META_EPOCH "epoch"
/* The database kind (string, no NUL, [a-z0-9-]{1,32}); absent in databases created before
 * kinds existed, which are "mail". */
#define STORE_META_KIND "kind"
/* A copy's (u64): the generation it expects first while it holds none (store_copy.c). A store
 * mounted from a copy that holds none begins its log there (store_mount.c). */
#define STORE_META_COPY_FIRST "copy_first_generation"

#define STORE_LOG_DIR "log"
#define STORE_LMDB_DIR "store"
#define STORE_RESERVE_FILE "reserve"
#define STORE_MAXDBS 16
/* Generations kept preallocated beyond the current one, so a burst of rolls (large records,
 * large batches) does not wait for file creation. */
#define STORE_PREALLOC_AHEAD 2
/* At most this many spare generations (new or recycled) above the current one: see
 * spare_max() in store_hk.c. */
#define STORE_RECYCLE_MAX 16
/* Log workers taking turns to write and sync (store_log.c): two let one batch's write and
 * sync overlap the previous batch's sync. */
#define STORE_LOG_WORKERS 2
/* Generations sized to the batches (store_gen.c, gen_size_for()): while batches are large, a
 * generation is begun at the smallest power-of-two multiple of generation_size, at most
 * STORE_GEN_GROW_MAX times it, that holds STORE_GEN_BATCHES batches as large as the last. */
#define STORE_GEN_BATCHES 4
#define STORE_GEN_GROW_MAX 8

/* "<dir>/<16 hex>.log" into buf (size >= strlen(dir) + 22). */
void store__gen_path(char *buf, size_t size, const char *log_dir, uint64_t gen);
/* Parses "<16 hex>.log"; returns 0 and the generation, or -1 for another name. */
int store__gen_parse_name(const char *name, uint64_t *gen_r);

/* Lists the generation numbers present in log_dir, sorted ascending (*gens_r: free()). */
int store__gen_list(const char *log_dir, uint64_t **gens_r, size_t *n_r);

/* Opens the LMDB environment in lmdb_dir (read-only if rdonly). */
int store__env_open(const char *lmdb_dir, uint64_t map_size, bool rdonly, MDB_env **env_r,
                    const char **error_r);
int store__meta_get_u64(MDB_txn *txn, MDB_dbi meta, const char *key, uint64_t *v_r);
int store__meta_put_u64(MDB_txn *txn, MDB_dbi meta, const char *key, uint64_t v);
int store__lmdb_err(int mdb_rc);
/* Reads STORE_META_KIND into kind: 0 (STORE_KIND_MAIL when absent), TDM_ECORRUPT for a
 * value that is not a valid kind name, or a negative LMDB error. */
int store__meta_get_kind(MDB_txn *txn, MDB_dbi meta, char kind[STORE_KIND_MAX + 1]);

/*
 * Scanning one generation file: validates the header and walks its frames in order.
 * Used by recovery, `db verify`, `db inspect` and (later) replication inspection.
 */
enum gen_scan_end {
    GEN_SCAN_END_RECORD, /* ended by a valid END frame: the generation is closed */
    GEN_SCAN_ZERO_FILL,  /* the rest is zero fill: an open (current) generation */
    GEN_SCAN_INVALID,    /* an invalid frame at bad_offset (torn tail or corruption) */
};

struct gen_scan {
    struct log_header hdr;
    enum gen_scan_end end;
    uint64_t records;       /* valid data records */
    uint64_t last_lsn;      /* of the last valid data record, or hdr.first_lsn - 1 */
    uint64_t valid_end;     /* offset just past the last valid frame (END excluded) */
    uint32_t checksum;      /* running CRC32C over the valid data frames */
    struct log_end end_rec; /* when end == GEN_SCAN_END_RECORD */
    uint64_t bad_offset;    /* when end == GEN_SCAN_INVALID */
    const char *bad_reason; /* static string */
    uint64_t file_size;
    bool blank_header; /* the header was never written (preallocated next generation) */
    bool header_bad;   /* the header is there but does not decode */
    bool unbegun;      /* version 3: a valid header and no BEGIN after it (a spare; hdr holds
                        * only version and GUID) */
    bool begin_bad;    /* version 3: a valid header and something else than a valid BEGIN
                        * where BEGIN goes (damage, or a first write torn by a crash) */
    bool body_blank;   /* set when the header is blank or bad: every byte after the
                        * header area is zero, so no record was ever written here */
    bool tail_dirty;   /* GEN_SCAN_ZERO_FILL: bytes after the end of the records are not all
                        * zero (a recycled file's stale bytes, or an unsynced batch's) */
};

/* Called for each valid data record; a non-zero return stops the scan and is returned. */
typedef int gen_record_cb(void *ctx, const struct log_record *rec);

/*
 * Reads generation file path through io. Returns 0 with *scan_r filled (including blank and
 * INVALID outcomes: the caller decides what they mean), TDM_ECORRUPT for a bad header with
 * *error_r set, -errno for I/O errors, or what cb returned. cb may be NULL.
 */
int store__gen_scan(const struct io_ops *io, const char *path, gen_record_cb *cb, void *ctx,
                    struct gen_scan *scan_r, const char **error_r);

/* The open store: see store.c for the threads and what each field is for. */
struct pending {
    struct pending *next;
    uint64_t lsn;
    uint16_t type;
    uint8_t *frame; /* the encoded record, in the entry's own allocation (after it) */
    size_t frame_len;
    store_commit_cb *cb;
    void *ctx;
    int status;
    struct mail_result result;
};

struct gen_state {
    uint64_t gen;
    int fd;
    uint64_t size; /* file size */
    uint64_t off;  /* where the next frame goes */
    uint64_t epoch;
    uint64_t first_lsn;
    uint64_t last_lsn; /* of the last data record written, or first_lsn - 1 */
    uint64_t records;
    uint32_t checksum;      /* running CRC32C over the frames written (BEGIN included) */
    uint32_t prev_checksum; /* for the BEGIN record: the previous generation's checksum */
    bool begun;             /* has its BEGIN record, or (before version 3) its header, in a
                             * write; the log thread writes BEGIN with the first records */
    bool in_table;          /* begun durably, and recorded in the generation table */
    bool closed;            /* has its END record */
};

/* One generation of the log, in the generation table (lock). */
struct gen_entry {
    uint64_t first_lsn;
    uint64_t epoch;
    uint64_t file_size; /* the size it was begun with */
    uint64_t end;       /* once its END is durable: the offset just past END; else 0 */
};

struct store {
    char *dir, *log_dir, *lmdb_dir, *reserve_path, *lock_path;
    char *name; /* event subject: the database directory's last component */
    struct store_options opt;
    const struct io_ops *io;
    uint8_t guid[TDM_LOG_GUID_LEN];
    int lock_fd;
    MDB_env *env;
    MDB_dbi meta;
    struct mail_dbis mail;
    void *handler_state;           /* owned: opt.handler->open()'s state, freed by its close() */
    char kind[STORE_KIND_MAX + 1]; /* from meta (STORE_META_KIND) */

    pthread_mutex_t lock;
    pthread_cond_t log_wake, apply_wake, hk_wake, progress;
    pthread_t log_threads[STORE_LOG_WORKERS], apply_thread, hk_thread;
    bool threads_started, hk_started;
    pthread_mutex_t truncate_lock; /* serialises store__truncate() and preallocation */

    /* lock */
    uint64_t epoch;
    uint64_t next_lsn;
    struct pending *log_head, **log_tailp;
    uint64_t log_count;  /* records in the log queue */
    uint64_t inflight;   /* commits queued and not yet handed to their callbacks */
    uint64_t last_batch; /* records in the log workers' last batch */
    /* The log workers' turns (store_log.c): */
    bool log_writing;         /* a worker has the writer's turn */
    uint64_t log_ticket_next; /* the ticket of the next batch taken */
    uint64_t log_ticket_done; /* batches completed, in ticket order */
    uint64_t log_in_sync;     /* records taken and not completed */
    unsigned log_workers;     /* running */
    uint64_t sync_ewma_us;    /* recent fdatasync duration */
    uint64_t last_write_ms;   /* when a batch last completed (idle close) */
    uint64_t batch_want;      /* while a log worker waits for a fuller batch: how full (else 0) */
    struct pending *apply_head, **apply_tailp;
    uint64_t durable_lsn, applied_lsn, checkpoint_lsn;
    uint64_t roll_requested, roll_done;
    bool closing, log_done, apply_done;
    bool hk_stop;      /* set after the log and apply threads have drained */
    int failed;        /* sticky: the first write/sync/apply failure */
    bool reserve_mode; /* disk full: commits refused, clean shutdown still possible */
    uint64_t floor;
    uint64_t lowest_gen;
    uint64_t cur_gen;       /* the highest generation durably begun: the log thread's cur.gen,
                             * or the one below it while cur has no durable BEGIN yet (so
                             * truncation never removes the last generation that is begun) */
    uint64_t writing_gen;   /* mirror of the log thread's cur.gen: begun, or next to be */
    struct gen_entry *gens; /* [g - lowest_gen] for g in [lowest_gen, cur_gen] */
    size_t gen_cap;
    /* The durable position in generation cur_gen: bytes [0, dur_end) are durable, the last
     * durable data record is dur_last_lsn, and dur_closed once END is among them. */
    uint64_t dur_end, dur_last_lsn;
    bool dur_closed;
    uint64_t gen_want;      /* the size the next generation is begun with, at least
                             * generation_size: set by the writer's turn from each batch
                             * (store__gen_want_batch()), read by preallocation and recycling */
    uint64_t large_gens;    /* generations begun larger than generation_size for batches */
    uint64_t prealloc_upto; /* generations (cur_gen, prealloc_upto] exist as spares (new and
                             * zero-filled, or recycled); raised only under truncate_lock by
                             * preallocation and truncation (and by open) */
    int next_gen_error;     /* last failure to create it */
    uint64_t bytes_since_ckpt;
    uint64_t last_ckpt_ms;
    uint64_t commits, syncs, roll_stalls;
    uint64_t solo_syncs;        /* syncs nothing overlapped (store_status) */
    uint64_t created, recycled; /* spare generations made new / recycled */

    /* The replication hook (store_set_durable_hook()): its own mutex, held while it runs, so
     * that once the hook is changed the old one is never called again. */
    pthread_mutex_t hook_lock;
    store_durable_cb *durable_cb;
    void *durable_ctx;

    /* the log worker with the writer's turn (and store_open/close while no thread runs);
     * a worker that has given the turn up reads none of it (store_log.c) */
    struct gen_state cur;
    uint8_t *wbuf;
    size_t wbuf_cap;

    /* apply thread only */
    uint64_t checkpoint_recorded; /* checkpoint LSN last written to meta */
};

/* store.c: time helpers and threads */
uint64_t store__now_us_mono(void);
uint64_t store__now_us_wall(void);
/* CLOCK_MONOTONIC deadline ms from now, for pthread_cond_timedwait on the store's conds. */
void store__deadline_after_ms(struct timespec *ts, uint64_t ms);
void *store__log_thread_main(void *arg); /* store_log.c: one per log worker */
/* Takes the next batch off the log queue (lock held; store_log.c): a prefix of it, capped
 * at half the commits expected while no other batch is in its sync. *records_r: how many. */
struct pending *store__log_take_batch(struct store *s, uint64_t *records_r);
void *store__apply_thread_main(void *arg); /* store_apply.c */
void *store__hk_thread_main(void *arg);    /* store_hk.c */
/* Sets status on p and every entry after it (store_log.c, store_apply.c). */
void store__fail_list(struct pending *p, int status);
/* Closes the current generation and opens the next, large enough for a frame of min_frame
 * bytes (store_gen.c). Returns TDM_ENOSPACE when no next generation can be had. */
int store__gen_roll(struct store *s, uint64_t min_frame);
/* store_gen.c, store_apply.c, store_hk.c: */
int store__threads_start(struct store *s);
void store__threads_stop(struct store *s);
int store__gen_close_current(struct store *s);
/* The END frame that closes the current generation as it stands now (store_gen.c). */
void store__gen_end_frame(const struct store *s, uint8_t frame[TDM_LOG_END_FRAME]);
/* Opens the next generation after a current one already closed (store_gen.c). */
int store__gen_start_next(struct store *s);
/* Records the bytes of the batch the writer's turn is about to write: the next generation is
 * begun large enough for STORE_GEN_BATCHES of them (store_gen.c). Lock not held. */
void store__gen_want_batch(struct store *s, uint64_t batch_bytes);
/* The size a generation begun now gets with a first frame of min_frame bytes (writer's turn). */
uint64_t store__gen_size_for(const struct store *s, uint64_t min_frame);
/* Opens generation cur.gen + 1 (already preallocated) as the current one. */
int store__gen_open_next(struct store *s, uint64_t min_frame);
int store__gen_file_create(const struct io_ops *io, const char *log_dir, uint64_t gen,
                           uint64_t size, const uint8_t guid[TDM_LOG_GUID_LEN]);
/* 1 when the file at path has a version 3 header of this database (a spare the log thread
 * may begin), 0 when not, or -errno; *size_r is its size. */
int store__gen_header_ready(const struct store *s, const char *path, uint64_t *size_r);
/* The BEGIN frame of the current generation (store_gen.c). */
void store__gen_begin_frame(const struct store *s, uint8_t frame[TDM_LOG_BEGIN_FRAME]);
/* After an fdatasync of the current generation (closed: its END was in it): once its BEGIN is
 * durable, records it in the generation table (which truncation and status read), moves the
 * durable position (store_log_extent()) and calls the durable hook. Returns 0 or -ENOMEM.
 * The same as store__gen_pos() then store__gen_durable_at(). */
int store__gen_durable(struct store *s, bool closed);
/* A position in the current generation, taken when a write ends (by whoever writes) and
 * recorded once an fdatasync that started after that write has returned, which may be after
 * later writes: the log workers' syncs overlap writes (store_log.c). */
struct gen_pos {
    uint64_t gen, first_lsn, epoch, size;
    uint64_t end;      /* offset just past the last byte written (END included when closed) */
    uint64_t last_lsn; /* of the last data record written */
    bool begun;        /* false: nothing to record */
    bool closed;
    bool to_table; /* the generation is not in the generation table yet */
};
void store__gen_pos(struct store *s, bool closed, struct gen_pos *pos_r);
/* Records a durable position (lock not held); positions must come in log order. */
int store__gen_durable_at(struct store *s, const struct gen_pos *pos);
/* Grows the current generation, not begun yet, to hold a frame of min_frame bytes. */
int store__gen_fit_unbegun(struct store *s, uint64_t min_frame);
/* Records generation gen, begun with this first LSN, epoch and file size, as the highest in the
 * generation table (lock held). */
int store__gen_table_push(struct store *s, uint64_t gen, uint64_t first_lsn, uint64_t epoch,
                          uint64_t file_size);
int store__apply_record(struct store *s, MDB_txn *txn, uint16_t type, const uint8_t *payload,
                        uint32_t len, struct mail_result *result_r, const char **error_r);
int store__checkpoint(struct store *s);
int store__truncate(struct store *s);
uint64_t store__now_ms(void);

/*
 * Replaying log records into LMDB, shared by recovery (store_mount.c) and a copy's replay
 * (store_copy.c): pass store__replay_record() as the gen_record_cb of store__gen_scan(), then
 * store__replay_commit(). Records at or below applied are skipped (apply is idempotent by LSN);
 * write transactions hold at most 512 records and store the applied LSN. With stop_after set,
 * the first record above it stops the scan with STORE_REPLAY_STOP.
 */
#define STORE_REPLAY_STOP 1
struct store_replay {
    struct store *s;
    MDB_txn *txn;
    uint64_t applied;    /* in: LMDB's applied LSN; out: the last applied */
    uint64_t stop_after; /* 0 = no limit */
    uint64_t replayed;   /* records applied */
    uint64_t bytes;      /* their frame sizes */
    unsigned in_txn;
    const char *why; /* after a failure */
};
int store__replay_record(void *ctx, const struct log_record *rec);
int store__replay_commit(struct store_replay *r);

/* store_mount.c, shared with store_copy.c: */
int store__options_check(const struct store_options *o, const char **error_r);
char *store__path_join(const char *a, const char *b);
/* An unopened store for dir (NULL when out of memory); store__free() frees what it holds. */
struct store *store__alloc(const char *dir, const struct store_options *opt);
void store__free(struct store *s);
int store__dirs_create(struct store *s, const char **error_r);
int store__lmdb_create(struct store *s, const char *kind, const char **error_r);
/* Takes the database directory's lock file: only one process may have it open. */
int store__lock_dir(struct store *s, const char **error_r);
/* Opens the sub-databases (and the handler's) and reads the metadata into s (guid, epoch,
 * kind) and the out-parameters. */
int store__meta_read(struct store *s, uint64_t *applied_r, uint64_t *ckpt_r, uint64_t *clean_r,
                     char boot_id[40], const char **error_r);
/* Writes the clean flag, boot id, applied and checkpoint LSN (s->applied_lsn) and epoch, then
 * syncs LMDB (a checkpoint). */
int store__meta_mark(struct store *s, bool clean);
/* Zeroes [from, size) of the file at path and syncs it: a torn tail, never acknowledged. */
int store__cut_tail(struct store *s, const char *path, uint64_t from, uint64_t size);

/*
 * Which generation files form the log: preallocated files (blank: never started) may sit
 * above the current generation, several of them. Recovery, verify and inspect share this rule.
 */
struct log_top {
    size_t n_log;           /* gens[0, n_log) are the log; the current generation is the last */
    uint64_t prealloc_upto; /* highest preallocated generation above the log, 0 if none */
};
int store__log_top(const struct io_ops *io, const char *log_dir, const uint64_t *gens, size_t n,
                   struct log_top *top_r);

/* Thread-local formatted error message for *error_r results. */
const char *store__errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

#ifndef TANDEM_SMTP_DUMPSTER_H
#define TANDEM_SMTP_DUMPSTER_H

/*
 * The transport dumpster (docs/smtp.md, "Transport dumpster"): every message the transport
 * role delivered, kept per mailbox database in <datadir>/dumpster/<database>/ with its
 * recipients and their delivery ids, so that after a lossy failover it can be resubmitted to
 * the new active copy, which drops what it already holds (the delivery index, src/store/).
 *
 * One file per (message, database): <16-digit delivery time>-<16 hex random>.msg, written to
 * a dot-file, synced, renamed, and the directory synced, so a crash leaves either the whole
 * entry or none (and maybe a dot-file, which dumpster_prune() removes). The name sorts by
 * time, so listing and pruning never open a file. The layout of a file (all integers
 * little-endian; str = u16 length n, n bytes without NUL, one 0x00 byte):
 *
 *   8 bytes "TDMDMP01", i64 delivery time (Unix seconds), u8 flags (bit 0: BODY=8BITMIME),
 *   str sender (RFC 5321 Mailbox without brackets; empty for the null path),
 *   u16 recipient count (1..DUMPSTER_MAX_RCPTS), per recipient: 16-byte delivery id (not all
 *   zero), str address (Mailbox without brackets, 1..SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX
 *   bytes), u32 body length n, n body bytes, u32 CRC32C of every byte before it.
 *
 * Plain functions on files that block on the disk: no event loop, no sockets. The SMTP
 * worker writes and prunes through dumpster_writer.h, off its loop; dumpster_resubmit.c relays.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DUMPSTER_ID_LEN 16u
#define DUMPSTER_MAX_RCPTS 1000u
#define DUMPSTER_ADDR_MAX 511u
#define DUMPSTER_MAX_BODY (64u * 1024u * 1024u)

struct dumpster_rcpt {
    uint8_t id[DUMPSTER_ID_LEN];
    const char *address; /* Mailbox form, NUL-terminated */
};

struct dumpster_entry {
    int64_t time; /* when the message was delivered */
    const char *sender;
    bool body_8bit;
    size_t n_rcpts;
    const struct dumpster_rcpt *rcpts;
    const uint8_t *body;
    size_t body_len;
};

/* Encodes e into a new buffer (free() it). Returns 0, TDM_EINVAL (a field out of its range)
 * or -ENOMEM. */
int dumpster_entry_encode(const struct dumpster_entry *e, uint8_t **buf_r, size_t *len_r);

/* A decoded entry: pointers borrow from the buffer and from rcpts_storage. */
struct dumpster_decoded {
    struct dumpster_entry e;
    struct dumpster_rcpt *rcpts_storage;
};

/* Decodes buf[0..len), checking every length and the checksum. Returns 0, TDM_EINVAL with a
 * static *error_r, or -ENOMEM. Nothing to clear on failure. */
int dumpster_entry_decode(const uint8_t *buf, size_t len, struct dumpster_decoded *d,
                          const char **error_r);
void dumpster_decoded_clear(struct dumpster_decoded *d);

/* Whether database can name a dumpster directory (printable ASCII, no '/', no leading dot). */
bool dumpster_database_ok(const char *database);

/* Keeps e for database: crash-safe (see above). Returns 0 or -errno / TDM_EINVAL. Blocks on
 * the disk: a loop uses dumpster_writer.h. */
int dumpster_put(const char *datadir, const char *database, const struct dumpster_entry *e);
/* The same for an entry dumpster_entry_encode() made of an entry delivered at time. */
int dumpster_put_encoded(const char *datadir, const char *database, int64_t time, const uint8_t *buf,
                         size_t len);

/*
 * Removes entries delivered before now - max_age_s (0: no age limit), then the oldest ones of
 * any database while the dumpster holds more than max_size bytes (0: no size limit), and
 * dot-files left by a crash. *removed_r: entries removed. Returns 0 or -errno.
 */
int dumpster_prune(const char *datadir, int64_t now, uint64_t max_age_s, uint64_t max_size,
                   unsigned *removed_r);

struct dumpster_db_stat {
    const char *database;
    uint64_t count;
    uint64_t bytes;
    int64_t oldest; /* delivery time of the oldest entry; 0 when count is 0 */
};
typedef int dumpster_stat_cb(void *ctx, const struct dumpster_db_stat *st);
/* cb for each database that has a dumpster directory, in name order. cb's non-zero return
 * stops and is returned; otherwise 0 or -errno. */
int dumpster_stat(const char *datadir, dumpster_stat_cb *cb, void *ctx);

/* The entries of database delivered at or after since, oldest first: *paths_r is an array of
 * *n_r malloc'ed absolute paths (free each and the array). No directory: 0 entries. */
int dumpster_list(const char *datadir, const char *database, int64_t since, char ***paths_r,
                  size_t *n_r);

/* Reads a whole file (at most DUMPSTER_MAX_BODY plus room for its header). */
int dumpster_read(const char *path, uint8_t **buf_r, size_t *len_r);

#endif

#ifndef TANDEM_LOG_FORMAT_H
#define TANDEM_LOG_FORMAT_H

/*
 * On-disk format of a database's transaction log. docs/formats/log.md says the same for
 * operators. All integers are little-endian. Changing anything here changes the format version.
 *
 * A database's log is a directory of generation files, <datadir>/db/<name>/log/<G>.log, where
 * <G> is the generation number as 16 lower-case hex digits. A generation file has a fixed size
 * (default 1 MiB), is preallocated (zero-filled, or recycled: see below), and is immutable once
 * closed.
 *
 * Generation header, at offset 0, TDM_LOG_HEADER_USED bytes, rest of the first
 * TDM_LOG_HEADER_SIZE bytes zero. Since version 3 it names only the database, so that it can
 * be written and synced when the file is made, long before the file becomes a generation, and
 * stays valid when the file is recycled; what makes the file a generation is its BEGIN record:
 *    0   8  magic "TDMLOG01"
 *    8   4  format version (TDM_LOG_VERSION)
 *   12   4  header size (TDM_LOG_HEADER_SIZE): records start at this offset
 *   16  16  database GUID
 *   32  40  version 3: zero (reserved). Versions 1 and 2 had the generation's identity here:
 *           32 8 generation number, 40 8 creation time (us since the Unix epoch), 48 8 epoch,
 *           56 8 first LSN, 64 4 checksum of the previous generation, 68 4 file size
 *   72   4  CRC32C of bytes [0, 72)
 *
 * Record frame, packed back to back from TDM_LOG_HEADER_SIZE:
 *    0   8  LSN: data records are numbered 1, 2, 3... without gaps across generations
 *    8   8  epoch
 *   16   2  type (enum tdm_record_type)
 *   18   2  flags (0; reserved)
 *   20   4  payload length n (<= TDM_LOG_MAX_PAYLOAD)
 *   24   n  payload
 * 24+n   4  CRC32C of bytes [0, 24+n)
 *
 * Version 3: the first frame of a generation, at TDM_LOG_HEADER_SIZE, is its BEGIN frame
 * (TDM_LOG_BEGIN_FRAME bytes), written with the generation's first records and made durable by
 * their fdatasync. Its LSN field is the generation's first LSN (the LSN its first data record
 * has; BEGIN does not consume one), its epoch field the generation's epoch, and its payload:
 *    0   8  generation number (>= 1, equal to the number in the file name)
 *    8   8  creation time: when the generation was begun, us since the Unix epoch
 *   16   4  checksum of the previous generation (its END record's generation checksum; 0 for
 *           generation 1 or when the previous generation was never closed)
 *   20   4  file size in bytes this generation was begun with
 * A file with a version 3 header and no BEGIN is a spare, never a generation of the log.
 *
 * The first frame whose 24-byte header is all zero ends the records: the writer follows every
 * write of records with such a zero frame header (or END). A generation is closed by an END
 * frame, whose LSN field repeats the last data record's LSN (0 if none) and which does not
 * consume an LSN. Its payload is:
 *    0   8  number of data records in the generation
 *    8   4  generation checksum: CRC32C over every frame before the END frame, in order
 *           (BEGIN included)
 *   12   4  0 (reserved)
 * What follows END, or the zero frame header, carries no meaning: zeros in a new file, stale
 * bytes of an older generation in a recycled one. A generation without END is the current one
 * (only the highest-numbered generation may lack it). A record never spans two generations:
 * one larger than a standard generation gets a generation of its own, sized to fit.
 *
 * Recycling: a generation below the checkpoint and the replication floor is renamed, whole and
 * unchanged, to the number after the highest spare; its BEGIN (its header, before version 3)
 * still names the generation it was. Above the current generation, a file whose valid BEGIN
 * names a lower generation than its file name is such a spare; the next BEGIN is written over
 * the old one with the new generation's first records. Stale frames in it carry LSNs below the
 * new generation's first LSN, so the LSN sequence check can never take one for a record of the
 * new generation.
 */

#include <stdint.h>

#define TDM_LOG_MAGIC "TDMLOG01"
#define TDM_LOG_MAGIC_LEN 8
/* Version 3: the generation's identity moved from the header into a BEGIN record (see above),
 * so a new generation needs no header write and sync of its own. Version 2: generation files
 * are recycled, so the bytes after END or after the end of the records may be stale (see
 * below); version 1 promised zeros there. An older reader refuses a newer log by this number
 * instead of calling it corruption. A log may hold generations of several versions, oldest
 * first (a database written before an upgrade). */
#define TDM_LOG_VERSION 3u
#define TDM_LOG_VERSION_MIN 1u   /* the oldest version this code reads */
#define TDM_LOG_VERSION_BEGIN 3u /* the first version with BEGIN records */
#define TDM_LOG_HEADER_SIZE 4096u
#define TDM_LOG_HEADER_USED 76u
#define TDM_LOG_GUID_LEN 16u

#define TDM_LOG_FRAME_HEADER 24u
#define TDM_LOG_FRAME_TRAILER 4u
#define TDM_LOG_FRAME_OVERHEAD (TDM_LOG_FRAME_HEADER + TDM_LOG_FRAME_TRAILER)
#define TDM_LOG_END_PAYLOAD 16u
#define TDM_LOG_END_FRAME (TDM_LOG_FRAME_OVERHEAD + TDM_LOG_END_PAYLOAD)
#define TDM_LOG_BEGIN_PAYLOAD 24u
#define TDM_LOG_BEGIN_FRAME (TDM_LOG_FRAME_OVERHEAD + TDM_LOG_BEGIN_PAYLOAD)

/* The largest payload a record may carry: bounds every decoder's allocation. */
#define TDM_LOG_MAX_PAYLOAD (64u * 1024u * 1024u)

#define TDM_LOG_DEFAULT_GENERATION_SIZE (1024u * 1024u)
#define TDM_LOG_MIN_GENERATION_SIZE (64u * 1024u)
#define TDM_LOG_MAX_GENERATION_SIZE (1024u * 1024u * 1024u)

/*
 * Record type ranges. The store itself knows 0..15 and the mail model; every other range
 * belongs to one record handler (src/store/store.h, struct store_record_handler) that the
 * database is opened with, so a type is never reused across modules:
 *      0..15   the store (END, NOOP, BEGIN)
 *     16..63   the mail model (src/store/mail_codec.c)
 *     64..95   the directory (src/directory/dir_codec.c)
 *     96..127  reserved for the next handler (cluster, OAB...)
 *    128..     unassigned; 0xff00..0xffff are for tests and never appear in a real log
 */
#define TDM_REC_DIR_FIRST 64
#define TDM_REC_DIR_LAST 95
#define TDM_REC_TEST_FIRST 0xff00

enum tdm_record_type {
    TDM_REC_END = 1,   /* closes a generation; see above */
    TDM_REC_NOOP = 2,  /* opaque payload, applied as nothing (tests, benchmarks, markers) */
    TDM_REC_BEGIN = 3, /* opens a generation (version 3); see above */

    /* Mail model: payload layouts in src/store/mail_codec.c and docs/formats/log.md. */
    TDM_REC_MAILBOX_CREATE = 16,
    TDM_REC_MAILBOX_DELETE = 17,
    TDM_REC_MAILBOX_SET_QUOTA = 18,
    TDM_REC_FOLDER_CREATE = 32,
    TDM_REC_FOLDER_RENAME = 33,
    TDM_REC_FOLDER_DELETE = 34,
    TDM_REC_FOLDER_SUBSCRIBE = 35,
    TDM_REC_FOLDER_RECENT = 36, /* claims \\Recent (IMAP) for the UIDs below a limit */
    TDM_REC_MESSAGE_APPEND = 48,
    TDM_REC_MESSAGE_FLAGS = 49,
    TDM_REC_MESSAGE_EXPUNGE = 50,
    TDM_REC_MESSAGE_COPY = 51,

    /* Directory: payload layouts in src/directory/dir_codec.c and docs/formats/directory.md. */
    TDM_REC_DIR_BOOTSTRAP = 64,
    TDM_REC_DIR_PUT = 65,
    TDM_REC_DIR_DELETE = 66,
    TDM_REC_DIR_ACL_SET = 67,
    TDM_REC_DIR_PASSWORD_SET = 68,
    TDM_REC_DIR_GROUP_MEMBERS = 69,
};

#endif

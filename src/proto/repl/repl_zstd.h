#ifndef TANDEM_PROTO_REPL_REPL_ZSTD_H
#define TANDEM_PROTO_REPL_REPL_ZSTD_H

/*
 * zstd for LOG_DATA payloads (docs/formats/replication.md, "Compression"). Compression uses a
 * bounded level so a misconfigured level cannot stall the source; decompression takes the
 * frame's raw_length as a hard limit: it never writes past it, and any disagreement (a zstd
 * frame declaring or producing another size, several frames, trailing bytes) is an error, never
 * an overflow or a short chunk.
 *
 * One context per connection (it keeps zstd's work memory between chunks); one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#define REPL_ZSTD_LEVEL_MIN 1
#define REPL_ZSTD_LEVEL_MAX                                                                        \
    9 /* above this, compressing a 1 MiB chunk costs more than a LAN saves */
#define REPL_ZSTD_LEVEL_DEFAULT 3

struct repl_zstd;

/* level is clamped to [REPL_ZSTD_LEVEL_MIN, REPL_ZSTD_LEVEL_MAX]. 0 with an owned *z, or
 * -ENOMEM. */
int repl_zstd_new(int level, struct repl_zstd **z_r);
void repl_zstd_free(struct repl_zstd **z);

/*
 * Compresses src (len bytes, <= REPL_WIRE_CHUNK_MAX) into dst (cap bytes). Returns 0 with
 * *out_len_r < len; TDM_ELIMIT when the result would not be smaller than len (send the chunk
 * raw: the wire allows zstd only when it saves bytes); TDM_EINVAL for an empty or oversized
 * src; -ENOMEM.
 */
int repl_zstd_compress(struct repl_zstd *z, const uint8_t *src, size_t len, uint8_t *dst,
                       size_t cap, size_t *out_len_r);

/*
 * Decompresses exactly one zstd frame src (len bytes) into dst, which must have room for
 * raw_len bytes. Returns 0 when it yields exactly raw_len bytes; TDM_ECORRUPT with *error_r
 * (static) for a broken frame, a declared or actual size other than raw_len, or bytes after
 * the frame; -ENOMEM. dst holds garbage on failure.
 */
int repl_zstd_decompress(struct repl_zstd *z, const uint8_t *src, size_t len, uint8_t *dst,
                         size_t raw_len, const char **error_r);

#endif

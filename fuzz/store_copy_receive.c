/*
 * Fuzzes store_copy_receive() (src/store/store_copy.c), which decodes and inspects log bytes
 * shipped by another server: a fresh copy (in a temporary directory, on /dev/shm when there is
 * one, so its syncs are cheap) of the database whose GUID the first step's bytes hold where a
 * generation header has it (so that a real log fits; FUZZ_GUID when the step is shorter) is
 * fed the input as a script of steps:
 *
 *   step = op (1 byte) | length (2 bytes, little-endian) | length bytes
 *   op % 5 == 0  receive the bytes at the copy's position
 *   op % 5 == 1  receive them one generation or byte off the position (must be TDM_EINVAL)
 *   op % 5 == 2  sync          op % 5 == 3  replay          op % 5 == 4  close and reopen
 *
 * Whatever the bytes, a receive returns 0 (the position moves by exactly len bytes, or to the
 * next generation's start), TDM_EINVAL or TDM_ECORRUPT with a message (the position does not
 * move); replay never applies beyond the durable position; a reopened copy is where it was
 * after its last sync. The seed corpus holds real generations of a mail database with that
 * GUID, cut into steps at frame boundaries (fuzz/corpus/store_copy_receive/README).
 */
#include "store/store.h"
#include "store/store_copy.h"

#include "lib/err.h"
#include "lib/event.h"

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t FUZZ_GUID[16] = {'t', 'a', 'n', 'd', 'e', 'm', '-', 'f',
                                      'u', 'z', 'z', '-', 'c', 'o', 'p', 'y'};

static char base[64];

static void
remove_base(void)
{
    rmdir(base);
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct store_copy *
copy_open(const char *dir)
{
    struct store_options o;
    store_options_init(&o);
    o.map_size = 64u << 20;
    o.checkpoint_bytes = 16 * 1024; /* checkpoints happen within one input */
    struct store_copy *c = NULL;
    const char *err = NULL;
    if (store_copy_open(dir, &o, &c, &err) != 0)
        abort(); /* a copy only ever holds inspected bytes: it always reopens */
    return c;
}

static bool
same_pos(const struct store_copy_position *a, const struct store_copy_position *b)
{
    return a->generation == b->generation && a->offset == b->offset && a->lsn == b->lsn &&
           a->epoch == b->epoch;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base[0]) {
        event_set_sink(NULL);
        snprintf(base, sizeof(base), "%s/tdm-fuzz-copy-XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(base))
            abort();
        atexit(remove_base);
    }
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/copy", base);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    const char *err = NULL;
    size_t first_len = size >= 3 ? ((size_t)data[1] | (size_t)data[2] << 8) : 0;
    const uint8_t *guid = first_len >= 32 && size >= 3 + 32 ? data + 3 + 16 : FUZZ_GUID;
    if (store_copy_create(dir, guid, NULL, 1, &err) != 0)
        abort();
    struct store_copy *c = copy_open(dir);

    size_t off = 0;
    while (off + 3 <= size) {
        uint8_t op = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (len > size - off)
            len = size - off;
        const uint8_t *bytes = data + off;
        off += len;

        struct store_copy_position before, after;
        store_copy_get_position(c, &before);
        switch (op % 5) {
        case 0: {
            err = NULL;
            int ret = store_copy_receive(c, before.generation, before.offset, bytes, len, &err);
            store_copy_get_position(c, &after);
            if (ret == 0) {
                bool moved = after.generation == before.generation
                                 ? after.offset == before.offset + len
                                 : after.generation == before.generation + 1 && after.offset == 0;
                if (!moved && len > 0)
                    abort();
            } else if (ret == TDM_EINVAL || ret == TDM_ECORRUPT) {
                if (!err || !same_pos(&before, &after))
                    abort();
            } else {
                abort(); /* no I/O error on a healthy disk */
            }
            break;
        }
        case 1: {
            uint64_t gen = before.generation + (len & 1 ? 1 : 0);
            uint64_t at = before.offset + (len & 1 ? 0 : 1);
            if (store_copy_receive(c, gen, at, bytes, len, &err) != TDM_EINVAL)
                abort();
            break;
        }
        case 2: {
            struct store_copy_position d;
            if (store_copy_sync(c, &d) != 0 || !same_pos(&d, &before))
                abort();
            break;
        }
        case 3: {
            uint64_t replayed = 0;
            struct store_copy_status st;
            store_copy_get_status(c, &st);
            int ret = store_copy_replay(c, NULL, &replayed);
            /* Inspection does not decode payloads: a record with a valid frame that the
             * mail model refuses fails the copy, as it would fail the active's recovery. */
            if (ret == 0 && replayed > st.durable.lsn)
                abort();
            if (ret != 0) {
                store_copy_close(&c);
                goto done;
            }
            break;
        }
        case 4:
            if (store_copy_close(&c) != 0)
                abort();
            c = copy_open(dir);
            store_copy_get_position(c, &after);
            if (!same_pos(&before, &after))
                abort();
            break;
        }
    }
    store_copy_close(&c);
done:
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

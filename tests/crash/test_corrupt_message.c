/*
 * Regression test: when recovery refused a generation whose header a crash had lost, the
 * error text came out garbled ("<file>: offset 0: <file>: offset 0:  never written ..."):
 * corrupt() in store_mount.c formatted the scanner's reason, which lives in store__errorf()'s
 * thread-local buffer, into that same buffer. The operator must get the whole reason.
 * Plain main: "N passed, N failed".
 */
#include "lib/err.h"
#include "lib/event.h"
#include "store/store.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int
main(void)
{
    char dir[] = "/tmp/tdm-corrupt-msg-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char db[64], gen1[128];
    snprintf(db, sizeof(db), "%s/db", dir);
    snprintf(gen1, sizeof(gen1), "%s/log/0000000000000001.log", db);
    event_set_sink(NULL);

    struct store_options o;
    store_options_init(&o);
    o.generation_size = 64 * 1024;
    o.reserve_bytes = 0;
    const char *err = NULL;
    struct store *s = NULL;
    int failed = 0;
    if (store_create(db, &o, &err) != 0 || store_open(db, &o, &s, &err) != 0 ||
        (store_set_truncation_floor(s, 1), store_commit(s, TDM_REC_NOOP, "x", 1, NULL, NULL)) !=
            0 ||
        store_roll(s) != 0 || store_close(&s) != 0) {
        printf("FAIL: setup: %s\n", err ? err : "-");
        failed = 1;
    }
    /* The floor kept generation 1 (closed by the roll). Zero its header, as a lost header
     * write would leave it, while its records stay. */
    int fd = open(gen1, O_RDWR);
    static const unsigned char zeros[76];
    if (!failed && (fd < 0 || pwrite(fd, zeros, sizeof(zeros), 0) != (ssize_t)sizeof(zeros))) {
        printf("FAIL: cannot write %s\n", gen1);
        failed = 1;
    }
    if (fd >= 0)
        close(fd);
    if (!failed) {
        int ret = store_open(db, &o, &s, &err);
        if (ret != TDM_ECORRUPT) {
            printf("FAIL: open returned %d, expected TDM_ECORRUPT\n", ret);
            failed = 1;
            store_close(&s);
        } else if (!err || strncmp(err, gen1, strlen(gen1)) != 0 ||
                   !strstr(err, "header was never written but the file holds data")) {
            printf("FAIL: the error does not name the file and the reason: \"%s\"\n",
                   err ? err : "(null)");
            failed = 1;
        }
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d passed, %d failed\n", !failed, failed);
    return failed;
}

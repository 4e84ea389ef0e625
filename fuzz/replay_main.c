/*
 * Corpus replay for builds without libFuzzer: feeds every file named on the command line, and
 * every regular file in every directory named there, to LLVMFuzzerTestOneInput once. Run by
 * ctest (label "fuzz") so every `make check` replays the seed corpora under the sanitizers.
 * A missing or empty directory is an error: a corpus that silently vanished tests nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Replays one file. Returns 0 or -1 after saying why. */
static int
replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0) {
        fprintf(stderr, "replay: cannot stat %s: %s\n", path, strerror(errno));
        fclose(f);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    /* Exactly size bytes (at least one to malloc), so the sanitizers see any overread. */
    uint8_t *data = malloc(size > 0 ? size : 1);
    if (!data) {
        fprintf(stderr, "replay: out of memory for %s (%zu bytes)\n", path, size);
        fclose(f);
        return -1;
    }
    if (size > 0 && fread(data, 1, size, f) != size) {
        fprintf(stderr, "replay: short read on %s\n", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int
skip_dot(const struct dirent *de)
{
    return de->d_name[0] != '.';
}

/* Replays every regular file in dir, in name order. Returns the count or -1. */
static long
replay_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, skip_dot, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot read directory %s: %s\n", dir, strerror(errno));
        return -1;
    }
    long count = 0;
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        int len = snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (len < 0 || (size_t)len >= sizeof(path)) {
            fprintf(stderr, "replay: path too long in %s\n", dir);
            failed = 1;
        } else if (stat(path, &st) < 0) {
            fprintf(stderr, "replay: cannot stat %s: %s\n", path, strerror(errno));
            failed = 1;
        } else if (S_ISREG(st.st_mode)) {
            if (replay_file(path) < 0)
                failed = 1;
            else
                count++;
        }
        free(names[i]);
    }
    free(names);
    if (failed)
        return -1;
    if (count == 0) {
        fprintf(stderr, "replay: directory %s holds no corpus files\n", dir);
        return -1;
    }
    return count;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <corpus dir or file>...\n", argv[0]);
        return 2;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            long n = replay_dir(argv[i]);
            if (n < 0)
                return 1;
            total += n;
        } else {
            if (replay_file(argv[i]) < 0)
                return 1;
            total++;
        }
    }
    printf("%ld files replayed\n", total);
    return 0;
}

/*
 * replay.c — cmocka driver that replays a fuzz target's committed corpus, so
 * CI runs every corpus file (crash regressions included) without libFuzzer.
 *
 * The Makefile links this file with ONE fuzz target object into
 * $(BUILD)/fuzz/replay_NAME. NAME comes from the macro RN_FUZZ_NAME when
 * defined, else from argv[0]'s basename "replay_NAME". Every regular file in
 * RN_SOURCE_DIR/tests/fuzz/corpus/NAME/ (dot files skipped, sorted by name)
 * becomes one cmocka test that passes its bytes, in an exact-size heap buffer,
 * to LLVMFuzzerTestOneInput. The target aborts on a broken invariant, and
 * ASan/UBSan builds (SAN=1) catch memory errors.
 *
 * Invariants:
 *  1. A missing or empty corpus directory is a failing test, never a silent pass.
 *  2. A file that cannot be read is a failing test.
 *  3. Bounded memory: the process's peak RSS (getrusage ru_maxrss) is sampled
 *     around every input; an input that raises it by more than
 *     MAX_RSS_GROWTH_KIB fails, naming the growth. The fuzz_rpc_* targets run
 *     the broker's handlers in this process, so an amplification input (a
 *     small request that makes the broker allocate without bound, as the
 *     amp-* seeds of tests/fuzz/corpus/rpc_produce) fails its replay. The
 *     largest growth is printed at the end.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmocka.h>

#ifndef RN_SOURCE_DIR
#error "RN_SOURCE_DIR must name the source tree (the Makefile defines it)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_CORPUS_FILE (1u << 20)
/* A request to the broker may hold a 16 MiB batch and decode it once; 64 MiB
 * leaves room for that and the sanitizers' shadow memory, far below what an
 * amplification did (~250 MB for one 66 KB batch). */
#define MAX_RSS_GROWTH_KIB (64L * 1024)

static char corpus_dir[PATH_MAX];
static long max_growth_kib;
static char max_growth_name[256];

static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
}

static void replay_file(void **state)
{
    const char *path = *state;
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > MAX_CORPUS_FILE) {
        fclose(f);
        fail_msg("%s: cannot stat, or larger than %u bytes", path, MAX_CORPUS_FILE);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        fail_msg("%s: read %zu of %zu bytes", path, got, n);
    }
    long before = peak_rss_kib();
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    long grew = peak_rss_kib() - before;            /* invariant 3 */
    if (grew > max_growth_kib) {
        max_growth_kib = grew;
        const char *base = strrchr(path, '/');
        snprintf(max_growth_name, sizeof max_growth_name, "%s", base ? base + 1 : path);
    }
    if (grew > MAX_RSS_GROWTH_KIB)
        fail_msg("%s raised peak RSS by %ld KiB (the limit is %ld KiB): the request made "
                 "the code under test allocate without bound", path, grew, MAX_RSS_GROWTH_KIB);
}

static void corpus_missing(void **state)
{
    fail_msg("corpus %s has no files (or cannot be read): a replay needs at least one",
             corpus_dir);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *name;
#ifdef RN_FUZZ_NAME
    name = RN_FUZZ_NAME;
    (void)argc;
#else
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    base = base ? base + 1 : (argc > 0 ? argv[0] : "");
    if (strncmp(base, "replay_", 7) != 0 || base[7] == '\0') {
        fprintf(stderr, "replay: cannot tell the target from \"%s\" (expected replay_NAME)\n", base);
        name = "(unknown)";
    } else {
        name = base + 7;
    }
#endif
    snprintf(corpus_dir, sizeof corpus_dir, "%s/tests/fuzz/corpus/%s", RN_SOURCE_DIR, name);

    char **names = NULL;
    size_t count = 0, cap = 0;
    DIR *d = opendir(corpus_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char path[PATH_MAX];
            struct stat st;
            if (snprintf(path, sizeof path, "%s/%s", corpus_dir, e->d_name) >= (int)sizeof path)
                continue;
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if (count == cap) {
                cap = cap ? cap * 2 : 64;
                char **nn = realloc(names, cap * sizeof *names);
                if (!nn) { perror("replay"); return 1; }
                names = nn;
            }
            names[count] = strdup(e->d_name);
            if (!names[count]) { perror("replay"); return 1; }
            count++;
        }
        closedir(d);
    }

    char group[128];
    snprintf(group, sizeof group, "replay_%.100s", name);
    printf("replaying %zu files of %s\n", count, corpus_dir);
    int rc;
    if (count == 0) {
        const struct CMUnitTest none[] = {cmocka_unit_test(corpus_missing)};
        rc = _cmocka_run_group_tests(group, none, 1, NULL, NULL);
    } else {
        qsort(names, count, sizeof *names, by_name);
        struct CMUnitTest *tests = calloc(count, sizeof *tests);
        char **paths = calloc(count, sizeof *paths);
        if (!tests || !paths) { perror("replay"); return 1; }
        for (size_t i = 0; i < count; i++) {
            size_t plen = strlen(corpus_dir) + 1 + strlen(names[i]) + 1;
            paths[i] = malloc(plen);
            if (!paths[i]) { perror("replay"); return 1; }
            snprintf(paths[i], plen, "%s/%s", corpus_dir, names[i]);
            tests[i].name = names[i];
            tests[i].test_func = replay_file;
            tests[i].initial_state = paths[i];
        }
        rc = _cmocka_run_group_tests(group, tests, count, NULL, NULL);
        printf("replay_%s: peak RSS grew at most %ld KiB in one input (%s; limit %ld KiB)\n",
               name, max_growth_kib, max_growth_name[0] ? max_growth_name : "-",
               MAX_RSS_GROWTH_KIB);
        for (size_t i = 0; i < count; i++) free(paths[i]);
        free(paths);
        free(tests);
    }
    for (size_t i = 0; i < count; i++) free(names[i]);
    free(names);
    return rc;
}

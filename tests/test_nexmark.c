/*
 * test_nexmark.c — every Nexmark query runnel runs, checked against an
 * independent computation: `runnel-bench nexmark --generate` writes a seeded
 * corpus (people, auctions, bids), and tests/nexmark/oracle.py computes each
 * query marked "runs" by `runnel-bench nexmark --list` in plain Python from
 * the events read back with `runnel consume`, runs the same SQL with
 * `streamsql`, and compares the rows. A query that runs without a
 * computation to check it fails the test.
 *
 * Corpora vary between runs (RN_SEED replays one): one queue per topic and
 * several (rows of different queues interleave differently, and the
 * watermark is the slowest queue's), and event rates from one event per
 * second (sessions split, day windows cross midnight, every hour class of
 * q14 appears) to a thousand per second (sessions long, one day).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/util/util.h"

#define BENCH  RN_BIN_DIR "/runnel-bench"
#define PY     "/usr/bin/python3"
#define ORACLE RN_SOURCE_DIR "/tests/nexmark/oracle.py"

static uint64_t seed_state;

/* Generate a corpus (events, queues, rate) and check every query on it. */
static void check_corpus(uint64_t events, uint64_t queues, uint64_t rate)
{
    char *root = rn_test_tmpdir_new("nexmark");
    char data[PATH_MAX], out[PATH_MAX], err[PATH_MAX], ev[32], q[32], r[32], seed[32];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(err, sizeof err, "%s/err", root);
    snprintf(ev, sizeof ev, "%llu", (unsigned long long)events);
    snprintf(q, sizeof q, "%llu", (unsigned long long)queues);
    snprintf(r, sizeof r, "%llu", (unsigned long long)rate);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)(rn_test_rng(&seed_state) % 1000000));
    printf("nexmark: %s events, %s queue(s), %s events/s, generator seed %s\n", ev, q, r, seed);
    const char *gen[] = {BENCH, "nexmark", "--generate", data, "--events", ev, "--queues", q,
                         "--rate", r, "--seed", seed, NULL};
    int st = rn_test_run(BENCH, gen, NULL, out, err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *e = rn_test_slurp(err, NULL);
        fail_msg("runnel-bench nexmark --generate failed: %s", e);
    }
    const char *chk[] = {PY, ORACLE, RN_BIN_DIR, data, NULL};
    st = rn_test_run(PY, chk, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e = rn_test_slurp(err, NULL);
    printf("%s", o);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("a query differs from its computation (status %d):\n%s%s", st, o, e);
    assert_non_null(strstr(o, "q0: "));        /* the listing was read */
    free(o);
    free(e);
    rn_test_tmpdir_free(root);
}

static void t_one_queue_sparse(void **state)
{
    (void)state;
    check_corpus(20000, 1, 1);
}

static void t_three_queues_sparse(void **state)
{
    (void)state;
    check_corpus(20000, 3, 1 + rn_test_rng(&seed_state) % 20);
}

static void t_queues_dense(void **state)
{
    (void)state;
    check_corpus(30000, 1 + rn_test_rng(&seed_state) % 4, 100 + rn_test_rng(&seed_state) % 900);
}

/* Bad flags of the generator get one line and exit status 2. */
static void t_bad_flags(void **state)
{
    (void)state;
    char *root = rn_test_tmpdir_new("nexmark");
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(err, sizeof err, "%s/err", root);
    const char *bad[][6] = {
        {BENCH, "nexmark", "--query", "q99", NULL},
        {BENCH, "nexmark", "--query", "q4", NULL},
        {BENCH, "nexmark", "--queues", "0", NULL},
    };
    const char *want[] = {"unknown query 'q99'", "q4 does not run: it needs a join",
                          "--queues"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = rn_test_run(BENCH, bad[i], NULL, out, err);
        char *e = rn_test_slurp(err, NULL);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        if (!strstr(e, want[i])) fail_msg("case %zu: stderr %s lacks '%s'", i, e, want[i]);
        assert_int_equal(strchr(e, '\n') - e + 1, (long)strlen(e));   /* one line */
        free(e);
    }
    rn_test_tmpdir_free(root);
}

int main(void)
{
    seed_state = rn_test_seed("test_nexmark");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_one_queue_sparse),
        cmocka_unit_test(t_three_queues_sparse),
        cmocka_unit_test(t_queues_dense),
        cmocka_unit_test(t_bad_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

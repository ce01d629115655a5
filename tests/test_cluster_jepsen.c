/*
 * test_cluster_jepsen.c — the short form of the Jepsen-style harness
 * (tests/cluster/jepsen.py): three real runneld nodes with one replicated
 * topic, idempotent producers and a group consumer running, and a seeded
 * schedule of faults (kill -9 of a queue leader, of the controller leader,
 * of a follower; SIGSTOP/SIGCONT of a node; a node cut off from the others
 * and a non-transitive partition, in network namespaces when the machine
 * allows them: the harness prints why it skips them otherwise). The
 * harness's checker decides:
 * every acknowledged record present exactly once and in order on every
 * replica, no offset holding different records on two replicas, the
 * consumer's records a prefix of the log, committed group offsets never
 * going back. Its output (the fault schedule, the counts, any violation with
 * its seed) is printed; RN_SEED replays a schedule. `make cluster-test`
 * runs the long form.
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

#define PY      "/usr/bin/python3"
#define HARNESS RN_SOURCE_DIR "/tests/cluster/jepsen.py"

static void t_faults(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("jepsen schedule");
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)(rn_test_rng(&rng) % 1000000000));
    char *root = rn_test_tmpdir_new("jepsen");
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(err, sizeof err, "%s/err", root);
    const char *argv[] = {PY, HARNESS, "--bin", RN_BIN_DIR, "--seed", seed, "--faults", "5",
                          "--queues", "2", "--rate", "1000", NULL};
    int st = rn_test_run(PY, argv, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e = rn_test_slurp(err, NULL);
    printf("%s%s", o, e);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the harness found violations or failed (status %d, seed %s)", st, seed);
    assert_non_null(strstr(o, "jepsen: 1 trials, 0 with violations"));
    free(o);
    free(e);
    rn_test_tmpdir_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

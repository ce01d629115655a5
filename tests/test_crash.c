/*
 * test_crash.c — the short version of the storage crash loop, in `make test`.
 *
 * Scenario: for each fsync policy, a writer process appending under load is
 * SIGKILLed at random moments (a few trials), and the store is checked
 * against the writer's acknowledgements by tests/crash/crash.c (the
 * crash-test program, built next to this test as $(BUILD)/crash/crash-test);
 * then runneld itself is SIGKILLed under producer and consumer load over
 * gRPC and checked over Fetch (tests/crash/broker.c). Without a built
 * runneld the broker tests are skipped, visibly.
 *
 * Invariants (checked by crash-test, whose verdict this test reads):
 *  1. The program exits 0 and reports lost=0 and OK for the policy.
 *  2. It ran exactly the trials asked for and acknowledged records (a run
 *     that acknowledged nothing would prove nothing).
 * The seed is printed, and passed on, so a failure can be replayed with
 * `crash-test --policy P --seed S --trials N`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { TRIALS = 5 };

static uint64_t g_seed;

/* $(BUILD)/crash/crash-test, next to this test's own $(BUILD)/tests/. */
static void crash_bin(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    assert_non_null(slash);
    *slash = '\0';
    snprintf(out, cap, "%s/../crash/crash-test", self);
    if (access(out, X_OK) != 0) fail_msg("%s is missing: build it with make (the test depends on it)", out);
}

static void run(const char *policy, const char *extra, const char *marker)
{
    char bin[PATH_MAX + 32], cmd[2 * PATH_MAX + 256];
    crash_bin(bin, sizeof bin);
    snprintf(cmd, sizeof cmd, "%s --policy %s --trials %d --max-kill-ms 100 --seed %" PRIu64 " %s 2>&1",
             bin, policy, TRIALS, g_seed, extra);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024], verdict[1024] = "";
    for (int i = 0; i < 10000 && fgets(line, sizeof line, p); i++) {
        fputs(line, stdout);
        if (strstr(line, marker)) snprintf(verdict, sizeof verdict, "%s", line);
    }
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("crash-test failed for fsync=%s", policy);
    char want[64];
    snprintf(want, sizeof want, "trials=%d ", TRIALS);
    if (!strstr(verdict, want) || !strstr(verdict, "lost=0 ") || !strstr(verdict, " OK"))
        fail_msg("unexpected verdict for fsync=%s: %s", policy, verdict);
    long acked = 0;
    const char *a = strstr(verdict, "acked_records=");
    if (a) acked = strtol(a + 14, NULL, 10);
    if (acked <= 0) fail_msg("fsync=%s acknowledged nothing: %s", policy, verdict);
}

static void run_policy(const char *policy) { run(policy, "", "crash-test: fsync="); }

static void run_broker(const char *policy)
{
    const char *runneld = RN_BIN_DIR "/runneld";
    if (access(runneld, X_OK) != 0) {
        printf("SKIPPED: %s is not built (make builds it when server/ exists)\n", runneld);
        skip();
    }
    char extra[PATH_MAX + 64];
    snprintf(extra, sizeof extra, "--runneld %s --broker-only", runneld);
    run(policy, extra, "crash-test: runneld fsync=");
}

static void test_crash_always(void **state) { (void)state; run_policy("always"); }
static void test_crash_group(void **state) { (void)state; run_policy("group"); }
static void test_crash_interval(void **state) { (void)state; run_policy("interval:20"); }
static void test_crash_never(void **state) { (void)state; run_policy("never"); }
static void test_broker_always(void **state) { (void)state; run_broker("always"); }
static void test_broker_group(void **state) { (void)state; run_broker("group"); }
static void test_broker_interval(void **state) { (void)state; run_broker("interval:20"); }
static void test_broker_never(void **state) { (void)state; run_broker("never"); }

int main(void)
{
    g_seed = (uint64_t)time(NULL);
    printf("test_crash: seed %" PRIu64 "\n", g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_always),
        cmocka_unit_test(test_crash_group),
        cmocka_unit_test(test_crash_interval),
        cmocka_unit_test(test_crash_never),
        cmocka_unit_test(test_broker_always),
        cmocka_unit_test(test_broker_group),
        cmocka_unit_test(test_broker_interval),
        cmocka_unit_test(test_broker_never),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}

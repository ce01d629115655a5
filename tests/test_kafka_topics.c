/*
 * test_kafka_topics.c — CreateTopics and DeleteTopics through runneld's Kafka
 * front, driven by real admin clients: tests/kafka/topics.py runs
 * confluent-kafka's AdminClient (librdkafka) and kafka-python's
 * KafkaAdminClient against a real runneld on loopback (ephemeral ports
 * through --port-file). Covered: create, create an existing topic, invalid
 * names, refused replication factors, assignments and configs, validate_only,
 * delete then recreate (offset 0, no old records), delete of an unknown
 * topic, and auto-creation through Metadata with --kafka-auto-create-queues
 * 0 and 3; then `runnel topic describe` over gRPC sees the topics a Kafka
 * client created, and `runnel topic delete` removes one Kafka then misses;
 * raw frames the handlers must refuse (too many topics, truncated bodies, a
 * count past the frame) close the connection and change nothing, and a name
 * given twice is INVALID_REQUEST for both.
 *
 * Each script check prints a line; the script exits non-zero at the first
 * mismatch (a missing Python module fails too), which fails the test with
 * its output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util/util.h"

#define RUNNELD RN_BIN_DIR "/runneld"
#define RUNNEL  RN_BIN_DIR "/runnel"
#define PYTHON  "/usr/bin/python3"
#define SCRIPT  RN_SOURCE_DIR "/tests/kafka/topics.py"

typedef struct fixture {
    char  root[64];
    char  data[PATH_MAX], portfile[PATH_MAX], log[PATH_MAX];
    char  out[PATH_MAX], err[PATH_MAX];
    pid_t pid;
    char  grpc[64], kafka[64];          /* "127.0.0.1:PORT" */
    char *stdout_text, *stderr_text;
} fixture_t;

/* runneld with --kafka-listen and --kafka-auto-create-queues auto (NULL:
 * its default); both ports read from --port-file (gRPC, then Kafka). */
static void start(fixture_t *f, const char *auto_create)
{
    unlink(f->portfile);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *lf = freopen(f->log, "a", stderr);
        if (!lf || !freopen("/dev/null", "r", stdin) || dup2(fileno(stderr), 1) < 0) _exit(126);
        const char *argv[16] = {RUNNELD, "--data", f->data, "--listen", "127.0.0.1:0",
                                "--kafka-listen", "127.0.0.1:0", "--port-file", f->portfile,
                                "--fsync", "never"};
        int n = 11;
        if (getuid() == 0) argv[n++] = "--allow-root";   /* refused as root without it */
        if (auto_create) { argv[n++] = "--kafka-auto-create-queues"; argv[n++] = auto_create; }
        argv[n] = NULL;
        execv(RUNNELD, (char *const *)argv);
        _exit(127);
    }
    f->pid = pid;
    for (int i = 0; i < 1000; i++) {                    /* at most 10 s */
        FILE *fp = fopen(f->portfile, "r");
        int g = 0, k = 0;
        if (fp) {
            if (fscanf(fp, "%d %d", &g, &k) != 2) g = k = 0;
            fclose(fp);
        }
        if (g > 0 && k > 0) {
            snprintf(f->grpc, sizeof f->grpc, "127.0.0.1:%d", g);
            snprintf(f->kafka, sizeof f->kafka, "127.0.0.1:%d", k);
            return;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->pid = 0;
            fail_msg("runneld exited before listening; see %s", f->log);
        }
        rn_test_sleep_ms(10);
    }
    fail_msg("runneld wrote no gRPC and Kafka ports to %s within 10 s", f->portfile);
}

/* SIGTERM; runneld must exit 0 within 20 s. */
static void stop(fixture_t *f)
{
    if (f->pid <= 0) return;
    kill(f->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
            f->pid = 0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("runneld ended with status 0x%x; see %s", status, f->log);
            return;
        }
        rn_test_sleep_ms(10);
    }
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
    f->pid = 0;
    fail_msg("runneld did not stop within 20 s of SIGTERM; see %s", f->log);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "kafka_topics") != 0) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->portfile, sizeof f->portfile, "%s/port", f->root);
    snprintf(f->log, sizeof f->log, "%s/runneld.log", f->root);
    snprintf(f->out, sizeof f->out, "%s/out", f->root);
    snprintf(f->err, sizeof f->err, "%s/err", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    free(f->stdout_text);
    free(f->stderr_text);
    int rc = rn_test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Run prog argv; its exit status (stdout and stderr kept in f). */
static int run(fixture_t *f, const char *prog, const char *const *argv)
{
    int status = rn_test_run(prog, argv, NULL, f->out, f->err);
    if (status < 0) fail_msg("could not run %s", prog);
    free(f->stdout_text);
    free(f->stderr_text);
    f->stdout_text = rn_test_slurp(f->out, NULL);
    f->stderr_text = rn_test_slurp(f->err, NULL);
    if (!WIFEXITED(status)) fail_msg("%s died (status 0x%x)", prog, status);
    return WEXITSTATUS(status);
}

/* topics.py MODE KAFKA [ARG]: it must print its checks and pass. */
static void script(fixture_t *f, const char *mode, const char *arg)
{
    const char *argv[] = {PYTHON, SCRIPT, mode, f->kafka, arg, NULL};
    int rc = run(f, PYTHON, argv);
    printf("%s", f->stdout_text);
    if (rc != 0)
        fail_msg("topics.py %s exited %d:\n%s\nstderr:\n%s", mode, rc, f->stdout_text,
                 f->stderr_text);
    assert_non_null(strstr(f->stdout_text, "all passed"));
}

static void runnel_ok(fixture_t *f, const char *a, const char *b, const char *c)
{
    const char *argv[] = {RUNNEL, "--server", f->grpc, a, b, c, NULL};
    int rc = run(f, RUNNEL, argv);
    if (rc != 0) fail_msg("runnel %s %s %s exited %d: %s", a, b, c, rc, f->stderr_text);
}

static void test_admin_clients(void **state)
{
    fixture_t *f = *state;
    start(f, NULL);
    script(f, "confluent", NULL);
    script(f, "kafkapython", NULL);
    script(f, "hostile", NULL);

    /* Topics a Kafka client created are runnel topics. */
    runnel_ok(f, "topic", "describe", "k3");
    assert_non_null(strstr(f->stdout_text, "topic k3: 3 queues"));
    runnel_ok(f, "topic", "describe", "py1");
    assert_non_null(strstr(f->stdout_text, "topic py1: 1 queue"));
    /* The recreated dr: 2 queues, queue 0 holding offsets [0, 1). */
    runnel_ok(f, "topic", "describe", "dr");
    assert_non_null(strstr(f->stdout_text, "topic dr: 2 queues"));
    runnel_ok(f, "topic", "delete", "k3");
    assert_string_equal(f->stdout_text, "deleted topic 'k3'\n");
    const char *argv[] = {RUNNEL, "--server", f->grpc, "topic", "describe", "k3", NULL};
    assert_int_equal(run(f, RUNNEL, argv), 1);
    assert_non_null(strstr(f->stderr_text, "unknown topic 'k3'"));
    stop(f);
}

static void test_auto_create_off(void **state)
{
    fixture_t *f = *state;
    start(f, "0");
    script(f, "auto", "0");
    stop(f);
}

static void test_auto_create_three(void **state)
{
    fixture_t *f = *state;
    start(f, "3");
    script(f, "auto", "3");
    runnel_ok(f, "topic", "describe", "auto-yes");
    assert_non_null(strstr(f->stdout_text, "topic auto-yes: 3 queues"));
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_admin_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_create_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_create_three, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_kafka_cluster_groups.c — Kafka consumer groups on a three-node
 * cluster: real runneld x3 on loopback (--node-id, --cluster,
 * --kafka-listen), driven by confluent-kafka (librdkafka) group consumers in
 * tests/kafka/cluster_groups.py, which checks that every node names the same
 * coordinator for a group, that other nodes answer NOT_COORDINATOR, that a
 * committed offset is on every node, and that after kill -9 of a node a new
 * consumer of the group resumes at exactly the committed offsets, reading
 * every later record once. Two cases, each on its own fresh cluster:
 *
 *   coordinator  the group's coordinator is killed
 *   controller   the controller leader (not the group's coordinator) is
 *                killed: the commits it took from the coordinator are
 *                committed raft entries, held by the survivors
 *
 * Invariants of this file: every wait is bounded (the script's own, and
 * SCRIPT_S around it); the nodes' logs are printed when a check fails;
 * exactly one node is found killed after each case.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#define NODES    3
#define PY       "/usr/bin/python3"
#define SCRIPT   RN_SOURCE_DIR "/tests/kafka/cluster_groups.py"
#define SCRIPT_S 60

typedef struct kcl {
    srv_t *n[NODES];
    char   spec[256];
    char   idtext[NODES][16];
    char   kafka[NODES][64], grpc[NODES][64];
    char   out[PATH_MAX], err[PATH_MAX];
} kcl_t;

static kcl_t *g;

static void print_logs(void)
{
    for (int i = 0; i < NODES; i++)
        if (g->n[i]) srv_print_log(g->n[i]);
}

/* The Kafka port: the port file's second line. */
static int kafka_port(const srv_t *s)
{
    FILE *f = fopen(s->portf, "r");
    int a = 0, k = 0;
    if (f) {
        if (fscanf(f, "%d %d", &a, &k) != 2) k = 0;
        fclose(f);
    }
    return k;
}

static void addrs(int i)
{
    int kp = kafka_port(g->n[i]);
    assert_true(kp > 0);
    snprintf(g->kafka[i], sizeof g->kafka[i], "127.0.0.1:%d", kp);
    snprintf(g->grpc[i], sizeof g->grpc[i], "127.0.0.1:%d", g->n[i]->port);
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    if (!g) return -1;
    size_t off = 0;
    for (int i = 0; i < NODES; i++)
        off += (size_t)snprintf(g->spec + off, sizeof g->spec - off, "%s%d=127.0.0.1:%d",
                                i ? "," : "", i + 1, free_port());
    for (int i = 0; i < NODES; i++) {
        snprintf(g->idtext[i], sizeof g->idtext[i], "%d", i + 1);
        const char *extra[] = {"--node-id", g->idtext[i], "--cluster", g->spec,
                               "--kafka-listen", "127.0.0.1:0", NULL};
        g->n[i] = srv_alloc("group", SRV_MAX_BATCH, extra);
        if (!g->n[i]) return -1;
    }
    for (int i = 0; i < NODES; i++) {
        srv_start(g->n[i]);
        addrs(i);
    }
    snprintf(g->out, sizeof g->out, "%s/script.out", g->n[0]->root);
    snprintf(g->err, sizeof g->err, "%s/script.err", g->n[0]->root);
    printf("cluster: %s\n", g->spec);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    for (int i = 0; i < NODES; i++) {
        void *s = g->n[i];
        if (s && srv_teardown(&s) != 0) rc = -1;
    }
    free(g);
    return rc;
}

static void print_file(const char *what, const char *path)
{
    char *t = rn_test_slurp(path, NULL);
    fprintf(stderr, "---- %s ----\n%s", what, t ? t : "");
    free(t);
}

/* Run argv bounded by SCRIPT_S; 0 when it exited 0 (its output printed
 * either way when it did not). */
static int run(const char *const *argv)
{
    const char *t[32] = {"timeout", "-k", "5", NULL};
    char secs[16];
    snprintf(secs, sizeof secs, "%d", SCRIPT_S);
    t[3] = secs;
    int n = 4;
    for (int i = 0; argv[i] && n < 31; i++) t[n++] = argv[i];
    t[n] = NULL;
    int st = rn_test_run("/usr/bin/timeout", t, NULL, g->out, g->err);
    char *o = rn_test_slurp(g->out, NULL);
    if (o) fputs(o, stdout);
    free(o);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    print_file("stderr", g->err);
    print_logs();
    return -1;
}

/* The script's case; then the node it killed (found dead here) is reaped,
 * so teardown stops only the others. */
static void run_case(const char *kill)
{
    char kafka[256], grpc[256], pids[128];
    snprintf(kafka, sizeof kafka, "%s,%s,%s", g->kafka[0], g->kafka[1], g->kafka[2]);
    snprintf(grpc, sizeof grpc, "%s,%s,%s", g->grpc[0], g->grpc[1], g->grpc[2]);
    snprintf(pids, sizeof pids, "%d,%d,%d", (int)g->n[0]->pid, (int)g->n[1]->pid,
             (int)g->n[2]->pid);
    const char *argv[] = {PY, SCRIPT, "--kafka", kafka, "--grpc", grpc, "--pids", pids,
                          "--runnel", RN_BIN_DIR "/runnel", "--topic", "kg", "--kill", kill,
                          NULL};
    int rc = run(argv);
    int dead = 0;
    for (int i = 0; i < NODES; i++) {
        int st;
        if (waitpid(g->n[i]->pid, &st, WNOHANG) == g->n[i]->pid) {
            assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
            g->n[i]->pid = 0;
            rn_rpc_close(g->n[i]->rpc);
            g->n[i]->rpc = NULL;
            dead++;
        }
    }
    if (rc != 0) fail_msg("tests/kafka/cluster_groups.py --kill %s failed", kill);
    assert_int_equal(dead, 1);
}

static void test_kill_coordinator(void **state)
{
    (void)state;
    run_case("coordinator");
}

static void test_kill_controller(void **state)
{
    (void)state;
    run_case("controller");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_coordinator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_controller, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

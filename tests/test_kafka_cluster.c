/*
 * test_kafka_cluster.c — the Kafka front of a three-node cluster: real
 * runneld x3 on loopback (--node-id, --cluster, --kafka-listen), driven by
 * real clients from Debian (confluent-kafka / librdkafka, kcat,
 * kafka-python) in tests/kafka/cluster.py, which checks:
 *
 *   metadata   every node's Metadata names the nodes' Kafka addresses, the
 *              controller leader, and per partition the leader, replicas
 *              and ISR `runnel cluster status --format json` shows
 *   admin      AdminClient.create_topics makes a replicated topic (2 x 3
 *              replicas); replication factor 5 is INVALID_REPLICATION_FACTOR
 *   follower   Produce (acks -1 and 1) and Fetch sent to a follower answer
 *              NOT_LEADER_OR_FOLLOWER (6) and store nothing
 *   hwm        followers stopped: acks 1 answered but invisible to Fetch,
 *              acks -1 waits until they run again; a Metadata pipelined
 *              behind it answers as of when it leaves
 *   failover   an idempotent confluent-kafka producer (acks all, bootstrap
 *              list of the three nodes) sends while the leader of partition
 *              0 is killed with kill -9; every acknowledged record is read
 *              back through the surviving nodes exactly once, at its
 *              offset, in order (confluent-kafka, kcat, kafka-python)
 *
 * Then here: the killed node starts again and every node's Metadata lists
 * it as a broker again (it registers its Kafka address again).
 *
 * Invariants of this file: every wait is bounded (the script's own, and
 * SCRIPT_S around it); the nodes' logs are printed when a check fails.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include "common/bytes.h"

#define NODES    3
#define PY       "/usr/bin/python3"
#define SCRIPT   RN_SOURCE_DIR "/tests/kafka/cluster.py"
#define SCRIPT_S 90

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
        /* --replica-lag-ms 5000: followers stopped for the hwm check (about
         * 1.5 s) stay in the ISR, whatever the machine's load; a dead node
         * still leaves every ISR when it is fenced (1.5 s). */
        const char *extra[] = {"--node-id", g->idtext[i], "--cluster", g->spec,
                               "--kafka-listen", "127.0.0.1:0", "--replica-lag-ms", "5000",
                               NULL};
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

/* The script's checks; then the node it killed (found dead here) is
 * reaped, so teardown stops only the others. */
static void test_clients(void **state)
{
    (void)state;
    char kafka[256], grpc[256], pids[128];
    snprintf(kafka, sizeof kafka, "%s,%s,%s", g->kafka[0], g->kafka[1], g->kafka[2]);
    snprintf(grpc, sizeof grpc, "%s,%s,%s", g->grpc[0], g->grpc[1], g->grpc[2]);
    snprintf(pids, sizeof pids, "%d,%d,%d", (int)g->n[0]->pid, (int)g->n[1]->pid,
             (int)g->n[2]->pid);
    const char *argv[] = {PY, SCRIPT, "--kafka", kafka, "--grpc", grpc, "--pids", pids,
                          "--runnel", RN_BIN_DIR "/runnel", "--topic", "kc", NULL};
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
    if (rc != 0) fail_msg("tests/kafka/cluster.py failed");
    assert_int_equal(dead, 1);
}

/* Metadata v1 of no topic from addr: the broker ids listed (a bit each). */
static unsigned brokers_of(const char *addr)
{
    int port = atoi(strrchr(addr, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned ids = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        /* size | api 3 | v1 | corr 9 | client id "t" | topics: [] */
        uint8_t req[] = {0, 0, 0, 15, 0, 3, 0, 1, 0, 0, 0, 9, 0, 1, 't', 0, 0, 0, 0};
        uint8_t resp[4096];
        size_t got = 0;
        if (write(fd, req, sizeof req) == (ssize_t)sizeof req) {
            ssize_t r;
            while (got < sizeof resp && (r = read(fd, resp + got, sizeof resp - got)) > 0) {
                got += (size_t)r;
                if (got >= 4 && got >= 4 + (size_t)rn_be32_get(resp)) break;
            }
        }
        /* size, corr, then brokers: [id i32 | host str | port i32 | rack str] */
        if (got >= 12) {
            size_t p = 8;
            int32_t nb = (int32_t)rn_be32_get(resp + p);
            p += 4;
            for (int32_t i = 0; i < nb && p + 4 <= got; i++) {
                int32_t id = (int32_t)rn_be32_get(resp + p);
                p += 4;
                p += 2 + rn_be16_get(resp + p) + 4;                  /* host, port */
                int16_t rl = (int16_t)rn_be16_get(resp + p);
                p += 2 + (rl > 0 ? (size_t)rl : 0);
                if (id > 0 && id <= NODES) ids |= 1u << (id - 1);
            }
        }
    }
    close(fd);
    return ids;
}

/* The killed node starts again: it registers its Kafka address again, and
 * every node's Metadata lists all three brokers within the wait. */
static void test_restart(void **state)
{
    (void)state;
    int i = 0;
    while (i < NODES && g->n[i]->pid != 0) i++;
    if (i == NODES) fail_msg("no node was killed (test_clients did not get that far)");
    srv_start(g->n[i]);
    addrs(i);
    int64_t t0 = (int64_t)(rn_mono_ns() / 1000000u);
    for (int k = 0; k < NODES; k++) {
        while (brokers_of(g->kafka[k]) != (1u << NODES) - 1) {
            if ((int64_t)(rn_mono_ns() / 1000000u) - t0 > 20000) {
                print_logs();
                fail_msg("node %d's Metadata lists brokers %#x, not all three, 20 s after "
                         "node %d restarted", k + 1, brokers_of(g->kafka[k]), i + 1);
            }
            rn_test_sleep_ms(50);
        }
    }
    printf("ok: node %d restarted; every node's Metadata lists the three brokers again\n",
           i + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clients),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

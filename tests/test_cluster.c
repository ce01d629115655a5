/*
 * test_cluster.c — the cluster controller (cluster/) with three real runneld
 * nodes on loopback: raft ports picked free here and passed in --cluster,
 * client ports ephemeral (--port-file). The tests run in order and share the
 * three nodes:
 *
 *   elect      the nodes elect a controller leader; `runnel cluster status`
 *              on each node (text and --format json) agrees on it and shows
 *              all three registered (their real client ports) and live
 *   failover   kill -9 of the controller leader: the two others elect a new
 *              one (the time is measured and printed) and then fence the
 *              dead node (not live), also timed
 *   rejoin     the killed node restarts (a new client port): it is live
 *              again, with its new address and incarnation 2
 *   restart    SIGTERM of all three (each must exit 0), then all three
 *              start again: the registrations survived (each incarnation
 *              is one more than before), through raft snapshots
 *              (--cluster-snapshot-entries 4) and the log
 *
 * Beside them, without the shared nodes: a single-node broker's `cluster
 * status` says it is not in a cluster (exit 0), bad --cluster flags stop
 * runneld with exit 2 and one line naming the problem, and a raft address
 * already taken stops it with exit 1 before its port file appears.
 *
 * Every wait is bounded (WAIT_MS); a node's log is printed when a check
 * about it fails.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include "common/json.h"

#define NODES   3
#define WAIT_MS 20000
#define FAILOVER_LIMIT_MS 10000

typedef struct cluster {
    srv_t *n[NODES];
    int    raft_port[NODES];
    char   spec[256];
    char   idtext[NODES][16];
    char   work[64];
} cluster_t;

static cluster_t *g;

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static void print_logs(void)
{
    for (int i = 0; i < NODES; i++)
        if (g->n[i]) srv_print_log(g->n[i]);
}

/* ClusterStatus of node i (0-based) through its own connection; NULL when
 * it did not answer. Free with protobuf_c_message_free_unpacked. */
static Runnel__V1__ClusterStatusResponse *status_of(int i)
{
    srv_t *s = g->n[i];
    if (!s->rpc) return NULL;
    Runnel__V1__ClusterStatusRequest req;
    runnel__v1__cluster_status_request__init(&req);
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(s->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                    &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL, err) != 0)
        return NULL;
    return (Runnel__V1__ClusterStatusResponse *)m;
}

static void status_free(Runnel__V1__ClusterStatusResponse *r)
{
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
}

static const Runnel__V1__ClusterNode *node_in(const Runnel__V1__ClusterStatusResponse *r,
                                              uint64_t id)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i]->id == id) return r->nodes[i];
    return NULL;
}

/* 1 when every node in `up` (a bit per node index) answers, all name the
 * same leader (one of `up`), and each node's liveness is as `up` says, with
 * the live ones registered at their current client port. *leader gets the
 * leader's id. */
static int agreed(unsigned up, uint64_t *leader)
{
    uint64_t l = 0;
    for (int i = 0; i < NODES; i++) {
        if (!(up & (1u << i))) continue;
        Runnel__V1__ClusterStatusResponse *r = status_of(i);
        int ok = r && r->clustered && r->leader_id != 0 && (l == 0 || r->leader_id == l) &&
                 (up & (1u << (r->leader_id - 1))) && r->n_nodes == NODES;
        for (int j = 0; ok && j < NODES; j++) {
            const Runnel__V1__ClusterNode *n = node_in(r, (uint64_t)j + 1);
            char want[32];
            snprintf(want, sizeof want, "127.0.0.1:%d", g->n[j]->port);
            int live = (up >> j) & 1;
            ok = n && n->live == live && (!live || !strcmp(n->client_address, want));
        }
        if (ok) l = r->leader_id;
        status_free(r);
        if (!ok) return 0;
    }
    *leader = l;
    return 1;
}

static uint64_t wait_agreed(unsigned up, const char *what)
{
    uint64_t l = 0;
    int64_t t0 = now_ms();
    while (!agreed(up, &l)) {
        if (now_ms() - t0 > WAIT_MS) {
            print_logs();
            fail_msg("%s: the nodes did not agree within %d ms", what, WAIT_MS);
        }
        rn_test_sleep_ms(20);
    }
    return l;
}

/* `runnel --server node cluster status ARGS`: exit status and stdout. */
static char *cli_status(int i, const char *format, int *code)
{
    char target[32], out[128], errf[128];
    snprintf(target, sizeof target, "127.0.0.1:%d", g->n[i]->port);
    snprintf(out, sizeof out, "%s/out", g->work);
    snprintf(errf, sizeof errf, "%s/err", g->work);
    const char *argv[] = {"runnel", "--server", target, "cluster", "status", "--format", format,
                          NULL};
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, errf);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (*code != 0) {
        char *e = rn_test_slurp(errf, NULL);
        fprintf(stderr, "runnel cluster status: %s", e);
        free(e);
    }
    return rn_test_slurp(out, NULL);
}

/* A number member of the JSON object line[0..len). */
static long long json_num(const char *line, size_t len, const char *field)
{
    rn_buf_t b;
    memset(&b, 0, sizeof b);
    int isnum = 0;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_json_field(line, len, field, &b, &isnum, err), 0);
    assert_true(isnum);
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.*s", (int)b.len, (const char *)b.data);
    rn_buf_free(&b);
    return atoll(tmp);
}

static void start_node(int i)
{
    srv_start(g->n[i]);
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    if (!g) return -1;
    snprintf(g->work, sizeof g->work, "/tmp/rn-cluster-XXXXXX");
    if (!mkdtemp(g->work)) return -1;
    size_t off = 0;
    for (int i = 0; i < NODES; i++) {
        g->raft_port[i] = free_port();
        off += (size_t)snprintf(g->spec + off, sizeof g->spec - off, "%s%d=127.0.0.1:%d",
                                i ? "," : "", i + 1, g->raft_port[i]);
    }
    for (int i = 0; i < NODES; i++) {
        snprintf(g->idtext[i], sizeof g->idtext[i], "%d", i + 1);
        const char *extra[] = {"--node-id", g->idtext[i], "--cluster", g->spec,
                               "--cluster-snapshot-entries", "4", NULL};
        g->n[i] = srv_alloc("group", SRV_MAX_BATCH, extra);
        if (!g->n[i]) return -1;
    }
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
    rn_test_rmtree(g->work);
    free(g);
    return rc;
}

/* The nodes elect a leader; status on each, through the CLI, agrees. */
static void test_elect(void **state)
{
    (void)state;
    int64_t t0 = now_ms();
    for (int i = 0; i < NODES; i++) start_node(i);
    uint64_t l = wait_agreed(7, "elect");
    printf("elect: node %llu leads, all three live, %lld ms after the starts\n",
           (unsigned long long)l, (long long)(now_ms() - t0));
    for (int i = 0; i < NODES; i++) {
        int code;
        char *out = cli_status(i, "json", &code);
        assert_int_equal(code, 0);
        /* one controller line, then one line per node */
        char *line = out, *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_int_equal(json_num(line, (size_t)(nl - line), "leader"), (long long)l);
        assert_int_equal(json_num(line, (size_t)(nl - line), "answered_by"), i + 1);
        int nodes = 0;
        for (line = nl + 1; *line; line = nl + 1) {
            nl = strchr(line, '\n');
            assert_non_null(nl);
            assert_int_equal(json_num(line, (size_t)(nl - line), "node"), nodes + 1);
            assert_non_null(strstr(line, "\"live\":true"));
            nodes++;
        }
        assert_int_equal(nodes, NODES);
        free(out);
        out = cli_status(i, "text", &code);
        assert_int_equal(code, 0);
        char want[64];
        snprintf(want, sizeof want, "controller leader: node %llu", (unsigned long long)l);
        assert_non_null(strstr(out, want));
        free(out);
    }
}

/* kill -9 of the controller leader: a new leader, then the dead node fenced. */
static void test_failover(void **state)
{
    (void)state;
    uint64_t l = wait_agreed(7, "before failover");
    int dead = (int)l - 1;
    rn_rpc_close(g->n[dead]->rpc);
    g->n[dead]->rpc = NULL;
    int64_t t0 = now_ms();
    assert_int_equal(srv_kill_wait(g->n[dead], SIGKILL), 128 + SIGKILL);
    unsigned up = 7u & ~(1u << dead);
    /* a new leader both survivors agree on */
    uint64_t nl = 0;
    int64_t elected = -1;
    while (elected < 0) {
        uint64_t seen[NODES] = {0};
        int ok = 1;
        for (int i = 0; i < NODES; i++) {
            if (i == dead) continue;
            Runnel__V1__ClusterStatusResponse *r = status_of(i);
            seen[i] = r ? r->leader_id : 0;
            status_free(r);
            ok = ok && seen[i] != 0 && seen[i] != l;
            if (ok) nl = seen[i];
        }
        for (int i = 0; ok && i < NODES; i++)
            if (i != dead && seen[i] != nl) ok = 0;
        if (ok) elected = now_ms() - t0;
        else if (now_ms() - t0 > WAIT_MS) {
            print_logs();
            fail_msg("no new controller leader %d ms after node %llu was killed", WAIT_MS,
                     (unsigned long long)l);
        } else {
            rn_test_sleep_ms(10);
        }
    }
    uint64_t l2 = wait_agreed(up, "fence the dead node");
    int64_t fenced = now_ms() - t0;
    assert_int_equal(l2, nl);
    printf("failover: node %llu killed (kill -9); node %llu elected after %lld ms; node %llu "
           "shown not live after %lld ms\n", (unsigned long long)l, (unsigned long long)nl,
           (long long)elected, (unsigned long long)l, (long long)fenced);
    assert_true(elected < FAILOVER_LIMIT_MS);
}

/* The killed node restarts and is live again at its new address. */
static void test_rejoin(void **state)
{
    (void)state;
    int dead = -1;
    for (int i = 0; i < NODES; i++)
        if (g->n[i]->pid <= 0) dead = i;
    assert_true(dead >= 0);
    int64_t t0 = now_ms();
    start_node(dead);
    uint64_t l = wait_agreed(7, "rejoin");
    printf("rejoin: node %d live again after %lld ms (leader %llu)\n", dead + 1,
           (long long)(now_ms() - t0), (unsigned long long)l);
    Runnel__V1__ClusterStatusResponse *r = status_of(dead);
    assert_non_null(r);
    for (int i = 0; i < NODES; i++)
        assert_int_equal(node_in(r, (uint64_t)i + 1)->incarnation, i == dead ? 2 : 1);
    status_free(r);
}

/* All three stop cleanly and start again: the registrations survive. */
static void test_restart_all(void **state)
{
    (void)state;
    wait_agreed(7, "before the restart");
    uint64_t inc[NODES];
    Runnel__V1__ClusterStatusResponse *r = status_of(0);
    assert_non_null(r);
    for (int i = 0; i < NODES; i++) inc[i] = node_in(r, (uint64_t)i + 1)->incarnation;
    printf("restart: commit index %llu before\n", (unsigned long long)r->commit_index);
    status_free(r);
    for (int i = 0; i < NODES; i++) srv_stop(g->n[i]);
    /* a snapshot was written (--cluster-snapshot-entries 4) */
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/raft", g->n[0]->data);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q '^snapshot-'", path);
    assert_int_equal(system(cmd), 0);
    int64_t t0 = now_ms();
    for (int i = 0; i < NODES; i++) start_node(i);
    uint64_t l = wait_agreed(7, "after the restart");
    printf("restart: node %llu leads, all three live, %lld ms after the starts\n",
           (unsigned long long)l, (long long)(now_ms() - t0));
    for (int i = 0; i < NODES; i++) {
        r = status_of(i);
        assert_non_null(r);
        for (int j = 0; j < NODES; j++)
            assert_int_equal(node_in(r, (uint64_t)j + 1)->incarnation, inc[j] + 1);
        status_free(r);
    }
}

/* A single-node broker: `cluster status` says so, exit 0. */
static void test_single_node(void **state)
{
    (void)state;
    srv_t *s = srv_alloc("group", SRV_MAX_BATCH, NULL);
    assert_non_null(s);
    srv_start(s);
    char target[32], out[PATH_MAX], errf[PATH_MAX];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    snprintf(out, sizeof out, "%s/out", s->root);
    snprintf(errf, sizeof errf, "%s/err", s->root);
    const char *argv[] = {"runnel", "--server", target, "cluster", "status", NULL, NULL, NULL};
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, errf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *text = rn_test_slurp(out, NULL);
    assert_non_null(strstr(text, "not in a cluster"));
    free(text);
    argv[5] = "--format";
    argv[6] = "json";
    st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, errf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    text = rn_test_slurp(out, NULL);
    assert_string_equal(text, "{\"kind\":\"controller\",\"clustered\":false}\n");
    free(text);
    void *p = s;
    assert_int_equal(srv_teardown(&p), 0);
}

/* Bad cluster flags: exit 2, one line naming the problem, nothing created. */
static void test_bad_flags(void **state)
{
    (void)state;
    static const struct {
        const char *id, *spec, *want;
    } cases[] = {
        {"4", "1=127.0.0.1:9001,2=127.0.0.1:9002", "--node-id 4 is not one of the ids"},
        {"1", "1=127.0.0.1:9001,1=127.0.0.1:9002", "node id 1 appears twice"},
        {"1", "1=127.0.0.1:9001,2=127.0.0.1:9001", "have the same address 127.0.0.1:9001"},
        {"1", "1=127.0.0.1:99999", "a port is 1 to 65535"},
        {"1", "1=127.0.0.1", "node 1:"},
        {"1", "1:127.0.0.1:9001", "is not ID=HOST:PORT"},
        {"0", "1=127.0.0.1:9001", "--node-id: '0' is not a node id"},
        {"1", "1=127.0.0.1:9001,", "entry 2 '' is not ID=HOST:PORT"},
        {"1", NULL, "--node-id and --cluster go together"},
    };
    char data[128], out[128], errf[128];
    snprintf(data, sizeof data, "%s/never", g->work);
    snprintf(out, sizeof out, "%s/out", g->work);
    snprintf(errf, sizeof errf, "%s/err", g->work);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *argv[12] = {"runneld", "--data", data, "--listen", "127.0.0.1:0",
                                "--allow-root", "--node-id", cases[k].id};
        int n = 8;
        if (cases[k].spec) {
            argv[n++] = "--cluster";
            argv[n++] = cases[k].spec;
        }
        argv[n] = NULL;
        int st = rn_test_run(RN_BIN_DIR "/runneld", argv, NULL, out, errf);
        char *e = rn_test_slurp(errf, NULL);
        if (!strstr(e, cases[k].want) || !WIFEXITED(st) || WEXITSTATUS(st) != 2)
            fail_msg("case %zu: status %d, stderr '%s', wanted '%s'", k, st, e, cases[k].want);
        assert_int_equal(strchr(e, '\n') - e + 1, (long)strlen(e));     /* one line */
        free(e);
        struct stat sb;
        assert_int_not_equal(stat(data, &sb), 0);
    }
}

/* The node's raft address is taken: runneld says so and exits 1, never
 * writing its port file. */
static void test_raft_port_busy(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    char spec[96], data[128], portf[128], out[128], errf[128], want[96];
    snprintf(spec, sizeof spec, "1=127.0.0.1:%d,2=127.0.0.1:%d", ntohs(a.sin_port),
             g->raft_port[1]);
    snprintf(data, sizeof data, "%s/busy", g->work);
    snprintf(portf, sizeof portf, "%s/busy.port", g->work);
    snprintf(out, sizeof out, "%s/out", g->work);
    snprintf(errf, sizeof errf, "%s/err", g->work);
    const char *argv[] = {"runneld", "--data", data, "--listen", "127.0.0.1:0", "--allow-root",
                          "--port-file", portf, "--node-id", "1", "--cluster", spec, NULL};
    int st = rn_test_run(RN_BIN_DIR "/runneld", argv, NULL, out, errf);
    close(fd);
    char *e = rn_test_slurp(errf, NULL);
    snprintf(want, sizeof want, "cannot start raft on 127.0.0.1:%d", ntohs(a.sin_port));
    if (!strstr(e, want) || !WIFEXITED(st) || WEXITSTATUS(st) != 1)
        fail_msg("status %d, stderr '%s', wanted exit 1 and '%s'", st, e, want);
    free(e);
    struct stat sb;
    assert_int_not_equal(stat(portf, &sb), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_raft_port_busy),
        cmocka_unit_test(test_elect),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_rejoin),
        cmocka_unit_test(test_restart_all),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_cluster_members.c — membership changes (`runnel cluster add|remove`,
 * runneld --join, the ClusterChange RPC) with real runneld nodes on
 * loopback. The tests run in order and share the nodes:
 *
 *   add        nodes 1-3 bootstrap a cluster; node 4 starts with --join and
 *              is no member (its status knows no leader); `cluster add` sent
 *              to a node that is not the controller leader (passed on)
 *              makes it a voter: every node then lists 4 nodes, node 4 a
 *              live voter at its client address, and node 4 knows the leader
 *   replicas   a topic of 4 queues made after the add puts replicas and one
 *              queue's leadership on node 4; records produced to that
 *              queue through the bootstrap list are read back in order
 *   restart    node 4 restarted (still --join) resumes from its raft state:
 *              a live voter again, at its new client port
 *   refused    adding a member again, a raft address another node has, bad
 *              arguments (exit 2), removing a node with replicas, an unknown
 *              node and the controller leader itself: each exit 1 with one
 *              line saying why, and the membership unchanged
 *   reassign   every queue of t moves off a node (queue reassign --wait),
 *              one while a producer writes through the move: every record
 *              once, in order; the node, now without replicas, is removed;
 *              each refusal (unknown topic or queue, a node that is not a
 *              live member, a node twice, no --replicas) with one line
 *   grow       topic alter of the replicated topic through a follower: the
 *              new queues on live members, made on every one, written and
 *              read back; shrinking or more than 64 queues refused
 *   drop       topic delete of a replicated topic through a follower while
 *              node 4 is down: gone everywhere, on node 4 once it is back
 *              (a tombstone); made again it starts empty at offset 0
 *   remove     node 5 joins, is added, then removed: it shows as "removed",
 *              is no longer live, and a topic made afterwards has no
 *              replica on it
 *   unstarted  adding a node that does not run fails (exit 1, "stays a
 *              spare"), it shows as a spare, and it can be removed again
 *
 * A single-node broker refuses `cluster add` (not in a cluster).
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#define NODES   5
#define WAIT_MS 20000

typedef struct members {
    srv_t *n[NODES];
    int    raft_port[NODES + 1];
    char   spec[256], own[NODES][64];
    char   idtext[NODES][16];
    char   work[64];
    int    gone;              /* the index of the node test_reassign removed; -1 none */
} members_t;

static members_t *g;

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static int rn_fsm_has_id(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

static void print_logs(void)
{
    for (int i = 0; i < NODES; i++)
        if (g->n[i] && g->n[i]->pid > 0) srv_print_log(g->n[i]);
}

/* `runnel ARGS...` (NULL-terminated): exit code; *out and *err (freed by
 * the caller) get its output. */
static int cli(char **out, char **err, const char *const *args)
{
    const char *argv[24] = {"runnel"};
    int argc = 1;
    for (int i = 0; args[i] && argc < 23; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    char o[128], e[128];
    snprintf(o, sizeof o, "%s/out", g->work);
    snprintf(e, sizeof e, "%s/err", g->work);
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, o, e);
    *out = rn_test_slurp(o, NULL);
    *err = rn_test_slurp(e, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *addr_of(int i)
{
    static char a[NODES][32];
    snprintf(a[i], sizeof a[i], "127.0.0.1:%d", g->n[i]->port);
    return a[i];
}

static Runnel__V1__ClusterStatusResponse *status_of(int i)
{
    if (!g->n[i]->rpc) return NULL;
    Runnel__V1__ClusterStatusRequest req;
    runnel__v1__cluster_status_request__init(&req);
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                    &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL, err) != 0)
        return NULL;
    return (Runnel__V1__ClusterStatusResponse *)m;
}

static const Runnel__V1__ClusterNode *node_in(const Runnel__V1__ClusterStatusResponse *r,
                                              uint64_t id)
{
    for (size_t i = 0; r && i < r->n_nodes; i++)
        if (r->nodes[i]->id == id) return r->nodes[i];
    return NULL;
}

/* 1 when node `at` (index) sees node id with this role and liveness (and,
 * when live, at its client address) and knows a leader. */
static int sees(int at, uint64_t id, const char *role, int live)
{
    Runnel__V1__ClusterStatusResponse *r = status_of(at);
    const Runnel__V1__ClusterNode *n = node_in(r, id);
    int ok = r && r->leader_id && n && !strcmp(n->role, role) && n->live == live &&
             (!live || !strcmp(n->client_address, addr_of((int)id - 1)));
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    return ok;
}

static void wait_sees(unsigned at_mask, uint64_t id, const char *role, int live)
{
    int64_t t0 = now_ms();
    for (;;) {
        int all = 1;
        for (int i = 0; i < NODES; i++)
            if ((at_mask >> i) & 1) all &= sees(i, id, role, live);
        if (all) return;
        if (now_ms() - t0 > WAIT_MS) {
            print_logs();
            fail_msg("node %llu not seen as %s, live %d, within %d ms", (unsigned long long)id,
                     role, live, WAIT_MS);
        }
        rn_test_sleep_ms(50);
    }
}

/* The controller leader's index among nodes 1-3, waiting for one. */
static int leader_index(void)
{
    int64_t t0 = now_ms();
    for (;;) {
        Runnel__V1__ClusterStatusResponse *r = status_of(0);
        uint64_t l = r ? r->leader_id : 0;
        if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
        if (l >= 1 && l <= 3) return (int)l - 1;
        if (now_ms() - t0 > WAIT_MS) {
            print_logs();
            fail_msg("no controller leader within %d ms", WAIT_MS);
        }
        rn_test_sleep_ms(50);
    }
}

static void start_joining(int i)
{
    srv_start(g->n[i]);
}

static void add_ok(int via, int i)
{
    char spec[64], *out, *err;
    snprintf(spec, sizeof spec, "%d=127.0.0.1:%d", i + 1, g->raft_port[i]);
    const char *args[] = {"--server", addr_of(via), "cluster", "add", spec, NULL};
    int code = cli(&out, &err, args);
    if (code != 0) {
        print_logs();
        fail_msg("runnel cluster add %s through node %d: exit %d: %s", spec, via + 1, code, err);
    }
    char want[64];
    snprintf(want, sizeof want, "node %d (raft 127.0.0.1:%d) is a voting member", i + 1,
             g->raft_port[i]);
    assert_non_null(strstr(out, want));
    free(out);
    free(err);
}

/* `runnel ARGS` must exit with code and say `says` on stderr, one line. */
static void refused(const char *const *args, int code, const char *says)
{
    char *out, *err;
    int got = cli(&out, &err, args);
    if (got != code || !strstr(err, says))
        fail_msg("runnel %s %s %s: exit %d (want %d), stderr: %s (want '%s')", args[2], args[3],
                 args[4] ? args[4] : "", got, code, err, says);
    assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
    free(out);
    free(err);
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    if (!g) return -1;
    snprintf(g->work, sizeof g->work, "/tmp/rn-members-XXXXXX");
    if (!mkdtemp(g->work)) return -1;
    g->gone = -1;
    for (int i = 0; i <= NODES; i++) g->raft_port[i] = free_port();
    size_t off = 0;
    for (int i = 0; i < 3; i++)
        off += (size_t)snprintf(g->spec + off, sizeof g->spec - off, "%s%d=127.0.0.1:%d",
                                i ? "," : "", i + 1, g->raft_port[i]);
    for (int i = 0; i < NODES; i++) {
        snprintf(g->idtext[i], sizeof g->idtext[i], "%d", i + 1);
        snprintf(g->own[i], sizeof g->own[i], "%d=127.0.0.1:%d", i + 1, g->raft_port[i]);
        const char *boot[] = {"--node-id", g->idtext[i], "--cluster", g->spec, NULL};
        const char *join[] = {"--node-id", g->idtext[i], "--cluster", g->own[i], "--join", NULL};
        g->n[i] = srv_alloc("group", SRV_MAX_BATCH, i < 3 ? boot : join);
        if (!g->n[i]) return -1;
    }
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

static void test_add(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++) srv_start(g->n[i]);
    int l = leader_index();
    wait_sees(1u << l, 3, "voter", 1);
    /* Not a member yet: node 4 knows no leader, and the others do not list it. */
    Runnel__V1__ClusterStatusResponse *r = status_of(3);
    assert_non_null(r);
    assert_true(r->clustered);
    assert_int_equal(r->leader_id, 0);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    r = status_of(l);
    assert_null(node_in(r, 4));
    protobuf_c_message_free_unpacked(&r->base, NULL);
    add_ok((l + 1) % 3, 3);                           /* through a follower: passed on */
    wait_sees(0xf, 4, "voter", 1);
    for (uint64_t id = 1; id <= 3; id++) wait_sees(1u << 3, id, "voter", 1);
}

static void test_replicas(void **state)
{
    (void)state;
    char list[160], *out, *err;
    snprintf(list, sizeof list, "%s,%s,%s,%s", addr_of(0), addr_of(1), addr_of(2), addr_of(3));
    const char *mk[] = {"--server", list, "topic", "create", "t", "--queues", "4", NULL};
    assert_int_equal(cli(&out, &err, mk), 0);
    free(out);
    free(err);
    /* Which queue node 4 leads, and that it holds replicas. */
    int q4 = -1, reps = 0;
    int64_t t0 = now_ms();
    while (q4 < 0 && now_ms() - t0 < WAIT_MS) {
        Runnel__V1__ClusterStatusResponse *r = status_of(3);
        for (size_t k = 0; r && k < r->n_queues; k++) {
            const Runnel__V1__ClusterQueue *q = r->queues[k];
            if (q->leader == 4) q4 = (int)q->queue;
            for (size_t j = 0; j < q->n_replicas; j++) reps += q->replicas[j] == 4;
        }
        if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
        if (q4 < 0) rn_test_sleep_ms(50);
    }
    if (q4 < 0) print_logs();
    assert_true(q4 >= 0);
    assert_true(reps >= 2);
    char in[128], qtext[16];
    snprintf(in, sizeof in, "%s/in", g->work);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 100; i++) fprintf(f, "r%d\n", i);
    fclose(f);
    snprintf(qtext, sizeof qtext, "%d", q4);
    const char *pargv[] = {"runnel", "--server", list, "produce", "t", "--queue", qtext, NULL};
    char o[128], e[128];
    snprintf(o, sizeof o, "%s/out", g->work);
    snprintf(e, sizeof e, "%s/err", g->work);
    int st = rn_test_run(RN_BIN_DIR "/runnel", pargv, in, o, e);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *cargs[] = {"--server", list, "consume", "t", "--queue", qtext, NULL};
    assert_int_equal(cli(&out, &err, cargs), 0);
    char *p = out;
    for (int i = 0; i < 100; i++) {
        char want[16];
        int n = snprintf(want, sizeof want, "r%d\n", i);
        assert_memory_equal(p, want, (size_t)n);
        p += n;
    }
    assert_string_equal(p, "");
    free(out);
    free(err);
}

static void test_restart_joined(void **state)
{
    (void)state;
    srv_restart(g->n[3]);                 /* the same flags, --join: resumes its raft state */
    wait_sees(0xf, 4, "voter", 1);
}

static void test_refused(void **state)
{
    (void)state;
    int l = leader_index();
    const char *via = addr_of((l + 1) % 3);
    char again[64], taken[64];
    snprintf(again, sizeof again, "4=127.0.0.1:%d", g->raft_port[3]);
    snprintf(taken, sizeof taken, "9=127.0.0.1:%d", g->raft_port[0]);
    const char *a1[] = {"--server", via, "cluster", "add", again, NULL};
    refused(a1, 1, "node 4 is a member already");
    const char *a2[] = {"--server", via, "cluster", "add", taken, NULL};
    refused(a2, 1, "is node 1's already");
    const char *a3[] = {"--server", via, "cluster", "add", "9", NULL};
    refused(a3, 2, "give ID=HOST:PORT");
    const char *a4[] = {"--server", via, "cluster", "add", "0=127.0.0.1:1", NULL};
    refused(a4, 2, "give 1..4294967295");
    const char *a5[] = {"--server", via, "cluster", "add", "9=127.0.0.1:99999", NULL};
    refused(a5, 1, "65535");
    const char *a6[] = {"--server", via, "cluster", "remove", "4", NULL};
    refused(a6, 1, "node 4 holds replicas");
    const char *a7[] = {"--server", via, "cluster", "remove", "9", NULL};
    refused(a7, 1, "node 9 is not in the cluster's configuration");
    char lid[16];
    snprintf(lid, sizeof lid, "%d", l + 1);
    const char *a8[] = {"--server", addr_of(l), "cluster", "remove", lid, NULL};
    refused(a8, 1, "is the controller leader");
    const char *a9[] = {"--server", via, "cluster", "frob", NULL};
    refused(a9, 2, "give status, add or remove");
    for (uint64_t id = 1; id <= 4; id++) wait_sees(1u << l, id, "voter", 1);
    Runnel__V1__ClusterStatusResponse *r = status_of(l);
    assert_null(node_in(r, 9));
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The replicas of t/q as node `at` sees them (ids into out, the count), the
 * leader, the pending target count. */
static int queue_of(int at, const char *topic, uint32_t q, uint64_t *out, uint64_t *leader,
                    size_t *ntarget)
{
    Runnel__V1__ClusterStatusResponse *r = status_of(at);
    int n = -1;
    for (size_t k = 0; r && k < r->n_queues; k++) {
        const Runnel__V1__ClusterQueue *cq = r->queues[k];
        if (strcmp(cq->topic, topic) || cq->queue != q) continue;
        n = (int)cq->n_replicas;
        memcpy(out, cq->replicas, cq->n_replicas * sizeof *out);
        *leader = cq->leader;
        *ntarget = cq->n_target;
    }
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    return n;
}

/* queue reassign: every queue of t moves off one node (not the controller
 * leader) onto the node it lacked, one of them while a producer writes to
 * it through the move (its leader moving when the node led it); every
 * record is then read back once, in order; the node, holding no replica,
 * can be removed. Each refusal: exit 1 or 2 with one line. */
static void test_reassign(void **state)
{
    (void)state;
    int l = leader_index();
    int victim = l == 1 ? 2 : 1;                       /* index; never node 1's status */
    uint64_t vid = (uint64_t)victim + 1;
    char list[160], *out, *err;
    snprintf(list, sizeof list, "%s,%s,%s,%s", addr_of(0), addr_of(1), addr_of(2), addr_of(3));
    int moved_led = -1, first = -1;
    for (uint32_t q = 0; q < 4; q++) {
        uint64_t reps[16], lead = 0;
        size_t nt = 0;
        int n = queue_of(l, "t", q, reps, &lead, &nt);
        assert_int_equal(n, 3);
        if (rn_fsm_has_id(reps, 3, vid) && lead == vid) moved_led = (int)q;
        if (rn_fsm_has_id(reps, 3, vid) && first < 0) first = (int)q;
    }
    int busy = moved_led >= 0 ? moved_led : first;     /* the queue written during its move */
    assert_true(busy >= 0);
    char qtext[16], in[128], o[128], e[128];
    snprintf(qtext, sizeof qtext, "%d", busy);
    snprintf(in, sizeof in, "%s/pace.py", g->work);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    fputs("import sys, time\nfor i in range(3000):\n    print('m%d' % i, flush=True)\n"
          "    time.sleep(0.001)\n", f);
    fclose(f);
    snprintf(o, sizeof o, "%s/pout", g->work);
    snprintf(e, sizeof e, "%s/perr", g->work);
    int64_t before = -1;
    {
        const char *cargs[] = {"--server", list, "consume", "t", "--queue", qtext, NULL};
        assert_int_equal(cli(&out, &err, cargs), 0);
        before = 0;
        for (char *p = out; *p; p++) before += *p == '\n';
        free(out);
        free(err);
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 %s | %s/runnel --server %s produce t --queue %s "
             "--linger-ms 2 > %s 2> %s", in, RN_BIN_DIR, list, qtext, o, e);
    pid_t pp = fork();
    assert_true(pp >= 0);
    if (pp == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    rn_test_sleep_ms(500);                             /* mid-stream */
    for (uint32_t q = 0; q < 4; q++) {
        uint32_t qq = (uint32_t)((busy + (int)q) % 4);  /* the busy queue first */
        uint64_t reps[16], lead = 0;
        size_t nt = 0;
        assert_int_equal(queue_of(l, "t", qq, reps, &lead, &nt), 3);
        if (!rn_fsm_has_id(reps, 3, vid)) continue;
        char target[64];
        size_t off = 0;
        for (uint64_t id = 1; id <= 4; id++)
            if (id != vid)
                off += (size_t)snprintf(target + off, sizeof target - off, "%s%llu",
                                        off ? "," : "", (unsigned long long)id);
        char qs[16];
        snprintf(qs, sizeof qs, "%u", qq);
        const char *ra[] = {"--server", list, "queue", "reassign", "t", qs, "--replicas", target,
                            "--wait", NULL};
        int code = cli(&out, &err, ra);
        printf("queue reassign t %s --replicas %s: %s%s", qs, target, out, err);
        if (code != 0) print_logs();
        assert_int_equal(code, 0);
        assert_non_null(strstr(out, "done: replicas"));
        free(out);
        free(err);
        uint64_t after[16];
        assert_int_equal(queue_of(l, "t", qq, after, &lead, &nt), 3);
        assert_false(rn_fsm_has_id(after, 3, vid));
        assert_int_not_equal(lead, vid);
        assert_int_equal(nt, 0);
    }
    int st;
    assert_int_equal(waitpid(pp, &st, 0), pp);
    char *perr = rn_test_slurp(e, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("the producer failed: %s", perr);
    free(perr);
    /* every record of the move, once, in order, after what the queue held */
    const char *cargs[] = {"--server", list, "consume", "t", "--queue", qtext, NULL};
    assert_int_equal(cli(&out, &err, cargs), 0);
    char *p = out;
    for (int64_t i = 0; i < before; i++) p = strchr(p, '\n') + 1;
    for (int i = 0; i < 3000; i++) {
        char want[16];
        int n = snprintf(want, sizeof want, "m%d\n", i);
        if (strncmp(p, want, (size_t)n) != 0) fail_msg("record %d after the move: '%.20s'", i, p);
        p += n;
    }
    assert_string_equal(p, "");
    free(out);
    free(err);
    /* the node holds no replica now: it can leave */
    char vtext[16];
    snprintf(vtext, sizeof vtext, "%llu", (unsigned long long)vid);
    const char *rm[] = {"--server", addr_of(l), "cluster", "remove", vtext, NULL};
    assert_int_equal(cli(&out, &err, rm), 0);
    free(out);
    free(err);
    g->gone = victim;
    /* refusals */
    char bad[32];
    snprintf(bad, sizeof bad, "%llu,4", (unsigned long long)vid);
    const char *r1[] = {"--server", addr_of(l), "queue", "reassign", "nope", "0", "--replicas",
                        "4", NULL};
    refused(r1, 1, "'nope' is not a replicated topic");
    const char *r2[] = {"--server", addr_of(l), "queue", "reassign", "t", "0", "--replicas",
                        bad, NULL};
    refused(r2, 1, "is not a live member of the cluster");
    const char *r3[] = {"--server", addr_of(l), "queue", "reassign", "t", "0", "--replicas",
                        "4,4", NULL};
    refused(r3, 1, "node 4 is named twice");
    const char *r4[] = {"--server", addr_of(l), "queue", "reassign", "t", "0", NULL};
    refused(r4, 2, "give --replicas");
    const char *r5[] = {"--server", addr_of(l), "queue", "reassign", "t", "9", "--replicas",
                        "4", NULL};
    refused(r5, 1, "has queues 0..3");
}

/* topic alter of a replicated topic: through a follower, the controller
 * places the new queues on live members (not the removed node); every live
 * node has them locally (topic describe asks each); an acks-all produce to
 * a new queue reads back; shrinking and more than 64 queues are refused. */
static void test_grow(void **state)
{
    (void)state;
    int l = leader_index();
    int via = 0;
    while (via == l || via == g->gone) via++;
    char *out, *err;
    const char *al[] = {"--server", addr_of(via), "topic", "alter", "t", "--queues", "6", NULL};
    int code = cli(&out, &err, al);
    if (code != 0) fail_msg("topic alter t --queues 6: exit %d: %s", code, err);
    free(out);
    free(err);
    for (uint32_t q = 4; q < 6; q++) {
        uint64_t reps[16], lead = 0;
        size_t nt = 0;
        assert_int_equal(queue_of(l, "t", q, reps, &lead, &nt), 3);
        assert_false(g->gone >= 0 && rn_fsm_has_id(reps, 3, (uint64_t)g->gone + 1));
        assert_true(rn_fsm_has_id(reps, 3, lead));
    }
    for (int i = 0; i < 4; i++) {                     /* every member grew it here */
        if (i == g->gone) continue;
        const char *d[] = {"--server", addr_of(i), "topic", "describe", "t", NULL};
        int64_t t0 = now_ms();
        for (;;) {
            assert_int_equal(cli(&out, &err, d), 0);
            int grown = strstr(out, "6 queues") != NULL;
            if (!grown && now_ms() - t0 > WAIT_MS) fail_msg("node %d: %s", i + 1, out);
            free(out);
            free(err);
            if (grown) break;
            rn_test_sleep_ms(50);
        }
    }
    char list[160], in[128], o[128], e[128];
    snprintf(list, sizeof list, "%s,%s", addr_of(l), addr_of(via));
    snprintf(in, sizeof in, "%s/grow-in", g->work);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 50; i++) fprintf(f, "g%d\n", i);
    fclose(f);
    const char *pa[] = {"runnel", "--server", list, "produce", "t", "--queue", "5", NULL};
    snprintf(o, sizeof o, "%s/out", g->work);
    snprintf(e, sizeof e, "%s/err", g->work);
    int st = rn_test_run(RN_BIN_DIR "/runnel", pa, in, o, e);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *ca[] = {"--server", list, "consume", "t", "--queue", "5", NULL};
    assert_int_equal(cli(&out, &err, ca), 0);
    char *p = out;
    for (int i = 0; i < 50; i++) {
        char want[16];
        int n = snprintf(want, sizeof want, "g%d\n", i);
        assert_memory_equal(p, want, (size_t)n);
        p += n;
    }
    assert_string_equal(p, "");
    free(out);
    free(err);
    const char *sh[] = {"--server", addr_of(l), "topic", "alter", "t", "--queues", "5", NULL};
    refused(sh, 1, "grows");
    const char *big[] = {"--server", addr_of(l), "topic", "alter", "t", "--queues", "65", NULL};
    refused(big, 1, "at most 64");
}

/* `topic describe NAME` on node i: 1 when it exists there, 0 when not
 * found (exit 1, "unknown topic"), failing on anything else. */
static int has_topic(int i, const char *name)
{
    char *out, *err;
    const char *d[] = {"--server", addr_of(i), "topic", "describe", name, NULL};
    int code = cli(&out, &err, d);
    int missing = code == 1 && strstr(err, "unknown topic") != NULL;
    if (code != 0 && !missing) fail_msg("topic describe %s on node %d: exit %d: %s", name, i + 1,
                                        code, err);
    free(out);
    free(err);
    return code == 0;
}

static void wait_topic(int i, const char *name, int want)
{
    int64_t t0 = now_ms();
    while (has_topic(i, name) != want) {
        if (now_ms() - t0 > WAIT_MS) {
            print_logs();
            fail_msg("node %d: topic %s %s after %d ms", i + 1, name,
                     want ? "still missing" : "still there", WAIT_MS);
        }
        rn_test_sleep_ms(50);
    }
}

/* topic delete of a replicated topic: through a follower, while node 4 is
 * stopped; gone on the running members at once, from the controller state,
 * and from node 4 once it is back (the tombstone); made again under the
 * name, it starts empty at offset 0; an unknown topic is refused. */
static void test_drop(void **state)
{
    (void)state;
    int l = leader_index();
    int via = 0;
    while (via == l || via == g->gone) via++;
    char list[160], in[128], o[128], e[128], *out, *err;
    snprintf(list, sizeof list, "%s,%s", addr_of(l), addr_of(via));
    const char *mk[] = {"--server", list, "topic", "create", "dt", "--queues", "2", NULL};
    assert_int_equal(cli(&out, &err, mk), 0);
    free(out);
    free(err);
    snprintf(in, sizeof in, "%s/dt-in", g->work);
    snprintf(o, sizeof o, "%s/out", g->work);
    snprintf(e, sizeof e, "%s/err", g->work);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 20; i++) fprintf(f, "old%d\n", i);
    fclose(f);
    const char *pa[] = {"runnel", "--server", list, "produce", "dt", "--queue", "0", NULL};
    int st = rn_test_run(RN_BIN_DIR "/runnel", pa, in, o, e);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    wait_topic(3, "dt", 1);
    srv_stop(g->n[3]);                                 /* node 4 misses the deletion */
    const char *del[] = {"--server", addr_of(via), "topic", "delete", "dt", NULL};
    int code = cli(&out, &err, del);
    if (code != 0) fail_msg("topic delete dt through node %d: exit %d: %s", via + 1, code, err);
    free(out);
    free(err);
    wait_topic(l, "dt", 0);
    wait_topic(via, "dt", 0);
    Runnel__V1__ClusterStatusResponse *r = status_of(l);
    for (size_t k = 0; r && k < r->n_queues; k++) assert_string_not_equal(r->queues[k]->topic, "dt");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    srv_start(g->n[3]);
    wait_sees(1u << l, 4, "voter", 1);
    wait_topic(3, "dt", 0);                            /* its own copy, deleted on its return */
    /* made again: empty, from offset 0 */
    assert_int_equal(cli(&out, &err, mk), 0);
    free(out);
    free(err);
    f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 5; i++) fprintf(f, "new%d\n", i);
    fclose(f);
    st = rn_test_run(RN_BIN_DIR "/runnel", pa, in, o, e);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *ca[] = {"--server", list, "consume", "dt", "--queue", "0", "--format", "json",
                        NULL};
    assert_int_equal(cli(&out, &err, ca), 0);
    assert_non_null(strstr(out, "\"offset\":0,"));
    assert_null(strstr(out, "old"));
    assert_non_null(strstr(out, "new4"));
    free(out);
    free(err);
    /* deleted and made again at once, written: every node holds the new
     * records only (a node that held the old ones would lead or diverge) */
    for (int round = 0; round < 3; round++) {
        int c1 = cli(&out, &err, del);
        if (c1 != 0) fail_msg("round %d: topic delete dt: exit %d: %s", round, c1, err);
        free(out);
        free(err);
        c1 = cli(&out, &err, mk);
        if (c1 != 0) fail_msg("round %d: topic create dt: exit %d: %s", round, c1, err);
        free(out);
        free(err);
    }
    f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 3; i++) fprintf(f, "again%d\n", i);
    fclose(f);
    st = rn_test_run(RN_BIN_DIR "/runnel", pa, in, o, e);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    for (int i = 0; i < 4; i++) {
        if (i == g->gone) continue;
        wait_topic(i, "dt", 1);
    }
    const char *c2[] = {"--server", list, "consume", "dt", "--queue", "0", NULL};
    assert_int_equal(cli(&out, &err, c2), 0);
    assert_string_equal(out, "again0\nagain1\nagain2\n");
    free(out);
    free(err);
    const char *nope[] = {"--server", addr_of(via), "topic", "delete", "nope", NULL};
    refused(nope, 1, "nope");
}

static void test_remove(void **state)
{
    (void)state;
    start_joining(4);
    int l = leader_index();
    add_ok(l, 4);
    wait_sees(1u << l, 5, "voter", 1);
    char *out, *err;
    int via = 0;                                       /* a member that is not the leader */
    while (via == l || via == g->gone) via++;
    const char *rm[] = {"--server", addr_of(via), "cluster", "remove", "5", NULL};
    int code = cli(&out, &err, rm);
    if (code != 0) fail_msg("cluster remove 5 through node %d: exit %d: %s", via + 1, code, err);
    assert_non_null(strstr(out, "node 5 was removed from the cluster"));
    free(out);
    free(err);
    /* Still listed (it registered once), as removed; its heartbeats are
     * refused, so the controller fences it. */
    wait_sees(1u << l, 5, "removed", 0);
    char list[160];
    snprintf(list, sizeof list, "%s,%s", addr_of(l), addr_of(via));
    const char *mk[] = {"--server", list, "topic", "create", "after", "--queues", "8", NULL};
    assert_int_equal(cli(&out, &err, mk), 0);
    free(out);
    free(err);
    Runnel__V1__ClusterStatusResponse *r = status_of(l);
    int seen = 0;
    for (size_t k = 0; k < r->n_queues; k++) {
        if (strcmp(r->queues[k]->topic, "after")) continue;
        seen++;
        for (size_t j = 0; j < r->queues[k]->n_replicas; j++)
            assert_int_not_equal(r->queues[k]->replicas[j], 5);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    assert_int_equal(seen, 8);
}

static void test_unstarted(void **state)
{
    (void)state;
    int l = leader_index();
    char spec[64], *out, *err;
    snprintf(spec, sizeof spec, "6=127.0.0.1:%d", g->raft_port[5]);
    const char *add[] = {"--server", addr_of(l), "cluster", "add", spec, NULL};
    int64_t t0 = now_ms();
    int code = cli(&out, &err, add);
    printf("adding a node that does not run: exit %d after %lld ms: %s", code,
           (long long)(now_ms() - t0), err);
    assert_int_equal(code, 1);
    assert_non_null(strstr(err, "stays a spare"));
    free(out);
    free(err);
    Runnel__V1__ClusterStatusResponse *r = status_of(l);
    const Runnel__V1__ClusterNode *n = node_in(r, 6);
    assert_non_null(n);
    assert_string_equal(n->role, "spare");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    const char *rm[] = {"--server", addr_of(l), "cluster", "remove", "6", NULL};
    assert_int_equal(cli(&out, &err, rm), 0);
    free(out);
    free(err);
    /* Never registered: gone from the view (published within a tick). */
    int64_t t0b = now_ms();
    for (;;) {
        r = status_of(l);
        int gone = r && !node_in(r, 6);
        if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
        if (gone) break;
        if (now_ms() - t0b > WAIT_MS) fail_msg("node 6 still listed %d ms after its removal",
                                               WAIT_MS);
        rn_test_sleep_ms(50);
    }
}

static void test_single_node(void **state)
{
    (void)state;
    srv_t *s = srv_alloc("group", SRV_MAX_BATCH, NULL);
    assert_non_null(s);
    srv_start(s);
    char target[32];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    const char *a[] = {"--server", target, "cluster", "add", "2=127.0.0.1:9", NULL};
    refused(a, 1, "not in a cluster");
    void *v = s;
    assert_int_equal(srv_teardown(&v), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_replicas),
        cmocka_unit_test(test_restart_joined),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_reassign),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_drop),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_unstarted),
        cmocka_unit_test(test_single_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_cluster_groups.c — group offsets on replicated topics through the
 * controller (cluster/controller.h, OFFSETS entries), with three real
 * runneld nodes on loopback (raft snapshots every 4 entries, so snapshots
 * and their restore are exercised). The tests run in order and share the
 * nodes:
 *
 *   commit      CommitOffsets sent to every node in turn (followers of the
 *               controller pass it on to its leader), of one queue and of
 *               all three at once, moving forwards and back: once answered,
 *               the answering node reads exactly what was committed, and
 *               every node does within the wait; an offset past a queue's
 *               end is OUT_OF_RANGE and changes nothing anywhere; ResetGroup
 *               to earliest (one topic) and latest (the group's queues)
 *               through different nodes reach every node, one to a
 *               checkpoint is FAILED_PRECONDITION and changes nothing;
 *               200 sequential commits through the leader and through a
 *               follower, timed (printed)
 *   concurrent  8 threads commit 40 offsets each, half through a follower:
 *               all land on every node; the commits per second and the raft
 *               entries they took are printed (several commits per entry)
 *   kill        a consumer (`runnel consume --group`) reads part of the
 *               topic through the controller leader, which commits; that
 *               node is killed (kill -9): both others read the same offsets,
 *               and a consumer resumed through them reads the rest: every
 *               record of every queue exactly once over both runs; the
 *               killed node, started again, reads the resumed consumer's
 *               offsets too (raft log or snapshot sent by the leader)
 *   restart     every node stopped; one node's meta.db offset overwritten
 *               offline (`runnel --data`); all three started again: every
 *               node reads the committed offsets again, the overwritten one
 *               included (the controller state, from its raft snapshot and
 *               log, is written into meta.db), and commits work again
 *
 * Every wait is bounded; the nodes' logs are printed when a check fails.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include <pthread.h>
#include <sys/wait.h>

#define NODES   3
#define QUEUES  3
#define RECORDS 120           /* per queue */
#define WAIT_MS 20000

typedef struct cluster {
    srv_t *n[NODES];
    int    raft_port[NODES];
    char   spec[256];
    char   idtext[NODES][16];
    char  *work;              /* files of the CLI runs */
    int    dead;              /* a bit per node killed */
} cluster_t;

static cluster_t *g;

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static void print_logs(void)
{
    for (int i = 0; i < NODES; i++)
        if (g->n[i] && g->n[i]->pid > 0) srv_print_log(g->n[i]);
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            print_logs();                                                                      \
            fail_msg(__VA_ARGS__);                                                             \
        }                                                                                      \
    } while (0)

/* ---- calls ------------------------------------------------------------------------ */

/* The controller leader node i knows (0 none or unreachable). */
static uint64_t leader_at(int i)
{
    if (!g->n[i]->rpc) return 0;
    Runnel__V1__ClusterStatusRequest req = RUNNEL__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                    &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL, err) != 0)
        return 0;
    uint64_t l = ((Runnel__V1__ClusterStatusResponse *)m)->leader_id;
    protobuf_c_message_free_unpacked(m, NULL);
    return l;
}

/* The controller leader, as a live node sees it (waits for one). */
static uint64_t ctl_leader(void)
{
    for (int64_t t0 = now_ms(); now_ms() - t0 < WAIT_MS; rn_test_sleep_ms(50))
        for (int i = 0; i < NODES; i++) {
            uint64_t l = (g->dead & (1 << i)) ? 0 : leader_at(i);
            if (l && !(g->dead & (1 << (l - 1)))) return l;
        }
    CHECK(0, "no controller leader within %d ms", WAIT_MS);
    return 0;
}

/* CommitOffsets of group on topic "t" to node i: offs[q] for q in [q0, q0+n). */
static int commit_call(int i, const char *group, uint32_t q0, const int64_t *offs, size_t n,
                       int *status, char *err)
{
    Runnel__V1__QueueOffset o[QUEUES], *op[QUEUES];
    for (size_t k = 0; k < n; k++) {
        runnel__v1__queue_offset__init(&o[k]);
        o[k].topic = (char *)"t";
        o[k].queue = q0 + (uint32_t)k;
        o[k].offset = offs[k];
        op[k] = &o[k];
    }
    Runnel__V1__CommitOffsetsRequest req = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    req.group = (char *)group;
    req.n_offsets = n;
    req.offsets = op;
    ProtobufCMessage *m = NULL;
    *status = 0;
    int rc = rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("CommitOffsets"), &req.base,
                         &runnel__v1__commit_offsets_response__descriptor, &m, CALL_MS, status,
                         err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* Commit, riding out an election (UNAVAILABLE answers); must succeed. */
static void commit_ok(int i, const char *group, uint32_t q0, const int64_t *offs, size_t n)
{
    char err[RN_ERRMSG_SIZE];
    int st = 0, rc;
    int64_t t0 = now_ms();
    while ((rc = commit_call(i, group, q0, offs, n, &st, err)) != 0 && st == 14 &&
           now_ms() - t0 < WAIT_MS)
        rn_test_sleep_ms(50);
    CHECK(rc == 0, "CommitOffsets of %s to node %d: %s (status %d)", group, i + 1, err, st);
}

/* Group's offsets on t as node i reads them: out[q] (-1 none); 0, or -1
 * when the call failed. */
static int offsets_at(int i, const char *group, int64_t *out)
{
    for (int q = 0; q < QUEUES; q++) out[q] = -1;
    Runnel__V1__FetchOffsetsRequest req = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
    req.group = (char *)group;
    req.topic = (char *)"t";
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("FetchOffsets"), &req.base,
                    &runnel__v1__fetch_offsets_response__descriptor, &m, 5000, NULL, err) != 0)
        return -1;
    Runnel__V1__FetchOffsetsResponse *r = (void *)m;
    for (size_t k = 0; k < r->n_offsets; k++)
        if (r->offsets[k]->queue < QUEUES) out[r->offsets[k]->queue] = r->offsets[k]->offset;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

static int same(const int64_t *a, const int64_t *b)
{
    return !memcmp(a, b, QUEUES * sizeof *a);
}

/* Every live node reads want for group within WAIT_MS. */
static void wait_everywhere(const char *group, const int64_t *want)
{
    for (int i = 0; i < NODES; i++) {
        if (g->dead & (1 << i)) continue;
        int64_t got[QUEUES];
        int64_t t0 = now_ms();
        while (offsets_at(i, group, got) != 0 || !same(got, want)) {
            CHECK(now_ms() - t0 < WAIT_MS, "node %d reads %s at %lld,%lld,%lld, not "
                  "%lld,%lld,%lld, after %d ms", i + 1, group, (long long)got[0],
                  (long long)got[1], (long long)got[2], (long long)want[0], (long long)want[1],
                  (long long)want[2], WAIT_MS);
            rn_test_sleep_ms(20);
        }
    }
}

/* `runnel --server SERVERS ARGS...` (NULL-terminated); its wait status, the
 * output in g->work/NAME.out. */
static int runnel(const char *name, const char *servers, const char *const *args)
{
    const char *argv[24] = {"runnel", "--server", servers};
    int argc = 3;
    for (int i = 0; args[i] && argc < 23; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/%s.out", g->work, name);
    snprintf(err, sizeof err, "%s/%s.err", g->work, name);
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *e = rn_test_slurp(err, NULL);
        fprintf(stderr, "runnel %s: status %d: %s\n", name, st, e ? e : "");
        free(e);
    }
    return st;
}

static const char *addr_of(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "127.0.0.1:%d", g->n[i]->port);
    return buf;
}

/* ---- setup --------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    if (!g) return -1;
    g->work = rn_test_tmpdir_new("cluster-groups");
    size_t off = 0;
    for (int i = 0; i < NODES; i++) {
        g->raft_port[i] = free_port();
        off += (size_t)snprintf(g->spec + off, sizeof g->spec - off, "%s%d=127.0.0.1:%d",
                                i ? "," : "", i + 1, g->raft_port[i]);
    }
    for (int i = 0; i < NODES; i++) {
        snprintf(g->idtext[i], sizeof g->idtext[i], "%d", i + 1);
        const char *extra[] = {"--node-id", g->idtext[i], "--cluster", g->spec,
                               "--cluster-snapshot-entries", "4", "--threads", "8", NULL};
        g->n[i] = srv_alloc("group", SRV_MAX_BATCH, extra);
        if (!g->n[i]) return -1;
    }
    for (int i = 0; i < NODES; i++) srv_start(g->n[i]);
    printf("cluster: %s\n", g->spec);
    /* topic t, three queues on all three nodes, RECORDS lines "qQ-I" each */
    char servers[128], a[3][32];
    snprintf(servers, sizeof servers, "%s,%s,%s", addr_of(0, a[0], 32), addr_of(1, a[1], 32),
             addr_of(2, a[2], 32));
    const char *create[] = {"topic", "create", "t", "--queues", "3", "--replicas", "3", NULL};
    if (runnel("create", servers, create) != 0) return -1;
    for (int q = 0; q < QUEUES; q++) {
        char path[PATH_MAX], qtext[16];
        snprintf(path, sizeof path, "%s/in%d", g->work, q);
        FILE *f = fopen(path, "w");
        if (!f) return -1;
        for (int k = 0; k < RECORDS; k++) fprintf(f, "q%d-%d\n", q, k);
        fclose(f);
        snprintf(qtext, sizeof qtext, "%d", q);
        const char *argv[] = {"runnel", "--server", servers, "produce", "t", "--queue", qtext,
                              "--batch-bytes", "128", NULL};
        char out[PATH_MAX];
        snprintf(out, sizeof out, "%s/produce.out", g->work);
        int st = rn_test_run(RN_BIN_DIR "/runnel", argv, path, out, out);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            char *e = rn_test_slurp(out, NULL);
            fprintf(stderr, "produce: %s\n", e ? e : "");
            free(e);
            return -1;
        }
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
    rn_test_tmpdir_free(g->work);
    free(g);
    return rc;
}

/* ---- commit ---------------------------------------------------------------------------- */

static void test_commit(void **state)
{
    (void)state;
    uint64_t leader = ctl_leader();
    printf("controller leader: node %llu\n", (unsigned long long)leader);
    int64_t want[QUEUES] = {-1, -1, -1};
    /* one queue at a time, through every node (two of them followers of the
     * controller), forwards and back */
    int64_t steps[] = {5, 17, 3, 0, RECORDS};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        for (int i = 0; i < NODES; i++) {
            uint32_t q = (uint32_t)((i + (int)s) % QUEUES);
            int64_t off = steps[s] - (steps[s] > 0 ? i : 0);
            commit_ok(i, "g1", q, &off, 1);
            want[q] = off;
            int64_t got[QUEUES];
            CHECK(offsets_at(i, "g1", got) == 0 && same(got, want),
                  "node %d answered a commit of %lld on t/%u but reads %lld there", i + 1,
                  (long long)off, q, (long long)got[q]);
        }
        wait_everywhere("g1", want);
    }
    /* three queues in one request, through a follower of the controller */
    int f = (int)(leader % NODES);          /* node leader + 1, 0-based: not the leader */
    int64_t three[QUEUES] = {11, 22, 33};
    commit_ok(f, "g2", 0, three, QUEUES);
    wait_everywhere("g2", three);
    /* out of range: refused by the node asked, nothing changes anywhere */
    char err[RN_ERRMSG_SIZE];
    int st;
    int64_t bad[QUEUES] = {12, RECORDS + 1, 34};
    for (int i = 0; i < NODES; i++) {
        CHECK(commit_call(i, "g2", 0, bad, QUEUES, &st, err) != 0 && st == 11 &&
              strstr(err, "is outside topic 't' queue 1's range"), "node %d: %d %s", i + 1, st,
              err);
        int64_t neg = -1;
        CHECK(commit_call(i, "g2", 2, &neg, 1, &st, err) != 0, "node %d took offset -1", i + 1);
    }
    rn_test_sleep_ms(300);
    wait_everywhere("g2", three);
    /* resets go through the controller too: earliest with a topic, latest
     * without (the queues the group has offsets on), through different
     * nodes; to a checkpoint (each node's own) refused, nothing changed */
    int64_t g3[QUEUES] = {5, 6, 7}, zero[QUEUES] = {0, 0, 0};
    int64_t full[QUEUES] = {RECORDS, RECORDS, RECORDS};
    commit_ok(0, "g3", 0, g3, QUEUES);
    wait_everywhere("g3", g3);          /* a reset needs the group on the node asked */
    for (int k = 0; k < 3; k++) {
        int i = (f + k) % NODES;
        Runnel__V1__ResetGroupRequest req = RUNNEL__V1__RESET_GROUP_REQUEST__INIT;
        req.group = (char *)"g3";
        req.topic = (char *)(k == 0 ? "t" : "");
        if (k == 0) {
            req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_EARLIEST;
            req.earliest = 1;
        } else if (k == 1) {
            req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_LATEST;
            req.latest = 1;
        } else {
            req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT;
            req.checkpoint = (char *)"cp";
        }
        ProtobufCMessage *m = NULL;
        int rc = rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("ResetGroup"), &req.base,
                             &runnel__v1__fetch_offsets_response__descriptor, &m, CALL_MS, &st,
                             err);
        if (k < 2) {
            CHECK(rc == 0, "ResetGroup %d on node %d: %s", k, i + 1, err);
            Runnel__V1__FetchOffsetsResponse *r = (void *)m;
            CHECK(r->n_offsets == QUEUES, "reset on node %d answered %zu offsets", i + 1,
                  r->n_offsets);
            for (size_t q = 0; q < r->n_offsets; q++)       /* the answer shows it already */
                CHECK(r->offsets[q]->offset == (k == 0 ? 0 : RECORDS), "reset %d: t/%u at %lld",
                      k, r->offsets[q]->queue, (long long)r->offsets[q]->offset);
            protobuf_c_message_free_unpacked(m, NULL);
            wait_everywhere("g3", k == 0 ? zero : full);
        } else {
            CHECK(rc != 0 && st == 9 && strstr(err, "to a checkpoint is not supported yet"),
                  "ResetGroup to a checkpoint on node %d: %d %s", i + 1, st, err);
        }
    }
    rn_test_sleep_ms(300);
    wait_everywhere("g3", full);
    wait_everywhere("g2", three);
    /* sequential commits, each answered once committed: the time of one */
    for (int k = 0; k < 2; k++) {
        int i = k == 0 ? (int)leader - 1 : f;
        int64_t t0 = now_ms();
        for (int64_t n = 0; n < 200; n++) {
            int64_t off = n % RECORDS;
            commit_ok(i, "bench", 0, &off, 1);
        }
        printf("200 sequential commits through %s (node %d): %.2f ms each\n",
               k == 0 ? "the controller leader" : "a follower", i + 1,
               (double)(now_ms() - t0) / 200);
    }
}

/* ---- concurrent commits: batched into fewer entries ------------------------------------- */

#define COMMITTERS 8
#define PER        40

typedef struct committer {
    int  node, id, failed;
    char err[RN_ERRMSG_SIZE];
} committer_t;

static void *committer_main(void *arg)
{
    committer_t *c = arg;
    char group[32];
    snprintf(group, sizeof group, "conc%d", c->id);
    for (int64_t k = 1; k <= PER && !c->failed; k++) {
        int st;
        c->failed = commit_call(c->node, group, 0, &k, 1, &st, c->err) != 0;
    }
    return NULL;
}

/* The raft commit index node i reports. */
static uint64_t commit_index_at(int i)
{
    Runnel__V1__ClusterStatusRequest req = RUNNEL__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    CHECK(rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                      &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL, err) == 0,
          "ClusterStatus: %s", err);
    uint64_t ci = ((Runnel__V1__ClusterStatusResponse *)m)->commit_index;
    protobuf_c_message_free_unpacked(m, NULL);
    return ci;
}

static void test_concurrent(void **state)
{
    (void)state;
    int l = (int)ctl_leader() - 1;
    committer_t c[COMMITTERS];
    pthread_t th[COMMITTERS];
    uint64_t ci0 = commit_index_at(l);
    int64_t t0 = now_ms();
    for (int k = 0; k < COMMITTERS; k++) {
        memset(&c[k], 0, sizeof c[k]);
        c[k].node = k % 2 ? l : (l + 1) % NODES;      /* half through a follower */
        c[k].id = k;
        assert_int_equal(pthread_create(&th[k], NULL, committer_main, &c[k]), 0);
    }
    for (int k = 0; k < COMMITTERS; k++) pthread_join(th[k], NULL);
    int64_t ms = now_ms() - t0;
    uint64_t entries = commit_index_at(l) - ci0;
    for (int k = 0; k < COMMITTERS; k++)
        CHECK(!c[k].failed, "committer %d through node %d: %s", k, c[k].node + 1, c[k].err);
    printf("%d committers x %d commits (half through a follower): %.0f commits/s, %llu raft "
           "entries (barriers included) for %d commits\n", COMMITTERS, PER,
           COMMITTERS * PER * 1000.0 / (double)(ms ? ms : 1), (unsigned long long)entries,
           COMMITTERS * PER);
    int64_t want[QUEUES] = {PER, -1, -1};
    char group[32];
    for (int k = 0; k < COMMITTERS; k++) {
        snprintf(group, sizeof group, "conc%d", k);
        wait_everywhere(group, want);
    }
}

/* ---- kill -9 of the node a consumer committed to --------------------------------------- */

/* Per queue, the offsets a `consume --format json` output holds, in order. */
static size_t read_json(const char *name, int64_t seen[QUEUES][RECORDS], size_t *nseen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.out", g->work, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    size_t total = 0;
    while (fgets(line, sizeof line, f)) {
        int q = -1;
        long long off = -1;
        char value[64] = "";
        CHECK(sscanf(line, "{\"queue\":%d,\"offset\":%lld", &q, &off) == 2 && q >= 0 &&
              q < QUEUES, "%s: line %s", name, line);
        const char *v = strstr(line, "\"value\":\"");
        CHECK(v && sscanf(v + 9, "%63[^\"]", value) == 1, "%s: no value in %s", name, line);
        char want[64];
        snprintf(want, sizeof want, "q%d-%lld", q, off);
        CHECK(!strcmp(value, want), "%s: offset %lld of queue %d holds %s", name, off, q, value);
        CHECK(nseen[q] < RECORDS, "%s: more than %d records of queue %d", name, RECORDS, q);
        seen[q][nseen[q]++] = off;
        total++;
    }
    fclose(f);
    return total;
}

static void test_kill(void **state)
{
    (void)state;
    uint64_t l = ctl_leader();
    int a = (int)l - 1, b = (a + 1) % NODES, c = (a + 2) % NODES;
    char aa[32], ba[32], ca[32], bc[80];
    addr_of(a, aa, sizeof aa);
    snprintf(bc, sizeof bc, "%s,%s", addr_of(b, ba, sizeof ba), addr_of(c, ca, sizeof ca));
    /* a consumer through A (the controller leader) reads 100 records and commits */
    const char *first[] = {"consume", "t", "--group", "gc", "--count", "100", "--format", "json",
                           "--commit-ms", "0", NULL};
    CHECK(runnel("first", aa, first) == 0, "the first consumer failed");
    int64_t seen[QUEUES][RECORDS];
    size_t nseen[QUEUES] = {0};
    assert_int_equal(read_json("first", seen, nseen), 100);
    int64_t at_a[QUEUES];
    CHECK(offsets_at(a, "gc", at_a) == 0, "offsets on node %d", a + 1);
    for (int q = 0; q < QUEUES; q++)
        CHECK(at_a[q] == (int64_t)nseen[q], "node %d: gc at %lld on t/%d; the consumer read %zu",
              a + 1, (long long)at_a[q], q, nseen[q]);
    /* kill -9 of A: B and C read what A acknowledged */
    printf("kill -9 of node %d (controller leader) after the first consumer's commits\n", a + 1);
    srv_kill_wait(g->n[a], SIGKILL);
    rn_rpc_close(g->n[a]->rpc);
    g->n[a]->rpc = NULL;
    g->dead |= 1 << a;
    int64_t t0 = now_ms();
    wait_everywhere("gc", at_a);
    printf("offsets read on both other nodes %lld ms after the kill\n",
           (long long)(now_ms() - t0));
    /* a consumer resumed through B and C reads the rest, each record once */
    const char *second[] = {"consume", "t", "--group", "gc", "--format", "json", NULL};
    CHECK(runnel("second", bc, second) == 0, "the resumed consumer failed");
    assert_int_equal(read_json("second", seen, nseen), QUEUES * RECORDS - 100);
    int64_t end[QUEUES];
    for (int q = 0; q < QUEUES; q++) {
        CHECK(nseen[q] == RECORDS, "queue %d: %zu records over both consumers, not %d", q,
              nseen[q], RECORDS);
        for (size_t k = 0; k < nseen[q]; k++)
            CHECK(seen[q][k] == (int64_t)k, "queue %d: record %zu was offset %lld (lost or "
                  "repeated)", q, k, (long long)seen[q][k]);
        end[q] = RECORDS;
    }
    wait_everywhere("gc", end);
    /* A comes back and reads the offsets committed while it was dead */
    srv_start(g->n[a]);
    g->dead &= ~(1 << a);
    wait_everywhere("gc", end);
}

/* ---- restart of all three ----------------------------------------------------------------- */

static void test_restart(void **state)
{
    (void)state;
    int64_t g1[QUEUES], g2[QUEUES] = {11, 22, 33}, gc[QUEUES] = {RECORDS, RECORDS, RECORDS};
    CHECK(offsets_at(0, "g1", g1) == 0, "g1 on node 1");
    for (int i = 0; i < NODES; i++) srv_stop(g->n[i]);
    /* node 3's meta.db says gc is at 1 on t/0: only the controller state can mend it */
    const char *argv[] = {"runnel", "--data", g->n[2]->data, "group", "commit", "gc", "t", "0",
                          "1", NULL};
    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s/offline.out", g->work);
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "runnel --data group commit: %d", st);
    for (int i = 0; i < NODES; i++) srv_start(g->n[i]);
    wait_everywhere("gc", gc);
    wait_everywhere("g1", g1);
    wait_everywhere("g2", g2);
    /* and commits go on, through a follower of the controller */
    int f = (int)(ctl_leader() % NODES);
    int64_t next[QUEUES] = {RECORDS - 1, RECORDS - 2, RECORDS - 3};
    commit_ok(f, "gc", 0, next, QUEUES);
    wait_everywhere("gc", next);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

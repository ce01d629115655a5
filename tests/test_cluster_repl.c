/*
 * test_cluster_repl.c — replicated queues (cluster/replica.h) with three real
 * runneld nodes on loopback (as tests/test_cluster.c starts them). The tests
 * run in order and share the nodes:
 *
 *   create      CreateTopic sent to every node in turn (followers pass it on
 *               to the controller leader): each topic appears on all three
 *               nodes with its queue count, three replicas per queue, epoch
 *               1, ISR = replicas, leaders spread over the nodes; a second
 *               create is ALREADY_EXISTS; --replicas beyond the live nodes
 *               is INVALID_ARGUMENT; DeleteTopic, AlterTopic and RemapQueue
 *               of a replicated topic are FAILED_PRECONDITION on every node
 *   acks_all    batches of 1..600 records (plain and LZ4) produced to each
 *               queue's leader: when the ack arrives every follower's log
 *               already reaches the batch's end (ListOffsets on each)
 *   not_leader  a produce and a consumer fetch sent to a follower are
 *               FAILED_PRECONDITION "not leader of t/Q: leader is node N at
 *               127.0.0.1:PORT", and nothing is stored there
 *   hwm         both followers stopped (SIGSTOP): a produce with
 *               ACKS_WRITTEN is stored on the leader, but a consumer fetch
 *               sees none of it until the followers run again (SIGCONT)
 *   isr         one follower stopped: it leaves the ISR after the lag time,
 *               acks all still work with two, and it joins again once
 *               resumed and caught up
 *   min_isr     a two-replica topic whose follower stops: below
 *               min_insync_replicas a produce is refused (FAILED_PRECONDITION,
 *               nothing stored), and acknowledged again once it is back
 *   failover    kill -9 of a queue's leader (not the controller leader) while
 *               a producer sends acks-all
 *               batches: a new leader (from the ISR, epoch + 1) serves, the
 *               time from the kill to the first acknowledged produce is
 *               printed, and every acknowledged record is on the new leader
 *               exactly once, in order
 *   old leader  the killed node starts again: it joins the ISR of its old
 *               queue again, or, holding a batch nobody else had, says it
 *               diverged and stays out of the ISR
 *   diverged    a leader stores a batch no follower gets, then dies; the new
 *               leader takes others at those offsets; the old leader, started
 *               again, cuts its own records (KIP-101's truncation, found by
 *               batch CRCs), copies the new leader's and joins the ISR
 *   identical   every node stopped cleanly: each queue's batches are the same
 *               bytes at the same offsets on every replica that is in its ISR
 *   restart     all three start again: the topics survive (raft log and
 *               snapshots) and acks all works on every queue
 *
 * Every wait is bounded; the nodes' logs are printed when a check fails.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include "common/bytes.h"

#define NODES   3
#define WAIT_MS 20000
#define QUEUES  3

typedef struct cluster {
    uint64_t old_leader;         /* failover: the node killed, and its queue */
    uint32_t old_queue;
    srv_t *n[NODES];
    int    raft_port[NODES];
    char   spec[256];
    char   idtext[NODES][16];
    int    dead;                 /* a bit per node killed for good */
} cluster_t;

static cluster_t *g;

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static void print_logs(void)
{
    for (int i = 0; i < NODES; i++)
        if (g->n[i]) srv_print_log(g->n[i]);
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            print_logs();                                                                      \
            fail_msg(__VA_ARGS__);                                                             \
        }                                                                                      \
    } while (0)

typedef struct qstate {
    uint64_t leader, epoch;
    size_t   nrep, nisr;
    uint64_t replicas[NODES], isr[NODES];
} qstate_t;

/* (topic, q) as node i's ClusterStatus shows it; 0, or -1 when unknown. */
static int queue_at(int i, const char *topic, uint32_t q, qstate_t *out)
{
    srv_t *s = g->n[i];
    if (!s->rpc) return -1;
    Runnel__V1__ClusterStatusRequest req = RUNNEL__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(s->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                    &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL, err) != 0)
        return -1;
    Runnel__V1__ClusterStatusResponse *r = (void *)m;
    int rc = -1;
    for (size_t k = 0; k < r->n_queues; k++) {
        const Runnel__V1__ClusterQueue *cq = r->queues[k];
        if (strcmp(cq->topic, topic) || cq->queue != q) continue;
        memset(out, 0, sizeof *out);
        out->leader = cq->leader;
        out->epoch = cq->epoch;
        out->nrep = cq->n_replicas < NODES ? cq->n_replicas : NODES;
        out->nisr = cq->n_isr < NODES ? cq->n_isr : NODES;
        memcpy(out->replicas, cq->replicas, out->nrep * 8);
        memcpy(out->isr, cq->isr, out->nisr * 8);
        rc = 0;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

/* A live node's view of (topic, q). */
static qstate_t queue_state(const char *topic, uint32_t q)
{
    qstate_t st;
    for (int64_t t0 = now_ms(); now_ms() - t0 < WAIT_MS; rn_test_sleep_ms(20))
        for (int i = 0; i < NODES; i++)
            if (!(g->dead & (1 << i)) && queue_at(i, topic, q, &st) == 0) return st;
    CHECK(0, "no node shows %s/%u", topic, q);
    return st;
}

static int in_set(const uint64_t *v, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == id) return 1;
    return 0;
}

/* Wait until pred(state) holds on node i; the state. */
static qstate_t wait_queue(int i, const char *topic, uint32_t q, int (*pred)(const qstate_t *, void *),
                           void *arg, const char *what)
{
    qstate_t st;
    int64_t t0 = now_ms();
    while (queue_at(i, topic, q, &st) != 0 || !pred(&st, arg)) {
        CHECK(now_ms() - t0 < WAIT_MS, "%s/%u on node %d: %s did not happen within %d ms", topic,
              q, i + 1, what, WAIT_MS);
        rn_test_sleep_ms(20);
    }
    return st;
}

static int p_isr_is(const qstate_t *s, void *arg) { return s->nisr == *(size_t *)arg; }
static int p_isr_has(const qstate_t *s, void *arg)
{
    return in_set(s->isr, s->nisr, *(uint64_t *)arg);
}
static int p_exists(const qstate_t *s, void *arg) { (void)s; (void)arg; return 1; }

static srv_t *node(uint64_t id) { return g->n[id - 1]; }

static int create_call(int i, const char *name, uint32_t queues, uint32_t replicas, int *status,
                       char *err)
{
    Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    req.name = (char *)name;
    req.queues = queues;
    req.replicas = replicas;
    ProtobufCMessage *m = NULL;
    int rc = rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("CreateTopic"), &req.base,
                         &runnel__v1__topic_info__descriptor, &m, CALL_MS, status, err);
    if (rc == 0) {
        assert_int_equal(((Runnel__V1__TopicInfo *)m)->queue_count, queues);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int setup(void **state)
{
    (void)state;
    g = calloc(1, sizeof *g);
    if (!g) return -1;
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
    for (int i = 0; i < NODES; i++) srv_start(g->n[i]);
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

/* ---- create ---------------------------------------------------------------- */

static void test_create(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    int st = 0;
    const char *names[NODES] = {"t", "u", "v"};
    for (int i = 0; i < NODES; i++) {      /* node i takes it, wherever the leader is */
        int64_t t0 = now_ms();
        int rc;
        while ((rc = create_call(i, names[i], QUEUES, 0, &st, err)) != 0 &&
               st == 14 && now_ms() - t0 < WAIT_MS)
            rn_test_sleep_ms(50);            /* UNAVAILABLE while the controller elects */
        CHECK(rc == 0, "CreateTopic %s on node %d: %s", names[i], i + 1, err);
    }
    for (int i = 0; i < NODES; i++) {
        unsigned leaders = 0;
        for (uint32_t q = 0; q < QUEUES; q++) {
            qstate_t s = wait_queue(i, names[i], q, p_exists, NULL, "the topic");
            assert_int_equal(s.epoch, 1);
            assert_int_equal(s.nrep, NODES);
            assert_int_equal(s.nisr, NODES);
            assert_true(in_set(s.replicas, s.nrep, s.leader));
            leaders |= 1u << (s.leader - 1);
        }
        assert_int_equal(leaders, (1u << NODES) - 1);      /* spread over the nodes */
        /* every node has the topic with its queues */
        for (int k = 0; k < NODES; k++) {
            Runnel__V1__DescribeTopicRequest dr = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
            dr.name = (char *)names[i];
            ProtobufCMessage *m = NULL;
            int64_t t0 = now_ms();
            while (rn_rpc_call(g->n[k]->rpc, RN_RPC_METHOD("DescribeTopic"), &dr.base,
                               &runnel__v1__topic_info__descriptor, &m, CALL_MS, &st, err) != 0) {
                CHECK(now_ms() - t0 < WAIT_MS, "node %d lacks topic %s: %s", k + 1, names[i], err);
                rn_test_sleep_ms(20);
            }
            assert_int_equal(((Runnel__V1__TopicInfo *)m)->queue_count, QUEUES);
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    assert_int_not_equal(create_call(1, "t", 1, 0, &st, err), 0);
    assert_int_equal(st, 6);                                  /* ALREADY_EXISTS */
    assert_int_not_equal(create_call(2, "w", 1, 4, &st, err), 0);
    assert_int_equal(st, 3);
    CHECK(strstr(err, "the cluster has 3 nodes; give 1..3") != NULL, "%s", err);
    /* A remap would change one node only: refused on any node (deleting and
     * altering go through the controller: tests/test_cluster_members.c). */
    for (int i = 0; i < NODES; i++) {
        ProtobufCMessage *m = NULL;
        Runnel__V1__RemapQueueRequest rq = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
        rq.topic = (char *)"t";
        assert_int_not_equal(rn_rpc_call(g->n[i]->rpc, RN_RPC_METHOD("RemapQueue"), &rq.base,
                                         &runnel__v1__topic_info__descriptor, &m, CALL_MS, &st,
                                         err), 0);
        CHECK(st == 9 && strstr(err, "remapping a queue of") != NULL, "%d %s", st, err);
    }
}

/* ---- acks all --------------------------------------------------------------- */

static int64_t local_end(srv_t *s, const char *topic, uint32_t q) { return hwm_of(s, topic, q); }

static void test_acks_all(void **state)
{
    (void)state;
    int sizes[] = {1, 7, 100, 600, 3, 300};
    int first = 0;
    for (uint32_t q = 0; q < QUEUES; q++) {
        qstate_t s = queue_state("t", q);
        srv_t *l = node(s.leader);
        int64_t end = local_end(l, "t", q);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            batch_t b;
            make_batch(&b, k % 2 ? RN_BATCH_CODEC_LZ4 : RN_BATCH_CODEC_NONE, sizes[k], first, -1, 0, 0);
            first += sizes[k];
            int64_t base = -1, hwm = -1;
            CHECK(produce(l, "t", q, &b, 1, 0, &base, NULL, &hwm) == 0, "produce t/%u", q);
            assert_int_equal(base, end);
            end += sizes[k];
            assert_int_equal(hwm, end);          /* the answer's high watermark covers it */
            for (size_t r = 0; r < s.nrep; r++) {
                int64_t e = local_end(node(s.replicas[r]), "t", q);
                CHECK(e >= end, "t/%u: acked up to %lld but node %llu holds %lld", q,
                      (long long)end, (unsigned long long)s.replicas[r], (long long)e);
            }
            batch_free(&b);
        }
    }
}

/* ---- not leader ---------------------------------------------------------------- */

static void test_not_leader(void **state)
{
    (void)state;
    qstate_t s = queue_state("t", 1);
    uint64_t f = s.replicas[0] == s.leader ? s.replicas[1] : s.replicas[0];
    int64_t before = local_end(node(f), "t", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 5, 0, -1, 0, 0);
    char err[RN_ERRMSG_SIZE], want[160];
    int st = 0;
    assert_int_not_equal(produce_err(node(f), "t", 1, &b, 1, &st, err), 0);
    snprintf(want, sizeof want, "not leader of t/1: leader is node %llu at 127.0.0.1:%d",
             (unsigned long long)s.leader, node(s.leader)->port);
    assert_int_equal(st, 9);                                   /* FAILED_PRECONDITION */
    CHECK(strstr(err, want) != NULL, "'%s' does not say '%s'", err, want);
    rn_test_sleep_ms(100);
    assert_int_equal(local_end(node(f), "t", 1), before);     /* nothing stored there */
    Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
    req.topic = "t";
    req.queue = 1;
    ProtobufCMessage *m = NULL;
    assert_int_not_equal(rn_rpc_call(node(f)->rpc, RN_RPC_METHOD("Fetch"), &req.base,
                                     &runnel__v1__fetch_response__descriptor, &m, CALL_MS, &st,
                                     err), 0);
    assert_int_equal(st, 9);
    CHECK(strstr(err, want) != NULL, "'%s' does not say '%s'", err, want);
    batch_free(&b);
}

/* ---- consumers see the high watermark only ---------------------------------- */

static void test_hwm(void **state)
{
    (void)state;
    qstate_t s = queue_state("t", 2);
    srv_t *l = node(s.leader);
    int64_t end = local_end(l, "t", 2);
    for (size_t r = 0; r < s.nrep; r++)
        if (s.replicas[r] != s.leader) kill(node(s.replicas[r])->pid, SIGSTOP);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 10, 0, -1, 0, 0);
    int64_t base = -1;
    assert_int_equal(produce(l, "t", 2, &b, 1, 1, &base, NULL, NULL), 0);   /* ACKS_WRITTEN */
    assert_int_equal(base, end);
    rn_test_sleep_ms(300);
    fetch_t f;
    assert_int_equal(fetch(l, "t", 2, end, 0, 0, &f), 0);
    int none = f.nbatches == 0 && f.hwm == end;
    int64_t seen = f.hwm;
    fetch_free(&f);
    for (size_t r = 0; r < s.nrep; r++)
        if (s.replicas[r] != s.leader) kill(node(s.replicas[r])->pid, SIGCONT);
    CHECK(none, "t/2: a consumer saw records the followers did not have (hwm %lld, end %lld)",
          (long long)seen, (long long)end);
    /* once the followers copy it, consumers see it */
    int64_t t0 = now_ms();
    for (;;) {
        assert_int_equal(fetch(l, "t", 2, end, 0, 1000, &f), 0);
        int got = f.nbatches == 1;
        if (got) assert_int_equal(check_records(&f, end), end + 10);
        fetch_free(&f);
        if (got) break;
        CHECK(now_ms() - t0 < WAIT_MS, "t/2: the record never became visible");
    }
    batch_free(&b);
}

/* ---- ISR shrink and rejoin -------------------------------------------------------- */

static void test_isr(void **state)
{
    (void)state;
    qstate_t s = queue_state("u", 0);
    uint64_t f = s.replicas[0] == s.leader ? s.replicas[1] : s.replicas[0];
    int li = (int)s.leader - 1;
    kill(node(f)->pid, SIGSTOP);
    int64_t t0 = now_ms();
    size_t two = 2;
    s = wait_queue(li, "u", 0, p_isr_is, &two, "the ISR shrinking to two");
    printf("isr: node %llu left the ISR of u/0 after %lld ms\n", (unsigned long long)f,
           (long long)(now_ms() - t0));
    assert_false(in_set(s.isr, s.nisr, f));
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 50, 0, -1, 0, 0);
    int64_t base;
    CHECK(produce(node(s.leader), "u", 0, &b, 1, 0, &base, NULL, NULL) == 0,
          "acks all with two in-sync replicas");
    kill(node(f)->pid, SIGCONT);
    t0 = now_ms();
    s = wait_queue(li, "u", 0, p_isr_has, &f, "the follower joining the ISR again");
    printf("isr: node %llu back in the ISR of u/0 %lld ms after SIGCONT\n", (unsigned long long)f,
           (long long)(now_ms() - t0));
    assert_true(local_end(node(f), "u", 0) >= base + 50);
    batch_free(&b);
}

/* ---- min_insync_replicas ----------------------------------------------------------- */

/* A topic of two replicas whose follower stops: the ISR shrinks to the
 * leader alone, below min_insync_replicas (2): a produce is refused with
 * FAILED_PRECONDITION naming it, nothing stored; once the follower is back
 * in the ISR the same produce is acknowledged. */
static void test_min_isr(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    int st = 0;
    CHECK(create_call(0, "w", 1, 2, &st, err) == 0, "CreateTopic w: %s", err);
    qstate_t s = queue_state("w", 0);
    assert_int_equal(s.nrep, 2);
    uint64_t f = s.replicas[0] == s.leader ? s.replicas[1] : s.replicas[0];
    int li = (int)s.leader - 1;
    size_t two = 2, one = 1;
    wait_queue(li, "w", 0, p_isr_is, &two, "a full ISR");
    kill(node(f)->pid, SIGSTOP);
    wait_queue(li, "w", 0, p_isr_is, &one, "the ISR shrinking to the leader");
    int64_t end = local_end(node(s.leader), "w", 0);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 4, 0, -1, 0, 0);
    int rc = produce_err(node(s.leader), "w", 0, &b, 1, &st, err);
    kill(node(f)->pid, SIGCONT);
    CHECK(rc != 0 && st == 9 && strstr(err, "min_insync_replicas is 2") &&
          strstr(err, "nothing stored"), "a produce below min_insync_replicas: rc %d status %d "
          "'%s'", rc, st, err);
    assert_int_equal(local_end(node(s.leader), "w", 0), end);
    wait_queue(li, "w", 0, p_isr_is, &two, "the follower back in the ISR");
    int64_t base = -1;
    int64_t t0 = now_ms();
    while (produce(node(s.leader), "w", 0, &b, 1, 0, &base, NULL, NULL) != 0) {
        CHECK(now_ms() - t0 < WAIT_MS, "w/0: no acks all with the follower back");
        rn_test_sleep_ms(50);
    }
    assert_int_equal(base, end);
    assert_true(local_end(node(f), "w", 0) >= end + 4);
    batch_free(&b);
}

/* ---- failover ----------------------------------------------------------------------- */

typedef struct acked {
    int     first, n;          /* record values rec-first .. rec-first+n-1 */
    int64_t base;
} acked_t;

static void test_failover(void **state)
{
    (void)state;
    const char *topic = "v";
    /* A queue led by a node that is not the controller leader: the kill
     * then measures the queue's failover, not a controller election too. */
    uint64_t ctl = 0;
    uint32_t fq = 0;
    qstate_t s;
    for (int64_t t0 = now_ms(); !ctl; rn_test_sleep_ms(20)) {
        Runnel__V1__ClusterStatusRequest req = RUNNEL__V1__CLUSTER_STATUS_REQUEST__INIT;
        ProtobufCMessage *m = NULL;
        char err[RN_ERRMSG_SIZE];
        if (rn_rpc_call(g->n[0]->rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                        &runnel__v1__cluster_status_response__descriptor, &m, 2000, NULL,
                        err) == 0) {
            ctl = ((Runnel__V1__ClusterStatusResponse *)m)->leader_id;
            protobuf_c_message_free_unpacked(m, NULL);
        }
        CHECK(now_ms() - t0 < WAIT_MS, "no controller leader");
    }
    for (fq = 0; fq < QUEUES; fq++) {
        s = queue_state(topic, fq);
        if (s.leader != ctl) break;
    }
    CHECK(fq < QUEUES, "every queue of %s is led by the controller leader", topic);
    /* everyone live and in sync first (the isr test may have moved things) */
    size_t three = NODES;
    s = wait_queue((int)s.leader - 1, topic, fq, p_isr_is, &three, "a full ISR");
    uint64_t old = s.leader;
    acked_t *acks = calloc(10000, sizeof *acks);
    assert_non_null(acks);
    size_t nacks = 0;
    int next = 0;
    uint64_t target = old;
    int64_t killed_at = 0, first_after = -1;
    for (int round = 0; nacks < 10000; round++) {
        if (round == 40) {
            kill(node(old)->pid, SIGKILL);
            waitpid(node(old)->pid, NULL, 0);
            node(old)->pid = 0;
            rn_rpc_close(node(old)->rpc);
            node(old)->rpc = NULL;
            g->dead |= 1 << (old - 1);
            killed_at = now_ms();
        }
        if (killed_at && first_after >= 0 && now_ms() - first_after > 500) break;
        CHECK(!killed_at || now_ms() - killed_at < WAIT_MS, "no produce acknowledged within %d ms "
              "of the kill", WAIT_MS);
        batch_t b;
        int n = 1 + round % 13;
        make_batch(&b, RN_BATCH_CODEC_NONE, n, next, -1, 0, 0);
        next += n;                           /* a retry sends new values: acked ones stay unique */
        int64_t base = -1;
        char err[RN_ERRMSG_SIZE];
        int st = 0;
        srv_t *l = node(target);
        int rc = l->rpc ? produce_call(l, topic, fq, &b, 1, 0, &base, NULL, NULL, &st, err) : -1;
        batch_free(&b);
        if (rc == 0) {
            acks[nacks].first = next - n;
            acks[nacks].n = n;
            acks[nacks].base = base;
            nacks++;
            if (killed_at && first_after < 0) {
                first_after = now_ms();
                printf("failover: first acknowledged produce %lld ms after kill -9 of node %llu, "
                       "leader of %s/%u (new leader node %llu; controller leader node %llu)\n",
                       (long long)(first_after - killed_at), (unsigned long long)old, topic, fq,
                       (unsigned long long)target, (unsigned long long)ctl);
            }
            continue;
        }
        rn_test_sleep_ms(20);
        qstate_t ns = queue_state(topic, fq);
        if (ns.leader && ns.leader != old) target = ns.leader;
    }
    CHECK(first_after >= 0, "no produce acknowledged after the kill");
    qstate_t ns = queue_state(topic, fq);
    assert_int_not_equal(ns.leader, old);
    assert_int_equal(ns.epoch, s.epoch + 1);
    assert_true(in_set(s.isr, s.nisr, ns.leader));
    /* every acknowledged record on the new leader, once, in order */
    srv_t *l = node(ns.leader);
    int64_t end = local_end(l, topic, fq), off = 0;
    size_t k = 0;
    int seen_at = -1;
    while (off < end) {
        fetch_t f;
        assert_int_equal(fetch(l, topic, fq, off, 1 << 20, 0, &f), 0);
        rn_batch_iter_t it;
        rn_batch_iter_init(&it, &rn_batch_default_limits);
        size_t pos = 0;
        char err[RN_ERRMSG_SIZE];
        while (pos < f.len) {
            size_t size;
            assert_int_equal(rn_batch_size(f.data + pos, f.len - pos, &size), 0);
            assert_int_equal(rn_batch_iter_reset(&it, f.data + pos, size, err), 0);
            rn_record_t r;
            while (rn_batch_iter_next(&it, &r, err) == 1) {
                int v = -1;
                assert_int_equal(sscanf((const char *)r.value, "rec-%8d", &v), 1);
                assert_true(v > seen_at);               /* in order, never twice */
                seen_at = v;
                while (k < nacks && acks[k].first + acks[k].n <= v) {
                    CHECK(0, "acknowledged records rec-%d..%d are missing on the new leader",
                          acks[k].first, acks[k].first + acks[k].n - 1);
                }
                if (k < nacks && v >= acks[k].first) {
                    assert_int_equal(r.offset, acks[k].base + (v - acks[k].first));
                    if (v == acks[k].first + acks[k].n - 1) k++;
                }
                off = r.offset + 1;
            }
            pos += size;
        }
        rn_batch_iter_destroy(&it);
        fetch_free(&f);
    }
    CHECK(k == nacks, "%zu of %zu acknowledged batches found on the new leader", k, nacks);
    printf("failover: %zu acknowledged batches, all on the new leader once, in order\n", nacks);
    free(acks);
    g->old_leader = old;
    g->old_queue = fq;
}

/* 1 when the node's log says its copy of topic/q diverged. */
static int said_diverged(srv_t *s, const char *topic, uint32_t q)
{
    char *log = rn_test_slurp(s->logf, NULL);
    char want[128];
    snprintf(want, sizeof want, "%s/%u: fetch from", topic, q);
    int hit = 0;
    for (char *p = log; p && (p = strstr(p, want)) != NULL; p++) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        if (strstr(p, "diverged")) hit = 1;
        if (eol) *eol = '\n';
    }
    free(log);
    return hit;
}

/* The killed leader starts again: a follower of its old queue now. It
 * either joins the ISR again (its log a prefix of the new leader's: it had
 * nothing the others lacked) or, when kill -9 left it a batch nobody else
 * had, says so ("diverged") and stays out of the ISR: never an ISR member
 * with other records at an offset (test_identical checks the bytes). */
static void test_old_leader_returns(void **state)
{
    (void)state;
    uint64_t old = g->old_leader;
    assert_true(old >= 1);
    srv_start(node(old));               /* asked below only once it is back in sync */
    int64_t t0 = now_ms();
    for (;;) {
        qstate_t s = queue_state("v", g->old_queue);
        if (in_set(s.isr, s.nisr, old)) {
            printf("old leader: node %llu back in the ISR of v/%u after %lld ms\n",
                   (unsigned long long)old, g->old_queue, (long long)(now_ms() - t0));
            break;
        }
        if (said_diverged(node(old), "v", g->old_queue)) {
            printf("old leader: node %llu diverged on v/%u (a batch only it had); kept out of "
                   "the ISR\n", (unsigned long long)old, g->old_queue);
            rn_test_sleep_ms(2000);
            s = queue_state("v", g->old_queue);
            assert_false(in_set(s.isr, s.nisr, old));
            break;
        }
        CHECK(now_ms() - t0 < WAIT_MS, "node %llu neither rejoined v/%u nor said it diverged",
              (unsigned long long)old, g->old_queue);
        rn_test_sleep_ms(50);
    }
    g->dead &= ~(1 << (old - 1));
    /* its other queues (it followed them) come back in sync */
    for (uint32_t q = 0; q < QUEUES; q++) {
        qstate_t s = queue_state("t", q);
        if (!in_set(s.replicas, s.nrep, old)) continue;
        wait_queue((int)s.leader - 1, "t", q, p_isr_has, &old, "the returned node in sync");
    }
}

/* ---- a diverged replica is cut and copies again ------------------------------------- */

static int p_leader_is_not(const qstate_t *s, void *arg)
{
    return s->leader && s->leader != *(uint64_t *)arg;
}

/* The leader of x/0 stores a batch nobody else gets (followers stopped,
 * ACKS_WRITTEN), then dies; the new leader takes other batches at those
 * offsets. The old leader, started again, must find the records it alone
 * had, cut them, copy the new leader's, and join the ISR: test_identical
 * then finds it byte for byte equal. */
static void test_diverged(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    int st = 0;
    int64_t t0 = now_ms();
    while (create_call(0, "x", 1, 3, &st, err) != 0) {
        CHECK(now_ms() - t0 < WAIT_MS, "CreateTopic x: %s", err);
        rn_test_sleep_ms(50);
    }
    qstate_t s = queue_state("x", 0);
    size_t three = NODES;
    s = wait_queue((int)s.leader - 1, "x", 0, p_isr_is, &three, "a full ISR");
    uint64_t old = s.leader;
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 20, 0, -1, 0, 0);
    int64_t base;
    CHECK(produce(node(old), "x", 0, &b, 1, 0, &base, NULL, NULL) == 0, "x/0 acks all");
    batch_free(&b);
    int64_t acked = base + 20;
    for (size_t r = 0; r < s.nrep; r++)
        if (s.replicas[r] != old) kill(node(s.replicas[r])->pid, SIGSTOP);
    make_batch(&b, RN_BATCH_CODEC_NONE, 7, 9000, -1, 0, 0);      /* only the old leader's */
    assert_int_equal(produce(node(old), "x", 0, &b, 1, 1, &base, NULL, NULL), 0);
    assert_int_equal(base, acked);
    batch_free(&b);
    kill(node(old)->pid, SIGKILL);
    waitpid(node(old)->pid, NULL, 0);
    node(old)->pid = 0;
    rn_rpc_close(node(old)->rpc);
    node(old)->rpc = NULL;
    g->dead |= 1 << (old - 1);
    for (size_t r = 0; r < s.nrep; r++)
        if (s.replicas[r] != old) kill(node(s.replicas[r])->pid, SIGCONT);
    int other = old == 1 ? 1 : 0;
    qstate_t ns = wait_queue(other, "x", 0, p_leader_is_not, &old, "a new leader of x/0");
    make_batch(&b, RN_BATCH_CODEC_NONE, 3, 20, -1, 0, 0);       /* other records, same offset */
    t0 = now_ms();
    for (;;) {
        ns = queue_state("x", 0);
        if (ns.leader != old && produce(node(ns.leader), "x", 0, &b, 1, 0, &base, NULL, NULL) == 0)
            break;
        CHECK(now_ms() - t0 < WAIT_MS, "x/0: the new leader takes no produce");
        rn_test_sleep_ms(50);
    }
    assert_int_equal(base, acked);
    batch_free(&b);
    srv_start(node(old));
    int li = (int)ns.leader - 1;
    t0 = now_ms();
    wait_queue(li, "x", 0, p_isr_has, &old, "the old leader back in the ISR after its cut");
    printf("diverged: node %llu cut its own records and rejoined the ISR of x/0 in %lld ms\n",
           (unsigned long long)old, (long long)(now_ms() - t0));
    g->dead &= ~(1 << (old - 1));
    char *log = rn_test_slurp(node(old)->logf, NULL);
    CHECK(log && strstr(log, "x/0: diverged from the leader: cut [20, 27)"),
          "node %llu's log does not say it cut [20, 27) of x/0", (unsigned long long)old);
    free(log);
    assert_int_equal(local_end(node(old), "x", 0), acked + 3);
}

/* ---- identical bytes ----------------------------------------------------------------- */

/* Every batch of (topic, q) in the stopped node's data directory. */
static void read_all(srv_t *s, const char *topic, uint32_t q, rn_buf_t *out)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    rn_datadir_t *d = NULL;
    char err[RN_ERRMSG_SIZE];
    CHECK(rn_datadir_open(s->data, &o, &d, err) == 0, "open %s: %s", s->data, err);
    rn_datadir_queue_t dq;
    assert_int_equal(rn_datadir_queue_open(d, topic, q, &dq, err), 0);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &dq, &info, err), 0);
    int64_t off = info.log_start;
    while (off < info.high_watermark) {
        size_t from = out->len;
        uint32_t nb = 0;
        assert_int_equal(rn_datadir_read(d, &dq, off, 1 << 20, out, &nb, err), 0);
        assert_true(nb > 0);
        size_t pos = from;
        while (pos < out->len) {
            off = (int64_t)rn_be64_get(out->data + pos) + rn_be32_get(out->data + pos + 57);
            pos += 12 + rn_be32_get(out->data + pos + 8);
        }
    }
    rn_datadir_queue_close(&dq);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void test_identical(void **state)
{
    (void)state;
    const char *topics[] = {"t", "u", "v", "x"};
    uint32_t nq[] = {QUEUES, QUEUES, QUEUES, 1};
    qstate_t qs[4][QUEUES];
    for (int t = 0; t < 4; t++)
        for (uint32_t q = 0; q < nq[t]; q++) qs[t][q] = queue_state(topics[t], q);
    rn_test_sleep_ms(1500);              /* followers copy the last batches */
    for (int i = 0; i < NODES; i++)
        if (g->n[i]->pid > 0) srv_stop(g->n[i]);
    size_t compared = 0;
    for (int t = 0; t < 4; t++) {
        for (uint32_t q = 0; q < nq[t]; q++) {
            const qstate_t *s = &qs[t][q];
            rn_buf_t lead = RN_BUF_INIT;
            read_all(node(s->leader), topics[t], q, &lead);
            for (size_t r = 0; r < s->nisr; r++) {
                if (s->isr[r] == s->leader || (g->dead & (1 << (s->isr[r] - 1)))) continue;
                rn_buf_t b = RN_BUF_INIT;
                read_all(node(s->isr[r]), topics[t], q, &b);
                CHECK(b.len == lead.len && (b.len == 0 || memcmp(b.data, lead.data, b.len) == 0),
                      "%s/%u: node %llu's %zu bytes differ from leader %llu's %zu", topics[t], q,
                      (unsigned long long)s->isr[r], b.len, (unsigned long long)s->leader,
                      lead.len);
                compared += b.len;
                rn_buf_free(&b);
            }
            rn_buf_free(&lead);
        }
    }
    printf("identical: %zu bytes compared, every ISR replica equal to its leader\n", compared);
    assert_true(compared > 0);
}

/* All three start again: the topics come back from the raft log and
 * snapshots (--cluster-snapshot-entries 4), each node's store still has
 * them (made again idempotently), and acks all works on every queue. */
static void test_restart_all(void **state)
{
    (void)state;
    for (int i = 0; i < NODES; i++) srv_start(g->n[i]);
    for (uint32_t q = 0; q < QUEUES; q++) {
        size_t three = NODES;
        qstate_t s = queue_state("t", q);
        s = wait_queue((int)s.leader - 1, "t", q, p_isr_is, &three, "a full ISR after restart");
        int64_t end = local_end(node(s.leader), "t", q);
        batch_t b;
        make_batch(&b, RN_BATCH_CODEC_NONE, 9, 0, -1, 0, 0);
        int64_t base = -1;
        int64_t t0 = now_ms();
        while (produce(node(s.leader), "t", q, &b, 1, 0, &base, NULL, NULL) != 0) {
            CHECK(now_ms() - t0 < WAIT_MS, "t/%u: no acks all after the restart", q);
            rn_test_sleep_ms(50);
            s = queue_state("t", q);
            end = local_end(node(s.leader), "t", q);
        }
        assert_int_equal(base, end);
        for (size_t r = 0; r < s.nrep; r++)
            assert_true(local_end(node(s.replicas[r]), "t", q) >= end + 9);
        batch_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_acks_all),
        cmocka_unit_test(test_not_leader),
        cmocka_unit_test(test_hwm),
        cmocka_unit_test(test_isr),
        cmocka_unit_test(test_min_isr),
        cmocka_unit_test(test_failover),
        cmocka_unit_test(test_old_leader_returns),
        cmocka_unit_test(test_diverged),
        cmocka_unit_test(test_identical),
        cmocka_unit_test(test_restart_all),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_server.c — runneld end to end over loopback gRPC: the real
 * RN_BIN_DIR/runneld is started on a free port (--listen 127.0.0.1:0
 * --port-file FILE: the file appears once calls are accepted), driven with
 * client/rpc.h calls carrying batches built by rn_batch_builder, and stopped
 * with SIGTERM, which must end it with status 0.
 *
 * Covered: produce/fetch round trips (none and LZ4, acks durable and
 * written), at-least-one-batch fetches, idempotent retries (also across a
 * restart), long-poll wake-up and timeout, every bad request (each a test:
 * status, message, nothing stored, the next call served), the data directory
 * lock naming --server, start refusals (same directory, port in use, bad
 * flags), async calls (and their cancellation by close), a streaming call,
 * an unreachable broker. Admin, group and checkpoint RPCs are in test_server_admin.c;
 * shutdown under load in test_server_load.c.
 */
#include "tests/test_server.h"

/* ---- round trips ---------------------------------------------------------- */

/* 10 batches of 100 records through Produce (one request of 5, then 5
 * single ones), read back through Fetch in small steps. */
static void roundtrip(void **state, int codec, int acks)
{
    srv_t *s = *state;
    char topic[32];
    snprintf(topic, sizeof topic, "rt-%d-%d", codec, acks);
    create_topic(s, topic, 2);
    batch_t b[10];
    for (int i = 0; i < 10; i++) make_batch(&b[i], codec, 100, i * 100, -1, -1, -1);
    int64_t base[10];
    int dup[10];
    assert_int_equal(produce(s, topic, 1, b, 5, acks, base, dup, NULL), 0);
    for (int i = 5; i < 10; i++)
        assert_int_equal(produce(s, topic, 1, &b[i], 1, acks, &base[i], &dup[i], NULL), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(base[i], i * 100);
        assert_false(dup[i]);
    }
    /* Acks written: visible once the flusher ran; wait for it (bounded). */
    wait_hwm(s, topic, 1, 1000);
    int64_t next = 0;
    int rounds = 0;
    while (next < 1000 && rounds++ < 100) {
        fetch_t f;
        assert_int_equal(fetch(s, topic, 1, next, 150 * 100, 0, &f), 0);
        assert_int_equal(f.hwm, 1000);
        assert_int_equal(f.log_start, 0);
        assert_true(f.nbatches >= 1);
        next = check_records(&f, next);
        fetch_free(&f);
    }
    assert_int_equal(next, 1000);
    /* The other queue is untouched. */
    assert_int_equal(hwm_of(s, topic, 0), 0);
    for (int i = 0; i < 10; i++) batch_free(&b[i]);
}

static void test_roundtrip_plain(void **state) { roundtrip(state, RN_BATCH_CODEC_NONE, 0); }
static void test_roundtrip_lz4(void **state) { roundtrip(state, RN_BATCH_CODEC_LZ4, 0); }
static void test_roundtrip_acks_written(void **state) { roundtrip(state, RN_BATCH_CODEC_LZ4, 1); }

/* A batch larger than max_bytes still comes back whole, alone. */
static void test_fetch_at_least_one_batch(void **state)
{
    srv_t *s = *state;
    create_topic(s, "big1", 1);
    batch_t b[3];
    for (int i = 0; i < 3; i++) make_batch(&b[i], RN_BATCH_CODEC_NONE, 500, i * 500, -1, -1, -1);
    assert_int_equal(produce(s, "big1", 0, b, 3, 0, NULL, NULL, NULL), 0);
    fetch_t f;
    assert_int_equal(fetch(s, "big1", 0, 700, 1, 0, &f), 0);
    assert_int_equal(f.nbatches, 1);
    assert_int_equal(f.len, b[1].len);
    assert_int_equal(check_records(&f, 500), 1000);   /* from the batch holding 700 */
    fetch_free(&f);
    for (int i = 0; i < 3; i++) batch_free(&b[i]);
}

/* ---- idempotent producer ------------------------------------------------------ */

static void test_idempotent_retry(void **state)
{
    srv_t *s = *state;
    create_topic(s, "idem", 1);
    int64_t pid;
    int epoch;
    init_producer(s, 0, &pid, &epoch);
    assert_true(pid >= 1);
    assert_int_equal(epoch, 0);
    batch_t b0, b1;
    make_batch(&b0, RN_BATCH_CODEC_NONE, 10, 0, pid, epoch, 0);
    make_batch(&b1, RN_BATCH_CODEC_LZ4, 10, 10, pid, epoch, 10);
    int64_t base;
    int dup;
    assert_int_equal(produce(s, "idem", 0, &b0, 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 0);
    assert_false(dup);
    /* The same batch again: acked with its offset, stored once. */
    assert_int_equal(produce(s, "idem", 0, &b0, 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 0);
    assert_true(dup);
    assert_int_equal(hwm_of(s, "idem", 0), 10);
    /* A request holding a retry and the next batch. */
    batch_t both[2] = {b0, b1};
    int64_t bases[2];
    int dups[2];
    assert_int_equal(produce(s, "idem", 0, both, 2, 0, bases, dups, NULL), 0);
    assert_int_equal(bases[0], 0);
    assert_true(dups[0]);
    assert_int_equal(bases[1], 10);
    assert_false(dups[1]);
    assert_int_equal(hwm_of(s, "idem", 0), 20);
    batch_free(&b0);
    batch_free(&b1);
}

static void test_bad_sequence_gap(void **state)
{
    srv_t *s = *state;
    create_topic(s, "gap", 1);
    int64_t pid;
    int epoch;
    init_producer(s, 0, &pid, &epoch);
    batch_t b0, b2;
    make_batch(&b0, RN_BATCH_CODEC_NONE, 5, 0, pid, epoch, 0);
    make_batch(&b2, RN_BATCH_CODEC_NONE, 5, 0, pid, epoch, 12);
    assert_int_equal(produce(s, "gap", 0, &b0, 1, 0, NULL, NULL, NULL), 0);
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "gap", 0, &b2, 1, &st, err), RN_ESTICKY);
    assert_int_equal(st, 9);    /* FAILED_PRECONDITION */
    assert_non_null(strstr(err, "expected 5, got 12"));
    assert_int_equal(hwm_of(s, "gap", 0), 5);
    batch_free(&b0);
    batch_free(&b2);
    served_still(s);
}

static void test_bad_sequence_old(void **state)
{
    srv_t *s = *state;
    create_topic(s, "old", 1);
    int64_t pid;
    int epoch;
    init_producer(s, 0, &pid, &epoch);
    batch_t b[8];
    for (int i = 0; i < 8; i++) {
        make_batch(&b[i], RN_BATCH_CODEC_NONE, 2, 0, pid, epoch, i * 2);
        assert_int_equal(produce(s, "old", 0, &b[i], 1, 0, NULL, NULL, NULL), 0);
    }
    /* Batch 0 fell out of the window of 5: refused, not stored again. */
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "old", 0, &b[0], 1, &st, err), RN_ESTICKY);
    assert_int_equal(st, 9);
    assert_non_null(strstr(err, "expected 16, got 0"));
    /* Batch 4 is in the window: a duplicate. */
    int64_t base;
    int dup;
    assert_int_equal(produce(s, "old", 0, &b[4], 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 8);
    assert_true(dup);
    assert_int_equal(hwm_of(s, "old", 0), 16);
    for (int i = 0; i < 8; i++) batch_free(&b[i]);
}

static void test_bad_stale_epoch(void **state)
{
    srv_t *s = *state;
    create_topic(s, "fence", 1);
    int64_t pid, pid2;
    int epoch, epoch2;
    init_producer(s, 0, &pid, &epoch);
    init_producer(s, pid, &pid2, &epoch2);
    assert_int_equal(pid2, pid);
    assert_int_equal(epoch2, epoch + 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 3, 0, pid, epoch, 0);
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "fence", 0, &b, 1, &st, err), RN_ESTICKY);
    assert_int_equal(st, 9);
    assert_non_null(strstr(err, "stale"));
    assert_int_equal(hwm_of(s, "fence", 0), 0);
    batch_free(&b);
    /* An id the broker never issued. */
    Runnel__V1__InitProducerRequest req = RUNNEL__V1__INIT_PRODUCER_REQUEST__INIT;
    req.producer_id = 999999;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("InitProducer"), &req.base,
                                 &runnel__v1__init_producer_response__descriptor, &resp, 5000,
                                 &st, err), RN_ENOTFOUND);
    served_still(s);
}

/* A retry after a restart still lands exactly once; ids keep counting. */
static void test_idempotent_across_restart(void **state)
{
    srv_t *s = *state;
    create_topic(s, "restart", 1);
    int64_t pid;
    int epoch;
    init_producer(s, 0, &pid, &epoch);
    batch_t b[3];
    for (int i = 0; i < 3; i++) {
        make_batch(&b[i], RN_BATCH_CODEC_LZ4, 7, i * 7, pid, epoch, i * 7);
        assert_int_equal(produce(s, "restart", 0, &b[i], 1, 0, NULL, NULL, NULL), 0);
    }
    srv_restart(s);
    int64_t base;
    int dup;
    assert_int_equal(produce(s, "restart", 0, &b[2], 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 14);
    assert_true(dup);
    assert_int_equal(hwm_of(s, "restart", 0), 21);
    batch_t nb;
    make_batch(&nb, RN_BATCH_CODEC_NONE, 1, 21, pid, epoch, 21);
    assert_int_equal(produce(s, "restart", 0, &nb, 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 21);
    assert_false(dup);
    int64_t pid2;
    int epoch2;
    init_producer(s, 0, &pid2, &epoch2);
    assert_true(pid2 > pid);
    for (int i = 0; i < 3; i++) batch_free(&b[i]);
    batch_free(&nb);
}

/* ---- long polling ------------------------------------------------------------ */

typedef struct poller {
    srv_t   *s;
    int64_t  offset;
    uint32_t wait_ms;
    fetch_t  f;
    int      rc;
    uint64_t ns;
} poller_t;

static void *poll_main(void *arg)
{
    poller_t *p = arg;
    uint64_t t0 = rn_mono_ns();
    p->rc = fetch(p->s, "poll", 0, p->offset, 0, p->wait_ms, &p->f);
    p->ns = rn_mono_ns() - t0;
    return NULL;
}

static void test_long_poll_wakeup(void **state)
{
    srv_t *s = *state;
    create_topic(s, "poll", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 4, 0, -1, -1, -1);
    assert_int_equal(produce(s, "poll", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    poller_t p = {s, 4, 10000, {0}, -1, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poll_main, &p), 0);
    usleep(300 * 1000);                       /* let it park */
    uint64_t t0 = rn_mono_ns();
    assert_int_equal(produce(s, "poll", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.f.nbatches, 1);
    assert_int_equal(check_records(&p.f, 4), 8);
    /* It answered on the append, long before its 10 s wait. */
    assert_true(p.ns >= 250ull * 1000000);
    assert_true(rn_mono_ns() - t0 < 2000ull * 1000000);
    fetch_free(&p.f);
    /* Nothing comes: an empty answer after max_wait_ms. */
    poller_t q = {s, 8, 300, {0}, -1, 0};
    poll_main(&q);
    assert_int_equal(q.rc, 0);
    assert_int_equal(q.f.nbatches, 0);
    assert_int_equal(q.f.hwm, 8);
    assert_true(q.ns >= 280ull * 1000000);
    assert_true(q.ns < 3000ull * 1000000);
    fetch_free(&q.f);
    /* A call deadline shorter than max_wait_ms: answered (empty) before it. */
    Runnel__V1__FetchRequest fr = RUNNEL__V1__FETCH_REQUEST__INIT;
    fr.topic = "poll";
    fr.offset = 8;
    fr.max_wait_ms = 20000;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    int st;
    uint64_t t1 = rn_mono_ns();
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("Fetch"), &fr.base,
                                 &runnel__v1__fetch_response__descriptor, &m, 700, &st, err), 0);
    assert_true(rn_mono_ns() - t1 < 5000ull * 1000000);
    assert_int_equal(((Runnel__V1__FetchResponse *)m)->batch_count, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    batch_free(&b);
}

/* ---- bad requests: status, message, nothing stored, still serving --------------- */

static void test_bad_malformed_message(void **state)
{
    srv_t *s = *state;
    create_topic(s, "malformed", 1);
    /* A CreateCheckpointRequest's field 2 is a string; Produce's is a
     * varint: the broker cannot parse it as a ProduceRequest. */
    Runnel__V1__CreateCheckpointRequest req = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    req.group = "malformed";
    req.name = "xyz";
    ProtobufCMessage *resp = NULL;
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("Produce"), &req.base,
                                 &runnel__v1__produce_response__descriptor, &resp, 5000, &st, err),
                     RN_EINVAL);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "malformed ProduceRequest"));
    assert_int_equal(hwm_of(s, "malformed", 0), 0);
    served_still(s);
}

static void test_bad_crc(void **state)
{
    srv_t *s = *state;
    create_topic(s, "badcrc", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 10, 0, -1, -1, -1);
    b.data[b.len - 3] ^= 0x5a;
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "badcrc", 0, &b, 1, &st, err), RN_EINVAL);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "batch 1 of 1"));
    assert_non_null(strstr(err, "crc"));
    assert_int_equal(hwm_of(s, "badcrc", 0), 0);
    batch_free(&b);
    served_still(s);
}

static void test_bad_length(void **state)
{
    srv_t *s = *state;
    create_topic(s, "badlen", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 10, 0, -1, -1, -1);
    b.len -= 7;                                /* truncated: batchLength says more */
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "badlen", 0, &b, 1, &st, err), RN_EINVAL);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "batch 1 of 1"));
    assert_int_equal(hwm_of(s, "badlen", 0), 0);
    batch_free(&b);
    served_still(s);
}

/* recordCount and lastOffsetDelta agree, the CRC is right, but the records
 * say otherwise: only deep validation sees it. */
static void test_bad_record_count(void **state)
{
    srv_t *s = *state;
    create_topic(s, "badcount", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 10, 0, -1, -1, -1);
    put_be32(b.data + 23, 10);                 /* lastOffsetDelta */
    put_be32(b.data + 57, 11);                 /* recordCount */
    put_be32(b.data + 17, rn_crc32c(0, b.data + 21, b.len - 21));
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "badcount", 0, &b, 1, &st, err), RN_EINVAL);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "batch 1 of 1"));
    assert_int_equal(hwm_of(s, "badcount", 0), 0);
    batch_free(&b);
    served_still(s);
}

/* One bad batch among good ones: none is stored. */
static void test_bad_batch_all_or_nothing(void **state)
{
    srv_t *s = *state;
    create_topic(s, "allornone", 1);
    batch_t b[3];
    for (int i = 0; i < 3; i++) make_batch(&b[i], RN_BATCH_CODEC_LZ4, 10, i * 10, -1, -1, -1);
    b[2].data[30] ^= 1;
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "allornone", 0, b, 3, &st, err), RN_EINVAL);
    assert_non_null(strstr(err, "batch 3 of 3"));
    assert_int_equal(hwm_of(s, "allornone", 0), 0);
    for (int i = 0; i < 3; i++) batch_free(&b[i]);
    served_still(s);
}

static void test_bad_oversized_batch(void **state)
{
    srv_t *s = *state;
    create_topic(s, "huge", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 1200, 0, -1, -1, -1);   /* > 64 KiB */
    assert_true(b.len > SRV_MAX_BATCH);
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "huge", 0, &b, 1, &st, err), RN_ETOOBIG);
    assert_int_equal(st, 8);    /* RESOURCE_EXHAUSTED */
    assert_non_null(strstr(err, "batch 1 of 1"));
    assert_int_equal(hwm_of(s, "huge", 0), 0);
    batch_free(&b);
    served_still(s);
}

static void test_bad_unknown_topic_and_queue(void **state)
{
    srv_t *s = *state;
    create_topic(s, "known", 2);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 1, 0, -1, -1, -1);
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(produce_err(s, "nosuchtopic", 0, &b, 1, &st, err), RN_ENOTFOUND);
    assert_int_equal(st, 5);
    assert_non_null(strstr(err, "unknown topic 'nosuchtopic'"));
    assert_int_equal(produce_err(s, "known", 7, &b, 1, &st, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "queues 0..1"));
    fetch_t f;
    Runnel__V1__FetchRequest fr = RUNNEL__V1__FETCH_REQUEST__INIT;
    fr.topic = "nosuchtopic";
    ProtobufCMessage *resp = NULL;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("Fetch"), &fr.base,
                                 &runnel__v1__fetch_response__descriptor, &resp, 5000, &st, err),
                     RN_ENOTFOUND);
    (void)f;
    batch_free(&b);
    served_still(s);
}

static void test_bad_fetch_out_of_range(void **state)
{
    srv_t *s = *state;
    create_topic(s, "range", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 5, 0, -1, -1, -1);
    assert_int_equal(produce(s, "range", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    Runnel__V1__FetchRequest fr = RUNNEL__V1__FETCH_REQUEST__INIT;
    fr.topic = "range";
    fr.offset = 99;
    ProtobufCMessage *resp = NULL;
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("Fetch"), &fr.base,
                                 &runnel__v1__fetch_response__descriptor, &resp, 5000, &st, err),
                     RN_ERANGE);
    assert_int_equal(st, 11);
    assert_non_null(strstr(err, "[0, 5]"));
    batch_free(&b);
    served_still(s);
}

static void test_bad_acks_and_empty(void **state)
{
    srv_t *s = *state;
    create_topic(s, "empty", 1);
    Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
    req.topic = "empty";
    ProtobufCMessage *resp = NULL;
    char err[RN_ERRMSG_SIZE];
    int st;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("Produce"), &req.base,
                                 &runnel__v1__produce_response__descriptor, &resp, 5000, &st, err),
                     RN_EINVAL);
    assert_non_null(strstr(err, "needs batches"));
    served_still(s);
}

/* ---- the lock, the transport ----------------------------------------------------- */

static void test_lock_suggests_server(void **state)
{
    srv_t *s = *state;
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    rn_datadir_t *d = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_datadir_open(s->data, &o, &d, err), RN_ELOCKED);
    assert_non_null(strstr(err, "runneld"));
    assert_non_null(strstr(err, "--server"));
}

/* Run runneld with argv to completion (bounded); its exit status, stderr in
 * log. */
static int run_runneld(char *const *argv, const char *log)
{
    char *v[32];                     /* argv, then --allow-root when uid 0 */
    int n = 0;
    while (argv[n] && n < 30) { v[n] = argv[n]; n++; }
    if (getuid() == 0) v[n++] = "--allow-root";
    v[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        execv(RN_BIN_DIR "/runneld", v);
        _exit(127);
    }
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static int log_has(const char *log, const char *what)
{
    char buf[4096];
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, what) != NULL;
}

/* A second broker on the same data directory, one on a port in use, and
 * bad flags and addresses: each exits non-zero naming the problem. */
static void test_start_refusals(void **state)
{
    srv_t *s = *state;
    char log[PATH_MAX], other[PATH_MAX], listen[64];
    snprintf(log, sizeof log, "%s/second.log", s->root);
    snprintf(other, sizeof other, "%s/other", s->root);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", free_port());
    char *same_dir[] = {"runneld", "--data", s->data, "--listen", listen, NULL};
    assert_int_equal(run_runneld(same_dir, log), 1);
    assert_true(log_has(log, "in use by"));
    assert_true(log_has(log, "--server"));
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    char *same_port[] = {"runneld", "--data", other, "--listen", listen, NULL};
    assert_int_equal(run_runneld(same_port, log), 1);
    assert_true(log_has(log, "cannot listen on"));
    char *bad_fsync[] = {"runneld", "--data", other, "--fsync", "sometimes", NULL};
    assert_int_equal(run_runneld(bad_fsync, log), 2);
    assert_true(log_has(log, "--fsync"));
    char *no_data[] = {"runneld", NULL};
    assert_int_equal(run_runneld(no_data, log), 2);
    assert_true(log_has(log, "give --data DIR"));
    /* a port out of range is refused, not wrapped (99999 would be 34463) */
    char *big_port[] = {"runneld", "--data", other, "--listen", "127.0.0.1:99999", NULL};
    assert_int_equal(run_runneld(big_port, log), 2);
    assert_true(log_has(log, "--listen: bad port in address '127.0.0.1:99999': a port is 0"));
    char *v6[] = {"runneld", "--data", other, "--kafka-listen", "::1:9092", NULL};
    assert_int_equal(run_runneld(v6, log), 2);
    assert_true(log_has(log, "an IPv6 host is written [ADDR]:PORT"));
    char *adv0[] = {"runneld", "--data", other, "--kafka-listen", "127.0.0.1:0",
                    "--kafka-advertise", "127.0.0.1:0", NULL};
    assert_int_equal(run_runneld(adv0, log), 2);
    assert_true(log_has(log, "--kafka-advertise: bad port in address '127.0.0.1:0': a port is 1"));
    served_still(s);
}

typedef struct async_box {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             done, rc, status;
    size_t          topics;
} async_box_t;

static void async_done(void *arg, int rc, ProtobufCMessage *resp, int status, const char *errmsg)
{
    async_box_t *b = arg;
    pthread_mutex_lock(&b->mu);
    b->rc = rc;
    b->status = status;
    if (resp) {
        b->topics = ((Runnel__V1__ListTopicsResponse *)resp)->n_topics;
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    b->done++;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void test_transport_async_and_stream(void **state)
{
    srv_t *s = *state;
    create_topic(s, "async", 1);
    async_box_t b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1, -1, 0};
    Runnel__V1__ListTopicsRequest req = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    char err[RN_ERRMSG_SIZE];
    for (int i = 0; i < 4; i++)
        assert_int_equal(rn_rpc_call_async(s->rpc, RN_RPC_METHOD("ListTopics"), &req.base,
                                           &runnel__v1__list_topics_response__descriptor, 5000,
                                           async_done, &b, err), 0);
    pthread_mutex_lock(&b.mu);
    for (int i = 0; i < 100 && b.done < 4; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&b.cv, &b.mu, &ts);
    }
    pthread_mutex_unlock(&b.mu);
    assert_int_equal(b.done, 4);
    assert_int_equal(b.rc, 0);
    assert_true(b.topics >= 1);
    /* A stream (Query) that fails to start ends with its status, the
     * offending offset first (tests/test_streamsql_remote.c has the rest). */
    Runnel__V1__QueryRequest q = RUNNEL__V1__QUERY_REQUEST__INIT;
    q.sql = "SELECT 1 FROM nowhere";
    rn_rpc_stream_t *st = NULL;
    assert_int_equal(rn_rpc_stream_open(s->rpc, RN_RPC_METHOD("Query"), &q.base, &st, err), 0);
    ProtobufCMessage *m = NULL;
    int status;
    assert_int_equal(rn_rpc_stream_next(st, &runnel__v1__query_response__descriptor, &m, &status,
                                        err), RN_ENOTFOUND);
    assert_int_equal(status, 5);
    assert_non_null(strstr(err, "at offset 14: unknown stream or topic 'nowhere'"));
    rn_rpc_stream_close(st);
    /* Closing a connection cancels its pending calls; done() still runs. */
    rn_rpc_t *c2;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    assert_int_equal(rn_rpc_open(target, &c2, err), 0);
    async_box_t b2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, -1, -1, 0};
    Runnel__V1__FetchRequest fr = RUNNEL__V1__FETCH_REQUEST__INIT;
    fr.topic = "async";
    fr.max_wait_ms = 10000;
    assert_int_equal(rn_rpc_call_async(c2, RN_RPC_METHOD("Fetch"), &fr.base,
                                       &runnel__v1__fetch_response__descriptor, 0, async_done,
                                       &b2, err), 0);
    usleep(200 * 1000);
    uint64_t t0 = rn_mono_ns();
    rn_rpc_close(c2);
    assert_true(rn_mono_ns() - t0 < 3000ull * 1000000);
    assert_int_equal(b2.done, 1);
    assert_int_equal(b2.rc, -ECANCELED);
    served_still(s);
}

static void test_transport_unreachable(void **state)
{
    (void)state;
    int port = free_port();
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    rn_rpc_t *c;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_open(target, &c, err), 0);
    Runnel__V1__ListTopicsRequest req = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    int st;
    assert_int_equal(rn_rpc_call(c, RN_RPC_METHOD("ListTopics"), &req.base,
                                 &runnel__v1__list_topics_response__descriptor, &resp, 5000, &st,
                                 err), -ECONNREFUSED);
    assert_non_null(strstr(err, "cannot reach"));
    rn_rpc_close(c);
    assert_int_equal(rn_rpc_open("nonsense", &c, err), RN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_plain, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_lz4, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_acks_written, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_fetch_at_least_one_batch, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_retry, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_sequence_gap, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_sequence_old, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_stale_epoch, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_across_restart, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_long_poll_wakeup, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_malformed_message, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_crc, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_length, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_record_count, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_batch_all_or_nothing, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_oversized_batch, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_unknown_topic_and_queue, srv_setup,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_fetch_out_of_range, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_bad_acks_and_empty, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_lock_suggests_server, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_start_refusals, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_transport_async_and_stream, srv_setup,
                                        srv_teardown),
        cmocka_unit_test(test_transport_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

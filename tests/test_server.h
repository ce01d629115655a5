/*
 * test_server.h — the harness shared by tests/test_server*.c (each test file
 * is its own binary, so the helpers are static): start the real runneld on
 * a free loopback port, talk to it with client/rpc.h, stop it with SIGTERM
 * and require exit status 0; build batches with rn_batch_builder; produce,
 * fetch and check records.
 *
 * Readiness: runneld --listen 127.0.0.1:0 --port-file FILE writes the bound
 * port into FILE once it accepts calls; srv_start waits for it (at most
 * START_WAIT_MS). Every wait here is bounded in time. runneld's stderr goes
 * to ROOT/runneld.log, printed when a start or stop fails; RN_TEST_KEEP=1
 * keeps ROOT.
 */
#ifndef RN_TEST_SERVER_H
#define RN_TEST_SERVER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "client/rpc.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"

#define SRV_MAX_BATCH   65536          /* --max-batch-bytes of the test broker */
#define START_WAIT_MS   20000
#define STOP_WAIT_MS    40000
#define CALL_MS         20000

/* Every helper: not every test file uses all of them. */
#define TS static __attribute__((unused))

typedef struct srv {
    char     root[64];
    char     data[PATH_MAX], portf[PATH_MAX], logf[PATH_MAX];
    char     fsync[32];
    uint32_t max_batch;       /* --max-batch-bytes */
    const char *extra[16];    /* more runneld arguments, NULL-terminated */
    pid_t    pid;
    int      port;
    rn_rpc_t *rpc;
} srv_t;

TS void srv_print_log(const srv_t *s)
{
    FILE *f = fopen(s->logf, "r");
    if (!f) return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", s->logf);
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    fclose(f);
}

TS void srv_start(srv_t *s)
{
    unlink(s->portf);
    char maxb[16];
    snprintf(maxb, sizeof maxb, "%u", s->max_batch);
    const char *argv[32] = {"runneld", "--data", s->data, "--listen", "127.0.0.1:0",
                            "--port-file", s->portf, "--fsync", s->fsync, "--max-batch-bytes",
                            maxb, "--log-level", "debug"};
    int argc = 13;
    if (getuid() == 0) argv[argc++] = "--allow-root";   /* runneld refuses uid 0 without it */
    for (int i = 0; i < 16 && s->extra[i]; i++) argv[argc++] = s->extra[i];
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        int fd = open(s->logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        execv(RN_BIN_DIR "/runneld", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    s->port = 0;
    for (int i = 0; i < START_WAIT_MS / 10 && s->port == 0; i++) {
        FILE *f = fopen(s->portf, "r");
        if (f) {
            if (fscanf(f, "%d", &s->port) != 1) s->port = 0;
            fclose(f);
        }
        int status;
        if (s->port == 0 && waitpid(pid, &status, WNOHANG) == pid) {
            srv_print_log(s);
            fail_msg("runneld exited during start (status %d)", status);
        }
        if (s->port == 0) usleep(10000);
    }
    if (s->port == 0) {
        srv_print_log(s);
        fail_msg("runneld did not write %s within %d ms", s->portf, START_WAIT_MS);
    }
    char target[64], err[RN_ERRMSG_SIZE];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    assert_int_equal(rn_rpc_open(target, &s->rpc, err), 0);
}

/* SIGTERM and wait; returns the exit status (-1 when it did not exit). */
TS int srv_kill_wait(srv_t *s, int sig)
{
    if (s->pid <= 0) return -1;
    kill(s->pid, sig);
    int status = 0;
    for (int i = 0; i < STOP_WAIT_MS / 10; i++) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    return -1;
}

/* Stop with sig (SIGTERM or SIGINT); runneld must exit 0. */
TS void srv_stop_sig(srv_t *s, int sig)
{
    rn_rpc_close(s->rpc);
    s->rpc = NULL;
    int code = srv_kill_wait(s, sig);
    if (code != 0) srv_print_log(s);
    assert_int_equal(code, 0);
}

TS void srv_stop(srv_t *s) { srv_stop_sig(s, SIGTERM); }

TS void srv_restart(srv_t *s)
{
    srv_stop(s);
    srv_start(s);
}

/* A broker's fixture, not started (srv_start): ROOT, its paths, the flags;
 * extra: more runneld arguments (NULL-terminated, strings that outlive s). */
TS srv_t *srv_alloc(const char *fsync, uint32_t max_batch, const char *const *extra)
{
    srv_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    snprintf(s->root, sizeof s->root, "/tmp/rn-server-XXXXXX");
    if (!mkdtemp(s->root)) { free(s); return NULL; }
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    snprintf(s->portf, sizeof s->portf, "%s/port", s->root);
    snprintf(s->logf, sizeof s->logf, "%s/runneld.log", s->root);
    snprintf(s->fsync, sizeof s->fsync, "%s", fsync);
    s->max_batch = max_batch;
    for (int i = 0; extra && extra[i] && i < 15; i++) s->extra[i] = extra[i];
    return s;
}

/* A broker with these flags; extra: more runneld arguments (NULL-terminated,
 * static strings) or NULL. */
TS int srv_init_all(void **state, const char *fsync, uint32_t max_batch,
                    const char *const *extra)
{
    srv_t *s = srv_alloc(fsync, max_batch, extra);
    if (!s) return -1;
    *state = s;
    srv_start(s);
    return 0;
}

/* A broker whose data directory is also its --store-root: RemapQueue may
 * place stores inside DATA (registered relative to it). */
TS int srv_setup_store_root(void **state)
{
    srv_t *s = srv_alloc("group", SRV_MAX_BATCH, NULL);
    if (!s || mkdir(s->data, 0755) != 0) { free(s); return -1; }
    s->extra[0] = "--store-root";
    s->extra[1] = s->data;
    *state = s;
    srv_start(s);
    return 0;
}

TS int srv_init_ex(void **state, const char *fsync, uint32_t max_batch)
{
    return srv_init_all(state, fsync, max_batch, NULL);
}

TS int srv_init(void **state, const char *fsync) { return srv_init_ex(state, fsync, SRV_MAX_BATCH); }

TS int srv_setup(void **state) { return srv_init(state, "group"); }

TS int srv_teardown(void **state)
{
    srv_t *s = *state;
    int rc = 0;
    if (s->rpc) rn_rpc_close(s->rpc);
    s->rpc = NULL;
    if (s->pid > 0 && srv_kill_wait(s, SIGTERM) != 0) {
        srv_print_log(s);
        rc = -1;
    }
    /* RN_TEST_KEEP=1 keeps the directory (data and runneld.log) to look at. */
    const char *keep = getenv("RN_TEST_KEEP");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->root);
    if (keep && keep[0] == '1') fprintf(stderr, "kept %s\n", s->root);
    else if (system(cmd) != 0) rc = -1;
    free(s);
    return rc;
}

/* A free loopback port (nothing listens on it once this returns). */
TS int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

TS void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* ---- batches --------------------------------------------------------------------- */

typedef struct batch {
    uint8_t *data;
    size_t   len;
} batch_t;

/* n records with values "rec-%08d" from `first` on (64 bytes each), keys
 * "k%d", timestamps 1700000000000 + index. */
TS void make_batch(batch_t *out, int codec, int n, int first, int64_t pid, int epoch, int seq)
{
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    o.codec = codec;
    o.max_bytes = RN_BATCH_MAX_BYTES;
    o.producer_id = pid;
    o.producer_epoch = (int16_t)epoch;
    o.base_sequence = seq;
    rn_batch_builder_t b;
    assert_int_equal(rn_batch_builder_init(&b, &o), 0);
    for (int i = 0; i < n; i++) {
        char key[16], val[64];
        int kl = snprintf(key, sizeof key, "k%d", (first + i) % 7);
        memset(val, 'v', sizeof val);
        snprintf(val, sizeof val, "rec-%08d", first + i);
        rn_record_t r = {1700000000000 + first + i, 0, (const uint8_t *)key, kl,
                         (const uint8_t *)val, (int32_t)sizeof val - 1, NULL, 0};
        assert_int_equal(rn_batch_builder_add(&b, &r), 0);
    }
    const uint8_t *p;
    size_t len;
    assert_int_equal(rn_batch_builder_finish(&b, &p, &len), 0);
    out->data = malloc(len);
    assert_non_null(out->data);
    memcpy(out->data, p, len);
    out->len = len;
    rn_batch_builder_destroy(&b);
}

TS void batch_free(batch_t *b)
{
    free(b->data);
    b->data = NULL;
}

/* ---- calls ---------------------------------------------------------------------- */

TS int produce_call(srv_t *s, const char *topic, uint32_t q, const batch_t *b, size_t n,
                        int acks, int64_t *base, int *dup, int64_t *hwm, int *status, char *err)
{
    Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
    ProtobufCBinaryData *bd = calloc(n, sizeof *bd);
    assert_non_null(bd);
    for (size_t i = 0; i < n; i++) { bd[i].data = b[i].data; bd[i].len = b[i].len; }
    req.topic = (char *)topic;
    req.queue = q;
    req.n_batches = n;
    req.batches = bd;
    req.acks = acks ? RUNNEL__V1__ACKS__ACKS_WRITTEN : RUNNEL__V1__ACKS__ACKS_DURABLE;
    ProtobufCMessage *m = NULL;
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("Produce"), &req.base,
                         &runnel__v1__produce_response__descriptor, &m, CALL_MS, status, err);
    free(bd);
    if (rc != 0) return rc;
    Runnel__V1__ProduceResponse *r = (void *)m;
    assert_int_equal(r->n_base_offsets, n);
    assert_int_equal(r->n_duplicates, n);
    for (size_t i = 0; i < n; i++) {
        if (base) base[i] = r->base_offsets[i];
        if (dup) dup[i] = r->duplicates[i];
    }
    if (hwm) *hwm = r->high_watermark;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

TS int produce(srv_t *s, const char *topic, uint32_t q, const batch_t *b, size_t n, int acks,
                   int64_t *base, int *dup, int64_t *hwm)
{
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = produce_call(s, topic, q, b, n, acks, base, dup, hwm, &st, err);
    if (rc != 0) fprintf(stderr, "produce %s/%u: %s (status %d)\n", topic, q, err, st);
    return rc;
}

TS int produce_err(srv_t *s, const char *topic, uint32_t q, const batch_t *b, size_t n,
                       int *status, char *err)
{
    err[0] = '\0';
    return produce_call(s, topic, q, b, n, 0, NULL, NULL, NULL, status, err);
}

typedef struct fetch {
    uint8_t *data;
    size_t   len;
    uint32_t nbatches;
    int64_t  hwm, log_start;
} fetch_t;

TS int fetch(srv_t *s, const char *topic, uint32_t q, int64_t offset, uint32_t max_bytes,
                 uint32_t wait_ms, fetch_t *out)
{
    Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
    req.topic = (char *)topic;
    req.queue = q;
    req.offset = offset;
    req.max_bytes = max_bytes;
    req.max_wait_ms = wait_ms;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    memset(out, 0, sizeof *out);
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("Fetch"), &req.base,
                         &runnel__v1__fetch_response__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) {
        fprintf(stderr, "fetch %s/%u@%lld: %s\n", topic, q, (long long)offset, err);
        return rc;
    }
    Runnel__V1__FetchResponse *r = (void *)m;
    out->len = r->records.len;
    out->data = malloc(out->len ? out->len : 1);
    assert_non_null(out->data);
    if (out->len) memcpy(out->data, r->records.data, out->len);
    out->nbatches = r->batch_count;
    out->hwm = r->high_watermark;
    out->log_start = r->log_start_offset;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

TS void fetch_free(fetch_t *f)
{
    free(f->data);
    f->data = NULL;
}

/* Check every batch of f (deep validation) and its records: offsets dense
 * from the first record at or past `from`, values "rec-N" rising by one
 * within a batch. Returns the offset after the last record. */
TS int64_t check_records(const fetch_t *f, int64_t from)
{
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    size_t pos = 0;
    int64_t next = from;
    uint32_t batches = 0;
    char err[RN_ERRMSG_SIZE];
    while (pos < f->len) {
        size_t size;
        assert_int_equal(rn_batch_size(f->data + pos, f->len - pos, &size), 0);
        assert_true(size <= f->len - pos);
        rn_batch_header_t h;
        assert_int_equal(rn_batch_validate(f->data + pos, size, &rn_batch_default_limits, 1, &h,
                                           err), 0);
        assert_int_equal(rn_batch_iter_reset(&it, f->data + pos, size, err), 0);
        rn_record_t r;
        int first = -1, i = 0, rc;
        while ((rc = rn_batch_iter_next(&it, &r, err)) == 1) {
            int idx = -1;
            assert_int_equal(sscanf((const char *)r.value, "rec-%8d", &idx), 1);
            if (first < 0) first = idx;
            assert_int_equal(idx, first + i);
            i++;
            if (r.offset < from) continue;
            assert_int_equal(r.offset, next);
            next++;
        }
        assert_int_equal(rc, 0);
        pos += size;
        batches++;
    }
    assert_int_equal(batches, f->nbatches);
    rn_batch_iter_destroy(&it);
    return next;
}

TS void create_topic(srv_t *s, const char *name, uint32_t queues)
{
    Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    req.name = (char *)name;
    req.queues = queues;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("CreateTopic"), &req.base,
                         &runnel__v1__topic_info__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) fail_msg("CreateTopic %s: %s", name, err);
    assert_int_equal(((Runnel__V1__TopicInfo *)m)->queue_count, queues);
    protobuf_c_message_free_unpacked(m, NULL);
}

TS void init_producer(srv_t *s, int64_t id, int64_t *pid, int *epoch)
{
    Runnel__V1__InitProducerRequest req = RUNNEL__V1__INIT_PRODUCER_REQUEST__INIT;
    req.producer_id = id;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("InitProducer"), &req.base,
                         &runnel__v1__init_producer_response__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) fail_msg("InitProducer: %s", err);
    *pid = ((Runnel__V1__InitProducerResponse *)m)->producer_id;
    *epoch = ((Runnel__V1__InitProducerResponse *)m)->producer_epoch;
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ListOffsets latest: the high watermark of (topic, q). */
TS int64_t hwm_of(srv_t *s, const char *topic, uint32_t q)
{
    Runnel__V1__ListOffsetsRequest req = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
    req.topic = (char *)topic;
    req.queue = q;
    req.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST;
    req.latest = 1;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = rn_rpc_call(s->rpc, RN_RPC_METHOD("ListOffsets"), &req.base,
                         &runnel__v1__list_offsets_response__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) fail_msg("ListOffsets %s/%u: %s", topic, q, err);
    int64_t off = ((Runnel__V1__ListOffsetsResponse *)m)->offset;
    assert_int_equal(off, ((Runnel__V1__ListOffsetsResponse *)m)->high_watermark);
    protobuf_c_message_free_unpacked(m, NULL);
    return off;
}

/* Wait (at most 5 s) until (topic, q) shows want records. */
TS void wait_hwm(srv_t *s, const char *topic, uint32_t q, int64_t want)
{
    for (int i = 0; i < 500 && hwm_of(s, topic, q) < want; i++) usleep(10000);
    assert_int_equal(hwm_of(s, topic, q), want);
}

/* The broker still answers a plain call after a bad one. */
TS void served_still(srv_t *s)
{
    Runnel__V1__ListTopicsRequest req = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("ListTopics"), &req.base,
                                 &runnel__v1__list_topics_response__descriptor, &m, CALL_MS, &st,
                                 err), 0);
    protobuf_c_message_free_unpacked(m, NULL);
}

#endif

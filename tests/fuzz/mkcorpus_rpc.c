/*
 * mkcorpus_rpc.c — writes the seed corpora of the fuzz_rpc_* targets: real
 * runnel.v1 request messages packed by protobuf-c (for the admin target,
 * preceded by the byte that selects the RPC), valid ones naming the
 * fixtures of fuzz_rpc.h (topic "t", group "g", checkpoint "c") and a few
 * that each handler must refuse. Not part of `make test`; run by hand:
 *
 *   make build/librunnel.a build/librunnel-core.a
 *   cc -std=c11 -D_GNU_SOURCE -I. -Ibuild/gen -o /tmp/mkcorpus_rpc tests/fuzz/mkcorpus_rpc.c \
 *      build/librunnel.a build/librunnel-core.a -lprotobuf-c -lsqlite3 -llz4 -lpthread -lm
 *   /tmp/mkcorpus_rpc tests/fuzz/corpus
 *
 * Invariant: every seed is a message protobuf-c itself packed, so fuzzing
 * starts from inputs that unpack.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "proto/runnel.pb-c.h"

static const char *g_out;

static void emit(const char *target, const char *name, int selector, const ProtobufCMessage *m)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/%s", g_out, target, name);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 1);
    if (!buf) exit(1);
    protobuf_c_message_pack(m, buf);
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    if (selector >= 0) fputc(selector, f);
    fwrite(buf, 1, n, f);
    fclose(f);
    free(buf);
}

/* A batch of n records built by the real builder; caller frees. */
static ProtobufCBinaryData batch(int n, int codec, int64_t pid, int16_t epoch, int32_t seq)
{
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    bo.codec = codec;
    bo.producer_id = pid;
    bo.producer_epoch = epoch;
    bo.base_sequence = seq;
    rn_batch_builder_init(&b, &bo);
    for (int i = 0; i < n; i++) {
        char val[48];
        int vl = snprintf(val, sizeof val, "{\"level\":\"INFO\",\"n\":%d}", i);
        rn_record_t r = {0};
        r.timestamp = 1700000000000 + i;
        r.key = (const uint8_t *)"k";
        r.key_len = i % 2 ? 1 : -1;
        r.value = (const uint8_t *)val;
        r.value_len = vl;
        rn_batch_builder_add(&b, &r);
    }
    const uint8_t *out;
    size_t len;
    rn_batch_builder_finish(&b, &out, &len);
    ProtobufCBinaryData d = {len, malloc(len)};
    memcpy(d.data, out, len);
    rn_batch_builder_destroy(&b);
    return d;
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: mkcorpus_rpc CORPUS_DIR\n"); return 2; }
    g_out = argv[1];

    /* ---- produce ---- */
    ProtobufCBinaryData b1 = batch(3, 0, -1, -1, -1), b2 = batch(5, 3, -1, -1, -1);
    ProtobufCBinaryData bi = batch(2, 0, 1, 0, 0), bad = batch(2, 0, -1, -1, -1);
    bad.data[bad.len - 1] ^= 1;                       /* CRC no longer matches */
    Runnel__V1__ProduceRequest pr = RUNNEL__V1__PRODUCE_REQUEST__INIT;
    ProtobufCBinaryData two[2] = {b1, b2}, one_bad[2] = {b1, bad};
    pr.topic = "t"; pr.queue = 0; pr.n_batches = 1; pr.batches = &b1;
    emit("rpc_produce", "seed-one-batch", -1, &pr.base);
    pr.n_batches = 2; pr.batches = two; pr.queue = 1; pr.acks = RUNNEL__V1__ACKS__ACKS_WRITTEN;
    emit("rpc_produce", "seed-two-batches-lz4", -1, &pr.base);
    pr.batches = one_bad; pr.queue = 0; pr.acks = 0;
    emit("rpc_produce", "seed-second-batch-bad-crc", -1, &pr.base);
    pr.n_batches = 1; pr.batches = &bi;
    emit("rpc_produce", "seed-idempotent-unknown-producer", -1, &pr.base);
    pr.batches = &b1; pr.topic = "missing";
    emit("rpc_produce", "seed-unknown-topic", -1, &pr.base);
    pr.topic = "t"; pr.queue = 7;
    emit("rpc_produce", "seed-queue-out-of-range", -1, &pr.base);
    pr.queue = 0; pr.n_batches = 0;
    emit("rpc_produce", "seed-no-batches", -1, &pr.base);

    /* ---- fetch ---- */
    Runnel__V1__FetchRequest fr = RUNNEL__V1__FETCH_REQUEST__INIT;
    fr.topic = "t"; fr.queue = 0; fr.offset = 0;
    emit("rpc_fetch", "seed-from-0", -1, &fr.base);
    fr.offset = 4; fr.max_bytes = 1;
    emit("rpc_fetch", "seed-mid-batch-1-byte", -1, &fr.base);
    fr.offset = 1000; fr.max_bytes = 0; fr.max_wait_ms = 10;
    emit("rpc_fetch", "seed-past-end", -1, &fr.base);
    fr.offset = -1;
    emit("rpc_fetch", "seed-negative", -1, &fr.base);
    fr.offset = 0; fr.queue = 1; fr.max_bytes = 16u << 20;
    emit("rpc_fetch", "seed-queue-1-max", -1, &fr.base);
    fr.topic = "nope";
    emit("rpc_fetch", "seed-unknown-topic", -1, &fr.base);

    /* ---- admin: selector byte = index in fuzz_rpc_admin.c's table ---- */
    enum { INIT, LISTOFF, CREATE, ALTER, LISTT, DESCR, REMAP, STORES, COMMIT, FETCHOFF, GROUPS,
           RESET, CKPT, LISTCKPT, DROPCKPT, QUERY, PIPE };
    Runnel__V1__InitProducerRequest ip = RUNNEL__V1__INIT_PRODUCER_REQUEST__INIT;
    emit("rpc_admin", "seed-init-producer", INIT, &ip.base);
    ip.producer_id = 12345;
    emit("rpc_admin", "seed-init-producer-unknown-id", INIT, &ip.base);
    Runnel__V1__ListOffsetsRequest lo = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
    lo.topic = "t"; lo.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST; lo.latest = 1;
    emit("rpc_admin", "seed-list-offsets-latest", LISTOFF, &lo.base);
    lo.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_TIMESTAMP_MS; lo.timestamp_ms = 1700000000004;
    emit("rpc_admin", "seed-list-offsets-time", LISTOFF, &lo.base);
    Runnel__V1__CreateTopicRequest ct = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    ct.name = "logs"; ct.queues = 3;
    emit("rpc_admin", "seed-create-topic", CREATE, &ct.base);
    ct.name = "bad name!"; ct.queues = 20000;
    emit("rpc_admin", "seed-create-topic-bad", CREATE, &ct.base);
    Runnel__V1__AlterTopicRequest at = RUNNEL__V1__ALTER_TOPIC_REQUEST__INIT;
    at.name = "t"; at.queues = 4;
    emit("rpc_admin", "seed-alter-topic", ALTER, &at.base);
    at.queues = 1;
    emit("rpc_admin", "seed-alter-topic-shrink", ALTER, &at.base);
    Runnel__V1__ListTopicsRequest lt = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    emit("rpc_admin", "seed-list-topics", LISTT, &lt.base);
    Runnel__V1__DescribeTopicRequest dt = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    dt.name = "t";
    emit("rpc_admin", "seed-describe-topic", DESCR, &dt.base);
    Runnel__V1__RemapQueueRequest rq = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
    rq.topic = "t"; rq.queue = 1; rq.store_path = "second";
    emit("rpc_admin", "seed-remap-queue", REMAP, &rq.base);
    Runnel__V1__ListStoresRequest ls = RUNNEL__V1__LIST_STORES_REQUEST__INIT;
    emit("rpc_admin", "seed-list-stores", STORES, &ls.base);
    Runnel__V1__QueueOffset qo = RUNNEL__V1__QUEUE_OFFSET__INIT, *qop = &qo;
    qo.topic = "t"; qo.queue = 0; qo.offset = 2;
    Runnel__V1__CommitOffsetsRequest co = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    co.group = "g"; co.n_offsets = 1; co.offsets = &qop;
    emit("rpc_admin", "seed-commit-offsets", COMMIT, &co.base);
    qo.offset = 99999;
    emit("rpc_admin", "seed-commit-offsets-past-end", COMMIT, &co.base);
    Runnel__V1__FetchOffsetsRequest fo = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
    fo.group = "g";
    emit("rpc_admin", "seed-fetch-offsets", FETCHOFF, &fo.base);
    Runnel__V1__ListGroupsRequest lg = RUNNEL__V1__LIST_GROUPS_REQUEST__INIT;
    emit("rpc_admin", "seed-list-groups", GROUPS, &lg.base);
    Runnel__V1__ResetGroupRequest rg = RUNNEL__V1__RESET_GROUP_REQUEST__INIT;
    rg.group = "g"; rg.topic = "t"; rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_LATEST; rg.latest = 1;
    emit("rpc_admin", "seed-reset-group-latest", RESET, &rg.base);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT; rg.checkpoint = "c";
    emit("rpc_admin", "seed-reset-group-checkpoint", RESET, &rg.base);
    Runnel__V1__CreateCheckpointRequest cc = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    cc.group = "g"; cc.name = "c2";
    emit("rpc_admin", "seed-create-checkpoint", CKPT, &cc.base);
    Runnel__V1__ListCheckpointsRequest lc = RUNNEL__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    emit("rpc_admin", "seed-list-checkpoints", LISTCKPT, &lc.base);
    Runnel__V1__DropCheckpointRequest dc = RUNNEL__V1__DROP_CHECKPOINT_REQUEST__INIT;
    dc.group = "g"; dc.name = "nope";
    emit("rpc_admin", "seed-drop-checkpoint-unknown", DROPCKPT, &dc.base);
    Runnel__V1__QueryRequest qr = RUNNEL__V1__QUERY_REQUEST__INIT;
    qr.sql = "SELECT * FROM logs";
    emit("rpc_admin", "seed-query", QUERY, &qr.base);
    Runnel__V1__CreatePipelineRequest cp = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
    emit("rpc_admin", "seed-create-pipeline", PIPE, &cp.base);
    free(b1.data); free(b2.data); free(bi.data); free(bad.data);
    return 0;
}

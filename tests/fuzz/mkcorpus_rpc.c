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
 *
 * The "amp-*" inputs of rpc_produce are the amplification attacks that once
 * exhausted the broker (issue 11): a 66 KB LZ4 batch whose one record holds
 * 8 M empty headers (16 MB decompressed, 190 MB of header array), a record
 * past the per-record header cap, a batch stamped 10 years ahead. The
 * replay driver asserts that no input raises peak RSS by more than its
 * limit (tests/fuzz/replay.c).
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "batch/crc32c.h"

#include <lz4frame.h>
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

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static size_t put_uv(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; }
    p[n++] = (uint8_t)v;
    return n;
}

/* A batch holding one record with nh empty headers, stamped ts, LZ4
 * compressed (64 KiB independent blocks) or not, with a valid CRC. */
static ProtobufCBinaryData headers_batch(uint32_t nh, int lz4, int64_t ts)
{
    uint8_t head[32];
    size_t hl = 0;
    head[hl++] = 0; head[hl++] = 0; head[hl++] = 0;     /* attributes, ts delta, offset delta */
    head[hl++] = 0x01; head[hl++] = 0x01;               /* key -1, value -1 */
    hl += put_uv(head + hl, (uint64_t)nh << 1);
    size_t body = hl + 2 * (size_t)nh;
    uint8_t *recs = calloc(1, body + 10);
    if (!recs) exit(1);
    size_t rl = put_uv(recs, (uint64_t)body << 1);
    memcpy(recs + rl, head, hl);
    rl += body;                                         /* the headers: zeros */
    size_t cap = 61 + (lz4 ? LZ4F_compressFrameBound(rl, NULL) + 64 : rl);
    uint8_t *b = calloc(1, cap);
    if (!b) exit(1);
    size_t n = rl;
    if (lz4) {
        LZ4F_preferences_t p;
        memset(&p, 0, sizeof p);
        p.frameInfo.blockSizeID = LZ4F_max64KB;
        p.frameInfo.blockMode = LZ4F_blockIndependent;
        n = LZ4F_compressFrame(b + 61, cap - 61, recs, rl, &p);
        if (LZ4F_isError(n)) exit(1);
    } else {
        memcpy(b + 61, recs, rl);
    }
    free(recs);
    size_t len = 61 + n;
    put32(b + 8, (uint32_t)(len - 12));
    b[16] = 2;
    b[22] = lz4 ? 3 : 0;
    for (int i = 0; i < 2; i++) {                       /* base and max timestamp */
        put32(b + 27 + 8 * i, (uint32_t)((uint64_t)ts >> 32));
        put32(b + 31 + 8 * i, (uint32_t)ts);
    }
    memset(b + 43, 0xff, 14);                           /* producer id, epoch, sequence: -1 */
    put32(b + 57, 1);                                   /* one record; last offset delta 0 */
    put32(b + 17, rn_crc32c(0, b + 21, len - 21));
    ProtobufCBinaryData d = {len, b};
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

    /* ---- produce: amplification (issue 11) ---- */
    ProtobufCBinaryData amp = headers_batch(8388561, 1, 1700000000000);
    pr.n_batches = 1; pr.batches = &amp;
    emit("rpc_produce", "amp-lz4-8m-empty-headers", -1, &pr.base);
    free(amp.data);
    amp = headers_batch(4097, 0, 1700000000000);
    emit("rpc_produce", "amp-4097-headers-in-a-record", -1, &pr.base);
    free(amp.data);
    amp = headers_batch(1, 0, 1700000000000 + 10 * 365 * 86400000LL);
    emit("rpc_produce", "amp-stamped-10-years-ahead", -1, &pr.base);
    free(amp.data);

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

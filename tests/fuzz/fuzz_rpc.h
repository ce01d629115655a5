/*
 * fuzz_rpc.h — shared ground of the fuzz_rpc_*.c targets: arbitrary bytes
 * unpacked as a runnel.v1 request message and passed to runneld's request
 * handler for it (server/handlers.h), with no gRPC in between — the same
 * call the gRPC front makes after it unpacked a request.
 *
 * The handlers work on one data directory per process (tmpfs when there is
 * one), opened on first use with a topic "t" of 2 queues holding a few
 * batches, a consumer group "g" with committed offsets and a checkpoint
 * "c", so that requests naming them reach past the "not found" checks.
 * State accumulates across inputs, as it does in a running broker, but the
 * directory is replaced by a fresh one every FZ_RESET_EVERY inputs so that
 * topics, stores and queues created by earlier inputs cannot slow every
 * later input down without bound.
 *
 * Invariants checked (abort() on violation, besides ASan/UBSan findings):
 *  1. A handler returns 0 with a response, or -1 with a status code in
 *     gRPC's range (1..16, never OK) and a non-empty message; never
 *     INTERNAL, which the protocol reserves for bugs.
 *  2. Every response packs, and unpacks again with its own descriptor.
 *  3. Nothing an input does makes a later request on the known topic fail
 *     with INTERNAL (the broker's "a bug" status).
 *  4. The gRPC front's string check (server/reqcheck.h) accepts every
 *     message that unpacks and holds no NUL byte at all, and otherwise
 *     answers 0 or RN_EINVAL with a message; a refused request, as in the
 *     front, never reaches its handler.
 */
#ifndef RN_FUZZ_RPC_H
#define RN_FUZZ_RPC_H

#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "server/handlers.h"
#include "server/reqcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(c)                                                               \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_rpc: %s:%d: invariant failed: %s\n", __FILE__,  \
                    __LINE__, #c);                                                \
            abort();                                                              \
        }                                                                         \
    } while (0)

#define FZ_RESET_EVERY 256

static rn_hd_t *fz_hd;
static char fz_root[PATH_MAX];
static unsigned fz_inputs;

static int fz_rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void fz_teardown(void)
{
    if (fz_hd) rn_hd_close(fz_hd);
    fz_hd = NULL;
    if (fz_root[0]) nftw(fz_root, fz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    fz_root[0] = '\0';
}

/* Invariants 1 and 2 for one handler result. */
static __attribute__((unused)) void fz_check_result(int rc, ProtobufCMessage *resp, const rn_status_t *st)
{
    if (rc == 0) {
        FZ_CHECK(resp != NULL);
        size_t n = protobuf_c_message_get_packed_size(resp);
        uint8_t *buf = malloc(n ? n : 1);
        FZ_CHECK(buf != NULL);
        FZ_CHECK(protobuf_c_message_pack(resp, buf) == n);
        ProtobufCMessage *again = protobuf_c_message_unpack(resp->descriptor, NULL, n, buf);
        FZ_CHECK(again != NULL);
        protobuf_c_message_free_unpacked(again, NULL);
        free(buf);
    } else {
        FZ_CHECK(rc == -1);
        FZ_CHECK(st->code > RN_ST_OK && (int)st->code <= 16);
        FZ_CHECK(st->msg[0] != '\0');
        if (st->code == RN_ST_INTERNAL) {
            fprintf(stderr, "fuzz_rpc: INTERNAL: %s\n", st->msg);
            abort();
        }
    }
}

/* One batch of n small records, built by the real builder (for the setup). */
static void fz_produce_setup(const char *topic, uint32_t queue, int batches)
{
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    FZ_CHECK(rn_batch_builder_init(&b, &bo) == 0);
    for (int k = 0; k < batches; k++) {
        rn_batch_builder_reset(&b);
        for (int r = 0; r < 3; r++) {
            char val[32];
            int vl = snprintf(val, sizeof val, "{\"n\":%d}", k * 3 + r);
            rn_record_t rec = {0};
            rec.timestamp = 1700000000000 + k * 3 + r;
            rec.key_len = -1;
            rec.value = (const uint8_t *)val;
            rec.value_len = vl;
            FZ_CHECK(rn_batch_builder_add(&b, &rec) == 0);
        }
        const uint8_t *out;
        size_t len;
        FZ_CHECK(rn_batch_builder_finish(&b, &out, &len) == 0);
        ProtobufCBinaryData bd = {len, (uint8_t *)(uintptr_t)out};
        Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
        req.topic = (char *)topic;
        req.queue = queue;
        req.n_batches = 1;
        req.batches = &bd;
        rn_produce_t p;
        memset(&p, 0, sizeof p);
        rn_status_t st;
        FZ_CHECK(rn_hd_produce_begin(fz_hd, &req, &p, &st) == 0);
        FZ_CHECK(rn_hd_produce_wait(fz_hd, &p, &st) == 0);
        rn_hd_produce_free(&p);
    }
    rn_batch_builder_destroy(&b);
}

static void fz_unary_setup(rn_hd_fn fn, ProtobufCMessage *req)
{
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = fn(fz_hd, req, &a, &resp, &st);
    if (rc != 0) {
        fprintf(stderr, "fuzz_rpc: setup request failed: %s\n", st.msg);
        abort();
    }
    rn_arena_free(&a);
}

/* The handler context, opened with its fixtures on first use and renewed
 * every FZ_RESET_EVERY inputs. */
static rn_hd_t *fz_handlers(void)
{
    static int registered;
    if (fz_hd && ++fz_inputs % FZ_RESET_EVERY == 0) fz_teardown();
    if (fz_hd) return fz_hd;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz_root, sizeof fz_root, "%s/rn-fuzz-rpc-XXXXXX", base);
    FZ_CHECK(mkdtemp(fz_root) != NULL);
    char dir[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    snprintf(dir, sizeof dir, "%s/data", fz_root);
    rn_hd_opts_t o;
    rn_hd_opts_default(&o);
    o.log.fsync = RN_FSYNC_NEVER;              /* fuzzing, not durability */
    o.log.segment_bytes = RN_BATCH_MAX_BYTES + (1 << 20);   /* holds one batch of the limit */
    /* runneld's default batch limit, so an amplification input (a small LZ4
     * batch that expands) reaches decompression and validation as it would
     * in the broker. */
    o.log.max_batch_bytes = RN_BATCH_MAX_BYTES;
    o.holder = "fuzz_rpc";
    if (rn_hd_open(dir, &o, &fz_hd, err) != 0) {
        fprintf(stderr, "fuzz_rpc: rn_hd_open %s: %s\n", dir, err);
        abort();
    }
    if (!registered) { registered = 1; atexit(fz_teardown); }
    Runnel__V1__CreateTopicRequest ct = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    ct.name = "t";
    ct.queues = 2;
    fz_unary_setup(rn_hd_create_topic, &ct.base);
    fz_produce_setup("t", 0, 4);
    fz_produce_setup("t", 1, 1);
    Runnel__V1__QueueOffset qo = RUNNEL__V1__QUEUE_OFFSET__INIT, *qop = &qo;
    qo.topic = "t";
    qo.queue = 0;
    qo.offset = 3;
    Runnel__V1__CommitOffsetsRequest co = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    co.group = "g";
    co.n_offsets = 1;
    co.offsets = &qop;
    fz_unary_setup(rn_hd_commit_offsets, &co.base);
    Runnel__V1__CreateCheckpointRequest cc = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    cc.group = "g";
    cc.name = "c";
    fz_unary_setup(rn_hd_create_checkpoint, &cc.base);
    return fz_hd;
}

/* Invariant 3: the fixtures still answer (nothing may drop topic t). */
static __attribute__((unused)) void fz_still_serving(void)
{
    Runnel__V1__DescribeTopicRequest req = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    req.name = "t";
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = rn_hd_describe_topic(fz_hd, &req.base, &a, &resp, &st);
    if (rc != 0) {
        fprintf(stderr, "fuzz_rpc: DescribeTopic t after the input: %s\n", st.msg);
        abort();
    }
    rn_arena_free(&a);
}

/* Unpack data as desc's message and run fn on it (the unary handlers). */
static __attribute__((unused)) void fz_unary(const ProtobufCMessageDescriptor *desc,
                                             rn_hd_fn fn, const uint8_t *data, size_t size)
{
    rn_hd_t *h = fz_handlers();
    ProtobufCMessage *req = protobuf_c_message_unpack(desc, NULL, size, data);
    if (!req) return;                         /* gRPC's front answers INVALID_ARGUMENT */
    /* Invariant 4: the front's string check, as it runs it. */
    char em[RN_ERRMSG_SIZE] = "";
    int cr = rn_reqcheck_strings(desc, data, size, em);
    FZ_CHECK(cr == 0 || (cr == RN_EINVAL && em[0] && memchr(data, 0, size)));
    if (cr != 0) {
        protobuf_c_message_free_unpacked(req, NULL);
        return;
    }
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = fn(h, req, &a, &resp, &st);
    fz_check_result(rc, resp, &st);
    rn_arena_free(&a);
    protobuf_c_message_free_unpacked(req, NULL);
    fz_still_serving();
}

#endif

/*
 * fuzz_rpc_produce.c — libFuzzer target for runneld's Produce handler: the
 * input is unpacked as a ProduceRequest and run through the same three steps
 * the gRPC front takes (rn_hd_produce_begin, _wait, _answer).
 *
 * Invariants (besides fuzz_rpc.h's):
 *  1. A request is stored whole or not at all: when begin fails, the
 *     queue's high watermark did not move.
 *  2. When it succeeds, the answer has one base offset per batch, the
 *     offsets are ascending, and the queue's high watermark reached the end
 *     of the last new batch.
 */
#include "tests/fuzz/fuzz_rpc.h"

static int64_t hwm_of(rn_hd_t *h, const char *topic, uint32_t queue)
{
    Runnel__V1__ListOffsetsRequest req = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
    req.topic = (char *)topic;
    req.queue = queue;
    req.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST;
    req.latest = 1;
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    int64_t hw = -1;
    if (rn_hd_list_offsets(h, &req.base, &a, &resp, &st) == 0)
        hw = ((Runnel__V1__ListOffsetsResponse *)resp)->high_watermark;
    rn_arena_free(&a);
    return hw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rn_hd_t *h = fz_handlers();
    Runnel__V1__ProduceRequest *req = (Runnel__V1__ProduceRequest *)protobuf_c_message_unpack(
        &runnel__v1__produce_request__descriptor, NULL, size, data);
    if (!req) return 0;
    int64_t before = req->topic ? hwm_of(h, req->topic, req->queue) : -1;
    rn_produce_t p;
    memset(&p, 0, sizeof p);
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = rn_hd_produce_begin(h, req, &p, &st);
    if (rc != 0) {
        fz_check_result(rc, NULL, &st);
        if (before >= 0) FZ_CHECK(hwm_of(h, req->topic, req->queue) == before);
    } else {
        rc = rn_hd_produce_wait(h, &p, &st);
        rn_arena_t a = RN_ARENA_INIT;
        ProtobufCMessage *resp = NULL;
        if (rc == 0) rc = rn_hd_produce_answer(h, &p, &a, &resp, &st);
        fz_check_result(rc, resp, &st);
        if (rc == 0) {
            Runnel__V1__ProduceResponse *r = (Runnel__V1__ProduceResponse *)resp;
            FZ_CHECK(r->n_base_offsets == req->n_batches);
            for (size_t i = 1; i < r->n_base_offsets; i++)
                FZ_CHECK(r->base_offsets[i] > r->base_offsets[i - 1]);
            FZ_CHECK(hwm_of(h, req->topic, req->queue) >= r->high_watermark);
        }
        rn_arena_free(&a);
    }
    rn_hd_produce_free(&p);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    fz_still_serving();
    return 0;
}

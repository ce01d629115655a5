/*
 * fuzz_rpc_fetch.c — libFuzzer target for runneld's Fetch handler: the input
 * is unpacked as a FetchRequest and run through rn_hd_fetch and
 * rn_hd_fetch_answer, as the gRPC front does (the long-poll wait is the
 * front's, not the handler's).
 *
 * Invariants (besides fuzz_rpc.h's):
 *  1. An answer holds exactly batch_count whole batches and nothing else,
 *     each passing deep validation, the first containing the requested
 *     offset, with dense offsets.
 *  2. log start <= requested offset <= high watermark in every answer.
 */
#include "tests/fuzz/fuzz_rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rn_hd_t *h = fz_handlers();
    Runnel__V1__FetchRequest *req = (Runnel__V1__FetchRequest *)protobuf_c_message_unpack(
        &runnel__v1__fetch_request__descriptor, NULL, size, data);
    if (!req) return 0;
    rn_fetch_t f;
    memset(&f, 0, sizeof f);
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = rn_hd_fetch(h, req, &f, &st);
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    if (rc == 0) rc = rn_hd_fetch_answer(h, &f, &a, &resp) == 0 ? 0 : -1;
    if (rc != 0 && st.code == RN_ST_OK) {
        st.code = RN_ST_INTERNAL;
        snprintf(st.msg, sizeof st.msg, "rn_hd_fetch_answer failed");
    }
    fz_check_result(rc, resp, &st);
    if (rc == 0) {
        Runnel__V1__FetchResponse *r = (Runnel__V1__FetchResponse *)resp;
        FZ_CHECK(r->log_start_offset <= req->offset && req->offset <= r->high_watermark);
        size_t at = 0;
        int64_t next = -1;
        char err[RN_ERRMSG_SIZE];
        for (uint32_t k = 0; k < r->batch_count; k++) {
            size_t sz;
            rn_batch_header_t bh;
            FZ_CHECK(rn_batch_size(r->records.data + at, r->records.len - at, &sz) == 0);
            FZ_CHECK(at + sz <= r->records.len);
            FZ_CHECK(rn_batch_validate(r->records.data + at, sz, &rn_batch_default_limits, 1, &bh,
                                       err) == 0);
            if (k == 0) FZ_CHECK(bh.base_offset <= req->offset &&
                                 req->offset < bh.base_offset + bh.record_count);
            else FZ_CHECK(bh.base_offset == next);
            next = bh.base_offset + bh.record_count;
            at += sz;
        }
        FZ_CHECK(at == r->records.len);
        if (r->batch_count > 0) FZ_CHECK(next <= r->high_watermark);
    }
    rn_arena_free(&a);
    rn_hd_fetch_free(&f);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    fz_still_serving();
    return 0;
}

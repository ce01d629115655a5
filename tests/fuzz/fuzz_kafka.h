/*
 * fuzz_kafka.h — shared ground of the fuzz_kafka_*.c targets: the Kafka
 * front's handlers (kafka/api*.c, the group coordinator) run without
 * sockets. The front's few entry points (rn_kreq_done, _drop, _offload,
 * _park, _bad; kafka/front.c) are replaced by synchronous ones
 * (tests/fuzz/kafka_stub.c, linked instead of kafka/front.c): work
 * offloaded runs at once, and a parked request is retried with its wait
 * expired until it completes, as the front does at its deadline.
 *
 * The handlers run against a real broker (fuzz_rpc.h: a data directory
 * with topic "t" of 2 queues holding batches, group "g"), so requests
 * naming the fixtures reach the store.
 *
 * Invariants checked (abort() on violation, besides ASan/UBSan):
 *  1. A request frame either fails its header (unknown key, unsupported
 *     version) or reaches its handler, which ends it DONE, NONE or BAD, or
 *     completes it later (LATER*) once its waits expire.
 *  2. A request ended BAD names why, and stored nothing: the fixtures'
 *     high watermarks did not move.
 *  3. A response is at most RN_KW_MAX_RESPONSE bytes, and parses against
 *     the response schema of its API and version (fuzz_kafka_req.c, for the
 *     APIs it knows; an API added to rn_kapi_table later is run all the
 *     same, its response checked for size only).
 */
#ifndef RN_FUZZ_KAFKA_H
#define RN_FUZZ_KAFKA_H

#include "tests/fuzz/fuzz_rpc.h"

#include <stdarg.h>

#include "kafka/api.h"
#include "kafka/coord.h"
#include "kafka/frame.h"
#include "kafka/front.h"

/* ---- the front's entry points (tests/fuzz/kafka_stub.c) -------------------------- */

enum { FK_RUNNING, FK_DONE, FK_DROPPED };
extern rn_kreq_t *fk_parked;     /* the request parked, if any */
extern int fk_state;             /* FK_RUNNING until rn_kreq_done / _drop */

/* ---- the context ------------------------------------------------------------------ */

static rn_kctx_t fk_ctx;
static rn_hd_t *fk_ctx_hd;

static rn_kctx_t *fk_context(void)
{
    /* fuzz_rpc.h renews the data directory on this call: the coordinator
     * goes first, while the broker it uses is open. */
    if (fk_ctx_hd && fz_hd && (fz_inputs + 1) % FZ_RESET_EVERY == 0) {
        rn_kcoord_close(fk_ctx.coord);
        fk_ctx.coord = NULL;
        fk_ctx_hd = NULL;
    }
    rn_hd_t *h = fz_handlers();
    if (fk_ctx_hd == h) return &fk_ctx;
    /* A new data directory: a new context. */
    if (fk_ctx_hd) rn_kcoord_close(fk_ctx.coord);
    memset(&fk_ctx, 0, sizeof fk_ctx);
    fk_ctx.hd = h;
    fk_ctx.d = rn_hd_datadir(h);
    snprintf(fk_ctx.host, sizeof fk_ctx.host, "127.0.0.1");
    fk_ctx.port = 9092;
    snprintf(fk_ctx.cluster_id, sizeof fk_ctx.cluster_id, "runnel-fuzz");
    fk_ctx.auto_create = 1;
    fk_ctx.max_frame = RN_KFRONT_DEFAULT_MAX_FRAME;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_kcoord_open(&fk_ctx, &fk_ctx.coord, err) != 0) {
        fprintf(stderr, "fuzz_kafka: rn_kcoord_open: %s\n", err);
        abort();
    }
    fk_ctx_hd = h;
    return &fk_ctx;
}

static int64_t fk_hwm(rn_kctx_t *ctx, uint32_t queue)
{
    rn_qent_t *qe;
    rn_status_t st;
    int64_t hwm = -1;
    if (rn_hd_queue(ctx->hd, "t", queue, &qe, &st) == 0) rn_hd_queue_hwm(ctx->hd, qe, &hwm);
    return hwm;
}

/* Run one request frame (header and body, no size) through its handler as
 * the front does. Returns the handler's end (RN_KH_DONE with a response in
 * q->out when one is due, RN_KH_NONE, RN_KH_BAD) or -1 when the header was
 * refused; *api gets the table entry. The caller frees with fk_free. */
static int fk_run(rn_kreq_t *q, const uint8_t *frame, size_t len, const rn_kapi_t **api)
{
    rn_kctx_t *ctx = fk_context();
    memset(q, 0, sizeof *q);
    q->frame = (uint8_t *)(uintptr_t)frame;
    q->frame_len = (uint32_t)len;
    q->ctx = ctx;
    snprintf(q->peer, sizeof q->peer, "fuzz:0");
    char why[256];
    *api = NULL;
    if (len > ctx->max_frame || rn_kreq_header(q, api, why, sizeof why) != 0) return -1;
    int64_t h0 = fk_hwm(ctx, 0), h1 = fk_hwm(ctx, 1);
    fk_state = FK_RUNNING;
    fk_parked = NULL;
    int r = (*api)->fn(q);
    if (r == RN_KH_LATER || r == RN_KH_LATER_PIPELINED) {
        /* invariant 1: the front retries a parked request with its wait
         * expired once its deadline passed; it must then complete. */
        for (int i = 0; fk_state == FK_RUNNING && i < 1000; i++) {
            rn_kreq_t *p = fk_parked;
            FZ_CHECK(p == q);
            fk_parked = NULL;
            p->retry(p, 1);
        }
        FZ_CHECK(fk_state != FK_RUNNING);
        r = fk_state == FK_DONE ? RN_KH_DONE : RN_KH_NONE;
    }
    FZ_CHECK(r == RN_KH_DONE || r == RN_KH_NONE || r == RN_KH_BAD);
    if (r == RN_KH_BAD) {                                  /* invariant 2 */
        FZ_CHECK(q->why != NULL || q->in.what != NULL);
        FZ_CHECK(fk_hwm(ctx, 0) == h0 && fk_hwm(ctx, 1) == h1);
    }
    FZ_CHECK(q->out.len <= RN_KW_MAX_RESPONSE);            /* invariant 3 */
    return r;
}

static void fk_free(rn_kreq_t *q)
{
    if (q->hfree) q->hfree(q);
    rn_buf_free(&q->out);
}

#endif

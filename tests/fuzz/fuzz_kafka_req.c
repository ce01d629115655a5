/*
 * fuzz_kafka_req.c — libFuzzer target for the Kafka front's request
 * decoders and handlers: the input is one request frame (request header
 * and body, without the size), run as the front runs it (kafka/frame.h's
 * rn_kreq_header, then the handler rn_kapi_table names for its key) against
 * a real store (fuzz_kafka.h). Generic over rn_kapi_table: every API in the
 * table is reached by its key, including ones added after this file.
 *
 * Invariants (besides fuzz_kafka.h's):
 *  1. A complete response parses, to its last byte, against the response
 *     schema of its API and version, for the APIs below (Kafka's
 *     *Response.json; flexible versions with compact forms and tagged
 *     fields); others are checked by fuzz_kafka.h for size only.
 *  2. Nothing an input does makes the fixtures unreadable (fz_still_serving).
 *  3. Bounded memory: the replay driver fails an input that raises peak RSS
 *     by more than its limit (tests/fuzz/replay.c).
 */
#include "tests/fuzz/fuzz_kafka.h"

static void arr_i32(rn_kr_t *r)
{
    int32_t n = rn_kr_array(r, "int32 array");
    for (int32_t i = 0; i < n && !r->err; i++) rn_kr_i32(r, "int32");
}

/* The response body of q (api, version) parses whole: 1, or 0 when not;
 * -1 when this file does not know the API or version. */
static int response_parses(const rn_kreq_t *q)
{
    rn_kr_t rd, *r = &rd;
    int v = q->version;
    rn_kr_init(r, q->out.data, q->out.len, q->w.flex);
    switch (q->api) {
    case 18: {                                             /* ApiVersions */
        int16_t err = rn_kr_i16(r, "error_code");
        int32_t n = rn_kr_array(r, "api_keys");
        for (int32_t i = 0; i < n && !r->err; i++) {
            rn_kr_i16(r, "api_key");
            rn_kr_i16(r, "min_version");
            rn_kr_i16(r, "max_version");
            rn_kr_tags(r);
        }
        if (err == RN_KERR_UNSUPPORTED_VERSION) break;    /* the v0 layout */
        if (v >= 1) rn_kr_i32(r, "throttle_time_ms");
        rn_kr_tags(r);
        break;
    }
    case 3: {                                              /* Metadata */
        if (v > 7) return -1;
        if (v >= 3) rn_kr_i32(r, "throttle_time_ms");
        int32_t nb = rn_kr_array(r, "brokers");
        for (int32_t i = 0; i < nb && !r->err; i++) {
            rn_kr_i32(r, "node_id");
            rn_kr_str(r, "host");
            rn_kr_i32(r, "port");
            if (v >= 1) rn_kr_str(r, "rack");
        }
        if (v >= 2) rn_kr_str(r, "cluster_id");
        if (v >= 1) rn_kr_i32(r, "controller_id");
        int32_t nt = rn_kr_array(r, "topics");
        for (int32_t t = 0; t < nt && !r->err; t++) {
            rn_kr_i16(r, "error_code");
            rn_kr_str(r, "name");
            if (v >= 1) rn_kr_i8(r, "is_internal");
            int32_t np = rn_kr_array(r, "partitions");
            for (int32_t p = 0; p < np && !r->err; p++) {
                rn_kr_i16(r, "error_code");
                rn_kr_i32(r, "partition_index");
                rn_kr_i32(r, "leader_id");
                if (v >= 7) rn_kr_i32(r, "leader_epoch");
                arr_i32(r);
                arr_i32(r);
                if (v >= 5) arr_i32(r);
            }
        }
        break;
    }
    case 0: {                                              /* Produce */
        if (v > 8) return -1;
        int32_t nt = rn_kr_array(r, "responses");
        for (int32_t t = 0; t < nt && !r->err; t++) {
            rn_kr_str(r, "name");
            int32_t np = rn_kr_array(r, "partition_responses");
            for (int32_t p = 0; p < np && !r->err; p++) {
                rn_kr_i32(r, "index");
                rn_kr_i16(r, "error_code");
                rn_kr_i64(r, "base_offset");
                rn_kr_i64(r, "log_append_time_ms");
                if (v >= 5) rn_kr_i64(r, "log_start_offset");
                if (v >= 8) {
                    int32_t ne = rn_kr_array(r, "record_errors");
                    for (int32_t e = 0; e < ne && !r->err; e++) {
                        rn_kr_i32(r, "batch_index");
                        rn_kr_str(r, "batch_index_error_message");
                    }
                    rn_kr_str(r, "error_message");
                }
            }
        }
        if (v >= 1) rn_kr_i32(r, "throttle_time_ms");    /* ProduceResponse: v1+ */
        break;
    }
    case 1: {                                              /* Fetch */
        if (v > 11) return -1;
        rn_kr_i32(r, "throttle_time_ms");
        if (v >= 7) {
            rn_kr_i16(r, "error_code");
            rn_kr_i32(r, "session_id");
        }
        int32_t nt = rn_kr_array(r, "responses");
        for (int32_t t = 0; t < nt && !r->err; t++) {
            rn_kr_str(r, "topic");
            int32_t np = rn_kr_array(r, "partitions");
            for (int32_t p = 0; p < np && !r->err; p++) {
                rn_kr_i32(r, "partition_index");
                rn_kr_i16(r, "error_code");
                rn_kr_i64(r, "high_watermark");
                rn_kr_i64(r, "last_stable_offset");
                if (v >= 5) rn_kr_i64(r, "log_start_offset");
                int32_t na = rn_kr_array(r, "aborted_transactions");
                for (int32_t a = 0; a < na && !r->err; a++) {
                    rn_kr_i64(r, "producer_id");
                    rn_kr_i64(r, "first_offset");
                }
                if (v >= 11) rn_kr_i32(r, "preferred_read_replica");
                rn_kr_bytes(r, "records");
            }
        }
        break;
    }
    case 2: {                                              /* ListOffsets */
        if (v > 5) return -1;
        if (v >= 2) rn_kr_i32(r, "throttle_time_ms");
        int32_t nt = rn_kr_array(r, "topics");
        for (int32_t t = 0; t < nt && !r->err; t++) {
            rn_kr_str(r, "name");
            int32_t np = rn_kr_array(r, "partitions");
            for (int32_t p = 0; p < np && !r->err; p++) {
                rn_kr_i32(r, "partition_index");
                rn_kr_i16(r, "error_code");
                rn_kr_i64(r, "timestamp");
                rn_kr_i64(r, "offset");
                if (v >= 4) rn_kr_i32(r, "leader_epoch");
            }
        }
        break;
    }
    case 22:                                               /* InitProducerId */
        if (v > 1) return -1;
        rn_kr_i32(r, "throttle_time_ms");
        rn_kr_i16(r, "error_code");
        rn_kr_i64(r, "producer_id");
        rn_kr_i16(r, "producer_epoch");
        break;
    default:
        return -1;
    }
    if (r->err) {
        fprintf(stderr, "fuzz_kafka_req: API %d v%d: the response fails at %s\n", q->api, v,
                r->what);
        return 0;
    }
    if (rn_kr_left(r)) {
        fprintf(stderr, "fuzz_kafka_req: API %d v%d: %zu bytes after the response\n", q->api, v,
                rn_kr_left(r));
        return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rn_kreq_t q;
    const rn_kapi_t *api;
    int r = fk_run(&q, data, size, &api);
    int parsed = r == RN_KH_DONE ? response_parses(&q) : -1;
    if (getenv("RN_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_kafka_req: %s v%d: %s, %zu-byte response%s\n",
                api ? api->name : "(header refused)", q.version,
                r == RN_KH_DONE ? "done" : r == RN_KH_NONE ? "no response"
                : r == RN_KH_BAD ? "bad" : "refused", q.out.len,
                parsed == 1 ? " (schema checked)" : "");
    FZ_CHECK(parsed != 0);                                       /* invariant 1 */
    if (r >= 0) fk_free(&q);
    fz_still_serving();                                          /* invariant 2 */
    return 0;
}

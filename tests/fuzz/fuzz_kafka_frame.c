/*
 * fuzz_kafka_frame.c — libFuzzer target for the Kafka front's frame
 * splitter and request header parser (kafka/frame.h), as the front feeds
 * them: the input is a byte stream from a client, cut into reads of sizes
 * chosen by its first byte, passed through rn_kframer_take; each whole
 * frame goes through rn_kreq_header.
 *
 * Invariants (abort() on violation, besides ASan/UBSan):
 *  1. The frames handed over are exactly those a direct reading of the
 *     stream finds (size prefix, then that many bytes), whatever the read
 *     sizes; the splitter stops at the first size outside
 *     RN_KFRAME_MIN..max, and at no other point.
 *  2. No frame held is larger than max (the limit, here 64 KiB, so that
 *     inputs reach it).
 *  3. A header accepted names an API of rn_kapi_table at a version it
 *     implements (or ApiVersions at any version), and leaves q->in inside
 *     the frame.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "kafka/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FF_MAX (64u << 10)

#define FF_CHECK(c)                                                                \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "fuzz_kafka_frame: %s:%d: invariant failed: %s\n",     \
                    __FILE__, __LINE__, #c);                                       \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* The handlers are not linked here: the front's entry points are not used. */

static void check_header(uint8_t *frame, uint32_t len)
{
    rn_kreq_t q;
    memset(&q, 0, sizeof q);
    q.frame = frame;
    q.frame_len = len;
    const rn_kapi_t *a = NULL;
    char why[256];
    if (rn_kreq_header(&q, &a, why, sizeof why) != 0) {
        FF_CHECK(why[0] != '\0');
        return;
    }
    FF_CHECK(a != NULL && a->key == q.api && rn_kapi_find(q.api) == a);       /* invariant 3 */
    FF_CHECK(q.api == 18 || (q.version >= a->min && q.version <= a->max));
    FF_CHECK(q.in.p >= frame && q.in.end == frame + len && q.in.p <= q.in.end);
    FF_CHECK(q.client_id.len < 0 ||
             ((const uint8_t *)q.client_id.p >= frame &&
              (const uint8_t *)q.client_id.p + q.client_id.len <= frame + len));
    rn_buf_free(&q.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t seed = data[0];
    data++;
    size--;
    /* The frames a direct reading finds (invariant 1). */
    size_t expect_end = 0;
    int expect_bad = 0, expect_frames = 0;
    for (;;) {
        if (size - expect_end < 4) break;
        int32_t len = (int32_t)rn_be32_get(data + expect_end);
        if (len < RN_KFRAME_MIN || (uint32_t)len > FF_MAX) {
            expect_bad = 1;
            break;
        }
        if (size - expect_end - 4 < (size_t)len) break;
        expect_end += 4 + (size_t)len;
        expect_frames++;
    }
    rn_kframer_t fr;
    memset(&fr, 0, sizeof fr);
    size_t off = 0, done_end = 0;
    int frames = 0, bad = 0;
    uint32_t step = 1u + (seed & 0x3f) * (seed & 0x40 ? 1024u : 1u);
    while (off < size && !bad) {
        size_t n = size - off < step ? size - off : step;
        size_t used = 0;
        char why[256] = "";
        int r = rn_kframer_take(&fr, FF_MAX, data + off, n, &used, why, sizeof why);
        FF_CHECK(used <= n);
        if (fr.frame) FF_CHECK(fr.frame_len <= FF_MAX && fr.frame_have <= fr.frame_len);
        off += used;
        if (r == RN_KF_BAD) {
            FF_CHECK(why[0] != '\0');
            bad = 1;
            break;
        }
        if (r == RN_KF_FRAME) {
            uint32_t len;
            uint8_t *f = rn_kframer_release(&fr, &len);
            FF_CHECK(f != NULL && len <= FF_MAX);                          /* invariant 2 */
            FF_CHECK(done_end + 4 + len <= size);
            FF_CHECK(rn_be32_get(data + done_end) == len);
            FF_CHECK(memcmp(f, data + done_end + 4, len) == 0);
            done_end += 4 + len;
            frames++;
            check_header(f, len);
            free(f);
        } else {
            FF_CHECK(used == n);
        }
        step = step * 7 % 4099 + 1;
    }
    FF_CHECK(frames == expect_frames && done_end == expect_end && bad == expect_bad);
    rn_kframer_free(&fr);
    return 0;
}

/*
 * fuzz_batch_decode.c — libFuzzer target for the batch decoder: arbitrary
 * bytes through rn_batch_size, rn_batch_validate (deep) and the iterator.
 *
 * Invariants checked (abort() on violation, besides ASan/UBSan findings):
 *  1. No input makes the decoder read outside the given bytes or its scratch.
 *  2. A batch that passes deep validation iterates to exactly record_count
 *     records with consecutive offsets, and every key, value and header lies
 *     inside the batch bytes or the iterator's decompression scratch.
 *  3. Every failure comes with a non-empty errmsg.
 * Random bytes almost never carry a right CRC, so each input is also tried
 * with its batchLength and CRC rewritten to match, to reach record decoding.
 * The corpus seeds every codec with a batch as a Kafka client wrote it
 * (librdkafka-{gzip,snappy,lz4,zstd}, kafka-python-snappy-xerial), so the
 * fuzzer mutates real gzip, raw and xerial snappy, LZ4 and zstd streams.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const uint8_t *p, int64_t n, const uint8_t *lo, const uint8_t *hi)
{
    if (n <= 0) return 1;
    return p && p >= lo && p <= hi && (int64_t)(hi - p) >= n;
}

static int in_batch_or_scratch(const rn_batch_iter_t *it, const uint8_t *b, size_t len,
                               const uint8_t *p, int64_t n)
{
    if (inside(p, n, b, b + len)) return 1;
    return it->scratch.data &&
           inside(p, n, it->scratch.data, it->scratch.data + it->scratch.len);
}

static void check(const uint8_t *b, size_t len)
{
    static const rn_batch_limits_t lim = {1u << 20, 1u << 16};
    char err[RN_ERRMSG_SIZE];
    rn_batch_header_t h;
    size_t sz;

    if (rn_batch_size(b, len, &sz) == 0 && len >= 12 && sz < 12) abort();

    err[0] = '\0';
    int rc = rn_batch_validate(b, len, &lim, 1, &h, err);
    if (rc != 0 && err[0] == '\0') abort();

    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &lim);
    err[0] = '\0';
    int irc = rn_batch_iter_reset(&it, b, len, err);
    if (irc != 0 && err[0] == '\0' && irc != -ENOMEM) abort();
    int32_t n = 0;
    rn_record_t rec;
    while (irc == 0) {
        err[0] = '\0';
        int r = rn_batch_iter_next(&it, &rec, err);
        if (r == 0) break;
        if (r < 0) {
            if (err[0] == '\0') abort();
            irc = r;
            break;
        }
        if (rec.offset != it.hdr.base_offset + n) abort();
        if (!in_batch_or_scratch(&it, b, len, rec.key, rec.key_len)) abort();
        if (!in_batch_or_scratch(&it, b, len, rec.value, rec.value_len)) abort();
        for (uint32_t i = 0; i < rec.header_count; i++) {
            const rn_header_t *hh = &rec.headers[i];
            if (!in_batch_or_scratch(&it, b, len, hh->key, hh->key_len)) abort();
            if (!in_batch_or_scratch(&it, b, len, hh->value, hh->value_len)) abort();
        }
        n++;
    }
    if (rc == 0) {
        /* Valid: the iterator must agree completely. */
        if (irc != 0 || n != h.record_count) abort();
    }
    rn_batch_iter_destroy(&it);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copies, so any overread is caught by ASan. */
    uint8_t *b = calloc(1, size ? size : 1);
    if (!b) return 0;
    if (size) memcpy(b, data, size);
    check(b, size);
    if (size >= RN_BATCH_HEADER_SIZE) {
        uint32_t bl = (uint32_t)(size - 12);
        b[8] = (uint8_t)(bl >> 24); b[9] = (uint8_t)(bl >> 16);
        b[10] = (uint8_t)(bl >> 8); b[11] = (uint8_t)bl;
        uint32_t c = rn_crc32c(0, b + RN_BATCH_CRC_START, size - RN_BATCH_CRC_START);
        b[17] = (uint8_t)(c >> 24); b[18] = (uint8_t)(c >> 16);
        b[19] = (uint8_t)(c >> 8); b[20] = (uint8_t)c;
        check(b, size);
    }
    free(b);
    return 0;
}

/*
 * fuzz_batch_roundtrip.c — libFuzzer round-trip target for the batch codec.
 *
 * The input is read as builder options followed by a list of records (keys,
 * values and headers are views into the input). Records are added to a
 * builder; whenever it says RN_EFULL the batch is finished, checked and the
 * builder reset. Each finished batch must:
 *  1. be at most opts.max_bytes long and hold at most opts.max_records;
 *  2. pass deep validation under those same limits;
 *  3. carry the right header (count, first/max timestamp, producer fields,
 *     codec) and, after rn_batch_set_base_offset, still validate;
 *  4. iterate back to exactly the records that went in, byte for byte;
 *  5. stay within rn_batch_bound(sum of rn_batch_record_bound), and each add
 *     grows rn_batch_builder_size by at most the record's bound.
 * RN_ETOOBIG must only come for a record that does not fit an empty batch.
 * Any violation calls abort().
 *
 * Input layout: byte 0 = codec (bit 0) and max_bytes choice (bits 1-3);
 * byte 1 = max_records choice; then per record a control byte c:
 *   bits 0-1 key: 0 null, 1 empty, 2-3 length from the next byte
 *   bits 2-3 value: the same
 *   bits 4-5 header count (0-3), each header: a length byte for the key, a
 *            byte for the value (0xff = null, else a length)
 *   bit 6    timestamp: 8 raw bytes if set, else previous + (int8) next byte
 * Lengths are clamped to the bytes left.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reader {
    const uint8_t *p, *end;
} reader_t;

static uint8_t next_byte(reader_t *r)
{
    return r->p < r->end ? *r->p++ : 0;
}

static const uint8_t *take(reader_t *r, size_t want, int32_t *len)
{
    size_t left = (size_t)(r->end - r->p);
    if (want > left) want = left;
    const uint8_t *p = r->p;
    r->p += want;
    *len = (int32_t)want;
    return p;
}

static void field(reader_t *r, int mode, const uint8_t **p, int32_t *len)
{
    switch (mode) {
    case 0: *p = NULL; *len = -1; break;
    case 1: *p = r->p; *len = 0; break;
    default: *p = take(r, next_byte(r) * (size_t)(mode - 1), len); break;
    }
}

static int same(const uint8_t *a, int64_t alen, const uint8_t *b, int64_t blen)
{
    if (alen != blen) return 0;
    if (alen < 0) return a == NULL && b == NULL;
    return alen == 0 || memcmp(a, b, (size_t)alen) == 0;
}

static void verify(const uint8_t *out, size_t len, const rn_batch_opts_t *o,
                   const rn_record_t *want, uint32_t n, int64_t base)
{
    rn_batch_limits_t lim = {o->max_bytes, o->max_records};
    if (n == 0 || len > o->max_bytes || n > o->max_records) abort();
    size_t bound = 0;
    for (uint32_t i = 0; i < n; i++) bound += rn_batch_record_bound(&want[i]);
    if (len > rn_batch_bound(bound, o->codec)) abort();
    uint8_t *b = malloc(len);             /* exact size: ASan sees overreads */
    if (!b) abort();
    memcpy(b, out, len);
    rn_batch_set_base_offset(b, base);

    char err[RN_ERRMSG_SIZE];
    rn_batch_header_t h;
    if (rn_batch_validate(b, len, &lim, 1, &h, err) != 0) abort();
    int64_t max_ts = want[0].timestamp;
    for (uint32_t i = 1; i < n; i++)
        if (want[i].timestamp > max_ts) max_ts = want[i].timestamp;
    if (h.base_offset != base || h.record_count != (int32_t)n ||
        h.last_offset_delta != (int32_t)n - 1 || h.first_timestamp != want[0].timestamp ||
        h.max_timestamp != max_ts || h.producer_id != o->producer_id ||
        h.producer_epoch != o->producer_epoch || h.base_sequence != o->base_sequence ||
        h.attributes != o->codec || h.leader_epoch != 0 || h.magic != 2)
        abort();

    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &lim);
    if (rn_batch_iter_reset(&it, b, len, err) != 0) abort();
    rn_record_t rec;
    for (uint32_t i = 0; i < n; i++) {
        if (rn_batch_iter_next(&it, &rec, err) != 1) abort();
        const rn_record_t *w = &want[i];
        if (rec.offset != base + (int64_t)i || rec.timestamp != w->timestamp) abort();
        if (!same(rec.key, rec.key_len, w->key, w->key_len)) abort();
        if (!same(rec.value, rec.value_len, w->value, w->value_len)) abort();
        if (rec.header_count != w->header_count) abort();
        for (uint32_t k = 0; k < w->header_count; k++) {
            const rn_header_t *g = &rec.headers[k], *x = &w->headers[k];
            if (!same(g->key, g->key_len, x->key, x->key_len)) abort();
            if (!same(g->value, g->value_len, x->value, x->value_len)) abort();
        }
    }
    if (rn_batch_iter_next(&it, &rec, err) != 0) abort();
    rn_batch_iter_destroy(&it);
    free(b);
}

/* Would r fit as the only record of an empty batch with these options? */
static int fits_alone(const rn_batch_opts_t *o, const rn_record_t *r)
{
    rn_batch_builder_t b;
    if (rn_batch_builder_init(&b, o) != 0) abort();
    int rc = rn_batch_builder_add(&b, r);
    rn_batch_builder_destroy(&b);
    return rc == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t max_bytes_choice[8] = {
        1u << 20, 100, 200, 500, 1000, 4096, 65536, RN_BATCH_MAX_BYTES};
    reader_t r = {data, data + size};
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    uint8_t b0 = next_byte(&r), b1 = next_byte(&r);
    o.codec = (b0 & 1) ? RN_BATCH_CODEC_LZ4 : RN_BATCH_CODEC_NONE;
    o.max_bytes = max_bytes_choice[(b0 >> 1) & 7];
    o.max_records = b1 >= 128 ? RN_BATCH_MAX_RECORDS : 1u + (b1 % 16);
    o.producer_id = (b0 & 0x10) ? 7 : -1;
    o.producer_epoch = (b0 & 0x10) ? 2 : -1;
    o.base_sequence = (b0 & 0x10) ? (int32_t)b1 * 1000 : -1;
    int64_t base = (b0 & 0x20) ? INT64_MAX / 2 : (int64_t)b1;

    /* Each record consumes at least one input byte. */
    size_t cap = size + 1;
    rn_record_t *want = calloc(cap, sizeof *want);
    rn_header_t *hdrs = calloc(cap * 3, sizeof *hdrs);
    if (!want || !hdrs) abort();

    rn_batch_builder_t bld;
    if (rn_batch_builder_init(&bld, &o) != 0) abort();
    uint32_t n = 0;
    size_t recno = 0;
    int64_t ts = 1700000000000LL;
    const uint8_t *out;
    size_t len;

    while (r.p < r.end) {
        uint8_t c = next_byte(&r);
        rn_record_t rec;
        memset(&rec, 0, sizeof rec);
        field(&r, c & 3, &rec.key, &rec.key_len);
        field(&r, (c >> 2) & 3, &rec.value, &rec.value_len);
        rec.header_count = (c >> 4) & 3;
        rn_header_t *hs = &hdrs[recno * 3];
        for (uint32_t k = 0; k < rec.header_count; k++) {
            int32_t kl;
            hs[k].key = take(&r, next_byte(&r) % 16, &kl);
            hs[k].key_len = (uint32_t)kl;
            uint8_t vb = next_byte(&r);
            if (vb == 0xff) { hs[k].value = NULL; hs[k].value_len = -1; }
            else hs[k].value = take(&r, vb, &hs[k].value_len);
        }
        rec.headers = rec.header_count ? hs : NULL;
        if (c & 0x40) {
            uint64_t t = 0;
            for (int k = 0; k < 8; k++) t = t << 8 | next_byte(&r);
            ts = (int64_t)t;
        } else {
            /* A small step; wraps (never UB) after a raw extreme timestamp. */
            ts = (int64_t)((uint64_t)ts + (uint64_t)(int64_t)(int8_t)next_byte(&r));
        }
        rec.timestamp = ts;

        size_t before = rn_batch_builder_size(&bld);
        int rc = rn_batch_builder_add(&bld, &rec);
        if (rc == 0 && rn_batch_builder_size(&bld) - before > rn_batch_record_bound(&rec)) abort();
        if (rc == RN_EFULL) {
            if (n == 0) abort();
            if (rn_batch_builder_finish(&bld, &out, &len) != 0) abort();
            verify(out, len, &o, want, n, base);
            rn_batch_builder_reset(&bld);
            n = 0;
            rc = rn_batch_builder_add(&bld, &rec);
        }
        if (rc == RN_ETOOBIG) {
            if (fits_alone(&o, &rec)) abort();
        } else if (rc == RN_EINVAL) {
            /* Only a timestamp too far from the batch's first is refused. */
            int64_t d;
            if (n == 0 || !__builtin_sub_overflow(rec.timestamp, want[0].timestamp, &d)) abort();
            ts = want[0].timestamp;
        } else if (rc != 0) {
            abort();
        } else {
            want[n++] = rec;
            recno++;
        }
        if (rn_batch_builder_count(&bld) != n) abort();
    }
    if (n > 0) {
        if (rn_batch_builder_finish(&bld, &out, &len) != 0) abort();
        verify(out, len, &o, want, n, base);
    } else if (rn_batch_builder_finish(&bld, &out, &len) != RN_EINVAL) {
        abort();
    }
    rn_batch_builder_destroy(&bld);
    free(want);
    free(hdrs);
    return 0;
}

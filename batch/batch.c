/*
 * batch.c — Kafka RecordBatch v2 codec: header parsing and validation, the
 * record iterator (decompressing gzip, snappy, LZ4 and zstd, Kafka's four
 * codecs, through zlib, libsnappy, liblz4 and libzstd) and the batch builder
 * (none or LZ4).
 * The byte layout is drawn in batch.h; batch/README.md names the references.
 *
 * Invariants:
 *  1. Decoding never reads outside [buf, buf + len) (or the decompressed
 *     scratch), whatever the bytes hold: every length and varint is checked
 *     against the bytes left before it is used. Varints longer than their
 *     type (5 bytes for varint, 10 for varlong, or a last byte with bits past
 *     the width) are corrupt, not truncated silently.
 *  2. Limits: a limit of 0 or above the hard ceiling means the ceiling
 *     (rn_batch_default_limits). A batch is accepted only when its bytes,
 *     and also its uncompressed size (61 + decompressed records), are within
 *     max_bytes, and its record count is within 1..max_records. The builder
 *     keeps the same rule: it admits a record only when
 *     rn_batch_bound(records) <= max_bytes, so a finished batch, compressed
 *     or not, never exceeds max_bytes, and its uncompressed form does not either.
 *     Amplification is capped too (batch.h): decompressed records at most
 *     max(RN_BATCH_MAX_EXPANSION x compressed, RN_BATCH_EXPANSION_FLOOR),
 *     RN_BATCH_MAX_HEADERS headers per record, RN_BATCH_MAX_BATCH_HEADERS per
 *     batch; the builder refuses or splits what would break them and writes
 *     uncompressed an LZ4 batch that would expand more. So whatever a batch
 *     holds, and whatever its codec, decoding it allocates at most
 *     max(64 x its size, 1 MiB) of scratch (the scratch never grows past
 *     the cap; a size the input declares is checked before allocating) plus
 *     RN_BATCH_MAX_HEADERS header slots and one decompression context per
 *     codec (zstd decodes in one call into the scratch, so no frame header
 *     can make it allocate a window); validation allocates no header slots
 *     at all (it walks, as Redis' lpValidateIntegrity).
 *  3. A valid batch has recordCount == lastOffsetDelta + 1 >= 1, record i has
 *     offsetDelta i, every record's length varint equals the bytes its fields
 *     take, no bytes follow the last record, and (CreateTime batches, checked
 *     by deep validation) maxTimestamp equals the largest record timestamp.
 *     Record timestamp = baseTimestamp + timestampDelta (an overflow is corrupt);
 *     in LogAppendTime batches (attribute bit 3) every record reads as
 *     maxTimestamp, as Kafka consumers see it. Control batches (bit 5) are
 *     refused: runnel stores only data records.
 *  4. The builder's records buffer starts with RN_BATCH_HEADER_SIZE bytes of
 *     room for the header, so an uncompressed batch is finished in place with
 *     no copy; LZ4 batches are compressed into `out`. Buffers are reused across
 *     reset: after the first batches, adding and finishing allocate nothing.
 *     The iterator reuses its scratch, header array and decompression
 *     contexts (one per codec, created on first use) likewise.
 *  5. The builder writes base offset 0, leader epoch 0, magic 2, attributes =
 *     codec (CreateTime), producer id/epoch/base sequence from its options,
 *     baseTimestamp = first record's timestamp, maxTimestamp = the largest.
 *     LZ4 frames use 64 KiB independent blocks with no content size and no
 *     checksums (what Kafka's own LZ4 codec writes and reads).
 *  6. Every codec decodes through one dispatch (decompress) into the same
 *     scratch under the same cap; corrupt, truncated or trailing compressed
 *     bytes are RN_ECORRUPT "batch's CODEC records do not decompress: ...".
 */
#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/bytes.h"
#include "common/error.h"

#include <errno.h>
#include <inttypes.h>
#include <lz4frame.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

const rn_batch_limits_t rn_batch_default_limits = {RN_BATCH_MAX_BYTES, RN_BATCH_MAX_RECORDS};

#define ATTR_TIMESTAMP_TYPE 0x08
#define ATTR_TRANSACTIONAL  0x10
#define ATTR_CONTROL        0x20

static void effective_limits(const rn_batch_limits_t *in, rn_batch_limits_t *out)
{
    *out = rn_batch_default_limits;
    if (!in) return;
    if (in->max_bytes != 0 && in->max_bytes < RN_BATCH_MAX_BYTES) out->max_bytes = in->max_bytes;
    if (in->max_records != 0 && in->max_records < RN_BATCH_MAX_RECORDS)
        out->max_records = in->max_records;
}

static const char *codec_name(int codec)
{
    switch (codec) {
    case 0: return "none";
    case 1: return "gzip";
    case 2: return "snappy";
    case 3: return "lz4";
    case 4: return "zstd";
    default: return "unknown";
    }
}

/* ---- header --------------------------------------------------------------- */

int rn_batch_size(const uint8_t *buf, size_t len, size_t *size)
{
    if (len < 12) return RN_ECORRUPT;
    int32_t bl = (int32_t)rn_be32_get(buf + 8);
    if (bl < 0) return RN_ECORRUPT;
    *size = 12 + (size_t)bl;
    return 0;
}

void rn_batch_set_base_offset(uint8_t *batch, int64_t base_offset)
{
    rn_be64_put(batch, (uint64_t)base_offset);
}

static void read_header(const uint8_t *b, rn_batch_header_t *h)
{
    h->base_offset       = (int64_t)rn_be64_get(b + 0);
    h->batch_length      = (int32_t)rn_be32_get(b + 8);
    h->leader_epoch      = (int32_t)rn_be32_get(b + 12);
    h->magic             = (int8_t)b[16];
    h->crc               = rn_be32_get(b + 17);
    h->attributes        = (int16_t)rn_be16_get(b + 21);
    h->last_offset_delta = (int32_t)rn_be32_get(b + 23);
    h->first_timestamp   = (int64_t)rn_be64_get(b + 27);
    h->max_timestamp     = (int64_t)rn_be64_get(b + 35);
    h->producer_id       = (int64_t)rn_be64_get(b + 43);
    h->producer_epoch    = (int16_t)rn_be16_get(b + 51);
    h->base_sequence     = (int32_t)rn_be32_get(b + 53);
    h->record_count      = (int32_t)rn_be32_get(b + 57);
}

int rn_batch_parse_header(const uint8_t *buf, size_t len, const rn_batch_limits_t *lim,
                          rn_batch_header_t *out, char *errmsg)
{
    rn_batch_limits_t l;
    rn_batch_header_t h;
    effective_limits(lim, &l);

    if (len < RN_BATCH_HEADER_SIZE)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "batch is %zu bytes, shorter than the %d-byte header", len,
                       RN_BATCH_HEADER_SIZE);
    read_header(buf, &h);
    if (h.batch_length < RN_BATCH_HEADER_SIZE - 12)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "batch length field says %" PRId32 " bytes but at least %d are needed "
                       "for the header", h.batch_length, RN_BATCH_HEADER_SIZE - 12);
    if ((size_t)h.batch_length != len - 12)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "batch length field says %" PRId32 " bytes but %zu were given",
                       h.batch_length, len - 12);
    if (h.magic != RN_BATCH_MAGIC)
        return rn_errf(errmsg, RN_EFORMAT, "magic %d is not supported (only %d)", h.magic,
                       RN_BATCH_MAGIC);
    if (len > l.max_bytes)
        return rn_errf(errmsg, RN_ETOOBIG, "batch is %zu bytes, over the limit of %" PRIu32,
                       len, l.max_bytes);
    int codec = h.attributes & RN_BATCH_CODEC_MASK;
    if (codec > RN_BATCH_CODEC_ZSTD)
        return rn_errf(errmsg, RN_EFORMAT,
                       "compression codec %d is not supported (only 0 none, 1 gzip, 2 snappy, "
                       "3 lz4, 4 zstd)", codec);
    if (h.attributes & ATTR_CONTROL)
        return rn_errf(errmsg, RN_EFORMAT,
                       "control batches (attribute bit 5) are not supported (only data batches)");
    if (h.record_count <= 0)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "record count %" PRId32 " is invalid (a batch holds at least 1 record)",
                       h.record_count);
    if ((uint32_t)h.record_count > l.max_records)
        return rn_errf(errmsg, RN_ETOOBIG,
                       "record count %" PRId32 " is over the limit of %" PRIu32,
                       h.record_count, l.max_records);
    if (h.last_offset_delta != h.record_count - 1)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "last offset delta %" PRId32 " does not match record count %" PRId32
                       " (must be count - 1)", h.last_offset_delta, h.record_count);
    if (out) *out = h;
    return 0;
}

/* ---- iterator ------------------------------------------------------------- */

void rn_batch_iter_init(rn_batch_iter_t *it, const rn_batch_limits_t *lim)
{
    memset(it, 0, sizeof *it);
    effective_limits(lim, &it->lim);
    it->hdr.record_count = -1;     /* no batch yet: next() refuses */
}

void rn_batch_iter_destroy(rn_batch_iter_t *it)
{
    rn_buf_free(&it->scratch);
    free(it->hbuf);
    it->hbuf = NULL;
    it->hcap = 0;
    if (it->lz4) LZ4F_freeDecompressionContext((LZ4F_dctx *)it->lz4);
    it->lz4 = NULL;
    if (it->zlib) inflateEnd(it->zlib);
    free(it->zlib);
    it->zlib = NULL;
    ZSTD_freeDCtx(it->zstd);
    it->zstd = NULL;
    it->pos = it->end = NULL;
    it->hdr.record_count = -1;
}

int rn_batch_find_time(const uint8_t *b, size_t len, int64_t ts, int32_t *index)
{
    if (len < RN_BATCH_HEADER_SIZE || (b[22] & RN_BATCH_CODEC_MASK) != RN_BATCH_CODEC_NONE)
        return -1;
    int64_t base_ts = (int64_t)rn_be64_get(b + 27);
    int32_t count = (int32_t)rn_be32_get(b + 57);
    const uint8_t *p = b + RN_BATCH_HEADER_SIZE, *end = b + len;
    for (int32_t i = 0; i < count; i++) {
        int32_t rlen;
        int64_t delta;
        if (rn_varint32_get(&p, end, &rlen) != 0 || rlen < 2 || rlen > end - p) return -1;
        const uint8_t *rend = p + rlen;
        p++;                                   /* record attributes */
        if (rn_varint64_get(&p, rend, &delta) != 0) return -1;
        if ((int64_t)((uint64_t)base_ts + (uint64_t)delta) >= ts) {
            *index = i;
            return 1;
        }
        p = rend;
    }
    return 0;
}

/* The most the records of a compressed batch may decompress to, n compressed
 * bytes (invariant 2). */
static size_t expansion_cap(size_t n)
{
    size_t cap = n > SIZE_MAX / RN_BATCH_MAX_EXPANSION ? SIZE_MAX : n * RN_BATCH_MAX_EXPANSION;
    return cap < RN_BATCH_EXPANSION_FLOOR ? RN_BATCH_EXPANSION_FLOOR : cap;
}

/* "batch's CODEC records do not decompress: DETAIL" (invariant 6). */
__attribute__((format(printf, 3, 4)))
static int undecodable(char *errmsg, int codec, const char *fmt, ...)
{
    char detail[RN_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return rn_errf(errmsg, RN_ECORRUPT, "batch's %s records do not decompress: %s",
                   codec_name(codec), detail);
}

/* One codec's try at decompressing src[0..n) into dst[0..cap): 0 and *out =
 * the bytes written when everything fit; RN_EFULL when the output needs more
 * than cap bytes; any other code with errmsg when the input is corrupt.
 * Contexts live in the iterator and are reset on every try. */
typedef int (*inflate_fn)(rn_batch_iter_t *it, const uint8_t *src, size_t n, uint8_t *dst,
                          size_t cap, size_t *out, char *errmsg);

/* LZ4 frame (Kafka's codec 3: 64 KiB blocks, no content size). A frame may
 * link its blocks (the output is then their dictionary), so a try that runs
 * out of room starts over in a bigger buffer rather than growing this one. */
static int lz4_inflate(rn_batch_iter_t *it, const uint8_t *src, size_t n, uint8_t *dst,
                       size_t cap, size_t *out, char *errmsg)
{
    if (!it->lz4) {
        LZ4F_dctx *d = NULL;
        if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION))) return -ENOMEM;
        it->lz4 = d;
    }
    LZ4F_dctx *dctx = it->lz4;
    LZ4F_resetDecompressionContext(dctx);
    size_t spos = 0, dpos = 0, ret;
    for (;;) {
        size_t ssz = n - spos, dsz = cap - dpos;
        ret = LZ4F_decompress(dctx, dst + dpos, &dsz, src + spos, &ssz, NULL);
        if (LZ4F_isError(ret))
            return undecodable(errmsg, RN_BATCH_CODEC_LZ4, "LZ4 frame is corrupt: %s",
                               LZ4F_getErrorName(ret));
        spos += ssz;
        dpos += dsz;
        if (ret == 0) break;
        if (ssz == 0 && dsz == 0) {       /* no progress: out of room or of input */
            if (dpos == cap) return RN_EFULL;
            return undecodable(errmsg, RN_BATCH_CODEC_LZ4, "LZ4 frame is truncated: %zu "
                               "compressed bytes end mid-frame", n);
        }
    }
    if (spos != n)
        return undecodable(errmsg, RN_BATCH_CODEC_LZ4, "%zu bytes follow the end of the LZ4 "
                           "frame (only one frame is allowed)", n - spos);
    *out = dpos;
    return 0;
}

/* gzip (codec 1): one or more gzip members back to back (Java's
 * GZIPInputStream reads concatenated members too); a zlib stream is
 * accepted as well (32 + MAX_WBITS detects either header). zlib keeps its
 * window itself, but the try still starts over when out of room, as the
 * others do. */
static int gzip_inflate(rn_batch_iter_t *it, const uint8_t *src, size_t n, uint8_t *dst,
                        size_t cap, size_t *out, char *errmsg)
{
    z_stream *z = it->zlib;
    if (!z) {
        if (!(z = calloc(1, sizeof *z))) return -ENOMEM;
        if (inflateInit2(z, 32 + MAX_WBITS) != Z_OK) {
            free(z);
            return -ENOMEM;
        }
        it->zlib = z;
    } else if (inflateReset(z) != Z_OK) {
        return -ENOMEM;
    }
    /* zlib counts in uInt: a batch (16 MiB at most) and its cap fit. */
    z->next_in = (Bytef *)(uintptr_t)src;
    z->avail_in = (uInt)n;
    z->next_out = dst;
    z->avail_out = (uInt)cap;
    for (;;) {
        int r = inflate(z, Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            if (z->avail_in == 0) break;
            if (z->avail_in < 2 || z->next_in[0] != 0x1f || z->next_in[1] != 0x8b)
                return undecodable(errmsg, RN_BATCH_CODEC_GZIP, "%u bytes follow the end of "
                                   "the gzip stream and do not start another gzip member",
                                   z->avail_in);
            if (inflateReset(z) != Z_OK) return -ENOMEM;      /* the next member */
        } else if (r == Z_BUF_ERROR) {   /* no progress: out of room or of input */
            if (z->avail_out == 0) return RN_EFULL;
            return undecodable(errmsg, RN_BATCH_CODEC_GZIP, "the gzip stream is truncated "
                               "(%zu compressed bytes end mid-stream)", n);
        } else if (r == Z_MEM_ERROR) {
            return -ENOMEM;
        } else if (r == Z_NEED_DICT) {
            return undecodable(errmsg, RN_BATCH_CODEC_GZIP, "the stream needs a preset "
                               "dictionary (Kafka's gzip has none)");
        } else if (r != Z_OK) {
            return undecodable(errmsg, RN_BATCH_CODEC_GZIP, "%s",
                               z->msg ? z->msg : "invalid gzip data");
        }
    }
    *out = cap - z->avail_out;
    return 0;
}

/* snappy (codec 2), as Kafka clients write it: Java and kafka-python use
 * xerial's framing (a 16-byte header: 0x82 "SNAPPY" 0, int32 version, int32
 * compatible version; then blocks, each an int32 big-endian length and a raw
 * snappy block), librdkafka one raw snappy block. Both are accepted. Every
 * raw block starts with its decompressed length, so the total is known (and
 * checked against the limit, snappy_size) before anything is allocated. */
static const uint8_t xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define XERIAL_HEADER 16

/* One raw block into dst[0..room); with dst NULL only its length. */
static int snappy_block(const uint8_t *src, size_t n, uint8_t *dst, size_t room, size_t *len,
                        size_t at, char *errmsg)
{
    size_t want;
    if (snappy_uncompressed_length((const char *)src, n, &want) != SNAPPY_OK)
        return undecodable(errmsg, RN_BATCH_CODEC_SNAPPY, "the snappy block at byte %zu has "
                           "no valid length header", at);
    *len = want;
    if (!dst) return 0;
    if (want > room) return RN_EFULL;
    *len = room;
    if (snappy_uncompress((const char *)src, n, (char *)dst, len) != SNAPPY_OK || *len != want)
        return undecodable(errmsg, RN_BATCH_CODEC_SNAPPY, "the snappy block at byte %zu is "
                           "corrupt", at);
    return 0;
}

/* Walk the blocks, decompressing into dst[0..cap), or with dst NULL only
 * adding up their lengths; *out = the total. */
static int snappy_walk(const uint8_t *src, size_t n, uint8_t *dst, size_t cap, size_t *out,
                       char *errmsg)
{
    size_t total = 0, len;
    int rc;
    if (n < XERIAL_HEADER || memcmp(src, xerial_magic, sizeof xerial_magic) != 0) {
        if ((rc = snappy_block(src, n, dst, cap, &len, 0, errmsg)) != 0) return rc;
        *out = len;
        return 0;
    }
    for (size_t pos = XERIAL_HEADER; pos < n; ) {
        if (n - pos < 4)
            return undecodable(errmsg, RN_BATCH_CODEC_SNAPPY, "xerial block length at byte "
                               "%zu is cut off (%zu bytes left)", pos, n - pos);
        uint32_t blen = rn_be32_get(src + pos);
        if (blen > n - pos - 4)
            return undecodable(errmsg, RN_BATCH_CODEC_SNAPPY, "xerial block at byte %zu says "
                               "%" PRIu32 " bytes but %zu are left", pos, blen, n - pos - 4);
        rc = snappy_block(src + pos + 4, blen, dst ? dst + total : NULL, cap - total, &len,
                          pos + 4, errmsg);
        if (rc != 0) return rc;
        total = len > SIZE_MAX - total ? SIZE_MAX : total + len;
        pos += 4 + (size_t)blen;
    }
    *out = total;
    return 0;
}

static int snappy_inflate(rn_batch_iter_t *it, const uint8_t *src, size_t n, uint8_t *dst,
                          size_t cap, size_t *out, char *errmsg)
{
    return snappy_walk(src, n, dst, cap, out, errmsg);
}

/* zstd (codec 4): one or more frames, decompressed in one call. The frame
 * content size may be absent (librdkafka and Java stream their frames), so
 * it is only a hint (zstd checks it against the data). Decoding in one call
 * makes the output buffer zstd's window: a frame cannot make zstd allocate a
 * window of its own (a streaming decoder allocates what the frame header
 * asks for, up to 128 MiB by default). */
static int zstd_inflate(rn_batch_iter_t *it, const uint8_t *src, size_t n, uint8_t *dst,
                        size_t cap, size_t *out, char *errmsg)
{
    if (!it->zstd && !(it->zstd = ZSTD_createDCtx())) return -ENOMEM;
    if (n == 0)
        return undecodable(errmsg, RN_BATCH_CODEC_ZSTD, "no zstd frame follows the header");
    size_t r = ZSTD_decompressDCtx(it->zstd, dst, cap, src, n);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) return RN_EFULL;
        if (ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation) return -ENOMEM;
        return undecodable(errmsg, RN_BATCH_CODEC_ZSTD, "%s", ZSTD_getErrorName(r));
    }
    *out = r;
    return 0;
}

/* The decompressed size the compressed records declare, when their codec
 * writes one: snappy always, zstd when the (first) frame header holds it.
 * SIZE_MAX when unknown or unreadable (the decoder then says what is wrong). */
static size_t declared_size(int codec, const uint8_t *src, size_t n)
{
    size_t total;
    if (codec == RN_BATCH_CODEC_SNAPPY)
        return snappy_walk(src, n, NULL, 0, &total, NULL) == 0 ? total : SIZE_MAX;
    if (codec == RN_BATCH_CODEC_ZSTD) {
        unsigned long long c = ZSTD_getFrameContentSize(src, n);
        if (c != ZSTD_CONTENTSIZE_UNKNOWN && c != ZSTD_CONTENTSIZE_ERROR && c < SIZE_MAX)
            return (size_t)c;
    }
    return SIZE_MAX;
}

/* Decompress a batch's n compressed record bytes into it->scratch, at most
 * limit bytes: the smaller of the batch limit's room and the expansion cap
 * (invariant 2); by_expansion says which, for the message. A size the input
 * declares (declared_size) is checked against limit before anything is
 * allocated and used as the first try; else the first try guesses (4x, or
 * the scratch already there), and a try that runs out of room starts again
 * in a buffer twice as big, up to limit. Doubling keeps the total work
 * under 2x, and the buffer never exceeds limit. */
static int decompress(rn_batch_iter_t *it, int codec, const uint8_t *src, size_t n,
                      size_t limit, int by_expansion, char *errmsg)
{
    inflate_fn fn;
    switch (codec) {
    case RN_BATCH_CODEC_GZIP:   fn = gzip_inflate; break;
    case RN_BATCH_CODEC_SNAPPY: fn = snappy_inflate; break;
    case RN_BATCH_CODEC_LZ4:    fn = lz4_inflate; break;
    case RN_BATCH_CODEC_ZSTD:   fn = zstd_inflate; break;
    default:
        return rn_errf(errmsg, RN_EFORMAT, "compression codec %d is not supported", codec);
    }
    size_t want = declared_size(codec, src, n);
    if (want == SIZE_MAX) {
        want = it->scratch.cap;
        if (want < 4 * n) want = 4 * n;
        if (want < 65536) want = 65536;
        if (want > limit) want = limit;
    }
    for (;;) {
        size_t out = 0;
        int rc = RN_EFULL;
        if (want <= limit) {
            it->scratch.len = 0;
            if (rn_buf_reserve(&it->scratch, want ? want : 1, limit) != 0) return -ENOMEM;
            rc = fn(it, src, n, it->scratch.data, want, &out, errmsg);
        }
        if (rc == 0) {
            it->scratch.len = out;
            return 0;
        }
        if (rc != RN_EFULL) return rc;
        if (want >= limit) {
            if (by_expansion)
                return rn_errf(errmsg, RN_ETOOBIG,
                               "decompressed records exceed %zu bytes: a batch's %s records "
                               "may expand at most %ux their %zu compressed bytes (or to %u "
                               "bytes)", limit, codec_name(codec), RN_BATCH_MAX_EXPANSION, n,
                               RN_BATCH_EXPANSION_FLOOR);
            return rn_errf(errmsg, RN_ETOOBIG,
                           "decompressed records exceed %zu bytes (the batch limit less "
                           "the header)", limit);
        }
        want = want > limit / 2 ? limit : want < 32768 ? 65536 : want * 2;
    }
}

int rn_batch_iter_reset(rn_batch_iter_t *it, const uint8_t *batch, size_t len, char *errmsg)
{
    it->index = 0;
    it->pos = it->end = NULL;
    int rc = rn_batch_parse_header(batch, len, &it->lim, &it->hdr, errmsg);
    if (rc != 0) goto fail;
    it->nheaders = 0;
    int codec = it->hdr.attributes & RN_BATCH_CODEC_MASK;
    if (codec != RN_BATCH_CODEC_NONE) {
        size_t n = len - RN_BATCH_HEADER_SIZE;
        size_t room = it->lim.max_bytes - RN_BATCH_HEADER_SIZE, cap = expansion_cap(n);
        rc = decompress(it, codec, batch + RN_BATCH_HEADER_SIZE, n, cap < room ? cap : room,
                        cap < room, errmsg);
        if (rc != 0) goto fail;
        it->pos = it->scratch.data;
        it->end = it->scratch.data + it->scratch.len;
    } else {
        it->pos = batch + RN_BATCH_HEADER_SIZE;
        it->end = batch + len;
    }
    return 0;
fail:
    it->hdr.record_count = -1;
    return rc;
}

static int varint_err(char *errmsg, int vrc, int32_t idx, const char *what)
{
    if (vrc == RN_VARINT_TRUNCATED)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": %s is cut off by the end of "
                       "the record", idx, what);
    return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": %s varint is too long", idx,
                   what);
}

/* Grow the header array to at least n entries. n is bounded by the caller
 * (each header takes at least 2 bytes of the record). */
static int reserve_headers(rn_batch_iter_t *it, uint32_t n)
{
    if (n <= it->hcap) return 0;
    uint32_t cap = it->hcap ? it->hcap : 8;
    while (cap < n) cap = cap > UINT32_MAX / 2 ? n : cap * 2;
    rn_header_t *h = realloc(it->hbuf, (size_t)cap * sizeof *h);
    if (!h) return -ENOMEM;
    it->hbuf = h;
    it->hcap = cap;
    return 0;
}

/* The next record; with store == 0 its headers are checked but not kept
 * (rec->headers NULL): the allocation-free walk of validation. */
static int record_next(rn_batch_iter_t *it, rn_record_t *rec, int store, char *errmsg)
{
    const int32_t idx = it->index;
    if (it->hdr.record_count < 0)
        return rn_errf(errmsg, RN_EINVAL, "iterator has no batch (rn_batch_iter_reset "
                       "failed or was not called)");
    if (idx >= it->hdr.record_count) {
        if (it->pos != it->end)
            return rn_errf(errmsg, RN_ECORRUPT, "%td bytes follow the last of %" PRId32
                           " records", it->end - it->pos, it->hdr.record_count);
        return 0;
    }
    if (it->pos >= it->end)
        return rn_errf(errmsg, RN_ECORRUPT, "batch says %" PRId32 " records but holds only %"
                       PRId32, it->hdr.record_count, idx);

    const uint8_t *p = it->pos;
    int32_t rlen, odelta, klen, vlen, hcount;
    int64_t tdelta;
    int vrc;

    if ((vrc = rn_varint32_get(&p, it->end, &rlen)) != 0)
        return varint_err(errmsg, vrc, idx, "length");
    if (rlen < 0)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": negative length %" PRId32,
                       idx, rlen);
    if (rlen > it->end - p)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": length %" PRId32 " runs past "
                       "the end of the records (%td bytes left)", idx, rlen, it->end - p);
    const uint8_t *rend = p + rlen;
    if (p >= rend) return varint_err(errmsg, RN_VARINT_TRUNCATED, idx, "attributes");
    p++;                                    /* record attributes: unused */
    if ((vrc = rn_varint64_get(&p, rend, &tdelta)) != 0)
        return varint_err(errmsg, vrc, idx, "timestamp delta");
    if ((vrc = rn_varint32_get(&p, rend, &odelta)) != 0)
        return varint_err(errmsg, vrc, idx, "offset delta");
    if (odelta != idx)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": offset delta is %" PRId32
                       ", expected %" PRId32, idx, odelta, idx);

    if ((vrc = rn_varint32_get(&p, rend, &klen)) != 0)
        return varint_err(errmsg, vrc, idx, "key length");
    if (klen < -1 || klen > rend - p)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": key length %" PRId32 " is "
                       "invalid (-1 for null, or up to the %td bytes left)", idx, klen, rend - p);
    const uint8_t *key = klen >= 0 ? p : NULL;
    if (klen > 0) p += klen;

    if ((vrc = rn_varint32_get(&p, rend, &vlen)) != 0)
        return varint_err(errmsg, vrc, idx, "value length");
    if (vlen < -1 || vlen > rend - p)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": value length %" PRId32 " is "
                       "invalid (-1 for null, or up to the %td bytes left)", idx, vlen, rend - p);
    const uint8_t *value = vlen >= 0 ? p : NULL;
    if (vlen > 0) p += vlen;

    if ((vrc = rn_varint32_get(&p, rend, &hcount)) != 0)
        return varint_err(errmsg, vrc, idx, "header count");
    if (hcount < 0 || hcount > (rend - p) / 2)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": header count %" PRId32 " is "
                       "invalid (each header takes at least 2 of the %td bytes left)", idx,
                       hcount, rend - p);
    if ((uint32_t)hcount > RN_BATCH_MAX_HEADERS)
        return rn_errf(errmsg, RN_ETOOBIG, "record %" PRId32 ": %" PRId32 " headers, over the "
                       "limit of %u headers per record", idx, hcount, RN_BATCH_MAX_HEADERS);
    if (it->nheaders + (uint32_t)hcount > RN_BATCH_MAX_BATCH_HEADERS)
        return rn_errf(errmsg, RN_ETOOBIG, "record %" PRId32 ": its %" PRId32 " headers take "
                       "the batch past the limit of %u headers per batch", idx, hcount,
                       RN_BATCH_MAX_BATCH_HEADERS);
    it->nheaders += (uint32_t)hcount;
    if (store && hcount > 0 && reserve_headers(it, (uint32_t)hcount) != 0) return -ENOMEM;
    for (int32_t i = 0; i < hcount; i++) {
        int32_t hk, hv;
        if ((vrc = rn_varint32_get(&p, rend, &hk)) != 0)
            return varint_err(errmsg, vrc, idx, "header key length");
        if (hk < 0 || hk > rend - p)
            return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": header %" PRId32 " key "
                           "length %" PRId32 " is invalid (0 up to the %td bytes left; header "
                           "keys are never null)", idx, i, hk, rend - p);
        if (store) {
            it->hbuf[i].key = p;
            it->hbuf[i].key_len = (uint32_t)hk;
        }
        p += hk;
        if ((vrc = rn_varint32_get(&p, rend, &hv)) != 0)
            return varint_err(errmsg, vrc, idx, "header value length");
        if (hv < -1 || hv > rend - p)
            return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": header %" PRId32 " value "
                           "length %" PRId32 " is invalid (-1 for null, or up to the %td bytes "
                           "left)", idx, i, hv, rend - p);
        if (store) {
            it->hbuf[i].value = hv >= 0 ? p : NULL;
            it->hbuf[i].value_len = hv;
        }
        if (hv > 0) p += hv;
    }
    if (p != rend)
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": length says %" PRId32
                       " bytes but its fields take %td", idx, rlen, p - (rend - rlen));

    int64_t ts, off;
    if (__builtin_add_overflow(it->hdr.first_timestamp, tdelta, &ts))
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": timestamp delta %" PRId64
                       " overflows base timestamp %" PRId64, idx, tdelta,
                       it->hdr.first_timestamp);
    if (__builtin_add_overflow(it->hdr.base_offset, (int64_t)odelta, &off))
        return rn_errf(errmsg, RN_ECORRUPT, "record %" PRId32 ": offset overflows base "
                       "offset %" PRId64, idx, it->hdr.base_offset);
    if (it->hdr.attributes & ATTR_TIMESTAMP_TYPE) ts = it->hdr.max_timestamp;

    rec->timestamp = ts;
    rec->offset = off;
    rec->key = key;
    rec->key_len = klen;
    rec->value = value;
    rec->value_len = vlen;
    rec->headers = store && hcount > 0 ? it->hbuf : NULL;
    rec->header_count = (uint32_t)hcount;
    it->pos = rend;
    it->index = idx + 1;
    return 1;
}

int rn_batch_iter_next(rn_batch_iter_t *it, rn_record_t *rec, char *errmsg)
{
    return record_next(it, rec, 1, errmsg);
}

/* ---- validation ----------------------------------------------------------- */

int rn_batch_validate(const uint8_t *buf, size_t len, const rn_batch_limits_t *lim,
                      int deep, rn_batch_header_t *out, char *errmsg)
{
    rn_batch_header_t h;
    int rc = rn_batch_parse_header(buf, len, lim, &h, errmsg);
    if (rc != 0) return rc;
    uint32_t crc = rn_crc32c(0, buf + RN_BATCH_CRC_START, len - RN_BATCH_CRC_START);
    if (crc != h.crc)
        return rn_errf(errmsg, RN_ECORRUPT, "crc mismatch: stored 0x%08" PRIx32 ", computed 0x%08"
                       PRIx32, h.crc, crc);
    if (deep) {
        rn_batch_iter_t it;
        rn_record_t rec;
        int64_t max_ts = INT64_MIN;
        rn_batch_iter_init(&it, lim);
        rc = rn_batch_iter_reset(&it, buf, len, errmsg);
        while (rc == 0 && (rc = record_next(&it, &rec, 0, errmsg)) == 1) {
            if (rec.timestamp > max_ts) max_ts = rec.timestamp;
            rc = 0;
        }
        rn_batch_iter_destroy(&it);
        if (rc != 0) return rc;
        if (!(h.attributes & ATTR_TIMESTAMP_TYPE) && max_ts != h.max_timestamp)
            return rn_errf(errmsg, RN_ECORRUPT, "max timestamp field says %" PRId64 " but the "
                           "largest record timestamp is %" PRId64, h.max_timestamp, max_ts);
    }
    if (out) *out = h;
    return 0;
}

/* ---- building ------------------------------------------------------------- */

static void lz4_prefs(LZ4F_preferences_t *p)
{
    memset(p, 0, sizeof *p);
    p->frameInfo.blockSizeID = LZ4F_max64KB;
    p->frameInfo.blockMode = LZ4F_blockIndependent;
    p->frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
    p->frameInfo.frameType = LZ4F_frame;
    p->frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
    p->compressionLevel = 0;
}

size_t rn_batch_bound(size_t records_bytes, int codec)
{
    if (records_bytes > SIZE_MAX / 4) return SIZE_MAX;
    if (codec == RN_BATCH_CODEC_LZ4) {
        LZ4F_preferences_t p;
        lz4_prefs(&p);
        return RN_BATCH_HEADER_SIZE + LZ4F_compressFrameBound(records_bytes, &p);
    }
    return RN_BATCH_HEADER_SIZE + records_bytes;
}

static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }

size_t rn_batch_record_bound(const rn_record_t *r)
{
    /* length 5, attributes 1, timestamp delta 10, offset delta 5, key and
     * value lengths 5 each, header count 5; per header two lengths of 5. */
    size_t n = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    if (r->key_len > 0) n += (size_t)r->key_len;
    if (r->value_len > 0) n += (size_t)r->value_len;
    for (uint32_t i = 0; i < r->header_count && r->headers; i++) {
        n = sat_add(n, 10);
        n = sat_add(n, r->headers[i].key_len);
        if (r->headers[i].value_len > 0) n = sat_add(n, (size_t)r->headers[i].value_len);
    }
    return n;
}

void rn_batch_opts_default(rn_batch_opts_t *o)
{
    o->codec = RN_BATCH_CODEC_NONE;
    o->max_bytes = 1u << 20;
    o->max_records = RN_BATCH_MAX_RECORDS;
    o->producer_id = -1;
    o->producer_epoch = -1;
    o->base_sequence = -1;
}

int rn_batch_builder_init(rn_batch_builder_t *b, const rn_batch_opts_t *o)
{
    memset(b, 0, sizeof *b);
    if (o) b->opts = *o;
    else rn_batch_opts_default(&b->opts);
    if (b->opts.codec != RN_BATCH_CODEC_NONE && b->opts.codec != RN_BATCH_CODEC_LZ4)
        return RN_EINVAL;
    if (b->opts.max_bytes == 0 || b->opts.max_bytes > RN_BATCH_MAX_BYTES)
        b->opts.max_bytes = RN_BATCH_MAX_BYTES;
    if (b->opts.max_records == 0 || b->opts.max_records > RN_BATCH_MAX_RECORDS)
        b->opts.max_records = RN_BATCH_MAX_RECORDS;
    /* Room for the header in front of the records (invariant 4). */
    int rc = rn_buf_reserve(&b->records, RN_BATCH_HEADER_SIZE + 4096, 0);
    if (rc != 0) return rc;
    b->records.len = RN_BATCH_HEADER_SIZE;
    return 0;
}

void rn_batch_builder_reset(rn_batch_builder_t *b)
{
    b->records.len = RN_BATCH_HEADER_SIZE;
    b->out.len = 0;
    b->count = 0;
    b->nheaders = 0;
    b->first_ts = b->max_ts = 0;
}

void rn_batch_builder_destroy(rn_batch_builder_t *b)
{
    rn_buf_free(&b->records);
    rn_buf_free(&b->out);
    b->count = 0;
}

uint32_t rn_batch_builder_count(const rn_batch_builder_t *b)
{
    return (uint32_t)b->count;
}

size_t rn_batch_builder_size(const rn_batch_builder_t *b)
{
    return b->records.len < RN_BATCH_HEADER_SIZE ? RN_BATCH_HEADER_SIZE : b->records.len;
}

/* Exact size of a record's body (everything after its length varint), or
 * SIZE_MAX once it passes cap (so huge header lists cannot overflow). */
static size_t record_body_size(const rn_record_t *r, int64_t tdelta, int32_t odelta, size_t cap)
{
    size_t n = 1 + rn_uvarint_size(rn_zz64(tdelta)) + rn_uvarint_size(rn_zz32(odelta));
    n += rn_uvarint_size(rn_zz32(r->key_len)) + (r->key_len > 0 ? (size_t)r->key_len : 0);
    n += rn_uvarint_size(rn_zz32(r->value_len)) + (r->value_len > 0 ? (size_t)r->value_len : 0);
    n += rn_uvarint_size(rn_zz32((int32_t)r->header_count));
    for (uint32_t i = 0; i < r->header_count; i++) {
        const rn_header_t *h = &r->headers[i];
        n += rn_uvarint_size(rn_zz32((int32_t)h->key_len)) + h->key_len;
        n += rn_uvarint_size(rn_zz32(h->value_len)) + (h->value_len > 0 ? (size_t)h->value_len : 0);
        if (n > cap) return SIZE_MAX;
    }
    return n > cap ? SIZE_MAX : n;
}

static int check_record(const rn_record_t *r)
{
    if (r->key_len < -1 || (r->key_len > 0 && !r->key)) return RN_EINVAL;
    if (r->value_len < -1 || (r->value_len > 0 && !r->value)) return RN_EINVAL;
    if (r->header_count > INT32_MAX || (r->header_count > 0 && !r->headers)) return RN_EINVAL;
    for (uint32_t i = 0; i < r->header_count; i++) {
        const rn_header_t *h = &r->headers[i];
        if (h->key_len > INT32_MAX || (h->key_len > 0 && !h->key)) return RN_EINVAL;
        if (h->value_len < -1 || (h->value_len > 0 && !h->value)) return RN_EINVAL;
    }
    return 0;
}

int rn_batch_builder_add(rn_batch_builder_t *b, const rn_record_t *r)
{
    int rc = check_record(r);
    if (rc != 0) return rc;
    if (b->records.len < RN_BATCH_HEADER_SIZE) return RN_EINVAL;   /* not initialised */

    const size_t max = b->opts.max_bytes;
    int64_t tdelta = 0;
    if (b->count > 0 && __builtin_sub_overflow(r->timestamp, b->first_ts, &tdelta))
        return RN_EINVAL;       /* timestamps too far apart for a varlong delta */
    size_t body = record_body_size(r, tdelta, b->count, max);
    size_t total = body == SIZE_MAX ? SIZE_MAX : rn_uvarint_size(rn_zz32((int32_t)body)) + body;
    size_t recs = b->records.len - RN_BATCH_HEADER_SIZE;

    if (r->header_count > RN_BATCH_MAX_HEADERS) return RN_ETOOBIG;
    if (b->count > 0 && ((uint32_t)b->count >= b->opts.max_records ||
                         b->nheaders + r->header_count > RN_BATCH_MAX_BATCH_HEADERS))
        return RN_EFULL;
    if (total == SIZE_MAX || rn_batch_bound(recs + total, b->opts.codec) > max) {
        /* Would it fit as the only record of a batch (deltas 0)? */
        size_t alone = record_body_size(r, 0, 0, max);
        if (alone == SIZE_MAX ||
            rn_batch_bound(rn_uvarint_size(rn_zz32((int32_t)alone)) + alone, b->opts.codec) > max ||
            b->count == 0)
            return RN_ETOOBIG;
        return RN_EFULL;
    }
    rc = rn_buf_reserve(&b->records, total, 0);
    if (rc != 0) return rc;

    uint8_t *p = b->records.data + b->records.len;
    p = rn_uvarint_put(p, rn_zz32((int32_t)body));
    *p++ = 0;                                       /* record attributes */
    p = rn_uvarint_put(p, rn_zz64(tdelta));
    p = rn_uvarint_put(p, rn_zz32(b->count));
    p = rn_uvarint_put(p, rn_zz32(r->key_len));
    if (r->key_len > 0) { memcpy(p, r->key, (size_t)r->key_len); p += r->key_len; }
    p = rn_uvarint_put(p, rn_zz32(r->value_len));
    if (r->value_len > 0) { memcpy(p, r->value, (size_t)r->value_len); p += r->value_len; }
    p = rn_uvarint_put(p, rn_zz32((int32_t)r->header_count));
    for (uint32_t i = 0; i < r->header_count; i++) {
        const rn_header_t *h = &r->headers[i];
        p = rn_uvarint_put(p, rn_zz32((int32_t)h->key_len));
        if (h->key_len) { memcpy(p, h->key, h->key_len); p += h->key_len; }
        p = rn_uvarint_put(p, rn_zz32(h->value_len));
        if (h->value_len > 0) { memcpy(p, h->value, (size_t)h->value_len); p += h->value_len; }
    }
    b->records.len += total;

    if (b->count == 0) {
        b->first_ts = b->max_ts = r->timestamp;
    } else if (r->timestamp > b->max_ts) {
        b->max_ts = r->timestamp;
    }
    b->count++;
    b->nheaders += r->header_count;
    b->out.len = 0;      /* a finished LZ4 batch no longer matches */
    return 0;
}

/* Bytes of the encoded records, uncompressed. */
static size_t src_n_of(const rn_batch_builder_t *b)
{
    return b->records.len - RN_BATCH_HEADER_SIZE;
}

int rn_batch_builder_finish(rn_batch_builder_t *b, const uint8_t **out, size_t *len)
{
    if (b->count == 0) return RN_EINVAL;       /* Kafka batches hold >= 1 record */
    uint8_t *batch = NULL;
    size_t total = 0;
    int16_t attrs = RN_BATCH_CODEC_NONE;
    if (b->opts.codec == RN_BATCH_CODEC_LZ4) {
        LZ4F_preferences_t prefs;
        lz4_prefs(&prefs);
        const size_t src_n = b->records.len - RN_BATCH_HEADER_SIZE;
        const size_t cap = LZ4F_compressFrameBound(src_n, &prefs);
        b->out.len = 0;
        int rc = rn_buf_reserve(&b->out, RN_BATCH_HEADER_SIZE + cap, 0);
        if (rc != 0) return rc;
        size_t c = LZ4F_compressFrame(b->out.data + RN_BATCH_HEADER_SIZE, cap,
                                      b->records.data + RN_BATCH_HEADER_SIZE, src_n, &prefs);
        if (LZ4F_isError(c)) return RN_EINVAL;
        b->out.len = RN_BATCH_HEADER_SIZE + c;
        batch = b->out.data;
        total = b->out.len;
        attrs = RN_BATCH_CODEC_LZ4;
    }
    if (attrs == RN_BATCH_CODEC_LZ4 && src_n_of(b) > expansion_cap(total - RN_BATCH_HEADER_SIZE)) {
        /* Readers would refuse to expand it this much (invariant 2): send
         * it as it is, which the add-time bound lets fit max_bytes. */
        b->out.len = 0;
        attrs = RN_BATCH_CODEC_NONE;
    }
    if (attrs == RN_BATCH_CODEC_NONE) {
        batch = b->records.data;
        total = b->records.len;
        attrs = RN_BATCH_CODEC_NONE;
    }
    if (total > b->opts.max_bytes) return RN_ETOOBIG;   /* the add-time bound forbids it */

    rn_be64_put(batch + 0, 0);                                   /* base offset */
    rn_be32_put(batch + 8, (uint32_t)(total - 12));              /* batch length */
    rn_be32_put(batch + 12, 0);                                  /* leader epoch */
    batch[16] = RN_BATCH_MAGIC;
    rn_be16_put(batch + 21, (uint16_t)attrs);
    rn_be32_put(batch + 23, (uint32_t)(b->count - 1));           /* last offset delta */
    rn_be64_put(batch + 27, (uint64_t)b->first_ts);
    rn_be64_put(batch + 35, (uint64_t)b->max_ts);
    rn_be64_put(batch + 43, (uint64_t)b->opts.producer_id);
    rn_be16_put(batch + 51, (uint16_t)b->opts.producer_epoch);
    rn_be32_put(batch + 53, (uint32_t)b->opts.base_sequence);
    rn_be32_put(batch + 57, (uint32_t)b->count);
    rn_be32_put(batch + 17, rn_crc32c(0, batch + RN_BATCH_CRC_START, total - RN_BATCH_CRC_START));
    *out = batch;
    *len = total;
    return 0;
}

/*
 * batch.h — Kafka RecordBatch v2 (magic 2) codec: build, validate, iterate.
 *
 * A batch is the unit runnel moves end to end: the producer builds it, the
 * store keeps it as received (writing only the base offset), the consumer
 * decodes it. Layout (all integers big-endian, as Kafka):
 *
 *   off size field
 *    0   8   baseOffset           written by the store on append
 *    8   4   batchLength          bytes after this field (total - 12)
 *   12   4   partitionLeaderEpoch 0 in runnel
 *   16   1   magic                2
 *   17   4   crc                  CRC-32C of bytes 21..end
 *   21   2   attributes           bits 0-2 codec (table below), bit 3 timestamp
 *                                 type, bit 4 transactional, bit 5 control
 *   23   4   lastOffsetDelta      recordCount - 1
 *   27   8   baseTimestamp        first record's timestamp (ms)
 *   35   8   maxTimestamp         largest record timestamp (ms)
 *   43   8   producerId           -1 when not idempotent
 *   51   2   producerEpoch        -1 when not idempotent
 *   53   4   baseSequence         -1 when not idempotent
 *   57   4   recordCount
 *   61   ... records, compressed as a whole when codec != 0
 *
 *   record: length varint | attributes int8 | timestampDelta varlong |
 *           offsetDelta varint | keyLength varint (-1 = null) | key |
 *           valueLength varint (-1 = null) | value | headerCount varint |
 *           headers (keyLength varint, key, valueLength varint, value)
 *   Varints are zigzag-encoded, as protobuf's sint32/sint64.
 *
 * Codecs (attributes bits 0-2). Every reader decodes all five; the builder
 * writes none or lz4. Batches from Kafka clients are stored as received.
 *
 *   codec      records are                         written by
 *   0 none     the records as they are             runnel, Kafka clients
 *   1 gzip     a gzip stream (concatenated         Kafka clients (all gzip;
 *              members and a zlib header also      zlib inflate)
 *              read)
 *   2 snappy   xerial framing: 0x82 "SNAPPY" 0,    Java, kafka-python
 *              int32 version, int32 compatible,
 *              then [int32 BE length][raw snappy
 *              block]...; or one raw snappy block  librdkafka
 *   3 lz4      one LZ4 frame (independent blocks,  runnel, Kafka clients
 *              no content size, no checksums when
 *              runnel writes it; any frame read)
 *   4 zstd     one or more zstd frames, content    Kafka clients (librdkafka
 *              size optional                       and Java leave it out)
 *
 * A corrupt compressed section fails with RN_ECORRUPT "batch's CODEC records
 * do not decompress: ...", and every codec is under the same expansion caps.
 *
 * Limits: every batch this module accepts or produces stays within
 * rn_batch_limits_t (bytes of the whole batch, records per batch) and the
 * fixed caps below (headers, decompressed size); decoding never reads
 * outside the given bytes, whatever they hold, and never allocates more
 * than those caps allow.
 */
#ifndef RN_BATCH_H
#define RN_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* rn_header_t, rn_record_t, RN_BATCH_CODEC_* */
#include "common/buf.h"

#define RN_BATCH_HEADER_SIZE   61
#define RN_BATCH_MAGIC         2
#define RN_BATCH_CRC_START     21      /* the CRC covers bytes 21..end */
#define RN_BATCH_CODEC_MASK    0x07

/* Hard ceilings; rn_batch_limits_t may only lower them. */
#define RN_BATCH_MAX_BYTES     (16u << 20)
#define RN_BATCH_MAX_RECORDS   (1u << 20)
/* Fixed caps on what a batch may expand to once decoded, so that a small
 * batch cannot make a reader allocate without bound (batch.c invariant 2):
 * headers of one record, headers of one batch (every reader that keeps a
 * batch's records keeps their header arrays), and the decompressed records
 * of a compressed batch, whatever its codec: at most RN_BATCH_MAX_EXPANSION
 * times its compressed records, or RN_BATCH_EXPANSION_FLOOR bytes when that
 * is more (small batches of repetitive values), and never above the batch
 * limit less the header. */
#define RN_BATCH_MAX_HEADERS         4096u
#define RN_BATCH_MAX_BATCH_HEADERS   (1u << 20)
#define RN_BATCH_MAX_EXPANSION       64u
#define RN_BATCH_EXPANSION_FLOOR     (1u << 20)

typedef struct rn_batch_limits {
    uint32_t max_bytes;     /* whole batch, header included; 0 = the ceiling */
    uint32_t max_records;   /* 0 = the ceiling */
} rn_batch_limits_t;

/* The hard ceilings. */
extern const rn_batch_limits_t rn_batch_default_limits;

/* rn_header_t and rn_record_t (a record: views into a batch or the
 * caller's memory) are defined in client/runnel.h. */

typedef struct rn_batch_header {
    int64_t  base_offset;
    int32_t  batch_length;
    int32_t  leader_epoch;
    int8_t   magic;
    uint32_t crc;
    int16_t  attributes;
    int32_t  last_offset_delta;
    int64_t  first_timestamp;
    int64_t  max_timestamp;
    int64_t  producer_id;
    int16_t  producer_epoch;
    int32_t  base_sequence;
    int32_t  record_count;
} rn_batch_header_t;

/* ---- Reading ---------------------------------------------------------- */

/* Parse the 61-byte header and check what needs no CRC: magic, batchLength
 * against len (the batch must be exactly len bytes), record count within
 * limits and equal to lastOffsetDelta + 1, a known codec (0-4). Control batches
 * (attribute bit 5) are refused with RN_EFORMAT. */
int rn_batch_parse_header(const uint8_t *buf, size_t len, const rn_batch_limits_t *lim,
                          rn_batch_header_t *h, char *errmsg);

/* rn_batch_parse_header plus the CRC. With deep != 0 also walks every record
 * (decompressing if needed) and checks the record count, offset deltas, and
 * that each record's length matches its fields, the header caps, and
 * (CreateTime batches) that maxTimestamp is the largest record timestamp.
 * The walk keeps no per-record or per-header memory: what it allocates is
 * the decompressed records (bounded as rn_batch_iter_reset says) and the
 * codec's decompression context, freed before it returns. errmsg says what was wrong, naming
 * the limit when one was hit (RN_ETOOBIG). */
int rn_batch_validate(const uint8_t *buf, size_t len, const rn_batch_limits_t *lim,
                      int deep, rn_batch_header_t *h, char *errmsg);

/* Total size of the batch starting at buf, read from its batchLength field
 * (12 + batchLength); RN_ECORRUPT when len < 12 or the field is negative. */
int rn_batch_size(const uint8_t *buf, size_t len, size_t *size);

/* Write the base offset into a batch in place (bytes 0..8). The CRC does not
 * cover it, so nothing else changes. */
void rn_batch_set_base_offset(uint8_t *batch, int64_t base_offset);

/* Iterator over the records of one batch. It owns scratch memory (for
 * decompression and headers) and decompression contexts, reused across
 * rn_batch_iter_reset calls; records
 * it returns stay valid until the next reset or destroy, and, for uncompressed
 * batches, as long as the batch bytes do. */
typedef struct rn_batch_iter {
    rn_batch_header_t hdr;
    const uint8_t    *pos, *end;     /* undecoded records */
    int32_t           index;         /* records returned so far */
    rn_batch_limits_t lim;
    rn_buf_t          scratch;       /* decompressed records */
    rn_header_t      *hbuf;          /* headers of the current record */
    uint32_t          hcap;
    uint64_t          nheaders;      /* headers of the batch so far */
    void             *lz4;           /* decompression contexts (LZ4F_dctx, z_stream,
                                        ZSTD_DCtx), each created on the first batch
                                        of its codec and kept until destroy */
    void             *zlib;
    void             *zstd;
} rn_batch_iter_t;

void rn_batch_iter_init(rn_batch_iter_t *it, const rn_batch_limits_t *lim);
/* Start on a batch: parses the header (no CRC check: callers that read from
 * untrusted places call rn_batch_validate first) and decompresses (any codec
 * of the table above). The decompressed records may not exceed
 * lim.max_bytes - RN_BATCH_HEADER_SIZE bytes (the batch, uncompressed, must
 * fit the same limit as compressed; the builder guarantees it), nor
 * RN_BATCH_MAX_EXPANSION times the compressed records (or
 * RN_BATCH_EXPANSION_FLOOR when more), else RN_ETOOBIG naming the limit;
 * the scratch buffer never grows past that cap, and a size the compressed
 * data declares (snappy, zstd) is checked before anything is allocated.
 * Undecodable compressed records: RN_ECORRUPT naming the codec. */
int  rn_batch_iter_reset(rn_batch_iter_t *it, const uint8_t *batch, size_t len, char *errmsg);
/* 1 and *rec filled; 0 at the end (after checking the count matched);
 * negative on malformed records, with errmsg; RN_ETOOBIG when a record has
 * more than RN_BATCH_MAX_HEADERS headers or the batch more than
 * RN_BATCH_MAX_BATCH_HEADERS. */
int  rn_batch_iter_next(rn_batch_iter_t *it, rn_record_t *rec, char *errmsg);
void rn_batch_iter_destroy(rn_batch_iter_t *it);

/* The index of the first record of an uncompressed batch (len bytes, its
 * header already validated) whose timestamp is >= ts, reading only each
 * record's length and timestamp delta: no copy, no decode of keys, values or
 * headers (a time lookup's hot path). 1 and *index when found, 0 when no
 * record reaches ts, -1 when the batch is compressed or a record does not
 * parse (rn_batch_iter_* then says what is wrong). */
int  rn_batch_find_time(const uint8_t *batch, size_t len, int64_t ts, int32_t *index);

/* ---- Building --------------------------------------------------------- */

typedef struct rn_batch_opts {
    int      codec;            /* RN_BATCH_CODEC_NONE or _LZ4 */
    uint32_t max_bytes;        /* the finished batch never exceeds this */
    uint32_t max_records;
    int64_t  producer_id;      /* -1, -1, -1 when not idempotent */
    int16_t  producer_epoch;
    int32_t  base_sequence;
} rn_batch_opts_t;

void rn_batch_opts_default(rn_batch_opts_t *o);   /* none, 1 MiB, ceilings, -1s */

typedef struct rn_batch_builder {
    rn_batch_opts_t opts;
    rn_buf_t        records;        /* encoded records, uncompressed */
    rn_buf_t        out;            /* the finished batch */
    int32_t         count;
    uint32_t        nheaders;       /* headers of the records added */
    int64_t         first_ts, max_ts;
} rn_batch_builder_t;

int  rn_batch_builder_init(rn_batch_builder_t *b, const rn_batch_opts_t *o);
/* Append one record. RN_EFULL when the batch already holds records and this
 * one would take it past max_bytes, max_records or RN_BATCH_MAX_BATCH_HEADERS
 * (finish it and start a new one); RN_ETOOBIG when the record alone cannot
 * fit in any batch (RN_BATCH_MAX_HEADERS headers at most). */
int  rn_batch_builder_add(rn_batch_builder_t *b, const rn_record_t *r);
uint32_t rn_batch_builder_count(const rn_batch_builder_t *b);
/* Bytes the batch would take uncompressed if finished now. */
size_t rn_batch_builder_size(const rn_batch_builder_t *b);
/* Encode header and CRC (compressing first when asked); *out points into the
 * builder and stays valid until the next add, reset or destroy. Base offset 0.
 * An LZ4 batch whose records would expand past the decoders' cap
 * (RN_BATCH_MAX_EXPANSION) is finished uncompressed instead, so every
 * finished batch passes rn_batch_validate. */
int  rn_batch_builder_finish(rn_batch_builder_t *b, const uint8_t **out, size_t *len);
void rn_batch_builder_reset(rn_batch_builder_t *b);   /* empty, same opts */
void rn_batch_builder_destroy(rn_batch_builder_t *b);

/* Upper bound of the encoded size of one record (uncompressed). */
size_t rn_batch_record_bound(const rn_record_t *r);
/* Upper bound of a finished batch whose records' bounds sum to records_bytes. */
size_t rn_batch_bound(size_t records_bytes, int codec);

#endif

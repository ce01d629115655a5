/*
 * segment.h — commit-log segment files and the entry header codec.
 *
 * A segment is one preallocated file DIR/commitlog/%020llu.log named by its
 * global start position. Entries (a 16-byte header + the batch bytes) are
 * laid end to end from file offset 0 and never span two segments; zero bytes
 * where a header should be mean "no more entries in this segment". See
 * log/log.c for the whole on-disk picture.
 */
#ifndef RN_LOG_SEGMENT_H
#define RN_LOG_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define RN_SEG_HDR_SIZE      16
#define RN_SEG_FORMAT_V1     1u      /* the header's format/flags field */
#define RN_SEG_HCRC_BATCH    21      /* batch bytes [0,21) are covered by hcrc */
#define RN_SEG_NAME_LEN      24      /* "%020llu.log" */

/* Little-endian helpers for runnel's own formats. */
static inline void rn_le32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static inline uint32_t rn_le32_get(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void rn_le64_put(uint8_t *p, uint64_t v)
{
    rn_le32_put(p, (uint32_t)v); rn_le32_put(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t rn_le64_get(const uint8_t *p)
{
    return (uint64_t)rn_le32_get(p) | (uint64_t)rn_le32_get(p + 4) << 32;
}

/* An open segment. start/size are immutable once created; max_ts changes only
 * on the writer path (it is the largest running-max timestamp of any batch
 * stored in it, INT64_MIN when none). Writes go through fd; map shares the
 * page cache and serves zero-copy reads of bytes already published. */
typedef struct rn_seg {
    uint64_t start;
    uint64_t size;
    int      fd;
    int64_t  max_ts;
    int      dirty;      /* written since its last fdatasync (__atomic: the writer
                            sets it, whoever syncs clears it) */
    const uint8_t *map;  /* read-only MAP_SHARED view of [0, size); NULL if size is 0 */
} rn_seg_t;

/* A decoded entry header. */
typedef struct rn_seg_hdr {
    uint32_t batch_len;
    uint32_t queue;
    uint32_t format;
    uint32_t hcrc;
} rn_seg_hdr_t;

/* "%020llu.log" into name (at least RN_SEG_NAME_LEN + 1 bytes). */
void rn_seg_name(char *name, uint64_t start);
/* 0 and *start when name is exactly 20 digits + ".log"; RN_EINVAL otherwise. */
int  rn_seg_parse_name(const char *name, uint64_t *start);

/* Create dir/NAME(start) preallocated (fallocate) to size bytes, durably (file
 * and directory fsynced). On failure nothing is left behind; -ENOSPC comes
 * back as such with errmsg saying so. */
int  rn_seg_create(const char *dir, uint64_t start, uint64_t size, rn_seg_t *seg, char *errmsg);
/* Open an existing segment read-write; size from fstat. */
int  rn_seg_open(const char *dir, uint64_t start, rn_seg_t *seg, char *errmsg);
/* Grow a segment file to size bytes (preallocating). */
int  rn_seg_grow(rn_seg_t *seg, uint64_t size, char *errmsg);
/* Zero file bytes [from, size): fallocate ZERO_RANGE, else PUNCH_HOLE then
 * re-reserve, else (only when allow_write) write zeros. Not synced. */
int  rn_seg_zero(rn_seg_t *seg, uint64_t from, int allow_write, char *errmsg);
void rn_seg_close(rn_seg_t *seg);

/* Header checksum: CRC-32C of hdr[0,12) then the 8 base-offset bytes then
 * batch bytes [8,21) (rest13 = those 13 bytes). */
uint32_t rn_seg_hcrc(const uint8_t hdr12[12], const uint8_t base8[8], const uint8_t rest13[13]);
/* Fill out[0,16) for a batch of len bytes whose first 21 bytes are base8 (8)
 * followed by rest13 (13). */
void rn_seg_hdr_encode(uint8_t out[RN_SEG_HDR_SIZE], uint32_t len, uint32_t queue,
                       const uint8_t base8[8], const uint8_t rest13[13]);
void rn_seg_hdr_decode(const uint8_t in[RN_SEG_HDR_SIZE], rn_seg_hdr_t *h);
/* Check a decoded header against the batch's first 21 bytes: format and hcrc.
 * 0 or RN_ECORRUPT. */
int  rn_seg_hdr_check(const uint8_t in[RN_SEG_HDR_SIZE], const uint8_t batch21[RN_SEG_HCRC_BATCH]);

#endif

/*
 * bytes.h — the byte-order and varint primitives every codec of runnel uses:
 * big-endian integers (Kafka's wire and batch format) and Kafka's varints
 * (unsigned LEB128 and its zigzag-signed form). Header only: each is a few
 * instructions on the decode hot paths.
 *
 * INVARIANTS
 *  1. A get never reads at or past `end`: a truncated varint is
 *     RN_VARINT_TRUNCATED, one longer than its type allows RN_VARINT_TOO_LONG,
 *     and *pp moves only on success.
 *  2. A put writes exactly rn_uvarint_size(v) bytes (at most 10).
 */
#ifndef RN_COMMON_BYTES_H
#define RN_COMMON_BYTES_H

#include <stddef.h>
#include <stdint.h>

static inline uint16_t rn_be16_get(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t rn_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t rn_be64_get(const uint8_t *p)
{
    return (uint64_t)rn_be32_get(p) << 32 | rn_be32_get(p + 4);
}

static inline void rn_be16_put(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void rn_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void rn_be64_put(uint8_t *p, uint64_t v)
{
    rn_be32_put(p, (uint32_t)(v >> 32));
    rn_be32_put(p + 4, (uint32_t)v);
}

/* ---- varints ---------------------------------------------------------------- */

static inline uint32_t rn_zz32(int32_t v) { return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31); }
static inline uint64_t rn_zz64(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int32_t rn_unzz32(uint32_t u) { return (int32_t)((u >> 1) ^ (0u - (u & 1))); }
static inline int64_t rn_unzz64(uint64_t u) { return (int64_t)((u >> 1) ^ (0u - (u & 1))); }

static inline size_t rn_uvarint_size(uint64_t u)
{
    size_t n = 1;
    while (u >= 0x80) { u >>= 7; n++; }
    return n;
}

/* Writes u at p; returns the byte after it. */
static inline uint8_t *rn_uvarint_put(uint8_t *p, uint64_t u)
{
    while (u >= 0x80) { *p++ = (uint8_t)(u | 0x80); u >>= 7; }
    *p++ = (uint8_t)u;
    return p;
}

/* Decode results: 0, or one of these (the caller words the message). */
#define RN_VARINT_TRUNCATED (-1)
#define RN_VARINT_TOO_LONG  (-2)

/* A zigzag varint that fits 32 bits, from *pp (< end); advances *pp. */
static inline int rn_varint32_get(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    const uint8_t *p = *pp;
    if (p < end && *p < 0x80) {           /* the common one-byte case */
        *out = rn_unzz32(*p);
        *pp = p + 1;
        return 0;
    }
    uint32_t v = 0;
    for (int s = 0;; s += 7) {
        if (p >= end) return RN_VARINT_TRUNCATED;
        uint8_t b = *p++;
        if (s == 28 && b > 0x0f) return RN_VARINT_TOO_LONG;
        v |= (uint32_t)(b & 0x7f) << s;
        if (!(b & 0x80)) break;
    }
    *out = rn_unzz32(v);
    *pp = p;
    return 0;
}

/* A zigzag varint that fits 64 bits, from *pp (< end); advances *pp. */
static inline int rn_varint64_get(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int s = 0;; s += 7) {
        if (p >= end) return RN_VARINT_TRUNCATED;
        uint8_t b = *p++;
        if (s == 63 && b > 0x01) return RN_VARINT_TOO_LONG;
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) break;
    }
    *out = rn_unzz64(v);
    *pp = p;
    return 0;
}

#endif

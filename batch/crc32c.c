/*
 * crc32c.c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of Kafka RecordBatch v2 and of runnel's own on-disk formats.
 *
 * Two implementations of the same function:
 *   - rn_crc32c_sw: slicing-by-8 tables (8 KiB), 8 input bytes per step,
 *     portable, byte order independent.
 *   - rn_crc32c_hw: the SSE4.2 crc32 instruction, 8 bytes per instruction,
 *     over three independent streams at once for long inputs (the instruction
 *     has a latency of 3 cycles and a throughput of 1, so one stream uses a
 *     third of the unit). The three partial CRCs are joined with "shift by L
 *     zero bytes" tables: for the raw (non-inverted) CRC state,
 *       raw(s, A || B) = shift_|B|(raw(s, A)) ^ raw(0, B)
 *     because the raw CRC is linear in (state, data), and shift_L is a 32x32
 *     GF(2) matrix applied here as 4 lookups in a 4x256 table.
 *
 * Invariants:
 *  1. Both paths compute the same function for every (crc, buffer), at every
 *     alignment and length (tests/test_crc32c.c checks this on random data).
 *  2. The public crc is the inverted form: rn_crc32c(0, "123456789", 9) is
 *     0xE3069283, and chaining works because each call inverts on entry and on
 *     exit: rn_crc32c(rn_crc32c(0, a, n), b, m) == CRC(a || b).
 *  3. The tables and the hw/sw choice are set up once (pthread_once), before
 *     any use, so concurrent first calls are safe. After that, no locks, no
 *     allocation.
 *  4. The hw code is compiled with __attribute__((target("sse4.2"))) and only
 *     runs when __builtin_cpu_supports("sse4.2") said so; the file builds with
 *     plain -O2 and on non-x86 targets (where hw falls back to sw).
 */
#include "batch/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__)
#define RN_CRC_HAVE_X86 1
#include <nmmintrin.h>
#else
#define RN_CRC_HAVE_X86 0
#endif

#define POLY 0x82F63B78u

/* Block sizes of the 3-stream hw path: LONG for big buffers, SHORT for the
 * rest. Each must be a multiple of 8. */
#define LONG_BLOCK  8192
#define SHORT_BLOCK 256

static uint32_t slice[8][256];          /* slicing-by-8 tables */
static uint32_t shift_long[4][256];     /* raw state -> state after LONG_BLOCK zeros */
static uint32_t shift_short[4][256];    /* raw state -> state after SHORT_BLOCK zeros */
static int hw_ok;
static uint32_t (*crc_raw)(uint32_t, const uint8_t *, size_t);
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* ---- software: slicing-by-8 over the raw state ------------------------- */

static uint32_t sw_raw(uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
        crc = slice[7][crc & 0xff] ^ slice[6][(crc >> 8) & 0xff] ^
              slice[5][(crc >> 16) & 0xff] ^ slice[4][crc >> 24] ^
              slice[3][p[4]] ^ slice[2][p[5]] ^ slice[1][p[6]] ^ slice[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) crc = slice[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

/* Build the 4x256 table of "advance a raw state over len zero bytes". */
static void make_shift_table(uint32_t t[4][256], size_t len)
{
    uint32_t bit[32];
    for (int i = 0; i < 32; i++) {
        uint32_t c = 1u << i;
        for (size_t k = 0; k < len; k++) c = slice[0][c & 0xff] ^ (c >> 8);
        bit[i] = c;
    }
    for (int byte = 0; byte < 4; byte++) {
        for (int v = 0; v < 256; v++) {
            uint32_t r = 0;
            for (int j = 0; j < 8; j++)
                if (v & (1 << j)) r ^= bit[byte * 8 + j];
            t[byte][v] = r;
        }
    }
}

static inline uint32_t shift(const uint32_t t[4][256], uint32_t c)
{
    return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* ---- hardware: SSE4.2 crc32, three streams ------------------------------ */

#if RN_CRC_HAVE_X86
__attribute__((target("sse4.2")))
static uint32_t hw_raw(uint32_t crc32, const uint8_t *p, size_t n)
{
    uint64_t c0 = crc32;
    /* Align to 8 so the 8-byte loads do not straddle cache lines. */
    while (n > 0 && ((uintptr_t)p & 7) != 0) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        n--;
    }
    while (n >= 3 * LONG_BLOCK) {
        uint64_t c1 = 0, c2 = 0, w0, w1, w2;
        for (size_t i = 0; i < LONG_BLOCK; i += 8) {
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + LONG_BLOCK + i, 8);
            memcpy(&w2, p + 2 * LONG_BLOCK + i, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c0 = shift(shift_long, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(shift_long, (uint32_t)c0) ^ (uint32_t)c2;
        p += 3 * LONG_BLOCK;
        n -= 3 * LONG_BLOCK;
    }
    while (n >= 3 * SHORT_BLOCK) {
        uint64_t c1 = 0, c2 = 0, w0, w1, w2;
        for (size_t i = 0; i < SHORT_BLOCK; i += 8) {
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + SHORT_BLOCK + i, 8);
            memcpy(&w2, p + 2 * SHORT_BLOCK + i, 8);
            c0 = _mm_crc32_u64(c0, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c0 = shift(shift_short, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift(shift_short, (uint32_t)c0) ^ (uint32_t)c2;
        p += 3 * SHORT_BLOCK;
        n -= 3 * SHORT_BLOCK;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c0 = _mm_crc32_u64(c0, w);
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        n--;
    }
    return (uint32_t)c0;
}
#endif

/* ---- set-up and dispatch ------------------------------------------------- */

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        slice[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            slice[t][i] = (slice[t - 1][i] >> 8) ^ slice[0][slice[t - 1][i] & 0xff];
    make_shift_table(shift_long, LONG_BLOCK);
    make_shift_table(shift_short, SHORT_BLOCK);
    crc_raw = sw_raw;
#if RN_CRC_HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        hw_ok = 1;
        crc_raw = hw_raw;
    }
#endif
}

uint32_t rn_crc32c(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&init_once, crc_init);
    return ~crc_raw(~crc, buf, n);
}

uint32_t rn_crc32c_sw(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&init_once, crc_init);
    return ~sw_raw(~crc, buf, n);
}

uint32_t rn_crc32c_hw(uint32_t crc, const void *buf, size_t n)
{
    pthread_once(&init_once, crc_init);
#if RN_CRC_HAVE_X86
    if (hw_ok) return ~hw_raw(~crc, buf, n);
#endif
    /* No crc32 instruction: the contract says not to call this, but answer
     * correctly rather than fault. */
    return ~sw_raw(~crc, buf, n);
}

int rn_crc32c_hw_available(void)
{
    pthread_once(&init_once, crc_init);
    return hw_ok;
}

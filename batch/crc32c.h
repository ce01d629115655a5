/*
 * crc32c.h — CRC-32C (Castagnoli), as Kafka's RecordBatch v2 and runnel's own
 * on-disk formats use it.
 *
 * rn_crc32c() uses the SSE4.2 crc32 instruction when the CPU has it and a
 * slicing table otherwise; the choice is made once, on first use. Both paths
 * are exposed so tests can check each against the standard vectors
 * (check value 0xE3069283 for "123456789", RFC 3720 B.4).
 *
 * The crc argument chains calls: rn_crc32c(rn_crc32c(0, a, n), b, m) equals the
 * CRC of a followed by b. Start with 0.
 */
#ifndef RN_CRC32C_H
#define RN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t rn_crc32c(uint32_t crc, const void *buf, size_t n);
uint32_t rn_crc32c_sw(uint32_t crc, const void *buf, size_t n);
/* Hardware path; only call when rn_crc32c_hw_available() is true. */
uint32_t rn_crc32c_hw(uint32_t crc, const void *buf, size_t n);
int      rn_crc32c_hw_available(void);

#endif

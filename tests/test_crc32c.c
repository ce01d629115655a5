/*
 * test_crc32c.c — CRC-32C: the standard check value and the RFC 3720 B.4
 * vectors on both the hardware and the software path, chaining, and the two
 * paths agreeing on random data at every alignment and many lengths
 * (including the lengths where the 3-stream hw path switches block sizes).
 *
 * Randomness is seeded; the seed is printed (set RN_SEED to replay one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch/crc32c.h"
#include "tests/util/util.h"

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static uint64_t rng_state;

static uint64_t rng(void) { return rn_test_rng(&rng_state); }

/* A bit-at-a-time reference, written straight from the definition. */
static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static void check_vectors(crc_fn f)
{
    uint8_t buf[32];
    assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(f(0, "", 0), 0u);
    assert_int_equal(f(0x12345678u, "", 0), 0x12345678u);
    memset(buf, 0, sizeof buf);
    assert_int_equal(f(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(f(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)i;
    assert_int_equal(f(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (uint8_t)(31 - i);
    assert_int_equal(f(0, buf, 32), 0x113FDB5Cu);
}

static void test_reference_vectors(void **state)
{
    /* The reference itself must give the published values. */
    assert_int_equal(crc_ref(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
    uint8_t z[32] = {0};
    assert_int_equal(crc_ref(0, z, 32), 0x8A9136AAu);
}

static void test_sw_vectors(void **state) { check_vectors(rn_crc32c_sw); }

static void test_hw_vectors(void **state)
{
    if (!rn_crc32c_hw_available()) skip();
    check_vectors(rn_crc32c_hw);
}

static void test_dispatch_vectors(void **state) { check_vectors(rn_crc32c); }

static void check_chaining(crc_fn f)
{
    uint8_t buf[3000];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng();
    uint32_t whole = f(0, buf, sizeof buf);
    assert_int_equal(whole, crc_ref(0, buf, sizeof buf));
    for (size_t cut = 0; cut <= sizeof buf; cut += 97) {
        uint32_t c = f(f(0, buf, cut), buf + cut, sizeof buf - cut);
        assert_int_equal(c, whole);
    }
    /* Byte by byte. */
    uint32_t c = 0;
    for (size_t i = 0; i < sizeof buf; i++) c = f(c, buf + i, 1);
    assert_int_equal(c, whole);
}

static void test_chaining(void **state)
{
    check_chaining(rn_crc32c_sw);
    check_chaining(rn_crc32c);
    if (rn_crc32c_hw_available()) check_chaining(rn_crc32c_hw);
}

static void test_hw_equals_sw_random(void **state)
{
    if (!rn_crc32c_hw_available()) skip();
    const size_t max = 3 * 8192 * 2 + 3 * 256 + 64;
    uint8_t *buf = malloc(max + 16);
    assert_non_null(buf);
    for (size_t i = 0; i < max + 16; i++) buf[i] = (uint8_t)rng();
    /* Every alignment 0..15, every length 0..1100 (covers the short-block
     * path at 768 and all tails), then lengths around the long-block path. */
    for (size_t a = 0; a < 16; a++) {
        for (size_t n = 0; n <= 1100; n++) {
            uint32_t seed = (uint32_t)rng();
            uint32_t s = rn_crc32c_sw(seed, buf + a, n);
            uint32_t h = rn_crc32c_hw(seed, buf + a, n);
            if (s != h) fail_msg("hw 0x%08x != sw 0x%08x at align %zu len %zu", h, s, a, n);
        }
    }
    size_t lens[] = {3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1, 3 * 8192 + 3 * 256 + 7,
                     6 * 8192, 6 * 8192 + 769, max};
    for (size_t a = 0; a < 16; a++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            uint32_t s = rn_crc32c_sw(0, buf + a, lens[i]);
            uint32_t h = rn_crc32c_hw(0, buf + a, lens[i]);
            if (s != h) fail_msg("hw 0x%08x != sw 0x%08x at align %zu len %zu", h, s, a, lens[i]);
            assert_int_equal(s, crc_ref(0, buf + a, lens[i]));
        }
    }
    free(buf);
}

static void test_sw_equals_reference_random(void **state)
{
    uint8_t buf[600];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng();
    for (size_t a = 0; a < 8; a++)
        for (size_t n = 0; n + a <= sizeof buf; n += 7)
            assert_int_equal(rn_crc32c_sw(0, buf + a, n), crc_ref(0, buf + a, n));
}

int main(void)
{
    rng_state = rn_test_seed("test_crc32c");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_sw_vectors),
        cmocka_unit_test(test_hw_vectors),
        cmocka_unit_test(test_dispatch_vectors),
        cmocka_unit_test(test_chaining),
        cmocka_unit_test(test_hw_equals_sw_random),
        cmocka_unit_test(test_sw_equals_reference_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

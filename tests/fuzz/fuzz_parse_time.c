/*
 * fuzz_parse_time.c — libFuzzer target for streamsql's time parser
 * (rn_sql_parse_time, streamsql/fn.c), which reads event times from records
 * (CREATE STREAM ... timestamp_format) and `runnel produce --timestamp-format`.
 * The input is the time text, then optionally a NUL byte and a strptime-style
 * format (none: ISO-8601).
 *
 * Invariants (abort() on violation, besides ASan/UBSan findings):
 *  1. The parser returns 0, or RN_EINVAL with a non-empty reason.
 *  2. An ISO-8601 time that parses lies within years 0000..9999 (offsets
 *     included) and parses again to the same value when the text is
 *     reformatted as YYYY-MM-DDThh:mm:ss.fffZ (years 1970..9999).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "streamsql/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_parse_time: %s:%d: invariant failed: %s\n",    \
                    __FILE__, __LINE__, #c);                                      \
            abort();                                                              \
        }                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nul = memchr(s, 0, size);
    size_t n = nul ? (size_t)(nul - s) : size;
    char fmt[160] = "";
    int has_fmt = 0;
    if (nul) {
        size_t fl = size - n - 1;
        if (fl >= sizeof fmt) fl = sizeof fmt - 1;
        memcpy(fmt, nul + 1, fl);
        fmt[fl] = '\0';
        has_fmt = fmt[0] != '\0' && memchr(nul + 1, 0, size - n - 1) == NULL;
    }
    int64_t ms = 0;
    char why[RN_ERRMSG_SIZE] = "";
    int rc = rn_sql_parse_time(s, n, has_fmt ? fmt : NULL, &ms, why);
    CHECK(rc == 0 || (rc == RN_EINVAL && why[0]));
    if (rc != 0 || has_fmt) return 0;
    /* 0000-01-01 - 24h .. 9999-12-31 + 24h */
    CHECK(ms >= -62167219200000ll - 86400000ll && ms <= 253402300800000ll + 86400000ll);
    if (ms < 0 || ms >= 253402300800000ll) return 0;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    CHECK(gmtime_r(&t, &tm) != NULL);
    char iso[64];
    snprintf(iso, sizeof iso, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    int64_t again = -1;
    CHECK(rn_sql_parse_time(iso, strlen(iso), NULL, &again, why) == 0);
    CHECK(again == ms);
    return 0;
}

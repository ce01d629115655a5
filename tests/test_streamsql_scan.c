/*
 * test_streamsql_scan.c — the JSON record scanner (streamsql/scan.c) on the
 * boundaries of its fast paths: a string's closing quote or first escape at
 * every offset of a 16-byte (SSE2) and 8-byte (SWAR) step and in the
 * byte-wise tail, at every alignment, each escape kind (\" \\ \/ \b \f \n \r
 * \t, \u with 1-, 2- and 3-byte UTF-8 and a surrogate pair), raw UTF-8;
 * integers at the edges of int64 and of the one-pass parser (19 digits,
 * sign, each delimiter, trailing junk); and every truncation of records.
 *
 * Oracles are independent of scan.c: each record is built from the values
 * it must decode to (strings unescaped by the test's own table, integers
 * decided by strtoll); a prefix of a record is either rejected or decodes
 * to exactly the full record's values. Each record sits at the very end of
 * an allocation of its own size, so ASan catches any read past it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "streamsql/sql_int.h"

typedef struct scan {
    sdef_t  def;
    fval_t  out[RN_SQL_MAX_FIELDS];
    rn_buf_t arena;
    char    err[RN_ERRMSG_SIZE];
} scan_t;

static void scan_init(scan_t *s, const char *fields)
{
    memset(s, 0, sizeof *s);
    int erroff = 0;
    assert_int_equal(rn_front_parse_fields(fields, strlen(fields), &s->def, &erroff, s->err), 0);
    s->def.format = SF_JSON;
    s->def.ts_field = -1;
    s->def.declared = 1;
    s->arena = (rn_buf_t)RN_BUF_INIT;
}

/* Scan rec[0..n) placed at offset `align` of a buffer that ends where it ends. */
static int scan_at(scan_t *s, const char *rec, size_t n, size_t align)
{
    char *buf = malloc(align + n + (align + n == 0));    /* ends where the record ends */
    assert_non_null(buf);
    if (n) memcpy(buf + align, rec, n);
    s->arena.len = 0;
    assert_int_equal(rn_buf_reserve(&s->arena, n + 1, SIZE_MAX), 0);
    uint64_t need = s->def.nfields == 64 ? ~0ull : (1ull << s->def.nfields) - 1;
    int rc = rn_scan_record(&s->def, need, (const uint8_t *)buf + align, (int32_t)n, s->out,
                            &s->arena, s->err);
    /* text views into the record are checked by the caller before free: copy them */
    static char keep[RN_SQL_MAX_FIELDS][512];
    for (int i = 0; rc == 0 && i < s->def.nfields; i++) {
        if (s->out[i].type != RN_SQL_TEXT) continue;
        assert_true(s->out[i].n < sizeof keep[i]);
        memcpy(keep[i], s->out[i].s, s->out[i].n);
        s->out[i].s = keep[i];
    }
    free(buf);
    return rc;
}

/* An escape and what it decodes to. */
typedef struct esc {
    const char *in, *out;
} esc_t;

static const esc_t escs[] = {
    {"\\\"", "\""}, {"\\\\", "\\"}, {"\\/", "/"}, {"\\b", "\b"}, {"\\f", "\f"},
    {"\\n", "\n"}, {"\\r", "\r"}, {"\\t", "\t"}, {"\\u0041", "A"}, {"\\u00e9", "\xc3\xa9"},
    {"\\u20AC", "\xe2\x82\xac"}, {"\\ud83d\\ude00", "\xf0\x9f\x98\x80"},
};

static void body_char(uint32_t *seed, char *c)
{
    static const char pool[] = "abcXYZ 0123:,{}[]-_.'\t";   /* no '"', no '\\' */
    *seed = *seed * 1103515245u + 12345u;
    *c = pool[(*seed >> 16) % (sizeof pool - 1)];
}

/* One record {"s":"<body>","n":<n>} (or with s last) checked at every
 * alignment 0..15. */
static void check_string(scan_t *s, const char *escaped, size_t elen, const char *want,
                         size_t wlen, int s_last)
{
    char rec[512];
    int n = s_last ? snprintf(rec, sizeof rec, "{\"n\":-42,\"s\":\"%.*s\"}", (int)elen, escaped)
                   : snprintf(rec, sizeof rec, "{\"s\":\"%.*s\",\"n\":-42}", (int)elen, escaped);
    assert_true(n > 0 && (size_t)n < sizeof rec);
    for (size_t align = 0; align < 16; align++) {
        int rc = scan_at(s, rec, (size_t)n, align);
        if (rc != 0) fail_msg("rejected %s: %s", rec, s->err);
        assert_int_equal(s->out[0].type, RN_SQL_TEXT);
        assert_int_equal(s->out[0].n, wlen);
        assert_memory_equal(s->out[0].s, want, wlen);
        assert_int_equal(s->out[1].type, RN_SQL_INT);
        assert_int_equal(s->out[1].i, -42);
    }
}

/* Bodies of every length 0..49 (covering 3 SSE2 steps, SWAR steps and the
 * tail from every start), plain and with each escape at every position. */
static void test_string_boundaries(void **state)
{
    scan_t s;
    scan_init(&s, "s TEXT, n INTEGER");
    uint32_t seed = 7;
    for (size_t len = 0; len < 50; len++) {
        char body[64];
        for (size_t i = 0; i < len; i++) body_char(&seed, &body[i]);
        for (int last = 0; last < 2; last++) {
            check_string(&s, body, len, body, len, last);
            for (size_t at = 0; at <= len; at++) {
                for (size_t e = 0; e < sizeof escs / sizeof escs[0]; e++) {
                    char in[128], want[128];
                    size_t il = strlen(escs[e].in), ol = strlen(escs[e].out);
                    memcpy(in, body, at);
                    memcpy(in + at, escs[e].in, il);
                    memcpy(in + at + il, body + at, len - at);
                    memcpy(want, body, at);
                    memcpy(want + at, escs[e].out, ol);
                    memcpy(want + at + ol, body + at, len - at);
                    check_string(&s, in, len + il, want, len + ol, last);
                }
            }
        }
    }
    /* raw UTF-8 passes through byte for byte */
    const char *u = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 na\xc3\xafve and more bytes";
    check_string(&s, u, strlen(u), u, strlen(u), 0);
    rn_buf_free(&s.arena);
}

/* An unterminated string, with the end at every offset, is always rejected. */
static void test_unterminated_string(void **state)
{
    scan_t s;
    scan_init(&s, "s TEXT");
    for (size_t len = 0; len < 40; len++) {
        char rec[64] = "{\"s\":\"";
        size_t n = strlen(rec);
        for (size_t i = 0; i < len; i++) rec[n++] = (char)('a' + i % 26);
        for (size_t align = 0; align < 16; align++)
            assert_int_not_equal(scan_at(&s, rec, n, align), 0);
        rec[n++] = '\\';                       /* ends inside an escape */
        for (size_t align = 0; align < 16; align++)
            assert_int_not_equal(scan_at(&s, rec, n, align), 0);
    }
    rn_buf_free(&s.arena);
}

/* The oracle: -?[0-9]+ within int64, by strtoll; JSON whitespace may come
 * before and after a value. */
static int oracle_int(const char *tok, int64_t *v)
{
    char t[64];
    while (*tok == ' ') tok++;
    snprintf(t, sizeof t, "%s", tok);
    for (size_t n = strlen(t); n && t[n - 1] == ' '; n--) t[n - 1] = 0;
    size_t i = t[0] == '-';
    if (!t[i]) return -1;
    for (; t[i]; i++)
        if (t[i] < '0' || t[i] > '9') return -1;
    errno = 0;
    long long x = strtoll(t, NULL, 10);
    if (errno == ERANGE) return -1;
    *v = x;
    return 0;
}

static void test_integers(void **state)
{
    scan_t s;
    scan_init(&s, "n INTEGER, m INTEGER");
    const char *tokens[] = {
        "0", "-0", "1", "-1", "7", "01", "-007", "9223372036854775807", "-9223372036854775808",
        "9223372036854775808", "-9223372036854775809", "9999999999999999999",
        "10000000000000000000", "99999999999999999999", "1234567890123456789",
        "-1234567890123456789", "12345678901234567890", "1.5", "1e3", "12a", "-", "--1", "+1",
        "1-", "0x10", "true", "null", "\"12\"", "[1]", "{}",
    };
    const char *after[] = {",\"m\":5}", " ,\"m\":5}", "\n,\"m\":5}", "\t,\"m\":5 }",
                           "\r,\"m\":5}"};
    char tok[32];
    const size_t nt = sizeof tokens / sizeof tokens[0];
    const char bad[] = "/:a. -";       /* '/' and ':' sit either side of '0'..'9' */
    for (size_t t = 0; t < nt + 19 * 2 + 20 * 6 + 20; t++) {
        if (t < nt) {
            snprintf(tok, sizeof tok, "%s", tokens[t]);
        } else if (t >= nt + 19 * 2 + 20 * 6) {   /* each length 1..20 of mixed digits */
            size_t k = t - (nt + 19 * 2 + 20 * 6) + 1;
            memcpy(tok, "98765432101234567890", k);
            tok[k] = 0;
        } else if (t >= nt + 19 * 2) {         /* a non-digit at each place of 20 */
            size_t k = (t - nt - 19 * 2) / 6;
            memcpy(tok, "12345678901234567890", 21);
            tok[k] = bad[(t - nt - 19 * 2) % 6];
            if (k > 0 && tok[k] == '-') tok[0] = '-';   /* a sign, or one in the middle */
        } else {                               /* 10^k and 10^k - 1, k = 1..19 */
            size_t k = (t - sizeof tokens / sizeof tokens[0]) / 2 + 1;
            int minus = (t - sizeof tokens / sizeof tokens[0]) % 2;
            if (minus) { memset(tok, '9', k); tok[k] = 0; }
            else { tok[0] = '1'; memset(tok + 1, '0', k); tok[k + 1] = 0; }
        }
        int64_t want = 0;
        int ok = oracle_int(tok, &want);
        for (size_t a = 0; a < sizeof after / sizeof after[0]; a++) {
            char rec[128];
            int n = snprintf(rec, sizeof rec, "{\"n\":%s%s", tok, after[a]);
            for (size_t align = 0; align < 8; align++) {
                int rc = scan_at(&s, rec, (size_t)n, align);
                int isnull = strcmp(tok, "null") == 0;
                if (ok != 0 && !isnull) {
                    if (rc == 0) fail_msg("accepted %s", rec);
                    continue;
                }
                if (rc != 0) fail_msg("rejected %s: %s", rec, s.err);
                if (isnull) {
                    assert_int_equal(s.out[0].type, RN_SQL_NULL);
                } else {
                    assert_int_equal(s.out[0].type, RN_SQL_INT);
                    assert_true(s.out[0].i == want);
                }
                assert_int_equal(s.out[1].i, 5);
            }
        }
        /* the last member, its digits ending the record's bytes: no '}' */
        char rec[64];
        int n = snprintf(rec, sizeof rec, "{\"m\":5,\"n\":%s", tok);
        for (size_t align = 0; align < 8; align++)
            assert_int_not_equal(scan_at(&s, rec, (size_t)n, align), 0);
    }
    rn_buf_free(&s.arena);
}

/* Every prefix of each record is rejected, or decodes to the full record's
 * values (the scan may stop once every declared field was read). */
static void test_truncated(void **state)
{
    static const char *const recs[] = {
        "{\"a\":123,\"b\":\"x\\u00e9y\\\"z\",\"c\":1.25,\"d\":true,\"e\":null}",
        "{ \"z\" : {\"q\":[1,\"]}\"]} , \"a\" : -9 , \"b\" : \"\" , \"c\" : -0.5e3 , "
        "\"d\" : false , \"e\" : [1,2] , \"w\":\"tail\\\\\" }",
        "{\"e\":{\"k\":\"v\"},\"d\":false,\"c\":3,\"b\":\"long string that spans more than "
        "sixteen bytes\\nwith an escape\",\"a\":9223372036854775807,\"after\":17}",
    };
    scan_t full, s;
    scan_init(&full, "a INTEGER, b TEXT, c REAL, d BOOLEAN, e JSON");
    scan_init(&s, "a INTEGER, b TEXT, c REAL, d BOOLEAN, e JSON");
    for (size_t r = 0; r < sizeof recs / sizeof recs[0]; r++) {
        size_t n = strlen(recs[r]);
        if (scan_at(&full, recs[r], n, 0) != 0) fail_msg("rejected %s: %s", recs[r], full.err);
        for (size_t k = 0; k < n; k++) {
            for (size_t align = 0; align < 4; align++) {
                if (scan_at(&s, recs[r], k, align) != 0) continue;
                for (int i = 0; i < s.def.nfields; i++) {
                    const fval_t *x = &s.out[i], *y = &full.out[i];
                    assert_int_equal(x->type, y->type);
                    if (x->type == RN_SQL_INT) assert_true(x->i == y->i);
                    if (x->type == RN_SQL_REAL) assert_true(x->d == y->d);
                    if (x->type == RN_SQL_TEXT) {
                        assert_int_equal(x->n, y->n);
                        assert_memory_equal(x->s, y->s, x->n);
                    }
                }
            }
        }
    }
    /* the full decodes, by the test's own reading of the records */
    assert_true(full.out[0].i == 9223372036854775807ll);
    rn_buf_free(&full.arena);
    rn_buf_free(&s.arena);
}

/* Member names against declared names of 1 to 9 bytes (the 8-byte word
 * compare and the byte loop): every declared name, each with one byte
 * changed at every place, one byte longer and shorter, escaped, with blanks
 * around the colon and comma, the record ending right after the name (so
 * the word would cross the end of the buffer) at every alignment. */
static void test_member_names(void **state)
{
    scan_t s;
    scan_init(&s, "a INTEGER, ab INTEGER, abcdefg INTEGER, abcdefgh INTEGER, abcdefghi INTEGER");
    const char *names[] = {"a", "ab", "abcdefg", "abcdefgh", "abcdefghi"};
    const char *forms[] = {"{\"%s\":%d}", "{\"%s\" : %d }", "{\"z\":1,\"%s\":%d}",
                           "{\"z\":1 , \"%s\":%d}", "{\"z\":1,\n\"%s\":%d}"};
    for (int f = 0; f < 5; f++) {
        for (int want = 0; want < 5; want++) {
            size_t nl = strlen(names[want]);
            /* variants: exact, each byte changed, longer, shorter */
            for (size_t v = 0; v <= nl + 2; v++) {
                char name[16];
                memcpy(name, names[want], nl + 1);
                int match = want;
                if (v < nl) { name[v] = 'q'; match = -1; }
                else if (v == nl) { name[nl] = 'q'; name[nl + 1] = 0; match = -1; }
                else if (v == nl + 1) {
                    name[nl - 1] = 0;
                    match = -1;
                    for (int k = 0; k < 5; k++) if (strcmp(name, names[k]) == 0) match = k;
                }
                char rec[64];
                int n = snprintf(rec, sizeof rec, forms[f], name, 40 + want);
                if (v == nl + 2) {
                    /* the first byte escaped: \u0061 is 'a' */
                    n = snprintf(rec, sizeof rec, forms[f], "\\u0061", 40 + want);
                    char rest[16];
                    snprintf(rest, sizeof rest, "%s", names[want] + 1);
                    char *at = strstr(rec, "u0061") + 5;
                    memmove(at + strlen(rest), at, strlen(at) + 1);
                    memcpy(at, rest, strlen(rest));
                    n = (int)strlen(rec);
                    match = want;
                }
                for (size_t align = 0; align < 16; align++) {
                    assert_int_equal(scan_at(&s, rec, (size_t)n, align), 0);
                    for (int k = 0; k < 5; k++) {
                        if (k == match) {
                            assert_int_equal(s.out[k].type, RN_SQL_INT);
                            assert_int_equal(s.out[k].i, 40 + want);
                        } else {
                            if (s.out[k].type != RN_SQL_NULL)
                                fail_msg("%s: field %s is set", rec, names[k]);
                        }
                    }
                }
            }
        }
    }
    rn_buf_free(&s.arena);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_boundaries),
        cmocka_unit_test(test_unterminated_string),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_member_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

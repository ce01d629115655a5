/*
 * test_json.c — common/json.h: rn_json_field validates the whole line as one
 * JSON object before it answers (table of cases), and agrees with sqlite3's
 * json_valid() on random mutations of valid records (an independent oracle;
 * where sqlite 3.40 is lenient — it takes an array holding a string as an
 * object key — Python's json module decides);
 * rn_json_utf8_valid accepts exactly RFC 3629 UTF-8 (table of valid and
 * invalid sequences), and rn_json_write_base64 writes RFC 4648 base64 (the
 * RFC's test vectors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spawn.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/json.h"
#include "common/error.h"
#include "tests/util/util.h"

static int field(const char *line, const char *name, char *got, size_t size)
{
    rn_buf_t out = RN_BUF_INIT;
    char err[RN_ERRMSG_SIZE];
    int num;
    int rc = rn_json_field(line, strlen(line), name, &out, &num, err);
    if (rc == 0) snprintf(got, size, "%s%.*s", num ? "#" : "", (int)out.len, (const char *)out.data);
    else snprintf(got, size, "%s", err);
    rn_buf_free(&out);
    return rc;
}

static void test_cases(void **state)
{
    (void)state;
    static const struct { const char *line, *want; int rc; } cases[] = {
        {"{\"k\":\"a\"}", "a", 0},
        {" {\"j\":[1,{\"x\":[]},\"}\"], \"k\" : -1.5e3 }\r", "#-1.5e3", 0},
        {"{\"k\":\"a\",\"k\":\"b\"}", "a", 0},
        {"{\"\\u006b\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80", 0},
        {"{\"k\":\"a\"", "malformed JSON: the object is not closed", RN_EINVAL},
        {"{\"k\":\"a\"} x", "text after the JSON object at byte 11", RN_EINVAL},
        {"{\"k\":\"a\",\"j\":[1,}", "malformed JSON at byte 17", RN_EINVAL},
        {"{\"k\":\"a\",\"j\":[1}]}", "malformed JSON at byte 16", RN_EINVAL},
        {"{\"k\":\"a\",\"j\":{\"x\" 1}}", "malformed JSON at byte 15", RN_EINVAL},
        {"{\"k\":\"a\",\"j\":01}", "malformed JSON at byte 15", RN_EINVAL},
        {"{\"k\":\"a\tb\"}", "malformed JSON at byte 6", RN_EINVAL},
        {"{\"k\":\"a\",}", "malformed JSON at byte 10", RN_EINVAL},
        {"{\"j\":1}", "no field 'k'", RN_ENOTFOUND},
        {"{}", "no field 'k'", RN_ENOTFOUND},
        {"[1]", "not a JSON object", RN_EINVAL},
        {"{\"k\":true}", "field 'k' is not a string or a number", RN_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[256];
        int rc = field(cases[i].line, "k", got, sizeof got);
        if (rc != cases[i].rc || strcmp(got, cases[i].want) != 0)
            fail_msg("%s: got %d '%s', want %d '%s'", cases[i].line, rc, got, cases[i].rc,
                     cases[i].want);
    }
    /* nesting: up to RN_JSON_MAX_DEPTH inside the object, one more refused */
    for (int extra = 0; extra <= 1; extra++) {
        int d = RN_JSON_MAX_DEPTH + extra;
        char *line = malloc((size_t)d * 2 + 32);
        size_t n = (size_t)sprintf(line, "{\"k\":1,\"j\":");
        for (int i = 0; i < d; i++) line[n++] = '[';
        for (int i = 0; i < d; i++) line[n++] = ']';
        strcpy(line + n, "}");
        char got[256];
        assert_int_equal(field(line, "k", got, sizeof got), extra ? RN_EINVAL : 0);
        free(line);
    }
}

extern char **environ;

/* Python's json module as a second oracle: 1 when line is one JSON object. */
static int python_says_object(const char *line)
{
    static const char script[] =
        "import json,sys\n"
        "try: d = json.loads(sys.argv[1])\n"
        "except ValueError: sys.exit(1)\n"
        "sys.exit(0 if isinstance(d, dict) else 1)\n";
    char *argv[] = {"/usr/bin/python3", "-c", (char *)script, (char *)line, NULL};
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
    return WEXITSTATUS(status) == 0;
}

/* Random mutations of valid records: rn_json_field accepts a line exactly
 * when sqlite3 says it is valid JSON and it is an object. The alphabet holds
 * no backslash and no control byte, where sqlite is more lenient than RFC
 * 8259 (raw tabs in strings, lone surrogates). */
static void test_agrees_with_sqlite(void **state)
{
    (void)state;
    static const char *const seeds[] = {
        "{\"k\":\"abc\",\"n\":12,\"a\":[1,2.5,-3e2,true,false,null],\"o\":{\"x\":{\"y\":[]}}}",
        "{\"k\":1,\"s\":\"}\",\"t\":\"]\",\"e\":{},\"f\":[[],[{}]]}",
        "{ \"k\" : \"v\" , \"z\" : [ 0 , -0.0 , 1E+2 ] }",
    };
    static const char alpha[] = "{}[]\",:0123456789.-+eEtrufalsn k \"";
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) = 'object' "
                                        "ELSE 0 END",
                                        -1, &st, NULL), SQLITE_OK);
    uint64_t rng = rn_test_seed("json mutations");
    int accepted = 0, refused = 0, sqlite_lenient = 0;
    for (int round = 0; round < 20000; round++) {
        char line[256];
        snprintf(line, sizeof line, "%s", seeds[round % 3]);
        size_t n = strlen(line);
        int muts = 1 + (int)(rn_test_rng(&rng) % 3);
        for (int m = 0; m < muts && n > 1; m++) {
            size_t at = rn_test_rng(&rng) % n;
            char c = alpha[rn_test_rng(&rng) % (sizeof alpha - 1)];
            switch (rn_test_rng(&rng) % 3) {
            case 0: line[at] = c; break;                                        /* replace */
            case 1: memmove(line + at, line + at + 1, n - at); n--; break;      /* delete */
            default:                                                            /* insert */
                if (n + 2 >= sizeof line) break;
                memmove(line + at + 1, line + at, n - at + 1);
                line[at] = c;
                n++;
            }
        }
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, line, (int)n, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int valid = sqlite3_column_int(st, 0);
        char got[256];
        int rc = field(line, "k", got, sizeof got);
        int ok = rc == 0 || rc == RN_ENOTFOUND ||
                 (rc == RN_EINVAL && strstr(got, "is not a string or a number"));
        if (ok != valid && valid && python_says_object(line) == ok) {
            sqlite_lenient++;   /* sqlite 3.40 took a non-string key; Python agrees with us */
            valid = ok;
        }
        if (ok != valid) fail_msg("'%s': sqlite says %s, rn_json_field %d '%s'", line,
                                  valid ? "valid" : "invalid", rc, got);
        if (ok) accepted++;
        else refused++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_true(accepted > 1000 && refused > 1000);   /* both sides were exercised */
    if (sqlite_lenient) printf("json mutations: %d lines sqlite took and Python refused\n", sqlite_lenient);
}

/* Write with fn into a memory stream and return the text (static buffer). */
static const char *written(void (*fn)(FILE *, const uint8_t *, size_t), const char *p, size_t n)
{
    static char text[256];
    FILE *f = fmemopen(text, sizeof text, "w");
    assert_non_null(f);
    fn(f, (const uint8_t *)p, n);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; int valid; } cases[] = {
        {"", 0, 1},
        {"plain ascii \x01\x7f", 14, 1},
        {"\0", 1, 1},
        {"caf\xc3\xa9", 5, 1},
        {"\xc3\xbf", 2, 1},                       /* U+00FF */
        {"\xe2\x82\xac", 3, 1},                   /* U+20AC */
        {"\xed\x9f\xbf", 3, 1},                   /* U+D7FF, below the surrogates */
        {"\xee\x80\x80", 3, 1},                   /* U+E000, above them */
        {"\xf0\x9f\x98\x80", 4, 1},               /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 1},               /* U+10FFFF */
        {"\xff", 1, 0},
        {"\xfe", 1, 0},
        {"\x80", 1, 0},                           /* lone continuation byte */
        {"\xc0\x80", 2, 0},                       /* overlong NUL */
        {"\xc1\xbf", 2, 0},                       /* overlong U+007F */
        {"\xe0\x80\xaf", 3, 0},                   /* overlong '/' */
        {"\xe0\x9f\xbf", 3, 0},                   /* overlong U+07FF */
        {"\xf0\x8f\xbf\xbf", 4, 0},               /* overlong U+FFFF */
        {"\xed\xa0\x80", 3, 0},                   /* surrogate U+D800 */
        {"\xed\xbf\xbf", 3, 0},                   /* surrogate U+DFFF */
        {"\xed\xa0\xbd\xed\xb8\x80", 6, 0},       /* a CESU-8 surrogate pair */
        {"\xf4\x90\x80\x80", 4, 0},               /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0},
        {"\xc3", 1, 0},                           /* truncated at the end */
        {"\xe2\x82", 2, 0},
        {"\xf0\x9f\x98", 3, 0},
        {"\xe2\x82x", 3, 0},                      /* truncated in the middle */
        {"a\xc3\xa9\xff", 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (rn_json_utf8_valid((const uint8_t *)cases[i].s, cases[i].n) != cases[i].valid)
            fail_msg("case %zu: want %d", i, cases[i].valid);
    /* Every single byte: valid alone exactly when ASCII. */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        assert_int_equal(rn_json_utf8_valid(&c, 1), b < 0x80);
    }
}

static void test_base64(void **state)
{
    (void)state;
    static const char *const vec[][2] = {       /* RFC 4648 section 10 */
        {"", "\"\""}, {"f", "\"Zg==\""}, {"fo", "\"Zm8=\""}, {"foo", "\"Zm9v\""},
        {"foob", "\"Zm9vYg==\""}, {"fooba", "\"Zm9vYmE=\""}, {"foobar", "\"Zm9vYmFy\""},
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++)
        assert_string_equal(written(rn_json_write_base64, vec[i][0], strlen(vec[i][0])), vec[i][1]);
    assert_string_equal(written(rn_json_write_base64, "\xff\xfe\xfd\0", 4), "\"//79AA==\"");
    assert_string_equal(written(rn_json_write_string, "\xff", 1), "\"\\u00ff\"");
    assert_string_equal(written(rn_json_write_string, "\xc3\xbf", 2), "\"\xc3\xbf\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_agrees_with_sqlite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

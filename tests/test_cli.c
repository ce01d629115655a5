/*
 * test_cli.c — the real `runnel` binary (RN_BIN_DIR/runnel) on a temporary
 * data directory: topic create/list/describe, produce from stdin then
 * consume by offset, by @timestamp, latest and --count, in value and json
 * formats; key hashing and round-robin placement; lz4; JSON escaping and
 * lossless JSON (every byte value and invalid UTF-8, keys and values,
 * decoded back by python3's json and base64 modules); and
 * every kind of bad input, each giving one "runnel: " line on stderr and the
 * documented exit code (2 usage, 1 other), including a data directory locked
 * by a running `runnel produce`. Logical queues: remap (same store and a
 * second store), alter, describe with items, store list, reading across
 * items; consumer groups resuming and committing, resets, checkpoints and
 * identical replays; and bad input to those commands leaving meta.db
 * byte-for-byte the same (a dump of every table before and after).
 *
 * The same tests run against a broker: tests/test_cli_server.c defines
 * RN_TEST_CLI_SERVER and includes this file; each test then starts a real
 * runneld on the fixture's data directory and runs every command with
 * --server HOST:PORT instead of --data DIR, expecting the same output and
 * the same errors ("--fsync X" is left out there: the broker's policy
 * applies). Tests of the data directory itself (missing, not a directory,
 * locked by a `runnel produce`) are embedded-only; the broker has its own
 * lock test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "client/runnel.h"
#include "common/error.h"
#include "tests/util/util.h"

#define RUNNEL RN_BIN_DIR "/runnel"
#define MAX_ARGS 32

#ifdef RN_TEST_CLI_SERVER
#define SERVER_MODE 1
#else
#define SERVER_MODE 0
#endif

typedef struct fixture {
    char root[64];
    char data[PATH_MAX];
    char in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
    char *stdout_text;
    size_t stdout_len;
    char *stderr_text;
#ifdef RN_TEST_CLI_SERVER
    rn_test_runneld_t srv;
#endif
} fixture_t;

/* The arguments that name where the run goes: --data DIR, or --server. */
static const char *where_flag(void) { return SERVER_MODE ? "--server" : "--data"; }
static const char *where_value(const fixture_t *f);

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "cli") != 0) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->in, sizeof f->in, "%s/stdin", f->root);
    snprintf(f->out, sizeof f->out, "%s/stdout", f->root);
    snprintf(f->err, sizeof f->err, "%s/stderr", f->root);
#ifdef RN_TEST_CLI_SERVER
    if (rn_test_runneld_start(&f->srv, f->data, NULL) != 0) {
        free(f);
        return -1;
    }
#endif
    *state = f;
    return 0;
}

static const char *where_value(const fixture_t *f)
{
#ifdef RN_TEST_CLI_SERVER
    return f->srv.addr;
#else
    return f->data;
#endif
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int stopped = 0;
#ifdef RN_TEST_CLI_SERVER
    stopped = rn_test_runneld_stop(&f->srv);        /* SIGTERM must end it with 0 */
    if (stopped != 0) fprintf(stderr, "runneld exit status %d; log %s\n", stopped, f->srv.log);
#endif
    int rc = (rn_test_rmtree(f->root) != 0 ? -1 : 0) | stopped;
    free(f->stdout_text);
    free(f->stderr_text);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Run runnel with argv (NULL-terminated) and input bytes on stdin (NULL:
 * /dev/null); with_data prepends --data DIR (server mode: --server HOST:PORT,
 * and a valid "--fsync never|group" is dropped). Returns the exit status. */
static int run_argv(fixture_t *f, const char *input, size_t input_len, int with_data,
                    const char *const *args)
{
    const char *argv[MAX_ARGS + 4];
    int n = 0;
    argv[n++] = RUNNEL;
    if (with_data) { argv[n++] = where_flag(); argv[n++] = where_value(f); }
    for (int i = 0; args[i]; i++) {
        assert_true(n < MAX_ARGS);
        if (SERVER_MODE && with_data && !strcmp(args[i], "--fsync") && args[i + 1] &&
            (!strcmp(args[i + 1], "never") || !strcmp(args[i + 1], "group"))) {
            i++;
            continue;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    if (input) rn_test_write_file(f->in, input, input_len);
    int status = rn_test_run(RUNNEL, argv, input ? f->in : NULL, f->out, f->err);
    if (status < 0) fail_msg("could not run %s", RUNNEL);
    free(f->stdout_text);
    free(f->stderr_text);
    f->stdout_text = rn_test_slurp(f->out, &f->stdout_len);
    f->stderr_text = rn_test_slurp(f->err, NULL);
    if (WIFSIGNALED(status)) fail_msg("runnel died of signal %d; stderr: %s", WTERMSIG(status),
                                      f->stderr_text);
    return WEXITSTATUS(status);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
/* runnel --data DIR ARGS... with input */
static size_t len_of(const char *s) { return s ? strlen(s) : 0; }
#define RUN(f, input, ...) run_argv((f), (input), len_of(input), 1, ARGS(__VA_ARGS__))

static void expect_ok(fixture_t *f, int rc)
{
    if (rc != 0) fail_msg("exit %d, stderr: %s", rc, f->stderr_text);
}

/* Exactly one line on stderr, "runnel: ...", containing what. */
static void expect_fail(fixture_t *f, int rc, int want_code, const char *what)
{
    const char *e = f->stderr_text;
    if (rc != want_code) fail_msg("exit %d, want %d; stderr: %s", rc, want_code, e);
    if (strncmp(e, "runnel: ", 8) != 0) fail_msg("stderr does not start with 'runnel: ': %s", e);
    const char *nl = strchr(e, '\n');
    if (!nl || nl[1] != '\0') fail_msg("stderr is not exactly one line: %s", e);
    if (!strstr(e, what)) fail_msg("stderr lacks '%s': %s", what, e);
}

static void create_topic(fixture_t *f, const char *name, const char *queues)
{
    expect_ok(f, RUN(f, NULL, "topic", "create", name, "--queues", queues));
}

/* ---- topics ------------------------------------------------------------- */

static void test_topic_create_list_describe(void **state)
{
    fixture_t *f = *state;
    expect_ok(f, RUN(f, NULL, "topic", "create", "logs", "--queues", "3"));
    assert_string_equal(f->stdout_text, "created topic 'logs' with 3 queues\n");
    expect_ok(f, RUN(f, NULL, "topic", "create", "one"));
    assert_string_equal(f->stdout_text, "created topic 'one' with 1 queue\n");

    expect_ok(f, RUN(f, NULL, "topic", "list"));
    char *logs = strstr(f->stdout_text, "\nlogs ");
    char *one = strstr(f->stdout_text, "\none ");
    assert_non_null(logs);
    assert_non_null(one);
    assert_true(logs < one);          /* sorted by name */
    assert_non_null(strstr(logs, " 3  "));
    assert_non_null(strstr(f->stdout_text, "TOPIC"));

    expect_ok(f, RUN(f, "a\nb\nc\n", "produce", "logs", "--queue", "2"));
    expect_ok(f, RUN(f, NULL, "topic", "describe", "logs"));
    const char *d = f->stdout_text;
    assert_non_null(strstr(d, "topic logs: 3 queues"));
    assert_non_null(strstr(d, "store 0 queue 0\n"));
    assert_non_null(strstr(d, "store 0 queue 1\n"));
    assert_non_null(strstr(d, "store 0 queue 2\n"));
    /* Queue 2 holds offsets [0, 3) in one batch; the others are empty. */
    int q, batches;
    long long start, end;
    int rows = 0;
    for (const char *l = strchr(d, '\n') + 1; (l = strchr(l, '\n')) != NULL; ) {
        l++;
        if (sscanf(l, "%d %lld %lld %d", &q, &start, &end, &batches) == 4) {
            assert_int_equal(q, rows);
            assert_int_equal(start, 0);
            assert_int_equal(end, q == 2 ? 3 : 0);
            assert_int_equal(batches, q == 2 ? 1 : 0);
            rows++;
        }
    }
    assert_int_equal(rows, 3);
}

/* ---- produce and consume ---------------------------------------------- */

static const char events[] =
    "{\"id\":0,\"ts\":1000,\"msg\":\"zero\"}\n"
    "{\"id\":1,\"ts\":1001,\"msg\":\"one\"}\n"
    "{\"id\":2,\"ts\":1002,\"msg\":\"two\"}\n"
    "{\"id\":3,\"ts\":1010,\"msg\":\"three\"}\n"
    "{\"id\":4,\"ts\":1020,\"msg\":\"four\"}\n";

static void produce_events(fixture_t *f)
{
    create_topic(f, "ev", "1");
    expect_ok(f, RUN(f, events, "produce", "ev", "--timestamp-field", "ts"));
    assert_non_null(strstr(f->stderr_text, "produced 5 records in 1 batches"));
    assert_non_null(strstr(f->stderr_text, "records/s"));
    assert_non_null(strstr(f->stderr_text, "MB/s"));
}

static void test_produce_consume_value(void **state)
{
    fixture_t *f = *state;
    produce_events(f);
    expect_ok(f, RUN(f, NULL, "consume", "ev"));          /* one queue: --queue optional */
    assert_string_equal(f->stdout_text, events);
    assert_string_equal(f->stderr_text, "");
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--queue", "0", "--from", "3"));
    assert_string_equal(f->stdout_text,
                        "{\"id\":3,\"ts\":1010,\"msg\":\"three\"}\n"
                        "{\"id\":4,\"ts\":1020,\"msg\":\"four\"}\n");
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "earliest", "--count", "1"));
    assert_string_equal(f->stdout_text, "{\"id\":0,\"ts\":1000,\"msg\":\"zero\"}\n");
}

static void test_consume_json_by_offset(void **state)
{
    fixture_t *f = *state;
    produce_events(f);
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "1", "--count", "2", "--format", "json"));
    assert_string_equal(f->stdout_text,
        "{\"queue\":0,\"offset\":1,\"timestamp\":1001,\"key\":null,"
        "\"value\":\"{\\\"id\\\":1,\\\"ts\\\":1001,\\\"msg\\\":\\\"one\\\"}\"}\n"
        "{\"queue\":0,\"offset\":2,\"timestamp\":1002,\"key\":null,"
        "\"value\":\"{\\\"id\\\":2,\\\"ts\\\":1002,\\\"msg\\\":\\\"two\\\"}\"}\n");
}

static void test_consume_by_timestamp(void **state)
{
    fixture_t *f = *state;
    produce_events(f);
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "@1003", "--format", "json"));
    const char *first = "{\"queue\":0,\"offset\":3,\"timestamp\":1010,";
    assert_true(strncmp(f->stdout_text, first, strlen(first)) == 0);
    assert_non_null(strstr(f->stdout_text, "\"offset\":4,\"timestamp\":1020"));
    assert_null(strstr(f->stdout_text, "\"offset\":2"));
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "@1001", "--count", "1"));
    assert_string_equal(f->stdout_text, "{\"id\":1,\"ts\":1001,\"msg\":\"one\"}\n");
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "@0", "--count", "1"));
    assert_string_equal(f->stdout_text, "{\"id\":0,\"ts\":1000,\"msg\":\"zero\"}\n");
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "@5000"));
    assert_string_equal(f->stdout_text, "");
}

static void test_consume_latest_then_more(void **state)
{
    fixture_t *f = *state;
    produce_events(f);
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "latest"));
    assert_string_equal(f->stdout_text, "");
    /* Appends continue at offset 5; reading from there gives only them. */
    expect_ok(f, RUN(f, "late-1\nlate-2", "produce", "ev"));      /* last line without \n */
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "5", "--format", "json"));
    assert_non_null(strstr(f->stdout_text, "\"offset\":5,"));
    assert_non_null(strstr(f->stdout_text, "\"value\":\"late-1\"}\n"));
    assert_non_null(strstr(f->stdout_text, "\"offset\":6,"));
    assert_non_null(strstr(f->stdout_text, "\"value\":\"late-2\"}\n"));
    /* Default timestamps are the time the line was read. */
    long long ts = 0;
    const char *p = strstr(f->stdout_text, "\"timestamp\":");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "\"timestamp\":%lld", &ts), 1);
    long long now = (long long)time(NULL) * 1000;
    assert_true(ts > now - 600000 && ts <= now + 1000);
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--from", "7"));       /* the end itself */
    assert_string_equal(f->stdout_text, "");
}

/* queue of each record in json output, by key */
static int queue_of_key(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"key\":\"%s\"", key);
    int q = -1;
    for (const char *l = json; *l; ) {
        const char *nl = strchr(l, '\n');
        assert_non_null(nl);
        const char *k = strstr(l, pat);
        if (k && k < nl) {
            int lq;
            assert_int_equal(sscanf(l, "{\"queue\":%d", &lq), 1);
            if (q >= 0 && lq != q) fail_msg("key %s is in queues %d and %d", key, q, lq);
            q = lq;
        }
        l = nl + 1;
    }
    return q;
}

static void test_key_hashing(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "users", "4");
    char input[8192];
    size_t n = 0;
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(input + n, sizeof input - n,
                              "{\"n\":%d,\"nested\":{\"user\":[\"x\",\"}\"]},\"user\":\"u%d\"}\n", i, i % 6);
    /* Small batches so many batches and linger flushes interleave. */
    expect_ok(f, RUN(f, input, "produce", "users", "--key-field", "user", "--batch-bytes", "256"));
    assert_non_null(strstr(f->stderr_text, "produced 60 records"));

    char all[65536] = "";
    size_t alen = 0;
    int total = 0;
    for (int q = 0; q < 4; q++) {
        char qs[16];
        snprintf(qs, sizeof qs, "%d", q);
        expect_ok(f, RUN(f, NULL, "consume", "users", "--queue", qs, "--format", "json"));
        for (const char *p = f->stdout_text; (p = strchr(p, '\n')) != NULL; p++) total++;
        assert_true(alen + f->stdout_len < sizeof all);
        memcpy(all + alen, f->stdout_text, f->stdout_len + 1);
        alen += f->stdout_len;
    }
    assert_int_equal(total, 60);
    int used[4] = {0};
    for (int u = 0; u < 6; u++) {
        char key[16];
        snprintf(key, sizeof key, "u%d", u);
        int q = queue_of_key(all, key);     /* fails if a key is in two queues */
        assert_true(q >= 0 && q < 4);
        used[q] = 1;
    }
    assert_true(used[0] + used[1] + used[2] + used[3] >= 2);

    /* --key-tab: key before the first tab, value after it. */
    expect_ok(f, RUN(f, "k1\tv\twith tab\nk1\tsecond\n", "produce", "users", "--key-tab"));
    expect_ok(f, RUN(f, NULL, "topic", "describe", "users"));
    int q1 = -1;
    for (int q = 0; q < 4 && q1 < 0; q++) {
        char qs[16];
        snprintf(qs, sizeof qs, "%d", q);
        expect_ok(f, RUN(f, NULL, "consume", "users", "--queue", qs, "--format", "json"));
        const char *p = strstr(f->stdout_text, "\"key\":\"k1\",\"value\":\"v\\twith tab\"}\n");
        if (p) {
            q1 = q;
            assert_non_null(strstr(p, "\"key\":\"k1\",\"value\":\"second\"}\n"));
        }
    }
    assert_true(q1 >= 0);
}

static void test_round_robin_spreads(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "rr", "3");
    char input[8192];
    size_t n = 0;
    for (int i = 0; i < 200; i++) n += (size_t)snprintf(input + n, sizeof input - n, "line %03d\n", i);
    expect_ok(f, RUN(f, input, "produce", "rr", "--batch-bytes", "200"));
    int total = 0, nonempty = 0;
    for (int q = 0; q < 3; q++) {
        char qs[16];
        snprintf(qs, sizeof qs, "%d", q);
        expect_ok(f, RUN(f, NULL, "consume", "rr", "--queue", qs));
        int c = 0;
        for (const char *p = f->stdout_text; (p = strchr(p, '\n')) != NULL; p++) c++;
        total += c;
        nonempty += c > 0;
    }
    assert_int_equal(total, 200);
    assert_int_equal(nonempty, 3);
}

static void test_many_queues(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "wide", "20");
    char input[4096];
    size_t n = 0;
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(input + n, sizeof input - n, "k%d\tv%d\n", i % 50, i);
    expect_ok(f, RUN(f, input, "produce", "wide", "--key-tab", "--batch-bytes", "128"));
    assert_non_null(strstr(f->stderr_text, "produced 150 records"));
    expect_ok(f, RUN(f, NULL, "topic", "describe", "wide"));
    long long sum = 0, start, end;
    int q, b, rows = 0, used = 0;
    for (const char *l = f->stdout_text; (l = strchr(l, '\n')) != NULL; ) {
        l++;
        if (sscanf(l, "%d %lld %lld %d", &q, &start, &end, &b) == 4) {
            sum += end - start;
            used += end > start;
            rows++;
        }
    }
    assert_int_equal(rows, 20);
    assert_int_equal(sum, 150);
    assert_true(used >= 10);
}

static void test_lz4_round_trip(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "z", "1");
    size_t cap = 200000, n = 0;
    char *input = malloc(cap);
    assert_non_null(input);
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(input + n, cap - n, "{\"level\":\"INFO\",\"seq\":%d,\"msg\":\"compress me "
                              "compress me compress me\"}\n", i);
    expect_ok(f, run_argv(f, input, n, 1, ARGS("produce", "z", "--compression", "lz4",
                                               "--batch-bytes", "8192", "--fsync", "never")));
    assert_non_null(strstr(f->stderr_text, "produced 2000 records"));
    /* Compressed batches are much smaller than the input. */
    unsigned long long batches = 0, bytes = 0;
    const char *p = strstr(f->stderr_text, "records in ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "records in %llu batches (%llu bytes)", &batches, &bytes), 2);
    assert_true(batches > 1);
    assert_true(bytes < n / 2);
    expect_ok(f, RUN(f, NULL, "consume", "z"));
    assert_int_equal(f->stdout_len, n);
    assert_memory_equal(f->stdout_text, input, n);
    /* From the middle of a compressed batch. */
    expect_ok(f, RUN(f, NULL, "consume", "z", "--from", "1234", "--count", "1"));
    assert_non_null(strstr(f->stdout_text, "\"seq\":1234,"));
    free(input);
}

static void test_json_escaping(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "esc", "1");
    const char line[] = "caf\xc3\xa9 \xc3\xbf \"q\" \\ \x01 \xe2\x82\xac!\n\n"
                        "\xff\n\xe2\x82\xac\xed\xa0\x80\n";
    expect_ok(f, RUN(f, line, "produce", "esc"));
    expect_ok(f, RUN(f, NULL, "consume", "esc", "--format", "json"));
    /* Valid UTF-8 passes, quotes, backslashes and controls are escaped; the
     * empty line is an empty value; a value that is not valid UTF-8 (0xff
     * alone, a surrogate's encoding) is value_b64, so 0xff and U+00FF differ. */
    const char *want_value =
        "\"value\":\"caf\xc3\xa9 \xc3\xbf \\\"q\\\" \\\\ \\u0001 \xe2\x82\xac!\"}\n";
    assert_non_null(strstr(f->stdout_text, want_value));
    assert_non_null(strstr(f->stdout_text, "\"offset\":1,"));
    assert_non_null(strstr(f->stdout_text, "\"key\":null,\"value\":\"\"}\n"));
    assert_non_null(strstr(f->stdout_text, "\"key\":null,\"value_b64\":\"/w==\"}\n"));
    assert_non_null(strstr(f->stdout_text, "\"key\":null,\"value_b64\":\"4oKs7aCA\"}\n"));
}

/* ---- lossless JSON ------------------------------------------------------ */

/* Decodes `consume --format json` lines back to bytes: one line per record,
 * "<key hex or ->:<value hex or ->", reading the file as strict UTF-8 and
 * requiring exactly one of NAME / NAME_b64 per record. Lines end at '\n'
 * only (str.splitlines would also split at U+0085 and U+2028, which JSON
 * strings may hold as they are). */
static const char json_decoder[] =
    "import sys, json, base64\n"
    "def get(o, n):\n"
    "    assert (n in o) != (n + '_b64' in o), o\n"
    "    if n in o:\n"
    "        return None if o[n] is None else o[n].encode('utf-8')\n"
    "    return base64.b64decode(o[n + '_b64'], validate=True)\n"
    "raw = open(sys.argv[1], 'rb').read().decode('utf-8', 'strict')\n"
    "assert raw.endswith('\\n')\n"
    "for line in raw[:-1].split('\\n'):\n"
    "    o = json.loads(line)\n"
    "    k, v = get(o, 'key'), get(o, 'value')\n"
    "    print('-' if k is None else k.hex(), '-' if v is None else v.hex(), sep=':')\n";

typedef struct bytes { const char *p; int32_t n; } bytes_t;     /* n < 0: null */

static void hex_of(char *out, bytes_t b)
{
    if (b.n < 0) { strcpy(out, "-"); return; }
    for (int32_t i = 0; i < b.n; i++) sprintf(out + 2 * i, "%02x", (uint8_t)b.p[i]);
    out[2 * b.n] = '\0';
}

/* Every byte value alone, all 256 in one value, and invalid UTF-8 (overlong
 * forms, surrogates, past U+10FFFF, truncated sequences) next to their valid
 * neighbours, as values and as keys, produced through librunnel (records
 * that are not lines) and read back by `runnel consume --format json`
 * decoded with python3: the exact bytes come back. */
static void test_json_lossless(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "bin", "1");
    static const bytes_t odd[] = {
        {"\xc3\xbf", 2}, {"\xff", 1}, {"\xc0\x80", 2}, {"\xc1\xbf", 2}, {"\xe0\x80\xaf", 3},
        {"\xf0\x8f\xbf\xbf", 4}, {"\xed\xa0\x80", 3}, {"\xed\xbf\xbf", 3},
        {"\xed\xa0\xbd\xed\xb8\x80", 6}, {"\xf4\x90\x80\x80", 4}, {"\xe2\x82", 2},
        {"\xf0\x9f\x98", 3}, {"a\xc3", 2}, {"\xe2\x82x", 3}, {"\xf0\x9f\x98\x80", 4},
        {"\xed\x9f\xbf", 3}, {"\xf4\x8f\xbf\xbf", 4}, {"\"\\\x7f\x1f\xe2\x80\xa8", 7},
        {"", 0}, {NULL, -1},
    };
    enum { NODD = sizeof odd / sizeof odd[0], NREC = 256 + 1 + 2 * NODD };
    static char all[256], single[256];
    bytes_t keys[NREC], vals[NREC];
    for (int i = 0; i < 256; i++) {
        all[i] = single[i] = (char)i;
        keys[i] = (bytes_t){NULL, -1};
        vals[i] = (bytes_t){single + i, 1};
    }
    keys[256] = (bytes_t){"k", 1};
    vals[256] = (bytes_t){all, 256};
    for (int i = 0; i < NODD; i++) {
        keys[257 + i] = (bytes_t){NULL, -1};
        vals[257 + i] = odd[i];
        keys[257 + NODD + i] = odd[i];
        vals[257 + NODD + i] = odd[NODD - 1 - i];
    }

    char err[RN_ERRMSG_SIZE];
    rn_client_opts_t co;
    rn_client_opts_default(&co);
    rn_client_t *c = NULL;
    if ((SERVER_MODE ? rn_client_open_server(where_value(f), &co, &c, err)
                     : rn_client_open_data(where_value(f), &co, &c, err)) != 0)
        fail_msg("open: %s", err);
    rn_producer_t *p = NULL;
    if (rn_producer_open(c, "bin", NULL, &p, err) != 0) fail_msg("producer: %s", err);
    for (int i = 0; i < NREC; i++) {
        rn_record_t r = {.timestamp = 1000 + i, .key = (const uint8_t *)keys[i].p,
                         .key_len = keys[i].n, .value = (const uint8_t *)vals[i].p,
                         .value_len = vals[i].n};
        if (rn_producer_send(p, 0, &r, NULL, NULL, err) != 0) fail_msg("send %d: %s", i, err);
    }
    if (rn_producer_close(p, err) != 0) fail_msg("flush: %s", err);
    assert_int_equal(rn_client_close(c), 0);

    expect_ok(f, RUN(f, NULL, "consume", "bin", "--format", "json"));
    char json_path[PATH_MAX + 8], py_path[PATH_MAX + 8];
    snprintf(json_path, sizeof json_path, "%s/bin.json", f->root);
    snprintf(py_path, sizeof py_path, "%s/decode.py", f->root);
    rn_test_write_file(json_path, f->stdout_text, f->stdout_len);
    rn_test_write_file(py_path, json_decoder, strlen(json_decoder));
    /* 0xff alone and U+00FF print differently (the old ambiguity). */
    assert_non_null(strstr(f->stdout_text, "\"key\":null,\"value\":\"\xc3\xbf\"}"));
    assert_non_null(strstr(f->stdout_text, "\"key\":null,\"value_b64\":\"/w==\"}"));

    const char *py[] = {"/usr/bin/python3", py_path, json_path, NULL};
    int st = rn_test_run(py[0], py, NULL, f->out, f->err);
    char *got = rn_test_slurp(f->out, NULL), *perr = rn_test_slurp(f->err, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("python3 decoder failed: %s", perr);
    const char *line = got;
    for (int i = 0; i < NREC; i++) {
        char want[2 * (2 * 256 + 2) + 4], kh[2 * 256 + 2], vh[2 * 256 + 2];
        hex_of(kh, keys[i]);
        hex_of(vh, vals[i]);
        snprintf(want, sizeof want, "%s:%s\n", kh, vh);
        if (strncmp(line, want, strlen(want)) != 0)
            fail_msg("record %d: decoded %.80s, want %s", i, line, want);
        line += strlen(want);
    }
    assert_string_equal(line, "");
    free(got);
    free(perr);
}

static void test_consume_closed_output(void **state)
{
    fixture_t *f = *state;
    produce_events(f);
    /* stdout is a pipe nobody reads: the run stops quietly with 141 and
     * leaves the directory usable. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int err = open(f->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fds[1], 1);
        dup2(err, 2);
        execl(RUNNEL, RUNNEL, where_flag(), where_value(f), "consume", "ev", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 141);
    char *err = rn_test_slurp(f->err, NULL);
    assert_string_equal(err, "");
    free(err);
    expect_ok(f, RUN(f, NULL, "consume", "ev", "--count", "1"));
    assert_string_equal(f->stdout_text, "{\"id\":0,\"ts\":1000,\"msg\":\"zero\"}\n");
}

static void test_env_and_help(void **state)
{
    fixture_t *f = *state;
    expect_ok(f, run_argv(f, NULL, 0, 0, ARGS("--help")));
    assert_non_null(strstr(f->stdout_text, "usage: runnel"));
    const char *cmds[] = {"topic", "produce", "consume", "queue", "store", "group", "checkpoint"};
    for (int i = 0; i < 7; i++) {
        expect_ok(f, run_argv(f, NULL, 0, 0, ARGS(cmds[i], "--help")));
        assert_non_null(strstr(f->stdout_text, "usage: runnel"));
        assert_non_null(strstr(f->stdout_text, cmds[i]));
    }
    /* $RUNNEL_DATA stands for --data ($RUNNEL_SERVER for --server). */
    const char *var = SERVER_MODE ? "RUNNEL_SERVER" : "RUNNEL_DATA";
    setenv(var, where_value(f), 1);
    int rc = run_argv(f, NULL, 0, 0, ARGS("topic", "create", "envtopic"));
    unsetenv(var);
    expect_ok(f, rc);
    expect_ok(f, RUN(f, NULL, "topic", "list"));
    assert_non_null(strstr(f->stdout_text, "envtopic"));
    /* Both variables set is ambiguous and refused; a flag settles it. */
    setenv("RUNNEL_DATA", f->data, 1);
    setenv("RUNNEL_SERVER", "127.0.0.1:1", 1);
    int both = run_argv(f, NULL, 0, 0, ARGS("topic", "list"));
    char *both_err = strdup(f->stderr_text);
    int flagged = run_argv(f, NULL, 0, 1, ARGS("topic", "list"));
    unsetenv("RUNNEL_DATA");
    unsetenv("RUNNEL_SERVER");
    expect_ok(f, flagged);
    assert_non_null(strstr(f->stdout_text, "envtopic"));
    if (both != 2 || strcmp(both_err, "runnel: RUNNEL_DATA and RUNNEL_SERVER are both set; give "
                            "--data DIR or --server HOST:PORT\n") != 0)
        fail_msg("both variables set: exit %d, stderr %s", both, both_err);
    free(both_err);
}

/* ---- bad input -------------------------------------------------------- */

/* delete: the topic and its group offsets go; recreated, it starts empty. */
static void test_topic_delete(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "logs", "2");
    create_topic(f, "keep", "1");
    expect_ok(f, RUN(f, "a\nb\nc\n", "produce", "logs", "--queue", "1"));
    expect_ok(f, RUN(f, NULL, "group", "commit", "g", "logs", "1", "2"));
    expect_ok(f, RUN(f, NULL, "topic", "delete", "logs"));
    assert_string_equal(f->stdout_text, "deleted topic 'logs'\n");
    expect_ok(f, RUN(f, NULL, "topic", "list"));
    assert_null(strstr(f->stdout_text, "logs"));
    assert_non_null(strstr(f->stdout_text, "keep"));
    expect_fail(f, RUN(f, NULL, "topic", "describe", "logs"), 1, "unknown topic 'logs'");
    expect_fail(f, RUN(f, NULL, "topic", "delete", "logs"), 1, "unknown topic 'logs'");
    expect_fail(f, RUN(f, "x\n", "produce", "logs"), 1, "unknown topic 'logs'");
    expect_ok(f, RUN(f, NULL, "group", "offsets", "g"));
    assert_null(strstr(f->stdout_text, "logs"));

    /* Recreated: offset 0, none of the old records. */
    create_topic(f, "logs", "2");
    expect_ok(f, RUN(f, NULL, "consume", "logs"));
    assert_string_equal(f->stdout_text, "");
    expect_ok(f, RUN(f, "new\n", "produce", "logs", "--queue", "1"));
    expect_ok(f, RUN(f, NULL, "consume", "logs", "--queue", "1", "--format", "json"));
    assert_non_null(strstr(f->stdout_text, "\"offset\":0"));
    assert_non_null(strstr(f->stdout_text, "new"));
    assert_null(strstr(f->stdout_text, "\"a\""));
}

static void test_bad_topic_queue_offset(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "four", "4");
    expect_ok(f, RUN(f, "a\nb\nc\n", "produce", "four", "--queue", "1"));

    expect_fail(f, RUN(f, NULL, "consume", "nope", "--queue", "0"), 1, "unknown topic 'nope'");
    expect_fail(f, RUN(f, "x\n", "produce", "nope"), 1, "unknown topic 'nope'");
    expect_fail(f, RUN(f, NULL, "topic", "describe", "nope"), 1, "unknown topic 'nope'");
    expect_fail(f, RUN(f, NULL, "consume", "four", "--queue", "7"), 1,
                "topic 'four' has no queue 7; it has queues 0..3");
    expect_fail(f, RUN(f, "x\n", "produce", "four", "--queue", "4"), 1, "it has queues 0..3");
    /* Without --queue every queue is read. */
    expect_ok(f, RUN(f, NULL, "consume", "four"));
    assert_string_equal(f->stdout_text, "a\nb\nc\n");
    expect_fail(f, RUN(f, NULL, "consume", "four", "--queue", "1", "--from", "99"), 1,
                "offset 99 is outside topic 'four' queue 1's range [0, 3]");
    expect_fail(f, RUN(f, NULL, "topic", "create", "four"), 1, "topic 'four' already exists");
    expect_fail(f, RUN(f, NULL, "topic", "create", "bad/name"), 2,
                "invalid topic name 'bad/name': use 1-249 characters");
}

static void test_bad_flags(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "t", "2");
    struct { const char *args[8]; const char *what; } cases[] = {
        {{"consume", "t", "--bogus"}, "unknown option '--bogus'"},
        {{"--bogus", "topic", "list"}, "unknown option '--bogus'"},
        {{"consume", "t", "--queue"}, "option '--queue' needs a value"},
        {{"topic", "create", "x", "--queues", "12x"}, "--queues: '12x' is not an integer in 1..10000"},
        {{"topic", "create", "x", "--queues", "0"}, "in 1..10000"},
        {{"topic", "create", "x", "--queues", "10001"}, "in 1..10000"},
        {{"topic", "create", "x", "--queues", "-1"}, "in 1..10000"},
        {{"topic", "create", "x", "--queues", "99999999999999999999999"}, "in 1..10000"},
        {{"consume", "t", "--queue", "1", "--count", "0"}, "--count: '0' is not an integer"},
        {{"consume", "t", "--queue", " 1"}, "--queue: ' 1' is not an integer in 0..9999"},
        {{"consume", "t", "--queue", "1", "--from", "yesterday"}, "is not earliest, latest"},
        {{"consume", "t", "--queue", "1", "--from", "@12x"}, "--from @TIMESTAMP_MS: '12x'"},
        {{"consume", "t", "--queue", "1", "--from", "-5"}, "is not earliest, latest"},
        {{"consume", "t", "--queue", "1", "--format", "xml"}, "--format: 'xml' is not value or json"},
        {{"produce", "t", "--linger-ms", "70000"}, "--linger-ms: '70000' is not an integer in 0..60000"},
        {{"produce", "t", "--batch-bytes", "10"}, "--batch-bytes: '10' is not an integer in 128..16777216"},
        {{"produce", "t", "--compression", "zstd"}, "--compression: 'zstd' is not none or lz4"},
        {{"produce", "t", "--fsync", "sometimes"}, "--fsync: "},
        {{"produce", "t", "--key-tab", "--key-field", "k"}, "one of --key-field and --key-tab"},
        {{"produce"}, "produce takes one TOPIC"},
        {{"consume", "a", "b"}, "consume takes one TOPIC"},
        {{"topic"}, "give create, alter, delete, list or describe"},
        {{"topic", "delete"}, "topic delete takes one NAME"},
        {{"topic", "remove", "t"}, "unknown subcommand 'remove'"},
        {{"frobnicate"}, "unknown command 'frobnicate'"},
        {{"group", "offsets"}, "group offsets takes one group G"},
        {{"pipeline", "frobnicate"}, "pipeline: unknown subcommand 'frobnicate'"},
        {{"queue", "remap", "t"}, "queue remap takes TOPIC and Q"},
        {{"queue", "remap", "t", "x"}, "Q: 'x' is not an integer in 0..9999"},
        {{"queue", "move", "t", "0"}, "unknown subcommand 'move'; use remap"},
        {{"store", "list", "x"}, "store list takes no arguments"},
        {{"topic", "alter", "t"}, "topic alter needs --queues M"},
        {{"group", "reset", "g"}, "group reset needs --to"},
        {{"group", "reset", "g", "--to", "5"}, "--to: '5' is not earliest, latest, @TIMESTAMP_MS"},
        {{"group", "reset", "g", "--to", "checkpoint:a/b"}, "invalid checkpoint name 'a/b'"},
        {{"group", "commit", "g", "t", "0", "x5"}, "OFFSET: 'x5' is not an integer"},
        {{"group", "commit", "g", "t", "0", "-1"},
         "group: '-1' is negative: offsets, queues and counts are 0 or more"},
        {{"group", "offsets", "bad/group"}, "invalid group name 'bad/group'"},
        {{"checkpoint", "create", "g"}, "checkpoint create takes G NAME"},
        {{"checkpoint", "list", "a", "b"}, "checkpoint list takes at most one group G"},
        {{"consume", "t", "--group", "a b"}, "invalid group name 'a b'"},
        {{"consume", "t", "--commit-ms", "x"}, "--commit-ms: 'x' is not an integer"},
        {{"consume", "t", "--from", "checkpoint:"}, "invalid checkpoint name ''"},
        {{"--server", "", "topic", "list"}, "--server: the address is empty"},
        {{"--server", "127.0.0.1:99999", "topic", "list"},
         "--server: bad port in address '127.0.0.1:99999': a port is 1 to 65535"},
        {{"--server", "localhost", "topic", "list"},
         "--server: bad address 'localhost': use HOST:PORT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_argv(f, NULL, 0, 1, cases[i].args);
        expect_fail(f, rc, 2, cases[i].what);
    }
    /* --data and --server together. */
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data", f->data, "--server", "localhost:7070",
                                                "topic", "list")), 2,
                "give one of --data DIR and --server");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--server", "127.0.0.1:1", "produce", "t",
                                                "--data", f->data, "--fsync", "never")), 2,
                "give one of --data DIR and --server");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("topic", "list")), 2,
                "no data directory: give --data DIR or set RUNNEL_DATA");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data")), 2, "needs a value");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS(where_flag(), where_value(f))), 2,
                "no command given");
}

/* --timestamp-format: ISO-8601 strings (zones honoured) and a strptime pattern
 * become the record timestamps; what does not parse stops at its line. */
static void test_produce_timestamp_format(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "iso", "1");
    expect_ok(f, RUN(f, "{\"at\":\"2024-05-01T12:30:45.123+02:00\"}\n"
                        "{\"at\":\"2024-05-01 00:00:00Z\"}\n{\"at\":\"1970-01-01T00:00:01\"}\n",
                     "produce", "iso", "--timestamp-field", "at", "--timestamp-format", "iso8601"));
    expect_ok(f, RUN(f, "{\"at\":\"02/01/2024 10:00 -0130\"}\n", "produce", "iso",
                     "--timestamp-field", "at", "--timestamp-format", "%d/%m/%Y %H:%M %z"));
    expect_fail(f, RUN(f, "{\"at\":\"2024-02-30\"}\n", "produce", "iso", "--timestamp-field",
                       "at", "--timestamp-format", "iso8601"), 1,
                "line 1: --timestamp-field at: cannot read '2024-02-30' as iso8601: no such date");
    expect_fail(f, RUN(f, "{\"at\":5}\n", "produce", "iso", "--timestamp-field", "at",
                       "--timestamp-format", "iso8601"), 1,
                "a number, but --timestamp-format iso8601 reads a string");
    expect_fail(f, RUN(f, "", "produce", "iso", "--timestamp-format", "iso8601"), 2,
                "give both");
    expect_fail(f, RUN(f, "", "produce", "iso", "--timestamp-field", "at",
                       "--timestamp-format", "nope"), 2,
                "neither 'iso8601' nor a strftime-style pattern");
    expect_ok(f, RUN(f, NULL, "consume", "iso", "--format", "json"));
    /* python3: datetime.fromisoformat / strptime give these ms */
    const char *want[] = {"\"timestamp\":1714559445123,", "\"timestamp\":1714521600000,",
                          "\"timestamp\":1000,", "\"timestamp\":1704195000000,"};
    const char *p = f->stdout_text;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        p = strstr(p, want[i]);
        if (!p) fail_msg("no %s in order in %s", want[i], f->stdout_text);
    }
}

#ifndef RN_TEST_CLI_SERVER
static void test_bad_data_dirs(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/missing", f->root);
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data", path, "topic", "list")), 1,
                "does not exist");
    struct stat st;
    assert_int_equal(stat(path, &st), -1);          /* not created by a read */

    snprintf(path, sizeof path, "%s/stdin", f->root);
    rn_test_write_file(path, "x", 1);
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data", path, "topic", "create", "x")), 1,
                "is not a directory");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data", f->root, "topic", "create", "x")), 1,
                "not a runnel data directory");

    create_topic(f, "t", "1");
    snprintf(path, sizeof path, "%s/meta.db", f->data);
    char junk[4096];
    memset(junk, 'J', sizeof junk);
    rn_test_write_file(path, junk, sizeof junk);
    expect_fail(f, RUN(f, NULL, "topic", "list"), 1, "meta.db");
}

#endif

static void test_produce_bad_lines(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "t", "1");
    char input[1024];
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(input, sizeof input, "first\nsecond\n%s\nfourth\n", big);
    expect_fail(f, RUN(f, input, "produce", "t", "--batch-bytes", "128"), 1,
                "line 3: longer than --batch-bytes 128");
    assert_non_null(strstr(f->stderr_text, "the 2 records before it were produced"));
    expect_ok(f, RUN(f, NULL, "consume", "t"));
    assert_string_equal(f->stdout_text, "first\nsecond\n");

    expect_fail(f, RUN(f, "{\"k\":\"a\"}\n{\"j\":1}\n", "produce", "t", "--key-field", "k"), 1,
                "line 2: --key-field k: no field 'k'");
    expect_fail(f, RUN(f, "not json\n", "produce", "t", "--key-field", "k"), 1,
                "line 1: --key-field k: not a JSON object");
    expect_fail(f, RUN(f, "{\"k\":[1]}\n", "produce", "t", "--key-field", "k"), 1,
                "field 'k' is not a string or a number");
    expect_fail(f, RUN(f, "{\"k\":\"a\"\n", "produce", "t", "--key-field", "k"), 1,
                "line 1: --key-field k: malformed JSON: the object is not closed");
    expect_fail(f, RUN(f, "{\"k\":\"a\",\"n\":[1,}\n", "produce", "t", "--key-field", "k"), 1,
                "line 1: --key-field k: malformed JSON at byte 17");
    expect_fail(f, RUN(f, "{\"ts\":1.5}\n", "produce", "t", "--timestamp-field", "ts"), 1,
                "line 1: --timestamp-field ts: not an integer number of milliseconds");
    expect_fail(f, RUN(f, "no tab here\n", "produce", "t", "--key-tab"), 1,
                "line 1: no tab separates a key");
    /* Only the first, good run added records; the first bad-key run added
     * its one good line. */
    expect_ok(f, RUN(f, NULL, "consume", "t"));
    assert_string_equal(f->stdout_text, "first\nsecond\n{\"k\":\"a\"}\n");
}

#ifndef RN_TEST_CLI_SERVER
static void test_locked_by_running_produce(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "logs", "1");
    char bg_err[PATH_MAX + 16];
    snprintf(bg_err, sizeof bg_err, "%s/bg-stderr", f->root);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[0], 0);
        close(fds[0]); close(fds[1]);
        int err = open(bg_err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(err, 2);
        execl(RUNNEL, RUNNEL, "--data", f->data, "produce", "logs", (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    assert_int_equal(write(fds[1], "held-1\n", 7), 7);
    /* Wait until the producer holds the lock (its holder line appears). */
    char lock[PATH_MAX + 8];
    snprintf(lock, sizeof lock, "%s/LOCK", f->data);
    int held = 0;
    for (int i = 0; i < 500 && !held; i++) {
        size_t n = 0;
        char *text = rn_test_slurp(lock, &n);
        held = strstr(text, "produce logs") != NULL;
        free(text);
        if (!held) usleep(10000);
    }
    assert_true(held);

    char want[128];
    snprintf(want, sizeof want, "is in use by pid %ld (runnel produce logs)", (long)pid);
    expect_fail(f, RUN(f, NULL, "consume", "logs"), 1, want);
    assert_non_null(strstr(f->stderr_text, "--server HOST:PORT"));
    expect_fail(f, RUN(f, "x\n", "produce", "logs"), 1, "is in use by pid");

    usleep(200000);            /* well past --linger-ms 5: held-1 must go alone */
    assert_int_equal(write(fds[1], "held-2\n", 7), 7);
    close(fds[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The first line was sent by the linger timer while stdin stayed open,
     * the second at EOF. */
    char *summary = rn_test_slurp(bg_err, NULL);
    if (!strstr(summary, "produced 2 records in 2 batches")) fail_msg("summary: %s", summary);
    free(summary);
    expect_ok(f, RUN(f, NULL, "consume", "logs"));
    assert_string_equal(f->stdout_text, "held-1\nheld-2\n");
}

#else
/* Broker mode: the data directory is runneld's; opening it directly names
 * runneld as the holder and points at --server. */
static void test_data_dir_held_by_runneld(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "t", "1");
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--data", f->data, "topic", "list")), 1,
                "is in use by pid");
    assert_non_null(strstr(f->stderr_text, "runneld"));
    assert_non_null(strstr(f->stderr_text, "--server HOST:PORT"));
}

/* Nobody listens on port 1: one line naming the address, exit 1. */
static void test_unreachable_server(void **state)
{
    fixture_t *f = *state;
    expect_fail(f, run_argv(f, NULL, 0, 0, ARGS("--server", "127.0.0.1:1", "topic", "list")), 1,
                "127.0.0.1:1");
    expect_fail(f, run_argv(f, "x\n", 2, 0, ARGS("--server", "127.0.0.1:1", "produce", "t")), 1,
                "127.0.0.1:1");
}
#endif

/* ---- logical queues, groups, checkpoints ------------------------------ */

static int count_lines(const char *s)
{
    int n = 0;
    for (const char *p = s; (p = strchr(p, '\n')) != NULL; p++) n++;
    return n;
}

/* "0\n1\n...\n(n-1)\n" starting at first. */
static char *numbers(int first, int n)
{
    char *s = malloc((size_t)n * 12 + 1);
    assert_non_null(s);
    size_t len = 0;
    s[0] = '\0';
    for (int i = 0; i < n; i++) len += (size_t)sprintf(s + len, "%d\n", first + i);
    return s;
}

static void test_remap_describe_stores(void **state)
{
    fixture_t *f = *state;
    char store[PATH_MAX + 16];
    snprintf(store, sizeof store, "%s/disk2", f->root);
    create_topic(f, "m", "2");
    char *in = numbers(0, 10);
    expect_ok(f, RUN(f, in, "produce", "m", "--queue", "0"));
    free(in);
    expect_ok(f, RUN(f, NULL, "queue", "remap", "m", "0"));
    assert_non_null(strstr(f->stdout_text, "topic 'm' queue 0 remapped at offset 10: item 0 "
                                           "(store 0 queue 0, physical [0, 10)) sealed; item 1 "
                                           "opened on store 0 queue 2"));
    in = numbers(10, 5);
    expect_ok(f, RUN(f, in, "produce", "m", "--queue", "0"));
    free(in);
    expect_ok(f, RUN(f, NULL, "queue", "remap", "m", "0", "--store", store));
    assert_non_null(strstr(f->stdout_text, "item 2 opened on store 1 queue 3"));
    in = numbers(15, 5);
    expect_ok(f, RUN(f, in, "produce", "m", "--queue", "0"));
    free(in);

    expect_ok(f, RUN(f, NULL, "topic", "describe", "m"));
    const char *d = f->stdout_text;
    assert_non_null(strstr(d, "    0                    0                   20          3  "
                              "store 1 queue 3\n"));
    assert_non_null(strstr(d, "item 0: offsets [0, 10) -> store 0 queue 0 [0, 10)\n"));
    assert_non_null(strstr(d, "item 1: offsets [10, 15) -> store 0 queue 2 [0, 5)\n"));
    assert_non_null(strstr(d, "item 2: offsets [15, -) -> store 1 queue 3 [0, -) open\n"));
    assert_non_null(strstr(d, "item 0: offsets [0, -) -> store 0 queue 1 [0, -) open\n"));

    expect_ok(f, RUN(f, NULL, "store", "list"));
    assert_non_null(strstr(f->stdout_text, "STORE"));
    assert_non_null(strstr(f->stdout_text, "stores/0\n"));
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "      1  %s\n", store);
    assert_non_null(strstr(f->stdout_text, want));

    /* Reads cross both boundaries; offsets are dense and unchanged. */
    expect_ok(f, RUN(f, NULL, "consume", "m", "--queue", "0"));
    char *all = numbers(0, 20);
    assert_string_equal(f->stdout_text, all);
    free(all);
    expect_ok(f, RUN(f, NULL, "consume", "m", "--queue", "0", "--from", "9", "--count", "7",
                     "--format", "json"));
    assert_int_equal(count_lines(f->stdout_text), 7);
    assert_non_null(strstr(f->stdout_text, "\"offset\":9,"));
    assert_non_null(strstr(f->stdout_text, "\"offset\":15,"));

    /* Alter adds queues; the new one is usable at once. */
    expect_ok(f, RUN(f, NULL, "topic", "alter", "m", "--queues", "3"));
    assert_string_equal(f->stdout_text, "topic 'm' has 3 queues now\n");
    expect_ok(f, RUN(f, "x\n", "produce", "m", "--queue", "2"));
    expect_ok(f, RUN(f, NULL, "consume", "m", "--queue", "2"));
    assert_string_equal(f->stdout_text, "x\n");
    expect_fail(f, RUN(f, NULL, "topic", "alter", "m", "--queues", "2"), 1,
                "topic 'm' has 3 queues; --queues must be more than 3");
}

static void test_group_resume(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "g", "2");
    char *in = numbers(0, 6);
    expect_ok(f, RUN(f, in, "produce", "g", "--queue", "0"));
    free(in);
    in = numbers(100, 4);
    expect_ok(f, RUN(f, in, "produce", "g", "--queue", "1"));
    free(in);
    /* Round-robin by batch in queue order: queue 0's batch, then queue 1's. */
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app", "--count", "8"));
    assert_string_equal(f->stdout_text, "0\n1\n2\n3\n4\n5\n100\n101\n");
    expect_ok(f, RUN(f, NULL, "group", "offsets", "app"));
    assert_non_null(strstr(f->stdout_text, "g                            0              6"));
    assert_non_null(strstr(f->stdout_text, "g                            1              2"));
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app", "--commit-ms", "0"));
    assert_string_equal(f->stdout_text, "102\n103\n");
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app"));
    assert_string_equal(f->stdout_text, "");
    /* New records only. */
    expect_ok(f, RUN(f, "6\n", "produce", "g", "--queue", "0"));
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app", "--format", "json"));
    assert_non_null(strstr(f->stdout_text, "\"queue\":0,\"offset\":6,"));
    assert_int_equal(count_lines(f->stdout_text), 1);
    expect_ok(f, RUN(f, NULL, "group", "list"));
    assert_non_null(strstr(f->stdout_text, "app "));
    /* A group on one queue; --from applies only where it has no offset. */
    expect_ok(f, RUN(f, NULL, "group", "commit", "other", "g", "1", "3"));
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "other", "--from", "latest"));
    assert_string_equal(f->stdout_text, "103\n");
    /* Resets: backwards to earliest, forwards to latest, to a time. */
    expect_ok(f, RUN(f, NULL, "group", "reset", "app", "--to", "earliest"));
    assert_non_null(strstr(f->stdout_text, "group 'app' reset on 2 queues:\n  g 0: 7 -> 0\n"
                                           "  g 1: 4 -> 0\n"));
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app"));
    assert_int_equal(count_lines(f->stdout_text), 11);
    expect_ok(f, RUN(f, NULL, "group", "reset", "app", "--topic", "g", "--to", "latest"));
    expect_ok(f, RUN(f, NULL, "consume", "g", "--group", "app"));
    assert_string_equal(f->stdout_text, "");
    expect_ok(f, RUN(f, NULL, "group", "reset", "app", "--to", "@0"));
    assert_non_null(strstr(f->stdout_text, "  g 0: 7 -> 0\n"));
}

static void test_checkpoint_replay(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "c", "3");
    char *in = numbers(0, 300);
    expect_ok(f, RUN(f, in, "produce", "c", "--batch-bytes", "128"));   /* round-robin */
    free(in);
    expect_ok(f, RUN(f, NULL, "consume", "c", "--group", "job", "--count", "50"));
    expect_ok(f, RUN(f, NULL, "checkpoint", "create", "job", "before"));
    assert_string_equal(f->stdout_text, "checkpoint 'before' of group 'job' holds 3 offsets\n");
    expect_ok(f, RUN(f, NULL, "consume", "c", "--group", "job"));
    char *rest = strdup(f->stdout_text);
    assert_int_equal(count_lines(rest), 250);
    /* The queues move (remap) between the replays: offsets do not change. */
    expect_ok(f, RUN(f, NULL, "queue", "remap", "c", "1"));
    expect_ok(f, RUN(f, NULL, "consume", "c", "--from", "checkpoint:before", "--format", "json"));
    char *one = strdup(f->stdout_text);
    expect_ok(f, RUN(f, NULL, "consume", "c", "--from", "checkpoint:before", "--format", "json"));
    assert_string_equal(one, f->stdout_text);
    assert_int_equal(count_lines(one), 250);
    expect_ok(f, RUN(f, NULL, "consume", "c", "--from", "checkpoint:before"));
    assert_string_equal(rest, f->stdout_text);          /* what the group read after it */
    /* Restore the group from it; it reads the same again. */
    expect_ok(f, RUN(f, NULL, "group", "reset", "job", "--to", "checkpoint:before"));
    expect_ok(f, RUN(f, NULL, "consume", "c", "--group", "job"));
    assert_string_equal(rest, f->stdout_text);
    expect_ok(f, RUN(f, NULL, "checkpoint", "list"));
    assert_non_null(strstr(f->stdout_text, "job                      before                         3"));
    expect_ok(f, RUN(f, NULL, "checkpoint", "drop", "job", "before"));
    expect_ok(f, RUN(f, NULL, "checkpoint", "list", "job"));
    assert_int_equal(count_lines(f->stdout_text), 1);
    free(one);
    free(rest);
}

/* Every row of every table of meta.db as text. */
static char *dump_meta(fixture_t *f)
{
    static const char *const tables[] = {
        "stores", "topics", "physical_queues", "queue_items", "counters", "consumer_groups",
        "group_offsets", "checkpoints", "checkpoint_offsets",
    };
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/meta.db", f->data);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        char sql[128];
        sqlite3_stmt *st = NULL;
        snprintf(sql, sizeof sql, "SELECT * FROM %s ORDER BY 1, 2", tables[t]);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        len += (size_t)snprintf(out + len, cap - len, "[%s]\n", tables[t]);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const char *v = (const char *)sqlite3_column_text(st, c);
                len += (size_t)snprintf(out + len, cap - len, "%s|", v ? v : "NULL");
            }
            len += (size_t)snprintf(out + len, cap - len, "\n");
            assert_true(len < cap - 256);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return out;
}

static void test_bad_input_changes_nothing(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "t", "2");
    expect_ok(f, RUN(f, "a\nb\nc\n", "produce", "t", "--queue", "0"));
    expect_ok(f, RUN(f, NULL, "consume", "t", "--group", "g", "--count", "1"));
    expect_ok(f, RUN(f, NULL, "checkpoint", "create", "g", "cp"));
    char *before = dump_meta(f);
    assert_non_null(strstr(before, "[group_offsets]\ng|1|0|1|"));
    char foreign[PATH_MAX + 16];
    snprintf(foreign, sizeof foreign, "%s/stdin", f->root);     /* a file, not a directory */
    struct { const char *args[10]; const char *what; } cases[] = {
        {{"queue", "remap", "t", "5"}, "topic 't' has no queue 5; it has queues 0..1"},
        {{"queue", "remap", "nope", "0"}, "unknown topic 'nope'; topics: t"},
        {{"queue", "remap", "t", "0", "--store", foreign}, "is not a directory"},
        {{"group", "reset", "g", "--to", "checkpoint:nope"},
         "group 'g' has no checkpoint 'nope'; its checkpoints: cp"},
        {{"group", "reset", "zz", "--to", "earliest"}, "unknown group 'zz'; groups: g"},
        {{"group", "commit", "g", "t", "0", "4"},
         "offset 4 is outside topic 't' queue 0's range [0, 3]"},
        {{"group", "commit", "g", "t", "2", "0"}, "it has queues 0..1"},
        {{"group", "offsets", "zz"}, "unknown group 'zz'; groups: g"},
        {{"topic", "alter", "t", "--queues", "1"}, "topic 't' has 2 queues; --queues must be more"},
        {{"checkpoint", "create", "zz", "x"}, "unknown group 'zz'; groups: g"},
        {{"checkpoint", "create", "g", "cp"}, "group 'g' already has a checkpoint 'cp'"},
        {{"checkpoint", "drop", "g", "nope"}, "its checkpoints: cp"},
        {{"consume", "t", "--from", "checkpoint:nope"},
         "unknown checkpoint 'nope'; checkpoints (group/name): g/cp"},
        {{"consume", "t", "--group", "g", "--from", "checkpoint:zz"}, "its checkpoints: cp"},
        {{"consume", "t", "--group", "h", "--queue", "0", "--from", "7"},
         "offset 7 is outside topic 't' queue 0's range [0, 3]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_argv(f, NULL, 0, 1, cases[i].args);
        expect_fail(f, rc, 1, cases[i].what);
        char *after = dump_meta(f);
        if (strcmp(before, after) != 0)
            fail_msg("case %zu (%s) changed meta.db:\n%s\n---\n%s", i, cases[i].what, before, after);
        free(after);
    }
    free(before);
}

#if !SERVER_MODE
/* Damage on disk, as the command line meets it: `store check` finds a
 * flipped byte offline and exits 1; a commit log cut short makes every open
 * refuse with a message naming `store repair --accept-loss`; the repair
 * prints what recovery did; a consume then stops at the damaged offsets
 * with the topic and how to go past, and a produce continues after the old
 * end (no offset is handed out twice). */
static void test_store_check_and_repair(void **state)
{
    fixture_t *f = *state;
    create_topic(f, "t", "1");
    /* One batch per produce, however slow the machine: the linger never
     * expires before EOF seals the batch. */
    for (int i = 0; i < 6; i++)
        expect_ok(f, RUN(f, "a\nb\nc\n", "produce", "t", "--linger-ms", "60000"));
    char seg[PATH_MAX + 64];
    snprintf(seg, sizeof seg, "%s/stores/0/commitlog/00000000000000000000.log", f->data);
    size_t len;
    uint8_t *b = (uint8_t *)rn_test_slurp(seg, &len);
    size_t off[7], at = 0;
    for (int i = 0; i < 6; i++) {
        off[i] = at;
        at += 16 + (size_t)(b[at] | b[at + 1] << 8 | b[at + 2] << 16 | (uint32_t)b[at + 3] << 24);
    }
    off[6] = at;
    free(b);
    expect_ok(f, RUN(f, NULL, "store", "check"));
    assert_non_null(strstr(f->stdout_text, "ok: 6 intact entries"));

    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, (off_t)(off[3] - 5)), 1);    /* batch 2's last byte */
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)(off[3] - 5)), 1);
    close(fd);
    expect_fail(f, RUN(f, NULL, "store", "check"), 1, "damage found");
    assert_non_null(strstr(f->stdout_text, "DAMAGED: 5 intact entries"));

    assert_int_equal(truncate(seg, (off_t)off[4] + 10), 0);         /* batches 4, 5 gone */
    expect_fail(f, RUN(f, NULL, "consume", "t"), 1, "store repair --accept-loss");
    assert_non_null(strstr(f->stderr_text, "queue 0 offsets [12, 18)"));
    expect_ok(f, RUN(f, NULL, "store", "repair", "--accept-loss"));
    assert_non_null(strstr(f->stdout_text, "queue 0 offsets [6, 9) damaged"));
    assert_non_null(strstr(f->stdout_text, "queue 0 offsets [12, 18) lost"));

    expect_fail(f, RUN(f, NULL, "consume", "t"), 1, "topic 't' queue 0 offsets [6, 9) are damaged");
    assert_string_equal(f->stdout_text, "a\nb\nc\na\nb\nc\n");
    expect_fail(f, RUN(f, NULL, "consume", "t", "--skip-damaged"), 0,
                "skipped 9 damaged or lost offsets in 2 ranges");
    assert_string_equal(f->stdout_text, "a\nb\nc\na\nb\nc\na\nb\nc\n");
    /* A pipeline: the same stop, or the same skip, counted. */
    expect_ok(f, RUN(f, NULL, "pipeline", "create",
                     "CREATE PIPELINE p AS INSERT INTO 'stdout' SELECT * FROM t"));
    expect_fail(f, RUN(f, NULL, "pipeline", "run", "p", "--until-caught-up"), 1,
                "topic 't' queue 0 offsets [6, 9) are damaged");
    expect_fail(f, RUN(f, NULL, "pipeline", "run", "p", "--until-caught-up", "--skip-damaged"), 0,
                "pipelines skipped 9 damaged or lost source offsets");
    assert_non_null(strstr(f->stdout_text, "\"offset\":9,"));
    assert_null(strstr(f->stdout_text, "\"offset\":6,"));
    /* streamsql: the same stop, or the same skip, counted. */
    const char *sq[] = {RN_BIN_DIR "/streamsql", "--data", f->data, "--format", "csv", "-e",
                        "SELECT count(*) AS n FROM t", NULL, NULL};
    int st = rn_test_run(sq[0], sq, NULL, f->out, f->err);
    char *o = rn_test_slurp(f->out, NULL), *e = rn_test_slurp(f->err, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    if (!strstr(e, "topic 't' queue 0 offsets [6, 9) are damaged")) fail_msg("streamsql: %s", e);
    free(o);
    free(e);
    sq[7] = "--skip-damaged";
    st = rn_test_run(sq[0], sq, NULL, f->out, f->err);
    o = rn_test_slurp(f->out, NULL);
    e = rn_test_slurp(f->err, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(o, "n\n9\n");
    if (!strstr(e, "9 damaged or lost offsets skipped")) fail_msg("streamsql: %s", e);
    free(o);
    free(e);
    expect_ok(f, RUN(f, "d\n", "produce", "t"));
    expect_ok(f, RUN(f, NULL, "consume", "t", "--from", "18"));
    assert_string_equal(f->stdout_text, "d\n");
    expect_fail(f, RUN(f, NULL, "consume", "t", "--from", "9", "--skip-damaged"), 0,
                "skipped 6 damaged or lost offsets in 1 ranges");
    assert_string_equal(f->stdout_text, "a\nb\nc\nd\n");
}
#endif

int main(void)
{
    unsetenv("RUNNEL_DATA");
    unsetenv("RUNNEL_SERVER");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_topic_create_list_describe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_produce_consume_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_json_by_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_by_timestamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_latest_then_more, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_hashing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_spreads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lz4_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lossless, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_closed_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_topic_queue_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_flags, setup, teardown),
#ifndef RN_TEST_CLI_SERVER
        cmocka_unit_test_setup_teardown(test_bad_data_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_locked_by_running_produce, setup, teardown),
#else
        cmocka_unit_test_setup_teardown(test_data_dir_held_by_runneld, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_server, setup, teardown),
#endif
        cmocka_unit_test_setup_teardown(test_produce_bad_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_produce_timestamp_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remap_describe_stores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
#if !SERVER_MODE
        cmocka_unit_test_setup_teardown(test_store_check_and_repair, setup, teardown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

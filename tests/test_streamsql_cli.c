/*
 * test_streamsql_cli.c — the real `streamsql` binary (RN_BIN_DIR/streamsql)
 * end to end, on a data directory filled by the real `runnel`: CREATE
 * STREAM and queries from -e, -f and a piped REPL, in table, csv and json
 * formats (window bounds as integer ms in csv/json, as UTC times in table),
 * --from positions, an empty topic (no rows, exit 0), the stderr summary of
 * rejected records (mistyped, and not JSON on a bare topic with json_extract), --follow stopped by Ctrl-C (SIGINT), and bad input:
 * SQL errors quoting the statement with a caret under the offending token
 * (exit 1), bad command lines, --data with --server (exit 2); remote mode is
 * tests/test_streamsql_remote.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/util/util.h"

#define STREAMSQL RN_BIN_DIR "/streamsql"
#define RUNNEL    RN_BIN_DIR "/runnel"
#define MAX_ARGS  24

typedef struct fixture {
    char  root[64];
    char  data[PATH_MAX];
    char  in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
    char *out_text, *err_text;
} fixture_t;

/* Text files; tests/util does the work. */
static char *slurp(const char *path) { return rn_test_slurp(path, NULL); }

static void write_file(const char *path, const char *data)
{
    rn_test_write_file(path, data, strlen(data));
}

/* Start prog with args (NULL-terminated) and input on stdin (NULL:
 * /dev/null); returns the pid. */
static pid_t start(fixture_t *f, const char *prog, const char *input, int with_data,
                   const char *const *args)
{
    const char *argv[MAX_ARGS + 4];
    int n = 0;
    argv[n++] = prog;
    if (with_data) { argv[n++] = "--data"; argv[n++] = f->data; }
    for (int i = 0; args[i]; i++) {
        assert_true(n < MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    if (input) write_file(f->in, input);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(input ? f->in : "/dev/null", O_RDONLY);
        int out = open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(f->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0); dup2(out, 1); dup2(err, 2);
        unsetenv("RUNNEL_DATA");
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int finish(fixture_t *f, pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(f->out_text);
    free(f->err_text);
    f->out_text = slurp(f->out);
    f->err_text = slurp(f->err);
    if (WIFSIGNALED(status)) fail_msg("died of signal %d; stderr: %s", WTERMSIG(status), f->err_text);
    return WEXITSTATUS(status);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define SQL(f, input, ...) finish((f), start((f), STREAMSQL, (input), 1, ARGS(__VA_ARGS__)))
#define SQL_NODATA(f, ...) finish((f), start((f), STREAMSQL, NULL, 0, ARGS(__VA_ARGS__)))
#define RUNNEL_RUN(f, input, ...) finish((f), start((f), RUNNEL, (input), 1, ARGS(__VA_ARGS__)))

static void ok(fixture_t *f, int rc)
{
    if (rc != 0) fail_msg("exit %d; stderr: %s", rc, f->err_text);
}

static void bad(fixture_t *f, int rc, int want, const char *what)
{
    if (rc != want) fail_msg("exit %d, want %d; stderr: %s", rc, want, f->err_text);
    if (strncmp(f->err_text, "streamsql: ", 11) != 0)
        fail_msg("stderr does not start with 'streamsql: ': %s", f->err_text);
    if (!strstr(f->err_text, what)) fail_msg("stderr lacks '%s': %s", what, f->err_text);
}

static const char records[] =
    "{\"at\":1000,\"level\":\"INFO\",\"svc\":\"api\",\"lat\":10}\n"
    "{\"at\":2000,\"level\":\"WARN\",\"svc\":\"api\",\"lat\":30}\n"
    "{\"at\":3000,\"level\":\"INFO\",\"svc\":\"db,x\",\"lat\":5}\n"
    "{\"at\":12000,\"level\":\"INFO\",\"svc\":\"api\",\"lat\":\"slow\"}\n"
    "{\"at\":13000,\"level\":\"ERROR\",\"svc\":\"api\",\"lat\":7}\n";

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->root, sizeof f->root, "/tmp/rn-sqlcli-XXXXXX");
    if (!mkdtemp(f->root)) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->in, sizeof f->in, "%s/stdin", f->root);
    snprintf(f->out, sizeof f->out, "%s/stdout", f->root);
    snprintf(f->err, sizeof f->err, "%s/stderr", f->root);
    *state = f;
    ok(f, RUNNEL_RUN(f, NULL, "topic", "create", "logs", "--queues", "1"));
    ok(f, RUNNEL_RUN(f, NULL, "topic", "create", "empty", "--queues", "2"));
    ok(f, RUNNEL_RUN(f, records, "produce", "logs", "--queue", "0"));
    ok(f, SQL(f, NULL, "-e", "CREATE STREAM l (at INTEGER, level TEXT, svc TEXT, lat INTEGER) "
                             "WITH (topic = 'logs', timestamp = 'at')"));
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    int rc = system(cmd);
    free(f->out_text);
    free(f->err_text);
    free(f);
    return rc == 0 ? 0 : -1;
}

#define WINDOW_SQL "SELECT window_start, window_end, svc, count(*) AS n, avg(lat) AS a FROM l " \
                   "GROUP BY TUMBLE(ts, '10s'), svc"

/* A bare topic queried with json_extract: the lines that are not JSON are
 * rejected and summarised; the other rows come out and the exit is 0. */
static void test_bare_topic_bad_json(void **state)
{
    fixture_t *f = *state;
    ok(f, RUNNEL_RUN(f, NULL, "topic", "create", "rawj", "--queues", "1"));
    ok(f, RUNNEL_RUN(f, "{\"n\":1}\nnot json\n{\"n\":5}\n{\"n\":7\n{\"n\":9}\n", "produce", "rawj",
                     "--queue", "0"));
    ok(f, SQL(f, NULL, "--format", "csv", "-e",
              "SELECT json_extract(value, '$.n') AS n FROM rawj WHERE json_extract(value, '$.n') > 1"));
    assert_string_equal(f->out_text, "n\n5\n9\n");
    assert_non_null(strstr(f->err_text, "5 records read, 2 rejected (first: topic 'rawj' queue 0 "
                                        "offset 1: malformed JSON)"));
}

static void test_formats(void **state)
{
    fixture_t *f = *state;
    ok(f, SQL(f, NULL, "--format", "csv", "-e", WINDOW_SQL));
    assert_string_equal(f->out_text, "window_start,window_end,svc,n,a\n"
                                     "0,10000,api,2,20.0\n0,10000,\"db,x\",1,5.0\n"
                                     "10000,20000,api,1,7.0\n");
    /* the record with lat "slow" is rejected, counted and summarised */
    assert_non_null(strstr(f->err_text, "5 records read, 1 rejected (first: topic 'logs' queue 0 "
                                        "offset 3: field 'lat' is INTEGER but holds \"slow\")"));
    ok(f, SQL(f, NULL, "--format", "json", "-e", WINDOW_SQL " HAVING n > 1"));
    assert_string_equal(f->out_text, "{\"window_start\":0,\"window_end\":10000,\"svc\":\"api\","
                                     "\"n\":2,\"a\":20.0}\n");
    ok(f, SQL(f, NULL, "-e", WINDOW_SQL));
    assert_non_null(strstr(f->out_text, "window_start              window_end"));
    assert_non_null(strstr(f->out_text, "1970-01-01T00:00:10.000Z  1970-01-01T00:00:20.000Z  api"));
    ok(f, SQL(f, NULL, "--format", "json", "-e",
              "SELECT svc, key, json_extract(value, '$.lat') AS v FROM l WHERE level = 'WARN'"));
    assert_string_equal(f->out_text, "{\"svc\":\"api\",\"key\":null,\"v\":30}\n");
}

/* json is lossless: a value that is not UTF-8 (0xFF) prints as base64 under
 * NAME_b64, so it never looks like the character U+00FF. */
static void test_json_lossless(void **state)
{
    fixture_t *f = *state;
    ok(f, RUNNEL_RUN(f, NULL, "topic", "create", "bin", "--queues", "1"));
    ok(f, RUNNEL_RUN(f, "a\xff" "b\n\xc3\xbf\n", "produce", "bin", "--queue", "0"));
    ok(f, SQL(f, NULL, "--format", "json", "-e",
              "CREATE STREAM b WITH (topic = 'bin', format = 'text'); "
              "SELECT value, CAST(value AS BLOB) AS raw, length(value) AS n FROM b"));
    assert_string_equal(f->out_text,
                        "{\"value_b64\":\"Yf9i\",\"raw_b64\":\"Yf9i\",\"n\":3}\n"
                        "{\"value\":\"\xc3\xbf\",\"raw\":\"\xc3\xbf\",\"n\":1}\n");
}

static void test_scripts_and_repl(void **state)
{
    fixture_t *f = *state;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/q.sql", f->root);
    write_file(path, "-- two statements\nSELECT svc FROM l WHERE lat > 6 AND level = 'INFO';\n"
                     "SELECT count(*) AS n FROM l;\n");
    ok(f, SQL(f, NULL, "--format", "csv", "-f", path));
    assert_string_equal(f->out_text, "svc\napi\nn\n4\n");
    ok(f, SQL(f, "SHOW STREAMS;\nSELECT svc\n  FROM l\n  LIMIT 1;\nquit\n", "--format", "csv"));
    assert_string_equal(f->out_text, "name,topic,format,timestamp,fields\n"
                                     "l,logs,json,at,\"\"\"at\"\" INTEGER, \"\"level\"\" TEXT, "
                                     "\"\"svc\"\" TEXT, \"\"lat\"\" INTEGER\"\nsvc\napi\n");
    /* a failing statement in a piped REPL is reported; the next one runs */
    assert_int_equal(SQL(f, "SELECT nope FROM l;\nSELECT 1 AS one FROM l LIMIT 1;\n",
                         "--format", "csv"), 1);
    assert_string_equal(f->out_text, "one\n1\n");
    assert_non_null(strstr(f->err_text, "unknown column 'nope'"));
}

static void test_positions_and_empty(void **state)
{
    fixture_t *f = *state;
    /* csv has its header line even when no row comes */
    ok(f, SQL(f, NULL, "--format", "csv", "-e", "SELECT * FROM empty"));
    assert_string_equal(f->out_text, "queue,offset,ts,key,value\n");
    assert_string_equal(f->err_text, "");
    ok(f, SQL(f, NULL, "-e", "SELECT count(*) FROM empty GROUP BY TUMBLE(ts, '1s')"));
    assert_string_equal(f->out_text, "");
    ok(f, SQL(f, NULL, "--from", "latest", "--format", "csv", "-e", "SELECT svc FROM l"));
    assert_string_equal(f->out_text, "svc\n");
    ok(f, SQL(f, NULL, "--from", "@0", "--format", "csv", "-e", "SELECT count(*) AS n FROM logs"));
    assert_string_equal(f->out_text, "n\n5\n");
    /* a global aggregate over no rows has its one row, as in sqlite */
    ok(f, SQL(f, NULL, "--from", "@99999999999999", "--format", "csv", "-e",
              "SELECT count(*) AS n FROM logs"));
    assert_string_equal(f->out_text, "n\n0\n");
    ok(f, SQL(f, NULL, "--format", "csv", "-e", "SELECT count(*) AS n FROM logs WHERE false"));
    assert_string_equal(f->out_text, "n\n0\n");
    bad(f, SQL(f, NULL, "--from", "checkpoint:nope", "-e", "SELECT 1 FROM logs"), 1, "nope");
}

static void test_errors(void **state)
{
    fixture_t *f = *state;
    bad(f, SQL(f, NULL, "-e", "SELECT lvl FROM l"), 1, "unknown column 'lvl' in stream 'l'");
    assert_non_null(strstr(f->err_text, "\n  SELECT lvl FROM l\n         ^\n"));
    bad(f, SQL(f, NULL, "-e", "SELECT svc FROM l\nGROUP BY TUMBLE(level, '1s')"), 1,
        "'level' is not a time column");
    assert_non_null(strstr(f->err_text, "\n  GROUP BY TUMBLE(level, '1s')\n                  ^\n"));
    bad(f, SQL(f, NULL, "-e", "SELECT count(*) FROM l GROUP BY TUMBLE(ts, 'soon')"), 1,
        "bad interval 'soon'");
    bad(f, SQL(f, NULL, "-e", "SELECT svc FROM nowhere"), 1, "unknown stream or topic 'nowhere'");
    bad(f, SQL(f, NULL, "-e", "SELECT svc FROM l WHERE"), 1, "empty clause");
    /* a failing statement stops a script: the third never runs */
    bad(f, SQL(f, NULL, "--format", "csv", "-e", "SELECT 1 AS a FROM l LIMIT 1; SELEKT; "
                                                 "SELECT 2 AS b FROM l LIMIT 1"), 1,
        "unknown statement 'SELEKT'");
    assert_string_equal(f->out_text, "a\n1\n");
    /* command lines */
    bad(f, SQL(f, NULL, "--server", "127.0.0.1:7070", "-e", "SELECT 1 FROM l"), 2,
        "give one of --data DIR and --server HOST:PORT");
    bad(f, SQL_NODATA(f, "-e", "SELECT 1 FROM l"), 2, "no data directory");
    bad(f, SQL(f, NULL, "--format", "xml", "-e", "SELECT 1 FROM l"), 2, "--format: 'xml'");
    bad(f, SQL(f, NULL, "--from", "yesterday", "-e", "SELECT 1 FROM l"), 2, "--from");
    bad(f, SQL(f, NULL, "--frobnicate"), 2, "unknown option '--frobnicate'");
    bad(f, SQL(f, NULL, "-e", "SELECT 1 FROM l", "-f", "x.sql"), 2, "one of -e SQL or -f FILE");
    bad(f, SQL(f, NULL, "-f", "/nonexistent/q.sql"), 1, "cannot read /nonexistent/q.sql");
}

/* --follow keeps reading until Ctrl-C; rows produced meanwhile show up. */
static void test_follow_interrupt(void **state)
{
    fixture_t *f = *state;
    pid_t pid = start(f, STREAMSQL, NULL, 1, ARGS("--follow", "--format", "csv", "-e",
                                                  "SELECT svc, lat FROM l WHERE lat > 8"));
    struct timespec ts = {0, 400 * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGINT);
    int rc = finish(f, pid);
    assert_int_equal(rc, 130);
    assert_string_equal(f->out_text, "svc,lat\napi,10\napi,30\n");
}

/* A statement that never returns inside one step (a recursive CTE with no
 * end): SIGTERM and SIGINT still stop it (sqlite3_interrupt), exit 130. */
static void test_signal_stops_endless_statement(void **state)
{
    fixture_t *f = *state;
    static const int sigs[] = {SIGTERM, SIGINT};
    for (size_t k = 0; k < 2; k++) {
        pid_t pid = start(f, STREAMSQL, NULL, 1, ARGS("--format", "csv", "-e",
            "SELECT svc FROM l WHERE (WITH RECURSIVE r(lat) AS (SELECT 1 UNION ALL "
            "SELECT lat + 1 FROM r) SELECT count(*) FROM r) > 0"));
        rn_test_sleep_ms(300);
        kill(pid, sigs[k]);
        int status, waited = 0;
        pid_t got;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && waited < 5000) {
            rn_test_sleep_ms(20);
            waited += 20;
        }
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("signal %d did not stop the statement in 5 s", sigs[k]);
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 130);
    }
}

/* A signal at any moment of the start (before the handler: killed by it;
 * after: exit 130), never exit 0 as if the statement had run. */
static void test_signal_early(void **state)
{
    fixture_t *f = *state;
    for (int delay = 0; delay <= 60; delay += 5) {
        pid_t pid = start(f, STREAMSQL, NULL, 1, ARGS("--format", "csv", "-e",
            "SELECT svc FROM l WHERE (WITH RECURSIVE r(lat) AS (SELECT 1 UNION ALL "
            "SELECT lat + 1 FROM r) SELECT count(*) FROM r) > 0"));
        if (delay) rn_test_sleep_ms(delay);
        kill(pid, SIGTERM);
        int status, waited = 0;
        pid_t got;
        while ((got = waitpid(pid, &status, WNOHANG)) == 0 && waited < 5000) {
            rn_test_sleep_ms(20);
            waited += 20;
        }
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("SIGTERM %d ms after the start did not stop the statement in 5 s", delay);
        }
        if (WIFSIGNALED(status)) assert_int_equal(WTERMSIG(status), SIGTERM);
        else if (WEXITSTATUS(status) != 130)
            fail_msg("SIGTERM %d ms after the start: exit %d, want 130", delay,
                     WEXITSTATUS(status));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_lossless, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_topic_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scripts_and_repl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_positions_and_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_stops_endless_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signal_early, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_streamsql_udf.c — native functions from the operator's directory
 * (--udf-dir, streamsql/fn_udf.c invariant 5), with the example library the
 * Makefile builds from tests/udf/rn_example.c into RN_BIN_DIR/udf-example/:
 *  - its functions give, in embedded queries, what C computes here for the
 *    same records (reverse the bytes; round(x * 100));
 *  - a missing directory, one without a *.so, and a library without an entry
 *    point (RN_BIN_DIR/udf-noentry/) are refused at start with one line;
 *  - no statement can load a library: load_extension() is refused, also
 *    with --udf-dir given, and without --udf-dir the functions do not exist;
 *  - `streamsql --udf-dir` and `runneld --udf-dir` (a real broker on
 *    loopback, queried by `streamsql --server`) run them, also inside a
 *    Window TopN (the same rows both ways); both refuse a bad directory with
 *    exit status 2 and a one-line error.
 */
#include "tests/test_streamsql_util.h"
#include "tests/util/util.h"
#include "streamsql/sql_int.h"

#include <math.h>
#include <sys/wait.h>

#define EXAMPLE_DIR RN_BIN_DIR "/udf-example"
#define NOENTRY_DIR RN_BIN_DIR "/udf-noentry"

static const char *const words[] = {"abc", "runnel", "", "x", "héllo", "stream sql"};
static const double prices[] = {12.345, 0.004, 99.995, -3.2, 1e6, 7};

static void fill(sqlfix_t *f)
{
    topic(f, "u", 1);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"s\":\"%s\",\"p\":%.17g}", words[i], prices[i]);
        produce1(f, "u", 1700000000000 + (int64_t)i, json);
    }
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, "CREATE STREAM us (s TEXT, p REAL) WITH (topic = 'u')", NULL, &out, &off,
                err, NULL) != 0)
        fail_msg("%s", err);
    free(out);
}

/* What the example library computes, in C here. */
static char *expected(void)
{
    rn_buf_t b = RN_BUF_INIT;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        char line[128];
        size_t n = strlen(words[i]);
        char rev[64];
        for (size_t k = 0; k < n; k++) rev[k] = words[i][n - 1 - k];
        rev[n] = '\0';
        snprintf(line, sizeof line, "%s|%lld\n", rev, (long long)llround(prices[i] * 100.0));
        rn_buf_append(&b, line, strlen(line), 0);
    }
    rn_buf_append(&b, "", 1, 0);
    return (char *)b.data;
}

static void test_udf_embedded(void **state)
{
    sqlfix_t *f = *state;
    fill(f);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    /* without --udf-dir the functions do not exist */
    out = NULL;
    assert_int_not_equal(run_sql(f, "SELECT cents(p) FROM us", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_non_null(strstr(err, "no such function: cents()"));
    if (rn_sql_udf_dir(EXAMPLE_DIR, err) != 0) fail_msg("%s", err);
    if (run_sql(f, "SELECT reverse_text(s), cents(p) FROM us", NULL, &out, &off, err, NULL) != 0)
        fail_msg("%s", err);
    char *want = expected();
    assert_string_equal(out, want);
    free(want);
    free(out);
    /* inside a stored SQL function and an aggregate's argument too */
    if (run_sql(f, "CREATE FUNCTION rc(x REAL) RETURNS INTEGER AS 'cents(x) + 1'", NULL, &out,
                &off, err, NULL) != 0)
        fail_msg("%s", err);
    free(out);
    if (run_sql(f, "SELECT sum(rc(p)) FROM us", NULL, &out, &off, err, NULL) != 0)
        fail_msg("%s", err);
    long long sum = 0;
    for (size_t i = 0; i < sizeof prices / sizeof prices[0]; i++)
        sum += llround(prices[i] * 100.0) + 1;
    char line[32];
    snprintf(line, sizeof line, "%lld\n", sum);
    assert_string_equal(out, line);
    free(out);
    /* a native function's name is taken: CREATE FUNCTION cannot reuse it */
    out = NULL;
    assert_int_not_equal(run_sql(f, "CREATE FUNCTION cents(x REAL) RETURNS INTEGER AS 'x'", NULL,
                                 &out, &off, err, NULL), 0);
    free(out);
    assert_non_null(strstr(err, "already exists"));
    /* no statement loads a library, with or without --udf-dir */
    for (int k = 0; k < 2; k++) {
        out = NULL;
        int rc = run_sql(f, "SELECT load_extension('" EXAMPLE_DIR "/librn_example.so') FROM us",
                         NULL, &out, &off, err, NULL);
        free(out);
        assert_int_not_equal(rc, 0);
        assert_non_null(strstr(err, "load_extension() is not available to statements"));
        assert_int_equal(off, 7);
        rn_sql_udf_dir_clear();
    }
}

static void test_udf_refusals(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    assert_int_not_equal(rn_sql_udf_dir("/nonexistent-udf-dir", err), 0);
    assert_string_equal(err, "--udf-dir /nonexistent-udf-dir: No such file or directory (a "
                             "directory of native function libraries, *.so)");
    char *empty = rn_test_tmpdir_new("udf-empty");
    assert_non_null(empty);
    assert_int_not_equal(rn_sql_udf_dir(empty, err), 0);
    assert_non_null(strstr(err, "no native function library (*.so) in it"));
    rn_test_tmpdir_free(empty);
    assert_int_not_equal(rn_sql_udf_dir(NOENTRY_DIR, err), 0);
    assert_non_null(strstr(err, "librn_noentry.so"));
    assert_non_null(strstr(err, "sqlite3_rnnoentry_init"));
    assert_null(strchr(err, '\n'));
    /* a refused directory leaves none loaded */
    assert_int_equal(rn_udf_load_native(NULL, err), 0);
}

/* Run prog args; its exit status, stdout and stderr (caller frees). */
static int run_prog(const char *const *argv, char **out, char **errtext)
{
    char dir[PATH_MAX], o[PATH_MAX + 8], e[PATH_MAX + 8];
    assert_int_equal(rn_test_tmpdir(dir, sizeof dir, "udf-run"), 0);
    snprintf(o, sizeof o, "%s/out", dir);
    snprintf(e, sizeof e, "%s/err", dir);
    int st = rn_test_run(argv[0], argv, NULL, o, e);
    *out = rn_test_slurp(o, NULL);
    *errtext = rn_test_slurp(e, NULL);
    rn_test_rmtree(dir);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_udf_programs(void **state)
{
    sqlfix_t *f = *state;
    fill(f);
    char data[128], *out, *err;
    snprintf(data, sizeof data, "%s/data", f->root);
    const char *q = "SELECT reverse_text(s), cents(p) FROM us";
    char *want = expected();
    /* streamsql --udf-dir on a data directory (closed here first: one holder) */
    assert_int_equal(rn_datadir_close(f->d), 0);
    f->d = NULL;
    const char *a1[] = {RN_BIN_DIR "/streamsql", "--data", data, "--udf-dir", EXAMPLE_DIR,
                        "--format", "csv", "-e", q, NULL};
    assert_int_equal(run_prog(a1, &out, &err), 0);
    assert_non_null(strstr(out, "1235"));
    assert_non_null(strstr(out, "lennur,"));
    free(out);
    free(err);
    /* a Window TopN with a native function, embedded: compared with the broker's below */
    const char *tq = "SELECT s, c, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
                     "window_start, window_end ORDER BY c DESC) AS rn FROM (SELECT window_start, "
                     "window_end, s, max(cents(p)) AS c FROM us GROUP BY TUMBLE(ts, '1h'), s)) "
                     "WHERE rn <= 3";
    const char *t1[] = {RN_BIN_DIR "/streamsql", "--data", data, "--udf-dir", EXAMPLE_DIR,
                        "--format", "csv", "-e", tq, NULL};
    char *topn_local;
    assert_int_equal(run_prog(t1, &topn_local, &err), 0);
    free(err);
    /* the largest cents(p) first: héllo's 1e6 -> 100000000 */
    assert_non_null(strstr(topn_local, "s,c,rn\nhéllo,100000000,1\n"));
    assert_non_null(strstr(topn_local, ",3\n"));
    assert_null(strstr(topn_local, ",4\n"));
    const char *a2[] = {RN_BIN_DIR "/streamsql", "--data", data, "--udf-dir", NOENTRY_DIR,
                        "-e", q, NULL};
    assert_int_equal(run_prog(a2, &out, &err), 2);
    assert_non_null(strstr(err, "streamsql: --udf-dir: "));
    assert_int_equal(strchr(err, '\n') - err, (long)strlen(err) - 1);    /* one line */
    free(out);
    free(err);
    /* runneld --udf-dir: a remote query runs the functions; a bad dir stops the start */
    rn_test_runneld_t r;
    int exited = -1;
    const char *bad[] = {"--udf-dir", NOENTRY_DIR, NULL};
    assert_int_equal(rn_test_runneld_start_args(&r, data, bad, &exited), 1);
    assert_int_equal(exited, 2);
    char *log = rn_test_slurp(r.log, NULL);
    assert_non_null(strstr(log, "runneld: --udf-dir: "));
    free(log);
    const char *good[] = {"--udf-dir", EXAMPLE_DIR, NULL};
    assert_int_equal(rn_test_runneld_start_args(&r, data, good, &exited), 0);
    const char *a3[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "--format", "csv", "-e", q,
                        NULL};
    int st = run_prog(a3, &out, &err);
    if (st != 0) fail_msg("streamsql --server: %s", err);
    /* csv: a header, then the rows as the embedded run gives them */
    rn_buf_t rows = RN_BUF_INIT;
    for (const char *p = want; *p; p++) rn_buf_append(&rows, *p == '|' ? "," : p, 1, 0);
    rn_buf_append(&rows, "", 1, 0);
    const char *body = strchr(out, '\n');
    assert_non_null(body);
    assert_string_equal(body + 1, (const char *)rows.data);
    rn_buf_free(&rows);
    free(out);
    free(err);
    const char *t2[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "--format", "csv", "-e", tq,
                        NULL};
    assert_int_equal(run_prog(t2, &out, &err), 0);
    assert_string_equal(out, topn_local);               /* the Query RPC: the same rows */
    free(out);
    free(err);
    free(topn_local);
    /* --udf-dir with --server: the broker loads functions, not the client */
    const char *a4[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "--udf-dir", EXAMPLE_DIR,
                        "-e", q, NULL};
    assert_int_equal(run_prog(a4, &out, &err), 2);
    assert_non_null(strstr(err, "start runneld with --udf-dir DIR"));
    free(out);
    free(err);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
    free(want);
    /* reopen for the teardown */
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.holder = "test_streamsql_udf";
    char e2[RN_ERRMSG_SIZE];
    if (rn_datadir_open(data, &o, &f->d, e2) != 0) fail_msg("%s", e2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_udf_embedded, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test(test_udf_refusals),
        cmocka_unit_test_setup_teardown(test_udf_programs, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_streamsql.c — the streamsql engine on a small fixed log: query ->
 * expected rows tables (projection, filters, every window kind, every
 * aggregate, HAVING over aggregate expressions, EMIT CHANGES, LIMIT), the
 * stream statements (CREATE/SHOW/DESCRIBE/DROP STREAM), EXPLAIN, typing
 * errors counted and never grouped, records of a bare topic that are not
 * JSON rejected by json_extract while the query goes on, the meta.db upgrade that adds streams,
 * and a must-fail list where each bad
 * statement gives its expected message (and the offset of the offending
 * token where one is known).
 */
#include "tests/test_streamsql_util.h"

#include "common/sys.h"
#include "logical-queues/meta.h"

#include <errno.h>
#include <sqlite3.h>

static const char *const log_lines[] = {
    "{\"level\":\"INFO\",\"svc\":\"api\",\"lat\":10,\"at\":1000}",
    "{\"level\":\"DEBUG\",\"svc\":\"api\",\"lat\":20,\"at\":2000}",
    "{\"svc\":\"db\",\"level\":\"INFO\",\"lat\":30,\"at\":3000,\"extra\":{\"a\":[1,2,\"}\"]}}",
    "{\"level\":\"WARN\",\"svc\":\"api\",\"lat\":40,\"at\":11000}",
    "{\"level\":\"INFO\",\"svc\":\"db\",\"lat\":null,\"at\":12000}",
    "{\"level\":\"INFO\",\"svc\":\"a\\u0070i\",\"lat\":60,\"at\":25000}",
};

static int setup(void **state)
{
    if (sqlfix_setup(state) != 0) return -1;
    sqlfix_t *f = *state;
    topic(f, "logs", 1);
    topic(f, "empty", 3);
    for (size_t i = 0; i < sizeof log_lines / sizeof log_lines[0]; i++)
        produce1(f, "logs", 100 + (int64_t)i, log_lines[i]);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    int rc = run_sql(f, "CREATE STREAM logs_s (level TEXT, svc TEXT, lat INTEGER, at INTEGER) "
                        "WITH (topic = 'logs', format = 'json', timestamp = 'at')",
                     NULL, &out, &off, err, NULL);
    free(out);
    if (rc != 0) { fprintf(stderr, "create: %s\n", err); return -1; }
    return 0;
}

typedef struct expect {
    const char *sql;
    const char *rows;
} expect_t;

static const expect_t expected[] = {
    {"SELECT svc, lat FROM logs_s WHERE level <> 'DEBUG'",
     "api|10\ndb|30\napi|40\ndb|NULL\napi|60\n"},
    {"SELECT offset, json_extract(value, '$.svc'), ts FROM logs WHERE offset < 2",
     "0|api|100\n1|api|101\n"},
    {"SELECT upper(svc) || '-' || level AS x FROM logs_s LIMIT 2", "API-INFO\nAPI-DEBUG\n"},
    {"SELECT ts, queue FROM logs_s LIMIT 1", "1000|0\n"},
    {"select SVC from logs_s where LAT between 25 and 45 -- a comment; with ;\n", "db\napi\n"},
    {"SELECT window_start, window_end, svc, count(*), sum(lat), avg(lat) FROM logs_s "
     "GROUP BY TUMBLE(ts, '10s'), svc",
     "0|10000|api|2|30|15\n0|10000|db|1|30|30\n10000|20000|api|1|40|40\n"
     "10000|20000|db|1|NULL|NULL\n20000|30000|api|1|60|60\n"},
    {"SELECT svc, sum(lat) / count(*) AS r FROM logs_s GROUP BY TUMBLE(at, '10s'), svc "
     "HAVING count(*) > 1", "api|15\n"},
    {"SELECT svc, count(*) AS n FROM logs_s GROUP BY TUMBLE(ts, 10000), svc HAVING n >= 2",
     "api|2\n"},
    {"SELECT svc, count(DISTINCT level), min(level), max(lat), first(level), last(level), "
     "count(lat), total(lat) FROM logs_s GROUP BY svc",
     "api|3|DEBUG|60|INFO|INFO|4|130\ndb|1|INFO|30|INFO|INFO|1|30\n"},
    {"SELECT count(*), max(lat) - min(lat) FROM logs_s", "6|50\n"},
    {"SELECT window_start, count(*) FROM logs_s GROUP BY HOP(ts, '20s', '10s')",
     "-10000|3\n0|5\n10000|3\n20000|1\n"},
    {"SELECT window_start, window_end, svc, count(*) FROM logs_s "
     "GROUP BY SESSION(ts, '5s'), svc",
     "1000|7000|api|2\n3000|8000|db|1\n11000|16000|api|1\n12000|17000|db|1\n"
     "25000|30000|api|1\n"},
    {"SELECT svc, count(*) FROM logs_s GROUP BY TUMBLE(ts, '10s'), svc EMIT CHANGES",
     "api|1\napi|2\ndb|1\napi|1\ndb|1\napi|1\n"},
    {"SELECT upper(svc) AS s, count(*) FROM logs_s GROUP BY TUMBLE(ts, '1m'), upper(svc)",
     "API|4\nDB|2\n"},
    {"SELECT level, count(*) FROM logs_s WHERE lat IS NOT NULL GROUP BY TUMBLE(ts, '1 minute'), "
     "level LIMIT 2", "INFO|3\nDEBUG|1\n"},
    {"SELECT * FROM empty", ""},
    {"SELECT count(*) FROM empty GROUP BY TUMBLE(ts, '1s')", ""},
    /* a global aggregate has its one row over no rows, as in sqlite; with
     * keys there is no group, so no row */
    {"SELECT count(*) FROM logs_s WHERE false", "0\n"},
    {"SELECT count(*) AS n, sum(offset), max(key) FROM empty", "0|NULL|NULL\n"},
    {"SELECT count(*) FROM logs_s WHERE false HAVING count(*) > 0", ""},
    {"SELECT svc, count(*) FROM logs_s WHERE false GROUP BY svc", ""},
    /* SELECT DISTINCT over the stream, not per batch: each row once, when
     * first seen, in input order (NULLs equal, as in sqlite) */
    {"SELECT DISTINCT svc FROM logs_s", "api\ndb\n"},
    {"SELECT DISTINCT upper(svc) AS s, lat IS NULL FROM logs_s", "API|0\nDB|0\nDB|1\n"},
    {"SELECT DISTINCT level, svc FROM logs_s WHERE lat > 10 LIMIT 2", "DEBUG|api\nINFO|db\n"},
    {"SELECT DISTINCT (SELECT count(*) FROM json_each(logs.value)) AS n FROM logs", "4\n5\n"},
    /* GROUP BY keys replace whole operands only: in "lat + 1 * 2" the
     * tokens "lat + 1" are no subexpression (sqlite: lat + 2) */
    {"SELECT lat + 1 * 2 AS x, (lat + 1) * 2 AS y, count(*) FROM logs_s WHERE lat <= 20 "
     "GROUP BY lat + 1, lat", "12|22|1\n22|42|1\n"},
    {"SELECT -lat + 1 AS x, count(*) FROM logs_s WHERE lat = 10 GROUP BY lat + 1, lat",
     "-9|1\n"},
    {"SELECT lat - 1 - 1 AS x, count(*) FROM logs_s WHERE lat = 10 GROUP BY 1 - 1, lat, lat - 1",
     "8|1\n"},
    {"SELECT svc || level AS x, count(*) FROM logs_s WHERE lat = 10 GROUP BY svc || level",
     "apiINFO|1\n"},
    {"SELECT upper(svc) || '!' AS x, count(*) FROM logs_s WHERE lat = 10 GROUP BY upper(svc)",
     "API!|1\n"},
    /* subqueries over the row's own JSON (table-valued functions) run per
     * record: allowed, in WHERE, a plain select list and aggregate arguments */
    {"SELECT svc, level FROM logs_s WHERE level IN (SELECT value FROM json_each('[\"WARN\",\"DEBUG\"]'))",
     "api|DEBUG\napi|WARN\n"},
    {"SELECT svc IS DISTINCT FROM 'api' AS d FROM logs_s WHERE lat = 30 OR EXISTS "
     "(SELECT 1 WHERE lat IS NOT DISTINCT FROM 60)", "1\n0\n"},
    {"SELECT offset, (SELECT count(*) FROM json_each(logs.value)) AS n FROM logs WHERE offset < 3",
     "0|4\n1|4\n2|5\n"},
    {"SELECT sum((SELECT count(*) FROM json_each(logs.value))) AS n FROM logs", "25\n"},
    /* a subquery over its own common table expression reads no stream */
    {"SELECT offset FROM logs WHERE offset < 4 AND offset IN (WITH RECURSIVE r(n) AS "
     "(SELECT 1 UNION ALL SELECT n + 2 FROM r WHERE n < 9) SELECT n FROM r)", "1\n3\n"},
};

static void test_expected_rows(void **state)
{
    sqlfix_t *f = *state;
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char *out, err[RN_ERRMSG_SIZE];
        int off;
        int rc = run_sql(f, expected[i].sql, NULL, &out, &off, err, NULL);
        if (rc != 0) fail_msg("%s\n  failed: %s", expected[i].sql, err);
        if (strcmp(out, expected[i].rows) != 0)
            fail_msg("%s\n  expected:\n%s  got:\n%s", expected[i].sql, expected[i].rows, out);
        free(out);
    }
}

typedef struct must_fail {
    const char *sql;
    const char *msg;       /* a substring of the message */
    int         off;       /* expected error offset; -2: do not check */
} must_fail_t;

static const must_fail_t must_fail[] = {
    {"SELEC svc FROM logs_s", "unknown statement 'SELEC'", 0},
    {"SELECT FROM logs_s", "nothing selected", 7},
    {"SELECT lvl FROM logs_s", "unknown column 'lvl' in stream 'logs_s' (columns: queue, offset", 7},
    {"SELECT svc FROM nope", "unknown stream or topic 'nope'; streams: logs_s; topics: empty, logs",
     16},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(level, '10s')",
     "TUMBLE needs the event time column ts (or the stream's timestamp field 'at'), or "
     "proctime() for processing time; 'level' is not a time column", 44},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(ts, '10x')", "bad interval '10x'", 48},
    {"SELECT count(*) FROM logs_s GROUP BY SESSION(ts, '0s')", "greater than zero", 49},
    {"SELECT count(*) FROM logs_s GROUP BY HOP(ts, '10s', '20s')", "HOP slide must be", 52},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(ts, '1s'), HOP(ts, '2s', '1s')",
     "at most one window", 55},
    {"SELECT svc FROM logs_s ORDER BY svc", "ORDER BY", 23},
    {"SELECT level, count(*) FROM logs_s GROUP BY TUMBLE(ts, '10s'), svc",
     "column 'level' must appear in GROUP BY or inside an aggregate", 7},
    {"SELECT * FROM logs_s GROUP BY svc", "SELECT * cannot be used with GROUP BY", 7},
    {"SELECT group_concat(svc) FROM logs_s GROUP BY svc", "group_concat() is not supported", 7},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(ts, '1s') WITH (late = 'dead-letter')",
     "dead-letter topics of pipelines", -2},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(ts, '1s') WITH (lateness = '1s')",
     "unknown query option 'lateness'", -2},
    {"SELECT svc FROM logs_s WHERE (lat > 1", "unbalanced '('", 29},
    {"SELECT svc FROM logs_s WHERE svc = 'x", "unterminated string", 35},
    {"SELECT svc FROM logs_s, logs", "joins", 16},
    {"SELECT svc FROM logs_s WHERE svc = = 1", "near \"=\": syntax error", 35},
    {"SELECT svc FROM logs_s EMIT CHANGES", "EMIT applies to aggregations", 23},
    {"SELECT count(*) FROM logs_s GROUP BY TUMBLE(ts, '1s') EMIT SOMETIMES",
     "EMIT FINAL or EMIT CHANGES", 59},
    {"SELECT sum(sum(lat)) FROM logs_s", "cannot be nested", 11},
    {"SELECT svc FROM logs_s GROUP BY 1", "column position", 32},
    {"INSERT INTO x SELECT 1", "runnel pipeline create", 0},
    {"WITH a AS (SELECT 1) SELECT * FROM a", "common table expressions", 0},
    {"CREATE STREAM bad (offset INTEGER)", "field name 'offset' is reserved", 19},
    {"CREATE STREAM bad (ts TEXT)", "a field named ts is the stream's event time", 19},
    {"CREATE STREAM bad (a INTEGER, ts INTEGER) WITH (timestamp = 'a')",
     "timestamp = 'a' would give ts two meanings", 30},
    {"CREATE STREAM bad (a INTEGER, a TEXT)", "declared twice", 30},
    {"CREATE STREAM bad (a INTEGRAL)", "field types are", 21},
    {"CREATE STREAM bad (a TEXT) WITH (timestamp = 'a')", "must be INTEGER", 45},
    {"CREATE STREAM bad (a TEXT) WITH (format = 'xml')", "unknown format 'xml'", 42},
    {"CREATE STREAM bad (a TEXT) WITH (topic = 'missing')", "unknown topic 'missing'", -2},
    {"CREATE STREAM logs_s (a TEXT) WITH (topic = 'logs')", "already exists", -2},
    {"CREATE STREAM bad (a TEXT) WITH (format = 'text', topic = 'logs')",
     "format 'text' has no fields", -2},
    {"DROP STREAM nope", "unknown stream 'nope'; streams: logs_s", -2},
    {"DESCRIBE nope", "unknown stream or topic 'nope'", 9},
    {"SELECT 1 FROM logs; SELECT 2 FROM logs", "one statement at a time", 18},
    /* constructs sqlite would evaluate over one batch instead of the stream */
    {"SELECT svc FROM logs_s WHERE lat = (SELECT max(lat) FROM logs_s)",
     "a subquery over the stream itself ('logs_s') is not supported", 57},
    {"SELECT svc FROM logs_s WHERE lat IN (WITH m AS (SELECT lat FROM logs_s) SELECT lat FROM m)",
     "a subquery over the stream itself ('logs_s') is not supported", 64},
    {"SELECT svc FROM logs_s WHERE lat IN (SELECT lat FROM logs)",
     "a subquery reads 'logs': a streamsql query reads one stream (FROM logs_s)", 53},
    {"SELECT svc FROM logs_s WHERE EXISTS (SELECT 1 FROM json_each(value) AS j, main.other)",
     "a subquery reads 'other'", 79},
    {"SELECT svc, row_number() OVER (ORDER BY lat) FROM logs_s",
     "window function row_number() OVER (...) is not supported on streams: it would restart "
     "at every batch", 12},
    {"SELECT svc, lag(lat) OVER (PARTITION BY svc) FROM logs_s",
     "window function lag() OVER (...) is not supported", 12},
    {"SELECT svc, sum(lat) OVER () FROM logs_s", "window function sum() OVER (...)", 12},
    {"SELECT row_number() FROM logs_s", "window function row_number() is not supported", 7},
    {"SELECT svc, approx_distinct(level) FROM logs_s GROUP BY svc",
     "no such function: approx_distinct() (count(DISTINCT x) counts distinct values "
     "exactly, approx_count_distinct(x) estimates them)", 12},
    {"SELECT svc, kurtosis(lat) FROM logs_s GROUP BY TUMBLE(ts, '1m'), svc",
     "no such function: kurtosis(); streamsql's aggregates are count", 12},
    {"SELECT TUMBLE_START(ts, '10s'), count(*) FROM logs_s GROUP BY TUMBLE(ts, '10s')",
     "no such function: TUMBLE_START(); with GROUP BY TUMBLE/HOP/SESSION(...) the window's "
     "bounds are the columns window_start and window_end", 7},
    {"SELECT TUMBLE(ts, '10s'), count(*) FROM logs_s",
     "TUMBLE(...) defines the window and goes in GROUP BY", 7},
    {"SELECT svc, count(*) FROM logs_s GROUP BY TUMBLE(ts, '10s'), svc HAVING count(*) > 1 "
     "EMIT CHANGES", "EMIT CHANGES with HAVING is not supported", 65},
    {"SELECT svc, (SELECT 1) FROM logs_s GROUP BY svc",
     "a subquery in the select list or HAVING of an aggregating query is not supported", 12},
    {"SELECT lat + 1 * 2, count(*) FROM logs_s GROUP BY lat + 1",
     "column 'lat' must appear in GROUP BY or inside an aggregate; the key lat + 1 stands for "
     "its value only where it is a whole operand: write (lat + 1)", 7},
    {"SELECT DISTINCT * FROM logs_s", "SELECT DISTINCT * is not supported; name the columns",
     16},
    {"SELECT DISTINCT svc FROM logs_s EMIT CHANGES", "EMIT applies to aggregations", 32},
    {"SELECT rowid, svc FROM logs_s", "rowid is not a column of a stream (it would number the "
     "rows of each batch); a record's position is (queue, offset)", 7},
    {"SELECT svc FROM logs_s WHERE logs_s.oid > 2", "oid is not a column of a stream", 36},
    {"SELECT __idx FROM logs_s", "'__idx': names starting with __ are the engine's own", 7},
    {"SELECT svc, count(*) FROM logs_s GROUP BY svc HAVING __a0 > 1",
     "'__a0': names starting with __", 53},
    {"", "empty statement", 0},
};

static void test_must_fail(void **state)
{
    sqlfix_t *f = *state;
    for (size_t i = 0; i < sizeof must_fail / sizeof must_fail[0]; i++) {
        char *out, err[RN_ERRMSG_SIZE];
        int off = -1;
        int rc = run_sql(f, must_fail[i].sql, NULL, &out, &off, err, NULL);
        free(out);
        if (rc == 0) fail_msg("%s\n  should fail with: %s", must_fail[i].sql, must_fail[i].msg);
        if (!strstr(err, must_fail[i].msg))
            fail_msg("%s\n  expected: %s\n  got: %s", must_fail[i].sql, must_fail[i].msg, err);
        if (must_fail[i].off != -2 && off != must_fail[i].off)
            fail_msg("%s\n  expected offset %d, got %d (%s)", must_fail[i].sql, must_fail[i].off,
                     off, err);
    }
}

static void test_limits(void **state)
{
    sqlfix_t *f = *state;
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    /* SQL text length */
    size_t n = RN_SQL_MAX_SQL_LEN + 100;
    char *sql = malloc(n + 1);
    assert_non_null(sql);
    memset(sql, ' ', n);
    memcpy(sql, "SELECT 1 FROM logs", 18);
    sql[n] = '\0';
    assert_int_equal(run_sql(f, sql, NULL, &out, &off, err, NULL), RN_ETOOBIG);
    assert_non_null(strstr(err, "the limit is 100000 bytes"));
    free(out);
    /* parenthesis depth (the front) */
    size_t k = 0;
    k += (size_t)sprintf(sql + k, "SELECT ");
    for (int i = 0; i < 150; i++) sql[k++] = '(';
    sql[k++] = '1';
    for (int i = 0; i < 150; i++) sql[k++] = ')';
    sprintf(sql + k, " FROM logs");
    assert_int_equal(run_sql(f, sql, NULL, &out, &off, err, NULL), RN_ETOOBIG);
    assert_non_null(strstr(err, "deeper than 100 levels"));
    assert_int_equal(off, 107);
    free(out);
    /* expression depth without parentheses (sqlite's limit, set by the engine) */
    k = (size_t)sprintf(sql, "SELECT 1");
    for (int i = 0; i < 300; i++) k += (size_t)sprintf(sql + k, " + 1");
    sprintf(sql + k, " FROM logs");
    assert_int_equal(run_sql(f, sql, NULL, &out, &off, err, NULL), RN_ETOOBIG);
    assert_non_null(strstr(err, "Expression tree is too large (maximum depth 100)"));
    free(out);
    free(sql);
}

static void test_stream_statements(void **state)
{
    sqlfix_t *f = *state;
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    assert_int_equal(run_sql(f, "CREATE STREAM c (n INTEGER, name TEXT) WITH (topic = 'logs', "
                                "format = 'csv')", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SHOW STREAMS", NULL, &out, &off, err, NULL), 0);
    assert_string_equal(out, "c|logs|csv|NULL|\"n\" INTEGER, \"name\" TEXT\n"
                             "logs_s|logs|json|at|\"level\" TEXT, \"svc\" TEXT, \"lat\" INTEGER, "
                             "\"at\" INTEGER\n");
    free(out);
    assert_int_equal(run_sql(f, "DESCRIBE logs_s", NULL, &out, &off, err, NULL), 0);
    assert_non_null(strstr(out, "ts|INTEGER|event time: field 'at' (ms)\n"));
    assert_non_null(strstr(out, "lat|INTEGER|json field of topic 'logs'\n"));
    free(out);
    assert_int_equal(run_sql(f, "DROP STREAM c", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "DROP STREAM IF EXISTS c", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SHOW STREAMS", NULL, &out, &off, err, NULL), 0);
    assert_null(strstr(out, "c|logs"));
    free(out);
}

static void test_csv_stream(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "csvt", 1);
    trec_t r[] = {{1, NULL, "1,alpha,2.5"}, {2, NULL, "2,\"be,ta\",3"}, {3, NULL, "x,gamma,1"},
                  {4, NULL, "4,,"}};
    produce(f, "csvt", 0, r, 4);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "CREATE STREAM cs (n INTEGER, name TEXT, x REAL) WITH "
                                "(topic = 'csvt', format = 'csv')", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT n, name, x FROM cs", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "1|alpha|2.5\n2|be,ta|3\n4|NULL|NULL\n");
    assert_int_equal(st.errors, 1);
    assert_non_null(strstr(st.first_error, "field 'n' is INTEGER but holds x"));
    free(out);
}

/* The JSON scanner (scan.c) on strings whose quote or escape falls at every
 * offset of an 8-byte word (it scans a word at a time), members in the
 * declared order, reversed and shuffled (it tries the next declared member
 * first), an undeclared member between them, and a repeated member (the
 * first wins): every value comes back exactly, and a string cut before its
 * closing quote is rejected, never read past. */
static void test_json_scan_strings(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "scan", 1);
    enum { N = 48 };
    static char json[N][256], want[N * 64 + 1];
    trec_t r[N + 1];
    size_t w = 0;
    for (int i = 0; i < N; i++) {
        char a[64], ea[128];                     /* a: i 'x's, then a quote and a backslash */
        int la = i % 24, k = 0;
        for (int j = 0; j < la; j++) a[j] = (char)('a' + j % 26);
        a[la] = '"';
        a[la + 1] = '\\';
        a[la + 2] = 'z';
        a[la + 3] = 0;
        for (int j = 0; a[j]; j++) {
            if (a[j] == '"' || a[j] == '\\') ea[k++] = '\\';
            ea[k++] = a[j];
        }
        ea[k] = 0;
        const char *b = (i % 3 == 0) ? "plain" : "t\\u00e9";   /* é escaped */
        switch (i % 4) {
        case 0: snprintf(json[i], sizeof json[i], "{\"a\":\"%s\",\"n\":%d,\"b\":\"%s\"}", ea, i, b); break;
        case 1: snprintf(json[i], sizeof json[i], "{\"b\":\"%s\",\"n\":%d,\"a\":\"%s\"}", b, i, ea); break;
        case 2: snprintf(json[i], sizeof json[i], "{\"n\":%d,\"x\":{\"a\":\"no\\\"\"},\"a\":\"%s\","
                         "\"b\":\"%s\"}", i, ea, b); break;
        default: snprintf(json[i], sizeof json[i], "{\"a\":\"%s\",\"b\":\"%s\",\"n\":%d,"
                          "\"a\":\"second\"}", ea, b, i); break;
        }
        r[i] = (trec_t){i, NULL, json[i]};
        w += (size_t)snprintf(want + w, sizeof want - w, "%d|%s|%s\n", i, a,
                              i % 3 == 0 ? "plain" : "t\xc3\xa9");
    }
    r[N] = (trec_t){N, NULL, "{\"n\":99,\"a\":\"cut \\\" here"};
    produce(f, "scan", 0, r, N + 1);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "CREATE STREAM sc (n INTEGER, a TEXT, b TEXT) WITH "
                                "(topic = 'scan')", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT n, a, b FROM sc", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, want);
    assert_int_equal(st.errors, 1);                /* the cut string */
    free(out);
}

/* A JSON field named ts: declared, it is the stream's event time (with or
 * without timestamp = 'ts'), read as the column ts (not a second column);
 * windows group by it; a record without it is rejected like any record
 * missing its timestamp field; the definition survives being stored. */
static void test_json_ts_field(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "tsj", 1);
    produce1(f, "tsj", 5, "{\"ts\":1000,\"n\":1}");
    produce1(f, "tsj", 6, "{\"n\":2,\"ts\":4000}");
    produce1(f, "tsj", 7, "{\"ts\":12000,\"n\":3}");
    produce1(f, "tsj", 8, "{\"n\":4}");
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "CREATE STREAM t1 (ts INTEGER, n INTEGER) WITH (topic = 'tsj', "
                                "timestamp = 'ts')", NULL, &out, &off, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "CREATE STREAM t2 (n INTEGER, \"TS\" INTEGER) WITH "
                                "(topic = 'tsj')", NULL, &out, &off, err, NULL), 0);
    free(out);
    static const char *const streams[] = {"t1", "t2"};
    for (int k = 0; k < 2; k++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT * FROM %s", streams[k]);
        if (run_sql(f, sql, NULL, &out, &off, err, &st) != 0) fail_msg("%s: %s", sql, err);
        if (k == 0) {
            /* queue|offset|ts|key|n|value: ts once, the JSON's; the last record rejected. */
            assert_string_equal(out, "0|0|1000|NULL|1|{\"ts\":1000,\"n\":1}\n"
                                     "0|1|4000|NULL|2|{\"n\":2,\"ts\":4000}\n"
                                     "0|2|12000|NULL|3|{\"ts\":12000,\"n\":3}\n");
            assert_int_equal(st.errors, 1);
            assert_non_null(strstr(st.first_error, "timestamp field 'ts' is missing or null"));
        } else {
            /* A field "TS" reads the JSON key "TS", which no record has. */
            assert_string_equal(out, "");
            assert_int_equal(st.errors, 4);
        }
        free(out);
    }
    assert_int_equal(run_sql(f, "SELECT ts, n FROM t1 WHERE ts >= 4000", NULL, &out, &off, err,
                             NULL), 0);
    assert_string_equal(out, "4000|2\n12000|3\n");
    free(out);
    assert_int_equal(run_sql(f, "SELECT window_start, count(*), sum(n) FROM t1 "
                                "GROUP BY TUMBLE(ts, '10s')", NULL, &out, &off, err, NULL), 0);
    assert_string_equal(out, "0|2|3\n10000|1|3\n");
    free(out);
    assert_int_equal(run_sql(f, "SHOW STREAMS", NULL, &out, &off, err, NULL), 0);
    assert_non_null(strstr(out, "t1|tsj|json|ts|\"ts\" INTEGER, \"n\" INTEGER\n"));
    assert_non_null(strstr(out, "t2|tsj|json|TS|\"n\" INTEGER, \"TS\" INTEGER\n"));
    free(out);
    assert_int_equal(run_sql(f, "DESCRIBE t1", NULL, &out, &off, err, NULL), 0);
    assert_string_equal(out, "queue|INTEGER|logical queue\n"
                             "offset|INTEGER|record offset in its queue\n"
                             "ts|INTEGER|event time: field 'ts' (ms)\n"
                             "key|TEXT|record key\n"
                             "n|INTEGER|json field of topic 'tsj'\n"
                             "value|TEXT|record value\n");
    free(out);
    /* An unknown column lists ts once. */
    assert_int_equal(run_sql(f, "SELECT nope FROM t1", NULL, &out, &off, err, NULL), RN_EINVAL);
    free(out);
    assert_non_null(strstr(err, "(columns: queue, offset, ts, key, n, value)"));
}

/* A declared INTEGER holding "abc" or 1.5 is an error for that record:
 * counted, never a NULL and never a new group. */
static void test_typing_errors(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "typed", 1);
    produce1(f, "typed", 1, "{\"svc\":\"api\",\"lat\":5,\"at\":100}");
    produce1(f, "typed", 2, "{\"svc\":\"api\",\"lat\":\"abc\",\"at\":200}");
    produce1(f, "typed", 3, "{\"svc\":\"api\",\"lat\":1.5,\"at\":300}");
    produce1(f, "typed", 4, "not json at all");
    produce1(f, "typed", 5, "{\"svc\":\"api\",\"lat\":7,\"at\":\"x\"}");
    produce1(f, "typed", 6, "{\"svc\":\"api\",\"lat\":9}");
    produce1(f, "typed", 7, "{\"svc\":\"db\",\"lat\":11,\"at\":700}");
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "CREATE STREAM ty (svc TEXT, lat INTEGER, at INTEGER) WITH "
                                "(topic = 'typed', timestamp = 'at')", NULL, &out, &off, err,
                             NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT svc, lat, count(*) FROM ty GROUP BY TUMBLE(ts, '1h'), "
                                "svc, lat", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "api|5|1\ndb|11|1\n");
    assert_int_equal(st.records, 7);
    assert_int_equal(st.errors, 5);
    assert_non_null(strstr(st.first_error, "offset 1: field 'lat' is INTEGER but holds \"abc\""));
    free(out);
    /* the same records are rejected whatever columns a query reads */
    assert_int_equal(run_sql(f, "SELECT count(*) FROM ty", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "2\n");
    assert_int_equal(st.errors, 5);
    free(out);
}

typedef struct rejects {
    rn_buf_t text;        /* "offset:why\n" per rejected record */
} rejects_t;

static int collect_reject(void *ctx, uint32_t queue, const rn_record_t *r, const char *why)
{
    rejects_t *x = ctx;
    char line[RN_ERRMSG_SIZE + 64];
    int n = snprintf(line, sizeof line, "%u:%lld:%.*s:%s\n", queue, (long long)r->offset,
                     (int)r->value_len, (const char *)r->value, why);
    rn_buf_append(&x->text, line, (size_t)n, 0);
    return 0;
}

/* A bare topic queried with sqlite's JSON functions: a record that is not
 * JSON fails json_extract; it is rejected (counted, reported with its
 * position) and the query goes on with exactly the rows of the others. */
static void test_bare_topic_bad_json(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "rawj", 1);
    trec_t r1[] = {{1000, NULL, "{\"svc\":\"a\",\"lat\":600}"}, {1100, NULL, "oops"},
                   {1200, NULL, "{\"svc\":\"b\",\"lat\":100}"}, {1300, NULL, "{\"svc\":\"c\",\"lat\":700}"},
                   {1400, NULL, "{bad"}};
    trec_t r2[] = {{1500, NULL, "[1,"}, {2600, NULL, "{\"svc\":\"a\",\"lat\":900}"}};
    trec_t r3[] = {{2700, NULL, "nope"}};
    trec_t r4[] = {{3800, NULL, "{\"svc\":\"d\",\"lat\":800}"}};
    produce(f, "rawj", 0, r1, 5);
    produce(f, "rawj", 0, r2, 2);
    produce(f, "rawj", 0, r3, 1);
    produce(f, "rawj", 0, r4, 1);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    rejects_t x = {RN_BUF_INIT};
    assert_int_equal(run_sql(f, "SELECT json_extract(value, '$.svc') AS svc, "
                                "json_extract(value, '$.lat') AS lat FROM rawj "
                                "WHERE json_extract(value, '$.lat') > 500", NULL, &out, &off, err,
                             &st), 0);
    assert_string_equal(out, "a|600\nc|700\na|900\nd|800\n");
    assert_int_equal(st.records, 9);
    assert_int_equal(st.rows, 4);
    assert_int_equal(st.errors, 4);
    assert_non_null(strstr(st.first_error, "topic 'rawj' queue 0 offset 1: malformed JSON"));
    free(out);
    /* aggregating: the bad records fail the aggregate's argument; the
     * windows hold the good records only */
    assert_int_equal(run_sql(f, "SELECT window_start, count(*) AS n, "
                                "sum(json_extract(value, '$.lat')) AS total FROM rawj "
                                "GROUP BY TUMBLE(ts, '1s')", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "1000|3|1400\n2000|1|900\n3000|1|800\n");
    assert_int_equal(st.errors, 4);
    free(out);
    /* the reject callback gets each bad record with its position and why */
    const char *sql = "SELECT json_extract(value, '$.svc') FROM rawj";
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.reject = collect_reject;
    o.ctx = &x;
    rn_sql_t *q = NULL;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_stats(q, &st);
    rn_sql_close(q);
    assert_int_equal(st.rows, 5);
    assert_int_equal(st.errors, 4);
    rn_buf_append(&x.text, "", 1, 0);
    assert_string_equal((char *)x.text.data, "0:1:oops:malformed JSON\n0:4:{bad:malformed JSON\n"
                                             "0:5:[1,:malformed JSON\n0:7:nope:malformed JSON\n");
    rn_buf_free(&x.text);
}

static void test_explain(void **state)
{
    sqlfix_t *f = *state;
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    assert_int_equal(run_sql(f, "EXPLAIN SELECT svc, avg(lat) FROM logs_s WHERE level <> 'DEBUG' "
                                "GROUP BY TUMBLE(ts, '10s'), svc HAVING count(*) > 1 "
                                "WITH (watermark = '2s')", NULL, &out, &off, err, NULL), 0);
    assert_non_null(strstr(out, "per-batch statement: SELECT ts, (svc), (lat), __idx FROM logs_s "
                                "WHERE level <> 'DEBUG'\n"));
    assert_non_null(strstr(out, "sqlite: SCAN logs_s VIRTUAL TABLE"));
    assert_non_null(strstr(out, "window: TUMBLE size 10000 ms, watermark delay 2000 ms"));
    assert_non_null(strstr(out, "__a0 = avg(lat), __a1 = count(*)"));
    assert_non_null(strstr(out, "emit FINAL: SELECT __k0 AS \"svc\", __a0 AS \"avg(lat)\" FROM "
                                "__emit WHERE __a1 > 1"));
    free(out);
}

/* A row callback may stop the query; the error comes back. */
static int stop_after_one(void *ctx, const rn_sql_value_t *v, int n)
{
    int *count = ctx;
    return ++*count >= 1 ? -EPIPE : 0;
}

static void test_callback_stops_and_cancel(void **state)
{
    sqlfix_t *f = *state;
    int count = 0;
    char err[RN_ERRMSG_SIZE];
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = stop_after_one;
    o.ctx = &count;
    rn_sql_t *q;
    const char *sql = "SELECT svc FROM logs_s";
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    const rn_sql_column_t *cols;
    int n;
    rn_sql_columns(q, &cols, &n);
    assert_int_equal(n, 1);
    assert_string_equal(cols[0].name, "svc");
    assert_int_equal(rn_sql_run(q, err), -EPIPE);
    assert_int_equal(count, 1);
    rn_sql_close(q);
    /* cancelled before the first step: DONE at once, no rows */
    count = 0;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    rn_sql_cancel(q);
    assert_int_equal(rn_sql_run(q, err), 0);
    assert_int_equal(count, 0);
    rn_sql_close(q);
}

static int count_stmt(void *ctx, size_t off, size_t n)
{
    rn_buf_t *b = ctx;
    char buf[32];
    int k = snprintf(buf, sizeof buf, "%zu+%zu;", off, n);
    return rn_buf_append(b, buf, (size_t)k, 0);
}

static void test_split_and_complete(void **state)
{
    (void)state;
    rn_buf_t b = RN_BUF_INIT;
    const char *script = " SELECT ';' ;; SELECT 2 -- x;\n;\n/* ; */";
    assert_int_equal(rn_sql_split(script, strlen(script), count_stmt, &b), 0);
    rn_buf_append(&b, "", 1, 0);
    assert_string_equal((char *)b.data, "1+11;15+15;");
    rn_buf_free(&b);
    assert_int_equal(rn_sql_complete("SELECT 1", 8), 0);
    assert_int_equal(rn_sql_complete("SELECT ';'", 10), 0);
    assert_int_equal(rn_sql_complete("SELECT ';';", 11), 1);
    assert_int_equal(rn_sql_complete("SELECT 1; -- done\n", 18), 1);
    assert_int_equal(rn_sql_complete("SELECT 1 /* ; */", 16), 0);
}

/* A query stopped between steps and restored from its saved state in a new
 * query continues exactly as an uninterrupted run: SELECT DISTINCT (the set
 * of rows seen is state, so a restored query emits no row twice), EMIT
 * CHANGES, a session window, and a REAL key. */
static void test_state_restored(void **state)
{
    sqlfix_t *f = *state;
    static const char *const sqls[] = {
        "SELECT DISTINCT svc, level FROM logs_s",
        "SELECT svc, count(*), sum(lat) FROM logs_s GROUP BY TUMBLE(ts, '10s'), svc EMIT CHANGES",
        "SELECT window_start, window_end, svc, count(*) FROM logs_s GROUP BY SESSION(ts, '5s'), svc",
        /* an integral REAL key stays a REAL, restored too */
        "SELECT svc, typeof(CAST(lat AS REAL)), count(*) FROM logs_s GROUP BY TUMBLE(ts, '10s'), svc, "
        "CAST(lat AS REAL)",
        /* the statistical accumulators and sketches are saved exactly */
        "SELECT svc, stddev(lat), var_pop(lat), approx_count_distinct(lat), "
        "percentile_approx(lat, 0.5), count(*) FILTER (WHERE lat > 100) FROM logs_s "
        "GROUP BY SESSION(ts, '5s'), svc",
    };
    for (size_t i = 0; i < sizeof sqls / sizeof sqls[0]; i++) {
        char *whole, err[RN_ERRMSG_SIZE];
        int off;
        assert_int_equal(run_sql(f, sqls[i], NULL, &whole, &off, err, NULL), 0);
        if (strstr(sqls[i], "REAL") && !strstr(whole, "|real|")) fail_msg("REAL keys: %s", whole);
        for (int cut = 1; cut <= 5; cut++) {
            rows_t r = {RN_BUF_INIT, 0};
            rn_sql_opts_t o;
            rn_sql_opts_default(&o);
            o.row = collect_row;
            o.ctx = &r;
            rn_sql_t *q;
            rn_sql_state_t s;
            rn_buf_t saved = RN_BUF_INIT;
            assert_int_equal(rn_sql_open(f->d, sqls[i], strlen(sqls[i]), &o, &q, NULL, err), 0);
            for (int k = 0; k < cut; k++) assert_int_equal(rn_sql_step(q, &s, err), 0);
            assert_int_equal(rn_sql_state_save(q, &saved, err), 0);
            rn_sql_close(q);
            assert_int_equal(rn_sql_open(f->d, sqls[i], strlen(sqls[i]), &o, &q, NULL, err), 0);
            if (rn_sql_state_load(q, saved.data, saved.len, err) != 0) fail_msg("load: %s", err);
            assert_int_equal(rn_sql_run(q, err), 0);
            rn_sql_close(q);
            rn_buf_free(&saved);
            rn_buf_append(&r.text, "", 1, 0);
            if (strcmp((char *)r.text.data, whole) != 0)
                fail_msg("%s\n  cut after %d steps:\n%s  uninterrupted:\n%s", sqls[i], cut,
                         (char *)r.text.data, whole);
            rn_buf_free(&r.text);
        }
        free(whole);
    }
}

/* A windowed query's output (as a pipeline writes it to a topic) read back
 * as a stream: window_start and window_end are declarable fields. In the
 * select list of a windowed query they are the new window's bounds; in
 * WHERE, GROUP BY keys and aggregate arguments, and in queries without a
 * window, the fields. */
static void test_window_output_as_stream(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "per10s", 1);
    trec_t r[] = {{10000, NULL, "{\"window_start\":0,\"window_end\":10000,\"svc\":\"api\",\"n\":2}"},
                  {10000, NULL, "{\"window_start\":0,\"window_end\":10000,\"svc\":\"db\",\"n\":1}"},
                  {20000, NULL, "{\"window_start\":10000,\"window_end\":20000,\"svc\":\"api\",\"n\":4}"},
                  {70000, NULL, "{\"window_start\":60000,\"window_end\":70000,\"svc\":\"api\",\"n\":8}"}};
    produce(f, "per10s", 0, r, 4);
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, "CREATE STREAM w (window_start INTEGER, window_end INTEGER, svc TEXT, "
                   "n INTEGER) WITH (topic = 'per10s', timestamp = 'window_end')", NULL, &out,
                &off, err, NULL) != 0)
        fail_msg("create: %s", err);
    free(out);
    assert_int_equal(run_sql(f, "SELECT window_start, window_end, svc, n FROM w WHERE "
                                "window_start > 0", NULL, &out, &off, err, NULL), 0);
    assert_string_equal(out, "10000|20000|api|4\n60000|70000|api|8\n");
    free(out);
    /* the end of a 10 s window is in the next minute's window: 10000 and
     * 20000 fall in [0, 60000), 70000 in [60000, 120000) */
    assert_int_equal(run_sql(f, "SELECT window_start, window_end, sum(n), min(window_start) FROM w "
                                "WHERE window_end > 0 GROUP BY TUMBLE(ts, '1m')", NULL, &out, &off,
                             err, NULL), 0);
    assert_string_equal(out, "0|60000|7|0\n60000|120000|8|60000\n");
    free(out);
    assert_int_equal(run_sql(f, "SELECT window_start, sum(n) FROM w GROUP BY window_start",
                             NULL, &out, &off, err, NULL), 0);
    assert_string_equal(out, "0|3\n10000|4\n60000|8\n");
    free(out);
}

/* meta.db schema 2 -> 3: a file written before streams existed gains the
 * streams table on open, keeps its topics, and stores streams. */
static void test_meta_upgrade_to_v3(void **state)
{
    sqlfix_t *f = *state;
    char path[128], err[RN_ERRMSG_SIZE];
    snprintf(path, sizeof path, "%s/meta-v2.db", f->root);
    rn_meta_t *m = NULL;
    assert_int_equal(rn_meta_open(path, 1, &m, err), 0);
    assert_int_equal(rn_meta_store_register(m, 0, "stores/0", err), 0);
    assert_int_equal(rn_meta_topic_create(m, "old", 1, 0, 0, NULL, err), 0);
    rn_meta_close(m);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE streams; PRAGMA user_version = 2", NULL, NULL,
                                  NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(rn_meta_open(path, 0, &m, err), 0);
    int v = 0;
    assert_int_equal(rn_meta_schema_version(m, &v, err), 0);
    assert_int_equal(v, RN_META_SCHEMA_VERSION);   /* 2 -> 3 -> ... -> current */
    rn_meta_stream_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "st");
    snprintf(s.topic, sizeof s.topic, "old");
    snprintf(s.format, sizeof s.format, "json");
    snprintf(s.fields, sizeof s.fields, "\"a\" INTEGER");
    assert_int_equal(rn_meta_stream_create(m, &s, err), 0);
    assert_int_equal(rn_meta_stream_create(m, &s, err), RN_EEXIST);
    snprintf(s.topic, sizeof s.topic, "nope");
    snprintf(s.name, sizeof s.name, "st2");
    assert_int_equal(rn_meta_stream_create(m, &s, err), RN_ENOTFOUND);
    rn_meta_stream_t got;
    assert_int_equal(rn_meta_stream_get(m, "st", &got, err), 0);
    assert_string_equal(got.topic, "old");
    assert_string_equal(got.fields, "\"a\" INTEGER");
    assert_int_equal(rn_meta_stream_drop(m, "st", err), 0);
    assert_int_equal(rn_meta_stream_get(m, "st", &got, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "there are no streams"));
    rn_meta_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_complete),
        cmocka_unit_test_setup_teardown(test_expected_rows, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_json_scan_strings, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_must_fail, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_stream_statements, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_csv_stream, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_json_ts_field, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_typing_errors, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_bare_topic_bad_json, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_explain, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops_and_cancel, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_window_output_as_stream, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_state_restored, setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_meta_upgrade_to_v3, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

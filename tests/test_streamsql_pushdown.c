/*
 * test_streamsql_pushdown.c — the WHERE terms the stream table evaluates in
 * C (vtab.c invariant 3) against plain sqlite3 over the same rows.
 *
 * Random JSON records (INTEGER, REAL, TEXT, BOOLEAN fields; each value
 * absent, null, or of its type: integers near 0 and at the int64 edges,
 * reals with and without fractions, texts among digits, letters, the empty
 * string, raw UTF-8, and a prefix of another text; some records mistyped,
 * which the engine rejects and the oracle leaves out; some without a key)
 * go into one queue in random batches. Random WHERE clauses of one to three
 * terms (column op constant in either order, every op, INTEGER, REAL and
 * TEXT constants against every column, so pushed and unpushed terms mix:
 * a TEXT constant against a numeric column and an INTEGER against a text
 * column go through sqlite's affinity; IN, OR, IS NULL, COLLATE NOCASE,
 * LIKE) run through the engine and through sqlite over a table with the
 * stream's columns and declared types; the rows, in offset order, must be
 * equal, and so must the count of rejected records. The select lists mix
 * bare columns (computed in C when every term was pushed: sql.c invariant
 * 12) with expressions and repeated columns (sqlite per row); the test
 * checks through EXPLAIN that both paths ran often.
 */
#include "tests/test_streamsql_util.h"

#include <inttypes.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static const char *const texts[] = {"", "a", "ab", "b", "B", "5", "10", "-3", "5.0", "abc",
                                    "\xc3\xa9t\xc3\xa9", "z", "DEBUG", "INFO", " a"};
#define NTEXTS (sizeof texts / sizeof texts[0])
static const int64_t ints[] = {0, 1, -1, 5, 10, -3, 42, INT64_MAX, INT64_MIN, 3, 7};
#define NINTS (sizeof ints / sizeof ints[0])
static const char *const reals[] = {"0.5", "5.0", "-3.25", "10", "1e2", "9.2233720368547758e18",
                                    "-0.5", "4.999"};
#define NREALS (sizeof reals / sizeof reals[0])

#define NREC 600

typedef struct col {
    const char *name;
    int         kind;      /* 0 int, 1 real, 2 text, 3 boolean */
} col_t;

static const col_t cols[] = {{"a", 0}, {"r", 1}, {"t", 2}, {"u", 2}, {"b", 3}};
#define NCOLS 5

/* One record's JSON into buf; the values the oracle gets into vals (NULL:
 * SQL NULL); returns 0 when the engine must reject it. */
static int make_record(char *buf, size_t size, char vals[NCOLS][64], int *isnull)
{
    size_t n = (size_t)snprintf(buf, size, "{");
    int ok = 1, first = 1;
    for (int c = 0; c < NCOLS; c++) {
        isnull[c] = 1;
        uint32_t pick = rnd(10);
        if (pick == 0) continue;                              /* absent */
        n += (size_t)snprintf(buf + n, size - n, "%s\"%s\":", first ? "" : ",", cols[c].name);
        first = 0;
        if (pick == 1) { n += (size_t)snprintf(buf + n, size - n, "null"); continue; }
        if (pick == 2 && rnd(4) == 0) {                       /* mistyped */
            n += (size_t)snprintf(buf + n, size - n, cols[c].kind == 2 ? "17" : "\"x\"");
            ok = 0;
            continue;
        }
        isnull[c] = 0;
        switch (cols[c].kind) {
        case 0: {
            int64_t v = ints[rnd(NINTS)];
            snprintf(vals[c], 64, "%" PRId64, v);
            n += (size_t)snprintf(buf + n, size - n, "%s", vals[c]);
            break;
        }
        case 1: {
            const char *v = rnd(3) ? reals[rnd(NREALS)] : "7";
            snprintf(vals[c], 64, "%s", v);
            n += (size_t)snprintf(buf + n, size - n, "%s", v);
            break;
        }
        case 2: {
            const char *v = texts[rnd(NTEXTS)];
            snprintf(vals[c], 64, "%s", v);
            n += (size_t)snprintf(buf + n, size - n, "\"%s\"", v);
            break;
        }
        default: {
            int v = (int)rnd(2);
            snprintf(vals[c], 64, "%d", v);
            n += (size_t)snprintf(buf + n, size - n, "%s", v ? "true" : "false");
            break;
        }
        }
    }
    snprintf(buf + n, size - n, ",\"pad\":[1,2]}");
    return ok;
}

/* One random term into out. */
static void make_term(char *out, size_t size)
{
    static const char *const ops[] = {"=", "<>", "!=", "<", "<=", ">", ">=", "=="};
    static const char *const extra[] = {"a IN (1, 5, 42)", "t IN ('a', '5')",
                                        "(a = 1 OR t = 'b')", "r IS NULL", "t IS NOT NULL",
                                        "t = 'b' COLLATE NOCASE", "t LIKE 'a%'", "a + 0 > 2",
                                        "u > t", "a = r"};
    const char *colnames[] = {"a", "r", "t", "u", "b", "key", "ts", "offset", "queue"};
    uint32_t pick = rnd(12);
    if (pick == 0) { snprintf(out, size, "%s", extra[rnd(10)]); return; }
    const char *col = colnames[rnd(9)];
    const char *op = ops[rnd(8)];
    char k[80];
    switch (rnd(4)) {
    case 0: snprintf(k, sizeof k, "%" PRId64, ints[rnd(NINTS)]); break;
    case 1: snprintf(k, sizeof k, "%s", reals[rnd(NREALS)]); break;
    default: {
        /* keys are "k0".."k3" */
        const char *t = rnd(4) == 0 ? (rnd(2) ? "k1" : "k3") : texts[rnd(NTEXTS)];
        snprintf(k, sizeof k, "'%s'", t);
        break;
    }
    }
    if (rnd(4) == 0) snprintf(out, size, "%s %s %s", k, op, col);   /* constant first */
    else snprintf(out, size, "%s %s %s", col, op, k);
}

static void test_pushdown_random(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "p", 1);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE s(queue INTEGER, offset INTEGER, ts INTEGER, "
                                      "key TEXT, a INTEGER, r REAL, t TEXT, u TEXT, b BOOLEAN)",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *ins;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO s VALUES(0, ?, ?, ?, ?, ?, ?, ?, ?)", -1,
                                        &ins, NULL), SQLITE_OK);
    static char json[NREC][256];
    static const char *const keys[] = {"k0", "k1", "k2", "k3"};
    trec_t recs[NREC];
    int64_t rejected = 0;
    for (int i = 0; i < NREC; i++) {
        char vals[NCOLS][64];
        int isnull[NCOLS];
        int ok = make_record(json[i], sizeof json[i], vals, isnull);
        recs[i].ts = 1000 + (int64_t)rnd(50);
        recs[i].key = rnd(5) ? keys[rnd(4)] : NULL;
        recs[i].value = json[i];
        if (!ok) { rejected++; continue; }
        sqlite3_bind_int64(ins, 1, i);
        sqlite3_bind_int64(ins, 2, recs[i].ts);
        if (recs[i].key) sqlite3_bind_text(ins, 3, recs[i].key, -1, SQLITE_STATIC);
        else sqlite3_bind_null(ins, 3);
        for (int c = 0; c < NCOLS; c++) {
            if (isnull[c]) sqlite3_bind_null(ins, 4 + c);
            else if (cols[c].kind == 2) sqlite3_bind_text(ins, 4 + c, vals[c], -1, SQLITE_TRANSIENT);
            else if (cols[c].kind == 1) sqlite3_bind_double(ins, 4 + c, atof(vals[c]));
            else sqlite3_bind_int64(ins, 4 + c, strtoll(vals[c], NULL, 10));
        }
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
    }
    sqlite3_finalize(ins);
    /* random batches of 1 .. 64 records */
    for (int i = 0; i < NREC;) {
        int n = 1 + (int)rnd(64);
        if (n > NREC - i) n = NREC - i;
        produce(f, "p", 0, &recs[i], (size_t)n);
        i += n;
    }
    char err[RN_ERRMSG_SIZE];
    int erroff;
    char *out;
    assert_int_equal(run_sql(f, "CREATE STREAM ps (a INTEGER, r REAL, t TEXT, u TEXT, b BOOLEAN) "
                                "WITH (topic = 'p', format = 'json')", NULL, &out, &erroff, err,
                             NULL), 0);
    free(out);
    int nonempty = 0, checked = 0, direct = 0;
    for (int qn = 0; qn < 400; qn++) {
        char where[512], t1[128];
        int nterms = 1 + (int)rnd(3);
        size_t w = 0;
        for (int k = 0; k < nterms; k++) {
            make_term(t1, sizeof t1);
            w += (size_t)snprintf(where + w, sizeof where - w, "%s%s", k ? " AND " : "", t1);
        }
        static const char *const lists[] = {"offset, key, a, r, t, u, b", "t, offset, ts, queue",
                                            "offset, a * 2, upper(t)", "offset, t, t, a"};
        const char *list = lists[rnd(5) % 4];
        char esql[700], osql[700];
        snprintf(esql, sizeof esql, "SELECT %s FROM ps WHERE %s", list, where);
        snprintf(osql, sizeof osql, "SELECT %s FROM s WHERE %s ORDER BY offset", list, where);
        rn_sql_stats_t st;
        int rc = run_sql(f, esql, NULL, &out, &erroff, err, &st);
        if (rc != 0) fail_msg("%s: %s", esql, err);
        char *want = oracle_rows(db, osql, "");
        if (strcmp(out, want) != 0) {
            fprintf(stderr, "%s\nengine:\n%s\nsqlite:\n%s\n", esql, out, want);
            char ex[800], *plan;
            snprintf(ex, sizeof ex, "EXPLAIN %s", esql);
            if (run_sql(f, ex, NULL, &plan, &erroff, err, NULL) == 0) fprintf(stderr, "%s\n", plan);
            fail_msg("%s: the engine's rows differ from sqlite's", esql);
        }
        assert_int_equal((int64_t)st.errors, rejected);
        assert_int_equal((int64_t)st.records, NREC);
        nonempty += out[0] != 0;
        /* how many of them ran without sqlite per row (sql.c invariant 12) */
        char ex[800], *plan;
        snprintf(ex, sizeof ex, "EXPLAIN %s", esql);
        assert_int_equal(run_sql(f, ex, NULL, &plan, &erroff, err, NULL), 0);
        direct += strstr(plan, "rows: computed in C") != NULL;
        free(plan);
        checked++;
        free(out);
        free(want);
    }
    /* the clauses select something often enough to mean something */
    assert_true(nonempty > checked / 4);
    /* and both paths ran: rows computed in C, and sqlite stepped per row */
    assert_true(direct > checked / 10);
    assert_true(direct < checked - checked / 10);
    print_message("%d clauses, %d with rows, %d computed in C\n", checked, nonempty, direct);
    sqlite3_close(db);
}

/* A record the per-batch statement cannot evaluate (json_extract over a
 * value whose tail, after the declared fields, is not JSON) is rejected
 * and the batch re-run record by record (sql.c invariant 7), with the
 * pushed term still applied; a record the pushed term rejects is never
 * evaluated further, so it is not rejected for the other term. */
static void test_pushdown_with_failing_rows(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "q", 1);
    trec_t r[] = {
        {1, NULL, "{\"n\":1,\"s\":\"b\",\"z\":]}"},
        {2, NULL, "{\"n\":2,\"s\":\"b\",\"z\":]}"},
        {3, NULL, "{\"n\":3,\"s\":\"a\"}"},
        {4, NULL, "{\"n\":4,\"s\":\"b\"}"},
        {5, NULL, "{\"n\":5,\"s\":\"b\"}"},
    };
    produce(f, "q", 0, r, 5);
    char err[RN_ERRMSG_SIZE];
    int erroff;
    char *out;
    assert_int_equal(run_sql(f, "CREATE STREAM qs (n INTEGER, s TEXT) WITH (topic = 'q')", NULL,
                             &out, &erroff, err, NULL), 0);
    free(out);
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "SELECT offset, n FROM qs WHERE n >= 2 AND n <> 4", NULL, &out,
                             &erroff, err, &st), 0);
    assert_string_equal(out, "1|2\n2|3\n4|5\n");
    assert_int_equal(st.errors, 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT offset FROM qs WHERE n >= 2 AND "
                                "json_extract(value, '$.s') = 'b'",
                             NULL, &out, &erroff, err, &st), 0);
    assert_string_equal(out, "3\n4\n");
    assert_int_equal(st.errors, 1);
    assert_non_null(strstr(st.first_error, "offset 1"));
    free(out);
    /* LIMIT stops the direct rows too, also within a batch */
    assert_int_equal(run_sql(f, "SELECT offset, n FROM qs WHERE n >= 2 LIMIT 2", NULL, &out,
                             &erroff, err, &st), 0);
    assert_string_equal(out, "1|2\n2|3\n");
    free(out);
    assert_int_equal(run_sql(f, "EXPLAIN SELECT offset, n FROM qs WHERE n >= 2 LIMIT 2", NULL,
                             &out, &erroff, err, NULL), 0);
    assert_non_null(strstr(out, "rows: computed in C"));
    free(out);
    /* the plan shows the pushed terms: both comparisons of n, not json_extract */
    assert_int_equal(run_sql(f, "EXPLAIN SELECT offset FROM qs WHERE n >= 2 AND n <> 4.0 AND "
                                "json_extract(value, '$.s') = 'b'",
                             NULL, &out, &erroff, err, NULL), 0);
    assert_non_null(strstr(out, "VIRTUAL TABLE INDEX 2:"));
    free(out);
    assert_int_equal(run_sql(f, "EXPLAIN SELECT offset FROM qs WHERE s IN ('a', 'b') OR n = 1",
                             NULL, &out, &erroff, err, NULL), 0);
    assert_non_null(strstr(out, "VIRTUAL TABLE INDEX 0:"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pushdown_random, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_pushdown_with_failing_rows, sqlfix_setup,
                                        sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

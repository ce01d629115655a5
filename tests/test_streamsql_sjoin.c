/*
 * test_streamsql_sjoin.c — stream–stream joins (streamsql/sjoin.c): interval
 * joins (BETWEEN and >= / <= forms, with a WHERE) and TUMBLE window joins
 * checked against plain sqlite3 over all the records at once, ordered as
 * the engine emits (by emission time, then each side's queue and offset),
 * for batch sizes 1, 7 and 500 (and a different batch size per side), 1 and
 * 3 queues per side; a --follow query fed one whole stream before the
 * other, in both orders; a record behind the watermark counted as late and
 * joined with nothing; the join state bounded while the watermark moves and
 * empty at the end; SELECT DISTINCT over a window join; GROUP BY (count,
 * sum, min, max, avg, total, count(DISTINCT), FILTER, HAVING) over a window join;
 * refusals of joins with no equality, no time bound, or other unsupported
 * shapes (aggregates other than those, GROUP BY of an interval join or
 * without the window).
 */
#include "tests/test_streamsql_util.h"

#include "etl/etl.h"
#include "tests/util/util.h"

#define NA    300
#define NB    400
#define NKEYS 12
#define BASE  1700000000000LL

static void exec_ok(sqlfix_t *f, const char *sql)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, sql, NULL, &t, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(t);
}

static void refused(sqlfix_t *f, const char *sql, const char *want)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    int rc = run_sql(f, sql, NULL, &t, &off, err, NULL);
    free(t);
    if (rc == 0) fail_msg("accepted: %s", sql);
    if (!strstr(err, want)) fail_msg("%s\n  message: %s\n  wanted: %s", sql, err, want);
}

/* One side's records: n records, record j in queue j % nq, event time
 * increasing with j (so each queue is in event-time order), keys random. */
typedef struct gen {
    int     n;
    int64_t ts[NB];
    int     k[NB];
    char    v[NB][80];
} gen_t;

static void gen_side(gen_t *g, int n, int step, uint64_t *rng)
{
    g->n = n;
    int64_t t = BASE;
    for (int j = 0; j < n; j++) {
        t += 1 + (int64_t)(rn_test_rng(rng) % (uint64_t)step);
        g->ts[j] = t;
        g->k[j] = (int)(rn_test_rng(rng) % NKEYS);
        snprintf(g->v[j], sizeof g->v[j], "{\"k\":%d,\"n\":%d,\"ts\":%lld}", g->k[j], j,
                 (long long)t);
    }
}

/* Write records [from, to) of g into topic t (nq queues) in batches of
 * `batch` per queue, and into the oracle's table (queue, offset as the
 * topic's: records go in index order, so offsets count per queue). */
static void put_side(sqlfix_t *f, sqlite3 *db, const char *t, const gen_t *g, uint32_t nq,
                     size_t batch, int from, int to)
{
    trec_t *pend = calloc((size_t)g->n, sizeof *pend);
    for (uint32_t q = 0; q < nq; q++) {
        size_t n = 0;
        int64_t off = 0;
        for (int j = (int)q; j < from; j += (int)nq) off++;
        for (int j = (int)q; j < to; j += (int)nq) {
            if (j < from) continue;
            pend[n++] = (trec_t){g->ts[j], NULL, g->v[j]};
            char sql[200];
            snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (%u, %lld, %lld, %d, %d)", t, q,
                     (long long)off++, (long long)g->ts[j], g->k[j], j);
            assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        }
        for (size_t i = 0; i < n; i += batch)
            produce(f, t, q, pend + i, n - i < batch ? n - i : batch);
    }
    free(pend);
}

static void setup_streams(sqlfix_t *f, sqlite3 *db, uint32_t qa, uint32_t qb)
{
    topic(f, "ta", qa);
    topic(f, "tb", qb);
    exec_ok(f, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')");
    exec_ok(f, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')");
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE ta(queue, off, ts, k, n); "
                                      "CREATE TABLE tb(queue, off, ts, k, n)", NULL, NULL, NULL),
                     SQLITE_OK);
}

typedef struct qcase {
    const char *sql, *oracle;
} qcase_t;

/* The oracle orders as the engine emits: by emission time (the later ts of
 * the pair, or the window's last ms), then left queue, offset, right queue,
 * offset. */
static const qcase_t qcases[] = {
    {"SELECT x.k, x.n, y.n, x.ts, y.ts FROM a x JOIN b y ON x.k = y.k AND "
     "y.ts BETWEEN x.ts - INTERVAL '3' SECOND AND x.ts + INTERVAL '1' SECOND",
     "SELECT x.k, x.n, y.n, x.ts, y.ts FROM ta x JOIN tb y ON x.k = y.k AND "
     "y.ts BETWEEN x.ts - 3000 AND x.ts + 1000 "
     "ORDER BY max(x.ts, y.ts), x.queue, x.off, y.queue, y.off"},
    {"SELECT b.n AS bn, a.n AS an, b.ts - a.ts AS d FROM a JOIN b ON b.k = a.k AND "
     "a.ts >= b.ts - 500 AND a.ts < b.ts + 2000 WHERE (a.n + b.n) % 3 <> 0",
     "SELECT b.n, a.n, b.ts - a.ts FROM ta a JOIN tb b ON b.k = a.k AND "
     "a.ts >= b.ts - 500 AND a.ts < b.ts + 2000 WHERE (a.n + b.n) % 3 <> 0 "
     "ORDER BY max(a.ts, b.ts), a.queue, a.off, b.queue, b.off"},
    {"SELECT l.window_start, l.window_end, l.k, l.n, r.n FROM "
     "TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '5' SECOND)) l JOIN "
     "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '5' SECOND)) r "
     "ON l.window_start = r.window_start AND l.window_end = r.window_end AND l.k = r.k",
     "SELECT x.ts - x.ts % 5000, x.ts - x.ts % 5000 + 5000, x.k, x.n, y.n FROM ta x JOIN tb y "
     "ON x.ts / 5000 = y.ts / 5000 AND x.k = y.k "
     "ORDER BY x.ts / 5000, x.queue, x.off, y.queue, y.off"},
    /* GROUP BY over a window join: per window and key, in (window, key) order */
    {"SELECT l.window_start, l.k, count(*) AS n, sum(r.n), min(l.n), max(r.n), avg(r.n), "
     "total(l.n * r.n), count(DISTINCT r.n), count(*) FILTER (WHERE r.n > 200) FROM "
     "TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '5' SECOND)) l JOIN "
     "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '5' SECOND)) r "
     "ON l.window_start = r.window_start AND l.k = r.k WHERE r.n % 4 <> 1 "
     "GROUP BY l.window_start, l.k HAVING count(*) > 1",
     "SELECT x.ts - x.ts % 5000, x.k, count(*), sum(y.n), min(x.n), max(y.n), avg(y.n), "
     "total(x.n * y.n), count(DISTINCT y.n), count(*) FILTER (WHERE y.n > 200) "
     "FROM ta x JOIN tb y "
     "ON x.ts / 5000 = y.ts / 5000 AND x.k = y.k WHERE y.n % 4 <> 1 "
     "GROUP BY x.ts / 5000, x.k HAVING count(*) > 1 ORDER BY x.ts / 5000, x.k"},
};
#define NCASES (sizeof qcases / sizeof qcases[0])

static void check(sqlfix_t *f, sqlite3 *db, const qcase_t *c, const rn_sql_opts_t *o,
                  const char *what)
{
    char *got = NULL, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    if (run_sql(f, c->sql, o, &got, &off, err, &st) != 0) fail_msg("%s: %s", c->sql, err);
    char *want = oracle_rows(db, c->oracle, "");
    if (strlen(want) < 200) fail_msg("oracle gave too little: %s", want);
    if (strcmp(got, want) != 0)
        fail_msg("%s: %s\n--- got\n%.1500s\n--- want\n%.1500s", what, c->sql, got, want);
    assert_int_equal(st.late, 0);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.join_rows, 0);          /* all freed at the end */
    assert_int_equal(st.records, (uint64_t)(NA + NB));
    free(got);
    free(want);
}

static void oracle_case(uint32_t qa, uint32_t qb, size_t ba, size_t bb)
{
    sqlfix_t *f = NULL;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    uint64_t rng = rn_test_seed("streamsql_sjoin");
    static gen_t ga, gb;
    gen_side(&ga, NA, 200, &rng);
    gen_side(&gb, NB, 150, &rng);
    setup_streams(f, db, qa, qb);
    put_side(f, db, "ta", &ga, qa, ba, 0, NA);
    put_side(f, db, "tb", &gb, qb, bb, 0, NB);
    char what[96];
    snprintf(what, sizeof what, "queues %u/%u batches %zu/%zu", qa, qb, ba, bb);
    for (size_t i = 0; i < NCASES; i++) check(f, db, &qcases[i], NULL, what);
    sqlite3_close(db);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

/* Lines sorted, for DISTINCT (which row of a duplicate group goes first is
 * not defined). */
static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *sorted(const char *text)
{
    char *dup = strdup(text), **v = NULL, *save = NULL;
    size_t n = 0;
    for (char *l = strtok_r(dup, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        v = realloc(v, (n + 1) * sizeof *v);
        v[n++] = l;
    }
    qsort(v, n, sizeof *v, cmp_line);
    rn_buf_t b = RN_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        rn_buf_append(&b, v[i], strlen(v[i]), 0);
        rn_buf_append(&b, "\n", 1, 0);
    }
    rn_buf_append(&b, "", 1, 0);
    free(v);
    free(dup);
    return (char *)b.data;
}

/* SELECT DISTINCT over a window join (Nexmark q8's form): each row once. */
static void test_distinct(void **state)
{
    (void)state;
    sqlfix_t *f = NULL;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    uint64_t rng = rn_test_seed("streamsql_sjoin_distinct");
    static gen_t ga, gb;
    gen_side(&ga, NA, 200, &rng);
    gen_side(&gb, NB, 150, &rng);
    setup_streams(f, db, 3, 3);
    put_side(f, db, "ta", &ga, 3, 7, 0, NA);
    put_side(f, db, "tb", &gb, 3, 7, 0, NB);
    char *got = NULL, err[RN_ERRMSG_SIZE];
    int off;
    const char *sql = "SELECT DISTINCT l.window_start, l.k, l.n FROM "
                      "TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '5' SECOND)) l JOIN "
                      "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '5' SECOND)) r "
                      "ON l.window_start = r.window_start AND l.k = r.k";
    if (run_sql(f, sql, NULL, &got, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    char *want = oracle_rows(db, "SELECT DISTINCT x.ts - x.ts % 5000, x.k, x.n FROM ta x "
                                 "JOIN tb y ON x.ts / 5000 = y.ts / 5000 AND x.k = y.k", "");
    char *a = sorted(got), *b = sorted(want);
    if (strlen(b) < 100 || strcmp(a, b) != 0)
        fail_msg("DISTINCT\n--- got\n%.1500s\n--- want\n%.1500s", a, b);
    free(a); free(b); free(got); free(want);
    sqlite3_close(db);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

static void test_oracle(void **state)
{
    (void)state;
    static const size_t batches[] = {1, 7, 500};
    for (size_t b = 0; b < 3; b++) {
        oracle_case(1, 1, batches[b], batches[b]);
        oracle_case(3, 3, batches[b], batches[b]);
    }
    /* sides read at different paces, and queue counts that differ */
    oracle_case(1, 3, 1, 500);
    oracle_case(3, 1, 500, 7);
}

/* ---- arrival order: one whole stream before the other, under --follow ------- */

typedef struct follow {
    rn_sql_t *q;
    rows_t    rows;
} follow_t;

static void step_idle(rn_sql_t *q)
{
    char err[RN_ERRMSG_SIZE];
    rn_sql_state_t s = RN_SQL_MORE;
    for (int guard = 0; s == RN_SQL_MORE && guard < 100000; guard++)
        if (rn_sql_step(q, &s, err) != 0) fail_msg("step: %s", err);
    assert_int_equal(s, RN_SQL_IDLE);
}

static void arrival_case(int b_first, uint32_t nq)
{
    sqlfix_t *f = NULL;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    uint64_t rng = rn_test_seed("streamsql_sjoin_arrival");
    static gen_t ga, gb;
    gen_side(&ga, NA, 200, &rng);
    gen_side(&gb, NB, 150, &rng);
    setup_streams(f, db, nq, nq);
    for (size_t c = 0; c < NCASES; c++) {
        rows_t rows = {RN_BUF_INIT, 0};
        rn_sql_opts_t o;
        rn_sql_opts_default(&o);
        o.follow = 1;
        o.row = collect_row;
        o.ctx = &rows;
        rn_sql_t *q;
        char err[RN_ERRMSG_SIZE];
        int off;
        if (rn_sql_open(f->d, qcases[c].sql, strlen(qcases[c].sql), &o, &q, &off, err) != 0)
            fail_msg("%s: %s", qcases[c].sql, err);
        if (c == 0) {
            /* the data goes in once, in two halves per side, one side first */
            step_idle(q);
            for (int half = 0; half < 2; half++) {
                int fa = half ? NA / 2 : 0, ta = half ? NA : NA / 2;
                int fb = half ? NB / 2 : 0, tb = half ? NB : NB / 2;
                if (b_first) put_side(f, db, "tb", &gb, nq, 7, fb, tb);
                put_side(f, db, "ta", &ga, nq, 7, fa, ta);
                step_idle(q);
                if (!b_first) put_side(f, db, "tb", &gb, nq, 7, fb, tb);
                step_idle(q);
            }
            /* a last record per queue and side, far later and matching
             * nothing, moves the watermark past every pair */
            for (uint32_t i = 0; i < nq; i++) {
                trec_t ra = {0, NULL, "{\"k\":-1,\"n\":-1,\"ts\":1800000000000}"};
                trec_t rb = {0, NULL, "{\"k\":-2,\"n\":-2,\"ts\":1800000000000}"};
                produce(f, "ta", i, &ra, 1);
                produce(f, "tb", i, &rb, 1);
            }
        }
        step_idle(q);
        rn_sql_stats_t st;
        rn_sql_stats(q, &st);
        assert_int_equal(st.late, 0);
        rn_sql_close(q);
        rn_buf_append(&rows.text, "", 1, 0);
        char *want = oracle_rows(db, qcases[c].oracle, "");
        if (strcmp((char *)rows.text.data, want) != 0)
            fail_msg("%s first, %u queues: %s\n--- got\n%.1500s\n--- want\n%.1500s",
                     b_first ? "b" : "a", nq, qcases[c].sql, (char *)rows.text.data, want);
        free(want);
        rn_buf_free(&rows.text);
    }
    sqlite3_close(db);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

static void test_arrival_order(void **state)
{
    (void)state;
    arrival_case(0, 1);
    arrival_case(1, 1);
    arrival_case(0, 3);
    arrival_case(1, 3);
}

/* ---- late records ------------------------------------------------------------------ */

static void test_late(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "ta", 1);
    topic(f, "tb", 1);
    exec_ok(f, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')");
    exec_ok(f, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')");
    produce1(f, "ta", 0, "{\"k\":1,\"n\":1,\"ts\":10000}");
    produce1(f, "ta", 0, "{\"k\":1,\"n\":2,\"ts\":20000}");
    produce1(f, "ta", 0, "{\"k\":1,\"n\":3,\"ts\":30000}");
    produce1(f, "tb", 0, "{\"k\":1,\"n\":10,\"ts\":20500}");
    /* out of order by 19 s: behind the watermark once both sides are at 20 s */
    produce1(f, "tb", 0, "{\"k\":1,\"n\":11,\"ts\":1000}");
    produce1(f, "tb", 0, "{\"k\":1,\"n\":12,\"ts\":30500}");
    const char *sql = "SELECT x.n, y.n FROM a x JOIN b y ON x.k = y.k AND "
                      "y.ts BETWEEN x.ts - 10000 AND x.ts + 1000";
    char *got, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    if (run_sql(f, sql, NULL, &got, &off, err, &st) != 0) fail_msg("%s", err);
    /* n 11 would join n 1 (1000 is within 10 s before 10000) but is late */
    assert_string_equal(got, "2|10\n3|10\n3|12\n");
    assert_int_equal(st.late, 1);
    free(got);
    /* a watermark delay of 20 s keeps it: it joins */
    const char *sql2 = "SELECT x.n, y.n FROM a x JOIN b y ON x.k = y.k AND "
                       "y.ts BETWEEN x.ts - 10000 AND x.ts + 1000 WITH (watermark = '20s')";
    if (run_sql(f, sql2, NULL, &got, &off, err, &st) != 0) fail_msg("%s", err);
    assert_string_equal(got, "1|11\n2|10\n3|10\n3|12\n");
    assert_int_equal(st.late, 0);
    free(got);
}

/* ---- state freed as the watermark moves ----------------------------------------------- */

static void state_case(sqlfix_t *f, const char *sql, uint64_t bound)
{
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    rn_sql_t *q;
    char err[RN_ERRMSG_SIZE];
    int off;
    if (rn_sql_open(f->d, sql, strlen(sql), &o, &q, &off, err) != 0) fail_msg("%s", err);
    rn_sql_state_t s = RN_SQL_MORE;
    uint64_t most = 0;
    rn_sql_stats_t st;
    while (s != RN_SQL_DONE) {
        if (rn_sql_step(q, &s, err) != 0) fail_msg("step: %s", err);
        rn_sql_stats(q, &st);
        if (st.join_rows > most) most = st.join_rows;
    }
    rn_sql_stats(q, &st);
    assert_int_equal(st.join_rows, 0);
    assert_true(st.rows > 100);
    if (most > bound || most == 0)
        fail_msg("%s: %llu records buffered at most (bound %llu, %llu read)", sql,
                 (unsigned long long)most, (unsigned long long)bound,
                 (unsigned long long)st.records);
    printf("state: at most %llu of %llu records buffered: %s\n", (unsigned long long)most,
           (unsigned long long)st.records, sql);
    rn_sql_close(q);
}

static void test_state_bounded(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "ta", 1);
    topic(f, "tb", 1);
    exec_ok(f, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')");
    exec_ok(f, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')");
    /* 4000 records a side, one per 100 ms, in batches of 10 */
    enum { N = 4000, B = 10 };
    static char va[N][64], vb[N][64];
    trec_t ra[B], rb[B];
    for (int j = 0; j < N; j += B) {
        for (int i = 0; i < B; i++) {
            int64_t t = BASE + 100LL * (j + i);
            snprintf(va[j + i], sizeof va[0], "{\"k\":%d,\"n\":%d,\"ts\":%lld}", (j + i) % 7,
                     j + i, (long long)t);
            snprintf(vb[j + i], sizeof vb[0], "{\"k\":%d,\"n\":%d,\"ts\":%lld}", (j + i) % 5,
                     j + i, (long long)(t + 50));
            ra[i] = (trec_t){t, NULL, va[j + i]};
            rb[i] = (trec_t){t, NULL, vb[j + i]};
        }
        produce(f, "ta", 0, ra, B);
        produce(f, "tb", 0, rb, B);
    }
    /* 2 s of a side is 20 records; a window of 5 s is 50: with a batch of
     * slack, state stays within a few times that, far below 8000 */
    state_case(f, "SELECT x.n, y.n FROM a x JOIN b y ON x.k = y.k AND "
                  "y.ts BETWEEN x.ts - 1000 AND x.ts + 1000", 120);
    state_case(f, "SELECT l.n, r.n FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '5' "
                  "SECOND)) l JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '5' SECOND)) r "
                  "ON l.window_start = r.window_start AND l.k = r.k", 260);
}

/* ---- refusals -------------------------------------------------------------------------- */

static void test_refused(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "ta", 1);
    topic(f, "tb", 1);
    exec_ok(f, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')");
    exec_ok(f, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')");
    static const struct { const char *sql, *want; } bad[] = {
        {"SELECT * FROM a x JOIN b y ON x.k = y.k", "needs a time bound"},
        {"SELECT * FROM a x JOIN b y ON x.k = y.k AND y.ts >= x.ts", "needs a time bound"},
        {"SELECT * FROM a x JOIN b y ON x.k = y.k AND y.ts <= x.ts + 5", "needs a time bound"},
        {"SELECT * FROM a x JOIN b y ON x.k < y.k AND y.ts BETWEEN x.ts AND x.ts + 5",
         "needs an equality"},
        {"SELECT * FROM a x JOIN b y ON y.ts BETWEEN x.ts AND x.ts + 5", "needs an equality"},
        {"SELECT * FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5 OR x.n = 1",
         "OR goes in WHERE"},
        {"SELECT * FROM a JOIN a ON a.k = a.k AND a.ts BETWEEN a.ts AND a.ts + 5",
         "give each an alias"},
        {"SELECT count(*) FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5",
         "aggregates over a stream-stream join need GROUP BY of a window join's window"},
        {"SELECT x.k FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5 "
         "GROUP BY x.k", "GROUP BY over a stream-stream join needs a window join"},
        {"SELECT l.k, count(*) FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l JOIN "
         "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.window_start = r.window_start "
         "AND l.k = r.k GROUP BY l.k", "must group by the window"},
        {"SELECT l.window_start, stddev(r.n) FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l "
         "JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.window_start = "
         "r.window_start AND l.k = r.k GROUP BY l.window_start", "aggregates are count, sum"},
        {"SELECT l.window_start, count(*) FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l "
         "JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.window_start = "
         "r.window_start AND l.k = r.k", "need GROUP BY of a window join's window"},
        {"SELECT l.n FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l "
         "JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.window_start = "
         "r.window_start AND l.k = r.k HAVING l.n > 1", "HAVING without GROUP BY"},
        {"SELECT l.window_start, count(*) FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l "
         "JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.window_start = "
         "r.window_start AND l.k = r.k GROUP BY l.window_start EMIT CHANGES", "EMIT"},
        {"SELECT * FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l JOIN "
         "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 2000)) r ON l.window_start = r.window_start AND "
         "l.k = r.k", "same size"},
        {"SELECT * FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l JOIN "
         "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), 1000)) r ON l.k = r.k", "equate the windows"},
        {"SELECT * FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), 1000)) l JOIN b r "
         "ON l.window_start = r.ts AND l.k = r.k", "TABLE(TUMBLE(...)) on both sides"},
        {"SELECT DISTINCT x.k FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts AND "
         "x.ts + 5", "SELECT DISTINCT over a stream-stream join needs a window join"},
        {"SELECT * FROM a x JOIN nosuch y ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5",
         "nosuch"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused(f, bad[i].sql, bad[i].want);
    /* the Query RPC does not resume it by a token (pipelines checkpoint it) */
    const char *sql = "SELECT x.n FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts AND "
                      "x.ts + 5";
    rn_sql_t *q;
    char err[RN_ERRMSG_SIZE];
    int off;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), NULL, &q, &off, err), 0);
    /* both topics are sources: the broker checks the right to read each */
    const char *src;
    uint32_t nq;
    rn_sql_source(q, &src, &nq);
    assert_string_equal(src, "ta");
    assert_int_equal(nq, 2);                    /* one queue of each stream */
    assert_string_equal(rn_sql_join_source(q), "tb");
    uint32_t tq;
    assert_int_equal(rn_sql_source_queue(q, 1, &src, &tq), 0);
    assert_string_equal(src, "tb");
    assert_int_equal(tq, 0);
    assert_int_not_equal(rn_sql_source_queue(q, 2, &src, &tq), 0);
    assert_int_not_equal(rn_sql_resumable(q, err), 0);
    assert_non_null(strstr(err, "not resumed by a token"));
    rn_sql_close(q);
    /* a pipeline may not write into the stream it joins */
    const char *pipe = "CREATE PIPELINE pj AS INSERT INTO tb SELECT x.n FROM a x JOIN b y "
                       "ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5";
    assert_int_not_equal(rn_etl_create(f->d, pipe, strlen(pipe), err), 0);
    if (!strstr(err, "which it joins")) fail_msg("pipeline: %s", err);
    /* what a query refuses, a pipeline refuses the same way */
    pipe = "CREATE PIPELINE pj AS INSERT INTO out SELECT x.k FROM a x JOIN b y ON x.k = y.k "
           "AND y.ts BETWEEN x.ts AND x.ts + 5 GROUP BY x.k";
    assert_int_not_equal(rn_etl_create(f->d, pipe, strlen(pipe), err), 0);
    if (!strstr(err, "GROUP BY")) fail_msg("pipeline: %s", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),
        cmocka_unit_test(test_arrival_order),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test_setup_teardown(test_late, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_state_bounded, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_refused, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_streamsql_topn.c — Window TopN and window deduplication (topn.c).
 *
 * The same seeded records (RN_SEED=N repeats a run; the seed is printed) go
 * into topics that differ in batching (one record per batch, random batches
 * of 1..300, one big batch per queue) and queue count (1, and 3 partitioned
 * by svc). Each TopN query of the corpus must give:
 *  - the same rows, in the same order, for every batching and for 1 and 3
 *    queues (a window's rows are final when it closes; they are ranked there
 *    in a total order: partition, ORDER BY keys, then every column);
 *  - the rows plain sqlite3 computes over a table of all the records at once,
 *    with its own ROW_NUMBER / RANK / DENSE_RANK and that same tie-break.
 * Records out of event-time order with watermark 0 make rows late: over 1
 * queue the rows and the late count are the same for every batching.
 * Ties (many equal counts), N larger than a partition, LIMIT, and the
 * refusals of every other OVER and of TopN shapes that are not supported.
 * The rows form's checkpoint state stays bounded by N per window and
 * partition over a window of 3000 records. Pipelines with a TopN under kill -9:
 * tests/test_etl.c (test_kill_topn).
 */
#include "tests/test_streamsql_util.h"

#include <time.h>

#define NREC     3000
#define BASE_TS  1700000000000ll

static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const svcs[] = {"api", "db", "auth", "web", "queue", "cache", "mail"};

typedef struct rec {
    int64_t at;
    int     level, svc, lat;       /* lat -1: null */
    char    json[160];
} rec_t;

static uint64_t rng;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t seed(uint64_t salt)
{
    const char *e = getenv("RN_SEED");
    uint64_t s = (e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) * 2654435761u) + salt;
    if (!s) s = 1;
    printf("streamsql topn seed %llu (RN_SEED=%llu repeats it)\n", (unsigned long long)s,
           (unsigned long long)(s - salt));
    return s;
}

/* Records 29 ms apart (or with up to jitter ms of disorder); lat in 0..19 so
 * that sums and maxima tie often. */
static rec_t *make_records(int64_t jitter)
{
    rec_t *r = calloc(NREC, sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < NREC; i++) {
        r[i].at = BASE_TS + (int64_t)i * 29 +
                  (jitter ? (int64_t)(next_rand() % (uint64_t)jitter) : 0);
        r[i].level = (int)(next_rand() % 4);
        r[i].svc = (int)(next_rand() % 7);
        r[i].lat = next_rand() % 12 == 0 ? -1 : (int)(next_rand() % 20);
        char lat[16];
        if (r[i].lat < 0) snprintf(lat, sizeof lat, "null");
        else snprintf(lat, sizeof lat, "%d", r[i].lat);
        snprintf(r[i].json, sizeof r[i].json,
                 "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"%s\",\"lat\":%s}", (long long)r[i].at,
                 levels[r[i].level], svcs[r[i].svc], lat);
    }
    return r;
}

enum { ONE_PER_BATCH, RANDOM_BATCHES, ONE_BIG_BATCH, NMODES };
static const char *const mode_names[] = {"one record per batch", "random batches (1..300)",
                                         "one big batch per queue"};

static void produce_mode(sqlfix_t *f, const char *t, uint32_t nq, int mode, const rec_t *r)
{
    trec_t *pend[3];
    size_t npend[3] = {0, 0, 0}, target[3];
    for (uint32_t q = 0; q < nq; q++) {
        pend[q] = calloc(NREC, sizeof *pend[q]);
        assert_non_null(pend[q]);
        target[q] = mode == ONE_PER_BATCH ? 1 : mode == ONE_BIG_BATCH ? NREC
                    : 1 + next_rand() % 300;
    }
    for (size_t i = 0; i < NREC; i++) {
        uint32_t q = (uint32_t)r[i].svc % nq;
        pend[q][npend[q]++] = (trec_t){r[i].at, svcs[r[i].svc], r[i].json};
        if (npend[q] == target[q]) {
            produce(f, t, q, pend[q], npend[q]);
            npend[q] = 0;
            if (mode == RANDOM_BATCHES) target[q] = 1 + next_rand() % 300;
        }
    }
    for (uint32_t q = 0; q < nq; q++) {
        if (npend[q]) produce(f, t, q, pend[q], npend[q]);
        free(pend[q]);
    }
}

static void create_stream(sqlfix_t *f, const char *name, const char *t)
{
    char sql[256], *out, err[RN_ERRMSG_SIZE];
    int off;
    snprintf(sql, sizeof sql, "CREATE STREAM %s (at INTEGER, level TEXT, svc TEXT, lat INTEGER) "
             "WITH (topic = '%s', timestamp = 'at')", name, t);
    if (run_sql(f, sql, NULL, &out, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(out);
}

/* Topics <prefix>t<nq>_<mode>, streams <prefix>s<nq>_<mode>. */
static void produce_all(sqlfix_t *f, const char *prefix, const rec_t *r)
{
    const uint32_t queue_counts[] = {1, 3};
    for (int qi = 0; qi < 2; qi++)
        for (int m = 0; m < NMODES; m++) {
            char t[32], s[32];
            snprintf(t, sizeof t, "%st%u_%d", prefix, queue_counts[qi], m);
            snprintf(s, sizeof s, "%ss%u_%d", prefix, queue_counts[qi], m);
            topic(f, t, queue_counts[qi]);
            produce_mode(f, t, queue_counts[qi], m, r);
            create_stream(f, s, t);
        }
}

static sqlite3 *oracle_db(const rec_t *r)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE recs(at INTEGER, level TEXT, svc TEXT, "
                                      "lat INTEGER); CREATE TABLE hops(k INTEGER); "
                                      "INSERT INTO hops VALUES (0), (1); BEGIN", NULL, NULL,
                                  NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO recs VALUES (?1, ?2, ?3, ?4)", -1, &st,
                                        NULL), SQLITE_OK);
    for (size_t i = 0; i < NREC; i++) {
        sqlite3_bind_int64(st, 1, r[i].at);
        sqlite3_bind_text(st, 2, levels[r[i].level], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, svcs[r[i].svc], -1, SQLITE_STATIC);
        if (r[i].lat < 0) sqlite3_bind_null(st, 4);
        else sqlite3_bind_int64(st, 4, r[i].lat);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

/* Rows of sql over stream s (then " with"), then "late=N errors=N". */
static char *run(sqlfix_t *f, const char *tmpl, const char *s, const char *with)
{
    char sql[4096], *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    snprintf(sql, sizeof sql, tmpl, s);
    if (with) snprintf(sql + strlen(sql), sizeof sql - strlen(sql), " %s", with);
    if (run_sql(f, sql, NULL, &out, &off, err, &st) != 0) fail_msg("%s: %s", sql, err);
    char tail[64];
    snprintf(tail, sizeof tail, "late=%llu errors=%llu\n", (unsigned long long)st.late,
             (unsigned long long)st.errors);
    char *all = malloc(strlen(out) + strlen(tail) + 1);
    assert_non_null(all);
    sprintf(all, "%s%s", out, tail);
    free(out);
    return all;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* text's lines sorted (caller frees) */
static char *sorted(const char *text)
{
    char *copy = strdup(text), *out = malloc(strlen(text) + 2), *p = out;
    size_t cnt = 0;
    char **lines = calloc(strlen(text) + 1, sizeof *lines);
    assert_true(copy && out && lines);
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        lines[cnt++] = l;
    qsort(lines, cnt, sizeof *lines, cmp_lines);
    out[0] = '\0';
    for (size_t i = 0; i < cnt; i++) p += sprintf(p, "%s\n", lines[i]);
    free(lines);
    free(copy);
    return out;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

typedef struct query {
    const char *sql;        /* %1$s: the stream */
    const char *oracle;     /* the same over the table recs, all rows at once */
    int         one_queue;  /* LIMIT: compared over 1 queue only; 2: rows compared sorted
                               over 3 queues (emitted as keys are first seen, in arrival
                               order, and the queues' interleaving is not defined) */
} query_t;

/* TUMBLE 2 s windows of the oracle: a(window_start, window_end, svc, n, m). */
#define ORACLE_T2 "WITH a AS (SELECT at - at % 2000 AS window_start, at - at % 2000 + 2000 AS " \
                  "window_end, svc, count(*) AS n, max(lat) AS m FROM recs GROUP BY 1, 2, svc)"

static const query_t corpus[] = {
    /* top 3 services per window by count; ties broken by the columns (svc) */
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end "
     "ORDER BY n DESC) AS rn FROM (SELECT window_start, window_end, svc, count(*) AS n, "
     "max(lat) AS m FROM %1$s GROUP BY TUMBLE(ts, '2s'), svc)) WHERE rn <= 3",
     ORACLE_T2 ", r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end "
     "ORDER BY n DESC, window_start, window_end, svc, n, m) AS rn FROM a) SELECT * FROM r "
     "WHERE rn <= 3 ORDER BY window_start, window_end, rn", 0},
    /* RANK keeps ties: the services with the highest max(lat) (often several) */
    {"SELECT window_start, svc, m, rk FROM (SELECT *, RANK() OVER (PARTITION BY window_start, "
     "window_end ORDER BY m DESC) AS rk FROM (SELECT window_start, window_end, svc, count(*) AS "
     "n, max(lat) AS m FROM %1$s GROUP BY TUMBLE(ts, '2s'), svc)) WHERE rk = 1",
     ORACLE_T2 ", r AS (SELECT *, RANK() OVER (PARTITION BY window_start, window_end ORDER BY "
     "m DESC) AS rk, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY m DESC, "
     "window_start, window_end, svc, n, m) AS o FROM a) SELECT window_start, svc, m, rk FROM r "
     "WHERE rk = 1 ORDER BY window_start, window_end, o", 0},
    /* DENSE_RANK, ascending, N larger than any partition (7 services): every row */
    {"SELECT * FROM (SELECT svc, window_start, window_end, m, DENSE_RANK() OVER (PARTITION BY "
     "window_start, window_end ORDER BY m ASC) AS d FROM (SELECT window_start, window_end, svc, "
     "count(*) AS n, max(lat) AS m FROM %1$s GROUP BY TUMBLE(ts, '2s'), svc)) WHERE d <= 100",
     ORACLE_T2 ", r AS (SELECT svc, window_start, window_end, m, DENSE_RANK() OVER (PARTITION "
     "BY window_start, window_end ORDER BY m) AS d, ROW_NUMBER() OVER (PARTITION BY "
     "window_start, window_end ORDER BY m, window_start, window_end, svc, n, m) AS o FROM a) "
     "SELECT svc, window_start, window_end, m, d FROM r WHERE d <= 100 ORDER BY window_start, "
     "window_end, o", 0},
    /* deduplication per key within HOP windows: the most frequent level per svc (keep
     * first by count, ties by level), outer projection with an alias, rn < 2 */
    {"SELECT window_start, svc AS service, level, n FROM (SELECT *, ROW_NUMBER() OVER "
     "(PARTITION BY window_start, window_end, svc ORDER BY n DESC) AS rn FROM (SELECT "
     "window_start, window_end, svc, level, count(*) AS n FROM %1$s GROUP BY HOP(ts, '4s', "
     "'2s'), svc, level)) WHERE rn < 2",
     "WITH a AS (SELECT at - at % 2000 - k * 2000 AS window_start, at - at % 2000 - k * 2000 "
     "+ 4000 AS window_end, svc, level, count(*) AS n FROM recs, hops GROUP BY 1, 2, svc, "
     "level), r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, svc "
     "ORDER BY n DESC, window_start, window_end, svc, level, n) AS rn FROM a) SELECT "
     "window_start, svc, level, n FROM r WHERE rn < 2 ORDER BY window_start, window_end, svc",
     0},
    /* a window TVF aggregate with HAVING inside, two ORDER BY keys */
    {"SELECT * FROM (SELECT window_start, svc, total, c, ROW_NUMBER() OVER (PARTITION BY "
     "window_start ORDER BY total DESC, c ASC) AS rn FROM (SELECT window_start, window_end, "
     "svc, sum(lat) AS total, count(*) AS c FROM TABLE(TUMBLE(TABLE %1$s, DESCRIPTOR(ts), "
     "INTERVAL '5' SECOND)) WHERE level <> 'DEBUG' GROUP BY window_start, window_end, svc "
     "HAVING count(*) > 3)) WHERE rn <= 2",
     "WITH a AS (SELECT at - at % 5000 AS window_start, at - at % 5000 + 5000 AS window_end, "
     "svc, sum(lat) AS total, count(*) AS c FROM recs WHERE level <> 'DEBUG' GROUP BY 1, 2, "
     "svc HAVING count(*) > 3), r AS (SELECT window_start, svc, total, c, ROW_NUMBER() OVER "
     "(PARTITION BY window_start ORDER BY total DESC, c, window_start, window_end, svc, total, "
     "c) AS rn FROM a) SELECT * FROM r WHERE rn <= 2 ORDER BY window_start, rn", 0},
    /* the rows of a window TVF (Nexmark q7's shape): top 2 records per window by lat */
    {"SELECT * FROM (SELECT window_start, window_end, svc, lat, ts, level, ROW_NUMBER() OVER "
     "(PARTITION BY window_start, window_end ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE(TABLE "
     "%1$s, DESCRIPTOR(ts), INTERVAL '2' SECOND))) WHERE rn <= 2",
     "WITH a AS (SELECT at - at % 2000 AS window_start, at - at % 2000 + 2000 AS window_end, "
     "svc, lat, at AS ts, level FROM recs), r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
     "window_start, window_end ORDER BY lat DESC, window_start, window_end, svc, lat, ts, level) "
     "AS rn FROM a) SELECT * FROM r WHERE rn <= 2 ORDER BY window_start, window_end, rn", 0},
    /* keep last per key and window (Nexmark q18's shape, per window), a filter inside */
    {"SELECT svc, ts, lat FROM (SELECT window_start, window_end, svc, ts, lat, ROW_NUMBER() "
     "OVER (PARTITION BY window_start, window_end, svc ORDER BY ts DESC) AS rn FROM TABLE("
     "TUMBLE(TABLE %1$s, DESCRIPTOR(ts), INTERVAL '3' SECOND)) WHERE level <> 'DEBUG') WHERE "
     "rn = 1",
     "WITH a AS (SELECT at - at % 3000 AS window_start, at - at % 3000 + 3000 AS window_end, "
     "svc, at AS ts, lat FROM recs WHERE level <> 'DEBUG'), r AS (SELECT *, ROW_NUMBER() OVER "
     "(PARTITION BY window_start, window_end, svc ORDER BY ts DESC) AS rn FROM a) SELECT svc, "
     "ts, lat FROM r WHERE rn = 1 ORDER BY window_start, window_end, svc", 0},
    /* keep first per key in HOP windows, RANK */
    {"SELECT * FROM (SELECT window_start, window_end, level, ts, svc, RANK() OVER (PARTITION BY "
     "window_start, window_end, level ORDER BY ts ASC) AS rk FROM TABLE(HOP(TABLE %1$s, "
     "DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND))) WHERE rk <= 1",
     "WITH a AS (SELECT at - at % 1000 - k * 1000 AS window_start, at - at % 1000 - k * 1000 + "
     "2000 AS window_end, level, at AS ts, svc FROM recs, hops), r AS (SELECT *, RANK() OVER "
     "(PARTITION BY window_start, window_end, level ORDER BY ts) AS rk FROM a) SELECT * FROM r "
     "WHERE rk <= 1 ORDER BY window_start, window_end, level", 0},
    /* DENSE_RANK over a TVF's rows, ascending (NULLs first), N beyond some partitions */
    {"SELECT * FROM (SELECT window_start, window_end, svc, lat, ts, DENSE_RANK() OVER "
     "(PARTITION BY window_start, window_end, svc ORDER BY lat) AS d FROM TABLE(TUMBLE(TABLE "
     "%1$s, DESCRIPTOR(ts), INTERVAL '2' SECOND))) WHERE d <= 3",
     "WITH a AS (SELECT at - at % 2000 AS window_start, at - at % 2000 + 2000 AS window_end, "
     "svc, lat, at AS ts FROM recs), r AS (SELECT *, DENSE_RANK() OVER (PARTITION BY "
     "window_start, window_end, svc ORDER BY lat) AS d FROM a) SELECT * FROM r WHERE d <= 3 "
     "ORDER BY window_start, window_end, svc, lat, svc, lat, ts", 0},
    /* keep first per key over the stream, no window: when the key is first seen */
    {"SELECT svc, level, ts, lat FROM (SELECT svc, level, ts, lat, ROW_NUMBER() OVER (PARTITION "
     "BY svc, level ORDER BY ts ASC) AS rn FROM %1$s WHERE lat > 3) WHERE rn = 1",
     "SELECT svc, level, ts, lat FROM (SELECT svc, level, at AS ts, lat, ROW_NUMBER() OVER "
     "(PARTITION BY svc, level ORDER BY at) AS rn FROM recs WHERE lat > 3) WHERE rn = 1 "
     "ORDER BY ts", 2},
    /* LIMIT over the ranked rows */
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end "
     "ORDER BY n DESC) AS rn FROM (SELECT window_start, window_end, svc, count(*) AS n, "
     "max(lat) AS m FROM %1$s GROUP BY TUMBLE(ts, '2s'), svc)) WHERE rn <= 2 LIMIT 17",
     ORACLE_T2 ", r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end "
     "ORDER BY n DESC, window_start, window_end, svc, n, m) AS rn FROM a) SELECT * FROM r "
     "WHERE rn <= 2 ORDER BY window_start, window_end, rn LIMIT 17", 1},
};

static void expect_same(const char *tmpl, const char *want, const char *got, const char *label)
{
    if (strcmp(want, got) != 0)
        fail_msg("(seed printed above) %s\n  differs over %s\n  1 queue, one record per batch:"
                 "\n%.1500s\n  %s:\n%.1500s", tmpl, label, want, label, got);
}

/* In order: every query, every batching, 1 and 3 queues, and the oracle. */
static void test_topn_batching_and_oracle(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(0);
    rec_t *r = make_records(0);
    produce_all(f, "", r);
    sqlite3 *db = oracle_db(r);
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        const query_t *c = &corpus[i];
        char *ref = run(f, c->sql, "s1_0", NULL);
        assert_true(count_lines(ref) > 10);
        char *want = oracle_rows(db, c->oracle, "late=0 errors=0\n");
        if (strcmp(want, ref) != 0)
            fail_msg("(seed printed above) %s\n  differs from sqlite's\n  %s\n  engine:\n%.2000s"
                     "\n  sqlite:\n%.2000s", c->sql, c->oracle, ref, want);
        free(want);
        for (int m = 0; m < NMODES; m++)
            for (int nq = 1; nq <= 3; nq += 2) {
                if (nq == 3 && c->one_queue == 1) continue;
                char s[32], label[80];
                snprintf(s, sizeof s, "s%d_%d", nq, m);
                char *got = run(f, c->sql, s, NULL);
                snprintf(label, sizeof label, "%d queue(s), %s", nq, mode_names[m]);
                if (nq == 3 && c->one_queue == 2) {
                    char *gs = sorted(got), *rs = sorted(ref);
                    expect_same(c->sql, rs, gs, label);
                    free(gs);
                    free(rs);
                } else {
                    expect_same(c->sql, ref, got, label);
                }
                free(got);
            }
        free(ref);
    }
    sqlite3_close(db);
    free(r);
}

/* Out of order, watermark 0: rows of closed windows are late, decided record
 * by record, so over 1 queue every batching gives the same rows and count. */
static void test_topn_late_rows(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(1);
    rec_t *r = make_records(1500);
    produce_all(f, "d", r);
    sqlite3 *db = oracle_db(r);
    const query_t *c = &corpus[0];
    char *ref = run(f, c->sql, "ds1_0", "WITH (watermark = '0s')");
    assert_null(strstr(ref, "late=0 "));         /* the disorder made rows late */
    for (int m = 0; m < NMODES; m++) {
        char s[32], label[80];
        snprintf(s, sizeof s, "ds1_%d", m);
        char *got = run(f, c->sql, s, "WITH (watermark = '0s')");
        snprintf(label, sizeof label, "1 queue, %s, watermark 0", mode_names[m]);
        expect_same(c->sql, ref, got, label);
        free(got);
        /* a watermark covering the disorder: nothing late, sqlite's rows, any queues */
        for (int nq = 1; nq <= 3; nq += 2) {
            snprintf(s, sizeof s, "ds%d_%d", nq, m);
            got = run(f, c->sql, s, "WITH (watermark = '2s')");
            char *want = oracle_rows(db, c->oracle, "late=0 errors=0\n");
            snprintf(label, sizeof label, "%d queue(s), %s, watermark 2s", nq, mode_names[m]);
            expect_same(c->oracle, want, got, label);
            free(want);
            free(got);
        }
    }
    free(ref);
    sqlite3_close(db);
    free(r);
}

/* Ties: every row of a window has the same count; ROW_NUMBER breaks them by
 * the other columns (svc ascending), RANK keeps them all. */
static void test_topn_ties(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "ties", 1);
    create_stream(f, "ties_s", "ties");
    const char *svc_order[] = {"web", "api", "db", "auth"};
    for (int w = 0; w < 3; w++)
        for (int k = 0; k < 4; k++) {
            char json[128];
            int64_t at = BASE_TS + w * 1000 + k * 10;
            snprintf(json, sizeof json, "{\"at\":%lld,\"level\":\"INFO\",\"svc\":\"%s\","
                     "\"lat\":5}", (long long)at, svc_order[(k + w) % 4]);
            produce1(f, "ties", at, json);
        }
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    const char *q = "SELECT window_start, svc, rn FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
                    "window_start, window_end ORDER BY n DESC) AS rn FROM (SELECT window_start, "
                    "window_end, svc, count(*) AS n FROM ties_s GROUP BY TUMBLE(ts, '1s'), svc)) "
                    "WHERE rn <= 2";
    if (run_sql(f, q, NULL, &out, &off, err, NULL) != 0) fail_msg("%s", err);
    assert_string_equal(out, "1700000000000|api|1\n1700000000000|auth|2\n"
                             "1700000001000|api|1\n1700000001000|auth|2\n"
                             "1700000002000|api|1\n1700000002000|auth|2\n");
    free(out);
    q = "SELECT window_start, svc, rk FROM (SELECT *, RANK() OVER (PARTITION BY window_start, "
        "window_end ORDER BY n DESC) AS rk FROM (SELECT window_start, window_end, svc, count(*) AS "
        "n FROM ties_s GROUP BY TUMBLE(ts, '1s'), svc)) WHERE rk <= 1 LIMIT 5";
    if (run_sql(f, q, NULL, &out, &off, err, NULL) != 0) fail_msg("%s", err);
    assert_string_equal(out, "1700000000000|api|1\n1700000000000|auth|1\n1700000000000|db|1\n"
                             "1700000000000|web|1\n1700000001000|api|1\n");
    free(out);
    /* a record that came twice is two equal rows of a TVF's window: both ranked */
    produce1(f, "ties", BASE_TS + 5000, "{\"at\":1700000005000,\"level\":\"INFO\",\"svc\":"
             "\"api\",\"lat\":7}");
    produce1(f, "ties", BASE_TS + 5001, "{\"at\":1700000005001,\"level\":\"INFO\",\"svc\":"
             "\"db\",\"lat\":7}");
    produce1(f, "ties", BASE_TS + 5000, "{\"at\":1700000005000,\"level\":\"INFO\",\"svc\":"
             "\"api\",\"lat\":7}");
    q = "SELECT svc, ts, rn FROM (SELECT window_start, window_end, svc, lat, ts, ROW_NUMBER() "
        "OVER (PARTITION BY window_start, window_end ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE("
        "TABLE ties_s, DESCRIPTOR(ts), INTERVAL '1' SECOND))) WHERE rn <= 3 AND 1 = 1";
    assert_int_not_equal(run_sql(f, q, NULL, &out, &off, err, NULL), 0);
    free(out);
    q = "SELECT svc, ts, rn FROM (SELECT window_start, window_end, svc, lat, ts, ROW_NUMBER() "
        "OVER (PARTITION BY window_start, window_end ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE("
        "TABLE ties_s, DESCRIPTOR(ts), INTERVAL '1' SECOND)) WHERE ts >= 1700000005000) WHERE "
        "rn <= 3";
    if (run_sql(f, q, NULL, &out, &off, err, NULL) != 0) fail_msg("%s", err);
    assert_string_equal(out, "api|1700000005000|1\napi|1700000005000|2\ndb|1700000005001|3\n");
    free(out);
}

typedef struct refusal {
    const char *sql;
    const char *msg;       /* a prefix of the error */
    const char *at;        /* the error points at this text's first occurrence */
} refusal_t;

#define INNER "(SELECT window_start, window_end, svc, count(*) AS n FROM rs GROUP BY " \
              "TUMBLE(ts, '1s'), svc)"

static const refusal_t refusals[] = {
    {"SELECT svc, row_number() OVER (ORDER BY lat) FROM rs",
     "window function row_number() OVER (...) is not supported on streams", "row_number"},
    {"SELECT svc, lag(lat) OVER (PARTITION BY svc) FROM rs",
     "window function lag() OVER (...) is not supported", "lag"},
    {"SELECT svc, sum(lat) OVER () FROM rs", "window function sum() OVER (...)", "sum"},
    {"SELECT * FROM (SELECT svc, lat FROM rs) WHERE lat > 1",
     "a subquery in FROM is supported only as a Window TopN", "svc"},
    {"SELECT * FROM (SELECT *, lag(n) OVER (PARTITION BY window_start ORDER BY n) AS p FROM "
     INNER ") WHERE p <= 1", "the ranking SELECT of a TopN takes *", "lag"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY svc ORDER BY n DESC) AS rn FROM "
     INNER ") WHERE rn <= 3", "a TopN ranks each window on its own", "svc ORDER"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (ORDER BY n DESC) AS rn FROM " INNER
     ") WHERE rn <= 3", "OVER (...) of a TopN starts with PARTITION BY", "ORDER BY n"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC "
     "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rn FROM " INNER ") WHERE rn <= 3",
     "unexpected in a TopN's OVER (...)", "ROWS"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM " INNER ") WHERE rn > 3", "the outer WHERE of a TopN is rn <= N", "rn >"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM " INNER ") WHERE rn <= 3 AND n > 2", "the outer WHERE of a TopN is rn <= N",
     "AND"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM " INNER ") WHERE rn = 2", "the outer WHERE of a TopN is rn <= N", "rn = 2"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "FROM " INNER ") WHERE rn <= 3", "name the rank", "FROM (SELECT window_start"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY x DESC) "
     "AS rn FROM " INNER ") WHERE rn <= 3", "ORDER BY x: the subquery has no such column", "x DESC"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM (SELECT svc, count(*) AS n FROM rs GROUP BY svc)) WHERE rn <= 3",
     "a TopN ranks the rows of each window when it closes", "SELECT *"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY svc ORDER BY ts DESC) AS rn "
     "FROM rs) WHERE rn = 1", "over a stream without a window only keep-first", "rs)"},
    {"SELECT * FROM (SELECT svc, ts, ROW_NUMBER() OVER (PARTITION BY svc ORDER BY ts) AS rn "
     "FROM rs) WHERE rn <= 3", "over a stream without a window only keep-first", "rn <= 3"},
    {"SELECT * FROM (SELECT svc, ts, RANK() OVER (PARTITION BY svc ORDER BY ts) AS rn "
     "FROM rs) WHERE rn = 1", "over a stream without a window only keep-first", "rs)"},
    {"SELECT * FROM (SELECT svc, ts, ROW_NUMBER() OVER (PARTITION BY svc ORDER BY lat) AS rn "
     "FROM rs) WHERE rn = 1", "over a stream without a window only keep-first", "rs)"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM " INNER ") WHERE rn <= 3 EMIT CHANGES", "a TopN ranks the final rows", "EMIT"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER "
     "BY n DESC) AS rn FROM (SELECT window_start, window_end, svc, count(*) AS n FROM rs GROUP BY "
     "SESSION(ts, '1s'), svc)) WHERE rn <= 3 AND 1", "the outer WHERE", "AND"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM (SELECT window_start, window_end, svc, count(*) AS n FROM rs GROUP BY "
     "SESSION(ts, '1s'), svc)) WHERE rn <= 3", "a TopN ranks each window on its own",
     "window_start ORDER"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n DESC) "
     "AS rn FROM " INNER ") WHERE rn <= 3 AND x", "the outer WHERE", "AND"},
    {"SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY lat DESC) "
     "AS rn FROM TABLE(TUMBLE(TABLE rs, DESCRIPTOR(ts), INTERVAL '1' SECOND))) WHERE rn <= 1",
     "a TopN over a window TVF's rows names its columns", "*, ROW"},
    {"SELECT * FROM (SELECT window_start, lat, ROW_NUMBER() OVER (PARTITION BY window_start "
     "ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE(TABLE rs, DESCRIPTOR(ts), INTERVAL '1' "
     "SECOND)) GROUP BY window_start) WHERE rn <= 1", "a TopN over a window TVF ranks its rows",
     "GROUP BY window_start)"},
    {"SELECT * FROM (SELECT window_start, window_end, svc, ROW_NUMBER() OVER (PARTITION BY "
     "window_start, window_end ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE(TABLE rs, "
     "DESCRIPTOR(ts), INTERVAL '1' SECOND)) WHERE nosuch > 1) WHERE rn <= 1",
     "unknown column 'nosuch'", "nosuch"},
    {"SELECT svc, __rn_topn(lat) FROM rs GROUP BY svc", "names starting with __ are the engine's",
     "__rn_topn("},
    {"SELECT __rn_topn_row('0:1:0:0', lat) FROM rs", "names starting with __ are the engine's",
     "__rn_topn_row"},
    {"SELECT svc, rank FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start ORDER BY n "
     "DESC) AS rn FROM " INNER ") WHERE rn <= 3", "column rank: the TopN's ranking SELECT has "
     "no such column", "rank FROM"},
};

static void test_topn_refusals(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "rt", 1);
    create_stream(f, "rs", "rt");
    produce1(f, "rt", BASE_TS, "{\"at\":1700000000000,\"level\":\"INFO\",\"svc\":\"a\",\"lat\":1}");
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const refusal_t *c = &refusals[i];
        char *out = NULL, err[RN_ERRMSG_SIZE] = "";
        int off = -2;
        int rc = run_sql(f, c->sql, NULL, &out, &off, err, NULL);
        free(out);
        if (rc == 0) fail_msg("accepted: %s", c->sql);
        if (strncmp(err, c->msg, strlen(c->msg)) != 0)
            fail_msg("%s\n  error: %s\n  expected it to start: %s", c->sql, err, c->msg);
        const char *at = strstr(c->sql, c->at);
        assert_non_null(at);
        if (off != (int)(at - c->sql))
            fail_msg("%s\n  error: %s\n  at offset %d, expected %d ('%s')", c->sql, err, off,
                     (int)(at - c->sql), c->at);
    }
}

/* The largest checkpoint state (rn_sql_state_save between steps) of sql over
 * stream s, one batch per step. */
static size_t max_state(sqlfix_t *f, const char *sql)
{
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = collect_row;
    o.ctx = &r;
    rn_sql_t *q = NULL;
    char err[RN_ERRMSG_SIZE];
    int off;
    if (rn_sql_open(f->d, sql, strlen(sql), &o, &q, &off, err) != 0) fail_msg("%s: %s", sql, err);
    size_t most = 0;
    rn_sql_state_t st = RN_SQL_MORE;
    while (st != RN_SQL_DONE) {
        rn_buf_t b = RN_BUF_INIT;
        if (rn_sql_state_save(q, &b, err) != 0) fail_msg("save: %s", err);
        if (b.len > most) most = b.len;
        rn_buf_free(&b);
        if (rn_sql_step(q, &st, err) != 0) fail_msg("step: %s", err);
    }
    rn_sql_close(q);
    assert_true(r.n > 0);
    rn_buf_free(&r.text);
    return most;
}

/* The rows form keeps at most N rows per window and partition (topn.c
 * invariant 4): over one window of 3000 records (one record per batch), its
 * saved state stays near what 7 partitions x 2 rows take, while keeping the
 * window's rows (a grouping by every column) grows with the records. */
static void test_topn_rows_state_bounded(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(2);
    rec_t *r = make_records(0);
    topic(f, "bt", 1);
    produce_mode(f, "bt", 1, ONE_PER_BATCH, r);
    create_stream(f, "bs", "bt");
    size_t topn = max_state(f, "SELECT svc, lat, ts FROM (SELECT window_start, window_end, svc, "
                            "lat, ts, ROW_NUMBER() OVER (PARTITION BY window_start, window_end, "
                            "svc ORDER BY lat DESC) AS rn FROM TABLE(TUMBLE(TABLE bs, "
                            "DESCRIPTOR(ts), INTERVAL '1' DAY))) WHERE rn <= 2");
    size_t all = max_state(f, "SELECT window_start, svc, lat, ts, count(*) FROM bs "
                           "GROUP BY TUMBLE(ts, '1d'), svc, lat, ts");
    printf("rows-form state: %zu bytes at most; every row kept: %zu bytes\n", topn, all);
    assert_true(topn < 8192);
    assert_true(all > 20 * topn);
    free(r);
}

/* EXPLAIN shows the ranking. */
static void test_topn_explain(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "et", 1);
    create_stream(f, "es", "et");
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, "EXPLAIN SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY "
                "window_start, window_end ORDER BY n DESC) AS rn FROM (SELECT window_start, "
                "window_end, svc, count(*) AS n FROM es GROUP BY TUMBLE(ts, '1s'), svc)) "
                "WHERE rn <= 3", NULL, &out, &off, err, NULL) != 0)
        fail_msg("%s", err);
    if (!strstr(out, "topn: ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY "
                     "n DESC) AS rn, keeping rn <= 3"))
        fail_msg("%s", out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_topn_batching_and_oracle, sqlfix_setup,
                                        sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_topn_late_rows, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_topn_ties, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_topn_refusals, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_topn_explain, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_topn_rows_state_bounded, sqlfix_setup,
                                        sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

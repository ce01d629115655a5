/*
 * test_streamsql_batching.c — a query's result never depends on how the
 * producer cut the records into batches (ISSUE 11 §5).
 *
 * The same records (seeded; the seed is printed, RN_SEED=N repeats a run)
 * are produced into several topics that differ only in batching and queue
 * count: one record per batch, random batch sizes (1..300), one big batch
 * per queue; over 1 queue and over 3 queues (records partitioned by key,
 * svc, as a Kafka producer does). A corpus of queries — filters,
 * projections, subqueries over the record's JSON, SELECT DISTINCT, TUMBLE,
 * HOP, SESSION, HAVING, count(DISTINCT), global aggregates (also over no
 * rows), GROUP BY keys without a window, key expressions, EMIT CHANGES,
 * LIMIT — runs over each, with the late and rejected counts appended to the
 * rows. The rule:
 *
 *  - over 1 queue every batching gives byte-identical output, rows in the
 *    same order (LIMIT included);
 *  - over 3 queues the interleaving of the queues is not defined, so the
 *    rows are compared as sorted lines, and must equal the 1-queue rows
 *    sorted; LIMIT without ORDER BY picks rows in an undefined order across
 *    queues, so LIMIT queries are compared over 1 queue only. Aggregates
 *    that depend on arrival order (first, last, EMIT CHANGES' intermediate
 *    values) are deterministic here because every group's records are in
 *    one queue (partitioned by svc);
 *  - records out of event-time order with watermark 0: which rows are late
 *    is decided record by record (the frontier moves over every record,
 *    the filtered ones included), so over 1 queue the output and the late
 *    count are the same for every batching; over 3 queues lateness would
 *    depend on the interleaving, so a watermark covering the disorder is
 *    used there.
 *
 * The bounded queries without a window are also checked against plain
 * sqlite3 over a table of the same records (in record order: exact rows
 * for plain queries, sorted rows for GROUP BY).
 */
#include "tests/test_streamsql_util.h"

#include <sqlite3.h>
#include <time.h>

#define NREC     2400
#define BASE_TS  1700000000000ll

static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const svcs[] = {"api", "db", "auth", "web", "queue", "cache", "mail"};

typedef struct rec {
    int64_t at;
    int     level, svc, lat, ntags;    /* lat -1: null */
    double  bytes;
    char    json[200];
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
    printf("streamsql batching seed %llu (RN_SEED=%llu repeats it)\n", (unsigned long long)s,
           (unsigned long long)(s - salt));
    return s;
}

/* Records in event-time order, or with up to `jitter` ms of disorder. */
static rec_t *make_records(int64_t jitter)
{
    rec_t *r = calloc(NREC, sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < NREC; i++) {
        r[i].at = BASE_TS + (int64_t)i * 37 +
                  (jitter ? (int64_t)(next_rand() % (uint64_t)jitter) : 0);
        r[i].level = (int)(next_rand() % 4);
        r[i].svc = (int)(next_rand() % 7);
        r[i].lat = next_rand() % 10 == 0 ? -1 : (int)(next_rand() % 1000);
        r[i].bytes = (double)(next_rand() % 4000) / 4.0;
        r[i].ntags = (int)(next_rand() % 4);
        char lat[16], tags[32] = "[";
        if (r[i].lat < 0) snprintf(lat, sizeof lat, "null");
        else snprintf(lat, sizeof lat, "%d", r[i].lat);
        for (int k = 0; k < r[i].ntags; k++)
            snprintf(tags + strlen(tags), sizeof tags - strlen(tags), "%s\"t%d\"", k ? "," : "", k);
        strcat(tags, "]");
        snprintf(r[i].json, sizeof r[i].json,
                 "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"%s\",\"lat\":%s,\"bytes\":%.2f,"
                 "\"tags\":%s}", (long long)r[i].at, levels[r[i].level], svcs[r[i].svc], lat,
                 r[i].bytes, tags);
    }
    return r;
}

enum { ONE_PER_BATCH, RANDOM_BATCHES, ONE_BIG_BATCH, NMODES };
static const char *const mode_names[] = {"one record per batch", "random batches (1..300)",
                                         "one big batch per queue"};

/* Produce the records as a producer partitioning by svc over nq queues
 * would: each queue's records in their order, cut into batches per mode. */
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
    snprintf(sql, sizeof sql, "CREATE STREAM %s (at INTEGER, level TEXT, svc TEXT, lat INTEGER, "
             "bytes REAL, tags JSON) WITH (topic = '%s', timestamp = 'at')", name, t);
    if (run_sql(f, sql, NULL, &out, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(out);
}

typedef struct query {
    const char *sql;        /* %1$s: the stream */
    int         one_queue;  /* compared over 1 queue only (LIMIT) */
    const char *oracle;     /* the same over the table recs, or NULL */
    int         sorted;     /* oracle rows compared sorted */
} query_t;

static const query_t corpus[] = {
    /* filters and projections */
    {"SELECT svc, lat, level FROM %1$s WHERE lat > 500", 0,
     "SELECT svc, lat, level FROM recs WHERE lat > 500", 0},
    {"SELECT upper(svc) || '/' || level AS k, lat * 2 + 1 AS x, bytes FROM %1$s "
     "WHERE level IN ('WARN', 'ERROR') AND lat IS NOT NULL", 0,
     "SELECT upper(svc) || '/' || level AS k, lat * 2 + 1 AS x, bytes FROM recs "
     "WHERE level IN ('WARN', 'ERROR') AND lat IS NOT NULL", 0},
    /* subqueries over the record's own JSON (allowed: per record) */
    {"SELECT svc, (SELECT count(*) FROM json_each(%1$s.tags)) AS n FROM %1$s "
     "WHERE level IN (SELECT value FROM json_each('[\"WARN\",\"ERROR\"]'))", 0,
     "SELECT svc, ntags FROM recs WHERE level IN ('WARN', 'ERROR')", 0},
    {"SELECT svc, lat FROM %1$s WHERE lat < 100 LIMIT 25", 1,
     "SELECT svc, lat FROM recs WHERE lat < 100 LIMIT 25", 0},
    /* SELECT DISTINCT: each row once, when first seen */
    {"SELECT DISTINCT svc, level FROM %1$s WHERE lat > 900", 0,
     "SELECT DISTINCT svc, level FROM recs WHERE lat > 900", 1},
    {"SELECT DISTINCT lat / 100 AS bucket, svc FROM %1$s", 0,
     "SELECT DISTINCT lat / 100 AS bucket, svc FROM recs", 1},
    /* global aggregates, also over no rows */
    {"SELECT count(*), sum(lat), count(DISTINCT svc), min(at), max(at), total(bytes) FROM %1$s",
     0, "SELECT count(*), sum(lat), count(DISTINCT svc), min(at), max(at), total(bytes) FROM recs",
     0},
    {"SELECT count(*), sum(lat), avg(bytes) FROM %1$s WHERE lat > 5000", 0,
     "SELECT count(*), sum(lat), avg(bytes) FROM recs WHERE lat > 5000", 0},
    {"SELECT sum((SELECT count(*) FROM json_each(%1$s.tags))) AS tags FROM %1$s", 0,
     "SELECT sum(ntags) FROM recs", 0},
    /* GROUP BY keys without a window; key expressions matched as operands */
    {"SELECT svc, level, count(*), avg(bytes), first(lat), last(lat) FROM %1$s "
     "GROUP BY svc, level", 0, NULL, 0},
    {"SELECT lat %% 7 + 1 * 2 AS x, (lat %% 7 + 1) * 2 AS y, count(*) FROM %1$s "
     "GROUP BY lat %% 7 + 1, lat %% 7", 0,
     "SELECT lat % 7 + 1 * 2 AS x, (lat % 7 + 1) * 2 AS y, count(*) FROM recs "
     "GROUP BY lat % 7 + 1, lat % 7", 1},
    {"SELECT svc, count(*) AS n FROM %1$s GROUP BY svc HAVING avg(lat) > 400", 0,
     "SELECT svc, count(*) AS n FROM recs GROUP BY svc HAVING avg(lat) > 400", 1},
    /* every window kind, HAVING, DISTINCT */
    {"SELECT window_start, window_end, svc, count(*), sum(lat), avg(lat), min(level), "
     "max(bytes), count(DISTINCT level), first(lat), last(lat) FROM %1$s "
     "GROUP BY TUMBLE(ts, '2s'), svc", 0, NULL, 0},
    {"SELECT window_start, svc, count(*), total(bytes) FROM %1$s WHERE lat IS NOT NULL "
     "GROUP BY HOP(ts, '4s', '1s'), svc", 0, NULL, 0},
    {"SELECT window_start, window_end, svc, count(*), max(lat), first(level) FROM %1$s "
     "GROUP BY SESSION(ts, '400ms'), svc", 0, NULL, 0},
    {"SELECT window_start, level, count(*) AS n FROM %1$s GROUP BY TUMBLE(ts, '5s'), level "
     "HAVING count(*) > 10 AND avg(lat) > 400", 0, NULL, 0},
    {"SELECT window_start, count(DISTINCT svc), count(DISTINCT level) FROM %1$s "
     "WHERE level <> 'DEBUG' GROUP BY TUMBLE(ts, '3s')", 0, NULL, 0},
    {"SELECT window_start, svc, count(*), sum(lat) FROM %1$s GROUP BY TUMBLE(ts, '3s'), svc "
     "EMIT CHANGES", 0, NULL, 0},
    {"SELECT window_start, svc, count(*) FROM %1$s GROUP BY TUMBLE(ts, '1s'), svc LIMIT 40", 1,
     NULL, 0},
    /* the statistical aggregates, sketches and FILTER (each group's rows in one queue, so
     * Welford's running sums see them in the same order) */
    {"SELECT window_start, svc, stddev(lat), stddev_pop(bytes), variance(lat), var_pop(lat), "
     "approx_count_distinct(level), percentile_approx(lat, 0.9), count(*) FILTER (WHERE lat > "
     "500), avg(bytes) FILTER (WHERE level = 'ERROR') FROM %1$s GROUP BY TUMBLE(ts, '2s'), svc",
     0, NULL, 0},
    {"SELECT window_start, window_end, svc, var_samp(lat), percentile_approx(bytes, 0.5), "
     "approx_count_distinct(lat) FILTER (WHERE level <> 'DEBUG') FROM %1$s "
     "GROUP BY SESSION(ts, '400ms'), svc", 0, NULL, 0},
    {"SELECT window_start, svc, stddev(lat) FROM %1$s GROUP BY HOP(ts, '4s', '1s'), svc "
     "EMIT CHANGES", 0, NULL, 0},
    /* order-independent sketches over every queue */
    {"SELECT approx_count_distinct(lat), percentile_approx(lat, 0.5), percentile_approx(bytes, "
     "0.99), count(*) FILTER (WHERE level = 'WARN') FROM %1$s", 0, NULL, 0},
};

/* Records out of order, watermark 0: late rows decided record by record. */
static const char *const late_corpus[] = {
    "SELECT window_start, count(*), sum(lat) FROM %1$s WHERE level = 'ERROR' "
    "GROUP BY TUMBLE(ts, '1s')",
    "SELECT window_start, svc, count(*) FROM %1$s WHERE lat > 300 GROUP BY HOP(ts, '2s', '500ms'), svc",
    "SELECT window_start, window_end, count(*) FROM %1$s WHERE level <> 'INFO' "
    "GROUP BY SESSION(ts, '100ms')",
    "SELECT window_start, svc, count(*) FROM %1$s GROUP BY TUMBLE(ts, '1s'), svc EMIT CHANGES",
};

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *sorted(const char *text)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    size_t cnt = 0, cap = 64;
    char **lines = malloc(cap * sizeof *lines);
    assert_non_null(lines);
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (cnt == cap) {
            lines = realloc(lines, (cap *= 2) * sizeof *lines);
            assert_non_null(lines);
        }
        lines[cnt++] = l;
    }
    qsort(lines, cnt, sizeof *lines, cmp_lines);
    char *out = malloc(strlen(text) + 2), *p = out;
    assert_non_null(out);
    out[0] = '\0';
    for (size_t i = 0; i < cnt; i++) p += sprintf(p, "%s\n", lines[i]);
    free(lines);
    free(copy);
    return out;
}

/* Rows of sql over stream s, then "late=N errors=N". */
static char *run(sqlfix_t *f, const char *tmpl, const char *s, const char *with)
{
    char sql[2048], *out, err[RN_ERRMSG_SIZE];
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

/* Topics t<nq>_<mode> with streams s<nq>_<mode>, same records. */
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

static void expect_same(const char *what, const char *tmpl, const char *want, const char *got,
                        const char *label)
{
    char sql[2048];
    snprintf(sql, sizeof sql, tmpl, "s");
    if (strcmp(want, got) != 0)
        fail_msg("(seed printed above) %s: %s\n  differs over %s\n  1 queue, one record per "
                 "batch:\n%.1500s\n  %s:\n%.1500s", what, sql, label, want, label, got);
}

static sqlite3 *oracle_db(const rec_t *r)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE recs(at INTEGER, level TEXT, svc TEXT, "
                                      "lat INTEGER, bytes REAL, ntags INTEGER); BEGIN", NULL,
                                  NULL, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO recs VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                        -1, &st, NULL), SQLITE_OK);
    for (size_t i = 0; i < NREC; i++) {
        sqlite3_bind_int64(st, 1, r[i].at);
        sqlite3_bind_text(st, 2, levels[r[i].level], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, svcs[r[i].svc], -1, SQLITE_STATIC);
        if (r[i].lat < 0) sqlite3_bind_null(st, 4);
        else sqlite3_bind_int64(st, 4, r[i].lat);
        sqlite3_bind_double(st, 5, r[i].bytes);
        sqlite3_bind_int(st, 6, r[i].ntags);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

/* In-order records: the whole corpus, every batching, 1 and 3 queues, and
 * the oracle for the queries without a window. */
static void test_batching_in_order(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(0);
    rec_t *r = make_records(0);
    produce_all(f, "", r);
    sqlite3 *db = oracle_db(r);
    for (size_t i = 0; i < sizeof corpus / sizeof corpus[0]; i++) {
        const query_t *c = &corpus[i];
        char *ref = run(f, c->sql, "s1_0", NULL);
        char *ref_sorted = sorted(ref);
        size_t lines = 0;
        for (const char *p = ref; *p; p++) lines += *p == '\n';
        assert_true(lines > 1);             /* every query has rows (or its one row) */
        for (int m = 0; m < NMODES; m++) {
            char s[16];
            snprintf(s, sizeof s, "s1_%d", m);
            char *got = run(f, c->sql, s, NULL);
            char label[64];
            snprintf(label, sizeof label, "1 queue, %s", mode_names[m]);
            expect_same("query", c->sql, ref, got, label);
            free(got);
            if (c->one_queue) continue;
            snprintf(s, sizeof s, "s3_%d", m);
            got = run(f, c->sql, s, NULL);
            char *gs = sorted(got);
            snprintf(label, sizeof label, "3 queues, %s (rows sorted)", mode_names[m]);
            expect_same("query", c->sql, ref_sorted, gs, label);
            free(gs);
            free(got);
        }
        if (c->oracle) {
            char *want = oracle_rows(db, c->oracle, "late=0 errors=0\n");
            char *w = c->sorted ? sorted(want) : want;
            char *g = c->sorted ? ref_sorted : ref;
            if (strcmp(w, g) != 0)
                fail_msg("%s\n  differs from sqlite's %s\n  engine:\n%.1500s\n  sqlite:\n%.1500s",
                         c->sql, c->oracle, g, w);
            if (c->sorted) free(w);
            free(want);
        }
        free(ref_sorted);
        free(ref);
    }
    sqlite3_close(db);
    free(r);
}

/* Out-of-order records (up to 1.5 s), watermark 0: lateness is decided per
 * record, so over 1 queue the rows and the late count do not depend on the
 * batching; over 3 queues (interleaving undefined) a watermark covering the
 * disorder gives every batching the same sorted rows, and nothing is late. */
static void test_batching_disordered(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(1);
    rec_t *r = make_records(1500);
    produce_all(f, "d", r);
    uint64_t any_late = 0;
    for (size_t i = 0; i < sizeof late_corpus / sizeof late_corpus[0]; i++) {
        const char *sql = late_corpus[i];
        char *ref = run(f, sql, "ds1_0", "WITH (watermark = '0s')");
        const char *lt = strstr(ref, "late=");
        any_late += lt && strncmp(lt, "late=0 ", 7) != 0;
        char *ref_wide = run(f, sql, "ds1_0", "WITH (watermark = '1d')");
        char *ref_wide_sorted = sorted(ref_wide);
        assert_non_null(strstr(ref_wide, "late=0 "));
        for (int m = 0; m < NMODES; m++) {
            char s[16], label[80];
            snprintf(s, sizeof s, "ds1_%d", m);
            char *got = run(f, sql, s, "WITH (watermark = '0s')");
            snprintf(label, sizeof label, "1 queue, %s, watermark 0", mode_names[m]);
            expect_same("disordered", sql, ref, got, label);
            free(got);
            snprintf(s, sizeof s, "ds3_%d", m);
            got = run(f, sql, s, "WITH (watermark = '1d')");
            char *gs = sorted(got);
            snprintf(label, sizeof label, "3 queues, %s, watermark 1d (rows sorted)",
                     mode_names[m]);
            expect_same("disordered", sql, ref_wide_sorted, gs, label);
            free(gs);
            free(got);
        }
        free(ref_wide_sorted);
        free(ref_wide);
        free(ref);
    }
    assert_true(any_late > 0);      /* the disorder did make rows late somewhere */
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batching_in_order, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_batching_disordered, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

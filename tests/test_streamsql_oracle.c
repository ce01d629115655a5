/*
 * test_streamsql_oracle.c — windowed aggregation checked against plain
 * sqlite3. Random JSON log records (seeded; the seed is printed, and
 * RN_SEED=N repeats a run) are produced into a topic in random batches over
 * several queues and also inserted into an in-memory sqlite table; every
 * TUMBLE and HOP aggregation must give exactly the rows sqlite computes for
 * the equivalent GROUP BY, with the window start computed in the oracle's
 * SQL: with disordered records and a large watermark, and with queues each
 * in order under the default watermark (windows closing while reading). Then: sessions against a direct computation, lateness (counted,
 * dropped, never silent; a larger watermark keeps the row), and the idle
 * timeout closing windows of a continuous query on an injected clock; and
 * GROUP BY key substitution in random expressions against sqlite.
 */
#include "tests/test_streamsql_util.h"

#include "common/sys.h"

#include <sqlite3.h>
#include <time.h>

#define NREC       10000
#define BASE_TS    1700000000000ll

static const char *const levels[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const svcs[] = {"api", "db", "auth", "web", "queue", "cache", "mail"};

typedef struct rec {
    int64_t at;
    int     level, svc;
    int     lat;        /* -1: null */
    double  bytes;
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

static rec_t *make_records(size_t n, int64_t jitter)
{
    rec_t *r = calloc(n, sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) {
        r[i].at = BASE_TS + (int64_t)i * 37 + (jitter ? (int64_t)(next_rand() % (uint64_t)jitter) : 0);
        r[i].level = (int)(next_rand() % 4);
        r[i].svc = (int)(next_rand() % 7);
        r[i].lat = next_rand() % 10 == 0 ? -1 : (int)(next_rand() % 1000);
        r[i].bytes = (double)(next_rand() % 4000) / 4.0;
        char lat[16];
        if (r[i].lat < 0) snprintf(lat, sizeof lat, "null");
        else snprintf(lat, sizeof lat, "%d", r[i].lat);
        snprintf(r[i].json, sizeof r[i].json,
                 "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"%s\",\"lat\":%s,\"bytes\":%.2f,"
                 "\"msg\":\"request %zu done\"}",
                 (long long)r[i].at, levels[r[i].level], svcs[r[i].svc], lat, r[i].bytes, i);
    }
    return r;
}

/* Produce the records in random batches (1..200) to random queues. */
static void produce_all(sqlfix_t *f, const char *t, uint32_t queues, const rec_t *r, size_t n)
{
    trec_t *batch = calloc(200, sizeof *batch);
    assert_non_null(batch);
    size_t i = 0;
    while (i < n) {
        size_t k = 1 + next_rand() % 200;
        if (k > n - i) k = n - i;
        for (size_t j = 0; j < k; j++) {
            batch[j].ts = r[i + j].at;
            batch[j].key = svcs[r[i + j].svc];
            batch[j].value = r[i + j].json;
        }
        produce(f, t, (uint32_t)(next_rand() % queues), batch, k);
        i += k;
    }
    free(batch);
}

static sqlite3 *oracle_db(const rec_t *r, size_t n)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE recs(at INTEGER, level TEXT, svc TEXT, "
                                      "lat INTEGER, bytes REAL); BEGIN", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO recs VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                                        &st, NULL), SQLITE_OK);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_int64(st, 1, r[i].at);
        sqlite3_bind_text(st, 2, levels[r[i].level], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, svcs[r[i].svc], -1, SQLITE_STATIC);
        if (r[i].lat < 0) sqlite3_bind_null(st, 4);
        else sqlite3_bind_int64(st, 4, r[i].lat);
        sqlite3_bind_double(st, 5, r[i].bytes);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the lines of text in place (as a new string); *n = line count. */
static char *sorted(const char *text, size_t *n)
{
    char *copy = strdup(text);
    assert_non_null(copy);
    size_t cnt = 0, cap = 64;
    char **lines = malloc(cap * sizeof *lines);
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (cnt == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
        lines[cnt++] = l;
    }
    qsort(lines, cnt, sizeof *lines, cmp_lines);
    size_t len = strlen(text) + 1;
    char *out = malloc(len + 1), *p = out;
    out[0] = '\0';
    for (size_t i = 0; i < cnt; i++) p += sprintf(p, "%s\n", lines[i]);
    free(lines);
    free(copy);
    *n = cnt;
    return out;
}

typedef struct pair {
    const char *stream_sql;
    const char *oracle_sql;
} pair_t;

#define AGGS "count(*), count(lat), sum(lat), avg(lat), min(lat), max(lat), " \
             "count(DISTINCT level), sum(bytes), min(level), max(level), total(lat)"

static const pair_t pairs[] = {
    {"SELECT window_start, window_end, svc, " AGGS " FROM s GROUP BY TUMBLE(ts, '1s'), svc",
     "SELECT (at / 1000) * 1000 AS ws, (at / 1000) * 1000 + 1000, svc, " AGGS
     " FROM recs GROUP BY ws, svc"},
    {"SELECT window_start, svc, level, count(*), avg(lat), sum(lat) / count(*) AS r FROM s "
     "WHERE level <> 'DEBUG' AND lat IS NOT NULL GROUP BY TUMBLE(ts, '10s'), svc, level "
     "HAVING count(*) > 3",
     "SELECT (at / 10000) * 10000 AS ws, svc, level, count(*), avg(lat), sum(lat) / count(*) "
     "FROM recs WHERE level <> 'DEBUG' AND lat IS NOT NULL GROUP BY ws, svc, level "
     "HAVING count(*) > 3"},
    {"SELECT window_start, window_end, svc, " AGGS " FROM s GROUP BY HOP(ts, '4s', '1s'), svc",
     "WITH k(i) AS (VALUES (0), (1), (2), (3)) SELECT ((at / 1000) - i) * 1000 AS ws, "
     "((at / 1000) - i) * 1000 + 4000, svc, " AGGS " FROM recs, k GROUP BY ws, svc"},
    {"SELECT window_start, upper(svc) || ':' || level AS k, max(bytes) - min(bytes), count(*) "
     "FROM s WHERE lat > 500 GROUP BY HOP(ts, '30s', '10s'), upper(svc) || ':' || level",
     "WITH k(i) AS (VALUES (0), (1), (2)) SELECT ((at / 10000) - i) * 10000 AS ws, "
     "upper(svc) || ':' || level AS kk, max(bytes) - min(bytes), count(*) FROM recs, k "
     "WHERE lat > 500 GROUP BY ws, kk"},
    {"SELECT window_start, count(*), count(DISTINCT svc), sum(lat) FROM s "
     "GROUP BY TUMBLE(ts, '5s')",
     "SELECT (at / 5000) * 5000 AS ws, count(*), count(DISTINCT svc), sum(lat) FROM recs "
     "GROUP BY ws"},
    {"SELECT svc, count(*), min(at), max(at) FROM s GROUP BY svc",
     "SELECT svc, count(*), min(at), max(at) FROM recs GROUP BY svc"},
};

static void check_pairs(sqlfix_t *f, sqlite3 *db, const char *with)
{
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char sql[1024], *out, err[RN_ERRMSG_SIZE];
        int off;
        rn_sql_stats_t st;
        snprintf(sql, sizeof sql, "%s %s", pairs[i].stream_sql, with);
        int rc = run_sql(f, sql, NULL, &out, &off, err, &st);
        if (rc != 0) fail_msg("%s: %s", sql, err);
        char *want = oracle_rows(db, pairs[i].oracle_sql, "");
        size_t ng, nw;
        char *g = sorted(out, &ng), *w = sorted(want, &nw);
        if (strcmp(g, w) != 0)
            fail_msg("(seed printed above, rng now %llu) %s\n  rows differ from sqlite's (%zu vs %zu rows)\n"
                     "  engine:\n%.2000s\n  sqlite:\n%.2000s", (unsigned long long)rng, sql,
                     ng, nw, g, w);
        assert_true(ng > 0);
        assert_int_equal(st.late, 0);
        assert_int_equal(st.errors, 0);
        assert_int_equal(st.records, NREC);
        free(g);
        free(w);
        free(out);
        free(want);
    }
}

static void create_stream(sqlfix_t *f, const char *name, const char *t)
{
    char sql[256], *out, err[RN_ERRMSG_SIZE];
    int off;
    snprintf(sql, sizeof sql, "CREATE STREAM %s (at INTEGER, level TEXT, svc TEXT, lat INTEGER, "
             "bytes REAL) WITH (topic = '%s', timestamp = 'at')", name, t);
    if (run_sql(f, sql, NULL, &out, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(out);
}

static uint64_t seed(uint64_t salt)
{
    const char *e = getenv("RN_SEED");
    uint64_t s = (e ? strtoull(e, NULL, 10) : (uint64_t)time(NULL) * 2654435761u) + salt;
    if (!s) s = 1;
    printf("streamsql oracle seed %llu (RN_SEED=%llu repeats it)\n", (unsigned long long)s,
           (unsigned long long)(s - salt));
    return s;
}

/* Out-of-order records over 3 queues, a watermark larger than the disorder:
 * nothing is late, every window equals sqlite's. */
static void test_oracle_disordered(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(0);
    rec_t *r = make_records(NREC, 20000);
    topic(f, "t", 3);
    produce_all(f, "t", 3, r, NREC);
    create_stream(f, "s", "t");
    sqlite3 *db = oracle_db(r, NREC);
    check_pairs(f, db, "WITH (watermark = '1d')");
    sqlite3_close(db);
    free(r);
}

/* In-order records on one queue, watermark 0: windows close while the query
 * runs (emitted batch by batch), and the result is still sqlite's. */
static void test_oracle_in_order(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(1);
    rec_t *r = make_records(NREC, 0);
    topic(f, "t", 1);
    produce_all(f, "t", 1, r, NREC);
    create_stream(f, "s", "t");
    sqlite3 *db = oracle_db(r, NREC);
    check_pairs(f, db, "WITH (watermark = '0s')");
    sqlite3_close(db);
    free(r);
}

/* Several queues, each in time order, watermark 0: the frontier is the
 * slowest queue's, so however the consumer interleaves their batches no row
 * is late and every window equals sqlite's. */
static void test_oracle_queues_in_order(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(3);
    rec_t *r = make_records(NREC, 0);
    topic(f, "t", 4);
    produce_all(f, "t", 4, r, NREC);
    create_stream(f, "s", "t");
    sqlite3 *db = oracle_db(r, NREC);
    check_pairs(f, db, "");
    sqlite3_close(db);
    free(r);
}

/* Sessions against a direct computation: per key, records sorted by time,
 * a new session whenever the gap to the previous record is >= gap. */
static int cmp_rec_svc_at(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;
    if (x->svc != y->svc) return x->svc - y->svc;
    return x->at < y->at ? -1 : x->at > y->at;
}

static void test_sessions_random(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(2);
    size_t n = 1500;
    rec_t *r = make_records(n, 0);
    for (size_t i = 0; i < n; i++) {          /* bursts: sessions of varying length */
        r[i].at = BASE_TS + (int64_t)(i / 20) * 3000 + (int64_t)(next_rand() % 400);
        snprintf(r[i].json, sizeof r[i].json, "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"%s\","
                 "\"lat\":%d,\"bytes\":1}", (long long)r[i].at, levels[r[i].level],
                 svcs[r[i].svc], r[i].lat < 0 ? 0 : r[i].lat);
        if (r[i].lat < 0) r[i].lat = 0;
    }
    topic(f, "t", 2);
    produce_all(f, "t", 2, r, n);
    create_stream(f, "s", "t");
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "SELECT window_start, window_end, svc, count(*), sum(lat) FROM s "
                                "GROUP BY SESSION(ts, '2500ms'), svc WITH (watermark = '1h')",
                             NULL, &out, &off, err, &st), 0);
    qsort(r, n, sizeof *r, cmp_rec_svc_at);
    rn_buf_t want = RN_BUF_INIT;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        int64_t sum = r[i].lat;
        while (j < n && r[j].svc == r[i].svc && r[j].at - r[j - 1].at < 2500) sum += r[j++].lat;
        char line[128];
        int k = snprintf(line, sizeof line, "%lld|%lld|%s|%zu|%lld\n", (long long)r[i].at,
                         (long long)r[j - 1].at + 2500, svcs[r[i].svc], j - i, (long long)sum);
        rn_buf_append(&want, line, (size_t)k, 0);
        i = j;
    }
    rn_buf_append(&want, "", 1, 0);
    size_t ng, nw;
    char *g = sorted(out, &ng), *w = sorted((char *)want.data, &nw);
    if (strcmp(g, w) != 0) fail_msg("sessions differ:\n%.1500s\nwant:\n%.1500s", g, w);
    assert_int_equal(st.late, 0);
    free(g);
    free(w);
    free(out);
    rn_buf_free(&want);
    free(r);
}

/* A record older than a closed window is late: counted, not added; with a
 * watermark delay covering it, it counts. HOP: late for the closed window,
 * still added to the open one. Sessions: late when its gap ended. */
static void test_lateness(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "late", 1);
    create_stream(f, "s", "late");
    const int64_t at[] = {10000, 11000, 25000, 12000, 26000};
    for (size_t i = 0; i < 5; i++) {
        char json[96];
        snprintf(json, sizeof json, "{\"at\":%lld,\"svc\":\"api\",\"lat\":1}", (long long)at[i]);
        produce1(f, "late", at[i], json);
    }
    char *out, err[RN_ERRMSG_SIZE];
    int off;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "SELECT window_start, count(*) FROM s GROUP BY TUMBLE(ts, '10s') "
                                "WITH (watermark = '0s')", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "10000|2\n20000|2\n");
    assert_int_equal(st.late, 1);
    free(out);
    assert_int_equal(run_sql(f, "SELECT window_start, count(*) FROM s GROUP BY TUMBLE(ts, '10s') "
                                "WITH (watermark = '20s')", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "10000|3\n20000|2\n");
    assert_int_equal(st.late, 0);
    free(out);
    /* HOP 20s/10s, watermark 0: 12000 arrives when wm = 25000: window [0,20000)
     * closed (late), window [10000,30000) open (added). */
    assert_int_equal(run_sql(f, "SELECT window_start, count(*) FROM s "
                                "GROUP BY HOP(ts, '20s', '10s')", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "0|2\n10000|5\n20000|2\n");
    assert_int_equal(st.late, 1);
    free(out);
    /* SESSION gap 5s: [10000,16000) closed by 25000; 12000 + 5000 <= 25000: late */
    assert_int_equal(run_sql(f, "SELECT window_start, window_end, count(*) FROM s "
                                "GROUP BY SESSION(ts, '5s')", NULL, &out, &off, err, &st), 0);
    assert_string_equal(out, "10000|16000|2\n25000|31000|2\n");
    assert_int_equal(st.late, 1);
    free(out);
}

/* ---- GROUP BY key substitution against sqlite -------------------------------
 *
 * Random expressions over lat and at (integers) with sqlite's operators at
 * several precedence levels, printed with the fewest parentheses (plus some
 * redundant ones); a GROUP BY key besides lat and at themselves is a random
 * subexpression, or a random run of its tokens that is a valid expression
 * but often no subexpression of it (the key "lat + 1" in "lat + 1 * 2"). The engine replaces the key's tokens by its value only
 * where they are a whole operand; anywhere else lat and at (also keys)
 * stand. A replacement that changed the meaning ("a + 1 * 2" read as
 * "(a + 1) * 2") gives other values than sqlite's. */

typedef struct enode {
    int kind;                 /* 0 leaf, 1 binary, 2 unary */
    int op;                   /* index into ops / uops */
    int paren;                /* redundant parentheses around it */
    char leaf[8];
    struct enode *l, *r;
} enode_t;

static const struct { const char *s; int prec; } ops[] = {
    {"OR", 1}, {"AND", 2}, {"=", 4}, {"<>", 4}, {"<", 5}, {">=", 5}, {"&", 7}, {"+", 8},
    {"-", 8}, {"*", 9}, {"/", 9}, {"%", 9}, {"||", 10},
};
static const struct { const char *s; int prec; } uops[] = {{"NOT", 3}, {"-", 12}, {"~", 12}};

static enode_t *gen_expr(int depth, enode_t **pool, size_t *np)
{
    enode_t *n = pool[(*np)++];
    memset(n, 0, sizeof *n);
    uint64_t k = next_rand() % 10;
    if (depth == 0 || k < 3) {
        static const char *const leaves[] = {"lat", "at", "1", "2", "7", "lat", "at"};
        snprintf(n->leaf, sizeof n->leaf, "%s", leaves[next_rand() % 7]);
        return n;
    }
    n->paren = next_rand() % 8 == 0;
    if (k < 4) {
        n->kind = 2;
        n->op = (int)(next_rand() % 3);
        n->l = gen_expr(depth - 1, pool, np);
        return n;
    }
    n->kind = 1;
    n->op = (int)(next_rand() % (sizeof ops / sizeof ops[0]));
    n->l = gen_expr(depth - 1, pool, np);
    n->r = gen_expr(depth - 1, pool, np);
    return n;
}

static int node_prec(const enode_t *n)
{
    if (n->paren || n->kind == 0) return 100;
    return n->kind == 1 ? ops[n->op].prec : uops[n->op].prec;
}

/* Print n with the fewest parentheses sqlite's precedence needs (operators
 * associate to the left). */
static void print_expr(const enode_t *n, rn_buf_t *b)
{
    if (n->paren) rn_buf_append(b, "( ", 2, 0);
    if (n->kind == 0) {
        rn_buf_append(b, n->leaf, strlen(n->leaf), 0);
    } else if (n->kind == 2) {
        rn_buf_append(b, uops[n->op].s, strlen(uops[n->op].s), 0);
        rn_buf_append(b, " ", 1, 0);
        int wrap = node_prec(n->l) < uops[n->op].prec ||
                   (n->op > 0 && n->l->kind == 2 && !n->l->paren);   /* "- -x", "~ -x" */
        if (wrap) rn_buf_append(b, "( ", 2, 0);
        print_expr(n->l, b);
        if (wrap) rn_buf_append(b, " )", 2, 0);
    } else {
        int p = ops[n->op].prec;
        int wl = node_prec(n->l) < p, wr = node_prec(n->r) <= p;
        if (wl) rn_buf_append(b, "( ", 2, 0);
        print_expr(n->l, b);
        if (wl) rn_buf_append(b, " )", 2, 0);
        rn_buf_append(b, " ", 1, 0);
        rn_buf_append(b, ops[n->op].s, strlen(ops[n->op].s), 0);
        rn_buf_append(b, " ", 1, 0);
        if (wr) rn_buf_append(b, "( ", 2, 0);
        print_expr(n->r, b);
        if (wr) rn_buf_append(b, " )", 2, 0);
    }
    if (n->paren) rn_buf_append(b, " )", 2, 0);
}

/* A random run of whole tokens of text (space-separated) with balanced
 * parentheses: often no subexpression ("lat + 1" of "lat + 1 * 2"). */
static void token_window(const char *text, rn_buf_t *out)
{
    const char *tok[128];
    size_t len[128], nt = 0;
    for (const char *p = text; *p && nt < 128;) {
        while (*p == ' ') p++;
        if (!*p) break;
        tok[nt] = p;
        while (*p && *p != ' ') p++;
        len[nt] = (size_t)(p - tok[nt]);
        nt++;
    }
    for (int tries = 0; tries < 32 && nt; tries++) {
        size_t i = next_rand() % nt, j = i + 1 + next_rand() % (nt - i);
        int depth = 0, ok = 1;
        for (size_t k = i; k < j && ok; k++) {
            if (len[k] == 1 && tok[k][0] == '(') depth++;
            if (len[k] == 1 && tok[k][0] == ')') ok = --depth >= 0;
        }
        if (!ok || depth != 0 || j - i < 3) continue;
        for (size_t k = i; k < j; k++) {
            if (k > i) rn_buf_append(out, " ", 1, 0);
            rn_buf_append(out, tok[k], len[k], 0);
        }
        return;
    }
}

static void test_key_substitution_random(void **state)
{
    sqlfix_t *f = *state;
    rng = seed(4);
    size_t n = 300;
    rec_t *r = make_records(n, 0);
    topic(f, "t", 1);
    produce_all(f, "t", 1, r, n);
    create_stream(f, "s", "t");
    sqlite3 *db = oracle_db(r, n);
    enode_t nodes[64], *pool[64];
    for (int i = 0; i < 64; i++) pool[i] = &nodes[i];
    int substituted = 0;
    for (int round = 0; round < 400; round++) {
        size_t np = 0;
        enode_t *e = gen_expr(4, pool, &np);
        enode_t *k = NULL;
        for (int tries = 0; tries < 16 && (!k || k->kind == 0); tries++)
            k = &nodes[next_rand() % np];
        if (k->kind == 0) continue;          /* a bare number would be a column position */
        /* the key as it is printed inside e: without its redundant parentheses */
        int kp = k->paren;
        k->paren = 0;
        rn_buf_t kb = RN_BUF_INIT, eb = RN_BUF_INIT;
        print_expr(e, &eb);
        rn_buf_append(&eb, "", 1, 0);
        if (round % 2) token_window((char *)eb.data, &kb);   /* maybe no subexpression */
        else print_expr(k, &kb);                            /* a subexpression */
        k->paren = kp;
        rn_buf_append(&kb, "", 1, 0);
        if (!strstr((char *)kb.data, "at")) {     /* a constant key: sqlite reads positions */
            rn_buf_free(&kb);
            rn_buf_free(&eb);
            continue;
        }
        char sql[1024], osql[1024], *out, err[RN_ERRMSG_SIZE];
        int off;
        snprintf(sql, sizeof sql, "SELECT %s AS x, count(*) FROM s GROUP BY %s, lat, at",
                 (char *)eb.data, (char *)kb.data);
        snprintf(osql, sizeof osql, "SELECT %s AS x, count(*) FROM recs GROUP BY %s, lat, at",
                 (char *)eb.data, (char *)kb.data);
        sqlite3_stmt *probe = NULL;
        int valid = sqlite3_prepare_v2(db, osql, -1, &probe, NULL) == SQLITE_OK;
        sqlite3_finalize(probe);
        if (!valid) {                         /* a token run that is no expression */
            rn_buf_free(&kb);
            rn_buf_free(&eb);
            continue;
        }
        if (run_sql(f, sql, NULL, &out, &off, err, NULL) != 0)
            fail_msg("(seed printed above) %s: %s", sql, err);
        char *want = oracle_rows(db, osql, "");
        size_t ng, nw;
        char *g = sorted(out, &ng), *w = sorted(want, &nw);
        if (strcmp(g, w) != 0)
            fail_msg("(seed printed above) %s\n  differs from sqlite:\n%.600s\n  sqlite:\n%.600s",
                     sql, g, w);
        substituted += strstr((char *)eb.data, (char *)kb.data) != NULL;
        free(g);
        free(w);
        free(out);
        free(want);
        rn_buf_free(&kb);
        rn_buf_free(&eb);
    }
    assert_true(substituted > 100);      /* most keys were compound, inside the expression */
    sqlite3_close(db);
    free(r);
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* A continuous query: with idle_timeout, windows close after that long
 * without data (on the injected clock), and a record for a closed window
 * is then late; without idle_timeout nothing closes. */
static void test_idle_timeout(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "idle", 1);
    create_stream(f, "s", "idle");
    fake_now = 1000000;
    rn_sys.now_ms = fake_clock;
    produce1(f, "idle", 1, "{\"at\":1000,\"svc\":\"api\"}");
    produce1(f, "idle", 2, "{\"at\":2000,\"svc\":\"api\"}");
    for (int with_idle = 1; with_idle >= 0; with_idle--) {
        rows_t r = {RN_BUF_INIT, 0};
        rn_sql_opts_t o;
        rn_sql_opts_default(&o);
        o.follow = 1;
        o.row = collect_row;
        o.ctx = &r;
        const char *sql = with_idle
            ? "SELECT window_start, count(*) FROM s GROUP BY TUMBLE(ts, '10s') "
              "WITH (watermark = '1h', idle_timeout = '5s')"
            : "SELECT window_start, count(*) FROM s GROUP BY TUMBLE(ts, '10s') "
              "WITH (watermark = '1h')";
        rn_sql_t *q;
        char err[RN_ERRMSG_SIZE];
        rn_sql_state_t s;
        assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
        for (int i = 0; i < 4; i++) assert_int_equal(rn_sql_step(q, &s, err), 0);
        assert_int_equal(s, RN_SQL_IDLE);
        assert_int_equal(r.n, 0);                 /* watermark 1h: nothing closed */
        fake_now += 4000;
        assert_int_equal(rn_sql_step(q, &s, err), 0);
        assert_int_equal(r.n, 0);                 /* 4 s idle: not yet */
        fake_now += 2000;
        assert_int_equal(rn_sql_step(q, &s, err), 0);
        assert_int_equal(s, RN_SQL_IDLE);
        assert_int_equal(r.n, with_idle ? 1 : 0); /* 6 s idle: the window closed */
        produce1(f, "idle", 3, "{\"at\":3000,\"svc\":\"api\"}");
        assert_int_equal(rn_sql_step(q, &s, err), 0);
        rn_sql_stats_t st;
        rn_sql_stats(q, &st);
        assert_int_equal(st.late, with_idle ? 1 : 0);
        rn_sql_cancel(q);
        assert_int_equal(rn_sql_step(q, &s, err), 0);
        assert_int_equal(s, RN_SQL_DONE);
        rn_sql_close(q);
        rn_buf_append(&r.text, "", 1, 0);
        if (with_idle) assert_string_equal((char *)r.text.data, "0|2\n");
        rn_buf_free(&r.text);
        fake_now += 100000;
    }
    rn_sys_reset();
}

/* Windows over processing time (proctime()): rows fall in the window of
 * the clock when they are read, whatever their event time, and a window
 * closes when the clock passes its end, with or without new records; none
 * is late. On the injected clock, so the rows are exact. */
static void test_proctime_windows(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "pt", 2);
    create_stream(f, "s", "pt");
    fake_now = 5000000;
    rn_sys.now_ms = fake_clock;
    produce1(f, "pt", 1, "{\"at\":900000000,\"svc\":\"api\"}");
    produce1(f, "pt", 2, "{\"at\":1000,\"svc\":\"web\"}");
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.follow = 1;
    o.row = collect_row;
    o.ctx = &r;
    const char *sql = "SELECT window_start, window_end, count(*) FROM s "
                      "GROUP BY TUMBLE(proctime(), '10s')";
    rn_sql_t *q;
    char err[RN_ERRMSG_SIZE];
    rn_sql_state_t s;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    for (int i = 0; i < 4; i++) assert_int_equal(rn_sql_step(q, &s, err), 0);
    assert_int_equal(s, RN_SQL_IDLE);
    assert_int_equal(r.n, 0);                     /* the clock is inside [5000000, 5010000) */
    fake_now = 5009999;
    assert_int_equal(rn_sql_step(q, &s, err), 0);
    assert_int_equal(r.n, 0);
    fake_now = 5010000;                           /* no record: the clock closes it */
    assert_int_equal(rn_sql_step(q, &s, err), 0);
    assert_int_equal(r.n, 1);
    produce1(f, "pt", 3, "{\"at\":1,\"svc\":\"api\"}");   /* event time long past: not late */
    fake_now = 5012345;
    for (int i = 0; i < 3; i++) assert_int_equal(rn_sql_step(q, &s, err), 0);
    fake_now = 5020000;
    assert_int_equal(rn_sql_step(q, &s, err), 0);
    rn_sql_stats_t st;
    rn_sql_stats(q, &st);
    assert_int_equal(st.late, 0);
    rn_sql_close(q);
    rn_buf_append(&r.text, "", 1, 0);
    assert_string_equal((char *)r.text.data, "5000000|5010000|2\n5010000|5020000|1\n");
    rn_buf_free(&r.text);
    rn_sys_reset();
    /* Refused: proctime() is a time only as the window's; a field named
     * like something else is still no time column. */
    const char *bad = "SELECT count(*) FROM s GROUP BY TUMBLE(svc, '10s')";
    assert_int_not_equal(rn_sql_open(f->d, bad, strlen(bad), &o, &q, NULL, err), 0);
    assert_non_null(strstr(err, "or proctime() for processing time"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_oracle_disordered, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_oracle_in_order, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_oracle_queues_in_order, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_sessions_random, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_key_substitution_random, sqlfix_setup,
                                        sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_lateness, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_proctime_windows, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

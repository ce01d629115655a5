/*
 * test_streamsql_sjoin_kill.c — stream–stream joins in pipelines, exactly
 * once across kill -9 (streamsql/sjoin.c invariants 5 and 6, etl.c).
 *
 * A pipeline with an interval join, one with a TUMBLE window join and one
 * with GROUP BY (count, sum, max) over a window join (invariant 7), of
 * two streams written in rounds in a seeded order (one stream rounds ahead
 * of the other, either first, both at once), with seeded queue counts per
 * stream, batch sizes per stream, sink queue counts and a few records that
 * are not JSON (dead letters), runs after each round killed with SIGKILL at
 * seeded points (after a step, after a sink write, before and after a
 * checkpoint), restarted each time. Its sink and dead-letter topics must
 * equal, byte for byte, those of the same pipeline run without a kill, and
 * the pairs must be exactly those plain sqlite3 computes over the same
 * records (the pairs, or groups, the final watermark passed), each sink
 * queue in the emission order (time, left queue, offset, right queue,
 * offset; for groups time, key).
 *
 * With records out of event-time order in one stream (late or not
 * depending on what was read before them), the killed run equals the
 * uninterrupted one byte for byte with the same late count.
 *
 * And a --follow join saved and restored into a new query after every
 * round (interval, window, grouped): the same rows as one uninterrupted
 * query, a truncated state refused as damaged, and after every restore
 * exactly the records the time bound allows, counted independently from
 * the records written (the state bound holds after a restore).
 */
#include "tests/test_streamsql_util.h"

#include "etl/etl.h"
#include "tests/util/util.h"

#define BASE   1700000000000LL
#define N      240            /* records a stream */
#define NKEYS  6
#define SLICES 6
#define BAD    29             /* every 29th record of the right stream is not JSON */

typedef struct gen {
    uint32_t nq;
    size_t   batch;
    int64_t  ts[N];
    int      k[N];
    char     v[N][80];
    int      bad[N];
} gen_t;

/* Record j goes to queue j % nq; event time rises with j (each queue is in
 * event-time order, so no record is late). */
static void gen_side(gen_t *g, uint32_t nq, size_t batch, int bad, uint64_t *rng)
{
    g->nq = nq;
    g->batch = batch;
    int64_t t = BASE;
    for (int j = 0; j < N; j++) {
        t += 1 + (int64_t)(rn_test_rng(rng) % 160);
        g->ts[j] = t;
        /* bad == 2: every 11th record 2.5 s back in event time, behind the
         * watermark (late) or not, depending on what was read before it */
        if (bad == 2 && j % 11 == 5) g->ts[j] = t - 2500;
        g->k[j] = (int)(rn_test_rng(rng) % NKEYS);
        g->bad[j] = bad == 1 && j % BAD == BAD - 1;
        if (g->bad[j]) snprintf(g->v[j], sizeof g->v[j], "not json %d", j);
        else snprintf(g->v[j], sizeof g->v[j], "{\"k\":%d,\"n\":%d,\"ts\":%lld}", g->k[j], j,
                      (long long)g->ts[j]);
    }
}

/* Slice s of g (records [s N / SLICES, (s + 1) N / SLICES)) into topic t. */
static void put_slice(rn_datadir_t *d, const char *t, const gen_t *g, int s)
{
    sqlfix_t fx = {.d = d};
    int from = s * N / SLICES, to = (s + 1) * N / SLICES;
    trec_t *pend = calloc(N, sizeof *pend);
    for (uint32_t q = 0; q < g->nq; q++) {
        size_t n = 0;
        for (int j = from; j < to; j++)
            if ((uint32_t)j % g->nq == q) pend[n++] = (trec_t){g->ts[j], NULL, g->v[j]};
        for (size_t i = 0; i < n; i += g->batch)
            produce(&fx, t, q, pend + i, n - i < g->batch ? n - i : g->batch);
    }
    free(pend);
}

/* The oracle's table: (queue, off, ts, k, n) of each good record. */
static void oracle_table(sqlite3 *db, const char *t, const gen_t *g)
{
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE TABLE %s(queue, off, ts, k, n)", t);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    int64_t off[8] = {0};
    for (int j = 0; j < N; j++) {
        uint32_t q = (uint32_t)j % g->nq;
        int64_t o = off[q]++;
        if (g->bad[j]) continue;
        snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (%u, %lld, %lld, %d, %d)", t, q,
                 (long long)o, (long long)g->ts[j], g->k[j], j);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
}

static rn_datadir_t *open_dir(const char *root)
{
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    rn_datadir_t *d = NULL;
    if (rn_datadir_open(root, &o, &d, err) != 0) fail_msg("open %s: %s", root, err);
    return d;
}

#define LO (-300)
#define HI 200
#define WIN 1000

static const char *const select_interval =
    "SELECT max(x.ts, y.ts) AS e, x.queue AS aq, x.offset AS ao, y.queue AS bq, "
    "y.offset AS bo, x.n AS an, y.n AS bn FROM a x JOIN b y ON x.k = y.k AND "
    "y.ts BETWEEN x.ts - 300 AND x.ts + INTERVAL '0.2' SECOND";
static const char *const select_window =
    "SELECT l.window_end - 1 AS e, l.queue AS aq, l.offset AS ao, r.queue AS bq, "
    "r.offset AS bo, l.n AS an, r.n AS bn FROM "
    "TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND)) l JOIN "
    "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND)) r "
    "ON l.window_start = r.window_start AND l.window_end = r.window_end AND l.k = r.k";
/* aggregated per window and key (sjoin.c invariant 7); the columns named so
 * that a row reads as a pair_t: e, aq = k, ao = n, bq = 0, bo = s, an = mx, bn = 0 */
static const char *const select_grouped =
    "SELECT l.window_end - 1 AS e, l.k AS aq, count(*) AS ao, 0 AS bq, sum(r.n) AS bo, "
    "max(l.n) AS an, 0 AS bn FROM "
    "TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), INTERVAL '1' SECOND)) l JOIN "
    "TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), INTERVAL '1' SECOND)) r "
    "ON l.window_start = r.window_start AND l.k = r.k GROUP BY l.window_start, l.k";
static const char *const selects[] = {select_interval, select_window, select_grouped};
static const char *const kinds[] = {"interval", "window", "grouped window"};

static void setup(const char *root, const gen_t *ga, const gen_t *gb, int window,
                  uint32_t sinkq)
{
    rn_datadir_t *d = open_dir(root);
    sqlfix_t fx = {.d = d};
    topic(&fx, "ta", ga->nq);
    topic(&fx, "tb", gb->nq);
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(&fx, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')",
                NULL, &t, &off, err, NULL) != 0) fail_msg("%s", err);
    free(t);
    t = NULL;
    if (run_sql(&fx, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')",
                NULL, &t, &off, err, NULL) != 0) fail_msg("%s", err);
    free(t);
    char sql[1024];
    snprintf(sql, sizeof sql, "CREATE PIPELINE pj AS INSERT INTO jout %s WITH "
             "(checkpoint_interval = '1ms', queues = %u)", selects[window], sinkq);
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("create: %s", err);
    rn_datadir_close(d);
}

/* The rounds: at each, each stream gets 0, 1 or 2 more slices (in a seeded
 * order of the two), the last round all that is left. */
typedef struct plan {
    int nrounds;
    int8_t slices[2 * SLICES + 2][2];    /* per round, per stream: slices to write */
    int8_t b_first[2 * SLICES + 2];
} plan_t;

static void make_plan(plan_t *p, uint64_t *rng)
{
    int next[2] = {0, 0};
    p->nrounds = 0;
    while (next[0] < SLICES || next[1] < SLICES) {
        int r = p->nrounds++;
        int last = r == 2 * SLICES + 1;
        for (int s = 0; s < 2; s++) {
            int want = last ? SLICES - next[s] : (int)(rn_test_rng(rng) % 3);
            if (want > SLICES - next[s]) want = SLICES - next[s];
            p->slices[r][s] = (int8_t)want;
            next[s] += want;
        }
        p->b_first[r] = (int8_t)(rn_test_rng(rng) % 2);
    }
}

static void run_rounds(const char *root, const plan_t *p, const gen_t *ga, const gen_t *gb,
                       uint64_t *rng, int *kills)
{
    static const char *const points[] = {"after-step", "after-sink-write", "before-checkpoint",
                                         "after-checkpoint"};
    int next[2] = {0, 0};
    for (int r = 0; r < p->nrounds; r++) {
        rn_datadir_t *d = open_dir(root);
        for (int o = 0; o < 2; o++) {
            int s = p->b_first[r] ? !o : o;
            for (int i = 0; i < p->slices[r][s]; i++)
                put_slice(d, s ? "tb" : "ta", s ? gb : ga, next[s]++);
        }
        rn_datadir_close(d);
        if (!kills) {
            assert_int_equal(rn_test_etl_child_run(root, "pj", "none", 0), 0);
            continue;
        }
        /* killed up to three times a round, then run to idle */
        for (int k = 0; k < 3; k++) {
            const char *point = points[rn_test_rng(rng) % 4];
            long at = 1 + (long)(rn_test_rng(rng) % (strcmp(point, "after-step") ? 3 : 12));
            *kills += rn_test_etl_child_run(root, "pj", point, at);
        }
        assert_int_equal(rn_test_etl_child_run(root, "pj", "none", 0), 0);
    }
}

/* One pair as the pipeline writes it, and its emission key. */
typedef struct pair {
    long long e, ao, bo;
    int aq, bq, an, bn;
} pair_t;

static int pair_cmp(const void *x, const void *y)
{
    const pair_t *a = x, *b = y;
    if (a->e != b->e) return a->e < b->e ? -1 : 1;
    if (a->aq != b->aq) return a->aq < b->aq ? -1 : 1;
    if (a->ao != b->ao) return a->ao < b->ao ? -1 : 1;
    if (a->bq != b->bq) return a->bq < b->bq ? -1 : 1;
    if (a->bo != b->bo) return a->bo < b->bo ? -1 : 1;
    return 0;
}

static char *pairs_text(pair_t *v, size_t n)
{
    qsort(v, n, sizeof *v, pair_cmp);
    rn_buf_t b = RN_BUF_INIT;
    char line[160];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%lld|%d|%lld|%d|%lld|%d|%d\n", v[i].e, v[i].aq, v[i].ao,
                 v[i].bq, v[i].bo, v[i].an, v[i].bn);
        assert_int_equal(rn_buf_append(&b, line, strlen(line), 0), 0);
    }
    assert_int_equal(rn_buf_append(&b, "", 1, 0), 0);
    return (char *)b.data;
}

/* Every sink queue's pairs, checked to be in emission order; all of them
 * sorted, as text. */
static char *sink_pairs(rn_datadir_t *d, uint32_t sinkq, size_t *npairs)
{
    pair_t *all = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t q = 0; q < sinkq; q++) {
        size_t cnt;
        char *text = rn_test_read_queue(d, "jout", q, &cnt), *save = NULL;
        size_t first = n;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (n == cap) all = realloc(all, (cap = cap ? cap * 2 : 256) * sizeof *all);
            pair_t *p = &all[n++];
            if (sscanf(l, "{\"e\":%lld,\"aq\":%d,\"ao\":%lld,\"bq\":%d,\"bo\":%lld,\"an\":%d,"
                       "\"bn\":%d}", &p->e, &p->aq, &p->ao, &p->bq, &p->bo, &p->an,
                       &p->bn) != 7)
                fail_msg("sink row: %s", l);
            if (n - 1 > first && pair_cmp(&all[n - 2], p) >= 0)
                fail_msg("sink queue %u out of emission order at %s", q, l);
        }
        free(text);
    }
    *npairs = n;
    char *t = pairs_text(all, n);
    free(all);
    return t;
}

/* The pairs sqlite3 finds whose emission time the final watermark passed:
 * the smallest, over every queue of both streams, of its largest event time. */
static char *oracle_pairs(const gen_t *ga, const gen_t *gb, int window)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    oracle_table(db, "ta", ga);
    oracle_table(db, "tb", gb);
    char sql[1024];
    const char *e = window ? "(x.ts / 1000) * 1000 + 999" : "max(x.ts, y.ts)";
    const char *w = "WITH w AS (SELECT min(m) AS w FROM (SELECT max(ts) AS m FROM ta GROUP BY "
                    "queue UNION ALL SELECT max(ts) FROM tb GROUP BY queue)) ";
    if (window == 2)
        snprintf(sql, sizeof sql, "%sSELECT %s AS e, x.k, count(*), 0, sum(y.n), max(x.n), 0 "
                 "FROM ta x JOIN tb y ON x.k = y.k AND x.ts / 1000 = y.ts / 1000, w "
                 "WHERE %s < w.w GROUP BY x.ts / 1000, x.k ORDER BY 1, 2", w, e, e);
    else
        snprintf(sql, sizeof sql, "%sSELECT %s AS e, x.queue, x.off, y.queue, y.off, x.n, y.n "
                 "FROM ta x JOIN tb y ON x.k = y.k AND %s, w WHERE %s < w.w "
                 "ORDER BY 1, 2, 3, 4, 5", w, e,
                 window ? "x.ts / 1000 = y.ts / 1000" : "y.ts BETWEEN x.ts - 300 AND x.ts + 200",
                 e);
    char *t = oracle_rows(db, sql, "");
    sqlite3_close(db);
    return t;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void kill_case(uint64_t *rng, int window)
{
    static gen_t ga, gb;
    static const size_t batches[] = {1, 3, 17, 64};
    uint32_t qa = 1 + (uint32_t)(rn_test_rng(rng) % 3), qb = 1 + (uint32_t)(rn_test_rng(rng) % 3);
    uint32_t sinkq = 1 + (uint32_t)(rn_test_rng(rng) % 3);
    gen_side(&ga, qa, batches[rn_test_rng(rng) % 4], 0, rng);
    gen_side(&gb, qb, batches[rn_test_rng(rng) % 4], 1, rng);
    plan_t plan;
    make_plan(&plan, rng);
    char *ra = rn_test_tmpdir_new("sjk-a"), *rb = rn_test_tmpdir_new("sjk-b");
    setup(ra, &ga, &gb, window, sinkq);
    setup(rb, &ga, &gb, window, sinkq);
    run_rounds(ra, &plan, &ga, &gb, rng, NULL);
    int kills = 0;
    run_rounds(rb, &plan, &ga, &gb, rng, &kills);
    rn_datadir_t *d = open_dir(ra);
    char *want = rn_test_pipeline_output(d, "jout", NULL, "pj.dlq");
    size_t nwant;
    char *want_pairs = sink_pairs(d, sinkq, &nwant);
    rn_datadir_close(d);
    d = open_dir(rb);
    char *got = rn_test_pipeline_output(d, "jout", NULL, "pj.dlq");
    size_t ngot;
    char *got_pairs = sink_pairs(d, sinkq, &ngot);
    rn_datadir_close(d);
    char *oracle = oracle_pairs(&ga, &gb, window);
    printf("%s join: queues %u/%u, batches %zu/%zu, sink queues %u, %d rounds: %d kill(s), "
           "%zu rows\n", kinds[window], qa, qb, ga.batch, gb.batch, sinkq,
           plan.nrounds, kills, ngot);
    if (nwant < (window == 2 ? 40u : 100u)) fail_msg("too few rows to mean anything: %zu", nwant);
    if (strcmp(want_pairs, oracle) != 0)
        fail_msg("uninterrupted run vs sqlite3\n--- got\n%.2000s\n--- want\n%.2000s", want_pairs,
                 oracle);
    if (strcmp(got_pairs, oracle) != 0)
        fail_msg("killed run vs sqlite3\n--- got\n%.2000s\n--- want\n%.2000s", got_pairs, oracle);
    if (strcmp(got, want) != 0)
        fail_msg("killed run vs uninterrupted run\n--- got\n%.3000s\n--- want\n%.3000s", got,
                 want);
    /* the records that are not JSON, each once, naming the right stream */
    int nbad = 0;
    for (int j = 0; j < N; j++) nbad += gb.bad[j];
    const char *dl = strstr(got, "== dlq queue 0");
    assert_non_null(dl);
    int dead = 0;
    for (const char *s = dl; (s = strstr(s, "rn.source.topic=tb")) != NULL; s++) dead++;
    assert_int_equal(dead, nbad);
    assert_null(strstr(dl, "rn.source.topic=ta"));
    assert_true(count_lines(oracle) == (int)ngot);
    assert_true(kills >= 3);
    free(want);
    free(got);
    free(want_pairs);
    free(got_pairs);
    free(oracle);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);
}

static void test_interval_kill(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("streamsql_sjoin_kill_interval");
    for (int i = 0; i < 3; i++) kill_case(&rng, 0);
}

static void test_window_kill(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("streamsql_sjoin_kill_window");
    for (int i = 0; i < 3; i++) kill_case(&rng, 1);
}

/* GROUP BY over a window join: count, sum, max per window and key */
static void test_grouped_kill(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("streamsql_sjoin_kill_grouped");
    for (int i = 0; i < 2; i++) kill_case(&rng, 2);
}

/* Late records: lateness depends on the order the two streams' batches were
 * read, which the order journal replays; the killed run must equal the
 * uninterrupted one byte for byte, with the same late count. */
static void late_case(uint64_t *rng, int window)
{
    static gen_t ga, gb;
    uint32_t qa = 1 + (uint32_t)(rn_test_rng(rng) % 3), qb = 1 + (uint32_t)(rn_test_rng(rng) % 3);
    uint32_t sinkq = 1 + (uint32_t)(rn_test_rng(rng) % 3);
    gen_side(&ga, qa, 1 + rn_test_rng(rng) % 20, 2, rng);
    gen_side(&gb, qb, 1 + rn_test_rng(rng) % 20, 0, rng);
    plan_t plan;
    make_plan(&plan, rng);
    char *ra = rn_test_tmpdir_new("sjl-a"), *rb = rn_test_tmpdir_new("sjl-b");
    setup(ra, &ga, &gb, window, sinkq);
    setup(rb, &ga, &gb, window, sinkq);
    run_rounds(ra, &plan, &ga, &gb, rng, NULL);
    int kills = 0;
    run_rounds(rb, &plan, &ga, &gb, rng, &kills);
    char err[RN_ERRMSG_SIZE];
    uint64_t late[2];
    char *out[2];
    const char *roots[2] = {ra, rb};
    for (int i = 0; i < 2; i++) {
        rn_datadir_t *d = open_dir(roots[i]);
        out[i] = rn_test_pipeline_output(d, "jout", NULL, "pj.dlq");
        rn_etl_status_t *st = NULL;
        size_t n = 0;
        if (rn_etl_status(d, "pj", &st, &n, err) != 0) fail_msg("status: %s", err);
        assert_int_equal(n, 1);
        late[i] = st[0].late;
        assert_int_equal(st[0].nq, qa + qb);         /* both streams' queues */
        for (uint32_t q = 0; q < st[0].nq; q++) assert_int_equal(st[0].lag[q], 0);
        free(st);
        rn_datadir_close(d);
    }
    printf("%s join with late records: queues %u/%u, sink queues %u, %d rounds: %d kill(s), "
           "%llu late, %zu bytes of output\n", kinds[window], qa, qb, sinkq, plan.nrounds, kills,
           (unsigned long long)late[1], strlen(out[1]));
    if (strcmp(out[1], out[0]) != 0)
        fail_msg("killed run vs uninterrupted run\n--- got\n%.3000s\n--- want\n%.3000s", out[1],
                 out[0]);
    assert_int_equal(late[1], late[0]);
    assert_true(late[0] > 0);
    assert_true(kills >= 3);
    free(out[0]);
    free(out[1]);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);
}

static void test_late_kill(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("streamsql_sjoin_kill_late");
    late_case(&rng, 0);
    late_case(&rng, 1);
}

/* ---- saved and restored after every round: same rows, same state -------------------- */

static rn_sql_t *open_follow(sqlfix_t *f, const char *sql, rows_t *rows)
{
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.follow = 1;
    o.row = collect_row;
    o.ctx = rows;
    rn_sql_t *q;
    char err[RN_ERRMSG_SIZE];
    int off;
    if (rn_sql_open(f->d, sql, strlen(sql), &o, &q, &off, err) != 0) fail_msg("%s: %s", sql, err);
    return q;
}

static void to_idle(rn_sql_t *q)
{
    char err[RN_ERRMSG_SIZE];
    rn_sql_state_t s = RN_SQL_MORE;
    for (int guard = 0; s == RN_SQL_MORE && guard < 100000; guard++)
        if (rn_sql_step(q, &s, err) != 0) fail_msg("step: %s", err);
    assert_int_equal(s, RN_SQL_IDLE);
}

/* The records a join must still hold once it read slices [0, na) of ga and
 * [0, nb) of gb (sjoin.c invariant 3): W is the smallest, over every queue
 * of both streams, of its largest event time (none while a queue has
 * delivered nothing: everything is kept); a left record stays while ts >= W
 * - HI, a right one while ts >= W + LO, a window's records while its end >
 * W. */
static uint64_t must_hold(const gen_t *ga, int na, const gen_t *gb, int nb, int window)
{
    const gen_t *g[2] = {ga, gb};
    int n[2] = {na * N / SLICES, nb * N / SLICES};
    int64_t w = INT64_MAX;
    for (int s = 0; s < 2; s++)
        for (uint32_t q = 0; q < g[s]->nq; q++) {
            int64_t m = INT64_MIN;
            for (int j = 0; j < n[s]; j++)
                if ((uint32_t)j % g[s]->nq == q && !g[s]->bad[j] && g[s]->ts[j] > m)
                    m = g[s]->ts[j];
            if (m < w) w = m;
        }
    uint64_t held = 0;
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < n[s]; j++) {
            if (g[s]->bad[j]) continue;
            int64_t t = g[s]->ts[j];
            held += w == INT64_MIN ||
                    (window ? t / WIN * WIN + WIN > w : t >= w + (s ? LO : -HI));
        }
    return held;
}

static void restore_case(const char *sql, int window, uint64_t *rng)
{
    sqlfix_t *f = NULL;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    static gen_t ga, gb;
    gen_side(&ga, 2, 5, 0, rng);
    gen_side(&gb, 3, 4, 1, rng);
    topic(f, "ta", 2);
    topic(f, "tb", 3);
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, "CREATE STREAM a (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'ta')",
                NULL, &t, &off, err, NULL) != 0) fail_msg("%s", err);
    free(t);
    t = NULL;
    if (run_sql(f, "CREATE STREAM b (k INTEGER, n INTEGER, ts INTEGER) WITH (topic = 'tb')",
                NULL, &t, &off, err, NULL) != 0) fail_msg("%s", err);
    free(t);
    rows_t whole = {RN_BUF_INIT, 0}, pieces = {RN_BUF_INIT, 0};
    rn_sql_t *u = open_follow(f, sql, &whole), *q = open_follow(f, sql, &pieces);
    plan_t plan;
    make_plan(&plan, rng);
    int next[2] = {0, 0};
    uint64_t most = 0, restores = 0;
    for (int r = 0; r < plan.nrounds; r++) {
        for (int o = 0; o < 2; o++) {
            int s = plan.b_first[r] ? !o : o;
            for (int i = 0; i < plan.slices[r][s]; i++)
                put_slice(f->d, s ? "tb" : "ta", s ? &gb : &ga, next[s]++);
        }
        to_idle(u);
        /* q: a few steps, saved, closed, restored into a new query, to idle */
        char e2[RN_ERRMSG_SIZE];
        rn_sql_state_t s = RN_SQL_MORE;
        int steps = (int)(rn_test_rng(rng) % 6);
        for (int i = 0; i < steps && s == RN_SQL_MORE; i++)
            if (rn_sql_step(q, &s, e2) != 0) fail_msg("step: %s", e2);
        rn_buf_t b = RN_BUF_INIT;
        if (rn_sql_state_save(q, &b, e2) != 0) fail_msg("save: %s", e2);
        rn_sql_stats_t before, after, st;
        rn_sql_stats(q, &before);
        rn_sql_close(q);
        q = open_follow(f, sql, &pieces);
        if (rn_sql_state_load(q, b.data, b.len, e2) != 0) fail_msg("load: %s", e2);
        /* a damaged state is refused, not half loaded */
        if (b.len > 20) {
            rows_t none = {RN_BUF_INIT, 0};
            rn_sql_t *x = open_follow(f, sql, &none);
            assert_int_equal(rn_sql_state_load(x, b.data, b.len - 3, e2), RN_ECORRUPT);
            rn_sql_close(x);
            rn_buf_free(&none.text);
        }
        rn_buf_free(&b);
        restores++;
        rn_sql_stats(q, &after);
        assert_int_equal(after.join_rows, before.join_rows);
        assert_int_equal(after.records, before.records);
        assert_int_equal(after.rows, before.rows);
        assert_int_equal(after.watermark, before.watermark);
        to_idle(q);
        rn_sql_stats(q, &after);
        rn_sql_stats(u, &st);
        /* both read everything: the same state, bounded as the uninterrupted one */
        assert_int_equal(after.join_rows, st.join_rows);
        assert_int_equal(after.rows, st.rows);
        assert_int_equal(after.late, 0);
        uint64_t want = must_hold(&ga, next[0], &gb, next[1], window);
        if (after.join_rows != want)
            fail_msg("round %d: %llu records held, the bound gives %llu", r,
                     (unsigned long long)after.join_rows, (unsigned long long)want);
        if (after.join_rows > most) most = after.join_rows;
    }
    rn_buf_append(&whole.text, "", 1, 0);
    rn_buf_append(&pieces.text, "", 1, 0);
    if (whole.text.len < 200) fail_msg("too few rows: %s", (char *)whole.text.data);
    assert_string_equal((char *)pieces.text.data, (char *)whole.text.data);
    assert_true(most > 0);
    printf("restored %llu times, at most %llu records buffered: %.60s...\n",
           (unsigned long long)restores, (unsigned long long)most, sql);
    rn_sql_close(q);
    rn_sql_close(u);
    rn_buf_free(&whole.text);
    rn_buf_free(&pieces.text);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

static void test_restore(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("streamsql_sjoin_restore");
    for (int i = 0; i < 2; i++) {
        restore_case(select_interval, 0, &rng);
        restore_case(select_window, 1, &rng);
        restore_case(select_grouped, 1, &rng);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_interval_kill),
        cmocka_unit_test(test_window_kill),
        cmocka_unit_test(test_grouped_kill),
        cmocka_unit_test(test_late_kill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

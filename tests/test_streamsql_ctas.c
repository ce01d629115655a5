/*
 * test_streamsql_ctas.c — materialized tables (CREATE TABLE name AS SELECT
 * ... GROUP BY key, streamsql/ctas.c) and pull queries on tables.
 *
 * Checked against plain sqlite3 over every source record: the table read
 * with a pull query equals the aggregation for batch sizes 1, 7 and 500 and
 * 1 and 3 source queues, after the source grows, with a WHERE on the table,
 * with an INTEGER and a TEXT key, and joined to a stream; the maintaining
 * pipeline SIGKILLed at random points and restarted leaves exactly the
 * aggregation (nothing counted twice); inside runneld (--pipelines file) the
 * table is maintained, read over the Query RPC (streamsql --server) and
 * exact after a kill -9 of runneld, and reading it over the RPC needs consume
 * rights on its changelog topic; refusals name what is supported; DROP
 * TABLE takes the pipeline and the changelog topic away.
 */
#include "tests/test_streamsql_util.h"
#include "tests/util/util.h"

#include "etl/etl.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void exec_ok(sqlfix_t *f, const char *sql)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, sql, NULL, &t, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(t);
}

static char *rows_of(sqlfix_t *f, const char *sql)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, sql, NULL, &t, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    return t;
}

static void refused(sqlfix_t *f, const char *sql, const rn_sql_opts_t *o, const char *want)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    int rc = run_sql(f, sql, o, &t, &off, err, NULL);
    free(t);
    if (rc == 0) fail_msg("accepted: %s", sql);
    if (!strstr(err, want)) fail_msg("%s\n  message: %s\n  wanted: %s", sql, err, want);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lines of text sorted (tables have no order). */
static char *sorted(const char *text)
{
    char *copy = strdup(text), *lines[20000];
    int n = 0;
    for (char *s = strtok(copy, "\n"); s && n < 20000; s = strtok(NULL, "\n")) lines[n++] = s;
    qsort(lines, (size_t)n, sizeof lines[0], cmp_str);
    rn_buf_t b = RN_BUF_INIT;
    for (int i = 0; i < n; i++) {
        rn_buf_append(&b, lines[i], strlen(lines[i]), 0);
        rn_buf_append(&b, "\n", 1, 0);
    }
    rn_buf_append(&b, "", 1, 0);
    free(copy);
    return (char *)b.data;
}

static void expect_same(const char *what, char *got, char *want)
{
    char *g = sorted(got), *w = sorted(want);
    if (strcmp(g, w) != 0) fail_msg("%s\n got:\n%s\n want:\n%s", what, g, w);
    free(g);
    free(w);
    free(got);
    free(want);
}

/* n records k = "k<j % 17>", uid = j % 23, x = (j * 37) % 101 into queue
 * (j % nq) of ev, in batches of `batch`, and into sqlite's src. */
static void make_events(rn_datadir_t *d, sqlite3 *db, uint32_t nq, size_t batch, int first,
                        int n)
{
    sqlfix_t fx = {.d = d};
    static char vals[500][80];
    trec_t t[500];
    for (uint32_t q = 0; q < nq; q++) {
        size_t k = 0;
        for (int j = first; j < first + n; j++) {
            if ((uint32_t)j % nq != q) continue;
            int x = (j * 37) % 101;
            snprintf(vals[k], sizeof vals[k], "{\"k\":\"k%d\",\"uid\":%d,\"x\":%d}", j % 17,
                     j % 23, x);
            t[k] = (trec_t){1700000000000LL + j, NULL, vals[k]};
            if (db) {
                char *sql = sqlite3_mprintf("INSERT INTO src VALUES ('k%d', %d, %d)", j % 17,
                                            j % 23, x);
                assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
                sqlite3_free(sql);
            }
            if (++k == batch) { produce(&fx, "ev", q, t, k); k = 0; }
        }
        if (k) produce(&fx, "ev", q, t, k);
    }
}

static sqlite3 *oracle_db(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE src (k TEXT, uid INTEGER, x INTEGER)", NULL,
                                  NULL, NULL), SQLITE_OK);
    return db;
}

/* Run pipeline name to caught-up, with a final checkpoint. */
static void run_pipeline(rn_datadir_t *d, const char *name)
{
    char err[RN_ERRMSG_SIZE];
    rn_etl_t *p = NULL;
    if (rn_etl_open(d, name, &p, err) != 0) fail_msg("open %s: %s", name, err);
    rn_etl_state_t st = RN_ETL_MORE;
    for (int guard = 0; st == RN_ETL_MORE && guard < 1000000; guard++)
        if (rn_etl_step(p, &st, err) != 0) fail_msg("step: %s", err);
    if (rn_etl_checkpoint(p, err) != 0) fail_msg("checkpoint: %s", err);
    rn_etl_close(p);
}

static const char stream_ddl[] =
    "CREATE STREAM evs (k TEXT, uid INTEGER, x INTEGER) WITH (topic = 'ev', format = 'json')";
static const char ctas_text[] =
    "CREATE TABLE agg AS SELECT k, count(*) AS n, sum(x) AS s, min(x) AS lo, max(x) AS hi "
    "FROM evs WHERE x % 5 <> 0 GROUP BY k";
static const char oracle_text[] =
    "SELECT k, count(*), sum(x), min(x), max(x) FROM src WHERE x % 5 <> 0 GROUP BY k";
static const char ctas_int[] =
    "CREATE TABLE byuid AS SELECT uid, count(*) AS n, avg(x) AS a FROM evs GROUP BY uid";
static const char oracle_int[] = "SELECT uid, count(*), avg(x) FROM src GROUP BY uid";

static void oracle_case(uint32_t nq, size_t batch)
{
    sqlfix_t *f;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    sqlite3 *db = oracle_db();
    topic(f, "ev", nq);
    exec_ok(f, stream_ddl);
    make_events(f->d, db, nq, batch, 0, 600);
    exec_ok(f, ctas_text);
    exec_ok(f, ctas_int);
    /* before the pipeline runs: the table exists and is empty */
    char *t = rows_of(f, "SELECT * FROM agg");
    assert_string_equal(t, "");
    free(t);
    run_pipeline(f->d, "agg");
    run_pipeline(f->d, "byuid");
    expect_same("agg", rows_of(f, "SELECT k, n, s, lo, hi FROM agg"),
                oracle_rows(db, oracle_text, ""));
    expect_same("byuid", rows_of(f, "SELECT uid, n, a FROM byuid"),
                oracle_rows(db, oracle_int, ""));
    /* the source grows: the table follows once the pipeline has run */
    make_events(f->d, db, nq, batch, 600, 900);
    run_pipeline(f->d, "agg");
    run_pipeline(f->d, "byuid");
    expect_same("agg grown", rows_of(f, "SELECT k, n, s, lo, hi FROM agg"),
                oracle_rows(db, oracle_text, ""));
    expect_same("byuid grown", rows_of(f, "SELECT uid, n, a FROM byuid"),
                oracle_rows(db, oracle_int, ""));
    /* a pull query with WHERE, expressions and sqlite's aggregates over the table */
    expect_same("where", rows_of(f, "SELECT k, n, s * 2 FROM agg WHERE n > 50 AND k <> 'k3'"),
                oracle_rows(db, "SELECT k, count(*), sum(x) * 2 FROM src WHERE x % 5 <> 0 "
                                "GROUP BY k HAVING count(*) > 50 AND k <> 'k3'", ""));
    expect_same("sum", rows_of(f, "SELECT sum(n) FROM byuid WHERE uid < 10"),
                oracle_rows(db, "SELECT count(*) FROM src WHERE uid < 10", ""));
    t = rows_of(f, "SELECT k FROM agg WHERE n > 0 LIMIT 3");
    int lines = 0;
    for (char *p = t; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 3);
    free(t);
    sqlite3_close(db);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

static void test_oracle(void **state)
{
    (void)state;
    static const size_t batches[] = {1, 7, 500};
    for (uint32_t nq = 1; nq <= 3; nq += 2)
        for (size_t b = 0; b < 3; b++) oracle_case(nq, batches[b]);
}

/* A stream joined to a materialized table by its key. */
static void test_join(void **state)
{
    sqlfix_t *f = *state;
    sqlite3 *db = oracle_db();
    topic(f, "ev", 3);
    topic(f, "clicks", 2);
    exec_ok(f, stream_ddl);
    exec_ok(f, "CREATE STREAM clicks (uid INTEGER, page TEXT) WITH (topic = 'clicks')");
    make_events(f->d, db, 3, 7, 0, 500);
    exec_ok(f, ctas_int);
    run_pipeline(f->d, "byuid");
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE clicks (uid INTEGER, page TEXT)", NULL, NULL,
                                  NULL), SQLITE_OK);
    static char vals[40][64];
    trec_t t[40];
    for (int i = 0; i < 40; i++) {
        int uid = (i * 7) % 30;     /* 23..29 have no row in byuid */
        snprintf(vals[i], sizeof vals[i], "{\"uid\":%d,\"page\":\"p%d\"}", uid, i);
        t[i] = (trec_t){1700000000000LL + i, NULL, vals[i]};
        char *sql = sqlite3_mprintf("INSERT INTO clicks VALUES (%d, 'p%d')", uid, i);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_free(sql);
    }
    produce(f, "clicks", 0, t, 20);
    produce(f, "clicks", 1, t + 20, 20);
    expect_same("join", rows_of(f, "SELECT c.page, c.uid, b.n FROM clicks c LEFT JOIN byuid b "
                                   "ON c.uid = b.uid"),
                oracle_rows(db, "SELECT c.page, c.uid, b.n FROM clicks c LEFT JOIN (SELECT uid, "
                                "count(*) AS n FROM src GROUP BY uid) b ON c.uid = b.uid", ""));
    expect_same("inner join", rows_of(f, "SELECT c.page, b.a FROM clicks c JOIN byuid b "
                                         "ON c.uid = b.uid WHERE b.n > 21"),
                oracle_rows(db, "SELECT c.page, b.a FROM clicks c JOIN (SELECT uid, count(*) AS "
                                "n, avg(x) AS a FROM src GROUP BY uid) b ON c.uid = b.uid "
                                "WHERE b.n > 21", ""));
    sqlite3_close(db);
}

/* Refusals, SHOW TABLES, DROP TABLE, and pull queries on a plain changelog
 * table. */
static void test_refused_and_drop(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "ev", 1);
    exec_ok(f, stream_ddl);
    refused(f, "CREATE TABLE t AS SELECT count(*) AS n FROM evs", NULL, "needs GROUP BY key");
    refused(f, "CREATE TABLE t AS SELECT k, x FROM evs", NULL, "needs GROUP BY key");
    refused(f, "CREATE TABLE t AS SELECT window_start, k, count(*) AS n FROM evs GROUP BY "
               "TUMBLE(ts, '1m'), k", NULL, "does not take a window");
    refused(f, "CREATE TABLE t AS SELECT k, uid, count(*) AS n FROM evs GROUP BY k, uid", NULL,
            "groups by one key");
    refused(f, "CREATE TABLE t AS SELECT k, count(*) FROM evs GROUP BY k", NULL,
            "needs a name: write it with AS");
    refused(f, "CREATE TABLE t AS SELECT k, count(*) + 1 AS n FROM evs GROUP BY k", NULL,
            "neither the GROUP BY key nor one aggregate call");
    refused(f, "CREATE TABLE t AS SELECT count(*) AS n FROM evs GROUP BY k", NULL,
            "must return the GROUP BY key");
    refused(f, "CREATE TABLE t AS SELECT x + 1, count(*) AS n FROM evs GROUP BY x + 1", NULL,
            "declared INTEGER or TEXT field");
    refused(f, "CREATE TABLE t AS SELECT k, count(*) AS n FROM evs GROUP BY k EMIT CHANGES",
            NULL, "no LIMIT, EMIT or WITH");
    refused(f, "CREATE TABLE t AS SELECT k, count(*) AS n FROM nosuch GROUP BY k", NULL,
            "unknown stream or topic 'nosuch'");
    refused(f, "CREATE TABLE t AS SELECT k, count(*) AS n FROM evs GROUP BY k HAVING n > 1",
            NULL, "HAVING");
    refused(f, "CREATE TABLE evs AS SELECT k, count(*) AS n FROM evs GROUP BY k", NULL, "evs");
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.remote = 1;
    refused(f, "CREATE TABLE t AS SELECT k, count(*) AS n FROM evs GROUP BY k", &o,
            "--pipelines file");
    /* a refused CTAS leaves nothing behind */
    char *t = rows_of(f, "SHOW TABLES");
    assert_string_equal(t, "");
    free(t);
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t mt;
    rn_meta_t *m = rn_datadir_meta_lock(f->d);
    assert_int_equal(rn_meta_topic_get(m, "t.changelog", &mt, err), RN_ENOTFOUND);
    rn_datadir_meta_unlock(f->d);

    trec_t e[] = {{1, NULL, "{\"k\":\"a\",\"uid\":1,\"x\":3}"},
                  {2, NULL, "{\"k\":\"b\",\"uid\":2,\"x\":4}"},
                  {3, NULL, "{\"k\":\"a\",\"uid\":3,\"x\":6}"}};
    produce(f, "ev", 0, e, 3);
    exec_ok(f, ctas_text);
    /* the same definition again: "already exists"; another: refused */
    refused(f, ctas_text, NULL, "already exists");
    refused(f, "CREATE TABLE agg AS SELECT k, count(*) AS n FROM evs GROUP BY k", NULL,
            "DROP TABLE agg first");
    refused(f, "CREATE TABLE agg AS SELECT k, count(*) AS n, sum(x) AS s, min(x) AS lo, "
               "max(x) AS hi FROM evs GROUP BY k", NULL, "materialized by another SELECT");
    t = rows_of(f, "SHOW TABLES");
    if (!strstr(t, "agg|topic 'agg.changelog', materialized by pipeline 'agg', not run yet"))
        fail_msg("SHOW TABLES: %s", t);
    free(t);
    run_pipeline(f->d, "agg");
    t = rows_of(f, "SHOW TABLES");
    if (!strstr(t, "materialized by pipeline 'agg' from 'ev', lag 0 records"))
        fail_msg("SHOW TABLES: %s", t);
    free(t);
    t = rows_of(f, "SELECT k, n, s FROM agg WHERE k = 'a'");
    assert_string_equal(t, "a|2|9\n");
    free(t);
    o.remote = 0;
    o.follow = 1;
    refused(f, "SELECT * FROM agg", &o, "answers once");
    refused(f, "SELECT k FROM agg EMIT CHANGES", NULL, "EMIT and WITH apply to streams");
    /* DROP TABLE: the table, its pipeline and its changelog go */
    exec_ok(f, "DROP TABLE agg");
    m = rn_datadir_meta_lock(f->d);
    assert_int_equal(rn_meta_topic_get(m, "agg.changelog", &mt, err), RN_ENOTFOUND);
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    assert_int_equal(rn_meta_pipeline_get(m, "agg", mp, err), RN_ENOTFOUND);
    free(mp);
    rn_datadir_meta_unlock(f->d);
    /* created again: from the start, nothing left of the old one */
    exec_ok(f, "CREATE TABLE agg AS SELECT k, count(*) AS n FROM evs WHERE x > 3 GROUP BY k");
    run_pipeline(f->d, "agg");
    t = rows_of(f, "SELECT k, n FROM agg");
    char *s = sorted(t);
    assert_string_equal(s, "a|1\nb|1\n");
    free(s);
    free(t);

    /* a plain changelog table answers pull queries the same way */
    topic(f, "users", 1);
    trec_t u[] = {{1, "1", "{\"id\":1,\"name\":\"ann\"}"}, {1, "2", "{\"id\":2,\"name\":\"bob\"}"},
                  {1, "1", "{\"id\":1,\"name\":\"amy\"}"}, {1, "2", ""}};
    produce(f, "users", 0, u, 4);
    exec_ok(f, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT) WITH (topic = 'users', "
               "format = 'json')");
    t = rows_of(f, "SELECT id, name FROM users WHERE id < 5");
    assert_string_equal(t, "1|amy\n");
    free(t);
    /* and a static file table */
    char file[128], ddl[256];
    snprintf(file, sizeof file, "%s/plans.csv", f->root);
    static const char csv[] = "id,plan\n1,free\n2,pro\n3,team\n";
    rn_test_write_file(file, csv, strlen(csv));
    snprintf(ddl, sizeof ddl, "CREATE TABLE plans (id INTEGER PRIMARY KEY, plan TEXT) WITH "
             "(file = '%s', format = 'csv')", file);
    exec_ok(f, ddl);
    t = rows_of(f, "SELECT plan FROM plans WHERE id >= 2");
    s = sorted(t);
    assert_string_equal(s, "pro\nteam\n");
    free(s);
    free(t);
    exec_ok(f, "DROP TABLE users");
    m = rn_datadir_meta_lock(f->d);
    assert_int_equal(rn_meta_topic_get(m, "users", &mt, err), 0);   /* not its topic */
    rn_datadir_meta_unlock(f->d);
}

/* ---- the maintaining pipeline killed and restarted -------------------------------- */

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

static void test_kill(void **state)
{
    (void)state;
    uint64_t seed = rn_test_seed("streamsql_ctas_kill"), rng = seed;
    static const char *const points[] = {"after-step", "after-sink-write", "before-checkpoint",
                                         "after-checkpoint"};
    char *root = rn_test_tmpdir_new("ctas-kill");
    sqlite3 *db = oracle_db();
    rn_datadir_t *d = open_dir(root);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_datadir_topic_create(d, "ev", 3, NULL, err), 0);
    sqlfix_t fx = {.d = d};
    exec_ok(&fx, stream_ddl);
    exec_ok(&fx, ctas_text);
    /* a short checkpoint interval: kills land between checkpoints too */
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    rn_meta_t *m = rn_datadir_meta_lock(d);
    assert_int_equal(rn_meta_pipeline_get(m, "agg", mp, err), 0);
    rn_datadir_meta_unlock(d);
    assert_non_null(strstr(mp->sql, "WITH (queues = 1, start = 'earliest')"));
    free(mp);
    rn_datadir_close(d);
    int kills = 0;
    for (int round = 0; round < 12; round++) {
        d = open_dir(root);
        make_events(d, db, 3, 1 + rn_test_rng(&rng) % 20, round * 150, 150);
        rn_datadir_close(d);
        const char *point = points[rn_test_rng(&rng) % 4];
        long at = 1 + (long)(rn_test_rng(&rng) % (strcmp(point, "after-step") ? 2 : 8));
        kills += rn_test_etl_child_run(root, "agg", point, at);
        if (round % 4 == 3) {
            /* the table read while the pipeline is behind or mid-way holds no
             * key counted twice: every n is at most the oracle's */
            d = open_dir(root);
            fx.d = d;
            char *t = rows_of(&fx, "SELECT k, n FROM agg");
            for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
                char k[16];
                int n;
                assert_int_equal(sscanf(line, "%15[^|]|%d", k, &n), 2);
                char *sql = sqlite3_mprintf("SELECT count(*) FROM src WHERE x %% 5 <> 0 AND "
                                            "k = '%q'", k);
                char *o = oracle_rows(db, sql, "");
                sqlite3_free(sql);
                if (n > atoi(o)) fail_msg("key %s: n %d > %d", k, n, atoi(o));
                free(o);
            }
            free(t);
            rn_datadir_close(d);
        }
    }
    assert_int_equal(rn_test_etl_child_run(root, "agg", "none", 0), 0);
    d = open_dir(root);
    fx.d = d;
    expect_same("after kills", rows_of(&fx, "SELECT k, n, s, lo, hi FROM agg"),
                oracle_rows(db, oracle_text, ""));
    rn_datadir_close(d);
    printf("ctas pipeline: %d kill(s) in 12 rounds (seed %llu)\n", kills,
           (unsigned long long)seed);
    assert_true(kills >= 3);
    sqlite3_close(db);
    rn_test_tmpdir_free(root);
}

/* ---- inside runneld -------------------------------------------------------------- */

/* Pull query over the Query RPC (streamsql --server): its rows as "a|b" lines. */
static char *remote_rows(const rn_test_runneld_t *r, const char *dir, const char *sql)
{
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/q.out", dir);
    snprintf(err, sizeof err, "%s/q.err", dir);
    const char *argv[] = {RN_BIN_DIR "/streamsql", "--server", r->addr, "--format", "csv", "-e",
                          sql, NULL};
    int st = rn_test_run(argv[0], argv, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e = rn_test_slurp(err, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("streamsql --server: %s", e);
    free(e);
    char *body = strchr(o, '\n');      /* past the header */
    char *res = strdup(body ? body + 1 : "");
    for (char *p = res; *p; p++)
        if (*p == ',') *p = '|';
    free(o);
    return res;
}

/* Poll until the remote table equals want (at most ~20 s). */
static void await_table(const rn_test_runneld_t *r, const char *dir, const char *sql,
                        const char *want)
{
    char *w = sorted(want), *g = NULL;
    for (int i = 0; i < 400; i++) {
        char *t = remote_rows(r, dir, sql);
        free(g);
        g = sorted(t);
        free(t);
        if (!strcmp(g, w)) break;
        rn_test_sleep_ms(50);
    }
    if (strcmp(g, w) != 0) fail_msg("remote table\n got:\n%s\n want:\n%s", g, w);
    free(g);
    free(w);
}

static void test_runneld(void **state)
{
    (void)state;
    char *root = rn_test_tmpdir_new("ctas-srv");
    char data[PATH_MAX], file[PATH_MAX];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(file, sizeof file, "%s/pipelines.sql", root);
    sqlite3 *db = oracle_db();
    rn_datadir_t *d = open_dir(data);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_datadir_topic_create(d, "ev", 3, NULL, err), 0);
    make_events(d, db, 3, 50, 0, 30000);
    rn_datadir_close(d);
    char text[1024];
    snprintf(text, sizeof text, "%s;\n%s;\n", stream_ddl, ctas_text);
    rn_test_write_file(file, text, strlen(text));
    const char *extra[] = {"--pipelines", file, NULL};
    rn_test_runneld_t r;
    int exited = 0;
    assert_int_equal(rn_test_runneld_start_args(&r, data, extra, &exited), 0);
    /* kill -9 while the pipeline is catching up over 30,000 records */
    rn_test_sleep_ms(30);
    kill(r.pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(r.pid, &status, 0), r.pid);
    d = open_dir(data);
    make_events(d, db, 3, 13, 30000, 2000);
    rn_datadir_close(d);
    assert_int_equal(rn_test_runneld_start_args(&r, data, extra, &exited), 0);
    char *want = oracle_rows(db, oracle_text, "");
    await_table(&r, root, "SELECT k, n, s, lo, hi FROM agg", want);
    free(want);
    /* a pull query with WHERE over the RPC */
    want = oracle_rows(db, "SELECT k, count(*) FROM src WHERE x % 5 <> 0 GROUP BY k HAVING "
                           "k < 'k3'", "");
    char *got = remote_rows(&r, root, "SELECT k, n FROM agg WHERE k < 'k3'");
    expect_same("remote where", got, want);
    /* a CTAS over the RPC is refused; the table is there for remote joins */
    char out[PATH_MAX], errf[PATH_MAX];
    snprintf(out, sizeof out, "%s/c.out", root);
    snprintf(errf, sizeof errf, "%s/c.err", root);
    const char *argv[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "-e",
                          "CREATE TABLE t2 AS SELECT k, count(*) AS n FROM evs GROUP BY k", NULL};
    int st = rn_test_run(argv[0], argv, NULL, out, errf);
    char *e = rn_test_slurp(errf, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    if (!strstr(e, "--pipelines file")) fail_msg("stderr: %s", e);
    free(e);
    assert_int_equal(rn_test_runneld_stop(&r), 0);

    /* with ACLs: reading the table needs consume on its changelog topic */
    const char *acl1[] = {RN_BIN_DIR "/runnel", "--data", data, "acl", "add", "--principal",
                          "anonymous", "--cluster", "--op", "query", NULL};
    const char *acl2[] = {RN_BIN_DIR "/runnel", "--data", data, "acl", "add", "--principal",
                          "anonymous", "--topic", "ev", "--op", "consume", NULL};
    st = rn_test_run(acl1[0], acl1, NULL, out, errf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = rn_test_run(acl2[0], acl2, NULL, out, errf);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(rn_test_runneld_start_args(&r, data, extra, &exited), 0);
    const char *argv2[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "-e",
                           "SELECT k FROM agg", NULL};
    st = rn_test_run(argv2[0], argv2, NULL, out, errf);
    e = rn_test_slurp(errf, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    if (!strstr(e, "agg.changelog")) fail_msg("stderr: %s", e);
    free(e);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
    sqlite3_close(db);
    rn_test_tmpdir_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle),
        cmocka_unit_test_setup_teardown(test_join, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_refused_and_drop, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_runneld),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

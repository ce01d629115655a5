/*
 * test_streamsql_join.c — stream–table lookup joins (streamsql/table.c):
 * JOIN and LEFT JOIN over a changelog table (upserts, deletes by an empty
 * value or JSON null keyed by the record key, mistyped records counted)
 * checked against plain sqlite3 over the same data (the changelog applied by
 * INSERT OR REPLACE / DELETE, the stream as a table), for batch sizes 1, 7
 * and 500, 1 and 3 stream queues, 1 and 3 table queues: filters,
 * projections, an expression key, and a windowed aggregation grouped by a
 * table column. A bounded query's table is the one at open; a --follow
 * query sees a table that grows while it runs, before each batch; a state
 * saved and loaded rebuilds exactly the saved table. A static CSV file table.
 * Bad definitions and unsupported join shapes are refused with messages
 * naming what is supported. A pipeline with a join killed with SIGKILL at
 * seeded random points and restarted writes exactly the output of one
 * uninterrupted run (static table), and exactly one row per source record
 * with the table never going back (a table that grows between runs). The
 * Query RPC (streamsql --server) runs a join against a real runneld,
 * refuses a file table, and refuses a join to a principal who may not consume
 * the table's topic; a pipeline's creator is checked on the table's topic.
 */
#include "tests/test_streamsql_util.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etl/etl.h"
#include "tests/util/util.h"

#define NKEYS   40
#define NUSERS  300
#define NCLICKS 1500

static void exec_ok(sqlfix_t *f, const char *sql)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, sql, NULL, &t, &off, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    free(t);
}

/* Run sql; its rows. */
static char *rows_of(sqlfix_t *f, const char *sql, rn_sql_stats_t *st)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    if (run_sql(f, sql, NULL, &t, &off, err, st) != 0) fail_msg("%s: %s", sql, err);
    return t;
}

/* The statement must fail with a message holding want. */
static void refused(sqlfix_t *f, const char *sql, const char *want)
{
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    int rc = run_sql(f, sql, NULL, &t, &off, err, NULL);
    free(t);
    if (rc == 0) fail_msg("accepted: %s", sql);
    if (!strstr(err, want)) fail_msg("%s\n  message: %s\n  wanted: %s", sql, err, want);
}

/* Lines of text sorted (for outputs over several queues). */
static int cmp_str(const void *a, const void *b)
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
    qsort(v, n, sizeof *v, cmp_str);
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

/* ---- the corpus and its oracle ------------------------------------------------- */

/* Produce the changelog into "users" (tq queues: key k into queue k % tq)
 * and apply it to the oracle's users table; 3 bad records. Returns the
 * number of bad records. */
static int make_users(sqlfix_t *f, sqlite3 *db, uint32_t tq, uint64_t seed)
{
    uint64_t rng = seed;
    topic(f, "users", tq);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, "
                                      "tier INTEGER)", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < NUSERS; i++) {
        int k = (int)(rn_test_rng(&rng) % NKEYS), what = (int)(rn_test_rng(&rng) % 20);
        char val[96], key[16], sql[160];
        snprintf(key, sizeof key, "%d", k);
        if (what == 0) snprintf(val, sizeof val, "%s", "");
        else if (what == 1) snprintf(val, sizeof val, " null ");
        else snprintf(val, sizeof val, "{\"tier\":%d,\"id\":%d,\"name\":\"n%d_%d\"}", i % 3, k, k, i);
        trec_t r = {1000 + i, key, val};
        produce(f, "users", (uint32_t)k % tq, &r, 1);
        if (what <= 1) snprintf(sql, sizeof sql, "DELETE FROM users WHERE id = %d", k);
        else snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO users VALUES (%d, 'n%d_%d', %d)",
                      k, k, i, i % 3);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    /* key 7 present at the end (a query below filters on it) */
    trec_t k7 = {2000, "7", "{\"id\":7,\"name\":\"seven\",\"tier\":0}"};
    produce(f, "users", 7 % tq, &k7, 1);
    assert_int_equal(sqlite3_exec(db, "INSERT OR REPLACE INTO users VALUES (7, 'seven', 0)", NULL,
                                  NULL, NULL), SQLITE_OK);
    trec_t bad[3] = {{1, "7", "{\"id\":\"seven\",\"name\":\"x\"}"},    /* mistyped key */
                     {1, "8", "{\"name\":\"no id\"}"},                    /* no key field */
                     {1, NULL, ""}};                                      /* delete, no key */
    produce(f, "users", 0, bad, 3);
    return 3;
}

/* NCLICKS clicks into sq queues (click j into queue j % sq), in batches of
 * `batch` records per queue, and into the oracle's clicks table. */
static void make_clicks(sqlfix_t *f, sqlite3 *db, uint32_t sq, size_t batch, uint64_t seed)
{
    uint64_t rng = seed;
    topic(f, "clicks", sq);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE clicks(queue INTEGER, off INTEGER, "
                                      "ts INTEGER, uid INTEGER, page TEXT)", NULL, NULL, NULL),
                     SQLITE_OK);
    static char vals[NCLICKS][64];
    trec_t *pend = calloc(NCLICKS, sizeof *pend);
    int64_t *offs = calloc(sq, sizeof *offs);
    for (uint32_t q = 0; q < sq; q++) {
        size_t n = 0;
        for (int j = (int)q; j < NCLICKS; j += (int)sq) {
            int uid = (int)(rn_test_rng(&rng) % (NKEYS + 10));
            snprintf(vals[j], sizeof vals[j], "{\"uid\":%d,\"page\":\"p%d\"}", uid, j % 17);
            pend[n] = (trec_t){1700000000000LL + 1000LL * j, NULL, vals[j]};
            char sql[200];
            snprintf(sql, sizeof sql, "INSERT INTO clicks VALUES (%u, %lld, %lld, %d, 'p%d')", q,
                     (long long)offs[q]++, (long long)pend[n].ts, uid, j % 17);
            assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
            n++;
        }
        for (size_t i = 0; i < n; i += batch)
            produce(f, "clicks", q, pend + i, n - i < batch ? n - i : batch);
    }
    free(pend);
    free(offs);
    exec_ok(f, "CREATE STREAM clicks (uid INTEGER, page TEXT) WITH (topic = 'clicks')");
}

static const char users_ddl[] =
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, tier INTEGER) "
    "WITH (topic = 'users', format = 'json')";

typedef struct qcase {
    const char *sql, *oracle;
    int         ordered;     /* over one stream queue the order is the stream's */
} qcase_t;

static const qcase_t qcases[] = {
    {"SELECT c.uid, c.page, u.name FROM clicks c JOIN users u ON c.uid = u.id WHERE u.tier <> 1",
     "SELECT c.uid, c.page, u.name FROM clicks c JOIN users u ON c.uid = u.id WHERE u.tier <> 1 "
     "ORDER BY c.queue, c.off", 1},
    {"SELECT c.queue, c.offset, c.uid, u.name, u.tier FROM clicks AS c LEFT JOIN users AS u "
     "ON u.id = c.uid",
     "SELECT c.queue, c.off, c.uid, u.name, u.tier FROM clicks c LEFT JOIN users u ON u.id = c.uid "
     "ORDER BY c.queue, c.off", 1},
    {"SELECT page, name, id FROM clicks LEFT OUTER JOIN users ON uid + 1 = users.id WHERE "
     "page <> 'p3'",
     "SELECT page, name, id FROM clicks LEFT JOIN users ON uid + 1 = users.id WHERE page <> 'p3' "
     "ORDER BY queue, off", 1},
    /* sqlite makes this LEFT JOIN an inner one and would read the table first:
     * run as CROSS JOIN, rows still in stream order */
    {"SELECT c.uid, u.name FROM clicks c LEFT JOIN users u ON c.uid = u.id WHERE u.id = 7",
     "SELECT c.uid, u.name FROM clicks c LEFT JOIN users u ON c.uid = u.id WHERE u.id = 7 "
     "ORDER BY c.queue, c.off", 1},
    {"SELECT window_start, u.name, count(*) AS n, sum(c.uid) AS s FROM clicks c LEFT JOIN users u "
     "ON c.uid = u.id GROUP BY TUMBLE(c.ts, '10s'), u.name",
     "SELECT (c.ts / 10000) * 10000, u.name, count(*), sum(c.uid) FROM clicks c LEFT JOIN users u "
     "ON c.uid = u.id GROUP BY 1, 2", 0},
    {"SELECT u.tier, count(*) AS n FROM clicks c JOIN users u ON c.uid = u.id GROUP BY u.tier",
     "SELECT u.tier, count(*) FROM clicks c JOIN users u ON c.uid = u.id GROUP BY 1", 0},
};

static void join_case(uint32_t sq, uint32_t tq, size_t batch)
{
    sqlfix_t *f = NULL;
    assert_int_equal(sqlfix_setup((void **)&f), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    uint64_t seed = rn_test_seed("streamsql_join");
    int bad = make_users(f, db, tq, seed);
    make_clicks(f, db, sq, batch, seed ^ 0x5a5a);
    exec_ok(f, users_ddl);
    for (size_t i = 0; i < sizeof qcases / sizeof qcases[0]; i++) {
        rn_sql_stats_t st;
        char *got = rows_of(f, qcases[i].sql, &st);
        char *want = oracle_rows(db, qcases[i].oracle, "");
        if (strlen(want) <= 8) fail_msg("oracle %zu gave too little: %s", i, want);
        if (!(qcases[i].ordered && sq == 1)) {
            char *a = sorted(got), *b = sorted(want);
            free(got); free(want);
            got = a; want = b;
        }
        if (strcmp(got, want) != 0)
            fail_msg("sq %u tq %u batch %zu: %s\n--- got\n%.2000s\n--- want\n%.2000s", sq, tq,
                     batch, qcases[i].sql, got, want);
        /* the bad table records are counted, nothing else */
        assert_int_equal(st.errors, (uint64_t)bad);
        assert_non_null(strstr(st.first_error, "table 'users'"));
        free(got);
        free(want);
    }
    sqlite3_close(db);
    assert_int_equal(sqlfix_teardown((void **)&f), 0);
}

static void test_join_oracle(void **state)
{
    (void)state;
    static const size_t batches[] = {1, 7, 500};
    for (size_t b = 0; b < 3; b++)
        for (uint32_t sq = 1; sq <= 3; sq += 2)
            join_case(sq, b == 1 ? 3 : 1, batches[b]);
}

/* ---- updates, deletes, a TEXT key, and the table of a bounded query ------------- */

static void test_updates_deletes(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "cities", 1);
    topic(f, "ev", 1);
    trec_t t[] = {{1, "a", "{\"code\":\"a\",\"name\":\"Avignon\"}"},
                  {2, "b", "{\"code\":\"b\",\"name\":\"Bern\"}"},
                  {3, "c", "{\"code\":\"c\",\"name\":\"Cork\"}"},
                  {4, "a", "{\"code\":\"a\",\"name\":\"Aarhus\"}"},    /* update */
                  {5, "b", ""},                                         /* delete */
                  {6, "c", "null"},                                     /* delete */
                  {7, "c", "{\"code\":\"c\",\"name\":\"Cadiz\"}"}};    /* back */
    produce(f, "cities", 0, t, 7);
    trec_t e[] = {{10, NULL, "{\"c\":\"a\"}"}, {11, NULL, "{\"c\":\"b\"}"},
                  {12, NULL, "{\"c\":\"c\"}"}, {13, NULL, "{\"c\":\"z\"}"}};
    produce(f, "ev", 0, e, 4);
    exec_ok(f, "CREATE TABLE cities (code TEXT PRIMARY KEY, name TEXT) WITH (topic = 'cities')");
    exec_ok(f, "CREATE STREAM ev (c TEXT) WITH (topic = 'ev')");
    char *got = rows_of(f, "SELECT ev.c, t.name FROM ev LEFT JOIN cities t ON ev.c = t.code", NULL);
    assert_string_equal(got, "a|Aarhus\nb|NULL\nc|Cadiz\nz|NULL\n");
    free(got);
    got = rows_of(f, "SELECT ev.c, t.name FROM ev JOIN cities t ON t.code = ev.c", NULL);
    assert_string_equal(got, "a|Aarhus\nc|Cadiz\n");
    free(got);

    /* a bounded query's table is the one at open: an update after the open
     * is not seen by its rows */
    char err[RN_ERRMSG_SIZE];
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = collect_row;
    o.ctx = &r;
    rn_sql_t *q = NULL;
    const char *sql = "SELECT ev.c, t.name FROM ev JOIN cities t ON ev.c = t.code";
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    trec_t up = {8, "a", "{\"code\":\"a\",\"name\":\"Arles\"}"};
    produce(f, "cities", 0, &up, 1);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_close(q);
    rn_buf_append(&r.text, "", 1, 0);
    assert_string_equal((char *)r.text.data, "a|Aarhus\nc|Cadiz\n");
    rn_buf_free(&r.text);
    got = rows_of(f, sql, NULL);
    assert_string_equal(got, "a|Arles\nc|Cadiz\n");
    free(got);

    /* a CSV changelog with an INTEGER key; a delete whose record key is not an
     * integer is counted, with its reason */
    topic(f, "nums", 1);
    topic(f, "en", 1);
    trec_t nt[] = {{1, "1", "1,one"}, {1, "2", "2,two"}, {1, "x", ""}, {1, "2", ""}};
    produce(f, "nums", 0, nt, 4);
    trec_t ne[] = {{1, NULL, "{\"n\":1}"}, {1, NULL, "{\"n\":2}"}};
    produce(f, "en", 0, ne, 2);
    exec_ok(f, "CREATE TABLE nums (n INTEGER PRIMARY KEY, w TEXT) WITH (topic = 'nums', "
               "format = 'csv')");
    exec_ok(f, "CREATE STREAM en (n INTEGER) WITH (topic = 'en')");
    rn_sql_stats_t st;
    got = rows_of(f, "SELECT en.n, t.w FROM en LEFT JOIN nums t ON en.n = t.n", &st);
    assert_string_equal(got, "1|one\n2|NULL\n");
    free(got);
    assert_int_equal(st.errors, 1);
    assert_non_null(strstr(st.first_error, "offset 2: an empty value deletes the row whose "
                                           "INTEGER 'n' is the record key; key 'x' is not an "
                                           "integer"));

    /* SHOW TABLES, DESCRIBE, DROP TABLE; the definitions survive a reopen */
    {
        char dir[128], em[RN_ERRMSG_SIZE];
        snprintf(dir, sizeof dir, "%s/data", f->root);
        assert_int_equal(rn_datadir_close(f->d), 0);
        rn_datadir_opts_t op;
        rn_datadir_opts_default(&op);
        op.log.fsync = RN_FSYNC_NEVER;
        if (rn_datadir_open(dir, &op, &f->d, em) != 0) fail_msg("reopen: %s", em);
    }
    got = rows_of(f, "SHOW TABLES", NULL);
    assert_string_equal(got, "cities|topic 'cities'|json|code|\"code\" TEXT PRIMARY KEY, "
                             "\"name\" TEXT\nnums|topic 'nums'|csv|n|\"n\" INTEGER PRIMARY KEY, "
                             "\"w\" TEXT\n");
    free(got);
    got = rows_of(f, "DESCRIBE cities", NULL);
    assert_string_equal(got, "code|TEXT|PRIMARY KEY, json field of table topic 'cities'\n"
                             "name|TEXT|json field of table topic 'cities'\n");
    free(got);
    rn_sql_def_t out;
    int off;
    const char *ddl = "CREATE TABLE cities (code TEXT PRIMARY KEY, name TEXT) WITH (topic = "
                      "'cities')";
    assert_int_equal(rn_sql_define(f->d, ddl, strlen(ddl), &out, &off, err), 0);
    assert_int_equal(out, RN_SQL_DEF_UNCHANGED);
    const char *ddl2 = "CREATE TABLE cities (code TEXT PRIMARY KEY, name TEXT, pop INTEGER) "
                       "WITH (topic = 'cities')";
    assert_int_equal(rn_sql_define(f->d, ddl2, strlen(ddl2), &out, &off, err), RN_EEXIST);
    assert_non_null(strstr(err, "DROP TABLE cities first"));
    refused(f, ddl, "already exists");
    exec_ok(f, "DROP TABLE cities");
    refused(f, "DROP TABLE cities", "no table 'cities'");
    exec_ok(f, "DROP TABLE IF EXISTS cities");
    refused(f, sql, "'cities' is a topic, not a table");
}

/* ---- a --follow query over a table that grows ------------------------------------ */

static void step_idle(rn_sql_t *q)
{
    char err[RN_ERRMSG_SIZE];
    rn_sql_state_t s = RN_SQL_MORE;
    for (int guard = 0; s == RN_SQL_MORE && guard < 10000; guard++)
        if (rn_sql_step(q, &s, err) != 0) fail_msg("step: %s", err);
    assert_int_equal(s, RN_SQL_IDLE);
}

static void test_follow_grows(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "users", 1);
    topic(f, "ev", 3);
    exec_ok(f, users_ddl);
    exec_ok(f, "CREATE STREAM ev (uid INTEGER) WITH (topic = 'ev')");
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = collect_row;
    o.ctx = &r;
    o.follow = 1;
    char err[RN_ERRMSG_SIZE];
    rn_sql_t *q = NULL;
    const char *sql = "SELECT e.uid, u.name FROM ev e LEFT JOIN users u ON e.uid = u.id";
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    trec_t e1 = {1, NULL, "{\"uid\":1}"};
    produce(f, "ev", 0, &e1, 1);
    step_idle(q);
    trec_t u1 = {2, "1", "{\"id\":1,\"name\":\"one\",\"tier\":0}"};
    produce(f, "users", 0, &u1, 1);
    produce(f, "ev", 1, &e1, 1);
    step_idle(q);
    trec_t u2 = {3, "1", "{\"id\":1,\"name\":\"uno\",\"tier\":0}"};
    produce(f, "users", 0, &u2, 1);
    produce(f, "ev", 2, &e1, 1);
    step_idle(q);
    trec_t u3 = {4, "1", ""};
    produce(f, "users", 0, &u3, 1);
    produce(f, "ev", 0, &e1, 1);
    step_idle(q);
    rn_sql_close(q);
    rn_buf_append(&r.text, "", 1, 0);
    assert_string_equal((char *)r.text.data, "1|NULL\n1|one\n1|uno\n1|NULL\n");
    rn_buf_free(&r.text);
}

/* ---- a saved state rebuilds the saved table ------------------------------------- */

static void test_state_restore(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "users", 3);
    topic(f, "ev", 1);
    exec_ok(f, users_ddl);
    exec_ok(f, "CREATE STREAM ev (uid INTEGER) WITH (topic = 'ev')");
    trec_t u[] = {{1, "1", "{\"id\":1,\"name\":\"a\",\"tier\":0}"},
                  {1, "2", "{\"id\":2,\"name\":\"b\",\"tier\":0}"}};
    produce(f, "users", 1, &u[0], 1);
    produce(f, "users", 2, &u[1], 1);
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.follow = 1;
    o.table_at_save = 1;
    char err[RN_ERRMSG_SIZE];
    rn_sql_t *q = NULL;
    const char *sql = "SELECT e.uid, u.name FROM ev e LEFT JOIN users u ON e.uid = u.id";
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    rn_buf_t saved = RN_BUF_INIT;
    assert_int_equal(rn_sql_state_save(q, &saved, err), 0);
    rn_sql_close(q);
    /* the table changes after the save: a key updated, one deleted, one added */
    trec_t u2[] = {{2, "1", "{\"id\":1,\"name\":\"A\",\"tier\":0}"}, {2, "2", ""},
                   {2, "3", "{\"id\":3,\"name\":\"c\",\"tier\":0}"}};
    produce(f, "users", 1, &u2[0], 1);
    produce(f, "users", 2, &u2[1], 1);
    produce(f, "users", 0, &u2[2], 1);
    trec_t e[] = {{5, NULL, "{\"uid\":1}"}, {5, NULL, "{\"uid\":2}"}, {5, NULL, "{\"uid\":3}"}};
    produce(f, "ev", 0, e, 3);
    /* restored: the rows see the table as saved; the next save catches up */
    rows_t r = {RN_BUF_INIT, 0};
    o.row = collect_row;
    o.ctx = &r;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    assert_int_equal(rn_sql_state_load(q, saved.data, saved.len, err), 0);
    step_idle(q);
    rn_buf_t again = RN_BUF_INIT;
    assert_int_equal(rn_sql_state_save(q, &again, err), 0);
    produce(f, "ev", 0, e, 3);
    step_idle(q);
    rn_sql_close(q);
    rn_buf_append(&r.text, "", 1, 0);
    assert_string_equal((char *)r.text.data, "1|a\n2|b\n3|NULL\n1|A\n2|NULL\n3|c\n");
    /* a damaged table section is refused */
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    assert_int_equal(rn_sql_state_load(q, saved.data, saved.len - 4, err), RN_ECORRUPT);
    rn_sql_close(q);
    /* a bounded query (the Query RPC's resume): restored, it sees the table it
     * saved, not the one at its own open */
    rn_buf_free(&r.text);
    rn_sql_opts_default(&o);
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    rn_buf_free(&saved);
    assert_int_equal(rn_sql_state_save(q, &saved, err), 0);
    rn_sql_close(q);
    trec_t u3 = {3, "1", "{\"id\":1,\"name\":\"AA\",\"tier\":0}"};
    produce(f, "users", 1, &u3, 1);
    rows_t r2 = {RN_BUF_INIT, 0};
    o.row = collect_row;
    o.ctx = &r2;
    assert_int_equal(rn_sql_open(f->d, sql, strlen(sql), &o, &q, NULL, err), 0);
    assert_int_equal(rn_sql_state_load(q, saved.data, saved.len, err), 0);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_close(q);
    rn_buf_append(&r2.text, "", 1, 0);
    assert_string_equal((char *)r2.text.data, "1|A\n2|NULL\n3|c\n1|A\n2|NULL\n3|c\n");
    rn_buf_free(&r2.text);
    rn_buf_free(&saved);
    rn_buf_free(&again);
}

/* ---- a static CSV table ------------------------------------------------------------- */

static void test_csv_file(void **state)
{
    sqlfix_t *f = *state;
    char path[128], bad[128], sql[512];
    snprintf(path, sizeof path, "%s/plans.csv", f->root);
    snprintf(bad, sizeof bad, "%s/bad.csv", f->root);
    const char csv[] = "id,plan,price\n1,free,0\n2,pro,9.5\n3,team,30\n2,pro+,12\n";
    rn_test_write_file(path, csv, strlen(csv));
    rn_test_write_file(bad, "plan,id,price\n1,free,0\n", 23);
    topic(f, "ev", 1);
    trec_t e[] = {{1, NULL, "{\"p\":2}"}, {1, NULL, "{\"p\":4}"}, {1, NULL, "{\"p\":1}"}};
    produce(f, "ev", 0, e, 3);
    exec_ok(f, "CREATE STREAM ev (p INTEGER) WITH (topic = 'ev')");
    snprintf(sql, sizeof sql, "CREATE TABLE plans (id INTEGER PRIMARY KEY, plan TEXT, price REAL) "
             "WITH (file = '%s', format = 'csv')", path);
    exec_ok(f, sql);
    char *got = rows_of(f, "SELECT ev.p, t.plan, t.price FROM ev LEFT JOIN plans t ON ev.p = t.id",
                        NULL);
    assert_string_equal(got, "2|pro+|12\n4|NULL|NULL\n1|free|0\n");
    free(got);
    snprintf(sql, sizeof sql, "CREATE TABLE plans2 (id INTEGER PRIMARY KEY, plan TEXT, price "
             "REAL) WITH (file = '%s', format = 'csv')", bad);
    refused(f, sql, "line 1 must be the header id,plan,price");
    refused(f, "CREATE TABLE p3 (id INTEGER PRIMARY KEY) WITH (file = '/nonexistent/x.csv', "
               "format = 'csv')", "No such file");
    /* JSON lines; a bad line fails the open, naming the file and line */
    char jl[128];
    snprintf(jl, sizeof jl, "%s/plans.jsonl", f->root);
    const char js[] = "{\"id\":4,\"plan\":\"big\",\"price\":99}\n\n{\"id\":1,\"plan\":\"one\"}\n";
    rn_test_write_file(jl, js, strlen(js));
    snprintf(sql, sizeof sql, "CREATE TABLE pj (id INTEGER PRIMARY KEY, plan TEXT, price REAL) "
             "WITH (file = '%s', format = 'json')", jl);
    exec_ok(f, sql);
    got = rows_of(f, "SELECT ev.p, t.plan, t.price FROM ev LEFT JOIN pj t ON ev.p = t.id", NULL);
    assert_string_equal(got, "2|NULL|NULL\n4|big|99\n1|one|NULL\n");
    free(got);
    rn_test_write_file(jl, "{\"id\":\"x\"}\n", 11);
    refused(f, "SELECT ev.p FROM ev JOIN pj t ON ev.p = t.id", "plans.jsonl' line 1");
    /* over the network (runneld sets remote): refused, naming why */
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.remote = 1;
    char *t = NULL, err[RN_ERRMSG_SIZE];
    int off;
    snprintf(sql, sizeof sql, "CREATE TABLE plans4 (id INTEGER PRIMARY KEY, plan TEXT, price "
             "REAL) WITH (file = '%s', format = 'csv')", path);
    assert_int_equal(run_sql(f, sql, &o, &t, &off, err, NULL), -EPERM);
    assert_non_null(strstr(err, "created embedded only"));
    free(t);
}

/* ---- refused definitions and join shapes ------------------------------------------ */

static void test_refused(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "users", 1);
    topic(f, "ev", 1);
    exec_ok(f, users_ddl);
    exec_ok(f, "CREATE TABLE t2 (k TEXT PRIMARY KEY, v TEXT) WITH (topic = 'users')");
    exec_ok(f, "CREATE STREAM ev (uid INTEGER, name TEXT) WITH (topic = 'ev')");
    static const struct { const char *sql, *want; } bad[] = {
        {"CREATE TABLE x (id INTEGER, name TEXT) WITH (topic = 'users')",
         "needs one field declared PRIMARY KEY"},
        {"CREATE TABLE x (id INTEGER PRIMARY KEY, n TEXT PRIMARY KEY) WITH (topic = 'users')",
         "one PRIMARY KEY field"},
        {"CREATE TABLE x (id REAL PRIMARY KEY) WITH (topic = 'users')",
         "a key is INTEGER or TEXT"},
        {"CREATE TABLE x (id INTEGER PRIMARY KEY) WITH (topic = 'users', timestamp = 'id')",
         "unknown table option 'timestamp'"},
        {"CREATE TABLE x (id INTEGER PRIMARY KEY) WITH (topic = 'users', format = 'text')",
         "a table's format is json or csv"},
        {"CREATE TABLE x (id INTEGER PRIMARY KEY) WITH (topic = 'nope')", "unknown topic"},
        {"CREATE TABLE ev (id INTEGER PRIMARY KEY) WITH (topic = 'users')", "'ev' is a stream"},
        {"CREATE STREAM s (id INTEGER PRIMARY KEY) WITH (topic = 'users')",
         "a stream has no PRIMARY KEY"},
        {"CREATE STREAM t2 (k TEXT) WITH (topic = 'users')", "'t2' is a table"},
        {"SELECT * FROM users JOIN t2 ON users.id = t2.k", "'users' is a table"},
        {"SELECT * FROM ev RIGHT JOIN users u ON ev.uid = u.id", "'RIGHT' join is not supported"},
        {"SELECT * FROM ev FULL JOIN users u ON ev.uid = u.id", "'FULL' join is not supported"},
        {"SELECT * FROM ev NATURAL JOIN users", "'NATURAL' join is not supported"},
        {"SELECT * FROM ev, users", "FROM reads one stream or topic, or joins a table"},
        {"SELECT * FROM ev JOIN users USING (id)", "a join needs ON"},
        {"SELECT * FROM ev JOIN users", "a join needs ON"},
        {"SELECT * FROM ev e JOIN users u ON e.name = u.name", "not the primary key 'id'"},
        {"SELECT * FROM ev e JOIN users u ON e.uid > u.id", "one equality"},
        {"SELECT * FROM ev e JOIN users u ON e.uid = u.id AND u.tier = 1",
         "put further conditions in WHERE"},
        {"SELECT * FROM ev e JOIN users u ON u.id = u.tier", "reads the table too"},
        {"SELECT * FROM ev e JOIN users u ON e.uid = u.id JOIN t2 ON e.name = t2.k",
         "a query joins one table"},
        {"SELECT * FROM ev a JOIN ev b ON a.uid = b.uid", "a stream-stream join needs a time bound"},
        {"SELECT * FROM ev a JOIN nothing b ON a.uid = b.id", "unknown table 'nothing'"},
        {"SELECT * FROM ev e JOIN (SELECT 1 AS id) u ON e.uid = u.id", "a table by name"},
        {"SELECT count(*) FROM ev e JOIN users u ON e.uid = u.id GROUP BY TUMBLE(u.ts, '1s')",
         "TUMBLE groups by the stream's event time: write TUMBLE(e.ts, ...)"},
        {"SELECT * FROM ev e JOIN users u ON e.uid = u.id WHERE u.name IN (SELECT name FROM t2)",
         "a subquery reads 't2'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refused(f, bad[i].sql, bad[i].want);
}

/* ---- a pipeline with a join, killed and restarted ---------------------------------- */

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

#define PQ      3
#define PROUNDS 10
#define PPER    40

/* Stream slice r: PPER records per queue, uid cycling over the keys. */
static void pipe_slice(rn_datadir_t *d, int r)
{
    sqlfix_t fx = {.d = d};
    static char vals[PPER][48];
    trec_t t[PPER];
    for (uint32_t q = 0; q < PQ; q++) {
        for (int i = 0; i < PPER; i++) {
            int n = r * PPER + i;
            snprintf(vals[i], sizeof vals[i], "{\"uid\":%d,\"n\":%d}", (n * 7 + (int)q) % 13, n);
            t[i] = (trec_t){1700000000000LL + n, NULL, vals[i]};
        }
        for (int i = 0; i < PPER; i += 8) produce(&fx, "ev", q, t + i, 8);
    }
}

/* Table version v: every key 0..11 named "v<v>k<k>", key 5 deleted. */
static void pipe_table(rn_datadir_t *d, int v)
{
    sqlfix_t fx = {.d = d};
    char vals[12][64], keys[12][16];
    trec_t t[12];
    for (int k = 0; k < 12; k++) {
        snprintf(keys[k], sizeof keys[k], "%d", k);
        if (k == 5 && v > 0) snprintf(vals[k], sizeof vals[k], "%s", "");
        else snprintf(vals[k], sizeof vals[k], "{\"id\":%d,\"name\":\"v%dk%d\",\"tier\":%d}", k, v,
                      k, v);
        t[k] = (trec_t){1, keys[k], vals[k]};
    }
    produce(&fx, "users", 0, t, 12);
}

static void pipe_setup(rn_datadir_t *d, int growing)
{
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_datadir_topic_create(d, "ev", PQ, NULL, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "users", 1, NULL, err), 0);
    sqlfix_t fx = {.d = d};
    exec_ok(&fx, users_ddl);
    exec_ok(&fx, "CREATE STREAM ev (uid INTEGER, n INTEGER) WITH (topic = 'ev')");
    /* static: the whole changelog first (versions 0, 1, 2); growing: version 0 */
    for (int v = 0; v <= (growing ? 0 : 2); v++) pipe_table(d, v);
    const char *sql = "CREATE PIPELINE j AS INSERT INTO jout SELECT e.queue AS q, e.offset AS o, "
                      "e.uid, u.name, u.tier FROM ev e LEFT JOIN users u ON e.uid = u.id WITH "
                      "(checkpoint_interval = '1ms', queues = 2)";
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("create: %s", err);
}

static void pipe_run(uint64_t *rng, const char *root, int growing, int *kills)
{
    static const char *const points[] = {"after-step", "after-sink-write", "before-checkpoint",
                                         "after-checkpoint"};
    for (int round = 0; round < PROUNDS; round++) {
        rn_datadir_t *d = open_dir(root);
        pipe_slice(d, round);
        if (growing && round % 3 == 2) pipe_table(d, round);
        rn_datadir_close(d);
        if (!kills) {
            assert_int_equal(rn_test_etl_child_run(root, "j", "none", 0), 0);
            continue;
        }
        const char *point = points[rn_test_rng(rng) % 4];
        long at = 1 + (long)(rn_test_rng(rng) % (strcmp(point, "after-step") ? 2 : 8));
        *kills += rn_test_etl_child_run(root, "j", point, at);
    }
    assert_int_equal(rn_test_etl_child_run(root, "j", "none", 0), 0);
}

static void test_pipeline_kill(void **state)
{
    (void)state;
    uint64_t seed = rn_test_seed("streamsql_join_pipeline"), rng = seed;
    /* static table: byte-exact against an uninterrupted run */
    char *ra = rn_test_tmpdir_new("join-a"), *rb = rn_test_tmpdir_new("join-b");
    rn_datadir_t *d = open_dir(ra);
    pipe_setup(d, 0);
    rn_datadir_close(d);
    pipe_run(&rng, ra, 0, NULL);
    d = open_dir(rb);
    pipe_setup(d, 0);
    rn_datadir_close(d);
    int kills = 0;
    pipe_run(&rng, rb, 0, &kills);
    d = open_dir(ra);
    char *want = rn_test_pipeline_output(d, "jout", NULL, "j.dlq");
    rn_datadir_close(d);
    d = open_dir(rb);
    char *got = rn_test_pipeline_output(d, "jout", NULL, "j.dlq");
    rn_datadir_close(d);
    printf("join pipeline (static table): %d kill(s), %zu bytes\n", kills, strlen(want));
    assert_true(kills >= 3);
    assert_non_null(strstr(want, "\"name\":\"v2k1\""));
    assert_non_null(strstr(want, "\"uid\":5,\"name\":null"));
    assert_string_equal(got, want);
    free(want);
    free(got);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);

    /* growing table: exactly one row per source record, and per source
     * queue the table version never goes back */
    char *rc_ = rn_test_tmpdir_new("join-c");
    d = open_dir(rc_);
    pipe_setup(d, 1);
    rn_datadir_close(d);
    kills = 0;
    pipe_run(&rng, rc_, 1, &kills);
    d = open_dir(rc_);
    static uint8_t seen[PQ][PROUNDS * PPER];
    int last_v[PQ] = {0}, rows = 0, versions = 0;
    memset(seen, 0, sizeof seen);
    for (uint32_t sq = 0; sq < 2; sq++) {
        size_t n;
        char *text = rn_test_read_queue(d, "jout", sq, &n), *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            int q, o, v = -1, k;
            if (sscanf(l, "{\"q\":%d,\"o\":%d", &q, &o) != 2) fail_msg("row %s", l);
            assert_true(q >= 0 && q < PQ && o >= 0 && o < PROUNDS * PPER);
            if (seen[q][o]++) fail_msg("row for queue %d offset %d written twice", q, o);
            const char *nm = strstr(l, "\"name\":\"v"), *us = strstr(l, "\"uid\":");
            int uid = -1, tier = -1;
            if (!us || sscanf(us, "\"uid\":%d", &uid) != 1) fail_msg("row %s", l);
            if (nm && sscanf(nm, "\"name\":\"v%dk%d\",\"tier\":%d", &v, &k, &tier) == 3) {
                /* the row of the looked-up key, whole: one version's name and tier */
                if (k != uid || tier != v || (uid == 5 && v > 0)) fail_msg("wrong lookup: %s", l);
                if (v < last_v[q]) fail_msg("queue %d offset %d saw version %d after %d", q, o,
                                            v, last_v[q]);
                if (v > last_v[q]) versions++;
                last_v[q] = v;
            }
            rows++;
        }
        free(text);
    }
    rn_datadir_close(d);
    printf("join pipeline (growing table): %d kill(s), %d rows, %d version steps\n", kills, rows,
           versions);
    assert_int_equal(rows, PQ * PROUNDS * PPER);
    assert_true(versions >= 1);
    rn_test_tmpdir_free(rc_);
}

/* A pipeline's creator is checked on the joined table's topic too. */
static int deny_users(void *arg, const char *source, const rn_etl_def_t *def, char *errmsg)
{
    (void)def;
    char *seen = arg;
    strncat(seen, source, 60);
    strcat(seen, ";");
    if (strcmp(source, "users") == 0)
        return rn_errf(errmsg, -EPERM, "may not consume topic '%s'", source);
    return 0;
}

static void test_pipeline_rights(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "users", 1);
    topic(f, "ev", 1);
    exec_ok(f, users_ddl);
    exec_ok(f, "CREATE STREAM ev (uid INTEGER) WITH (topic = 'ev')");
    char seen[256] = "", err[RN_ERRMSG_SIZE];
    const char *sql = "CREATE PIPELINE pj AS INSERT INTO pjout SELECT e.uid, u.name FROM ev e "
                      "JOIN users u ON e.uid = u.id";
    assert_int_equal(rn_etl_create_as(f->d, sql, strlen(sql), "alice", deny_users, seen, err),
                     -EPERM);
    assert_string_equal(seen, "ev;users;");
    assert_non_null(strstr(err, "may not consume topic 'users'"));
    seen[0] = '\0';
    const char *plain = "CREATE PIPELINE pe AS INSERT INTO peout SELECT uid FROM ev";
    assert_int_equal(rn_etl_create_as(f->d, plain, strlen(plain), "alice", deny_users, seen, err),
                     0);
    assert_string_equal(seen, "ev;");
}

/* ---- the Query RPC against a real runneld ------------------------------------------ */

static void test_remote(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "users", 1);
    topic(f, "ev", 2);
    trec_t u[] = {{1, "1", "{\"id\":1,\"name\":\"ann\",\"tier\":0}"},
                  {1, "2", "{\"id\":2,\"name\":\"bob\",\"tier\":1}"}, {1, "2", ""}};
    produce(f, "users", 0, u, 3);
    trec_t e[] = {{1000, NULL, "{\"uid\":1}"}, {2000, NULL, "{\"uid\":2}"},
                  {3000, NULL, "{\"uid\":1}"}};
    produce(f, "ev", 0, e, 3);
    exec_ok(f, users_ddl);
    exec_ok(f, "CREATE STREAM ev (uid INTEGER) WITH (topic = 'ev')");
    const char *sql = "SELECT e.uid, u.name FROM ev e LEFT JOIN users u ON e.uid = u.id";
    char *want = rows_of(f, sql, NULL);
    assert_string_equal(want, "1|ann\n2|NULL\n1|ann\n");
    free(want);
    char dir[128], out[160], err[160], file[160];
    snprintf(dir, sizeof dir, "%s/data", f->root);
    snprintf(out, sizeof out, "%s/out", f->root);
    snprintf(err, sizeof err, "%s/err", f->root);
    snprintf(file, sizeof file, "%s/t.csv", f->root);
    rn_test_write_file(file, "id\n1\n", 5);
    assert_int_equal(rn_datadir_close(f->d), 0);
    f->d = NULL;
    rn_test_runneld_t r;
    assert_int_equal(rn_test_runneld_start(&r, dir, NULL), 0);
    const char *argv[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "--format", "csv", "-e",
                          sql, NULL};
    int st = rn_test_run(argv[0], argv, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e2 = rn_test_slurp(err, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("streamsql --server: %s", e2);
    assert_string_equal(o, "uid,name\n1,ann\n2,\n1,ann\n");
    free(o);
    free(e2);
    char ddl[300];
    snprintf(ddl, sizeof ddl, "CREATE TABLE ft (id INTEGER PRIMARY KEY) WITH (file = '%s', "
             "format = 'csv')", file);
    const char *argv2[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "-e", ddl, NULL};
    st = rn_test_run(argv2[0], argv2, NULL, out, err);
    e2 = rn_test_slurp(err, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    if (!strstr(e2, "created embedded only")) fail_msg("stderr: %s", e2);
    free(e2);
    assert_int_equal(rn_test_runneld_stop(&r), 0);

    /* with ACLs: a principal who may consume the stream's topic but not the
     * table's cannot read the table through a join */
    const char *acl1[] = {RN_BIN_DIR "/runnel", "--data", dir, "acl", "add", "--principal",
                          "anonymous", "--cluster", "--op", "query", NULL};
    const char *acl2[] = {RN_BIN_DIR "/runnel", "--data", dir, "acl", "add", "--principal",
                          "anonymous", "--topic", "ev", "--op", "consume", NULL};
    st = rn_test_run(acl1[0], acl1, NULL, out, err);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = rn_test_run(acl2[0], acl2, NULL, out, err);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(rn_test_runneld_start(&r, dir, NULL), 0);
    const char *argv3[] = {RN_BIN_DIR "/streamsql", "--server", r.addr, "--format", "csv", "-e",
                           "SELECT uid FROM ev", NULL};
    st = rn_test_run(argv3[0], argv3, NULL, out, err);
    o = rn_test_slurp(out, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_string_equal(o, "uid\n1\n2\n1\n");
    free(o);
    st = rn_test_run(argv[0], argv, NULL, out, err);
    e2 = rn_test_slurp(err, NULL);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    if (!strstr(e2, "users")) fail_msg("stderr: %s", e2);
    free(e2);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
    rn_datadir_opts_t op;
    rn_datadir_opts_default(&op);
    char em[RN_ERRMSG_SIZE];
    assert_int_equal(rn_datadir_open(dir, &op, &f->d, em), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_oracle),
        cmocka_unit_test_setup_teardown(test_updates_deletes, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_follow_grows, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_state_restore, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_csv_file, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_refused, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test(test_pipeline_kill),
        cmocka_unit_test_setup_teardown(test_pipeline_rights, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_remote, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

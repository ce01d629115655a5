/*
 * bench_sql.c — `runnel-bench sql`: the stream-SQL engine on JSON log lines
 * of about 150 bytes read from the log, on one core.
 *
 *   sql_filter     SELECT svc, lat_ms FROM logs WHERE level <> 'DEBUG'
 *                  (target >= 2,000,000 records/s)
 *   sql_window     SELECT window_start, svc, count(*), avg(lat_ms) FROM logs
 *                  GROUP BY TUMBLE(ts, '1s'), svc    -- --keys services
 *                  (target >= 1,000,000 records/s)
 *   sqlite_window  the peer: plain sqlite3 running the same aggregation
 *                  (GROUP BY (at / 1000) * 1000, svc) over an in-memory
 *                  table holding the same records, already decoded
 *   sqlite_filter  the peer running the filter over the same table
 *
 * Fairness: 1. the records are written untimed (fsync never), the data
 * directory closed, the filesystem synced and reopened, and each query run
 * once untimed, so reads hit a warm page cache; 2. the engine's time covers
 * everything from the log: reading, CRC checks, batch decoding, the JSON
 * decoding of every declared field, sqlite's per-batch statement, window
 * state and emission; rows go to a callback that only counts them; 3. the
 * peer's table is filled untimed, so it is measured on pre-decoded columns
 * (the engine is not); 4. medians over --rounds; the window row counts of
 * the engine and the peer must agree, or the run fails; 5. rates are per
 * core: records ÷ CPU seconds of the process (one thread runs), which other
 * work on a shared machine changes far less than wall time.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQL_CMD "sql"
#define BASE_TS 1700000000000ll

typedef struct sql_cfg {
    uint64_t    records, keys, rounds, seed;
    int         json;
    const char *dir;
    const char *query;          /* NULL: both; "filter" or "window": that one only */
} sql_cfg_t;

static const char *const levels[] = {"DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"};
static const char *const words[] = {"GET", "POST", "/api/v1/items", "/login", "done", "retry",
                                    "cache", "miss", "user", "order", "ok", "slow"};

/* One log line of 140..160 bytes into buf; fields for the peer's table. */
static int make_line(bench_rng_t *r, uint64_t i, uint64_t keys, char *buf, size_t size,
                     int *level, int *svc, int *lat)
{
    *level = (int)bench_rng_below(r, 6);
    *svc = (int)bench_rng_below(r, keys);
    *lat = (int)bench_rng_below(r, 2000);
    int n = snprintf(buf, size, "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"svc-%03d\","
                     "\"lat_ms\":%d,\"msg\":\"", (long long)(BASE_TS + (int64_t)i), levels[*level],
                     *svc, *lat);
    int target = 140 + (int)bench_rng_below(r, 20);
    while (n < target - 2) {
        const char *w = words[bench_rng_below(r, 12)];
        n += snprintf(buf + n, size - (size_t)n, "%s ", w);
    }
    n += snprintf(buf + n, size - (size_t)n, "\"}");
    return n;
}

static int fill(rn_datadir_t *d, const sql_cfg_t *cfg, sqlite3 *peer, char *err)
{
    rn_datadir_queue_t q;
    rn_batch_builder_t b;
    rn_batch_opts_t bo;
    sqlite3_stmt *ins = NULL;
    char line[256];
    int rc = rn_datadir_queue_open(d, "logs", 0, &q, err);
    if (rc != 0) return rc;
    rn_batch_opts_default(&bo);
    bo.max_bytes = 64u << 10;
    rc = rn_batch_builder_init(&b, &bo);
    if (rc == 0 && (sqlite3_exec(peer, "CREATE TABLE logs(at INTEGER, level TEXT, svc TEXT, "
                                       "lat_ms INTEGER, msg TEXT); BEGIN", NULL, NULL, NULL) ||
                    sqlite3_prepare_v2(peer, "INSERT INTO logs VALUES (?1, ?2, ?3, ?4, ?5)", -1,
                                       &ins, NULL)))
        rc = rn_errf(err, RN_ESQLITE, "peer: %s", sqlite3_errmsg(peer));
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    for (uint64_t i = 0; i < cfg->records && rc == 0; i++) {
        int level, svc, lat;
        int n = make_line(&rng, i, cfg->keys, line, sizeof line, &level, &svc, &lat);
        rn_record_t r = {.timestamp = BASE_TS + (int64_t)i, .key_len = -1,
                         .value = (const uint8_t *)line, .value_len = n};
        rc = rn_batch_builder_add(&b, &r);
        if (rc == RN_EFULL) {
            const uint8_t *batch;
            size_t len;
            int64_t base;
            uint64_t ticket;
            rc = rn_batch_builder_finish(&b, &batch, &len);
            if (rc == 0) rc = rn_datadir_append(d, &q, batch, len, &base, &ticket, err);
            rn_batch_builder_reset(&b);
            if (rc == 0) rc = rn_batch_builder_add(&b, &r);
        }
        char sv[16];
        snprintf(sv, sizeof sv, "svc-%03d", svc);
        const char *msg = strstr(line, "\"msg\":\"") + 7;
        sqlite3_bind_int64(ins, 1, BASE_TS + (int64_t)i);
        sqlite3_bind_text(ins, 2, levels[level], -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, sv, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(ins, 4, lat);
        sqlite3_bind_text(ins, 5, msg, (int)(line + n - 2 - msg), SQLITE_TRANSIENT);
        if (rc == 0 && sqlite3_step(ins) != SQLITE_DONE)
            rc = rn_errf(err, RN_ESQLITE, "peer: %s", sqlite3_errmsg(peer));
        sqlite3_reset(ins);
    }
    if (rc == 0 && rn_batch_builder_count(&b)) {
        const uint8_t *batch;
        size_t len;
        int64_t base;
        uint64_t ticket;
        rc = rn_batch_builder_finish(&b, &batch, &len);
        if (rc == 0) rc = rn_datadir_append(d, &q, batch, len, &base, &ticket, err);
    }
    sqlite3_finalize(ins);
    if (rc == 0 && sqlite3_exec(peer, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = rn_errf(err, RN_ESQLITE, "peer: %s", sqlite3_errmsg(peer));
    rn_batch_builder_destroy(&b);
    rn_datadir_queue_close(&q);
    return rc;
}

/* CPU time of the process, ns (the measured work runs on one thread). */
static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* One engine run: CPU ns, rows; every record read and none rejected. */
static int run_engine(rn_datadir_t *d, const char *sql, uint64_t want, uint64_t *ns,
                      uint64_t *rows, char *err)
{
    rn_sql_stats_t st;
    uint64_t t0 = cpu_ns();
    int rc = bench_sql_count(d, sql, rows, &st, err);
    *ns = cpu_ns() - t0;
    if (rc == 0 && (st.records != want || st.errors))
        rc = rn_errf(err, RN_ECORRUPT, "read %llu records (%llu rejected), want %llu",
                     (unsigned long long)st.records, (unsigned long long)st.errors,
                     (unsigned long long)want);
    return rc;
}

static int run_peer(sqlite3 *db, const char *sql, uint64_t *ns, uint64_t *rows, char *err)
{
    sqlite3_stmt *st = NULL;
    uint64_t t0 = cpu_ns();
    *rows = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return rn_errf(err, RN_ESQLITE, "peer: %s", sqlite3_errmsg(db));
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) (*rows)++;
    sqlite3_finalize(st);
    *ns = cpu_ns() - t0;
    return s == SQLITE_DONE ? 0 : rn_errf(err, RN_ESQLITE, "peer: %s", sqlite3_errmsg(db));
}

static int sql_parse(int argc, char **argv, void *arg)
{
    sql_cfg_t *cfg = arg;
    cfg->records = 2000000;
    cfg->keys = 100;
    cfg->rounds = 5;
    cfg->seed = 1;
    const bench_opt_t opts[] = {
        {"--records", BENCH_OPT_U64, &cfg->records, 1000, 100000000ull, "N"},
        {"--keys", BENCH_OPT_U64, &cfg->keys, 1, 1000, "K"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 101, "R"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
        {"--query", BENCH_OPT_STR, &cfg->query, 0, 0, "filter|window"},
    };
    int rc = bench_parse_flags(SQL_CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc == 0 && cfg->query && strcmp(cfg->query, "filter") != 0 &&
        strcmp(cfg->query, "window") != 0)
        return bench_fail(SQL_CMD, RN_EINVAL, "--query is filter or window, not '%s'", cfg->query);
    return rc;
}

static const char filter_sql[] = "SELECT svc, lat_ms FROM logs_s WHERE level <> 'DEBUG'";
static const char window_sql[] =
    "SELECT window_start, svc, count(*), avg(lat_ms) FROM logs_s GROUP BY TUMBLE(ts, '1s'), svc";
static const char peer_filter_sql[] = "SELECT svc, lat_ms FROM logs WHERE level <> 'DEBUG'";
static const char peer_sql[] =
    "SELECT (at / 1000) * 1000 AS ws, svc, count(*), avg(lat_ms) FROM logs GROUP BY ws, svc";

static int sql_run(const void *arg)
{
    const sql_cfg_t *cfg = arg;
    char root[PATH_MAX], data[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    const char *names[4] = {"sql_filter", "sql_window", "sqlite_window", "sqlite_filter"};
    double *rate[4];
    uint64_t rows[4] = {0, 0, 0, 0};
    rn_datadir_t *d = NULL;
    sqlite3 *peer = NULL;
    rn_datadir_opts_t o;
    int rc = 0;
    for (int k = 0; k < 4; k++) rate[k] = calloc(cfg->rounds, sizeof *rate[k]);
    if (!rate[0] || !rate[1] || !rate[2] || !rate[3]) rc = -ENOMEM;
    if (rc == 0) rc = bench_mkdtemp(cfg->dir, root, sizeof root);
    if (rc != 0) {
        for (int k = 0; k < 4; k++) free(rate[k]);
        return bench_fail(SQL_CMD, rc, "cannot create a scratch directory: %s", rn_strerror(rc));
    }
    snprintf(data, sizeof data, "%s/data", root);
    bench_note(cfg->json, "sql: %llu JSON log lines of ~150 B, %llu services, %llu rounds, seed "
               "%llu, in %s", (unsigned long long)cfg->records, (unsigned long long)cfg->keys,
               (unsigned long long)cfg->rounds, (unsigned long long)cfg->seed, root);
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "runnel-bench sql";
    o.log.fsync = RN_FSYNC_NEVER;
    if ((rc = rn_datadir_open(data, &o, &d, err)) != 0) goto out;
    if (sqlite3_open(":memory:", &peer) != SQLITE_OK) {
        rc = rn_errf(err, RN_ESQLITE, "cannot open the peer's sqlite");
        goto out;
    }
    if ((rc = rn_datadir_topic_create(d, "logs", 1, NULL, err)) != 0) goto out;
    if ((rc = fill(d, cfg, peer, err)) != 0) goto out;
    const char *create = "CREATE STREAM logs_s (at INTEGER, level TEXT, svc TEXT, lat_ms INTEGER, "
                         "msg TEXT) WITH (topic = 'logs', timestamp = 'at')";
    uint64_t ns, n;
    if ((rc = run_engine(d, create, 0, &ns, &n, err)) != 0) goto out;
    rc = rn_datadir_close(d);
    d = NULL;
    if (rc == 0) rc = bench_settle_fs(root);
    if (rc != 0) { rn_errf(err, rc, "closing: %s", rn_strerror(rc)); goto out; }
    o.create = 0;
    if ((rc = rn_datadir_open(data, &o, &d, err)) != 0) goto out;
    /* warm-up, untimed; --query runs one engine query only (for profiling) */
    int runf = !cfg->query || strcmp(cfg->query, "filter") == 0;
    int runw = !cfg->query || strcmp(cfg->query, "window") == 0;
    if ((runf && (rc = run_engine(d, filter_sql, cfg->records, &ns, &rows[0], err)) != 0) ||
        (runw && (rc = run_engine(d, window_sql, cfg->records, &ns, &rows[1], err)) != 0) ||
        (rc = run_peer(peer, peer_sql, &ns, &rows[2], err)) != 0 ||
        (rc = run_peer(peer, peer_filter_sql, &ns, &rows[3], err)) != 0)
        goto out;
    if (runf && rows[0] != rows[3]) {
        rc = rn_errf(err, RN_ECORRUPT, "the engine's filter gave %llu rows, sqlite %llu",
                     (unsigned long long)rows[0], (unsigned long long)rows[3]);
        goto out;
    }
    if (runw && rows[1] != rows[2]) {
        rc = rn_errf(err, RN_ECORRUPT, "the engine gave %llu windows, sqlite %llu",
                     (unsigned long long)rows[1], (unsigned long long)rows[2]);
        goto out;
    }
    for (uint64_t r = 0; r < cfg->rounds && rc == 0; r++) {
        ns = 0;
        if (runf) rc = run_engine(d, filter_sql, cfg->records, &ns, &n, err);
        rate[0][r] = (double)cfg->records / ((double)ns / 1e9);
        ns = 0;
        if (rc == 0 && runw) rc = run_engine(d, window_sql, cfg->records, &ns, &n, err);
        rate[1][r] = (double)cfg->records / ((double)ns / 1e9);
        if (rc == 0) rc = run_peer(peer, peer_sql, &ns, &n, err);
        rate[2][r] = (double)cfg->records / ((double)ns / 1e9);
        if (rc == 0) rc = run_peer(peer, peer_filter_sql, &ns, &n, err);
        rate[3][r] = (double)cfg->records / ((double)ns / 1e9);
    }
    if (rc != 0) goto out;
    double med[4];
    for (int k = 0; k < 4; k++) med[k] = bench_median(rate[k], cfg->rounds);
    const double target[4] = {2e6, 1e6, 0, 0};
    double ratio = med[1] / med[2];
    if (cfg->json) {
        for (int k = 0; k < 4; k++) {
            bench_json_t j;
            bench_json_begin(&j, stdout);
            bench_json_str(&j, "bench", names[k]);
            bench_json_u64(&j, "records", cfg->records);
            bench_json_u64(&j, "keys", cfg->keys);
            bench_json_u64(&j, "rounds", cfg->rounds);
            bench_json_u64(&j, "rows", rows[k]);
            bench_json_f64(&j, "records_per_s", med[k]);
            if (target[k] > 0) {
                bench_json_f64(&j, "target_records_per_s", target[k]);
                bench_json_str(&j, "verdict", med[k] >= target[k] ? "pass" : "fail");
            }
            if (k == 1) bench_json_f64(&j, "ratio_to_sqlite", ratio);
            bench_json_f64_array(&j, "records_per_s_rounds", rate[k], cfg->rounds);
            bench_json_end(&j);
        }
    } else {
        bench_table_t t;
        bench_table_init(&t, 4);
        bench_table_cell(&t, "query");
        bench_table_cell(&t, "rows");
        bench_table_cell(&t, "records/s per core (median)");
        bench_table_cell(&t, "target");
        for (int k = 0; k < 4; k++) {
            bench_table_cell(&t, "%s", names[k]);
            bench_table_cell(&t, "%llu", (unsigned long long)rows[k]);
            int skipped = (k == 0 && !runf) || (k == 1 && !runw);
            if (skipped) bench_table_cell(&t, "not run");
            else bench_table_cell(&t, "%.0f", med[k]);
            if (skipped)
                bench_table_cell(&t, "-");
            else if (target[k] > 0)
                bench_table_cell(&t, ">= %.0f: %s", target[k], med[k] >= target[k] ? "pass" : "FAIL");
            else
                bench_table_cell(&t, "peer");
        }
        bench_table_print(&t, stdout);
        bench_table_free(&t);
        printf("sql_window / sqlite_window = %.2f (the peer reads pre-decoded columns from memory; "
               "the engine reads, checks and decodes the log)\n", ratio);
    }
out:
    if (rc != 0) bench_fail(SQL_CMD, rc, "%s", err[0] ? err : rn_strerror(rc));
    sqlite3_close(peer);
    rn_datadir_close(d);
    bench_rmtree(root);
    for (int k = 0; k < 4; k++) free(rate[k]);
    return rc;
}

const bench_cmd_t bench_cmd_sql = {
    .name = SQL_CMD,
    .usage = "[--records N] [--keys K] [--rounds R] [--dir DIR] [--seed S] [--query filter|window] [--json]",
    .cfg_size = sizeof(sql_cfg_t),
    .parse = sql_parse,
    .run = sql_run,
};

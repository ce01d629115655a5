/*
 * bench_etl.c — `runnel-bench etl`: an ETL pipeline (etl/etl.h) moving JSON
 * log lines of about 150 bytes from a source topic to a sink topic, on one
 * core, and the cost of its checkpoints.
 *
 *   etl_filter      CREATE PIPELINE AS INSERT INTO out SELECT svc, lat_ms
 *                   FROM logs WHERE level <> 'DEBUG' (5 of 6 lines pass)
 *                   records/s = source records / wall time from open to
 *                   caught up, final checkpoint included (target >=
 *                   1,000,000 records/s)
 *   etl_checkpoint  one rn_etl_checkpoint of the caught-up pipeline
 *                   (encode the query's state, one UPDATE of meta.db; no
 *                   sink rows pending, so no append to wait for): median ms,
 *                   and as a share of a second (the default interval). The
 *                   run's own checkpoints (every second, plus the final one
 *                   with rows pending) are inside etl_filter's time.
 *
 * Fairness: the source is written untimed (fsync never for the source's
 * writes, the data directory reopened with the default fsync policy for the
 * pipeline's); each round runs a new pipeline into a new sink topic from
 * the same source; medians over --rounds. Invariants: every round's sink
 * must hold exactly the rows the filter passes, or the run fails.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETL_CMD "etl"
#define BASE_TS 1700000000000ll

typedef struct etl_cfg {
    uint64_t    records, queues, rounds, seed;
    int         json;
    const char *dir;
} etl_cfg_t;

static const char *const levels[] = {"DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"};

static int etl_parse(int argc, char **argv, void *arg)
{
    etl_cfg_t *c = arg;
    c->records = 2000000;
    c->queues = 4;
    c->rounds = 3;
    c->seed = 42;
    const bench_opt_t opts[] = {
        {"--records", BENCH_OPT_U64, &c->records, 1000, 100000000, "N"},
        {"--queues", BENCH_OPT_U64, &c->queues, 1, 64, "Q"},
        {"--rounds", BENCH_OPT_U64, &c->rounds, 1, 100, "R"},
        {"--seed", BENCH_OPT_U64, &c->seed, 1, UINT64_MAX, "S"},
        {"--dir", BENCH_OPT_STR, &c->dir, 0, 0, "DIR"},
        {"--json", BENCH_OPT_FLAG, &c->json, 0, 0, NULL},
    };
    return bench_parse_flags(ETL_CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
}

/* Append one finished batch to queue q. */
static int append(rn_datadir_t *d, rn_datadir_queue_t *q, rn_batch_builder_t *b, char *err)
{
    const uint8_t *batch;
    size_t len;
    int64_t base;
    uint64_t ticket;
    int rc = rn_batch_builder_finish(b, &batch, &len);
    if (rc == 0) rc = rn_datadir_append(d, q, batch, len, &base, &ticket, err);
    rn_batch_builder_reset(b);
    return rc;
}

/* The source: records spread round-robin over the queues, each queue in
 * time order; *pass = lines the filter keeps. */
static int fill(rn_datadir_t *d, const etl_cfg_t *cfg, uint64_t *pass, char *err)
{
    uint32_t nq = (uint32_t)cfg->queues;
    rn_datadir_queue_t qs[64];
    rn_batch_builder_t bs[64];
    rn_batch_opts_t bo;
    char line[256];
    int rc = 0;
    uint32_t opened = 0;
    rn_batch_opts_default(&bo);
    bo.max_bytes = 64u << 10;
    for (; opened < nq && rc == 0; opened++) {
        rc = rn_datadir_queue_open(d, "logs", opened, &qs[opened], err);
        if (rc == 0) rc = rn_batch_builder_init(&bs[opened], &bo);
        if (rc != 0) { opened++; break; }
    }
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    *pass = 0;
    for (uint64_t i = 0; i < cfg->records && rc == 0; i++) {
        uint32_t q = (uint32_t)(i % nq);
        int level = (int)bench_rng_below(&rng, 6);
        int n = snprintf(line, sizeof line, "{\"at\":%lld,\"level\":\"%s\",\"svc\":\"svc-%03d\","
                         "\"lat_ms\":%d,\"msg\":\"", (long long)(BASE_TS + (int64_t)i),
                         levels[level], (int)bench_rng_below(&rng, 50),
                         (int)bench_rng_below(&rng, 2000));
        bench_fill_value(&rng, (uint8_t *)line + n, (size_t)(148 - n));
        for (int k = n; k < 148; k++)
            if (line[k] == '"' || line[k] == '\\') line[k] = '_';
        memcpy(line + 148, "\"}", 2);
        *pass += level != 0;
        rn_record_t r = {.timestamp = BASE_TS + (int64_t)i, .key_len = -1,
                         .value = (const uint8_t *)line, .value_len = 150};
        rc = rn_batch_builder_add(&bs[q], &r);
        if (rc == RN_EFULL) {
            rc = append(d, &qs[q], &bs[q], err);
            if (rc == 0) rc = rn_batch_builder_add(&bs[q], &r);
        }
    }
    for (uint32_t q = 0; q < opened; q++) {
        if (rc == 0 && rn_batch_builder_count(&bs[q])) rc = append(d, &qs[q], &bs[q], err);
        rn_batch_builder_destroy(&bs[q]);
        rn_datadir_queue_close(&qs[q]);
    }
    return rc;
}

static int exec_sql(rn_datadir_t *d, const char *sql, char *err)
{
    rn_sql_t *q = NULL;
    int rc = rn_sql_open(d, sql, strlen(sql), NULL, &q, NULL, err);
    if (rc == 0) rc = rn_sql_run(q, err);
    rn_sql_close(q);
    return rc;
}

/* One round: a new pipeline to caught up (ns); then checkpoint costs. */
static int run_round(rn_datadir_t *d, uint64_t r, uint64_t pass, uint64_t *ns, double *ckpt_ms,
                     char *err)
{
    char sql[512], name[32];
    snprintf(name, sizeof name, "bench%llu", (unsigned long long)r);
    snprintf(sql, sizeof sql, "CREATE PIPELINE %s AS INSERT INTO out%llu SELECT svc, lat_ms "
             "FROM logs_s WHERE level <> 'DEBUG'", name, (unsigned long long)r);
    int rc = rn_etl_create(d, sql, strlen(sql), err);
    if (rc != 0) return rc;
    rn_etl_t *p = NULL;
    uint64_t t0 = rn_mono_ns();
    if ((rc = rn_etl_open(d, name, &p, err)) != 0) return rc;
    rn_etl_state_t st = RN_ETL_MORE;
    while (rc == 0 && st == RN_ETL_MORE) rc = rn_etl_step(p, &st, err);
    if (rc == 0) rc = rn_etl_checkpoint(p, err);
    *ns = rn_mono_ns() - t0;
    uint64_t out = 0;
    rn_etl_counters(p, NULL, &out, NULL, NULL);
    if (rc == 0 && out != pass)
        rc = rn_errf(err, RN_ECORRUPT, "the pipeline wrote %llu rows, the filter passes %llu",
                     (unsigned long long)out, (unsigned long long)pass);
    /* checkpoint cost: the caught-up pipeline, nothing pending */
    double v[16];
    int nv = 0;
    for (; rc == 0 && nv < 16; nv++) {
        uint64_t c0 = rn_mono_ns();
        rc = rn_etl_checkpoint(p, err);
        v[nv] = (double)(rn_mono_ns() - c0) / 1e6;
    }
    *ckpt_ms = bench_median(v, (size_t)nv);
    rn_etl_close(p);
    return rc;
}

static int etl_run(const void *arg)
{
    const etl_cfg_t *cfg = arg;
    char root[PATH_MAX], data[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    double *rate = calloc(cfg->rounds, sizeof *rate), *ck = calloc(cfg->rounds, sizeof *ck);
    rn_datadir_t *d = NULL;
    rn_datadir_opts_t o;
    uint64_t pass = 0;
    int rc = rate && ck ? 0 : -ENOMEM;
    if (rc == 0) rc = bench_mkdtemp(cfg->dir, root, sizeof root);
    if (rc != 0) {
        free(rate);
        free(ck);
        return bench_fail(ETL_CMD, rc, "cannot create a scratch directory: %s", rn_strerror(rc));
    }
    snprintf(data, sizeof data, "%s/data", root);
    bench_note(cfg->json, "etl: %llu JSON log lines of 150 B over %llu queues, %llu rounds, seed "
               "%llu, in %s", (unsigned long long)cfg->records, (unsigned long long)cfg->queues,
               (unsigned long long)cfg->rounds, (unsigned long long)cfg->seed, root);
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "runnel-bench etl";
    o.log.fsync = RN_FSYNC_NEVER;
    if ((rc = rn_datadir_open(data, &o, &d, err)) != 0) goto out;
    if ((rc = rn_datadir_topic_create(d, "logs", (uint32_t)cfg->queues, NULL, err)) != 0) goto out;
    if ((rc = fill(d, cfg, &pass, err)) != 0) goto out;
    if ((rc = exec_sql(d, "CREATE STREAM logs_s (at INTEGER, level TEXT, svc TEXT, lat_ms "
                       "INTEGER, msg TEXT) WITH (topic = 'logs', timestamp = 'at')", err)) != 0)
        goto out;
    rc = rn_datadir_close(d);
    d = NULL;
    if (rc == 0) rc = bench_settle_fs(root);
    if (rc != 0) { rn_errf(err, rc, "closing: %s", rn_strerror(rc)); goto out; }
    rn_datadir_opts_default(&o);
    o.holder = "runnel-bench etl";
    if ((rc = rn_datadir_open(data, &o, &d, err)) != 0) goto out;
    for (uint64_t r = 0; r < cfg->rounds && rc == 0; r++) {
        uint64_t ns = 0;
        rc = run_round(d, r, pass, &ns, &ck[r], err);
        rate[r] = (double)cfg->records / ((double)ns / 1e9);
    }
    if (rc != 0) goto out;
    double med = bench_median(rate, cfg->rounds), cms = bench_median(ck, cfg->rounds);
    double share = cms / RN_ETL_DEFAULT_CHECKPOINT_MS;
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "etl_filter");
        bench_json_u64(&j, "records", cfg->records);
        bench_json_u64(&j, "queues", cfg->queues);
        bench_json_u64(&j, "rows", pass);
        bench_json_f64(&j, "records_per_s", med);
        bench_json_f64(&j, "target_records_per_s", 1e6);
        bench_json_str(&j, "verdict", med >= 1e6 ? "pass" : "fail");
        bench_json_f64_array(&j, "records_per_s_rounds", rate, cfg->rounds);
        bench_json_end(&j);
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "etl_checkpoint");
        bench_json_f64(&j, "checkpoint_ms", cms);
        bench_json_f64(&j, "share_at_default_interval", share);
        bench_json_f64_array(&j, "checkpoint_ms_rounds", ck, cfg->rounds);
        bench_json_end(&j);
    } else {
        printf("etl_filter      %.0f records/s source->sink topic (median of %llu; target >= "
               "1000000: %s), %llu rows out of %llu\n", med, (unsigned long long)cfg->rounds,
               med >= 1e6 ? "pass" : "FAIL", (unsigned long long)pass,
               (unsigned long long)cfg->records);
        printf("etl_checkpoint  %.3f ms per checkpoint (median), %.2f%% of a %d ms interval\n",
               cms, share * 100, RN_ETL_DEFAULT_CHECKPOINT_MS);
    }
out:
    if (rc != 0) bench_fail(ETL_CMD, rc, "%s", err[0] ? err : rn_strerror(rc));
    rn_datadir_close(d);
    bench_rmtree(root);
    free(rate);
    free(ck);
    return rc;
}

const bench_cmd_t bench_cmd_etl = {
    .name = ETL_CMD,
    .usage = "[--records N] [--queues Q] [--rounds R] [--dir DIR] [--seed S] [--json]",
    .cfg_size = sizeof(etl_cfg_t),
    .parse = etl_parse,
    .run = etl_run,
};

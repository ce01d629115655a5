/*
 * bench_lookup.c — `runnel-bench lookup`: latency of random offset lookups
 * (rn_log_lookup_offset: a binary search of the batch index, no data read)
 * and random exact timestamp lookups (rn_log_lookup_time: index search, then
 * the found batch is read and decoded to the exact record).
 *
 * The log: N batches of R records of B-byte values in queue 0, appended under
 * fsync never (not timed). Record j of batch i has timestamp
 *   t0 + 10*i + h(i, j) % 15   (ms; h a fixed hash)
 * so timestamps increase batch over batch with jitter inside a batch, and
 * neighbouring batches overlap a little (a batch spans up to 15 ms, batches
 * start 10 ms apart). Offsets are dense: record j of batch i is i*R + j.
 *
 * The log lives in a fresh mkdtemp directory under --dir (default /var/tmp),
 * removed at the end.
 *
 * How it stays fair.
 *  1. The store is closed, the filesystem synced (so no writeback of the
 *     build runs under the timed passes) and the store reopened before
 *     measuring (a clean open), so nothing the writer left in memory helps
 *     the readers; the page cache is warm, as on a broker that just wrote
 *     the data.
 *  2. An untimed warm-up pass of W lookups of each kind (other random keys;
 *     W = --warmup-lookups, default L) runs first. It maps the index pages
 *     and brings the caches to a steady state; with W much smaller than the
 *     number of batches, part of the commit-log pages are still read for the
 *     first or second time in the timed pass (as on a broker whose readers
 *     spread over a large log). Both passes are single-threaded.
 *  3. Each lookup is timed alone with rn_mono_ns() just around the call; the
 *     timer's own overhead (back-to-back calls) is measured and reported, not
 *     subtracted. Keys are drawn before each timed call; every answer is
 *     checked against the expected one outside the timed window.
 *  4. Percentiles are nearest-rank over all L samples.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CMD "lookup"

#define TS_STEP   10      /* ms between batch starts */
#define TS_JITTER 15      /* record timestamps in [start, start + TS_JITTER) */

typedef struct lookup_cfg {
    uint64_t    batches, per_batch, lookups, warmup, size, seed;
    const char *dir;
    int         json;
} lookup_cfg_t;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int64_t rec_ts(int64_t t0, uint64_t i, uint64_t j)
{
    return t0 + (int64_t)(i * TS_STEP) + (int64_t)(mix64(i * 1000003u + j) % TS_JITTER);
}

/* The offset rn_log_lookup_time must return for record (i, j)'s timestamp:
 * the first record in offset order with ts >= it. Every record of batch
 * i - 2 or earlier is older than the target (at most t0 + 10(i-2) + 14 <
 * t0 + 10i <= target), so only batch i - 1, and batch i up to j, can hold it. */
static int64_t expected_time_offset(int64_t t0, uint64_t r, uint64_t i, uint64_t j, int64_t target)
{
    if (i > 0)
        for (uint64_t k = 0; k < r; k++)
            if (rec_ts(t0, i - 1, k) >= target) return (int64_t)((i - 1) * r + k);
    for (uint64_t k = 0; k <= j; k++)
        if (rec_ts(t0, i, k) >= target) return (int64_t)(i * r + k);
    return (int64_t)(i * r + j);    /* unreachable: (i, j) itself qualifies */
}

static int build_log(const lookup_cfg_t *cfg, const char *dir, int64_t t0, uint64_t *bytes)
{
    char errmsg[RN_ERRMSG_SIZE] = "";
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    lo.fsync = RN_FSYNC_NEVER;
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &lo, &log, errmsg);
    if (rc != 0) return bench_fail(CMD, rc, "rn_log_open %s: %s", dir, errmsg[0] ? errmsg : rn_strerror(rc));

    rn_batch_builder_t b;
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    if ((rc = rn_batch_builder_init(&b, &bo)) != 0) {
        rc = bench_fail(CMD, rc, "rn_batch_builder_init: %s", rn_strerror(rc));
        goto out_log;
    }
    uint8_t *value = malloc(cfg->size ? cfg->size : 1);
    if (!value) { rc = bench_fail(CMD, -ENOMEM, "out of memory"); goto out_builder; }
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed ^ 0xB1D5u);
    *bytes = 0;
    uint64_t next_note = 0, start = rn_mono_ns();
    int tty = !cfg->json && isatty(STDERR_FILENO);
    for (uint64_t i = 0; i < cfg->batches; i++) {
        rn_batch_builder_reset(&b);
        for (uint64_t j = 0; j < cfg->per_batch; j++) {
            bench_fill_value(&rng, value, cfg->size);
            rn_record_t r = {.timestamp = rec_ts(t0, i, j), .key_len = -1,
                             .value = value, .value_len = (int32_t)cfg->size};
            if ((rc = rn_batch_builder_add(&b, &r)) != 0) {
                rc = bench_fail(CMD, rc, "rn_batch_builder_add: %s", rn_strerror(rc));
                goto out_value;
            }
        }
        const uint8_t *p;
        size_t len;
        if ((rc = rn_batch_builder_finish(&b, &p, &len)) != 0) {
            rc = bench_fail(CMD, rc, "rn_batch_builder_finish: %s", rn_strerror(rc));
            goto out_value;
        }
        int64_t base;
        uint64_t ticket;
        if ((rc = rn_log_append(log, 0, p, len, &base, &ticket, errmsg)) != 0 ||
            (rc = rn_log_wait(log, ticket)) != 0) {
            rc = bench_fail(CMD, rc, "append of batch %llu: %s", (unsigned long long)i,
                            errmsg[0] ? errmsg : rn_strerror(rc));
            goto out_value;
        }
        if (base != (int64_t)(i * cfg->per_batch)) {
            rc = bench_fail(CMD, RN_ECORRUPT, "batch %llu got base offset %lld, expected %llu",
                            (unsigned long long)i, (long long)base,
                            (unsigned long long)(i * cfg->per_batch));
            goto out_value;
        }
        *bytes += len;
        if (i >= next_note && i > 0 && tty) {
            fprintf(stderr, "\r  building: %llu/%llu batches", (unsigned long long)i,
                    (unsigned long long)cfg->batches);
            next_note = i + cfg->batches / 20 + 1;
        }
    }
    if (tty) fprintf(stderr, "\r%60s\r", "");
    bench_note(cfg->json, "built %llu batches (%.1f MB of batches) in %.1f s, fsync never",
               (unsigned long long)cfg->batches, (double)*bytes / 1e6,
               (double)(rn_mono_ns() - start) / 1e9);
    rc = 0;
out_value:
    free(value);
out_builder:
    rn_batch_builder_destroy(&b);
out_log:;
    int crc = rn_log_close(log);
    if (rc == 0 && crc != 0) rc = bench_fail(CMD, crc, "rn_log_close: %s", rn_strerror(crc));
    return rc;
}

typedef struct pass {
    uint64_t *lat;      /* ns, per lookup; NULL for the warm-up */
    uint64_t  total_ns;
} pass_t;

static int pass_offset(const lookup_cfg_t *cfg, rn_log_t *log, bench_rng_t *rng, uint64_t n,
                       pass_t *p)
{
    char errmsg[RN_ERRMSG_SIZE] = "";
    uint64_t nrec = cfg->batches * cfg->per_batch;
    p->total_ns = 0;
    for (uint64_t k = 0; k < n; k++) {
        int64_t off = (int64_t)bench_rng_below(rng, nrec);
        rn_log_batch_ref_t ref;
        uint64_t t0 = rn_mono_ns();
        int rc = rn_log_lookup_offset(log, 0, off, &ref, errmsg);
        uint64_t dt = rn_mono_ns() - t0;
        if (rc != 0)
            return bench_fail(CMD, rc, "rn_log_lookup_offset(%lld): %s", (long long)off,
                              errmsg[0] ? errmsg : rn_strerror(rc));
        uint64_t i = (uint64_t)off / cfg->per_batch;
        if (ref.base_offset != (int64_t)(i * cfg->per_batch) || ref.record_count != cfg->per_batch)
            return bench_fail(CMD, RN_ECORRUPT,
                              "rn_log_lookup_offset(%lld) gave batch base %lld count %u, expected %llu count %llu",
                              (long long)off, (long long)ref.base_offset, ref.record_count,
                              (unsigned long long)(i * cfg->per_batch),
                              (unsigned long long)cfg->per_batch);
        if (p->lat) p->lat[k] = dt;
        p->total_ns += dt;
    }
    return 0;
}

static int pass_time(const lookup_cfg_t *cfg, rn_log_t *log, bench_rng_t *rng, int64_t ts0,
                     uint64_t n, pass_t *p)
{
    char errmsg[RN_ERRMSG_SIZE] = "";
    p->total_ns = 0;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t i = bench_rng_below(rng, cfg->batches), j = bench_rng_below(rng, cfg->per_batch);
        int64_t target = rec_ts(ts0, i, j), got;
        uint64_t t0 = rn_mono_ns();
        int rc = rn_log_lookup_time(log, 0, target, &got, errmsg);
        uint64_t dt = rn_mono_ns() - t0;
        if (rc != 0)
            return bench_fail(CMD, rc, "rn_log_lookup_time(%lld): %s", (long long)target,
                              errmsg[0] ? errmsg : rn_strerror(rc));
        int64_t want = expected_time_offset(ts0, cfg->per_batch, i, j, target);
        if (got != want)
            return bench_fail(CMD, RN_ECORRUPT, "rn_log_lookup_time(%lld) gave offset %lld, expected %lld",
                              (long long)target, (long long)got, (long long)want);
        if (p->lat) p->lat[k] = dt;
        p->total_ns += dt;
    }
    return 0;
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static void emit_json(const lookup_cfg_t *cfg, const char *name, const uint64_t *lat,
                      uint64_t total_ns, uint64_t bytes, const uint64_t *timer)
{
    uint64_t n = cfg->lookups;
    bench_json_t j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", name);
    bench_json_str(&j, "fsync", "never");
    bench_json_u64(&j, "records", cfg->batches * cfg->per_batch);
    bench_json_u64(&j, "batches", cfg->batches);
    bench_json_u64(&j, "records_per_batch", cfg->per_batch);
    bench_json_u64(&j, "size", cfg->size);
    bench_json_u64(&j, "batch_bytes", cfg->batches ? bytes / cfg->batches : 0);
    bench_json_u64(&j, "lookups", n);
    bench_json_u64(&j, "warmup_lookups", cfg->warmup);
    /* Not throughput benches: no records or bytes are moved. */
    bench_json_null(&j, "records_per_s");
    bench_json_null(&j, "mb_per_s");
    bench_json_f64(&j, "lookups_per_s", total_ns ? (double)n / ((double)total_ns / 1e9) : NAN);
    bench_json_f64(&j, "p50_us", us(bench_percentile(lat, n, 50)));
    bench_json_f64(&j, "p90_us", us(bench_percentile(lat, n, 90)));
    bench_json_f64(&j, "p99_us", us(bench_percentile(lat, n, 99)));
    bench_json_f64(&j, "p999_us", us(bench_percentile(lat, n, 99.9)));
    bench_json_f64(&j, "max_us", us(bench_percentile(lat, n, 100)));
    bench_json_f64(&j, "mean_us", n ? us(total_ns) / (double)n : NAN);
    bench_json_u64(&j, "timer_p50_ns", bench_percentile(timer, n, 50));
    bench_json_u64(&j, "timer_p99_ns", bench_percentile(timer, n, 99));
    bench_json_u64(&j, "seed", cfg->seed);
    bench_json_end(&j);
}

static int lookup_parse(int argc, char **argv, void *arg)
{
    lookup_cfg_t *cfg = arg;
    cfg->batches = 1000000;
    cfg->per_batch = 10;
    cfg->lookups = 200000;
    cfg->size = 100;
    cfg->seed = 1;
    cfg->warmup = UINT64_MAX;
    const bench_opt_t opts[] = {
        {"--batches", BENCH_OPT_U64, &cfg->batches, 1, 100000000ull, "N"},
        {"--records-per-batch", BENCH_OPT_U64, &cfg->per_batch, 1, 10000, "R"},
        {"--lookups", BENCH_OPT_U64, &cfg->lookups, 1, 100000000ull, "L"},
        {"--warmup-lookups", BENCH_OPT_U64, &cfg->warmup, 0, 1000000000ull, "W"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 0, 1u << 20, "B"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    int rc = bench_parse_flags(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc != 0) return rc;
    if (cfg->warmup == UINT64_MAX) cfg->warmup = cfg->lookups;
    rn_record_t r = {.key_len = -1, .value_len = (int32_t)cfg->size};
    size_t need = rn_batch_bound(rn_batch_record_bound(&r) * cfg->per_batch, RN_BATCH_CODEC_NONE);
    if (need > (1u << 20))
        return bench_fail(CMD, RN_EINVAL,
                          "--records-per-batch %llu of --size %llu makes batches of %zu bytes; "
                          "keep them within 1 MiB (the builder's default)",
                          (unsigned long long)cfg->per_batch, (unsigned long long)cfg->size, need);
    return 0;
}

static int lookup_run(const void *arg)
{
    const lookup_cfg_t *cfg = arg;
    char dir[PATH_MAX], errmsg[RN_ERRMSG_SIZE] = "";
    uint64_t n = cfg->lookups, bytes = 0;
    rn_log_t *log = NULL;
    uint64_t *lat_off = malloc(n * sizeof *lat_off);
    uint64_t *lat_time = malloc(n * sizeof *lat_time);
    uint64_t *timer = malloc(n * sizeof *timer);
    int rc = -ENOMEM;
    if (!lat_off || !lat_time || !timer) { bench_fail(CMD, rc, "out of memory"); goto out_mem; }
    /* Touch the sample arrays now, so their page faults land in no pass
     * (non-zero fill: malloc + memset 0 may become calloc, which touches nothing). */
    memset(lat_off, 0xff, n * sizeof *lat_off);
    memset(lat_time, 0xff, n * sizeof *lat_time);
    if ((rc = bench_mkdtemp(cfg->dir, dir, sizeof dir)) != 0) {
        rc = bench_fail(CMD, rc, "creating a directory under %s: %s",
                        cfg->dir ? cfg->dir : "/var/tmp", rn_strerror(rc));
        goto out_mem;
    }
    bench_note(cfg->json, "lookup: log of %llu batches x %llu records of %llu-byte values in %s, seed %llu",
               (unsigned long long)cfg->batches, (unsigned long long)cfg->per_batch,
               (unsigned long long)cfg->size, dir, (unsigned long long)cfg->seed);
    int64_t ts0 = rn_sys.now_ms();
    if ((rc = build_log(cfg, dir, ts0, &bytes)) != 0) goto out_dir;

    /* Let writeback of the freshly built log finish, so it does not run
     * under the timed passes. */
    if ((rc = bench_settle_fs(dir)) != 0) {
        rc = bench_fail(CMD, rc, "syncfs: %s", rn_strerror(rc));
        goto out_dir;
    }
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    lo.fsync = RN_FSYNC_NEVER;
    uint64_t t0 = rn_mono_ns();
    if ((rc = rn_log_open(dir, &lo, &log, errmsg)) != 0) {
        rc = bench_fail(CMD, rc, "reopening %s: %s", dir, errmsg[0] ? errmsg : rn_strerror(rc));
        goto out_dir;
    }
    bench_note(cfg->json, "reopened the store in %.1f ms; warm-up pass of %llu lookups of each kind, "
               "then the timed pass of %llu", (double)(rn_mono_ns() - t0) / 1e6,
               (unsigned long long)cfg->warmup, (unsigned long long)n);

    /* The timer's own cost: back-to-back rn_mono_ns() pairs. */
    for (uint64_t k = 0; k < n; k++) {
        uint64_t a = rn_mono_ns();
        timer[k] = rn_mono_ns() - a;
    }
    bench_sort_u64(timer, n);

    bench_rng_t warm, rng;
    bench_rng_seed(&warm, cfg->seed * 0x9E3779B97F4A7C15ull + 7);
    bench_rng_seed(&rng, cfg->seed);
    pass_t wp = {NULL, 0}, po = {lat_off, 0}, pt = {lat_time, 0};
    struct rusage ru0, ru1, ru2;
    if ((rc = pass_offset(cfg, log, &warm, cfg->warmup, &wp)) != 0 ||
        (rc = pass_time(cfg, log, &warm, ts0, cfg->warmup, &wp)) != 0)
        goto out_log;
    getrusage(RUSAGE_SELF, &ru0);
    if ((rc = pass_offset(cfg, log, &rng, n, &po)) != 0) goto out_log;
    getrusage(RUSAGE_SELF, &ru1);
    if ((rc = pass_time(cfg, log, &rng, ts0, n, &pt)) != 0) goto out_log;
    getrusage(RUSAGE_SELF, &ru2);
    bench_note(cfg->json, "during the timed passes (offset, time): %ld, %ld page faults; "
               "%ld, %ld involuntary context switches",
               ru1.ru_minflt + ru1.ru_majflt - ru0.ru_minflt - ru0.ru_majflt,
               ru2.ru_minflt + ru2.ru_majflt - ru1.ru_minflt - ru1.ru_majflt,
               ru1.ru_nivcsw - ru0.ru_nivcsw, ru2.ru_nivcsw - ru1.ru_nivcsw);
    bench_sort_u64(lat_off, n);
    bench_sort_u64(lat_time, n);

    if (cfg->json) {
        emit_json(cfg, "lookup_offset", lat_off, po.total_ns, bytes, timer);
        emit_json(cfg, "lookup_time", lat_time, pt.total_ns, bytes, timer);
    } else {
        bench_table_t t;
        bench_table_init(&t, 9);
        const char *hdr[] = {"lookup", "lookups", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs",
                             "max µs", "mean µs", "lookups/s"};
        rc = 0;
        for (size_t c = 0; c < 9 && rc == 0; c++) rc = bench_table_cell(&t, "%s", hdr[c]);
        for (int k = 0; k < 2 && rc == 0; k++) {
            const uint64_t *lat = k == 0 ? lat_off : lat_time;
            uint64_t tot = k == 0 ? po.total_ns : pt.total_ns;
            rc = bench_table_cell(&t, "%s", k == 0 ? "offset" : "time (exact)");
            if (rc == 0) rc = bench_table_cell(&t, "%llu", (unsigned long long)n);
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(bench_percentile(lat, n, 50)));
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(bench_percentile(lat, n, 90)));
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(bench_percentile(lat, n, 99)));
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(bench_percentile(lat, n, 99.9)));
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(bench_percentile(lat, n, 100)));
            if (rc == 0) rc = bench_table_cell(&t, "%.2f", us(tot) / (double)n);
            if (rc == 0) rc = bench_table_cell(&t, "%.0f", tot ? (double)n / ((double)tot / 1e9) : 0.0);
        }
        if (rc == 0) {
            bench_table_print(&t, stdout);
            printf("timer overhead (back-to-back rn_mono_ns, included above): p50 %llu ns, p99 %llu ns\n",
                   (unsigned long long)bench_percentile(timer, n, 50),
                   (unsigned long long)bench_percentile(timer, n, 99));
        } else {
            rc = bench_fail(CMD, rc, "out of memory");
        }
        bench_table_free(&t);
    }
out_log:;
    int crc = rn_log_close(log);
    if (rc == 0 && crc != 0) rc = bench_fail(CMD, crc, "rn_log_close: %s", rn_strerror(crc));
out_dir:;
    int rm = bench_rmtree(dir);
    if (rc == 0 && rm != 0) rc = bench_fail(CMD, rm, "removing %s: %s", dir, rn_strerror(rm));
out_mem:
    free(timer);
    free(lat_time);
    free(lat_off);
    return rc;
}

const bench_cmd_t bench_cmd_lookup = {
    .name = "lookup",
    .usage = "[--batches N] [--records-per-batch R] [--lookups L] [--warmup-lookups W] "
             "[--size B] [--dir DIR] [--seed S] [--json]",
    .cfg_size = sizeof(lookup_cfg_t),
    .parse = lookup_parse,
    .run = lookup_run,
};

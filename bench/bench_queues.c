/*
 * bench_queues.c — logical queues: `runnel-bench remap-read` (the cost of
 * reading across remap boundaries) and `runnel-bench commit` (embedded
 * consumer-group offset commits per second).
 *
 * remap-read: two topics of one logical queue hold the same N records
 * (values from the same seeded generator, --size bytes, batches of
 * --batch-bytes): "single" in one mapping item, "split" in --items items
 * made by remapping at equal intervals while appending (alternately to a
 * second store and back, or all in store 0 with --same-store). Both are
 * read start to end through the embedded consumer (rn_consumer_poll: the
 * read path `runnel consume` uses; every batch CRC-checked and decoded, each
 * record's offset and first value bytes hashed, and the two hashes compared),
 * alternating single/split for --rounds
 * rounds. Reported: the median ns per record of each and their ratio; the
 * target is split <= 1.05 x single.
 *
 * commit: --commits transactions, each committing one offset of one queue
 * (rn_group_commit_offsets: the data directory's mutex + one SQLite
 * transaction), offsets increasing; timed one by one. Two modes: the
 * default offset durability (synchronous=NORMAL: survives kill -9, a power
 * cut may lose the latest commits) and --full-commits transactions with
 * synchronous=FULL (an fsync each). Target: >= 10,000 commits/s by default.
 *
 * Fairness: 1. data is written untimed under fsync never, the data
 * directory closed, the filesystem synced and reopened before any timing,
 * so reads hit a warm page cache, the same for both topics; 2. one untimed
 * warm-up read of each topic; 3. both topics are on the same filesystem and
 * read by the same code; 4. medians over rounds; percentiles nearest-rank.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RR_CMD "remap-read"
#define CM_CMD "commit"

typedef struct rr_cfg {
    uint64_t    records, size, batch_bytes, items, rounds, seed;
    int         same_store, json;
    const char *dir;
} rr_cfg_t;

typedef struct cm_cfg {
    uint64_t    commits, full_commits;
    int         json;
    const char *dir;
} cm_cfg_t;

static rn_datadir_t *open_dd(const char *dir, int create, char *err)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = create;
    o.holder = "runnel-bench";
    o.log.fsync = RN_FSYNC_NEVER;
    rn_datadir_t *d = NULL;
    return rn_datadir_open(dir, &o, &d, err) == 0 ? d : NULL;
}

/* Append the builder's batch, if it holds records, and empty it. */
static int flush(rn_datadir_t *d, rn_datadir_queue_t *q, rn_batch_builder_t *b, char *err)
{
    if (rn_batch_builder_count(b) == 0) return 0;
    const uint8_t *batch;
    size_t len;
    int64_t base;
    uint64_t ticket;
    int rc = rn_batch_builder_finish(b, &batch, &len);
    if (rc == 0) rc = rn_datadir_append(d, q, batch, len, &base, &ticket, err);
    rn_batch_builder_reset(b);
    return rc;
}

/* Append cfg->records records to topic's queue 0 in batches of
 * cfg->batch_bytes, values from rng; remap every `every` records (0: never),
 * alternately to store2 (when not NULL) and back to store 0's path. */
static int fill(rn_datadir_t *d, const rr_cfg_t *cfg, const char *topic, bench_rng_t *rng,
                uint64_t every, const char *store2, char *err)
{
    rn_datadir_queue_t q;
    rn_batch_builder_t b;
    rn_batch_opts_t bo;
    uint8_t *val = malloc(cfg->size);
    int rc = rn_datadir_queue_open(d, topic, 0, &q, err);
    if (rc != 0 || !val) { free(val); return rc ? rc : -ENOMEM; }
    rn_batch_opts_default(&bo);
    bo.max_bytes = (uint32_t)cfg->batch_bytes;
    rc = rn_batch_builder_init(&b, &bo);
    uint64_t remaps = 0;
    for (uint64_t i = 0; i < cfg->records && rc == 0; i++) {
        if (every && i > 0 && i % every == 0) {
            rc = flush(d, &q, &b, err);
            const char *to = store2 ? (remaps % 2 == 0 ? store2 : "stores/0") : NULL;
            if (rc == 0) rc = rn_datadir_remap(d, topic, 0, to, NULL, NULL, err);
            remaps++;
            if (rc != 0) break;
        }
        bench_fill_value(rng, val, cfg->size);
        rn_record_t r = {.timestamp = 1700000000000 + (int64_t)i, .key_len = -1,
                         .value = val, .value_len = (int32_t)cfg->size};
        rc = rn_batch_builder_add(&b, &r);
        if (rc == RN_EFULL) {
            rc = flush(d, &q, &b, err);
            if (rc == 0) rc = rn_batch_builder_add(&b, &r);
        }
    }
    if (rc == 0) rc = flush(d, &q, &b, err);
    rn_batch_builder_destroy(&b);
    rn_datadir_queue_close(&q);
    free(val);
    return rc;
}

/* Read topic's queue 0 from 0 to the end; ns per record, and *sum a hash of
 * every record's offset, length and first value bytes. */
static int read_all(rn_datadir_t *d, const char *topic, uint64_t want, double *ns_per,
                    uint64_t *sum, char *err)
{
    rn_consumer_t *c = NULL;
    int rc = rn_consumer_create(d, NULL, &c, err);
    if (rc == 0) rc = rn_consumer_assign(c, topic, 0, 0, err);
    uint64_t n = 0, s = 0, t0 = rn_mono_ns();
    rn_consumer_batch_t b;
    while (rc == 0 && (rc = rn_consumer_poll(c, &b, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++) {
            /* Touch each record: its offset and first value bytes, so the
             * two topics are checked to hold the same records in order. */
            const rn_record_t *r = &b.records[i];
            uint64_t head = 0;
            memcpy(&head, r->value, r->value_len < 8 ? (size_t)r->value_len : 8);
            s = (s ^ head ^ (uint64_t)r->offset) * 0x100000001b3ull + (uint64_t)r->value_len;
        }
        n += b.count;
        rc = 0;
    }
    uint64_t t1 = rn_mono_ns();
    rn_consumer_destroy(c);
    if (rc < 0) return rc;
    if (n != want) return rn_errf(err, RN_ECORRUPT, "%s: read %llu records, want %llu", topic,
                                  (unsigned long long)n, (unsigned long long)want);
    *ns_per = (double)(t1 - t0) / (double)n;
    *sum = s;
    return 0;
}

static int rr_parse(int argc, char **argv, void *arg)
{
    rr_cfg_t *cfg = arg;
    cfg->records = 2000000;
    cfg->size = 100;
    cfg->batch_bytes = 64u << 10;
    cfg->items = 2;
    cfg->rounds = 7;
    cfg->seed = 1;
    const bench_opt_t opts[] = {
        {"--records", BENCH_OPT_U64, &cfg->records, 1000, 1000000000ull, "N"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 1, 1u << 16, "B"},
        {"--batch-bytes", BENCH_OPT_SIZE, &cfg->batch_bytes, 1024, 1u << 20, "BYTES"},
        {"--items", BENCH_OPT_U64, &cfg->items, 2, 1000, "K"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 101, "R"},
        {"--same-store", BENCH_OPT_FLAG, &cfg->same_store, 0, 0, ""},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    return bench_parse_flags(RR_CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
}

static int rr_run(const void *arg)
{
    const rr_cfg_t *cfg = arg;
    char root[PATH_MAX], data[PATH_MAX + 16], store2[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    double *ns1 = calloc(cfg->rounds, sizeof *ns1), *ns2 = calloc(cfg->rounds, sizeof *ns2);
    rn_datadir_t *d = NULL;
    int rc = ns1 && ns2 ? bench_mkdtemp(cfg->dir, root, sizeof root) : -ENOMEM;
    if (rc != 0) {
        free(ns1); free(ns2);
        return bench_fail(RR_CMD, rc, "cannot create a scratch directory: %s", rn_strerror(rc));
    }
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(store2, sizeof store2, "%s/store2", root);
    bench_note(cfg->json, "remap-read: %llu records of %llu B, batches of %llu B, split into %llu "
               "items (%s), %llu rounds, seed %llu, in %s", (unsigned long long)cfg->records,
               (unsigned long long)cfg->size, (unsigned long long)cfg->batch_bytes,
               (unsigned long long)cfg->items, cfg->same_store ? "one store" : "two stores",
               (unsigned long long)cfg->rounds, (unsigned long long)cfg->seed, root);
    d = open_dd(data, 1, err);
    if (!d) { rc = RN_EINVAL; goto out; }
    bench_rng_t rng;
    if ((rc = rn_datadir_topic_create(d, "single", 1, NULL, err)) != 0 ||
        (rc = rn_datadir_topic_create(d, "split", 1, NULL, err)) != 0)
        goto out;
    bench_rng_seed(&rng, cfg->seed);
    if ((rc = fill(d, cfg, "single", &rng, 0, NULL, err)) != 0) goto out;
    bench_rng_seed(&rng, cfg->seed);
    uint64_t every = (cfg->records + cfg->items - 1) / cfg->items;
    if ((rc = fill(d, cfg, "split", &rng, every, cfg->same_store ? NULL : store2, err)) != 0)
        goto out;
    rc = rn_datadir_close(d);
    d = NULL;
    if (rc == 0) rc = bench_settle_fs(root);
    if (rc != 0) { rn_errf(err, rc, "closing: %s", rn_strerror(rc)); goto out; }
    d = open_dd(data, 0, err);
    if (!d) { rc = RN_EINVAL; goto out; }
    rn_datadir_queue_t q;
    if ((rc = rn_datadir_queue_open(d, "split", 0, &q, err)) != 0) goto out;
    size_t items = q.nitems;
    rn_datadir_queue_close(&q);

    double w;
    uint64_t s1 = 0, s2 = 0;
    if ((rc = read_all(d, "single", cfg->records, &w, &s1, err)) != 0 ||
        (rc = read_all(d, "split", cfg->records, &w, &s2, err)) != 0)
        goto out;
    for (uint64_t r = 0; r < cfg->rounds && rc == 0; r++) {
        /* Alternate which goes first, so neither always follows the other. */
        int first_split = (int)(r & 1);
        for (int k = 0; k < 2 && rc == 0; k++) {
            int split = k ^ first_split ? 1 : 0;
            uint64_t s;
            rc = read_all(d, split ? "split" : "single", cfg->records, split ? &ns2[r] : &ns1[r],
                          &s, err);
            if (rc == 0 && s != s1) rc = rn_errf(err, RN_ECORRUPT, "the topics differ");
        }
    }
    if (rc != 0) goto out;
    double m1 = bench_median(ns1, cfg->rounds), m2 = bench_median(ns2, cfg->rounds);
    double ratio = m2 / m1;
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", RR_CMD);
        bench_json_u64(&j, "records", cfg->records);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "batch_bytes", cfg->batch_bytes);
        bench_json_u64(&j, "items", items);
        bench_json_str(&j, "stores", cfg->same_store ? "one" : "two");
        bench_json_u64(&j, "rounds", cfg->rounds);
        bench_json_f64(&j, "single_ns_per_record", m1);
        bench_json_f64(&j, "split_ns_per_record", m2);
        bench_json_f64(&j, "single_records_per_s", 1e9 / m1);
        bench_json_f64(&j, "split_records_per_s", 1e9 / m2);
        bench_json_f64(&j, "ratio", ratio);
        bench_json_f64(&j, "target_ratio_max", 1.05);
        bench_json_str(&j, "verdict", ratio <= 1.05 ? "pass" : "fail");
        bench_json_f64_array(&j, "single_ns_rounds", ns1, cfg->rounds);
        bench_json_f64_array(&j, "split_ns_rounds", ns2, cfg->rounds);
        bench_json_end(&j);
    } else {
        bench_table_t t;
        bench_table_init(&t, 4);
        bench_table_cell(&t, "read");
        bench_table_cell(&t, "items");
        bench_table_cell(&t, "ns/record (median)");
        bench_table_cell(&t, "records/s");
        bench_table_cell(&t, "single item");
        bench_table_cell(&t, "1");
        bench_table_cell(&t, "%.1f", m1);
        bench_table_cell(&t, "%.0f", 1e9 / m1);
        bench_table_cell(&t, "across remaps");
        bench_table_cell(&t, "%zu", items);
        bench_table_cell(&t, "%.1f", m2);
        bench_table_cell(&t, "%.0f", 1e9 / m2);
        bench_table_print(&t, stdout);
        bench_table_free(&t);
        printf("ratio %.3f (target <= 1.05): %s\n", ratio, ratio <= 1.05 ? "pass" : "FAIL");
    }
out:
    if (rc != 0) bench_fail(RR_CMD, rc, "%s", err[0] ? err : rn_strerror(rc));
    rn_datadir_close(d);
    bench_rmtree(root);
    free(ns1);
    free(ns2);
    return rc;
}

const bench_cmd_t bench_cmd_remap_read = {
    .name = RR_CMD,
    .usage = "[--records N] [--size B] [--batch-bytes BYTES] [--items K] [--rounds R] "
             "[--same-store] [--dir DIR] [--seed S] [--json]",
    .cfg_size = sizeof(rr_cfg_t),
    .parse = rr_parse,
    .run = rr_run,
};

/* ---- commit ------------------------------------------------------------ */

static int cm_parse(int argc, char **argv, void *arg)
{
    cm_cfg_t *cfg = arg;
    cfg->commits = 50000;
    cfg->full_commits = 2000;
    const bench_opt_t opts[] = {
        {"--commits", BENCH_OPT_U64, &cfg->commits, 1, 100000000ull, "N"},
        {"--full-commits", BENCH_OPT_U64, &cfg->full_commits, 0, 100000000ull, "N"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    return bench_parse_flags(CM_CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
}

/* Time n single-offset commits; fills rate and percentiles (ns). */
static int commit_pass(rn_datadir_t *d, int64_t topic_id, uint64_t n, double *rate,
                       uint64_t *p50, uint64_t *p99, char *err)
{
    uint64_t *lat = malloc(n * sizeof *lat);
    if (!lat) return rn_errf(err, -ENOMEM, "out of memory");
    int rc = 0;
    uint64_t t0 = rn_mono_ns();
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        rn_meta_offset_t o = {.topic_id = topic_id, .queue = (uint32_t)(i % 4),
                              .offset = (int64_t)i};
        uint64_t a = rn_mono_ns();
        rc = rn_group_commit_offsets(d, "bench", &o, 1, err);
        lat[i] = rn_mono_ns() - a;
    }
    uint64_t total = rn_mono_ns() - t0;
    if (rc == 0) {
        bench_sort_u64(lat, n);
        *rate = (double)n / ((double)total / 1e9);
        *p50 = bench_percentile(lat, n, 50);
        *p99 = bench_percentile(lat, n, 99);
    }
    free(lat);
    return rc;
}

static int cm_run(const void *arg)
{
    const cm_cfg_t *cfg = arg;
    char root[PATH_MAX], data[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    int rc = bench_mkdtemp(cfg->dir, root, sizeof root);
    if (rc != 0) return bench_fail(CM_CMD, rc, "cannot create a scratch directory");
    snprintf(data, sizeof data, "%s/data", root);
    bench_note(cfg->json, "commit: %llu commits (offset durability NORMAL, the default) and %llu "
               "with synchronous=FULL, one offset each, in %s", (unsigned long long)cfg->commits,
               (unsigned long long)cfg->full_commits, root);
    d = open_dd(data, 1, err);
    rn_meta_topic_t t;
    if (!d) { rc = RN_EINVAL; goto out; }
    if ((rc = rn_datadir_topic_create(d, "t", 4, &t, err)) != 0) goto out;
    struct { const char *mode; uint64_t n; double rate; uint64_t p50, p99; } res[2] = {
        {"normal", cfg->commits, 0, 0, 0}, {"full", cfg->full_commits, 0, 0, 0},
    };
    for (int m = 0; m < 2 && rc == 0; m++) {
        if (res[m].n == 0) continue;
        rn_meta_t *meta = rn_datadir_meta_lock(d);
        rc = rn_meta_set_offset_sync(meta, m, err);
        rn_datadir_meta_unlock(d);
        if (rc == 0) rc = commit_pass(d, t.id, res[m].n, &res[m].rate, &res[m].p50, &res[m].p99,
                                      err);
    }
    if (rc != 0) goto out;
    if (cfg->json) {
        for (int m = 0; m < 2; m++) {
            if (res[m].n == 0) continue;
            bench_json_t j;
            bench_json_begin(&j, stdout);
            bench_json_str(&j, "bench", CM_CMD);
            bench_json_str(&j, "sync", res[m].mode);
            bench_json_u64(&j, "commits", res[m].n);
            bench_json_f64(&j, "commits_per_s", res[m].rate);
            bench_json_f64(&j, "p50_us", (double)res[m].p50 / 1e3);
            bench_json_f64(&j, "p99_us", (double)res[m].p99 / 1e3);
            if (m == 0) {
                bench_json_f64(&j, "target_min_per_s", 10000);
                bench_json_str(&j, "verdict", res[m].rate >= 10000 ? "pass" : "fail");
            }
            bench_json_end(&j);
        }
    } else {
        bench_table_t tb;
        bench_table_init(&tb, 5);
        bench_table_cell(&tb, "offset durability");
        bench_table_cell(&tb, "commits");
        bench_table_cell(&tb, "commits/s");
        bench_table_cell(&tb, "p50 µs");
        bench_table_cell(&tb, "p99 µs");
        for (int m = 0; m < 2; m++) {
            if (res[m].n == 0) continue;
            bench_table_cell(&tb, "%s", m == 0 ? "normal (default)" : "full");
            bench_table_cell(&tb, "%llu", (unsigned long long)res[m].n);
            bench_table_cell(&tb, "%.0f", res[m].rate);
            bench_table_cell(&tb, "%.1f", (double)res[m].p50 / 1e3);
            bench_table_cell(&tb, "%.1f", (double)res[m].p99 / 1e3);
        }
        bench_table_print(&tb, stdout);
        bench_table_free(&tb);
        printf("default mode %.0f commits/s (target >= 10000): %s\n", res[0].rate,
               res[0].rate >= 10000 ? "pass" : "FAIL");
    }
out:
    if (rc != 0) bench_fail(CM_CMD, rc, "%s", err[0] ? err : rn_strerror(rc));
    rn_datadir_close(d);
    bench_rmtree(root);
    return rc;
}

const bench_cmd_t bench_cmd_commit = {
    .name = CM_CMD,
    .usage = "[--commits N] [--full-commits N] [--dir DIR] [--json]",
    .cfg_size = sizeof(cm_cfg_t),
    .parse = cm_parse,
    .run = cm_run,
};

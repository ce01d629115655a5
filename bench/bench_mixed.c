/*
 * bench_mixed.c — `runnel-bench mixed`: producers and consumers on one store
 * at once, with and without segment rolls.
 *
 * What it measures. P producer threads each append the same pre-built
 * batches (--size-byte log-line values, batches of at most --batch-bytes) to
 * their own queue until together they have written --total bytes of
 * batches; each waits for the ticket of the batch appended 64 batches
 * earlier (a producer's in-flight window), and every rn_log_append call is
 * timed. Meanwhile C consumer threads read (rn_log_read, 1 MiB per call,
 * every batch CRC-checked and every record decoded) queue c % P: from the
 * log start to the high watermark, then from the log start again, so they
 * never wait and keep re-reading cached data while the producers write.
 *
 * Two configurations run back to back, each --rounds times (figures are the
 * medians over rounds; latency percentiles pool every append of a
 * configuration's rounds):
 *   no rolls    one segment larger than --total: nothing rolls
 *   rolls       --roll-bytes segments (default 8 MiB): a roll every few
 *               hundred appends, each taking the segment the syncer thread
 *               prepared (rolls made on the append path are counted)
 * Fresh store per round in a fresh directory under --dir (default /var/tmp),
 * removed after it; filesystem settled (syncfs) before each round.
 * Timed window: from the first append to the last producer's last ack.
 * Reported: append MB/s (batch bytes), records/s, append-call latency
 * p50/p99/max, read MB/s and records/s of the consumers over the same
 * window, rolls and inline rolls.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/buf.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CMD "mixed"
#define WINDOW 64                    /* batches in flight per producer */
#define MAXT 64

typedef struct mixed_cfg {
    uint64_t    producers, consumers, total, size, batch_bytes, rounds, seed, roll_bytes;
    const char *fsync, *dir;
    int         json;
    rn_fsync_mode_t mode;
} mixed_cfg_t;

typedef struct batchset {
    rn_buf_t bytes;
    size_t  *off;                    /* batch i = bytes[off[i] .. off[i + 1]) */
    size_t   n;
    uint64_t records;
} batchset_t;

/* Finish b's batch into bs. */
static int push(rn_batch_builder_t *b, batchset_t *bs, size_t *cap)
{
    const uint8_t *out;
    size_t len;
    uint32_t cnt = rn_batch_builder_count(b);
    int rc = rn_batch_builder_finish(b, &out, &len);
    if (rc == 0) rc = rn_buf_reserve(&bs->bytes, len, 0);
    if (rc != 0) return rc;
    memcpy(bs->bytes.data + bs->bytes.len, out, len);
    bs->bytes.len += len;
    if (bs->n + 2 > *cap) {
        size_t *no = realloc(bs->off, (*cap *= 2) * sizeof *no);
        if (!no) return -ENOMEM;
        bs->off = no;
    }
    bs->off[++bs->n] = bs->bytes.len;
    bs->records += cnt;
    rn_batch_builder_reset(b);
    return 0;
}

/* 256 distinct batches of log-line values; producers cycle over them. */
static int build(const mixed_cfg_t *cfg, batchset_t *bs)
{
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    bench_rng_t rng;
    uint8_t *val = malloc(cfg->size);
    size_t cap = 64;
    memset(bs, 0, sizeof *bs);
    bs->off = malloc(cap * sizeof *bs->off);
    if (!val || !bs->off) { free(val); free(bs->off); return -ENOMEM; }
    bs->off[0] = 0;
    bench_rng_seed(&rng, cfg->seed);
    rn_batch_opts_default(&bo);
    bo.max_bytes = (uint32_t)cfg->batch_bytes;
    int rc = rn_batch_builder_init(&b, &bo);
    for (int64_t i = 0; rc == 0 && bs->n < 256; i++) {
        bench_fill_value(&rng, val, cfg->size);
        rn_record_t r = {0};
        r.timestamp = 1700000000000 + i;
        r.key_len = -1;
        r.value = val;
        r.value_len = (int32_t)cfg->size;
        rc = rn_batch_builder_add(&b, &r);
        if (rc == RN_EFULL) {
            rc = push(&b, bs, &cap);
            if (rc == 0) rc = rn_batch_builder_add(&b, &r);
        }
    }
    rn_batch_builder_destroy(&b);
    free(val);
    return rc;
}

typedef struct shared {
    const mixed_cfg_t *cfg;
    const batchset_t  *bs;
    rn_log_t          *log;
    atomic_int         producers_left;
    atomic_int         fail;
    uint64_t           per_producer;  /* batch bytes each producer writes */
} shared_t;

typedef struct worker {
    shared_t *s;
    uint32_t  id;
    uint64_t *lat;                    /* producer: ns per append call */
    size_t    nlat, caplat;
    uint64_t  bytes, records;         /* written or read */
    uint64_t  end_ns;                 /* producer: its last ack */
    char      err[RN_ERRMSG_SIZE];
} worker_t;

static void *producer_main(void *arg)
{
    worker_t *w = arg;
    shared_t *s = w->s;
    uint64_t tickets[WINDOW];
    size_t k = 0;
    while (w->bytes < s->per_producer && !atomic_load(&s->fail)) {
        size_t i = k % s->bs->n;
        const uint8_t *p = s->bs->bytes.data + s->bs->off[i];
        size_t len = s->bs->off[i + 1] - s->bs->off[i];
        if (k >= WINDOW) {
            int rc = rn_log_wait(s->log, tickets[k % WINDOW]);
            if (rc != 0) {
                snprintf(w->err, sizeof w->err, "wait: %s", rn_strerror(rc));
                atomic_store(&s->fail, 1);
                break;
            }
        }
        int64_t base;
        uint64_t t0 = rn_mono_ns();
        int rc = rn_log_append(s->log, w->id, p, len, &base, &tickets[k % WINDOW], w->err);
        uint64_t t = rn_mono_ns() - t0;
        if (rc != 0) { atomic_store(&s->fail, 1); break; }
        if (w->nlat == w->caplat) {
            size_t nc = w->caplat ? w->caplat * 2 : 4096;
            uint64_t *nl = realloc(w->lat, nc * sizeof *nl);
            if (!nl) { snprintf(w->err, sizeof w->err, "out of memory"); atomic_store(&s->fail, 1); break; }
            w->lat = nl;
            w->caplat = nc;
        }
        w->lat[w->nlat++] = t;
        w->bytes += len;
        w->records += rn_be32_get(p + 57);          /* recordCount */
        k++;
    }
    size_t from = k > WINDOW ? k - WINDOW : 0;
    for (size_t j = from; j < k && !atomic_load(&s->fail); j++) {
        int rc = rn_log_wait(s->log, tickets[j % WINDOW]);
        if (rc != 0) { snprintf(w->err, sizeof w->err, "wait: %s", rn_strerror(rc)); atomic_store(&s->fail, 1); }
    }
    w->end_ns = rn_mono_ns();
    atomic_fetch_sub(&s->producers_left, 1);
    return NULL;
}

static void *consumer_main(void *arg)
{
    worker_t *w = arg;
    shared_t *s = w->s;
    uint32_t q = w->id % (uint32_t)s->cfg->producers;
    rn_buf_t buf = RN_BUF_INIT;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int64_t next = 0;
    while (atomic_load(&s->producers_left) > 0 && !atomic_load(&s->fail)) {
        uint32_t nb = 0;
        buf.len = 0;
        int rc = rn_log_read(s->log, q, next, 1u << 20, &buf, &nb, w->err);
        if (rc != 0) { atomic_store(&s->fail, 1); break; }
        if (nb == 0) { next = 0; continue; }     /* caught up: re-read from the start */
        size_t at = 0;
        for (uint32_t i = 0; i < nb; i++) {
            size_t sz;
            rn_record_t r;
            if (rn_batch_size(buf.data + at, buf.len - at, &sz) != 0 ||
                rn_batch_iter_reset(&it, buf.data + at, sz, w->err) != 0) {
                atomic_store(&s->fail, 1);
                goto out;
            }
            while ((rc = rn_batch_iter_next(&it, &r, w->err)) == 1) { w->records++; next = r.offset + 1; }
            if (rc != 0) { atomic_store(&s->fail, 1); goto out; }
            at += sz;
        }
        w->bytes += buf.len;
    }
out:
    rn_batch_iter_destroy(&it);
    rn_buf_free(&buf);
    return NULL;
}

typedef struct round_res {
    double   append_mbs, append_rps, read_mbs, read_rps;
    uint64_t rolls, rolls_inline;
} round_res_t;

static int one_round(const mixed_cfg_t *cfg, const batchset_t *bs, uint64_t seg_bytes,
                     uint64_t **lat, size_t *nlat, round_res_t *res)
{
    char dir[PATH_MAX], err[RN_ERRMSG_SIZE] = "";
    int rc = bench_mkdtemp(cfg->dir, dir, sizeof dir);
    if (rc != 0) return bench_fail(CMD, rc, "cannot create a directory under %s", cfg->dir ? cfg->dir : "/var/tmp");
    rn_log_opts_t o;
    rn_log_opts_default(&o);
    o.fsync = cfg->mode;
    o.segment_bytes = seg_bytes;
    o.max_batch_bytes = (uint32_t)(cfg->batch_bytes > 4096 ? cfg->batch_bytes : 4096);
    shared_t s = {.cfg = cfg, .bs = bs, .per_producer = cfg->total / cfg->producers};
    worker_t pw[MAXT], cw[MAXT];
    pthread_t pt[MAXT], ct[MAXT];
    memset(pw, 0, sizeof pw);
    memset(cw, 0, sizeof cw);
    bench_settle_fs(dir);
    rc = rn_log_open(dir, &o, &s.log, err);
    if (rc != 0) { bench_rmtree(dir); return bench_fail(CMD, rc, "open %s: %s", dir, err); }
    atomic_store(&s.producers_left, (int)cfg->producers);
    uint64_t t0 = rn_mono_ns();
    for (uint32_t i = 0; i < cfg->producers; i++) {
        pw[i].s = &s;
        pw[i].id = i;
        pthread_create(&pt[i], NULL, producer_main, &pw[i]);
    }
    for (uint32_t i = 0; i < cfg->consumers; i++) {
        cw[i].s = &s;
        cw[i].id = i;
        pthread_create(&ct[i], NULL, consumer_main, &cw[i]);
    }
    uint64_t end = t0, wbytes = 0, wrec = 0, rbytes = 0, rrec = 0;
    for (uint32_t i = 0; i < cfg->producers; i++) {
        pthread_join(pt[i], NULL);
        if (pw[i].end_ns > end) end = pw[i].end_ns;
        wbytes += pw[i].bytes;
        wrec += pw[i].records;
    }
    for (uint32_t i = 0; i < cfg->consumers; i++) {
        pthread_join(ct[i], NULL);
        rbytes += cw[i].bytes;
        rrec += cw[i].records;
    }
    rn_log_stats_t st;
    rn_log_stats(s.log, &st);
    int crc = rn_log_close(s.log);
    bench_rmtree(dir);
    if (atomic_load(&s.fail)) {
        for (uint32_t i = 0; i < cfg->producers; i++)
            if (pw[i].err[0]) rc = bench_fail(CMD, -EIO, "producer %u: %s", i, pw[i].err);
        for (uint32_t i = 0; i < cfg->consumers; i++)
            if (cw[i].err[0]) rc = bench_fail(CMD, -EIO, "consumer %u: %s", i, cw[i].err);
        rc = rc ? rc : bench_fail(CMD, -EIO, "a thread failed");
    } else if (crc != 0) {
        rc = bench_fail(CMD, crc, "close: %s", rn_strerror(crc));
    }
    for (uint32_t i = 0; i < cfg->producers; i++) {
        if (rc == 0) {
            uint64_t *nl = realloc(*lat, (*nlat + pw[i].nlat) * sizeof *nl);
            if (!nl) rc = bench_fail(CMD, -ENOMEM, "out of memory");
            else {
                *lat = nl;
                memcpy(nl + *nlat, pw[i].lat, pw[i].nlat * sizeof *nl);
                *nlat += pw[i].nlat;
            }
        }
        free(pw[i].lat);
    }
    uint64_t ns = end - t0;
    res->append_mbs = bench_mb_per_s(wbytes, ns);
    res->append_rps = ns ? (double)wrec / ((double)ns / 1e9) : 0;
    res->read_mbs = bench_mb_per_s(rbytes, ns);
    res->read_rps = ns ? (double)rrec / ((double)ns / 1e9) : 0;
    res->rolls = st.rolls;
    res->rolls_inline = st.rolls_inline;
    return rc;
}

static int mixed_run(const void *arg)
{
    const mixed_cfg_t *cfg = arg;
    batchset_t bs;
    int rc = build(cfg, &bs);
    if (rc != 0) return bench_fail(CMD, rc, "building batches: %s", rn_strerror(rc));
    bench_note(cfg->json, "mixed: %llu producers, %llu consumers, %llu MB of batches (%zu distinct "
               "batches of <= %llu B, %llu-byte values), fsync %s, %llu rounds per configuration",
               (unsigned long long)cfg->producers, (unsigned long long)cfg->consumers,
               (unsigned long long)(cfg->total / 1000000), bs.n,
               (unsigned long long)cfg->batch_bytes, (unsigned long long)cfg->size, cfg->fsync,
               (unsigned long long)cfg->rounds);
    bench_table_t t;
    bench_table_init(&t, 10);
    const char *hdr[] = {"config", "append MB/s", "append rec/s", "append p50 us", "append p99 us",
                         "append max us", "read MB/s", "read rec/s", "rolls", "inline rolls"};
    for (int i = 0; i < 10; i++) bench_table_cell(&t, "%s", hdr[i]);
    for (int c = 0; c < 2 && rc == 0; c++) {
        const char *name = c == 0 ? "no rolls" : "rolls";
        uint64_t seg = c == 0 ? cfg->total + (64u << 20) : cfg->roll_bytes;
        uint64_t *lat = NULL;
        size_t nlat = 0;
        double am[64], ar[64], rm[64], rr[64];
        uint64_t rolls = 0, inl = 0;
        for (uint64_t k = 0; k < cfg->rounds && rc == 0; k++) {
            round_res_t res;
            rc = one_round(cfg, &bs, seg, &lat, &nlat, &res);
            am[k] = res.append_mbs; ar[k] = res.append_rps;
            rm[k] = res.read_mbs; rr[k] = res.read_rps;
            rolls += res.rolls; inl += res.rolls_inline;
        }
        if (rc == 0) {
            bench_sort_u64(lat, nlat);
            double p50 = bench_percentile(lat, nlat, 50) / 1e3, p99 = bench_percentile(lat, nlat, 99) / 1e3;
            double mx = nlat ? lat[nlat - 1] / 1e3 : 0;
            size_t r = (size_t)cfg->rounds;
            if (cfg->json) {
                bench_json_t j;
                bench_json_begin(&j, stdout);
                bench_json_str(&j, "bench", CMD);
                bench_json_str(&j, "config", name);
                bench_json_str(&j, "fsync", cfg->fsync);
                bench_json_u64(&j, "producers", cfg->producers);
                bench_json_u64(&j, "consumers", cfg->consumers);
                bench_json_u64(&j, "segment_bytes", seg);
                bench_json_f64(&j, "append_mb_s", bench_median(am, r));
                bench_json_f64(&j, "append_rec_s", bench_median(ar, r));
                bench_json_f64(&j, "append_p50_us", p50);
                bench_json_f64(&j, "append_p99_us", p99);
                bench_json_f64(&j, "append_max_us", mx);
                bench_json_f64(&j, "read_mb_s", bench_median(rm, r));
                bench_json_f64(&j, "read_rec_s", bench_median(rr, r));
                bench_json_u64(&j, "rolls", rolls);
                bench_json_u64(&j, "rolls_inline", inl);
                bench_json_end(&j);
            }
            bench_table_cell(&t, "%s", name);
            bench_table_cell(&t, "%.1f", bench_median(am, r));
            bench_table_cell(&t, "%.0f", bench_median(ar, r));
            bench_table_cell(&t, "%.1f", p50);
            bench_table_cell(&t, "%.1f", p99);
            bench_table_cell(&t, "%.0f", mx);
            bench_table_cell(&t, "%.1f", bench_median(rm, r));
            bench_table_cell(&t, "%.0f", bench_median(rr, r));
            bench_table_cell(&t, "%llu", (unsigned long long)rolls);
            bench_table_cell(&t, "%llu", (unsigned long long)inl);
        }
        free(lat);
    }
    if (rc == 0 && !cfg->json) bench_table_print(&t, stdout);
    bench_table_free(&t);
    rn_buf_free(&bs.bytes);
    free(bs.off);
    return rc;
}

static int mixed_parse(int argc, char **argv, void *arg)
{
    mixed_cfg_t *cfg = arg;
    memset(cfg, 0, sizeof *cfg);
    cfg->producers = 2;
    cfg->consumers = 2;
    cfg->total = 256ull << 20;
    cfg->size = 100;
    cfg->batch_bytes = 64 << 10;
    cfg->rounds = 3;
    cfg->seed = 42;
    cfg->roll_bytes = 8u << 20;
    cfg->fsync = "group";
    const bench_opt_t opts[] = {
        {"--producers", BENCH_OPT_U64, &cfg->producers, 1, MAXT, "P"},
        {"--consumers", BENCH_OPT_U64, &cfg->consumers, 0, MAXT, "C"},
        {"--total", BENCH_OPT_SIZE, &cfg->total, 1 << 20, 64ull << 30, "BYTES"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 1, 1 << 20, "B"},
        {"--batch-bytes", BENCH_OPT_SIZE, &cfg->batch_bytes, 1024, 16 << 20, "K"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 64, "R"},
        {"--roll-bytes", BENCH_OPT_SIZE, &cfg->roll_bytes, 1 << 20, 1ull << 30, "BYTES"},
        {"--fsync", BENCH_OPT_STR, &cfg->fsync, 0, 0, "MODE"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 1, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, NULL},
    };
    int rc = bench_parse_flags(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc != 0) return rc;
    rn_log_opts_t o;
    char err[RN_ERRMSG_SIZE];
    rn_log_opts_default(&o);
    if (rn_fsync_parse(cfg->fsync, &o, err) != 0) return bench_fail(CMD, RN_EINVAL, "%s", err);
    cfg->mode = o.fsync;
    if (cfg->size + 64 > cfg->batch_bytes)
        return bench_fail(CMD, RN_EINVAL, "--size %llu does not fit a --batch-bytes %llu batch",
                          (unsigned long long)cfg->size, (unsigned long long)cfg->batch_bytes);
    if (cfg->roll_bytes < cfg->batch_bytes + 16)
        return bench_fail(CMD, RN_EINVAL, "--roll-bytes must hold one batch (%llu bytes)",
                          (unsigned long long)cfg->batch_bytes);
    return 0;
}

const bench_cmd_t bench_cmd_mixed = {
    CMD, "[--producers P] [--consumers C] [--total BYTES] [--size B] [--batch-bytes K] "
    "[--roll-bytes BYTES] [--fsync MODE] [--rounds R] [--dir DIR] [--seed S] [--json]"
    "  (producers and consumers at once, with and without rolls)",
    sizeof(mixed_cfg_t), mixed_parse, mixed_run,
};

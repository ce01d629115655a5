/*
 * bench_append.c — `runnel-bench append`: embedded append throughput and ack
 * latency of the store, beside the raw baseline of the same bytes.
 *
 * What it measures. N records of B-byte values (log-line-like JSON, varied, no
 * key) are encoded with rn_batch_builder into batches of at most K bytes
 * BEFORE any timing, so the timed part is the store alone. Then, in the same
 * directory of the same disk, two engines take the same batch bytes:
 *   runnel   rn_log_append(queue 0) per batch; acked when rn_log_wait returns.
 *   raw      one write (rn_pwrite_full) per batch into a file preallocated to
 *            the total size, plus fdatasync in the same pattern as the mode:
 *              never        no fdatasync; acked when the write returns
 *              always       fdatasync after every write, acked when it returns
 *              group        a flusher thread loops fdatasync while the writer
 *                           writes; a batch is acked at the end of the first
 *                           fdatasync that started after its write returned
 *              interval:MS  a flusher thread fdatasyncs every MS; acked when
 *                           the write returns
 *
 * Files go to a fresh mkdtemp directory under --dir (default /var/tmp), removed
 * at the end; --segment-bytes and --group-window-us set those store options
 * (for diagnosis; the defaults are the store's).
 *
 * How it stays fair.
 *  1. Both engines run in the same harness: the calling thread appends, a
 *     second thread waits on the tickets in order and stamps ack times, and
 *     the appender never has more than --inflight bytes appended but not yet
 *     acked (a producer's in-flight cap; one batch may always go).
 *  2. Timed window: from the first append call to the last ack. Not timed:
 *     building batches, rn_log_open / creating and preallocating the raw file,
 *     rn_log_close / close (runnel's close fsyncs; the raw file's is skipped).
 *  3. --warmup rounds (default 1) of both engines run first and are not
 *     counted. Rounds are interleaved and alternate their order (raw first,
 *     then runnel first, ...); each run writes fresh files in a fresh directory,
 *     removed right after it, and the filesystem is settled (syncfs) before
 *     each run. Figures are the medians over rounds; latency percentiles pool
 *     every batch of every round of that engine.
 *  4. MB/s counts batch bytes only (MB = 10^6 B) for both engines; runnel's own
 *     entry headers and index are its overhead, not extra credit.
 *  5. After each runnel run, the queue's high watermark must equal N.
 *  6. Besides wall time, the process CPU time (getrusage, all threads) over
 *     the timed window is reported per engine: on a shared machine it tells
 *     the store's own cost apart from waiting for the CPU or the disk.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CMD "append"

typedef struct append_cfg {
    uint64_t      records, size, batch_bytes, inflight, rounds, warmup, seed, segment_bytes;
    uint64_t      group_window_us;       /* UINT64_MAX: the store's default */
    const char   *fsync, *dir;
    int           json;
    rn_log_opts_t lopts;
    char          fsync_name[32];
} append_cfg_t;

/* ---- Batches, built before timing ------------------------------------ */

typedef struct batches {
    rn_buf_t bytes;          /* every batch, back to back */
    size_t  *off;            /* batch i is bytes[off[i] .. off[i+1]) */
    size_t   n, cap;
    uint64_t records;
} batches_t;

static int batches_push(batches_t *bs, const uint8_t *p, size_t len)
{
    if (bs->n + 2 > bs->cap) {
        size_t cap = bs->cap ? bs->cap * 2 : 1024;
        size_t *o = realloc(bs->off, cap * sizeof *o);
        if (!o) return -ENOMEM;
        bs->off = o;
        bs->cap = cap;
    }
    int rc = rn_buf_append(&bs->bytes, p, len, 0);
    if (rc != 0) return rc;
    bs->off[bs->n] = bs->bytes.len - len;
    bs->off[++bs->n] = bs->bytes.len;
    return 0;
}

static void batches_free(batches_t *bs)
{
    rn_buf_free(&bs->bytes);
    free(bs->off);
    memset(bs, 0, sizeof *bs);
}

static inline size_t batch_len(const batches_t *bs, size_t i) { return bs->off[i + 1] - bs->off[i]; }
static inline const uint8_t *batch_ptr(const batches_t *bs, size_t i) { return bs->bytes.data + bs->off[i]; }

static int flush_builder(rn_batch_builder_t *b, batches_t *bs)
{
    const uint8_t *p;
    size_t len;
    int rc = rn_batch_builder_finish(b, &p, &len);
    if (rc != 0) return bench_fail(CMD, rc, "rn_batch_builder_finish: %s", rn_strerror(rc));
    rc = batches_push(bs, p, len);
    if (rc != 0) return bench_fail(CMD, rc, "keeping batches in memory: %s", rn_strerror(rc));
    rn_batch_builder_reset(b);
    return 0;
}

static int build_batches(const append_cfg_t *cfg, batches_t *bs)
{
    rn_batch_builder_t b;
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    o.max_bytes = (uint32_t)cfg->batch_bytes;
    int rc = rn_batch_builder_init(&b, &o);
    if (rc != 0) return bench_fail(CMD, rc, "rn_batch_builder_init: %s", rn_strerror(rc));
    uint8_t *value = malloc(cfg->size ? cfg->size : 1);
    if (!value) { rc = bench_fail(CMD, -ENOMEM, "out of memory"); goto out_builder; }
    /* Reserve roughly the final size up front to avoid repeated copying. */
    rc = rn_buf_reserve(&bs->bytes, cfg->records * (cfg->size + 12), 0);
    if (rc != 0) { rc = bench_fail(CMD, rc, "reserving batch memory: %s", rn_strerror(rc)); goto out_value; }

    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    int64_t ts0 = rn_sys.now_ms();
    for (uint64_t k = 0; k < cfg->records; k++) {
        bench_fill_value(&rng, value, cfg->size);
        rn_record_t r = {
            .timestamp = ts0 + (int64_t)(k / 1000),   /* ~1000 records per ms */
            .key = NULL, .key_len = -1,
            .value = value, .value_len = (int32_t)cfg->size,
        };
        rc = rn_batch_builder_add(&b, &r);
        if (rc == RN_EFULL) {
            if ((rc = flush_builder(&b, bs)) != 0) goto out_value;
            rc = rn_batch_builder_add(&b, &r);
        }
        if (rc != 0) { rc = bench_fail(CMD, rc, "rn_batch_builder_add: %s", rn_strerror(rc)); goto out_value; }
    }
    if (rn_batch_builder_count(&b) > 0 && (rc = flush_builder(&b, bs)) != 0) goto out_value;
    bs->records = cfg->records;
    rc = 0;
out_value:
    free(value);
out_builder:
    rn_batch_builder_destroy(&b);
    return rc;
}

/* ---- Engines ---------------------------------------------------------- */

typedef struct engine engine_t;
struct engine {
    const char *name;
    /* Store one batch; *ticket identifies it for wait(). */
    int (*append)(engine_t *e, const uint8_t *p, size_t len, uint64_t *ticket, char *errmsg);
    /* Block until the batch may be acked. */
    int (*wait)(engine_t *e, uint64_t ticket);
};

typedef struct runnel_engine {
    engine_t  base;
    rn_log_t *log;
} runnel_engine_t;

static int runnel_append(engine_t *e, const uint8_t *p, size_t len, uint64_t *ticket, char *errmsg)
{
    int64_t base_offset;
    return rn_log_append(((runnel_engine_t *)e)->log, 0, p, len, &base_offset, ticket, errmsg);
}

static int runnel_wait(engine_t *e, uint64_t ticket)
{
    return rn_log_wait(((runnel_engine_t *)e)->log, ticket);
}

typedef struct raw_engine {
    engine_t        base;
    rn_fsync_mode_t mode;
    uint32_t        interval_ms;
    int             fd;
    off_t           pos;
    pthread_t       flusher;
    int             flusher_started;
    pthread_mutex_t mu;
    pthread_cond_t  work;          /* flusher: new writes, or stop */
    pthread_cond_t  durable_cv;    /* waiters: durable advanced, or error */
    uint64_t        written;       /* tickets whose write returned */
    uint64_t        durable;       /* tickets covered by a finished fdatasync */
    int             stop, err;
} raw_engine_t;

static int raw_fdatasync(int fd)
{
    while (fdatasync(fd) < 0)
        if (errno != EINTR) return -errno;
    return 0;
}

static int raw_append(engine_t *e, const uint8_t *p, size_t len, uint64_t *ticket, char *errmsg)
{
    raw_engine_t *r = (raw_engine_t *)e;
    int rc = rn_pwrite_full(r->fd, p, len, r->pos);
    if (rc != 0) return rn_errf(errmsg, rc, "raw write at %lld: %s", (long long)r->pos, rn_strerror(rc));
    r->pos += (off_t)len;
    if (r->mode == RN_FSYNC_ALWAYS && (rc = raw_fdatasync(r->fd)) != 0)
        return rn_errf(errmsg, rc, "raw fdatasync: %s", rn_strerror(rc));
    pthread_mutex_lock(&r->mu);
    *ticket = ++r->written;
    if (r->err) rc = rn_errf(errmsg, r->err, "raw fdatasync: %s", rn_strerror(r->err));
    if (r->mode == RN_FSYNC_GROUP) pthread_cond_signal(&r->work);   /* interval: the timer decides */
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int raw_wait(engine_t *e, uint64_t ticket)
{
    raw_engine_t *r = (raw_engine_t *)e;
    if (r->mode != RN_FSYNC_GROUP) return 0;
    pthread_mutex_lock(&r->mu);
    while (r->durable < ticket && !r->err) pthread_cond_wait(&r->durable_cv, &r->mu);
    int rc = r->durable >= ticket ? 0 : r->err;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* group: fdatasync whenever something was written since the last one started;
 * what was written before it started is durable when it ends. */
static void *raw_group_flusher(void *arg)
{
    raw_engine_t *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->written == r->durable && !r->stop) pthread_cond_wait(&r->work, &r->mu);
        if (r->stop) break;
        uint64_t covered = r->written;
        pthread_mutex_unlock(&r->mu);
        int rc = raw_fdatasync(r->fd);
        pthread_mutex_lock(&r->mu);
        if (rc != 0) { r->err = rc; pthread_cond_broadcast(&r->durable_cv); break; }
        r->durable = covered;
        pthread_cond_broadcast(&r->durable_cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* interval: fdatasync every interval_ms until stopped. */
static void *raw_interval_flusher(void *arg)
{
    raw_engine_t *r = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        next.tv_nsec += (long)(r->interval_ms % 1000) * 1000000L;
        next.tv_sec += r->interval_ms / 1000 + next.tv_nsec / 1000000000L;
        next.tv_nsec %= 1000000000L;
        while (!r->stop && pthread_cond_timedwait(&r->work, &r->mu, &next) != ETIMEDOUT) {}
        if (r->stop) break;
        pthread_mutex_unlock(&r->mu);
        int rc = raw_fdatasync(r->fd);
        pthread_mutex_lock(&r->mu);
        if (rc != 0) { r->err = rc; break; }
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Create and preallocate DIR/raw.dat (not timed) and start the flusher. */
static int raw_open(raw_engine_t *r, const append_cfg_t *cfg, const char *dir, uint64_t total)
{
    char path[PATH_MAX];
    memset(r, 0, sizeof *r);
    r->base.name = "raw";
    r->base.append = raw_append;
    r->base.wait = raw_wait;
    r->mode = cfg->lopts.fsync;
    r->interval_ms = cfg->lopts.fsync_interval_ms ? cfg->lopts.fsync_interval_ms : 1;
    r->fd = -1;
    if (snprintf(path, sizeof path, "%s/raw.dat", dir) >= (int)sizeof path) return -ENAMETOOLONG;
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->fd < 0) return bench_fail(CMD, -errno, "%s: %s", path, strerror(errno));
    int rc = posix_fallocate(r->fd, 0, (off_t)total);
    if (rc != 0) { rc = bench_fail(CMD, -rc, "preallocating %s: %s", path, strerror(rc)); goto fail_fd; }
    if ((rc = raw_fdatasync(r->fd)) != 0) { rc = bench_fail(CMD, rc, "fdatasync %s: %s", path, rn_strerror(rc)); goto fail_fd; }
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&r->durable_cv, NULL);
    void *(*fn)(void *) = r->mode == RN_FSYNC_GROUP ? raw_group_flusher
                        : r->mode == RN_FSYNC_INTERVAL ? raw_interval_flusher : NULL;
    if (fn) {
        if ((rc = pthread_create(&r->flusher, NULL, fn, r)) != 0) {
            rc = bench_fail(CMD, -rc, "starting the raw flusher: %s", strerror(rc));
            goto fail_sync;
        }
        r->flusher_started = 1;
    }
    return 0;
fail_sync:
    pthread_cond_destroy(&r->durable_cv);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->mu);
fail_fd:
    close(r->fd);
    r->fd = -1;
    return rc;
}

static void raw_close(raw_engine_t *r)
{
    if (r->fd < 0) return;
    if (r->flusher_started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_broadcast(&r->work);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->flusher, NULL);
    }
    pthread_cond_destroy(&r->durable_cv);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->mu);
    close(r->fd);
    r->fd = -1;
}

/* ---- The harness: appender (calling thread) + acker thread ------------ */

typedef struct harness {
    engine_t        *e;
    const batches_t *bs;
    uint64_t         cap;            /* in-flight bytes */
    uint64_t        *ticket, *t_start, *t_ack;
    pthread_mutex_t  mu;
    pthread_cond_t   appended_cv, acked_cv;
    size_t           appended, acked;
    uint64_t         appended_bytes, acked_bytes;
    int              stop;           /* the appender failed */
    int              ack_err;
    char             ack_errmsg[RN_ERRMSG_SIZE];
} harness_t;

static void *acker_main(void *arg)
{
    harness_t *h = arg;
    for (size_t i = 0; i < h->bs->n; i++) {
        pthread_mutex_lock(&h->mu);
        while (h->appended <= i && !h->stop) pthread_cond_wait(&h->appended_cv, &h->mu);
        int ready = h->appended > i;
        uint64_t ticket = h->ticket[i];
        pthread_mutex_unlock(&h->mu);
        if (!ready) break;
        int rc = h->e->wait(h->e, ticket);
        h->t_ack[i] = rn_mono_ns();
        pthread_mutex_lock(&h->mu);
        if (rc != 0) {
            h->ack_err = rc;
            snprintf(h->ack_errmsg, sizeof h->ack_errmsg, "wait for batch %zu: %s", i, rn_strerror(rc));
        } else {
            h->acked = i + 1;
            h->acked_bytes += batch_len(h->bs, i);
        }
        pthread_cond_signal(&h->acked_cv);
        pthread_mutex_unlock(&h->mu);
        if (rc != 0) break;
    }
    return NULL;
}

typedef struct run_result {
    uint64_t elapsed_ns;     /* first append to last ack */
    uint64_t cpu_ns;         /* user + system CPU of the whole process (every
                                thread, the store's own included) meanwhile */
} run_result_t;

static uint64_t cpu_now_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* One timed run: lat[i] = ack latency of batch i (ns). */
static int harness_run(engine_t *e, const batches_t *bs, uint64_t cap, uint64_t *lat,
                       run_result_t *res)
{
    harness_t h;
    memset(&h, 0, sizeof h);
    h.e = e;
    h.bs = bs;
    h.cap = cap;
    int rc = -ENOMEM;
    h.ticket = malloc(bs->n * sizeof *h.ticket);
    h.t_start = malloc(bs->n * sizeof *h.t_start);
    h.t_ack = malloc(bs->n * sizeof *h.t_ack);
    if (!h.ticket || !h.t_start || !h.t_ack) { bench_fail(CMD, rc, "out of memory"); goto out_mem; }
    /* Fault the per-batch arrays in now, not inside the timed window. */
    memset(h.ticket, 0xff, bs->n * sizeof *h.ticket);
    memset(h.t_start, 0xff, bs->n * sizeof *h.t_start);
    memset(h.t_ack, 0xff, bs->n * sizeof *h.t_ack);
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.appended_cv, NULL);
    pthread_cond_init(&h.acked_cv, NULL);

    pthread_t acker;
    if ((rc = pthread_create(&acker, NULL, acker_main, &h)) != 0) {
        rc = bench_fail(CMD, -rc, "starting the acker: %s", strerror(rc));
        goto out_sync;
    }
    char errmsg[RN_ERRMSG_SIZE] = "";
    int append_rc = 0;
    uint64_t cpu0 = cpu_now_ns();
    pthread_mutex_lock(&h.mu);
    for (size_t i = 0; i < bs->n && !h.ack_err; i++) {
        size_t len = batch_len(bs, i);
        while (!h.ack_err && h.appended > h.acked &&
               h.appended_bytes - h.acked_bytes + len > h.cap)
            pthread_cond_wait(&h.acked_cv, &h.mu);
        if (h.ack_err) break;
        pthread_mutex_unlock(&h.mu);
        uint64_t ticket;
        h.t_start[i] = rn_mono_ns();
        append_rc = e->append(e, batch_ptr(bs, i), len, &ticket, errmsg);
        pthread_mutex_lock(&h.mu);
        if (append_rc != 0) break;
        h.ticket[i] = ticket;
        h.appended = i + 1;
        h.appended_bytes += len;
        pthread_cond_signal(&h.appended_cv);
    }
    h.stop = 1;
    pthread_cond_signal(&h.appended_cv);
    pthread_mutex_unlock(&h.mu);
    pthread_join(acker, NULL);
    uint64_t cpu = cpu_now_ns() - cpu0;

    if (append_rc != 0) {
        rc = bench_fail(CMD, append_rc, "%s append: %s", e->name, errmsg[0] ? errmsg : rn_strerror(append_rc));
    } else if (h.ack_err) {
        rc = bench_fail(CMD, h.ack_err, "%s %s", e->name, h.ack_errmsg);
    } else {
        for (size_t i = 0; i < bs->n; i++) lat[i] = h.t_ack[i] - h.t_start[i];
        res->elapsed_ns = h.t_ack[bs->n - 1] - h.t_start[0];
        res->cpu_ns = cpu;
        rc = 0;
    }
out_sync:
    pthread_cond_destroy(&h.acked_cv);
    pthread_cond_destroy(&h.appended_cv);
    pthread_mutex_destroy(&h.mu);
out_mem:
    free(h.t_ack);
    free(h.t_start);
    free(h.ticket);
    return rc;
}

/* ---- One run of each engine, in a fresh directory --------------------- */

static int run_raw(const append_cfg_t *cfg, const batches_t *bs, const char *dir,
                   uint64_t *lat, run_result_t *res)
{
    raw_engine_t r;
    int rc = raw_open(&r, cfg, dir, bs->bytes.len);
    if (rc != 0) return rc;
    if ((rc = bench_settle_fs(dir)) != 0) {
        rc = bench_fail(CMD, rc, "syncfs: %s", rn_strerror(rc));
        goto out;
    }
    rc = harness_run(&r.base, bs, cfg->inflight, lat, res);
out:
    raw_close(&r);
    return rc;
}

static int run_runnel(const append_cfg_t *cfg, const batches_t *bs, const char *dir,
                      uint64_t *lat, run_result_t *res)
{
    char errmsg[RN_ERRMSG_SIZE] = "";
    runnel_engine_t r = {.base = {.name = "runnel", .append = runnel_append, .wait = runnel_wait}};
    int rc = rn_log_open(dir, &cfg->lopts, &r.log, errmsg);
    if (rc != 0) return bench_fail(CMD, rc, "rn_log_open %s: %s", dir, errmsg[0] ? errmsg : rn_strerror(rc));
    if ((rc = bench_settle_fs(dir)) != 0) {
        rc = bench_fail(CMD, rc, "syncfs: %s", rn_strerror(rc));
        goto out;
    }
    if ((rc = harness_run(&r.base, bs, cfg->inflight, lat, res)) != 0) goto out;
    rn_log_queue_info_t qi;
    if ((rc = rn_log_queue_info(r.log, 0, &qi)) != 0) {
        rc = bench_fail(CMD, rc, "rn_log_queue_info: %s", rn_strerror(rc));
        goto out;
    }
    if (qi.high_watermark != (int64_t)bs->records || qi.batches != bs->n) {
        rc = bench_fail(CMD, RN_ECORRUPT,
                        "after the run the queue holds %lld records in %llu batches, expected %llu in %zu",
                        (long long)qi.high_watermark, (unsigned long long)qi.batches,
                        (unsigned long long)bs->records, bs->n);
        goto out;
    }
out:;
    int crc = rn_log_close(r.log);
    if (rc == 0 && crc != 0) rc = bench_fail(CMD, crc, "rn_log_close: %s", rn_strerror(crc));
    return rc;
}

/* ---- Reporting -------------------------------------------------------- */

typedef struct engine_stats {
    double   mb_per_s[64];       /* per round */
    double   rec_per_s[64];
    double   cpu_ms[64];
    uint64_t *lat;               /* pooled over rounds, ns */
    size_t   nlat;
} engine_stats_t;

static void stats_add(engine_stats_t *s, size_t round, const batches_t *bs, const run_result_t *res)
{
    uint64_t elapsed = res->elapsed_ns;
    s->cpu_ms[round] = (double)res->cpu_ns / 1e6;
    s->mb_per_s[round] = bench_mb_per_s(bs->bytes.len, elapsed);
    s->rec_per_s[round] = elapsed ? (double)bs->records / ((double)elapsed / 1e9) : 0.0;
    s->nlat += bs->n;
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static int report(const append_cfg_t *cfg, const batches_t *bs, engine_stats_t *st)
{
    size_t rounds = (size_t)cfg->rounds;
    engine_stats_t *rn = &st[0], *raw = &st[1];
    bench_sort_u64(rn->lat, rn->nlat);
    bench_sort_u64(raw->lat, raw->nlat);
    double rn_mb = bench_median(rn->mb_per_s, rounds), raw_mb = bench_median(raw->mb_per_s, rounds);
    double rn_rec = bench_median(rn->rec_per_s, rounds), raw_rec = bench_median(raw->rec_per_s, rounds);
    double ratio = raw_mb > 0 ? rn_mb / raw_mb : NAN;

    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "append");
        bench_json_str(&j, "fsync", cfg->fsync_name);
        bench_json_u64(&j, "records", bs->records);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "batch_bytes", cfg->batch_bytes);
        bench_json_u64(&j, "batches", bs->n);
        bench_json_u64(&j, "bytes", bs->bytes.len);
        bench_json_u64(&j, "inflight", cfg->inflight);
        bench_json_u64(&j, "rounds", cfg->rounds);
        bench_json_u64(&j, "warmup", cfg->warmup);
        bench_json_u64(&j, "segment_bytes", cfg->lopts.segment_bytes);
        bench_json_u64(&j, "group_window_us", cfg->lopts.group_window_us);
        bench_json_f64(&j, "records_per_s", rn_rec);
        bench_json_f64(&j, "mb_per_s", rn_mb);
        bench_json_f64(&j, "p50_us", us(bench_percentile(rn->lat, rn->nlat, 50)));
        bench_json_f64(&j, "p99_us", us(bench_percentile(rn->lat, rn->nlat, 99)));
        bench_json_f64(&j, "max_us", us(bench_percentile(rn->lat, rn->nlat, 100)));
        bench_json_f64(&j, "baseline_records_per_s", raw_rec);
        bench_json_f64(&j, "baseline_mb_per_s", raw_mb);
        bench_json_f64(&j, "baseline_p50_us", us(bench_percentile(raw->lat, raw->nlat, 50)));
        bench_json_f64(&j, "baseline_p99_us", us(bench_percentile(raw->lat, raw->nlat, 99)));
        bench_json_f64(&j, "baseline_max_us", us(bench_percentile(raw->lat, raw->nlat, 100)));
        bench_json_f64(&j, "ratio", ratio);
        bench_json_f64(&j, "cpu_ms", bench_median(rn->cpu_ms, rounds));
        bench_json_f64(&j, "baseline_cpu_ms", bench_median(raw->cpu_ms, rounds));
        bench_json_f64_array(&j, "rounds_mb_per_s", rn->mb_per_s, rounds);
        bench_json_f64_array(&j, "baseline_rounds_mb_per_s", raw->mb_per_s, rounds);
        bench_json_u64(&j, "seed", cfg->seed);
        bench_json_end(&j);
        return 0;
    }

    bench_table_t t;
    bench_table_init(&t, rounds + 7);
    int rc = bench_table_cell(&t, "engine");
    for (size_t r = 0; r < rounds && rc == 0; r++) rc = bench_table_cell(&t, "round %zu MB/s", r + 1);
    if (rc == 0) rc = bench_table_cell(&t, "median MB/s");
    if (rc == 0) rc = bench_table_cell(&t, "records/s");
    if (rc == 0) rc = bench_table_cell(&t, "ack p50 µs");
    if (rc == 0) rc = bench_table_cell(&t, "ack p99 µs");
    if (rc == 0) rc = bench_table_cell(&t, "ack max µs");
    if (rc == 0) rc = bench_table_cell(&t, "CPU ms");
    for (int e = 0; e < 2 && rc == 0; e++) {
        engine_stats_t *s = &st[e];
        double mb = e == 0 ? rn_mb : raw_mb, rec = e == 0 ? rn_rec : raw_rec;
        rc = bench_table_cell(&t, "%s", e == 0 ? "runnel" : "raw write");
        for (size_t r = 0; r < rounds && rc == 0; r++) rc = bench_table_cell(&t, "%.1f", s->mb_per_s[r]);
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", mb);
        if (rc == 0) rc = bench_table_cell(&t, "%.0f", rec);
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", us(bench_percentile(s->lat, s->nlat, 50)));
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", us(bench_percentile(s->lat, s->nlat, 99)));
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", us(bench_percentile(s->lat, s->nlat, 100)));
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", bench_median(s->cpu_ms, rounds));
    }
    if (rc == 0) {
        bench_table_print(&t, stdout);
        printf("ratio runnel/raw (median MB/s): %.3f\n", ratio);
    }
    bench_table_free(&t);
    return rc == 0 ? 0 : bench_fail(CMD, rc, "out of memory");
}

/* ---- The subcommand --------------------------------------------------- */

static int append_parse(int argc, char **argv, void *arg)
{
    append_cfg_t *cfg = arg;
    cfg->records = 2000000;
    cfg->size = 100;
    cfg->batch_bytes = 65536;
    cfg->inflight = 4u << 20;
    cfg->rounds = 3;
    cfg->warmup = 1;
    cfg->group_window_us = UINT64_MAX;
    cfg->seed = 1;
    cfg->fsync = "never";
    const bench_opt_t opts[] = {
        {"--records", BENCH_OPT_U64, &cfg->records, 1, 1000000000ull, "N"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 0, RN_BATCH_MAX_BYTES, "B"},
        {"--batch-bytes", BENCH_OPT_SIZE, &cfg->batch_bytes, RN_BATCH_HEADER_SIZE + 8, RN_BATCH_MAX_BYTES, "K"},
        {"--fsync", BENCH_OPT_STR, &cfg->fsync, 0, 0, "always|group|interval:MS|never"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--inflight", BENCH_OPT_SIZE, &cfg->inflight, 1, UINT64_MAX, "BYTES"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 64, "R"},
        {"--warmup", BENCH_OPT_U64, &cfg->warmup, 0, 8, "W"},
        {"--segment-bytes", BENCH_OPT_SIZE, &cfg->segment_bytes, 1u << 20, 1ull << 40, "BYTES"},
        {"--group-window-us", BENCH_OPT_U64, &cfg->group_window_us, 0, 1000000, "US"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    int rc = bench_parse_flags(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc != 0) return rc;

    char errmsg[RN_ERRMSG_SIZE] = "";
    rn_log_opts_default(&cfg->lopts);
    if (rn_fsync_parse(cfg->fsync, &cfg->lopts, errmsg) != 0)
        return bench_fail(CMD, RN_EINVAL,
                          "bad --fsync '%s': valid values are always, group, interval:MS, never",
                          cfg->fsync);
    if (cfg->lopts.fsync == RN_FSYNC_INTERVAL)
        snprintf(cfg->fsync_name, sizeof cfg->fsync_name, "interval:%u", cfg->lopts.fsync_interval_ms);
    else
        snprintf(cfg->fsync_name, sizeof cfg->fsync_name, "%s", rn_fsync_name(cfg->lopts.fsync));
    if (cfg->segment_bytes) cfg->lopts.segment_bytes = cfg->segment_bytes;
    if (cfg->group_window_us != UINT64_MAX) cfg->lopts.group_window_us = (uint32_t)cfg->group_window_us;
    if (cfg->lopts.max_batch_bytes && cfg->batch_bytes > cfg->lopts.max_batch_bytes)
        cfg->lopts.max_batch_bytes = (uint32_t)cfg->batch_bytes;

    rn_record_t r = {.key_len = -1, .value_len = (int32_t)cfg->size};
    size_t need = rn_batch_bound(rn_batch_record_bound(&r), RN_BATCH_CODEC_NONE);
    if (need > cfg->batch_bytes)
        return bench_fail(CMD, RN_EINVAL,
                          "--size %llu does not fit in --batch-bytes %llu: one record needs a batch of %zu bytes",
                          (unsigned long long)cfg->size, (unsigned long long)cfg->batch_bytes, need);
    return 0;
}

static int append_run(const void *arg)
{
    const append_cfg_t *cfg = arg;
    batches_t bs;
    memset(&bs, 0, sizeof bs);
    engine_stats_t st[2];
    memset(st, 0, sizeof st);
    uint64_t *warm_lat = NULL;
    char top[PATH_MAX], dir[PATH_MAX + 32];
    top[0] = '\0';

    uint64_t t0 = rn_mono_ns();
    int rc = build_batches(cfg, &bs);
    if (rc != 0) goto out;
    uint64_t build_ns = rn_mono_ns() - t0;
    size_t rounds = (size_t)cfg->rounds, warmup = (size_t)cfg->warmup;
    rc = -ENOMEM;
    st[0].lat = malloc(bs.n * rounds * sizeof *st[0].lat);
    st[1].lat = malloc(bs.n * rounds * sizeof *st[1].lat);
    warm_lat = malloc(bs.n * sizeof *warm_lat);
    if (!st[0].lat || !st[1].lat || !warm_lat) { bench_fail(CMD, rc, "out of memory"); goto out; }
    if ((rc = bench_mkdtemp(cfg->dir, top, sizeof top)) != 0) {
        top[0] = '\0';
        rc = bench_fail(CMD, rc, "creating a directory under %s: %s",
                        cfg->dir ? cfg->dir : "/var/tmp", rn_strerror(rc));
        goto out;
    }

    bench_note(cfg->json, "append: %llu records of %llu-byte values in %zu batches of <= %llu bytes "
               "(%.1f MB of batch bytes, built before timing in %.2f s), fsync %s, in-flight cap %llu bytes",
               (unsigned long long)bs.records, (unsigned long long)cfg->size, bs.n,
               (unsigned long long)cfg->batch_bytes, (double)bs.bytes.len / 1e6, (double)build_ns / 1e9,
               cfg->fsync_name, (unsigned long long)cfg->inflight);
    bench_note(cfg->json, "runnel store: default options but fsync %s; segments of %llu bytes, "
               "group window %u us", cfg->fsync_name, (unsigned long long)cfg->lopts.segment_bytes,
               cfg->lopts.group_window_us);
    bench_note(cfg->json, "dir %s; %zu warm-up round(s), then %zu interleaved rounds of raw and runnel; "
               "timed: first append to last ack; MB = 10^6 bytes of batches", top, warmup, rounds);

    for (size_t r = 0; r < warmup + rounds; r++) {
        int warm = r < warmup;
        size_t round = warm ? r : r - warmup;
        for (int k = 0; k < 2; k++) {
            /* 1 = raw, 0 = runnel: raw first in odd rounds, runnel first in even. */
            int which = (round % 2 == 0) == (k == 0);
            snprintf(dir, sizeof dir, "%s/%s-%s%zu", top, which ? "raw" : "runnel",
                     warm ? "warmup-" : "", round + 1);
            if (mkdir(dir, 0755) < 0) {
                rc = bench_fail(CMD, -errno, "mkdir %s: %s", dir, strerror(errno));
                goto out;
            }
            run_result_t res = {0, 0};
            engine_stats_t *s = &st[which];
            uint64_t *lat = warm ? warm_lat : s->lat + s->nlat;
            rc = which ? run_raw(cfg, &bs, dir, lat, &res)
                       : run_runnel(cfg, &bs, dir, lat, &res);
            int rm = bench_rmtree(dir);
            if (rc != 0) goto out;
            if (rm != 0) { rc = bench_fail(CMD, rm, "removing %s: %s", dir, rn_strerror(rm)); goto out; }
            if (warm) {
                bench_note(cfg->json, "  warm-up %-6s %8.1f MB/s  (not counted)", which ? "raw" : "runnel",
                           bench_mb_per_s(bs.bytes.len, res.elapsed_ns));
                continue;
            }
            stats_add(s, round, &bs, &res);
            bench_note(cfg->json, "  round %zu %-6s %8.1f MB/s  %10.0f records/s  %8.1f CPU ms",
                       round + 1, which ? "raw" : "runnel", s->mb_per_s[round], s->rec_per_s[round],
                       s->cpu_ms[round]);
        }
    }
    rc = report(cfg, &bs, st);
out:
    if (top[0]) {
        int rm = bench_rmtree(top);
        if (rm != 0 && rc == 0) rc = bench_fail(CMD, rm, "removing %s: %s", top, rn_strerror(rm));
    }
    free(warm_lat);
    free(st[0].lat);
    free(st[1].lat);
    batches_free(&bs);
    return rc;
}

const bench_cmd_t bench_cmd_append = {
    .name = "append",
    .usage = "--records N --size B --batch-bytes K --fsync always|group|interval:MS|never "
             "[--dir DIR] [--inflight BYTES] [--rounds R] [--warmup W] [--segment-bytes BYTES] "
             "[--group-window-us US] [--seed S] [--json]",
    .cfg_size = sizeof(append_cfg_t),
    .parse = append_parse,
    .run = append_run,
};

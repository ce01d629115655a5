/*
 * bench_peers.c — the figures the issue-8 suite (bench/suite.sh) needs beside
 * `append`, `lookup`, `produce`, `consume`, `e2e` and `sql`:
 *
 *   memcpy      memory bandwidth: memcpy of a --mb MiB buffer (both buffers
 *               faulted in before timing), median GB/s over --rounds. The
 *               ceiling of every in-memory path below.
 *   read        runnel embedded read: N records of B-byte values in batches
 *               of <= K bytes appended to queue 0 (fsync never, untimed), the
 *               store closed, the filesystem synced, the store reopened; then
 *               queue 0 is read start to end with rn_log_read (1 MiB per
 *               call), every batch CRC-checked (rn_batch_validate) and every
 *               record decoded (rn_batch_iter), its value bytes summed.
 *   sqlite-log  SQLite used as a log, the peer of `append` and `read`: table
 *               log(id INTEGER PRIMARY KEY, ts INTEGER, value BLOB), WAL,
 *               synchronous=NORMAL (no fsync per commit, as runnel's fsync
 *               never/interval), INSERTs of the same records in transactions
 *               of --txn rows (prepared statement); then read back by rowid
 *               ranges of --txn rows (SELECT ts, value ... WHERE id >= ? AND
 *               id < ?), each value's bytes summed.
 *   queues      embedded append spread over Q queues: the same batches as
 *               `append` (<= K bytes), batch i to queue i % Q, fsync never;
 *               timed from the first append to the last ack. Index files are
 *               sized --index-units units (a store with many queues would be
 *               configured so; the default 65536 x 48 B is 3 MiB per queue).
 *               Two figures: the first pass creates the queues as it meets
 *               them (queues), then the same batches are appended again to
 *               the queues that now exist (queues_warm).
 *   recover     restart after an unclean stop: for each size in --sizes
 *               (MiB), a child process appends batches (fsync --fsync, default
 *               group, the broker's default) until the commit log holds that
 *               many bytes, then keeps appending while the parent SIGKILLs
 *               it; the parent then times rn_log_open on the directory (what
 *               a restarted broker does) and reports the store's own recovery
 *               figures (bytes scanned, index units rebuilt).
 *
 * How it stays fair.
 *  1. The same records everywhere: values from bench_fill_value with the
 *     same seed, in the same order, timestamps ts0 + k/1000 — the same
 *     generator `append` and bench_redis.c use.
 *  2. Encoding is untimed on both sides: runnel's batches are built before
 *     timing (as in `append`); SQLite's statement is prepared before timing
 *     and binds the prebuilt values (binding is its per-row API, so timed).
 *  3. Each round writes a fresh directory, removed after it; the filesystem
 *     is settled (syncfs) before every timed phase; one untimed read pass
 *     warms the page cache for both engines' reads; medians over --rounds.
 *  4. Reads check the count of records read (runnel also every batch CRC):
 *     a read that returns fewer records than were written fails the run.
 */
#include "bench/bench.h"
#include "batch/batch.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct peers_cfg {
    const char *cmd;
    uint64_t    records, size, batch_bytes, rounds, queues, seed, txn, mb, index_units;
    const char *dir, *sizes, *fsync;
    int         json;
} peers_cfg_t;

/* ---- Records and batches, built before timing ------------------------------- */

typedef struct recs {
    uint8_t  *values;            /* records x size, record k at k * size */
    uint64_t  n, size;
    int64_t   ts0;
    rn_buf_t  batches;           /* back to back */
    size_t   *off;               /* batch i = batches[off[i] .. off[i+1]) */
    size_t    nb;
} recs_t;

static void recs_free(recs_t *r)
{
    free(r->values);
    rn_buf_free(&r->batches);
    free(r->off);
    memset(r, 0, sizeof *r);
}

static int64_t rec_ts(const recs_t *r, uint64_t k) { return r->ts0 + (int64_t)(k / 1000); }

static int push_batch(recs_t *r, rn_batch_builder_t *b, size_t *cap)
{
    const uint8_t *p;
    size_t len;
    int rc = rn_batch_builder_finish(b, &p, &len);
    if (rc != 0) return rc;
    if (r->nb + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        size_t *o = realloc(r->off, nc * sizeof *o);
        if (!o) return -ENOMEM;
        r->off = o;
        *cap = nc;
    }
    if ((rc = rn_buf_append(&r->batches, p, len, 0)) != 0) return rc;
    r->off[r->nb] = r->batches.len - len;
    r->off[++r->nb] = r->batches.len;
    rn_batch_builder_reset(b);
    return 0;
}

/* The values (always) and, when batch_bytes > 0, runnel batches of them. */
static int recs_build(const peers_cfg_t *cfg, uint64_t batch_bytes, recs_t *r)
{
    memset(r, 0, sizeof *r);
    r->n = cfg->records;
    r->size = cfg->size;
    r->ts0 = rn_sys.now_ms();
    r->values = malloc(r->n * r->size + 1);
    if (!r->values) return bench_fail(cfg->cmd, -ENOMEM, "out of memory for %llu values",
                                      (unsigned long long)r->n);
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    for (uint64_t k = 0; k < r->n; k++) bench_fill_value(&rng, r->values + k * r->size, r->size);
    if (!batch_bytes) return 0;

    rn_batch_builder_t b;
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    o.max_bytes = (uint32_t)batch_bytes;
    int rc = rn_batch_builder_init(&b, &o);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "rn_batch_builder_init: %s", rn_strerror(rc));
    size_t cap = 0;
    rc = rn_buf_reserve(&r->batches, r->n * (r->size + 12), 0);
    for (uint64_t k = 0; k < r->n && rc == 0; k++) {
        rn_record_t rec = {.timestamp = rec_ts(r, k), .key = NULL, .key_len = -1,
                           .value = r->values + k * r->size, .value_len = (int32_t)r->size};
        rc = rn_batch_builder_add(&b, &rec);
        if (rc == RN_EFULL && (rc = push_batch(r, &b, &cap)) == 0) rc = rn_batch_builder_add(&b, &rec);
    }
    if (rc == 0 && rn_batch_builder_count(&b) > 0) rc = push_batch(r, &b, &cap);
    rn_batch_builder_destroy(&b);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "building batches: %s", rn_strerror(rc));
    return 0;
}

static const uint8_t *batch_at(const recs_t *r, size_t i) { return r->batches.data + r->off[i]; }
static size_t batch_len(const recs_t *r, size_t i) { return r->off[i + 1] - r->off[i]; }

/* ---- Shared pieces ---------------------------------------------------------- */

static double per_s(uint64_t n, uint64_t ns) { return ns ? (double)n / ((double)ns / 1e9) : 0; }

/* A fresh directory TOP/NAME (made), for one round. */
static int round_dir(const peers_cfg_t *cfg, const char *top, const char *name, char *dir, size_t size)
{
    snprintf(dir, size, "%s/%s", top, name);
    if (mkdir(dir, 0755) < 0) return bench_fail(cfg->cmd, -errno, "mkdir %s: %s", dir, strerror(errno));
    return 0;
}

static int log_open(const peers_cfg_t *cfg, const char *dir, rn_fsync_mode_t mode,
                    uint32_t index_units, rn_log_t **log)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_opts_t o;
    rn_log_opts_default(&o);
    o.fsync = mode;
    if (index_units) o.index_file_units = index_units;
    int rc = rn_log_open(dir, &o, log, err);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "rn_log_open %s: %s", dir, err[0] ? err : rn_strerror(rc));
    return 0;
}

/* Append every batch, batch i to queue i % queues; *ns = first append to
 * the ack of the last one (the store acks in ticket order). */
static int append_all(const peers_cfg_t *cfg, rn_log_t *log, const recs_t *r, uint64_t queues,
                      uint64_t *ns)
{
    char err[RN_ERRMSG_SIZE] = "";
    uint64_t ticket = 0, t0 = rn_mono_ns();
    int rc = 0;
    for (size_t i = 0; i < r->nb && rc == 0; i++) {
        int64_t base;
        rc = rn_log_append(log, (uint32_t)(i % queues), batch_at(r, i), batch_len(r, i), &base,
                           &ticket, err);
    }
    if (rc == 0) rc = rn_log_wait(log, ticket);
    *ns = rn_mono_ns() - t0;
    if (rc != 0) return bench_fail(cfg->cmd, rc, "append: %s", err[0] ? err : rn_strerror(rc));
    return 0;
}

static void json_head(bench_json_t *j, const char *name, const peers_cfg_t *cfg, uint64_t records)
{
    bench_json_begin(j, stdout);
    bench_json_str(j, "bench", name);
    bench_json_u64(j, "records", records);
    bench_json_u64(j, "size", cfg->size);
    bench_json_u64(j, "rounds", cfg->rounds);
    bench_json_u64(j, "seed", cfg->seed);
}

/* One result: JSON line, or a line for humans. */
static void report_rate(const peers_cfg_t *cfg, const char *name, const char *what,
                        uint64_t records, const double *rps, size_t rounds)
{
    double med = bench_median(rps, rounds);
    if (cfg->json) {
        bench_json_t j;
        json_head(&j, name, cfg, records);
        if (cfg->batch_bytes) bench_json_u64(&j, "batch_bytes", cfg->batch_bytes);
        if (cfg->queues) bench_json_u64(&j, "queues", cfg->queues);
        if (cfg->txn) bench_json_u64(&j, "txn", cfg->txn);
        bench_json_f64(&j, "records_per_s", med);
        bench_json_f64(&j, "mb_per_s", med * (double)cfg->size / 1e6);
        bench_json_f64_array(&j, "rounds_records_per_s", rps, rounds);
        bench_json_end(&j);
        return;
    }
    printf("%-12s %-44s %12.0f records/s  %8.1f MB/s (median of %zu)\n", name, what, med,
           med * (double)cfg->size / 1e6, rounds);
    fflush(stdout);
}

static int make_top(const peers_cfg_t *cfg, char *top, size_t size)
{
    int rc = bench_mkdtemp(cfg->dir, top, size);
    if (rc != 0) {
        top[0] = '\0';
        return bench_fail(cfg->cmd, rc, "creating a directory under %s: %s",
                          cfg->dir ? cfg->dir : "/var/tmp", rn_strerror(rc));
    }
    return 0;
}

/* ---- memcpy ----------------------------------------------------------------- */

static int memcpy_run(const void *arg)
{
    const peers_cfg_t *cfg = arg;
    size_t n = (size_t)cfg->mb << 20;
    uint8_t *a = malloc(n), *b = malloc(n);
    double gbs[64];
    int rc = 0;
    if (!a || !b) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    memset(a, 0x5a, n);               /* fault both in, untimed */
    memset(b, 0xa5, n);
    memcpy(b, a, n);                  /* warm-up */
    for (size_t r = 0; r < cfg->rounds; r++) {
        uint64_t t0 = rn_mono_ns();
        memcpy(r % 2 ? a : b, r % 2 ? b : a, n);
        uint64_t ns = rn_mono_ns() - t0;
        gbs[r] = bench_mb_per_s(n, ns) / 1000.0;
    }
    double med = bench_median(gbs, cfg->rounds);
    if (a[n / 2] != b[n / 2]) { rc = bench_fail(cfg->cmd, RN_ECORRUPT, "copies differ"); goto out; }
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "memcpy");
        bench_json_u64(&j, "bytes", n);
        bench_json_u64(&j, "rounds", cfg->rounds);
        bench_json_f64(&j, "gb_per_s", med);
        bench_json_f64(&j, "mb_per_s", med * 1000.0);
        bench_json_f64_array(&j, "rounds_gb_per_s", gbs, cfg->rounds);
        bench_json_end(&j);
    } else {
        printf("memcpy of %zu MiB: %.2f GB/s (median of %llu; GB = 10^9 B)\n", n >> 20, med,
               (unsigned long long)cfg->rounds);
    }
out:
    free(a);
    free(b);
    return rc;
}

/* ---- read ------------------------------------------------------------------- */

/* Read queue 0 start to end: CRC-check every batch, decode every record. */
static int read_all(const peers_cfg_t *cfg, rn_log_t *log, rn_buf_t *buf, rn_batch_iter_t *it,
                    uint64_t *records, uint64_t *sum)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_queue_info_t qi;
    int rc = rn_log_queue_info(log, 0, &qi);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "rn_log_queue_info: %s", rn_strerror(rc));
    int64_t off = qi.log_start;
    *records = 0;
    *sum = 0;
    while (off < qi.high_watermark) {
        uint32_t nb = 0;
        buf->len = 0;
        if ((rc = rn_log_read(log, 0, off, 1u << 20, buf, &nb, err)) != 0) goto fail;
        if (nb == 0) { rc = RN_ECORRUPT; snprintf(err, sizeof err, "no batch at %lld", (long long)off); goto fail; }
        size_t pos = 0;
        for (uint32_t b = 0; b < nb; b++) {
            size_t len;
            rn_batch_header_t h;
            rn_record_t rec;
            if ((rc = rn_batch_size(buf->data + pos, buf->len - pos, &len)) != 0) goto fail;
            if ((rc = rn_batch_validate(buf->data + pos, len, &rn_batch_default_limits, 0, &h, err)) != 0 ||
                (rc = rn_batch_iter_reset(it, buf->data + pos, len, err)) != 0)
                goto fail;
            while ((rc = rn_batch_iter_next(it, &rec, err)) == 1) {
                (*records)++;
                if (rec.value_len > 0) *sum += (uint64_t)rec.value_len + rec.value[0];
            }
            if (rc != 0) goto fail;
            off = h.base_offset + h.last_offset_delta + 1;
            pos += len;
        }
    }
    return 0;
fail:
    return bench_fail(cfg->cmd, rc, "reading at offset %lld: %s", (long long)off, err[0] ? err : rn_strerror(rc));
}

static int read_run(const void *arg)
{
    const peers_cfg_t *cfg = arg;
    char top[PATH_MAX] = "", dir[PATH_MAX + 16];
    recs_t r;
    rn_log_t *log = NULL;
    rn_buf_t buf = RN_BUF_INIT;
    rn_batch_iter_t it;
    double rps[64];
    uint64_t ns = 0, n = 0, sum = 0, sum0 = 0;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int rc = recs_build(cfg, cfg->batch_bytes, &r);
    if (rc == 0) rc = make_top(cfg, top, sizeof top);
    if (rc != 0) goto out;
    bench_note(cfg->json, "read: %llu records of %llu B in %zu batches of <= %llu B, in %s",
               (unsigned long long)r.n, (unsigned long long)r.size, r.nb,
               (unsigned long long)cfg->batch_bytes, top);
    if ((rc = round_dir(cfg, top, "log", dir, sizeof dir)) != 0) goto out;
    if ((rc = log_open(cfg, dir, RN_FSYNC_NEVER, 0, &log)) != 0) goto out;
    if ((rc = append_all(cfg, log, &r, 1, &ns)) != 0) goto out;
    rc = rn_log_close(log);
    log = NULL;
    if (rc == 0) rc = bench_settle_fs(dir);
    if (rc != 0) { rc = bench_fail(cfg->cmd, rc, "closing: %s", rn_strerror(rc)); goto out; }
    if ((rc = log_open(cfg, dir, RN_FSYNC_NEVER, 0, &log)) != 0) goto out;
    if ((rc = read_all(cfg, log, &buf, &it, &n, &sum0)) != 0) goto out;      /* warm-up */
    for (size_t k = 0; k < cfg->rounds; k++) {
        uint64_t t0 = rn_mono_ns();
        if ((rc = read_all(cfg, log, &buf, &it, &n, &sum)) != 0) goto out;
        rps[k] = per_s(n, rn_mono_ns() - t0);
        if (n != r.n || sum != sum0) {
            rc = bench_fail(cfg->cmd, RN_ECORRUPT, "read %llu records, wrote %llu",
                            (unsigned long long)n, (unsigned long long)r.n);
            goto out;
        }
    }
    report_rate(cfg, "read", "runnel embedded read (CRC + decode)", r.n, rps, cfg->rounds);
out:
    if (log) rn_log_close(log);
    if (top[0]) bench_rmtree(top);
    rn_batch_iter_destroy(&it);
    rn_buf_free(&buf);
    recs_free(&r);
    return rc;
}

/* ---- sqlite-log ------------------------------------------------------------- */

static int sq_exec(const peers_cfg_t *cfg, sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        bench_fail(cfg->cmd, RN_ESQLITE, "%s: %s", sql, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return RN_ESQLITE;
    }
    return 0;
}

static int sq_insert(const peers_cfg_t *cfg, sqlite3 *db, const recs_t *r, uint64_t *ns)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "INSERT INTO log(ts, value) VALUES (?, ?)", -1, &st, NULL) != SQLITE_OK)
        return bench_fail(cfg->cmd, RN_ESQLITE, "prepare: %s", sqlite3_errmsg(db));
    uint64_t t0 = rn_mono_ns();
    for (uint64_t k = 0; k < r->n && rc == 0; k++) {
        if (k % cfg->txn == 0 && (rc = sq_exec(cfg, db, "BEGIN")) != 0) break;
        sqlite3_bind_int64(st, 1, rec_ts(r, k));
        sqlite3_bind_blob(st, 2, r->values + k * r->size, (int)r->size, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) rc = bench_fail(cfg->cmd, RN_ESQLITE, "insert: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
        if (rc == 0 && (k % cfg->txn == cfg->txn - 1 || k == r->n - 1)) rc = sq_exec(cfg, db, "COMMIT");
    }
    *ns = rn_mono_ns() - t0;
    sqlite3_finalize(st);
    return rc;
}

static int sq_read(const peers_cfg_t *cfg, sqlite3 *db, uint64_t total, uint64_t *n, uint64_t *sum)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, s;
    if (sqlite3_prepare_v2(db, "SELECT ts, value FROM log WHERE id >= ? AND id < ?", -1, &st, NULL) != SQLITE_OK)
        return bench_fail(cfg->cmd, RN_ESQLITE, "prepare: %s", sqlite3_errmsg(db));
    *n = 0;
    *sum = 0;
    for (uint64_t id = 1; id <= total && rc == 0; id += cfg->txn) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)(id + cfg->txn));
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const uint8_t *v = sqlite3_column_blob(st, 1);
            int len = sqlite3_column_bytes(st, 1);
            (void)sqlite3_column_int64(st, 0);
            (*n)++;
            if (len > 0 && v) *sum += (uint64_t)len + v[0];
        }
        if (s != SQLITE_DONE) rc = bench_fail(cfg->cmd, RN_ESQLITE, "select: %s", sqlite3_errmsg(db));
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_run(const void *arg)
{
    const peers_cfg_t *cfg = arg;
    char top[PATH_MAX] = "", dir[PATH_MAX + 16], path[PATH_MAX + 32], name[32];
    recs_t r;
    double ins[64], rd[64];
    uint64_t ns = 0, n = 0, sum = 0;
    int rc = recs_build(cfg, 0, &r);
    if (rc == 0) rc = make_top(cfg, top, sizeof top);
    if (rc != 0) goto out;
    bench_note(cfg->json, "sqlite-log: %llu records of %llu B, WAL, synchronous=NORMAL, %llu rows "
               "per transaction; sqlite %s; in %s", (unsigned long long)r.n,
               (unsigned long long)r.size, (unsigned long long)cfg->txn, sqlite3_libversion(), top);
    for (size_t k = 0; k < cfg->rounds && rc == 0; k++) {
        sqlite3 *db = NULL;
        snprintf(name, sizeof name, "round-%zu", k + 1);
        if ((rc = round_dir(cfg, top, name, dir, sizeof dir)) != 0) break;
        snprintf(path, sizeof path, "%s/log.db", dir);
        if (sqlite3_open(path, &db) != SQLITE_OK) {
            rc = bench_fail(cfg->cmd, RN_ESQLITE, "open %s", path);
        } else if ((rc = sq_exec(cfg, db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                 "CREATE TABLE log(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, "
                                 "value BLOB NOT NULL)")) == 0 &&
                   (rc = bench_settle_fs(dir)) == 0 &&
                   (rc = sq_insert(cfg, db, &r, &ns)) == 0) {
            ins[k] = per_s(r.n, ns);
            bench_settle_fs(dir);
            rc = sq_read(cfg, db, r.n, &n, &sum);                          /* warm-up */
            uint64_t t0 = rn_mono_ns();
            if (rc == 0) rc = sq_read(cfg, db, r.n, &n, &sum);
            rd[k] = per_s(n, rn_mono_ns() - t0);
            if (rc == 0 && n != r.n)
                rc = bench_fail(cfg->cmd, RN_ECORRUPT, "read %llu rows, wrote %llu",
                                (unsigned long long)n, (unsigned long long)r.n);
            if (rc == 0)
                bench_note(cfg->json, "  round %zu: insert %.0f rows/s, read %.0f rows/s", k + 1,
                           ins[k], rd[k]);
        }
        sqlite3_close(db);
        bench_rmtree(dir);
    }
    if (rc != 0) goto out;
    report_rate(cfg, "sqlite_insert", "SQLite WAL, batched INSERT transactions", r.n, ins, cfg->rounds);
    report_rate(cfg, "sqlite_read", "SQLite rowid-range read", r.n, rd, cfg->rounds);
out:
    if (top[0]) bench_rmtree(top);
    recs_free(&r);
    return rc;
}

/* ---- queues ----------------------------------------------------------------- */

static int queues_run(const void *arg)
{
    const peers_cfg_t *cfg = arg;
    char top[PATH_MAX] = "", dir[PATH_MAX + 16], name[32];
    recs_t r;
    double rps[64], warm[64];
    int rc = recs_build(cfg, cfg->batch_bytes, &r);
    if (rc == 0) rc = make_top(cfg, top, sizeof top);
    if (rc != 0) goto out;
    bench_note(cfg->json, "queues: %llu records of %llu B in %zu batches of <= %llu B over %llu "
               "queues (round-robin), fsync never, index files of %llu units, in %s",
               (unsigned long long)r.n, (unsigned long long)r.size, r.nb,
               (unsigned long long)cfg->batch_bytes, (unsigned long long)cfg->queues,
               (unsigned long long)cfg->index_units, top);
    for (size_t k = 0; k < cfg->rounds && rc == 0; k++) {
        rn_log_t *log = NULL;
        uint64_t ns = 0;
        snprintf(name, sizeof name, "round-%zu", k + 1);
        if ((rc = round_dir(cfg, top, name, dir, sizeof dir)) != 0) break;
        if ((rc = log_open(cfg, dir, RN_FSYNC_NEVER, (uint32_t)cfg->index_units, &log)) == 0 &&
            (rc = bench_settle_fs(dir)) == 0 &&
            (rc = append_all(cfg, log, &r, cfg->queues, &ns)) == 0 &&
            (rc = bench_settle_fs(dir)) == 0) {
            rps[k] = per_s(r.n, ns);
            /* The same batches again: every queue now exists. */
            if ((rc = append_all(cfg, log, &r, cfg->queues, &ns)) == 0) warm[k] = per_s(r.n, ns);
        }
        int crc = log ? rn_log_close(log) : 0;
        if (rc == 0 && crc != 0) rc = bench_fail(cfg->cmd, crc, "rn_log_close: %s", rn_strerror(crc));
        bench_rmtree(dir);
    }
    if (rc == 0) {
        report_rate(cfg, "queues", "embedded append over Q queues, creating them", r.n, rps, cfg->rounds);
        report_rate(cfg, "queues_warm", "the same batches again, queues existing", r.n, warm, cfg->rounds);
    }
out:
    if (top[0]) bench_rmtree(top);
    recs_free(&r);
    return rc;
}

/* ---- recover ---------------------------------------------------------------- */

/* The child: append batches round and round (bounded: 4x the target) and
 * write one byte to fd once the commit log holds target bytes. Never closes
 * the store: the parent kills it. */
static void recover_child(const peers_cfg_t *cfg, const char *dir, const recs_t *r,
                          rn_fsync_mode_t mode, uint64_t target, int fd)
{
    rn_log_t *log = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    if (log_open(cfg, dir, mode, 0, &log) != 0) _exit(3);
    uint64_t bytes = 0, ticket;
    int told = 0;
    for (uint64_t i = 0; bytes < 4 * target; i++) {
        int64_t base;
        size_t b = i % r->nb;
        if (rn_log_append(log, 0, batch_at(r, b), batch_len(r, b), &base, &ticket, err) != 0) _exit(4);
        bytes += batch_len(r, b);
        if (!told && bytes >= target) {
            told = 1;
            if (write(fd, "x", 1) != 1) _exit(5);
        }
    }
    _exit(6);          /* not reached in a normal run: the parent kills first */
}

typedef struct recover_res {
    uint64_t open_ns, records;
    rn_log_recovery_t info;
} recover_res_t;

static int recover_one(const peers_cfg_t *cfg, const char *dir, const recs_t *r, rn_fsync_mode_t mode,
                       uint64_t target, recover_res_t *res)
{
    int p[2];
    if (pipe(p) < 0) return bench_fail(cfg->cmd, -errno, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return bench_fail(cfg->cmd, -errno, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(p[0]);
        recover_child(cfg, dir, r, mode, target, p[1]);
    }
    close(p[1]);
    struct pollfd pf = {.fd = p[0], .events = POLLIN};
    int ready = poll(&pf, 1, 600 * 1000);                 /* bounded: 10 minutes */
    char c;
    int got = ready == 1 && read(p[0], &c, 1) == 1;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(p[0]);
    if (!got)
        return bench_fail(cfg->cmd, -EIO, "the writer did not reach %llu bytes (status %d)",
                          (unsigned long long)target, status);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        return bench_fail(cfg->cmd, -EIO, "the writer ended before SIGKILL (status %d)", status);

    rn_log_t *log = NULL;
    uint64_t t0 = rn_mono_ns();
    int rc = log_open(cfg, dir, mode, 0, &log);
    res->open_ns = rn_mono_ns() - t0;
    if (rc != 0) return rc;
    rn_log_recovery_info(log, &res->info);
    rn_log_queue_info_t qi;
    rc = rn_log_queue_info(log, 0, &qi);
    res->records = rc == 0 ? (uint64_t)qi.high_watermark : 0;
    int crc = rn_log_close(log);
    if (rc == 0) rc = crc;
    if (rc != 0) return bench_fail(cfg->cmd, rc, "after recovery: %s", rn_strerror(rc));
    return 0;
}

static int recover_run(const void *arg)
{
    const peers_cfg_t *cfg = arg;
    char top[PATH_MAX] = "", dir[PATH_MAX + 16], name[32], err[RN_ERRMSG_SIZE] = "";
    recs_t r;
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    if (rn_fsync_parse(cfg->fsync, &lo, err) != 0)
        return bench_fail(cfg->cmd, RN_EINVAL, "bad --fsync '%s': always, group, interval:MS or never", cfg->fsync);
    int rc = recs_build(cfg, cfg->batch_bytes, &r);
    if (rc == 0) rc = make_top(cfg, top, sizeof top);
    if (rc != 0) goto out;
    bench_note(cfg->json, "recover: a child appends batches of <= %llu B (fsync %s) and is "
               "SIGKILLed once the log holds each size; then rn_log_open is timed; in %s",
               (unsigned long long)cfg->batch_bytes, cfg->fsync, top);
    const char *s = cfg->sizes;
    for (int i = 0; *s && i < 32 && rc == 0; i++) {
        char *end;
        unsigned long long mib = strtoull(s, &end, 10);
        if (end == s || mib == 0 || (*end && *end != ',')) {
            rc = bench_fail(cfg->cmd, RN_EINVAL, "bad --sizes '%s': MiB, comma-separated", cfg->sizes);
            break;
        }
        s = *end ? end + 1 : end;
        snprintf(name, sizeof name, "log-%llu", mib);
        if ((rc = round_dir(cfg, top, name, dir, sizeof dir)) != 0) break;
        recover_res_t res;
        memset(&res, 0, sizeof res);
        rc = recover_one(cfg, dir, &r, lo.fsync, (uint64_t)mib << 20, &res);
        bench_rmtree(dir);
        if (rc != 0) break;
        if (cfg->json) {
            bench_json_t j;
            bench_json_begin(&j, stdout);
            bench_json_str(&j, "bench", "recover");
            bench_json_str(&j, "fsync", cfg->fsync);
            bench_json_u64(&j, "log_mib", mib);
            bench_json_u64(&j, "records", res.records);
            bench_json_u64(&j, "clean", (uint64_t)res.info.clean);
            bench_json_u64(&j, "scanned_bytes", res.info.scanned_bytes);
            bench_json_u64(&j, "truncated_bytes", res.info.truncated_bytes);
            bench_json_u64(&j, "rebuilt_units", res.info.rebuilt_units);
            bench_json_f64(&j, "open_ms", (double)res.open_ns / 1e6);
            bench_json_end(&j);
        } else {
            printf("recover %6llu MiB: open %.1f ms (clean %d, scanned %.1f MB, truncated %llu B, "
                   "rebuilt %u units, %llu records visible)\n", mib, (double)res.open_ns / 1e6,
                   res.info.clean, (double)res.info.scanned_bytes / 1e6,
                   (unsigned long long)res.info.truncated_bytes, res.info.rebuilt_units,
                   (unsigned long long)res.records);
            fflush(stdout);
        }
    }
out:
    if (top[0]) bench_rmtree(top);
    recs_free(&r);
    return rc;
}

/* ---- Flags ------------------------------------------------------------------ */

static int peers_parse(const char *cmd, int argc, char **argv, void *arg)
{
    peers_cfg_t *cfg = arg;
    cfg->cmd = cmd;
    cfg->records = !strcmp(cmd, "recover") ? 100000 : 2000000;
    cfg->size = 100;
    cfg->batch_bytes = 65536;
    cfg->rounds = 3;
    cfg->seed = 1;
    cfg->mb = 256;
    cfg->sizes = "256,1024";
    cfg->fsync = "group";
    if (!strcmp(cmd, "queues")) { cfg->queues = 1; cfg->index_units = 1024; }
    if (!strcmp(cmd, "sqlite-log")) { cfg->txn = 1000; cfg->batch_bytes = 0; }
    bench_opt_t all[] = {
        {"--records", BENCH_OPT_U64, &cfg->records, 1000, 100000000ull, "N"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 1, 1u << 20, "B"},
        {"--batch-bytes", BENCH_OPT_SIZE, &cfg->batch_bytes, 1024, RN_BATCH_MAX_BYTES, "K"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 64, "R"},
        {"--queues", BENCH_OPT_U64, &cfg->queues, 1, 100000, "Q"},
        {"--index-units", BENCH_OPT_U64, &cfg->index_units, 64, 1u << 20, "U"},
        {"--txn", BENCH_OPT_U64, &cfg->txn, 1, 1000000, "ROWS"},
        {"--mb", BENCH_OPT_U64, &cfg->mb, 1, 4096, "MIB"},
        {"--sizes", BENCH_OPT_STR, &cfg->sizes, 0, 0, "MIB,MIB,..."},
        {"--fsync", BENCH_OPT_STR, &cfg->fsync, 0, 0, "always|group|interval:MS|never"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    /* Each command takes the flags named in its usage line only. */
    const char *want = !strcmp(cmd, "memcpy") ? "--mb --rounds --json"
                     : !strcmp(cmd, "sqlite-log") ? "--records --size --txn --rounds --dir --seed --json"
                     : !strcmp(cmd, "queues") ? "--records --size --batch-bytes --queues --index-units --rounds --dir --seed --json"
                     : !strcmp(cmd, "recover") ? "--records --size --batch-bytes --sizes --fsync --dir --seed --json"
                     : "--records --size --batch-bytes --rounds --dir --seed --json";
    bench_opt_t opts[sizeof all / sizeof all[0]];
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *p = strstr(want, all[i].name);
        size_t l = strlen(all[i].name);
        if (p && (p[l] == ' ' || p[l] == '\0')) opts[n++] = all[i];
    }
    int rc = bench_parse_flags(cmd, argc, argv, opts, n);
    if (rc != 0) return rc;
    if (cfg->batch_bytes && cfg->size + 100 > cfg->batch_bytes)
        return bench_fail(cmd, RN_EINVAL, "--size %llu does not fit in --batch-bytes %llu",
                          (unsigned long long)cfg->size, (unsigned long long)cfg->batch_bytes);
    return 0;
}

static int memcpy_parse(int argc, char **argv, void *cfg) { return peers_parse("memcpy", argc, argv, cfg); }
static int read_parse(int argc, char **argv, void *cfg) { return peers_parse("read", argc, argv, cfg); }
static int sqlite_parse(int argc, char **argv, void *cfg) { return peers_parse("sqlite-log", argc, argv, cfg); }
static int queues_parse(int argc, char **argv, void *cfg) { return peers_parse("queues", argc, argv, cfg); }
static int recover_parse(int argc, char **argv, void *cfg) { return peers_parse("recover", argc, argv, cfg); }

const bench_cmd_t bench_cmd_memcpy = {
    "memcpy", "[--mb MIB] [--rounds R] [--json]  (memory bandwidth)",
    sizeof(peers_cfg_t), memcpy_parse, memcpy_run,
};
const bench_cmd_t bench_cmd_read = {
    "read", "[--records N] [--size B] [--batch-bytes K] [--rounds R] [--dir DIR] [--seed S] [--json]"
    "  (embedded read, CRC + decode)",
    sizeof(peers_cfg_t), read_parse, read_run,
};
const bench_cmd_t bench_cmd_sqlite_log = {
    "sqlite-log", "[--records N] [--size B] [--txn ROWS] [--rounds R] [--dir DIR] [--seed S] [--json]"
    "  (SQLite WAL as a log: insert, rowid-range read)",
    sizeof(peers_cfg_t), sqlite_parse, sqlite_run,
};
const bench_cmd_t bench_cmd_queues = {
    "queues", "[--records N] [--size B] [--batch-bytes K] [--queues Q] [--index-units U] [--rounds R] "
    "[--dir DIR] [--seed S] [--json]  (embedded append over Q queues)",
    sizeof(peers_cfg_t), queues_parse, queues_run,
};
const bench_cmd_t bench_cmd_recover = {
    "recover", "[--sizes MIB,MIB,...] [--fsync MODE] [--records N] [--size B] [--batch-bytes K] "
    "[--dir DIR] [--seed S] [--json]  (reopen after SIGKILL, by log size)",
    sizeof(peers_cfg_t), recover_parse, recover_run,
};

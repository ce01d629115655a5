/*
 * test_log.c — the storage engine's API: append/read round trips, lookups,
 * watermarks, fsync policies, fault injection, retention, concurrency.
 * Recovery from torn states lives in test_log_recovery.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "batch/crc32c.h"
#include "log/index.h"
#include "log/log.h"
#include "log/segment.h"
#include "tests/util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------- */

static void small_opts(rn_log_opts_t *o, rn_fsync_mode_t mode)
{
    rn_log_opts_default(o);
    o->fsync = mode;
    o->segment_bytes = 8192;
    o->index_file_units = 4;
    o->max_batch_bytes = 4096;
    o->group_window_us = 200;
}

static rn_log_t *open_ok(const char *dir, const rn_log_opts_t *o)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, o, &log, err);
    if (rc != 0) fail_msg("open %s: %s (%s)", dir, rn_strerror(rc), err);
    return log;
}

/* A batch of n records for queue q whose first record will get offset first;
 * record k has value "q<q>-o<first+k>" and timestamp ts[k] (or ts0 + k). */
typedef struct tbatch {
    uint8_t *data;
    size_t len;
} tbatch_t;

static tbatch_t make_batch(uint32_t q, int64_t first, int n, const int64_t *ts, int64_t ts0,
                           size_t pad)
{
    char prefix[24];
    snprintf(prefix, sizeof prefix, "q%u-o", q);
    rn_test_records_t spec = {.prefix = prefix, .suffix = "-", .first = first, .n = n, .ts = ts,
                              .ts0 = ts0, .ts_step = 1, .pad = pad};
    rn_batch_builder_t b;
    const uint8_t *out;
    size_t len;
    rn_test_batch_build(&b, &spec, &out, &len);
    tbatch_t t = {malloc(len), len};
    memcpy(t.data, out, len);
    rn_batch_builder_destroy(&b);
    return t;
}

static int64_t append_ok(rn_log_t *log, uint32_t q, int64_t expect, int n, int64_t ts0)
{
    char err[RN_ERRMSG_SIZE] = "";
    tbatch_t t = make_batch(q, expect, n, NULL, ts0, 40);
    uint8_t *copy = malloc(t.len);
    memcpy(copy, t.data, t.len);
    int64_t base = -1;
    uint64_t ticket = 0;
    int rc = rn_log_append(log, q, t.data, t.len, &base, &ticket, err);
    if (rc != 0) fail_msg("append q%u: %s (%s)", q, rn_strerror(rc), err);
    assert_int_equal(base, expect);
    assert_memory_equal(copy, t.data, t.len);        /* caller buffer untouched */
    assert_int_equal(rn_log_wait(log, ticket), 0);
    free(copy);
    free(t.data);
    return base + n;
}

/* Read queue q from `from` to its high watermark in chunks of max_bytes and
 * check every record: dense offsets, each value naming its queue and offset.
 * Returns the offset reached. */
static int64_t check_queue(rn_log_t *log, uint32_t q, int64_t from, size_t max_bytes)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
    int64_t next = from;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    while (next < qi.high_watermark) {
        rn_buf_t out = RN_BUF_INIT;
        uint32_t nb = 0;
        int rc = rn_log_read(log, q, next, max_bytes, &out, &nb, err);
        if (rc != 0) fail_msg("read q%u@%" PRId64 ": %s (%s)", q, next, rn_strerror(rc), err);
        assert_true(nb >= 1);
        size_t pos = 0;
        for (uint32_t i = 0; i < nb; i++) {
            size_t sz;
            assert_int_equal(rn_batch_size(out.data + pos, out.len - pos, &sz), 0);
            rn_batch_header_t h;
            assert_int_equal(rn_batch_validate(out.data + pos, sz, NULL, 1, &h, err), 0);
            assert_int_equal(rn_batch_iter_reset(&it, out.data + pos, sz, err), 0);
            rn_record_t r;
            int64_t first_in = -1;
            while ((rc = rn_batch_iter_next(&it, &r, err)) == 1) {
                if (first_in < 0) first_in = r.offset;
                if (r.offset >= next) {
                    char want[64];
                    int wl = snprintf(want, sizeof want, "q%u-o%" PRId64 "-", q, r.offset);
                    assert_int_equal(r.offset, next);
                    assert_true(r.value_len >= wl);
                    assert_memory_equal(r.value, want, (size_t)wl);
                    next++;
                }
            }
            assert_int_equal(rc, 0);
            assert_true(first_in <= next);
            pos += sz;
        }
        assert_int_equal(pos, out.len);
        rn_buf_free(&out);
    }
    rn_batch_iter_destroy(&it);
    assert_int_equal(next, qi.high_watermark);
    return next;
}

/* ---- tests -------------------------------------------------------------------- */

/* Many queues interleaved across many segment rolls and index files read back
 * exactly, before and after a clean reopen. */
static void test_roundtrip_many_queues_rolls(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    enum { NQ = 5 };
    int64_t next[NQ] = {0};
    for (int i = 0; i < 300; i++) {
        uint32_t q = (uint32_t)(i * 7 % NQ) * 3 + 1;     /* ids 1, 4, 7, 10, 13 */
        int n = i % 5 + 1;
        next[(q - 1) / 3] = append_ok(log, q, next[(q - 1) / 3], n, 1000 + i);
    }
    assert_true(rn_log_bytes(log) > 4 * o.segment_bytes);
    uint32_t *ids;
    size_t nids;
    assert_int_equal(rn_log_queues(log, &ids, &nids), 0);
    assert_int_equal(nids, NQ);
    for (size_t k = 0; k < nids; k++) assert_int_equal(ids[k], k * 3 + 1);
    free(ids);
    for (uint32_t k = 0; k < NQ; k++) {
        assert_int_equal(check_queue(log, k * 3 + 1, 0, 1), next[k]);
        assert_int_equal(check_queue(log, k * 3 + 1, 0, 1 << 20), next[k]);
        assert_int_equal(check_queue(log, k * 3 + 1, next[k] / 2, 700), next[k]);
    }
    assert_int_equal(rn_log_close(log), 0);

    log = open_ok(dir, &o);
    rn_log_recovery_t rec;
    rn_log_recovery_info(log, &rec);
    assert_int_equal(rec.clean, 1);
    assert_int_equal(rec.scanned_bytes, 0);
    assert_int_equal(rec.rebuilt_units, 0);
    assert_int_equal(rec.dropped_units, 0);
    for (uint32_t k = 0; k < NQ; k++) {
        assert_int_equal(check_queue(log, k * 3 + 1, 0, 3000), next[k]);
        next[k] = append_ok(log, k * 3 + 1, next[k], 2, 5000);
        assert_int_equal(check_queue(log, k * 3 + 1, 0, 3000), next[k]);
    }
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* A read returns at least one batch even past max_bytes, starts at the batch
 * holding the offset, stops at the high watermark, and names the valid range
 * when the offset is outside it. */
static void test_read_limits_and_ranges(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    int64_t next = 0;
    for (int i = 0; i < 10; i++) next = append_ok(log, 3, next, 4, 100 * i);   /* 40 records */
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb;
    assert_int_equal(rn_log_read(log, 3, 6, 1, &out, &nb, err), 0);
    assert_int_equal(nb, 1);
    rn_batch_header_t h;
    assert_int_equal(rn_batch_validate(out.data, out.len, NULL, 0, &h, err), 0);
    assert_int_equal(h.base_offset, 4);                 /* the batch holding offset 6 */
    size_t one = out.len;                               /* all batches have this size */
    out.len = 0;
    assert_int_equal(rn_log_read(log, 3, 0, 2 * one + one / 2, &out, &nb, err), 0);
    assert_int_equal(nb, 2);
    assert_int_equal(out.len, 2 * one);
    out.len = 0;
    assert_int_equal(rn_log_read(log, 3, 40, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(rn_log_read(log, 3, 41, 1 << 20, &out, &nb, err), RN_ERANGE);
    assert_non_null(strstr(err, "[0, 40]"));
    assert_int_equal(rn_log_read(log, 3, -1, 1 << 20, &out, &nb, err), RN_ERANGE);
    assert_int_equal(rn_log_read(log, 99, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 0);
    assert_int_equal(rn_log_read(log, 99, 1, 1 << 20, &out, &nb, err), RN_ERANGE);
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, 3, &qi), 0);
    assert_int_equal(qi.log_start, 0);
    assert_int_equal(qi.high_watermark, 40);
    assert_int_equal(qi.batches, 10);
    assert_int_equal(rn_log_queue_info(log, 99, &qi), 0);
    assert_int_equal(qi.high_watermark, 0);
    assert_int_equal(qi.batches, 0);
    rn_buf_free(&out);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* Offset lookups find the batch holding each offset; time lookups find the
 * first record in offset order with ts >= T even when timestamps go backwards
 * within and across batches (checked against brute force). */
static void test_lookup_offset_and_time(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    o.segment_bytes = 1 << 20;
    o.index_file_units = 70;           /* 3 files of 70, two fences in each */
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    enum { NB = 180, PER = 5 };
    int64_t all_ts[NB * PER];
    unsigned seed = 12345;
    int64_t next = 0;
    for (int i = 0; i < NB; i++) {
        int64_t ts[PER];
        for (int k = 0; k < PER; k++) {
            seed = seed * 1103515245u + 12345u;
            ts[k] = 1000 + i * 10 + (int64_t)((seed >> 16) % 60) - 30;   /* jittery */
            all_ts[i * PER + k] = ts[k];
        }
        tbatch_t t = make_batch(2, next, PER, ts, 0, 10);
        int64_t base;
        uint64_t ticket;
        assert_int_equal(rn_log_append(log, 2, t.data, t.len, &base, &ticket, err), 0);
        assert_int_equal(base, next);
        next += PER;
        free(t.data);
        /* an unrelated queue between, so positions are not contiguous */
        tbatch_t u = make_batch(5, i, 1, NULL, 0, 10);
        assert_int_equal(rn_log_append(log, 5, u.data, u.len, &base, &ticket, err), 0);
        free(u.data);
    }
    for (int64_t off = 0; off < next; off++) {
        rn_log_batch_ref_t ref;
        assert_int_equal(rn_log_lookup_offset(log, 2, off, &ref, err), 0);
        assert_int_equal(ref.base_offset, off / PER * PER);
        assert_int_equal(ref.record_count, PER);
    }
    rn_log_batch_ref_t ref;
    assert_int_equal(rn_log_lookup_offset(log, 2, next, &ref, err), RN_ERANGE);
    for (int round = 0; round < 2; round++) {
    if (round == 1) {                  /* the same answers from fences rebuilt at open */
        assert_int_equal(rn_log_close(log), 0);
        log = open_ok(dir, &o);
    }
    for (int64_t off = 0; off < next; off++) {
        rn_log_batch_ref_t r2;
        assert_int_equal(rn_log_lookup_offset(log, 2, off, &r2, err), 0);
        assert_int_equal(r2.base_offset, off / PER * PER);
    }
    for (int64_t T = 900; T <= 1000 + NB * 10 + 40; T += 3) {
        int64_t want = next;
        for (int j = 0; j < NB * PER; j++)
            if (all_ts[j] >= T) { want = j; break; }
        int64_t got = -7;
        assert_int_equal(rn_log_lookup_time(log, 2, T, &got, err), 0);
        assert_int_equal(got, want);
        rn_log_batch_ref_t tr;
        if (want == next) {
            assert_int_equal(rn_log_lookup_time_batch(log, 2, T, &tr, err), RN_ENOTFOUND);
        } else {
            assert_int_equal(rn_log_lookup_time_batch(log, 2, T, &tr, err), 0);
            assert_true(tr.base_offset <= want && want < tr.base_offset + tr.record_count);
            assert_true(tr.max_timestamp >= T);
        }
    }
    }
    int64_t got;
    assert_int_equal(rn_log_lookup_time(log, 42, 5, &got, err), 0);
    assert_int_equal(got, 0);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* Time lookups decode LZ4-compressed batches too (the fast path only reads
 * uncompressed records), exact to the record. */
static void test_lookup_time_lz4(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    bo.codec = RN_BATCH_CODEC_LZ4;
    int64_t ts_of[200];
    int64_t next = 0;
    for (int i = 0; i < 20; i++) {
        rn_batch_builder_t b;
        assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
        for (int k = 0; k < 10; k++) {
            rn_record_t r = {0};
            r.timestamp = 5000 + (next + k) * 3 - (k % 2) * 7;     /* zig-zag */
            ts_of[next + k] = r.timestamp;
            r.key_len = -1;
            r.value = (const uint8_t *)"lz4 lz4 lz4 lz4 lz4 lz4";
            r.value_len = 23;
            assert_int_equal(rn_batch_builder_add(&b, &r), 0);
        }
        const uint8_t *out;
        size_t len;
        assert_int_equal(rn_batch_builder_finish(&b, &out, &len), 0);
        int64_t base;
        uint64_t ticket;
        assert_int_equal(rn_log_append(log, 1, out, len, &base, &ticket, err), 0);
        assert_int_equal(base, next);
        next += 10;
        rn_batch_builder_destroy(&b);
    }
    for (int64_t T = 4990; T <= 5620; T++) {
        int64_t want = next;
        for (int j = 0; j < next; j++)
            if (ts_of[j] >= T) { want = j; break; }
        int64_t got = -1;
        assert_int_equal(rn_log_lookup_time(log, 1, T, &got, err), 0);
        assert_int_equal(got, want);
    }
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* Bad batches and oversize batches are refused and store nothing. */
static void test_append_refuses_bad_batches(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    tbatch_t t = make_batch(1, 0, 3, NULL, 0, 10);
    int64_t base;
    uint64_t ticket;
    t.data[t.len - 1] ^= 1;
    assert_int_equal(rn_log_append(log, 1, t.data, t.len, &base, &ticket, err), RN_ECORRUPT);
    t.data[t.len - 1] ^= 1;
    assert_int_not_equal(rn_log_append(log, 1, t.data, t.len - 1, &base, &ticket, err), 0);
    free(t.data);
    t = make_batch(1, 0, 40, NULL, 0, 200);               /* > 4096 bytes */
    assert_int_equal(rn_log_append(log, 1, t.data, t.len, &base, &ticket, err), RN_ETOOBIG);
    free(t.data);
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, 1, &qi), 0);
    assert_int_equal(qi.high_watermark, 0);
    assert_int_equal(append_ok(log, 1, 0, 2, 0), 2);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

static void test_fsync_parse(void **state)
{
    (void)state;
    rn_log_opts_t o;
    char err[RN_ERRMSG_SIZE];
    rn_log_opts_default(&o);
    assert_int_equal(o.fsync, RN_FSYNC_GROUP);
    assert_int_equal(rn_fsync_parse("always", &o, err), 0);
    assert_int_equal(o.fsync, RN_FSYNC_ALWAYS);
    assert_int_equal(rn_fsync_parse("interval:250", &o, err), 0);
    assert_int_equal(o.fsync, RN_FSYNC_INTERVAL);
    assert_int_equal(o.fsync_interval_ms, 250);
    assert_int_equal(rn_fsync_parse("never", &o, err), 0);
    assert_int_equal(rn_fsync_parse("group", &o, err), 0);
    assert_int_equal(rn_fsync_parse("interval:", &o, err), RN_EINVAL);
    assert_int_equal(rn_fsync_parse("interval:0", &o, err), RN_EINVAL);
    assert_int_equal(rn_fsync_parse("sometimes", &o, err), RN_EINVAL);
    assert_non_null(strstr(err, "interval:MS"));
    assert_string_equal(rn_fsync_name(RN_FSYNC_GROUP), "group");
}

/* ---- fsync policies: counting fdatasync calls ------------------------------------ */

static atomic_int g_syncs;
static int counting_fdatasync(int fd)
{
    atomic_fetch_add(&g_syncs, 1);
    return fdatasync(fd);
}

static int64_t hw_of(rn_log_t *log, uint32_t q)
{
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
    return qi.high_watermark;
}

/* Under group commit a reader does not see an append until the flusher's
 * fdatasync covered it; rn_log_wait returns after that sync, and rn_log_sync
 * publishes at once. */
static void test_group_visibility(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_GROUP);
    o.group_window_us = 300000;               /* 300 ms: the check below runs well within */
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    rn_sys.fdatasync = counting_fdatasync;
    atomic_store(&g_syncs, 0);
    tbatch_t t = make_batch(1, 0, 3, NULL, 0, 10);
    int64_t base;
    uint64_t ticket;
    assert_int_equal(rn_log_append(log, 1, t.data, t.len, &base, &ticket, err), 0);
    assert_int_equal(hw_of(log, 1), 0);       /* written, not durable: invisible */
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb;
    assert_int_equal(rn_log_read(log, 1, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 0);
    assert_int_equal(atomic_load(&g_syncs), 0);
    assert_int_equal(rn_log_wait(log, ticket), 0);
    assert_true(atomic_load(&g_syncs) >= 1);
    assert_int_equal(hw_of(log, 1), 3);
    /* Many appends, one wait: grouped into few syncs. */
    atomic_store(&g_syncs, 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(rn_log_append(log, 1, t.data, t.len, &base, &ticket, err), 0);
        assert_int_equal(base, 3 + 3 * i);
    }
    assert_int_equal(hw_of(log, 1), 3);
    assert_int_equal(rn_log_sync(log), 0);    /* explicit sync publishes now */
    assert_int_equal(hw_of(log, 1), 63);
    assert_int_equal(rn_log_wait(log, ticket), 0);
    assert_true(atomic_load(&g_syncs) <= 3);
    free(t.data);
    rn_buf_free(&out);
    assert_int_equal(rn_log_close(log), 0);
    rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
    rn_test_tmpdir_free(dir);
}

/* always: each append is fdatasynced and visible on return; never: visible at
 * once with no fdatasync; interval: visible at once, synced by the timer. */
static void test_other_policies_visibility(void **state)
{
    (void)state;
    rn_fsync_mode_t modes[] = {RN_FSYNC_ALWAYS, RN_FSYNC_NEVER, RN_FSYNC_INTERVAL};
    for (size_t m = 0; m < 3; m++) {
        char *dir = rn_test_tmpdir_new("test-log");
        rn_log_opts_t o;
        small_opts(&o, modes[m]);
        o.fsync_interval_ms = 20;
        rn_log_t *log = open_ok(dir, &o);
        char err[RN_ERRMSG_SIZE];
        rn_sys.fdatasync = counting_fdatasync;
        atomic_store(&g_syncs, 0);
        tbatch_t t = make_batch(1, 0, 2, NULL, 0, 10);
        int64_t base;
        uint64_t ticket;
        for (int i = 0; i < 5; i++) {
            assert_int_equal(rn_log_append(log, 1, t.data, t.len, &base, &ticket, err), 0);
            assert_int_equal(hw_of(log, 1), 2 * (i + 1));
        }
        assert_int_equal(rn_log_wait(log, ticket), 0);
        if (modes[m] == RN_FSYNC_ALWAYS) assert_int_equal(atomic_load(&g_syncs), 5);
        if (modes[m] == RN_FSYNC_NEVER) assert_int_equal(atomic_load(&g_syncs), 0);
        if (modes[m] == RN_FSYNC_INTERVAL) {
            for (int w = 0; w < 200 && atomic_load(&g_syncs) == 0; w++) usleep(5000);
            assert_true(atomic_load(&g_syncs) >= 1);
        }
        free(t.data);
        assert_int_equal(rn_log_close(log), 0);
        rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
        rn_test_tmpdir_free(dir);
    }
}

/* ---- fault injection ------------------------------------------------------------- */

static atomic_int g_fail_pwritev;      /* errno to fail with, 0 = pass */
static atomic_int g_fail_fdatasync;
static atomic_int g_fail_fallocate;  /* only for ranges of at least 8192 bytes (segments) */
static atomic_int g_short_max;         /* > 0: write at most this many bytes per call */
static atomic_int g_partial_then_fail; /* write half, then fail with g_fail_pwritev */

static ssize_t faulty_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    int e = atomic_load(&g_fail_pwritev);
    if (e && atomic_load(&g_partial_then_fail)) {
        atomic_store(&g_partial_then_fail, 0);
        size_t n = iov[0].iov_len + (cnt > 1 ? iov[1].iov_len / 2 : 0);
        struct iovec v[2] = {iov[0], {iov[1].iov_base, n - iov[0].iov_len}};
        return pwritev(fd, v, 2, off);
    }
    if (e) { errno = e; return -1; }
    int s = atomic_load(&g_short_max);
    if (s > 0) {
        size_t n = iov[0].iov_len < (size_t)s ? iov[0].iov_len : (size_t)s;
        return pwrite(fd, iov[0].iov_base, n, off);
    }
    return pwritev(fd, iov, cnt, off);
}

static int faulty_fdatasync(int fd)
{
    int e = atomic_load(&g_fail_fdatasync);
    if (e) { errno = e; return -1; }
    return fdatasync(fd);
}

static int faulty_fallocate(int fd, int mode, off_t off, off_t len)
{
    int e = atomic_load(&g_fail_fallocate);
    if (e && len >= 8192) { errno = e; return -1; }
    return fallocate(fd, mode, off, len);
}

static void faults_on(void)
{
    atomic_store(&g_fail_pwritev, 0);
    atomic_store(&g_fail_fdatasync, 0);
    atomic_store(&g_fail_fallocate, 0);
    atomic_store(&g_short_max, 0);
    atomic_store(&g_partial_then_fail, 0);
    rn_sys.pwritev = faulty_pwritev;
    rn_sys.fdatasync = faulty_fdatasync;
    rn_sys.fallocate = faulty_fallocate;
}

static void try_append(rn_log_t *log, uint32_t q, int64_t first, int n, int expect_rc,
                       char *err)
{
    tbatch_t t = make_batch(q, first, n, NULL, 0, 30);
    int64_t base;
    uint64_t ticket;
    int rc = rn_log_append(log, q, t.data, t.len, &base, &ticket, err);
    if (rc == 0) rc = rn_log_wait(log, ticket);
    free(t.data);
    if (rc != expect_rc)
        fail_msg("append: got %s, want %s (%s)", rn_strerror(rc), rn_strerror(expect_rc), err);
}

/* EIO from pwritev fails the append, turns the store sticky with a message
 * quoting the cause, and a reopen recovers every acknowledged batch. */
static void test_eio_pwritev_sticky(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_GROUP);
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    faults_on();
    int64_t next = 0;
    for (int i = 0; i < 10; i++) next = append_ok(log, 1, next, 3, i);
    atomic_store(&g_fail_pwritev, EIO);
    try_append(log, 1, next, 3, -EIO, err);
    atomic_store(&g_fail_pwritev, 0);
    try_append(log, 1, next, 3, RN_ESTICKY, err);
    assert_non_null(strstr(err, "refuses writes since"));
    assert_non_null(strstr(err, "Input/output error"));
    assert_int_equal(rn_log_sync(log), -EIO);
    assert_int_equal(hw_of(log, 1), next);
    assert_int_equal(rn_log_close(log), -EIO);
    rn_sys_reset();
    log = open_ok(dir, &o);
    assert_int_equal(check_queue(log, 1, 0, 1 << 20), next);
    next = append_ok(log, 1, next, 2, 0);
    assert_int_equal(check_queue(log, 1, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* A failed fdatasync under group commit reaches the waiter, makes the store
 * sticky, keeps the batch invisible, and loses nothing acked across reopen;
 * the same under `always`. */
static void test_eio_fdatasync(void **state)
{
    (void)state;
    rn_fsync_mode_t modes[] = {RN_FSYNC_GROUP, RN_FSYNC_ALWAYS};
    for (size_t m = 0; m < 2; m++) {
        char *dir = rn_test_tmpdir_new("test-log");
        rn_log_opts_t o;
        small_opts(&o, modes[m]);
        rn_log_t *log = open_ok(dir, &o);
        char err[RN_ERRMSG_SIZE];
        faults_on();
        int64_t next = 0;
        for (int i = 0; i < 8; i++) next = append_ok(log, 4, next, 2, i);
        atomic_store(&g_fail_fdatasync, EIO);
        try_append(log, 4, next, 2, -EIO, err);
        assert_int_equal(hw_of(log, 4), next);          /* the failed batch stays invisible */
        atomic_store(&g_fail_fdatasync, 0);
        try_append(log, 4, next + 2, 2, RN_ESTICKY, err);
        assert_non_null(strstr(err, "fdatasync"));
        assert_int_equal(rn_log_close(log), -EIO);
        rn_sys_reset();
        log = open_ok(dir, &o);
        /* The unacknowledged batch may survive (it reached the page cache);
         * every acknowledged one must, and offsets stay dense. */
        int64_t hw = hw_of(log, 4);
        assert_true(hw == next || hw == next + 2);
        assert_int_equal(check_queue(log, 4, 0, 1 << 20), hw);
        assert_int_equal(append_ok(log, 4, hw, 1, 0), hw + 1);
        assert_int_equal(rn_log_close(log), 0);
        rn_test_tmpdir_free(dir);
    }
}

/* ENOSPC while preallocating the next segment fails the append cleanly (not
 * sticky); once space returns appends continue and nothing was lost. */
static void test_enospc_at_roll(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    faults_on();
    int64_t next = 0;
    atomic_store(&g_fail_fallocate, ENOSPC);
    int failed = 0;
    for (int i = 0; i < 100 && !failed; i++) {
        tbatch_t t = make_batch(1, next, 3, NULL, 0, 30);
        int64_t base;
        uint64_t ticket;
        int rc = rn_log_append(log, 1, t.data, t.len, &base, &ticket, err);
        free(t.data);
        if (rc == -ENOSPC) failed = 1;
        else { assert_int_equal(rc, 0); next += 3; }
    }
    assert_true(failed);
    assert_non_null(strstr(err, "no space left on device for a new 8192-byte segment"));
    assert_non_null(strstr(err, "nothing acknowledged was harmed"));
    assert_int_equal(hw_of(log, 1), next);
    atomic_store(&g_fail_fallocate, 0);
    next = append_ok(log, 1, next, 3, 0);                 /* not sticky */
    assert_int_equal(check_queue(log, 1, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
    log = open_ok(dir, &o);
    assert_int_equal(check_queue(log, 1, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* ENOSPC in the middle of writing an entry leaves half an entry beyond the
 * end: the append fails with a clear message, the store is sticky, and
 * recovery cuts the half entry so the offsets do not shift. */
static void test_enospc_partial_write(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    o.segment_bytes = 1 << 20;
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    faults_on();
    int64_t next = 0;
    for (int i = 0; i < 5; i++) next = append_ok(log, 2, next, 3, 0);
    atomic_store(&g_fail_pwritev, ENOSPC);
    atomic_store(&g_partial_then_fail, 1);
    try_append(log, 2, next, 3, -ENOSPC, err);
    assert_non_null(strstr(err, "no space left on device while appending"));
    assert_non_null(strstr(err, "nothing acknowledged was harmed"));
    atomic_store(&g_fail_pwritev, 0);
    try_append(log, 2, next, 3, RN_ESTICKY, err);
    assert_non_null(strstr(err, "no space left on device"));
    assert_int_equal(rn_log_close(log), -ENOSPC);
    rn_sys_reset();
    log = open_ok(dir, &o);
    rn_log_recovery_t rec;
    rn_log_recovery_info(log, &rec);
    assert_true(rec.truncated_bytes > 0);                 /* the half entry was cut */
    assert_int_equal(check_queue(log, 2, 0, 1 << 20), next);
    next = append_ok(log, 2, next, 3, 0);
    assert_int_equal(check_queue(log, 2, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* Short writes are continued until the whole entry is written. */
static void test_short_writes(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_ALWAYS);
    rn_log_t *log = open_ok(dir, &o);
    faults_on();
    atomic_store(&g_short_max, 7);
    int64_t next = 0;
    for (int i = 0; i < 30; i++) next = append_ok(log, 9, next, 2, i);
    assert_int_equal(check_queue(log, 9, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
    log = open_ok(dir, &o);
    assert_int_equal(check_queue(log, 9, 0, 1 << 20), next);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* ---- retention -------------------------------------------------------------------- */

static int64_t g_now;
static int64_t fake_now(void) { return g_now; }

/* Size retention drops whole old segments, advances every queue's log start
 * to a batch in a remaining segment, refuses reads below it, and holds after
 * reopen. */
static void test_retention_by_size(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    o.retention_bytes = 3 * 8192;
    rn_log_t *log = open_ok(dir, &o);
    char err[RN_ERRMSG_SIZE];
    int64_t next[2] = {0, 0};
    for (int i = 0; i < 200; i++) next[i % 2] = append_ok(log, (uint32_t)i % 2, next[i % 2], 3, i);
    uint64_t before = rn_log_bytes(log);
    uint32_t dropped = 0;
    assert_int_equal(rn_log_retain(log, &dropped), 0);
    assert_true(dropped > 0);
    assert_true(rn_log_bytes(log) <= o.retention_bytes);
    assert_true(rn_log_bytes(log) < before);
    int64_t start[2];
    for (uint32_t q = 0; q < 2; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_true(qi.log_start > 0);
        assert_int_equal(qi.log_start % 3, 0);
        assert_int_equal(qi.high_watermark, next[q]);
        start[q] = qi.log_start;
        rn_buf_t out = RN_BUF_INIT;
        uint32_t nb;
        assert_int_equal(rn_log_read(log, q, qi.log_start - 1, 100, &out, &nb, err), RN_ERANGE);
        assert_non_null(strstr(err, "outside"));
        rn_log_batch_ref_t ref;
        assert_int_equal(rn_log_lookup_offset(log, q, 0, &ref, err), RN_ERANGE);
        assert_int_equal(check_queue(log, q, qi.log_start, 500), next[q]);
        int64_t t;
        assert_int_equal(rn_log_lookup_time(log, q, 0, &t, err), 0);
        assert_int_equal(t, qi.log_start);
        rn_buf_free(&out);
    }
    assert_int_equal(rn_log_retain(log, &dropped), 0);
    assert_int_equal(dropped, 0);
    assert_int_equal(rn_log_close(log), 0);
    log = open_ok(dir, &o);
    for (uint32_t q = 0; q < 2; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.log_start, start[q]);
        assert_int_equal(check_queue(log, q, qi.log_start, 500), next[q]);
        next[q] = append_ok(log, q, next[q], 1, 0);
    }
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* Age retention (with a settable clock) drops exactly the segments whose
 * newest batch is older than retention_ms, never the active one. */
static void test_retention_by_age(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    o.retention_ms = 60000;
    rn_log_t *log = open_ok(dir, &o);
    rn_sys.now_ms = fake_now;
    int64_t next = 0;
    for (int i = 0; i < 60; i++) next = append_ok(log, 1, next, 3, 1000000 + i);   /* old */
    int64_t old_end = next;
    for (int i = 0; i < 60; i++) next = append_ok(log, 1, next, 3, 5000000 + i);   /* new */
    g_now = 5000000 + 30000;           /* old batches are far past 60 s, new ones are not */
    uint32_t dropped = 0;
    assert_int_equal(rn_log_retain(log, &dropped), 0);
    assert_true(dropped > 0);
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, 1, &qi), 0);
    assert_true(qi.log_start > 0 && qi.log_start <= old_end);
    assert_true(old_end - qi.log_start <= 3 * 40);       /* at most a segment of old ones */
    assert_int_equal(check_queue(log, 1, qi.log_start, 1 << 20), next);
    g_now = 5000000 + 10000000;                            /* everything is old now */
    assert_int_equal(rn_log_retain(log, &dropped), 0);
    assert_true(dropped > 0);
    assert_int_equal(rn_log_queue_info(log, 1, &qi), 0);
    assert_true(qi.log_start > old_end);
    assert_int_equal(qi.high_watermark, next);           /* the active segment stays */
    assert_int_equal(rn_log_close(log), 0);
    rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
    rn_test_tmpdir_free(dir);
}

/* One batch stamped 10 years ahead raises the running maximum of every later
 * unit: age retention judges such a segment by when it was written instead,
 * so the outlier no longer stops retention for the whole store. */
static void test_retention_future_outlier(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    o.retention_ms = 60000;
    rn_log_t *log = open_ok(dir, &o);
    int64_t real = rn_sys.now_ms();
    int64_t next = append_ok(log, 1, 0, 3, real + 10 * 365 * 86400000LL);     /* the outlier */
    for (int i = 0; i < 120; i++) next = append_ok(log, 1, next, 3, real + i);
    rn_sys.now_ms = fake_now;
    g_now = real + 3600000;                 /* an hour later: every segment is old */
    uint32_t dropped = 0;
    assert_int_equal(rn_log_retain(log, &dropped), 0);
    assert_true(dropped > 0);
    rn_log_queue_info_t qi;
    assert_int_equal(rn_log_queue_info(log, 1, &qi), 0);
    assert_true(qi.log_start > 3);
    assert_int_equal(qi.high_watermark, next);             /* the active segment stays */
    /* written just now: not old yet, whatever the outlier says */
    g_now = real + 1000;
    uint32_t again = 0;
    next = append_ok(log, 1, next, 3, real + 500);
    assert_int_equal(rn_log_retain(log, &again), 0);
    assert_int_equal(again, 0);
    rn_sys_reset();
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* ---- concurrency -------------------------------------------------------------------- */

/* Tracks what fdatasync has covered (single segment, so file offsets are
 * positions). */
static _Atomic uint64_t g_written_end, g_synced_end;

static ssize_t track_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    ssize_t n = pwritev(fd, iov, cnt, off);
    if (n > 0) {
        uint64_t e = (uint64_t)off + (uint64_t)n, cur = atomic_load(&g_written_end);
        while (cur < e && !atomic_compare_exchange_weak(&g_written_end, &cur, e)) {}
    }
    return n;
}

static int track_fdatasync(int fd)
{
    uint64_t snap = atomic_load(&g_written_end);
    int rc = fdatasync(fd);
    if (rc == 0) {
        uint64_t cur = atomic_load(&g_synced_end);
        while (cur < snap && !atomic_compare_exchange_weak(&g_synced_end, &cur, snap)) {}
    }
    return rc;
}

typedef struct conc {
    rn_log_t *log;
    atomic_int done;
    int64_t total[3];
    int failed;
} conc_t;

static void *writer_main(void *arg)
{
    conc_t *c = arg;
    char err[RN_ERRMSG_SIZE];
    int64_t next[3] = {0, 0, 0};
    for (int i = 0; i < 600 && !c->failed; i++) {
        uint32_t q = (uint32_t)i % 3;
        int n = i % 4 + 1;
        tbatch_t t = make_batch(q, next[q], n, NULL, i, 20);
        int64_t base;
        uint64_t ticket;
        if (rn_log_append(c->log, q, t.data, t.len, &base, &ticket, err) != 0 ||
            base != next[q])
            c->failed = 1;
        if (i % 7 == 0 && rn_log_wait(c->log, ticket) != 0) c->failed = 1;
        free(t.data);
        next[q] += n;
    }
    if (rn_log_sync(c->log) != 0) c->failed = 1;
    memcpy(c->total, next, sizeof next);
    atomic_store(&c->done, 1);
    return NULL;
}

static void *reader_main(void *arg)
{
    conc_t *c = arg;
    char err[RN_ERRMSG_SIZE];
    int64_t next[3] = {0, 0, 0};
    rn_buf_t out = RN_BUF_INIT;
    rn_batch_iter_t it;
    unsigned rounds = 0;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    for (;;) {
        int finished = atomic_load(&c->done);
        int progress = 0;
        for (uint32_t q = 0; q < 3; q++) {
            out.len = 0;
            uint32_t nb = 0;
            if (rn_log_read(c->log, q, next[q], 2000, &out, &nb, err) != 0) { c->failed = 2; goto out; }
            size_t pos = 0;
            for (uint32_t i = 0; i < nb; i++) {
                size_t sz;
                rn_batch_header_t h;
                rn_log_batch_ref_t ref;
                if (rn_batch_size(out.data + pos, out.len - pos, &sz) != 0 ||
                    rn_batch_validate(out.data + pos, sz, NULL, 1, &h, err) != 0 ||
                    h.base_offset != next[q] ||
                    rn_log_lookup_offset(c->log, q, h.base_offset, &ref, err) != 0 ||
                    ref.position + 16 + ref.size > atomic_load(&g_synced_end)) {
                    c->failed = 3;
                    goto out;
                }
                next[q] += h.record_count;
                pos += sz;
                progress = 1;
            }
        }
        if (finished && !progress) break;
        /* A second syncer racing the group flusher: what it publishes must
         * be synced too. */
        if (++rounds % 3 == 0 && rn_log_sync(c->log) != 0) { c->failed = 5; goto out; }
    }
    for (uint32_t q = 0; q < 3; q++)
        if (next[q] != c->total[q]) c->failed = 4;
out:
    rn_batch_iter_destroy(&it);
    rn_buf_free(&out);
    return NULL;
}

/* One writer and two readers under group commit: readers only ever see whole,
 * valid, fdatasynced batches with dense offsets, and end up seeing all. */
static void test_concurrent_readers_group(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_GROUP);
    o.segment_bytes = 4 << 20;                /* one segment: file offset = position */
    o.index_file_units = 16;
    o.group_window_us = 300;
    rn_log_t *log = open_ok(dir, &o);
    atomic_store(&g_written_end, 0);
    atomic_store(&g_synced_end, 0);
    rn_sys.pwritev = track_pwritev;
    rn_sys.fdatasync = track_fdatasync;
    conc_t c = {.log = log};
    pthread_t w, r1, r2;
    pthread_create(&r1, NULL, reader_main, &c);
    pthread_create(&r2, NULL, reader_main, &c);
    pthread_create(&w, NULL, writer_main, &c);
    pthread_join(w, NULL);
    pthread_join(r1, NULL);
    pthread_join(r2, NULL);
    assert_int_equal(c.failed, 0);
    assert_int_equal(rn_log_close(log), 0);
    rn_sys_reset();                 /* after close: the syncer thread uses rn_sys */
    rn_test_tmpdir_free(dir);
}

/* A second open of a locked data directory is refused with a clear message. */
static void test_directory_lock(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    rn_log_t *other = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_log_open(dir, &o, &other, err), RN_ELOCKED);
    assert_null(other);
    assert_non_null(strstr(err, "locked by process"));
    o.segment_bytes = 100;
    assert_int_equal(rn_log_close(log), 0);
    assert_int_equal(rn_log_open(dir, &o, &other, err), RN_EINVAL);
    assert_non_null(strstr(err, "segment_bytes"));
    rn_test_tmpdir_free(dir);
}

/* The on-disk formats, pinned byte for byte: an entry header, an index
 * unit, and the checkpoint and clean files a close leaves behind. */
static void test_format_golden(void **state)
{
    (void)state;
    uint8_t b21[21];
    for (int i = 0; i < 21; i++) b21[i] = (uint8_t)(i * 7 + 1);
    static const uint8_t hdr_gold[16] = {
        0xe8, 0x03, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,     /* batch_len 1000, queue 7 */
        0x01, 0x00, 0x00, 0x00, 0xb3, 0xbb, 0x07, 0xe5,     /* format 1, hcrc */
    };
    uint8_t h[16];
    rn_seg_hdr_encode(h, 1000, 7, b21, b21 + 8);
    assert_memory_equal(h, hdr_gold, 16);
    assert_int_equal(rn_seg_hdr_check(h, b21), 0);
    b21[12] ^= 1;                                           /* leader epoch: covered */
    assert_int_equal(rn_seg_hdr_check(h, b21), RN_ECORRUPT);

    static const uint8_t unit_gold[48] = {
        0x15, 0xcd, 0x5b, 0x07, 0x00, 0x00, 0x00, 0x00,     /* position 123456789 */
        0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,     /* base offset 42 */
        0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00,     /* first ts */
        0x7b, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00,     /* running max ts */
        0x00, 0x00, 0x01, 0x00, 0x58, 0x02, 0x00, 0x00,     /* size 65536, 600 records */
        0x00, 0x00, 0x00, 0x00, 0xad, 0x0e, 0x53, 0xcf,     /* flags 0, crc */
    };
    rn_idx_unit_t u = {.position = 123456789, .base_offset = 42, .first_ts = 1700000000000,
                       .max_ts = 1700000000123, .size = 65536, .record_count = 600};
    uint8_t out[48];
    rn_idx_unit_encode(out, &u);
    assert_memory_equal(out, unit_gold, 48);
    rn_idx_unit_t back;
    assert_int_equal(rn_idx_unit_decode(unit_gold, &back), 0);
    assert_int_equal(back.max_ts, u.max_ts);
    static const uint8_t zero[48];
    assert_int_equal(rn_idx_unit_decode(zero, &back), RN_ECORRUPT);   /* unused = end */

    char *dir = rn_test_tmpdir_new("test-log");
    rn_log_opts_t o;
    small_opts(&o, RN_FSYNC_NEVER);
    rn_log_t *log = open_ok(dir, &o);
    assert_int_equal(append_ok(log, 5, 0, 3, 0), 3);
    uint64_t end = rn_log_bytes(log);
    assert_int_equal(rn_log_close(log), 0);
    char p[600];
    uint8_t *b;
    size_t n;
    snprintf(p, sizeof p, "%s/clean", dir);
    assert_int_equal(rn_read_file(p, 4096, &b, &n), 0);
    assert_int_equal(n, 20);
    assert_memory_equal(b, "RNCL\x01\0\0\0", 8);
    assert_int_equal(rn_le64_get(b + 8), end);
    assert_int_equal(rn_le32_get(b + 16), rn_crc32c(0, b, 16));
    free(b);
    snprintf(p, sizeof p, "%s/checkpoint", dir);
    assert_int_equal(rn_read_file(p, 4096, &b, &n), 0);
    assert_int_equal(n, 24 + 16 + 4);
    assert_memory_equal(b, "RNCK\x01\0\0\0", 8);
    assert_int_equal(rn_le64_get(b + 8), end);
    assert_int_equal(rn_le32_get(b + 16), 1);               /* one queue */
    assert_int_equal(rn_le32_get(b + 24), 5);               /* its id */
    assert_int_equal(rn_le64_get(b + 32), 3);               /* its next offset */
    assert_int_equal(rn_le32_get(b + 40), rn_crc32c(0, b, 40));
    free(b);
    rn_test_tmpdir_free(dir);
}

/* Every test starts with the real system calls (rn_test_reset_sys), even
 * after a failed one. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_roundtrip_many_queues_rolls, rn_test_reset_sys),
        cmocka_unit_test_setup(test_read_limits_and_ranges, rn_test_reset_sys),
        cmocka_unit_test_setup(test_lookup_offset_and_time, rn_test_reset_sys),
        cmocka_unit_test_setup(test_lookup_time_lz4, rn_test_reset_sys),
        cmocka_unit_test_setup(test_append_refuses_bad_batches, rn_test_reset_sys),
        cmocka_unit_test_setup(test_fsync_parse, rn_test_reset_sys),
        cmocka_unit_test_setup(test_group_visibility, rn_test_reset_sys),
        cmocka_unit_test_setup(test_other_policies_visibility, rn_test_reset_sys),
        cmocka_unit_test_setup(test_eio_pwritev_sticky, rn_test_reset_sys),
        cmocka_unit_test_setup(test_eio_fdatasync, rn_test_reset_sys),
        cmocka_unit_test_setup(test_enospc_at_roll, rn_test_reset_sys),
        cmocka_unit_test_setup(test_enospc_partial_write, rn_test_reset_sys),
        cmocka_unit_test_setup(test_short_writes, rn_test_reset_sys),
        cmocka_unit_test_setup(test_retention_by_size, rn_test_reset_sys),
        cmocka_unit_test_setup(test_retention_by_age, rn_test_reset_sys),
        cmocka_unit_test_setup(test_retention_future_outlier, rn_test_reset_sys),
        cmocka_unit_test_setup(test_concurrent_readers_group, rn_test_reset_sys),
        cmocka_unit_test_setup(test_directory_lock, rn_test_reset_sys),
        cmocka_unit_test_setup(test_format_golden, rn_test_reset_sys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

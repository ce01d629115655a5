/*
 * test_log_recovery.c — opening a store from every torn or damaged state.
 *
 * A "crash" is a forked child that appends and then _exit()s without closing:
 * what it wrote sits in the page cache, exactly as after kill -9. The parent
 * then damages files and reopens. Every test checks the exact surviving
 * offsets of every queue, the content of every record, and that appends
 * continue densely afterwards.
 *
 * Three families: torn tails (truncated: nothing intact follows the damage);
 * damage with intact entries after it (kept: the damaged batch's offsets are
 * marked, reads of them fail naming them, every other batch stays, the
 * report names the range, no offset is reused); acknowledged data missing
 * (a segment truncated, deleted or emptied, a store removed: the open
 * refuses until the loss is accepted, which keeps every next offset). The
 * last tests go through a data directory, the consumer and runneld.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"
#include "log/segment.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "tests/util/util.h"
#ifndef RN_CORE_TESTS_ONLY
#include "client/runnel.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { NQ = 3, NB = 90 };

/* ---- helpers --------------------------------------------------------------- */

static void opts(rn_log_opts_t *o)
{
    rn_log_opts_default(o);
    o->fsync = RN_FSYNC_GROUP;          /* rolls write recovery points at once */
    o->group_window_us = 100;
    o->segment_bytes = 8192;
    o->index_file_units = 8;
    o->max_batch_bytes = 4096;
}

/* Batch i of the fill goes to queue i % NQ with i % 3 + 1 records. */
static uint32_t fill_queue(int i) { return (uint32_t)(i % NQ); }
static int fill_count(int i) { return i % 3 + 1; }

/* Next offset of queue q after the first k batches of the fill. */
static int64_t expect_hw(int k, uint32_t q)
{
    int64_t n = 0;
    for (int i = 0; i < k; i++)
        if (fill_queue(i) == q) n += fill_count(i);
    return n;
}

static void append_batch(rn_log_t *log, uint32_t q, int64_t first, int n, int64_t ts0)
{
    char prefix[24];
    snprintf(prefix, sizeof prefix, "q%u-o", q);
    rn_test_records_t spec = {.prefix = prefix, .suffix = "-padding-padding-padding",
                              .first = first, .n = n, .ts0 = ts0, .ts_step = 1};
    rn_batch_builder_t b;
    const uint8_t *out;
    size_t len;
    rn_test_batch_build(&b, &spec, &out, &len);
    char err[RN_ERRMSG_SIZE] = "";
    int64_t base;
    uint64_t ticket;
    int rc = rn_log_append(log, q, out, len, &base, &ticket, err);
    if (rc != 0) fail_msg("append: %s (%s)", rn_strerror(rc), err);
    assert_int_equal(base, first);
    rn_batch_builder_destroy(&b);
}

static void fill(rn_log_t *log, int from, int to)
{
    for (int i = from; i < to; i++)
        append_batch(log, fill_queue(i), expect_hw(i, fill_queue(i)), fill_count(i), 1000 + i);
}

static rn_log_t *open_opts(const char *dir, rn_log_recovery_t *rec, int accept_loss)
{
    rn_log_opts_t o;
    opts(&o);
    o.accept_loss = accept_loss;
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) fail_msg("open %s: %s (%s)", dir, rn_strerror(rc), err);
    if (rec) rn_log_recovery_info(log, rec);
    return log;
}

static rn_log_t *open_ok(const char *dir, rn_log_recovery_t *rec)
{
    return open_opts(dir, rec, 0);
}

/* The whole fill, closed cleanly. */
static void fill_clean(const char *dir)
{
    rn_log_t *log = open_ok(dir, NULL);
    fill(log, 0, NB);
    assert_int_equal(rn_log_close(log), 0);
}

/* The whole fill in a child that dies without closing (kill -9), after
 * making sure the recovery point of its last roll is on disk (retain runs
 * any pending roll checkpoint first; no retention is configured). */
static void fill_crash(const char *dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rn_log_t *log = open_ok(dir, NULL);
        fill(log, 0, NB);
        uint32_t dropped = 1;
        if (rn_log_retain(log, &dropped) != 0 || dropped != 0) _exit(3);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* One commit-log entry as found on disk. */
typedef struct ent {
    char     path[600];
    uint64_t off;        /* file offset of its header */
    uint32_t len;
} ent_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk every segment's entries in order (headers only, no checks beyond
 * "non-zero length that fits"). */
static int walk(const char *dir, ent_t *e, int max)
{
    char cl[512];
    snprintf(cl, sizeof cl, "%s/commitlog", dir);
    DIR *d = opendir(cl);
    assert_non_null(d);
    char *names[256];
    int nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".log") && nn < 256) names[nn++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)nn, sizeof *names, cmp_str);
    int n = 0;
    for (int i = 0; i < nn; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", cl, names[i]);
        uint8_t *buf;
        size_t sz;
        assert_int_equal(rn_read_file(p, 1 << 24, &buf, &sz), 0);
        size_t off = 0;
        while (off + 16 <= sz) {
            uint32_t len = rn_le32_get(buf + off);
            if (len == 0 || off + 16 + len > sz) break;
            assert_true(n < max);
            snprintf(e[n].path, sizeof e[n].path, "%s", p);
            e[n].off = off;
            e[n].len = len;
            n++;
            off += 16 + len;
        }
        free(buf);
        free(names[i]);
    }
    return n;
}

static void poke(const char *path, uint64_t off, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, data, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void peek(const char *path, uint64_t off, void *data, size_t n)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, data, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void flip(const char *path, uint64_t off)
{
    uint8_t b;
    peek(path, off, &b, 1);
    b ^= 0x5a;
    poke(path, off, &b, 1);
}

static void zero(const char *path, uint64_t off, size_t n)
{
    uint8_t *z = calloc(1, n);
    poke(path, off, z, n);
    free(z);
}

/* ---- damage that intact entries follow -------------------------------------------- */

/* Offsets [from, to) of queue q that reads must refuse. */
typedef struct drange {
    uint32_t q;
    int64_t  from, to;
} drange_t;

/* The offsets fill batch i holds. */
static drange_t batch_range(int i)
{
    uint32_t q = fill_queue(i);
    int64_t b = expect_hw(i, q);
    return (drange_t){q, b, b + fill_count(i)};
}

static const drange_t *range_at(const drange_t *r, int nr, uint32_t q, int64_t off)
{
    for (int i = 0; i < nr; i++)
        if (r[i].q == q && r[i].from == off) return &r[i];
    return NULL;
}

/* The first range of q at or after off, or NULL. */
static const drange_t *range_from(const drange_t *r, int nr, uint32_t q, int64_t off)
{
    const drange_t *best = NULL;
    for (int i = 0; i < nr; i++)
        if (r[i].q == q && r[i].from >= off && (!best || r[i].from < best->from)) best = &r[i];
    return best;
}

/* Every queue ends where the first k fill batches put it; every offset is
 * readable except those in r[], whose reads fail with RN_EDAMAGED naming the
 * queue and the range ("lost" or "damaged" as word says); a read that meets
 * a damaged range returns every batch before it. */
static void verify_reads(rn_log_t *log, int k, const drange_t *r, int nr, const char *word)
{
    char err[RN_ERRMSG_SIZE];
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.log_start, 0);
        assert_int_equal(qi.high_watermark, expect_hw(k, q));
        int64_t next = 0;
        while (next < qi.high_watermark) {
            rn_buf_t out = RN_BUF_INIT;
            uint32_t nb = 99;
            const drange_t *d = range_at(r, nr, q, next);
            int rc = rn_log_read(log, q, next, 1 << 20, &out, &nb, err);
            if (d) {
                char want[96];
                snprintf(want, sizeof want, "queue %u offsets [%" PRId64 ", %" PRId64 ")", q,
                         d->from, d->to);
                assert_int_equal(rc, RN_EDAMAGED);
                assert_int_equal(nb, 0);
                if (!strstr(err, want) || !strstr(err, word))
                    fail_msg("read q%u@%" PRId64 ": '%s' lacks '%s' / '%s'", q, next, err, want,
                             word);
                rn_log_batch_ref_t ref;
                assert_int_equal(rn_log_lookup_offset(log, q, next, &ref, err), 0);
                assert_int_equal(ref.damaged, 1);
                next = d->to;
                rn_buf_free(&out);
                continue;
            }
            if (rc != 0) fail_msg("read q%u@%" PRId64 ": %s", q, next, err);
            assert_true(nb >= 1);
            size_t pos = 0;
            for (uint32_t i = 0; i < nb; i++) {
                size_t sz;
                rn_batch_header_t h;
                assert_int_equal(rn_batch_size(out.data + pos, out.len - pos, &sz), 0);
                assert_int_equal(rn_batch_validate(out.data + pos, sz, NULL, 1, &h, err), 0);
                assert_int_equal(h.base_offset, next);
                assert_int_equal(rn_batch_iter_reset(&it, out.data + pos, sz, err), 0);
                rn_record_t rec;
                while ((rc = rn_batch_iter_next(&it, &rec, err)) == 1) {
                    char want[64];
                    int wl = snprintf(want, sizeof want, "q%u-o%" PRId64 "-", q, next);
                    assert_int_equal(rec.offset, next);
                    assert_memory_equal(rec.value, want, (size_t)wl);
                    next++;
                }
                assert_int_equal(rc, 0);
                pos += sz;
            }
            /* One big read stops exactly at the next damage, or the end. */
            const drange_t *n2 = range_from(r, nr, q, next);
            assert_int_equal(next, n2 ? n2->from : qi.high_watermark);
            rn_buf_free(&out);
        }
    }
    rn_batch_iter_destroy(&it);
}

/* verify_reads, then: appends continue after the old end (no offset is
 * given twice), and the damage marks survive a close and a clean reopen. */
static void verify_damage(rn_log_t *log, const char *dir, int k, const drange_t *r, int nr,
                          const char *word)
{
    verify_reads(log, k, r, nr, word);
    for (uint32_t q = 0; q < NQ; q++) append_batch(log, q, expect_hw(k, q), 2, 9000);
    assert_int_equal(rn_log_close(log), 0);
    rn_log_recovery_t rec;
    log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 1);
    assert_int_equal(rec.damaged_batches + rec.lost_ranges + rec.truncated_bytes, 0);
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.high_watermark, expect_hw(k, q) + 2);
    }
    char err[RN_ERRMSG_SIZE];
    for (int i = 0; i < nr; i++) {
        rn_buf_t out = RN_BUF_INIT;
        uint32_t nb;
        assert_int_equal(rn_log_read(log, r[i].q, r[i].from, 4096, &out, &nb, err), RN_EDAMAGED);
        rn_buf_free(&out);
    }
    assert_int_equal(rn_log_close(log), 0);
}

/* The recovery report names exactly one range: kind, queue and offsets. */
static void expect_one_range(const rn_log_recovery_t *rec, rn_log_range_kind_t kind, drange_t d)
{
    assert_int_equal(rec->nranges, 1);
    assert_int_equal(rec->ranges[0].kind, kind);
    assert_int_equal(rec->ranges[0].queue, d.q);
    assert_int_equal(rec->ranges[0].from, d.from);
    assert_int_equal(rec->ranges[0].to, d.to);
    char line[1024];
    assert_int_equal(rn_log_recovery_format(rec, line, sizeof line), 1);
    char want[96];
    snprintf(want, sizeof want, "queue %u offsets [%" PRId64 ", %" PRId64 ")", d.q, d.from, d.to);
    if (!strstr(line, want)) fail_msg("report '%s' lacks '%s'", line, want);
}

/* Every queue holds exactly the first k batches of the fill, with the right
 * records; appends then continue densely; the result survives a reopen. */
static void check_survivors(rn_log_t *log, const char *dir, int k)
{
    char err[RN_ERRMSG_SIZE];
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.log_start, 0);
        assert_int_equal(qi.high_watermark, expect_hw(k, q));
        int64_t next = 0;
        while (next < qi.high_watermark) {
            rn_buf_t out = RN_BUF_INIT;
            uint32_t nb;
            int rc = rn_log_read(log, q, next, 4096, &out, &nb, err);
            if (rc != 0) fail_msg("read q%u@%" PRId64 ": %s", q, next, err);
            size_t pos = 0;
            for (uint32_t i = 0; i < nb; i++) {
                size_t sz;
                rn_batch_header_t h;
                assert_int_equal(rn_batch_size(out.data + pos, out.len - pos, &sz), 0);
                assert_int_equal(rn_batch_validate(out.data + pos, sz, NULL, 1, &h, err), 0);
                assert_int_equal(h.base_offset, next);
                assert_int_equal(rn_batch_iter_reset(&it, out.data + pos, sz, err), 0);
                rn_record_t r;
                while ((rc = rn_batch_iter_next(&it, &r, err)) == 1) {
                    char want[64];
                    int wl = snprintf(want, sizeof want, "q%u-o%" PRId64 "-", q, next);
                    assert_int_equal(r.offset, next);
                    assert_memory_equal(r.value, want, (size_t)wl);
                    next++;
                }
                assert_int_equal(rc, 0);
                pos += sz;
            }
            rn_buf_free(&out);
        }
        /* Lookups agree with the data. */
        if (qi.high_watermark > 0) {
            rn_log_batch_ref_t ref;
            assert_int_equal(rn_log_lookup_offset(log, q, qi.high_watermark - 1, &ref, err), 0);
            assert_int_equal(ref.base_offset + ref.record_count, qi.high_watermark);
        }
    }
    rn_batch_iter_destroy(&it);
    uint32_t *ids;
    size_t nids;
    assert_int_equal(rn_log_queues(log, &ids, &nids), 0);
    assert_int_equal(nids, NQ);                          /* no phantom queue */
    free(ids);
    /* Appends continue densely after the survivors. */
    for (uint32_t q = 0; q < NQ; q++) append_batch(log, q, expect_hw(k, q), 2, 9000);
    assert_int_equal(rn_log_close(log), 0);
    log = open_ok(dir, NULL);
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.high_watermark, expect_hw(k, q) + 2);
    }
    assert_int_equal(rn_log_close(log), 0);
}

/* ---- crash states -------------------------------------------------------------- */

/* A crash with nothing damaged: every batch in the page cache survives, found
 * by scanning from the last recovery point. */
static void test_crash_nothing_damaged(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    assert_int_equal(n, NB);
    uint64_t total = 0, last_seg = 0;
    for (int i = 0; i < n; i++) {
        total += 16 + e[i].len;
        if (strcmp(e[i].path, e[n - 1].path) == 0) last_seg += 16 + e[i].len;
    }
    assert_true(last_seg < total);                       /* it rolled */
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 0);
    /* The scan starts at the last roll's recovery point: it verifies exactly
     * the last segment's entries. */
    assert_int_equal(rec.scanned_bytes, last_seg);
    assert_int_equal(rec.truncated_bytes, 0);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Torn tail: the last entry was cut in the middle (its second half never
 * reached the disk). */
static void test_torn_tail(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    assert_int_equal(n, NB);
    const ent_t *l = &e[n - 1];
    zero(l->path, l->off + 16 + l->len / 2, l->len - l->len / 2);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.truncated_bytes > 0);
    uint8_t z[16], zz[16] = {0};
    peek(l->path, l->off, z, sizeof z);                  /* the torn entry is zeroed */
    assert_memory_equal(z, zz, sizeof z);
    assert_true(rec.dropped_units >= 1);
    check_survivors(log, dir, NB - 1);
    rn_test_tmpdir_free(dir);
}

/* Garbage tail: random bytes follow the last good entry in the preallocated
 * space. */
static void test_garbage_tail(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    const ent_t *l = &e[n - 1];
    unsigned seed = (unsigned)time(NULL);
    print_message("garbage seed %u\n", seed);
    uint8_t junk[200];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(rand_r(&seed) | 1);
    struct stat st;
    assert_int_equal(stat(l->path, &st), 0);
    uint64_t at = l->off + 16 + l->len;
    size_t room = (size_t)st.st_size - at;
    poke(l->path, at, junk, room < sizeof junk ? room : sizeof junk);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.truncated_bytes > 0);
    uint8_t z[sizeof junk], zz[sizeof junk] = {0};
    size_t m = room < sizeof junk ? room : sizeof junk;
    peek(l->path, at, z, m);                             /* the garbage is gone */
    assert_memory_equal(z, zz, m);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Zeroed tail: the last two entries read back as zeros (preallocated space
 * that was never written), while their index units did reach the disk. */
static void test_zeroed_tail(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    assert_int_equal(n, NB);
    assert_string_equal(e[n - 2].path, e[n - 1].path);   /* both after the recovery point */
    for (int i = n - 2; i < n; i++) zero(e[i].path, e[i].off, 16 + e[i].len);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.dropped_units, 2);
    check_survivors(log, dir, NB - 2);
    rn_test_tmpdir_free(dir);
}

/* Bad header CRC in the last entry: its leader-epoch byte (covered by the
 * header CRC only, not Kafka's) flipped. */
static void test_bad_header_crc_last_entry(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    flip(e[n - 1].path, e[n - 1].off + 16 + 13);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.truncated_bytes > 0);
    check_survivors(log, dir, NB - 1);
    rn_test_tmpdir_free(dir);
}

/* Bad Kafka CRC in the last two entries: a flipped record byte in each, with
 * nothing intact after them, is a torn tail: the log ends before them. */
static void test_bad_batch_crc_last_entries(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    flip(e[n - 2].path, e[n - 2].off + 16 + e[n - 2].len - 3);
    flip(e[n - 1].path, e[n - 1].off + 16 + e[n - 1].len - 3);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.truncated_bytes > 0);
    assert_int_equal(rec.damaged_batches, 0);
    check_survivors(log, dir, NB - 2);
    rn_test_tmpdir_free(dir);
}

/* Bad Kafka CRC in the entry before last only: the last entry is intact, so
 * this is damage, not a torn tail: the bad batch is marked damaged and the
 * last one stays. */
static void test_bad_batch_crc_before_last_entry(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    flip(e[n - 2].path, e[n - 2].off + 16 + e[n - 2].len - 3);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    drange_t d = batch_range(n - 2);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    rn_test_tmpdir_free(dir);
}

/* Bad base offset: the last entry claims an offset that does not continue its
 * queue (with checksums made consistent, as a buggy writer would leave). */
static void test_bad_base_offset(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    const ent_t *l = &e[n - 1];
    uint8_t hdr[16 + 21];
    peek(l->path, l->off, hdr, sizeof hdr);
    hdr[16 + 7] += 5;                                   /* big-endian base offset + 5 */
    rn_seg_hdr_encode(hdr, rn_le32_get(hdr), rn_le32_get(hdr + 4), hdr + 16, hdr + 24);
    poke(l->path, l->off, hdr, sizeof hdr);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.truncated_bytes > 0);
    check_survivors(log, dir, NB - 1);
    rn_test_tmpdir_free(dir);
}

/* ---- damaged metadata after a clean shutdown --------------------------------------- */

static void path_of(char *p, size_t n, const char *dir, const char *rel)
{
    snprintf(p, n, "%s/%s", dir, rel);
}

/* Missing index directory: every index is rebuilt from the commit log. */
static void test_missing_index_dir(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "index");
    rn_test_rmtree(p);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.rebuilt_units, NB);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Damaged index unit in the middle: queue 0's second unit has a flipped byte;
 * the index is cut there and rebuilt from the log. */
static void test_damaged_index_unit_middle(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "index/0000000000/00000000000000000000.idx");
    flip(p, 48 + 10);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    uint32_t q0 = NB / NQ;                               /* batches of queue 0 */
    assert_int_equal(rec.dropped_units, q0 - 1);
    assert_int_equal(rec.rebuilt_units, q0 - 1);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* A truncated index file: queue 1's first file lost its tail (2.5 units left);
 * its later files cannot follow, so the queue is rebuilt from unit 2. */
static void test_truncated_index_file(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "index/0000000001/00000000000000000000.idx");
    assert_int_equal(truncate(p, 48 * 2 + 24), 0);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    uint32_t q1 = NB / NQ;
    assert_int_equal(rec.rebuilt_units, q1 - 2);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* A truncated last index file: queue 2's newest file was cut in the middle
 * of a unit; the lost units are rebuilt, and the cut unit's leftover bytes do
 * not read as damage at the next open. */
static void test_truncated_last_index_file(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char qdir[600], last[1000] = "";
    path_of(qdir, sizeof qdir, dir, "index/0000000002");
    DIR *d = opendir(qdir);
    assert_non_null(d);
    struct dirent *de;
    char best[300] = "";
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".idx") && strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof best, "%s", de->d_name);
    closedir(d);
    assert_string_not_equal(best, "00000000000000000000.idx");   /* not the only file */
    snprintf(last, sizeof last, "%s/%s", qdir, best);
    uint8_t unit[48], zz[48] = {0};
    peek(last, 48 * 2, unit, sizeof unit);
    assert_memory_not_equal(unit, zz, sizeof unit);               /* it holds >= 3 units */
    assert_int_equal(truncate(last, 48 + 20), 0);                 /* 1 unit + 20 bytes */
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_true(rec.rebuilt_units >= 2);
    assert_int_equal(rn_log_close(log), 0);
    log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 1);
    assert_int_equal(rec.scanned_bytes + rec.dropped_units + rec.rebuilt_units, 0);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Damaged checkpoint: no index is trusted; all are rebuilt. */
static void test_damaged_checkpoint(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "checkpoint");
    flip(p, 9);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.rebuilt_units, NB);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Missing checkpoint: the same as a damaged one. */
static void test_missing_checkpoint(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "checkpoint");
    assert_int_equal(unlink(p), 0);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.rebuilt_units, NB);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* Missing clean marker after an orderly close: the scan starts at the
 * checkpoint (the end), finds nothing to do, and keeps every index. */
static void test_missing_clean_marker(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "clean");
    assert_int_equal(unlink(p), 0);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 0);
    assert_int_equal(rec.scanned_bytes, 0);
    assert_int_equal(rec.rebuilt_units, 0);
    assert_int_equal(rec.dropped_units, 0);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* A damaged clean marker counts as absent. */
static void test_damaged_clean_marker(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    char p[600];
    path_of(p, sizeof p, dir, "clean");
    flip(p, 10);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 0);
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* A clean marker and checkpoint that vouch for an entry the log no longer
 * holds (the last entry zeroed after an orderly close): that batch was
 * acknowledged, so the open refuses, naming it; accepting the loss rebuilds
 * every index, marks its offsets lost and keeps the queue's next offset. */
static void test_clean_marker_but_entry_lost(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    assert_int_equal(n, NB);
    zero(e[n - 1].path, e[n - 1].off, 16 + e[n - 1].len);
    rn_log_opts_t o;
    opts(&o);
    char err[RN_ERRMSG_SIZE] = "", want[96];
    rn_log_t *log = NULL;
    assert_int_equal(rn_log_open(dir, &o, &log, err), RN_ECORRUPT);
    drange_t d = batch_range(n - 1);
    snprintf(want, sizeof want, "queue %u offsets [%" PRId64 ", %" PRId64 ")", d.q, d.from, d.to);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    rn_log_recovery_t rec;
    log = open_opts(dir, &rec, 1);
    assert_int_equal(rec.lost_ranges, 1);
    expect_one_range(&rec, RN_LOG_RANGE_LOST, d);
    verify_damage(log, dir, NB, &d, 1, "lost");
    rn_test_tmpdir_free(dir);
}

/* A clean reopen trusts the marker: no scan, nothing rebuilt. */
static void test_clean_reopen(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    rn_log_check_t ck;
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_log_check(dir, &ck, err), 0);
    assert_int_equal(ck.entries, NB);
    assert_int_equal(ck.bad_entries + ck.bad_bytes + ck.damaged_units + ck.tail_bytes, 0);
    assert_string_equal(ck.first, "");
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.clean, 1);
    assert_int_equal(rec.scanned_bytes, 0);
    assert_int_equal(rec.rebuilt_units + rec.dropped_units + rec.truncated_bytes, 0);
    char line[512];
    assert_int_equal(rn_log_recovery_format(&rec, line, sizeof line), 0);
    assert_non_null(strstr(line, "clean shutdown"));
    check_survivors(log, dir, NB);
    rn_test_tmpdir_free(dir);
}

/* A segment missing from the middle of the log is an error naming the files,
 * not a crash or a silent loss. */
static void test_missing_middle_segment(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    rn_log_t *log = open_ok(dir, NULL);
    fill(log, 0, 4 * NB);
    assert_int_equal(rn_log_close(log), 0);
    ent_t e[4 * NB + 8];
    int n = walk(dir, e, 4 * NB + 8);
    assert_int_equal(n, 4 * NB);
    const char *mid = e[n / 2].path;
    assert_int_not_equal(strcmp(mid, e[0].path), 0);
    assert_int_equal(unlink(mid), 0);
    rn_log_opts_t o;
    opts(&o);
    char err[RN_ERRMSG_SIZE] = "";
    log = NULL;
    assert_int_equal(rn_log_open(dir, &o, &log, err), RN_ECORRUPT);
    assert_null(log);
    assert_non_null(strstr(err, ".log"));
    assert_non_null(strstr(err, "does not end where"));
    rn_test_tmpdir_free(dir);
}

/* The first entry (fill batch) after the last recovery point: a crash
 * leaves it and everything after it to the scan. */
static int first_after_roll(const ent_t *e, int n)
{
    int j = n - 1;
    while (j > 0 && strcmp(e[j - 1].path, e[n - 1].path) == 0) j--;
    return j;
}

/* A flipped record byte (Kafka CRC) in the first batch after the recovery
 * point, with intact batches after it, after a kill -9: the batch's offsets
 * are marked damaged (its index unit says which), every later batch stays,
 * and nothing is truncated. */
static void test_flipped_record_byte_mid_log(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    assert_int_equal(n, NB);
    int j = first_after_roll(e, n);
    assert_true(n - j >= 4);                              /* intact batches follow */
    flip(e[j].path, e[j].off + 16 + e[j].len - 5);
    /* The offline check sees it before any open. */
    rn_log_check_t ck;
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_log_check(dir, &ck, err), 0);
    assert_int_equal(ck.entries, NB - 1);
    assert_int_equal(ck.bad_entries, 1);
    assert_int_equal(ck.bad_bytes, 16 + e[j].len);
    assert_int_equal(ck.damaged_units, 0);
    assert_non_null(strstr(ck.first, "fails its CRC"));
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    assert_int_equal(rec.skipped_bytes, 16 + e[j].len);
    drange_t d = batch_range(j);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    /* After: the same bad entry, now marked in the index; the appends after
     * it (one per queue) are intact. */
    assert_int_equal(rn_log_check(dir, &ck, err), 0);
    assert_int_equal(ck.entries, NB - 1 + NQ);
    assert_int_equal(ck.bad_entries, 1);
    assert_int_equal(ck.damaged_units, 1);
    assert_int_equal(ck.tail_bytes, 0);
    rn_test_tmpdir_free(dir);
}

/* The same with the entry header's queue id flipped (its header CRC fails,
 * so neither its queue nor its length can be trusted from the log). */
static void test_flipped_header_byte_mid_log(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = first_after_roll(e, n) + 1;
    assert_true(n - j >= 3);
    flip(e[j].path, e[j].off + 4);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    drange_t d = batch_range(j);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    rn_test_tmpdir_free(dir);
}

/* A flipped record byte in the middle of the log with the checkpoint gone:
 * no index is trusted and everything is rebuilt from the first segment; the
 * damaged entry's header (its CRC holds) says whose offsets it held, and the
 * batches after it, in every segment, stay. */
static void test_flipped_record_byte_no_checkpoint(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    char p[600];
    path_of(p, sizeof p, dir, "checkpoint");
    assert_int_equal(unlink(p), 0);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = n / 3;
    flip(e[j].path, e[j].off + 16 + e[j].len - 5);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    assert_int_equal(rec.rebuilt_units, NB - 1);
    drange_t d = batch_range(j);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    rn_test_tmpdir_free(dir);
}

/* A flipped length byte in an entry header in the middle of the log with the
 * checkpoint gone: nothing says where the entry ended, so the scan searches
 * for the next intact entry; the queue's next batch shows which offsets
 * were in the damage. */
static void test_flipped_header_byte_no_checkpoint(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    char p[600];
    path_of(p, sizeof p, dir, "checkpoint");
    assert_int_equal(unlink(p), 0);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = n / 2;
    flip(e[j].path, e[j].off + 1);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    assert_int_equal(rec.skipped_bytes, 16 + e[j].len);
    drange_t d = batch_range(j);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    rn_test_tmpdir_free(dir);
}

/* The damaged entry's own record count is what was flipped (its header CRC
 * holds, Kafka's does not), checkpoint gone: the count it claims is only a
 * guess, and the queue's next intact batch fixes where its offsets end. */
static void test_flipped_record_count_no_checkpoint(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    char p[600];
    path_of(p, sizeof p, dir, "checkpoint");
    assert_int_equal(unlink(p), 0);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = n / 2;
    flip(e[j].path, e[j].off + 16 + 60);                 /* recordCount's low byte */
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 1);
    drange_t d = batch_range(j);
    expect_one_range(&rec, RN_LOG_RANGE_DAMAGED, d);
    verify_damage(log, dir, NB, &d, 1, "damaged");
    rn_test_tmpdir_free(dir);
}

/* Zeros in the middle of the last segment (two entries never reached the
 * disk, later ones did) while the index describes them: a hole, not the
 * end; the two batches are marked damaged and the later ones stay. */
static void test_zeroed_entries_mid_log(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_crash(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = first_after_roll(e, n) + 1;
    assert_true(n - j >= 4);
    assert_string_equal(e[j].path, e[j + 1].path);
    zero(e[j].path, e[j].off, 16 + e[j].len);
    zero(e[j + 1].path, e[j + 1].off, 16 + e[j + 1].len);
    rn_log_recovery_t rec;
    rn_log_t *log = open_ok(dir, &rec);
    assert_int_equal(rec.truncated_bytes, 0);
    assert_int_equal(rec.damaged_batches, 2);
    assert_int_equal(rec.skipped_bytes, 32 + e[j].len + e[j + 1].len);
    drange_t d[2] = {batch_range(j), batch_range(j + 1)};
    verify_damage(log, dir, NB, d, 2, "damaged");
    rn_test_tmpdir_free(dir);
}

/* ---- acknowledged data missing --------------------------------------------------- */

/* How a segment goes missing. */
enum { SEG_TRUNCATED, SEG_DELETED, SEG_EMPTIED };

/* After an orderly close the last segment loses entries (cut in the middle
 * of its entries, deleted, or emptied). The checkpoint says each queue's
 * next offset, so the open refuses, naming the queues and offsets missing
 * and how to accept the loss; with accept_loss it opens, the lost offsets
 * read as lost, and the next offsets stay where they were. */
static void missing_segment(int how)
{
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = first_after_roll(e, n);
    assert_true(j > 0 && n - j >= 3);
    int keep = how == SEG_TRUNCATED ? j + 2 : j;          /* batches left */
    if (how == SEG_TRUNCATED) assert_int_equal(truncate(e[j].path, (off_t)e[j + 2].off + 7), 0);
    if (how == SEG_DELETED) assert_int_equal(unlink(e[j].path), 0);
    if (how == SEG_EMPTIED) assert_int_equal(truncate(e[j].path, 0), 0);

    rn_log_opts_t o;
    opts(&o);
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    assert_int_equal(rn_log_open(dir, &o, &log, err), RN_ECORRUPT);
    assert_null(log);
    assert_non_null(strstr(err, "lost acknowledged data"));
    assert_non_null(strstr(err, "runnel store repair --accept-loss"));
    drange_t lost[NQ];
    int nl = 0;
    for (uint32_t q = 0; q < NQ; q++)
        if (expect_hw(keep, q) < expect_hw(NB, q))
            lost[nl++] = (drange_t){q, expect_hw(keep, q), expect_hw(NB, q)};
    assert_true(nl >= 1);
    char want[96];
    snprintf(want, sizeof want, "queue %u offsets [%" PRId64 ", %" PRId64 ")", lost[0].q,
             lost[0].from, lost[0].to);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    /* Refusing changed nothing: it refuses again. */
    assert_int_equal(rn_log_open(dir, &o, &log, err), RN_ECORRUPT);

    rn_log_recovery_t rec;
    log = open_opts(dir, &rec, 1);
    assert_int_equal(rec.lost_ranges, (uint32_t)nl);
    uint32_t seen = 0;
    for (uint32_t i = 0; i < rec.nranges && i < RN_LOG_REC_RANGES; i++) {
        if (rec.ranges[i].kind != RN_LOG_RANGE_LOST) continue;
        const drange_t *d = range_at(lost, nl, rec.ranges[i].queue, rec.ranges[i].from);
        assert_non_null(d);
        assert_int_equal(rec.ranges[i].to, d->to);
        seen++;
    }
    assert_int_equal(seen, (uint32_t)nl);
    char line[1024];
    assert_int_equal(rn_log_recovery_format(&rec, line, sizeof line), 1);
    assert_non_null(strstr(line, "lost"));
    verify_damage(log, dir, NB, lost, nl, "lost");
    rn_test_tmpdir_free(dir);
}

static void test_truncated_segment(void **state) { (void)state; missing_segment(SEG_TRUNCATED); }
static void test_deleted_segment(void **state) { (void)state; missing_segment(SEG_DELETED); }
static void test_emptied_segment(void **state) { (void)state; missing_segment(SEG_EMPTIED); }

/* An entry whose bytes no longer match its index unit while the store is
 * open (a read error the recovery could not see): one read returns every
 * batch before it, the next read fails naming the queue and its offsets. */
static void test_read_stops_before_damage(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    fill_clean(dir);
    rn_log_t *log = open_ok(dir, NULL);
    ent_t e[NB + 8];
    int n = walk(dir, e, NB + 8);
    int j = n / 2;
    flip(e[j].path, e[j].off + 16 + 7);                  /* its base offset */
    drange_t d = batch_range(j);
    char err[RN_ERRMSG_SIZE];
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_log_read(log, d.q, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, (uint32_t)(j / NQ));               /* the batches before it */
    rn_buf_free(&out);
    out = (rn_buf_t)RN_BUF_INIT;
    assert_int_equal(rn_log_read(log, d.q, d.from, 1 << 20, &out, &nb, err), RN_ECORRUPT);
    assert_int_equal(nb, 0);
    char want[96];
    snprintf(want, sizeof want, "queue %u at offsets [%" PRId64 ", %" PRId64 ")", d.q, d.from,
             d.to);
    if (!strstr(err, want)) fail_msg("'%s' lacks '%s'", err, want);
    rn_buf_free(&out);
    assert_int_equal(rn_log_close(log), 0);
    rn_test_tmpdir_free(dir);
}

/* ---- through a data directory ------------------------------------------------------ */

typedef struct reports {
    int  n, warn;
    char last[2048];
} reports_t;

static void on_report(void *arg, int warn, const char *line)
{
    reports_t *r = arg;
    r->n++;
    r->warn |= warn;
    snprintf(r->last, sizeof r->last, "%s", line);
}

static rn_datadir_t *dd_open(const char *dir, int create, int accept_loss, reports_t *rep,
                             int expect_rc, char *err)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    opts(&o.log);
    o.log.accept_loss = accept_loss;
    o.create = create;
    o.report = rep ? on_report : NULL;
    o.report_arg = rep;
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(dir, &o, &d, err);
    if (rc != expect_rc) fail_msg("datadir open %s: %s (%s)", dir, rn_strerror(rc), err);
    return d;
}

/* Five batches of two records to topic t queue 0 (logical offsets 0..9). */
static void dd_fill(rn_datadir_t *d)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    assert_int_equal(rn_datadir_topic_create(d, "t", 1, &t, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    for (int i = 0; i < 5; i++) {
        rn_test_records_t spec = {.prefix = "r", .first = 2 * i, .n = 2, .ts0 = 1000, .ts_step = 1};
        rn_batch_builder_t b;
        const uint8_t *batch;
        size_t len;
        rn_test_batch_build(&b, &spec, &batch, &len);
        int64_t base;
        uint64_t ticket;
        assert_int_equal(rn_datadir_append(d, &q, batch, len, &base, &ticket, err), 0);
        assert_int_equal(rn_datadir_wait(d, ticket), 0);
        assert_int_equal(base, 2 * i);
        rn_batch_builder_destroy(&b);
    }
    rn_datadir_queue_close(&q);
}

/* A batch whose bytes are damaged under a data directory: the read error
 * names the topic, the logical queue and offsets and how to go past them,
 * and a read from the start returns the batches before it. Every open
 * reports what recovery did. */
static void test_datadir_names_damage(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    char err[RN_ERRMSG_SIZE] = "";
    reports_t rep = {0};
    rn_datadir_t *d = dd_open(dir, 1, 0, &rep, 0, err);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.warn, 0);
    assert_non_null(strstr(rep.last, "store 0"));
    dd_fill(d);
    assert_int_equal(rn_datadir_close(d), 0);
    char st[600];
    snprintf(st, sizeof st, "%s/stores/0", dir);
    ent_t e[8];
    assert_int_equal(walk(st, e, 8), 5);
    flip(e[2].path, e[2].off + 16 + 7);                     /* batch 2's base offset */
    d = dd_open(dir, 0, 0, &rep, 0, err);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 2);
    rn_buf_free(&out);
    out = (rn_buf_t)RN_BUF_INIT;
    assert_int_equal(rn_datadir_read(d, &q, 4, 1 << 20, &out, &nb, err), RN_ECORRUPT);
    if (!strstr(err, "topic 't' queue 0 offsets [4, 6)") || !strstr(err, "--skip-damaged"))
        fail_msg("'%s' does not name the topic, offsets and the way past", err);
    rn_buf_free(&out);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
    rn_test_tmpdir_free(dir);
}

/* Damage after a clean shutdown, which a clean open does not look for: the
 * consumer's CRC check names it (topic, queue, offset); with skip_damaged
 * the consumer goes past that batch, counted. */
static void test_consumer_skips_unseen_damage(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    char err[RN_ERRMSG_SIZE] = "", st[600];
    rn_datadir_t *d = dd_open(dir, 1, 0, NULL, 0, err);
    dd_fill(d);
    assert_int_equal(rn_datadir_close(d), 0);
    snprintf(st, sizeof st, "%s/stores/0", dir);
    ent_t e[8];
    assert_int_equal(walk(st, e, 8), 5);
    flip(e[2].path, e[2].off + 16 + e[2].len - 5);           /* batch 2, offsets [4, 6) */
    d = dd_open(dir, 0, 0, NULL, 0, err);
    for (int skip = 0; skip < 2; skip++) {
        rn_consumer_opts_t co = {.skip_damaged = skip};
        rn_consumer_t *c;
        assert_int_equal(rn_consumer_create(d, &co, &c, err), 0);
        assert_int_equal(rn_consumer_assign(c, "t", 0, 0, err), 0);
        rn_consumer_batch_t b;
        int rc, seen = 0;
        int64_t last = -1;
        while ((rc = rn_consumer_poll(c, &b, err)) == 1)
            for (uint32_t i = 0; i < b.count; i++, seen++) last = b.records[i].offset;
        uint64_t skipped, ranges;
        rn_consumer_skipped(c, &skipped, &ranges);
        if (!skip) {
            assert_int_equal(rc, RN_ECORRUPT);
            if (!strstr(err, "topic 't' queue 0: the batch read at offset 4 is damaged"))
                fail_msg("'%s'", err);
            assert_int_equal(seen, 4);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(seen, 8);
            assert_int_equal(last, 9);
            assert_int_equal(skipped, 2);
            assert_int_equal(ranges, 1);
        }
        rn_consumer_destroy(c);
    }
    assert_int_equal(rn_datadir_close(d), 0);
    rn_test_tmpdir_free(dir);
}

/* A removed store: meta.db maps topic t's queue to store 0, whose directory
 * is gone. The open refuses, naming the store and how to accept the loss;
 * accepting it moves the queue's end past every offset that may have been
 * acknowledged (10 were; a group had committed only 4), to the reservation
 * meta.db holds, so no offset is handed out twice, and reads of the lost
 * offsets say so. */
static void test_removed_store(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = dd_open(dir, 1, 0, NULL, 0, err);
    dd_fill(d);
    rn_meta_topic_t t;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    assert_int_equal(rn_meta_topic_get(m, "t", &t, err), 0);
    rn_meta_offset_t off = {.topic_id = t.id, .queue = 0, .offset = 4};
    assert_int_equal(rn_meta_offsets_commit(m, "g", &off, 1, err), 0);
    rn_datadir_meta_unlock(d);
    assert_int_equal(rn_datadir_close(d), 0);
    char st[600];
    snprintf(st, sizeof st, "%s/stores/0", dir);
    assert_int_equal(rn_test_rmtree(st), 0);

    d = dd_open(dir, 0, 0, NULL, RN_ECORRUPT, err);
    assert_null(d);
    assert_non_null(strstr(err, "store 0"));
    assert_non_null(strstr(err, "runnel store repair --accept-loss"));

    reports_t rep = {0};
    d = dd_open(dir, 0, 1, &rep, 0, err);
    assert_int_equal(rep.warn, 1);
    /* The first append (offsets [0, 2)) recorded a reservation 2^20 past its
     * end; the later ones stayed below it. */
    enum { RESV = 2 + (1 << 20) };
    char want[96];
    snprintf(want, sizeof want, "queue 0 offsets [0, %d) lost", RESV);
    if (!strstr(rep.last, want)) fail_msg("report '%s' lacks '%s'", rep.last, want);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    rn_datadir_queue_info_t qi;
    assert_int_equal(rn_datadir_queue_info(d, &q, &qi, err), 0);
    assert_int_equal(qi.high_watermark, RESV);   /* the reservation: past all 10 */
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb;
    assert_int_equal(rn_datadir_read(d, &q, 0, 4096, &out, &nb, err), RN_EDAMAGED);
    snprintf(want, sizeof want, "topic 't' queue 0 offsets [0, %d) are lost", RESV);
    if (!strstr(err, want))
        fail_msg("'%s' does not name the lost offsets", err);
    rn_buf_free(&out);
    rn_test_records_t spec = {.prefix = "r", .first = RESV, .n = 1, .ts0 = 1000,
                              .ts_step = 1};
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    rn_test_batch_build(&b, &spec, &batch, &len);
    int64_t base;
    uint64_t ticket;
    assert_int_equal(rn_datadir_append(d, &q, batch, len, &base, &ticket, err), 0);
    assert_int_equal(base, RESV);   /* not 4 or 8: nothing acknowledged is reused */
    rn_batch_builder_destroy(&b);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
    /* Accepted once: later opens are plain. */
    d = dd_open(dir, 0, 0, NULL, 0, err);
    assert_int_equal(rn_datadir_close(d), 0);
    rn_test_tmpdir_free(dir);
}

#ifndef RN_CORE_TESTS_ONLY
/* runneld logs what each store's recovery did: warn, with the offsets, when
 * a batch was marked damaged; info after a clean shutdown. (Not in the
 * ThreadSanitizer leg, which links the core library only.) */
static void test_runneld_logs_recovery(void **state)
{
    (void)state;
    char *dir = rn_test_tmpdir_new("test-logrec");
    char err[RN_ERRMSG_SIZE] = "", data[600], p[700];
    snprintf(data, sizeof data, "%s/data", dir);
    rn_datadir_t *d = dd_open(data, 1, 0, NULL, 0, err);
    dd_fill(d);
    assert_int_equal(rn_datadir_close(d), 0);
    snprintf(p, sizeof p, "%s/stores/0", data);
    ent_t e[8];
    assert_int_equal(walk(p, e, 8), 5);
    flip(e[2].path, e[2].off + 16 + e[2].len - 5);          /* batch 2, offsets [4, 6) */
    snprintf(p, sizeof p, "%s/stores/0/checkpoint", data);
    assert_int_equal(unlink(p), 0);                          /* so recovery verifies it all */
    rn_test_runneld_t r;
    assert_int_equal(rn_test_runneld_start(&r, data, NULL), 0);
    /* A remote read of the damaged offsets: DATA_LOSS, as RN_EDAMAGED, named. */
    rn_client_t *c = NULL;
    rn_client_consumer_t *k = NULL;
    assert_int_equal(rn_client_open_server(r.addr, NULL, &c, err), 0);
    assert_int_equal(rn_client_consumer_open(c, NULL, &k, err), 0);
    assert_int_equal(rn_client_consumer_assign(k, "t", 0, 4, err), 0);
    rn_consumer_batch_t b;
    assert_int_equal(rn_client_consumer_poll(k, &b, 2000, err), RN_EDAMAGED);
    if (!strstr(err, "topic 't' queue 0 offsets [4, 6) are damaged")) fail_msg("'%s'", err);
    rn_client_consumer_close(k);
    rn_client_close(c);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
    char *log = rn_test_slurp(r.log, NULL);
    const char *w = strstr(log, " warn ");
    if (!w || !strstr(w, "store 0") || !strstr(w, "queue 0 offsets [4, 6) damaged"))
        fail_msg("runneld log lacks the warning: %s", log);
    free(log);
    assert_int_equal(rn_test_runneld_start(&r, data, NULL), 0);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
    log = rn_test_slurp(r.log, NULL);
    if (!strstr(log, "info  store 0 (stores/0): recovery: clean shutdown"))
        fail_msg("runneld log lacks the clean report: %s", log);
    free(log);
    rn_test_tmpdir_free(dir);
}
#endif

/* Every test starts with the real system calls (rn_test_reset_sys), even
 * after a failed one. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_crash_nothing_damaged, rn_test_reset_sys),
        cmocka_unit_test_setup(test_torn_tail, rn_test_reset_sys),
        cmocka_unit_test_setup(test_garbage_tail, rn_test_reset_sys),
        cmocka_unit_test_setup(test_zeroed_tail, rn_test_reset_sys),
        cmocka_unit_test_setup(test_bad_header_crc_last_entry, rn_test_reset_sys),
        cmocka_unit_test_setup(test_bad_batch_crc_last_entries, rn_test_reset_sys),
        cmocka_unit_test_setup(test_bad_batch_crc_before_last_entry, rn_test_reset_sys),
        cmocka_unit_test_setup(test_bad_base_offset, rn_test_reset_sys),
        cmocka_unit_test_setup(test_missing_index_dir, rn_test_reset_sys),
        cmocka_unit_test_setup(test_damaged_index_unit_middle, rn_test_reset_sys),
        cmocka_unit_test_setup(test_truncated_index_file, rn_test_reset_sys),
        cmocka_unit_test_setup(test_truncated_last_index_file, rn_test_reset_sys),
        cmocka_unit_test_setup(test_damaged_checkpoint, rn_test_reset_sys),
        cmocka_unit_test_setup(test_missing_checkpoint, rn_test_reset_sys),
        cmocka_unit_test_setup(test_missing_clean_marker, rn_test_reset_sys),
        cmocka_unit_test_setup(test_damaged_clean_marker, rn_test_reset_sys),
        cmocka_unit_test_setup(test_clean_marker_but_entry_lost, rn_test_reset_sys),
        cmocka_unit_test_setup(test_clean_reopen, rn_test_reset_sys),
        cmocka_unit_test_setup(test_missing_middle_segment, rn_test_reset_sys),
        cmocka_unit_test_setup(test_flipped_record_byte_mid_log, rn_test_reset_sys),
        cmocka_unit_test_setup(test_flipped_header_byte_mid_log, rn_test_reset_sys),
        cmocka_unit_test_setup(test_flipped_record_byte_no_checkpoint, rn_test_reset_sys),
        cmocka_unit_test_setup(test_flipped_header_byte_no_checkpoint, rn_test_reset_sys),
        cmocka_unit_test_setup(test_zeroed_entries_mid_log, rn_test_reset_sys),
        cmocka_unit_test_setup(test_flipped_record_count_no_checkpoint, rn_test_reset_sys),
        cmocka_unit_test_setup(test_truncated_segment, rn_test_reset_sys),
        cmocka_unit_test_setup(test_deleted_segment, rn_test_reset_sys),
        cmocka_unit_test_setup(test_emptied_segment, rn_test_reset_sys),
        cmocka_unit_test_setup(test_read_stops_before_damage, rn_test_reset_sys),
        cmocka_unit_test_setup(test_datadir_names_damage, rn_test_reset_sys),
        cmocka_unit_test_setup(test_removed_store, rn_test_reset_sys),
        cmocka_unit_test_setup(test_consumer_skips_unseen_damage, rn_test_reset_sys),
#ifndef RN_CORE_TESTS_ONLY
        cmocka_unit_test_setup(test_runneld_logs_recovery, rn_test_reset_sys),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_consumer.c — the embedded consumer and the read path across mapping
 * items: reads, seeks by offset and time, watermarks and bounded reads over
 * items on two stores; round-robin order and record/header views; remap
 * while producing and consuming from three threads (no gap and no duplicate
 * in logical offsets); retention dropping emptied items and advancing the
 * logical start; Kafka clients' gzip, snappy, lz4 and zstd batches read back;
 * rn_consumer_wait under every fsync policy: it wakes for an append made by
 * another thread while it waits (the delay measured against a bound), returns
 * at once for one made between the poll and the wait, and times out when
 * nothing is appended.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "tests/util/util.h"

typedef struct fixture {
    char root[64];
    char dir[PATH_MAX];
    char store[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "consumer") != 0) { free(f); return -1; }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
    snprintf(f->store, sizeof f->store, "%s/disk2", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = rn_test_rmtree(f->root);
    free(f);
    return rc == 0 ? 0 : -1;
}

static rn_datadir_t *open_dir(const char *dir, uint64_t segment_bytes, uint64_t retention_bytes)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "test_consumer";
    o.log.fsync = RN_FSYNC_NEVER;
    o.log.segment_bytes = segment_bytes;
    o.log.max_batch_bytes = 1u << 12;
    o.log.retention_bytes = retention_bytes;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(dir, &o, &d, err);
    if (rc != 0) fail_msg("rn_datadir_open(%s): %d %s", dir, rc, err);
    return d;
}

/* One batch of n records "r<first+i>", timestamps ts0 + i, each with a
 * header "h" = "<first+i>". Returns the logical base offset. */
static int64_t append_seq(rn_datadir_t *d, rn_datadir_queue_t *q, int first, int n, int64_t ts0)
{
    assert_true(n <= 16);
    rn_test_records_t spec = {.prefix = "r", .first = first, .n = n, .ts0 = ts0, .ts_step = 1,
                              .header_key = "h"};
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    rn_test_batch_build(&b, &spec, &batch, &len);
    char err[RN_ERRMSG_SIZE] = "";
    int64_t base = -1;
    uint64_t ticket = 0;
    if (rn_datadir_append(d, q, batch, len, &base, &ticket, err) != 0) fail_msg("append: %s", err);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_batch_builder_destroy(&b);
    return base;
}

/* The record's value is r<offset> and its one header h=<offset>. */
static void check_record(const rn_record_t *r, int64_t offset)
{
    char val[24], hv[24];
    snprintf(val, sizeof val, "r%lld", (long long)offset);
    snprintf(hv, sizeof hv, "%lld", (long long)offset);
    assert_int_equal(r->offset, offset);
    assert_int_equal(r->value_len, (int32_t)strlen(val));
    assert_memory_equal(r->value, val, strlen(val));
    assert_int_equal(r->header_count, 1);
    assert_int_equal(r->headers[0].value_len, (int32_t)strlen(hv));
    assert_memory_equal(r->headers[0].value, hv, strlen(hv));
}

/* Poll everything from the consumer; returns the count, checking density
 * from `from`. */
static int64_t drain(rn_consumer_t *c, int64_t from)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_consumer_batch_t b;
    int64_t next = from;
    int rc;
    while ((rc = rn_consumer_poll(c, &b, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++) check_record(&b.records[i], next++);
        assert_int_equal(b.next_offset, next);
    }
    if (rc < 0) fail_msg("poll: %s", err);
    return next - from;
}

/* Items: [0,9) store 0, [9,14) store 0, [14,...) on the second store. */
static void three_items(fixture_t *f, rn_datadir_t *d)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_topic_create(d, "t", 1, NULL, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    assert_int_equal(append_seq(d, &q, 0, 5, 100), 0);
    assert_int_equal(append_seq(d, &q, 5, 4, 105), 5);
    assert_int_equal(rn_datadir_remap(d, "t", 0, NULL, NULL, NULL, err), 0);
    assert_int_equal(append_seq(d, &q, 9, 5, 200), 9);       /* q re-resolves itself */
    assert_int_equal(rn_datadir_remap(d, "t", 0, f->store, NULL, NULL, err), 0);
    assert_int_equal(append_seq(d, &q, 14, 3, 300), 14);
    assert_int_equal(append_seq(d, &q, 17, 3, 303), 17);
    assert_int_equal(q.nitems, 3);
    assert_int_equal(q.items[2].store_id, 1);
    rn_datadir_queue_close(&q);
}

static void test_read_across_items(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir, 1u << 20, 0);
    three_items(f, d);
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    uint32_t nq = 0;
    assert_int_equal(rn_consumer_queues(c, "t", &nq, err), 0);
    assert_int_equal(nq, 1);
    assert_int_equal(rn_consumer_assign(c, "t", 0, 0, err), 0);
    assert_int_equal(rn_consumer_assign(c, "t", 0, 0, err), RN_EEXIST);
    assert_int_equal(drain(c, 0), 20);
    int64_t pos = -1, ls = -1, hw = -1;
    assert_int_equal(rn_consumer_position(c, "t", 0, &pos, err), 0);
    assert_int_equal(pos, 20);
    assert_int_equal(rn_consumer_watermarks(c, "t", 0, &ls, &hw, err), 0);
    assert_int_equal(ls, 0);
    assert_int_equal(hw, 20);

    /* Seeks: into the middle of the second item's batch; to each item
     * boundary; by time into the third item and past every record. */
    int64_t seeks[] = {11, 9, 14, 0, 20};
    for (size_t i = 0; i < sizeof seeks / sizeof seeks[0]; i++) {
        assert_int_equal(rn_consumer_seek(c, "t", 0, seeks[i], err), 0);
        assert_int_equal(drain(c, seeks[i]), 20 - seeks[i]);
    }
    assert_int_equal(rn_consumer_seek(c, "t", 0, 21, err), RN_ERANGE);
    assert_string_equal(err, "offset 21 is outside topic 't' queue 0's range [0, 20]");
    assert_int_equal(rn_consumer_seek_time(c, "t", 0, 301, err), 0);
    assert_int_equal(drain(c, 15), 5);
    assert_int_equal(rn_consumer_seek_time(c, "t", 0, 150, err), 0);  /* first >= 150: 9 */
    assert_int_equal(drain(c, 9), 11);
    assert_int_equal(rn_consumer_seek_time(c, "t", 0, 99999, err), 0);
    assert_int_equal(drain(c, 20), 0);
    /* Bounded: stop inside the second item's batch. */
    assert_int_equal(rn_consumer_seek(c, "t", 0, 3, err), 0);
    assert_int_equal(rn_consumer_set_end(c, "t", 0, 12, err), 0);
    assert_int_equal(drain(c, 3), 9);
    assert_int_equal(rn_consumer_set_end(c, "nope", 0, 12, err), RN_ENOTFOUND);
    rn_consumer_destroy(c);

    /* rn_datadir_read crosses items only with whole batches that fit. */
    rn_datadir_queue_t q;
    rn_buf_t buf = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    assert_int_equal(rn_datadir_read(d, &q, 5, 1, &buf, &nb, err), 0);
    assert_int_equal(nb, 1);                      /* at least one batch */
    buf.len = 0;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &buf, &nb, err), 0);
    assert_int_equal(nb, 5);                      /* every batch of the 3 items */
    rn_buf_free(&buf);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);

    /* After a restart: the same records, the second store reopened. */
    d = open_dir(f->dir, 1u << 20, 0);
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    assert_int_equal(rn_consumer_assign(c, "t", 0, 0, err), 0);
    assert_int_equal(drain(c, 0), 20);
    rn_consumer_destroy(c);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void test_round_robin_and_views(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir, 1u << 20, 0);
    assert_int_equal(rn_datadir_topic_create(d, "rr", 3, NULL, err), 0);
    rn_datadir_queue_t q[3];
    for (uint32_t i = 0; i < 3; i++) assert_int_equal(rn_datadir_queue_open(d, "rr", i, &q[i], err), 0);
    /* queue 0: 3 batches, queue 1: 1 batch, queue 2: 2 batches */
    int counts[3] = {3, 1, 2};
    for (uint32_t i = 0; i < 3; i++)
        for (int k = 0; k < counts[i]; k++) append_seq(d, &q[i], k * 4, 4, 10);
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    for (uint32_t i = 0; i < 3; i++) assert_int_equal(rn_consumer_assign(c, "rr", i, 0, err), 0);
    uint32_t want_q[] = {0, 1, 2, 0, 2, 0};
    int64_t want_first[] = {0, 0, 0, 4, 4, 8};
    rn_consumer_batch_t b;
    for (size_t k = 0; k < 6; k++) {
        assert_int_equal(rn_consumer_poll(c, &b, err), 1);
        assert_int_equal(b.queue, want_q[k]);
        assert_string_equal(b.topic, "rr");
        assert_int_equal(b.count, 4);
        /* Every record's views stay valid until the next poll (headers are
         * copied out of the iterator, which reuses its header array). */
        for (uint32_t i = 0; i < b.count; i++) check_record(&b.records[i], want_first[k] + i);
    }
    assert_int_equal(rn_consumer_poll(c, &b, err), 0);
    /* New data shows up on the next poll. */
    append_seq(d, &q[1], 4, 2, 10);
    assert_int_equal(rn_consumer_poll(c, &b, err), 1);
    assert_int_equal(b.queue, 1);
    assert_int_equal(b.count, 2);
    rn_consumer_destroy(c);
    for (uint32_t i = 0; i < 3; i++) rn_datadir_queue_close(&q[i]);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* ---- remap while producing and consuming ------------------------------- */

#define BATCHES 300
#define PER     5
#define REMAPS  12

typedef struct shared {
    rn_datadir_t *d;
    const char   *store;
    atomic_int    produced;         /* batches appended */
    atomic_int    done;
    int64_t       consumed;
    atomic_int    failed;
    char          err[RN_ERRMSG_SIZE];
} shared_t;

static void *producer(void *arg)
{
    shared_t *s = arg;
    rn_datadir_queue_t q;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_datadir_queue_open(s->d, "live", 0, &q, err) != 0) { s->failed = 1; return NULL; }
    for (int i = 0; i < BATCHES && !s->failed; i++) {
        int64_t base = append_seq(s->d, &q, i * PER, PER, i);
        if (base != (int64_t)i * PER) {
            snprintf(s->err, sizeof s->err, "batch %d got base %lld", i, (long long)base);
            s->failed = 1;
        }
        atomic_store(&s->produced, i + 1);
        if (i % 16 == 0) sched_yield();
    }
    rn_datadir_queue_close(&q);
    atomic_store(&s->done, 1);
    return NULL;
}

static void *remapper(void *arg)
{
    shared_t *s = arg;
    char err[RN_ERRMSG_SIZE] = "";
    for (int k = 0; k < REMAPS && !s->failed; k++) {
        /* Wait until the producer moved on, so items hold records. */
        int at = atomic_load(&s->produced);
        while (atomic_load(&s->produced) < at + BATCHES / (REMAPS + 2) && !atomic_load(&s->done))
            sched_yield();
        if (rn_datadir_remap(s->d, "live", 0, k % 2 ? s->store : NULL, NULL, NULL, err) != 0) {
            snprintf(s->err, sizeof s->err, "remap %d: %.200s", k, err);
            s->failed = 1;
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    shared_t *s = arg;
    char err[RN_ERRMSG_SIZE] = "";
    rn_consumer_t *c = NULL;
    rn_consumer_opts_t o = {.fetch_bytes = 512};      /* small reads: many boundaries */
    if (rn_consumer_create(s->d, &o, &c, err) != 0 || rn_consumer_assign(c, "live", 0, 0, err) != 0) {
        s->failed = 1;
        return NULL;
    }
    int64_t next = 0;
    while (!s->failed && next < (int64_t)BATCHES * PER) {
        rn_consumer_batch_t b;
        int rc = rn_consumer_poll(c, &b, err);
        if (rc < 0) { snprintf(s->err, sizeof s->err, "poll: %.200s", err); s->failed = 1; break; }
        if (rc == 0) { sched_yield(); continue; }
        for (uint32_t i = 0; i < b.count; i++, next++) {
            char val[24];
            snprintf(val, sizeof val, "r%lld", (long long)next);
            if (b.records[i].offset != next || b.records[i].value_len != (int32_t)strlen(val) ||
                memcmp(b.records[i].value, val, strlen(val)) != 0) {
                snprintf(s->err, sizeof s->err, "expected offset %lld, got %lld",
                         (long long)next, (long long)b.records[i].offset);
                s->failed = 1;
                break;
            }
        }
    }
    s->consumed = next;
    rn_consumer_destroy(c);
    return NULL;
}

static void test_remap_while_producing_and_consuming(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    shared_t s;
    memset(&s, 0, sizeof s);
    s.d = open_dir(f->dir, 1u << 20, 0);
    s.store = f->store;
    assert_int_equal(rn_datadir_topic_create(s.d, "live", 1, NULL, err), 0);
    pthread_t tp, tr, tc;
    assert_int_equal(pthread_create(&tc, NULL, consumer, &s), 0);
    assert_int_equal(pthread_create(&tp, NULL, producer, &s), 0);
    assert_int_equal(pthread_create(&tr, NULL, remapper, &s), 0);
    pthread_join(tp, NULL);
    pthread_join(tr, NULL);
    pthread_join(tc, NULL);
    if (s.failed) fail_msg("%s", s.err);
    assert_int_equal(s.consumed, BATCHES * PER);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(s.d, "live", 0, &q, err), 0);
    assert_int_equal(q.nitems, REMAPS + 1);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(s.d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, BATCHES * PER);
    assert_int_equal(info.batches, BATCHES);
    rn_datadir_queue_close(&q);
    /* And a fresh reader sees the same dense log. */
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(s.d, NULL, &c, err), 0);
    assert_int_equal(rn_consumer_assign(c, "live", 0, 0, err), 0);
    assert_int_equal(drain(c, 0), BATCHES * PER);
    rn_consumer_destroy(c);
    assert_int_equal(rn_datadir_close(s.d), 0);
}

/* ---- retention --------------------------------------------------------- */

static void test_retention_drops_items(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    /* 8 KiB segments on every store, keep ~16 KiB. */
    rn_datadir_t *d = open_dir(f->dir, 8192, 16384);
    assert_int_equal(rn_datadir_topic_create(d, "a", 1, NULL, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "filler", 1, NULL, err), 0);
    rn_datadir_queue_t qa, qf;
    assert_int_equal(rn_datadir_queue_open(d, "a", 0, &qa, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "filler", 0, &qf, err), 0);
    for (int i = 0; i < 4; i++) append_seq(d, &qa, i * 4, 4, 10);
    assert_int_equal(rn_datadir_remap(d, "a", 0, f->store, NULL, NULL, err), 0);
    for (int i = 0; i < 3; i++) append_seq(d, &qa, 16 + i * 4, 4, 10);
    /* Roll store 0's segments with another topic until item 0 of 'a' is
     * in old segments only. */
    for (int i = 0; i < 400; i++) append_seq(d, &qf, i * 4, 4, 10);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &qa, &info, err), 0);
    assert_int_equal(info.log_start, 0);
    assert_int_equal(rn_group_commit(d, "late", "a", 0, 2, err), 0);
    uint32_t segs = 0, items = 0;
    assert_int_equal(rn_datadir_retain(d, &segs, &items, err), 0);
    assert_true(segs > 0);
    assert_int_equal(items, 1);
    assert_int_equal(rn_datadir_queue_info(d, &qa, &info, err), 0);
    assert_int_equal(qa.nitems, 1);                    /* re-resolved: item 0 is gone */
    assert_int_equal(info.log_start, 16);              /* the logical start advanced */
    assert_int_equal(info.high_watermark, 28);
    rn_buf_t buf = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_datadir_read(d, &qa, 0, 1 << 20, &buf, &nb, err), RN_ERANGE);
    assert_string_equal(err, "offset 0 is outside topic 'a' queue 0's range [16, 28]");
    rn_buf_free(&buf);
    /* A group left below the log start is told so, never silently moved;
     * commits below it are refused. */
    rn_group_start_t gs;
    memset(&gs, 0, sizeof gs);
    gs.group = "late";
    int64_t off = -1;
    assert_int_equal(rn_group_start_prepare(d, &gs, qa.topic.id, err), 0);
    assert_int_equal(rn_group_start_offset(d, &gs, &qa, &off, NULL, err), RN_ERANGE);
    assert_non_null(strstr(err, "group 'late' committed offset"));
    assert_non_null(strstr(err, "offset 2 is outside topic 'a' queue 0's range [16, 28]"));
    rn_group_start_free(&gs);
    assert_int_equal(rn_group_commit(d, "late", "a", 0, 15, err), RN_ERANGE);
    assert_string_equal(err, "offset 15 is outside topic 'a' queue 0's range [16, 28]");
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    assert_int_equal(rn_consumer_assign(c, "a", 0, 15, err), RN_ERANGE);
    assert_int_equal(rn_consumer_assign(c, "a", 0, 16, err), 0);
    assert_int_equal(drain(c, 16), 12);
    rn_consumer_destroy(c);
    rn_datadir_queue_close(&qa);
    rn_datadir_queue_close(&qf);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* Batches as Kafka clients compress them (tests/golden/: kafka-python's and
 * librdkafka's gzip, snappy, lz4 and zstd batches) are stored as received
 * and read back record by record by the consumer streamsql and pipelines
 * use; a time seek lands inside compressed batches. */
static void test_kafka_client_codecs(void **state)
{
    fixture_t *f = *state;
    static const char *const files[] = {
        "kafka_python_gzip", "kafka_python_snappy", "kafka_python_lz4", "kafka_python_zstd",
        "librdkafka_gzip", "librdkafka_snappy", "librdkafka_lz4", "librdkafka_zstd",
    };
    /* The golden records' keys, values and header counts (tests/golden/README.md). */
    static const char *const keys[5] = {"user-1", NULL, "", "user-3", "k4"};
    static const char *const values[5] = {"{\"n\":1}", "second", NULL, NULL, "last"};
    static const int64_t ts[5] = {1700000000000LL, 1700000000007LL, 1699999999990LL,
                                  1700000001000LL, 1700000000500LL};
    static const uint32_t nheaders[5] = {0, 2, 0, 1, 0};
    const int nfiles = (int)(sizeof files / sizeof files[0]);
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir, 1u << 20, 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_topic_create(d, "k", 1, NULL, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "k", 0, &q, err), 0);
    for (int i = 0; i < nfiles; i++) {
        char path[PATH_MAX];
        uint8_t buf[4096];
        snprintf(path, sizeof path, RN_SOURCE_DIR "/tests/golden/%s.bin", files[i]);
        FILE *fp = fopen(path, "rb");
        if (!fp) fail_msg("cannot open %s", path);
        size_t len = fread(buf, 1, sizeof buf, fp);
        fclose(fp);
        int64_t base = -1;
        uint64_t ticket = 0;
        if (rn_datadir_append(d, &q, buf, len, &base, &ticket, err) != 0)
            fail_msg("append %s: %s", files[i], err);
        assert_int_equal(rn_datadir_wait(d, ticket), 0);
        assert_int_equal(base, 5 * i);
    }
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    assert_int_equal(rn_consumer_assign(c, "k", 0, 0, err), 0);
    rn_consumer_batch_t b;
    int64_t next = 0;
    int rc;
    while ((rc = rn_consumer_poll(c, &b, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++, next++) {
            const rn_record_t *r = &b.records[i];
            const int k = (int)(next % 5);
            assert_int_equal(r->offset, next);
            assert_int_equal(r->timestamp, ts[k]);
            if (!keys[k]) assert_int_equal(r->key_len, -1);
            else assert_int_equal(r->key_len, (int32_t)strlen(keys[k]));
            if (keys[k] && r->key_len > 0) assert_memory_equal(r->key, keys[k], strlen(keys[k]));
            if (k == 3) assert_int_equal(r->value_len, 300);
            else if (!values[k]) assert_int_equal(r->value_len, -1);
            else assert_memory_equal(r->value, values[k], strlen(values[k]));
            assert_int_equal(r->header_count, nheaders[k]);
        }
    }
    if (rc < 0) fail_msg("poll: %s", err);
    assert_int_equal(next, 5 * nfiles);
    /* The first record with timestamp >= 1700000001000 is record 3 of the
     * first batch (kafka-python's gzip): the seek decodes it to find it. */
    assert_int_equal(rn_consumer_seek_time(c, "k", 0, 1700000001000LL, err), 0);
    assert_int_equal(rn_consumer_poll(c, &b, err), 1);
    assert_int_equal(b.records[0].offset, 3);
    rn_consumer_destroy(c);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* ---- waiting for appends ------------------------------------------------- */

#define WAKE_BOUND_MS 1000        /* generous: typically well under a millisecond */

typedef struct wappend {
    rn_datadir_t       *d;
    rn_datadir_queue_t *q;
    int                 first, delay_ms;
} wappend_t;

static void *append_later(void *arg)
{
    wappend_t *w = arg;
    rn_test_sleep_ms(w->delay_ms);
    append_seq(w->d, w->q, w->first, 1, 10);
    return NULL;
}

static void test_wait_for_appends(void **state)
{
    fixture_t *f = *state;
    static const char *const policies[] = {"never", "group", "always", "interval:1000"};
    for (size_t k = 0; k < sizeof policies / sizeof policies[0]; k++) {
        char dir[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
        snprintf(dir, sizeof dir, "%s/w%zu", f->root, k);
        rn_datadir_opts_t o;
        rn_datadir_opts_default(&o);
        o.create = 1;
        o.holder = "test_consumer";
        assert_int_equal(rn_fsync_parse(policies[k], &o.log, err), 0);
        rn_datadir_t *d = NULL;
        if (rn_datadir_open(dir, &o, &d, err) != 0) fail_msg("open: %s", err);
        assert_int_equal(rn_datadir_topic_create(d, "w", 2, NULL, err), 0);
        rn_datadir_queue_t q;
        assert_int_equal(rn_datadir_queue_open(d, "w", 1, &q, err), 0);
        rn_consumer_t *c = NULL;
        assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
        assert_int_equal(rn_consumer_assign(c, "w", 1, 0, err), 0);
        rn_consumer_batch_t b;

        /* Nothing appended: the wait times out. */
        assert_int_equal(rn_consumer_poll(c, &b, err), 0);
        uint64_t t0 = rn_mono_ns();
        assert_int_equal(rn_consumer_wait(c, 50), 0);
        uint64_t waited = (rn_mono_ns() - t0) / 1000000u;
        assert_true(waited >= 49 && waited < WAKE_BOUND_MS);

        /* Appended while it waits (another thread, 30 ms later): it wakes. */
        int64_t worst_us = 0;
        for (int i = 0; i < 5; i++) {
            assert_int_equal(rn_consumer_poll(c, &b, err), 0);
            wappend_t w = {d, &q, i, 30};
            pthread_t th;
            assert_int_equal(pthread_create(&th, NULL, append_later, &w), 0);
            t0 = rn_mono_ns();
            int woke = 0;
            while (!woke && (rn_mono_ns() - t0) / 1000000u < 10000) {
                if (rn_consumer_wait(c, 10000) != 1) break;
                woke = rn_consumer_poll(c, &b, err);      /* a bump before the append */
            }
            assert_int_equal(woke, 1);
            int64_t late_us = (int64_t)((rn_mono_ns() - t0) / 1000u) - 30000;
            if (late_us > worst_us) worst_us = late_us;
            assert_int_equal(b.count, 1);
            check_record(&b.records[0], i);
            assert_int_equal(pthread_join(th, NULL), 0);
        }
        if (worst_us > WAKE_BOUND_MS * 1000)
            fail_msg("%s: a wait woke %lld us after the append's start", policies[k],
                     (long long)worst_us);
        printf("wait (fsync %s): woke at most %.2f ms after the append began\n", policies[k],
               worst_us / 1000.0);

        /* Appended between the poll and the wait: no lost wake-up. */
        assert_int_equal(rn_consumer_poll(c, &b, err), 0);
        append_seq(d, &q, 5, 1, 10);
        t0 = rn_mono_ns();
        assert_int_equal(rn_consumer_wait(c, 10000), 1);
        assert_true((rn_mono_ns() - t0) / 1000000u < 100);
        assert_int_equal(rn_consumer_poll(c, &b, err), 1);
        check_record(&b.records[0], 5);

        rn_consumer_destroy(c);
        rn_datadir_queue_close(&q);
        assert_int_equal(rn_datadir_close(d), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_across_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_and_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remap_while_producing_and_consuming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_drops_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_client_codecs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_for_appends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

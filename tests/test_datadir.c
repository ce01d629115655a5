/*
 * test_datadir.c — the embedded data directory: the lock and its holder
 * message, refusals of missing/foreign/damaged directories, topic-level
 * append/read/info/time lookup in logical offsets with the errors that name
 * valid values, persistence, and the physical-id floor after a lost meta.db;
 * several stores: remap targets that are refused (the data directory, a
 * path overlapping a store, a foreign non-empty directory), a store reused
 * by path, store sizes, alter, and opening with a store missing or foreign;
 * appends, reads and queue opens that go on while another thread holds the
 * metadata lock, and resolve from the in-memory snapshot, which follows
 * remaps and finds a topic created directly on the metadata handle; topic
 * deletion (its offsets and checkpoint entries go, old handles get a clean
 * RN_ENOTFOUND, a recreated topic starts at 0 on fresh physical queues), also
 * while a producer thread and a consumer thread use the topic; a replica's
 * append at a given base offset (byte for byte, refused anywhere but the
 * queue's end) and its cut of a diverged tail (only at a batch boundary in
 * the open item; the next append gets the cut offset; kept after a reopen).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "tests/util/util.h"

typedef struct fixture {
    char root[64];
    char dir[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "datadir") != 0) { free(f); return -1; }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
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

static void opts(rn_datadir_opts_t *o, int create, const char *holder)
{
    rn_datadir_opts_default(o);
    o->create = create;
    o->holder = holder;
    o->log.fsync = RN_FSYNC_NEVER;
    o->log.segment_bytes = 1u << 20;
    o->log.max_batch_bytes = 1u << 16;
}

static rn_datadir_t *open_dir(const char *dir, int create)
{
    rn_datadir_opts_t o;
    opts(&o, create, "test_datadir");
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(dir, &o, &d, err);
    if (rc != 0) fail_msg("rn_datadir_open(%s): %d %s", dir, rc, err);
    return d;
}

/* A batch of n records with values "<tag>-<i>" and timestamps ts0 + i. */
static void build(rn_batch_builder_t *b, const char *tag, int n, int64_t ts0,
                  const uint8_t **out, size_t *len)
{
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s-", tag);
    assert_true(n <= 16);
    rn_test_records_t spec = {.prefix = prefix, .n = n, .ts0 = ts0, .ts_step = 1};
    rn_test_batch_build(b, &spec, out, len);
}

static int64_t append(rn_datadir_t *d, rn_datadir_queue_t *q, const char *tag, int n,
                      int64_t ts0)
{
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    build(&b, tag, n, ts0, &batch, &len);
    char err[RN_ERRMSG_SIZE] = "";
    int64_t base = -1;
    uint64_t ticket = 0;
    int rc = rn_datadir_append(d, q, batch, len, &base, &ticket, err);
    if (rc != 0) fail_msg("append: %s", err);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_batch_builder_destroy(&b);
    return base;
}

static void test_lock_names_holder(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *a = open_dir(f->dir, 1);
    rn_datadir_opts_t o;
    opts(&o, 0, "second");
    char err[RN_ERRMSG_SIZE] = "", want[PATH_MAX + 128];
    rn_datadir_t *b = NULL;
    assert_int_equal(rn_datadir_open(f->dir, &o, &b, err), RN_ELOCKED);
    assert_null(b);
    snprintf(want, sizeof want, "data directory %s is in use by pid %ld (test_datadir)", f->dir,
             (long)getpid());
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "--server HOST:PORT"));
    assert_int_equal(rn_datadir_close(a), 0);
    /* Released: the second opener gets in. */
    assert_int_equal(rn_datadir_open(f->dir, &o, &b, err), 0);
    assert_int_equal(rn_datadir_close(b), 0);
}

static void test_refusals(void **state)
{
    fixture_t *f = *state;
    rn_datadir_opts_t o;
    opts(&o, 0, "t");
    char err[RN_ERRMSG_SIZE] = "", path[PATH_MAX + 16];
    rn_datadir_t *d = NULL;

    /* Absent, not created. */
    assert_int_equal(rn_datadir_open(f->dir, &o, &d, err), -ENOENT);
    assert_non_null(strstr(err, "does not exist"));
    struct stat st;
    assert_int_equal(stat(f->dir, &st), -1);

    /* A regular file. */
    snprintf(path, sizeof path, "%s/file", f->root);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    o.create = 1;
    assert_int_equal(rn_datadir_open(path, &o, &d, err), -ENOTDIR);
    assert_non_null(strstr(err, "is not a directory"));

    /* An existing foreign, non-empty directory: not adopted even with create. */
    assert_int_equal(rn_datadir_open(f->root, &o, &d, err), RN_EINVAL);
    assert_non_null(strstr(err, "not a runnel data directory"));
    o.create = 0;
    assert_int_equal(rn_datadir_open(f->root, &o, &d, err), -ENOENT);
    assert_non_null(strstr(err, "no meta.db"));

    /* A damaged meta.db. */
    d = open_dir(f->dir, 1);
    assert_int_equal(rn_datadir_close(d), 0);
    snprintf(path, sizeof path, "%s/meta.db", f->dir);
    unlink(path);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 100; i++) fputs("garbage garbage garbage\n", fp);
    fclose(fp);
    d = NULL;
    assert_int_equal(rn_datadir_open(f->dir, &o, &d, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "meta.db"));
    assert_null(d);
}

static void test_append_read_logical(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *d = open_dir(f->dir, 1);
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    assert_int_equal(rn_datadir_topic_create(d, "orders", 2, &t, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "orders", 1, &q, err), 0);
    assert_int_equal(q.nitems, 1);
    assert_int_equal(q.items[0].physical_id, 1);

    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.log_start, 0);
    assert_int_equal(info.high_watermark, 0);

    assert_int_equal(append(d, &q, "a", 3, 1000), 0);
    assert_int_equal(append(d, &q, "b", 2, 2000), 3);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 5);
    assert_int_equal(info.batches, 2);

    /* Offset 4 lies in the second batch, which comes back whole with base 3. */
    rn_buf_t buf = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_datadir_read(d, &q, 4, 1 << 20, &buf, &nb, err), 0);
    assert_int_equal(nb, 1);
    rn_batch_header_t h;
    assert_int_equal(rn_batch_validate(buf.data, buf.len, &rn_batch_default_limits, 1, &h, err), 0);
    assert_int_equal(h.base_offset, 3);
    assert_int_equal(h.record_count, 2);

    /* From 0: both batches, records at offsets 0..4 with their values. */
    buf.len = 0;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &buf, &nb, err), 0);
    assert_int_equal(nb, 2);
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    size_t pos = 0, sz;
    int64_t expect = 0;
    for (uint32_t i = 0; i < nb; i++) {
        assert_int_equal(rn_batch_size(buf.data + pos, buf.len - pos, &sz), 0);
        assert_int_equal(rn_batch_iter_reset(&it, buf.data + pos, sz, err), 0);
        rn_record_t r;
        while (rn_batch_iter_next(&it, &r, err) == 1) {
            char want[32];
            snprintf(want, sizeof want, "%s-%lld", expect < 3 ? "a" : "b",
                     (long long)(expect < 3 ? expect : expect - 3));
            assert_int_equal(r.offset, expect);
            assert_int_equal(r.value_len, (int32_t)strlen(want));
            assert_memory_equal(r.value, want, strlen(want));
            expect++;
        }
        pos += sz;
    }
    assert_int_equal(expect, 5);
    rn_batch_iter_destroy(&it);

    /* The end reads as empty; past it is an error naming the range. */
    buf.len = 0;
    assert_int_equal(rn_datadir_read(d, &q, 5, 1 << 20, &buf, &nb, err), 0);
    assert_int_equal(nb, 0);
    assert_int_equal(buf.len, 0);
    assert_int_equal(rn_datadir_read(d, &q, 99, 1 << 20, &buf, &nb, err), RN_ERANGE);
    assert_string_equal(err, "offset 99 is outside topic 'orders' queue 1's range [0, 5]");
    assert_int_equal(rn_datadir_read(d, &q, -1, 1 << 20, &buf, &nb, err), RN_ERANGE);

    /* Time: the first record with ts >= T. */
    int64_t off = -1;
    assert_int_equal(rn_datadir_lookup_time(d, &q, 1001, &off, err), 0);
    assert_int_equal(off, 1);
    assert_int_equal(rn_datadir_lookup_time(d, &q, 1500, &off, err), 0);
    assert_int_equal(off, 3);
    assert_int_equal(rn_datadir_lookup_time(d, &q, 0, &off, err), 0);
    assert_int_equal(off, 0);
    assert_int_equal(rn_datadir_lookup_time(d, &q, 99999, &off, err), 0);
    assert_int_equal(off, 5);

    /* Queue 0 is separate and still empty. */
    rn_datadir_queue_t q0;
    assert_int_equal(rn_datadir_queue_open(d, "orders", 0, &q0, err), 0);
    assert_int_equal(rn_datadir_queue_info(d, &q0, &info, err), 0);
    assert_int_equal(info.high_watermark, 0);
    assert_int_equal(append(d, &q0, "z", 1, 5), 0);
    rn_datadir_queue_close(&q0);

    /* Unknown queue and topic name the valid values. */
    rn_datadir_queue_t bad;
    assert_int_equal(rn_datadir_queue_open(d, "orders", 2, &bad, err), RN_ENOTFOUND);
    assert_string_equal(err, "topic 'orders' has no queue 2; it has queues 0..1");
    assert_int_equal(rn_datadir_queue_open(d, "nope", 0, &bad, err), RN_ENOTFOUND);
    assert_string_equal(err, "unknown topic 'nope'; topics: orders");

    rn_buf_free(&buf);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void test_reopen_and_id_floor(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir, 1);
    assert_int_equal(rn_datadir_topic_create(d, "first", 1, NULL, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "first", 0, &q, err), 0);
    assert_int_equal(append(d, &q, "x", 4, 10), 0);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);

    /* Reopened: topic and data are there. */
    d = open_dir(f->dir, 0);
    assert_int_equal(rn_datadir_queue_open(d, "first", 0, &q, err), 0);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 4);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);

    /* meta.db lost: a new topic must not land on physical queue 0, which
     * still holds the old data. */
    char path[PATH_MAX + 16];
    const char *names[] = {"meta.db", "meta.db-wal", "meta.db-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", f->dir, names[i]);
        unlink(path);
    }
    d = open_dir(f->dir, 1);
    assert_int_equal(rn_datadir_topic_create(d, "second", 1, NULL, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "second", 0, &q, err), 0);
    assert_int_equal(q.items[0].physical_id, 1);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 0);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void test_group_commit_ack(void **state)
{
    fixture_t *f = *state;
    rn_datadir_opts_t o;
    opts(&o, 1, "group");
    o.log.fsync = RN_FSYNC_GROUP;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    assert_int_equal(rn_datadir_open(f->dir, &o, &d, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "g", 1, NULL, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "g", 0, &q, err), 0);
    for (int i = 0; i < 5; i++) assert_int_equal(append(d, &q, "g", 2, 100), 2 * i);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 10);   /* acked => durable => visible */
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void test_stores(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "", path[PATH_MAX + 32], other[PATH_MAX + 64];
    rn_datadir_t *d = open_dir(f->dir, 1);
    assert_int_equal(rn_datadir_topic_create(d, "s", 2, NULL, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "s", 0, &q, err), 0);
    assert_int_equal(append(d, &q, "a", 3, 10), 0);

    /* Refused targets, each naming why; nothing changes. */
    assert_int_equal(rn_datadir_remap(d, "s", 0, f->dir, NULL, NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "is the data directory itself"));
    snprintf(path, sizeof path, "%s/stores/0/inner", f->dir);
    assert_int_equal(rn_datadir_remap(d, "s", 0, path, NULL, NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "overlaps store 0"));
    snprintf(path, sizeof path, "%s/foreign", f->root);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(other, sizeof other, "%s/file", path);
    FILE *fp = fopen(other, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(rn_datadir_remap(d, "s", 0, path, NULL, NULL, err), RN_EINVAL);
    assert_non_null(strstr(err, "is not empty and is not a store of this data directory"));
    assert_int_equal(rn_datadir_remap(d, "s", 7, NULL, NULL, NULL, err), RN_ENOTFOUND);
    assert_string_equal(err, "topic 's' has no queue 7; it has queues 0..1");
    assert_int_equal(rn_datadir_queue_refresh(d, &q, err), 0);
    assert_int_equal(q.nitems, 1);

    /* A relative path is inside the data directory and registered so. */
    rn_meta_item_t sealed, opened;
    assert_int_equal(rn_datadir_remap(d, "s", 0, "stores/ssd", &sealed, &opened, err), 0);
    assert_int_equal(sealed.physical_end, 3);
    assert_int_equal(opened.store_id, 1);
    assert_int_equal(opened.logical_start, 3);
    assert_int_equal(append(d, &q, "b", 2, 20), 3);
    /* The same store again, by its absolute path: reused, not re-registered. */
    snprintf(path, sizeof path, "%s/stores/ssd/", f->dir);
    assert_int_equal(rn_datadir_remap(d, "s", 1, path, NULL, &opened, err), 0);
    assert_int_equal(opened.store_id, 1);
    rn_datadir_store_info_t *st = NULL;
    size_t n = 0;
    assert_int_equal(rn_datadir_stores(d, &st, &n, err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(st[1].path, "stores/ssd");
    assert_int_equal(st[1].physical_queues, 2);
    assert_true(st[0].bytes > 0 && st[1].bytes > 0);
    free(st);

    /* Alter: new queues live on the store of queue 0's open item. */
    rn_meta_topic_t t;
    assert_int_equal(rn_datadir_topic_alter(d, "s", 1, &t, err), RN_EINVAL);
    assert_int_equal(rn_datadir_topic_alter(d, "s", 3, &t, err), 0);
    rn_datadir_queue_t q2;
    assert_int_equal(rn_datadir_queue_open(d, "s", 2, &q2, err), 0);
    assert_int_equal(q2.items[0].store_id, 1);
    assert_int_equal(append(d, &q2, "c", 1, 5), 0);
    rn_datadir_queue_close(&q2);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);

    /* A store whose STORE file names another data directory is refused;
     * a missing one too. */
    snprintf(path, sizeof path, "%s/stores/ssd/STORE", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("runnel store of data directory 1\n", fp);
    fclose(fp);
    rn_datadir_opts_t o;
    opts(&o, 0, "t");
    d = NULL;
    assert_int_equal(rn_datadir_open(f->dir, &o, &d, err), RN_EFORMAT);
    assert_non_null(strstr(err, "has no STORE file naming this data directory"));
    snprintf(path, sizeof path, "%s/stores/ssd", f->dir);
    snprintf(other, sizeof other, "%s/moved", f->root);
    assert_int_equal(rename(path, other), 0);
    assert_int_equal(rn_datadir_open(f->dir, &o, &d, err), -ENOENT);
    assert_non_null(strstr(err, "store 1 at"));
    assert_non_null(strstr(err, "is missing"));
    assert_null(d);
}


/* Another thread holds the metadata mutex (d->mu) for HOLD_MS, as a slow
 * SQLite transaction would. */
#define HOLD_MS 800
typedef struct holder {
    rn_datadir_t *d;
    atomic_int    state;        /* 1 holding, 2 released */
} holder_t;

static void *hold_meta(void *arg)
{
    holder_t *h = arg;
    rn_datadir_meta_lock(h->d);
    atomic_store(&h->state, 1);
    rn_test_sleep_ms(HOLD_MS);
    atomic_store(&h->state, 2);
    rn_datadir_meta_unlock(h->d);
    return NULL;
}

/* Appends, reads, info and a queue open of a known topic neither wait for
 * the metadata mutex nor read SQLite: they all finish while another thread
 * holds it. Then a remap moves the generation and the next append lands in
 * the new item, and a topic created directly on the metadata handle (not
 * in the snapshot) is found through meta.db. */
static void test_append_while_metadata_locked(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *d = open_dir(f->dir, 1);
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_datadir_topic_create(d, "t", 2, NULL, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(append(d, &q, "a", 2, 100), 2 * i);

    holder_t h = {.d = d};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_meta, &h), 0);
    while (atomic_load(&h.state) == 0) rn_test_sleep_ms(1);
    uint64_t t0 = rn_mono_ns();
    rn_datadir_queue_t q1;
    assert_int_equal(rn_datadir_queue_open(d, "t", 1, &q1, err), 0);
    assert_int_equal(append(d, &q1, "b", 3, 200), 0);
    for (int i = 3; i < 6; i++) assert_int_equal(append(d, &q, "a", 2, 100), 2 * i);
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb = 0;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 6);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 12);
    double ms = (rn_mono_ns() - t0) / 1e6;
    int still = atomic_load(&h.state) == 1;
    printf("queue open, 4 appends, a read and info took %.1f ms while the metadata lock was "
           "held\n", ms);
    pthread_join(th, NULL);
    if (!still)
        fail_msg("appends and reads waited for the metadata lock (%.0f ms; it was held %d ms)",
                 ms, HOLD_MS);

    /* A remap: the snapshot and generation move; the next append goes to the
     * new item, and reads cross items. */
    rn_meta_item_t sealed, opened;
    assert_int_equal(rn_datadir_remap(d, "t", 0, NULL, &sealed, &opened, err), 0);
    assert_int_equal(sealed.physical_end, 12);
    assert_int_equal(append(d, &q, "a", 2, 100), 12);
    rn_log_queue_info_t pi;
    assert_int_equal(rn_log_queue_info(rn_datadir_store_log(d, 0), opened.physical_id, &pi), 0);
    assert_int_equal(pi.high_watermark, 2);            /* it landed in the new item */
    out.len = 0;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 7);

    /* Made directly on the metadata handle: not in the snapshot. */
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_topic_create(m, "direct", 1, 0, 1000, NULL, err);
    rn_datadir_meta_unlock(d);
    assert_int_equal(rc, 0);
    rn_datadir_queue_t qd;
    assert_int_equal(rn_datadir_queue_open(d, "direct", 0, &qd, err), 0);
    assert_int_equal(append(d, &qd, "d", 1, 300), 0);
    rn_datadir_queue_close(&qd);
    assert_int_equal(rn_datadir_queue_open(d, "nope", 0, &qd, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown topic 'nope'"));
    rn_datadir_queue_close(&qd);
    rn_buf_free(&out);
    rn_datadir_queue_close(&q);
    rn_datadir_queue_close(&q1);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* Delete a topic with records, group offsets and a checkpoint on it; recreate
 * it under the same name; reopen. */
static void test_topic_delete(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *d = open_dir(f->dir, 1);
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t, gone;
    assert_int_equal(rn_datadir_topic_create(d, "t", 2, &t, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "other", 1, NULL, err), 0);
    rn_datadir_queue_t q, qo;
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "other", 0, &qo, err), 0);
    uint32_t old_pq = q.items[0].physical_id;
    assert_int_equal(append(d, &q, "old", 3, 100), 0);
    assert_int_equal(append(d, &q, "old", 3, 100), 3);
    assert_int_equal(append(d, &qo, "keep", 2, 100), 0);

    rn_meta_t *m = rn_datadir_meta_lock(d);
    rn_meta_offset_t v[2] = {{.topic_id = t.id, .queue = 0, .offset = 4},
                             {.topic_id = qo.topic.id, .queue = 0, .offset = 1}};
    int rc = rn_meta_offsets_commit(m, "g", v, 2, err);
    if (rc == 0) rc = rn_meta_checkpoint_create(m, "g", "cp", NULL, err);
    rn_datadir_meta_unlock(d);
    assert_int_equal(rc, 0);

    assert_int_equal(rn_datadir_topic_delete(d, "t", &gone, err), 0);
    assert_int_equal(gone.id, t.id);
    assert_int_equal(rn_datadir_topic_delete(d, "t", NULL, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown topic 't'"));

    /* The old handle: a clean error on every path. */
    rn_buf_t out = RN_BUF_INIT;
    uint32_t nb = 0;
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &out, &nb, err), RN_ENOTFOUND);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), RN_ENOTFOUND);
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    build(&b, "late", 1, 100, &batch, &len);
    int64_t base;
    uint64_t ticket;
    assert_int_equal(rn_datadir_append(d, &q, batch, len, &base, &ticket, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown topic 't'"));
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), RN_ENOTFOUND);

    /* Group offsets and checkpoint entries on it went; the others stayed. */
    m = rn_datadir_meta_lock(d);
    rn_meta_offset_t *got = NULL;
    size_t n = 0;
    rc = rn_meta_offsets_get(m, "g", -1, &got, &n, err);
    rn_meta_checkpoint_t cp;
    rn_meta_offset_t *cgot = NULL;
    size_t cn = 0;
    if (rc == 0) rc = rn_meta_checkpoint_get(m, "g", "cp", &cp, err);
    if (rc == 0) rc = rn_meta_checkpoint_offsets(m, cp.id, &cgot, &cn, err);
    rn_datadir_meta_unlock(d);
    assert_int_equal(rc, 0);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].topic, "other");
    assert_int_equal(cn, 1);
    assert_string_equal(cgot[0].topic, "other");
    free(got);
    free(cgot);

    /* Recreated: offset 0, a fresh physical queue, none of the old records. */
    assert_int_equal(rn_datadir_topic_create(d, "t", 1, &t, err), 0);
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    assert_true(q.items[0].physical_id > old_pq);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.log_start, 0);
    assert_int_equal(info.high_watermark, 0);
    assert_int_equal(append(d, &q, "new", 1, 500), 0);
    assert_int_equal(rn_datadir_read(d, &q, 0, 1 << 20, &out, &nb, err), 0);
    assert_int_equal(nb, 1);
    assert_non_null(memmem(out.data, out.len, "new-0", 5));
    assert_null(memmem(out.data, out.len, "old-", 4));
    rn_datadir_queue_close(&q);
    rn_datadir_queue_close(&qo);
    assert_int_equal(rn_datadir_close(d), 0);

    /* After a reopen: the same. */
    d = open_dir(f->dir, 0);
    assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 1);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_queue_open(d, "t", 1, &q, err), RN_ENOTFOUND);
    rn_datadir_queue_close(&q);
    rn_batch_builder_destroy(&b);
    rn_buf_free(&out);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* A producer thread and a consumer thread on a topic while it is deleted:
 * each ends on RN_ENOTFOUND, never a crash or a read of freed items. */
typedef struct user {
    rn_datadir_t *d;
    int           producer;
    _Atomic long  ops;
    int           rc;
    char          err[RN_ERRMSG_SIZE];
} user_t;

static void *use_topic(void *arg)
{
    user_t *u = arg;
    rn_datadir_queue_t q;
    u->rc = rn_datadir_queue_open(u->d, "c", 0, &q, u->err);
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    build(&b, "c", 4, 100, &batch, &len);
    rn_buf_t out = RN_BUF_INIT;
    for (long i = 0; u->rc == 0 && i < 2000000; i++) {
        if (u->producer) {
            int64_t base;
            uint64_t ticket;
            u->rc = rn_datadir_append(u->d, &q, batch, len, &base, &ticket, u->err);
            if (u->rc == 0) u->rc = rn_datadir_wait(u->d, ticket);
        } else {
            uint32_t nb = 0;
            out.len = 0;
            u->rc = rn_datadir_read(u->d, &q, 0, 4096, &out, &nb, u->err);
        }
        atomic_fetch_add(&u->ops, 1);
    }
    rn_buf_free(&out);
    rn_batch_builder_destroy(&b);
    rn_datadir_queue_close(&q);
    return NULL;
}

static void test_topic_delete_concurrent(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *d = open_dir(f->dir, 1);
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_datadir_topic_create(d, "c", 1, NULL, err), 0);
    for (int round = 0; round < 5; round++) {
        user_t p = {.d = d, .producer = 1}, c = {.d = d};
        pthread_t tp, tc;
        assert_int_equal(pthread_create(&tp, NULL, use_topic, &p), 0);
        assert_int_equal(pthread_create(&tc, NULL, use_topic, &c), 0);
        for (int i = 0; i < 5000 && (atomic_load(&p.ops) < 50 || atomic_load(&c.ops) < 50); i++)
            rn_test_sleep_ms(1);
        assert_int_equal(rn_datadir_topic_delete(d, "c", NULL, err), 0);
        pthread_join(tp, NULL);
        pthread_join(tc, NULL);
        if (p.rc != RN_ENOTFOUND) fail_msg("producer ended with %d: %s", p.rc, p.err);
        if (c.rc != RN_ENOTFOUND) fail_msg("consumer ended with %d: %s", c.rc, c.err);
        assert_non_null(strstr(p.err, "unknown topic 'c'"));
        printf("round %d: %ld appends, %ld reads before the delete\n", round,
               atomic_load(&p.ops), atomic_load(&c.ops));
        /* Recreated: empty, from offset 0. */
        rn_datadir_queue_t q;
        rn_datadir_queue_info_t info;
        assert_int_equal(rn_datadir_topic_create(d, "c", 1, NULL, err), 0);
        assert_int_equal(rn_datadir_queue_open(d, "c", 0, &q, err), 0);
        assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
        assert_int_equal(info.high_watermark, 0);
        rn_datadir_queue_close(&q);
    }
    assert_int_equal(rn_datadir_close(d), 0);
}

/* The whole queue from offset 0 (logical base offsets in the bytes). */
static void read_queue(rn_datadir_t *d, rn_datadir_queue_t *q, rn_buf_t *out)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, q, &info, err), 0);
    out->len = 0;
    int64_t off = info.log_start;
    while (off < info.high_watermark) {
        size_t from = out->len;
        uint32_t nb = 0;
        assert_int_equal(rn_datadir_read(d, q, off, 1 << 20, out, &nb, err), 0);
        assert_true(nb > 0);
        for (size_t p = from; p < out->len; p += 12 + rn_be32_get(out->data + p + 8))
            off = (int64_t)rn_be64_get(out->data + p) + rn_be32_get(out->data + p + 57);
    }
}

static void test_append_at_and_truncate(void **state)
{
    fixture_t *f = *state;
    rn_datadir_t *d = open_dir(f->dir, 1);
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_datadir_topic_create(d, "r", 1, NULL, err), 0);
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, "r", 0, &q, err), 0);
    assert_int_equal(append(d, &q, "a", 2, 1000), 0);
    assert_int_equal(append(d, &q, "b", 3, 1000), 2);
    assert_int_equal(append(d, &q, "c", 4, 1000), 5);
    /* A leader's batch at base 9 is stored byte for byte, and only at 9. */
    rn_batch_builder_t b;
    const uint8_t *p;
    size_t len;
    build(&b, "lead", 4, 2000, &p, &len);
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, p, len);
    rn_be64_put(copy, 9);
    uint64_t ticket = 0;
    assert_int_equal(rn_datadir_append_at(d, &q, copy, len, 8, &ticket, err), RN_ERANGE);
    assert_non_null(strstr(err, "ends at offset 9, not at the batch's base offset 8"));
    assert_int_equal(rn_datadir_append_at(d, &q, copy, len, 10, &ticket, err), RN_ERANGE);
    assert_int_equal(rn_datadir_append_at(d, &q, copy, len, 9, &ticket, err), 0);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_buf_t all = RN_BUF_INIT;
    read_queue(d, &q, &all);
    assert_true(all.len >= len);
    assert_memory_equal(all.data + all.len - len, copy, len);
    /* Cuts: not inside a batch, not past the end; at a boundary it holds. */
    assert_int_equal(rn_datadir_truncate(d, "r", 0, 7, err), RN_EINVAL);
    assert_non_null(strstr(err, "not where a batch starts"));
    assert_int_equal(rn_datadir_truncate(d, "r", 0, 14, err), RN_EINVAL);
    assert_non_null(strstr(err, "outside its open item"));
    rn_buf_t before = RN_BUF_INIT;
    read_queue(d, &q, &before);
    assert_int_equal(rn_datadir_truncate(d, "r", 0, 5, err), 0);
    rn_datadir_queue_info_t info;
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 5);
    rn_buf_t after = RN_BUF_INIT;
    read_queue(d, &q, &after);
    assert_true(after.len < before.len);
    assert_memory_equal(after.data, before.data, after.len);      /* the prefix is kept */
    /* The next append takes 5 (the cut offsets are given again, on a fresh
     * physical queue), and the new item holds it after a reopen. */
    assert_int_equal(append(d, &q, "d", 2, 3000), 5);
    rn_be64_put(copy, 7);
    assert_int_equal(rn_datadir_append_at(d, &q, copy, len, 7, &ticket, err), 0);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_buf_t kept = RN_BUF_INIT;
    read_queue(d, &q, &kept);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
    d = open_dir(f->dir, 0);
    assert_int_equal(rn_datadir_queue_open(d, "r", 0, &q, err), 0);
    assert_int_equal(rn_datadir_queue_info(d, &q, &info, err), 0);
    assert_int_equal(info.high_watermark, 11);
    rn_buf_t again = RN_BUF_INIT;
    read_queue(d, &q, &again);
    assert_int_equal(again.len, kept.len);
    assert_memory_equal(again.data, kept.data, kept.len);
    assert_memory_equal(again.data + again.len - len, copy, len);
    rn_datadir_queue_close(&q);
    assert_int_equal(rn_datadir_close(d), 0);
    rn_buf_free(&all);
    rn_buf_free(&before);
    rn_buf_free(&after);
    rn_buf_free(&kept);
    rn_buf_free(&again);
    free(copy);
    rn_batch_builder_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lock_names_holder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_read_logical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_and_id_floor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_while_metadata_locked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_delete_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_at_and_truncate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

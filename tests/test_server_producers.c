/*
 * test_server_producers.c — server/producers.c without a network: the id and
 * epoch registry (persistence across reopen, fencing, refusal of a damaged
 * file naming its line) and the per-queue sequence state (next sequence,
 * duplicates within the window of 5, gaps, old sequences, stale and new
 * epochs, chaining within one request, non-idempotent batches).
 *
 * The server is a program, not a library, so the module under test is
 * compiled into this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/producers.c"
#include "tests/util/util.h"

typedef struct fx {
    char dir[64];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/rn-producers-XXXXXX");
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void write_file(const char *dir, const char *text)
{
    assert_int_equal(rn_write_file_atomic(dir, RN_PREG_FILE, text, strlen(text)), 0);
}

static void test_registry_persists(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r;
    int64_t id;
    int16_t ep;
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_epoch(r, 1, &ep), RN_ENOTFOUND);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    assert_int_equal(id, 1);
    assert_int_equal(ep, 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    assert_int_equal(id, 2);
    assert_int_equal(rn_preg_init(r, 1, &id, &ep, err), 0);
    assert_int_equal(id, 1);
    assert_int_equal(ep, 1);
    assert_int_equal(rn_preg_init(r, 7, &id, &ep, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "ids 1..2"));
    rn_preg_close(r);
    /* Reopened: the same ids and epochs; new ids continue after the block
     * reserved before the restart (never one issued before). */
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_epoch(r, 1, &ep), 0);
    assert_int_equal(ep, 1);
    assert_int_equal(rn_preg_epoch(r, 2, &ep), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    assert_int_equal(id, 1 + RN_PREG_BLOCK);
    assert_int_equal(rn_preg_init(r, 1, &id, &ep, err), 0);
    assert_int_equal(ep, 2);
    rn_preg_close(r);
    /* A torn last record (a crash mid-append, never acknowledged) is dropped. */
    char path[128];
    snprintf(path, sizeof path, "%s/%s", f->dir, RN_PREG_FILE);
    FILE *fp = fopen(path, "a");
    assert_non_null(fp);
    fputs("epoch 2 7", fp);
    fclose(fp);
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_epoch(r, 2, &ep), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(rn_preg_epoch(r, 1, &ep), 0);
    assert_int_equal(ep, 2);
    rn_preg_close(r);
}

static void test_registry_damaged(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r = NULL;
    write_file(f->dir, "runnel-producers 1\nnext 3\n1 0\n3 0\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "line 4"));
    write_file(f->dir, "runnel-producers 1\nnext 3\n1 0\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "1 ids listed"));
    write_file(f->dir, "something else\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "line 1"));
    write_file(f->dir, "runnel-producers 2\nblock 1001\nepoch 5000 1\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "line 3: 'epoch ID E' needs an id below the block"));
    write_file(f->dir, "runnel-producers 2\nblock 1001\nnext 4\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "line 3: expected 'block N' or 'epoch ID E'"));
    write_file(f->dir, "runnel-producers 1\nnext 2\n1 40000\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), RN_ECORRUPT);
    write_file(f->dir, "runnel-producers 1\nnext 2\n1 5\n");
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    int16_t ep;
    assert_int_equal(rn_preg_epoch(r, 1, &ep), 0);
    assert_int_equal(ep, 5);
    rn_preg_close(r);
}

static rn_batch_header_t hdr(int64_t pid, int epoch, int seq, int count)
{
    rn_batch_header_t h;
    memset(&h, 0, sizeof h);
    h.producer_id = pid;
    h.producer_epoch = (int16_t)epoch;
    h.base_sequence = seq;
    h.record_count = count;
    return h;
}

/* check, and record as stored at base when new; returns the verdict. */
static int step(rn_pstate_t *s, rn_preg_t *r, rn_batch_header_t h, int64_t base, rn_pbatch_t *d,
                rn_status_t *st)
{
    int v = rn_pstate_check(s, r, &h, NULL, 0, d, st);
    if (v == 0) assert_int_equal(rn_pstate_record(s, &h, base, 100 + (uint64_t)base, 0), 0);
    return v;
}

static void test_sequences(void **state)
{
    (void)state;
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    /* Not idempotent: never checked. */
    assert_int_equal(step(&s, NULL, hdr(-1, -1, -1, 3), 0, &d, &st), 0);
    /* A producer's first batch on the queue may start anywhere. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, 10, 5), 0, &d, &st), 0);
    for (int i = 1; i < 7; i++)
        assert_int_equal(step(&s, NULL, hdr(4, 0, 10 + 5 * i, 5), 5 * i, &d, &st), 0);
    /* The last 5 (seq 20..40) are duplicates with their offsets and tickets. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, 25, 5), 0, &d, &st), 1);
    assert_int_equal(d.base_offset, 15);
    assert_int_equal(d.ticket, 115);
    assert_int_equal(step(&s, NULL, hdr(4, 0, 40, 5), 0, &d, &st), 1);
    assert_int_equal(d.base_offset, 30);
    /* Same start, other count: not the stored batch. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, 40, 4), 0, &d, &st), -1);
    assert_int_equal(st.code, RN_ST_FAILED_PRECONDITION);
    /* Out of the window. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, 15, 5), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "expected 45, got 15"));
    /* A gap. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, 50, 5), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "gap (expected 45, got 50)"));
    /* Negative sequence on an idempotent batch. */
    assert_int_equal(step(&s, NULL, hdr(4, 0, -3, 5), 0, &d, &st), -1);
    assert_int_equal(st.code, RN_ST_INVALID_ARGUMENT);
    /* A new epoch starts at 0; then the old epoch is stale. */
    assert_int_equal(step(&s, NULL, hdr(4, 1, 45, 5), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "starts at sequence 0"));
    assert_int_equal(step(&s, NULL, hdr(4, 1, 0, 5), 100, &d, &st), 0);
    assert_int_equal(step(&s, NULL, hdr(4, 0, 45, 5), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "stale"));
    assert_int_equal(step(&s, NULL, hdr(4, 1, 0, 5), 0, &d, &st), 1);
    assert_int_equal(d.base_offset, 100);
    /* Another producer is independent. */
    assert_int_equal(step(&s, NULL, hdr(9, 0, 0, 1), 200, &d, &st), 0);
    assert_int_equal(step(&s, NULL, hdr(9, 0, 1, 1), 201, &d, &st), 0);
    rn_pstate_free(&s);
}

/* Within one request, sequences chain through the batches not yet stored. */
static void test_chain_in_request(void **state)
{
    (void)state;
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    rn_batch_header_t a = hdr(2, 0, 0, 3), b = hdr(2, 0, 3, 3), c = hdr(2, 0, 7, 3);
    assert_int_equal(rn_pstate_record(&s, &a, 0, 0, 0), 0);
    rn_batch_header_t prev[2] = {b};
    assert_int_equal(rn_pstate_check(&s, NULL, &b, NULL, 0, &d, &st), 0);
    rn_batch_header_t b2 = hdr(2, 0, 6, 3);
    assert_int_equal(rn_pstate_check(&s, NULL, &b2, prev, 1, &d, &st), 0);
    assert_int_equal(rn_pstate_check(&s, NULL, &c, prev, 1, &d, &st), -1);
    assert_non_null(strstr(st.msg, "expected 6, got 7"));
    rn_pstate_free(&s);
}

/* With a registry: unknown ids and epochs below the registered one fail. */
static void test_fencing(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r;
    int64_t id;
    int16_t ep;
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    assert_int_equal(step(&s, r, hdr(id, 0, 0, 2), 0, &d, &st), 0);
    assert_int_equal(step(&s, r, hdr(id + 1, 0, 0, 2), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "unknown producer id"));
    assert_int_equal(rn_preg_init(r, id, &id, &ep, err), 0);
    /* The queue never saw epoch 1, but the registry fences epoch 0. */
    assert_int_equal(step(&s, r, hdr(id, 0, 2, 2), 2, &d, &st), -1);
    assert_non_null(strstr(st.msg, "current epoch is 1"));
    assert_int_equal(step(&s, r, hdr(id, 1, 0, 2), 2, &d, &st), 0);
    rn_pstate_free(&s);
    rn_preg_close(r);
}

/* ---- cost: registration O(1) amortised, no fsync under the read lock ---------- */

static int syncs;
static int slow_sync_ms;

static int count_fdatasync(int fd)
{
    __atomic_add_fetch(&syncs, 1, __ATOMIC_SEQ_CST);
    if (slow_sync_ms) rn_test_sleep_ms(slow_sync_ms);
    return fdatasync(fd);
}

static int count_fsync(int fd)
{
    __atomic_add_fetch(&syncs, 1, __ATOMIC_SEQ_CST);
    if (slow_sync_ms) rn_test_sleep_ms(slow_sync_ms);
    return fsync(fd);
}

/* The reproduction: every new producer rewrote and fsynced the whole file
 * (10,000 took 10.4 s, the fourth 10,000 79.9 s). Now ids are reserved a
 * block at a time: 20,000 new producers take 20 syncs (plus the file's
 * creation), and the file holds a handful of records. Epoch bumps append
 * one record each, and compaction keeps the file near the state. */
static void test_registry_cost(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r;
    int64_t id = 0;
    int16_t ep;
    rn_sys.fdatasync = count_fdatasync;
    rn_sys.fsync = count_fsync;
    syncs = 0;
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    uint64_t t0 = rn_mono_ns();
    for (int i = 1; i <= 20000; i++) {
        assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
        assert_int_equal(id, i);
    }
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    print_message("20000 new producers: %.3f s, %d syncs, %llu records in the file\n", secs,
                  syncs, (unsigned long long)rn_preg_file_records(r));
    assert_true(syncs <= 20000 / RN_PREG_BLOCK + 4);
    assert_true(rn_preg_file_records(r) <= 20000 / RN_PREG_BLOCK + 2);
    /* 1,500 epoch bumps of 3 ids: one sync each, and the file is compacted */
    syncs = 0;
    for (int i = 0; i < 1500; i++) assert_int_equal(rn_preg_init(r, 1 + i % 3, &id, &ep, err), 0);
    assert_int_equal(ep, 500);
    print_message("1500 epoch bumps: %d syncs, %llu records in the file\n", syncs,
                  (unsigned long long)rn_preg_file_records(r));
    assert_true(syncs >= 1500 && syncs <= 1500 + 8);
    assert_true(rn_preg_file_records(r) <= 2 * 4 + 1024 + 1);
    rn_preg_close(r);
    rn_sys_reset();
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_epoch(r, 3, &ep), 0);
    assert_int_equal(ep, 500);
    assert_int_equal(rn_preg_epoch(r, 20000, &ep), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    assert_true(id > 20000);
    rn_preg_close(r);
}

typedef struct bumper {
    rn_preg_t *r;
    int64_t    id;
    int        rc;
} bumper_t;

static void *bump_main(void *arg)
{
    bumper_t *b = arg;
    char err[RN_ERRMSG_SIZE];
    int64_t id;
    int16_t ep;
    b->rc = rn_preg_init(b->r, b->id, &id, &ep, err);
    return NULL;
}

/* Every idempotent produce reads an epoch: it must not wait for another
 * producer's registration to reach the disk. */
static void test_epoch_read_does_not_wait_for_fsync(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r;
    int64_t id;
    int16_t ep;
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    rn_sys.fdatasync = count_fdatasync;
    rn_sys.fsync = count_fsync;
    slow_sync_ms = 500;
    syncs = 0;
    bumper_t b = {r, id, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, bump_main, &b), 0);
    while (__atomic_load_n(&syncs, __ATOMIC_SEQ_CST) == 0) rn_test_sleep_ms(1);
    uint64_t t0 = rn_mono_ns();
    assert_int_equal(rn_preg_epoch(r, id, &ep), 0);
    double ms = (double)(rn_mono_ns() - t0) / 1e6;
    print_message("epoch read during a 500 ms sync: %.2f ms (epoch %d)\n", ms, ep);
    assert_int_equal(ep, 0);                 /* not handed out before it is durable */
    assert_true(ms < 100);
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(rn_preg_epoch(r, id, &ep), 0);
    assert_int_equal(ep, 1);
    slow_sync_ms = 0;
    rn_sys_reset();
    rn_preg_close(r);
}

/* An epoch the registry never issued would fence out the real producer. */
static void test_future_epoch_refused(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    rn_preg_t *r;
    int64_t id;
    int16_t ep;
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    assert_int_equal(step(&s, r, hdr(id, 0, 0, 2), 0, &d, &st), 0);
    assert_int_equal(step(&s, r, hdr(id, 7, 0, 2), 2, &d, &st), -1);
    assert_int_equal(st.code, RN_ST_FAILED_PRECONDITION);
    assert_non_null(strstr(st.msg, "epoch 7 was never issued: the current epoch is 0"));
    /* the real producer goes on */
    assert_int_equal(step(&s, r, hdr(id, 0, 2, 2), 2, &d, &st), 0);
    rn_pstate_free(&s);
    rn_preg_close(r);
}

/* Sequences wrap modulo 2^31 (Kafka): after 2^31 - 1 comes 0. */
static void test_sequence_wraps(void **state)
{
    (void)state;
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    assert_int_equal(step(&s, NULL, hdr(3, 0, INT32_MAX - 2, 5), 0, &d, &st), 0);
    assert_int_equal(step(&s, NULL, hdr(3, 0, 2, 5), 5, &d, &st), 0);
    assert_int_equal(step(&s, NULL, hdr(3, 0, INT32_MAX - 2, 5), 0, &d, &st), 1);
    assert_int_equal(step(&s, NULL, hdr(3, 0, 8, 1), 0, &d, &st), -1);
    assert_non_null(strstr(st.msg, "expected 7, got 8"));
    rn_pstate_free(&s);
}

/* 50,000 producers on one queue: lookups by hash (41 us per batch before,
 * a linear search), and idle entries expire. */
static void test_pstate_hash_and_expiry(void **state)
{
    (void)state;
    enum { N = 50000 };
    rn_pstate_t s = RN_PSTATE_INIT;
    rn_pbatch_t d;
    rn_status_t st;
    uint64_t t0 = rn_mono_ns();
    for (int64_t p = 1; p <= N; p++) {
        rn_batch_header_t h = hdr(p, 0, 0, 1);
        assert_int_equal(rn_pstate_check(&s, NULL, &h, NULL, 0, &d, &st), 0);
        assert_int_equal(rn_pstate_record(&s, &h, p, 0, 1000), 0);
    }
    for (int64_t p = 1; p <= N; p++) {
        rn_batch_header_t h = hdr(p, 0, 1, 1);
        assert_int_equal(rn_pstate_check(&s, NULL, &h, NULL, 0, &d, &st), 0);
        h = hdr(p, 0, 0, 1);
        assert_int_equal(rn_pstate_check(&s, NULL, &h, NULL, 0, &d, &st), 1);
        assert_int_equal(d.base_offset, p);
    }
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    print_message("%d producers recorded and checked twice: %.3f s (%.2f us per batch)\n", N,
                  secs, secs * 1e6 / (3.0 * N));
    assert_true(secs < 1.0);
    rn_pstate_free(&s);

    /* expiry: idle longer than expire_ms, the queue forgets the producer */
    rn_pstate_t e = RN_PSTATE_INIT;
    e.expire_ms = 1000;
    rn_batch_header_t a = hdr(1, 0, 10, 1), b = hdr(2, 0, 10, 1), c = hdr(3, 0, 0, 1);
    assert_int_equal(rn_pstate_record(&e, &a, 0, 0, 10000), 0);
    assert_int_equal(rn_pstate_record(&e, &b, 1, 0, 10900), 0);
    assert_int_equal(rn_pstate_record(&e, &c, 2, 0, 11500), 0);     /* sweeps */
    assert_int_equal(e.n, 2);
    rn_batch_header_t a2 = hdr(1, 0, 500, 1), b2 = hdr(2, 0, 500, 1);
    assert_int_equal(rn_pstate_check(&e, NULL, &a2, NULL, 0, &d, &st), 0);     /* forgotten */
    assert_int_equal(rn_pstate_check(&e, NULL, &b2, NULL, 0, &d, &st), -1);    /* still known */
    assert_non_null(strstr(st.msg, "expected 11, got 500"));
    rn_pstate_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_damaged, setup, teardown),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_chain_in_request),
        cmocka_unit_test_setup_teardown(test_fencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_cost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_read_does_not_wait_for_fsync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_epoch_refused, setup, teardown),
        cmocka_unit_test(test_sequence_wraps),
        cmocka_unit_test(test_pstate_hash_and_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

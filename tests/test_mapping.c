/*
 * test_mapping.c — the mapping arithmetic (locating a logical offset among
 * items, translating offsets, checking an item list), and remap crash
 * safety: a child process remaps a queue to a second store and is killed
 * with SIGKILL at each step of the remap; reopening must find a consistent
 * mapping (the old one or the new one, never half), every record at its
 * logical offset, appends continuing densely, and a second remap to the same
 * store directory succeeding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/mapping.h"
#include "tests/util/util.h"

/* ---- arithmetic --------------------------------------------------------- */

static rn_meta_item_t item(uint32_t seq, int64_t ls, int64_t ps, int64_t pe)
{
    rn_meta_item_t it = {.queue = 3, .seq = seq, .logical_start = ls, .physical_id = seq + 7,
                         .store_id = 0, .physical_start = ps, .physical_end = pe};
    return it;
}

static void test_find_and_translate(void **state)
{
    (void)state;
    /* [0,10) on physical [0,10); an empty item; [10,13) on physical [5,8);
     * open from 13 on physical 0. */
    rn_meta_item_t v[4] = {item(0, 0, 0, 10), item(1, 10, 4, 4), item(2, 10, 5, 8),
                           item(5, 13, 0, -1)};
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_mapping_check(v, 4, err), 0);
    size_t idx = 99;
    struct { int64_t l; size_t want; } cases[] = {
        {0, 0}, {9, 0}, {10, 2}, {12, 2}, {13, 3}, {1000000, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(rn_mapping_find(v, 4, cases[i].l, &idx), 0);
        assert_int_equal(idx, cases[i].want);
    }
    assert_int_equal(rn_mapping_find(v, 4, -1, &idx), RN_ERANGE);
    assert_int_equal(rn_mapping_find(v, 0, 0, &idx), RN_ERANGE);
    assert_int_equal(rn_mapping_to_physical(&v[2], 11), 6);
    assert_int_equal(rn_mapping_to_logical(&v[2], 7), 12);
    assert_int_equal(rn_mapping_to_physical(&v[3], 13), 0);
    assert_int_equal(rn_mapping_to_logical(&v[3], 100), 113);
    assert_int_equal(rn_mapping_item_end(&v[0]), 10);
    assert_int_equal(rn_mapping_item_end(&v[1]), 10);
    assert_int_equal(rn_mapping_item_end(&v[2]), 13);
    assert_int_equal(rn_mapping_item_end(&v[3]), -1);
    /* A queue that starts later (retention dropped items) finds nothing below. */
    assert_int_equal(rn_mapping_find(v + 2, 2, 9, &idx), RN_ERANGE);
    assert_int_equal(rn_mapping_find(v + 2, 2, 10, &idx), 0);
}

static void test_check_rules(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_item_t v[3];
    struct { rn_meta_item_t a, b, c; size_t n; const char *what; } bad[] = {
        {item(0, 0, 0, 10), item(1, 11, 0, -1), item(0, 0, 0, 0), 2, "starts at logical 11"},
        {item(0, 0, 0, 10), item(1, 9, 0, -1), item(0, 0, 0, 0), 2, "starts at logical 9"},
        {item(0, 0, 0, -1), item(1, 0, 0, -1), item(0, 0, 0, 0), 2, "open but is not the last"},
        {item(0, 0, 0, 10), item(1, 10, 0, 5), item(0, 0, 0, 0), 2, "last item 1 is sealed"},
        {item(0, 0, 5, 4), item(1, -1, 0, -1), item(0, 0, 0, 0), 2, "ends (physical 4)"},
        {item(1, 0, 0, 0), item(1, 0, 0, -1), item(0, 0, 0, 0), 2, "item seq 1 follows 1"},
        {item(0, -5, 0, -1), item(0, 0, 0, 0), item(0, 0, 0, 0), 1, "negative start"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v[0] = bad[i].a; v[1] = bad[i].b; v[2] = bad[i].c;
        err[0] = '\0';
        assert_int_equal(rn_mapping_check(v, bad[i].n, err), RN_ECORRUPT);
        if (!strstr(err, bad[i].what)) fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].what);
    }
    v[0] = item(0, 0, 0, 10);
    v[1] = item(1, 10, 0, -1);
    v[1].queue = 4;
    assert_int_equal(rn_mapping_check(v, 2, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "mixed"));
    assert_int_equal(rn_mapping_check(v, 0, err), RN_ECORRUPT);
}

/* ---- kill -9 during a remap ------------------------------------------- */

typedef struct fixture {
    char root[64];
    char dir[PATH_MAX];
    char store[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "mapping") != 0) { free(f); return -1; }
    snprintf(f->dir, sizeof f->dir, "%s/data", f->root);
    snprintf(f->store, sizeof f->store, "%s/disk2/store", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = rn_test_rmtree(f->root);
    free(f);
    rn_meta_test_hook = NULL;
    return rc == 0 ? 0 : -1;
}

static rn_datadir_t *open_dir(const char *dir, int create)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = create;
    o.holder = "test_mapping";
    o.log.fsync = RN_FSYNC_GROUP;
    o.log.segment_bytes = 1u << 20;
    o.log.max_batch_bytes = 1u << 16;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(dir, &o, &d, err);
    if (rc != 0) fail_msg("rn_datadir_open(%s): %d %s", dir, rc, err);
    return d;
}

/* Append n records with values "r<first+i>" in one batch; returns the base. */
static int64_t append_seq(rn_datadir_t *d, rn_datadir_queue_t *q, int first, int n)
{
    rn_test_records_t spec = {.prefix = "r", .first = first, .n = n, .ts0 = 1000 + first,
                              .ts_step = 1};
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

/* Every record of the queue is r<offset>, offsets 0..want-1. */
static void expect_dense(rn_datadir_t *d, const char *topic, int64_t want)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    if (rn_consumer_assign(c, topic, 0, 0, err) != 0) fail_msg("assign: %s", err);
    rn_consumer_batch_t b;
    int64_t next = 0;
    int rc;
    while ((rc = rn_consumer_poll(c, &b, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++, next++) {
            char val[32];
            snprintf(val, sizeof val, "r%lld", (long long)next);
            assert_int_equal(b.records[i].offset, next);
            assert_int_equal(b.records[i].value_len, (int32_t)strlen(val));
            assert_memory_equal(b.records[i].value, val, strlen(val));
        }
    }
    if (rc < 0) fail_msg("poll: %s", err);
    assert_int_equal(next, want);
    rn_consumer_destroy(c);
}

static const char *kill_point;
static int kill_pipe = -1;

static void stop_here(const char *point)
{
    if (strcmp(point, kill_point) != 0) return;
    char x = 'x';
    if (write(kill_pipe, &x, 1) != 1) _exit(3);
    for (;;) pause();
}

/* Remap in a child, SIGKILL it at `point`; 1 if it got there. */
static int remap_and_kill(fixture_t *f, const char *point)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        kill_point = point;
        kill_pipe = fds[1];
        rn_meta_test_hook = stop_here;
        rn_datadir_opts_t o;
        rn_datadir_opts_default(&o);
        o.holder = "remapper";
        rn_datadir_t *d = NULL;
        if (rn_datadir_open(f->dir, &o, &d, NULL) != 0) _exit(4);
        int rc = rn_datadir_remap(d, "t", 0, f->store, NULL, NULL, NULL);
        _exit(rc == 0 ? 0 : 5);       /* the point was not reached */
    }
    close(fds[1]);
    char x;
    ssize_t got = read(fds[0], &x, 1);
    close(fds[0]);
    if (got == 1) kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (got == 1) assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    else fail_msg("the child did not reach %s (status %d)", point, status);
    return got == 1;
}

static void test_kill_during_remap(void **state)
{
    fixture_t *f = *state;
    static const struct { const char *point; int committed; } steps[] = {
        {"remap:begin", 0}, {"remap:store-created", 0}, {"remap:synced", 0},
        {"remap:in-transaction", 0}, {"remap:committed", 1},
    };
    char err[RN_ERRMSG_SIZE] = "";
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s/data' '%s/disk2'", f->root, f->root);
        assert_int_equal(system(cmd), 0);
        rn_datadir_t *d = open_dir(f->dir, 1);
        assert_int_equal(rn_datadir_topic_create(d, "t", 1, NULL, err), 0);
        rn_datadir_queue_t q;
        assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
        assert_int_equal(append_seq(d, &q, 0, 5), 0);
        assert_int_equal(append_seq(d, &q, 5, 4), 5);
        rn_datadir_queue_close(&q);
        assert_int_equal(rn_datadir_close(d), 0);

        assert_true(remap_and_kill(f, steps[s].point));

        /* Reopened after kill -9: a consistent mapping (queue_open checks it
         * with rn_mapping_check), the old or the new one whole. */
        d = open_dir(f->dir, 0);
        assert_int_equal(rn_datadir_queue_open(d, "t", 0, &q, err), 0);
        if (steps[s].committed) {
            assert_int_equal(q.nitems, 2);
            assert_int_equal(q.items[0].physical_end, 9);
            assert_int_equal(q.items[1].logical_start, 9);
            assert_int_equal(q.items[1].store_id, 1);
        } else {
            assert_int_equal(q.nitems, 1);
            assert_int_equal(q.items[0].physical_end, -1);
            assert_int_equal(q.items[0].store_id, 0);
        }
        expect_dense(d, "t", 9);
        /* Producing goes on densely, and a remap to the same directory
         * works (a store left by the killed remap is adopted). */
        assert_int_equal(append_seq(d, &q, 9, 3), 9);
        rn_meta_item_t sealed, opened;
        int rc = rn_datadir_remap(d, "t", 0, f->store, &sealed, &opened, err);
        if (rc != 0) fail_msg("%s: remap after the crash: %s", steps[s].point, err);
        assert_int_equal(opened.logical_start, 12);
        assert_int_equal(opened.store_id, 1);
        assert_int_equal(append_seq(d, &q, 12, 2), 12);
        expect_dense(d, "t", 14);
        rn_datadir_store_info_t *st = NULL;
        size_t n = 0;
        assert_int_equal(rn_datadir_stores(d, &st, &n, err), 0);
        assert_int_equal(n, 2);
        assert_string_equal(st[1].path, f->store);
        free(st);
        rn_datadir_queue_close(&q);
        assert_int_equal(rn_datadir_close(d), 0);

        /* And it all survives a clean restart. */
        d = open_dir(f->dir, 0);
        expect_dense(d, "t", 14);
        assert_int_equal(rn_datadir_close(d), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_and_translate),
        cmocka_unit_test(test_check_rules),
        cmocka_unit_test_setup_teardown(test_kill_during_remap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

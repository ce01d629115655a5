/*
 * test_groups.c — consumer group offsets and checkpoints over a data
 * directory: commits checked against each queue's range, offsets and
 * checkpoints surviving a restart, resets in every direction (earliest,
 * latest, a timestamp inside a batch, a checkpoint; with and without a
 * topic) with failed resets changing nothing, start offsets for resuming and
 * replaying, and deterministic checkpoint replay across a remap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "tests/util/util.h"

typedef struct fixture {
    char root[64];
    char dir[PATH_MAX];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "groups") != 0) { free(f); return -1; }
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

static rn_datadir_t *open_dir(const char *dir)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "test_groups";
    o.log.fsync = RN_FSYNC_NEVER;
    o.log.segment_bytes = 1u << 20;
    o.log.max_batch_bytes = 1u << 14;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(dir, &o, &d, err);
    if (rc != 0) fail_msg("rn_datadir_open(%s): %d %s", dir, rc, err);
    return d;
}

/* Append n records "q<queue>-<first+i>" with timestamps ts0 + 10 i. */
static void append(rn_datadir_t *d, const char *topic, uint32_t queue, int first, int n,
                   int64_t ts0)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t q;
    assert_int_equal(rn_datadir_queue_open(d, topic, queue, &q, err), 0);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "q%u-", queue);
    rn_test_records_t spec = {.prefix = prefix, .first = first, .n = n, .ts0 = ts0, .ts_step = 10};
    rn_batch_builder_t b;
    const uint8_t *batch;
    size_t len;
    rn_test_batch_build(&b, &spec, &batch, &len);
    int64_t base;
    uint64_t ticket;
    assert_int_equal(rn_datadir_append(d, &q, batch, len, &base, &ticket, err), 0);
    assert_int_equal(base, first);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    rn_batch_builder_destroy(&b);
    rn_datadir_queue_close(&q);
}

/* Topic "t" with 2 queues: queue 0 holds 0..9 (ts 1000.., 1100..), queue 1
 * holds 0..4 (ts 5000..). */
static void populate(rn_datadir_t *d)
{
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_datadir_topic_create(d, "t", 2, NULL, err), 0);
    append(d, "t", 0, 0, 5, 1000);
    append(d, "t", 0, 5, 5, 1100);
    append(d, "t", 1, 0, 5, 5000);
}

static int64_t offset_of(rn_datadir_t *d, const char *group, uint32_t queue)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_offsets_get(rn_datadir_meta(d), group, -1, &v, &n, err), 0);
    int64_t off = -1;
    for (size_t i = 0; i < n; i++)
        if (v[i].queue == queue && !strcmp(v[i].topic, "t")) off = v[i].offset;
    free(v);
    return off;
}

static void test_commit_checks_and_restart(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir);
    populate(d);
    assert_int_equal(rn_group_commit(d, "g", "t", 0, 7, err), 0);
    assert_int_equal(rn_group_commit(d, "g", "t", 1, 5, err), 0);    /* the end itself */
    assert_int_equal(rn_group_commit(d, "g", "t", 1, 6, err), RN_ERANGE);
    assert_string_equal(err, "offset 6 is outside topic 't' queue 1's range [0, 5]");
    assert_int_equal(rn_group_commit(d, "g", "t", 2, 0, err), RN_ENOTFOUND);
    assert_string_equal(err, "topic 't' has no queue 2; it has queues 0..1");
    assert_int_equal(rn_group_commit(d, "g", "nope", 0, 0, err), RN_ENOTFOUND);
    assert_int_equal(rn_group_commit(d, "bad name", "t", 0, 0, err), RN_EINVAL);
    rn_meta_checkpoint_t cp;
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "g", "c1", &cp, err), 0);
    assert_int_equal(cp.offsets, 2);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "g", "c1", &cp, err), RN_EEXIST);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "nobody", "c1", &cp, err),
                     RN_ENOTFOUND);
    assert_string_equal(err, "unknown group 'nobody'; groups: g");
    assert_int_equal(rn_group_commit(d, "g", "t", 0, 2, err), 0);
    assert_int_equal(rn_datadir_close(d), 0);

    /* Restart: offsets and the checkpoint are there. */
    d = open_dir(f->dir);
    assert_int_equal(offset_of(d, "g", 0), 2);
    assert_int_equal(offset_of(d, "g", 1), 5);
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    assert_int_equal(rn_meta_checkpoint_get(rn_datadir_meta(d), NULL, "c1", &cp, err), 0);
    assert_string_equal(cp.group, "g");
    assert_int_equal(rn_meta_checkpoint_offsets(rn_datadir_meta(d), cp.id, &v, &n, err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].offset, 7);
    assert_int_equal(v[1].offset, 5);
    free(v);
    rn_meta_group_t g;
    assert_int_equal(rn_meta_group_get(rn_datadir_meta(d), "g", &g, err), 0);
    assert_int_equal(g.offsets, 2);
    assert_int_equal(g.checkpoints, 1);
    assert_int_equal(rn_datadir_close(d), 0);
}

static void expect_changes(const rn_group_change_t *v, size_t n, int64_t q0_before,
                           int64_t q0_after, int64_t q1_before, int64_t q1_after)
{
    assert_int_equal(n, 2);
    assert_int_equal(v[0].queue, 0);
    assert_int_equal(v[0].before, q0_before);
    assert_int_equal(v[0].after, q0_after);
    assert_int_equal(v[1].queue, 1);
    assert_int_equal(v[1].before, q1_before);
    assert_int_equal(v[1].after, q1_after);
}

static void test_reset_every_direction(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir);
    populate(d);
    rn_group_change_t *v = NULL;
    size_t n = 0;
    rn_group_target_t to;
    assert_int_equal(rn_group_commit(d, "g", "t", 0, 6, err), 0);
    assert_int_equal(rn_group_commit(d, "g", "t", 1, 2, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "g", "mid", NULL, err), 0);

    /* Backwards to earliest, forwards to latest. */
    assert_int_equal(rn_group_parse_target("earliest", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", NULL, &to, &v, &n, err), 0);
    expect_changes(v, n, 6, 0, 2, 0);
    free(v);
    assert_int_equal(rn_group_parse_target("latest", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", "t", &to, &v, &n, err), 0);
    expect_changes(v, n, 0, 10, 0, 5);
    free(v);
    /* Back to a time inside a batch: queue 0's first record with ts >= 1025
     * is offset 3 (ts 1030); queue 1's first is 0 (ts 5000). Then forwards in
     * time: 1100 is offset 5 of queue 0 (queue 1 stays at 0). */
    assert_int_equal(rn_group_parse_target("@1025", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", NULL, &to, &v, &n, err), 0);
    expect_changes(v, n, 10, 3, 5, 0);
    free(v);
    assert_int_equal(rn_group_parse_target("@1100", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", "t", &to, &v, &n, err), 0);
    assert_int_equal(v[0].after, 5);
    free(v);
    /* To the checkpoint. */
    assert_int_equal(rn_group_parse_target("checkpoint:mid", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", NULL, &to, &v, &n, err), 0);
    expect_changes(v, n, 5, 6, 0, 2);
    free(v);

    /* Failures change nothing. */
    assert_int_equal(rn_group_parse_target("checkpoint:nope", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", NULL, &to, &v, &n, err), RN_ENOTFOUND);
    assert_string_equal(err, "group 'g' has no checkpoint 'nope'; its checkpoints: mid");
    assert_int_equal(rn_group_reset(d, "other", NULL, &to, &v, &n, err), RN_ENOTFOUND);
    assert_string_equal(err, "unknown group 'other'; groups: g");
    assert_int_equal(rn_group_parse_target("earliest", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "g", "nope", &to, &v, &n, err), RN_ENOTFOUND);
    assert_int_equal(rn_group_parse_target("5", "--to", 0, &to, err), RN_EINVAL);
    assert_int_equal(offset_of(d, "g", 0), 6);
    assert_int_equal(offset_of(d, "g", 1), 2);

    /* A checkpoint holding fewer queues than the group: the group becomes
     * exactly the checkpoint. */
    assert_int_equal(rn_meta_offsets_replace(rn_datadir_meta(d), "h", -1, NULL, 0, err), 0);
    assert_int_equal(rn_group_commit(d, "h", "t", 0, 4, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "h", "one", NULL, err), 0);
    assert_int_equal(rn_group_commit(d, "h", "t", 1, 3, err), 0);
    assert_int_equal(rn_group_commit(d, "h", "t", 0, 9, err), 0);
    assert_int_equal(rn_group_parse_target("checkpoint:one", "--to", 0, &to, err), 0);
    assert_int_equal(rn_group_reset(d, "h", NULL, &to, &v, &n, err), 0);
    expect_changes(v, n, 9, 4, 3, -1);
    free(v);
    assert_int_equal(offset_of(d, "h", 0), 4);
    assert_int_equal(offset_of(d, "h", 1), -1);
    assert_int_equal(rn_datadir_close(d), 0);
}

/* The values a consumer starting as `s` prints to the end, one per line. */
static char *replay(rn_datadir_t *d, const char *group, const char *from)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_group_start_t s;
    memset(&s, 0, sizeof s);
    s.group = group;
    assert_int_equal(rn_group_parse_target(from, "--from", 1, &s.from, err), 0);
    rn_meta_topic_t t;
    assert_int_equal(rn_meta_topic_get(rn_datadir_meta(d), "t", &t, err), 0);
    if (rn_group_start_prepare(d, &s, t.id, err) != 0) fail_msg("prepare: %s", err);
    rn_consumer_t *c = NULL;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    for (uint32_t qi = 0; qi < t.queues; qi++) {
        rn_datadir_queue_t q;
        int64_t off;
        assert_int_equal(rn_datadir_queue_open(d, "t", qi, &q, err), 0);
        if (rn_group_start_offset(d, &s, &q, &off, NULL, err) != 0) fail_msg("start: %s", err);
        rn_datadir_queue_close(&q);
        assert_int_equal(rn_consumer_assign(c, "t", qi, off, err), 0);
    }
    rn_group_start_free(&s);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    rn_consumer_batch_t b;
    while (rn_consumer_poll(c, &b, err) == 1)
        for (uint32_t i = 0; i < b.count; i++) {
            assert_true(len + (size_t)b.records[i].value_len + 2 < cap);
            memcpy(out + len, b.records[i].value, (size_t)b.records[i].value_len);
            len += (size_t)b.records[i].value_len;
            out[len++] = '\n';
        }
    rn_consumer_destroy(c);
    return out;
}

static void test_checkpoint_replay_is_deterministic(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = open_dir(f->dir);
    populate(d);
    assert_int_equal(rn_group_commit(d, "g", "t", 0, 3, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "g", "cp", NULL, err), 0);
    /* The group moves on; the log is remapped and grows. */
    assert_int_equal(rn_group_commit(d, "g", "t", 0, 8, err), 0);
    assert_int_equal(rn_datadir_remap(d, "t", 0, NULL, NULL, NULL, err), 0);
    append(d, "t", 0, 10, 3, 2000);

    char *a = replay(d, NULL, "checkpoint:cp");
    char *b = replay(d, "g", "checkpoint:cp");
    char *c = replay(d, NULL, "checkpoint:cp");
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    /* Queue 0 from 3, queue 1 (absent from the checkpoint) from its start,
     * round-robin by batch: q0 batch [0,5) from 3, q1 batch, q0 [5,10), q0 [10,13). */
    assert_string_equal(a, "q0-3\nq0-4\nq1-0\nq1-1\nq1-2\nq1-3\nq1-4\nq0-5\nq0-6\nq0-7\nq0-8\n"
                           "q0-9\nq0-10\nq0-11\nq0-12\n");
    /* Resuming the group starts at its offsets (queue 1: earliest). */
    char *r = replay(d, "g", "earliest");
    assert_string_equal(r, "q0-8\nq0-9\nq1-0\nq1-1\nq1-2\nq1-3\nq1-4\nq0-10\nq0-11\nq0-12\n");
    free(a); free(b); free(c); free(r);

    /* A checkpoint name in two groups needs the group. */
    assert_int_equal(rn_group_commit(d, "g2", "t", 1, 1, err), 0);
    assert_int_equal(rn_meta_checkpoint_create(rn_datadir_meta(d), "g2", "cp", NULL, err), 0);
    rn_group_start_t s;
    memset(&s, 0, sizeof s);
    assert_int_equal(rn_group_parse_target("checkpoint:cp", "--from", 1, &s.from, err), 0);
    assert_int_equal(rn_group_start_prepare(d, &s, 1, err), RN_EINVAL);
    assert_string_equal(err, "checkpoint 'cp' exists in several groups (g, g2); name the group "
                             "with --group G");
    rn_group_start_free(&s);
    assert_int_equal(rn_meta_checkpoint_drop(rn_datadir_meta(d), "g2", "cp", err), 0);
    assert_int_equal(rn_meta_checkpoint_drop(rn_datadir_meta(d), "g2", "cp", err), RN_ENOTFOUND);
    assert_string_equal(err, "group 'g2' has no checkpoint 'cp'; it has no checkpoints");
    a = replay(d, NULL, "checkpoint:cp");
    assert_true(strncmp(a, "q0-3\n", 5) == 0);
    free(a);
    assert_int_equal(rn_datadir_close(d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_checks_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_every_direction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_replay_is_deterministic, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_etl_order.c — exactly-once of pipelines whose sink queues are fed by
 * several source queues (etl.c's order journal), across kill -9.
 *
 * Scenario of test_reorder_after_kill: 2 source queues feed 1 sink queue;
 * batch B arrives on queue 1 and is written to the sink, the run is killed
 * before its checkpoint, batch A arrives on queue 0, and the restart must
 * leave B then A in the sink, each once (it left B twice and lost A when
 * the restart skipped "the first K recomputed rows" in its own order).
 *
 * Scenario of test_kill_queues: seeded trials (RN_SEED=N replays; the seed
 * is printed) of 2..4 source queues into 1..N sink queues (through
 * `queues = K` or a sink, and a dead-letter topic, that already exist with
 * fewer queues), for a filter, windowed aggregations (TUMBLE, HOP, SESSION,
 * EMIT CHANGES: their lateness depends on the order queues are read in)
 * and the file sink; batches of
 * uneven sizes arrive on queues that start late or go idle for a while, in
 * slices between runs that are SIGKILLed at seeded points (after a step, a
 * sink write, a batch read, before or after a checkpoint), so each restart
 * sees other arrivals than the run it follows. Each run logs the batches it
 * read and its checkpoints (the test hook); the order that stands is, per
 * run, what it read before its last checkpoint, and the whole of the last
 * run. An uninterrupted run that is handed the same batches in that order,
 * one at a time, must produce the same sink (each queue record for record,
 * or the file byte for byte) and the same dead letters.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/error.h"
#include "etl/etl.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"
#include "tests/util/util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARRIVALS 48
#define MAX_PER      12

static const char *const stream_sql =
    "CREATE STREAM ev (svc TEXT, lat INTEGER, at INTEGER) "
    "WITH (topic = 'in', format = 'json', timestamp = 'at')";

static rn_datadir_t *open_dir(const char *root)
{
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.log.fsync = RN_FSYNC_NEVER;       /* kill -9 keeps the page cache */
    rn_datadir_t *d = NULL;
    if (rn_datadir_open(root, &o, &d, err) != 0) fail_msg("open %s: %s", root, err);
    return d;
}

static void exec_sql(rn_datadir_t *d, const char *sql)
{
    char err[RN_ERRMSG_SIZE];
    rn_sql_t *q = NULL;
    if (rn_sql_open(d, sql, strlen(sql), NULL, &q, NULL, err) != 0) fail_msg("%s: %s", sql, err);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_close(q);
}

static void topic_create(rn_datadir_t *d, const char *name, uint32_t nq)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    if (rn_datadir_topic_create(d, name, nq, &t, err) != 0) fail_msg("%s: %s", name, err);
}

/* A source batch: n records on queue q, its first at offset `from`. */
typedef struct arrival {
    uint32_t q;
    int      n;
    int64_t  from;
    int64_t  ts[MAX_PER];
    char     vals[MAX_PER][96];
} arrival_t;

static void produce(rn_datadir_t *d, const arrival_t *a)
{
    char err[RN_ERRMSG_SIZE];
    rn_batch_builder_t bb;
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    assert_int_equal(rn_batch_builder_init(&bb, &bo), 0);
    for (int i = 0; i < a->n; i++) {
        rn_record_t rec;
        memset(&rec, 0, sizeof rec);
        rec.timestamp = a->ts[i];
        rec.key_len = -1;
        rec.value = (const uint8_t *)a->vals[i];
        rec.value_len = (int32_t)strlen(a->vals[i]);
        assert_int_equal(rn_batch_builder_add(&bb, &rec), 0);
    }
    const uint8_t *bytes;
    size_t len;
    assert_int_equal(rn_batch_builder_finish(&bb, &bytes, &len), 0);
    rn_datadir_queue_t dq;
    int64_t base;
    uint64_t ticket;
    assert_int_equal(rn_datadir_queue_open(d, "in", a->q, &dq, err), 0);
    assert_int_equal(rn_datadir_append(d, &dq, bytes, len, &base, &ticket, err), 0);
    assert_int_equal(rn_datadir_wait(d, ticket), 0);
    assert_int_equal(base, a->from);
    rn_datadir_queue_close(&dq);
    rn_batch_builder_destroy(&bb);
}

/* ---- a run in a child, killed by its hook ------------------------------------ */

static const char *g_kill_point;
static long g_kill_at, g_points;
static int g_logfd = -1;

/* Log the batches read ("B q from to") and the checkpoints ("C"), then
 * SIGKILL at the kill_at-th `point` ("batch" matches any batch). */
static void kill_hook(const char *point)
{
    char line[128];
    int n = 0;
    if (!strncmp(point, "batch ", 6)) n = snprintf(line, sizeof line, "B %s\n", point + 6);
    else if (!strcmp(point, "after-checkpoint")) n = snprintf(line, sizeof line, "C\n");
    if (n > 0 && g_logfd >= 0 && write(g_logfd, line, (size_t)n) != n) _exit(7);
    size_t k = strlen(g_kill_point);
    if (!strncmp(point, g_kill_point, k) && (point[k] == '\0' || point[k] == ' ') &&
        ++g_points == g_kill_at)
        raise(SIGKILL);
}

/* Fork a child running pipeline `name` to caught-up (then a final
 * checkpoint), logging to logpath, SIGKILLed at the kill_at-th `point`.
 * 1 when it was killed, 0 when it finished. */
static int child_run(const char *root, const char *name, const char *logpath,
                     const char *point, long kill_at)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[RN_ERRMSG_SIZE];
        g_logfd = logpath ? open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
        if (g_logfd >= 0 && write(g_logfd, "R\n", 2) != 2) _exit(7);
        rn_datadir_opts_t o;
        rn_datadir_opts_default(&o);
        o.log.fsync = RN_FSYNC_NEVER;
        rn_datadir_t *d = NULL;
        if (rn_datadir_open(root, &o, &d, err) != 0) { fprintf(stderr, "%s\n", err); _exit(3); }
        g_kill_at = kill_at;
        g_kill_point = point;
        g_points = 0;
        rn_etl_test_hook = kill_hook;
        rn_etl_t *p = NULL;
        if (rn_etl_open(d, name, &p, err) != 0) { fprintf(stderr, "open: %s\n", err); _exit(4); }
        rn_etl_state_t st = RN_ETL_MORE;
        for (int guard = 0; st == RN_ETL_MORE && guard < 1000000; guard++)
            if (rn_etl_step(p, &st, err) != 0) { fprintf(stderr, "step: %s\n", err); _exit(5); }
        if (rn_etl_checkpoint(p, err) != 0) { fprintf(stderr, "ckpt: %s\n", err); _exit(6); }
        rn_etl_close(p);
        rn_datadir_close(d);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_int_equal(WTERMSIG(status), SIGKILL);
        return 1;
    }
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0) fail_msg("the pipeline run exited with %d", WEXITSTATUS(status));
    return 0;
}

/* Run pipeline `name` in this process until caught up, then checkpoint. */
static void run_until_caught_up(rn_datadir_t *d, const char *name)
{
    char err[RN_ERRMSG_SIZE];
    rn_etl_t *p = NULL;
    if (rn_etl_open(d, name, &p, err) != 0) fail_msg("open %s: %s", name, err);
    rn_etl_state_t st = RN_ETL_MORE;
    for (int guard = 0; st == RN_ETL_MORE && guard < 1000000; guard++)
        if (rn_etl_step(p, &st, err) != 0) fail_msg("step %s: %s", name, err);
    assert_int_equal(st, RN_ETL_IDLE);
    assert_int_equal(rn_etl_checkpoint(p, err), 0);
    rn_etl_close(p);
}

/* ---- B then A ------------------------------------------------------------------ */

static void batch_of(arrival_t *a, uint32_t q, int64_t from, const char *tag, int64_t at)
{
    memset(a, 0, sizeof *a);
    a->q = q;
    a->n = 3;
    a->from = from;
    for (int i = 0; i < 3; i++) {
        a->ts[i] = at + i;
        snprintf(a->vals[i], sizeof a->vals[i], "{\"svc\":\"%s%d\",\"lat\":%d,\"at\":%lld}",
                 tag, i, 100 + i, (long long)(at + i));
    }
}

static void test_reorder_after_kill(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-ba");
    rn_datadir_t *d = open_dir(root);
    topic_create(d, "in", 2);
    exec_sql(d, stream_sql);
    const char *sql = "CREATE PIPELINE ba AS INSERT INTO bout SELECT svc FROM ev "
                      "WITH (queues = 1, checkpoint_interval = '1h')";
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    run_until_caught_up(d, "ba");                 /* the first checkpoint: nothing read */
    arrival_t a, b;
    batch_of(&b, 1, 0, "B", 1700000001000LL);
    produce(d, &b);
    rn_datadir_close(d);
    /* B is read and written to the sink; the run dies before a checkpoint */
    assert_int_equal(child_run(root, "ba", NULL, "after-sink-write", 1), 1);
    /* the order journal then holds one entry (etl.c's layout): queue 1's
     * batch [0, 3), after checkpoint 2 (the first open's and the final one
     * of the first run) */
    char jpath[600];
    snprintf(jpath, sizeof jpath, "%s/pipelines/ba.order", root);
    size_t jn;
    uint8_t *j = (uint8_t *)rn_test_slurp(jpath, &jn);
    assert_int_equal(jn, 40);
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    memcpy(&u32, j, 4);      assert_int_equal(u32, 0x314f4e52u);   /* "RNO1" */
    memcpy(&u32, j + 4, 4);  assert_int_equal(u32, 1);             /* source queue */
    memcpy(&u64, j + 8, 8);  assert_int_equal(u64, 2);             /* checkpoint */
    memcpy(&i64, j + 16, 8); assert_int_equal(i64, 0);             /* from */
    memcpy(&i64, j + 24, 8); assert_int_equal(i64, 3);             /* to */
    memcpy(&u32, j + 32, 4); assert_int_equal(u32, 0);             /* index */
    memcpy(&u32, j + 36, 4); assert_int_equal(u32, rn_crc32c(0, j, 36));
    free(j);
    d = open_dir(root);
    batch_of(&a, 0, 0, "A", 1700000000000LL);
    produce(d, &a);
    run_until_caught_up(d, "ba");
    size_t n;
    char *got = rn_test_read_queue(d, "bout", 0, &n);
    assert_string_equal(got, "{\"svc\":\"B0\"}\n{\"svc\":\"B1\"}\n{\"svc\":\"B2\"}\n"
                             "{\"svc\":\"A0\"}\n{\"svc\":\"A1\"}\n{\"svc\":\"A2\"}\n");
    free(got);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}


/* The B/A set-up up to the kill: B on queue 1 read, written, not
 * checkpointed; returns the data directory's root. */
static char *killed_after_b(const char *tag)
{
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new(tag);
    rn_datadir_t *d = open_dir(root);
    topic_create(d, "in", 2);
    exec_sql(d, stream_sql);
    const char *sql = "CREATE PIPELINE ba AS INSERT INTO bout SELECT svc FROM ev "
                      "WITH (queues = 1, checkpoint_interval = '1h')";
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    run_until_caught_up(d, "ba");
    arrival_t b;
    batch_of(&b, 1, 0, "B", 1700000001000LL);
    produce(d, &b);
    rn_datadir_close(d);
    assert_int_equal(child_run(root, "ba", NULL, "after-sink-write", 1), 1);
    return root;
}

/* Scenario: the order journal ends in a torn entry (garbage after the last
 * whole one): it is ignored and the restart still leaves B then A. Then:
 * a journal whose (CRC-valid) entry names a batch the source does not have
 * stops the restart with an error naming it, and writes nothing. */
static void test_journal_torn_and_mismatch(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE], jpath[600];
    char *root = killed_after_b("etl-jtorn");
    snprintf(jpath, sizeof jpath, "%s/pipelines/ba.order", root);
    int fd = open(jpath, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    uint8_t junk[53];                        /* a whole entry with a bad CRC, then a part */
    memset(junk, 'x', sizeof junk);
    memcpy(junk, "RNO1", 4);
    assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
    close(fd);
    rn_datadir_t *d = open_dir(root);
    arrival_t a;
    batch_of(&a, 0, 0, "A", 1700000000000LL);
    produce(d, &a);
    run_until_caught_up(d, "ba");
    size_t n;
    char *got = rn_test_read_queue(d, "bout", 0, &n);
    assert_string_equal(got, "{\"svc\":\"B0\"}\n{\"svc\":\"B1\"}\n{\"svc\":\"B2\"}\n"
                             "{\"svc\":\"A0\"}\n{\"svc\":\"A1\"}\n{\"svc\":\"A2\"}\n");
    free(got);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);

    root = killed_after_b("etl-jmismatch");
    snprintf(jpath, sizeof jpath, "%s/pipelines/ba.order", root);
    size_t jn;
    uint8_t *j = (uint8_t *)rn_test_slurp(jpath, &jn);
    assert_int_equal(jn, 40);
    int64_t to = 2;                          /* B is [0, 3): no batch ends at 2 */
    memcpy(j + 24, &to, 8);
    uint32_t crc = rn_crc32c(0, j, 36);
    memcpy(j + 36, &crc, 4);
    rn_test_write_file(jpath, j, jn);
    free(j);
    d = open_dir(root);
    rn_etl_t *p = NULL;
    assert_int_equal(rn_etl_open(d, "ba", &p, err), 0);
    rn_etl_state_t st;
    int rc = rn_etl_step(p, &st, err);
    assert_int_equal(rc, RN_ECORRUPT);
    assert_non_null(strstr(err, "expected topic 'in' queue 1 offsets [0, 2), read queue 1 [0, 3)"));
    assert_int_equal(rn_etl_checkpoint(p, err), RN_ECLOSED);
    rn_etl_close(p);
    got = rn_test_read_queue(d, "bout", 0, &n);
    assert_int_equal(n, 3);                  /* what the killed run wrote, nothing more */
    free(got);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

/* ---- seeded trials --------------------------------------------------------------- */

typedef struct trial {
    uint32_t  nsrc;
    int       narr;
    arrival_t arr[MAX_ARRIVALS];
    char      create[1024];      /* with %s for the file path */
    int       file;
    uint32_t  sink_pre, dlq_pre; /* queues of a sink / dead-letter topic made first; 0: none */
} trial_t;

static trial_t g_trial;

/* Trial `trial` (its kind cycles: filter, windowed, file sink; even ones
 * feed one sink queue). The arrivals: uneven batches on queues that start late or pause, event
 * times per queue mostly rising (a late start or a step back makes late
 * rows for a window), a non-JSON record now and then (dead letters). */
static void make_trial(trial_t *t, int trial, uint64_t *rng)
{
    memset(t, 0, sizeof *t);
    t->nsrc = 2 + (uint32_t)(rn_test_rng(rng) % 3);
    t->narr = 10 + (int)(rn_test_rng(rng) % 12);
    int start[4], pause0[4], pause1[4];
    int64_t clock[4], next[4] = {0, 0, 0, 0};
    for (uint32_t q = 0; q < t->nsrc; q++) {
        start[q] = q == 0 ? 0 : (int)(rn_test_rng(rng) % (uint64_t)(t->narr / 2));
        pause0[q] = (int)(rn_test_rng(rng) % (uint64_t)t->narr);
        pause1[q] = pause0[q] + (int)(rn_test_rng(rng) % 8);
        clock[q] = (int64_t)(rn_test_rng(rng) % 3000);
    }
    int serial = 0;
    uint32_t hot = 0;
    for (int i = 0; i < t->narr; i++) {
        uint32_t cand[4], nc = 0;
        for (uint32_t q = 0; q < t->nsrc; q++)
            if (i >= start[q] && !(i >= pause0[q] && i < pause1[q])) cand[nc++] = q;
        /* bursts: mostly the queue of the last arrival, sometimes another */
        if (i == 0 || rn_test_rng(rng) % 2 == 0) hot = nc ? cand[rn_test_rng(rng) % nc] : 0;
        uint32_t q = hot;
        arrival_t *a = &t->arr[i];
        a->q = q;
        a->n = 1 + (int)(rn_test_rng(rng) % MAX_PER);
        a->from = next[q];
        next[q] += a->n;
        for (int k = 0; k < a->n; k++) {
            uint64_t r = rn_test_rng(rng);
            clock[q] += 40 + (int64_t)(r % 160);
            int64_t at = 1700000000000LL + clock[q] - (r % 17 == 0 ? 1500 : 0);
            a->ts[k] = at;
            if (r % 23 == 4)
                snprintf(a->vals[k], sizeof a->vals[k], "oops{%d", serial);
            else
                snprintf(a->vals[k], sizeof a->vals[k], "{\"svc\":\"s%d\",\"lat\":%d,\"at\":%lld}",
                         (int)((r >> 8) % 4), serial, (long long)at);
            serial++;
        }
    }
    static const char *const queries[] = {
        "SELECT svc, lat, at FROM ev WHERE lat %% 3 <> 0",
        "SELECT window_start, window_end, svc, count(*) AS n, sum(lat) AS total FROM ev "
        "GROUP BY TUMBLE(ts, '1s'), svc",
        "SELECT window_start, window_end, count(*) AS n, max(lat) AS top FROM ev "
        "GROUP BY HOP(ts, '2s', '1s')",
        "SELECT window_start, window_end, svc, count(*) AS n FROM ev "
        "GROUP BY SESSION(ts, '300ms'), svc",
        "SELECT window_start, window_end, svc, count(*) AS n, min(lat) AS low FROM ev "
        "GROUP BY TUMBLE(ts, '1s'), svc EMIT CHANGES",
    };
    static const char *const intervals[] = {"1ms", "30ms", "1h", "1h"};
    int kind = trial % 3;                               /* filter, window, file sink */
    uint64_t qk = kind == 0 ? 0 : kind == 1 ? 1 + rn_test_rng(rng) % 4 : rn_test_rng(rng) % 5;
    const char *query = queries[qk];
    const char *iv = intervals[rn_test_rng(rng) % 4];
    /* even trials: N -> 1 */
    uint32_t k = trial % 2 == 0 ? 1 : 1 + (uint32_t)(rn_test_rng(rng) % t->nsrc);
    t->file = kind == 2;
    if (rn_test_rng(rng) % 2) t->dlq_pre = 1 + (uint32_t)(rn_test_rng(rng) % t->nsrc);
    char opts[128];
    if (!t->file && rn_test_rng(rng) % 2) {
        t->sink_pre = k;
        snprintf(opts, sizeof opts, "WITH (checkpoint_interval = '%s')", iv);
    } else {
        snprintf(opts, sizeof opts, "WITH (checkpoint_interval = '%s', queues = %u)", iv, k);
    }
    snprintf(t->create, sizeof t->create, "CREATE PIPELINE p AS INSERT INTO %s %s %s",
             t->file ? "'file:%s'" : "out", query, opts);
}

/* A fresh data directory for the trial: the source, the stream, the sinks
 * made beforehand, the pipeline (file sink at `file`). */
static rn_datadir_t *trial_dir(const trial_t *t, const char *root, const char *file)
{
    char err[RN_ERRMSG_SIZE], sql[1200];
    rn_datadir_t *d = open_dir(root);
    topic_create(d, "in", t->nsrc);
    exec_sql(d, stream_sql);
    if (t->sink_pre) topic_create(d, "out", t->sink_pre);
    if (t->dlq_pre) topic_create(d, "p.dlq", t->dlq_pre);
    snprintf(sql, sizeof sql, t->create, file);
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("%s: %s", sql, err);
    return d;
}

/* The order that stands, from the runs' log: per run ("R"), the batches it
 * read before its last checkpoint ("C"). Returns the count; v[i] indexes
 * t->arr. */
static int standing_order(const trial_t *t, const char *logpath, int *v, int *restarts)
{
    size_t len;
    char *log = rn_test_slurp(logpath, &len);
    int n = 0, run_start = 0, kept = 0;
    for (char *line = log; *line; ) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (line[0] == 'R') {
            *restarts += n > kept;             /* read past its checkpoint, then killed */
            n = kept;                          /* drop what the run read after its checkpoint */
            run_start = n;
        } else if (line[0] == 'C') {
            kept = n;
        } else {
            unsigned q;
            long long from, to;
            assert_int_equal(sscanf(line, "B %u %lld %lld", &q, &from, &to), 3);
            int found = -1;
            for (int i = 0; i < t->narr; i++)
                if (t->arr[i].q == q && t->arr[i].from == from) found = i;
            if (found < 0 || t->arr[found].from + t->arr[found].n != to)
                fail_msg("the log names batch %u [%lld, %lld), which was not produced", q, from, to);
            assert_true(n < 4 * MAX_ARRIVALS);
            v[n++] = found;
        }
        line = nl + 1;
    }
    (void)run_start;
    free(log);
    return kept;
}

static void one_trial(int trial, uint64_t *rng)
{
    char tag[64], ra[512], rb[512], fa[512], fb[512], logpath[512];
    trial_t *t = &g_trial;
    make_trial(t, trial, rng);
    snprintf(tag, sizeof tag, "etl-order-%d", trial);
    char *root = rn_test_tmpdir_new(tag);
    snprintf(ra, sizeof ra, "%s/a", root);           /* the uninterrupted run */
    snprintf(rb, sizeof rb, "%s/b", root);           /* the run under kill -9 */
    snprintf(fa, sizeof fa, "%s/a.jsonl", root);
    snprintf(fb, sizeof fb, "%s/b.jsonl", root);
    snprintf(logpath, sizeof logpath, "%s/runs.log", root);

    /* the run under kill -9: first opened with nothing to read, then the
     * arrivals in slices, a run (or none) after each */
    rn_datadir_t *d = trial_dir(t, rb, fb);
    rn_datadir_close(d);
    assert_int_equal(child_run(rb, "p", logpath, "none", 0), 0);
    static const char *const points[] = {"after-step", "after-sink-write", "after-sink-write",
                                         "batch", "before-checkpoint", "after-checkpoint"};
    int ai = 0, kills = 0, runs = 0;
    while (ai < t->narr) {
        int slice = 1 + (int)(rn_test_rng(rng) % 3);
        d = open_dir(rb);
        for (int k = 0; k < slice && ai < t->narr; k++) produce(d, &t->arr[ai++]);
        rn_datadir_close(d);
        if (rn_test_rng(rng) % 5 == 0) continue;      /* arrivals pile up */
        const char *point = points[rn_test_rng(rng) % 6];
        long at = 1 + (long)(rn_test_rng(rng) % (strcmp(point, "after-sink-write") ? 4 : 2));
        kills += child_run(rb, "p", logpath, point, at);
        runs++;
    }
    assert_int_equal(child_run(rb, "p", logpath, "none", 0), 0);
    d = open_dir(rb);
    char *got = rn_test_pipeline_output(d, t->file ? NULL : "out", t->file ? fb : NULL,
                                        "p.dlq");
    rn_datadir_close(d);

    /* the uninterrupted run, handed the batches in the order that stood */
    int order[4 * MAX_ARRIVALS];
    int restarts = 0;
    int n = standing_order(t, logpath, order, &restarts);
    int seen[MAX_ARRIVALS] = {0};
    for (int i = 0; i < n; i++) seen[order[i]]++;
    for (int i = 0; i < t->narr; i++)
        if (seen[i] != 1) fail_msg("trial %d: batch %d was read %d times", trial, i, seen[i]);
    char err[RN_ERRMSG_SIZE];
    d = trial_dir(t, ra, fa);
    rn_etl_t *p = NULL;
    if (rn_etl_open(d, "p", &p, err) != 0) fail_msg("open: %s", err);
    for (int i = 0; i < n; i++) {
        produce(d, &t->arr[order[i]]);
        rn_etl_state_t st = RN_ETL_MORE;
        for (int guard = 0; st == RN_ETL_MORE && guard < 1000; guard++)
            if (rn_etl_step(p, &st, err) != 0) fail_msg("step: %s", err);
        assert_int_equal(st, RN_ETL_IDLE);
    }
    assert_int_equal(rn_etl_checkpoint(p, err), 0);
    rn_etl_close(p);
    char *want = rn_test_pipeline_output(d, t->file ? NULL : "out", t->file ? fa : NULL,
                                         "p.dlq");
    rn_datadir_close(d);

    printf("trial %d: %u source queue(s), %d batches, %s, %d run(s), %d kill(s), %d after "
           "reading past a checkpoint, output %zu bytes\n", trial, t->nsrc, t->narr, t->create,
           runs, kills, restarts, strlen(want));
    if (strcmp(got, want) != 0) {
        char pw[128], pg[128];
        snprintf(pw, sizeof pw, "/tmp/%s-want.txt", tag);
        snprintf(pg, sizeof pg, "/tmp/%s-got.txt", tag);
        rn_test_write_file(pw, want, strlen(want));
        rn_test_write_file(pg, got, strlen(got));
        fail_msg("trial %d: the sink differs from the uninterrupted run's: diff %s %s",
                 trial, pw, pg);
    }
    free(want);
    free(got);
    rn_test_tmpdir_free(root);
}

static void test_kill_queues(void **state)
{
    (void)state;
    uint64_t rng = rn_test_seed("etl-order");
    int trials = getenv("RN_TRIALS") ? atoi(getenv("RN_TRIALS")) : 5;
    for (int i = 0; i < trials; i++) one_trial(i, &rng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reorder_after_kill),
        cmocka_unit_test(test_journal_torn_and_mismatch),
        cmocka_unit_test(test_kill_queues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

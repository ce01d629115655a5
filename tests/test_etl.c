/*
 * test_etl.c — ETL pipelines (etl/etl.h): parsing CREATE PIPELINE, bad SQL
 * refused at create, poison records to the dead-letter topic with their
 * source position in headers, pause/resume/drop (drop deletes the state),
 * and kill -9 at seeded random points (a forked child killed by SIGKILL
 * from the pipeline's own test hook: after a sink write, before or after a
 * checkpoint), restarted, for a filter, a windowed aggregation and a file
 * sink: the sink must equal an uninterrupted run's, record for record per
 * queue (values and headers); also for a Window TopN (test_kill_topn). A
 * bare-topic pipeline using json_extract on
 * `value` with non-JSON records interleaved sends exactly those to the
 * dead-letter topic and its sink equals the run without them. Sink faults:
 * the file sink's writes and fdatasyncs failing (rn_sys) and short, stdout
 * on a full device, and a run resumed in-process over appends group commit
 * had not published. Many source queues into fewer sink queues:
 * test_etl_order.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"
#include "tests/util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio_ext.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NQ        4
#define BATCHES   30
#define PER_BATCH 50

static const char *const stream_sql =
    "CREATE STREAM ev (svc TEXT, lat INTEGER, at INTEGER) "
    "WITH (topic = 'in', format = 'json', timestamp = 'at')";

static rn_datadir_t *open_dir(const char *root)
{
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
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

/* The same input every time: NQ queues, each in event-time order, with a
 * non-JSON record every 97th and a mistyped one every 101st. Returns the
 * number of poison records. */
static int make_input_range(rn_datadir_t *d, int b0, int b1)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    if (b0 == 0) {
        assert_int_equal(rn_datadir_topic_create(d, "in", NQ, &t, err), 0);
        exec_sql(d, stream_sql);
    }
    uint64_t rng = 12345;
    int poison = 0;
    static char vals[PER_BATCH][128];
    for (int b = 0; b < b1; b++) {
        for (uint32_t q = 0; q < NQ; q++) {
            rn_batch_builder_t bb;
            rn_batch_opts_t bo;
            rn_batch_opts_default(&bo);
            assert_int_equal(rn_batch_builder_init(&bb, &bo), 0);
            for (int i = 0; i < PER_BATCH; i++) {
                int n = b * PER_BATCH + i;
                int64_t at = 1700000000000LL + (int64_t)n * 37 + q;
                uint64_t r = rn_test_rng(&rng);
                if (b < b0) continue;          /* the same values as one full run */
                if ((n + (int)q) % 97 == 5) {
                    snprintf(vals[i], sizeof vals[i], "garbage{%d", n);
                    poison++;
                } else if ((n + (int)q) % 101 == 7) {
                    snprintf(vals[i], sizeof vals[i],
                             "{\"svc\":\"s1\",\"lat\":\"slow\",\"at\":%lld}", (long long)at);
                    poison++;
                } else {
                    snprintf(vals[i], sizeof vals[i], "{\"svc\":\"s%d\",\"lat\":%d,\"at\":%lld}",
                             (int)(r % 5), (int)(r % 1000), (long long)at);
                }
                rn_record_t rec;
                memset(&rec, 0, sizeof rec);
                rec.timestamp = at;
                rec.key_len = -1;
                rec.value = (const uint8_t *)vals[i];
                rec.value_len = (int32_t)strlen(vals[i]);
                assert_int_equal(rn_batch_builder_add(&bb, &rec), 0);
            }
            if (b < b0) { rn_batch_builder_destroy(&bb); continue; }
            const uint8_t *bytes;
            size_t len;
            assert_int_equal(rn_batch_builder_finish(&bb, &bytes, &len), 0);
            rn_datadir_queue_t dq;
            int64_t base;
            uint64_t ticket;
            assert_int_equal(rn_datadir_queue_open(d, "in", q, &dq, err), 0);
            assert_int_equal(rn_datadir_append(d, &dq, bytes, len, &base, &ticket, err), 0);
            assert_int_equal(rn_datadir_wait(d, ticket), 0);
            rn_datadir_queue_close(&dq);
            rn_batch_builder_destroy(&bb);
        }
    }
    return poison;
}

static int make_input(rn_datadir_t *d)
{
    return make_input_range(d, 0, BATCHES);
}

/* Records in topic (0 when it does not exist). */
static size_t read_queue_count(rn_datadir_t *d, const char *topic)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_topic_get(m, topic, &t, err);
    rn_datadir_meta_unlock(d);
    if (rc != 0) return 0;
    size_t total = 0, n;
    for (uint32_t q = 0; q < t.queues; q++) {
        free(rn_test_read_queue(d, topic, q, &n));
        total += n;
    }
    return total;
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

/* ---- kill -9 and restart ---------------------------------------------------- */

static const char *const kill_points[] = {"after-step", "after-sink-write", "before-checkpoint",
                                          "after-checkpoint"};
/* Create the pipeline over fresh input in two directories; run one
 * uninterrupted and the other with seeded SIGKILLs and restarts; compare. */
/* staged: the input arrives in slices between the kill rounds (a pipeline
 * under load); else it is all there first (the file sink's order across
 * source queues is the processing order, the same only over the same
 * arrivals). */
static void kill_restart(const char *tag, const char *create_fmt, const char *name,
                         const char *sink, int staged)
{
    char err[RN_ERRMSG_SIZE], sql[1024], dlq[128], fa[512], fb[512];
    char *ra = rn_test_tmpdir_new(tag), *rb = rn_test_tmpdir_new(tag);
    uint64_t seed = rn_test_seed(tag), rng = seed;
    snprintf(dlq, sizeof dlq, "%s.dlq", name);
    snprintf(fa, sizeof fa, "%s/out.jsonl", ra);
    snprintf(fb, sizeof fb, "%s/out.jsonl", rb);
    int file = sink == NULL;

    rn_datadir_t *d = open_dir(ra);
    make_input(d);
    snprintf(sql, sizeof sql, create_fmt, fa);
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("create: %s", err);
    run_until_caught_up(d, name);
    char *want = rn_test_pipeline_output(d, sink, file ? fa : NULL, dlq);
    rn_datadir_close(d);

    const int rounds = 12;
    d = open_dir(rb);
    make_input_range(d, 0, staged ? BATCHES / rounds : BATCHES);
    snprintf(sql, sizeof sql, create_fmt, fb);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    rn_datadir_close(d);
    int kills = 0;
    for (int round = 0; round < rounds; round++) {
        if (staged && round > 0) {
            d = open_dir(rb);
            make_input_range(d, round * BATCHES / rounds,
                             round == rounds - 1 ? BATCHES : (round + 1) * BATCHES / rounds);
            rn_datadir_close(d);
        }
        const char *point = kill_points[rn_test_rng(&rng) % 4];
        long at = 1 + (long)(rn_test_rng(&rng) % (strcmp(point, "after-step") ? 2 : 8));
        int k = rn_test_etl_child_run(rb, name, point, at);
        printf("%s: round %d: kill at %s #%ld: %s\n", tag, round, point, at,
               k ? "killed" : "finished first");
        kills += k;
    }
    assert_true(kills >= 3);
    assert_int_equal(rn_test_etl_child_run(rb, name, "none", 0), 0);   /* to the end, unkilled */
    d = open_dir(rb);
    char *got = rn_test_pipeline_output(d, sink, file ? fb : NULL, dlq);
    rn_datadir_close(d);
    printf("%s: %d kill(s), output %zu bytes\n", tag, kills, strlen(want));
    assert_true(strlen(want) > 1000);
    if (strcmp(got, want) != 0) {
        char pw[128], pg[128];
        snprintf(pw, sizeof pw, "/tmp/%s-want.txt", tag);
        snprintf(pg, sizeof pg, "/tmp/%s-got.txt", tag);
        rn_test_write_file(pw, want, strlen(want));
        rn_test_write_file(pg, got, strlen(got));
        fail_msg("%s: the restarted run's output differs: diff %s %s", tag, pw, pg);
    }
    free(want);
    free(got);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);
}

static void test_kill_filter(void **state)
{
    (void)state;
    kill_restart("etl-filter",
                 "CREATE PIPELINE f AS INSERT INTO fout SELECT svc, lat, at FROM ev "
                 "WHERE lat %% 3 <> 0 WITH (checkpoint_interval = '1ms')", "f", "fout", 1);
}

static void test_kill_window(void **state)
{
    (void)state;
    kill_restart("etl-window",
                 "CREATE PIPELINE w AS INSERT INTO wout SELECT window_start, window_end, svc, "
                 "count(*) AS n, sum(lat) AS total, max(lat) AS top FROM ev "
                 "GROUP BY TUMBLE(ts, '500ms'), svc WITH (checkpoint_interval = '1ms', "
                 "queues = 3)", "w", "wout", 1);
}

/* A Window TopN (streamsql/topn.c) ranks a window's rows when it closes, inside
 * one step: its state is the window state, so kill -9 keeps it exactly once. */
static void test_kill_topn(void **state)
{
    (void)state;
    kill_restart("etl-topn",
                 "CREATE PIPELINE tn AS INSERT INTO tnout SELECT * FROM (SELECT *, ROW_NUMBER() "
                 "OVER (PARTITION BY window_start, window_end ORDER BY n DESC) AS rn FROM (SELECT "
                 "window_start, window_end, svc, count(*) AS n, sum(lat) AS total FROM ev GROUP BY "
                 "TUMBLE(ts, '500ms'), svc)) WHERE rn <= 2 WITH (checkpoint_interval = '1ms', "
                 "queues = 3)", "tn", "tnout", 1);
    kill_restart("etl-topn-rows",
                 "CREATE PIPELINE tr AS INSERT INTO trout SELECT svc, lat, at FROM (SELECT "
                 "window_start, window_end, svc, lat, at, RANK() OVER (PARTITION BY window_start, "
                 "window_end ORDER BY lat DESC) AS rk FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), "
                 "INTERVAL '500' MILLISECOND))) WHERE rk <= 3 WITH (checkpoint_interval = '1ms')",
                 "tr", "trout", 1);
}

static void test_kill_file_sink(void **state)
{
    (void)state;
    kill_restart("etl-file",
                 "CREATE PIPELINE ff AS INSERT INTO 'file:%s' SELECT svc, at FROM ev "
                 "WHERE lat > 500 WITH (checkpoint_interval = '1ms')", "ff", NULL, 0);
}

/* ---- dead letters ------------------------------------------------------------ */

static void test_dead_letters(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-dlq");
    rn_datadir_t *d = open_dir(root);
    int poison = make_input(d);
    const char *sql = "CREATE PIPELINE p AS INSERT INTO good SELECT svc FROM ev "
                      "WITH (dead_letter = 'bad')";
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    run_until_caught_up(d, "p");
    size_t total = 0, n;
    int saw_json = 0, saw_type = 0;
    for (uint32_t q = 0; q < NQ; q++) {
        char *s = rn_test_read_queue(d, "bad", q, &n);
        total += n;
        char want[64];
        snprintf(want, sizeof want, "|rn.source.topic=in|rn.source.queue=%u|rn.source.offset=", q);
        for (char *line = s; *line; line = strchr(line, '\n') + 1) {
            assert_non_null(strstr(line, "|rn.error="));
            assert_non_null(strstr(line, want));
            /* the offset header names the record's own offset in the source */
            char *off = strstr(line, "rn.source.offset=") + strlen("rn.source.offset=");
            long o = strtol(off, NULL, 10);
            int idx = (int)o;                     /* source offsets = n, per queue */
            if (!strncmp(line, "garbage{", 8)) {
                saw_json = 1;
                assert_int_equal(strtol(line + 8, NULL, 10), idx);
            } else {
                saw_type = 1;
                assert_non_null(strstr(line, "\"lat\":\"slow\""));
            }
        }
        free(s);
    }
    assert_int_equal(total, (size_t)poison);
    assert_true(saw_json && saw_type);
    rn_etl_status_t *st = NULL;
    assert_int_equal(rn_etl_status(d, "p", &st, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(st[0].errors, (uint64_t)poison);
    assert_int_equal(st[0].in, (uint64_t)NQ * BATCHES * PER_BATCH);
    assert_int_equal(st[0].out, st[0].in - (uint64_t)poison);
    for (uint32_t q = 0; q < NQ; q++) assert_int_equal(st[0].lag[q], 0);
    free(st);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

/* Bare topic `topic` (no declared stream): NQ queues of JSON records in
 * event-time order; with bad, non-JSON records "garbage{N" (N: the record's
 * own offset) interleaved: scattered, first and last of a batch, and one
 * whole batch. Without bad, the same good records only. Returns the number
 * of bad records written. */
static int make_bare(rn_datadir_t *d, const char *topic, int bad)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    assert_int_equal(rn_datadir_topic_create(d, topic, NQ, &t, err), 0);
    static char vals[40][96];
    int nbad = 0;
    for (uint32_t q = 0; q < NQ; q++) {
        int64_t off = 0;
        for (int b = 0; b < 6; b++) {
            rn_batch_builder_t bb;
            rn_batch_opts_t bo;
            rn_batch_opts_default(&bo);
            assert_int_equal(rn_batch_builder_init(&bb, &bo), 0);
            int added = 0;
            for (int i = 0; i < 40; i++) {
                int n = b * 40 + i;
                int64_t at = 1700000000000LL + (int64_t)n * 37 + q;
                int is_bad = (n * 7 + (int)q) % 13 == 3 || i == 0 || (b == 3 && i == 39) ||
                             (b == 4 && q == 1);
                if (is_bad && !bad) continue;
                if (is_bad) {
                    snprintf(vals[i], sizeof vals[i], "garbage{%lld", (long long)off);
                    nbad++;
                } else {
                    snprintf(vals[i], sizeof vals[i], "{\"svc\":\"s%d\",\"lat\":%d}",
                             (n * 31 + (int)q) % 4, (n * 7919 + (int)q * 13) % 1000);
                }
                rn_record_t rec;
                memset(&rec, 0, sizeof rec);
                rec.timestamp = at;
                rec.key_len = -1;
                rec.value = (const uint8_t *)vals[i];
                rec.value_len = (int32_t)strlen(vals[i]);
                assert_int_equal(rn_batch_builder_add(&bb, &rec), 0);
                added++;
                off++;
            }
            if (!added) { rn_batch_builder_destroy(&bb); continue; }
            const uint8_t *bytes;
            size_t len;
            assert_int_equal(rn_batch_builder_finish(&bb, &bytes, &len), 0);
            rn_datadir_queue_t dq;
            int64_t base;
            uint64_t ticket;
            assert_int_equal(rn_datadir_queue_open(d, topic, q, &dq, err), 0);
            assert_int_equal(rn_datadir_append(d, &dq, bytes, len, &base, &ticket, err), 0);
            assert_int_equal(rn_datadir_wait(d, ticket), 0);
            rn_datadir_queue_close(&dq);
            rn_batch_builder_destroy(&bb);
        }
    }
    return nbad;
}

/* Create and run pipeline `name` (fmt's %s: name, source, sink, dead letter). */
static void bare_pipeline(rn_datadir_t *d, const char *fmt, const char *name, const char *src,
                          const char *sink, const char *dlq)
{
    char err[RN_ERRMSG_SIZE], sql[1024];
    snprintf(sql, sizeof sql, fmt, name, sink, src, dlq);
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("%s: %s", sql, err);
    run_until_caught_up(d, name);
}

static void test_bare_topic_dead_letters(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-bare-dlq");
    rn_datadir_t *d = open_dir(root);
    int nbad = make_bare(d, "raw", 1);
    assert_int_equal(make_bare(d, "clean", 0), 0);
    assert_true(nbad > 40);
    static const char *const plain =
        "CREATE PIPELINE %s AS INSERT INTO %s SELECT json_extract(value, '$.svc') AS svc, "
        "json_extract(value, '$.lat') AS lat, ts FROM %s "
        "WHERE json_extract(value, '$.lat') > 500 WITH (dead_letter = '%s')";
    static const char *const agg =
        "CREATE PIPELINE %s AS INSERT INTO %s SELECT window_start, window_end, "
        "count(*) AS n, sum(json_extract(value, '$.lat')) AS total, "
        "max(json_extract(value, '$.lat')) AS top FROM %s "
        "WHERE json_extract(value, '$.lat') > 100 "
        "GROUP BY TUMBLE(ts, '500ms') WITH (dead_letter = '%s', queues = 2)";
    bare_pipeline(d, plain, "pa", "raw", "outa", "bada");
    bare_pipeline(d, plain, "pb", "clean", "outb", "badb");
    bare_pipeline(d, agg, "wa", "raw", "wouta", "wbada");
    bare_pipeline(d, agg, "wb", "clean", "woutb", "wbadb");

    /* the sinks equal the runs without the bad records */
    size_t na, nb, rows = 0;
    for (uint32_t q = 0; q < NQ; q++) {
        char *a = rn_test_read_queue(d, "outa", q, &na), *b = rn_test_read_queue(d, "outb", q, &nb);
        assert_string_equal(a, b);
        assert_int_equal(na, nb);
        rows += na;
        free(a);
        free(b);
    }
    assert_true(rows > 100);
    rows = 0;
    for (uint32_t q = 0; q < 2; q++) {
        char *a = rn_test_read_queue(d, "wouta", q, &na), *b = rn_test_read_queue(d, "woutb", q, &nb);
        assert_string_equal(a, b);
        rows += na;
        free(a);
        free(b);
    }
    assert_true(rows > 5);

    /* the dead letters: exactly the bad records, with reason and position */
    const char *const dlqs[] = {"bada", "wbada"};
    for (int k = 0; k < 2; k++) {
        size_t total = 0, n;
        for (uint32_t q = 0; q < NQ; q++) {
            char *s = rn_test_read_queue(d, dlqs[k], q, &n);
            total += n;
            char want[64];
            snprintf(want, sizeof want, "|rn.source.topic=raw|rn.source.queue=%u|", q);
            for (char *line = s; *line; line = strchr(line, '\n') + 1) {
                assert_int_equal(strncmp(line, "garbage{", 8), 0);
                assert_non_null(strstr(line, "|rn.error=malformed JSON"));
                assert_non_null(strstr(line, want));
                char *off = strstr(line, "rn.source.offset=");
                assert_non_null(off);
                assert_int_equal(strtol(off + strlen("rn.source.offset="), NULL, 10),
                                 strtol(line + 8, NULL, 10));
            }
            free(s);
        }
        assert_int_equal(total, (size_t)nbad);
        assert_int_equal(read_queue_count(d, dlqs[k] == dlqs[0] ? "badb" : "wbadb"), 0);
    }
    rn_etl_status_t *st = NULL;
    size_t n;
    assert_int_equal(rn_etl_status(d, "pa", &st, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(st[0].errors, (uint64_t)nbad);
    for (uint32_t q = 0; q < NQ; q++) assert_int_equal(st[0].lag[q], 0);
    free(st);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

/* ---- sink faults -------------------------------------------------------------- */

/* The file sink goes through rn_sys: faults injected on its file's fd. */
static char g_fault_path[512], g_fault_dir[512];
static int g_fault_fd = -1, g_dir_fd = -1, g_dir_syncs;
static int64_t g_fail_at = -1, g_end;     /* a fault once the file passes this byte */
static int g_fail_sync, g_short, g_faults;

static int fault_open(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags, mode);
    if (fd >= 0 && !strcmp(path, g_fault_path)) g_fault_fd = fd;
    if (fd >= 0 && !strcmp(path, g_fault_dir)) g_dir_fd = fd;
    return fd;
}

static ssize_t fault_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (fd == g_fault_fd) {
        if (!g_fail_sync && g_fail_at >= 0 && off + (int64_t)n > g_fail_at) {
            g_fail_at = -1;
            g_faults++;
            errno = EIO;
            return -1;
        }
        if (g_short && n > 7) n = 7;                 /* a short write: the rest must follow */
        if (off + (int64_t)n > g_end) g_end = off + (int64_t)n;
    }
    return pwrite(fd, buf, n, off);
}

static int fault_fdatasync(int fd)
{
    if (fd == g_fault_fd && g_fail_sync && g_fail_at >= 0 && g_end > g_fail_at) {
        g_fail_at = -1;
        g_faults++;
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static int fault_fsync(int fd)
{
    if (fd == g_dir_fd) g_dir_syncs++;
    return fsync(fd);
}

/* Scenario: the file sink's writes and fdatasyncs fail now and then (EIO)
 * and some writes are short; each failure stops the run with an error naming
 * the file, a reopen resumes from the last checkpoint, and the file ends
 * equal to an uninterrupted run's. The file's creation fsyncs its
 * directory. */
static void test_file_sink_faults(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE], sql[1024], fa[512];
    char *ra = rn_test_tmpdir_new("etl-ffault"), *rb = rn_test_tmpdir_new("etl-ffault");
    char *rc_dir = rn_test_tmpdir_new("etl-ffault-sink");
    const char *fmt = "CREATE PIPELINE ff AS INSERT INTO 'file:%s' SELECT svc, at FROM ev "
                      "WHERE lat > 300 WITH (checkpoint_interval = '1ms')";
    snprintf(fa, sizeof fa, "%s/out.jsonl", ra);
    rn_datadir_t *d = open_dir(ra);
    make_input(d);
    snprintf(sql, sizeof sql, fmt, fa);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    run_until_caught_up(d, "ff");
    rn_datadir_close(d);
    size_t wn;
    char *want = rn_test_slurp(fa, &wn);

    snprintf(g_fault_path, sizeof g_fault_path, "%s/sink.jsonl", rc_dir);
    snprintf(g_fault_dir, sizeof g_fault_dir, "%s", rc_dir);
    d = open_dir(rb);
    make_input(d);
    snprintf(sql, sizeof sql, fmt, g_fault_path);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    rn_sys.open = fault_open;
    rn_sys.pwrite = fault_pwrite;
    rn_sys.fdatasync = fault_fdatasync;
    rn_sys.fsync = fault_fsync;
    g_dir_syncs = g_faults = 0;
    int failures = 0;
    /* rounds 0..5 fail a write, or an fdatasync, of the file once it passes
     * 1/8, 2/8, ... of its final size (each round resumes from the last
     * checkpoint: the file is cut back and the replay rewrites it); some
     * rounds write short; the last round runs clean */
    for (int round = 0; round < 7; round++) {
        g_fail_at = round < 6 ? (int64_t)(wn * (size_t)(round + 2) / 8) : -1;
        g_fail_sync = round % 2;
        g_short = round % 3 == 1;
        g_end = 0;
        rn_etl_t *p = NULL;
        if (rn_etl_open(d, "ff", &p, err) != 0) fail_msg("round %d: open: %s", round, err);
        if (round == 0) assert_true(g_dir_syncs >= 1);     /* the new file is in its directory */
        rn_etl_state_t st = RN_ETL_MORE;
        int rc = 0;
        for (int guard = 0; rc == 0 && st == RN_ETL_MORE && guard < 100000; guard++)
            rc = rn_etl_step(p, &st, err);
        if (rc == 0) rc = rn_etl_checkpoint(p, err);
        if (round < 6) {
            if (rc == 0) fail_msg("round %d: the injected fault was not reported", round);
            if (!strstr(err, g_fault_path) || !strstr(err, "Input/output error"))
                fail_msg("round %d: '%s' does not name the file and the error", round, err);
            failures++;
        } else {
            assert_int_equal(rc, 0);
        }
        rn_etl_close(p);
    }
    rn_sys_reset();
    assert_int_equal(failures, 6);
    assert_int_equal(g_faults, 6);
    rn_datadir_close(d);
    size_t gn;
    char *got = rn_test_slurp(g_fault_path, &gn);
    assert_true(wn > 1000);
    assert_int_equal(gn, wn);
    assert_memory_equal(got, want, wn);
    free(got);
    free(want);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);
    rn_test_tmpdir_free(rc_dir);
}

/* Scenario: stdout is a full device; the rows cannot be written and the
 * step says so (a write that did not happen is not counted as done). */
static void test_stdout_write_failure(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-stdout");
    rn_datadir_t *d = open_dir(root);
    make_input(d);
    const char *sql = "CREATE PIPELINE so AS INSERT INTO 'stdout' SELECT svc, lat FROM ev "
                      "WITH (checkpoint_interval = '1h')";
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    rn_etl_t *p = NULL;
    assert_int_equal(rn_etl_open(d, "so", &p, err), 0);
    fflush(stdout);
    int saved = dup(1), full = open("/dev/full", O_WRONLY);
    assert_true(saved >= 0 && full >= 0);
    assert_int_equal(dup2(full, 1), 1);
    rn_etl_state_t st = RN_ETL_MORE;
    int rc = 0;
    for (int guard = 0; rc == 0 && st == RN_ETL_MORE && guard < 100000; guard++)
        rc = rn_etl_step(p, &st, err);
    __fpurge(stdout);                 /* what could not be written is dropped */
    clearerr(stdout);
    assert_int_equal(dup2(saved, 1), 1);
    close(saved);
    close(full);
    assert_true(rc != 0);
    assert_non_null(strstr(err, "cannot write to stdout"));
    assert_non_null(strstr(err, "No space left on device"));
    rn_etl_close(p);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

/* Scenario: a run appends its rows (not yet acknowledged: group commit
 * publishes them only after its window) and stops without a checkpoint, as
 * a failed run inside runneld does; the pipeline is resumed in the same
 * process at once. The resumed run must count those appends (the written
 * end, not the visible one) and not write its rows a second time. */
static void test_resume_counts_unpublished_appends(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *ra = rn_test_tmpdir_new("etl-resume"), *rb = rn_test_tmpdir_new("etl-resume");
    const char *sql = "CREATE PIPELINE r AS INSERT INTO rout SELECT svc, lat FROM ev "
                      "WHERE lat < 200 WITH (checkpoint_interval = '1h', queues = 1)";
    rn_datadir_t *d = open_dir(ra);
    make_input(d);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    run_until_caught_up(d, "r");
    char *want = rn_test_pipeline_output(d, "rout", NULL, "r.dlq");
    rn_datadir_close(d);

    d = open_dir(rb);
    make_input(d);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    rn_datadir_close(d);
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.log.fsync = RN_FSYNC_GROUP;
    o.log.group_window_us = 1000000;       /* appends stay unpublished for 1 s */
    assert_int_equal(rn_datadir_open(rb, &o, &d, err), 0);
    rn_etl_t *p = NULL;
    assert_int_equal(rn_etl_open(d, "r", &p, err), 0);
    rn_etl_state_t st = RN_ETL_MORE;
    for (int guard = 0; st == RN_ETL_MORE && guard < 100000; guard++)
        assert_int_equal(rn_etl_step(p, &st, err), 0);
    assert_int_equal(st, RN_ETL_IDLE);     /* caught up: the rows are appended */
    rn_etl_close(p);                       /* no checkpoint, no wait */
    run_until_caught_up(d, "r");
    char *got = rn_test_pipeline_output(d, "rout", NULL, "r.dlq");
    rn_datadir_close(d);
    assert_true(strlen(want) > 1000);
    assert_string_equal(got, want);
    free(got);
    free(want);
    rn_test_tmpdir_free(ra);
    rn_test_tmpdir_free(rb);
}

/* ---- definitions ------------------------------------------------------------- */

static void test_bad_sql_refused(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-bad");
    rn_datadir_t *d = open_dir(root);
    make_input(d);
    static const struct { const char *sql, *msg; } bad[] = {
        {"CREATE PIPELINE b AS INSERT INTO o SELECT nope FROM ev", "unknown column 'nope'"},
        {"CREATE PIPELINE b AS INSERT INTO o SELECT svc FROM nowhere", "unknown stream or topic"},
        {"CREATE PIPELINE b AS INSERT INTO o SELECT svc FROM ev WHERE", "pipeline 'b'"},
        {"CREATE PIPELINE b AS INSERT INTO o SELECT count(*) FROM ev", "never closes"},
        {"CREATE PIPELINE b AS INSERT INTO in SELECT svc FROM ev", "its own source"},
        {"CREATE PIPELINE b INSERT INTO o SELECT svc FROM ev", "expected AS INSERT INTO"},
        {"CREATE PIPELINE b AS INSERT INTO 'ftp:x' SELECT svc FROM ev", "'file:PATH'"},
        {"CREATE PIPELINE b AS INSERT INTO o SELECT svc FROM ev WITH (checkpoint_interval = 'x')",
         "checkpoint_interval"},
        {"CREATE PIPELINE b/c AS INSERT INTO o SELECT svc FROM ev", "invalid pipeline name 'b/c'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        int rc = rn_etl_create(d, bad[i].sql, strlen(bad[i].sql), err);
        if (rc == 0 || !strstr(err, bad[i].msg))
            fail_msg("'%s': rc %d, '%s' lacks '%s'", bad[i].sql, rc, err, bad[i].msg);
    }
    rn_etl_status_t *st = NULL;
    size_t n = 9;
    assert_int_equal(rn_etl_status(d, NULL, &st, &n, err), 0);
    assert_int_equal(n, 0);                       /* nothing was stored */
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

static void test_parse_options(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    rn_etl_def_t def;
    const char *sql = "create pipeline P1 as insert into \"out.x\" SELECT a FROM t "
                      "WITH (watermark = '5s', checkpoint_interval = '250ms', start = 'latest', "
                      "dead_letter = 'dl', queues = 7, late = 'drop');";
    assert_int_equal(rn_etl_parse(sql, strlen(sql), &def, err), 0);
    assert_string_equal(def.name, "P1");
    assert_int_equal(def.sink_kind, RN_ETL_SINK_TOPIC);
    assert_string_equal(def.sink, "out.x");
    assert_int_equal(def.checkpoint_ms, 250);
    assert_string_equal(def.start, "latest");
    assert_string_equal(def.dead_letter, "dl");
    assert_int_equal(def.sink_queues, 7);
    assert_string_equal(def.select, "SELECT a FROM t WITH (watermark = '5s', late = 'drop')");
    rn_etl_def_free(&def);
    sql = "CREATE PIPELINE p AS INSERT INTO 'stdout' SELECT a FROM t WITH (queues = 2)";
    assert_int_equal(rn_etl_parse(sql, strlen(sql), &def, err), 0);
    assert_int_equal(def.sink_kind, RN_ETL_SINK_STDOUT);
    assert_string_equal(def.select, "SELECT a FROM t");
    assert_string_equal(def.dead_letter, "p.dlq");
    assert_int_equal(def.checkpoint_ms, RN_ETL_DEFAULT_CHECKPOINT_MS);
    rn_etl_def_free(&def);
    sql = "CREATE PIPELINE p AS INSERT INTO o SELECT a FROM t WITH (queues = 0)";
    assert_int_equal(rn_etl_parse(sql, strlen(sql), &def, err), RN_EINVAL);
    assert_non_null(strstr(err, "queues"));
}

static void test_pause_resume_drop(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-pause");
    rn_datadir_t *d = open_dir(root);
    make_input(d);
    const char *sql = "CREATE PIPELINE p AS INSERT INTO o SELECT svc FROM ev WHERE lat < 100";
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), RN_EEXIST);
    assert_int_equal(rn_etl_set_paused(d, "p", 1, err), 0);
    rn_etl_t *p = NULL;
    assert_int_equal(rn_etl_open(d, "p", &p, err), RN_EINVAL);
    assert_non_null(strstr(err, "paused"));
    assert_int_equal(rn_etl_set_paused(d, "p", 0, err), 0);
    run_until_caught_up(d, "p");

    /* a pause seen at a checkpoint stops a running pipeline */
    assert_int_equal(rn_etl_open(d, "p", &p, err), 0);
    assert_int_equal(rn_etl_set_paused(d, "p", 1, err), 0);
    assert_int_equal(rn_etl_checkpoint(p, err), 0);
    rn_etl_state_t st;
    assert_int_equal(rn_etl_step(p, &st, err), 0);
    assert_int_equal(st, RN_ETL_STOPPED);
    rn_etl_close(p);
    assert_int_equal(rn_etl_set_paused(d, "p", 0, err), 0);

    uint8_t *blob = NULL;
    size_t blen = 0;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    assert_int_equal(rn_meta_pipeline_state(m, "p", &blob, &blen, err), 0);
    rn_datadir_meta_unlock(d);
    assert_non_null(blob);
    free(blob);
    rn_etl_status_t *s = NULL;
    size_t n;
    assert_int_equal(rn_etl_status(d, "p", &s, &n, err), 0);
    uint64_t out = s[0].out;
    assert_true(out > 0);
    assert_true(s[0].checkpoint_ms > 0);
    free(s);

    assert_int_equal(rn_etl_drop(d, "p", err), 0);
    m = rn_datadir_meta_lock(d);
    assert_int_equal(rn_meta_pipeline_state(m, "p", &blob, &blen, err), RN_ENOTFOUND);
    rn_datadir_meta_unlock(d);
    assert_int_equal(rn_etl_drop(d, "p", err), RN_ENOTFOUND);
    assert_int_equal(rn_etl_set_paused(d, "p", 1, err), RN_ENOTFOUND);
    /* re-created under the same name, it starts from nothing */
    assert_int_equal(rn_etl_create(d, sql, strlen(sql), err), 0);
    assert_int_equal(rn_etl_status(d, "p", &s, &n, err), 0);
    assert_int_equal(s[0].out, 0);
    assert_int_equal(s[0].checkpoint_ms, 0);
    free(s);
    /* a running pipeline dropped by someone else stops at its next checkpoint */
    assert_int_equal(rn_etl_open(d, "p", &p, err), 0);
    assert_int_equal(rn_etl_drop(d, "p", err), 0);
    assert_int_equal(rn_etl_checkpoint(p, err), RN_ENOTFOUND);
    rn_etl_close(p);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

/* A pipeline calls streamsql's functions, the templates and a function
 * stored by CREATE FUNCTION, and windows with the new aggregates. */
static void test_functions_in_pipeline(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    char *root = rn_test_tmpdir_new("etl-fn");
    rn_datadir_t *d = open_dir(root);
    make_input_range(d, 0, 4);
    exec_sql(d, "CREATE FUNCTION svc_code(s TEXT) RETURNS TEXT AS "
                "'upper(regexp_replace(s, ''^s'', ''svc-''))'");
    const char *sql = "CREATE PIPELINE pf AS INSERT INTO fo SELECT svc_code(svc) AS c, "
                      "normalize_level('warning') AS l, split_part(svc, 's', 2) AS n FROM ev "
                      "WHERE lat < 100";
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("create: %s", err);
    run_until_caught_up(d, "pf");
    size_t total = 0, n;
    for (uint32_t q = 0; q < NQ; q++) {
        char *out = rn_test_read_queue(d, "fo", q, &n);
        total += n;
        for (char *line = out; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            char c[32], num[8];
            const char *v = strstr(line, "{\"c\":\"SVC-");
            if (!v || sscanf(v, "{\"c\":\"SVC-%7[0-9]\",\"l\":\"WARN\",\"n\":\"%7[0-9]\"}", c,
                             num) != 2 || strcmp(c, num) != 0)
                fail_msg("queue %u: unexpected output line '%s'", q, line);
            line = nl ? nl + 1 : NULL;
        }
        free(out);
    }
    assert_true(total > 0);
    sql = "CREATE PIPELINE pw AS INSERT INTO wo SELECT window_start, svc, stddev(lat) AS sd, "
          "approx_count_distinct(lat) AS d, count(*) FILTER (WHERE lat > 500) AS hi FROM "
          "TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
          "GROUP BY window_start, window_end, svc";
    if (rn_etl_create(d, sql, strlen(sql), err) != 0) fail_msg("create: %s", err);
    run_until_caught_up(d, "pw");
    total = 0;
    for (uint32_t q = 0; q < NQ; q++) {
        free(rn_test_read_queue(d, "wo", q, &n));
        total += n;
    }
    assert_true(total > 0);
    rn_datadir_close(d);
    rn_test_tmpdir_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_options),
        cmocka_unit_test(test_bad_sql_refused),
        cmocka_unit_test(test_dead_letters),
        cmocka_unit_test(test_bare_topic_dead_letters),
        cmocka_unit_test(test_pause_resume_drop),
        cmocka_unit_test(test_kill_filter),
        cmocka_unit_test(test_kill_window),
        cmocka_unit_test(test_kill_file_sink),
        cmocka_unit_test(test_kill_topn),
        cmocka_unit_test_setup(test_file_sink_faults, rn_test_reset_sys),
        cmocka_unit_test(test_stdout_write_failure),
        cmocka_unit_test(test_resume_counts_unpublished_appends),
        cmocka_unit_test(test_functions_in_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

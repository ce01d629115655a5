/*
 * test_server_limits.c — bounded work per request against the real runneld:
 * what one client sends cannot make the broker work or hold memory without
 * end.
 *
 *  - a query whose statement never ends (a recursive CTE) is stopped by the
 *    step budget (--query-max-steps) with RESOURCE_EXHAUSTED naming it;
 *  - a query is stopped at --query-max-rows rows, naming the flag;
 *  - more queries than --max-queries are refused with RESOURCE_EXHAUSTED,
 *    and a slot frees when a query ends;
 *  - with no step budget, a client cancel stops the endless statement (its
 *    thread leaves: the one --max-queries slot is free again) and SIGTERM
 *    stops a broker running one (exit 0, promptly);
 *  - more produce requests in the broker than --max-produces are refused with
 *    RESOURCE_EXHAUSTED, storing nothing, and the others are stored whole;
 *  - a batch stamped far in the future (past --max-timestamp-ahead-ms) is
 *    refused, storing nothing of its request.
 */
#include "tests/test_server.h"
#include "server/status.h"
#include "tests/util/util.h"

#define ENDLESS "SELECT offset FROM t WHERE (WITH RECURSIVE r(offset) AS (SELECT 1 UNION ALL " \
                "SELECT offset + 1 FROM r) SELECT count(*) FROM r) > 0"

static const char *const limits_args[] = {"--query-max-steps", "20000000", "--query-max-rows",
                                          "5", "--max-queries", "2", NULL};
static const char *const nobudget_args[] = {"--query-max-steps", "0", "--max-queries", "1",
                                            NULL};
static const char *const produces_args[] = {"--max-produces", "1", NULL};

static int setup_limits(void **state) { return srv_init_all(state, "group", SRV_MAX_BATCH, limits_args); }
static int setup_nobudget(void **state) { return srv_init_all(state, "group", SRV_MAX_BATCH, nobudget_args); }
static int setup_produces(void **state) { return srv_init_all(state, "group", SRV_MAX_BATCH, produces_args); }

/* Topic t with one queue holding 10 records. */
static void ten_records(srv_t *s)
{
    create_topic(s, "t", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 10, 0, -1, -1, -1);
    assert_int_equal(produce(s, "t", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    batch_free(&b);
}

static rn_rpc_stream_t *query_open(srv_t *s, const char *sql, int follow)
{
    Runnel__V1__QueryRequest req = RUNNEL__V1__QUERY_REQUEST__INIT;
    req.sql = (char *)sql;
    req.follow = follow;
    rn_rpc_stream_t *st = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_rpc_stream_open(s->rpc, RN_RPC_METHOD("Query"), &req.base, &st, err) != 0)
        fail_msg("Query open: %s", err);
    return st;
}

/* Read messages until the stream ends: its rc (0 = OK), status and message;
 * *rows counts the rows received. stop_after > 0: return 1 after that many
 * messages instead (the stream is still open). */
static int query_drain(rn_rpc_stream_t *st, int stop_after, size_t *rows, int *status, char *err)
{
    int msgs = 0;
    for (;;) {
        ProtobufCMessage *m = NULL;
        err[0] = '\0';
        *status = 0;
        int rc = rn_rpc_stream_next(st, &runnel__v1__query_response__descriptor, &m, status, err);
        if (rc <= 0) return rc;
        Runnel__V1__QueryResponse *r = (void *)m;
        if (rows) *rows += r->n_rows;
        protobuf_c_message_free_unpacked(m, NULL);
        if (stop_after > 0 && ++msgs >= stop_after) return 1;
    }
}

static void expect_exhausted(srv_t *s, const char *sql, const char *flag, size_t max_rows)
{
    rn_rpc_stream_t *st = query_open(s, sql, 0);
    size_t rows = 0;
    int status;
    char err[RN_ERRMSG_SIZE];
    uint64_t t0 = rn_mono_ns();
    int rc = query_drain(st, 0, &rows, &status, err);
    rn_rpc_stream_close(st);
    print_message("%s: rc %d status %d after %.2f s, %zu rows: %s\n", flag, rc, status,
                  (double)(rn_mono_ns() - t0) / 1e9, rows, err);
    assert_true(rc < 0);
    assert_int_equal(status, RN_ST_RESOURCE_EXHAUSTED);
    if (!strstr(err, flag)) fail_msg("message lacks %s: %s", flag, err);
    assert_true(rows <= max_rows);
}

/* The reproduction: a recursive CTE that never ends is stopped by the step
 * budget, and the broker goes on serving. */
static void test_step_budget(void **state)
{
    srv_t *s = *state;
    ten_records(s);
    expect_exhausted(s, ENDLESS, "--query-max-steps", 0);
    served_still(s);
}

static void test_row_cap(void **state)
{
    srv_t *s = *state;
    ten_records(s);
    expect_exhausted(s, "SELECT offset FROM t", "--query-max-rows", 5);
    /* under the cap: a plain answer */
    rn_rpc_stream_t *st = query_open(s, "SELECT offset FROM t LIMIT 5", 0);
    size_t rows = 0;
    int status;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(query_drain(st, 0, &rows, &status, err), 0);
    assert_int_equal(rows, 5);
    rn_rpc_stream_close(st);
}

static void test_query_cap(void **state)
{
    srv_t *s = *state;
    ten_records(s);
    size_t rows;
    int status;
    char err[RN_ERRMSG_SIZE];
    /* two following queries run (their header arrived) ... */
    rn_rpc_stream_t *a = query_open(s, "SELECT offset FROM t WHERE offset > 100", 1);
    rn_rpc_stream_t *b = query_open(s, "SELECT offset FROM t WHERE offset > 100", 1);
    assert_int_equal(query_drain(a, 1, NULL, &status, err), 1);
    assert_int_equal(query_drain(b, 1, NULL, &status, err), 1);
    /* ... so a third is refused */
    rn_rpc_stream_t *c = query_open(s, "SELECT offset FROM t", 0);
    rows = 0;
    assert_true(query_drain(c, 0, &rows, &status, err) < 0);
    rn_rpc_stream_close(c);
    assert_int_equal(status, RN_ST_RESOURCE_EXHAUSTED);
    if (!strstr(err, "2 queries are running") || !strstr(err, "--max-queries"))
        fail_msg("unexpected message: %s", err);
    /* one ends: a slot is free again (the worker leaves soon after) */
    rn_rpc_stream_cancel(a);
    rn_rpc_stream_close(a);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        c = query_open(s, "SELECT offset FROM t LIMIT 3", 0);
        rows = 0;
        ok = query_drain(c, 0, &rows, &status, err) == 0;
        rn_rpc_stream_close(c);
        if (!ok) rn_test_sleep_ms(50);
    }
    assert_true(ok);
    assert_int_equal(rows, 3);
    rn_rpc_stream_cancel(b);
    rn_rpc_stream_close(b);
}

/* No step budget: only a cancel can stop the endless statement. The cancel
 * must reach inside the statement (its thread leaves, so the one query slot
 * is free again), and SIGTERM stops a broker that runs one. */
static void test_cancel_and_sigterm_stop_endless(void **state)
{
    srv_t *s = *state;
    ten_records(s);
    int status;
    char err[RN_ERRMSG_SIZE];
    size_t rows = 0;
    rn_rpc_stream_t *st = query_open(s, ENDLESS, 0);
    assert_int_equal(query_drain(st, 1, NULL, &status, err), 1);     /* the header: running */
    rn_test_sleep_ms(200);
    rn_rpc_stream_cancel(st);
    rn_rpc_stream_close(st);
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {                             /* at most ~5 s */
        rn_rpc_stream_t *q = query_open(s, "SELECT offset FROM t LIMIT 2", 0);
        rows = 0;
        ok = query_drain(q, 0, &rows, &status, err) == 0;
        rn_rpc_stream_close(q);
        if (!ok) rn_test_sleep_ms(50);
    }
    if (!ok) fail_msg("the cancelled query still holds its slot: %s", err);

    /* An endless query running, then SIGTERM: the broker stops, exit 0. (The
     * slot of the query above frees just after its answer: retry.) */
    for (int i = 0; i < 100; i++) {
        st = query_open(s, ENDLESS, 0);
        if (query_drain(st, 1, NULL, &status, err) == 1) break;
        rn_rpc_stream_close(st);
        st = NULL;
        rn_test_sleep_ms(50);
    }
    if (!st) fail_msg("the endless query did not start: %s", err);
    rn_test_sleep_ms(200);
    uint64_t t0 = rn_mono_ns();
    kill(s->pid, SIGTERM);
    /* the query ends at once with UNAVAILABLE (not after runneld's 10 s
     * grace, which cancels what is still running) ... */
    int rc = query_drain(st, 0, NULL, &status, err);
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    print_message("SIGTERM with an endless query running: the query ended after %.2f s "
                  "(rc %d, status %d: %s)\n", secs, rc, status, err);
    rn_rpc_stream_close(st);
    assert_int_equal(status, RN_ST_UNAVAILABLE);
    assert_non_null(strstr(err, "shutting down"));
    assert_true(secs < 5);
    /* ... and the broker exits 0 */
    int wst = 0, exited = 0;
    for (int i = 0; i < 1000 && !exited; i++) {
        exited = waitpid(s->pid, &wst, WNOHANG) == s->pid;
        if (!exited) rn_test_sleep_ms(10);
    }
    if (!exited) srv_print_log(s);
    assert_true(exited);
    s->pid = 0;
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    rn_rpc_close(s->rpc);
    s->rpc = NULL;
    srv_start(s);                                     /* for the teardown */
}

typedef struct pcall {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             done, ok, refused, other;
    char            msg[RN_ERRMSG_SIZE];
} pcall_t;

static void produce_done(void *arg, int rc, ProtobufCMessage *resp, int status, const char *err)
{
    pcall_t *p = arg;
    pthread_mutex_lock(&p->mu);
    if (rc == 0) p->ok++;
    else if (status == RN_ST_RESOURCE_EXHAUSTED && strstr(err, "--max-produces")) {
        p->refused++;
        snprintf(p->msg, sizeof p->msg, "%s", err);
    } else {
        p->other++;
        snprintf(p->msg, sizeof p->msg, "%s", err);
    }
    p->done++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
}

/* Many produces at once against --max-produces 1: those over the cap are
 * refused and store nothing; the others are stored whole. */
static void test_produce_cap(void **state)
{
    srv_t *s = *state;
    create_topic(s, "p", 1);
    enum { CALLS = 48, RECS = 500 };
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, RECS, 0, -1, -1, -1);
    ProtobufCBinaryData bd = {b.len, b.data};
    Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
    req.topic = "p";
    req.queue = 0;
    req.n_batches = 1;
    req.batches = &bd;
    pcall_t p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    char err[RN_ERRMSG_SIZE];
    for (int i = 0; i < CALLS; i++)
        assert_int_equal(rn_rpc_call_async(s->rpc, RN_RPC_METHOD("Produce"), &req.base,
                                           &runnel__v1__produce_response__descriptor, CALL_MS,
                                           produce_done, &p, err), 0);
    pthread_mutex_lock(&p.mu);
    while (p.done < CALLS) pthread_cond_wait(&p.cv, &p.mu);
    pthread_mutex_unlock(&p.mu);
    print_message("%d stored, %d refused (%s), %d other\n", p.ok, p.refused, p.msg, p.other);
    assert_int_equal(p.other, 0);
    assert_true(p.ok >= 1);
    assert_true(p.refused >= 1);
    assert_non_null(strstr(p.msg, "nothing was stored"));
    assert_int_equal(hwm_of(s, "p", 0), (int64_t)p.ok * RECS);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    batch_free(&b);
    served_still(s);
}

/* One batch of n records stamped ts (ms). */
static void ts_batch(batch_t *out, int64_t ts, int n)
{
    rn_batch_builder_t b;
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    assert_int_equal(rn_batch_builder_init(&b, &o), 0);
    for (int i = 0; i < n; i++) {
        rn_record_t r = {ts, 0, NULL, -1, (const uint8_t *)"v", 1, NULL, 0};
        assert_int_equal(rn_batch_builder_add(&b, &r), 0);
    }
    const uint8_t *p;
    assert_int_equal(rn_batch_builder_finish(&b, &p, &out->len), 0);
    out->data = malloc(out->len);
    assert_non_null(out->data);
    memcpy(out->data, p, out->len);
    rn_batch_builder_destroy(&b);
}

/* The reproduction: one batch stamped 10 years ahead held up time-based
 * retention for the whole store. The broker refuses a record timestamp more
 * than --max-timestamp-ahead-ms (default one hour) ahead of its clock, storing
 * nothing of the request; a little ahead (clock skew) is fine. */
static void test_future_timestamp_refused(void **state)
{
    srv_t *s = *state;
    create_topic(s, "f", 1);
    int64_t now = rn_sys.now_ms();
    batch_t ok, far;
    ts_batch(&ok, now + 60000, 2);
    ts_batch(&far, now + 10 * 365 * 86400000LL, 2);
    batch_t both[2] = {ok, far};
    int status;
    char err[RN_ERRMSG_SIZE];
    assert_int_not_equal(produce_err(s, "f", 0, both, 2, &status, err), 0);
    assert_int_equal(status, RN_ST_INVALID_ARGUMENT);
    if (!strstr(err, "batch 2 of 2: a record timestamp") ||
        !strstr(err, "more than 3600000 ms ahead of the broker clock") ||
        !strstr(err, "--max-timestamp-ahead-ms") || !strstr(err, "nothing was stored"))
        fail_msg("unexpected message: %s", err);
    assert_int_equal(hwm_of(s, "f", 0), 0);
    assert_int_equal(produce(s, "f", 0, &ok, 1, 0, NULL, NULL, NULL), 0);
    assert_int_equal(hwm_of(s, "f", 0), 2);
    batch_free(&ok);
    batch_free(&far);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_step_budget, setup_limits, srv_teardown),
        cmocka_unit_test_setup_teardown(test_row_cap, setup_limits, srv_teardown),
        cmocka_unit_test_setup_teardown(test_query_cap, setup_limits, srv_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_sigterm_stop_endless, setup_nobudget,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_produce_cap, setup_produces, srv_teardown),
        cmocka_unit_test_setup_teardown(test_future_timestamp_refused, srv_setup, srv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

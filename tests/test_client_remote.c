/*
 * test_client_remote.c — librunnel against a real runneld on a loopback port
 * (rn_test_runneld_start, tests/util/util.h): every behaviour of test_client.c again
 * through rn_client_open_server (producer accumulators, linger, the memory
 * cap, delivery offsets, key placement, LZ4, the consumer API, groups and
 * checkpoints, administration), plus what only the network has:
 *  - idempotent retry: the injected fault "produce:response" drops the
 *    broker's answer after it stored the batches; the producer resends the
 *    same request (same producer id, epoch, sequences), the broker reports
 *    duplicates with the original offsets, and the log holds one copy;
 *  - retries exhausted: every record is delivered with the error once, the
 *    producer stays failed, and the broker still holds exactly one copy;
 *  - long polling: a poll at the high watermark returns as soon as a record
 *    arrives, and a poll with nothing to read waits its timeout;
 *  - an unreachable broker: one error naming the address.
 */
#define RN_TEST_CLIENT_REMOTE 1
#include "tests/test_client.c"

/* ---- Fault injection ------------------------------------------------------ */

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static int hook_failures;            /* answers still to drop; -1: every one */
static int hook_dropped;

static int drop_answers(const char *point)
{
    int fail = 0;
    pthread_mutex_lock(&hook_mu);
    if (!strcmp(point, "produce:response") && hook_failures != 0) {
        if (hook_failures > 0) hook_failures--;
        hook_dropped++;
        fail = 1;
    }
    pthread_mutex_unlock(&hook_mu);
    return fail;
}

static void set_hook(int failures)
{
    pthread_mutex_lock(&hook_mu);
    hook_failures = failures;
    hook_dropped = 0;
    pthread_mutex_unlock(&hook_mu);
    rn_client_test_hook = failures ? drop_answers : NULL;
}

/* Three answers dropped: three resends, the broker reports the stored
 * batches as duplicates with their first offsets, one copy in the log
 * (every record delivered once, at offset = its send order). */
static void test_idempotent_retry(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "idem", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 1024;
    po.retry_backoff_ms = 10;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "idem", &po, &p, err));
    dlog_t *l = dlog_new();
    static dref_t refs[500];
    set_hook(3);
    for (int i = 0; i < 500; i++) {
        char v[32];
        snprintf(v, sizeof v, "r%d", i);
        rn_record_t r = text_record(NULL, v, 10 + i);
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, 0, &r, on_delivery, &refs[i], err));
    }
    int flush_rc = rn_producer_flush(p, err);
    set_hook(0);
    OK(flush_rc);
    rn_producer_stats_t st;
    rn_producer_stats(p, &st);
    /* One request per queue is in flight, so the three dropped answers may
     * be one request's three tries or several requests' first tries; either
     * way each resend found its batches stored. */
    assert_int_equal(st.retries, 3);
    assert_true(st.duplicates >= 1);
    assert_int_equal(st.records, 500);
    assert_int_equal(st.failed, 0);
    for (int i = 0; i < 500; i++) {
        assert_int_equal(l->calls[i], 1);
        assert_int_equal(l->rc[i], 0);
        assert_int_equal(l->offset[i], i);
    }
    OK(rn_producer_close(p, err));
    static char *vals[600];
    assert_int_equal(read_all(f, "idem", 0, vals, 600), 500);
    for (int i = 0; i < 500; i++) {
        char want[32];
        snprintf(want, sizeof want, "r%d", i);
        assert_string_equal(vals[i], want);
        free(vals[i]);
    }
    dlog_free(l);
}

static int near_wrap(const char *point) { return !strcmp(point, "producer:sequence-near-wrap"); }

/* Sequences wrap modulo 2^31: starting 10 below 2^31, 60 records in small
 * batches pass the wrap (the client used to overflow its int32_t into a
 * negative sequence the broker refuses forever); each is stored once, in
 * order, and a resend after the wrap is still recognised as a duplicate. */
static void test_sequence_wraps(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "wrap", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 256;                    /* a few records per batch */
    po.retry_backoff_ms = 5;
    rn_client_test_hook = near_wrap;
    rn_producer_t *p;
    int orc = rn_producer_open(f->c, "wrap", &po, &p, err);
    rn_client_test_hook = NULL;
    OK(orc);
    dlog_t *l = dlog_new();
    static dref_t refs[60];
    for (int i = 0; i < 60; i++) {
        char v[32];
        snprintf(v, sizeof v, "w%d", i);
        rn_record_t r = text_record(NULL, v, 10 + i);
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, 0, &r, on_delivery, &refs[i], err));
        if (i == 40) {
            OK(rn_producer_flush(p, err));
            set_hook(1);                     /* one answer after the wrap is lost */
        }
    }
    int rc = rn_producer_flush(p, err);
    set_hook(0);
    if (rc != 0) fail_msg("flush: %s", err);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(l->rc[i], 0);
        assert_int_equal(l->offset[i], i);
    }
    rn_producer_stats_t st;
    rn_producer_stats(p, &st);
    assert_true(st.duplicates >= 1);
    OK(rn_producer_close(p, err));
    static char *vals[80];
    assert_int_equal(read_all(f, "wrap", 0, vals, 80), 60);
    for (int i = 0; i < 60; i++) free(vals[i]);
    dlog_free(l);
}

/* Every answer dropped: after `retries` resends the records fail, once
 * each; the producer stays failed; the log holds the one stored copy. */
static void test_retries_exhausted(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "ex", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.retries = 2;
    po.retry_backoff_ms = 5;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "ex", &po, &p, err));
    dlog_t *l = dlog_new();
    static dref_t refs[10];
    set_hook(-1);
    for (int i = 0; i < 10; i++) {
        rn_record_t r = text_record(NULL, "lost answer", 1);
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, 0, &r, on_delivery, &refs[i], err));
    }
    int rc = rn_producer_flush(p, err);
    int dropped = hook_dropped;
    set_hook(0);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_non_null(strstr(err, "topic 'ex' queue 0: injected failure"));
    assert_int_equal(dropped, 3);                  /* the first try and 2 resends */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(l->calls[i], 1);
        assert_int_equal(l->rc[i], -ETIMEDOUT);
        assert_int_equal(l->offset[i], -1);
    }
    rn_record_t r = text_record(NULL, "after", 1);
    assert_int_equal(rn_producer_send(p, 0, &r, NULL, NULL, err), -ETIMEDOUT);
    assert_int_equal(rn_producer_close(p, err), -ETIMEDOUT);
    int64_t ls, hw;
    OK(rn_client_queue_range(f->c, "ex", 0, &ls, &hw, err));
    assert_int_equal(hw, 10);                      /* stored once, not three times */
    dlog_free(l);
}

typedef struct late_producer {
    fixture_t *f;
    int        delay_ms;
    int        rc;
} late_producer_t;

static void *produce_later(void *arg)
{
    late_producer_t *lp = arg;
    char err[RN_ERRMSG_SIZE] = "";
    rn_test_sleep_ms(lp->delay_ms);
    rn_producer_t *p;
    lp->rc = rn_producer_open(lp->f->c, "lp", NULL, &p, err);
    if (lp->rc != 0) return NULL;
    rn_record_t r = text_record(NULL, "woke", 1);
    lp->rc = rn_producer_send(p, 0, &r, NULL, NULL, err);
    int crc = rn_producer_close(p, err);
    if (lp->rc == 0) lp->rc = crc;
    return NULL;
}

/* A poll at the high watermark waits for data and returns when it comes;
 * with nothing coming it returns 0 after its timeout. */
static void test_long_poll(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "lp", 1);
    rn_client_consumer_t *k;
    OK(rn_client_consumer_open(f->c, NULL, &k, err));
    OK(rn_client_consumer_assign(k, "lp", 0, 0, err));
    rn_consumer_batch_t b;
    uint64_t t0 = rn_mono_ns();
    assert_int_equal(rn_client_consumer_poll(k, &b, 300, err), 0);
    uint64_t waited = (rn_mono_ns() - t0) / 1000000u;
    assert_true(waited >= 290);
    assert_true(waited < 5000);
    late_producer_t lp = {f, 400, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, produce_later, &lp), 0);
    t0 = rn_mono_ns();
    int rc = rn_client_consumer_poll(k, &b, 8000, err);
    waited = (rn_mono_ns() - t0) / 1000000u;
    pthread_join(th, NULL);
    assert_int_equal(lp.rc, 0);
    assert_int_equal(rc, 1);
    assert_int_equal(b.count, 1);
    assert_memory_equal(b.records[0].value, "woke", 4);
    assert_true(waited >= 300);
    assert_true(waited < 4000);           /* woken by the data, not by the timeout */
    rn_client_consumer_close(k);
}

/* Nobody listens on port 1. */
static void test_unreachable(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_t *c;
    OK(rn_client_open_server("127.0.0.1:1", NULL, &c, err));
    rn_meta_topic_t *v = NULL;
    size_t n = 0;
    int rc = rn_client_topic_list(c, &v, &n, err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    rn_producer_t *p;
    assert_true(rn_producer_open(c, "t", NULL, &p, err) < 0);
    rn_client_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CLIENT_TESTS,
        cmocka_unit_test_setup_teardown(test_idempotent_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequence_wraps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_poll, setup, teardown),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

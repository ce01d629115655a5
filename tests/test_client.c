/*
 * test_client.c — librunnel (client/runnel.h) on an embedded data directory:
 * the producer's accumulators (batching per queue, linger, the memory cap
 * both blocking and refusing with RN_EFULL), delivery callbacks carrying each
 * record's offset, key placement (Kafka's murmur2 vectors; a key always in
 * one queue) and round-robin, records too large, unknown queues; the
 * consumer (assign, range errors, seek by offset and time, position,
 * watermarks, commit, start offsets from a group and a checkpoint) and the
 * administration calls.
 *
 * tests/test_client_remote.c defines RN_TEST_CLIENT_REMOTE and includes this
 * file: every test here then runs against a real runneld on a loopback port
 * through rn_client_open_server, with the same expectations, and it adds
 * what only the network has (idempotent retries, long polling, an
 * unreachable broker). Every wait is bounded in time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/runnel.h"
#include "common/error.h"
#include "common/sys.h"
#include "tests/util/util.h"

#ifdef RN_TEST_CLIENT_REMOTE
#define REMOTE 1
#else
#define REMOTE 0
#endif

typedef struct fixture {
    char         root[64];
    char         data[PATH_MAX];
    rn_client_t *c;
#ifdef RN_TEST_CLIENT_REMOTE
    rn_test_runneld_t srv;
#endif
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "client") != 0) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_opts_t o;
    rn_client_opts_default(&o);
    int rc;
#ifdef RN_TEST_CLIENT_REMOTE
    if (rn_test_runneld_start(&f->srv, f->data, NULL) != 0) { free(f); return -1; }
    rc = rn_client_open_server(f->srv.addr, &o, &f->c, err);
#else
    o.create = 1;
    o.log.fsync = RN_FSYNC_NEVER;
    rc = rn_client_open_data(f->data, &o, &f->c, err);
#endif
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", err);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = rn_client_close(f->c);
#ifdef RN_TEST_CLIENT_REMOTE
    int st = rn_test_runneld_stop(&f->srv);
    if (st != 0) {
        fprintf(stderr, "runneld exit status %d; log %s\n", st, f->srv.log);
        rc = -1;
    }
#endif
    if (rn_test_rmtree(f->root) != 0) rc = -1;
    free(f);
    return rc == 0 ? 0 : -1;
}

#define OK(expr)                                                                   \
    do {                                                                           \
        int rc_ = (expr);                                                          \
        if (rc_ != 0) fail_msg("%s: %s (%s)", #expr, rn_strerror(rc_), err);      \
    } while (0)

static void create_topic(fixture_t *f, const char *name, uint32_t queues)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    OK(rn_client_topic_create(f->c, name, queues, &t, err));
    assert_int_equal(t.queues, queues);
    assert_string_equal(t.name, name);
}

/* ---- Delivery reports ----------------------------------------------------- */

#define MAXREC 20000

typedef struct dlog {
    pthread_mutex_t mu;
    int             n, failed;
    int             rc[MAXREC];
    uint32_t        queue[MAXREC];
    int64_t         offset[MAXREC];
    int             calls[MAXREC];
} dlog_t;

typedef struct dref { dlog_t *log; int i; } dref_t;

static void on_delivery(void *arg, const rn_delivery_t *d)
{
    dref_t *r = arg;
    dlog_t *l = r->log;
    pthread_mutex_lock(&l->mu);
    l->rc[r->i] = d->rc;
    l->queue[r->i] = d->queue;
    l->offset[r->i] = d->offset;
    l->calls[r->i]++;
    l->n++;
    if (d->rc) l->failed++;
    pthread_mutex_unlock(&l->mu);
}

static dlog_t *dlog_new(void)
{
    dlog_t *l = calloc(1, sizeof *l);
    assert_non_null(l);
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

static int dlog_count(dlog_t *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static void dlog_free(dlog_t *l)
{
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static rn_record_t text_record(const char *key, const char *value, int64_t ts)
{
    rn_record_t r;
    memset(&r, 0, sizeof r);
    r.timestamp = ts;
    r.key = (const uint8_t *)key;
    r.key_len = key ? (int32_t)strlen(key) : -1;
    r.value = (const uint8_t *)value;
    r.value_len = (int32_t)strlen(value);
    return r;
}

/* Read all of (topic, queue) from 0 into values[] (strdup'd), in order. */
static int read_all(fixture_t *f, const char *topic, uint32_t queue, char **values, int max)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_consumer_t *k;
    int64_t ls, hw;
    OK(rn_client_consumer_open(f->c, NULL, &k, err));
    OK(rn_client_consumer_assign(k, topic, queue, 0, err));
    OK(rn_client_consumer_watermarks(k, topic, queue, &ls, &hw, err));
    OK(rn_client_consumer_set_end(k, topic, queue, hw, err));
    int n = 0;
    rn_consumer_batch_t b;
    int rc;
    while ((rc = rn_client_consumer_poll(k, &b, 0, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++) {
            assert_int_equal(b.records[i].offset, n);
            assert_true(n < max);
            values[n] = strndup((const char *)b.records[i].value, (size_t)b.records[i].value_len);
            n++;
        }
        assert_int_equal(b.next_offset, n);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(n, hw);
    rn_client_consumer_close(k);
    return n;
}

/* ---- Producer ---------------------------------------------------------------- */

/* 3000 records to explicit queues: every callback once, offsets dense per
 * queue in send order, and the bytes read back equal. */
static void test_delivery_offsets(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "d", 3);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 4096;                    /* many batches, several requests */
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "d", &po, &p, err));
    assert_int_equal(rn_producer_queues(p), 3);
    dlog_t *l = dlog_new();
    static dref_t refs[3000];
    for (int i = 0; i < 3000; i++) {
        char v[32];
        snprintf(v, sizeof v, "value-%d", i);
        rn_record_t r = text_record(NULL, v, 1000 + i);
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, (uint32_t)(i % 3), &r, on_delivery, &refs[i], err));
    }
    OK(rn_producer_flush(p, err));
    assert_int_equal(dlog_count(l), 3000);
    int64_t next[3] = {0, 0, 0};
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(l->calls[i], 1);
        assert_int_equal(l->rc[i], 0);
        assert_int_equal(l->queue[i], (uint32_t)(i % 3));
        assert_int_equal(l->offset[i], next[i % 3]++);
    }
    rn_producer_stats_t st;
    rn_producer_stats(p, &st);
    assert_int_equal(st.records, 3000);
    assert_int_equal(st.failed, 0);
    assert_true(st.batches > 3);
    OK(rn_producer_close(p, err));
    static char *vals[1000];
    assert_int_equal(read_all(f, "d", 1, vals, 1000), 1000);
    for (int j = 0; j < 1000; j++) {
        char want[32];
        snprintf(want, sizeof want, "value-%d", j * 3 + 1);
        assert_string_equal(vals[j], want);
        free(vals[j]);
    }
    dlog_free(l);
}

/* A lone record waits for linger_ms, then goes without any flush. */
static void test_linger(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "l", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.linger_ms = 300;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "l", &po, &p, err));
    dlog_t *l = dlog_new();
    dref_t ref = {l, 0};
    rn_record_t r = text_record(NULL, "lonely", -1);
    uint64_t t0 = rn_mono_ns();
    OK(rn_producer_send(p, 0, &r, on_delivery, &ref, err));
    rn_test_sleep_ms(100);
    assert_int_equal(dlog_count(l), 0);          /* still lingering */
    for (int i = 0; i < 500 && dlog_count(l) == 0; i++) rn_test_sleep_ms(10);
    assert_int_equal(dlog_count(l), 1);
    uint64_t waited_ms = (rn_mono_ns() - t0) / 1000000u;
    assert_true(waited_ms >= 300);
    assert_int_equal(l->rc[0], 0);
    assert_int_equal(l->offset[0], 0);
    OK(rn_producer_close(p, err));
    dlog_free(l);
}

/* block = 0: past the cap, send refuses with RN_EFULL; the records held stay
 * within the cap; after a flush there is room again. */
static void test_memory_cap_refuses(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "m", 2);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.linger_ms = 60000;                     /* nothing leaves by itself */
    po.max_memory = 4096;
    po.block = 0;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "m", &po, &p, err));
    char v[100];
    memset(v, 'x', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    rn_record_t r = text_record(NULL, v, 5);
    int accepted = 0, rc = 0;
    for (int i = 0; i < 1000 && (rc = rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, NULL, NULL,
                                                       err)) == 0; i++)
        accepted++;
    assert_int_equal(rc, RN_EFULL);
    assert_non_null(strstr(err, "memory cap is 4096"));
    size_t bound = rn_batch_record_bound(&r);
    assert_true(accepted >= 1);
    assert_true((size_t)accepted * bound <= 4096);
    OK(rn_producer_flush(p, err));
    OK(rn_producer_send(p, 0, &r, NULL, NULL, err));
    OK(rn_producer_close(p, err));
    int64_t ls, hw0, hw1;
    OK(rn_client_queue_range(f->c, "m", 0, &ls, &hw0, err));
    OK(rn_client_queue_range(f->c, "m", 1, &ls, &hw1, err));
    assert_int_equal(hw0 + hw1, accepted + 1);
}

/* block = 1: send waits for room, so records sent but not yet delivered
 * never pass what the cap holds, yet every record goes. */
static void test_memory_cap_blocks(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "mb", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.linger_ms = 60000;
    po.max_memory = 8192;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "mb", &po, &p, err));
    dlog_t *l = dlog_new();
    static dref_t refs[2000];
    char v[200];
    memset(v, 'y', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    rn_record_t r = text_record(NULL, v, 7);
    size_t fit = 8192 / rn_batch_record_bound(&r) + 1;
    size_t worst = 0;
    for (int i = 0; i < 2000; i++) {
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, 0, &r, on_delivery, &refs[i], err));
        size_t held = (size_t)(i + 1 - dlog_count(l));
        if (held > worst) worst = held;
    }
    /* A completion gives its memory back before its callbacks run (so a
     * callback may send): the records of the one request being completed
     * can be counted here on top of what the cap holds. */
    assert_true(worst <= 2 * fit);
    OK(rn_producer_flush(p, err));
    assert_int_equal(dlog_count(l), 2000);
    assert_int_equal(l->failed, 0);
    assert_int_equal(l->offset[1999], 1999);
    OK(rn_producer_close(p, err));
    dlog_free(l);
}

/* A delivery callback that sends again, with the producer at its memory cap:
 * it used to wait for memory that only its own thread could free (the
 * completed batch's, released after the callbacks): a deadlock. Now the
 * memory goes back first and such a send never waits: it is stored, or
 * refused with RN_EFULL saying why. Every record is delivered. */
typedef struct resend {
    rn_producer_t  *p;
    pthread_mutex_t mu;
    int             delivered, sent_ok, refused, other;
    char            msg[RN_ERRMSG_SIZE];
} resend_t;

static void resend_cb(void *arg, const rn_delivery_t *d)
{
    resend_t *x = arg;
    char err[RN_ERRMSG_SIZE] = "";
    pthread_mutex_lock(&x->mu);
    int again = x->delivered++ < 1500 && d->rc == 0;
    pthread_mutex_unlock(&x->mu);
    if (!again) return;
    char v[200];
    memset(v, 'c', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    rn_record_t r = text_record(NULL, v, 9);
    int rc = rn_producer_send(x->p, 0, &r, resend_cb, x, err);
    pthread_mutex_lock(&x->mu);
    if (rc == 0) x->sent_ok++;
    else if (rc == RN_EFULL && strstr(err, "delivery callback cannot wait")) x->refused++;
    else { x->other++; snprintf(x->msg, sizeof x->msg, "%s", err); }
    pthread_mutex_unlock(&x->mu);
}

typedef struct flusher { rn_producer_t *p; int rc; int done; pthread_mutex_t mu; } flusher_t;

static void *flush_main(void *arg)
{
    flusher_t *fl = arg;
    char err[RN_ERRMSG_SIZE];
    int rc = rn_producer_flush(fl->p, err);
    pthread_mutex_lock(&fl->mu);
    fl->rc = rc;
    fl->done = 1;
    pthread_mutex_unlock(&fl->mu);
    return NULL;
}

static void test_send_from_callback_at_cap(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "cb", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.max_memory = 8192;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "cb", &po, &p, err));
    resend_t x;
    memset(&x, 0, sizeof x);
    x.p = p;
    pthread_mutex_init(&x.mu, NULL);
    char v[200];
    memset(v, 'y', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    rn_record_t r = text_record(NULL, v, 7);
    for (int i = 0; i < 1000; i++) OK(rn_producer_send(p, 0, &r, resend_cb, &x, err));
    /* flush on another thread, so a deadlock fails the test instead of hanging it */
    flusher_t fl = {p, -1, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flush_main, &fl), 0);
    int done = 0;
    for (int i = 0; i < 2000 && !done; i++) {                      /* at most 20 s */
        pthread_mutex_lock(&fl.mu);
        done = fl.done;
        pthread_mutex_unlock(&fl.mu);
        if (!done) usleep(10000);
    }
    if (!done) fail_msg("flush did not return in 20 s: a callback's send deadlocked "
                        "(%d delivered)", x.delivered);
    pthread_join(t, NULL);
    OK(fl.rc);
    pthread_mutex_lock(&x.mu);
    print_message("%d delivered, %d sent from callbacks, %d refused\n", x.delivered, x.sent_ok,
                  x.refused);
    if (x.other) fail_msg("a callback's send failed otherwise: %s", x.msg);
    assert_int_equal(x.delivered, 1000 + x.sent_ok);
    assert_true(x.sent_ok > 0);
    pthread_mutex_unlock(&x.mu);
    OK(rn_producer_close(p, err));
    int64_t ls, hw;
    OK(rn_client_queue_range(f->c, "cb", 0, &ls, &hw, err));
    assert_int_equal(hw, 1000 + x.sent_ok);
    pthread_mutex_destroy(&x.mu);
}

/* Kafka's murmur2 test vectors (its UtilsTest), and a key always lands in
 * rn_client_partition's queue. */
static void test_key_placement(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    struct { const char *key; int32_t hash; } v[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal((int32_t)rn_murmur2((const uint8_t *)v[i].key, strlen(v[i].key)),
                         v[i].hash);
    create_topic(f, "k", 5);
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "k", NULL, &p, err));
    dlog_t *l = dlog_new();
    static dref_t refs[400];
    static char keys[400][16];
    for (int i = 0; i < 400; i++) {
        snprintf(keys[i], sizeof keys[i], "user-%d", i % 40);
        rn_record_t r = text_record(keys[i], "v", 1);
        refs[i] = (dref_t){l, i};
        OK(rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, on_delivery, &refs[i], err));
    }
    OK(rn_producer_close(p, err));
    int used[5] = {0};
    for (int i = 0; i < 400; i++) {
        uint32_t want = rn_client_partition((const uint8_t *)keys[i], strlen(keys[i]), 5);
        assert_int_equal(l->queue[i], want);
        used[want] = 1;
    }
    assert_true(used[0] + used[1] + used[2] + used[3] + used[4] >= 3);
    dlog_free(l);
}

/* Without keys, batches rotate over the queues; a record too large for any
 * batch and a queue outside the topic are refused with their messages. */
static void test_round_robin_and_refusals(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "rr", 3);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 256;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "rr", &po, &p, err));
    for (int i = 0; i < 300; i++) {
        rn_record_t r = text_record(NULL, "some value of a record", 3);
        OK(rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, NULL, NULL, err));
    }
    char big[400];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rn_record_t r = text_record(NULL, big, 3);
    assert_int_equal(rn_producer_send(p, 0, &r, NULL, NULL, err), RN_ETOOBIG);
    assert_non_null(strstr(err, "does not fit in a batch of batch_bytes 256"));
    r = text_record(NULL, "x", 3);
    assert_int_equal(rn_producer_send(p, 3, &r, NULL, NULL, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "topic 'rr' has no queue 3; it has queues 0..2"));
    OK(rn_producer_close(p, err));
    int64_t total = 0;
    for (uint32_t q = 0; q < 3; q++) {
        int64_t ls, hw;
        OK(rn_client_queue_range(f->c, "rr", q, &ls, &hw, err));
        assert_true(hw > 0);
        total += hw;
    }
    assert_int_equal(total, 300);
    rn_producer_t *p2;
    assert_int_equal(rn_producer_open(f->c, "nope", NULL, &p2, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown topic 'nope'"));
}

/* LZ4 batches round-trip, including reading from inside a batch. */
static void test_lz4(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "z", 1);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.codec = RN_BATCH_CODEC_LZ4;
    po.batch_bytes = 8192;
    rn_producer_t *p;
    OK(rn_producer_open(f->c, "z", &po, &p, err));
    for (int i = 0; i < 2000; i++) {
        char v[96];
        snprintf(v, sizeof v, "{\"seq\":%d,\"msg\":\"compress me compress me compress me\"}", i);
        rn_record_t r = text_record(NULL, v, 100 + i);
        OK(rn_producer_send(p, 0, &r, NULL, NULL, err));
    }
    OK(rn_producer_flush(p, err));
    rn_producer_stats_t st;
    rn_producer_stats(p, &st);
    assert_int_equal(st.records, 2000);
    assert_true(st.bytes < 2000 * 50 / 2);          /* compressed */
    OK(rn_producer_close(p, err));
    rn_client_consumer_t *k;
    OK(rn_client_consumer_open(f->c, NULL, &k, err));
    OK(rn_client_consumer_assign(k, "z", 0, 1234, err));
    rn_consumer_batch_t b;
    assert_int_equal(rn_client_consumer_poll(k, &b, 1000, err), 1);
    assert_int_equal(b.records[0].offset, 1234);
    assert_int_equal(b.records[0].timestamp, 100 + 1234);
    assert_non_null(strstr((const char *)b.records[0].value, "\"seq\":1234,"));
    rn_client_consumer_close(k);
}

/* ---- Consumer ------------------------------------------------------------------ */

static void produce_n(fixture_t *f, const char *topic, uint32_t queue, int first, int n,
                      int64_t ts0)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_producer_t *p;
    OK(rn_producer_open(f->c, topic, NULL, &p, err));
    for (int i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "%d", first + i);
        rn_record_t r = text_record(NULL, v, ts0 + i);
        OK(rn_producer_send(p, queue, &r, NULL, NULL, err));
    }
    OK(rn_producer_close(p, err));
}

static void test_consumer_api(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "c", 2);
    produce_n(f, "c", 0, 0, 10, 1000);
    produce_n(f, "c", 1, 100, 5, 2000);
    rn_client_consumer_t *k;
    OK(rn_client_consumer_open(f->c, NULL, &k, err));
    assert_int_equal(rn_client_consumer_assign(k, "c", 0, 11, err), RN_ERANGE);
    assert_non_null(strstr(err, "offset 11 is outside topic 'c' queue 0's range [0, 10]"));
    assert_int_equal(rn_client_consumer_assign(k, "c", 2, 0, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "it has queues 0..1"));
    OK(rn_client_consumer_assign(k, "c", 0, 3, err));
    OK(rn_client_consumer_assign(k, "c", 1, 0, err));
    assert_int_equal(rn_client_consumer_assign(k, "c", 1, 0, err), RN_EEXIST);
    int64_t pos, ls, hw;
    OK(rn_client_consumer_position(k, "c", 0, &pos, err));
    assert_int_equal(pos, 3);
    OK(rn_client_consumer_watermarks(k, "c", 1, &ls, &hw, err));
    assert_int_equal(ls, 0);
    assert_int_equal(hw, 5);
    /* Round-robin by batch in assignment order: queue 0's batch, then 1's. */
    rn_consumer_batch_t b;
    assert_int_equal(rn_client_consumer_poll(k, &b, 1000, err), 1);
    assert_int_equal(b.queue, 0);
    assert_int_equal(b.count, 7);
    assert_int_equal(b.records[0].offset, 3);
    assert_memory_equal(b.records[0].value, "3", 1);
    assert_int_equal(b.next_offset, 10);
    assert_int_equal(rn_client_consumer_poll(k, &b, 1000, err), 1);
    assert_int_equal(b.queue, 1);
    assert_int_equal(b.count, 5);
    assert_memory_equal(b.records[4].value, "104", 3);
    assert_int_equal(rn_client_consumer_poll(k, &b, 0, err), 0);
    OK(rn_client_consumer_position(k, "c", 1, &pos, err));
    assert_int_equal(pos, 5);
    /* Seek back by offset and by time. */
    OK(rn_client_consumer_seek(k, "c", 1, 2, err));
    assert_int_equal(rn_client_consumer_poll(k, &b, 1000, err), 1);
    assert_int_equal(b.queue, 1);
    assert_int_equal(b.records[0].offset, 2);
    OK(rn_client_consumer_seek_time(k, "c", 0, 1008, err));
    OK(rn_client_consumer_position(k, "c", 0, &pos, err));
    assert_int_equal(pos, 8);
    assert_int_equal(rn_client_consumer_seek(k, "c", 0, 99, err), RN_ERANGE);
    assert_int_equal(rn_client_consumer_seek(k, "c", 7, 0, err), RN_ENOTFOUND);
    /* Commit: the group's offsets are the positions. */
    OK(rn_client_consumer_commit(k, "grp", err));
    rn_client_consumer_close(k);
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    OK(rn_client_group_offsets(f->c, "grp", NULL, &v, &n, err));
    assert_int_equal(n, 2);
    assert_string_equal(v[0].topic, "c");
    assert_int_equal(v[0].offset, 8);
    assert_int_equal(v[1].offset, 5);
    free(v);
    assert_int_equal(rn_client_group_offsets(f->c, "zz", NULL, &v, &n, err), RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown group 'zz'; groups: grp"));
}

/* Groups and checkpoints through the client: start offsets come from the
 * group, then from a checkpoint; a reset to the checkpoint restores them. */
static void test_groups_checkpoints(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "g", 2);
    produce_n(f, "g", 0, 0, 6, 1000);
    produce_n(f, "g", 1, 0, 4, 1000);
    rn_meta_offset_t o[2] = {{.queue = 0, .offset = 2}, {.queue = 1, .offset = 1}};
    snprintf(o[0].topic, sizeof o[0].topic, "g");
    snprintf(o[1].topic, sizeof o[1].topic, "g");
    OK(rn_client_group_commit(f->c, "app", o, 2, err));
    rn_meta_checkpoint_t cp;
    OK(rn_client_checkpoint_create(f->c, "app", "cp1", &cp, err));
    assert_int_equal(cp.offsets, 2);
    o[0].offset = 7;
    assert_int_equal(rn_client_group_commit(f->c, "app", o, 1, err), RN_ERANGE);
    assert_non_null(strstr(err, "offset 7 is outside topic 'g' queue 0's range [0, 6]"));
    o[0].offset = 5;
    OK(rn_client_group_commit(f->c, "app", o, 1, err));
    uint32_t qs[2] = {0, 1};
    int64_t start[2];
    rn_group_target_t from = {.kind = RN_TARGET_EARLIEST};
    OK(rn_client_start_offsets(f->c, "g", qs, 2, "app", &from, start, err));
    assert_int_equal(start[0], 5);
    assert_int_equal(start[1], 1);
    OK(rn_client_start_offsets(f->c, "g", qs, 2, "newgroup", &from, start, err));
    assert_int_equal(start[0], 0);
    from.kind = RN_TARGET_CHECKPOINT;
    snprintf(from.checkpoint, sizeof from.checkpoint, "cp1");
    OK(rn_client_start_offsets(f->c, "g", qs, 2, NULL, &from, start, err));
    assert_int_equal(start[0], 2);
    assert_int_equal(start[1], 1);
    snprintf(from.checkpoint, sizeof from.checkpoint, "nope");
    assert_int_equal(rn_client_start_offsets(f->c, "g", qs, 2, NULL, &from, start, err),
                     RN_ENOTFOUND);
    assert_non_null(strstr(err, "unknown checkpoint 'nope'; checkpoints (group/name): app/cp1"));
    assert_int_equal(rn_client_start_offsets(f->c, "g", qs, 2, "app", &from, start, err),
                     RN_ENOTFOUND);
    assert_non_null(strstr(err, "group 'app' has no checkpoint 'nope'; its checkpoints: cp1"));
    /* Reset to the checkpoint. */
    rn_group_target_t to = {.kind = RN_TARGET_CHECKPOINT};
    snprintf(to.checkpoint, sizeof to.checkpoint, "cp1");
    rn_group_change_t *ch = NULL;
    size_t nch = 0;
    OK(rn_client_group_reset(f->c, "app", NULL, &to, &ch, &nch, err));
    assert_int_equal(nch, 2);
    assert_int_equal(ch[0].queue, 0);
    assert_int_equal(ch[0].before, 5);
    assert_int_equal(ch[0].after, 2);
    assert_int_equal(ch[1].before, 1);
    assert_int_equal(ch[1].after, 1);
    free(ch);
    rn_meta_group_t *gs = NULL;
    size_t ng = 0;
    OK(rn_client_group_list(f->c, &gs, &ng, err));
    assert_int_equal(ng, 1);
    assert_string_equal(gs[0].name, "app");
    assert_int_equal(gs[0].offsets, 2);
    assert_int_equal(gs[0].checkpoints, 1);
    free(gs);
    rn_meta_checkpoint_t *cps = NULL;
    size_t ncp = 0;
    OK(rn_client_checkpoint_list(f->c, "app", &cps, &ncp, err));
    assert_int_equal(ncp, 1);
    assert_string_equal(cps[0].name, "cp1");
    free(cps);
    OK(rn_client_checkpoint_drop(f->c, "app", "cp1", err));
    OK(rn_client_checkpoint_list(f->c, NULL, &cps, &ncp, err));
    assert_int_equal(ncp, 0);
    free(cps);
}

/* Topics, remap, stores: describe shows the items; offsets survive a remap. */
static void test_admin(void **state)
{
    fixture_t *f = *state;
    char err[RN_ERRMSG_SIZE] = "";
    create_topic(f, "a", 2);
    rn_meta_topic_t t;
    assert_int_equal(rn_client_topic_create(f->c, "a", 1, &t, err), RN_EEXIST);
    produce_n(f, "a", 0, 0, 10, 1000);
    rn_meta_item_t sealed, opened;
    OK(rn_client_queue_remap(f->c, "a", 0, NULL, &sealed, &opened, err));
    assert_int_equal(sealed.physical_end, 10);
    assert_int_equal(opened.logical_start, 10);
    assert_int_equal(opened.seq, 1);
    produce_n(f, "a", 0, 10, 5, 2000);
    OK(rn_client_topic_alter(f->c, "a", 3, &t, err));
    assert_int_equal(t.queues, 3);
    rn_client_topic_desc_t d;
    OK(rn_client_topic_describe(f->c, "a", &d, err));
    assert_int_equal(d.topic.queues, 3);
    assert_int_equal(d.queues[0].high_watermark, 15);
    assert_int_equal(d.queues[0].nitems, 2);
    assert_int_equal(d.queues[0].items[1].physical_end, -1);
    assert_int_equal(d.queues[2].nitems, 1);
    rn_client_topic_desc_free(&d);
    rn_meta_topic_t *ts = NULL;
    size_t nt = 0;
    OK(rn_client_topic_list(f->c, &ts, &nt, err));
    assert_int_equal(nt, 1);
    free(ts);
    rn_datadir_store_info_t *st = NULL;
    size_t ns = 0;
    OK(rn_client_stores(f->c, &st, &ns, err));
    assert_int_equal(ns, 1);
    assert_int_equal(st[0].physical_queues, 4);
    assert_true(st[0].bytes > 0);
    free(st);
    static char *vals[15];
    assert_int_equal(read_all(f, "a", 0, vals, 15), 15);
    for (int i = 0; i < 15; i++) {
        char want[16];
        snprintf(want, sizeof want, "%d", i);
        assert_string_equal(vals[i], want);
        free(vals[i]);
    }
    int64_t off;
    OK(rn_client_resolve(f->c, "a", 0, RN_POS_TIME, 2002, &off, err));
    assert_int_equal(off, 12);
    OK(rn_client_resolve(f->c, "a", 0, RN_POS_LATEST, 0, &off, err));
    assert_int_equal(off, 15);
}

#ifndef RN_TEST_CLIENT_REMOTE
/* The public header stands alone: client/runnel.h includes only standard C
 * headers, and tests/standalone/runnel_h.c (a user touching every type it
 * names) compiles with -Wall -Wextra -Werror against a copy of runnel.h in
 * an otherwise empty include directory, so no other project header can be
 * reached. */
static int is_word(char ch) { return isalnum((unsigned char)ch) || ch == '_'; }

/* Blank out the block comments of C text in place (runnel.h has no string
 * literal holding one), so only declarations are looked at. */
static void strip_comments(char *s)
{
    for (char *c = s; (c = strstr(c, "/*")) != NULL;) {
        char *e = strstr(c + 2, "*/");
        assert_non_null(e);
        memset(c, ' ', (size_t)(e + 2 - c));
        c = e + 2;
    }
}

static void test_header_stands_alone(void **state)
{
    (void)state;
    size_t hlen;
    char *hdr = rn_test_slurp(RN_SOURCE_DIR "/client/runnel.h", &hlen);
    char *use = rn_test_slurp(RN_SOURCE_DIR "/tests/standalone/runnel_h.c", NULL);

    /* Only standard C headers (C11, 7.1.2). */
    static const char *const std_headers[] = {
        "assert.h", "complex.h", "ctype.h", "errno.h", "fenv.h", "float.h", "inttypes.h",
        "iso646.h", "limits.h", "locale.h", "math.h", "setjmp.h", "signal.h", "stdalign.h",
        "stdarg.h", "stdatomic.h", "stdbool.h", "stddef.h", "stdint.h", "stdio.h", "stdlib.h",
        "stdnoreturn.h", "string.h", "tgmath.h", "threads.h", "time.h", "uchar.h", "wchar.h",
        "wctype.h"};
    for (const char *at = hdr; (at = strstr(at, "#include")) != NULL; at += 8) {
        const char *q = at + 8;
        while (*q == ' ') q++;
        const char *end = *q == '<' ? strchr(q, '>') : NULL;
        int ok = 0;
        for (size_t i = 0; end && i < sizeof std_headers / sizeof std_headers[0]; i++)
            ok |= strlen(std_headers[i]) == (size_t)(end - q - 1) &&
                  strncmp(q + 1, std_headers[i], (size_t)(end - q - 1)) == 0;
        if (!ok)
            fail_msg("client/runnel.h has '%.*s': it may include only standard C headers",
                     (int)strcspn(at, "\n"), at);
    }

    /* Every type the header's declarations name (rn_*_t, rn_*_fn) is used by
     * the user file. */
    char *decl = strdup(hdr);
    assert_non_null(decl);
    strip_comments(decl);
    int uses = 0;           /* occurrences checked: the scan found the declarations */
    for (const char *at = decl; (at = strstr(at, "rn_")) != NULL; at++) {
        if (at > decl && is_word(at[-1])) continue;
        size_t len = 0;
        while (is_word(at[len])) len++;
        if (len < 5 || (strncmp(at + len - 2, "_t", 2) != 0 &&
                        strncmp(at + len - 3, "_fn", 3) != 0))
            continue;
        int found = 0;
        for (const char *u = use; !found && (u = strstr(u, "rn_")) != NULL; u++)
            found = (u == use || !is_word(u[-1])) && strncmp(u, at, len) == 0 &&
                    !is_word(u[len]);
        if (!found) fail_msg("tests/standalone/runnel_h.c does not use %.*s", (int)len, at);
        uses++;
    }
    assert_true(uses >= 29);
    free(decl);

    /* Compile it where only the header is. */
    char *root = rn_test_tmpdir_new("hdr");
    char dir[PATH_MAX], path[PATH_MAX + 32], cmd[4 * PATH_MAX], out[PATH_MAX + 32],
        errp[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/client", root);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof path, "%s/runnel.h", dir);
    rn_test_write_file(path, hdr, hlen);
    snprintf(path, sizeof path, "%s/use.c", root);
    rn_test_write_file(path, use, strlen(use));
    snprintf(out, sizeof out, "%s/cc.out", root);
    snprintf(errp, sizeof errp, "%s/cc.err", root);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec \"${CC:-cc}\" -std=c11 -Wall -Wextra -Werror -Wshadow -Wvla "
             "-Wpedantic -I. -c use.c -o use.o", root);
    const char *const argv[] = {"/bin/sh", "-c", cmd, NULL};
    int st = rn_test_run(argv[0], argv, NULL, out, errp);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *msg = rn_test_slurp(errp, NULL);
        fail_msg("the standalone use of client/runnel.h does not compile:\n%s", msg);
    }
    struct stat sb;
    assert_int_equal(stat(strcat(strcpy(path, root), "/use.o"), &sb), 0);
    assert_int_equal(rn_test_tmpdir_free(root), 0);
    free(use);
    free(hdr);
}
#endif

/* Every test above, for this file's main and test_client_remote.c's. */
#define CLIENT_TESTS                                                                  \
    cmocka_unit_test_setup_teardown(test_delivery_offsets, setup, teardown),          \
    cmocka_unit_test_setup_teardown(test_linger, setup, teardown),                    \
    cmocka_unit_test_setup_teardown(test_memory_cap_refuses, setup, teardown),        \
    cmocka_unit_test_setup_teardown(test_memory_cap_blocks, setup, teardown),         \
    cmocka_unit_test_setup_teardown(test_send_from_callback_at_cap, setup, teardown), \
    cmocka_unit_test_setup_teardown(test_key_placement, setup, teardown),             \
    cmocka_unit_test_setup_teardown(test_round_robin_and_refusals, setup, teardown),  \
    cmocka_unit_test_setup_teardown(test_lz4, setup, teardown),                       \
    cmocka_unit_test_setup_teardown(test_consumer_api, setup, teardown),              \
    cmocka_unit_test_setup_teardown(test_groups_checkpoints, setup, teardown),        \
    cmocka_unit_test_setup_teardown(test_admin, setup, teardown)

#ifndef RN_TEST_CLIENT_REMOTE
int main(void)
{
    const struct CMUnitTest tests[] = {CLIENT_TESTS, cmocka_unit_test(test_header_stands_alone)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif

/*
 * test_server_load.c — runneld under concurrent load: producers acking with
 * ACKS_DURABLE while SIGTERM arrives (exit 0, and after a restart every
 * acked batch is there at its acked offset, offsets dense), a parked long
 * poll answered at once by the shutdown, many polls woken per queue, a batch
 * near the 16 MiB ceiling end to end, and produce/fetch/long-poll under
 * the other fsync policies (always, interval, never).
 */
#include "tests/test_server.h"

#include <stdatomic.h>

#define PRODUCERS   4
#define MAX_ACKS    100000
#define RECS        50
#define LOAD_MS     10000

typedef struct prod {
    srv_t    *s;
    uint32_t  queue;
    _Atomic int *stop;
    int64_t  *bases;          /* acked base offsets, in order */
    size_t    nacked;
    int       last_rc;
} prod_t;

static void *prod_main(void *arg)
{
    prod_t *p = arg;
    uint64_t t0 = rn_mono_ns();
    while (!atomic_load(p->stop) && p->nacked < MAX_ACKS &&
           rn_mono_ns() - t0 < (uint64_t)LOAD_MS * 1000000) {
        batch_t b;
        make_batch(&b, p->nacked % 2 ? RN_BATCH_CODEC_LZ4 : RN_BATCH_CODEC_NONE, RECS,
                   (int)(p->nacked * RECS), -1, -1, -1);
        int64_t base;
        char err[RN_ERRMSG_SIZE];
        int st;
        int rc = produce_call(p->s, "load", p->queue, &b, 1, 0, &base, NULL, NULL, &st, err);
        batch_free(&b);
        if (rc != 0) { p->last_rc = rc; break; }
        p->bases[p->nacked++] = base;
    }
    return NULL;
}

typedef struct parked {
    srv_t      *s;
    const char *topic;
    int64_t     offset;
    uint32_t    queue, wait_ms;      /* fan_main only */
    int         rc;
    uint32_t nbatches;
    uint64_t ns;
} parked_t;

static void *parked_main(void *arg)
{
    parked_t *p = arg;
    fetch_t f;
    uint64_t t0 = rn_mono_ns();
    p->rc = fetch(p->s, p->topic, 0, p->offset, 0, 30000, &f);
    p->ns = rn_mono_ns() - t0;
    if (p->rc == 0) {
        p->nbatches = f.nbatches;
        fetch_free(&f);
    }
    return NULL;
}

static void *fan_main(void *arg)
{
    parked_t *p = arg;
    fetch_t f;
    uint64_t t0 = rn_mono_ns();
    p->rc = fetch(p->s, p->topic, p->queue, 0, 0, p->wait_ms, &f);
    p->ns = rn_mono_ns() - t0;
    if (p->rc == 0) {
        p->nbatches = f.nbatches;
        fetch_free(&f);
    }
    return NULL;
}

/* SIGTERM during durable produces: nothing acked is lost. */
static void test_shutdown_under_load(void **state)
{
    srv_t *s = *state;
    create_topic(s, "load", PRODUCERS);
    create_topic(s, "idle", 1);
    _Atomic int stop = 0;
    prod_t p[PRODUCERS];
    pthread_t t[PRODUCERS], pt;
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (prod_t){s, (uint32_t)i, &stop, calloc(MAX_ACKS, sizeof(int64_t)), 0, 0};
        assert_non_null(p[i].bases);
        assert_int_equal(pthread_create(&t[i], NULL, prod_main, &p[i]), 0);
    }
    parked_t pk = {s, "idle", 0, 0, 0, -1, 0, 0};
    assert_int_equal(pthread_create(&pt, NULL, parked_main, &pk), 0);
    usleep(800 * 1000);
    uint64_t t0 = rn_mono_ns();
    int code = srv_kill_wait(s, SIGTERM);
    uint64_t stop_ns = rn_mono_ns() - t0;
    atomic_store(&stop, 1);
    for (int i = 0; i < PRODUCERS; i++) pthread_join(t[i], NULL);
    pthread_join(pt, NULL);
    if (code != 0) srv_print_log(s);
    assert_int_equal(code, 0);
    /* The parked poll answered at the shutdown, not after its 30 s. */
    assert_int_equal(pk.rc, 0);
    assert_int_equal(pk.nbatches, 0);
    assert_true(pk.ns < 10000ull * 1000000);
    size_t total = 0;
    for (int i = 0; i < PRODUCERS; i++) total += p[i].nacked;
    print_message("acked %zu batches of %d records (%zu records/s) before SIGTERM; stop took "
                  "%.0f ms\n", total, RECS, (size_t)((double)total * RECS / 0.8),
                  (double)stop_ns / 1e6);
    assert_true(total > 0);
    rn_rpc_close(s->rpc);
    s->rpc = NULL;
    srv_start(s);
    for (int i = 0; i < PRODUCERS; i++) {
        /* Acked in order at dense offsets. */
        for (size_t k = 0; k < p[i].nacked; k++) assert_int_equal(p[i].bases[k], (int64_t)k * RECS);
        int64_t hwm = hwm_of(s, "load", (uint32_t)i);
        assert_true(hwm >= (int64_t)p[i].nacked * RECS);
        /* Everything there reads back densely, values matching offsets. */
        int64_t next = 0;
        for (int rounds = 0; next < hwm && rounds < 100000; rounds++) {
            fetch_t f;
            assert_int_equal(fetch(s, "load", (uint32_t)i, next, 1 << 20, 0, &f), 0);
            int64_t from = next;
            next = check_records(&f, next);
            assert_true(next > from);
            fetch_free(&f);
        }
        assert_int_equal(next, hwm);
        free(p[i].bases);
    }
}

/* Produce (both acks), fetch and a long-poll wake-up under one fsync policy. */
static void policy_roundtrip(srv_t *s)
{
    create_topic(s, "pol", 1);
    batch_t b[4];
    for (int i = 0; i < 4; i++) make_batch(&b[i], RN_BATCH_CODEC_LZ4, 25, i * 25, -1, -1, -1);
    int64_t base[2];
    assert_int_equal(produce(s, "pol", 0, b, 2, 0, base, NULL, NULL), 0);
    assert_int_equal(base[1], 25);
    assert_int_equal(produce(s, "pol", 0, &b[2], 1, 1, base, NULL, NULL), 0);
    assert_int_equal(base[0], 50);
    wait_hwm(s, "pol", 0, 75);
    fetch_t f;
    assert_int_equal(fetch(s, "pol", 0, 0, 0, 0, &f), 0);
    assert_int_equal(check_records(&f, 0), 75);
    fetch_free(&f);
    /* A poll parked at 75 is woken by the next produce. */
    parked_t pk = {s, "pol", 75, 0, 0, -1, 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, parked_main, &pk), 0);
    usleep(200 * 1000);
    assert_int_equal(produce(s, "pol", 0, &b[3], 1, 1, NULL, NULL, NULL), 0);
    pthread_join(t, NULL);
    assert_int_equal(pk.rc, 0);
    assert_int_equal(pk.nbatches, 1);
    assert_true(pk.ns < 10000ull * 1000000);
    assert_int_equal(hwm_of(s, "pol", 0), 100);
    for (int i = 0; i < 4; i++) batch_free(&b[i]);
}

/* Six polls parked on two queues; one produce to each wakes exactly its
 * three, promptly; a poll on a third queue times out empty. */
static void test_many_pollers(void **state)
{
    srv_t *s = *state;
    create_topic(s, "fan", 3);
    parked_t pk[7];
    pthread_t t[7];
    for (int i = 0; i < 7; i++) {
        uint32_t q = i < 3 ? 0 : i < 6 ? 1 : 2;
        pk[i] = (parked_t){s, "fan", 0, q, q == 2 ? 1500 : 10000, -1, 0, 0};
        assert_int_equal(pthread_create(&t[i], NULL, fan_main, &pk[i]), 0);
    }
    usleep(300 * 1000);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 3, 0, -1, -1, -1);
    uint64_t t0 = rn_mono_ns();
    assert_int_equal(produce(s, "fan", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    assert_int_equal(produce(s, "fan", 1, &b, 1, 1, NULL, NULL, NULL), 0);
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(pk[i].rc, 0);
        assert_int_equal(pk[i].nbatches, 1);
    }
    assert_true(rn_mono_ns() - t0 < 5000ull * 1000000);
    pthread_join(t[6], NULL);
    assert_int_equal(pk[6].rc, 0);
    assert_int_equal(pk[6].nbatches, 0);
    assert_true(pk[6].ns >= 1400ull * 1000000);
    batch_free(&b);
}

/* A batch near the 16 MiB ceiling goes through Produce and comes back
 * whole from a Fetch asking for 1 byte (the message limits allow it). */
static void test_large_batch(void **state)
{
    srv_t *s = *state;
    create_topic(s, "large", 1);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 210000, 0, -1, -1, -1);
    assert_true(b.len > (15u << 20) && b.len <= RN_BATCH_MAX_BYTES);
    assert_int_equal(produce(s, "large", 0, &b, 1, 0, NULL, NULL, NULL), 0);
    fetch_t f;
    assert_int_equal(fetch(s, "large", 0, 0, 1, 0, &f), 0);
    assert_int_equal(f.nbatches, 1);
    assert_int_equal(f.len, b.len);
    assert_int_equal(check_records(&f, 0), 210000);
    fetch_free(&f);
    batch_free(&b);
}

static int setup_full_limit(void **state) { return srv_init_ex(state, "group", RN_BATCH_MAX_BYTES); }

static int setup_always(void **state) { return srv_init(state, "always"); }
static int setup_interval(void **state) { return srv_init(state, "interval:5"); }
static int setup_never(void **state) { return srv_init(state, "never"); }

static void test_policy(void **state) { policy_roundtrip(*state); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shutdown_under_load, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_many_pollers, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_large_batch, setup_full_limit, srv_teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup_always, srv_teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup_interval, srv_teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup_never, srv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_server_partial.c — a Produce request that fails part-way, end to end:
 * runneld's server runs in this process (the server objects but runneld.c, see the
 * Makefile) so that the system-call table (common/sys.h) can make the
 * store's second append of a request fail with ENOSPC after its first was
 * stored. The broker answers the error with the stored batch's offset in
 * its trailer, and the client delivers that batch's records with their
 * offsets and fails only the rest (it used to report every batch failed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/runnel.h"
#include "common/error.h"
#include "common/sys.h"
#include "server/handlers.h"
#include "server/server.h"
#include "tests/util/util.h"

/* ---- fault injection -------------------------------------------------------- */

static int g_slow_syncs;           /* fdatasyncs still to slow down (400 ms each) */
static int g_writes_left = -1;     /* pwritev calls to let through; then ENOSPC; -1 off */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static int slow_fdatasync(int fd)
{
    pthread_mutex_lock(&g_mu);
    int slow = g_slow_syncs > 0 ? g_slow_syncs-- : 0;
    pthread_mutex_unlock(&g_mu);
    if (slow) rn_test_sleep_ms(400);
    return fdatasync(fd);
}

static ssize_t failing_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    pthread_mutex_lock(&g_mu);
    int fail = g_writes_left == 0;
    if (g_writes_left > 0) g_writes_left--;
    pthread_mutex_unlock(&g_mu);
    if (fail) {
        errno = ENOSPC;
        return -1;
    }
    return pwritev(fd, iov, cnt, off);
}

/* ---- the broker, in process ----------------------------------------------- */

typedef struct broker {
    char           *dir;
    rn_hd_t        *h;
    rn_server_t    *s;
    int             port;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             stopped;
} broker_t;

static void on_stopped(void *arg)
{
    broker_t *b = arg;
    pthread_mutex_lock(&b->mu);
    b->stopped = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void broker_start(broker_t *b)
{
    char err[RN_ERRMSG_SIZE] = "";
    memset(b, 0, sizeof *b);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->dir = rn_test_tmpdir_new("test-server-partial");
    rn_hd_opts_t ho;
    rn_hd_opts_default(&ho);
    ho.log.fsync = RN_FSYNC_ALWAYS;          /* a stored batch is durable at once */
    if (rn_hd_open(b->dir, &ho, &b->h, err) != 0) fail_msg("rn_hd_open: %s", err);
    rn_server_opts_t so;
    memset(&so, 0, sizeof so);
    so.listen = "127.0.0.1:0";
    so.threads = 2;
    so.stopped = on_stopped;
    so.arg = b;
    if (rn_server_start(b->h, &so, &b->s, &b->port, err) != 0) fail_msg("start: %s", err);
}

static void broker_stop(broker_t *b)
{
    rn_server_shutdown(b->s);
    pthread_mutex_lock(&b->mu);
    while (!b->stopped) pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    rn_server_destroy(b->s);
    rn_hd_close(b->h);                       /* the store is sticky-failed: its error */
    rn_test_tmpdir_free(b->dir);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
}

/* ---- the test -------------------------------------------------------------- */

typedef struct outcome {
    pthread_mutex_t mu;
    int             rc[4];
    int64_t         offset[4];
    int             calls[4];
    char            msg[RN_ERRMSG_SIZE];
} outcome_t;

typedef struct ref { outcome_t *o; int i; } ref_t;

static void on_delivery(void *arg, const rn_delivery_t *d)
{
    ref_t *r = arg;
    pthread_mutex_lock(&r->o->mu);
    r->o->rc[r->i] = d->rc;
    r->o->offset[r->i] = d->offset;
    r->o->calls[r->i]++;
    if (d->rc && !r->o->msg[0]) snprintf(r->o->msg, sizeof r->o->msg, "%s", d->errmsg);
    pthread_mutex_unlock(&r->o->mu);
}

/* Record 0 goes alone while the store's fsync is slow; records 1-3 (one
 * batch each) wait behind it and leave as one request of 3 batches. Its
 * first append succeeds, the second fails with ENOSPC: records 0 and 1 are
 * stored and delivered at offsets 0 and 1; records 2 and 3 fail. */
static void test_partial_produce_reported_per_batch(void **state)
{
    (void)state;
    broker_t b;
    broker_start(&b);
    char err[RN_ERRMSG_SIZE] = "", target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", b.port);
    rn_client_t *c;
    if (rn_client_open_server(target, NULL, &c, err) != 0) fail_msg("client: %s", err);
    if (rn_client_topic_create(c, "p", 1, NULL, err) != 0) fail_msg("topic: %s", err);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 200;                    /* one record per batch */
    po.linger_ms = 0;
    po.retries = 0;
    rn_producer_t *p;
    if (rn_producer_open(c, "p", &po, &p, err) != 0) fail_msg("producer: %s", err);

    outcome_t o;
    memset(&o, 0, sizeof o);
    pthread_mutex_init(&o.mu, NULL);
    ref_t refs[4];
    char v[81];
    memset(v, 'v', 80);
    v[80] = '\0';
    rn_record_t r;
    memset(&r, 0, sizeof r);
    r.timestamp = rn_sys.now_ms();
    r.key_len = -1;
    r.value = (const uint8_t *)v;
    r.value_len = 80;

    rn_sys.fdatasync = slow_fdatasync;
    rn_sys.pwritev = failing_pwritev;
    g_slow_syncs = 1;
    refs[0] = (ref_t){&o, 0};
    assert_int_equal(rn_producer_send(p, 0, &r, on_delivery, &refs[0], err), 0);
    rn_test_sleep_ms(150);                   /* its request is in the slow fsync */
    pthread_mutex_lock(&g_mu);
    g_writes_left = 1;                       /* the next request: one append, then ENOSPC */
    pthread_mutex_unlock(&g_mu);
    for (int i = 1; i < 4; i++) {
        refs[i] = (ref_t){&o, i};
        assert_int_equal(rn_producer_send(p, 0, &r, on_delivery, &refs[i], err), 0);
    }
    int rc = rn_producer_flush(p, err);
    print_message("flush: %d %s\n", rc, err);
    assert_int_not_equal(rc, 0);             /* ENOSPC travels as RESOURCE_EXHAUSTED */
    assert_non_null(strstr(err, "no space left on device"));
    for (int i = 0; i < 4; i++)
        print_message("record %d: rc %d offset %lld\n", i, o.rc[i], (long long)o.offset[i]);
    for (int i = 0; i < 4; i++) assert_int_equal(o.calls[i], 1);
    assert_int_equal(o.rc[0], 0);
    assert_int_equal(o.offset[0], 0);
    assert_int_equal(o.rc[1], 0);            /* stored before the failure: delivered */
    assert_int_equal(o.offset[1], 1);
    assert_int_equal(o.rc[2], rc);
    assert_int_equal(o.rc[3], rc);
    assert_int_equal(o.offset[2], -1);
    assert_non_null(strstr(o.msg, "batch 2 of 3"));
    assert_non_null(strstr(o.msg, "the batches before it were stored"));
    rn_sys_reset();
    rn_producer_close(p, err);
    int64_t ls, hw;
    if (rn_client_queue_range(c, "p", 0, &ls, &hw, err) != 0) fail_msg("range: %s", err);
    assert_int_equal(hw, 2);
    rn_client_close(c);
    broker_stop(&b);
    pthread_mutex_destroy(&o.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_partial_produce_reported_per_batch, rn_test_reset_sys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

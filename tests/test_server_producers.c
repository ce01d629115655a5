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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/producers.c"

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
    /* Reopened: the same ids and epochs, the counter goes on. */
    assert_int_equal(rn_preg_open(f->dir, &r, err), 0);
    assert_int_equal(rn_preg_epoch(r, 1, &ep), 0);
    assert_int_equal(ep, 1);
    assert_int_equal(rn_preg_epoch(r, 2, &ep), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(rn_preg_init(r, 0, &id, &ep, err), 0);
    assert_int_equal(id, 3);
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
    if (v == 0) assert_int_equal(rn_pstate_record(s, &h, base, 100 + (uint64_t)base), 0);
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
    assert_int_equal(rn_pstate_record(&s, &a, 0, 0), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_damaged, setup, teardown),
        cmocka_unit_test(test_sequences),
        cmocka_unit_test(test_chain_in_request),
        cmocka_unit_test_setup_teardown(test_fencing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

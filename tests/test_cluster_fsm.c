/*
 * test_cluster_fsm.c — the controller state and its codecs (cluster/fsm.h),
 * without raft or the network: command round trips (every encoding a
 * multiple of 8 bytes, as libraft 0.15's segment files need), the decoder's
 * refusals, registration and fencing (incarnations, idempotent re-proposals,
 * the node limit), and snapshot round trips and refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cluster/fsm.h"
#include "common/error.h"

static rn_fsm_cmd_t reg(uint64_t id, uint64_t start, const char *client, int64_t at)
{
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_REGISTER;
    c.id = id;
    c.start_id = start;
    c.at_ms = at;
    snprintf(c.client, sizeof c.client, "%s", client);
    return c;
}

static rn_fsm_cmd_t fence(uint64_t id, int64_t at)
{
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_FENCE;
    c.id = id;
    c.at_ms = at;
    return c;
}

/* Every command decodes to itself, and its encoding is padded to 8 bytes. */
static void test_cmd_roundtrip(void **state)
{
    (void)state;
    const char *clients[] = {"", "h:1", "127.0.0.1:7070", "a-long-host-name.example:65535"};
    for (size_t k = 0; k < 4; k++) {
        for (int t = 0; t < 2; t++) {
            rn_fsm_cmd_t c = t ? fence(7 + k, -5 - (int64_t)k)
                               : reg(1ull << 40 | k, 0xfeedull << k, clients[k], 1234567 + (int64_t)k);
            uint8_t buf[RN_FSM_CMD_MAX];
            size_t len = 0;
            assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
            assert_int_equal(len % 8, 0);
            assert_true(len <= RN_FSM_CMD_MAX);
            rn_fsm_cmd_t d;
            char err[RN_ERRMSG_SIZE];
            assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
            assert_int_equal(d.type, c.type);
            assert_int_equal(d.id, c.id);
            assert_int_equal(d.at_ms, c.at_ms);
            assert_int_equal(d.start_id, c.start_id);
            assert_string_equal(d.client, c.client);
        }
    }
}

/* Bad commands: each refused with a message, none read out of bounds. */
static void test_cmd_refused(void **state)
{
    (void)state;
    rn_fsm_cmd_t c = reg(3, 9, "127.0.0.1:7070", 5);
    uint8_t buf[RN_FSM_CMD_MAX + 8];
    size_t len;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
    rn_fsm_cmd_t d;
    char err[RN_ERRMSG_SIZE];
    for (size_t n = 0; n < len; n++) {      /* every truncation */
        int rc = rn_fsm_cmd_decode(buf, n, &d, err);
        /* cutting only padding leaves a valid command */
        size_t body = 2 + 8 + 8 + 8 + 2 + strlen(c.client);
        if (n >= body) assert_int_equal(rc, 0);
        else assert_int_equal(rc, RN_ECORRUPT);
    }
    uint8_t bad[RN_FSM_CMD_MAX + 8];
    memcpy(bad, buf, len);
    bad[0] = 2;
    assert_int_equal(rn_fsm_cmd_decode(bad, len, &d, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "version 2"));
    memcpy(bad, buf, len);
    bad[1] = 9;
    assert_int_equal(rn_fsm_cmd_decode(bad, len, &d, err), RN_ECORRUPT);
    assert_non_null(strstr(err, "type 9 unknown"));
    memcpy(bad, buf, len);
    bad[len - 1] = 1;                       /* padding that is not zero */
    assert_int_equal(rn_fsm_cmd_decode(bad, len, &d, err), RN_ECORRUPT);
    memcpy(bad, buf, len);
    memset(bad + len, 0, 8);                /* eight bytes of padding: too many */
    assert_int_equal(rn_fsm_cmd_decode(bad, len + 8, &d, err), RN_ECORRUPT);
    memcpy(bad, buf, len);
    bad[2 + 8 + 8 + 8 + 2 + 3] = 0;         /* a NUL inside the address */
    assert_int_equal(rn_fsm_cmd_decode(bad, len, &d, err), RN_ECORRUPT);
    memcpy(bad, buf, len);
    bad[2 + 8 + 8 + 8] = 0xff;              /* address length beyond the command */
    assert_int_equal(rn_fsm_cmd_decode(bad, len, &d, err), RN_ECORRUPT);
}

/* Registration, restarts, repeats, fencing, and the node limit. */
static void test_apply(void **state)
{
    (void)state;
    rn_fsm_t f;
    rn_fsm_init(&f);
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = reg(2, 100, "h:2", 10);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    c = reg(1, 200, "h:1", 11);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(f.n, 2);
    assert_int_equal(f.nodes[0].id, 1);           /* ascending ids */
    const rn_fsm_node_t *n2 = rn_fsm_find(&f, 2);
    assert_non_null(n2);
    assert_int_equal(n2->incarnation, 1);
    assert_true(n2->live);
    assert_int_equal(n2->live_changed_ms, 10);
    /* the same start again (a new leader re-proposing): no new incarnation */
    c = reg(2, 100, "h:2", 20);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(rn_fsm_find(&f, 2)->incarnation, 1);
    assert_int_equal(rn_fsm_find(&f, 2)->live_changed_ms, 10);
    /* fenced, then restarted at a new address */
    c = fence(2, 30);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_false(rn_fsm_find(&f, 2)->live);
    assert_int_equal(rn_fsm_find(&f, 2)->live_changed_ms, 30);
    c = fence(2, 31);                               /* fencing twice changes nothing */
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(rn_fsm_find(&f, 2)->live_changed_ms, 30);
    c = reg(2, 101, "h:22", 40);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    n2 = rn_fsm_find(&f, 2);
    assert_true(n2->live);
    assert_int_equal(n2->incarnation, 2);
    assert_string_equal(n2->client, "h:22");
    assert_int_equal(n2->live_changed_ms, 40);
    c = fence(99, 50);                              /* unknown: nothing */
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(f.n, 2);
    for (uint64_t id = 10; f.n < RN_CLUSTER_MAX_NODES; id++) {
        c = reg(id, id, "h:9", 60);
        assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    }
    c = reg(1000, 1, "h:9", 70);
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EFULL);
    assert_non_null(strstr(err, "limit"));
    assert_null(rn_fsm_find(&f, 1000));
}

/* A snapshot restores the same state; damaged ones are refused whole. */
static void test_snapshot(void **state)
{
    (void)state;
    rn_fsm_t f, g;
    rn_fsm_init(&f);
    char err[RN_ERRMSG_SIZE];
    for (uint64_t id = 1; id <= 5; id++) {
        rn_fsm_cmd_t c = reg(id * 3, id * 77, id == 2 ? "" : "127.0.0.1:7000", (int64_t)id);
        assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    }
    rn_fsm_cmd_t c = fence(6, 99);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    uint8_t buf[8192];
    assert_true(rn_fsm_snapshot_bound(&f) <= sizeof buf);
    size_t n = rn_fsm_snapshot_encode(&f, buf);
    rn_fsm_init(&g);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
    assert_memory_equal(&f, &g, sizeof f);
    /* every truncation and every single-byte change of a header field */
    for (size_t k = 0; k < n; k++) {
        rn_fsm_t h;
        rn_fsm_init(&h);
        h.n = 1;
        h.nodes[0].id = 42;
        assert_int_equal(rn_fsm_snapshot_decode(&h, buf, k, err), RN_ECORRUPT);
        assert_int_equal(h.nodes[0].id, 42);        /* unchanged on failure */
    }
    uint8_t bad[8192];
    memcpy(bad, buf, n);
    bad[4] = 2;
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n, err), RN_ECORRUPT);
    memcpy(bad, buf, n);
    bad[8] = RN_CLUSTER_MAX_NODES + 1;
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n, err), RN_ECORRUPT);
    memcpy(bad, buf, n);
    bad[9 + 24] = 2;                                /* live must be 0 or 1 */
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n, err), RN_ECORRUPT);
    /* node records out of order: the second's id made equal to the first's
     * (3; the first record is 35 bytes plus its 14-byte address) */
    memcpy(bad, buf, n);
    bad[9 + 35 + 14 + 7] = 3;
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n, err), RN_ECORRUPT);
    memcpy(bad, buf, n);
    bad[n] = 0;
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n + 1, err), RN_ECORRUPT);  /* trailing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_roundtrip),
        cmocka_unit_test(test_cmd_refused),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

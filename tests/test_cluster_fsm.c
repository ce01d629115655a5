/*
 * test_cluster_fsm.c — the controller state and its codecs (cluster/fsm.h),
 * without raft or the network: command round trips (every encoding a
 * multiple of 8 bytes, as libraft 0.15's segment files need), the decoder's
 * refusals, registration and fencing (incarnations, idempotent re-proposals,
 * the node limit), replicated topics and leader changes (epochs, stale
 * proposals, replica sets that do not check), and snapshot round trips and
 * refusals (with and without topics), group offsets (OFFSETS commands:
 * round trips, refusals, apply in order, the limit, snapshot version 3),
 * and the Kafka addresses nodes register (an optional trailing field of
 * REGISTER, snapshot version 4, with group offsets too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
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

static rn_fsm_cmd_t topic(const char *name, uint32_t nq, uint32_t nrep, uint64_t first)
{
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_TOPIC;
    c.at_ms = 77;
    snprintf(c.topic, sizeof c.topic, "%s", name);
    c.nqueues = nq;
    assert_true(nq <= RN_FSM_MAX_QUEUES);
    for (uint32_t k = 0; k < nq; k++) {
        c.q[k].nrep = nrep;
        for (uint32_t r = 0; r < nrep; r++) c.q[k].replicas[r] = (first + k + r) % nrep + 1;
        c.q[k].leader = c.q[k].replicas[0];
    }
    return c;
}

static rn_fsm_cmd_t leader(const char *name, uint32_t queue, uint64_t prev, uint64_t epoch,
                           uint64_t id, const uint64_t *isr, uint32_t nisr)
{
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_LEADER;
    c.id = id;
    snprintf(c.topic, sizeof c.topic, "%s", name);
    c.queue = queue;
    c.prev_epoch = prev;
    c.epoch = epoch;
    c.q[0].nisr = nisr;
    memcpy(c.q[0].isr, isr, nisr * sizeof *isr);
    return c;
}

/* Deep equality of two states (topics_gen is local and not compared). */
static void assert_fsm_equal(const rn_fsm_t *a, const rn_fsm_t *b)
{
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->nodes, b->nodes, sizeof a->nodes);
    assert_int_equal(a->ntopics, b->ntopics);
    for (size_t i = 0; i < a->ntopics; i++) {
        assert_string_equal(a->topics[i].name, b->topics[i].name);
        assert_int_equal(a->topics[i].nqueues, b->topics[i].nqueues);
        assert_memory_equal(a->topics[i].q, b->topics[i].q,
                            a->topics[i].nqueues * sizeof *a->topics[i].q);
    }
    assert_int_equal(a->ngoffs, b->ngoffs);
    for (size_t i = 0; i < a->ngoffs; i++) {
        assert_string_equal(a->goffs[i].group, b->goffs[i].group);
        assert_string_equal(a->goffs[i].topic, b->goffs[i].topic);
        assert_int_equal(a->goffs[i].queue, b->goffs[i].queue);
        assert_int_equal(a->goffs[i].offset, b->goffs[i].offset);
    }
}

/* Topic and leader commands round trip at every size, padded to 8 bytes;
 * every truncation of one is refused or (padding only) still valid. */
static void test_topic_cmd_roundtrip(void **state)
{
    (void)state;
    char name[RN_FSM_TOPIC_MAX];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    uint32_t nqs[] = {1, 2, 7, RN_FSM_MAX_QUEUES};
    for (size_t k = 0; k < 4; k++) {
        for (uint32_t nrep = 1; nrep <= RN_CLUSTER_MAX_NODES; nrep += 5) {
            name[k * 60 + 1] = '\0';
            rn_fsm_cmd_t c = topic(name, nqs[k], nrep, k);
            name[k * 60 + 1] = 'n';
            uint8_t buf[RN_FSM_CMD_MAX];
            size_t len = 0;
            assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
            assert_int_equal(len % 8, 0);
            assert_true(len <= RN_FSM_CMD_MAX);
            rn_fsm_cmd_t d;
            char err[RN_ERRMSG_SIZE];
            assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
            assert_int_equal(d.type, RN_FSM_TOPIC);
            assert_string_equal(d.topic, c.topic);
            assert_int_equal(d.nqueues, c.nqueues);
            for (uint32_t q = 0; q < c.nqueues; q++) {
                assert_int_equal(d.q[q].leader, c.q[q].leader);
                assert_int_equal(d.q[q].nrep, nrep);
                assert_memory_equal(d.q[q].replicas, c.q[q].replicas, nrep * 8);
            }
            size_t body = 2 + 8 + 8 + 2 + strlen(c.topic) + 4 + c.nqueues * (8 + 1 + 8 * nrep);
            for (size_t n = 0; n < len; n++)
                assert_int_equal(rn_fsm_cmd_decode(buf, n, &d, err), n >= body ? 0 : RN_ECORRUPT);
        }
    }
    /* the largest command fits RN_FSM_CMD_MAX */
    rn_fsm_cmd_t big = topic(name, RN_FSM_MAX_QUEUES, RN_CLUSTER_MAX_NODES, 0);
    uint8_t buf[RN_FSM_CMD_MAX];
    size_t len;
    assert_int_equal(rn_fsm_cmd_encode(&big, buf, &len), 0);
    assert_true(len <= RN_FSM_CMD_MAX);
    uint64_t isr[] = {3, 1};
    rn_fsm_cmd_t c = leader("t", 5, 8, 9, 3, isr, 2), d;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
    assert_int_equal(len % 8, 0);
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
    assert_int_equal(d.id, 3);
    assert_int_equal(d.queue, 5);
    assert_int_equal(d.prev_epoch, 8);
    assert_int_equal(d.epoch, 9);
    assert_int_equal(d.q[0].nisr, 2);
    assert_int_equal(d.q[0].isr[1], 1);
    /* no name, too many queues, too many replicas: not encoded */
    c = topic("", 1, 1, 0);
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), RN_EINVAL);
    c = topic("t", 1, 1, 0);
    c.nqueues = RN_FSM_MAX_QUEUES + 1;                   /* more than c.q holds */
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), RN_EINVAL);
    c = topic("t", 1, 1, 0);
    c.q[0].nrep = RN_CLUSTER_MAX_NODES + 1;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), RN_EINVAL);
}

/* Topics: created once, replica sets checked; leader changes only from the
 * current epoch, one more per new leader, none for an ISR change. */
static void test_topic_apply(void **state)
{
    (void)state;
    rn_fsm_t f;
    rn_fsm_init(&f);
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = topic("b", 3, 3, 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    c = topic("a", 1, 2, 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(f.ntopics, 2);
    assert_string_equal(f.topics[0].name, "a");          /* ascending names */
    uint64_t gen = f.topics_gen;
    c = topic("b", 1, 1, 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EEXIST);
    assert_int_equal(f.topics_gen, gen);
    const rn_fsm_topic_t *t = rn_fsm_topic_find(&f, "b");
    assert_non_null(t);
    assert_int_equal(t->nqueues, 3);
    for (uint32_t k = 0; k < 3; k++) {
        assert_int_equal(t->q[k].epoch, 1);
        assert_int_equal(t->q[k].nisr, 3);
        assert_memory_equal(t->q[k].isr, t->q[k].replicas, 3 * 8);
        assert_int_equal(t->q[k].leader, t->q[k].replicas[0]);
    }
    assert_int_equal(t->q[0].leader, 1);                  /* leaders spread */
    assert_int_equal(t->q[1].leader, 2);
    assert_int_equal(t->q[2].leader, 3);
    /* bad replica sets: twice, a leader outside, none, node id 0 */
    c = topic("c", 1, 2, 0);
    c.q[0].replicas[1] = c.q[0].replicas[0];
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = topic("c", 1, 2, 0);
    c.q[0].leader = 9;
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = topic("c", 1, 0, 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = topic("c", 1, 1, 0);
    c.q[0].replicas[0] = c.q[0].leader = 0;
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    assert_null(rn_fsm_topic_find(&f, "c"));
    /* b/0: leader 1 fails; 2 takes over at epoch 2 with ISR {2, 3} */
    uint64_t isr23[] = {2, 3}, isr2[] = {2}, isr9[] = {2, 9}, isr3[] = {3};
    c = leader("b", 0, 1, 2, 2, isr23, 2);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    t = rn_fsm_topic_find(&f, "b");
    assert_int_equal(t->q[0].leader, 2);
    assert_int_equal(t->q[0].epoch, 2);
    assert_int_equal(t->q[0].nisr, 2);
    /* the same proposal again (a new controller leader re-proposing): stale */
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    assert_non_null(strstr(err, "stale"));
    assert_int_equal(rn_fsm_find(&f, 2) == NULL, 1);
    /* ISR shrink keeps the epoch; a new leader must take epoch + 1 */
    c = leader("b", 0, 2, 2, 2, isr2, 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(t->q[0].epoch, 2);
    assert_int_equal(t->q[0].nisr, 1);
    c = leader("b", 0, 2, 2, 3, isr3, 1);                 /* new leader, same epoch */
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = leader("b", 0, 2, 3, 2, isr9, 2);                 /* ISR outside the replicas */
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = leader("b", 0, 2, 3, 3, isr2, 1);                 /* leader not in its ISR */
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = leader("b", 0, 2, 3, 0, isr2, 1);                 /* no leader: epoch + 1 */
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(t->q[0].leader, 0);
    assert_int_equal(t->q[0].epoch, 3);
    c = leader("b", 7, 1, 2, 2, isr2, 1);                 /* no queue 7 */
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    c = leader("zz", 0, 1, 2, 2, isr2, 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);
    rn_fsm_free(&f);
}

/* A state with topics snapshots as version 2 and restores the same; every
 * truncation is refused with the state unchanged; a replica set that does
 * not check is refused. */
static void test_topic_snapshot(void **state)
{
    (void)state;
    rn_fsm_t f, g;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = reg(1, 5, "127.0.0.1:1", 3);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    const char *names[] = {"orders", "a", "logs.v2"};
    for (int i = 0; i < 3; i++) {
        c = topic(names[i], (uint32_t)i * 3 + 1, (uint32_t)i + 1, (uint64_t)i);
        assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    }
    uint64_t isr[] = {2};
    c = leader("logs.v2", 1, 1, 2, 2, isr, 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    size_t bound = rn_fsm_snapshot_bound(&f);
    uint8_t *buf = malloc(bound + 8);
    assert_non_null(buf);
    size_t n = rn_fsm_snapshot_encode(&f, buf);
    assert_true(n <= bound);
    assert_int_equal(buf[4], 2);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
    assert_fsm_equal(&f, &g);
    /* restoring over a state with topics replaces them (no leak, no merge) */
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
    assert_fsm_equal(&f, &g);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(rn_fsm_snapshot_decode(&g, buf, k, err), RN_ECORRUPT);
        assert_fsm_equal(&f, &g);
    }
    /* the last queue's ISR member changed to a node outside its replicas */
    uint8_t keep = buf[n - 1];
    buf[n - 1] = 0x63;
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), RN_ECORRUPT);
    buf[n - 1] = keep;
    buf[n] = 0;
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n + 1, err), RN_ECORRUPT);
    /* without topics the state is written as version 1 */
    rn_fsm_t h;
    rn_fsm_init(&h);
    assert_int_equal(rn_fsm_apply(&h, &c, err), RN_EINVAL);
    size_t m = rn_fsm_snapshot_encode(&h, buf);
    assert_int_equal(buf[4], 1);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, m, err), 0);
    assert_int_equal(g.ntopics, 0);
    free(buf);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
}


static rn_fsm_goff_t goff(const char *group, const char *topic_name, uint32_t queue, int64_t off)
{
    rn_fsm_goff_t o;
    memset(&o, 0, sizeof o);
    snprintf(o.group, sizeof o.group, "%s", group);
    snprintf(o.topic, sizeof o.topic, "%s", topic_name);
    o.queue = queue;
    o.offset = off;
    return o;
}

/* A name of n bytes ('a' + k). */
static void long_name(char *out, size_t n, int k)
{
    memset(out, 'a' + k % 26, n);
    out[n] = '\0';
}

/* OFFSETS commands round trip for 1..40 offsets, names of 1..249 bytes and
 * groups sharing a header or not, padded to 8 bytes; every truncation is
 * refused or (padding only) decodes to the same; bad input to the encoder
 * is refused. */
static void test_offsets_cmd_roundtrip(void **state)
{
    (void)state;
    static rn_fsm_goff_t v[40];
    static uint8_t buf[RN_FSM_OFFSETS_MAX_BYTES];
    char err[RN_ERRMSG_SIZE];
    for (size_t n = 1; n <= 40; n += 3) {
        for (size_t i = 0; i < n; i++) {
            char g[RN_FSM_TOPIC_MAX], t[RN_FSM_TOPIC_MAX];
            long_name(g, 1 + (i / 3 * 37 + n) % 249, (int)(i / 3));   /* runs of 3 */
            long_name(t, 1 + (i * 53 + n) % 249, (int)i);
            /* the low byte never 0: the fields end at the last non-zero byte */
            v[i] = goff(g, t, (uint32_t)(i * 7), ((int64_t)(i * 1000003u) << (i % 24)) | 1);
        }
        size_t len = 0, bound = rn_fsm_offsets_bound(v, n);
        assert_int_equal(rn_fsm_offsets_encode(v, n, buf, &len), 0);
        assert_int_equal(len % 8, 0);
        assert_true(len <= bound);
        assert_int_equal(buf[1], RN_FSM_OFFSETS);
        rn_fsm_goff_t *d = NULL;
        size_t nd = 0;
        assert_int_equal(rn_fsm_offsets_decode(buf, len, &d, &nd, err), 0);
        assert_int_equal(nd, n);
        for (size_t i = 0; i < n; i++) {
            assert_string_equal(d[i].group, v[i].group);
            assert_string_equal(d[i].topic, v[i].topic);
            assert_int_equal(d[i].queue, v[i].queue);
            assert_int_equal(d[i].offset, v[i].offset);
        }
        free(d);
        size_t fields = len;
        while (fields > 0 && buf[fields - 1] == 0) fields--;
        for (size_t k = 0; k < len; k++) {
            int rc = rn_fsm_offsets_decode(buf, k, &d, &nd, err);
            if (rc == 0) {
                assert_true(k >= fields);
                assert_int_equal(nd, n);
                free(d);
            } else {
                assert_int_equal(rc, RN_ECORRUPT);
                assert_null(d);
            }
        }
        if (len - fields > 0) {                  /* a non-zero padding byte */
            buf[len - 1] = 1;
            assert_int_equal(rn_fsm_offsets_decode(buf, len, &d, &nd, err), RN_ECORRUPT);
        }
    }
    /* the generic decoder does not take it, nor does this one take others */
    rn_fsm_goff_t one = goff("g", "t", 0, 5);
    size_t len;
    assert_int_equal(rn_fsm_offsets_encode(&one, 1, buf, &len), 0);
    rn_fsm_cmd_t c;
    assert_int_equal(rn_fsm_cmd_decode(buf, len, &c, err), RN_ECORRUPT);
    rn_fsm_goff_t *d = NULL;
    size_t nd;
    buf[0] = 2;
    assert_int_equal(rn_fsm_offsets_decode(buf, len, &d, &nd, err), RN_ECORRUPT);
    buf[0] = RN_FSM_CMD_VERSION;
    buf[2] = buf[3] = buf[4] = buf[5] = 0;           /* no group */
    assert_int_equal(rn_fsm_offsets_decode(buf, len, &d, &nd, err), RN_ECORRUPT);
    rn_fsm_cmd_t f = fence(1, 2);
    assert_int_equal(rn_fsm_cmd_encode(&f, buf, &len), 0);
    assert_int_equal(rn_fsm_offsets_decode(buf, len, &d, &nd, err), RN_ECORRUPT);
    /* the encoder refuses what it cannot write */
    rn_fsm_goff_t bad = goff("", "t", 0, 1);
    assert_int_equal(rn_fsm_offsets_encode(&bad, 1, buf, &len), RN_EINVAL);
    bad = goff("g", "", 0, 1);
    assert_int_equal(rn_fsm_offsets_encode(&bad, 1, buf, &len), RN_EINVAL);
    bad = goff("g", "t", 0, -1);
    assert_int_equal(rn_fsm_offsets_encode(&bad, 1, buf, &len), RN_EINVAL);
    assert_int_equal(rn_fsm_offsets_encode(&one, 0, buf, &len), RN_EINVAL);
    /* past RN_FSM_OFFSETS_MAX_BYTES */
    size_t big = RN_FSM_OFFSETS_MAX_BYTES / (2 + 249 + 12) + 2;
    rn_fsm_goff_t *w = calloc(big, sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < big; i++) {
        w[i] = goff("g", "t", (uint32_t)i, 1);
        long_name(w[i].topic, 249, (int)i);
    }
    assert_true(rn_fsm_offsets_bound(w, big) > RN_FSM_OFFSETS_MAX_BYTES);
    assert_int_equal(rn_fsm_offsets_encode(w, big, buf, &len), RN_EINVAL);
    assert_int_equal(rn_fsm_offsets_encode(w, big - 2, buf, &len), 0);
    free(w);
}

/* Offsets apply in entry order on queues of replicated topics only, all or
 * nothing, up to the limit; an offset may move back (an upsert). */
static void test_offsets_apply(void **state)
{
    (void)state;
    rn_fsm_t f;
    rn_fsm_init(&f);
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = topic("t", 3, 3, 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    c = topic("u", RN_FSM_MAX_QUEUES, 1, 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    rn_fsm_goff_t v[] = {goff("g", "t", 2, 10), goff("g", "t", 0, 4), goff("a", "u", 1, 7),
                         goff("g", "t", 2, 12)};
    assert_int_equal(rn_fsm_offsets_apply(&f, v, 4, err), 0);
    assert_int_equal(f.ngoffs, 3);
    assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 2)->offset, 12);   /* the later wins */
    assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 0)->offset, 4);
    assert_int_equal(rn_fsm_goff_find(&f, "a", "u", 1)->offset, 7);
    assert_null(rn_fsm_goff_find(&f, "g", "t", 1));
    assert_null(rn_fsm_goff_find(&f, "a", "t", 2));
    assert_string_equal(f.goffs[0].group, "a");          /* sorted */
    assert_int_equal(f.goffs[1].queue, 0);
    rn_fsm_goff_t back = goff("g", "t", 2, 3);
    assert_int_equal(rn_fsm_offsets_apply(&f, &back, 1, err), 0);
    assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 2)->offset, 3);
    /* refused whole: a queue out of range, an unknown topic, a negative offset */
    rn_fsm_goff_t bad[][2] = {{goff("g", "t", 0, 99), goff("g", "t", 3, 1)},
                              {goff("g", "t", 0, 99), goff("g", "x", 0, 1)},
                              {goff("g", "t", 0, 99), goff("g", "t", 1, -1)}};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(rn_fsm_offsets_apply(&f, bad[k], 2, err), RN_EINVAL);
        assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 0)->offset, 4);
        assert_int_equal(f.ngoffs, 3);
    }
    /* the limit: fill it up in entries of 4096, a new key is then refused */
    size_t per = 4096;
    rn_fsm_goff_t *w = calloc(per, sizeof *w);
    assert_non_null(w);
    size_t have = f.ngoffs;
    for (size_t g = 0; have < RN_FSM_MAX_GOFFS; g++) {
        size_t n = 0;
        for (; n < per && have + n < RN_FSM_MAX_GOFFS; n++) {
            char name[32];
            snprintf(name, sizeof name, "z%06zu", (g * per + n) / RN_FSM_MAX_QUEUES);
            w[n] = goff(name, "u", (uint32_t)((g * per + n) % RN_FSM_MAX_QUEUES), (int64_t)n);
        }
        assert_int_equal(rn_fsm_offsets_apply(&f, w, n, err), 0);
        have += n;
        assert_int_equal(f.ngoffs, have);
    }
    rn_fsm_goff_t more[] = {goff("g", "t", 0, 5), goff("g", "t", 1, 5)};
    assert_int_equal(rn_fsm_offsets_apply(&f, more, 2, err), RN_EFULL);
    assert_non_null(strstr(err, "limit"));
    assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 0)->offset, 4);
    assert_int_equal(rn_fsm_offsets_apply(&f, more, 1, err), 0);        /* existing key */
    assert_int_equal(rn_fsm_goff_find(&f, "g", "t", 0)->offset, 5);
    for (size_t i = 1; i < f.ngoffs; i++) {
        const rn_fsm_goff_t *a = &f.goffs[i - 1], *b = &f.goffs[i];
        int cmp = strcmp(a->group, b->group);
        if (!cmp) cmp = strcmp(a->topic, b->topic);
        assert_true(cmp < 0 || (cmp == 0 && a->queue < b->queue));
    }
    free(w);
    rn_fsm_free(&f);
}

/* A state with group offsets is written as snapshot version 3 and read
 * back equal; truncations, an offset on a queue that does not exist, and
 * keys out of order are refused, the state unchanged. Two states that
 * apply the same encoded entries agree. */
static void test_offsets_snapshot(void **state)
{
    (void)state;
    rn_fsm_t f, g, h;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    rn_fsm_init(&h);
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = reg(2, 9, "127.0.0.1:2", 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(rn_fsm_apply(&h, &c, err), 0);
    c = topic("t", 2, 3, 1);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_int_equal(rn_fsm_apply(&h, &c, err), 0);
    static uint8_t ent[RN_FSM_OFFSETS_MAX_BYTES];
    for (int round = 0; round < 5; round++) {
        rn_fsm_goff_t v[3];
        char gname[16];
        snprintf(gname, sizeof gname, "g%d", round % 3);
        v[0] = goff(gname, "t", (uint32_t)round % 2, round * 10);
        v[1] = goff("shared", "t", 1, 100 - round);
        v[2] = goff(gname, "t", 0, round);
        size_t len;
        assert_int_equal(rn_fsm_offsets_encode(v, 3, ent, &len), 0);
        rn_fsm_goff_t *d;
        size_t nd;
        assert_int_equal(rn_fsm_offsets_decode(ent, len, &d, &nd, err), 0);
        assert_int_equal(rn_fsm_offsets_apply(&f, d, nd, err), 0);
        assert_int_equal(rn_fsm_offsets_apply(&h, d, nd, err), 0);
        free(d);
    }
    rn_fsm_goff_t last[] = {goff("zz", "t", 1, 8), goff("zz", "t", 0, 9)};
    assert_int_equal(rn_fsm_offsets_apply(&f, last, 2, err), 0);
    assert_int_equal(rn_fsm_offsets_apply(&h, last, 2, err), 0);
    assert_fsm_equal(&f, &h);
    assert_int_equal(rn_fsm_goff_find(&f, "shared", "t", 1)->offset, 96);
    size_t bound = rn_fsm_snapshot_bound(&f);
    uint8_t *buf = malloc(bound + 8);
    assert_non_null(buf);
    size_t n = rn_fsm_snapshot_encode(&f, buf);
    assert_true(n <= bound);
    assert_int_equal(buf[4], 3);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
    assert_fsm_equal(&f, &g);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);     /* over itself: no leak */
    assert_fsm_equal(&f, &g);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(rn_fsm_snapshot_decode(&g, buf, k, err), RN_ECORRUPT);
        assert_fsm_equal(&f, &g);
    }
    /* the last offset's queue made 2 (t has queues 0 and 1) */
    size_t qat = n - 12;
    uint8_t keep = buf[qat + 3];
    buf[qat + 3] = 2;
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), RN_ECORRUPT);
    /* the last offset's queue made 0: the key of the one ahead, twice */
    buf[qat + 3] = 0;
    assert_int_equal(f.goffs[f.ngoffs - 1].queue, 1);
    assert_int_equal(f.goffs[f.ngoffs - 2].queue, 0);
    assert_string_equal(f.goffs[f.ngoffs - 1].group, f.goffs[f.ngoffs - 2].group);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), RN_ECORRUPT);
    buf[qat + 3] = keep;
    assert_fsm_equal(&f, &g);
    free(buf);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
    rn_fsm_free(&h);
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
    assert_fsm_equal(&f, &g);
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
    bad[4] = 5;
    assert_int_equal(rn_fsm_snapshot_decode(&g, bad, n, err), RN_ECORRUPT);
    bad[4] = 2;                                     /* version 2 needs a topic part */
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

/* REGISTER with a Kafka address: round trip, padding, every truncation;
 * applied, re-registered without one (cleared); snapshots as version 4
 * with and without topics and group offsets; a REGISTER without one is the
 * first slice's bytes exactly. */
static void test_kafka_addr(void **state)
{
    (void)state;
    const char *kafkas[] = {"h:9", "127.0.0.1:9092", "a-long-host-name.example:65535"};
    char err[RN_ERRMSG_SIZE];
    for (size_t k = 0; k < 3; k++) {
        rn_fsm_cmd_t c = reg(5 + k, 77, "127.0.0.1:7070", 11);
        snprintf(c.kafka, sizeof c.kafka, "%s", kafkas[k]);
        uint8_t buf[RN_FSM_CMD_MAX], plain[RN_FSM_CMD_MAX];
        size_t len = 0, plen = 0;
        assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
        assert_int_equal(len % 8, 0);
        rn_fsm_cmd_t d;
        assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
        assert_string_equal(d.kafka, kafkas[k]);
        assert_string_equal(d.client, c.client);
        size_t body = 2 + 8 + 8 + 8 + 2 + strlen(c.client) + 2 + strlen(kafkas[k]);
        /* cut inside the field: refused, or (only its zero bytes left) read
         * as a REGISTER without one, never a partial address */
        size_t head = body - 2 - strlen(kafkas[k]);
        for (size_t n = 0; n < len; n++) {
            int rc = rn_fsm_cmd_decode(buf, n, &d, err);
            if (n >= body) {
                assert_int_equal(rc, 0);
                assert_string_equal(d.kafka, kafkas[k]);
            } else if (n == head || n == head + 1) {
                assert_int_equal(rc, 0);
                assert_string_equal(d.kafka, "");
            } else {
                assert_int_equal(rc, RN_ECORRUPT);
            }
        }
        buf[2 + 8 + 8 + 8 + 2 + strlen(c.client) + 2] = '\0';      /* a NUL inside */
        assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), RN_ECORRUPT);
        rn_fsm_cmd_t e = c;
        e.kafka[0] = '\0';
        assert_int_equal(rn_fsm_cmd_encode(&e, plain, &plen), 0);
        assert_int_equal(plen, (2 + 8 + 8 + 8 + 2 + strlen(c.client) + 7) / 8 * 8);
        assert_int_equal(rn_fsm_cmd_decode(plain, plen, &d, err), 0);
        assert_string_equal(d.kafka, "");
    }
    rn_fsm_t f, g;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    for (int with_topic = 0; with_topic < 3; with_topic++) {
        for (uint64_t id = 1; id <= 3; id++) {
            rn_fsm_cmd_t c = reg(id, id * 7, "127.0.0.1:7000", (int64_t)id);
            if (id != 2) snprintf(c.kafka, sizeof c.kafka, "127.0.0.1:%llu", (unsigned long long)(9090 + id));
            assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
        }
        assert_string_equal(rn_fsm_find(&f, 3)->kafka, "127.0.0.1:9093");
        assert_string_equal(rn_fsm_find(&f, 2)->kafka, "");
        if (with_topic == 1) {
            rn_fsm_cmd_t t = topic("kt", 2, 3, 1);
            assert_int_equal(rn_fsm_apply(&f, &t, err), 0);
        } else if (with_topic == 2) {                 /* and group offsets on it */
            rn_fsm_goff_t o[2] = {goff("g1", "kt", 0, 7), goff("g2", "kt", 1, 9)};
            assert_int_equal(rn_fsm_offsets_apply(&f, o, 2, err), 0);
        }
        uint8_t buf[16384];
        assert_true(rn_fsm_snapshot_bound(&f) <= sizeof buf);
        size_t n = rn_fsm_snapshot_encode(&f, buf);
        assert_int_equal(buf[4], 4);
        assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
        assert_fsm_equal(&f, &g);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(rn_fsm_snapshot_decode(&g, buf, k, err), RN_ECORRUPT);
        buf[n] = 0;
        assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n + 1, err), RN_ECORRUPT);
    }
    /* re-registered without a Kafka address: cleared; none left: version 3
     * (the group offsets) */
    for (uint64_t id = 1; id <= 3; id++) {
        rn_fsm_cmd_t c = reg(id, id * 7, "127.0.0.1:7000", 50);
        assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    }
    assert_string_equal(rn_fsm_find(&f, 1)->kafka, "");
    uint8_t buf[16384];
    size_t n = rn_fsm_snapshot_encode(&f, buf);
    assert_int_equal(buf[4], 3);
    assert_int_equal(rn_fsm_snapshot_decode(&g, buf, n, err), 0);
    assert_fsm_equal(&f, &g);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
}

static rn_fsm_cmd_t replicas_cmd(const char *name, uint32_t queue, uint64_t prev,
                                 uint64_t epoch, uint64_t lead, const uint64_t *reps,
                                 uint32_t nrep, const uint64_t *target, uint32_t ntarget)
{
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_REPLICAS;
    c.id = lead;
    c.at_ms = 99;
    snprintf(c.topic, sizeof c.topic, "%s", name);
    c.queue = queue;
    c.prev_epoch = prev;
    c.epoch = epoch;
    c.q[0].nrep = nrep;
    memcpy(c.q[0].replicas, reps, nrep * sizeof *reps);
    c.q[0].ntarget = ntarget;
    if (ntarget) memcpy(c.q[0].target, target, ntarget * sizeof *target);
    return c;
}

/* REPLICAS (queue reassign): round trip and every truncation; a move from
 * {1,2,3} to {2,3,4}: started (replicas the union, ISR kept), node 4 in
 * sync, done with the leader handing over (epoch + 1, ISR within the
 * target); stale, bad leaders and targets outside the replicas refused
 * with the state unchanged; snapshot version 5 while a move is pending. */
static void test_replicas_cmd(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    const uint64_t u[] = {1, 2, 3, 4}, tg[] = {2, 3, 4}, isr4[] = {1, 2, 3, 4};
    rn_fsm_cmd_t c = replicas_cmd("rt", 0, 1, 1, 1, u, 4, tg, 3);
    uint8_t buf[RN_FSM_CMD_MAX];
    size_t len = 0;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
    assert_int_equal(len % 8, 0);
    rn_fsm_cmd_t d;
    assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
    assert_memory_equal(&c, &d, sizeof c);
    size_t body = 2 + 8 + 8 + 2 + 2 + 4 + 8 + 8 + 1 + 4 * 8 + 1 + 3 * 8;
    for (size_t n = 0; n < len; n++)
        assert_int_equal(rn_fsm_cmd_decode(buf, n, &d, err), n >= body ? 0 : RN_ECORRUPT);

    rn_fsm_t f, g;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    rn_fsm_cmd_t t = topic("rt", 1, 3, 0);                /* replicas 1,2,3; leader 1 */
    assert_int_equal(rn_fsm_apply(&f, &t, err), 0);
    assert_int_equal(f.topics[0].q[0].leader, 1);
    rn_fsm_pq_t before = f.topics[0].q[0];
    const uint64_t out[] = {1, 2, 5};
    rn_fsm_cmd_t bad[] = {
        replicas_cmd("rt", 0, 2, 2, 1, u, 4, tg, 3),       /* stale epoch */
        replicas_cmd("rt", 0, 1, 2, 1, u, 4, tg, 3),       /* epoch + 1, same leader */
        replicas_cmd("rt", 0, 1, 1, 4, u, 4, tg, 3),       /* a leader out of the ISR */
        replicas_cmd("rt", 0, 1, 1, 1, u, 4, out, 3),      /* target outside the replicas */
        replicas_cmd("rt", 1, 1, 1, 1, u, 4, tg, 3),       /* no such queue */
        replicas_cmd("xx", 0, 1, 1, 1, u, 4, tg, 3),       /* no such topic */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rn_fsm_apply(&f, &bad[i], err), RN_EINVAL);
        assert_memory_equal(&f.topics[0].q[0], &before, sizeof before);
    }
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);       /* started */
    const rn_fsm_pq_t *q = &f.topics[0].q[0];
    assert_int_equal(q->nrep, 4);
    assert_int_equal(q->ntarget, 3);
    assert_int_equal(q->nisr, 3);
    assert_int_equal(q->epoch, 1);
    uint8_t snap[65536];
    size_t n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(snap[4], 5);
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_fsm_equal(&f, &g);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(rn_fsm_snapshot_decode(&g, snap, k, err), RN_ECORRUPT);
    rn_fsm_cmd_t in4 = leader("rt", 0, 1, 1, 1, isr4, 4);  /* node 4 caught up */
    assert_int_equal(rn_fsm_apply(&f, &in4, err), 0);
    assert_int_equal(q->ntarget, 3);                       /* an ISR change keeps the target */
    rn_fsm_cmd_t done = replicas_cmd("rt", 0, 1, 2, 2, tg, 3, NULL, 0);
    assert_int_equal(rn_fsm_apply(&f, &done, err), 0);
    assert_int_equal(q->leader, 2);
    assert_int_equal(q->epoch, 2);
    assert_int_equal(q->nrep, 3);
    assert_int_equal(q->ntarget, 0);
    assert_int_equal(q->nisr, 3);
    for (uint32_t i = 0; i < q->nisr; i++) assert_int_not_equal(q->isr[i], 1);
    n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(snap[4], 2);                          /* nothing pending: as before */
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_fsm_equal(&f, &g);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
}

/* GROW (topic alter): round trip and every truncation; a topic of 2 queues
 * grown to 5 (the old queues unchanged, the new at epoch 1, ISR = replicas);
 * a stale or shrinking grow, a bad replica set, an unknown topic refused
 * with the state unchanged; the grown state's snapshot round trips. */
static void test_grow_cmd(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c = topic("gt", 5, 3, 0);                 /* placements of queues 0..4 */
    c.type = RN_FSM_GROW;
    c.queue = 2;                                           /* grows from 2 */
    memmove(&c.q[0], &c.q[2], 3 * sizeof c.q[0]);
    memset(&c.q[3], 0, 2 * sizeof c.q[0]);
    uint8_t buf[RN_FSM_CMD_MAX];
    size_t len = 0;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
    assert_int_equal(len % 8, 0);
    rn_fsm_cmd_t d;
    assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
    assert_memory_equal(&c, &d, sizeof c);
    size_t body = 2 + 8 + 8 + 2 + 2 + 4 + 4 + 3 * (8 + 1 + 3 * 8);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(rn_fsm_cmd_decode(buf, n, &d, err), n >= body ? 0 : RN_ECORRUPT);

    rn_fsm_t f, g;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    rn_fsm_cmd_t t = topic("gt", 2, 3, 0);
    assert_int_equal(rn_fsm_apply(&f, &t, err), 0);
    rn_fsm_pq_t old[2];
    memcpy(old, f.topics[0].q, sizeof old);
    rn_fsm_cmd_t stale = c, unknown = c, badrep = c;
    stale.queue = 1;
    snprintf(unknown.topic, sizeof unknown.topic, "nope");
    badrep.q[1].replicas[1] = badrep.q[1].replicas[0];     /* a replica twice */
    rn_fsm_cmd_t bads[] = {stale, unknown, badrep};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rn_fsm_apply(&f, &bads[i], err), RN_EINVAL);
        assert_int_equal(f.topics[0].nqueues, 2);
    }
    uint64_t gen = f.topics_gen;
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_true(f.topics_gen > gen);
    assert_int_equal(f.topics[0].nqueues, 5);
    assert_memory_equal(f.topics[0].q, old, sizeof old);
    for (uint32_t k = 2; k < 5; k++) {
        const rn_fsm_pq_t *q = &f.topics[0].q[k];
        assert_int_equal(q->epoch, 1);
        assert_int_equal(q->nisr, q->nrep);
        assert_memory_equal(q->isr, q->replicas, q->nrep * sizeof q->isr[0]);
        assert_int_equal(q->leader, c.q[k - 2].leader);
    }
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL); /* again: stale */
    uint8_t snap[65536];
    size_t n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_fsm_equal(&f, &g);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
}

/* DROP (topic delete): round trip and every truncation; the topic and its
 * group offsets leave, its name becomes a tombstone (snapshot version 6,
 * round trip and every truncation), kept when the name is made again; an
 * unknown name refused; the tombstones keep the last RN_FSM_MAX_TOMBS. */
static void test_drop_cmd(void **state)
{
    (void)state;
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c;
    memset(&c, 0, sizeof c);
    c.type = RN_FSM_DROP;
    c.at_ms = 1234;
    snprintf(c.topic, sizeof c.topic, "dt");
    uint8_t buf[RN_FSM_CMD_MAX];
    size_t len = 0;
    assert_int_equal(rn_fsm_cmd_encode(&c, buf, &len), 0);
    assert_int_equal(len % 8, 0);
    rn_fsm_cmd_t d;
    assert_int_equal(rn_fsm_cmd_decode(buf, len, &d, err), 0);
    assert_memory_equal(&c, &d, sizeof c);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(rn_fsm_cmd_decode(buf, n, &d, err),
                         n >= 2 + 8 + 8 + 2 + 2 ? 0 : RN_ECORRUPT);

    rn_fsm_t f, g;
    rn_fsm_init(&f);
    rn_fsm_init(&g);
    assert_int_equal(rn_fsm_apply(&f, &c, err), RN_EINVAL);     /* no such topic */
    rn_fsm_cmd_t t = topic("dt", 2, 3, 0), k = topic("keep", 1, 3, 0);
    assert_int_equal(rn_fsm_apply(&f, &t, err), 0);
    assert_int_equal(rn_fsm_apply(&f, &k, err), 0);
    rn_fsm_goff_t o[2] = {goff("g", "dt", 1, 5), goff("g", "keep", 0, 7)};
    assert_int_equal(rn_fsm_offsets_apply(&f, o, 2, err), 0);
    assert_int_equal(rn_fsm_apply(&f, &c, err), 0);
    assert_null(rn_fsm_topic_find(&f, "dt"));
    assert_non_null(rn_fsm_topic_find(&f, "keep"));
    assert_int_equal(f.ngoffs, 1);
    assert_string_equal(f.goffs[0].topic, "keep");
    assert_int_equal(f.ntombs, 1);
    assert_string_equal(f.tombs[0].name, "dt");
    assert_int_equal(f.tombs[0].at_ms, 1234);
    uint8_t snap[65536];
    size_t n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(snap[4], 6);
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_fsm_equal(&f, &g);
    assert_int_equal(g.ntombs, 1);
    assert_memory_equal(g.tombs, f.tombs, sizeof f.tombs[0]);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rn_fsm_snapshot_decode(&g, snap, i, err), RN_ECORRUPT);
    assert_int_equal(rn_fsm_apply(&f, &t, err), 0);               /* made again */
    assert_int_equal(f.ntombs, 1);                  /* kept: copies made before it go */
    n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_fsm_equal(&f, &g);
    for (int i = 0; i < RN_FSM_MAX_TOMBS + 3; i++) {                /* the last ones kept */
        rn_fsm_cmd_t ti = topic("x", 1, 3, 0), di = c;
        snprintf(ti.topic, sizeof ti.topic, "t%03d", i);
        snprintf(di.topic, sizeof di.topic, "t%03d", i);
        di.at_ms = i;
        assert_int_equal(rn_fsm_apply(&f, &ti, err), 0);
        assert_int_equal(rn_fsm_apply(&f, &di, err), 0);
    }
    assert_int_equal(f.ntombs, RN_FSM_MAX_TOMBS);
    assert_string_equal(f.tombs[0].name, "t003");
    assert_string_equal(f.tombs[RN_FSM_MAX_TOMBS - 1].name, "t066");
    n = rn_fsm_snapshot_encode(&f, snap);
    assert_int_equal(rn_fsm_snapshot_decode(&g, snap, n, err), 0);
    assert_int_equal(g.ntombs, RN_FSM_MAX_TOMBS);
    assert_memory_equal(g.tombs, f.tombs, sizeof f.tombs);
    rn_fsm_free(&f);
    rn_fsm_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_roundtrip),
        cmocka_unit_test(test_cmd_refused),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_topic_cmd_roundtrip),
        cmocka_unit_test(test_topic_apply),
        cmocka_unit_test(test_topic_snapshot),
        cmocka_unit_test(test_offsets_cmd_roundtrip),
        cmocka_unit_test(test_offsets_apply),
        cmocka_unit_test(test_offsets_snapshot),
        cmocka_unit_test(test_kafka_addr),
        cmocka_unit_test(test_replicas_cmd),
        cmocka_unit_test(test_grow_cmd),
        cmocka_unit_test(test_drop_cmd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

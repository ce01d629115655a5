/*
 * fuzz_cluster_cmd.c — libFuzzer target for the controller's codecs
 * (cluster/fsm.h), which read what the raft log and snapshots hold. The
 * input goes to both decoders:
 *  1. the command decoder: on success the command re-encodes to a multiple
 *     of 8 bytes that decodes to the same command, and applying it to a
 *     small state keeps the state's invariants (ascending unique ids, at
 *     most RN_CLUSTER_MAX_NODES);
 *  2. the snapshot decoder: on success the state re-encodes to exactly the
 *     input (one encoding per state); on failure the state is unchanged;
 *  3. the OFFSETS decoder: on success the offsets re-encode to a multiple of
 *     8 bytes that decodes to the same offsets, and applying them to a state
 *     with one topic keeps its offsets sorted, unique and on its queues.
 * Any violation calls abort().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/fsm.h"
#include "common/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_state(const rn_fsm_t *f)
{
    if (f->n > RN_CLUSTER_MAX_NODES) abort();
    for (size_t i = 0; i < f->n; i++) {
        if (i > 0 && f->nodes[i - 1].id >= f->nodes[i].id) abort();
        if (strnlen(f->nodes[i].client, RN_CLUSTER_ADDR_MAX) >= RN_CLUSTER_ADDR_MAX) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[RN_ERRMSG_SIZE];
    rn_fsm_cmd_t c, d;
    if (rn_fsm_cmd_decode(data, size, &c, err) == 0) {
        uint8_t buf[RN_FSM_CMD_MAX];
        size_t len;
        if (rn_fsm_cmd_encode(&c, buf, &len) != 0 || len % 8 != 0) abort();
        if (rn_fsm_cmd_decode(buf, len, &d, err) != 0) abort();
        if (d.type != c.type || d.id != c.id || d.start_id != c.start_id ||
            d.at_ms != c.at_ms || strcmp(d.client, c.client) != 0 ||
            strcmp(d.topic, c.topic) != 0 || d.nqueues != c.nqueues || d.queue != c.queue ||
            d.prev_epoch != c.prev_epoch || d.epoch != c.epoch)
            abort();
        rn_fsm_t f;
        rn_fsm_init(&f);
        for (int i = 0; i < 3; i++) {
            rn_fsm_apply(&f, &c, err);
            check_state(&f);
        }
        rn_fsm_free(&f);
    }
    rn_fsm_goff_t *v = NULL, *w = NULL;
    size_t nv = 0, nw = 0;
    if (rn_fsm_offsets_decode(data, size, &v, &nv, err) == 0) {
        size_t len = rn_fsm_offsets_bound(v, nv);
        uint8_t *buf = malloc(len);
        if (!buf || rn_fsm_offsets_encode(v, nv, buf, &len) != 0 || len % 8 != 0) abort();
        if (rn_fsm_offsets_decode(buf, len, &w, &nw, err) != 0 || nw != nv) abort();
        for (size_t i = 0; i < nv; i++)
            if (strcmp(v[i].group, w[i].group) || strcmp(v[i].topic, w[i].topic) ||
                v[i].queue != w[i].queue || v[i].offset != w[i].offset)
                abort();
        rn_fsm_t f;
        rn_fsm_init(&f);
        rn_fsm_cmd_t t;
        memset(&t, 0, sizeof t);
        t.type = RN_FSM_TOPIC;
        memcpy(t.topic, "t", 2);
        t.nqueues = 4;
        for (int k = 0; k < 4; k++) {
            t.q[k].nrep = 1;
            t.q[k].replicas[0] = t.q[k].leader = 1;
        }
        if (rn_fsm_apply(&f, &t, err) != 0) abort();
        rn_fsm_offsets_apply(&f, v, nv, err);
        for (size_t i = 0; i < f.ngoffs; i++) {
            const rn_fsm_goff_t *a = &f.goffs[i];
            if (strcmp(a->topic, "t") || a->queue >= 4 || a->offset < 0) abort();
            if (i > 0 && strcmp(f.goffs[i - 1].group, a->group) == 0 &&
                f.goffs[i - 1].queue >= a->queue)
                abort();
            if (i > 0 && strcmp(f.goffs[i - 1].group, a->group) > 0) abort();
        }
        rn_fsm_free(&f);
        free(buf);
    }
    free(v);
    free(w);
    static rn_fsm_t s, before;
    rn_fsm_free(&s);
    s.n = 1;
    s.nodes[0].id = 7;
    before = s;
    if (rn_fsm_snapshot_decode(&s, data, size, err) == 0) {
        check_state(&s);
        uint8_t *out = malloc(rn_fsm_snapshot_bound(&s));
        if (!out) abort();
        size_t n = rn_fsm_snapshot_encode(&s, out);
        if (n != size || memcmp(out, data, size) != 0) abort();
        free(out);
    } else if (memcmp(&s, &before, sizeof s) != 0) {
        abort();
    }
    return 0;
}

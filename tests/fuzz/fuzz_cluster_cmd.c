/*
 * fuzz_cluster_cmd.c — libFuzzer target for the controller's codecs
 * (cluster/fsm.h), which read what the raft log and snapshots hold. The
 * input goes to both decoders:
 *  1. the command decoder: on success the command re-encodes to a multiple
 *     of 8 bytes that decodes to the same command, and applying it to a
 *     small state keeps the state's invariants (ascending unique ids, at
 *     most RN_CLUSTER_MAX_NODES);
 *  2. the snapshot decoder: on success the state re-encodes to exactly the
 *     input (one encoding per state); on failure the state is unchanged.
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

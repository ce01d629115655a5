/*
 * fsm.c — the controller's replicated state (cluster/fsm.h).
 *
 * Invariants:
 *  1. f->nodes is sorted by id, ids unique, f->n <= RN_CLUSTER_MAX_NODES;
 *     every client address is NUL-terminated and shorter than
 *     RN_CLUSTER_ADDR_MAX.
 *  2. rn_fsm_apply depends only on the state and the command (the leader's
 *     clock travels inside the command as at_ms), so replicas agree.
 *  3. A node's incarnation grows by one exactly when a REGISTER carries a
 *     start id different from the node's last one; a REGISTER repeated with
 *     the same start id (a leader re-proposing after a change of leader)
 *     changes at most the address and liveness.
 *  4. Decoders check every length against the bytes present before reading;
 *     a failed decode leaves the state as it was.
 *  5. An encoded command is a multiple of 8 bytes (zero padding), as
 *     libraft 0.15's segment files need (fsm.h); the decoder accepts 0 to 7
 *     trailing zero bytes after the fields and nothing else.
 */
#include "cluster/fsm.h"

#include "common/bytes.h"
#include "common/error.h"

#include <stdio.h>
#include <string.h>

static const uint8_t snap_magic[4] = {'R', 'N', 'C', 'S'};
#define SNAP_VERSION 1
#define SNAP_NODE_FIXED (8 + 8 + 8 + 1 + 8 + 2)

void rn_fsm_init(rn_fsm_t *f) { memset(f, 0, sizeof *f); }

int rn_fsm_cmd_encode(const rn_fsm_cmd_t *c, uint8_t *out, size_t *len)
{
    uint8_t *p = out;
    *p++ = RN_FSM_CMD_VERSION;
    *p++ = (uint8_t)c->type;
    rn_be64_put(p, c->id); p += 8;
    if (c->type == RN_FSM_REGISTER) {
        size_t n = strnlen(c->client, RN_CLUSTER_ADDR_MAX);
        if (n >= RN_CLUSTER_ADDR_MAX) return RN_EINVAL;
        rn_be64_put(p, c->start_id); p += 8;
        rn_be64_put(p, (uint64_t)c->at_ms); p += 8;
        rn_be16_put(p, (uint16_t)n); p += 2;
        memcpy(p, c->client, n); p += n;
    } else if (c->type == RN_FSM_FENCE) {
        rn_be64_put(p, (uint64_t)c->at_ms); p += 8;
    } else {
        return RN_EINVAL;
    }
    while ((p - out) % 8) *p++ = 0;                                 /* invariant 5 */
    *len = (size_t)(p - out);
    return 0;
}

/* 1 when p[0..n) is 0 to 7 zero bytes. */
static int is_padding(const uint8_t *p, size_t n)
{
    if (n > 7) return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int rn_fsm_cmd_decode(const uint8_t *p, size_t n, rn_fsm_cmd_t *c, char *errmsg)
{
    memset(c, 0, sizeof *c);
    if (n < 2 + 8) return rn_errf(errmsg, RN_ECORRUPT, "controller command of %zu bytes: "
                                  "too short for its header", n);
    if (p[0] != RN_FSM_CMD_VERSION)
        return rn_errf(errmsg, RN_ECORRUPT, "controller command version %u: this runneld "
                       "reads version %d only (a newer runneld wrote it?)", p[0],
                       RN_FSM_CMD_VERSION);
    c->type = (rn_fsm_cmd_type_t)p[1];
    c->id = rn_be64_get(p + 2);
    const uint8_t *q = p + 10, *end = p + n;
    switch (p[1]) {
    case RN_FSM_REGISTER: {
        if (end - q < 8 + 8 + 2) break;
        c->start_id = rn_be64_get(q);
        c->at_ms = (int64_t)rn_be64_get(q + 8);
        size_t len = rn_be16_get(q + 16);
        q += 18;
        if (len >= RN_CLUSTER_ADDR_MAX || (size_t)(end - q) < len || memchr(q, '\0', len))
            break;
        memcpy(c->client, q, len);
        c->client[len] = '\0';
        q += len;
        if (!is_padding(q, (size_t)(end - q))) break;                 /* invariant 5 */
        return 0;
    }
    case RN_FSM_FENCE:
        if (end - q < 8) break;
        c->at_ms = (int64_t)rn_be64_get(q);
        if (!is_padding(q + 8, (size_t)(end - q - 8))) break;
        return 0;
    default:
        return rn_errf(errmsg, RN_ECORRUPT, "controller command type %u unknown to this runneld "
                       "(known: 1 register, 2 fence)", p[1]);
    }
    return rn_errf(errmsg, RN_ECORRUPT, "controller command type %u: %zu bytes do not hold "
                   "its fields", p[1], n);
}

/* Index of id in f->nodes, or -(insertion point) - 1. */
static long find_index(const rn_fsm_t *f, uint64_t id)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->nodes[mid].id == id) return (long)mid;
        if (f->nodes[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return -(long)lo - 1;
}

const rn_fsm_node_t *rn_fsm_find(const rn_fsm_t *f, uint64_t id)
{
    long i = find_index(f, id);
    return i >= 0 ? &f->nodes[i] : NULL;
}

int rn_fsm_apply(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = find_index(f, c->id);
    if (c->type == RN_FSM_FENCE) {
        if (i >= 0 && f->nodes[i].live) {
            f->nodes[i].live = 0;
            f->nodes[i].live_changed_ms = c->at_ms;
        }
        return 0;
    }
    if (c->type != RN_FSM_REGISTER)
        return rn_errf(errmsg, RN_EINVAL, "controller command type %d unknown", (int)c->type);
    rn_fsm_node_t *nd;
    if (i < 0) {
        if (f->n >= RN_CLUSTER_MAX_NODES)
            return rn_errf(errmsg, RN_EFULL, "node %llu cannot register: the controller "
                           "already knows %d nodes, its limit", (unsigned long long)c->id,
                           RN_CLUSTER_MAX_NODES);
        size_t at = (size_t)(-i - 1);
        memmove(&f->nodes[at + 1], &f->nodes[at], (f->n - at) * sizeof f->nodes[0]);
        f->n++;
        nd = &f->nodes[at];
        memset(nd, 0, sizeof *nd);
        nd->id = c->id;
    } else {
        nd = &f->nodes[i];
    }
    if (nd->incarnation == 0 || nd->start_id != c->start_id) {     /* invariant 3 */
        nd->incarnation++;
        nd->start_id = c->start_id;
    }
    snprintf(nd->client, sizeof nd->client, "%s", c->client);
    if (!nd->live) {
        nd->live = 1;
        nd->live_changed_ms = c->at_ms;
    }
    return 0;
}

size_t rn_fsm_snapshot_bound(const rn_fsm_t *f)
{
    return 4 + 1 + 4 + f->n * (SNAP_NODE_FIXED + RN_CLUSTER_ADDR_MAX);
}

size_t rn_fsm_snapshot_encode(const rn_fsm_t *f, uint8_t *out)
{
    uint8_t *p = out;
    memcpy(p, snap_magic, 4); p += 4;
    *p++ = SNAP_VERSION;
    rn_be32_put(p, (uint32_t)f->n); p += 4;
    for (size_t i = 0; i < f->n; i++) {
        const rn_fsm_node_t *nd = &f->nodes[i];
        size_t len = strlen(nd->client);
        rn_be64_put(p, nd->id); p += 8;
        rn_be64_put(p, nd->start_id); p += 8;
        rn_be64_put(p, nd->incarnation); p += 8;
        *p++ = (uint8_t)(nd->live ? 1 : 0);
        rn_be64_put(p, (uint64_t)nd->live_changed_ms); p += 8;
        rn_be16_put(p, (uint16_t)len); p += 2;
        memcpy(p, nd->client, len); p += len;
    }
    return (size_t)(p - out);
}

int rn_fsm_snapshot_decode(rn_fsm_t *f, const uint8_t *p, size_t n, char *errmsg)
{
    const uint8_t *end = p + n;
    if (n < 9 || memcmp(p, snap_magic, 4) != 0)
        return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot: no RNCS header");
    if (p[4] != SNAP_VERSION)
        return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot version %u: this runneld "
                       "reads version %d only", p[4], SNAP_VERSION);
    uint32_t cnt = rn_be32_get(p + 5);
    if (cnt > RN_CLUSTER_MAX_NODES)
        return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot: %u nodes, more than the "
                       "limit %d", cnt, RN_CLUSTER_MAX_NODES);
    p += 9;
    rn_fsm_t nf;
    rn_fsm_init(&nf);
    for (uint32_t i = 0; i < cnt; i++) {
        if (end - p < SNAP_NODE_FIXED) goto bad;
        rn_fsm_node_t *nd = &nf.nodes[i];
        nd->id = rn_be64_get(p);
        nd->start_id = rn_be64_get(p + 8);
        nd->incarnation = rn_be64_get(p + 16);
        if (p[24] > 1) goto bad;
        nd->live = p[24];
        nd->live_changed_ms = (int64_t)rn_be64_get(p + 25);
        size_t len = rn_be16_get(p + 33);
        p += SNAP_NODE_FIXED;
        if (len >= RN_CLUSTER_ADDR_MAX || (size_t)(end - p) < len || memchr(p, '\0', len))
            goto bad;
        memcpy(nd->client, p, len);
        nd->client[len] = '\0';
        p += len;
        if (i > 0 && nf.nodes[i - 1].id >= nd->id) goto bad;      /* invariant 1 */
        nf.n = i + 1;
    }
    if (p != end) goto bad;
    *f = nf;
    return 0;
bad:
    return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot: node records do not check "
                   "(lengths, order or flags)");
}

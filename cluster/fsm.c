/*
 * fsm.c — the controller's replicated state (cluster/fsm.h).
 *
 * Invariants:
 *  1. f->nodes is sorted by id, ids unique, f->n <= RN_CLUSTER_MAX_NODES;
 *     every client and Kafka address is NUL-terminated and shorter than
 *     RN_CLUSTER_ADDR_MAX (a Kafka address is zero bytes past its NUL).
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
 *  6. f->topics is sorted by name, names unique, each queue as rn_fsm_pq_t
 *     says (replicas distinct, leader among them or 0, ISR within them);
 *     commands that would break this are refused whole, and so are
 *     snapshots (check_pq).
 *  7. topics_gen changes whenever topics change (readers copy on change);
 *     it is local, never encoded.
 *  8. f->goffs is sorted by (group, topic, queue), keys unique, each on a
 *     queue of a topic of f->topics, offset >= 0, at most RN_FSM_MAX_GOFFS;
 *     an OFFSETS command or a snapshot that would break this is refused
 *     whole.
 */
#include "cluster/fsm.h"

#include "common/bytes.h"
#include "common/error.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t snap_magic[4] = {'R', 'N', 'C', 'S'};
#define SNAP_VERSION 6        /* 1: nodes only; 2: nodes and topics; 3: and group
                                 offsets; 4: with Kafka addresses; 5: and
                                 reassignment targets; 6: and tombstones (fsm.h) */
#define SNAP_NODE_FIXED (8 + 8 + 8 + 1 + 8 + 2)

void rn_fsm_init(rn_fsm_t *f) { memset(f, 0, sizeof *f); }

void rn_fsm_topics_free(rn_fsm_topic_t *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++) free(t[i].q);
    free(t);
}

void rn_fsm_free(rn_fsm_t *f)
{
    rn_fsm_topics_free(f->topics, f->ntopics);
    free(f->goffs);
    rn_fsm_init(f);
}

rn_fsm_topic_t *rn_fsm_topics_copy(const rn_fsm_topic_t *t, size_t n, int *ok)
{
    *ok = 1;
    if (n == 0) return NULL;
    rn_fsm_topic_t *c = calloc(n, sizeof *c);
    if (!c) { *ok = 0; return NULL; }
    for (size_t i = 0; i < n; i++) {
        c[i] = t[i];
        c[i].q = malloc(t[i].nqueues * sizeof *c[i].q);
        if (!c[i].q) {
            rn_fsm_topics_free(c, i);
            *ok = 0;
            return NULL;
        }
        memcpy(c[i].q, t[i].q, t[i].nqueues * sizeof *c[i].q);
    }
    return c;
}

int rn_fsm_has(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

/* Invariant 6 for one queue; with_epoch: epoch >= 1 too. */
static int check_pq(const rn_fsm_pq_t *q)
{
    if (q->nrep < 1 || q->nrep > RN_CLUSTER_MAX_NODES || q->nisr > q->nrep) return 0;
    for (uint32_t i = 0; i < q->nrep; i++)
        if (q->replicas[i] == 0 || rn_fsm_has(q->replicas, i, q->replicas[i])) return 0;
    for (uint32_t i = 0; i < q->nisr; i++)
        if (!rn_fsm_has(q->replicas, q->nrep, q->isr[i]) || rn_fsm_has(q->isr, i, q->isr[i]))
            return 0;
    if (q->leader && (!rn_fsm_has(q->replicas, q->nrep, q->leader) ||
                      !rn_fsm_has(q->isr, q->nisr, q->leader)))
        return 0;
    if (q->ntarget > q->nrep) return 0;
    for (uint32_t i = 0; i < q->ntarget; i++)
        if (!rn_fsm_has(q->replicas, q->nrep, q->target[i]) ||
            rn_fsm_has(q->target, i, q->target[i]))
            return 0;
    return q->epoch >= 1;
}

/* Index of name in f->topics, or -(insertion point) - 1. */
static long topic_index(const rn_fsm_t *f, const char *name)
{
    size_t lo = 0, hi = f->ntopics;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(f->topics[mid].name, name);
        if (c == 0) return (long)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -(long)lo - 1;
}

const rn_fsm_topic_t *rn_fsm_topic_find(const rn_fsm_t *f, const char *name)
{
    long i = topic_index(f, name);
    return i >= 0 ? &f->topics[i] : NULL;
}

/* A name of 1..RN_FSM_TOPIC_MAX-1 bytes without NUL: put / get. */
static uint8_t *put_name(uint8_t *p, const char *name)
{
    size_t n = strlen(name);
    rn_be16_put(p, (uint16_t)n);
    memcpy(p + 2, name, n);
    return p + 2 + n;
}

static const uint8_t *get_name(const uint8_t *q, const uint8_t *end, char *name)
{
    if (end - q < 2) return NULL;
    size_t len = rn_be16_get(q);
    q += 2;
    if (len == 0 || len >= RN_FSM_TOPIC_MAX || (size_t)(end - q) < len || memchr(q, '\0', len))
        return NULL;
    memcpy(name, q, len);
    name[len] = '\0';
    return q + len;
}

static uint8_t *put_ids(uint8_t *p, const uint64_t *ids, uint32_t n)
{
    *p++ = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++, p += 8) rn_be64_put(p, ids[i]);
    return p;
}

static const uint8_t *get_ids(const uint8_t *q, const uint8_t *end, uint64_t *ids, uint32_t *n)
{
    if (end - q < 1) return NULL;
    *n = *q++;
    if (*n > RN_CLUSTER_MAX_NODES || (size_t)(end - q) < *n * 8u) return NULL;
    for (uint32_t i = 0; i < *n; i++, q += 8) ids[i] = rn_be64_get(q);
    return q;
}

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
        size_t k = strnlen(c->kafka, RN_CLUSTER_ADDR_MAX);
        if (k >= RN_CLUSTER_ADDR_MAX) return RN_EINVAL;
        if (k) {                              /* the optional trailing field (fsm.h) */
            rn_be16_put(p, (uint16_t)k); p += 2;
            memcpy(p, c->kafka, k); p += k;
        }
    } else if (c->type == RN_FSM_FENCE) {
        rn_be64_put(p, (uint64_t)c->at_ms); p += 8;
    } else if (c->type == RN_FSM_TOPIC || c->type == RN_FSM_LEADER ||
               c->type == RN_FSM_REPLICAS || c->type == RN_FSM_GROW || c->type == RN_FSM_DROP) {
        size_t n = strnlen(c->topic, RN_FSM_TOPIC_MAX);
        if (n == 0 || n >= RN_FSM_TOPIC_MAX) return RN_EINVAL;
        rn_be64_put(p, (uint64_t)c->at_ms); p += 8;
        p = put_name(p, c->topic);
        if (c->type == RN_FSM_DROP) {
            /* the name only */
        } else if (c->type == RN_FSM_TOPIC || c->type == RN_FSM_GROW) {
            uint32_t first = c->type == RN_FSM_GROW ? c->queue : 0;
            if (c->nqueues < 1 || c->nqueues > RN_FSM_MAX_QUEUES || first >= c->nqueues)
                return RN_EINVAL;
            if (c->type == RN_FSM_GROW) {
                rn_be32_put(p, first); p += 4;
            }
            rn_be32_put(p, c->nqueues); p += 4;
            for (uint32_t i = 0; i < c->nqueues - first; i++) {
                if (c->q[i].nrep > RN_CLUSTER_MAX_NODES) return RN_EINVAL;
                rn_be64_put(p, c->q[i].leader); p += 8;
                p = put_ids(p, c->q[i].replicas, c->q[i].nrep);
            }
        } else {
            if (c->q[0].nisr > RN_CLUSTER_MAX_NODES || c->q[0].nrep > RN_CLUSTER_MAX_NODES ||
                c->q[0].ntarget > RN_CLUSTER_MAX_NODES)
                return RN_EINVAL;
            rn_be32_put(p, c->queue); p += 4;
            rn_be64_put(p, c->prev_epoch); p += 8;
            rn_be64_put(p, c->epoch); p += 8;
            if (c->type == RN_FSM_LEADER) {
                p = put_ids(p, c->q[0].isr, c->q[0].nisr);
            } else {
                p = put_ids(p, c->q[0].replicas, c->q[0].nrep);
                p = put_ids(p, c->q[0].target, c->q[0].ntarget);
            }
        }
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
        if (!is_padding(q, (size_t)(end - q))) {      /* the Kafka address (fsm.h) */
            if (end - q < 2) break;
            size_t k = rn_be16_get(q);
            q += 2;
            if (k == 0 || k >= RN_CLUSTER_ADDR_MAX || (size_t)(end - q) < k || memchr(q, '\0', k))
                break;
            memcpy(c->kafka, q, k);
            c->kafka[k] = '\0';
            q += k;
        }
        if (!is_padding(q, (size_t)(end - q))) break;                 /* invariant 5 */
        return 0;
    }
    case RN_FSM_FENCE:
        if (end - q < 8) break;
        c->at_ms = (int64_t)rn_be64_get(q);
        if (!is_padding(q + 8, (size_t)(end - q - 8))) break;
        return 0;
    case RN_FSM_TOPIC:
    case RN_FSM_LEADER:
    case RN_FSM_REPLICAS:
    case RN_FSM_GROW:
    case RN_FSM_DROP:
        if (end - q < 8) break;
        c->at_ms = (int64_t)rn_be64_get(q);
        if (!(q = get_name(q + 8, end, c->topic))) break;
        if (p[1] == RN_FSM_DROP) {
            /* the name only */
        } else if (end - q < 4) {
            break;
        } else if (p[1] == RN_FSM_TOPIC || p[1] == RN_FSM_GROW) {
            if (p[1] == RN_FSM_GROW) {
                c->queue = rn_be32_get(q);
                q += 4;
                if (end - q < 4) break;
            }
            c->nqueues = rn_be32_get(q);
            q += 4;
            if (c->nqueues < 1 || c->nqueues > RN_FSM_MAX_QUEUES || c->queue >= c->nqueues)
                break;
            for (uint32_t i = 0; q && i < c->nqueues - c->queue; i++) {
                if (end - q < 8) { q = NULL; break; }
                c->q[i].leader = rn_be64_get(q);
                q = get_ids(q + 8, end, c->q[i].replicas, &c->q[i].nrep);
            }
        } else {
            if (end - q < 4 + 8 + 8) break;
            c->queue = rn_be32_get(q);
            c->prev_epoch = rn_be64_get(q + 4);
            c->epoch = rn_be64_get(q + 12);
            if (p[1] == RN_FSM_LEADER) {
                q = get_ids(q + 20, end, c->q[0].isr, &c->q[0].nisr);
            } else {
                q = get_ids(q + 20, end, c->q[0].replicas, &c->q[0].nrep);
                if (q) q = get_ids(q, end, c->q[0].target, &c->q[0].ntarget);
            }
        }
        if (!q || !is_padding(q, (size_t)(end - q))) break;
        return 0;
    default:
        return rn_errf(errmsg, RN_ECORRUPT, "controller command type %u unknown to this runneld "
                       "(known: 1 register, 2 fence, 3 topic, 4 leader, 5 offsets, 6 replicas, "
                       "7 grow, 8 drop)", p[1]);
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

/* The name leaves the tombstones (deleted again: its newer time goes at
 * the end). */
static void tomb_remove(rn_fsm_t *f, const char *name)
{
    size_t n = 0;
    for (size_t k = 0; k < f->ntombs; k++)
        if (strcmp(f->tombs[k].name, name)) f->tombs[n++] = f->tombs[k];
    for (size_t k = n; k < f->ntombs; k++) memset(&f->tombs[k], 0, sizeof f->tombs[k]);
    f->ntombs = n;
}

static int apply_topic(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = topic_index(f, c->topic);
    if (i >= 0)
        return rn_errf(errmsg, RN_EEXIST, "topic '%s' exists in the cluster", c->topic);
    if (f->ntopics >= RN_FSM_MAX_TOPICS)
        return rn_errf(errmsg, RN_EFULL, "the cluster holds %d topics, its limit",
                       RN_FSM_MAX_TOPICS);
    if (c->nqueues < 1 || c->nqueues > RN_FSM_MAX_QUEUES)
        return rn_errf(errmsg, RN_EINVAL, "a replicated topic has 1..%d queues, not %u",
                       RN_FSM_MAX_QUEUES, c->nqueues);
    rn_fsm_pq_t *q = calloc(c->nqueues, sizeof *q);
    if (!q) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (uint32_t k = 0; k < c->nqueues; k++) {
        q[k].leader = c->q[k].leader;
        q[k].epoch = 1;
        q[k].nrep = q[k].nisr = c->q[k].nrep;
        memcpy(q[k].replicas, c->q[k].replicas, sizeof q[k].replicas);
        memcpy(q[k].isr, c->q[k].replicas, sizeof q[k].isr);
        if (!check_pq(&q[k]) || !q[k].leader) {
            free(q);
            return rn_errf(errmsg, RN_EINVAL, "topic '%s' queue %u: the replica set or leader "
                           "does not check", c->topic, k);
        }
    }
    rn_fsm_topic_t *nt = realloc(f->topics, (f->ntopics + 1) * sizeof *nt);
    if (!nt) {
        free(q);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    f->topics = nt;
    size_t at = (size_t)(-i - 1);
    memmove(&nt[at + 1], &nt[at], (f->ntopics - at) * sizeof nt[0]);
    f->ntopics++;
    memset(&nt[at], 0, sizeof nt[at]);
    snprintf(nt[at].name, sizeof nt[at].name, "%s", c->topic);
    nt[at].nqueues = c->nqueues;
    nt[at].q = q;
    f->topics_gen++;                                               /* invariant 7 */
    return 0;
}

static int apply_leader(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = topic_index(f, c->topic);
    if (i < 0 || c->queue >= f->topics[i].nqueues)
        return rn_errf(errmsg, RN_EINVAL, "leader change of unknown queue '%s'/%u", c->topic,
                       c->queue);
    rn_fsm_pq_t *q = &f->topics[i].q[c->queue];
    if (q->epoch != c->prev_epoch)
        return rn_errf(errmsg, RN_EINVAL, "leader change of '%s'/%u proposed at epoch %llu; the "
                       "queue is at epoch %llu (stale, ignored)", c->topic, c->queue,
                       (unsigned long long)c->prev_epoch, (unsigned long long)q->epoch);
    rn_fsm_pq_t n = *q;
    n.leader = c->id;
    n.epoch = c->epoch;
    n.nisr = c->q[0].nisr;
    memcpy(n.isr, c->q[0].isr, sizeof n.isr);
    int epoch_ok = c->id == q->leader ? c->epoch == q->epoch : c->epoch == q->epoch + 1;
    if (!epoch_ok || !check_pq(&n))
        return rn_errf(errmsg, RN_EINVAL, "leader change of '%s'/%u: leader, epoch or ISR do "
                       "not check", c->topic, c->queue);
    *q = n;
    assert(check_pq(q));                                           /* invariant 6 */
    f->topics_gen++;
    return 0;
}

/* A topic deleted (fsm.h, DROP): it and its group offsets leave, its name
 * joins the tombstones (the oldest leaves when they are full). */
static int apply_drop(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = topic_index(f, c->topic);
    if (i < 0) return rn_errf(errmsg, RN_EINVAL, "deleting unknown topic '%s'", c->topic);
    free(f->topics[i].q);
    memmove(&f->topics[i], &f->topics[i + 1], (f->ntopics - (size_t)i - 1) * sizeof f->topics[0]);
    f->ntopics--;
    size_t n = 0;
    for (size_t k = 0; k < f->ngoffs; k++)
        if (strcmp(f->goffs[k].topic, c->topic)) f->goffs[n++] = f->goffs[k];
    f->ngoffs = n;
    tomb_remove(f, c->topic);
    if (f->ntombs == RN_FSM_MAX_TOMBS) {
        memmove(&f->tombs[0], &f->tombs[1], (RN_FSM_MAX_TOMBS - 1) * sizeof f->tombs[0]);
        f->ntombs--;
    }
    snprintf(f->tombs[f->ntombs].name, sizeof f->tombs[0].name, "%s", c->topic);
    f->tombs[f->ntombs++].at_ms = c->at_ms;
    f->topics_gen++;
    return 0;
}

/* More queues for a topic (fsm.h, GROW). */
static int apply_grow(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = topic_index(f, c->topic);
    if (i < 0) return rn_errf(errmsg, RN_EINVAL, "growing unknown topic '%s'", c->topic);
    rn_fsm_topic_t *t = &f->topics[i];
    if (t->nqueues != c->queue || c->nqueues <= c->queue || c->nqueues > RN_FSM_MAX_QUEUES)
        return rn_errf(errmsg, RN_EINVAL, "growing topic '%s' from %u to %u queues: it has %u "
                       "(stale, ignored)", c->topic, c->queue, c->nqueues, t->nqueues);
    rn_fsm_pq_t *q = calloc(c->nqueues, sizeof *q);
    if (!q) return rn_errf(errmsg, -ENOMEM, "out of memory");
    memcpy(q, t->q, t->nqueues * sizeof *q);
    for (uint32_t k = t->nqueues; k < c->nqueues; k++) {
        const rn_fsm_pq_t *in = &c->q[k - t->nqueues];
        q[k].leader = in->leader;
        q[k].epoch = 1;
        q[k].nrep = q[k].nisr = in->nrep;
        memcpy(q[k].replicas, in->replicas, sizeof q[k].replicas);
        memcpy(q[k].isr, in->replicas, sizeof q[k].isr);
        if (!check_pq(&q[k]) || !q[k].leader) {
            free(q);
            return rn_errf(errmsg, RN_EINVAL, "topic '%s' queue %u: the replica set or leader "
                           "does not check", c->topic, k);
        }
    }
    free(t->q);
    t->q = q;
    t->nqueues = c->nqueues;
    f->topics_gen++;
    return 0;
}

/* A reassignment step (fsm.h, REPLICAS): the new replica set and target;
 * the ISR kept within the new replicas; the leader among it. */
static int apply_replicas(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    long i = topic_index(f, c->topic);
    if (i < 0 || c->queue >= f->topics[i].nqueues)
        return rn_errf(errmsg, RN_EINVAL, "reassignment of unknown queue '%s'/%u", c->topic,
                       c->queue);
    rn_fsm_pq_t *q = &f->topics[i].q[c->queue];
    if (q->epoch != c->prev_epoch)
        return rn_errf(errmsg, RN_EINVAL, "reassignment of '%s'/%u proposed at epoch %llu; the "
                       "queue is at epoch %llu (stale, ignored)", c->topic, c->queue,
                       (unsigned long long)c->prev_epoch, (unsigned long long)q->epoch);
    rn_fsm_pq_t n = *q;
    n.nrep = c->q[0].nrep;
    memcpy(n.replicas, c->q[0].replicas, sizeof n.replicas);
    n.ntarget = c->q[0].ntarget;
    memcpy(n.target, c->q[0].target, sizeof n.target);
    n.nisr = 0;
    memset(n.isr, 0, sizeof n.isr);               /* no stale ids past nisr */
    for (uint32_t k = 0; k < q->nisr; k++)
        if (rn_fsm_has(n.replicas, n.nrep, q->isr[k])) n.isr[n.nisr++] = q->isr[k];
    n.leader = c->id;
    n.epoch = c->epoch;
    int epoch_ok = c->id == q->leader ? c->epoch == q->epoch : c->epoch == q->epoch + 1;
    if (!epoch_ok || !c->id || !check_pq(&n))
        return rn_errf(errmsg, RN_EINVAL, "reassignment of '%s'/%u: replicas, target, leader "
                       "(in the ISR) or epoch do not check", c->topic, c->queue);
    *q = n;
    f->topics_gen++;
    return 0;
}

int rn_fsm_apply(rn_fsm_t *f, const rn_fsm_cmd_t *c, char *errmsg)
{
    if (c->type == RN_FSM_TOPIC) return apply_topic(f, c, errmsg);
    if (c->type == RN_FSM_LEADER) return apply_leader(f, c, errmsg);
    if (c->type == RN_FSM_REPLICAS) return apply_replicas(f, c, errmsg);
    if (c->type == RN_FSM_GROW) return apply_grow(f, c, errmsg);
    if (c->type == RN_FSM_DROP) return apply_drop(f, c, errmsg);
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
    memset(nd->kafka, 0, sizeof nd->kafka);        /* no old bytes past the NUL */
    snprintf(nd->kafka, sizeof nd->kafka, "%s", c->kafka);
    if (!nd->live) {
        nd->live = 1;
        nd->live_changed_ms = c->at_ms;
    }
    return 0;
}

/* ---- group offsets (invariant 8) ---------------------------------------------- */

static int goff_cmp(const char *group, const char *topic, uint32_t queue, const rn_fsm_goff_t *o)
{
    int c = strcmp(group, o->group);
    if (c == 0) c = strcmp(topic, o->topic);
    if (c == 0) c = (queue > o->queue) - (queue < o->queue);
    return c;
}

/* Index of the key in f->goffs, or -(insertion point) - 1. */
static long goff_index(const rn_fsm_t *f, const char *group, const char *topic, uint32_t queue)
{
    size_t lo = 0, hi = f->ngoffs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = goff_cmp(group, topic, queue, &f->goffs[mid]);
        if (c == 0) return (long)mid;
        if (c > 0) lo = mid + 1;
        else hi = mid;
    }
    return -(long)lo - 1;
}

const rn_fsm_goff_t *rn_fsm_goff_find(const rn_fsm_t *f, const char *group, const char *topic,
                                      uint32_t queue)
{
    long i = goff_index(f, group, topic, queue);
    return i >= 0 ? &f->goffs[i] : NULL;
}

/* 1 when o names a queue of a topic of f and its offset is >= 0. */
static int goff_valid(const rn_fsm_t *f, const rn_fsm_goff_t *o)
{
    const rn_fsm_topic_t *t = rn_fsm_topic_find(f, o->topic);
    return t && o->queue < t->nqueues && o->offset >= 0 && o->group[0];
}

/* A name fits put_name: 1..RN_FSM_TOPIC_MAX-1 bytes. */
static int name_ok(const char *s)
{
    size_t n = strnlen(s, RN_FSM_TOPIC_MAX);
    return n > 0 && n < RN_FSM_TOPIC_MAX;
}

/* End of the run of offsets of v[i]'s group starting at i. */
static size_t group_run(const rn_fsm_goff_t *v, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && !strcmp(v[j].group, v[i].group)) j++;
    return j;
}

size_t rn_fsm_offsets_bound(const rn_fsm_goff_t *v, size_t n)
{
    size_t b = 2 + 4;
    for (size_t i = 0, e; i < n; i = e) {
        e = group_run(v, n, i);
        b += 2 + strnlen(v[i].group, RN_FSM_TOPIC_MAX) + 4;
        for (size_t j = i; j < e; j++)
            b += 2 + strnlen(v[j].topic, RN_FSM_TOPIC_MAX) + 4 + 8;
    }
    return (b + 7) / 8 * 8;
}

int rn_fsm_offsets_encode(const rn_fsm_goff_t *v, size_t n, uint8_t *out, size_t *len)
{
    if (n == 0 || rn_fsm_offsets_bound(v, n) > RN_FSM_OFFSETS_MAX_BYTES) return RN_EINVAL;
    uint8_t *p = out;
    *p++ = RN_FSM_CMD_VERSION;
    *p++ = RN_FSM_OFFSETS;
    uint8_t *ng = p;
    p += 4;
    uint32_t groups = 0;
    for (size_t i = 0, e; i < n; i = e, groups++) {
        e = group_run(v, n, i);
        if (!name_ok(v[i].group)) return RN_EINVAL;
        p = put_name(p, v[i].group);
        rn_be32_put(p, (uint32_t)(e - i)); p += 4;
        for (size_t j = i; j < e; j++) {
            if (!name_ok(v[j].topic) || v[j].offset < 0) return RN_EINVAL;
            p = put_name(p, v[j].topic);
            rn_be32_put(p, v[j].queue); p += 4;
            rn_be64_put(p, (uint64_t)v[j].offset); p += 8;
        }
    }
    rn_be32_put(ng, groups);
    while ((p - out) % 8) *p++ = 0;                                 /* invariant 5 */
    *len = (size_t)(p - out);
    return 0;
}

int rn_fsm_offsets_decode(const uint8_t *p, size_t len, rn_fsm_goff_t **out, size_t *nout,
                          char *errmsg)
{
    *out = NULL;
    *nout = 0;
    if (len < 6 || len > RN_FSM_OFFSETS_MAX_BYTES || p[0] != RN_FSM_CMD_VERSION ||
        p[1] != RN_FSM_OFFSETS)
        return rn_errf(errmsg, RN_ECORRUPT, "controller offsets command of %zu bytes: not a "
                       "version %d OFFSETS header, or longer than %u bytes", len,
                       RN_FSM_CMD_VERSION, RN_FSM_OFFSETS_MAX_BYTES);
    const uint8_t *q = p + 6, *end = p + len;
    uint32_t groups = rn_be32_get(p + 2);
    /* Every offset takes at least 2 + 1 + 4 + 8 bytes: a bound before malloc. */
    size_t cap = len / 15 + 1, n = 0;
    rn_fsm_goff_t *v = malloc(cap * sizeof *v);
    if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
    char group[RN_FSM_TOPIC_MAX];
    for (uint32_t g = 0; q && g < groups; g++) {
        if (!(q = get_name(q, end, group)) || end - q < 4) { q = NULL; break; }
        uint32_t cnt = rn_be32_get(q);
        q += 4;
        if (cnt == 0 || cnt > cap - n) { q = NULL; break; }
        for (uint32_t k = 0; k < cnt; k++, n++) {
            rn_fsm_goff_t *o = &v[n];
            memcpy(o->group, group, sizeof group);
            if (!(q = get_name(q, end, o->topic)) || end - q < 12) { q = NULL; break; }
            o->queue = rn_be32_get(q);
            o->offset = (int64_t)rn_be64_get(q + 4);
            q += 12;
            if (o->offset < 0) { q = NULL; break; }
        }
    }
    if (!q || groups == 0 || !is_padding(q, (size_t)(end - q))) {
        free(v);
        return rn_errf(errmsg, RN_ECORRUPT, "controller offsets command: %zu bytes do not "
                       "hold its groups, names, queues and offsets (>= 0)", len);
    }
    *out = v;
    *nout = n;
    return 0;
}

int rn_fsm_offsets_apply(rn_fsm_t *f, const rn_fsm_goff_t *v, size_t n, char *errmsg)
{
    size_t fresh = 0;
    for (size_t i = 0; i < n; i++) {
        if (!goff_valid(f, &v[i]))
            return rn_errf(errmsg, RN_EINVAL, "group '%s': offset %lld on '%s'/%u: not a queue "
                           "of a replicated topic, or negative", v[i].group,
                           (long long)v[i].offset, v[i].topic, v[i].queue);
        if (goff_index(f, v[i].group, v[i].topic, v[i].queue) < 0) fresh++;
    }
    /* fresh counts a key v repeats more than once: exact (quadratic) only
     * when that upper bound passes the limit. */
    if (f->ngoffs + fresh > RN_FSM_MAX_GOFFS) {
        fresh = 0;
        for (size_t i = 0; i < n; i++) {
            int again = 0;
            for (size_t j = 0; j < i && !again; j++)
                again = !goff_cmp(v[i].group, v[i].topic, v[i].queue, &v[j]);
            if (!again && goff_index(f, v[i].group, v[i].topic, v[i].queue) < 0) fresh++;
        }
    }
    if (f->ngoffs + fresh > RN_FSM_MAX_GOFFS)
        return rn_errf(errmsg, RN_EFULL, "the cluster holds %zu group offsets; %zu more would "
                       "pass its limit %d", f->ngoffs, fresh, RN_FSM_MAX_GOFFS);
    if (fresh) {
        rn_fsm_goff_t *g = realloc(f->goffs, (f->ngoffs + fresh) * sizeof *g);
        if (!g) return rn_errf(errmsg, -ENOMEM, "out of memory");
        f->goffs = g;
    }
    for (size_t i = 0; i < n; i++) {
        long at = goff_index(f, v[i].group, v[i].topic, v[i].queue);
        if (at < 0) {
            at = -at - 1;
            memmove(&f->goffs[at + 1], &f->goffs[at], (f->ngoffs - (size_t)at) * sizeof v[0]);
            f->ngoffs++;
            f->goffs[at] = v[i];
        }
        f->goffs[at].offset = v[i].offset;
    }
    return 0;
}

static uint8_t *snap_goffs_put(const rn_fsm_t *f, uint8_t *p)
{
    rn_be32_put(p, (uint32_t)f->ngoffs); p += 4;
    for (size_t i = 0; i < f->ngoffs; i++) {
        p = put_name(p, f->goffs[i].group);
        p = put_name(p, f->goffs[i].topic);
        rn_be32_put(p, f->goffs[i].queue); p += 4;
        rn_be64_put(p, (uint64_t)f->goffs[i].offset); p += 8;
    }
    return p;
}

/* The offsets part of a version 3 or 4 snapshot into nf, whose topics are
 * read (invariant 8): at least one offset in version 3, any number (none
 * too) when allow_none; NULL when it does not check. */
static const uint8_t *snap_goffs_get(const uint8_t *p, const uint8_t *end, rn_fsm_t *nf,
                                     int allow_none)
{
    if (end - p < 4) return NULL;
    uint32_t cnt = rn_be32_get(p);
    p += 4;
    if (cnt == 0 && allow_none) return p;
    if (cnt < 1 || cnt > RN_FSM_MAX_GOFFS || (size_t)(end - p) / 15 < cnt) return NULL;
    nf->goffs = calloc(cnt, sizeof *nf->goffs);
    if (!nf->goffs) return NULL;
    for (uint32_t i = 0; i < cnt; i++) {
        rn_fsm_goff_t *o = &nf->goffs[i];
        if (!(p = get_name(p, end, o->group)) || !(p = get_name(p, end, o->topic)) ||
            end - p < 12)
            return NULL;
        o->queue = rn_be32_get(p);
        o->offset = (int64_t)rn_be64_get(p + 4);
        p += 12;
        if (!goff_valid(nf, o)) return NULL;
        if (i > 0 && goff_cmp(o->group, o->topic, o->queue, &nf->goffs[i - 1]) <= 0) return NULL;
        nf->ngoffs = i + 1;
    }
    return p;
}

size_t rn_fsm_snapshot_bound(const rn_fsm_t *f)
{
    size_t b = 4 + 1 + 4 + f->n * (SNAP_NODE_FIXED + 2 * RN_CLUSTER_ADDR_MAX + 2) + 4;
    for (size_t i = 0; i < f->ntopics; i++)
        b += 2 + RN_FSM_TOPIC_MAX + 4 +
             f->topics[i].nqueues * (8 + 8 + 3 + 24 * (size_t)RN_CLUSTER_MAX_NODES);
    return b + 4 + f->ngoffs * (2 + RN_FSM_TOPIC_MAX + 2 + RN_FSM_TOPIC_MAX + 4 + 8) +
           4 + f->ntombs * (2 + RN_FSM_TOPIC_MAX + 8);
}

size_t rn_fsm_snapshot_encode(const rn_fsm_t *f, uint8_t *out)
{
    uint8_t *p = out;
    memcpy(p, snap_magic, 4); p += 4;
    int kafka = 0, moving = 0;
    for (size_t i = 0; i < f->n; i++) kafka |= f->nodes[i].kafka[0] != '\0';
    for (size_t i = 0; i < f->ntopics; i++)
        for (uint32_t k = 0; k < f->topics[i].nqueues; k++) moving |= f->topics[i].q[k].ntarget;
    int version = f->ntombs ? 6 : moving ? 5 : kafka ? 4 : f->ngoffs ? 3 : f->ntopics ? 2 : 1;
    *p++ = (uint8_t)version;
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
        if (version >= 4) {
            size_t k = strlen(nd->kafka);
            rn_be16_put(p, (uint16_t)k); p += 2;
            memcpy(p, nd->kafka, k); p += k;
        }
    }
    if (version >= 3 || f->ntopics) {
        rn_be32_put(p, (uint32_t)f->ntopics); p += 4;
        for (size_t i = 0; i < f->ntopics; i++) {
            const rn_fsm_topic_t *t = &f->topics[i];
            p = put_name(p, t->name);
            rn_be32_put(p, t->nqueues); p += 4;
            for (uint32_t k = 0; k < t->nqueues; k++) {
                rn_be64_put(p, t->q[k].leader); p += 8;
                rn_be64_put(p, t->q[k].epoch); p += 8;
                p = put_ids(p, t->q[k].replicas, t->q[k].nrep);
                p = put_ids(p, t->q[k].isr, t->q[k].nisr);
                if (version >= 5) p = put_ids(p, t->q[k].target, t->q[k].ntarget);
            }
        }
    }
    if (version >= 3) p = snap_goffs_put(f, p);            /* version 4: 0 or more */
    if (version >= 6) {
        rn_be32_put(p, (uint32_t)f->ntombs); p += 4;
        for (size_t i = 0; i < f->ntombs; i++) {
            p = put_name(p, f->tombs[i].name);
            rn_be64_put(p, (uint64_t)f->tombs[i].at_ms); p += 8;
        }
    }
    return (size_t)(p - out);
}

/* The topic part of a version 2 snapshot into nf (invariant 6); NULL when
 * it does not check. */
static const uint8_t *snap_topics(const uint8_t *p, const uint8_t *end, rn_fsm_t *nf,
                                  uint32_t min, int with_target)
{
    if (end - p < 4) return NULL;
    uint32_t cnt = rn_be32_get(p);
    p += 4;
    if (cnt < min || cnt > RN_FSM_MAX_TOPICS) return NULL;
    if (cnt == 0) return p;
    nf->topics = calloc(cnt, sizeof *nf->topics);
    if (!nf->topics) return NULL;
    for (uint32_t i = 0; i < cnt; i++) {
        rn_fsm_topic_t *t = &nf->topics[i];
        if (!(p = get_name(p, end, t->name)) || end - p < 4) return NULL;
        if (i > 0 && strcmp(nf->topics[i - 1].name, t->name) >= 0) return NULL;
        t->nqueues = rn_be32_get(p);
        p += 4;
        if (t->nqueues < 1 || t->nqueues > RN_FSM_MAX_QUEUES) return NULL;
        t->q = calloc(t->nqueues, sizeof *t->q);
        nf->ntopics = i + 1;
        if (!t->q) return NULL;
        for (uint32_t k = 0; k < t->nqueues; k++) {
            rn_fsm_pq_t *q = &t->q[k];
            if (end - p < 16) return NULL;
            q->leader = rn_be64_get(p);
            q->epoch = rn_be64_get(p + 8);
            if (!(p = get_ids(p + 16, end, q->replicas, &q->nrep))) return NULL;
            if (!(p = get_ids(p, end, q->isr, &q->nisr))) return NULL;
            if (with_target && !(p = get_ids(p, end, q->target, &q->ntarget))) return NULL;
            if (!check_pq(q)) return NULL;
        }
    }
    return p;
}

int rn_fsm_snapshot_decode(rn_fsm_t *f, const uint8_t *p, size_t n, char *errmsg)
{
    const uint8_t *end = p + n;
    if (n < 9 || memcmp(p, snap_magic, 4) != 0)
        return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot: no RNCS header");
    if (p[4] < 1 || p[4] > SNAP_VERSION)
        return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot version %u: this runneld "
                       "reads versions 1 to %d only", p[4], SNAP_VERSION);
    int version = p[4];
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
        if (version >= 4) {
            if (end - p < 2) goto bad;
            size_t k = rn_be16_get(p);
            p += 2;
            if (k >= RN_CLUSTER_ADDR_MAX || (size_t)(end - p) < k || memchr(p, '\0', k))
                goto bad;
            memcpy(nd->kafka, p, k);
            nd->kafka[k] = '\0';
            p += k;
        }
        if (i > 0 && nf.nodes[i - 1].id >= nd->id) goto bad;      /* invariant 1 */
        nf.n = i + 1;
    }
    if (version >= 2 && !(p = snap_topics(p, end, &nf, version == 2 ? 1 : 0, version >= 5)))
        goto bad;
    if (version >= 3 && !(p = snap_goffs_get(p, end, &nf, version >= 4))) goto bad;
    if (version >= 6) {
        if (end - p < 4) goto bad;
        uint32_t nt = rn_be32_get(p);
        p += 4;
        if (nt < 1 || nt > RN_FSM_MAX_TOMBS) goto bad;
        for (uint32_t i = 0; i < nt; i++) {
            if (!(p = get_name(p, end, nf.tombs[i].name)) || end - p < 8) goto bad;
            nf.tombs[i].at_ms = (int64_t)rn_be64_get(p);
            p += 8;
            for (uint32_t k = 0; k < i; k++)
                if (!strcmp(nf.tombs[k].name, nf.tombs[i].name)) goto bad;
            nf.ntombs = i + 1;
        }
    }
    if (p != end) goto bad;
    rn_fsm_topics_free(f->topics, f->ntopics);
    free(f->goffs);
    nf.topics_gen = f->topics_gen + 1;                             /* invariant 7 */
    *f = nf;
    return 0;
bad:
    rn_fsm_topics_free(nf.topics, nf.ntopics);
    free(nf.goffs);
    return rn_errf(errmsg, RN_ECORRUPT, "controller snapshot: node, topic or group offset "
                   "records do not check (lengths, order, flags, replica sets or queues)");
}

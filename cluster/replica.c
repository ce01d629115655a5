/*
 * replica.c — replicated queues on a cluster node (cluster/replica.h).
 *
 * Per (topic, queue) this node is a replica of, one entry (rq_t):
 *   leading    the view names this node leader at epoch E: lepoch = E, the
 *              followers' log ends as their fetches report them, the high
 *              watermark; entered by become_leader (a hook or the manager
 *              sees the epoch first), left when the view names another
 *   following  a fetcher thread copies the leader's batches; its target
 *              (leader, address, epoch) is what the manager last saw
 *
 * Invariants:
 *  1. A follower appends a batch only at its own log end and only when the
 *     batch's base offset equals that end (rn_hd_replica_append refuses
 *     otherwise), byte for byte as the leader sent it; it asks for the next
 *     batches only after the last ones are durable, so a fetch at offset X
 *     means the follower durably holds every record below X.
 *  2. The high watermark of a led queue is at most the leader's own
 *     durable end and at most every ISR follower's reported end; it never
 *     goes down while the leadership lasts. Consumers read below it only;
 *     acks all answer once it covers the produce.
 *  3. A produce or a fetch reaching a node that the view does not name the
 *     queue's leader is refused with FAILED_PRECONDITION "not leader of
 *     T/Q: leader is node N at ADDR" before anything is stored or read.
 *  4. A replica's first fetch at a new epoch sends the CRC of its last
 *     batch; the leader refuses it when its own batch ending there differs
 *     or its log is shorter. The replica then finds the longest prefix of
 *     its log the leader confirms (batch boundary by boundary, downwards),
 *     cuts its queue there (rn_hd_truncate: a fresh physical queue from that
 *     offset, no physical offset reused) and copies from there; until then
 *     it reports no end past the confirmed prefix, so it cannot join the
 *     ISR with other records at an offset.
 *  5. r->mu is held for memory only: no RPC, no store call, no controller
 *     call, no view get under it.
 *  6. No produce or fetch is answered, for any topic, until the view holds
 *     this start's own registration (self_current), and nothing is led or
 *     followed before: a node that restarts replays an old state in which it
 *     may still lead a queue that moved while it was down, or may not know
 *     yet that a topic of its store is replicated; it must take produces
 *     neither as that leader nor as a topic of its own.
 *  7. Group offsets on replicated topics reach this node's meta.db only
 *     from the controller's applied OFFSETS entries (sync_offsets, on the
 *     manager thread, after the topics are made here), in apply order; a
 *     CommitOffsets on them is answered once the controller committed it
 *     and this node's meta.db holds it (rn_ctl_offsets_wait). A node that
 *     is not the controller leader passes it on (forwarded), never twice.
 *     Nothing is written before the view holds this start's registration
 *     (as invariant 6): by then every entry applied before the node last
 *     stopped is applied again, so the first write after a restart (a
 *     snapshot's offsets, then later entries', under one meta.db lock)
 *     never shows readers a state older than the one meta.db held.
 */
#include "cluster/replica.h"

#include "cluster/handlers.h"

#include "client/rpc.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"
#include "server/log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct rn_repl rn_repl_t;

typedef struct rq {
    struct rq  *next;
    rn_repl_t  *r;
    char        topic[RN_FSM_TOPIC_MAX];
    uint32_t    queue;
    /* leading (under r->mu) */
    uint64_t    lepoch;                         /* 0: not leading */
    uint32_t    n;                              /* followers */
    uint64_t    ids[RN_CLUSTER_MAX_NODES];
    int64_t     end[RN_CLUSTER_MAX_NODES];      /* reported log end; -1 none yet */
    int64_t     prev_end[RN_CLUSTER_MAX_NODES]; /* leader's end at that follower's last fetch */
    int64_t     caught_ms[RN_CLUSTER_MAX_NODES];
    int64_t     hwm;
    int64_t     isr_asked_ms;
    /* following */
    int64_t     leader_hwm;                     /* the last one the leader sent */
    int64_t     log_end;                        /* ours, as the fetcher or manager saw it */
    uint64_t    f_leader, f_epoch;
    char        f_addr[RN_CLUSTER_ADDR_MAX];
    int         running, stop, exited;          /* the fetcher thread (under r->mu) */
    pthread_t   th;
} rq_t;

typedef struct made {
    char     name[RN_FSM_TOPIC_MAX];
    uint32_t nqueues;
} made_t;

struct rn_repl {
    rn_repl_opts_t     o;
    _Atomic(rn_ctl_t *) ctl;
    pthread_mutex_t    mu;                      /* invariant 5 */
    pthread_cond_t     cv;                      /* a high watermark moved, or stopping */
    rq_t              *qs;
    int                stopping;
    pthread_t          th;
    int                started;
    made_t            *made;            /* topics made here, their queue count (manager) */
    uint64_t           tombs_gen;        /* the view's topics_gen last handled (manager) */
    size_t             nmade, capmade;
    /* Group offsets (invariant 7): smu makes the writers of meta.db offsets
     * (the manager, commit handlers) take and write one at a time, so that
     * no older take lands after a newer one; it is held across that write
     * on purpose, and by nothing else. fmu guards the cached channel to the
     * controller leader (never held across a call: rn_rpc_t is thread-safe,
     * a replaced one is closed at destroy). */
    pthread_mutex_t    smu;
    pthread_mutex_t    fmu;
    rn_rpc_t          *fwd;
    char               fwd_addr[RN_CLUSTER_ADDR_MAX];
    rn_rpc_t          *fwd_old[8];
    size_t             nfwd_old;
};

static void sync_offsets(rn_repl_t *r, rn_ctl_t *ctl);

static int64_t mono_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The entry of (topic, queue); created when asked. r->mu held. */
static rq_t *rq_get(rn_repl_t *r, const char *topic, uint32_t queue, int create)
{
    for (rq_t *q = r->qs; q; q = q->next)
        if (q->queue == queue && !strcmp(q->topic, topic)) return q;
    if (!create) return NULL;
    rq_t *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->r = r;
    snprintf(q->topic, sizeof q->topic, "%s", topic);
    q->queue = queue;
    q->log_end = -1;
    q->next = r->qs;
    r->qs = q;
    return q;
}

/* The local durable end of (topic, queue); -1 with st when unknown here. */
static int local_end(rn_repl_t *r, const char *topic, uint32_t queue, int64_t *end,
                     rn_status_t *st)
{
    rn_qent_t *e;
    if (rn_hd_queue(r->o.hd, topic, queue, &e, st) != 0) return -1;
    if (rn_hd_queue_hwm(r->o.hd, e, end) != 0)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "%s/%u: its end cannot be read", topic,
                             queue);
    return 0;
}

/* Take the leadership of q at pq's epoch: followers unknown, every one given
 * lag_ms of grace, the high watermark from what the last leader said.
 * r->mu held. */
static void become_leader(rn_repl_t *r, rq_t *q, const rn_fsm_pq_t *pq)
{
    int64_t now = mono_ms();
    q->lepoch = pq->epoch;
    q->n = 0;
    for (uint32_t i = 0; i < pq->nrep; i++) {
        if (pq->replicas[i] == r->o.self) continue;
        q->ids[q->n] = pq->replicas[i];
        q->end[q->n] = -1;
        q->prev_end[q->n] = -1;
        q->caught_ms[q->n] = now;
        q->n++;
    }
    q->hwm = q->leader_hwm > 0 ? q->leader_hwm : 0;
    q->isr_asked_ms = 0;
    rn_slog(RN_SLOG_INFO, "replica: leading '%s'/%u at epoch %llu (high watermark %lld)",
            q->topic, q->queue, (unsigned long long)pq->epoch, (long long)q->hwm);
}

/* Lead q at pq: take the leadership at a new epoch, or, at the same one,
 * follow a reassignment (fsm.h, REPLICAS): a replica new to pq is tracked
 * from nothing (given lag_ms of grace, out of the ISR until caught up), one
 * no longer among pq's replicas is forgotten. r->mu held. */
static void lead_at(rn_repl_t *r, rq_t *q, const rn_fsm_pq_t *pq)
{
    if (q->lepoch != pq->epoch) {
        become_leader(r, q, pq);
        return;
    }
    uint32_t n = 0;
    for (uint32_t j = 0; j < q->n; j++) {
        if (!rn_fsm_has(pq->replicas, pq->nrep, q->ids[j])) continue;
        q->ids[n] = q->ids[j];
        q->end[n] = q->end[j];
        q->prev_end[n] = q->prev_end[j];
        q->caught_ms[n] = q->caught_ms[j];
        n++;
    }
    q->n = n;
    for (uint32_t i = 0; i < pq->nrep; i++) {
        uint64_t id = pq->replicas[i];
        if (id == r->o.self || rn_fsm_has(q->ids, q->n, id)) continue;
        q->ids[q->n] = id;
        q->end[q->n] = -1;
        q->prev_end[q->n] = -1;
        q->caught_ms[q->n] = mono_ms();
        q->n++;
        rn_slog(RN_SLOG_INFO, "replica: '%s'/%u: node %llu is a new replica", q->topic, q->queue,
                (unsigned long long)id);
    }
}

/* Invariant 2: raise q->hwm to min(own end, ISR followers' ends). r->mu
 * held; 1 when it moved. */
static int advance_hwm(rq_t *q, const rn_fsm_pq_t *pq, int64_t own)
{
    int64_t m = own;
    for (uint32_t i = 0; i < pq->nisr; i++) {
        if (pq->isr[i] == q->r->o.self) continue;
        for (uint32_t j = 0; j < q->n; j++)
            if (q->ids[j] == pq->isr[i] && q->end[j] < m) m = q->end[j];
        int known = 0;
        for (uint32_t j = 0; j < q->n; j++) known |= q->ids[j] == pq->isr[i];
        if (!known) m = -1;
    }
    assert(m <= own);                                              /* invariant 2 */
    if (m > q->hwm) {
        q->hwm = m;
        return 1;
    }
    return 0;
}

static int not_leader(rn_status_t *st, const rn_ctl_view_t *v, const char *topic, uint32_t queue,
                      const rn_fsm_pq_t *pq)
{
    const rn_ctl_vnode_t *n = pq->leader ? rn_ctl_view_node(v, pq->leader) : NULL;
    if (!n || !n->client[0])
        return rn_status_setr(st, RN_SR_NOT_LEADER, RN_ST_UNAVAILABLE, "no leader of %s/%u "
                              "now (epoch %llu): its in-sync replicas are not live; retry",
                              topic, queue, (unsigned long long)pq->epoch);
    return rn_status_setr(st, RN_SR_NOT_LEADER, RN_ST_FAILED_PRECONDITION, "not leader of %s/%u: "
                          "leader is node %llu at %s", topic, queue,
                          (unsigned long long)pq->leader, n->client);
}

static uint32_t need_insync(const rn_repl_t *r, const rn_fsm_pq_t *pq)
{
    return r->o.min_insync < pq->nrep ? r->o.min_insync : pq->nrep;
}

static int too_few(rn_status_t *st, const rn_repl_t *r, const char *topic, uint32_t queue,
                   const rn_fsm_pq_t *pq, const char *what)
{
    char ids[128] = "";
    size_t off = 0;
    for (uint32_t i = 0; i < pq->nisr && off < sizeof ids - 24; i++)
        off += (size_t)snprintf(ids + off, sizeof ids - off, "%s%llu", i ? ", " : "",
                                (unsigned long long)pq->isr[i]);
    return rn_status_setr(st, RN_SR_NOT_ENOUGH_REPLICAS, RN_ST_FAILED_PRECONDITION,
                          "%s/%u has %u in-sync replica%s (node %s); min_insync_replicas is %u "
                          "(runneld --min-insync-replicas): %s", topic, queue, pq->nisr,
                          pq->nisr == 1 ? "" : "s", ids, need_insync(r, pq), what);
}

/* ---- hooks (rn_hd_repl_t) -------------------------------------------------- */

/* The view and the queue, or a status: 0 with *pq NULL for a topic the
 * controller does not replicate. The caller puts *v. */
static int view_queue(rn_repl_t *r, const char *topic, uint32_t queue,
                      const rn_ctl_view_t **v, const rn_fsm_pq_t **pq, rn_status_t *st)
{
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    *v = NULL;
    *pq = NULL;
    if (!ctl)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "this node's cluster controller is "
                             "starting; retry");
    *v = rn_ctl_view_get(ctl);
    if (!(*v)->self_current) {                 /* invariant 6 */
        rn_ctl_view_put(*v);
        *v = NULL;
        return rn_status_set(st, RN_ST_UNAVAILABLE, "%s/%u: this node is (re)joining the "
                             "cluster and has not caught up with its controller state; retry",
                             topic, queue);
    }
    *pq = rn_ctl_view_queue(*v, topic, queue);
    return 0;
}

static int h_replicated(void *arg, const char *topic, rn_status_t *st)
{
    const rn_ctl_view_t *v;
    const rn_fsm_pq_t *pq;
    if (view_queue(arg, topic, 0, &v, &pq, st) != 0) return -1;
    rn_ctl_view_put(v);
    return pq != NULL;
}

static int h_produce(void *arg, const char *topic, uint32_t queue, int *replicated,
                     rn_status_t *st)
{
    rn_repl_t *r = arg;
    const rn_ctl_view_t *v;
    const rn_fsm_pq_t *pq;
    *replicated = 0;
    if (view_queue(r, topic, queue, &v, &pq, st) != 0) return -1;
    int rc = 0;
    if (!pq) {
        /* not a cluster topic: stored here only, as on a single broker */
    } else if (pq->leader != r->o.self) {
        rc = not_leader(st, v, topic, queue, pq);
    } else if (pq->nisr < need_insync(r, pq)) {
        rc = too_few(st, r, topic, queue, pq, "refused, nothing stored");
    } else {
        pthread_mutex_lock(&r->mu);
        rq_t *q = rq_get(r, topic, queue, 1);
        if (q) lead_at(r, q, pq);
        pthread_mutex_unlock(&r->mu);
        if (!q) rc = rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
        *replicated = 1;
    }
    rn_ctl_view_put(v);
    return rc;
}

static int h_wait(void *arg, const char *topic, uint32_t queue, int64_t end, rn_status_t *st)
{
    rn_repl_t *r = arg;
    int64_t deadline = mono_ms() + r->o.ack_timeout_ms;
    for (;;) {
        const rn_ctl_view_t *v;
        const rn_fsm_pq_t *pq;
        if (view_queue(r, topic, queue, &v, &pq, st) != 0) return -1;
        int rc = 1;
        if (!pq || pq->leader != r->o.self) {
            rc = rn_status_setr(st, RN_SR_NOT_LEADER, RN_ST_UNAVAILABLE, "%s/%u: this node "
                                "stopped leading it before the batches reached every in-sync "
                                "replica; they may or may not be kept: an idempotent "
                                "producer's retry to the new leader is safe", topic, queue);
        } else if (pq->nisr < need_insync(r, pq)) {
            rc = too_few(st, r, topic, queue, pq, "the batches are stored on the leader but "
                         "not acknowledged");
        }
        int64_t own = -1;
        rn_status_t est;
        if (rc == 1 && local_end(r, topic, queue, &own, &est) != 0) own = -1;
        int moved = 0;
        pthread_mutex_lock(&r->mu);
        rq_t *q = rc == 1 ? rq_get(r, topic, queue, 0) : NULL;
        if (q && q->lepoch == pq->epoch) {
            if (own >= 0) moved = advance_hwm(q, pq, own);
            if (q->hwm >= end && own >= end) rc = 0;
        }
        if (rc == 1 && r->stopping)
            rc = rn_status_set(st, RN_ST_UNAVAILABLE, "%s/%u: the node is stopping before the "
                               "batches reached every in-sync replica", topic, queue);
        if (rc == 1 && mono_ms() >= deadline)
            rc = rn_status_set(st, RN_ST_UNAVAILABLE, "%s/%u: the in-sync replicas did not "
                               "confirm the batches within %u ms; they are stored on the leader",
                               topic, queue, r->o.ack_timeout_ms);
        if (rc == 1) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        }
        pthread_mutex_unlock(&r->mu);
        rn_ctl_view_put(v);
        if (moved) rn_hd_wake(r->o.hd, topic, queue);
        if (rc != 1) return rc == 0 ? 0 : -1;
    }
}

/* Invariant 4 on the leader: the batch ending at offset has this CRC. */
static int check_diverged(rn_repl_t *r, const char *topic, uint32_t queue, uint64_t replica,
                          int64_t offset, uint32_t crc, rn_status_t *st)
{
    if (offset <= 0) return 0;
    rn_qent_t *e;
    if (rn_hd_queue(r->o.hd, topic, queue, &e, st) != 0) return -1;
    rn_buf_t b = RN_BUF_INIT;
    rn_fetch_t f;
    memset(&f, 0, sizeof f);
    int rc = rn_hd_read(r->o.hd, e, offset - 1, 1, &b, &f, st);
    if (rc == 0) {
        int ok = b.len >= 61 && (int64_t)rn_be64_get(b.data) + rn_be32_get(b.data + 57) == offset &&
                 rn_be32_get(b.data + 17) == crc;
        if (!ok)
            rc = rn_status_set(st, RN_ST_FAILED_PRECONDITION, "replica %llu of %s/%u diverged: "
                               "its batch ending at offset %lld is not the leader's; it stays "
                               "out of the ISR (remove its copy of the queue to resync it)",
                               (unsigned long long)replica, topic, queue, (long long)offset);
    } else if (st->code == RN_ST_OUT_OF_RANGE) {
        rc = rn_status_set(st, RN_ST_FAILED_PRECONDITION, "replica %llu of %s/%u diverged: "
                           "its log ends at %lld, past the leader's; it stays out of the ISR",
                           (unsigned long long)replica, topic, queue, (long long)offset);
    }
    rn_buf_free(&b);
    return rc;
}

static int h_fetch(void *arg, const Runnel__V1__FetchRequest *req, int64_t *limit,
                   rn_status_t *st)
{
    rn_repl_t *r = arg;
    const char *topic = req->topic ? req->topic : "";
    uint32_t queue = req->queue;
    uint64_t replica = req->replica_id;
    int64_t offset = req->offset;
    const rn_ctl_view_t *v;
    const rn_fsm_pq_t *pq;
    *limit = -1;
    if (view_queue(r, topic, queue, &v, &pq, st) != 0) return -1;
    if (!pq) {
        rn_ctl_view_put(v);
        return 0;
    }
    if (pq->leader != r->o.self) {
        int rc = not_leader(st, v, topic, queue, pq);
        rn_ctl_view_put(v);
        return rc;
    }
    if (replica && req->replica_check &&
        check_diverged(r, topic, queue, replica, offset, req->replica_last_crc, st) != 0) {
        rn_ctl_view_put(v);
        return -1;
    }
    int64_t own = -1;
    rn_status_t est;
    if (local_end(r, topic, queue, &own, &est) != 0) own = -1;
    int rc = 0, moved = 0;
    pthread_mutex_lock(&r->mu);
    rq_t *q = rq_get(r, topic, queue, 1);
    if (!q) {
        rc = rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        lead_at(r, q, pq);
        if (replica && offset >= 0) {
            uint32_t j = 0;
            while (j < q->n && q->ids[j] != replica) j++;
            if (j == q->n) {
                rc = rn_status_set(st, RN_ST_INVALID_ARGUMENT, "node %llu is not a replica of "
                                   "%s/%u", (unsigned long long)replica, topic, queue);
            } else {
                if (q->prev_end[j] >= 0 && offset >= q->prev_end[j]) q->caught_ms[j] = mono_ms();
                if (own >= 0 && offset >= own) q->caught_ms[j] = mono_ms();
                if (offset > q->end[j]) q->end[j] = offset;
                q->prev_end[j] = own;
            }
        }
        if (own >= 0) moved = advance_hwm(q, pq, own);
        if (!replica) *limit = own >= 0 && own < q->hwm ? own : q->hwm;
        if (moved) pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    rn_ctl_view_put(v);
    if (moved) rn_hd_wake(r->o.hd, topic, queue);
    return rc;
}

/* Make the topic here, with its queue count (idempotent). */
/* Make the topic here with nqueues queues: created, or grown when it has
 * fewer (a GROW entry, fsm.h; idempotent). */
static int make_local(rn_repl_t *r, const char *name, uint32_t nqueues, char *err)
{
    rn_datadir_t *d = rn_hd_datadir(r->o.hd);
    int rc = rn_datadir_topic_create(d, name, nqueues, NULL, err);
    if (rc != RN_EEXIST) return rc;
    rn_meta_topic_t t;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    rc = rn_meta_topic_get(m, name, &t, err);
    rn_datadir_meta_unlock(d);
    if (rc != 0 || t.queues >= nqueues) return rc;
    rc = rn_datadir_topic_alter(d, name, nqueues, NULL, err);
    if (rc == 0)
        rn_slog(RN_SLOG_INFO, "replica: topic '%s' grown here from %u to %u queues", name,
                t.queues, nqueues);
    return rc;
}

/* 1 when this node has a topic of that name. A name neither in the view
 * nor here may be a replicated topic this node's view has not seen yet
 * (made through another node just now): its callers ask the controller. */
static int local_topic(rn_repl_t *r, const char *name)
{
    rn_datadir_t *d = rn_hd_datadir(r->o.hd);
    rn_meta_topic_t t;
    char err[RN_ERRMSG_SIZE];
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int here = rn_meta_topic_get(m, name, &t, err) == 0;
    rn_datadir_meta_unlock(d);
    return here;
}

/* DeleteTopic of a replicated topic: through the controller (a DROP entry);
 * 1 when the topic is not replicated (deleted locally as always). The
 * caller deletes this node's copy once it returns 0. */
static int h_delete_topic(void *arg, const char *name, int forwarded, rn_status_t *st)
{
    rn_repl_t *r = arg;
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    if (!ctl)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "this node's cluster controller is "
                             "starting; retry");
    const rn_ctl_view_t *v = rn_ctl_view_get(ctl);
    int known = 0;
    for (size_t k = 0; k < v->ntopics && !known; k++) known = !strcmp(v->topics[k].name, name);
    rn_ctl_view_put(v);
    char err[RN_ERRMSG_SIZE] = "";
    if (!known && local_topic(r, name)) return 1;
    uint64_t leader = 0;
    int rc = rn_ctl_drop_topic(ctl, name, 5000, &leader, err);
    if (rc == -EAGAIN && leader && !forwarded) {
        Runnel__V1__DeleteTopicRequest fw;
        runnel__v1__delete_topic_request__init(&fw);
        fw.name = (char *)name;
        fw.forwarded = 1;
        ProtobufCMessage *m = NULL;
        if (rn_cluster_forward(ctl, leader, RN_RPC_METHOD("DeleteTopic"), &fw.base,
                               &runnel__v1__delete_topic_response__descriptor, 10000, &m, st) != 0)
            return -1;
        protobuf_c_message_free_unpacked(m, NULL);
    } else if (rc == -EAGAIN || rc == -ETIMEDOUT) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "topic '%s': %s; retry", name,
                             err[0] ? err : "no controller leader");
    } else if (rc == RN_ENOTFOUND) {
        return rn_status_set(st, RN_ST_NOT_FOUND, "%s", err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "%s", err);
    }
    /* Committed: this node's copy goes once its view has the deletion, so
     * that its manager does not make the topic again meanwhile (the
     * manager stops the topic's fetchers, invariant 8). */
    for (int i = 0, gone = 0; i < 500 && !gone; i++) {
        v = rn_ctl_view_get(ctl);
        gone = 1;
        for (size_t k = 0; k < v->ntopics; k++) gone &= strcmp(v->topics[k].name, name) != 0;
        rn_ctl_view_put(v);
        if (!gone) sleep_ms(10);
    }
    return 0;
}

/* AlterTopic of a replicated topic: through the controller (a GROW entry);
 * 1 when the topic is not replicated (altered locally as always). */
static int h_alter_topic(void *arg, const Runnel__V1__AlterTopicRequest *req, rn_status_t *st)
{
    rn_repl_t *r = arg;
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    if (!ctl)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "this node's cluster controller is "
                             "starting; retry");
    const rn_ctl_view_t *v = rn_ctl_view_get(ctl);
    int known = 0;
    for (size_t k = 0; k < v->ntopics && !known; k++) known = !strcmp(v->topics[k].name,
                                                                      req->name);
    rn_ctl_view_put(v);
    if (!known && local_topic(r, req->name)) return 1;
    char err[RN_ERRMSG_SIZE] = "";
    uint64_t leader = 0;
    int rc = rn_ctl_grow_topic(ctl, req->name, req->queues, 5000, &leader, err);
    if (rc == -EAGAIN && leader && !req->forwarded) {
        Runnel__V1__AlterTopicRequest fw = *req;
        fw.forwarded = 1;
        ProtobufCMessage *m = NULL;
        if (rn_cluster_forward(ctl, leader, RN_RPC_METHOD("AlterTopic"), &fw.base,
                               &runnel__v1__topic_info__descriptor, 10000, &m, st) != 0)
            return -1;
        protobuf_c_message_free_unpacked(m, NULL);
    } else if (rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EBUSY) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "topic '%s': %s; retry", req->name,
                             err[0] ? err : "no controller leader");
    } else if (rc == RN_ENOTFOUND) {
        return rn_status_set(st, RN_ST_NOT_FOUND, "%s", err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "%s", err);
    }
    /* Committed: wait for this node's view to hold the new count, then grow
     * the topic here (the manager does the same on every node). */
    uint32_t have = 0;
    for (int i = 0; i < 500 && have < req->queues; i++) {
        v = rn_ctl_view_get(ctl);
        for (size_t k = 0; k < v->ntopics; k++)
            if (!strcmp(v->topics[k].name, req->name)) have = v->topics[k].nqueues;
        rn_ctl_view_put(v);
        if (have < req->queues) sleep_ms(10);
    }
    if (have < req->queues)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "topic '%s' grew in the cluster but not yet "
                             "in this node's controller state; retry", req->name);
    if ((rc = make_local(r, req->name, have, err)) != 0) return rn_hd_fail(st, rc, err);
    return 0;
}

static int h_create_topic(void *arg, const Runnel__V1__CreateTopicRequest *req, rn_status_t *st)
{
    rn_repl_t *r = arg;
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    if (!ctl)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "this node's cluster controller is "
                             "starting; retry");
    uint32_t nq = req->queues ? req->queues : 1;
    if (nq > RN_FSM_MAX_QUEUES)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "--queues %u: a replicated topic has "
                             "1..%d queues", nq, RN_FSM_MAX_QUEUES);
    char err[RN_ERRMSG_SIZE] = "";
    uint64_t leader = 0;
    int rc = rn_ctl_create_topic(ctl, req->name, nq, req->replicas, 5000, &leader, err);
    if (rc == -EAGAIN && leader && !req->forwarded) {
        Runnel__V1__CreateTopicRequest fw = *req;
        fw.forwarded = 1;
        ProtobufCMessage *m = NULL;
        if (rn_cluster_forward(ctl, leader, RN_RPC_METHOD("CreateTopic"), &fw.base,
                               &runnel__v1__topic_info__descriptor, 10000, &m, st) != 0)
            return -1;
        protobuf_c_message_free_unpacked(m, NULL);
        rc = 0;
    } else if (rc == -EAGAIN || rc == -ETIMEDOUT || rc == -EBUSY) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "topic '%s': %s; retry", req->name,
                             err[0] ? err : "no controller leader");
    } else if (rc == RN_EEXIST) {
        return rn_status_set(st, RN_ST_ALREADY_EXISTS, "%s", err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "%s", err);
    }
    /* Committed: wait for this node's view to hold it, then make it here. */
    const rn_fsm_topic_t *t = NULL;
    uint32_t have = 0;
    for (int i = 0; i < 500 && !have; i++) {
        const rn_ctl_view_t *v = rn_ctl_view_get(ctl);
        for (size_t k = 0; k < v->ntopics; k++)
            if (!strcmp(v->topics[k].name, req->name)) t = &v->topics[k];
        if (t) have = t->nqueues;
        t = NULL;
        rn_ctl_view_put(v);
        if (!have) sleep_ms(10);
    }
    if (!have)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "topic '%s' was committed but has not "
                             "reached this node's controller state yet; retry", req->name);
    if ((rc = make_local(r, req->name, have, err)) != 0)
        return rn_hd_fail(st, rc, err);
    return 0;
}

/* ---- followers ------------------------------------------------------------ */

/* The CRC of our batch ending at `end` (invariant 4) and where that batch
 * starts (*start; 0 and 0 when end is 0 or unreadable). */
static uint32_t batch_before(rn_repl_t *r, const char *topic, uint32_t queue, int64_t end,
                             int64_t *start)
{
    *start = 0;
    if (end <= 0) return 0;
    rn_qent_t *e;
    rn_status_t st;
    if (rn_hd_queue(r->o.hd, topic, queue, &e, &st) != 0) return 0;
    rn_buf_t b = RN_BUF_INIT;
    rn_fetch_t f;
    memset(&f, 0, sizeof f);
    uint32_t crc = 0;
    if (rn_hd_read(r->o.hd, e, end - 1, 1, &b, &f, &st) == 0 && b.len >= 61) {
        crc = rn_be32_get(b.data + 17);
        *start = (int64_t)rn_be64_get(b.data);
    }
    rn_buf_free(&b);
    return crc;
}

static uint32_t last_crc(rn_repl_t *r, const char *topic, uint32_t queue, int64_t end)
{
    int64_t start;
    return batch_before(r, topic, queue, end, &start);
}

/* Invariant 4, the repair (Kafka's KIP-101 in spirit, by CRC instead of
 * leader epochs): the leader said our log diverged at `end`. Walk our batch
 * boundaries down from it, asking the leader at each (a fetch that only
 * checks) whether our batch ending there is its batch too; cut our queue at
 * the first boundary it confirms (0 at worst) and copy from there. Returns
 * the new end, or -1 (logged; the fetcher tries again later). */
static int64_t repair(rn_repl_t *r, rq_t *q, rn_rpc_t *rpc, int64_t end)
{
    char err[RN_ERRMSG_SIZE];
    int64_t at = end;
    for (int steps = 0; steps < 100000; steps++) {
        int64_t start = 0;
        uint32_t crc = batch_before(r, q->topic, q->queue, at, &start);
        int ok = at == 0;
        if (!ok) {
            Runnel__V1__FetchRequest req;
            runnel__v1__fetch_request__init(&req);
            req.topic = q->topic;
            req.queue = q->queue;
            req.offset = at;
            req.max_bytes = 1;
            req.replica_id = r->o.self;
            req.replica_check = 1;
            req.replica_last_crc = crc;
            ProtobufCMessage *m = NULL;
            int status = 0;
            int rc = rn_rpc_call(rpc, RN_RPC_METHOD("Fetch"), &req.base,
                                 &runnel__v1__fetch_response__descriptor, &m, 5000, &status, err);
            if (m) protobuf_c_message_free_unpacked(m, NULL);
            if (rc == 0) ok = 1;
            else if (!(status == 9 && strstr(err, "diverged"))) return -1;   /* try later */
        }
        if (ok) {
            if (at == end) return end;
            if (rn_hd_truncate(r->o.hd, q->topic, q->queue, at, err) != 0) {
                rn_slog(RN_SLOG_ERROR, "replica: %s/%u: cannot cut the diverged tail at %lld: %s",
                        q->topic, q->queue, (long long)at, err);
                return -1;
            }
            rn_slog(RN_SLOG_WARN, "replica: %s/%u: diverged from the leader: cut [%lld, %lld) "
                    "(records no in-sync replica had) and copying from %lld", q->topic, q->queue,
                    (long long)at, (long long)end, (long long)at);
            return at;
        }
        if (start >= at) return -1;                    /* cannot happen; never loop */
        at = start;
    }
    return -1;
}

/* Append the batches of one fetch answer at their own offsets (invariant
 * 1); the new log end, or -1 when something was refused (logged). */
static int64_t copy_batches(rn_repl_t *r, rq_t *q, const uint8_t *p, size_t n, int64_t end)
{
    uint64_t ticket = 0;
    char err[RN_ERRMSG_SIZE];
    size_t at = 0;
    while (at + 61 <= n) {
        const uint8_t *b = p + at;
        size_t size = 12 + (size_t)rn_be32_get(b + 8);
        int64_t base = (int64_t)rn_be64_get(b);
        if (size < 61 || at + size > n) {
            rn_slog(RN_SLOG_ERROR, "replica: %s/%u: the leader sent a cut batch at offset %lld",
                    q->topic, q->queue, (long long)base);
            return -1;
        }
        if (base != end) {
            rn_slog(RN_SLOG_ERROR, "replica: %s/%u: the leader's batch starts at offset %lld, "
                    "not at this replica's log end %lld: refused", q->topic, q->queue,
                    (long long)base, (long long)end);
            return -1;
        }
        assert(base == end);                                       /* invariant 1 */
        if (rn_hd_replica_append(r->o.hd, q->topic, q->queue, b, size, base, &ticket, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "replica: %s/%u: append at %lld refused: %s", q->topic,
                    q->queue, (long long)base, err);
            return -1;
        }
        end = base + rn_be32_get(b + 57);
        at += size;
    }
    if (ticket && rn_hd_wait(r->o.hd, ticket) != 0) {
        rn_slog(RN_SLOG_ERROR, "replica: %s/%u: the copied batches are not durable", q->topic,
                q->queue);
        return -1;
    }
    return end;
}

static void *fetcher_main(void *arg)
{
    rq_t *q = arg;
    rn_repl_t *r = q->r;
    rn_rpc_t *rpc = NULL;
    char target[RN_CLUSTER_ADDR_MAX] = "", err[RN_ERRMSG_SIZE];
    uint64_t checked_epoch = 0;
    int64_t logged_ms = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int stop = q->stop || r->stopping;
        uint64_t epoch = q->f_epoch;
        char addr[RN_CLUSTER_ADDR_MAX];
        snprintf(addr, sizeof addr, "%s", q->f_addr);
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
        rn_status_t st;
        int64_t end;
        if (!addr[0] || local_end(r, q->topic, q->queue, &end, &st) != 0) {
            sleep_ms(50);
            continue;
        }
        if (strcmp(addr, target) != 0) {
            rn_rpc_close(rpc);
            rpc = NULL;
            if (rn_rpc_open(addr, &rpc, err) != 0) {
                sleep_ms(200);
                continue;
            }
            snprintf(target, sizeof target, "%s", addr);
        }
        Runnel__V1__FetchRequest req;
        runnel__v1__fetch_request__init(&req);
        req.topic = q->topic;
        req.queue = q->queue;
        req.offset = end;
        req.max_bytes = RN_REPL_FETCH_BYTES;
        req.max_wait_ms = RN_REPL_FETCH_WAIT_MS;
        req.replica_id = r->o.self;
        if (checked_epoch != epoch) {
            req.replica_check = 1;
            req.replica_last_crc = last_crc(r, q->topic, q->queue, end);
        }
        ProtobufCMessage *m = NULL;
        int status = 0;
        int rc = rn_rpc_call(rpc, RN_RPC_METHOD("Fetch"), &req.base,
                             &runnel__v1__fetch_response__descriptor, &m,
                             RN_REPL_FETCH_WAIT_MS + 2000, &status, err);
        if (rc != 0 && status == 9 && strstr(err, "diverged")) {
            rn_slog(RN_SLOG_WARN, "replica: %s/%u: fetch from %s: %s", q->topic, q->queue, addr,
                    err);
            if (repair(r, q, rpc, end) < 0) sleep_ms(1000);
            continue;                   /* checked again at the new end */
        }
        if (rc != 0) {
            if (mono_ms() - logged_ms > 5000) {
                rn_slog(RN_SLOG_DEBUG, "replica: %s/%u: fetch from %s: %s", q->topic, q->queue,
                        addr, err);
                logged_ms = mono_ms();
            }
            sleep_ms(50);
            continue;
        }
        checked_epoch = epoch;
        Runnel__V1__FetchResponse *resp = (Runnel__V1__FetchResponse *)m;
        int64_t nend = copy_batches(r, q, resp->records.data, resp->records.len, end);
        pthread_mutex_lock(&r->mu);
        q->leader_hwm = resp->high_watermark;
        if (nend >= 0) q->log_end = nend;
        pthread_mutex_unlock(&r->mu);
        protobuf_c_message_free_unpacked(m, NULL);
        if (nend < 0) sleep_ms(1000);
    }
    rn_rpc_close(rpc);
    pthread_mutex_lock(&r->mu);
    q->exited = 1;                      /* the manager joins it (stop_fetcher) */
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the manager ------------------------------------------------------------- */

/* The queue count topic name was made here with (0: not made yet). */
static uint32_t made_queues(rn_repl_t *r, const char *name)
{
    for (size_t i = 0; i < r->nmade; i++)
        if (!strcmp(r->made[i].name, name)) return r->made[i].nqueues;
    return 0;
}

static void made_set(rn_repl_t *r, const char *name, uint32_t nqueues)
{
    for (size_t i = 0; i < r->nmade; i++)
        if (!strcmp(r->made[i].name, name)) {
            r->made[i].nqueues = nqueues;
            return;
        }
    if (r->nmade == r->capmade) {
        size_t cap = r->capmade ? r->capmade * 2 : 16;
        void *p = realloc(r->made, cap * sizeof r->made[0]);
        if (!p) return;
        r->made = p;
        r->capmade = cap;
    }
    snprintf(r->made[r->nmade].name, sizeof r->made[0].name, "%s", name);
    r->made[r->nmade++].nqueues = nqueues;
}

/* As leader: the ISR this node wants for q, asked of the controller when it
 * differs from the view's (at most every 200 ms per queue). */
static void upkeep_isr(rn_repl_t *r, rn_ctl_t *ctl, rq_t *q, const rn_fsm_pq_t *pq, int64_t now)
{
    uint64_t want[RN_CLUSTER_MAX_NODES];
    uint32_t n = 0;
    int differs = 0;
    pthread_mutex_lock(&r->mu);
    lead_at(r, q, pq);
    want[n++] = r->o.self;
    for (uint32_t j = 0; j < q->n; j++) {
        int in = rn_fsm_has(pq->isr, pq->nisr, q->ids[j]);
        int fresh = now - q->caught_ms[j] <= (int64_t)r->o.lag_ms;
        int keep = in ? fresh : fresh && q->end[j] >= 0 && q->end[j] >= q->hwm;
        if (keep) want[n++] = q->ids[j];
        if (keep != in) differs = 1;
    }
    int ask = differs && now - q->isr_asked_ms >= 200;
    if (ask) q->isr_asked_ms = now;
    pthread_mutex_unlock(&r->mu);
    if (ask) {
        rn_slog(RN_SLOG_INFO, "replica: %s/%u: asking for an ISR of %u (was %u)", q->topic,
                q->queue, n, pq->nisr);
        rn_ctl_isr_request(ctl, r->o.self, q->topic, q->queue, pq->epoch, want, n);
    }
}

/* Ask q's fetcher to stop, without waiting for its fetch in flight (up to
 * RN_REPL_FETCH_WAIT_MS + 2 s to a stopped leader); join it once it has
 * left. 1 while it still runs. Manager thread only. */
static int stop_fetcher(rn_repl_t *r, rq_t *q)
{
    pthread_mutex_lock(&r->mu);
    int running = q->running, exited = q->exited;
    if (running) q->stop = 1;
    if (running && exited) q->running = q->stop = q->exited = 0;
    pthread_mutex_unlock(&r->mu);
    if (running && exited) pthread_join(q->th, NULL);
    return running && !exited;
}

/* A deleted replicated topic (a tombstone of the view, fsm.h DROP): this
 * node's copy, when made before the deletion, is deleted (a node that was
 * down deletes it when it comes back), the topic's fetchers stop and its
 * leader state is reset, so that a topic made again under the name starts
 * from nothing, made anew by the manager. A copy made after the deletion
 * is the new topic's: left alone. Manager thread. */
static void forget_topic(rn_repl_t *r, const rn_fsm_tomb_t *tomb)
{
    rn_datadir_t *d = rn_hd_datadir(r->o.hd);
    rn_meta_topic_t t;
    char err[RN_ERRMSG_SIZE];
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int exists = rn_meta_topic_get(m, tomb->name, &t, err) == 0;
    rn_datadir_meta_unlock(d);
    if (exists && t.created_ms > tomb->at_ms) return;
    pthread_mutex_lock(&r->mu);
    for (rq_t *q = r->qs; q; q = q->next) {
        if (strcmp(q->topic, tomb->name)) continue;
        if (q->running) q->stop = 1;
        q->lepoch = 0;
        q->hwm = q->leader_hwm = 0;
        q->n = 0;
        q->log_end = -1;
    }
    pthread_mutex_unlock(&r->mu);
    for (rq_t *q = r->qs; q; q = q->next)        /* only the manager adds to the list */
        if (!strcmp(q->topic, tomb->name)) stop_fetcher(r, q);
    made_set(r, tomb->name, 0);
    if (!exists) return;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    if (rn_hd_topic_delete_local(r->o.hd, tomb->name, &st) == 0)
        rn_slog(RN_SLOG_INFO, "replica: topic '%s' deleted here: it was deleted in the cluster",
                tomb->name);
    else if (st.code != RN_ST_NOT_FOUND)
        rn_slog(RN_SLOG_ERROR, "replica: topic '%s' was deleted in the cluster but not here: %s",
                tomb->name, st.msg);
}

static void manage(rn_repl_t *r, rn_ctl_t *ctl, int64_t now)
{
    const rn_ctl_view_t *v = rn_ctl_view_get(ctl);
    if (!v->self_current) {                    /* invariant 6: wait for this start's state */
        rn_ctl_view_put(v);
        return;
    }
    char err[RN_ERRMSG_SIZE];
    if (v->topics_gen != r->tombs_gen) {        /* the tombstones, once per change */
        for (size_t i = 0; i < v->ntombs; i++) forget_topic(r, &v->tombs[i]);
        r->tombs_gen = v->topics_gen;
    }
    static rn_ctl_end_t ends[RN_CTL_MAX_ENDS];     /* the manager thread only */
    size_t nends = 0;
    for (size_t i = 0; i < v->ntopics; i++) {
        const rn_fsm_topic_t *t = &v->topics[i];
        if (made_queues(r, t->name) != t->nqueues) {
            int rc = make_local(r, t->name, t->nqueues, err);
            if (rc == 0) made_set(r, t->name, t->nqueues);
            else rn_slog(RN_SLOG_ERROR, "replica: cannot make topic '%s' here: %s", t->name, err);
        }
        for (uint32_t k = 0; k < t->nqueues; k++) {
            const rn_fsm_pq_t *pq = &t->q[k];
            if (!rn_fsm_has(pq->replicas, pq->nrep, r->o.self)) {
                /* no longer a replica (a reassignment): stop copying */
                pthread_mutex_lock(&r->mu);
                rq_t *old = rq_get(r, t->name, k, 0);
                pthread_mutex_unlock(&r->mu);
                if (old) stop_fetcher(r, old);
                continue;
            }
            pthread_mutex_lock(&r->mu);
            rq_t *q = rq_get(r, t->name, k, 1);
            pthread_mutex_unlock(&r->mu);
            if (!q) continue;
            rn_status_t st;
            int64_t end = -1;
            if (local_end(r, t->name, k, &end, &st) == 0 && nends < RN_CTL_MAX_ENDS) {
                snprintf(ends[nends].topic, sizeof ends[nends].topic, "%s", t->name);
                ends[nends].queue = k;
                ends[nends].end = end;
                nends++;
            }
            if (pq->leader == r->o.self) {
                stop_fetcher(r, q);
                upkeep_isr(r, ctl, q, pq, now);
                continue;
            }
            pthread_mutex_lock(&r->mu);
            int stopping = q->running && q->stop;
            pthread_mutex_unlock(&r->mu);
            if (stopping && stop_fetcher(r, q)) continue;   /* the old one first */
            const rn_ctl_vnode_t *ln = pq->leader ? rn_ctl_view_node(v, pq->leader) : NULL;
            pthread_mutex_lock(&r->mu);
            q->lepoch = 0;
            q->f_leader = pq->leader;
            q->f_epoch = pq->epoch;
            snprintf(q->f_addr, sizeof q->f_addr, "%s", ln && ln->live ? ln->client : "");
            int start = !q->running;
            if (start) q->running = 1;
            pthread_mutex_unlock(&r->mu);
            if (start && pthread_create(&q->th, NULL, fetcher_main, q) != 0) {
                pthread_mutex_lock(&r->mu);
                q->running = 0;
                pthread_mutex_unlock(&r->mu);
            }
        }
    }
    rn_ctl_view_put(v);
    rn_ctl_set_log_ends(ctl, ends, nends);
    sync_offsets(r, ctl);               /* after the topics are made here */
}

/* ---- group offsets (controller.h: OFFSETS entries) ----------------------------- */

/* The channel to the controller leader's client address (cached: one per
 * address; one replaced is kept until destroy, since another thread may
 * still call on it). NULL with err when it cannot be opened. */
static rn_rpc_t *leader_rpc(rn_repl_t *r, const char *addr, char *err)
{
    pthread_mutex_lock(&r->fmu);
    rn_rpc_t *rpc = r->fwd && !strcmp(r->fwd_addr, addr) ? r->fwd : NULL;
    pthread_mutex_unlock(&r->fmu);
    if (rpc || rn_rpc_open(addr, &rpc, err) != 0) return rpc;
    pthread_mutex_lock(&r->fmu);
    if (r->fwd && r->nfwd_old == sizeof r->fwd_old / sizeof r->fwd_old[0]) {
        pthread_mutex_unlock(&r->fmu);
        return rpc;                     /* a one-off: the caller closes it */
    }
    if (r->fwd) r->fwd_old[r->nfwd_old++] = r->fwd;
    r->fwd = rpc;
    snprintf(r->fwd_addr, sizeof r->fwd_addr, "%s", addr);
    pthread_mutex_unlock(&r->fmu);
    return rpc;
}

/* CommitOffsets passed on to the controller leader at addr; *index: the
 * raft index it answers. */
static int forward_commit(rn_repl_t *r, const Runnel__V1__CommitOffsetsRequest *req,
                          const char *addr, uint64_t *index, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE];
    rn_rpc_t *rpc = leader_rpc(r, addr, err);
    if (!rpc)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "controller leader at %s: %s", addr, err);
    Runnel__V1__CommitOffsetsRequest fw = *req;
    fw.forwarded = 1;
    ProtobufCMessage *resp = NULL;
    int rc = rn_cluster_call(rpc, RN_RPC_METHOD("CommitOffsets"), &fw.base,
                             &runnel__v1__commit_offsets_response__descriptor, 10000, &resp, st);
    if (rc == 0) *index = ((Runnel__V1__CommitOffsetsResponse *)resp)->cluster_index;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    pthread_mutex_lock(&r->fmu);
    int cached = rpc == r->fwd;
    for (size_t i = 0; i < r->nfwd_old; i++) cached |= rpc == r->fwd_old[i];
    pthread_mutex_unlock(&r->fmu);
    if (!cached) rn_rpc_close(rpc);
    if (rc == 0 && *index == 0)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "the controller leader at %s answered no "
                             "raft index for the offsets; retry", addr);
    return rc;
}

static int h_commit_offsets(void *arg, const Runnel__V1__CommitOffsetsRequest *req,
                            uint64_t *index, rn_status_t *st)
{
    rn_repl_t *r = arg;
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    *index = 0;
    if (!ctl)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "this node's cluster controller is "
                             "starting; retry");
    size_t n = req->n_offsets;
    rn_fsm_goff_t *v = calloc(n, sizeof *v);
    if (!v) return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        snprintf(v[i].group, sizeof v[i].group, "%s", req->group);
        snprintf(v[i].topic, sizeof v[i].topic, "%s", req->offsets[i]->topic);
        v[i].queue = req->offsets[i]->queue;
        v[i].offset = req->offsets[i]->offset;
    }
    char err[RN_ERRMSG_SIZE] = "";
    uint64_t leader = 0;
    int rc = rn_ctl_commit_offsets(ctl, v, n, 5000, &leader, index, err);
    free(v);
    if (rc == -EAGAIN && leader && !req->forwarded) {
        char addr[RN_CLUSTER_ADDR_MAX];
        if (rn_cluster_leader_addr(ctl, leader, addr, st) != 0) return -1;
        if (forward_commit(r, req, addr, index, st) != 0) return -1;
    } else if (rc == -EAGAIN || rc == -ETIMEDOUT) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "group '%s': offsets not committed: %s; "
                             "retry", req->group, err[0] ? err : "no controller leader");
    } else if (rc == RN_EFULL) {
        return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "group '%s': %s", req->group, err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "group '%s': %s", req->group, err);
    }
    /* Committed: answer once this node's meta.db holds it, so that a read
     * here after the answer sees it (written now if applied already). */
    sync_offsets(r, ctl);
    if (rn_ctl_offsets_wait(ctl, *index, 5000) != 0)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "group '%s': the offsets are committed "
                             "(controller entry %llu) but this node has not applied them within "
                             "5 s; retry", req->group, (unsigned long long)*index);
    return 0;
}

/* The offsets the controller applied since the last tick, into meta.db:
 * per run of one group, one transaction (controller.h). */
static void sync_offsets(rn_repl_t *r, rn_ctl_t *ctl)
{
    rn_fsm_goff_t *v = NULL;
    size_t n = 0;
    uint64_t upto = 0;
    const rn_ctl_view_t *vw = rn_ctl_view_get(ctl);
    int current = vw->self_current;
    rn_ctl_view_put(vw);
    if (!current) return;               /* invariant 7: not before this start's state */
    pthread_mutex_lock(&r->smu);
    rn_ctl_offsets_take(ctl, &v, &n, &upto);
    rn_meta_offset_t *w = n ? malloc(n * sizeof *w) : NULL;
    int ok = !n || w;
    char err[RN_ERRMSG_SIZE] = "out of memory";
    rn_datadir_t *d = rn_hd_datadir(r->o.hd);
    rn_meta_t *m = n ? rn_datadir_meta_lock(d) : NULL;
    for (size_t i = 0, e; ok && i < n; i = e) {
        size_t k = 0;
        for (e = i; ok && e < n && !strcmp(v[e].group, v[i].group); e++, k++) {
            rn_meta_topic_t t;
            ok = rn_meta_topic_get(m, v[e].topic, &t, err) == 0;
            w[k].topic_id = t.id;
            w[k].queue = v[e].queue;
            w[k].offset = v[e].offset;
        }
        if (ok) ok = rn_meta_offsets_commit(m, v[i].group, w, k, err) == 0;
    }
    if (m) rn_datadir_meta_unlock(d);
    if (!ok) rn_slog(RN_SLOG_ERROR, "replica: group offsets not written here: %s (all are "
                     "written again)", err);
    free(w);
    free(v);
    rn_ctl_offsets_written(ctl, upto, ok);
    pthread_mutex_unlock(&r->smu);
}

static void *manager_main(void *arg)
{
    rn_repl_t *r = arg;
    rn_ctl_t *ctl = atomic_load(&r->ctl);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int stop = r->stopping;
        pthread_mutex_unlock(&r->mu);
        if (stop) break;
        manage(r, ctl, mono_ms());
        sleep_ms(RN_REPL_TICK_MS);
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

int rn_repl_create(const rn_repl_opts_t *o, rn_repl_t **out, char *errmsg)
{
    rn_repl_t *r = calloc(1, sizeof *r);
    if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
    r->o = *o;
    if (!r->o.min_insync) r->o.min_insync = RN_REPL_MIN_INSYNC;
    if (!r->o.lag_ms) r->o.lag_ms = RN_REPL_LAG_MS;
    if (!r->o.ack_timeout_ms) r->o.ack_timeout_ms = RN_REPL_ACK_TIMEOUT_MS;
    atomic_init(&r->ctl, NULL);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_mutex_init(&r->smu, NULL);
    pthread_mutex_init(&r->fmu, NULL);
    rn_hd_repl_t hooks = {r, h_produce, h_wait, h_fetch, h_create_topic, h_alter_topic,
                          h_delete_topic, h_replicated,
                          h_commit_offsets};
    rn_hd_set_repl(o->hd, &hooks);
    *out = r;
    return 0;
}

int rn_repl_start(rn_repl_t *r, rn_ctl_t *ctl, char *errmsg)
{
    atomic_store(&r->ctl, ctl);
    int rv = pthread_create(&r->th, NULL, manager_main, r);
    if (rv != 0) return rn_errf(errmsg, -rv, "replica: cannot start its thread: %s", strerror(rv));
    r->started = 1;
    return 0;
}

void rn_repl_shutdown(rn_repl_t *r)
{
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void rn_repl_destroy(rn_repl_t *r)
{
    if (!r) return;
    rn_repl_shutdown(r);
    if (r->started) pthread_join(r->th, NULL);
    for (rq_t *q = r->qs; q; q = q->next)
        if (q->running) pthread_join(q->th, NULL);
    while (r->qs) {
        rq_t *q = r->qs;
        r->qs = q->next;
        free(q);
    }
    free(r->made);
    rn_rpc_close(r->fwd);
    for (size_t i = 0; i < r->nfwd_old; i++) rn_rpc_close(r->fwd_old[i]);
    pthread_mutex_destroy(&r->smu);
    pthread_mutex_destroy(&r->fmu);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int rn_repl_queue_state(rn_repl_t *r, const char *topic, uint32_t queue, const rn_fsm_pq_t *pq,
                        int64_t *hwm, int64_t *lag)
{
    int64_t own = -1;
    rn_status_t st;
    if (pq->leader != r->o.self || local_end(r, topic, queue, &own, &st) != 0) return -1;
    int rc = -1;
    pthread_mutex_lock(&r->mu);
    rq_t *q = rq_get(r, topic, queue, 0);
    if (q && q->lepoch == pq->epoch) {
        rc = 0;
        *hwm = q->hwm;
        for (uint32_t i = 0; i < pq->nrep; i++) {
            lag[i] = pq->replicas[i] == r->o.self ? 0 : -1;
            for (uint32_t j = 0; j < q->n; j++)
                if (q->ids[j] == pq->replicas[i] && q->end[j] >= 0) lag[i] = own - q->end[j];
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

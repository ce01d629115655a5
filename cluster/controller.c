/*
 * controller.c — one node's cluster controller (cluster/controller.h): the
 * libraft instance, its loop thread, the heartbeats and the view.
 *
 * States of the loop thread's node, as raft_state() reports them:
 *   follower / candidate  sends a heartbeat to the known leader's client
 *                         address every RN_CTL_HEARTBEAT_MS (one in flight)
 *   leader, not ready     just won: a barrier is in flight, so that every
 *                         entry of earlier terms is applied before this node
 *                         proposes anything from its state
 *   leader, ready         the barrier applied: registers and fences (below)
 *
 * Invariants:
 *  1. raft_*, the FSM callbacks, c->fsm, c->seen and c->rpc are touched on
 *     the loop thread only (and by rn_ctl_start/rn_ctl_stop before the
 *     thread starts or after it was joined).
 *  2. Other threads reach the loop only through c->q (under qmu, at most
 *     QUEUE_CAP inputs: a full queue drops the heartbeat, the node sends
 *     another RN_CTL_HEARTBEAT_MS later) and uv_async_send; and read c->view,
 *     an immutable reference-counted snapshot swapped under vmu. Neither
 *     mutex is held across I/O, a raft call or an allocation of note.
 *  3. At most one proposal per node is in flight (seen[].pending); a
 *     proposal's callback clears it, whatever its status, so a lost
 *     leadership never leaves a node stuck.
 *  4. Commands carry the leader's wall clock (at_ms); liveness timing uses
 *     the leader's monotonic clock and is never replicated.
 *  5. The FSM apply never fails the raft entry: a command that does not
 *     decode or apply (a newer runneld's, or a full node table) is logged
 *     at error and skipped, identically on every replica.
 *  6. SIGPIPE is ignored once the controller starts: libraft's TCP transport
 *     writes through libuv with plain write(2), so a peer killed mid-write
 *     would otherwise kill this node with it.
 *  7. Queue proposals (LEADER: failover, ISR) go one round at a time
 *     (qinflight): queue_upkeep proposes nothing while a round is in
 *     flight, so no tick re-proposes what the last one did; a proposal made
 *     stale meanwhile is refused by the FSM's epoch check, identically on
 *     every replica. A failed leader's queue goes to the live ISR member
 *     with the longest log its heartbeats reported (no unclean election).
 *  8. A CreateTopic (treq_t) is answered exactly once (treq_done), from the
 *     loop thread: not leader, refused, or its entry applied or lost; the
 *     caller and the loop each hold a reference, the last frees it.
 *  9. The static buffers of the loop's functions (commands, encodings, the
 *     heartbeat's lists) are the loop thread's only (invariant 1).
 * 10. Group offsets (OFFSETS entries): a commit (oreq_t) is answered exactly
 *     once, like a CreateTopic (invariant 8). Every applied OFFSETS entry's
 *     offsets are appended to c->pend (under omu) in the same callback, and
 *     o_applied then names a raft index up to which every applied offset is
 *     in pend or already taken; so when the taker reports upto written,
 *     meta.db holds every offset of the entries up to it (o_written). After
 *     a snapshot restore, a failed write, or a pend past PEND_MAX, pend is
 *     replaced by every offset of the state (an upsert of each: meta.db
 *     ends equal whatever it held).
 */
#include "cluster/controller.h"

#include "client/rpc.h"
#include "common/addr.h"
#include "common/error.h"
#include "common/sys.h"
#include "server/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define TICK_MS    100
#define QUEUE_CAP  64

typedef struct input {
    uint64_t id, start_id;
    char     client[RN_CLUSTER_ADDR_MAX];
    char     kafka[RN_CLUSTER_ADDR_MAX];      /* "" when the node serves no Kafka port */
} input_t;

/* A CreateTopic waiting for its entry (rn_ctl_create_topic), or a
 * membership change waiting for raft (rn_ctl_member_change): owned by the
 * caller and the loop together (refs), freed by the last one. */
typedef enum { TREQ_TOPIC, TREQ_ADD, TREQ_REMOVE, TREQ_REASSIGN, TREQ_GROW, TREQ_DROP }
    treq_kind_t;

typedef struct treq {
    struct treq    *next;
    int             refs;           /* under qmu */
    rn_ctl_t       *c;
    treq_kind_t     kind;
    char            name[RN_FSM_TOPIC_MAX];
    uint32_t        nqueues, replicas;
    uint64_t        node;           /* TREQ_ADD, TREQ_REMOVE */
    uint32_t        queue, nids;    /* TREQ_REASSIGN: name's queue, the target ids */
    uint64_t        ids[RN_CLUSTER_MAX_NODES];
    char            addr[RN_CLUSTER_ADDR_MAX];
    struct raft_change change;      /* loop thread */
    int             done, rc;       /* under qmu; cv signals done */
    uint64_t        leader;
    char            err[RN_ERRMSG_SIZE];
} treq_t;

/* A CommitOffsets waiting for its entry (rn_ctl_commit_offsets): owned by
 * the caller and the loop together (refs), freed by the last one. */
typedef struct oreq {
    struct oreq    *next;
    int             refs;           /* under qmu */
    rn_fsm_goff_t  *v;              /* owned copy */
    size_t          n;
    int             done, rc;       /* under qmu; qcv signals done */
    uint64_t        leader, index;
    char            err[RN_ERRMSG_SIZE];
} oreq_t;

#define PEND_MAX (2 * (size_t)RN_FSM_MAX_GOFFS)

typedef struct isrq {
    uint64_t from, epoch;
    char     topic[RN_FSM_TOPIC_MAX];
    uint32_t queue, nisr;
    uint64_t isr[RN_CLUSTER_MAX_NODES];
} isrq_t;

struct rn_ctl_topics {
    int             refs;           /* atomic */
    uint64_t        gen;
    size_t          n;
    rn_fsm_topic_t *t;
    size_t          ntombs;
    rn_fsm_tomb_t   tombs[RN_FSM_MAX_TOMBS];
};

typedef struct seen {
    uint64_t id;
    int64_t  at_ms;          /* monotonic: last heartbeat heard (leader only) */
    int      pending;        /* a proposal about this node is in flight */
} seen_t;

struct rn_ctl {
    rn_cluster_conf_t conf;
    char              client[RN_CLUSTER_ADDR_MAX];
    char              kafka[RN_CLUSTER_ADDR_MAX];
    uint64_t          start_id;
    char              dir[PATH_MAX];

    uv_loop_t         loop;
    uv_async_t        async;
    uv_timer_t        tick;
    struct raft_uv_transport transport;
    struct raft_io    io;
    struct raft_fsm   fsm_if;
    struct raft       raft;
    pthread_t         thread;

    /* loop thread (invariant 1) */
    rn_fsm_t          fsm;
    seen_t            seen[RN_CLUSTER_MAX_NODES];
    size_t            nseen;
    int               was_leader, ready, barrier_pending;
    int64_t           hb_sent_ms;
    rn_rpc_t         *rpc;
    char              rpc_target[RN_CLUSTER_ADDR_MAX];
    uint64_t          last_leader;
    uint64_t          known_leader;     /* the last leader known (never 0 once one was) */
    atomic_int        hb_inflight;

    rn_ctl_topics_t  *tblk;             /* the topics the last view shares */
    int               qinflight;        /* queue (LEADER) proposals in flight */
    isrq_t            hb_isr[QUEUE_CAP];   /* a follower's own ISR asks, for its heartbeat */
    size_t            nhb_isr;

    /* invariant 2 */
    pthread_mutex_t   qmu;
    pthread_cond_t    qcv;              /* a treq is done */
    input_t           q[QUEUE_CAP];
    size_t            qn;
    treq_t           *treqs;            /* CreateTopic requests not yet taken */
    isrq_t            isrs[QUEUE_CAP];
    size_t            nisrs;
    rn_ctl_end_t     *ends[RN_CLUSTER_MAX_NODES];   /* per slot of end_ids; self's too */
    size_t            nends[RN_CLUSTER_MAX_NODES];
    uint64_t          end_ids[RN_CLUSTER_MAX_NODES];  /* the node of each slot; 0 free */
    oreq_t           *oreqs;            /* CommitOffsets not yet taken */
    int               stopping;
    pthread_mutex_t   vmu;
    rn_ctl_view_t    *view;

    /* invariant 10 */
    pthread_mutex_t   omu;
    pthread_cond_t    ocv;              /* o_written moved */
    rn_fsm_goff_t    *pend;
    size_t            npend, cappend;
    uint64_t          o_applied, o_written;
    int               o_resync;         /* the taker failed: give everything again */
    int               oinflight;        /* loop thread: OFFSETS proposals in flight */
    oreq_t           *owait;            /* loop thread: commits waiting for them */
    uint64_t          o_apply_index;    /* loop thread: the last OFFSETS entry applied */
};

typedef struct proposal {
    struct raft_apply req;
    rn_ctl_t         *c;
    uint64_t          id;
    int               queue;            /* a LEADER proposal (c->qinflight) */
    treq_t           *t;                /* a TOPIC proposal's request */
    oreq_t           *o;                /* an OFFSETS proposal's requests (a list) */
} proposal_t;

static void treq_done(rn_ctl_t *c, treq_t *t, int rc, uint64_t leader, const char *err);
static void queue_upkeep(rn_ctl_t *c);
static void oreq_done(rn_ctl_t *c, oreq_t *o, int rc, uint64_t leader, uint64_t index,
                      const char *err);
static int  apply_offsets(rn_ctl_t *c, const struct raft_buffer *buf, char *err);
static void offsets_nudge(rn_ctl_t *c);
static void offsets_flush(rn_ctl_t *c);
static void oreqs_fail(rn_ctl_t *c, oreq_t *list, int rc, uint64_t leader, const char *err);
static void pend_all(rn_ctl_t *c);

static int64_t mono_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- flags ----------------------------------------------------------------- */

static int parse_id(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 10) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < 1 || v > UINT32_MAX) return -1;
    *out = v;
    return 0;
}

int rn_cluster_conf_parse(const char *self_text, const char *spec, rn_cluster_conf_t *out,
                          char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (parse_id(self_text, strlen(self_text), &out->self) != 0)
        return rn_errf(errmsg, RN_EINVAL, "--node-id: '%.40s' is not a node id: give an integer "
                       "in 1..4294967295", self_text);
    char hosts[RN_CLUSTER_MAX_NODES][RN_CLUSTER_ADDR_MAX];
    int ports[RN_CLUSTER_MAX_NODES];
    const char *p = spec;
    for (size_t k = 1;; k++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return rn_errf(errmsg, RN_EINVAL, "--cluster: entry %zu '%.*s' is not ID=HOST:PORT "
                           "(give e.g. 1=127.0.0.1:9001,2=127.0.0.1:9002,3=127.0.0.1:9003)", k,
                           (int)(len > 60 ? 60 : len), p);
        uint64_t id;
        if (parse_id(p, (size_t)(eq - p), &id) != 0)
            return rn_errf(errmsg, RN_EINVAL, "--cluster: entry %zu: '%.*s' is not a node id: "
                           "give an integer in 1..4294967295", k, (int)(eq - p > 40 ? 40 : eq - p),
                           p);
        if (out->n == RN_CLUSTER_MAX_NODES)
            return rn_errf(errmsg, RN_EINVAL, "--cluster: more than %d nodes",
                           RN_CLUSTER_MAX_NODES);
        size_t alen = len - (size_t)(eq + 1 - p);
        rn_cluster_peer_t *pe = &out->peers[out->n];
        if (alen >= sizeof pe->addr)
            return rn_errf(errmsg, RN_EINVAL, "--cluster: node %llu: the address is longer than "
                           "%d bytes", (unsigned long long)id, RN_CLUSTER_ADDR_MAX - 1);
        memcpy(pe->addr, eq + 1, alen);
        pe->addr[alen] = '\0';
        pe->id = id;
        char err[RN_ERRMSG_SIZE];
        if (rn_addr_split(pe->addr, hosts[out->n], sizeof hosts[0], &ports[out->n], 0, err) != 0)
            return rn_errf(errmsg, RN_EINVAL, "--cluster: node %llu: %s", (unsigned long long)id,
                           err);
        if (pe->addr[0] == '[')
            return rn_errf(errmsg, RN_EINVAL, "--cluster: node %llu: '%s': give an IPv4 address "
                           "or a host name (IPv6 raft addresses are not supported)",
                           (unsigned long long)id, pe->addr);
        for (size_t i = 0; i < out->n; i++) {
            if (out->peers[i].id == id)
                return rn_errf(errmsg, RN_EINVAL, "--cluster: node id %llu appears twice; each "
                               "node needs its own id", (unsigned long long)id);
            if (ports[i] == ports[out->n] && !strcmp(hosts[i], hosts[out->n]))
                return rn_errf(errmsg, RN_EINVAL, "--cluster: nodes %llu and %llu have the same "
                               "address %s; each node needs its own raft address",
                               (unsigned long long)out->peers[i].id, (unsigned long long)id,
                               pe->addr);
        }
        out->n++;
        if (!end) break;
        p = end + 1;
    }
    for (size_t i = 0; i < out->n; i++)
        if (out->peers[i].id == out->self) return 0;
    return rn_errf(errmsg, RN_EINVAL, "--node-id %llu is not one of the ids of --cluster; give "
                   "this node's own id from that list", (unsigned long long)out->self);
}

/* ---- the view -------------------------------------------------------------- */

const char *rn_ctl_role_name(rn_ctl_role_t r)
{
    switch (r) {
    case RN_CTL_LEADER: return "leader";
    case RN_CTL_FOLLOWER: return "follower";
    case RN_CTL_CANDIDATE: return "candidate";
    default: return "unavailable";
    }
}

const rn_ctl_view_t *rn_ctl_view_get(rn_ctl_t *c)
{
    pthread_mutex_lock(&c->vmu);
    rn_ctl_view_t *v = c->view;
    __atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&c->vmu);
    return v;
}

static void tblk_put(rn_ctl_topics_t *b)
{
    if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        rn_fsm_topics_free(b->t, b->n);
        free(b);
    }
}

void rn_ctl_view_put(const rn_ctl_view_t *cv)
{
    rn_ctl_view_t *v = (rn_ctl_view_t *)cv;
    if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        tblk_put(v->tblk);
        free(v);
    }
}

const rn_ctl_vnode_t *rn_ctl_view_node(const rn_ctl_view_t *v, uint64_t id)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->nodes[i].id == id) return &v->nodes[i];
    return NULL;
}

const rn_fsm_pq_t *rn_ctl_view_queue(const rn_ctl_view_t *v, const char *topic, uint32_t queue)
{
    size_t lo = 0, hi = v->ntopics;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(v->topics[mid].name, topic);
        if (cmp == 0) return queue < v->topics[mid].nqueues ? &v->topics[mid].q[queue] : NULL;
        if (cmp < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static seen_t *seen_find(rn_ctl_t *c, uint64_t id, int add, int64_t now)
{
    for (size_t i = 0; i < c->nseen; i++)
        if (c->seen[i].id == id) return &c->seen[i];
    if (!add || c->nseen == RN_CLUSTER_MAX_NODES) return NULL;
    seen_t *s = &c->seen[c->nseen++];
    s->id = id;
    s->at_ms = now;
    s->pending = 0;
    return s;
}

static rn_ctl_vnode_t *vnode(rn_ctl_view_t *v, uint64_t id)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->nodes[i].id == id) return &v->nodes[i];
    if (v->n == RN_CLUSTER_MAX_NODES) return NULL;
    size_t at = v->n;
    while (at > 0 && v->nodes[at - 1].id > id) at--;
    memmove(&v->nodes[at + 1], &v->nodes[at], (v->n - at) * sizeof v->nodes[0]);
    v->n++;
    rn_ctl_vnode_t *nd = &v->nodes[at];
    memset(nd, 0, sizeof *nd);
    nd->id = id;
    nd->heartbeat_age_ms = -1;
    return nd;
}

/* Loop thread: build a new view and swap it in (invariant 2). */
static void publish(rn_ctl_t *c)
{
    rn_ctl_view_t *v = calloc(1, sizeof *v);
    if (!v) return;                      /* readers keep the previous view */
    v->refs = 1;
    v->self = c->conf.self;
    int st = raft_state(&c->raft);
    v->role = st == RAFT_LEADER ? RN_CTL_LEADER : st == RAFT_FOLLOWER ? RN_CTL_FOLLOWER
              : st == RAFT_CANDIDATE ? RN_CTL_CANDIDATE : RN_CTL_UNAVAILABLE;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&c->raft, &lid, &laddr);
    v->leader = lid;
    v->term = c->raft.current_term;
    v->commit_index = c->raft.commit_index;
    v->applied_index = raft_last_applied(&c->raft);
    for (unsigned i = 0; i < c->raft.configuration.n; i++) {
        const struct raft_server *s = &c->raft.configuration.servers[i];
        rn_ctl_vnode_t *nd = vnode(v, s->id);
        if (!nd) break;
        snprintf(nd->raft, sizeof nd->raft, "%s", s->address ? s->address : "");
        snprintf(nd->role, sizeof nd->role, "%s", s->role == RAFT_VOTER ? "voter"
                 : s->role == RAFT_STANDBY ? "standby" : "spare");
    }
    int64_t now = mono_ms();
    for (size_t i = 0; i < c->fsm.n; i++) {
        const rn_fsm_node_t *f = &c->fsm.nodes[i];
        rn_ctl_vnode_t *nd = vnode(v, f->id);
        if (!nd) break;
        snprintf(nd->client, sizeof nd->client, "%s", f->client);
        if (!nd->role[0]) snprintf(nd->role, sizeof nd->role, "removed");
        snprintf(nd->kafka, sizeof nd->kafka, "%s", f->kafka);
        nd->live = f->live;
        nd->incarnation = f->incarnation;
        nd->live_changed_ms = f->live_changed_ms;
        const seen_t *s = st == RAFT_LEADER ? seen_find(c, f->id, 0, 0) : NULL;
        if (s) nd->heartbeat_age_ms = now - s->at_ms;
    }
    const rn_fsm_node_t *me = rn_fsm_find(&c->fsm, c->conf.self);
    v->self_current = me && me->live && me->start_id == c->start_id;
    if (!c->tblk || c->tblk->gen != c->fsm.topics_gen) {
        rn_ctl_topics_t *b = calloc(1, sizeof *b);
        int ok = 0;
        if (b) b->t = rn_fsm_topics_copy(c->fsm.topics, c->fsm.ntopics, &ok);
        if (!b || !ok) {
            free(b);
            free(v);
            return;                      /* readers keep the previous view */
        }
        b->refs = 1;
        b->gen = c->fsm.topics_gen;
        b->n = c->fsm.ntopics;
        b->ntombs = c->fsm.ntombs;
        memcpy(b->tombs, c->fsm.tombs, c->fsm.ntombs * sizeof b->tombs[0]);
        tblk_put(c->tblk);
        c->tblk = b;
    }
    __atomic_add_fetch(&c->tblk->refs, 1, __ATOMIC_RELAXED);
    v->tblk = c->tblk;
    v->topics = c->tblk->t;
    v->ntopics = c->tblk->n;
    v->tombs = c->tblk->tombs;
    v->topics_gen = c->tblk->gen;
    v->ntombs = c->tblk->ntombs;
    pthread_mutex_lock(&c->vmu);
    rn_ctl_view_t *old = c->view;
    c->view = v;
    pthread_mutex_unlock(&c->vmu);
    rn_ctl_view_put(old);
}

/* ---- the FSM callbacks (loop thread) ------------------------------------- */

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    rn_ctl_t *c = fsm->data;
    rn_fsm_cmd_t cmd;
    char err[RN_ERRMSG_SIZE];
    if (buf->len >= 2 && ((const uint8_t *)buf->base)[1] == RN_FSM_OFFSETS) {
        *result = (void *)(intptr_t)apply_offsets(c, buf, err);
        return 0;
    }
    int rc = rn_fsm_cmd_decode(buf->base, buf->len, &cmd, err);
    int decoded = rc == 0;
    if (rc == 0) rc = rn_fsm_apply(&c->fsm, &cmd, err);
    if (rc != 0 && decoded && (cmd.type == RN_FSM_TOPIC || cmd.type == RN_FSM_LEADER))
        rn_slog(RN_SLOG_INFO, "controller: entry not applied: %s", err);  /* the proposer hears */
    else if (rc != 0) rn_slog(RN_SLOG_ERROR, "controller: entry skipped: %s", err);   /* inv. 5 */
    else if (cmd.type == RN_FSM_REGISTER)
        rn_slog(RN_SLOG_INFO, "controller: node %llu registered, client address %s%s%s",
                (unsigned long long)cmd.id, cmd.client, cmd.kafka[0] ? ", Kafka address " : "",
                cmd.kafka);
    else if (cmd.type == RN_FSM_FENCE)
        rn_slog(RN_SLOG_WARN, "controller: node %llu fenced: no heartbeat for %d ms",
                (unsigned long long)cmd.id, RN_CTL_SESSION_MS);
    else if (cmd.type == RN_FSM_TOPIC)
        rn_slog(RN_SLOG_INFO, "controller: topic '%s' with %u queues", cmd.topic, cmd.nqueues);
    else
        rn_slog(RN_SLOG_INFO, "controller: '%s'/%u: leader %llu, epoch %llu, %u in sync",
                cmd.topic, cmd.queue, (unsigned long long)cmd.id,
                (unsigned long long)cmd.epoch, cmd.q[0].nisr);
    *result = (void *)(intptr_t)rc;     /* the proposer's on_applied reads it */
    publish(c);
    return 0;
}

/* libraft frees the buffers once it has written the snapshot. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    rn_ctl_t *c = fsm->data;
    struct raft_buffer *b = raft_malloc(sizeof *b);
    if (!b) return RAFT_NOMEM;
    b->base = raft_malloc(rn_fsm_snapshot_bound(&c->fsm));
    if (!b->base) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    b->len = rn_fsm_snapshot_encode(&c->fsm, b->base);
    *bufs = b;
    *n_bufs = 1;
    return 0;
}

/* On success the FSM owns buf->base (libraft's contract). */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    rn_ctl_t *c = fsm->data;
    char err[RN_ERRMSG_SIZE];
    if (rn_fsm_snapshot_decode(&c->fsm, buf->base, buf->len, err) != 0) {
        rn_slog(RN_SLOG_ERROR, "controller: %s", err);
        return RAFT_CORRUPT;
    }
    raft_free(buf->base);
    pend_all(c);                                                  /* invariant 10 */
    return 0;
}

/* ---- leader: proposals, registers, fences --------------------------------- */

static void on_applied(struct raft_apply *req, int status, void *result)
{
    proposal_t *p = req->data;
    if (p->o) {
        int rc = status != 0 ? -EAGAIN : (int)(intptr_t)result;
        char err[RN_ERRMSG_SIZE] = "";
        if (status != 0)
            snprintf(err, sizeof err, "the controller lost its leadership before the offsets "
                     "were committed (%s); retry", raft_strerror(status));
        else if (rc != 0)
            snprintf(err, sizeof err, "the offsets were not applied: %s", rn_strerror(rc));
        /* libraft calls back right after applying the entry (invariant 10) */
        if (status == 0 && p->req.index != p->c->o_apply_index)
            rn_slog(RN_SLOG_ERROR, "controller: offsets entry %llu applied as %llu",
                    (unsigned long long)p->req.index,
                    (unsigned long long)p->c->o_apply_index);
        while (p->o) {
            oreq_t *o = p->o;
            p->o = o->next;
            oreq_done(p->c, o, rc, 0, status == 0 ? p->req.index : 0, err);
        }
        p->c->oinflight--;
        if (p->c->owait) offsets_flush(p->c);   /* the commits that waited: one entry */
        else if (p->c->oinflight == 0 && status == 0) offsets_nudge(p->c);
    } else if (p->t) {
        int rc = status != 0 ? -EAGAIN : (int)(intptr_t)result;
        char err[RN_ERRMSG_SIZE] = "";
        if (status != 0)
            snprintf(err, sizeof err, "the controller lost its leadership before the %s "
                     "was committed (%s); retry", p->t->kind == TREQ_TOPIC ? "topic" :
                     p->t->kind == TREQ_GROW ? "new queues" : p->t->kind == TREQ_DROP ?
                     "deletion" : "reassignment",
                     raft_strerror(status));
        else if (rc != 0 && p->t->kind == TREQ_DROP)
            snprintf(err, sizeof err, "topic '%.100s' was deleted meanwhile", p->t->name);
        else if (rc != 0 && p->t->kind == TREQ_GROW)
            snprintf(err, sizeof err, "topic '%.100s' changed while its new queues were "
                     "proposed; retry", p->t->name);
        else if (rc != 0 && p->t->kind == TREQ_REASSIGN)
            snprintf(err, sizeof err, "'%.100s'/%u changed while the reassignment was "
                     "proposed (a new leader or epoch); retry", p->t->name, p->t->queue);
        else if (rc == RN_EEXIST)
            snprintf(err, sizeof err, "topic '%.200s' exists", p->t->name);
        else if (rc != 0)
            snprintf(err, sizeof err, "topic '%.200s' was not applied: %s", p->t->name,
                     rn_strerror(rc));
        treq_done(p->c, p->t, rc, 0, err);
    } else if (p->queue) {
        p->c->qinflight--;
    } else {
        seen_t *s = seen_find(p->c, p->id, 0, 0);
        if (s) s->pending = 0;                                     /* invariant 3 */
        /* A node fenced: move its queues now rather than at the next tick. */
        if (status == 0 && raft_state(&p->c->raft) == RAFT_LEADER && p->c->ready)
            queue_upkeep(p->c);
    }
    if (status != 0)
        rn_slog(RN_SLOG_DEBUG, "controller: proposal not applied: %s", raft_strerror(status));
    free(p);
}

/* raft_apply cmd; 0, or -1 when it could not be proposed (logged). */
static int propose_cmd(rn_ctl_t *c, const rn_fsm_cmd_t *cmd, int queue, treq_t *t)
{
    static uint8_t tmp[RN_FSM_CMD_MAX];      /* loop thread only (invariant 1) */
    size_t len;
    if (rn_fsm_cmd_encode(cmd, tmp, &len) != 0) return -1;
    struct raft_buffer buf = {raft_malloc(len), len};
    proposal_t *p = calloc(1, sizeof *p);
    if (!buf.base || !p) {
        raft_free(buf.base);
        free(p);
        return -1;
    }
    memcpy(buf.base, tmp, len);
    p->req.data = p;
    p->c = c;
    p->id = cmd->id;
    p->queue = queue;
    p->t = t;
    int rv = raft_apply(&c->raft, &p->req, &buf, 1, on_applied);
    if (rv != 0) {
        rn_slog(RN_SLOG_DEBUG, "controller: cannot propose: %s", raft_strerror(rv));
        raft_free(buf.base);
        free(p);
        return -1;
    }
    if (queue) c->qinflight++;
    return 0;
}

static void propose(rn_ctl_t *c, const rn_fsm_cmd_t *cmd, seen_t *s)
{
    if (propose_cmd(c, cmd, 0, NULL) == 0) s->pending = 1;
}

/* ---- leader: topics and queues ------------------------------------------- */

/* Node id's entry in the raft configuration, or NULL (removed, or never a
 * member). */
static const struct raft_server *conf_server(const rn_ctl_t *c, uint64_t id)
{
    for (unsigned i = 0; i < c->raft.configuration.n; i++)
        if (c->raft.configuration.servers[i].id == id) return &c->raft.configuration.servers[i];
    return NULL;
}

/* Live: registered, not fenced, and still in the raft configuration (a
 * removed node gets no replicas and leads nothing). */
static int node_live(const rn_ctl_t *c, uint64_t id)
{
    const rn_fsm_node_t *nd = rn_fsm_find(&c->fsm, id);
    return nd && nd->live && nd->client[0] && conf_server(c, id);
}

static void treq_done(rn_ctl_t *c, treq_t *t, int rc, uint64_t leader, const char *err)
{
    pthread_mutex_lock(&c->qmu);
    t->rc = rc;
    t->leader = leader;
    snprintf(t->err, sizeof t->err, "%s", err);
    t->done = 1;
    int last = --t->refs == 0;
    pthread_cond_broadcast(&c->qcv);
    pthread_mutex_unlock(&c->qmu);
    if (last) free(t);
}

/* Replica sets and leaders for queues first..cmd->nqueues-1 of topic name
 * into cmd->q[0..): r of the n live nodes each, leaders spread over them,
 * each topic starting on a node of its own (a hash of its name). */
static void place(rn_fsm_cmd_t *cmd, const char *name, uint32_t first, const uint64_t *live,
                  uint32_t n, uint32_t r)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    for (uint32_t k = first; k < cmd->nqueues; k++) {
        rn_fsm_pq_t *q = &cmd->q[k - first];
        q->nrep = r;
        for (uint32_t j = 0; j < r; j++) q->replicas[j] = live[(h + k + j) % n];
        q->leader = q->replicas[0];
    }
}

/* A CreateTopic reached the loop: propose its TOPIC entry, or answer. */
static void take_topic(rn_ctl_t *c, treq_t *t)
{
    static rn_fsm_cmd_t cmd;                  /* loop thread only; large */
    char err[RN_ERRMSG_SIZE];
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        treq_done(c, t, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    if (rn_fsm_topic_find(&c->fsm, t->name)) {
        snprintf(err, sizeof err, "topic '%.200s' exists", t->name);
        treq_done(c, t, RN_EEXIST, 0, err);
        return;
    }
    uint64_t live[RN_CLUSTER_MAX_NODES];
    uint32_t n = 0;
    for (size_t i = 0; i < c->fsm.n; i++)
        if (node_live(c, c->fsm.nodes[i].id)) live[n++] = c->fsm.nodes[i].id;
    uint32_t total = c->raft.configuration.n;
    uint32_t r = t->replicas ? t->replicas
                             : (total < RN_CTL_DEFAULT_REPLICAS ? total : RN_CTL_DEFAULT_REPLICAS);
    if (r > total) {
        snprintf(err, sizeof err, "--replicas %u: the cluster has %u nodes; give 1..%u", r, total,
                 total);
        treq_done(c, t, RN_EINVAL, 0, err);
        return;
    }
    if (r > n) {
        snprintf(err, sizeof err, "%u replicas need %u live nodes; %u are live now", r, r, n);
        treq_done(c, t, -EBUSY, 0, err);
        return;
    }
    if (t->nqueues < 1 || t->nqueues > RN_FSM_MAX_QUEUES) {
        snprintf(err, sizeof err, "a replicated topic has 1..%d queues, not %u",
                 RN_FSM_MAX_QUEUES, t->nqueues);
        treq_done(c, t, RN_EINVAL, 0, err);
        return;
    }
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_TOPIC;
    cmd.at_ms = wall_ms();
    snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
    cmd.nqueues = t->nqueues;
    place(&cmd, t->name, 0, live, n, r);
    if (propose_cmd(c, &cmd, 0, t) != 0)
        treq_done(c, t, -EAGAIN, 0, "the controller could not propose the topic; retry");
}

/* A DeleteTopic of a replicated topic reached the loop: propose its DROP
 * entry, or answer. */
static void take_drop(rn_ctl_t *c, treq_t *t)
{
    static rn_fsm_cmd_t cmd;                  /* loop thread only; large */
    char err[RN_ERRMSG_SIZE];
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        treq_done(c, t, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    if (!rn_fsm_topic_find(&c->fsm, t->name)) {
        snprintf(err, sizeof err, "unknown topic '%.150s' (no replicated topic, nor a topic of "
                 "the node asked, has that name)", t->name);
        treq_done(c, t, RN_ENOTFOUND, 0, err);
        return;
    }
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_DROP;
    cmd.at_ms = wall_ms();
    snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
    if (propose_cmd(c, &cmd, 0, t) != 0)
        treq_done(c, t, -EAGAIN, 0, "the controller could not propose the deletion; retry");
}

/* An AlterTopic of a replicated topic reached the loop: propose the GROW
 * entry (the new queues placed as a new topic's are, with the topic's
 * replica count), or answer. */
static void take_grow(rn_ctl_t *c, treq_t *t)
{
    static rn_fsm_cmd_t cmd;                  /* loop thread only; large */
    char err[RN_ERRMSG_SIZE];
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        treq_done(c, t, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    const rn_fsm_topic_t *tp = rn_fsm_topic_find(&c->fsm, t->name);
    if (!tp) {
        snprintf(err, sizeof err, "unknown topic '%.150s' (no replicated topic, nor a topic of "
                 "the node asked, has that name)", t->name);
        treq_done(c, t, RN_ENOTFOUND, 0, err);
        return;
    }
    if (t->nqueues <= tp->nqueues || t->nqueues > RN_FSM_MAX_QUEUES) {
        snprintf(err, sizeof err, "topic '%.100s' has %u queues: a replicated topic grows, to "
                 "at most %d", t->name, tp->nqueues, RN_FSM_MAX_QUEUES);
        treq_done(c, t, RN_EINVAL, 0, err);
        return;
    }
    uint64_t live[RN_CLUSTER_MAX_NODES];
    uint32_t n = 0, r = tp->q[0].nrep;
    for (size_t i = 0; i < c->fsm.n; i++)
        if (node_live(c, c->fsm.nodes[i].id)) live[n++] = c->fsm.nodes[i].id;
    if (r > n) {
        snprintf(err, sizeof err, "its queues have %u replicas, and %u nodes are live now", r, n);
        treq_done(c, t, -EBUSY, 0, err);
        return;
    }
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_GROW;
    cmd.at_ms = wall_ms();
    snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
    cmd.queue = tp->nqueues;
    cmd.nqueues = t->nqueues;
    place(&cmd, t->name, tp->nqueues, live, n, r);
    if (propose_cmd(c, &cmd, 0, t) != 0)
        treq_done(c, t, -EAGAIN, 0, "the controller could not propose the new queues; retry");
}

/* Commit an ISR asked for by a queue's leader, when it still checks. */
static void take_isr(rn_ctl_t *c, const isrq_t *r)
{
    const rn_fsm_topic_t *t = rn_fsm_topic_find(&c->fsm, r->topic);
    if (!t || r->queue >= t->nqueues) return;
    const rn_fsm_pq_t *pq = &t->q[r->queue];
    if (pq->leader != r->from || pq->epoch != r->epoch || r->nisr == 0 ||
        !rn_fsm_has(r->isr, r->nisr, r->from))
        return;
    int same = r->nisr == pq->nisr;
    for (uint32_t i = 0; i < r->nisr; i++) {
        if (!rn_fsm_has(pq->replicas, pq->nrep, r->isr[i])) return;
        if (!rn_fsm_has(pq->isr, pq->nisr, r->isr[i]) && !node_live(c, r->isr[i])) return;
        if (!rn_fsm_has(pq->isr, pq->nisr, r->isr[i])) same = 0;
    }
    if (same) return;
    static rn_fsm_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_LEADER;
    cmd.id = pq->leader;
    cmd.at_ms = wall_ms();
    snprintf(cmd.topic, sizeof cmd.topic, "%s", r->topic);
    cmd.queue = r->queue;
    cmd.prev_epoch = cmd.epoch = pq->epoch;
    cmd.q[0].nisr = r->nisr;
    memcpy(cmd.q[0].isr, r->isr, r->nisr * sizeof r->isr[0]);
    propose_cmd(c, &cmd, 1, NULL);
}

/* The slot of node id's log ends (under qmu): its own, else a free one
 * when add (nodes join after the start), else -1. */
static int peer_index(rn_ctl_t *c, uint64_t id, int add)
{
    int free_slot = -1;
    for (int i = 0; i < RN_CLUSTER_MAX_NODES; i++) {
        if (c->end_ids[i] == id) return i;
        if (!c->end_ids[i] && free_slot < 0) free_slot = i;
    }
    if (!add || free_slot < 0) return -1;
    c->end_ids[free_slot] = id;
    c->nends[free_slot] = 0;
    return free_slot;
}

/* The log end node id last reported for (topic, queue); -1 unknown. */
static int64_t reported_end(rn_ctl_t *c, uint64_t id, const char *topic, uint32_t queue)
{
    int64_t end = -1;
    pthread_mutex_lock(&c->qmu);
    int k = peer_index(c, id, 0);
    for (size_t i = 0; k >= 0 && i < c->nends[k]; i++)
        if (c->ends[k][i].queue == queue && !strcmp(c->ends[k][i].topic, topic))
            end = c->ends[k][i].end;
    pthread_mutex_unlock(&c->qmu);
    return end;
}

static void store_ends(rn_ctl_t *c, uint64_t id, const rn_ctl_end_t *e, size_t n)
{
    if (n > RN_CTL_MAX_ENDS) n = RN_CTL_MAX_ENDS;
    pthread_mutex_lock(&c->qmu);
    int k = peer_index(c, id, 1);
    if (k >= 0 && c->ends[k]) {
        memcpy(c->ends[k], e, n * sizeof *e);
        c->nends[k] = n;
    }
    pthread_mutex_unlock(&c->qmu);
}

void rn_ctl_set_log_ends(rn_ctl_t *c, const rn_ctl_end_t *e, size_t n)
{
    store_ends(c, c->conf.self, e, n);
}

void rn_ctl_peer_log_ends(rn_ctl_t *c, uint64_t id, const rn_ctl_end_t *e, size_t n)
{
    if (id != c->conf.self) store_ends(c, id, e, n);
}

/* Failover and ISR upkeep over every queue (the ready leader, every tick):
 * a dead leader gives way to the first live ISR member (epoch + 1); a live
 * leader's ISR loses members that are not live. One round of proposals at
 * a time (qinflight), so a tick never proposes what the last one did. */
static void queue_upkeep(rn_ctl_t *c)
{
    static rn_fsm_cmd_t cmd;
    if (c->qinflight) return;
    for (size_t i = 0; i < c->fsm.ntopics; i++) {
        const rn_fsm_topic_t *t = &c->fsm.topics[i];
        for (uint32_t k = 0; k < t->nqueues; k++) {
            const rn_fsm_pq_t *pq = &t->q[k];
            uint64_t lead = pq->leader;
            int lead_live = lead && node_live(c, lead);
            if (lead && !lead_live) {
                lead = 0;                     /* the live ISR member with the longest log */
                int64_t best = -2;
                for (uint32_t j = 0; j < pq->nisr; j++) {
                    if (pq->isr[j] == pq->leader || !node_live(c, pq->isr[j])) continue;
                    int64_t e = reported_end(c, pq->isr[j], t->name, k);
                    if (e > best) {
                        best = e;
                        lead = pq->isr[j];
                    }
                }
                if (!lead) continue;          /* no unclean election: wait for the ISR */
            } else if (!lead) {
                continue;
            }
            memset(&cmd, 0, sizeof cmd);
            for (uint32_t j = 0; j < pq->nisr; j++)
                if (pq->isr[j] == lead || node_live(c, pq->isr[j]))
                    cmd.q[0].isr[cmd.q[0].nisr++] = pq->isr[j];
            if (lead == pq->leader && cmd.q[0].nisr == pq->nisr) continue;
            cmd.type = RN_FSM_LEADER;
            cmd.id = lead;
            cmd.at_ms = wall_ms();
            snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
            cmd.queue = k;
            cmd.prev_epoch = pq->epoch;
            cmd.epoch = lead == pq->leader ? pq->epoch : pq->epoch + 1;
            if (lead != pq->leader)
                rn_slog(RN_SLOG_WARN, "controller: '%s'/%u: leader %llu is not live; node %llu "
                        "takes over at epoch %llu", t->name, k, (unsigned long long)pq->leader,
                        (unsigned long long)lead, (unsigned long long)cmd.epoch);
            propose_cmd(c, &cmd, 1, NULL);
        }
    }
}

/* A heartbeat reached the ready leader. */
static void heard(rn_ctl_t *c, const input_t *in, int64_t now)
{
    seen_t *s = seen_find(c, in->id, 1, now);
    if (!s) return;
    s->at_ms = now;
    const rn_fsm_node_t *nd = rn_fsm_find(&c->fsm, in->id);
    if (s->pending || (nd && nd->live && nd->start_id == in->start_id &&
                       !strcmp(nd->client, in->client) && !strcmp(nd->kafka, in->kafka)))
        return;
    rn_fsm_cmd_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_REGISTER;
    cmd.id = in->id;
    cmd.start_id = in->start_id;
    cmd.at_ms = wall_ms();
    snprintf(cmd.client, sizeof cmd.client, "%s", in->client);
    snprintf(cmd.kafka, sizeof cmd.kafka, "%s", in->kafka);
    propose(c, &cmd, s);
}

static void fence_silent(rn_ctl_t *c, int64_t now)
{
    for (size_t i = 0; i < c->fsm.n; i++) {
        const rn_fsm_node_t *nd = &c->fsm.nodes[i];
        if (!nd->live || nd->id == c->conf.self) continue;
        seen_t *s = seen_find(c, nd->id, 1, now);
        if (!s || s->pending || now - s->at_ms <= RN_CTL_SESSION_MS) continue;
        rn_fsm_cmd_t cmd;
        memset(&cmd, 0, sizeof cmd);
        cmd.type = RN_FSM_FENCE;
        cmd.id = nd->id;
        cmd.at_ms = wall_ms();
        propose(c, &cmd, s);
    }
}

static void on_barrier(struct raft_barrier *req, int status)
{
    rn_ctl_t *c = req->data;
    c->barrier_pending = 0;
    if (status == 0 && raft_state(&c->raft) == RAFT_LEADER) c->ready = 1;
    free(req);
}

static void become_leader(rn_ctl_t *c, int64_t now)
{
    rn_slog(RN_SLOG_INFO, "controller: node %llu is the controller leader (term %llu)",
            (unsigned long long)c->conf.self, (unsigned long long)c->raft.current_term);
    for (size_t i = 0; i < c->nseen; i++) c->seen[i].at_ms = now;
    /* The previous leader was not heard for at least an election timeout
     * (else no election): its session runs from then, so a dead leader's
     * queues move RN_CTL_SESSION_MS - RN_CTL_ELECTION_MS after the election. */
    uint64_t prev = c->known_leader;
    seen_t *ps = prev && prev != c->conf.self ? seen_find(c, prev, 1, now) : NULL;
    if (ps) ps->at_ms = now - RN_CTL_ELECTION_MS;
    c->ready = 0;
}

/* ---- follower: heartbeats to the leader ------------------------------------ */

static void hb_done(void *arg, int rc, ProtobufCMessage *resp, int status, const char *errmsg)
{
    (void)status;
    rn_ctl_t *c = arg;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    if (rc != 0) rn_slog(RN_SLOG_DEBUG, "controller: heartbeat not taken: %s", errmsg);
    atomic_store(&c->hb_inflight, 0);
}

static void send_heartbeat(rn_ctl_t *c, uint64_t leader, int64_t now)
{
    if (now - c->hb_sent_ms < RN_CTL_HEARTBEAT_MS || atomic_load(&c->hb_inflight)) return;
    const rn_fsm_node_t *nd = rn_fsm_find(&c->fsm, leader);
    if (!nd || !nd->client[0]) return;   /* the leader registers itself first */
    char err[RN_ERRMSG_SIZE];
    if (c->rpc && strcmp(c->rpc_target, nd->client) != 0) {
        rn_rpc_close(c->rpc);            /* its pending call ends, hb_done runs */
        c->rpc = NULL;
    }
    if (!c->rpc) {
        if (rn_rpc_open(nd->client, &c->rpc, err) != 0) {
            rn_slog(RN_SLOG_WARN, "controller: leader %llu's address: %s",
                    (unsigned long long)leader, err);
            c->hb_sent_ms = now;
            return;
        }
        snprintf(c->rpc_target, sizeof c->rpc_target, "%s", nd->client);
    }
    Runnel__V1__ClusterHeartbeatRequest req;
    runnel__v1__cluster_heartbeat_request__init(&req);
    req.node_id = c->conf.self;
    req.client_address = c->client;
    req.kafka_address = c->kafka;
    req.start_id = c->start_id;
    Runnel__V1__ClusterIsrChange ch[QUEUE_CAP], *chp[QUEUE_CAP];
    for (size_t i = 0; i < c->nhb_isr; i++) {
        runnel__v1__cluster_isr_change__init(&ch[i]);
        ch[i].topic = c->hb_isr[i].topic;
        ch[i].queue = c->hb_isr[i].queue;
        ch[i].epoch = c->hb_isr[i].epoch;
        ch[i].n_isr = c->hb_isr[i].nisr;
        ch[i].isr = c->hb_isr[i].isr;
        chp[i] = &ch[i];
    }
    req.n_isr_changes = c->nhb_isr;
    req.isr_changes = chp;
    static rn_ctl_end_t mine[RN_CTL_MAX_ENDS];          /* loop thread only */
    static Runnel__V1__ClusterLogEnd le[RN_CTL_MAX_ENDS], *lep[RN_CTL_MAX_ENDS];
    size_t nmine = 0;
    pthread_mutex_lock(&c->qmu);
    int k = peer_index(c, c->conf.self, 0);
    if (k >= 0 && c->ends[k]) {
        nmine = c->nends[k];
        memcpy(mine, c->ends[k], nmine * sizeof mine[0]);
    }
    pthread_mutex_unlock(&c->qmu);
    for (size_t i = 0; i < nmine; i++) {
        runnel__v1__cluster_log_end__init(&le[i]);
        le[i].topic = mine[i].topic;
        le[i].queue = mine[i].queue;
        le[i].end = mine[i].end;
        lep[i] = &le[i];
    }
    req.n_log_ends = nmine;
    req.log_ends = lep;
    c->hb_sent_ms = now;
    atomic_store(&c->hb_inflight, 1);
    if (rn_rpc_call_async(c->rpc, RN_RPC_METHOD("ClusterHeartbeat"), &req.base,
                          &runnel__v1__cluster_heartbeat_response__descriptor,
                          RN_CTL_SESSION_MS / 2, hb_done, c, err) != 0) {
        atomic_store(&c->hb_inflight, 0);
        rn_slog(RN_SLOG_DEBUG, "controller: heartbeat not sent: %s", err);
    }
    c->nhb_isr = 0;                     /* asked again by the queue leader if lost */
}

/* ---- leader: queue reassignment -------------------------------------------- */

/* A ReassignQueue reached the loop: propose the REPLICAS entry that starts
 * it (replicas = the current ones and the target's; fsm.h), or answer. */
static void take_reassign(rn_ctl_t *c, treq_t *t)
{
    static rn_fsm_cmd_t cmd;                  /* loop thread only; large */
    char err[RN_ERRMSG_SIZE];
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        treq_done(c, t, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    const rn_fsm_topic_t *tp = rn_fsm_topic_find(&c->fsm, t->name);
    if (!tp || t->queue >= tp->nqueues) {
        if (tp)
            snprintf(err, sizeof err, "'%.200s' has queues 0..%u, not %u", t->name,
                     tp->nqueues - 1, t->queue);
        else
            snprintf(err, sizeof err, "'%.200s' is not a replicated topic", t->name);
        treq_done(c, t, RN_ENOTFOUND, 0, err);
        return;
    }
    const rn_fsm_pq_t *pq = &tp->q[t->queue];
    for (uint32_t i = 0; i < t->nids; i++) {
        if (rn_fsm_has(t->ids, i, t->ids[i])) {
            snprintf(err, sizeof err, "node %llu is named twice", (unsigned long long)t->ids[i]);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        if (!node_live(c, t->ids[i])) {
            snprintf(err, sizeof err, "node %llu is not a live member of the cluster",
                     (unsigned long long)t->ids[i]);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
    }
    int same = t->nids == pq->nrep;
    for (uint32_t i = 0; same && i < t->nids; i++) same = rn_fsm_has(pq->replicas, pq->nrep,
                                                                    t->ids[i]);
    if (same && !pq->ntarget) {
        snprintf(err, sizeof err, "'%.200s'/%u is on these replicas already", t->name, t->queue);
        treq_done(c, t, RN_EEXIST, 0, err);
        return;
    }
    if (!pq->leader) {
        snprintf(err, sizeof err, "'%.200s'/%u has no leader now; retry", t->name, t->queue);
        treq_done(c, t, -EBUSY, 0, err);
        return;
    }
    memset(&cmd, 0, sizeof cmd);
    cmd.type = RN_FSM_REPLICAS;
    cmd.id = pq->leader;
    cmd.at_ms = wall_ms();
    snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
    cmd.queue = t->queue;
    cmd.prev_epoch = cmd.epoch = pq->epoch;
    /* the current replicas, then the target's others; a replaced target's
     * members that are neither stay until the new one is done */
    rn_fsm_pq_t *q = &cmd.q[0];
    for (uint32_t i = 0; i < pq->nrep; i++) q->replicas[q->nrep++] = pq->replicas[i];
    for (uint32_t i = 0; i < t->nids; i++) {
        if (rn_fsm_has(q->replicas, q->nrep, t->ids[i])) continue;
        if (q->nrep == RN_CLUSTER_MAX_NODES) {
            snprintf(err, sizeof err, "the current and the new replicas together are more "
                     "than %d nodes", RN_CLUSTER_MAX_NODES);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        q->replicas[q->nrep++] = t->ids[i];
    }
    q->ntarget = t->nids;
    memcpy(q->target, t->ids, t->nids * sizeof t->ids[0]);
    rn_slog(RN_SLOG_INFO, "controller: '%s'/%u: reassignment to %u replicas started",
            t->name, t->queue, t->nids);
    if (propose_cmd(c, &cmd, 0, t) != 0)
        treq_done(c, t, -EAGAIN, 0, "the controller could not propose the reassignment; retry");
}

/* Reassignments whose target members are all in the ISR are done: the
 * replicas become the target, and a leader outside it hands over to the
 * target member with the longest log (epoch + 1). One round at a time
 * (qinflight, as queue_upkeep). */
static void reassign_upkeep(rn_ctl_t *c)
{
    static rn_fsm_cmd_t cmd;
    if (c->qinflight) return;
    for (size_t i = 0; i < c->fsm.ntopics; i++) {
        const rn_fsm_topic_t *t = &c->fsm.topics[i];
        for (uint32_t k = 0; k < t->nqueues; k++) {
            const rn_fsm_pq_t *pq = &t->q[k];
            if (!pq->ntarget || !pq->leader || !node_live(c, pq->leader)) continue;
            int ready = 1;
            for (uint32_t j = 0; ready && j < pq->ntarget; j++)
                ready = rn_fsm_has(pq->isr, pq->nisr, pq->target[j]);
            if (!ready) continue;
            uint64_t lead = pq->leader;
            if (!rn_fsm_has(pq->target, pq->ntarget, lead)) {
                int64_t best = -2;
                for (uint32_t j = 0; j < pq->ntarget; j++) {
                    int64_t e = reported_end(c, pq->target[j], t->name, k);
                    if (node_live(c, pq->target[j]) && e > best) {
                        best = e;
                        lead = pq->target[j];
                    }
                }
                if (lead == pq->leader) continue;          /* no live target member yet */
            }
            memset(&cmd, 0, sizeof cmd);
            cmd.type = RN_FSM_REPLICAS;
            cmd.id = lead;
            cmd.at_ms = wall_ms();
            snprintf(cmd.topic, sizeof cmd.topic, "%s", t->name);
            cmd.queue = k;
            cmd.prev_epoch = pq->epoch;
            cmd.epoch = lead == pq->leader ? pq->epoch : pq->epoch + 1;
            cmd.q[0].nrep = pq->ntarget;
            memcpy(cmd.q[0].replicas, pq->target, pq->ntarget * sizeof pq->target[0]);
            rn_slog(RN_SLOG_INFO, "controller: '%s'/%u: reassignment done: %u replicas, leader "
                    "node %llu at epoch %llu", t->name, k, pq->ntarget,
                    (unsigned long long)lead, (unsigned long long)cmd.epoch);
            propose_cmd(c, &cmd, 1, NULL);
            return;                                        /* one round at a time */
        }
    }
}

/* ---- leader: membership changes ------------------------------------------ */

static void on_changed(struct raft_change *req, int status)
{
    treq_t *t = req->data;
    char err[RN_ERRMSG_SIZE] = "";
    if (status != 0)
        snprintf(err, sizeof err, "node %llu: the change was not committed: %s%s",
                 (unsigned long long)t->node, raft_strerror(status), t->kind == TREQ_ADD ?
                 "; the node stays a spare (not voting): start it (runneld --join) and run "
                 "cluster add again" : "");
    else
        rn_slog(RN_SLOG_INFO, "controller: node %llu %s", (unsigned long long)t->node,
                t->kind == TREQ_ADD ? "is a voter now" : "was removed from the configuration");
    treq_done(t->c, t, status == 0 ? 0 : -EIO, 0, err);
}

/* raft_add done: the node is a spare; make it a voter (libraft catches it
 * up first, then commits the role). */
static void on_added(struct raft_change *req, int status)
{
    treq_t *t = req->data;
    if (status == 0) {
        rn_slog(RN_SLOG_INFO, "controller: node %llu (%s) added; promoting it to voter",
                (unsigned long long)t->node, t->addr);
        status = raft_assign(&t->c->raft, &t->change, t->node, RAFT_VOTER, on_changed);
        if (status == 0) return;
    }
    on_changed(req, status);
}

/* The first queue of a replicated topic with node id among its replicas,
 * in where ("'t'/0"); 0 when none. */
static int holds_replicas(const rn_ctl_t *c, uint64_t id, char *where, size_t cap)
{
    for (size_t i = 0; i < c->fsm.ntopics; i++) {
        const rn_fsm_topic_t *t = &c->fsm.topics[i];
        for (uint32_t k = 0; k < t->nqueues; k++)
            for (uint32_t j = 0; j < t->q[k].nrep; j++)
                if (t->q[k].replicas[j] == id) {
                    snprintf(where, cap, "'%.200s'/%u", t->name, k);
                    return 1;
                }
    }
    return 0;
}

/* A ClusterChange reached the loop: start it in raft, or answer. */
static void take_member(rn_ctl_t *c, treq_t *t)
{
    char err[RN_ERRMSG_SIZE];
    unsigned long long id = (unsigned long long)t->node;
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        treq_done(c, t, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    const struct raft_server *sv = conf_server(c, t->node);
    t->change.data = t;
    int rv;
    if (t->kind == TREQ_ADD) {
        for (unsigned i = 0; i < c->raft.configuration.n; i++) {
            const struct raft_server *o = &c->raft.configuration.servers[i];
            if (o->id != t->node && !strcmp(o->address, t->addr)) {
                snprintf(err, sizeof err, "raft address %.80s is node %llu's already", t->addr,
                         (unsigned long long)o->id);
                treq_done(c, t, RN_EINVAL, 0, err);
                return;
            }
        }
        if (sv && strcmp(sv->address, t->addr)) {
            snprintf(err, sizeof err, "node %llu is in the configuration at %.60s, not "
                     "%.60s: remove it first", id, sv->address, t->addr);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        if (sv && sv->role == RAFT_VOTER) {
            snprintf(err, sizeof err, "node %llu is a member already (%s)", id, sv->address);
            treq_done(c, t, RN_EEXIST, 0, err);
            return;
        }
        if (!sv && c->raft.configuration.n >= RN_CLUSTER_MAX_NODES) {
            snprintf(err, sizeof err, "the cluster has %u nodes, the most it can have",
                     c->raft.configuration.n);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        /* A spare left by an earlier add that timed out is promoted again. */
        rv = sv ? raft_assign(&c->raft, &t->change, t->node, RAFT_VOTER, on_changed)
                : raft_add(&c->raft, &t->change, t->node, t->addr, on_added);
    } else {
        char where[RN_FSM_TOPIC_MAX + 32];
        if (!sv) {
            snprintf(err, sizeof err, "node %llu is not in the cluster's configuration", id);
            treq_done(c, t, RN_ENOTFOUND, 0, err);
            return;
        }
        if (t->node == c->conf.self) {
            snprintf(err, sizeof err, "node %llu is the controller leader: stop it (another "
                     "node takes over) and remove it from one of the others", id);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        if (holds_replicas(c, t->node, where, sizeof where)) {
            snprintf(err, sizeof err, "node %llu holds replicas (%.60s first): move them "
                     "to other nodes with runnel queue reassign, then remove it", id, where);
            treq_done(c, t, RN_EINVAL, 0, err);
            return;
        }
        rv = raft_remove(&c->raft, &t->change, t->node, on_changed);
    }
    if (rv != 0) {
        snprintf(err, sizeof err, "node %llu: %s (%.80s)%s", id, raft_strerror(rv),
                 raft_errmsg(&c->raft), rv == RAFT_CANTCHANGE ? "; another change is under "
                 "way: retry when it is done" : "");
        treq_done(c, t, rv == RAFT_CANTCHANGE ? -EBUSY : RN_EINVAL, 0, err);
    }
}

/* ---- group offsets (invariant 10) -------------------------------------------- */

static void oreq_done(rn_ctl_t *c, oreq_t *o, int rc, uint64_t leader, uint64_t index,
                      const char *err)
{
    pthread_mutex_lock(&c->qmu);
    o->rc = rc;
    o->leader = leader;
    o->index = index;
    snprintf(o->err, sizeof o->err, "%s", err);
    o->done = 1;
    int last = --o->refs == 0;
    pthread_cond_broadcast(&c->qcv);
    pthread_mutex_unlock(&c->qmu);
    if (last) {
        free(o->v);
        free(o);
    }
}

/* Loop thread: pend becomes every offset of the state (built outside omu). */
static void pend_all(rn_ctl_t *c)
{
    size_t n = c->fsm.ngoffs;
    rn_fsm_goff_t *v = n ? malloc(n * sizeof *v) : NULL;
    if (n && !v) {
        pthread_mutex_lock(&c->omu);
        c->o_resync = 1;                /* the next tick tries again */
        pthread_mutex_unlock(&c->omu);
        return;
    }
    if (n) memcpy(v, c->fsm.goffs, n * sizeof *v);
    pthread_mutex_lock(&c->omu);
    rn_fsm_goff_t *old = c->pend;
    c->pend = v;
    c->npend = c->cappend = n;
    c->o_resync = 0;
    pthread_mutex_unlock(&c->omu);
    free(old);
}

static void on_nudged(struct raft_barrier *b, int status)
{
    (void)status;
    free(b);
}

/* Loop thread: the last OFFSETS entry in flight is committed. Followers
 * learn a commit index from the leader's next message, which without other
 * entries is its next heartbeat, up to two heartbeat timeouts later; a
 * commit answered through a follower waits for that follower's apply. A
 * barrier entry carries the commit index at once. */
static void offsets_nudge(rn_ctl_t *c)
{
    struct raft_barrier *b = malloc(sizeof *b);
    if (b && raft_barrier(&c->raft, b, on_nudged) != 0) free(b);
}

/* Loop thread: an OFFSETS entry applied to the state, its offsets to pend. */
static int apply_offsets(rn_ctl_t *c, const struct raft_buffer *buf, char *err)
{
    rn_fsm_goff_t *v = NULL;
    size_t n = 0;
    int rc = rn_fsm_offsets_decode(buf->base, buf->len, &v, &n, err);
    if (rc == 0) rc = rn_fsm_offsets_apply(&c->fsm, v, n, err);
    uint64_t idx = raft_last_applied(&c->raft) + 1;   /* this entry's: libraft sets it after */
    c->o_apply_index = idx;
    if (rc != 0) {
        rn_slog(RN_SLOG_ERROR, "controller: offsets entry %llu skipped: %s",
                (unsigned long long)idx, err);           /* invariant 5 */
        free(v);
        return rc;
    }
    int overflow = 0;
    pthread_mutex_lock(&c->omu);
    if (c->npend + n > c->cappend && c->npend + n <= PEND_MAX) {
        size_t cap = c->cappend ? c->cappend : 64;
        while (cap < c->npend + n) cap *= 2;
        rn_fsm_goff_t *p = realloc(c->pend, cap * sizeof *p);
        if (p) {
            c->pend = p;
            c->cappend = cap;
        }
    }
    if (c->npend + n <= c->cappend) {
        memcpy(c->pend + c->npend, v, n * sizeof *v);
        c->npend += n;
        c->o_applied = idx;
    } else {
        overflow = 1;
    }
    pthread_mutex_unlock(&c->omu);
    free(v);
    if (overflow) {
        pend_all(c);                    /* the state holds this entry's offsets already */
        pthread_mutex_lock(&c->omu);
        if (!c->o_resync) c->o_applied = idx;
        pthread_mutex_unlock(&c->omu);
    }
    return 0;
}

/* Loop thread, every tick: entries applied that were not OFFSETS change
 * nothing in meta.db, so o_applied may name the last applied index; a
 * failed take asks for everything again. */
static void offsets_tick(rn_ctl_t *c)
{
    pthread_mutex_lock(&c->omu);
    int resync = c->o_resync;
    pthread_mutex_unlock(&c->omu);
    if (resync) pend_all(c);
    uint64_t last = raft_last_applied(&c->raft);
    pthread_mutex_lock(&c->omu);
    if (!c->o_resync && last > c->o_applied) c->o_applied = last;
    pthread_mutex_unlock(&c->omu);
}

/* Loop thread: propose one entry holding the commits of list (owned by the
 * proposal from here). */
static void propose_offsets(rn_ctl_t *c, oreq_t *list, size_t total)
{
    rn_fsm_goff_t *v = malloc(total * sizeof *v);
    size_t n = 0;
    for (oreq_t *o = list; v && o; o = o->next) {
        memcpy(v + n, o->v, o->n * sizeof *v);
        n += o->n;
    }
    size_t len = v ? rn_fsm_offsets_bound(v, n) : 0;
    struct raft_buffer buf = {v ? raft_malloc(len) : NULL, len};
    proposal_t *p = calloc(1, sizeof *p);
    const char *why = "out of memory";
    int rv = -1;
    if (buf.base && p && rn_fsm_offsets_encode(v, n, buf.base, &buf.len) == 0) {
        p->req.data = p;
        p->c = c;
        p->o = list;
        rv = raft_apply(&c->raft, &p->req, &buf, 1, on_applied);
        if (rv != 0) why = raft_strerror(rv);
    }
    free(v);
    if (rv == 0) c->oinflight++;
    if (rv == 0) return;
    raft_free(buf.base);
    free(p);
    char err[RN_ERRMSG_SIZE];
    snprintf(err, sizeof err, "the controller could not propose the offsets (%s); retry", why);
    oreqs_fail(c, list, -EAGAIN, 0, err);
}

/* Loop thread: answer every commit of list with rc. */
static void oreqs_fail(rn_ctl_t *c, oreq_t *list, int rc, uint64_t leader, const char *err)
{
    while (list) {
        oreq_t *o = list;
        list = o->next;
        oreq_done(c, o, rc, leader, 0, err);
    }
}

/* Loop thread: propose the commits waiting (c->owait), in arrival order, in
 * as few entries as fit; or answer them "not the leader". Group commit:
 * while an OFFSETS entry is in flight, commits wait for it to be applied
 * and then go together in the next entry. */
static void offsets_flush(rn_ctl_t *c)
{
    oreq_t *list = c->owait;
    if (!list) return;
    if (raft_state(&c->raft) != RAFT_LEADER || !c->ready) {
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&c->raft, &lid, &laddr);
        c->owait = NULL;
        oreqs_fail(c, list, -EAGAIN, lid == c->conf.self ? 0 : lid, "not the controller leader");
        return;
    }
    if (c->oinflight) return;           /* on_applied flushes */
    c->owait = NULL;
    oreq_t *batch = NULL, **tail = &batch;
    size_t bytes = 8, total = 0;
    while (list) {
        oreq_t *o = list;
        list = o->next;
        o->next = NULL;
        size_t b = rn_fsm_offsets_bound(o->v, o->n);
        if (b > RN_FSM_OFFSETS_MAX_BYTES) {
            char err[RN_ERRMSG_SIZE];
            snprintf(err, sizeof err, "%zu offsets take %zu bytes encoded, more than one "
                     "controller entry holds (%u): commit fewer at once", o->n, b,
                     RN_FSM_OFFSETS_MAX_BYTES);
            oreq_done(c, o, RN_EINVAL, 0, 0, err);
            continue;
        }
        if (batch && bytes + b > RN_FSM_OFFSETS_MAX_BYTES) {
            propose_offsets(c, batch, total);
            batch = NULL;
            tail = &batch;
            bytes = 8;
            total = 0;
        }
        *tail = o;
        tail = &o->next;
        bytes += b;
        total += o->n;
    }
    if (batch) propose_offsets(c, batch, total);
}

/* Loop thread: commits that reached the loop join those waiting. */
static void take_offsets(rn_ctl_t *c, oreq_t *list)
{
    oreq_t **t = &c->owait;
    while (*t) t = &(*t)->next;
    *t = list;
    offsets_flush(c);
}

/* A deadline timeout_ms from now (CLOCK_REALTIME, as the condvars use). */
static struct timespec deadline_in(uint32_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    return dl;
}

int rn_ctl_commit_offsets(rn_ctl_t *c, const rn_fsm_goff_t *v, size_t n, uint32_t timeout_ms,
                          uint64_t *leader, uint64_t *index, char *errmsg)
{
    *leader = *index = 0;
    if (n == 0) return rn_errf(errmsg, RN_EINVAL, "no offsets to commit");
    oreq_t *o = calloc(1, sizeof *o);
    if (o) o->v = malloc(n * sizeof *v);
    if (!o || !o->v) {
        free(o);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    memcpy(o->v, v, n * sizeof *v);
    o->n = n;
    o->refs = 2;                        /* this caller and the loop */
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&c->qmu);
    oreq_t **t = &c->oreqs;             /* arrival order */
    while (*t) t = &(*t)->next;
    *t = o;
    pthread_mutex_unlock(&c->qmu);
    uv_async_send(&c->async);
    pthread_mutex_lock(&c->qmu);
    while (!o->done && pthread_cond_timedwait(&c->qcv, &c->qmu, &dl) != ETIMEDOUT) {}
    int rc = o->done ? o->rc : -ETIMEDOUT;
    if (o->done) {
        *leader = o->leader;
        *index = o->index;
        snprintf(errmsg, RN_ERRMSG_SIZE, "%s", o->err);
    } else {
        snprintf(errmsg, RN_ERRMSG_SIZE, "the controller did not commit the offsets within "
                 "%u ms", timeout_ms);
    }
    int last = --o->refs == 0;
    pthread_mutex_unlock(&c->qmu);
    if (last) {
        free(o->v);
        free(o);
    }
    return rc;
}

int rn_ctl_offsets_take(rn_ctl_t *c, rn_fsm_goff_t **v, size_t *n, uint64_t *upto)
{
    pthread_mutex_lock(&c->omu);
    *v = c->pend;
    *n = c->npend;
    *upto = c->o_resync ? c->o_written : c->o_applied;
    if (!c->o_resync) {
        c->pend = NULL;
        c->npend = c->cappend = 0;
    } else {
        *v = NULL;
        *n = 0;
    }
    pthread_mutex_unlock(&c->omu);
    return 0;
}

void rn_ctl_offsets_written(rn_ctl_t *c, uint64_t upto, int ok)
{
    pthread_mutex_lock(&c->omu);
    if (!ok) c->o_resync = 1;
    else if (upto > c->o_written) c->o_written = upto;
    pthread_cond_broadcast(&c->ocv);
    pthread_mutex_unlock(&c->omu);
}

int rn_ctl_offsets_wait(rn_ctl_t *c, uint64_t index, uint32_t timeout_ms)
{
    struct timespec dl = deadline_in(timeout_ms);
    pthread_mutex_lock(&c->omu);
    while (c->o_written < index && pthread_cond_timedwait(&c->ocv, &c->omu, &dl) != ETIMEDOUT) {}
    int rc = c->o_written >= index ? 0 : -ETIMEDOUT;
    pthread_mutex_unlock(&c->omu);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    rn_ctl_t *c = t->data;
    int64_t now = mono_ms();
    int leader = raft_state(&c->raft) == RAFT_LEADER;
    if (leader && !c->was_leader) become_leader(c, now);
    if (!leader) c->ready = 0;
    c->was_leader = leader;
    raft_id lid = 0;
    const char *laddr = NULL;
    raft_leader(&c->raft, &lid, &laddr);
    if (lid) c->known_leader = lid;
    if (lid != c->last_leader) {
        if (lid && lid != c->conf.self)
            rn_slog(RN_SLOG_INFO, "controller: the leader is node %llu (%s)",
                    (unsigned long long)lid, laddr ? laddr : "?");
        c->last_leader = lid;
    }
    if (leader && !c->ready && !c->barrier_pending) {
        struct raft_barrier *b = malloc(sizeof *b);
        if (b) {
            b->data = c;
            if (raft_barrier(&c->raft, b, on_barrier) == 0) c->barrier_pending = 1;
            else free(b);
        }
    }
    if (leader && c->ready) {
        input_t self;
        self.id = c->conf.self;
        self.start_id = c->start_id;
        snprintf(self.client, sizeof self.client, "%s", c->client);
        snprintf(self.kafka, sizeof self.kafka, "%s", c->kafka);
        heard(c, &self, now);
        fence_silent(c, now);
        queue_upkeep(c);
        reassign_upkeep(c);
    } else if (!leader && lid) {
        send_heartbeat(c, lid, now);
    }
    offsets_tick(c);
    offsets_flush(c);                   /* leadership lost with commits waiting */
    publish(c);
}

static void on_raft_closed(struct raft *r)
{
    rn_ctl_t *c = r->data;
    raft_uv_close(&c->io);
    raft_uv_tcp_close(&c->transport);
}

static void on_async(uv_async_t *a)
{
    rn_ctl_t *c = a->data;
    static input_t in[QUEUE_CAP];
    static isrq_t isrs[QUEUE_CAP];
    pthread_mutex_lock(&c->qmu);
    size_t n = c->qn, ni = c->nisrs;
    int stop = c->stopping;
    memcpy(in, c->q, n * sizeof in[0]);
    memcpy(isrs, c->isrs, ni * sizeof isrs[0]);
    c->qn = c->nisrs = 0;
    treq_t *ts = c->treqs;
    c->treqs = NULL;
    oreq_t *os = c->oreqs;
    c->oreqs = NULL;
    pthread_mutex_unlock(&c->qmu);
    while (ts) {
        treq_t *t = ts;
        ts = t->next;
        if (stop) treq_done(c, t, -EAGAIN, 0, "the node is stopping");
        else if (t->kind == TREQ_TOPIC) take_topic(c, t);
        else if (t->kind == TREQ_REASSIGN) take_reassign(c, t);
        else if (t->kind == TREQ_GROW) take_grow(c, t);
        else if (t->kind == TREQ_DROP) take_drop(c, t);
        else take_member(c, t);
    }
    if (stop) {
        oreqs_fail(c, os, -EAGAIN, 0, "the node is stopping");
        oreqs_fail(c, c->owait, -EAGAIN, 0, "the node is stopping");
        os = c->owait = NULL;
    }
    if (os) take_offsets(c, os);
    if (stop) {
        uv_timer_stop(&c->tick);
        uv_close((uv_handle_t *)&c->tick, NULL);
        uv_close((uv_handle_t *)&c->async, NULL);
        raft_close(&c->raft, on_raft_closed);
        return;
    }
    int ready = raft_state(&c->raft) == RAFT_LEADER && c->ready;
    for (size_t i = 0; i < ni; i++) {
        if (ready) {
            take_isr(c, &isrs[i]);
        } else if (isrs[i].from == c->conf.self) {  /* for the next heartbeat */
            size_t j = 0;
            while (j < c->nhb_isr && (strcmp(c->hb_isr[j].topic, isrs[i].topic) ||
                                      c->hb_isr[j].queue != isrs[i].queue))
                j++;
            if (j < QUEUE_CAP) {
                c->hb_isr[j] = isrs[i];
                if (j == c->nhb_isr) c->nhb_isr++;
            }
        }
    }
    if (!ready) return;
    int64_t now = mono_ms();
    for (size_t i = 0; i < n; i++) heard(c, &in[i], now);
}

int rn_ctl_heartbeat(rn_ctl_t *c, uint64_t id, const char *client, const char *kafka,
                     uint64_t start_id)
{
    int rc = 0;
    pthread_mutex_lock(&c->qmu);
    if (c->qn == QUEUE_CAP) {
        rc = RN_EFULL;
    } else {
        input_t *in = &c->q[c->qn++];
        in->id = id;
        in->start_id = start_id;
        snprintf(in->client, sizeof in->client, "%s", client);
        snprintf(in->kafka, sizeof in->kafka, "%s", kafka ? kafka : "");
    }
    pthread_mutex_unlock(&c->qmu);
    if (rc == 0) uv_async_send(&c->async);
    return rc;
}

/* Queue t for the loop and wait up to timeout_ms for its answer (the
 * caller's reference is dropped here). -ETIMEDOUT with timeout_msg. */
static int treq_submit(rn_ctl_t *c, treq_t *t, uint32_t timeout_ms, uint64_t *leader,
                       char *errmsg, const char *timeout_msg)
{
    t->c = c;
    t->refs = 2;                        /* this caller and the loop */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->qmu);
    t->next = c->treqs;
    c->treqs = t;
    pthread_mutex_unlock(&c->qmu);
    uv_async_send(&c->async);
    pthread_mutex_lock(&c->qmu);
    while (!t->done && pthread_cond_timedwait(&c->qcv, &c->qmu, &dl) != ETIMEDOUT) {}
    int rc = t->done ? t->rc : -ETIMEDOUT;
    if (t->done) {
        *leader = t->leader;
        snprintf(errmsg, RN_ERRMSG_SIZE, "%s", t->err);
    } else {
        snprintf(errmsg, RN_ERRMSG_SIZE, "%s", timeout_msg);
    }
    int last = --t->refs == 0;
    pthread_mutex_unlock(&c->qmu);
    if (last) free(t);
    return rc;
}

int rn_ctl_create_topic(rn_ctl_t *c, const char *name, uint32_t nqueues, uint32_t replicas,
                        uint32_t timeout_ms, uint64_t *leader, char *errmsg)
{
    *leader = 0;
    treq_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->kind = TREQ_TOPIC;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nqueues = nqueues;
    t->replicas = replicas;
    char msg[RN_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "the controller did not commit topic '%.200s' within %u ms", name,
             timeout_ms);
    return treq_submit(c, t, timeout_ms, leader, errmsg, msg);
}

int rn_ctl_drop_topic(rn_ctl_t *c, const char *name, uint32_t timeout_ms, uint64_t *leader,
                      char *errmsg)
{
    *leader = 0;
    treq_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->kind = TREQ_DROP;
    snprintf(t->name, sizeof t->name, "%s", name);
    char msg[RN_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "the controller did not commit the deletion of '%.100s' within "
             "%u ms", name, timeout_ms);
    return treq_submit(c, t, timeout_ms, leader, errmsg, msg);
}

int rn_ctl_grow_topic(rn_ctl_t *c, const char *name, uint32_t nqueues, uint32_t timeout_ms,
                      uint64_t *leader, char *errmsg)
{
    *leader = 0;
    treq_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->kind = TREQ_GROW;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nqueues = nqueues;
    char msg[RN_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "the controller did not commit the new queues of '%.100s' within "
             "%u ms", name, timeout_ms);
    return treq_submit(c, t, timeout_ms, leader, errmsg, msg);
}

int rn_ctl_reassign(rn_ctl_t *c, const char *topic, uint32_t queue, const uint64_t *ids,
                    uint32_t n, uint32_t timeout_ms, uint64_t *leader, char *errmsg)
{
    *leader = 0;
    if (n < 1 || n > RN_CLUSTER_MAX_NODES)
        return rn_errf(errmsg, RN_EINVAL, "give 1..%d replicas, not %u", RN_CLUSTER_MAX_NODES,
                       n);
    treq_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->kind = TREQ_REASSIGN;
    snprintf(t->name, sizeof t->name, "%s", topic);
    t->queue = queue;
    t->nids = n;
    memcpy(t->ids, ids, n * sizeof ids[0]);
    char msg[RN_ERRMSG_SIZE];
    snprintf(msg, sizeof msg, "the controller did not commit the reassignment of '%.100s'/%u "
             "within %u ms", topic, queue, timeout_ms);
    return treq_submit(c, t, timeout_ms, leader, errmsg, msg);
}

int rn_ctl_member_change(rn_ctl_t *c, int add, uint64_t id, const char *raft_addr,
                         uint32_t timeout_ms, uint64_t *leader, char *errmsg)
{
    *leader = 0;
    treq_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->kind = add ? TREQ_ADD : TREQ_REMOVE;
    t->node = id;
    snprintf(t->addr, sizeof t->addr, "%s", add ? raft_addr : "");
    char msg[RN_ERRMSG_SIZE];
    if (add)
        snprintf(msg, sizeof msg, "node %llu is in the configuration but not a voter yet: it "
                 "becomes one once it runs (runneld --node-id %llu --cluster %llu=%.60s --join) "
                 "and has caught up; see runnel cluster status", (unsigned long long)id,
                 (unsigned long long)id, (unsigned long long)id, raft_addr);
    else
        snprintf(msg, sizeof msg, "the removal of node %llu was not committed within %u ms",
                 (unsigned long long)id, timeout_ms);
    return treq_submit(c, t, timeout_ms, leader, errmsg, msg);
}

void rn_ctl_isr_request(rn_ctl_t *c, uint64_t from, const char *topic, uint32_t queue,
                        uint64_t epoch, const uint64_t *isr, uint32_t nisr)
{
    if (nisr > RN_CLUSTER_MAX_NODES || strlen(topic) >= RN_FSM_TOPIC_MAX) return;
    pthread_mutex_lock(&c->qmu);
    int queued = c->nisrs < QUEUE_CAP;
    if (queued) {
        isrq_t *r = &c->isrs[c->nisrs++];
        memset(r, 0, sizeof *r);
        r->from = from;
        r->epoch = epoch;
        snprintf(r->topic, sizeof r->topic, "%s", topic);
        r->queue = queue;
        r->nisr = nisr;
        memcpy(r->isr, isr, nisr * sizeof *isr);
    }
    pthread_mutex_unlock(&c->qmu);
    if (queued) uv_async_send(&c->async);
}

static void *loop_main(void *arg)
{
    rn_ctl_t *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* The stored configuration wins over the flags after the first start. */
static void check_conf(rn_ctl_t *c)
{
    const struct raft_configuration *rc = &c->raft.configuration;
    int same = rc->n == c->conf.n;
    for (size_t i = 0; same && i < c->conf.n; i++) {
        int found = 0;
        for (unsigned j = 0; j < rc->n; j++)
            if (rc->servers[j].id == c->conf.peers[i].id &&
                !strcmp(rc->servers[j].address, c->conf.peers[i].addr))
                found = 1;
        same = found;
    }
    if (!same)
        rn_slog(RN_SLOG_WARN, "controller: --cluster differs from the configuration stored in "
                "%s (%u nodes); the stored one is used: the flag only bootstraps a new cluster",
                c->dir, rc->n);
}

static int raft_fail(rn_ctl_t *c, const char *what, int rv, char *errmsg)
{
    const char *detail = raft_errmsg(&c->raft)[0] ? raft_errmsg(&c->raft)
                         : c->io.errmsg[0] ? c->io.errmsg : "no detail from libraft";
    return rn_errf(errmsg, -EIO, "controller: %s: %s (%s)", what, raft_strerror(rv), detail);
}

int rn_ctl_start(const rn_ctl_opts_t *o, rn_ctl_t **out, char *errmsg)
{
    *out = NULL;
    signal(SIGPIPE, SIG_IGN);                                      /* invariant 6 */
    rn_ctl_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    c->conf = *o->conf;
    snprintf(c->client, sizeof c->client, "%s", o->client_addr);
    snprintf(c->kafka, sizeof c->kafka, "%s", o->kafka_addr ? o->kafka_addr : "");
    if (getrandom(&c->start_id, sizeof c->start_id, 0) != sizeof c->start_id)
        c->start_id = rn_mono_ns();
    c->start_id |= 1;                   /* never 0 */
    const char *self_addr = NULL;
    for (size_t i = 0; i < c->conf.n; i++)
        if (c->conf.peers[i].id == c->conf.self) self_addr = c->conf.peers[i].addr;
    if (snprintf(c->dir, sizeof c->dir, "%s/raft", o->data_dir) >= (int)sizeof c->dir) {
        free(c);
        return rn_errf(errmsg, -ENAMETOOLONG, "controller: data directory path too long");
    }
    if (mkdir(c->dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        free(c);
        return rn_errf(errmsg, -e, "controller: cannot create %s/raft: %s", o->data_dir,
                       strerror(e));
    }
    rn_fsm_init(&c->fsm);
    pthread_mutex_init(&c->qmu, NULL);
    pthread_cond_init(&c->qcv, NULL);
    for (size_t i = 0; i < RN_CLUSTER_MAX_NODES; i++) {
        c->ends[i] = calloc(RN_CTL_MAX_ENDS, sizeof *c->ends[i]);
        if (!c->ends[i]) {
            for (size_t j = 0; j < i; j++) free(c->ends[j]);
            pthread_mutex_destroy(&c->qmu);
            pthread_cond_destroy(&c->qcv);
            free(c);
            return rn_errf(errmsg, -ENOMEM, "out of memory");
        }
    }
    pthread_mutex_init(&c->vmu, NULL);
    pthread_mutex_init(&c->omu, NULL);
    pthread_cond_init(&c->ocv, NULL);
    atomic_init(&c->hb_inflight, 0);
    uv_loop_init(&c->loop);
    int rc = 0, rv = raft_uv_tcp_init(&c->transport, &c->loop);
    if (rv != 0) {
        rc = rn_errf(errmsg, -EIO, "controller: raft transport: %s", raft_strerror(rv));
        goto fail_loop;
    }
    rv = raft_uv_init(&c->io, &c->loop, c->dir, &c->transport);
    if (rv != 0) {
        rc = rn_errf(errmsg, -EIO, "controller: raft storage in %s: %s (%s)", c->dir,
                     raft_strerror(rv), c->io.errmsg);
        raft_uv_tcp_close(&c->transport);
        goto fail_run;
    }
    c->fsm_if.version = 1;
    c->fsm_if.data = c;
    c->fsm_if.apply = fsm_apply;
    c->fsm_if.snapshot = fsm_snapshot;
    c->fsm_if.restore = fsm_restore;
    rv = raft_init(&c->raft, &c->io, &c->fsm_if, c->conf.self, self_addr);
    if (rv != 0) {
        rc = raft_fail(c, "raft_init", rv, errmsg);
        raft_uv_close(&c->io);
        raft_uv_tcp_close(&c->transport);
        goto fail_run;
    }
    c->raft.data = c;
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    for (size_t i = 0; i < c->conf.n && rv == 0; i++)
        rv = raft_configuration_add(&conf, c->conf.peers[i].id, c->conf.peers[i].addr,
                                    RAFT_VOTER);
    if (rv == 0 && o->join) {
        rn_slog(RN_SLOG_INFO, "controller: --join: node %llu waits to be added (runnel cluster "
                "add %llu=%s on any member)", (unsigned long long)c->conf.self,
                (unsigned long long)c->conf.self, self_addr);
    } else if (rv == 0) {
        rv = raft_bootstrap(&c->raft, &conf);
        if (rv == 0)
            rn_slog(RN_SLOG_INFO, "controller: bootstrapped a new cluster of %zu nodes in %s",
                    c->conf.n, c->dir);
        else if (rv == RAFT_CANTBOOTSTRAP)
            rv = 0;                      /* state exists: resume from it */
    }
    raft_configuration_close(&conf);
    if (rv != 0) {
        rc = raft_fail(c, "bootstrap", rv, errmsg);
        goto fail_raft;
    }
    raft_set_election_timeout(&c->raft, RN_CTL_ELECTION_MS);
    raft_set_heartbeat_timeout(&c->raft, RN_CTL_RAFT_HEARTBEAT_MS);
    raft_set_pre_vote(&c->raft, true);
    unsigned snap = o->snapshot_entries ? o->snapshot_entries : RN_CTL_SNAPSHOT_ENTRIES;
    raft_set_snapshot_threshold(&c->raft, snap);
    raft_set_snapshot_trailing(&c->raft, snap);
    rv = raft_start(&c->raft);
    if (rv != 0) {
        char what[RN_CLUSTER_ADDR_MAX + 80];
        snprintf(what, sizeof what, "cannot start raft on %s (is that address this host's, and "
                 "free?)", self_addr);
        rc = raft_fail(c, what, rv, errmsg);
        goto fail_raft;
    }
    if (!o->join) check_conf(c);
    uv_async_init(&c->loop, &c->async, on_async);
    uv_timer_init(&c->loop, &c->tick);
    c->async.data = c->tick.data = c;
    uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    publish(c);
    if (!c->view) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        uv_close((uv_handle_t *)&c->async, NULL);
        uv_close((uv_handle_t *)&c->tick, NULL);
        goto fail_raft;
    }
    if ((rv = pthread_create(&c->thread, NULL, loop_main, c)) != 0) {
        rc = rn_errf(errmsg, -rv, "controller: cannot start its thread: %s", strerror(rv));
        uv_close((uv_handle_t *)&c->async, NULL);
        uv_close((uv_handle_t *)&c->tick, NULL);
        goto fail_raft;
    }
    rn_slog(RN_SLOG_INFO, "controller: node %llu, raft %s, %zu nodes, raft data %s",
            (unsigned long long)c->conf.self, self_addr, c->conf.n, c->dir);
    *out = c;
    return 0;

fail_raft:
    raft_close(&c->raft, on_raft_closed);
fail_run:
    uv_run(&c->loop, UV_RUN_DEFAULT);
fail_loop:
    uv_loop_close(&c->loop);
    rn_ctl_view_put(c->view);
    tblk_put(c->tblk);
    rn_fsm_free(&c->fsm);
    for (size_t i = 0; i < RN_CLUSTER_MAX_NODES; i++) free(c->ends[i]);
    pthread_mutex_destroy(&c->qmu);
    pthread_cond_destroy(&c->qcv);
    pthread_mutex_destroy(&c->vmu);
    free(c->pend);
    pthread_mutex_destroy(&c->omu);
    pthread_cond_destroy(&c->ocv);
    free(c);
    return rc;
}

void rn_ctl_stop(rn_ctl_t *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->qmu);
    c->stopping = 1;
    pthread_mutex_unlock(&c->qmu);
    uv_async_send(&c->async);
    pthread_join(c->thread, NULL);
    int rv = uv_loop_close(&c->loop);
    if (rv != 0) rn_slog(RN_SLOG_WARN, "controller: its loop closed with handles open: %s",
                         uv_strerror(rv));
    rn_rpc_close(c->rpc);               /* after the join: no hb_done runs later */
    rn_ctl_view_put(c->view);
    tblk_put(c->tblk);
    rn_fsm_free(&c->fsm);
    for (size_t i = 0; i < RN_CLUSTER_MAX_NODES; i++) free(c->ends[i]);
    pthread_mutex_destroy(&c->qmu);
    pthread_cond_destroy(&c->qcv);
    pthread_mutex_destroy(&c->vmu);
    free(c->pend);
    pthread_mutex_destroy(&c->omu);
    pthread_cond_destroy(&c->ocv);
    free(c);
}

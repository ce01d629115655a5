/*
 * handlers.c — the cluster RPCs (cluster/handlers.h).
 *
 * Invariants:
 *  1. A handler reads the controller only through one view
 *     (rn_ctl_view_get … rn_ctl_view_put): its answer is one consistent
 *     state, and it never waits on the controller's loop thread.
 *  2. Every string of a response is copied into the call's arena before
 *     the view is released.
 *  3. A heartbeat is taken only by the leader, only from a node of the raft
 *     configuration, only with a client address common/addr.h accepts;
 *     anything else is refused with a message naming what was wrong.
 */
#include "cluster/handlers.h"

#include "client/rpc.h"
#include "common/addr.h"
#include "common/error.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static _Atomic(rn_ctl_t *) the_ctl;
static _Atomic(rn_repl_t *) the_repl;

void rn_cluster_hd_set(rn_ctl_t *c) { atomic_store(&the_ctl, c); }
void rn_cluster_hd_set_repl(rn_repl_t *r) { atomic_store(&the_repl, r); }

static char *arena_str(rn_arena_t *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = rn_arena_alloc(a, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* The replicated queues of view v into r (strings in the arena), with the
 * leader's high watermark and lags when this node leads a queue. */
static int status_queues(const rn_ctl_view_t *v, rn_arena_t *a,
                         Runnel__V1__ClusterStatusResponse *r)
{
    size_t n = 0;
    for (size_t i = 0; i < v->ntopics; i++) n += v->topics[i].nqueues;
    if (n == 0) return 0;
    Runnel__V1__ClusterQueue **qv = rn_arena_alloc(a, n * sizeof *qv);
    Runnel__V1__ClusterQueue *qs = rn_arena_alloc(a, n * sizeof *qs);
    if (!qv || !qs) return -1;
    rn_repl_t *rp = atomic_load(&the_repl);
    size_t k = 0;
    for (size_t i = 0; i < v->ntopics; i++) {
        const rn_fsm_topic_t *t = &v->topics[i];
        char *name = arena_str(a, t->name);
        if (!name) return -1;
        for (uint32_t j = 0; j < t->nqueues; j++, k++) {
            const rn_fsm_pq_t *pq = &t->q[j];
            Runnel__V1__ClusterQueue *q = &qs[k];
            runnel__v1__cluster_queue__init(q);
            q->topic = name;
            q->queue = j;
            q->leader = pq->leader;
            q->epoch = pq->epoch;
            q->replicas = rn_arena_alloc(a, pq->nrep * sizeof *q->replicas);
            q->isr = rn_arena_alloc(a, (pq->nisr ? pq->nisr : 1) * sizeof *q->isr);
            int64_t *lag = rn_arena_alloc(a, pq->nrep * sizeof *lag);
            if (!q->replicas || !q->isr || !lag) return -1;
            memcpy(q->replicas, pq->replicas, pq->nrep * sizeof *q->replicas);
            memcpy(q->isr, pq->isr, pq->nisr * sizeof *q->isr);
            if (pq->ntarget) {
                q->target = rn_arena_alloc(a, pq->ntarget * sizeof *q->target);
                if (!q->target) return -1;
                memcpy(q->target, pq->target, pq->ntarget * sizeof *q->target);
                q->n_target = pq->ntarget;
            }
            q->n_replicas = pq->nrep;
            q->n_isr = pq->nisr;
            q->high_watermark = -1;
            int64_t hwm;
            if (rp && rn_repl_queue_state(rp, t->name, j, pq, &hwm, lag) == 0) {
                q->high_watermark = hwm;
                q->lag = lag;
                q->n_lag = pq->nrep;
            }
            qv[k] = q;
        }
    }
    r->queues = qv;
    r->n_queues = n;
    return 0;
}


int rn_cluster_hd_status(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st)
{
    (void)h;
    (void)req;
    Runnel__V1__ClusterStatusResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    runnel__v1__cluster_status_response__init(r);
    rn_ctl_t *c = atomic_load(&the_ctl);
    if (!c) {
        *resp = &r->base;
        return 0;
    }
    const rn_ctl_view_t *v = rn_ctl_view_get(c);
    r->clustered = 1;
    r->node_id = v->self;
    r->leader_id = v->leader;
    r->term = v->term;
    r->commit_index = v->commit_index;
    r->applied_index = v->applied_index;
    r->state = (char *)rn_ctl_role_name(v->role);
    Runnel__V1__ClusterNode **nv = rn_arena_alloc(a, (v->n ? v->n : 1) * sizeof *nv);
    Runnel__V1__ClusterNode *ns = rn_arena_alloc(a, (v->n ? v->n : 1) * sizeof *ns);
    if (!nv || !ns) {
        rn_ctl_view_put(v);
        return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < v->n; i++) {
        const rn_ctl_vnode_t *s = &v->nodes[i];
        Runnel__V1__ClusterNode *n = &ns[i];
        runnel__v1__cluster_node__init(n);
        n->id = s->id;
        n->raft_address = arena_str(a, s->raft);
        n->client_address = arena_str(a, s->client);
        n->role = arena_str(a, s->role);
        n->kafka_address = arena_str(a, s->kafka);
        if (!n->raft_address || !n->client_address || !n->role || !n->kafka_address) {
            rn_ctl_view_put(v);
            return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
        }
        n->live = s->live;
        n->incarnation = s->incarnation;
        n->live_changed_ms = s->live_changed_ms;
        n->heartbeat_age_ms = s->heartbeat_age_ms;
        nv[i] = n;
    }
    r->nodes = nv;
    r->n_nodes = v->n;
    if (status_queues(v, a, r) != 0) {
        rn_ctl_view_put(v);
        return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    }
    rn_ctl_view_put(v);
    *resp = &r->base;
    return 0;
}

int rn_cluster_hd_heartbeat(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                            ProtobufCMessage **resp, rn_status_t *st)
{
    (void)h;
    const Runnel__V1__ClusterHeartbeatRequest *req = (const void *)m;
    rn_ctl_t *c = atomic_load(&the_ctl);
    if (!c)
        return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "this broker is not in a cluster "
                             "(started without --cluster)");
    char host[RN_CLUSTER_ADDR_MAX], err[RN_ERRMSG_SIZE];
    int port;
    if (rn_addr_split(req->client_address, host, sizeof host, &port, 0, err) != 0)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "heartbeat of node %llu: client "
                             "address: %s", (unsigned long long)req->node_id, err);
    if (req->kafka_address && req->kafka_address[0] &&
        rn_addr_split(req->kafka_address, host, sizeof host, &port, 0, err) != 0)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "heartbeat of node %llu: Kafka "
                             "address: %s", (unsigned long long)req->node_id, err);
    const rn_ctl_view_t *v = rn_ctl_view_get(c);
    uint64_t leader = v->leader, self = v->self;
    int is_leader = v->role == RN_CTL_LEADER, member = 0;
    for (size_t i = 0; i < v->n; i++)
        if (v->nodes[i].id == req->node_id && v->nodes[i].raft[0]) member = 1;
    rn_ctl_view_put(v);
    if (!is_leader)
        return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "node %llu is not the controller "
                             "leader (the leader it knows: %llu)",
                             (unsigned long long)self, (unsigned long long)leader);
    if (!member)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "node %llu is not in the cluster's "
                             "raft configuration", (unsigned long long)req->node_id);
    if (rn_ctl_heartbeat(c, req->node_id, req->client_address, req->kafka_address,
                         req->start_id) != 0)
        return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "the controller's queue is full; "
                             "heartbeat again later");
    for (size_t i = 0; i < req->n_isr_changes; i++) {
        const Runnel__V1__ClusterIsrChange *ch = req->isr_changes[i];
        if (ch->topic && ch->n_isr <= RN_CLUSTER_MAX_NODES)
            rn_ctl_isr_request(c, req->node_id, ch->topic, ch->queue, ch->epoch, ch->isr,
                               (uint32_t)ch->n_isr);
    }
    if (req->n_log_ends) {
        size_t n = req->n_log_ends < RN_CTL_MAX_ENDS ? req->n_log_ends : RN_CTL_MAX_ENDS;
        rn_ctl_end_t *e = rn_arena_alloc(a, n * sizeof *e);
        if (e) {
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                const Runnel__V1__ClusterLogEnd *le = req->log_ends[i];
                if (!le->topic || strlen(le->topic) >= RN_FSM_TOPIC_MAX) continue;
                snprintf(e[k].topic, sizeof e[k].topic, "%s", le->topic);
                e[k].queue = le->queue;
                e[k].end = le->end;
                k++;
            }
            rn_ctl_peer_log_ends(c, req->node_id, e, k);
        }
    }
    Runnel__V1__ClusterHeartbeatResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    runnel__v1__cluster_heartbeat_response__init(r);
    r->leader_id = leader;
    *resp = &r->base;
    return 0;
}

int rn_cluster_leader_addr(rn_ctl_t *c, uint64_t leader, char *addr, rn_status_t *st)
{
    const rn_ctl_view_t *v = rn_ctl_view_get(c);
    const rn_ctl_vnode_t *n = rn_ctl_view_node(v, leader);
    addr[0] = '\0';
    if (n) snprintf(addr, RN_CLUSTER_ADDR_MAX, "%s", n->client);
    rn_ctl_view_put(v);
    if (!addr[0])
        return rn_status_set(st, RN_ST_UNAVAILABLE, "the controller leader (node %llu) has no "
                             "client address yet; retry", (unsigned long long)leader);
    return 0;
}

int rn_cluster_call(rn_rpc_t *rpc, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *rdesc, int timeout_ms,
                    ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE];
    int status = 0;
    *resp = NULL;
    if (rn_rpc_call(rpc, method, req, rdesc, resp, timeout_ms, &status, err) == 0) return 0;
    if (*resp) protobuf_c_message_free_unpacked(*resp, NULL);
    *resp = NULL;
    return rn_status_set(st, status > 0 && status <= 16 ? (rn_st_t)status : RN_ST_UNAVAILABLE,
                         "%s", err);
}

int rn_cluster_forward(rn_ctl_t *c, uint64_t leader, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rdesc,
                       int timeout_ms, ProtobufCMessage **resp, rn_status_t *st)
{
    *resp = NULL;
    char addr[RN_CLUSTER_ADDR_MAX], err[RN_ERRMSG_SIZE];
    if (rn_cluster_leader_addr(c, leader, addr, st) != 0) return -1;
    rn_rpc_t *rpc = NULL;
    if (rn_rpc_open(addr, &rpc, err) != 0)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "controller leader at %s: %s", addr, err);
    int rc = rn_cluster_call(rpc, method, req, rdesc, timeout_ms, resp, st);
    rn_rpc_close(rpc);
    return rc;
}

int rn_cluster_hd_change(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st)
{
    (void)h;
    const Runnel__V1__ClusterChangeRequest *req = (const void *)m;
    rn_ctl_t *c = atomic_load(&the_ctl);
    if (!c)
        return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "this broker is not in a cluster "
                             "(started without --cluster)");
    int add = req->op && !strcmp(req->op, "add");
    if (!add && !(req->op && !strcmp(req->op, "remove")))
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "cluster change: op '%.20s': give "
                             "'add' or 'remove'", req->op ? req->op : "");
    char err[RN_ERRMSG_SIZE], idtext[24], spec[RN_CLUSTER_ADDR_MAX + 32];
    snprintf(idtext, sizeof idtext, "%llu", (unsigned long long)req->node_id);
    if (add) {
        /* The one-node form of --cluster checks the id and the address. */
        rn_cluster_conf_t one;
        snprintf(spec, sizeof spec, "%s=%.*s", idtext, RN_CLUSTER_ADDR_MAX,
                 req->raft_address ? req->raft_address : "");
        if (rn_cluster_conf_parse(idtext, spec, &one, err) != 0)
            return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "cluster add: %s", err);
    } else if (req->node_id < 1 || req->node_id > UINT32_MAX) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "cluster remove: node id %s: give "
                             "1..4294967295", idtext);
    }
    uint64_t leader = 0;
    int rc = rn_ctl_member_change(c, add, req->node_id, add ? req->raft_address : "",
                                  RN_CLUSTER_CHANGE_MS, &leader, err);
    if (rc == -EAGAIN && leader && !req->forwarded) {
        Runnel__V1__ClusterChangeRequest fw = *req;
        fw.forwarded = 1;
        ProtobufCMessage *m2 = NULL;
        if (rn_cluster_forward(c, leader, RN_RPC_METHOD("ClusterChange"), &fw.base,
                               &runnel__v1__cluster_change_response__descriptor,
                               RN_CLUSTER_CHANGE_MS + 5000, &m2, st) != 0)
            return -1;
        leader = ((Runnel__V1__ClusterChangeResponse *)m2)->leader_id;
        protobuf_c_message_free_unpacked(m2, NULL);
    } else if (rc == -EAGAIN || rc == -EBUSY) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "cluster %s: %s; retry", add ? "add" :
                             "remove", err[0] ? err : "no controller leader");
    } else if (rc == -ETIMEDOUT) {
        return rn_status_set(st, RN_ST_DEADLINE_EXCEEDED, "cluster %s: %s", add ? "add" :
                             "remove", err);
    } else if (rc == RN_EEXIST) {
        return rn_status_set(st, RN_ST_ALREADY_EXISTS, "cluster add: %s", err);
    } else if (rc == RN_ENOTFOUND) {
        return rn_status_set(st, RN_ST_NOT_FOUND, "cluster remove: %s", err);
    } else if (rc == RN_EINVAL || rc == -EIO) {
        return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "cluster %s: %s", add ? "add" :
                             "remove", err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "cluster %s: %s", add ? "add" : "remove",
                             err);
    } else {
        const rn_ctl_view_t *v = rn_ctl_view_get(c);
        leader = v->self;
        rn_ctl_view_put(v);
    }
    Runnel__V1__ClusterChangeResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    runnel__v1__cluster_change_response__init(r);
    r->leader_id = leader;
    *resp = &r->base;
    return 0;
}

int rn_cluster_hd_reassign(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                           ProtobufCMessage **resp, rn_status_t *st)
{
    (void)h;
    const Runnel__V1__ReassignQueueRequest *req = (const void *)m;
    rn_ctl_t *c = atomic_load(&the_ctl);
    if (!c)
        return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "queue reassign moves the replicas "
                             "of a replicated queue: this broker is not in a cluster (started "
                             "without --cluster)");
    if (req->n_replicas < 1 || req->n_replicas > RN_CLUSTER_MAX_NODES)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "queue reassign: give 1..%d replica "
                             "node ids, not %zu", RN_CLUSTER_MAX_NODES, req->n_replicas);
    char err[RN_ERRMSG_SIZE] = "";
    uint64_t leader = 0;
    int rc = rn_ctl_reassign(c, req->topic, req->queue, req->replicas,
                             (uint32_t)req->n_replicas, 5000, &leader, err);
    if (rc == -EAGAIN && leader && !req->forwarded) {
        Runnel__V1__ReassignQueueRequest fw = *req;
        fw.forwarded = 1;
        ProtobufCMessage *m2 = NULL;
        if (rn_cluster_forward(c, leader, RN_RPC_METHOD("ReassignQueue"), &fw.base,
                               &runnel__v1__reassign_queue_response__descriptor, 10000, &m2,
                               st) != 0)
            return -1;
        leader = ((Runnel__V1__ReassignQueueResponse *)m2)->leader_id;
        protobuf_c_message_free_unpacked(m2, NULL);
    } else if (rc == -EAGAIN || rc == -EBUSY || rc == -ETIMEDOUT) {
        return rn_status_set(st, RN_ST_UNAVAILABLE, "queue reassign: %s%s", err[0] ? err :
                             "no controller leader", strstr(err, "retry") ? "" : "; retry");
    } else if (rc == RN_ENOTFOUND) {
        return rn_status_set(st, RN_ST_NOT_FOUND, "queue reassign: %s", err);
    } else if (rc == RN_EEXIST) {
        return rn_status_set(st, RN_ST_ALREADY_EXISTS, "queue reassign: %s", err);
    } else if (rc != 0) {
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "queue reassign: %s", err);
    } else {
        const rn_ctl_view_t *v = rn_ctl_view_get(c);
        leader = v->self;
        rn_ctl_view_put(v);
    }
    Runnel__V1__ReassignQueueResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_status_set(st, RN_ST_RESOURCE_EXHAUSTED, "out of memory");
    runnel__v1__reassign_queue_response__init(r);
    r->leader_id = leader;
    *resp = &r->base;
    return 0;
}

/*
 * api.c — the API table (api.h invariant 4), ApiVersions, Metadata and
 * InitProducerId.
 *
 * Field layouts follow Kafka's message schemas (ApiVersionsRequest.json,
 * MetadataResponse.json, ...); a field added in version N is read or written
 * only when q->version >= N. Of the versions here only ApiVersions v3 is
 * flexible.
 */
#include "kafka/api.h"
#include "kafka/sasl.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cluster/controller.h"
#include "common/addr.h"
#include "server/log.h"
#include "server/producers.h"
#include "server/server.h"

const rn_kapi_t rn_kapi_table[] = {
    {0, "Produce", 0, 8, 9, rn_kh_produce},
    {1, "Fetch", 4, 11, 12, rn_kh_fetch},
    {2, "ListOffsets", 1, 5, 6, rn_kh_list_offsets},
    {3, "Metadata", 0, 7, 9, rn_kh_metadata},
    {8, "OffsetCommit", 2, 7, 8, rn_kh_offset_commit},
    {9, "OffsetFetch", 1, 5, 6, rn_kh_offset_fetch},
    {10, "FindCoordinator", 0, 2, 3, rn_kh_find_coordinator},
    {11, "JoinGroup", 0, 5, 6, rn_kh_join_group},
    {12, "Heartbeat", 0, 3, 4, rn_kh_heartbeat},
    {13, "LeaveGroup", 0, 3, 4, rn_kh_leave_group},
    {14, "SyncGroup", 0, 3, 4, rn_kh_sync_group},
    {15, "DescribeGroups", 0, 4, 5, rn_kh_describe_groups},
    {16, "ListGroups", 0, 2, 3, rn_kh_list_groups},
    {17, "SaslHandshake", 0, 1, 2, rn_kh_sasl_handshake},
    {18, "ApiVersions", 0, 3, 3, rn_kh_api_versions},
    {19, "CreateTopics", 0, 4, 5, rn_kh_create_topics},
    {20, "DeleteTopics", 0, 3, 4, rn_kh_delete_topics},
    {22, "InitProducerId", 0, 1, 2, rn_kh_init_producer_id},
    {36, "SaslAuthenticate", 0, 2, 2, rn_kh_sasl_authenticate},
};
const int rn_kapi_count = (int)(sizeof rn_kapi_table / sizeof rn_kapi_table[0]);

const rn_kapi_t *rn_kapi_find(int16_t key)
{
    for (int i = 0; i < rn_kapi_count; i++)
        if (rn_kapi_table[i].key == key) return &rn_kapi_table[i];
    return NULL;
}

int16_t rn_kerr_of(const rn_status_t *st)
{
    switch (st->code) {
    case RN_ST_OK: return RN_KERR_NONE;
    case RN_ST_NOT_FOUND: return RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
    case RN_ST_OUT_OF_RANGE: return RN_KERR_OFFSET_OUT_OF_RANGE;
    case RN_ST_INVALID_ARGUMENT: return RN_KERR_INVALID_REQUEST;
    case RN_ST_RESOURCE_EXHAUSTED: return RN_KERR_MESSAGE_TOO_LARGE;
    case RN_ST_DATA_LOSS: return RN_KERR_KAFKA_STORAGE_ERROR;
    case RN_ST_UNAVAILABLE: return RN_KERR_KAFKA_STORAGE_ERROR;
    default: return RN_KERR_UNKNOWN_SERVER_ERROR;
    }
}

int16_t rn_kerr_cluster(const rn_kctx_t *ctx, const rn_status_t *st)
{
    if (st->reason == RN_SR_NOT_LEADER)
        return st->code == RN_ST_FAILED_PRECONDITION ? RN_KERR_NOT_LEADER_OR_FOLLOWER
                                                     : RN_KERR_LEADER_NOT_AVAILABLE;
    if (st->reason == RN_SR_NOT_ENOUGH_REPLICAS) return RN_KERR_NOT_ENOUGH_REPLICAS;
    /* a node (re)joining, its controller starting: retriable */
    if (ctx->self && st->code == RN_ST_UNAVAILABLE) return RN_KERR_LEADER_NOT_AVAILABLE;
    return RN_KERR_NONE;
}

int16_t rn_kerr_status(const rn_kctx_t *ctx, const rn_status_t *st)
{
    int16_t c = rn_kerr_cluster(ctx, st);
    return c ? c : rn_kerr_of(st);
}

/* The controller's view (invariant 7), or NULL: put it with rn_ctl_view_put. */
static const rn_ctl_view_t *cluster_view(rn_kctx_t *ctx)
{
    rn_ctl_t *c = ctx->self ? __atomic_load_n(&ctx->ctl, __ATOMIC_ACQUIRE) : NULL;
    return c ? rn_ctl_view_get(c) : NULL;
}

/* The view's replicated topic named name (borrowed from v), or NULL. */
static const rn_fsm_topic_t *view_topic(const rn_ctl_view_t *v, const char *name)
{
    size_t lo = 0, hi = v->ntopics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->topics[mid].name, name);
        if (c == 0) return &v->topics[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int16_t rn_kcluster_unmade(rn_kctx_t *ctx, const char *topic, uint32_t queue)
{
    const rn_ctl_view_t *v = cluster_view(ctx);
    if (!v) return RN_KERR_NONE;
    const rn_fsm_topic_t *t = view_topic(v, topic);
    const rn_fsm_pq_t *pq = t && queue < t->nqueues ? &t->q[queue] : NULL;
    int16_t e = !t ? RN_KERR_NONE
                : !pq ? RN_KERR_UNKNOWN_TOPIC_OR_PARTITION
                : pq->leader && pq->leader != ctx->self ? RN_KERR_NOT_LEADER_OR_FOLLOWER
                : RN_KERR_LEADER_NOT_AVAILABLE;
    rn_ctl_view_put(v);
    return e;
}

int rn_kcluster_replicated(rn_kctx_t *ctx, const char *topic)
{
    const rn_ctl_view_t *v = cluster_view(ctx);
    if (!v) return 0;
    int rep = view_topic(v, topic) != NULL;
    rn_ctl_view_put(v);
    return rep;
}

/* Rendezvous (highest random weight) hashing: the group's weight for a
 * node, FNV-1a over the group id and the node id, then a 64-bit finalizer
 * (splitmix64) so that nearby ids spread. */
static uint64_t coord_weight(const char *group, uint64_t id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)group; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    for (int i = 0; i < 8; i++) {
        h ^= (id >> (8 * i)) & 0xff;
        h *= 1099511628211ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

int rn_kcluster_coordinator(rn_kctx_t *ctx, const char *group, int32_t *id, char *host,
                            size_t hn, int *port)
{
    if (!ctx->self) {
        *id = ctx->node_id;
        snprintf(host, hn, "%s", ctx->host);
        *port = ctx->port;
        return 0;
    }
    const rn_ctl_view_t *v = cluster_view(ctx);
    if (!v) return -1;
    if (!v->self_current) {
        /* starting or rejoining: this copy may lack topics and nodes the
         * cluster committed, so it names no coordinator (and does not take
         * a commit of a replicated topic for a local one) */
        rn_ctl_view_put(v);
        return -1;
    }
    const rn_ctl_vnode_t *best = NULL;
    uint64_t bw = 0;
    for (size_t i = 0; i < v->n; i++) {
        const rn_ctl_vnode_t *nd = &v->nodes[i];
        if (!nd->live || !nd->kafka[0] || !strcmp(nd->role, "removed")) continue;
        uint64_t w = coord_weight(group, nd->id);
        if (!best || w > bw) {
            best = nd;
            bw = w;
        }
    }
    int rc = -1;
    char err[RN_ERRMSG_SIZE];
    if (best && rn_addr_split(best->kafka, host, hn, port, 0, err) == 0) {
        *id = (int32_t)best->id;
        rc = 0;
    } else if (best) {
        rn_slog(RN_SLOG_WARN, "kafka: node %llu's Kafka address: %s",
                (unsigned long long)best->id, err);
    }
    rn_ctl_view_put(v);
    return rc;
}

int16_t rn_kcluster_coord_here(rn_kctx_t *ctx, const char *group)
{
    if (!ctx->self) return RN_KERR_NONE;
    int32_t id;
    int port;
    char host[RN_CLUSTER_ADDR_MAX];
    if (rn_kcluster_coordinator(ctx, group, &id, host, sizeof host, &port) != 0)
        return RN_KERR_COORDINATOR_NOT_AVAILABLE;
    return (uint64_t)id == ctx->self ? RN_KERR_NONE : RN_KERR_NOT_COORDINATOR;
}

int rn_ktopic_valid(rn_kstr_t name)
{
    if (name.len <= 0 || name.len > 249) return 0;
    if (name.len == 1 && name.p[0] == '.') return 0;
    if (name.len == 2 && name.p[0] == '.' && name.p[1] == '.') return 0;
    for (int32_t i = 0; i < name.len; i++) {
        char ch = name.p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- ApiVersions (18) ------------------------------------------------------------ */

int rn_kh_api_versions(rn_kreq_t *q)
{
    const rn_kapi_t *me = rn_kapi_find(18);
    rn_kw_t *w = &q->w;
    if (q->version < me->min || q->version > me->max) {
        /* KIP-511: an unsupported version (a negative one too) is answered
         * in the v0 layout with UNSUPPORTED_VERSION and our versions, so the
         * client downgrades. */
        q->flex = 0;
        w->flex = 0;
        rn_kw_i16(w, RN_KERR_UNSUPPORTED_VERSION);
        rn_kw_array(w, 1);
        rn_kw_i16(w, me->key);
        rn_kw_i16(w, me->min);
        rn_kw_i16(w, me->max);
        return RN_KH_DONE;
    }
    if (q->version >= 3) {
        rn_kr_str(&q->in, "client_software_name");
        rn_kr_str(&q->in, "client_software_version");
        rn_kr_tags(&q->in);
        if (q->in.err) return RN_KH_BAD;
    }
    rn_kw_i16(w, RN_KERR_NONE);
    rn_kw_array(w, rn_kapi_count);
    for (int i = 0; i < rn_kapi_count; i++) {
        rn_kw_i16(w, rn_kapi_table[i].key);
        rn_kw_i16(w, rn_kapi_table[i].min);
        rn_kw_i16(w, rn_kapi_table[i].max);
        rn_kw_tags(w);
    }
    if (q->version >= 1) rn_kw_i32(w, 0);      /* throttle_time_ms */
    rn_kw_tags(w);
    return RN_KH_DONE;
}

/* ---- Metadata (3) ------------------------------------------------------------------ */

/* One topic's entry: its queues as partitions, all led by this broker. */
static void metadata_topic(rn_kreq_t *q, const char *name, int32_t len, int16_t err,
                           uint32_t queues)
{
    rn_kw_t *w = &q->w;
    int32_t node = q->ctx->node_id;
    rn_kw_i16(w, err);
    rn_kw_strn(w, name, len);
    if (q->version >= 1) rn_kw_i8(w, 0);               /* is_internal */
    rn_kw_array(w, (int32_t)queues);
    for (uint32_t p = 0; p < queues; p++) {
        rn_kw_i16(w, RN_KERR_NONE);
        rn_kw_i32(w, (int32_t)p);
        rn_kw_i32(w, node);                             /* leader */
        if (q->version >= 7) rn_kw_i32(w, 0);           /* leader_epoch */
        rn_kw_array(w, 1);                              /* replicas */
        rn_kw_i32(w, node);
        rn_kw_array(w, 1);                              /* isr */
        rn_kw_i32(w, node);
        if (q->version >= 5) rn_kw_array(w, 0);         /* offline replicas */
    }
}

/* A replicated topic's entry from the controller's view (invariant 7). */
static void metadata_rtopic(rn_kreq_t *q, const rn_ctl_view_t *v, const rn_fsm_topic_t *t)
{
    rn_kw_t *w = &q->w;
    rn_kw_i16(w, RN_KERR_NONE);
    rn_kw_str(w, t->name);
    if (q->version >= 1) rn_kw_i8(w, 0);               /* is_internal */
    rn_kw_array(w, (int32_t)t->nqueues);
    for (uint32_t p = 0; p < t->nqueues; p++) {
        const rn_fsm_pq_t *pq = &t->q[p];
        const rn_ctl_vnode_t *ln = pq->leader ? rn_ctl_view_node(v, pq->leader) : NULL;
        int led = ln && ln->live && ln->kafka[0];
        rn_kw_i16(w, led ? RN_KERR_NONE : RN_KERR_LEADER_NOT_AVAILABLE);
        rn_kw_i32(w, (int32_t)p);
        rn_kw_i32(w, led ? (int32_t)pq->leader : -1);
        if (q->version >= 7) rn_kw_i32(w, (int32_t)pq->epoch);   /* leader_epoch */
        rn_kw_array(w, (int32_t)pq->nrep);
        for (uint32_t i = 0; i < pq->nrep; i++) rn_kw_i32(w, (int32_t)pq->replicas[i]);
        rn_kw_array(w, (int32_t)pq->nisr);
        for (uint32_t i = 0; i < pq->nisr; i++) rn_kw_i32(w, (int32_t)pq->isr[i]);
        if (q->version >= 5) {                          /* offline replicas */
            uint32_t off = 0;
            for (uint32_t i = 0; i < pq->nrep; i++) {
                const rn_ctl_vnode_t *n = rn_ctl_view_node(v, pq->replicas[i]);
                off += !n || !n->live;
            }
            rn_kw_array(w, (int32_t)off);
            for (uint32_t i = 0; i < pq->nrep; i++) {
                const rn_ctl_vnode_t *n = rn_ctl_view_node(v, pq->replicas[i]);
                if (!n || !n->live) rn_kw_i32(w, (int32_t)pq->replicas[i]);
            }
        }
    }
}

/* One broker of Metadata's list. */
static void metadata_broker(rn_kreq_t *q, int32_t id, const char *host, int port)
{
    rn_kw_t *w = &q->w;
    rn_kw_i32(w, id);
    rn_kw_str(w, host);
    rn_kw_i32(w, port);
    if (q->version >= 1) rn_kw_str(w, NULL);           /* rack */
}

/* The brokers and the controller (invariant 7): this node, then every other
 * live node with a Kafka address; without a view, this node alone. */
static void metadata_brokers(rn_kreq_t *q, const rn_ctl_view_t *v)
{
    rn_kctx_t *ctx = q->ctx;
    rn_kw_t *w = &q->w;
    int32_t n = 1;
    for (size_t i = 0; v && i < v->n; i++)
        n += v->nodes[i].id != ctx->self && v->nodes[i].live && v->nodes[i].kafka[0];
    rn_kw_array(w, n);
    metadata_broker(q, ctx->node_id, ctx->host, ctx->port);
    int32_t written = 1;
    for (size_t i = 0; v && i < v->n; i++) {
        const rn_ctl_vnode_t *nd = &v->nodes[i];
        if (nd->id == ctx->self || !nd->live || !nd->kafka[0]) continue;
        char host[RN_CLUSTER_ADDR_MAX], err[RN_ERRMSG_SIZE];
        int port = 0;
        if (rn_addr_split(nd->kafka, host, sizeof host, &port, 0, err) != 0) {
            rn_slog(RN_SLOG_WARN, "kafka: node %llu's Kafka address: %s",
                    (unsigned long long)nd->id, err);
            snprintf(host, sizeof host, "invalid");     /* keeps the count written */
        }
        metadata_broker(q, (int32_t)nd->id, host, port);
        written++;
    }
    assert(written == n);
    if (q->version >= 2) rn_kw_str(w, ctx->cluster_id);
    if (q->version >= 1)                                /* controller */
        rn_kw_i32(w, !v ? ctx->node_id : v->leader ? (int32_t)v->leader : -1);
}

/* The topic named s, created with ctx->auto_create queues when absent and
 * `create`. 0 with *t; else the Kafka error code. */
int16_t rn_ktopic_get(rn_kctx_t *ctx, rn_kstr_t s, int create, rn_meta_topic_t *t)
{
    char name[256], err[RN_ERRMSG_SIZE] = "";
    if (!rn_ktopic_valid(s) || rn_kstr_copy(s, name, sizeof name) != 0)
        return RN_KERR_INVALID_TOPIC_EXCEPTION;
    rn_meta_t *m = rn_datadir_meta_lock(ctx->d);
    int rc = rn_meta_topic_get(m, name, t, err);
    rn_datadir_meta_unlock(ctx->d);
    if (rc == 0) return RN_KERR_NONE;
    if (rc != RN_ENOTFOUND) return RN_KERR_UNKNOWN_SERVER_ERROR;
    if (!create || !ctx->auto_create) return RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
    rc = rn_datadir_topic_create(ctx->d, name, ctx->auto_create, t, err);
    if (rc == RN_EEXIST) {              /* created meanwhile by the gRPC front */
        m = rn_datadir_meta_lock(ctx->d);
        rc = rn_meta_topic_get(m, name, t, err);
        rn_datadir_meta_unlock(ctx->d);
    }
    if (rc != 0) {
        rn_slog(RN_SLOG_WARN, "kafka: cannot auto-create topic '%s': %s", name, err);
        return RN_KERR_UNKNOWN_SERVER_ERROR;
    }
    ctx->created++;                     /* api.h invariant 5 */
    rn_slog(RN_SLOG_INFO, "kafka: created topic '%s' with %u queues (auto-creation; runneld "
            "--kafka-auto-create-queues)", name, ctx->auto_create);
    return RN_KERR_NONE;
}

/* ---- authorization (invariant 6) ----------------------------------------------- */

int rn_kacl(rn_kreq_t *q, rn_acl_res_t res, const char *name, rn_acl_op_t op)
{
    rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;
    char msg[RN_ERRMSG_SIZE];
    if (rn_acl_check(acl, q->principal, res, name, op, 0, msg, sizeof msg) == 0) return 1;
    rn_slog(RN_SLOG_INFO, "kafka: refused to %s: %s", q->peer, msg);
    return 0;
}

int rn_kacl_topic(rn_kreq_t *q, rn_kstr_t s, rn_acl_op_t op)
{
    char name[256];
    if (!rn_ktopic_valid(s) || rn_kstr_copy(s, name, sizeof name) != 0) return 1;
    return rn_kacl(q, RN_ACL_TOPIC, name, op);
}

int rn_kacl_create(rn_kreq_t *q, const char *name)
{
    rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;
    if (rn_acl_allowed(acl, q->principal, RN_ACL_CLUSTER, "", RN_ACL_CREATE, 0)) return 1;
    return rn_kacl(q, RN_ACL_TOPIC, name, RN_ACL_CREATE);
}

/* Auto-creation of s is allowed to q's principal (invariant 6). */
static int may_create(rn_kreq_t *q, rn_kstr_t s)
{
    char name[256];
    if (!rn_ktopic_valid(s) || rn_kstr_copy(s, name, sizeof name) != 0) return 1;
    rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;
    return rn_acl_allowed(acl, q->principal, RN_ACL_CLUSTER, "", RN_ACL_CREATE, 0) ||
           rn_acl_allowed(acl, q->principal, RN_ACL_TOPIC, name, RN_ACL_CREATE, 0);
}

/* A parsed Metadata request waiting for its turn (invariant 7). */
typedef struct kmeta {
    const uint8_t *names;        /* the topic names, in the frame */
    int32_t        n;
    int            create, all;
    int64_t        deadline;     /* then it answers anyway (rn_server_now_ms) */
} kmeta_t;

/* Longer than a produce waits for the in-sync replicas (cluster/replica.h
 * RN_REPL_ACK_TIMEOUT_MS). */
#define METADATA_WAIT_MS 15000

static void metadata_answer(rn_kreq_t *q, const kmeta_t *req);

static void metadata_free(rn_kreq_t *q)
{
    free(q->hstate);
    q->hstate = NULL;
}

static void metadata_retry(rn_kreq_t *q, int expired)
{
    if (!expired && !rn_kreq_alone(q)) {
        rn_kreq_park(q, ((kmeta_t *)q->hstate)->deadline, metadata_retry);
        return;
    }
    metadata_answer(q, q->hstate);
    rn_kreq_done(q);
}

int rn_kh_metadata(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    int32_t n = rn_kr_array(r, "topics");
    if (n > RN_KAPI_MAX_PARTITIONS)                     /* api.h invariant 5 */
        return rn_kreq_bad(q, "%d topics named; at most %d per request", n,
                           RN_KAPI_MAX_PARTITIONS);
    kmeta_t m = {r->p, n, 1, 0, 0};
    for (int32_t i = 0; i < n && !r->err; i++) rn_kr_str(r, "topic name");
    if (q->version >= 4) m.create = rn_kr_i8(r, "allow_auto_topic_creation") != 0;
    if (r->err) return RN_KH_BAD;
    /* v0: an empty list means every topic; v1+: null does. */
    m.all = n < 0 || (q->version == 0 && n == 0);
    /* Invariant 7: the answer tells the leaders as of when it leaves, as a
     * Kafka broker handling a connection's requests one at a time does; a
     * Metadata behind a produce still waiting for the in-sync replicas would
     * otherwise reach the client after fresher ones and send it back to a
     * dead leader. It waits for its turn (parked, reading nothing more). */
    if (q->ctx->self && !rn_kreq_alone(q)) {
        kmeta_t *keep = malloc(sizeof *keep);
        if (!keep) return rn_kreq_bad(q, "out of memory");
        *keep = m;
        keep->deadline = rn_server_now_ms() + METADATA_WAIT_MS;
        q->hstate = keep;
        q->hfree = metadata_free;
        return rn_kreq_park(q, keep->deadline, metadata_retry);
    }
    metadata_answer(q, &m);
    return RN_KH_DONE;
}

static void metadata_answer(rn_kreq_t *q, const kmeta_t *req)
{
    rn_kw_t *w = &q->w;
    const uint8_t *names = req->names;
    int32_t n = req->n;
    int create = req->create, all = req->all;
    if (q->version >= 3) rn_kw_i32(w, 0);              /* throttle_time_ms */
    const rn_ctl_view_t *cv = cluster_view(q->ctx);     /* invariant 7 */
    metadata_brokers(q, cv);
    if (all) {
        rn_meta_topic_t *v = NULL;
        size_t nt = 0;
        char err[RN_ERRMSG_SIZE] = "";
        rn_meta_t *m = rn_datadir_meta_lock(q->ctx->d);
        int rc = rn_meta_topic_list(m, &v, &nt, err);
        rn_datadir_meta_unlock(q->ctx->d);
        if (rc != 0) {
            rn_slog(RN_SLOG_WARN, "kafka: Metadata from %s: %s", q->peer, err);
            nt = 0;
        }
        rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;       /* invariant 6 */
        size_t shown = 0;
        for (size_t i = 0; i < nt; i++)
            if (rn_acl_allowed(acl, q->principal, RN_ACL_TOPIC, v[i].name, RN_ACL_DESCRIBE, 0))
                v[shown++] = v[i];
        rn_kw_array(w, (int32_t)shown);
        for (size_t i = 0; i < shown; i++) {
            const rn_fsm_topic_t *rt = cv ? view_topic(cv, v[i].name) : NULL;
            if (rt) metadata_rtopic(q, cv, rt);
            else metadata_topic(q, v[i].name, (int32_t)strlen(v[i].name), RN_KERR_NONE,
                                v[i].queues);
        }
        free(v);
        if (cv) rn_ctl_view_put(cv);
        return;
    }
    rn_kw_array(w, n);
    rn_kr_t again;
    rn_kr_init(&again, names, (size_t)(q->in.end - names), q->flex);
    uint64_t created = q->ctx->created;
    for (int32_t i = 0; i < n; i++) {
        rn_kstr_t s = rn_kr_str(&again, "topic name");
        rn_meta_topic_t t;
        int more = q->ctx->created - created < RN_KAPI_MAX_AUTO_CREATE;
        if (!rn_kacl_topic(q, s, RN_ACL_DESCRIBE)) {         /* invariant 6 */
            metadata_topic(q, s.p, s.len, RN_KERR_TOPIC_AUTHORIZATION_FAILED, 0);
            continue;
        }
        char rname[256];
        const rn_fsm_topic_t *rt = NULL;
        if (cv && rn_ktopic_valid(s) && rn_kstr_copy(s, rname, sizeof rname) == 0)
            rt = view_topic(cv, rname);
        if (rt) {                           /* invariant 7: never auto-created here */
            metadata_rtopic(q, cv, rt);
            continue;
        }
        int16_t e = rn_ktopic_get(q->ctx, s, create && more && may_create(q, s), &t);
        /* A new topic is known at once: Kafka answers LEADER_NOT_AVAILABLE
         * while its partitions elect leaders; runnel's are ready. */
        metadata_topic(q, s.p, s.len, e, e == RN_KERR_NONE ? t.queues : 0);
    }
    if (cv) rn_ctl_view_put(cv);
}

/* ---- InitProducerId (22) -------------------------------------------------------- */

/* In a cluster a producer's batches go to the leaders of many nodes, and
 * each node's registry issues ids 1, 2, ... of its own: the id is drawn at
 * random in [RN_PREG_CLUSTER_ID_MIN, 2^53), epoch 0, as librunnel does
 * (client/producer.c invariant 9); the leaders check its sequences, not its
 * epoch (server/handlers.c). */
static int cluster_producer_id(int64_t *id, char *errmsg)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
        snprintf(errmsg, RN_ERRMSG_SIZE, "getrandom: no random producer id");
        return -1;
    }
    *id = RN_PREG_CLUSTER_ID_MIN | (int64_t)(r & ((1ull << 52) - 1));
    return 0;
}

int rn_kh_init_producer_id(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kstr_t txn = rn_kr_str(r, "transactional_id");
    rn_kr_i32(r, "transaction_timeout_ms");
    if (r->err) return RN_KH_BAD;
    rn_kw_t *w = &q->w;
    rn_kw_i32(w, 0);                                    /* throttle_time_ms */
    if (txn.len >= 0) {
        /* A transactional producer is refused (runnel has no transactions,
         * kafka/README.md); v0-1 answers carry no message, so the log says why. */
        rn_slog(RN_SLOG_WARN, "kafka: InitProducerId from %s names transactional id '%.*s': "
                "transactions are not supported; idempotent producers are", q->peer,
                txn.len > 100 ? 100 : (int)txn.len, txn.p);
        rn_kw_i16(w, RN_KERR_INVALID_REQUEST);
        rn_kw_i64(w, -1);
        rn_kw_i16(w, -1);
        return RN_KH_DONE;
    }
    if (!rn_acl_allowed_any(rn_hd_opts(q->ctx->hd)->acl, q->principal, RN_ACL_TOPIC,
                            RN_ACL_PRODUCE)) {                  /* invariant 6 */
        rn_slog(RN_SLOG_INFO, "kafka: refused InitProducerId to %s: principal '%s' may produce "
                "to no topic", q->peer, rn_acl_principal(q->principal));
        rn_kw_i16(w, RN_KERR_CLUSTER_AUTHORIZATION_FAILED);
        rn_kw_i64(w, -1);
        rn_kw_i16(w, -1);
        return RN_KH_DONE;
    }
    int64_t id = 0;
    int16_t epoch = 0;
    char err[RN_ERRMSG_SIZE] = "";
    int rc = q->ctx->self ? cluster_producer_id(&id, err)
                          : rn_hd_producer_init(q->ctx->hd, 0, &id, &epoch, err);
    if (rc != 0) {
        rn_slog(RN_SLOG_WARN, "kafka: InitProducerId from %s: %s", q->peer, err);
        rn_kw_i16(w, RN_KERR_UNKNOWN_SERVER_ERROR);
        rn_kw_i64(w, -1);
        rn_kw_i16(w, -1);
        return RN_KH_DONE;
    }
    rn_kw_i16(w, RN_KERR_NONE);
    rn_kw_i64(w, id);
    rn_kw_i16(w, epoch);
    return RN_KH_DONE;
}

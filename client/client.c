/*
 * client.c — librunnel's client handle and its administration calls, each
 * with an embedded branch (the core functions on a locked data directory)
 * and a remote branch (one or a few unary RPCs to runneld).
 *
 * Invariants:
 *  1. The two branches give the same results and the same error codes and
 *     messages: the broker runs the same core code and returns its errmsg as
 *     the status message; where a check happens on the client side remote
 *     (an offset against a queue's range, a checkpoint name), the message is
 *     built with the core's wording (rn_client_range_error, checkpoint_find).
 *  2. Embedded metadata reads take the data directory's metadata lock
 *     (rn_datadir_meta_lock), so a producer thread may append meanwhile.
 *  3. Every protobuf answer is freed before return; arrays handed out are
 *     plain malloc'd C structs, never protobuf memory.
 *  4. Admin calls fail at once on a transport error ("cannot reach ..."),
 *     except a group commit (idempotent: it sets offsets) on a client that
 *     has reached the broker before: it is retried with backoff for up to
 *     RETRY_BUDGET_MS, so a consumer committing as it goes rides out a
 *     runneld restart, while a wrong address still fails at once.
 *  5. Cluster routing (opened with a bootstrap list): the routes (topic,
 *     queue) → the leader's connection come from the ClusterStatus of the
 *     controller leader, else the answer with the highest term and applied
 *     index, of the nodes of the list and then those known; they are asked
 *     for on the first rn_client_rpc_for and again by rn_client_reroute
 *     (after NOT_LEADER or a transport failure), at most once per
 *     RN_CLIENT_REROUTE_MS. Connections (at most RN_CLIENT_MAX_CONNS, [0]
 *     the handle's own) are never closed before rn_client_close, so a
 *     connection handed out stays valid; the table and routes change under
 *     rmu only, and no call is made while holding it. Group offsets and
 *     every admin call go to the handle's own connection (that node passes
 *     group commits on to the cluster controller: cluster/README.md).
 *  7. A group commit in a cluster goes to the handle's own node, which
 *     checks each offset against its own replica of the queue; a replica
 *     that lags the leader (a node restarted, catching up) answers "offset
 *     N is outside ... range": retried like a transport failure (invariant
 *     4), since the consumer commits only offsets the leader served, below
 *     its high watermark, which every in-sync replica reaches.
 *  6. Topic creation rides out a cluster settling (a controller without a
 *     leader or without its client address yet, too few live nodes: the
 *     "; retry" answers) for up to ADMIN_RETRY_MS, then fails with the
 *     last answer; so does looking up a replicated topic (one the cluster
 *     status lists) on a node that has not made it yet. In a cluster an
 *     unknown topic is looked up again for TOPIC_SETTLE_MS (a topic just
 *     committed may not be in the status of the node asked yet) before
 *     "unknown topic" is final.
 */
#include "client/client_int.h"
#include "client/tls.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sys.h"

#define RETRY_BUDGET_MS 120000       /* invariant 4 */
#define ADMIN_RETRY_MS  20000        /* invariant 6 */
#define TOPIC_SETTLE_MS 2000         /* invariant 6: an unknown topic in a cluster */
#define STATUS_TIMEOUT_MS 700       /* one ClusterStatus while routing */

/* ---- Handle ------------------------------------------------------------- */

void rn_client_opts_default(rn_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->holder = "librunnel";
    rn_log_opts_default(&o->log);
    o->timeout_ms = 30000;
}

int rn_client_open_data(const char *dir, const rn_client_opts_t *o, rn_client_t **out,
                        char *errmsg)
{
    rn_client_opts_t def;
    if (!o) { rn_client_opts_default(&def); o = &def; }
    *out = NULL;
    rn_client_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_datadir_opts_t dopts;
    rn_datadir_opts_default(&dopts);
    dopts.log = o->log;
    dopts.holder = o->holder ? o->holder : "librunnel";
    dopts.create = o->create;
    dopts.report = o->report;
    dopts.report_arg = o->report_arg;
    int rc = rn_datadir_open(dir, &dopts, &c->d, errmsg);
    if (rc != 0) { free(c); return rc; }
    snprintf(c->where, sizeof c->where, "%s", dir);
    *out = c;
    return 0;
}

int rn_client_open_server(const char *target, const rn_client_opts_t *o, rn_client_t **out,
                          char *errmsg)
{
    rn_client_opts_t def;
    if (!o) { rn_client_opts_default(&def); o = &def; }
    *out = NULL;
    rn_client_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_tls_files_t tf = {o->tls_ca, o->tls_cert, o->tls_key};
    int rc = rn_tls_rpc_open(target, &tf, &c->rpc, errmsg);
    if (rc != 0) { free(c); return rc; }
    if (o->token && (rc = rn_rpc_set_token(c->rpc, o->token, errmsg)) != 0) {
        rn_rpc_close(c->rpc);
        free(c);
        return rc;
    }
    c->remote = 1;
    c->timeout_ms = o->timeout_ms;
    snprintf(c->where, sizeof c->where, "%s", target);
    pthread_mutex_init(&c->rmu, NULL);
    c->clustered = -1;
    snprintf(c->conns[0].addr, sizeof c->conns[0].addr, "%s", target);
    c->conns[0].rpc = c->rpc;
    c->nconns = 1;
    if (o->bootstrap) {
        c->bootstrap = strdup(o->bootstrap);
        c->tls_ca = o->tls_ca ? strdup(o->tls_ca) : NULL;
        c->tls_cert = o->tls_cert ? strdup(o->tls_cert) : NULL;
        c->tls_key = o->tls_key ? strdup(o->tls_key) : NULL;
        c->token = o->token ? strdup(o->token) : NULL;
        if (!c->bootstrap || (o->tls_ca && !c->tls_ca) || (o->tls_cert && !c->tls_cert) ||
            (o->tls_key && !c->tls_key) || (o->token && !c->token)) {
            rn_client_close(c);
            return rn_errf(errmsg, -ENOMEM, "out of memory");
        }
    }
    *out = c;
    return 0;
}

int rn_client_close(rn_client_t *c)
{
    if (!c) return 0;
    int rc = 0;
    if (c->remote) {
        for (size_t i = 0; i < c->nconns; i++) rn_rpc_close(c->conns[i].rpc);
        free(c->routes);
        free(c->bootstrap);
        free(c->tls_ca);
        free(c->tls_cert);
        free(c->tls_key);
        free(c->token);
        pthread_mutex_destroy(&c->rmu);
    } else {
        rc = rn_datadir_close(c->d);
    }
    free(c);
    return rc;
}

/* ---- Cluster routing (invariant 5) ---------------------------------------- */

/* The index of addr's connection, opened when new; -1 when the table is
 * full or the connection cannot be made. */
static long conn_get(rn_client_t *c, const char *addr)
{
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < c->nconns; i++)
        if (!strcmp(c->conns[i].addr, addr)) { pthread_mutex_unlock(&c->rmu); return (long)i; }
    int full = c->nconns == RN_CLIENT_MAX_CONNS;
    pthread_mutex_unlock(&c->rmu);
    if (full || strlen(addr) >= sizeof c->conns[0].addr) return -1;
    char err[RN_ERRMSG_SIZE];
    rn_tls_files_t tf = {c->tls_ca, c->tls_cert, c->tls_key};
    rn_rpc_t *rpc = NULL;
    if (rn_tls_rpc_open(addr, &tf, &rpc, err) != 0 ||
        (c->token && rn_rpc_set_token(rpc, c->token, err) != 0)) {
        rn_rpc_close(rpc);
        return -1;
    }
    long at = -1;
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < c->nconns && at < 0; i++)
        if (!strcmp(c->conns[i].addr, addr)) at = (long)i;      /* opened meanwhile */
    if (at < 0 && c->nconns < RN_CLIENT_MAX_CONNS) {
        at = (long)c->nconns;
        snprintf(c->conns[at].addr, sizeof c->conns[at].addr, "%s", addr);
        c->conns[at].rpc = rpc;
        c->nconns++;
        rpc = NULL;
    }
    pthread_mutex_unlock(&c->rmu);
    rn_rpc_close(rpc);
    return at;
}

/* One node's ClusterStatus, or NULL. */
static Runnel__V1__ClusterStatusResponse *status_of(rn_client_t *c, const char *addr)
{
    long i = conn_get(c, addr);
    if (i < 0) return NULL;
    pthread_mutex_lock(&c->rmu);
    rn_rpc_t *rpc = c->conns[i].rpc;
    pthread_mutex_unlock(&c->rmu);
    Runnel__V1__ClusterStatusRequest req = RUNNEL__V1__CLUSTER_STATUS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    if (rn_rpc_call(rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                    &runnel__v1__cluster_status_response__descriptor, &m, STATUS_TIMEOUT_MS,
                    NULL, err) != 0)
        return NULL;
    return (Runnel__V1__ClusterStatusResponse *)m;
}

/* Routes from one answer: each queue whose leader is live with a client
 * address. */
static void routes_from(rn_client_t *c, const Runnel__V1__ClusterStatusResponse *r)
{
    struct rn_client_route *v = calloc(r->n_queues ? r->n_queues : 1, sizeof *v);
    if (!v) return;
    size_t n = 0;
    for (size_t i = 0; i < r->n_queues; i++) {
        const Runnel__V1__ClusterQueue *q = r->queues[i];
        for (size_t k = 0; k < r->n_nodes; k++) {
            const Runnel__V1__ClusterNode *nd = r->nodes[k];
            if (nd->id != q->leader || !nd->live || !nd->client_address[0]) continue;
            long at = conn_get(c, nd->client_address);
            if (at < 0) break;
            snprintf(v[n].topic, sizeof v[n].topic, "%s", q->topic);
            v[n].queue = q->queue;
            v[n].conn = (size_t)at;
            n++;
            break;
        }
    }
    pthread_mutex_lock(&c->rmu);
    struct rn_client_route *old = c->routes;
    c->routes = v;
    c->nroutes = n;
    c->clustered = 1;
    pthread_mutex_unlock(&c->rmu);
    free(old);
}

/* Ask the bootstrap nodes, then every node known, until one answers. */
static void routes_load(rn_client_t *c)
{
    char addrs[RN_CLIENT_MAX_CONNS + 16][256];
    size_t n = 0;
    for (const char *p = c->bootstrap; p && *p && n < 16;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        snprintf(addrs[n++], sizeof addrs[0], "%.*s", (int)(len < 255 ? len : 255), p);
        if (!e) break;
        p = e + 1;
    }
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < c->nconns; i++) snprintf(addrs[n++], sizeof addrs[0], "%s", c->conns[i].addr);
    pthread_mutex_unlock(&c->rmu);
    /* The freshest view: the controller leader's, else the answer with the
     * highest term and applied index (a node just restarted may still be
     * replaying an old one). */
    Runnel__V1__ClusterStatusResponse *best = NULL;
    int single = 0;
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t k = 0; k < i; k++) seen |= !strcmp(addrs[k], addrs[i]);
        if (seen) continue;
        Runnel__V1__ClusterStatusResponse *r = status_of(c, addrs[i]);
        if (!r) continue;
        if (!r->clustered) {
            single = 1;
            rn_client_free_msg(r);
            break;
        }
        if (!best || r->term > best->term ||
            (r->term == best->term && r->applied_index > best->applied_index)) {
            rn_client_free_msg(best);
            best = r;
        } else {
            rn_client_free_msg(r);
        }
        if (best->state && !strcmp(best->state, "leader")) break;
    }
    if (best) routes_from(c, best);
    else if (single) {
        pthread_mutex_lock(&c->rmu);
        if (c->clustered < 0) c->clustered = 0;
        pthread_mutex_unlock(&c->rmu);
    }
    rn_client_free_msg(best);
}

/* Load the routes when due: forced (a reroute) at most once per
 * RN_CLIENT_REROUTE_MS, else only while unknown, at most once a second. */
static void routes_refresh(rn_client_t *c, int force)
{
    if (!c->bootstrap) return;
    uint64_t now = rn_mono_ns();
    pthread_mutex_lock(&c->rmu);
    uint64_t gap = (uint64_t)(force ? RN_CLIENT_REROUTE_MS : 1000) * 1000000u;
    int due = (force ? c->clustered != 0 : c->clustered < 0) &&
              (c->routed_ns == 0 || now - c->routed_ns >= gap);
    if (due) c->routed_ns = now;
    pthread_mutex_unlock(&c->rmu);
    if (due) routes_load(c);
}

void rn_client_reroute(rn_client_t *c) { routes_refresh(c, 1); }

int rn_client_replicated(rn_client_t *c, const char *topic)
{
    if (!c->bootstrap) return 0;
    routes_refresh(c, 0);
    int yes = 0;
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < c->nroutes && !yes; i++) yes = !strcmp(c->routes[i].topic, topic);
    pthread_mutex_unlock(&c->rmu);
    return yes;
}

rn_rpc_t *rn_client_rpc_for(rn_client_t *c, const char *topic, uint32_t queue)
{
    if (!c->bootstrap) return c->rpc;
    routes_refresh(c, 0);
    rn_rpc_t *rpc = c->rpc;
    pthread_mutex_lock(&c->rmu);
    for (size_t i = 0; i < c->nroutes; i++)
        if (c->routes[i].queue == queue && !strcmp(c->routes[i].topic, topic)) {
            rpc = c->conns[c->routes[i].conn].rpc;
            break;
        }
    pthread_mutex_unlock(&c->rmu);
    return rpc;
}

int rn_client_cluster_transient(int rc, const char *errmsg, int *moved)
{
    const char *m = errmsg ? errmsg : "";
    *moved = 0;
    if (rc == RN_ESTICKY && strstr(m, "not leader of ")) { *moved = 1; return 1; }
    if (rc == RN_ESTICKY && strstr(m, "min_insync_replicas")) return 1;    /* nothing stored */
    if (rn_rpc_retriable(rc)) { *moved = 1; return 1; }   /* no leader now, a dead node, ... */
    return 0;
}

int rn_client_is_remote(const rn_client_t *c) { return c->remote; }
const char *rn_client_where(const rn_client_t *c) { return c->where; }

/* MurmurHash2, 32-bit (Austin Appleby's algorithm, public domain), with the
 * seed Kafka's default partitioner uses. */
uint32_t rn_murmur2(const uint8_t *p, size_t n)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
                     (uint32_t)p[i + 3] << 24;
        k *= m; k ^= k >> 24; k *= m;
        h *= m; h ^= k;
    }
    switch (n & 3) {
    case 3: h ^= (uint32_t)p[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[i + 1] << 8;  /* fall through */
    case 1: h ^= p[i]; h *= m;
    }
    h ^= h >> 13; h *= m; h ^= h >> 15;
    return h;
}

uint32_t rn_client_partition(const uint8_t *key, size_t len, uint32_t nqueues)
{
    return nqueues ? (rn_murmur2(key, len) & 0x7fffffffu) % nqueues : 0;
}

/* ---- Shared helpers ------------------------------------------------------ */

int rn_client_call(rn_client_t *c, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp, char *errmsg)
{
    *resp = NULL;
    int rc = rn_rpc_call(c->rpc, method, req, desc, resp, c->timeout_ms, NULL, errmsg);
    if (rc == 0 || !rn_rpc_retriable(rc)) __atomic_store_n(&c->reached, 1, __ATOMIC_RELAXED);
    return rc;
}

/* rn_client_call, retried across a broker restart (invariant 4): only for an
 * idempotent call. */
static int cluster_node(rn_client_t *c)
{
    if (!c->bootstrap) return 0;
    pthread_mutex_lock(&c->rmu);
    int yes = c->clustered == 1;
    pthread_mutex_unlock(&c->rmu);
    return yes;
}

/* Invariant 6: rc is "unknown topic" from a cluster node that may not have
 * made a topic the controller committed yet: look again (reroutes). */
static int topic_settling(rn_client_t *c, const char *topic, int rc, uint64_t t0)
{
    if (rc != RN_ENOTFOUND || !c->bootstrap) return 0;
    routes_refresh(c, 0);
    if (!cluster_node(c)) return 0;
    uint64_t ms = (rn_mono_ns() - t0) / 1000000u;
    return ms < ADMIN_RETRY_MS && (ms < TOPIC_SETTLE_MS || rn_client_replicated(c, topic));
}

static int call_retried(rn_client_t *c, const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                        int lagging_ok, char *errmsg)
{
    uint64_t until = rn_mono_ns() + (uint64_t)RETRY_BUDGET_MS * 1000000u;
    uint64_t rng = rn_mono_ns();
    for (uint32_t attempt = 1;; attempt++) {
        int rc = rn_client_call(c, method, req, desc, resp, errmsg);
        if (rc == 0 || rn_mono_ns() >= until) return rc;
        /* Invariant 7: this node's replica of a queue lags its leader. */
        int lagging = rc == RN_ERANGE && lagging_ok && cluster_node(c) &&
                      strstr(errmsg, "is outside topic");
        if (!lagging && (!rn_rpc_retriable(rc) || !__atomic_load_n(&c->reached, __ATOMIC_RELAXED)))
            return rc;
        uint32_t ms = rn_rpc_backoff_ms(50, 2000, attempt, &rng);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

void rn_client_free_msg(void *msg)
{
    if (msg) protobuf_c_message_free_unpacked((ProtobufCMessage *)msg, NULL);
}

int rn_client_range_error(char *errmsg, const char *topic, uint32_t queue, int64_t offset,
                          int64_t log_start, int64_t high_watermark)
{
    return rn_errf(errmsg, RN_ERANGE, "offset %lld is outside topic '%s' queue %u's range "
                   "[%lld, %lld]", (long long)offset, topic, queue, (long long)log_start,
                   (long long)high_watermark);
}

int rn_client_list_offsets(rn_client_t *c, const char *topic, uint32_t queue, int spec, int64_t ts,
                           int64_t *offset, int64_t *log_start, int64_t *hw, char *errmsg)
{
    Runnel__V1__ListOffsetsRequest req = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
    Runnel__V1__ListOffsetsResponse *resp = NULL;
    req.topic = (char *)topic;
    req.queue = queue;
    if (spec == 0) { req.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_EARLIEST; req.earliest = 1; }
    else if (spec == 1) { req.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST; req.latest = 1; }
    else { req.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_TIMESTAMP_MS; req.timestamp_ms = ts; }
    int rc;
    if (!c->bootstrap) {
        rc = rn_client_call(c, RN_RPC_METHOD("ListOffsets"), &req.base,
                            &runnel__v1__list_offsets_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    } else {
        /* Invariant 5: the leader's offsets, following it while it moves. */
        uint64_t until = rn_mono_ns() + (uint64_t)ADMIN_RETRY_MS * 1000000u, rng = rn_mono_ns();
        for (uint32_t attempt = 1;; attempt++) {
            rn_rpc_t *rpc = rn_client_rpc_for(c, topic, queue);
            rc = rn_rpc_call(rpc, RN_RPC_METHOD("ListOffsets"), &req.base,
                             &runnel__v1__list_offsets_response__descriptor,
                             (ProtobufCMessage **)&resp, c->timeout_ms, NULL, errmsg);
            int moved = 0;
            if (topic_settling(c, topic, rc, until - (uint64_t)ADMIN_RETRY_MS * 1000000u))
                moved = 1;
            else if (rc == 0 || !rn_client_cluster_transient(rc, errmsg, &moved) ||
                     rn_mono_ns() >= until)
                break;
            if (moved) rn_client_reroute(c);
            uint32_t ms = rn_rpc_backoff_ms(50, 200, attempt, &rng);
            struct timespec tw = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
            nanosleep(&tw, NULL);
        }
    }
    if (rc != 0) return rc;
    if (offset) *offset = resp->offset;
    if (log_start) *log_start = resp->log_start_offset;
    if (hw) *hw = resp->high_watermark;
    rn_client_free_msg(resp);
    return 0;
}

static int oom(char *errmsg) { return rn_errf(errmsg, -ENOMEM, "out of memory"); }

static void copy_name(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static void topic_from_info(rn_meta_topic_t *t, const Runnel__V1__TopicInfo *ti)
{
    memset(t, 0, sizeof *t);
    copy_name(t->name, sizeof t->name, ti->name);
    t->queues = ti->queue_count;
    t->created_ms = ti->created_ms;
}

/* The protocol's mapping items into core ones. */
static int items_from_info(const Runnel__V1__QueueInfo *qi, rn_meta_item_t **out, size_t *n,
                           char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (qi->n_items == 0) return 0;
    rn_meta_item_t *v = calloc(qi->n_items, sizeof *v);
    if (!v) return oom(errmsg);
    for (size_t i = 0; i < qi->n_items; i++) {
        const Runnel__V1__MappingItem *m = qi->items[i];
        v[i].queue = qi->queue;
        v[i].seq = m->seq;
        v[i].logical_start = m->logical_start;
        v[i].store_id = m->store_id;
        v[i].physical_id = m->physical_queue;
        v[i].physical_start = m->physical_start;
        v[i].physical_end = m->physical_end;
    }
    *out = v;
    *n = qi->n_items;
    return 0;
}

static int describe_remote(rn_client_t *c, const char *name, Runnel__V1__TopicInfo **out,
                           char *errmsg)
{
    Runnel__V1__DescribeTopicRequest req = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    req.name = (char *)name;
    return rn_client_call(c, RN_RPC_METHOD("DescribeTopic"), &req.base,
                          &runnel__v1__topic_info__descriptor, (ProtobufCMessage **)out, errmsg);
}

/* ---- Topics -------------------------------------------------------------- */

static int topic_create_or_alter(rn_client_t *c, const char *method, const char *name,
                                 uint32_t queues, uint32_t replicas, rn_meta_topic_t *out,
                                 char *errmsg)
{
    Runnel__V1__TopicInfo *ti = NULL;
    int rc;
    if (!strcmp(method, RN_RPC_METHOD("CreateTopic"))) {
        Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
        req.name = (char *)name;
        req.queues = queues;
        req.replicas = replicas;
        /* Invariant 6: a settling cluster's "...; retry" answers. */
        uint64_t until = rn_mono_ns() + (uint64_t)ADMIN_RETRY_MS * 1000000u, rng = rn_mono_ns();
        for (uint32_t attempt = 1;; attempt++) {
            rc = rn_client_call(c, method, &req.base, &runnel__v1__topic_info__descriptor,
                                (ProtobufCMessage **)&ti, errmsg);
            size_t len = strlen(errmsg);
            if (rc != -ECONNREFUSED || len < 7 || strcmp(errmsg + len - 7, "; retry") != 0 ||
                rn_mono_ns() >= until)
                break;
            uint32_t ms = rn_rpc_backoff_ms(50, 500, attempt, &rng);
            struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    } else {
        Runnel__V1__AlterTopicRequest req = RUNNEL__V1__ALTER_TOPIC_REQUEST__INIT;
        req.name = (char *)name;
        req.queues = queues;
        rc = rn_client_call(c, method, &req.base, &runnel__v1__topic_info__descriptor,
                            (ProtobufCMessage **)&ti, errmsg);
    }
    if (rc == 0 && out) topic_from_info(out, ti);
    rn_client_free_msg(ti);
    return rc;
}

int rn_client_topic_create(rn_client_t *c, const char *name, uint32_t queues,
                           rn_meta_topic_t *out, char *errmsg)
{
    if (c->remote)
        return topic_create_or_alter(c, RN_RPC_METHOD("CreateTopic"), name, queues, 0, out,
                                     errmsg);
    rn_meta_topic_t t;
    return rn_datadir_topic_create(c->d, name, queues, out ? out : &t, errmsg);
}

int rn_client_topic_create_replicated(rn_client_t *c, const char *name, uint32_t queues,
                                      uint32_t replicas, rn_meta_topic_t *out, char *errmsg)
{
    if (replicas && !c->remote)
        return rn_errf(errmsg, RN_EINVAL, "--replicas is for a cluster: give --server HOST:PORT "
                       "of a cluster node");
    if (c->remote)
        return topic_create_or_alter(c, RN_RPC_METHOD("CreateTopic"), name, queues, replicas,
                                     out, errmsg);
    return rn_client_topic_create(c, name, queues, out, errmsg);
}

int rn_client_topic_alter(rn_client_t *c, const char *name, uint32_t queues,
                          rn_meta_topic_t *out, char *errmsg)
{
    if (c->remote)
        return topic_create_or_alter(c, RN_RPC_METHOD("AlterTopic"), name, queues, 0, out,
                                     errmsg);
    rn_meta_topic_t t;
    return rn_datadir_topic_alter(c->d, name, queues, out ? out : &t, errmsg);
}

int rn_client_topic_delete(rn_client_t *c, const char *name, char *errmsg)
{
    if (!c->remote) return rn_datadir_topic_delete(c->d, name, NULL, errmsg);
    Runnel__V1__DeleteTopicRequest req = RUNNEL__V1__DELETE_TOPIC_REQUEST__INIT;
    Runnel__V1__DeleteTopicResponse *resp = NULL;
    req.name = (char *)name;
    int rc = rn_client_call(c, RN_RPC_METHOD("DeleteTopic"), &req.base,
                            &runnel__v1__delete_topic_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_topic_get(rn_client_t *c, const char *name, rn_meta_topic_t *out, char *errmsg)
{
    if (c->remote) {
        Runnel__V1__TopicInfo *ti = NULL;
        int rc = describe_remote(c, name, &ti, errmsg);
        /* Invariant 6: a replicated topic the controller committed and this
         * node has not made yet (its manager makes them every 20 ms). */
        uint64_t t0 = rn_mono_ns();
        while (topic_settling(c, name, rc, t0)) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            rn_client_reroute(c);           /* the answering node may lag the controller */
            rc = describe_remote(c, name, &ti, errmsg);
        }
        if (rc == 0) topic_from_info(out, ti);
        rn_client_free_msg(ti);
        return rc;
    }
    rn_meta_t *m = rn_datadir_meta_lock(c->d);
    int rc = rn_meta_topic_get(m, name, out, errmsg);
    rn_datadir_meta_unlock(c->d);
    return rc;
}

int rn_client_topic_list(rn_client_t *c, rn_meta_topic_t **out, size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        int rc = rn_meta_topic_list(m, out, n, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    Runnel__V1__ListTopicsRequest req = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    Runnel__V1__ListTopicsResponse *resp = NULL;
    int rc = rn_client_call(c, RN_RPC_METHOD("ListTopics"), &req.base,
                            &runnel__v1__list_topics_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    if (rc != 0) return rc;
    if (resp->n_topics) {
        *out = calloc(resp->n_topics, sizeof **out);
        if (!*out) rc = oom(errmsg);
        for (size_t i = 0; rc == 0 && i < resp->n_topics; i++) topic_from_info(&(*out)[i], resp->topics[i]);
        if (rc == 0) *n = resp->n_topics;
    }
    rn_client_free_msg(resp);
    return rc;
}

void rn_client_topic_desc_free(rn_client_topic_desc_t *d)
{
    if (d->queues)
        for (uint32_t i = 0; i < d->topic.queues; i++) free(d->queues[i].items);
    free(d->queues);
    d->queues = NULL;
}

static int describe_data(rn_client_t *c, const char *name, rn_client_topic_desc_t *out,
                         char *errmsg)
{
    int rc = rn_client_topic_get(c, name, &out->topic, errmsg);
    if (rc != 0) return rc;
    out->queues = calloc(out->topic.queues ? out->topic.queues : 1, sizeof *out->queues);
    if (!out->queues) return oom(errmsg);
    for (uint32_t i = 0; i < out->topic.queues && rc == 0; i++) {
        rn_datadir_queue_t q;
        rn_datadir_queue_info_t info;
        rn_client_queue_desc_t *qd = &out->queues[i];
        rc = rn_datadir_queue_open(c->d, name, i, &q, errmsg);
        if (rc != 0) break;
        rc = rn_datadir_queue_info(c->d, &q, &info, errmsg);
        if (rc == 0) {
            qd->queue = i;
            qd->log_start = info.log_start;
            qd->high_watermark = info.high_watermark;
            qd->batches = info.batches;
            qd->items = malloc(q.nitems * sizeof *qd->items);
            if (!qd->items) rc = oom(errmsg);
            else {
                memcpy(qd->items, q.items, q.nitems * sizeof *qd->items);
                qd->nitems = q.nitems;
            }
        }
        rn_datadir_queue_close(&q);
    }
    return rc;
}

static int desc_from_info(const Runnel__V1__TopicInfo *ti, rn_client_topic_desc_t *out,
                          char *errmsg)
{
    topic_from_info(&out->topic, ti);
    out->queues = calloc(out->topic.queues ? out->topic.queues : 1, sizeof *out->queues);
    if (!out->queues) return oom(errmsg);
    for (size_t i = 0; i < ti->n_queues; i++) {
        const Runnel__V1__QueueInfo *qi = ti->queues[i];
        if (qi->queue >= out->topic.queues)
            return rn_errf(errmsg, -EPROTO, "the broker described queue %u of a topic with %u "
                           "queues", qi->queue, out->topic.queues);
        rn_client_queue_desc_t *qd = &out->queues[qi->queue];
        qd->queue = qi->queue;
        qd->log_start = qi->log_start_offset;
        qd->high_watermark = qi->high_watermark;
        qd->batches = qi->batches;
        int rc = items_from_info(qi, &qd->items, &qd->nitems, errmsg);
        if (rc != 0) return rc;
    }
    return 0;
}

int rn_client_topic_describe(rn_client_t *c, const char *name, rn_client_topic_desc_t *out,
                             char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (!c->remote) return describe_data(c, name, out, errmsg);
    Runnel__V1__TopicInfo *ti = NULL;
    int rc = describe_remote(c, name, &ti, errmsg);
    if (rc == 0) rc = desc_from_info(ti, out, errmsg);
    rn_client_free_msg(ti);
    return rc;
}

int rn_client_queue_range(rn_client_t *c, const char *topic, uint32_t queue, int64_t *log_start,
                          int64_t *high_watermark, char *errmsg)
{
    if (c->remote)
        return rn_client_list_offsets(c, topic, queue, 0, 0, NULL, log_start, high_watermark,
                                      errmsg);
    rn_datadir_queue_t q;
    rn_datadir_queue_info_t info;
    int rc = rn_datadir_queue_open(c->d, topic, queue, &q, errmsg);
    if (rc != 0) return rc;
    rc = rn_datadir_queue_info(c->d, &q, &info, errmsg);
    rn_datadir_queue_close(&q);
    if (rc == 0) {
        *log_start = info.log_start;
        *high_watermark = info.high_watermark;
    }
    return rc;
}

int rn_client_resolve(rn_client_t *c, const char *topic, uint32_t queue,
                      rn_datadir_pos_kind_t kind, int64_t value, int64_t *offset, char *errmsg)
{
    if (!c->remote) {
        rn_datadir_queue_t q;
        int rc = rn_datadir_queue_open(c->d, topic, queue, &q, errmsg);
        if (rc != 0) return rc;
        rc = rn_datadir_resolve(c->d, &q, kind, value, offset, errmsg);
        rn_datadir_queue_close(&q);
        return rc;
    }
    int64_t ls, hw;
    switch (kind) {
    case RN_POS_EARLIEST: return rn_client_list_offsets(c, topic, queue, 0, 0, offset, NULL, NULL, errmsg);
    case RN_POS_LATEST: return rn_client_list_offsets(c, topic, queue, 1, 0, offset, NULL, NULL, errmsg);
    case RN_POS_TIME: return rn_client_list_offsets(c, topic, queue, 2, value, offset, NULL, NULL, errmsg);
    case RN_POS_OFFSET: break;
    }
    int rc = rn_client_list_offsets(c, topic, queue, 0, 0, NULL, &ls, &hw, errmsg);
    if (rc != 0) return rc;
    if (value < ls || value > hw) return rn_client_range_error(errmsg, topic, queue, value, ls, hw);
    *offset = value;
    return 0;
}

int rn_client_queue_remap(rn_client_t *c, const char *topic, uint32_t queue, const char *store,
                          rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg)
{
    if (!c->remote) return rn_datadir_remap(c->d, topic, queue, store, sealed, opened, errmsg);
    Runnel__V1__RemapQueueRequest req = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
    Runnel__V1__TopicInfo *ti = NULL;
    req.topic = (char *)topic;
    req.queue = queue;
    req.store_path = (char *)(store ? store : "");
    int rc = rn_client_call(c, RN_RPC_METHOD("RemapQueue"), &req.base,
                            &runnel__v1__topic_info__descriptor, (ProtobufCMessage **)&ti, errmsg);
    if (rc != 0) return rc;
    const Runnel__V1__QueueInfo *qi = NULL;
    for (size_t i = 0; i < ti->n_queues; i++)
        if (ti->queues[i]->queue == queue) qi = ti->queues[i];
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    if (!qi) rc = rn_errf(errmsg, -EPROTO, "the broker's answer to RemapQueue lacks queue %u", queue);
    else rc = items_from_info(qi, &items, &n, errmsg);
    if (rc == 0 && n < 2)
        rc = rn_errf(errmsg, -EPROTO, "the broker's answer to RemapQueue lists %zu item(s)", n);
    if (rc == 0) {
        if (sealed) *sealed = items[n - 2];
        if (opened) *opened = items[n - 1];
    }
    free(items);
    rn_client_free_msg(ti);
    return rc;
}

int rn_client_stores(rn_client_t *c, rn_datadir_store_info_t **out, size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) return rn_datadir_stores(c->d, out, n, errmsg);
    Runnel__V1__ListStoresRequest req = RUNNEL__V1__LIST_STORES_REQUEST__INIT;
    Runnel__V1__ListStoresResponse *resp = NULL;
    rn_meta_topic_t *topics = NULL;
    size_t ntopics = 0;
    int rc = rn_client_call(c, RN_RPC_METHOD("ListStores"), &req.base,
                            &runnel__v1__list_stores_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    if (rc != 0) return rc;
    rn_datadir_store_info_t *v = calloc(resp->n_stores ? resp->n_stores : 1, sizeof *v);
    if (!v) { rc = oom(errmsg); goto out; }
    for (size_t i = 0; i < resp->n_stores; i++) {
        v[i].id = resp->stores[i]->id;
        copy_name(v[i].path, sizeof v[i].path, resp->stores[i]->path);
        v[i].bytes = resp->stores[i]->bytes;
    }
    /* Physical queues of live mapping items, per store (invariant 1). */
    rc = rn_client_topic_list(c, &topics, &ntopics, errmsg);
    for (size_t t = 0; rc == 0 && t < ntopics; t++) {
        rn_client_topic_desc_t d;
        rc = rn_client_topic_describe(c, topics[t].name, &d, errmsg);
        for (uint32_t q = 0; rc == 0 && q < d.topic.queues; q++)
            for (size_t k = 0; k < d.queues[q].nitems; k++)
                for (size_t s = 0; s < resp->n_stores; s++)
                    if (v[s].id == d.queues[q].items[k].store_id) v[s].physical_queues++;
        rn_client_topic_desc_free(&d);
    }
    if (rc == 0) {
        *out = v;
        *n = resp->n_stores;
        v = NULL;
    }
out:
    free(v);
    free(topics);
    rn_client_free_msg(resp);
    return rc;
}

/* ---- Groups and checkpoints ------------------------------------------------ */

static int offsets_from_proto(Runnel__V1__QueueOffset **src, size_t n, rn_meta_offset_t **out,
                              char *errmsg)
{
    *out = NULL;
    if (n == 0) return 0;
    rn_meta_offset_t *v = calloc(n, sizeof *v);
    if (!v) return oom(errmsg);
    for (size_t i = 0; i < n; i++) {
        v[i].topic_id = -1;
        copy_name(v[i].topic, sizeof v[i].topic, src[i]->topic);
        v[i].queue = src[i]->queue;
        v[i].offset = src[i]->offset;
    }
    *out = v;
    return 0;
}

static int fetch_offsets_remote(rn_client_t *c, const char *group, const char *topic,
                                rn_meta_offset_t **out, size_t *n, char *errmsg)
{
    Runnel__V1__FetchOffsetsRequest req = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
    Runnel__V1__FetchOffsetsResponse *resp = NULL;
    req.group = (char *)group;
    req.topic = (char *)(topic ? topic : "");
    *out = NULL;
    *n = 0;
    int rc = rn_client_call(c, RN_RPC_METHOD("FetchOffsets"), &req.base,
                            &runnel__v1__fetch_offsets_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    if (rc != 0) return rc;
    rc = offsets_from_proto(resp->offsets, resp->n_offsets, out, errmsg);
    if (rc == 0) *n = resp->n_offsets;
    rn_client_free_msg(resp);
    return rc;
}

static int list_groups_remote(rn_client_t *c, Runnel__V1__ListGroupsResponse **resp, char *errmsg)
{
    Runnel__V1__ListGroupsRequest req = RUNNEL__V1__LIST_GROUPS_REQUEST__INIT;
    return rn_client_call(c, RN_RPC_METHOD("ListGroups"), &req.base,
                          &runnel__v1__list_groups_response__descriptor,
                          (ProtobufCMessage **)resp, errmsg);
}

/* Remote: RN_ENOTFOUND in the core's words unless group exists. */
static int group_exists_remote(rn_client_t *c, const char *group, char *errmsg)
{
    Runnel__V1__ListGroupsResponse *resp = NULL;
    int rc = list_groups_remote(c, &resp, errmsg);
    if (rc != 0) return rc;
    char known[200] = "";
    size_t len = 0;
    int found = 0;
    for (size_t i = 0; i < resp->n_groups; i++) {
        if (!strcmp(resp->groups[i], group)) found = 1;
        if (i == 8 || len + strlen(resp->groups[i]) + 8 >= sizeof known) {
            if (len < sizeof known) snprintf(known + len, sizeof known - len, ", ...");
            len = sizeof known;
        } else if (len < sizeof known) {
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "groups: ",
                                    resp->groups[i]);
        }
    }
    if (resp->n_groups == 0)
        snprintf(known, sizeof known, "there are no groups (consuming with --group G creates one)");
    rn_client_free_msg(resp);
    if (found) return 0;
    return rn_errf(errmsg, RN_ENOTFOUND, "unknown group '%.60s%s'; %s", group,
                   strlen(group) > 60 ? "..." : "", known);
}

static int list_checkpoints_remote(rn_client_t *c, const char *group,
                                   Runnel__V1__ListCheckpointsResponse **resp, char *errmsg)
{
    Runnel__V1__ListCheckpointsRequest req = RUNNEL__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    req.group = (char *)(group ? group : "");
    return rn_client_call(c, RN_RPC_METHOD("ListCheckpoints"), &req.base,
                          &runnel__v1__list_checkpoints_response__descriptor,
                          (ProtobufCMessage **)resp, errmsg);
}

static void checkpoint_from_proto(rn_meta_checkpoint_t *cp, const Runnel__V1__Checkpoint *p)
{
    memset(cp, 0, sizeof *cp);
    cp->id = -1;
    copy_name(cp->group, sizeof cp->group, p->group);
    copy_name(cp->name, sizeof cp->name, p->name);
    cp->created_ms = p->created_ms;
    cp->offsets = (uint32_t)p->n_offsets;
}

int rn_client_group_list(rn_client_t *c, rn_meta_group_t **out, size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        int rc = rn_meta_group_list(m, out, n, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    Runnel__V1__ListGroupsResponse *resp = NULL;
    int rc = list_groups_remote(c, &resp, errmsg);
    if (rc != 0) return rc;
    rn_meta_group_t *v = calloc(resp->n_groups ? resp->n_groups : 1, sizeof *v);
    if (!v) rc = oom(errmsg);
    for (size_t i = 0; rc == 0 && i < resp->n_groups; i++) {
        rn_meta_offset_t *offs = NULL;
        size_t noffs = 0;
        Runnel__V1__ListCheckpointsResponse *cps = NULL;
        copy_name(v[i].name, sizeof v[i].name, resp->groups[i]);
        v[i].created_ms = -1;
        rc = fetch_offsets_remote(c, resp->groups[i], NULL, &offs, &noffs, errmsg);
        if (rc == 0) rc = list_checkpoints_remote(c, resp->groups[i], &cps, errmsg);
        if (rc == 0) {
            v[i].offsets = (uint32_t)noffs;
            v[i].checkpoints = (uint32_t)cps->n_checkpoints;
        }
        free(offs);
        rn_client_free_msg(cps);
    }
    if (rc == 0) {
        *out = v;
        *n = resp->n_groups;
        v = NULL;
    }
    free(v);
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_group_offsets(rn_client_t *c, const char *group, const char *topic,
                            rn_meta_offset_t **out, size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (c->remote) {
        int rc = fetch_offsets_remote(c, group, topic, out, n, errmsg);
        if (rc == 0 && *n == 0) rc = group_exists_remote(c, group, errmsg);
        return rc;
    }
    rn_meta_t *m = rn_datadir_meta_lock(c->d);
    rn_meta_group_t g;
    rn_meta_topic_t t;
    int rc = rn_meta_group_get(m, group, &g, errmsg);
    if (rc == 0 && topic) rc = rn_meta_topic_get(m, topic, &t, errmsg);
    if (rc == 0) rc = rn_meta_offsets_get(m, group, topic ? t.id : -1, out, n, errmsg);
    rn_datadir_meta_unlock(c->d);
    return rc;
}

int rn_client_group_commit(rn_client_t *c, const char *group, const rn_meta_offset_t *v,
                           size_t n, char *errmsg)
{
    int rc = rn_meta_check_name("group", group, errmsg);
    if (rc != 0) return rc;
    if (c->remote) {
        Runnel__V1__CommitOffsetsRequest req = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
        Runnel__V1__QueueOffset *qo = calloc(n ? n : 1, sizeof *qo);
        Runnel__V1__QueueOffset **qp = calloc(n ? n : 1, sizeof *qp);
        ProtobufCMessage *resp = NULL;
        if (!qo || !qp) rc = oom(errmsg);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            runnel__v1__queue_offset__init(&qo[i]);
            qo[i].topic = (char *)v[i].topic;
            qo[i].queue = v[i].queue;
            qo[i].offset = v[i].offset;
            qp[i] = &qo[i];
        }
        req.group = (char *)group;
        req.n_offsets = n;
        req.offsets = qp;
        if (rc == 0)
            rc = call_retried(c, RN_RPC_METHOD("CommitOffsets"), &req.base,
                              &runnel__v1__commit_offsets_response__descriptor, &resp, 1, errmsg);
        rn_client_free_msg(resp);
        free(qo);
        free(qp);
        return rc;
    }
    /* Every offset is checked before the one transaction that writes. */
    rn_meta_offset_t *w = calloc(n ? n : 1, sizeof *w);
    if (!w) return oom(errmsg);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rn_datadir_queue_t q;
        int64_t got;
        w[i] = v[i];
        rc = rn_datadir_queue_open(c->d, v[i].topic, v[i].queue, &q, errmsg);
        if (rc != 0) break;
        rc = rn_datadir_resolve(c->d, &q, RN_POS_OFFSET, v[i].offset, &got, errmsg);
        w[i].topic_id = q.topic.id;
        rn_datadir_queue_close(&q);
    }
    if (rc == 0) rc = rn_group_commit_offsets(c->d, group, w, n, errmsg);
    free(w);
    return rc;
}

static int cmp_change(const void *a, const void *b)
{
    const rn_group_change_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c) return c;
    return (x->queue > y->queue) - (x->queue < y->queue);
}

static int64_t find_off(const rn_meta_offset_t *v, size_t n, const char *topic, uint32_t queue)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].queue == queue && !strcmp(v[i].topic, topic)) return v[i].offset;
    return -1;
}

static int has_topic(const rn_meta_offset_t *v, size_t n, const char *topic)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i].topic, topic)) return 1;
    return 0;
}

/* Remote reset: before = the group's offsets now; after = the broker's
 * answer; compared = every (topic, queue) of the reset's topics in either. */
static int group_reset_remote(rn_client_t *c, const char *group, const char *topic,
                              const rn_group_target_t *to, rn_group_change_t **changes,
                              size_t *nchanges, char *errmsg)
{
    rn_meta_offset_t *before = NULL, *after = NULL;
    size_t nbefore = 0, nafter = 0;
    rn_group_change_t *v = NULL;
    Runnel__V1__FetchOffsetsResponse *resp = NULL;
    int rc = rn_client_group_offsets(c, group, NULL, &before, &nbefore, errmsg);
    if (rc != 0) return rc;
    Runnel__V1__ResetGroupRequest req = RUNNEL__V1__RESET_GROUP_REQUEST__INIT;
    req.group = (char *)group;
    req.topic = (char *)(topic ? topic : "");
    switch (to->kind) {
    case RN_TARGET_EARLIEST: req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_EARLIEST; req.earliest = 1; break;
    case RN_TARGET_LATEST: req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_LATEST; req.latest = 1; break;
    case RN_TARGET_TIME: req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_TIMESTAMP_MS; req.timestamp_ms = to->value; break;
    case RN_TARGET_CHECKPOINT: req.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT; req.checkpoint = (char *)to->checkpoint; break;
    case RN_TARGET_OFFSET:
        rc = rn_errf(errmsg, RN_EINVAL, "a group reset takes earliest, latest, @TIMESTAMP_MS or "
                     "checkpoint:NAME");
        goto out;
    }
    rc = rn_client_call(c, RN_RPC_METHOD("ResetGroup"), &req.base,
                        &runnel__v1__fetch_offsets_response__descriptor,
                        (ProtobufCMessage **)&resp, errmsg);
    if (rc != 0) goto out;
    rc = offsets_from_proto(resp->offsets, resp->n_offsets, &after, errmsg);
    if (rc != 0) goto out;
    nafter = resp->n_offsets;
    v = calloc(nbefore + nafter + 1, sizeof *v);
    if (!v) { rc = oom(errmsg); goto out; }
    size_t n = 0;
    for (size_t i = 0; i < nafter; i++) {
        if (topic && strcmp(after[i].topic, topic) != 0) continue;
        copy_name(v[n].topic, sizeof v[n].topic, after[i].topic);
        v[n].queue = after[i].queue;
        v[n].before = find_off(before, nbefore, after[i].topic, after[i].queue);
        v[n].after = after[i].offset;
        n++;
    }
    for (size_t i = 0; i < nbefore; i++) {
        if (topic ? strcmp(before[i].topic, topic) != 0 : !has_topic(after, nafter, before[i].topic))
            continue;
        if (find_off(after, nafter, before[i].topic, before[i].queue) >= 0) continue;
        copy_name(v[n].topic, sizeof v[n].topic, before[i].topic);
        v[n].queue = before[i].queue;
        v[n].before = before[i].offset;
        v[n].after = -1;
        n++;
    }
    qsort(v, n, sizeof *v, cmp_change);
    *changes = v;
    *nchanges = n;
    v = NULL;
out:
    free(v);
    free(before);
    free(after);
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_group_reset(rn_client_t *c, const char *group, const char *topic,
                          const rn_group_target_t *to, rn_group_change_t **changes, size_t *n,
                          char *errmsg)
{
    *changes = NULL;
    *n = 0;
    if (c->remote) return group_reset_remote(c, group, topic, to, changes, n, errmsg);
    return rn_group_reset(c->d, group, topic, to, changes, n, errmsg);
}

int rn_client_checkpoint_create(rn_client_t *c, const char *group, const char *name,
                                rn_meta_checkpoint_t *out, char *errmsg)
{
    rn_meta_checkpoint_t tmp;
    if (!out) out = &tmp;
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        int rc = rn_meta_checkpoint_create(m, group, name, out, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    Runnel__V1__CreateCheckpointRequest req = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    Runnel__V1__Checkpoint *cp = NULL;
    req.group = (char *)group;
    req.name = (char *)name;
    int rc = rn_client_call(c, RN_RPC_METHOD("CreateCheckpoint"), &req.base,
                            &runnel__v1__checkpoint__descriptor, (ProtobufCMessage **)&cp, errmsg);
    if (rc == 0) checkpoint_from_proto(out, cp);
    rn_client_free_msg(cp);
    return rc;
}

int rn_client_checkpoint_list(rn_client_t *c, const char *group, rn_meta_checkpoint_t **out,
                              size_t *n, char *errmsg)
{
    *out = NULL;
    *n = 0;
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        rn_meta_group_t g;
        int rc = group ? rn_meta_group_get(m, group, &g, errmsg) : 0;
        if (rc == 0) rc = rn_meta_checkpoint_list(m, group, out, n, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    int rc = group ? group_exists_remote(c, group, errmsg) : 0;
    Runnel__V1__ListCheckpointsResponse *resp = NULL;
    if (rc == 0) rc = list_checkpoints_remote(c, group, &resp, errmsg);
    if (rc != 0) return rc;
    rn_meta_checkpoint_t *v = calloc(resp->n_checkpoints ? resp->n_checkpoints : 1, sizeof *v);
    if (!v) rc = oom(errmsg);
    for (size_t i = 0; rc == 0 && i < resp->n_checkpoints; i++)
        checkpoint_from_proto(&v[i], resp->checkpoints[i]);
    if (rc == 0) {
        *out = v;
        *n = resp->n_checkpoints;
    }
    rn_client_free_msg(resp);
    return rc;
}

int rn_client_checkpoint_drop(rn_client_t *c, const char *group, const char *name, char *errmsg)
{
    if (!c->remote) {
        rn_meta_t *m = rn_datadir_meta_lock(c->d);
        int rc = rn_meta_checkpoint_drop(m, group, name, errmsg);
        rn_datadir_meta_unlock(c->d);
        return rc;
    }
    Runnel__V1__DropCheckpointRequest req = RUNNEL__V1__DROP_CHECKPOINT_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    req.group = (char *)group;
    req.name = (char *)name;
    int rc = rn_client_call(c, RN_RPC_METHOD("DropCheckpoint"), &req.base,
                            &runnel__v1__drop_checkpoint_response__descriptor, &resp, errmsg);
    rn_client_free_msg(resp);
    return rc;
}

/* ---- Start positions -------------------------------------------------------- */

/* Remote: the checkpoint `name` (of group, or the only one so named) with
 * its offsets, or the core's message naming the valid ones. */
static int checkpoint_find(rn_client_t *c, const char *group, const char *name,
                           Runnel__V1__ListCheckpointsResponse **resp,
                           const Runnel__V1__Checkpoint **found, char *errmsg)
{
    *found = NULL;
    int rc = group ? group_exists_remote(c, group, errmsg) : 0;
    if (rc == 0) rc = list_checkpoints_remote(c, group, resp, errmsg);
    if (rc != 0) return rc;
    char known[200] = "", holders[200] = "";
    size_t len = 0, hlen = 0;
    int count = 0, shown = 0;
    for (size_t i = 0; i < (*resp)->n_checkpoints; i++) {
        const Runnel__V1__Checkpoint *cp = (*resp)->checkpoints[i];
        if (!strcmp(cp->name, name)) {
            if (!*found) *found = cp;
            if (hlen < sizeof holders)
                hlen += (size_t)snprintf(holders + hlen, sizeof holders - hlen, "%s%s",
                                         count ? ", " : "", cp->group);
            count++;
        }
        char entry[RN_META_NAME_MAX * 2 + 2];
        snprintf(entry, sizeof entry, group ? "%.0s%s" : "%s/%s", cp->group, cp->name);
        if (shown == 8 || len + strlen(entry) + 8 >= sizeof known) {
            if (shown >= 0 && len < sizeof known) snprintf(known + len, sizeof known - len, ", ...");
            shown = -1;
            len = sizeof known;
        } else if (shown >= 0) {
            len += (size_t)snprintf(known + len, sizeof known - len, "%s%s",
                                    shown ? ", " : group ? "its checkpoints: "
                                                         : "checkpoints (group/name): ", entry);
            shown++;
        }
    }
    if (count > 1 && !group)
        return rn_errf(errmsg, RN_EINVAL, "checkpoint '%.60s' exists in several groups (%s); "
                       "name the group with --group G", name, holders);
    if (*found) return 0;
    if ((*resp)->n_checkpoints == 0)
        snprintf(known, sizeof known, "%s", group ? "it has no checkpoints"
                                                  : "there are no checkpoints");
    if (group)
        return rn_errf(errmsg, RN_ENOTFOUND, "group '%s' has no checkpoint '%.60s'; %s", group,
                       name, known);
    return rn_errf(errmsg, RN_ENOTFOUND, "unknown checkpoint '%.60s'; %s", name, known);
}

static int start_offsets_remote(rn_client_t *c, const char *topic, const uint32_t *queues,
                                size_t n, const char *group, const rn_group_target_t *from,
                                int64_t *offsets, char *errmsg)
{
    Runnel__V1__ListCheckpointsResponse *cps = NULL;
    const Runnel__V1__Checkpoint *cp = NULL;
    rn_meta_offset_t *stored = NULL, *goffs = NULL;
    size_t nstored = 0;
    int rc = 0;
    char what[RN_META_NAME_MAX * 3 + 96];
    if (from->kind == RN_TARGET_CHECKPOINT) {
        rc = checkpoint_find(c, group, from->checkpoint, &cps, &cp, errmsg);
        if (rc == 0) rc = offsets_from_proto(cp->offsets, cp->n_offsets, &stored, errmsg);
        if (rc == 0) nstored = cp->n_offsets;
        if (rc == 0) snprintf(what, sizeof what, "checkpoint '%s' of group '%s'", cp->name, cp->group);
    } else if (group) {
        rc = rn_meta_check_name("group", group, errmsg);
        if (rc == 0) rc = fetch_offsets_remote(c, group, topic, &goffs, &nstored, errmsg);
        if (rc == RN_ENOTFOUND) {       /* an unknown group has no offsets */
            rc = 0;
            nstored = 0;
        }
        stored = goffs;
        goffs = NULL;
        snprintf(what, sizeof what, "group '%s' committed offset (reset it with `runnel group "
                 "reset %s --topic %s --to earliest`)", group, group, topic);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int64_t o = stored ? find_off(stored, nstored, topic, queues[i]) : -1;
        int64_t ls, hw;
        if (o < 0) {
            if (from->kind == RN_TARGET_CHECKPOINT)
                rc = rn_client_resolve(c, topic, queues[i], RN_POS_EARLIEST, 0, &offsets[i], errmsg);
            else {
                rn_datadir_pos_kind_t k = from->kind == RN_TARGET_LATEST ? RN_POS_LATEST
                                        : from->kind == RN_TARGET_TIME ? RN_POS_TIME
                                        : from->kind == RN_TARGET_OFFSET ? RN_POS_OFFSET
                                        : RN_POS_EARLIEST;
                rc = rn_client_resolve(c, topic, queues[i], k, from->value, &offsets[i], errmsg);
            }
            continue;
        }
        rc = rn_client_list_offsets(c, topic, queues[i], 0, 0, NULL, &ls, &hw, errmsg);
        if (rc == 0 && (o < ls || o > hw)) {
            char inner[RN_ERRMSG_SIZE];
            rn_client_range_error(inner, topic, queues[i], o, ls, hw);
            rc = rn_errf(errmsg, RN_ERANGE, "%s: %s", what, inner);
        }
        if (rc == 0) offsets[i] = o;
    }
    free(stored);
    free(goffs);
    rn_client_free_msg(cps);
    return rc;
}

int rn_client_start_offsets(rn_client_t *c, const char *topic, const uint32_t *queues, size_t n,
                            const char *group, const rn_group_target_t *from, int64_t *offsets,
                            char *errmsg)
{
    if (c->remote)
        return start_offsets_remote(c, topic, queues, n, group, from, offsets, errmsg);
    rn_meta_topic_t t;
    int rc = rn_client_topic_get(c, topic, &t, errmsg);
    if (rc != 0) return rc;
    rn_group_start_t st;
    memset(&st, 0, sizeof st);
    st.group = group;
    st.from = *from;
    rc = rn_group_start_prepare(c->d, &st, t.id, errmsg);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rn_datadir_queue_t q;
        rc = rn_datadir_queue_open(c->d, topic, queues[i], &q, errmsg);
        if (rc != 0) break;
        rc = rn_group_start_offset(c->d, &st, &q, &offsets[i], NULL, errmsg);
        rn_datadir_queue_close(&q);
    }
    rn_group_start_free(&st);
    return rc;
}

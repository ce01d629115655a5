/*
 * api_group.c — the consumer group APIs: FindCoordinator, JoinGroup,
 * SyncGroup, Heartbeat, LeaveGroup (membership: kafka/coord.h decides),
 * OffsetCommit and OffsetFetch (runnel's group offsets,
 * logical-queues/group.h), ListGroups and DescribeGroups.
 *
 * Field layouts follow Kafka's message schemas (JoinGroupRequest.json, ...);
 * a field added in version N is read or written only when q->version >= N.
 * None of the versions here is flexible.
 *
 * Invariants:
 *  1. A request is parsed whole before it changes anything: a request that
 *     does not parse (RN_KH_BAD) left no member joined or gone and no
 *     offset written. Requests with several items (LeaveGroup v3,
 *     OffsetCommit) are parsed once to check, then again to act.
 *  2. Committed offsets are runnel's group offsets: a Kafka group's offsets
 *     are those `runnel group offsets G` shows, checked against the queue's
 *     range like any commit. The offset metadata string is not kept
 *     (OffsetFetch answers ""), nor is the leader epoch (-1).
 *  3. OffsetCommit writes SQLite on the front's waiter thread
 *     (rn_kreq_offload), never on the loop thread; in a cluster the offsets
 *     of replicated topics wait there for the controller instead
 *     (api.h invariant 8: rn_hd_commit_offsets_req, called once the meta
 *     lock is released); the connection reads no
 *     further request until the commit is answered, so a later OffsetFetch
 *     on it sees the commit. Reads (OffsetFetch, ListGroups,
 *     DescribeGroups) run on the loop thread.
 *  4. Memory a request makes us allocate is bounded by a small multiple of
 *     its frame: counts are checked against the coordinator's bounds before
 *     any array is allocated, and commits go to SQLite in chunks of
 *     COMMIT_CHUNK offsets (under one lock of the metadata store).
 */
#include "kafka/api.h"

#include <stdlib.h>
#include <string.h>

#include "kafka/coord.h"
#include "logical-queues/group.h"
#include "server/log.h"
#include "server/server.h"

#define COMMIT_CHUNK 256

/* A group id as a C string: 0, or -1 when it is no valid runnel group name
 * (coord.h invariant 4). */
static int group_name(rn_kstr_t s, char *out, size_t n)
{
    if (!rn_ktopic_valid(s) || rn_kstr_copy(s, out, n) != 0) return -1;
    return 0;
}

/* api.h invariant 6: may q's principal do op on group (logged when not)? */
static int group_allowed(rn_kreq_t *q, const char *group, rn_acl_op_t op)
{
    return rn_kacl(q, RN_ACL_GROUP, group, op);
}

/* ---- FindCoordinator (10) -------------------------------------------------------- */

int rn_kh_find_coordinator(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kw_t *w = &q->w;
    rn_kstr_t key = rn_kr_str(r, "key");
    int8_t type = 0;
    if (q->version >= 1) type = rn_kr_i8(r, "key_type");
    if (r->err) return RN_KH_BAD;
    if (q->version >= 1) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    char group[256];
    if (type == 0 && group_name(key, group, sizeof group) == 0 &&
        !group_allowed(q, group, RN_ACL_DESCRIBE)) {
        rn_kw_i16(w, RN_KERR_GROUP_AUTHORIZATION_FAILED);
        if (q->version >= 1) rn_kw_str(w, "not authorized for this group (ACL)");
        rn_kw_i32(w, -1);
        rn_kw_str(w, "");
        rn_kw_i32(w, -1);
        return RN_KH_DONE;
    }
    if (type == 0) {
        /* api.h invariant 8: the group's coordinator in a cluster */
        int32_t id;
        int port;
        char host[256];
        if (rn_kcluster_coordinator(q->ctx, group_name(key, group, sizeof group) == 0
                                                ? group : "", &id, host, sizeof host,
                                    &port) != 0) {
            rn_kw_i16(w, RN_KERR_COORDINATOR_NOT_AVAILABLE);
            if (q->version >= 1) rn_kw_str(w, "no live cluster node with a Kafka listener "
                                              "is known yet; retry");
            rn_kw_i32(w, -1);
            rn_kw_str(w, "");
            rn_kw_i32(w, -1);
            return RN_KH_DONE;
        }
        rn_kw_i16(w, RN_KERR_NONE);
        if (q->version >= 1) rn_kw_str(w, NULL);
        rn_kw_i32(w, id);
        rn_kw_str(w, host);
        rn_kw_i32(w, port);
        return RN_KH_DONE;
    }
    /* Key type 1 asks for a transaction coordinator: runnel has no
     * transactions, so there is none (kafka/README.md lists them as absent);
     * any other key type is not Kafka's. */
    rn_kw_i16(w, type == 1 ? RN_KERR_COORDINATOR_NOT_AVAILABLE : RN_KERR_INVALID_REQUEST);
    if (q->version >= 1)
        rn_kw_str(w, type == 1 ? "runnel does not support transactions"
                               : "unknown coordinator key type");
    rn_kw_i32(w, -1);
    rn_kw_str(w, "");
    rn_kw_i32(w, -1);
    return RN_KH_DONE;
}

/* ---- JoinGroup (11) ------------------------------------------------------------------ */

void rn_kgroup_write_join(rn_kreq_t *q, int16_t err, int32_t generation, const char *protocol,
                          const char *leader, const char *member_id,
                          const rn_kjoin_member_t *members, int32_t n)
{
    rn_kw_t *w = &q->w;
    if (q->version >= 2) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    rn_kw_i16(w, err);
    rn_kw_i32(w, generation);
    rn_kw_str(w, protocol);
    rn_kw_str(w, leader);
    rn_kw_str(w, member_id);
    rn_kw_array(w, n);
    for (int32_t i = 0; i < n; i++) {
        rn_kw_str(w, members[i].id);
        if (q->version >= 5) rn_kw_str(w, members[i].instance);
        rn_kw_bytes(w, members[i].meta, members[i].meta_len);
    }
}

int rn_kh_join_group(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kjoin_t a;
    memset(&a, 0, sizeof a);
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    a.session_ms = rn_kr_i32(r, "session_timeout_ms");
    a.rebalance_ms = q->version >= 1 ? rn_kr_i32(r, "rebalance_timeout_ms") : a.session_ms;
    a.member_id = rn_kr_str(r, "member_id");
    a.instance_id.len = -1;
    if (q->version >= 5) a.instance_id = rn_kr_str(r, "group_instance_id");
    a.protocol_type = rn_kr_str(r, "protocol_type");
    int32_t n = rn_kr_array(r, "protocols");
    if (r->err) return RN_KH_BAD;
    char group[256];
    int16_t err = RN_KERR_NONE;
    if (group_name(gid, group, sizeof group) != 0) err = RN_KERR_INVALID_GROUP_ID;
    else if (!group_allowed(q, group, RN_ACL_CONSUME)) err = RN_KERR_GROUP_AUTHORIZATION_FAILED;
    else err = rn_kcluster_coord_here(q->ctx, group);     /* api.h invariant 8 */
    if (err != RN_KERR_NONE) {
        /* answered with err below, once the request parsed */
    } else if (n <= 0 || n > RN_KCOORD_MAX_PROTOCOLS) {
        err = RN_KERR_INCONSISTENT_GROUP_PROTOCOL;
    } else if (a.member_id.len < 0) {
        return rn_kreq_bad(q, "JoinGroup with a null member_id");
    }
    rn_kproto_t protos[RN_KCOORD_MAX_PROTOCOLS];
    for (int32_t i = 0; i < n && !r->err; i++) {
        rn_kstr_t name = rn_kr_str(r, "protocol name");
        rn_kstr_t meta = rn_kr_bytes(r, "protocol metadata");
        if (i < RN_KCOORD_MAX_PROTOCOLS) {
            protos[i].name = name;
            protos[i].meta = meta;
            if (name.len <= 0 || name.len > 255) err = RN_KERR_INCONSISTENT_GROUP_PROTOCOL;
        }
    }
    if (r->err) return RN_KH_BAD;
    if (err != RN_KERR_NONE) {
        rn_kgroup_write_join(q, err, -1, "", "", "", NULL, 0);
        return RN_KH_DONE;
    }
    a.group = group;
    a.protos = protos;
    a.nprotos = n;
    a.require_member_id = q->version >= 4;
    return rn_kcoord_join(q->ctx->coord, q, &a);
}

/* ---- SyncGroup (14) ------------------------------------------------------------------- */

void rn_kgroup_write_sync(rn_kreq_t *q, int16_t err, const uint8_t *assignment, int32_t len)
{
    rn_kw_t *w = &q->w;
    if (q->version >= 1) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    rn_kw_i16(w, err);
    rn_kw_bytes(w, assignment ? assignment : (const uint8_t *)"", assignment ? len : 0);
}

int rn_kh_sync_group(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    int32_t gen = rn_kr_i32(r, "generation_id");
    rn_kstr_t mid = rn_kr_str(r, "member_id");
    if (q->version >= 3) rn_kr_str(r, "group_instance_id");
    int32_t n = rn_kr_array(r, "assignments");
    if (r->err) return RN_KH_BAD;
    rn_kassign_t *v = NULL;
    int too_many = n > RN_KCOORD_MAX_MEMBERS;
    if (n > 0 && !too_many) {
        v = calloc((size_t)n, sizeof *v);
        if (!v) return rn_kreq_bad(q, "out of memory for %d assignments", n);
    }
    for (int32_t i = 0; i < n && !r->err; i++) {
        rn_kstr_t m = rn_kr_str(r, "assignment member_id");
        rn_kstr_t b = rn_kr_bytes(r, "assignment");
        if (v) {
            v[i].member_id = m;
            v[i].assignment = b;
        }
    }
    if (r->err) {
        free(v);
        return RN_KH_BAD;
    }
    char group[256];
    int rc;
    if (group_name(gid, group, sizeof group) != 0) {
        rn_kgroup_write_sync(q, RN_KERR_INVALID_GROUP_ID, NULL, 0);
        rc = RN_KH_DONE;
    } else if (!group_allowed(q, group, RN_ACL_CONSUME)) {
        rn_kgroup_write_sync(q, RN_KERR_GROUP_AUTHORIZATION_FAILED, NULL, 0);
        rc = RN_KH_DONE;
    } else if (too_many) {
        rn_kgroup_write_sync(q, RN_KERR_INVALID_REQUEST, NULL, 0);
        rc = RN_KH_DONE;
    } else if ((rc = rn_kcluster_coord_here(q->ctx, group)) != RN_KERR_NONE) {
        rn_kgroup_write_sync(q, (int16_t)rc, NULL, 0);
        rc = RN_KH_DONE;
    } else {
        rc = rn_kcoord_sync(q->ctx->coord, q, group, gen, mid, v, n < 0 ? 0 : n);
    }
    free(v);          /* the coordinator copied what it keeps */
    return rc;
}

/* ---- Heartbeat (12) --------------------------------------------------------------------- */

int rn_kh_heartbeat(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    int32_t gen = rn_kr_i32(r, "generation_id");
    rn_kstr_t mid = rn_kr_str(r, "member_id");
    if (q->version >= 3) rn_kr_str(r, "group_instance_id");
    if (r->err) return RN_KH_BAD;
    char group[256];
    int16_t err = group_name(gid, group, sizeof group) != 0
                      ? RN_KERR_INVALID_GROUP_ID
                  : !group_allowed(q, group, RN_ACL_CONSUME)
                      ? RN_KERR_GROUP_AUTHORIZATION_FAILED
                      : rn_kcluster_coord_here(q->ctx, group);
    if (err == RN_KERR_NONE) err = rn_kcoord_heartbeat(q->ctx->coord, group, gen, mid);
    if (q->version >= 1) rn_kw_i32(&q->w, 0);
    rn_kw_i16(&q->w, err);
    return RN_KH_DONE;
}

/* ---- LeaveGroup (13) ---------------------------------------------------------------------- */

int rn_kh_leave_group(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kw_t *w = &q->w;
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    char group[256];
    int valid = group_name(gid, group, sizeof group) == 0;
    int16_t gerr = !valid ? RN_KERR_INVALID_GROUP_ID
                 : !group_allowed(q, group, RN_ACL_CONSUME) ? RN_KERR_GROUP_AUTHORIZATION_FAILED
                 : rn_kcluster_coord_here(q->ctx, group);
    valid = gerr == RN_KERR_NONE;
    rn_kstr_t none = {NULL, -1};
    if (q->version < 3) {
        rn_kstr_t mid = rn_kr_str(r, "member_id");
        if (r->err) return RN_KH_BAD;
        int16_t err = valid ? rn_kcoord_leave(q->ctx->coord, group, mid, none) : gerr;
        if (q->version >= 1) rn_kw_i32(w, 0);
        rn_kw_i16(w, err);
        return RN_KH_DONE;
    }
    /* v3: a batch of members; parsed whole first (invariant 1). */
    int32_t n = rn_kr_array(r, "members");
    rn_kr_t again = *r;
    for (int32_t i = 0; i < n && !r->err; i++) {
        rn_kr_str(r, "member_id");
        rn_kr_str(r, "group_instance_id");
    }
    if (r->err) return RN_KH_BAD;
    rn_kw_i32(w, 0);
    rn_kw_i16(w, gerr);
    rn_kw_array(w, n < 0 ? 0 : n);
    for (int32_t i = 0; i < n; i++) {
        rn_kstr_t mid = rn_kr_str(&again, "member_id");
        rn_kstr_t iid = rn_kr_str(&again, "group_instance_id");
        int16_t err = valid ? rn_kcoord_leave(q->ctx->coord, group, mid, iid) : gerr;
        rn_kw_strn(w, mid.p, mid.len < 0 ? 0 : mid.len);
        rn_kw_strn(w, iid.p, iid.len);
        rn_kw_i16(w, err);
    }
    return RN_KH_DONE;
}

/* ---- OffsetCommit (8) ------------------------------------------------------------------------ */

typedef struct kcommit {
    char     group[256];
    rn_kr_t  topics;           /* the reader at the topics array (the frame outlives q) */
    int32_t  n;                /* partitions */
    int16_t *err;              /* per partition, in request order */
    int16_t  all;              /* an error for every partition, or NONE */
} kcommit_t;

static void commit_free(rn_kreq_t *q)
{
    kcommit_t *k = q->hstate;
    if (k) free(k->err);
    free(k);
    q->hstate = NULL;
}

/* Walk the topics array of an OffsetCommit; fn (may be NULL) sees each
 * partition with its index in request order. Returns the partition count,
 * or -1 when r fails. */
typedef void (*commit_fn)(void *arg, int32_t i, rn_kstr_t topic, int32_t part, int64_t off);
static int32_t commit_walk(rn_kreq_t *q, rn_kr_t *r, commit_fn fn, void *arg)
{
    int32_t nt = rn_kr_array(r, "topics"), k = 0;
    for (int32_t t = 0; t < nt && !r->err; t++) {
        rn_kstr_t name = rn_kr_str(r, "topic name");
        int32_t np = rn_kr_array(r, "partitions");
        for (int32_t p = 0; p < np && !r->err; p++) {
            int32_t part = rn_kr_i32(r, "partition_index");
            int64_t off = rn_kr_i64(r, "committed_offset");
            if (q->version >= 6) rn_kr_i32(r, "committed_leader_epoch");
            rn_kr_str(r, "committed_metadata");
            if (r->err) break;
            if (fn) fn(arg, k, name, part, off);
            k++;
        }
    }
    return r->err ? -1 : k;
}

typedef struct commit_run {
    rn_kreq_t        *q;
    kcommit_t        *k;
    rn_meta_offset_t  v[COMMIT_CHUNK];
    int32_t           idx[COMMIT_CHUNK];
    int               nv;
    /* partitions of replicated topics (api.h invariant 8): checked here,
     * committed together through the controller once meta is unlocked */
    Runnel__V1__QueueOffset  *ro;
    Runnel__V1__QueueOffset **rp;
    int32_t                  *ridx;
    size_t                    nr;
    /* their topic names, each once per run of partitions of one topic (so
     * at most the frame's size plus a NUL per topic: invariant 4) */
    char                     *names;
    size_t                    names_len;
} commit_run_t;

/* Write the chunk gathered in run (waiter thread, meta locked). */
static void commit_chunk(commit_run_t *run)
{
    if (run->nv == 0) return;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_group_commit_offsets(run->q->ctx->d, run->k->group, run->v, (size_t)run->nv, err) != 0) {
        rn_slog(RN_SLOG_WARN, "kafka: OffsetCommit of group '%s' from %s: %s", run->k->group,
                run->q->peer, err);
        for (int i = 0; i < run->nv; i++) run->k->err[run->idx[i]] = RN_KERR_KAFKA_STORAGE_ERROR;
    }
    run->nv = 0;
}

static void commit_one(void *arg, int32_t i, rn_kstr_t topic, int32_t part, int64_t off)
{
    commit_run_t *run = arg;
    kcommit_t *k = run->k;
    char name[256], err[RN_ERRMSG_SIZE] = "";
    if (!rn_ktopic_valid(topic) || rn_kstr_copy(topic, name, sizeof name) != 0 || part < 0) {
        k->err[i] = RN_KERR_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    /* api.h invariant 6; no log line here, under the metadata lock */
    if (!rn_acl_allowed(rn_hd_opts(run->q->ctx->hd)->acl, run->q->principal, RN_ACL_TOPIC,
                        name, RN_ACL_CONSUME, 0)) {
        k->err[i] = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
        return;
    }
    rn_datadir_queue_t dq;
    memset(&dq, 0, sizeof dq);
    int rc = rn_datadir_queue_open(run->q->ctx->d, name, (uint32_t)part, &dq, err);
    int64_t got;
    if (rc == 0) rc = rn_datadir_resolve(run->q->ctx->d, &dq, RN_POS_OFFSET, off, &got, err);
    if (rc != 0) {
        k->err[i] = rc == RN_ENOTFOUND ? RN_KERR_UNKNOWN_TOPIC_OR_PARTITION
                    : rc == RN_ERANGE  ? RN_KERR_OFFSET_OUT_OF_RANGE
                                       : RN_KERR_KAFKA_STORAGE_ERROR;
        rn_slog(RN_SLOG_DEBUG, "kafka: OffsetCommit of group '%s' from %s: %s", k->group,
                run->q->peer, err);
        rn_datadir_queue_close(&dq);
        return;
    }
    if (run->ro && rn_kcluster_replicated(run->q->ctx, name)) {
        size_t j = run->nr++;
        runnel__v1__queue_offset__init(&run->ro[j]);
        if (j > 0 && !strcmp(run->ro[j - 1].topic, name)) {
            run->ro[j].topic = run->ro[j - 1].topic;
        } else {
            run->ro[j].topic = run->names + run->names_len;
            memcpy(run->ro[j].topic, name, strlen(name) + 1);
            run->names_len += strlen(name) + 1;
        }
        run->ro[j].queue = (uint32_t)part;
        run->ro[j].offset = off;
        run->rp[j] = &run->ro[j];
        run->ridx[j] = i;
        rn_datadir_queue_close(&dq);
        return;
    }
    run->v[run->nv].topic_id = dq.topic.id;
    run->v[run->nv].queue = (uint32_t)part;
    run->v[run->nv].offset = off;
    run->idx[run->nv] = i;
    run->nv++;
    rn_datadir_queue_close(&dq);
    if (run->nv == COMMIT_CHUNK) commit_chunk(run);
}

/* The checked offsets of replicated topics, through the controller as the
 * gRPC CommitOffsets (api.h invariant 8; waiter thread, meta unlocked):
 * every one committed, or every one refused with one error. */
static void commit_replicated(commit_run_t *run)
{
    if (run->nr == 0) return;
    kcommit_t *k = run->k;
    Runnel__V1__CommitOffsetsRequest req;
    runnel__v1__commit_offsets_request__init(&req);
    req.group = k->group;
    req.n_offsets = run->nr;
    req.offsets = run->rp;
    uint64_t index = 0;
    rn_status_t st = {0};
    if (rn_hd_commit_offsets_req(run->q->ctx->hd, &req, &index, &st) == 0) return;
    /* A lost controller leader, an entry not yet applied here: retriable
     * (the client finds the coordinator again and commits again). */
    int16_t e = st.code == RN_ST_UNAVAILABLE ? RN_KERR_COORDINATOR_NOT_AVAILABLE : rn_kerr_of(&st);
    rn_slog(RN_SLOG_INFO, "kafka: OffsetCommit of group '%s' from %s through the controller: "
            "%s", k->group, run->q->peer, st.msg);
    for (size_t i = 0; i < run->nr; i++) k->err[run->ridx[i]] = e;
}

/* Waiter thread: check every offset against its queue and write them. */
static void commit_work(rn_kreq_t *q)
{
    kcommit_t *k = q->hstate;
    commit_run_t *run = calloc(1, sizeof *run);
    if (!run) {
        k->all = RN_KERR_UNKNOWN_SERVER_ERROR;
        return;
    }
    run->q = q;
    run->k = k;
    if (rn_hd_clustered(q->ctx->hd)) {
        size_t n = (size_t)k->n;
        run->ro = calloc(n, sizeof *run->ro);
        run->rp = calloc(n, sizeof *run->rp);
        run->ridx = calloc(n, sizeof *run->ridx);
        run->names = malloc((size_t)q->frame_len + n + 1);
        if (!run->ro || !run->rp || !run->ridx || !run->names)
            k->all = RN_KERR_UNKNOWN_SERVER_ERROR;
    }
    if (k->all == RN_KERR_NONE) {
        rn_kr_t r = k->topics;
        rn_datadir_meta_lock(q->ctx->d);    /* one critical section, as CommitOffsets */
        commit_walk(q, &r, commit_one, run);
        commit_chunk(run);
        rn_datadir_meta_unlock(q->ctx->d);
        commit_replicated(run);
    }
    free(run->ro);
    free(run->rp);
    free(run->names);
    free(run->ridx);
    free(run);
}

static void commit_answer(rn_kreq_t *q)
{
    kcommit_t *k = q->hstate;
    rn_kw_t *w = &q->w;
    rn_kr_t r = k->topics;
    if (q->version >= 3) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    int32_t nt = rn_kr_array(&r, "topics"), i = 0;
    rn_kw_array(w, nt);
    for (int32_t t = 0; t < nt; t++) {
        rn_kstr_t name = rn_kr_str(&r, "topic name");
        int32_t np = rn_kr_array(&r, "partitions");
        rn_kw_strn(w, name.p, name.len < 0 ? 0 : name.len);
        rn_kw_array(w, np);
        for (int32_t p = 0; p < np; p++) {
            rn_kw_i32(w, rn_kr_i32(&r, "partition_index"));
            rn_kr_i64(&r, "committed_offset");
            if (q->version >= 6) rn_kr_i32(&r, "committed_leader_epoch");
            rn_kr_str(&r, "committed_metadata");
            rn_kw_i16(w, k->all != RN_KERR_NONE ? k->all : k->err[i]);
            i++;
        }
    }
}

static void commit_then(rn_kreq_t *q)
{
    commit_answer(q);
    rn_kreq_done(q);
}

int rn_kh_offset_commit(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    int32_t gen = rn_kr_i32(r, "generation_id");
    rn_kstr_t mid = rn_kr_str(r, "member_id");
    if (q->version >= 7) rn_kr_str(r, "group_instance_id");
    if (q->version <= 4) rn_kr_i64(r, "retention_time_ms");
    if (r->err) return RN_KH_BAD;
    rn_kr_t topics = *r;
    int32_t n = commit_walk(q, r, NULL, NULL);
    if (n < 0) return RN_KH_BAD;
    kcommit_t *k = calloc(1, sizeof *k);
    if (!k || !(k->err = calloc((size_t)n + 1, sizeof *k->err))) {
        free(k);
        return rn_kreq_bad(q, "out of memory for %d partitions", n);
    }
    k->topics = topics;
    k->n = n;
    q->hstate = k;
    q->hfree = commit_free;
    if (group_name(gid, k->group, sizeof k->group) != 0) k->all = RN_KERR_INVALID_GROUP_ID;
    else if (!group_allowed(q, k->group, RN_ACL_CONSUME))
        k->all = RN_KERR_GROUP_AUTHORIZATION_FAILED;
    else if ((k->all = rn_kcluster_coord_here(q->ctx, k->group)) == RN_KERR_NONE)
        k->all = rn_kcoord_commit_check(q->ctx->coord, k->group, gen, mid);
    if (k->all != RN_KERR_NONE || n == 0) {
        commit_answer(q);
        return RN_KH_DONE;
    }
    return rn_kreq_offload(q, commit_work, commit_then, 0);
}

/* ---- OffsetFetch (9) ---------------------------------------------------------------------------- */

static const rn_meta_offset_t *find_offset(const rn_meta_offset_t *v, size_t n, rn_kstr_t topic,
                                           int32_t part)
{
    for (size_t i = 0; i < n; i++)
        if ((int64_t)v[i].queue == part && rn_kstr_eq(topic, v[i].topic)) return &v[i];
    return NULL;
}

static void fetch_partition(rn_kreq_t *q, int32_t part, int64_t off, int16_t err)
{
    rn_kw_t *w = &q->w;
    rn_kw_i32(w, part);
    rn_kw_i64(w, off);
    if (q->version >= 5) rn_kw_i32(w, -1);                 /* committed_leader_epoch */
    rn_kw_str(w, "");                                       /* metadata (invariant 2) */
    rn_kw_i16(w, err);
}

int rn_kh_offset_fetch(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kw_t *w = &q->w;
    rn_kstr_t gid = rn_kr_str(r, "group_id");
    int32_t nt = rn_kr_array(r, "topics");
    rn_kr_t again = *r;
    for (int32_t t = 0; t < nt && !r->err; t++) {
        rn_kr_str(r, "topic name");
        int32_t np = rn_kr_array(r, "partition_indexes");
        for (int32_t p = 0; p < np && !r->err; p++) rn_kr_i32(r, "partition_index");
    }
    if (r->err) return RN_KH_BAD;
    if (nt < 0 && q->version < 2) return rn_kreq_bad(q, "OffsetFetch v%d with null topics", q->version);
    char group[256], err[RN_ERRMSG_SIZE] = "";
    int16_t top = RN_KERR_NONE;
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;
    if (group_name(gid, group, sizeof group) != 0) {
        top = RN_KERR_INVALID_GROUP_ID;
    } else if (!group_allowed(q, group, RN_ACL_DESCRIBE)) {
        top = RN_KERR_GROUP_AUTHORIZATION_FAILED;
    } else {
        rn_meta_t *m = rn_datadir_meta_lock(q->ctx->d);
        int rc = rn_meta_offsets_get(m, group, -1, &v, &n, err);
        rn_datadir_meta_unlock(q->ctx->d);
        if (rc != 0) {
            rn_slog(RN_SLOG_WARN, "kafka: OffsetFetch of group '%s' from %s: %s", group, q->peer,
                    err);
            top = RN_KERR_UNKNOWN_SERVER_ERROR;
            n = 0;
        }
    }
    if (q->version >= 3) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    if (nt < 0) {
        /* Every partition the group has an offset for, by topic (those the
         * principal may describe: api.h invariant 6). */
        size_t kept = 0;
        for (size_t i = 0; i < n; i++)
            if (rn_acl_allowed(acl, q->principal, RN_ACL_TOPIC, v[i].topic, RN_ACL_DESCRIBE, 0))
                v[kept++] = v[i];
        n = kept;
        int32_t topics = 0;
        for (size_t i = 0; i < n; i++)
            if (i == 0 || strcmp(v[i].topic, v[i - 1].topic)) topics++;
        rn_kw_array(w, topics);
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && !strcmp(v[j].topic, v[i].topic)) j++;
            rn_kw_str(w, v[i].topic);
            rn_kw_array(w, (int32_t)(j - i));
            for (size_t k = i; k < j; k++)
                fetch_partition(q, (int32_t)v[k].queue, v[k].offset, RN_KERR_NONE);
            i = j;
        }
    } else {
        rn_kw_array(w, nt);
        for (int32_t t = 0; t < nt; t++) {
            rn_kstr_t name = rn_kr_str(&again, "topic name");
            int32_t np = rn_kr_array(&again, "partition_indexes");
            rn_kw_strn(w, name.p, name.len < 0 ? 0 : name.len);
            rn_kw_array(w, np < 0 ? 0 : np);
            int tok = top != RN_KERR_NONE || rn_kacl_topic(q, name, RN_ACL_DESCRIBE);
            for (int32_t p = 0; p < np; p++) {
                int32_t part = rn_kr_i32(&again, "partition_index");
                const rn_meta_offset_t *o = tok ? find_offset(v, n, name, part) : NULL;
                fetch_partition(q, part, o ? o->offset : -1,
                                tok ? top : RN_KERR_TOPIC_AUTHORIZATION_FAILED);
            }
        }
    }
    if (q->version >= 2) rn_kw_i16(w, top);
    free(v);
    return RN_KH_DONE;
}

/* ---- ListGroups (16), DescribeGroups (15) --------------------------------------------------------- */

int rn_kh_list_groups(rn_kreq_t *q)
{
    rn_kw_t *w = &q->w;
    rn_kcoord_t *c = q->ctx->coord;
    rn_meta_group_t *v = NULL;
    size_t n = 0;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_t *m = rn_datadir_meta_lock(q->ctx->d);
    int rc = rn_meta_group_list(m, &v, &n, err);
    rn_datadir_meta_unlock(q->ctx->d);
    if (rc != 0) {
        rn_slog(RN_SLOG_WARN, "kafka: ListGroups from %s: %s", q->peer, err);
        n = 0;
    }
    /* Groups with live members (their protocol type), then groups known by
     * their committed offsets alone (protocol type "", as Kafka's simple
     * consumer groups). */
    /* Only the groups the principal may describe (api.h invariant 6). */
    rn_acl_t *acl = rn_hd_opts(q->ctx->hd)->acl;
    int32_t live = 0, count = 0;
    rn_kgroup_info_t gi;
    while (rn_kcoord_group_at(c, live, &gi) == 0) {
        if (rn_acl_allowed(acl, q->principal, RN_ACL_GROUP, gi.name, RN_ACL_DESCRIBE, 0)) count++;
        live++;
    }
    for (size_t i = 0; i < n; i++)
        if (rn_kcoord_group_get(c, v[i].name, &gi) != 0 &&
            rn_acl_allowed(acl, q->principal, RN_ACL_GROUP, v[i].name, RN_ACL_DESCRIBE, 0))
            count++;
    if (q->version >= 1) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    rn_kw_i16(w, rc == 0 ? RN_KERR_NONE : RN_KERR_UNKNOWN_SERVER_ERROR);
    rn_kw_array(w, count);
    for (int32_t i = 0; i < live && rn_kcoord_group_at(c, i, &gi) == 0; i++) {
        if (!rn_acl_allowed(acl, q->principal, RN_ACL_GROUP, gi.name, RN_ACL_DESCRIBE, 0))
            continue;
        rn_kw_str(w, gi.name);
        rn_kw_str(w, gi.protocol_type);
    }
    for (size_t i = 0; i < n; i++) {
        if (rn_kcoord_group_get(c, v[i].name, &gi) == 0) continue;
        if (!rn_acl_allowed(acl, q->principal, RN_ACL_GROUP, v[i].name, RN_ACL_DESCRIBE, 0))
            continue;
        rn_kw_str(w, v[i].name);
        rn_kw_str(w, "");
    }
    free(v);
    return RN_KH_DONE;
}

int rn_kh_describe_groups(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    rn_kw_t *w = &q->w;
    int32_t n = rn_kr_array(r, "groups");
    rn_kr_t again = *r;
    for (int32_t i = 0; i < n && !r->err; i++) rn_kr_str(r, "group id");
    if (q->version >= 3) rn_kr_i8(r, "include_authorized_operations");
    if (r->err) return RN_KH_BAD;
    if (q->version >= 1) rn_kw_i32(w, 0);                  /* throttle_time_ms */
    rn_kw_array(w, n < 0 ? 0 : n);
    for (int32_t i = 0; i < n; i++) {
        rn_kstr_t gid = rn_kr_str(&again, "group id");
        char group[256];
        rn_kgroup_info_t gi;
        int valid = group_name(gid, group, sizeof group) == 0;
        int allowed = !valid || group_allowed(q, group, RN_ACL_DESCRIBE);   /* api.h inv. 6 */
        int live = valid && allowed && rn_kcoord_group_get(q->ctx->coord, group, &gi) == 0;
        const char *state = "Dead";
        if (valid && allowed && !live) {
            /* Known by its offsets only: Empty, as Kafka says of a group
             * with committed offsets and no members. */
            rn_meta_group_t mg;
            rn_meta_t *m = rn_datadir_meta_lock(q->ctx->d);
            if (rn_meta_group_get(m, group, &mg, NULL) == 0) state = "Empty";
            rn_datadir_meta_unlock(q->ctx->d);
        }
        rn_kw_i16(w, !valid ? RN_KERR_INVALID_GROUP_ID
                     : !allowed ? RN_KERR_GROUP_AUTHORIZATION_FAILED : RN_KERR_NONE);
        rn_kw_strn(w, gid.p, gid.len < 0 ? 0 : gid.len);
        rn_kw_str(w, live ? gi.state : state);
        rn_kw_str(w, live ? gi.protocol_type : "");
        rn_kw_str(w, live ? gi.protocol : "");
        rn_kw_array(w, live ? gi.members : 0);
        rn_kmember_info_t mi;
        for (int32_t k = 0; live && k < gi.members &&
                            rn_kcoord_member_at(q->ctx->coord, group, k, &mi) == 0; k++) {
            rn_kw_str(w, mi.id);
            if (q->version >= 4) rn_kw_str(w, mi.instance);
            rn_kw_str(w, mi.client_id);
            rn_kw_str(w, mi.host);
            rn_kw_bytes(w, mi.meta ? mi.meta : (const uint8_t *)"", mi.meta ? mi.meta_len : 0);
            rn_kw_bytes(w, mi.assign ? mi.assign : (const uint8_t *)"",
                        mi.assign ? mi.assign_len : 0);
        }
        if (q->version >= 3) rn_kw_i32(w, INT32_MIN);     /* authorized_operations: not computed */
    }
    return RN_KH_DONE;
}

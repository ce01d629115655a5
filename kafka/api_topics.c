/*
 * api_topics.c — CreateTopics (19), versions 0–4, and DeleteTopics (20),
 * versions 0–3 (none of them flexible).
 *
 * A Kafka topic is a runnel topic and a partition a logical queue
 * (kafka/README.md). CreateTopics makes a topic with num_partitions queues
 * (-1: the --kafka-auto-create-queues count, or 1 when auto-creation is
 * off); DeleteTopics deletes one as `runnel topic delete` does
 * (rn_hd_topic_delete: the records stay in the stores until retention, the
 * groups' offsets on it go, a topic recreated under the name starts at 0).
 *
 * Invariants:
 *  1. The request is parsed whole on the loop thread before anything
 *     happens: one that does not parse changes nothing (RN_KH_BAD). The
 *     metadata writes (SQLite, synchronous=FULL: an fsync each) then run on
 *     the front's waiter thread (rn_kreq_offload), never on the loop thread,
 *     which goes on serving other connections; the response is written
 *     there too, into the request's own buffer, which nothing else touches
 *     until then() completes it on the loop thread.
 *  2. Topics are independent, as in Kafka: each gets its own error code (and
 *     from v1 a message saying what was wrong); one refusal changes nothing
 *     of that topic and does not affect the others. A name given twice in
 *     one request is refused for every occurrence (INVALID_REQUEST).
 *  3. validate_only (v1+) runs every check, including "already exists", and
 *     creates nothing.
 *  4. Only what runnel honours is accepted: replication factor 1 or -1 (one
 *     broker; in a cluster 1..nodes or -1, the topic then made through the
 *     controller, api.h invariant 7), no manual replica assignment, and the topic configs in
 *     `configs_ok` with the values runnel's behaviour has; anything else is
 *     refused with INVALID_CONFIG naming the config and why, rather than
 *     accepted and ignored.
 *  5. timeout_ms: creation is synchronous, so a created topic is ready when
 *     answered. A topic not yet reached when timeout_ms (> 0) has passed
 *     since the request arrived is not created and gets REQUEST_TIMED_OUT;
 *     timeout_ms <= 0 sets no limit.
 *  6. At most RN_KTOPICS_MAX topics per request; more is a protocol error.
 */
#include "kafka/api.h"

#include "cluster/controller.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "server/log.h"

#define RN_KTOPICS_MAX 1000

/* What the loop thread found; the waiter thread re-reads the body from it. */
typedef struct ktopics {
    const uint8_t *body;         /* the request body, inside the frame */
    size_t         len;
    int32_t        n;            /* topics */
    int32_t        timeout_ms;
    int            validate_only;
    uint64_t       t0_ns;        /* when the request was handled */
    rn_kstr_t     *names;        /* n names, for the duplicate check */
    uint8_t       *dup;          /* n flags */
} ktopics_t;

static void ktopics_free(rn_kreq_t *q)
{
    ktopics_t *k = q->hstate;
    if (!k) return;
    free(k->names);
    free(k->dup);
    free(k);
    q->hstate = NULL;
}

static int name_cmp(const void *a, const void *b)
{
    const rn_kstr_t *x = *(const rn_kstr_t *const *)a, *y = *(const rn_kstr_t *const *)b;
    int32_t n = x->len < y->len ? x->len : y->len;
    int c = n > 0 ? memcmp(x->p, y->p, (size_t)n) : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Flag every name that occurs more than once (invariant 2). */
static int mark_dups(ktopics_t *k)
{
    if (k->n < 2) return 0;
    const rn_kstr_t **v = malloc((size_t)k->n * sizeof *v);
    if (!v) return -1;
    for (int32_t i = 0; i < k->n; i++) v[i] = &k->names[i];
    qsort(v, (size_t)k->n, sizeof *v, name_cmp);
    for (int32_t i = 1; i < k->n; i++)
        if (name_cmp(&v[i - 1], &v[i]) == 0) {
            k->dup[v[i - 1] - k->names] = 1;
            k->dup[v[i] - k->names] = 1;
        }
    free(v);
    return 0;
}

static ktopics_t *ktopics_new(rn_kreq_t *q, int32_t n)
{
    ktopics_t *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->n = n;
    k->names = calloc(n > 0 ? (size_t)n : 1, sizeof *k->names);
    k->dup = calloc(n > 0 ? (size_t)n : 1, 1);
    if (!k->names || !k->dup) {
        free(k->names);
        free(k->dup);
        free(k);
        return NULL;
    }
    q->hstate = k;
    q->hfree = ktopics_free;
    return k;
}

static void topics_then(rn_kreq_t *q)
{
    rn_kreq_done(q);
}

static int timed_out(const ktopics_t *k)
{
    return k->timeout_ms > 0 &&
           (rn_mono_ns() - k->t0_ns) / 1000000u > (uint64_t)k->timeout_ms;
}

/* ---- CreateTopics (19) ------------------------------------------------------------ */

/* The topic configs runnel honours, with the only values its behaviour has
 * (NULL: any value). A null value asks for the default and is accepted for
 * these names. */
static const struct {
    const char *name;
    const char *value;
    const char *why;
} configs_ok[] = {
    {"cleanup.policy", "delete", "runnel does not compact topics; records go by retention"},
    {"compression.type", "producer", "runnel stores batches as the producer compressed them"},
    {"message.timestamp.type", "CreateTime", "runnel keeps the producer's timestamps"},
    {"min.insync.replicas", "1", "runnel has one broker and one replica"},
    {"unclean.leader.election.enable", NULL, ""},
};

/* 0 when the config (name, value) is honoured; else a message in msg. */
static int config_check(rn_kstr_t name, rn_kstr_t value, char *msg, size_t size)
{
    int nl = name.len > 100 ? 100 : name.len;
    for (size_t i = 0; i < sizeof configs_ok / sizeof configs_ok[0]; i++) {
        if (!rn_kstr_eq(name, configs_ok[i].name)) continue;
        if (value.len < 0 || !configs_ok[i].value || rn_kstr_eq(value, configs_ok[i].value))
            return 0;
        snprintf(msg, size, "config %s=%.*s is not supported: %s (only %s=%s)",
                 configs_ok[i].name, value.len > 60 ? 60 : (int)value.len, value.p,
                 configs_ok[i].why, configs_ok[i].name, configs_ok[i].value);
        return -1;
    }
    if (rn_kstr_eq(name, "retention.ms") || rn_kstr_eq(name, "retention.bytes") ||
        rn_kstr_eq(name, "segment.bytes") || rn_kstr_eq(name, "segment.ms")) {
        snprintf(msg, size, "config %.*s is not supported: runnel sets retention and segments "
                 "per store, not per topic", nl, name.p);
        return -1;
    }
    snprintf(msg, size, "config '%.*s' is not supported by runnel; it honours cleanup.policy, "
             "compression.type, message.timestamp.type, min.insync.replicas and "
             "unclean.leader.election.enable", nl < 0 ? 0 : nl, name.p);
    return -1;
}

/* One topic entry of the request, read from r. */
typedef struct ctopic {
    rn_kstr_t name;
    int32_t   partitions;
    int16_t   replication;
    int32_t   nassign;
    int16_t   err;
    char      msg[RN_ERRMSG_SIZE + 300];
} ctopic_t;

/* Read one entry; with check, also decide its error (before creation). */
static void read_ctopic(rn_kr_t *r, ctopic_t *t, int check)
{
    t->name = rn_kr_str(r, "topic name");
    t->partitions = rn_kr_i32(r, "num_partitions");
    t->replication = rn_kr_i16(r, "replication_factor");
    t->nassign = rn_kr_array(r, "assignments");
    for (int32_t i = 0; i < t->nassign && !r->err; i++) {
        rn_kr_i32(r, "partition_index");
        int32_t nb = rn_kr_array(r, "broker_ids");
        for (int32_t j = 0; j < nb && !r->err; j++) rn_kr_i32(r, "broker id");
    }
    int32_t nc = rn_kr_array(r, "configs");
    t->err = RN_KERR_NONE;
    t->msg[0] = 0;
    for (int32_t i = 0; i < nc && !r->err; i++) {
        rn_kstr_t cn = rn_kr_str(r, "config name");
        rn_kstr_t cv = rn_kr_str(r, "config value");
        if (check && !r->err && t->err == RN_KERR_NONE &&
            config_check(cn, cv, t->msg, sizeof t->msg) != 0)
            t->err = RN_KERR_INVALID_CONFIG;
    }
}

/* The cluster's nodes (0 when this is no cluster or its controller is not
 * running yet). */
static int cluster_nodes(rn_kctx_t *ctx)
{
    rn_ctl_t *c = ctx->self ? __atomic_load_n(&ctx->ctl, __ATOMIC_ACQUIRE) : NULL;
    if (!c) return 0;
    const rn_ctl_view_t *v = rn_ctl_view_get(c);
    int n = (int)v->n;
    rn_ctl_view_put(v);
    return n;
}

/* A cluster node's CreateTopics of one topic (invariant 7): committed
 * through the controller as `runnel topic create --replicas R` is (the
 * broker's CreateTopic, which a node that is not the controller leader
 * passes on), made on this node before the answer. Waiter thread. */
static int16_t create_replicated(rn_kreq_t *q, ktopics_t *k, const char *name, uint32_t queues,
                                 int16_t replication, char *msg, size_t size)
{
    rn_kctx_t *ctx = q->ctx;
    rn_meta_topic_t got;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_t *m = rn_datadir_meta_lock(ctx->d);
    int rc = rn_meta_topic_get(m, name, &got, err);
    rn_datadir_meta_unlock(ctx->d);
    if (rc == 0 || rn_kcluster_unmade(ctx, name, 0) != RN_KERR_NONE) {
        snprintf(msg, size, "topic '%s' already exists", name);
        return RN_KERR_TOPIC_ALREADY_EXISTS;
    }
    if (k->validate_only) return RN_KERR_NONE;
    if (timed_out(k)) {
        snprintf(msg, size, "not created: timeout_ms (%d) passed first", (int)k->timeout_ms);
        return RN_KERR_REQUEST_TIMED_OUT;
    }
    Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    req.name = (char *)name;
    req.queues = queues;
    req.replicas = replication > 0 ? (uint32_t)replication : 0;
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    rc = rn_hd_create_topic(ctx->hd, &req.base, &a, &resp, &st);
    rn_arena_free(&a);
    if (rc == 0) {
        rn_slog(RN_SLOG_INFO, "kafka: %s created replicated topic '%s' with %u queue%s",
                q->peer, name, queues, queues == 1 ? "" : "s");
        return RN_KERR_NONE;
    }
    snprintf(msg, size, "%s", st.msg);
    switch (st.code) {
    case RN_ST_ALREADY_EXISTS: return RN_KERR_TOPIC_ALREADY_EXISTS;
    case RN_ST_INVALID_ARGUMENT: return RN_KERR_INVALID_REQUEST;
    case RN_ST_UNAVAILABLE: return RN_KERR_REQUEST_TIMED_OUT;      /* retriable */
    default: return RN_KERR_UNKNOWN_SERVER_ERROR;
    }
}

static void create_work(rn_kreq_t *q)
{
    ktopics_t *k = q->hstate;
    rn_kctx_t *ctx = q->ctx;
    rn_kw_t *w = &q->w;
    rn_kr_t r;
    rn_kr_init(&r, k->body, k->len, 0);
    rn_kr_array(&r, "topics");
    if (q->version >= 2) rn_kw_i32(w, 0);               /* throttle_time_ms */
    rn_kw_array(w, k->n);
    uint32_t deflt = ctx->auto_create ? ctx->auto_create : 1;
    /* In a cluster (api.h invariant 7) topics are made through the
     * controller, replicated: its limits. */
    int32_t max_queues = ctx->self ? RN_FSM_MAX_QUEUES : RN_META_MAX_QUEUES;
    int nodes = cluster_nodes(ctx);
    if (ctx->self && deflt > RN_FSM_MAX_QUEUES) deflt = RN_FSM_MAX_QUEUES;
    for (int32_t i = 0; i < k->n; i++) {
        ctopic_t t;
        char name[256], err[RN_ERRMSG_SIZE] = "";
        read_ctopic(&r, &t, 1);
        int16_t e = t.err;                               /* a config's, if any */
        uint32_t queues = t.partitions == -1 ? deflt : (uint32_t)t.partitions;
        if (!rn_ktopic_valid(t.name) || rn_kstr_copy(t.name, name, sizeof name) != 0) {
            e = RN_KERR_INVALID_TOPIC_EXCEPTION;
            snprintf(t.msg, sizeof t.msg, "invalid topic name: use 1-249 characters of "
                     "A-Z a-z 0-9 . _ -, not . or ..");
        } else if (k->dup[i]) {
            e = RN_KERR_INVALID_REQUEST;
            snprintf(t.msg, sizeof t.msg, "topic '%s' is named more than once in the request",
                     name);
        } else if (!rn_kacl_create(q, name)) {                 /* api.h invariant 6 */
            e = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
            snprintf(t.msg, sizeof t.msg, "principal '%s' may not create topic '%s'",
                     rn_acl_principal(q->principal), name);
        } else if (t.partitions == 0 || t.partitions < -1 || t.partitions > max_queues) {
            e = RN_KERR_INVALID_PARTITIONS;
            snprintf(t.msg, sizeof t.msg, "num_partitions must be 1..%d or -1 (the broker's "
                     "default, %u), not %d%s", max_queues, deflt, (int)t.partitions,
                     ctx->self ? " (a replicated topic's limit)" : "");
        } else if (ctx->self && (t.replication == 0 || t.replication < -1 ||
                                 t.replication > nodes)) {
            e = RN_KERR_INVALID_REPLICATION_FACTOR;
            snprintf(t.msg, sizeof t.msg, "replication_factor must be 1..%d (the cluster's "
                     "nodes) or -1 (min(3, live nodes)), not %d", nodes, (int)t.replication);
        } else if (!ctx->self && t.replication != 1 && t.replication != -1) {
            e = RN_KERR_INVALID_REPLICATION_FACTOR;
            snprintf(t.msg, sizeof t.msg, "replication_factor must be 1 or -1: runnel is one "
                     "broker with one replica, not %d", (int)t.replication);
        } else if (t.nassign > 0) {
            e = RN_KERR_INVALID_REPLICA_ASSIGNMENT;
            snprintf(t.msg, sizeof t.msg, "manual replica assignments are not supported: "
                     "give num_partitions (%s)", ctx->self ? "the controller places the "
                     "replicas" : "runnel's one broker leads every partition");
        } else if (e == RN_KERR_NONE && ctx->self) {
            e = create_replicated(q, k, name, queues, t.replication, t.msg, sizeof t.msg);
        } else if (e == RN_KERR_NONE) {
            rn_meta_topic_t got;
            rn_meta_t *m = rn_datadir_meta_lock(ctx->d);
            int rc = rn_meta_topic_get(m, name, &got, err);
            rn_datadir_meta_unlock(ctx->d);
            if (rc == 0) {
                e = RN_KERR_TOPIC_ALREADY_EXISTS;
                snprintf(t.msg, sizeof t.msg, "topic '%s' already exists", name);
            } else if (rc != RN_ENOTFOUND) {
                e = RN_KERR_UNKNOWN_SERVER_ERROR;
                snprintf(t.msg, sizeof t.msg, "%s", err);
            } else if (!k->validate_only && timed_out(k)) {
                e = RN_KERR_REQUEST_TIMED_OUT;
                snprintf(t.msg, sizeof t.msg, "not created: timeout_ms (%d) passed first",
                         (int)k->timeout_ms);
            } else if (!k->validate_only) {
                rc = rn_datadir_topic_create(ctx->d, name, queues, &got, err);
                if (rc == RN_EEXIST) {
                    e = RN_KERR_TOPIC_ALREADY_EXISTS;
                } else if (rc != 0) {
                    e = RN_KERR_UNKNOWN_SERVER_ERROR;
                    rn_slog(RN_SLOG_WARN, "kafka: CreateTopics from %s: %s", q->peer, err);
                } else {
                    rn_slog(RN_SLOG_INFO, "kafka: %s created topic '%s' with %u queue%s",
                            q->peer, name, queues, queues == 1 ? "" : "s");
                }
                if (rc != 0) snprintf(t.msg, sizeof t.msg, "%s", err);
            }
        }
        rn_kw_strn(w, t.name.p, t.name.len);
        rn_kw_i16(w, e);
        if (q->version >= 1) rn_kw_str(w, e == RN_KERR_NONE ? NULL : t.msg);
    }
}

int rn_kh_create_topics(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    const uint8_t *body = r->p;
    int32_t n = rn_kr_array(r, "topics");
    if (n > RN_KTOPICS_MAX)
        return rn_kreq_bad(q, "CreateTopics names %d topics; at most %d per request", (int)n,
                           RN_KTOPICS_MAX);
    if (n < 0) n = 0;                                   /* null: no topics */
    ktopics_t *k = ktopics_new(q, n);
    if (!k) return rn_kreq_bad(q, "out of memory");
    for (int32_t i = 0; i < n && !r->err; i++) {
        ctopic_t t;
        read_ctopic(r, &t, 0);
        k->names[i] = t.name;
    }
    k->timeout_ms = rn_kr_i32(r, "timeout_ms");
    if (q->version >= 1) k->validate_only = rn_kr_i8(r, "validate_only") != 0;
    if (r->err) return RN_KH_BAD;
    if (mark_dups(k) != 0) return rn_kreq_bad(q, "out of memory");
    k->body = body;
    k->len = (size_t)(r->end - body);
    k->t0_ns = rn_mono_ns();
    return rn_kreq_offload(q, create_work, topics_then, 0);
}

/* ---- DeleteTopics (20) ------------------------------------------------------------- */

static void delete_work(rn_kreq_t *q)
{
    ktopics_t *k = q->hstate;
    rn_kw_t *w = &q->w;
    if (q->version >= 1) rn_kw_i32(w, 0);               /* throttle_time_ms */
    rn_kw_array(w, k->n);
    for (int32_t i = 0; i < k->n; i++) {
        rn_kstr_t s = k->names[i];
        char name[256];
        int16_t e = RN_KERR_NONE;
        if (!rn_ktopic_valid(s) || rn_kstr_copy(s, name, sizeof name) != 0) {
            e = RN_KERR_INVALID_TOPIC_EXCEPTION;
        } else if (!rn_kacl(q, RN_ACL_TOPIC, name, RN_ACL_DELETE)) {   /* api.h invariant 6 */
            e = RN_KERR_TOPIC_AUTHORIZATION_FAILED;
        } else if (timed_out(k)) {
            e = RN_KERR_REQUEST_TIMED_OUT;
        } else {
            rn_status_t st = {0};
            if (rn_hd_topic_delete(q->ctx->hd, name, &st) != 0) {
                e = st.code == RN_ST_NOT_FOUND ? RN_KERR_UNKNOWN_TOPIC_OR_PARTITION
                                               : RN_KERR_UNKNOWN_SERVER_ERROR;
                if (e != RN_KERR_UNKNOWN_TOPIC_OR_PARTITION)
                    rn_slog(RN_SLOG_WARN, "kafka: DeleteTopics from %s: %s", q->peer, st.msg);
            } else {
                rn_slog(RN_SLOG_INFO, "kafka: %s deleted topic '%s'", q->peer, name);
            }
        }
        rn_kw_strn(w, s.p, s.len);
        rn_kw_i16(w, e);
    }
}

int rn_kh_delete_topics(rn_kreq_t *q)
{
    rn_kr_t *r = &q->in;
    int32_t n = rn_kr_array(r, "topic_names");
    if (n > RN_KTOPICS_MAX)
        return rn_kreq_bad(q, "DeleteTopics names %d topics; at most %d per request", (int)n,
                           RN_KTOPICS_MAX);
    if (n < 0) n = 0;
    ktopics_t *k = ktopics_new(q, n);
    if (!k) return rn_kreq_bad(q, "out of memory");
    for (int32_t i = 0; i < n && !r->err; i++) k->names[i] = rn_kr_str(r, "topic name");
    k->timeout_ms = rn_kr_i32(r, "timeout_ms");
    if (r->err) return RN_KH_BAD;
    k->t0_ns = rn_mono_ns();
    return rn_kreq_offload(q, delete_work, topics_then, 0);
}

/*
 * authz.c — the gRPC methods' ACL checks (see authz.h).
 *
 * Invariants:
 *  1. The table below is the only place that says what a method needs; a
 *     method missing from it is refused to everyone but super users (it is
 *     never open by omission).
 *  2. A check reads the ACL snapshot only (acl.h invariant 1): no SQLite,
 *     no lock beyond taking the snapshot's reference.
 *  3. The ACL RPCs are strict (acl.h rule 2 does not apply): with no entry
 *     yet, only super users may change or list them over the network; the
 *     first entry is added embedded (`runnel --data DIR acl add`) or by a
 *     super user.
 *  4. A list answer holds only what the caller may describe; a check that
 *     refuses changes nothing (it runs before the handler).
 */
#include "server/authz.h"

#include "common/error.h"
#include "logical-queues/datadir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the table (invariant 1) -------------------------------------------------- */

typedef const char *(*name_fn)(const ProtobufCMessage *req);
typedef int (*extra_fn)(rn_acl_t *acl, const char *p, const ProtobufCMessage *req,
                        rn_status_t *st);

enum {
    F_NONE = 0,
    F_STRICT = 1,        /* acl.h rule 2 does not apply (invariant 3) */
    F_ANY = 2,           /* op on any resource of the type (InitProducer) */
    F_OR_CLUSTER = 4,    /* or op on the cluster (CreateTopic) */
    F_EMPTY_CLUSTER = 8, /* an empty name means every one: describe on the cluster */
    F_OPEN = 16,         /* no check here: the answer is filtered, or the handler checks */
};

typedef struct rule {
    const char  *method;
    rn_acl_res_t res;
    rn_acl_op_t  op;
    name_fn      name;       /* NULL: the cluster */
    int          flags;
    extra_fn     extra;      /* further checks (every topic a request names) */
} rule_t;

#define REQ(T, f) ((const Runnel__V1__##T *)(const void *)req)->f
static const char *n_produce(const ProtobufCMessage *req) { return REQ(ProduceRequest, topic); }
static const char *n_fetch(const ProtobufCMessage *req) { return REQ(FetchRequest, topic); }
static const char *n_offsets(const ProtobufCMessage *req) { return REQ(ListOffsetsRequest, topic); }
static const char *n_create(const ProtobufCMessage *req) { return REQ(CreateTopicRequest, name); }
static const char *n_alter(const ProtobufCMessage *req) { return REQ(AlterTopicRequest, name); }
static const char *n_delete(const ProtobufCMessage *req) { return REQ(DeleteTopicRequest, name); }
static const char *n_describe(const ProtobufCMessage *req) { return REQ(DescribeTopicRequest, name); }
static const char *n_commit(const ProtobufCMessage *req) { return REQ(CommitOffsetsRequest, group); }
static const char *n_fetch_off(const ProtobufCMessage *req) { return REQ(FetchOffsetsRequest, group); }
static const char *n_reset(const ProtobufCMessage *req) { return REQ(ResetGroupRequest, group); }
static const char *n_ck_create(const ProtobufCMessage *req) { return REQ(CreateCheckpointRequest, group); }
static const char *n_ck_list(const ProtobufCMessage *req) { return REQ(ListCheckpointsRequest, group); }
static const char *n_ck_drop(const ProtobufCMessage *req) { return REQ(DropCheckpointRequest, group); }
static const char *n_pipeline(const ProtobufCMessage *req) { return REQ(PipelineRequest, name); }

static int deny(rn_acl_t *acl, const char *p, rn_acl_res_t res, const char *name, rn_acl_op_t op,
                int strict, rn_status_t *st)
{
    char msg[RN_ERRMSG_SIZE];
    if (rn_acl_check(acl, p, res, name, op, strict ? RN_ACL_STRICT : 0, msg, sizeof msg) == 0)
        return 0;
    return rn_status_set(st, RN_ST_PERMISSION_DENIED, "%s", msg);
}

/* CommitOffsets: consume on every topic it commits on (as Kafka's READ). */
static int x_commit(rn_acl_t *acl, const char *p, const ProtobufCMessage *req, rn_status_t *st)
{
    const Runnel__V1__CommitOffsetsRequest *r = (const void *)req;
    for (size_t i = 0; i < r->n_offsets; i++)
        if (deny(acl, p, RN_ACL_TOPIC, r->offsets[i]->topic, RN_ACL_CONSUME, 0, st) != 0)
            return -1;
    return 0;
}

/* FetchOffsets and ResetGroup naming a topic: describe on it. */
static int x_fetch_off(rn_acl_t *acl, const char *p, const ProtobufCMessage *req,
                       rn_status_t *st)
{
    const char *t = REQ(FetchOffsetsRequest, topic);
    return t && t[0] ? deny(acl, p, RN_ACL_TOPIC, t, RN_ACL_DESCRIBE, 0, st) : 0;
}

static int x_reset(rn_acl_t *acl, const char *p, const ProtobufCMessage *req, rn_status_t *st)
{
    const char *t = REQ(ResetGroupRequest, topic);
    return t && t[0] ? deny(acl, p, RN_ACL_TOPIC, t, RN_ACL_DESCRIBE, 0, st) : 0;
}
#undef REQ

static const rule_t rules[] = {
    {"InitProducer", RN_ACL_TOPIC, RN_ACL_PRODUCE, NULL, F_ANY, NULL},
    {"Produce", RN_ACL_TOPIC, RN_ACL_PRODUCE, n_produce, F_NONE, NULL},
    {"Fetch", RN_ACL_TOPIC, RN_ACL_CONSUME, n_fetch, F_NONE, NULL},
    {"ListOffsets", RN_ACL_TOPIC, RN_ACL_DESCRIBE, n_offsets, F_NONE, NULL},
    {"CreateTopic", RN_ACL_TOPIC, RN_ACL_CREATE, n_create, F_OR_CLUSTER, NULL},
    {"AlterTopic", RN_ACL_TOPIC, RN_ACL_ALTER, n_alter, F_NONE, NULL},
    {"DeleteTopic", RN_ACL_TOPIC, RN_ACL_DELETE, n_delete, F_NONE, NULL},
    {"ListTopics", RN_ACL_TOPIC, RN_ACL_DESCRIBE, NULL, F_OPEN, NULL},        /* filtered */
    {"DescribeTopic", RN_ACL_TOPIC, RN_ACL_DESCRIBE, n_describe, F_NONE, NULL},
    {"RemapQueue", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_NONE, NULL},
    {"ListStores", RN_ACL_CLUSTER, RN_ACL_DESCRIBE, NULL, F_NONE, NULL},
    {"CommitOffsets", RN_ACL_GROUP, RN_ACL_CONSUME, n_commit, F_NONE, x_commit},
    {"FetchOffsets", RN_ACL_GROUP, RN_ACL_DESCRIBE, n_fetch_off, F_NONE, x_fetch_off},
    {"ListGroups", RN_ACL_GROUP, RN_ACL_DESCRIBE, NULL, F_OPEN, NULL},        /* filtered */
    {"ResetGroup", RN_ACL_GROUP, RN_ACL_ALTER, n_reset, F_NONE, x_reset},
    {"CreateCheckpoint", RN_ACL_GROUP, RN_ACL_ALTER, n_ck_create, F_NONE, NULL},
    {"ListCheckpoints", RN_ACL_GROUP, RN_ACL_DESCRIBE, n_ck_list, F_EMPTY_CLUSTER, NULL},
    {"DropCheckpoint", RN_ACL_GROUP, RN_ACL_ALTER, n_ck_drop, F_NONE, NULL},
    /* and consume on the statement's source: server.c, once it is open */
    {"Query", RN_ACL_CLUSTER, RN_ACL_QUERY, NULL, F_NONE, NULL},
    /* create on the pipeline, consume on its source, produce on its sinks:
     * the handler (server/pipelines.c), which parses the statement */
    {"CreatePipeline", RN_ACL_PIPELINE, RN_ACL_CREATE, NULL, F_OPEN, NULL},
    {"ListPipelines", RN_ACL_PIPELINE, RN_ACL_DESCRIBE, NULL, F_OPEN, NULL},  /* filtered */
    {"GetPipeline", RN_ACL_PIPELINE, RN_ACL_DESCRIBE, n_pipeline, F_NONE, NULL},
    {"PausePipeline", RN_ACL_PIPELINE, RN_ACL_ALTER, n_pipeline, F_NONE, NULL},
    {"ResumePipeline", RN_ACL_PIPELINE, RN_ACL_ALTER, n_pipeline, F_NONE, NULL},
    {"DropPipeline", RN_ACL_PIPELINE, RN_ACL_DELETE, n_pipeline, F_NONE, NULL},
    {"AddAcl", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_STRICT, NULL},
    {"RemoveAcl", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_STRICT, NULL},
    {"ListAcls", RN_ACL_CLUSTER, RN_ACL_DESCRIBE, NULL, F_STRICT, NULL},
    {"ClusterStatus", RN_ACL_CLUSTER, RN_ACL_DESCRIBE, NULL, F_NONE, NULL},
    /* Nodes do not authenticate to each other yet (cluster/README.md): a node's
     * heartbeat comes as anonymous, and a rule it could pass would have to be
     * granted to every caller. It only feeds the controller's liveness view. */
    {"ClusterHeartbeat", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_OPEN, NULL},
    {"ClusterChange", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_NONE, NULL},
    {"ReassignQueue", RN_ACL_CLUSTER, RN_ACL_ALTER, NULL, F_NONE, NULL},
};
#define NRULES (sizeof rules / sizeof rules[0])

static const rule_t *rule_of(const char *method)
{
    for (size_t i = 0; i < NRULES; i++)
        if (!strcmp(rules[i].method, method)) return &rules[i];
    return NULL;
}

int rn_authz_known(const char *method) { return rule_of(method) != NULL; }

int rn_authz_call(rn_acl_t *acl, const char *principal, const char *method,
                  const ProtobufCMessage *req, rn_status_t *st)
{
    if (!acl || rn_acl_is_super(acl, principal)) return 0;
    const rule_t *r = rule_of(method);
    if (!r)
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "%s has no ACL rule: only super users "
                             "(runneld --super-user) may call it", method);
    if (r->flags & F_OPEN) return 0;
    const char *p = principal;
    if (r->flags & F_ANY) {
        if (rn_acl_allowed_any(acl, p, r->res, r->op)) return 0;
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "principal '%s' may not %s: it needs "
                             "%s on at least one %s (`runnel acl add --principal %s --%s NAME "
                             "--op %s`)", rn_acl_principal(p), method, rn_acl_op_name(r->op),
                             rn_acl_res_name(r->res), rn_acl_principal(p),
                             rn_acl_res_name(r->res), rn_acl_op_name(r->op));
    }
    const char *name = r->name ? r->name(req) : "";
    if (!name) name = "";
    int rc;
    if ((r->flags & F_EMPTY_CLUSTER) && !name[0])
        rc = deny(acl, p, RN_ACL_CLUSTER, "", r->op, 0, st);
    else if ((r->flags & F_OR_CLUSTER) &&
             rn_acl_allowed(acl, p, RN_ACL_CLUSTER, "", r->op, 0))
        rc = 0;
    else
        rc = deny(acl, p, r->res, name, r->op, r->flags & F_STRICT, st);
    if (rc == 0 && r->extra) rc = r->extra(acl, p, req, st);
    return rc;
}

void rn_authz_filter(rn_acl_t *acl, const char *principal, const char *method,
                     ProtobufCMessage *resp)
{
    if (!acl || !resp || rn_acl_is_super(acl, principal)) return;
    size_t k = 0;
    if (!strcmp(method, "ListTopics")) {
        Runnel__V1__ListTopicsResponse *r = (void *)resp;
        for (size_t i = 0; i < r->n_topics; i++)
            if (rn_acl_allowed(acl, principal, RN_ACL_TOPIC, r->topics[i]->name,
                               RN_ACL_DESCRIBE, 0)) r->topics[k++] = r->topics[i];
        r->n_topics = k;
    } else if (!strcmp(method, "ListGroups")) {
        Runnel__V1__ListGroupsResponse *r = (void *)resp;
        for (size_t i = 0; i < r->n_groups; i++)
            if (rn_acl_allowed(acl, principal, RN_ACL_GROUP, r->groups[i], RN_ACL_DESCRIBE, 0))
                r->groups[k++] = r->groups[i];
        r->n_groups = k;
    } else if (!strcmp(method, "ListPipelines")) {
        Runnel__V1__ListPipelinesResponse *r = (void *)resp;
        for (size_t i = 0; i < r->n_pipelines; i++)
            if (rn_acl_allowed(acl, principal, RN_ACL_PIPELINE, r->pipelines[i]->name,
                               RN_ACL_DESCRIBE, 0)) r->pipelines[k++] = r->pipelines[i];
        r->n_pipelines = k;
    }
}

const char *rn_authz_principal(const rn_arena_t *a)
{
    return a && a->principal ? a->principal : "";
}

/* ---- the ACL RPCs ---------------------------------------------------------------- */

int rn_authz_reload(rn_hd_t *h, char *errmsg)
{
    rn_acl_t *acl = rn_hd_opts(h)->acl;
    if (!acl) return 0;
    rn_meta_t *m = rn_datadir_meta_lock(rn_hd_datadir(h));
    int rc = rn_acl_load(acl, m, errmsg);
    rn_datadir_meta_unlock(rn_hd_datadir(h));
    return rc;
}

static int change(rn_hd_t *h, const ProtobufCMessage *msg, int add, rn_arena_t *a,
                  ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__AclEntry *req = (const void *)msg;
    char err[RN_ERRMSG_SIZE] = "";
    if (req->pattern[0] && strcmp(req->pattern, "literal") && strcmp(req->pattern, "prefixed"))
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "pattern '%.40s': give literal or "
                             "prefixed", req->pattern);
    rn_acl_entry_t e;
    int rc = rn_acl_entry_make(req->principal, req->resource, req->name,
                               !strcmp(req->pattern, "prefixed"), req->operation, &e, err);
    if (rc != 0) return rn_hd_fail(st, rc, err);
    rn_meta_acl_t m;
    rn_acl_entry_to_meta(&e, &m);
    rn_meta_t *meta = rn_datadir_meta_lock(rn_hd_datadir(h));
    rc = add ? rn_meta_acl_add(meta, &m, err) : rn_meta_acl_remove(meta, &m, err);
    rn_datadir_meta_unlock(rn_hd_datadir(h));
    if (rc != 0) return rn_hd_fail(st, rc, err);
    if ((rc = rn_authz_reload(h, err)) != 0) return rn_hd_fail(st, rc, err);
    Runnel__V1__AclResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return rn_hd_fail(st, -ENOMEM, "out of memory");
    runnel__v1__acl_response__init(r);
    *resp = &r->base;
    return 0;
}

int rn_authz_hd_add(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                    ProtobufCMessage **resp, rn_status_t *st)
{
    return change(h, m, 1, a, resp, st);
}

int rn_authz_hd_remove(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                       ProtobufCMessage **resp, rn_status_t *st)
{
    return change(h, m, 0, a, resp, st);
}

static char *arena_str(rn_arena_t *a, const char *s)
{
    size_t n = strlen(s);
    char *c = rn_arena_alloc(a, n + 1);
    if (c) memcpy(c, s, n + 1);
    return c;
}

int rn_authz_hd_list(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                     ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_acl_t *v = NULL;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(rn_hd_datadir(h));
    int rc = rn_meta_acl_list(meta, &v, &n, err);
    rn_datadir_meta_unlock(rn_hd_datadir(h));
    if (rc != 0) return rn_hd_fail(st, rc, err);
    Runnel__V1__ListAclsResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__AclEntry **e = rn_arena_alloc(a, (n ? n : 1) * sizeof *e);
    if (!r || !e) { free(v); return rn_hd_fail(st, -ENOMEM, "out of memory"); }
    runnel__v1__list_acls_response__init(r);
    for (size_t i = 0; i < n; i++) {
        e[i] = rn_arena_alloc(a, sizeof **e);
        if (!e[i]) { free(v); return rn_hd_fail(st, -ENOMEM, "out of memory"); }
        runnel__v1__acl_entry__init(e[i]);
        e[i]->principal = arena_str(a, v[i].principal);
        e[i]->resource = arena_str(a, v[i].resource);
        e[i]->pattern = arena_str(a, v[i].pattern);
        e[i]->name = arena_str(a, v[i].name);
        e[i]->operation = arena_str(a, v[i].operation);
        e[i]->created_ms = v[i].created_ms;
        if (!e[i]->principal || !e[i]->resource || !e[i]->pattern || !e[i]->name ||
            !e[i]->operation) { free(v); return rn_hd_fail(st, -ENOMEM, "out of memory"); }
    }
    free(v);
    r->acls = e;
    r->n_acls = n;
    *resp = &r->base;
    return 0;
}

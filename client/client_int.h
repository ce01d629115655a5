/*
 * client_int.h — what client.c, producer.c and consumer.c share: the client
 * handle and the unary-call helper. Not installed; users include runnel.h.
 */
#ifndef RN_CLIENT_INT_H
#define RN_CLIENT_INT_H

#include "client/rpc.h"
#include "client/runnel.h"
/* The embedded core, behind the public header. */
#include "batch/batch.h"
#include "etl/etl.h"
#include "log/log.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "logical-queues/meta.h"

#include <pthread.h>

#define RN_CLIENT_MAX_CONNS 16
#define RN_CLIENT_REROUTE_MS 100

struct rn_client_route {
    char     topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t queue;
    size_t   conn;              /* index in conns */
};

struct rn_client {
    int           remote;
    rn_datadir_t *d;            /* embedded */
    rn_rpc_t     *rpc;          /* remote */
    uint32_t      timeout_ms;   /* remote admin calls */
    int           reached;      /* remote: a call was answered (client.c invariant 4) */
    char          where[1024];
    /* remote: cluster routing (client.c invariant 5) */
    char         *bootstrap;    /* the comma list of nodes to ask */
    char         *tls_ca, *tls_cert, *tls_key, *token;
    pthread_mutex_t rmu;        /* conns, routes, routed_ns; never held across a call */
    struct rn_client_conn { char addr[256]; rn_rpc_t *rpc; } conns[RN_CLIENT_MAX_CONNS];
    size_t        nconns;
    struct rn_client_route *routes;
    size_t        nroutes;
    int           clustered;    /* -1 unknown, 0 single node, 1 a cluster */
    uint64_t      routed_ns;    /* when the routes were last asked for */
};

/* The connection for topic/queue's calls: its leader's in a cluster when
 * known, else the handle's own. Lives until rn_client_close. The first call
 * asks the cluster for its routes (once). */
rn_rpc_t *rn_client_rpc_for(rn_client_t *c, const char *topic, uint32_t queue);
/* Ask the nodes (bootstrap list, then every node known) for the queues'
 * leaders again: after NOT_LEADER or a transport failure. At most once per
 * RN_CLIENT_REROUTE_MS (a call within it returns at once). */
void rn_client_reroute(rn_client_t *c);
/* 1 when topic is a cluster's replicated topic (a route of it is known). */
int  rn_client_replicated(rn_client_t *c, const char *topic);
/* A status a cluster answers while a queue's leadership moves or a
 * controller settles: NOT_LEADER, no leader, too few in-sync replicas
 * (nothing stored), a controller without a leader yet. 1 when retrying the
 * same call later may succeed; *moved 1 when the leader may have changed. */
int  rn_client_cluster_transient(int rc, const char *errmsg, int *moved);

/* A unary call on c (method: RN_RPC_METHOD("Name")); on success *resp is
 * the answer, freed with rn_client_free_msg. */
int  rn_client_call(rn_client_t *c, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp,
                    char *errmsg);
void rn_client_free_msg(void *msg);     /* NULL is a no-op */

/* "offset 9 is outside topic 't' queue 0's range [0, 5]" as the core says it. */
int  rn_client_range_error(char *errmsg, const char *topic, uint32_t queue, int64_t offset,
                           int64_t log_start, int64_t high_watermark);

/* Remote ListOffsets: spec 0 earliest, 1 latest, 2 timestamp ts. */
int  rn_client_list_offsets(rn_client_t *c, const char *topic, uint32_t queue, int spec,
                            int64_t ts, int64_t *offset, int64_t *log_start, int64_t *hw,
                            char *errmsg);

#endif

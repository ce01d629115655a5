/*
 * handlers.h — runneld's gRPC handlers for the cluster RPCs (proto/runnel.proto:
 * ClusterStatus, ClusterHeartbeat), answered from the node's controller
 * (cluster/controller.h) through the handler table of server/server.c.
 *
 * The controller is the process's (a runneld runs at most one): set once
 * before the server accepts calls, cleared only after every call finished.
 * Without one (a single-node broker) ClusterStatus answers OK with
 * clustered = false and ClusterHeartbeat FAILED_PRECONDITION.
 */
#ifndef RN_CLUSTER_HANDLERS_H
#define RN_CLUSTER_HANDLERS_H

#include "client/rpc.h"
#include "cluster/controller.h"
#include "cluster/replica.h"
#include "server/handlers.h"

void rn_cluster_hd_set(rn_ctl_t *c);
/* The replica module whose leader state ClusterStatus shows (lags, high
 * watermarks); set and cleared like the controller. */
void rn_cluster_hd_set_repl(rn_repl_t *r);

int rn_cluster_hd_status(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st);
int rn_cluster_hd_heartbeat(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                            ProtobufCMessage **resp, rn_status_t *st);
/* The client address of node leader (the controller leader) as the view
 * holds it, into addr (RN_CLUSTER_ADDR_MAX); -1 with UNAVAILABLE when it
 * has none yet. */
int rn_cluster_leader_addr(rn_ctl_t *c, uint64_t leader, char *addr, rn_status_t *st);
/* One call on rpc: 0 with *resp (the caller frees it), or -1 with st set to
 * the callee's status (UNAVAILABLE when the call failed in transport). */
int rn_cluster_call(rn_rpc_t *rpc, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *rdesc, int timeout_ms,
                    ProtobufCMessage **resp, rn_status_t *st);
/* Pass req on to the controller leader (node leader, at the client address
 * the view holds), once: 0 with *resp (the caller frees it), or -1 with st
 * set (the leader's own status, or UNAVAILABLE when it has no address or
 * cannot be reached). */
int rn_cluster_forward(rn_ctl_t *c, uint64_t leader, const char *method,
                       const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rdesc,
                       int timeout_ms, ProtobufCMessage **resp, rn_status_t *st);

#define RN_CLUSTER_CHANGE_MS 20000   /* the longest a membership change is waited for */

/* ReassignQueue: move a replicated queue's replicas (rn_ctl_reassign) on
 * the controller leader; another node passes it on once (forwarded). */
int rn_cluster_hd_reassign(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                           ProtobufCMessage **resp, rn_status_t *st);
/* ClusterChange: add or remove a node (rn_ctl_member_change) on the
 * controller leader; another node passes it on once (forwarded). */
int rn_cluster_hd_change(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st);

#endif

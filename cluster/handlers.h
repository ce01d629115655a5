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

#endif

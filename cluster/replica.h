/*
 * replica.h — the data path of a cluster node: replicated topics made on
 * every node, followers copying each queue from its leader, the leader's
 * high watermark over its in-sync replicas, acks all, NOT_LEADER answers.
 * It reads the controller's view (cluster/controller.h) and drives the
 * broker's handlers (server/handlers.h) through the hooks it installs
 * (rn_hd_repl_t).
 *
 * Threads: a manager thread (every RN_REPL_TICK_MS: makes the controller's
 * topics in the local store, starts and stops fetchers, asks the
 * controller for ISR changes of the queues this node leads, reports log
 * ends), one fetcher thread per queue this node follows (gRPC Fetch calls
 * to the leader, appends at the same offsets), and the broker's threads
 * running the hooks. Shared state is under one mutex, never held across
 * I/O, an RPC or a controller call.
 *
 * Lifecycle: rn_repl_create (hooks installed; until rn_repl_start every
 * replicated call is UNAVAILABLE) → rn_repl_start (the controller exists)
 * → rn_repl_shutdown (acks waiting for replicas fail at once) →
 * rn_repl_destroy (every thread joined; before the handlers close).
 */
#ifndef RN_CLUSTER_REPLICA_H
#define RN_CLUSTER_REPLICA_H

#include <stdint.h>

#include "cluster/controller.h"
#include "server/handlers.h"

#define RN_REPL_TICK_MS          20
#define RN_REPL_MIN_INSYNC       2       /* runneld --min-insync-replicas */
#define RN_REPL_LAG_MS           1500    /* runneld --replica-lag-ms */
#define RN_REPL_ACK_TIMEOUT_MS   10000
#define RN_REPL_FETCH_WAIT_MS    500
#define RN_REPL_FETCH_BYTES      (4u << 20)

typedef struct rn_repl rn_repl_t;

typedef struct rn_repl_opts {
    rn_hd_t  *hd;                  /* borrowed; outlives the module */
    uint64_t  self;                /* this node's id */
    /* A produce needs min(min_insync, replicas) in-sync replicas, else it
     * is refused (FAILED_PRECONDITION, nothing stored). 0: the default. */
    uint32_t  min_insync;
    /* A follower of the ISR that has not caught up with the leader's log
     * end for this long leaves the ISR; one that caught up joins again. */
    uint32_t  lag_ms;
    uint32_t  ack_timeout_ms;      /* acks all waits at most this long */
} rn_repl_opts_t;

int  rn_repl_create(const rn_repl_opts_t *o, rn_repl_t **out, char *errmsg);
int  rn_repl_start(rn_repl_t *r, rn_ctl_t *ctl, char *errmsg);
void rn_repl_shutdown(rn_repl_t *r);      /* NULL: no-op */
void rn_repl_destroy(rn_repl_t *r);       /* NULL: no-op */

/* For ClusterStatus: the leader's view of (topic, queue) when this node
 * leads it at pq's epoch: its high watermark and per replica of pq the lag
 * behind its log end in records (-1 unknown); 0. -1 when it does not lead. */
int  rn_repl_queue_state(rn_repl_t *r, const char *topic, uint32_t queue, const rn_fsm_pq_t *pq,
                         int64_t *hwm, int64_t *lag);

#endif

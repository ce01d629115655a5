/*
 * front.h — runneld's Kafka protocol listener: TCP connections on one libuv
 * loop thread, Kafka's size-prefixed frames, requests handled in order
 * (kafka/api.h) over the same handlers, store, topics and groups as the gRPC
 * front.
 *
 * Lifecycle: rn_kfront_start (bound, the loop thread running) →
 * rn_kfront_stop (stop accepting, close every connection, answer parked and
 * waiting requests, join the threads, free). Stop before rn_hd_close.
 *
 * Bounds: a frame larger than max_frame closes its connection (logged with
 * the peer), and so does a frame not whole within frame_timeout_ms of its
 * first byte; a connection stops reading while it has RN_KFRONT_MAX_QUEUED
 * requests not yet answered or holds more than RN_KFRONT_MAX_CONN_HELD
 * bytes (requests and responses), and handles no further request while its
 * unwritten responses exceed that; the front as a whole stops reading new
 * frames while more than RN_KFRONT_MAX_INFLIGHT bytes are held. A response
 * is at most RN_KW_MAX_RESPONSE bytes (kafka/wire.h); the per-request
 * bounds of the handlers are in kafka/api.h.
 *
 * Security (front.c invariants 8 and 9): with opts.tls_cert the listener
 * speaks TLS only (kafka/tls.h); with opts.auth requiring it, a connection
 * sends only ApiVersions and SASL (kafka/sasl.h), in frames of at most
 * RN_KFRONT_PREAUTH_MAX_FRAME, until it has a principal.
 */
#ifndef RN_KAFKA_FRONT_H
#define RN_KAFKA_FRONT_H

#include <stdint.h>

#include "batch/batch.h"
#include "server/handlers.h"

#define RN_KFRONT_DEFAULT_MAX_FRAME (RN_BATCH_MAX_BYTES + (1u << 20))
#define RN_KFRONT_MAX_QUEUED   64
#define RN_KFRONT_PREAUTH_MAX_FRAME (512u << 10)   /* a frame before authentication */
#define RN_KFRONT_MAX_CONN_HELD (64u << 20)
#define RN_KFRONT_DEFAULT_FRAME_TIMEOUT_MS 30000
#define RN_KFRONT_MAX_INFLIGHT (512u << 20)
#define RN_KFRONT_TICK_MS      100     /* group coordinator timeouts */
#define RN_KFRONT_PARK_MS      2       /* parked requests are retried this often */

typedef struct rn_kfront rn_kfront_t;

typedef struct rn_kfront_opts {
    const char *listen;          /* HOST:PORT; port 0 picks a free one */
    const char *advertise;       /* HOST:PORT put in Metadata; NULL: the listen address */
    uint32_t    auto_create;     /* queues of an auto-created topic; 0 = off */
    uint32_t    max_frame;       /* 0: RN_KFRONT_DEFAULT_MAX_FRAME */
    int64_t     frame_timeout_ms;   /* 0: RN_KFRONT_DEFAULT_FRAME_TIMEOUT_MS */
    struct rn_auth *auth;        /* credentials (server/auth.h): SASL, and whether it is
                                    required; NULL: no authentication */
    const char *tls_cert, *tls_key, *tls_ca;   /* PEM text; cert NULL: plaintext only;
                                    tls_ca: client certificates required (kafka/tls.h) */
    uint64_t    node_id;         /* a cluster node's id (1..INT32_MAX), 0: one broker
                                    (node 0); see kafka/api.h invariant 7 */
    const char *cluster_seed;    /* what the cluster id is derived from; NULL: the
                                    data directory's path */
} rn_kfront_opts_t;

/* Listen and serve; *port gets the bound port. errmsg names what failed. */
int  rn_kfront_start(rn_hd_t *hd, const rn_kfront_opts_t *o, rn_kfront_t **out, int *port,
                     char *errmsg);
/* Stop and free (see above). NULL is a no-op. */
void rn_kfront_stop(rn_kfront_t *f);
/* A cluster node's controller, once it runs (any thread; before
 * rn_kfront_stop, and the controller stops after the front). Until then
 * Metadata names this node alone. */
struct rn_ctl;
void rn_kfront_set_ctl(rn_kfront_t *f, struct rn_ctl *ctl);
/* The advertised HOST:PORT (borrowed while f runs). */
const char *rn_kfront_advertised(const rn_kfront_t *f);

typedef struct rn_kfront_stats {
    uint64_t connections, requests, closed_bad;
} rn_kfront_stats_t;
void rn_kfront_stats(rn_kfront_t *f, rn_kfront_stats_t *out);

#endif

/*
 * metrics.h — runneld's Prometheus metrics: counters the request paths bump
 * (atomics, no lock, no allocation on the hot path) and the /metrics
 * endpoint (libmicrohttpd) that renders them, with what it reads from the
 * data directory at scrape time (watermarks, group lag, pipelines, stores,
 * recovery). The metric names are listed in server/README.md.
 *
 * Hooks may be called from any thread, whether or not an endpoint runs.
 */
#ifndef RN_METRICS_H
#define RN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "server/handlers.h"

/* Gauges moved by the fronts: +1 when a thing starts, -1 when it ends. */
typedef enum rn_mgauge {
    RN_MG_GRPC_CALLS,       /* gRPC calls accepted and not yet freed */
    RN_MG_GRPC_PARKED,      /* gRPC fetches parked (long poll) */
    RN_MG_KAFKA_CONNS,      /* Kafka connections open */
    RN_MG_KAFKA_REQS,       /* Kafka requests read and not yet answered */
    RN_MG_KAFKA_PARKED,     /* Kafka fetches parked (long poll) */
    RN_MG_COUNT
} rn_mgauge_t;

void rn_metrics_gauge(rn_mgauge_t g, int64_t delta);

/* The counters of one (topic, queue): created on first use and never freed
 * before the process exits, so the pointer may be kept (handlers.c keeps it
 * in its queue entry). NULL when out of memory; every hook accepts NULL. */
typedef struct rn_mqueue rn_mqueue_t;
rn_mqueue_t *rn_metrics_queue(const char *topic, uint32_t queue);

/* One batch of `records` records and `bytes` bytes stored by a produce. */
void rn_metrics_produced(rn_mqueue_t *m, uint64_t records, uint64_t bytes);
/* A fetch read nbatches whole batches, `len` bytes at `data` (a sequence of
 * RecordBatch v2; their record counts are summed from the headers). */
void rn_metrics_fetched(rn_mqueue_t *m, const uint8_t *data, size_t len, uint32_t nbatches);
/* A produce's batches became durable, t0_ns (rn_mono_ns) after it began. */
void rn_metrics_acked(uint64_t t0_ns);

/* ---- the endpoint ----------------------------------------------------------- */

typedef struct rn_metrics rn_metrics_t;

typedef struct rn_metrics_opts {
    const char *listen;          /* HOST:PORT, checked by rn_addr_split; port 0: a free one */
    rn_hd_t    *hd;              /* read at scrape time; must outlive the endpoint */
    /* The gRPC front's open connections, asked at scrape time (-1: unknown,
     * then no sample); NULL: not exported. */
    int64_t   (*grpc_connections)(void *arg);
    void       *arg;
    /* HTTPS with this PEM certificate chain and key (NULL: plain HTTP). */
    const char *tls_cert, *tls_key;
    /* When it requires authentication (server/auth.h rn_auth_required), a
     * scrape needs "Authorization: Bearer TOKEN" (401 otherwise). NULL: open. */
    struct rn_auth *auth;
} rn_metrics_opts_t;

/* Serve GET /metrics from a thread of libmicrohttpd's, one scrape at a
 * time; other paths are 404, other methods 405, a scrape without a valid
 * token when one is required 401. *port gets the bound port. */
int  rn_metrics_start(const rn_metrics_opts_t *o, rn_metrics_t **out, int *port,
                      char *errmsg);
/* Stop serving (waits for a scrape in progress) and free. NULL is a no-op. */
void rn_metrics_stop(rn_metrics_t *m);

/* The text of one scrape (the Prometheus text format 0.0.4) into out,
 * which the caller frees (rn_buf_free); o NULL: the counters alone.
 * 0, or -ENOMEM. */
int  rn_metrics_render(const rn_metrics_opts_t *o, rn_buf_t *out);

#endif

/*
 * server.h — runneld's gRPC front: the asynchronous completion-queue server
 * for service runnel.v1.Runnel over the handlers (server/handlers.h).
 *
 * Lifecycle: rn_server_start (listening, threads running) →
 * rn_server_shutdown (stop accepting; in-flight calls finish; parked
 * fetches answer at once; running queries are cancelled) → the `stopped`
 * callback fires once every call is done → rn_server_destroy (joins threads,
 * waits for the query worker threads to leave, frees). The caller closes the
 * handlers afterwards (flush, fsync, clean-shutdown marker).
 *
 * Timers are the caller's (runneld's libuv loop): rn_server_next_deadline
 * says when the earliest parked fetch expires, rn_server_expire answers
 * those that did, and the `wakeup` callback (any thread) asks the caller to
 * ask again because an earlier deadline was parked.
 */
#ifndef RN_SERVER_H
#define RN_SERVER_H

#include <stdint.h>

#include "server/auth.h"
#include "server/handlers.h"

typedef struct rn_server rn_server_t;

typedef struct rn_server_opts {
    const char *listen;                  /* HOST:PORT; port 0 picks a free one */
    int         threads;                 /* completion-queue threads */
    void      (*wakeup)(void *arg);      /* an earlier fetch deadline was parked */
    void      (*stopped)(void *arg);     /* every call is done after shutdown */
    void       *arg;
    /* Caps, 0 = none (runneld sets its defaults): produce requests in the
     * broker at once (from their arrival to their answer), and running
     * queries (each has a thread). Over a cap a call is answered
     * RESOURCE_EXHAUSTED at once, naming it; a refused produce stored nothing. */
    uint32_t    max_produces;
    uint32_t    max_queries;
    /* TLS (PEM text, client/tls.h; copied at start): tls_cert and tls_key
     * NULL = plaintext; tls_client_ca = require and verify client
     * certificates signed by it (mutual TLS). */
    const char *tls_cert, *tls_key, *tls_client_ca;
    /* Authentication (borrowed, outlives the server): NULL = none. */
    rn_auth_t  *auth;
} rn_server_opts_t;

/* Listen and serve. *port gets the bound port. */
int  rn_server_start(rn_hd_t *h, const rn_server_opts_t *o, rn_server_t **out, int *port,
                     char *errmsg);
/* Begin a graceful shutdown (idempotent, any thread). */
void rn_server_shutdown(rn_server_t *s);
/* After rn_server_shutdown: cancel every call still running. */
void rn_server_cancel_all(rn_server_t *s);
/* Milliseconds (rn_mono_ns clock) of the earliest parked fetch's deadline,
 * or -1 when none is parked. */
int64_t rn_server_next_deadline(rn_server_t *s);
/* Answer every parked fetch whose deadline is at or before now_ms. */
void rn_server_expire(rn_server_t *s, int64_t now_ms);
/* Join the threads and free. Call after `stopped` fired. NULL is a no-op. */
void rn_server_destroy(rn_server_t *s);

typedef struct rn_server_stats {
    uint64_t calls, errors;
} rn_server_stats_t;
void rn_server_stats(rn_server_t *s, rn_server_stats_t *out);

/* Open client connections (transports) of the gRPC servers of this
 * process, counted through gRPC's channelz; -1 when channelz cannot tell.
 * Allocates; for a scrape, not a hot path. */
int64_t rn_server_connections(void *unused);

/* Monotonic milliseconds, the clock of deadlines above. */
int64_t rn_server_now_ms(void);

#endif

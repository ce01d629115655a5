/*
 * rpc.h — calls to a runnel broker over gRPC (C core), with protobuf-c
 * messages generated from proto/runnel.proto. The only place on the client
 * side that knows gRPC; the producer, consumer and command line build on it.
 *
 * A connection (rn_rpc_t) is one gRPC channel, safe to use from many threads
 * at once; each call is independent. Methods are named by their full gRPC
 * path, e.g. "/runnel.v1.Runnel/Produce" (RN_RPC_METHOD("Produce")).
 *
 * Errors: a call returns 0 when the broker answered OK, else a negative code:
 * the gRPC status is mapped (NOT_FOUND → RN_ENOTFOUND, OUT_OF_RANGE →
 * RN_ERANGE, ALREADY_EXISTS → RN_EEXIST, INVALID_ARGUMENT → RN_EINVAL,
 * RESOURCE_EXHAUSTED → RN_ETOOBIG, FAILED_PRECONDITION → RN_ESTICKY,
 * UNAVAILABLE / DEADLINE_EXCEEDED → -ECONNREFUSED / -ETIMEDOUT, others →
 * -EPROTO) and errmsg holds the broker's message (or the transport's, e.g.
 * "cannot reach 127.0.0.1:7070: connection refused"). *status, when not NULL,
 * gets the raw grpc_status_code.
 */
#ifndef RN_RPC_H
#define RN_RPC_H

#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/runnel.pb-c.h"

#define RN_RPC_METHOD(name) ("/runnel.v1.Runnel/" name)

/* Trailing metadata of an error status that still carries part of an
 * answer: the packed response message for what was done before the failure
 * (Produce: the leading batches stored before an I/O error, proto/runnel.proto).
 * An asynchronous call hands it to done() as resp with the error's rc. */
#define RN_RPC_PARTIAL_TRAILER "runnel-partial-bin"

typedef struct rn_rpc rn_rpc_t;

/* gRPC's own reconnect backoff on a lost connection (rpc.c invariant 7). */
#define RN_RPC_RECONNECT_MIN_MS 50
#define RN_RPC_RECONNECT_MAX_MS 2000

/* A transport failure (-ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EPIPE): the
 * broker may not have seen the call, or may have done it without the answer
 * arriving; an idempotent call can be made again. */
int rn_rpc_retriable(int rc);

/* The wait before retry number `attempt` (1, 2, ...): base_ms doubled per
 * attempt up to max_ms, times a jitter in [0.8, 1.2) drawn from *rng (any
 * seed; updated). */
/* A retriable failure of a call that never left this process: gRPC had no
 * connection and could not make one ("failed to connect to all addresses"),
 * so the broker cannot have seen it. */
int rn_rpc_unreached(int rc, const char *errmsg);

uint32_t rn_rpc_backoff_ms(uint32_t base_ms, uint32_t max_ms, uint32_t attempt, uint64_t *rng);

/* Connect lazily to target "HOST:PORT" (insecure channel on loopback and
 * trusted networks). Fails only for a malformed target. */
int  rn_rpc_open(const char *target, rn_rpc_t **out, char *errmsg);

/* TLS for rn_rpc_open_tls: PEM text (client/tls.h reads and checks it),
 * copied by the call. ca: the CA certificates the broker's certificate must
 * chain to (NULL: gRPC's default roots); cert and key: this client's
 * certificate chain and private key for mutual TLS (both or neither). The
 * broker's certificate must name the HOST of the target (subjectAltName). */
typedef struct rn_rpc_tls {
    const char *ca, *cert, *key;
} rn_rpc_tls_t;

/* rn_rpc_open over TLS (tls NULL: plaintext, as rn_rpc_open). A failed
 * handshake shows on the first call as -ECONNREFUSED with "cannot reach
 * TARGET: TLS handshake failed: <gRPC's detail>". */
int  rn_rpc_open_tls(const char *target, const rn_rpc_tls_t *tls, rn_rpc_t **out,
                     char *errmsg);
void rn_rpc_close(rn_rpc_t *c);                  /* NULL is a no-op */
/* Send "authorization: Bearer TOKEN" with every later call on c (call before
 * the first call; the token is copied). RN_EINVAL when the token is empty,
 * longer than 160 bytes or not printable ASCII without spaces. */
int  rn_rpc_set_token(rn_rpc_t *c, const char *token, char *errmsg);

/* Unary call. req is packed with protobuf-c; on success *resp is the unpacked
 * answer (free with protobuf_c_message_free_unpacked(*resp, NULL)).
 * timeout_ms 0 = no deadline. */
int rn_rpc_call(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                uint32_t timeout_ms, int *status, char *errmsg);

/* Asynchronous unary call: returns at once; done() runs later on the
 * connection's completion thread with the same rc/resp/status/errmsg a
 * synchronous call would give (resp is the callee's to free; errmsg valid
 * during the callback only), except that with an error rc, resp may hold
 * the partial answer of an RN_RPC_PARTIAL_TRAILER (else NULL). done must not
 * block for long. */
typedef void (*rn_rpc_done_fn)(void *arg, int rc, ProtobufCMessage *resp, int status,
                               const char *errmsg);
int rn_rpc_call_async(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, uint32_t timeout_ms,
                      rn_rpc_done_fn done, void *arg, char *errmsg);

/* Server-streaming call (Query). next returns 1 with *msg (free it as above),
 * 0 at the end of a stream that closed OK, or a negative code with errmsg
 * when it closed with an error status. cancel may be called from another
 * thread; a cancelled stream's next returns -ECANCELED. */
typedef struct rn_rpc_stream rn_rpc_stream_t;
int  rn_rpc_stream_open(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                        rn_rpc_stream_t **out, char *errmsg);
int  rn_rpc_stream_next(rn_rpc_stream_t *s, const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **msg, int *status, char *errmsg);
void rn_rpc_stream_cancel(rn_rpc_stream_t *s);
void rn_rpc_stream_close(rn_rpc_stream_t *s);   /* NULL is a no-op */

#endif

/*
 * rpc.c — the client transport: rn_rpc_* (client/rpc.h) on the gRPC C core
 * API, protobuf-c messages in, protobuf-c messages out.
 *
 * States of one connection: open (channel created, lazily connected by gRPC
 * on the first call) → closed (rn_rpc_close). The async completion thread is
 * started by the first rn_rpc_call_async and stopped by rn_rpc_close.
 *
 * Invariants:
 *  1. One gRPC channel per rn_rpc_t, created with max send/receive message
 *     sizes of RPC_MAX_MESSAGE, so 16 MiB batches (and fetches returning
 *     one) pass. Method paths are registered once per connection
 *     (grpc_channel_register_call) under c->mu and live until close.
 *  2. A synchronous call owns a private pluck completion queue for its whole
 *     life: one batch carries every op (send metadata, message, close; receive
 *     metadata, message, status), so exactly one event is plucked, then the
 *     queue is shut down and drained before it is destroyed.
 *  3. Asynchronous calls share the connection's next-queue; each pending call
 *     is on c->pending (under c->mu) from start until its event is handled,
 *     so rn_rpc_close can cancel them all. done() runs exactly once per call
 *     whose start succeeded (rn_rpc_call_async returned 0), on the completion
 *     thread, with the call already off the list.
 *  4. A stream has its own pluck queue and at most three outstanding tags
 *     (the send batch, the status batch, one receive); close cancels an
 *     unfinished call and plucks every outstanding tag before freeing.
 *  5. gRPC is initialised once per process (pthread_once) and never shut
 *     down: grpc_shutdown joins gRPC's executor threads, and after a large
 *     write one of them sits in the TCP backup poller's 10 s epoll_wait, so
 *     a process closing its last connection after a 16 MiB produce would
 *     hang 10 s. Process exit frees everything instead.
 *  6. Status → code mapping is the one documented in rpc.h, plus CANCELLED
 *     → -ECANCELED; errmsg always names the problem (the broker's message, or
 *     "cannot reach TARGET: ..." for transport failures).
 *  7. A lost connection is re-established by gRPC itself, after a backoff
 *     that starts at RN_RPC_RECONNECT_MIN_MS and grows 1.6x (jittered) to
 *     RN_RPC_RECONNECT_MAX_MS (gRPC's defaults, 1 s to 120 s, would leave a
 *     producer idle up to two minutes after runneld came back). Calls made
 *     while it is down fail at once with -ECONNREFUSED; the producer and the
 *     consumer retry them (rn_rpc_backoff_ms).
 *  8. TLS (rn_rpc_open_tls): gRPC's SSL channel credentials over the PEM
 *     text given; the broker's certificate must chain to the CA and name the
 *     target's host. A failed handshake is reported on the call as
 *     "cannot reach TARGET: TLS handshake failed: DETAIL" (unavailable_rc).
 *     gRPC's own log lines (which would repeat that detail on stderr, a
 *     second line beside the caller's) are dropped unless GRPC_VERBOSITY is
 *     set.
 *  9. With a token (rn_rpc_set_token), every call's initial metadata carries
 *     "authorization: Bearer TOKEN"; the slices live in rn_rpc_t until close.
 */
#include "client/rpc.h"

#include "common/addr.h"
#include "common/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

/* Largest message either way: a Produce of several 16 MiB batches, or a
 * Fetch answer with one batch larger than max_bytes plus max_bytes more. */
#define RPC_MAX_MESSAGE   (256 << 20)
#define RPC_MAX_METHODS   64
#define RPC_TARGET_MAX    256
/* A connection attempt may take this long before it counts as failed
 * (gRPC's minimum connect timeout; its default is 20 s). */
#define RPC_CONNECT_TIMEOUT_MS 2000

typedef struct rpc_method {
    char *name;
    void *handle;
} rpc_method_t;

typedef struct acall acall_t;

struct rn_rpc {
    char                   target[RPC_TARGET_MAX];
    int                    tls;         /* invariant 8 */
    grpc_channel          *ch;
    pthread_mutex_t        mu;          /* methods, pending, async thread start */
    rpc_method_t           methods[RPC_MAX_METHODS];
    size_t                 nmethods;
    grpc_completion_queue *acq;         /* async calls; NULL until the first */
    pthread_t              athread;
    acall_t               *pending;     /* invariant 3 */
    grpc_metadata          auth;        /* invariant 9 */
    int                    has_auth;
};

/* What every unary call receives. */
typedef struct rpc_recv {
    grpc_metadata_array md, trailing;
    grpc_byte_buffer   *msg;
    grpc_status_code    status;
    grpc_slice          details;
    const char         *error_string;
} rpc_recv_t;

struct acall {
    acall_t                         *next, *prev;
    grpc_call                       *call;
    grpc_byte_buffer                *send;
    rpc_recv_t                       r;
    const ProtobufCMessageDescriptor *resp_desc;
    rn_rpc_done_fn                   done;
    void                            *arg;
};

static void recv_init(rpc_recv_t *r)
{
    memset(r, 0, sizeof *r);
    grpc_metadata_array_init(&r->md);
    grpc_metadata_array_init(&r->trailing);
    r->details = grpc_empty_slice();
    r->status = GRPC_STATUS_UNKNOWN;
}

static void recv_free(rpc_recv_t *r)
{
    grpc_metadata_array_destroy(&r->md);
    grpc_metadata_array_destroy(&r->trailing);
    if (r->msg) grpc_byte_buffer_destroy(r->msg);
    r->msg = NULL;
    grpc_slice_unref(r->details);
    r->details = grpc_empty_slice();
    if (r->error_string) gpr_free((void *)r->error_string);
    r->error_string = NULL;
}

/* ---- messages ------------------------------------------------------------ */

static int pack(const ProtobufCMessage *m, grpc_byte_buffer **out, char *errmsg)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > RPC_MAX_MESSAGE)
        return rn_errf(errmsg, RN_ETOOBIG, "request %s is %zu bytes; the limit is %d",
                       m->descriptor->short_name, n, RPC_MAX_MESSAGE);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    *out = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return 0;
}

static int unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **out, char *errmsg)
{
    grpc_byte_buffer_reader rd;
    *out = NULL;
    if (!bb) return rn_errf(errmsg, -EPROTO, "the broker answered OK without a %s",
                            desc->short_name);
    if (!grpc_byte_buffer_reader_init(&rd, bb))
        return rn_errf(errmsg, -EPROTO, "cannot read the broker's %s", desc->short_name);
    grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    size_t n = GRPC_SLICE_LENGTH(s);
    *out = protobuf_c_message_unpack(desc, NULL, n, GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (!*out) return rn_errf(errmsg, -EPROTO, "malformed %s from the broker (%zu bytes)",
                              desc->short_name, n);
    return 0;
}

/* UNAVAILABLE: the transport failed (invariant 8). A failed TLS handshake
 * (a certificate not trusted or not naming the host dialled, TLS against a
 * plaintext port) will fail the same way again: -EPROTO, not retried. A
 * connection closed right after it
 * opened is what a TLS port does to a plaintext client and what a broker
 * requiring client certificates does to a client without one: still
 * -ECONNREFUSED (a broker going down closes connections too), with a hint. */
static int unavailable_rc(const rn_rpc_t *c, const char *det, char *errmsg)
{
    if (strstr(det, "andshake failed") || strstr(det, "is not in peer certificate"))
        return rn_errf(errmsg, -EPROTO, "cannot reach %s: TLS handshake failed: %s", c->target,
                       det);
    if (strstr(det, "Socket closed") && c->tls)
        return rn_errf(errmsg, -ECONNREFUSED, "cannot reach %s: TLS handshake failed? the "
                       "broker closed the connection at once (one requiring client "
                       "certificates does that without one: give --tls-cert and --tls-key): %s",
                       c->target, det);
    if (strstr(det, "Socket closed"))
        return rn_errf(errmsg, -ECONNREFUSED, "cannot reach %s: %s (a broker serving TLS "
                       "closes plaintext connections: give --tls-ca)", c->target, det);
    return rn_errf(errmsg, -ECONNREFUSED, "cannot reach %s: %s", c->target, det);
}

/* Map a finished call's status (invariant 5). */
static int status_rc(const rn_rpc_t *c, const rpc_recv_t *r, char *errmsg)
{
    if (r->status == GRPC_STATUS_OK) return 0;
    char det[RN_ERRMSG_SIZE];
    size_t n = GRPC_SLICE_LENGTH(r->details);
    if (n >= sizeof det) n = sizeof det - 1;
    memcpy(det, GRPC_SLICE_START_PTR(r->details), n);
    det[n] = '\0';
    if (!det[0]) snprintf(det, sizeof det, "gRPC status %d", (int)r->status);
    switch (r->status) {
    case GRPC_STATUS_NOT_FOUND:           return rn_errf(errmsg, RN_ENOTFOUND, "%s", det);
    case GRPC_STATUS_OUT_OF_RANGE:        return rn_errf(errmsg, RN_ERANGE, "%s", det);
    case GRPC_STATUS_ALREADY_EXISTS:      return rn_errf(errmsg, RN_EEXIST, "%s", det);
    case GRPC_STATUS_INVALID_ARGUMENT:    return rn_errf(errmsg, RN_EINVAL, "%s", det);
    case GRPC_STATUS_RESOURCE_EXHAUSTED:  return rn_errf(errmsg, RN_ETOOBIG, "%s", det);
    case GRPC_STATUS_FAILED_PRECONDITION: return rn_errf(errmsg, RN_ESTICKY, "%s", det);
    case GRPC_STATUS_DATA_LOSS:           return rn_errf(errmsg, RN_EDAMAGED, "%s", det);
    case GRPC_STATUS_UNAVAILABLE: return unavailable_rc(c, det, errmsg);
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return rn_errf(errmsg, -ETIMEDOUT, "%s: %s", c->target, det);
    case GRPC_STATUS_CANCELLED:           return rn_errf(errmsg, -ECANCELED, "%s", det);
    case GRPC_STATUS_UNAUTHENTICATED:     return rn_errf(errmsg, -EACCES, "%s", det);
    case GRPC_STATUS_PERMISSION_DENIED:   return rn_errf(errmsg, -EPERM, "%s", det);
    default:
        return rn_errf(errmsg, -EPROTO, "%s (gRPC status %d)", det, (int)r->status);
    }
}

/* ---- connection ------------------------------------------------------------- */

static pthread_once_t grpc_once = PTHREAD_ONCE_INIT;
static void quiet_log(gpr_log_func_args *args) { (void)args; }

/* Invariants 5 and 8. */
static void grpc_init_once(void)
{
    const char *v = getenv("GRPC_VERBOSITY");
    if (!v || !*v) gpr_set_log_function(quiet_log);
    grpc_init();
}

int rn_rpc_open(const char *target, rn_rpc_t **out, char *errmsg)
{
    return rn_rpc_open_tls(target, NULL, out, errmsg);
}

int rn_rpc_open_tls(const char *target, const rn_rpc_tls_t *tls, rn_rpc_t **out,
                    char *errmsg)
{
    *out = NULL;
    char host[RPC_TARGET_MAX];
    int port;
    if (rn_addr_split(target, host, sizeof host, &port, 0, errmsg) != 0) return RN_EINVAL;
    if (strlen(target) >= RPC_TARGET_MAX)
        return rn_errf(errmsg, RN_EINVAL, "bad server address '%.100s': longer than %d bytes",
                       target, RPC_TARGET_MAX - 1);
    rn_rpc_t *c = calloc(1, sizeof *c);
    if (!c) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(c->target, sizeof c->target, "%s", target);
    pthread_mutex_init(&c->mu, NULL);
    pthread_once(&grpc_once, grpc_init_once);      /* invariant 5 */
    /* Invariant 7: the channel's reconnect backoff. */
    static const struct { const char *key; int value; } iargs[] = {
        {GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, RPC_MAX_MESSAGE},
        {GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, RPC_MAX_MESSAGE},
        {GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, RN_RPC_RECONNECT_MIN_MS},
        {GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, RN_RPC_RECONNECT_MAX_MS},
        {GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, RPC_CONNECT_TIMEOUT_MS},
    };
    enum { NARGS = sizeof iargs / sizeof iargs[0] };
    grpc_arg args[NARGS];
    memset(args, 0, sizeof args);
    for (size_t i = 0; i < NARGS; i++) {
        args[i].type = GRPC_ARG_INTEGER;
        args[i].key = (char *)iargs[i].key;
        args[i].value.integer = iargs[i].value;
    }
    grpc_channel_args ca = {NARGS, args};
    grpc_channel_credentials *cred;
    if (tls) {              /* invariant 8 */
        grpc_ssl_pem_key_cert_pair pair = {tls->key, tls->cert};
        cred = grpc_ssl_credentials_create_ex(tls->ca, tls->cert && tls->key ? &pair : NULL,
                                              NULL, NULL);
        c->tls = 1;
    } else {
        cred = grpc_insecure_credentials_create();
    }
    if (!cred) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rn_errf(errmsg, -EPROTO, "cannot create %s credentials for %s",
                       tls ? "TLS" : "plaintext", target);
    }
    c->ch = grpc_channel_create(target, cred, &ca);
    grpc_channel_credentials_release(cred);
    if (!c->ch) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rn_errf(errmsg, -EPROTO, "cannot create a channel to %s", target);
    }
    *out = c;
    return 0;
}

int rn_rpc_set_token(rn_rpc_t *c, const char *token, char *errmsg)
{
    size_t n = strlen(token);
    if (n == 0 || n > 160)
        return rn_errf(errmsg, RN_EINVAL, "--token: %s", n ? "longer than 160 bytes" : "empty");
    for (size_t i = 0; i < n; i++)
        if (token[i] <= ' ' || token[i] > '~')
            return rn_errf(errmsg, RN_EINVAL, "--token: not printable ASCII (byte %zu)", i + 1);
    char v[180];
    snprintf(v, sizeof v, "Bearer %s", token);
    if (c->has_auth) {
        grpc_slice_unref(c->auth.key);
        grpc_slice_unref(c->auth.value);
    }
    c->auth.key = grpc_slice_from_static_string("authorization");
    c->auth.value = grpc_slice_from_copied_string(v);
    c->has_auth = 1;
    return 0;
}

/* The registered handle of method (invariant 1). NULL when the table is full
 * or out of memory: the caller then creates an unregistered call. */
static void *method_handle(rn_rpc_t *c, const char *method)
{
    void *h = NULL;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nmethods; i++)
        if (!strcmp(c->methods[i].name, method)) { h = c->methods[i].handle; goto out; }
    if (c->nmethods < RPC_MAX_METHODS) {
        char *name = strdup(method);
        if (name) {
            h = grpc_channel_register_call(c->ch, name, NULL, NULL);
            c->methods[c->nmethods].name = name;
            c->methods[c->nmethods].handle = h;
            c->nmethods++;
        }
    }
out:
    pthread_mutex_unlock(&c->mu);
    return h;
}

static gpr_timespec deadline_of(uint32_t timeout_ms)
{
    if (!timeout_ms) return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis((int64_t)timeout_ms, GPR_TIMESPAN));
}

static grpc_call *new_call(rn_rpc_t *c, const char *method, grpc_completion_queue *cq,
                           uint32_t timeout_ms)
{
    void *h = method_handle(c, method);
    gpr_timespec dl = deadline_of(timeout_ms);
    if (h)
        return grpc_channel_create_registered_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, h,
                                                   dl, NULL);
    return grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                    grpc_slice_from_static_string(method), NULL, dl, NULL);
}

/* The six ops of a unary call, filled into ops[6]. */
static void unary_ops(const rn_rpc_t *c, grpc_op *ops, grpc_byte_buffer *send, rpc_recv_t *r)
{
    memset(ops, 0, 6 * sizeof *ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->has_auth) {                  /* invariant 9 */
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)&c->auth;
    }
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &r->msg;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &r->trailing;
    ops[5].data.recv_status_on_client.status = &r->status;
    ops[5].data.recv_status_on_client.status_details = &r->details;
    ops[5].data.recv_status_on_client.error_string = &r->error_string;
}

/* Shut a pluck queue down, drain it (after shutdown, pluck returns SHUTDOWN
 * once every event has been taken), destroy it. */
static void pluck_cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    for (;;) {
        grpc_event ev = grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                    NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    }
    grpc_completion_queue_destroy(cq);
}

int rn_rpc_call(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                uint32_t timeout_ms, int *status, char *errmsg)
{
    int rc;
    grpc_byte_buffer *send = NULL;
    rpc_recv_t r;
    grpc_op ops[6];
    *resp = NULL;
    if (status) *status = GRPC_STATUS_UNKNOWN;
    rc = pack(req, &send, errmsg);
    if (rc != 0) return rc;
    recv_init(&r);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = new_call(c, method, cq, timeout_ms);
    if (!call) { rc = rn_errf(errmsg, -EPROTO, "cannot create a call to %s", method); goto out; }
    unary_ops(c, ops, send, &r);
    grpc_call_error e = grpc_call_start_batch(call, ops, 6, &r, NULL);
    if (e != GRPC_CALL_OK) {
        rc = rn_errf(errmsg, -EPROTO, "%s: %s", method, grpc_call_error_to_string(e));
        goto out_call;
    }
    grpc_event ev = grpc_completion_queue_pluck(cq, &r, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type != GRPC_OP_COMPLETE) {
        rc = rn_errf(errmsg, -EPROTO, "%s: the call ended without completing", method);
        goto out_call;
    }
    if (status) *status = r.status;
    rc = status_rc(c, &r, errmsg);
    if (rc == 0) rc = unpack(r.msg, resp_desc, resp, errmsg);
out_call:
    grpc_call_unref(call);
out:
    pluck_cq_destroy(cq);
    recv_free(&r);
    grpc_byte_buffer_destroy(send);
    return rc;
}

/* ---- asynchronous calls --------------------------------------------------- */

static void pending_remove(rn_rpc_t *c, acall_t *a)
{
    pthread_mutex_lock(&c->mu);
    if (a->prev) a->prev->next = a->next;
    else c->pending = a->next;
    if (a->next) a->next->prev = a->prev;
    pthread_mutex_unlock(&c->mu);
}

/* The partial answer an error status carried (RN_RPC_PARTIAL_TRAILER), or
 * NULL. */
static ProtobufCMessage *partial_answer(const rpc_recv_t *r,
                                        const ProtobufCMessageDescriptor *desc)
{
    for (size_t i = 0; i < r->trailing.count; i++) {
        const grpc_metadata *m = &r->trailing.metadata[i];
        if (grpc_slice_str_cmp(m->key, RN_RPC_PARTIAL_TRAILER) != 0) continue;
        return protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(m->value),
                                         GRPC_SLICE_START_PTR(m->value));
    }
    return NULL;
}

static void *async_main(void *arg)
{
    rn_rpc_t *c = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(c->acq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        acall_t *a = ev.tag;
        pending_remove(c, a);
        char err[RN_ERRMSG_SIZE] = "";
        ProtobufCMessage *resp = NULL;
        int rc = status_rc(c, &a->r, err);
        if (rc == 0) rc = unpack(a->r.msg, a->resp_desc, &resp, err);
        else resp = partial_answer(&a->r, a->resp_desc);
        if (!ev.success && rc == 0) {
            protobuf_c_message_free_unpacked(resp, NULL);
            resp = NULL;
            rc = rn_errf(err, -EPROTO, "the call failed in transport");
        }
        a->done(a->arg, rc, resp, (int)a->r.status, err);
        grpc_call_unref(a->call);
        grpc_byte_buffer_destroy(a->send);
        recv_free(&a->r);
        free(a);
    }
    return NULL;
}

/* Start the completion thread once (invariant 3). */
static int async_start(rn_rpc_t *c, char *errmsg)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (!c->acq) {
        c->acq = grpc_completion_queue_create_for_next(NULL);
        int e = pthread_create(&c->athread, NULL, async_main, c);
        if (e != 0) {
            grpc_completion_queue_destroy(c->acq);
            c->acq = NULL;
            rc = rn_errf(errmsg, -e, "cannot start the completion thread: %s", strerror(e));
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int rn_rpc_call_async(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, uint32_t timeout_ms,
                      rn_rpc_done_fn done, void *arg, char *errmsg)
{
    int rc = async_start(c, errmsg);
    if (rc != 0) return rc;
    acall_t *a = calloc(1, sizeof *a);
    if (!a) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rc = pack(req, &a->send, errmsg);
    if (rc != 0) { free(a); return rc; }
    recv_init(&a->r);
    a->resp_desc = resp_desc;
    a->done = done;
    a->arg = arg;
    a->call = new_call(c, method, c->acq, timeout_ms);
    if (!a->call) {
        rc = rn_errf(errmsg, -EPROTO, "cannot create a call to %s", method);
        goto fail;
    }
    grpc_op ops[6];
    unary_ops(c, ops, a->send, &a->r);
    /* On the list before the start: the event may arrive at once. */
    pthread_mutex_lock(&c->mu);
    a->next = c->pending;
    if (c->pending) c->pending->prev = a;
    c->pending = a;
    pthread_mutex_unlock(&c->mu);
    grpc_call_error e = grpc_call_start_batch(a->call, ops, 6, a, NULL);
    if (e != GRPC_CALL_OK) {
        pending_remove(c, a);
        rc = rn_errf(errmsg, -EPROTO, "%s: %s", method, grpc_call_error_to_string(e));
        grpc_call_unref(a->call);
        goto fail;
    }
    return 0;
fail:
    grpc_byte_buffer_destroy(a->send);
    recv_free(&a->r);
    free(a);
    return rc;
}

void rn_rpc_close(rn_rpc_t *c)
{
    if (!c) return;
    if (c->acq) {
        /* Pending calls end at once as cancelled; their done() still runs. */
        pthread_mutex_lock(&c->mu);
        for (acall_t *a = c->pending; a; a = a->next) grpc_call_cancel(a->call, NULL);
        pthread_mutex_unlock(&c->mu);
        grpc_completion_queue_shutdown(c->acq);
        pthread_join(c->athread, NULL);
        grpc_completion_queue_destroy(c->acq);
    }
    grpc_channel_destroy(c->ch);
    if (c->has_auth) {
        grpc_slice_unref(c->auth.key);
        grpc_slice_unref(c->auth.value);
    }
    for (size_t i = 0; i < c->nmethods; i++) free(c->methods[i].name);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int rn_rpc_retriable(int rc)
{
    return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -ECONNRESET || rc == -EPIPE;
}

int rn_rpc_unreached(int rc, const char *errmsg)
{
    return rc == -ECONNREFUSED && errmsg && strstr(errmsg, "failed to connect to all addresses");
}

uint32_t rn_rpc_backoff_ms(uint32_t base_ms, uint32_t max_ms, uint32_t attempt, uint64_t *rng)
{
    uint64_t d = base_ms ? base_ms : 1;
    for (uint32_t i = 1; i < attempt && d < max_ms; i++) d *= 2;
    if (d > max_ms) d = max_ms;
    /* xorshift64*: jitter in [0.8, 1.2) so many clients do not retry in step. */
    uint64_t x = *rng ? *rng : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    uint64_t r = (x * 0x2545F4914F6CDD1Dull) >> 11;         /* 53 bits */
    double f = 0.8 + 0.4 * ((double)r / (double)(1ull << 53));
    uint64_t j = (uint64_t)((double)d * f);
    return j ? (uint32_t)j : 1;
}

/* ---- server streaming ------------------------------------------------------- */

enum { TAG_SEND = 1, TAG_STATUS = 2, TAG_RECV = 3 };

struct rn_rpc_stream {
    rn_rpc_t              *c;
    grpc_completion_queue *cq;
    grpc_call             *call;
    grpc_byte_buffer      *send;
    rpc_recv_t             r;
    char                   tags[4];       /* addresses used as tags; [i] outstanding */
    int                    outstanding[4];
    int                    finished;      /* status received */
};

static void stream_pluck(rn_rpc_stream_t *s, int tag)
{
    if (!s->outstanding[tag]) return;
    grpc_completion_queue_pluck(s->cq, &s->tags[tag], gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    s->outstanding[tag] = 0;
}

int rn_rpc_stream_open(rn_rpc_t *c, const char *method, const ProtobufCMessage *req,
                       rn_rpc_stream_t **out, char *errmsg)
{
    *out = NULL;
    rn_rpc_stream_t *s = calloc(1, sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    s->c = c;
    recv_init(&s->r);
    int rc = pack(req, &s->send, errmsg);
    if (rc != 0) goto fail;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = new_call(c, method, s->cq, 0);
    if (!s->call) { rc = rn_errf(errmsg, -EPROTO, "cannot create a call to %s", method); goto fail; }
    grpc_op ops[6];
    unary_ops(c, ops, s->send, &s->r);
    /* ops 0..3: send everything and receive the initial metadata. */
    grpc_call_error e = grpc_call_start_batch(s->call, ops, 4, &s->tags[TAG_SEND], NULL);
    if (e != GRPC_CALL_OK) goto fail_call;
    s->outstanding[TAG_SEND] = 1;
    e = grpc_call_start_batch(s->call, &ops[5], 1, &s->tags[TAG_STATUS], NULL);
    if (e != GRPC_CALL_OK) goto fail_call;
    s->outstanding[TAG_STATUS] = 1;
    *out = s;
    return 0;
fail_call:
    rc = rn_errf(errmsg, -EPROTO, "%s: cannot start the call", method);
fail:
    rn_rpc_stream_close(s);
    return rc;
}

int rn_rpc_stream_next(rn_rpc_stream_t *s, const ProtobufCMessageDescriptor *desc,
                       ProtobufCMessage **msg, int *status, char *errmsg)
{
    *msg = NULL;
    if (status) *status = GRPC_STATUS_UNKNOWN;
    if (!s->finished) {
        grpc_byte_buffer *bb = NULL;
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &bb;
        if (grpc_call_start_batch(s->call, &op, 1, &s->tags[TAG_RECV], NULL) != GRPC_CALL_OK)
            return rn_errf(errmsg, -EPROTO, "cannot receive on the stream");
        s->outstanding[TAG_RECV] = 1;
        stream_pluck(s, TAG_RECV);
        if (bb) {
            if (status) *status = GRPC_STATUS_OK;
            int rc = unpack(bb, desc, msg, errmsg);
            grpc_byte_buffer_destroy(bb);
            return rc == 0 ? 1 : rc;
        }
        /* No message: the stream ended; the status follows. */
        stream_pluck(s, TAG_SEND);
        stream_pluck(s, TAG_STATUS);
        s->finished = 1;
    }
    if (status) *status = s->r.status;
    return status_rc(s->c, &s->r, errmsg);
}

void rn_rpc_stream_cancel(rn_rpc_stream_t *s)
{
    if (s && s->call) grpc_call_cancel(s->call, NULL);
}

void rn_rpc_stream_close(rn_rpc_stream_t *s)
{
    if (!s) return;
    if (s->call) {
        if (!s->finished) grpc_call_cancel(s->call, NULL);
        stream_pluck(s, TAG_RECV);
        stream_pluck(s, TAG_SEND);
        stream_pluck(s, TAG_STATUS);
        grpc_call_unref(s->call);
    }
    if (s->cq) pluck_cq_destroy(s->cq);
    if (s->send) grpc_byte_buffer_destroy(s->send);
    recv_free(&s->r);
    free(s);
}

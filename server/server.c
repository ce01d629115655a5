/*
 * server.c — the gRPC front of runneld (server/server.h): one completion
 * queue drained by a small pool of threads, one call object per RPC moving
 * through the states below, a waiter thread that completes produces when
 * their batches are durable, and a parking lot for long-polling fetches.
 *
 * States of a call (scall_t), and who moves it:
 *   REQUESTED  asked for with grpc_server_request_registered_call; its tag
 *              arriving (success) moves it to RUNNING and asks for another
 *   RUNNING    a completion-queue thread handles it: unary handlers answer at
 *              once (→ SENDING); Produce appends and hands the call to the
 *              waiter (→ WAITING); Fetch with nothing to return parks
 *              (→ PARKED)
 *   WAITING    the waiter thread waits for durability, then answers (→ SENDING)
 *   PARKED     in the parking lot; a durable append to its queue, its deadline
 *              (rn_server_expire) or shutdown moves it to WAKING by starting
 *              an empty batch, which puts its tag on the queue at once
 *              (wake_where)
 *   WAKING     a completion-queue thread fetches again: answers (→ SENDING)
 *              or parks again (→ PARKED)
 *   STREAMING  Query: a worker thread of its own (never a completion-queue
 *              thread) runs the statement (server/query.h) and sends its
 *              messages one batch at a time; each send's tag comes back
 *              here and only wakes the worker. A second tag, the stream's
 *              close notice (RECV_CLOSE_ON_SERVER, started with the worker),
 *              arrives when the client cancels, the deadline passes or the
 *              call ends. The worker sends the final batch (→ SENDING).
 *   SENDING    the final batch (metadata, message, status, close) is out;
 *              its tag frees the call (a stream's: once its close notice
 *              arrived too)
 *
 * Invariants:
 *  1. At most one batch of a call is outstanding at any time, and exactly one
 *     thread owns a call outside the parking lot; a parked call is owned by
 *     the lot (under lot_mu) and leaves it only through wake_where().
 *  2. No completion-queue thread blocks on fsync or sleeps: durability waits
 *     happen on the waiter thread, long-poll waits in the parking lot.
 *  3. No lost wake-up: a fetch re-checks the queue's visible end under lot_mu
 *     before parking, and the waiter notifies (under lot_mu) only after
 *     rn_datadir_wait returned, i.e. after the new batches became visible.
 *  4. Every request gets a status; a non-OK one is logged at warn (error for
 *     INTERNAL) with the method and message. The server keeps serving.
 *  5. Shutdown: no new calls are accepted (grpc_server_shutdown_and_notify),
 *     parked fetches answer at once, produces finish through the waiter; the
 *     completion queue is shut down only when the server's shutdown tag
 *     arrived and no call is active, then `stopped` fires once.
 *  6. gRPC is initialised once (pthread_once) and never shut down, for the
 *     reason client/rpc.c gives (grpc_shutdown can wait 10 s for the TCP
 *     backup poller after a large write); the process exit frees it.
 *  7. A stream (Query) has at most one SEND_MESSAGE batch outstanding: the
 *     worker waits for the previous send's tag before starting the next, so
 *     a slow client holds the worker, not memory (one message in flight,
 *     one chunk being filled). Besides it only its close notice is
 *     outstanding.
 *  8. A client cancel, an expired deadline or shutdown cancels the query
 *     (rn_query_cancel under the stream's mutex, which the worker holds
 *     while it publishes or withdraws the query; it interrupts a statement
 *     running inside a step); the worker then ends with a status
 *     (UNAVAILABLE on shutdown). rn_server_destroy waits for every worker
 *     thread to have left, and the data directory is closed after that, so
 *     no query outlives it.
 *  9. Bounded: at most o.max_queries worker threads and o.max_produces
 *     produce calls exist at once (counted under mu; a call over the cap is
 *     answered RESOURCE_EXHAUSTED before anything is stored). A produce
 *     frees its request (every batch's bytes) as soon as the batches are
 *     stored: waiting for durability holds only its offsets.
 * 10. A Produce that failed part-way (an I/O error after some batches were
 *     stored) is answered with its error and, in the RN_RPC_PARTIAL_TRAILER
 *     trailing metadata, the answer for the leading batches that have base
 *     offsets, sent only once they are durable (ACKS_DURABLE: through the
 *     waiter); so the client reports each batch as it is, not all failed.
 * 11. No string field of a request holds a NUL byte when a handler sees it:
 *     protobuf-c would hand it over cut at the NUL ("a\0b" as "a"), so the
 *     packed request is checked (server/reqcheck.h) and refused with
 *     INVALID_ARGUMENT naming the field before any handler runs.
 * 12. With o.tls_cert (and o.tls_key), the port serves TLS only, through
 *     gRPC's SSL server credentials: a plaintext client fails its handshake
 *     and never reaches a handler. With o.tls_client_ca as well, a client
 *     must present a certificate that chains to it (mutual TLS).
 * 13. With o.auth, every call (known method or not) is authenticated before
 *     its request is even unpacked (server/auth.h); a call that is not is
 *     answered UNAUTHENTICATED. The principal is kept in the call
 *     (scall_t.principal) for the checks of later layers.
 * 14. Authorization: once a request is unpacked, and before anything runs
 *     for it, the ACL check of its method (server/authz.h, the one table)
 *     passes or the call is answered PERMISSION_DENIED; a unary handler
 *     gets the principal in its arena, and its list answers are filtered to
 *     what the principal may describe. A query is refused after it opened
 *     (nothing read yet) when the principal may not consume its source, or
 *     when it changes the metadata (CREATE/DROP STREAM or FUNCTION: shared by
 *     every query and pipeline) without alter on the cluster.
 */
#include "server/server.h"

#include "client/rpc.h"
#include "cluster/handlers.h"
#include "common/error.h"
#include "common/sys.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/authz.h"
#include "server/pipelines.h"
#include "server/query.h"
#include "server/reqcheck.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>

_Static_assert(RN_ST_INVALID_ARGUMENT == (int)GRPC_STATUS_INVALID_ARGUMENT, "status numbers");
_Static_assert(RN_ST_NOT_FOUND == (int)GRPC_STATUS_NOT_FOUND, "status numbers");
_Static_assert(RN_ST_RESOURCE_EXHAUSTED == (int)GRPC_STATUS_RESOURCE_EXHAUSTED, "status numbers");
_Static_assert(RN_ST_FAILED_PRECONDITION == (int)GRPC_STATUS_FAILED_PRECONDITION, "status");
_Static_assert(RN_ST_OUT_OF_RANGE == (int)GRPC_STATUS_OUT_OF_RANGE, "status numbers");
_Static_assert(RN_ST_UNIMPLEMENTED == (int)GRPC_STATUS_UNIMPLEMENTED, "status numbers");
_Static_assert(RN_ST_UNAVAILABLE == (int)GRPC_STATUS_UNAVAILABLE, "status numbers");
_Static_assert(RN_ST_DATA_LOSS == (int)GRPC_STATUS_DATA_LOSS, "status numbers");
_Static_assert(RN_ST_UNAUTHENTICATED == (int)GRPC_STATUS_UNAUTHENTICATED, "status numbers");

#define MAX_MESSAGE   (256 << 20)       /* as the client's (client/rpc.c) */
#define MAX_THREADS   16
#define MAX_WAIT_MS   60000             /* longest long poll */
#define QUERY_POLL_MS 20                /* a following query's longest wait when idle */
#define QUERY_FLUSH_MS 50               /* rows wait at most this long to be sent */

typedef enum { M_UNARY, M_PRODUCE, M_FETCH, M_QUERY } mkind_t;

typedef struct method {
    const char                       *name;
    const ProtobufCMessageDescriptor *req;
    mkind_t                           kind;
    rn_hd_fn                          fn;
    int                               slots;    /* requests kept outstanding */
    void                             *handle;   /* per server, see server.methods */
} method_t;

#define D(x) &runnel__v1__##x##__descriptor
static const method_t method_table[] = {
    {"InitProducer", D(init_producer_request), M_UNARY, rn_hd_init_producer, 1, NULL},
    {"Produce", D(produce_request), M_PRODUCE, NULL, 8, NULL},
    {"Fetch", D(fetch_request), M_FETCH, NULL, 8, NULL},
    {"ListOffsets", D(list_offsets_request), M_UNARY, rn_hd_list_offsets, 2, NULL},
    {"CreateTopic", D(create_topic_request), M_UNARY, rn_hd_create_topic, 1, NULL},
    {"AlterTopic", D(alter_topic_request), M_UNARY, rn_hd_alter_topic, 1, NULL},
    {"DeleteTopic", D(delete_topic_request), M_UNARY, rn_hd_delete_topic, 1, NULL},
    {"ListTopics", D(list_topics_request), M_UNARY, rn_hd_list_topics, 1, NULL},
    {"DescribeTopic", D(describe_topic_request), M_UNARY, rn_hd_describe_topic, 1, NULL},
    {"RemapQueue", D(remap_queue_request), M_UNARY, rn_hd_remap_queue, 1, NULL},
    {"ListStores", D(list_stores_request), M_UNARY, rn_hd_list_stores, 1, NULL},
    {"CommitOffsets", D(commit_offsets_request), M_UNARY, rn_hd_commit_offsets, 2, NULL},
    {"FetchOffsets", D(fetch_offsets_request), M_UNARY, rn_hd_fetch_offsets, 2, NULL},
    {"ListGroups", D(list_groups_request), M_UNARY, rn_hd_list_groups, 1, NULL},
    {"ResetGroup", D(reset_group_request), M_UNARY, rn_hd_reset_group, 1, NULL},
    {"CreateCheckpoint", D(create_checkpoint_request), M_UNARY, rn_hd_create_checkpoint, 1, NULL},
    {"ListCheckpoints", D(list_checkpoints_request), M_UNARY, rn_hd_list_checkpoints, 1, NULL},
    {"DropCheckpoint", D(drop_checkpoint_request), M_UNARY, rn_hd_drop_checkpoint, 1, NULL},
    {"Query", D(query_request), M_QUERY, NULL, 2, NULL},
    {"CreatePipeline", D(create_pipeline_request), M_UNARY, rn_pl_hd_create, 1, NULL},
    {"ListPipelines", D(list_pipelines_request), M_UNARY, rn_pl_hd_list, 1, NULL},
    {"GetPipeline", D(pipeline_request), M_UNARY, rn_pl_hd_get, 1, NULL},
    {"PausePipeline", D(pipeline_request), M_UNARY, rn_pl_hd_pause, 1, NULL},
    {"ResumePipeline", D(pipeline_request), M_UNARY, rn_pl_hd_resume, 1, NULL},
    {"DropPipeline", D(pipeline_request), M_UNARY, rn_pl_hd_drop, 1, NULL},
    {"AddAcl", D(acl_entry), M_UNARY, rn_authz_hd_add, 1, NULL},
    {"RemoveAcl", D(acl_entry), M_UNARY, rn_authz_hd_remove, 1, NULL},
    {"ListAcls", D(list_acls_request), M_UNARY, rn_authz_hd_list, 1, NULL},
    {"ClusterStatus", D(cluster_status_request), M_UNARY, rn_cluster_hd_status, 1, NULL},
    {"ClusterHeartbeat", D(cluster_heartbeat_request), M_UNARY, rn_cluster_hd_heartbeat, 2, NULL},
    {"ClusterChange", D(cluster_change_request), M_UNARY, rn_cluster_hd_change, 1, NULL},
    {"ReassignQueue", D(reassign_queue_request), M_UNARY, rn_cluster_hd_reassign, 1, NULL},
};
#undef D
#define NMETHODS (sizeof method_table / sizeof method_table[0])

typedef enum { C_REQUESTED, C_RUNNING, C_WAITING, C_PARKED, C_WAKING, C_STREAMING,
               C_SENDING } cstate_t;

/* What a completion-queue tag points at: a call, or a stream's close
 * notice. Both structs begin with their kind. */
typedef enum { TAG_CALL = 1, TAG_CLOSE } tagkind_t;

typedef struct scall scall_t;
typedef struct sstream sstream_t;

/* A Query call's streaming state (invariants 7, 8). */
enum { STOP_NONE, STOP_CLIENT, STOP_SHUTDOWN };
struct sstream {
    tagkind_t         tag;            /* TAG_CLOSE: this struct is the close notice's tag */
    scall_t          *c;
    pthread_mutex_t   mu;
    pthread_cond_t    cv;             /* a send completed, or stop was asked */
    int               sending;        /* a SEND_MESSAGE batch is outstanding */
    int               send_failed;    /* a send did not complete: the client is gone */
    int               md_sent;        /* the initial metadata went out */
    int               stop;           /* STOP_*: why the query must end */
    int               refs;           /* the worker's final batch + the close notice */
    int               cancelled;      /* RECV_CLOSE_ON_SERVER's out-parameter */
    rn_query_t       *q;              /* published while running, under mu */
    grpc_byte_buffer *out;            /* the message in flight */
    sstream_t        *prev, *next;    /* s->streams */
};

struct scall {
    tagkind_t            tag;             /* TAG_CALL */
    rn_server_t         *s;
    size_t               mi;              /* index into method_table / s->handles */
    cstate_t             state;
    grpc_call           *call;
    gpr_timespec         deadline;
    grpc_metadata_array  md;
    grpc_call_details    cd;              /* unregistered (unknown) methods only */
    grpc_byte_buffer    *payload;
    ProtobufCMessage    *req;
    rn_arena_t           arena;
    rn_produce_t         prod;
    rn_fetch_t           fetch;
    int64_t              park_deadline;   /* ms, rn_server_now_ms clock; 0 = not yet */
    int                  final;           /* answer now, whatever there is */
    scall_t             *prev, *next;     /* parking lot */
    grpc_byte_buffer    *resp;
    grpc_slice           details;
    int                  cancelled;
    int                  counted;         /* in s->produces (invariant 9) */
    int                  partial;         /* Produce failed part-way (invariant 10) */
    rn_status_t          pfail;           /*   its status */
    grpc_metadata        trailer;         /*   the stored batches' answer, when set */
    int                  has_trailer;
    sstream_t           *ss;              /* Query only */
    char                 principal[RN_USER_NAME_MAX + 1];  /* invariant 13; "" = anonymous */
};

typedef struct wjob wjob_t;
struct wjob {
    wjob_t    *next;
    scall_t   *c;            /* NULL: notify only (ACKS_WRITTEN) */
    rn_qent_t *q;
    uint64_t  *tickets;      /* owned when c is NULL */
    size_t     ntickets;
};

struct rn_server {
    rn_hd_t               *hd;
    rn_server_opts_t       o;
    grpc_server           *server;
    grpc_completion_queue *cq;
    void                  *handles[NMETHODS];
    char                   paths[NMETHODS][64];   /* grpc keeps pointers to them */
    pthread_t              threads[MAX_THREADS];
    int                    nthreads;
    char                   shutdown_tag;
    /* lifecycle */
    pthread_mutex_t        mu;
    int                    stopping, shutdown_done, cq_down;
    uint64_t               active;
    /* parking lot (invariant 1, 3) */
    pthread_mutex_t        lot_mu;
    scall_t               *parked;
    int64_t                armed;         /* deadline the caller's timer is set for; -1 none */
    /* waiter */
    pthread_mutex_t        wmu;
    pthread_cond_t         wcv;
    wjob_t                *whead, *wtail;
    int                    wstop;
    pthread_t              wthread;
    /* streams: the running queries and their worker threads (under mu) */
    sstream_t             *streams;
    uint64_t               workers;
    pthread_cond_t         workers_cv;
    uint64_t               produces;      /* produce calls counted (invariant 9), under mu */
    _Atomic uint64_t       calls, errors;
};

int64_t rn_server_now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

static pthread_once_t grpc_once = PTHREAD_ONCE_INIT;
/* gRPC's own log lines (a failed TLS handshake, for one) go to runneld's
 * log, one line each, at warn for gRPC's errors. */
static void grpc_log(gpr_log_func_args *a)
{
    rn_slog(a->severity == GPR_LOG_SEVERITY_ERROR ? RN_SLOG_WARN : RN_SLOG_DEBUG, "gRPC: %s",
            a->message);
}

static void grpc_init_once(void)
{
    gpr_set_log_function(grpc_log);
    grpc_init();
}

/* ---- calls -------------------------------------------------------------------- */

static void request_call(rn_server_t *s, size_t mi);

/* mi == GENERIC: a call to a method the service does not have. */
#define GENERIC NMETHODS

static const char *method_name(const scall_t *c)
{
    return c->mi == GENERIC ? "(unknown method)" : method_table[c->mi].name;
}

static void maybe_stopped(rn_server_t *s)
{
    int fire = 0;
    pthread_mutex_lock(&s->mu);
    if (s->shutdown_done && s->active == 0 && !s->cq_down) {
        s->cq_down = 1;
        fire = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (fire) {
        grpc_completion_queue_shutdown(s->cq);
        if (s->o.stopped) s->o.stopped(s->o.arg);
    }
}

static void stream_free(sstream_t *ss);
static void stream_unref(scall_t *c);

static void call_free(scall_t *c)
{
    rn_server_t *s = c->s;
    if (c->ss) stream_free(c->ss);
    int was_active = c->state != C_REQUESTED;
    if (c->call) grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->cd);
    if (c->payload) grpc_byte_buffer_destroy(c->payload);
    if (c->resp) grpc_byte_buffer_destroy(c->resp);
    grpc_slice_unref(c->details);
    if (c->req) protobuf_c_message_free_unpacked(c->req, NULL);
    rn_arena_free(&c->arena);
    if (c->has_trailer) {
        grpc_slice_unref(c->trailer.key);
        grpc_slice_unref(c->trailer.value);
    }
    rn_hd_produce_free(&c->prod);
    rn_hd_fetch_free(&c->fetch);
    int counted = c->counted;          /* not answered (cannot answer) */
    free(c);
    if (was_active || counted) {
        pthread_mutex_lock(&s->mu);
        if (was_active) s->active--;
        if (was_active) rn_metrics_gauge(RN_MG_GRPC_CALLS, -1);
        if (counted) s->produces--;
        pthread_mutex_unlock(&s->mu);
        maybe_stopped(s);
    }
}

static int status_is_error(rn_st_t code) { return code == RN_ST_INTERNAL || code == RN_ST_UNKNOWN; }

static rn_slog_level_t status_level(rn_st_t code)
{
    return status_is_error(code) ? RN_SLOG_ERROR
         : code == RN_ST_CANCELLED ? RN_SLOG_INFO : RN_SLOG_WARN;
}

static const char *status_name(rn_st_t code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED"};
    return (unsigned)code < sizeof names / sizeof names[0] ? names[code] : "status";
}

/* Start the final batch of a call: the initial metadata unless already
 * sent, c->resp when set, the status (its message when not OK; logged,
 * invariant 4) and, for unary calls, the close notice. */
static void finish(scall_t *c, const rn_status_t *st, int send_md, int recv_close)
{
    rn_server_t *s = c->s;
    const char *mname = method_name(c);
    if (c->counted) {                  /* answered: no longer in the broker (invariant 9) */
        pthread_mutex_lock(&s->mu);
        s->produces--;
        pthread_mutex_unlock(&s->mu);
        c->counted = 0;
    }
    grpc_op ops[4];
    size_t nops = 0;
    memset(ops, 0, sizeof ops);
    if (st->code != RN_ST_OK) {
        atomic_fetch_add(&s->errors, 1);
        rn_slog(status_level(st->code), "%s: %s: %s", mname, status_name(st->code), st->msg);
    }
    if (send_md) ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (c->resp) {
        ops[nops].op = GRPC_OP_SEND_MESSAGE;
        ops[nops++].data.send_message.send_message = c->resp;
    }
    c->details = grpc_slice_from_copied_string(st->code == RN_ST_OK ? "" : st->msg);
    ops[nops].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[nops].data.send_status_from_server.status = (grpc_status_code)st->code;
    if (c->has_trailer) {
        ops[nops].data.send_status_from_server.trailing_metadata_count = 1;
        ops[nops].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    ops[nops++].data.send_status_from_server.status_details = &c->details;
    if (recv_close) {
        ops[nops].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[nops++].data.recv_close_on_server.cancelled = &c->cancelled;
    }
    c->state = C_SENDING;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, nops, c, NULL);
    if (e != GRPC_CALL_OK) {
        rn_slog(RN_SLOG_ERROR, "%s: cannot answer: %s", mname, grpc_call_error_to_string(e));
        if (c->ss) stream_unref(c);
        else call_free(c);
    }
}

/* A packed message in a byte buffer (the caller destroys it). */
static grpc_byte_buffer *byte_buffer(const uint8_t *p, size_t n)
{
    grpc_slice sl = grpc_slice_malloc(n);
    if (n) memcpy(GRPC_SLICE_START_PTR(sl), p, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

/* Answer a unary call: resp (may be NULL) when st->code is OK, else the
 * status and its message. */
static void respond(scall_t *c, const rn_status_t *st, const ProtobufCMessage *resp)
{
    if (st->code == RN_ST_OK && resp) {
        size_t n = protobuf_c_message_get_packed_size(resp);
        grpc_slice sl = grpc_slice_malloc(n);
        protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(sl));
        c->resp = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
    }
    finish(c, st, 1, 1);
}

static void respond_ok(scall_t *c, const ProtobufCMessage *resp)
{
    rn_status_t ok = {RN_ST_OK, "", RN_SR_NONE};
    respond(c, &ok, resp);
}

/* ---- waiter (invariant 2) ------------------------------------------------------ */

static void wake_queue(rn_server_t *s, rn_qent_t *q);

static void waiter_push(rn_server_t *s, wjob_t *j)
{
    pthread_mutex_lock(&s->wmu);
    j->next = NULL;
    if (s->wtail) s->wtail->next = j;
    else s->whead = j;
    s->wtail = j;
    pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
}

/* Answer a Produce that failed part-way (invariant 10): its error, and when
 * the leading stored batches are durable (durable != 0) their answer in the
 * RN_RPC_PARTIAL_TRAILER trailer. */
static void respond_partial(scall_t *c, int durable)
{
    rn_server_t *s = c->s;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    if (durable && rn_hd_produce_partial(s->hd, &c->prod, &c->arena, &resp, &st) == 0) {
        size_t n = protobuf_c_message_get_packed_size(resp);
        grpc_slice v = grpc_slice_malloc(n);
        protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(v));
        c->trailer.key = grpc_slice_from_static_string(RN_RPC_PARTIAL_TRAILER);
        c->trailer.value = v;
        c->has_trailer = 1;
    }
    respond(c, &c->pfail, NULL);
}

static void *waiter_main(void *arg)
{
    rn_server_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->wmu);
        while (!s->whead && !s->wstop) pthread_cond_wait(&s->wcv, &s->wmu);
        wjob_t *j = s->whead;
        if (j) {
            s->whead = j->next;
            if (!s->whead) s->wtail = NULL;
        }
        pthread_mutex_unlock(&s->wmu);
        if (!j) break;
        rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
        int rc;
        if (j->c) {
            rc = rn_hd_produce_wait(s->hd, &j->c->prod, &st);
        } else {
            rn_produce_t p;
            memset(&p, 0, sizeof p);
            p.q = j->q;
            p.tickets = j->tickets;
            p.ntickets = j->ntickets;
            rc = rn_hd_produce_wait(s->hd, &p, &st);
            if (rc != 0) rn_slog(RN_SLOG_ERROR, "Produce (acks written): %s", st.msg);
        }
        wake_queue(s, j->q);
        /* A cluster queue: acks all waits for the in-sync replicas, after
         * the wake-up above let the followers' parked fetches see it. */
        if (rc == 0 && j->c && !j->c->partial)
            rc = rn_hd_produce_replicated(s->hd, &j->c->prod, &st);
        if (j->c && j->c->partial) {
            respond_partial(j->c, rc == 0);
        } else if (j->c) {
            ProtobufCMessage *resp = NULL;
            if (rc == 0) rc = rn_hd_produce_answer(s->hd, &j->c->prod, &j->c->arena, &resp, &st);
            if (rc == 0) respond_ok(j->c, resp);
            else respond(j->c, &st, NULL);
        }
        free(j->tickets);
        free(j);
    }
    return NULL;
}

/* ---- parking lot ------------------------------------------------------------- */

static void lot_remove(rn_server_t *s, scall_t *c)
{
    if (c->prev) c->prev->next = c->next;
    else s->parked = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    rn_metrics_gauge(RN_MG_GRPC_PARKED, -1);
}

static void do_fetch(scall_t *c);

/* Hand parked calls back to completion-queue threads (invariant 1): those of
 * queue q (q != NULL), those whose deadline is at or before now_ms
 * (now_ms >= 0; answered with what there is), or every one (all; likewise).
 * A call whose wake-up batch cannot start is fetched again right here, so
 * every parked call is answered. */
static void wake_where(rn_server_t *s, rn_qent_t *q, int64_t now_ms, int all)
{
    scall_t *failed = NULL;
    pthread_mutex_lock(&s->lot_mu);
    scall_t *c = s->parked;
    while (c) {
        scall_t *next = c->next;
        int due = now_ms >= 0 && c->park_deadline <= now_ms;
        if (all || due || (q && c->fetch.q == q)) {
            lot_remove(s, c);
            c->state = C_WAKING;
            c->final |= all || due;
            grpc_call_error e = grpc_call_start_batch(c->call, NULL, 0, c, NULL);
            if (e != GRPC_CALL_OK) {
                rn_slog(RN_SLOG_ERROR, "Fetch: cannot wake a parked call (%s); answering it "
                        "here", grpc_call_error_to_string(e));
                c->next = failed;
                failed = c;
            }
        }
        c = next;
    }
    pthread_mutex_unlock(&s->lot_mu);
    while (failed) {
        c = failed;
        failed = c->next;
        c->next = NULL;
        c->state = C_RUNNING;
        c->final = 1;
        do_fetch(c);
    }
}

static void wake_queue(rn_server_t *s, rn_qent_t *q) { wake_where(s, q, -1, 0); }

static void waker(void *arg, rn_qent_t *q) { wake_queue(arg, q); }

int64_t rn_server_next_deadline(rn_server_t *s)
{
    int64_t d = -1;
    pthread_mutex_lock(&s->lot_mu);
    for (scall_t *c = s->parked; c; c = c->next)
        if (d < 0 || c->park_deadline < d) d = c->park_deadline;
    s->armed = d;
    pthread_mutex_unlock(&s->lot_mu);
    return d;
}

void rn_server_expire(rn_server_t *s, int64_t now_ms) { wake_where(s, NULL, now_ms, 0); }

/* When a fetch parked now must answer: after max_wait_ms, and a little
 * before the call's own deadline (an answer after it would be lost). */
static int64_t park_deadline(const scall_t *c, int64_t now, uint32_t max_wait_ms)
{
    /* Capped: a client that went away leaves its parked call behind until
     * then (no receive is outstanding on a parked call to tell us). */
    int64_t dl = now + (max_wait_ms < MAX_WAIT_MS ? max_wait_ms : MAX_WAIT_MS);
    gpr_timespec d = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(d, gpr_inf_future(GPR_CLOCK_MONOTONIC)) < 0) {
        gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
        int64_t ms = (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000 - 20;
        if (now + ms < dl) dl = now + (ms > 0 ? ms : 0);
    }
    return dl;
}

/* Fetch, answering or parking (invariant 3). */
static void do_fetch(scall_t *c)
{
    rn_server_t *s = c->s;
    const Runnel__V1__FetchRequest *req = (const void *)c->req;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    for (int round = 0; round < 1000; round++) {
        if (rn_hd_fetch(s->hd, req, &c->fetch, &st) != 0) { respond(c, &st, NULL); return; }
        int64_t now = rn_server_now_ms();
        if (!c->park_deadline) c->park_deadline = park_deadline(c, now, req->max_wait_ms);
        if (c->fetch.nbatches > 0 || req->max_wait_ms == 0 || c->final ||
            now >= c->park_deadline || c->fetch.high_watermark > req->offset)
            break;
        int notify = 0, again = 0;
        pthread_mutex_lock(&s->lot_mu);
        int64_t hwm;
        if (s->stopping) {
            c->final = 1;
        } else if (rn_hd_fetch_visible(s->hd, req, c->fetch.q, &hwm) == 0 && hwm > req->offset) {
            again = 1;                        /* data arrived meanwhile */
        } else {
            c->state = C_PARKED;
            c->prev = NULL;
            c->next = s->parked;
            if (s->parked) s->parked->prev = c;
            s->parked = c;
            rn_metrics_gauge(RN_MG_GRPC_PARKED, 1);
            notify = s->armed < 0 || c->park_deadline < s->armed;
        }
        pthread_mutex_unlock(&s->lot_mu);
        if (again || c->final) continue;
        /* Parked: c may already be running on another thread; touch nothing. */
        if (notify && s->o.wakeup) s->o.wakeup(s->o.arg);
        return;
    }
    ProtobufCMessage *resp = NULL;
    if (rn_hd_fetch_answer(s->hd, &c->fetch, &c->arena, &resp) != 0) {
        st.code = RN_ST_RESOURCE_EXHAUSTED;
        snprintf(st.msg, sizeof st.msg, "out of memory");
        respond(c, &st, NULL);
        return;
    }
    respond_ok(c, resp);
}

static void do_produce(scall_t *c)
{
    rn_server_t *s = c->s;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    const Runnel__V1__ProduceRequest *req = (const void *)c->req;
    pthread_mutex_lock(&s->mu);                      /* invariant 9 */
    uint64_t inflight = s->produces;
    int over = s->o.max_produces && inflight >= s->o.max_produces;
    if (!over) {
        s->produces++;
        c->counted = 1;
    }
    pthread_mutex_unlock(&s->mu);
    if (over) {
        st.code = RN_ST_RESOURCE_EXHAUSTED;
        snprintf(st.msg, sizeof st.msg, "%llu produce requests are in the broker (being "
                 "stored or waiting for durability), this broker's limit (runneld "
                 "--max-produces); nothing was stored: retry after a pause",
                 (unsigned long long)inflight);
        respond(c, &st, NULL);
        return;
    }
    int begun = rn_hd_produce_begin(s->hd, req, &c->prod, &st);
    /* The batches are stored (or refused): the request's bytes are no
     * longer needed, whatever the wait for durability takes. */
    protobuf_c_message_free_unpacked(c->req, NULL);
    c->req = NULL;
    req = NULL;
    if (begun != 0) {
        /* An I/O error part-way: the batches stored before it will become
         * visible; parked fetches of the queue must hear of them. */
        wjob_t *j = c->prod.ntickets || c->prod.done ? calloc(1, sizeof *j) : NULL;
        if (j && c->prod.done > 0 && !c->prod.acks_written) {
            /* Invariant 10: answer once the stored ones are durable. */
            c->partial = 1;
            c->pfail = st;
            j->q = c->prod.q;
            j->c = c;
            c->state = C_WAITING;
            waiter_push(s, j);
            return;
        }
        if (j) {
            j->q = c->prod.q;
            j->tickets = c->prod.tickets;
            j->ntickets = c->prod.ntickets;
            c->prod.tickets = NULL;
            c->prod.ntickets = 0;
            waiter_push(s, j);
        }
        if (c->prod.done > 0 && c->prod.acks_written) {
            c->partial = 1;
            c->pfail = st;
            respond_partial(c, 1);
        } else {
            respond(c, &st, NULL);
        }
        return;
    }
    wjob_t *j = calloc(1, sizeof *j);
    if (!j) {
        st.code = RN_ST_INTERNAL;
        snprintf(st.msg, sizeof st.msg, "out of memory after storing the batches; retry");
        respond(c, &st, NULL);
        return;
    }
    j->q = c->prod.q;
    if (c->prod.acks_written) {
        /* Answer now; the waiter only tells parked fetches when it is visible. */
        j->tickets = c->prod.tickets;
        j->ntickets = c->prod.ntickets;
        c->prod.tickets = NULL;
        c->prod.ntickets = 0;
        ProtobufCMessage *resp = NULL;
        if (rn_hd_produce_answer(s->hd, &c->prod, &c->arena, &resp, &st) == 0)
            respond_ok(c, resp);
        else
            respond(c, &st, NULL);
    } else {
        j->c = c;
        c->state = C_WAITING;
    }
    waiter_push(s, j);
}

/* ---- streams: Query on a worker thread (invariants 7, 8) ------------------------ */

static void stream_free(sstream_t *ss)
{
    if (ss->out) grpc_byte_buffer_destroy(ss->out);
    pthread_mutex_destroy(&ss->mu);
    pthread_cond_destroy(&ss->cv);
    free(ss);
}

/* Drop one reference (the final batch's or the close notice's); the last
 * one frees the call. */
static void stream_unref(scall_t *c)
{
    sstream_t *ss = c->ss;
    pthread_mutex_lock(&ss->mu);
    int last = --ss->refs == 0;
    pthread_mutex_unlock(&ss->mu);
    if (last) call_free(c);
}

/* Ask the query to end (any thread). */
static void stream_stop(sstream_t *ss, int why)
{
    pthread_mutex_lock(&ss->mu);
    if (!ss->stop) ss->stop = why;
    if (ss->q) rn_query_cancel(ss->q);
    pthread_cond_broadcast(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}

/* A send completed (completion-queue thread): wake the worker. */
static void stream_sent(scall_t *c, int success)
{
    sstream_t *ss = c->ss;
    pthread_mutex_lock(&ss->mu);
    ss->sending = 0;
    if (!success) ss->send_failed = 1;
    if (ss->out) grpc_byte_buffer_destroy(ss->out);
    ss->out = NULL;
    pthread_cond_broadcast(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}

/* The close notice arrived: the client cancelled, the deadline passed, or
 * the call ended after its status. */
static void stream_closed(sstream_t *ss, int success)
{
    scall_t *c = ss->c;
    if (!success || ss->cancelled) stream_stop(ss, STOP_CLIENT);
    stream_unref(c);
}

/* Wait until no send is outstanding (invariant 7); 0 when the stream can
 * take another message. With ss->mu held. */
static int stream_wait_sent(sstream_t *ss)
{
    while (ss->sending) pthread_cond_wait(&ss->cv, &ss->mu);
    return ss->send_failed || ss->stop ? -1 : 0;
}

/* rn_query_send_fn: send one message, after the previous one completed. */
static int stream_send(void *arg, const uint8_t *msg, size_t n)
{
    scall_t *c = arg;
    sstream_t *ss = c->ss;
    pthread_mutex_lock(&ss->mu);
    int rc = stream_wait_sent(ss);
    if (rc == 0) {
        grpc_op ops[2];
        size_t nops = 0;
        memset(ops, 0, sizeof ops);
        if (!ss->md_sent) ops[nops++].op = GRPC_OP_SEND_INITIAL_METADATA;
        ss->out = byte_buffer(msg, n);
        ops[nops].op = GRPC_OP_SEND_MESSAGE;
        ops[nops++].data.send_message.send_message = ss->out;
        ss->sending = 1;
        ss->md_sent = 1;
        grpc_call_error e = grpc_call_start_batch(c->call, ops, nops, c, NULL);
        if (e != GRPC_CALL_OK) {
            rn_slog(RN_SLOG_ERROR, "Query: cannot send: %s", grpc_call_error_to_string(e));
            grpc_byte_buffer_destroy(ss->out);
            ss->out = NULL;
            ss->sending = 0;
            ss->send_failed = 1;
            rc = -1;
        }
    }
    pthread_mutex_unlock(&ss->mu);
    return rc;
}

static void worker_leave(rn_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    if (--s->workers == 0) pthread_cond_broadcast(&s->workers_cv);
    pthread_mutex_unlock(&s->mu);
}

static void stream_unlink(rn_server_t *s, sstream_t *ss)
{
    pthread_mutex_lock(&s->mu);
    if (ss->prev) ss->prev->next = ss->next;
    else s->streams = ss->next;
    if (ss->next) ss->next->prev = ss->prev;
    ss->prev = ss->next = NULL;
    pthread_mutex_unlock(&s->mu);
}

/* End the stream: wait for the last send, then the final batch (the
 * trailer when st is OK and msg is set). c and ss belong to the
 * completion-queue threads once it started. */
static void stream_end(scall_t *c, const rn_status_t *st, const rn_buf_t *msg)
{
    sstream_t *ss = c->ss;
    pthread_mutex_lock(&ss->mu);
    while (ss->sending) pthread_cond_wait(&ss->cv, &ss->mu);
    int md_sent = ss->md_sent;
    pthread_mutex_unlock(&ss->mu);
    if (st->code == RN_ST_OK && msg) c->resp = byte_buffer(msg->data, msg->len);
    finish(c, st, !md_sent, 0);
}

/* Sleep until ms passed or the stream was stopped. */
/* Run the statement to its end: header, chunks of rows (flushed when idle
 * and at least every QUERY_FLUSH_MS), trailer. */
static int query_run(scall_t *c, rn_query_t *q, rn_buf_t *msg, rn_status_t *st)
{
    sstream_t *ss = c->ss;
    if (rn_query_header(q, msg, st) != 0) return -1;
    if (stream_send(c, msg->data, msg->len) != 0) return 0;      /* stopped: see below */
    uint64_t flushed = rn_mono_ns();
    for (;;) {
        rn_sql_state_t state;
        if (rn_query_step(q, &state, st) != 0) return -1;
        if (state == RN_SQL_DONE) break;
        uint64_t now = rn_mono_ns();
        if (rn_query_pending(q) &&
            (state == RN_SQL_IDLE || now - flushed >= QUERY_FLUSH_MS * 1000000ull)) {
            if (rn_query_flush(q, st) != 0) return 0;
            flushed = now;
        } else if (!rn_query_pending(q)) {
            flushed = now;
        }
        /* Woken by an append to the data directory; a cancel is seen at the
         * next step, within QUERY_POLL_MS. */
        if (state == RN_SQL_IDLE) rn_query_wait(q, QUERY_POLL_MS);
    }
    pthread_mutex_lock(&ss->mu);
    int stopped = ss->stop;
    pthread_mutex_unlock(&ss->mu);
    if (stopped) return 0;
    if (rn_query_flush(q, st) != 0) return 0;
    return rn_query_trailer(q, msg, st);
}

static void *query_main(void *arg)
{
    scall_t *c = arg;
    sstream_t *ss = c->ss;
    rn_server_t *s = c->s;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    rn_buf_t msg = RN_BUF_INIT;
    rn_query_t *q = NULL;
    int rc = rn_query_open(s->hd, (const Runnel__V1__QueryRequest *)c->req, stream_send, c, &q,
                           &st);
    if (rc == 0) {                      /* invariant 14: the source, before any read */
        const char *src = rn_query_source(q), *jsrc = rn_query_join_source(q);
        char why[RN_ERRMSG_SIZE];
        rn_acl_t *acl = rn_hd_opts(s->hd)->acl;
        if ((src && src[0] && rn_acl_check(acl, c->principal, RN_ACL_TOPIC, src,
                                           RN_ACL_CONSUME, 0, why, sizeof why) != 0) ||
            (jsrc && rn_acl_check(acl, c->principal, RN_ACL_TOPIC, jsrc,   /* a joined table */
                                  RN_ACL_CONSUME, 0, why, sizeof why) != 0) ||
            (rn_query_changes_metadata(q) &&       /* streams and functions are shared */
             rn_acl_check(acl, c->principal, RN_ACL_CLUSTER, NULL, RN_ACL_ALTER, 0, why,
                          sizeof why) != 0)) {
            rn_query_close(q);
            rc = rn_status_set(&st, RN_ST_PERMISSION_DENIED, "%s", why);
        }
    }
    if (rc == 0) {
        pthread_mutex_lock(&ss->mu);
        ss->q = q;
        if (ss->stop) rn_query_cancel(q);
        pthread_mutex_unlock(&ss->mu);
        rc = query_run(c, q, &msg, &st);
        pthread_mutex_lock(&ss->mu);
        ss->q = NULL;
        pthread_mutex_unlock(&ss->mu);
        rn_query_close(q);
    }
    pthread_mutex_lock(&ss->mu);
    int stop = ss->stop, gone = ss->send_failed;
    pthread_mutex_unlock(&ss->mu);
    /* Why it ended early wins over what the engine said about it. */
    if (stop == STOP_SHUTDOWN) {
        st.code = RN_ST_UNAVAILABLE;
        snprintf(st.msg, sizeof st.msg, "the broker is shutting down; the query was stopped");
    } else if (stop == STOP_CLIENT || gone) {
        st.code = RN_ST_CANCELLED;
        snprintf(st.msg, sizeof st.msg, "the client cancelled the query or went away");
    } else if (rc != 0 && st.code == RN_ST_OK) {
        st.code = RN_ST_INTERNAL;
        snprintf(st.msg, sizeof st.msg, "query failed without a message (server.c)");
    }
    stream_unlink(s, ss);
    stream_end(c, &st, st.code == RN_ST_OK ? &msg : NULL);     /* c, ss are no longer ours */
    rn_buf_free(&msg);
    worker_leave(s);                                          /* the last touch of s */
    return NULL;
}

/* A Query call arrived: its close notice, then its worker (invariant 8). */
static void do_query(scall_t *c)
{
    rn_server_t *s = c->s;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    sstream_t *ss = calloc(1, sizeof *ss);
    if (!ss) {
        st.code = RN_ST_RESOURCE_EXHAUSTED;
        snprintf(st.msg, sizeof st.msg, "out of memory");
        respond(c, &st, NULL);
        return;
    }
    ss->tag = TAG_CLOSE;
    ss->c = c;
    ss->refs = 1;
    pthread_mutex_init(&ss->mu, NULL);
    pthread_cond_init(&ss->cv, NULL);
    pthread_mutex_lock(&s->mu);
    int stopping = s->stopping;
    uint64_t running = s->workers;
    int over = s->o.max_queries && running >= s->o.max_queries;     /* invariant 9 */
    if (!stopping && !over) {
        ss->next = s->streams;
        if (s->streams) s->streams->prev = ss;
        s->streams = ss;
        s->workers++;
    }
    pthread_mutex_unlock(&s->mu);
    if (stopping || over) {
        stream_free(ss);
        if (stopping) {
            st.code = RN_ST_UNAVAILABLE;
            snprintf(st.msg, sizeof st.msg, "the broker is shutting down");
        } else {
            st.code = RN_ST_RESOURCE_EXHAUSTED;
            snprintf(st.msg, sizeof st.msg, "%llu queries are running, this broker's limit "
                     "(runneld --max-queries); retry when one ended",
                     (unsigned long long)running);
        }
        respond(c, &st, NULL);
        return;
    }
    c->ss = ss;
    c->state = C_STREAMING;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ss->cancelled;
    grpc_call_error e = grpc_call_start_batch(c->call, &op, 1, ss, NULL);
    if (e == GRPC_CALL_OK) ss->refs++;
    else rn_slog(RN_SLOG_ERROR, "Query: cannot watch for cancellation: %s",
                 grpc_call_error_to_string(e));
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&t, &attr, query_main, c);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        stream_unlink(s, ss);
        st.code = RN_ST_RESOURCE_EXHAUSTED;
        snprintf(st.msg, sizeof st.msg, "cannot start a query thread: %s", strerror(err));
        stream_end(c, &st, NULL);
        worker_leave(s);
    }
}

/* A new call arrived: unpack and dispatch. */
static void handle(scall_t *c)
{
    rn_server_t *s = c->s;
    rn_status_t st = {RN_ST_OK, "", RN_SR_NONE};
    atomic_fetch_add(&s->calls, 1);
    if (s->o.auth && rn_auth_check(s->o.auth, c->call, &c->md, c->principal, st.msg) != 0) {
        st.code = RN_ST_UNAUTHENTICATED;            /* invariant 13 */
        respond(c, &st, NULL);
        return;
    }
    if (c->mi == GENERIC) {
        char *name = grpc_slice_to_c_string(c->cd.method);
        st.code = RN_ST_UNIMPLEMENTED;
        snprintf(st.msg, sizeof st.msg, "unknown method %.120s: service runnel.v1.Runnel does "
                 "not have it", name ? name : "?");
        gpr_free(name);
        respond(c, &st, NULL);
        return;
    }
    const method_t *m = &method_table[c->mi];
    if (!c->payload) {
        st.code = RN_ST_INVALID_ARGUMENT;
        snprintf(st.msg, sizeof st.msg, "%s: no request message", m->name);
        respond(c, &st, NULL);
        return;
    }
    grpc_byte_buffer_reader rd;
    size_t n = 0;
    if (grpc_byte_buffer_reader_init(&rd, c->payload)) {
        grpc_slice sl = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        n = GRPC_SLICE_LENGTH(sl);
        c->req = protobuf_c_message_unpack(m->req, NULL, n, GRPC_SLICE_START_PTR(sl));
        /* Invariant 11: a string holding a NUL would unpack cut short. */
        if (c->req && rn_reqcheck_strings(m->req, GRPC_SLICE_START_PTR(sl), n, st.msg) != 0)
            st.code = RN_ST_INVALID_ARGUMENT;
        grpc_slice_unref(sl);
    }
    grpc_byte_buffer_destroy(c->payload);
    c->payload = NULL;
    if (!c->req) {
        st.code = RN_ST_INVALID_ARGUMENT;
        snprintf(st.msg, sizeof st.msg, "malformed %s (%zu bytes): not a valid protobuf message",
                 m->req->short_name, n);
    }
    if (st.code == RN_ST_OK)            /* invariant 14 */
        rn_authz_call(rn_hd_opts(s->hd)->acl, c->principal, m->name, c->req, &st);
    if (st.code != RN_ST_OK) {
        respond(c, &st, NULL);
        return;
    }
    switch (m->kind) {
    case M_PRODUCE: do_produce(c); return;
    case M_FETCH: do_fetch(c); return;
    case M_QUERY: do_query(c); return;
    case M_UNARY: {
        ProtobufCMessage *resp = NULL;
        c->arena.principal = c->principal;
        if (m->fn(s->hd, c->req, &c->arena, &resp, &st) != 0) {
            respond(c, &st, NULL);
        } else {
            rn_authz_filter(rn_hd_opts(s->hd)->acl, c->principal, m->name, resp);
            respond_ok(c, resp);
        }
        return;
    }
    }
}

static void request_call(rn_server_t *s, size_t mi)
{
    scall_t *c = calloc(1, sizeof *c);
    if (!c) {
        rn_slog(RN_SLOG_ERROR, "out of memory asking for calls");
        return;
    }
    c->tag = TAG_CALL;
    c->s = s;
    c->mi = mi;
    c->state = C_REQUESTED;
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->md);
    grpc_call_details_init(&c->cd);
    grpc_call_error e = mi == GENERIC
        ? grpc_server_request_call(s->server, &c->call, &c->cd, &c->md, s->cq, s->cq, c)
        : grpc_server_request_registered_call(s->server, s->handles[mi], &c->call, &c->deadline,
                                              &c->md, &c->payload, s->cq, s->cq, c);
    if (e != GRPC_CALL_OK) {
        rn_slog(RN_SLOG_ERROR, "cannot ask for %s calls: %s", method_name(c),
                grpc_call_error_to_string(e));
        call_free(c);
    }
}

static void *cq_main(void *arg)
{
    rn_server_t *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        if (ev.tag == &s->shutdown_tag) {
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_mutex_unlock(&s->mu);
            maybe_stopped(s);
            continue;
        }
        if (*(const tagkind_t *)ev.tag == TAG_CLOSE) {
            stream_closed(ev.tag, ev.success);
            continue;
        }
        scall_t *c = ev.tag;
        switch (c->state) {
        case C_REQUESTED: {
            if (!ev.success) { call_free(c); break; }     /* the server is shutting down */
            pthread_mutex_lock(&s->mu);
            int stopping = s->stopping;
            s->active++;
            rn_metrics_gauge(RN_MG_GRPC_CALLS, 1);
            pthread_mutex_unlock(&s->mu);
            c->state = C_RUNNING;
            if (!stopping) request_call(s, c->mi);
            handle(c);
            break;
        }
        case C_WAKING:
            c->state = C_RUNNING;
            do_fetch(c);
            break;
        case C_STREAMING:
            stream_sent(c, ev.success);
            break;
        case C_SENDING:
            if (c->ss) stream_unref(c);
            else call_free(c);
            break;
        default:
            rn_slog(RN_SLOG_ERROR, "internal: event for a call in state %d", (int)c->state);
            break;
        }
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

int rn_server_start(rn_hd_t *h, const rn_server_opts_t *o, rn_server_t **out, int *port,
                    char *errmsg)
{
    *out = NULL;
    rn_server_t *s = calloc(1, sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    s->hd = h;
    rn_hd_set_waker(h, waker, s);      /* a cluster queue's high watermark moved */
    s->o = *o;
    s->armed = -1;
    s->nthreads = o->threads < 1 ? 1 : o->threads > MAX_THREADS ? MAX_THREADS : o->threads;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->lot_mu, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wcv, NULL);
    pthread_cond_init(&s->workers_cv, NULL);
    pthread_once(&grpc_once, grpc_init_once);      /* invariant 6 */
    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = MAX_MESSAGE;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = MAX_MESSAGE;
    /* gRPC sets SO_REUSEPORT by default: a second broker would then share
     * the port (and split the calls) instead of failing to start. */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args ca = {3, args};
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!rn_authz_known(method_table[i].name))
            rn_slog(RN_SLOG_ERROR, "internal: %s has no ACL rule (server/authz.c); only super "
                    "users may call it", method_table[i].name);
        snprintf(s->paths[i], sizeof s->paths[i], "/runnel.v1.Runnel/%s", method_table[i].name);
        s->handles[i] = grpc_server_register_method(s->server, s->paths[i], NULL,
                                                    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    }
    grpc_server_credentials *cred;
    if (o->tls_cert) {                  /* invariant 12 */
        grpc_ssl_pem_key_cert_pair pair = {o->tls_key, o->tls_cert};
        cred = grpc_ssl_server_credentials_create_ex(
            o->tls_client_ca, &pair, 1,
            o->tls_client_ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, NULL);
    } else {
        cred = grpc_insecure_server_credentials_create();
    }
    int bound = grpc_server_add_http2_port(s->server, o->listen, cred);
    grpc_server_credentials_release(cred);
    if (bound <= 0) {
        grpc_server_destroy(s->server);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN) {}
        grpc_completion_queue_destroy(s->cq);
        free(s);
        return rn_errf(errmsg, -EADDRINUSE, "cannot listen on %s (address in use, or not a "
                       "local address%s)", o->listen,
                       o->tls_cert ? ", or gRPC refused the TLS certificate and key" : "");
    }
    *port = bound;
    grpc_server_start(s->server);
    pthread_create(&s->wthread, NULL, waiter_main, s);
    for (size_t i = 0; i < NMETHODS; i++)
        for (int k = 0; k < method_table[i].slots; k++) request_call(s, i);
    request_call(s, GENERIC);
    for (int i = 0; i < s->nthreads; i++) pthread_create(&s->threads[i], NULL, cq_main, s);
    *out = s;
    return 0;
}

void rn_server_shutdown(rn_server_t *s)
{
    pthread_mutex_lock(&s->mu);
    int first = !s->stopping;
    s->stopping = 1;
    pthread_mutex_unlock(&s->mu);
    if (!first) return;
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    wake_where(s, NULL, -1, 1);
    /* Running queries end now (invariant 8); s->mu before a stream's mu. */
    pthread_mutex_lock(&s->mu);
    for (sstream_t *ss = s->streams; ss; ss = ss->next) stream_stop(ss, STOP_SHUTDOWN);
    pthread_mutex_unlock(&s->mu);
}

void rn_server_cancel_all(rn_server_t *s)
{
    grpc_server_cancel_all_calls(s->server);
}

/* Occurrences of key in the JSON text j, and the largest number that
 * follows one as a string ("key":"123"). */
static int64_t json_count(const char *j, const char *key, intptr_t *max_id)
{
    int64_t n = 0;
    size_t kl = strlen(key);
    for (const char *p = strstr(j, key); p; p = strstr(p + kl, key)) {
        n++;
        const char *v = p + kl;
        while (*v == '"' || *v == ':' || *v == ' ') v++;
        intptr_t id = (intptr_t)strtoll(v, NULL, 10);
        if (max_id && id > *max_id) *max_id = id;
    }
    return n;
}

int64_t rn_server_connections(void *unused)
{
    (void)unused;
    char *servers = grpc_channelz_get_servers(0);
    if (!servers) return -1;
    int64_t total = 0;
    int ok = strstr(servers, "\"server\"") != NULL || strstr(servers, "\"end\"") != NULL;
    /* Each server's id follows "serverId"; its sockets, a page at a time. */
    const char *key = "\"serverId\"";
    for (const char *p = strstr(servers, key); p && ok; p = strstr(p + 1, key)) {
        const char *v = p + strlen(key);
        while (*v == '"' || *v == ':' || *v == ' ') v++;
        intptr_t sid = (intptr_t)strtoll(v, NULL, 10);
        intptr_t start = 0;
        for (int page = 0; page < 1000; page++) {
            char *socks = grpc_channelz_get_server_sockets(sid, start, 100);
            if (!socks) { ok = 0; break; }
            intptr_t last = start - 1;
            total += json_count(socks, "\"socketId\"", &last);
            int end = strstr(socks, "\"end\":true") != NULL || last < start;
            gpr_free(socks);
            if (end) break;
            start = last + 1;
        }
    }
    gpr_free(servers);
    return ok ? total : -1;
}

void rn_server_stats(rn_server_t *s, rn_server_stats_t *out)
{
    out->calls = atomic_load(&s->calls);
    out->errors = atomic_load(&s->errors);
}

void rn_server_destroy(rn_server_t *s)
{
    if (!s) return;
    rn_hd_set_waker(s->hd, NULL, NULL);
    for (int i = 0; i < s->nthreads; i++) pthread_join(s->threads[i], NULL);
    pthread_mutex_lock(&s->mu);                    /* invariant 8 */
    while (s->workers) pthread_cond_wait(&s->workers_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->wmu);
    s->wstop = 1;
    pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
    pthread_join(s->wthread, NULL);
    grpc_server_destroy(s->server);
    grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->lot_mu);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcv);
    pthread_cond_destroy(&s->workers_cv);
    free(s);
}

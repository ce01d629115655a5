/*
 * producer.c — librunnel's batching producer: one accumulator (a batch
 * builder) per queue of one topic, a sender thread that seals and sends
 * batches, and delivery callbacks with each record's offset.
 *
 * A record's path:
 *   send()      encodes it into its queue's builder (the caller's memory is
 *               free again on return) and counts its bound against
 *               max_memory; a full builder is sealed at once.
 *   seal        finishes the batch (LZ4 when asked; remote: producer id,
 *               epoch and the queue's next base sequence in the header),
 *               copies it out and queues it on its queue's sealed list;
 *               the sender also seals a builder linger_ms after its first
 *               record, and every builder during a flush or while a send
 *               waits for memory.
 *   sender      takes a queue with sealed batches and no request in flight
 *               (ready ring), packs its sealed batches (up to request_bytes)
 *               into one request and dispatches it, while fewer than
 *               max_in_flight requests are out:
 *                 embedded  rn_datadir_append per batch, then the acker
 *                           thread waits on the tickets in order;
 *                 remote    an asynchronous Produce (rn_rpc_call_async).
 *   complete    runs each record's callback with base offset + index (or
 *               the error), releases the memory and frees the queue for its
 *               next request.
 *
 * Invariants:
 *  1. At most one request per queue is in flight (or waiting to be resent),
 *     so a queue's batches are stored in the order they were sealed and the
 *     broker never sees a sequence gap.
 *  2. Remote retries resend the same request — same batch bytes, same
 *     producer id, epoch and base sequences, at most 5 batches (the broker's
 *     dedupe window per producer and queue) — for transport failures only
 *     (rn_rpc_retriable: the broker is down, restarting, or the answer was
 *     lost), after a backoff of retry_backoff_ms doubling per resend to
 *     retry_backoff_max_ms, jittered, at most `retries` times, and only
 *     while the request's oldest record is younger than delivery_timeout_ms
 *     (each attempt's deadline is cut to what is left of it). The broker
 *     acknowledges a batch it already stored with its original base offset,
 *     also after a restart (it rebuilds each queue's producer state from the
 *     log's tail, and the producer registry is durable), so a retry is
 *     stored exactly once. The producer id and epoch are never renewed: a
 *     reconnect is a resend on the same channel.
 *  3. Memory: the bounds of records accepted and not yet completed never
 *     pass max_memory, except that one record is always admitted when
 *     nothing is buffered. (A completion gives the memory back just before
 *     its callbacks run: invariant 7.)
 *  4. Every accepted record gets exactly one callback. After the first
 *     delivery failure the producer is failed: later sends return that
 *     error, and batches not yet sent are completed with it unsent.
 *  5. States: open → (flush)* → closing → freed. close = flush, then the
 *     threads stop; nothing is in flight when the memory is freed.
 *  6. Sequences wrap modulo 2^31 (Kafka's rule, which the broker applies
 *     too): after 2^31 - 1 comes 0, never a negative sequence.
 *  7. A completion gives back its memory (the cap's accounting and the batch
 *     bytes) before it runs the callbacks, so a callback's send finds the
 *     room its own records left. A send from a delivery callback never
 *     waits for memory (it would wait for the very thread it runs on): over
 *     the cap it is refused with RN_EFULL saying so.
 *  9. Cluster (a client opened with a bootstrap list, client.c invariant
 *     5): each request goes to its queue's leader (rn_client_rpc_for).
 *     A producer of a replicated topic does not take its id from one
 *     node's registry (each node issues 1, 2, ... of its own, and the
 *     others do not know them): it draws a random id in [2^52, 2^53) with
 *     epoch 0, and the leaders check its sequences against the producer
 *     state each rebuilds from the queue's replicated log (two producers
 *     drawing the same id: about n^2 / 2^53; epoch fencing of a zombie
 *     instance is absent there). A node that answers "unknown producer
 *     id" to such an id, or "unknown topic" for a replicated topic, does
 *     not know the topic as replicated yet (it has just started): retried
 *     like NOT_LEADER.
 *     NOT_LEADER, "no leader" and too few in-sync replicas (both refused
 *     with nothing stored), and transport failures are retried as in
 *     invariant 2 — the same request, producer id, epoch and sequences —
 *     with the backoff capped at CLUSTER_BACKOFF_MAX_MS, and before the
 *     resend the leaders are asked for again (rn_client_reroute) when it
 *     may have moved. A batch the old leader stored but did not acknowledge
 *     is, on the new leader, either in the log (copied before the
 *     failover: the new leader rebuilds its producer state from its log
 *     and answers it as a duplicate with its offset) or not (then stored
 *     once there, and the old leader cuts its copy when it rejoins).
 *  8. Outcomes are per batch: when the broker stored a request's leading
 *     batches and then failed (it says so in the RN_RPC_PARTIAL_TRAILER of
 *     its error), those batches are delivered with their offsets and only
 *     the rest fail; embedded, the batches appended and acknowledged before
 *     a failure are delivered likewise.
 */
#include "client/client_int.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define KEEP_BUILDERS 16     /* more queues than this: a builder is freed after each seal */
/* The broker remembers a producer's last 5 batches per queue (proto: InitProducer);
 * a request carries at most that many, so all of a resent request is recognised. */
#define REQUEST_MAX_BATCHES 5
/* In a cluster a retry waits at most this long (invariant 9): a leader moves
 * in about 1.5 s, and a producer should be there within a retry of it. */
#define CLUSTER_BACKOFF_MAX_MS 200

int (*rn_client_test_hook)(const char *point);

typedef struct pcb {
    rn_delivery_fn cb;
    void          *arg;
    int64_t        ts;
} pcb_t;

typedef struct pbatch {
    struct pbatch *next;
    uint8_t       *bytes;
    size_t         len;
    uint32_t       count;
    pcb_t         *cbs;
    size_t         mem;          /* accounted bytes */
    int64_t        base;         /* base offset, once acknowledged */
    uint64_t       born_ns;      /* when its first record was accepted */
    uint64_t       ticket;       /* embedded */
} pbatch_t;

typedef struct preq preq_t;
struct preq {
    preq_t        *next;         /* acker FIFO or retry list */
    uint32_t       queue;
    pbatch_t      *head;
    size_t         n;
    size_t         appended;     /* embedded: batches appended */
    uint32_t       attempts;
    int            maybe_stored; /* an attempt may have reached the broker, unanswered */
    int            reroute;      /* ask for the queue's leader before the next attempt */
    uint64_t       retry_at;
    int            rc;
    char           err[RN_ERRMSG_SIZE];
    ProtobufCBinaryData        *bins;
    Runnel__V1__ProduceRequest  msg;
    rn_producer_t *p;
};

typedef struct pqueue {
    rn_batch_builder_t b;
    int                building;
    pcb_t             *cbs;              /* callbacks of the builder's records */
    size_t             ncbs, capcbs;
    size_t             mem;
    uint64_t           deadline_ns;
    uint64_t           first_ns;         /* when the builder took its first record */
    size_t             pending_at;       /* index in p->pending while the builder holds records */
    pbatch_t          *sealed, *sealed_tail;
    int                in_ready;
    int                busy;             /* a request in flight or waiting for a retry */
    int32_t            seq;              /* next base sequence, 0..2^31-1 (invariant 6) */
    rn_datadir_queue_t qh;               /* embedded, used by the sender thread only */
    int                qh_open;
    pbatch_t          *spare;            /* the next sealed batch, allocated up front */
} pqueue_t;

struct rn_producer {
    rn_client_t        *c;
    char                topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t            nqueues;
    rn_producer_opts_t  o;
    rn_batch_opts_t     bopts;
    pqueue_t           *qs;
    uint32_t           *pending;          /* queues whose builder holds records */
    size_t              npending;
    uint32_t           *ready;            /* ring of queues with sealed batches, not busy */
    size_t              ready_head, ready_len;
    uint32_t            rr;
    pthread_mutex_t     mu;
    pthread_cond_t      work;             /* the sender: something to do */
    pthread_cond_t      space;            /* memory freed, records delivered */
    pthread_cond_t      ackq;             /* the acker: a request to wait for */
    size_t              mem;
    uint64_t            outstanding;      /* records accepted, not yet delivered */
    uint32_t            inflight;
    int                 flushers, mem_waiters;
    int                 closing;
    int                 failed;
    char                failmsg[RN_ERRMSG_SIZE];
    preq_t             *ack_head, *ack_tail;
    preq_t             *retries;
    pthread_t           sender, acker;
    int                 sender_started, acker_started;
    rn_producer_stats_t st;
    uint64_t            rng;              /* retry jitter (sender and completion threads, mu) */
};

void rn_producer_opts_default(rn_producer_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->linger_ms = 5;
    o->batch_bytes = 64u << 10;
    o->codec = RN_BATCH_CODEC_NONE;
    o->max_in_flight = 16;
    o->max_memory = 64u << 20;
    o->block = 1;
    o->acks = RN_ACKS_DURABLE;
    o->delivery_timeout_ms = 120000;
    o->retries = UINT32_MAX;
    o->retry_backoff_ms = 50;
    o->retry_backoff_max_ms = 2000;
    o->request_timeout_ms = 30000;
    o->request_bytes = 1u << 20;
}

uint32_t rn_producer_queues(const rn_producer_t *p) { return p->nqueues; }

static void timespec_at(struct timespec *ts, uint64_t mono_ns)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000u);
    ts->tv_nsec = (long)(mono_ns % 1000000000u);
}

/* Invariant 6: the sequence after count records from seq, modulo 2^31. */
static int32_t seq_after(int32_t seq, uint32_t count)
{
    return (int32_t)(((int64_t)seq + count) % ((int64_t)1 << 31));
}

/* Set while this thread runs delivery callbacks (invariant 3). */
static __thread int in_callbacks;

/* ---- Accumulators (mutex held) ------------------------------------------- */

static void ready_push(rn_producer_t *p, uint32_t qi)
{
    pqueue_t *q = &p->qs[qi];
    if (q->in_ready || q->busy || !q->sealed) return;
    p->ready[(p->ready_head + p->ready_len) % p->nqueues] = qi;
    p->ready_len++;
    q->in_ready = 1;
}

static void pending_remove(rn_producer_t *p, uint32_t qi)
{
    size_t at = p->qs[qi].pending_at;
    uint32_t last = p->pending[--p->npending];
    p->pending[at] = last;
    p->qs[last].pending_at = at;
}

/* The first delivery failure makes the producer failed (invariant 4). */
static void set_failed(rn_producer_t *p, int rc, const char *msg)
{
    if (p->failed) return;
    p->failed = rc;
    size_t n = strnlen(msg, sizeof p->failmsg - 1);     /* truncated to one errmsg */
    memcpy(p->failmsg, msg, n);
    p->failmsg[n] = '\0';
}

/* Seal queue qi's builder, which holds records, onto its sealed list. The
 * batch struct was allocated when the builder took its first record (q->spare),
 * so sealing always moves the records on: when finishing fails, the batch
 * goes on without bytes and the producer is failed, so the sender completes
 * it with the error (invariant 4). */
static int seal(rn_producer_t *p, uint32_t qi)
{
    pqueue_t *q = &p->qs[qi];
    pbatch_t *b = q->spare;
    const uint8_t *bytes;
    size_t len;
    q->spare = NULL;
    q->b.opts.base_sequence = p->bopts.producer_id >= 0 ? q->seq : -1;
    int rc = rn_batch_builder_finish(&q->b, &bytes, &len);
    if (rc == 0 && !(b->bytes = malloc(len))) rc = -ENOMEM;
    if (rc == 0) {
        memcpy(b->bytes, bytes, len);
        b->len = len;
    } else {
        char msg[RN_ERRMSG_SIZE + RN_META_TOPIC_NAME_MAX];
        snprintf(msg, sizeof msg, "topic '%s' queue %u: building a batch failed: %s", p->topic,
                 qi, rn_strerror(rc));
        set_failed(p, rc, msg);
    }
    b->count = (uint32_t)q->ncbs;
    b->born_ns = q->first_ns;
    b->cbs = q->cbs;
    b->mem = q->mem;
    q->cbs = NULL;
    q->ncbs = q->capcbs = 0;
    q->mem = 0;
    q->seq = seq_after(q->seq, b->count);
    if (p->nqueues > KEEP_BUILDERS) {
        /* Topics with many queues: only queues with records hold builder memory. */
        rn_batch_builder_destroy(&q->b);
        q->building = 0;
    } else {
        rn_batch_builder_reset(&q->b);
    }
    if (q->sealed_tail) q->sealed_tail->next = b;
    else q->sealed = b;
    q->sealed_tail = b;
    pending_remove(p, qi);
    if (qi == p->rr) p->rr = (p->rr + 1) % p->nqueues;
    ready_push(p, qi);
    return rc;
}

/* ---- Completion ------------------------------------------------------------ */

static void free_batches(pbatch_t *b)
{
    while (b) {
        pbatch_t *next = b->next;
        free(b->bytes);
        free(b->cbs);
        free(b);
        b = next;
    }
}

/* Deliver the outcome of req's first `ok` batches (acknowledged, b->base set)
 * and fail the rest with rc/err; then free the queue for its next request. */
static void complete(rn_producer_t *p, preq_t *req, size_t ok, int rc, const char *err)
{
    /* The outcome of a failed batch is unknown when an attempt of its
     * request may have reached the broker and no answer came back: it may
     * have been stored (rn_rpc_retriable, not rn_rpc_unreached). */
    int unknown = rc != 0 && req->maybe_stored;
    char msg[RN_ERRMSG_SIZE + RN_META_TOPIC_NAME_MAX + 64] = "";
    if (rc != 0)
        snprintf(msg, sizeof msg, "topic '%s' queue %u: %s", p->topic, req->queue,
                 err && *err ? err : rn_strerror(rc));
    uint64_t recs_ok = 0, batches_ok = 0, bytes_ok = 0, recs_failed = 0, records = 0;
    size_t mem = 0, i = 0;
    /* Invariant 7: the memory first, then the callbacks. */
    for (pbatch_t *b = req->head; b; b = b->next) {
        mem += b->mem;
        free(b->bytes);
        b->bytes = NULL;
    }
    free(req->bins);
    req->bins = NULL;
    pthread_mutex_lock(&p->mu);
    p->mem -= mem;
    pthread_cond_broadcast(&p->space);
    pthread_mutex_unlock(&p->mu);
    in_callbacks++;
    for (pbatch_t *b = req->head; b; b = b->next, i++) {
        int brc = i < ok ? 0 : (rc ? rc : RN_ECLOSED);
        rn_delivery_t d = {.rc = brc, .errmsg = brc ? msg : "", .topic = p->topic,
                           .queue = req->queue};
        for (uint32_t k = 0; k < b->count; k++) {
            if (!b->cbs[k].cb) continue;
            d.offset = brc ? -1 : b->base + (int64_t)k;
            d.timestamp = b->cbs[k].ts;
            b->cbs[k].cb(b->cbs[k].arg, &d);
        }
        if (brc == 0) { recs_ok += b->count; batches_ok++; bytes_ok += b->len; }
        else recs_failed += b->count;
        records += b->count;
    }
    in_callbacks--;
    free_batches(req->head);
    req->head = NULL;
    uint32_t qi = req->queue;
    int was_sent = req->attempts > 0;
    free(req);
    pthread_mutex_lock(&p->mu);
    if (rc != 0) set_failed(p, rc, msg);
    p->st.records += recs_ok;
    p->st.batches += batches_ok;
    p->st.bytes += bytes_ok;
    p->st.failed += recs_failed;
    if (unknown) p->st.unknown += recs_failed;
    p->outstanding -= records;
    if (was_sent) p->inflight--;
    p->qs[qi].busy = 0;
    ready_push(p, qi);
    pthread_cond_signal(&p->work);
    pthread_cond_broadcast(&p->space);
    pthread_mutex_unlock(&p->mu);
}

/* ---- Remote requests ----------------------------------------------------------- */

/* When req's oldest record times out (invariant 2); UINT64_MAX: never. */
static uint64_t delivery_deadline(const rn_producer_t *p, const preq_t *req)
{
    if (!p->o.delivery_timeout_ms) return UINT64_MAX;
    return req->head->born_ns + (uint64_t)p->o.delivery_timeout_ms * 1000000u;
}

static void dispatch_remote(rn_producer_t *p, preq_t *req);

static void produce_done(void *arg, int rc, ProtobufCMessage *resp, int status, const char *errmsg)
{
    preq_t *req = arg;
    rn_producer_t *p = req->p;
    char err[RN_ERRMSG_SIZE] = "";
    Runnel__V1__ProduceResponse *r = (Runnel__V1__ProduceResponse *)resp;
    if (rc != 0) snprintf(err, sizeof err, "%s", errmsg ? errmsg : "");
    if (rc == 0 && rn_client_test_hook && rn_client_test_hook("produce:response")) {
        rc = -ETIMEDOUT;
        snprintf(err, sizeof err, "injected failure after the broker answered (produce:response)");
    }
    if (rc == 0 && r->n_base_offsets != req->n) {
        rc = -EPROTO;
        snprintf(err, sizeof err, "the broker acknowledged %zu batches of %zu", r->n_base_offsets,
                 req->n);
    }
    if (rc == 0) {
        size_t i = 0;
        uint64_t dups = 0;
        for (pbatch_t *b = req->head; b; b = b->next, i++) {
            b->base = r->base_offsets[i];
            if (i < r->n_duplicates && r->duplicates[i]) dups++;
        }
        rn_client_free_msg(resp);
        pthread_mutex_lock(&p->mu);
        p->st.duplicates += dups;
        pthread_mutex_unlock(&p->mu);
        complete(p, req, req->n, 0, NULL);
        return;
    }
    if (r && r->n_base_offsets > 0 && r->n_base_offsets < req->n) {
        /* Invariant 8: the broker stored the leading batches before it failed. */
        size_t k = r->n_base_offsets, i = 0;
        for (pbatch_t *b = req->head; b && i < k; b = b->next, i++) b->base = r->base_offsets[i];
        rn_client_free_msg(resp);
        complete(p, req, k, rc, err);
        return;
    }
    rn_client_free_msg(resp);
    (void)status;
    if (rn_rpc_retriable(rc) && !rn_rpc_unreached(rc, err)) req->maybe_stored = 1;
    /* Invariant 9: a cluster's NOT_LEADER, no leader, too few in-sync
     * replicas, or a dead node: the same request again, to the leader. */
    int moved = 0, cluster = p->c->bootstrap != NULL;
    int transient = rn_rpc_retriable(rc) ||
                    (cluster && rn_client_cluster_transient(rc, err, &moved));
    if (cluster && rn_rpc_retriable(rc)) moved = 1;
    if (cluster && !transient && ((rc == RN_ESTICKY && strstr(err, "unknown producer id") &&
                                   p->bopts.producer_id >= (int64_t)1 << 52) ||
                                  (rc == RN_ENOTFOUND && rn_client_replicated(p->c, p->topic))))
        transient = moved = 1;      /* a node just started, before it knows the topic */
    pthread_mutex_lock(&p->mu);
    uint64_t now = rn_mono_ns(), deadline = delivery_deadline(p, req);
    uint32_t max_ms = cluster && p->o.retry_backoff_max_ms > CLUSTER_BACKOFF_MAX_MS
                    ? CLUSTER_BACKOFF_MAX_MS : p->o.retry_backoff_max_ms;
    uint64_t wait = (uint64_t)rn_rpc_backoff_ms(p->o.retry_backoff_ms, max_ms,
                                                req->attempts, &p->rng) * 1000000u;
    if (transient && (p->o.retries == UINT32_MAX || req->attempts <= p->o.retries) &&
        now < deadline) {
        req->reroute = moved;
        /* Invariant 2: the same request again, later; the queue stays busy.
         * The last try is at the deadline, so a record fails only after it. */
        req->retry_at = now + wait < deadline ? now + wait : deadline;
        req->next = p->retries;
        p->retries = req;
        p->inflight--;
        p->st.retries++;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    pthread_mutex_unlock(&p->mu);
    char why[2 * RN_ERRMSG_SIZE];
    if (transient && now >= deadline)
        snprintf(why, sizeof why, "not acknowledged within delivery_timeout_ms %u (%u attempts; "
                 "the last: %s)", p->o.delivery_timeout_ms, req->attempts, err);
    else
        snprintf(why, sizeof why, "%s", err);
    complete(p, req, 0, rc, why);
}

static void dispatch_remote(rn_producer_t *p, preq_t *req)
{
    char err[RN_ERRMSG_SIZE] = "";
    req->attempts++;
    /* Invariant 2: an attempt ends by the delivery deadline. */
    uint32_t timeout_ms = p->o.request_timeout_ms;
    uint64_t now = rn_mono_ns(), deadline = delivery_deadline(p, req);
    if (deadline != UINT64_MAX) {
        uint64_t left_ms = deadline > now ? (deadline - now) / 1000000u : 0;
        if (left_ms < 1) left_ms = 1;
        if (!timeout_ms || left_ms < timeout_ms) timeout_ms = (uint32_t)left_ms;
    }
    if (req->reroute) {             /* invariant 9: the sender thread, no lock held */
        req->reroute = 0;
        rn_client_reroute(p->c);
    }
    int rc = rn_rpc_call_async(rn_client_rpc_for(p->c, p->topic, req->queue),
                               RN_RPC_METHOD("Produce"), &req->msg.base,
                               &runnel__v1__produce_response__descriptor,
                               timeout_ms, produce_done, req, err);
    if (rc != 0) produce_done(req, rc, NULL, 0, err);
}

/* ---- Embedded requests ---------------------------------------------------------- */

static void dispatch_data(rn_producer_t *p, preq_t *req)
{
    pqueue_t *q = &p->qs[req->queue];
    req->attempts++;
    req->rc = 0;
    if (!q->qh_open) {
        req->rc = rn_datadir_queue_open(p->c->d, p->topic, req->queue, &q->qh, req->err);
        q->qh_open = req->rc == 0;
    }
    for (pbatch_t *b = req->head; b && req->rc == 0; b = b->next) {
        req->rc = rn_datadir_append(p->c->d, &q->qh, b->bytes, b->len, &b->base, &b->ticket,
                                    req->err);
        if (req->rc == 0) req->appended++;
    }
    pthread_mutex_lock(&p->mu);
    if (p->ack_tail) p->ack_tail->next = req;
    else p->ack_head = req;
    p->ack_tail = req;
    pthread_cond_signal(&p->ackq);
    pthread_mutex_unlock(&p->mu);
}

/* Waits for the tickets of appended batches, in order, and completes. */
static void *acker_main(void *arg)
{
    rn_producer_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->ack_head && !p->closing) pthread_cond_wait(&p->ackq, &p->mu);
        preq_t *req = p->ack_head;
        if (!req) break;
        p->ack_head = req->next;
        if (!p->ack_head) p->ack_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        size_t ok = 0;
        int rc = req->rc;
        char err[RN_ERRMSG_SIZE];
        snprintf(err, sizeof err, "%s", req->err);
        for (pbatch_t *b = req->head; b && ok < req->appended; b = b->next) {
            int wrc = rn_datadir_wait(p->c->d, b->ticket);
            if (wrc != 0) {
                rc = wrc;
                snprintf(err, sizeof err, "a batch was not acknowledged (%s)", rn_strerror(wrc));
                break;
            }
            ok++;
        }
        complete(p, req, ok, ok == req->n ? 0 : rc, err);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- The sender ------------------------------------------------------------------ */

/* A request of queue qi's sealed batches, up to request_bytes (mutex held). */
static preq_t *take_request(rn_producer_t *p, uint32_t qi)
{
    pqueue_t *q = &p->qs[qi];
    preq_t *req = calloc(1, sizeof *req);
    if (!req) return NULL;
    req->p = p;
    req->queue = qi;
    size_t bytes = 0;
    pbatch_t *last = NULL;
    for (pbatch_t *b = q->sealed; b; b = b->next) {
        if (req->n > 0 && (bytes + b->len > p->o.request_bytes || req->n == REQUEST_MAX_BATCHES))
            break;
        bytes += b->len;
        req->n++;
        last = b;
    }
    req->head = q->sealed;
    q->sealed = last->next;
    if (!q->sealed) q->sealed_tail = NULL;
    last->next = NULL;
    if (p->c->remote) {
        req->bins = calloc(req->n, sizeof *req->bins);
        if (!req->bins) {
            /* Put the batches back; the caller retries later. */
            last->next = q->sealed;
            q->sealed = req->head;
            if (!q->sealed_tail) q->sealed_tail = last;
            free(req);
            return NULL;
        }
        size_t i = 0;
        for (pbatch_t *b = req->head; b; b = b->next, i++) {
            req->bins[i].data = b->bytes;
            req->bins[i].len = b->len;
        }
        runnel__v1__produce_request__init(&req->msg);
        req->msg.topic = p->topic;
        req->msg.queue = qi;
        req->msg.n_batches = req->n;
        req->msg.batches = req->bins;
        req->msg.acks = p->o.acks == RN_ACKS_WRITTEN ? RUNNEL__V1__ACKS__ACKS_WRITTEN
                                                     : RUNNEL__V1__ACKS__ACKS_DURABLE;
    }
    q->busy = 1;
    return req;
}

static void *sender_main(void *arg)
{
    rn_producer_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        uint64_t now = rn_mono_ns(), wake = UINT64_MAX;
        int urgent = p->flushers > 0 || p->mem_waiters > 0 || p->closing;
        for (size_t i = p->npending; i-- > 0;) {
            uint32_t qi = p->pending[i];
            if (urgent || p->qs[qi].deadline_ns <= now) seal(p, qi);
            else if (p->qs[qi].deadline_ns < wake) wake = p->qs[qi].deadline_ns;
        }
        /* Resends first: their queues are busy until they are answered. */
        preq_t *due = NULL;
        for (preq_t **pp = &p->retries; *pp;) {
            preq_t *r = *pp;
            if (r->retry_at <= now && p->inflight < p->o.max_in_flight) {
                *pp = r->next;
                r->next = due;
                due = r;
                p->inflight++;
            } else {
                if (r->retry_at < wake) wake = r->retry_at;
                pp = &r->next;
            }
        }
        if (due) {
            pthread_mutex_unlock(&p->mu);
            while (due) {
                preq_t *next = due->next;
                due->next = NULL;
                dispatch_remote(p, due);
                due = next;
            }
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->ready_len && (p->failed || p->inflight < p->o.max_in_flight)) {
            uint32_t qi = p->ready[p->ready_head];
            p->ready_head = (p->ready_head + 1) % p->nqueues;
            p->ready_len--;
            p->qs[qi].in_ready = 0;
            preq_t *req = take_request(p, qi);
            if (!req) {
                set_failed(p, -ENOMEM, "out of memory building a request");
                ready_push(p, qi);
                continue;
            }
            if (p->failed) {
                /* Invariant 4: not sent, completed with the failure. */
                char msg[RN_ERRMSG_SIZE + 64];
                int rc = p->failed;
                snprintf(msg, sizeof msg, "not sent after an earlier failure: %s", p->failmsg);
                pthread_mutex_unlock(&p->mu);
                complete(p, req, 0, rc, msg);
                pthread_mutex_lock(&p->mu);
                continue;
            }
            p->inflight++;
            pthread_mutex_unlock(&p->mu);
            if (p->c->remote) dispatch_remote(p, req);
            else dispatch_data(p, req);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->closing && p->outstanding == 0) break;
        if (wake == UINT64_MAX) {
            pthread_cond_wait(&p->work, &p->mu);
        } else {
            struct timespec ts;
            timespec_at(&ts, wake);
            pthread_cond_timedwait(&p->work, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- Public ----------------------------------------------------------------------- */

/* Invariant 9: a producer id no other producer of the cluster holds, in
 * [2^52, 2^53) (a broker's registry issues ids from 1 up), epoch 0. */
static int cluster_producer_id(rn_producer_t *p)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = rn_mono_ns() ^ ((uint64_t)(uintptr_t)p << 16) ^ (uint64_t)getpid() << 40;
    p->bopts.producer_id = (int64_t)((1ull << 52) | (r & ((1ull << 52) - 1)));
    p->bopts.producer_epoch = 0;
    return 0;
}

static int init_producer_id(rn_producer_t *p, char *errmsg)
{
    if (rn_client_replicated(p->c, p->topic)) return cluster_producer_id(p);
    Runnel__V1__InitProducerRequest req = RUNNEL__V1__INIT_PRODUCER_REQUEST__INIT;
    Runnel__V1__InitProducerResponse *resp = NULL;
    int rc = rn_client_call(p->c, RN_RPC_METHOD("InitProducer"), &req.base,
                            &runnel__v1__init_producer_response__descriptor,
                            (ProtobufCMessage **)&resp, errmsg);
    if (rc != 0) return rc;
    p->bopts.producer_id = resp->producer_id;
    p->bopts.producer_epoch = (int16_t)resp->producer_epoch;
    rn_client_free_msg(resp);
    return 0;
}

static void producer_free(rn_producer_t *p)
{
    if (p->qs) {
        for (uint32_t i = 0; i < p->nqueues; i++) {
            pqueue_t *q = &p->qs[i];
            if (q->building) rn_batch_builder_destroy(&q->b);
            if (q->qh_open) rn_datadir_queue_close(&q->qh);
            free(q->cbs);
            free(q->spare);
            free_batches(q->sealed);
        }
    }
    free(p->qs);
    free(p->pending);
    free(p->ready);
    pthread_cond_destroy(&p->ackq);
    pthread_cond_destroy(&p->space);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int rn_producer_open(rn_client_t *c, const char *topic, const rn_producer_opts_t *o,
                     rn_producer_t **out, char *errmsg)
{
    *out = NULL;
    rn_producer_t *p = calloc(1, sizeof *p);
    if (!p) return rn_errf(errmsg, -ENOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->space, NULL);
    pthread_cond_init(&p->ackq, NULL);
    p->c = c;
    p->rng = rn_mono_ns() ^ (uint64_t)(uintptr_t)p;
    if (o) p->o = *o;
    else rn_producer_opts_default(&p->o);
    int rc = 0;
    if (p->o.batch_bytes < 128 || p->o.batch_bytes > RN_BATCH_MAX_BYTES)
        rc = rn_errf(errmsg, RN_EINVAL, "batch_bytes %u is outside 128..%u", p->o.batch_bytes,
                     RN_BATCH_MAX_BYTES);
    if (p->o.max_in_flight == 0) p->o.max_in_flight = 1;
    if (p->o.request_bytes == 0) p->o.request_bytes = 1u << 20;
    if (p->o.retry_backoff_max_ms < p->o.retry_backoff_ms)
        p->o.retry_backoff_max_ms = p->o.retry_backoff_ms;
    snprintf(p->topic, sizeof p->topic, "%s", topic);
    rn_meta_topic_t t;
    if (rc == 0) rc = rn_client_topic_get(c, topic, &t, errmsg);
    if (rc != 0) goto fail;
    p->nqueues = t.queues;
    rn_batch_opts_default(&p->bopts);
    p->bopts.max_bytes = p->o.batch_bytes;
    p->bopts.codec = p->o.codec;
    if (c->remote && (rc = init_producer_id(p, errmsg)) != 0) goto fail;
    p->qs = calloc(p->nqueues, sizeof *p->qs);
    p->pending = calloc(p->nqueues, sizeof *p->pending);
    p->ready = calloc(p->nqueues, sizeof *p->ready);
    if (!p->qs || !p->pending || !p->ready) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    if (rn_client_test_hook && rn_client_test_hook("producer:sequence-near-wrap"))
        for (uint32_t i = 0; i < p->nqueues; i++) p->qs[i].seq = INT32_MAX - 9;
    if ((rc = pthread_create(&p->sender, NULL, sender_main, p)) != 0) {
        rc = rn_errf(errmsg, -rc, "starting the producer's sender: %s", strerror(rc));
        goto fail;
    }
    p->sender_started = 1;
    if (!c->remote) {
        if ((rc = pthread_create(&p->acker, NULL, acker_main, p)) != 0) {
            rc = rn_errf(errmsg, -rc, "starting the producer's acknowledger: %s", strerror(rc));
            goto fail;
        }
        p->acker_started = 1;
    }
    *out = p;
    return 0;
fail:
    if (p->sender_started) {
        pthread_mutex_lock(&p->mu);
        p->closing = 1;
        pthread_cond_signal(&p->work);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->sender, NULL);
    }
    producer_free(p);
    return rc;
}

/* Room for one more callback in q's builder list. */
static int reserve_cb(pqueue_t *q)
{
    if (q->ncbs < q->capcbs) return 0;
    size_t cap = q->capcbs ? q->capcbs * 2 : 64;
    pcb_t *v = realloc(q->cbs, cap * sizeof *v);
    if (!v) return -ENOMEM;
    q->cbs = v;
    q->capcbs = cap;
    return 0;
}

/* q can take a record: builder initialised, a spare batch for its seal,
 * room for one more callback. */
static int builder_ready(rn_producer_t *p, pqueue_t *q)
{
    if (!q->building) {
        int rc = rn_batch_builder_init(&q->b, &p->bopts);
        if (rc != 0) return rc;
        q->building = 1;
    }
    if (!q->spare && !(q->spare = calloc(1, sizeof *q->spare))) return -ENOMEM;
    return reserve_cb(q);
}

int rn_producer_send(rn_producer_t *p, uint32_t queue, const rn_record_t *r, rn_delivery_fn cb,
                     void *arg, char *errmsg)
{
    rn_record_t rec = *r;
    if (rec.timestamp < 0) rec.timestamp = rn_sys.now_ms();
    size_t need = rn_batch_record_bound(&rec) + sizeof(pcb_t);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (queue != RN_PRODUCER_ANY_QUEUE && queue >= p->nqueues) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' has no queue %u; it has queues 0..%u",
                     p->topic, queue, p->nqueues - 1);
        goto out;
    }
    /* Invariant 3: wait (or refuse) while the cap would be passed. */
    while (!p->failed && p->mem > 0 && p->mem + need > p->o.max_memory) {
        if (!p->o.block || in_callbacks) {
            rc = rn_errf(errmsg, RN_EFULL, "topic '%s': the producer holds %zu bytes, its "
                         "memory cap is %zu%s", p->topic, p->mem, p->o.max_memory,
                         in_callbacks ? " (a send from a delivery callback cannot wait for "
                         "memory: the callback's thread is the one that frees it)" : "");
            goto out;
        }
        p->mem_waiters++;
        pthread_cond_signal(&p->work);
        pthread_cond_wait(&p->space, &p->mu);
        p->mem_waiters--;
    }
    if (p->failed) {
        rc = rn_errf(errmsg, p->failed, "%s", p->failmsg);
        goto out;
    }
    uint32_t qi = queue != RN_PRODUCER_ANY_QUEUE ? queue
                : rec.key_len >= 0 ? rn_client_partition(rec.key, (size_t)rec.key_len, p->nqueues)
                : p->rr;
    pqueue_t *q = &p->qs[qi];
    if ((rc = builder_ready(p, q)) != 0) {
        rc = rn_errf(errmsg, rc, "out of memory");
        goto out;
    }
    rc = rn_batch_builder_add(&q->b, &rec);
    if (rc == RN_EFULL) {
        if ((rc = seal(p, qi)) != 0) { rc = rn_errf(errmsg, rc, "%s", p->failmsg); goto out; }
        if (queue == RN_PRODUCER_ANY_QUEUE && rec.key_len < 0) qi = p->rr;  /* round-robin moved on */
        q = &p->qs[qi];
        if ((rc = builder_ready(p, q)) != 0) {
            rc = rn_errf(errmsg, rc, "out of memory");
            goto out;
        }
        rc = rn_batch_builder_add(&q->b, &rec);
    }
    if (rc == RN_ETOOBIG) {
        rc = rn_errf(errmsg, RN_ETOOBIG, "a record of %zu bytes does not fit in a batch of "
                     "batch_bytes %u", rn_batch_record_bound(&rec), p->o.batch_bytes);
        goto out;
    }
    if (rc != 0) { rc = rn_errf(errmsg, rc, "cannot add the record: %s", rn_strerror(rc)); goto out; }
    q->cbs[q->ncbs++] = (pcb_t){.cb = cb, .arg = arg, .ts = rec.timestamp};
    q->mem += need;
    p->mem += need;
    p->outstanding++;
    if (q->ncbs == 1) {
        q->first_ns = rn_mono_ns();
        q->deadline_ns = q->first_ns + (uint64_t)p->o.linger_ms * 1000000u;
        q->pending_at = p->npending;
        p->pending[p->npending++] = qi;
        pthread_cond_signal(&p->work);
    }
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int rn_producer_flush(rn_producer_t *p, char *errmsg)
{
    pthread_mutex_lock(&p->mu);
    p->flushers++;
    pthread_cond_signal(&p->work);
    while (p->outstanding > 0) pthread_cond_wait(&p->space, &p->mu);
    p->flushers--;
    int rc = p->failed;
    if (rc) rn_errf(errmsg, rc, "%s", p->failmsg);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void rn_producer_stats(rn_producer_t *p, rn_producer_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->st;
    pthread_mutex_unlock(&p->mu);
}

int rn_producer_close(rn_producer_t *p, char *errmsg)
{
    if (!p) return 0;
    int rc = rn_producer_flush(p, errmsg);
    pthread_mutex_lock(&p->mu);
    p->closing = 1;
    pthread_cond_signal(&p->work);
    pthread_cond_signal(&p->ackq);
    pthread_mutex_unlock(&p->mu);
    if (p->sender_started) pthread_join(p->sender, NULL);
    if (p->acker_started) pthread_join(p->acker, NULL);
    producer_free(p);
    return rc;
}

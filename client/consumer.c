/*
 * consumer.c — librunnel's consumer: assign (topic, queue, offset), seek,
 * poll decoded batches, position, watermarks, commit. Embedded it is
 * logical-queues/consumer.h itself; remote it fetches over gRPC with the same
 * order and the same views.
 *
 * Remote design. Each assigned queue keeps a position (next offset poll
 * returns), a fetch offset (next offset to ask for), at most one Fetch in
 * flight (rn_rpc_call_async) and a list of answers not yet decoded. poll
 * decodes one batch from the first queue, in round-robin order after the one
 * served last, that has an answer buffered; while it decodes, the next Fetch
 * of that queue is already out (prefetch), so network and decoding overlap.
 * When nothing is buffered it sends a Fetch for every queue without one,
 * with max_wait_ms = the time left of the poll's timeout (the broker holds a
 * Fetch at the high watermark until data arrives or that time passes: long
 * polling), and waits for the first answer.
 *
 * Invariants:
 *  1. Records come out in offset order per queue, dense, from exactly the
 *     position: records of a fetched batch below it are skipped, records at or
 *     past the queue's end are never returned.
 *  2. Every batch is checked (header and CRC-32C) before its records are
 *     handed out; a damaged one is an error naming the queue and offset.
 *  3. A seek bumps the queue's generation: answers to Fetches sent before it
 *     are dropped when they arrive, so no record from before a seek is
 *     returned after it.
 *  4. Views returned by poll stay valid until the next poll, seek, assign or
 *     close: the answer they point into is retired, and freed only then.
 *  5. close waits for every Fetch in flight (each bounded by its max_wait_ms
 *     plus the call deadline) before freeing anything a callback touches.
 *  6. Deterministic order, as embedded: see poll_remote.
 *  7. Broker restarts: a Fetch that fails in transport (rn_rpc_retriable:
 *     runneld down, restarting, the answer lost) leaves the queue's fetch
 *     offset and position as they were and is sent again — same offset —
 *     after a backoff (RETRY_MIN_MS doubling to RETRY_MAX_MS, jittered),
 *     until the queue has failed without a break for reconnect_timeout_ms;
 *     only then does poll return the error. Nothing is skipped or returned
 *     twice: records are handed out from the position only (invariant 1).
 *     A queue waiting for a retry counts as waited-for in poll's order.
 *  8. Cluster (a client opened with a bootstrap list, client.c invariant
 *     5): each queue's Fetches go to its leader (rn_client_rpc_for), so a
 *     consumer of several queues holds one connection per leader node.
 *     NOT_LEADER, "no leader" and transport failures are retried as in
 *     invariant 7 (backoff capped at CLUSTER_RETRY_MAX_MS), the leaders
 *     asked for again first; a leader serves records below its high
 *     watermark only, so what a new leader serves from the position on
 *     continues the same log. An out-of-range answer for a replicated
 *     queue is retried the same way (a lagging node answered: the position
 *     came from a leader), still bounded by reconnect_timeout_ms.
 */
#include "client/client_int.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_FETCH     (1u << 20)
#define DEFAULT_PREFETCH  2
#define MAX_LONG_POLL_MS  500          /* one Fetch's wait; poll sends another if time is left */
#define FETCH_DEADLINE_MS 30000        /* on top of the long-poll wait */
#define RETRY_MIN_MS      50             /* invariant 7 */
#define RETRY_MAX_MS      2000
#define DEFAULT_RECONNECT_MS 120000
#define CLUSTER_RETRY_MAX_MS 200         /* invariant 8 */

typedef struct fresp fresp_t;
struct fresp {
    fresp_t                    *next;
    Runnel__V1__FetchResponse  *r;
    size_t                      at;          /* bytes of r->records decoded */
    int                         rc;          /* an error answer */
    char                        err[RN_ERRMSG_SIZE];
};

typedef struct rqueue {
    char      topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t  queue;
    int64_t   pos, end, fetch_off, hw;
    uint64_t  gen;
    int       inflight;
    uint64_t  call;                 /* poll call that last sent its Fetch */
    uint64_t  retry_at;             /* invariant 7: resend not before (0: no failure) */
    uint64_t  failing_since;
    uint32_t  failures;
    int       reroute;              /* invariant 8: ask for the leader before the next Fetch */
    fresp_t  *head, *tail;
    uint32_t  nbuf;
} rqueue_t;

typedef struct fctx {
    rn_client_consumer_t      *k;
    rqueue_t                  *q;
    uint64_t                   gen;
    Runnel__V1__FetchRequest   req;
    char                       why[RN_ERRMSG_SIZE];
} fctx_t;

struct rn_client_consumer {
    rn_client_t      *c;
    rn_consumer_t    *emb;          /* embedded */
    /* remote */
    rqueue_t        **qs;
    size_t            nqs, capqs;
    size_t            rr;
    uint32_t          fetch_bytes, prefetch;
    uint32_t          reconnect_ms;   /* UINT32_MAX: forever */
    uint64_t          rng;
    uint64_t          call;
    int               inflight;
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    fresp_t          *retired;      /* answers the last poll's views point into */
    rn_batch_iter_t   it;
    rn_record_t      *recs;
    size_t            caprecs;
    rn_header_t      *hdrs;
    size_t            caphdrs;
};

void rn_client_consumer_skipped(rn_client_consumer_t *k, uint64_t *offsets, uint64_t *ranges)
{
    *offsets = *ranges = 0;
    if (k && k->emb) rn_consumer_skipped(k->emb, offsets, ranges);
}

int rn_client_consumer_open(rn_client_t *c, const rn_client_consumer_opts_t *o,
                            rn_client_consumer_t **out, char *errmsg)
{
    *out = NULL;
    if (o && o->skip_damaged && c->remote)
        return rn_errf(errmsg, RN_EINVAL, "--skip-damaged reads the store itself: use --data DIR "
                       "(a broker's fetches stop at damaged offsets with their range)");
    rn_client_consumer_t *k = calloc(1, sizeof *k);
    if (!k) return rn_errf(errmsg, -ENOMEM, "out of memory");
    k->c = c;
    k->fetch_bytes = o && o->fetch_bytes ? o->fetch_bytes : DEFAULT_FETCH;
    k->prefetch = o && o->prefetch ? o->prefetch : DEFAULT_PREFETCH;
    k->reconnect_ms = o && o->reconnect_timeout_ms ? o->reconnect_timeout_ms
                                                   : DEFAULT_RECONNECT_MS;
    k->rng = rn_mono_ns() ^ (uint64_t)(uintptr_t)k;
    if (!c->remote) {
        rn_consumer_opts_t eo = {.fetch_bytes = k->fetch_bytes,
                                 .skip_damaged = o ? o->skip_damaged : 0};
        int rc = rn_consumer_create(c->d, &eo, &k->emb, errmsg);
        if (rc != 0) { free(k); return rc; }
        *out = k;
        return 0;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    rn_batch_iter_init(&k->it, &rn_batch_default_limits);
    *out = k;
    return 0;
}

static void free_fresps(fresp_t *f)
{
    while (f) {
        fresp_t *next = f->next;
        rn_client_free_msg(f->r);
        free(f);
        f = next;
    }
}

void rn_client_consumer_close(rn_client_consumer_t *k)
{
    if (!k) return;
    if (k->emb) {
        rn_consumer_destroy(k->emb);
        free(k);
        return;
    }
    pthread_mutex_lock(&k->mu);
    while (k->inflight > 0) pthread_cond_wait(&k->cv, &k->mu);     /* invariant 5 */
    pthread_mutex_unlock(&k->mu);
    for (size_t i = 0; i < k->nqs; i++) {
        free_fresps(k->qs[i]->head);
        free(k->qs[i]);
    }
    free(k->qs);
    free_fresps(k->retired);
    rn_batch_iter_destroy(&k->it);
    free(k->recs);
    free(k->hdrs);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

static rqueue_t *find_queue(rn_client_consumer_t *k, const char *topic, uint32_t queue)
{
    for (size_t i = 0; i < k->nqs; i++)
        if (k->qs[i]->queue == queue && !strcmp(k->qs[i]->topic, topic)) return k->qs[i];
    return NULL;
}

static int not_assigned(char *errmsg, const char *topic, uint32_t queue)
{
    return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' queue %u is not assigned to this consumer",
                   topic, queue);
}

/* Range-checked: the core's message outside [log start, high watermark]. */
static int check_offset(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                        int64_t offset, char *errmsg)
{
    int64_t ls, hw;
    int rc = rn_client_list_offsets(k->c, topic, queue, 0, 0, NULL, &ls, &hw, errmsg);
    if (rc != 0) return rc;
    if (offset < ls || offset > hw) return rn_client_range_error(errmsg, topic, queue, offset, ls, hw);
    return 0;
}

/* Drop q's buffered answers and move it to offset (mutex held). */
static void reposition(rn_client_consumer_t *k, rqueue_t *q, int64_t offset)
{
    q->gen++;
    q->pos = q->fetch_off = offset;
    q->hw = -1;                              /* unknown until the next answer */
    fresp_t *f = q->head;
    q->head = q->tail = NULL;
    q->nbuf = 0;
    /* Views of the last poll may point into these: retire, don't free. */
    while (f) {
        fresp_t *next = f->next;
        f->next = k->retired;
        k->retired = f;
        f = next;
    }
}

int rn_client_consumer_assign(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                              int64_t offset, char *errmsg)
{
    if (k->emb) return rn_consumer_assign(k->emb, topic, queue, offset, errmsg);
    if (find_queue(k, topic, queue))
        return rn_errf(errmsg, RN_EEXIST, "topic '%s' queue %u is already assigned", topic, queue);
    if (strlen(topic) > RN_META_TOPIC_NAME_MAX)
        return rn_meta_check_topic_name(topic, errmsg);
    int rc = check_offset(k, topic, queue, offset, errmsg);
    if (rc != 0) return rc;
    rqueue_t *q = calloc(1, sizeof *q);
    if (!q) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(q->topic, sizeof q->topic, "%s", topic);
    q->queue = queue;
    q->pos = q->fetch_off = offset;
    q->end = -1;
    q->hw = -1;
    pthread_mutex_lock(&k->mu);
    if (k->nqs == k->capqs) {
        size_t cap = k->capqs ? k->capqs * 2 : 8;
        rqueue_t **v = realloc(k->qs, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&k->mu);
            free(q);
            return rn_errf(errmsg, -ENOMEM, "out of memory");
        }
        k->qs = v;
        k->capqs = cap;
    }
    k->qs[k->nqs++] = q;
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int rn_client_consumer_set_end(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                               int64_t end, char *errmsg)
{
    if (k->emb) return rn_consumer_set_end(k->emb, topic, queue, end, errmsg);
    pthread_mutex_lock(&k->mu);
    rqueue_t *q = find_queue(k, topic, queue);
    if (q) q->end = end;
    pthread_mutex_unlock(&k->mu);
    return q ? 0 : not_assigned(errmsg, topic, queue);
}

int rn_client_consumer_seek(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                            int64_t offset, char *errmsg)
{
    if (k->emb) return rn_consumer_seek(k->emb, topic, queue, offset, errmsg);
    rqueue_t *q = find_queue(k, topic, queue);
    if (!q) return not_assigned(errmsg, topic, queue);
    int rc = check_offset(k, topic, queue, offset, errmsg);
    if (rc != 0) return rc;
    pthread_mutex_lock(&k->mu);
    reposition(k, q, offset);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int rn_client_consumer_seek_time(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                 int64_t ts, char *errmsg)
{
    if (k->emb) return rn_consumer_seek_time(k->emb, topic, queue, ts, errmsg);
    rqueue_t *q = find_queue(k, topic, queue);
    if (!q) return not_assigned(errmsg, topic, queue);
    int64_t offset;
    int rc = rn_client_list_offsets(k->c, topic, queue, 2, ts, &offset, NULL, NULL, errmsg);
    if (rc != 0) return rc;
    pthread_mutex_lock(&k->mu);
    reposition(k, q, offset);
    pthread_mutex_unlock(&k->mu);
    return 0;
}

int rn_client_consumer_position(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                int64_t *offset, char *errmsg)
{
    if (k->emb) return rn_consumer_position(k->emb, topic, queue, offset, errmsg);
    rqueue_t *q = find_queue(k, topic, queue);
    if (!q) return not_assigned(errmsg, topic, queue);
    *offset = q->pos;
    return 0;
}

int rn_client_consumer_watermarks(rn_client_consumer_t *k, const char *topic, uint32_t queue,
                                  int64_t *log_start, int64_t *high_watermark, char *errmsg)
{
    if (k->emb) return rn_consumer_watermarks(k->emb, topic, queue, log_start, high_watermark, errmsg);
    if (!find_queue(k, topic, queue)) return not_assigned(errmsg, topic, queue);
    return rn_client_list_offsets(k->c, topic, queue, 0, 0, NULL, log_start, high_watermark, errmsg);
}

int rn_client_consumer_commit(rn_client_consumer_t *k, const char *group, char *errmsg)
{
    if (k->emb) return rn_consumer_commit(k->emb, group, errmsg);
    rn_meta_offset_t *v = calloc(k->nqs ? k->nqs : 1, sizeof *v);
    if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (size_t i = 0; i < k->nqs; i++) {
        snprintf(v[i].topic, sizeof v[i].topic, "%s", k->qs[i]->topic);
        v[i].queue = k->qs[i]->queue;
        v[i].offset = k->qs[i]->pos;
    }
    int rc = rn_client_group_commit(k->c, group, v, k->nqs, errmsg);
    free(v);
    return rc;
}

/* ---- Remote fetching ------------------------------------------------------- */

/* The offset after the last batch of an answer, checking that the bytes are
 * whole batches (sizes only; CRCs are checked when decoded). */
static int answer_end(const Runnel__V1__FetchResponse *r, int64_t *end, char *errmsg)
{
    const uint8_t *p = r->records.data;
    size_t left = r->records.len;
    while (left > 0) {
        size_t sz;
        rn_batch_header_t h;
        if (rn_batch_size(p, left, &sz) != 0 || sz > left ||
            rn_batch_parse_header(p, sz, &rn_batch_default_limits, &h, errmsg) != 0)
            return rn_errf(errmsg, RN_ECORRUPT, "the broker sent a truncated or malformed batch");
        *end = h.base_offset + (int64_t)h.last_offset_delta + 1;
        p += sz;
        left -= sz;
    }
    return 0;
}

static void fetch_done(void *arg, int rc, ProtobufCMessage *resp, int status, const char *errmsg)
{
    fctx_t *x = arg;
    rn_client_consumer_t *k = x->k;
    rqueue_t *q = x->q;
    Runnel__V1__FetchResponse *r = (Runnel__V1__FetchResponse *)resp;
    fresp_t *f = NULL;
    (void)status;
    int retry = 0;
    pthread_mutex_lock(&k->mu);
    q->inflight = 0;
    k->inflight--;
    int moved = 0, cluster = k->c->bootstrap != NULL;
    int transient = rn_rpc_retriable(rc) ||
                    (cluster && rn_client_cluster_transient(rc, errmsg, &moved));
    if (cluster && rn_rpc_retriable(rc)) moved = 1;
    /* Invariant 8: the position came from a leader, so a replica of a
     * replicated queue answering it out of range is behind (a node just
     * restarted, before it knows its role): ask again. */
    if (cluster && !transient && (rc == RN_ERANGE || rc == RN_ENOTFOUND) &&
        rn_client_replicated(k->c, q->topic))
        transient = moved = 1;
    if (x->gen == q->gen && transient) {
        /* Invariants 7 and 8: the same Fetch again later (to the queue's
         * leader, asked for again when it may have moved), unless it
         * failed too long. */
        uint64_t now = rn_mono_ns();
        if (q->failures++ == 0) q->failing_since = now;
        if (k->reconnect_ms == UINT32_MAX ||
            now - q->failing_since < (uint64_t)k->reconnect_ms * 1000000u) {
            q->reroute = moved;
            q->retry_at = now + (uint64_t)rn_rpc_backoff_ms(RETRY_MIN_MS,
                                                            cluster ? CLUSTER_RETRY_MAX_MS
                                                                    : RETRY_MAX_MS,
                                                            q->failures, &k->rng) * 1000000u;
            retry = 1;                       /* no answer is queued */
        } else {
            char why[RN_ERRMSG_SIZE];
            snprintf(why, sizeof why, "%s (still failing after reconnect_timeout_ms %u, %u "
                     "attempts)", errmsg ? errmsg : rn_strerror(rc), k->reconnect_ms, q->failures);
            snprintf(x->why, sizeof x->why, "%s", why);
            errmsg = x->why;
        }
    } else if (x->gen == q->gen && rc == 0) {
        q->failures = 0;
        q->retry_at = 0;
    }
    if (!retry && x->gen == q->gen) {       /* invariant 3 */
        int64_t end = q->fetch_off;
        char err[RN_ERRMSG_SIZE] = "";
        if (rc == 0) {
            q->hw = r->high_watermark;
            if (r->records.len > 0) rc = answer_end(r, &end, err);
        } else {
            snprintf(err, sizeof err, "%s", errmsg ? errmsg : rn_strerror(rc));
        }
        if (rc != 0 || r->records.len > 0) f = calloc(1, sizeof *f);
        if (f) {
            f->rc = rc;
            snprintf(f->err, sizeof f->err, "%s", err);
            if (rc == 0) {
                f->r = r;
                r = NULL;
                q->fetch_off = end;
            }
            if (q->tail) q->tail->next = f;
            else q->head = f;
            q->tail = f;
            q->nbuf++;
        }
    }
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    rn_client_free_msg(r);
    free(x);
}

/* Send q's next Fetch. Called with the mutex held; drops it around the call
 * (the completion thread takes it). */
static void send_fetch(rn_client_consumer_t *k, rqueue_t *q, uint32_t max_wait_ms)
{
    fctx_t *x = calloc(1, sizeof *x);
    if (!x) return;                          /* tried again on the next poll */
    x->k = k;
    x->q = q;
    x->gen = q->gen;
    runnel__v1__fetch_request__init(&x->req);
    x->req.topic = q->topic;
    x->req.queue = q->queue;
    x->req.offset = q->fetch_off;
    x->req.max_bytes = k->fetch_bytes;
    x->req.max_wait_ms = max_wait_ms;
    q->inflight = 1;
    k->inflight++;
    int reroute = q->reroute;
    q->reroute = 0;
    pthread_mutex_unlock(&k->mu);
    char err[RN_ERRMSG_SIZE] = "";
    if (reroute) rn_client_reroute(k->c);          /* invariant 8 */
    int rc = rn_rpc_call_async(rn_client_rpc_for(k->c, x->req.topic, x->req.queue),
                               RN_RPC_METHOD("Fetch"), &x->req.base,
                               &runnel__v1__fetch_response__descriptor,
                               max_wait_ms + FETCH_DEADLINE_MS, fetch_done, x, err);
    if (rc != 0) fetch_done(x, rc, NULL, 0, err);
    pthread_mutex_lock(&k->mu);
}

static int ended(const rqueue_t *q) { return q->end >= 0 && q->pos >= q->end; }

/* Room for nrec records and nhdr headers. */
static int reserve(rn_client_consumer_t *k, size_t nrec, size_t nhdr, char *errmsg)
{
    if (nrec > k->caprecs) {
        size_t cap = k->caprecs ? k->caprecs * 2 : 256;
        while (cap < nrec) cap *= 2;
        rn_record_t *v = realloc(k->recs, cap * sizeof *v);
        if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
        k->recs = v;
        k->caprecs = cap;
    }
    if (nhdr > k->caphdrs) {
        size_t cap = k->caphdrs ? k->caphdrs * 2 : 64;
        while (cap < nhdr) cap *= 2;
        rn_header_t *v = realloc(k->hdrs, cap * sizeof *v);
        if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
        k->hdrs = v;
        k->caphdrs = cap;
    }
    return 0;
}

/* Decode the next batch of answer f of q into k->recs, keeping records in
 * [pos, end) (invariants 1, 2). Runs without the mutex: only the polling
 * thread touches a buffered answer's bytes. */
static int decode_next(rn_client_consumer_t *k, rqueue_t *q, fresp_t *f, uint32_t *count,
                       char *errmsg)
{
    char inner[RN_ERRMSG_SIZE] = "";
    const uint8_t *b = f->r->records.data + f->at;
    size_t left = f->r->records.len - f->at, sz = 0;
    rn_batch_header_t h;
    int rc = 0;
    if (rn_batch_size(b, left, &sz) != 0 || sz > left ||
        (rc = rn_batch_validate(b, sz, &rn_batch_default_limits, 0, &h, inner)) != 0 ||
        (rc = rn_batch_iter_reset(&k->it, b, sz, inner)) != 0)
        return rn_errf(errmsg, rc ? rc : RN_ECORRUPT, "topic '%s' queue %u: the batch read at "
                       "offset %lld is damaged: %s", q->topic, q->queue, (long long)q->pos,
                       inner[0] ? inner : "bad size");
    f->at += sz;
    size_t n = 0, nh = 0;
    rn_record_t r;
    while ((rc = rn_batch_iter_next(&k->it, &r, inner)) == 1) {
        if (r.offset < q->pos) continue;
        if (q->end >= 0 && r.offset >= q->end) break;
        if ((rc = reserve(k, n + 1, nh + r.header_count, errmsg)) != 0) return rc;
        if (r.header_count) memcpy(k->hdrs + nh, r.headers, r.header_count * sizeof *r.headers);
        k->recs[n++] = r;
        nh += r.header_count;
    }
    if (rc < 0)
        return rn_errf(errmsg, rc, "topic '%s' queue %u: a record of the batch at offset %lld is "
                       "damaged: %s", q->topic, q->queue, (long long)h.base_offset, inner);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        k->recs[i].headers = k->recs[i].header_count ? k->hdrs + at : NULL;
        at += k->recs[i].header_count;
    }
    int64_t next = h.base_offset + (int64_t)h.last_offset_delta + 1;
    if (q->end >= 0 && next > q->end) next = q->end;
    if (next > q->pos) q->pos = next;
    *count = (uint32_t)n;
    return 0;
}

/* Poll order (invariant 6): queues in round-robin order after the one
 * served last; a queue that may have records (its high watermark is unknown
 * or past its fetch offset) is waited for even when a later queue's answer
 * arrived first, so the order of batches depends on the data only, never on
 * network timing. Only when every queue sits at its high watermark (or its
 * end) are they long-polled together, and the first answer is served. */
static int poll_remote(rn_client_consumer_t *k, rn_consumer_batch_t *b, uint32_t timeout_ms,
                       char *errmsg)
{
    uint64_t deadline = rn_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    pthread_mutex_lock(&k->mu);
    fresp_t *old = k->retired;               /* invariant 4: the last poll's views end here */
    k->retired = NULL;
    uint64_t call = ++k->call;
    int rc = 0;
    for (;;) {
        int waiting = 0, again = 0, sent = 0;
        uint64_t now = rn_mono_ns(), wake = UINT64_MAX;      /* invariant 7 */
        for (size_t s = 0; s < k->nqs && !waiting && !again; s++) {
            size_t i = (k->rr + s) % k->nqs;
            rqueue_t *q = k->qs[i];
            if (ended(q)) continue;
            if (!q->head) {
                if (q->hw >= 0 && q->fetch_off >= q->hw) continue;     /* nothing now */
                if (!q->inflight && q->retry_at > now) wake = q->retry_at;
                else if (!q->inflight) { send_fetch(k, q, 0); sent = 1; }
                waiting = 1;
                break;
            }
            fresp_t *f = q->head;
            if (f->rc != 0) {
                q->head = f->next;
                if (!q->head) q->tail = NULL;
                q->nbuf--;
                rc = rn_errf(errmsg, f->rc, "%s", f->err);
                free(f);
                goto out;
            }
            uint64_t gen = q->gen;
            uint32_t count = 0;
            pthread_mutex_unlock(&k->mu);
            rc = decode_next(k, q, f, &count, errmsg);
            pthread_mutex_lock(&k->mu);
            if (rc != 0) goto out;
            if (gen == q->gen && f->at >= f->r->records.len) {
                q->head = f->next;
                if (!q->head) q->tail = NULL;
                q->nbuf--;
                f->next = k->retired;
                k->retired = f;
            }
            /* Prefetch: the next Fetch goes out while the caller works. */
            if (!q->inflight && !q->retry_at && q->nbuf < k->prefetch && !ended(q) &&
                q->fetch_off < q->hw && (q->end < 0 || q->fetch_off < q->end))
                send_fetch(k, q, 0);
            if (count > 0) {
                k->rr = (i + 1) % k->nqs;
                b->topic = q->topic;
                b->queue = q->queue;
                b->records = k->recs;
                b->count = count;
                b->next_offset = q->pos;
                rc = 1;
                goto out;
            }
            again = 1;                       /* a batch wholly below pos: look again */
        }
        if (again) continue;
        if (!waiting) {
            /* Every queue is at its high watermark or end: long-poll them. */
            now = rn_mono_ns();
            uint32_t left = now >= deadline ? 0 : (uint32_t)((deadline - now) / 1000000u);
            for (size_t i = 0; i < k->nqs; i++) {
                rqueue_t *q = k->qs[i];
                if (ended(q)) continue;
                if (q->inflight || q->head) { waiting = 1; continue; }
                if (q->retry_at > now) {
                    /* Invariant 7: retried when due, within this poll's time. */
                    if (left > 0) {
                        waiting = 1;
                        if (q->retry_at < wake) wake = q->retry_at;
                        if (deadline < wake) wake = deadline;
                    }
                    continue;
                }
                if (left > 0 || q->call != call) {
                    q->call = call;
                    send_fetch(k, q, left < MAX_LONG_POLL_MS ? left : MAX_LONG_POLL_MS);
                    waiting = sent = 1;
                }
            }
            if (!waiting) { rc = 0; goto out; }
        }
        /* send_fetch dropped the mutex: an answer may have come meanwhile,
         * so look again before sleeping (no lost wake-up). Otherwise a
         * Fetch in flight will signal. */
        if (!sent && wake != UINT64_MAX) {
            struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};
            pthread_cond_timedwait(&k->cv, &k->mu, &ts);
        } else if (!sent) {
            pthread_cond_wait(&k->cv, &k->mu);
        }
    }
out:
    pthread_mutex_unlock(&k->mu);
    free_fresps(old);
    return rc;
}

int rn_client_consumer_poll(rn_client_consumer_t *k, rn_consumer_batch_t *b, uint32_t timeout_ms,
                            char *errmsg)
{
    if (!k->emb) return poll_remote(k, b, timeout_ms, errmsg);
    uint64_t deadline = rn_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        int rc = rn_consumer_poll(k->emb, b, errmsg);
        uint64_t now = rn_mono_ns();
        if (rc != 0 || now >= deadline) return rc;
        /* Sleep until an append of this data directory (or the deadline). */
        rn_consumer_wait(k->emb, (uint32_t)((deadline - now + 999999) / 1000000u));
    }
}

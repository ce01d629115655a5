/*
 * handlers.c — request → core → response for every RPC of runnel.v1
 * (server/handlers.h). No gRPC and no libuv here.
 *
 * Queue entries: the first request naming (topic, queue) resolves it with
 * rn_datadir_queue_open and keeps an entry (never freed before close) with
 * a small pool of queue handles (each used by one thread at a time, as
 * datadir.h requires), the append mutex and the idempotent producer state.
 *
 * Invariants:
 *  1. Nothing is appended before every batch of the request passed deep
 *     validation (rn_batch_validate deep=1) and the idempotent check; so a
 *     bad request stores nothing.
 *  2. A queue's appends and its producer state change together under
 *     qe->mu: the check, the append and the record of a batch cannot
 *     interleave with another request to the same queue, so a concurrent
 *     retry is either the next sequence or a duplicate, never both.
 *  3. The producer state of a queue is rebuilt from the batch headers at its
 *     tail (at most TAIL_BATCHES batches / TAIL_BYTES bytes) the first time a
 *     Produce names it in this process, before any append to it here; so a
 *     retry after a restart of a batch among the queue's recent ones is
 *     recognised as a duplicate.
 *  4. Metadata is read and written only with the data directory's mutex held
 *     (rn_datadir_meta_lock), never across a call that waits for I/O.
 *  5. Logic lives in the core: topics, remaps, offsets, resets, checkpoints
 *     go through the same functions the embedded commands use.
 *  6. A batch whose largest record timestamp is more than o.max_ts_ahead_ms
 *     ahead of the broker clock is refused (not clamped: the batch is stored
 *     as received, CRC and all), like any invalid batch, before anything of
 *     the request is stored; it would hold up time-based retention.
 *  7. A RemapQueue store_path is used only when o.store_root is set and the
 *     path resolves inside it (common/root.h: no "..", no symbolic link, not
 *     the root itself); it reaches the core as the absolute path beneath the
 *     root. Otherwise PERMISSION_DENIED naming the root or the flag, before
 *     anything is created.
 *  8. In a cluster (rn_hd_set_repl), a Produce or Fetch of a replicated
 *     queue passes its hook before anything is stored or read (NOT_LEADER,
 *     min_insync_replicas); a consumer's fetch returns whole batches below
 *     the hook's limit only (the high watermark), and a replica's append
 *     or cut holds the queue's append mutex like a Produce (invariant 2).
 *     There, producer ids from RN_PREG_CLUSTER_ID_MIN up (drawn by clients
 *     and the Kafka front's InitProducerId) are checked by sequence only,
 *     on local queues too: no node's registry issued them.
 *  9. In a cluster, group offsets on replicated topics are written to
 *     meta.db only by the controller's apply (cluster/replica.c): a
 *     CommitOffsets on them goes to the commit_offsets hook (after the
 *     local range checks), never to meta.db here; so does a ResetGroup of
 *     them (its offsets resolved here); one to a checkpoint, or mixing them
 *     with local topics, is refused rather than written locally.
 */
#include "server/handlers.h"

#include "batch/batch.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/root.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "logical-queues/meta.h"
#include "server/metrics.h"
#include "server/producers.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QBUCKETS       1024
#define POOL_MAX       8
#define TAIL_BATCHES   64
#define TAIL_BYTES     (64u << 20)
#define MAX_BATCHES    10000          /* per Produce request */

struct rn_qent {
    rn_qent_t          *next;          /* hash chain */
    char                topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t            queue;
    pthread_mutex_t     mu;            /* invariant 2 */
    rn_pstate_t         ps;
    int                 ps_loaded;
    pthread_mutex_t     pmu;           /* the handle pool */
    rn_datadir_queue_t *pool[POOL_MAX];
    int                 npool;
    rn_mqueue_t        *m;             /* its counters (server/metrics.h) */
};

struct rn_hd {
    rn_datadir_t     *d;
    rn_preg_t        *reg;
    rn_hd_opts_t      o;
    rn_batch_limits_t lim;
    pthread_mutex_t   tmu;             /* the entry table */
    rn_qent_t        *buckets[QBUCKETS];
    _Atomic uint64_t  produced_batches, produced_bytes, duplicate_batches, fetched_batches;
    struct rn_pl     *pipelines;       /* server/pipelines.h; set once before serving */
    pthread_mutex_t   gmu;             /* the group guard (rn_hd_set_group_guard) */
    rn_hd_group_guard_fn guard;
    void             *guard_arg;
    rn_hd_repl_t      repl;            /* cluster hooks; set once before serving */
    int               has_repl;
    void            (*waker)(void *arg, rn_qent_t *q);
    void             *waker_arg;
};

/* ---- arena -------------------------------------------------------------- */

void *rn_arena_alloc(rn_arena_t *a, size_t size)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        void **v = realloc(a->v, cap * sizeof *v);
        if (!v) return NULL;
        a->v = v;
        a->cap = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p) a->v[a->n++] = p;
    return p;
}

void rn_arena_free(rn_arena_t *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static char *arena_strdup(rn_arena_t *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = rn_arena_alloc(a, n);
    if (p) memcpy(p, s, n);
    return p;
}

/* ---- statuses ----------------------------------------------------------- */

/* The status a core error code means. */
static rn_st_t code_of(int rc)
{
    switch (rc) {
    case RN_ENOTFOUND: return RN_ST_NOT_FOUND;
    case RN_ERANGE:    return RN_ST_OUT_OF_RANGE;
    case RN_EEXIST:    return RN_ST_ALREADY_EXISTS;
    case RN_EINVAL:
    case RN_EFORMAT:   return RN_ST_INVALID_ARGUMENT;
    case RN_ETOOBIG:
    case RN_EFULL:
    case -ENOSPC:
    case -ENOMEM:      return RN_ST_RESOURCE_EXHAUSTED;
    case RN_ESTICKY:
    case -EIO:         return RN_ST_FAILED_PRECONDITION;
    case RN_ECLOSED:   return RN_ST_UNAVAILABLE;
    case RN_EDAMAGED:  return RN_ST_DATA_LOSS;     /* offsets recovery marked damaged/lost */
    case -EPERM:       return RN_ST_PERMISSION_DENIED;   /* an ACL refused it */
    default:           return RN_ST_INTERNAL;
    }
}

/* An errno that a path given in a request explains (it is the caller's). */
static int is_path_error(int rc)
{
    return rc == -ENOENT || rc == -ENOTDIR || rc == -EISDIR || rc == -EACCES || rc == -EPERM ||
           rc == -EROFS || rc == -ENAMETOOLONG || rc == -EEXIST || rc == -ELOOP;
}

/* A core failure: its message, or the code's name when it has none. */
static int fail_rc(rn_status_t *st, int rc, const char *err)
{
    return rn_status_set(st, code_of(rc), "%s", err && err[0] ? err : rn_strerror(rc));
}

#define OOM(st) rn_status_set((st), RN_ST_RESOURCE_EXHAUSTED, "out of memory")

int rn_hd_fail(rn_status_t *st, int rc, const char *msg) { return fail_rc(st, rc, msg); }

rn_datadir_t *rn_hd_datadir(rn_hd_t *h) { return h->d; }

const rn_hd_opts_t *rn_hd_opts(rn_hd_t *h) { return &h->o; }

void rn_hd_set_pipelines(rn_hd_t *h, struct rn_pl *pl) { h->pipelines = pl; }

void rn_hd_set_group_guard(rn_hd_t *h, rn_hd_group_guard_fn fn, void *arg)
{
    pthread_mutex_lock(&h->gmu);
    h->guard = fn;
    h->guard_arg = arg;
    pthread_mutex_unlock(&h->gmu);
}

struct rn_pl *rn_hd_pipelines(rn_hd_t *h) { return h->pipelines; }

/* ---- open / close -------------------------------------------------------- */

void rn_hd_opts_default(rn_hd_opts_t *o)
{
    memset(o, 0, sizeof *o);
    rn_log_opts_default(&o->log);
    o->holder = "runneld";
    o->fetch_default_bytes = 1u << 20;
    o->fetch_max_bytes = 16u << 20;
    o->query_max_steps = RN_QUERY_DEFAULT_STEPS;
    o->producer_expiry_ms = RN_PSTATE_DEFAULT_EXPIRY_MS;
    o->max_ts_ahead_ms = RN_HD_DEFAULT_TS_AHEAD_MS;
}

int rn_hd_open(const char *dir, const rn_hd_opts_t *o, rn_hd_t **out, char *errmsg)
{
    *out = NULL;
    rn_hd_t *h = calloc(1, sizeof *h);
    if (!h) return rn_errf(errmsg, -ENOMEM, "out of memory");
    h->o = *o;
    h->lim.max_bytes = o->log.max_batch_bytes;
    h->lim.max_records = 0;
    pthread_mutex_init(&h->tmu, NULL);
    pthread_mutex_init(&h->gmu, NULL);
    rn_datadir_opts_t dopts;
    rn_datadir_opts_default(&dopts);
    dopts.log = o->log;
    dopts.holder = o->holder;
    dopts.create = 1;
    int rc = rn_datadir_open(dir, &dopts, &h->d, errmsg);
    if (rc == 0) rc = rn_preg_open(dir, &h->reg, errmsg);
    if (rc != 0) {
        rn_hd_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

static void qent_free(rn_qent_t *e)
{
    for (int i = 0; i < e->npool; i++) {
        rn_datadir_queue_close(e->pool[i]);
        free(e->pool[i]);
    }
    rn_pstate_free(&e->ps);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->pmu);
    free(e);
}

int rn_hd_close(rn_hd_t *h)
{
    if (!h) return 0;
    for (size_t b = 0; b < QBUCKETS; b++) {
        rn_qent_t *e = h->buckets[b];
        while (e) {
            rn_qent_t *next = e->next;
            qent_free(e);
            e = next;
        }
    }
    rn_preg_close(h->reg);
    int rc = rn_datadir_close(h->d);
    pthread_mutex_destroy(&h->tmu);
    pthread_mutex_destroy(&h->gmu);
    free(h);
    return rc;
}

void rn_hd_stats(rn_hd_t *h, rn_hd_stats_t *out)
{
    out->produced_batches = atomic_load(&h->produced_batches);
    out->produced_bytes = atomic_load(&h->produced_bytes);
    out->duplicate_batches = atomic_load(&h->duplicate_batches);
    out->fetched_batches = atomic_load(&h->fetched_batches);
}

/* ---- queue entries ---------------------------------------------------------- */

static size_t qhash(const char *topic, uint32_t queue)
{
    uint64_t x = 1469598103934665603ull;
    for (const char *p = topic; *p; p++) x = (x ^ (uint8_t)*p) * 1099511628211ull;
    x = (x ^ queue) * 1099511628211ull;
    return (size_t)(x % QBUCKETS);
}

static rn_qent_t *qent_find(rn_hd_t *h, size_t b, const char *topic, uint32_t queue)
{
    for (rn_qent_t *e = h->buckets[b]; e; e = e->next)
        if (e->queue == queue && !strcmp(e->topic, topic)) return e;
    return NULL;
}

/* Open a queue handle (malloc'd). */
static int handle_open(rn_hd_t *h, const char *topic, uint32_t queue, rn_datadir_queue_t **out,
                       rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t *q = calloc(1, sizeof *q);
    if (!q) return OOM(st);
    int rc = rn_datadir_queue_open(h->d, topic, queue, q, err);
    if (rc != 0) {
        free(q);
        return fail_rc(st, rc, err);
    }
    *out = q;
    return 0;
}

/* The entry of (topic, queue): NOT_FOUND naming the topics or queues when
 * either is unknown. */
static int qent_get(rn_hd_t *h, const char *topic, uint32_t queue, rn_qent_t **out,
                    rn_status_t *st)
{
    if (!topic) topic = "";
    size_t b = qhash(topic, queue);
    pthread_mutex_lock(&h->tmu);
    rn_qent_t *e = qent_find(h, b, topic, queue);
    pthread_mutex_unlock(&h->tmu);
    if (e) { *out = e; return 0; }
    rn_datadir_queue_t *q;
    if (handle_open(h, topic, queue, &q, st) != 0) return -1;
    rn_qent_t *ne = calloc(1, sizeof *ne);
    if (!ne) {
        rn_datadir_queue_close(q);
        free(q);
        return OOM(st);
    }
    snprintf(ne->topic, sizeof ne->topic, "%s", topic);
    ne->queue = queue;
    ne->m = rn_metrics_queue(topic, queue);
    ne->ps.expire_ms = h->o.producer_expiry_ms;
    pthread_mutex_init(&ne->mu, NULL);
    pthread_mutex_init(&ne->pmu, NULL);
    ne->pool[ne->npool++] = q;
    pthread_mutex_lock(&h->tmu);
    e = qent_find(h, b, topic, queue);
    if (!e) {
        ne->next = h->buckets[b];
        h->buckets[b] = ne;
        e = ne;
        ne = NULL;
    }
    pthread_mutex_unlock(&h->tmu);
    if (ne) qent_free(ne);        /* another thread made it meanwhile */
    *out = e;
    return 0;
}

static int handle_get(rn_hd_t *h, rn_qent_t *e, rn_datadir_queue_t **out, rn_status_t *st)
{
    pthread_mutex_lock(&e->pmu);
    rn_datadir_queue_t *q = e->npool ? e->pool[--e->npool] : NULL;
    pthread_mutex_unlock(&e->pmu);
    if (q) { *out = q; return 0; }
    return handle_open(h, e->topic, e->queue, out, st);
}

static void handle_put(rn_qent_t *e, rn_datadir_queue_t *q)
{
    pthread_mutex_lock(&e->pmu);
    if (e->npool < POOL_MAX) {
        e->pool[e->npool++] = q;
        q = NULL;
    }
    pthread_mutex_unlock(&e->pmu);
    if (q) {
        rn_datadir_queue_close(q);
        free(q);
    }
}

int rn_hd_queue_hwm(rn_hd_t *h, rn_qent_t *e, int64_t *hwm)
{
    rn_status_t st;
    rn_datadir_queue_t *q;
    if (handle_get(h, e, &q, &st) != 0) return -1;
    rn_datadir_queue_info_t info;
    int rc = rn_datadir_queue_info(h->d, q, &info, NULL);
    handle_put(e, q);
    if (rc == 0) *hwm = info.high_watermark;
    return rc;
}

/* ---- produce -------------------------------------------------------------- */

/* Invariant 3: the producer state from the queue's tail. e->mu held. */
static int pstate_load(rn_hd_t *h, rn_qent_t *e, rn_datadir_queue_t *q, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_info_t info;
    rn_batch_header_t *hdrs = NULL;
    rn_buf_t buf = RN_BUF_INIT;
    size_t n = 0;
    uint64_t bytes = 0;
    int rc = rn_datadir_queue_info(h->d, q, &info, err);
    if (rc != 0) return fail_rc(st, rc, err);
    hdrs = malloc(TAIL_BATCHES * sizeof *hdrs);
    if (!hdrs) return OOM(st);
    int64_t off = info.high_watermark;
    while (off > info.log_start && n < TAIL_BATCHES && bytes < TAIL_BYTES) {
        uint32_t nb = 0;
        size_t size = 0;
        buf.len = 0;
        rc = rn_datadir_read(h->d, q, off - 1, 1, &buf, &nb, err);
        if (rc != 0) goto out;
        if (nb == 0) break;
        rc = rn_batch_size(buf.data, buf.len, &size);
        if (rc == 0)
            rc = rn_batch_parse_header(buf.data, size, &rn_batch_default_limits, &hdrs[n], err);
        if (rc != 0) goto out;
        if (hdrs[n].base_offset >= off) break;      /* cannot happen; never loop */
        off = hdrs[n].base_offset;
        bytes += size;
        n++;
    }
    for (size_t i = n; i-- > 0;) {
        rc = rn_pstate_record(&e->ps, &hdrs[i], hdrs[i].base_offset, 0, rn_sys.now_ms());
        if (rc != 0) goto out;
    }
    e->ps_loaded = 1;
out:
    free(hdrs);
    rn_buf_free(&buf);
    if (rc != 0) {
        rn_pstate_free(&e->ps);
        return rn_status_set(st, code_of(rc), "topic '%s' queue %u: rebuilding producer state: %s",
                             e->topic, e->queue, err[0] ? err : rn_strerror(rc));
    }
    return 0;
}

void rn_hd_produce_free(rn_produce_t *p)
{
    free(p->base);
    free(p->dup);
    free(p->tickets);
    p->base = NULL;
    p->dup = NULL;
    p->tickets = NULL;
}

int rn_hd_produce_begin(rn_hd_t *h, const Runnel__V1__ProduceRequest *req, rn_produce_t *p,
                        rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_batch_header_t *hdrs = NULL, *news = NULL;
    rn_datadir_queue_t *q = NULL;
    size_t n = req->n_batches, nnews = 0;
    int rc = -1, locked = 0;
    memset(p, 0, sizeof *p);
    p->t0_ns = rn_mono_ns();
    p->n = n;
    p->acks_written = req->acks == RUNNEL__V1__ACKS__ACKS_WRITTEN;
    if (req->acks != RUNNEL__V1__ACKS__ACKS_DURABLE && req->acks != RUNNEL__V1__ACKS__ACKS_WRITTEN)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "acks %d is not ACKS_DURABLE (0) or "
                             "ACKS_WRITTEN (1)", (int)req->acks);
    if (n == 0) return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "a produce request needs batches");
    if (n > MAX_BATCHES)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "%zu batches in one request; the limit "
                             "is %d", n, MAX_BATCHES);
    if (h->has_repl && h->repl.produce(h->repl.arg, req->topic ? req->topic : "", req->queue,
                                       &p->replicated, st) != 0)
        return -1;
    if (qent_get(h, req->topic, req->queue, &p->q, st) != 0) {
        if (st->code == RN_ST_NOT_FOUND) st->reason = RN_SR_NO_QUEUE;
        return -1;
    }
    rn_qent_t *e = p->q;
    hdrs = malloc(n * sizeof *hdrs);
    news = malloc(n * sizeof *news);
    p->base = calloc(n, sizeof *p->base);
    p->dup = calloc(n, sizeof *p->dup);
    p->tickets = calloc(n, sizeof *p->tickets);
    if (!hdrs || !news || !p->base || !p->dup || !p->tickets) { OOM(st); goto out; }
    /* Invariant 1: every batch is checked before anything is stored. */
    const int64_t wall = rn_sys.now_ms();
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *b = &req->batches[i];
        int v = rn_batch_validate(b->data, b->len, &h->lim, 1, &hdrs[i], err);
        if (v != 0) {
            rn_sreason_t why = v == RN_ETOOBIG ? RN_SR_BATCH_TOO_LARGE
                               : b->len > 16 && b->data[16] != 2 ? RN_SR_BATCH_FORMAT
                               : RN_SR_BATCH_CORRUPT;
            rn_status_setr(st, why,
                           v == RN_ETOOBIG ? RN_ST_RESOURCE_EXHAUSTED : RN_ST_INVALID_ARGUMENT,
                           "batch %zu of %zu (%zu bytes): %s", i + 1, n, b->len,
                           err[0] ? err : rn_strerror(v));
            goto out;
        }
        /* Invariant 6. */
        int64_t ahead = 0;
        int far = h->o.max_ts_ahead_ms > 0 &&
                  (__builtin_sub_overflow(hdrs[i].max_timestamp, wall, &ahead)
                       ? hdrs[i].max_timestamp > wall : ahead > h->o.max_ts_ahead_ms);
        if (far) {
            rn_status_setr(st, RN_SR_TIMESTAMP, RN_ST_INVALID_ARGUMENT, "batch %zu of %zu: a record timestamp "
                          "(%lld) is more than %lld ms ahead of the broker clock (%lld): refused, "
                          "as runneld --max-timestamp-ahead-ms says (Kafka's "
                          "message.timestamp.after.max.ms); nothing was stored", i + 1, n,
                          (long long)hdrs[i].max_timestamp, (long long)h->o.max_ts_ahead_ms,
                          (long long)wall);
            goto out;
        }
    }
    if (handle_get(h, e, &q, st) != 0) goto out;
    pthread_mutex_lock(&e->mu);
    locked = 1;
    if (!e->ps_loaded && pstate_load(h, e, q, st) != 0) goto out;
    const int64_t now = rn_sys.now_ms();
    for (size_t i = 0; i < n; i++) {
        rn_pbatch_t d;
        rn_status_t cst;
        /* A replicated queue's producers are known by its log, which every
         * replica holds, not by this node's registry (client/producer.c
         * invariant 9). */
        int cluster_id = h->has_repl && hdrs[i].producer_id >= RN_PREG_CLUSTER_ID_MIN;
        int v = rn_pstate_check(&e->ps, p->replicated || cluster_id ? NULL : h->reg, &hdrs[i],
                                news, nnews, &d, &cst);
        if (v < 0) {
            rn_status_setr(st, cst.reason, cst.code, "batch %zu of %zu: %s", i + 1, n, cst.msg);
            goto out;
        }
        if (v == 1) {
            p->dup[i] = 1;
            p->base[i] = d.base_offset;
            if (d.base_offset + hdrs[i].record_count > p->end)
                p->end = d.base_offset + hdrs[i].record_count;
            if (d.ticket) p->tickets[p->ntickets++] = d.ticket;
        } else {
            news[nnews++] = hdrs[i];
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (p->dup[i]) continue;
        const ProtobufCBinaryData *b = &req->batches[i];
        uint64_t t = 0;
        int a = rn_datadir_append(h->d, q, b->data, b->len, &p->base[i], &t, err);
        if (a != 0) {
            p->done = i;
            rn_status_set(st, code_of(a), "batch %zu of %zu: %s%s", i + 1, n,
                          err[0] ? err : rn_strerror(a),
                          i ? " (the batches before it were stored; a retry stores the rest)" : "");
            goto out;
        }
        p->tickets[p->ntickets++] = t;
        if (p->base[i] + hdrs[i].record_count > p->end) p->end = p->base[i] + hdrs[i].record_count;
        p->stored++;
        p->bytes += b->len;
        rn_metrics_produced(e->m, (uint64_t)hdrs[i].record_count, b->len);
        if (rn_pstate_record(&e->ps, &hdrs[i], p->base[i], t, now) != 0) { OOM(st); goto out; }
    }
    for (size_t i = 0; i < n; i++) p->dups += p->dup[i] ? 1 : 0;
    rc = 0;
out:
    if (locked) pthread_mutex_unlock(&e->mu);
    if (q) handle_put(e, q);
    atomic_fetch_add(&h->produced_batches, p->stored);
    atomic_fetch_add(&h->produced_bytes, p->bytes);
    atomic_fetch_add(&h->duplicate_batches, p->dups);
    free(hdrs);
    free(news);
    return rc;
}

int rn_hd_produce_wait(rn_hd_t *h, rn_produce_t *p, rn_status_t *st)
{
    for (size_t i = 0; i < p->ntickets; i++) {
        int rc = rn_datadir_wait(h->d, p->tickets[i]);
        if (rc != 0)
            return rn_status_set(st, code_of(rc), "topic '%s' queue %u: the batches were written "
                                 "but are not durable: %s", p->q->topic, p->q->queue,
                                 rn_strerror(rc));
    }
    if (p->t0_ns) rn_metrics_acked(p->t0_ns);
    return 0;
}

int rn_hd_produce_replicated(rn_hd_t *h, rn_produce_t *p, rn_status_t *st)
{
    if (!p->replicated || !h->has_repl || !p->q) return 0;
    return h->repl.wait(h->repl.arg, p->q->topic, p->q->queue, p->end, st);
}

int rn_hd_produce_answer(rn_hd_t *h, rn_produce_t *p, rn_arena_t *a, ProtobufCMessage **resp,
                         rn_status_t *st)
{
    Runnel__V1__ProduceResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__produce_response__init(r);
    r->n_base_offsets = p->n;
    r->base_offsets = p->base;
    r->n_duplicates = p->n;
    r->duplicates = p->dup;
    int64_t hwm = 0;
    Runnel__V1__FetchRequest fr;
    runnel__v1__fetch_request__init(&fr);
    fr.topic = p->q->topic;
    fr.queue = p->q->queue;
    if (rn_hd_fetch_visible(h, &fr, p->q, &hwm) != 0) hwm = 0;
    r->high_watermark = hwm;
    *resp = &r->base;
    return 0;
}

int rn_hd_produce_partial(rn_hd_t *h, rn_produce_t *p, rn_arena_t *a, ProtobufCMessage **resp,
                          rn_status_t *st)
{
    int rc = rn_hd_produce_answer(h, p, a, resp, st);
    if (rc != 0) return rc;
    Runnel__V1__ProduceResponse *r = (Runnel__V1__ProduceResponse *)*resp;
    r->n_base_offsets = r->n_duplicates = p->done;
    return 0;
}

/* ---- fetch ---------------------------------------------------------------- */

/* Keep the whole batches of buf[from..] below limit (a replicated queue's
 * high watermark: a batch is on every in-sync replica or not). */
static void cut_at(rn_buf_t *buf, size_t from, rn_fetch_t *f, int64_t limit)
{
    size_t at = from;
    uint32_t n = 0;
    while (at + 12 <= buf->len) {
        const uint8_t *b = buf->data + at;
        size_t size = 12 + (size_t)rn_be32_get(b + 8);
        if ((int64_t)rn_be64_get(b) >= limit || at + size > buf->len) break;
        at += size;
        n++;
    }
    buf->len = at;
    f->nbatches = n;
    if (f->high_watermark > limit) f->high_watermark = limit;
}

/* The cluster hook for a consumer of q at offset (< 0: the limit only):
 * *limit -1 when nothing limits it. */
static int consumer_hook(rn_hd_t *h, rn_qent_t *q, int64_t offset, int64_t *limit,
                         rn_status_t *st)
{
    *limit = -1;
    if (!h->has_repl) return 0;
    Runnel__V1__FetchRequest lr;
    runnel__v1__fetch_request__init(&lr);
    lr.topic = q->topic;
    lr.queue = q->queue;
    lr.offset = offset;
    return h->repl.fetch(h->repl.arg, &lr, limit, st);
}

int rn_hd_read_visible(rn_hd_t *h, rn_qent_t *q, int64_t offset, uint32_t max_bytes,
                       rn_buf_t *out, rn_fetch_t *f, rn_status_t *st)
{
    int64_t limit;
    if (consumer_hook(h, q, offset, &limit, st) != 0) return -1;
    size_t from = out->len;
    int rc = rn_hd_read(h, q, offset, max_bytes, out, f, st);
    if (rc == 0 && limit >= 0) cut_at(out, from, f, limit);
    return rc;
}

int rn_hd_visible_end(rn_hd_t *h, rn_qent_t *q, int64_t *end, rn_status_t *st)
{
    int64_t limit;
    if (consumer_hook(h, q, -1, &limit, st) != 0) return -1;
    if (rn_hd_queue_hwm(h, q, end) != 0)
        return rn_status_set(st, RN_ST_UNAVAILABLE, "%s/%u: its end cannot be read", q->topic,
                             q->queue);
    if (limit >= 0 && limit < *end) *end = limit;
    return 0;
}

int rn_hd_clustered(rn_hd_t *h) { return h->has_repl; }

int rn_hd_fetch(rn_hd_t *h, const Runnel__V1__FetchRequest *req, rn_fetch_t *f, rn_status_t *st)
{
    f->records.len = 0;
    f->nbatches = 0;
    int64_t limit = -1;
    if (h->has_repl && h->repl.fetch(h->repl.arg, req, &limit, st) != 0) return -1;
    if (!f->q && qent_get(h, req->topic, req->queue, &f->q, st) != 0) return -1;
    int rc = rn_hd_read(h, f->q, req->offset, req->max_bytes, &f->records, f, st);
    if (rc == 0 && limit >= 0) cut_at(&f->records, 0, f, limit);
    return rc;
}

int rn_hd_fetch_visible(rn_hd_t *h, const Runnel__V1__FetchRequest *req, rn_qent_t *q,
                        int64_t *hwm)
{
    if (rn_hd_queue_hwm(h, q, hwm) != 0) return -1;
    if (!h->has_repl || req->replica_id) return 0;
    int64_t limit = -1;
    rn_status_t st;
    Runnel__V1__FetchRequest lr;
    runnel__v1__fetch_request__init(&lr);
    lr.topic = q->topic;
    lr.queue = q->queue;
    lr.offset = -1;
    if (h->repl.fetch(h->repl.arg, &lr, &limit, &st) != 0) return 0;
    if (limit >= 0 && limit < *hwm) *hwm = limit;
    return 0;
}

void rn_hd_set_repl(rn_hd_t *h, const rn_hd_repl_t *r)
{
    h->repl = *r;
    h->has_repl = 1;
}

void rn_hd_set_waker(rn_hd_t *h, void (*fn)(void *arg, rn_qent_t *q), void *arg)
{
    h->waker = fn;
    h->waker_arg = arg;
}

void rn_hd_wake(rn_hd_t *h, const char *topic, uint32_t queue)
{
    rn_qent_t *e;
    rn_status_t st;
    if (h->waker && qent_get(h, topic, queue, &e, &st) == 0) h->waker(h->waker_arg, e);
}

int rn_hd_replica_append(rn_hd_t *h, const char *topic, uint32_t queue, const uint8_t *batch,
                         size_t len, int64_t base, uint64_t *ticket, char *errmsg)
{
    rn_qent_t *e;
    rn_status_t st;
    rn_datadir_queue_t *q;
    if (qent_get(h, topic, queue, &e, &st) != 0 || handle_get(h, e, &q, &st) != 0)
        return rn_errf(errmsg, RN_ENOTFOUND, "%s", st.msg);
    pthread_mutex_lock(&e->mu);                                    /* invariant 2 */
    int rc = rn_datadir_append_at(h->d, q, batch, len, base, ticket, errmsg);
    if (e->ps_loaded) {
        rn_pstate_free(&e->ps);
        e->ps_loaded = 0;
    }
    pthread_mutex_unlock(&e->mu);
    handle_put(e, q);
    if (rc == 0 && len >= 61) {
        atomic_fetch_add(&h->produced_batches, 1);
        atomic_fetch_add(&h->produced_bytes, len);
        rn_metrics_produced(e->m, rn_be32_get(batch + 57), len);
    }
    return rc;
}

int rn_hd_wait(rn_hd_t *h, uint64_t ticket) { return rn_datadir_wait(h->d, ticket); }

int rn_hd_truncate(rn_hd_t *h, const char *topic, uint32_t queue, int64_t end, char *errmsg)
{
    rn_qent_t *e;
    rn_status_t st;
    if (qent_get(h, topic, queue, &e, &st) != 0)
        return rn_errf(errmsg, RN_ENOTFOUND, "%s", st.msg);
    pthread_mutex_lock(&e->mu);                                    /* invariant 2 */
    int rc = rn_datadir_truncate(h->d, topic, queue, end, errmsg);
    if (e->ps_loaded) {
        rn_pstate_free(&e->ps);
        e->ps_loaded = 0;
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int rn_hd_read(rn_hd_t *h, rn_qent_t *e, int64_t offset, uint32_t max_bytes, rn_buf_t *out,
               rn_fetch_t *f, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t *q;
    size_t max = max_bytes ? max_bytes : h->o.fetch_default_bytes;
    if (max > h->o.fetch_max_bytes) max = h->o.fetch_max_bytes;
    if (handle_get(h, e, &q, st) != 0) return -1;
    f->nbatches = 0;
    size_t from = out->len;
    int rc = rn_datadir_read(h->d, q, offset, max, out, &f->nbatches, err);
    rn_datadir_queue_info_t info;
    if (rc == 0) rc = rn_datadir_queue_info(h->d, q, &info, err);
    handle_put(e, q);
    if (rc != 0) return fail_rc(st, rc, err);
    f->q = e;
    f->high_watermark = info.high_watermark;
    f->log_start = info.log_start;
    atomic_fetch_add(&h->fetched_batches, f->nbatches);
    rn_metrics_fetched(e->m, out->data + from, out->len - from, f->nbatches);
    return 0;
}

int rn_hd_queue(rn_hd_t *h, const char *topic, uint32_t queue, rn_qent_t **out, rn_status_t *st)
{
    return qent_get(h, topic, queue, out, st);
}

int rn_hd_fetch_answer(rn_hd_t *h, rn_fetch_t *f, rn_arena_t *a, ProtobufCMessage **resp)
{
    Runnel__V1__FetchResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return -1;
    runnel__v1__fetch_response__init(r);
    r->records.data = f->records.data;
    r->records.len = f->records.len;
    r->batch_count = f->nbatches;
    r->high_watermark = f->high_watermark;
    r->log_start_offset = f->log_start;
    *resp = &r->base;
    return 0;
}

void rn_hd_fetch_free(rn_fetch_t *f)
{
    rn_buf_free(&f->records);
}

/* ---- offsets and producers ----------------------------------------------------- */

int rn_hd_producer_init(rn_hd_t *h, int64_t id, int64_t *out_id, int16_t *out_epoch,
                        char *errmsg)
{
    return rn_preg_init(h->reg, id, out_id, out_epoch, errmsg);
}

int rn_hd_init_producer(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                        ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__InitProducerRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    int64_t id;
    int16_t epoch;
    int rc = rn_preg_init(h->reg, req->producer_id, &id, &epoch, err);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__InitProducerResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__init_producer_response__init(r);
    r->producer_id = id;
    r->producer_epoch = epoch;
    *resp = &r->base;
    return 0;
}

int rn_hd_offset_at(rn_hd_t *h, const char *topic, uint32_t queue, rn_datadir_pos_kind_t kind,
                    int64_t value, int64_t *offset, rn_datadir_queue_info_t *info,
                    rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_qent_t *e;
    rn_datadir_queue_t *q;
    if (qent_get(h, topic, queue, &e, st) != 0 || handle_get(h, e, &q, st) != 0) return -1;
    int rc = rn_datadir_resolve(h->d, q, kind, value, offset, err);
    if (rc == 0) rc = rn_datadir_queue_info(h->d, q, info, err);
    handle_put(e, q);
    return rc != 0 ? fail_rc(st, rc, err) : 0;
}

int rn_hd_list_offsets(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                       ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__ListOffsetsRequest *req = (const void *)m;
    rn_datadir_pos_kind_t kind;
    int64_t value = 0;
    switch (req->spec_case) {
    case RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_EARLIEST: kind = RN_POS_EARLIEST; break;
    case RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST: kind = RN_POS_LATEST; break;
    case RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_TIMESTAMP_MS:
        kind = RN_POS_TIME;
        value = req->timestamp_ms;
        break;
    default:
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "ListOffsets needs earliest, latest or "
                             "timestamp_ms");
    }
    int64_t off = 0;
    rn_datadir_queue_info_t info;
    if (rn_hd_offset_at(h, req->topic, req->queue, kind, value, &off, &info, st) != 0)
        return -1;
    Runnel__V1__ListOffsetsResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__list_offsets_response__init(r);
    r->offset = off;
    r->high_watermark = info.high_watermark;
    r->log_start_offset = info.log_start;
    *resp = &r->base;
    return 0;
}

/* ---- topics, queues, stores ------------------------------------------------ */

/* One queue's range and mapping items into a QueueInfo. */
static int queue_info(rn_hd_t *h, const char *topic, uint32_t queue, rn_arena_t *a,
                      Runnel__V1__QueueInfo **out, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t q;
    rn_datadir_queue_info_t info;
    int rc = rn_datadir_queue_open(h->d, topic, queue, &q, err);
    if (rc != 0) return fail_rc(st, rc, err);
    rc = rn_datadir_queue_info(h->d, &q, &info, err);
    if (rc != 0) {
        rn_datadir_queue_close(&q);
        return fail_rc(st, rc, err);
    }
    Runnel__V1__QueueInfo *qi = rn_arena_alloc(a, sizeof *qi);
    Runnel__V1__MappingItem **items = rn_arena_alloc(a, q.nitems * sizeof *items);
    if (!qi || !items) goto oom;
    runnel__v1__queue_info__init(qi);
    qi->queue = queue;
    qi->log_start_offset = info.log_start;
    qi->high_watermark = info.high_watermark;
    qi->batches = info.batches;
    for (size_t k = 0; k < q.nitems; k++) {
        const rn_meta_item_t *it = &q.items[k];
        Runnel__V1__MappingItem *mi = rn_arena_alloc(a, sizeof *mi);
        if (!mi) goto oom;
        runnel__v1__mapping_item__init(mi);
        mi->seq = it->seq;
        mi->logical_start = it->logical_start;
        mi->store_id = it->store_id;
        mi->physical_queue = it->physical_id;
        mi->physical_start = it->physical_start;
        mi->physical_end = it->physical_end;
        items[k] = mi;
    }
    qi->n_items = q.nitems;
    qi->items = items;
    rn_datadir_queue_close(&q);
    *out = qi;
    return 0;
oom:
    rn_datadir_queue_close(&q);
    return OOM(st);
}

/* A TopicInfo for t; with queues: every queue's range and items. */
static int topic_info(rn_hd_t *h, const rn_meta_topic_t *t, int with_queues, rn_arena_t *a,
                      Runnel__V1__TopicInfo **out, rn_status_t *st)
{
    Runnel__V1__TopicInfo *ti = rn_arena_alloc(a, sizeof *ti);
    if (!ti) return OOM(st);
    runnel__v1__topic_info__init(ti);
    ti->name = arena_strdup(a, t->name);
    if (!ti->name) return OOM(st);
    ti->queue_count = t->queues;
    ti->created_ms = t->created_ms;
    if (with_queues) {
        ti->queues = rn_arena_alloc(a, t->queues * sizeof *ti->queues);
        if (!ti->queues) return OOM(st);
        for (uint32_t i = 0; i < t->queues; i++)
            if (queue_info(h, t->name, i, a, &ti->queues[i], st) != 0) return -1;
        ti->n_queues = t->queues;
    }
    *out = ti;
    return 0;
}

/* Look a topic up by name (metadata under the lock, invariant 4). */
static int topic_get(rn_hd_t *h, const char *name, rn_meta_topic_t *t, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_t *m = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_topic_get(m, name, t, err);
    rn_datadir_meta_unlock(h->d);
    return rc != 0 ? fail_rc(st, rc, err) : 0;
}

static int topic_answer(rn_hd_t *h, const char *name, int with_queues, rn_arena_t *a,
                        ProtobufCMessage **resp, rn_status_t *st)
{
    rn_meta_topic_t t;
    Runnel__V1__TopicInfo *ti;
    if (topic_get(h, name, &t, st) != 0 || topic_info(h, &t, with_queues, a, &ti, st) != 0)
        return -1;
    *resp = &ti->base;
    return 0;
}


int rn_hd_create_topic(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                       ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__CreateTopicRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    uint32_t queues = req->queues ? req->queues : 1;
    int rc = rn_meta_check_topic_name(req->name, err);
    if (rc != 0) return fail_rc(st, rc, err);
    int local = 1;
    if (h->has_repl) {                  /* the controller's topic, made here too */
        local = h->repl.create_topic(h->repl.arg, req, st);
        if (local < 0) return -1;
    }
    if (local) rc = rn_datadir_topic_create(h->d, req->name, queues, &t, err);
    else if (topic_get(h, req->name, &t, st) != 0) return -1;
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__TopicInfo *ti;
    if (topic_info(h, &t, 0, a, &ti, st) != 0) return -1;
    *resp = &ti->base;
    return 0;
}

/* Remapping a queue of a replicated topic is not replicated
 * (cluster/README.md): refused rather than done on one node only. */
static int refuse_replicated(rn_hd_t *h, const char *topic, const char *what, rn_status_t *st)
{
    if (!h->has_repl) return 0;
    int r = h->repl.replicated(h->repl.arg, topic ? topic : "", st);
    if (r < 0) return -1;
    if (r == 0) return 0;
    return rn_status_set(st, RN_ST_FAILED_PRECONDITION, "topic '%s' is replicated across the "
                         "cluster, and %s a replicated topic is not supported yet (it would "
                         "change one node only)", topic, what);
}

int rn_hd_alter_topic(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__AlterTopicRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    int local = h->has_repl ? h->repl.alter_topic(h->repl.arg, req, st) : 1;
    if (local < 0) return -1;
    if (!local) {
        if (topic_get(h, req->name, &t, st) != 0) return -1;
    } else {
        int rc = rn_datadir_topic_alter(h->d, req->name, req->queues, &t, err);
        if (rc != 0) return fail_rc(st, rc, err);
    }
    Runnel__V1__TopicInfo *ti;
    if (topic_info(h, &t, 1, a, &ti, st) != 0) return -1;
    *resp = &ti->base;
    return 0;
}

static int topic_delete(rn_hd_t *h, const char *name, int forwarded, rn_status_t *st)
{
    int local = h->has_repl ? h->repl.delete_topic(h->repl.arg, name ? name : "", forwarded, st)
                            : 1;
    if (local < 0) return -1;
    if (local) return rn_hd_topic_delete_local(h, name, st);
    /* Deleted in the cluster: this node's copy now (the others' managers
     * delete theirs); the manager may have been first. */
    if (rn_hd_topic_delete_local(h, name, st) != 0 && st->code != RN_ST_NOT_FOUND) return -1;
    st->code = RN_ST_OK;
    st->msg[0] = '\0';
    return 0;
}

int rn_hd_topic_delete(rn_hd_t *h, const char *name, rn_status_t *st)
{
    return topic_delete(h, name, 0, st);
}

int rn_hd_topic_delete_local(rn_hd_t *h, const char *name, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    int rc = rn_datadir_topic_delete(h->d, name ? name : "", NULL, err);
    if (rc != 0) return fail_rc(st, rc, err);
    /* The entries of its queues stay (never freed before close); their
     * handles re-resolve by name, and their producer state, which describes
     * the deleted queues, is rebuilt on the next Produce (invariant 3). */
    pthread_mutex_lock(&h->tmu);
    for (size_t b = 0; b < QBUCKETS; b++)
        for (rn_qent_t *e = h->buckets[b]; e; e = e->next) {
            if (strcmp(e->topic, name)) continue;
            pthread_mutex_lock(&e->mu);
            rn_pstate_free(&e->ps);
            e->ps_loaded = 0;
            pthread_mutex_unlock(&e->mu);
        }
    pthread_mutex_unlock(&h->tmu);
    return 0;
}

int rn_hd_delete_topic(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                       ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__DeleteTopicRequest *req = (const void *)m;
    if (topic_delete(h, req->name, req->forwarded, st) != 0) return -1;
    Runnel__V1__DeleteTopicResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__delete_topic_response__init(r);
    *resp = &r->base;
    return 0;
}

int rn_hd_list_topics(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t *v = NULL;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_topic_list(meta, &v, &n, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__ListTopicsResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__TopicInfo **ts = rn_arena_alloc(a, n * sizeof *ts);
    rc = !r || !ts ? OOM(st) : 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = topic_info(h, &v[i], 0, a, &ts[i], st);
    free(v);
    if (rc != 0) return -1;
    runnel__v1__list_topics_response__init(r);
    r->n_topics = n;
    r->topics = ts;
    *resp = &r->base;
    return 0;
}

int rn_hd_describe_topic(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__DescribeTopicRequest *req = (const void *)m;
    return topic_answer(h, req->name, 1, a, resp, st);
}

int rn_hd_remap_queue(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__RemapQueueRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    if (refuse_replicated(h, req->topic, "remapping a queue of", st) != 0) return -1;
    const char *store = req->store_path && req->store_path[0] ? req->store_path : NULL;
    char abs[PATH_MAX];
    if (store && !h->o.store_root)
        return rn_status_set(st, RN_ST_PERMISSION_DENIED, "store_path: a new store is not "
                             "created over the network: start runneld with --store-root DIR "
                             "to allow stores inside DIR (runnel --data DIR queue remap --store "
                             "works on a stopped broker)");
    if (store) {
        int rc = rn_root_dir(h->o.store_root, store, abs, sizeof abs, err);
        if (rc == -EPERM) return rn_status_set(st, RN_ST_PERMISSION_DENIED, "store_path: %s", err);
        if (rc != 0) return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "store_path: %s", err);
        store = abs;
    }
    int rc = rn_datadir_remap(h->d, req->topic, req->queue, store, NULL, NULL, err);
    if (rc != 0 && store && is_path_error(rc))
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "store_path: %s",
                             err[0] ? err : rn_strerror(rc));
    if (rc != 0) return fail_rc(st, rc, err);
    return topic_answer(h, req->topic, 1, a, resp, st);
}

int rn_hd_list_stores(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_store_info_t *v = NULL;
    size_t n = 0;
    int rc = rn_datadir_stores(h->d, &v, &n, err);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__ListStoresResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__StoreInfo **ss = rn_arena_alloc(a, n * sizeof *ss);
    rc = !r || !ss ? -1 : 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Runnel__V1__StoreInfo *si = rn_arena_alloc(a, sizeof *si);
        if (!si) { rc = -1; break; }
        ss[i] = si;
        runnel__v1__store_info__init(si);
        si->id = v[i].id;
        si->path = arena_strdup(a, v[i].path);
        si->bytes = v[i].bytes;
        if (!si->path) rc = -1;
    }
    free(v);
    if (rc != 0) return OOM(st);
    runnel__v1__list_stores_response__init(r);
    r->n_stores = n;
    r->stores = ss;
    *resp = &r->base;
    return 0;
}

/* ---- groups and checkpoints ----------------------------------------------- */

/* QueueOffsets from meta offsets (their topic names filled). */
static int offsets_msg(rn_arena_t *a, const rn_meta_offset_t *v, size_t n,
                       Runnel__V1__QueueOffset ***out)
{
    Runnel__V1__QueueOffset **qo = rn_arena_alloc(a, n * sizeof *qo);
    if (!qo) return -1;
    for (size_t i = 0; i < n; i++) {
        Runnel__V1__QueueOffset *o = rn_arena_alloc(a, sizeof *o);
        if (!o) return -1;
        runnel__v1__queue_offset__init(o);
        o->topic = arena_strdup(a, v[i].topic);
        if (!o->topic) return -1;
        o->queue = v[i].queue;
        o->offset = v[i].offset;
        qo[i] = o;
    }
    *out = qo;
    return 0;
}

/* 1 with st set (FAILED_PRECONDITION, the guard's message) when another
 * front has live members in group, so that neither a reset nor a commit
 * from outside moves their positions under them; else 0. */
static int group_guarded(rn_hd_t *h, const char *group, rn_status_t *st)
{
    pthread_mutex_lock(&h->gmu);
    char why[RN_ERRMSG_SIZE] = "";
    int refused = h->guard && h->guard(h->guard_arg, group, why, sizeof why) != 0;
    pthread_mutex_unlock(&h->gmu);
    if (refused) rn_status_set(st, RN_ST_FAILED_PRECONDITION, "%s", why);
    return refused;
}

/* In a cluster: how many of the request's topics the controller replicates
 * (-1 with st when this node cannot tell yet); 0 on a single node. */
static int count_replicated(rn_hd_t *h, Runnel__V1__QueueOffset *const *o, size_t n,
                            rn_status_t *st)
{
    int k = 0;
    for (size_t i = 0; h->has_repl && h->repl.commit_offsets && i < n; i++) {
        int rep = h->repl.replicated(h->repl.arg, o[i]->topic, st);
        if (rep < 0) return -1;
        k += rep;
    }
    return k;
}

int rn_hd_commit_offsets(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__CommitOffsetsRequest *req = (const void *)m;
    if (group_guarded(h, req->group, st)) return -1;
    uint64_t index = 0;
    if (rn_hd_commit_offsets_req(h, req, &index, st) != 0) return -1;
    Runnel__V1__CommitOffsetsResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__commit_offsets_response__init(r);
    r->cluster_index = index;
    *resp = &r->base;
    return 0;
}

int rn_hd_commit_offsets_req(rn_hd_t *h, const Runnel__V1__CommitOffsetsRequest *req,
                             uint64_t *index, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    size_t n = req->n_offsets;
    int rc = rn_meta_check_name("group", req->group, err);
    if (rc != 0) return fail_rc(st, rc, err);
    if (n == 0) return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "CommitOffsets needs offsets");
    *index = 0;
    /* Invariant 9: replicated topics' offsets go through the controller. */
    int nrepl = count_replicated(h, req->offsets, n, st);
    if (nrepl < 0) return -1;
    if (nrepl && (size_t)nrepl != n)
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "CommitOffsets of group '%s' mixes "
                             "topics replicated across the cluster with topics of this node "
                             "only: commit each kind in its own request", req->group);
    rn_meta_offset_t *v = calloc(n, sizeof *v);
    if (!v) return OOM(st);
    /* One critical section: every offset checked against its queue's range
     * (rn_datadir_resolve, as rn_group_commit does), then one transaction.
     * A forwarded commit was checked by the node that passed it on. */
    rn_datadir_meta_lock(h->d);
    for (size_t i = 0; i < n && rc == 0 && !(nrepl && req->forwarded); i++) {
        const Runnel__V1__QueueOffset *o = req->offsets[i];
        rn_datadir_queue_t q;
        int64_t got;
        rc = rn_datadir_queue_open(h->d, o->topic, o->queue, &q, err);
        if (rc != 0) break;
        rc = rn_datadir_resolve(h->d, &q, RN_POS_OFFSET, o->offset, &got, err);
        v[i].topic_id = q.topic.id;
        v[i].queue = o->queue;
        v[i].offset = o->offset;
        rn_datadir_queue_close(&q);
    }
    if (rc == 0 && !nrepl) rc = rn_group_commit_offsets(h->d, req->group, v, n, err);
    rn_datadir_meta_unlock(h->d);
    free(v);
    if (rc != 0) return fail_rc(st, rc, err);
    if (nrepl && h->repl.commit_offsets(h->repl.arg, req, index, st) != 0) return -1;
    return 0;
}

/* A FetchOffsetsResponse with the group's offsets on topic_id (< 0: all). */
static int group_offsets(rn_hd_t *h, const char *group, int64_t topic_id, rn_arena_t *a,
                         ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_offsets_get(meta, group, topic_id, &v, &n, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__FetchOffsetsResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__QueueOffset **qo = NULL;
    rc = !r || offsets_msg(a, v, n, &qo) != 0 ? -1 : 0;
    free(v);
    if (rc != 0) return OOM(st);
    runnel__v1__fetch_offsets_response__init(r);
    r->group = arena_strdup(a, group);
    if (!r->group) return OOM(st);
    r->n_offsets = n;
    r->offsets = qo;
    *resp = &r->base;
    return 0;
}

int rn_hd_fetch_offsets(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                        ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__FetchOffsetsRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    int64_t topic_id = -1;
    int rc = rn_meta_check_name("group", req->group, err);
    if (rc != 0) return fail_rc(st, rc, err);
    if (req->topic && req->topic[0]) {
        rn_meta_topic_t t;
        if (topic_get(h, req->topic, &t, st) != 0) return -1;
        topic_id = t.id;
    }
    return group_offsets(h, req->group, topic_id, a, resp, st);
}

int rn_hd_list_groups(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_group_t *v = NULL;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_group_list(meta, &v, &n, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__ListGroupsResponse *r = rn_arena_alloc(a, sizeof *r);
    char **names = rn_arena_alloc(a, n * sizeof *names);
    rc = !r || !names ? -1 : 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!(names[i] = arena_strdup(a, v[i].name))) rc = -1;
    free(v);
    if (rc != 0) return OOM(st);
    runnel__v1__list_groups_response__init(r);
    r->n_groups = n;
    r->groups = names;
    *resp = &r->base;
    return 0;
}

/* Invariant 9: a reset in a cluster. The queues it covers (topic's, or
 * those group has offsets on); none replicated: 0 (the local reset). All
 * replicated, to earliest, latest or a time: each resolved against this
 * node's replica of the queue, then committed through the controller like
 * a CommitOffsets of them all (one entry, atomic); 1. -1 with st when the
 * queues mix replicated and local topics, the target is a checkpoint
 * (checkpoints are each node's own), or the commit fails. */
static int reset_in_cluster(rn_hd_t *h, const char *group, const char *topic,
                            const rn_meta_topic_t *t, const rn_group_target_t *to,
                            rn_status_t *st)
{
    if (!h->has_repl || !h->repl.commit_offsets) return 0;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_offsets_get(meta, group, -1, &v, &n, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    if (topic) {                        /* every queue of topic instead */
        free(v);
        n = t->queues;
        v = calloc(n ? n : 1, sizeof *v);
        if (!v) return OOM(st);
        for (size_t i = 0; i < n; i++) {
            snprintf(v[i].topic, sizeof v[i].topic, "%s", topic);
            v[i].queue = (uint32_t)i;
        }
    }
    size_t nrep = 0;
    const char *hit = NULL;
    for (size_t i = 0; i < n; i++) {
        int rep = h->repl.replicated(h->repl.arg, v[i].topic, st);
        if (rep < 0) {
            free(v);
            return -1;
        }
        if (rep) {
            nrep++;
            hit = v[i].topic;
        }
    }
    if (nrep == 0) {
        free(v);
        return 0;
    }
    if (nrep != n || to->kind == RN_TARGET_CHECKPOINT) {
        rn_status_set(st, RN_ST_FAILED_PRECONDITION, nrep != n ?
                      "group '%s' has offsets on topic '%s', which is replicated across the "
                      "cluster, and on topics of this node only: reset each with --topic T" :
                      "group '%s' has offsets on topic '%s', which is replicated across the "
                      "cluster, and checkpoints are each node's own: resetting there to a "
                      "checkpoint is not supported yet (reset to earliest, latest or a time, "
                      "or commit the offsets wanted)", group, hit);
        free(v);
        return -1;
    }
    Runnel__V1__QueueOffset *qo = calloc(n, sizeof *qo);
    Runnel__V1__QueueOffset **qp = calloc(n, sizeof *qp);
    rc = qo && qp ? 0 : -ENOMEM;
    rn_datadir_pos_kind_t kind = to->kind == RN_TARGET_LATEST ? RN_POS_LATEST
                                 : to->kind == RN_TARGET_TIME ? RN_POS_TIME : RN_POS_EARLIEST;
    rn_datadir_meta_lock(h->d);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rn_datadir_queue_t q;
        int64_t off = 0;
        rc = rn_datadir_queue_open(h->d, v[i].topic, v[i].queue, &q, err);
        if (rc != 0) break;
        rc = rn_datadir_resolve(h->d, &q, kind, to->value, &off, err);
        rn_datadir_queue_close(&q);
        runnel__v1__queue_offset__init(&qo[i]);
        qo[i].topic = v[i].topic;
        qo[i].queue = v[i].queue;
        qo[i].offset = off;
        qp[i] = &qo[i];
    }
    rn_datadir_meta_unlock(h->d);
    uint64_t index = 0;
    if (rc == -ENOMEM) {
        OOM(st);
    } else if (rc != 0) {
        fail_rc(st, rc, err);
    } else {
        Runnel__V1__CommitOffsetsRequest req = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
        req.group = (char *)group;
        req.n_offsets = n;
        req.offsets = qp;
        rc = h->repl.commit_offsets(h->repl.arg, &req, &index, st);
    }
    free(qo);
    free(qp);
    free(v);
    return rc == 0 ? 1 : -1;
}

int rn_hd_reset_group(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                      ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__ResetGroupRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_group_target_t to;
    memset(&to, 0, sizeof to);
    switch (req->to_case) {
    case RUNNEL__V1__RESET_GROUP_REQUEST__TO_EARLIEST: to.kind = RN_TARGET_EARLIEST; break;
    case RUNNEL__V1__RESET_GROUP_REQUEST__TO_LATEST: to.kind = RN_TARGET_LATEST; break;
    case RUNNEL__V1__RESET_GROUP_REQUEST__TO_TIMESTAMP_MS:
        to.kind = RN_TARGET_TIME;
        to.value = req->timestamp_ms;
        break;
    case RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT:
        to.kind = RN_TARGET_CHECKPOINT;
        if (rn_meta_check_name("checkpoint", req->checkpoint, err) != 0)
            return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "%s", err);
        snprintf(to.checkpoint, sizeof to.checkpoint, "%s", req->checkpoint);
        break;
    default:
        return rn_status_set(st, RN_ST_INVALID_ARGUMENT, "ResetGroup needs earliest, latest, "
                             "timestamp_ms or checkpoint");
    }
    int rc = rn_meta_check_name("group", req->group, err);
    if (rc != 0) return fail_rc(st, rc, err);
    const char *topic = req->topic && req->topic[0] ? req->topic : NULL;
    int64_t topic_id = -1;
    rn_meta_topic_t t;
    memset(&t, 0, sizeof t);
    if (topic) {
        if (topic_get(h, topic, &t, st) != 0) return -1;
        topic_id = t.id;
    }
    if (group_guarded(h, req->group, st)) return -1;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    rn_meta_group_t gr;
    rc = rn_meta_group_get(meta, req->group, &gr, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    int cl = reset_in_cluster(h, req->group, topic, &t, &to, st);
    if (cl < 0) return -1;
    if (cl > 0) return group_offsets(h, req->group, topic_id, a, resp, st);
    rn_group_change_t *chg = NULL;
    size_t n = 0;
    rc = rn_group_reset(h->d, req->group, topic, &to, &chg, &n, err);
    free(chg);
    if (rc != 0) return fail_rc(st, rc, err);
    /* The group's offsets as they are now, on the topics the reset covered. */
    return group_offsets(h, req->group, topic_id, a, resp, st);
}

/* A Checkpoint message with its offsets. meta locked by the caller. */
static int checkpoint_msg(rn_meta_t *meta, const rn_meta_checkpoint_t *cp, rn_arena_t *a,
                          Runnel__V1__Checkpoint **out, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    int rc = rn_meta_checkpoint_offsets(meta, cp->id, &v, &n, err);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__Checkpoint *c = rn_arena_alloc(a, sizeof *c);
    Runnel__V1__QueueOffset **qo = NULL;
    rc = !c || offsets_msg(a, v, n, &qo) != 0 ? -1 : 0;
    free(v);
    if (rc != 0) return OOM(st);
    runnel__v1__checkpoint__init(c);
    c->group = arena_strdup(a, cp->group);
    c->name = arena_strdup(a, cp->name);
    if (!c->group || !c->name) return OOM(st);
    c->created_ms = cp->created_ms;
    c->n_offsets = n;
    c->offsets = qo;
    *out = c;
    return 0;
}

int rn_hd_create_checkpoint(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                            ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__CreateCheckpointRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_checkpoint_t cp;
    Runnel__V1__Checkpoint *c = NULL;
    int rc = rn_meta_check_name("group", req->group, err);
    if (rc == 0) rc = rn_meta_check_name("checkpoint", req->name, err);
    if (rc != 0) return fail_rc(st, rc, err);
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    rc = rn_meta_checkpoint_create(meta, req->group, req->name, &cp, err);
    if (rc != 0) fail_rc(st, rc, err);
    else rc = checkpoint_msg(meta, &cp, a, &c, st);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return -1;
    *resp = &c->base;
    return 0;
}

int rn_hd_list_checkpoints(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                           ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__ListCheckpointsRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    const char *group = req->group && req->group[0] ? req->group : NULL;
    rn_meta_checkpoint_t *v = NULL;
    rn_meta_group_t g;
    size_t n = 0;
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = group ? rn_meta_group_get(meta, group, &g, err) : 0;
    if (rc == 0) rc = rn_meta_checkpoint_list(meta, group, &v, &n, err);
    if (rc != 0) {
        rn_datadir_meta_unlock(h->d);
        return fail_rc(st, rc, err);
    }
    Runnel__V1__ListCheckpointsResponse *r = rn_arena_alloc(a, sizeof *r);
    Runnel__V1__Checkpoint **cs = rn_arena_alloc(a, n * sizeof *cs);
    rc = !r || !cs ? OOM(st) : 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = checkpoint_msg(meta, &v[i], a, &cs[i], st);
    rn_datadir_meta_unlock(h->d);
    free(v);
    if (rc != 0) return -1;
    runnel__v1__list_checkpoints_response__init(r);
    r->n_checkpoints = n;
    r->checkpoints = cs;
    *resp = &r->base;
    return 0;
}

int rn_hd_drop_checkpoint(rn_hd_t *h, const ProtobufCMessage *m, rn_arena_t *a,
                          ProtobufCMessage **resp, rn_status_t *st)
{
    const Runnel__V1__DropCheckpointRequest *req = (const void *)m;
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_t *meta = rn_datadir_meta_lock(h->d);
    int rc = rn_meta_checkpoint_drop(meta, req->group, req->name, err);
    rn_datadir_meta_unlock(h->d);
    if (rc != 0) return fail_rc(st, rc, err);
    Runnel__V1__DropCheckpointResponse *r = rn_arena_alloc(a, sizeof *r);
    if (!r) return OOM(st);
    runnel__v1__drop_checkpoint_response__init(r);
    *resp = &r->base;
    return 0;
}


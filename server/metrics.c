/*
 * metrics.c — runneld's Prometheus metrics (server/metrics.h): the counters
 * the request paths bump, and GET /metrics in the text exposition format
 * 0.0.4 served by libmicrohttpd.
 *
 * Invariants:
 *  1. The hot path is cheap: a hook is one or a few relaxed atomic adds on
 *     counters found through a pointer the caller keeps (rn_mqueue_t) or a
 *     fixed index (gauges); no lock, no allocation. Only rn_metrics_queue,
 *     once per (topic, queue) per process, takes reg_mu and allocates.
 *  2. The queue registry is a list that only grows by prepending under
 *     reg_mu; its head is published with release order and an entry is
 *     never changed (but for its atomic counters) or freed before the
 *     process exits, so a scrape walks it without a lock.
 *  3. A scrape builds its whole text in memory first: data-directory reads
 *     (topics, watermarks, group offsets, pipeline status, stores) take and
 *     release their own locks as every handler does, the gRPC connection
 *     count comes from a callback (server.c, channelz), and no lock is held
 *     when libmicrohttpd sends the text. libmicrohttpd runs one internal
 *     thread, so scrapes run one at a time, and at most MAX_CONNS
 *     connections are open.
 *  4. Every sample follows the # HELP and # TYPE lines of its family, and a
 *     family's samples are contiguous. Counters end in _total; histogram
 *     buckets are cumulative and the +Inf bucket equals _count (common/hist.h
 *     invariant 1). Label values are escaped (\\, \", \n).
 *  5. Nothing is exported that is not measured: a family with nothing to
 *     report (no pipeline, no group) prints its header alone.
 *  6. With a certificate the endpoint speaks HTTPS only (libmicrohttpd's
 *     TLS). When the credentials require authentication, nothing but a 401
 *     is answered to a request without "Authorization: Bearer TOKEN" naming
 *     a valid token (server/auth.h: the KDF once per token, then its cache;
 *     it runs on libmicrohttpd's thread); each refusal is logged with the
 *     peer, never the token.
 */
#include "server/metrics.h"

#include "common/addr.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/hist.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "log/log.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"
#include "server/auth.h"
#include "server/log.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#define MAX_CONNS      16
#define CONN_TIMEOUT_S 10
#define MAX_TEXT       (256u << 20)      /* a scrape's text, at most */

/* ---- the counters ----------------------------------------------------------- */

struct rn_mqueue {
    rn_mqueue_t     *next;
    char             topic[RN_META_TOPIC_NAME_MAX + 1];
    uint32_t         queue;
    _Atomic uint64_t p_records, p_bytes, p_batches;
    _Atomic uint64_t f_records, f_bytes, f_batches;
};

static pthread_mutex_t        reg_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(rn_mqueue_t *) reg_head;                 /* invariant 2 */
static _Atomic int64_t        gauges[RN_MG_COUNT];
static rn_hist_t              ack_hist;

void rn_metrics_gauge(rn_mgauge_t g, int64_t delta)
{
    atomic_fetch_add_explicit(&gauges[g], delta, memory_order_relaxed);
}

rn_mqueue_t *rn_metrics_queue(const char *topic, uint32_t queue)
{
    pthread_mutex_lock(&reg_mu);
    rn_mqueue_t *m = atomic_load_explicit(&reg_head, memory_order_relaxed);
    for (; m; m = m->next)
        if (m->queue == queue && !strcmp(m->topic, topic)) break;
    if (!m && (m = calloc(1, sizeof *m)) != NULL) {
        snprintf(m->topic, sizeof m->topic, "%s", topic);
        m->queue = queue;
        m->next = atomic_load_explicit(&reg_head, memory_order_relaxed);
        atomic_store_explicit(&reg_head, m, memory_order_release);
    }
    pthread_mutex_unlock(&reg_mu);
    return m;
}

#define ADD(field, v) atomic_fetch_add_explicit(&(field), (v), memory_order_relaxed)

void rn_metrics_produced(rn_mqueue_t *m, uint64_t records, uint64_t bytes)
{
    if (!m) return;
    ADD(m->p_records, records);
    ADD(m->p_bytes, bytes);
    ADD(m->p_batches, 1);
}

void rn_metrics_fetched(rn_mqueue_t *m, const uint8_t *data, size_t len, uint32_t nbatches)
{
    if (!m || nbatches == 0) return;
    /* RecordBatch v2: batchLength at byte 8 (what follows byte 12),
     * recordCount at byte 57; the batches were validated when stored. */
    uint64_t records = 0;
    size_t pos = 0;
    for (uint32_t i = 0; i < nbatches && pos + 61 <= len; i++) {
        records += rn_be32_get(data + pos + 57);
        pos += 12 + (size_t)rn_be32_get(data + pos + 8);
    }
    ADD(m->f_records, records);
    ADD(m->f_bytes, len);
    ADD(m->f_batches, nbatches);
}

void rn_metrics_acked(uint64_t t0_ns)
{
    rn_hist_observe(&ack_hist, rn_mono_ns() - t0_ns);
}

/* ---- rendering -------------------------------------------------------------- */

typedef struct out {
    rn_buf_t *b;
    int       err;
} out_t;

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...)
{
    if (o->err) return;
    if (o->b->cap == o->b->len && (o->err = rn_buf_reserve(o->b, 4096, MAX_TEXT)) != 0) return;
    for (int round = 0; round < 2; round++) {
        size_t room = o->b->cap - o->b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf((char *)o->b->data + o->b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) { o->err = -EINVAL; return; }
        if ((size_t)n < room) { o->b->len += (size_t)n; return; }
        int rc = rn_buf_reserve(o->b, (size_t)n + 1 < 4096 ? 4096 : (size_t)n + 1, MAX_TEXT);
        if (rc != 0) { o->err = rc; return; }
    }
}

/* A label value, escaped (invariant 4). */
static void out_value(out_t *o, const char *s)
{
    while (*s && !o->err) {
        size_t run = strcspn(s, "\\\"\n");
        if (run) outf(o, "%.*s", (int)run, s);
        s += run;
        if (*s) {
            outf(o, "\\%c", *s == '\n' ? 'n' : *s);
            s++;
        }
    }
}

/* Labels: kv holds n name/value pairs; le (histogram buckets) goes last. */
typedef struct labels {
    const char *kv[6];
    int         n;
} labels_t;

static void out_sample(out_t *o, const char *name, const char *suffix, const labels_t *l,
                       const char *le, const char *value)
{
    outf(o, "%s%s", name, suffix);
    int n = l ? l->n : 0;
    if (n || le) {
        outf(o, "{");
        for (int i = 0; i < n; i++) {
            outf(o, "%s%s=\"", i ? "," : "", l->kv[2 * i]);
            out_value(o, l->kv[2 * i + 1]);
            outf(o, "\"");
        }
        if (le) outf(o, "%sle=\"%s\"", n ? "," : "", le);
        outf(o, "}");
    }
    outf(o, " %s\n", value);
}

static void out_u64(out_t *o, const char *name, const labels_t *l, uint64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    out_sample(o, name, "", l, NULL, s);
}

static void out_i64(out_t *o, const char *name, const labels_t *l, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)v);
    out_sample(o, name, "", l, NULL, s);
}

static void out_f64(out_t *o, const char *name, const labels_t *l, double v)
{
    char s[40];
    snprintf(s, sizeof s, "%.9g", v);
    out_sample(o, name, "", l, NULL, s);
}

static void out_family(out_t *o, const char *name, const char *type, const char *help)
{
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void out_hist(out_t *o, const char *name, const char *help, rn_hist_t *h)
{
    uint64_t cum = 0;
    char le[32], v[32];
    out_family(o, name, "histogram", help);
    for (int i = 0; i <= RN_HIST_NBOUNDS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < RN_HIST_NBOUNDS) snprintf(le, sizeof le, "%.9g", RN_HIST_BOUNDS_NS[i] / 1e9);
        else snprintf(le, sizeof le, "+Inf");
        snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
        out_sample(o, name, "_bucket", NULL, le, v);
    }
    snprintf(v, sizeof v, "%.9g",
             (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    out_sample(o, name, "_sum", NULL, NULL, v);
    snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
    out_sample(o, name, "_count", NULL, NULL, v);
}

/* The per-queue counter families (invariant 2: no lock). */
static void out_queue_counters(out_t *o)
{
    static const struct {
        const char *name, *help;
        size_t      field;
    } fams[] = {
        {"runnel_produce_records_total", "Records stored by produce requests (gRPC and Kafka).",
         offsetof(rn_mqueue_t, p_records)},
        {"runnel_produce_bytes_total", "Batch bytes stored by produce requests.",
         offsetof(rn_mqueue_t, p_bytes)},
        {"runnel_produce_batches_total", "Batches stored by produce requests (duplicates not "
         "counted).", offsetof(rn_mqueue_t, p_batches)},
        {"runnel_fetch_records_total", "Records in the batches fetches returned (gRPC and "
         "Kafka).", offsetof(rn_mqueue_t, f_records)},
        {"runnel_fetch_bytes_total", "Batch bytes fetches returned.",
         offsetof(rn_mqueue_t, f_bytes)},
        {"runnel_fetch_batches_total", "Batches fetches returned.",
         offsetof(rn_mqueue_t, f_batches)},
    };
    rn_mqueue_t *head = atomic_load_explicit(&reg_head, memory_order_acquire);
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        out_family(o, fams[f].name, "counter", fams[f].help);
        for (rn_mqueue_t *m = head; m; m = m->next) {
            char q[16];
            snprintf(q, sizeof q, "%u", m->queue);
            labels_t l = {{"topic", m->topic, "queue", q}, 2};
            _Atomic uint64_t *c = (_Atomic uint64_t *)((char *)m + fams[f].field);
            out_u64(o, fams[f].name, &l, atomic_load_explicit(c, memory_order_relaxed));
        }
    }
}

static void out_gauges(out_t *o, const rn_metrics_opts_t *mo)
{
    if (mo && mo->grpc_connections) {
        out_family(o, "runnel_grpc_connections", "gauge", "Open gRPC client connections "
                   "(from gRPC's channelz).");
        int64_t n = mo->grpc_connections(mo->arg);
        if (n >= 0) out_i64(o, "runnel_grpc_connections", NULL, n);
    }
    static const struct {
        rn_mgauge_t g;
        const char *name, *help;
    } fams[] = {
        {RN_MG_GRPC_CALLS, "runnel_grpc_calls_in_flight", "gRPC calls being handled (long "
         "polls, produces waiting for durability and queries included)."},
        {RN_MG_GRPC_PARKED, "runnel_grpc_parked_fetches", "gRPC fetches waiting for data (long "
         "poll)."},
        {RN_MG_KAFKA_CONNS, "runnel_kafka_connections", "Open connections to the Kafka front."},
        {RN_MG_KAFKA_REQS, "runnel_kafka_requests_in_flight", "Kafka requests read and not yet "
         "answered."},
        {RN_MG_KAFKA_PARKED, "runnel_kafka_parked_fetches", "Kafka fetches waiting for data "
         "(long poll)."},
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        out_family(o, fams[i].name, "gauge", fams[i].help);
        out_i64(o, fams[i].name, NULL, atomic_load_explicit(&gauges[fams[i].g],
                                                            memory_order_relaxed));
    }
}

/* ---- scrape-time reads of the data directory -------------------------------- */

typedef struct qrow {
    const char *topic;              /* arena */
    uint32_t    queue;
    int64_t     hwm, log_start;
} qrow_t;

static int qrow_cmp(const void *a, const void *b)
{
    const qrow_t *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    return c ? c : (x->queue > y->queue) - (x->queue < y->queue);
}

/* Every queue of every topic with its range, sorted, into *rows (malloc'd). */
static int read_queues(rn_hd_t *h, rn_arena_t *a, qrow_t **rows, size_t *nrows)
{
    rn_status_t st;
    ProtobufCMessage *resp = NULL;
    Runnel__V1__ListTopicsRequest lreq = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    *rows = NULL;
    *nrows = 0;
    if (rn_hd_list_topics(h, &lreq.base, a, &resp, &st) != 0) return -1;
    const Runnel__V1__ListTopicsResponse *lt = (const void *)resp;
    size_t cap = 0, n = 0;
    qrow_t *v = NULL;
    for (size_t i = 0; i < lt->n_topics; i++) {
        Runnel__V1__DescribeTopicRequest dreq = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
        dreq.name = lt->topics[i]->name;
        if (rn_hd_describe_topic(h, &dreq.base, a, &resp, &st) != 0) continue;  /* deleted */
        const Runnel__V1__TopicInfo *ti = (const void *)resp;
        for (size_t k = 0; k < ti->n_queues; k++) {
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 64;
                qrow_t *nv = realloc(v, nc * sizeof *nv);
                if (!nv) { free(v); return -ENOMEM; }
                v = nv;
                cap = nc;
            }
            v[n++] = (qrow_t){ti->name, ti->queues[k]->queue, ti->queues[k]->high_watermark,
                              ti->queues[k]->log_start_offset};
        }
    }
    if (n) qsort(v, n, sizeof *v, qrow_cmp);
    *rows = v;
    *nrows = n;
    return 0;
}

static void out_queue_ranges(out_t *o, const qrow_t *v, size_t n)
{
    static const char *const names[2] = {"runnel_queue_high_watermark", "runnel_queue_log_start"};
    static const char *const helps[2] = {
        "The queue's next offset: one past the last visible record.",
        "The queue's first readable offset (after retention).",
    };
    for (int f = 0; f < 2; f++) {
        out_family(o, names[f], "gauge", helps[f]);
        for (size_t i = 0; i < n; i++) {
            char q[16];
            snprintf(q, sizeof q, "%u", v[i].queue);
            labels_t l = {{"topic", v[i].topic, "queue", q}, 2};
            out_i64(o, names[f], &l, f ? v[i].log_start : v[i].hwm);
        }
    }
}

/* Per group and queue: the committed offset, and the lag behind the high
 * watermark (records; 0 when the offset is at or past it). */
static void out_groups(out_t *o, rn_hd_t *h, rn_arena_t *a, const qrow_t *rows, size_t nrows)
{
    rn_status_t st;
    ProtobufCMessage *resp = NULL;
    Runnel__V1__ListGroupsRequest lreq = RUNNEL__V1__LIST_GROUPS_REQUEST__INIT;
    const Runnel__V1__ListGroupsResponse *lg = NULL;
    if (rn_hd_list_groups(h, &lreq.base, a, &resp, &st) == 0) lg = (const void *)resp;
    size_t ng = lg ? lg->n_groups : 0;
    const Runnel__V1__FetchOffsetsResponse **fo = ng ? rn_arena_alloc(a, ng * sizeof *fo) : NULL;
    for (size_t g = 0; fo && g < ng; g++) {
        Runnel__V1__FetchOffsetsRequest freq = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
        freq.group = lg->groups[g];
        freq.topic = "";
        fo[g] = rn_hd_fetch_offsets(h, &freq.base, a, &resp, &st) == 0 ? (const void *)resp
                                                                         : NULL;
    }
    for (int f = 0; f < 2; f++) {
        const char *name = f ? "runnel_group_lag" : "runnel_group_committed_offset";
        out_family(o, name, "gauge", f ? "Records between the group's committed offset and "
                   "the queue's high watermark." : "The group's committed offset (the next "
                   "offset it reads).");
        for (size_t g = 0; fo && g < ng; g++) {
            for (size_t i = 0; fo[g] && i < fo[g]->n_offsets; i++) {
                const Runnel__V1__QueueOffset *qo = fo[g]->offsets[i];
                char q[16];
                snprintf(q, sizeof q, "%u", qo->queue);
                labels_t l = {{"group", lg->groups[g], "topic", qo->topic, "queue", q}, 3};
                if (!f) { out_i64(o, name, &l, qo->offset); continue; }
                qrow_t key = {qo->topic, qo->queue, 0, 0};
                const qrow_t *r = nrows ? bsearch(&key, rows, nrows, sizeof *rows, qrow_cmp)
                                        : NULL;
                if (!r) continue;                 /* the topic is gone or shrank */
                out_i64(o, name, &l, r->hwm > qo->offset ? r->hwm - qo->offset : 0);
            }
        }
    }
}

static void out_pipelines(out_t *o, rn_hd_t *h)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_etl_status_t *s = NULL;
    size_t n = 0;
    if (rn_etl_status(rn_hd_datadir(h), NULL, &s, &n, err) != 0) n = 0;
    static const struct {
        const char *name, *help;
    } fams[4] = {
        {"runnel_pipeline_records_in_total", "Source records the pipeline read, as of its last "
         "checkpoint."},
        {"runnel_pipeline_records_out_total", "Records the pipeline wrote to its sink, as of its "
         "last checkpoint."},
        {"runnel_pipeline_late_total", "Records past the watermark, as of its last checkpoint."},
        {"runnel_pipeline_errors_total", "Records sent to the dead-letter topic, as of its last "
         "checkpoint."},
    };
    for (int f = 0; f < 4; f++) {
        out_family(o, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < n; i++) {
            labels_t l = {{"pipeline", s[i].name}, 1};
            uint64_t v = f == 0 ? s[i].in : f == 1 ? s[i].out : f == 2 ? s[i].late : s[i].errors;
            out_u64(o, fams[f].name, &l, v);
        }
    }
    out_family(o, "runnel_pipeline_lag", "gauge", "Records of a source queue past the "
               "pipeline's last checkpoint.");
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < s[i].nq; k++) {
            char q[16];
            snprintf(q, sizeof q, "%u", k);
            labels_t l = {{"pipeline", s[i].name, "topic", s[i].source, "queue", q}, 3};
            out_i64(o, "runnel_pipeline_lag", &l, s[i].lag[k]);
        }
    out_family(o, "runnel_pipeline_checkpoint_age_seconds", "gauge", "Seconds since the "
               "pipeline's last checkpoint (absent before its first).");
    int64_t now = rn_sys.now_ms();
    for (size_t i = 0; i < n; i++) {
        if (s[i].checkpoint_ms <= 0) continue;
        labels_t l = {{"pipeline", s[i].name}, 1};
        out_f64(o, "runnel_pipeline_checkpoint_age_seconds", &l,
                (double)(now - s[i].checkpoint_ms) / 1e3);
    }
    free(s);
}

/* Stores: disk usage and what the recovery of this process's open did. */
static void out_stores(out_t *o, rn_hd_t *h)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_t *d = rn_hd_datadir(h);
    rn_datadir_store_info_t *v = NULL;
    size_t n = 0;
    if (rn_datadir_stores(d, &v, &n, err) != 0) n = 0;
    rn_log_recovery_t *rec = calloc(n ? n : 1, sizeof *rec);
    int *have = calloc(n ? n : 1, sizeof *have);
    if (!rec || !have) n = 0;
    for (size_t i = 0; i < n; i++) {
        rn_log_t *log = rn_datadir_store_log(d, v[i].id);
        if (log) {
            rn_log_recovery_info(log, &rec[i]);
            have[i] = 1;
        }
    }
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"runnel_store_bytes", "Commit-log bytes the store uses on disk."},
        {"runnel_recovery_clean", "1 when the store's last open found a clean shutdown."},
        {"runnel_recovery_scanned_bytes", "Commit-log bytes verified by the last open's scan."},
        {"runnel_recovery_truncated_bytes", "Bytes of a torn tail cut by the last open."},
        {"runnel_recovery_damaged_batches", "Batches the last open marked damaged."},
        {"runnel_recovery_duration_seconds", "How long the last open's recovery took."},
    };
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        out_family(o, fams[f].name, "gauge", fams[f].help);
        for (size_t i = 0; i < n; i++) {
            if (f > 0 && !have[i]) continue;
            char id[16];
            snprintf(id, sizeof id, "%u", v[i].id);
            labels_t l = {{"store", id}, 1};
            const rn_log_recovery_t *r = &rec[i];
            switch (f) {
            case 0: out_u64(o, fams[f].name, &l, v[i].bytes); break;
            case 1: out_u64(o, fams[f].name, &l, r->clean ? 1 : 0); break;
            case 2: out_u64(o, fams[f].name, &l, r->scanned_bytes); break;
            case 3: out_u64(o, fams[f].name, &l, r->truncated_bytes); break;
            case 4: out_u64(o, fams[f].name, &l, r->damaged_batches); break;
            default: out_f64(o, fams[f].name, &l, (double)r->elapsed_us / 1e6); break;
            }
        }
    }
    free(rec);
    free(have);
    free(v);
}

int rn_metrics_render(const rn_metrics_opts_t *mo, rn_buf_t *b)
{
    rn_hd_t *h = mo ? mo->hd : NULL;
    out_t o = {b, 0};
    rn_arena_t a = RN_ARENA_INIT;
    qrow_t *rows = NULL;
    size_t nrows = 0;
    out_queue_counters(&o);
    out_hist(&o, "runnel_append_duration_seconds", "Time of one batch append to a store (its "
             "lock wait and write; under --fsync always its fdatasync too).", &rn_log_append_hist);
    out_hist(&o, "runnel_fsync_duration_seconds", "Time of one commit-log segment fdatasync.",
             &rn_log_fsync_hist);
    out_hist(&o, "runnel_produce_ack_duration_seconds", "Time from a produce request's "
             "arrival at the handlers to its batches being durable.", &ack_hist);
    out_gauges(&o, mo);
    if (h) {
        if (read_queues(h, &a, &rows, &nrows) == -ENOMEM) o.err = -ENOMEM;
        out_queue_ranges(&o, rows, nrows);
        out_groups(&o, h, &a, rows, nrows);
        out_pipelines(&o, h);
        out_stores(&o, h);
    }
    free(rows);
    rn_arena_free(&a);
    return o.err;
}

/* ---- the endpoint ------------------------------------------------------------- */

struct rn_metrics {
    struct MHD_Daemon *d;
    rn_metrics_opts_t  o;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *text,
                             uint8_t *owned, size_t len)
{
    struct MHD_Response *r = owned
        ? MHD_create_response_from_buffer(len, owned, MHD_RESPMEM_MUST_FREE)
        : MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(owned);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            owned ? "text/plain; version=0.0.4; charset=utf-8"
                                  : "text/plain; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return rc;
}

/* Invariant 6: the request may scrape. */
static int authorized(rn_metrics_t *m, struct MHD_Connection *conn)
{
    if (!rn_auth_required(m->o.auth)) return 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    char principal[RN_USER_NAME_MAX + 1];
    const char *why = NULL;
    char host[64] = "?";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr)
        getnameinfo(ci->client_addr, ci->client_addr->sa_family == AF_INET6
                    ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                    host, sizeof host, NULL, 0, NI_NUMERICHOST);
    int rc = 0;
    if (!h) why = "no Authorization header";
    else if (strncasecmp(h, "Bearer ", 7)) why = "the Authorization header is not 'Bearer TOKEN'";
    else {
        char peer[80];                  /* rn_auth_token's form: HOST:PORT or [V6]:PORT */
        snprintf(peer, sizeof peer, strchr(host, ':') ? "[%s]:0" : "%s:0", host);
        rc = rn_auth_token(m->o.auth, h + 7, strlen(h + 7), peer, principal);
    }
    if (rc != 0)
        why = rc == -EAGAIN ? "too many failed authentications from this address lately"
                            : "unknown or wrong token";
    if (!why) return 1;
    rn_slog(RN_SLOG_WARN, "metrics: refused a scrape from %s: %s", host, why);
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state)
{
    rn_metrics_t *m = cls;
    (void)version;
    (void)upload;
    if (*upload_size) {                 /* a body: ignored, and the request refused */
        *upload_size = 0;
        return MHD_YES;
    }
    (void)state;
    if (m->o.auth && !authorized(m, conn))                 /* invariant 6 */
        return reply(conn, MHD_HTTP_UNAUTHORIZED, "unauthorized: give 'Authorization: Bearer "
                     "TOKEN' (runnel user add)\n", NULL, 0);
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n", NULL, 0);
    if (strcmp(url, "/metrics"))
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found: runneld serves /metrics only\n",
                     NULL, 0);
    rn_buf_t b = RN_BUF_INIT;
    if (rn_metrics_render(&m->o, &b) != 0 || !b.len) {
        rn_buf_free(&b);
        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL, 0);
    }
    return reply(conn, MHD_HTTP_OK, NULL, b.data, b.len);   /* MHD frees b.data */
}

int rn_metrics_start(const rn_metrics_opts_t *o, rn_metrics_t **out, int *port, char *errmsg)
{
    const char *listen = o->listen;
    char host[256];
    int p = 0;
    *out = NULL;
    int rc = rn_addr_split(listen, host, sizeof host, &p, 1, errmsg);
    if (rc != 0) return rc;
    struct addrinfo hints = {0}, *ai = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", p);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    int g = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
    if (g != 0)
        return rn_errf(errmsg, RN_EINVAL, "--metrics-listen %s: cannot resolve '%s': %s", listen,
                       host, gai_strerror(g));
    rn_metrics_t *m = calloc(1, sizeof *m);
    if (!m) {
        freeaddrinfo(ai);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    m->o = *o;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (o->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            freeaddrinfo(ai);
            free(m);
            return rn_errf(errmsg, RN_EINVAL, "--metrics-listen with --tls-cert: this "
                           "libmicrohttpd has no TLS support");
        }
        flags |= MHD_USE_TLS;
        m->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, on_request, m,
                                MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNS,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
                                MHD_OPTION_HTTPS_MEM_CERT, o->tls_cert,
                                MHD_OPTION_HTTPS_MEM_KEY, o->tls_key,
                                MHD_OPTION_END);
    } else {
        m->d = MHD_start_daemon(flags, (uint16_t)p, NULL, NULL, on_request, m,
                                MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNS,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
                                MHD_OPTION_END);
    }
    freeaddrinfo(ai);
    if (!m->d && o->tls_cert) {
        free(m);
        return rn_errf(errmsg, -EADDRINUSE, "--metrics-listen %s: cannot listen there over "
                       "TLS (in use, not an address of this machine, or a certificate or key "
                       "libmicrohttpd cannot use)", listen);
    }
    if (!m->d) {
        free(m);
        return rn_errf(errmsg, -EADDRINUSE, "--metrics-listen %s: cannot listen there (in use, "
                       "or not an address of this machine)", listen);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : p;
    *out = m;
    return 0;
}

void rn_metrics_stop(rn_metrics_t *m)
{
    if (!m) return;
    MHD_stop_daemon(m->d);
    free(m);
}

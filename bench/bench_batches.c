/*
 * bench_batches.c — `runnel-bench produce-batches`: the broker's gRPC produce
 * path against the embedded append of the same batches under the same fsync
 * policy (DESIGN §9: gRPC produce >= 0.4 of the embedded append).
 *
 * What. --records N values of --size bytes (bench_fill_value) are encoded
 * into batches of at most --batch-bytes BEFORE any timing, dealt round-robin
 * over the topic's --queues queues. Then the same batch bytes go:
 *   gRPC      to a runneld (our own, started with --fsync POLICY, or
 *             --server) as Produce requests of up to REQ_BATCHES batches of
 *             one queue, up to INFLIGHT requests in flight over one
 *             connection, acks durable; timed from the first request to the
 *             last answer. A client that batches itself (a log shipper, a
 *             forwarder) sends exactly this.
 *   embedded  rn_datadir_append into a fresh data directory opened with the
 *             same fsync policy, topic and queues, by one thread (the
 *             store's fastest: see embedded_append), at most INFLIGHT
 *             batches appended and not yet durable (rn_datadir_wait on the
 *             oldest); timed from the first append to the last batch
 *             durable.
 * ratio = gRPC / embedded. `runnel-bench produce` measures librunnel's
 * producer instead, which also builds the batches from single records.
 *
 * Fairness: both runs take the same bytes in the same order and the same
 * durability; neither builds batches while timed; the filesystem is
 * settled (syncfs) before each; a warm-up round of both runs first and is
 * not counted, then --rounds rounds (3) alternate which path goes first,
 * and the figures are medians (each gRPC round writes a topic of its own); CPU time of the bench and of runneld (when
 * ours) is reported beside wall time. The broker's high watermarks must sum
 * to N after the gRPC run, and the embedded ones likewise.
 */
#include "batch/batch.h"
#include "bench/bench.h"
#include "bench/bench_net.h"
#include "client/rpc.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PB_CMD      "produce-batches"
#define REQ_BATCHES 5       /* batches per request, as librunnel's producer */
#define INFLIGHT    16      /* requests (gRPC) or batches (embedded) not yet acknowledged */
#define ROUNDS_MAX  101

typedef struct pool {
    uint8_t **batch;
    size_t   *len;
    uint32_t *queue;
    size_t    n;
} pool_t;

static void pool_free(pool_t *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->batch[i]);
    free(p->batch);
    free(p->len);
    free(p->queue);
}

/* Encode cfg->records values into batches dealt round-robin over queues. */
static int pool_build(const net_cfg_t *cfg, uint32_t queues, pool_t *p)
{
    uint8_t *values = bench_net_values(cfg);
    rn_batch_opts_t o;
    rn_batch_builder_t b;
    rn_batch_opts_default(&o);
    o.max_bytes = (uint32_t)cfg->batch_bytes;
    size_t cap = 1024;
    memset(p, 0, sizeof *p);
    p->batch = malloc(cap * sizeof *p->batch);
    p->len = malloc(cap * sizeof *p->len);
    p->queue = malloc(cap * sizeof *p->queue);
    int rc = values && p->batch && p->len && p->queue ? rn_batch_builder_init(&b, &o) : -ENOMEM;
    if (rc != 0) {
        free(values);
        pool_free(p);
        return bench_fail(cfg->cmd, rc, "out of memory");
    }
    int64_t now = rn_sys.now_ms();
    for (uint64_t i = 0; i <= cfg->records && rc == 0; i++) {
        rn_record_t r = {.timestamp = now, .key_len = -1,
                         .value = values + (i % BENCH_NET_POOL) * cfg->size,
                         .value_len = (int32_t)cfg->size};
        int add = i < cfg->records ? rn_batch_builder_add(&b, &r) : RN_EFULL;
        if (add == 0) continue;
        if (add != RN_EFULL) { rc = add; break; }
        if (rn_batch_builder_count(&b) == 0) break;
        const uint8_t *bp;
        size_t len;
        if ((rc = rn_batch_builder_finish(&b, &bp, &len)) != 0) break;
        if (p->n == cap) {
            cap *= 2;
            uint8_t **nb = realloc(p->batch, cap * sizeof *nb);
            size_t *nl = nb ? realloc(p->len, cap * sizeof *nl) : NULL;
            uint32_t *nq = nl ? realloc(p->queue, cap * sizeof *nq) : NULL;
            if (nb) p->batch = nb;
            if (nl) p->len = nl;
            if (nq) p->queue = nq;
            if (!nq) { rc = -ENOMEM; break; }
        }
        p->batch[p->n] = malloc(len);
        if (!p->batch[p->n]) { rc = -ENOMEM; break; }
        memcpy(p->batch[p->n], bp, len);
        p->len[p->n] = len;
        p->queue[p->n] = (uint32_t)(p->n % queues);
        p->n++;
        rn_batch_builder_reset(&b);
        if (i < cfg->records) rc = rn_batch_builder_add(&b, &r);
    }
    rn_batch_builder_destroy(&b);
    free(values);
    if (rc != 0) {
        pool_free(p);
        return bench_fail(cfg->cmd, rc, "building batches: %s", rn_strerror(rc));
    }
    return 0;
}

/* ---- gRPC ------------------------------------------------------------------------ */

typedef struct grpc_run {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             inflight;
    int             rc;
    char            err[RN_ERRMSG_SIZE];
} grpc_run_t;

static void produce_done(void *arg, int rc, ProtobufCMessage *resp, int status,
                         const char *errmsg)
{
    grpc_run_t *g = arg;
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    pthread_mutex_lock(&g->mu);
    if (rc != 0 && g->rc == 0) {
        g->rc = rc;
        snprintf(g->err, sizeof g->err, "Produce: %s", errmsg);
    }
    g->inflight--;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* Send the pool's batches as Produce requests; *ns first request to last answer. */
static int grpc_send(const net_cfg_t *cfg, rn_rpc_t *rpc, const pool_t *p, uint32_t queues,
                     uint64_t *ns)
{
    grpc_run_t g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    ProtobufCBinaryData bins[REQ_BATCHES];
    size_t *next = calloc(queues, sizeof *next);     /* per queue: next pool index */
    if (!next) return bench_fail(cfg->cmd, -ENOMEM, "out of memory");
    for (uint32_t q = 0; q < queues; q++) next[q] = q;
    uint64_t t0 = rn_mono_ns();
    int rc = 0;
    for (uint32_t q = 0, idle = 0; idle < queues && rc == 0; q = (q + 1) % queues) {
        if (next[q] >= p->n) { idle++; continue; }
        idle = 0;
        size_t nb = 0;
        for (; nb < REQ_BATCHES && next[q] < p->n; nb++, next[q] += queues) {
            bins[nb].data = p->batch[next[q]];
            bins[nb].len = p->len[next[q]];
        }
        pthread_mutex_lock(&g.mu);
        while (g.inflight >= INFLIGHT && g.rc == 0) pthread_cond_wait(&g.cv, &g.mu);
        rc = g.rc;
        if (rc == 0) g.inflight++;
        pthread_mutex_unlock(&g.mu);
        if (rc != 0) break;
        Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
        req.topic = (char *)cfg->topic;
        req.queue = q;
        req.n_batches = nb;
        req.batches = bins;
        req.acks = RUNNEL__V1__ACKS__ACKS_DURABLE;
        char err[RN_ERRMSG_SIZE];
        rc = rn_rpc_call_async(rpc, RN_RPC_METHOD("Produce"), &req.base,
                               &runnel__v1__produce_response__descriptor, 60000, produce_done,
                               &g, err);
        if (rc != 0) {
            pthread_mutex_lock(&g.mu);
            g.inflight--;
            pthread_mutex_unlock(&g.mu);
            rc = bench_fail(cfg->cmd, rc, "Produce: %s", err);
        }
    }
    pthread_mutex_lock(&g.mu);
    while (g.inflight > 0) pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    *ns = rn_mono_ns() - t0;
    free(next);
    if (rc == 0 && g.rc != 0) rc = bench_fail(cfg->cmd, g.rc, "%s", g.err);
    return rc;
}

/* ---- embedded ------------------------------------------------------------------- */

/* The pool appended into a fresh data directory by one thread, in pool
 * order, at most INFLIGHT batches not yet durable (rn_datadir_wait on the
 * oldest); *ns first append to last batch durable. One appender is the
 * store's best: several threads appending to one store at once contend on
 * its append lock and store less (RESULTS.md). */
static int embedded_append(const net_cfg_t *cfg, const pool_t *p, uint32_t queues, uint64_t *ns)
{
    char err[RN_ERRMSG_SIZE] = "", dir[PATH_MAX], data[PATH_MAX + 8];
    int rc = bench_mkdtemp(cfg->dir, dir, sizeof dir);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "mkdtemp: %s", rn_strerror(rc));
    snprintf(data, sizeof data, "%s/data", dir);
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "runnel-bench " PB_CMD;
    rn_datadir_t *d = NULL;
    rn_datadir_queue_t *qs = calloc(queues, sizeof *qs);
    uint64_t ring[INFLIGHT];
    uint32_t opened = 0;
    if (!qs) rc = rn_errf(err, -ENOMEM, "out of memory");
    if (rc == 0 && cfg->fsync) rc = rn_fsync_parse(cfg->fsync, &o.log, err);
    if (rc == 0) rc = rn_datadir_open(data, &o, &d, err);
    if (rc == 0) rc = rn_datadir_topic_create(d, cfg->topic, queues, NULL, err);
    for (; rc == 0 && opened < queues; opened++)
        rc = rn_datadir_queue_open(d, cfg->topic, opened, &qs[opened], err);
    if (rc == 0) bench_settle_fs(dir);
    uint64_t t0 = rn_mono_ns();
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < p->n && rc == 0; i++) {
        if (head - tail == INFLIGHT) rc = rn_datadir_wait(d, ring[tail++ % INFLIGHT]);
        int64_t base;
        if (rc == 0) rc = rn_datadir_append(d, &qs[p->queue[i]], p->batch[i], p->len[i], &base,
                                            &ring[head++ % INFLIGHT], err);
    }
    while (rc == 0 && tail < head) rc = rn_datadir_wait(d, ring[tail++ % INFLIGHT]);
    *ns = rn_mono_ns() - t0;
    int64_t sum = 0;
    for (uint32_t q = 0; q < opened; q++) {
        rn_datadir_queue_info_t qi;
        if (rc == 0 && rn_datadir_queue_info(d, &qs[q], &qi, err) == 0) sum += qi.high_watermark;
        rn_datadir_queue_close(&qs[q]);
    }
    if (rc == 0 && (uint64_t)sum != cfg->records)
        rc = rn_errf(err, RN_ECORRUPT, "high watermarks sum to %lld, want %llu",
                     (long long)sum, (unsigned long long)cfg->records);
    int crc = rn_datadir_close(d);
    if (rc == 0 && crc != 0) rc = rn_errf(err, crc, "closing: %s", rn_strerror(crc));
    free(qs);
    bench_rmtree(dir);
    return rc ? bench_fail(cfg->cmd, rc, "embedded: %s", err[0] ? err : rn_strerror(rc)) : 0;
}

/* ---- the run -------------------------------------------------------------------- */

static int high_sum(const net_cfg_t *cfg, rn_client_t *c, uint32_t queues, int64_t *sum)
{
    char err[RN_ERRMSG_SIZE];
    *sum = 0;
    for (uint32_t q = 0; q < queues; q++) {
        int64_t ls, hw;
        int rc = rn_client_queue_range(c, cfg->topic, q, &ls, &hw, err);
        if (rc != 0) return bench_fail(cfg->cmd, rc, "queue %u: %s", q, err);
        *sum += hw;
    }
    return 0;
}

/* One gRPC run into topic `name` (created first): *ns, and the CPU used. */
static int grpc_round(const net_cfg_t *cfg0, rn_client_t *c, rn_rpc_t *rpc, const pool_t *p,
                      const char *name, uint64_t *ns, cpu_mark_t *cpu)
{
    net_cfg_t cfg = *cfg0;
    cfg.topic = name;
    uint32_t queues;
    int64_t before, after;
    int rc = bench_net_topic(&cfg, c, &queues);
    if (rc == 0) rc = high_sum(&cfg, c, queues, &before);
    if (rc != 0) return rc;
    bench_settle_fs(cfg.dir ? cfg.dir : "/var/tmp");
    cpu_mark_t m = bench_cpu_now();
    if ((rc = grpc_send(&cfg, rpc, p, queues, ns)) != 0) return rc;
    cpu_mark_t m_end = bench_cpu_now();
    cpu->self = m_end.self - m.self;
    cpu->broker = m_end.broker - m.broker;
    if ((rc = high_sum(&cfg, c, queues, &after)) != 0) return rc;
    if ((uint64_t)(after - before) != cfg.records)
        return bench_fail(cfg.cmd, RN_ECORRUPT, "gRPC: the broker stored %lld records, want %llu",
                          (long long)(after - before), (unsigned long long)cfg.records);
    return 0;
}

static int pb_bench(const net_cfg_t *cfg, const char *addr)
{
    rn_client_t *c = NULL;
    rn_rpc_t *rpc = NULL;
    pool_t p = {0};
    uint32_t queues = 0;
    size_t rounds = (size_t)cfg->rounds;
    double g[ROUNDS_MAX], e[ROUNDS_MAX];
    uint64_t self_ns = 0, broker_ns = 0;
    char err[RN_ERRMSG_SIZE] = "";
    int rc = bench_net_open(cfg, addr, 1, &c);
    if (rc == 0) rc = bench_net_topic(cfg, c, &queues);
    if (rc == 0) rc = pool_build(cfg, queues, &p);
    if (rc == 0 && (rc = rn_rpc_open(addr, &rpc, err)) != 0)
        rc = bench_fail(cfg->cmd, rc, "--server %s: %s", addr, err);
    if (rc != 0) goto out;
    bench_note(cfg->json, "%s: %llu records of %llu bytes in %zu batches of <= %llu bytes, %u "
               "queues, fsync %s on both paths; a warm-up round, then %zu rounds alternating "
               "which path goes first", cfg->cmd, (unsigned long long)cfg->records,
               (unsigned long long)cfg->size, p.n, (unsigned long long)cfg->batch_bytes, queues,
               cfg->fsync ? cfg->fsync : "group", rounds);
    /* round 0 is the warm-up: the first run of either path in a process is slower (new
     * page-cache pages, the allocator, the broker's first segments), so it is not counted */
    for (size_t r = 0; r <= rounds && rc == 0; r++) {
        char name[RN_META_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s-%zu", cfg->topic, r);
        uint64_t g_ns = 0, e_ns = 0;
        cpu_mark_t cpu = {0, 0};
        for (int k = 0; k < 2 && rc == 0; k++) {
            if ((k == 0) == (r % 2 == 0)) rc = grpc_round(cfg, c, rpc, &p, name, &g_ns, &cpu);
            else rc = embedded_append(cfg, &p, queues, &e_ns);
        }
        if (rc != 0 || r == 0) continue;
        g[r - 1] = bench_per_s(cfg->records, g_ns);
        e[r - 1] = bench_per_s(cfg->records, e_ns);
        self_ns += cpu.self;
        broker_ns += cpu.broker;
        if (!cfg->json)
            bench_note(0, "  round %zu: gRPC %.0f records/s, embedded %.0f records/s", r,
                       g[r - 1], e[r - 1]);
    }
    if (rc != 0) goto out;
    double gm = bench_median(g, rounds), em = bench_median(e, rounds);
    double self_us = (double)self_ns / 1e3 / (double)(cfg->records * rounds);
    double broker_us = (double)broker_ns / 1e3 / (double)(cfg->records * rounds);
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", PB_CMD);
        bench_json_str(&j, "fsync", cfg->fsync ? cfg->fsync : "group");
        bench_json_u64(&j, "records", cfg->records);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "batches", p.n);
        bench_json_u64(&j, "queues", queues);
        bench_json_u64(&j, "rounds", rounds);
        bench_json_f64(&j, "records_per_s", gm);
        bench_json_f64(&j, "baseline_records_per_s", em);
        bench_json_f64(&j, "ratio", gm / em);
        bench_json_f64_array(&j, "records_per_s_rounds", g, rounds);
        bench_json_f64_array(&j, "baseline_records_per_s_rounds", e, rounds);
        bench_json_f64(&j, "client_cpu_us_per_record", self_us);
        if (bench_broker_pid > 0) bench_json_f64(&j, "broker_cpu_us_per_record", broker_us);
        else bench_json_null(&j, "broker_cpu_us_per_record");
        bench_json_end(&j);
    } else {
        bench_table_t t;
        bench_table_init(&t, 3);
        bench_table_cell(&t, "path");
        bench_table_cell(&t, "records/s (median)");
        bench_table_cell(&t, "MB/s");
        bench_table_cell(&t, "gRPC produce (batches)");
        bench_table_cell(&t, "%.0f", gm);
        bench_table_cell(&t, "%.1f", gm * (double)cfg->size / 1e6);
        bench_table_cell(&t, "embedded append");
        bench_table_cell(&t, "%.0f", em);
        bench_table_cell(&t, "%.1f", em * (double)cfg->size / 1e6);
        bench_table_print(&t, stdout);
        bench_table_free(&t);
        bench_note(0, "ratio gRPC / embedded append: %.2f (target >= 0.40)", gm / em);
        bench_note(0, "CPU over gRPC per record: client %.3f µs%s", self_us,
                   bench_broker_pid > 0 ? "" : "; runneld: not ours");
        if (bench_broker_pid > 0) bench_note(0, "CPU over gRPC per record: runneld %.3f µs",
                                             broker_us);
    }
out:
    rn_rpc_close(rpc);
    pool_free(&p);
    if (c) bench_net_close(&c, 1);
    return rc;
}

static int pb_parse(int argc, char **argv, void *cfg)
{
    return bench_net_parse(PB_CMD, argc, argv, cfg);
}


static int pb_run(const void *cfg)
{
    return bench_with_broker(cfg, pb_bench);
}

const bench_cmd_t bench_cmd_produce_batches = {
    PB_CMD, "[--server HOST:PORT] [--fsync POLICY] [--records N] [--size B] [--batch-bytes K] "
    "[--queues Q] [--rounds R] [--dir DIR] [--json]  (gRPC produce of pre-built batches vs their embedded "
    "append)",
    sizeof(net_cfg_t), pb_parse, pb_run,
};

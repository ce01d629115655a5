/*
 * bench_kafka.c — `runnel-bench kafka-produce | kafka-consume`: runneld's
 * Kafka front driven by librdkafka (linked into the bench only), beside the
 * gRPC path and the embedded append measured in the same run on the same
 * broker.
 *
 * Where. A runneld of our own (bench_broker_start: fresh directory, free
 * ports, --kafka-listen, --fsync POLICY when given; default group).
 *
 * What.
 *   kafka-produce  --records N values of --size bytes (bench_fill_value) to
 *                  topic `kafka-bench` (--queues partitions, created first)
 *                  with --producers librdkafka producers (one thread each,
 *                  default 1): acks=all (durable under the
 *                  fsync policy), linger --linger-ms, batch.size
 *                  --batch-bytes, records dealt round-robin over the
 *                  partitions, compression none (lz4 with --lz4). Timed from
 *                  the first produce() to flush() returning with every
 *                  delivery report received, none failed. Same run: the gRPC
 *                  produce (librunnel, topic `grpc-bench`), the embedded
 *                  producer baseline (bench_net.c), and a client that batches
 *                  (kafka_produce_batched: Produce v3 requests of batches it
 *                  built with rn_batch_builder, topic `kafka-batched`), which
 *                  separates the Kafka front's cost from librdkafka's; same
 *                  records.
 *   kafka-consume  --records N records are produced first (gRPC, not timed);
 *                  then read from offset 0 to the end by the gRPC consumer
 *                  (bench_net.c) and by librdkafka's consumer (the partitions
 *                  assigned directly, no group), every message counted and its
 *                  value length summed; and by a client of our own
 *                  (kafka_consume_batched: Fetch v4, rn_batch_iter), which
 *                  separates the Kafka front's cost from librdkafka's.
 *
 * Output: a table, or with --json one object per path: bench, path
 * (the row's name), records, size, records_per_s, mb_per_s, and CPU
 * time of the bench and of runneld for the Kafka path.
 */
#include "batch/batch.h"
#include "bench/bench.h"
#include "bench/bench_net.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct kstate {
    uint64_t acked, failed;
    char     first_err[256];
} kstate_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kstate_t *s = opaque;
    if (m->err) {
        if (!s->failed++)
            snprintf(s->first_err, sizeof s->first_err, "%s", rd_kafka_err2str(m->err));
    } else {
        s->acked++;
    }
}

static int kconf_set(const net_cfg_t *cfg, rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK)
        return bench_fail(cfg->cmd, RN_EINVAL, "librdkafka %s=%s: %s", k, v, err);
    return 0;
}

typedef struct kprod {
    const net_cfg_t *cfg;
    const char      *kaddr, *topic;
    uint32_t         queues;
    const uint8_t   *values;
    uint64_t         first, count;
    int              rc;
} kprod_t;

/* One librdkafka producer: records [first, first + count). */
static void *kafka_produce_main(void *arg)
{
    kprod_t *w = arg;
    const net_cfg_t *cfg = w->cfg;
    char err[512], num[32];
    kstate_t s = {0};
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc = kconf_set(cfg, c, "bootstrap.servers", w->kaddr);
    if (!rc) rc = kconf_set(cfg, c, "acks", "all");
    snprintf(num, sizeof num, "%llu", (unsigned long long)cfg->linger_ms);
    if (!rc) rc = kconf_set(cfg, c, "linger.ms", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)cfg->batch_bytes);
    if (!rc) rc = kconf_set(cfg, c, "batch.size", num);
    if (!rc) rc = kconf_set(cfg, c, "batch.num.messages", "1000000");
    if (!rc) rc = kconf_set(cfg, c, "queue.buffering.max.messages", "2000000");
    if (!rc) rc = kconf_set(cfg, c, "queue.buffering.max.kbytes", "2097151");
    if (!rc) rc = kconf_set(cfg, c, "compression.codec", cfg->lz4 ? "lz4" : "none");
    if (rc) {
        rd_kafka_conf_destroy(c);
        w->rc = rc;
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_opaque(c, &s);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!rk) {
        w->rc = bench_fail(cfg->cmd, -EIO, "rd_kafka_new: %s", err);
        return NULL;
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, w->topic, NULL);
    for (uint64_t i = w->first; i < w->first + w->count && !rc;) {
        const uint8_t *v = w->values + (i % BENCH_NET_POOL) * cfg->size;
        if (rd_kafka_produce(t, (int32_t)(i % w->queues), RD_KAFKA_MSG_F_COPY, (void *)v,
                             cfg->size, NULL, 0, NULL) == 0) {
            i++;
            if ((i & 0xffff) == 0) rd_kafka_poll(rk, 0);
            continue;
        }
        rd_kafka_resp_err_t e = rd_kafka_last_error();
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(rk, 1);
        else rc = bench_fail(cfg->cmd, -EIO, "produce: %s", rd_kafka_err2str(e));
    }
    if (!rc && rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = bench_fail(cfg->cmd, -ETIMEDOUT, "flush did not finish within 120 s");
    if (!rc && (s.failed || s.acked != w->count))
        rc = bench_fail(cfg->cmd, -EIO, "%llu of %llu records acknowledged, %llu failed (%s)",
                        (unsigned long long)s.acked, (unsigned long long)w->count,
                        (unsigned long long)s.failed, s.first_err);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    w->rc = rc;
    return NULL;
}

/* Produce cfg->records through cfg->producers librdkafka producers (one
 * thread each) to topic (queues partitions); *ns first produce to last
 * flush. */
static int kafka_produce(const net_cfg_t *cfg, const char *kaddr, const char *topic,
                         uint32_t queues, const uint8_t *values, uint64_t *ns)
{
    size_t n = cfg->producers;
    kprod_t *w = calloc(n, sizeof *w);
    pthread_t *th = calloc(n, sizeof *th);
    int rc = 0;
    if (!w || !th) rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory");
    uint64_t t0 = rn_mono_ns();
    size_t started = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        w[i] = (kprod_t){cfg, kaddr, topic, queues, values, cfg->records * i / n,
                         cfg->records * (i + 1) / n - cfg->records * i / n, 0};
        if (pthread_create(&th[i], NULL, kafka_produce_main, &w[i]) != 0)
            rc = bench_fail(cfg->cmd, -EAGAIN, "pthread_create failed");
        else started++;
    }
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    *ns = rn_mono_ns() - t0;
    for (size_t i = 0; i < started && !rc; i++) rc = w[i].rc;
    free(w);
    free(th);
    return rc;
}

/* ---- a client that batches: raw Produce requests ------------------------------ */

/* The same records through the Kafka front from a client that builds its
 * RecordBatches itself (rn_batch_builder, as librunnel does for gRPC) and
 * sends Produce v3 requests (one batch per partition each, acks all) on one
 * connection, KBATCH_INFLIGHT in flight: the Kafka front's own cost, without
 * librdkafka's per-message work. Every partition's answer must be error 0. */
#define KBATCH_INFLIGHT 8

typedef struct kreq {
    uint8_t *p;
    size_t   len, cap;
} kreq_t;

static int kreq_put(kreq_t *r, const void *src, size_t n)
{
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 1u << 20;
        while (cap < r->len + n) cap *= 2;
        uint8_t *np = realloc(r->p, cap);
        if (!np) return -ENOMEM;
        r->p = np;
        r->cap = cap;
    }
    memcpy(r->p + r->len, src, n);
    r->len += n;
    return 0;
}
static int kreq_i16(kreq_t *r, int16_t v)
{
    uint8_t b[2];
    rn_be16_put(b, (uint16_t)v);
    return kreq_put(r, b, 2);
}
static int kreq_i32(kreq_t *r, int32_t v)
{
    uint8_t b[4];
    rn_be32_put(b, (uint32_t)v);
    return kreq_put(r, b, 4);
}
static int kreq_str(kreq_t *r, const char *s)
{
    if (!s) return kreq_i16(r, -1);
    int rc = kreq_i16(r, (int16_t)strlen(s));
    return rc ? rc : kreq_put(r, s, strlen(s));
}

static int kfd_connect(const char *kaddr)
{
    char host[64];
    snprintf(host, sizeof host, "%s", kaddr);
    char *colon = strrchr(host, ':');
    if (!colon) return -EINVAL;
    *colon = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int kfd_io(int fd, void *p, size_t n, int wr)
{
    uint8_t *b = p;
    while (n) {
        ssize_t k = wr ? write(fd, b, n) : read(fd, b, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return k == 0 ? -EPIPE : -errno;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read one answer into in (its bytes after the correlation id at in->p + 4,
 * in->len bytes in all) and check it answers request corr. */
static int kfd_answer(const net_cfg_t *cfg, int fd, kreq_t *in, int32_t corr)
{
    uint8_t sz[4];
    int rc = kfd_io(fd, sz, 4, 0);
    if (rc) return bench_fail(cfg->cmd, rc, "reading an answer: %s", strerror(-rc));
    size_t n = rn_be32_get(sz);
    if (n < 8 || n > (64u << 20)) return bench_fail(cfg->cmd, -EPROTO, "an answer of %zu bytes", n);
    if (n > in->cap) {
        uint8_t *np = realloc(in->p, n);
        if (!np) return -ENOMEM;
        in->p = np;
        in->cap = n;
    }
    in->len = n;
    if ((rc = kfd_io(fd, in->p, n, 0)) != 0)
        return bench_fail(cfg->cmd, rc, "reading an answer: %s", strerror(-rc));
    if ((int32_t)rn_be32_get(in->p) != corr)
        return bench_fail(cfg->cmd, -EPROTO, "answer %d to request %d",
                          (int32_t)rn_be32_get(in->p), corr);
    return 0;
}

/* The request header (size filled in by kreq_send). */
static int kreq_begin(kreq_t *r, int16_t api, int16_t version, int32_t corr)
{
    r->len = 0;
    int rc = kreq_i32(r, 0);
    if (!rc) rc = kreq_i16(r, api);
    if (!rc) rc = kreq_i16(r, version);
    if (!rc) rc = kreq_i32(r, corr);
    if (!rc) rc = kreq_str(r, "runnel-bench");
    return rc;
}

static int kreq_send(const net_cfg_t *cfg, int fd, kreq_t *r)
{
    rn_be32_put(r->p, (uint32_t)(r->len - 4));
    int rc = kfd_io(fd, r->p, r->len, 1);
    return rc ? bench_fail(cfg->cmd, rc, "sending a request: %s", strerror(-rc)) : 0;
}

/* Read one Produce v3 answer; the first nonzero partition error, or 0. */
static int kbatch_answer(const net_cfg_t *cfg, int fd, kreq_t *in, int32_t corr)
{
    int rc = kfd_answer(cfg, fd, in, corr);
    if (rc) return rc;
    const uint8_t *p = in->p + 4, *end = in->p + in->len;
    int32_t nt = (int32_t)rn_be32_get(p);
    p += 4;
    for (int32_t t = 0; t < nt && p + 2 <= end; t++) {
        p += 2 + rn_be16_get(p);
        if (p + 4 > end) break;
        int32_t np = (int32_t)rn_be32_get(p);
        p += 4;
        for (int32_t i = 0; i < np && p + 22 <= end; i++, p += 22) {
            int16_t err = (int16_t)rn_be16_get(p + 4);
            if (err) return bench_fail(cfg->cmd, -EIO, "partition %d: Kafka error %d",
                                       (int32_t)rn_be32_get(p), err);
        }
    }
    return 0;
}

static int kafka_produce_batched(const net_cfg_t *cfg, const char *kaddr, const char *topic,
                                 uint32_t queues, const uint8_t *values, uint64_t *ns)
{
    int fd = kfd_connect(kaddr);
    if (fd < 0) return bench_fail(cfg->cmd, fd, "connect %s: %s", kaddr, strerror(-fd));
    rn_batch_builder_t *bb = calloc(queues, sizeof *bb);
    uint64_t *next = calloc(queues, sizeof *next);     /* next record index per partition */
    kreq_t out = {0}, in = {0};
    int rc = bb && next ? 0 : -ENOMEM;
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    o.max_bytes = (uint32_t)cfg->batch_bytes;
    o.codec = cfg->lz4 ? RN_BATCH_CODEC_LZ4 : RN_BATCH_CODEC_NONE;
    for (uint32_t q = 0; q < queues && !rc; q++) {
        rc = rn_batch_builder_init(&bb[q], &o);
        next[q] = q;
    }
    int32_t sent = 0, answered = 0;
    uint64_t t0 = rn_mono_ns();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    for (int more = 1; !rc && (more || answered < sent);) {
        more = 0;
        for (uint32_t q = 0; q < queues; q++) more |= next[q] < cfg->records;
        if (more && sent - answered < KBATCH_INFLIGHT) {
            rc = kreq_begin(&out, 0, 3, sent);                 /* Produce v3 */
            if (!rc) rc = kreq_str(&out, NULL);                /* transactional_id */
            if (!rc) rc = kreq_i16(&out, -1);                  /* acks all */
            if (!rc) rc = kreq_i32(&out, 30000);
            if (!rc) rc = kreq_i32(&out, 1);
            if (!rc) rc = kreq_str(&out, topic);
            uint32_t parts = 0;
            for (uint32_t q = 0; q < queues; q++) parts += next[q] < cfg->records;
            if (!rc) rc = kreq_i32(&out, (int32_t)parts);
            for (uint32_t q = 0; q < queues && !rc; q++) {
                if (next[q] >= cfg->records) continue;
                rn_batch_builder_reset(&bb[q]);
                for (; next[q] < cfg->records; next[q] += queues) {
                    rn_record_t r = {.timestamp = ts,
                                     .value = values + (next[q] % BENCH_NET_POOL) * cfg->size,
                                     .value_len = (int32_t)cfg->size};
                    int a = rn_batch_builder_add(&bb[q], &r);
                    if (a == RN_EFULL) break;
                    if (a) {
                        rc = bench_fail(cfg->cmd, a, "building a batch");
                        break;
                    }
                }
                const uint8_t *bp;
                size_t blen;
                if (!rc) rc = rn_batch_builder_finish(&bb[q], &bp, &blen);
                if (!rc) rc = kreq_i32(&out, (int32_t)q);
                if (!rc) rc = kreq_i32(&out, (int32_t)blen);
                if (!rc) rc = kreq_put(&out, bp, blen);
            }
            if (!rc) rc = kreq_send(cfg, fd, &out);
            sent++;
        } else if (answered < sent) {
            rc = kbatch_answer(cfg, fd, &in, answered++);
        }
    }
    *ns = rn_mono_ns() - t0;
    for (uint32_t q = 0; bb && q < queues; q++) rn_batch_builder_destroy(&bb[q]);
    free(bb);
    free(next);
    free(out.p);
    free(in.p);
    close(fd);
    return rc;
}

/* Read every partition from 0 to its end through the Kafka front with a
 * client of our own: Fetch v4 for all partitions (4 MiB each, 16 MiB in all,
 * one request in flight, as librdkafka has per broker), every record decoded
 * with rn_batch_iter (as the gRPC consumer does) and counted. */
static int kafka_consume_batched(const net_cfg_t *cfg, const char *kaddr, const char *topic,
                                 uint32_t queues, uint64_t want, uint64_t *records,
                                 uint64_t *bytes, uint64_t *ns)
{
    int fd = kfd_connect(kaddr);
    if (fd < 0) return bench_fail(cfg->cmd, fd, "connect %s: %s", kaddr, strerror(-fd));
    int64_t *off = calloc(queues, sizeof *off);
    kreq_t out = {0}, in = {0};
    rn_batch_limits_t lim = {0, 0};
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &lim);
    char err[RN_ERRMSG_SIZE];
    int rc = off ? 0 : -ENOMEM;
    *records = *bytes = 0;
    uint64_t t0 = rn_mono_ns();
    for (int32_t corr = 0; !rc && *records < want; corr++) {
        rc = kreq_begin(&out, 1, 4, corr);                      /* Fetch v4 */
        if (!rc) rc = kreq_i32(&out, -1);                        /* replica_id */
        if (!rc) rc = kreq_i32(&out, 500);                       /* max_wait_ms */
        if (!rc) rc = kreq_i32(&out, 1);                         /* min_bytes */
        if (!rc) rc = kreq_i32(&out, 16 << 20);                  /* max_bytes */
        if (!rc) rc = kreq_put(&out, "", 1);                     /* isolation: uncommitted */
        if (!rc) rc = kreq_i32(&out, 1);
        if (!rc) rc = kreq_str(&out, topic);
        if (!rc) rc = kreq_i32(&out, (int32_t)queues);
        for (uint32_t q = 0; q < queues && !rc; q++) {
            uint8_t o[8];
            rn_be64_put(o, (uint64_t)off[q]);
            rc = kreq_i32(&out, (int32_t)q);
            if (!rc) rc = kreq_put(&out, o, 8);
            if (!rc) rc = kreq_i32(&out, 4 << 20);               /* partition_max_bytes */
        }
        if (!rc) rc = kreq_send(cfg, fd, &out);
        if (!rc) rc = kfd_answer(cfg, fd, &in, corr);
        if (rc) break;
        const uint8_t *p = in.p + 8, *end = in.p + in.len;      /* after throttle_time */
        int32_t nt = p <= end - 4 ? (int32_t)rn_be32_get(p) : 0;
        p += 4;
        for (int32_t t = 0; t < nt && !rc && p + 2 <= end; t++) {
            p += 2 + rn_be16_get(p);
            int32_t np = p + 4 <= end ? (int32_t)rn_be32_get(p) : 0;
            p += 4;
            for (int32_t i = 0; i < np && !rc && p + 26 <= end; i++) {
                uint32_t q = rn_be32_get(p);
                int16_t e = (int16_t)rn_be16_get(p + 4);
                p += 22;                                          /* index, error, hwm, lso */
                int32_t na = (int32_t)rn_be32_get(p);
                p += 4 + (na > 0 ? (size_t)na * 16 : 0);
                if (p + 4 > end || q >= queues || e)
                    rc = bench_fail(cfg->cmd, -EPROTO, "Fetch answer: partition %u error %d", q, e);
                if (rc) break;
                int32_t rl = (int32_t)rn_be32_get(p);
                p += 4;
                const uint8_t *b = p, *bend = p + (rl > 0 ? rl : 0);
                if (bend > end) bend = end;
                p = bend;
                while (!rc && bend - b >= 12 && (size_t)(bend - b) >= rn_be32_get(b + 8) + 12u) {
                    size_t blen = rn_be32_get(b + 8) + 12u;
                    int64_t base = (int64_t)rn_be64_get(b);
                    rc = rn_batch_iter_reset(&it, b, blen, err);
                    rn_record_t r;
                    int k;
                    while (!rc && (k = rn_batch_iter_next(&it, &r, err)) == 1) {
                        if (r.offset < off[q]) continue;              /* before the position */
                        (*records)++;
                        *bytes += (uint64_t)r.value_len;
                    }
                    if (!rc && k < 0) rc = k;
                    if (rc) rc = bench_fail(cfg->cmd, rc, "a fetched batch: %s", err);
                    off[q] = base + (int32_t)rn_be32_get(b + 23) + 1;  /* last_offset_delta */
                    b += blen;
                }
            }
        }
    }
    *ns = rn_mono_ns() - t0;
    rn_batch_iter_destroy(&it);
    free(off);
    free(out.p);
    free(in.p);
    close(fd);
    if (!rc && *records != want)
        rc = bench_fail(cfg->cmd, -EIO, "read %llu records, expected %llu",
                        (unsigned long long)*records, (unsigned long long)want);
    return rc;
}

/* Read every partition of topic from 0 to its end through librdkafka. */
static int kafka_consume(const net_cfg_t *cfg, const char *kaddr, const char *topic,
                         uint32_t queues, uint64_t want, uint64_t *records, uint64_t *bytes,
                         uint64_t *ns)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    int rc = kconf_set(cfg, c, "bootstrap.servers", kaddr);
    if (!rc) rc = kconf_set(cfg, c, "fetch.message.max.bytes", "4194304");
    if (!rc) rc = kconf_set(cfg, c, "queued.max.messages.kbytes", "262144");
    /* librdkafka stops fetching a partition while more than queued.min.messages
     * (default 100,000) wait in its local queue, and notices the queue drained
     * only at its next wakeup (up to a second later): one Fetch answer of 4 MiB
     * per partition is 40,000 records, so the default stalls the reader. */
    if (!rc) rc = kconf_set(cfg, c, "queued.min.messages", "1000000");
    if (rc) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) return bench_fail(cfg->cmd, -EIO, "rd_kafka_new: %s", err);
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    uint64_t t0 = rn_mono_ns();
    for (uint32_t p = 0; p < queues; p++)
        rd_kafka_consume_start_queue(t, (int32_t)p, RD_KAFKA_OFFSET_BEGINNING, q);
    *records = *bytes = 0;
    rd_kafka_message_t *v[4096];
    /* Until the last record arrived (a partition-EOF event would come only
     * after one more Fetch per partition parked for fetch.wait.max.ms). */
    while (!rc && *records < want) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 1000, v, 4096);
        if (n < 0) rc = bench_fail(cfg->cmd, -EIO, "consume: %s",
                                   rd_kafka_err2str(rd_kafka_last_error()));
        if (n == 0 && rn_mono_ns() - t0 > 120ull * 1000000000ull)
            rc = bench_fail(cfg->cmd, -ETIMEDOUT, "%llu of %llu records in 120 s",
                            (unsigned long long)*records, (unsigned long long)want);
        for (ssize_t i = 0; i < n; i++) {
            if (v[i]->err) rc = bench_fail(cfg->cmd, -EIO, "consume: %s",
                                                rd_kafka_message_errstr(v[i]));
            else {
                (*records)++;
                *bytes += v[i]->len;
            }
            rd_kafka_message_destroy(v[i]);
        }
    }
    *ns = rn_mono_ns() - t0;
    for (uint32_t p = 0; p < queues; p++) rd_kafka_consume_stop(t, (int32_t)p);
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    if (!rc && *records != want)
        rc = bench_fail(cfg->cmd, -EIO, "read %llu records, expected %llu",
                        (unsigned long long)*records, (unsigned long long)want);
    return rc;
}

typedef struct kresult {
    const char *path;
    uint64_t    records, bytes, ns;
} kresult_t;

static void report(const net_cfg_t *cfg, const char *bench, const kresult_t *r, size_t n,
                   cpu_mark_t m)
{
    if (cfg->json) {
        for (size_t i = 0; i < n; i++) {
            bench_json_t j;
            bench_json_begin(&j, stdout);
            bench_json_str(&j, "bench", bench);
            bench_json_str(&j, "path", r[i].path);
            bench_json_str(&j, "fsync", cfg->fsync ? cfg->fsync : "group");
            bench_json_u64(&j, "records", r[i].records);
            bench_json_u64(&j, "size", cfg->size);
            bench_json_f64(&j, "records_per_s", bench_per_s(r[i].records, r[i].ns));
            bench_json_f64(&j, "mb_per_s", bench_mb_per_s(r[i].bytes, r[i].ns));
            if (i == 0) bench_cpu_report(cfg, &j, m, r[i].records);
            bench_json_end(&j);
        }
        return;
    }
    bench_table_t t;
    bench_table_init(&t, 4);
    int rc = bench_table_cell(&t, "path");
    if (!rc) rc = bench_table_cell(&t, "records/s");
    if (!rc) rc = bench_table_cell(&t, "MB/s");
    if (!rc) rc = bench_table_cell(&t, "s");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = bench_table_cell(&t, "%s", r[i].path);
        if (!rc) rc = bench_table_cell(&t, "%.0f", bench_per_s(r[i].records, r[i].ns));
        if (!rc) rc = bench_table_cell(&t, "%.1f", bench_mb_per_s(r[i].bytes, r[i].ns));
        if (!rc) rc = bench_table_cell(&t, "%.3f", (double)r[i].ns / 1e9);
    }
    if (!rc) bench_table_print(&t, stdout);
    bench_table_free(&t);
    bench_cpu_report(cfg, NULL, m, r[0].records);
    for (size_t i = 1; i < n; i++)
        bench_note(0, "ratio %s / %s: %.2f", r[0].path, r[i].path,
                   bench_per_s(r[0].records, r[0].ns) / bench_per_s(r[i].records, r[i].ns));
}

static int kafka_produce_bench(const net_cfg_t *cfg0, const broker_t *b)
{
    net_cfg_t cfg = *cfg0;
    rn_client_t **cs = calloc(cfg.producers, sizeof *cs);
    uint8_t *values = bench_net_values(&cfg);
    uint32_t queues = 0;
    kresult_t r[4] = {{"kafka (librdkafka)", cfg.records, cfg.records * cfg.size, 0},
                      {"gRPC (librunnel)", cfg.records, cfg.records * cfg.size, 0},
                      {"embedded producer", cfg.records, cfg.records * cfg.size, 0},
                      {"kafka (batching client)", cfg.records, cfg.records * cfg.size, 0}};
    int rc = values && cs ? 0 : bench_fail(cfg.cmd, -ENOMEM, "out of memory");
    if (!rc) rc = bench_net_open(&cfg, b->addr, cfg.producers, cs);
    cfg.topic = "kafka-bench";
    if (!rc) rc = bench_net_topic(&cfg, cs[0], &queues);
    bench_note(cfg.json, "kafka-produce: %llu records of %llu bytes, %u partitions, %llu "
               "producer(s), fsync %s, linger %llu ms, batch.size %llu%s",
               (unsigned long long)cfg.records, (unsigned long long)cfg.size, queues,
               (unsigned long long)cfg.producers, cfg.fsync ? cfg.fsync : "group",
               (unsigned long long)cfg.linger_ms, (unsigned long long)cfg.batch_bytes,
               cfg.lz4 ? ", lz4" : "");
    cpu_mark_t m = bench_cpu_now();
    if (!rc) rc = kafka_produce(&cfg, b->kafka, cfg.topic, queues, values, &r[0].ns);
    cpu_mark_t m_end = bench_cpu_now();
    cfg.topic = "grpc-bench";
    if (!rc) rc = bench_net_topic(&cfg, cs[0], &queues);
    if (!rc) rc = bench_net_produce_run(&cfg, cs, cfg.records, values, &r[1].ns);
    if (!rc) rc = bench_net_baseline(&cfg, values, &r[2].ns);
    cfg.topic = "kafka-batched";
    if (!rc) rc = bench_net_topic(&cfg, cs[0], &queues);
    if (!rc) rc = kafka_produce_batched(&cfg, b->kafka, cfg.topic, queues, values, &r[3].ns);
    if (!rc) {
        /* CPU of the Kafka path only: report from m, with the end mark's
         * figures (the gRPC and embedded runs came after). */
        cpu_mark_t now = bench_cpu_now();
        cpu_mark_t since = {m.self + (now.self - m_end.self), m.broker + (now.broker - m_end.broker)};
        report(&cfg, "kafka-produce", r, 4, since);
    }
    if (cs) bench_net_close(cs, cfg.producers);
    free(cs);
    free(values);
    return rc;
}

static int kafka_consume_bench(const net_cfg_t *cfg0, const broker_t *b)
{
    net_cfg_t cfg = *cfg0;
    cfg.topic = "kafka-bench";
    cfg.consumers = 1;
    rn_client_t *c = NULL;
    uint8_t *values = bench_net_values(&cfg);
    uint32_t queues = 0;
    uint64_t pns;
    kresult_t r[3] = {{"kafka (librdkafka)", 0, 0, 0}, {"gRPC (librunnel)", 0, 0, 0},
                      {"kafka (batching client)", 0, 0, 0}};
    int rc = values ? 0 : bench_fail(cfg.cmd, -ENOMEM, "out of memory");
    if (!rc) rc = bench_net_open(&cfg, b->addr, 1, &c);
    if (!rc) rc = bench_net_topic(&cfg, c, &queues);
    if (!rc) rc = bench_net_produce_run(&cfg, &c, cfg.records, values, &pns);
    bench_note(cfg.json, "kafka-consume: %llu records of %llu bytes in %u partitions (produced "
               "over gRPC first, not timed), fsync %s", (unsigned long long)cfg.records,
               (unsigned long long)cfg.size, queues, cfg.fsync ? cfg.fsync : "group");
    if (!rc) rc = bench_net_consume_run(&cfg, &c, queues, &r[1].records, &r[1].bytes, &r[1].ns);
    cpu_mark_t m = bench_cpu_now();
    if (!rc)
        rc = kafka_consume(&cfg, b->kafka, cfg.topic, queues, cfg.records, &r[0].records,
                           &r[0].bytes, &r[0].ns);
    cpu_mark_t m_end = bench_cpu_now();
    if (!rc)
        rc = kafka_consume_batched(&cfg, b->kafka, cfg.topic, queues, cfg.records,
                                   &r[2].records, &r[2].bytes, &r[2].ns);
    if (!rc) {
        cpu_mark_t now = bench_cpu_now();
        cpu_mark_t since = {m.self + (now.self - m_end.self), m.broker + (now.broker - m_end.broker)};
        report(&cfg, "kafka-consume", r, 3, since);
    }
    if (c) bench_net_close(&c, 1);
    free(values);
    return rc;
}

static int run(const net_cfg_t *cfg, int (*fn)(const net_cfg_t *, const broker_t *))
{
    signal(SIGPIPE, SIG_IGN);
    broker_t b;
    int rc = bench_broker_start(cfg, &b);
    if (rc == 0) {
        bench_note(cfg->json, "%s: started runneld (gRPC %s, Kafka %s, data in %s)", cfg->cmd,
                   b.addr, b.kafka, b.dir);
        rc = fn(cfg, &b);
    }
    int src = bench_broker_stop(cfg, &b);
    return rc ? rc : src;
}

static int kp_parse(int argc, char **argv, void *cfg)
{
    return bench_net_parse("kafka-produce", argc, argv, cfg);
}
static int kc_parse(int argc, char **argv, void *cfg)
{
    return bench_net_parse("kafka-consume", argc, argv, cfg);
}
static int kp_run(const void *cfg) { return run(cfg, kafka_produce_bench); }
static int kc_run(const void *cfg) { return run(cfg, kafka_consume_bench); }

#define KAFKA_FLAGS "[--records N] [--size B] [--queues Q] [--producers P] [--linger-ms MS] " \
                    "[--batch-bytes K] " \
                    "[--fsync POLICY] [--dir DIR] [--lz4] [--json]"

const bench_cmd_t bench_cmd_kafka_produce = {
    "kafka-produce", KAFKA_FLAGS "  (librdkafka -> runneld's Kafka front, beside gRPC and "
    "embedded)", sizeof(net_cfg_t), kp_parse, kp_run,
};
const bench_cmd_t bench_cmd_kafka_consume = {
    "kafka-consume", KAFKA_FLAGS "  (librdkafka reads from runneld's Kafka front, beside gRPC)",
    sizeof(net_cfg_t), kc_parse, kc_run,
};

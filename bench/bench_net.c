/*
 * bench_net.c — `runnel-bench produce | consume | e2e`: the broker path,
 * measured through librunnel (client/runnel.h) exactly as applications use
 * it.
 *
 * Where. --server HOST:PORT measures that broker. Without it the bench starts
 * its own: RN_BIN_DIR/runneld on 127.0.0.1 with a free port (--listen
 * 127.0.0.1:0 --port-file), on a fresh data directory under --dir (default
 * /var/tmp), stopped with SIGTERM (exit 0 required) and removed at the end.
 *
 * What.
 *   produce  --records N values of --size bytes (log-line-like JSON,
 *            bench_fill_value), from --producers P threads, each with its own
 *            client connection and producer (batches of --batch-bytes,
 *            --linger-ms, round-robin over the topic's queues), to topic
 *            --topic (default `bench`, created with --queues when missing).
 *            Timed: from the first send to the last flush returning (every
 *            record acknowledged, durable under the broker's fsync policy).
 *            Same run, the baseline: the same records through the same
 *            producer code embedded (rn_client_open_data on a fresh data
 *            directory under --dir, fsync group like runneld's default), so
 *            ratio = over gRPC / embedded append, the DESIGN §9 target (>= 40%).
 *            --no-baseline skips it.
 *   consume  reads the topic from earliest to its end (each queue's high
 *            watermark when the run starts) with --consumers C threads, each
 *            with its own connection, queues dealt round-robin; every batch
 *            is CRC-checked and its records decoded (views, not copied).
 *            When the topic holds fewer than --records records, the missing
 *            ones are produced first (not timed).
 *   e2e      one producer sends --rate R records/s for --seconds S (paced by
 *            the clock; linger --linger-ms, default 1), each value starting
 *            with its send time (monotonic ns); one consumer long-polls the
 *            topic's queues and records now - send time per record.
 *            p50/p99/p99.9 over every record (nearest rank). The broker acks
 *            after group commit (its default --fsync group), and consumers
 *            see only durable records, so the latency includes the fsync.
 *            The producer waits for durable acks by default; --acks-written
 *            lets it send a queue's next request once the previous one is
 *            written (one request per queue is in flight), which takes one
 *            fsync wait off the path; consumers still see durable data only.
 *
 * Output: a table, or with --json one object: bench (produce|consume|e2e),
 * records, size, records_per_s, mb_per_s (value bytes, MB = 10^6), and
 * baseline_records_per_s + ratio (produce), p50_us/p99_us/p999_us (e2e).
 * Besides wall time, CPU time over the timed window is reported: this
 * process's (client_cpu_ms, every thread) and, when the bench started the
 * broker, runneld's (broker_cpu_ms, from /proc): on a shared machine they
 * tell the cost per record apart from waiting for a CPU or the disk.
 */
#include "batch/batch.h"
#include "bench/bench.h"
#include "bench/bench_net.h"
#include "client/runnel.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>


/* ---- CPU accounting ---------------------------------------------------------- */

pid_t bench_broker_pid;

static uint64_t self_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000u +
           ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000u;
}

/* runneld's user + system CPU (ns) from /proc/PID/stat; 0 when unknown. */
static uint64_t broker_cpu_ns(void)
{
    if (bench_broker_pid <= 0) return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)bench_broker_pid);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');          /* the command may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (ut + st) * 1000000000ull / (uint64_t)hz : 0;
}


cpu_mark_t bench_cpu_now(void) { return (cpu_mark_t){self_cpu_ns(), broker_cpu_ns()}; }

/* Note and (json) fields for the CPU used since m. */
void bench_cpu_report(const net_cfg_t *cfg, bench_json_t *j, cpu_mark_t m, uint64_t records)
{
    cpu_mark_t e = bench_cpu_now();
    double self_ms = (double)(e.self - m.self) / 1e6;
    double broker_ms = bench_broker_pid > 0 ? (double)(e.broker - m.broker) / 1e6 : -1;
    if (j) {
        bench_json_f64(j, "client_cpu_ms", self_ms);
        if (broker_ms >= 0) bench_json_f64(j, "broker_cpu_ms", broker_ms);
        else bench_json_null(j, "broker_cpu_ms");
        return;
    }
    if (broker_ms >= 0)
        bench_note(cfg->json, "CPU: client %.0f ms (%.3f µs/record), runneld %.0f ms (%.3f µs/record)",
                   self_ms, self_ms * 1000 / (double)records, broker_ms,
                   broker_ms * 1000 / (double)records);
    else
        bench_note(cfg->json, "CPU: client %.0f ms (%.3f µs/record)", self_ms,
                   self_ms * 1000 / (double)records);
}

/* ---- A broker of our own ---------------------------------------------------- */


static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* runneld on a fresh directory, a free loopback port (waits at most 10 s). */
int bench_broker_start(const net_cfg_t *cfg, broker_t *b)
{
    char data[PATH_MAX + 8], portfile[PATH_MAX + 16], log[PATH_MAX + 16];
    memset(b, 0, sizeof *b);
    int rc = bench_mkdtemp(cfg->dir, b->dir, sizeof b->dir);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "mkdtemp under %s: %s", cfg->dir ? cfg->dir : "/var/tmp", rn_strerror(rc));
    snprintf(data, sizeof data, "%s/data", b->dir);
    snprintf(portfile, sizeof portfile, "%s/port", b->dir);
    snprintf(log, sizeof log, "%s/runneld.log", b->dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return bench_fail(cfg->cmd, -errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        const char *argv[16] = {RN_BIN_DIR "/runneld", "--data", data, "--listen", "127.0.0.1:0",
                                "--port-file", portfile, "--log-level", "warn"};
        int n = 9;
        if (getuid() == 0) argv[n++] = "--allow-root";   /* refused as root without it */
        if (cfg->fsync) { argv[n++] = "--fsync"; argv[n++] = cfg->fsync; }
        if (cfg->kafka) { argv[n++] = "--kafka-listen"; argv[n++] = "127.0.0.1:0"; }
        argv[n] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    b->pid = pid;
    for (int i = 0; i < 1000; i++) {
        FILE *fp = fopen(portfile, "r");
        int port = 0, kport = 0;
        if (fp) {
            if (fscanf(fp, "%d %d", &port, &kport) < 1) port = 0;
            fclose(fp);
        }
        if (port > 0 && (!cfg->kafka || kport > 0)) {
            snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", port);
            if (cfg->kafka) snprintf(b->kafka, sizeof b->kafka, "127.0.0.1:%d", kport);
            bench_broker_pid = pid;
            return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            b->pid = 0;
            return bench_fail(cfg->cmd, -ECHILD, "%s/runneld exited at start; see %s",
                              RN_BIN_DIR, log);
        }
        sleep_ms(10);
    }
    return bench_fail(cfg->cmd, -ETIMEDOUT, "runneld did not listen within 10 s; see %s", log);
}

/* SIGTERM; 0 when it exited 0. The directory is removed either way. */
int bench_broker_stop(const net_cfg_t *cfg, broker_t *b)
{
    int rc = 0;
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        int status = 0, done = 0;
        for (int i = 0; i < 3000 && !done; i++) {
            if (waitpid(b->pid, &status, WNOHANG) == b->pid) done = 1;
            else sleep_ms(10);
        }
        if (!done) {
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
            rc = bench_fail(cfg->cmd, -ETIMEDOUT, "runneld did not stop within 30 s of SIGTERM");
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            rc = bench_fail(cfg->cmd, -EIO, "runneld exited with status %d after SIGTERM",
                            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        b->pid = 0;
        bench_broker_pid = 0;
    }
    if (b->dir[0]) bench_rmtree(b->dir);
    return rc;
}

/* ---- Shared pieces ------------------------------------------------------------ */


uint8_t *bench_net_values(const net_cfg_t *cfg)
{
    uint8_t *v = malloc(BENCH_NET_POOL * cfg->size);
    if (!v) return NULL;
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    for (size_t i = 0; i < BENCH_NET_POOL; i++) bench_fill_value(&rng, v + i * cfg->size, cfg->size);
    return v;
}

/* The topic, created with cfg->queues when missing; *queues its count. */
int bench_net_topic(const net_cfg_t *cfg, rn_client_t *c, uint32_t *queues)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_topic_t t;
    int rc = rn_client_topic_get(c, cfg->topic, &t, err);
    if (rc == RN_ENOTFOUND) rc = rn_client_topic_create(c, cfg->topic, (uint32_t)cfg->queues, &t, err);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "topic '%s': %s", cfg->topic, err);
    *queues = t.queues;
    return 0;
}

typedef struct pworker {
    const net_cfg_t *cfg;
    rn_client_t     *c;             /* own connection (remote) or shared (embedded) */
    const uint8_t   *values;
    uint64_t         first, count;
    int              rc;
    char             err[RN_ERRMSG_SIZE];
} pworker_t;

static void *produce_main(void *arg)
{
    pworker_t *w = arg;
    const net_cfg_t *cfg = w->cfg;
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = (uint32_t)cfg->batch_bytes;
    po.linger_ms = (uint32_t)cfg->linger_ms;
    po.codec = cfg->lz4 ? RN_BATCH_CODEC_LZ4 : RN_BATCH_CODEC_NONE;
    rn_producer_t *p;
    w->rc = rn_producer_open(w->c, cfg->topic, &po, &p, w->err);
    if (w->rc != 0) return NULL;
    int64_t now = rn_sys.now_ms();
    for (uint64_t i = 0; i < w->count && w->rc == 0; i++) {
        uint64_t k = w->first + i;
        rn_record_t r = {.timestamp = now + (int64_t)(k / 1000), .key_len = -1,
                         .value = w->values + (k % BENCH_NET_POOL) * cfg->size,
                         .value_len = (int32_t)cfg->size};
        w->rc = rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, NULL, NULL, w->err);
    }
    int rc = rn_producer_close(p, w->rc ? NULL : w->err);
    if (w->rc == 0) w->rc = rc;
    return NULL;
}

/* Produce cfg->records from cfg->producers threads; clients[i] per thread
 * (or one shared). *ns = first send to last flush. */
int bench_net_produce_run(const net_cfg_t *cfg, rn_client_t **clients, uint64_t records,
                       const uint8_t *values, uint64_t *ns)
{
    size_t n = cfg->producers;
    pworker_t *w = calloc(n, sizeof *w);
    pthread_t *th = calloc(n, sizeof *th);
    int rc = 0;
    if (!w || !th) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    uint64_t t0 = rn_mono_ns();
    size_t started = 0;
    for (size_t i = 0; i < n; i++) {
        w[i].cfg = cfg;
        w[i].c = clients[i];
        w[i].values = values;
        w[i].first = records * i / n;
        w[i].count = records * (i + 1) / n - w[i].first;
        if ((rc = pthread_create(&th[i], NULL, produce_main, &w[i])) != 0) {
            rc = bench_fail(cfg->cmd, -rc, "pthread_create: %s", strerror(rc));
            break;
        }
        started++;
    }
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    *ns = rn_mono_ns() - t0;
    for (size_t i = 0; i < started && rc == 0; i++)
        if (w[i].rc != 0) rc = bench_fail(cfg->cmd, w[i].rc, "producer %zu: %s", i, w[i].err);
out:
    free(w);
    free(th);
    return rc;
}

/* One client per worker: own connections remote; embedded, all share one. */
int bench_net_open(const net_cfg_t *cfg, const char *addr, size_t n, rn_client_t **v)
{
    char err[RN_ERRMSG_SIZE] = "";
    for (size_t i = 0; i < n; i++) {
        int rc = rn_client_open_server(addr, NULL, &v[i], err);
        if (rc != 0) return bench_fail(cfg->cmd, rc, "--server %s: %s", addr, err);
    }
    return 0;
}

void bench_net_close(rn_client_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++) rn_client_close(v[i]);
}

/* Embedded baseline: the same producers on a fresh data directory. */
int bench_net_baseline(const net_cfg_t *cfg, const uint8_t *values, uint64_t *ns)
{
    char err[RN_ERRMSG_SIZE] = "", dir[PATH_MAX], data[PATH_MAX + 8];
    int rc = bench_mkdtemp(cfg->dir, dir, sizeof dir);
    if (rc != 0) return bench_fail(cfg->cmd, rc, "mkdtemp: %s", rn_strerror(rc));
    snprintf(data, sizeof data, "%s/data", dir);
    rn_client_opts_t o;
    rn_client_opts_default(&o);
    o.create = 1;
    o.holder = "runnel-bench produce (embedded baseline)";
    rn_client_t *c = NULL;
    rn_client_t **shared = calloc(cfg->producers, sizeof *shared);
    uint32_t queues;
    if (!shared) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    if ((rc = rn_client_open_data(data, &o, &c, err)) != 0) {
        rc = bench_fail(cfg->cmd, rc, "%s", err);
        goto out;
    }
    if ((rc = bench_net_topic(cfg, c, &queues)) != 0) goto out;
    for (size_t i = 0; i < cfg->producers; i++) shared[i] = c;
    bench_settle_fs(dir);
    rc = bench_net_produce_run(cfg, shared, cfg->records, values, ns);
out:
    if (c) rn_client_close(c);
    free(shared);
    bench_rmtree(dir);
    return rc;
}

double bench_per_s(uint64_t n, uint64_t ns) { return ns ? (double)n / ((double)ns / 1e9) : 0; }

/* ---- produce -------------------------------------------------------------------- */

static int produce_bench(const net_cfg_t *cfg, const char *addr)
{
    rn_client_t **cs = calloc(cfg->producers, sizeof *cs);
    uint8_t *values = bench_net_values(cfg);
    uint32_t queues = 0;
    uint64_t ns = 0, base_ns = 0;
    int rc = 0;
    if (!cs || !values) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    if ((rc = bench_net_open(cfg, addr, cfg->producers, cs)) != 0) goto out;
    if ((rc = bench_net_topic(cfg, cs[0], &queues)) != 0) goto out;
    bench_note(cfg->json, "produce: %llu records of %llu bytes to topic '%s' (%u queues) on %s, "
               "%llu producer(s), batches of <= %llu bytes, linger %llu ms%s",
               (unsigned long long)cfg->records, (unsigned long long)cfg->size, cfg->topic, queues,
               addr, (unsigned long long)cfg->producers, (unsigned long long)cfg->batch_bytes,
               (unsigned long long)cfg->linger_ms, cfg->lz4 ? ", lz4" : "");
    cpu_mark_t m = bench_cpu_now();
    if ((rc = bench_net_produce_run(cfg, cs, cfg->records, values, &ns)) != 0) goto out;
    cpu_mark_t m_end = bench_cpu_now();
    if (!cfg->no_baseline && (rc = bench_net_baseline(cfg, values, &base_ns)) != 0) goto out;
    double rps = bench_per_s(cfg->records, ns), mb = bench_mb_per_s(cfg->records * cfg->size, ns);
    double base = base_ns ? bench_per_s(cfg->records, base_ns) : 0;
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "produce");
        bench_json_u64(&j, "records", cfg->records);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "batch_bytes", cfg->batch_bytes);
        bench_json_u64(&j, "producers", cfg->producers);
        bench_json_u64(&j, "queues", queues);
        bench_json_f64(&j, "records_per_s", rps);
        bench_json_f64(&j, "mb_per_s", mb);
        if (base_ns) {
            bench_json_f64(&j, "baseline_records_per_s", base);
            bench_json_f64(&j, "ratio", rps / base);
        } else {
            bench_json_null(&j, "baseline_records_per_s");
            bench_json_null(&j, "ratio");
        }
        bench_json_f64(&j, "client_cpu_ms", (double)(m_end.self - m.self) / 1e6);
        if (bench_broker_pid > 0) bench_json_f64(&j, "broker_cpu_ms", (double)(m_end.broker - m.broker) / 1e6);
        else bench_json_null(&j, "broker_cpu_ms");
        bench_json_end(&j);
    } else {
        bench_table_t t;
        bench_table_init(&t, 4);
        rc = bench_table_cell(&t, "path");
        if (rc == 0) rc = bench_table_cell(&t, "records/s");
        if (rc == 0) rc = bench_table_cell(&t, "MB/s");
        if (rc == 0) rc = bench_table_cell(&t, "s");
        if (rc == 0) rc = bench_table_cell(&t, "gRPC produce");
        if (rc == 0) rc = bench_table_cell(&t, "%.0f", rps);
        if (rc == 0) rc = bench_table_cell(&t, "%.1f", mb);
        if (rc == 0) rc = bench_table_cell(&t, "%.3f", (double)ns / 1e9);
        if (rc == 0 && base_ns) {
            rc = bench_table_cell(&t, "embedded producer");
            if (rc == 0) rc = bench_table_cell(&t, "%.0f", base);
            if (rc == 0) rc = bench_table_cell(&t, "%.1f", bench_mb_per_s(cfg->records * cfg->size, base_ns));
            if (rc == 0) rc = bench_table_cell(&t, "%.3f", (double)base_ns / 1e9);
        }
        if (rc == 0) bench_table_print(&t, stdout);
        bench_table_free(&t);
        if (base_ns) bench_note(0, "ratio gRPC / embedded: %.2f (target >= 0.40)", rps / base);
        double self_ms = (double)(m_end.self - m.self) / 1e6;
        bench_note(0, "CPU over gRPC: client %.0f ms (%.3f µs/record)%s", self_ms,
                   self_ms * 1000 / (double)cfg->records, bench_broker_pid > 0 ? "" : "; runneld: not ours");
        if (bench_broker_pid > 0)
            bench_note(0, "CPU over gRPC: runneld %.0f ms (%.3f µs/record)",
                       (double)(m_end.broker - m.broker) / 1e6,
                       (double)(m_end.broker - m.broker) / 1e3 / (double)cfg->records);
    }
out:
    if (cs) bench_net_close(cs, cfg->producers);
    free(cs);
    free(values);
    return rc;
}

/* ---- consume -------------------------------------------------------------------- */

typedef struct cworker {
    const net_cfg_t *cfg;
    rn_client_t     *c;
    uint32_t        *queues;
    size_t           nq;
    uint64_t         records, bytes;
    int              rc;
    char             err[RN_ERRMSG_SIZE];
} cworker_t;

static void *consume_main(void *arg)
{
    cworker_t *w = arg;
    rn_client_consumer_t *k;
    w->rc = rn_client_consumer_open(w->c, NULL, &k, w->err);
    if (w->rc != 0) return NULL;
    for (size_t i = 0; i < w->nq && w->rc == 0; i++) {
        int64_t ls, hw;
        w->rc = rn_client_queue_range(w->c, w->cfg->topic, w->queues[i], &ls, &hw, w->err);
        if (w->rc == 0) w->rc = rn_client_consumer_assign(k, w->cfg->topic, w->queues[i], ls, w->err);
        if (w->rc == 0) w->rc = rn_client_consumer_set_end(k, w->cfg->topic, w->queues[i], hw, w->err);
    }
    rn_consumer_batch_t b;
    int rc = 0;
    while (w->rc == 0 && (rc = rn_client_consumer_poll(k, &b, 0, w->err)) == 1) {
        w->records += b.count;
        for (uint32_t i = 0; i < b.count; i++)
            w->bytes += b.records[i].value_len > 0 ? (uint64_t)b.records[i].value_len : 0;
    }
    if (w->rc == 0 && rc < 0) w->rc = rc;
    rn_client_consumer_close(k);
    return NULL;
}

int bench_net_consume_run(const net_cfg_t *cfg, rn_client_t **cs, uint32_t queues,
                          uint64_t *records, uint64_t *bytes, uint64_t *ns)
{
    size_t n = cfg->consumers;
    cworker_t *w = calloc(n, sizeof *w);
    pthread_t *th = calloc(n, sizeof *th);
    int rc = 0;
    if (!w || !th) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    for (size_t i = 0; i < n; i++) {
        w[i].cfg = cfg;
        w[i].c = cs[i];
        w[i].queues = calloc(queues / n + 1, sizeof *w[i].queues);
        if (!w[i].queues) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    }
    for (uint32_t q = 0; q < queues; q++) w[q % n].queues[w[q % n].nq++] = q;
    uint64_t t0 = rn_mono_ns();
    size_t started = 0;
    for (size_t i = 0; i < n; i++) {
        if ((rc = pthread_create(&th[i], NULL, consume_main, &w[i])) != 0) {
            rc = bench_fail(cfg->cmd, -rc, "pthread_create: %s", strerror(rc));
            break;
        }
        started++;
    }
    for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    *ns = rn_mono_ns() - t0;
    *records = *bytes = 0;
    for (size_t i = 0; i < started; i++) {
        if (w[i].rc != 0 && rc == 0) rc = bench_fail(cfg->cmd, w[i].rc, "consumer %zu: %s", i, w[i].err);
        *records += w[i].records;
        *bytes += w[i].bytes;
    }
out:
    if (w) for (size_t i = 0; i < n; i++) free(w[i].queues);
    free(w);
    free(th);
    return rc;
}

static int consume_bench(const net_cfg_t *cfg, const char *addr)
{
    char err[RN_ERRMSG_SIZE] = "";
    size_t n = cfg->consumers;
    rn_client_t **cs = calloc(n > cfg->producers ? n : cfg->producers, sizeof *cs);
    uint8_t *values = NULL;
    uint32_t queues = 0;
    int rc = 0;
    if (!cs) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
    size_t nclients = n > cfg->producers ? n : cfg->producers;
    if ((rc = bench_net_open(cfg, addr, nclients, cs)) != 0) goto out;
    if ((rc = bench_net_topic(cfg, cs[0], &queues)) != 0) goto out;
    uint64_t have = 0;
    for (uint32_t q = 0; q < queues; q++) {
        int64_t ls, hw;
        if ((rc = rn_client_queue_range(cs[0], cfg->topic, q, &ls, &hw, err)) != 0) {
            rc = bench_fail(cfg->cmd, rc, "%s", err);
            goto out;
        }
        have += (uint64_t)(hw - ls);
    }
    if (have < cfg->records) {
        uint64_t ns;
        if (!(values = bench_net_values(cfg))) { rc = bench_fail(cfg->cmd, -ENOMEM, "out of memory"); goto out; }
        bench_note(cfg->json, "consume: topic '%s' holds %llu records; producing %llu more first "
                   "(not timed)", cfg->topic, (unsigned long long)have,
                   (unsigned long long)(cfg->records - have));
        if ((rc = bench_net_produce_run(cfg, cs, cfg->records - have, values, &ns)) != 0) goto out;
    }
    bench_note(cfg->json, "consume: topic '%s' (%u queues) from earliest to its end on %s, "
               "%zu consumer(s)", cfg->topic, queues, addr, n);
    cpu_mark_t m = bench_cpu_now();
    uint64_t ns = 0, records = 0, bytes = 0;
    rc = bench_net_consume_run(cfg, cs, queues, &records, &bytes, &ns);
    if (rc != 0) goto out;
    double rps = bench_per_s(records, ns), mb = bench_mb_per_s(bytes, ns);
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "consume");
        bench_json_u64(&j, "records", records);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "consumers", n);
        bench_json_u64(&j, "queues", queues);
        bench_json_f64(&j, "records_per_s", rps);
        bench_json_f64(&j, "mb_per_s", mb);
        bench_cpu_report(cfg, &j, m, records);
        bench_json_end(&j);
    } else {
        bench_cpu_report(cfg, NULL, m, records);
        bench_note(0, "consumed %llu records (%llu value bytes) in %.3f s: %.0f records/s, "
                   "%.1f MB/s", (unsigned long long)records, (unsigned long long)bytes,
                   (double)ns / 1e9, rps, mb);
    }
out:
    if (cs) bench_net_close(cs, n > cfg->producers ? n : cfg->producers);
    free(cs);
    free(values);
    return rc;
}

/* ---- e2e ------------------------------------------------------------------------ */

typedef struct e2e {
    const net_cfg_t *cfg;
    rn_client_t     *pc, *cc;
    uint64_t         total;
    uint64_t        *lat;          /* ns, one per record received */
    uint64_t         nlat;
    volatile int     producing_done;
    int              prc, crc;
    char             perr[RN_ERRMSG_SIZE], cerr[RN_ERRMSG_SIZE];
} e2e_t;

static void *e2e_produce(void *arg)
{
    e2e_t *e = arg;
    const net_cfg_t *cfg = e->cfg;
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = (uint32_t)cfg->batch_bytes;
    po.linger_ms = (uint32_t)cfg->linger_ms;
    po.acks = cfg->acks_written ? RN_ACKS_WRITTEN : RN_ACKS_DURABLE;
    rn_producer_t *p;
    e->prc = rn_producer_open(e->pc, cfg->topic, &po, &p, e->perr);
    if (e->prc != 0) { e->producing_done = 1; return NULL; }
    uint8_t *v = calloc(1, cfg->size);
    if (!v) { e->prc = -ENOMEM; e->producing_done = 1; rn_producer_close(p, NULL); return NULL; }
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    bench_fill_value(&rng, v, cfg->size);
    uint64_t t0 = rn_mono_ns();
    for (uint64_t i = 0; i < e->total && e->prc == 0; i++) {
        uint64_t due = t0 + i * 1000000000u / cfg->rate;
        uint64_t now = rn_mono_ns();
        if (due > now + 200000) {                       /* sleep when > 0.2 ms early */
            struct timespec ts = {0, (long)(due - now)};
            nanosleep(&ts, NULL);
        }
        uint64_t stamp = rn_mono_ns();
        memcpy(v, &stamp, sizeof stamp);                /* send time, first 8 bytes */
        rn_record_t r = {.timestamp = -1, .key_len = -1, .value = v,
                         .value_len = (int32_t)cfg->size};
        e->prc = rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, NULL, NULL, e->perr);
    }
    int rc = rn_producer_close(p, e->prc ? NULL : e->perr);
    if (e->prc == 0) e->prc = rc;
    free(v);
    e->producing_done = 1;
    return NULL;
}

static int e2e_bench(const net_cfg_t *cfg, const char *addr)
{
    char err[RN_ERRMSG_SIZE] = "";
    e2e_t e;
    memset(&e, 0, sizeof e);
    e.cfg = cfg;
    e.total = cfg->rate * cfg->seconds;
    rn_client_consumer_t *k = NULL;
    uint32_t queues;
    int rc;
    if (cfg->size < 8) return bench_fail(cfg->cmd, RN_EINVAL, "--size must be >= 8 for e2e");
    e.lat = malloc(e.total * sizeof *e.lat);
    if (!e.lat) return bench_fail(cfg->cmd, -ENOMEM, "out of memory");
    if ((rc = rn_client_open_server(addr, NULL, &e.pc, err)) != 0 ||
        (rc = rn_client_open_server(addr, NULL, &e.cc, err)) != 0) {
        rc = bench_fail(cfg->cmd, rc, "--server %s: %s", addr, err);
        goto out;
    }
    if ((rc = bench_net_topic(cfg, e.cc, &queues)) != 0) goto out;
    if ((rc = rn_client_consumer_open(e.cc, NULL, &k, err)) != 0) goto out_err;
    for (uint32_t q = 0; q < queues; q++) {
        int64_t ls, hw;
        if ((rc = rn_client_queue_range(e.cc, cfg->topic, q, &ls, &hw, err)) != 0 ||
            (rc = rn_client_consumer_assign(k, cfg->topic, q, hw, err)) != 0)
            goto out_err;
    }
    bench_note(cfg->json, "e2e: %llu records/s for %llu s (%llu records of %llu bytes) to topic "
               "'%s' (%u queues) on %s, linger %llu ms, acks %s; latency = consumer receive - "
               "producer send", (unsigned long long)cfg->rate, (unsigned long long)cfg->seconds,
               (unsigned long long)e.total, (unsigned long long)cfg->size, cfg->topic, queues,
               addr, (unsigned long long)cfg->linger_ms, cfg->acks_written ? "written" : "durable");
    cpu_mark_t m = bench_cpu_now();
    pthread_t th;
    if ((rc = pthread_create(&th, NULL, e2e_produce, &e)) != 0) {
        rc = bench_fail(cfg->cmd, -rc, "pthread_create: %s", strerror(rc));
        goto out;
    }
    uint64_t idle_since = 0;
    while (e.nlat < e.total) {
        rn_consumer_batch_t b;
        int prc = rn_client_consumer_poll(k, &b, 100, err);
        if (prc < 0) { rc = prc; break; }
        uint64_t now = rn_mono_ns();
        if (prc == 0) {
            /* Bounded: once the producer is done, at most 5 s more. */
            if (!e.producing_done) continue;
            if (!idle_since) idle_since = now;
            if (now - idle_since > 5000000000ull) break;
            continue;
        }
        idle_since = 0;
        for (uint32_t i = 0; i < b.count && e.nlat < e.total; i++) {
            uint64_t sent;
            memcpy(&sent, b.records[i].value, sizeof sent);
            e.lat[e.nlat++] = now > sent ? now - sent : 0;
        }
    }
    pthread_join(th, NULL);
    if (rc < 0) { rc = bench_fail(cfg->cmd, rc, "consumer: %s", err); goto out; }
    if (e.prc != 0) { rc = bench_fail(cfg->cmd, e.prc, "producer: %s", e.perr); goto out; }
    if (e.nlat != e.total) {
        rc = bench_fail(cfg->cmd, -EIO, "received %llu of %llu records", (unsigned long long)e.nlat,
                        (unsigned long long)e.total);
        goto out;
    }
    bench_sort_u64(e.lat, e.nlat);
    double p50 = (double)bench_percentile(e.lat, e.nlat, 50) / 1000.0;
    double p99 = (double)bench_percentile(e.lat, e.nlat, 99) / 1000.0;
    double p999 = (double)bench_percentile(e.lat, e.nlat, 99.9) / 1000.0;
    double mx = (double)bench_percentile(e.lat, e.nlat, 100) / 1000.0;
    if (cfg->json) {
        bench_json_t j;
        bench_json_begin(&j, stdout);
        bench_json_str(&j, "bench", "e2e");
        bench_json_u64(&j, "records", e.nlat);
        bench_json_u64(&j, "size", cfg->size);
        bench_json_u64(&j, "rate", cfg->rate);
        bench_json_str(&j, "acks", cfg->acks_written ? "written" : "durable");
        bench_json_f64(&j, "records_per_s", (double)cfg->rate);
        bench_json_f64(&j, "mb_per_s", (double)cfg->rate * (double)cfg->size / 1e6);
        bench_json_f64(&j, "p50_us", p50);
        bench_json_f64(&j, "p99_us", p99);
        bench_json_f64(&j, "p999_us", p999);
        bench_json_f64(&j, "max_us", mx);
        bench_cpu_report(cfg, &j, m, e.nlat);
        bench_json_end(&j);
    } else {
        bench_cpu_report(cfg, NULL, m, e.nlat);
        bench_note(0, "e2e latency over %llu records: p50 %.0f µs, p99 %.0f µs, p99.9 %.0f µs, "
                   "max %.0f µs (target p99 <= 5000 µs at 100000 records/s)",
                   (unsigned long long)e.nlat, p50, p99, p999, mx);
    }
    goto out;
out_err:
    rc = bench_fail(cfg->cmd, rc, "%s", err);
out:
    rn_client_consumer_close(k);
    rn_client_close(e.pc);
    rn_client_close(e.cc);
    free(e.lat);
    return rc;
}

/* ---- Flags and dispatch ------------------------------------------------------------ */

int bench_net_parse(const char *cmd, int argc, char **argv, void *arg)
{
    net_cfg_t *cfg = arg;
    cfg->kafka = !strncmp(cmd, "kafka-", 6);
    cfg->cmd = cmd;
    cfg->topic = "bench";
    cfg->records = 2000000;
    cfg->size = 100;
    cfg->batch_bytes = 65536;
    cfg->producers = 1;
    cfg->consumers = 1;
    cfg->queues = 4;
    cfg->linger_ms = !strcmp(cmd, "e2e") ? 1 : 5;
    cfg->rate = 100000;
    cfg->seconds = 5;
    cfg->seed = 42;
    cfg->rounds = 3;
    bench_opt_t opts[] = {
        {"--server", BENCH_OPT_STR, &cfg->server, 0, 0, "HOST:PORT"},
        {"--topic", BENCH_OPT_STR, &cfg->topic, 0, 0, "NAME"},
        {"--records", BENCH_OPT_U64, &cfg->records, 1, 1000000000, "N"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 1, 1u << 20, "B"},
        {"--batch-bytes", BENCH_OPT_SIZE, &cfg->batch_bytes, 128, RN_BATCH_MAX_BYTES, "K"},
        {"--producers", BENCH_OPT_U64, &cfg->producers, 1, 64, "P"},
        {"--consumers", BENCH_OPT_U64, &cfg->consumers, 1, 64, "C"},
        {"--queues", BENCH_OPT_U64, &cfg->queues, 1, 10000, "Q"},
        {"--linger-ms", BENCH_OPT_U64, &cfg->linger_ms, 0, 60000, "MS"},
        {"--rate", BENCH_OPT_U64, &cfg->rate, 1, 10000000, "R"},
        {"--seconds", BENCH_OPT_U64, &cfg->seconds, 1, 3600, "S"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--fsync", BENCH_OPT_STR, &cfg->fsync, 0, 0, "POLICY"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--lz4", BENCH_OPT_FLAG, &cfg->lz4, 0, 0, ""},
        {"--no-baseline", BENCH_OPT_FLAG, &cfg->no_baseline, 0, 0, ""},
        {"--acks-written", BENCH_OPT_FLAG, &cfg->acks_written, 0, 0, ""},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 101, "R"},   /* last: produce-batches only */
    };
    size_t n = sizeof opts / sizeof opts[0];
    return bench_parse_flags(cmd, argc, argv, opts, strcmp(cmd, "produce-batches") ? n - 1 : n);
}

static int produce_parse(int argc, char **argv, void *cfg) { return bench_net_parse("produce", argc, argv, cfg); }
static int consume_parse(int argc, char **argv, void *cfg) { return bench_net_parse("consume", argc, argv, cfg); }
static int e2e_parse(int argc, char **argv, void *cfg) { return bench_net_parse("e2e", argc, argv, cfg); }

/* Run fn against --server, or against a runneld of our own. */
int bench_with_broker(const net_cfg_t *cfg, int (*fn)(const net_cfg_t *, const char *))
{
    signal(SIGPIPE, SIG_IGN);
    if (cfg->server) return fn(cfg, cfg->server);
    broker_t b;
    int rc = bench_broker_start(cfg, &b);
    if (rc == 0) {
        bench_note(cfg->json, "%s: no --server given: started runneld on %s (data in %s)",
                   cfg->cmd, b.addr, b.dir);
        rc = fn(cfg, b.addr);
    }
    int src = bench_broker_stop(cfg, &b);
    return rc ? rc : src;
}

static int produce_cmd(const void *cfg) { return bench_with_broker(cfg, produce_bench); }
static int consume_cmd(const void *cfg) { return bench_with_broker(cfg, consume_bench); }
static int e2e_cmd(const void *cfg) { return bench_with_broker(cfg, e2e_bench); }

#define NET_FLAGS "[--server HOST:PORT] [--topic bench] [--records N] [--size B] " \
                  "[--batch-bytes K] [--queues Q] [--linger-ms MS] [--dir DIR] [--lz4] [--json]"

const bench_cmd_t bench_cmd_produce = {
    "produce", NET_FLAGS " [--producers P] [--no-baseline]  (produce over gRPC + embedded baseline)",
    sizeof(net_cfg_t), produce_parse, produce_cmd,
};
const bench_cmd_t bench_cmd_consume = {
    "consume", NET_FLAGS " [--consumers C]  (read the topic from earliest to its end)",
    sizeof(net_cfg_t), consume_parse, consume_cmd,
};
const bench_cmd_t bench_cmd_e2e = {
    "e2e", NET_FLAGS " [--rate R] [--seconds S] [--acks-written]  (produce->consume latency at a "
    "fixed rate)",
    sizeof(net_cfg_t), e2e_parse, e2e_cmd,
};

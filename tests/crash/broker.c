/*
 * broker.c — runneld under load over gRPC: the broker crash loop and the
 * soak. Producers and consumers talk to a real runneld on loopback through
 * client/rpc.h, with batches built by rn_batch_builder.
 *
 * Crash loop scenario: runneld runs with one fsync policy; producer threads
 * send Produce (acks = durable) and consumer threads long-poll Fetch and
 * validate what they read; at a random moment the harness SIGKILLs runneld,
 * restarts it on the same data directory, and an independent checker reads
 * every queue back over Fetch and compares it with the acknowledged
 * produces.
 *
 * Invariants checked (crash loop):
 *  1. Every record of a Produce that returned OK is present at the base
 *     offset the response named, with its exact key, value and timestamp.
 *  2. Along each queue, trial numbers never decrease and sequence numbers
 *     strictly increase within a trial: nothing duplicated, nothing out of
 *     order. Offsets are dense from 0 to the high watermark.
 *  3. Every batch Fetch returns passes deep validation and every record is
 *     one a producer built; consumers check this during the load too.
 *  4. Before the kill, no call fails; after it, calls fail only with a
 *     transport error. After the last trial SIGTERM makes runneld exit 0.
 *
 * Soak: m producers and m consumers for a fixed time against one runneld;
 * records throughput, runneld's RSS every second (VmRSS and RssAnon from
 * /proc/PID/status) and errors. Passes when there was no error, consumers
 * saw only valid records, RssAnon of the last samples stayed within
 * 1.5x + 16 MiB of the sample after warm-up, and SIGTERM gave exit 0.
 *
 * Every wait is bounded; network is loopback only.
 */
#include "tests/crash/crash.h"

#include "batch/batch.h"
#include "client/rpc.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOPIC          "crash"
#define CALL_MS        10000
#define START_WAIT_MS  20000
#define STOP_WAIT_MS   60000
#define MAX_CLIENTS    QUEUES
#define RESET_EVERY    10

/* ---- runneld --------------------------------------------------------------------- */

typedef struct broker {
    char root[PATH_MAX - 64];
    char data[PATH_MAX], portf[PATH_MAX], logf[PATH_MAX];
    const char *runneld, *policy;
    pid_t pid;
    int port;
    char target[64];
} broker_t;

static void print_log_tail(const broker_t *b)
{
    FILE *f = fopen(b->logf, "r");
    if (!f) return;
    char line[1024];
    long n = 0;
    while (fgets(line, sizeof line, f)) n++;
    rewind(f);
    fprintf(stderr, "---- last lines of %s ----\n", b->logf);
    for (long i = 0; fgets(line, sizeof line, f); i++)
        if (i >= n - 30) fputs(line, stderr);
    fclose(f);
}

static int broker_start(broker_t *b)
{
    unlink(b->portf);
    fflush(stdout);
    fflush(stderr);
    /* runneld refuses uid 0 without --allow-root; NULL ends execl's list early. */
    const char *ar = getuid() == 0 ? "--allow-root" : NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        int fd = open(b->logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        execl(b->runneld, "runneld", "--data", b->data, "--listen", "127.0.0.1:0", "--port-file",
              b->portf, "--fsync", b->policy, "--log-level", "warn", ar, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    b->port = 0;
    for (int i = 0; i < START_WAIT_MS / 5 && b->port == 0; i++) {
        FILE *f = fopen(b->portf, "r");
        if (f) {
            if (fscanf(f, "%d", &b->port) != 1) b->port = 0;
            fclose(f);
        }
        int st;
        if (b->port == 0 && waitpid(pid, &st, WNOHANG) == pid) {
            b->pid = 0;
            fprintf(stderr, "broker: runneld exited during start (status %d)\n", st);
            print_log_tail(b);
            return -1;
        }
        if (b->port == 0) usleep(5000);
    }
    if (b->port == 0) {
        fprintf(stderr, "broker: runneld did not write %s within %d ms\n", b->portf, START_WAIT_MS);
        print_log_tail(b);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        b->pid = 0;
        return -1;
    }
    snprintf(b->target, sizeof b->target, "127.0.0.1:%d", b->port);
    return 0;
}

/* Send sig and wait (bounded); the exit code, 128 + signal, or -1. */
static int broker_stop(broker_t *b, int sig)
{
    if (b->pid <= 0) return -1;
    kill(b->pid, sig);
    int st = 0;
    for (int i = 0; i < STOP_WAIT_MS / 5; i++) {
        if (waitpid(b->pid, &st, WNOHANG) == b->pid) {
            b->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        usleep(5000);
    }
    kill(b->pid, SIGKILL);
    waitpid(b->pid, &st, 0);
    b->pid = 0;
    return -1;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static int broker_init(broker_t *b, const char *runneld, const char *policy, const char *base)
{
    memset(b, 0, sizeof *b);
    snprintf(b->root, sizeof b->root, "%s/rn-broker-XXXXXX", base);
    if (!mkdtemp(b->root)) {
        fprintf(stderr, "broker: mkdtemp in %s: %s\n", base, strerror(errno));
        return -1;
    }
    snprintf(b->data, sizeof b->data, "%s/data", b->root);
    snprintf(b->portf, sizeof b->portf, "%s/port", b->root);
    snprintf(b->logf, sizeof b->logf, "%s/runneld.log", b->root);
    b->runneld = runneld;
    b->policy = policy;
    return 0;
}

static int create_topic(const broker_t *b)
{
    rn_rpc_t *rpc;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_rpc_open(b->target, &rpc, err) != 0) return -1;
    Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    req.name = TOPIC;
    req.queues = QUEUES;
    ProtobufCMessage *m = NULL;
    int st;
    int rc = rn_rpc_call(rpc, RN_RPC_METHOD("CreateTopic"), &req.base,
                         &runnel__v1__topic_info__descriptor, &m, CALL_MS, &st, err);
    if (rc != 0) fprintf(stderr, "broker: CreateTopic: %s\n", err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    rn_rpc_close(rpc);
    return rc;
}

/* ---- the acknowledged model ------------------------------------------------------- */

typedef struct back {
    int64_t  base;
    uint32_t count, gen, seq0;
} back_t;

typedef struct model {
    pthread_mutex_t mu;
    back_t *a[QUEUES];
    size_t n[QUEUES], cap[QUEUES];
} model_t;

static int model_add(model_t *m, uint32_t q, back_t a)
{
    pthread_mutex_lock(&m->mu);
    if (m->n[q] == m->cap[q]) {
        size_t nc = m->cap[q] ? m->cap[q] * 2 : 1024;
        back_t *na = realloc(m->a[q], nc * sizeof *na);
        if (!na) { pthread_mutex_unlock(&m->mu); return -1; }
        m->a[q] = na;
        m->cap[q] = nc;
    }
    m->a[q][m->n[q]++] = a;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

/* ---- load: producers and consumers ---------------------------------------------------- */

typedef struct load {
    const char *target;
    uint32_t gen;
    uint64_t seed;
    int m;                            /* producers = consumers = m */
    int soak;                         /* soak: bigger batches, every error counts */
    atomic_int stop, killed;
    model_t *model;
    int64_t cstart[QUEUES];           /* where consumers start */
    atomic_long produced_records, produced_bytes, produce_calls, consumed_records, errors;
    pthread_mutex_t emu;
    char first_error[512];
} load_t;

typedef struct client {
    load_t *l;
    int idx;
} client_t;

static void load_error(load_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_error(load_t *l, const char *fmt, ...)
{
    atomic_fetch_add(&l->errors, 1);
    pthread_mutex_lock(&l->emu);
    if (!l->first_error[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->first_error, sizeof l->first_error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&l->emu);
}

/* A transport failure (the broker is gone), as opposed to a refusal. */
static int transport_error(int rc)
{
    return rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EPROTO;
}

static void *producer(void *arg)
{
    client_t *c = arg;
    load_t *l = c->l;
    rn_rpc_t *rpc = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_rpc_open(l->target, &rpc, err) != 0) {
        load_error(l, "producer %d: rn_rpc_open: %s", c->idx, err);
        return NULL;
    }
    uint32_t seq[QUEUES] = {0};
    int64_t next[QUEUES];
    for (int q = 0; q < QUEUES; q++) next[q] = -1;
    uint64_t rs = crash_mix(l->seed + (uint64_t)c->idx);
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    rn_batch_builder_t b;
    if (rn_batch_builder_init(&b, &bo) != 0) { rn_rpc_close(rpc); return NULL; }
    enum { MAXB = 4 };
    uint8_t *bufs[MAXB] = {0};
    ProtobufCBinaryData bd[MAXB];
    uint32_t counts[MAXB];
    for (long i = 0; i < 100000000 && !atomic_load(&l->stop); i++) {
        /* Queues of this producer: idx, idx + m, ... (one producer per queue). */
        int mine = (QUEUES - c->idx + l->m - 1) / l->m;
        uint32_t q = (uint32_t)c->idx + (uint32_t)l->m * (uint32_t)(crash_rng(&rs) % (uint64_t)mine);
        int nb = l->soak ? MAXB : 1 + (int)(crash_rng(&rs) % 3);
        uint32_t s = seq[q];
        for (int k = 0; k < nb; k++) {
            int n = l->soak ? 64 : 1 + (int)(crash_rng(&rs) % 20);
            rn_batch_builder_reset(&b);
            for (int r = 0; r < n; r++, s++) {
                char val[256], key[24];
                int vl = crash_record_value(l->gen, s, q, val, sizeof val);
                int kl = snprintf(key, sizeof key, "k%u", s);
                rn_record_t rec = {0};
                rec.timestamp = crash_record_ts(l->gen, s);
                rec.key = (const uint8_t *)key;
                rec.key_len = (s & 1) ? -1 : kl;
                rec.value = (const uint8_t *)val;
                rec.value_len = vl;
                rn_batch_builder_add(&b, &rec);
            }
            const uint8_t *out;
            size_t len;
            rn_batch_builder_finish(&b, &out, &len);
            free(bufs[k]);
            bufs[k] = malloc(len);
            if (!bufs[k]) { load_error(l, "out of memory"); goto out; }
            memcpy(bufs[k], out, len);
            bd[k].data = bufs[k];
            bd[k].len = len;
            counts[k] = (uint32_t)n;
        }
        Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
        req.topic = TOPIC;
        req.queue = q;
        req.n_batches = (size_t)nb;
        req.batches = bd;
        req.acks = RUNNEL__V1__ACKS__ACKS_DURABLE;
        ProtobufCMessage *m = NULL;
        int st = 0;
        err[0] = '\0';
        int rc = rn_rpc_call(rpc, RN_RPC_METHOD("Produce"), &req.base,
                             &runnel__v1__produce_response__descriptor, &m, CALL_MS, &st, err);
        atomic_fetch_add(&l->produce_calls, 1);
        if (rc != 0) {
            if (atomic_load(&l->killed) && transport_error(rc)) break;   /* expected */
            load_error(l, "producer %d: Produce q%u: %s (status %d): %s", c->idx, q,
                       rn_strerror(rc), st, err);
            break;
        }
        Runnel__V1__ProduceResponse *r = (void *)m;
        if (r->n_base_offsets != (size_t)nb) {
            load_error(l, "producer %d: %zu base offsets for %d batches", c->idx,
                       r->n_base_offsets, nb);
            protobuf_c_message_free_unpacked(m, NULL);
            break;
        }
        uint32_t s0 = seq[q];
        for (int k = 0; k < nb; k++) {
            int64_t base = r->base_offsets[k];
            if (next[q] >= 0 && base != next[q])
                load_error(l, "producer %d: q%u batch acked at %" PRId64 ", %" PRId64 " was due",
                           c->idx, q, base, next[q]);
            next[q] = base + counts[k];
            if (l->model && model_add(l->model, q, (back_t){base, counts[k], l->gen, s0}) != 0)
                load_error(l, "out of memory");
            s0 += counts[k];
            atomic_fetch_add(&l->produced_records, counts[k]);
            atomic_fetch_add(&l->produced_bytes, (long)bd[k].len);
        }
        seq[q] = s0;
        protobuf_c_message_free_unpacked(m, NULL);
    }
out:
    for (int k = 0; k < MAXB; k++) free(bufs[k]);
    rn_batch_builder_destroy(&b);
    rn_rpc_close(rpc);
    return NULL;
}

/* Check one fetched run of batches; returns the next offset or -1 (errmsg set). */
static int64_t check_batches(const uint8_t *p, size_t len, uint32_t nbatches, uint32_t q,
                             int64_t next, rn_batch_iter_t *it, uint32_t *gens, uint32_t *seqs,
                             size_t cap, char *why, size_t whysz)
{
    size_t at = 0;
    char err[RN_ERRMSG_SIZE];
    for (uint32_t k = 0; k < nbatches; k++) {
        size_t sz;
        rn_batch_header_t bh;
        if (rn_batch_size(p + at, len - at, &sz) != 0 || at + sz > len) {
            snprintf(why, whysz, "q%u@%" PRId64 ": batch framing broken", q, next);
            return -1;
        }
        if (rn_batch_validate(p + at, sz, &rn_batch_default_limits, 1, &bh, err) != 0) {
            snprintf(why, whysz, "q%u@%" PRId64 ": corrupt batch: %s", q, next, err);
            return -1;
        }
        if (bh.base_offset != next) {
            snprintf(why, whysz, "q%u: batch at %" PRId64 " where %" PRId64 " was due", q,
                     bh.base_offset, next);
            return -1;
        }
        if (rn_batch_iter_reset(it, p + at, sz, err) != 0) {
            snprintf(why, whysz, "q%u@%" PRId64 ": %s", q, next, err);
            return -1;
        }
        rn_record_t r;
        int rc;
        while ((rc = rn_batch_iter_next(it, &r, err)) == 1) {
            uint32_t g, s, rq;
            char want[256], key[24];
            if (crash_record_id(r.value, r.value_len, &g, &s, &rq) != 0 || rq != q) {
                snprintf(why, whysz, "q%u@%" PRId64 ": a record no producer built", q, next);
                return -1;
            }
            int wl = crash_record_value(g, s, q, want, sizeof want);
            int kl = snprintf(key, sizeof key, "k%u", s);
            int key_ok = (s & 1) ? r.key_len == -1
                                 : r.key_len == kl && memcmp(r.key, key, (size_t)kl) == 0;
            if (r.value_len != wl || memcmp(r.value, want, (size_t)wl) != 0 || !key_ok ||
                r.timestamp != crash_record_ts(g, s) || r.offset != next) {
                snprintf(why, whysz, "q%u@%" PRId64 ": record g%u s%u is damaged", q, next, g, s);
                return -1;
            }
            if (gens && (size_t)next < cap) {
                if (next > 0 && (g < gens[next - 1] || (g == gens[next - 1] && s <= seqs[next - 1]))) {
                    snprintf(why, whysz, "q%u@%" PRId64 ": g%u s%u follows g%u s%u (duplicate or "
                             "out of order)", q, next, g, s, gens[next - 1], seqs[next - 1]);
                    return -1;
                }
                gens[next] = g;
                seqs[next] = s;
            }
            next++;
        }
        if (rc < 0) {
            snprintf(why, whysz, "q%u: decode: %s", q, err);
            return -1;
        }
        at += sz;
    }
    return next;
}

static void *consumer(void *arg)
{
    client_t *c = arg;
    load_t *l = c->l;
    rn_rpc_t *rpc = NULL;
    char err[RN_ERRMSG_SIZE] = "", why[512];
    if (rn_rpc_open(l->target, &rpc, err) != 0) {
        load_error(l, "consumer %d: rn_rpc_open: %s", c->idx, err);
        return NULL;
    }
    int64_t next[QUEUES];
    memcpy(next, l->cstart, sizeof next);
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    for (long i = 0; i < 100000000 && !atomic_load(&l->stop); i++) {
        uint32_t q = (uint32_t)((i + c->idx) % QUEUES);
        Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
        req.topic = TOPIC;
        req.queue = q;
        req.offset = next[q];
        req.max_bytes = 1 << 20;
        req.max_wait_ms = 20;
        ProtobufCMessage *m = NULL;
        int st = 0;
        int rc = rn_rpc_call(rpc, RN_RPC_METHOD("Fetch"), &req.base,
                             &runnel__v1__fetch_response__descriptor, &m, CALL_MS, &st, err);
        if (rc != 0) {
            if (atomic_load(&l->killed) && transport_error(rc)) break;
            load_error(l, "consumer %d: Fetch q%u@%" PRId64 ": %s (status %d): %s", c->idx, q,
                       next[q], rn_strerror(rc), st, err);
            break;
        }
        Runnel__V1__FetchResponse *r = (void *)m;
        int64_t nn = check_batches(r->records.data, r->records.len, r->batch_count, q, next[q], &it,
                                   NULL, NULL, 0, why, sizeof why);
        protobuf_c_message_free_unpacked(m, NULL);
        if (nn < 0) {
            load_error(l, "consumer %d: %s", c->idx, why);
            break;
        }
        atomic_fetch_add(&l->consumed_records, nn - next[q]);
        next[q] = nn;
    }
    rn_batch_iter_destroy(&it);
    rn_rpc_close(rpc);
    return NULL;
}

static int load_start(load_t *l, pthread_t *th, client_t *cl)
{
    for (int i = 0; i < 2 * l->m; i++) {
        cl[i] = (client_t){l, i % l->m};
        if (pthread_create(&th[i], NULL, i < l->m ? producer : consumer, &cl[i]) != 0) {
            atomic_store(&l->stop, 1);
            for (int k = 0; k < i; k++) pthread_join(th[k], NULL);
            return -1;
        }
    }
    return 0;
}

static void load_join(load_t *l, pthread_t *th)
{
    atomic_store(&l->stop, 1);
    for (int i = 0; i < 2 * l->m; i++) pthread_join(th[i], NULL);
}

/* ---- the checker -------------------------------------------------------------------------- */

/* Read every queue back over Fetch and compare with the model. hw[] gets
 * each queue's high watermark. 0, or -1 with why. */
static int check_broker(const broker_t *b, model_t *model, int64_t *hw, long *checked,
                        char *why, size_t whysz)
{
    rn_rpc_t *rpc = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_rpc_open(b->target, &rpc, err) != 0) {
        snprintf(why, whysz, "checker: rn_rpc_open: %s", err);
        return -1;
    }
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int rc = 0;
    for (uint32_t q = 0; q < QUEUES && rc == 0; q++) {
        size_t cap = 1 << 16;
        uint32_t *gens = malloc(cap * sizeof *gens), *seqs = malloc(cap * sizeof *seqs);
        int64_t next = 0, top = -1;
        for (long guard = 0; rc == 0 && guard < 10000000 && (top < 0 || next < top); guard++) {
            Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
            req.topic = TOPIC;
            req.queue = q;
            req.offset = next;
            req.max_bytes = 4 << 20;
            ProtobufCMessage *m = NULL;
            int st = 0;
            int r2 = rn_rpc_call(rpc, RN_RPC_METHOD("Fetch"), &req.base,
                                 &runnel__v1__fetch_response__descriptor, &m, CALL_MS, &st, err);
            if (r2 != 0) {
                snprintf(why, whysz, "checker: Fetch q%u@%" PRId64 ": %s: %s", q, next,
                         rn_strerror(r2), err);
                rc = -1;
                break;
            }
            Runnel__V1__FetchResponse *r = (void *)m;
            if (r->log_start_offset != 0) {
                snprintf(why, whysz, "checker: q%u log start %" PRId64, q, r->log_start_offset);
                rc = -1;
            }
            top = r->high_watermark;
            while (rc == 0 && (size_t)top >= cap) {
                cap *= 2;
                uint32_t *ng = realloc(gens, cap * sizeof *ng), *ns = realloc(seqs, cap * sizeof *ns);
                if (ng) gens = ng;
                if (ns) seqs = ns;
                if (!ng || !ns) { snprintf(why, whysz, "out of memory"); rc = -1; }
            }
            if (rc == 0) {
                int64_t nn = check_batches(r->records.data, r->records.len, r->batch_count, q, next,
                                           &it, gens, seqs, cap, why, whysz);
                if (nn < 0) rc = -1;
                else if (nn == next && next < top) {
                    snprintf(why, whysz, "checker: q%u@%" PRId64 ": no batch below the high "
                             "watermark %" PRId64, q, next, top);
                    rc = -1;
                } else {
                    *checked += nn - next;
                    next = nn;
                }
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
        hw[q] = next;
        for (size_t i = 0; rc == 0 && i < model->n[q]; i++) {
            const back_t *a = &model->a[q][i];
            if (a->base + a->count > next) {
                snprintf(why, whysz, "q%u: acknowledged records [%" PRId64 ", %" PRId64 ") of trial "
                         "%u are lost (high watermark %" PRId64 ")", q, a->base,
                         a->base + a->count, a->gen, next);
                rc = -1;
                break;
            }
            for (uint32_t k = 0; k < a->count; k++) {
                int64_t off = a->base + k;
                if (gens[off] != a->gen || seqs[off] != a->seq0 + k) {
                    snprintf(why, whysz, "q%u@%" PRId64 ": acknowledged g%u s%u, found g%u s%u", q,
                             off, a->gen, a->seq0 + k, gens[off], seqs[off]);
                    rc = -1;
                    break;
                }
            }
        }
        free(gens);
        free(seqs);
    }
    rn_batch_iter_destroy(&it);
    rn_rpc_close(rpc);
    return rc;
}

/* ---- the crash loop ------------------------------------------------------------------------ */

int broker_crash(const char *runneld, const char *policy, int trials, uint64_t seed,
                 int max_kill_ms, const char *base_dir, int verbose)
{
    broker_t b;
    model_t model;
    memset(&model, 0, sizeof model);
    pthread_mutex_init(&model.mu, NULL);
    uint64_t rs = seed;
    int rc = 0, have = 0;
    long kills = 0, acked_records = 0, acked_batches = 0, checked = 0, calls = 0;
    int64_t hw[QUEUES] = {0};
    char why[512] = "";
    uint64_t t0 = crash_now_ns();
    for (int trial = 0; trial < trials && rc == 0; trial++) {
        if (trial % RESET_EVERY == 0) {
            if (have) {
                int code = broker_stop(&b, SIGTERM);
                if (code != 0) {
                    snprintf(why, sizeof why, "runneld exited %d after SIGTERM", code);
                    print_log_tail(&b);
                    rc = -1;
                    break;
                }
                nftw(b.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
            }
            if (broker_init(&b, runneld, policy, base_dir) != 0) { rc = -1; break; }
            have = 1;
            if (broker_start(&b) != 0 || create_topic(&b) != 0) {
                snprintf(why, sizeof why, "cannot start runneld with a topic");
                rc = -1;
                break;
            }
            for (int q = 0; q < QUEUES; q++) { model.n[q] = 0; hw[q] = 0; }
        }
        load_t l;
        memset(&l, 0, sizeof l);
        l.target = b.target;
        l.gen = (uint32_t)trial + 1;
        l.seed = crash_rng(&rs);
        l.m = 2;
        l.model = &model;
        memcpy(l.cstart, hw, sizeof hw);
        pthread_mutex_init(&l.emu, NULL);
        pthread_t th[2 * MAX_CLIENTS];
        client_t cl[2 * MAX_CLIENTS];
        size_t before = 0;
        for (int q = 0; q < QUEUES; q++) before += model.n[q];
        if (load_start(&l, th, cl) != 0) { snprintf(why, sizeof why, "pthread_create"); rc = -1; break; }
        int ms = 5 + (int)(crash_rng(&rs) % (uint64_t)max_kill_ms);
        usleep((useconds_t)ms * 1000);
        atomic_store(&l.killed, 1);
        int code = broker_stop(&b, SIGKILL);
        load_join(&l, th);
        kills++;
        calls += atomic_load(&l.produce_calls);
        if (code != 128 + SIGKILL) {
            snprintf(why, sizeof why, "runneld died before the kill (status %d)", code);
            print_log_tail(&b);
            rc = -1;
        } else if (atomic_load(&l.errors) > 0) {
            snprintf(why, sizeof why, "%s", l.first_error);
            rc = -1;
        }
        size_t after = 0;
        for (int q = 0; q < QUEUES; q++) after += model.n[q];
        acked_batches += (long)(after - before);
        acked_records += atomic_load(&l.produced_records);
        pthread_mutex_destroy(&l.emu);
        if (rc == 0 && broker_start(&b) != 0) {
            snprintf(why, sizeof why, "runneld did not restart after SIGKILL");
            rc = -1;
        }
        if (rc == 0) rc = check_broker(&b, &model, hw, &checked, why, sizeof why);
        if (verbose)
            printf("  broker trial %d: kill after %d ms, %ld records acknowledged so far\n", trial,
                   ms, acked_records);
    }
    if (rc == 0 && have) {
        int code = broker_stop(&b, SIGTERM);
        if (code != 0) {
            snprintf(why, sizeof why, "runneld exited %d after the final SIGTERM", code);
            print_log_tail(&b);
            rc = -1;
        }
    } else if (have) {
        broker_stop(&b, SIGKILL);
    }
    if (rc != 0)
        fprintf(stderr, "crash-test: FAILED runneld fsync=%s seed=%" PRIu64 ": %s\n%s%s\n", policy,
                seed, why, have ? "data directory kept for inspection: " : "", have ? b.root : "");
    else if (have)
        nftw(b.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    printf("crash-test: runneld fsync=%s trials=%d kills=%ld produce_calls=%ld acked_batches=%ld "
           "acked_records=%ld checked_records=%ld lost=%s seconds=%.1f %s\n",
           policy, trials, kills, calls, acked_batches, acked_records, checked,
           rc == 0 ? "0" : "see above", (double)(crash_now_ns() - t0) / 1e9, rc == 0 ? "OK" : "FAILED");
    fflush(stdout);
    for (int q = 0; q < QUEUES; q++) free(model.a[q]);
    pthread_mutex_destroy(&model.mu);
    return rc;
}

/* ---- the soak --------------------------------------------------------------------------------- */

static int read_rss(pid_t pid, long *vm_kb, long *anon_kb)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    *vm_kb = *anon_kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) *vm_kb = strtol(line + 6, NULL, 10);
        if (strncmp(line, "RssAnon:", 8) == 0) *anon_kb = strtol(line + 8, NULL, 10);
    }
    fclose(f);
    return *vm_kb >= 0 && *anon_kb >= 0 ? 0 : -1;
}

int broker_soak(const char *runneld, const char *policy, int seconds, int m, const char *base_dir)
{
    broker_t b;
    if (m < 1 || m > MAX_CLIENTS || seconds < 1 || seconds > 86400) {
        fprintf(stderr, "soak: need 1 <= clients <= %d and 1 <= seconds <= 86400\n", MAX_CLIENTS);
        return -1;
    }
    if (broker_init(&b, runneld, policy, base_dir) != 0) return -1;
    if (broker_start(&b) != 0 || create_topic(&b) != 0) {
        broker_stop(&b, SIGKILL);
        return -1;
    }
    load_t l;
    memset(&l, 0, sizeof l);
    l.target = b.target;
    l.gen = 1;
    l.seed = (uint64_t)time(NULL);
    l.m = m;
    l.soak = 1;
    pthread_mutex_init(&l.emu, NULL);
    pthread_t th[2 * MAX_CLIENTS];
    client_t cl[2 * MAX_CLIENTS];
    printf("soak: %d producers, %d consumers, %d s, fsync=%s, runneld pid %d on %s\n", m, m,
           seconds, policy, (int)b.pid, b.target);
    if (load_start(&l, th, cl) != 0) {
        broker_stop(&b, SIGKILL);
        return -1;
    }
    long *vm = calloc((size_t)seconds + 2, sizeof *vm), *anon = calloc((size_t)seconds + 2, sizeof *anon);
    int ns = 0, rc = 0;
    uint64_t t0 = crash_now_ns();
    long last_rec = 0;
    for (int s = 1; s <= seconds && vm && anon; s++) {
        uint64_t due = t0 + (uint64_t)s * 1000000000u;
        uint64_t now = crash_now_ns();
        if (due > now) usleep((useconds_t)((due - now) / 1000));
        if (read_rss(b.pid, &vm[ns], &anon[ns]) != 0) {
            fprintf(stderr, "soak: cannot read /proc/%d/status (runneld gone?)\n", (int)b.pid);
            rc = -1;
            break;
        }
        ns++;
        long rec = atomic_load(&l.produced_records);
        if (s % 5 == 0 || s == seconds)
            printf("soak: t=%3ds produced %ld records (%ld/s now), consumed %ld, errors %ld, "
                   "runneld VmRSS %ld KiB, RssAnon %ld KiB\n", s, rec, (rec - last_rec) / (s % 5 ? 1 : 5),
                   atomic_load(&l.consumed_records), atomic_load(&l.errors), vm[ns - 1], anon[ns - 1]);
        if (s % 5 == 0) last_rec = rec;
        fflush(stdout);
        if (atomic_load(&l.errors) > 0) break;
    }
    load_join(&l, th);
    double el = (double)(crash_now_ns() - t0) / 1e9;
    int code = broker_stop(&b, SIGTERM);
    long peak_vm = 0, peak_anon = 0;
    for (int i = 0; i < ns; i++) {
        if (vm[i] > peak_vm) peak_vm = vm[i];
        if (anon[i] > peak_anon) peak_anon = anon[i];
    }
    /* Bounded: the last samples against the first after warm-up (20%, >= 3 s). */
    int warm = ns / 5 > 3 ? ns / 5 : (ns > 3 ? 3 : ns - 1);
    long last = 0;
    int nlast = 0;
    for (int i = ns - 3 > warm ? ns - 3 : warm; i < ns && i >= 0; i++) { last += anon[i]; nlast++; }
    last = nlast ? last / nlast : 0;
    long limit = warm >= 0 && ns > 0 ? anon[warm] * 3 / 2 + 16 * 1024 : 0;
    int bounded = ns > 0 && last <= limit;
    long errors = atomic_load(&l.errors);
    printf("soak: duration=%.1fs produced_records=%ld (%.0f/s) produced_MB=%.1f (%.1f MB/s) "
           "consumed_records=%ld (%.0f/s) produce_calls=%ld errors=%ld runneld_peak_VmRSS=%ld KiB "
           "peak_RssAnon=%ld KiB RssAnon_after_warmup=%ld KiB RssAnon_last=%ld KiB (limit %ld) "
           "bounded=%s exit_code=%d %s\n",
           el, atomic_load(&l.produced_records), atomic_load(&l.produced_records) / el,
           atomic_load(&l.produced_bytes) / 1e6, atomic_load(&l.produced_bytes) / 1e6 / el,
           atomic_load(&l.consumed_records), atomic_load(&l.consumed_records) / el,
           atomic_load(&l.produce_calls), errors, peak_vm, peak_anon,
           ns > 0 ? anon[warm] : -1, last, limit, bounded ? "yes" : "NO", code,
           rc == 0 && errors == 0 && bounded && code == 0 ? "OK" : "FAILED");
    if (errors) fprintf(stderr, "soak: first error: %s\n", l.first_error);
    if (code != 0) print_log_tail(&b);
    if (rc == 0 && (errors || !bounded || code != 0)) rc = -1;
    if (rc == 0) nftw(b.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else fprintf(stderr, "soak: data directory kept: %s\n", b.root);
    free(vm);
    free(anon);
    pthread_mutex_destroy(&l.emu);
    return rc;
}

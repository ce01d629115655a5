/*
 * crash.c — the storage crash loop: a writer process appends under load with
 * one fsync policy, is killed with SIGKILL at a random moment, and an
 * independent checker then reopens the store and compares it with what the
 * writer acknowledged.
 *
 * Scenario: for each trial a forked writer opens the store (recovering it
 * when the last run was killed), appends batches to QUEUES queues from
 * WRITERS threads while a reader thread walks and deep-validates everything
 * visible; after a random delay the harness SIGKILLs it, sometimes kills the
 * next writer too before checking, then reopens the store through the
 * public API and checks it.
 *
 * The ack channel: a writer thread writes a 32-byte ack {queue, count, base
 * offset, generation, first sequence number} to a pipe only after
 * rn_log_wait returned 0 for that batch — i.e. only for what the store
 * acknowledged under its policy. A record is identified by (generation =
 * the writer run, sequence number within its queue and run); its value and
 * key are a function of that identity, so the checker can tell exactly which
 * record sits at each offset.
 *
 * Invariants checked after every kill (any violation fails the run, naming
 * the seed and trial):
 *  1. Every acknowledged record is present, at the offset its ack named,
 *     with its exact key, value and timestamp (nothing acknowledged lost).
 *  2. Exactly once, in order: along each queue's offsets, generations never
 *     decrease and sequence numbers strictly increase within a generation,
 *     so no record appears twice or out of order.
 *  3. Offsets are dense: each batch starts where the previous one ended,
 *     from log start 0 up to the high watermark.
 *  4. No read returns a corrupt record: every batch passes deep validation
 *     and every record (acknowledged or not) is one the writer built.
 *  5. The writer's own reader thread never sees an invalid batch (else the
 *     writer exits non-zero instead of being killed).
 *
 * Policies and what a SIGKILL can show: `always` and `group` acknowledge only
 * after fdatasync; `interval:MS` and `never` acknowledge once the write
 * reached the kernel. A SIGKILL does not drop the page cache, so under every
 * policy nothing written before the kill may be lost, and the harness checks
 * exactly that (invariant 1 for all four). What it cannot show is the loss
 * window of `interval` and `never` under a power cut or kernel crash —
 * records written since the last fdatasync (never: since the last roll
 * checkpoint's fsync or the kernel's own writeback) — because no power
 * loss is simulated.
 *
 * Every loop is bounded in count and time; the seed is printed.
 */
#include "tests/crash/crash.h"

#include "batch/batch.h"
#include "common/error.h"
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WRITERS       2          /* thread w owns queues w, w + WRITERS, ... */
#define MAX_RECORDS   20         /* per batch */
#define WRITER_MAX_S  20         /* a writer never runs longer than this */
#define WRITER_MAX_BATCHES 2000000
#define RESET_EVERY   10         /* trials per store before a fresh one */
#define ACK_SIZE      32

typedef struct ack {
    uint32_t queue, count;
    int64_t  base;
    uint32_t gen, seq0;
    uint64_t spare;
} ack_t;

_Static_assert(sizeof(ack_t) == ACK_SIZE, "ack record is 32 bytes");

/* ---- deterministic records ------------------------------------------------------ */

uint64_t crash_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t crash_rng(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return crash_mix(*s);
}

/* The value of record (gen, seq) of queue q; returns its length. */
int crash_record_value(uint32_t gen, uint32_t seq, uint32_t q, char *buf, size_t cap)
{
    uint64_t h = crash_mix(((uint64_t)gen << 40) ^ ((uint64_t)seq << 8) ^ q);
    int n = snprintf(buf, cap, "g%u s%u q%u|", gen, seq, q);
    int len = n + 10 + (int)(h % 190);
    if (len > (int)cap - 1) len = (int)cap - 1;
    for (int i = n; i < len; i++) buf[i] = (char)('a' + (h >> (i % 50)) % 26);
    buf[len] = '\0';
    return len;
}

int64_t crash_record_ts(uint32_t gen, uint32_t seq)
{
    return 1700000000000 + (int64_t)gen * 1000000 + seq;
}

/* Parse "g%u s%u q%u|" at the start of a value. */
int crash_record_id(const uint8_t *v, int32_t len, uint32_t *gen, uint32_t *seq, uint32_t *q)
{
    char head[64];
    int n = len < (int32_t)sizeof head - 1 ? (int)len : (int)sizeof head - 1;
    if (n < 0) return -1;
    memcpy(head, v, (size_t)n);
    head[n] = '\0';
    return sscanf(head, "g%u s%u q%u|", gen, seq, q) == 3 ? 0 : -1;
}

/* ---- options ----------------------------------------------------------------------- */

typedef struct cfg {
    const char *policy;        /* always | group | interval:MS | never */
    int trials;
    uint64_t seed;
    int max_kill_ms;
    const char *base_dir;
    int verbose;
} cfg_t;

static void store_opts(const char *policy, rn_log_opts_t *o)
{
    char err[RN_ERRMSG_SIZE];
    rn_log_opts_default(o);
    if (rn_fsync_parse(policy, o, err) != 0) {
        fprintf(stderr, "crash-test: %s\n", err);
        exit(2);
    }
    o->group_window_us = 200;
    o->segment_bytes = 256 << 10;      /* rolls and checkpoints every few hundred batches */
    o->index_file_units = 256;
    o->max_batch_bytes = 64 << 10;
}

/* ---- the writer (child process) ----------------------------------------------------- */

typedef struct wctx {
    rn_log_t *log;
    int ack_fd;
    uint32_t gen;
    int idx;
    uint64_t seed;
    uint64_t deadline_ns;
    atomic_int *stop;
} wctx_t;

uint64_t crash_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die_child(int code, const char *what, int rc, const char *err)
{
    fprintf(stderr, "crash-test writer: %s: %s (%s)\n", what, rn_strerror(rc), err ? err : "");
    _exit(code);
}

static void *appender(void *arg)
{
    wctx_t *w = arg;
    uint32_t seq[QUEUES] = {0};
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    if (rn_batch_builder_init(&b, &bo) != 0) die_child(4, "builder", -ENOMEM, NULL);
    uint64_t rs = w->seed;
    for (long i = 0; i < WRITER_MAX_BATCHES && !atomic_load(w->stop); i++) {
        if ((i & 63) == 0 && crash_now_ns() > w->deadline_ns) break;
        uint32_t q = (uint32_t)w->idx + WRITERS * (uint32_t)(crash_rng(&rs) % (QUEUES / WRITERS));
        int n = 1 + (int)(crash_rng(&rs) % MAX_RECORDS);
        rn_batch_builder_reset(&b);
        for (int k = 0; k < n; k++) {
            char val[256], key[24];
            uint32_t s = seq[q] + (uint32_t)k;
            int vl = crash_record_value(w->gen, s, q, val, sizeof val);
            int kl = snprintf(key, sizeof key, "k%u", s);
            rn_record_t r = {0};
            r.timestamp = crash_record_ts(w->gen, s);
            r.key = (const uint8_t *)key;
            r.key_len = (s & 1) ? -1 : kl;
            r.value = (const uint8_t *)val;
            r.value_len = vl;
            if (rn_batch_builder_add(&b, &r) != 0) die_child(4, "builder add", RN_EFULL, NULL);
        }
        const uint8_t *out;
        size_t len;
        if (rn_batch_builder_finish(&b, &out, &len) != 0) die_child(4, "builder finish", -EINVAL, NULL);
        char err[RN_ERRMSG_SIZE] = "";
        int64_t base;
        uint64_t ticket;
        int rc = rn_log_append(w->log, q, out, len, &base, &ticket, err);
        if (rc != 0) die_child(4, "append", rc, err);
        rc = rn_log_wait(w->log, ticket);
        if (rc != 0) die_child(5, "wait", rc, NULL);
        /* Acknowledged: only now does the harness hear of it. */
        ack_t a = {q, (uint32_t)n, base, w->gen, seq[q], 0};
        if (write(w->ack_fd, &a, sizeof a) != (ssize_t)sizeof a) die_child(6, "ack pipe", -errno, NULL);
        seq[q] += (uint32_t)n;
    }
    rn_batch_builder_destroy(&b);
    return NULL;
}

/* Walks every queue again and again, deep-validating what is visible. */
static void *reader(void *arg)
{
    wctx_t *w = arg;
    rn_buf_t buf = RN_BUF_INIT;
    int64_t next[QUEUES] = {0};
    char err[RN_ERRMSG_SIZE];
    for (long i = 0; i < 100000000 && !atomic_load(w->stop); i++) {
        uint32_t q = (uint32_t)(i % QUEUES);
        if ((i & 15) == 0 && crash_now_ns() > w->deadline_ns) break;
        rn_log_queue_info_t qi;
        rn_log_queue_info(w->log, q, &qi);
        if (next[q] < qi.log_start) next[q] = qi.log_start;
        if (next[q] >= qi.high_watermark) { usleep(200); continue; }
        buf.len = 0;
        uint32_t nb = 0;
        int rc = rn_log_read(w->log, q, next[q], 256 << 10, &buf, &nb, err);
        if (rc != 0) die_child(7, "reader: read", rc, err);
        size_t at = 0;
        for (uint32_t k = 0; k < nb; k++) {
            size_t sz;
            rn_batch_header_t bh;
            if (rn_batch_size(buf.data + at, buf.len - at, &sz) != 0 || at + sz > buf.len)
                die_child(7, "reader: framing", RN_ECORRUPT, NULL);
            rc = rn_batch_validate(buf.data + at, sz, &rn_batch_default_limits, 1, &bh, err);
            if (rc != 0) die_child(7, "reader: invalid batch", rc, err);
            if (bh.base_offset != next[q]) die_child(7, "reader: offsets not dense", RN_ECORRUPT, NULL);
            next[q] += bh.record_count;
            at += sz;
        }
    }
    rn_buf_free(&buf);
    return NULL;
}

static void writer_main(const char *dir, const char *policy, uint32_t gen, uint64_t seed, int ack_fd)
{
    rn_log_opts_t o;
    store_opts(policy, &o);
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) die_child(3, "open", rc, err);
    atomic_int stop = 0;
    wctx_t w[WRITERS + 1];
    pthread_t th[WRITERS + 1];
    uint64_t deadline = crash_now_ns() + (uint64_t)WRITER_MAX_S * 1000000000u;
    for (int i = 0; i <= WRITERS; i++) {
        w[i] = (wctx_t){log, ack_fd, gen, i, crash_mix(seed + (uint64_t)i), deadline, &stop};
        if (pthread_create(&th[i], NULL, i < WRITERS ? appender : reader, &w[i]) != 0)
            die_child(3, "pthread_create", -EAGAIN, NULL);
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    pthread_join(th[WRITERS], NULL);
    rc = rn_log_close(log);
    if (rc != 0) die_child(3, "close", rc, NULL);
    _exit(0);
}

/* ---- the harness ------------------------------------------------------------------------ */

typedef struct qmodel {
    ack_t *acks;
    size_t n, cap;
} qmodel_t;

typedef struct totals {
    long trials, kills, kills_before_ack, double_kills;
    long acked_batches, acked_records;
    long checked_records, unacked_seen;
    long checker_batches;
} totals_t;

static int fail_at(const cfg_t *c, int trial, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(const cfg_t *c, int trial, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crash-test: FAILED fsync=%s seed=%" PRIu64 " trial=%d: ", c->policy, c->seed,
            trial);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

/* Run one writer for about ms milliseconds, then SIGKILL it; collect acks.
 * Returns 0, or -1 when the writer failed on its own. */
static int run_writer(const cfg_t *c, int trial, const char *dir, uint32_t gen, uint64_t seed,
                      int ms, qmodel_t *model, totals_t *t)
{
    int fds[2];
    if (pipe(fds) != 0) return fail_at(c, trial, "pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return fail_at(c, trial, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        writer_main(dir, c->policy, gen, seed, fds[1]);
    }
    close(fds[1]);
    uint64_t kill_at = crash_now_ns() + (uint64_t)ms * 1000000u;
    uint8_t buf[ACK_SIZE * 256];
    size_t have = 0;
    int killed = 0, eof = 0;
    long got = 0;
    /* Bounded: the kill comes at kill_at; EOF follows the process's death. */
    for (int guard = 0; !eof && guard < 10000000; guard++) {
        uint64_t now = crash_now_ns();
        if (!killed && now >= kill_at) {
            kill(pid, SIGKILL);
            killed = 1;
        }
        int wait_ms = killed ? 1000 : (int)((kill_at - now) / 1000000u) + 1;
        struct pollfd p = {fds[0], POLLIN, 0};
        int pr = poll(&p, 1, wait_ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) {
            if (killed && crash_now_ns() > kill_at + 30ull * 1000000000u)
                return fail_at(c, trial, "writer did not die within 30 s of SIGKILL");
            continue;
        }
        ssize_t r = read(fds[0], buf + have, sizeof buf - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { eof = 1; break; }
        have += (size_t)r;
        size_t whole = have / ACK_SIZE * ACK_SIZE;
        for (size_t off = 0; off < whole; off += ACK_SIZE) {
            ack_t a;
            memcpy(&a, buf + off, sizeof a);
            if (a.queue >= QUEUES) return fail_at(c, trial, "bad ack for queue %u", a.queue);
            qmodel_t *m = &model[a.queue];
            if (m->n == m->cap) {
                size_t nc = m->cap ? m->cap * 2 : 1024;
                ack_t *na = realloc(m->acks, nc * sizeof *na);
                if (!na) return fail_at(c, trial, "out of memory");
                m->acks = na;
                m->cap = nc;
            }
            m->acks[m->n++] = a;
            t->acked_batches++;
            t->acked_records += a.count;
            got++;
        }
        memmove(buf, buf + whole, have - whole);
        have -= whole;
    }
    close(fds[0]);
    if (!killed) kill(pid, SIGKILL);
    int st;
    if (waitpid(pid, &st, 0) != pid) return fail_at(c, trial, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
        return fail_at(c, trial, "writer exited with status %d (see its message above)",
                       WEXITSTATUS(st));
    if (WIFSIGNALED(st) && WTERMSIG(st) != SIGKILL)
        return fail_at(c, trial, "writer died of signal %d", WTERMSIG(st));
    if (have != 0) return fail_at(c, trial, "torn ack record (%zu bytes)", have);
    t->kills++;
    if (got == 0) t->kills_before_ack++;
    return 0;
}

/* The independent checker: reopen through the public API and compare. */
static int check_store(const cfg_t *c, int trial, const char *dir, qmodel_t *model, totals_t *t)
{
    rn_log_opts_t o;
    store_opts(c->policy, &o);
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) return fail_at(c, trial, "checker cannot open the store: %s (%s)", rn_strerror(rc), err);
    rn_buf_t buf = RN_BUF_INIT;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int bad = 0;
    for (uint32_t q = 0; q < QUEUES && !bad; q++) {
        rn_log_queue_info_t qi;
        rn_log_queue_info(log, q, &qi);
        if (qi.log_start != 0) { bad = fail_at(c, trial, "queue %u log start %" PRId64, q, qi.log_start); break; }
        /* Every record's identity, by offset. */
        size_t cap = (size_t)qi.high_watermark + 1;
        uint32_t *gens = malloc(cap * sizeof *gens), *seqs = malloc(cap * sizeof *seqs);
        if (!gens || !seqs) { free(gens); free(seqs); bad = fail_at(c, trial, "out of memory"); break; }
        int64_t next = 0;
        for (long guard = 0; next < qi.high_watermark && guard < 100000000 && !bad; guard++) {
            buf.len = 0;
            uint32_t nb = 0;
            rc = rn_log_read(log, q, next, 1 << 20, &buf, &nb, err);
            if (rc != 0 || nb == 0) {
                bad = fail_at(c, trial, "read q%u@%" PRId64 ": %s (%s)", q, next, rn_strerror(rc), err);
                break;
            }
            size_t at = 0;
            for (uint32_t k = 0; k < nb && !bad; k++) {
                size_t sz;
                rn_batch_header_t bh;
                if (rn_batch_size(buf.data + at, buf.len - at, &sz) != 0 || at + sz > buf.len) {
                    bad = fail_at(c, trial, "q%u@%" PRId64 ": batch framing broken", q, next);
                    break;
                }
                rc = rn_batch_validate(buf.data + at, sz, &rn_batch_default_limits, 1, &bh, err);
                if (rc != 0) { bad = fail_at(c, trial, "q%u@%" PRId64 ": corrupt batch: %s", q, next, err); break; }
                if (bh.base_offset != next) {
                    bad = fail_at(c, trial, "q%u: offsets not dense: batch at %" PRId64 " where %" PRId64
                                  " was due", q, bh.base_offset, next);
                    break;
                }
                t->checker_batches++;
                rc = rn_batch_iter_reset(&it, buf.data + at, sz, err);
                rn_record_t r;
                while (rc >= 0 && (rc = rn_batch_iter_next(&it, &r, err)) == 1) {
                    uint32_t g, s, rq;
                    char want[256], key[24];
                    if (crash_record_id(r.value, r.value_len, &g, &s, &rq) != 0 || rq != q) {
                        bad = fail_at(c, trial, "q%u@%" PRId64 ": a record the writer never built", q, r.offset);
                        break;
                    }
                    int wl = crash_record_value(g, s, q, want, sizeof want);
                    int kl = snprintf(key, sizeof key, "k%u", s);
                    int key_ok = (s & 1) ? r.key_len == -1
                                         : r.key_len == kl && memcmp(r.key, key, (size_t)kl) == 0;
                    if (r.value_len != wl || memcmp(r.value, want, (size_t)wl) != 0 || !key_ok ||
                        r.timestamp != crash_record_ts(g, s) || r.offset != next) {
                        bad = fail_at(c, trial, "q%u@%" PRId64 ": record g%u s%u is damaged", q, r.offset, g, s);
                        break;
                    }
                    /* Exactly once, in order. */
                    if (next > 0 && (g < gens[next - 1] || (g == gens[next - 1] && s <= seqs[next - 1]))) {
                        bad = fail_at(c, trial, "q%u@%" PRId64 ": g%u s%u follows g%u s%u (duplicate "
                                      "or out of order)", q, next, g, s, gens[next - 1], seqs[next - 1]);
                        break;
                    }
                    gens[next] = g;
                    seqs[next] = s;
                    next++;
                    t->checked_records++;
                }
                if (!bad && rc != 0) bad = fail_at(c, trial, "q%u: decode: %s", q, err);
                at += sz;
            }
        }
        /* Every acknowledged record, where its ack said. */
        long acked_here = 0;
        for (size_t i = 0; i < model[q].n && !bad; i++) {
            const ack_t *a = &model[q].acks[i];
            if (a->base + a->count > qi.high_watermark) {
                bad = fail_at(c, trial, "q%u: acknowledged records [%" PRId64 ", %" PRId64 ") of g%u "
                              "are lost (high watermark %" PRId64 ")", q, a->base,
                              a->base + a->count, a->gen, qi.high_watermark);
                break;
            }
            for (uint32_t k = 0; k < a->count; k++) {
                int64_t off = a->base + k;
                if (gens[off] != a->gen || seqs[off] != a->seq0 + k) {
                    bad = fail_at(c, trial, "q%u@%" PRId64 ": acknowledged g%u s%u, found g%u s%u", q,
                                  off, a->gen, a->seq0 + k, gens[off], seqs[off]);
                    break;
                }
            }
            acked_here += a->count;
        }
        if (!bad) t->unacked_seen += (long)next - acked_here;
        free(gens);
        free(seqs);
    }
    rn_batch_iter_destroy(&it);
    rn_buf_free(&buf);
    rc = rn_log_close(log);
    if (!bad && rc != 0) bad = fail_at(c, trial, "checker close: %s", rn_strerror(rc));
    return bad;
}

/* One fsync policy: c->trials kills. Returns 0 when every check passed. */
static int run_policy(const cfg_t *c, totals_t *t)
{
    char dir[PATH_MAX];
    qmodel_t model[QUEUES];
    memset(model, 0, sizeof model);
    memset(t, 0, sizeof *t);
    uint64_t rs = c->seed;
    uint32_t gen = 0;
    int rc = 0;
    dir[0] = '\0';
    for (int trial = 0; trial < c->trials && rc == 0; trial++) {
        if (trial % RESET_EVERY == 0) {
            if (dir[0]) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
            snprintf(dir, sizeof dir, "%s/rn-crash-XXXXXX", c->base_dir);
            if (!mkdtemp(dir)) { fprintf(stderr, "crash-test: mkdtemp in %s: %s\n", c->base_dir, strerror(errno)); return -1; }
            for (int q = 0; q < QUEUES; q++) model[q].n = 0;
        }
        /* Mostly a kill under load; sometimes within the first milliseconds
         * (during open and recovery); sometimes two kills before a check. */
        uint64_t r = crash_rng(&rs);
        int ms = r % 8 == 0 ? (int)(crash_rng(&rs) % 3) : 5 + (int)(crash_rng(&rs) % (uint64_t)c->max_kill_ms);
        rc = run_writer(c, trial, dir, ++gen, crash_rng(&rs), ms, model, t);
        if (rc == 0 && r % 5 == 1) {
            t->double_kills++;
            int ms2 = (int)(crash_rng(&rs) % (uint64_t)(c->max_kill_ms / 2 + 1));
            rc = run_writer(c, trial, dir, ++gen, crash_rng(&rs), ms2, model, t);
        }
        if (rc == 0) rc = check_store(c, trial, dir, model, t);
        t->trials++;
        if (c->verbose)
            printf("  trial %d: kill after %d ms, %ld records acknowledged so far\n", trial, ms,
                   t->acked_records);
    }
    if (dir[0] && rc == 0) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else if (dir[0]) fprintf(stderr, "crash-test: store kept for inspection: %s\n", dir);
    for (int q = 0; q < QUEUES; q++) free(model[q].acks);
    return rc;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: crash-test [--trials N] [--policy always|group|interval:MS|never|all]\n"
            "                  [--seed S] [--max-kill-ms MS] [--dir DIR] [--verbose]\n"
            "                  [--runneld PATH [--broker-only]]\n"
            "       crash-test --soak SECONDS --runneld PATH [--clients M] [--policy P] [--dir DIR]\n"
            "The storage loop runs for each policy; with --runneld, the runneld loop too.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    cfg_t c = {.trials = 20, .max_kill_ms = 150, .base_dir = "/tmp"};
    const char *policy = "all", *runneld = NULL;
    int soak = 0, clients = 2, broker_only = 0;
    c.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--verbose") == 0) { c.verbose = 1; continue; }
        if (strcmp(a, "--broker-only") == 0) { broker_only = 1; continue; }
        if (!v) usage();
        if (strcmp(a, "--trials") == 0) c.trials = atoi(v);
        else if (strcmp(a, "--policy") == 0) policy = v;
        else if (strcmp(a, "--seed") == 0) c.seed = strtoull(v, NULL, 0);
        else if (strcmp(a, "--max-kill-ms") == 0) c.max_kill_ms = atoi(v);
        else if (strcmp(a, "--dir") == 0) c.base_dir = v;
        else if (strcmp(a, "--runneld") == 0) runneld = v;
        else if (strcmp(a, "--soak") == 0) soak = atoi(v);
        else if (strcmp(a, "--clients") == 0) clients = atoi(v);
        else usage();
        i++;
    }
    if (c.trials < 1 || c.trials > 100000 || c.max_kill_ms < 1 || c.max_kill_ms > 60000) usage();
    if ((soak || broker_only) && !runneld) usage();
    if (runneld && access(runneld, X_OK) != 0) {
        fprintf(stderr, "crash-test: %s is not an executable runneld\n", runneld);
        return 2;
    }
    if (soak)
        return broker_soak(runneld, strcmp(policy, "all") == 0 ? "group" : policy, soak, clients,
                           c.base_dir) == 0 ? 0 : 1;
    const char *all[] = {"always", "group", "interval:20", "never"};
    const char *one[] = {policy};
    const char **list = strcmp(policy, "all") == 0 ? all : one;
    size_t n = strcmp(policy, "all") == 0 ? 4 : 1;
    printf("crash-test: seed=%" PRIu64 " trials=%d per policy, kill within %d ms\n", c.seed, c.trials,
           c.max_kill_ms);
    int failed = 0;
    for (size_t i = 0; i < n && !broker_only; i++) {
        c.policy = list[i];
        totals_t t;
        uint64_t t0 = crash_now_ns();
        int rc = run_policy(&c, &t);
        printf("crash-test: fsync=%s trials=%ld kills=%ld (%ld before any ack, %ld double) "
               "acked_batches=%ld acked_records=%ld checked_records=%ld unacked_seen=%ld "
               "lost=%s seconds=%.1f %s\n",
               c.policy, t.trials, t.kills, t.kills_before_ack, t.double_kills, t.acked_batches,
               t.acked_records, t.checked_records, t.unacked_seen, rc == 0 ? "0" : "see above",
               (double)(crash_now_ns() - t0) / 1e9, rc == 0 ? "OK" : "FAILED");
        fflush(stdout);
        if (rc != 0) failed = 1;
    }
    for (size_t i = 0; i < n && runneld; i++)
        if (broker_crash(runneld, list[i], c.trials, c.seed + i, c.max_kill_ms, c.base_dir,
                         c.verbose) != 0)
            failed = 1;
    return failed;
}

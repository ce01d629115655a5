/*
 * test_cli_follow.c — `runnel consume --follow` end to end: the real
 * `runnel` binary following a real runneld (started on a free loopback port
 * per test, tests/util/util.h), records produced through librunnel while it
 * runs, its stdout read through a pipe as it prints:
 *  - a follower of every queue started before anything was produced prints
 *    each record once it is acknowledged; the delay from the producer's ack
 *    (and from its send) to the line arriving is measured (each must be
 *    under FOLLOW_BOUND_MS; medians and maxima are printed) and SIGINT stops
 *    it with exit 0;
 *  - --queue prints that queue only, --count stops it (exit 0) at exactly
 *    the count, while records keep arriving;
 *  - --group: SIGTERM while records stream in commits exactly what was
 *    printed (`runnel group offsets`), and a follower restarted in the same
 *    group prints the rest: every record exactly once, in order per queue;
 *    idle, it commits without being stopped;
 *  - with --data it is refused (exit 2, one line): a data directory admits
 *    one process, so nothing could append while the follower held it.
 * Every wait is bounded; a follower that outlives its test is killed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/runnel.h"
#include "common/error.h"
#include "common/sys.h"
#include "tests/util/util.h"

#define RUNNEL          RN_BIN_DIR "/runnel"
#define FOLLOW_BOUND_MS 1000       /* a record must show up within this (generous) */
#define START_MS        10000      /* a follower's first line (process start included) */
#define STOP_MS         5000       /* a stopped follower must exit within this */

typedef struct fixture {
    char              root[64];
    char              data[PATH_MAX];
    char              out[PATH_MAX], err[PATH_MAX];
    rn_test_runneld_t srv;
    rn_client_t      *c;
} fixture_t;

typedef struct follower {
    pid_t  pid;
    int    fd;                 /* read end of its stdout */
    char  *buf;
    size_t len, pos, cap;
    int    eof;
    char   errpath[PATH_MAX + 16];
} follower_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (rn_test_tmpdir(f->root, sizeof f->root, "follow") != 0) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->out, sizeof f->out, "%s/stdout", f->root);
    snprintf(f->err, sizeof f->err, "%s/stderr", f->root);
    char err[RN_ERRMSG_SIZE];
    rn_client_opts_t co;
    rn_client_opts_default(&co);
    if (rn_test_runneld_start(&f->srv, f->data, NULL) != 0 ||
        rn_client_open_server(f->srv.addr, &co, &f->c, err) != 0) {
        rn_test_runneld_stop(&f->srv);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    rn_client_close(f->c);
    int stopped = rn_test_runneld_stop(&f->srv);
    if (stopped != 0) fprintf(stderr, "runneld exit status %d; log %s\n", stopped, f->srv.log);
    int rc = (rn_test_rmtree(f->root) != 0 ? -1 : 0) | stopped;
    free(f);
    return rc == 0 ? 0 : -1;
}

static int64_t now_ms(void) { return (int64_t)(rn_mono_ns() / 1000000u); }

/* Run `runnel ARGS` to completion (stdout, stderr in f->out, f->err);
 * returns its exit status and the outputs (caller frees). */
static int run(fixture_t *f, const char *const *args, char **out, char **errtext)
{
    const char *argv[24] = {RUNNEL, "--server", f->srv.addr};
    int n = 3;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int st = rn_test_run(RUNNEL, argv, NULL, f->out, f->err);
    assert_true(st >= 0 && WIFEXITED(st));
    *out = rn_test_slurp(f->out, NULL);
    *errtext = rn_test_slurp(f->err, NULL);
    return WEXITSTATUS(st);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void topic_create(fixture_t *f, const char *name, const char *queues)
{
    char *o, *e;
    if (run(f, ARGS("topic", "create", name, "--queues", queues), &o, &e) != 0)
        fail_msg("topic create: %s", e);
    free(o);
    free(e);
}

/* ---- a follower: `runnel --server ADDR consume ARGS`, stdout to a pipe ---- */

static void fol_start(fixture_t *f, follower_t *fo, const char *const *args)
{
    memset(fo, 0, sizeof *fo);
    snprintf(fo->errpath, sizeof fo->errpath, "%s/follower.err", f->root);
    const char *argv[24] = {RUNNEL, "--server", f->srv.addr, "consume"};
    int n = 4;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int er = open(fo->errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || er < 0) _exit(126);
        dup2(in, 0); dup2(p[1], 1); dup2(er, 2);
        execv(RUNNEL, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    fo->pid = pid;
    fo->fd = p[0];
}

/* Read what is there (waiting at most ms); 0 on timeout or EOF. */
static int fol_fill(follower_t *fo, int ms)
{
    if (fo->eof) return 0;
    struct pollfd pf = {fo->fd, POLLIN, 0};
    int r = poll(&pf, 1, ms);
    if (r < 0 && errno == EINTR) return 1;
    assert_true(r >= 0);
    if (r == 0) return 0;
    if (fo->cap - fo->len < 65536) {
        fo->cap = fo->cap ? fo->cap * 2 : 1 << 17;
        fo->buf = realloc(fo->buf, fo->cap);
        assert_non_null(fo->buf);
    }
    ssize_t got = read(fo->fd, fo->buf + fo->len, fo->cap - fo->len);
    if (got < 0 && errno == EINTR) return 1;
    assert_true(got >= 0);
    if (got == 0) { fo->eof = 1; return 0; }
    fo->len += (size_t)got;
    return 1;
}

/* The next line (without '\n', NUL-terminated in a static buffer), or NULL
 * when none came within ms or the output ended. */
static const char *fol_line(follower_t *fo, int ms)
{
    static char line[1024];
    int64_t deadline = now_ms() + ms;
    for (;;) {
        char *nl = fo->pos < fo->len ? memchr(fo->buf + fo->pos, '\n', fo->len - fo->pos) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - (fo->buf + fo->pos));
            assert_true(n < sizeof line);
            memcpy(line, fo->buf + fo->pos, n);
            line[n] = '\0';
            fo->pos += n + 1;
            return line;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0 && ms > 0) return NULL;
        if (!fol_fill(fo, ms > 0 ? (int)left : 0) && (fo->eof || ms == 0)) return NULL;
    }
}

/* Wait (at most STOP_MS) for the follower to exit, reading its output to
 * the end; its exit status. A follower that does not exit is killed and the
 * test fails. */
static int fol_wait(follower_t *fo)
{
    int64_t deadline = now_ms() + STOP_MS;
    while (!fo->eof && now_ms() < deadline) fol_fill(fo, 50);
    int status = 0;
    pid_t got;
    while ((got = waitpid(fo->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
        rn_test_sleep_ms(10);
    if (got == 0) {
        kill(fo->pid, SIGKILL);
        waitpid(fo->pid, &status, 0);
        fail_msg("the follower did not exit within %d ms", STOP_MS);
    }
    char *e = rn_test_slurp(fo->errpath, NULL);
    if (!WIFEXITED(status)) fail_msg("the follower died of signal %d; stderr: %s",
                                     WTERMSIG(status), e);
    if (WEXITSTATUS(status) != 0) fail_msg("the follower exited %d; stderr: %s",
                                           WEXITSTATUS(status), e);
    free(e);
    close(fo->fd);
    fo->pid = 0;
    return WEXITSTATUS(status);
}

static void fol_free(follower_t *fo)
{
    if (fo->pid > 0) { kill(fo->pid, SIGKILL); waitpid(fo->pid, NULL, 0); close(fo->fd); }
    free(fo->buf);
    fo->buf = NULL;
}

static int fol_running(follower_t *fo) { return waitpid(fo->pid, NULL, WNOHANG) == 0; }

/* ---- producing ----------------------------------------------------------- */

static rn_producer_t *producer(fixture_t *f, const char *topic)
{
    char err[RN_ERRMSG_SIZE];
    rn_producer_opts_t o;
    rn_producer_opts_default(&o);
    o.linger_ms = 0;
    rn_producer_t *p = NULL;
    if (rn_producer_open(f->c, topic, &o, &p, err) != 0) fail_msg("producer: %s", err);
    return p;
}

/* Send value to queue; with flush, return once it is acknowledged. */
static void send_value(rn_producer_t *p, uint32_t queue, const char *value, int flush)
{
    char err[RN_ERRMSG_SIZE];
    rn_record_t r = {.timestamp = -1, .key_len = -1, .value = (const uint8_t *)value,
                     .value_len = (int32_t)strlen(value)};
    if (rn_producer_send(p, queue, &r, NULL, NULL, err) != 0) fail_msg("send: %s", err);
    if (flush && rn_producer_flush(p, err) != 0) fail_msg("flush: %s", err);
}

static void expect_line(follower_t *fo, int ms, const char *want)
{
    const char *got = fol_line(fo, ms);
    if (!got) fail_msg("no line within %d ms (wanted '%s')", ms, want);
    if (strcmp(got, want) != 0) fail_msg("got '%s', want '%s'", got, want);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- tests ------------------------------------------------------------------ */

/* A follower of every queue, started before anything was produced, prints
 * each record after its ack, within FOLLOW_BOUND_MS (median and max printed),
 * at a low rate; SIGINT stops it with exit 0. */
static void test_every_queue_latency(void **state)
{
    fixture_t *f = *state;
    enum { N = 40 };
    topic_create(f, "t", "3");
    follower_t fo;
    fol_start(f, &fo, ARGS("t", "--follow"));
    rn_producer_t *p = producer(f, "t");
    send_value(p, 0, "warm-up", 1);
    expect_line(&fo, START_MS, "warm-up");
    int64_t lat_us[N], e2e_us[N];
    for (int i = 0; i < N; i++) {
        char v[32];
        snprintf(v, sizeof v, "r%d", i);
        uint64_t sent = rn_mono_ns();
        send_value(p, (uint32_t)(i % 3), v, 1);
        uint64_t acked = rn_mono_ns();
        expect_line(&fo, FOLLOW_BOUND_MS, v);
        uint64_t seen = rn_mono_ns();
        lat_us[i] = (int64_t)((seen - acked) / 1000u);
        e2e_us[i] = (int64_t)((seen - sent) / 1000u);
        rn_test_sleep_ms(20);
    }
    qsort(lat_us, N, sizeof lat_us[0], cmp_i64);
    qsort(e2e_us, N, sizeof e2e_us[0], cmp_i64);
    printf("follow: %d records, one every ~20 ms: ack to printed line median %.2f ms, max "
           "%.2f ms; send to printed line median %.2f ms, max %.2f ms\n", N,
           lat_us[N / 2] / 1000.0, lat_us[N - 1] / 1000.0, e2e_us[N / 2] / 1000.0,
           e2e_us[N - 1] / 1000.0);
    kill(fo.pid, SIGINT);
    assert_int_equal(fol_wait(&fo), 0);
    assert_null(fol_line(&fo, 0));           /* nothing after the last record */
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_producer_close(p, err), 0);
    fol_free(&fo);
}

/* --queue prints that queue only; --count stops the follower at exactly the
 * count (exit 0) although more records arrive. */
static void test_queue_and_count(void **state)
{
    fixture_t *f = *state;
    topic_create(f, "c", "2");
    rn_producer_t *p = producer(f, "c");
    send_value(p, 1, "old", 1);
    follower_t fo;
    fol_start(f, &fo, ARGS("c", "--queue", "1", "--follow", "--count", "4"));
    expect_line(&fo, START_MS, "old");
    send_value(p, 0, "other-queue", 1);
    send_value(p, 1, "n1", 1);
    expect_line(&fo, FOLLOW_BOUND_MS, "n1");
    send_value(p, 1, "n2", 1);
    expect_line(&fo, FOLLOW_BOUND_MS, "n2");
    assert_null(fol_line(&fo, 300));
    assert_true(fol_running(&fo));           /* 3 of 4: still following */
    send_value(p, 1, "n3", 0);
    send_value(p, 1, "n4", 1);
    expect_line(&fo, FOLLOW_BOUND_MS, "n3");
    assert_int_equal(fol_wait(&fo), 0);      /* the 4th record: done, by itself */
    assert_null(fol_line(&fo, 0));           /* n4 is not printed */
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_producer_close(p, err), 0);
    fol_free(&fo);
}

/* ---- groups: SIGTERM commits exactly what was printed --------------------- */

enum { GQ = 2, GN = 3000 };            /* queues, records (GN / GQ per queue) */

typedef struct gprod {
    fixture_t *f;
    int        sent;                   /* records acknowledged so far */
    pthread_mutex_t mu;
} gprod_t;

/* Produce "q<Q>-<i>" for i = 0.. per queue, alternating queues, in small
 * acknowledged chunks (about a second in all), so a follower is stopped
 * while records still arrive. */
static void *gproduce(void *arg)
{
    gprod_t *g = arg;
    rn_producer_t *p = producer(g->f, "g");
    for (int i = 0; i < GN; i++) {
        char v[32];
        snprintf(v, sizeof v, "q%d-%d", i % GQ, i / GQ);
        send_value(p, (uint32_t)(i % GQ), v, (i + 1) % 10 == 0);
        if ((i + 1) % 10 == 0) {
            pthread_mutex_lock(&g->mu);
            g->sent = i + 1;
            pthread_mutex_unlock(&g->mu);
            rn_test_sleep_ms(3);
        }
    }
    char err[RN_ERRMSG_SIZE];
    if (rn_producer_close(p, err) != 0) fail_msg("producer: %s", err);
    return NULL;
}

static int gsent(gprod_t *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->sent;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* Check a line is the next record of its queue (next[q]), and count it. */
static void take(const char *line, int next[GQ])
{
    int q, i;
    if (sscanf(line, "q%d-%d", &q, &i) != 2 || q < 0 || q >= GQ)
        fail_msg("unexpected line '%s'", line);
    if (i != next[q]) fail_msg("queue %d: got record %d, want %d (lost or repeated)", q, i,
                               next[q]);
    next[q]++;
}

/* Group app's committed offsets on g, from `runnel group offsets app`. */
static void committed(fixture_t *f, int64_t off[GQ])
{
    char *o, *e;
    if (run(f, ARGS("group", "offsets", "app"), &o, &e) != 0) fail_msg("group offsets: %s", e);
    for (int q = 0; q < GQ; q++) off[q] = -1;
    for (char *l = o; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        char topic[64];
        unsigned q;
        long long v;
        if (sscanf(l, "%63s %u %lld", topic, &q, &v) == 3 && !strcmp(topic, "g") && q < GQ)
            off[q] = v;
    }
    free(o);
    free(e);
}

static void test_group_sigterm_exact(void **state)
{
    fixture_t *f = *state;
    topic_create(f, "g", "2");
    gprod_t g = {.f = f, .sent = 0, .mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gproduce, &g), 0);

    /* First follower: stopped by SIGTERM while records still arrive. */
    int next[GQ] = {0};
    follower_t fo;
    fol_start(f, &fo, ARGS("g", "--group", "app", "--follow"));
    int seen = 0;
    while (seen < GN / 4) {
        const char *l = fol_line(&fo, START_MS);
        if (!l) fail_msg("the follower printed %d records, then nothing", seen);
        take(l, next);
        seen++;
    }
    int sent_at_stop = gsent(&g);
    kill(fo.pid, SIGTERM);
    assert_int_equal(fol_wait(&fo), 0);
    for (const char *l; (l = fol_line(&fo, 0)) != NULL; seen++) take(l, next);
    fol_free(&fo);
    int64_t off[GQ];
    committed(f, off);
    for (int q = 0; q < GQ; q++)
        if (off[q] != next[q]) fail_msg("queue %d: committed %lld, printed %d", q,
                                        (long long)off[q], next[q]);
    /* Usually mid-stream; on a slow machine the producer may have finished
     * first, and the commit must match all the same. */
    printf("follow: SIGTERM after %d printed records (%d acknowledged by then)\n", seen,
           sent_at_stop);
    assert_int_equal(pthread_join(th, NULL), 0);

    /* Restarted in the same group: the rest, each record once, in order. */
    fol_start(f, &fo, ARGS("g", "--group", "app", "--follow"));
    while (seen < GN) {
        const char *l = fol_line(&fo, START_MS);
        if (!l) fail_msg("the restarted follower stopped at %d of %d records", seen, GN);
        take(l, next);
        seen++;
    }
    /* Idle, it commits without being stopped (--commit-ms 200). */
    int64_t deadline = now_ms() + 3000;
    do {
        rn_test_sleep_ms(50);
        committed(f, off);
    } while ((off[0] != GN / GQ || off[1] != GN / GQ) && now_ms() < deadline);
    assert_int_equal(off[0], GN / GQ);
    assert_int_equal(off[1], GN / GQ);
    kill(fo.pid, SIGINT);
    assert_int_equal(fol_wait(&fo), 0);
    assert_null(fol_line(&fo, 0));
    fol_free(&fo);
    committed(f, off);
    assert_int_equal(off[0], GN / GQ);
    assert_int_equal(off[1], GN / GQ);
}

/* With --data the follower is refused before it opens anything. */
static void test_needs_server(void **state)
{
    fixture_t *f = *state;
    const char *argv[] = {RUNNEL, "--data", f->data, "consume", "t", "--follow", NULL};
    int st = rn_test_run(RUNNEL, argv, NULL, f->out, f->err);
    char *e = rn_test_slurp(f->err, NULL);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    if (strncmp(e, "runnel: --follow needs --server", 31) != 0 || strchr(e, '\n') != e +
        strlen(e) - 1)
        fail_msg("stderr: %s", e);
    free(e);
}

int main(void)
{
    unsetenv("RUNNEL_DATA");
    unsetenv("RUNNEL_SERVER");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_queue_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_and_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_sigterm_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_needs_server, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_reconnect.c — producers and consumers ride out runneld restarts.
 * Real runneld processes on one loopback port (a free port is picked, then
 * every start passes --listen 127.0.0.1:PORT), killed with SIGKILL and
 * started again on the same data directory; the real `runnel` command.
 *
 *  - three kill -9 restarts at seeded random points during a
 *    `runnel --server produce` of RN_RECONNECT_RECORDS lines (default
 *    3,000,000; `make reconnect-soak` runs 60,000,000): it exits 0, and
 *    `runnel consume` finds every line exactly once, in order per queue;
 *  - the exact case of a duplicate across a restart: runneld is killed -9
 *    after it stored a batch and answered, before the answer reaches the
 *    producer (the fault hook "produce:response" kills it there); the
 *    producer resends to the restarted runneld, which recognises the batch
 *    from the log's tail, and the log holds one copy;
 *  - SIGTERM to `runnel produce` (over --server and embedded) while lines
 *    stream in: the count it prints is exactly what the topic holds, lines
 *    1..N;
 *  - a broker that never comes back: the produce fails after
 *    --delivery-timeout-ms with a message saying so and the exact count;
 *  - a librunnel consumer across a kill -9 restart reads every record once,
 *    in order; so does `runnel consume --group` (committing after every
 *    batch), killed while its output pipe is full, and a second run of the
 *    group finds nothing left (the commits survived);
 *  - a consumer whose broker never comes back: poll fails after
 *    reconnect_timeout_ms, saying so.
 *
 * Invariant of the harness: every wait is bounded; runneld's stderr goes to
 * ROOT/runneld.log (printed when a start fails); RN_TEST_KEEP=1 keeps ROOT.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/runnel.h"
#include "common/sys.h"
#include "tests/util/util.h"

#define START_WAIT_MS 20000
#define DEFAULT_RECORDS 3000000

typedef struct broker {
    pid_t pid;
    int   port;
    char  root[PATH_MAX], data[PATH_MAX + 8], portf[PATH_MAX + 8], logf[PATH_MAX + 16];
    char  addr[64];
} broker_t;

static uint64_t seed_state;

/* A port nothing listens on now (the kernel's pick for an ephemeral bind). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void print_log(const broker_t *b)
{
    char *t = rn_test_slurp(b->logf, NULL);
    fprintf(stderr, "---- %s ----\n%s\n", b->logf, t);
    free(t);
}

/* Start runneld on b->port (the same each time), wait until it accepts. */
static void broker_start(broker_t *b)
{
    unlink(b->portf);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
    /* runneld refuses uid 0 without --allow-root; NULL ends the list early. */
    const char *argv[] = {"runneld", "--data", b->data, "--listen", listen, "--port-file",
                          b->portf, "--fsync", "group", getuid() == 0 ? "--allow-root" : NULL,
                          NULL};
    for (int tries = 0;; tries++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            int fd = open(b->logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) { dup2(fd, 2); close(fd); }
            execv(RN_BIN_DIR "/runneld", (char *const *)argv);
            _exit(127);
        }
        int up = 0, status = 0, exited = 0;
        for (int i = 0; i < START_WAIT_MS / 5 && !up && !exited; i++) {
            up = access(b->portf, F_OK) == 0;
            if (!up && waitpid(pid, &status, WNOHANG) == pid) exited = 1;
            if (!up && !exited) rn_test_sleep_ms(5);
        }
        if (up) { b->pid = pid; return; }
        /* The old process's port may still be held a moment: try again. */
        if (exited && tries < 20) { rn_test_sleep_ms(100); continue; }
        if (!exited) { kill(pid, SIGKILL); waitpid(pid, &status, 0); }
        print_log(b);
        fail_msg("runneld did not start on %s", listen);
    }
}

static void broker_kill9(broker_t *b)
{
    if (b->pid <= 0) return;
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
}

static void broker_stop(broker_t *b)
{
    if (b->pid <= 0) return;
    kill(b->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 4000; i++) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) { b->pid = 0; break; }
        rn_test_sleep_ms(5);
    }
    if (b->pid > 0) { kill(b->pid, SIGKILL); waitpid(b->pid, NULL, 0); b->pid = 0; }
}

/* Kill -9 now and start again after ms on another thread, so the caller
 * goes on meeting a dead broker meanwhile; join with restart_join. */
typedef struct restarter {
    broker_t *b;
    int       ms;
    pthread_t t;
} restarter_t;

static void *restart_main(void *arg)
{
    restarter_t *r = arg;
    rn_test_sleep_ms(r->ms);
    broker_start(r->b);
    return NULL;
}

static void restart_later(restarter_t *r, broker_t *b, int ms)
{
    broker_kill9(b);
    r->b = b;
    r->ms = ms;
    assert_int_equal(pthread_create(&r->t, NULL, restart_main, r), 0);
}

static void restart_join(restarter_t *r) { pthread_join(r->t, NULL); }

static int setup(void **state)
{
    broker_t *b = calloc(1, sizeof *b);
    if (!b || rn_test_tmpdir(b->root, sizeof b->root, "reconnect") != 0) { free(b); return -1; }
    snprintf(b->data, sizeof b->data, "%s/data", b->root);
    snprintf(b->portf, sizeof b->portf, "%s/port", b->root);
    snprintf(b->logf, sizeof b->logf, "%s/runneld.log", b->root);
    b->port = free_port();
    snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", b->port);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    broker_t *b = *state;
    broker_stop(b);
    const char *keep = getenv("RN_TEST_KEEP");
    int rc = 0;
    if (keep && keep[0] == '1') fprintf(stderr, "kept %s\n", b->root);
    else rc = rn_test_rmtree(b->root);
    free(b);
    return rc;
}

/* Run `runnel ARGS...` to completion; stdout/stderr into ROOT/out, ROOT/err. */
static int runnel(broker_t *b, const char *in, const char *const *args)
{
    const char *argv[24] = {"runnel"};
    int n = 1;
    for (; args[n - 1]; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    char out[PATH_MAX + 8], err[PATH_MAX + 8];
    snprintf(out, sizeof out, "%s/out", b->root);
    snprintf(err, sizeof err, "%s/err", b->root);
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, in, out, err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *e = rn_test_slurp(err, NULL);
        fprintf(stderr, "runnel %s %s: %s", args[0], args[1], e);
        free(e);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Start `runnel ARGV` with stdin from in_fd (or in_path), stderr into err. */
static pid_t spawn(const char *const *argv, int in_fd, const char *in_path, const char *err)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (in_path) in_fd = open(in_path, O_RDONLY);
        if (in_fd >= 0) dup2(in_fd, 0);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int o = open("/dev/null", O_WRONLY);
        if (e >= 0) dup2(e, 2);
        if (o >= 0) dup2(o, 1);
        execv(RN_BIN_DIR "/runnel", (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Wait at most ms for pid: its exit code, 128 + signal, or -1 (still running). */
static int wait_child(pid_t pid, int ms)
{
    int status;
    for (int i = 0; i <= ms; i += 2) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        rn_test_sleep_ms(2);
    }
    return -1;
}

/* Records the topic holds over every queue now; -1 when runneld does not answer. */
static int64_t stored(rn_client_t *c, const char *topic, uint32_t nq)
{
    char err[RN_ERRMSG_SIZE];
    int64_t sum = 0;
    for (uint32_t q = 0; q < nq; q++) {
        int64_t ls, hw;
        if (rn_client_queue_range(c, topic, q, &ls, &hw, err) != 0) return -1;
        sum += hw;
    }
    return sum;
}

static rn_client_t *connect_to(const broker_t *b)
{
    char err[RN_ERRMSG_SIZE];
    rn_client_opts_t o;
    rn_client_opts_default(&o);
    o.timeout_ms = 2000;
    rn_client_t *c = NULL;
    if (rn_client_open_server(b->addr, &o, &c, err) != 0) fail_msg("%s", err);
    return c;
}

/* Input lines "1".."n", malloc'd; *len bytes. */
static char *numbers(uint64_t n, size_t *len)
{
    size_t cap = (size_t)n * 9 + 64, at = 0;
    char *t = malloc(cap);
    assert_non_null(t);
    for (uint64_t i = 1; i <= n; i++) {
        if (at + 24 > cap) { cap *= 2; t = realloc(t, cap); assert_non_null(t); }
        at += (size_t)sprintf(t + at, "%llu\n", (unsigned long long)i);
    }
    *len = at;
    return t;
}

/* `runnel consume` of each queue: every value 1..n once, increasing within
 * a queue (values are line numbers, so per-queue order = input order). */
static void check_topic(broker_t *b, const char *where_flag, const char *where, const char *topic,
                        uint32_t nq, uint64_t n)
{
    uint8_t *seen = calloc(n + 1, 1);
    assert_non_null(seen);
    uint64_t total = 0;
    for (uint32_t q = 0; q < nq; q++) {
        char qs[16], out[PATH_MAX + 8];
        snprintf(qs, sizeof qs, "%u", q);
        const char *args[] = {where_flag, where, "consume", topic, "--queue", qs, NULL};
        assert_int_equal(runnel(b, NULL, args), 0);
        snprintf(out, sizeof out, "%s/out", b->root);
        size_t len;
        char *t = rn_test_slurp(out, &len);
        uint64_t prev = 0;
        for (char *p = t; p < t + len;) {
            char *nl = memchr(p, '\n', (size_t)(t + len - p));
            assert_non_null(nl);
            *nl = '\0';
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (*end || v < 1 || v > n) fail_msg("queue %u: unexpected value '%s'", q, p);
            if (seen[v]) fail_msg("queue %u: value %llu stored twice", q, v);
            if (v <= prev) fail_msg("queue %u: %llu after %llu (out of order)", q, v,
                                    (unsigned long long)prev);
            seen[v] = 1;
            prev = v;
            total++;
            p = nl + 1;
        }
        free(t);
    }
    for (uint64_t v = 1; v <= n; v++)
        if (!seen[v]) fail_msg("value %llu is missing (the topic holds %llu of %llu)",
                               (unsigned long long)v, (unsigned long long)total,
                               (unsigned long long)n);
    assert_int_equal(total, n);
    free(seen);
}

static void create_topic(broker_t *b, const char *flag, const char *where, const char *topic,
                         const char *queues)
{
    const char *args[] = {flag, where, "topic", "create", topic, "--queues", queues, NULL};
    assert_int_equal(runnel(b, NULL, args), 0);
}

/* ---- 1: three kill -9 restarts during a produce --------------------------- */

static void test_produce_survives_kill9(void **state)
{
    broker_t *b = *state;
    uint64_t n = DEFAULT_RECORDS;
    const char *env = getenv("RN_RECONNECT_RECORDS");
    if (env && *env) n = strtoull(env, NULL, 10);
    assert_true(n >= 1000);
    printf("test_produce_survives_kill9: %llu records (RN_RECONNECT_RECORDS)\n",
           (unsigned long long)n);
    broker_start(b);
    create_topic(b, "--server", b->addr, "t", "4");
    size_t len;
    char *in = numbers(n, &len);
    char inf[PATH_MAX + 16], errf[PATH_MAX + 16];
    snprintf(inf, sizeof inf, "%s/input", b->root);
    snprintf(errf, sizeof errf, "%s/produce.err", b->root);
    rn_test_write_file(inf, in, len);
    free(in);
    /* Seeded kill points: stored-record counts, increasing, in 5%..90% of n. */
    uint64_t at[3];
    for (int i = 0; i < 3; i++)
        at[i] = n / 20 + (uint64_t)(i * 0.3 * (double)n) +
                rn_test_rng(&seed_state) % (uint64_t)(0.25 * (double)n);
    uint64_t t0 = rn_mono_ns();
    const char *argv[] = {"runnel", "--server", b->addr, "produce", "t", NULL};
    pid_t pid = spawn(argv, -1, inf, errf);
    rn_client_t *c = connect_to(b);
    int kills = 0, code = -1;
    while (code < 0) {
        code = wait_child(pid, 0);
        if (code >= 0) break;
        if (kills < 3 && stored(c, "t", 4) >= (int64_t)at[kills]) {
            broker_kill9(b);
            rn_test_sleep_ms((int)(rn_test_rng(&seed_state) % 500));
            broker_start(b);
            printf("  kill -9 #%d at >= %llu records stored, %.1f s\n", kills + 1,
                   (unsigned long long)at[kills], (double)(rn_mono_ns() - t0) / 1e9);
            kills++;
        }
        rn_test_sleep_ms(2);
    }
    rn_client_close(c);
    char *e = rn_test_slurp(errf, NULL);
    printf("  runnel produce exited %d after %.1f s: %s", code, (double)(rn_mono_ns() - t0) / 1e9,
           e);
    if (code != 0) fail_msg("runnel produce exited %d: %s", code, e);
    char want[64];
    snprintf(want, sizeof want, "produced %llu records", (unsigned long long)n);
    assert_non_null(strstr(e, want));
    free(e);
    assert_int_equal(kills, 3);
    check_topic(b, "--server", b->addr, "t", 4, n);
}

/* ---- 2: killed after storing, before the answer arrived -------------------- */

static broker_t *hook_broker;
static int hook_kills;

static int kill_at_answer(const char *point)
{
    if (strcmp(point, "produce:response") || hook_kills > 0) return 0;
    hook_kills++;
    /* The broker stored the batches and answered; it dies before the
     * producer sees the answer, and comes back. */
    broker_kill9(hook_broker);
    broker_start(hook_broker);
    return 1;
}

static void test_duplicate_after_restart(void **state)
{
    broker_t *b = *state;
    char err[RN_ERRMSG_SIZE] = "";
    broker_start(b);
    create_topic(b, "--server", b->addr, "d", "1");
    rn_client_t *c = connect_to(b);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.batch_bytes = 512;
    rn_producer_t *p;
    assert_int_equal(rn_producer_open(c, "d", &po, &p, err), 0);
    hook_broker = b;
    hook_kills = 0;
    rn_client_test_hook = kill_at_answer;
    for (int i = 1; i <= 2000; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "%d", i);
        rn_record_t r = {.key_len = -1, .value = (const uint8_t *)v, .value_len = n,
                         .timestamp = -1};
        if (rn_producer_send(p, 0, &r, NULL, NULL, err) != 0) fail_msg("send: %s", err);
    }
    int rc = rn_producer_flush(p, err);
    rn_client_test_hook = NULL;
    if (rc != 0) fail_msg("flush: %s", err);
    rn_producer_stats_t st;
    rn_producer_stats(p, &st);
    printf("test_duplicate_after_restart: %llu records, %llu resends, %llu batches already "
           "stored\n", (unsigned long long)st.records, (unsigned long long)st.retries,
           (unsigned long long)st.duplicates);
    assert_int_equal(hook_kills, 1);
    assert_int_equal(st.records, 2000);
    assert_int_equal(st.failed, 0);
    assert_true(st.retries >= 1);
    assert_true(st.duplicates >= 1);          /* recognised by the restarted broker */
    assert_int_equal(rn_producer_close(p, err), 0);
    rn_client_close(c);
    check_topic(b, "--server", b->addr, "d", 1, 2000);
}

/* ---- 3: SIGTERM reports the exact count ------------------------------------ */

/* Stream lines into `runnel FLAG WHERE produce s` until SIGTERM at a seeded
 * time; the count printed must be what the topic holds, lines 1..N. */
static void sigterm_case(broker_t *b, const char *flag, const char *where)
{
    create_topic(b, flag, where, "s", "3");
    size_t len;
    char *in = numbers(20000000, &len);
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);       /* the child keeps only its stdin */
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    char errf[PATH_MAX + 16];
    snprintf(errf, sizeof errf, "%s/produce.err", b->root);
    const char *argv[] = {"runnel", flag, where, "produce", "s", "--linger-ms", "20", NULL};
    pid_t pid = spawn(argv, fds[0], NULL, errf);
    close(fds[0]);
    uint64_t t0 = rn_mono_ns(), term_at = 200 + rn_test_rng(&seed_state) % 600;
    size_t off = 0;
    int code = -1, termed = 0;
    while (code < 0) {
        if (!termed && (rn_mono_ns() - t0) / 1000000u >= term_at) {
            kill(pid, SIGTERM);
            termed = 1;
        }
        if (off < len) {
            ssize_t w = write(fds[1], in + off, len - off > 65536 ? 65536 : len - off);
            if (w > 0) off += (size_t)w;
        }
        code = wait_child(pid, 0);
        if (code < 0) rn_test_sleep_ms(1);
        if ((rn_mono_ns() - t0) / 1000000u > 60000) fail_msg("produce did not stop on SIGTERM");
    }
    close(fds[1]);
    free(in);
    char *e = rn_test_slurp(errf, NULL);
    printf("  %s: SIGTERM after %llu ms, %zu bytes written: exit %d: %s", flag,
           (unsigned long long)term_at, off, code, e);
    assert_int_equal(code, 1);
    const char *m = strstr(e, "stopped by SIGTERM: ");
    if (!m) fail_msg("no count in: %s", e);
    unsigned long long count = 0, lines = 0;
    assert_int_equal(sscanf(m, "stopped by SIGTERM: %llu records were stored (lines 1..%llu",
                            &count, &lines), 2);
    assert_int_equal(count, lines);
    assert_true(count > 0);
    free(e);
    check_topic(b, flag, where, "s", 3, count);
}

static void test_sigterm_count_remote(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    sigterm_case(b, "--server", b->addr);
}

static void test_sigterm_count_embedded(void **state)
{
    broker_t *b = *state;
    sigterm_case(b, "--data", b->data);
}

/* ---- 4: the broker never comes back ---------------------------------------- */

static void test_delivery_timeout(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    create_topic(b, "--server", b->addr, "x", "1");
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);       /* the child keeps only its stdin */
    signal(SIGPIPE, SIG_IGN);
    char errf[PATH_MAX + 16];
    snprintf(errf, sizeof errf, "%s/produce.err", b->root);
    const char *argv[] = {"runnel", "--server", b->addr, "produce", "x", "--linger-ms", "0",
                          "--delivery-timeout-ms", "1500", NULL};
    pid_t pid = spawn(argv, fds[0], NULL, errf);
    close(fds[0]);
    size_t len;
    char *in = numbers(1000, &len);
    assert_int_equal(write(fds[1], in, len), (ssize_t)len);
    free(in);
    rn_client_t *c = connect_to(b);
    for (int i = 0; i < 10000 && stored(c, "x", 1) < 1000; i++) rn_test_sleep_ms(2);
    assert_int_equal(stored(c, "x", 1), 1000);
    rn_client_close(c);
    rn_test_sleep_ms(300);                    /* and their answers have reached the producer */
    broker_kill9(b);
    uint64_t t0 = rn_mono_ns();
    const char more[] = "1001\n1002\n1003\n";
    assert_int_equal(write(fds[1], more, sizeof more - 1), (ssize_t)(sizeof more - 1));
    close(fds[1]);
    int code = wait_child(pid, 20000);
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    char *e = rn_test_slurp(errf, NULL);
    printf("test_delivery_timeout: exit %d after %.2f s: %s", code, secs, e);
    assert_int_equal(code, 1);
    assert_true(secs >= 1.4);                 /* after the timeout (the clock started earlier) */
    assert_true(secs < 10);
    assert_non_null(strstr(e, "not acknowledged within delivery_timeout_ms 1500"));
    assert_non_null(strstr(e, "1000 records were stored"));
    free(e);
    /* The count was exact: the restarted broker holds those 1000. */
    broker_start(b);
    check_topic(b, "--server", b->addr, "x", 1, 1000);
}

/* ---- 5: a consumer across a restart ------------------------------------------ */

static void test_consumer_across_restart(void **state)
{
    broker_t *b = *state;
    char err[RN_ERRMSG_SIZE] = "";
    enum { N = 200000, NQ = 2 };
    broker_start(b);
    create_topic(b, "--server", b->addr, "c", "2");
    rn_client_t *c = connect_to(b);
    rn_producer_t *p;
    assert_int_equal(rn_producer_open(c, "c", NULL, &p, err), 0);
    for (int i = 0; i < N; i++) {
        char v[16];
        int n = snprintf(v, sizeof v, "%d", i);
        rn_record_t r = {.key_len = -1, .value = (const uint8_t *)v, .value_len = n,
                         .timestamp = -1};
        if (rn_producer_send(p, (uint32_t)(i % NQ), &r, NULL, NULL, err) != 0)
            fail_msg("send: %s", err);
    }
    assert_int_equal(rn_producer_close(p, err), 0);
    rn_client_consumer_opts_t ko = {.fetch_bytes = 16384, .prefetch = 1};
    rn_client_consumer_t *k;
    assert_int_equal(rn_client_consumer_open(c, &ko, &k, err), 0);
    for (uint32_t q = 0; q < NQ; q++)
        assert_int_equal(rn_client_consumer_assign(k, "c", q, 0, err), 0);
    int64_t next[NQ] = {0, 0};
    uint64_t got = 0, kill_at = 20000 + rn_test_rng(&seed_state) % (N / 2);
    int killed = 0, rc;
    restarter_t rs;
    rn_consumer_batch_t bt;
    while ((rc = rn_client_consumer_poll(k, &bt, 0, err)) == 1) {
        for (uint32_t j = 0; j < bt.count; j++) {
            const rn_record_t *r = &bt.records[j];
            char v[16];
            int n = snprintf(v, sizeof v, "%lld", (long long)(next[bt.queue] * NQ + bt.queue));
            if (r->offset != next[bt.queue] || r->value_len != n || memcmp(r->value, v, (size_t)n))
                fail_msg("queue %u: offset %lld, expected %lld", bt.queue, (long long)r->offset,
                         (long long)next[bt.queue]);
            next[bt.queue]++;
            got++;
        }
        if (!killed && got >= kill_at) {
            restart_later(&rs, b, 300);       /* the polls go on meanwhile */
            killed = 1;
        }
    }
    if (killed) restart_join(&rs);
    if (rc < 0) fail_msg("poll: %s", err);
    printf("test_consumer_across_restart: %llu records, kill -9 after %llu\n",
           (unsigned long long)got, (unsigned long long)kill_at);
    assert_int_equal(killed, 1);
    assert_int_equal(got, N);
    rn_client_consumer_close(k);
    rn_client_close(c);
}

static void test_consumer_reconnect_timeout(void **state)
{
    broker_t *b = *state;
    char err[RN_ERRMSG_SIZE] = "";
    broker_start(b);
    create_topic(b, "--server", b->addr, "r", "1");
    rn_client_t *c = connect_to(b);
    rn_client_consumer_opts_t ko = {.reconnect_timeout_ms = 1000};
    rn_client_consumer_t *k;
    assert_int_equal(rn_client_consumer_open(c, &ko, &k, err), 0);
    assert_int_equal(rn_client_consumer_assign(k, "r", 0, 0, err), 0);
    broker_kill9(b);
    uint64_t t0 = rn_mono_ns();
    rn_consumer_batch_t bt;
    int rc = rn_client_consumer_poll(k, &bt, 0, err);
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    printf("test_consumer_reconnect_timeout: %d after %.2f s: %s\n", rc, secs, err);
    assert_true(rc < 0);
    assert_true(secs >= 0.9 && secs < 10);
    assert_non_null(strstr(err, "still failing after reconnect_timeout_ms 1000"));
    rn_client_consumer_close(k);
    rn_client_close(c);
}

/* `runnel consume --group g --commit-ms MS` with its stdout a pipe the test
 * reads: after `kill_at` lines runneld is killed -9, and restarted 2 s later
 * while the reading goes on. commit_ms "0" commits after every batch (the
 * commits meet the dead broker); "600000" only at the end (the Fetches do). */
static void consume_cli_case(broker_t *b, const char *commit_ms)
{
    char err[RN_ERRMSG_SIZE] = "";
    enum { N = 300000, NQ = 2 };
    broker_start(b);
    create_topic(b, "--server", b->addr, "g", "2");
    rn_client_t *c = connect_to(b);
    rn_producer_t *p;
    assert_int_equal(rn_producer_open(c, "g", NULL, &p, err), 0);
    for (int i = 1; i <= N; i++) {
        char v[256];              /* padded: many Fetches, so some meet the dead broker */
        int n = snprintf(v, sizeof v, "%d ", i);
        memset(v + n, 'x', 190);
        n += 190;
        rn_record_t r = {.key_len = -1, .value = (const uint8_t *)v, .value_len = n,
                         .timestamp = -1};
        if (rn_producer_send(p, (uint32_t)(i % NQ), &r, NULL, NULL, err) != 0)
            fail_msg("send: %s", err);
    }
    assert_int_equal(rn_producer_close(p, err), 0);
    rn_client_close(c);
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    char errf[PATH_MAX + 16];
    snprintf(errf, sizeof errf, "%s/consume.err", b->root);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        int e = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (e >= 0) dup2(e, 2);
        const char *argv[] = {"runnel", "--server", b->addr, "consume", "g", "--group", "cg",
                              "--commit-ms", commit_ms, NULL};
        execv(RN_BIN_DIR "/runnel", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    assert_non_null(f);
    uint8_t *seen = calloc(N + 1, 1);
    assert_non_null(seen);
    long prev[NQ] = {0, 0}, got = 0, kill_at = 20000 + (long)(rn_test_rng(&seed_state) % 100000);
    char line[512];
    restarter_t rs;
    while (fgets(line, sizeof line, f)) {
        long v = strtol(line, NULL, 10);
        if (v < 1 || v > N || seen[v]) fail_msg("value %ld read twice or unexpected", v);
        if (v <= prev[v % NQ]) fail_msg("%ld after %ld: out of order", v, prev[v % NQ]);
        seen[v] = 1;
        prev[v % NQ] = v;
        if (++got == kill_at) restart_later(&rs, b, 2000);  /* reading goes on meanwhile */
    }
    fclose(f);
    if (got >= kill_at) restart_join(&rs);
    int code = wait_child(pid, 30000);
    char *e = rn_test_slurp(errf, NULL);
    printf("consume --commit-ms %s: %ld lines, kill -9 after %ld, exit %d %s\n", commit_ms, got,
           kill_at, code, e);
    assert_int_equal(code, 0);
    assert_int_equal(got, N);
    free(e);
    free(seen);
    /* The group's commits survived: a second run has nothing left. */
    const char *args[] = {"--server", b->addr, "consume", "g", "--group", "cg", NULL};
    assert_int_equal(runnel(b, NULL, args), 0);
    char out[PATH_MAX + 8];
    snprintf(out, sizeof out, "%s/out", b->root);
    size_t len;
    free(rn_test_slurp(out, &len));
    assert_int_equal(len, 0);
}

static void test_consume_cli_commits_across_restart(void **state)
{
    consume_cli_case(*state, "0");
}

static void test_consume_cli_fetches_across_restart(void **state)
{
    consume_cli_case(*state, "600000");
}

int main(void)
{
    seed_state = rn_test_seed("test_reconnect");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_duplicate_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_reconnect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_cli_commits_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_cli_fetches_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_count_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_count_embedded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_produce_survives_kill9, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

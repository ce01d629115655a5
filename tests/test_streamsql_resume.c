/*
 * test_streamsql_resume.c — `streamsql --server` rides out runneld restarts
 * (server/query.c invariant 5, cli/streamsql.c invariant 10). Real runneld
 * processes on one loopback port (a free port is picked, then every start
 * passes --listen 127.0.0.1:PORT), killed with SIGKILL and started again on
 * the same data directory; the real `runnel` and `streamsql` commands.
 *
 *  - a continuous filter (--follow) over 3 queues while `runnel produce`
 *    writes, runneld restarted 3 times at seeded random points (kill -9,
 *    SIGTERM, kill -9), each once the query had resumed from the last: the rows equal an independent computation over what
 *    `runnel consume` finds in the topic (every matching record exactly
 *    once, none extra, each queue's rows in offset order); a --follow
 *    tumbling-window statement through the same restarts gives exactly the
 *    rows of the windows its frontier closed, as the bounded run computes
 *    them afterwards;
 *  - a tumbling-window statement over 3 queues whose output is held in a
 *    pipe while runneld is killed mid-way and restarted: the output is
 *    byte for byte the uninterrupted run's;
 *  - a bounded plain statement, typed into the REPL (stdin a pipe), killed
 *    mid-way the same way, with records produced after the restart: the
 *    output is still the uninterrupted run's (the resumed statement reads
 *    to the end the first run had);
 *  - a broker that never comes back: streamsql exits 1 after
 *    --reconnect-timeout-ms, with one line saying so;
 *  - a statement that cannot be resumed (WITH idle_timeout) fails on the
 *    restart, saying why; so does one whose records are gone (the topic
 *    deleted and created again while streamsql was stopped);
 *  - hostile resume tokens sent straight through the Query RPC: damaged
 *    (a flipped byte, cut short, garbage), another statement's, and 300
 *    forgeries with random bytes in the engine state and a correct CRC:
 *    each is refused with INVALID_ARGUMENT and a message, or runs as a
 *    statement; runneld stays up and answers after them;
 *  - --reconnect-timeout-ms's must-fail list (exit 2, one line);
 *  - a resumed statement broken again before its first rows: the token of
 *    its header (the one it was given: rows still to skip) resumes with no
 *    row repeated (a bug the restart test found: that header said "nothing
 *    to skip").
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

#include "batch/crc32c.h"
#include "client/rpc.h"
#include "common/error.h"
#include "common/sys.h"
#include "proto/runnel.pb-c.h"
#include "tests/util/util.h"

#define START_WAIT_MS 20000
#define FOLLOW_RECORDS 30000
#define BULK_RECORDS 200000
#define STREAM_DEF "CREATE STREAM s (k TEXT, n INTEGER, ts INTEGER) WITH (topic = 't', " \
                   "format = 'json', timestamp = 'ts')"

typedef struct broker {
    pid_t pid;
    int   port;
    char  root[PATH_MAX], data[PATH_MAX + 8], portf[PATH_MAX + 8], logf[PATH_MAX + 16];
    char  addr[64];
} broker_t;

/* ---- the broker (as tests/test_reconnect.c: one fixed port across restarts) ---- */

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
    fprintf(stderr, "---- %s ----\n%s\n", b->logf, t ? t : "");
    free(t);
}

static void broker_start(broker_t *b)
{
    unlink(b->portf);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
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
        if (exited && tries < 20) { rn_test_sleep_ms(100); continue; }   /* port still held */
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

/* SIGTERM and wait: its exit code (under ASan, a leak makes it non-zero),
 * -1 when it had to be killed or was not running. */
static int broker_stop(broker_t *b)
{
    if (b->pid <= 0) return -1;
    kill(b->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 4000; i++) {
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        rn_test_sleep_ms(5);
    }
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    b->pid = 0;
    return -1;
}

static int setup(void **state)
{
    broker_t *b = calloc(1, sizeof *b);
    if (!b || rn_test_tmpdir(b->root, sizeof b->root, "sqlresume") != 0) { free(b); return -1; }
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

/* ---- commands ------------------------------------------------------------------ */

static void path(const broker_t *b, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", b->root, name);
}

/* Run prog with argv to completion, stdin from in (NULL: none), stdout to
 * ROOT/out_name; its exit code (stderr printed when not 0). */
static int run(const broker_t *b, const char *prog, const char *const *argv, const char *in,
               const char *out_name)
{
    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    path(b, out_name, out, sizeof out);
    path(b, "run.err", err, sizeof err);
    int st = rn_test_run(prog, argv, in, out, err);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code != 0) {
        char *e = rn_test_slurp(err, NULL);
        fprintf(stderr, "%s %s: exit %d: %s", argv[0], argv[1], code, e ? e : "");
        free(e);
    }
    return code;
}

/* Start argv with stdin from in_fd (-1: /dev/null), stdout to out_fd,
 * stderr to err_path. */
static pid_t spawn(const char *prog, const char *const *argv, int in_fd, int out_fd,
                   const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (in_fd < 0) in_fd = open("/dev/null", O_RDONLY);
        dup2(in_fd, 0);
        dup2(out_fd, 1);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (e >= 0) dup2(e, 2);
        for (int fd = 3; fd < 64; fd++) close(fd);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Wait at most ms for pid: its exit code, 128 + signal, or -1 (still running). */
static int wait_child(pid_t pid, int ms)
{
    int status;
    for (int i = 0; i <= ms; i += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        rn_test_sleep_ms(5);
    }
    return -1;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; p && *p; p++) n += *p == '\n';
    return n;
}

static int count_str(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++) n++;
    return n;
}

/* Topic t with 3 queues and stream s over it, on the running broker. */
static void make_topic(broker_t *b)
{
    const char *create[] = {"runnel", "--server", b->addr, "topic", "create", "t", "--queues",
                            "3", NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/runnel", create, NULL, "create.out"), 0);
    const char *def[] = {"streamsql", "--server", b->addr, "-e", STREAM_DEF, NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/streamsql", def, NULL, "def.out"), 0);
}

/* Lines {"k":"kK","n":N,"ts":N} for N in [first, first + n), K = N % 50. */
static void write_lines(const char *file, int first, int n)
{
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    for (int i = first; i < first + n; i++)
        fprintf(f, "{\"k\":\"k%d\",\"n\":%d,\"ts\":%d}\n", i % 50, i, i);
    assert_int_equal(fclose(f), 0);
}

static void produce(broker_t *b, int first, int n)
{
    char in[PATH_MAX + 16];
    path(b, "lines.txt", in, sizeof in);
    write_lines(in, first, n);
    const char *argv[] = {"runnel", "--server", b->addr, "produce", "t", "--key-field", "k",
                          "--timestamp-field", "ts", NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/runnel", argv, in, "produce.out"), 0);
}

/* ---- a continuous filter across three restarts ---------------------------------- */

typedef struct feeder {
    int fd;                 /* the producer's stdin */
    int n;
} feeder_t;

/* FOLLOW_RECORDS lines in bursts of 250, 40 ms apart (about 5 s). */
static void *feeder_main(void *arg)
{
    feeder_t *f = arg;
    char line[128];
    for (int i = 1; i <= f->n; i++) {
        int len = snprintf(line, sizeof line, "{\"k\":\"k%d\",\"n\":%d,\"ts\":%d}\n", i % 50, i, i);
        for (int off = 0; off < len;) {
            ssize_t w = write(f->fd, line + off, (size_t)(len - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return NULL;
            off += (int)w;
        }
        if (i % 250 == 0) rn_test_sleep_ms(40);
    }
    close(f->fd);
    return NULL;
}

/* What `runnel consume --format json` shows: per record its queue, offset, n. */
typedef struct rec { int queue; long long offset; int n; } rec_t;

static int parse_consume(const char *text, rec_t *out, int cap)
{
    int k = 0;
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        if (!e) break;
        rec_t r;
        const char *v = strstr(p, "\\\"n\\\":");
        assert_true(v && v < e);
        assert_int_equal(sscanf(p, "{\"queue\":%d,\"offset\":%lld", &r.queue, &r.offset), 2);
        r.n = atoi(v + 6);
        assert_true(k < cap);
        out[k++] = r;
        p = e + 1;
    }
    return k;
}

#define WINDOW_SQL "SELECT window_start, window_end, k, count(*) AS c, sum(n) AS total FROM s " \
                   "GROUP BY TUMBLE(ts, '100ms'), k"

static char *run_whole(broker_t *b, const char *sql, const char *name);

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of text (modified in place: '\n' cut), sorted. */
static void split_lines(char *text, char ***out, int *n)
{
    int cap = count_lines(text) + 1, k = 0;
    char **v = calloc((size_t)cap, sizeof *v);
    assert_non_null(v);
    for (char *p = text; *p;) {
        char *e = strchr(p, '\n');
        if (!e) break;
        *e = '\0';
        v[k++] = p;
        p = e + 1;
    }
    qsort(v, (size_t)k, sizeof *v, cmp_str);
    *out = v;
    *n = k;
}

/* A window statement's csv (header first; window_end the second column):
 * rows ending before w into want, at w into maybe, both sorted. */
static void split_by_end(char *csv, long long w, char ***want, int *nwant, char ***maybe,
                         int *nmaybe)
{
    char **all;
    int n;
    split_lines(strchr(csv, '\n') + 1, &all, &n);
    *want = calloc((size_t)n + 1, sizeof **want);
    *maybe = calloc((size_t)n + 1, sizeof **maybe);
    assert_non_null(*want);
    assert_non_null(*maybe);
    *nwant = *nmaybe = 0;
    for (int i = 0; i < n; i++) {
        long long start, end;
        assert_int_equal(sscanf(all[i], "%lld,%lld,", &start, &end), 2);
        if (end < w) (*want)[(*nwant)++] = all[i];
        else if (end == w) (*maybe)[(*nmaybe)++] = all[i];
    }
    free(all);
}

static void follow_filter_survives_restarts(void **state)
{
    broker_t *b = *state;
    uint64_t seed = rn_test_seed("follow_filter_survives_restarts");
    broker_start(b);
    make_topic(b);
    char out[PATH_MAX + 16], err[PATH_MAX + 16], perr[PATH_MAX + 16];
    path(b, "follow.csv", out, sizeof out);
    path(b, "follow.err", err, sizeof err);
    path(b, "produce.err", perr, sizeof perr);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ofd >= 0);
    const char *q[] = {"streamsql", "--server", b->addr, "--follow", "--format", "csv", "-e",
                       "SELECT queue, offset, n FROM s WHERE n % 3 = 0", NULL};
    pid_t sq = spawn(RN_BIN_DIR "/streamsql", q, -1, ofd, err);
    close(ofd);
    rn_test_sleep_ms(300);                          /* the statement is open */

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    const char *pa[] = {"runnel", "--server", b->addr, "produce", "t", "--key-field", "k",
                        "--timestamp-field", "ts", "--linger-ms", "2", NULL};
    int devnull = open("/dev/null", O_WRONLY);
    pid_t pr = spawn(RN_BIN_DIR "/runnel", pa, pfd[0], devnull, perr);
    close(devnull);
    close(pfd[0]);
    feeder_t fd = {pfd[1], FOLLOW_RECORDS};
    pthread_t ft;
    assert_int_equal(pthread_create(&ft, NULL, feeder_main, &fd), 0);

    /* the producer is through its start (a producer that cannot reach
     * runneld when it starts fails at once, as streamsql does), and every
     * queue holds records */
    for (int i = 0; i < 4000; i++) {
        char *t = rn_test_slurp(out, NULL);
        int all = t && strstr(t, "\n0,") && strstr(t, "\n1,") && strstr(t, "\n2,");
        free(t);
        if (all) break;
        rn_test_sleep_ms(5);
    }
    /* A window statement beside it, through the same restarts; opened now,
     * every queue had records at its open, so each holds back its frontier
     * (sql.c invariant 5): none of its rows is late. */
    char wout[PATH_MAX + 16], werr[PATH_MAX + 16];
    path(b, "wfollow.csv", wout, sizeof wout);
    path(b, "wfollow.err", werr, sizeof werr);
    ofd = open(wout, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ofd >= 0);
    const char *wq[] = {"streamsql", "--server", b->addr, "--follow", "--format", "csv", "-e",
                        WINDOW_SQL, NULL};
    pid_t wsq = spawn(RN_BIN_DIR "/streamsql", wq, -1, ofd, werr);
    close(ofd);
    for (int k = 0; k < 3; k++) {                   /* seeded random points */
        rn_test_sleep_ms(100 + (int)(rn_test_rng(&seed) % 700));
        if (k == 1) assert_int_equal(broker_stop(b), 0);    /* a graceful restart too */
        else broker_kill9(b);
        rn_test_sleep_ms(100 + (int)(rn_test_rng(&seed) % 500));
        broker_start(b);
        /* the next kill once the query is back, so each one breaks it */
        for (int i = 0; i < 2000; i++) {
            char *t = rn_test_slurp(err, NULL);
            int n = count_str(t, "resumed on runneld");
            free(t);
            if (n > k) break;
            rn_test_sleep_ms(5);
        }
    }
    pthread_join(ft, NULL);
    int pc = wait_child(pr, 60000);
    if (pc != 0) {
        char *e = rn_test_slurp(perr, NULL);
        fprintf(stderr, "produce: exit %d: %s", pc, e ? e : "");
        free(e);
    }
    assert_int_equal(pc, 0);

    /* The oracle: the records the topic holds, each n once (the producer is
     * idempotent), and which of them match. */
    const char *ca[] = {"runnel", "--server", b->addr, "consume", "t", "--format", "json", NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/runnel", ca, NULL, "consume.json"), 0);
    char cpath[PATH_MAX + 16];
    path(b, "consume.json", cpath, sizeof cpath);
    char *ctext = rn_test_slurp(cpath, NULL);
    rec_t *recs = calloc(FOLLOW_RECORDS + 1, sizeof *recs);
    uint8_t *seen = calloc(FOLLOW_RECORDS + 1, 1);
    assert_non_null(recs);
    assert_non_null(seen);
    int nrec = parse_consume(ctext, recs, FOLLOW_RECORDS + 1);
    assert_int_equal(nrec, FOLLOW_RECORDS);
    long long *where = calloc(FOLLOW_RECORDS + 1, sizeof *where);   /* n -> queue*2^40+offset */
    assert_non_null(where);
    int expected = 0;
    for (int i = 0; i < nrec; i++) {
        assert_true(recs[i].n >= 1 && recs[i].n <= FOLLOW_RECORDS);
        assert_int_equal(seen[recs[i].n], 0);
        seen[recs[i].n] = 1;
        where[recs[i].n] = ((long long)recs[i].queue << 40) | recs[i].offset;
        expected += recs[i].n % 3 == 0;
    }

    /* Wait for the query to show them all, a moment more for extras, then stop it. */
    char *text = NULL;
    for (int i = 0; i < 4000; i++) {
        free(text);
        text = rn_test_slurp(out, NULL);
        if (count_lines(text) >= expected + 1) break;
        rn_test_sleep_ms(5);
    }
    rn_test_sleep_ms(300);
    kill(sq, SIGTERM);
    int sc = wait_child(sq, 10000);
    free(text);
    text = rn_test_slurp(out, NULL);
    char *etext = rn_test_slurp(err, NULL);
    if (count_lines(text) != expected + 1 || sc != 130)
        fprintf(stderr, "streamsql: exit %d, %d rows for %d expected; stderr:\n%s", sc,
                count_lines(text) - 1, expected, etext ? etext : "");
    assert_int_equal(sc, 130);
    assert_int_equal(count_lines(text), expected + 1);

    /* Every row is a matching record, once, at its queue and offset; per
     * queue in offset order. */
    memset(seen, 0, FOLLOW_RECORDS + 1);
    long long last[3] = {-1, -1, -1};
    const char *p = strchr(text, '\n') + 1;
    int rows = 0;
    while (*p) {
        int queue, n;
        long long off;
        assert_int_equal(sscanf(p, "%d,%lld,%d", &queue, &off, &n), 3);
        assert_true(n >= 1 && n <= FOLLOW_RECORDS && n % 3 == 0 && queue >= 0 && queue < 3);
        assert_int_equal(seen[n], 0);
        seen[n] = 1;
        assert_true(where[n] == (((long long)queue << 40) | off));
        assert_true(off > last[queue]);
        last[queue] = off;
        rows++;
        p = strchr(p, '\n') + 1;
    }
    assert_int_equal(rows, expected);
    /* each kill broke the stream once */
    int lost = count_str(etext, "lost runneld"), resumed = count_str(etext, "resumed on runneld");
    printf("follow: %d rows, %d resumes over 3 restarts\n", rows, resumed);
    assert_int_equal(resumed, 3);
    assert_int_equal(lost, resumed);

    /* The window statement: each queue is in event-time order, so its rows
     * are exactly the bounded run's rows of the windows closed by the
     * frontier W (the smallest, over the queues, of the largest ts): every
     * window ending before W, perhaps the one ending at W, none after. */
    long long qmax[3] = {0, 0, 0};
    for (int i = 0; i < nrec; i++)
        if (recs[i].n > qmax[recs[i].queue]) qmax[recs[i].queue] = recs[i].n;
    long long w = qmax[0] < qmax[1] ? qmax[0] : qmax[1];
    if (qmax[2] < w) w = qmax[2];
    char *bounded = run_whole(b, WINDOW_SQL, "wbounded.csv");
    char **want = NULL, **maybe = NULL;
    int nwant = 0, nmaybe = 0;
    split_by_end(bounded, w, &want, &nwant, &maybe, &nmaybe);
    char *wtext = NULL;
    for (int i = 0; i < 2000; i++) {
        free(wtext);
        wtext = rn_test_slurp(wout, NULL);
        if (count_lines(wtext) >= nwant + 1) break;
        rn_test_sleep_ms(5);
    }
    rn_test_sleep_ms(300);
    kill(wsq, SIGTERM);
    int wc = wait_child(wsq, 10000);
    free(wtext);
    wtext = rn_test_slurp(wout, NULL);
    char *wetext = rn_test_slurp(werr, NULL);
    if (wc != 130) fprintf(stderr, "window streamsql: exit %d; stderr:\n%s", wc, wetext);
    assert_int_equal(wc, 130);
    char **got = NULL;
    int ngot = 0;
    split_lines(strchr(wtext, '\n') + 1, &got, &ngot);
    int mi = 0, wi = 0, gi = 0;
    for (; gi < ngot; gi++) {                       /* sorted: want and maybe, merged */
        if (wi < nwant && !strcmp(got[gi], want[wi])) { wi++; continue; }
        while (mi < nmaybe && strcmp(maybe[mi], got[gi]) < 0) mi++;
        if (mi < nmaybe && !strcmp(got[gi], maybe[mi])) { mi++; continue; }
        fprintf(stderr, "window row not expected (or twice): %s\nstderr:\n%s", got[gi], wetext);
        fail();
    }
    if (wi != nwant)
        fprintf(stderr, "window rows: %d of %d expected; first missing: %s\nstderr:\n%s", wi,
                nwant, want[wi], wetext);
    assert_int_equal(wi, nwant);
    printf("follow window: %d rows (frontier %lld), %d resumes\n", ngot, w,
           count_str(wetext, "resumed on runneld"));
    assert_true(count_str(wetext, "resumed on runneld") >= 1);
    free(got);
    free(want);
    free(maybe);
    free(wetext);
    free(wtext);
    free(bounded);
    free(etext);
    free(text);
    free(where);
    free(seen);
    free(recs);
    free(ctext);
}

/* ---- bounded statements held in a pipe, killed mid-way -------------------------- */

/* Run sql bounded (csv) into ROOT/name: the uninterrupted result. */
static char *run_whole(broker_t *b, const char *sql, const char *name)
{
    const char *argv[] = {"streamsql", "--server", b->addr, "--format", "csv", "-e", sql, NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/streamsql", argv, NULL, name), 0);
    char p[PATH_MAX + 16];
    path(b, name, p, sizeof p);
    return rn_test_slurp(p, NULL);
}

/* Run sql again with stdout in a pipe: read `first` bytes, kill runneld -9,
 * start it again, call between() (may be NULL), read the rest. The output,
 * and the command's stderr through *err_text. */
static char *run_killed(broker_t *b, const char *sql, size_t first, void (*between)(broker_t *),
                        int repl, char **err_text)
{
    char err[PATH_MAX + 16], in[PATH_MAX + 16];
    path(b, "killed.err", err, sizeof err);
    path(b, "killed.sql", in, sizeof in);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    /* -e SQL, or the REPL reading "SQL;" from a pipe */
    const char *argv[] = {"streamsql", "--server", b->addr, "--format", "csv", repl ? NULL : "-e",
                          sql, NULL};
    int in_fd = -1;
    if (repl) {
        FILE *f = fopen(in, "w");
        assert_non_null(f);
        fprintf(f, "%s;\n", sql);
        assert_int_equal(fclose(f), 0);
        in_fd = open(in, O_RDONLY);
        assert_true(in_fd >= 0);
    }
    pid_t pid = spawn(RN_BIN_DIR "/streamsql", argv, in_fd, pfd[1], err);
    close(pfd[1]);
    if (in_fd >= 0) close(in_fd);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    int killed = 0;
    for (;;) {
        if (!killed && len >= first) {
            broker_kill9(b);
            rn_test_sleep_ms(200);
            broker_start(b);
            if (between) between(b);
            killed = 1;
        }
        if (len + 65536 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t want = killed ? 65536 : (first - len < 4096 ? first - len : 4096);
        ssize_t r = read(pfd[0], buf + len, want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    close(pfd[0]);
    buf[len] = '\0';
    int code = wait_child(pid, 20000);
    *err_text = rn_test_slurp(err, NULL);
    if (code != 0) fprintf(stderr, "streamsql: exit %d: %s", code, *err_text);
    assert_int_equal(code, 0);
    assert_true(killed);
    return buf;
}

static void bulk_data(broker_t *b)
{
    broker_start(b);
    make_topic(b);
    produce(b, 1, BULK_RECORDS);
}

static void check_same(const char *whole, const char *killed, const char *err)
{
    if (strcmp(whole, killed) != 0)
        fprintf(stderr, "outputs differ: %zu bytes uninterrupted, %zu bytes across the "
                "restart; stderr:\n%s", strlen(whole), strlen(killed), err);
    assert_string_equal(whole, killed);
    assert_int_equal(count_str(err, "resumed on runneld"), 1);
}

static void window_killed_midway_equals_whole(void **state)
{
    broker_t *b = *state;
    bulk_data(b);
    /* padded to about 17 MB, more than the transport and pipes buffer */
    const char *sql = "SELECT window_start, window_end, k, count(*) AS c, sum(n) AS total, "
                      "substr(replace(hex(zeroblob(80)), '0', 'x'), 1, 150) AS pad "
                      "FROM s GROUP BY TUMBLE(ts, '100ms'), k";
    char *whole = run_whole(b, sql, "window.csv");
    /* ts 1..N in 100 ms windows of 2 records per key: windows 0..N/100 */
    assert_int_equal(count_lines(whole), BULK_RECORDS / 2 + 2);
    char *err = NULL;
    char *killed = run_killed(b, sql, strlen(whole) / 10, NULL, 0, &err);
    check_same(whole, killed, err);
    free(err);
    free(killed);
    free(whole);
}

static void produce_more(broker_t *b) { produce(b, BULK_RECORDS + 1, 3000); }

static void bounded_killed_midway_keeps_its_end(void **state)
{
    broker_t *b = *state;
    bulk_data(b);
    const char *sql = "SELECT queue, offset, k, n, substr(replace(hex(zeroblob(80)), '0', "
                      "'x'), 1, 150) AS pad FROM s WHERE n % 2 = 1";
    char *whole = run_whole(b, sql, "plain.csv");
    assert_int_equal(count_lines(whole), BULK_RECORDS / 2 + 1);
    char *err = NULL;
    char *killed = run_killed(b, sql, strlen(whole) / 10, produce_more, 1, &err);
    check_same(whole, killed, err);
    free(err);
    free(killed);
    free(whole);
}

/* ---- giving up, and what does not resume ---------------------------------------- */

/* A --follow statement with extra args; kill runneld for good once it runs;
 * its exit code within 20 s and its stderr. */
static int follow_then_kill(broker_t *b, const char *sql, const char *timeout, int restart,
                            char **err_text)
{
    produce(b, 1, 100);
    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    path(b, "f.out", out, sizeof out);
    path(b, "f.err", err, sizeof err);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ofd >= 0);
    const char *argv[] = {"streamsql", "--server", b->addr, "--follow", "--format", "csv",
                          "--reconnect-timeout-ms", timeout, "-e", sql, NULL};
    pid_t pid = spawn(RN_BIN_DIR "/streamsql", argv, -1, ofd, err);
    close(ofd);
    for (int i = 0; i < 2000; i++) {                 /* the first rows arrived */
        char *t = rn_test_slurp(out, NULL);
        int n = count_lines(t);
        free(t);
        if (n > 1) break;
        rn_test_sleep_ms(5);
    }
    broker_kill9(b);
    if (restart) broker_start(b);
    uint64_t t0 = rn_mono_ns();
    int code = wait_child(pid, 20000);
    printf("exit %d after %llu ms\n", code, (unsigned long long)((rn_mono_ns() - t0) / 1000000));
    if (code < 0) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); }
    *err_text = rn_test_slurp(err, NULL);
    return code;
}

static void gives_up_after_timeout(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    make_topic(b);
    char *err = NULL;
    int code = follow_then_kill(b, "SELECT n FROM s", "1500", 0, &err);
    if (code != 1) fprintf(stderr, "stderr:\n%s", err);
    assert_int_equal(code, 1);
    assert_non_null(strstr(err, "gave up resuming: runneld at"));
    assert_non_null(strstr(err, "--reconnect-timeout-ms"));
    /* the reconnecting line, then the give-up line: nothing else */
    assert_int_equal(count_lines(err), 2);
    free(err);
}

static void idle_timeout_does_not_resume(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    make_topic(b);
    char *err = NULL;
    int code = follow_then_kill(b, "SELECT window_start, count(*) AS c FROM s GROUP BY "
                                "TUMBLE(ts, '10ms') WITH (idle_timeout = '1s')", "5000", 1,
                                &err);
    if (code != 1) fprintf(stderr, "stderr:\n%s", err);
    assert_int_equal(code, 1);
    assert_non_null(strstr(err, "cannot be resumed (WITH idle_timeout"));
    free(err);
}


/* The records a query had still to read are gone when it resumes (the topic
 * deleted and created again while streamsql was stopped): it fails, saying
 * so, rather than going on from somewhere else. */
static void gone_records_are_reported(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    make_topic(b);
    produce(b, 1, 300);
    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    path(b, "g.out", out, sizeof out);
    path(b, "g.err", err, sizeof err);
    int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(ofd >= 0);
    const char *argv[] = {"streamsql", "--server", b->addr, "--follow", "--format", "csv", "-e",
                          "SELECT n FROM s", NULL};
    pid_t pid = spawn(RN_BIN_DIR "/streamsql", argv, -1, ofd, err);
    close(ofd);
    for (int i = 0; i < 2000; i++) {
        char *t = rn_test_slurp(out, NULL);
        int n = count_lines(t);
        free(t);
        if (n > 300) break;
        rn_test_sleep_ms(5);
    }
    kill(pid, SIGSTOP);                              /* no resume before the topic is new */
    broker_kill9(b);
    broker_start(b);
    const char *del[] = {"runnel", "--server", b->addr, "topic", "delete", "t", NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/runnel", del, NULL, "del.out"), 0);
    const char *create[] = {"runnel", "--server", b->addr, "topic", "create", "t", "--queues",
                            "3", NULL};
    assert_int_equal(run(b, RN_BIN_DIR "/runnel", create, NULL, "create.out"), 0);
    kill(pid, SIGCONT);
    int code = wait_child(pid, 20000);
    if (code < 0) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); }
    char *e = rn_test_slurp(err, NULL);
    if (code != 1) fprintf(stderr, "exit %d; stderr:\n%s", code, e);
    assert_int_equal(code, 1);
    assert_non_null(strstr(e, "cannot resume: the topic no longer holds the records"));
    printf("%s", e);
    free(e);
}

/* The flag's must-fail list: exit 2 and the message. */
static void bad_reconnect_flag(void **state)
{
    broker_t *b = *state;
    static const struct { const char *where, *value, *msg; } cases[] = {
        {"--server", "abc", "--reconnect-timeout-ms: 'abc' is not a number of milliseconds (0 to 4294967295)"},
        {"--server", "-5", "'-5' is not a number of milliseconds"},
        {"--server", "4294967296", "'4294967296' is not a number of milliseconds"},
        {"--server", "", "'' is not a number of milliseconds"},
        {"--data", "5", "--reconnect-timeout-ms is for a server (--server HOST:PORT)"},
    };
    char out[PATH_MAX + 16], err[PATH_MAX + 16];
    path(b, "bad.out", out, sizeof out);
    path(b, "bad.err", err, sizeof err);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[] = {"streamsql", cases[i].where,
                              cases[i].where[2] == 's' ? b->addr : b->data,
                              "--reconnect-timeout-ms", cases[i].value, "-e", "SELECT 1", NULL};
        int st = rn_test_run(RN_BIN_DIR "/streamsql", argv, NULL, out, err);
        char *e = rn_test_slurp(err, NULL);
        if (!strstr(e, cases[i].msg)) fprintf(stderr, "case %zu: %s", i, e);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        assert_non_null(strstr(e, cases[i].msg));
        assert_int_equal(count_lines(e), 1);
        free(e);
    }
}

/* ---- hostile tokens -------------------------------------------------------------- */

/* Send one Query with resume = tok; 0 when it ran to its end, else the
 * error (message into err). The header's token into *first (when not NULL). */
static int query_with(rn_rpc_t *rpc, const char *sql, const uint8_t *tok, size_t n,
                      uint8_t **first, size_t *first_len, char *err)
{
    Runnel__V1__QueryRequest req = RUNNEL__V1__QUERY_REQUEST__INIT;
    req.sql = (char *)sql;
    req.resumable = 1;
    req.resume.data = (uint8_t *)tok;
    req.resume.len = n;
    rn_rpc_stream_t *st = NULL;
    int rc = rn_rpc_stream_open(rpc, RN_RPC_METHOD("Query"), &req.base, &st, err);
    while (rc == 0) {
        ProtobufCMessage *pm = NULL;
        int r = rn_rpc_stream_next(st, &runnel__v1__query_response__descriptor, &pm, NULL, err);
        if (r <= 0) { rc = r; break; }
        Runnel__V1__QueryResponse *m = (Runnel__V1__QueryResponse *)pm;
        if (first && !*first && m->resume.len) {
            *first = malloc(m->resume.len);
            assert_non_null(*first);
            memcpy(*first, m->resume.data, m->resume.len);
            *first_len = m->resume.len;
        }
        protobuf_c_message_free_unpacked(pm, NULL);
    }
    rn_rpc_stream_close(st);
    return rc;
}

static void refused(int rc, const char *err, const char *what)
{
    if (rc != RN_EINVAL) fprintf(stderr, "rc %d: %s\n", rc, err);
    assert_int_equal(rc, RN_EINVAL);
    assert_non_null(strstr(err, what));
}

static void hostile_tokens_are_refused(void **state)
{
    broker_t *b = *state;
    uint64_t seed = rn_test_seed("hostile_tokens_are_refused");
    broker_start(b);
    make_topic(b);
    produce(b, 1, 2000);
    rn_rpc_t *rpc = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_open(b->addr, &rpc, err), 0);
    const char *win = "SELECT window_start, k, count(*) AS c FROM s GROUP BY TUMBLE(ts, '100ms'), k";
    uint8_t *tok = NULL;
    size_t n = 0;
    assert_int_equal(query_with(rpc, win, NULL, 0, &tok, &n, err), 0);
    assert_non_null(tok);
    /* the real token resumes */
    assert_int_equal(query_with(rpc, win, tok, n, NULL, NULL, err), 0);
    refused(query_with(rpc, "SELECT n FROM s", tok, n, NULL, NULL, err), err,
            "belongs to another statement");
    uint8_t *bad = malloc(n + 16);
    assert_non_null(bad);
    memcpy(bad, tok, n);
    bad[n / 2] ^= 0x40;
    refused(query_with(rpc, win, bad, n, NULL, NULL, err), err, "token is damaged");
    refused(query_with(rpc, win, tok, n - 1, NULL, NULL, err), err, "token is damaged");
    refused(query_with(rpc, win, (const uint8_t *)"garbage", 7, NULL, NULL, err), err,
            "token is damaged");
    /* forgeries: random bytes past the header, the CRC made right */
    int ran = 0, refusals = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(bad, tok, n);
        size_t len = n - (size_t)(rn_test_rng(&seed) % 8);
        int flips = 1 + (int)(rn_test_rng(&seed) % 4);
        for (int k = 0; k < flips; k++)
            bad[32 + rn_test_rng(&seed) % (len - 32)] = (uint8_t)rn_test_rng(&seed);
        uint32_t crc = rn_crc32c(0, bad + 8, len - 8);
        memcpy(bad + 4, &crc, 4);
        int rc = query_with(rpc, win, bad, len, NULL, NULL, err);
        if (rc == 0) ran++;
        else {
            if (rc != RN_EINVAL && rc != RN_ECORRUPT && rc != RN_ERANGE)
                fprintf(stderr, "forgery %d: rc %d: %s\n", i, rc, err);
            assert_true(rc == RN_EINVAL || rc == RN_ECORRUPT || rc == RN_ERANGE);
            assert_true(err[0] != '\0');
            refusals++;
        }
    }
    printf("forged tokens: %d refused, %d ran\n", refusals, ran);
    /* still serving, and it shuts down cleanly */
    assert_int_equal(query_with(rpc, win, tok, n, NULL, NULL, err), 0);
    free(bad);
    free(tok);
    rn_rpc_close(rpc);
    int code = broker_stop(b);
    if (code != 0) print_log(b);
    assert_int_equal(code, 0);
}

/* ---- resuming from a resumed query's first token -------------------------------- */

/* Query sql (bounded) with resume = tok (n 0: none): the integer first
 * column of every row appended to rows[*nrows], the token of message
 * number `keep` (0: the header) into *kept, stopping after that message
 * when stop is set. */
static void query_rows(rn_rpc_t *rpc, const char *sql, const uint8_t *tok, size_t n,
                       int64_t *rows, size_t *nrows, int keep, uint8_t **kept, size_t *kept_len,
                       int stop)
{
    char err[RN_ERRMSG_SIZE];
    Runnel__V1__QueryRequest req = RUNNEL__V1__QUERY_REQUEST__INIT;
    req.sql = (char *)sql;
    req.resumable = 1;
    req.resume.data = (uint8_t *)tok;
    req.resume.len = n;
    rn_rpc_stream_t *st = NULL;
    assert_int_equal(rn_rpc_stream_open(rpc, RN_RPC_METHOD("Query"), &req.base, &st, err), 0);
    for (int i = 0;; i++) {
        ProtobufCMessage *pm = NULL;
        int r = rn_rpc_stream_next(st, &runnel__v1__query_response__descriptor, &pm, NULL, err);
        if (r < 0) fprintf(stderr, "query: %s\n", err);
        assert_true(r >= 0);
        if (r == 0) break;
        Runnel__V1__QueryResponse *m = (Runnel__V1__QueryResponse *)pm;
        for (size_t k = 0; k < m->n_rows; k++) rows[(*nrows)++] = m->rows[k]->values[0]->integer;
        int done = 0;
        if (i == keep && kept) {
            assert_true(m->resume.len > 0);
            *kept = malloc(m->resume.len);
            assert_non_null(*kept);
            memcpy(*kept, m->resume.data, m->resume.len);
            *kept_len = m->resume.len;
            done = stop;
        }
        protobuf_c_message_free_unpacked(pm, NULL);
        if (done) break;
    }
    rn_rpc_stream_cancel(st);
    rn_rpc_stream_close(st);
}

static void resume_of_a_resume(void **state)
{
    broker_t *b = *state;
    broker_start(b);
    make_topic(b);
    produce(b, 1, 20000);
    rn_rpc_t *rpc = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_open(b->addr, &rpc, err), 0);
    const char *sql = "SELECT n FROM s";
    int64_t *all = calloc(20000, sizeof *all), *rest = calloc(20000, sizeof *rest);
    assert_non_null(all);
    assert_non_null(rest);
    size_t nall = 0, nrest = 0;
    uint8_t *t1 = NULL, *h = NULL;
    size_t t1n = 0, hn = 0;
    /* the token of the first rows message: sent mid-step (batches hold more
     * records than a message's 1000 rows), so it names rows to skip */
    query_rows(rpc, sql, NULL, 0, all, &nall, 1, &t1, &t1n, 0);
    assert_int_equal(nall, 20000);
    uint64_t skip;
    memcpy(&skip, t1 + 24, 8);
    assert_true(skip > 0);
    /* resume from it, keep only the header's token, then resume from that */
    size_t none = 0;
    int64_t scratch[1];
    query_rows(rpc, sql, t1, t1n, scratch, &none, 0, &h, &hn, 1);
    assert_int_equal(none, 0);
    query_rows(rpc, sql, h, hn, rest, &nrest, -1, NULL, NULL, 0);
    assert_int_equal(nrest, 20000 - 1000);
    assert_memory_equal(rest, all + 1000, nrest * sizeof *rest);
    free(h);
    free(t1);
    free(rest);
    free(all);
    rn_rpc_close(rpc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);        /* a producer that died shows as its exit code */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(follow_filter_survives_restarts, setup, teardown),
        cmocka_unit_test_setup_teardown(window_killed_midway_equals_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(bounded_killed_midway_keeps_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(gives_up_after_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_timeout_does_not_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(gone_records_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_tokens_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_of_a_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_reconnect_flag, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

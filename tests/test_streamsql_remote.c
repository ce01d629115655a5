/*
 * test_streamsql_remote.c — `streamsql --server` against a real runneld
 * (tests/test_server.h starts it on a free loopback port): the same
 * statements run embedded on the data directory (broker stopped) and
 * remotely on the same directory (broker running) must print exactly the
 * same stdout and stderr with the same exit status — query → expected rows
 * in table, csv and json, scripts, a piped REPL, metadata statements, --from
 * and the must-fail list with its messages and carets. Then what only a
 * broker has: a --follow query receives rows produced after it started and
 * ends cleanly on Ctrl-C with the broker still serving; a broker SIGTERM
 * during a running --follow query exits 0 promptly and the client, told not
 * to resume (--reconnect-timeout-ms 0; resuming is test_streamsql_resume.c),
 * reports the shutdown; a 200,000-row result streams through the broker without
 * its memory growing with the result.
 */
#include "tests/test_server.h"

#include <poll.h>
#include <sys/types.h>

#include "tests/util/util.h"

#define STREAMSQL RN_BIN_DIR "/streamsql"
#define RUNNEL    RN_BIN_DIR "/runnel"
#define MAX_ARGS  24

typedef struct fx {
    srv_t  s;                  /* s.data is the data directory of both modes */
    char   target[64];
    char   in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
    char  *out_text, *err_text;
} fx_t;

/* Text files; tests/util does the work. */
static char *slurp(const char *path) { return rn_test_slurp(path, NULL); }

static void write_file(const char *path, const char *data)
{
    rn_test_write_file(path, data, strlen(data));
}

/* Start prog: "--data DIR" (remote 0) or "--server HOST:PORT" (remote 1),
 * then args; stdin from input (NULL: /dev/null); stdout to out_fd when >= 0,
 * else to f->out. */
static pid_t start(fx_t *f, const char *prog, int remote, const char *input, int out_fd,
                   const char *const *args)
{
    const char *argv[MAX_ARGS + 4];
    int n = 0;
    argv[n++] = prog;
    argv[n++] = remote ? "--server" : "--data";
    argv[n++] = remote ? f->target : f->s.data;
    for (int i = 0; args[i]; i++) {
        assert_true(n < MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    if (input) write_file(f->in, input);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(input ? f->in : "/dev/null", O_RDONLY);
        int out = out_fd >= 0 ? out_fd : open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(f->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0); dup2(out, 1); dup2(err, 2);
        unsetenv("RUNNEL_DATA");
        unsetenv("RUNNEL_SERVER");
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int finish(fx_t *f, pid_t pid)
{
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(f->out_text);
    free(f->err_text);
    f->out_text = slurp(f->out);
    f->err_text = slurp(f->err);
    if (WIFSIGNALED(status)) fail_msg("died of signal %d; stderr: %s", WTERMSIG(status), f->err_text);
    return WEXITSTATUS(status);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define RUN(f, prog, remote, input, ...) \
    finish((f), start((f), (prog), (remote), (input), -1, ARGS(__VA_ARGS__)))

static void ok(fx_t *f, int rc)
{
    if (rc != 0) fail_msg("exit %d; stderr: %s", rc, f->err_text);
}

static const char records[] =
    "{\"at\":1000,\"level\":\"INFO\",\"svc\":\"api\",\"lat\":10}\n"
    "{\"at\":2000,\"level\":\"WARN\",\"svc\":\"api\",\"lat\":30}\n"
    "{\"at\":3000,\"level\":\"INFO\",\"svc\":\"db,x\",\"lat\":5.5}\n"
    "{\"at\":12000,\"level\":\"INFO\",\"svc\":\"api\",\"lat\":\"slow\"}\n"
    "{\"at\":13000,\"level\":\"ERROR\",\"svc\":\"caf\xc3\xa9\",\"lat\":7}\n";

/* The data directory, filled embedded; the broker is not started. */
static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    srv_t *s = &f->s;
    snprintf(s->root, sizeof s->root, "/tmp/rn-sqlrem-XXXXXX");
    if (!mkdtemp(s->root)) { free(f); return -1; }
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    snprintf(s->portf, sizeof s->portf, "%s/port", s->root);
    snprintf(s->logf, sizeof s->logf, "%s/runneld.log", s->root);
    snprintf(s->fsync, sizeof s->fsync, "group");
    s->max_batch = SRV_MAX_BATCH;
    snprintf(f->in, sizeof f->in, "%s/stdin", s->root);
    snprintf(f->out, sizeof f->out, "%s/stdout", s->root);
    snprintf(f->err, sizeof f->err, "%s/stderr", s->root);
    *state = f;
    ok(f, RUN(f, RUNNEL, 0, NULL, "topic", "create", "logs", "--queues", "1"));
    ok(f, RUN(f, RUNNEL, 0, NULL, "topic", "create", "empty", "--queues", "2"));
    ok(f, RUN(f, RUNNEL, 0, records, "produce", "logs", "--queue", "0"));
    ok(f, RUN(f, STREAMSQL, 0, NULL, "-e", "CREATE STREAM l (at INTEGER, level TEXT, svc TEXT, "
                                           "lat REAL) WITH (topic = 'logs', timestamp = 'at')"));
    ok(f, RUN(f, RUNNEL, 0, NULL, "topic", "create", "tsj", "--queues", "1"));
    ok(f, RUN(f, RUNNEL, 0, "{\"ts\":1000,\"svc\":\"api\"}\n{\"svc\":\"db\",\"ts\":12000}\n",
              "produce", "tsj", "--queue", "0"));
    return 0;
}

static void broker_start(fx_t *f)
{
    srv_start(&f->s);
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", f->s.port);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    free(f->out_text);
    free(f->err_text);
    srv_t *s = malloc(sizeof *s);          /* srv_teardown frees it */
    if (!s) return -1;
    *s = f->s;
    free(f);
    *state = s;
    return srv_teardown(state);
}

/* ---- the same statements both ways ------------------------------------------- */

typedef struct outcome {
    int   code;
    char *out, *err;
} outcome_t;

/* One invocation: flags, then the statement(s) as -e, or as stdin (REPL)
 * when repl is set. */
typedef struct inv {
    const char *fmt;           /* --format value, NULL: default (table) */
    const char *from;          /* --from value or NULL */
    const char *sql;
    int         repl;
    int         want;          /* expected exit status */
} inv_t;

static const inv_t cases[] = {
    /* query → rows, every format */
    {"csv", NULL, "SELECT window_start, window_end, svc, count(*) AS n, avg(lat) AS a FROM l "
                  "GROUP BY TUMBLE(ts, '10s'), svc", 0, 0},
    {"json", NULL, "SELECT window_start, svc, count(*) AS n, max(lat) FROM l GROUP BY "
                   "HOP(ts, '10s', '5s'), svc HAVING n > 0", 0, 0},
    {NULL, NULL, "SELECT window_start, window_end, svc, count(*) AS n, avg(lat) AS a FROM l "
                 "GROUP BY TUMBLE(ts, '10s'), svc", 0, 0},
    {NULL, NULL, "SELECT queue, offset, ts, key, value FROM logs", 0, 0},
    {"json", NULL, "SELECT svc, lat, lat * 2.5 AS x, NULL AS z, x'00ff' AS b, "
                   "json_extract(value, '$.level') AS lv, CAST(x'61006263ff' AS TEXT) AS t, "
                   "-9223372036854775807 - 1 AS mn, 1e308 * 10 AS inf FROM l WHERE lat > 6", 0, 0},
    {"csv", NULL, "SELECT svc, count(DISTINCT level) AS d, first(lat) AS f, last(lat) AS la FROM l "
                  "GROUP BY SESSION(ts, '5s'), svc EMIT CHANGES", 0, 0},
    {"csv", "@12000", "SELECT svc FROM l", 0, 0},
    {"csv", "latest", "SELECT svc FROM l", 0, 0},
    {"csv", NULL, "SELECT * FROM empty", 0, 0},
    {NULL, NULL, "EXPLAIN SELECT svc FROM l WHERE lat > 1", 0, 0},
    /* metadata statements and scripts, and a piped REPL going on after a failure */
    {"csv", NULL, "SHOW STREAMS; DESCRIBE l; CREATE STREAM m (a INTEGER) WITH (topic = 'logs'); "
                  "SHOW STREAMS; DROP STREAM m; SHOW STREAMS", 0, 0},
    {"csv", NULL, "SELECT nope FROM l;\nSELECT svc\n  FROM l\n  LIMIT 2;\nSHOW STREAMS;\nquit\n", 1, 1},
    /* must fail: same message, same caret, non-zero exit */
    {NULL, NULL, "SELECT lvl FROM l", 0, 1},
    {NULL, NULL, "SELECT svc FROM l\nGROUP BY TUMBLE(level, '1s')", 0, 1},
    {NULL, NULL, "SELECT count(*) FROM l GROUP BY TUMBLE(ts, 'soon')", 0, 1},
    {NULL, NULL, "SELECT svc FROM nowhere", 0, 1},
    {NULL, NULL, "SELECT svc FROM l WHERE", 0, 1},
    {NULL, NULL, "DROP STREAM nope", 0, 1},
    {NULL, NULL, "CREATE STREAM l (a INTEGER) WITH (topic = 'logs')", 0, 1},
    {"csv", NULL, "SELECT 1 AS a FROM l LIMIT 1; SELEKT; SELECT 2 AS b FROM l LIMIT 1", 0, 1},
    {NULL, "checkpoint:nope", "SELECT 1 FROM logs", 0, 1},
    /* a JSON field named ts: the stream's event time, the column ts */
    {"csv", NULL, "CREATE STREAM lt (ts INTEGER, svc TEXT) WITH (topic = 'tsj', timestamp = "
                  "'ts'); SELECT * FROM lt; SELECT window_start, svc, count(*) AS n FROM lt "
                  "GROUP BY TUMBLE(ts, '10s'), svc; DESCRIBE lt; DROP STREAM lt", 0, 0},
    {NULL, NULL, "CREATE STREAM lt (ts TEXT) WITH (topic = 'tsj')", 0, 1},
    /* streamsql's functions, a stored SQL function, templates, the new aggregates */
    {"csv", NULL, "CREATE FUNCTION rfn(s TEXT) RETURNS TEXT AS 'regexp_replace(s, ''[aeiou]'', "
                  "''*'')'; SELECT rfn(svc) AS r, mask_ip('10.1.2.3') AS ip, svc REGEXP '^a' AS "
                  "re, date_format(ts, '%H:%M:%S') AS t FROM l; SELECT window_start, "
                  "stddev_pop(lat) AS sd, approx_count_distinct(svc) AS d, count(*) FILTER "
                  "(WHERE lat > 6) AS c FROM TABLE(TUMBLE(TABLE l, DESCRIPTOR(ts), INTERVAL '10' "
                  "SECOND)) GROUP BY window_start, window_end; DROP FUNCTION rfn", 0, 0},
};
#define NCASES (sizeof cases / sizeof cases[0])

static void run_case(fx_t *f, int remote, const inv_t *c, outcome_t *o)
{
    const char *args[10];
    int n = 0;
    if (c->fmt) { args[n++] = "--format"; args[n++] = c->fmt; }
    if (c->from) { args[n++] = "--from"; args[n++] = c->from; }
    if (!c->repl) { args[n++] = "-e"; args[n++] = c->sql; }
    args[n] = NULL;
    o->code = finish(f, start(f, STREAMSQL, remote, c->repl ? c->sql : NULL, -1, args));
    o->out = strdup(f->out_text);
    o->err = strdup(f->err_text);
    assert_non_null(o->out);
    assert_non_null(o->err);
}

static void test_same_as_embedded(void **state)
{
    fx_t *f = *state;
    outcome_t emb[NCASES];
    for (size_t i = 0; i < NCASES; i++) {
        run_case(f, 0, &cases[i], &emb[i]);
        if (emb[i].code != cases[i].want)
            fail_msg("embedded case %zu exit %d, want %d: %s", i, emb[i].code, cases[i].want,
                     emb[i].err);
    }
    /* the statements above changed metadata: replay them to the same state */
    broker_start(f);
    for (size_t i = 0; i < NCASES; i++) {
        outcome_t rem;
        run_case(f, 1, &cases[i], &rem);
        if (rem.code != emb[i].code || strcmp(rem.out, emb[i].out) || strcmp(rem.err, emb[i].err))
            fail_msg("case %zu (%s) differs:\nembedded exit %d\n%s%s\nremote exit %d\n%s%s", i,
                     cases[i].sql, emb[i].code, emb[i].out, emb[i].err, rem.code, rem.out,
                     rem.err);
        free(rem.out);
        free(rem.err);
    }
    /* spot checks that the comparison compared something */
    assert_string_equal(emb[0].out, "window_start,window_end,svc,n,a\n0,10000,api,2,20.0\n"
                                    "0,10000,\"db,x\",1,5.5\n10000,20000,caf\xc3\xa9,1,7.0\n");
    assert_non_null(strstr(emb[0].err, "1 rejected (first: topic 'logs' queue 0 offset 3"));
    assert_non_null(strstr(emb[2].out, "1970-01-01T00:00:10.000Z  1970-01-01T00:00:20.000Z"));
    /* bytes that are not UTF-8 print losslessly, in base64 under NAME_b64 */
    assert_non_null(strstr(emb[4].out, "\"b_b64\":\"AP8=\""));
    assert_non_null(strstr(emb[4].out, "\"t_b64\":\"YQBiY/8=\""));
    assert_non_null(strstr(emb[12].err, "\n  SELECT lvl FROM l\n         ^\n"));
    assert_non_null(strstr(emb[13].err, "\n  GROUP BY TUMBLE(level, '1s')\n                  ^\n"));
    assert_non_null(strstr(emb[15].err, "unknown stream or topic 'nowhere'"));
    assert_string_equal(emb[21].out,
                        "queue,offset,ts,key,svc,value\n"
                        "0,0,1000,,api,\"{\"\"ts\"\":1000,\"\"svc\"\":\"\"api\"\"}\"\n"
                        "0,1,12000,,db,\"{\"\"svc\"\":\"\"db\"\",\"\"ts\"\":12000}\"\n"
                        "window_start,svc,n\n0,api,1\n10000,db,1\n"
                        "column,type,source\nqueue,INTEGER,logical queue\n"
                        "offset,INTEGER,record offset in its queue\n"
                        "ts,INTEGER,event time: field 'ts' (ms)\nkey,TEXT,record key\n"
                        "svc,TEXT,json field of topic 'tsj'\nvalue,TEXT,record value\n");
    assert_non_null(strstr(emb[22].err, "a field named ts is the stream's event time"));
    if (!strstr(emb[23].out, "r,ip,re,t\n*p*,10.1.2.0,1,00:00:01\n"))
        fail_msg("functions: %s", emb[23].out);
    for (size_t i = 0; i < NCASES; i++) {
        free(emb[i].out);
        free(emb[i].err);
    }
    served_still(&f->s);
}

/* A script statement holding a NUL byte is refused the same way both ways,
 * with a caret at the NUL: remote, it is never sent cut short at the NUL
 * (where it would run as "SELECT svc FROM l"). */
static void test_nul_in_script(void **state)
{
    fx_t *f = *state;
    char file[PATH_MAX + 8];
    snprintf(file, sizeof file, "%s/nul.sql", f->s.root);
    static const char text[] = "SHOW STREAMS;\nSELECT svc FROM l\0 WHERE lat > 6;";
    rn_test_write_file(file, text, sizeof text - 1);
    int emb = RUN(f, STREAMSQL, 0, NULL, "--format", "csv", "-f", file);
    char *emb_out = strdup(f->out_text), *emb_err = strdup(f->err_text);
    assert_non_null(emb_out);
    assert_non_null(emb_err);
    broker_start(f);
    int rem = RUN(f, STREAMSQL, 1, NULL, "--format", "csv", "-f", file);
    assert_int_equal(emb, 1);
    assert_int_equal(rem, 1);
    assert_non_null(strstr(emb_out, "\nl,logs,json,at,"));      /* the first statement ran */
    assert_string_equal(f->out_text, emb_out);
    assert_string_equal(f->err_text, emb_err);
    assert_string_equal(emb_err, "streamsql: a NUL byte in the statement at offset 17: SQL is "
                                 "text\n  SELECT svc FROM l  WHERE lat > 6\n"
                                 "                   ^\n");
    free(emb_out);
    free(emb_err);
    served_still(&f->s);
}

/* RUNNEL_SERVER is used like `runnel` does; both variables set is refused. */
static void test_environment(void **state)
{
    fx_t *f = *state;
    broker_start(f);
    setenv("RUNNEL_SERVER", f->target, 1);
    const char *argv[] = {STREAMSQL, "--format", "csv", "-e", "SELECT count(*) AS n FROM logs",
                          NULL};
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(f->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(f->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || err < 0) _exit(126);
        dup2(out, 1); dup2(err, 2);
        unsetenv("RUNNEL_DATA");
        execv(STREAMSQL, (char *const *)argv);
        _exit(127);
    }
    ok(f, finish(f, pid));
    assert_string_equal(f->out_text, "n\n5\n");
    unsetenv("RUNNEL_SERVER");
    /* --data and --server together */
    const char *both[] = {"--server", f->target, "-e", "SELECT 1 FROM logs", NULL};
    assert_int_equal(finish(f, start(f, STREAMSQL, 0, NULL, -1, both)), 2);
    assert_non_null(strstr(f->err_text, "give one of --data DIR and --server HOST:PORT"));
    /* a broker that is not there */
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", free_port());
    assert_int_equal(RUN(f, STREAMSQL, 1, NULL, "-e", "SELECT 1 FROM logs"), 1);
    assert_non_null(strstr(f->err_text, "streamsql: cannot reach 127.0.0.1:"));
}

/* Wait (at most 10 s) until the file holds `want`. */
static int wait_for_text(const char *path, const char *want)
{
    for (int i = 0; i < 1000; i++) {
        char *t = slurp(path);
        int found = strstr(t, want) != NULL;
        free(t);
        if (found) return 1;
        usleep(10000);
    }
    return 0;
}

/* --follow receives rows produced after it started; Ctrl-C ends it (130)
 * and the broker keeps serving. */
static void test_follow_then_cancel(void **state)
{
    fx_t *f = *state;
    broker_start(f);
    pid_t pid = start(f, STREAMSQL, 1, NULL, -1,
                      ARGS("--follow", "--format", "csv", "-e", "SELECT svc, lat FROM l WHERE lat > 8"));
    if (!wait_for_text(f->out, "api,30.0\n")) fail_msg("the existing rows did not arrive");
    /* produced through the broker while the query runs */
    fx_t g = *f;                      /* other output files: the query still writes f's */
    g.out_text = g.err_text = NULL;
    snprintf(g.out, sizeof g.out, "%s/stdout-produce", f->s.root);
    snprintf(g.err, sizeof g.err, "%s/stderr-produce", f->s.root);
    ok(&g, RUN(&g, RUNNEL, 1, "{\"at\":20000,\"level\":\"INFO\",\"svc\":\"late\",\"lat\":99}\n",
               "produce", "logs", "--queue", "0"));
    free(g.out_text);
    free(g.err_text);
    if (!wait_for_text(f->out, "late,99.0\n")) fail_msg("the new row did not arrive");
    kill(pid, SIGINT);
    assert_int_equal(finish(f, pid), 130);
    assert_string_equal(f->out_text, "svc,lat\napi,10.0\napi,30.0\nlate,99.0\n");
    /* the broker stopped the query and still serves, queries included */
    served_still(&f->s);
    ok(f, RUN(f, STREAMSQL, 1, NULL, "--format", "csv", "-e", "SELECT count(*) AS n FROM logs"));
    assert_string_equal(f->out_text, "n\n6\n");
    char *log = slurp(f->s.logf);
    assert_non_null(strstr(log, "Query: CANCELLED"));
    free(log);
}

/* SIGTERM while a --follow query runs: the broker exits 0 at once, the
 * client is told and exits 1. */
static void test_shutdown_during_follow(void **state)
{
    fx_t *f = *state;
    broker_start(f);
    pid_t pid = start(f, STREAMSQL, 1, NULL, -1,
                      ARGS("--follow", "--reconnect-timeout-ms", "0", "--format", "csv", "-e",
                           "SELECT svc FROM l"));
    if (!wait_for_text(f->out, "api\n")) fail_msg("rows did not arrive");
    rn_rpc_close(f->s.rpc);
    f->s.rpc = NULL;
    uint64_t t0 = rn_mono_ns();
    int code = srv_kill_wait(&f->s, SIGTERM);
    uint64_t ms = (rn_mono_ns() - t0) / 1000000u;
    if (code != 0) srv_print_log(&f->s);
    assert_int_equal(code, 0);
    assert_true(ms < 3000);        /* not the 10 s grace period */
    assert_int_equal(finish(f, pid), 1);
    assert_non_null(strstr(f->err_text, "the broker is shutting down"));
    assert_string_equal(f->out_text, "svc\napi\napi\n\"db,x\"\ncaf\xc3\xa9\n");
}

static long vm_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    long kb = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(fp);
    return kb;
}

/* 200,000 rows of 600 bytes (about 120 MB) stream through the broker; its
 * peak memory grows by far less than the result. */
static void test_large_result_bounded(void **state)
{
    fx_t *f = *state;
    enum { ROWS = 200000 };
    size_t cap = (size_t)ROWS * 12 + 1;
    char *in = malloc(cap), *p = in;
    assert_non_null(in);
    for (int i = 0; i < ROWS; i++) p += sprintf(p, "%d\n", i);
    ok(f, RUN(f, RUNNEL, 0, NULL, "topic", "create", "big", "--queues", "1"));
    ok(f, RUN(f, RUNNEL, 0, in, "produce", "big", "--queue", "0"));
    free(in);
    broker_start(f);
    ok(f, RUN(f, STREAMSQL, 1, NULL, "--format", "csv", "-e", "SELECT count(*) AS n FROM big"));
    assert_string_equal(f->out_text, "n\n200000\n");
    long before = vm_hwm_kb(f->s.pid);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = start(f, STREAMSQL, 1, NULL, fds[1],
                      ARGS("--format", "csv", "-e",
                           "SELECT offset, value || substr(replace(hex(zeroblob(300)), '0', 'x'), "
                           "1, 590) AS v FROM big"));
    close(fds[1]);
    char buf[65536];
    uint64_t lines = 0, bytes = 0, sum = 0;
    ssize_t n;
    long cur = 0;
    int col0 = 1;
    while ((n = read(fds[0], buf, sizeof buf)) != 0) {
        if (n < 0) { assert_int_equal(errno, EINTR); continue; }
        bytes += (uint64_t)n;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') { lines++; sum += (uint64_t)cur; cur = 0; col0 = 1; }
            else if (buf[i] == ',') col0 = 0;
            else if (col0 && buf[i] >= '0' && buf[i] <= '9') cur = cur * 10 + (buf[i] - '0');
        }
    }
    close(fds[0]);
    ok(f, finish(f, pid));
    assert_int_equal(lines, ROWS + 1);                         /* header + every row */
    assert_int_equal(sum, (uint64_t)ROWS * (ROWS - 1) / 2);    /* offsets 0..199999, once each */
    assert_true(bytes > (uint64_t)ROWS * 590);
    long after = vm_hwm_kb(f->s.pid);
    fprintf(stderr, "runneld peak RSS %ld kB before, %ld kB after streaming %llu bytes\n",
            before, after, (unsigned long long)bytes);
    if (after - before > 48 * 1024)
        fail_msg("runneld peak RSS grew by %ld kB for a %llu-byte result", after - before,
                 (unsigned long long)bytes);
}

int main(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* ASan's quarantine keeps freed memory resident: keep it small so the
     * memory bound measures the broker, not the quarantine. */
    const char *a = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=4", a ? a : "", a && *a ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_as_embedded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_script, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_then_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_during_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_result_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

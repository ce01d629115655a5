/*
 * test_etl_server.c — pipelines inside runneld: `--pipelines FILE` (a SQL
 * script of definitions, applied idempotently at every start; a missing file
 * or a failing statement stops runneld with FILE:LINE:COLUMN; a changed
 * definition is reported), the same file with `runnel pipeline run -f`, the
 * pipeline RPCs over loopback gRPC
 * (create with bad SQL refused, create/get/list/pause/resume/drop), and
 * SIGTERM stopping the pipelines with a final checkpoint: after it the sink
 * holds exactly the rows the filter passes.
 */
#include "tests/test_server.h"

#include "etl/etl.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"
#include "tests/util/util.h"

#include <sys/wait.h>

#define NREC 400

/* runneld on s->data with --pipelines file (srv_start's readiness rule). */
static void start_with(srv_t *s, const char *file)
{
    unlink(s->portf);
    const char *ar = getuid() == 0 ? "--allow-root" : NULL;   /* NULL: the list ends */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(s->logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        execl(RN_BIN_DIR "/runneld", "runneld", "--data", s->data, "--listen", "127.0.0.1:0",
              "--port-file", s->portf, "--pipelines", file, ar, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    s->port = 0;
    for (int i = 0; i < START_WAIT_MS / 10 && s->port == 0; i++) {
        FILE *f = fopen(s->portf, "r");
        if (f) {
            if (fscanf(f, "%d", &s->port) != 1) s->port = 0;
            fclose(f);
        }
        if (s->port == 0) usleep(10000);
    }
    if (s->port == 0) { srv_print_log(s); fail_msg("runneld did not start"); }
    char target[64], err[RN_ERRMSG_SIZE];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    assert_int_equal(rn_rpc_open(target, &s->rpc, err), 0);
}

/* The input: topic "in" (2 queues), stream ev, NREC records, every 50th not
 * JSON; returns how many the filter lat < 500 passes. */
static int prepare(const char *data)
{
    char err[RN_ERRMSG_SIZE];
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    rn_datadir_t *d = NULL;
    assert_int_equal(rn_datadir_open(data, &o, &d, err), 0);
    assert_int_equal(rn_datadir_topic_create(d, "in", 2, NULL, err), 0);
    const char *cs = "CREATE STREAM ev (svc TEXT, lat INTEGER) WITH (topic = 'in', format = 'json')";
    rn_sql_t *q = NULL;
    assert_int_equal(rn_sql_open(d, cs, strlen(cs), NULL, &q, NULL, err), 0);
    assert_int_equal(rn_sql_run(q, err), 0);
    rn_sql_close(q);
    int pass = 0;
    static char vals[NREC][64];
    for (uint32_t qi = 0; qi < 2; qi++) {
        rn_batch_builder_t b;
        rn_batch_opts_t bo;
        rn_batch_opts_default(&bo);
        assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
        for (int i = (int)qi; i < NREC; i += 2) {
            int lat = (i * 37) % 1000;
            if (i % 50 == 3) snprintf(vals[i], sizeof vals[i], "oops %d", i);
            else snprintf(vals[i], sizeof vals[i], "{\"svc\":\"s%d\",\"lat\":%d}", i % 4, lat);
            pass += i % 50 != 3 && lat < 500;
            rn_record_t r = {.timestamp = 1700000000000LL + i, .key_len = -1,
                             .value = (const uint8_t *)vals[i],
                             .value_len = (int32_t)strlen(vals[i])};
            assert_int_equal(rn_batch_builder_add(&b, &r), 0);
        }
        const uint8_t *bytes;
        size_t len;
        int64_t base;
        uint64_t ticket;
        rn_datadir_queue_t dq;
        assert_int_equal(rn_batch_builder_finish(&b, &bytes, &len), 0);
        assert_int_equal(rn_datadir_queue_open(d, "in", qi, &dq, err), 0);
        assert_int_equal(rn_datadir_append(d, &dq, bytes, len, &base, &ticket, err), 0);
        assert_int_equal(rn_datadir_wait(d, ticket), 0);
        rn_datadir_queue_close(&dq);
        rn_batch_builder_destroy(&b);
    }
    assert_int_equal(rn_datadir_close(d), 0);
    return pass;
}

static Runnel__V1__PipelineStatus *get(srv_t *s, const char *name, int want_status)
{
    Runnel__V1__PipelineRequest pr = RUNNEL__V1__PIPELINE_REQUEST__INIT;
    pr.name = (char *)name;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st = 0;
    int rc = rn_rpc_call(s->rpc, "/runnel.v1.Runnel/GetPipeline", &pr.base,
                         &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, &st, err);
    if (want_status == 0 && rc != 0) fail_msg("GetPipeline %s: %s", name, err);
    if (want_status != 0) {
        assert_true(rc < 0);
        assert_int_equal(st, want_status);
        return NULL;
    }
    return (Runnel__V1__PipelineStatus *)m;
}

static Runnel__V1__PipelineStatus *named_call(srv_t *s, const char *method, const char *name)
{
    Runnel__V1__PipelineRequest pr = RUNNEL__V1__PIPELINE_REQUEST__INIT;
    pr.name = (char *)name;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st = 0;
    if (rn_rpc_call(s->rpc, method, &pr.base, &runnel__v1__pipeline_status__descriptor, &m,
                    CALL_MS, &st, err) != 0)
        fail_msg("%s %s: %s", method, name, err);
    return (Runnel__V1__PipelineStatus *)m;
}

/* Run `runnel ARGS...`; its exit status, stdout in out (caller frees). */
static int cli(srv_t *s, char **out, const char *const *argv)
{
    char o[PATH_MAX + 16], e[PATH_MAX + 16];
    snprintf(o, sizeof o, "%s/cli.out", s->root);
    snprintf(e, sizeof e, "%s/cli.err", s->root);
    int st = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, o, e);
    assert_true(st >= 0 && WIFEXITED(st));
    char *text = rn_test_slurp(o, NULL), *errs = rn_test_slurp(e, NULL);
    size_t n = strlen(text);
    text = realloc(text, n + strlen(errs) + 1);
    assert_non_null(text);
    memcpy(text + n, errs, strlen(errs) + 1);     /* stdout then stderr */
    free(errs);
    *out = text;
    return WEXITSTATUS(st);
}

/* 1 once process pid catches signal sig (/proc/PID/status SigCgt), 0
 * after ms milliseconds or when it ended. */
static int caught_signal(pid_t pid, int sig, int ms)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    for (int waited = 0; waited < ms; waited += 10) {
        FILE *f = fopen(path, "r");
        if (!f) return 0;
        unsigned long long mask = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "SigCgt: %llx", &mask) == 1) break;
        fclose(f);
        if (mask & (1ull << (sig - 1))) return 1;
        usleep(10000);
    }
    return 0;
}

static void test_pipelines_in_runneld(void **state)
{
    srv_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    *state = s;
    snprintf(s->root, sizeof s->root, "/tmp/rn-etlsrv-XXXXXX");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    snprintf(s->portf, sizeof s->portf, "%s/port", s->root);
    snprintf(s->logf, sizeof s->logf, "%s/runneld.log", s->root);
    int pass = prepare(s->data);
    char file[PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/pipelines.sql", s->root);
    const char *text = "-- the input, as declared before: unchanged\n"
                       "CREATE STREAM ev (svc TEXT, lat INTEGER) WITH (topic = 'in', "
                       "format = 'json');\n"
                       "/* the fast requests */\n"
                       "CREATE PIPELINE good AS INSERT INTO low SELECT svc, lat FROM ev WHERE "
                       "lat < 500 WITH (checkpoint_interval = '50ms');\n";
    rn_test_write_file(file, text, strlen(text));
    start_with(s, file);

    /* the good one runs: its checkpointed count reaches the input */
    Runnel__V1__PipelineStatus *p = NULL;
    for (int i = 0; i < 500; i++) {
        p = get(s, "good", 0);
        if (p->records_in == NREC) break;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        p = NULL;
        usleep(20000);
    }
    assert_non_null(p);
    assert_string_equal(p->state, "running");
    assert_int_equal(p->records_out, (uint64_t)pass);
    assert_int_equal(p->errors, NREC / 50);
    assert_int_equal(p->n_lag, 2);
    assert_int_equal(p->lag[0]->lag, 0);
    assert_non_null(strstr(p->sql, "CREATE PIPELINE good"));
    protobuf_c_message_free_unpacked(&p->base, NULL);

    /* create: bad SQL refused with the SQL error, a good one starts */
    char err[RN_ERRMSG_SIZE] = "";
    int st = 0;
    ProtobufCMessage *m = NULL;
    Runnel__V1__CreatePipelineRequest cp = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
    cp.sql = "CREATE PIPELINE p2 AS INSERT INTO y SELECT nope FROM ev";
    assert_true(rn_rpc_call(s->rpc, "/runnel.v1.Runnel/CreatePipeline", &cp.base,
                            &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, &st, err) < 0);
    assert_int_equal(st, 3);
    assert_non_null(strstr(err, "unknown column 'nope'"));
    cp.sql = "CREATE PIPELINE p2 AS INSERT INTO y SELECT svc FROM ev";
    if (rn_rpc_call(s->rpc, "/runnel.v1.Runnel/CreatePipeline", &cp.base,
                    &runnel__v1__pipeline_status__descriptor, &m, CALL_MS, &st, err) != 0)
        fail_msg("CreatePipeline: %s", err);
    assert_string_equal(((Runnel__V1__PipelineStatus *)m)->state, "running");
    protobuf_c_message_free_unpacked(m, NULL);

    Runnel__V1__ListPipelinesRequest lp = RUNNEL__V1__LIST_PIPELINES_REQUEST__INIT;
    assert_int_equal(rn_rpc_call(s->rpc, "/runnel.v1.Runnel/ListPipelines", &lp.base,
                                 &runnel__v1__list_pipelines_response__descriptor, &m, CALL_MS,
                                 &st, err), 0);
    Runnel__V1__ListPipelinesResponse *l = (void *)m;
    assert_int_equal(l->n_pipelines, 2);
    assert_string_equal(l->pipelines[0]->name, "good");
    assert_string_equal(l->pipelines[1]->name, "p2");
    protobuf_c_message_free_unpacked(m, NULL);

    /* Its runner's open writes the first checkpoint; a pause that came before
     * the runner had started would stop it with none, so wait for it. */
    for (int i = 0;; i++) {
        p = named_call(s, "/runnel.v1.Runnel/GetPipeline", "p2");
        int64_t ck = p->last_checkpoint_ms;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        if (ck > 0) break;
        if (i == 1000) fail_msg("pipeline p2 wrote no checkpoint within 10 s of its start");
        usleep(10000);
    }
    p = named_call(s, "/runnel.v1.Runnel/PausePipeline", "p2");
    assert_string_equal(p->state, "paused");
    assert_true(p->last_checkpoint_ms > 0);       /* its final checkpoint */
    protobuf_c_message_free_unpacked(&p->base, NULL);
    p = named_call(s, "/runnel.v1.Runnel/ResumePipeline", "p2");
    assert_string_equal(p->state, "running");
    protobuf_c_message_free_unpacked(&p->base, NULL);
    Runnel__V1__PipelineRequest pr = RUNNEL__V1__PIPELINE_REQUEST__INIT;
    pr.name = "p2";
    assert_int_equal(rn_rpc_call(s->rpc, "/runnel.v1.Runnel/DropPipeline", &pr.base,
                                 &runnel__v1__drop_pipeline_response__descriptor, &m, CALL_MS,
                                 &st, err), 0);
    protobuf_c_message_free_unpacked(m, NULL);
    get(s, "p2", 5);

    /* the command line through the broker */
    char addr[64], *out = NULL;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s->port);
    const char *st_args[] = {"runnel", "--server", addr, "pipeline", "status", "good", NULL};
    assert_int_equal(cli(s, &out, st_args), 0);
    assert_non_null(strstr(out, "state: running"));
    assert_non_null(strstr(out, "sink: topic low"));
    free(out);
    const char *bad_args[] = {"runnel", "--server", addr, "pipeline", "create",
                              "CREATE PIPELINE z AS INSERT INTO q SELECT nope FROM ev", NULL};
    assert_int_equal(cli(s, &out, bad_args), 1);
    assert_non_null(strstr(out, "runnel: pipeline 'z': unknown column 'nope'"));
    free(out);
    const char *run_args[] = {"runnel", "--server", addr, "pipeline", "run", "good", NULL};
    assert_int_equal(cli(s, &out, run_args), 2);
    free(out);

    srv_stop(s);                               /* final checkpoints; exit 0 */
    char *log = rn_test_slurp(s->logf, NULL);
    assert_non_null(strstr(log, "pipelines.sql:2:1: stream ev unchanged"));
    assert_non_null(strstr(log, "pipelines.sql:4:1: pipeline good created"));
    assert_non_null(strstr(log, "pipeline good stopped"));
    free(log);

    /* embedded: the sink holds exactly the rows the filter passes */
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    rn_datadir_t *d = NULL;
    assert_int_equal(rn_datadir_open(s->data, &o, &d, err), 0);
    rn_etl_status_t *es = NULL;
    size_t n = 0;
    assert_int_equal(rn_etl_status(d, NULL, &es, &n, err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(es[0].out, (uint64_t)pass);
    free(es);
    uint64_t total = 0;
    for (uint32_t q = 0; q < 2; q++) {
        rn_datadir_queue_t dq;
        rn_datadir_queue_info_t info;
        assert_int_equal(rn_datadir_queue_open(d, "low", q, &dq, err), 0);
        assert_int_equal(rn_datadir_queue_info(d, &dq, &info, err), 0);
        total += (uint64_t)info.high_watermark;
        rn_datadir_queue_close(&dq);
    }
    assert_int_equal(total, (uint64_t)pass);
    assert_int_equal(rn_datadir_close(d), 0);

    /* embedded, after the broker: list, then drop deletes the state */
    const char *ls_args[] = {"runnel", "--data", s->data, "pipeline", "list", NULL};
    assert_int_equal(cli(s, &out, ls_args), 0);
    assert_non_null(strstr(out, "good"));
    assert_non_null(strstr(out, "stopped"));
    free(out);
    const char *drop_args[] = {"runnel", "--data", s->data, "pipeline", "drop", "good", NULL};
    assert_int_equal(cli(s, &out, drop_args), 0);
    free(out);
    assert_int_equal(cli(s, &out, drop_args), 1);
    assert_non_null(strstr(out, "runnel: unknown pipeline 'good'"));
    free(out);

    /* embedded run: a new pipeline from the start, until caught up */
    const char *mk_args[] = {"runnel", "--data", s->data, "pipeline", "create",
                             "CREATE PIPELINE again AS INSERT INTO low2 SELECT svc FROM ev "
                             "WHERE lat < 500", NULL};
    assert_int_equal(cli(s, &out, mk_args), 0);
    free(out);
    const char *run2[] = {"runnel", "--data", s->data, "pipeline", "run", "--all",
                          "--until-caught-up", NULL};
    assert_int_equal(cli(s, &out, run2), 0);
    assert_string_equal(out, "");                 /* a topic sink: nothing on stdout */
    free(out);
    const char *st2[] = {"runnel", "--data", s->data, "pipeline", "status", "again", NULL};
    assert_int_equal(cli(s, &out, st2), 0);
    char want[128];
    snprintf(want, sizeof want, "records: in %d, out %d, late 0, errors %d", NREC, pass,
             NREC / 50);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "lag: 0=0 1=0"));
    free(out);

    /* `pipeline run` until SIGTERM: exit 0 after a final checkpoint (the
     * interval, 1 s, has not passed: only the final one records the rows) */
    const char *mk3[] = {"runnel", "--data", s->data, "pipeline", "create",
                         "CREATE PIPELINE third AS INSERT INTO low3 SELECT svc FROM ev "
                         "WHERE lat < 500", NULL};
    assert_int_equal(cli(s, &out, mk3), 0);
    free(out);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(RN_BIN_DIR "/runnel", "runnel", "--data", s->data, "pipeline", "run", "third",
              (char *)NULL);
        _exit(127);
    }
    /* SIGTERM once it catches SIGTERM (it installs its handler after
     * opening the data directory and the pipeline, which can take longer
     * than any fixed sleep on a loaded machine) */
    assert_true(caught_signal(pid, SIGTERM, 20000));
    usleep(100000);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    const char *st3[] = {"runnel", "--data", s->data, "pipeline", "status", "third", NULL};
    assert_int_equal(cli(s, &out, st3), 0);
    assert_non_null(strstr(out, want));
    free(out);
}

/* runneld with --pipelines file must exit 1 (within 20 s) with want in its log. */
static void expect_refused(srv_t *s, const char *file, const char *want)
{
    unlink(s->logf);
    const char *ar = getuid() == 0 ? "--allow-root" : NULL;   /* NULL: the list ends */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(s->logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) { dup2(fd, 2); close(fd); }
        execl(RN_BIN_DIR "/runneld", "runneld", "--data", s->data, "--listen", "127.0.0.1:0",
              "--pipelines", file, ar, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 2000 && waitpid(pid, &st, WNOHANG) == 0; i++) usleep(10000);
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        srv_print_log(s);
        fail_msg("runneld ran with --pipelines %s", file);
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    char *log = rn_test_slurp(s->logf, NULL);
    if (!strstr(log, want)) fail_msg("runneld's log lacks '%s':\n%s", want, log);
    free(log);
}

/* Wait until pipeline name has read all NREC records; its status. */
static Runnel__V1__PipelineStatus *caught_up(srv_t *s, const char *name)
{
    for (int i = 0; i < 1000; i++) {
        Runnel__V1__PipelineStatus *p = get(s, name, 0);
        if (p->records_in == NREC && p->last_checkpoint_ms > 0) return p;
        protobuf_c_message_free_unpacked(&p->base, NULL);
        usleep(20000);
    }
    fail_msg("pipeline %s did not catch up within 20 s", name);
    return NULL;
}

/* A pipelines file refused whole (missing, a statement that is not a
 * definition, a pipeline with bad SQL, a NUL byte: runneld exits 1 naming
 * the line and column), applied again at a restart (unchanged: the pipeline
 * keeps its state, the sink gets nothing twice), and changed (reported, the
 * stored definition runs on); then the same file through `runnel pipeline
 * run -f`. */
static void test_pipelines_file(void **state)
{
    srv_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    *state = s;
    snprintf(s->root, sizeof s->root, "/tmp/rn-etlfile-XXXXXX");
    assert_non_null(mkdtemp(s->root));
    snprintf(s->data, sizeof s->data, "%s/data", s->root);
    snprintf(s->portf, sizeof s->portf, "%s/port", s->root);
    snprintf(s->logf, sizeof s->logf, "%s/runneld.log", s->root);
    int pass = prepare(s->data);
    char file[PATH_MAX + 16], want[PATH_MAX + 200];
    snprintf(file, sizeof file, "%s/p.sql", s->root);

    expect_refused(s, "/nonexistent/p.sql", "pipelines file /nonexistent/p.sql: No such file");
    const char *select = "CREATE STREAM ev (svc TEXT, lat INTEGER) WITH (topic = 'in', "
                         "format = 'json');\n\n  SELECT * FROM ev;\n";
    rn_test_write_file(file, select, strlen(select));
    snprintf(want, sizeof want, "%s:3:3: a pipelines file holds CREATE STREAM, CREATE TABLE, "
             "CREATE FUNCTION, CREATE PIPELINE, DROP STREAM, DROP TABLE, DROP FUNCTION and "
             "DROP PIPELINE statements, not 'SELECT ...'", file);
    expect_refused(s, file, want);
    const char *badcol = "-- one\nCREATE PIPELINE p AS INSERT INTO o SELECT nope FROM ev;";
    rn_test_write_file(file, badcol, strlen(badcol));
    snprintf(want, sizeof want, "%s:2:1: pipeline 'p': unknown column 'nope'", file);
    expect_refused(s, file, want);
    rn_test_write_file(file, "CREATE STREAM x\0", 16);
    snprintf(want, sizeof want, "%s:1:16: a NUL byte", file);
    expect_refused(s, file, want);

    const char *good = "CREATE PIPELINE p AS INSERT INTO o SELECT svc, lat FROM ev WHERE lat < 500 "
                       "WITH (checkpoint_interval = '50ms');\n";
    rn_test_write_file(file, good, strlen(good));
    start_with(s, file);
    Runnel__V1__PipelineStatus *p = caught_up(s, "p");
    assert_int_equal(p->records_out, (uint64_t)pass);
    protobuf_c_message_free_unpacked(&p->base, NULL);
    srv_stop(s);

    /* the same definitions, reformatted and commented: nothing changes */
    const char *again = "CREATE STREAM ev (svc TEXT, lat INTEGER)\n  WITH (topic = 'in', "
                        "format = 'json');\nCREATE   PIPELINE p AS INSERT INTO o -- sink\n"
                        "  SELECT svc, lat FROM ev WHERE lat < 500\n"
                        "  WITH (checkpoint_interval = '50ms')";
    rn_test_write_file(file, again, strlen(again));
    start_with(s, file);
    p = caught_up(s, "p");
    assert_int_equal(p->records_out, (uint64_t)pass);      /* nothing twice */
    protobuf_c_message_free_unpacked(&p->base, NULL);
    srv_stop(s);
    char *log = rn_test_slurp(s->logf, NULL);
    assert_non_null(strstr(log, "p.sql:1:1: stream ev unchanged"));
    assert_non_null(strstr(log, "p.sql:3:1: pipeline p unchanged"));
    free(log);

    /* changed: reported with how to apply it; the stored one runs on */
    const char *changed = "CREATE STREAM ev (svc TEXT, lat REAL) WITH (topic = 'in', "
                          "format = 'json');\nCREATE PIPELINE p AS INSERT INTO o SELECT svc "
                          "FROM ev WHERE lat < 100;\n";
    rn_test_write_file(file, changed, strlen(changed));
    start_with(s, file);
    p = caught_up(s, "p");
    assert_non_null(strstr(p->sql, "lat < 500"));
    protobuf_c_message_free_unpacked(&p->base, NULL);
    srv_stop(s);
    log = rn_test_slurp(s->logf, NULL);
    assert_non_null(strstr(log, "stream 'ev' exists with fields"));
    assert_non_null(strstr(log, "DROP STREAM ev first"));
    assert_non_null(strstr(log, "p.sql:2:1: pipeline p differs from its stored definition"));
    assert_non_null(strstr(log, "runnel pipeline drop p"));
    free(log);

    /* the file with `runnel pipeline run -f`: a DROP, then a new pipeline */
    const char *cli_file = "DROP PIPELINE p;\nDROP PIPELINE IF EXISTS never;\n"
                           "CREATE PIPELINE q AS INSERT INTO o2 SELECT svc FROM ev WHERE "
                           "lat < 500;\n"
                           "CREATE FUNCTION tagged(s TEXT) RETURNS TEXT AS 'upper(s) || ''!''';\n"
                           "CREATE PIPELINE r AS INSERT INTO o3 SELECT tagged(svc) AS t FROM ev "
                           "WHERE lat < 500;\n";
    rn_test_write_file(file, cli_file, strlen(cli_file));
    char *out = NULL;
    const char *run_args[] = {"runnel", "--data", s->data, "pipeline", "run", "-f", file,
                              "--until-caught-up", NULL};
    assert_int_equal(cli(s, &out, run_args), 0);
    assert_non_null(strstr(out, "p.sql:1:1: pipeline p dropped"));
    assert_non_null(strstr(out, "p.sql:2:1: pipeline never absent"));
    assert_non_null(strstr(out, "p.sql:3:1: pipeline q created"));
    assert_non_null(strstr(out, "p.sql:4:1: function tagged created"));
    assert_non_null(strstr(out, "p.sql:5:1: pipeline r created"));
    free(out);
    /* applied again: the function is unchanged */
    assert_int_equal(cli(s, &out, run_args), 0);
    assert_non_null(strstr(out, "p.sql:4:1: function tagged unchanged"));
    free(out);
    const char *r_args[] = {"runnel", "--data", s->data, "pipeline", "status", "r", NULL};
    assert_int_equal(cli(s, &out, r_args), 0);
    snprintf(want, sizeof want, "records: in %d, out %d", NREC, pass);
    assert_non_null(strstr(out, want));
    free(out);
    const char *st_args[] = {"runnel", "--data", s->data, "pipeline", "list", NULL};
    assert_int_equal(cli(s, &out, st_args), 0);
    assert_null(strstr(out, "p "));
    free(out);
    const char *q_args[] = {"runnel", "--data", s->data, "pipeline", "status", "q", NULL};
    assert_int_equal(cli(s, &out, q_args), 0);
    snprintf(want, sizeof want, "records: in %d, out %d", NREC, pass);
    assert_non_null(strstr(out, want));
    free(out);
    rn_test_write_file(file, badcol, strlen(badcol));
    assert_int_equal(cli(s, &out, run_args), 1);
    snprintf(want, sizeof want, "runnel: %s:2:1: pipeline 'p': unknown column 'nope'", file);
    assert_non_null(strstr(out, want));
    free(out);
}

static int teardown(void **state)
{
    return srv_teardown(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_pipelines_in_runneld, teardown),
        cmocka_unit_test_teardown(test_pipelines_file, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

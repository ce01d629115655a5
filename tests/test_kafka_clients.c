/*
 * test_kafka_clients.c — the real Kafka clients against runneld --kafka-listen,
 * unchanged: kcat, confluent-kafka (librdkafka), kafka-python and kafkajs,
 * each driven by its script under tests/kafka/ (tests/kafka/README.md says
 * what each checks and how to run one by hand), plus runnel's own CLI and
 * streamsql on the same topics.
 *
 * Invariants of this file:
 *  1. One runneld serves every test but the crash test (each test uses its
 *     own topics, named after the test); the crash test has its own broker
 *     on a fixed Kafka port, so that the producer's bootstrap address stays
 *     valid across kill -9 and restart.
 *  2. A client script passes only by exiting 0 after its own checks; its
 *     stdout and stderr are printed when it fails. Nothing is skipped: a
 *     missing client is a failure (scripts/install-deps.sh installs them).
 *  3. Every wait is bounded (the scripts bound their own; SCRIPT_S here).
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#define PY       "/usr/bin/python3"
#define NODE     "/usr/bin/node"
#define SCRIPTS  RN_SOURCE_DIR "/tests/kafka"
#define SCRIPT_S 90

typedef struct kfx {
    srv_t *s;
    char   grpc[64], kafka[64];   /* "127.0.0.1:PORT" */
    char   out[PATH_MAX], err[PATH_MAX];
} kfx_t;

/* The Kafka port: the port file's second line. */
static int kafka_port(const srv_t *s)
{
    FILE *f = fopen(s->portf, "r");
    int g = 0, k = 0;
    if (f) {
        if (fscanf(f, "%d %d", &g, &k) != 2) k = 0;
        fclose(f);
    }
    return k;
}

static void kfx_addrs(kfx_t *x)
{
    int kp = kafka_port(x->s);
    assert_true(kp > 0);
    snprintf(x->grpc, sizeof x->grpc, "127.0.0.1:%d", x->s->port);
    snprintf(x->kafka, sizeof x->kafka, "127.0.0.1:%d", kp);
}

static int kfx_new(void **state, const char *const *extra)
{
    kfx_t *x = calloc(1, sizeof *x);
    if (!x) return -1;
    void *sv = NULL;
    if (srv_init_all(&sv, "group", SRV_MAX_BATCH, extra) != 0) {
        free(x);
        return -1;
    }
    x->s = sv;
    snprintf(x->out, sizeof x->out, "%s/script.out", x->s->root);
    snprintf(x->err, sizeof x->err, "%s/script.err", x->s->root);
    kfx_addrs(x);
    *state = x;
    return 0;
}

static int kfx_free(void **state)
{
    kfx_t *x = *state;
    void *sv = x->s;
    int rc = srv_teardown(&sv);
    free(x);
    return rc;
}

static int group_setup(void **state)
{
    static const char *const extra[] = {"--kafka-listen", "127.0.0.1:0", NULL};
    return kfx_new(state, extra);
}

static void print_file(const char *what, const char *path)
{
    char *t = rn_test_slurp(path, NULL);
    fprintf(stderr, "---- %s ----\n%s", what, t);
    free(t);
}

/* Run argv (argv[0] the program), stdin from in (NULL: none), bounded by
 * SCRIPT_S seconds; it must exit 0. */
static void run_ok(kfx_t *x, const char *const *argv, const char *in)
{
    const char *t[40] = {"timeout", "-k", "5", NULL};
    char secs[16];
    snprintf(secs, sizeof secs, "%d", SCRIPT_S);
    t[3] = secs;
    int n = 4;
    for (int i = 0; argv[i] && n < 39; i++) t[n++] = argv[i];
    t[n] = NULL;
    int st = rn_test_run("/usr/bin/timeout", t, in, x->out, x->err);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        fprintf(stderr, "command failed (status %d):", st);
        for (int i = 0; argv[i]; i++) fprintf(stderr, " %s", argv[i]);
        fputc('\n', stderr);
        print_file("stdout", x->out);
        print_file("stderr", x->err);
        srv_print_log(x->s);
        fail_msg("%s exited with status %d", argv[0], st);
    }
    /* The scripts' "ok:" lines, so a run shows what was checked. */
    char *o = rn_test_slurp(x->out, NULL);
    fputs(o, stdout);
    free(o);
}

/* stdout of the last run_ok (malloc'd). */
static char *last_out(kfx_t *x) { return rn_test_slurp(x->out, NULL); }

/* ---- each client, each codec -------------------------------------------------- */

/* kcat: produce with -K/-H/-z, -L, consume -J from the start and from
 * mid-batch, -Q by time (tests/kafka/kcat.py). */
static void test_kcat_roundtrip(void **state)
{
    kfx_t *x = *state;
    const char *argv[] = {PY, SCRIPTS "/kcat.py", x->kafka, "roundtrip", "kcat", NULL};
    run_ok(x, argv, NULL);
}

/* confluent-kafka (librdkafka): keys, binary values, headers, timestamps
 * per codec; mid-batch reads; offsets_for_times (tests/kafka/rdkafka.py). */
static void test_rdkafka_roundtrip(void **state)
{
    kfx_t *x = *state;
    const char *argv[] = {PY, SCRIPTS "/rdkafka.py", x->kafka, "roundtrip", "rdk", NULL};
    run_ok(x, argv, NULL);
}

/* kafka-python: the same checks (tests/kafka/kafka_python.py). */
static void test_kafka_python_roundtrip(void **state)
{
    kfx_t *x = *state;
    const char *argv[] = {PY, SCRIPTS "/kafka_python.py", x->kafka, "roundtrip", "kp", NULL};
    run_ok(x, argv, NULL);
}

/* kafkajs: producer and admin (fetchTopicOffsets, ...ByTimestamp) per
 * codec kafkajs has; kafka-python reads every record back. */
static void test_kafkajs_produce_admin(void **state)
{
    kfx_t *x = *state;
    const char *argv[] = {NODE, SCRIPTS "/js/kafkajs.js", x->kafka, "produce", "kjs", NULL};
    run_ok(x, argv, NULL);
    static const char *codecs[] = {"none", "gzip", "snappy"};
    for (int i = 0; i < 3; i++) {
        char topic[64], tag[64];
        snprintf(topic, sizeof topic, "kjs-%s", codecs[i]);
        snprintf(tag, sizeof tag, "kjs-%s", codecs[i]);
        const char *chk[] = {PY, SCRIPTS "/kafka_python.py", x->kafka, "check", topic, tag,
                             codecs[i], NULL};
        run_ok(x, chk, NULL);
    }
}

/* kafkajs's consumer in a consumer group reads what kcat wrote. */
static void test_kafkajs_group_consumer(void **state)
{
    kfx_t *x = *state;
    const char *prod[] = {PY, SCRIPTS "/kcat.py", x->kafka, "produce", "kjs-group", "500",
                          "g", NULL};
    run_ok(x, prod, NULL);
    const char *argv[] = {NODE, SCRIPTS "/js/kafkajs.js", x->kafka, "group-consume",
                          "kjs-group", "500", "g", NULL};
    run_ok(x, argv, NULL);
}

/* ---- auto-creation and interoperation -------------------------------------------- */

/* A topic named by Metadata (kcat -L -t) or by a Produce is created with
 * --kafka-auto-create-queues queues (default 1) and is a runnel topic. */
static void test_auto_create(void **state)
{
    kfx_t *x = *state;
    const char *meta[] = {"/usr/bin/kcat", "-b", x->kafka, "-L", "-t", "auto-by-metadata",
                          NULL};
    run_ok(x, meta, NULL);
    char *o = last_out(x);
    assert_non_null(strstr(o, "topic \"auto-by-metadata\" with 1 partitions"));
    free(o);
    const char *prod[] = {PY, SCRIPTS "/kcat.py", x->kafka, "produce", "auto-by-produce", "3",
                          "a", NULL};
    run_ok(x, prod, NULL);
    const char *list[] = {RN_BIN_DIR "/runnel", "--server", x->grpc, "topic", "list", NULL};
    run_ok(x, list, NULL);
    o = last_out(x);
    assert_non_null(strstr(o, "auto-by-metadata"));
    assert_non_null(strstr(o, "auto-by-produce"));
    free(o);
    const char *desc[] = {RN_BIN_DIR "/runnel", "--server", x->grpc, "topic", "describe",
                          "auto-by-produce", NULL};
    run_ok(x, desc, NULL);
    o = last_out(x);
    assert_non_null(strstr(o, "1 queue"));
    free(o);
}

/* runnel produce -> kcat and kafka-python consume. */
static void test_runnel_to_kafka(void **state)
{
    kfx_t *x = *state;
    char in[PATH_MAX];
    snprintf(in, sizeof in, "%s/lines.in", x->s->root);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 400; i++) fprintf(f, "rn-%d\n", i);
    fclose(f);
    const char *create[] = {RN_BIN_DIR "/runnel", "--server", x->grpc, "topic", "create",
                            "from-runnel", NULL};
    run_ok(x, create, NULL);
    const char *prod[] = {RN_BIN_DIR "/runnel", "--server", x->grpc, "produce", "from-runnel",
                          "--compression", "lz4", "--batch-bytes", "2048", NULL};
    run_ok(x, prod, in);
    const char *kc[] = {PY, SCRIPTS "/kcat.py", x->kafka, "consume", "from-runnel", "400", "rn",
                        NULL};
    run_ok(x, kc, NULL);
}

/* kcat produce (gzip and zstd) -> runnel consume and streamsql. */
static void test_kafka_to_runnel(void **state)
{
    kfx_t *x = *state;
    char in[PATH_MAX];
    snprintf(in, sizeof in, "%s/json.in", x->s->root);
    FILE *f = fopen(in, "w");
    assert_non_null(f);
    for (int i = 0; i < 300; i++) fprintf(f, "{\"n\": %d, \"src\": \"kcat\"}\n", i);
    fclose(f);
    const char *zs[] = {"/usr/bin/kcat", "-b", x->kafka, "-P", "-t", "from-kafka", "-z", "zstd",
                        NULL};
    run_ok(x, zs, in);
    const char *gz[] = {"/usr/bin/kcat", "-b", x->kafka, "-P", "-t", "from-kafka", "-z", "gzip",
                        NULL};
    run_ok(x, gz, in);
    const char *cons[] = {RN_BIN_DIR "/runnel", "--server", x->grpc, "consume", "from-kafka",
                          "--from", "299", "--count", "2", NULL};
    run_ok(x, cons, NULL);
    char *o = last_out(x);
    assert_string_equal(o, "{\"n\": 299, \"src\": \"kcat\"}\n{\"n\": 0, \"src\": \"kcat\"}\n");
    free(o);
    const char *sql[] = {RN_BIN_DIR "/streamsql", "--server", x->grpc, "--format", "csv", "-e",
                         "CREATE STREAM fk (n BIGINT, src TEXT) WITH (topic = 'from-kafka', "
                         "format = 'json'); SELECT count(*) AS c, sum(n) AS t, min(src) AS s "
                         "FROM fk;", NULL};
    run_ok(x, sql, NULL);
    o = last_out(x);
    assert_string_equal(o, "c,t,s\n600,89700,kcat\n");
    free(o);
}

/* ---- an idempotent producer across kill -9 --------------------------------------- */

/* librdkafka with enable.idempotence=true sends 4000 messages while
 * runneld is killed with SIGKILL and restarted on the same ports; every
 * message must be in the topic exactly once, in order. */
static void test_idempotent_kill9(void **state)
{
    (void)state;
    char listen[64], kafka[64];
    int kp = free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", kp);
    snprintf(kafka, sizeof kafka, "127.0.0.1:%d", kp);
    const char *extra[] = {"--kafka-listen", listen, NULL};
    void *st = NULL;
    kfx_t *x = NULL;
    assert_int_equal(kfx_new(&st, extra), 0);
    x = st;
    char pout[PATH_MAX], perr[PATH_MAX];
    snprintf(pout, sizeof pout, "%s/producer.out", x->s->root);
    snprintf(perr, sizeof perr, "%s/producer.err", x->s->root);
    const char *argv[] = {"timeout", "-k", "5", "90", PY, SCRIPTS "/rdkafka.py", kafka,
                          "idem-produce", "idem", "4000", NULL};
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        int o = open(pout, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(perr, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execv("/usr/bin/timeout", (char *const *)argv);
        _exit(127);
    }
    /* Kill once the producer has had some messages acknowledged. */
    int kills = 0;
    for (int i = 0; i < 3000 && !kills; i++) {
        rn_test_sleep_ms(10);
        char *o = rn_test_slurp(pout, NULL);
        const char *last = NULL;
        for (const char *q = o; (q = strstr(q, "sent ")) != NULL; q++) last = q;
        int sent = 0, done = 0;
        if (last && sscanf(last, "sent %d delivered %d", &sent, &done) == 2 && done >= 800) {
            assert_int_equal(kill(x->s->pid, SIGKILL), 0);
            int ws;
            assert_int_equal(waitpid(x->s->pid, &ws, 0), x->s->pid);
            x->s->pid = 0;
            rn_rpc_close(x->s->rpc);
            x->s->rpc = NULL;
            printf("killed runneld with SIGKILL after %d sent, %d delivered\n", sent, done);
            rn_test_sleep_ms(300);
            srv_start(x->s);
            kills++;
        }
        free(o);
    }
    int ws;
    assert_int_equal(waitpid(p, &ws, 0), p);
    if (!kills || !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0)) {
        print_file("producer stdout", pout);
        print_file("producer stderr", perr);
        srv_print_log(x->s);
    }
    assert_int_equal(kills, 1);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    const char *chk[] = {PY, SCRIPTS "/rdkafka.py", kafka, "idem-check", "idem", "4000", NULL};
    run_ok(x, chk, NULL);
    assert_int_equal(kfx_free(&st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kcat_roundtrip),
        cmocka_unit_test(test_rdkafka_roundtrip),
        cmocka_unit_test(test_kafka_python_roundtrip),
        cmocka_unit_test(test_kafkajs_produce_admin),
        cmocka_unit_test(test_kafkajs_group_consumer),
        cmocka_unit_test(test_auto_create),
        cmocka_unit_test(test_runnel_to_kafka),
        cmocka_unit_test(test_kafka_to_runnel),
    };
    int rc = cmocka_run_group_tests_name("kafka_clients", tests, group_setup, kfx_free);
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_idempotent_kill9),
    };
    rc |= cmocka_run_group_tests_name("kafka_clients_crash", alone, NULL, NULL);
    return rc;
}

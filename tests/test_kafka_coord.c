/*
 * test_kafka_coord.c — the Kafka front's group coordinator and committed
 * offsets, driven by real clients: confluent-kafka (librdkafka) consumers
 * and producers and kafka-python's admin client (tests/kafka/group.py),
 * against a real runneld with --kafka-listen on a fixed loopback port (so
 * running clients reconnect to a restarted broker).
 *
 * Every consumer and producer appends its events to one shared log file
 * (group.py's docstring); `group.py check` then proves that no produced
 * record was lost and none was read below a commit made before the read.
 *
 * Cases:
 *  - a group of three rebalances when one member leaves (SIGTERM: close()
 *    sends LeaveGroup) and when one is killed (SIGKILL: its session times
 *    out); `runnel group offsets` shows the Kafka group's positions and
 *    `runnel checkpoint create` snapshots them;
 *    `runnel group reset` is refused naming the live member; ListGroups and
 *    DescribeGroups through confluent-kafka's admin client; runneld
 *    restarts under a running consumer, which rejoins and resumes from the
 *    committed offsets; a new member joins; once every member has left the
 *    reset is allowed.
 *  - cooperative-sticky (incremental rebalances as members come and go)
 *    and roundrobin groups.
 *  - the group APIs at the wire level (tests/kafka/group_wire.py): every
 *    API and version edge no client library sends on demand, and malformed
 *    requests closing their own connection, logged with the reason.
 *  - kafka-python's admin client: ListGroups, DescribeGroups and
 *    OffsetFetch of every partition (null topics), and the group of a
 *    stopped consumer described as Empty.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#define PY        "/usr/bin/python3"
#define GROUP_PY  RN_SOURCE_DIR "/tests/kafka/group.py"
#define WIRE_PY   RN_SOURCE_DIR "/tests/kafka/group_wire.py"
#define PARTS     6
#define TOPIC     "gt"
#define GROUP     "G"

typedef struct kfix {
    srv_t  *s;
    char    kaddr[64];          /* 127.0.0.1:KPORT */
    char    kflag[64];
    char    log[PATH_MAX];      /* the shared event log */
    int     produced;           /* records produced so far (values m-0..) */
    pid_t   pids[8];            /* consumers started, killed at teardown */
    int     npids;
} kfix_t;

/* Run prog with argv; stdout then stderr in *text (malloc'd). Its exit
 * status, or -1. */
static int run_capture(kfix_t *f, const char *prog, const char *const *argv, char **text)
{
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/run.out", f->s->root);
    snprintf(err, sizeof err, "%s/run.err", f->s->root);
    int st = rn_test_run(prog, argv, NULL, out, err);
    size_t no = 0, ne = 0;
    char *a = rn_test_slurp(out, &no), *b = rn_test_slurp(err, &ne);
    *text = malloc(no + ne + 1);
    assert_non_null(*text);
    memcpy(*text, a, no);
    memcpy(*text + no, b, ne);
    (*text)[no + ne] = 0;
    free(a);
    free(b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int kfix_setup(void **state)
{
    static kfix_t f;
    memset(&f, 0, sizeof f);
    snprintf(f.kaddr, sizeof f.kaddr, "127.0.0.1:%d", free_port());
    snprintf(f.kflag, sizeof f.kflag, "%s", f.kaddr);
    static const char *extra[8];
    extra[0] = "--kafka-listen";
    extra[1] = f.kflag;
    extra[2] = "--kafka-auto-create-queues";
    extra[3] = "6";
    extra[4] = NULL;
    void *s = NULL;
    if (srv_init_all(&s, "group", SRV_MAX_BATCH, extra) != 0) return -1;
    f.s = s;
    snprintf(f.log, sizeof f.log, "%s/events.log", f.s->root);
    *state = &f;
    return 0;
}

static int kfix_teardown(void **state)
{
    kfix_t *f = *state;
    for (int i = 0; i < f->npids; i++) {
        if (kill(f->pids[i], SIGKILL) == 0) waitpid(f->pids[i], NULL, 0);
    }
    void *s = f->s;
    return srv_teardown(&s);
}

/* Run group.py with args (NULL-terminated): its output (malloc'd), after
 * failing the test when its status is not `want`. */
static char *py_run(kfix_t *f, int want, const char *const *args)
{
    const char *argv[16] = {PY, GROUP_PY};
    int n = 2;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    char *text = NULL;
    int code = run_capture(f, PY, argv, &text);
    printf("group.py %s: %s", args[0], text);
    if (code != want) {
        srv_print_log(f->s);
        fail_msg("group.py %s exited %d, wanted %d", args[0], code, want);
    }
    return text;
}

static void py(kfix_t *f, int want, const char *const *args) { free(py_run(f, want, args)); }

static char *py_out(kfix_t *f, const char *const *args) { return py_run(f, 0, args); }

static void produce_n(kfix_t *f, int n)
{
    char first[16], cnt[16], parts[16];
    snprintf(first, sizeof first, "%d", f->produced);
    snprintf(cnt, sizeof cnt, "%d", n);
    snprintf(parts, sizeof parts, "%d", PARTS);
    py(f, 0, (const char *[]){"produce", f->kaddr, TOPIC, first, cnt, parts, f->log, NULL});
    f->produced += n;
}

/* A consumer process named name in group with an assignment strategy;
 * its stdout and stderr in ROOT/NAME.out. */
static pid_t consumer_start_in(kfix_t *f, const char *name, const char *group,
                               const char *strategy)
{
    char out[PATH_MAX];
    snprintf(out, sizeof out, "%s/%s.out", f->s->root, name);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(PY, PY, GROUP_PY, "consume", f->kaddr, TOPIC, group, f->log, name, strategy,
              (char *)NULL);
        _exit(127);
    }
    if (f->npids < 8) f->pids[f->npids++] = pid;
    return pid;
}

static pid_t consumer_start(kfix_t *f, const char *name)
{
    return consumer_start_in(f, name, GROUP, "range");
}

/* Signal a consumer and wait for it (at most 20 s); SIGTERM must end it
 * with status 0 (it closed and left the group). */
static void consumer_stop(pid_t pid, int sig)
{
    kill(pid, sig);
    int st = 0;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (sig == SIGTERM) {
                assert_true(WIFEXITED(st));
                assert_int_equal(WEXITSTATUS(st), 0);
            }
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    fail_msg("consumer %d did not end within 20 s of signal %d", (int)pid, sig);
}

static void wait_assign(kfix_t *f, const char *a, const char *b, const char *c)
{
    py(f, 0, (const char *[]){"wait-assign", f->log, "40", "6", a, b, c, NULL});
}

static void wait_read(kfix_t *f)
{
    py(f, 0, (const char *[]){"wait-read", f->log, "40", NULL});
}

/* Run the runnel CLI against the broker: its exit status; stdout+stderr in
 * *out (malloc'd). */
static int runnel(kfix_t *f, char **out, const char *const *args)
{
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%d", f->s->port);
    const char *argv[16] = {"runnel", "--server", server};
    int n = 3;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int code = run_capture(f, RN_BIN_DIR "/runnel", argv, out);
    printf("runnel %s %s: %s", args[0], args[1], *out);
    return code;
}

/* `runnel group offsets G` lists every queue of TOPIC with lag 0. */
static void check_offsets_caught_up(kfix_t *f)
{
    char *out = NULL;
    assert_int_equal(runnel(f, &out, (const char *[]){"group", "offsets", GROUP, NULL}), 0);
    int rows = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char topic[64];
        unsigned q;
        long long off, start, end, lag;
        if (sscanf(line, "%63s %u %lld %lld %lld %lld", topic, &q, &off, &start, &end, &lag) != 6)
            continue;
        assert_string_equal(topic, TOPIC);
        assert_true(off > 0);
        assert_int_equal(off, end);
        assert_int_equal(lag, 0);
        rows++;
    }
    assert_int_equal(rows, PARTS);
    free(out);
}

static void test_group_rebalance_restart(void **state)
{
    kfix_t *f = *state;
    produce_n(f, 60);                   /* the topic exists before consumers subscribe */
    pid_t c1 = consumer_start(f, "c1");
    pid_t c2 = consumer_start(f, "c2");
    pid_t c3 = consumer_start(f, "c3");
    wait_assign(f, "c1", "c2", "c3");
    wait_read(f);
    produce_n(f, 120);
    wait_read(f);

    /* One leaves: the other two share the partitions. */
    consumer_stop(c3, SIGTERM);
    wait_assign(f, "c1", "c2", NULL);
    produce_n(f, 120);
    wait_read(f);

    /* One is killed: after its session timeout (4 s) c1 takes everything. */
    consumer_stop(c2, SIGKILL);
    produce_n(f, 120);
    wait_assign(f, "c1", NULL, NULL);
    wait_read(f);
    check_offsets_caught_up(f);
    char *slog = rn_test_slurp(f->s->logf, NULL);
    assert_non_null(strstr(slog, "(client 'c3' at 127.0.0.1"));
    assert_non_null(strstr(slog, "removed: it left the group (LeaveGroup)"));
    assert_non_null(strstr(slog, "removed: no heartbeat within its session timeout (4000 ms)"));
    free(slog);

    /* The Kafka group's offsets snapshot like any group's. */
    char *out = NULL;
    assert_int_equal(runnel(f, &out, (const char *[]){"checkpoint", "create", GROUP, "cp1",
                                                      NULL}), 0);
    assert_non_null(strstr(out, "cp1"));
    free(out);

    /* A reset is refused while c1 is a member, naming it. */
    assert_int_not_equal(runnel(f, &out, (const char *[]){"group", "reset", GROUP, "--to",
                                                          "earliest", NULL}), 0);
    assert_non_null(strstr(out, "live Kafka members"));
    assert_non_null(strstr(out, "c1-"));
    free(out);
    /* So is a commit from outside the group's protocol. */
    assert_int_not_equal(runnel(f, &out, (const char *[]){"group", "commit", GROUP, TOPIC, "0",
                                                          "0", NULL}), 0);
    assert_non_null(strstr(out, "live Kafka members"));
    free(out);

    /* ListGroups and DescribeGroups through librdkafka's admin client. */
    char *adm = py_out(f, (const char *[]){"admin", f->kaddr, GROUP, NULL});
    assert_non_null(strstr(adm, "group G Stable consumer range 1"));
    assert_non_null(strstr(adm, "member c1-"));
    free(adm);

    /* runneld restarts under the running consumer: it rejoins and resumes
     * from the committed offsets. */
    srv_restart(f->s);
    produce_n(f, 120);
    wait_read(f);

    /* A new member joins. */
    pid_t c4 = consumer_start(f, "c4");
    wait_assign(f, "c1", "c4", NULL);
    produce_n(f, 120);
    wait_read(f);
    check_offsets_caught_up(f);
    consumer_stop(c1, SIGTERM);
    consumer_stop(c4, SIGTERM);
    py(f, 0, (const char *[]){"check", f->log, NULL});

    /* Nobody left in the group: the reset goes through. */
    assert_int_equal(runnel(f, &out, (const char *[]){"group", "reset", GROUP, "--to",
                                                      "earliest", NULL}), 0);
    free(out);
}

/* The group APIs at the wire level (group_wire.py's docstring). */
static void test_group_wire(void **state)
{
    kfix_t *f = *state;
    char *text = NULL;
    int code = run_capture(f, PY, (const char *[]){PY, WIRE_PY, f->kaddr, NULL}, &text);
    printf("%s", text);
    free(text);
    if (code != 0) srv_print_log(f->s);
    assert_int_equal(code, 0);
    char *slog = rn_test_slurp(f->s->logf, NULL);
    assert_non_null(strstr(slog, "JoinGroup v5: protocols"));
    free(slog);
}

/* Cooperative-sticky (incremental rebalances) and roundrobin: the broker
 * only passes the clients' metadata and assignments through. */
static void test_group_strategies(void **state)
{
    kfix_t *f = *state;
    produce_n(f, 60);
    pid_t a = consumer_start_in(f, "s1", "GS", "cooperative-sticky");
    pid_t b = consumer_start_in(f, "s2", "GS", "cooperative-sticky");
    wait_assign(f, "s1", "s2", NULL);
    wait_read(f);
    pid_t c = consumer_start_in(f, "s3", "GS", "cooperative-sticky");
    wait_assign(f, "s1", "s2", "s3");
    produce_n(f, 60);
    wait_read(f);
    consumer_stop(b, SIGTERM);
    wait_assign(f, "s1", "s3", NULL);
    produce_n(f, 60);
    wait_read(f);
    consumer_stop(a, SIGTERM);
    consumer_stop(c, SIGTERM);
    py(f, 0, (const char *[]){"check", f->log, NULL});
    /* Another group reads the topic again: its own event log. */
    snprintf(f->log, sizeof f->log, "%s/events-rr.log", f->s->root);
    pid_t r1 = consumer_start_in(f, "r1", "GR", "roundrobin");
    pid_t r2 = consumer_start_in(f, "r2", "GR", "roundrobin");
    wait_assign(f, "r1", "r2", NULL);
    produce_n(f, 30);
    wait_read(f);
    consumer_stop(r1, SIGTERM);
    consumer_stop(r2, SIGTERM);
    py(f, 0, (const char *[]){"check", f->log, NULL});
}

static void test_group_kafka_python_admin(void **state)
{
    kfix_t *f = *state;
    produce_n(f, 30);
    pid_t c1 = consumer_start(f, "k1");
    wait_assign(f, "k1", NULL, NULL);
    wait_read(f);
    char *adm = py_out(f, (const char *[]){"kp-admin", f->kaddr, GROUP, TOPIC, NULL});
    assert_non_null(strstr(adm, "group G Stable consumer range 1"));
    assert_non_null(strstr(adm, "member k1-"));
    for (int p = 0; p < PARTS; p++) {
        char want[64];
        snprintf(want, sizeof want, "offset %s %d 5\n", TOPIC, p);
        assert_non_null(strstr(adm, want));
    }
    free(adm);
    consumer_stop(c1, SIGTERM);
    /* No member left: the group is known by its offsets (Empty, no members). */
    adm = py_out(f, (const char *[]){"kp-admin", f->kaddr, GROUP, TOPIC, NULL});
    assert_non_null(strstr(adm, "group G Empty - - 0"));
    free(adm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_group_rebalance_restart, kfix_setup, kfix_teardown),
        cmocka_unit_test_setup_teardown(test_group_wire, kfix_setup, kfix_teardown),
        cmocka_unit_test_setup_teardown(test_group_strategies, kfix_setup, kfix_teardown),
        cmocka_unit_test_setup_teardown(test_group_kafka_python_admin, kfix_setup,
                                        kfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

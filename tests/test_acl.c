/*
 * test_acl.c — access control lists end to end: a real runneld on loopback
 * with users (bearer tokens made by the real `runnel user add`), a super
 * user (--super-user admin), ACLs managed by the real `runnel acl`, calls
 * made by the real `runnel` and `streamsql`, and the Kafka front driven by
 * confluent-kafka logged in as carol with SASL SCRAM-SHA-256:
 *
 *  1. With no ACL every authenticated principal may do everything (as
 *     before ACLs) except manage ACLs; once the first entry exists, what no
 *     entry allows is refused, PERMISSION_DENIED naming the principal, the
 *     operation, the resource and the `runnel acl add` that would allow it.
 *  2. A principal allowed on prefix `app.` (topics, groups, pipelines) and
 *     to query is allowed every RPC the CLI makes there and refused each one
 *     elsewhere (cluster calls included); list answers hold only what it may
 *     describe; the refused calls changed nothing.
 *  3. A change of the ACLs counts from the next call (grant, revoke), and
 *     they survive a restart; one made embedded (`runnel --data DIR acl add`)
 *     while the broker is stopped counts from its start; the super user is
 *     never refused.
 *  4. Creator's rights: a query over a topic the caller may not consume is
 *     refused, and so is a statement defining or dropping a stream or a
 *     function without alter on the cluster; a pipeline whose creator may not produce to its sink is
 *     refused and nothing is stored; a running pipeline whose creator loses
 *     a right stops, and `pipeline status` says why; so it does again after
 *     a restart of the broker and after a resume.
 *  5. Kafka: carol's produce and fetch allowed on one topic, refused
 *     (TOPIC_AUTHORIZATION_FAILED) on another, Metadata filtered, a group
 *     without a group ACL refused (tests/kafka/acl.py).
 *  6. Bad ACL words are refused with the valid values; no user may be called
 *     'anonymous' (the name of calls without a principal).
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#define RUNNEL    RN_BIN_DIR "/runnel"
#define STREAMSQL RN_BIN_DIR "/streamsql"
#define PY        "/usr/bin/python3"
#define MAX_ARGS  40

static const char *const broker_flags[] = {"--super-user", "admin", "--kafka-listen",
                                           "127.0.0.1:0", NULL};

typedef struct afx {
    srv_t *s;
    char   addr[64];
    char   tok[4][200];        /* admin, alice, bob, carol */
    char   in[PATH_MAX + 16], out[PATH_MAX + 16], err[PATH_MAX + 16];
    char  *out_text, *err_text;
} afx_t;

enum { ADMIN, ALICE, BOB, CAROL };
static const char *const names[] = {"admin", "alice", "bob", "carol"};

static afx_t *fx;

/* Run prog with args; its exit code, output in fx->out_text / err_text. */
static int run(const char *prog, const char *in, const char *const *args)
{
    const char *argv[MAX_ARGS] = {prog};
    int argc = 1;
    for (int i = 0; args[i]; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    int st = rn_test_run(prog, argv, in, fx->out, fx->err);
    free(fx->out_text);
    free(fx->err_text);
    fx->out_text = rn_test_slurp(fx->out, NULL);
    fx->err_text = rn_test_slurp(fx->err, NULL);
    assert_true(st >= 0 && WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* `prog --server ADDR --token TOKEN(who) args...` */
static int as(int who, const char *prog, const char *in, const char *const *args)
{
    const char *a[MAX_ARGS] = {"--server", fx->addr, "--token", fx->tok[who]};
    int n = 4;
    for (int i = 0; args[i]; i++) a[n++] = args[i];
    a[n] = NULL;
    return run(prog, in, a);
}
#define AS(who, ...) as(who, RUNNEL, NULL, (const char *const[]){__VA_ARGS__, NULL})
#define AS_IN(who, in, ...) as(who, RUNNEL, in, (const char *const[]){__VA_ARGS__, NULL})
#define SQL(who, ...) as(who, STREAMSQL, NULL, (const char *const[]){__VA_ARGS__, NULL})

/* The call must succeed. */
#define OK(call) do {                                                                  \
        int rc_ = (call);                                                              \
        if (rc_ != 0) fail_msg("%s: exit %d; stderr: %s", #call, rc_, fx->err_text);   \
    } while (0)

/* The call must be refused by an ACL: exit 1, one line naming the principal. */
static void denied_(int rc, const char *what, const char *who)
{
    char want[128];
    snprintf(want, sizeof want, "principal '%s' may not", who);
    if (rc != 1 || !strstr(fx->err_text, want))
        fail_msg("%s: exit %d, want 1 with \"%s\"; stderr: %s", what, rc, want, fx->err_text);
}
#define DENIED(who, call) denied_((call), #call, names[who])

static void acl(const char *verb, const char *principal, const char *res, const char *name,
                int prefix, const char *op)
{
    const char *a[MAX_ARGS] = {"acl", verb, "--principal", principal};
    int n = 4;
    if (!strcmp(res, "cluster")) {
        a[n++] = "--cluster";
    } else {
        char flag[32];
        static char flags[8][32];
        static int k;
        snprintf(flag, sizeof flag, "--%s", res);
        char *f = flags[k++ % 8];
        snprintf(f, 32, "%s", flag);
        a[n++] = f;
        a[n++] = name;
    }
    if (prefix) a[n++] = "--prefix";
    a[n++] = "--op";
    a[n++] = op;
    a[n] = NULL;
    OK(as(ADMIN, RUNNEL, NULL, a));
}

static void user_add(int who)
{
    OK(run(RUNNEL, NULL, (const char *const[]){"--data", fx->s->data, "user", "add", names[who],
                                               NULL}));
    char *nl = strchr(fx->out_text, '\n');
    assert_non_null(nl);
    *nl = 0;
    snprintf(fx->tok[who], sizeof fx->tok[who], "%s", fx->out_text);
}

static int setup(void **state)
{
    fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    void *sv = NULL;
    if (srv_init_all(&sv, "group", SRV_MAX_BATCH, broker_flags) != 0) return -1;
    fx->s = sv;
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", fx->s->port);
    snprintf(fx->in, sizeof fx->in, "%s/in.txt", fx->s->root);
    snprintf(fx->out, sizeof fx->out, "%s/out.txt", fx->s->root);
    snprintf(fx->err, sizeof fx->err, "%s/err.txt", fx->s->root);
    rn_test_write_file(fx->in, "one\ntwo\n", 8);
    for (int i = 0; i < 4; i++) user_add(i);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    void *sv = fx->s;
    int rc = srv_teardown(&sv);
    free(fx->out_text);
    free(fx->err_text);
    free(fx);
    fx = NULL;
    return rc;
}

static int has(const char *text, const char *s) { return text && strstr(text, s) != NULL; }

/* 1. */
static void test_open_until_the_first_acl(void **state)
{
    (void)state;
    OK(AS(ALICE, "topic", "create", "app.a"));                 /* no ACL: open */
    OK(AS_IN(BOB, fx->in, "produce", "app.a"));
    /* ACLs themselves are not open: strict even with no entry. */
    DENIED(ALICE, AS(ALICE, "acl", "list"));
    assert_true(has(fx->err_text, "may not describe the cluster"));
    DENIED(ALICE, AS(ALICE, "acl", "add", "--principal", "alice", "--cluster", "--op", "all"));
    OK(AS(ADMIN, "acl", "list"));
    assert_string_equal(fx->out_text, "");
    acl("add", "alice", "topic", "app.", 1, "all");
    OK(AS(ADMIN, "acl", "list"));
    assert_string_equal(fx->out_text, "alice            topic    prefixed app.                     "
                                      "all\n");
    /* Deny by default now. */
    DENIED(BOB, AS(BOB, "topic", "create", "bob.x"));
    assert_true(has(fx->err_text, "may not create topic 'bob.x': no ACL allows it "
                                  "(`runnel acl add --principal bob --topic bob.x --op create`)"));
    DENIED(BOB, AS_IN(BOB, fx->in, "produce", "app.a"));
    OK(AS(BOB, "topic", "list"));
    assert_false(has(fx->out_text, "app.a") || has(fx->out_text, "admin"));   /* filtered */
    OK(AS(ALICE, "topic", "list"));
    assert_true(has(fx->out_text, "app.a"));
    OK(AS_IN(ALICE, fx->in, "produce", "app.a"));
    /* The super user is never refused. */
    OK(AS(ADMIN, "topic", "create", "admin.only"));
    OK(AS(ADMIN, "store", "list"));
}

/* 2. Every RPC the CLI makes, allowed on app.* and refused elsewhere. */
static void test_prefix_every_rpc(void **state)
{
    (void)state;
    acl("add", "alice", "topic", "app.", 1, "all");
    acl("add", "alice", "group", "app.", 1, "all");
    acl("add", "alice", "pipeline", "app.", 1, "all");
    acl("add", "alice", "cluster", "", 0, "query");
    OK(AS(ADMIN, "topic", "create", "app.t", "--queues", "2"));
    OK(AS(ADMIN, "topic", "create", "secret.t", "--queues", "2"));
    OK(AS_IN(ADMIN, fx->in, "produce", "app.t"));
    OK(AS_IN(ADMIN, fx->in, "produce", "secret.t"));
    OK(AS(ADMIN, "group", "commit", "sec.g", "secret.t", "0", "1"));
    OK(AS(ADMIN, "checkpoint", "create", "sec.g", "c0"));
    OK(AS(ADMIN, "pipeline", "create", "CREATE PIPELINE sec_p AS INSERT INTO secret.out "
                                       "SELECT * FROM \"secret.t\""));

    /* Allowed. */
    OK(AS(ALICE, "topic", "create", "app.n"));
    OK(AS(ALICE, "topic", "alter", "app.n", "--queues", "2"));
    OK(AS(ALICE, "topic", "describe", "app.t"));
    OK(AS(ALICE, "topic", "list"));
    assert_true(has(fx->out_text, "app.t") && !has(fx->out_text, "secret.t"));
    OK(AS_IN(ALICE, fx->in, "produce", "app.t", "--queue", "1"));
    OK(AS(ALICE, "consume", "app.t", "--queue", "0", "--count", "1"));
    assert_string_equal(fx->out_text, "one\n");
    OK(AS(ALICE, "consume", "app.t", "--group", "app.g", "--count", "1"));
    OK(AS(ALICE, "group", "commit", "app.g", "app.t", "0", "1"));
    OK(AS(ALICE, "group", "offsets", "app.g"));
    OK(AS(ALICE, "group", "reset", "app.g", "--to", "earliest"));
    OK(AS(ALICE, "group", "list"));
    assert_true(has(fx->out_text, "app.g") && !has(fx->out_text, "sec.g"));
    OK(AS(ALICE, "checkpoint", "create", "app.g", "c1"));
    OK(AS(ALICE, "checkpoint", "list", "app.g"));
    OK(AS(ALICE, "checkpoint", "drop", "app.g", "c1"));
    OK(SQL(ALICE, "-e", "SELECT count(*) AS n FROM \"app.t\""));
    OK(AS(ALICE, "pipeline", "create", "CREATE PIPELINE app.p AS INSERT INTO app.out "
                                       "SELECT * FROM \"app.t\" WITH (dead_letter = 'app.p.dlq')"));
    OK(AS(ALICE, "pipeline", "list"));
    assert_true(has(fx->out_text, "app.p") && !has(fx->out_text, "sec_p"));
    OK(AS(ALICE, "pipeline", "status", "app.p"));
    OK(AS(ALICE, "pipeline", "pause", "app.p"));
    OK(AS(ALICE, "pipeline", "resume", "app.p"));
    OK(AS(ALICE, "pipeline", "drop", "app.p"));
    OK(AS(ALICE, "topic", "delete", "app.n"));

    /* Refused, each naming what would allow it. */
    DENIED(ALICE, AS(ALICE, "topic", "create", "secret.n"));
    assert_true(has(fx->err_text, "may not create topic 'secret.n': no ACL allows it (`runnel acl add --principal alice --topic secret.n --op create`)"));
    DENIED(ALICE, AS(ALICE, "topic", "alter", "secret.t", "--queues", "3"));
    DENIED(ALICE, AS(ALICE, "topic", "describe", "secret.t"));
    DENIED(ALICE, AS(ALICE, "topic", "delete", "secret.t"));
    DENIED(ALICE, AS_IN(ALICE, fx->in, "produce", "secret.t"));
    DENIED(ALICE, AS(ALICE, "consume", "secret.t", "--queue", "0", "--count", "1"));
    DENIED(ALICE, AS(ALICE, "consume", "app.t", "--group", "sec.g", "--count", "1"));
    assert_true(has(fx->err_text, "may not describe group 'sec.g'"));
    DENIED(ALICE, AS(ALICE, "group", "commit", "sec.g", "secret.t", "0", "0"));
    DENIED(ALICE, AS(ALICE, "group", "commit", "app.g", "secret.t", "0", "0"));
    assert_true(has(fx->err_text, "may not consume from topic 'secret.t'"));
    DENIED(ALICE, AS(ALICE, "group", "offsets", "sec.g"));
    DENIED(ALICE, AS(ALICE, "group", "reset", "sec.g", "--to", "earliest"));
    DENIED(ALICE, AS(ALICE, "checkpoint", "create", "sec.g", "c2"));
    assert_true(has(fx->err_text, "may not alter group 'sec.g'"));
    DENIED(ALICE, AS(ALICE, "checkpoint", "list"));
    assert_true(has(fx->err_text, "may not describe the cluster"));
    DENIED(ALICE, AS(ALICE, "checkpoint", "drop", "sec.g", "c0"));
    DENIED(ALICE, AS(ALICE, "queue", "remap", "app.t", "0"));
    assert_true(has(fx->err_text, "may not alter the cluster"));
    DENIED(ALICE, AS(ALICE, "store", "list"));
    assert_true(has(fx->err_text, "may not describe the cluster"));
    DENIED(ALICE, SQL(ALICE, "-e", "SELECT count(*) AS n FROM \"secret.t\""));
    assert_true(has(fx->err_text, "may not consume from topic 'secret.t'"));
    DENIED(ALICE, AS(ALICE, "pipeline", "create", "CREATE PIPELINE sec_q AS INSERT INTO "
                                                  "app.x SELECT * FROM \"app.t\""));
    assert_true(has(fx->err_text, "may not create pipeline 'sec_q'"));
    DENIED(ALICE, AS(ALICE, "pipeline", "status", "sec_p"));
    assert_true(has(fx->err_text, "may not describe pipeline 'sec_p'"));
    DENIED(ALICE, AS(ALICE, "pipeline", "pause", "sec_p"));
    DENIED(ALICE, AS(ALICE, "pipeline", "resume", "sec_p"));
    DENIED(ALICE, AS(ALICE, "pipeline", "drop", "sec_p"));
    DENIED(ALICE, AS(ALICE, "acl", "list"));
    DENIED(ALICE, AS(ALICE, "acl", "remove", "--principal", "alice", "--topic", "app.",
                     "--prefix", "--op", "all"));

    /* Nothing the refused calls asked for happened. */
    OK(AS(ADMIN, "topic", "describe", "secret.t"));
    assert_true(has(fx->out_text, "queues: 2") || has(fx->out_text, "2 queues") ||
                has(fx->out_text, "secret.t"));
    OK(AS(ADMIN, "consume", "secret.t", "--queue", "0"));
    assert_string_equal(fx->out_text, "one\ntwo\n");
    OK(AS(ADMIN, "group", "offsets", "sec.g"));
    assert_true(has(fx->out_text, "secret.t"));
    OK(AS(ADMIN, "checkpoint", "list", "sec.g"));
    assert_true(has(fx->out_text, "c0"));
    OK(AS(ADMIN, "pipeline", "list"));
    assert_true(has(fx->out_text, "sec_p") && !has(fx->out_text, "sec_q"));
    OK(AS(ADMIN, "topic", "list"));
    assert_false(has(fx->out_text, "secret.n"));
}

/* 3. */
static void test_changes_count_at_once_and_persist(void **state)
{
    (void)state;
    acl("add", "carol", "topic", "other", 0, "describe");     /* ACLs exist */
    OK(AS(ADMIN, "topic", "create", "app.x"));
    DENIED(BOB, AS_IN(BOB, fx->in, "produce", "app.x"));
    acl("add", "bob", "topic", "app.x", 0, "produce");
    OK(AS_IN(BOB, fx->in, "produce", "app.x"));                /* the next call */
    DENIED(BOB, AS(BOB, "consume", "app.x", "--count", "1"));   /* produce only */
    acl("remove", "bob", "topic", "app.x", 0, "produce");
    DENIED(BOB, AS_IN(BOB, fx->in, "produce", "app.x"));
    acl("add", "bob", "topic", "app.", 1, "consume");
    /* Embedded, while the broker is stopped: counted from its next start. */
    srv_stop(fx->s);
    OK(run(RUNNEL, NULL, (const char *const[]){"--data", fx->s->data, "acl", "add",
                                               "--principal", "carol", "--topic", "app.x",
                                               "--op", "produce", NULL}));
    OK(run(RUNNEL, NULL, (const char *const[]){"--data", fx->s->data, "acl", "list", NULL}));
    assert_true(has(fx->out_text, "carol            topic    literal  app.x"));
    srv_start(fx->s);
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", fx->s->port);
    OK(AS_IN(CAROL, fx->in, "produce", "app.x"));
    OK(AS(BOB, "consume", "app.x", "--count", "2"));
    assert_string_equal(fx->out_text, "one\ntwo\n");
    DENIED(CAROL, AS(CAROL, "consume", "app.x", "--count", "1"));
    DENIED(BOB, AS_IN(BOB, fx->in, "produce", "app.x"));
    OK(AS(ADMIN, "acl", "list", "--principal", "bob"));
    assert_string_equal(fx->out_text, "bob              topic    prefixed app.                     "
                                      "consume\n");
}

/* 4. */
static void test_creators_rights(void **state)
{
    (void)state;
    OK(AS(ADMIN, "topic", "create", "app.src"));
    OK(AS(ADMIN, "topic", "create", "secret.sink"));
    OK(AS_IN(ADMIN, fx->in, "produce", "app.src"));
    acl("add", "bob", "pipeline", "bp", 1, "all");
    acl("add", "bob", "topic", "app.src", 0, "consume");
    acl("add", "bob", "topic", "app.sink", 0, "all");
    acl("add", "bob", "topic", "bp.dlq", 0, "produce");
    acl("add", "bob", "cluster", "", 0, "query");
    /* A query over a topic it may not consume. */
    DENIED(BOB, SQL(BOB, "-e", "SELECT * FROM \"secret.sink\""));
    OK(SQL(BOB, "-e", "SELECT count(*) AS n FROM \"app.src\""));
    /* Streams and functions are shared by every query and pipeline: defining or
     * dropping one needs alter on the cluster, which query does not give. */
    DENIED(BOB, SQL(BOB, "-e", "CREATE STREAM s (n INTEGER) WITH (topic = 'app.src')"));
    assert_true(has(fx->err_text, "may not alter the cluster"));
    DENIED(BOB, SQL(BOB, "-e", "CREATE FUNCTION twice(x INTEGER) RETURNS INTEGER AS 'x * 2'"));
    OK(SQL(ADMIN, "-e", "CREATE FUNCTION twice(x INTEGER) RETURNS INTEGER AS 'x * 2'"));
    DENIED(BOB, SQL(BOB, "-e", "DROP FUNCTION twice"));
    OK(SQL(BOB, "-e", "SELECT twice(1) AS n FROM \"app.src\" LIMIT 1"));   /* using one: no */
    OK(SQL(BOB, "-e", "SHOW STREAMS"));
    /* A sink it may not produce to: refused, nothing stored. */
    DENIED(BOB, AS(BOB, "pipeline", "create", "CREATE PIPELINE bp AS INSERT INTO secret.sink "
                                              "SELECT * FROM \"app.src\""));
    assert_true(has(fx->err_text, "may not produce to topic 'secret.sink'"));
    DENIED(BOB, AS(BOB, "pipeline", "create", "CREATE PIPELINE bp AS INSERT INTO app.sink "
                                              "SELECT * FROM \"secret.sink\""));
    assert_true(has(fx->err_text, "may not consume from topic 'secret.sink'"));
    OK(AS(ADMIN, "pipeline", "list"));
    assert_false(has(fx->out_text, "bp"));
    /* Allowed, it runs; the creator loses its sink: it stops, and says why. */
    OK(AS(BOB, "pipeline", "create", "CREATE PIPELINE bp AS INSERT INTO app.sink "
                                     "SELECT * FROM \"app.src\""));
    int copied = 0;
    for (int i = 0; i < 500 && !copied; i++) {
        OK(AS(BOB, "consume", "app.sink"));
        copied = has(fx->out_text, "two");
        if (!copied) rn_test_sleep_ms(20);
    }
    assert_true(copied);
    acl("remove", "bob", "topic", "app.sink", 0, "all");
    int stopped = 0;
    for (int i = 0; i < 500 && !stopped; i++) {
        OK(AS(ADMIN, "pipeline", "status", "bp"));
        stopped = has(fx->out_text, "failed: stopped: its creator lost a right it needs: "
                                    "principal 'bob' may not produce to topic 'app.sink'");
        if (!stopped) rn_test_sleep_ms(20);
    }
    if (!stopped) fail_msg("pipeline status: %s", fx->out_text);
    /* After a restart (the creator is stored with it) it stops again at its start. */
    srv_restart(fx->s);
    snprintf(fx->addr, sizeof fx->addr, "127.0.0.1:%d", fx->s->port);
    stopped = 0;
    for (int i = 0; i < 500 && !stopped; i++) {
        OK(AS(ADMIN, "pipeline", "status", "bp"));
        stopped = has(fx->out_text, "its creator lost a right");
        if (!stopped) rn_test_sleep_ms(20);
    }
    if (!stopped) fail_msg("pipeline status after a restart: %s", fx->out_text);
    /* Resumed without the right, it stops again at once. */
    OK(AS(BOB, "pipeline", "pause", "bp"));
    OK(AS(BOB, "pipeline", "resume", "bp"));
    stopped = 0;
    for (int i = 0; i < 500 && !stopped; i++) {
        OK(AS(ADMIN, "pipeline", "status", "bp"));
        stopped = has(fx->out_text, "its creator lost a right");
        if (!stopped) rn_test_sleep_ms(20);
    }
    assert_true(stopped);
    /* A stream-stream join reads its second stream too: losing the right to
     * consume it stops the pipeline as well. */
    OK(AS(ADMIN, "topic", "create", "app.r"));
    OK(SQL(ADMIN, "-e", "CREATE STREAM jl (k INTEGER, ts INTEGER) WITH (topic = 'app.src')"));
    OK(SQL(ADMIN, "-e", "CREATE STREAM jr (k INTEGER, ts INTEGER) WITH (topic = 'app.r')"));
    acl("add", "bob", "pipeline", "bj", 1, "all");
    acl("add", "bob", "topic", "app.jsink", 0, "all");
    acl("add", "bob", "topic", "bj.dlq", 0, "produce");
    const char *bj = "CREATE PIPELINE bj AS INSERT INTO app.jsink SELECT x.k FROM jl x JOIN jr y "
                     "ON x.k = y.k AND y.ts BETWEEN x.ts AND x.ts + 5";
    DENIED(BOB, AS(BOB, "pipeline", "create", bj));
    assert_true(has(fx->err_text, "may not consume from topic 'app.r'"));
    acl("add", "bob", "topic", "app.r", 0, "consume");
    OK(AS(BOB, "pipeline", "create", bj));
    int running = 0;
    for (int i = 0; i < 500 && !running; i++) {
        OK(AS(ADMIN, "pipeline", "status", "bj"));
        running = has(fx->out_text, "state: running");
        if (!running) rn_test_sleep_ms(20);
    }
    if (!running) fail_msg("pipeline status: %s", fx->out_text);
    acl("remove", "bob", "topic", "app.r", 0, "consume");
    stopped = 0;
    for (int i = 0; i < 500 && !stopped; i++) {
        OK(AS(ADMIN, "pipeline", "status", "bj"));
        stopped = has(fx->out_text, "failed: stopped: its creator lost a right it needs: "
                                    "principal 'bob' may not consume from topic 'app.r'");
        if (!stopped) rn_test_sleep_ms(20);
    }
    if (!stopped) fail_msg("pipeline status: %s", fx->out_text);
}

/* 5. */
static void test_kafka_front(void **state)
{
    (void)state;
    FILE *f = fopen(fx->s->portf, "r");
    int g = 0, k = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d %d", &g, &k), 2);
    fclose(f);
    char kafka[64];
    snprintf(kafka, sizeof kafka, "127.0.0.1:%d", k);
    OK(AS(ADMIN, "topic", "create", "k.ok"));
    OK(AS(ADMIN, "topic", "create", "k.no"));
    /* carol logs in with SASL SCRAM-SHA-256: username carol, password the token's
     * part after "carol." (kafka/sasl.h) */
    acl("add", "carol", "topic", "k.ok", 0, "produce");
    acl("add", "carol", "topic", "k.ok", 0, "consume");
    acl("add", "carol", "group", "k.reader", 0, "consume");
    const char *secret = strchr(fx->tok[CAROL], '.');
    assert_non_null(secret);
    int rc = run(PY, NULL, (const char *const[]){RN_SOURCE_DIR "/tests/kafka/acl.py", kafka,
                                                 "k.ok", "k.no", names[CAROL], secret + 1,
                                                 NULL});
    if (rc != 0) {
        srv_print_log(fx->s);
        fail_msg("acl.py: exit %d\nstdout: %s\nstderr: %s", rc, fx->out_text, fx->err_text);
    }
    OK(AS(ADMIN, "consume", "k.no"));
    assert_string_equal(fx->out_text, "");                      /* nothing got in */
}

/* 6. */
static void test_bad_words(void **state)
{
    (void)state;
    int rc = AS(ADMIN, "acl", "add", "--principal", "bob", "--group", "g", "--op", "produce");
    assert_int_equal(rc, 2);
    assert_true(has(fx->err_text, "operation 'produce' on a group: valid operations are "
                                  "consume, describe, alter, delete, all"));
    rc = AS(ADMIN, "acl", "add", "--principal", "b o b", "--cluster", "--op", "all");
    assert_int_equal(rc, 2);
    assert_true(has(fx->err_text, "principal 'b o b'"));
    rc = AS(ADMIN, "acl", "add", "--principal", "bob", "--topic", "*", "--prefix", "--op", "all");
    assert_int_equal(rc, 2);
    assert_true(has(fx->err_text, "a prefix cannot be '*'"));
    rc = AS(ADMIN, "acl", "add", "--principal", "bob", "--op", "all");
    assert_int_equal(rc, 2);
    rc = AS(ADMIN, "acl", "remove", "--principal", "bob", "--topic", "none", "--op", "all");
    assert_int_equal(rc, 1);
    assert_true(has(fx->err_text, "no such ACL entry"));
    rc = run(RUNNEL, NULL, (const char *const[]){"--data", fx->s->data, "user", "add",
                                                 "anonymous", NULL});
    assert_int_equal(rc, 1);
    assert_true(has(fx->err_text, "bad user name 'anonymous'"));
    acl("add", "bob", "topic", "t", 0, "all");
    rc = AS(ADMIN, "acl", "add", "--principal", "bob", "--topic", "t", "--op", "all");
    assert_int_equal(rc, 1);
    assert_true(has(fx->err_text, "exists already"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_until_the_first_acl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_every_rpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_count_at_once_and_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creators_rights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kafka_front, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_words, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

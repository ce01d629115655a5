/*
 * test_tls.c — TLS on runneld's gRPC port, end to end: a real runneld on
 * loopback with certificates made at test time by the `openssl` command (a
 * CA; a server certificate for 127.0.0.1 and localhost in subjectAltName; a
 * client certificate from the CA; a second, unrelated CA and a client
 * certificate from it), reached by the real `runnel` and `streamsql`:
 *
 *  1. Over TLS, records produced come back from consume and streamsql, the
 *     CA given by --tls-ca or by RUNNEL_TLS_CA.
 *  2. A plaintext client of a TLS broker is refused (exit 1, one line naming
 *     the address and --tls-ca; the broker logs the failed handshake), and a
 *     TLS client of a plaintext broker fails its handshake, as does a client
 *     trusting another CA than the one that signed the broker's certificate,
 *     and one reaching a broker whose certificate (from the right CA) does
 *     not name the address dialled.
 *  3. Mutual TLS (--tls-client-ca): a client without a certificate, or with
 *     one from the other CA, is refused and changes nothing; the right one
 *     works.
 *  4. Bad files stop runneld with exit 2 and one line naming the flag and
 *     the file (missing, not PEM, empty, a key that does not match the
 *     certificate, half a pair); the clients refuse theirs the same way.
 *  5. A listener beyond loopback (0.0.0.0) is refused without --insecure
 *     when it is plaintext, and when it is TLS without authentication (no
 *     user, no --require-auth, no --tls-client-ca); with --insecure runneld
 *     starts and warns; with TLS and authentication the gRPC, Kafka and
 *     metrics ports may listen there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util/util.h"

#define RUNNELD   RN_BIN_DIR "/runneld"
#define RUNNEL    RN_BIN_DIR "/runnel"
#define STREAMSQL RN_BIN_DIR "/streamsql"
#define MAX_ARGS  40

typedef struct fx {
    char  root[64];           /* /tmp/rn-tls-XXXXXX */
    char  p[PATH_MAX + 64];    /* scratch for path() */
    int   nstarts;
    pid_t pid;                 /* the running broker, 0 when none */
    int   port;
    char  log[PATH_MAX + 64];
} fx_t;

static fx_t fx;

/* ROOT/name, in a static buffer of the fixture (one at a time). */
static const char *path(const char *name)
{
    snprintf(fx.p, sizeof fx.p, "%s/%s", fx.root, name);
    return fx.p;
}

static char *dup_path(const char *name) { return strdup(path(name)); }

static int group_setup(void **state)
{
    (void)state;
    if (rn_test_tmpdir(fx.root, sizeof fx.root, "tls") != 0) return -1;
    return rn_test_make_certs(fx.root);   /* the certificates of the header */
}

static int group_teardown(void **state)
{
    (void)state;
    const char *keep = getenv("RN_TEST_KEEP");
    if (keep && keep[0] == '1') {
        fprintf(stderr, "kept %s\n", fx.root);
        return 0;
    }
    return rn_test_rmtree(fx.root);
}

static void print_file(const char *p)
{
    char *t = rn_test_slurp(p, NULL);
    fprintf(stderr, "---- %s ----\n%s", p, t);
    free(t);
}

/* Start runneld with extra (NULL-terminated) on a fresh data directory
 * (tests/util: rn_test_runneld_start_args). Returns -1 once it listens
 * (fx.pid, fx.port set), or its exit status when it exited first. */
static rn_test_runneld_t rd;
static int start(const char *const *extra)
{
    char name[32];
    snprintf(name, sizeof name, "data%d", fx.nstarts++);
    int exited = -1;
    int rc = rn_test_runneld_start_args(&rd, path(name), extra, &exited);
    snprintf(fx.log, sizeof fx.log, "%s", rd.log);
    if (rc < 0) {
        print_file(fx.log);
        fail_msg("runneld neither started nor exited within 10 s");
    }
    fx.pid = rd.pid;
    if (rc == 1) return exited;
    fx.port = atoi(strrchr(rd.addr, ':') + 1);
    return -1;
}

/* Start runneld, which must come up. */
static void start_ok(const char *const *extra)
{
    int r = start(extra);
    if (r != -1) {
        print_file(fx.log);
        fail_msg("runneld exited %d during start", r);
    }
}

/* SIGTERM; runneld must exit 0. */
static void stop(void)
{
    if (fx.pid <= 0) return;
    int st = rn_test_runneld_stop(&rd);
    fx.pid = 0;
    if (st != 0) {
        print_file(fx.log);
        fail_msg("runneld did not exit 0 (status %d)", st);
    }
}

static int teardown(void **state)
{
    (void)state;
    if (fx.pid > 0) {
        kill(fx.pid, SIGKILL);
        waitpid(fx.pid, NULL, 0);
        fx.pid = rd.pid = 0;
    }
    return 0;
}

/* Output of the last run, NUL-terminated (freed by the next run). */
static char *out_text, *err_text;

/* Run prog with args (NULL-terminated, argv[0] excluded) and stdin from
 * in (NULL: /dev/null); its exit code. */
static int run(const char *prog, const char *in, const char *const *args)
{
    const char *argv[MAX_ARGS] = {prog};
    int argc = 1;
    for (int i = 0; args[i]; i++) argv[argc++] = args[i];
    argv[argc] = NULL;
    char *o = dup_path("out.txt"), *e = dup_path("err.txt");
    int st = rn_test_run(prog, argv, in, o, e);
    free(out_text);
    free(err_text);
    out_text = rn_test_slurp(o, NULL);
    err_text = rn_test_slurp(e, NULL);
    free(o);
    free(e);
    assert_true(st >= 0 && WIFEXITED(st));
    return WEXITSTATUS(st);
}
#define RUN(prog, in, ...) run(prog, in, (const char *const[]){__VA_ARGS__, NULL})

/* The last run's stderr is exactly one line holding each of the strings. */
static void err_line_has(const char *a, const char *b)
{
    const char *nl = strchr(err_text, '\n');
    if (!nl || nl[1] != '\0' || !strstr(err_text, a) || (b && !strstr(err_text, b)))
        fail_msg("stderr should be one line with '%s'%s%s, got: %s", a, b ? " and " : "",
                 b ? b : "", err_text);
}

static int log_has(const char *s)
{
    char *t = rn_test_slurp(fx.log, NULL);
    int r = strstr(t, s) != NULL;
    free(t);
    return r;
}

static const char *addr(const char *host)
{
    static char a[64];
    snprintf(a, sizeof a, "%s:%d", host, fx.port);
    return a;
}

/* PEM files, as paths that outlive a test (freed at exit). */
static char *ca, *srv, *srvkey, *cli, *clikey, *ca2, *cli2, *cli2key, *garbage, *empty, *cut,
            *missing, *input, *other, *otherkey;

static void paths(void)
{
    ca = dup_path("ca.pem"); srv = dup_path("srv.pem"); srvkey = dup_path("srv.key");
    cli = dup_path("cli.pem"); clikey = dup_path("cli.key"); ca2 = dup_path("ca2.pem");
    cli2 = dup_path("cli2.pem"); cli2key = dup_path("cli2.key");
    garbage = dup_path("garbage.pem"); empty = dup_path("empty.pem"); cut = dup_path("cut.pem");
    missing = dup_path("no-such.pem"); input = dup_path("input.txt");
    other = dup_path("other.pem"); otherkey = dup_path("other.key");
    rn_test_write_file(input, "one\ntwo\nthree\n", 14);
}

/* 1. The round trip over TLS. */
static void test_round_trip(void **state)
{
    (void)state;
    start_ok((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, NULL});
    assert_true(log_has("gRPC over TLS only"));
    char a[64];
    snprintf(a, sizeof a, "%s", addr("127.0.0.1"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "topic", "create", "t"), 0);
    assert_int_equal(RUN(RUNNEL, input, "--server", a, "--tls-ca", ca, "produce", "t"), 0);
    /* The options after the command, as --server may be. */
    assert_int_equal(RUN(RUNNEL, NULL, "consume", "t", "--count", "3", "--server", a,
                         "--tls-ca", ca), 0);
    assert_string_equal(out_text, "one\ntwo\nthree\n");
    /* RUNNEL_TLS_CA. (Not "localhost:PORT": gRPC's DNS resolver, c-ares,
     * leaks 10 bytes per process, which fails the ASan build.) */
    setenv("RUNNEL_TLS_CA", ca, 1);
    int rc = RUN(RUNNEL, NULL, "--server", a, "consume", "t", "--count", "1");
    unsetenv("RUNNEL_TLS_CA");
    assert_int_equal(rc, 0);
    assert_string_equal(out_text, "one\n");
    assert_int_equal(RUN(STREAMSQL, NULL, "--server", a, "--tls-ca", ca, "--format", "csv",
                         "-e", "SELECT count(*) AS n FROM t"), 0);
    assert_non_null(strstr(out_text, "3"));
    stop();
}

/* 2. Plaintext against TLS, TLS against plaintext, a CA that did not sign. */
static void test_refusals(void **state)
{
    (void)state;
    start_ok((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, NULL});
    char a[64];
    snprintf(a, sizeof a, "%s", addr("127.0.0.1"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "create", "plain"), 1);
    err_line_has(a, "give --tls-ca");
    assert_int_equal(RUN(STREAMSQL, NULL, "--server", a, "-e", "SELECT 1 FROM plain"), 1);
    err_line_has("cannot reach", "give --tls-ca");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca2, "topic", "create",
                         "other"), 1);
    err_line_has("TLS handshake failed", "certificate verify failed");
    assert_true(log_has("gRPC: Handshake failed"));
    /* Nothing was created. */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "topic", "list"), 0);
    assert_null(strstr(out_text, "plain"));
    assert_null(strstr(out_text, "other"));
    stop();

    start_ok((const char *const[]){"--listen", "127.0.0.1:0", NULL});
    snprintf(a, sizeof a, "%s", addr("127.0.0.1"));
    assert_int_equal(RUN(RUNNEL, input, "--server", a, "--tls-ca", ca, "produce", "t"), 1);
    err_line_has("TLS handshake failed", a);
    stop();

    /* A certificate from the right CA for another name. */
    start_ok((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", other, "--tls-key",
                                   otherkey, NULL});
    snprintf(a, sizeof a, "%s", addr("127.0.0.1"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "topic", "list"), 1);
    err_line_has("TLS handshake failed", a);
    stop();
}

/* 3. Mutual TLS. */
static void test_mutual(void **state)
{
    (void)state;
    start_ok((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, "--tls-client-ca", ca, NULL});
    assert_true(log_has("client certificates required"));
    char a[64];
    snprintf(a, sizeof a, "%s", addr("127.0.0.1"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "topic", "create", "x"), 1);
    err_line_has("cannot reach", "--tls-cert");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli2,
                         "--tls-key", cli2key, "topic", "create", "y"), 1);
    err_line_has("cannot reach", a);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "create", "z"), 1);
    err_line_has("cannot reach", a);
    setenv("RUNNEL_TLS_CA", ca, 1);
    setenv("RUNNEL_TLS_CERT", cli, 1);
    setenv("RUNNEL_TLS_KEY", clikey, 1);
    int rc = RUN(RUNNEL, NULL, "--server", a, "topic", "create", "t");
    unsetenv("RUNNEL_TLS_CA");
    unsetenv("RUNNEL_TLS_CERT");
    unsetenv("RUNNEL_TLS_KEY");
    assert_int_equal(rc, 0);
    assert_int_equal(RUN(RUNNEL, input, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "produce", "t"), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "consume", "t", "--count", "3"), 0);
    assert_string_equal(out_text, "one\ntwo\nthree\n");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "topic", "list"), 0);
    assert_non_null(strstr(out_text, "t "));
    assert_null(strstr(out_text, "x "));
    assert_null(strstr(out_text, "y "));
    assert_null(strstr(out_text, "z "));
    stop();
}

/* runneld with extra exits 2 before listening, one line on stderr holding a and b. */
static void refused(const char *const *extra, const char *a, const char *b)
{
    int r = start(extra);
    if (r == -1) {
        stop();
        fail_msg("runneld started; expected exit 2 with '%s'", a);
    }
    assert_int_equal(r, 2);
    char *t = rn_test_slurp(fx.log, NULL);
    const char *nl = strchr(t, '\n');
    if (!nl || nl[1] || !strstr(t, a) || (b && !strstr(t, b)))
        fail_msg("runneld's stderr should be one line with '%s' and '%s', got: %s", a,
                 b ? b : "", t);
    free(t);
}

/* 4. Bad files. */
static void test_bad_files(void **state)
{
    (void)state;
    refused((const char *const[]){"--tls-cert", missing, "--tls-key", srvkey, NULL},
            "--tls-cert", "no-such.pem: cannot read it");
    refused((const char *const[]){"--tls-cert", garbage, "--tls-key", srvkey, NULL},
            "--tls-cert", "garbage.pem: no PEM certificate in it");
    refused((const char *const[]){"--tls-cert", empty, "--tls-key", srvkey, NULL},
            "--tls-cert", "empty.pem: no PEM certificate in it");
    refused((const char *const[]){"--tls-cert", cut, "--tls-key", srvkey, NULL},
            "--tls-cert", "cut.pem: no PEM certificate in it");
    refused((const char *const[]){"--tls-cert", srv, "--tls-key", garbage, NULL},
            "--tls-key", "garbage.pem: no PEM private key in it");
    refused((const char *const[]){"--tls-cert", srv, "--tls-key", srv, NULL},
            "--tls-key", "no PEM private key in it");
    refused((const char *const[]){"--tls-cert", srv, "--tls-key", clikey, NULL},
            "cli.key: the key does not match the certificate in --tls-cert", "srv.pem");
    refused((const char *const[]){"--tls-cert", srv, "--tls-key", srvkey, "--tls-client-ca",
                                  empty, NULL}, "--tls-client-ca", "empty.pem");
    refused((const char *const[]){"--tls-cert", srv, NULL}, "--tls-cert and --tls-key go "
            "together", NULL);
    refused((const char *const[]){"--tls-client-ca", ca, NULL}, "--tls-client-ca needs "
            "--tls-cert", NULL);
    /* The clients: the same checks, exit 2, before connecting anywhere. */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", "127.0.0.1:1", "--tls-ca", missing, "topic",
                         "list"), 2);
    err_line_has("runnel: --tls-ca", "no-such.pem: cannot read it");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", "127.0.0.1:1", "--tls-ca", ca, "--tls-cert",
                         cli, "--tls-key", srvkey, "topic", "list"), 2);
    err_line_has("--tls-key", "does not match");
    assert_int_equal(RUN(STREAMSQL, NULL, "--server", "127.0.0.1:1", "--tls-ca", garbage, "-e",
                         "SELECT 1 FROM t"), 2);
    err_line_has("streamsql: --tls-ca", "no PEM certificate");
    assert_int_equal(RUN(RUNNEL, NULL, "--data", path("embedded"), "--tls-ca", ca, "topic",
                         "list"), 2);
    err_line_has("are for a server", NULL);
}

/* 5. Beyond loopback. */
static void test_non_loopback(void **state)
{
    (void)state;
    refused((const char *const[]){"--listen", "0.0.0.0:0", NULL},
            "refusing to listen without TLS beyond loopback (--listen 0.0.0.0:0)", "--insecure");
    refused((const char *const[]){"--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0",
                                  NULL}, "--kafka-listen 0.0.0.0:0", "--insecure");
    /* TLS without authentication is not enough beyond loopback. */
    refused((const char *const[]){"--listen", "0.0.0.0:0", "--tls-cert", srv, "--tls-key",
                                  srvkey, NULL},
            "refusing to listen without authentication beyond loopback (--listen 0.0.0.0:0)",
            "--require-auth");
    refused((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", srv, "--tls-key",
                                  srvkey, "--metrics-listen", "0.0.0.0:0", NULL},
            "(--metrics-listen 0.0.0.0:0)", "add a user");
    /* TLS covers the Kafka and metrics ports too (kafka/tls.h, HTTPS). */
    start_ok((const char *const[]){"--listen", "127.0.0.1:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, "--kafka-listen", "0.0.0.0:0", "--metrics-listen",
                                   "0.0.0.0:0", "--require-auth", NULL});
    assert_false(log_has("--insecure"));
    assert_true(log_has("over TLS only (SSL, SASL_SSL)"));
    stop();
    start_ok((const char *const[]){"--listen", "0.0.0.0:0", "--insecure", NULL});
    assert_true(log_has("warn"));
    assert_true(log_has("--insecure: plaintext beyond loopback (--listen 0.0.0.0:0)"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", addr("127.0.0.1"), "topic", "list"), 0);
    stop();
    /* TLS and a user in the credentials file. */
    char *auth = dup_path("auth");
    assert_int_equal(mkdir(auth, 0700), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--data", auth, "user", "add", "ann"), 0);
    char tok[200];
    snprintf(tok, sizeof tok, "%.*s", (int)strcspn(out_text, "\n"), out_text);
    char *users = dup_path("auth/users");
    start_ok((const char *const[]){"--listen", "0.0.0.0:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, "--users", users, NULL});
    assert_int_equal(RUN(RUNNEL, NULL, "--server", addr("127.0.0.1"), "--tls-ca", ca,
                         "--token", tok, "topic", "list"), 0);
    stop();
    free(auth);
    free(users);
    /* TLS and mutual TLS (the client certificate authenticates). */
    start_ok((const char *const[]){"--listen", "0.0.0.0:0", "--tls-cert", srv, "--tls-key",
                                   srvkey, "--tls-client-ca", ca, NULL});
    assert_false(log_has("--insecure"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", addr("127.0.0.1"), "--tls-ca", ca,
                         "--tls-cert", cli, "--tls-key", clikey, "topic", "list"), 0);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_round_trip, teardown),
        cmocka_unit_test_teardown(test_refusals, teardown),
        cmocka_unit_test_teardown(test_mutual, teardown),
        cmocka_unit_test_teardown(test_bad_files, teardown),
        cmocka_unit_test_teardown(test_non_loopback, teardown),
    };
    if (group_setup(NULL) != 0) return 1;
    paths();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(out_text); free(err_text);
    free(ca); free(srv); free(srvkey); free(cli); free(clikey); free(ca2); free(cli2);
    free(cli2key); free(garbage); free(empty); free(cut); free(missing); free(input);
    free(other); free(otherkey);
    if (group_teardown(NULL) != 0 && rc == 0) rc = 1;
    return rc;
}

/*
 * test_auth.c — bearer-token principals, end to end: a real runneld on
 * loopback, users made by the real `runnel user add`, calls made by the real
 * `runnel` and `streamsql`:
 *
 *  1. With no user, every call works without a token (as before users).
 *  2. After `user add`, every RPC kind the CLIs reach (topic list/create,
 *     produce, consume, group list, a query through streamsql, pipeline list)
 *     is refused UNAUTHENTICATED without a token and with a wrong one, and
 *     changes nothing; the right token (--token or RUNNEL_TOKEN) works; the
 *     broker logs each refusal with the peer and never the token; the users
 *     file holds no token in clear.
 *  3. `user remove` revokes the token from the next call on (the verified
 *     token was cached), and `user add` of a second user lets it in at once.
 *  4. Under mutual TLS, a client certificate verified by the CA is a
 *     principal: no token needed; --require-auth with no user refuses a
 *     plaintext call without a token.
 *     A token sent in clear beyond loopback is warned about on stderr.
 *  5. Malformed tokens are refused by the client before anything is sent;
 *     bad user names and duplicate users by `user add`.
 *  6. After --auth-failures wrong tokens from one address, its tokens not
 *     verified before are refused ("too many failed authentications") for
 *     10 s, the right one too, while a token verified before passes.
 *  7. Users written before the broker's first start: `user add` on a
 *     directory that does not exist yet makes it (mode 0700), and runneld
 *     then initialises it and requires the token; `user list` on a missing
 *     directory says so.
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
    char  root[64];
    char  p[PATH_MAX + 64];
    int   nstarts;
    pid_t pid;
    int   port;
    char  data[PATH_MAX + 64];   /* the running broker's data directory */
    char  log[PATH_MAX + 64];
} fx_t;

static fx_t fx;

static const char *path(const char *name)
{
    snprintf(fx.p, sizeof fx.p, "%s/%s", fx.root, name);
    return fx.p;
}

static char *dup_path(const char *name) { return strdup(path(name)); }

static int group_setup(void **state)
{
    (void)state;
    if (rn_test_tmpdir(fx.root, sizeof fx.root, "auth") != 0) return -1;
    return rn_test_make_certs(fx.root);
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
 * (fx.data; tests/util: rn_test_runneld_start_args); it must come up. */
static rn_test_runneld_t rd;
static void start_ok(const char *const *extra)
{
    snprintf(fx.data, sizeof fx.data, "%s/data%d", fx.root, fx.nstarts++);
    assert_int_equal(mkdir(fx.data, 0755), 0);
    int exited = -1;
    int rc = rn_test_runneld_start_args(&rd, fx.data, extra, &exited);
    snprintf(fx.log, sizeof fx.log, "%s", rd.log);
    if (rc != 0) {
        print_file(fx.log);
        fail_msg("runneld did not start (%s %d)", rc == 1 ? "it exited with status" : "rc",
                 rc == 1 ? exited : rc);
    }
    fx.pid = rd.pid;
    fx.port = atoi(strrchr(rd.addr, ':') + 1);
}

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

static char *out_text, *err_text;

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

static void err_line_has(const char *a)
{
    const char *nl = strchr(err_text, '\n');
    if (!nl || nl[1] != '\0' || !strstr(err_text, a))
        fail_msg("stderr should be one line with '%s', got: %s", a, err_text);
}

/* The first line of the last run's stderr holds a (streamsql adds the
 * statement on a second line). */
static void err_first_line_has(const char *a)
{
    const char *nl = strchr(err_text, '\n'), *at = strstr(err_text, a);
    if (!nl || !at || at > nl) fail_msg("stderr's first line should have '%s', got: %s", a, err_text);
}

static int file_has(const char *p, const char *s)
{
    char *t = rn_test_slurp(p, NULL);
    int r = t && strstr(t, s) != NULL;
    free(t);
    return r;
}

static const char *addr(void)
{
    static char a[64];
    snprintf(a, sizeof a, "127.0.0.1:%d", fx.port);
    return a;
}

/* `runnel --data DATA user add name`: the token printed (static buffer). */
static const char *user_add(const char *name)
{
    static char tok[2][200];
    static int k;
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "add", name), 0);
    char *t = tok[k++ % 2];
    snprintf(t, 200, "%s", out_text);
    char *nl = strchr(t, '\n');
    assert_non_null(nl);
    *nl = 0;
    assert_true(strlen(t) > strlen(name) + 40);
    return t;
}

static char *input;

/* Every RPC kind the CLIs reach, with the token arguments targs (2 strings
 * or NULLs), each expected to exit want; on refusal stderr names why. */
static void every_rpc(const char *t0, const char *t1, int want, const char *why)
{
    const char *a = addr();
#define CHECK(prog, in, ...) do {                                                  \
        int rc_ = t0 ? RUN(prog, in, "--server", a, t0, t1, __VA_ARGS__)           \
                     : RUN(prog, in, "--server", a, __VA_ARGS__);                  \
        if (rc_ != want) fail_msg("%s %s: exit %d, want %d; stderr: %s", #prog,     \
                                  #__VA_ARGS__, rc_, want, err_text);              \
        if (why) err_first_line_has(why);                                          \
    } while (0)
    CHECK(RUNNEL, NULL, "topic", "list");
    CHECK(RUNNEL, NULL, "topic", "create", "made");
    CHECK(RUNNEL, input, "produce", "t");
    CHECK(RUNNEL, NULL, "consume", "t", "--count", "1");
    CHECK(RUNNEL, NULL, "group", "list");
    CHECK(RUNNEL, NULL, "pipeline", "list");
    CHECK(STREAMSQL, NULL, "-e", "SELECT count(*) AS n FROM t");
#undef CHECK
}

/* 1 and 2. */
static void test_tokens(void **state)
{
    (void)state;
    /* every wrong-token message here, none cut short by the failure limit
     * (test_failure_limit) */
    start_ok((const char *const[]){"--auth-failures", "0", NULL});
    const char *a = addr();
    input = dup_path("in.txt");
    rn_test_write_file(input, "one\n", 4);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "create", "t"), 0);
    every_rpc(NULL, NULL, 0, NULL);                               /* 1 */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "delete", "made"), 0);

    char tok[200];
    snprintf(tok, sizeof tok, "%s", user_add("alice"));
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "list"), 0);
    assert_string_equal(out_text, "alice\n");
    char users[PATH_MAX + 128];
    snprintf(users, sizeof users, "%s/users", fx.data);
    const char *secret = strchr(tok, '.') + 1;
    assert_false(file_has(users, secret));                       /* no token in clear */
    assert_true(file_has(users, "alice pbkdf2-sha256 100000 "));
    struct stat st;
    assert_int_equal(stat(users, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    every_rpc(NULL, NULL, 1, "no credentials: give --token or RUNNEL_TOKEN");
    char wrong[200];
    snprintf(wrong, sizeof wrong, "%s", tok);
    wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'A' ? 'B' : 'A';
    every_rpc("--token", wrong, 1, "unknown or wrong token");
    every_rpc("--token", "bob.AAAA", 1, "unknown or wrong token");
    /* Nothing the refused calls asked for happened. */
    every_rpc("--token", tok, 0, NULL);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "consume", "t"), 0);
    assert_string_equal(out_text, "one\none\n");               /* 1 + the last run */
    /* RUNNEL_TOKEN. */
    setenv("RUNNEL_TOKEN", tok, 1);
    int rc = RUN(RUNNEL, NULL, "--server", a, "topic", "list");
    int rc2 = RUN(STREAMSQL, NULL, "--server", a, "-e", "SELECT 1 AS x FROM t");
    unsetenv("RUNNEL_TOKEN");
    assert_int_equal(rc, 0);
    assert_int_equal(rc2, 0);
    /* A token over plaintext beyond loopback (0.0.0.0 reaches this host) is
     * warned about; over loopback it is not. */
    char any[64];
    snprintf(any, sizeof any, "0.0.0.0:%d", fx.port);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", any, "--token", tok, "topic", "list"), 0);
    err_line_has("warning: the token goes in clear to 0.0.0.0:");
    assert_int_equal(RUN(STREAMSQL, NULL, "--server", any, "--token", tok, "-e",
                         "SELECT 1 AS x FROM t"), 0);
    err_line_has("warning: the token goes in clear");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 0);
    assert_string_equal(err_text, "");
    /* The log names the peer, never a token. */
    assert_true(file_has(fx.log, "auth: refused a call from ipv4:127.0.0.1:"));
    assert_false(file_has(fx.log, secret));
    assert_false(file_has(fx.log, strchr(wrong, '.') + 1));
    stop();
}

/* 3. */
static void test_revoke(void **state)
{
    (void)state;
    start_ok(NULL);
    const char *a = addr();
    char tok[200];
    snprintf(tok, sizeof tok, "%s", user_add("alice"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "create", "t"), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "remove", "alice"), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 1);
    err_line_has("unknown or wrong token");
    /* The file is now empty of users, yet the broker requires tokens again
     * only when one exists: with none, anyone is let in (documented). */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "list"), 0);
    char tb[200];
    snprintf(tb, sizeof tb, "%s", user_add("bob"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "list"), 1);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tb, "topic", "list"), 0);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 1);
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "remove", "alice"), 1);
    err_line_has("no user alice");
    stop();
}

/* 4. */
static void test_mtls_and_require(void **state)
{
    (void)state;
    char *ca = dup_path("ca.pem"), *srv = dup_path("srv.pem"), *srvkey = dup_path("srv.key");
    char *cli = dup_path("cli.pem"), *clikey = dup_path("cli.key");
    start_ok((const char *const[]){"--tls-cert", srv, "--tls-key", srvkey, "--tls-client-ca",
                                   ca, NULL});
    const char *a = addr();
    (void)user_add("alice");
    /* The verified certificate (CN=client1) is the principal: no token. */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "topic", "create", "t"), 0);
    assert_int_equal(RUN(STREAMSQL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "-e", "SELECT count(*) AS n FROM t"), 0);
    /* A wrong token is not saved by the certificate. */
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--tls-ca", ca, "--tls-cert", cli,
                         "--tls-key", clikey, "--token", "alice.nope", "topic", "list"), 1);
    err_line_has("unknown or wrong token");
    stop();

    start_ok((const char *const[]){"--require-auth", NULL});
    a = addr();
    assert_true(file_has(fx.log, "--require-auth"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "list"), 1);
    err_line_has("no credentials");
    char tok[200];
    snprintf(tok, sizeof tok, "%s", user_add("dave"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 0);
    stop();
    free(ca); free(srv); free(srvkey); free(cli); free(clikey);
}

/* 5. */
static void test_bad_input(void **state)
{
    (void)state;
    start_ok(NULL);
    const char *a = addr();
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", "has space", "topic", "list"),
                     2);
    err_line_has("--token: not printable ASCII");
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "--token", "x", "topic", "list"), 2);
    err_line_has("not a data directory");
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "add", "a.b"), 1);
    err_line_has("bad user name");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "user", "list"), 2);
    err_line_has("give --data DIR");
    (void)user_add("erin");
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "add", "erin"), 1);
    err_line_has("user erin exists");
    stop();
}

/* --auth-failures 3: three wrong tokens are told so; from the fourth on,
 * tokens from this address that were not verified before are refused
 * without a key derivation, the right one too, while a token verified
 * before passes; after 10 s the address may try again. */
static void test_failure_limit(void **state)
{
    (void)state;
    start_ok((const char *const[]){"--auth-failures", "3", NULL});
    const char *a = addr();
    char tok[200], known[200], wrong[200];
    snprintf(tok, sizeof tok, "%s", user_add("dave"));
    snprintf(known, sizeof known, "%s", user_add("erin"));
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", known, "topic", "list"), 0);
    snprintf(wrong, sizeof wrong, "%s", tok);
    wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'A' ? 'B' : 'A';
    for (int i = 0; i < 3; i++) {
        assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", wrong, "topic", "list"), 1);
        err_line_has("unknown or wrong token");
    }
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", wrong, "topic", "list"), 1);
    err_line_has("too many failed authentications from this address");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 1);
    err_line_has("too many failed authentications from this address");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", known, "topic", "list"), 0);
    assert_true(file_has(fx.log, "3 failed authentications from 127.0.0.1 within 10 s"));
    rn_test_sleep_ms(10500);
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "list"), 0);
    stop();
}

/* 7. */
static void test_users_before_first_start(void **state)
{
    (void)state;
    snprintf(fx.data, sizeof fx.data, "%s/fresh%d", fx.root, fx.nstarts++);
    assert_int_equal(RUN(RUNNEL, NULL, "--data", fx.data, "user", "list"), 1);
    err_line_has("No such file or directory");
    char tok[200];
    snprintf(tok, sizeof tok, "%s", user_add("frank"));
    struct stat st;
    assert_int_equal(stat(fx.data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    int exited = -1;
    if (rn_test_runneld_start_args(&rd, fx.data, NULL, &exited) != 0) {
        print_file(rd.log);
        fail_msg("runneld did not start on a directory holding only its users file");
    }
    snprintf(fx.log, sizeof fx.log, "%s", rd.log);
    fx.pid = rd.pid;
    fx.port = atoi(strrchr(rd.addr, ':') + 1);
    const char *a = addr();
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "topic", "list"), 1);
    err_line_has("no credentials");
    assert_int_equal(RUN(RUNNEL, NULL, "--server", a, "--token", tok, "topic", "create", "t"), 0);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tokens, teardown),
        cmocka_unit_test_teardown(test_revoke, teardown),
        cmocka_unit_test_teardown(test_mtls_and_require, teardown),
        cmocka_unit_test_teardown(test_bad_input, teardown),
        cmocka_unit_test_teardown(test_failure_limit, teardown),
        cmocka_unit_test_teardown(test_users_before_first_start, teardown),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    free(out_text);
    free(err_text);
    free(input);
    return rc;
}

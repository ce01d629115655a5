/*
 * test_kafka_sasl.c — SASL and TLS on runneld's Kafka front, end to end: a
 * real runneld on loopback, users made by the real `runnel user add`,
 * certificates made at test time by `openssl` (tests/util rn_test_make_certs),
 * and the real clients: kcat and confluent-kafka (librdkafka's SCRAM and
 * PLAIN), kafka-python (its own SCRAM client and SaslHandshake v0 with raw
 * tokens: an independent implementation that also checks the broker's
 * ServerSignature), driven by tests/kafka/sasl.py.
 *
 *  1. Plaintext listener with a user: SCRAM-SHA-256 produces and reads back
 *     with kcat, confluent-kafka and kafka-python, and a hand-made
 *     SaslAuthenticate v2 exchange (sasl.py raw-v2) checks the server's
 *     signature, error 58 and the close after it; a wrong password and an
 *     unknown user are refused (the broker logs SASL authentication failed
 *     with the peer); PLAIN in clear is refused and says why; a client
 *     without SASL is closed at its first request (logged); a Produce frame
 *     sent before authenticating closes the connection and stores nothing,
 *     and so does a frame over the pre-authentication limit (512 KiB).
 *  2. A removed user (`runnel user remove`) is refused on its next
 *     connection.
 *  3. TLS listener (--tls-cert/--tls-key): SASL_SSL with PLAIN and with
 *     SCRAM-SHA-256 (kcat, confluent-kafka); a plaintext client is closed
 *     with a log line naming the TLS handshake; a wrong PLAIN password is
 *     refused.
 *  4. Mutual TLS (--tls-client-ca) with a user in the file: a client
 *     certificate from the CA is a principal (its CN, logged; SSL, no SASL,
 *     produces and reads back); one from another CA, and none, are refused.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

#include <netinet/tcp.h>

#define PY       "/usr/bin/python3"
#define KCAT     "/usr/bin/kcat"
#define RUNNEL   RN_BIN_DIR "/runnel"
#define SCRIPT   RN_SOURCE_DIR "/tests/kafka/sasl.py"
#define RUN_S    60

typedef struct kx {
    srv_t *s;
    char   kafka[64];                 /* "127.0.0.1:PORT" */
    char   out[PATH_MAX], err[PATH_MAX];
} kx_t;

static char certs[64];                /* the group's certificates */
static char cbuf[8][PATH_MAX];

/* certs/name (one of 8 rotating buffers). */
static const char *cert(const char *name)
{
    static int k;
    char *b = cbuf[k++ % 8];
    snprintf(b, PATH_MAX, "%s/%s", certs, name);
    return b;
}

static int group_setup(void **state)
{
    (void)state;
    if (rn_test_tmpdir(certs, sizeof certs, "ksasl") != 0) return -1;
    return rn_test_make_certs(certs);
}

static int group_teardown(void **state)
{
    (void)state;
    return rn_test_rmtree(certs);
}

static void print_file(const char *what, const char *path)
{
    char *t = rn_test_slurp(path, NULL);
    fprintf(stderr, "---- %s ----\n%s", what, t ? t : "");
    free(t);
}

/* Start a broker with a Kafka listener and extra flags (NULL-terminated,
 * strings that outlive it). */
static kx_t *broker(const char *const *extra)
{
    const char *all[16] = {"--kafka-listen", "127.0.0.1:0"};
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 15; i++) all[n++] = extra[i];
    all[n] = NULL;
    kx_t *x = calloc(1, sizeof *x);
    assert_non_null(x);
    x->s = srv_alloc("group", SRV_MAX_BATCH, all);
    assert_non_null(x->s);
    srv_start(x->s);
    FILE *f = fopen(x->s->portf, "r");
    int g = 0, k = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d %d", &g, &k), 2);
    fclose(f);
    snprintf(x->kafka, sizeof x->kafka, "127.0.0.1:%d", k);
    snprintf(x->out, sizeof x->out, "%s/cmd.out", x->s->root);
    snprintf(x->err, sizeof x->err, "%s/cmd.err", x->s->root);
    return x;
}

static void broker_stop(kx_t *x)
{
    void *sv = x->s;
    assert_int_equal(srv_teardown(&sv), 0);
    free(x);
}

/* Run argv bounded by RUN_S seconds, stdin from in (NULL: none): its exit
 * status (124 on timeout). */
static int run(kx_t *x, const char *const *argv, const char *in)
{
    const char *t[48] = {"timeout", "-k", "5", NULL};
    char secs[16];
    snprintf(secs, sizeof secs, "%d", RUN_S);
    t[3] = secs;
    int n = 4;
    for (int i = 0; argv[i] && n < 47; i++) t[n++] = argv[i];
    t[n] = NULL;
    int st = rn_test_run("/usr/bin/timeout", t, in, x->out, x->err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void show(kx_t *x, const char *const *argv)
{
    fprintf(stderr, "command:");
    for (int i = 0; argv[i]; i++) fprintf(stderr, " %s", argv[i]);
    fputc('\n', stderr);
    print_file("stdout", x->out);
    print_file("stderr", x->err);
    srv_print_log(x->s);
}

static void run_ok(kx_t *x, const char *const *argv, const char *in)
{
    int st = run(x, argv, in);
    if (st != 0) {
        show(x, argv);
        fail_msg("%s exited with status %d", argv[0], st);
    }
    char *o = rn_test_slurp(x->out, NULL);
    if (o) fputs(o, stdout);
    free(o);
}

static void run_fails(kx_t *x, const char *const *argv, const char *in)
{
    int st = run(x, argv, in);
    if (st == 0) {
        show(x, argv);
        fail_msg("%s succeeded; it should have been refused", argv[0]);
    }
}

/* `runnel --data DATA user add name`: the SASL password (the token's part
 * after "name."), in a static buffer of 2. */
static const char *user_add(kx_t *x, const char *name)
{
    static char pw[2][200];
    static int k;
    const char *argv[] = {RUNNEL, "--data", x->s->data, "user", "add", name, NULL};
    run_ok(x, argv, NULL);
    char *t = rn_test_slurp(x->out, NULL);
    assert_non_null(t);
    size_t nl = strlen(name);
    assert_true(strncmp(t, name, nl) == 0 && t[nl] == '.');
    char *p = pw[k++ % 2];
    snprintf(p, 200, "%s", t + nl + 1);
    free(t);
    char *e = strchr(p, '\n');
    assert_non_null(e);
    *e = 0;
    return p;
}

static void user_remove(kx_t *x, const char *name)
{
    const char *argv[] = {RUNNEL, "--data", x->s->data, "user", "remove", name, NULL};
    run_ok(x, argv, NULL);
}

/* The broker's log holds needle (waiting up to 5 s for it). */
static void log_has(kx_t *x, const char *needle)
{
    for (int i = 0; i < 500; i++) {
        char *t = rn_test_slurp(x->s->logf, NULL);
        int yes = t && strstr(t, needle);
        free(t);
        if (yes) return;
        rn_test_sleep_ms(10);
    }
    srv_print_log(x->s);
    fail_msg("the broker's log does not say '%s'", needle);
}

/* kcat arguments for a SASL client: -b BOOT -X ... into a (from index n). */
static int kcat_sasl(const char **a, int n, kx_t *x, const char *proto, const char *mech,
                     const char *user, const char *pw)
{
    static char u[8][128], p[8][256];
    static int k;
    int i = k++ % 8;
    snprintf(u[i], sizeof u[i], "sasl.username=%s", user);
    snprintf(p[i], sizeof p[i], "sasl.password=%s", pw);
    static char proto_x[8][64], mech_x[8][64];
    snprintf(proto_x[i], sizeof proto_x[i], "security.protocol=%s", proto);
    snprintf(mech_x[i], sizeof mech_x[i], "sasl.mechanisms=%s", mech);
    a[n++] = "-b";
    a[n++] = x->kafka;
    a[n++] = "-X";
    a[n++] = proto_x[i];
    a[n++] = "-X";
    a[n++] = mech_x[i];
    a[n++] = "-X";
    a[n++] = u[i];
    a[n++] = "-X";
    a[n++] = p[i];
    return n;
}

/* kcat -C of topic from the start: the values, one a line (malloc'd). */
static char *kcat_consume(kx_t *x, const char *proto, const char *mech, const char *user,
                          const char *pw, const char *ca, const char *topic)
{
    const char *a[40] = {KCAT};
    int n = kcat_sasl(a, 1, x, proto, mech, user, pw);
    static char cax[PATH_MAX + 32];
    if (ca) {
        snprintf(cax, sizeof cax, "ssl.ca.location=%s", ca);
        a[n++] = "-X";
        a[n++] = cax;
    }
    a[n++] = "-C";
    a[n++] = "-t";
    a[n++] = topic;
    a[n++] = "-o";
    a[n++] = "beginning";
    a[n++] = "-e";
    a[n++] = "-q";
    a[n] = NULL;
    run_ok(x, a, NULL);
    return rn_test_slurp(x->out, NULL);
}

/* A file of lines "<prefix>-<i>" for i < n; its path. */
static const char *lines_file(kx_t *x, const char *prefix, int n)
{
    static char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/in-%s.txt", x->s->root, prefix);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) fprintf(f, "%s-%d\n", prefix, i);
    fclose(f);
    return p;
}

static void kcat_produce(kx_t *x, const char *proto, const char *mech, const char *user,
                         const char *pw, const char *ca, const char *topic, const char *in,
                         int ok)
{
    const char *a[40] = {KCAT};
    int n = kcat_sasl(a, 1, x, proto, mech, user, pw);
    static char cax[PATH_MAX + 32];
    if (ca) {
        snprintf(cax, sizeof cax, "ssl.ca.location=%s", ca);
        a[n++] = "-X";
        a[n++] = cax;
    }
    a[n++] = "-P";
    a[n++] = "-t";
    a[n++] = topic;
    a[n] = NULL;
    if (ok) run_ok(x, a, in);
    else run_fails(x, a, in);
}

/* ---- 1. plaintext listener, SCRAM ----------------------------------------------- */

static void test_scram_plaintext(void **state)
{
    (void)state;
    kx_t *x = broker(NULL);
    const char *pw = user_add(x, "alice");
    kcat_produce(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", pw, NULL, "scram-kcat",
                 lines_file(x, "k", 20), 1);
    char *got = kcat_consume(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", pw, NULL,
                             "scram-kcat");
    assert_non_null(strstr(got, "k-0\n"));
    assert_non_null(strstr(got, "k-19\n"));
    free(got);
    const char *rdk[] = {PY, SCRIPT, "rdk", x->kafka, "SASL_PLAINTEXT", "SCRAM-SHA-256",
                         "alice", pw, "-", "scram-rdk", "50", NULL};
    run_ok(x, rdk, NULL);
    /* kafka-python: its own SCRAM client (SaslHandshake v0, raw tokens). */
    const char *kp[] = {PY, SCRIPT, "kp", x->kafka, "alice", pw, "scram-kp", "30", NULL};
    run_ok(x, kp, NULL);
    /* What kafka-python wrote, read by librdkafka (and the other way round
     * above): both sides agree on the same authenticated broker. */
    got = kcat_consume(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", pw, NULL, "scram-kp");
    assert_non_null(strstr(got, "m-29\n"));
    free(got);
    /* SaslAuthenticate v2 (flexible) by hand: a third SCRAM client, and the
     * exact error code and message of a wrong proof. */
    const char *raw[] = {PY, SCRIPT, "raw-v2", x->kafka, "alice", pw, NULL};
    run_ok(x, raw, NULL);
    log_has(x, "authenticated as alice (SCRAM-SHA-256)");    /* the connection's principal */
    broker_stop(x);
}

static void test_refusals_plaintext(void **state)
{
    (void)state;
    kx_t *x = broker(NULL);
    const char *pw = user_add(x, "alice");
    char wrong[200];
    snprintf(wrong, sizeof wrong, "%s", pw);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    /* A wrong password and an unknown user: SASL_AUTHENTICATION_FAILED. */
    kcat_produce(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", wrong, NULL, "refused",
                 lines_file(x, "w", 1), 0);
    log_has(x, "SASL authentication failed: SASL SCRAM-SHA-256: wrong password or unknown "
            "user 'alice'");
    const char *rdk[] = {PY, SCRIPT, "rdk-refused", x->kafka, "SASL_PLAINTEXT",
                         "SCRAM-SHA-256", "mallory", pw, "-", NULL};
    run_ok(x, rdk, NULL);
    log_has(x, "unknown user 'mallory'");
    const char *kp[] = {PY, SCRIPT, "kp-refused", x->kafka, "alice", wrong, NULL};
    run_ok(x, kp, NULL);
    /* PLAIN in clear: refused, saying why. */
    kcat_produce(x, "SASL_PLAINTEXT", "PLAIN", "alice", pw, NULL, "refused",
                 lines_file(x, "p", 1), 0);
    log_has(x, "SASL PLAIN refused on a plaintext connection");
    /* No SASL at all: closed at the first request. */
    const char *plain[] = {KCAT, "-b", x->kafka, "-P", "-t", "refused", NULL};
    run_fails(x, plain, lines_file(x, "n", 1));
    log_has(x, "Metadata before authenticating");
    /* A Produce frame as the very first request: the connection is closed,
     * nothing answered, nothing stored. */
    kcat_produce(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", pw, NULL, "guarded",
                 lines_file(x, "g", 3), 1);
    int kp_port = atoi(strrchr(x->kafka, ':') + 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)kp_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    /* Produce v3: transactional_id null, acks 1, timeout, one topic
     * "guarded", partition 0, a record set of 4 bytes (never parsed). */
    uint8_t fr[128];
    size_t n = 4;
    uint8_t hdr[] = {0, 0, 0, 3, 0, 0, 0, 7, 0xff, 0xff,        /* key, version, corr, client */
                     0xff, 0xff, 0, 1, 0, 0, 0x27, 0x10,        /* txn null, acks, timeout */
                     0, 0, 0, 1, 0, 7, 'g', 'u', 'a', 'r', 'd', 'e', 'd',
                     0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4};
    memcpy(fr + n, hdr, sizeof hdr);
    n += sizeof hdr;
    put_be32(fr, (uint32_t)(n - 4));
    assert_int_equal(write(fd, fr, n), (ssize_t)n);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t rb[64];
    assert_int_equal(read(fd, rb, sizeof rb), 0);          /* closed, no answer */
    close(fd);
    log_has(x, "Produce before authenticating");
    /* A frame larger than the pre-authentication limit: closed at its size,
     * before anything is allocated for it. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    put_be32(fr, 1u << 20);
    assert_int_equal(write(fd, fr, 4), 4);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(read(fd, rb, sizeof rb), 0);
    close(fd);
    log_has(x, "before authenticating, frames are limited to 524288 bytes");
    char *got = kcat_consume(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "alice", pw, NULL, "guarded");
    assert_string_equal(got, "g-0\ng-1\ng-2\n");
    free(got);
    broker_stop(x);
}

/* ---- 2. revocation ------------------------------------------------------------------ */

static void test_removed_user(void **state)
{
    (void)state;
    kx_t *x = broker(NULL);
    const char *pw = user_add(x, "carol");
    char keep[200];
    snprintf(keep, sizeof keep, "%s", pw);
    (void)user_add(x, "dave");                 /* authentication stays required */
    kcat_produce(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "carol", keep, NULL, "rm",
                 lines_file(x, "r", 2), 1);
    user_remove(x, "carol");
    kcat_produce(x, "SASL_PLAINTEXT", "SCRAM-SHA-256", "carol", keep, NULL, "rm",
                 lines_file(x, "s", 2), 0);
    log_has(x, "unknown user 'carol'");
    broker_stop(x);
}

/* ---- 3. TLS ------------------------------------------------------------------------- */

static void test_sasl_ssl(void **state)
{
    (void)state;
    static char c[PATH_MAX], k[PATH_MAX];
    snprintf(c, sizeof c, "%s", cert("srv.pem"));
    snprintf(k, sizeof k, "%s", cert("srv.key"));
    const char *extra[] = {"--tls-cert", c, "--tls-key", k, NULL};
    kx_t *x = broker(extra);
    const char *pw = user_add(x, "erin");
    char ca[PATH_MAX];
    snprintf(ca, sizeof ca, "%s", cert("ca.pem"));
    kcat_produce(x, "SASL_SSL", "PLAIN", "erin", pw, ca, "ssl-plain", lines_file(x, "a", 5), 1);
    kcat_produce(x, "SASL_SSL", "SCRAM-SHA-256", "erin", pw, ca, "ssl-plain",
                 lines_file(x, "b", 5), 1);
    char *got = kcat_consume(x, "SASL_SSL", "PLAIN", "erin", pw, ca, "ssl-plain");
    assert_string_equal(got, "a-0\na-1\na-2\na-3\na-4\nb-0\nb-1\nb-2\nb-3\nb-4\n");
    free(got);
    const char *r1[] = {PY, SCRIPT, "rdk", x->kafka, "SASL_SSL", "PLAIN", "erin", pw, ca,
                        "ssl-rdk-plain", "40", NULL};
    run_ok(x, r1, NULL);
    const char *r2[] = {PY, SCRIPT, "rdk", x->kafka, "SASL_SSL", "SCRAM-SHA-256", "erin", pw,
                        ca, "ssl-rdk-scram", "40", NULL};
    run_ok(x, r2, NULL);
    /* A wrong PLAIN password over TLS. */
    const char *r3[] = {PY, SCRIPT, "rdk-refused", x->kafka, "SASL_SSL", "PLAIN", "erin",
                        "not-the-password", ca, NULL};
    run_ok(x, r3, NULL);
    log_has(x, "SASL PLAIN: wrong password or unknown user 'erin'");
    /* A plaintext client on the TLS port. */
    const char *plain[] = {KCAT, "-b", x->kafka, "-L", NULL};
    run_fails(x, plain, NULL);
    log_has(x, "TLS handshake");
    log_has(x, "(a plaintext client on the TLS port, or a certificate not trusted)");
    broker_stop(x);
}

/* ---- 4. mutual TLS ------------------------------------------------------------------ */

static void test_mtls(void **state)
{
    (void)state;
    static char c[PATH_MAX], k[PATH_MAX], a[PATH_MAX];
    snprintf(c, sizeof c, "%s", cert("srv.pem"));
    snprintf(k, sizeof k, "%s", cert("srv.key"));
    snprintf(a, sizeof a, "%s", cert("ca.pem"));
    const char *extra[] = {"--tls-cert", c, "--tls-key", k, "--tls-client-ca", a, NULL};
    kx_t *x = broker(extra);
    (void)user_add(x, "frank");                /* authentication required */
    const char *ok[] = {PY, SCRIPT, "rdk", x->kafka, "SSL", "-", "-", "-", a, "mtls", "20",
                        cert("cli.pem"), cert("cli.key"), NULL};
    run_ok(x, ok, NULL);
    log_has(x, "authenticated as client1 (client certificate)");
    const char *other[] = {PY, SCRIPT, "rdk-refused", x->kafka, "SSL", "-", "-", "-", a,
                           cert("cli2.pem"), cert("cli2.key"), NULL};
    run_ok(x, other, NULL);
    log_has(x, "certificate");
    const char *none[] = {PY, SCRIPT, "rdk-refused", x->kafka, "SSL", "-", "-", "-", a, NULL};
    run_ok(x, none, NULL);
    broker_stop(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_plaintext),
        cmocka_unit_test(test_refusals_plaintext),
        cmocka_unit_test(test_removed_user),
        cmocka_unit_test(test_sasl_ssl),
        cmocka_unit_test(test_mtls),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

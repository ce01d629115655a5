/*
 * tests/util/util.c — what the cmocka tests share, so each test file holds
 * only what it tests:
 *   - temporary directories: mkdtemp under /tmp and recursive removal;
 *   - a set-up that puts the real system calls back (common/sys.h);
 *   - seeded randomness: the seed from RN_SEED or the clock, printed;
 *   - files and child processes: read/write a whole file, run a program with
 *     its stdin, stdout and stderr redirected to files;
 *   - a real runneld on a free loopback port (test_cli_server.c,
 *     test_client_remote.c; test_server.h keeps its own starter);
 *   - batches of numbered text records through rn_batch_builder.
 *
 * Invariants:
 *   1. Removal never leaves its root: nftw runs with FTW_PHYS (a symlink is
 *      removed, never followed) and FTW_MOUNT (no other file system).
 *   2. Every helper that can fail either fails the running test through a
 *      cmocka assertion (those that return data) or returns -1 after one
 *      message on stderr naming what failed (those fixtures call, where a
 *      set-up or tear-down reports by its return value).
 *   3. Every wait on a child is bounded in time, and no child outlives the
 *      helper that failed to start or stop it.
 *   4. Nothing here keeps state between calls: the random state is the
 *      caller's, and each runneld lives in the caller's rn_test_runneld_t.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "etl/etl.h"
#include "common/sys.h"
#include "logical-queues/consumer.h"
#include "logical-queues/datadir.h"
#include "logical-queues/meta.h"
#include "tests/util/util.h"

/* ---- temporary directories ---------------------------------------------- */

int rn_test_tmpdir(char *out, size_t cap, const char *tag)
{
    int n = snprintf(out, cap, "/tmp/rn-%s-XXXXXX", tag);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "rn_test_tmpdir: tag '%s' too long for %zu bytes\n", tag, cap);
        return -1;
    }
    if (!mkdtemp(out)) {
        fprintf(stderr, "rn_test_tmpdir: mkdtemp %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

char *rn_test_tmpdir_new(const char *tag)
{
    char buf[PATH_MAX];
    if (rn_test_tmpdir(buf, sizeof buf, tag) != 0) fail_msg("cannot create a temporary directory");
    char *d = strdup(buf);
    assert_non_null(d);
    return d;
}

/* nftw passes no user pointer: the failure count of the walk in progress. */
static int rmtree_failures;

static int rmtree_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    if (flag == FTW_DNR || flag == FTW_NS) {
        fprintf(stderr, "rn_test_rmtree: cannot read %s\n", path);
        rmtree_failures++;
    }
    if (remove(path) != 0) {
        fprintf(stderr, "rn_test_rmtree: remove %s: %s\n", path, strerror(errno));
        rmtree_failures++;
    }
    return 0;                       /* go on: remove as much as possible */
}

int rn_test_rmtree(const char *root)
{
    struct stat st;
    if (lstat(root, &st) != 0 && errno == ENOENT) return 0;
    rmtree_failures = 0;
    if (nftw(root, rmtree_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0) {
        fprintf(stderr, "rn_test_rmtree: walking %s: %s\n", root, strerror(errno));
        return -1;
    }
    return rmtree_failures ? -1 : 0;
}

int rn_test_tmpdir_free(char *d)
{
    if (!d) return 0;
    int rc = rn_test_rmtree(d);
    free(d);
    return rc;
}

int rn_test_reset_sys(void **state)
{
    (void)state;
    rn_sys_reset();
    return 0;
}

/* ---- seeded randomness -------------------------------------------------- */

uint64_t rn_test_seed(const char *name)
{
    const char *s = getenv("RN_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
    if (seed == 0) seed = 1;
    printf("%s: seed %llu (RN_SEED=%llu to replay)\n", name, (unsigned long long)seed,
           (unsigned long long)seed);
    return seed;
}

uint64_t rn_test_rng(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ---- files and child processes ------------------------------------------ */

char *rn_test_slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    if (len) *len = (size_t)n;
    return buf;
}

void rn_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) fail_msg("create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

int rn_test_run(const char *prog, const char *const *argv, const char *in_path,
                const char *out_path, const char *err_path)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rn_test_run: fork for %s: %s\n", prog, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0); dup2(out, 1); dup2(err, 2);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) != pid) {
        if (errno == EINTR) continue;
        fprintf(stderr, "rn_test_run: waitpid for %s: %s\n", prog, strerror(errno));
        return -1;
    }
    return status;
}

/* ---- a real runneld ----------------------------------------------------- */

#define RUNNELD RN_BIN_DIR "/runneld"

void rn_test_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int rn_test_runneld_start_args(rn_test_runneld_t *r, const char *data,
                               const char *const *extra, int *exited)
{
    memset(r, 0, sizeof *r);
    *exited = -1;
    snprintf(r->data, sizeof r->data, "%s", data);
    snprintf(r->portfile, sizeof r->portfile, "%s.port", data);
    snprintf(r->log, sizeof r->log, "%s.runneld.log", data);
    unlink(r->portfile);
    /* --store-root: the test's directory (data's parent), so that `queue remap
     * --store` over the network works as embedded for stores placed there;
     * runneld refuses uid 0 without --allow-root. */
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", data);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) *slash = '\0';
    else snprintf(parent, sizeof parent, ".");
    const char *argv[64] = {RUNNELD, "--data", r->data, "--listen", "127.0.0.1:0",
                            "--port-file", r->portfile, "--store-root", parent};
    int argc = 9;
    if (getuid() == 0) argv[argc++] = "--allow-root";
    for (int i = 0; extra && extra[i] && argc < 63; i++) argv[argc++] = extra[i];
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "runneld: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int log = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (log < 0 || null < 0) _exit(126);
        dup2(null, 0);
        dup2(log, 1);
        dup2(log, 2);
        execv(RUNNELD, (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 1000; i++) {                 /* at most 10 s */
        FILE *fp = fopen(r->portfile, "r");
        int port = 0;
        if (fp) {
            if (fscanf(fp, "%d", &port) != 1) port = 0;
            fclose(fp);
        }
        if (port > 0) {
            snprintf(r->addr, sizeof r->addr, "127.0.0.1:%d", port);
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *exited = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            r->pid = 0;
            return 1;
        }
        rn_test_sleep_ms(10);
    }
    fprintf(stderr, "runneld did not write %s within 10 s\n", r->portfile);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    r->pid = 0;
    return -1;
}

int rn_test_runneld_start(rn_test_runneld_t *r, const char *data, const char *fsync)
{
    const char *extra[] = {fsync ? "--fsync" : NULL, fsync, NULL};
    int exited;
    int rc = rn_test_runneld_start_args(r, data, extra, &exited);
    if (rc == 1) fprintf(stderr, "runneld exited before listening (status %d); see %s\n",
                         exited, r->log);
    return rc == 0 ? 0 : -1;
}

int rn_test_runneld_stop(rn_test_runneld_t *r)
{
    if (r->pid <= 0) return -1;
    kill(r->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 2000; i++) {                 /* at most 20 s */
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        rn_test_sleep_ms(10);
    }
    fprintf(stderr, "runneld did not stop within 20 s of SIGTERM; killed; see %s\n", r->log);
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return -1;
}

/* ---- batches of numbered text records ----------------------------------- */

void rn_test_batch_build(rn_batch_builder_t *b, const rn_test_records_t *spec,
                         const uint8_t **out, size_t *len)
{
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    assert_int_equal(rn_batch_builder_init(b, &o), 0);
    const char *prefix = spec->prefix ? spec->prefix : "";
    const char *suffix = spec->suffix ? spec->suffix : "";
    char val[512], hv[24];
    for (int i = 0; i < spec->n; i++) {
        int64_t num = spec->first + i;
        int n = snprintf(val, sizeof val, "%s%" PRId64 "%s", prefix, num, suffix);
        assert_true(n >= 0 && (size_t)n < sizeof val);
        while ((size_t)n < spec->pad && (size_t)n < sizeof val - 1) val[n++] = 'x';
        rn_record_t r;
        memset(&r, 0, sizeof r);
        rn_header_t h;
        if (spec->header_key) {
            snprintf(hv, sizeof hv, "%" PRId64, num);
            h.key = (const uint8_t *)spec->header_key;
            h.key_len = (int32_t)strlen(spec->header_key);
            h.value = (const uint8_t *)hv;
            h.value_len = (int32_t)strlen(hv);
            r.headers = &h;
            r.header_count = 1;
        }
        r.timestamp = spec->ts ? spec->ts[i] : spec->ts0 + (int64_t)i * spec->ts_step;
        r.key = NULL;
        r.key_len = -1;
        r.value = (const uint8_t *)val;
        r.value_len = n;
        assert_int_equal(rn_batch_builder_add(b, &r), 0);
    }
    assert_int_equal(rn_batch_builder_finish(b, out, len), 0);
}

char *rn_test_read_queue(rn_datadir_t *d, const char *topic, uint32_t q, size_t *count)
{
    char err[RN_ERRMSG_SIZE];
    rn_consumer_t *c = NULL;
    rn_buf_t out = {0};
    rn_consumer_batch_t b;
    int rc;
    *count = 0;
    assert_int_equal(rn_consumer_create(d, NULL, &c, err), 0);
    assert_int_equal(rn_consumer_assign(c, topic, q, 0, err), 0);
    while ((rc = rn_consumer_poll(c, &b, err)) == 1) {
        for (uint32_t i = 0; i < b.count; i++) {
            const rn_record_t *r = &b.records[i];
            assert_int_equal(rn_buf_append(&out, r->value, (size_t)r->value_len, 0), 0);
            for (uint32_t h = 0; h < r->header_count; h++) {
                assert_int_equal(rn_buf_append(&out, "|", 1, 0), 0);
                assert_int_equal(rn_buf_append(&out, r->headers[h].key, r->headers[h].key_len,
                                               0), 0);
                assert_int_equal(rn_buf_append(&out, "=", 1, 0), 0);
                assert_int_equal(rn_buf_append(&out, r->headers[h].value,
                                               (size_t)r->headers[h].value_len, 0), 0);
            }
            assert_int_equal(rn_buf_append(&out, "\n", 1, 0), 0);
            (*count)++;
        }
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rn_buf_append(&out, "", 1, 0), 0);
    rn_consumer_destroy(c);
    return (char *)out.data;
}

/* The topic's queue count, 0 when it does not exist. */
static uint32_t topic_queues(rn_datadir_t *d, const char *topic)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t t;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_topic_get(m, topic, &t, err);
    rn_datadir_meta_unlock(d);
    return rc == 0 ? t.queues : 0;
}

char *rn_test_pipeline_output(rn_datadir_t *d, const char *sink, const char *file, const char *dlq)
{
    rn_buf_t all = {0};
    char line[64];
    size_t n;
    if (file) {
        char *f = rn_test_slurp(file, &n);
        assert_int_equal(rn_buf_append(&all, f, n, 0), 0);
        free(f);
    } else {
        for (uint32_t q = 0; q < topic_queues(d, sink); q++) {
            char *s = rn_test_read_queue(d, sink, q, &n);
            snprintf(line, sizeof line, "== sink queue %u: %zu\n", q, n);
            assert_int_equal(rn_buf_append(&all, line, strlen(line), 0), 0);
            assert_int_equal(rn_buf_append(&all, s, strlen(s), 0), 0);
            free(s);
        }
    }
    for (uint32_t q = 0; q < topic_queues(d, dlq); q++) {
        char *s = rn_test_read_queue(d, dlq, q, &n);
        snprintf(line, sizeof line, "== dlq queue %u: %zu\n", q, n);
        assert_int_equal(rn_buf_append(&all, line, strlen(line), 0), 0);
        assert_int_equal(rn_buf_append(&all, s, strlen(s), 0), 0);
        free(s);
    }
    assert_int_equal(rn_buf_append(&all, "", 1, 0), 0);
    return (char *)all.data;
}

int rn_test_make_certs(const char *dir)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
        "( set -e; cd '%s'\n"
        "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out $1; }\n"
        "ca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"/CN=$2\"; }\n"
        "signed() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj \"/CN=$3\";\n"
        "  printf '%%s\\n' \"$4\" > $1.ext;\n"
        "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem "
        "-days 2 -extfile $1.ext; }\n"
        "ca ca 'runnel test CA'; ca ca2 'another CA'\n"
        "signed srv ca localhost 'subjectAltName=IP:127.0.0.1,DNS:localhost'\n"
        "signed other ca other 'subjectAltName=DNS:other.example'\n"
        "signed cli ca client1 'extendedKeyUsage=clientAuth'\n"
        "signed cli2 ca2 client2 'extendedKeyUsage=clientAuth'\n"
        "echo 'this is not a certificate' > garbage.pem\n"
        ": > empty.pem\n"
        "head -c 200 srv.pem > cut.pem\n"
        ") 2> '%s/openssl.log'",
        dir, dir);
    int st = system(cmd);
    if (st != 0) {
        fprintf(stderr, "making the test certificates failed (status %d); see %s/openssl.log\n",
                st, dir);
        return -1;
    }
    return 0;
}

static long etl_kill_at, etl_points;
static const char *etl_kill_point;

static void etl_kill_hook(const char *point)
{
    if (!strcmp(point, etl_kill_point) && ++etl_points == etl_kill_at) raise(SIGKILL);
}

int rn_test_etl_child_run(const char *root, const char *name, const char *point, long kill_at)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[RN_ERRMSG_SIZE];
        rn_datadir_opts_t o;
        rn_datadir_opts_default(&o);
        o.create = 1;
        rn_datadir_t *d = NULL;
        if (rn_datadir_open(root, &o, &d, err) != 0) {
            fprintf(stderr, "%s\n", err);
            _exit(3);
        }
        etl_kill_at = kill_at;
        etl_kill_point = point;
        etl_points = 0;
        rn_etl_test_hook = etl_kill_hook;
        rn_etl_t *p = NULL;
        if (rn_etl_open(d, name, &p, err) != 0) { fprintf(stderr, "open: %s\n", err); _exit(4); }
        rn_etl_state_t st = RN_ETL_MORE;
        for (int guard = 0; st == RN_ETL_MORE && guard < 1000000; guard++)
            if (rn_etl_step(p, &st, err) != 0) { fprintf(stderr, "step: %s\n", err); _exit(5); }
        if (rn_etl_checkpoint(p, err) != 0) { fprintf(stderr, "ckpt: %s\n", err); _exit(6); }
        rn_etl_close(p);
        rn_datadir_close(d);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        assert_int_equal(WTERMSIG(status), SIGKILL);
        return 1;
    }
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) != 0) fail_msg("the pipeline run exited with %d", WEXITSTATUS(status));
    return 0;
}

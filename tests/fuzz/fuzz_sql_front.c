/*
 * fuzz_sql_front.c — libFuzzer target for the stream-SQL front end: the
 * input is the text of one statement, opened with rn_sql_open on a data
 * directory holding a topic "logs" (JSON log records) and a stream "logs_s"
 * declared over it, then stepped to its end (bounded).
 *
 * Invariants (abort() on violation, besides ASan/UBSan findings):
 *  1. rn_sql_open returns 0, or a negative code with a non-empty message
 *     and an error offset of -1 or within the statement.
 *  2. An opened statement has its columns before any row; rn_sql_step
 *     reports MORE / IDLE / DONE or a negative code with a message; every
 *     row has exactly as many values as there are columns, text and blob
 *     values are readable for their length; a bounded query reaches DONE
 *     within MAX_STEPS steps (it reads a fixed number of records).
 *  3. The fixtures stay usable: metadata statements (CREATE / DROP STREAM)
 *     may change streams, never the topic, and a plain SELECT on the topic
 *     still opens afterwards.
 */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batch.h"
#include "common/error.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STEPS 10000

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_sql_front: %s:%d: invariant failed: %s\n",     \
                    __FILE__, __LINE__, #c);                                      \
            abort();                                                              \
        }                                                                         \
    } while (0)

static rn_datadir_t *g_d;
static char g_root[PATH_MAX];
static int g_ncols;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void teardown(void)
{
    if (g_d) rn_datadir_close(g_d);
    g_d = NULL;
    if (g_root[0]) nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int on_row(void *ctx, const rn_sql_value_t *vals, int n)
{
    (void)ctx;
    CHECK(n == g_ncols);
    volatile uint8_t sink = 0;
    for (int i = 0; i < n; i++) {
        CHECK(vals[i].type >= RN_SQL_NULL && vals[i].type <= RN_SQL_BLOB);
        if ((vals[i].type == RN_SQL_TEXT || vals[i].type == RN_SQL_BLOB) && vals[i].n > 0) {
            CHECK(vals[i].s != NULL);
            sink ^= (uint8_t)vals[i].s[0] ^ (uint8_t)vals[i].s[vals[i].n - 1];
        }
    }
    (void)sink;
    return 0;
}

/* Open, step to the end (bounded), close; returns rn_sql_open's result. */
static int run(const char *sql, size_t len)
{
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = on_row;
    rn_sql_t *q = NULL;
    int erroff = -2;
    char err[RN_ERRMSG_SIZE] = "";
    int rc = rn_sql_open(g_d, sql, len, &o, &q, &erroff, err);
    if (rc != 0) {
        CHECK(rc < 0 && err[0] != '\0' && q == NULL);
        CHECK(erroff >= -1 && erroff <= (int)len);
        return rc;
    }
    const rn_sql_column_t *cols;
    rn_sql_columns(q, &cols, &g_ncols);
    CHECK(g_ncols >= 0);
    for (int i = 0; i < g_ncols; i++) CHECK(cols[i].name != NULL);
    rn_sql_state_t st = RN_SQL_MORE;
    int steps = 0;
    for (; steps < MAX_STEPS; steps++) {
        err[0] = '\0';
        int r = rn_sql_step(q, &st, err);
        if (r < 0) { CHECK(err[0] != '\0'); break; }
        CHECK(st == RN_SQL_MORE || st == RN_SQL_IDLE || st == RN_SQL_DONE);
        if (st == RN_SQL_DONE) break;
    }
    CHECK(steps < MAX_STEPS);
    rn_sql_close(q);
    return 0;
}

static void produce(uint32_t n)
{
    static const char *lvl[] = {"INFO", "DEBUG", "WARN", "ERROR"};
    static const char *svc[] = {"api", "db", "web"};
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    CHECK(rn_batch_builder_init(&b, &bo) == 0);
    for (uint32_t i = 0; i < n; i++) {
        char val[160];
        int vl = i % 17 == 5 ? snprintf(val, sizeof val, "not json %u", i)
                             : snprintf(val, sizeof val,
                                        "{\"level\":\"%s\",\"svc\":\"%s\",\"lat\":%u,\"at\":%u}",
                                        lvl[i % 4], svc[i % 3], (i * 37) % 500, 1000 + i * 700);
        rn_record_t r = {0};
        r.timestamp = 1000 + (int64_t)i * 700;
        r.key = (const uint8_t *)svc[i % 3];
        r.key_len = (int32_t)strlen(svc[i % 3]);
        r.value = (const uint8_t *)val;
        r.value_len = vl;
        CHECK(rn_batch_builder_add(&b, &r) == 0);
    }
    const uint8_t *out;
    size_t len;
    CHECK(rn_batch_builder_finish(&b, &out, &len) == 0);
    char err[RN_ERRMSG_SIZE];
    rn_datadir_queue_t q;
    CHECK(rn_datadir_queue_open(g_d, "logs", 0, &q, err) == 0);
    int64_t base;
    uint64_t ticket;
    CHECK(rn_datadir_append(g_d, &q, out, len, &base, &ticket, err) == 0);
    CHECK(rn_datadir_wait(g_d, ticket) == 0);
    rn_datadir_queue_close(&q);
    rn_batch_builder_destroy(&b);
}

static const char k_stream[] =
    "CREATE STREAM logs_s (level TEXT, svc TEXT, lat INTEGER, at INTEGER) "
    "WITH (topic = 'logs', format = 'json', timestamp = 'at')";

static void setup(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_root, sizeof g_root, "%s/rn-fuzz-sql-XXXXXX", base);
    CHECK(mkdtemp(g_root) != NULL);
    char dir[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    snprintf(dir, sizeof dir, "%s/data", g_root);
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "fuzz_sql_front";
    o.log.fsync = RN_FSYNC_NEVER;
    if (rn_datadir_open(dir, &o, &g_d, err) != 0) {
        fprintf(stderr, "fuzz_sql_front: open %s: %s\n", dir, err);
        abort();
    }
    atexit(teardown);
    CHECK(rn_datadir_topic_create(g_d, "logs", 1, NULL, err) == 0);
    produce(40);
    produce(25);
    CHECK(run(k_stream, sizeof k_stream - 1) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_d) setup();
    if (size > RN_SQL_MAX_SQL_LEN + 16) return 0;
    /* The statement as its own exact-size buffer (no terminator to lean on). */
    char *sql = malloc(size ? size : 1);
    CHECK(sql != NULL);
    memcpy(sql, data, size);
    run(sql, size);
    free(sql);
    /* Invariant 3; a dropped stream is declared again for the next input. */
    static const char sel[] = "SELECT offset, value FROM logs LIMIT 3";
    CHECK(run(sel, sizeof sel - 1) == 0);
    static const char s2[] = "SELECT svc FROM logs_s LIMIT 1";
    if (run(s2, sizeof s2 - 1) != 0) CHECK(run(k_stream, sizeof k_stream - 1) == 0);
    return 0;
}

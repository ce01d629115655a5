/*
 * bench_redis.c — `runnel-bench redis`: the Redis-streams peer, XADD
 * pipelined and XREAD, through a small RESP client of our own (no hiredis:
 * RESP over one TCP connection is a few dozen lines, and the bench then
 * needs no new build dependency).
 *
 * What it measures, against a redis-server the caller started (--port; the
 * suite starts one on 127.0.0.1 with persistence off, its fastest setting):
 *   redis_xadd   N records "XADD KEY * v VALUE", VALUE the same B-byte values
 *                as `append`, `read` and `sqlite-log` (bench_fill_value, same
 *                seed, same order), sent --pipeline commands per write, then
 *                that many replies read, until all N are acknowledged.
 *   redis_xread  the stream read start to end with XREAD COUNT --count
 *                STREAMS KEY LAST-ID, every entry parsed and its value's bytes
 *                summed; the run fails unless N entries come back.
 *
 * How it stays fair.
 *  1. Every command is encoded into one buffer before timing, as runnel's
 *     batches are built before timing in `append`; the timed part is the
 *     socket and the server.
 *  2. The stream is deleted before each round (untimed); medians over
 *     --rounds; the read follows the write in each round (warm server).
 *  3. A record costs Redis one entry with one field ("v"): the smallest
 *     stream entry that carries the value.
 */
#include "bench/bench.h"
#include "common/error.h"
#include "common/sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CMD "redis"
#define KEY "runnel-bench"
#define MAX_BULK (64u << 20)      /* replies larger than this are refused */

typedef struct redis_cfg {
    const char *host;
    uint64_t    port, records, size, pipeline, count, rounds, seed;
    int         json;
} redis_cfg_t;

/* ---- A minimal RESP connection ---------------------------------------------- */

typedef struct conn {
    int      fd;
    uint8_t *buf;
    size_t   pos, len, cap;
    char     err[256];
} conn_t;

static int conn_open(const redis_cfg_t *cfg, conn_t *c)
{
    memset(c, 0, sizeof *c);
    c->cap = 1u << 20;
    c->buf = malloc(c->cap);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!c->buf || c->fd < 0) return bench_fail(CMD, -errno ? -errno : -ENOMEM, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &a.sin_addr) != 1)
        return bench_fail(CMD, RN_EINVAL, "--host %s: not an IPv4 address", cfg->host);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
        return bench_fail(CMD, -errno, "connect %s:%llu: %s", cfg->host,
                          (unsigned long long)cfg->port, strerror(errno));
    return 0;
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static int conn_write(conn_t *c, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Make at least need bytes available from pos (need <= MAX_BULK + 2). */
static int conn_need(conn_t *c, size_t need)
{
    while (c->len - c->pos < need) {
        if (c->pos > 0) {
            memmove(c->buf, c->buf + c->pos, c->len - c->pos);
            c->len -= c->pos;
            c->pos = 0;
        }
        if (need > c->cap) {
            uint8_t *nb = realloc(c->buf, need);
            if (!nb) return -ENOMEM;
            c->buf = nb;
            c->cap = need;
        }
        ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (r == 0) return -ECONNRESET;
        c->len += (size_t)r;
    }
    return 0;
}

/* One "\r\n"-terminated line from pos: *line (NUL-terminated in place). */
static int conn_line(conn_t *c, char **line)
{
    for (size_t scanned = 0;;) {
        uint8_t *p = memchr(c->buf + c->pos + scanned, '\n', c->len - c->pos - scanned);
        if (p) {
            if (p == c->buf + c->pos || p[-1] != '\r') return RN_ECORRUPT;
            p[-1] = '\0';
            *line = (char *)c->buf + c->pos;
            c->pos = (size_t)(p - c->buf) + 1;
            return 0;
        }
        scanned = c->len - c->pos;
        if (scanned > 4096) return RN_ECORRUPT;
        int rc = conn_need(c, scanned + 1);
        if (rc != 0) return rc;
    }
}

/* What an XREAD reply holds: entries, value bytes, the last entry id. */
typedef struct tally {
    uint64_t entries, sum;
    char     last_id[64];
} tally_t;

/* Parse one reply (the outermost at depth 0). XREAD's shape:
 * [ [key, [ [id, [field, value]], ... ]] ]: ids are bulk strings at depth 4
 * (index 0), values at depth 5 (index 1). */
static int parse_reply(conn_t *c, int depth, size_t idx, tally_t *t)
{
    char *line;
    int rc = conn_line(c, &line);
    if (rc != 0) return rc;
    char *end;
    long long n;
    switch (line[0]) {
    case '+': case ':': return 0;
    case '-':
        snprintf(c->err, sizeof c->err, "%s", line + 1);
        return RN_EINVAL;
    case '$':
        n = strtoll(line + 1, &end, 10);
        if (*end || n > (long long)MAX_BULK) return RN_ECORRUPT;
        if (n < 0) return 0;
        if ((rc = conn_need(c, (size_t)n + 2)) != 0) return rc;
        if (t && depth == 4 && idx == 0 && (size_t)n < sizeof t->last_id) {
            memcpy(t->last_id, c->buf + c->pos, (size_t)n);
            t->last_id[n] = '\0';
            t->entries++;
        } else if (t && depth == 5 && idx == 1 && n > 0) {
            t->sum += (uint64_t)n + c->buf[c->pos];
        }
        c->pos += (size_t)n + 2;
        return 0;
    case '*':
        n = strtoll(line + 1, &end, 10);
        if (*end || n > (long long)MAX_BULK) return RN_ECORRUPT;
        for (long long i = 0; i < n && rc == 0 && depth < 8; i++)
            rc = parse_reply(c, depth + 1, (size_t)i, t);
        return rc;
    default:
        return RN_ECORRUPT;
    }
}

static int conn_fail(conn_t *c, const char *what, int rc)
{
    return bench_fail(CMD, rc, "%s: %s", what, c->err[0] ? c->err : rn_strerror(rc));
}

/* ---- Commands, encoded before timing ---------------------------------------- */

static int append_bulk(char **p, const char *s, size_t n)
{
    *p += sprintf(*p, "$%zu\r\n", n);
    memcpy(*p, s, n);
    *p += n;
    memcpy(*p, "\r\n", 2);
    *p += 2;
    return 0;
}

/* Every XADD back to back; *starts[k] = offset of command k (k <= n). */
static int encode_xadds(const redis_cfg_t *cfg, char **out, size_t **starts)
{
    size_t per = cfg->size + 64 + sizeof KEY;
    char *buf = malloc(cfg->records * per);
    size_t *st = malloc((cfg->records + 1) * sizeof *st);
    uint8_t *v = malloc(cfg->size);
    if (!buf || !st || !v) {
        free(buf); free(st); free(v);
        return bench_fail(CMD, -ENOMEM, "out of memory encoding %llu commands",
                          (unsigned long long)cfg->records);
    }
    bench_rng_t rng;
    bench_rng_seed(&rng, cfg->seed);
    char *p = buf;
    for (uint64_t k = 0; k < cfg->records; k++) {
        st[k] = (size_t)(p - buf);
        bench_fill_value(&rng, v, cfg->size);
        p += sprintf(p, "*5\r\n");
        append_bulk(&p, "XADD", 4);
        append_bulk(&p, KEY, sizeof KEY - 1);
        append_bulk(&p, "*", 1);
        append_bulk(&p, "v", 1);
        append_bulk(&p, (const char *)v, cfg->size);
    }
    st[cfg->records] = (size_t)(p - buf);
    free(v);
    *out = buf;
    *starts = st;
    return 0;
}

static int simple_cmd(conn_t *c, const char *cmd)
{
    int rc = conn_write(c, (const uint8_t *)cmd, strlen(cmd));
    if (rc == 0) rc = parse_reply(c, 0, 0, NULL);
    return rc;
}

static int xadd_round(const redis_cfg_t *cfg, conn_t *c, const char *cmds, const size_t *st, uint64_t *ns)
{
    int rc = 0;
    uint64_t t0 = rn_mono_ns();
    for (uint64_t k = 0; k < cfg->records && rc == 0; k += cfg->pipeline) {
        uint64_t e = k + cfg->pipeline < cfg->records ? k + cfg->pipeline : cfg->records;
        rc = conn_write(c, (const uint8_t *)cmds + st[k], st[e] - st[k]);
        for (uint64_t i = k; i < e && rc == 0; i++) rc = parse_reply(c, 0, 0, NULL);
    }
    *ns = rn_mono_ns() - t0;
    return rc == 0 ? 0 : conn_fail(c, "XADD", rc);
}

static int xread_round(const redis_cfg_t *cfg, conn_t *c, tally_t *t, uint64_t *ns)
{
    char cmd[256], cnt[32];
    int rc = 0;
    memset(t, 0, sizeof *t);
    snprintf(t->last_id, sizeof t->last_id, "0-0");
    snprintf(cnt, sizeof cnt, "%llu", (unsigned long long)cfg->count);
    uint64_t t0 = rn_mono_ns();
    /* Bounded: each call returns >= 1 entry until the end, at most N calls. */
    for (uint64_t calls = 0; t->entries < cfg->records && calls <= cfg->records && rc == 0; calls++) {
        uint64_t before = t->entries;
        size_t idl = strlen(t->last_id);
        int n = snprintf(cmd, sizeof cmd, "*6\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$%zu\r\n%s\r\n"
                         "$7\r\nSTREAMS\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(cnt), cnt,
                         sizeof KEY - 1, KEY, idl, t->last_id);
        rc = conn_write(c, (const uint8_t *)cmd, (size_t)n);
        if (rc == 0) rc = parse_reply(c, 0, 0, t);
        if (rc == 0 && t->entries == before) break;        /* nil: the end */
    }
    *ns = rn_mono_ns() - t0;
    if (rc != 0) return conn_fail(c, "XREAD", rc);
    if (t->entries != cfg->records)
        return bench_fail(CMD, RN_ECORRUPT, "XREAD returned %llu entries, XADD wrote %llu",
                          (unsigned long long)t->entries, (unsigned long long)cfg->records);
    return 0;
}

static void report(const redis_cfg_t *cfg, const char *name, const double *rps)
{
    double med = bench_median(rps, cfg->rounds);
    if (!cfg->json) {
        printf("%-12s %12.0f records/s  %8.1f MB/s (median of %llu)\n", name, med,
               med * (double)cfg->size / 1e6, (unsigned long long)cfg->rounds);
        fflush(stdout);
        return;
    }
    bench_json_t j;
    bench_json_begin(&j, stdout);
    bench_json_str(&j, "bench", name);
    bench_json_u64(&j, "records", cfg->records);
    bench_json_u64(&j, "size", cfg->size);
    bench_json_u64(&j, "pipeline", cfg->pipeline);
    bench_json_u64(&j, "count", cfg->count);
    bench_json_u64(&j, "rounds", cfg->rounds);
    bench_json_f64(&j, "records_per_s", med);
    bench_json_f64(&j, "mb_per_s", med * (double)cfg->size / 1e6);
    bench_json_f64_array(&j, "rounds_records_per_s", rps, cfg->rounds);
    bench_json_u64(&j, "seed", cfg->seed);
    bench_json_end(&j);
}

static int redis_run(const void *arg)
{
    const redis_cfg_t *cfg = arg;
    conn_t c;
    char *cmds = NULL;
    size_t *st = NULL;
    double wr[64], rd[64];
    uint64_t ns;
    tally_t t, t0;
    int rc = conn_open(cfg, &c);
    if (rc == 0) rc = encode_xadds(cfg, &cmds, &st);
    if (rc != 0) goto out;
    bench_note(cfg->json, "redis: %llu XADD of %llu-byte values to %s:%llu, pipeline %llu; XREAD "
               "COUNT %llu; %llu rounds", (unsigned long long)cfg->records,
               (unsigned long long)cfg->size, cfg->host, (unsigned long long)cfg->port,
               (unsigned long long)cfg->pipeline, (unsigned long long)cfg->count,
               (unsigned long long)cfg->rounds);
    for (size_t r = 0; r < cfg->rounds; r++) {
        if ((rc = simple_cmd(&c, "*2\r\n$3\r\nDEL\r\n$12\r\n" KEY "\r\n")) != 0) {
            rc = conn_fail(&c, "DEL", rc);
            goto out;
        }
        if ((rc = xadd_round(cfg, &c, cmds, st, &ns)) != 0) goto out;
        wr[r] = ns ? (double)cfg->records / ((double)ns / 1e9) : 0;
        if ((rc = xread_round(cfg, &c, &t, &ns)) != 0) goto out;
        rd[r] = ns ? (double)cfg->records / ((double)ns / 1e9) : 0;
        if (r == 0) t0 = t;
        else if (t.sum != t0.sum) { rc = bench_fail(CMD, RN_ECORRUPT, "rounds read different values"); goto out; }
        bench_note(cfg->json, "  round %zu: XADD %.0f records/s, XREAD %.0f records/s", r + 1, wr[r], rd[r]);
    }
    simple_cmd(&c, "*2\r\n$3\r\nDEL\r\n$12\r\n" KEY "\r\n");
    report(cfg, "redis_xadd", wr);
    report(cfg, "redis_xread", rd);
out:
    conn_close(&c);
    free(cmds);
    free(st);
    return rc;
}

static int redis_parse(int argc, char **argv, void *arg)
{
    redis_cfg_t *cfg = arg;
    cfg->host = "127.0.0.1";
    cfg->records = 2000000;
    cfg->size = 100;
    cfg->pipeline = 1000;
    cfg->count = 1000;
    cfg->rounds = 3;
    cfg->seed = 1;
    const bench_opt_t opts[] = {
        {"--host", BENCH_OPT_STR, &cfg->host, 0, 0, "IPV4"},
        {"--port", BENCH_OPT_U64, &cfg->port, 1, 65535, "PORT"},
        {"--records", BENCH_OPT_U64, &cfg->records, 1, 100000000ull, "N"},
        {"--size", BENCH_OPT_SIZE, &cfg->size, 1, 1u << 20, "B"},
        {"--pipeline", BENCH_OPT_U64, &cfg->pipeline, 1, 100000, "P"},
        {"--count", BENCH_OPT_U64, &cfg->count, 1, 100000, "C"},
        {"--rounds", BENCH_OPT_U64, &cfg->rounds, 1, 64, "R"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    int rc = bench_parse_flags(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc == 0 && !cfg->port) rc = bench_fail(CMD, RN_EINVAL, "--port PORT is required (a running redis-server)");
    return rc;
}

const bench_cmd_t bench_cmd_redis = {
    "redis", "--port PORT [--host IPV4] [--records N] [--size B] [--pipeline P] [--count C] "
    "[--rounds R] [--seed S] [--json]  (Redis streams: XADD pipelined, XREAD)",
    sizeof(redis_cfg_t), redis_parse, redis_run,
};

/*
 * bench.c — runnel-bench's entry point and shared helpers.
 *
 * What it measures: nothing by itself; it dispatches to the subcommands of the
 * table below (append, lookup, ...) and gives them the tools that keep their
 * numbers honest and comparable:
 *  1. Percentiles are nearest-rank over every sample (no interpolation, no
 *     sampling): p99 of n samples is sample ceil(0.99 n) of the sorted array.
 *  2. Rates use MB = 10^6 bytes and the monotonic clock (rn_mono_ns).
 *  3. Randomness is seeded and the seed is printed, so a run can be repeated.
 *  4. Scratch directories are fresh (mkdtemp) and removed at the end; the
 *     filesystem is settled (syncfs) before each timed run so writeback of a
 *     previous run is not charged to the next one.
 *  5. With --json, stdout holds only JSON lines; notes go to stderr.
 */
#include "bench/bench.h"
#include "common/sys.h"
#include "common/error.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The subcommands. Later ones (produce, consume, sql, e2e) join here. */
extern const bench_cmd_t bench_cmd_remap_read, bench_cmd_commit;   /* bench_queues.c */
static const bench_cmd_t *const commands[] = {
    &bench_cmd_append,
    &bench_cmd_lookup,
    &bench_cmd_remap_read,
    &bench_cmd_commit,
    &bench_cmd_sql,
    &bench_cmd_produce,
    &bench_cmd_produce_batches,
    &bench_cmd_consume,
    &bench_cmd_e2e,
    &bench_cmd_memcpy,
    &bench_cmd_read,
    &bench_cmd_sqlite_log,
    &bench_cmd_queues,
    &bench_cmd_recover,
    &bench_cmd_redis,
    &bench_cmd_etl,
    &bench_cmd_mixed,
    &bench_cmd_kafka_produce,
    &bench_cmd_kafka_consume,
    &bench_cmd_nexmark,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: runnel-bench COMMAND [flags]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i]->name, commands[i]->usage);
}

static void command_names(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NCOMMANDS && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", commands[i]->name);
        if (n < 0) break;
        used += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    rn_sys_tune_malloc();    /* as runnel's own programs do (common/sys.h) */
    char names[256];
    command_names(names, sizeof names);
    if (argc < 2) {
        fprintf(stderr, "runnel-bench: missing command; valid commands: %s\n", names);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    const bench_cmd_t *cmd = NULL;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (!strcmp(argv[1], commands[i]->name)) cmd = commands[i];
    if (!cmd) {
        fprintf(stderr, "runnel-bench: unknown command '%s'; valid commands: %s\n",
                argv[1], names);
        return 2;
    }
    if (argc == 3 && (!strcmp(argv[2], "-h") || !strcmp(argv[2], "--help"))) {
        printf("usage: runnel-bench %s %s\n", cmd->name, cmd->usage);
        return 0;
    }

    void *cfg = calloc(1, cmd->cfg_size ? cmd->cfg_size : 1);
    if (!cfg) {
        fprintf(stderr, "runnel-bench: out of memory\n");
        return 1;
    }
    int status;
    if (cmd->parse(argc - 2, argv + 2, cfg) != 0)
        status = 2;
    else
        status = cmd->run(cfg) == 0 ? 0 : 1;
    free(cfg);
    return status;
}

/* ---- Flags ------------------------------------------------------------ */

static void flag_list(const bench_opt_t *opts, size_t nopts, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < nopts && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s%s%s", i ? ", " : "", opts[i].name,
                         opts[i].kind == BENCH_OPT_FLAG ? "" : " ",
                         opts[i].kind == BENCH_OPT_FLAG ? "" : opts[i].metavar);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* Parse a non-negative integer, with a K/M/G suffix when allow_suffix. */
static int parse_number(const char *s, int allow_suffix, uint64_t *out)
{
    if (*s < '0' || *s > '9') return RN_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0) return RN_EINVAL;
    uint64_t mul = 1;
    if (allow_suffix && *end) {
        switch (*end) {
        case 'k': case 'K': mul = 1ull << 10; break;
        case 'm': case 'M': mul = 1ull << 20; break;
        case 'g': case 'G': mul = 1ull << 30; break;
        default: return RN_EINVAL;
        }
        end++;
        if (*end == 'i' && end[1] == 'B') end += 2;     /* 64KiB */
        else if (*end == 'B') end++;                    /* 64KB, still KiB */
    }
    if (*end) return RN_EINVAL;
    if (v > UINT64_MAX / mul) return RN_EINVAL;
    *out = (uint64_t)v * mul;
    return 0;
}

int bench_parse_flags(const char *cmd, int argc, char **argv,
                      const bench_opt_t *opts, size_t nopts)
{
    char valid[1024];
    flag_list(opts, nopts, valid, sizeof valid);
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        size_t namelen = strlen(arg);
        const char *eq = strchr(arg, '=');
        if (eq && !strncmp(arg, "--", 2)) {           /* --flag=value */
            namelen = (size_t)(eq - arg);
            val = eq + 1;
        }
        const bench_opt_t *o = NULL;
        for (size_t k = 0; k < nopts; k++)
            if (strlen(opts[k].name) == namelen && !strncmp(opts[k].name, arg, namelen))
                o = &opts[k];
        if (!o)
            return bench_fail(cmd, RN_EINVAL, "unknown flag '%s'; valid flags: %s", arg, valid);
        if (o->kind == BENCH_OPT_FLAG) {
            if (val)
                return bench_fail(cmd, RN_EINVAL, "%s takes no value", o->name);
            *(int *)o->dst = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return bench_fail(cmd, RN_EINVAL, "%s needs a value (%s %s)", o->name,
                                  o->name, o->metavar);
            val = argv[++i];
        }
        if (o->kind == BENCH_OPT_STR) {
            if (!*val)
                return bench_fail(cmd, RN_EINVAL, "%s needs a non-empty %s", o->name, o->metavar);
            *(const char **)o->dst = val;
            continue;
        }
        uint64_t v;
        if (parse_number(val, o->kind == BENCH_OPT_SIZE, &v) != 0 || v < o->min || v > o->max)
            return bench_fail(cmd, RN_EINVAL, "bad %s '%s': valid values are integers %llu..%llu%s",
                              o->name, val, (unsigned long long)o->min,
                              (unsigned long long)o->max,
                              o->kind == BENCH_OPT_SIZE ? " (suffix K, M or G allowed)" : "");
        *(uint64_t *)o->dst = v;
    }
    return 0;
}

int bench_fail(const char *cmd, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "runnel-bench: %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

void bench_note(int json, const char *fmt, ...)
{
    FILE *f = json ? stderr : stdout;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
    fflush(f);
}

/* ---- Statistics ------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_f64(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void bench_sort_u64(uint64_t *v, size_t n) { qsort(v, n, sizeof *v, cmp_u64); }

uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0) return 0;
    double rank = ceil(p / 100.0 * (double)n);
    size_t idx = rank < 1.0 ? 0 : (size_t)rank - 1;
    if (idx >= n) idx = n - 1;
    return sorted[idx];
}

double bench_median(const double *v, size_t n)
{
    if (n == 0) return NAN;
    double tmp[64];
    double *c = n <= 64 ? tmp : malloc(n * sizeof *c);
    if (!c) return NAN;
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_f64);
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2.0;
    if (c != tmp) free(c);
    return m;
}

/* ---- Aligned tables --------------------------------------------------- */

void bench_table_init(bench_table_t *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

int bench_table_cell(bench_table_t *t, const char *fmt, ...)
{
    if (t->ncells == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        char **p = realloc(t->cells, cap * sizeof *p);
        if (!p) return -ENOMEM;
        t->cells = p;
        t->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return -ENOMEM;
    t->cells[t->ncells++] = s;
    return 0;
}

/* Display width: counts UTF-8 code points, so "µs" aligns. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

void bench_table_print(const bench_table_t *t, FILE *f)
{
    size_t w[32] = {0};
    size_t ncols = t->ncols < 32 ? t->ncols : 32;
    for (size_t i = 0; i < t->ncells; i++) {
        size_t c = i % t->ncols;
        if (c < ncols && width(t->cells[i]) > w[c]) w[c] = width(t->cells[i]);
    }
    for (size_t i = 0; i < t->ncells; i++) {
        size_t c = i % t->ncols;
        size_t pad = c < ncols ? w[c] - width(t->cells[i]) : 0;
        if (c == 0) fprintf(f, "%s%*s", t->cells[i], (int)pad, "");
        else fprintf(f, "  %*s%s", (int)pad, "", t->cells[i]);
        if (c == t->ncols - 1 || i == t->ncells - 1) fputc('\n', f);
    }
    fflush(f);
}

void bench_table_free(bench_table_t *t)
{
    for (size_t i = 0; i < t->ncells; i++) free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* ---- JSON lines ------------------------------------------------------- */

void bench_json_begin(bench_json_t *j, FILE *f)
{
    j->f = f;
    j->nfields = 0;
    fputc('{', f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_key(bench_json_t *j, const char *key)
{
    if (j->nfields++) fputc(',', j->f);
    json_string(j->f, key);
    fputc(':', j->f);
}

static void json_number(FILE *f, double v)
{
    if (!isfinite(v)) fputs("null", f);
    else if (fabs(v) >= 1e15) fprintf(f, "%.17g", v);
    else fprintf(f, "%.3f", v);
}

void bench_json_str(bench_json_t *j, const char *key, const char *val)
{
    json_key(j, key);
    json_string(j->f, val);
}

void bench_json_u64(bench_json_t *j, const char *key, uint64_t val)
{
    json_key(j, key);
    fprintf(j->f, "%llu", (unsigned long long)val);
}

void bench_json_f64(bench_json_t *j, const char *key, double val)
{
    json_key(j, key);
    json_number(j->f, val);
}

void bench_json_null(bench_json_t *j, const char *key)
{
    json_key(j, key);
    fputs("null", j->f);
}

void bench_json_f64_array(bench_json_t *j, const char *key, const double *v, size_t n)
{
    json_key(j, key);
    fputc('[', j->f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputc(',', j->f);
        json_number(j->f, v[i]);
    }
    fputc(']', j->f);
}

void bench_json_end(bench_json_t *j)
{
    fputs("}\n", j->f);
    fflush(j->f);
}

/* ---- Environment ------------------------------------------------------ */

int bench_mkdtemp(const char *parent, char *buf, size_t size)
{
    if (!parent) parent = "/var/tmp";
    int n = snprintf(buf, size, "%s/runnel-bench.XXXXXX", parent);
    if (n < 0 || (size_t)n >= size) return -ENAMETOOLONG;
    if (!mkdtemp(buf)) return -errno;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return rc < 0 && errno != ENOENT ? -1 : 0;
}

int bench_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0) return errno == ENOENT ? 0 : -errno;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) return errno ? -errno : -EIO;
    return 0;
}

int bench_settle_fs(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = syncfs(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void bench_rng_seed(bench_rng_t *r, uint64_t seed)
{
    r->s = seed ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t bench_rng_next(bench_rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t bench_rng_below(bench_rng_t *r, uint64_t n)
{
    /* Multiply-shift: bias below 2^-64 * n, irrelevant here. */
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

void bench_fill_value(bench_rng_t *r, uint8_t *v, size_t n)
{
    static const char *const levels[] = {"DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR"};
    static const char *const svcs[] = {"api", "auth", "billing", "search", "cart", "edge"};
    static const char *const words[] = {
        "request", "served", "user", "cache", "miss", "hit", "timeout", "retry",
        "order", "created", "payment", "declined", "session", "expired", "token",
        "refreshed", "query", "slow", "upstream", "reset", "connection", "opened",
    };
    char head[128];
    uint64_t x = bench_rng_next(r);
    int len = snprintf(head, sizeof head,
                       "{\"level\":\"%s\",\"svc\":\"%s-%02u\",\"lat_ms\":%u,\"msg\":\"",
                       levels[x % 6], svcs[(x >> 8) % 6], (unsigned)((x >> 16) % 32),
                       (unsigned)((x >> 24) % 2000));
    size_t pos = 0;
    for (int i = 0; i < len && pos < n; i++) v[pos++] = (uint8_t)head[i];
    /* Random words up to two bytes before the end, then close the JSON. */
    size_t tail = n >= pos + 2 ? 2 : 0;
    while (pos + tail < n) {
        const char *w = words[bench_rng_below(r, sizeof words / sizeof words[0])];
        if (pos > (size_t)len && pos + tail < n) v[pos++] = ' ';
        for (; *w && pos + tail < n; w++) v[pos++] = (uint8_t)*w;
    }
    if (tail) { v[pos++] = '"'; v[pos++] = '}'; }
}

/* ---- Stream SQL ------------------------------------------------------- */

static int count_row(void *ctx, const rn_sql_value_t *v, int n)
{
    (void)v, (void)n;
    (*(uint64_t *)ctx)++;
    return 0;
}

int bench_sql_count(rn_datadir_t *d, const char *sql, uint64_t *rows, rn_sql_stats_t *st,
                    char *errmsg)
{
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    if (rows) {
        *rows = 0;
        o.row = count_row;
        o.ctx = rows;
    }
    rn_sql_t *q = NULL;
    int rc = rn_sql_open(d, sql, strlen(sql), &o, &q, NULL, errmsg);
    if (rc == 0) rc = rn_sql_run(q, errmsg);
    if (rc == 0 && st) rn_sql_stats(q, st);
    rn_sql_close(q);
    return rc;
}

/*
 * bench.h — runnel-bench: the subcommand table and the helpers every
 * subcommand shares (flag parsing, percentiles, aligned tables, JSON lines,
 * scratch directories, seeded randomness, realistic record values).
 *
 * A subcommand is one bench_cmd_t: parse() turns argv into its own config
 * (a usage error prints one line "runnel-bench: ..." and returns RN_EINVAL,
 * which main turns into exit status 2), run() measures and prints (any
 * failure prints one line and returns a negative code: exit status 1).
 * Adding a subcommand = one new bench_*.c defining a bench_cmd_t plus one line
 * in the table in bench.c.
 *
 * Output: a human table by default; with --json, one JSON object per result
 * on its own line on stdout, and every explanatory note goes to stderr so
 * stdout stays machine-readable.
 */
#ifndef RN_BENCH_H
#define RN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- Subcommands ------------------------------------------------------ */

typedef struct bench_cmd {
    const char *name;
    const char *usage;                 /* flags, one line */
    size_t      cfg_size;              /* bytes of the config parse() fills */
    int (*parse)(int argc, char **argv, void *cfg);
    int (*run)(const void *cfg);
} bench_cmd_t;

extern const bench_cmd_t bench_cmd_append;
extern const bench_cmd_t bench_cmd_lookup;
extern const bench_cmd_t bench_cmd_sql;          /* bench_sql.c */
extern const bench_cmd_t bench_cmd_produce, bench_cmd_consume, bench_cmd_e2e;   /* bench_net.c */
extern const bench_cmd_t bench_cmd_memcpy, bench_cmd_read, bench_cmd_sqlite_log,
                         bench_cmd_queues, bench_cmd_recover;           /* bench_peers.c */
extern const bench_cmd_t bench_cmd_redis;        /* bench_redis.c */
extern const bench_cmd_t bench_cmd_etl;          /* bench_etl.c */
extern const bench_cmd_t bench_cmd_mixed;        /* bench_mixed.c */
extern const bench_cmd_t bench_cmd_kafka_produce, bench_cmd_kafka_consume;   /* bench_kafka.c */
extern const bench_cmd_t bench_cmd_nexmark;      /* bench_nexmark.c */
extern const bench_cmd_t bench_cmd_produce_batches;   /* bench_batches.c */

/* ---- Flags ------------------------------------------------------------ */

typedef enum bench_opt_kind {
    BENCH_OPT_U64,      /* decimal integer */
    BENCH_OPT_SIZE,     /* integer with optional K/M/G suffix (powers of 1024) */
    BENCH_OPT_STR,      /* any string; *(const char **)dst */
    BENCH_OPT_FLAG,     /* no value; *(int *)dst = 1 */
} bench_opt_kind_t;

typedef struct bench_opt {
    const char      *name;       /* "--records" */
    bench_opt_kind_t kind;
    void            *dst;        /* uint64_t*, const char**, int* by kind */
    uint64_t         min, max;   /* inclusive, for U64 and SIZE */
    const char      *metavar;    /* "N", shown in messages */
} bench_opt_t;

/* Parse argv[0..argc) (the flags after the subcommand name) against opts.
 * Unknown flags, missing or bad values print one line naming the valid flags
 * or the valid range and return RN_EINVAL. */
int bench_parse_flags(const char *cmd, int argc, char **argv,
                      const bench_opt_t *opts, size_t nopts);

/* Print "runnel-bench: CMD: <message>\n" to stderr; returns code. */
int bench_fail(const char *cmd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Notes: explanations for humans. stdout normally, stderr under --json. */
void bench_note(int json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- Statistics ------------------------------------------------------- */

/* Sort v ascending in place. */
void bench_sort_u64(uint64_t *v, size_t n);
/* Nearest-rank percentile (p in 0..100] of an ascending array; 0 when n == 0. */
uint64_t bench_percentile(const uint64_t *sorted, size_t n, double p);
/* Median of n doubles (copied, not reordered); NAN when n == 0. */
double bench_median(const double *v, size_t n);

/* ---- Aligned tables --------------------------------------------------- */

typedef struct bench_table {
    size_t ncols;
    size_t ncells, cap;
    char **cells;               /* row-major; the first row is the header */
} bench_table_t;

void bench_table_init(bench_table_t *t, size_t ncols);
/* Append one cell (printf); rows fill left to right. -ENOMEM. */
int  bench_table_cell(bench_table_t *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* First column left-aligned, the others right-aligned, two spaces apart. */
void bench_table_print(const bench_table_t *t, FILE *f);
void bench_table_free(bench_table_t *t);

/* ---- JSON lines ------------------------------------------------------- */

typedef struct bench_json {
    FILE *f;
    int   nfields;
} bench_json_t;

void bench_json_begin(bench_json_t *j, FILE *f);
void bench_json_str(bench_json_t *j, const char *key, const char *val);
void bench_json_u64(bench_json_t *j, const char *key, uint64_t val);
/* Non-finite values are written as null. */
void bench_json_f64(bench_json_t *j, const char *key, double val);
void bench_json_null(bench_json_t *j, const char *key);
void bench_json_f64_array(bench_json_t *j, const char *key, const double *v, size_t n);
/* Close the object and end the line. */
void bench_json_end(bench_json_t *j);

/* ---- Environment ------------------------------------------------------ */

/* Create a fresh directory PARENT/runnel-bench.XXXXXX (parent NULL means
 * /var/tmp) into buf (PATH_MAX bytes). */
int  bench_mkdtemp(const char *parent, char *buf, size_t size);
/* rm -rf path (no symlinks followed). Missing path is not an error. */
int  bench_rmtree(const char *path);
/* syncfs() of the filesystem holding path, so one run's writeback does not
 * land in the next run's timed window. */
int  bench_settle_fs(const char *path);

/* xorshift64*: seeded, so runs are repeatable; the seed is printed. */
typedef struct bench_rng { uint64_t s; } bench_rng_t;
void     bench_rng_seed(bench_rng_t *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng_t *r);
/* Uniform in [0, n), n > 0. */
uint64_t bench_rng_below(bench_rng_t *r, uint64_t n);

/* Fill v[0..n) with a log-line-like JSON value (printable, varied, not
 * constant), e.g. {"level":"INFO","svc":"api-07","lat_ms":123,"msg":"..."},
 * truncated or padded with random words to exactly n bytes. */
void bench_fill_value(bench_rng_t *r, uint8_t *v, size_t n);

/* ---- Stream SQL ------------------------------------------------------- */

struct rn_datadir;
struct rn_sql_stats;
/* Run one statement of the stream-SQL engine to its end over d, counting its
 * rows into *rows (may be NULL) and its stats into *st (may be NULL); 0, or
 * the engine's error with errmsg. */
int bench_sql_count(struct rn_datadir *d, const char *sql, uint64_t *rows,
                    struct rn_sql_stats *st, char *errmsg);

/* Bytes to MB (10^6) per second. */
static inline double bench_mb_per_s(uint64_t bytes, uint64_t ns)
{
    return ns ? (double)bytes / 1e6 / ((double)ns / 1e9) : 0.0;
}

#endif

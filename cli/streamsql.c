/*
 * streamsql.c — the `streamsql` command: stream SQL over the topics of an
 * embedded data directory (streamsql/sql.h), one statement at a time, from
 * -e, a file (-f) or a REPL.
 *
 * Invariants:
 *  1. Errors: a statement that fails prints "streamsql: <what>" and then
 *     the statement's line with a caret under the offending token when the
 *     engine knows it. Exit status 2 for a bad command line, 1 for any other
 *     failure (a failing statement stops -e/-f scripts; the REPL goes on),
 *     130 after Ctrl-C, 141 when stdout was closed (EPIPE).
 *  2. Nothing is silent: records rejected by typing and late rows are
 *     summarised on stderr after the statement, with the first reason.
 *  3. csv and json print window bounds as integer ms; table renders them as
 *     UTC times. json is one object per line, strings through
 *     rn_json_write_string.
 *  4. Progress ("[ 42%] n/N records") goes to stderr only when stderr is a
 *     terminal and the query is bounded; it is erased before any output.
 *  5. --server is refused by name until the broker exists; the data
 *     directory is always closed cleanly (SIGPIPE ignored, Ctrl-C cancels
 *     the running query rather than killing the process).
 */
#include "cli/streamsql_cli.h"

#include "common/error.h"
#include "common/json.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INT = 130, EXIT_PIPE = 141 };
enum { FMT_TABLE, FMT_CSV, FMT_JSON };

#define TABLE_BLOCK_ROWS 1000
#define SCRIPT_MAX       (16u << 20)

static const char usage_text[] =
    "usage: streamsql [--data DIR | --server HOST:PORT] [-e SQL | -f FILE] [options]\n"
    "\n"
    "Runs stream SQL over the topics of a data directory; without -e or -f, a REPL\n"
    "(line editing, history in ~/.streamsql_history; end statements with ';').\n"
    "  --data DIR          the data directory (default $RUNNEL_DATA)\n"
    "  --server HOST:PORT  a runneld broker (not available yet)\n"
    "  -e SQL              run these statements (separated by ';') and exit\n"
    "  -f FILE             run the statements in FILE and exit\n"
    "  --format F          table (default), csv or json (one object per line)\n"
    "  --follow            continuous: keep reading new records (Ctrl-C stops)\n"
    "  --from POS          earliest (default), latest, @TIMESTAMP_MS or checkpoint:NAME\n"
    "\n"
    "Statements: SELECT ... FROM stream [WHERE ...] [GROUP BY TUMBLE(ts, '10s') |\n"
    "HOP(ts, '1m', '10s') | SESSION(ts, '30s'), keys...] [HAVING ...] [EMIT FINAL|CHANGES]\n"
    "[LIMIT n] [WITH (watermark = '5s', idle_timeout = '10s', late = 'drop')];\n"
    "EXPLAIN SELECT ...; CREATE STREAM s (f TYPE, ...) WITH (topic = 't', format = 'json',\n"
    "timestamp = 'f'); DROP STREAM s; SHOW STREAMS; DESCRIBE s.\n";

typedef struct cfg {
    const char    *data;
    int            format;
    rn_sql_opts_t  opts;
} cfg_t;

typedef struct out {
    FILE                  *f;
    int                    format;
    const rn_sql_column_t *cols;
    int                    ncols;
    int                    header_done;
    /* table: a block of rendered cells */
    char                 **cells;
    size_t                 ncells, cap;
    size_t                *width;
    int                    progress_shown;
} out_t;

static volatile sig_atomic_t interrupted;
static rn_sql_t *volatile running;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    rn_sql_t *q = running;
    if (q) rn_sql_cancel(q);
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    fflush(stdout);
    fprintf(stderr, "streamsql: %s\n", line);
    return code;
}

/* The error line, then the statement line holding off with a caret. */
static void show_error(const char *sql, size_t len, int off, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "streamsql: %s\n", msg);
    size_t b = 0, e;
    if (off >= 0 && (size_t)off <= len) {
        b = (size_t)off;
        while (b > 0 && sql[b - 1] != '\n') b--;
    }
    e = b;
    while (e < len && sql[e] != '\n') e++;
    size_t shown = e - b > 300 ? 300 : e - b;
    fputs("  ", stderr);
    for (size_t i = 0; i < shown; i++)
        fputc((unsigned char)sql[b + i] < 0x20 ? ' ' : sql[b + i], stderr);
    if (shown < e - b) fputs("...", stderr);
    fputc('\n', stderr);
    if (off >= 0 && (size_t)off - b <= shown) {
        fputs("  ", stderr);
        for (size_t i = b; i < (size_t)off; i++)
            if (((unsigned char)sql[i] & 0xC0) != 0x80) fputc(' ', stderr);
        fputs("^\n", stderr);
    }
}

/* ---- rendering ------------------------------------------------------------------- */

static void fmt_real(double d, char *buf, size_t size)
{
    if (!isfinite(d)) { snprintf(buf, size, "%s", isnan(d) ? "NaN" : d > 0 ? "Inf" : "-Inf"); return; }
    snprintf(buf, size, "%.15g", d);
    if (strtod(buf, NULL) != d) snprintf(buf, size, "%.17g", d);
    if (!strpbrk(buf, ".eE") && strlen(buf) + 3 < size) strcat(buf, ".0");
}

static void fmt_time(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    int frac = (int)(ms - (int64_t)s * 1000);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static void clear_progress(out_t *o)
{
    if (o->progress_shown) {
        fputs("\r\033[K", stderr);
        o->progress_shown = 0;
    }
}

static void table_flush(out_t *o)
{
    if (!o->ncells) return;
    clear_progress(o);
    size_t nc = (size_t)o->ncols;
    for (size_t i = 0; i < o->ncells; i++) {
        size_t w = 0;
        for (const char *p = o->cells[i]; *p; p++)
            if (((unsigned char)*p & 0xC0) != 0x80) w++;
        if (w > o->width[i % nc]) o->width[i % nc] = w;
    }
    if (!o->header_done) {
        for (size_t c = 0; c < nc; c++)
            fprintf(o->f, "%s%-*s", c ? "  " : "", c + 1 < nc ? (int)o->width[c] : 0,
                    o->cols[c].name);
        fputc('\n', o->f);
        for (size_t c = 0; c < nc; c++) {
            fputs(c ? "  " : "", o->f);
            for (size_t k = 0; k < o->width[c]; k++) fputc('-', o->f);
        }
        fputc('\n', o->f);
        o->header_done = 1;
    }
    for (size_t i = 0; i < o->ncells; i++) {
        size_t c = i % nc;
        size_t w = 0;
        for (const char *p = o->cells[i]; *p; p++)
            if (((unsigned char)*p & 0xC0) != 0x80) w++;
        fputs(c ? "  " : "", o->f);
        fputs(o->cells[i], o->f);
        if (c + 1 < nc)
            for (; w < o->width[c]; w++) fputc(' ', o->f);
        else
            fputc('\n', o->f);
        free(o->cells[i]);
    }
    o->ncells = 0;
    fflush(o->f);
}

static int table_cell(out_t *o, const char *s, size_t n)
{
    if (o->ncells == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        char **p = realloc(o->cells, nc * sizeof *p);
        if (!p) return -ENOMEM;
        o->cells = p;
        o->cap = nc;
    }
    char *c = malloc(n + 1);
    if (!c) return -ENOMEM;
    for (size_t i = 0; i < n; i++) c[i] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    c[n] = '\0';
    o->cells[o->ncells++] = c;
    return 0;
}

static void csv_field(FILE *f, const char *s, size_t n)
{
    int quote = n && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        if (s[i] == ',' || s[i] == '"' || s[i] == '\n' || s[i] == '\r') quote = 1;
    if (!quote) { fwrite(s, 1, n, f); return; }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

static int on_row(void *ctx, const rn_sql_value_t *v, int n)
{
    out_t *o = ctx;
    char buf[64];
    if (o->format != FMT_TABLE) clear_progress(o);
    if (o->format == FMT_CSV && !o->header_done) {
        for (int i = 0; i < n; i++) {
            if (i) fputc(',', o->f);
            csv_field(o->f, o->cols[i].name, strlen(o->cols[i].name));
        }
        fputc('\n', o->f);
        o->header_done = 1;
    }
    if (o->format == FMT_JSON) fputc('{', o->f);
    for (int i = 0; i < n; i++) {
        const char *s = buf;
        size_t len;
        switch (v[i].type) {
        case RN_SQL_INT:
            if (o->format == FMT_TABLE && o->cols[i].is_time) fmt_time(v[i].i, buf, sizeof buf);
            else snprintf(buf, sizeof buf, "%lld", (long long)v[i].i);
            len = strlen(buf);
            break;
        case RN_SQL_REAL:
            fmt_real(v[i].d, buf, sizeof buf);
            if (o->format == FMT_JSON && !isfinite(v[i].d)) snprintf(buf, sizeof buf, "null");
            len = strlen(buf);
            break;
        case RN_SQL_TEXT: case RN_SQL_BLOB:
            s = v[i].s ? v[i].s : "";
            len = v[i].n;
            break;
        default:
            s = o->format == FMT_TABLE ? "NULL" : o->format == FMT_JSON ? "null" : "";
            len = strlen(s);
            break;
        }
        if (o->format == FMT_TABLE) {
            if (table_cell(o, s, len) != 0) return -ENOMEM;
            continue;
        }
        if (o->format == FMT_CSV) {
            if (i) fputc(',', o->f);
            csv_field(o->f, s, len);
            continue;
        }
        if (i) fputc(',', o->f);
        rn_json_write_string(o->f, (const uint8_t *)o->cols[i].name, strlen(o->cols[i].name));
        fputc(':', o->f);
        if (v[i].type == RN_SQL_TEXT || v[i].type == RN_SQL_BLOB)
            rn_json_write_string(o->f, (const uint8_t *)s, len);
        else
            fwrite(s, 1, len, o->f);
    }
    if (o->format == FMT_JSON) fputc('}', o->f);
    if (o->format != FMT_TABLE) fputc('\n', o->f);
    else if (o->ncells >= (size_t)TABLE_BLOCK_ROWS * (size_t)n) table_flush(o);
    if (ferror(o->f)) return -EPIPE;
    return 0;
}

static void progress(out_t *o, const rn_sql_stats_t *st)
{
    char line[128];
    double pct = st->target ? 100.0 * (double)st->records / (double)st->target : 100.0;
    snprintf(line, sizeof line, "\r[%3.0f%%] %llu/%llu records, %llu rows", pct > 100 ? 100 : pct,
             (unsigned long long)st->records, (unsigned long long)st->target,
             (unsigned long long)st->rows);
    fputs(line, stderr);
    fputs("\033[K", stderr);
    o->progress_shown = 1;
}

static void summary(const rn_sql_stats_t *st)
{
    if (!st->errors && !st->late) return;
    fflush(stdout);
    fprintf(stderr, "streamsql: %llu records read", (unsigned long long)st->records);
    if (st->errors)
        fprintf(stderr, ", %llu rejected (first: %s)", (unsigned long long)st->errors,
                st->first_error);
    if (st->late)
        fprintf(stderr, ", %llu late rows dropped (their window had closed; raise "
                "WITH (watermark = ...) to keep them)", (unsigned long long)st->late);
    fputc('\n', stderr);
}

/* ---- statements ------------------------------------------------------------------- */

static int run_statement(rn_datadir_t *d, const cfg_t *cfg, const char *sql, size_t len)
{
    char err[RN_ERRMSG_SIZE] = "";
    int erroff = -1;
    rn_sql_t *q = NULL;
    out_t o;
    memset(&o, 0, sizeof o);
    o.f = stdout;
    o.format = cfg->format;
    rn_sql_opts_t opts = cfg->opts;
    opts.row = on_row;
    opts.ctx = &o;
    int rc = rn_sql_open(d, sql, len, &opts, &q, &erroff, err);
    if (rc != 0) {
        show_error(sql, len, erroff, err);
        return EXIT_FAIL;
    }
    rn_sql_columns(q, &o.cols, &o.ncols);
    o.width = calloc((size_t)o.ncols + 1, sizeof *o.width);
    if (!o.width) { rn_sql_close(q); return fail(EXIT_FAIL, "out of memory"); }
    for (int i = 0; i < o.ncols; i++) o.width[i] = strlen(o.cols[i].name);
    int show_progress = isatty(STDERR_FILENO) && !cfg->opts.follow && rn_sql_is_query(q);
    uint64_t last = rn_mono_ns(), start = last;
    running = q;
    rn_sql_state_t s = RN_SQL_MORE;
    while (rc == 0 && s != RN_SQL_DONE) {
        rc = rn_sql_step(q, &s, err);
        if (s == RN_SQL_IDLE) {
            if (o.format == FMT_TABLE) table_flush(&o);
            fflush(o.f);
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        uint64_t now = rn_mono_ns();
        if (show_progress && now - last > 200000000ull && now - start > 500000000ull) {
            rn_sql_stats_t st;
            rn_sql_stats(q, &st);
            progress(&o, &st);
            last = now;
        }
    }
    running = NULL;
    clear_progress(&o);
    if (o.format == FMT_TABLE) table_flush(&o);
    fflush(o.f);
    int code = EXIT_OK;
    rn_sql_stats_t st;
    rn_sql_stats(q, &st);
    if (rc == -EPIPE || ferror(o.f)) code = EXIT_PIPE;
    else if (rc != 0) code = fail(EXIT_FAIL, "%s", err[0] ? err : rn_strerror(rc));
    else if (interrupted) code = EXIT_INT;
    summary(&st);
    for (size_t i = 0; i < o.ncells; i++) free(o.cells[i]);
    free(o.cells);
    free(o.width);
    rn_sql_close(q);
    return code;
}

typedef struct script {
    rn_datadir_t *d;
    const cfg_t  *cfg;
    const char   *text;
    int           code;
} script_t;

static int script_stmt(void *ctx, size_t off, size_t n)
{
    script_t *s = ctx;
    if (interrupted) return 1;
    s->code = run_statement(s->d, s->cfg, s->text + off, n);
    return s->code != EXIT_OK;
}

static int run_script(rn_datadir_t *d, const cfg_t *cfg, const char *text, size_t len)
{
    script_t s = {d, cfg, text, EXIT_OK};
    rn_sql_split(text, len, script_stmt, &s);
    return s.code;
}

static int is_quit(const char *line)
{
    while (*line == ' ') line++;
    return !strcmp(line, "quit") || !strcmp(line, "exit") || !strcmp(line, ".quit") ||
           !strcmp(line, ".exit") || !strcmp(line, "\\q") || !strcmp(line, "quit;") ||
           !strcmp(line, "exit;");
}

static int repl(rn_datadir_t *d, const cfg_t *cfg)
{
    sqlcli_editor_t ed;
    sqlcli_editor_init(&ed);
    char *acc = NULL;
    size_t len = 0;
    int code = EXIT_OK;
    if (ed.tty)
        printf("streamsql on %s: end statements with ';', 'quit' leaves, Ctrl-C cancels\n",
               rn_datadir_path(d));
    for (;;) {
        int intr = 0;
        fflush(stdout);
        char *line = sqlcli_readline(&ed, len ? "     ...> " : "streamsql> ", &intr);
        if (!line) break;
        if (intr) { free(line); len = 0; interrupted = 0; continue; }
        if (!len && is_quit(line)) { free(line); break; }
        size_t n = strlen(line);
        char *p = realloc(acc, len + n + 2);
        if (!p) { free(line); code = fail(EXIT_FAIL, "out of memory"); break; }
        acc = p;
        memcpy(acc + len, line, n);
        len += n;
        acc[len++] = '\n';
        acc[len] = '\0';
        free(line);
        if (len > SCRIPT_MAX) { code = fail(EXIT_FAIL, "statement too long"); len = 0; continue; }
        if (!rn_sql_complete(acc, len)) continue;
        if (ed.tty) sqlcli_history_add(&ed, acc);
        int c = run_script(d, cfg, acc, len);
        if (!ed.tty && c != EXIT_OK) code = c;
        if (c == EXIT_PIPE) break;
        interrupted = 0;
        len = 0;
    }
    if (len && code == EXIT_OK) {
        int c = run_script(d, cfg, acc, len);   /* a last statement without ';' */
        if (!ed.tty) code = c;
    }
    free(acc);
    sqlcli_editor_free(&ed);
    return code;
}

int main(int argc, char **argv)
{
    cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    rn_sql_opts_default(&cfg.opts);
    cfg.data = getenv("RUNNEL_DATA");
    const char *server = NULL, *expr = NULL, *file = NULL;
    char err[RN_ERRMSG_SIZE];
    enum { OPT_DATA = 256, OPT_SERVER, OPT_FORMAT, OPT_FOLLOW, OPT_FROM, OPT_HELP };
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"from", required_argument, NULL, OPT_FROM},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":e:f:h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: cfg.data = optarg; break;
        case OPT_SERVER: server = optarg; break;
        case 'e':
            if (expr || file) return fail(EXIT_USAGE, "give one of -e SQL or -f FILE");
            expr = optarg;
            break;
        case 'f':
            if (expr || file) return fail(EXIT_USAGE, "give one of -e SQL or -f FILE");
            file = optarg;
            break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "table")) cfg.format = FMT_TABLE;
            else if (!strcmp(optarg, "csv")) cfg.format = FMT_CSV;
            else if (!strcmp(optarg, "json")) cfg.format = FMT_JSON;
            else return fail(EXIT_USAGE, "--format: '%s' is not one of table, csv, json", optarg);
            break;
        case OPT_FOLLOW: cfg.opts.follow = 1; break;
        case OPT_FROM:
            if (rn_sql_parse_from(optarg, &cfg.opts, err) != 0) return fail(EXIT_USAGE, "%s", err);
            break;
        case 'h': case OPT_HELP:
            fputs(usage_text, stdout);
            return EXIT_OK;
        case ':':
            return fail(EXIT_USAGE, "option '%s' needs a value (see streamsql --help)",
                        argv[optind - 1]);
        default:
            return fail(EXIT_USAGE, "unknown option '%s' (see streamsql --help)",
                        argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail(EXIT_USAGE, "unexpected argument '%s'; SQL goes after -e (see streamsql "
                    "--help)", argv[optind]);
    if (server)
        return fail(EXIT_USAGE, "--server is not available yet: remote queries need the runneld "
                    "broker, which is not built yet; use --data DIR on the machine holding the "
                    "data");
    if (!cfg.data || !cfg.data[0])
        return fail(EXIT_USAGE, "no data directory: give --data DIR or set RUNNEL_DATA");

    char *text = NULL;
    size_t tlen = 0;
    if (file) {
        uint8_t *buf = NULL;
        int rc = rn_read_file(file, SCRIPT_MAX, &buf, &tlen);
        if (rc != 0)
            return fail(EXIT_FAIL, "cannot read %s: %s", file,
                        rc == RN_ETOOBIG ? "larger than 16 MiB" : rn_strerror(rc));
        text = (char *)buf;
    }

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    rn_datadir_opts_t dopts;
    rn_datadir_opts_default(&dopts);
    dopts.holder = "streamsql";
    rn_datadir_t *d = NULL;
    int rc = rn_datadir_open(cfg.data, &dopts, &d, err);
    if (rc != 0) {
        free(text);
        return fail(EXIT_FAIL, "%s", err);
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    int code;
    if (expr) code = run_script(d, &cfg, expr, strlen(expr));
    else if (file) code = run_script(d, &cfg, text, tlen);
    else code = repl(d, &cfg);
    fflush(stdout);
    rc = rn_datadir_close(d);
    if (rc != 0 && code == EXIT_OK) code = fail(EXIT_FAIL, "closing %s: %s", cfg.data, rn_strerror(rc));
    free(text);
    return code;
}

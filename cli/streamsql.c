/*
 * streamsql.c — the `streamsql` command: stream SQL over the topics of an
 * embedded data directory (streamsql/sql.h) or of a runneld broker (the
 * Query RPC, client/rpc.h), one statement at a time, from -e, a file (-f)
 * or a REPL. Embedded and remote differ only in where rows come from: from
 * "a row arrived" on (on_row, the table/csv/json printers, the summary, the
 * error display, exit codes) both go through the same code.
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
 *     rn_json_write_string; a text or blob value that is not valid UTF-8
 *     is printed losslessly as "NAME_b64":"<base64>" (as runnel consume
 *     --format json does), so 0xFF and U+00FF never print alike.
 *  4. Progress ("[ 42%] n/N records") goes to stderr only when stderr is a
 *     terminal, the query is bounded and embedded (a remote query shows
 *     none: the broker sends rows and final statistics only); it is erased
 *     before any output.
 *  5. The data directory is always closed cleanly (SIGPIPE ignored, Ctrl-C
 *     and SIGTERM cancel the running query rather than killing the process,
 *     even one stuck inside a single statement, such as a recursive CTE:
 *     rn_sql_cancel interrupts sqlite; exit 130). Remote:
 *     the SIGINT/SIGTERM handler only writes to a pipe; a watcher thread
 *     cancels the running stream (grpc_call_cancel is not
 *     async-signal-safe), so the broker stops the query and the command
 *     exits 130 after printing the rows it received.
 *  6. Remote errors: a statement that fails to open comes back with the
 *     engine's message, prefixed "at offset N: " when the engine knew the
 *     offset (proto/runnel.proto, QueryRequest); the prefix is taken off and
 *     the message and caret are shown as embedded.
 *  7. Where a run goes: --data or --server (both: usage error), else
 *     $RUNNEL_SERVER, else $RUNNEL_DATA (both set: usage error), as `runnel`;
 *     TLS to the server as `runnel`: --tls-ca, --tls-cert, --tls-key, else
 *     $RUNNEL_TLS_CA, $RUNNEL_TLS_CERT, $RUNNEL_TLS_KEY (client/tls.h); the
 *     token as `runnel`: --token, else $RUNNEL_TOKEN (warned about when it
 *     would travel in clear).
 *  8. A table stays aligned: the first block (up to TABLE_SIZE_ROWS rows, or
 *     what a --follow query had when it went idle) sets each column's width,
 *     at most TABLE_MAX_WIDTH characters; every cell wider than its column,
 *     then or later, is cut with an ellipsis. A buffered cell holds at most
 *     TABLE_MAX_WIDTH characters, so a block's memory is bounded.
 *  9. REPL: commands (.help, help, .format, .quit) are read only at the start
 *     of a statement; Ctrl-C during a statement cancels it (invariant 5),
 *     prints "cancelled (N rows shown)" on stderr and the REPL goes on.
 * 10. Remote statements ride out broker restarts: each message carries a
 *     resume token (server/query.c invariant 5); when the stream breaks in
 *     transport after the header arrived (or ends CANCELLED without a
 *     Ctrl-C here: a broker stopping as it answered), the statement is sent
 *     again with the last token (backoff 100 ms doubling to 2 s, jittered) until the
 *     header comes back or --reconnect-timeout-ms passed (then exit 1, one
 *     line); the output goes on with no row lost or repeated. stderr says
 *     "lost runneld ... reconnecting" and "resumed ...". A statement the
 *     broker cannot resume (not_resumable: why) fails as before, saying so.
 *     A broker refusing the resume (records gone: retention, a recreated
 *     topic) fails with its message. A statement that cannot reach the
 *     broker at its start fails at once, as before.
 */
#include "cli/streamsql_cli.h"

#include "client/rpc.h"
#include "client/tls.h"
#include "common/addr.h"
#include "common/error.h"
#include "common/json.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INT = 130, EXIT_PIPE = 141 };
enum { FMT_TABLE, FMT_CSV, FMT_JSON };

/* Table display (invariant 8): columns sized over the first TABLE_SIZE_ROWS
 * rows, then printed in blocks of TABLE_BLOCK_ROWS; a cell is at most
 * TABLE_MAX_WIDTH characters wide, a longer one cut with an ellipsis. */
#define TABLE_SIZE_ROWS  10000
#define TABLE_BLOCK_ROWS 1000
#define TABLE_MAX_WIDTH  40
#define ELLIPSIS         "\xe2\x80\xa6"    /* U+2026, one column */
#define SCRIPT_MAX       (16u << 20)

static const char usage_text[] =
    "usage: streamsql [--data DIR | --server HOST:PORT] [-e SQL | -f FILE] [options]\n"
    "\n"
    "Runs stream SQL over the topics of a data directory; without -e or -f, a REPL\n"
    "(line editing, history in ~/.streamsql_history; end statements with ';';\n"
    ".help lists its commands, .format table|csv|json changes the output format).\n"
    "  --data DIR          the data directory (default $RUNNEL_DATA)\n"
    "  --server HOST:PORT  run on a runneld broker instead (default $RUNNEL_SERVER);\n"
    "                      the same statements and output, no progress display\n"
    "  --tls-ca FILE       TLS to the broker: the CA of its certificate (default\n"
    "                      $RUNNEL_TLS_CA)\n"
    "  --tls-cert FILE --tls-key FILE  the client certificate a broker with\n"
    "                      --tls-client-ca asks for ($RUNNEL_TLS_CERT, $RUNNEL_TLS_KEY)\n"
    "  --token TOKEN       the broker user's token ($RUNNEL_TOKEN; runnel user add)\n"
    "  -e SQL              run these statements (separated by ';') and exit\n"
    "  -f FILE             run the statements in FILE and exit\n"
    "  --format F          table (default), csv or json (one object per line)\n"
    "  --follow            continuous: keep reading new records (Ctrl-C stops)\n"
    "  --from POS          earliest (default), latest, @TIMESTAMP_MS or checkpoint:NAME\n"
    "  --reconnect-timeout-ms MS  --server: when runneld restarts mid-statement,\n"
    "                      resume it (no row lost or repeated) for at most MS (120000;\n"
    "                      0: fail at once)\n"
    "  --skip-damaged      go past offsets a store recovery marked damaged or lost (their\n"
    "                      reads fail otherwise), counted on stderr (--data only)\n"
    "  --udf-dir DIR       load native functions from the shared libraries (*.so, sqlite\n"
    "                      extensions) in DIR (--data only; for --server, runneld's flag)\n"
    "\n"
    "Statements: SELECT ... FROM stream [WHERE ...] [GROUP BY TUMBLE(ts, '10s') |\n"
    "HOP(ts, '1m', '10s') | SESSION(ts, '30s'), keys...] [HAVING ...] [EMIT FINAL|CHANGES]\n"
    "[LIMIT n] [WITH (watermark = '5s', idle_timeout = '10s', late = 'drop')];\n"
    "EXPLAIN SELECT ...; CREATE STREAM s (f TYPE, ...) WITH (topic = 't', format = 'json',\n"
    "timestamp = 'f'); DROP STREAM s; SHOW STREAMS; DESCRIBE s.\n"
    "Tables: CREATE TABLE t (id INTEGER PRIMARY KEY, f TYPE, ...) WITH (topic = 't') or\n"
    "WITH (file = 'path.csv', format = 'csv'); DROP TABLE t; SHOW TABLES; and\n"
    "SELECT ... FROM stream s [LEFT] JOIN t ON s.k = t.id.\n";

typedef struct cfg {
    const char    *data;
    int            format;
    int            repl;         /* statements come from the REPL */
    rn_sql_opts_t  opts;
    const char    *from;         /* --from as given (sent to the broker) */
    rn_datadir_t  *d;            /* embedded */
    rn_rpc_t      *rpc;          /* remote */
    const char    *server;       /* remote: HOST:PORT, for messages */
    uint32_t       reconnect_ms; /* remote: give up resuming after this long (0: never try) */
} cfg_t;

/* How one statement went, embedded or remote. */
typedef struct result {
    int            rc;           /* 0, or the failure */
    int            opened;       /* it started: else show_error with erroff */
    int            erroff;
    char           err[RN_ERRMSG_SIZE];
    rn_sql_stats_t st;
} result_t;

typedef struct out {
    FILE                  *f;
    int                    format;
    const rn_sql_column_t *cols;
    int                    ncols;
    int                    header_done;
    uint64_t               rows;          /* rows printed (or buffered) */
    /* table: a block of rendered cells, each at most TABLE_MAX_WIDTH wide */
    char                 **cells;
    size_t                 ncells, cap;
    size_t                *width;
    int                    progress_shown;
} out_t;

static volatile sig_atomic_t interrupted;
static rn_sql_t *volatile running;
/* Remote (invariant 5): the handler writes to sig_pipe; the watcher cancels
 * `streaming` under stream_mu. */
static int sig_pipe[2] = {-1, -1};
static pthread_mutex_t stream_mu = PTHREAD_MUTEX_INITIALIZER;
static rn_rpc_stream_t *streaming;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    rn_sql_t *q = running;
    if (q) rn_sql_cancel(q);
    if (sig_pipe[1] >= 0) {
        int e = errno;
        ssize_t w = write(sig_pipe[1], "x", 1);
        (void)w;
        errno = e;
    }
}

static void *watcher_main(void *arg)
{
    (void)arg;
    char c;
    for (;;) {
        ssize_t r = read(sig_pipe[0], &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;                    /* main closed the pipe: the end */
        pthread_mutex_lock(&stream_mu);
        if (streaming) rn_rpc_stream_cancel(streaming);
        pthread_mutex_unlock(&stream_mu);
    }
    return NULL;
}

static void set_streaming(rn_rpc_stream_t *st)
{
    pthread_mutex_lock(&stream_mu);
    streaming = st;
    if (st && interrupted) rn_rpc_stream_cancel(st);
    pthread_mutex_unlock(&stream_mu);
}

/* A store whose recovery cut, damaged or lost something says so on stderr. */
static void warn_recovery(void *arg, int warn, const char *line)
{
    (void)arg;
    if (warn) fprintf(stderr, "streamsql: warning: %s\n", line);
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    code = rn_fail_line("streamsql", code, fmt, ap);
    va_end(ap);
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

/* Display width of UTF-8 text: one column per character. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

/* s in a column w wide: cut to w - 1 characters and an ellipsis when wider,
 * padded with spaces unless it is the row's last cell. */
static void table_put(FILE *f, const char *s, size_t w, int last)
{
    size_t n = text_width(s);
    if (n > w) {
        size_t chars = 0;
        for (; *s; s++) {
            if (((unsigned char)*s & 0xC0) != 0x80 && chars++ == w - 1) break;
            fputc(*s, f);
        }
        fputs(ELLIPSIS, f);
        n = w;
    } else {
        fputs(s, f);
    }
    if (!last)
        for (; n < w; n++) fputc(' ', f);
}

/* Print the buffered cells. The first flush sizes the columns (over every
 * row buffered so far: the whole output of most statements) and prints the
 * header; later blocks keep those widths (what is printed stays aligned),
 * cutting a wider cell with an ellipsis. */
static void table_flush(out_t *o)
{
    if (!o->ncells) return;
    clear_progress(o);
    size_t nc = (size_t)o->ncols;
    if (!nc) return;
    if (!o->header_done) {
        for (size_t i = 0; i < o->ncells; i++) {
            size_t w = text_width(o->cells[i]);
            if (w > o->width[i % nc]) o->width[i % nc] = w;
        }
        for (size_t c = 0; c < nc; c++) {
            if (o->width[c] > TABLE_MAX_WIDTH) o->width[c] = TABLE_MAX_WIDTH;
            if (o->width[c] == 0) o->width[c] = 1;
        }
        for (size_t c = 0; c < nc; c++) {
            fputs(c ? "  " : "", o->f);
            table_put(o->f, o->cols[c].name, o->width[c], c + 1 == nc);
        }
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
        fputs(c ? "  " : "", o->f);
        table_put(o->f, o->cells[i], o->width[c], c + 1 == nc);
        if (c + 1 == nc) fputc('\n', o->f);
        free(o->cells[i]);
    }
    o->ncells = 0;
    fflush(o->f);
}

/* Buffer one cell: control characters become spaces, and only what a column
 * can show is kept (TABLE_MAX_WIDTH characters, then an ellipsis), so a
 * block's memory is bounded whatever the values hold. */
static int table_cell(out_t *o, const char *s, size_t n)
{
    if (o->ncells == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 256;
        char **p = realloc(o->cells, nc * sizeof *p);
        if (!p) return -ENOMEM;
        o->cells = p;
        o->cap = nc;
    }
    size_t keep = 0, chars = 0;
    while (keep < n) {
        if (((unsigned char)s[keep] & 0xC0) != 0x80 && chars++ == TABLE_MAX_WIDTH) break;
        keep++;
    }
    int cut = keep < n;
    char *c = malloc(keep + (cut ? sizeof ELLIPSIS : 1));
    if (!c) return -ENOMEM;
    for (size_t i = 0; i < keep; i++) c[i] = (unsigned char)s[i] < 0x20 ? ' ' : s[i];
    c[keep] = '\0';
    if (cut) strcat(c, ELLIPSIS);
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

static void csv_header(out_t *o)
{
    for (int i = 0; i < o->ncols; i++) {
        if (i) fputc(',', o->f);
        csv_field(o->f, o->cols[i].name, strlen(o->cols[i].name));
    }
    fputc('\n', o->f);
    o->header_done = 1;
}

/* "name": or, for a value printed in base64, "name_b64": (invariant 3). */
static void json_name(FILE *f, const char *name, int b64)
{
    size_t n = strlen(name);
    char tmp[512];
    if (b64 && n + 4 < sizeof tmp) {
        memcpy(tmp, name, n);
        memcpy(tmp + n, "_b64", 4);
        name = tmp;
        n += 4;
    }
    rn_json_write_string(f, (const uint8_t *)name, n);
    fputc(':', f);
}

static int on_row(void *ctx, const rn_sql_value_t *v, int n)
{
    out_t *o = ctx;
    char buf[64];
    if (o->format != FMT_TABLE) clear_progress(o);
    if (o->format == FMT_CSV && !o->header_done) csv_header(o);
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
        int bytes = v[i].type == RN_SQL_TEXT || v[i].type == RN_SQL_BLOB;
        int b64 = bytes && !rn_json_utf8_valid((const uint8_t *)s, len);
        json_name(o->f, o->cols[i].name, b64);
        if (b64) rn_json_write_base64(o->f, (const uint8_t *)s, len);
        else if (bytes) rn_json_write_string(o->f, (const uint8_t *)s, len);
        else fwrite(s, 1, len, o->f);
    }
    if (o->format == FMT_JSON) fputc('}', o->f);
    o->rows++;
    if (o->format != FMT_TABLE) fputc('\n', o->f);
    else if (o->ncells >= (size_t)(o->header_done ? TABLE_BLOCK_ROWS : TABLE_SIZE_ROWS) *
                          (size_t)n)
        table_flush(o);
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
    if (!st->errors && !st->late && !st->skipped) return;
    fflush(stdout);
    fprintf(stderr, "streamsql: %llu records read", (unsigned long long)st->records);
    if (st->skipped)
        fprintf(stderr, ", %llu damaged or lost offsets skipped", (unsigned long long)st->skipped);
    if (st->errors)
        fprintf(stderr, ", %llu rejected (first: %s)", (unsigned long long)st->errors,
                st->first_error);
    if (st->late)
        fprintf(stderr, ", %llu late rows dropped (their window had closed; raise "
                "WITH (watermark = ...) to keep them)", (unsigned long long)st->late);
    fputc('\n', stderr);
}

/* ---- statements ------------------------------------------------------------------- */

/* The statement's output is complete: erase progress, print the last table
 * block (it needs the column names, so before they go). */
static void out_end(out_t *o)
{
    clear_progress(o);
    if (o->format == FMT_TABLE && o->cols) table_flush(o);
    /* csv: the header line even when no row came (a statement with columns) */
    if (o->format == FMT_CSV && o->cols && o->ncols > 0 && !o->header_done) csv_header(o);
    fflush(o->f);
}

static int out_begin(out_t *o, const rn_sql_column_t *cols, int n)
{
    o->cols = cols;
    o->ncols = n;
    o->width = calloc((size_t)n + 1, sizeof *o->width);
    if (!o->width) return -ENOMEM;
    for (int i = 0; i < n; i++) o->width[i] = strlen(cols[i].name);
    return 0;
}

static void run_local(const cfg_t *cfg, out_t *o, const char *sql, size_t len, result_t *r)
{
    rn_sql_t *q = NULL;
    rn_sql_opts_t opts = cfg->opts;
    opts.row = on_row;
    opts.ctx = o;
    r->rc = rn_sql_open(cfg->d, sql, len, &opts, &q, &r->erroff, r->err);
    if (r->rc != 0) return;
    r->opened = 1;
    const rn_sql_column_t *cols;
    int ncols;
    rn_sql_columns(q, &cols, &ncols);
    if ((r->rc = out_begin(o, cols, ncols)) != 0) goto out;
    int show_progress = isatty(STDERR_FILENO) && !cfg->opts.follow && rn_sql_is_query(q);
    uint64_t last = rn_mono_ns(), start = last;
    running = q;
    if (interrupted) rn_sql_cancel(q);   /* a signal before `running` was set */
    rn_sql_state_t s = RN_SQL_MORE;
    while (r->rc == 0 && s != RN_SQL_DONE) {
        r->rc = rn_sql_step(q, &s, r->err);
        if (s == RN_SQL_IDLE) {
            if (o->format == FMT_TABLE) table_flush(o);
            fflush(o->f);
            rn_sql_wait(q, 20);
        }
        uint64_t now = rn_mono_ns();
        if (show_progress && now - last > 200000000ull && now - start > 500000000ull) {
            rn_sql_stats_t st;
            rn_sql_stats(q, &st);
            progress(o, &st);
            last = now;
        }
    }
    running = NULL;
    /* Ctrl-C or SIGTERM interrupted a statement inside its step (rn_sql_cancel):
     * that is the stop asked for, not a failure (invariant 5). */
    if (r->rc != 0 && interrupted) {
        r->rc = 0;
        r->err[0] = '\0';
    }
out:
    out_end(o);
    rn_sql_stats(q, &r->st);
    rn_sql_close(q);     /* after the printing: o->cols point into q */
    o->cols = NULL;
}

/* "at offset N: message" (invariant 6): N into *off, the message kept. */
static void take_offset(result_t *r)
{
    int off, n = 0;
    if (sscanf(r->err, "at offset %d: %n", &off, &n) == 1 && n > 0) {
        r->erroff = off;
        memmove(r->err, r->err + n, strlen(r->err + n) + 1);
    }
}

/* One remote message: the columns (first), rows, the statistics. */
static int remote_message(out_t *o, const Runnel__V1__QueryResponse *m, rn_sql_value_t **vals,
                          size_t *nvals, result_t *r)
{
    for (size_t i = 0; i < m->n_rows; i++) {
        const Runnel__V1__Row *row = m->rows[i];
        if (row->n_values != (size_t)o->ncols)
            return rn_errf(r->err, -EPROTO, "the broker sent a row of %zu values for %d columns",
                           row->n_values, o->ncols);
        if (*nvals < row->n_values) {
            rn_sql_value_t *v = realloc(*vals, row->n_values * sizeof *v);
            if (!v) return rn_errf(r->err, -ENOMEM, "out of memory");
            *vals = v;
            *nvals = row->n_values;
        }
        for (size_t k = 0; k < row->n_values; k++) {
            const Runnel__V1__Value *x = row->values[k];
            rn_sql_value_t *v = &(*vals)[k];
            memset(v, 0, sizeof *v);
            switch (x->kind_case) {
            case RUNNEL__V1__VALUE__KIND_INTEGER: v->type = RN_SQL_INT; v->i = x->integer; break;
            case RUNNEL__V1__VALUE__KIND_REAL: v->type = RN_SQL_REAL; v->d = x->real; break;
            case RUNNEL__V1__VALUE__KIND_TEXT:
                v->type = RN_SQL_TEXT;
                v->s = x->text;
                v->n = strlen(x->text);
                break;
            case RUNNEL__V1__VALUE__KIND_BLOB:
                v->type = RN_SQL_BLOB;
                v->s = (const char *)x->blob.data;
                v->n = x->blob.len;
                break;
            default: v->type = RN_SQL_NULL; break;
            }
        }
        int rc = on_row(o, *vals, o->ncols);
        if (rc != 0) return rn_errf(r->err, rc, "%s", rn_strerror(rc));
    }
    if (m->stats) {
        const Runnel__V1__QueryStats *st = m->stats;
        r->st.records = st->records_in;
        r->st.rows = st->rows_out;
        r->st.late = st->late;
        r->st.errors = st->errors;
        r->st.watermark = st->watermark_ms;
        snprintf(r->st.first_error, sizeof r->st.first_error, "%s",
                 st->first_error ? st->first_error : "");
    }
    return 0;
}

/* The last resume token received (invariant 10): a copy, or none with why. */
typedef struct resume {
    uint8_t *tok;
    size_t   len, cap;
    char     why[RN_ERRMSG_SIZE];
} resume_t;

static int resume_take(resume_t *rs, const Runnel__V1__QueryResponse *m, char *err)
{
    if (m->not_resumable && m->not_resumable[0]) {
        rs->len = 0;
        snprintf(rs->why, sizeof rs->why, "%s", m->not_resumable);
        return 0;
    }
    if (!m->resume.len) return 0;
    if (m->resume.len > rs->cap) {
        uint8_t *p = realloc(rs->tok, m->resume.len);
        if (!p) return rn_errf(err, -ENOMEM, "out of memory");
        rs->tok = p;
        rs->cap = m->resume.len;
    }
    memcpy(rs->tok, m->resume.data, m->resume.len);
    rs->len = m->resume.len;
    return 0;
}

/* Sleep ms, in slices, unless Ctrl-C came: 0, or -ECANCELED. */
static int nap(uint32_t ms)
{
    while (ms && !interrupted) {
        uint32_t k = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)k * 1000000L};
        nanosleep(&ts, NULL);
        ms -= k;
    }
    return interrupted ? -ECANCELED : 0;
}

/* The stream broke with a transport error (lost is its message): open the
 * statement again from the last token until the header comes back, with
 * backoff, for at most cfg->reconnect_ms (invariant 10). 1 with *st and
 * *head (the new header, the caller's to free) on success; else negative
 * with err. */
static int resume_stream(const cfg_t *cfg, Runnel__V1__QueryRequest *req, const resume_t *rs,
                         uint64_t shown, const char *lost, rn_rpc_stream_t **st,
                         Runnel__V1__QueryResponse **head, char *err)
{
    if (!cfg->reconnect_ms) return rn_errf(err, -ECONNREFUSED, "%s", lost);
    if (!rs->len)
        return rn_errf(err, -ECONNREFUSED, "%s; this statement cannot be resumed (%s)", lost,
                       rs->why[0] ? rs->why : "the broker sent no resume point");
    fflush(stdout);
    fprintf(stderr, "streamsql: lost runneld at %s after %llu row%s; reconnecting to resume "
            "(at most %u ms)\n", cfg->server, (unsigned long long)shown, shown == 1 ? "" : "s",
            cfg->reconnect_ms);
    req->resume.data = rs->tok;
    req->resume.len = rs->len;
    uint64_t start = rn_mono_ns(), rng = start | 1;
    char last[RN_ERRMSG_SIZE];
    snprintf(last, sizeof last, "%s", lost);
    for (uint32_t attempt = 1;; attempt++) {
        uint64_t waited = (rn_mono_ns() - start) / 1000000u;
        if (waited >= cfg->reconnect_ms)
            return rn_errf(err, -ETIMEDOUT, "gave up resuming: runneld at %s did not answer for "
                           "%llu ms (%u attempts; --reconnect-timeout-ms): %s", cfg->server,
                           (unsigned long long)waited, attempt - 1, last);
        uint32_t ms = rn_rpc_backoff_ms(100, 2000, attempt, &rng);
        if (ms > cfg->reconnect_ms - waited) ms = (uint32_t)(cfg->reconnect_ms - waited);
        if (nap(ms) != 0) return -ECANCELED;
        rn_rpc_stream_t *s = NULL;
        ProtobufCMessage *pm = NULL;
        int rc = rn_rpc_stream_open(cfg->rpc, RN_RPC_METHOD("Query"), &req->base, &s, last);
        if (rc == 0) {
            set_streaming(s);
            rc = rn_rpc_stream_next(s, &runnel__v1__query_response__descriptor, &pm, NULL, last);
        }
        if (rc == 1) {
            *st = s;
            *head = (Runnel__V1__QueryResponse *)pm;
            fprintf(stderr, "streamsql: resumed on runneld at %s after %u attempt%s\n",
                    cfg->server, attempt, attempt == 1 ? "" : "s");
            return 1;
        }
        set_streaming(NULL);
        rn_rpc_stream_close(s);
        if (rc == 0) snprintf(last, sizeof last, "the resumed query ended without a header");
        if (interrupted) return -ECANCELED;
        if (rc == 0 || !(rn_rpc_retriable(rc) || rc == -ECANCELED)) {
            /* the broker answered and refused: retrying would not help (a
             * CANCELLED we did not ask for is a broker going away: retried) */
            return rn_errf(err, rc ? rc : -EPROTO, "%s", last);
        }
    }
}

static void run_remote(const cfg_t *cfg, out_t *o, const char *sql, size_t len, result_t *r)
{
    Runnel__V1__QueryRequest req = RUNNEL__V1__QUERY_REQUEST__INIT;
    Runnel__V1__QueryResponse *head = NULL;
    rn_sql_column_t *cols = NULL;
    rn_sql_value_t *vals = NULL;
    size_t nvals = 0;
    rn_rpc_stream_t *st = NULL;
    resume_t rs;
    memset(&rs, 0, sizeof rs);
    /* As embedded refuses it; sent, the text would be cut at the NUL. */
    if ((r->rc = rn_sql_check_text(sql, len, &r->erroff, r->err)) != 0) return;
    req.sql = strndup(sql, len);
    if (!req.sql) { r->rc = rn_errf(r->err, -ENOMEM, "out of memory"); return; }
    req.follow = cfg->opts.follow != 0;
    req.from = (char *)(cfg->from ? cfg->from : "");
    req.resumable = cfg->reconnect_ms != 0;
    r->rc = rn_rpc_stream_open(cfg->rpc, RN_RPC_METHOD("Query"), &req.base, &st, r->err);
    if (r->rc != 0) { r->opened = 1; goto out; }    /* transport: no caret */
    set_streaming(st);
    for (;;) {
        ProtobufCMessage *pm = NULL;
        int rc = rn_rpc_stream_next(st, &runnel__v1__query_response__descriptor, &pm, NULL,
                                    r->err);
        if (rc < 0 && head && !interrupted && (rn_rpc_retriable(rc) || rc == -ECANCELED)) {
            /* runneld went away mid-statement: resume where the rows stopped */
            char lost[RN_ERRMSG_SIZE];
            snprintf(lost, sizeof lost, "%s", r->err);
            set_streaming(NULL);
            rn_rpc_stream_close(st);
            st = NULL;
            Runnel__V1__QueryResponse *h2 = NULL;
            rc = resume_stream(cfg, &req, &rs, o->rows, lost, &st, &h2, r->err);
            if (rc == 1) {
                if (h2->n_columns != head->n_columns) {
                    rc = rn_errf(r->err, -EPROTO, "the resumed query has %zu columns, not %zu",
                                 h2->n_columns, head->n_columns);
                } else {
                    rc = resume_take(&rs, h2, r->err);
                }
                protobuf_c_message_free_unpacked(&h2->base, NULL);
                if (rc == 0) continue;
            }
            if (rc == -ECANCELED && interrupted) rc = 0;   /* Ctrl-C while waiting */
        }
        if (rc <= 0) {
            r->rc = rc;
            /* not opened: the statement failed (caret), unless the call itself did */
            if (rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -ECANCELED) r->opened = 1;
            if (rc != 0 && !r->opened) take_offset(r);
            break;
        }
        Runnel__V1__QueryResponse *m = (Runnel__V1__QueryResponse *)pm;
        if ((rc = resume_take(&rs, m, r->err)) != 0) {
            if (m != head) protobuf_c_message_free_unpacked(pm, NULL);
            goto stop;
        }
        if (!head) {
            head = m;                        /* kept: the column names point into it */
            r->opened = 1;
            cols = calloc(m->n_columns + 1, sizeof *cols);
            if (!cols) { rc = rn_errf(r->err, -ENOMEM, "out of memory"); goto stop; }
            for (size_t i = 0; i < m->n_columns; i++) {
                cols[i].name = m->columns[i];
                cols[i].is_time = i < m->n_column_is_time && m->column_is_time[i];
            }
            if ((rc = out_begin(o, cols, (int)m->n_columns)) != 0) {
                rn_errf(r->err, rc, "out of memory");
                goto stop;
            }
        }
        rc = remote_message(o, m, &vals, &nvals, r);
        if (m != head) protobuf_c_message_free_unpacked(pm, NULL);
        if (rc != 0) goto stop;
        if (cfg->opts.follow) {              /* live, as embedded flushes when idle */
            if (o->format == FMT_TABLE) table_flush(o);
            fflush(o->f);
        }
        continue;
stop:
        r->rc = rc;
        break;
    }
    set_streaming(NULL);
    out_end(o);
    /* Ctrl-C: the stream ends cancelled; like embedded, that is exit 130. */
    if (r->rc == -ECANCELED && interrupted) r->rc = 0;
out:
    rn_rpc_stream_close(st);
    if (head) protobuf_c_message_free_unpacked(&head->base, NULL);
    free(cols);
    free(vals);
    free(req.sql);
    free(rs.tok);
    o->cols = NULL;
}

static int run_statement(const cfg_t *cfg, const char *sql, size_t len)
{
    out_t o;
    memset(&o, 0, sizeof o);
    o.f = stdout;
    o.format = cfg->format;
    result_t r;
    memset(&r, 0, sizeof r);
    r.erroff = -1;
    /* the rows are printed as they arrive; o.cols is valid until run_* returns,
     * so everything after it prints without them */
    if (cfg->rpc) run_remote(cfg, &o, sql, len, &r);
    else run_local(cfg, &o, sql, len, &r);
    if (!r.opened) {
        show_error(sql, len, r.erroff, r.err[0] ? r.err : rn_strerror(r.rc));
        return EXIT_FAIL;
    }
    int code = EXIT_OK;
    if (r.rc == -EPIPE || ferror(o.f)) code = EXIT_PIPE;
    else if (r.rc != 0) code = fail(EXIT_FAIL, "%s", r.err[0] ? r.err : rn_strerror(r.rc));
    else if (interrupted) code = EXIT_INT;
    if (code == EXIT_INT && cfg->repl) {
        fflush(stdout);
        fprintf(stderr, "cancelled (%llu row%s shown)\n", (unsigned long long)o.rows,
                o.rows == 1 ? "" : "s");
    }
    summary(&r.st);
    for (size_t i = 0; i < o.ncells; i++) free(o.cells[i]);
    free(o.cells);
    free(o.width);
    return code;
}

typedef struct script {
    const cfg_t  *cfg;
    const char   *text;
    int           code;
} script_t;

static int script_stmt(void *ctx, size_t off, size_t n)
{
    script_t *s = ctx;
    if (interrupted) {                   /* stopped before this statement: still 130 */
        s->code = EXIT_INT;
        return 1;
    }
    s->code = run_statement(s->cfg, s->text + off, n);
    return s->code != EXIT_OK;
}

static int run_script(const cfg_t *cfg, const char *text, size_t len)
{
    script_t s = {cfg, text, EXIT_OK};
    rn_sql_split(text, len, script_stmt, &s);
    return s.code;
}

static const char repl_help[] =
    "Statements end with ';' and may span lines:\n"
    "  SELECT ... FROM stream [WHERE ...] [GROUP BY TUMBLE(ts, '10s') | HOP(ts, '1m', '10s')\n"
    "    | SESSION(ts, '30s'), keys...] [HAVING ...] [EMIT FINAL|CHANGES] [LIMIT n]\n"
    "    [WITH (watermark = '5s', idle_timeout = '10s', late = 'drop')]\n"
    "  EXPLAIN SELECT ...\n"
    "  CREATE STREAM s (f TYPE, ...) WITH (topic = 't', format = 'json', timestamp = 'f')\n"
    "  DROP STREAM s    SHOW STREAMS    DESCRIBE s\n"
    "  CREATE TABLE t (id INTEGER PRIMARY KEY, f TYPE, ...) WITH (topic = 't')\n"
    "  DROP TABLE t    SHOW TABLES    SELECT ... FROM stream s [LEFT] JOIN t ON s.k = t.id\n"
    "Commands (no ';' needed):\n"
    "  .help, help             this text\n"
    "  .format [table|csv|json]  show or set the output format\n"
    "  .quit, quit, exit, \\q    leave (Ctrl-D too)\n"
    "Ctrl-C cancels the running statement (or the line being typed); the REPL stays.\n"
    "A table cuts cells wider than 40 characters with an ellipsis; csv and json do not.\n";

static const char *const format_names[] = {"table", "csv", "json"};

static int format_from_name(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, format_names[i])) return i;
    return -1;
}

/* A REPL command (a line starting with '.', or "help"), outside a statement:
 * 1 when line was one (handled here), else 0. */
static int repl_command(cfg_t *cfg, const char *line)
{
    char cmd[32] = "", arg[32] = "", extra[8] = "";
    char buf[128];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == ';' || buf[n - 1] == '\t')) buf[--n] = '\0';
    int k = sscanf(buf, " %31s %31s %7s", cmd, arg, extra);
    if (k < 1 || (cmd[0] != '.' && strcmp(cmd, "help") != 0)) return 0;
    if (!strcmp(cmd, "help") && k > 1) return 0;      /* not the command */
    if (!strcmp(cmd, ".help") || !strcmp(cmd, "help")) {
        fputs(repl_help, stdout);
    } else if (!strcmp(cmd, ".format")) {
        if (k == 1) {
            printf("format: %s\n", format_names[cfg->format]);
        } else if (k > 2 || format_from_name(arg) < 0) {
            fflush(stdout);
            fprintf(stderr, "streamsql: .format takes table, csv or json\n");
        } else {
            cfg->format = format_from_name(arg);
        }
    } else {
        fflush(stdout);
        fprintf(stderr, "streamsql: unknown command '%s' (.help lists the commands)\n", cmd);
    }
    fflush(stdout);
    return 1;
}

static int is_quit(const char *line)
{
    while (*line == ' ') line++;
    return !strcmp(line, "quit") || !strcmp(line, "exit") || !strcmp(line, ".quit") ||
           !strcmp(line, ".exit") || !strcmp(line, "\\q") || !strcmp(line, "quit;") ||
           !strcmp(line, "exit;");
}

static int repl(cfg_t *cfg, const char *where)
{
    sqlcli_editor_t ed;
    sqlcli_editor_init(&ed);
    char *acc = NULL;
    size_t len = 0;
    int code = EXIT_OK;
    if (ed.tty)
        printf("streamsql on %s: end statements with ';', .help for help, 'quit' leaves, "
               "Ctrl-C cancels\n", where);
    for (;;) {
        int intr = 0;
        fflush(stdout);
        char *line = sqlcli_readline(&ed, len ? "     ...> " : "streamsql> ", &intr);
        if (!line) break;
        if (intr) { free(line); len = 0; interrupted = 0; continue; }
        if (!len && is_quit(line)) { free(line); break; }
        if (!len && repl_command(cfg, line)) { free(line); continue; }
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
        int c = run_script(cfg, acc, len);
        if (!ed.tty && c != EXIT_OK) code = c;
        if (c == EXIT_PIPE) break;
        interrupted = 0;
        len = 0;
    }
    if (len && code == EXIT_OK) {
        int c = run_script(cfg, acc, len);   /* a last statement without ';' */
        if (!ed.tty) code = c;
    }
    free(acc);
    sqlcli_editor_free(&ed);
    return code;
}

/* $NAME, or NULL when unset or empty. */
static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

int main(int argc, char **argv)
{
    rn_sys_tune_malloc();
    cfg_t cfg;
    memset(&cfg, 0, sizeof cfg);
    rn_sql_opts_default(&cfg.opts);
    const char *data_env = getenv("RUNNEL_DATA"), *server_env = getenv("RUNNEL_SERVER");
    if (data_env && !*data_env) data_env = NULL;
    if (server_env && !*server_env) server_env = NULL;
    const char *server = NULL, *expr = NULL, *file = NULL;
    char err[RN_ERRMSG_SIZE];
    enum { OPT_DATA = 256, OPT_SERVER, OPT_FORMAT, OPT_FOLLOW, OPT_FROM, OPT_HELP, OPT_SKIP,
           OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TOKEN, OPT_RECONNECT, OPT_UDF_DIR };
    const char *udf_dir = NULL;
    const char *token = NULL;
    int reconnect_set = 0;
    cfg.reconnect_ms = 120000;
    rn_tls_files_t tls = {NULL, NULL, NULL};
    static const struct option longopts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"skip-damaged", no_argument, NULL, OPT_SKIP},
        {"from", required_argument, NULL, OPT_FROM},
        {"help", no_argument, NULL, OPT_HELP},
        {"tls-ca", required_argument, NULL, OPT_TLS_CA},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"reconnect-timeout-ms", required_argument, NULL, OPT_RECONNECT},
        {"udf-dir", required_argument, NULL, OPT_UDF_DIR},
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
        case OPT_TLS_CA: tls.ca = optarg; break;
        case OPT_TLS_CERT: tls.cert = optarg; break;
        case OPT_TLS_KEY: tls.key = optarg; break;
        case OPT_TOKEN: token = optarg; break;
        case OPT_RECONNECT: {
            char *end = NULL;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || errno || v > UINT32_MAX || optarg[0] == '-')
                return fail(EXIT_USAGE, "--reconnect-timeout-ms: '%s' is not a number of "
                            "milliseconds (0 to %u)", optarg, UINT32_MAX);
            cfg.reconnect_ms = (uint32_t)v;
            reconnect_set = 1;
            break;
        }
        case OPT_SKIP: cfg.opts.skip_damaged = 1; break;
        case OPT_UDF_DIR: udf_dir = optarg; break;
        case OPT_FROM:
            if (rn_sql_parse_from(optarg, &cfg.opts, err) != 0) return fail(EXIT_USAGE, "%s", err);
            cfg.from = optarg;
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
    /* invariant 7 */
    if (cfg.data && server)
        return fail(EXIT_USAGE, "give one of --data DIR and --server HOST:PORT");
    if (server && !*server)
        return fail(EXIT_USAGE, "--server: the address is empty; give HOST:PORT");
    if (server) {
        char host[256], why[RN_ERRMSG_SIZE];
        int port;
        if (rn_addr_split(server, host, sizeof host, &port, 0, why) != 0)
            return fail(EXIT_USAGE, "--server: %s", why);
    }
    if (cfg.data && !*cfg.data) return fail(EXIT_USAGE, "--data: the directory name is empty");
    if (!cfg.data && !server) {
        if (data_env && server_env)
            return fail(EXIT_USAGE, "RUNNEL_DATA and RUNNEL_SERVER are both set; give --data DIR "
                        "or --server HOST:PORT");
        server = server_env;
        cfg.data = data_env;
    }
    if (!cfg.data && !server)
        return fail(EXIT_USAGE, "no data directory: give --data DIR or set RUNNEL_DATA (or "
                    "--server HOST:PORT, RUNNEL_SERVER)");
    if (server && cfg.opts.skip_damaged)
        return fail(EXIT_USAGE, "--skip-damaged reads the stores itself: use --data DIR");
    if (server && udf_dir)
        return fail(EXIT_USAGE, "--udf-dir loads functions into this process: with --server, "
                    "start runneld with --udf-dir DIR");
    if (udf_dir && rn_sql_udf_dir(udf_dir, err) != 0) return fail(EXIT_USAGE, "%s", err);
    if (!server && reconnect_set)
        return fail(EXIT_USAGE, "--reconnect-timeout-ms is for a server (--server HOST:PORT)");
    cfg.server = server;
    if (!server && (tls.ca || tls.cert || tls.key || token))
        return fail(EXIT_USAGE, "--tls-ca, --tls-cert, --tls-key and --token are for a server "
                    "(--server HOST:PORT), not a data directory");
    if (server) {
        tls.ca = tls.ca ? tls.ca : env_or_null("RUNNEL_TLS_CA");
        tls.cert = tls.cert ? tls.cert : env_or_null("RUNNEL_TLS_CERT");
        tls.key = tls.key ? tls.key : env_or_null("RUNNEL_TLS_KEY");
        token = token ? token : env_or_null("RUNNEL_TOKEN");
        if (token && rn_tls_token_in_clear(server, &tls))
            fprintf(stderr, "streamsql: warning: the token goes in clear to %s (plaintext, not "
                    "loopback): give --tls-ca to use TLS\n", server);
        if (rn_tls_rpc_open(server, &tls, &cfg.rpc, err) != 0)
            return fail(EXIT_USAGE, "%s%s", strncmp(err, "--tls-", 6) ? "--server: " : "", err);
        if (token && rn_rpc_set_token(cfg.rpc, token, err) != 0) {
            rn_rpc_close(cfg.rpc);
            return fail(EXIT_USAGE, "%s", err);
        }
    }

    char *text = NULL;
    size_t tlen = 0;
    if (file) {
        uint8_t *buf = NULL;
        int rc = rn_read_file(file, SCRIPT_MAX, &buf, &tlen);
        if (rc != 0) {
            rn_rpc_close(cfg.rpc);
            return fail(EXIT_FAIL, "cannot read %s: %s", file,
                        rc == RN_ETOOBIG ? "larger than 16 MiB" : rn_strerror(rc));
        }
        text = (char *)buf;
    }

    signal(SIGPIPE, SIG_IGN);
    pthread_t watcher;
    int watching = 0;
    if (cfg.rpc && pipe(sig_pipe) == 0) {
        /* the watcher must not take the signals itself (invariant 5) */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        watching = pthread_create(&watcher, NULL, watcher_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char where[300];
    int rc = 0;
    if (cfg.rpc) {
        snprintf(where, sizeof where, "runneld at %s", server);
    } else {
        rn_datadir_opts_t dopts;
        rn_datadir_opts_default(&dopts);
        dopts.holder = "streamsql";
        dopts.report = warn_recovery;
        rc = rn_datadir_open(cfg.data, &dopts, &cfg.d, err);
        if (rc != 0) {
            free(text);
            return fail(EXIT_FAIL, "%s", err);
        }
        snprintf(where, sizeof where, "%s", rn_datadir_path(cfg.d));
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    int code;
    if (expr) code = run_script(&cfg, expr, strlen(expr));
    else if (file) code = run_script(&cfg, text, tlen);
    else {
        cfg.repl = 1;
        code = repl(&cfg, where);
    }
    fflush(stdout);
    if (cfg.d) {
        rc = rn_datadir_close(cfg.d);
        if (rc != 0 && code == EXIT_OK)
            code = fail(EXIT_FAIL, "closing %s: %s", cfg.data, rn_strerror(rc));
    }
    if (watching) {
        close(sig_pipe[1]);      /* the watcher's read ends */
        sig_pipe[1] = -1;
        pthread_join(watcher, NULL);
    }
    if (sig_pipe[0] >= 0) close(sig_pipe[0]);
    rn_rpc_close(cfg.rpc);
    free(text);
    return code;
}

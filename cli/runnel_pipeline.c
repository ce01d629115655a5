/*
 * runnel_pipeline.c — `runnel pipeline create|list|status|pause|resume|drop|run`
 * (etl/etl.h).
 *
 * Invariants:
 *  1. create, list, status, pause, resume and drop go through the client
 *     API (client/runnel.h): embedded on --data DIR or on runneld with
 *     --server, which also starts and stops the pipelines it runs. `run`
 *     runs pipelines in this process on --data DIR only (with --server it is
 *     refused, exit 2: runneld runs its pipelines itself).
 *  2. `create` takes one or more CREATE PIPELINE statements (an argument or
 *     -f FILE); each is checked (bad SQL refused with the SQL error) and
 *     stored on its own: one failing does not stop the others; the exit code
 *     is 1 when any failed.
 *  3. `run` steps its pipelines round-robin in one thread; SIGINT/SIGTERM
 *     make each take a final checkpoint and the command exit 0. With
 *     --until-caught-up it stops (also with a final checkpoint) once every
 *     pipeline is idle in the same round. Rows of a stdout sink are the only
 *     thing on stdout. `run -f FILE` first applies the pipelines file
 *     (etl/script.h, the same as runneld --pipelines), stopping with
 *     FILE:LINE:COLUMN at its first failing statement, then runs the
 *     pipelines it defines.
 */
#include "cli/runnel_cli.h"

#include "common/error.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "etl/script.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RUN 64   /* pipelines one `run` steps */

static const char pipeline_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] pipeline create 'CREATE PIPELINE ...' | -f FILE\n"
    "       runnel [--data DIR | --server HOST:PORT] pipeline list\n"
    "       runnel [--data DIR | --server HOST:PORT] pipeline status [NAME]\n"
    "       runnel [--data DIR | --server HOST:PORT] pipeline pause|resume|drop NAME\n"
    "       runnel --data DIR pipeline run NAME... | --all | -f FILE [--until-caught-up]\n"
    "                                      [--skip-damaged]\n"
    "\n"
    "CREATE PIPELINE name AS INSERT INTO sink SELECT ... FROM source ...\n"
    "  [WITH (checkpoint_interval = '1s', start = 'earliest' | 'latest' | '@MS',\n"
    "         dead_letter = 'name.dlq', queues = N, <the query's options>)]\n"
    "sink: a topic (created when missing, with the source's queue count or N), 'file:PATH'\n"
    "(JSON lines) or 'stdout'. Topic and file sinks are exactly-once across crashes;\n"
    "stdout is at-least-once. Records the query rejects go to the dead-letter topic.\n"
    "run -f FILE: apply the pipelines file (CREATE STREAM, CREATE FUNCTION, CREATE PIPELINE,\n"
    "DROP STREAM, DROP FUNCTION, DROP PIPELINE; unchanged definitions do nothing), then run\n"
    "the pipelines it defines.\n"
    "run: until SIGINT/SIGTERM (a final checkpoint, exit 0), or with --until-caught-up\n"
    "until every source is consumed. drop deletes the pipeline and its state.\n"
    "--skip-damaged: go past source offsets a store recovery marked damaged or lost (their\n"
    "reads stop the pipeline otherwise), counted on stderr.\n";

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int open_dir(rn_cli_t *cli, int skip_damaged, rn_datadir_t **d)
{
    char err[RN_ERRMSG_SIZE];
    if (rn_cli_remote(cli))
        return rn_cli_fail(RN_CLI_USAGE, "pipeline run: runs pipelines in this process on --data "
                           "DIR; runneld runs its own (see `pipeline status` with --server)");
    const char *dir = cli->data ? cli->data : cli->data_env;
    if (!dir)
        return rn_cli_fail(RN_CLI_USAGE, "no data directory: give --data DIR or set RUNNEL_DATA");
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.holder = cli->holder;
    o.report = rn_cli_recovery_report;
    o.report_arg = cli;
    o.skip_damaged = skip_damaged;
    if (rn_datadir_open(dir, &o, d, err) != 0) return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    return 0;
}

static int close_dir(rn_datadir_t *d, int code)
{
    int rc = rn_datadir_close(d);
    if (rc != 0 && code == RN_CLI_OK)
        return rn_cli_fail(RN_CLI_FAIL, "closing the data directory: %s", rn_strerror(rc));
    return code;
}

typedef struct create_ctx {
    rn_client_t  *c;
    const char   *text;
    int           failed, made;
} create_ctx_t;

static int create_one(void *ctx, size_t off, size_t n)
{
    create_ctx_t *c = ctx;
    char err[RN_ERRMSG_SIZE];
    char *one = strndup(c->text + off, n);
    int rc = one ? rn_client_pipeline_create(c->c, one, err) : rn_errf(err, -ENOMEM, "out of memory");
    free(one);
    if (rc != 0) {
        rn_cli_fail(RN_CLI_FAIL, "%s", err);
        c->failed++;
    } else {
        c->made++;
    }
    return 0;
}

static int cmd_create(rn_client_t *cl, const char *text, size_t len)
{
    create_ctx_t c = {cl, text, 0, 0};
    rn_sql_split(text, len, create_one, &c);
    if (!c.made && !c.failed) return rn_cli_fail(RN_CLI_USAGE, "pipeline create: no statement");
    return c.failed ? RN_CLI_FAIL : RN_CLI_OK;
}

static void format_wm(int64_t wm, char *out, size_t size)
{
    if (wm == INT64_MIN) snprintf(out, size, "-");
    else rn_cli_format_time(wm, out, size);
}

static int cmd_status(rn_client_t *c, const char *name, int brief)
{
    char err[RN_ERRMSG_SIZE], t[40], wm[40];
    rn_client_pipeline_t *v = NULL;
    size_t n = 0;
    if (rn_client_pipeline_status(c, name, &v, &n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    if (brief) printf("%-24s %-8s %-20s %s\n", "NAME", "STATE", "SOURCE", "SINK");
    for (size_t i = 0; i < n; i++) {
        const rn_etl_status_t *s = &v[i].s;
        const char *state = v[i].state;
        if (brief) {
            printf("%-24s %-8s %-20s %s\n", v[i].s.name, state, v[i].s.source, v[i].s.sink);
            continue;
        }
        if (s->checkpoint_ms) rn_cli_format_time(s->checkpoint_ms, t, sizeof t);
        else snprintf(t, sizeof t, "never");
        format_wm(s->watermark, wm, sizeof wm);
        printf("pipeline %s\n  state: %s\n  source: %s\n  sink: %s\n", s->name, state,
               s->source, s->sink);
        printf("  records: in %llu, out %llu, late %llu, errors %llu\n",
               (unsigned long long)s->in, (unsigned long long)s->out,
               (unsigned long long)s->late, (unsigned long long)s->errors);
        printf("  watermark: %s\n  last checkpoint: %s\n  lag:", wm, t);
        for (uint32_t q = 0; q < s->nq; q++) printf(" %u=%lld", q, (long long)s->lag[q]);
        printf("\n");
    }
    free(v);
    return RN_CLI_OK;
}

/* The pipelines `run` steps: named, or defined by the file. */
typedef struct names {
    char *v[MAX_RUN];
    int   n;
} names_t;

static void script_note(void *ctx, int warn, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "runnel: %s%s\n", warn ? "warning: " : "", msg);
}

static void script_name(void *ctx, const char *name)
{
    names_t *nm = ctx;
    for (int i = 0; i < nm->n; i++)
        if (!strcmp(nm->v[i], name)) return;
    if (nm->n < MAX_RUN) nm->v[nm->n++] = strdup(name);
}

static int cmd_run(rn_datadir_t *d, int all, int until, int nnames, char **names)
{
    char err[RN_ERRMSG_SIZE];
    rn_etl_t *p[MAX_RUN];
    rn_etl_state_t st[MAX_RUN];
    int failed[MAX_RUN] = {0};
    int np = 0, code = RN_CLI_OK;
    if (all) {
        rn_etl_status_t *s = NULL;
        size_t n = 0;
        if (rn_etl_status(d, NULL, &s, &n, err) != 0) return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        for (size_t i = 0; i < n && np < MAX_RUN; i++) {
            if (s[i].paused) continue;
            if (rn_etl_open(d, s[i].name, &p[np], err) != 0) {
                code = rn_cli_fail(RN_CLI_FAIL, "%s", err);   /* the others still run */
                continue;
            }
            np++;
        }
        free(s);
    } else {
        for (int i = 0; i < nnames && np < MAX_RUN; i++) {
            if (rn_etl_open(d, names[i], &p[np], err) != 0) {
                code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
                continue;
            }
            np++;
        }
    }
    if (np == 0) return code == RN_CLI_OK ? rn_cli_fail(RN_CLI_FAIL, "no pipeline to run") : code;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (int i = 0; i < np; i++) st[i] = RN_ETL_MORE;
    while (!g_stop) {
        int idle = 0, live = 0;
        for (int i = 0; i < np && !g_stop; i++) {
            if (st[i] == RN_ETL_STOPPED) continue;
            if (rn_etl_step(p[i], &st[i], err) != 0) {
                code = rn_cli_fail(RN_CLI_FAIL, "pipeline '%s': %s", rn_etl_name(p[i]), err);
                st[i] = RN_ETL_STOPPED;
                failed[i] = 1;   /* its last checkpoint stands: a new one would lose data */
                continue;
            }
            live += st[i] != RN_ETL_STOPPED;
            idle += st[i] == RN_ETL_IDLE;
        }
        if (!live || (until && idle == live)) break;
        if (idle == live) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    for (int i = 0; i < np; i++) {
        int rc = failed[i] ? 0 : rn_etl_checkpoint(p[i], err);
        if (rc != 0 && rc != RN_ENOTFOUND)   /* dropped meanwhile: nothing to keep */
            code = rn_cli_fail(RN_CLI_FAIL, "pipeline '%s': final checkpoint: %s",
                               rn_etl_name(p[i]), err);
        rn_etl_close(p[i]);
    }
    return code;
}

int rn_cli_pipeline(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_ALL, OPT_UNTIL, OPT_SKIP };
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"all", no_argument, NULL, OPT_ALL},
        {"until-caught-up", no_argument, NULL, OPT_UNTIL},
        {"skip-damaged", no_argument, NULL, OPT_SKIP},
        {"file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *file = NULL;
    int all = 0, until = 0, skip = 0, c;
    while ((c = getopt_long(argc, argv, ":hf:", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case OPT_ALL: all = 1; break;
        case OPT_UNTIL: until = 1; break;
        case OPT_SKIP: skip = 1; break;
        case 'f': file = optarg; break;
        case 'h': fputs(pipeline_usage, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option("pipeline", argv, c);
        }
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "pipeline: give a subcommand: create, list, status, "
                           "pause, resume, drop, run");
    const char *sub = pos[0];
    int need = !strcmp(sub, "list") ? 1 : !strcmp(sub, "status") ? -1
             : !strcmp(sub, "create") ? (file ? 1 : 2)
             : !strcmp(sub, "pause") || !strcmp(sub, "resume") || !strcmp(sub, "drop") ? 2
             : !strcmp(sub, "run") ? 0 : -2;
    if (need == -2)
        return rn_cli_fail(RN_CLI_USAGE, "pipeline: unknown subcommand '%.40s'; subcommands: "
                           "create, list, status, pause, resume, drop, run", sub);
    if (need > 0 && npos != need)
        return rn_cli_fail(RN_CLI_USAGE, "pipeline %s: %s", sub,
                           need == 1 ? "takes no argument" : "give exactly one argument");
    if (need == -1 && npos > 2) return rn_cli_fail(RN_CLI_USAGE, "pipeline status [NAME]");
    if (file && strcmp(sub, "create") && strcmp(sub, "run"))
        return rn_cli_fail(RN_CLI_USAGE, "pipeline: -f applies to create and run only");
    if ((all || until || skip) && strcmp(sub, "run"))
        return rn_cli_fail(RN_CLI_USAGE, "pipeline: --all, --until-caught-up and --skip-damaged "
                           "apply to run only");
    if (!strcmp(sub, "run") && (all ? npos != 1 || file : npos < 2 && !file))
        return rn_cli_fail(RN_CLI_USAGE, "pipeline run: give NAME..., -f FILE or --all");
    char *text = NULL;
    size_t tlen = 0;
    if (file) {
        uint8_t *buf = NULL;
        int rc = rn_read_file(file, (size_t)RN_META_PIPELINE_SQL_MAX * 64, &buf, &tlen);
        if (rc != 0) return rn_cli_fail(RN_CLI_FAIL, "-f %s: %s", file, rn_strerror(rc));
        text = (char *)buf;
    }
    if (!strcmp(sub, "run")) {
        rn_datadir_t *d = NULL;
        int code = open_dir(cli, skip, &d);
        if (code != 0) { free(text); return code; }
        names_t nm = {{0}, 0};
        for (int i = 1; i < npos && nm.n < MAX_RUN; i++) nm.v[nm.n++] = strdup(pos[i]);
        if (file) {
            char err[RN_ERRMSG_SIZE];
            rn_etl_script_cb_t cb = {script_note, script_name, &nm};
            if (rn_etl_script_apply(d, file, text, tlen, &cb, err) != 0)
                code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
            free(text);
        }
        if (code == 0) code = cmd_run(d, all, until, nm.n, nm.v);
        for (int i = 0; i < nm.n; i++) free(nm.v[i]);
        if (rn_datadir_skipped(d)) {
            fflush(stdout);
            fprintf(stderr, "runnel: warning: pipelines skipped %llu damaged or lost source "
                    "offsets\n", (unsigned long long)rn_datadir_skipped(d));
        }
        return close_dir(d, code);
    }
    rn_client_t *cl = NULL;
    int code = rn_cli_open_client(cli, NULL, 0, &cl);
    if (code != 0) { free(text); return code; }
    char err[RN_ERRMSG_SIZE];
    if (!strcmp(sub, "create")) {
        code = text ? cmd_create(cl, text, tlen) : cmd_create(cl, pos[1], strlen(pos[1]));
    } else if (!strcmp(sub, "list")) {
        code = cmd_status(cl, NULL, 1);
    } else if (!strcmp(sub, "status")) {
        code = cmd_status(cl, npos == 2 ? pos[1] : NULL, 0);
    } else if (!strcmp(sub, "pause") || !strcmp(sub, "resume")) {
        if (rn_client_pipeline_pause(cl, pos[1], !strcmp(sub, "pause"), err) != 0)
            code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    } else {
        if (rn_client_pipeline_drop(cl, pos[1], err) != 0) code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    }
    free(text);
    return rn_cli_close_client(cl, code);
}

/*
 * runnel.c — the `runnel` command line: global options, dispatch, and the
 * helpers every command shares (errors, strict numbers, opening the client on
 * a data directory or a server).
 *
 * Invariants:
 *  1. A failing run prints exactly one line on stderr, "runnel: ...", and
 *     exits 2 for a bad command line, 1 for anything else (runnel_cli.h).
 *  2. Numbers on the command line are whole decimal strings inside a stated
 *     range; anything else is a usage error naming the range.
 *  3. What is not built yet (pipelines over --server) is refused by name,
 *     never approximated.
 *  4. Every command goes through the client API (client/runnel.h) opened
 *     once per run: embedded on a data directory (locked with the run's words
 *     as the holder text, closed and flushed before exit) or on a runneld
 *     server; output and errors are the same either way.
 *  5. Where the run goes: --data or --server (on the command line, before or
 *     after the command; both is an error), else $RUNNEL_SERVER, else
 *     $RUNNEL_DATA (both set is an error).
 *  6. TLS to a server: --tls-ca, --tls-cert, --tls-key (anywhere on the
 *     command line), else $RUNNEL_TLS_CA, $RUNNEL_TLS_CERT, $RUNNEL_TLS_KEY;
 *     any of them makes the connection TLS only. Given on the command line
 *     for an embedded run, they are a usage error; the variables are then
 *     ignored.
 *  7. --token (anywhere), else $RUNNEL_TOKEN, goes with every call to a
 *     server; sent in clear (plaintext, not loopback) it is preceded by a
 *     one-line warning on stderr. `user` works on the data directory's
 *     credentials file without opening (or locking) the directory, so it
 *     runs beside the runneld serving it.
 */
#include "cli/runnel_cli.h"
#include "client/tls.h"

#include "common/addr.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMMANDS "topic, queue, store, produce, consume, group, checkpoint, pipeline, user, acl, cluster"

static const char usage_text[] =
    "usage: runnel [--data DIR | --server HOST:PORT [--tls-ca FILE] [--tls-cert FILE\n"
    "              --tls-key FILE] [--token TOKEN]] COMMAND [ARGS]\n"
    "\n"
    "Works on an embedded data directory (--data DIR, default $RUNNEL_DATA), locked by one\n"
    "process at a time, or through a runneld broker (--server HOST:PORT, default\n"
    "$RUNNEL_SERVER), which many processes can share. Every command works both ways.\n"
    "A broker serving TLS needs --tls-ca FILE (the CA that signed its certificate;\n"
    "default $RUNNEL_TLS_CA), and with client certificates --tls-cert FILE --tls-key FILE\n"
    "(default $RUNNEL_TLS_CERT, $RUNNEL_TLS_KEY). A broker with users needs --token TOKEN\n"
    "(default $RUNNEL_TOKEN), as printed by `runnel --data DIR user add NAME`.\n"
    "\n"
    "commands:\n"
    "  topic create NAME [--queues N]   create a topic with N logical queues (1..10000)\n"
    "  topic alter NAME --queues M      add queues, up to M\n"
    "  topic delete NAME                delete a topic (records stay until retention)\n"
    "  topic list                       list topics\n"
    "  topic describe NAME              each queue's offsets and mapping items\n"
    "  queue remap TOPIC Q [--store DIR] move queue Q's appends to a new physical queue\n"
    "  queue reassign TOPIC Q --replicas ID,...   move a replicated queue's replicas\n"
    "  store list | check | repair      stores: sizes; offline CRC check; --accept-loss\n"
    "  produce TOPIC [options]          one record per stdin line\n"
    "  consume TOPIC [options]          print records of one or every queue\n"
    "  group list | offsets | commit | reset    consumer group offsets\n"
    "  checkpoint create | list | drop  named snapshots of a group's offsets\n"
    "  pipeline create | list | status | pause | resume | drop | run   ETL pipelines (--data)\n"
    "  user add NAME | list | remove NAME   the broker's users and tokens (--data only)\n"
    "  acl add | remove | list          who may do what to which topic, group, pipeline\n"
    "  cluster status [--format json]   a cluster's nodes and controller (--server only)\n"
    "  cluster add ID=HOST:PORT | remove ID   a cluster's members (--server only)\n"
    "\n"
    "Run `runnel COMMAND --help` for a command's options.\n";

int rn_cli_fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    code = rn_fail_line("runnel", code, fmt, ap);
    va_end(ap);
    return code;
}

int rn_cli_bad_option(const char *cmd, char **argv, int c)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    char where[64] = "", see[64] = "runnel --help";
    if (cmd) {
        snprintf(where, sizeof where, "%s: ", cmd);
        snprintf(see, sizeof see, "runnel %s --help", cmd);
    }
    if (c == ':')
        return rn_cli_fail(RN_CLI_USAGE, "%soption '%s' needs a value (see %s)", where, arg, see);
    if (arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9' && strspn(arg + 1, "0123456789") ==
        strlen(arg + 1))             /* "-1" where a number goes is not an option */
        return rn_cli_fail(RN_CLI_USAGE, "%s'%s' is negative: offsets, queues and counts are 0 "
                           "or more (see %s)", where, arg, see);
    if (optopt && optopt < 0x7f && optopt > 0x20)
        return rn_cli_fail(RN_CLI_USAGE, "%sunknown option '-%c' (see %s)", where, optopt, see);
    return rn_cli_fail(RN_CLI_USAGE, "%sunknown option '%s' (see %s)", where, arg, see);
}

int rn_cli_parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out, char *errmsg)
{
    uint64_t v = 0;
    int ok = s[0] != '\0';
    for (const char *p = s; ok && *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) ok = 0;
        else v = v * 10 + (uint64_t)(*p - '0');
    }
    if (!ok || v < min || v > max)
        return rn_errf(errmsg, RN_EINVAL, "%s: '%.40s' is not an integer in %llu..%llu", flag, s,
                       (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

int rn_cli_parse_i64(const char *flag, const char *s, int64_t min, int64_t max,
                     int64_t *out, char *errmsg)
{
    int neg = s[0] == '-';
    uint64_t mag = 0;
    int ok = s[neg] != '\0';
    for (const char *p = s + neg; ok && *p; p++) {
        if (*p < '0' || *p > '9' || mag > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) ok = 0;
        else mag = mag * 10 + (uint64_t)(*p - '0');
    }
    int64_t v = 0;
    if (ok && !neg && mag <= (uint64_t)INT64_MAX) v = (int64_t)mag;
    else if (ok && neg && mag <= (uint64_t)INT64_MAX + 1) v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else ok = 0;
    if (!ok || v < min || v > max)
        return rn_errf(errmsg, RN_EINVAL, "%s: '%.40s' is not an integer in %lld..%lld", flag, s,
                       (long long)min, (long long)max);
    *out = v;
    return 0;
}

/* A store's recovery report: warnings (something cut, damaged or lost) on
 * stderr, so a damaged store never opens silently; a clean open says
 * nothing unless asked (store repair prints every report). */
void rn_cli_recovery_report(void *arg, int warn, const char *line)
{
    const rn_cli_t *cli = arg;
    fflush(stdout);
    if (cli->report_all) printf("%s\n", line);
    else if (warn) fprintf(stderr, "runnel: warning: %s\n", line);
}

int rn_cli_tls_opt(rn_cli_t *cli, int c, const char *arg)
{
    switch (c) {
    case RN_CLI_OPT_TLS_CA: cli->tls_ca = arg; return 1;
    case RN_CLI_OPT_TLS_CERT: cli->tls_cert = arg; return 1;
    case RN_CLI_OPT_TLS_KEY: cli->tls_key = arg; return 1;
    case RN_CLI_OPT_TOKEN: cli->token = arg; return 1;
    default: return 0;
    }
}

/* Invariant 6: the flag, else the variable (NULL when unset or empty). */
static const char *tls_file(const char *flag, const char *var)
{
    if (flag) return flag;
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

int rn_cli_remote(const rn_cli_t *cli)
{
    if (cli->server) return 1;
    if (cli->data) return 0;
    return cli->server_env != NULL;
}

int rn_cli_open_client(rn_cli_t *cli, const rn_log_opts_t *lo, int create, rn_client_t **out)
{
    char err[RN_ERRMSG_SIZE] = "";
    *out = NULL;
    if (cli->data && cli->server)
        return rn_cli_fail(RN_CLI_USAGE, "give one of --data DIR and --server HOST:PORT");
    if (!cli->data && !cli->server && cli->data_env && cli->server_env)
        return rn_cli_fail(RN_CLI_USAGE, "RUNNEL_DATA and RUNNEL_SERVER are both set; give "
                           "--data DIR or --server HOST:PORT");
    rn_client_opts_t o;
    rn_client_opts_default(&o);
    if (rn_cli_remote(cli)) {
        const char *target = cli->server ? cli->server : cli->server_env;
        o.tls_ca = tls_file(cli->tls_ca, "RUNNEL_TLS_CA");
        o.tls_cert = tls_file(cli->tls_cert, "RUNNEL_TLS_CERT");
        o.tls_key = tls_file(cli->tls_key, "RUNNEL_TLS_KEY");
        o.token = tls_file(cli->token, "RUNNEL_TOKEN");
        rn_tls_files_t tf = {o.tls_ca, o.tls_cert, o.tls_key};
        if (o.token && rn_tls_token_in_clear(target, &tf))
            fprintf(stderr, "runnel: warning: the token goes in clear to %s (plaintext, not "
                    "loopback): give --tls-ca to use TLS\n", target);
        o.bootstrap = target;         /* a cluster: producers and consumers follow leaders */
        if (strchr(target, ',') || cli->route_topic) {           /* a list, or routing */
            int code = rn_cli_route(cli, target, cli->routed, sizeof cli->routed);
            if (code != 0) return code;
            target = cli->routed;
        }
        if (rn_client_open_server(target, &o, out, err) != 0)
            return rn_cli_fail(RN_CLI_USAGE, "%s%s", strncmp(err, "--tls-", 6) ? "--server: " : "",
                               err);
        return 0;
    }
    if (cli->tls_ca || cli->tls_cert || cli->tls_key || cli->token)
        return rn_cli_fail(RN_CLI_USAGE, "--tls-ca, --tls-cert, --tls-key and --token are for a "
                           "server (--server HOST:PORT), not a data directory");
    const char *dir = cli->data ? cli->data : cli->data_env;
    if (!dir)
        return rn_cli_fail(RN_CLI_USAGE, "no data directory: give --data DIR or set RUNNEL_DATA "
                           "(or --server HOST:PORT, RUNNEL_SERVER)");
    if (lo) o.log = *lo;
    o.holder = cli->holder;
    o.report = rn_cli_recovery_report;
    o.report_arg = cli;
    o.create = create;
    int rc = rn_client_open_data(dir, &o, out, err);
    if (rc == -ENOENT)
        return rn_cli_fail(RN_CLI_FAIL, "%s; `runnel --data DIR topic create NAME` makes one", err);
    if (rc != 0) return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    return 0;
}

int rn_cli_close_client(rn_client_t *c, int code)
{
    int rc = rn_client_close(c);
    if (rc != 0 && code == RN_CLI_OK)
        return rn_cli_fail(RN_CLI_FAIL, "closing the data directory: %s", rn_strerror(rc));
    return code;
}

int rn_cli_parse_queue(const char *what, const char *s, uint32_t *out, char *errmsg)
{
    uint64_t v;
    int rc = rn_cli_parse_u64(what, s, 0, RN_META_MAX_QUEUES - 1, &v, errmsg);
    if (rc == 0) *out = (uint32_t)v;
    return rc;
}

void rn_cli_format_time(int64_t ms, char *out, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm) || !strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, size, "%lld ms", (long long)ms);
}

/* "runnel produce logs --queue 1": the LOCK holder text, printable, bounded. */
static void set_holder(rn_cli_t *cli, int argc, char **argv)
{
    size_t n = (size_t)snprintf(cli->holder, sizeof cli->holder, "runnel");
    for (int i = 0; i < argc && n < sizeof cli->holder - 1; i++) {
        int w = snprintf(cli->holder + n, sizeof cli->holder - n, " %s", argv[i]);
        if (w < 0) break;
        n += (size_t)w;
        if (n >= sizeof cli->holder) n = sizeof cli->holder - 1;
    }
    for (char *p = cli->holder; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
}

int main(int argc, char **argv)
{
    rn_sys_tune_malloc();
    enum { OPT_DATA = 0x100, OPT_SERVER };
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    rn_cli_t cli;
    memset(&cli, 0, sizeof cli);
    const char *env = getenv("RUNNEL_DATA");
    if (env && *env) cli.data_env = env;
    env = getenv("RUNNEL_SERVER");
    if (env && *env) cli.server_env = env;

    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: cli.data = optarg; break;
        case OPT_SERVER: cli.server = optarg; break;
        case 'h': fputs(usage_text, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(&cli, c, optarg)) break;
            return rn_cli_bad_option(NULL, argv, c);
        }
    }
    if (optind >= argc)
        return rn_cli_fail(RN_CLI_USAGE, "no command given (see runnel --help)");
    if (cli.server && !*cli.server)
        return rn_cli_fail(RN_CLI_USAGE, "--server: the address is empty; give HOST:PORT");
    if (cli.server) {                    /* HOST:PORT, or a comma-separated list of them */
        char host[256], one[300], err[RN_ERRMSG_SIZE];
        int port;
        for (const char *p = cli.server;;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            if (len == 0 || len >= sizeof one)
                return rn_cli_fail(RN_CLI_USAGE, "--server: an empty or overlong address in "
                                   "the list; give HOST:PORT[,HOST:PORT...]");
            memcpy(one, p, len);
            one[len] = '\0';
            if (rn_addr_split(one, host, sizeof host, &port, 0, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "--server: %s", err);
            if (!e) break;
            p = e + 1;
        }
    }
    if (cli.data && !*cli.data)
        return rn_cli_fail(RN_CLI_USAGE, "--data: the directory name is empty");

    int cargc = argc - optind;
    char **cargv = argv + optind;
    const char *cmd = cargv[0];
    set_holder(&cli, cargc, cargv);
    optind = 0;   /* GNU getopt: start afresh for the command's own options */
    if (!strcmp(cmd, "topic")) return rn_cli_topic(&cli, cargc, cargv);
    if (!strcmp(cmd, "produce")) return rn_cli_produce(&cli, cargc, cargv);
    if (!strcmp(cmd, "consume")) return rn_cli_consume(&cli, cargc, cargv);
    if (!strcmp(cmd, "queue")) return rn_cli_queue(&cli, cargc, cargv);
    if (!strcmp(cmd, "store")) return rn_cli_store(&cli, cargc, cargv);
    if (!strcmp(cmd, "group")) return rn_cli_group(&cli, cargc, cargv);
    if (!strcmp(cmd, "checkpoint")) return rn_cli_checkpoint(&cli, cargc, cargv);
    if (!strcmp(cmd, "help")) { fputs(usage_text, stdout); return RN_CLI_OK; }
    if (!strcmp(cmd, "pipeline")) return rn_cli_pipeline(&cli, cargc, cargv);
    if (!strcmp(cmd, "user")) return rn_cli_user(&cli, cargc, cargv);
    if (!strcmp(cmd, "acl")) return rn_cli_acl(&cli, cargc, cargv);
    if (!strcmp(cmd, "cluster")) return rn_cli_cluster(&cli, cargc, cargv);
    return rn_cli_fail(RN_CLI_USAGE, "unknown command '%.40s'; commands: %s (see runnel --help)",
                       cmd, COMMANDS);
}

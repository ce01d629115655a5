/*
 * runnel_cli.h — what the `runnel` command files share: the global options,
 * the error-reporting rule, strict number parsing, and opening the client
 * (client/runnel.h) on a data directory or a server: every command has one
 * code path, through the client API, for both.
 *
 * Error rule: a command that fails prints exactly one line on stderr,
 * "runnel: <what went wrong>", and exits RN_CLI_USAGE (2) for a bad command
 * line or RN_CLI_FAIL (1) for anything else. rn_cli_fail prints that line
 * (control characters replaced, so it stays one line) and returns the code.
 */
#ifndef RN_CLI_H
#define RN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "client/runnel.h"
/* The core the commands use beside the client API (which stands alone):
 * name checks and limits, target and fsync parsing, `pipeline run` and the
 * offline `queue check`. */
#include "batch/batch.h"
#include "etl/etl.h"
#include "log/log.h"
#include "logical-queues/datadir.h"
#include "logical-queues/group.h"
#include "logical-queues/meta.h"
#include "common/buf.h"
#include "common/json.h"

enum { RN_CLI_OK = 0, RN_CLI_FAIL = 1, RN_CLI_USAGE = 2 };

typedef struct rn_cli {
    const char *data;          /* --data (global or the command's); NULL when not given */
    const char *server;        /* --server HOST:PORT; NULL when not given */
    const char *data_env;      /* $RUNNEL_DATA, $RUNNEL_SERVER; NULL when unset or empty */
    const char *server_env;
    /* TLS to the server: --tls-ca, --tls-cert, --tls-key (global or the
     * command's), else $RUNNEL_TLS_CA, $RUNNEL_TLS_CERT, $RUNNEL_TLS_KEY */
    const char *tls_ca, *tls_cert, *tls_key;
    const char *token;         /* --token, else $RUNNEL_TOKEN (client/users.h) */
    char        holder[160];   /* LOCK holder text: "runnel produce logs" */
    int         report_all;    /* print every store's recovery report on stdout (store
                                  repair); else only warnings, on stderr */
    /* Cluster routing (rn_cli_route): the one queue a command works on
     * (produce --queue, consume --queue), so rn_cli_open_client opens its
     * leader; route_topic NULL: none. */
    const char *route_topic;
    int64_t     route_queue;
    char        routed[256];   /* the address routing chose */
} rn_cli_t;

/* --server A[,B,...]: the node to open. Each address is asked for its
 * ClusterStatus in turn (a transport failure moves on to the next); the
 * first that answers is used, or, in a cluster with cli->route_topic set,
 * the client address of that queue's leader. A broker that answers with an
 * error (a single node without the RPC, ACLs) is used as it is. 0 with
 * out set; else the exit code (the error printed). */
int rn_cli_route(rn_cli_t *cli, const char *list, char *out, size_t n);

/* The TLS and token options every command takes (in its struct option
 * table), and their handler: 1 when c was one of them (stored in cli),
 * else 0. */
enum { RN_CLI_OPT_TLS_CA = 0x1f0, RN_CLI_OPT_TLS_CERT, RN_CLI_OPT_TLS_KEY, RN_CLI_OPT_TOKEN };
#define RN_CLI_TLS_OPTS                                          \
    {"tls-ca", required_argument, NULL, RN_CLI_OPT_TLS_CA},      \
    {"tls-cert", required_argument, NULL, RN_CLI_OPT_TLS_CERT},  \
    {"tls-key", required_argument, NULL, RN_CLI_OPT_TLS_KEY},    \
    {"token", required_argument, NULL, RN_CLI_OPT_TOKEN}
int rn_cli_tls_opt(rn_cli_t *cli, int c, const char *arg);

/* Commands: argv[0] is the command name; each returns an exit code. */
int rn_cli_topic(rn_cli_t *cli, int argc, char **argv);
int rn_cli_produce(rn_cli_t *cli, int argc, char **argv);
int rn_cli_consume(rn_cli_t *cli, int argc, char **argv);
int rn_cli_queue(rn_cli_t *cli, int argc, char **argv);       /* queue remap */
int rn_cli_store(rn_cli_t *cli, int argc, char **argv);       /* store list|check|repair */
int rn_cli_group(rn_cli_t *cli, int argc, char **argv);       /* group ... */
int rn_cli_checkpoint(rn_cli_t *cli, int argc, char **argv);  /* checkpoint ... */
int rn_cli_pipeline(rn_cli_t *cli, int argc, char **argv);    /* pipeline ... (etl/) */
int rn_cli_user(rn_cli_t *cli, int argc, char **argv);        /* user add|list|remove */
int rn_cli_cluster(rn_cli_t *cli, int argc, char **argv);     /* cluster status */
/* `queue reassign TOPIC Q --replicas ID,... [--wait]` (runnel_cluster.c). */
int rn_cli_queue_reassign(rn_cli_t *cli, const char *topic, uint32_t q, const char *list,
                          int wait);
int rn_cli_acl(rn_cli_t *cli, int argc, char **argv);         /* acl add|remove|list */

int rn_cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Handle an option getopt_long rejected (returned '?' or ':'): prints the one
 * line naming it and returns RN_CLI_USAGE. cmd is NULL for global options. */
int rn_cli_bad_option(const char *cmd, char **argv, int optopt_val);

/* Parse a whole decimal string in [min, max]; nothing else (no sign, no
 * space, no suffix). On failure errmsg reads
 * "--flag: 'x' is not an integer in min..max". */
int rn_cli_parse_u64(const char *flag, const char *s, uint64_t min, uint64_t max,
                     uint64_t *out, char *errmsg);
int rn_cli_parse_i64(const char *flag, const char *s, int64_t min, int64_t max,
                     int64_t *out, char *errmsg);

/* 1 when the run goes to a server: --server, else (without --data)
 * $RUNNEL_SERVER. */
int rn_cli_remote(const rn_cli_t *cli);

/* Open the client: on the data directory (--data, else $RUNNEL_DATA) with
 * these store options (NULL: defaults; create = 1 makes a new directory), or
 * on the server (--server, else $RUNNEL_SERVER). Giving both --data and
 * --server, or neither anywhere, is a usage error. Prints the error and
 * returns its exit code on failure, 0 on success. */
int rn_cli_open_client(rn_cli_t *cli, const rn_log_opts_t *lo, int create, rn_client_t **out);
/* A store's recovery report for rn_datadir_opts_t.report (arg: the rn_cli_t):
 * warnings on stderr ("runnel: warning: ..."), every line on stdout when
 * cli->report_all. */
void rn_cli_recovery_report(void *arg, int warn, const char *line);
/* Close, reporting a flush error as one line; returns an exit code. */
int rn_cli_close_client(rn_client_t *c, int code);

/* Parse a queue number argument (0..9999) named `what`. */
int rn_cli_parse_queue(const char *what, const char *s, uint32_t *out, char *errmsg);

/* "2026-11-21T19:44:30Z" */
void rn_cli_format_time(int64_t ms, char *out, size_t size);

#endif

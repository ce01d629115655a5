/*
 * runneld.c — the runnel broker: flags, the data directory, the gRPC server
 * (server/server.h) and a libuv loop for signals and timers.
 *
 *   runneld --data DIR [--listen HOST:PORT] [--fsync always|group|interval:MS|never]
 *           [--log-level error|warn|info|debug] [--max-batch-bytes N] [--threads N]
 *           [--port-file FILE] [--pipelines FILE] [--udf-dir DIR]
 *           [--max-produces N] [--max-queries N]
 *           [--query-max-steps N] [--query-max-rows N] [--producer-expiry-ms MS]
 *           [--max-timestamp-ahead-ms MS] [--kafka-listen HOST:PORT] [...]
 *           [--metrics-listen HOST:PORT] [--sink-dir DIR] [--store-root DIR] [--allow-root]
 *           [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--insecure]
 *           [--users FILE] [--require-auth] [--auth-failures N] [--super-user NAME]...
 *           [--node-id N --cluster ID=HOST:PORT,... [--join]
 *            [--cluster-snapshot-entries N]]
 *
 * Invariants:
 *  1. The data directory is opened (and locked) before the port is bound, and
 *     closed (flush, fsync, clean-shutdown marker) only after every call has
 *     finished; the exit status is 0 only when that close succeeded.
 *  2. The libuv loop owns every timer and signal: one timer for the earliest
 *     parked fetch deadline (re-armed through an async handle when the server
 *     parks an earlier one), one for the forced-cancel grace period after
 *     SIGINT/SIGTERM. A second signal cancels running calls at once.
 *  3. --port-file FILE is written (atomically) only after the server
 *     started: its presence means the broker accepts calls on that port.
 *     Line 1 is the gRPC port, line 2 the Kafka port (0 without
 *     --kafka-listen; the line is there only when a later one is), line 3
 *     the /metrics port (with --metrics-listen).
 *  4. --pipelines FILE: the file's definitions (etl/script.h) are applied
 *     before anything listens; a missing file or a failing statement stops
 *     runneld with FILE:LINE:COLUMN (exit 1). Every stored pipeline that
 *     is not paused runs in its own thread (server/pipelines.h), started
 *     before the port file appears; they are stopped, each with a final checkpoint,
 *     after the last call finished and before the data directory closes.
 *  5. Confinement (README, Security): --sink-dir and --store-root are opened
 *     (common/root.h) before the data directory and closed after it; a
 *     --sink-dir that holds, is or lies inside the data directory stops
 *     runneld (exit 2) before anything listens; a
 *     request naming a file sink or a store path outside them, or when they
 *     are not given, is refused (server/pipelines.c, server/handlers.c).
 *  6. As root (uid 0) runneld exits 2 before opening anything unless
 *     --allow-root is given: a broker's bugs should not be root's.
 *  7. TLS (README, Security): --tls-cert, --tls-key and --tls-client-ca are
 *     read and checked (client/tls.h) before anything is opened; a missing,
 *     unreadable or bad file, or a key that does not match the certificate,
 *     exits 2 with one line naming the file. With them the gRPC port serves
 *     TLS only (server/server.c invariant 12), and so does the Kafka port
 *     (kafka/tls.h: Kafka's SSL and SASL_SSL; a client certificate's CN is
 *     its principal under --tls-client-ca) and the metrics port (HTTPS).
 *  8. A listener on an address that is not loopback (127.0.0.0/8, ::1,
 *     localhost) needs TLS and authentication (a user in the credentials
 *     file at start, --require-auth, or --tls-client-ca): without either,
 *     runneld exits 2 before anything is opened, naming what is missing,
 *     unless --insecure is given; with it, runneld starts and logs a warning
 *     naming each plaintext listener.
 *  9. Authentication (server/auth.h): the credentials file is --users FILE,
 *     else DATA/users (written by `runnel --data DATA user add`); once it
 *     holds a user, or with --require-auth, every gRPC call needs a valid
 *     bearer token or (mutual TLS) a client certificate. The file is re-read
 *     when it changes; runneld never writes it. The Kafka port then admits
 *     only connections authenticated by SASL (SCRAM-SHA-256, or PLAIN over
 *     TLS; kafka/sasl.h) or a client certificate, and GET /metrics needs
 *     "Authorization: Bearer TOKEN".
 * 10. Authorization (logical-queues/acl.h): the ACLs in meta.db are loaded
 *     once the data directory is open, before any listener or pipeline
 *     starts, and then changed only by the ACL RPCs; --super-user NAME
 *     (repeatable) bypasses them. A meta.db whose ACLs cannot be read stops
 *     the start (it never runs open by accident).
 * 11. Cluster (cluster/README.md): --node-id and --cluster go together and
 *     are checked (cluster/controller.h) before anything is opened; a bad
 *     list exits 2 with one line. The controller starts after the gRPC
 *     server (it registers the bound client address) and before the port
 *     file is written, and stops after the server was destroyed (its RPCs
 *     read it until then). Its raft transport is plaintext and
 *     unauthenticated, so a raft address beyond loopback needs --insecure,
 *     and --cluster refuses --tls-cert and --require-auth (heartbeats go
 *     between nodes in plaintext without a token, for now).
 */
#include "batch/batch.h"
#include "cluster/controller.h"
#include "cluster/handlers.h"
#include "cluster/replica.h"
#include "client/tls.h"
#include "client/users.h"
#include "common/addr.h"
#include "common/error.h"
#include "common/root.h"
#include "common/sys.h"
#include "etl/script.h"
#include "kafka/front.h"
#include "log/log.h"
#include "server/handlers.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/authz.h"
#include "server/pipelines.h"
#include "server/server.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#define GRACE_MS 10000

/* The ACLs (invariant 10): file scope, so an early exit leaves it reachable. */
static rn_acl_t *g_acl;

static const char usage[] =
    "usage: runneld --data DIR [--listen HOST:PORT] [--fsync always|group|interval:MS|never]\n"
    "               [--log-level error|warn|info|debug] [--max-batch-bytes N] [--threads N]\n"
    "               [--port-file FILE] [--pipelines FILE] [--udf-dir DIR] [--max-produces N]\n"
    "               [--max-queries N]\n"
    "               [--query-max-steps N] [--query-max-rows N] [--producer-expiry-ms MS]\n"
    "               [--max-timestamp-ahead-ms MS] [--kafka-listen HOST:PORT]\n"
    "               [--kafka-advertise HOST:PORT] [--kafka-auto-create-queues N]\n"
    "               [--kafka-max-frame-bytes N] [--kafka-frame-timeout-ms MS]\n"
    "               [--metrics-listen HOST:PORT] [--sink-dir DIR] [--store-root DIR]\n"
    "               [--allow-root] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n"
    "               [--insecure] [--node-id N --cluster ID=HOST:PORT,ID=HOST:PORT,...\n"
    "               [--join] [--cluster-snapshot-entries N] [--min-insync-replicas N]\n"
    "               [--replica-lag-ms MS]]\n"
    "\n"
    "Serves the runnel.v1.Runnel gRPC service (proto/runnel.proto) over DIR, which it\n"
    "creates when absent and locks while it runs (use `runnel --server HOST:PORT` then).\n"
    "  --listen           default 127.0.0.1:7070; port 0 picks a free port\n"
    "  --fsync            default group: produce acks after one fdatasync covers the batch\n"
    "  --max-batch-bytes  largest batch accepted (default and ceiling 16777216)\n"
    "  --threads          completion-queue threads (default 2)\n"
    "  --port-file FILE   write the bound port to FILE once calls are accepted (and the\n"
    "                     Kafka port on a second line with --kafka-listen, 0 without it\n"
    "                     when a third follows: the metrics port with --metrics-listen)\n"
    "  --pipelines FILE   apply its CREATE STREAM / CREATE PIPELINE / DROP ... statements\n"
    "                     (again at every start: unchanged ones do nothing), then run\n"
    "                     every pipeline not paused\n"
    "  --udf-dir DIR      native functions for queries and pipelines: every *.so in DIR\n"
    "                     is an sqlite extension loaded on each query's connection\n"
    "  --max-produces N   produce requests in the broker at once (default 1024); more are\n"
    "                     refused with RESOURCE_EXHAUSTED, storing nothing\n"
    "  --max-queries N    queries running at once, one thread each (default 64)\n"
    "  --query-max-steps N  virtual-machine instructions one step of a query may run (one\n"
    "                     batch, or a whole statement; default 2000000000, 0 = no limit)\n"
    "  --query-max-rows N result rows one query may return (default 0 = no limit)\n"
    "  --producer-expiry-ms MS  forget a producer's sequences on a queue after MS without a\n"
    "                     batch there (default 86400000, one day; 0 = never)\n"
    "  --max-timestamp-ahead-ms MS  refuse a batch with a record timestamp more than MS\n"
    "                     ahead of the broker clock (default 3600000; 0 = no check)\n"
    "  --kafka-listen HOST:PORT  also serve the Kafka protocol there (off unless given;\n"
    "                     kafka/README.md lists the APIs and versions)\n"
    "  --kafka-advertise HOST:PORT  the address Kafka clients are told to connect to\n"
    "                     (default: the --kafka-listen address)\n"
    "  --kafka-auto-create-queues N  queues of a topic a Kafka client names before it\n"
    "                     exists (default 1, as Kafka's num.partitions; 0 = no auto-creation)\n"
    "  --kafka-max-frame-bytes N  largest Kafka request accepted (default 17825792);\n"
    "                     a larger one closes its connection\n"
    "  --kafka-frame-timeout-ms MS  a Kafka frame begun must be whole within MS\n"
    "                     (default 30000); a client trickling bytes is closed\n"
    "  --metrics-listen HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                     (off unless given; server/README.md lists them)\n"
    "  --sink-dir DIR     pipelines created over the network may write 'file:PATH' sinks\n"
    "                     inside DIR only (PATH relative to DIR); every file sink the\n"
    "                     broker runs opens beneath DIR. Without it, file sinks are refused\n"
    "                     over the network\n"
    "  --store-root DIR   RemapQueue (runnel queue remap --store) may create or use stores\n"
    "                     inside DIR only; without it, refused over the network\n"
    "  --allow-root       run as root (uid 0) anyway; refused otherwise\n"
    "  --tls-cert FILE --tls-key FILE  serve gRPC, Kafka (SSL / SASL_SSL) and metrics\n"
    "                     (HTTPS) over TLS only with this PEM certificate chain and\n"
    "                     unencrypted private key\n"
    "  --tls-client-ca FILE  with TLS: require a client certificate signed by a CA in FILE\n"
    "                     (gRPC and Kafka; its subject CN is the principal)\n"
    "  --insecure         allow a listener on an address that is not loopback without TLS\n"
    "                     or without authentication (a user, --require-auth or\n"
    "                     --tls-client-ca); refused otherwise: anyone on the network\n"
    "                     could use the broker\n"
    "  --users FILE       the credentials file (default DATA/users, written by\n"
    "                     `runnel --data DATA user add NAME`); once it holds a user, every\n"
    "                     gRPC call needs a token (or a client certificate under mTLS),\n"
    "                     Kafka clients SASL (user NAME, password SECRET of the token\n"
    "                     NAME.SECRET) and /metrics 'Authorization: Bearer TOKEN'\n"
    "  --require-auth     refuse unauthenticated calls (gRPC, Kafka, metrics) even with\n"
    "                     no user\n"
    "  --auth-failures N  after N wrong tokens or PLAIN passwords from one address\n"
    "                     within 10 s, refuse that address's tokens not verified\n"
    "                     before for 10 s, without a key derivation (default 10; 0: no\n"
    "                     limit)\n"
    "  --super-user NAME  (repeatable) NAME bypasses the ACLs (`runnel acl`); 'anonymous'\n"
    "                     names calls without a principal\n"
    "  --node-id N --cluster 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT  run as node N of a\n"
    "                     cluster whose controller replicates over raft at these addresses\n"
    "                     (used to bootstrap DATA/raft on the first start only; see\n"
    "                     cluster/README.md: topics made there are replicated)\n"
    "  --join             a node new to a running cluster: do not bootstrap; wait until a\n"
    "                     member adds it (`runnel cluster add N=HOST:PORT`); --cluster\n"
    "                     needs this node's own raft address only\n"
    "  --cluster-snapshot-entries N  snapshot the controller state every N raft entries,\n"
    "                     keeping N entries behind it (default 64, 2..1048576)\n"
    "  --min-insync-replicas N  a produce to a replicated queue needs min(N, replicas)\n"
    "                     in-sync replicas (default 2, 1..16)\n"
    "  --replica-lag-ms MS  a follower not caught up for MS leaves the ISR (default 1500)\n"
    "SIGINT/SIGTERM: stop accepting, finish in-flight calls, fsync, exit 0.\n";

/* Invariant 8: does the credentials file at path hold a user now? (A file
 * that cannot be read counts as none; runneld reports it when it loads it.) */
static int users_present(const char *path)
{
    char err[RN_ERRMSG_SIZE];
    rn_users_t *u = NULL;
    if (!path || rn_users_load(path, &u, err) != 0) return 0;
    int n = rn_users_count(u) > 0;
    rn_users_free(u);
    return n;
}

typedef struct daemon {
    uv_loop_t     loop;
    uv_signal_t   sigint, sigterm;
    uv_async_t    wake, stopped;
    uv_timer_t    park, grace;
    rn_server_t  *srv;
    rn_repl_t    *repl;               /* a cluster node's data path; NULL otherwise */
    int           signals;
} daemon_t;

static void on_park(uv_timer_t *t);

/* Set the park timer for the earliest parked fetch deadline (invariant 2). */
static void rearm(daemon_t *d)
{
    int64_t dl = rn_server_next_deadline(d->srv);
    if (dl < 0) {
        uv_timer_stop(&d->park);
        return;
    }
    int64_t wait = dl - rn_server_now_ms();
    if (wait < 0) wait = 0;
    uv_timer_start(&d->park, on_park, (uint64_t)wait, 0);
}

static void on_park(uv_timer_t *t)
{
    daemon_t *d = t->data;
    rn_server_expire(d->srv, rn_server_now_ms());
    rearm(d);
}

static void on_wake(uv_async_t *a) { rearm(a->data); }

static void on_grace(uv_timer_t *t)
{
    daemon_t *d = t->data;
    rn_slog(RN_SLOG_WARN, "calls still running %d s after the shutdown began; cancelling them",
            GRACE_MS / 1000);
    rn_server_cancel_all(d->srv);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_t *d = h->data;
    if (d->signals++ == 0) {
        rn_slog(RN_SLOG_INFO, "%s: shutting down: no new calls; finishing the running ones",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
        rn_server_shutdown(d->srv);
        rn_repl_shutdown(d->repl);       /* acks waiting for replicas end now */
        uv_timer_start(&d->grace, on_grace, GRACE_MS, 0);
    } else {
        rn_slog(RN_SLOG_WARN, "second signal: cancelling running calls");
        rn_server_cancel_all(d->srv);
    }
}

static void on_stopped(uv_async_t *a)
{
    daemon_t *d = a->data;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->wake, NULL);
    uv_close((uv_handle_t *)&d->stopped, NULL);
    uv_close((uv_handle_t *)&d->park, NULL);
    uv_close((uv_handle_t *)&d->grace, NULL);
}

/* A line to the log at info, or warn: what each store's recovery did (warn
 * when something was cut, damaged or lost), what each statement of the
 * pipelines file did (warn for a changed definition not applied). */
static void log_line(void *arg, int warn, const char *line)
{
    (void)arg;
    rn_slog(warn ? RN_SLOG_WARN : RN_SLOG_INFO, "%s", line);
}

static void srv_wakeup(void *arg) { uv_async_send(&((daemon_t *)arg)->wake); }
static void srv_stopped(void *arg) { uv_async_send(&((daemon_t *)arg)->stopped); }

/* Invariant 3. */
static int write_port_file(const char *path, int port, int kport, int mport, char *errmsg)
{
    char a[PATH_MAX], b[PATH_MAX], text[48];
    if (snprintf(a, sizeof a, "%s", path) >= (int)sizeof a)
        return rn_errf(errmsg, -ENAMETOOLONG, "--port-file: path too long");
    snprintf(b, sizeof b, "%s", path);
    int n = mport ? snprintf(text, sizeof text, "%d\n%d\n%d\n", port, kport, mport)
            : kport ? snprintf(text, sizeof text, "%d\n%d\n", port, kport)
                    : snprintf(text, sizeof text, "%d\n", port);
    int rc = rn_write_file_atomic(dirname(a), basename(b), text, (size_t)n);
    if (rc != 0) return rn_errf(errmsg, rc, "cannot write %s: %s", path, rn_strerror(rc));
    return 0;
}

static int parse_u32(const char *flag, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "runneld: %s must be a number in %u..%u, got '%.40s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "runneld: %s must be a number 0..%llu, got '%.40s'\n", flag,
                (unsigned long long)UINT64_MAX, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    rn_sys_tune_malloc();
    enum { OPT_DATA = 0x100, OPT_LISTEN, OPT_FSYNC, OPT_LEVEL, OPT_MAXB, OPT_THREADS, OPT_PORTFILE,
           OPT_PIPELINES, OPT_MAXPROD, OPT_MAXQ, OPT_QSTEPS, OPT_QROWS, OPT_PEXPIRY, OPT_TSAHEAD,
           OPT_KLISTEN, OPT_KADV, OPT_KAUTO, OPT_KFRAME, OPT_KFTIMEOUT, OPT_MLISTEN,
           OPT_SINKDIR, OPT_STOREROOT, OPT_ALLOWROOT, OPT_TLSCERT, OPT_TLSKEY, OPT_TLSCA,
           OPT_INSECURE, OPT_USERS, OPT_REQAUTH, OPT_AUTHFAIL, OPT_SUPER, OPT_NODEID, OPT_CLUSTER,
           OPT_CSNAP, OPT_JOIN, OPT_UDFDIR, OPT_MINISR, OPT_LAGMS };
    static const struct option opts[] = {
        {"data", required_argument, NULL, OPT_DATA},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"log-level", required_argument, NULL, OPT_LEVEL},
        {"max-batch-bytes", required_argument, NULL, OPT_MAXB},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"port-file", required_argument, NULL, OPT_PORTFILE},
        {"pipelines", required_argument, NULL, OPT_PIPELINES},
        {"udf-dir", required_argument, NULL, OPT_UDFDIR},
        {"max-produces", required_argument, NULL, OPT_MAXPROD},
        {"max-queries", required_argument, NULL, OPT_MAXQ},
        {"query-max-steps", required_argument, NULL, OPT_QSTEPS},
        {"query-max-rows", required_argument, NULL, OPT_QROWS},
        {"producer-expiry-ms", required_argument, NULL, OPT_PEXPIRY},
        {"max-timestamp-ahead-ms", required_argument, NULL, OPT_TSAHEAD},
        {"kafka-listen", required_argument, NULL, OPT_KLISTEN},
        {"kafka-advertise", required_argument, NULL, OPT_KADV},
        {"kafka-auto-create-queues", required_argument, NULL, OPT_KAUTO},
        {"kafka-max-frame-bytes", required_argument, NULL, OPT_KFRAME},
        {"kafka-frame-timeout-ms", required_argument, NULL, OPT_KFTIMEOUT},
        {"metrics-listen", required_argument, NULL, OPT_MLISTEN},
        {"sink-dir", required_argument, NULL, OPT_SINKDIR},
        {"store-root", required_argument, NULL, OPT_STOREROOT},
        {"allow-root", no_argument, NULL, OPT_ALLOWROOT},
        {"tls-cert", required_argument, NULL, OPT_TLSCERT},
        {"tls-key", required_argument, NULL, OPT_TLSKEY},
        {"tls-client-ca", required_argument, NULL, OPT_TLSCA},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"users", required_argument, NULL, OPT_USERS},
        {"require-auth", no_argument, NULL, OPT_REQAUTH},
        {"auth-failures", required_argument, NULL, OPT_AUTHFAIL},
        {"super-user", required_argument, NULL, OPT_SUPER},
        {"node-id", required_argument, NULL, OPT_NODEID},
        {"cluster", required_argument, NULL, OPT_CLUSTER},
        {"cluster-snapshot-entries", required_argument, NULL, OPT_CSNAP},
        {"join", no_argument, NULL, OPT_JOIN},
        {"min-insync-replicas", required_argument, NULL, OPT_MINISR},
        {"replica-lag-ms", required_argument, NULL, OPT_LAGMS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[RN_ERRMSG_SIZE] = "";
    const char *data = NULL, *listen = "127.0.0.1:7070", *port_file = NULL, *pipelines = NULL;
    const char *mlisten = NULL, *sink_dir = NULL, *store_dir = NULL;
    const char *users = NULL, *node_id = NULL, *cluster = NULL;
    uint32_t csnap = 0, min_isr = 0, lag_ms = 0;
    int join = 0;
    int allow_root = 0, insecure = 0, require_auth = 0;
    uint32_t auth_failures = RN_AUTH_FAIL_LIMIT;
    const char *supers[RN_ACL_MAX_SUPERS];
    size_t nsupers = 0;
    rn_tls_files_t tf = {NULL, NULL, NULL};
    uint32_t threads = 2, maxb = RN_BATCH_MAX_BYTES, max_produces = 1024, max_queries = 64;
    rn_hd_opts_t ho;
    rn_hd_opts_default(&ho);
    rn_kfront_opts_t ko = {NULL, NULL, 1, RN_KFRONT_DEFAULT_MAX_FRAME,
                           RN_KFRONT_DEFAULT_FRAME_TIMEOUT_MS, NULL, NULL, NULL, NULL, 0, NULL};
    rn_slog_level_t level = RN_SLOG_INFO;
    const char *udf_dir = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_DATA: data = optarg; break;
        case OPT_LISTEN: listen = optarg; break;
        case OPT_PORTFILE: port_file = optarg; break;
        case OPT_PIPELINES: pipelines = optarg; break;
        case OPT_UDFDIR: udf_dir = optarg; break;
        case OPT_FSYNC:
            if (rn_fsync_parse(optarg, &ho.log, err) != 0) {
                fprintf(stderr, "runneld: --fsync: %s\n", err);
                return 2;
            }
            break;
        case OPT_LEVEL:
            if (rn_slog_parse(optarg, &level, err) != 0) {
                fprintf(stderr, "runneld: --log-level: %s\n", err);
                return 2;
            }
            break;
        case OPT_MAXB:
            if (parse_u32("--max-batch-bytes", optarg, 64, RN_BATCH_MAX_BYTES, &maxb))
                return 2;
            break;
        case OPT_THREADS:
            if (parse_u32("--threads", optarg, 1, 16, &threads)) return 2;
            break;
        case OPT_MAXPROD:
            if (parse_u32("--max-produces", optarg, 1, 1u << 20, &max_produces)) return 2;
            break;
        case OPT_MAXQ:
            if (parse_u32("--max-queries", optarg, 1, 4096, &max_queries)) return 2;
            break;
        case OPT_QSTEPS:
            if (parse_u64("--query-max-steps", optarg, &ho.query_max_steps)) return 2;
            break;
        case OPT_QROWS:
            if (parse_u64("--query-max-rows", optarg, &ho.query_max_rows)) return 2;
            break;
        case OPT_PEXPIRY: {
            uint64_t v;
            if (parse_u64("--producer-expiry-ms", optarg, &v)) return 2;
            ho.producer_expiry_ms = v > INT64_MAX ? INT64_MAX : (int64_t)v;
            break;
        }
        case OPT_TSAHEAD: {
            uint64_t v;
            if (parse_u64("--max-timestamp-ahead-ms", optarg, &v)) return 2;
            ho.max_ts_ahead_ms = v > INT64_MAX ? INT64_MAX : (int64_t)v;
            break;
        }
        case OPT_KLISTEN: ko.listen = optarg; break;
        case OPT_KADV: ko.advertise = optarg; break;
        case OPT_MLISTEN: mlisten = optarg; break;
        case OPT_SINKDIR: sink_dir = optarg; break;
        case OPT_STOREROOT: store_dir = optarg; break;
        case OPT_ALLOWROOT: allow_root = 1; break;
        case OPT_TLSCERT: tf.cert = optarg; break;
        case OPT_TLSKEY: tf.key = optarg; break;
        case OPT_TLSCA: tf.ca = optarg; break;
        case OPT_INSECURE: insecure = 1; break;
        case OPT_USERS: users = optarg; break;
        case OPT_REQAUTH: require_auth = 1; break;
        case OPT_AUTHFAIL:
            if (parse_u32("--auth-failures", optarg, 0, 1000000, &auth_failures)) return 2;
            break;
        case OPT_SUPER:
            if (nsupers == RN_ACL_MAX_SUPERS) {
                fprintf(stderr, "runneld: --super-user: at most %d\n", RN_ACL_MAX_SUPERS);
                return 2;
            }
            supers[nsupers++] = optarg;
            break;
        case OPT_NODEID: node_id = optarg; break;
        case OPT_JOIN: join = 1; break;
        case OPT_CLUSTER: cluster = optarg; break;
        case OPT_CSNAP:
            if (parse_u32("--cluster-snapshot-entries", optarg, 2, 1u << 20, &csnap)) return 2;
            break;
        case OPT_MINISR:
            if (parse_u32("--min-insync-replicas", optarg, 1, RN_CLUSTER_MAX_NODES, &min_isr))
                return 2;
            break;
        case OPT_LAGMS:
            if (parse_u32("--replica-lag-ms", optarg, 100, 600000, &lag_ms)) return 2;
            break;
        case OPT_KAUTO:
            if (parse_u32("--kafka-auto-create-queues", optarg, 0, 1u << 16, &ko.auto_create))
                return 2;
            break;
        case OPT_KFRAME:
            if (parse_u32("--kafka-max-frame-bytes", optarg, 1024, 1u << 30, &ko.max_frame))
                return 2;
            break;
        case OPT_KFTIMEOUT: {
            uint32_t v;
            if (parse_u32("--kafka-frame-timeout-ms", optarg, 100, 3600000, &v)) return 2;
            ko.frame_timeout_ms = v;
            break;
        }
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "runneld: unexpected argument '%.60s'\n%s", argv[optind], usage);
        return 2;
    }
    if (!data) {
        fprintf(stderr, "runneld: give --data DIR\n%s", usage);
        return 2;
    }
    if (udf_dir && rn_sql_udf_dir(udf_dir, err) != 0) {      /* before any query or thread */
        fprintf(stderr, "runneld: %s\n", err);
        return 2;
    }
    if (tf.ca && !tf.cert) {
        fprintf(stderr, "runneld: --tls-client-ca needs --tls-cert and --tls-key: client "
                "certificates are checked only over TLS\n");
        return 2;
    }
    static rn_cluster_conf_t cconf;                 /* invariant 10 */
    if (!node_id != !cluster) {
        fprintf(stderr, "runneld: --node-id and --cluster go together: give both (this node's "
                "id and every node's raft address), or neither for a single-node broker\n");
        return 2;
    }
    if ((min_isr || lag_ms) && !cluster) {
        fprintf(stderr, "runneld: --min-insync-replicas and --replica-lag-ms are for a cluster "
                "node: give them with --node-id and --cluster\n");
        return 2;
    }
    if (join && !cluster) {
        fprintf(stderr, "runneld: --join is for a node joining a cluster: give it with "
                "--node-id and --cluster (this node's raft address)\n");
        return 2;
    }
    if (csnap && !cluster) {
        fprintf(stderr, "runneld: --cluster-snapshot-entries is for a cluster node: give it "
                "with --node-id and --cluster\n");
        return 2;
    }
    if (cluster && rn_cluster_conf_parse(node_id, cluster, &cconf, err) != 0) {
        fprintf(stderr, "runneld: %s\n", err);
        return 2;
    }
    if (cluster && ko.listen && cconf.self > INT32_MAX) {
        fprintf(stderr, "runneld: --node-id %llu with --kafka-listen: Kafka broker ids are "
                "32-bit signed; give a node id from 1 to %d\n", (unsigned long long)cconf.self,
                INT32_MAX);
        return 2;
    }
    if (cluster && (tf.cert || require_auth)) {
        fprintf(stderr, "runneld: --cluster with %s is not supported yet: nodes send their "
                "controller heartbeats over plaintext gRPC without a token\n",
                tf.cert ? "--tls-cert" : "--require-auth");
        return 2;
    }
    char exposed[200] = "";     /* invariant 8: plaintext listeners beyond loopback */
    char open_tls[200] = "";    /* invariant 8: TLS listeners beyond loopback, no authentication */
    char users_path[4096];                          /* invariant 9 */
    if (!users && rn_path_buf(users_path, sizeof users_path, data, RN_USERS_FILE) == 0)
        users = users_path;
    int authenticated = require_auth || tf.ca || users_present(users);
    {
        static const char *const names[] = {"--listen", "--kafka-listen", "--metrics-listen",
                                            "--kafka-advertise"};
        const char *addrs[] = {listen, ko.listen, mlisten, ko.advertise};
        for (int i = 0; i < 4; i++) {
            char host[256];
            int port;
            if (addrs[i] && rn_addr_split(addrs[i], host, sizeof host, &port, i < 3, err) != 0) {
                fprintf(stderr, "runneld: %s: %s\n", names[i], err);
                return 2;
            }
            if (addrs[i] && i < 3 && !rn_addr_is_loopback(host) && (!tf.cert || !authenticated)) {
                char *list = tf.cert ? open_tls : exposed;
                size_t n = strlen(list);
                snprintf(list + n, sizeof exposed - n, "%s%s %s", n ? ", " : "", names[i],
                         addrs[i]);
            }
        }
    }
    for (size_t i = 0; cluster && i < cconf.n; i++) {
        char host[256];
        int port;
        if (cconf.peers[i].id == cconf.self &&
            rn_addr_split(cconf.peers[i].addr, host, sizeof host, &port, 0, err) == 0 &&
            !rn_addr_is_loopback(host)) {
            size_t n = strlen(exposed);
            snprintf(exposed + n, sizeof exposed - n, "%s--cluster (raft) %s", n ? ", " : "",
                     cconf.peers[i].addr);
        }
    }
    if (exposed[0] && !insecure) {
        fprintf(stderr, "runneld: refusing to listen without TLS beyond loopback (%s): anyone "
                "who can reach it could use the broker; give --tls-cert and --tls-key (gRPC), "
                "or --insecure on a trusted network\n", exposed);
        return 2;
    }
    if (open_tls[0] && !insecure) {
        fprintf(stderr, "runneld: refusing to listen without authentication beyond loopback "
                "(%s): anyone who can reach it could use the broker; add a user (runnel --data "
                "DIR user add NAME, with DIR/users or --users FILE), or give --require-auth or "
                "--tls-client-ca, or --insecure on a trusted network\n", open_tls);
        return 2;
    }
    rn_tls_pem_t tls = {NULL, NULL, NULL};          /* invariant 7 */
    if (tf.cert || tf.key) {
        static const rn_tls_names_t tn = {"--tls-client-ca", "--tls-cert", "--tls-key"};
        if (rn_tls_load(&tf, &tn, &tls, err) != 0) {
            fprintf(stderr, "runneld: %s\n", err);
            return 2;
        }
    }
    if (geteuid() == 0 && !allow_root) {     /* invariant 6 */
        fprintf(stderr, "runneld: refusing to run as root: any client could then act with "
                "root's rights on this machine through a broker bug; run it as an unprivileged "
                "user, or give --allow-root\n");
        rn_tls_pem_free(&tls);
        return 2;
    }
    rn_slog_set_level(level);
    ho.log.max_batch_bytes = maxb;
    rn_root_t *sink_root = NULL, *store_root = NULL;      /* invariant 5 */
    if ((sink_dir && rn_root_open(sink_dir, "--sink-dir", &sink_root, err) != 0) ||
        (store_dir && rn_root_open(store_dir, "--store-root", &store_root, err) != 0)) {
        fprintf(stderr, "runneld: %s\n", err);
        rn_root_close(sink_root);
        rn_tls_pem_free(&tls);
        return 2;
    }
    ho.sink_root = sink_root;
    ho.store_root = store_root;
    if (rn_acl_create(supers, nsupers, &g_acl, err) != 0) {     /* invariant 10 */
        fprintf(stderr, "runneld: --super-user: %s\n", err);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        rn_tls_pem_free(&tls);
        return 2;
    }
    ho.acl = g_acl;
    /* The lock's holder line: what a `runnel --data DIR` refused by the lock
     * shows, so it names the address to use instead. */
    char holder[300];
    const char *lport = strrchr(listen, ':');
    if (lport && strcmp(lport, ":0") != 0)
        snprintf(holder, sizeof holder, "runneld serving it on %s: use --server %s", listen, listen);
    else
        snprintf(holder, sizeof holder, "runneld --listen %s", listen);
    ho.holder = holder;

    rn_hd_t *h = NULL;
    int rc = rn_hd_open(data, &ho, &h, err);
    if (rc != 0) {
        rn_slog(RN_SLOG_ERROR, "cannot open the data directory: %s", err);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        rn_tls_pem_free(&tls);
        return 1;
    }
    /* A file sink must not be able to name the broker's own files. */
    if (sink_root && rn_root_overlaps(sink_root, data) != 0) {
        rn_slog(RN_SLOG_ERROR, "--sink-dir %s and the data directory %s overlap: pipelines "
                "could write into the broker's own files; give a directory apart from it",
                rn_root_path(sink_root), data);
        rn_hd_close(h);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        rn_tls_pem_free(&tls);
        return 2;
    }
    if (rn_authz_reload(h, err) != 0) {
        rn_slog(RN_SLOG_ERROR, "cannot load the ACLs from meta.db: %s", err);
        rn_hd_close(h);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        rn_tls_pem_free(&tls);
        return 1;
    }
    rn_datadir_recovery_report(rn_hd_datadir(h), log_line, NULL);
    daemon_t d;
    memset(&d, 0, sizeof d);
    uv_loop_init(&d.loop);
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_async_init(&d.loop, &d.wake, on_wake);
    uv_async_init(&d.loop, &d.stopped, on_stopped);
    uv_timer_init(&d.loop, &d.park);
    uv_timer_init(&d.loop, &d.grace);
    d.sigint.data = d.sigterm.data = d.wake.data = d.stopped.data = &d;
    d.park.data = d.grace.data = &d;
    /* Signals are handled by the loop before any thread can see them. */
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);

    /* The pipeline runner exists before the first call can reach it. */
    rn_pl_t *pl = NULL;
    if (rn_pl_create(rn_hd_datadir(h), sink_root, &pl, err) != 0) {
        rn_slog(RN_SLOG_ERROR, "%s", err);
        rn_hd_close(h);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        rn_tls_pem_free(&tls);
        return 1;
    }
    rn_hd_set_pipelines(h, pl);
    rn_pl_set_acl(pl, g_acl);
    if (pipelines) {
        rn_etl_script_cb_t cb = {log_line, NULL, NULL};
        if (rn_etl_script_apply_file(rn_hd_datadir(h), pipelines, &cb, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "%s; runneld does not start without its pipelines file",
                    err);
            rn_pl_destroy(pl);
            rn_hd_close(h);
            rn_root_close(sink_root);
            rn_root_close(store_root);
            rn_tls_pem_free(&tls);
            return 1;
        }
    }
    rn_server_opts_t so = {listen, (int)threads, srv_wakeup, srv_stopped, &d, max_produces,
                           max_queries, NULL, NULL, NULL, NULL};
    int port = 0;
    so.tls_cert = tls.cert;
    so.tls_key = tls.key;
    so.tls_client_ca = tls.ca;
    rn_auth_t *auth = NULL;
    rc = users ? rn_auth_create(users, require_auth, auth_failures, &auth) : -ENAMETOOLONG;
    if (rc != 0) snprintf(err, sizeof err, "cannot set up authentication: %s", rn_strerror(rc));
    so.auth = auth;
    if (rc == 0 && cluster) {
        rn_repl_opts_t ro = {h, cconf.self, min_isr, lag_ms, 0};
        rc = rn_repl_create(&ro, &d.repl, err);
    }
    if (rc == 0) rc = rn_server_start(h, &so, &d.srv, &port, err);
    if (rc != 0) {
        rn_repl_destroy(d.repl);
        rn_tls_pem_free(&tls);
        rn_auth_destroy(auth);
        rn_slog(RN_SLOG_ERROR, "%s", err);
        rn_pl_destroy(pl);
        rn_hd_close(h);
        rn_root_close(sink_root);
        rn_root_close(store_root);
        return 1;
    }
    char shown[300];
    snprintf(shown, sizeof shown, "%s", listen);
    char *colon = strrchr(shown, ':');
    if (colon) snprintf(colon + 1, sizeof shown - (size_t)(colon + 1 - shown), "%d", port);
    rn_slog(RN_SLOG_INFO, "runneld listening on %s, data %s, fsync %s, batch limit %u bytes, "
            "%u threads", shown, data, rn_fsync_name(ho.log.fsync), maxb, threads);
    if (tf.cert)
        rn_slog(RN_SLOG_INFO, "gRPC over TLS only (%s %s)%s", "--tls-cert", tf.cert,
                tf.ca ? "; client certificates required (--tls-client-ca)"
                      : "; no client certificate asked");
    rn_slog(RN_SLOG_INFO, "credentials file %s: %s", users,
            require_auth ? "every gRPC call, Kafka connection and metrics scrape must "
                           "authenticate (--require-auth)"
                         : "gRPC calls, Kafka connections and metrics scrapes must "
                           "authenticate once it holds a user");
    if (exposed[0])                    /* invariant 8: --insecure was given */
        rn_slog(RN_SLOG_WARN, "--insecure: plaintext beyond loopback (%s): anyone who can "
                "reach it can read the traffic and use the broker", exposed);
    size_t nacl = rn_acl_count(g_acl);
    rn_slog(RN_SLOG_INFO, "ACLs: %zu entr%s%s, %zu super user%s", nacl, nacl == 1 ? "y" : "ies",
            nacl ? " (what none allows is refused)" : " (every principal may do everything)",
            nsupers, nsupers == 1 ? "" : "s");
    if (sink_root) rn_slog(RN_SLOG_INFO, "file sinks confined to %s (--sink-dir)",
                           rn_root_path(sink_root));
    if (store_root) rn_slog(RN_SLOG_INFO, "new stores confined to %s (--store-root)",
                            rn_root_path(store_root));
    int failed = 0;
    rn_kfront_t *kf = NULL;
    int kport = 0;
    if (ko.listen) {
        ko.auth = auth;
        ko.tls_cert = tls.cert;
        ko.tls_key = tls.key;
        ko.tls_ca = tls.ca;
        /* A cluster node's front: Kafka node id = runnel node id, and one
         * cluster id for all the nodes (from the members, by id). */
        char seed[RN_CLUSTER_MAX_NODES * (RN_CLUSTER_ADDR_MAX + 24)] = "";
        if (cluster) {
            ko.node_id = cconf.self;
            size_t off = 0;
            for (uint64_t last = 0;;) {
                const rn_cluster_peer_t *next = NULL;
                for (size_t i = 0; i < cconf.n; i++)
                    if (cconf.peers[i].id > last && (!next || cconf.peers[i].id < next->id))
                        next = &cconf.peers[i];
                if (!next || off >= sizeof seed - 1) break;
                off += (size_t)snprintf(seed + off, sizeof seed - off, "%llu=%s,",
                                        (unsigned long long)next->id, next->addr);
                last = next->id;
            }
            ko.cluster_seed = seed;
        }
        if (rn_kfront_start(h, &ko, &kf, &kport, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "%s", err);
            failed = 1;
            rn_server_shutdown(d.srv);
        } else {
            rn_slog(RN_SLOG_INFO, "kafka protocol listening on %s (port %d)%s", ko.listen, kport,
                    tls.cert ? (tls.ca ? " over TLS only, client certificates required"
                                       : " over TLS only (SSL, SASL_SSL)")
                             : " in plaintext (PLAINTEXT, SASL_PLAINTEXT with SCRAM-SHA-256)");
        }
    }
    rn_metrics_t *mx = NULL;
    int mport = 0;
    if (mlisten && !failed) {
        rn_metrics_opts_t mo = {mlisten, h, rn_server_connections, NULL, tls.cert, tls.key,
                                auth};
        if (rn_metrics_start(&mo, &mx, &mport, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "%s", err);
            failed = 1;
            rn_server_shutdown(d.srv);
        } else {
            rn_slog(RN_SLOG_INFO, "metrics listening on %s (port %d): GET /metrics over %s", mlisten,
                    mport, tls.cert ? "HTTPS" : "HTTP");
        }
    }
    rn_tls_pem_free(&tls);    /* gRPC's, the Kafka front's and libmicrohttpd's TLS hold copies */
    if (pl && (rc = rn_pl_start_all(pl, err)) != 0) rn_slog(RN_SLOG_ERROR, "%s", err);
    rn_ctl_t *ctl = NULL;                           /* invariant 10 */
    if (cluster && !failed) {
        char lhost[256];
        int lp;
        if (rn_addr_split(listen, lhost, sizeof lhost, &lp, 1, err) == 0 &&
            (!strcmp(lhost, "0.0.0.0") || !strcmp(lhost, "::")))
            rn_slog(RN_SLOG_WARN, "--listen %s: the controller registers %s as this node's "
                    "client address, which other machines cannot dial; give this host's own "
                    "address", listen, shown);
        rn_ctl_opts_t co = {.conf = &cconf, .data_dir = data, .client_addr = shown,
                            .snapshot_entries = csnap, .join = join,
                            .kafka_addr = kf ? rn_kfront_advertised(kf) : NULL};
        if (rn_ctl_start(&co, &ctl, err) != 0) {
            rn_slog(RN_SLOG_ERROR, "%s", err);
            failed = 1;
            rn_server_shutdown(d.srv);
        } else {
            rn_cluster_hd_set(ctl);
            rn_cluster_hd_set_repl(d.repl);
            if (kf) rn_kfront_set_ctl(kf, ctl);
            if (rn_repl_start(d.repl, ctl, err) != 0) {
                rn_slog(RN_SLOG_ERROR, "%s", err);
                failed = 1;
                rn_server_shutdown(d.srv);
            }
        }
    }
    if (port_file && !failed && write_port_file(port_file, port, kport, mport, err) != 0) {
        rn_slog(RN_SLOG_ERROR, "%s", err);
        failed = 1;
        rn_server_shutdown(d.srv);
    }
    uint64_t t0 = rn_mono_ns();
    uv_run(&d.loop, UV_RUN_DEFAULT);
    uv_loop_close(&d.loop);
    rn_metrics_stop(mx);   /* a scrape reads h: stopped before h closes */
    rn_kfront_stop(kf);
    rn_slog(RN_SLOG_DEBUG, "every call finished; stopping the server threads");
    rn_pl_destroy(pl);     /* stop the pipelines, final checkpoints */

    rn_server_stats_t ss;
    rn_server_stats(d.srv, &ss);
    rn_cluster_hd_set_repl(NULL);
    rn_repl_destroy(d.repl);            /* its threads use h and the server's waker */
    rn_server_destroy(d.srv);
    rn_cluster_hd_set(NULL);
    rn_ctl_stop(ctl);
    rn_auth_destroy(auth);
    rn_slog(RN_SLOG_DEBUG, "server stopped; closing the data directory");
    rn_hd_stats_t hs;
    rn_hd_stats(h, &hs);
    rc = rn_hd_close(h);
    rn_root_close(sink_root);
    rn_root_close(store_root);
    rn_acl_destroy(g_acl);
    g_acl = NULL;
    double secs = (double)(rn_mono_ns() - t0) / 1e9;
    if (rc != 0) {
        rn_slog(RN_SLOG_ERROR, "closing the data directory failed: %s", rn_strerror(rc));
        return 1;
    }
    rn_slog(RN_SLOG_INFO, "runneld stopped after %.1f s: %llu calls (%llu failed), %llu batches "
            "(%llu bytes) stored, %llu duplicates acked, %llu batches fetched; data directory "
            "closed cleanly", secs, (unsigned long long)ss.calls, (unsigned long long)ss.errors,
            (unsigned long long)hs.produced_batches, (unsigned long long)hs.produced_bytes,
            (unsigned long long)hs.duplicate_batches, (unsigned long long)hs.fetched_batches);
    return failed;
}

/*
 * runnel_cluster.c — `runnel --server HOST:PORT cluster status [--format
 * text|json]`: a cluster's controller as the node asked sees it (its raft
 * replica: nodes, liveness, the controller leader, term and commit index).
 *
 * Invariants:
 *  1. Through a server only (the controller lives in runneld); with --data
 *     it is a usage error naming --server.
 *  2. A single-node broker answers clustered = false: the command prints
 *     one line saying so and exits 0 (json: {"kind":"controller",
 *     "clustered":false}), so scripts can tell it from a failure (exit 1).
 *  3. --format json prints one JSON object per line: first the controller
 *     ("kind":"controller"), then one per node ("kind":"node"), ascending id.
 *  4. TLS and the token come from the same flags and variables as every
 *     command (runnel_cli.h).
 */
#include "cli/runnel_cli.h"
#include "client/rpc.h"
#include "client/tls.h"

#include "common/error.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_TIMEOUT_MS 10000

static const char cluster_usage[] =
    "usage: runnel --server HOST:PORT cluster status [--format text|json]\n"
    "  status     the controller as this node sees it: each node's raft and client\n"
    "             address and liveness, the controller leader, the raft term and commit\n"
    "             index (a single-node broker says it is not in a cluster, exit 0)\n"
    "  --format   text (default) or json: one object per line, the controller first\n"
    "             ({\"kind\":\"controller\",...}), then each node ({\"kind\":\"node\",...})\n";

static const char *env_or(const char *flag, const char *var)
{
    if (flag) return flag;
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

static void json_str(const char *s)
{
    rn_json_write_string(stdout, (const uint8_t *)s, strlen(s));
}

static void print_json(const Runnel__V1__ClusterStatusResponse *r)
{
    printf("{\"kind\":\"controller\",\"clustered\":true,\"answered_by\":%" PRIu64
           ",\"state\":", r->node_id);
    json_str(r->state);
    fputs(",\"leader\":", stdout);
    if (r->leader_id) printf("%" PRIu64, r->leader_id);
    else fputs("null", stdout);
    printf(",\"term\":%" PRIu64 ",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64 "}\n",
           r->term, r->commit_index, r->applied_index);
    for (size_t i = 0; i < r->n_nodes; i++) {
        const Runnel__V1__ClusterNode *n = r->nodes[i];
        printf("{\"kind\":\"node\",\"node\":%" PRIu64 ",\"raft\":", n->id);
        json_str(n->raft_address);
        fputs(",\"client\":", stdout);
        json_str(n->client_address);
        printf(",\"live\":%s,\"leader\":%s,\"incarnation\":%" PRIu64 ",\"live_changed_ms\":%"
               PRId64 ",\"heartbeat_age_ms\":%" PRId64 "}\n", n->live ? "true" : "false",
               n->id == r->leader_id ? "true" : "false", n->incarnation, n->live_changed_ms,
               n->heartbeat_age_ms);
    }
}

static void print_text(const Runnel__V1__ClusterStatusResponse *r)
{
    if (r->leader_id)
        printf("controller leader: node %" PRIu64 " (term %" PRIu64 ", commit index %" PRIu64
               ")\n", r->leader_id, r->term, r->commit_index);
    else
        printf("controller leader: none known (an election is under way, or too few nodes "
               "are up; term %" PRIu64 ")\n", r->term);
    printf("answered by node %" PRIu64 " (%s, applied index %" PRIu64 ")\n", r->node_id,
           r->state, r->applied_index);
    printf("%-6s %-22s %-22s %-5s %-11s %s\n", "NODE", "RAFT", "CLIENT", "LIVE", "INCARNATION",
           "SINCE");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const Runnel__V1__ClusterNode *n = r->nodes[i];
        char when[40] = "-";
        if (n->live_changed_ms > 0) rn_cli_format_time(n->live_changed_ms, when, sizeof when);
        printf("%-6" PRIu64 " %-22s %-22s %-5s %-11" PRIu64 " %s%s\n", n->id, n->raft_address,
               n->client_address[0] ? n->client_address : "-",
               !n->client_address[0] ? "-" : n->live ? "yes" : "no", n->incarnation, when,
               n->id == r->leader_id ? "  (controller leader)" : "");
    }
}

int rn_cli_cluster(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_FORMAT = 0x100, OPT_SERVER };
    static const struct option opts[] = {
        {"format", required_argument, NULL, OPT_FORMAT},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {     /* options anywhere */
        switch (c) {
        case OPT_FORMAT:
            if (!strcmp(optarg, "json")) json = 1;
            else if (!strcmp(optarg, "text")) json = 0;
            else return rn_cli_fail(RN_CLI_USAGE, "cluster: --format '%.40s': give text or json",
                                    optarg);
            break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(cluster_usage, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option("cluster", argv, c);
        }
    }
    if (optind >= argc || strcmp(argv[optind], "status") != 0 || optind + 1 != argc)
        return rn_cli_fail(RN_CLI_USAGE, "cluster: give status (see runnel cluster --help)");
    if (cli->data && cli->server)
        return rn_cli_fail(RN_CLI_USAGE, "give one of --data DIR and --server HOST:PORT");
    if (!rn_cli_remote(cli))
        return rn_cli_fail(RN_CLI_USAGE, "cluster status asks a runneld node: give --server "
                           "HOST:PORT (or RUNNEL_SERVER), not a data directory");
    const char *target = cli->server ? cli->server : cli->server_env;
    rn_tls_files_t tf = {env_or(cli->tls_ca, "RUNNEL_TLS_CA"),
                         env_or(cli->tls_cert, "RUNNEL_TLS_CERT"),
                         env_or(cli->tls_key, "RUNNEL_TLS_KEY")};
    const char *token = env_or(cli->token, "RUNNEL_TOKEN");
    char err[RN_ERRMSG_SIZE] = "";
    rn_rpc_t *rpc = NULL;
    if (rn_tls_rpc_open(target, &tf, &rpc, err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s%s", strncmp(err, "--tls-", 6) ? "--server: " : "",
                           err);
    if (token && rn_tls_token_in_clear(target, &tf))
        fprintf(stderr, "runnel: warning: the token goes in clear to %s (plaintext, not "
                "loopback): give --tls-ca to use TLS\n", target);
    if (token && rn_rpc_set_token(rpc, token, err) != 0) {
        rn_rpc_close(rpc);
        return rn_cli_fail(RN_CLI_USAGE, "--token: %s", err);
    }
    Runnel__V1__ClusterStatusRequest req;
    runnel__v1__cluster_status_request__init(&req);
    ProtobufCMessage *m = NULL;
    int rc = rn_rpc_call(rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                         &runnel__v1__cluster_status_response__descriptor, &m, STATUS_TIMEOUT_MS,
                         NULL, err);
    rn_rpc_close(rpc);
    if (rc != 0) return rn_cli_fail(RN_CLI_FAIL, "cluster status: %s", err);
    const Runnel__V1__ClusterStatusResponse *r = (const void *)m;
    if (!r->clustered) {
        if (json) puts("{\"kind\":\"controller\",\"clustered\":false}");
        else printf("not in a cluster: the broker at %s runs single-node (started without "
                    "--cluster)\n", target);
    } else if (json) {
        print_json(r);
    } else {
        print_text(r);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return RN_CLI_OK;
}

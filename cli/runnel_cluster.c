/*
 * runnel_cluster.c — `runnel --server HOST:PORT cluster status [--format
 * text|json]`: a cluster's controller as the node asked sees it (its raft
 * replica: nodes, liveness, the controller leader, term and commit index);
 * `cluster add ID=HOST:PORT` and `cluster remove ID`: membership changes
 * (ClusterChange, through the controller leader).
 *
 * Invariants:
 *  1. Through a server only (the controller lives in runneld); with --data
 *     it is a usage error naming --server.
 *  2. A single-node broker answers clustered = false: the command prints
 *     one line saying so and exits 0 (json: {"kind":"controller",
 *     "clustered":false}), so scripts can tell it from a failure (exit 1).
 *  3. --format json prints one JSON object per line: first the controller
 *     ("kind":"controller"), then one per node ("kind":"node"), ascending id,
 *     then one per replicated queue ("kind":"queue", by topic and queue).
 *  5. A queue's lag (per replica, records behind the leader's log end) and
 *     high watermark are the leader's: asked of each leader node in turn;
 *     shown as null / "-" when the leader did not answer.
 *  4. TLS and the token come from the same flags and variables as every
 *     command (runnel_cli.h).
 */
#include "cli/runnel_cli.h"
#include "client/rpc.h"
#include "client/tls.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_TIMEOUT_MS 10000
#define RN_CLUSTER_STATUS_NODES 16     /* leaders asked for lags */

static const char cluster_usage[] =
    "usage: runnel --server HOST:PORT cluster status [--format text|json]\n"
    "       runnel --server HOST:PORT cluster add ID=HOST:PORT\n"
    "       runnel --server HOST:PORT cluster remove ID\n"
    "  add        make node ID, raft address HOST:PORT, a voting member: start it first\n"
    "             with runneld --node-id ID --cluster ID=HOST:PORT --join; it is added\n"
    "             once it has caught up with the controller's log\n"
    "  remove     take node ID out of the cluster (refused while it holds replicas or\n"
    "             is the controller leader)\n"
    "  status     the controller as this node sees it: each node's raft and client\n"
    "             address and liveness, the controller leader, the raft term and commit\n"
    "             index (a single-node broker says it is not in a cluster, exit 0)\n"
    "             and each replicated queue: its replicas, leader, epoch, in-sync\n"
    "             replicas (ISR) and each replica's lag behind the leader (records)\n"
    "  --format   text (default) or json: one object per line, the controller first\n"
    "             ({\"kind\":\"controller\",...}), then each node ({\"kind\":\"node\",...}),\n"
    "             then each queue ({\"kind\":\"queue\",\"topic\":\"t\",\"queue\":0,\"leader\":2,\n"
    "             \"epoch\":5,\"replicas\":[1,2,3],\"isr\":[1,2,3],\"target\":[],\"lag\":[0,0,3],\n"
    "             ...}; target: the replicas a reassignment moves it to, [] none)\n";

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

/* The leaders' answers, per queue of r: the one whose leader answered
 * (NULL when none did). */
typedef struct leads {
    size_t n;
    Runnel__V1__ClusterStatusResponse *resp[RN_CLUSTER_STATUS_NODES];
} leads_t;

static const Runnel__V1__ClusterQueue *lead_view(const leads_t *l,
                                                 const Runnel__V1__ClusterQueue *q)
{
    for (size_t i = 0; i < l->n; i++) {
        const Runnel__V1__ClusterStatusResponse *r = l->resp[i];
        if (!r || r->node_id != q->leader) continue;
        for (size_t k = 0; k < r->n_queues; k++)
            if (r->queues[k]->queue == q->queue && !strcmp(r->queues[k]->topic, q->topic) &&
                r->queues[k]->n_lag == q->n_replicas)
                return r->queues[k];
    }
    return NULL;
}

static void ids_json(const uint64_t *v, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%" PRIu64, i ? "," : "", v[i]);
    putchar(']');
}

static void ids_text(char *out, size_t size, const uint64_t *v, size_t n)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(out + off, size - off, "%s%" PRIu64, i ? "," : "", v[i]);
    if (n == 0) snprintf(out, size, "-");
}

static void print_queues_json(const Runnel__V1__ClusterStatusResponse *r, const leads_t *l)
{
    for (size_t i = 0; i < r->n_queues; i++) {
        const Runnel__V1__ClusterQueue *q = r->queues[i];
        const Runnel__V1__ClusterQueue *lq = lead_view(l, q);
        fputs("{\"kind\":\"queue\",\"topic\":", stdout);
        json_str(q->topic);
        printf(",\"queue\":%u,\"leader\":", q->queue);
        if (q->leader) printf("%" PRIu64, q->leader);
        else fputs("null", stdout);
        printf(",\"epoch\":%" PRIu64 ",\"replicas\":", q->epoch);
        ids_json(q->replicas, q->n_replicas);
        fputs(",\"isr\":", stdout);
        ids_json(q->isr, q->n_isr);
        fputs(",\"target\":", stdout);            /* a reassignment's; [] none */
        ids_json(q->target, q->n_target);
        fputs(",\"lag\":", stdout);
        if (lq) {
            putchar('[');
            for (size_t k = 0; k < lq->n_lag; k++) {
                if (lq->lag[k] < 0) printf("%snull", k ? "," : "");
                else printf("%s%" PRId64, k ? "," : "", lq->lag[k]);
            }
            printf("],\"high_watermark\":%" PRId64 "}\n", lq->high_watermark);
        } else {
            fputs("null,\"high_watermark\":null}\n", stdout);
        }
    }
}

static void print_queues_text(const Runnel__V1__ClusterStatusResponse *r, const leads_t *l)
{
    if (r->n_queues == 0) {
        puts("no replicated topics");
        return;
    }
    printf("%-24s %-5s %-6s %-6s %-12s %-12s %-14s %s\n", "TOPIC", "QUEUE", "LEADER", "EPOCH",
           "REPLICAS", "ISR", "LAG", "HWM");
    for (size_t i = 0; i < r->n_queues; i++) {
        const Runnel__V1__ClusterQueue *q = r->queues[i];
        const Runnel__V1__ClusterQueue *lq = lead_view(l, q);
        char reps[96], isr[96], lag[128] = "-", leader[24] = "none", hwm[24] = "-";
        ids_text(reps, sizeof reps, q->replicas, q->n_replicas);
        ids_text(isr, sizeof isr, q->isr, q->n_isr);
        if (q->leader) snprintf(leader, sizeof leader, "%" PRIu64, q->leader);
        if (lq) {
            size_t off = 0;
            for (size_t k = 0; k < lq->n_lag && off < sizeof lag; k++) {
                if (lq->lag[k] < 0)
                    off += (size_t)snprintf(lag + off, sizeof lag - off, "%s?", k ? "," : "");
                else
                    off += (size_t)snprintf(lag + off, sizeof lag - off, "%s%" PRId64,
                                            k ? "," : "", lq->lag[k]);
            }
            snprintf(hwm, sizeof hwm, "%" PRId64, lq->high_watermark);
        }
        char moving[112] = "";
        if (q->n_target) {
            char tg[96];
            ids_text(tg, sizeof tg, q->target, q->n_target);
            snprintf(moving, sizeof moving, "  (moving to %s)", tg);
        }
        printf("%-24s %-5u %-6s %-6" PRIu64 " %-12s %-12s %-14s %s%s\n", q->topic, q->queue,
               leader, q->epoch, reps, isr, lag, hwm, moving);
    }
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
        fputs(",\"role\":", stdout);
        json_str(n->role);
        fputs(",\"kafka\":", stdout);
        if (n->kafka_address && n->kafka_address[0]) json_str(n->kafka_address);
        else fputs("null", stdout);
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
    printf("%-6s %-22s %-22s %-5s %-8s %-11s %s\n", "NODE", "RAFT", "CLIENT", "LIVE", "ROLE",
           "INCARNATION", "SINCE");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const Runnel__V1__ClusterNode *n = r->nodes[i];
        char when[40] = "-";
        if (n->live_changed_ms > 0) rn_cli_format_time(n->live_changed_ms, when, sizeof when);
        printf("%-6" PRIu64 " %-22s %-22s %-5s %-8s %-11" PRIu64 " %s%s\n", n->id,
               n->raft_address[0] ? n->raft_address : "-",
               n->client_address[0] ? n->client_address : "-",
               !n->client_address[0] ? "-" : n->live ? "yes" : "no", n->role[0] ? n->role : "-",
               n->incarnation, when,
               n->id == r->leader_id ? "  (controller leader)" : "");
    }
}

int rn_cli_route(rn_cli_t *cli, const char *list, char *out, size_t n)
{
    rn_tls_files_t tf = {env_or(cli->tls_ca, "RUNNEL_TLS_CA"),
                         env_or(cli->tls_cert, "RUNNEL_TLS_CERT"),
                         env_or(cli->tls_key, "RUNNEL_TLS_KEY")};
    const char *token = env_or(cli->token, "RUNNEL_TOKEN");
    char err[RN_ERRMSG_SIZE] = "", last[RN_ERRMSG_SIZE] = "no address";
    for (const char *p = list;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char addr[256];
        snprintf(addr, sizeof addr, "%.*s", (int)len, p);
        rn_rpc_t *rpc = NULL;
        ProtobufCMessage *m = NULL;
        int rc = rn_tls_rpc_open(addr, &tf, &rpc, err);
        if (rc == 0 && token) rc = rn_rpc_set_token(rpc, token, err);
        if (rc != 0) {
            rn_rpc_close(rpc);
            return rn_cli_fail(RN_CLI_USAGE, "--server: %s", err);
        }
        Runnel__V1__ClusterStatusRequest req;
        runnel__v1__cluster_status_request__init(&req);
        rc = rn_rpc_call(rpc, RN_RPC_METHOD("ClusterStatus"), &req.base,
                         &runnel__v1__cluster_status_response__descriptor, &m, 3000, NULL, err);
        rn_rpc_close(rpc);
        if (rc != 0 && rn_rpc_retriable(rc)) {      /* not reached: the next one */
            snprintf(last, sizeof last, "%s", err);
        } else {
            snprintf(out, n, "%s", addr);
            const Runnel__V1__ClusterStatusResponse *r = (const void *)m;
            for (size_t i = 0; rc == 0 && r->clustered && cli->route_topic && i < r->n_queues;
                 i++) {
                const Runnel__V1__ClusterQueue *q = r->queues[i];
                if (strcmp(q->topic, cli->route_topic) || q->queue != cli->route_queue) continue;
                for (size_t k = 0; k < r->n_nodes; k++)
                    if (r->nodes[k]->id == q->leader && r->nodes[k]->live &&
                        r->nodes[k]->client_address[0])
                        snprintf(out, n, "%s", r->nodes[k]->client_address);
            }
            if (m) protobuf_c_message_free_unpacked(m, NULL);
            return 0;
        }
        if (!e) break;
        p = e + 1;
    }
    if (!strchr(list, ',')) {           /* one address: the command reports it as always */
        snprintf(out, n, "%s", list);
        return 0;
    }
    return rn_cli_fail(RN_CLI_FAIL, "none of --server %s answered: %s", list, last);
}

/* `cluster add ID=HOST:PORT` / `cluster remove ID` over rpc (the server
 * checks the id and the address fully). */
static int cluster_change(rn_rpc_t *rpc, const char *op, const char *arg)
{
    Runnel__V1__ClusterChangeRequest req;
    runnel__v1__cluster_change_request__init(&req);
    req.op = (char *)op;
    const char *eq = strchr(arg, '=');
    int add = !strcmp(op, "add");
    size_t idlen = add && eq ? (size_t)(eq - arg) : strlen(arg);
    char *end = NULL;
    char idtext[16];
    if (idlen == 0 || idlen >= sizeof idtext || (add && !eq))
        return rn_cli_fail(RN_CLI_USAGE, "cluster %s: '%.80s': give %s", op, arg,
                           add ? "ID=HOST:PORT, the node's id and raft address" : "a node id");
    memcpy(idtext, arg, idlen);
    idtext[idlen] = '\0';
    unsigned long long id = strtoull(idtext, &end, 10);
    if (*end || idtext[0] < '0' || idtext[0] > '9' || id < 1 || id > UINT32_MAX)
        return rn_cli_fail(RN_CLI_USAGE, "cluster %s: node id '%s': give 1..4294967295", op,
                           idtext);
    req.node_id = id;
    req.raft_address = add ? (char *)eq + 1 : (char *)"";
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    /* The server waits up to 20 s for raft (a new node catching up). A
     * settling cluster's "...; retry" answers (no leader known yet, another
     * change under way) are retried for up to 20 s, as librunnel does. */
    int64_t until = rn_mono_ns() / 1000000 + 20000;
    for (;;) {
        int rc = rn_rpc_call(rpc, RN_RPC_METHOD("ClusterChange"), &req.base,
                             &runnel__v1__cluster_change_response__descriptor, &m, 30000, NULL,
                             err);
        if (rc == 0) break;
        size_t el = strlen(err);       /* UNAVAILABLE is -ECONNREFUSED here (client/rpc.c) */
        int again = rc == -ECONNREFUSED && el >= 7 && !strcmp(err + el - 7, "; retry");
        if (!again || (int64_t)(rn_mono_ns() / 1000000) >= until)
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    uint64_t leader = ((Runnel__V1__ClusterChangeResponse *)m)->leader_id;
    protobuf_c_message_free_unpacked(m, NULL);
    if (add)
        printf("node %llu (raft %s) is a voting member (committed by the controller leader, "
               "node %llu)\n", id, req.raft_address, (unsigned long long)leader);
    else
        printf("node %llu was removed from the cluster (committed by the controller leader, "
               "node %llu)\n", id, (unsigned long long)leader);
    return RN_CLI_OK;
}

/* A connection to the node --server names (the first of a list that
 * answers), with TLS and the token as every command takes them; *target
 * points at the address (first holds it for a list). 0, or the exit code
 * after one line on stderr. */
static int cluster_rpc(rn_cli_t *cli, char *first, size_t n, const char **target, rn_rpc_t **rpc)
{
    *target = cli->server ? cli->server : cli->server_env;
    if (strchr(*target, ',')) {         /* a list: the first node that answers */
        int code = rn_cli_route(cli, *target, first, n);
        if (code != 0) return code;
        *target = first;
    }
    rn_tls_files_t tf = {env_or(cli->tls_ca, "RUNNEL_TLS_CA"),
                         env_or(cli->tls_cert, "RUNNEL_TLS_CERT"),
                         env_or(cli->tls_key, "RUNNEL_TLS_KEY")};
    const char *token = env_or(cli->token, "RUNNEL_TOKEN");
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_tls_rpc_open(*target, &tf, rpc, err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s%s", strncmp(err, "--tls-", 6) ? "--server: " : "",
                           err);
    if (token && rn_tls_token_in_clear(*target, &tf))
        fprintf(stderr, "runnel: warning: the token goes in clear to %s (plaintext, not "
                "loopback): give --tls-ca to use TLS\n", *target);
    if (token && rn_rpc_set_token(*rpc, token, err) != 0) {
        rn_rpc_close(*rpc);
        *rpc = NULL;
        return rn_cli_fail(RN_CLI_USAGE, "--token: %s", err);
    }
    return 0;
}

/* The replicated queue (topic, q) in a ClusterStatus answer, or NULL. */
static const Runnel__V1__ClusterQueue *status_queue(const Runnel__V1__ClusterStatusResponse *r,
                                                    const char *topic, uint32_t q)
{
    for (size_t i = 0; i < r->n_queues; i++)
        if (!strcmp(r->queues[i]->topic, topic) && r->queues[i]->queue == q) return r->queues[i];
    return NULL;
}

static void print_ids(const uint64_t *ids, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%" PRIu64, i ? "," : "", ids[i]);
    putchar(']');
}

int rn_cli_queue_reassign(rn_cli_t *cli, const char *topic, uint32_t q, const char *list,
                          int wait)
{
    uint64_t ids[RN_CLUSTER_STATUS_NODES];
    size_t n = 0;
    for (const char *p = list; *p;) {
        char *end = NULL;
        unsigned long long id = strtoull(p, &end, 10);
        if (end == p || *p < '0' || *p > '9' || id < 1 || id > UINT32_MAX || (*end && *end != ',')
            || n == RN_CLUSTER_STATUS_NODES)
            return rn_cli_fail(RN_CLI_USAGE, "queue reassign: --replicas '%.80s': give 1 to %d "
                               "node ids, comma-separated (e.g. 2,3,4)", list,
                               RN_CLUSTER_STATUS_NODES);
        ids[n++] = id;
        p = *end ? end + 1 : end;
    }
    if (n == 0)
        return rn_cli_fail(RN_CLI_USAGE, "queue reassign: give --replicas ID,ID,... (the nodes "
                           "the queue moves to)");
    if (!rn_cli_remote(cli))
        return rn_cli_fail(RN_CLI_USAGE, "queue reassign moves a replicated queue in a cluster: "
                           "give --server HOST:PORT[,HOST:PORT...] (or RUNNEL_SERVER)");
    char first[256], err[RN_ERRMSG_SIZE] = "";
    const char *target;
    rn_rpc_t *rpc = NULL;
    int code = cluster_rpc(cli, first, sizeof first, &target, &rpc);
    if (code != 0) return code;
    Runnel__V1__ReassignQueueRequest req;
    runnel__v1__reassign_queue_request__init(&req);
    req.topic = (char *)topic;
    req.queue = q;
    req.replicas = ids;
    req.n_replicas = n;
    ProtobufCMessage *m = NULL;
    int64_t until = (int64_t)(rn_mono_ns() / 1000000) + 20000;
    for (;;) {                          /* a settling cluster's "; retry" answers */
        int rc = rn_rpc_call(rpc, RN_RPC_METHOD("ReassignQueue"), &req.base,
                             &runnel__v1__reassign_queue_response__descriptor, &m, 15000, NULL,
                             err);
        if (rc == 0) break;
        size_t el = strlen(err);
        if (rc != -ECONNREFUSED || el < 7 || strcmp(err + el - 7, "; retry") != 0 ||
            (int64_t)(rn_mono_ns() / 1000000) >= until) {
            rn_rpc_close(rpc);
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    printf("'%s'/%u: reassignment to ", topic, q);
    print_ids(ids, n);
    printf(" started: the new replicas copy the log, then the queue moves to them\n");
    if (!wait) {
        rn_rpc_close(rpc);
        return RN_CLI_OK;
    }
    /* --wait: until this node's view shows it done (replicas = the target). */
    until = (int64_t)(rn_mono_ns() / 1000000) + 120000;
    for (;;) {
        Runnel__V1__ClusterStatusRequest sreq;
        runnel__v1__cluster_status_request__init(&sreq);
        int done = 0;
        if (rn_rpc_call(rpc, RN_RPC_METHOD("ClusterStatus"), &sreq.base,
                        &runnel__v1__cluster_status_response__descriptor, &m, STATUS_TIMEOUT_MS,
                        NULL, err) == 0) {
            const Runnel__V1__ClusterQueue *sq = status_queue((const void *)m, topic, q);
            done = sq && sq->n_target == 0 && sq->n_replicas == n;
            for (size_t i = 0; done && i < n; i++) {
                int in = 0;
                for (size_t j = 0; j < sq->n_replicas; j++) in |= sq->replicas[j] == ids[i];
                done = in;
            }
            if (done) {
                printf("'%s'/%u: done: replicas ", topic, q);
                print_ids(sq->replicas, sq->n_replicas);
                printf(", in sync ");
                print_ids(sq->isr, sq->n_isr);
                printf(", leader node %" PRIu64 " at epoch %" PRIu64 "\n", sq->leader, sq->epoch);
            }
            protobuf_c_message_free_unpacked(m, NULL);
        }
        if (done) break;
        if ((int64_t)(rn_mono_ns() / 1000000) >= until) {
            rn_rpc_close(rpc);
            return rn_cli_fail(RN_CLI_FAIL, "'%s'/%u: the reassignment is not done after 120 s "
                               "(the new replicas are still copying, or one is down); runnel "
                               "cluster status shows its state", topic, q);
        }
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    rn_rpc_close(rpc);
    return RN_CLI_OK;
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
    const char *sub = optind < argc ? argv[optind] : "";
    int change = !strcmp(sub, "add") || !strcmp(sub, "remove");
    if (!change && strcmp(sub, "status") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "cluster: give status, add or remove (see runnel "
                           "cluster --help)");
    if (optind + 1 + change != argc)
        return rn_cli_fail(RN_CLI_USAGE, "cluster %s: %s", sub, !change ? "takes no argument"
                           : !strcmp(sub, "add") ? "give one ID=HOST:PORT (the node's raft "
                           "address)" : "give one node ID");
    if (cli->data && cli->server)
        return rn_cli_fail(RN_CLI_USAGE, "give one of --data DIR and --server HOST:PORT");
    if (!rn_cli_remote(cli))
        return rn_cli_fail(RN_CLI_USAGE, "cluster %s asks a runneld node: give --server "
                           "HOST:PORT (or RUNNEL_SERVER), not a data directory", sub);
    char first[256];
    const char *target;
    rn_rpc_t *rpc = NULL;
    int code = cluster_rpc(cli, first, sizeof first, &target, &rpc);
    if (code != 0) return code;
    rn_tls_files_t tf = {env_or(cli->tls_ca, "RUNNEL_TLS_CA"),
                         env_or(cli->tls_cert, "RUNNEL_TLS_CERT"),
                         env_or(cli->tls_key, "RUNNEL_TLS_KEY")};
    const char *token = env_or(cli->token, "RUNNEL_TOKEN");
    char err[RN_ERRMSG_SIZE] = "";
    if (change) {
        code = cluster_change(rpc, sub, argv[optind + 1]);
        rn_rpc_close(rpc);
        return code;
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
    leads_t l;
    memset(&l, 0, sizeof l);
    if (r->clustered && r->n_queues) {          /* invariant 5: each leader's lags */
        for (size_t i = 0; i < r->n_nodes && l.n < RN_CLUSTER_STATUS_NODES; i++) {
            const Runnel__V1__ClusterNode *n = r->nodes[i];
            int leads = 0;
            for (size_t k = 0; k < r->n_queues; k++) leads |= r->queues[k]->leader == n->id;
            if (!leads || !n->live || !n->client_address[0]) continue;
            rn_rpc_t *lr = NULL;
            ProtobufCMessage *lm = NULL;
            char lerr[RN_ERRMSG_SIZE];
            if (rn_tls_rpc_open(n->client_address, &tf, &lr, lerr) == 0 &&
                (!token || rn_rpc_set_token(lr, token, lerr) == 0) &&
                rn_rpc_call(lr, RN_RPC_METHOD("ClusterStatus"), &req.base,
                            &runnel__v1__cluster_status_response__descriptor, &lm, 3000, NULL,
                            lerr) == 0)
                l.resp[l.n++] = (Runnel__V1__ClusterStatusResponse *)lm;
            rn_rpc_close(lr);
        }
    }
    if (!r->clustered) {
        if (json) puts("{\"kind\":\"controller\",\"clustered\":false}");
        else printf("not in a cluster: the broker at %s runs single-node (started without "
                    "--cluster)\n", target);
    } else if (json) {
        print_json(r);
        print_queues_json(r, &l);
    } else {
        print_text(r);
        putchar('\n');
        print_queues_text(r, &l);
    }
    for (size_t i = 0; i < l.n; i++) protobuf_c_message_free_unpacked(&l.resp[i]->base, NULL);
    protobuf_c_message_free_unpacked(m, NULL);
    return RN_CLI_OK;
}

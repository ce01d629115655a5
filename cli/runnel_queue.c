/*
 * runnel_queue.c — `runnel queue remap|reassign` and `runnel store list|check|repair`.
 *
 * Invariants:
 *  1. A remap names the item it sealed and the one it opened; logical
 *     offsets do not change (rn_datadir_remap), and a failing remap changes
 *     no metadata.
 *  2. Embedded, --store DIR is a path as the shell sees it (relative to the
 *     current directory); it is registered relative to the data directory
 *     when inside it, else absolute. With --server it is a path on the
 *     broker's machine, sent as given (relative: to the broker's data
 *     directory).
 *  3. store list reports each store's commit-log bytes in use and how many
 *     physical queues of live mapping items it holds.
 *  4. store check changes nothing (rn_log_check, each store's lock taken)
 *     and exits 1 when a store holds damage; store repair only opens the
 *     data directory with accept_loss (offsets move forward, never back) and
 *     prints what each store's recovery did. Both work on files: --data.
 */
#include "cli/runnel_cli.h"

#include "common/error.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char queue_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] queue remap TOPIC Q [--store DIR]\n"
    "\n"
    "Seals logical queue Q's open mapping item at the queue's current end and opens a new\n"
    "item on a fresh physical queue, in the same store or in the store at DIR (created and\n"
    "registered when new, e.g. on another disk). No data is copied; logical offsets stay\n"
    "dense and never change; readers cross the boundary transparently.\n"
    "\n"
    "       runnel --server HOST:PORT[,...] queue reassign TOPIC Q --replicas ID,ID,...\n"
    "              [--wait]\n"
    "\n"
    "In a cluster: moves replicated queue Q's replicas to the nodes named (their ids).\n"
    "The new ones copy the log from the leader; once all are in sync the queue's replicas\n"
    "become exactly these (a leader outside them hands over). Offsets never change.\n"
    "--wait: until it is done (at most 120 s).\n";

static const char store_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] store list\n"
    "       runnel --data DIR store check\n"
    "       runnel --data DIR store repair --accept-loss\n"
    "\n"
    "list: each store (commit log + indexes) of the data directory: id, path, commit-log\n"
    "bytes, and physical queues of live mapping items.\n"
    "check: verify every entry of every store offline (entry header CRC, batch header and\n"
    "Kafka CRC, offsets continuing) and count index units marked damaged; changes nothing;\n"
    "exits 1 when damage is found. The data directory must not be open elsewhere.\n"
    "repair --accept-loss: open a data directory whose stores lost acknowledged data (which\n"
    "a normal open refuses), marking the missing offsets lost: reads of them fail, and each\n"
    "queue's next offset stays where it was, so no offset is handed out twice. Prints what\n"
    "every store's recovery did.\n";

typedef struct reassign_opts {
    const char *replicas;
    int         wait;
} reassign_opts_t;

/* Parse "--data", "--store", "--replicas", "--wait", "--help" for both
 * commands (each option where it applies: NULL outputs refuse it). */
static int parse_opts(rn_cli_t *cli, int argc, char **argv, const char *cmd, const char *usage,
                      const char **store, reassign_opts_t *reassign, int *accept_loss,
                      int *npos, char ***pos)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_STORE, OPT_ACCEPT, OPT_REPLICAS, OPT_WAIT };
    static const struct option opts[] = {
        {"store", required_argument, NULL, OPT_STORE},
        {"replicas", required_argument, NULL, OPT_REPLICAS},
        {"wait", no_argument, NULL, OPT_WAIT},
        {"accept-loss", no_argument, NULL, OPT_ACCEPT},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_STORE:
            if (!store) return rn_cli_fail(RN_CLI_USAGE, "%s: --store applies to queue remap only",
                                           cmd);
            *store = optarg;
            break;
        case OPT_ACCEPT:
            if (!accept_loss)
                return rn_cli_fail(RN_CLI_USAGE, "%s: --accept-loss applies to store repair only",
                                   cmd);
            *accept_loss = 1;
            break;
        case OPT_REPLICAS:
        case OPT_WAIT:
            if (!reassign)
                return rn_cli_fail(RN_CLI_USAGE, "%s: --%s applies to queue reassign only", cmd,
                                   c == OPT_WAIT ? "wait" : "replicas");
            if (c == OPT_WAIT) reassign->wait = 1;
            else reassign->replicas = optarg;
            break;
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(usage, stdout); return -1;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option(cmd, argv, c);
        }
    }
    *npos = argc - optind;
    *pos = argv + optind;
    return 0;
}

int rn_cli_queue(rn_cli_t *cli, int argc, char **argv)
{
    char err[RN_ERRMSG_SIZE] = "", abs[PATH_MAX * 2];
    const char *store = NULL;
    int npos;
    char **pos;
    reassign_opts_t ro = {NULL, 0};
    int code = parse_opts(cli, argc, argv, "queue", queue_usage, &store, &ro, NULL, &npos, &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "queue: give remap or reassign (see runnel queue "
                           "--help)");
    if (!strcmp(pos[0], "reassign")) {
        uint32_t rq;
        if (npos != 3)
            return rn_cli_fail(RN_CLI_USAGE, "queue reassign takes TOPIC and Q (see runnel queue "
                               "--help)");
        if (store) return rn_cli_fail(RN_CLI_USAGE, "queue reassign: --store applies to remap");
        if (rn_cli_parse_queue("Q", pos[2], &rq, err) != 0)
            return rn_cli_fail(RN_CLI_USAGE, "%s", err);
        if (cli->data && cli->server)
            return rn_cli_fail(RN_CLI_USAGE, "give one of --data DIR and --server HOST:PORT");
        return rn_cli_queue_reassign(cli, pos[1], rq, ro.replicas ? ro.replicas : "", ro.wait);
    }
    if (ro.replicas || ro.wait)
        return rn_cli_fail(RN_CLI_USAGE, "queue remap: --replicas and --wait apply to reassign");
    if (strcmp(pos[0], "remap") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "queue: unknown subcommand '%.40s'; use remap or "
                           "reassign", pos[0]);
    if (npos != 3)
        return rn_cli_fail(RN_CLI_USAGE, "queue remap takes TOPIC and Q (see runnel queue --help)");
    uint32_t q;
    if (rn_cli_parse_queue("Q", pos[2], &q, err) != 0) return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    if (store) {
        if (!*store) return rn_cli_fail(RN_CLI_USAGE, "--store: the directory name is empty");
        if (store[0] != '/' && !rn_cli_remote(cli)) {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd))
                return rn_cli_fail(RN_CLI_FAIL, "cannot get the current directory");
            snprintf(abs, sizeof abs, "%s/%s", cwd, store);
            store = abs;
        }
    }
    rn_client_t *c;
    code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    rn_meta_item_t sealed, opened;
    int rc = rn_client_queue_remap(c, pos[1], q, store, &sealed, &opened, err);
    if (rc != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    } else {
        printf("topic '%s' queue %u remapped at offset %lld: item %u (store %u queue %u, "
               "physical [%lld, %lld)) sealed; item %u opened on store %u queue %u\n",
               pos[1], q, (long long)opened.logical_start, sealed.seq, sealed.store_id,
               sealed.physical_id, (long long)sealed.physical_start,
               (long long)sealed.physical_end, opened.seq, opened.store_id, opened.physical_id);
    }
    return rn_cli_close_client(c, code);
}

/* The data directory of an offline store command (never a server). */
static int local_dir(const rn_cli_t *cli, const char *what, const char **dir)
{
    if (rn_cli_remote(cli))
        return rn_cli_fail(RN_CLI_USAGE, "store %s works on the files: give --data DIR, not a "
                           "server (stop the broker first)", what);
    *dir = cli->data ? cli->data : cli->data_env;
    if (!*dir) return rn_cli_fail(RN_CLI_USAGE, "store %s: give --data DIR", what);
    return 0;
}

/* store check: rn_log_check every registered store. */
static int store_check(rn_cli_t *cli)
{
    char err[RN_ERRMSG_SIZE] = "", path[PATH_MAX * 2];
    const char *dir;
    int code = local_dir(cli, "check", &dir);
    if (code != 0) return code;
    snprintf(path, sizeof path, "%s/meta.db", dir);
    if (access(path, F_OK) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s is not a runnel data directory (no meta.db)", dir);
    rn_meta_t *m = NULL;
    rn_meta_store_t *v = NULL;
    size_t n = 0;
    int rc = rn_meta_open(path, 0, &m, err);
    if (rc == 0) rc = rn_meta_store_list(m, &v, &n, err);
    rn_meta_close(m);
    if (rc != 0) return rn_cli_fail(RN_CLI_FAIL, "%s: %s", path, err);
    int damaged = 0;
    for (size_t i = 0; i < n; i++) {
        rn_log_check_t ck;
        if (v[i].path[0] == '/') snprintf(path, sizeof path, "%s", v[i].path);
        else snprintf(path, sizeof path, "%s/%s", dir, v[i].path);
        rc = rn_log_check(path, &ck, err);
        if (rc != 0) {
            free(v);
            return rn_cli_fail(RN_CLI_FAIL, "store %u (%s): %s", v[i].id, path, err);
        }
        int bad = ck.bad_entries > 0 || ck.damaged_units > 0;
        damaged |= bad;
        printf("store %u (%s): %s: %llu intact entries (%llu bytes); %llu damaged places "
               "(%llu bytes); %llu index units marked damaged or lost; %llu bytes of torn "
               "tail%s%s\n", v[i].id, v[i].path, bad ? "DAMAGED" : "ok",
               (unsigned long long)ck.entries, (unsigned long long)ck.bytes,
               (unsigned long long)ck.bad_entries, (unsigned long long)ck.bad_bytes,
               (unsigned long long)ck.damaged_units, (unsigned long long)ck.tail_bytes,
               ck.first[0] ? "; first: " : "", ck.first);
    }
    free(v);
    fflush(stdout);
    if (damaged)
        return rn_cli_fail(RN_CLI_FAIL, "damage found in %s; reads of damaged offsets fail "
                           "(consumers can pass --skip-damaged)", dir);
    return RN_CLI_OK;
}

/* store repair --accept-loss: open with accept_loss, print every report. */
static int store_repair(rn_cli_t *cli, int accept_loss)
{
    const char *dir;
    int code = local_dir(cli, "repair", &dir);
    if (code != 0) return code;
    if (!accept_loss)
        return rn_cli_fail(RN_CLI_USAGE, "store repair: give --accept-loss (it marks missing "
                           "acknowledged offsets lost; nothing else is repaired)");
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    lo.accept_loss = 1;
    cli->report_all = 1;
    rn_client_t *c;
    code = rn_cli_open_client(cli, &lo, 0, &c);
    if (code != 0) return code;
    return rn_cli_close_client(c, RN_CLI_OK);
}

int rn_cli_store(rn_cli_t *cli, int argc, char **argv)
{
    char err[RN_ERRMSG_SIZE] = "";
    int npos, accept_loss = 0;
    char **pos;
    int code = parse_opts(cli, argc, argv, "store", store_usage, NULL, NULL, &accept_loss, &npos,
                          &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "store: give list, check or repair (see runnel store "
                           "--help)");
    if (npos == 1 && strcmp(pos[0], "check") == 0) {
        if (accept_loss) return rn_cli_fail(RN_CLI_USAGE, "store check takes no --accept-loss");
        return store_check(cli);
    }
    if (npos == 1 && strcmp(pos[0], "repair") == 0) return store_repair(cli, accept_loss);
    if (strcmp(pos[0], "list") != 0 && strcmp(pos[0], "check") != 0 &&
        strcmp(pos[0], "repair") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "store: unknown subcommand '%.40s'; use list, check or "
                           "repair", pos[0]);
    if (npos != 1) return rn_cli_fail(RN_CLI_USAGE, "store %s takes no arguments", pos[0]);
    if (accept_loss) return rn_cli_fail(RN_CLI_USAGE, "store list takes no --accept-loss");
    rn_client_t *c;
    code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    rn_datadir_store_info_t *v = NULL;
    size_t n = 0;
    int rc = rn_client_stores(c, &v, &n, err);
    if (rc != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    } else {
        printf("%5s %16s %7s  %s\n", "STORE", "BYTES", "QUEUES", "PATH");
        for (size_t i = 0; i < n; i++)
            printf("%5u %16llu %7u  %s\n", v[i].id, (unsigned long long)v[i].bytes,
                   v[i].physical_queues, v[i].path);
    }
    free(v);
    return rn_cli_close_client(c, code);
}

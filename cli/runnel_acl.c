/*
 * runnel_acl.c — `runnel acl add | remove | list`: the access control lists
 * of a data directory (embedded, --data DIR) or of a broker (--server).
 *
 *   runnel acl add --principal P (--topic NAME | --group NAME |
 *       --pipeline NAME | --cluster) [--prefix] --op OP[,OP...]
 *
 * Invariants:
 *  1. add and remove take the same words; several operations are several
 *     entries, changed one at a time in the order given: the first failure
 *     stops the run and says which entries were changed before it.
 *  2. An entry is validated where it is stored (logical-queues/acl.h,
 *     embedded or in the broker), so the messages are the same both ways.
 *  3. A broker re-reads nothing: the RPCs change its snapshot at once, and
 *     embedded changes count from the broker's next start.
 */
#include "cli/runnel_cli.h"

#include "common/error.h"
#include "logical-queues/acl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char acl_usage[] =
    "usage: runnel acl add    --principal P RESOURCE [--prefix] --op OP[,OP...]\n"
    "       runnel acl remove --principal P RESOURCE [--prefix] --op OP[,OP...]\n"
    "       runnel acl list [--principal P]\n"
    "  P         a user name, '*' for every principal, 'anonymous' for calls without one\n"
    "  RESOURCE  --topic NAME | --group NAME | --pipeline NAME | --cluster\n"
    "            (NAME '*': every one; --prefix: NAME is a prefix, e.g. --topic app. --prefix)\n"
    "  OP        produce consume describe create alter delete query pipeline all\n"
    "            (topic: produce consume describe create alter delete; group: consume\n"
    "            describe alter delete; pipeline: describe create alter delete; cluster:\n"
    "            describe create alter query pipeline)\n"
    "Once any entry exists, a broker refuses what no entry allows (PERMISSION_DENIED);\n"
    "runneld --super-user NAME bypasses the lists. Over --server, changing them needs\n"
    "alter on the cluster (list: describe), or a super user.\n";

int rn_cli_acl(rn_cli_t *cli, int argc, char **argv)
{
    enum { O_PRINCIPAL = 0x200, O_TOPIC, O_GROUP, O_PIPELINE, O_CLUSTER, O_PREFIX, O_OP };
    static const struct option opts[] = {
        {"principal", required_argument, NULL, O_PRINCIPAL},
        {"topic", required_argument, NULL, O_TOPIC},
        {"group", required_argument, NULL, O_GROUP},
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"cluster", no_argument, NULL, O_CLUSTER},
        {"prefix", no_argument, NULL, O_PREFIX},
        {"op", required_argument, NULL, O_OP},
        {"data", required_argument, NULL, 0x300},
        {"server", required_argument, NULL, 0x301},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *principal = NULL, *res = NULL, *name = "", *ops = NULL;
    int prefix = 0, nres = 0, c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_PRINCIPAL: principal = optarg; break;
        case O_TOPIC: res = "topic"; name = optarg; nres++; break;
        case O_GROUP: res = "group"; name = optarg; nres++; break;
        case O_PIPELINE: res = "pipeline"; name = optarg; nres++; break;
        case O_CLUSTER: res = "cluster"; name = ""; nres++; break;
        case O_PREFIX: prefix = 1; break;
        case O_OP: ops = optarg; break;
        case 0x300: cli->data = optarg; break;
        case 0x301: cli->server = optarg; break;
        case 'h': fputs(acl_usage, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option("acl", argv, c);
        }
    }
    if (argc - optind != 1)
        return rn_cli_fail(RN_CLI_USAGE, "acl: give add, remove or list (see runnel acl --help)");
    const char *sub = argv[optind];
    int list = !strcmp(sub, "list"), add = !strcmp(sub, "add");
    if (!list && !add && strcmp(sub, "remove"))
        return rn_cli_fail(RN_CLI_USAGE, "acl: unknown subcommand '%.40s'; give add, remove or "
                           "list", sub);
    char err[RN_ERRMSG_SIZE] = "";
    if (!list) {
        if (!principal) return rn_cli_fail(RN_CLI_USAGE, "acl %s: give --principal P", sub);
        if (nres != 1)
            return rn_cli_fail(RN_CLI_USAGE, "acl %s: give one of --topic NAME, --group NAME, "
                               "--pipeline NAME and --cluster", sub);
        if (!ops || !*ops)
            return rn_cli_fail(RN_CLI_USAGE, "acl %s: give --op OP[,OP...] (produce, consume, "
                               "describe, create, alter, delete, query, pipeline, all)", sub);
    } else if (nres || ops || prefix) {
        return rn_cli_fail(RN_CLI_USAGE, "acl list takes only --principal P");
    }
    rn_client_t *cl;
    int code = rn_cli_open_client(cli, NULL, 0, &cl);
    if (code != RN_CLI_OK) return code;
    if (list) {
        rn_meta_acl_t *v = NULL;
        size_t n = 0;
        if (rn_client_acl_list(cl, &v, &n, err) != 0) {
            code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
        } else {
            for (size_t i = 0; i < n; i++) {
                if (principal && strcmp(principal, v[i].principal)) continue;
                printf("%-16s %-8s %-8s %-24s %s\n", v[i].principal, v[i].resource,
                       v[i].resource[0] == 'c' ? "-" : v[i].pattern,
                       v[i].name[0] ? v[i].name : "-", v[i].operation);
            }
            if (fflush(stdout) != 0) code = RN_CLI_FAIL;
        }
        free(v);
        return rn_cli_close_client(cl, code);
    }
    /* Invariant 1: one entry per operation. */
    char opbuf[256];
    snprintf(opbuf, sizeof opbuf, "%s", ops);
    int done = 0;
    char *save = NULL;
    for (char *op = strtok_r(opbuf, ",", &save); op && code == RN_CLI_OK;
         op = strtok_r(NULL, ",", &save)) {
        rn_acl_entry_t e;
        rn_meta_acl_t m;
        int rc = rn_acl_entry_make(principal, res, name, prefix, op, &e, err);  /* invariant 2 */
        if (rc == 0) {
            rn_acl_entry_to_meta(&e, &m);
            rc = add ? rn_client_acl_add(cl, &m, err) : rn_client_acl_remove(cl, &m, err);
        }
        if (rc != 0) {
            code = rn_cli_fail(rc == RN_EINVAL ? RN_CLI_USAGE : RN_CLI_FAIL, "acl %s: %s%s", sub,
                               err, done ? " (the operations before it were changed)" : "");
        }
        done++;
    }
    return rn_cli_close_client(cl, code);
}

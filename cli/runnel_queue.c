/*
 * runnel_queue.c — `runnel queue remap` and `runnel store list`.
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
    "dense and never change; readers cross the boundary transparently.\n";

static const char store_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] store list\n"
    "\n"
    "Each store (commit log + indexes) of the data directory: id, path, commit-log bytes,\n"
    "and physical queues of live mapping items.\n";

/* Parse "--data", "--store", "--help" for both commands. */
static int parse_opts(rn_cli_t *cli, int argc, char **argv, const char *cmd, const char *usage,
                      const char **store, int *npos, char ***pos)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_STORE };
    static const struct option opts[] = {
        {"store", required_argument, NULL, OPT_STORE},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
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
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(usage, stdout); return -1;
        default: return rn_cli_bad_option(cmd, argv, c);
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
    int code = parse_opts(cli, argc, argv, "queue", queue_usage, &store, &npos, &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "queue: give remap (see runnel queue --help)");
    if (strcmp(pos[0], "remap") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "queue: unknown subcommand '%.40s'; use remap", pos[0]);
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

int rn_cli_store(rn_cli_t *cli, int argc, char **argv)
{
    char err[RN_ERRMSG_SIZE] = "";
    int npos;
    char **pos;
    int code = parse_opts(cli, argc, argv, "store", store_usage, NULL, &npos, &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1) return rn_cli_fail(RN_CLI_USAGE, "store: give list (see runnel store --help)");
    if (strcmp(pos[0], "list") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "store: unknown subcommand '%.40s'; use list", pos[0]);
    if (npos != 1) return rn_cli_fail(RN_CLI_USAGE, "store list takes no arguments");
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

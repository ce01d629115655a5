/*
 * runnel_group.c — `runnel group list|offsets|commit|reset` and
 * `runnel checkpoint create|list|drop`.
 *
 * Invariants:
 *  1. Every check happens before the one transaction that writes
 *     (logical-queues/group.c), so a failing command changes no metadata.
 *  2. A reset needs no "stopped consumers" check embedded: the data
 *     directory lock lets only this process in. With --server the broker
 *     applies the reset in one transaction; consumers of the group that
 *     commit afterwards overwrite it (stop them first).
 *  3. Offsets shown are logical; LAG = END - OFFSET with END the queue's
 *     high watermark now.
 */
#include "cli/runnel_cli.h"

#include "common/error.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char group_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] group list\n"
    "       runnel [--data DIR | --server HOST:PORT] group offsets G\n"
    "       runnel [--data DIR | --server HOST:PORT] group commit G TOPIC Q OFFSET\n"
    "       runnel [--data DIR | --server HOST:PORT] group reset G [--topic T] --to POS\n"
    "\n"
    "A group's committed offset is the next offset to read, per topic and logical queue;\n"
    "`consume --group G` resumes from it and commits as it goes.\n"
    "  commit   OFFSET must lie in the queue's [log start, high watermark]\n"
    "  reset    POS: earliest, latest, @TIMESTAMP_MS (per queue, the first record with\n"
    "           timestamp >= it) or checkpoint:NAME (the group's offsets become the\n"
    "           checkpoint's). Forwards or backwards, atomically across queues; with\n"
    "           --topic T every queue of T, else every queue the group has offsets for.\n"
    "           Safe at any time embedded: the data directory lock keeps consumers out;\n"
    "           with --server, stop the group's consumers first.\n";

static const char checkpoint_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] checkpoint create G NAME\n"
    "       runnel [--data DIR | --server HOST:PORT] checkpoint list [G]\n"
    "       runnel [--data DIR | --server HOST:PORT] checkpoint drop G NAME\n"
    "\n"
    "A checkpoint is a named snapshot of group G's offsets on every topic and queue, taken\n"
    "atomically. NAME is unique within its group. Replay with\n"
    "`consume TOPIC --from checkpoint:NAME [--group G]` (without --group NAME must be\n"
    "unique across groups), or restore with `group reset G --to checkpoint:NAME`.\n";

/* Shared option parsing: --data, --topic (when topic != NULL), --to (when
 * to != NULL), --help. Returns -1 after printing help. */
static int parse_opts(rn_cli_t *cli, int argc, char **argv, const char *cmd, const char *usage,
                      const char **topic, const char **to, int *npos, char ***pos)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_TOPIC, OPT_TO };
    static const struct option opts[] = {
        {"topic", required_argument, NULL, OPT_TOPIC},
        {"to", required_argument, NULL, OPT_TO},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_TOPIC:
            if (!topic) return rn_cli_fail(RN_CLI_USAGE, "%s: --topic applies to group reset only",
                                           cmd);
            *topic = optarg;
            break;
        case OPT_TO:
            if (!to) return rn_cli_fail(RN_CLI_USAGE, "%s: --to applies to group reset only", cmd);
            *to = optarg;
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

static int group_list(rn_client_t *c)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_group_t *v = NULL;
    size_t n = 0;
    if (rn_client_group_list(c, &v, &n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    printf("%-32s %7s %11s  %s\n", "GROUP", "QUEUES", "CHECKPOINTS", "CREATED");
    for (size_t i = 0; i < n; i++) {
        char when[64] = "-";                 /* remote: the protocol does not carry it */
        if (v[i].created_ms >= 0) rn_cli_format_time(v[i].created_ms, when, sizeof when);
        printf("%-32s %7u %11u  %s\n", v[i].name, v[i].offsets, v[i].checkpoints, when);
    }
    free(v);
    return RN_CLI_OK;
}

/* Print offsets with each queue's range and lag. */
static int print_offsets(rn_client_t *c, const rn_meta_offset_t *v, size_t n)
{
    char err[RN_ERRMSG_SIZE] = "";
    printf("%-24s %5s %14s %14s %14s %12s\n", "TOPIC", "QUEUE", "OFFSET", "START", "END", "LAG");
    for (size_t i = 0; i < n; i++) {
        int64_t start, end;
        if (rn_client_queue_range(c, v[i].topic, v[i].queue, &start, &end, err) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        printf("%-24s %5u %14lld %14lld %14lld %12lld\n", v[i].topic, v[i].queue,
               (long long)v[i].offset, (long long)start, (long long)end,
               (long long)(end - v[i].offset));
    }
    return RN_CLI_OK;
}

static int group_offsets(rn_client_t *c, const char *group)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t *v = NULL;
    size_t n = 0;
    if (rn_client_group_offsets(c, group, NULL, &v, &n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    int code = print_offsets(c, v, n);
    free(v);
    return code;
}

static int group_commit(rn_client_t *c, char **pos)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_offset_t o;
    memset(&o, 0, sizeof o);
    if (rn_cli_parse_queue("Q", pos[3], &o.queue, err) != 0 ||
        rn_cli_parse_i64("OFFSET", pos[4], 0, INT64_MAX, &o.offset, err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    if (strlen(pos[2]) >= sizeof o.topic && rn_meta_check_topic_name(pos[2], err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    snprintf(o.topic, sizeof o.topic, "%s", pos[2]);
    if (rn_client_group_commit(c, pos[1], &o, 1, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    printf("group '%s' committed offset %lld on topic '%s' queue %u\n", pos[1],
           (long long)o.offset, pos[2], o.queue);
    return RN_CLI_OK;
}

static int group_reset(rn_client_t *c, const char *group, const char *topic,
                       const rn_group_target_t *to)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_group_change_t *v = NULL;
    size_t n = 0;
    if (rn_client_group_reset(c, group, topic, to, &v, &n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    printf("group '%s' reset on %zu queue%s:\n", group, n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        char before[24] = "none", after[24] = "removed";
        if (v[i].before >= 0) snprintf(before, sizeof before, "%lld", (long long)v[i].before);
        if (v[i].after >= 0) snprintf(after, sizeof after, "%lld", (long long)v[i].after);
        printf("  %s %u: %s -> %s\n", v[i].topic, v[i].queue, before, after);
    }
    free(v);
    return RN_CLI_OK;
}

int rn_cli_group(rn_cli_t *cli, int argc, char **argv)
{
    char err[RN_ERRMSG_SIZE] = "";
    const char *topic = NULL, *to = NULL;
    int npos;
    char **pos;
    int code = parse_opts(cli, argc, argv, "group", group_usage, &topic, &to, &npos, &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "group: give list, offsets, commit or reset (see runnel "
                           "group --help)");
    const char *sub = pos[0];
    rn_group_target_t target;
    int want;
    if (!strcmp(sub, "list")) want = 1;
    else if (!strcmp(sub, "offsets")) want = 2;
    else if (!strcmp(sub, "commit")) want = 5;
    else if (!strcmp(sub, "reset")) want = 2;
    else return rn_cli_fail(RN_CLI_USAGE, "group: unknown subcommand '%.40s'; use list, offsets, "
                            "commit or reset", sub);
    if (npos != want)
        return rn_cli_fail(RN_CLI_USAGE, "group %s takes %s (see runnel group --help)", sub,
                           want == 1 ? "no arguments" : want == 2 ? "one group G"
                                                                  : "G TOPIC Q OFFSET");
    if ((topic || to) && strcmp(sub, "reset") != 0)
        return rn_cli_fail(RN_CLI_USAGE, "--topic and --to apply to group reset only");
    if (want >= 2 && rn_meta_check_name("group", pos[1], err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    if (!strcmp(sub, "reset")) {
        if (!to)
            return rn_cli_fail(RN_CLI_USAGE, "group reset needs --to earliest|latest|"
                               "@TIMESTAMP_MS|checkpoint:NAME");
        if (rn_group_parse_target(to, "--to", 0, &target, err) != 0)
            return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    }
    rn_client_t *c;
    code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    if (want == 1) code = group_list(c);
    else if (!strcmp(sub, "offsets")) code = group_offsets(c, pos[1]);
    else if (!strcmp(sub, "commit")) code = group_commit(c, pos);
    else code = group_reset(c, pos[1], topic, &target);
    return rn_cli_close_client(c, code);
}

static int checkpoint_list(rn_client_t *c, const char *group)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_meta_checkpoint_t *v = NULL;
    size_t n = 0;
    if (rn_client_checkpoint_list(c, group, &v, &n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    printf("%-24s %-24s %7s  %s\n", "GROUP", "CHECKPOINT", "QUEUES", "CREATED");
    for (size_t i = 0; i < n; i++) {
        char when[64];
        rn_cli_format_time(v[i].created_ms, when, sizeof when);
        printf("%-24s %-24s %7u  %s\n", v[i].group, v[i].name, v[i].offsets, when);
    }
    free(v);
    return RN_CLI_OK;
}

int rn_cli_checkpoint(rn_cli_t *cli, int argc, char **argv)
{
    char err[RN_ERRMSG_SIZE] = "";
    int npos;
    char **pos;
    int code = parse_opts(cli, argc, argv, "checkpoint", checkpoint_usage, NULL, NULL, &npos, &pos);
    if (code < 0) return RN_CLI_OK;
    if (code != 0) return code;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "checkpoint: give create, list or drop (see runnel "
                           "checkpoint --help)");
    const char *sub = pos[0];
    int is_list = !strcmp(sub, "list");
    if (!is_list && strcmp(sub, "create") && strcmp(sub, "drop"))
        return rn_cli_fail(RN_CLI_USAGE, "checkpoint: unknown subcommand '%.40s'; use create, list "
                           "or drop", sub);
    if (is_list ? npos > 2 : npos != 3)
        return rn_cli_fail(RN_CLI_USAGE, "checkpoint %s takes %s (see runnel checkpoint --help)",
                           sub, is_list ? "at most one group G" : "G NAME");
    if (npos >= 2 && rn_meta_check_name("group", pos[1], err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    if (npos == 3 && rn_meta_check_name("checkpoint", pos[2], err) != 0)
        return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    rn_client_t *c;
    code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    if (is_list) {
        code = checkpoint_list(c, npos == 2 ? pos[1] : NULL);
    } else if (!strcmp(sub, "create")) {
        rn_meta_checkpoint_t cp;
        if (rn_client_checkpoint_create(c, pos[1], pos[2], &cp, err) != 0)
            code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
        else
            printf("checkpoint '%s' of group '%s' holds %u offset%s\n", cp.name, cp.group,
                   cp.offsets, cp.offsets == 1 ? "" : "s");
    } else {
        if (rn_client_checkpoint_drop(c, pos[1], pos[2], err) != 0)
            code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
        else
            printf("dropped checkpoint '%s' of group '%s'\n", pos[2], pos[1]);
    }
    return rn_cli_close_client(c, code);
}

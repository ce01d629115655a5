/*
 * runnel_topic.c — `runnel topic create|alter|delete|list|describe`.
 *
 * Invariants:
 *  1. Only `topic create` may create a data directory; the others need an
 *     existing one (or a server).
 *  2. describe reports each logical queue's logical range [START, END) as
 *     readers see it (END = high watermark) and the physical queue of its
 *     open item, then one line per mapping item: its logical range, store,
 *     physical queue and physical range ("-" = open).
 *  3. alter only adds queues; asking for as many or fewer is an error naming
 *     the current count, and changes nothing.
 */
#include "cli/runnel_cli.h"

#include "common/error.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char topic_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] topic create NAME [--queues N]\n"
    "              [--replicas R]\n"
    "       runnel [--data DIR | --server HOST:PORT] topic alter NAME --queues M\n"
    "       runnel [--data DIR | --server HOST:PORT] topic delete NAME\n"
    "       runnel [--data DIR | --server HOST:PORT] topic list\n"
    "       runnel [--data DIR | --server HOST:PORT] topic describe NAME\n"
    "\n"
    "  NAME         1-249 characters of A-Z a-z 0-9 . _ -\n"
    "  --queues N   logical queues, 1..10000 (default 1; a cluster's topics 1..64)\n"
    "  --replicas R a cluster (--server of a node): replicas per queue, 1..nodes\n"
    "               (default min(3, nodes))\n"
    "  alter adds queues (M more than today; queues are never removed). Keyed\n"
    "  records hash over the new count from then on.\n"
    "  delete removes the topic and every group's offsets on it; its records stay\n"
    "  in the stores, unreachable, until retention drops them. A topic created\n"
    "  again under the name starts empty at offset 0.\n";

static int topic_create(rn_cli_t *cli, const char *name, uint32_t queues, uint32_t replicas)
{
    char err[RN_ERRMSG_SIZE] = "";
    /* Validate before creating a directory for a name we would refuse. */
    if (rn_meta_check_topic_name(name, err) != 0) return rn_cli_fail(RN_CLI_USAGE, "%s", err);
    rn_client_t *c;
    int code = rn_cli_open_client(cli, NULL, 1, &c);
    if (code != 0) return code;
    rn_meta_topic_t t;
    if (rn_client_topic_create_replicated(c, name, queues, replicas, &t, err) != 0)
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    else
        printf("created topic '%s' with %u queue%s\n", t.name, t.queues, t.queues == 1 ? "" : "s");
    return rn_cli_close_client(c, code);
}

static int topic_delete(rn_cli_t *cli, const char *name)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_t *c;
    int code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    if (rn_client_topic_delete(c, name, err) != 0)
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    else
        printf("deleted topic '%s'\n", name);
    return rn_cli_close_client(c, code);
}

static int topic_alter(rn_cli_t *cli, const char *name, uint32_t queues)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_t *c;
    int code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    rn_meta_topic_t t;
    if (rn_client_topic_alter(c, name, queues, &t, err) != 0)
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    else
        printf("topic '%s' has %u queues now\n", t.name, t.queues);
    return rn_cli_close_client(c, code);
}

static int topic_list(rn_cli_t *cli)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_t *c;
    int code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    rn_meta_topic_t *v = NULL;
    size_t n = 0;
    if (rn_client_topic_list(c, &v, &n, err) != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    } else {
        printf("%-32s %6s  %s\n", "TOPIC", "QUEUES", "CREATED");
        for (size_t i = 0; i < n; i++) {
            char when[64];
            rn_cli_format_time(v[i].created_ms, when, sizeof when);
            printf("%-32s %6u  %s\n", v[i].name, v[i].queues, when);
        }
    }
    free(v);
    return rn_cli_close_client(c, code);
}

static int topic_describe(rn_cli_t *cli, const char *name)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_t *c;
    int code = rn_cli_open_client(cli, NULL, 0, &c);
    if (code != 0) return code;
    rn_client_topic_desc_t d;
    if (rn_client_topic_describe(c, name, &d, err) != 0) {
        rn_client_topic_desc_free(&d);
        return rn_cli_close_client(c, rn_cli_fail(RN_CLI_FAIL, "%s", err));
    }
    const rn_meta_topic_t *t = &d.topic;
    char when[64];
    rn_cli_format_time(t->created_ms, when, sizeof when);
    printf("topic %s: %u queue%s, created %s\n", t->name, t->queues, t->queues == 1 ? "" : "s",
           when);
    printf("%5s %20s %20s %10s  %s\n", "QUEUE", "START", "END", "BATCHES", "PHYSICAL");
    for (uint32_t i = 0; i < t->queues; i++) {
        const rn_client_queue_desc_t *q = &d.queues[i];
        if (q->nitems == 0) {
            code = rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u has no mapping item", t->name, i);
            break;
        }
        const rn_meta_item_t *it = &q->items[q->nitems - 1];
        printf("%5u %20lld %20lld %10llu  store %u queue %u\n", i, (long long)q->log_start,
               (long long)q->high_watermark, (unsigned long long)q->batches, it->store_id,
               it->physical_id);
        for (size_t k = 0; k < q->nitems; k++) {
            const rn_meta_item_t *m = &q->items[k];
            char lend[24] = "-", pend[24] = "-";
            if (m->physical_end >= 0) {
                snprintf(lend, sizeof lend, "%lld",
                         (long long)(m->logical_start + m->physical_end - m->physical_start));
                snprintf(pend, sizeof pend, "%lld", (long long)m->physical_end);
            }
            printf("      item %u: offsets [%lld, %s) -> store %u queue %u [%lld, %s)%s\n",
                   m->seq, (long long)m->logical_start, lend, m->store_id, m->physical_id,
                   (long long)m->physical_start, pend, m->physical_end < 0 ? " open" : "");
        }
    }
    rn_client_topic_desc_free(&d);
    return rn_cli_close_client(c, code);
}

int rn_cli_topic(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_QUEUES, OPT_REPLICAS };
    static const struct option opts[] = {
        {"queues", required_argument, NULL, OPT_QUEUES},
        {"replicas", required_argument, NULL, OPT_REPLICAS},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[RN_ERRMSG_SIZE];
    uint64_t queues = 1, replicas = 0;
    int queues_given = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QUEUES:
            if (rn_cli_parse_u64("--queues", optarg, 1, RN_META_MAX_QUEUES, &queues, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            queues_given = 1;
            break;
        case OPT_REPLICAS:
            if (rn_cli_parse_u64("--replicas", optarg, 1, 16, &replicas, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            break;
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(topic_usage, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option("topic", argv, c);
        }
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (npos < 1)
        return rn_cli_fail(RN_CLI_USAGE, "topic: give create, alter, delete, list or describe (see runnel "
                           "topic --help)");
    const char *sub = pos[0];
    if (!strcmp(sub, "create")) {
        if (npos != 2)
            return rn_cli_fail(RN_CLI_USAGE, "topic create takes one NAME (see runnel topic --help)");
        return topic_create(cli, pos[1], (uint32_t)queues, (uint32_t)replicas);
    }
    if (!strcmp(sub, "alter")) {
        if (npos != 2)
            return rn_cli_fail(RN_CLI_USAGE, "topic alter takes one NAME (see runnel topic --help)");
        if (!queues_given)
            return rn_cli_fail(RN_CLI_USAGE, "topic alter needs --queues M");
        return topic_alter(cli, pos[1], (uint32_t)queues);
    }
    if (queues_given)
        return rn_cli_fail(RN_CLI_USAGE, "--queues applies to topic create and alter only");
    if (!strcmp(sub, "delete")) {
        if (npos != 2)
            return rn_cli_fail(RN_CLI_USAGE, "topic delete takes one NAME (see runnel topic --help)");
        return topic_delete(cli, pos[1]);
    }
    if (!strcmp(sub, "list")) {
        if (npos != 1) return rn_cli_fail(RN_CLI_USAGE, "topic list takes no arguments");
        return topic_list(cli);
    }
    if (!strcmp(sub, "describe")) {
        if (npos != 2)
            return rn_cli_fail(RN_CLI_USAGE, "topic describe takes one NAME (see runnel topic --help)");
        return topic_describe(cli, pos[1]);
    }
    return rn_cli_fail(RN_CLI_USAGE, "topic: unknown subcommand '%.40s'; use create, alter, "
                       "delete, list or describe", sub);
}

/*
 * runnel_consume.c — `runnel consume TOPIC`: print the records of one or
 * every logical queue of a topic from a start position to the current end
 * (or --count), or with --follow on and on as they arrive, optionally as a
 * consumer group, through the client's consumer (client/runnel.h: embedded,
 * logical-queues/consumer.h; remote, Fetch over gRPC — one code path here
 * for both).
 *
 * States (with --follow): READING (a poll returned a batch: print and flush
 * it, commit when due, poll again at once) → IDLE (a poll found nothing now:
 * commit when due, then long-poll up to FOLLOW_WAIT_MS) → READING when
 * records arrive; any state → STOPPING on SIGINT/SIGTERM (seen after the
 * current poll) or when --count is reached: flush, commit, exit 0.
 *
 * Invariants:
 *  1. Bounded: each queue's end is its high watermark taken when the run
 *     starts; records appended later are not waited for. With --follow
 *     there is no end: records are printed as they become visible (remote:
 *     Fetch long-polls at the high watermark, so a record shows up as soon
 *     as the broker acknowledges it), and stdout is flushed after every
 *     batch, so nothing printed sits in the buffer while waiting.
 *     --follow needs --server: a data directory admits one process, so
 *     while this one held it no other could append.
 *  2. Every batch read is checked (header and CRC-32C) before its records
 *     are printed; a bad one stops the run with an error naming its offset.
 *  3. Each queue starts at exactly its start offset: --from checkpoint:NAME
 *     (the checkpoint's offset; queues it lacks: the log start), else with
 *     --group the group's committed offset, else --from (default earliest).
 *     A stored offset outside the queue's range is an error naming it.
 *  4. Output goes through one large stdio buffer with unlocked writes; one
 *     line per record. --format value prints the value bytes as stored (a
 *     null value prints as an empty line); --format json prints
 *     {"queue":Q,"offset":O,"timestamp":T,"key":K,"value":V}, lossless: K
 *     and V are JSON strings when the bytes are valid UTF-8 (escaped per RFC
 *     8259, controls as \u00XX), null when absent, and otherwise the member
 *     is named "key_b64" / "value_b64" and holds the bytes in base64 (so the
 *     byte 0xFF and the character U+00FF never print the same).
 *  5. The store is always closed cleanly: SIGPIPE is ignored, and a closed
 *     output (EPIPE) stops the run silently with exit status 141 (128 +
 *     SIGPIPE, what the shell would have seen), never an unclean store.
 *  6. Without --queue, queues are read round-robin one batch at a time in
 *     queue order (rn_consumer_poll), so a run is deterministic for given
 *     data and start offsets, and replaying a checkpoint twice prints the
 *     same sequence.
 *  7. With --group, offsets (next to read = the last printed record + 1 per
 *     queue) are committed after stdout was flushed: every --commit-ms
 *     (default 200) while reading and once at the end, in one transaction
 *     for all queues. So a crash re-delivers at most the records since the
 *     last commit (at-least-once); a command that fails before reading
 *     commits nothing. With --follow, also whenever the queues run dry (at
 *     most every --commit-ms), and on SIGINT/SIGTERM after the last printed
 *     record was flushed: the committed offsets are exactly what was printed.
 *  8. Signals: under --follow, SIGINT and SIGTERM only set a flag (SA_RESTART,
 *     so a write in progress completes and no printed record is cut); the
 *     loop sees it within FOLLOW_WAIT_MS and stops as in invariant 7.
 */
#include "cli/runnel_cli.h"

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define OUT_BUFFER      (1u << 20)
#define FOLLOW_WAIT_MS  100        /* one idle long-poll; bounds how late a signal is seen */

static const char consume_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] consume TOPIC [options]\n"
    "\n"
    "Prints records from a start position to the current end, then exits (or, with\n"
    "--follow, goes on printing records as they arrive until Ctrl-C or SIGTERM).\n"
    "  --follow                   keep waiting for new records (tail -f); stop with Ctrl-C or\n"
    "                             SIGTERM (exit 0, after committing with --group) or --count;\n"
    "                             needs --server (a data directory admits one process)\n"
    "  --queue Q                  one logical queue; without it every queue, round-robin one\n"
    "                             batch at a time in queue order (deterministic)\n"
    "  --from POS                 earliest (default), latest, an OFFSET, @TIMESTAMP_MS (per\n"
    "                             queue the first record with timestamp >= TIMESTAMP_MS), or\n"
    "                             checkpoint:NAME (replay: every queue from the checkpoint;\n"
    "                             the checkpoint of --group G, else the only one named NAME)\n"
    "  --group G                  resume from G's committed offsets (queues without one start\n"
    "                             at --from) and commit progress as it goes and at the end\n"
    "  --commit-ms N              with --group, commit at most every N ms, 0..3600000\n"
    "                             (default 200; 0 = after every batch)\n"
    "  --count N                  stop after N records\n"
    "  --format value|json        value: the value bytes per line (default);\n"
    "                             json: {\"queue\",\"offset\",\"timestamp\",\"key\",\"value\"} per line,\n"
    "                             key/value as JSON strings when valid UTF-8, null when\n"
    "                             absent, else as \"key_b64\"/\"value_b64\": the bytes in base64\n"
    "  --skip-damaged             go past offsets a store recovery marked damaged or lost\n"
    "                             (their reads fail otherwise); says how many on stderr\n"
    "                             (--data only)\n";

static void put_i64(FILE *out, int64_t v)
{
    char buf[24];
    char *e = buf + sizeof buf, *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--p = '-';
    fwrite_unlocked(p, 1, (size_t)(e - p), out);
}

/* ,"name":"text" when valid UTF-8, ,"name_b64":"base64" otherwise, ,"name":null
 * when absent (len < 0): invariant 4. */
static void print_bytes(FILE *out, const char *name, const uint8_t *p, int32_t len)
{
    int text = len < 0 || rn_json_utf8_valid(p, (size_t)len);
    fputs_unlocked(",\"", out);
    fputs_unlocked(name, out);
    fputs_unlocked(text ? "\":" : "_b64\":", out);
    if (len < 0) fputs_unlocked("null", out);
    else if (text) rn_json_write_string(out, p, (size_t)len);
    else rn_json_write_base64(out, p, (size_t)len);
}

static void print_json(FILE *out, uint32_t queue, const rn_record_t *r)
{
    fputs_unlocked("{\"queue\":", out);
    put_i64(out, queue);
    fputs_unlocked(",\"offset\":", out);
    put_i64(out, r->offset);
    fputs_unlocked(",\"timestamp\":", out);
    put_i64(out, r->timestamp);
    print_bytes(out, "key", r->key, r->key_len);
    print_bytes(out, "value", r->value, r->value_len);
    fputs_unlocked("}\n", out);
}

typedef struct consume_args {
    const char       *topic;
    int64_t           queue;        /* -1: every queue */
    rn_group_target_t from;
    const char       *group;
    uint64_t          commit_ms;
    uint64_t          count;        /* UINT64_MAX: to the end */
    int               json;
    int               skip_damaged; /* go past damaged/lost offsets, counted on stderr */
    int               follow;       /* no end: wait for new records (invariant 1) */
} consume_args_t;

static volatile sig_atomic_t stop_signal;   /* invariant 8 */

static void on_stop_signal(int sig) { stop_signal = sig; }

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct cstate {
    rn_meta_offset_t *done;       /* per queue: next offset after what was printed */
    uint32_t         *queues;
    uint32_t          n;
} cstate_t;

/* Flush stdout, then commit what it now holds (invariant 7). Returns an
 * exit code; 128 + SIGPIPE when the reader went away (invariant 5). */
static int flush_out(void)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return errno == EPIPE ? 128 + SIGPIPE
                              : rn_cli_fail(RN_CLI_FAIL, "writing the output: %s", strerror(errno));
    return RN_CLI_OK;
}

static int flush_and_commit(rn_client_t *c, const consume_args_t *a, cstate_t *s)
{
    char err[RN_ERRMSG_SIZE] = "";
    int code = flush_out();
    if (code != RN_CLI_OK) return code;
    if (a->group && rn_client_group_commit(c, a->group, s->done, s->n, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "committing group '%s' offsets: %s", a->group, err);
    return RN_CLI_OK;
}

/* With --group: --commit-ms passed since the last commit. */
static int commit_due(const consume_args_t *a, uint64_t last_commit)
{
    return a->group && (rn_mono_ns() - last_commit) / 1000000 >= a->commit_ms;
}

/* Assign every queue of the run at its start offset and (unless --follow)
 * bound it at its current end. */
static int assign_all(rn_client_t *c, rn_client_consumer_t *k, const consume_args_t *a,
                      cstate_t *s)
{
    char err[RN_ERRMSG_SIZE] = "";
    int64_t *start = calloc(s->n, sizeof *start);
    if (!start) return rn_cli_fail(RN_CLI_FAIL, "out of memory");
    int code = RN_CLI_OK;
    if (rn_client_start_offsets(c, a->topic, s->queues, s->n, a->group, &a->from, start, err) != 0)
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
    for (uint32_t i = 0; i < s->n && code == RN_CLI_OK; i++) {
        int64_t log_start, end;
        int rc = rn_client_queue_range(c, a->topic, s->queues[i], &log_start, &end, err);
        if (rc == 0) rc = rn_client_consumer_assign(k, a->topic, s->queues[i], start[i], err);
        if (rc == 0 && !a->follow)
            rc = rn_client_consumer_set_end(k, a->topic, s->queues[i], end, err);
        if (rc != 0) { code = rn_cli_fail(RN_CLI_FAIL, "%s", err); break; }
        snprintf(s->done[i].topic, sizeof s->done[i].topic, "%s", a->topic);
        s->done[i].queue = s->queues[i];
        s->done[i].offset = start[i];
    }
    free(start);
    return code;
}

static int consume(rn_client_t *c, const consume_args_t *a)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_client_consumer_t *k = NULL;
    cstate_t s;
    memset(&s, 0, sizeof s);
    rn_meta_topic_t t;
    int code = RN_CLI_OK;
    if (rn_client_topic_get(c, a->topic, &t, err) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    if (a->queue >= 0 && (uint32_t)a->queue >= t.queues) {
        int64_t ls, hw;                   /* the error names the valid queues */
        if (rn_client_queue_range(c, a->topic, (uint32_t)a->queue, &ls, &hw, err) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
    }
    s.n = a->queue >= 0 ? 1 : t.queues;
    s.done = calloc(s.n, sizeof *s.done);
    s.queues = calloc(s.n, sizeof *s.queues);
    if (!s.done || !s.queues) { code = rn_cli_fail(RN_CLI_FAIL, "out of memory"); goto out; }
    for (uint32_t i = 0; i < s.n; i++) s.queues[i] = a->queue >= 0 ? (uint32_t)a->queue : i;
    rn_client_consumer_opts_t ko = {.skip_damaged = a->skip_damaged};
    if (rn_client_consumer_open(c, &ko, &k, err) != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
        goto out;
    }
    code = assign_all(c, k, a, &s);
    if (code != RN_CLI_OK) goto out;

    uint64_t left = a->count, last_commit = rn_mono_ns();
    rn_consumer_batch_t b;
    int rc = 0, idle = 0;
    int unflushed = 0, uncommitted = 0;  /* printed since the last flush, commit */
    while (left > 0 && !stop_signal) {
        /* READING polls once (one look); IDLE long-polls (invariant 1). */
        rc = rn_client_consumer_poll(k, &b, idle ? FOLLOW_WAIT_MS : 0, err);
        if (rc == 0 && a->follow) {
            /* IDLE: nothing printed sits in the buffer; commit when due. */
            if (uncommitted && commit_due(a, last_commit)) {
                code = flush_and_commit(c, a, &s);
                last_commit = rn_mono_ns();
                unflushed = uncommitted = 0;
            } else if (unflushed) {
                code = flush_out();
                unflushed = 0;
            }
            if (code != RN_CLI_OK) goto out;
            idle = 1;
            continue;
        }
        if (rc != 1) break;
        idle = 0;
        unflushed = uncommitted = 1;
        uint32_t qi = a->queue >= 0 ? 0 : b.queue;
        uint32_t j = 0;
        for (; j < b.count && left > 0; j++, left--) {
            const rn_record_t *r = &b.records[j];
            if (a->json) print_json(stdout, b.queue, r);
            else {
                if (r->value_len > 0) fwrite_unlocked(r->value, 1, (size_t)r->value_len, stdout);
                putc_unlocked('\n', stdout);
            }
        }
        s.done[qi].offset = b.records[j - 1].offset + 1;
        if (ferror(stdout)) break;
        if (commit_due(a, last_commit)) {
            code = flush_and_commit(c, a, &s);
            if (code != RN_CLI_OK) goto out;
            last_commit = rn_mono_ns();
            unflushed = uncommitted = 0;
        } else if (a->follow) {
            /* The batch goes out now: the next poll may wait for the long
             * polls of other queues before it says the queues ran dry. */
            code = flush_out();
            if (code != RN_CLI_OK) goto out;
            unflushed = 0;
        }
    }
    if (left > 0 && rc < 0 && !ferror(stdout)) {
        /* Commit what was printed before the damaged batch, then report it. */
        code = flush_and_commit(c, a, &s);
        if (code == RN_CLI_OK) code = rn_cli_fail(RN_CLI_FAIL, "%s", err);
        goto out;
    }
    code = flush_and_commit(c, a, &s);
out:
    if (k && a->skip_damaged) {
        uint64_t skipped, ranges;
        rn_client_consumer_skipped(k, &skipped, &ranges);
        if (skipped) {
            fflush(stdout);
            fprintf(stderr, "runnel: warning: skipped %llu damaged or lost offsets in %llu "
                    "ranges\n", (unsigned long long)skipped, (unsigned long long)ranges);
        }
    }
    rn_client_consumer_close(k);
    free(s.done);
    free(s.queues);
    return code;
}

int rn_cli_consume(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_QUEUE, OPT_FROM, OPT_COUNT, OPT_FORMAT, OPT_GROUP, OPT_COMMIT,
           OPT_SKIP, OPT_FOLLOW };
    static const struct option opts[] = {
        {"skip-damaged", no_argument, NULL, OPT_SKIP},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"from", required_argument, NULL, OPT_FROM},
        {"count", required_argument, NULL, OPT_COUNT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"group", required_argument, NULL, OPT_GROUP},
        {"commit-ms", required_argument, NULL, OPT_COMMIT},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[RN_ERRMSG_SIZE];
    consume_args_t a = {.queue = -1, .from = {.kind = RN_TARGET_EARLIEST}, .count = UINT64_MAX,
                        .commit_ms = 200};
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QUEUE:
            if (rn_cli_parse_u64("--queue", optarg, 0, RN_META_MAX_QUEUES - 1, &v, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            a.queue = (int64_t)v;
            break;
        case OPT_FROM:
            if (rn_group_parse_target(optarg, "--from", 1, &a.from, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            break;
        case OPT_GROUP:
            if (rn_meta_check_name("group", optarg, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            a.group = optarg;
            break;
        case OPT_COMMIT:
            if (rn_cli_parse_u64("--commit-ms", optarg, 0, 3600000, &a.commit_ms, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            break;
        case OPT_COUNT:
            if (rn_cli_parse_u64("--count", optarg, 1, INT64_MAX, &a.count, err) != 0)
                return rn_cli_fail(RN_CLI_USAGE, "%s", err);
            break;
        case OPT_FORMAT:
            if (!strcmp(optarg, "value")) a.json = 0;
            else if (!strcmp(optarg, "json")) a.json = 1;
            else return rn_cli_fail(RN_CLI_USAGE, "--format: '%.40s' is not value or json", optarg);
            break;
        case OPT_SKIP: a.skip_damaged = 1; break;
        case OPT_FOLLOW: a.follow = 1; break;
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(consume_usage, stdout); return RN_CLI_OK;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            return rn_cli_bad_option("consume", argv, c);
        }
    }
    if (argc - optind != 1)
        return rn_cli_fail(RN_CLI_USAGE, "consume takes one TOPIC (see runnel consume --help)");
    a.topic = argv[optind];
    if (a.follow && !rn_cli_remote(cli) && (cli->data || cli->data_env))
        return rn_cli_fail(RN_CLI_USAGE, "--follow needs --server HOST:PORT: a data directory "
                           "admits one process, so nothing could append while this one waited "
                           "(run runneld --data DIR and follow through it)");

    signal(SIGPIPE, SIG_IGN);        /* see invariant 5 */
    if (a.follow) catch_stop_signals();
    static char outbuf[OUT_BUFFER];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    rn_client_t *client;
    if (a.queue >= 0) {                              /* a cluster: open the queue's leader */
        cli->route_topic = a.topic;
        cli->route_queue = a.queue;
    }
    int code = rn_cli_open_client(cli, NULL, 0, &client);
    if (code != 0) return code;
    code = consume(client, &a);
    return rn_cli_close_client(client, code);
}

/*
 * runnel_produce.c — `runnel produce TOPIC`: one record per stdin line,
 * through the client library's producer (client/runnel.h), embedded or
 * remote alike.
 *
 * Flow: stdin is read in chunks; each complete line becomes a record handed
 * to rn_producer_send (--queue, a key hash, or round-robin per batch: the
 * producer's placement). The producer seals a queue's batch when it is full
 * or --linger-ms after its first record, on its own thread, so a line is
 * sent after the linger time even while stdin stays open; at EOF the
 * producer is flushed.
 *
 * Invariants:
 *  1. Nothing is reported as produced that is not acknowledged: the summary
 *     is printed only after rn_producer_flush returned 0 (every record
 *     delivered), and a failure reports how many records were stored: the
 *     records whose delivery succeeded (the producer's count of delivery
 *     outcomes, never of sends), and how many more have an unknown outcome
 *     (sent, no answer before the delivery timeout). With --server the
 *     producer rides out broker restarts (client/producer.c invariant 2), so
 *     a restart is not a failure.
 *  5. SIGINT or SIGTERM (embedded or remote) stops reading input; every line
 *     read is still delivered (flush), then one line says how many records
 *     were stored — lines 1..N of the input exactly — and the exit code is 1.
 *     The handler only writes to a pipe the input loop polls, so it works on
 *     whichever thread the signal lands; a second signal ends the process at
 *     once (SA_RESETHAND).
 *  2. Memory is bounded: the input buffer holds at most one batch limit plus
 *     one read chunk, and the producer at most its memory cap (send waits
 *     for room); a line longer than the batch limit is an error naming its
 *     number as soon as it is seen, after everything before it was
 *     produced and acknowledged.
 *  3. Record value = the line without its '\n' (an empty line is an empty
 *     value); with --key-tab the key is the text before the first tab and the
 *     value the rest; with --key-field the key is the field's string
 *     (unescaped) or number (as written), and the value is the whole line;
 *     with --key-field or --timestamp-field a line that is not one valid JSON
 *     object is refused with its number (common/json.h); so is a timestamp
 *     that --timestamp-format (streamsql's rn_sql_parse_time) cannot read.
 *  4. A key always maps to the same queue for a given queue count:
 *     rn_client_partition, murmur2(key) & 0x7fffffff mod N (seed 0x9747b28c).
 */
#include "cli/runnel_cli.h"

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK  (64u << 10)

static const char produce_usage[] =
    "usage: runnel [--data DIR | --server HOST:PORT] produce TOPIC [options] < lines\n"
    "\n"
    "One record per input line; prints a summary on stderr once every batch is acknowledged.\n"
    "  --queue Q              send every record to logical queue Q\n"
    "  --key-field F          key = the string or number member F of each JSON line\n"
    "  --key-tab              key = text before the first tab, value = the rest\n"
    "                         (with a key, the queue is a hash of it; else round-robin per batch)\n"
    "  --timestamp-field F    record timestamp = integer member F (ms) of each JSON line\n"
    "                         (default: the time the line was read)\n"
    "  --timestamp-format FMT with --timestamp-field: the member is a string, iso8601 (RFC 3339:\n"
    "                         2024-05-01T12:00:00.5+02:00; UTC without an offset) or a\n"
    "                         strptime pattern ('%d/%m/%Y %H:%M:%S %z'; UTC unless %z)\n"
    "  --batch-bytes N        batch size limit, 128..16777216 (default 65536)\n"
    "  --linger-ms N          send a batch N ms after its first record, 0..60000 (default 5)\n"
    "  --compression C        none or lz4 (default none)\n"
    "  --delivery-timeout-ms N  with --server: a record not acknowledged N ms after it was\n"
    "                         read fails; until then runneld restarts are ridden out by\n"
    "                         resending (default 120000; 0: no limit)\n"
    "  --fsync MODE           always, group, interval:MS or never (default group); a data\n"
    "                         directory's policy: with --server, runneld's --fsync applies\n";

typedef struct producer {
    rn_producer_t  *p;
    const char     *topic;
    uint32_t        queue;            /* RN_PRODUCER_ANY_QUEUE: the producer places */
    uint32_t        batch_bytes;
    const char     *key_field;
    int             key_tab;
    const char     *ts_field;
    const char     *ts_format;     /* --timestamp-format: NULL, integer ms */
    rn_buf_t        keybuf, tsbuf;
    char            err[RN_ERRMSG_SIZE];
} producer_t;

/* Invariant 5: the signal pipe; -1 while no handler is installed. */
static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_caught;

static void on_signal(int sig)
{
    int saved = errno;
    sig_caught = sig;
    if (sig_pipe[1] >= 0 && write(sig_pipe[1], "", 1) < 0) { /* full: already told */ }
    errno = saved;
}

/* Flush; on a failure print it with how many records were stored
 * (invariant 1). */
static int flush(producer_t *p)
{
    if (rn_producer_flush(p->p, p->err) == 0) return 0;
    rn_producer_stats_t st;
    rn_producer_stats(p->p, &st);
    if (st.unknown > 0)
        return rn_cli_fail(RN_CLI_FAIL, "%s; %llu records were stored, and %llu more %s sent "
                           "without an answer (%s may be stored too)", p->err,
                           (unsigned long long)st.records, (unsigned long long)st.unknown,
                           st.unknown == 1 ? "was" : "were", st.unknown == 1 ? "it" : "they");
    return rn_cli_fail(RN_CLI_FAIL, "%s; %llu records were stored, no others", p->err,
                       (unsigned long long)st.records);
}

/* A line cannot be produced: produce everything before it (invariant 2),
 * then report it. */
static int line_error(producer_t *p, uint64_t line_no, const char *what)
{
    int code = flush(p);
    if (code != 0) return code;
    rn_producer_stats_t st;
    rn_producer_stats(p->p, &st);
    return rn_cli_fail(RN_CLI_FAIL, "line %llu: %s; the %llu records before it were produced",
                       (unsigned long long)line_no, what, (unsigned long long)st.records);
}

static int too_long(producer_t *p, uint64_t line_no, size_t len)
{
    char what[160];
    if (len > p->batch_bytes)
        snprintf(what, sizeof what, "longer than --batch-bytes %u (a record must fit in a batch)",
                 p->batch_bytes);
    else
        snprintf(what, sizeof what, "%zu bytes do not fit in a batch of --batch-bytes %u",
                 len, p->batch_bytes);
    return line_error(p, line_no, what);
}

static int add_line(producer_t *p, const char *line, size_t len, uint64_t line_no, int64_t now_ms)
{
    rn_record_t r;
    memset(&r, 0, sizeof r);
    r.timestamp = now_ms;
    r.key_len = -1;
    r.value = (const uint8_t *)line;
    r.value_len = (int32_t)len;
    char what[RN_ERRMSG_SIZE + 64];
    int is_num;

    if (p->key_tab) {
        const char *tab = memchr(line, '\t', len);
        if (!tab) return line_error(p, line_no, "no tab separates a key (--key-tab)");
        r.key = (const uint8_t *)line;
        r.key_len = (int32_t)(tab - line);
        r.value = (const uint8_t *)tab + 1;
        r.value_len = (int32_t)(len - (size_t)(tab - line) - 1);
    } else if (p->key_field) {
        if (rn_json_field(line, len, p->key_field, &p->keybuf, &is_num, p->err) != 0) {
            snprintf(what, sizeof what, "--key-field %s: %s", p->key_field, p->err);
            return line_error(p, line_no, what);
        }
        r.key = p->keybuf.len ? p->keybuf.data : (const uint8_t *)"";
        r.key_len = (int32_t)p->keybuf.len;
    }
    if (p->ts_field) {
        int64_t ts;
        int rc = rn_json_field(line, len, p->ts_field, &p->tsbuf, &is_num, p->err);
        if (rc == 0 && p->ts_format) {
            char why[RN_ERRMSG_SIZE];
            if (is_num)
                rc = rn_errf(p->err, RN_EINVAL, "a number, but --timestamp-format %s reads a "
                             "string", p->ts_format);
            else if (rn_sql_parse_time((const char *)p->tsbuf.data, p->tsbuf.len, p->ts_format,
                                       &ts, why) != 0)
                rc = rn_errf(p->err, RN_EINVAL, "cannot read '%.*s' as %s: %s",
                             (int)(p->tsbuf.len < 40 ? p->tsbuf.len : 40),
                             (const char *)p->tsbuf.data, p->ts_format, why);
            else if (ts < 0)
                rc = rn_errf(p->err, RN_EINVAL, "'%.*s' is before 1970 (record timestamps are "
                             "ms >= 0)", (int)(p->tsbuf.len < 40 ? p->tsbuf.len : 40),
                             (const char *)p->tsbuf.data);
        } else if (rc == 0 && (!is_num || rn_buf_append(&p->tsbuf, "", 1, 0) != 0 ||
                        rn_cli_parse_i64("value", (const char *)p->tsbuf.data, 0, INT64_MAX, &ts,
                                         p->err) != 0)) {
            rc = RN_EINVAL;
            snprintf(p->err, sizeof p->err, "not an integer number of milliseconds >= 0");
        }
        if (rc != 0) {
            snprintf(what, sizeof what, "--timestamp-field %s: %s", p->ts_field, p->err);
            return line_error(p, line_no, what);
        }
        r.timestamp = ts;
    }
    int rc = rn_producer_send(p->p, p->queue, &r, NULL, NULL, p->err);
    if (rc == RN_ETOOBIG) return too_long(p, line_no, len);
    if (rc != 0) {
        /* The producer failed earlier (a batch was not acknowledged). */
        int code = flush(p);
        return code ? code : rn_cli_fail(RN_CLI_FAIL, "line %llu: %s",
                                         (unsigned long long)line_no, p->err);
    }
    return 0;
}

/* Read stdin to EOF, turning lines into records. */
static int run(producer_t *p)
{
    rn_buf_t in = RN_BUF_INIT;
    size_t cap = (size_t)p->batch_bytes + READ_CHUNK;
    uint64_t line_no = 0;
    int eof = 0, code = 0;
    if (rn_buf_reserve(&in, cap, 0) != 0) return rn_cli_fail(RN_CLI_FAIL, "out of memory");
    while (!eof) {
        /* Invariant 5: a signal stops the input; what was read is delivered. */
        struct pollfd pf[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                               {.fd = sig_pipe[0], .events = POLLIN}};
        if (poll(pf, sig_pipe[0] >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) {
            code = rn_cli_fail(RN_CLI_FAIL, "waiting for stdin: %s", strerror(errno));
            goto out;
        }
        if (sig_caught) {
            if ((code = flush(p)) != 0) goto out;
            rn_producer_stats_t st;
            rn_producer_stats(p->p, &st);
            char lines[64] = "no input line was read";
            if (line_no > 0)
                snprintf(lines, sizeof lines, "lines 1..%llu of the input",
                         (unsigned long long)line_no);
            code = rn_cli_fail(RN_CLI_FAIL, "stopped by %s: %llu records were stored (%s)",
                               sig_caught == SIGINT ? "SIGINT" : "SIGTERM",
                               (unsigned long long)st.records, lines);
            goto out;
        }
        if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
        ssize_t n = read(STDIN_FILENO, in.data + in.len, cap - in.len);
        if (n < 0 && errno != EINTR && errno != EAGAIN) {
            code = rn_cli_fail(RN_CLI_FAIL, "reading stdin: %s", strerror(errno));
            goto out;
        }
        if (n == 0) eof = 1;
        if (n > 0) in.len += (size_t)n;
        int64_t now_ms = rn_sys.now_ms();
        size_t start = 0;
        for (;;) {
            const char *nl = memchr(in.data + start, '\n', in.len - start);
            if (!nl) break;
            size_t llen = (size_t)((const uint8_t *)nl - (in.data + start));
            if ((code = add_line(p, (const char *)in.data + start, llen, ++line_no, now_ms)) != 0)
                goto out;
            start += llen + 1;
        }
        size_t rest = in.len - start;
        if (eof && rest) {
            if ((code = add_line(p, (const char *)in.data + start, rest, ++line_no, now_ms)) != 0)
                goto out;
            rest = 0;
        }
        if (rest > p->batch_bytes) {
            code = too_long(p, line_no + 1, rest);
            goto out;
        }
        memmove(in.data, in.data + start, rest);
        in.len = rest;
    }
    code = flush(p);
out:
    rn_buf_free(&in);
    return code;
}

int rn_cli_produce(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_SERVER, OPT_QUEUE, OPT_KEY_FIELD, OPT_KEY_TAB, OPT_TS_FIELD,
           OPT_TS_FORMAT, OPT_BATCH_BYTES,
           OPT_LINGER, OPT_COMPRESSION, OPT_FSYNC, OPT_DELIVERY_TIMEOUT };
    static const struct option opts[] = {
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"key-field", required_argument, NULL, OPT_KEY_FIELD},
        {"key-tab", no_argument, NULL, OPT_KEY_TAB},
        {"timestamp-field", required_argument, NULL, OPT_TS_FIELD},
        {"timestamp-format", required_argument, NULL, OPT_TS_FORMAT},
        {"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
        {"linger-ms", required_argument, NULL, OPT_LINGER},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"delivery-timeout-ms", required_argument, NULL, OPT_DELIVERY_TIMEOUT},
        {"data", required_argument, NULL, OPT_DATA},
        {"server", required_argument, NULL, OPT_SERVER},
        RN_CLI_TLS_OPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    producer_t *p = calloc(1, sizeof *p);
    if (!p) return rn_cli_fail(RN_CLI_FAIL, "out of memory");
    rn_client_t *client = NULL;
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    p->queue = RN_PRODUCER_ANY_QUEUE;
    uint64_t linger_ms = 5, v;
    int c, code = RN_CLI_OK, fsync_given = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QUEUE:
            if (rn_cli_parse_u64("--queue", optarg, 0, RN_META_MAX_QUEUES - 1, &v, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            p->queue = (uint32_t)v;
            break;
        case OPT_KEY_FIELD: p->key_field = optarg; break;
        case OPT_KEY_TAB: p->key_tab = 1; break;
        case OPT_TS_FIELD: p->ts_field = optarg; break;
        case OPT_TS_FORMAT:
            if (rn_sql_check_time_format(optarg, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "--timestamp-format: %s", p->err); goto out; }
            p->ts_format = optarg;
            break;
        case OPT_BATCH_BYTES:
            if (rn_cli_parse_u64("--batch-bytes", optarg, 128, RN_BATCH_MAX_BYTES, &v, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            po.batch_bytes = (uint32_t)v;
            break;
        case OPT_LINGER:
            if (rn_cli_parse_u64("--linger-ms", optarg, 0, 60000, &linger_ms, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            break;
        case OPT_COMPRESSION:
            if (!strcmp(optarg, "none")) po.codec = RN_BATCH_CODEC_NONE;
            else if (!strcmp(optarg, "lz4")) po.codec = RN_BATCH_CODEC_LZ4;
            else { code = rn_cli_fail(RN_CLI_USAGE, "--compression: '%.40s' is not none or lz4",
                                      optarg); goto out; }
            break;
        case OPT_FSYNC:
            if (rn_fsync_parse(optarg, &lo, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "--fsync: %s", p->err); goto out; }
            fsync_given = 1;
            break;
        case OPT_DELIVERY_TIMEOUT:
            if (rn_cli_parse_u64("--delivery-timeout-ms", optarg, 0, UINT32_MAX, &v, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            po.delivery_timeout_ms = (uint32_t)v;
            break;
        case OPT_DATA: cli->data = optarg; break;
        case OPT_SERVER: cli->server = optarg; break;
        case 'h': fputs(produce_usage, stdout); goto out;
        default:
            if (rn_cli_tls_opt(cli, c, optarg)) break;
            code = rn_cli_bad_option("produce", argv, c); goto out;
        }
    }
    if (argc - optind != 1) {
        code = rn_cli_fail(RN_CLI_USAGE, "produce takes one TOPIC (see runnel produce --help)");
        goto out;
    }
    if (p->ts_format && !p->ts_field) {
        code = rn_cli_fail(RN_CLI_USAGE, "--timestamp-format reads the member named by "
                           "--timestamp-field; give both");
        goto out;
    }
    if (p->key_field && p->key_tab) {
        code = rn_cli_fail(RN_CLI_USAGE, "give one of --key-field and --key-tab");
        goto out;
    }
    if (fsync_given && rn_cli_remote(cli) && !cli->data) {   /* both: open reports it */
        code = rn_cli_fail(RN_CLI_USAGE, "--fsync sets a data directory's policy; with --server "
                           "the broker's applies (runneld --fsync)");
        goto out;
    }
    p->topic = argv[optind];
    p->batch_bytes = po.batch_bytes;
    po.linger_ms = (uint32_t)linger_ms;
    if (lo.max_batch_bytes < po.batch_bytes) lo.max_batch_bytes = po.batch_bytes;

    if (p->queue != RN_PRODUCER_ANY_QUEUE) {        /* a cluster: open the queue's leader */
        cli->route_topic = p->topic;
        cli->route_queue = p->queue;
    }
    code = rn_cli_open_client(cli, &lo, 0, &client);
    if (code != 0) goto out;
    if (p->queue != RN_PRODUCER_ANY_QUEUE) {
        /* Check now so a bad --queue fails (naming the valid ones) before
         * any input is read. */
        int64_t ls, hw;
        if (rn_client_queue_range(client, p->topic, p->queue, &ls, &hw, p->err) != 0) {
            code = rn_cli_fail(RN_CLI_FAIL, "%s", p->err);
            goto out;
        }
    }
    if (rn_producer_open(client, p->topic, &po, &p->p, p->err) != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", p->err);
        goto out;
    }
    uint64_t t0 = rn_mono_ns();
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;          /* invariant 5: a second signal ends it */
    sigemptyset(&sa.sa_mask);
    sig_caught = 0;
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    code = run(p);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    close(sig_pipe[0]);
    close(sig_pipe[1]);
    sig_pipe[0] = sig_pipe[1] = -1;
    if (code == 0) {
        double secs = (double)(rn_mono_ns() - t0) / 1e9;
        if (secs <= 0) secs = 1e-9;
        rn_producer_stats_t st;
        rn_producer_stats(p->p, &st);
        char resent[128] = "";
        if (st.retries > 0)
            snprintf(resent, sizeof resent, " (%llu requests resent after transport failures, "
                     "%llu batches found already stored)", (unsigned long long)st.retries,
                     (unsigned long long)st.duplicates);
        fprintf(stderr, "produced %llu records in %llu batches (%llu bytes) to topic '%s' in "
                "%.3f s: %.0f records/s, %.1f MB/s%s\n", (unsigned long long)st.records,
                (unsigned long long)st.batches, (unsigned long long)st.bytes, p->topic, secs,
                (double)st.records / secs, (double)st.bytes / secs / 1e6, resent);
    }
out:
    if (p->p && rn_producer_close(p->p, p->err) != 0 && code == RN_CLI_OK)
        code = rn_cli_fail(RN_CLI_FAIL, "%s", p->err);
    rn_buf_free(&p->keybuf);
    rn_buf_free(&p->tsbuf);
    if (client) code = rn_cli_close_client(client, code);
    free(p);
    return code;
}

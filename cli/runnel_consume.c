/*
 * runnel_consume.c — `runnel consume TOPIC`: print the records of one
 * logical queue from a start position to the current end (or --count).
 *
 * Invariants:
 *  1. Bounded: the end is the high watermark taken when the run starts;
 *     records appended later are not waited for (following comes later).
 *  2. Every batch read is checked (header and CRC-32C) before its records
 *     are printed; a bad one stops the run with an error naming its offset.
 *  3. Records before the start offset inside the first batch are skipped, so
 *     the first printed record is exactly the requested one.
 *  4. Output goes through one large stdio buffer with unlocked writes; one
 *     line per record. --format value prints the value bytes as stored (a
 *     null value prints as an empty line); --format json prints
 *     {"queue":Q,"offset":O,"timestamp":T,"key":K,"value":V} with K and V
 *     JSON strings (rn_json_write_string: invalid UTF-8 bytes as \u00XX) or
 *     null when absent.
 *  5. The store is always closed cleanly: SIGPIPE is ignored, and a closed
 *     output (EPIPE) stops the run silently with exit status 141 (128 +
 *     SIGPIPE, what the shell would have seen), never an unclean store.
 */
#include "cli/runnel_cli.h"

#include "batch/batch.h"
#include "common/error.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define READ_BYTES   (1u << 20)
#define OUT_BUFFER   (1u << 20)

static const char consume_usage[] =
    "usage: runnel [--data DIR] consume TOPIC [options]\n"
    "\n"
    "Prints the records of one queue from a start position to the current end, then exits.\n"
    "  --queue Q                  logical queue (may be omitted when the topic has one)\n"
    "  --from POS                 earliest (default), latest, an OFFSET, or @TIMESTAMP_MS\n"
    "                             (the first record with timestamp >= TIMESTAMP_MS)\n"
    "  --count N                  stop after N records\n"
    "  --format value|json        value: the value bytes per line (default);\n"
    "                             json: {\"queue\",\"offset\",\"timestamp\",\"key\",\"value\"} per line,\n"
    "                             key/value as JSON strings (bytes that are not UTF-8 as\n"
    "                             \\u00XX) or null\n";

static void put_i64(FILE *out, int64_t v)
{
    char buf[24];
    char *e = buf + sizeof buf, *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *--p = '-';
    fwrite_unlocked(p, 1, (size_t)(e - p), out);
}

static void print_json(FILE *out, uint32_t queue, const rn_record_t *r)
{
    fputs_unlocked("{\"queue\":", out);
    put_i64(out, queue);
    fputs_unlocked(",\"offset\":", out);
    put_i64(out, r->offset);
    fputs_unlocked(",\"timestamp\":", out);
    put_i64(out, r->timestamp);
    fputs_unlocked(",\"key\":", out);
    if (r->key_len < 0) fputs_unlocked("null", out);
    else rn_json_write_string(out, r->key, (size_t)r->key_len);
    fputs_unlocked(",\"value\":", out);
    if (r->value_len < 0) fputs_unlocked("null", out);
    else rn_json_write_string(out, r->value, (size_t)r->value_len);
    fputs_unlocked("}\n", out);
}

typedef struct consume_args {
    const char   *topic;
    int64_t       queue;        /* -1: the topic's only queue */
    rn_cli_from_t from;
    uint64_t      count;        /* UINT64_MAX: to the end */
    int           json;
} consume_args_t;

static int consume(rn_datadir_t *d, const consume_args_t *a)
{
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t q;
    rn_buf_t buf = RN_BUF_INIT;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int code = rn_cli_open_queue(d, a->topic, a->queue, &q);
    if (code != 0) goto out_iter;

    int64_t offset;
    rn_datadir_queue_info_t info;
    int rc = rn_cli_resolve_from(d, &q, &a->from, &offset, err);
    if (rc == 0) rc = rn_datadir_queue_info(d, &q, &info, err);
    if (rc != 0) { code = rn_cli_fail(RN_CLI_FAIL, "%s", err); goto out; }

    uint64_t left = a->count;
    const int64_t end = info.high_watermark;
    while (left > 0 && offset < end) {
        uint32_t nb = 0;
        buf.len = 0;
        rc = rn_datadir_read(d, &q, offset, READ_BYTES, &buf, &nb, err);
        if (rc != 0) { code = rn_cli_fail(RN_CLI_FAIL, "%s", err); goto out; }
        if (nb == 0) break;
        size_t pos = 0;
        for (uint32_t i = 0; i < nb && left > 0; i++) {
            size_t sz;
            rn_batch_header_t h;
            if (rn_batch_size(buf.data + pos, buf.len - pos, &sz) != 0 || sz > buf.len - pos ||
                (rc = rn_batch_validate(buf.data + pos, sz, &rn_batch_default_limits, 0, &h,
                                        err)) != 0 ||
                (rc = rn_batch_iter_reset(&it, buf.data + pos, sz, err)) != 0) {
                code = rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u: the batch read at offset "
                                   "%lld is damaged: %s", a->topic, q.queue, (long long)offset,
                                   err[0] ? err : "bad size");
                goto out;
            }
            rn_record_t r;
            while (left > 0 && (rc = rn_batch_iter_next(&it, &r, err)) == 1) {
                if (r.offset < offset) continue;        /* invariant 3 */
                if (r.offset >= end) { left = 0; break; }
                if (a->json) print_json(stdout, q.queue, &r);
                else {
                    if (r.value_len > 0) fwrite_unlocked(r.value, 1, (size_t)r.value_len, stdout);
                    putc_unlocked('\n', stdout);
                }
                left--;
            }
            if (rc < 0) {
                code = rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u: a record of the batch at "
                                   "offset %lld is damaged: %s", a->topic, q.queue,
                                   (long long)h.base_offset, err);
                goto out;
            }
            int64_t next = h.base_offset + (int64_t)h.last_offset_delta + 1;
            if (next > offset) offset = next;
            pos += sz;
        }
        if (ferror(stdout)) break;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        /* A reader that went away (| head) ends the run quietly, with the
         * status a SIGPIPE death would give, after a clean close (invariant 5). */
        code = errno == EPIPE ? 128 + SIGPIPE
                              : rn_cli_fail(RN_CLI_FAIL, "writing the output: %s", strerror(errno));
    }
out:
    rn_datadir_queue_close(&q);
out_iter:
    rn_batch_iter_destroy(&it);
    rn_buf_free(&buf);
    return code;
}

int rn_cli_consume(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_QUEUE, OPT_FROM, OPT_COUNT, OPT_FORMAT };
    static const struct option opts[] = {
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"from", required_argument, NULL, OPT_FROM},
        {"count", required_argument, NULL, OPT_COUNT},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"data", required_argument, NULL, OPT_DATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char err[RN_ERRMSG_SIZE];
    consume_args_t a = {.queue = -1, .from = {RN_FROM_EARLIEST, 0}, .count = UINT64_MAX};
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
            if (rn_cli_parse_from(optarg, &a.from, err) != 0)
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
        case OPT_DATA: cli->data = optarg; break;
        case 'h': fputs(consume_usage, stdout); return RN_CLI_OK;
        default: return rn_cli_bad_option("consume", argv, c);
        }
    }
    if (argc - optind != 1)
        return rn_cli_fail(RN_CLI_USAGE, "consume takes one TOPIC (see runnel consume --help)");
    a.topic = argv[optind];

    signal(SIGPIPE, SIG_IGN);        /* see invariant 5 */
    static char outbuf[OUT_BUFFER];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    rn_datadir_t *d;
    int code = rn_cli_open_datadir(cli, NULL, 0, &d);
    if (code != 0) return code;
    code = consume(d, &a);
    return rn_cli_close_datadir(d, code);
}

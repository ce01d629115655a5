/*
 * runnel_produce.c — `runnel produce TOPIC`: one record per stdin line.
 *
 * Flow: stdin is read in chunks under poll(); each complete line becomes a
 * record in the batch builder of its queue (--queue, a key hash, or
 * round-robin per batch). A builder's batch is appended when it is full or
 * --linger-ms after its first record, whichever comes first; at EOF every
 * builder is flushed. Appends are pipelined: up to WINDOW tickets are in
 * flight, the oldest is waited for when the window is full, and all of them
 * when stdin goes idle and at the end.
 *
 * Invariants:
 *  1. Nothing is reported as produced that is not acknowledged: the summary
 *     is printed only after rn_datadir_wait returned 0 for every append, and a
 *     failure reports how many records had been acknowledged before it.
 *  2. Memory is bounded: the input buffer holds at most one batch limit plus
 *     one read chunk; a line longer than the batch limit is an error naming
 *     its number as soon as it is seen, after everything before it was
 *     appended and acknowledged. Builders of topics with many queues are
 *     freed after each batch, so only queues with pending records hold
 *     batch memory.
 *  3. Record value = the line without its '\n' (an empty line is an empty
 *     value); with --key-tab the key is the text before the first tab and the
 *     value the rest; with --key-field the key is the field's string
 *     (unescaped) or number (as written), and the value is the whole line.
 *  4. A key always maps to the same queue for a given queue count:
 *     murmur2(key) & 0x7fffffff mod N (seed 0x9747b28c).
 */
#include "cli/runnel_cli.h"

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WINDOW      128                 /* appends in flight */
#define READ_CHUNK  (64u << 10)
#define KEEP_BUILDERS 16                /* topics with more queues free a builder after each batch */

static const char produce_usage[] =
    "usage: runnel [--data DIR] produce TOPIC [options] < lines\n"
    "\n"
    "One record per input line; prints a summary on stderr once every batch is acknowledged.\n"
    "  --queue Q              send every record to logical queue Q\n"
    "  --key-field F          key = the string or number member F of each JSON line\n"
    "  --key-tab              key = text before the first tab, value = the rest\n"
    "                         (with a key, the queue is a hash of it; else round-robin per batch)\n"
    "  --timestamp-field F    record timestamp = integer member F (ms) of each JSON line\n"
    "                         (default: the time the line was read)\n"
    "  --batch-bytes N        batch size limit, 128..16777216 (default 65536)\n"
    "  --linger-ms N          send a batch N ms after its first record, 0..60000 (default 5)\n"
    "  --compression C        none or lz4 (default none)\n"
    "  --fsync MODE           always, group, interval:MS or never (default group)\n";

typedef struct pqueue {
    rn_datadir_queue_t q;
    int                opened;
    rn_batch_builder_t b;
    int                building;     /* b initialised */
    uint64_t           deadline_ns;  /* when b holds records */
    size_t             pending_at;   /* index in producer.pending when it holds records */
} pqueue_t;

typedef struct inflight {
    uint64_t ticket;
    uint32_t queue;
    uint32_t records;
} inflight_t;

typedef struct producer {
    rn_datadir_t   *d;
    const char     *topic;
    uint32_t        nqueues;
    pqueue_t       *qs;
    uint32_t       *pending;          /* queues whose builder holds records */
    size_t          npending;
    inflight_t      win[WINDOW];
    size_t          win_head, win_len;
    rn_batch_opts_t bopts;
    uint64_t        linger_ns;
    int64_t         fixed_queue;      /* -1: choose per record */
    const char     *key_field;
    int             key_tab;
    const char     *ts_field;
    uint32_t        rr;
    rn_buf_t        keybuf, tsbuf;
    uint64_t        records, batches, bytes, acked;
    char            err[RN_ERRMSG_SIZE];
} producer_t;

/* MurmurHash2, 32-bit (Austin Appleby's algorithm, public domain). */
static uint32_t murmur2(const uint8_t *p, size_t n)
{
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)n;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t k = (uint32_t)p[i] | (uint32_t)p[i + 1] << 8 | (uint32_t)p[i + 2] << 16 |
                     (uint32_t)p[i + 3] << 24;
        k *= m; k ^= k >> 24; k *= m;
        h *= m; h ^= k;
    }
    switch (n & 3) {
    case 3: h ^= (uint32_t)p[i + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[i + 1] << 8;  /* fall through */
    case 1: h ^= p[i]; h *= m;
    }
    h ^= h >> 13; h *= m; h ^= h >> 15;
    return h;
}

static int queue_handle(producer_t *p, uint32_t qi, pqueue_t **out)
{
    pqueue_t *pq = &p->qs[qi];
    if (!pq->opened) {
        int code = rn_cli_open_queue(p->d, p->topic, qi, &pq->q);
        if (code != 0) return code;
        pq->opened = 1;
    }
    if (!pq->building) {
        if (rn_batch_builder_init(&pq->b, &p->bopts) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "cannot set up a batch builder");
        pq->building = 1;
    }
    *out = pq;
    return 0;
}

static int wait_oldest(producer_t *p)
{
    inflight_t *f = &p->win[p->win_head];
    int rc = rn_datadir_wait(p->d, f->ticket);
    if (rc != 0)
        return rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u: a batch was not acknowledged (%s); "
                           "%llu records were acknowledged before it", p->topic, f->queue,
                           rn_strerror(rc), (unsigned long long)p->acked);
    p->acked += f->records;
    p->win_head = (p->win_head + 1) % WINDOW;
    p->win_len--;
    return 0;
}

static int drain(producer_t *p)
{
    while (p->win_len) {
        int code = wait_oldest(p);
        if (code != 0) return code;
    }
    return 0;
}

static void pending_remove(producer_t *p, uint32_t qi)
{
    size_t at = p->qs[qi].pending_at;
    uint32_t last = p->pending[--p->npending];
    p->pending[at] = last;
    p->qs[last].pending_at = at;
}

/* Append queue qi's batch; it must hold records. */
static int send_batch(producer_t *p, uint32_t qi)
{
    pqueue_t *pq = &p->qs[qi];
    const uint8_t *batch;
    size_t len;
    uint32_t count = rn_batch_builder_count(&pq->b);
    int rc = rn_batch_builder_finish(&pq->b, &batch, &len);
    if (rc != 0)
        return rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u: building a batch failed: %s",
                           p->topic, qi, rn_strerror(rc));
    if (p->win_len == WINDOW) {
        int code = wait_oldest(p);
        if (code != 0) return code;
    }
    int64_t base;
    uint64_t ticket;
    rc = rn_datadir_append(p->d, &pq->q, batch, len, &base, &ticket, p->err);
    if (rc != 0)
        return rn_cli_fail(RN_CLI_FAIL, "topic '%s' queue %u: append failed: %s; %llu records "
                           "were acknowledged before it", p->topic, qi, p->err,
                           (unsigned long long)p->acked);
    inflight_t *f = &p->win[(p->win_head + p->win_len) % WINDOW];
    f->ticket = ticket;
    f->queue = qi;
    f->records = count;
    p->win_len++;
    p->records += count;
    p->batches++;
    p->bytes += len;
    if (p->nqueues > KEEP_BUILDERS) {
        /* Invariant 2: with many queues, idle builders keep no memory. */
        rn_batch_builder_destroy(&pq->b);
        pq->building = 0;
    } else {
        rn_batch_builder_reset(&pq->b);
    }
    pending_remove(p, qi);
    if (p->fixed_queue < 0 && !p->key_field && !p->key_tab && qi == p->rr)
        p->rr = (p->rr + 1) % p->nqueues;
    return 0;
}

static int flush_due(producer_t *p, int all)
{
    uint64_t now = rn_mono_ns();
    for (size_t i = p->npending; i-- > 0;) {
        uint32_t qi = p->pending[i];
        if (all || p->qs[qi].deadline_ns <= now) {
            int code = send_batch(p, qi);
            if (code != 0) return code;
        }
    }
    return 0;
}

/* A line cannot be produced: produce everything before it (invariant 2),
 * then report it. */
static int line_error(producer_t *p, uint64_t line_no, const char *what)
{
    int code = flush_due(p, 1);
    if (code == 0) code = drain(p);
    if (code != 0) return code;
    return rn_cli_fail(RN_CLI_FAIL, "line %llu: %s; the %llu records before it were produced",
                       (unsigned long long)line_no, what, (unsigned long long)p->acked);
}

static int too_long(producer_t *p, uint64_t line_no, size_t len)
{
    char what[160];
    if (len > p->bopts.max_bytes)
        snprintf(what, sizeof what, "longer than --batch-bytes %u (a record must fit in a batch)",
                 p->bopts.max_bytes);
    else
        snprintf(what, sizeof what, "%zu bytes do not fit in a batch of --batch-bytes %u",
                 len, p->bopts.max_bytes);
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
        if (rc == 0 && (!is_num || rn_buf_append(&p->tsbuf, "", 1, 0) != 0 ||
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

    uint32_t qi;
    if (p->fixed_queue >= 0) qi = (uint32_t)p->fixed_queue;
    else if (r.key_len >= 0) qi = (murmur2(r.key, (size_t)r.key_len) & 0x7fffffffu) % p->nqueues;
    else qi = p->rr;

    pqueue_t *pq;
    int code = queue_handle(p, qi, &pq);
    if (code != 0) return code;
    int rc = rn_batch_builder_add(&pq->b, &r);
    if (rc == RN_EFULL) {
        code = send_batch(p, qi);
        if (code != 0) return code;
        if (p->fixed_queue < 0 && r.key_len < 0) qi = p->rr;   /* round-robin moved on */
        code = queue_handle(p, qi, &pq);
        if (code != 0) return code;
        rc = rn_batch_builder_add(&pq->b, &r);
    }
    if (rc == RN_ETOOBIG) return too_long(p, line_no, len);
    if (rc != 0)
        return rn_cli_fail(RN_CLI_FAIL, "line %llu: cannot add the record: %s",
                           (unsigned long long)line_no, rn_strerror(rc));
    if (rn_batch_builder_count(&pq->b) == 1) {
        pq->deadline_ns = rn_mono_ns() + p->linger_ns;
        pq->pending_at = p->npending;
        p->pending[p->npending++] = qi;
    }
    return 0;
}

/* Read stdin to EOF, turning lines into records. */
static int run(producer_t *p)
{
    rn_buf_t in = RN_BUF_INIT;
    size_t cap = (size_t)p->bopts.max_bytes + READ_CHUNK;
    uint64_t line_no = 0;
    int eof = 0, code = 0;
    if (rn_buf_reserve(&in, cap, 0) != 0) return rn_cli_fail(RN_CLI_FAIL, "out of memory");
    while (!eof) {
        int timeout = -1;
        if (p->npending) {
            uint64_t now = rn_mono_ns(), first = UINT64_MAX;
            for (size_t i = 0; i < p->npending; i++)
                if (p->qs[p->pending[i]].deadline_ns < first) first = p->qs[p->pending[i]].deadline_ns;
            timeout = first <= now ? 0 : (int)((first - now + 999999) / 1000000);
        } else if (p->win_len) {
            /* Idle with nothing to batch: acknowledge what was sent. */
            if ((code = drain(p)) != 0) goto out;
        }
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&pfd, 1, timeout);
        if (r < 0 && errno != EINTR) {
            code = rn_cli_fail(RN_CLI_FAIL, "poll on stdin: %s", strerror(errno));
            goto out;
        }
        if (r > 0) {
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
            if (rest > p->bopts.max_bytes) {
                code = too_long(p, line_no + 1, rest);
                goto out;
            }
            memmove(in.data, in.data + start, rest);
            in.len = rest;
        }
        if ((code = flush_due(p, eof)) != 0) goto out;
    }
    code = drain(p);
out:
    rn_buf_free(&in);
    return code;
}

int rn_cli_produce(rn_cli_t *cli, int argc, char **argv)
{
    enum { OPT_DATA = 0x100, OPT_QUEUE, OPT_KEY_FIELD, OPT_KEY_TAB, OPT_TS_FIELD, OPT_BATCH_BYTES,
           OPT_LINGER, OPT_COMPRESSION, OPT_FSYNC };
    static const struct option opts[] = {
        {"queue", required_argument, NULL, OPT_QUEUE},
        {"key-field", required_argument, NULL, OPT_KEY_FIELD},
        {"key-tab", no_argument, NULL, OPT_KEY_TAB},
        {"timestamp-field", required_argument, NULL, OPT_TS_FIELD},
        {"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
        {"linger-ms", required_argument, NULL, OPT_LINGER},
        {"compression", required_argument, NULL, OPT_COMPRESSION},
        {"fsync", required_argument, NULL, OPT_FSYNC},
        {"data", required_argument, NULL, OPT_DATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    producer_t *p = calloc(1, sizeof *p);
    if (!p) return rn_cli_fail(RN_CLI_FAIL, "out of memory");
    rn_log_opts_t lo;
    rn_log_opts_default(&lo);
    rn_batch_opts_default(&p->bopts);
    p->bopts.max_bytes = 64u << 10;
    p->fixed_queue = -1;
    uint64_t linger_ms = 5, v;
    int c, code = RN_CLI_OK;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_QUEUE:
            if (rn_cli_parse_u64("--queue", optarg, 0, RN_META_MAX_QUEUES - 1, &v, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            p->fixed_queue = (int64_t)v;
            break;
        case OPT_KEY_FIELD: p->key_field = optarg; break;
        case OPT_KEY_TAB: p->key_tab = 1; break;
        case OPT_TS_FIELD: p->ts_field = optarg; break;
        case OPT_BATCH_BYTES:
            if (rn_cli_parse_u64("--batch-bytes", optarg, 128, RN_BATCH_MAX_BYTES, &v, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            p->bopts.max_bytes = (uint32_t)v;
            break;
        case OPT_LINGER:
            if (rn_cli_parse_u64("--linger-ms", optarg, 0, 60000, &linger_ms, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "%s", p->err); goto out; }
            break;
        case OPT_COMPRESSION:
            if (!strcmp(optarg, "none")) p->bopts.codec = RN_BATCH_CODEC_NONE;
            else if (!strcmp(optarg, "lz4")) p->bopts.codec = RN_BATCH_CODEC_LZ4;
            else { code = rn_cli_fail(RN_CLI_USAGE, "--compression: '%.40s' is not none or lz4",
                                      optarg); goto out; }
            break;
        case OPT_FSYNC:
            if (rn_fsync_parse(optarg, &lo, p->err) != 0)
                { code = rn_cli_fail(RN_CLI_USAGE, "--fsync: %s", p->err); goto out; }
            break;
        case OPT_DATA: cli->data = optarg; break;
        case 'h': fputs(produce_usage, stdout); goto out;
        default: code = rn_cli_bad_option("produce", argv, c); goto out;
        }
    }
    if (argc - optind != 1) {
        code = rn_cli_fail(RN_CLI_USAGE, "produce takes one TOPIC (see runnel produce --help)");
        goto out;
    }
    if (p->key_field && p->key_tab) {
        code = rn_cli_fail(RN_CLI_USAGE, "give one of --key-field and --key-tab");
        goto out;
    }
    p->topic = argv[optind];
    p->linger_ns = linger_ms * 1000000u;
    if (lo.max_batch_bytes < p->bopts.max_bytes) lo.max_batch_bytes = p->bopts.max_bytes;

    code = rn_cli_open_datadir(cli, &lo, 0, &p->d);
    if (code != 0) goto out;
    rn_meta_topic_t t;
    if (rn_meta_topic_get(rn_datadir_meta(p->d), p->topic, &t, p->err) != 0) {
        code = rn_cli_fail(RN_CLI_FAIL, "%s", p->err);
        goto out;
    }
    p->nqueues = t.queues;
    p->qs = calloc(p->nqueues, sizeof *p->qs);
    p->pending = calloc(p->nqueues, sizeof *p->pending);
    if (!p->qs || !p->pending) { code = rn_cli_fail(RN_CLI_FAIL, "out of memory"); goto out; }
    if (p->fixed_queue >= 0) {
        /* Resolve now so a bad --queue fails (naming the valid ones) before
         * any input is read. */
        rn_datadir_queue_t check;
        code = rn_cli_open_queue(p->d, p->topic, p->fixed_queue, &check);
        rn_datadir_queue_close(&check);
        if (code != 0) goto out;
    }
    uint64_t t0 = rn_mono_ns();
    code = run(p);
    if (code == 0) {
        double secs = (double)(rn_mono_ns() - t0) / 1e9;
        if (secs <= 0) secs = 1e-9;
        fprintf(stderr, "produced %llu records in %llu batches (%llu bytes) to topic '%s' in "
                "%.3f s: %.0f records/s, %.1f MB/s\n", (unsigned long long)p->acked,
                (unsigned long long)p->batches, (unsigned long long)p->bytes, p->topic, secs,
                (double)p->acked / secs, (double)p->bytes / secs / 1e6);
    }
out:
    if (p->qs) {
        for (uint32_t i = 0; i < p->nqueues; i++) {
            if (p->qs[i].building) rn_batch_builder_destroy(&p->qs[i].b);
            if (p->qs[i].opened) rn_datadir_queue_close(&p->qs[i].q);
        }
    }
    free(p->qs);
    free(p->pending);
    rn_buf_free(&p->keybuf);
    rn_buf_free(&p->tsbuf);
    if (p->d) code = rn_cli_close_datadir(p->d, code);
    free(p);
    return code;
}

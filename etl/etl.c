/*
 * etl.c — ETL pipelines (see etl.h): a stored INSERT INTO sink SELECT ...
 * run by the stream-SQL engine, with checkpoints in meta.db and an order
 * journal that make the output to a topic or file sink exactly-once across
 * kill -9 and failed runs, however the source queues interleave.
 *
 * Exactly-once (topic sinks, the dead-letter topic, the file sink):
 *   A checkpoint is ONE UPDATE of the pipeline's row in meta.db (one SQLite
 *   transaction) holding {a sequence number ckseq; the query's state: next
 *   source offset per queue, event-time frontier, watermark, window state,
 *   counters (rn_sql_state_save); per sink queue and per dead-letter queue
 *   the number of records the pipeline had produced into it (its "sink
 *   position"); the file sink's byte length}. It is written only after every
 *   sink batch up to it was appended and acknowledged (rn_datadir_wait).
 *   The first open of a pipeline checkpoints before writing anything (the
 *   start positions and the sinks' ends then), so there is always one.
 *
 *   What a run computes is a function of the checkpointed state and of the
 *   sequence of source batches it reads: rows of a plain query go to sink
 *   queue (source queue mod sink queues) as their batch is read; an
 *   aggregating query's rows (and a stream-stream join's pairs, whose two
 *   streams' queues are numbered as one source: rn_sql_source) go to the
 *   queue their JSON bytes hash to, as
 *   the frontier over the queues closes windows, in (window start, end, key
 *   bytes) order (rn_sql_opts_t.key_order). The sequence is not fixed: the
 *   consumer serves the queues round-robin among those that have data, so it
 *   depends on when batches arrived. Hence the ORDER JOURNAL
 *   (DIR/pipelines/NAME.order, format below): every source batch read since
 *   the checkpoint is logged as (queue, from, to), and the entries are
 *   written and fdatasync'ed before any sink, dead-letter or file write
 *   that follows them (journal_sync). On open, the query restarts from the
 *   checkpointed state and first reads exactly the journaled batches, in
 *   their order (rn_sql_prefer_queue; each batch is checked against its
 *   entry): it recomputes exactly what the crashed run computed up to its
 *   last write, so the records that run appended after the checkpoint are
 *   the first (written end - sink position) records the restart recomputes
 *   for each queue: those are counted and skipped, not written again; the
 *   rest is appended. A batch append is atomic (the log truncates a torn
 *   batch at recovery), so the difference is an exact record count. After
 *   the replay the run reads whatever has arrived, as an uninterrupted run
 *   would. So the sinks hold exactly the output of ONE uninterrupted run:
 *   the one that read the source batches in the order the runs' journals
 *   and checkpoints fixed.
 *
 * Invariants:
 *  1. A sink position only moves forward and never exceeds the sink
 *     queue's written end; an end below the checkpointed position (the
 *     sink was deleted or recreated) is refused at open. The ends are read
 *     after syncing the sink's stores, so appends a failed run in this
 *     process never waited for are counted.
 *  2. Nothing is checkpointed before it is durable in the sink: builders
 *     are flushed, appends acknowledged and the file fdatasync'ed first.
 *  3. The sink and dead-letter topics have no other writer (their counts
 *     are the pipeline's own); the file sink is not written by others.
 *  4. Every source record is a row input or a dead-letter record with
 *     headers rn.error, rn.source.topic, rn.source.queue, rn.source.offset
 *     (the record's own key, value and timestamp kept).
 *  5. Not deterministic, so outside the guarantee: the query's idle_timeout
 *     (closes windows by wall-clock time) and windows over proctime()
 *     (which window a record joins depends on when it is read, so a
 *     restored pipeline may group the replayed records differently; no
 *     output is lost or doubled); sink record timestamps are the write time.
 *  6. Output follows its journal: the entries of every batch read before
 *     an output write are durable before that write is issued.
 *  7. No checkpoint while replaying: a checkpoint would start a new journal
 *     and lose the order that explains the sinks' tails; rn_etl_checkpoint
 *     returns 0 without one until the replay is done.
 *
 * File sink: written through rn_sys at its length (so faults can be
 * injected); a file the pipeline creates gets its directory fsync'ed. The
 * checkpoint records the file's length; open truncates the file to it and
 * the restarted run rewrites what followed (the same bytes, by the replay):
 * exactly-once for the file's content. stdout: rows after the last
 * checkpoint are printed again after a restart: at-least-once; a write
 * that stdout does not take whole is an error.
 *
 * States of a handle: OPEN (rn_etl_open: state restored, journal read,
 * skips computed) -> REPLAYING (rn_etl_step reads the journaled batches)
 * -> RUNNING (rn_etl_step) -> STOPPED (rn_etl_stop, paused or dropped by
 * another process, or the query ended); rn_etl_close in any state.
 */
#include "etl/etl.h"

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/root.h"
#include "common/sys.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define ETL_MAGIC       0x32454e52u   /* "RNE2" */
#define ETL_MAGIC_V1    0x31454e52u   /* "RNE1": no ckseq (read, never written) */
#define FLUSH_BYTES     (512u << 10)  /* a sink batch is appended past this size */

void (*rn_etl_test_hook)(const char *point);

static void hook(const char *point)
{
    if (rn_etl_test_hook) rn_etl_test_hook(point);
}

/* ---- parsing CREATE PIPELINE ------------------------------------------------------ */

typedef struct lex {
    const char *s;
    size_t      n, i;
} lex_t;

/* Skip spaces and comments. */
static void lex_space(lex_t *l)
{
    for (;;) {
        while (l->i < l->n && isspace((unsigned char)l->s[l->i])) l->i++;
        if (l->i + 1 < l->n && l->s[l->i] == '-' && l->s[l->i + 1] == '-') {
            while (l->i < l->n && l->s[l->i] != '\n') l->i++;
        } else if (l->i + 1 < l->n && l->s[l->i] == '/' && l->s[l->i + 1] == '*') {
            l->i += 2;
            while (l->i + 1 < l->n && !(l->s[l->i] == '*' && l->s[l->i + 1] == '/')) l->i++;
            l->i = l->i + 2 < l->n ? l->i + 2 : l->n;
        } else {
            return;
        }
    }
}

static int lex_keyword(lex_t *l, const char *kw)
{
    lex_space(l);
    size_t k = strlen(kw);
    if (l->n - l->i < k || strncasecmp(l->s + l->i, kw, k) != 0) return 0;
    if (l->i + k < l->n && (isalnum((unsigned char)l->s[l->i + k]) || l->s[l->i + k] == '_'))
        return 0;
    l->i += k;
    return 1;
}

/* A name: [A-Za-z0-9._-]+, "double quoted" or (quote = 1 allowed) 'single
 * quoted'. *quoted says which quote (0 bare). */
static int lex_name(lex_t *l, char *out, size_t size, int *quoted)
{
    lex_space(l);
    size_t o = 0;
    *quoted = 0;
    if (l->i < l->n && (l->s[l->i] == '"' || l->s[l->i] == '\'')) {
        char q = l->s[l->i++];
        *quoted = q;
        for (; l->i < l->n; l->i++) {
            if (l->s[l->i] == q) {
                if (l->i + 1 < l->n && l->s[l->i + 1] == q) l->i++;
                else break;
            }
            if (o + 1 >= size) return -1;
            out[o++] = l->s[l->i];
        }
        if (l->i >= l->n) return -1;
        l->i++;
    } else {
        while (l->i < l->n && (isalnum((unsigned char)l->s[l->i]) || strchr("._-", l->s[l->i]))) {
            if (o + 1 >= size) return -1;
            out[o++] = l->s[l->i++];
        }
    }
    out[o] = '\0';
    return o ? 0 : -1;
}

/* "250ms", "1s", "1.5s", "2m", "1h" -> ms (> 0). */
static int parse_interval(const char *s, int64_t *ms)
{
    char *end;
    double v = strtod(s, &end);
    double mul = !strcmp(end, "ms") ? 1 : !strcmp(end, "s") || !*end ? 1000
               : !strcmp(end, "m") ? 60000 : !strcmp(end, "h") ? 3600000 : -1;
    if (end == s || mul < 0 || !(v > 0) || v * mul > 86400000.0 * 365) return -1;
    *ms = (int64_t)(v * mul);
    return *ms > 0 ? 0 : -1;
}

/* Position of the trailing top-level "WITH (...)" of s[0..n) (the ')' ending
 * the text), or -1. *open is the '(' position. */
static long trailing_with(const char *s, size_t n, size_t *open)
{
    long last = -1;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\'' || c == '"') {
            for (i++; i < n && s[i] != c; i++) {}
            continue;
        }
        if (c == '-' && i + 1 < n && s[i + 1] == '-') {
            while (i < n && s[i] != '\n') i++;
            continue;
        }
        if (c == '(') depth++;
        else if (c == ')') depth--;
        else if (depth == 0 && (i == 0 || !isalnum((unsigned char)s[i - 1])) &&
                 n - i > 4 && strncasecmp(s + i, "with", 4) == 0 &&
                 !isalnum((unsigned char)s[i + 4]) && s[i + 4] != '_') {
            size_t j = i + 4;
            while (j < n && isspace((unsigned char)s[j])) j++;
            if (j < n && s[j] == '(') { last = (long)i; *open = j; }
        }
    }
    if (last < 0) return -1;
    /* its ')' must end the text */
    int d = 0;
    size_t i = *open;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '\'' || c == '"') { for (i++; i < n && s[i] != c; i++) {} continue; }
        if (c == '(') d++;
        else if (c == ')' && --d == 0) break;
    }
    if (i >= n) return -1;
    for (i++; i < n; i++)
        if (!isspace((unsigned char)s[i])) return -1;
    return last;
}

/* One "key = value" of a pipeline's WITH; 1 when it is a pipeline option
 * (applied to def), 0 when it belongs to the query, negative on error. */
static int pipeline_option(rn_etl_def_t *def, const char *key, const char *val, char *errmsg)
{
    if (!strcasecmp(key, "checkpoint_interval")) {
        if (parse_interval(val, &def->checkpoint_ms) != 0)
            return rn_errf(errmsg, RN_EINVAL, "checkpoint_interval '%.60s' is not an interval "
                           "like '500ms', '1s', '2m'", val);
        return 1;
    }
    if (!strcasecmp(key, "start")) {
        if (strcasecmp(val, "earliest") && strcasecmp(val, "latest") &&
            !(val[0] == '@' && val[1] && strspn(val + 1, "0123456789") == strlen(val + 1)))
            return rn_errf(errmsg, RN_EINVAL, "start '%.60s' must be earliest, latest or "
                           "@TIMESTAMP_MS", val);
        snprintf(def->start, sizeof def->start, "%.63s", val);
        return 1;
    }
    if (!strcasecmp(key, "dead_letter")) {
        int rc = rn_meta_check_topic_name(val, errmsg);
        if (rc != 0) return rc;
        snprintf(def->dead_letter, sizeof def->dead_letter, "%.255s", val);
        return 1;
    }
    if (!strcasecmp(key, "queues")) {
        char *end;
        long v = strtol(val, &end, 10);
        if (*end || v < 1 || v > RN_META_MAX_QUEUES)
            return rn_errf(errmsg, RN_EINVAL, "queues '%.30s' must be 1..%d", val,
                           RN_META_MAX_QUEUES);
        def->sink_queues = (uint32_t)v;
        return 1;
    }
    return 0;
}

/* Split the trailing WITH of the select: pipeline options into def, the
 * query's own re-emitted; def->select rebuilt. */
static int split_with(rn_etl_def_t *def, char *errmsg)
{
    char *s = def->select;
    size_t n = strlen(s), open = 0;
    long w = trailing_with(s, n, &open);
    if (w < 0) return 0;
    rn_buf_t keep = {0};
    lex_t l = {s, n, open + 1};
    int rc = 0, nkeep = 0;
    for (;;) {
        char key[128], val[1100];
        int q;
        lex_space(&l);
        size_t from = l.i;
        if (lex_name(&l, key, sizeof key, &q) != 0) {
            rc = rn_errf(errmsg, RN_EINVAL, "WITH: expected an option name at offset %zu", l.i);
            break;
        }
        lex_space(&l);
        if (l.i >= n || s[l.i] != '=') {
            rc = rn_errf(errmsg, RN_EINVAL, "WITH: expected '=' after '%s'", key);
            break;
        }
        l.i++;
        if (lex_name(&l, val, sizeof val, &q) != 0) {
            rc = rn_errf(errmsg, RN_EINVAL, "WITH: option '%s' has no value", key);
            break;
        }
        size_t to = l.i;
        rc = pipeline_option(def, key, val, errmsg);
        if (rc < 0) break;
        if (rc == 0) {
            const char *sep = nkeep++ ? ", " : "";
            if (rn_buf_append(&keep, sep, strlen(sep), 0) != 0 ||
                rn_buf_append(&keep, s + from, to - from, 0) != 0) {
                rc = rn_errf(errmsg, -ENOMEM, "out of memory");
                break;
            }
        }
        rc = 0;
        lex_space(&l);
        if (l.i < n && s[l.i] == ',') { l.i++; continue; }
        if (l.i < n && s[l.i] == ')') break;
        rc = rn_errf(errmsg, RN_EINVAL, "WITH: expected ',' or ')' at offset %zu", l.i);
        break;
    }
    if (rc == 0) {
        size_t len = (size_t)w;
        while (len && isspace((unsigned char)s[len - 1])) len--;
        if (nkeep) {
            char *ns = malloc(len + keep.len + 16);
            if (!ns) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
            snprintf(ns, len + keep.len + 16, "%.*s WITH (%.*s)", (int)len, s, (int)keep.len,
                     (const char *)keep.data);
            free(def->select);
            def->select = ns;
        } else {
            s[len] = '\0';
        }
    }
out:
    rn_buf_free(&keep);
    return rc;
}

void rn_etl_def_free(rn_etl_def_t *def)
{
    free(def->select);
    def->select = NULL;
}

int rn_etl_parse(const char *sql, size_t len, rn_etl_def_t *def, char *errmsg)
{
    memset(def, 0, sizeof *def);
    def->checkpoint_ms = RN_ETL_DEFAULT_CHECKPOINT_MS;
    snprintf(def->start, sizeof def->start, "earliest");
    lex_t l = {sql, len, 0};
    int q, rc;
    /* A NUL would cut a name or a file path short where C strings take it. */
    const char *nul = memchr(sql, '\0', len);
    if (nul)
        return rn_errf(errmsg, RN_EINVAL, "the pipeline's SQL holds a NUL byte (at byte %zu); "
                       "names and paths cannot contain one", (size_t)(nul - sql));
    if (!lex_keyword(&l, "CREATE") || !lex_keyword(&l, "PIPELINE"))
        return rn_errf(errmsg, RN_EINVAL, "a pipeline is CREATE PIPELINE name AS INSERT INTO "
                       "sink SELECT ...");
    if (lex_name(&l, def->name, sizeof def->name, &q) != 0 || q == '\'')
        return rn_errf(errmsg, RN_EINVAL, "CREATE PIPELINE: expected the pipeline's name");
    if (!q && l.i < l.n && !isspace((unsigned char)l.s[l.i])) {
        size_t e = l.i;
        while (e < l.n && !isspace((unsigned char)l.s[e])) e++;
        return rn_errf(errmsg, RN_EINVAL, "invalid pipeline name '%.*s': use 1..249 characters "
                       "of [A-Za-z0-9._-]", (int)(e - l.i + strlen(def->name) > 80 ? 80
                       : e - l.i + strlen(def->name)), l.s + l.i - strlen(def->name));
    }
    if ((rc = rn_meta_check_name("pipeline", def->name, errmsg)) != 0) return rc;
    if (!lex_keyword(&l, "AS") || !lex_keyword(&l, "INSERT") || !lex_keyword(&l, "INTO"))
        return rn_errf(errmsg, RN_EINVAL, "CREATE PIPELINE %s: expected AS INSERT INTO sink "
                       "SELECT ...", def->name);
    char sink[1020];
    if (lex_name(&l, sink, sizeof sink, &q) != 0)
        return rn_errf(errmsg, RN_EINVAL, "INSERT INTO: expected a topic, 'file:PATH' or "
                       "'stdout'");
    if (q == '\'' && !strncmp(sink, "file:", 5) && sink[5]) {
        def->sink_kind = RN_ETL_SINK_FILE;
        snprintf(def->sink, sizeof def->sink, "%.1000s", sink + 5);
    } else if (q == '\'' && !strcmp(sink, "stdout")) {
        def->sink_kind = RN_ETL_SINK_STDOUT;
    } else if (q == '\'') {
        return rn_errf(errmsg, RN_EINVAL, "INSERT INTO '%.60s': a quoted sink is 'file:PATH' "
                       "or 'stdout' (a topic is a bare or \"double-quoted\" name)", sink);
    } else {
        if ((rc = rn_meta_check_topic_name(sink, errmsg)) != 0) return rc;
        def->sink_kind = RN_ETL_SINK_TOPIC;
        snprintf(def->sink, sizeof def->sink, "%.1000s", sink);
    }
    lex_space(&l);
    if (!lex_keyword(&l, "SELECT"))
        return rn_errf(errmsg, RN_EINVAL, "CREATE PIPELINE %s: expected SELECT after the sink",
                       def->name);
    size_t from = l.i - 6, to = len;
    while (to > from && (isspace((unsigned char)sql[to - 1]) || sql[to - 1] == ';')) to--;
    def->select = malloc(to - from + 1);
    if (!def->select) return rn_errf(errmsg, -ENOMEM, "out of memory");
    memcpy(def->select, sql + from, to - from);
    def->select[to - from] = '\0';
    snprintf(def->dead_letter, sizeof def->dead_letter, "%.200s.dlq", def->name);
    if ((rc = split_with(def, errmsg)) != 0) rn_etl_def_free(def);
    return rc;
}

/* ---- a topic written by the pipeline (sink or dead letters) ----------------------- */

typedef struct tout {
    char                 topic[256];
    uint32_t             nq;
    rn_datadir_queue_t  *qs;
    rn_batch_builder_t  *b;
    int64_t             *pos;      /* records produced into each queue (incl. skipped) */
    int64_t             *skip;     /* written by a crashed run: recomputed, not written */
    uint64_t            *ticket;   /* last append per queue, 0: none since the last wait */
} tout_t;

/* One source batch the run read: its queue and offsets [from, to). */
typedef struct jentry {
    uint32_t queue;
    int64_t  from, to;
} jentry_t;

struct rn_etl {
    rn_datadir_t   *d;
    const rn_root_t *root;          /* the file sink's confinement, or NULL */
    rn_etl_def_t    def;
    rn_sql_t       *q;
    const char     *src;
    uint32_t        src_nq;
    int             agg;
    const rn_sql_column_t *cols;
    int             ncols;
    tout_t          sink, dlq;
    int             fd;             /* file sink */
    int64_t         file_len;       /* bytes of the file sink that are ours, written */
    rn_buf_t        fbuf;           /* file / stdout rows not yet written */
    rn_buf_t        row;            /* the JSON of the current row */
    rn_buf_t        keys;           /* ,"col": per column, back to back */
    size_t         *keyoff;         /* ncols + 1 offsets into keys */
    FILE           *js;             /* memstream for JSON strings */
    char           *jsbuf;
    size_t          jslen;
    uint64_t        out, dead, checkpoints;
    uint64_t        last_ckpt_ns;
    atomic_int      stop;
    int             broken;         /* a step failed mid-batch: never checkpoint again */
    int             cb_rc;
    char            cb_err[RN_ERRMSG_SIZE];
    rn_buf_t        state;
    /* the order journal (see the opening comment) */
    uint64_t        ckseq;          /* the last checkpoint's sequence number */
    char           *jpath;          /* DIR/pipelines/NAME.order */
    int             jfd;
    jentry_t       *jv;             /* the source batches read since the checkpoint */
    size_t          jn, jcap;
    size_t          jsynced;        /* jv[0..jsynced) are durable in the file */
    size_t          jdone;          /* jv[0..jdone) were read by this run */
    size_t          jreplay;        /* jv[0..jreplay) came from the file: replayed first */
    uint32_t        jcrc;           /* the chained CRC of jv[jsynced - 1] */
    rn_buf_t        jbuf;
    int64_t        *spos;           /* next offset per source queue, as the journal sees it */
    int             noted;          /* the current step's batch is in jv */
};

static void tout_close(tout_t *t)
{
    for (uint32_t i = 0; t->qs && i < t->nq; i++) {
        rn_datadir_queue_close(&t->qs[i]);
        rn_batch_builder_destroy(&t->b[i]);
    }
    free(t->qs);
    free(t->b);
    free(t->pos);
    free(t->skip);
    free(t->ticket);
    memset(t, 0, sizeof *t);
}

/* Make every append already written to q's open item visible: the log
 * publishes an append only after its group fdatasync, and a run that failed
 * in this process (runneld resuming a pipeline) may have appended records
 * it never waited for, which the restart must count (invariant 1). */
static int sync_queue_store(rn_datadir_t *d, const rn_datadir_queue_t *q, char *errmsg)
{
    if (!q->nitems) return 0;
    uint32_t id = q->items[q->nitems - 1].store_id;
    rn_log_t *lg = rn_datadir_store_log(d, id);
    if (!lg) return rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u: its store %u is not open",
                            q->topic.name, q->queue, id);
    int rc = rn_log_sync(lg);
    if (rc != 0) return rn_errf(errmsg, rc, "topic '%s' queue %u: cannot sync its store: %s",
                                q->topic.name, q->queue, rn_strerror(rc));
    return 0;
}

/* Open (creating with nq queues when missing) and set positions at the
 * current ends (the written ends: each store is synced first). */
static int tout_open(rn_datadir_t *d, const char *topic, uint32_t nq, tout_t *t, char *errmsg)
{
    rn_meta_topic_t mt;
    memset(t, 0, sizeof *t);
    snprintf(t->topic, sizeof t->topic, "%s", topic);
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_topic_get(m, topic, &mt, errmsg);
    rn_datadir_meta_unlock(d);
    if (rc == RN_ENOTFOUND) {
        rc = rn_datadir_topic_create(d, topic, nq, &mt, errmsg);
        if (rc == RN_EEXIST) {
            m = rn_datadir_meta_lock(d);
            rc = rn_meta_topic_get(m, topic, &mt, errmsg);
            rn_datadir_meta_unlock(d);
        }
    }
    if (rc != 0) return rc;
    t->nq = mt.queues;
    t->qs = calloc(t->nq, sizeof *t->qs);
    t->b = calloc(t->nq, sizeof *t->b);
    t->pos = calloc(t->nq, sizeof *t->pos);
    t->skip = calloc(t->nq, sizeof *t->skip);
    t->ticket = calloc(t->nq, sizeof *t->ticket);
    if (!t->qs || !t->b || !t->pos || !t->skip || !t->ticket) {
        tout_close(t);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    for (uint32_t i = 0; i < t->nq && rc == 0; i++) {
        rn_datadir_queue_info_t info;
        rn_batch_builder_init(&t->b[i], &bo);
        rc = rn_datadir_queue_open(d, topic, i, &t->qs[i], errmsg);
        if (rc == 0) rc = sync_queue_store(d, &t->qs[i], errmsg);
        if (rc == 0) rc = rn_datadir_queue_info(d, &t->qs[i], &info, errmsg);
        if (rc == 0) t->pos[i] = info.high_watermark;
    }
    if (rc != 0) tout_close(t);
    return rc;
}

static int journal_sync(rn_etl_t *p, char *errmsg);
static int batch_seen(rn_etl_t *p, char *errmsg);

/* Append queue i's pending batch, after the order journal it depends on is
 * durable (invariant 6). */
static int tout_flush_queue(rn_etl_t *p, tout_t *t, uint32_t i, char *errmsg)
{
    if (rn_batch_builder_count(&t->b[i]) == 0) return 0;
    const uint8_t *bytes;
    size_t len;
    int64_t base;
    int rc = journal_sync(p, errmsg);
    if (rc != 0) return rc;
    rc = rn_batch_builder_finish(&t->b[i], &bytes, &len);
    if (rc != 0) return rn_errf(errmsg, rc, "topic '%s': cannot build a batch", t->topic);
    rc = rn_datadir_append(p->d, &t->qs[i], bytes, len, &base, &t->ticket[i], errmsg);
    rn_batch_builder_reset(&t->b[i]);
    if (rc == 0) hook("after-sink-write");
    return rc;
}

static int tout_flush(rn_etl_t *p, tout_t *t, char *errmsg)
{
    int rc = 0;
    for (uint32_t i = 0; i < t->nq && rc == 0; i++) rc = tout_flush_queue(p, t, i, errmsg);
    return rc;
}

/* Wait until every append is acknowledged (durable as the log defines it). */
static int tout_wait(rn_datadir_t *d, tout_t *t, char *errmsg)
{
    for (uint32_t i = 0; i < t->nq; i++) {
        if (!t->ticket[i]) continue;
        int rc = rn_datadir_wait(d, t->ticket[i]);
        if (rc != 0) return rn_errf(errmsg, rc, "topic '%s' queue %u: write failed: %s",
                                    t->topic, i, rn_strerror(rc));
        t->ticket[i] = 0;
    }
    return 0;
}

/* One record for queue i: skipped while the crashed run's output is being
 * recomputed (invariant 1), else added (appending the batch when full). */
static int tout_add(rn_etl_t *p, tout_t *t, uint32_t i, const rn_record_t *r, char *errmsg)
{
    t->pos[i]++;
    if (t->skip[i] > 0) { t->skip[i]--; return 0; }
    int rc = rn_batch_builder_add(&t->b[i], r);
    if (rc == RN_EFULL) {
        if ((rc = tout_flush_queue(p, t, i, errmsg)) != 0) return rc;
        rc = rn_batch_builder_add(&t->b[i], r);
    }
    if (rc != 0) return rn_errf(errmsg, rc, "topic '%s': a record does not fit a batch", t->topic);
    if (rn_batch_builder_size(&t->b[i]) >= FLUSH_BYTES) return tout_flush_queue(p, t, i, errmsg);
    return 0;
}

/* Restore checkpointed positions: skip = high watermark - position. */
static int tout_restore(rn_datadir_t *d, tout_t *t, const int64_t *pos, char *errmsg)
{
    for (uint32_t i = 0; i < t->nq; i++) {
        int64_t hwm = t->pos[i];
        if (hwm < pos[i])
            return rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u ends at %lld, before the "
                           "checkpoint's %lld: it was truncated or recreated", t->topic, i,
                           (long long)hwm, (long long)pos[i]);
        t->skip[i] = hwm - pos[i];
        t->pos[i] = pos[i];
    }
    return 0;
}

/* ---- the pipeline ----------------------------------------------------------------- */


/* Append bytes as a JSON string to p->row: printable ASCII without '"' or
 * '\\' is copied between quotes; anything else goes through common/json.h's
 * escaping (one definition of how runnel writes JSON strings). */
static int json_string(rn_etl_t *p, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') i++;
    if (i == n) {
        if (rn_buf_reserve(&p->row, n + 2, 0) != 0) return -ENOMEM;
        uint8_t *o = p->row.data + p->row.len;
        o[0] = '"';
        memcpy(o + 1, s, n);
        o[n + 1] = '"';
        p->row.len += n + 2;
        return 0;
    }
    rewind(p->js);
    rn_json_write_string(p->js, s, n);
    if (fflush(p->js) != 0) return -ENOMEM;
    return rn_buf_append(&p->row, p->jsbuf, (size_t)ftell(p->js), 0) == 0 ? 0 : -ENOMEM;
}

static int row_json(rn_etl_t *p, const rn_sql_value_t *v, int n)
{
    char num[40];
    int rc = 0;
    p->row.len = 0;
    rc = rn_buf_append(&p->row, "{", 1, 0);
    for (int i = 0; rc == 0 && i < n && i < p->ncols; i++) {
        /* ',' (not before the first) and "name": prepared at open */
        rc = rn_buf_append(&p->row, p->keys.data + p->keyoff[i] + (i == 0),
                           p->keyoff[i + 1] - p->keyoff[i] - (i == 0), 0);
        if (rc != 0) break;
        int k = -1;
        switch (v[i].type) {
        case RN_SQL_INT: k = snprintf(num, sizeof num, "%lld", (long long)v[i].i); break;
        case RN_SQL_REAL:
            if (v[i].d == v[i].d && v[i].d - v[i].d == 0) k = snprintf(num, sizeof num, "%.17g", v[i].d);
            else k = snprintf(num, sizeof num, "null");
            break;
        case RN_SQL_TEXT: case RN_SQL_BLOB:
            rc = json_string(p, (const uint8_t *)v[i].s, v[i].n);
            break;
        default: k = snprintf(num, sizeof num, "null"); break;
        }
        if (rc == 0 && k > 0) rc = rn_buf_append(&p->row, num, (size_t)k, 0);
    }
    if (rc == 0) rc = rn_buf_append(&p->row, "}", 1, 0);
    return rc == 0 ? 0 : -ENOMEM;
}

/* The ,"name": text of every column, escaped once. */
static int prepare_keys(rn_etl_t *p, char *errmsg)
{
    p->keyoff = calloc((size_t)p->ncols + 1, sizeof *p->keyoff);
    if (!p->keyoff) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = 0;
    for (int i = 0; rc == 0 && i < p->ncols; i++) {
        p->keyoff[i] = p->keys.len;
        p->row.len = 0;
        rc = rn_buf_append(&p->keys, ",", 1, 0) == 0 ? 0 : -ENOMEM;
        if (rc == 0) rc = json_string(p, (const uint8_t *)p->cols[i].name, strlen(p->cols[i].name));
        if (rc == 0 && rn_buf_append(&p->keys, p->row.data, p->row.len, 0) != 0) rc = -ENOMEM;
        if (rc == 0 && rn_buf_append(&p->keys, ":", 1, 0) != 0) rc = -ENOMEM;
    }
    p->keyoff[p->ncols] = p->keys.len;
    p->row.len = 0;
    return rc == 0 ? 0 : rn_errf(errmsg, rc, "out of memory");
}

static uint32_t hash_row(const uint8_t *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

/* Write the pending rows: to stdout (every byte, or an error naming why),
 * or to the file sink at its length, through rn_sys (after the journal the
 * rows depend on is durable: invariant 6). */
static int write_file_buf(rn_etl_t *p, char *errmsg)
{
    if (!p->fbuf.len) return 0;
    if (p->def.sink_kind == RN_ETL_SINK_STDOUT) {
        size_t len = p->fbuf.len;
        p->fbuf.len = 0;
        errno = 0;
        size_t w = fwrite(p->fbuf.data, 1, len, stdout);
        if (w != len || fflush(stdout) != 0)
            return rn_errf(errmsg, errno ? -errno : -EIO, "cannot write to stdout: %zu of %zu "
                           "bytes written: %s", w, len, strerror(errno ? errno : EIO));
        return 0;
    }
    int rc = journal_sync(p, errmsg);
    if (rc != 0) return rc;
    rc = rn_pwrite_full(p->fd, p->fbuf.data, p->fbuf.len, (off_t)p->file_len);
    if (rc != 0) return rn_errf(errmsg, rc, "file '%s': write at byte %lld: %s", p->def.sink,
                                (long long)p->file_len, rn_strerror(rc));
    p->file_len += (int64_t)p->fbuf.len;
    p->fbuf.len = 0;
    hook("after-sink-write");
    return 0;
}

static int on_row(void *ctx, const rn_sql_value_t *vals, int n)
{
    rn_etl_t *p = ctx;
    int rc = batch_seen(p, p->cb_err);
    if (rc != 0) return rc;
    if ((rc = row_json(p, vals, n)) != 0) return rn_errf(p->cb_err, rc, "out of memory");
    p->out++;
    if (p->def.sink_kind != RN_ETL_SINK_TOPIC) {
        if (rn_buf_append(&p->fbuf, p->row.data, p->row.len, 0) != 0 ||
            rn_buf_append(&p->fbuf, "\n", 1, 0) != 0)
            return rn_errf(p->cb_err, -ENOMEM, "out of memory");
        return p->fbuf.len >= FLUSH_BYTES ? write_file_buf(p, p->cb_err) : 0;
    }
    uint32_t qi;
    if (p->agg) qi = hash_row(p->row.data, p->row.len) % p->sink.nq;
    else qi = rn_sql_batch_queue(p->q) % p->sink.nq;
    rn_record_t r;
    memset(&r, 0, sizeof r);
    r.timestamp = rn_sys.now_ms();
    r.key_len = -1;
    r.value = p->row.data;
    r.value_len = (int32_t)p->row.len;
    return tout_add(p, &p->sink, qi, &r, p->cb_err);
}

static int on_reject(void *ctx, uint32_t queue, const rn_record_t *src, const char *why)
{
    rn_etl_t *p = ctx;
    char qs[16], os[24];
    int rc = batch_seen(p, p->cb_err);
    if (rc != 0) return rc;
    /* a stream-stream join's queue numbers both streams: name the record's own */
    const char *topic = p->src;
    uint32_t tq = queue;
    rn_sql_source_queue(p->q, queue, &topic, &tq);
    snprintf(qs, sizeof qs, "%u", tq);
    snprintf(os, sizeof os, "%lld", (long long)src->offset);
    rn_header_t h[4] = {
        {(const uint8_t *)"rn.error", 8, (const uint8_t *)why, (int32_t)strlen(why)},
        {(const uint8_t *)"rn.source.topic", 15, (const uint8_t *)topic, (int32_t)strlen(topic)},
        {(const uint8_t *)"rn.source.queue", 15, (const uint8_t *)qs, (int32_t)strlen(qs)},
        {(const uint8_t *)"rn.source.offset", 16, (const uint8_t *)os, (int32_t)strlen(os)},
    };
    rn_record_t r = *src;
    r.headers = h;
    r.header_count = 4;
    p->dead++;
    return tout_add(p, &p->dlq, queue % p->dlq.nq, &r, p->cb_err);
}

/* ---- the order journal ------------------------------------------------------------ */

/* The file DIR/pipelines/NAME.order holds the source batches read since the
 * last checkpoint, in the order they were read, as fixed-size entries
 * (host byte order, like the checkpoint state: local to one data directory):
 *
 *   +-------+-------+---------+--------+--------+-------+-------+
 *   | magic | queue | ckseq   | from   | to     | index | crc   |
 *   | u32   | u32   | u64     | i64    | i64    | u32   | u32   |
 *   +-------+-------+---------+--------+--------+-------+-------+   40 bytes
 *
 *   magic "RNO1"; ckseq: the sequence number of the checkpoint the entry
 *   follows; [from, to): the batch's offsets in source queue `queue`;
 *   index: the entry's place since that checkpoint (0, 1, ...); crc =
 *   CRC-32C(bytes [0, 36)) chained from the previous entry's crc (0 for the
 *   first). Entry k is written at byte k * 40; a checkpoint starts the next
 *   journal at byte 0 again, over the old one.
 *
 * The journal is the entries from byte 0 on while each has the magic, the
 * current checkpoint's ckseq, its index, and a crc chained to the entry
 * before it; the first that does not ends it (a torn write, or an older
 * journal's leftover). */

#define JOURNAL_MAGIC 0x314f4e52u      /* "RNO1" */
#define JOURNAL_ENTRY 40
#define JOURNAL_MAX   (1u << 20)       /* entries: a checkpoint is taken past this */
#define JOURNAL_READ_MAX ((size_t)JOURNAL_MAX * 2 * JOURNAL_ENTRY)

static void journal_encode(uint8_t out[JOURNAL_ENTRY], const jentry_t *e, uint64_t ckseq,
                           uint32_t index, uint32_t *crc)
{
    uint32_t magic = JOURNAL_MAGIC;
    memcpy(out, &magic, 4);
    memcpy(out + 4, &e->queue, 4);
    memcpy(out + 8, &ckseq, 8);
    memcpy(out + 16, &e->from, 8);
    memcpy(out + 24, &e->to, 8);
    memcpy(out + 32, &index, 4);
    *crc = rn_crc32c(*crc, out, 36);
    memcpy(out + 36, crc, 4);
}

static int journal_push(rn_etl_t *p, const jentry_t *e)
{
    if (p->jn == p->jcap) {
        size_t cap = p->jcap ? p->jcap * 2 : 64;
        jentry_t *v = realloc(p->jv, cap * sizeof *v);
        if (!v) return -ENOMEM;
        p->jv = v;
        p->jcap = cap;
    }
    p->jv[p->jn++] = *e;
    return 0;
}

/* Read the journal of checkpoint p->ckseq from the file into jv (to be
 * replayed), open the file for writing (created, durably, when missing),
 * and make what was read durable: a crashed run may have died between
 * writing entries and syncing them, and the output this run writes will
 * depend on them. first: a pipeline's first open: any file left by a
 * pipeline of the same name that was dropped is removed first. */
static int journal_open(rn_etl_t *p, int first, char *errmsg)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/pipelines", rn_datadir_path(p->d));
    size_t n = strlen(dir) + strlen(p->def.name) + 16;
    if (!(p->jpath = malloc(n))) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(p->jpath, n, "%s/%s.order", dir, p->def.name);
    int rc = rn_mkdir_p(dir);
    if (rc != 0) return rn_errf(errmsg, rc, "%s: %s", dir, rn_strerror(rc));
    uint8_t *buf = NULL;
    size_t len = 0;
    if (first) {
        if (rn_sys.unlink(p->jpath) == 0) rc = rn_fsync_dir(dir);
        else if (errno != ENOENT) rc = -errno;
    } else {
        rc = rn_read_file(p->jpath, JOURNAL_READ_MAX, &buf, &len);
        if (rc == -ENOENT) rc = 0;
    }
    if (rc != 0) return rn_errf(errmsg, rc, "pipeline '%s': order journal %s: %s", p->def.name,
                                p->jpath, rn_strerror(rc));
    uint32_t crc = 0;
    for (size_t at = 0; at + JOURNAL_ENTRY <= len && rc == 0; at += JOURNAL_ENTRY) {
        const uint8_t *b = buf + at;
        uint32_t magic, index, got;
        uint64_t ckseq;
        jentry_t e;
        memcpy(&magic, b, 4);
        memcpy(&e.queue, b + 4, 4);
        memcpy(&ckseq, b + 8, 8);
        memcpy(&e.from, b + 16, 8);
        memcpy(&e.to, b + 24, 8);
        memcpy(&index, b + 32, 4);
        memcpy(&got, b + 36, 4);
        uint32_t want = rn_crc32c(crc, b, 36);
        if (magic != JOURNAL_MAGIC || ckseq != p->ckseq || index != p->jn || got != want ||
            e.queue >= p->src_nq || e.from > e.to)
            break;
        crc = want;
        if (journal_push(p, &e) != 0) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    free(buf);
    if (rc != 0) return rc;
    p->jreplay = p->jsynced = p->jn;
    p->jcrc = crc;
    p->jfd = rn_sys.open(p->jpath, O_RDWR | O_CLOEXEC, 0);
    if (p->jfd < 0 && errno == ENOENT) {
        p->jfd = rn_sys.open(p->jpath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (p->jfd >= 0 && (rc = rn_fsync_dir(dir)) != 0)
            return rn_errf(errmsg, rc, "pipeline '%s': %s: fsync: %s", p->def.name, dir,
                           rn_strerror(rc));
    }
    if (p->jfd < 0) return rn_errf(errmsg, -errno, "pipeline '%s': order journal %s: %s",
                                   p->def.name, p->jpath, strerror(errno));
    if (p->jn && rn_sys.fdatasync(p->jfd) != 0)
        return rn_errf(errmsg, -errno, "pipeline '%s': order journal %s: fdatasync: %s",
                       p->def.name, p->jpath, strerror(errno));
    return 0;
}

/* Write the entries not yet durable and fdatasync them: called before any
 * output is written (invariant 6). */
static int journal_sync(rn_etl_t *p, char *errmsg)
{
    if (p->jsynced == p->jn) return 0;
    uint8_t e[JOURNAL_ENTRY];
    uint32_t crc = p->jcrc;
    p->jbuf.len = 0;
    for (size_t i = p->jsynced; i < p->jn; i++) {
        journal_encode(e, &p->jv[i], p->ckseq, (uint32_t)i, &crc);
        if (rn_buf_append(&p->jbuf, e, sizeof e, 0) != 0)
            return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    int rc = rn_pwrite_full(p->jfd, p->jbuf.data, p->jbuf.len,
                            (off_t)(p->jsynced * JOURNAL_ENTRY));
    if (rc == 0 && rn_sys.fdatasync(p->jfd) != 0) rc = -errno;
    if (rc != 0) return rn_errf(errmsg, rc, "pipeline '%s': order journal %s: %s", p->def.name,
                                p->jpath, rn_strerror(rc));
    p->jsynced = p->jn;
    p->jcrc = crc;
    return 0;
}

/* Note the batch the current step read (once per step, from the first row
 * or dead letter it produced, or after the step): appended to the journal,
 * or, while replaying, checked against the entry it must equal. */
static int batch_seen(rn_etl_t *p, char *errmsg)
{
    if (p->noted) return 0;
    uint32_t qn = rn_sql_batch_queue(p->q);
    if (qn == UINT32_MAX) return 0;
    if (qn >= p->src_nq)
        return rn_errf(errmsg, RN_ECORRUPT, "pipeline '%s': a batch of source queue %u; the "
                       "source has %u", p->def.name, qn, p->src_nq);
    jentry_t e = {qn, p->spos[qn], 0};
    int rc = rn_sql_position(p->q, qn, &e.to, errmsg);
    if (rc != 0) return rc;
    p->noted = 1;
    p->spos[qn] = e.to;
    if (p->jdone < p->jreplay) {
        const jentry_t *w = &p->jv[p->jdone];
        if (w->queue != e.queue || w->from != e.from || w->to != e.to)
            return rn_errf(errmsg, RN_ECORRUPT, "pipeline '%s': replaying the order the run "
                           "before the restart read its source in: expected topic '%s' queue %u "
                           "offsets [%lld, %lld), read queue %u [%lld, %lld): the source "
                           "changed under the pipeline", p->def.name, p->src, w->queue,
                           (long long)w->from, (long long)w->to, e.queue, (long long)e.from,
                           (long long)e.to);
    } else if (journal_push(p, &e) != 0) {
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    p->jdone++;
    if (rn_etl_test_hook) {
        char point[96];
        snprintf(point, sizeof point, "batch %u %lld %lld", e.queue, (long long)e.from,
                 (long long)e.to);
        rn_etl_test_hook(point);
    }
    return 0;
}

/* ---- checkpoint state ------------------------------------------------------------- */

static int put(rn_buf_t *b, const void *v, size_t n)
{
    return rn_buf_append(b, v, n, 0) == 0 ? 0 : -ENOMEM;
}

static int put_positions(rn_buf_t *b, uint32_t n, const int64_t *pos)
{
    int rc = put(b, &n, 4);
    if (rc == 0 && n) rc = put(b, pos, (size_t)n * 8);
    return rc;
}

/* ETL state: u32 magic "RNE2" | u64 ckseq | u64 in, out, late, errors |
 * i64 watermark | u32 nsrc, i64 pos[nsrc] | u32 nsink, i64 pos[] | u32 ndlq,
 * i64 pos[] | i64 file_len | the query's state (rn_sql_state_save) to the
 * end. "RNE1" is the same without ckseq (read as ckseq 0). The state
 * encoded here is that of checkpoint ckseq + 1. */
static int encode_state(rn_etl_t *p, char *errmsg)
{
    rn_sql_stats_t st;
    rn_sql_stats(p->q, &st);
    uint32_t magic = ETL_MAGIC;
    uint64_t c[4] = {st.records, p->out, st.late, st.errors};
    int64_t src[RN_ETL_MAX_QUEUES];
    uint32_t ns = p->src_nq < RN_ETL_MAX_QUEUES ? p->src_nq : RN_ETL_MAX_QUEUES;
    for (uint32_t i = 0; i < ns; i++) {
        int rc = rn_sql_position(p->q, i, &src[i], errmsg);
        if (rc != 0) return rc;
    }
    rn_buf_t *b = &p->state;
    uint64_t ckseq = p->ckseq + 1;
    b->len = 0;
    int rc = put(b, &magic, 4);
    if (rc == 0) rc = put(b, &ckseq, 8);
    if (rc == 0) rc = put(b, c, sizeof c);
    if (rc == 0) rc = put(b, &st.watermark, 8);
    if (rc == 0) rc = put_positions(b, ns, src);
    if (rc == 0) rc = put_positions(b, p->sink.nq, p->sink.pos);
    if (rc == 0) rc = put_positions(b, p->dlq.nq, p->dlq.pos);
    if (rc == 0) rc = put(b, &p->file_len, 8);
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory");
    return rn_sql_state_save(p->q, b, errmsg);
}

typedef struct decoded {
    uint64_t       ckseq;
    uint64_t       c[4];
    int64_t        watermark;
    uint32_t       nsrc, nsink, ndlq;
    const int64_t *src, *sink, *dlq;     /* views, unaligned-safe copies below */
    int64_t        file_len;
    const uint8_t *sql;
    size_t         sql_len;
} decoded_t;

static int take_positions(const uint8_t **p, const uint8_t *end, uint32_t *n, const int64_t **v)
{
    if (end - *p < 4) return -1;
    memcpy(n, *p, 4);
    *p += 4;
    if ((size_t)(end - *p) / 8 < *n) return -1;
    *v = (const int64_t *)(const void *)*p;
    *p += (size_t)*n * 8;
    return 0;
}

static int decode_state(const uint8_t *s, size_t n, decoded_t *o, char *errmsg)
{
    const uint8_t *p = s, *end = s + n;
    uint32_t magic;
    memset(o, 0, sizeof *o);
    if (n < 4 + 8 + 32 + 8) goto bad;
    memcpy(&magic, p, 4);
    p += 4;
    if (magic == ETL_MAGIC) {
        memcpy(&o->ckseq, p, 8);
        p += 8;
    } else if (magic != ETL_MAGIC_V1) {
        goto bad;
    }
    memcpy(o->c, p, 32);
    memcpy(&o->watermark, p + 32, 8);
    p += 40;
    if (take_positions(&p, end, &o->nsrc, &o->src) || take_positions(&p, end, &o->nsink, &o->sink) ||
        take_positions(&p, end, &o->ndlq, &o->dlq) || end - p < 8)
        goto bad;
    memcpy(&o->file_len, p, 8);
    p += 8;
    o->sql = p;
    o->sql_len = (size_t)(end - p);
    return 0;
bad:
    return rn_errf(errmsg, RN_ECORRUPT, "the pipeline's checkpoint state is damaged");
}

/* Copy n positions out of a possibly unaligned view. */
static int64_t *copy_positions(const int64_t *v, uint32_t n)
{
    int64_t *c = malloc((n ? n : 1) * sizeof *c);
    if (c && n) memcpy(c, v, (size_t)n * 8);
    return c;
}

/* ---- create / drop / pause ---------------------------------------------------------- */

/* Open the pipeline's query (follow mode, key order, callbacks to p). */
static int open_query(rn_datadir_t *d, const rn_etl_def_t *def, rn_etl_t *p, rn_sql_t **q,
                      char *errmsg)
{
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    int rc = rn_sql_parse_from(def->start, &o, errmsg);
    if (rc != 0) return rc;
    o.follow = 1;
    o.key_order = 1;
    o.table_at_save = 1;    /* a joined table advances at checkpoints: replayable */
    if (p) {
        o.row = on_row;
        o.reject = on_reject;
        o.ctx = p;
    }
    int erroff = -1;
    char e[RN_ERRMSG_SIZE];
    rc = rn_sql_open(d, def->select, strlen(def->select), &o, q, &erroff, e);
    if (rc != 0) return rn_errf(errmsg, rc, "pipeline '%s': %s", def->name, e);
    if (!rn_sql_is_query(*q)) {
        rn_sql_close(*q);
        *q = NULL;
        return rn_errf(errmsg, RN_EINVAL, "pipeline '%s': the statement after INSERT INTO must "
                       "be a SELECT", def->name);
    }
    return 0;
}

int rn_etl_create(rn_datadir_t *d, const char *sql, size_t len, char *errmsg)
{
    return rn_etl_create_as(d, sql, len, NULL, NULL, NULL, errmsg);
}

int rn_etl_create_as(rn_datadir_t *d, const char *sql, size_t len, const char *creator,
                     rn_etl_check_fn check, void *arg, char *errmsg)
{
    rn_etl_def_t def;
    rn_sql_t *q = NULL;
    int rc = rn_etl_parse(sql, len, &def, errmsg);
    if (rc != 0) return rc;
    if ((rc = open_query(d, &def, NULL, &q, errmsg)) != 0) goto out;
    const char *src;
    uint32_t nq;
    rn_sql_source(q, &src, &nq);
    if (def.sink_kind == RN_ETL_SINK_TOPIC && !strcmp(src, def.sink)) {
        rc = rn_errf(errmsg, RN_EINVAL, "pipeline '%s' would write into its own source topic "
                     "'%s'", def.name, src);
        goto out;
    }
    if (!strcmp(src, def.dead_letter) || !strcmp(def.sink, def.dead_letter)) {
        rc = rn_errf(errmsg, RN_EINVAL, "pipeline '%s': the dead-letter topic '%s' must differ "
                     "from the source and the sink", def.name, def.dead_letter);
        goto out;
    }
    if (check && (rc = check(arg, src, &def, errmsg)) != 0) goto out;
    /* a joined table's topic is read too: the same rights */
    const char *jsrc = rn_sql_join_source(q), *last = src;
    uint32_t lq;
    /* a stream-stream join reads jsrc as a source too (its last queues) */
    if (nq) rn_sql_source_queue(q, nq - 1, &last, &lq);
    int into = !strcmp(last, def.dead_letter) ||
               (def.sink_kind == RN_ETL_SINK_TOPIC && !strcmp(last, def.sink));
    if (strcmp(last, src) != 0 && into) {
        rc = rn_errf(errmsg, RN_EINVAL, "pipeline '%s' would write into '%s', which it joins",
                     def.name, last);
        goto out;
    }
    if (check && jsrc && (rc = check(arg, jsrc, &def, errmsg)) != 0) goto out;
    char *text = strndup(sql, len);
    if (!text) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
    rn_meta_t *m = rn_datadir_meta_lock(d);
    rc = rn_meta_pipeline_create(m, def.name, text, creator, errmsg);
    rn_datadir_meta_unlock(d);
    free(text);
out:
    rn_sql_close(q);
    rn_etl_def_free(&def);
    return rc;
}

int rn_etl_drop(rn_datadir_t *d, const char *name, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_pipeline_drop(m, name, errmsg);
    rn_datadir_meta_unlock(d);
    if (rc != 0) return rc;
    /* its order journal goes too (a leftover is removed by the first open of
     * a pipeline created under the same name) */
    char path[4096];
    snprintf(path, sizeof path, "%s/pipelines/%s.order", rn_datadir_path(d), name);
    if (rn_sys.unlink(path) != 0 && errno != ENOENT)
        return rn_errf(errmsg, -errno, "pipeline '%s' dropped, but its order journal %s: %s",
                       name, path, strerror(errno));
    return 0;
}

int rn_etl_set_paused(rn_datadir_t *d, const char *name, int paused, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_pipeline_set_paused(m, name, paused, errmsg);
    rn_datadir_meta_unlock(d);
    return rc;
}

/* ---- status ------------------------------------------------------------------------ */

void rn_etl_describe_sink(const rn_etl_def_t *def, char *out, size_t size)
{
    if (def->sink_kind == RN_ETL_SINK_TOPIC) snprintf(out, size, "topic %s", def->sink);
    else if (def->sink_kind == RN_ETL_SINK_FILE) snprintf(out, size, "file %s", def->sink);
    else snprintf(out, size, "stdout");
}

static int status_one(rn_datadir_t *d, const rn_meta_pipeline_t *mp, rn_etl_status_t *s,
                      char *errmsg)
{
    rn_etl_def_t def;
    uint8_t *blob = NULL;
    size_t blen = 0;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", mp->name);
    s->paused = mp->paused;
    s->checkpoint_ms = mp->checkpoint_ms;
    s->watermark = INT64_MIN;
    int rc = rn_etl_parse(mp->sql, strlen(mp->sql), &def, errmsg);
    if (rc != 0) return rc;
    rn_etl_describe_sink(&def, s->sink, sizeof s->sink);
    rn_sql_t *q = NULL;
    rc = open_query(d, &def, NULL, &q, errmsg);
    if (rc == 0) {
        const char *src;
        uint32_t nq;
        rn_sql_source(q, &src, &nq);
        snprintf(s->source, sizeof s->source, "%s", src);
        s->nq = nq < RN_ETL_MAX_QUEUES ? nq : RN_ETL_MAX_QUEUES;
        for (uint32_t i = 0; i < s->nq && rc == 0; i++)
            rc = rn_sql_position(q, i, &s->lag[i], errmsg);   /* the start position */
    }
    if (rc == 0) {
        rn_meta_t *m = rn_datadir_meta_lock(d);
        rc = rn_meta_pipeline_state(m, mp->name, &blob, &blen, errmsg);
        rn_datadir_meta_unlock(d);
    }
    decoded_t dc;
    if (rc == 0 && blob && (rc = decode_state(blob, blen, &dc, errmsg)) == 0) {
        s->in = dc.c[0]; s->out = dc.c[1]; s->late = dc.c[2]; s->errors = dc.c[3];
        s->watermark = dc.watermark;
        for (uint32_t i = 0; i < s->nq && i < dc.nsrc; i++)
            memcpy(&s->lag[i], (const uint8_t *)dc.src + (size_t)i * 8, 8);
    }
    for (uint32_t i = 0; rc == 0 && i < s->nq; i++) {
        rn_datadir_queue_t dq;
        rn_datadir_queue_info_t info;
        const char *topic = s->source;       /* a stream-stream join's: either stream's */
        uint32_t tq = i;
        rn_sql_source_queue(q, i, &topic, &tq);
        if ((rc = rn_datadir_queue_open(d, topic, tq, &dq, errmsg)) != 0) break;
        rc = rn_datadir_queue_info(d, &dq, &info, errmsg);
        rn_datadir_queue_close(&dq);
        if (rc == 0) s->lag[i] = info.high_watermark - s->lag[i];
    }
    free(blob);
    rn_sql_close(q);
    rn_etl_def_free(&def);
    return rc;
}

int rn_etl_status(rn_datadir_t *d, const char *name, rn_etl_status_t **out, size_t *n,
                  char *errmsg)
{
    rn_meta_pipeline_t *v = NULL;
    size_t nv = 0;
    int rc;
    *out = NULL;
    *n = 0;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    if (name) {
        v = malloc(sizeof *v);
        if (!v) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        else if ((rc = rn_meta_pipeline_get(m, name, v, errmsg)) == 0) nv = 1;
    } else {
        rc = rn_meta_pipeline_list(m, &v, &nv, errmsg);
    }
    rn_datadir_meta_unlock(d);
    rn_etl_status_t *s = NULL;
    if (rc == 0 && nv && !(s = calloc(nv, sizeof *s))) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < nv; i++) rc = status_one(d, &v[i], &s[i], errmsg);
    free(v);
    if (rc != 0) { free(s); return rc; }
    *out = s;
    *n = nv;
    return 0;
}

/* ---- running ---------------------------------------------------------------------- */

/* Open the file sink through rn_sys; a file it creates is made durable in
 * its directory (fsync of the directory) before anything is written. With
 * state: cut the file back to its checkpointed length. */
static int open_file_sink(rn_etl_t *p, int have_state, int64_t len, char *errmsg)
{
    const char *path = p->def.sink;
    if (p->root) {
        int rc = rn_root_open_file(p->root, path, 0, &p->fd, errmsg);
        if (rc != 0) return rc;
    } else {
        p->fd = rn_sys.open(path, O_WRONLY | O_CLOEXEC, 0);
    }
    if (p->fd < 0 && errno == ENOENT) {
        p->fd = rn_sys.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (p->fd >= 0) {
            char dir[4096];
            const char *slash = strrchr(path, '/');
            if (!slash) snprintf(dir, sizeof dir, ".");
            else if (slash == path) snprintf(dir, sizeof dir, "/");
            else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
            int rc = rn_fsync_dir(dir);
            if (rc != 0) return rn_errf(errmsg, rc, "file '%s': fsync of its directory %s: %s",
                                        path, dir, rn_strerror(rc));
        }
    }
    if (p->fd < 0) return rn_errf(errmsg, -errno, "file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(p->fd, &st) != 0) return rn_errf(errmsg, -errno, "file '%s': %s", path,
                                               strerror(errno));
    int64_t end = (int64_t)st.st_size;
    if (!have_state) { p->file_len = end; return 0; }
    if (end < len)
        return rn_errf(errmsg, RN_ECORRUPT, "file '%s' is %lld bytes, shorter than its checkpoint "
                       "(%lld): it was changed by someone else", path, (long long)end,
                       (long long)len);
    if (end > len && rn_sys.ftruncate(p->fd, (off_t)len) != 0)
        return rn_errf(errmsg, -errno, "file '%s': truncate to %lld: %s", path, (long long)len,
                       strerror(errno));
    p->file_len = len;
    return 0;
}

/* Restore the checkpoint (if any) into the freshly opened pieces. */
static int restore(rn_etl_t *p, const uint8_t *blob, size_t blen, char *errmsg)
{
    decoded_t dc;
    int rc = decode_state(blob, blen, &dc, errmsg);
    if (rc != 0) return rc;
    if ((rc = rn_sql_state_load(p->q, dc.sql, dc.sql_len, errmsg)) != 0) return rc;
    p->ckseq = dc.ckseq;
    p->out = dc.c[1];
    p->dead = dc.c[3];
    if (p->def.sink_kind == RN_ETL_SINK_TOPIC && dc.nsink != p->sink.nq)
        return rn_errf(errmsg, RN_EINVAL, "sink topic '%s' has %u queue(s), the checkpoint %u",
                       p->sink.topic, p->sink.nq, dc.nsink);
    if (dc.ndlq != p->dlq.nq)
        return rn_errf(errmsg, RN_EINVAL, "dead-letter topic '%s' has %u queue(s), the "
                       "checkpoint %u", p->dlq.topic, p->dlq.nq, dc.ndlq);
    int64_t *sp = copy_positions(dc.sink, dc.nsink), *dp = copy_positions(dc.dlq, dc.ndlq);
    if (!sp || !dp) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    if (rc == 0 && p->def.sink_kind == RN_ETL_SINK_TOPIC)
        rc = tout_restore(p->d, &p->sink, sp, errmsg);
    if (rc == 0) rc = tout_restore(p->d, &p->dlq, dp, errmsg);
    if (rc == 0 && p->def.sink_kind == RN_ETL_SINK_FILE)
        rc = open_file_sink(p, 1, dc.file_len, errmsg);
    free(sp);
    free(dp);
    return rc;
}

int rn_etl_open(rn_datadir_t *d, const char *name, rn_etl_t **out, char *errmsg)
{
    return rn_etl_open_in(d, name, NULL, out, errmsg);
}

int rn_etl_open_in(rn_datadir_t *d, const char *name, const rn_root_t *sink_root,
                   rn_etl_t **out, char *errmsg)
{
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    uint8_t *blob = NULL;
    size_t blen = 0;
    int rc;
    *out = NULL;
    rn_etl_t *p = calloc(1, sizeof *p);
    if (!p || !mp) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    p->d = d;
    p->root = sink_root;
    p->fd = -1;
    p->jfd = -1;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    rc = rn_meta_pipeline_get(m, name, mp, errmsg);
    if (rc == 0) rc = rn_meta_pipeline_state(m, name, &blob, &blen, errmsg);
    rn_datadir_meta_unlock(d);
    if (rc != 0) goto fail;
    if (mp->paused) {
        rc = rn_errf(errmsg, RN_EINVAL, "pipeline '%s' is paused; resume it first", name);
        goto fail;
    }
    if ((rc = rn_etl_parse(mp->sql, strlen(mp->sql), &p->def, errmsg)) != 0) goto fail;
    if (!(p->js = open_memstream(&p->jsbuf, &p->jslen))) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = open_query(d, &p->def, p, &p->q, errmsg)) != 0) goto fail;
    rn_sql_source(p->q, &p->src, &p->src_nq);
    rn_sql_columns(p->q, &p->cols, &p->ncols);
    p->agg = rn_sql_aggregates(p->q);
    if ((rc = prepare_keys(p, errmsg)) != 0) goto fail;
    if (p->def.sink_kind == RN_ETL_SINK_TOPIC &&
        (rc = tout_open(d, p->def.sink, p->def.sink_queues ? p->def.sink_queues : p->src_nq,
                        &p->sink, errmsg)) != 0)
        goto fail;
    if ((rc = tout_open(d, p->def.dead_letter, p->src_nq, &p->dlq, errmsg)) != 0) goto fail;
    if (blob) rc = restore(p, blob, blen, errmsg);
    else if (p->def.sink_kind == RN_ETL_SINK_FILE) rc = open_file_sink(p, 0, 0, errmsg);
    if (rc == 0) rc = journal_open(p, !blob, errmsg);
    if (rc == 0 && !(p->spos = calloc(p->src_nq ? p->src_nq : 1, sizeof *p->spos)))
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    for (uint32_t i = 0; rc == 0 && i < p->src_nq; i++)
        rc = rn_sql_position(p->q, i, &p->spos[i], errmsg);
    if (rc != 0) goto fail;
    /* First run: pin the start (source positions, sink ends, file length)
     * before anything is written, so a crash before the first interval
     * restarts from here and skips what it wrote (invariant 1). */
    if (!blob && (rc = rn_etl_checkpoint(p, errmsg)) != 0) goto fail;
    p->last_ckpt_ns = rn_mono_ns();
    free(blob);
    free(mp);
    *out = p;
    return 0;
fail:
    free(blob);
    free(mp);
    rn_etl_close(p);
    return rc;
}

/* Everything produced so far into the sinks, durable (invariant 2). */
static int flush_all(rn_etl_t *p, int durable, char *errmsg)
{
    int rc = 0;
    if (p->def.sink_kind == RN_ETL_SINK_TOPIC) rc = tout_flush(p, &p->sink, errmsg);
    else rc = write_file_buf(p, errmsg);
    if (rc == 0) rc = tout_flush(p, &p->dlq, errmsg);
    if (!durable || rc != 0) return rc;
    if (p->def.sink_kind == RN_ETL_SINK_TOPIC) rc = tout_wait(p->d, &p->sink, errmsg);
    if (rc == 0) rc = tout_wait(p->d, &p->dlq, errmsg);
    if (rc == 0 && p->fd >= 0 && rn_sys.fdatasync(p->fd) != 0)
        rc = rn_errf(errmsg, -errno, "file '%s': fdatasync: %s", p->def.sink, strerror(errno));
    return rc;
}

int rn_etl_checkpoint(rn_etl_t *p, char *errmsg)
{
    if (p->broken)
        return rn_errf(errmsg, RN_ECLOSED, "pipeline '%s' stopped on an error; its last "
                       "checkpoint stands (reopen it to resume from there)", p->def.name);
    /* Replaying the order of the run before a crash: the sinks may hold
     * output of batches still to be replayed, which only this journal
     * explains; the checkpoint waits until the replay is done. */
    if (p->jdone < p->jreplay) return 0;
    int rc = flush_all(p, 1, errmsg);
    if (rc == 0) rc = encode_state(p, errmsg);
    if (rc != 0) return rc;
    hook("before-checkpoint");
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    if (!mp) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_meta_t *m = rn_datadir_meta_lock(p->d);
    rc = rn_meta_pipeline_checkpoint(m, p->def.name, p->state.data, p->state.len,
                                     rn_sys.now_ms(), errmsg);
    if (rc == 0) rc = rn_meta_pipeline_get(m, p->def.name, mp, errmsg);
    rn_datadir_meta_unlock(p->d);
    if (rc == 0 && mp->paused) atomic_store(&p->stop, 1);
    free(mp);
    /* encode_state caught a joined table up: batches read after a checkpoint
     * that was not stored would see a table the stored one does not explain */
    if (rc != 0 && rn_sql_join_source(p->q)) p->broken = 1;
    if (rc == 0) {
        /* a new journal (from byte 0, chained to ckseq + 1) begins */
        p->ckseq++;
        p->jn = p->jsynced = p->jdone = p->jreplay = 0;
        p->jcrc = 0;
        p->checkpoints++;
        p->last_ckpt_ns = rn_mono_ns();
        hook("after-checkpoint");
    }
    return rc;
}

void rn_etl_wait(rn_etl_t *p, uint32_t ms)
{
    rn_sql_wait(p->q, ms);
}

int rn_etl_step(rn_etl_t *p, rn_etl_state_t *state, char *errmsg)
{
    *state = RN_ETL_STOPPED;
    if (atomic_load(&p->stop)) return 0;
    rn_sql_state_t s;
    p->cb_rc = 0;
    p->cb_err[0] = '\0';
    p->noted = 0;
    int replaying = p->jdone < p->jreplay, rc = 0;
    if (replaying) rc = rn_sql_prefer_queue(p->q, p->jv[p->jdone].queue, errmsg);
    if (rc == 0) {
        rc = rn_sql_step(p->q, &s, errmsg);
        hook("after-step");
        if (rc != 0 && p->cb_err[0] && errmsg) snprintf(errmsg, RN_ERRMSG_SIZE, "%s", p->cb_err);
    }
    if (rc == 0) rc = batch_seen(p, errmsg);
    if (rc == 0 && replaying && !p->noted)
        rc = rn_errf(errmsg, RN_ECORRUPT, "pipeline '%s': replaying the order the run before "
                     "the restart read its source in: topic '%s' queue %u has no batch at "
                     "offset %lld", p->def.name, p->src, p->jv[p->jdone].queue,
                     (long long)p->jv[p->jdone].from);
    if (rc != 0) {
        /* the batch is half done: a checkpoint now would lose its rest */
        p->broken = 1;
        return rc;
    }
    if (s == RN_SQL_IDLE && (rc = flush_all(p, 0, errmsg)) != 0) { p->broken = 1; return rc; }
    int due = (rn_mono_ns() - p->last_ckpt_ns) / 1000000u >= (uint64_t)p->def.checkpoint_ms ||
              p->jn >= JOURNAL_MAX;
    if (s == RN_SQL_DONE || due) {
        rc = rn_etl_checkpoint(p, errmsg);
        if (rc == RN_ENOTFOUND) {           /* dropped by another process */
            atomic_store(&p->stop, 1);
            rc = 0;
        }
        if (rc != 0) { p->broken = 1; return rc; }
    }
    if (s == RN_SQL_DONE || atomic_load(&p->stop)) *state = RN_ETL_STOPPED;
    else *state = s == RN_SQL_IDLE ? RN_ETL_IDLE : RN_ETL_MORE;
    return 0;
}

void rn_etl_stop(rn_etl_t *p)
{
    atomic_store(&p->stop, 1);
}

void rn_etl_counters(rn_etl_t *p, uint64_t *in, uint64_t *out, uint64_t *errors,
                     uint64_t *checkpoints)
{
    rn_sql_stats_t st;
    rn_sql_stats(p->q, &st);
    if (in) *in = st.records;
    if (out) *out = p->out;
    if (errors) *errors = st.errors;
    if (checkpoints) *checkpoints = p->checkpoints;
}

const char *rn_etl_name(const rn_etl_t *p)
{
    return p->def.name;
}

const char *rn_etl_source(const rn_etl_t *p) { return p->src; }

const char *rn_etl_join_source(const rn_etl_t *p) { return rn_sql_join_source(p->q); }

const rn_etl_def_t *rn_etl_def(const rn_etl_t *p) { return &p->def; }

void rn_etl_close(rn_etl_t *p)
{
    if (!p) return;
    rn_sql_close(p->q);
    tout_close(&p->sink);
    tout_close(&p->dlq);
    if (p->fd >= 0) rn_sys.close(p->fd);
    if (p->jfd >= 0) rn_sys.close(p->jfd);
    free(p->jpath);
    free(p->jv);
    free(p->spos);
    rn_buf_free(&p->jbuf);
    if (p->js) fclose(p->js);
    free(p->jsbuf);
    rn_buf_free(&p->fbuf);
    rn_buf_free(&p->row);
    rn_buf_free(&p->keys);
    free(p->keyoff);
    rn_buf_free(&p->state);
    rn_etl_def_free(&p->def);
    free(p);
}

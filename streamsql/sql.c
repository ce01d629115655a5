/*
 * sql.c — the streamsql engine (see sql.h): one statement from text to
 * result rows, over an embedded data directory.
 *
 * A SELECT runs as: the front (front.c) finds the streaming clauses and
 * builds the per-batch statement; the stream is a virtual table over the
 * current batch (vtab.c); each polled batch is decoded once (scan.c) and the
 * ONE prepared per-batch statement is stepped over it. A plain query's rows
 * are the result. An aggregating query's rows (time, keys, aggregate
 * arguments) are folded into window state (window.c); when windows close
 * (or change, EMIT CHANGES) a second prepared statement over the emit table
 * evaluates HAVING and the final projection.
 *
 * States: OPEN (after rn_sql_open) -> RUNNING (first step) -> DONE. A
 * bounded query is DONE when every queue reached the end it had at open
 * (then every open window is closed and emitted), a LIMIT is reached, the
 * row callback stops it, an error happens or it is cancelled.
 *
 * Invariants:
 *  1. No statement is prepared per batch or per record: at most two per
 *     query, prepared in rn_sql_open (plus, there, one look-up of sqlite's
 *     function list, rn_front_check_functions, and for a join the table's
 *     two (table.c invariant 4) and one plan check).
 *  2. Every record read is either a row of the stream table or counted in
 *     errors (with the first reason kept) and handed to the reject callback;
 *     none disappears silently. Rows of closed windows are counted in late.
 *  3. Bounded reads stop at each queue's high watermark taken at open, so a
 *     query over a topic being written still ends.
 *  4. Metadata statements change meta.db under rn_datadir_meta_lock, in
 *     one transaction each (meta.c).
 *  5. The event-time frontier given to the window state is the smallest,
 *     over the queues still being read (those with records at open or since,
 *     and not at their end), of the largest event time each delivered; a
 *     queue that has not delivered yet holds it back. So the default
 *     watermark delay of 0 is safe for topics whose queues are each in time
 *     order, however the consumer interleaves their batches.
 *  6. rn_sql_state_save/_load (sql.h) capture the state at a step boundary
 *     only; a restored query has not stepped yet and continues from the
 *     saved positions, counters and window state.
 *  7. A record the per-batch statement cannot evaluate (sqlite's SQLITE_ERROR
 *     while stepping, e.g. json_extract on a value that is not JSON) is
 *     rejected like a mistyped one (invariant 2), and the query goes on: the
 *     batch is re-run one record at a time, the rows the failed pass already
 *     fed (delivered or folded into windows) skipped, so the good records
 *     yield exactly the rows, in the order, they would have without the bad
 *     ones. The normal path is untouched (rows are fed as they are stepped);
 *     only a failing batch pays for the re-run. Other sqlite errors (NOMEM,
 *     IO, ...) still fail the query.
 *  8. Results never depend on how records were batched. sqlite sees one
 *     batch at a time, so the front refuses whatever it would compute over
 *     a batch rather than the stream (subqueries reading a table, OVER
 *     outside a Window TopN, which ranks closed windows' final rows: topn.c,
 *     sqlite's own aggregates, rowid; SELECT DISTINCT is a grouping that
 *     emits each row once), and everything stateful
 *     happens per row in C: the event-time frontier of a queue moves, before
 *     each row is folded, to the largest event time of the queue's records
 *     up to that row (those the filter dropped included: the per-batch
 *     statement selects the row's index, __idx), so lateness is decided
 *     record by record; EMIT CHANGES emits the changed groups after each
 *     row; closed windows are emitted in order of end (window.c invariant
 *     6). Over one queue the output is then identical for every batching;
 *     over several, the interleaving of the queues is not defined, so rows
 *     of different queues may come in another order (and, when the queues
 *     are not each in event-time order, lateness depends on it).
 *  9. A join (FROM s [LEFT] JOIN t ON expr = t.key, table.c) reads a real
 *     sqlite table keyed by t's primary key, with the stream as the outer
 *     loop (CROSS JOIN / LEFT JOIN, checked on the plan at open), so each
 *     record gives at most one row (a LEFT JOIN exactly one) in stream
 *     order. The table changes only between batches: a bounded query reads
 *     it to the end it had at open, before the first stream row, and never
 *     again, so its results are the same for every batching (invariant 8);
 *     a following query catches it up to its topic's current end before
 *     each batch: a lookup sees the table as of its record's processing
 *     (processing time, like Flink's lookup join; not replayable), except
 *     with table_at_save (pipelines), where it catches up only in
 *     rn_sql_state_save, so every batch between two saves sees the table
 *     the first save recorded, and rn_sql_state_load rebuilds exactly that
 *     table from the saved positions.
 * 10. A SELECT whose FROM names a table (no join) is a pull query: the
 *     table is loaded to the end each of its topic's queues has at open,
 *     then the statement runs once, as written, over temp."<table>" as plain
 *     sqlite (read-only: sqlite3_stmt_readonly is checked), and the query
 *     is DONE. No consumer and no state: it is not resumable and refuses
 *     --follow, EMIT and WITH.
 * 11. A stream-stream join (sjoin.c) reads its two sides through inner
 *     plain queries and emits each joined pair when the watermark over both
 *     sides passes it, in an order fixed by the data (sjoin.c invariant 2),
 *     so invariant 8 holds across the two streams too. Both streams' queues
 *     are one source to the caller (the left's, then the right's:
 *     rn_sql_source counts both, rn_sql_source_queue maps), a step reads at
 *     most one batch of either, and rn_sql_state_save/_load carry the whole
 *     join state (sjoin.c invariants 5, 6), so pipelines checkpoint and
 *     replay it like any query's.
 * 12. A plain (not aggregating, not joined) query whose per-batch program,
 *     as EXPLAIN lists it, is exactly one scan of the stream table and a
 *     result row of bare columns (every WHERE term pushed into the scan,
 *     vtab.c invariant 3; no other opcode than the scan's, the constants of
 *     its xFilter and the control ops) is "direct": its rows are computed in
 *     C from the decoded fields, with the values xColumn would hand sqlite
 *     (rn_vtab_row_value) and the pushed terms as the plan's xFilter
 *     received them (one step over an empty batch at open), so the rows are
 *     sqlite's, without stepping sqlite per row. EXPLAIN says so.
 */
#include "streamsql/sql.h"
#include "streamsql/sql_int.h"

#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/consumer.h"
#include "logical-queues/group.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ROW_TEXT_MAX 512

struct rn_sql {
    rn_datadir_t    *d;
    rn_sql_opts_t    o;
    char            *text;
    front_t          f;
    sdef_t           def;
    sqlite3         *db;
    sqlite3_stmt    *bst, *est;
    sbatch_t         b;
    win_t           *win;
    topn_t          *topn;          /* a Window TopN over the emitted rows; NULL: none */
    rn_table_t      *tbl;           /* the joined table (table.c), or NULL */
    rn_sjoin_t      *sj;            /* a stream-stream join (sjoin.c), or NULL */
    sdef_t          *tdef;          /* DESCRIBE of a table; the joined table's definition */
    rn_consumer_t   *cons;
    rn_sql_column_t *cols;
    char           **colnames;
    int              ncols;
    rn_sql_value_t  *vals;
    int              nargs;
    rn_sql_state_t   state;
    int              started;
    int              fn_same;       /* CREATE FUNCTION: stored already, same definition */
    atomic_int       cancel;
    rn_sql_stats_t   st;
    size_t           rowcap, fvcap;
    fval_t          *fv;
    rn_buf_t         arena;
    int64_t          last_data_ms;
    /* per queue, for the event-time frontier (window queries) */
    uint32_t         nq;
    int64_t         *qmax;          /* largest event time delivered; INT64_MIN: none */
    int64_t         *qend;          /* bounded: the end offset; -1 following */
    uint8_t         *qlive;         /* had records at open, or delivered since */
    uint8_t         *qdone;         /* reached its end */
    int64_t          batch_max;     /* largest event time of the loaded batch */
    int64_t         *pmax;          /* pmax[i]: largest event time of rows[0..i] */
    uint32_t         cur_queue;     /* queue of the last step's batch; UINT32_MAX: none */
    uint32_t         next_q;        /* the queue the consumer's round-robin tries next */
    int              pull;          /* SELECT ... FROM a table: a pull query (invariant 10) */
    /* invariant 12: the per-batch statement's rows computed in C */
    int              direct;
    int             *dcol;          /* result column j is the stream table's column dcol[j] */
    rn_vtab_pred_t   dpred[RN_VTAB_MAX_PREDS];
    int              ndpred;
    char            *dtext;         /* dpred's text constants */
};

void rn_sql_opts_default(rn_sql_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->from = RN_SQL_FROM_EARLIEST;
    o->poll_ms = 20;
}

int rn_sql_parse_from(const char *s, rn_sql_opts_t *o, char *errmsg)
{
    rn_group_target_t t;
    int rc = rn_group_parse_target(s, "--from", 0, &t, errmsg);
    if (rc != 0) return rc;
    switch (t.kind) {
    case RN_TARGET_LATEST: o->from = RN_SQL_FROM_LATEST; break;
    case RN_TARGET_TIME: o->from = RN_SQL_FROM_TIME; o->from_ms = t.value; break;
    case RN_TARGET_CHECKPOINT:
        o->from = RN_SQL_FROM_CHECKPOINT;
        o->checkpoint = s + strlen("checkpoint:");
        break;
    default: o->from = RN_SQL_FROM_EARLIEST; break;
    }
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static int set_columns(rn_sql_t *q, int n, const char *const *names, const int *is_time)
{
    q->cols = calloc((size_t)n + 1, sizeof *q->cols);
    q->colnames = calloc((size_t)n + 1, sizeof *q->colnames);
    q->vals = calloc((size_t)n + 1, sizeof *q->vals);
    if (!q->cols || !q->colnames || !q->vals) return -ENOMEM;
    for (int i = 0; i < n; i++) {
        q->colnames[i] = strdup(names[i] ? names[i] : "?");
        if (!q->colnames[i]) return -ENOMEM;
        q->cols[i].name = q->colnames[i];
        q->cols[i].is_time = is_time ? is_time[i] : 0;
    }
    q->ncols = n;
    return 0;
}

static int columns_from_names(rn_sql_t *q, int n, const char *const *names)
{
    int *is_time = calloc((size_t)n + 1, sizeof *is_time);
    if (!is_time) return -ENOMEM;
    for (int i = 0; i < n; i++)
        is_time[i] = q->f.win != WK_NONE && q->f.win != WK_GLOBAL && names[i] &&
                     (strcasecmp(names[i], "window_start") == 0 ||
                      strcasecmp(names[i], "window_end") == 0);
    int rc = set_columns(q, n, names, is_time);
    free(is_time);
    return rc;
}

static int columns_from_stmt(rn_sql_t *q, sqlite3_stmt *st)
{
    int n = sqlite3_column_count(st);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    if (!names) return -ENOMEM;
    for (int i = 0; i < n; i++) names[i] = sqlite3_column_name(st, i);
    int rc = columns_from_names(q, n, names);
    free(names);
    return rc;
}

/* Count a result row and hand it to the row callback. */
static int deliver_vals(rn_sql_t *q, const rn_sql_value_t *vals, int n)
{
    q->st.rows++;
    if (!q->o.row) return 0;
    int r = q->o.row(q->o.ctx, vals, n);
    return r == 0 ? 0 : r < 0 ? r : RN_ECLOSED;
}

/* Deliver one row of texts (metadata results); NULL = SQL NULL. */
static int deliver_texts(rn_sql_t *q, const char *const *v)
{
    for (int i = 0; i < q->ncols; i++) {
        q->vals[i].type = v[i] ? RN_SQL_TEXT : RN_SQL_NULL;
        q->vals[i].s = v[i];
        q->vals[i].n = v[i] ? strlen(v[i]) : 0;
    }
    return deliver_vals(q, q->vals, q->ncols);
}

static int deliver_stmt(rn_sql_t *q, sqlite3_stmt *st)
{
    for (int i = 0; i < q->ncols; i++) {
        rn_sql_value_t *v = &q->vals[i];
        sqlite3_value *x = sqlite3_column_value(st, i);   /* one lookup per column */
        switch (sqlite3_value_type(x)) {
        case SQLITE_INTEGER: v->type = RN_SQL_INT; v->i = sqlite3_value_int64(x); break;
        case SQLITE_FLOAT: v->type = RN_SQL_REAL; v->d = sqlite3_value_double(x); break;
        case SQLITE_TEXT: {
            uint32_t n;
            v->type = RN_SQL_TEXT;
            v->s = rn_sql_text_view(x, &n);
            v->n = n;
            break;
        }
        case SQLITE_BLOB:
            v->type = RN_SQL_BLOB;
            v->s = sqlite3_column_blob(st, i);
            v->n = (size_t)sqlite3_column_bytes(st, i);
            break;
        default: v->type = RN_SQL_NULL; break;
        }
    }
    return deliver_vals(q, q->vals, q->ncols);
}

static int limit_reached(const rn_sql_t *q)
{
    return q->f.limit >= 0 && q->st.rows >= (uint64_t)q->f.limit;
}

/* A ranked row of a Window TopN (rn_topn_flush's callback): 1 stops at LIMIT. */
static int deliver_ranked(void *ctx, const rn_sql_value_t *vals, int n)
{
    rn_sql_t *q = ctx;
    return limit_reached(q) ? 1 : deliver_vals(q, vals, n);
}

/* "no such column: x" -> a clearer message and the token's offset. */
static int prepare_error(rn_sql_t *q, const char *what, int emit, int *erroff, char *errmsg)
{
    const char *m = sqlite3_errmsg(q->db);
    const char *nsc = "no such column: ";
    if (strncmp(m, nsc, strlen(nsc)) == 0) {
        const char *col = m + strlen(nsc);
        if (erroff) *erroff = rn_front_find_ident(&q->f, col);
        if (emit) {
            /* a key that holds the column, but was not a whole operand where
             * it is used (front.c invariant 7) */
            const char *key = NULL;
            for (int k = 0; k < q->f.nkeys && !key; k++)
                if (q->f.key_aff[k] == 'n' && strcasestr(q->f.keys[k], col)) key = q->f.keys[k];
            if (key)
                return rn_errf(errmsg, RN_EINVAL, "column '%s' must appear in GROUP BY or inside "
                               "an aggregate; the key %.100s stands for its value only where it "
                               "is a whole operand: write (%.100s)", col, key, key);
            return rn_errf(errmsg, RN_EINVAL, "column '%s' must appear in GROUP BY or inside an "
                           "aggregate", col);
        }
        /* In SELECT * order (vtab.c): value last. */
        char list[200] = "queue, offset, ts, key";
        size_t n = strlen(list);
        for (int i = 0; i < q->def.nfields && n + 16 < sizeof list; i++) {
            if (i == rn_front_ts_field(&q->def)) continue;      /* it is ts */
            int w = snprintf(list + n, sizeof list - n, ", %s", q->def.fields[i].name);
            if (w < 0 || (size_t)w + 16 >= sizeof list - n) {
                snprintf(list + n, sizeof list - n, ", ...");
                n += 5;
                break;
            }
            n += (size_t)w;
        }
        snprintf(list + n, sizeof list - n, ", value");
        return rn_errf(errmsg, RN_EINVAL, "unknown column '%s' in %s '%s' (columns: %s)", col,
                       q->def.declared ? "stream" : "topic", q->def.name, list);
    }
    int off = sqlite3_error_offset(q->db);
    if (erroff) *erroff = (!emit && q->f.batch_base >= 0 && off >= 0) ? q->f.batch_base + off : -1;
    if (erroff && *erroff < 0 && strncmp(m, "near \"", 6) == 0) {
        char tok[64];
        size_t k = 0;
        for (const char *p = m + 6; *p && *p != '"' && k + 1 < sizeof tok; p++) tok[k++] = *p;
        tok[k] = '\0';
        *erroff = rn_front_find_ident(&q->f, tok);
    }
    int code = strstr(m, "too large") || strstr(m, "too long") ? RN_ETOOBIG : RN_EINVAL;
    return rn_errf(errmsg, code, "%s%s", what, m);
}

/* ---- resolving the stream ----------------------------------------------------------- */

static int def_from_meta(const rn_meta_stream_t *s, sdef_t *def, char *errmsg)
{
    memset(def, 0, sizeof *def);
    snprintf(def->name, sizeof def->name, "%s", s->name);
    snprintf(def->topic, sizeof def->topic, "%s", s->topic);
    def->declared = 1;
    def->ts_field = -1;
    if (rn_front_format_from_name(s->format, strlen(s->format), &def->format) != 0)
        return rn_errf(errmsg, RN_ECORRUPT, "stream '%s' has an unknown format '%s'", s->name,
                       s->format);
    int off;
    if (rn_front_parse_fields(s->fields, strlen(s->fields), def, &off, errmsg) != 0)
        return rn_errf(errmsg, RN_ECORRUPT, "stream '%s': stored fields are damaged", s->name);
    for (int i = 0; s->timestamp[0] && i < def->nfields; i++)
        if (strcmp(def->fields[i].name, s->timestamp) == 0) def->ts_field = i;
    if (rn_front_ts_field(def) >= 0) def->ts_field = rn_front_ts_field(def);
    return 0;
}

/* A declared stream, else a topic of that name. */
static int resolve(rn_sql_t *q, const char *name, int *erroff, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(q->d);
    rn_meta_stream_t *s = malloc(sizeof *s);
    rn_meta_topic_t t;
    int rc;
    if (!s) { rn_datadir_meta_unlock(q->d); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
    rc = rn_meta_stream_get(m, name, s, errmsg);
    rn_meta_table_t *tb = rc == RN_ENOTFOUND ? malloc(sizeof *tb) : NULL;
    char why[RN_ERRMSG_SIZE];
    if (rc == 0) {
        rc = def_from_meta(s, &q->def, errmsg);
    } else if (tb && rn_meta_table_get(m, name, tb, why) == 0 && q->f.kind == SK_SELECT &&
               !q->f.join) {
        q->pull = 1;                        /* a pull query on the table (open_pull) */
        rc = 0;
    } else if (tb && rn_meta_table_get(m, name, tb, why) == 0) {
        /* a declared table wins over the bare topic of its name */
        rc = rn_errf(errmsg, RN_EINVAL, "'%.60s' is a table: a query reads a stream and may "
                     "join the table to it (FROM stream [LEFT] JOIN %.60s ON stream_expression "
                     "= %.60s.primary_key)", name, name, name);
        if (erroff) *erroff = (int)q->f.toks[q->f.src_tok].off;
    } else if (rc == RN_ENOTFOUND) {
        rc = rn_meta_topic_get(m, name, &t, errmsg);
        if (rc == 0) {
            memset(&q->def, 0, sizeof q->def);
            snprintf(q->def.name, sizeof q->def.name, "%s", name);
            snprintf(q->def.topic, sizeof q->def.topic, "%s", name);
            q->def.ts_field = -1;
        } else if (rc == RN_ENOTFOUND) {
            char streams[120], topics[120];
            rn_meta_stream_names(m, streams, sizeof streams);
            rn_meta_topic_get(m, name, &t, topics);   /* "unknown topic 'x'; topics: ..." */
            const char *tl = strstr(topics, "; ");
            rc = rn_errf(errmsg, RN_ENOTFOUND, "unknown stream or topic '%.60s'; %s; %s",
                         name, streams, tl ? tl + 2 : "there are no topics");
            if (erroff) *erroff = (int)q->f.toks[q->f.src_tok].off;
        }
    }
    rn_datadir_meta_unlock(q->d);
    free(s);
    free(tb);
    return rc;
}

/* ---- opening ---------------------------------------------------------------------- */

static void fn_broken(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sqlite3_result_error(ctx, sqlite3_user_data(ctx), -1);
    (void)argc;
    (void)argv;
}

/* streamsql's functions on db: fn.c's, the templates, and the SQL functions
 * stored in the metadata store (CREATE FUNCTION), in name order. */
static int register_functions(rn_datadir_t *d, sqlite3 *db, char *errmsg)
{
    int rc = rn_fn_register(db, errmsg);
    if (rc == 0) rc = rn_udf_register_templates(db, errmsg);
    if (rc == 0) rc = rn_topn_register(db, errmsg);
    if (rc == 0) rc = rn_udf_load_native(db, errmsg);
    if (rc != 0) return rc;
    rn_meta_function_t *v = NULL;
    size_t n = 0;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    rc = rn_meta_function_list(m, &v, &n, errmsg);
    rn_datadir_meta_unlock(d);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        udf_def_t def;
        int off;
        char why[RN_ERRMSG_SIZE];
        rc = rn_front_parse_function(v[i].def, strlen(v[i].def), &def, &off, why);
        if (rc == 0) rc = rn_udf_register(db, &def, why);
        rn_udf_def_free(&def);
        if (rc == RN_EINVAL || rc == RN_ETOOBIG) {
            /* a damaged definition fails the calls to it, not every query */
            char *msg = sqlite3_mprintf("stored function '%s' cannot be loaded: %s (DROP "
                                        "FUNCTION %s)", v[i].name, why, v[i].name);
            rc = msg && sqlite3_create_function_v2(db, v[i].name, -1, SQLITE_UTF8, msg,
                                                   fn_broken, NULL, NULL,
                                                   sqlite3_free) == SQLITE_OK
                     ? 0 : rn_errf(errmsg, -ENOMEM, "out of memory");
        } else if (rc != 0) {
            rc = rn_errf(errmsg, rc, "loading stored function '%s': %s", v[i].name, why);
        }
    }
    free(v);
    return rc;
}

/* CREATE FUNCTION: the name is free and the body compiles, on a connection
 * with every function a query has (register_functions). */
static int check_function(rn_sql_t *q, int *erroff, char *errmsg)
{
    const udf_def_t *d = &q->f.fn;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    rn_buf_t sql = RN_BUF_INIT;
    int rc = 0;
    if (erroff) *erroff = (int)q->f.toks[2].off;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rc = rn_errf(errmsg, RN_ESQLITE, "cannot open sqlite");
        goto out;
    }
    if ((rc = register_functions(q->d, db, errmsg)) != 0) goto out;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_function_list WHERE name = lower(?1)", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = rn_errf(errmsg, RN_ESQLITE, "%s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_text(st, 1, d->name, -1, SQLITE_STATIC);
    int exists = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    st = NULL;
    if (exists) {
        rn_meta_function_t *v = NULL;
        size_t n = 0;
        int stored = 0;
        rn_buf_t text = RN_BUF_INIT;
        if (rn_front_function_text(d, &text) != 0) {
            rc = rn_errf(errmsg, -ENOMEM, "out of memory");
            goto out;
        }
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        if (rn_meta_function_list(m, &v, &n, errmsg) == 0)
            for (size_t i = 0; i < n; i++)
                if (strcasecmp(v[i].name, d->name) == 0) {
                    stored = 1;
                    q->fn_same = strcmp(v[i].def, (const char *)text.data) == 0;
                }
        rn_datadir_meta_unlock(q->d);
        free(v);
        rn_buf_free(&text);
        if (q->fn_same) goto out;     /* rn_sql_define: unchanged; a run: already exists */
        rc = rn_errf(errmsg, RN_EEXIST, "function '%s' already exists (%s)", d->name,
                     stored ? "stored: DROP FUNCTION it first to redefine it"
                     : rn_udf_is_template(d->name) ? "a shipped template: choose another name"
                     : "one of sqlite's or streamsql's: choose another name");
        goto out;
    }
    int boff = -1;
    if ((rc = rn_front_udf_sql(d, &sql, &boff, errmsg)) != 0) {
        /* the body is the statement's last token, a string: point into it */
        if (erroff && boff >= 0) *erroff = (int)q->f.toks[q->f.ntoks - 1].off + 1 + boff;
        goto out;
    }
    if (sqlite3_prepare_v2(db, (const char *)sql.data, -1, &st, NULL) != SQLITE_OK) {
        char names[RN_SQL_MAX_PARAMS * (RN_SQL_MAX_NAME + 2) + 1] = "";
        size_t used = 0;
        for (int k = 0; k < d->nparams; k++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", k ? ", " : "",
                                     d->pname[k]);
        rc = rn_errf(errmsg, RN_EINVAL, "function %s's body: %s; it may use its parameters "
                     "(%s) and functions", d->name, sqlite3_errmsg(db),
                     d->nparams ? names : "none");
        goto out;
    }
    if (sqlite3_stmt_readonly(st) == 0) {
        rc = rn_errf(errmsg, RN_EINVAL, "function %s's body must only compute a value", d->name);
        goto out;
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    rn_buf_free(&sql);
    return rc;
}

static int open_db(rn_sql_t *q, char *errmsg)
{
    if (sqlite3_open_v2(":memory:", &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot open sqlite: %s",
                       q->db ? sqlite3_errmsg(q->db) : "out of memory");
    sqlite3_limit(q->db, SQLITE_LIMIT_SQL_LENGTH, 4 * RN_SQL_MAX_SQL_LEN + 4096);
    sqlite3_limit(q->db, SQLITE_LIMIT_EXPR_DEPTH, RN_SQL_MAX_DEPTH);
    int rc = rn_vtab_register(q->db, &q->b, errmsg);
    if (rc == 0) rc = register_functions(q->d, q->db, errmsg);
    if (rc != 0) return rc;
    char *sql = sqlite3_mprintf("CREATE VIRTUAL TABLE temp.\"%w\" USING rn_stream", q->def.name);
    if (!sql) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
    sqlite3_free(sql);
    if (rc != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot create the stream table: %s",
                       sqlite3_errmsg(q->db));
    if (q->f.win != WK_NONE) {
        sql = sqlite3_mprintf("CREATE VIRTUAL TABLE temp.__emit USING rn_emit(%d, %d, x%s)",
                              q->f.nkeys, q->f.naggs, q->f.key_aff);
        if (!sql) return rn_errf(errmsg, -ENOMEM, "out of memory");
        rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);
        sqlite3_free(sql);
        if (rc != SQLITE_OK)
            return rn_errf(errmsg, RN_ESQLITE, "cannot create the window table: %s",
                           sqlite3_errmsg(q->db));
    }
    return 0;
}

static int open_consumer(rn_sql_t *q, char *errmsg)
{
    rn_consumer_opts_t co = {.skip_damaged = q->o.skip_damaged};
    int rc = rn_consumer_create(q->d, &co, &q->cons, errmsg);
    if (rc != 0) return rc;
    uint32_t nq = 0;
    rn_meta_topic_t t;
    rn_group_start_t gs;
    memset(&gs, 0, sizeof gs);
    switch (q->o.from) {
    case RN_SQL_FROM_LATEST: gs.from.kind = RN_TARGET_LATEST; break;
    case RN_SQL_FROM_TIME: gs.from.kind = RN_TARGET_TIME; gs.from.value = q->o.from_ms; break;
    case RN_SQL_FROM_CHECKPOINT:
        gs.from.kind = RN_TARGET_CHECKPOINT;
        snprintf(gs.from.checkpoint, sizeof gs.from.checkpoint, "%s",
                 q->o.checkpoint ? q->o.checkpoint : "");
        break;
    default: gs.from.kind = RN_TARGET_EARLIEST; break;
    }
    rn_meta_t *m = rn_datadir_meta_lock(q->d);
    rc = rn_meta_topic_get(m, q->def.topic, &t, errmsg);
    rn_datadir_meta_unlock(q->d);
    if (rc != 0) return rc;
    if ((rc = rn_consumer_queues(q->cons, q->def.topic, &nq, errmsg)) != 0) return rc;
    q->nq = nq;
    q->qmax = calloc(nq ? nq : 1, sizeof *q->qmax);
    q->qend = calloc(nq ? nq : 1, sizeof *q->qend);
    q->qlive = calloc(nq ? nq : 1, 1);
    q->qdone = calloc(nq ? nq : 1, 1);
    if (!q->qmax || !q->qend || !q->qlive || !q->qdone)
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    if ((rc = rn_group_start_prepare(q->d, &gs, t.id, errmsg)) != 0) goto out;
    for (uint32_t i = 0; i < nq && rc == 0; i++) {
        rn_datadir_queue_t dq;
        rn_datadir_queue_info_t info;
        int64_t off = 0;
        rc = rn_datadir_queue_open(q->d, q->def.topic, i, &dq, errmsg);
        if (rc != 0) break;
        rc = rn_group_start_offset(q->d, &gs, &dq, &off, NULL, errmsg);
        if (rc == 0) rc = rn_datadir_queue_info(q->d, &dq, &info, errmsg);
        rn_datadir_queue_close(&dq);
        if (rc == 0) rc = rn_consumer_assign(q->cons, q->def.topic, i, off, errmsg);
        if (rc == 0 && !q->o.follow)
            rc = rn_consumer_set_end(q->cons, q->def.topic, i, info.high_watermark, errmsg);
        if (rc == 0 && info.high_watermark > off)
            q->st.target += (uint64_t)(info.high_watermark - off);
        q->qmax[i] = INT64_MIN;
        q->qend[i] = q->o.follow ? -1 : info.high_watermark;
        q->qlive[i] = rc == 0 && info.high_watermark > off;
    }
out:
    rn_group_start_free(&gs);
    return rc;
}

/* A Window TopN (topn.c) ranks the final rows of closed windows. */
static int open_topn(rn_sql_t *q, int *erroff, char *errmsg)
{
    if (!q->f.topn) return 0;
    if (q->f.emit_changes && !rn_topn_keep_first(q->f.topn)) {
        if (erroff) *erroff = rn_front_find_ident(&q->f, "EMIT");
        return rn_errf(errmsg, RN_EINVAL, "a TopN ranks the final rows of each window: EMIT "
                       "CHANGES would need retractions; use EMIT FINAL (the default)");
    }
    return rn_topn_open(q->f.topn, q->est, q->f.win, &q->topn, erroff, errmsg);
}

/* FROM s [LEFT] JOIN t ON ... = t.key: t must be a table and key its
 * primary key; the table is created in the query's connection and loaded
 * (table.c): for a bounded query to the end it has now, once; following,
 * caught up again before every batch (or, with table_at_save, at every
 * state save) — invariant 9. */
static int open_join(rn_sql_t *q, int *erroff, char *errmsg)
{
    static const char *const supported =
        "supported: FROM stream [LEFT] JOIN table ON stream_expression = table.primary_key "
        "(a table from CREATE TABLE)";
    const front_t *f = &q->f;
    if (!(q->tdef = malloc(sizeof *q->tdef))) return rn_errf(errmsg, -ENOMEM, "out of memory");
    char why[RN_ERRMSG_SIZE];
    int rc = rn_table_get(q->d, f->jname, q->tdef, why);
    if (erroff) *erroff = (int)f->toks[f->jtab_tok].off;
    if (rc == RN_ENOTFOUND) {
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        rn_meta_stream_t *s = malloc(sizeof *s);
        rn_meta_topic_t t;
        char e2[RN_ERRMSG_SIZE];
        int stream = s && rn_meta_stream_get(m, f->jname, s, e2) == 0;
        int topic = !stream && rn_meta_topic_get(m, f->jname, &t, e2) == 0;
        rn_datadir_meta_unlock(q->d);
        free(s);
        if (stream || topic)
            return rn_errf(errmsg, RN_EINVAL, "'%s' is a %s, not a table: a stream-stream "
                           "join needs a time bound or its state grows without end: add an "
                           "interval (AND "
                           "y.ts BETWEEN x.ts - INTERVAL '10' SECOND AND x.ts + INTERVAL '5' "
                           "SECOND) or join TUMBLE windows (streamsql/README.md)", f->jname,
                           stream ? "stream" : "topic");
        return rn_errf(errmsg, rc, "%s; %s", why, supported);
    }
    if (rc != 0) return rn_errf(errmsg, rc, "%s", why);
    char col[RN_SQL_MAX_NAME * 4 + 1] = "";
    const tok_t *ct = &f->toks[f->on_col_tok];
    snprintf(col, sizeof col, "%.*s", (int)ct->len, f->sql + ct->off);
    if (ct->kind == TK_QID && ct->len >= 2) snprintf(col, sizeof col, "%.*s", (int)ct->len - 2,
                                                     f->sql + ct->off + 1);
    const char *pk = q->tdef->fields[q->tdef->pk1 - 1].name;
    if (strcasecmp(col, pk) != 0) {
        if (erroff) *erroff = (int)ct->off;
        return rn_errf(errmsg, RN_EINVAL, "ON compares '%s', not the primary key '%s' of table "
                       "'%s': a join looks rows up by the key; %s", col, pk, f->jname,
                       supported);
    }
    if (erroff) *erroff = -1;
    return rn_table_open(q->d, q->db, q->tdef, &q->st.errors, q->st.first_error,
                         sizeof q->st.first_error, &q->tbl, errmsg);
}

/* The stream must be the outer loop of the per-batch statement, so each
 * record's rows come in the stream's order (invariant 8); CROSS JOIN
 * guarantees it. A LEFT JOIN that sqlite turned into an inner one (a WHERE
 * term rejecting NULL table columns: no unmatched row can pass) may be
 * reordered: it is rewritten as CROSS JOIN, the same rows, and open_select
 * prepares it again (f.join_kw = 0 says so). Anything else reading the
 * table first is refused. */
static int check_join_order(rn_sql_t *q, char *errmsg)
{
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", q->f.batch_sql);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (!eqp || sqlite3_prepare_v2(q->db, eqp, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_free(eqp);
        return rn_errf(errmsg, RN_ESQLITE, "cannot plan the join: %s", sqlite3_errmsg(q->db));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        if (!d || (strncmp(d, "SCAN", 4) != 0 && strncmp(d, "SEARCH", 6) != 0)) continue;
        if (strstr(d, "VIRTUAL TABLE")) break;
        if (q->f.join == 2 && q->f.join_kw > 0 &&
            strncmp(q->f.batch_sql + q->f.join_kw, "LEFT JOIN ", 10) == 0) {
            /* rewrite as CROSS JOIN (open_select prepares it again): the
             * buffer has room, "LEFT JOIN" + the text after it moves by one */
            size_t n = strlen(q->f.batch_sql);
            char *s = realloc(q->f.batch_sql, n + 2);
            if (!s) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); break; }
            memmove(s + q->f.join_kw + 10, s + q->f.join_kw + 9, n - q->f.join_kw - 9 + 1);
            memcpy(s + q->f.join_kw, "CROSS JOIN", 10);
            q->f.batch_sql = s;
            q->f.join_kw = 0;
            break;
        }
        rc = rn_errf(errmsg, RN_EINVAL, "sqlite would read table '%s' before the stream here "
                     "(%s), so rows would not come in stream order", q->f.jname, d);
        break;
    }
    sqlite3_finalize(st);
    sqlite3_free(eqp);
    return rc;
}

/* SELECT ... FROM table [WHERE ...]: a pull query (invariant 10). The table
 * is loaded to the end each of its queues has now, then the statement, as
 * written, runs once over temp."<table>" as plain sqlite (any WHERE, GROUP
 * BY, ORDER BY, LIMIT: the table is bounded). */
static int open_pull(rn_sql_t *q, int *erroff, char *errmsg)
{
    for (int i = q->f.tail_b; i < q->f.ntoks; i++)
        if (q->f.toks[i].depth == 0 && (rn_front_tok_is(&q->f, i, "EMIT") ||
                                        rn_front_tok_is(&q->f, i, "WITH"))) {
            if (erroff) *erroff = (int)q->f.toks[i].off;
            return rn_errf(errmsg, RN_EINVAL, "a query on table '%s' answers once with the "
                           "table's current rows: EMIT and WITH apply to streams", q->f.name);
        }
    if (q->o.follow)
        return rn_errf(errmsg, RN_EINVAL, "a query on table '%s' answers once (a pull query): "
                       "--follow applies to streams; to follow the changes, read its "
                       "changelog topic", q->f.name);
    if (!(q->tdef = malloc(sizeof *q->tdef))) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = rn_table_get(q->d, q->f.name, q->tdef, errmsg);
    if (rc != 0) return rc;
    if (sqlite3_open_v2(":memory:", &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot open sqlite: %s",
                       q->db ? sqlite3_errmsg(q->db) : "out of memory");
    sqlite3_limit(q->db, SQLITE_LIMIT_SQL_LENGTH, 4 * RN_SQL_MAX_SQL_LEN + 4096);
    sqlite3_limit(q->db, SQLITE_LIMIT_EXPR_DEPTH, RN_SQL_MAX_DEPTH);
    sqlite3_limit(q->db, SQLITE_LIMIT_ATTACHED, 0);
    if ((rc = register_functions(q->d, q->db, errmsg)) != 0) return rc;
    if ((rc = rn_table_open(q->d, q->db, q->tdef, &q->st.errors, q->st.first_error,
                            sizeof q->st.first_error, &q->tbl, errmsg)) != 0)
        return rc;
    if (sqlite3_prepare_v2(q->db, q->f.sql, (int)q->f.len, &q->bst, NULL) != SQLITE_OK)
        return prepare_error(q, "", 0, erroff, errmsg);
    if (!sqlite3_stmt_readonly(q->bst))
        return rn_errf(errmsg, RN_EINVAL, "a query on a table only reads it");
    return columns_from_stmt(q, q->bst) == 0 ? 0 : rn_errf(errmsg, -ENOMEM, "out of memory");
}

/* One step of a pull query: every row, then DONE. */
static int step_pull(rn_sql_t *q, rn_sql_state_t *state, char *errmsg)
{
    int rc;
    while ((rc = sqlite3_step(q->bst)) == SQLITE_ROW) {
        int r = deliver_stmt(q, q->bst);
        if (r != 0) return r;
        if (atomic_load(&q->cancel)) break;
    }
    *state = RN_SQL_DONE;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rn_errf(errmsg, RN_ESQLITE, "table '%s': %s", q->f.name, sqlite3_errmsg(q->db));
    return 0;
}

const front_t *rn_sql_front(rn_sql_t *q, const sdef_t **src)
{
    *src = &q->def;
    return &q->f;
}

/* A stream-stream join (sjoin.c): its two sides are inner queries, the
 * emission statement runs on this query's connection. */
static int open_sjoin(rn_sql_t *q, int *erroff, char *errmsg)
{
    q->b.def = &q->def;
    int rc = open_db(q, errmsg);
    if (rc == 0) rc = rn_sjoin_open(q->d, q->db, &q->f, &q->o, &q->sj, erroff, errmsg);
    if (rc == 0 && q->f.kind == SK_EXPLAIN)
        return rn_errf(errmsg, RN_EINVAL, "EXPLAIN of a stream-stream join is not supported");
    if (rc == 0 && columns_from_stmt(q, rn_sjoin_stmt(q->sj)) != 0)
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    return rc;
}

static int sjoin_row(void *ctx, sqlite3_stmt *st)
{
    rn_sql_t *q = ctx;
    return limit_reached(q) ? 1 : deliver_stmt(q, st);
}

/* Invariant 12: is the per-batch statement's program exactly "for each row
 * the stream table yields, a result row of its columns" (every WHERE term
 * pushed into the scan, every result column a bare column)? Then *cols
 * gets the stream column of each result column. The program is read from
 * EXPLAIN; any opcode outside the list below, a constant written into a
 * result register, or a second loop answers no. */
static int direct_shape(rn_sql_t *q, int *cols)
{
    if (q->win || q->f.join || q->topn || !q->bst) return 0;
    int ncols = sqlite3_column_count(q->bst);
    char *sql = sqlite3_mprintf("EXPLAIN %s", q->f.batch_sql);
    sqlite3_stmt *st = NULL;
    if (!sql) return 0;
    int ok = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) == SQLITE_OK;
    sqlite3_free(sql);
    enum { MAXOPS = 64 };
    struct { char op[16]; int p1, p2, p3; } ops[MAXOPS];
    int n = 0;
    while (ok && sqlite3_step(st) == SQLITE_ROW) {
        if (n == MAXOPS) { ok = 0; break; }
        const char *op = (const char *)sqlite3_column_text(st, 1);
        snprintf(ops[n].op, sizeof ops[n].op, "%s", op ? op : "");
        ops[n].p1 = sqlite3_column_int(st, 2);
        ops[n].p2 = sqlite3_column_int(st, 3);
        ops[n].p3 = sqlite3_column_int(st, 4);
        n++;
    }
    sqlite3_finalize(st);
    if (!ok) return 0;
    int nopen = 0, nfilter = 0, nnext = 0, nresult = 0, cur = -1, r0 = -1, nr = 0;
    for (int i = 0; i < n; i++) {
        const char *op = ops[i].op;
        if (strcmp(op, "VOpen") == 0) { nopen++; cur = ops[i].p1; }
        else if (strcmp(op, "VFilter") == 0) nfilter++;
        else if (strcmp(op, "VNext") == 0) nnext++;
        else if (strcmp(op, "ResultRow") == 0) { nresult++; r0 = ops[i].p1; nr = ops[i].p2; }
        else if (strcmp(op, "VColumn") != 0 && strcmp(op, "Init") != 0 &&
                 strcmp(op, "Goto") != 0 && strcmp(op, "Halt") != 0 &&
                 strcmp(op, "Integer") != 0 && strcmp(op, "Int64") != 0 &&
                 strcmp(op, "Real") != 0 && strcmp(op, "String8") != 0 &&
                 strcmp(op, "Transaction") != 0 && strcmp(op, "Noop") != 0)
            return 0;
    }
    if (nopen != 1 || nfilter != 1 || nnext != 1 || nresult != 1 || nr != ncols || nr < 1)
        return 0;
    for (int j = 0; j < nr; j++) cols[j] = -1;
    for (int i = 0; i < n; i++) {
        const char *op = ops[i].op;
        int reg = strcmp(op, "VColumn") == 0 ? ops[i].p3
                  : strcmp(op, "Integer") == 0 || strcmp(op, "Int64") == 0 ||
                    strcmp(op, "Real") == 0 || strcmp(op, "String8") == 0 ? ops[i].p2 : -1;
        if (reg < r0 || reg >= r0 + nr) continue;
        if (op[0] != 'V' || ops[i].p1 != cur || cols[reg - r0] != -1) return 0;
        cols[reg - r0] = ops[i].p2;
    }
    for (int j = 0; j < nr; j++)
        if (cols[j] < 0 || cols[j] > SQL_COL_FIELDS + q->def.nfields + 1) return 0;
    return 1;
}

/* Invariant 12: decide whether the per-batch statement's rows are computed
 * in C, and take the pushed terms as the plan's one xFilter call gives them
 * (one step over an empty batch). */
static int plan_direct(rn_sql_t *q, char *errmsg)
{
    if (q->ncols < 1 || q->ncols != sqlite3_column_count(q->bst)) return 0;
    q->dcol = calloc((size_t)q->ncols, sizeof *q->dcol);
    if (!q->dcol) return rn_errf(errmsg, -ENOMEM, "out of memory");
    if (!direct_shape(q, q->dcol)) return 0;
    q->b.npreds = 0;
    q->b.nrows = 0;
    int s = sqlite3_step(q->bst);
    sqlite3_reset(q->bst);
    if (s != SQLITE_DONE) return 0;
    size_t tlen = 0;
    for (int k = 0; k < q->b.npreds; k++)
        if (q->b.preds[k].type == RN_SQL_TEXT) tlen += q->b.preds[k].n;
    q->dtext = malloc(tlen + 1);
    if (!q->dtext) return rn_errf(errmsg, -ENOMEM, "out of memory");
    tlen = 0;
    for (int k = 0; k < q->b.npreds; k++) {
        q->dpred[k] = q->b.preds[k];
        if (q->dpred[k].type == RN_SQL_TEXT) {
            if (q->b.preds[k].n) memcpy(q->dtext + tlen, q->b.preds[k].s, q->b.preds[k].n);
            q->dpred[k].s = q->dtext + tlen;
            tlen += q->b.preds[k].n;
        }
    }
    q->ndpred = q->b.npreds;
    q->direct = 1;
    return 0;
}

/* The rows of the current batch for a direct statement (invariant 12), fed
 * like step_rows feeds sqlite's. */
static int direct_rows(rn_sql_t *q, uint64_t *skip, uint64_t *fed)
{
    int nf = q->def.nfields;
    for (size_t i = q->b.lo; i < q->b.nrows; i++) {
        if (!rn_vtab_preds_pass(&q->b, q->dpred, q->ndpred, i)) continue;
        if (*skip) { (*skip)--; continue; }
        (*fed)++;
        const srow_t *r = &q->b.rows[i];
        for (int j = 0; j < q->ncols; j++) {
            fval_t f;
            rn_sql_value_t *v = &q->vals[j];
            rn_vtab_row_value(r, q->dcol[j], nf, i, &f);
            v->type = f.type;
            if (f.type == RN_SQL_INT) v->i = f.i;
            else if (f.type == RN_SQL_REAL) v->d = f.d;
            else if (f.type == RN_SQL_TEXT) { v->s = f.s; v->n = f.n; }
        }
        int rc = deliver_vals(q, q->vals, q->ncols);
        if (rc != 0 || limit_reached(q)) return rc;
    }
    return 0;
}

static int open_select(rn_sql_t *q, int *erroff, char *errmsg)
{
    int rc = resolve(q, q->f.name, erroff, errmsg);
    if (rc != 0) return rc;
    if (q->pull) return open_pull(q, erroff, errmsg);
    if (q->f.sjoin) return open_sjoin(q, erroff, errmsg);
    if ((rc = rn_front_plan(&q->f, &q->def, erroff, errmsg)) != 0) return rc;
    q->b.def = &q->def;
    if ((rc = open_db(q, errmsg)) != 0) return rc;
    if ((rc = rn_front_check_functions(&q->f, q->db, erroff, errmsg)) != 0) return rc;
    if (q->f.join && (rc = open_join(q, erroff, errmsg)) != 0) return rc;
    if (sqlite3_prepare_v2(q->db, q->f.batch_sql, -1, &q->bst, NULL) != SQLITE_OK)
        return prepare_error(q, "", 0, erroff, errmsg);
    if (q->f.join && (rc = check_join_order(q, errmsg)) != 0) return rc;
    if (q->f.join == 2 && q->f.join_kw == 0) {
        /* sqlite turned the LEFT JOIN into an inner one (a WHERE term rejects
         * the table's NULL columns, so no unmatched row could pass) and put
         * the table first: the same rows as CROSS JOIN, which keeps the
         * stream outer (invariant 9) */
        sqlite3_finalize(q->bst);
        q->bst = NULL;
        if (sqlite3_prepare_v2(q->db, q->f.batch_sql, -1, &q->bst, NULL) != SQLITE_OK)
            return prepare_error(q, "", 0, erroff, errmsg);
        if ((rc = check_join_order(q, errmsg)) != 0) return rc;
    }
    if (q->f.win != WK_NONE) {
        for (int k = 0; k < q->f.naggs; k++)
            q->nargs += (q->f.aggs[k].arg != NULL) + (q->f.aggs[k].filter != NULL);
        if (sqlite3_prepare_v2(q->db, q->f.emit_sql, -1, &q->est, NULL) != SQLITE_OK)
            return prepare_error(q, "", 1, erroff, errmsg);
        win_cfg_t cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.kind = q->f.win;
        cfg.size_ms = q->f.size_ms;
        cfg.slide_ms = q->f.slide_ms;
        cfg.delay_ms = q->f.watermark_ms;
        cfg.nkeys = q->f.nkeys;
        cfg.naggs = q->f.naggs;
        cfg.changes = q->f.emit_changes;
        cfg.first_seen = q->f.distinct || (q->f.topn && rn_topn_keep_first(q->f.topn));
        cfg.key_order = q->o.key_order;
        for (int k = 0; k < q->f.naggs; k++) {
            cfg.agg[k] = q->f.aggs[k].kind;
            cfg.distinct[k] = q->f.aggs[k].distinct;
            cfg.filter[k] = q->f.aggs[k].filter != NULL;
            cfg.param[k] = q->f.aggs[k].param;
        }
        if ((rc = rn_win_create(&cfg, &q->win, errmsg)) != 0) return rc;
        q->b.win = q->win;
        if ((rc = open_topn(q, erroff, errmsg)) != 0) return rc;
        if (q->o.follow && q->f.win == WK_GLOBAL && !q->f.emit_changes)
            return rn_errf(errmsg, RN_EINVAL, "an aggregation without a window never closes "
                           "under --follow: add a window (GROUP BY TUMBLE(ts, '1m'), ...) or "
                           "EMIT CHANGES");
    } else if (q->f.emit_changes) {
        return rn_errf(errmsg, RN_EINVAL, "EMIT applies to aggregations (GROUP BY)");
    }
    if (q->f.kind == SK_EXPLAIN) {
        const char *name = "plan";
        return set_columns(q, 1, &name, NULL);
    }
    const char *const *tnames;
    if (q->topn) {
        int tn = rn_topn_columns(q->topn, &tnames);
        rc = columns_from_names(q, tn, tnames);
    } else {
        rc = columns_from_stmt(q, q->est ? q->est : q->bst);
    }
    if (rc != 0)
        return rn_errf(errmsg, rc, "out of memory");
    if (q->f.kind != SK_EXPLAIN && (rc = plan_direct(q, errmsg)) != 0) return rc;
    return open_consumer(q, errmsg);
}

int rn_sql_open(rn_datadir_t *d, const char *sql, size_t len, const rn_sql_opts_t *o,
                rn_sql_t **out, int *erroff, char *errmsg)
{
    *out = NULL;
    if (erroff) *erroff = -1;
    if (errmsg) errmsg[0] = '\0';
    rn_sql_t *q = calloc(1, sizeof *q);
    if (!q) return rn_errf(errmsg, -ENOMEM, "out of memory");
    q->d = d;
    if (o) q->o = *o;
    else rn_sql_opts_default(&q->o);
    if (!q->o.poll_ms) q->o.poll_ms = 20;
    q->st.watermark = INT64_MIN;
    q->state = RN_SQL_MORE;
    q->cur_queue = UINT32_MAX;
    int rc;
    q->text = malloc(len + 1);
    if (!q->text) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    memcpy(q->text, sql, len);
    q->text[len] = '\0';
    rc = rn_front_parse(&q->f, q->text, len, erroff, errmsg);
    if (rc != 0) goto fail;
    switch (q->f.kind) {
    case SK_SELECT: case SK_EXPLAIN:
        rc = open_select(q, erroff, errmsg);
        break;
    case SK_SHOW: {
        const char *names[] = {"name", "topic", "format", "timestamp", "fields"};
        rc = set_columns(q, 5, names, NULL);
        break;
    }
    case SK_CREATE_FN:
        rc = check_function(q, erroff, errmsg);
        break;
    case SK_SHOW_FN: {
        const char *names[] = {"name", "source", "definition"};
        rc = set_columns(q, 3, names, NULL);
        break;
    }
    case SK_SHOW_TABLES: {
        const char *names[] = {"name", "source", "format", "primary_key", "fields"};
        rc = set_columns(q, 5, names, NULL);
        break;
    }
    case SK_CREATE_TABLE_AS:
        if (q->o.remote) {
            int same;
            rc = rn_ctas_create(q->d, q->f.name, "", 0, 1, &same, errmsg);
        }
        break;
    case SK_CREATE_TABLE:
        if (q->f.def.file[0] && q->o.remote)
            rc = rn_errf(errmsg, -EPERM, "table '%s': a file table (WITH (file = ...)) is "
                         "created embedded only; runneld does not read a path a client names",
                         q->f.def.name);
        break;
    case SK_DESCRIBE: {
        const char *names[] = {"column", "type", "source"};
        char why[RN_ERRMSG_SIZE];
        /* a table first: run_describe lists its columns (a table's topic is
         * also a topic of the same name, described as such only without one) */
        if (!(q->tdef = malloc(sizeof *q->tdef))) rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        else if (rn_table_get(q->d, q->f.name, q->tdef, why) == 0) rc = 0;
        else {
            free(q->tdef);
            q->tdef = NULL;
            rc = resolve(q, q->f.name, NULL, errmsg);
        }
        if (rc == RN_ENOTFOUND && erroff) *erroff = (int)q->f.toks[q->f.name_tok].off;
        if (rc == 0) rc = set_columns(q, 3, names, NULL);
        break;
    }
    default:
        rc = 0;
        break;
    }
    if (rc == -ENOMEM && errmsg && !errmsg[0]) rn_errf(errmsg, rc, "out of memory");
    if (rc != 0 && erroff && q->f.topn) *erroff = rn_topn_map_offset(q->f.topn, *erroff);
    if (rc != 0) goto fail;
    *out = q;
    return 0;
fail:
    rn_sql_close(q);
    return rc;
}

void rn_sql_columns(rn_sql_t *q, const rn_sql_column_t **cols, int *n)
{
    *cols = q->cols;
    *n = q->ncols;
}

int rn_sql_is_query(rn_sql_t *q)
{
    return q->f.kind == SK_SELECT;
}

int rn_sql_changes_metadata(rn_sql_t *q)
{
    stmt_kind_t k = q->f.kind;
    return k == SK_CREATE || k == SK_DROP || k == SK_CREATE_FN || k == SK_DROP_FN ||
           k == SK_CREATE_TABLE || k == SK_DROP_TABLE || k == SK_CREATE_TABLE_AS;
}

void rn_sql_cancel(rn_sql_t *q)
{
    atomic_store(&q->cancel, 1);
    if (q->db) sqlite3_interrupt(q->db);    /* a statement that never returns */
}

void rn_sql_progress(rn_sql_t *q, int n, int (*fn)(void *), void *ctx)
{
    if (q->db) sqlite3_progress_handler(q->db, n, fn, ctx);
}

void rn_sql_stats(rn_sql_t *q, rn_sql_stats_t *out)
{
    *out = q->st;
    if (q->sj) rn_sjoin_stats(q->sj, out);
    if (q->win) out->watermark = rn_win_watermark(q->win);
    uint64_t ranges;
    if (q->cons) rn_consumer_skipped(q->cons, &out->skipped, &ranges);
}

void rn_sql_close(rn_sql_t *q)
{
    if (!q) return;
    rn_table_close(q->tbl);
    rn_sjoin_close(q->sj);
    free(q->tdef);
    sqlite3_finalize(q->bst);
    sqlite3_finalize(q->est);
    /* and the bodies of SQL functions prepared on it (fn_udf.c invariant 3) */
    for (sqlite3_stmt *st; q->db && (st = sqlite3_next_stmt(q->db, NULL)) != NULL;)
        sqlite3_finalize(st);
    sqlite3_close(q->db);
    rn_win_destroy(q->win);
    rn_topn_destroy(q->topn);
    rn_consumer_destroy(q->cons);
    rn_front_free(&q->f);
    for (int i = 0; i < q->ncols; i++) free(q->colnames[i]);
    free(q->colnames);
    free(q->cols);
    free(q->vals);
    free(q->b.rows);
    sqlite3_free(q->b.ptext);
    free(q->dcol);
    free(q->dtext);
    free(q->pmax);
    free(q->fv);
    free(q->qmax);
    free(q->qend);
    free(q->qlive);
    free(q->qdone);
    rn_buf_free(&q->arena);
    free(q->text);
    free(q);
}

/* ---- metadata statements --------------------------------------------------------------- */

/* The stored form of a CREATE STREAM statement's stream. */
static int stream_record(const rn_sql_t *q, rn_meta_stream_t *s, char *errmsg)
{
    const sdef_t *def = &q->f.def;
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", def->name);
    snprintf(s->topic, sizeof s->topic, "%s", def->topic);
    snprintf(s->format, sizeof s->format, "%s", rn_front_format_name(def->format));
    if (def->ts_field >= 0)
        snprintf(s->timestamp, sizeof s->timestamp, "%s", def->fields[def->ts_field].name);
    int rc = rn_front_fields_text(def, s->fields, sizeof s->fields);
    if (rc != 0) return rn_errf(errmsg, rc, "the field list is too long");
    /* one namespace for streams and tables (a join names a table, FROM a stream) */
    rn_meta_table_t *t = malloc(sizeof *t);
    char why[RN_ERRMSG_SIZE];
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_meta_t *m = rn_datadir_meta_lock(q->d);
    int table = rn_meta_table_get(m, def->name, t, why) == 0;
    rn_datadir_meta_unlock(q->d);
    free(t);
    return table ? rn_errf(errmsg, RN_EINVAL, "'%s' is a table; a stream needs another name",
                           def->name) : 0;
}

static int run_create(rn_sql_t *q, char *errmsg)
{
    rn_meta_stream_t *s = malloc(sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = stream_record(q, s, errmsg);
    if (rc == 0) {
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        rc = rn_meta_stream_create(m, s, errmsg);
        rn_datadir_meta_unlock(q->d);
    }
    free(s);
    return rc;
}

/* What differs between two definitions of a stream, or "" when none does. */
static void stream_diff(const rn_meta_stream_t *a, const rn_meta_stream_t *b, char *out,
                        size_t size)
{
    out[0] = '\0';
    if (strcmp(a->topic, b->topic))
        snprintf(out, size, "topic '%s', now '%s'", a->topic, b->topic);
    else if (strcmp(a->format, b->format))
        snprintf(out, size, "format '%s', now '%s'", a->format, b->format);
    else if (strcmp(a->timestamp, b->timestamp))
        snprintf(out, size, "timestamp '%s', now '%s'", a->timestamp[0] ? a->timestamp : "(none)",
                 b->timestamp[0] ? b->timestamp : "(none)");
    else if (strcmp(a->fields, b->fields))
        snprintf(out, size, "fields (%.200s), now (%.200s)", a->fields, b->fields);
}

static int run_create_function(rn_sql_t *q, char *errmsg);

/* CREATE TABLE name AS SELECT ...: ctas.c. */
static int run_ctas(rn_sql_t *q, int *same, char *errmsg)
{
    const char *sel = q->f.sql + q->f.toks[q->f.body].off;
    return rn_ctas_create(q->d, q->f.name, sel, q->f.len - (size_t)(sel - q->f.sql),
                          q->o.remote, same, errmsg);
}

int rn_sql_define(rn_datadir_t *d, const char *sql, size_t len, rn_sql_def_t *outcome,
                  int *erroff, char *errmsg)
{
    rn_sql_t *q = NULL;
    int rc = rn_sql_open(d, sql, len, NULL, &q, erroff, errmsg);
    if (rc != 0) return rc;
    rn_meta_stream_t *s = NULL, *old = NULL;
    if (q->f.kind == SK_CREATE_FN) {
        /* stored with the same text: unchanged; with another, open failed already */
        *outcome = q->fn_same ? RN_SQL_DEF_UNCHANGED : RN_SQL_DEF_CREATED;
        if (!q->fn_same) rc = run_create_function(q, errmsg);
    } else if (q->f.kind == SK_DROP_FN) {
        rn_meta_t *m = rn_datadir_meta_lock(d);
        rc = rn_meta_function_drop(m, q->f.name, errmsg);
        rn_datadir_meta_unlock(d);
        *outcome = rc == RN_ENOTFOUND ? RN_SQL_DEF_ABSENT : RN_SQL_DEF_DROPPED;
        if (rc == RN_ENOTFOUND) rc = 0;
    } else if (q->f.kind == SK_DROP) {
        rn_meta_t *m = rn_datadir_meta_lock(d);
        rc = rn_meta_stream_drop(m, q->f.name, errmsg);
        rn_datadir_meta_unlock(d);
        *outcome = rc == RN_ENOTFOUND ? RN_SQL_DEF_ABSENT : RN_SQL_DEF_DROPPED;
        if (rc == RN_ENOTFOUND) rc = 0;
    } else if (q->f.kind == SK_CREATE_TABLE) {
        int same = 0;
        rc = rn_table_create(d, &q->f.def, 0, &same, errmsg);
        *outcome = same ? RN_SQL_DEF_UNCHANGED : RN_SQL_DEF_CREATED;
    } else if (q->f.kind == SK_CREATE_TABLE_AS) {
        int same = 0;
        rc = run_ctas(q, &same, errmsg);
        *outcome = same ? RN_SQL_DEF_UNCHANGED : RN_SQL_DEF_CREATED;
    } else if (q->f.kind == SK_DROP_TABLE) {
        rc = rn_ctas_drop(d, q->f.name, errmsg);
        if (rc == 0) rc = rn_table_drop(d, q->f.name, errmsg);
        *outcome = rc == RN_ENOTFOUND ? RN_SQL_DEF_ABSENT : RN_SQL_DEF_DROPPED;
        if (rc == RN_ENOTFOUND) rc = 0;
    } else if (q->f.kind != SK_CREATE) {
        rc = rn_errf(errmsg, RN_EINVAL, "not a definition: give CREATE STREAM, DROP STREAM, "
                     "CREATE TABLE, DROP TABLE, CREATE FUNCTION or DROP FUNCTION");
    } else if (!(s = malloc(sizeof *s)) || !(old = malloc(sizeof *old))) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
    } else if ((rc = stream_record(q, s, errmsg)) == 0) {
        rn_meta_t *m = rn_datadir_meta_lock(d);
        rc = rn_meta_stream_get(m, s->name, old, errmsg);
        if (rc == RN_ENOTFOUND) rc = rn_meta_stream_create(m, s, errmsg);
        else if (rc == 0) rc = 1;                      /* it exists: compare below */
        rn_datadir_meta_unlock(d);
        *outcome = RN_SQL_DEF_CREATED;
        if (rc == 1) {
            char diff[600];
            stream_diff(old, s, diff, sizeof diff);
            *outcome = RN_SQL_DEF_UNCHANGED;
            rc = !diff[0] ? 0
                 : rn_errf(errmsg, RN_EEXIST, "stream '%s' exists with %s; to apply the new "
                           "definition, DROP STREAM %s first", s->name, diff, s->name);
        }
    }
    free(s);
    free(old);
    rn_sql_close(q);
    return rc;
}

static int run_create_function(rn_sql_t *q, char *errmsg)
{
    if (q->fn_same)
        return rn_errf(errmsg, RN_EEXIST, "function '%s' already exists, with this definition",
                       q->f.fn.name);
    rn_meta_function_t *fn = calloc(1, sizeof *fn);
    rn_buf_t text = RN_BUF_INIT;
    if (!fn || rn_front_function_text(&q->f.fn, &text) != 0) {
        free(fn);
        rn_buf_free(&text);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    int rc = 0;
    snprintf(fn->name, sizeof fn->name, "%s", q->f.fn.name);
    if (text.len > sizeof fn->def)
        rc = rn_errf(errmsg, RN_ETOOBIG, "the function's definition is longer than %d bytes",
                     RN_META_FUNCTION_MAX);
    else
        memcpy(fn->def, text.data, text.len);
    if (rc == 0) {
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        rc = rn_meta_function_create(m, fn, errmsg);
        rn_datadir_meta_unlock(q->d);
    }
    free(fn);
    rn_buf_free(&text);
    return rc;
}

static int run_show_functions(rn_sql_t *q, char *errmsg)
{
    rn_meta_function_t *v = NULL;
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; rc == 0 && rn_udf_template(i); i++) {
        const char *t = rn_udf_template(i);
        char name[RN_SQL_MAX_NAME + 1];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(t, "("), t);
        const char *row[3] = {name, "template", t};
        rc = deliver_texts(q, row);
    }
    rn_meta_t *m = rn_datadir_meta_lock(q->d);
    if (rc == 0) rc = rn_meta_function_list(m, &v, &n, errmsg);
    rn_datadir_meta_unlock(q->d);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *row[3] = {v[i].name, "stored", v[i].def};
        rc = deliver_texts(q, row);
    }
    free(v);
    return rc;
}

static int run_show(rn_sql_t *q, char *errmsg)
{
    rn_meta_stream_t *v = NULL;
    size_t n = 0;
    rn_meta_t *m = rn_datadir_meta_lock(q->d);
    int rc = rn_meta_stream_list(m, &v, &n, errmsg);
    rn_datadir_meta_unlock(q->d);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *row[5] = {v[i].name, v[i].topic, v[i].format,
                              v[i].timestamp[0] ? v[i].timestamp : NULL, v[i].fields};
        rc = deliver_texts(q, row);
    }
    free(v);
    return rc;
}

static int deliver_row_cb(void *ctx, const char *const *v)
{
    return deliver_texts(ctx, v);
}

static int run_describe(rn_sql_t *q)
{
    if (q->tdef) return rn_table_describe(q->tdef, deliver_row_cb, q);
    static const char *const builtin[][3] = {
        {"queue", "INTEGER", "logical queue"},
        {"offset", "INTEGER", "record offset in its queue"},
        {"ts", "INTEGER", "event time (ms)"},
        {"key", "TEXT", "record key"},
        {"value", "TEXT", "record value"},
    };
    char ts_src[RN_SQL_MAX_NAME + RN_SQL_MAX_TS_FORMAT + 64] = "record timestamp (ms)";
    if (q->def.ts_field >= 0)
        snprintf(ts_src, sizeof ts_src, "event time: field '%s' (%s)",
                 q->def.fields[q->def.ts_field].name,
                 q->def.ts_format[0] ? q->def.ts_format : "ms");
    /* In SELECT * order (vtab.c): the built-ins but value, the fields, value. */
    for (int i = 0; i < 4; i++) {
        const char *row[3] = {builtin[i][0], builtin[i][1], i == 2 ? ts_src : builtin[i][2]};
        int rc = deliver_texts(q, row);
        if (rc != 0) return rc;
    }
    for (int i = 0; i < q->def.nfields; i++) {
        if (i == rn_front_ts_field(&q->def)) continue;  /* the ts row above */
        char src[64];
        snprintf(src, sizeof src, "%s field of topic '%.30s'", rn_front_format_name(q->def.format),
                 q->def.topic);
        const char *row[3] = {q->def.fields[i].name, rn_front_ftype_name(q->def.fields[i].type), src};
        int rc = deliver_texts(q, row);
        if (rc != 0) return rc;
    }
    return deliver_texts(q, builtin[4]);
}

static int plan_line(rn_sql_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int plan_line(rn_sql_t *q, const char *fmt, ...)
{
    char line[ROW_TEXT_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const char *row[1] = {line};
    return deliver_texts(q, row);
}

static int sqlite_plan(rn_sql_t *q, const char *sql)
{
    char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (!eqp) return -ENOMEM;
    if (sqlite3_prepare_v2(q->db, eqp, -1, &st, NULL) == SQLITE_OK) {
        while (rc == 0 && sqlite3_step(st) == SQLITE_ROW)
            rc = plan_line(q, "    sqlite: %s", (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    sqlite3_free(eqp);
    return rc;
}

static const char *win_name(win_kind_t k)
{
    switch (k) {
    case WK_TUMBLE: return "TUMBLE";
    case WK_HOP: return "HOP";
    case WK_SESSION: return "SESSION";
    case WK_GLOBAL: return "GLOBAL (no window: one group set, emitted at the end)";
    default: return "none";
    }
}

static int run_explain(rn_sql_t *q)
{
    static const char *const from[] = {"earliest", "latest", "@timestamp", "checkpoint"};
    const front_t *f = &q->f;
    int rc = plan_line(q, "source: %s '%s' over topic '%s', format %s, %d field(s), event time %s%s",
                       q->def.declared ? "stream" : "topic", q->def.name, q->def.topic,
                       rn_front_format_name(q->def.format), q->def.nfields,
                       q->def.ts_field >= 0 ? "field " : "record timestamp",
                       q->def.ts_field >= 0 ? q->def.fields[q->def.ts_field].name : "");
    if (rc == 0)
        rc = plan_line(q, "read: from %s, %s", from[q->o.from],
                       q->o.follow ? "continuous (--follow)" : "bounded (to the current end)");
    if (rc == 0 && q->tbl) {
        char src[RN_SQL_MAX_PATH + 64];
        rn_table_source(q->tbl, src, sizeof src);
        rc = plan_line(q, "join: %s table '%s' over %s, looked up by its primary key '%s'; "
                       "lookups see the table %s", f->join == 2 ? "LEFT JOIN" : "JOIN", f->jname,
                       src, q->tdef->fields[q->tdef->pk1 - 1].name,
                       !q->o.follow ? "as it was at open (read to its end then)"
                       : q->o.table_at_save ? "as of the last checkpoint"
                       : "as of each batch's processing (caught up before every batch)");
    }
    if (rc == 0) rc = plan_line(q, "per-batch statement: %s", f->batch_sql);
    if (rc == 0) rc = sqlite_plan(q, f->batch_sql);
    if (rc == 0 && f->win == WK_NONE && q->bst) {
        int *cols = calloc((size_t)sqlite3_column_count(q->bst) + 1, sizeof *cols);
        if (!cols) return -ENOMEM;
        if (direct_shape(q, cols))
            rc = plan_line(q, "rows: computed in C from the decoded fields (every WHERE term "
                           "evaluated in the scan, every result column a bare column)");
        free(cols);
    }
    if (rc == 0 && f->win != WK_NONE) {
        char aggs[ROW_TEXT_MAX] = "";
        size_t n = 0;
        for (int k = 0; k < f->naggs && n < sizeof aggs; k++)
            n += (size_t)snprintf(aggs + n, sizeof aggs - n, "%s__a%d = %s", k ? ", " : "", k,
                                  f->aggs[k].text);
        char size[64] = "";
        if (f->win == WK_HOP)
            snprintf(size, sizeof size, " size %lld ms, slide %lld ms", (long long)f->size_ms,
                     (long long)f->slide_ms);
        else if (f->win != WK_GLOBAL)
            snprintf(size, sizeof size, " %s %lld ms", f->win == WK_SESSION ? "gap" : "size",
                     (long long)f->size_ms);
        rc = plan_line(q, "window: %s%s, watermark delay %lld ms, idle timeout %lld ms%s, late "
                       "rows counted and dropped%s", win_name(f->win), size,
                       (long long)f->watermark_ms, (long long)f->idle_ms,
                       f->idle_ms ? "" : " (none)", f->proctime ? "; over processing time "
                       "(proctime(): not replayable)" : "");
        if (rc == 0 && f->distinct)
            rc = plan_line(q, "distinct: a row is emitted when its values are first seen (the "
                           "set of rows seen grows with the distinct values)");
        for (int k = 0; rc == 0 && k < f->nkeys; k++)
            rc = plan_line(q, "group key __k%d = %s", k, f->keys[k]);
        if (rc == 0) rc = plan_line(q, "aggregates (incremental, in C): %s", aggs[0] ? aggs : "none");
        if (rc == 0)
            rc = plan_line(q, "emit %s: %s", f->emit_changes ? "CHANGES" : "FINAL", f->emit_sql);
        if (rc == 0) rc = sqlite_plan(q, f->emit_sql);
        if (rc == 0 && f->topn) {
            char line[ROW_TEXT_MAX];
            rn_topn_describe(f->topn, line, sizeof line);
            rc = plan_line(q, "topn: %s", line);
        }
    }
    if (rc == 0 && f->limit >= 0) rc = plan_line(q, "limit: %lld rows", (long long)f->limit);
    return rc;
}

/* ---- running a SELECT -------------------------------------------------------------------- */

static int emit_groups(rn_sql_t *q, int close_all, char *errmsg)
{
    wgroup_t **g;
    size_t n;
    int rc = rn_win_collect(q->win, close_all, &g, &n, errmsg);
    if (rc != 0) return rc;
    q->b.groups = g;
    q->b.ngroups = n;
    q->st.windows += n;
    if (n) {
        sqlite3_reset(q->est);
        int s = SQLITE_DONE;
        while (!limit_reached(q) && (s = sqlite3_step(q->est)) == SQLITE_ROW)
            if ((rc = q->topn ? rn_topn_add(q->topn, q->est, errmsg)
                              : deliver_stmt(q, q->est)) != 0)
                break;
        if (rc == 0 && !limit_reached(q) && s != SQLITE_DONE)
            rc = rn_errf(errmsg, RN_EINVAL, "%s", sqlite3_errmsg(q->db));
        sqlite3_reset(q->est);
        /* the windows that closed now are complete: rank them (topn.c invariant 1) */
        if (q->topn) {
            int r = rn_topn_flush(q->topn, deliver_ranked, q);
            if (rc == 0) rc = r;
        }
    }
    q->b.groups = NULL;
    q->b.ngroups = 0;
    rn_win_release(q->win);
    return rc;
}

static int grow_rows(rn_sql_t *q, size_t n, char *errmsg)
{
    if (n > q->rowcap) {
        srow_t *r = realloc(q->b.rows, n * sizeof *r);
        if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
        q->b.rows = r;
        int64_t *m = realloc(q->pmax, n * sizeof *m);
        if (!m) return rn_errf(errmsg, -ENOMEM, "out of memory");
        q->pmax = m;
        q->rowcap = n;
    }
    size_t nf = n * (size_t)q->def.nfields;
    if (nf > q->fvcap) {
        fval_t *v = realloc(q->fv, nf * sizeof *v);
        if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
        q->fv = v;
        q->fvcap = nf;
    }
    return 0;
}

/* A TEXT event time read with the stream's timestamp_format. */
static int parse_ts(const rn_sql_t *q, const fval_t *t, int64_t *ts, char *why)
{
    char w[RN_ERRMSG_SIZE];
    if (rn_sql_parse_time(t->s, t->n, q->def.ts_format, ts, w) == 0) return 0;
    return rn_errf(why, RN_EINVAL, "timestamp field '%s': cannot read '%.*s' as %s: %s",
                   q->def.fields[q->def.ts_field].name, (int)(t->n < 40 ? t->n : 40), t->s,
                   q->def.ts_format, w);
}

/* Decode the batch into the stream table's rows. */
static int load_batch(rn_sql_t *q, const rn_consumer_batch_t *cb, char *errmsg)
{
    /* Every declared field is decoded and type-checked on every record, so
     * whether a record is rejected never depends on the columns a query
     * reads (count(*) and sum(x) see the same records). */
    uint64_t need = q->def.nfields >= 64 ? ~0ull : (1ull << q->def.nfields) - 1;
    int want_ts = q->def.ts_field >= 0;
    int rc = grow_rows(q, cb->count, errmsg);
    if (rc != 0) return rc;
    size_t total = 0;
    for (uint32_t i = 0; i < cb->count; i++)
        if (cb->records[i].value_len > 0) total += (size_t)cb->records[i].value_len;
    q->arena.len = 0;
    if (need && rn_buf_reserve(&q->arena, total + 1, 0) != 0)
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    size_t n = 0;
    char why[RN_ERRMSG_SIZE];
    for (uint32_t i = 0; i < cb->count; i++) {
        const rn_record_t *r = &cb->records[i];
        srow_t *row = &q->b.rows[n];
        row->queue = cb->queue;
        row->offset = r->offset;
        row->ts = r->timestamp;
        row->key = r->key;
        row->key_len = r->key_len;
        row->value = r->value;
        row->value_len = r->value_len;
        row->fields = q->def.nfields ? &q->fv[n * (size_t)q->def.nfields] : NULL;
        row->rec = r;
        if (need) {
            rc = rn_scan_record(&q->def, need, r->value, r->value_len, row->fields, &q->arena,
                                 why);
            if (rc == 0 && want_ts && q->def.ts_field >= 0) {
                const fval_t *t = &row->fields[q->def.ts_field];
                if (t->type == RN_SQL_NULL)
                    rc = rn_errf(why, RN_EINVAL, "timestamp field '%s' is missing or null",
                                 q->def.fields[q->def.ts_field].name);
                else if (q->def.ts_format[0])
                    rc = parse_ts(q, t, &row->ts, why);
                else row->ts = t->i;
            }
            if (rc != 0) {
                if (q->st.errors++ == 0)
                    snprintf(q->st.first_error, sizeof q->st.first_error,
                             "topic '%.60s' queue %u offset %lld: %.150s", q->def.topic, cb->queue,
                             (long long)r->offset, why);
                if (q->o.reject && (rc = q->o.reject(q->o.ctx, cb->queue, r, why)) != 0)
                    return rc < 0 ? rc : RN_ECLOSED;
                continue;
            }
        }
        n++;
    }
    q->batch_max = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        if (q->b.rows[i].ts > q->batch_max) q->batch_max = q->b.rows[i].ts;
        q->pmax[i] = q->batch_max;
    }
    q->b.nrows = n;
    q->st.records += cb->count;
    return 0;
}

/* The event-time frontier over the queues still being read, leaving out
 * queue `skip` (UINT32_MAX: none): INT64_MIN while one of them has not
 * delivered yet; INT64_MAX when none is left. */
static int64_t frontier(const rn_sql_t *q, uint32_t skip)
{
    int64_t m = INT64_MAX;
    for (uint32_t i = 0; i < q->nq; i++)
        if (i != skip && q->qlive[i] && !q->qdone[i] && q->qmax[i] < m) m = q->qmax[i];
    return m;
}

/* Step the per-batch statement over the stream table's current rows,
 * feeding each result row on (delivered, or folded into the windows) except
 * the first *skip, which an earlier pass already fed (*skip counts down);
 * *fed counts the rows fed. Returns 0 or the error of a callback / the
 * window state; *s is sqlite's last step status. */
static int step_rows(rn_sql_t *q, uint32_t queue, int64_t others, uint64_t *skip,
                     uint64_t *fed, int *s, char *errmsg)
{
    sqlite3_value *keys[RN_SQL_MAX_KEYS], *args[2 * RN_SQL_MAX_AGGS];
    int rc = 0;
    if (q->direct) {
        *s = SQLITE_DONE;
        return direct_rows(q, skip, fed);
    }
    sqlite3_reset(q->bst);
    while ((*s = sqlite3_step(q->bst)) == SQLITE_ROW) {
        if (*skip) { (*skip)--; continue; }
        (*fed)++;
        if (!q->win) {
            if ((rc = deliver_stmt(q, q->bst)) != 0 || limit_reached(q)) break;
            continue;
        }
        int64_t ts = sqlite3_column_int64(q->bst, 0);
        for (int k = 0; k < q->f.nkeys; k++) keys[k] = sqlite3_column_value(q->bst, 1 + k);
        for (int a = 0; a < q->nargs; a++)
            args[a] = sqlite3_column_value(q->bst, 1 + q->f.nkeys + a);
        /* the frontier moves over every record of the queue up to this row,
         * those the filter dropped included (invariant 8) */
        int64_t idx = sqlite3_column_int64(q->bst, 1 + q->f.nkeys + q->nargs);
        int64_t upto = idx >= 0 && (size_t)idx < q->b.nrows ? q->pmax[idx] : ts;
        if (q->f.proctime) {
            rn_win_advance(q->win, ts);         /* processing time: the clock is the frontier */
        } else if (queue < q->nq && upto > q->qmax[queue]) {
            q->qmax[queue] = upto;
            rn_win_advance(q->win, upto < others ? upto : others);
        }
        if ((rc = rn_win_add(q->win, ts, keys, args, &q->st.late, errmsg)) != 0) break;
        /* EMIT CHANGES: one change per row that changed a group (invariant 8) */
        if (q->f.emit_changes && (rc = emit_groups(q, 0, errmsg)) != 0) break;
        if (limit_reached(q)) break;
    }
    return rc;
}

/* Count and report a record whose row the per-batch statement could not
 * evaluate (invariant 7). */
static int reject_row(rn_sql_t *q, const srow_t *row, const char *why)
{
    if (q->st.errors++ == 0)
        snprintf(q->st.first_error, sizeof q->st.first_error,
                 "topic '%.60s' queue %u offset %lld: %.150s", q->def.topic, row->queue,
                 (long long)row->offset, why);
    if (!q->o.reject) return 0;
    int rc = q->o.reject(q->o.ctx, row->queue, row->rec, why);
    return rc == 0 ? 0 : rc < 0 ? rc : RN_ECLOSED;
}

/* The batch pass failed with an error of the rows' evaluation (malformed
 * JSON, ...) after feeding `fed` rows: run the batch again one record at a
 * time (the stream table's window [lo, lo + 1)), feeding only the rows past
 * those `fed` (the same rows in the same order: the per-batch statement is
 * a row-at-a-time scan of the stream, with at most one table row per record
 * (invariant 9): front.c admits no other join, no subquery, ORDER BY,
 * DISTINCT or GROUP BY in it) and rejecting each record whose own
 * pass fails. */
static int redo_by_record(rn_sql_t *q, uint32_t queue, int64_t others, uint64_t fed,
                          char *errmsg)
{
    size_t n = q->b.nrows;
    uint64_t skip = fed, got = 0;
    int rc = 0, s = SQLITE_DONE;
    char why[RN_ERRMSG_SIZE];
    for (size_t j = 0; j < n && rc == 0 && !limit_reached(q); j++) {
        q->b.lo = j;
        q->b.nrows = j + 1;
        rc = step_rows(q, queue, others, &skip, &got, &s, errmsg);
        if (rc != 0 || s == SQLITE_ROW || s == SQLITE_DONE) continue;
        if ((s & 0xff) != SQLITE_ERROR) {
            rc = rn_errf(errmsg, RN_EINVAL, "%s", sqlite3_errmsg(q->db));
            break;
        }
        /* a scan yields at most one row per record, so a record whose
         * pass failed fed none */
        snprintf(why, sizeof why, "%s", sqlite3_errmsg(q->db));
        sqlite3_reset(q->bst);
        rc = reject_row(q, &q->b.rows[j], why);
    }
    sqlite3_reset(q->bst);
    q->b.lo = 0;
    q->b.nrows = n;
    return rc;
}

static int run_batch(rn_sql_t *q, uint32_t queue, char *errmsg)
{
    int rc = 0, s = SQLITE_DONE;
    uint64_t skip = 0, fed = 0;
    int64_t others = q->win ? frontier(q, queue) : INT64_MAX;
    if (queue < q->nq) q->qlive[queue] = 1;
    rc = step_rows(q, queue, others, &skip, &fed, &s, errmsg);
    if (rc == 0 && s != SQLITE_ROW && s != SQLITE_DONE) {
        if ((s & 0xff) == SQLITE_ERROR)
            rc = redo_by_record(q, queue, others, fed, errmsg);
        else
            rc = rn_errf(errmsg, RN_EINVAL, "%s", sqlite3_errmsg(q->db));
    }
    sqlite3_reset(q->bst);
    q->b.nrows = 0;
    if (rc == 0 && q->win && queue < q->nq) {
        /* records the filter dropped move the frontier too; so does a queue
         * that reached its end (it no longer holds the others back) */
        if (q->batch_max > q->qmax[queue]) q->qmax[queue] = q->batch_max;
        int64_t pos;
        if (q->qend[queue] >= 0 &&
            rn_consumer_position(q->cons, q->def.topic, queue, &pos, errmsg) == 0 &&
            pos >= q->qend[queue])
            q->qdone[queue] = 1;
        int64_t fr = q->f.proctime ? rn_sys.now_ms() : frontier(q, UINT32_MAX);
        if (fr != INT64_MAX) rn_win_advance(q->win, fr);
    }
    if (rc == 0 && q->win && !limit_reached(q)) rc = emit_groups(q, 0, errmsg);
    return rc;
}

static int step_select(rn_sql_t *q, rn_sql_state_t *state, char *errmsg)
{
    rn_consumer_batch_t cb;
    q->cur_queue = UINT32_MAX;
    int rc;
    if (q->sj) {
        rc = rn_sjoin_step(q->sj, sjoin_row, q, state, errmsg);
        if (rc == 1) rc = 0;
        if (rc == 0 && limit_reached(q)) *state = RN_SQL_DONE;
        return rc;
    }
    /* a following query's lookups see the table as of the batch's processing
     * (invariant 9) */
    if (q->tbl && q->o.follow && !q->o.table_at_save && (rc = rn_table_sync(q->tbl, errmsg)) != 0)
        return rc;
    rc = rn_consumer_poll(q->cons, &cb, errmsg);
    if (rc < 0) return rc;
    if (rc == 1) {
        q->cur_queue = cb.queue;
        q->next_q = q->nq ? (cb.queue + 1) % q->nq : 0;
        if ((rc = load_batch(q, &cb, errmsg)) != 0) return rc;
        if ((rc = run_batch(q, cb.queue, errmsg)) != 0) return rc;
        q->last_data_ms = rn_sys.now_ms();
        *state = limit_reached(q) ? RN_SQL_DONE : RN_SQL_MORE;
        return 0;
    }
    if (!q->o.follow) {
        if (q->win && !limit_reached(q)) rc = emit_groups(q, 1, errmsg);
        *state = RN_SQL_DONE;
        return rc;
    }
    if (q->win && q->f.proctime && rn_win_has_open(q->win)) {
        /* processing-time windows close by the clock, records or not */
        rn_win_advance(q->win, rn_sys.now_ms());
        rc = emit_groups(q, 0, errmsg);
        if (rc != 0) return rc;
    } else if (q->win && q->f.idle_ms > 0 && rn_win_has_open(q->win) &&
               rn_sys.now_ms() - q->last_data_ms >= q->f.idle_ms) {
        rc = emit_groups(q, 2, errmsg);
        if (rc != 0) return rc;
    }
    *state = limit_reached(q) ? RN_SQL_DONE : RN_SQL_IDLE;
    return 0;
}

int rn_sql_step(rn_sql_t *q, rn_sql_state_t *state, char *errmsg)
{
    int rc = 0;
    if (q->state == RN_SQL_DONE || atomic_load(&q->cancel)) {
        q->state = *state = RN_SQL_DONE;
        return 0;
    }
    if (!q->started) {
        q->started = 1;
        q->last_data_ms = rn_sys.now_ms();
    }
    *state = RN_SQL_DONE;
    switch (q->f.kind) {
    case SK_SELECT: rc = q->pull ? step_pull(q, state, errmsg) : step_select(q, state, errmsg);
        break;
    case SK_EXPLAIN: rc = run_explain(q); break;
    case SK_CREATE: rc = run_create(q, errmsg); break;
    case SK_SHOW: rc = run_show(q, errmsg); break;
    case SK_DESCRIBE: rc = run_describe(q); break;
    case SK_DROP: {
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        rc = rn_meta_stream_drop(m, q->f.name, errmsg);
        rn_datadir_meta_unlock(q->d);
        if (rc == RN_ENOTFOUND && q->f.if_exists) rc = 0;
        break;
    }
    case SK_CREATE_FN: rc = run_create_function(q, errmsg); break;
    case SK_DROP_FN: {
        rn_meta_t *m = rn_datadir_meta_lock(q->d);
        rc = rn_meta_function_drop(m, q->f.name, errmsg);
        rn_datadir_meta_unlock(q->d);
        if (rc == RN_ENOTFOUND && rn_udf_is_template(q->f.name))
            rc = rn_errf(errmsg, RN_EINVAL, "%s is a shipped template; it cannot be dropped",
                         q->f.name);
        if (rc == RN_ENOTFOUND && q->f.if_exists) rc = 0;
        break;
    }
    case SK_SHOW_FN: rc = run_show_functions(q, errmsg); break;
    case SK_CREATE_TABLE: {
        int same = 0;
        rc = rn_table_create(q->d, &q->f.def, q->o.remote, &same, errmsg);
        if (rc == 0 && same)
            rc = rn_errf(errmsg, RN_EEXIST, "table '%s' already exists, with this definition",
                         q->f.def.name);
        break;
    }
    case SK_DROP_TABLE:
        rc = rn_ctas_drop(q->d, q->f.name, errmsg);
        if (rc == 0) rc = rn_table_drop(q->d, q->f.name, errmsg);
        if (rc == RN_ENOTFOUND && q->f.if_exists) rc = 0;
        break;
    case SK_CREATE_TABLE_AS: {
        int same = 0;
        rc = run_ctas(q, &same, errmsg);
        if (rc == 0 && same)
            rc = rn_errf(errmsg, RN_EEXIST, "table '%s' already exists, with this definition",
                         q->f.name);
        break;
    }
    case SK_SHOW_TABLES: rc = rn_table_show(q->d, deliver_row_cb, q, errmsg); break;
    }
    if (rc == RN_ECLOSED && errmsg && !errmsg[0]) rn_errf(errmsg, rc, "stopped by the receiver");
    if (rc != 0) *state = RN_SQL_DONE;
    if (q->win) q->st.watermark = rn_win_watermark(q->win);
    q->state = *state;
    return rc;
}

int rn_sql_wait(rn_sql_t *q, uint32_t ms)
{
    if (q->cons) return rn_consumer_wait(q->cons, ms);
    if (q->sj) return rn_sjoin_wait(q->sj, ms);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

int rn_sql_run(rn_sql_t *q, char *errmsg)
{
    for (;;) {
        rn_sql_state_t s;
        int rc = rn_sql_step(q, &s, errmsg);
        if (rc != 0 || s == RN_SQL_DONE) return rc;
        if (s == RN_SQL_IDLE) rn_sql_wait(q, q->o.poll_ms);
    }
}

/* ---- checkpoints ---------------------------------------------------------------------- */

#define STATE_MAGIC 0x31534e52u   /* "RNS1" */

static int put(rn_buf_t *b, const void *p, size_t n)
{
    return rn_buf_append(b, p, n, 0) == 0 ? 0 : -ENOMEM;
}

#define SJ_STATE_MAGIC 0x314a5352u   /* "RSJ1" */

/* A stream-stream join's: u32 magic | u64 rows | the join's (rn_sjoin_save). */
static int sj_state_save(rn_sql_t *q, rn_buf_t *out, char *errmsg)
{
    uint32_t magic = SJ_STATE_MAGIC;
    int rc = put(out, &magic, 4);
    if (rc == 0) rc = put(out, &q->st.rows, 8);
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory saving query state");
    return rn_sjoin_save(q->sj, out, errmsg);
}

static int sj_state_load(rn_sql_t *q, const uint8_t *p, size_t n, char *errmsg)
{
    uint32_t magic;
    if (n < 12 || (memcpy(&magic, p, 4), magic != SJ_STATE_MAGIC))
        return rn_errf(errmsg, RN_ECORRUPT, "saved query state is damaged or from another "
                       "query");
    memcpy(&q->st.rows, p + 4, 8);
    return rn_sjoin_load(q->sj, p + 12, n - 12, errmsg);
}

int rn_sql_state_save(rn_sql_t *q, rn_buf_t *out, char *errmsg)
{
    if (q->sj) return sj_state_save(q, out, errmsg);
    if (q->f.kind != SK_SELECT || !q->cons)
        return rn_errf(errmsg, RN_EINVAL, "only a SELECT over a topic has state to save");
    uint32_t magic = STATE_MAGIC;
    uint8_t has_win = q->win != NULL;
    uint64_t c[5] = {q->st.records, q->st.rows, q->st.errors, q->st.late, q->st.windows};
    int rc = put(out, &magic, 4);
    if (rc == 0) rc = put(out, &q->nq, 4);
    if (rc == 0) rc = put(out, &q->next_q, 4);
    if (rc == 0) rc = put(out, &has_win, 1);
    if (rc == 0) rc = put(out, c, sizeof c);
    if (rc == 0) rc = put(out, &q->st.watermark, 8);
    for (uint32_t i = 0; rc == 0 && i < q->nq; i++) {
        int64_t pos;
        if ((rc = rn_consumer_position(q->cons, q->def.topic, i, &pos, errmsg)) != 0) return rc;
        uint8_t fl[2] = {q->qlive[i], q->qdone[i]};
        rc = put(out, &pos, 8);
        if (rc == 0) rc = put(out, &q->qmax[i], 8);
        if (rc == 0) rc = put(out, fl, 2);
    }
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory saving query state");
    size_t at = out->len;
    uint32_t wlen = 0;
    if ((rc = put(out, &wlen, 4)) != 0) return rn_errf(errmsg, rc, "out of memory");
    if (q->win && (rc = rn_win_save(q->win, out, errmsg)) != 0) return rc;
    if (out->len - at - 4 > UINT32_MAX)
        return rn_errf(errmsg, RN_ETOOBIG, "window state larger than 4 GiB");
    wlen = (uint32_t)(out->len - at - 4);
    memcpy(out->data + at, &wlen, 4);
    /* the joined table's read positions after the window state (invariant 9) */
    if (q->tbl && q->o.follow && q->o.table_at_save && (rc = rn_table_sync(q->tbl, errmsg)) != 0)
        return rc;
    return q->tbl ? rn_table_save(q->tbl, out, errmsg) : 0;
}

int rn_sql_state_load(rn_sql_t *q, const uint8_t *p, size_t n, char *errmsg)
{
    if (q->started)
        return rn_errf(errmsg, RN_EINVAL, "state can only be restored before the first step");
    if (q->sj) return sj_state_load(q, p, n, errmsg);
    if (q->f.kind != SK_SELECT || !q->cons)
        return rn_errf(errmsg, RN_EINVAL, "only a SELECT over a topic has state to restore");
    /* fixed: the header without the next-queue field, which is cut out below */
    const size_t fixed = 4 + 4 + 1 + 5 * 8 + 8, perq = 8 + 8 + 2;
    uint32_t magic, nq, next, wlen;
    if (n < fixed + 4) goto damaged;
    memcpy(&magic, p, 4);
    memcpy(&nq, p + 4, 4);
    memcpy(&next, p + 8, 4);
    p += 4;                            /* the rest as laid out without next */
    n -= 4;
    if (magic != STATE_MAGIC || p[8] != (q->win != NULL) || (nq && next >= nq)) goto damaged;
    if (nq != q->nq)
        return rn_errf(errmsg, RN_EINVAL, "topic '%s' has %u queue(s), the saved state %u: "
                       "the source changed", q->def.topic, q->nq, nq);
    if ((n - fixed) / perq < nq || n - fixed - (size_t)nq * perq < 4) goto damaged;
    const uint8_t *qp = p + fixed, *wp = qp + (size_t)nq * perq;
    memcpy(&wlen, wp, 4);
    size_t rest = (size_t)(p + n - (wp + 4));
    if (q->tbl ? rest < wlen : rest != wlen) goto damaged;
    int rc;
    if (q->win && (rc = rn_win_load(q->win, wp + 4, wlen, errmsg)) != 0) return rc;
    if (q->tbl) {
        size_t used = 0;
        if ((rc = rn_table_restore(q->tbl, wp + 4 + wlen, rest - wlen, &used, errmsg)) != 0)
            return rc;
        if (used != rest - wlen) goto damaged;
    }
    /* A new consumer whose assignment order starts at the saved next queue,
     * so its round-robin serves batches in the order the saved run would
     * have (given the same data). */
    rn_consumer_t *nc = NULL;
    rn_consumer_opts_t co = {.skip_damaged = q->o.skip_damaged};
    if ((rc = rn_consumer_create(q->d, &co, &nc, errmsg)) != 0) return rc;
    for (uint32_t k = 0; k < nq && rc == 0; k++) {
        uint32_t i = (next + k) % nq;
        int64_t pos;
        memcpy(&pos, qp + (size_t)i * perq, 8);
        rc = rn_consumer_assign(nc, q->def.topic, i, pos, errmsg);
        if (rc == 0 && q->qend[i] >= 0)
            rc = rn_consumer_set_end(nc, q->def.topic, i, q->qend[i], errmsg);
    }
    if (rc != 0) { rn_consumer_destroy(nc); return rc; }
    rn_consumer_destroy(q->cons);
    q->cons = nc;
    q->next_q = next;
    for (uint32_t i = 0; i < nq; i++) {
        memcpy(&q->qmax[i], qp + (size_t)i * perq + 8, 8);
        q->qlive[i] = qp[(size_t)i * perq + 16];
        q->qdone[i] = qp[(size_t)i * perq + 17];
    }
    uint64_t c[5];
    memcpy(c, p + 9, sizeof c);
    q->st.records = c[0]; q->st.rows = c[1]; q->st.errors = c[2]; q->st.late = c[3];
    q->st.windows = c[4];
    memcpy(&q->st.watermark, p + 9 + sizeof c, 8);
    return 0;
damaged:
    return rn_errf(errmsg, RN_ECORRUPT, "saved query state is damaged or from another query");
}

uint32_t rn_sql_batch_queue(rn_sql_t *q)
{
    return q->sj ? rn_sjoin_batch_queue(q->sj) : q->cur_queue;
}

int rn_sql_prefer_queue(rn_sql_t *q, uint32_t queue, char *errmsg)
{
    if (q->sj) return rn_sjoin_prefer(q->sj, queue, errmsg);
    if (!q->cons) return rn_errf(errmsg, RN_EINVAL, "not a query over a topic");
    int rc = rn_consumer_prefer(q->cons, q->def.topic, queue, errmsg);
    if (rc == 0) q->next_q = queue;
    return rc;
}

int rn_sql_end(rn_sql_t *q, uint32_t queue, int64_t *end, char *errmsg)
{
    if (!q->cons || queue >= q->nq)
        return rn_errf(errmsg, RN_EINVAL, "no source queue %u", queue);
    *end = q->qend[queue];
    return 0;
}

int rn_sql_set_end(rn_sql_t *q, uint32_t queue, int64_t end, char *errmsg)
{
    if (!q->cons || queue >= q->nq)
        return rn_errf(errmsg, RN_EINVAL, "no source queue %u", queue);
    if (q->started)
        return rn_errf(errmsg, RN_EINVAL, "an end can only be set before the first step");
    if ((end < 0) != (q->qend[queue] < 0))
        return rn_errf(errmsg, RN_EINVAL, "a following query has no end, a bounded one has");
    q->qend[queue] = end;
    return rn_consumer_set_end(q->cons, q->def.topic, queue, end, errmsg);
}

int rn_sql_resumable(rn_sql_t *q, char *errmsg)
{
    if (q->sj)
        return rn_errf(errmsg, RN_EINVAL, "a stream-stream join is not resumed by a token (its "
                       "state is checkpointed in a pipeline: CREATE PIPELINE)");
    if (q->f.kind != SK_SELECT || !q->cons)
        return rn_errf(errmsg, RN_EINVAL, "only a SELECT over a topic can be resumed");
    if (q->win && q->f.idle_ms > 0)
        return rn_errf(errmsg, RN_EINVAL, "WITH idle_timeout closes windows by wall-clock "
                       "time, so its rows cannot be replayed exactly");
    if (q->win && q->f.proctime)
        return rn_errf(errmsg, RN_EINVAL, "windows over proctime() group rows by when they "
                       "are read, so its rows cannot be replayed exactly");
    return 0;
}

int rn_sql_aggregates(rn_sql_t *q)
{
    return q->win != NULL || q->sj != NULL;
}

void rn_sql_source(rn_sql_t *q, const char **topic, uint32_t *nq)
{
    *topic = q->def.topic;
    *nq = q->sj ? rn_sjoin_queues(q->sj) : q->nq;
}

int rn_sql_source_queue(rn_sql_t *q, uint32_t i, const char **topic, uint32_t *queue)
{
    if (q->sj) return rn_sjoin_source_queue(q->sj, i, topic, queue);
    if (i >= q->nq) return RN_EINVAL;
    *topic = q->def.topic;
    *queue = i;
    return 0;
}

const char *rn_sql_join_source(rn_sql_t *q)
{
    if (q->sj) return rn_sjoin_right_topic(q->sj);     /* the other stream's topic */
    return q->tbl && q->tdef && !q->tdef->file[0] ? q->tdef->topic : NULL;
}

int rn_sql_position(rn_sql_t *q, uint32_t queue, int64_t *offset, char *errmsg)
{
    if (q->sj) return rn_sjoin_position(q->sj, queue, offset, errmsg);
    if (!q->cons) return rn_errf(errmsg, RN_EINVAL, "not a query over a topic");
    return rn_consumer_position(q->cons, q->def.topic, queue, offset, errmsg);
}

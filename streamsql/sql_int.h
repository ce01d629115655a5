/*
 * sql_int.h — what the files of the streamsql module share: the tokenizer
 * and the parsed statement (front.c), stream definitions and the record
 * field scanner (scan.c), the window state (window.c) and the virtual
 * tables (vtab.c). Not a public API: sql.h is.
 */
#ifndef RN_SQL_INT_H
#define RN_SQL_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"

/* ---- tokens (front.c) ---------------------------------------------------- */

typedef enum tok_kind {
    TK_ID, TK_QID, TK_STR, TK_NUM, TK_LP, TK_RP, TK_COMMA, TK_SEMI, TK_DOT, TK_STAR,
    TK_OP, TK_PARAM, TK_BAD
} tok_kind_t;

typedef struct tok {
    tok_kind_t kind;
    uint32_t   off, len;     /* in the statement text */
    int        depth;        /* parenthesis depth at the token */
} tok_t;

/* ---- stream definitions (scan.c) ---------------------------------------- */

#define RN_SQL_MAX_TS_FORMAT 128   /* bytes of a timestamp_format */
#define RN_SQL_MAX_PATH      1024  /* bytes of a static table's file path */

typedef enum ftype { FT_INTEGER, FT_REAL, FT_TEXT, FT_BOOLEAN, FT_JSON } ftype_t;
typedef enum sformat { SF_JSON, SF_TEXT, SF_CSV } sformat_t;

typedef struct sfield {
    char    name[RN_SQL_MAX_NAME + 1];
    ftype_t type;
} sfield_t;

/* A stream: declared (CREATE STREAM) or a bare topic (no fields). */
typedef struct sdef {
    char      name[RN_META_TOPIC_NAME_MAX + 1];
    char      topic[RN_META_TOPIC_NAME_MAX + 1];
    sformat_t format;
    int       ts_field;          /* index into fields, -1: the record timestamp */
    char      ts_format[RN_SQL_MAX_TS_FORMAT + 1];  /* "": ts_field is INTEGER ms; else
                                    ts_field is TEXT read with rn_sql_parse_time */
    int       declared;
    int       nfields;
    sfield_t  fields[RN_SQL_MAX_FIELDS];
    /* tables (CREATE TABLE, table.c) */
    int       pk1;               /* 1 + the PRIMARY KEY field's index; 0: none (a stream) */
    char      file[RN_SQL_MAX_PATH + 1];   /* a static table's file; "": over topic */
} sdef_t;

/* The stream table's columns: queue, offset, ts, key, then the declared
 * fields from SQL_COL_FIELDS, then value (SQL_COL_FIELDS + nfields), then
 * the hidden __idx. */
enum { SQL_COL_QUEUE, SQL_COL_OFFSET, SQL_COL_TS, SQL_COL_KEY, SQL_COL_FIELDS };

const char *rn_front_ftype_name(ftype_t t);
const char *rn_front_format_name(sformat_t f);
/* "level TEXT, n INTEGER" -> fields; errors name the field and offset. */
int  rn_front_parse_fields(const char *text, size_t len, sdef_t *def, int *erroff, char *errmsg);
/* Canonical text of def's fields ("level TEXT, n INTEGER"). */
int  rn_front_fields_text(const sdef_t *def, char *out, size_t size);
int  rn_front_format_from_name(const char *s, size_t n, sformat_t *f);
/* The index of def's field named ts (any case), or -1. Such a field is the
 * stream's event time: it is read through the built-in column ts, never as a
 * column of its own, and it is always def->ts_field (front.c enforces it). */
int  rn_front_ts_field(const sdef_t *def);

/* A decoded field value: text points into the record or the batch arena. */
typedef struct fval {
    uint8_t     type;        /* rn_sql_type_t */
    int64_t     i;
    double      d;
    const char *s;
    uint32_t    n;
} fval_t;

/* Decode the fields set in `need` (bit i = field i) from one record value;
 * out[0..nfields). Unescaped strings go to arena, which the caller has
 * reserved (at least value_len bytes free: never reallocated here).
 * RN_EINVAL with errmsg naming the field for a mistyped or malformed record. */
int  rn_scan_record(const sdef_t *def, uint64_t need, const uint8_t *v, int32_t vlen,
                     fval_t *out, rn_buf_t *arena, char *errmsg);

/* ---- SQL functions (front.c parses them, fn_udf.c runs them) --------------- */

#define RN_SQL_MAX_PARAMS 16

/* name(p1 T1, ...) RETURNS R AS 'body' */
typedef struct udf_def {
    char    name[RN_SQL_MAX_NAME + 1];
    int     nparams;
    char    pname[RN_SQL_MAX_PARAMS][RN_SQL_MAX_NAME + 1];
    ftype_t ptype[RN_SQL_MAX_PARAMS];
    ftype_t rtype;
    char   *body;           /* the expression, unquoted; owned */
} udf_def_t;

/* Parse "name(a TYPE, ...) RETURNS TYPE AS 'expression'" (the text after
 * CREATE FUNCTION, and the stored form); offsets are text's. */
int  rn_front_parse_function(const char *text, size_t len, udf_def_t *d, int *erroff,
                             char *errmsg);
/* The canonical text of d (what the metadata store keeps). */
int  rn_front_function_text(const udf_def_t *d, rn_buf_t *out);
/* "SELECT CAST((body) AS R)" with each parameter as CAST(?N AS T); RN_EINVAL
 * when the body is not one expression over the parameters (a subquery,
 * several statements, an engine name). */
int  rn_front_udf_sql(const udf_def_t *d, rn_buf_t *out, int *erroff, char *errmsg);
void rn_udf_def_free(udf_def_t *d);
/* fn_udf.c: register d on db; the shipped templates; is name one of them? */
int  rn_udf_register(sqlite3 *db, const udf_def_t *d, char *errmsg);
int  rn_udf_register_templates(sqlite3 *db, char *errmsg);
int  rn_udf_is_template(const char *name);
/* Load the --udf-dir libraries (rn_sql_udf_dir) on db. */
int  rn_udf_load_native(sqlite3 *db, char *errmsg);
/* The definition text of template i, NULL past the last. */
const char *rn_udf_template(size_t i);

/* ---- parsed statements (front.c) ----------------------------------------- */

typedef enum stmt_kind { SK_SELECT, SK_EXPLAIN, SK_CREATE, SK_DROP, SK_SHOW, SK_DESCRIBE,
                         SK_CREATE_FN, SK_DROP_FN, SK_SHOW_FN,
                         SK_CREATE_TABLE, SK_DROP_TABLE, SK_SHOW_TABLES,
                         SK_CREATE_TABLE_AS } stmt_kind_t;
typedef enum win_kind { WK_NONE, WK_GLOBAL, WK_TUMBLE, WK_HOP, WK_SESSION } win_kind_t;
typedef enum agg_kind { AG_COUNT_STAR, AG_COUNT, AG_SUM, AG_TOTAL, AG_AVG, AG_MIN, AG_MAX,
                        AG_FIRST, AG_LAST,
                        /* numeric arguments only (front.c wraps them in __rn_num) */
                        AG_VAR_SAMP, AG_VAR_POP, AG_STD_SAMP, AG_STD_POP, AG_PCTL,
                        AG_HLL,
                        /* the rows form of a Window TopN (topn.c): the best rows of the
                           group, each an encoded row (rn_topn_row), bounded by rank */
                        AG_TOPN } agg_kind_t;

typedef struct agg {
    agg_kind_t kind;
    int        distinct;
    char      *text;         /* "count(DISTINCT svc)", for EXPLAIN and dedupe; owned */
    char      *arg;          /* the argument's text; NULL for count(*); owned */
    char      *filter;       /* FILTER (WHERE <filter>)'s condition; NULL: none; owned */
    double     param;        /* percentile_approx's fraction */
} agg_t;

typedef struct topn_spec topn_spec_t;
typedef struct sjoin_spec sjoin_spec_t;

typedef struct front {
    const char *sql;          /* the statement (borrowed), or own */
    char       *own;          /* the statement with INTERVAL literals replaced by their ms,
                                 padded to the same length (offsets unchanged); owned */
    size_t      len;
    tok_t      *toks;
    int         ntoks;
    stmt_kind_t kind;
    int         body;         /* first token of the SELECT (after EXPLAIN) */
    uint8_t    *insub;        /* per token: 1 inside a subquery's parentheses */
    /* CREATE / DROP / DESCRIBE */
    sdef_t      def;
    char        name[RN_META_TOPIC_NAME_MAX + 1];
    int         name_tok;
    int         if_exists;
    int         ts_tok, tsfmt_tok;   /* the values of timestamp, timestamp_format */
    udf_def_t   fn;           /* CREATE FUNCTION */
    /* SELECT */
    int         src_tok;      /* the FROM source */
    int         tvf;          /* FROM TABLE(TUMBLE|HOP|SESSION(...)): 1 + the kind, 0 none */
    int         tvf_b, tvf_e, tvf_src, tvf_col, tvf_size, tvf_slide;   /* its tokens */
    int         sel_b, sel_e, where_b, where_e, group_b, group_e, having_b, having_e;
    int         tail_b;       /* first of LIMIT / EMIT / WITH (ntoks when none) */
    int         distinct;
    int64_t     limit;        /* -1: none */
    int         emit_changes;
    int64_t     watermark_ms, idle_ms;
    int         late_dead_letter;
    /* FROM s [AS a] [LEFT] JOIN t [AS b] ON <expr> = b.pk (parse_join) */
    int         join;         /* 0 none, 1 JOIN (inner), 2 LEFT JOIN */
    int         from_e;       /* end of the FROM clause (a token index) */
    int         salias_tok, jtab_tok, jalias_tok;   /* -1: no alias */
    int         on_b, on_e;   /* the ON condition's tokens */
    int         on_col_tok;   /* the table column ON compares (qualified) */
    size_t      join_kw;      /* offset of "LEFT JOIN" in batch_sql (rn_front_from_text) */
    char        jname[RN_META_TOPIC_NAME_MAX + 1];  /* the joined table */
    /* planned (rn_front_plan) */
    win_kind_t  win;
    int         proctime;     /* the window's time is proctime(), not the event time ts */
    int64_t     size_ms, slide_ms;   /* TUMBLE size; HOP size+slide; SESSION gap */
    int         nkeys;
    char       *keys[RN_SQL_MAX_KEYS];
    char        key_aff[RN_SQL_MAX_KEYS + 1];  /* per key: 'i' INTEGER, 'r' REAL, 't' TEXT
                                                  affinity (a bare column), 'n' none */
    int         naggs;
    agg_t       aggs[RN_SQL_MAX_AGGS];
    char       *batch_sql;    /* the per-batch statement */
    int         batch_base;   /* batch_sql is sql[batch_base..]'s prefix; -1: rewritten */
    char       *emit_sql;     /* aggregating: over the emitted-windows table */
    topn_spec_t *topn;        /* a Window TopN around the query (topn.c); owned; NULL: none */
    sjoin_spec_t *sjoin;      /* a stream-stream join (sjoin.c); owned; NULL: none */
} front_t;

/* Tokenize and recognise the statement and its clauses. Errors carry the
 * offending token's offset. */
int  rn_front_parse(front_t *f, const char *sql, size_t len, int *erroff, char *errmsg);
/* SELECT: with the stream resolved, find window, keys and aggregates and
 * build batch_sql (and emit_sql). */
int  rn_front_plan(front_t *f, const sdef_t *def, int *erroff, char *errmsg);
/* SELECT: every function call outside subqueries is one sqlite knows and
 * computes per row, or one of the stream aggregates; else RN_EINVAL naming
 * it (unknown, an sqlite aggregate or window function, Flink's TUMBLE_START
 * and the like) and what to write instead. */
int  rn_front_check_functions(const front_t *f, sqlite3 *db, int *erroff, char *errmsg);
void rn_front_free(front_t *f);
/* The FROM clause the per-batch statement reads, appended to out: the
 * stream as written, and a join rewritten so sqlite keeps the stream as the
 * outer loop (JOIN -> CROSS JOIN); f->join_kw is where its LEFT JOIN keyword
 * starts in out. */
int  rn_front_from_text(front_t *f, rn_buf_t *out);
/* The name that qualifies the stream's columns (its alias, else its name)
 * as written, for the per-batch statement of a join. */
int  rn_front_stream_qual(const front_t *f, rn_buf_t *out);
/* The canonical CREATE TABLE text of a table definition (what meta.db keeps). */
int  rn_front_table_text(const sdef_t *def, rn_buf_t *out);
/* Offset in f->sql of the first token equal to ident (case-insensitive),
 * -1 when absent: to point at a column sqlite did not know. */
int  rn_front_find_ident(const front_t *f, const char *ident);

/* Token helpers for topn.c: is token i the word (any case); token i's
 * identifier, unquoted (RN_EINVAL when too long or not a name); the ')'
 * matching the '(' at i. */
int  rn_front_tok_is(const front_t *f, int i, const char *word);
int  rn_front_ident(const front_t *f, int i, char *out, size_t size);
int  rn_front_match_paren(const front_t *f, int i);

/* ---- Window TopN and deduplication (topn.c) ------------------------------ */

typedef struct topn topn_t;

/* Recognise SELECT ... FROM (SELECT ..., ROW_NUMBER() OVER (PARTITION BY ...
 * ORDER BY ...) AS rn FROM (<query>)) WHERE rn <= N from f->body: 0 when the
 * statement has no subquery in FROM (not ours, nothing changed); 1 when
 * recognised: f->topn is set and the wrapper's bytes in f->own (made if
 * needed) are blanked, leaving <query> and the tail at their offsets (the
 * caller tokenizes again); RN_EINVAL naming the token for a subquery in FROM
 * that is not this shape. */
int  rn_topn_parse(front_t *f, int *erroff, char *errmsg);
void rn_topn_spec_free(topn_spec_t *s);
/* One line for EXPLAIN. */
int  rn_topn_describe(const topn_spec_t *s, char *out, size_t size);
/* Resolve the spec's names against the emission statement est's columns
 * (the inner query's). RN_EINVAL when a name is unknown, the partition lacks
 * the window, or win is not a window. *out is freed by rn_topn_destroy. */
int  rn_topn_open(const topn_spec_t *s, sqlite3_stmt *est, win_kind_t win, topn_t **out,
                  int *erroff, char *errmsg);
/* The output column names (borrowed until rn_topn_destroy); returns how many. */
int  rn_topn_columns(const topn_t *t, const char *const **names);
/* Keep est's current row (copied) for the next flush. */
int  rn_topn_add(topn_t *t, sqlite3_stmt *st, char *errmsg);
/* Rank the kept rows, hand the kept ones to fn (a positive return stops
 * quietly, a negative one is returned), forget them all. */
int  rn_topn_flush(topn_t *t, rn_sql_row_fn fn, void *ctx);
void rn_topn_destroy(topn_t *t);
/* Register __rn_topn_row(spec, order keys..., columns...) on db: a row encoded
 * so that memcmp orders rows as the TopN does (window.c's AG_TOPN keeps the
 * best of them). */
int  rn_topn_register(sqlite3 *db, char *errmsg);
/* Of an encoded row: how many rows a group keeps at most (the header's N and
 * ranking function), and whether rows a and b tie on the ORDER BY keys. */
void rn_topn_row_limit(const uint8_t *row, size_t n, int *fn, int64_t *limit);
int  rn_topn_row_tie(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);
/* EXPLAIN and errors of the rows form: its inner query is generated, so an
 * error offset in it maps back to the user's text (or the TopN's start). */
int  rn_topn_map_offset(const topn_spec_t *s, int off);
/* Keep-first deduplication over a stream (no window): each key's row goes out
 * once, when the key is first seen (win_cfg_t.first_seen, EMIT CHANGES). */
int  rn_topn_keep_first(const topn_spec_t *s);

/* ---- stream-stream joins (sjoin.c) -------------------------------------- */

typedef struct rn_sjoin rn_sjoin_t;

/* FROM tokens [b, e): 1 when they are an interval or window join of two
 * streams (f->sjoin set), 0 when not this shape (nothing changed), RN_EINVAL
 * naming the token for such a join that is refused (no equality, no time
 * bound, mismatched windows). */
int  rn_sjoin_parse(front_t *f, int b, int e, int *erroff, char *errmsg);
void rn_sjoin_spec_free(sjoin_spec_t *s);
/* Open the two sides' inner queries (options o, rows going to the join
 * state) and prepare the emission statement on db. */
int  rn_sjoin_open(rn_datadir_t *d, sqlite3 *db, const front_t *f, const rn_sql_opts_t *o,
                   rn_sjoin_t **out, int *erroff, char *errmsg);
/* The emission statement: its columns are the result's. */
sqlite3_stmt *rn_sjoin_stmt(rn_sjoin_t *j);
/* Read at most one batch (of the preferred side, else alternating: sjoin.c
 * invariant 5), then emit the pairs the watermark passed through fn(ctx,
 * stmt) (a non-zero return stops and is returned). */
int  rn_sjoin_step(rn_sjoin_t *j, int (*fn)(void *, sqlite3_stmt *), void *ctx,
                   rn_sql_state_t *state, char *errmsg);
int  rn_sjoin_wait(rn_sjoin_t *j, uint32_t ms);
/* records, errors, target, skipped, late, watermark, join_rows of out. */
void rn_sjoin_stats(rn_sjoin_t *j, rn_sql_stats_t *out);
void rn_sjoin_cancel(rn_sjoin_t *j);
/* The right side's topic (borrowed until rn_sjoin_close): read too, so the
 * broker checks the caller's right to consume it (rn_sql_join_source). */
const char *rn_sjoin_right_topic(rn_sjoin_t *j);
/* Both streams' queues numbered as one source (sjoin.c invariant 5): the
 * count; the last step's batch (UINT32_MAX: none; during a step, the batch
 * being read); queue i's topic (borrowed until close) and queue there
 * (RN_EINVAL past the count); its next offset; read it first next step. */
uint32_t rn_sjoin_queues(const rn_sjoin_t *j);
uint32_t rn_sjoin_batch_queue(const rn_sjoin_t *j);
int  rn_sjoin_source_queue(rn_sjoin_t *j, uint32_t i, const char **topic, uint32_t *queue);
int  rn_sjoin_position(rn_sjoin_t *j, uint32_t i, int64_t *offset, char *errmsg);
int  rn_sjoin_prefer(rn_sjoin_t *j, uint32_t i, char *errmsg);
/* Append the whole join state to out (sjoin.c invariant 6); restore it
 * before the first step (RN_ECORRUPT when damaged or another join's). */
int  rn_sjoin_save(rn_sjoin_t *j, rn_buf_t *out, char *errmsg);
int  rn_sjoin_load(rn_sjoin_t *j, const uint8_t *p, size_t n, char *errmsg);
void rn_sjoin_close(rn_sjoin_t *j);

/* ---- window state (window.c) --------------------------------------------- */

typedef struct win win_t;

typedef struct win_cfg {
    win_kind_t kind;
    int64_t    size_ms, slide_ms, delay_ms;
    int        nkeys, naggs;
    agg_kind_t agg[RN_SQL_MAX_AGGS];
    int        distinct[RN_SQL_MAX_AGGS];
    int        filter[RN_SQL_MAX_AGGS];   /* the row has a filter column after the argument:
                                             the aggregate skips rows where it is not true */
    double     param[RN_SQL_MAX_AGGS];    /* percentile_approx's fraction */
    int        changes;      /* EMIT CHANGES */
    int        first_seen;   /* with changes: a group is emitted once, when created
                                (SELECT DISTINCT) */
    int        key_order;    /* ties emitted by key bytes, not creation order */
} win_cfg_t;

/* An emitted group, as the emit virtual table reads it. */
typedef struct wgroup wgroup_t;

int  rn_win_create(const win_cfg_t *cfg, win_t **out, char *errmsg);
void rn_win_destroy(win_t *w);
/* One row of the per-batch statement: ts, then nkeys keys, then per
 * aggregate its argument's value (count(*) takes none) and, with FILTER, the
 * condition's value. Late rows are counted in *late and not added. */
int  rn_win_add(win_t *w, int64_t ts, sqlite3_value **keys, sqlite3_value **args, uint64_t *late,
             char *errmsg);
/* Groups to emit now: with close_all = 1 every open window (end of input:
 * the watermark becomes +infinity); 2 (idle timeout) every open window, the
 * watermark moving to the last one's end (GLOBAL never closes on idle); 0 those the watermark closed, and (EMIT CHANGES) those changed
 * since the last call. *out is borrowed until rn_win_release. */
int  rn_win_collect(win_t *w, int close_all, wgroup_t ***out, size_t *n, char *errmsg);
/* Free what rn_win_collect handed out that has closed. */
void rn_win_release(win_t *w);
/* Raise the event-time frontier (ignored when not larger, and for GLOBAL);
 * the watermark is frontier - delay. */
void rn_win_advance(win_t *w, int64_t frontier);
int64_t  rn_win_watermark(const win_t *w);
int  rn_win_has_open(const win_t *w);
/* Append the whole window state to b (between steps only: RN_EINVAL while
 * groups are handed out); rn_win_load replaces w's state with saved bytes
 * (RN_ECORRUPT when damaged or saved by a different query shape). */
int  rn_win_save(const win_t *w, rn_buf_t *b, char *errmsg);
int  rn_win_load(win_t *w, const uint8_t *p, size_t n, char *errmsg);
/* Emit-table columns of a group: 0 window_start, 1 window_end, keys, aggs. */
void rn_win_group_column(const win_t *w, const wgroup_t *g, int col, sqlite3_context *ctx);

/* ---- scalar functions (fn.c) --------------------------------------------- */

/* Register streamsql's scalar functions (REGEXP, regexp_*, split_part, the
 * time functions, proctime) on db. */
int  rn_fn_register(sqlite3 *db, char *errmsg);
/* Does pattern [p, p + n) compile? RN_EINVAL with the pattern, PCRE2's
 * message and the offset in errmsg when not. */
int  rn_fn_check_pattern(const char *p, size_t n, char *errmsg);

/* ---- virtual tables (vtab.c) --------------------------------------------- */

/* The current batch of decoded records the stream table yields. */
typedef struct srow {
    uint32_t       queue;
    int64_t        offset;
    int64_t        ts;
    const uint8_t *key;
    int32_t        key_len;
    const uint8_t *value;
    int32_t        value_len;
    fval_t        *fields;     /* def->nfields values, or NULL */
    const rn_record_t *rec;    /* the source record (valid while the batch is) */
} srow_t;

/* A WHERE term the stream table evaluates itself (vtab.c invariant 3):
 * column col op a constant (INTEGER i, REAL d, or TEXT s[0..n)). */
#define RN_VTAB_MAX_PREDS 8
typedef struct rn_vtab_pred {
    int         op, col;
    uint8_t     type;         /* RN_SQL_INT, RN_SQL_REAL or RN_SQL_TEXT */
    int64_t     i;
    double      d;
    const char *s;
    uint32_t    n;
} rn_vtab_pred_t;

typedef struct sbatch {
    const sdef_t *def;
    srow_t       *rows;
    size_t        lo, nrows;  /* the stream table yields rows[lo..nrows): lo is 0
                                 except while a batch is re-run record by record */
    /* the pushed terms of the last xFilter over the stream table */
    rn_vtab_pred_t preds[RN_VTAB_MAX_PREDS];
    int           npreds;
    char         *ptext;      /* their text constants (sqlite3_malloc'ed) */
    size_t        ptext_cap;
    /* emitted groups for the emit table */
    win_t        *win;
    wgroup_t    **groups;
    size_t        ngroups;
} sbatch_t;

/* Register the stream module (rn_stream) and the emit module (rn_emit) on
 * db, both reading b. */
int  rn_vtab_register(sqlite3 *db, sbatch_t *b, char *errmsg);
/* Does row i of b pass the n terms p (vtab.c invariant 3)? */
int  rn_vtab_preds_pass(const sbatch_t *b, const rn_vtab_pred_t *p, int n, size_t i);
/* Column col of row r (row idx of its batch; nf declared fields) as the
 * stream table's xColumn hands it to sqlite: INTEGER, REAL, TEXT or NULL.
 * Inline: it runs per column of every row. */
static inline void rn_vtab_row_value(const srow_t *r, int col, int nf, size_t idx, fval_t *out)
{
    out->type = RN_SQL_INT;
    if (col == SQL_COL_FIELDS + nf + 1) { out->i = (int64_t)idx; return; }
    const uint8_t *p = NULL;
    int32_t n = -1;
    switch (col) {
    case SQL_COL_QUEUE: out->i = r->queue; return;
    case SQL_COL_OFFSET: out->i = r->offset; return;
    case SQL_COL_TS: out->i = r->ts; return;
    case SQL_COL_KEY: p = r->key; n = r->key_len; break;
    default:
        if (col == SQL_COL_FIELDS + nf) { p = r->value; n = r->value_len; break; }
        *out = r->fields[col - SQL_COL_FIELDS];
        if (out->type != RN_SQL_INT && out->type != RN_SQL_REAL && out->type != RN_SQL_TEXT)
            out->type = RN_SQL_NULL;
        return;
    }
    if (!p || n < 0) { out->type = RN_SQL_NULL; return; }
    out->type = RN_SQL_TEXT;
    out->s = (const char *)p;
    out->n = (uint32_t)n;
}

/* A TEXT value's UTF-8 bytes as sqlite holds them, *n of them, never NULL:
 * unlike sqlite3_value_text, no copy is made to add a NUL (the stream
 * table's strings are views into records, not NUL-terminated). */
const char *rn_sql_text_view(sqlite3_value *v, uint32_t *n);

/* ---- tables (table.c) ---------------------------------------------------- */

/* A lookup table loaded into a real SQLite table temp."<name>" of the
 * query's connection, keyed by its primary key. */
typedef struct rn_table rn_table_t;

/* The stored table name, parsed into def (RN_ENOTFOUND naming the tables). */
int  rn_table_get(rn_datadir_t *d, const char *name, sdef_t *def, char *errmsg);
/* CREATE TABLE / DROP TABLE / SHOW TABLES / DESCRIBE of a table: rows are
 * handed to row(ctx, values) (SHOW: name, source, format, primary_key,
 * fields; DESCRIBE: column, type, source). remote: the statement came over
 * the network (a file table is refused). *same: CREATE of a table stored
 * already with this definition. */
int  rn_table_create(rn_datadir_t *d, const sdef_t *def, int remote, int *same, char *errmsg);
int  rn_table_drop(rn_datadir_t *d, const char *name, char *errmsg);
int  rn_table_show(rn_datadir_t *d, int (*row)(void *, const char *const *), void *ctx,
                   char *errmsg);
int  rn_table_describe(const sdef_t *def, int (*row)(void *, const char *const *), void *ctx);

/* Create temp."<def->name>" on db and load it: a file whole; a topic to the
 * end each queue has now. Table records that cannot be applied are counted
 * in *errors (the first reason in first_error when it is empty). */
int  rn_table_open(rn_datadir_t *d, sqlite3 *db, const sdef_t *def, uint64_t *errors,
                   char *first_error, size_t fe_size, rn_table_t **out, char *errmsg);
void rn_table_close(rn_table_t *t);
/* Apply the topic's records up to the end each queue has now (no-op for a
 * file table). Between steps of the statements reading it only. */
int  rn_table_sync(rn_table_t *t, char *errmsg);
/* Append the read positions (u32 n, i64 pos[n]); rn_table_restore empties
 * the table and reloads it from the topic's start to exactly those
 * positions. *used: bytes consumed from p. */
int  rn_table_save(rn_table_t *t, rn_buf_t *out, char *errmsg);
int  rn_table_restore(rn_table_t *t, const uint8_t *p, size_t n, size_t *used, char *errmsg);
/* "topic 'x' (3 queues)" / "file 'p'" for EXPLAIN. */
void rn_table_source(const rn_table_t *t, char *out, size_t size);

/* ---- materialized tables: CREATE TABLE name AS SELECT (ctas.c) ---------- */

/* The parsed statement of an open query and its resolved source (sql.c). */
const front_t *rn_sql_front(rn_sql_t *q, const sdef_t **src);
/* Check the SELECT (select[0..slen)), store the table, its changelog topic
 * and its pipeline. *same: all three exist with this definition already.
 * remote: refused (-EPERM). */
int  rn_ctas_create(rn_datadir_t *d, const char *name, const char *select, size_t slen,
                    int remote, int *same, char *errmsg);
/* Table name over topic is materialized (a pipeline name writes into it):
 * 1, its SELECT ... into out (may be NULL); else 0. */
int  rn_ctas_pipeline(rn_datadir_t *d, const char *name, const char *topic, char *out,
                      size_t size);
/* Before DROP TABLE name: a materialized table's pipeline and changelog
 * topic go (nothing for another table). */
int  rn_ctas_drop(rn_datadir_t *d, const char *name, char *errmsg);
/* Append ", materialized by pipeline 'x' ..., lag N ..." to out for SHOW
 * TABLES (nothing for another table). */
void rn_ctas_show(rn_datadir_t *d, const char *name, const char *topic, char *out, size_t size);

#endif

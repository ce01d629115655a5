/*
 * sjoin.c — stream–stream joins: interval joins and window joins of two
 * streams, with the join state (each side's buffered records) in sqlite
 * tables of the query's connection.
 *
 *   FROM a x JOIN b y ON x.k = y.k AND y.ts BETWEEN x.ts - 10000 AND x.ts + 5000
 *   FROM a x JOIN b y ON x.k = y.k AND y.ts >= x.ts - 10000 AND y.ts <= x.ts + 5000
 *   FROM TABLE(TUMBLE(TABLE a, DESCRIPTOR(ts), size)) l
 *        JOIN TABLE(TUMBLE(TABLE b, DESCRIPTOR(ts), size)) r
 *        ON l.window_start = r.window_start AND l.window_end = r.window_end AND l.k = r.k
 *
 * Each side is read by a plain inner query (SELECT * FROM side, sql.c), so
 * decoding, event time, rejects and bounded ends are the engine's own; its
 * rows go into temp.__rn_l / temp.__rn_r (columns as SELECT *; a window
 * join adds window_start, window_end). The user's SELECT, with its FROM
 * rewritten to those tables and the ON condition as written, is the ONE
 * emission statement, stepped over a range of emission times.
 *
 * A joined pair's emission time e is max(x.ts, y.ts) for an interval join,
 * window_end - 1 for a window join.
 *
 * Invariants:
 *  1. The watermark W is the smallest, over the queues of both sides still
 *     being read (bounded: with records at open or delivered since, not at
 *     their end; following: every queue, so a queue that has not delivered
 *     yet holds W back), of the largest event time each delivered, minus the WITH
 *     (watermark = ...) delay; it only rises, and it moves row by row. A
 *     record with ts < W is late: counted, never buffered or joined.
 *  2. After each step the pairs with E <= e < W are emitted, ordered by
 *     (e, x.queue, x.offset, y.queue, y.offset), and E becomes W. Every
 *     buffered record has ts >= the W of its arrival >= E at that time, so a
 *     pair is emitted exactly once, when the watermark passes it, and the
 *     whole output is the set of matching pairs of non-late records sorted
 *     by that key: the same for every batching and every interleaving of the
 *     two streams and their queues. When each queue is in event-time order
 *     (or out of order by less than the watermark delay) no record is late,
 *     so the output is the join of all the records.
 *  3. State is bounded by the time bound: with y.ts in [x.ts + L, x.ts + U]
 *     a left record can still meet a future right one only while ts >= E - U,
 *     a right one while ts >= E + L; a window join's record while its
 *     window_end > E. Records past that are deleted after each emission.
 *  4. A join without a time bound (no interval on ts, no shared window)
 *     would keep every record forever, and a join without an equality of a
 *     column of each side is a cross product: both are refused with what to
 *     write.
 *  5. A step reads at most ONE source batch: the preferred side's
 *     (rn_sjoin_prefer), else the side after the one that read last, else
 *     the other one when that has none. The two streams' queues are
 *     numbered as one source: the left's 0 .. nl - 1, then the right's nl
 *     .. nl + nr - 1 (rn_sjoin_batch_queue, _position, _prefer, rejects),
 *     so a pipeline journals and replays the order of both streams' batches
 *     like one topic's (etl.c).
 *  6. rn_sjoin_save/_load capture the whole state at a step boundary: each
 *     side's inner query state (positions, counters), W, E, the late count,
 *     each queue's largest event time and flags, the side that reads next,
 *     and every buffered record with its values' types. A restored join
 *     has exactly the buffered records (so invariant 3's bound) and makes
 *     exactly the decisions the saved one would have.
 *  7. GROUP BY over a window join, grouped by a window bound, is sqlite's
 *     own GROUP BY (count, sum, total, avg, min, max; HAVING) over the pairs
 *     of one emission: every pair of a window has the same e, so a window's
 *     pairs are all emitted by one step, and a group (which lies in one
 *     window) is aggregated over all its pairs, once, ordered by (e, the
 *     keys as written). Other aggregates, GROUP BY of an interval join or
 *     without the window, and EMIT are refused with what is supported.
 */
#include "streamsql/sql.h"
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


struct sjoin_spec {
    int     window;                       /* 0 interval join, 1 tumbling window join */
    char    name[2][RN_META_TOPIC_NAME_MAX + 1];   /* the streams */
    char    qual[2][RN_SQL_MAX_NAME + 1];          /* alias, else the name */
    int64_t lo, hi;                       /* interval: y.ts in [x.ts + lo, x.ts + hi] */
    int64_t size;                         /* window: the TUMBLE size */
    char    key[2][RN_SQL_MAX_NAME + 1];  /* the first equality's columns */
    int     on_b, on_e;                   /* the ON condition's tokens */
    int     from_b, from_e;               /* the FROM clause's */
};

void rn_sjoin_spec_free(sjoin_spec_t *s) { free(s); }

static int tok_is_op(const front_t *f, int i, const char *op)
{
    return i < f->ntoks && f->toks[i].kind == TK_OP && f->toks[i].len == strlen(op) &&
           memcmp(f->sql + f->toks[i].off, op, f->toks[i].len) == 0;
}

static int is_name(const front_t *f, int i)
{
    return i < f->ntoks && (f->toks[i].kind == TK_ID || f->toks[i].kind == TK_QID);
}

static int err_at(const front_t *f, int i, int *erroff, char *errmsg, const char *what)
{
    if (erroff) *erroff = i < f->ntoks ? (int)f->toks[i].off : (int)f->len;
    return rn_errf(errmsg, RN_EINVAL, "%s", what);
}

/* One side at i: name [[AS] alias], or TABLE(TUMBLE(TABLE name, DESCRIPTOR(ts),
 * size)) [[AS] alias]. Returns the token after it, or -1. */
static int parse_side(front_t *f, int i, int e, sjoin_spec_t *s, int k, int64_t *size)
{
    *size = -1;
    if (rn_front_tok_is(f, i, "TABLE") && i + 1 < e && f->toks[i + 1].kind == TK_LP) {
        int close = rn_front_match_paren(f, i + 1);
        int j = i + 2;
        if (close < 0 || close >= e || !rn_front_tok_is(f, j, "TUMBLE") ||
            f->toks[j + 1].kind != TK_LP || !rn_front_tok_is(f, j + 2, "TABLE") ||
            !is_name(f, j + 3) || f->toks[j + 4].kind != TK_COMMA ||
            !rn_front_tok_is(f, j + 5, "DESCRIPTOR") || f->toks[j + 6].kind != TK_LP ||
            !rn_front_tok_is(f, j + 7, "ts") || f->toks[j + 8].kind != TK_RP ||
            f->toks[j + 9].kind != TK_COMMA || f->toks[j + 10].kind != TK_NUM ||
            f->toks[j + 11].kind != TK_RP || j + 12 != close)
            return -1;
        if (rn_front_ident(f, j + 3, s->name[k], sizeof s->name[k]) != 0) return -1;
        *size = strtoll(f->sql + f->toks[j + 10].off, NULL, 10);
        i = close + 1;
    } else {
        if (!is_name(f, i) || rn_front_ident(f, i, s->name[k], sizeof s->name[k]) != 0)
            return -1;
        i++;
    }
    size_t nl = strlen(s->name[k]);
    if (nl >= sizeof s->qual[k]) return -1;
    memcpy(s->qual[k], s->name[k], nl + 1);
    if (rn_front_tok_is(f, i, "AS")) i++;
    if (i < e && is_name(f, i) && !rn_front_tok_is(f, i, "JOIN") &&
        !rn_front_tok_is(f, i, "ON") && !rn_front_tok_is(f, i, "INNER") &&
        !rn_front_tok_is(f, i, "LEFT")) {
        if (rn_front_ident(f, i, s->qual[k], sizeof s->qual[k]) != 0) return -1;
        i++;
    }
    return i;
}

/* q . col at i: the side (0, 1) and the column, or -1. */
static int qcol(const front_t *f, int i, const sjoin_spec_t *s, char *col, size_t n)
{
    char q[RN_SQL_MAX_NAME + 1];
    if (!is_name(f, i) || i + 2 >= f->ntoks || f->toks[i + 1].kind != TK_DOT ||
        !is_name(f, i + 2) || rn_front_ident(f, i, q, sizeof q) != 0 ||
        rn_front_ident(f, i + 2, col, n) != 0)
        return -1;
    if (strcasecmp(q, s->qual[0]) == 0) return 0;
    if (strcasecmp(q, s->qual[1]) == 0) return 1;
    return -1;
}

/* q.ts [(+|-) NUM] over [i, e): the side, *off, *next; -1 when not this form. */
static int ts_term(const front_t *f, int i, int e, const sjoin_spec_t *s, int64_t *off,
                   int *next)
{
    char col[RN_SQL_MAX_NAME + 1];
    int side = i + 2 < e ? qcol(f, i, s, col, sizeof col) : -1;
    if (side < 0 || strcasecmp(col, "ts") != 0) return -1;
    *off = 0;
    i += 3;
    if (i + 1 < e && (tok_is_op(f, i, "+") || tok_is_op(f, i, "-")) &&
        f->toks[i + 1].kind == TK_NUM) {
        int64_t v = strtoll(f->sql + f->toks[i + 1].off, NULL, 10);
        *off = tok_is_op(f, i, "-") ? -v : v;
        i += 2;
    }
    *next = i;
    return side;
}

/* s1.ts + a1 OP s2.ts + a2, OP one of >= > <= <: narrow [lo, hi] of y.ts - x.ts. */
static void bound(sjoin_spec_t *s, int ge, int s1, int64_t a1, int s2, int64_t a2, int *have_lo,
                  int *have_hi)
{
    if (s1 == s2) return;
    /* rewrite as y.ts - x.ts (>= | <=) c */
    int64_t c = s1 == 1 ? a2 - a1 : a1 - a2;
    int lower = s1 == 1 ? ge : !ge;
    if (lower && (!*have_lo || c > s->lo)) { s->lo = c; *have_lo = 1; }
    if (!lower && (!*have_hi || c < s->hi)) { s->hi = c; *have_hi = 1; }
}

int rn_sjoin_parse(front_t *f, int b, int e, int *erroff, char *errmsg)
{
    sjoin_spec_t *s = calloc(1, sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = 0, i, j;
    int64_t sz0, sz1;
    int has_tvf = 0, has_ts = 0, have_lo = 0, have_hi = 0, have_key = 0, have_win = 0;
    /* is it ours? a TVF on either side, or ON comparing ts of both sides */
    i = parse_side(f, b, e, s, 0, &sz0);
    if (i < 0) goto not_ours;
    if (rn_front_tok_is(f, i, "INNER")) i++;
    if (!rn_front_tok_is(f, i, "JOIN")) goto not_ours;
    i = parse_side(f, i + 1, e, s, 1, &sz1);
    if (i < 0 || !rn_front_tok_is(f, i, "ON")) goto not_ours;
    has_tvf = sz0 >= 0 || sz1 >= 0;
    if (strcasecmp(s->qual[0], s->qual[1]) == 0) {
        rc = err_at(f, b, erroff, errmsg, "both sides of the join have the same name: give "
                    "each an alias (FROM a x JOIN a y ON ...)");
        goto fail;
    }
    s->on_b = i + 1;
    s->on_e = e;
    s->from_b = b;
    s->from_e = e;
    int d = s->on_b < e ? f->toks[s->on_b].depth : 0;
    for (j = s->on_b; j < e; j++) {
        char col[RN_SQL_MAX_NAME + 1];
        if (f->toks[j].depth == d && qcol(f, j, s, col, sizeof col) >= 0 &&
            strcasecmp(col, "ts") == 0)
            for (int k = j + 3; k < e; k++)
                if (f->toks[k].depth == d && qcol(f, k, s, col, sizeof col) >= 0 &&
                    qcol(f, k, s, col, sizeof col) != qcol(f, j, s, col, sizeof col) &&
                    strcasecmp(col, "ts") == 0) has_ts = 1;
    }
    if (!has_tvf && !has_ts) goto not_ours;
    if (has_tvf && (sz0 < 0 || sz1 < 0)) {
        rc = err_at(f, b, erroff, errmsg, "a window join takes TABLE(TUMBLE(...)) on both sides");
        goto fail;
    }
    if (has_tvf && sz0 != sz1) {
        rc = err_at(f, b, erroff, errmsg, "a window join's two windows must have the same size");
        goto fail;
    }
    if (has_tvf && sz0 <= 0) {
        rc = err_at(f, b, erroff, errmsg, "a window size must be positive");
        goto fail;
    }
    s->window = has_tvf;
    s->size = sz0;
    /* the conjuncts at the top level of ON */
    for (int cb = s->on_b; cb < e;) {
        int ce = cb, between = 0;
        while (ce < e) {
            if (f->toks[ce].depth == d && rn_front_tok_is(f, ce, "OR")) {
                rc = err_at(f, ce, erroff, errmsg, "ON takes conditions joined by AND (OR "
                            "goes in WHERE)");
                goto fail;
            }
            if (f->toks[ce].depth == d && rn_front_tok_is(f, ce, "BETWEEN")) between = 1;
            else if (f->toks[ce].depth == d && rn_front_tok_is(f, ce, "AND")) {
                if (!between) break;
                between = 0;
            }
            ce++;
        }
        char c1[RN_SQL_MAX_NAME + 1], c2[RN_SQL_MAX_NAME + 1];
        int64_t a1, a2, a3;
        int n1, n2, n3;
        int s1 = ts_term(f, cb, ce, s, &a1, &n1);
        if (s1 >= 0 && n1 < ce && rn_front_tok_is(f, n1, "BETWEEN")) {
            int s2 = ts_term(f, n1 + 1, ce, s, &a2, &n2);
            int s3 = s2 >= 0 && rn_front_tok_is(f, n2, "AND") ?
                     ts_term(f, n2 + 1, ce, s, &a3, &n3) : -1;
            if (s3 >= 0 && n3 == ce) {
                bound(s, 1, s1, a1, s2, a2, &have_lo, &have_hi);
                bound(s, 0, s1, a1, s3, a3, &have_lo, &have_hi);
            }
        } else if (s1 >= 0 && n1 + 1 < ce &&
                   (tok_is_op(f, n1, ">=") || tok_is_op(f, n1, ">") || tok_is_op(f, n1, "<=") ||
                    tok_is_op(f, n1, "<"))) {
            int s2 = ts_term(f, n1 + 1, ce, s, &a2, &n2);
            if (s2 >= 0 && n2 == ce)
                bound(s, tok_is_op(f, n1, ">=") || tok_is_op(f, n1, ">"), s1, a1, s2, a2,
                      &have_lo, &have_hi);
        } else if (ce - cb == 7 && (tok_is_op(f, cb + 3, "=") || tok_is_op(f, cb + 3, "=="))) {
            int x = qcol(f, cb, s, c1, sizeof c1), y = qcol(f, cb + 4, s, c2, sizeof c2);
            if (x >= 0 && y >= 0 && x != y) {
                if (!strcasecmp(c1, "window_start") || !strcasecmp(c1, "window_end")) {
                    have_win |= !strcasecmp(c1, c2);
                } else if (!have_key) {
                    snprintf(s->key[x], sizeof s->key[x], "%s", c1);
                    snprintf(s->key[y], sizeof s->key[y], "%s", c2);
                    have_key = 1;
                }
            }
        }
        cb = ce + 1;
    }
    if (!have_key) {
        rc = err_at(f, s->on_b < e ? s->on_b : b, erroff, errmsg, "a stream-stream join needs "
                    "an equality of a column of each side in ON (x.k = y.k): without one every "
                    "record meets every other (a non-equi join is not supported)");
        goto fail;
    }
    if (s->window && !have_win) {
        rc = err_at(f, s->on_b, erroff, errmsg, "a window join's ON must equate the windows "
                    "(l.window_start = r.window_start AND l.k = r.k)");
        goto fail;
    }
    if (!s->window && !(have_lo && have_hi)) {
        rc = err_at(f, s->on_b, erroff, errmsg, "a stream-stream join needs a time bound on "
                    "both sides or its state grows without end: add an interval on ts (y.ts "
                    "BETWEEN x.ts - INTERVAL '10' SECOND AND x.ts + INTERVAL '5' SECOND) or "
                    "join windows");
        goto fail;
    }
    f->sjoin = s;
    return 1;
not_ours:
    free(s);
    return 0;
fail:
    free(s);
    return rc;
}

/* ---- running ------------------------------------------------------------------------- */

typedef struct side {
    struct rn_sjoin *j;
    int           k;           /* 0 left, 1 right */
    rn_sql_t     *q;           /* SELECT * FROM the stream */
    sqlite3_stmt *ins, *del;
    int           ncols, ts_col;
    uint32_t      nq;
    int64_t      *qmax;        /* largest event time delivered; INT64_MIN: none */
    uint8_t      *live, *done;
    int           finished;    /* the inner query is DONE */
    uint64_t      rows;        /* buffered now */
} side_t;

struct rn_sjoin {
    const sjoin_spec_t *s;
    sqlite3      *db;
    sqlite3_stmt *est;
    side_t        side[2];
    int64_t       delay;
    int64_t       wm;          /* W (invariant 1) */
    int64_t       emitted;     /* E (invariant 2) */
    uint64_t      late;
    int           follow;
    int           next;        /* the side that reads first in the next step */
    int           pref;        /* a side rn_sjoin_prefer chose for the next step; -1: none */
    int           stepping;    /* the side whose batch this step read (or reads); -1: none */
    rn_sql_reject_fn reject;   /* the caller's, given a queue numbered as in invariant 5 */
    void         *rctx;
    char          errmsg[RN_ERRMSG_SIZE];
};

/* Queue i of both streams numbered as one (invariant 5): its side and queue. */
static int side_of(const rn_sjoin_t *j, uint32_t i, uint32_t *queue)
{
    if (i < j->side[0].nq) { *queue = i; return 0; }
    if (i - j->side[0].nq < j->side[1].nq) { *queue = i - j->side[0].nq; return 1; }
    return -1;
}

static int side_reject(void *ctx, uint32_t queue, const rn_record_t *r, const char *why)
{
    side_t *sd = ctx;
    rn_sjoin_t *j = sd->j;
    if (!j->reject) return 0;
    return j->reject(j->rctx, queue + (sd->k ? j->side[0].nq : 0), r, why);
}

static int64_t watermark_now(const rn_sjoin_t *j)
{
    int64_t m = INT64_MAX;
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < j->side[k].nq; i++)
            if (j->side[k].live[i] && !j->side[k].done[i] && j->side[k].qmax[i] < m)
                m = j->side[k].qmax[i];
    if (m == INT64_MIN) return INT64_MIN;
    if (m == INT64_MAX) return j->follow ? j->wm : INT64_MAX;
    return m - j->delay;
}

static void raise_wm(rn_sjoin_t *j)
{
    int64_t w = watermark_now(j);
    if (w > j->wm) j->wm = w;
}

static int bind_val(sqlite3_stmt *st, int i, const rn_sql_value_t *v)
{
    switch (v->type) {
    case RN_SQL_INT: return sqlite3_bind_int64(st, i, v->i);
    case RN_SQL_REAL: return sqlite3_bind_double(st, i, v->d);
    case RN_SQL_TEXT: return sqlite3_bind_text(st, i, v->s, (int)v->n, SQLITE_TRANSIENT);
    case RN_SQL_BLOB: return sqlite3_bind_blob(st, i, v->s, (int)v->n, SQLITE_TRANSIENT);
    default: return sqlite3_bind_null(st, i);
    }
}

/* A row of a side's inner query: late, or buffered (invariant 1). */
static int side_row(void *ctx, const rn_sql_value_t *vals, int n)
{
    side_t *sd = ctx;
    rn_sjoin_t *j = sd->j;
    uint32_t queue = (uint32_t)vals[0].i;
    int64_t ts = vals[sd->ts_col].i;
    assert(n == sd->ncols && queue < sd->nq);
    if (ts < j->wm) {
        j->late++;
    } else {
        int rc = SQLITE_OK;
        for (int i = 0; i < n && rc == SQLITE_OK; i++) rc = bind_val(sd->ins, i + 1, &vals[i]);
        if (rc == SQLITE_OK && j->s->window) {
            int64_t start = ts - ((ts % j->s->size) + j->s->size) % j->s->size;
            rc = sqlite3_bind_int64(sd->ins, n + 1, start);
            if (rc == SQLITE_OK) rc = sqlite3_bind_int64(sd->ins, n + 2, start + j->s->size);
        }
        if (rc == SQLITE_OK) rc = sqlite3_step(sd->ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(sd->ins);
        if (rc != SQLITE_OK) {
            rn_errf(j->errmsg, RN_ESQLITE, "cannot buffer a joined record: %s",
                    sqlite3_errmsg(j->db));
            return RN_ESQLITE;
        }
        sd->rows++;
    }
    sd->live[queue] = 1;
    if (ts > sd->qmax[queue]) sd->qmax[queue] = ts;
    raise_wm(j);
    return 0;
}

static int exec(sqlite3 *db, const char *sql, char *errmsg)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
    return rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %s", sqlite3_errmsg(db));
}

static int open_side(rn_sjoin_t *j, rn_datadir_t *d, int k, const rn_sql_opts_t *o,
                     char *errmsg)
{
    side_t *sd = &j->side[k];
    sd->j = j;
    sd->k = k;
    rn_sql_opts_t io = *o;
    io.row = side_row;
    io.reject = side_reject;
    io.ctx = sd;
    io.key_order = 0;
    char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", j->s->name[k]);
    if (!sql) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int erroff;
    char why[RN_ERRMSG_SIZE];
    int rc = rn_sql_open(d, sql, strlen(sql), &io, &sd->q, &erroff, why);
    sqlite3_free(sql);
    if (rc != 0)
        return rn_errf(errmsg, rc, "%s side '%s': %s", k ? "right" : "left", j->s->name[k], why);
    const rn_sql_column_t *cols;
    rn_sql_columns(sd->q, &cols, &sd->ncols);
    const char *topic;
    rn_sql_source(sd->q, &topic, &sd->nq);
    sd->qmax = malloc((sd->nq ? sd->nq : 1) * sizeof *sd->qmax);
    sd->live = calloc(sd->nq ? sd->nq : 1, 1);
    sd->done = calloc(sd->nq ? sd->nq : 1, 1);
    if (!sd->qmax || !sd->live || !sd->done) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < sd->nq; i++) {
        int64_t end = -1, pos = 0;
        sd->qmax[i] = INT64_MIN;
        /* bounded: a queue with records to read holds the watermark back;
         * following: every queue does until it delivers (the other stream
         * may not have been written yet) */
        if (o->follow) sd->live[i] = 1;
        else if (rn_sql_end(sd->q, i, &end, why) == 0 &&
                 rn_sql_position(sd->q, i, &pos, why) == 0)
            sd->live[i] = end > pos;
    }
    /* the buffer table: the columns of SELECT *, untyped (values keep theirs) */
    rn_buf_t b = {0};
    char tab[16];
    snprintf(tab, sizeof tab, "__rn_%c", k ? 'r' : 'l');
    rc = rn_buf_append(&b, "CREATE TABLE temp.", 18, 0);
    if (rc == 0) rc = rn_buf_append(&b, tab, strlen(tab), 0);
    sd->ts_col = -1;
    for (int i = 0; rc == 0 && i < sd->ncols; i++) {
        if (strcmp(cols[i].name, "ts") == 0) sd->ts_col = i;
        char *c = sqlite3_mprintf("%s\"%w\"", i ? ", " : " (", cols[i].name);
        rc = c ? rn_buf_append(&b, c, strlen(c), 0) : -ENOMEM;
        sqlite3_free(c);
    }
    if (rc == 0 && j->s->window) rc = rn_buf_append(&b, ", window_start, window_end", 26, 0);
    if (rc == 0) rc = rn_buf_append(&b, ")", 2, 0);   /* with the NUL */
    if (rc != 0) { rn_buf_free(&b); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
    assert(sd->ts_col == SQL_COL_TS);
    rc = exec(j->db, (const char *)b.data, errmsg);
    rn_buf_free(&b);
    if (rc != 0) return rc;
    /* pairs are found by (window, key) or (key, ts); state is freed by window_end or ts */
    char *ix = j->s->window
        ? sqlite3_mprintf("CREATE INDEX temp.%s_k ON %s(window_end, \"%w\")", tab, tab,
                          j->s->key[k])
        : sqlite3_mprintf("CREATE INDEX temp.%s_k ON %s(\"%w\", ts); CREATE INDEX temp.%s_t ON "
                          "%s(ts)", tab, tab, j->s->key[k], tab, tab);
    if (!ix) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rc = sqlite3_exec(j->db, ix, NULL, NULL, NULL);
    sqlite3_free(ix);
    if (rc != SQLITE_OK)
        return rn_errf(errmsg, RN_EINVAL, "%s side '%s': the join key '%s': %s",
                       k ? "right" : "left", j->s->name[k], j->s->key[k], sqlite3_errmsg(j->db));
    char ins[64];
    snprintf(ins, sizeof ins, "INSERT INTO temp.%s VALUES (?", tab);
    int nv = sd->ncols + (j->s->window ? 2 : 0);
    rn_buf_t q = {0};
    rc = rn_buf_append(&q, ins, strlen(ins), 0);
    for (int i = 1; rc == 0 && i < nv; i++) rc = rn_buf_append(&q, ", ?", 3, 0);
    if (rc == 0) rc = rn_buf_append(&q, ")", 2, 0);
    if (rc != 0) { rn_buf_free(&q); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
    rc = sqlite3_prepare_v2(j->db, (const char *)q.data, -1, &sd->ins, NULL);
    rn_buf_free(&q);
    if (rc != SQLITE_OK) return rn_errf(errmsg, RN_ESQLITE, "%s", sqlite3_errmsg(j->db));
    char *del = sqlite3_mprintf("DELETE FROM temp.%s WHERE %s", tab,
                                j->s->window ? "window_end <= ?1" : "ts < ?1");
    if (!del) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rc = sqlite3_prepare_v2(j->db, del, -1, &sd->del, NULL);
    sqlite3_free(del);
    if (rc != SQLITE_OK) return rn_errf(errmsg, RN_ESQLITE, "%s", sqlite3_errmsg(j->db));
    return 0;
}

static int append_toks(const front_t *f, int b, int e, rn_buf_t *out)
{
    if (b >= e) return 0;
    size_t end = f->toks[e - 1].off + f->toks[e - 1].len;
    return rn_buf_append(out, f->sql + f->toks[b].off, end - f->toks[b].off, 0) == 0 ? 0 : -ENOMEM;
}

static int appends(rn_buf_t *out, const char *s)
{
    return rn_buf_append(out, s, strlen(s), 0) == 0 ? 0 : -ENOMEM;
}

/* The user's SELECT over the buffer tables, for the pairs with ?1 <= e < ?2. */
static int emission_sql(const front_t *f, const sjoin_spec_t *s, rn_buf_t *out)
{
    char *e = s->window ? sqlite3_mprintf("(\"%w\".window_end - 1)", s->qual[0])
                        : sqlite3_mprintf("max(\"%w\".ts, \"%w\".ts)", s->qual[0], s->qual[1]);
    char *from = sqlite3_mprintf(" FROM temp.__rn_l AS \"%w\" JOIN temp.__rn_r AS \"%w\" ON ",
                                 s->qual[0], s->qual[1]);
    char *order = sqlite3_mprintf(" ORDER BY %s, \"%w\".queue, \"%w\".offset, "
                                  "\"%w\".queue, \"%w\".offset", e, s->qual[0], s->qual[0],
                                  s->qual[1], s->qual[1]);
    /* E <= e < W written so that sqlite can range-scan a side's index */
    char *range = s->window
        ? sqlite3_mprintf("\"%w\".window_end > ?1 AND \"%w\".window_end <= ?2", s->qual[0],
                          s->qual[0])
        : sqlite3_mprintf("%s >= ?1 AND \"%w\".ts < ?2 AND \"%w\".ts < ?2", e, s->qual[0],
                          s->qual[1]);
    int rc = e && from && order && range ? 0 : -ENOMEM;
    if (rc == 0) rc = appends(out, f->distinct ? "SELECT DISTINCT " : "SELECT ");
    if (rc == 0) rc = append_toks(f, f->sel_b, f->sel_e, out);
    if (rc == 0) rc = appends(out, from);
    if (rc == 0) rc = append_toks(f, s->on_b, s->on_e, out);
    if (rc == 0) rc = appends(out, " WHERE ");
    if (rc == 0 && f->where_b >= 0) {
        rc = appends(out, "(");
        if (rc == 0) rc = append_toks(f, f->where_b, f->where_e, out);
        if (rc == 0) rc = appends(out, ") AND ");
    }
    if (rc == 0) rc = appends(out, range);
    if (rc == 0 && f->group_b >= 0) {
        /* one row per group of a window (invariant 7), ordered by the window's
         * emission time, then the keys as written */
        rc = appends(out, " GROUP BY ");
        if (rc == 0) rc = append_toks(f, f->group_b, f->group_e, out);
        if (rc == 0 && f->having_b >= 0) {
            rc = appends(out, " HAVING ");
            if (rc == 0) rc = append_toks(f, f->having_b, f->having_e, out);
        }
        if (rc == 0) rc = appends(out, " ORDER BY ");
        if (rc == 0) rc = appends(out, e);
        if (rc == 0) rc = appends(out, ", ");
        if (rc == 0) rc = append_toks(f, f->group_b, f->group_e, out);
    } else if (rc == 0) {
        rc = appends(out, order);
    }
    if (rc == 0) rc = rn_buf_append(out, "", 1, 0) == 0 ? 0 : -ENOMEM;
    sqlite3_free(e);
    sqlite3_free(from);
    sqlite3_free(order);
    sqlite3_free(range);
    return rc;
}

/* 1 when the parenthesis at lp holds a comma at its own level. */
static int has_top_comma(const front_t *f, int lp)
{
    int close = rn_front_match_paren(f, lp);
    for (int i = lp + 1; close > 0 && i < close; i++)
        if (f->toks[i].kind == TK_COMMA && f->toks[i].depth == f->toks[lp].depth + 1) return 1;
    return 0;
}

int rn_sjoin_open(rn_datadir_t *d, sqlite3 *db, const front_t *f, const rn_sql_opts_t *o,
                  rn_sjoin_t **out, int *erroff, char *errmsg)
{
    *out = NULL;
    const sjoin_spec_t *s = f->sjoin;
    /* DISTINCT over a window join: rows of one window are emitted together,
     * so with the window among the columns, distinct per emission is
     * distinct over the stream (Nexmark q8) */
    int win_col = 0;
    for (int i = f->sel_b; i < f->sel_e; i++)
        win_col |= rn_front_tok_is(f, i, "window_start") || rn_front_tok_is(f, i, "window_end");
    if (f->distinct && !(s->window && win_col)) {
        if (erroff) *erroff = (int)f->toks[f->body].off;
        return rn_errf(errmsg, RN_EINVAL, "SELECT DISTINCT over a stream-stream join needs a "
                       "window join selecting window_start or window_end (rows are distinct "
                       "per window)");
    }
    /* GROUP BY over a window join: each window's pairs are emitted together
     * (invariant 2: they share e), so with the window among the keys sqlite's
     * GROUP BY over one emission is the aggregate over the stream (invariant 7) */
    int grouped = f->group_b >= 0;
    if (grouped && !s->window) {
        if (erroff) *erroff = (int)f->toks[f->group_b - 2].off;
        return rn_errf(errmsg, RN_EINVAL, "GROUP BY over a stream-stream join needs a window "
                       "join grouped by window_start or window_end (an interval join's pairs "
                       "of one group are not emitted together); aggregate its output "
                       "downstream");
    }
    int win_key = 0;
    for (int i = f->group_b; grouped && i < f->group_e; i++)
        win_key |= rn_front_tok_is(f, i, "window_start") || rn_front_tok_is(f, i, "window_end");
    if (grouped && !win_key) {
        if (erroff) *erroff = (int)f->toks[f->group_b].off;
        return rn_errf(errmsg, RN_EINVAL, "GROUP BY over a window join must group by the "
                       "window (GROUP BY l.window_start, ...): a group spanning windows would "
                       "need every window");
    }
    if ((f->having_b >= 0 && !grouped) || f->emit_changes) {
        int t = f->having_b >= 0 ? f->having_b - 1 : f->body;
        if (erroff) *erroff = (int)f->toks[t].off;
        return rn_errf(errmsg, RN_EINVAL, "a stream-stream join gives joined rows: %s over it "
                       "is not supported", f->emit_changes ? "EMIT" : "HAVING without GROUP BY");
    }
    /* the aggregates sqlite itself computes; streamsql's others live in window.c */
    static const char *const sqlite_aggs[] = {"count", "sum", "total", "avg", "min", "max"};
    static const char *const other_aggs[] = {"group_concat", "first", "last", "stddev",
                                             "stddev_samp", "stddev_pop", "variance", "var_samp",
                                             "var_pop", "percentile_approx",
                                             "approx_count_distinct"};
    for (int i = f->sel_b; i < f->ntoks && i < f->tail_b; i++) {
        if (i >= s->from_b && i < s->from_e) continue;
        if (i + 1 >= f->ntoks || f->toks[i + 1].kind != TK_LP ||
            (i > 0 && f->toks[i - 1].kind == TK_DOT))
            continue;
        int ours = 0, other = 0;
        for (size_t a = 0; a < sizeof sqlite_aggs / sizeof sqlite_aggs[0]; a++)
            ours |= rn_front_tok_is(f, i, sqlite_aggs[a]);
        for (size_t a = 0; a < sizeof other_aggs / sizeof other_aggs[0]; a++)
            other |= rn_front_tok_is(f, i, other_aggs[a]);
        /* min(a, b) and max(a, b) are scalar: allowed anywhere */
        int scalar = (rn_front_tok_is(f, i, "min") || rn_front_tok_is(f, i, "max")) &&
                     has_top_comma(f, i + 1);
        if ((ours && !scalar && !grouped) || other) {
            if (erroff) *erroff = (int)f->toks[i].off;
            return rn_errf(errmsg, RN_EINVAL, other
                           ? "over a stream-stream join, aggregates are count, sum, total, avg, "
                             "min and max (with GROUP BY of a window join's window)"
                           : "aggregates over a stream-stream join need GROUP BY of a window "
                             "join's window (GROUP BY l.window_start, ...); an interval join "
                             "gives joined rows");
        }
    }
    /* functions as for any query (sqlite's aggregates refused), FROM aside */
    front_t cf = *f;
    cf.tvf = 1;
    cf.tvf_b = s->from_b;
    cf.tvf_e = s->from_e - 1;
    int rc = rn_front_check_functions(&cf, db, erroff, errmsg);
    if (rc != 0) return rc;
    rn_sjoin_t *j = calloc(1, sizeof *j);
    if (!j) return rn_errf(errmsg, -ENOMEM, "out of memory");
    j->s = s;
    j->db = db;
    j->delay = f->watermark_ms > 0 ? f->watermark_ms : 0;
    j->wm = j->emitted = INT64_MIN;
    j->follow = o->follow;
    j->pref = -1;
    j->stepping = -1;
    j->reject = o->reject;
    j->rctx = o->ctx;
    /* the buffer tables in memory: as a temp file each insert (its own
     * transaction) would write and truncate a journal; the state is bounded
     * (invariant 3) */
    rc = exec(db, "PRAGMA temp_store = MEMORY", errmsg);
    for (int k = 0; k < 2 && rc == 0; k++) rc = open_side(j, d, k, o, errmsg);
    rn_buf_t sql = {0};
    if (rc == 0 && (rc = emission_sql(f, s, &sql)) != 0)
        rn_errf(errmsg, rc, "out of memory");
    if (rc == 0 && sqlite3_prepare_v2(db, (const char *)sql.data, -1, &j->est, NULL) != SQLITE_OK)
        rc = rn_errf(errmsg, RN_EINVAL, "%s", sqlite3_errmsg(db));
    rn_buf_free(&sql);
    if (rc != 0) {
        rn_sjoin_close(j);
        return rc;
    }
    *out = j;
    return 0;
}

sqlite3_stmt *rn_sjoin_stmt(rn_sjoin_t *j) { return j->est; }

/* Emit the pairs with E <= e < W, then free what no future pair can use. */
static int emit(rn_sjoin_t *j, int (*fn)(void *, sqlite3_stmt *), void *ctx, char *errmsg)
{
    if (j->wm <= j->emitted) return 0;
    sqlite3_bind_int64(j->est, 1, j->emitted);
    sqlite3_bind_int64(j->est, 2, j->wm);
    int rc = 0, s;
    while ((s = sqlite3_step(j->est)) == SQLITE_ROW)
        if ((rc = fn(ctx, j->est)) != 0) break;
    if (rc == 0 && s != SQLITE_DONE)
        rc = rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %s", sqlite3_errmsg(j->db));
    sqlite3_reset(j->est);
    if (rc != 0) return rc;
    j->emitted = j->wm;
    for (int k = 0; k < 2; k++) {
        side_t *sd = &j->side[k];
        int64_t keep = j->wm;         /* INT64_MAX at the end: everything goes */
        if (!j->s->window && keep != INT64_MAX) {
            /* left: ts >= E - hi; right: ts >= E + lo (invariant 3) */
            int64_t off = k == 0 ? -j->s->hi : j->s->lo;
            keep = (off < 0 && keep < INT64_MIN - off) ? INT64_MIN : keep + off;
        }
        sqlite3_bind_int64(sd->del, 1, keep);
        if (sqlite3_step(sd->del) != SQLITE_DONE)
            rc = rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %s", sqlite3_errmsg(j->db));
        else sd->rows -= (uint64_t)sqlite3_changes(j->db);
        sqlite3_reset(sd->del);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Step side k's inner query once: *read 1 when it read a batch. */
static int step_side(rn_sjoin_t *j, int k, int *read, int *idle, char *errmsg)
{
    side_t *sd = &j->side[k];
    *read = 0;
    if (sd->finished) return 0;
    rn_sql_state_t st;
    j->errmsg[0] = '\0';
    j->stepping = k;      /* rows and rejects of the batch see its queue */
    int rc = rn_sql_step(sd->q, &st, errmsg);
    if (rc != 0) {
        if (j->errmsg[0]) snprintf(errmsg, RN_ERRMSG_SIZE, "%s", j->errmsg);
        return rc;
    }
    if (st == RN_SQL_DONE) sd->finished = 1;
    if (st != RN_SQL_IDLE) *idle = 0;
    *read = rn_sql_batch_queue(sd->q) != UINT32_MAX;
    if (!*read) j->stepping = -1;
    /* a queue at its end holds the watermark back no more */
    for (uint32_t i = 0; i < sd->nq && !j->follow; i++) {
        int64_t end = -1, pos = 0;
        if (!sd->done[i] && rn_sql_end(sd->q, i, &end, errmsg) == 0 &&
            rn_sql_position(sd->q, i, &pos, errmsg) == 0 && pos >= end)
            sd->done[i] = 1;
    }
    return 0;
}

int rn_sjoin_step(rn_sjoin_t *j, int (*fn)(void *, sqlite3_stmt *), void *ctx,
                  rn_sql_state_t *state, char *errmsg)
{
    int idle = 1, read = 0, first = j->pref >= 0 ? j->pref : j->next;
    j->pref = -1;
    j->stepping = -1;
    /* at most one batch (invariant 5) */
    int rc = step_side(j, first, &read, &idle, errmsg);
    if (rc == 0 && !read) rc = step_side(j, !first, &read, &idle, errmsg);
    if (rc != 0) return rc;
    if (read) j->next = !j->stepping;
    raise_wm(j);
    int done = j->side[0].finished && j->side[1].finished;
    if (done) j->wm = INT64_MAX;
    rc = emit(j, fn, ctx, errmsg);
    if (rc != 0) return rc;
    *state = done ? RN_SQL_DONE : idle ? RN_SQL_IDLE : RN_SQL_MORE;
    return 0;
}

uint32_t rn_sjoin_queues(const rn_sjoin_t *j) { return j->side[0].nq + j->side[1].nq; }

uint32_t rn_sjoin_batch_queue(const rn_sjoin_t *j)
{
    if (j->stepping < 0) return UINT32_MAX;
    uint32_t bq = rn_sql_batch_queue(j->side[j->stepping].q);
    return bq == UINT32_MAX ? bq : bq + (j->stepping ? j->side[0].nq : 0);
}

int rn_sjoin_source_queue(rn_sjoin_t *j, uint32_t i, const char **topic, uint32_t *queue)
{
    int k = side_of(j, i, queue);
    if (k < 0) return RN_EINVAL;
    uint32_t nq;
    rn_sql_source(j->side[k].q, topic, &nq);
    return 0;
}

int rn_sjoin_position(rn_sjoin_t *j, uint32_t i, int64_t *offset, char *errmsg)
{
    uint32_t queue;
    int k = side_of(j, i, &queue);
    if (k < 0) return rn_errf(errmsg, RN_EINVAL, "no source queue %u", i);
    return rn_sql_position(j->side[k].q, queue, offset, errmsg);
}

int rn_sjoin_prefer(rn_sjoin_t *j, uint32_t i, char *errmsg)
{
    uint32_t queue;
    int k = side_of(j, i, &queue);
    if (k < 0) return rn_errf(errmsg, RN_EINVAL, "no source queue %u", i);
    int rc = rn_sql_prefer_queue(j->side[k].q, queue, errmsg);
    if (rc == 0) j->pref = k;
    return rc;
}

/* ---- saved state (invariant 6) --------------------------------------------------------
 *
 *   u32 magic "RNJ1" | u8 window | u8 next | i64 W | i64 E | u64 late
 *   per side: u32 len, the inner query's state (rn_sql_state_save) | u8 finished |
 *             u32 nq | per queue: i64 largest event time, u8 live, u8 done |
 *             u32 ncols | u64 nrows | per row, per column: u8 type, then
 *             INT: i64; REAL: f64; TEXT, BLOB: u32 length, bytes; NULL: nothing
 *
 * Host byte order, like the rest of a checkpoint (local to a data directory). */

#define SJOIN_MAGIC 0x314a4e52u   /* "RNJ1" */

static int put(rn_buf_t *b, const void *p, size_t n)
{
    return rn_buf_append(b, p, n, 0) == 0 ? 0 : -ENOMEM;
}

static int save_rows(rn_sjoin_t *j, int k, rn_buf_t *out, char *errmsg)
{
    side_t *sd = &j->side[k];
    char sql[48];
    snprintf(sql, sizeof sql, "SELECT * FROM temp.__rn_%c", k ? 'r' : 'l');
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %s", sqlite3_errmsg(j->db));
    uint32_t nc = (uint32_t)sqlite3_column_count(st);
    uint64_t nrows = sd->rows;
    int rc = put(out, &nc, 4), s;
    if (rc == 0) rc = put(out, &nrows, 8);
    uint64_t seen = 0;
    while (rc == 0 && (s = sqlite3_step(st)) == SQLITE_ROW) {
        seen++;
        for (uint32_t c = 0; rc == 0 && c < nc; c++) {
            uint8_t t = (uint8_t)sqlite3_column_type(st, (int)c);
            rc = put(out, &t, 1);
            if (rc != 0) break;
            if (t == SQLITE_INTEGER) {
                int64_t v = sqlite3_column_int64(st, (int)c);
                rc = put(out, &v, 8);
            } else if (t == SQLITE_FLOAT) {
                double v = sqlite3_column_double(st, (int)c);
                rc = put(out, &v, 8);
            } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
                const void *v = t == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, (int)c)
                                                 : sqlite3_column_blob(st, (int)c);
                uint32_t n = (uint32_t)sqlite3_column_bytes(st, (int)c);
                rc = put(out, &n, 4);
                if (rc == 0 && n) rc = put(out, v, n);
            }
        }
    }
    if (rc == 0 && s != SQLITE_DONE)
        rc = rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %s", sqlite3_errmsg(j->db));
    else if (rc != 0) rn_errf(errmsg, rc, "out of memory saving the join state");
    sqlite3_finalize(st);
    assert(rc != 0 || seen == nrows);
    if (rc == 0 && seen != nrows)
        rc = rn_errf(errmsg, RN_ESQLITE, "stream-stream join: %llu records buffered, %llu "
                     "counted", (unsigned long long)seen, (unsigned long long)nrows);
    return rc;
}

int rn_sjoin_save(rn_sjoin_t *j, rn_buf_t *out, char *errmsg)
{
    uint32_t magic = SJOIN_MAGIC;
    uint8_t hd[2] = {(uint8_t)j->s->window, (uint8_t)j->next};
    int rc = put(out, &magic, 4);
    if (rc == 0) rc = put(out, hd, 2);
    if (rc == 0) rc = put(out, &j->wm, 8);
    if (rc == 0) rc = put(out, &j->emitted, 8);
    if (rc == 0) rc = put(out, &j->late, 8);
    for (int k = 0; k < 2 && rc == 0; k++) {
        side_t *sd = &j->side[k];
        size_t at = out->len;
        uint32_t len = 0;
        if ((rc = put(out, &len, 4)) != 0) break;
        if ((rc = rn_sql_state_save(sd->q, out, errmsg)) != 0) return rc;
        if (out->len - at - 4 > UINT32_MAX)
            return rn_errf(errmsg, RN_ETOOBIG, "a join side's state larger than 4 GiB");
        len = (uint32_t)(out->len - at - 4);
        memcpy(out->data + at, &len, 4);
        uint8_t fin = (uint8_t)sd->finished;
        rc = put(out, &fin, 1);
        if (rc == 0) rc = put(out, &sd->nq, 4);
        for (uint32_t i = 0; rc == 0 && i < sd->nq; i++) {
            uint8_t fl[2] = {sd->live[i], sd->done[i]};
            rc = put(out, &sd->qmax[i], 8);
            if (rc == 0) rc = put(out, fl, 2);
        }
        if (rc != 0) break;
        if ((rc = save_rows(j, k, out, errmsg)) != 0) return rc;
    }
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory saving the join state");
    return 0;
}

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

static int take(rd_t *r, void *v, size_t n)
{
    if ((size_t)(r->end - r->p) < n) return -1;
    memcpy(v, r->p, n);
    r->p += n;
    return 0;
}

static int load_rows(rn_sjoin_t *j, int k, rd_t *r, char *errmsg)
{
    side_t *sd = &j->side[k];
    uint32_t nc;
    uint64_t nrows;
    if (take(r, &nc, 4) || take(r, &nrows, 8) ||
        nc != (uint32_t)(sd->ncols + (j->s->window ? 2 : 0)))
        return RN_ECORRUPT;
    for (uint64_t row = 0; row < nrows; row++) {
        int rc = SQLITE_OK;
        for (uint32_t c = 0; c < nc && rc == SQLITE_OK; c++) {
            uint8_t t;
            if (take(r, &t, 1)) return RN_ECORRUPT;
            if (t == SQLITE_INTEGER || t == SQLITE_FLOAT) {
                int64_t v;
                double dv;
                if (take(r, &v, 8)) return RN_ECORRUPT;
                memcpy(&dv, &v, 8);
                rc = t == SQLITE_INTEGER ? sqlite3_bind_int64(sd->ins, (int)c + 1, v)
                                         : sqlite3_bind_double(sd->ins, (int)c + 1, dv);
            } else if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
                uint32_t n;
                if (take(r, &n, 4) || (size_t)(r->end - r->p) < n) return RN_ECORRUPT;
                rc = t == SQLITE_TEXT
                     ? sqlite3_bind_text(sd->ins, (int)c + 1, (const char *)r->p, (int)n,
                                         SQLITE_TRANSIENT)
                     : sqlite3_bind_blob(sd->ins, (int)c + 1, r->p, (int)n, SQLITE_TRANSIENT);
                r->p += n;
            } else if (t == SQLITE_NULL) {
                rc = sqlite3_bind_null(sd->ins, (int)c + 1);
            } else {
                return RN_ECORRUPT;
            }
        }
        if (rc == SQLITE_OK && sqlite3_step(sd->ins) != SQLITE_DONE) rc = SQLITE_ERROR;
        sqlite3_reset(sd->ins);
        if (rc != SQLITE_OK)
            return rn_errf(errmsg, RN_ESQLITE, "cannot restore a joined record: %s",
                           sqlite3_errmsg(j->db));
    }
    sd->rows = nrows;
    return 0;
}

int rn_sjoin_load(rn_sjoin_t *j, const uint8_t *p, size_t n, char *errmsg)
{
    rd_t r = {p, p + n};
    uint32_t magic;
    uint8_t hd[2];
    if (take(&r, &magic, 4) || take(&r, hd, 2) || magic != SJOIN_MAGIC ||
        hd[0] != (uint8_t)j->s->window || hd[1] > 1 || take(&r, &j->wm, 8) ||
        take(&r, &j->emitted, 8) || take(&r, &j->late, 8))
        goto damaged;
    j->next = hd[1];
    for (int k = 0; k < 2; k++) {
        side_t *sd = &j->side[k];
        uint32_t len, nq;
        uint8_t fin;
        if (take(&r, &len, 4) || (size_t)(r.end - r.p) < len) goto damaged;
        int rc = rn_sql_state_load(sd->q, r.p, len, errmsg);
        if (rc != 0) return rc;
        r.p += len;
        if (take(&r, &fin, 1) || take(&r, &nq, 4) || nq != sd->nq) goto damaged;
        sd->finished = fin != 0;
        for (uint32_t i = 0; i < nq; i++) {
            uint8_t fl[2];
            if (take(&r, &sd->qmax[i], 8) || take(&r, fl, 2)) goto damaged;
            sd->live[i] = fl[0];
            sd->done[i] = fl[1];
        }
        if ((rc = load_rows(j, k, &r, errmsg)) == RN_ECORRUPT) goto damaged;
        if (rc != 0) return rc;
    }
    if (r.p != r.end) goto damaged;
    return 0;
damaged:
    return rn_errf(errmsg, RN_ECORRUPT, "saved stream-stream join state is damaged or from "
                   "another query");
}

int rn_sjoin_wait(rn_sjoin_t *j, uint32_t ms) { return rn_sql_wait(j->side[0].q, ms); }

void rn_sjoin_stats(rn_sjoin_t *j, rn_sql_stats_t *out)
{
    out->records = out->errors = out->target = out->skipped = 0;
    for (int k = 0; k < 2; k++) {
        rn_sql_stats_t s;
        rn_sql_stats(j->side[k].q, &s);
        out->records += s.records;
        out->errors += s.errors;
        out->target += s.target;
        out->skipped += s.skipped;
        if (!out->first_error[0] && s.first_error[0])
            snprintf(out->first_error, sizeof out->first_error, "%s", s.first_error);
    }
    out->late = j->late;
    out->watermark = j->wm;
    out->join_rows = j->side[0].rows + j->side[1].rows;
}

const char *rn_sjoin_right_topic(rn_sjoin_t *j)
{
    const char *t = NULL;
    uint32_t nq;
    rn_sql_source(j->side[1].q, &t, &nq);
    return t;
}

void rn_sjoin_cancel(rn_sjoin_t *j)
{
    for (int k = 0; k < 2; k++)
        if (j->side[k].q) rn_sql_cancel(j->side[k].q);
}

void rn_sjoin_close(rn_sjoin_t *j)
{
    if (!j) return;
    sqlite3_finalize(j->est);
    for (int k = 0; k < 2; k++) {
        side_t *sd = &j->side[k];
        sqlite3_finalize(sd->ins);
        sqlite3_finalize(sd->del);
        rn_sql_close(sd->q);
        free(sd->qmax);
        free(sd->live);
        free(sd->done);
    }
    free(j);
}

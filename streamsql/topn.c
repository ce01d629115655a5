/*
 * topn.c — Window TopN and window deduplication in Flink's form, over a
 * windowed aggregate (the aggregate form)
 *
 *   SELECT <outer items> FROM (
 *       SELECT <items>, ROW_NUMBER() OVER (PARTITION BY window_start, window_end[, k ...]
 *                                          ORDER BY x [ASC|DESC][, ...]) AS rn
 *       FROM (<GROUP BY TUMBLE/HOP/SESSION ..., or a window TVF with GROUP BY>)
 *   ) WHERE rn <= N                      (or rn < N, or rn = 1: deduplication)
 *
 * or over the rows of a window TVF (the rows form: Nexmark q7's "highest bid",
 * keep-first / keep-last per key and window)
 *
 *   SELECT ... FROM (SELECT window_start, window_end, a, b, RANK() OVER (PARTITION BY
 *       window_start, window_end[, k] ORDER BY a DESC) AS rn
 *     FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '10' SECOND)) [WHERE ...])
 *   WHERE rn <= N
 *
 * or, without a window, keep-first deduplication over a stream's rows
 *
 *   SELECT ... FROM (SELECT k, v, ts, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC)
 *     AS rn FROM s [WHERE ...]) WHERE rn = 1
 *
 * (a grouping by k emitting each group once, when made: the first row in
 * arrival order; its state is the keys seen, unbounded).
 *
 * RANK() and DENSE_RANK() are accepted in place of ROW_NUMBER(). The front
 * (rn_topn_parse) recognises the wrapper and records it in a topn_spec_t. The
 * aggregate form blanks the wrapper: the inner query stays at its offsets and
 * runs as any windowed aggregate; the rows of the windows that just closed are
 * collected from the emission statement (rn_topn_add), sorted and ranked per
 * partition, and the kept ones go out through the outer projection
 * (rn_topn_flush). The rows form becomes a grouping by the window and the
 * other PARTITION BY columns with one aggregate, __rn_topn(__rn_topn_row(...)),
 * whose state (window.c AG_TOPN) is the group's best rows, each encoded so
 * that memcmp gives the ranking order; at emission they are decoded.
 *
 * Invariants:
 *  1. Only these shapes run; every other OVER stays refused (front.c). A
 *     partition always contains the window (window_start or window_end; both
 *     for SESSION), and the query emits FINAL rows (sql.c checks): a window's
 *     rows are final when it closes and all of them come out of one
 *     collection (window.c), so ranking them there gives the same rows for
 *     every batching and every queue interleaving.
 *  2. The order is total, so the result is deterministic: rows sort by the
 *     ORDER BY keys, then (ties) by the other columns left to right,
 *     ascending, in sqlite's order (NULL, numbers by value, text by bytes,
 *     blobs): in the aggregate form every column of the subquery's row, in the
 *     rows form every column the ranking SELECT names (the window bounds
 *     aside). RANK and DENSE_RANK give tied rows the same rank and keep them
 *     all; ROW_NUMBER numbers them in that order. A record that came twice is
 *     two equal rows.
 *  3. Rows go out per collection: partitions ascending by their PARTITION BY
 *     values, ranks ascending inside each.
 *  4. Memory: the aggregate form holds the window state of its subquery, plus
 *     at a flush the rows of the windows closing then. The rows form holds per
 *     open window and partition at most N rows (ROW_NUMBER), or the rows of
 *     rank <= N (RANK, DENSE_RANK: more when rows tie), never the window's
 *     other rows; saved exactly in checkpoints (window.c invariant 5).
 *  5. The rows form's inner query is generated text: error offsets in it map
 *     back to the user's statement (rn_topn_map_offset).
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>

#define TOPN_MAX_COLS 64

typedef enum topn_fn { TF_ROW_NUMBER, TF_RANK, TF_DENSE_RANK } topn_fn_t;

typedef struct topn_name {
    char name[RN_SQL_MAX_NAME + 1];
    char alias[RN_SQL_MAX_NAME + 1];     /* outer items: "" when none */
    int  off;                            /* in the statement, for errors */
    int  len;                            /* of its token */
} topn_name_t;

struct topn_spec {
    topn_fn_t   fn;
    int64_t     n;                       /* keep rank <= n */
    topn_name_t rank;                    /* the rank column */
    int         npart, norder;
    topn_name_t part[RN_SQL_MAX_KEYS + 2];
    topn_name_t order[RN_SQL_MAX_KEYS];
    int         desc[RN_SQL_MAX_KEYS];
    int         nmid;                    /* items of the ranking SELECT: "*", names, rank */
    topn_name_t mid[TOPN_MAX_COLS];      /* name "*" for a star, "" for the rank item */
    int         nout;                    /* outer items; a single "*" for all */
    topn_name_t out[TOPN_MAX_COLS];
    int         off;                     /* the statement's first token */
    int         rows;                    /* the rows form (over a window TVF's or, keep
                                            first, a stream's rows) */
    int         first;                   /* keep first per key over a stream, no window */
    /* the rows form's generated text: [copy_new, copy_new + copy_len) is the user's
     * [copy_old, ...) (the TVF and its WHERE), tail_new.. the user's tail_old.. */
    int         copy_old, copy_new, copy_len, tail_old, tail_new;
};

/* The rows form's column of kept rows (never a user's name: it has a '#'). */
#define TOPN_ROWS "#topn"

static const char *const fn_names[] = {"ROW_NUMBER", "RANK", "DENSE_RANK"};

#define TOPN_FORM "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, " \
                  "window_end ORDER BY x DESC) AS rn FROM (<a GROUP BY TUMBLE/HOP/SESSION " \
                  "query>)) WHERE rn <= N"

static int terr(int *erroff, int off, char *errmsg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int terr(int *erroff, int off, char *errmsg, const char *fmt, ...)
{
    if (erroff) *erroff = off;
    va_list ap;
    va_start(ap, fmt);
    int code = rn_verrf(errmsg, RN_EINVAL, fmt, ap);
    va_end(ap);
    return code;
}

static int off_of(const front_t *f, int i)
{
    return i < f->ntoks ? (int)f->toks[i].off : (int)f->len;
}

static int is_name(const front_t *f, int i)
{
    return i < f->ntoks && (f->toks[i].kind == TK_ID || f->toks[i].kind == TK_QID);
}

/* A name token into nm (with its offset); RN_EINVAL when not a name. */
static int take_name(const front_t *f, int i, topn_name_t *nm)
{
    if (!is_name(f, i) || rn_front_ident(f, i, nm->name, sizeof nm->name) != 0) return RN_EINVAL;
    nm->off = off_of(f, i);
    nm->len = (int)f->toks[i].len;
    return 0;
}

/* The index of the next token at depth d in [i, e) that is a comma, or e. */
static int item_end(const front_t *f, int i, int e, int d)
{
    for (; i < e; i++)
        if (f->toks[i].kind == TK_COMMA && f->toks[i].depth == d) return i;
    return e;
}

/* "[AS] alias" over [i, e): 0 when it is that (or empty), alias into nm. */
static int take_alias(const front_t *f, int i, int e, topn_name_t *nm)
{
    nm->alias[0] = '\0';
    if (i == e) return 0;
    if (rn_front_tok_is(f, i, "AS")) i++;
    if (i + 1 != e || !is_name(f, i)) return RN_EINVAL;
    return rn_front_ident(f, i, nm->alias, sizeof nm->alias) == 0 ? 0 : RN_EINVAL;
}

/* PARTITION BY a, b ORDER BY c [ASC|DESC], ... between the parentheses [b, e). */
static int parse_over(const front_t *f, int b, int e, topn_spec_t *s, int *erroff, char *errmsg)
{
    int i = b;
    if (!rn_front_tok_is(f, i, "PARTITION") || !rn_front_tok_is(f, i + 1, "BY"))
        return terr(erroff, off_of(f, i), errmsg, "OVER (...) of a TopN starts with PARTITION BY "
                    "window_start, window_end[, keys] (each window is ranked on its own)");
    for (i += 2;; i++) {
        if (s->npart == (int)(sizeof s->part / sizeof s->part[0]))
            return terr(erroff, off_of(f, i), errmsg, "at most %d PARTITION BY columns",
                        (int)(sizeof s->part / sizeof s->part[0]));
        if (take_name(f, i, &s->part[s->npart]) != 0)
            return terr(erroff, off_of(f, i), errmsg, "PARTITION BY takes column names of the "
                        "subquery (window_start, window_end, keys)");
        s->npart++;
        if (i + 1 < e && f->toks[i + 1].kind == TK_COMMA) { i++; continue; }
        i++;
        break;
    }
    if (!rn_front_tok_is(f, i, "ORDER") || !rn_front_tok_is(f, i + 1, "BY"))
        return terr(erroff, off_of(f, i), errmsg, "a TopN's OVER (...) needs ORDER BY after "
                    "PARTITION BY (ORDER BY x DESC)");
    for (i += 2;; i++) {
        if (s->norder == RN_SQL_MAX_KEYS)
            return terr(erroff, off_of(f, i), errmsg, "at most %d ORDER BY columns",
                        RN_SQL_MAX_KEYS);
        if (take_name(f, i, &s->order[s->norder]) != 0)
            return terr(erroff, off_of(f, i), errmsg, "ORDER BY takes column names of the "
                        "subquery, each with ASC or DESC");
        if (rn_front_tok_is(f, i + 1, "DESC")) { s->desc[s->norder] = 1; i++; }
        else if (rn_front_tok_is(f, i + 1, "ASC")) i++;
        s->norder++;
        if (i + 1 < e && f->toks[i + 1].kind == TK_COMMA) { i++; continue; }
        i++;
        break;
    }
    if (i != e)
        return terr(erroff, off_of(f, i), errmsg, "unexpected in a TopN's OVER (...): it is "
                    "PARTITION BY columns ORDER BY columns [ASC|DESC] (no frame, no NULLS "
                    "FIRST/LAST)");
    return 0;
}

/* The ranking SELECT's items in [b, e) at depth d. */
static int parse_mid(const front_t *f, int b, int e, int d, topn_spec_t *s, int *erroff,
                     char *errmsg)
{
    int have_rank = 0;
    for (int i = b; i < e;) {
        int ie = item_end(f, i, e, d);
        if (s->nmid == TOPN_MAX_COLS)
            return terr(erroff, off_of(f, i), errmsg, "at most %d items", TOPN_MAX_COLS);
        topn_name_t *m = &s->mid[s->nmid];
        int fn = -1;
        for (int k = 0; k < 3; k++)
            if (rn_front_tok_is(f, i, fn_names[k])) fn = k;
        if (ie == i + 1 && f->toks[i].kind == TK_STAR) {
            snprintf(m->name, sizeof m->name, "*");
            m->off = off_of(f, i);
        } else if (fn >= 0 && i + 4 < ie && f->toks[i + 1].kind == TK_LP &&
                   f->toks[i + 2].kind == TK_RP && rn_front_tok_is(f, i + 3, "OVER") &&
                   f->toks[i + 4].kind == TK_LP) {
            if (have_rank++)
                return terr(erroff, off_of(f, i), errmsg, "one ranking function per TopN");
            int close = rn_front_match_paren(f, i + 4);
            int rc = parse_over(f, i + 5, close, s, erroff, errmsg);
            if (rc != 0) return rc;
            if (take_alias(f, close + 1, ie, &s->rank) != 0 || !s->rank.alias[0])
                return terr(erroff, off_of(f, close + 1), errmsg, "name the rank: %s() OVER "
                            "(...) AS rn, and keep rows with WHERE rn <= N", fn_names[fn]);
            s->fn = (topn_fn_t)fn;
            s->rank.off = off_of(f, i);
            m->name[0] = '\0';
            m->off = off_of(f, i);
        } else if (ie == i + 1 && take_name(f, i, m) == 0) {
            /* a column of the subquery */
        } else {
            return terr(erroff, off_of(f, i), errmsg, "the ranking SELECT of a TopN takes *, "
                        "column names of its subquery and one ROW_NUMBER() | RANK() | "
                        "DENSE_RANK() OVER (...) AS rn; compute expressions in the subquery");
        }
        s->nmid++;
        i = ie + 1;
    }
    if (!have_rank)
        return terr(erroff, off_of(f, b), errmsg, "a subquery in FROM is supported only as a "
                    "Window TopN or deduplication: " TOPN_FORM);
    return 0;
}

/* The outer items in [b, e) at depth d: "*" or names with aliases. */
static int parse_out(const front_t *f, int b, int e, int d, topn_spec_t *s, int *erroff,
                     char *errmsg)
{
    for (int i = b; i < e;) {
        int ie = item_end(f, i, e, d);
        if (s->nout == TOPN_MAX_COLS)
            return terr(erroff, off_of(f, i), errmsg, "at most %d items", TOPN_MAX_COLS);
        topn_name_t *o = &s->out[s->nout];
        if (ie == i + 1 && f->toks[i].kind == TK_STAR) {
            snprintf(o->name, sizeof o->name, "*");
            o->off = off_of(f, i);
        } else if (take_name(f, i, o) != 0 || take_alias(f, i + 1, ie, o) != 0) {
            return terr(erroff, off_of(f, i), errmsg, "the outer SELECT of a TopN takes * or "
                        "column names (with AS aliases); compute expressions in the subquery");
        }
        s->nout++;
        i = ie + 1;
    }
    return 0;
}

/* WHERE rn <= N | rn < N | rn = 1 (or N >= rn, N > rn, 1 = rn) at [i, ...):
 * the index after it. */
static int parse_cond(const front_t *f, int i, topn_spec_t *s, int *next, int *erroff,
                      char *errmsg)
{
    char op[3] = "", num[24];
    int name_i = i, num_i = i + 2, flip = 0;
    if (i + 2 < f->ntoks && f->toks[i].kind == TK_NUM) { name_i = i + 2; num_i = i; flip = 1; }
    topn_name_t nm;
    if (i + 2 >= f->ntoks || f->toks[i + 1].kind != TK_OP || f->toks[i + 1].len > 2 ||
        take_name(f, name_i, &nm) != 0 || f->toks[num_i].kind != TK_NUM ||
        f->toks[num_i].len >= sizeof num || strcasecmp(nm.name, s->rank.alias) != 0)
        goto bad;
    memcpy(op, f->sql + f->toks[i + 1].off, f->toks[i + 1].len);
    op[f->toks[i + 1].len] = '\0';
    memcpy(num, f->sql + f->toks[num_i].off, f->toks[num_i].len);
    num[f->toks[num_i].len] = '\0';
    char *end;
    long long v = strtoll(num, &end, 10);
    if (*end != '\0' || v < 1) goto bad;
    if (flip) {
        if (strcmp(op, ">=") == 0) snprintf(op, sizeof op, "<=");
        else if (strcmp(op, ">") == 0) snprintf(op, sizeof op, "<");
    }
    if (strcmp(op, "<=") == 0) s->n = v;
    else if (strcmp(op, "<") == 0 && v > 1) s->n = v - 1;
    else if ((strcmp(op, "=") == 0 || strcmp(op, "==") == 0) && v == 1) s->n = 1;
    else goto bad;
    *next = i + 3;
    return 0;
bad:
    return terr(erroff, off_of(f, i), errmsg, "the outer WHERE of a TopN is %s <= N (or < N, "
                "or = 1 to deduplicate), N a whole number >= 1, and nothing else",
                s->rank.alias[0] ? s->rank.alias : "rn");
}

/* The aggregate form: blank the wrapper, so what stays is the inner query
 * and the tail, at their offsets. */
static int rewrite_inner(front_t *f, int s0, int in_lp, int in_rp, int next, int *erroff,
                         char *errmsg)
{
    if (!f->own) {
        f->own = malloc(f->len + 1);
        if (!f->own) return rn_errf(errmsg, -ENOMEM, "out of memory");
        memcpy(f->own, f->sql, f->len);
        f->own[f->len] = '\0';
    }
    size_t b1 = f->toks[s0].off, e1 = f->toks[in_lp].off + 1;
    size_t b2 = f->toks[in_rp].off, e2 = (size_t)(next < f->ntoks ? f->toks[next].off : f->len);
    memset(f->own + b1, ' ', e1 - b1);
    memset(f->own + b2, ' ', e2 - b2);
    return 0;
}

static int is_window_col(const char *name)
{
    return !strcasecmp(name, "window_start") || !strcasecmp(name, "window_end");
}

static int append_name(rn_buf_t *b, const front_t *f, const topn_name_t *nm)
{
    int rc = rn_buf_append(b, ", ", 2, 0);
    return rc ? rc : rn_buf_append(b, f->sql + nm->off, (size_t)nm->len, 0);
}

/* The rows form, SELECT a, b, RANK() OVER (PARTITION BY window_start,
 * window_end, k ORDER BY x DESC) AS rn FROM TABLE(TUMBLE(...)) [WHERE c],
 * becomes the aggregate
 *   SELECT window_start, window_end, k, __rn_topn(__rn_topn_row('spec', x, a, b))
 *   AS "#topn" FROM TABLE(TUMBLE(...)) [WHERE c] GROUP BY window_start, window_end, k
 * whose aggregate keeps the group's best rows (window.c AG_TOPN, bounded by
 * N). The generated select list goes where the wrapper was when it fits
 * (the TVF keeps its offsets), else the text after it shifts (s->copy_*,
 * rn_topn_map_offset). */
static int rewrite_rows(front_t *f, topn_spec_t *s, int s0, int mfrom, int mid_rp, int next)
{
    rn_buf_t b = RN_BUF_INIT;
    unsigned mask = 0;
    for (int k = 0; k < s->norder; k++) mask |= (unsigned)s->desc[k] << k;
    char spec[64];
    snprintf(spec, sizeof spec, "%d:%lld:%d:%u", (int)s->fn, (long long)s->n, s->norder, mask);
    int rc = rn_buf_append(&b, f->sql, f->toks[s0].off, 0);
    if (rc == 0 && !s->first) rc = rn_buf_append(&b, "SELECT window_start, window_end", 31, 0);
    if (rc == 0 && s->first) rc = rn_buf_append(&b, "SELECT ", 7, 0);
    for (int k = 0; rc == 0 && k < s->npart; k++)         /* keep first: no window */
        if (!is_window_col(s->part[k].name))
            rc = s->first && k == 0 ? rn_buf_append(&b, f->sql + s->part[0].off,
                                                    (size_t)s->part[0].len, 0)
                                    : append_name(&b, f, &s->part[k]);
    if (rc == 0) rc = rn_buf_append(&b, ", __rn_topn(__rn_topn_row('", 27, 0);
    if (rc == 0) rc = rn_buf_append(&b, spec, strlen(spec), 0);
    if (rc == 0) rc = rn_buf_append(&b, "'", 1, 0);
    for (int k = 0; rc == 0 && k < s->norder; k++) rc = append_name(&b, f, &s->order[k]);
    for (int k = 0; rc == 0 && k < s->nmid; k++)
        if (s->mid[k].name[0] && !is_window_col(s->mid[k].name))
            rc = append_name(&b, f, &s->mid[k]);
    static const char as[] = ")) AS \"" TOPN_ROWS "\" ";
    if (rc == 0) rc = rn_buf_append(&b, as, sizeof as - 1, 0);
    s->copy_old = (int)f->toks[mfrom].off;
    while (rc == 0 && b.len < (size_t)s->copy_old) rc = rn_buf_append(&b, " ", 1, 0);
    s->copy_new = (int)b.len;
    s->copy_len = (int)(f->toks[mid_rp].off - f->toks[mfrom].off);
    if (rc == 0) rc = rn_buf_append(&b, f->sql + s->copy_old, (size_t)s->copy_len, 0);
    if (rc == 0 && !s->first) rc = rn_buf_append(&b, " GROUP BY window_start, window_end", 34, 0);
    if (rc == 0 && s->first) rc = rn_buf_append(&b, " GROUP BY ", 10, 0);
    for (int k = 0; rc == 0 && k < s->npart; k++)
        if (!is_window_col(s->part[k].name))
            rc = s->first && k == 0 ? rn_buf_append(&b, f->sql + s->part[0].off,
                                                    (size_t)s->part[0].len, 0)
                                    : append_name(&b, f, &s->part[k]);
    /* keep first: each key's group goes out once, when it is made (cfg.first_seen) */
    if (rc == 0 && s->first) rc = rn_buf_append(&b, " EMIT CHANGES", 13, 0);
    if (rc == 0) rc = rn_buf_append(&b, " ", 1, 0);
    s->tail_old = (int)(next < f->ntoks ? f->toks[next].off : f->len);
    s->tail_new = (int)b.len;
    if (rc == 0) rc = rn_buf_append(&b, f->sql + s->tail_old, f->len - (size_t)s->tail_old, 0);
    if (rc == 0) rc = rn_buf_append(&b, "", 1, 0);
    if (rc != 0) {
        rn_buf_free(&b);
        return -ENOMEM;
    }
    free(f->own);
    f->own = (char *)b.data;
    f->len = b.len - 1;
    return 0;
}

int rn_topn_map_offset(const topn_spec_t *s, int off)
{
    if (!s->rows || off < 0) return off;
    if (off >= s->tail_new) return off - s->tail_new + s->tail_old;
    if (off >= s->copy_new && off < s->copy_new + s->copy_len)
        return off - s->copy_new + s->copy_old;
    return s->off;                   /* in the generated text: the TopN itself */
}

/* Over a stream's rows without a window, only keep-first deduplication has a
 * final result: ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts ASC) = 1. */
static int check_first(const front_t *f, const topn_spec_t *s, int src, int *erroff,
                       char *errmsg)
{
    for (int k = 0; k < s->npart; k++)
        if (is_window_col(s->part[k].name))
            return terr(erroff, s->part[k].off, errmsg, "%s is a column of a window: rank "
                        "FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), ...)) or a windowed GROUP BY",
                        s->part[k].name);
    int first = s->fn == TF_ROW_NUMBER && s->norder == 1 && !s->desc[0] &&
                !strcasecmp(s->order[0].name, "ts");
    if (!first)
        return terr(erroff, off_of(f, src), errmsg, "over a stream without a window only "
                    "keep-first deduplication runs (ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts"
                    " ASC) AS rn ... WHERE rn = 1); a TopN or keep-last would be an updating "
                    "result: rank per window, FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), ...))");
    return 0;
}

int rn_topn_keep_first(const topn_spec_t *s)
{
    return s->first;
}

int rn_topn_parse(front_t *f, int *erroff, char *errmsg)
{
    int s0 = f->body, d0 = f->toks[s0].depth;
    int from = -1;
    /* the rows form's functions are generated, never the user's */
    for (int i = s0; i < f->ntoks; i++)
        if (rn_front_tok_is(f, i, "__rn_topn") || rn_front_tok_is(f, i, "__rn_topn_row"))
            return terr(erroff, off_of(f, i), errmsg, "names starting with __ are the engine's "
                        "own");
    for (int i = s0 + 1; i < f->ntoks; i++)
        if (f->toks[i].depth == d0 && rn_front_tok_is(f, i, "FROM") &&
            !rn_front_tok_is(f, i - 1, "DISTINCT")) {
            from = i;
            break;
        }
    if (from < 0 || from + 2 >= f->ntoks || f->toks[from + 1].kind != TK_LP ||
        !rn_front_tok_is(f, from + 2, "SELECT"))
        return 0;                             /* not a subquery in FROM: not ours */
    topn_spec_t *s = calloc(1, sizeof *s);
    if (!s) return terr(erroff, -1, errmsg, "out of memory");
    int rc;
    s->off = off_of(f, s0);
    int mid_lp = from + 1, mid_rp = rn_front_match_paren(f, mid_lp), d1 = d0 + 1;
    int mfrom = -1;
    for (int i = mid_lp + 2; i < mid_rp; i++)
        if (f->toks[i].depth == d1 && rn_front_tok_is(f, i, "FROM")) { mfrom = i; break; }
    if (mfrom < 0) {
        rc = terr(erroff, off_of(f, mid_lp + 1), errmsg, "a subquery in FROM is supported only "
                  "as a Window TopN or deduplication: " TOPN_FORM);
        goto fail;
    }
    if ((rc = parse_mid(f, mid_lp + 2, mfrom, d1, s, erroff, errmsg)) != 0) goto fail;
    int tvf = rn_front_tok_is(f, mfrom + 1, "TABLE") && mfrom + 2 < mid_rp &&
              f->toks[mfrom + 2].kind == TK_LP;
    int stream = !tvf && mfrom + 1 < mid_rp && is_name(f, mfrom + 1);
    if (stream && (rc = check_first(f, s, mfrom + 1, erroff, errmsg)) != 0) goto fail;
    if (!tvf && !stream && (mfrom + 1 >= mid_rp || f->toks[mfrom + 1].kind != TK_LP ||
                            !rn_front_tok_is(f, mfrom + 2, "SELECT"))) {
        rc = terr(erroff, off_of(f, mfrom + 1), errmsg, "a TopN ranks the rows of a window: "
                  "FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '10' SECOND)) or FROM "
                  "(<a GROUP BY TUMBLE/HOP/SESSION query>); without a window it would be an "
                  "updating result");
        goto fail;
    }
    int in_lp = mfrom + 1, in_rp = tvf || stream ? mid_rp : rn_front_match_paren(f, in_lp);
    topn_name_t alias;
    if (tvf || stream) {
        int tvf_rp = stream ? mfrom + 1 : rn_front_match_paren(f, mfrom + 2);
        for (int i = tvf_rp + 1; i < mid_rp; i++)
            if (f->toks[i].depth == d1 && (rn_front_tok_is(f, i, "GROUP") ||
                                          rn_front_tok_is(f, i, "HAVING"))) {
                rc = terr(erroff, off_of(f, i), errmsg, "a TopN over a window TVF ranks its "
                          "rows; to rank aggregates, aggregate in a subquery: FROM (SELECT "
                          "window_start, window_end, k, count(*) AS x FROM TABLE(...) GROUP BY "
                          "window_start, window_end, k)");
                goto fail;
            }
        for (int k = 0; k < s->nmid; k++)
            if (strcmp(s->mid[k].name, "*") == 0) {
                rc = terr(erroff, s->mid[k].off, errmsg, "a TopN over a window TVF's rows names "
                          "its columns (window_start, window_end, ts, fields...), not *");
                goto fail;
            }
    } else if (take_alias(f, in_rp + 1, mid_rp, &alias) != 0) {
        rc = terr(erroff, off_of(f, in_rp + 1), errmsg, "the ranking SELECT of a TopN has no "
                  "WHERE, GROUP BY or join: filter and aggregate in its subquery");
        goto fail;
    }
    int w = mid_rp + 1;
    while (w < f->ntoks && !rn_front_tok_is(f, w, "WHERE") && w < mid_rp + 3) w++;
    if (take_alias(f, mid_rp + 1, w, &alias) != 0 || !rn_front_tok_is(f, w, "WHERE")) {
        rc = terr(erroff, off_of(f, mid_rp + 1), errmsg, "a TopN ends with WHERE %s <= N",
                  s->rank.alias);
        goto fail;
    }
    int next = f->ntoks;
    if ((rc = parse_cond(f, w + 1, s, &next, erroff, errmsg)) != 0) goto fail;
    if (stream && s->n != 1) {
        rc = terr(erroff, off_of(f, w + 1), errmsg, "over a stream without a window only "
                  "keep-first deduplication runs (WHERE %s = 1); a TopN would be an updating "
                  "result: rank per window, FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), ...))",
                  s->rank.alias);
        goto fail;
    }
    if (next < f->ntoks && !rn_front_tok_is(f, next, "LIMIT") &&
        !rn_front_tok_is(f, next, "EMIT") && !rn_front_tok_is(f, next, "WITH")) {
        rc = terr(erroff, off_of(f, next), errmsg, "the outer WHERE of a TopN is %s <= N (or "
                  "< N, or = 1 to deduplicate) and nothing else; filter in the subquery",
                  s->rank.alias);
        goto fail;
    }
    if ((rc = parse_out(f, s0 + 1, from, d0, s, erroff, errmsg)) != 0) goto fail;
    s->first = stream;
    rc = tvf || stream ? rewrite_rows(f, s, s0, mfrom, mid_rp, next)
                       : rewrite_inner(f, s0, in_lp, in_rp, next, erroff, errmsg);
    if (rc == -ENOMEM) rc = rn_errf(errmsg, rc, "out of memory");
    if (rc != 0) goto fail;
    s->rows = tvf || stream;
    f->topn = s;
    return 1;
fail:
    free(s);
    return rc;
}

void rn_topn_spec_free(topn_spec_t *s)
{
    free(s);
}

int rn_topn_describe(const topn_spec_t *s, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "%s() OVER (PARTITION BY", fn_names[s->fn]);
    for (int k = 0; k < s->npart && n < size; k++)
        n += (size_t)snprintf(out + n, size - n, "%s %s", k ? "," : "", s->part[k].name);
    for (int k = 0; k < s->norder && n < size; k++)
        n += (size_t)snprintf(out + n, size - n, "%s %s %s", k ? "," : " ORDER BY",
                              s->order[k].name, s->desc[k] ? "DESC" : "ASC");
    if (n < size && s->first)
        snprintf(out + n, size - n, ") AS %s, keeping the first row of each key when the key "
                 "is first seen (the set of keys seen grows with the distinct keys)",
                 s->rank.alias);
    else if (n < size)
        snprintf(out + n, size - n, ") AS %s, keeping %s <= %lld of each partition when its "
                 "window closes", s->rank.alias, s->rank.alias, (long long)s->n);
    return 0;
}

/* ---- encoded rows (the rows form) ------------------------------------------------
 *
 * __rn_topn_row(spec, key1, ..., keyK, col1, ..., colM) -> a blob that memcmp
 * orders as the TopN orders rows: a header, then each ORDER BY key, then
 * each column, every value encoded order-preservingly:
 *
 *   header   fn (1 byte: 0 ROW_NUMBER, 1 RANK, 2 DENSE_RANK), N (8, little-endian),
 *            K (1), DESC mask (2, little-endian)           -- the same in every row
 *   value    0x01                                   NULL
 *            0x02 d(8) tag(1) i(8)                  a number: d the double with its
 *                                                   sign bit flipped (negatives: all
 *                                                   bits), big-endian; tag 0 INTEGER
 *                                                   then i (sign flipped, big-endian),
 *                                                   tag 1 REAL then 8 zero bytes
 *            0x03 / 0x04 bytes 0x00 0x00            text / blob, each 0x00 as 0x00 0xFF
 *   a DESC key's bytes are all inverted.
 *
 * So NULL < numbers < text < blobs, numbers by value, text and blobs by bytes
 * (sqlite's order, BINARY collation), and ties on the keys fall to the columns. */

#define ROW_HDR 12

static int enc_put(rn_buf_t *b, const void *p, size_t n)
{
    return rn_buf_append(b, p, n, 0);
}

static int enc_be64(rn_buf_t *b, uint64_t u)
{
    uint8_t x[8];
    for (int k = 0; k < 8; k++) x[k] = (uint8_t)(u >> (56 - 8 * k));
    return enc_put(b, x, 8);
}

static int enc_value(rn_buf_t *b, sqlite3_value *v, int desc)
{
    size_t start = b->len;
    int rc = 0, t = sqlite3_value_type(v);
    if (t == SQLITE_NULL) {
        rc = enc_put(b, "\x01", 1);
    } else if (t == SQLITE_INTEGER || t == SQLITE_FLOAT) {
        double d = sqlite3_value_double(v);
        if (d == 0) d = 0;                          /* -0.0 is 0 */
        uint64_t bits;
        memcpy(&bits, &d, 8);
        bits = bits >> 63 ? ~bits : bits | (1ull << 63);
        uint8_t tag = t == SQLITE_FLOAT;
        uint64_t i = t == SQLITE_INTEGER ? (uint64_t)sqlite3_value_int64(v) ^ (1ull << 63) : 0;
        rc = enc_put(b, "\x02", 1);
        if (rc == 0) rc = enc_be64(b, bits);
        if (rc == 0) rc = enc_put(b, &tag, 1);
        if (rc == 0) rc = enc_be64(b, i);
    } else {
        const uint8_t *p = t == SQLITE_TEXT ? sqlite3_value_text(v) : sqlite3_value_blob(v);
        int n = sqlite3_value_bytes(v);
        rc = enc_put(b, t == SQLITE_TEXT ? "\x03" : "\x04", 1);
        for (int k = 0; rc == 0 && k < n; k++)
            rc = p[k] ? enc_put(b, p + k, 1) : enc_put(b, "\x00\xff", 2);
        if (rc == 0) rc = enc_put(b, "\x00\x00", 2);
    }
    if (rc == 0 && desc)
        for (size_t k = start; k < b->len; k++) b->data[k] = (uint8_t)~b->data[k];
    return rc;
}

/* The length of the encoded value at p (n bytes left), 0 when damaged; with
 * out, its value (text into txt, which must not move until used: reserved). */
static size_t dec_value(const uint8_t *p, size_t n, int desc, rn_sql_value_t *out, rn_buf_t *txt)
{
    uint8_t x = desc ? 0xff : 0;
    if (n < 1) return 0;
    uint8_t cls = p[0] ^ x;
    if (cls == 1) {
        if (out) out->type = RN_SQL_NULL;
        return 1;
    }
    if (cls == 2) {
        if (n < 18) return 0;
        uint64_t bits = 0, i = 0;
        for (int k = 0; k < 8; k++) {
            bits = bits << 8 | (uint8_t)(p[1 + k] ^ x);
            i = i << 8 | (uint8_t)(p[10 + k] ^ x);
        }
        if (out) {
            if ((p[9] ^ x) == 0) {
                out->type = RN_SQL_INT;
                out->i = (int64_t)(i ^ (1ull << 63));
            } else {
                bits = bits >> 63 ? bits & ~(1ull << 63) : ~bits;
                out->type = RN_SQL_REAL;
                memcpy(&out->d, &bits, 8);
            }
        }
        return 18;
    }
    if (cls != 3 && cls != 4) return 0;
    size_t k = 1, start = txt ? txt->len : 0;
    for (;;) {
        if (k + 1 > n) return 0;
        uint8_t c = p[k] ^ x;
        if (c != 0) {
            if (out && txt) txt->data[txt->len++] = c;
            k++;
            continue;
        }
        if (k + 2 > n) return 0;
        uint8_t d = p[k + 1] ^ x;
        k += 2;
        if (d == 0) break;
        if (d != 0xff) return 0;
        if (out && txt) txt->data[txt->len++] = 0;
    }
    if (out) {
        out->type = cls == 3 ? RN_SQL_TEXT : RN_SQL_BLOB;
        out->s = txt ? (const char *)txt->data + start : "";
        out->n = txt ? txt->len - start : 0;
    }
    return k;
}

static unsigned row_mask(const uint8_t *row)
{
    return (unsigned)row[10] | (unsigned)row[11] << 8;
}

void rn_topn_row_limit(const uint8_t *row, size_t n, int *fn, int64_t *limit)
{
    *fn = 0;
    *limit = INT64_MAX;
    if (n < ROW_HDR) return;
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | row[1 + k];
    *fn = row[0];
    *limit = (int64_t)v;
}

/* Bytes of the header and the ORDER BY keys of an encoded row (0: damaged). */
static size_t keys_len(const uint8_t *row, size_t n)
{
    if (n < ROW_HDR) return 0;
    size_t k = ROW_HDR;
    unsigned mask = row_mask(row);
    for (int j = 0; j < row[9]; j++) {
        size_t used = dec_value(row + k, n - k, (mask >> j) & 1, NULL, NULL);
        if (!used) return 0;
        k += used;
    }
    return k;
}

int rn_topn_row_tie(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t ka = keys_len(a, an), kb = keys_len(b, bn);
    return ka && ka == kb && memcmp(a, b, ka) == 0;
}

static void fn_topn_row(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    int fn = 0, norder = 0;
    long long n = 0;
    unsigned mask = 0;
    const char *spec = (const char *)sqlite3_value_text(argv[0]);
    if (!spec || sscanf(spec, "%d:%lld:%d:%u", &fn, &n, &norder, &mask) != 4 || norder < 0 ||
        norder >= argc) {
        sqlite3_result_error(ctx, "__rn_topn_row: bad spec", -1);
        return;
    }
    rn_buf_t b = RN_BUF_INIT;
    uint8_t hdr[ROW_HDR];
    hdr[0] = (uint8_t)fn;
    for (int k = 0; k < 8; k++) hdr[1 + k] = (uint8_t)((uint64_t)n >> (8 * k));
    hdr[9] = (uint8_t)norder;
    hdr[10] = (uint8_t)mask;
    hdr[11] = (uint8_t)(mask >> 8);
    int rc = enc_put(&b, hdr, ROW_HDR);
    for (int k = 1; rc == 0 && k < argc; k++)
        rc = enc_value(&b, argv[k], k <= norder && ((mask >> (k - 1)) & 1));
    if (rc != 0) sqlite3_result_error_nomem(ctx);
    else sqlite3_result_blob64(ctx, b.data, b.len, SQLITE_TRANSIENT);
    rn_buf_free(&b);
}

int rn_topn_register(sqlite3 *db, char *errmsg)
{
    if (sqlite3_create_function_v2(db, "__rn_topn_row", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                   NULL, fn_topn_row, NULL, NULL, NULL) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot register __rn_topn_row: %s",
                       sqlite3_errmsg(db));
    return 0;
}

/* ---- running --------------------------------------------------------------------- */

typedef struct trow {
    const struct topn *t;
    sqlite3_value    **v;          /* ninner values, owned */
} trow_t;

struct topn {
    const topn_spec_t *s;
    int             ninner;
    int             rowcol;                     /* the rows form's "#topn" column; -1 */
    int             part[RN_SQL_MAX_KEYS + 2], order[RN_SQL_MAX_KEYS];
    int             norder;                     /* ORDER BY keys among the inner columns
                                                   (0 in the rows form: in the rows) */
    int             ncols;                      /* the rows form: columns of a row */
    int             nout;
    int             src[TOPN_MAX_COLS * 2];     /* per output column: inner index, -1 the
                                                   rank, -2 - k column k of a row */
    rn_sql_value_t  dec[TOPN_MAX_COLS];         /* the rows form: a row's columns */
    rn_buf_t        txt;                        /* ... their text */
    char           *names[TOPN_MAX_COLS * 2];
    trow_t         *rows;
    size_t          nrows, cap;
    rn_sql_value_t *vals;
};

static int inner_index(sqlite3_stmt *est, const char *name)
{
    for (int i = 0; i < sqlite3_column_count(est); i++)
        if (strcasecmp(sqlite3_column_name(est, i), name) == 0) return i;
    return -1;
}

static int no_column(sqlite3_stmt *est, const char *what, const topn_name_t *nm, int *erroff,
                     char *errmsg)
{
    char list[400] = "";
    size_t n = 0;
    for (int i = 0; i < sqlite3_column_count(est) && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "",
                              sqlite3_column_name(est, i));
    return terr(erroff, nm->off, errmsg, "%s %s: the subquery has no such column (its columns: "
                "%s)", what, nm->name, list);
}

int rn_topn_open(const topn_spec_t *s, sqlite3_stmt *est, win_kind_t win, topn_t **out,
                 int *erroff, char *errmsg)
{
    *out = NULL;
    if (!(s->first && win == WK_GLOBAL) && win != WK_TUMBLE && win != WK_HOP &&
        win != WK_SESSION)
        return terr(erroff, s->off, errmsg, "a TopN ranks the rows of each window when it "
                    "closes: its subquery must aggregate over windows (GROUP BY TUMBLE/HOP/"
                    "SESSION or FROM TABLE(TUMBLE(...))); a TopN without a window would be an "
                    "updating result, which streamsql does not emit");
    int rc0;
    topn_t *t = calloc(1, sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->s = s;
    t->ninner = sqlite3_column_count(est);
    t->rowcol = s->rows ? inner_index(est, TOPN_ROWS) : -1;
    assert(!s->rows || t->rowcol >= 0);
    for (int k = 0; s->rows && k < s->norder; k++)
        if (is_window_col(s->order[k].name)) {
            rc0 = terr(erroff, s->order[k].off, errmsg, "ORDER BY %s: a window's rows all have "
                       "the same; order them by a column of the rows", s->order[k].name);
            rn_topn_destroy(t);
            return rc0;
        }
    int rc = 0, has_start = 0, has_end = 0;
    for (int k = 0; k < s->npart; k++) {
        if ((t->part[k] = inner_index(est, s->part[k].name)) < 0) {
            rc = no_column(est, "PARTITION BY", &s->part[k], erroff, errmsg);
            goto fail;
        }
        has_start |= strcasecmp(s->part[k].name, "window_start") == 0;
        has_end |= strcasecmp(s->part[k].name, "window_end") == 0;
    }
    if (!s->first && (win == WK_SESSION ? !(has_start && has_end) : !(has_start || has_end))) {
        rc = terr(erroff, s->part[0].off, errmsg, "a TopN ranks each window on its own: "
                  "PARTITION BY window_start, window_end[, keys] (and select both in the "
                  "subquery)");
        goto fail;
    }
    t->norder = s->rows ? 0 : s->norder;
    for (int k = 0; k < t->norder; k++)
        if ((t->order[k] = inner_index(est, s->order[k].name)) < 0) {
            rc = no_column(est, "ORDER BY", &s->order[k], erroff, errmsg);
            goto fail;
        }
    /* the ranking SELECT's columns */
    int msrc[TOPN_MAX_COLS * 2];
    const char *mname[TOPN_MAX_COLS * 2];
    int nmid = 0;
    for (int k = 0; k < s->nmid; k++) {
        const topn_name_t *m = &s->mid[k];
        if (strcmp(m->name, "*") == 0) {
            for (int i = 0; i < t->ninner && nmid < TOPN_MAX_COLS * 2; i++) {
                msrc[nmid] = i;
                mname[nmid++] = sqlite3_column_name(est, i);
            }
        } else if (!m->name[0]) {
            msrc[nmid] = -1;
            mname[nmid++] = s->rank.alias;
        } else if (s->rows && !is_window_col(m->name)) {
            msrc[nmid] = -2 - t->ncols++;           /* rewrite_rows' order */
            mname[nmid++] = m->name;
        } else {
            int i = inner_index(est, m->name);
            if (i < 0) { rc = no_column(est, "column", m, erroff, errmsg); goto fail; }
            msrc[nmid] = i;
            mname[nmid++] = sqlite3_column_name(est, i);
        }
        if (nmid >= TOPN_MAX_COLS * 2) break;
    }
    for (int k = 0; k < s->nout; k++) {
        const topn_name_t *o = &s->out[k];
        if (strcmp(o->name, "*") == 0) {
            for (int i = 0; i < nmid && t->nout < TOPN_MAX_COLS * 2; i++) {
                t->src[t->nout] = msrc[i];
                t->names[t->nout++] = strdup(mname[i]);
            }
            continue;
        }
        int i = 0;
        while (i < nmid && strcasecmp(mname[i], o->name) != 0) i++;
        if (i == nmid) {
            char list[400] = "";
            size_t n = 0;
            for (int j = 0; j < nmid && n < sizeof list; j++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", j ? ", " : "", mname[j]);
            rc = terr(erroff, o->off, errmsg, "column %s: the TopN's ranking SELECT has no such "
                      "column (its columns: %s)", o->name, list);
            goto fail;
        }
        if (t->nout == TOPN_MAX_COLS * 2) break;
        t->src[t->nout] = msrc[i];
        t->names[t->nout++] = strdup(o->alias[0] ? o->alias : mname[i]);
    }
    for (int k = 0; k < t->nout; k++)
        if (!t->names[k]) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    t->vals = calloc((size_t)t->nout + 1, sizeof *t->vals);
    if (!t->vals) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto fail; }
    *out = t;
    return 0;
fail:
    rn_topn_destroy(t);
    return rc;
}

int rn_topn_columns(const topn_t *t, const char *const **names)
{
    *names = (const char *const *)t->names;
    return t->nout;
}

int rn_topn_add(topn_t *t, sqlite3_stmt *st, char *errmsg)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        trow_t *r = realloc(t->rows, cap * sizeof *r);
        if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
        t->rows = r;
        t->cap = cap;
    }
    sqlite3_value **v = calloc((size_t)t->ninner + 1, sizeof *v);
    if (!v) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (int i = 0; i < t->ninner; i++)
        if (!(v[i] = sqlite3_value_dup(sqlite3_column_value(st, i)))) {
            for (int j = 0; j < i; j++) sqlite3_value_free(v[j]);
            free(v);
            return rn_errf(errmsg, -ENOMEM, "out of memory");
        }
    t->rows[t->nrows].t = t;
    t->rows[t->nrows++].v = v;
    return 0;
}

/* sqlite's order of values: NULL, numbers (by value), text (bytes), blobs (bytes). */
static int value_class(sqlite3_value *v)
{
    switch (sqlite3_value_type(v)) {
    case SQLITE_NULL: return 0;
    case SQLITE_INTEGER: case SQLITE_FLOAT: return 1;
    case SQLITE_TEXT: return 2;
    default: return 3;
    }
}

static int value_cmp(sqlite3_value *a, sqlite3_value *b)
{
    int ca = value_class(a), cb = value_class(b);
    if (ca != cb) return ca < cb ? -1 : 1;
    if (ca == 0) return 0;
    if (ca == 1) {
        if (sqlite3_value_type(a) == SQLITE_INTEGER && sqlite3_value_type(b) == SQLITE_INTEGER) {
            sqlite3_int64 x = sqlite3_value_int64(a), y = sqlite3_value_int64(b);
            return x < y ? -1 : x > y;
        }
        double x = sqlite3_value_double(a), y = sqlite3_value_double(b);
        return x < y ? -1 : x > y;
    }
    const void *pa = ca == 2 ? (const void *)sqlite3_value_text(a) : sqlite3_value_blob(a);
    const void *pb = ca == 2 ? (const void *)sqlite3_value_text(b) : sqlite3_value_blob(b);
    int na = sqlite3_value_bytes(a), nb = sqlite3_value_bytes(b);
    int c = memcmp(pa ? pa : "", pb ? pb : "", (size_t)(na < nb ? na : nb));
    return c ? c : na < nb ? -1 : na > nb;
}

static int part_cmp(const topn_t *t, sqlite3_value **a, sqlite3_value **b)
{
    for (int k = 0; k < t->s->npart; k++) {
        int c = value_cmp(a[t->part[k]], b[t->part[k]]);
        if (c) return c;
    }
    return 0;
}

static int order_cmp(const topn_t *t, sqlite3_value **a, sqlite3_value **b)
{
    for (int k = 0; k < t->norder; k++) {
        int c = value_cmp(a[t->order[k]], b[t->order[k]]);
        if (c) return t->s->desc[k] ? -c : c;
    }
    return 0;
}

/* invariant 2: partition, ORDER BY keys, then every column */
static int row_cmp(const void *pa, const void *pb)
{
    const trow_t *a = pa, *b = pb;
    const topn_t *t = a->t;
    int c = part_cmp(t, a->v, b->v);
    if (!c) c = order_cmp(t, a->v, b->v);
    for (int i = 0; !c && i < t->ninner; i++) c = value_cmp(a->v[i], b->v[i]);
    return c;
}

static void to_value(sqlite3_value *v, rn_sql_value_t *o)
{
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: o->type = RN_SQL_INT; o->i = sqlite3_value_int64(v); break;
    case SQLITE_FLOAT: o->type = RN_SQL_REAL; o->d = sqlite3_value_double(v); break;
    case SQLITE_TEXT:
        o->type = RN_SQL_TEXT;
        o->s = (const char *)sqlite3_value_text(v);
        o->n = (size_t)sqlite3_value_bytes(v);
        break;
    case SQLITE_BLOB:
        o->type = RN_SQL_BLOB;
        o->s = sqlite3_value_blob(v);
        o->n = (size_t)sqlite3_value_bytes(v);
        break;
    default: o->type = RN_SQL_NULL; break;
    }
}

static void clear_rows(topn_t *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ninner; i++) sqlite3_value_free(t->rows[r].v[i]);
        free(t->rows[r].v);
    }
    t->nrows = 0;
}

/* One output row: columns from the inner row v, the rank, the decoded row. */
static int put_row(topn_t *t, sqlite3_value **v, int64_t shown, rn_sql_row_fn fn, void *ctx)
{
    for (int k = 0; k < t->nout; k++) {
        if (t->src[k] == -1) {
            t->vals[k].type = RN_SQL_INT;
            t->vals[k].i = shown;
        } else if (t->src[k] < -1) {
            t->vals[k] = t->dec[-2 - t->src[k]];
        } else {
            to_value(v[t->src[k]], &t->vals[k]);
        }
    }
    return fn(ctx, t->vals, t->nout);
}

/* The rows form: the group's kept rows (window.c AG_TOPN's value: per row a
 * 4-byte little-endian length and the encoded row), in rank order. */
static int flush_rows(topn_t *t, sqlite3_value **v, rn_sql_row_fn fn, void *ctx)
{
    const uint8_t *p = sqlite3_value_blob(v[t->rowcol]);
    size_t n = (size_t)sqlite3_value_bytes(v[t->rowcol]), at = 0;
    const uint8_t *prev = NULL;
    size_t prevn = 0;
    int64_t number = 0, rank = 0, dense = 0;
    int rc = 0;
    while (rc == 0 && at + 4 <= n) {
        uint32_t len = (uint32_t)p[at] | (uint32_t)p[at + 1] << 8 | (uint32_t)p[at + 2] << 16 |
                       (uint32_t)p[at + 3] << 24;
        const uint8_t *row = p + at + 4;
        if (len > n - at - 4) break;
        at += 4 + (size_t)len;
        int tie = prev && rn_topn_row_tie(prev, prevn, row, len);
        number++;
        if (!tie) { rank = number; dense++; }
        prev = row;
        prevn = len;
        int64_t shown = t->s->fn == TF_ROW_NUMBER ? number : t->s->fn == TF_RANK ? rank : dense;
        if (shown > t->s->n) break;
        /* decode the columns, after the keys */
        t->txt.len = 0;
        if (rn_buf_reserve(&t->txt, len, 0) != 0) return -ENOMEM;
        size_t k = keys_len(row, len);
        for (int c = 0; c < t->ncols && k; c++) {
            size_t used = dec_value(row + k, len - k, 0, &t->dec[c], &t->txt);
            k = used ? k + used : 0;
        }
        assert(k == len);              /* rows are made by __rn_topn_row */
        if (k != len) continue;
        rc = put_row(t, v, shown, fn, ctx);
    }
    return rc;
}

int rn_topn_flush(topn_t *t, rn_sql_row_fn fn, void *ctx)
{
    int rc = 0;
    if (t->nrows > 1) qsort(t->rows, t->nrows, sizeof *t->rows, row_cmp);
    int64_t number = 0, rank = 0, dense = 0;
    for (size_t r = 0; r < t->nrows && rc == 0; r++) {
        sqlite3_value **v = t->rows[r].v;
        if (t->s->rows) {              /* each inner row is a partition with its rows */
            rc = flush_rows(t, v, fn, ctx);
            continue;
        }
        int new_part = r == 0 || part_cmp(t, t->rows[r - 1].v, v) != 0;
        int tie = !new_part && order_cmp(t, t->rows[r - 1].v, v) == 0;
        if (new_part) number = rank = dense = 0;
        number++;
        if (!tie) { rank = number; dense++; }
        int64_t shown = t->s->fn == TF_ROW_NUMBER ? number : t->s->fn == TF_RANK ? rank : dense;
        if (shown <= t->s->n) rc = put_row(t, v, shown, fn, ctx);
    }
    clear_rows(t);
    return rc > 0 ? 0 : rc;
}

void rn_topn_destroy(topn_t *t)
{
    if (!t) return;
    clear_rows(t);
    free(t->rows);
    for (int k = 0; k < t->nout; k++) free(t->names[k]);
    free(t->vals);
    rn_buf_free(&t->txt);
    free(t);
}

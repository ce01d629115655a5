/*
 * vtab.c — the two sqlite virtual tables of a query.
 *
 *   rn_stream   the stream: the rows of the CURRENT batch of decoded records
 *               (columns queue, offset, ts, key, the declared fields, value:
 *               the raw value last, so SELECT * shows the decoded fields
 *               first; a field named ts is hidden, the column ts reads it).
 *               Created per query as temp."<stream name>".
 *   rn_emit     the windows being emitted: one row per (window, keys) group,
 *               columns window_start, window_end, __k0.., __a0.. (keys and
 *               aggregate values; a key that is a bare column has its
 *               declared type, so its affinity, as in sqlite). Created per
 *               query as temp.__emit USING rn_emit(nkeys, naggs, x<one of
 *               i r t n per key>).
 *
 * Invariants:
 *  1. Both tables read their rows from the query's sbatch_t (the module's
 *     client data); they hold no rows of their own, so a scan is the only
 *     plan (in order, skipping the rows pushed terms reject: invariant 3)
 *     and each step of a prepared
 *     statement over them sees exactly the current batch / emitted groups.
 *  2. Text values are handed to sqlite as static views: the batch outlives
 *     the statement step that reads it.
 *  3. xBestIndex takes over the stream table's WHERE terms of the form
 *     column op constant (op one of = <> < <= > >=; the constant a number
 *     (INTEGER or REAL) against a numeric column, a TEXT against a text column compared with
 *     BINARY collation; never an IN, never a term a LEFT JOIN's ON holds)
 *     and sqlite omits them: the cursor skips the rows
 *     they reject before sqlite sees them (rn_vtab_pred_pass). The test is
 *     sqlite's own comparison: a NULL column rejects the row, numbers
 *     compare by value (an INTEGER against a REAL exactly, as sqlite), numbers sort
 *     before text, text compares with memcmp then length; a numeric
 *     column's values are numbers or NULL, a text column's text or NULL
 *     (scan.c), so no affinity changes either side and every row gets
 *     sqlite's answer (tests/test_streamsql_pushdown.c). Every other term
 *     sqlite evaluates itself, after the pushed ones. The emit table takes
 *     no constraint.
 *  4. The stream table yields rows[lo..nrows) of the batch in order; lo is
 *     0 except while sql.c re-runs a batch one record at a time (a window
 *     of one row) after a row's evaluation failed.
 *  5. The hidden column __idx is a row's index in the batch (names starting
 *     with __ cannot be declared fields): the aggregating per-batch
 *     statement selects it so the event-time frontier can move over the
 *     records before a row that the filter dropped.
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct vt {
    sqlite3_vtab base;
    sbatch_t    *b;
    int          emit;
} vt_t;

typedef struct vcur {
    sqlite3_vtab_cursor base;
    size_t              i;
} vcur_t;

/* The comparison ops a pushed term may have, as in idxStr ('0' + op). */
enum { PO_EQ, PO_NE, PO_LT, PO_LE, PO_GT, PO_GE };

static int declare_stream(sqlite3 *db, const sdef_t *def)
{
    char sql[RN_SQL_MAX_FIELDS * (RN_SQL_MAX_NAME * 2 + 16) + 128];
    size_t n = (size_t)snprintf(sql, sizeof sql, "CREATE TABLE x(queue INTEGER, offset INTEGER, "
                                "ts INTEGER, key TEXT");
    for (int i = 0; i < def->nfields && n < sizeof sql; i++) {
        static const char *const decl[] = {"INTEGER", "REAL", "TEXT", "INTEGER", "TEXT"};
        if (i == rn_front_ts_field(def)) {
            /* Read through the column ts (row->ts holds it): hidden here. */
            n += (size_t)snprintf(sql + n, sizeof sql - n, ", __field_ts INTEGER HIDDEN");
            continue;
        }
        n += (size_t)snprintf(sql + n, sizeof sql - n, ", \"");
        for (const char *p = def->fields[i].name; *p && n + 2 < sizeof sql; p++) {
            sql[n++] = *p;
            if (*p == '"') sql[n++] = '"';
        }
        n += (size_t)snprintf(sql + n, sizeof sql - n, "\" %s", decl[def->fields[i].type]);
    }
    if (n + 40 >= sizeof sql) return SQLITE_TOOBIG;
    snprintf(sql + n, sizeof sql - n, ", value TEXT, __idx INTEGER HIDDEN)");
    return sqlite3_declare_vtab(db, sql);
}

/* The emit table's declaration for nkeys keys and naggs aggregates. */
static int vtab_emit_schema(int nkeys, int naggs, const char *aff, char *out, size_t size)
{
    size_t n = (size_t)snprintf(out, size, "CREATE TABLE x(window_start INTEGER, "
                                "window_end INTEGER");
    for (int k = 0; k < nkeys && n < size; k++) {
        const char *type = aff[k] == 'i' ? " INTEGER" : aff[k] == 'r' ? " REAL"
                           : aff[k] == 't' ? " TEXT" : "";
        n += (size_t)snprintf(out + n, size - n, ", __k%d%s", k, type);
    }
    for (int k = 0; k < naggs && n < size; k++)
        n += (size_t)snprintf(out + n, size - n, ", __a%d", k);
    if (n + 2 >= size) return RN_ETOOBIG;
    snprintf(out + n, size - n, ")");
    return 0;
}

static int vt_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                      sqlite3_vtab **out, char **err)
{
    sbatch_t *b = aux;
    int emit = strcmp(argv[0], "rn_emit") == 0;
    int rc;
    if (emit) {
        char sql[64 + (RN_SQL_MAX_KEYS + RN_SQL_MAX_AGGS) * 16];
        if (argc != 6) {
            *err = sqlite3_mprintf("rn_emit takes (nkeys, naggs, x<key affinities>)");
            return SQLITE_ERROR;
        }
        int nk = atoi(argv[3]), na = atoi(argv[4]);
        const char *aff = argv[5] + 1;     /* after the 'x' that keeps it non-empty */
        if (nk < 0 || nk > RN_SQL_MAX_KEYS || na < 0 || na > RN_SQL_MAX_AGGS ||
            strlen(aff) != (size_t)nk || vtab_emit_schema(nk, na, aff, sql, sizeof sql) != 0) {
            *err = sqlite3_mprintf("rn_emit: bad arguments");
            return SQLITE_ERROR;
        }
        rc = sqlite3_declare_vtab(db, sql);
    } else {
        rc = declare_stream(db, b->def);
    }
    if (rc != SQLITE_OK) return rc;
    vt_t *v = sqlite3_malloc(sizeof *v);
    if (!v) return SQLITE_NOMEM;
    memset(v, 0, sizeof *v);
    v->b = b;
    v->emit = emit;
    *out = &v->base;
    return SQLITE_OK;
}

static int vt_disconnect(sqlite3_vtab *vt)
{
    sqlite3_free(vt);
    return SQLITE_OK;
}

/* The pushed op for sqlite's constraint op, or -1. */
static int push_op(unsigned char op)
{
    switch (op) {
    case SQLITE_INDEX_CONSTRAINT_EQ: return PO_EQ;
    case SQLITE_INDEX_CONSTRAINT_NE: return PO_NE;
    case SQLITE_INDEX_CONSTRAINT_LT: return PO_LT;
    case SQLITE_INDEX_CONSTRAINT_LE: return PO_LE;
    case SQLITE_INDEX_CONSTRAINT_GT: return PO_GT;
    case SQLITE_INDEX_CONSTRAINT_GE: return PO_GE;
    default: return -1;
    }
}

/* Has column col numeric affinity (INTEGER, REAL, BOOLEAN: its values are
 * INTEGER, REAL or NULL) rather than TEXT (its values TEXT or NULL)? */
static int col_numeric(const sdef_t *def, int col)
{
    if (col < SQL_COL_FIELDS) return col != SQL_COL_KEY;
    if (col >= SQL_COL_FIELDS + def->nfields) return 0;     /* value */
    ftype_t t = def->fields[col - SQL_COL_FIELDS].type;
    return t == FT_INTEGER || t == FT_REAL || t == FT_BOOLEAN;
}

/* Invariant 3: which constraints the stream table evaluates itself. idxStr
 * holds four characters per pushed term, '0' + op and the column in three
 * decimal digits; argv of
 * xFilter holds their constants in that order. */
static int vt_best_index(sqlite3_vtab *vt, sqlite3_index_info *info)
{
    vt_t *v = (vt_t *)vt;
    int n = 0;
    char plan[4 * RN_VTAB_MAX_PREDS + 1];
    int ncols = SQL_COL_FIELDS + (v->emit ? 0 : v->b->def->nfields + 1);
    for (int i = 0; !v->emit && i < info->nConstraint && n < RN_VTAB_MAX_PREDS; i++) {
        const struct sqlite3_index_constraint *c = &info->aConstraint[i];
        int op = push_op(c->op);
        sqlite3_value *rhs = NULL;
        if (!c->usable || op < 0 || c->iColumn < 0 || c->iColumn >= ncols ||
            sqlite3_vtab_in(info, i, -1) || sqlite3_vtab_rhs_value(info, i, &rhs) != SQLITE_OK ||
            !rhs)
            continue;
        /* a number against a numeric column, a TEXT against a text column:
         * then sqlite converts neither side */
        int t = sqlite3_value_type(rhs);
        if (col_numeric(v->b->def, c->iColumn) ? t != SQLITE_INTEGER && t != SQLITE_FLOAT
                                                : t != SQLITE_TEXT)
            continue;
        const char *coll = sqlite3_vtab_collation(info, i);
        if (t == SQLITE_TEXT && (!coll || sqlite3_stricmp(coll, "BINARY") != 0)) continue;
        snprintf(plan + 4 * n, 5, "%d%03d", op, c->iColumn);
        n++;
        info->aConstraintUsage[i].argvIndex = n;
        info->aConstraintUsage[i].omit = 1;
    }
    plan[4 * n] = 0;
    if (n) {
        info->idxStr = sqlite3_mprintf("%s", plan);
        if (!info->idxStr) return SQLITE_NOMEM;
        info->needToFreeIdxStr = 1;
    }
    info->idxNum = n;
    info->estimatedCost = 1000.0 - n;
    info->estimatedRows = n ? 500 : 1000;
    return SQLITE_OK;
}

static int vt_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out)
{
    vcur_t *c = sqlite3_malloc(sizeof *c);
    if (!c) return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    *out = &c->base;
    return SQLITE_OK;
}

static int vt_close(sqlite3_vtab_cursor *cur)
{
    sqlite3_free(cur);
    return SQLITE_OK;
}

/* sign of i - r, exactly (sqlite's sqlite3IntFloatCompare without long
 * double); r is never NaN here (sqlite holds NaN as NULL, JSON has none). */
static int int_real_cmp(int64_t i, double r)
{
    if (r < -9223372036854775808.0) return 1;
    if (r >= 9223372036854775808.0) return -1;
    int64_t y = (int64_t)r;
    if (i < y) return -1;
    if (i > y) return 1;
    double s = (double)i;
    return s < r ? -1 : s > r ? 1 : 0;
}

/* Does value x satisfy `x op k` as sqlite decides it (invariant 3)? */
static int pred_holds(const fval_t *x, const rn_vtab_pred_t *p)
{
    int c;
    if (x->type == RN_SQL_NULL) return 0;
    if (p->type == RN_SQL_INT) {
        if (x->type == RN_SQL_INT) c = x->i < p->i ? -1 : x->i > p->i;
        else if (x->type == RN_SQL_REAL) c = -int_real_cmp(p->i, x->d);
        else c = 1;                                 /* text sorts after numbers */
    } else if (p->type == RN_SQL_REAL) {
        if (x->type == RN_SQL_INT) c = int_real_cmp(x->i, p->d);
        else if (x->type == RN_SQL_REAL) c = x->d < p->d ? -1 : x->d > p->d;
        else c = 1;
    } else {
        if (x->type != RN_SQL_TEXT) c = -1;
        else if (p->op <= PO_NE && x->n != p->n) c = 1;    /* = and <> need no order */
        else {
            uint32_t m = x->n < p->n ? x->n : p->n;
            c = m ? memcmp(x->s, p->s, m) : 0;
            if (c == 0) c = x->n < p->n ? -1 : x->n > p->n;
        }
    }
    switch (p->op) {
    case PO_EQ: return c == 0;
    case PO_NE: return c != 0;
    case PO_LT: return c < 0;
    case PO_LE: return c <= 0;
    case PO_GT: return c > 0;
    default: return c >= 0;
    }
}

int rn_vtab_preds_pass(const sbatch_t *b, const rn_vtab_pred_t *p, int n, size_t i)
{
    const srow_t *r = &b->rows[i];
    int nf = b->def->nfields;
    for (int k = 0; k < n; k++) {
        fval_t x = {.i = 0, .d = 0};    /* only the type's member is read */
        rn_vtab_row_value(r, p[k].col, nf, i, &x);
        if (!pred_holds(&x, &p[k])) return 0;
    }
    return 1;
}

/* The first row at or after i that every pushed term passes. */
static size_t next_passing(const sbatch_t *b, size_t i)
{
    if (!b->npreds) return i;
    while (i < b->nrows && !rn_vtab_preds_pass(b, b->preds, b->npreds, i)) i++;
    return i;
}

static int vt_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr, int argc,
                     sqlite3_value **argv)
{
    vt_t *v = (vt_t *)cur->pVtab;
    if (v->emit) {
        ((vcur_t *)cur)->i = 0;
        return SQLITE_OK;
    }
    /* The terms as the plan pushed them (invariant 3); their text constants
     * are copied into the batch's own buffer: argv lives for this call only. */
    sbatch_t *b = v->b;
    b->npreds = 0;
    size_t tlen = 0;
    for (int k = 0; k < idx && k < argc && k < RN_VTAB_MAX_PREDS; k++)
        if (sqlite3_value_type(argv[k]) == SQLITE_TEXT) tlen += (size_t)sqlite3_value_bytes(argv[k]);
    if (tlen + 1 > b->ptext_cap) {              /* never NULL, even for empty texts */
        char *t = sqlite3_realloc64(b->ptext, tlen + 1);
        if (!t) return SQLITE_NOMEM;
        b->ptext = t;
        b->ptext_cap = tlen + 1;
    }
    tlen = 0;
    for (int k = 0; k < idx && k < argc && k < RN_VTAB_MAX_PREDS; k++) {
        rn_vtab_pred_t *p = &b->preds[k];
        const char *e = idxstr + 4 * k;
        p->op = e[0] - '0';
        p->col = (e[1] - '0') * 100 + (e[2] - '0') * 10 + (e[3] - '0');
        int t = sqlite3_value_type(argv[k]), num = col_numeric(b->def, p->col);
        if (num && t == SQLITE_INTEGER) {
            p->type = RN_SQL_INT;
            p->i = sqlite3_value_int64(argv[k]);
        } else if (num && t == SQLITE_FLOAT) {
            /* a REAL literal with an integral value (5.0) looks INTEGER to
             * xBestIndex: sqlite3_vtab_rhs_value applies numeric affinity */
            p->type = RN_SQL_REAL;
            p->d = sqlite3_value_double(argv[k]);
        } else if (!num && t == SQLITE_TEXT) {
            uint32_t n;
            const char *s = rn_sql_text_view(argv[k], &n);
            p->type = RN_SQL_TEXT;
            if (n) memcpy(b->ptext + tlen, s, n);
            p->s = b->ptext + tlen;
            p->n = n;
            tlen += n;
        } else {
            /* the plan pushed only such terms: fail the query (SQLITE_ERROR
             * would reject the records, sql.c invariant 7) */
            sqlite3_free(cur->pVtab->zErrMsg);
            cur->pVtab->zErrMsg = sqlite3_mprintf("stream table: a pushed term's constant "
                                                  "has type %d", t);
            return SQLITE_INTERNAL;
        }
        b->npreds = k + 1;
    }
    ((vcur_t *)cur)->i = next_passing(b, b->lo);
    return SQLITE_OK;
}

static int vt_next(sqlite3_vtab_cursor *cur)
{
    vcur_t *c = (vcur_t *)cur;
    vt_t *v = (vt_t *)cur->pVtab;
    c->i++;
    if (!v->emit) c->i = next_passing(v->b, c->i);
    return SQLITE_OK;
}

static int vt_eof(sqlite3_vtab_cursor *cur)
{
    vcur_t *c = (vcur_t *)cur;
    vt_t *v = (vt_t *)cur->pVtab;
    return c->i >= (v->emit ? v->b->ngroups : v->b->nrows);
}

static int vt_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    vcur_t *c = (vcur_t *)cur;
    vt_t *v = (vt_t *)cur->pVtab;
    if (v->emit) {
        rn_win_group_column(v->b->win, v->b->groups[c->i], col, ctx);
        return SQLITE_OK;
    }
    /* one function for sqlite's rows and sql.c's direct projection */
    fval_t f;
    rn_vtab_row_value(&v->b->rows[c->i], col, v->b->def->nfields, c->i, &f);
    switch (f.type) {
    case RN_SQL_INT: sqlite3_result_int64(ctx, f.i); break;
    case RN_SQL_REAL: sqlite3_result_double(ctx, f.d); break;
    case RN_SQL_TEXT: sqlite3_result_text(ctx, f.s, (int)f.n, SQLITE_STATIC); break;
    default: sqlite3_result_null(ctx); break;
    }
    return SQLITE_OK;
}

static int vt_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    *rowid = (sqlite3_int64)((vcur_t *)cur)->i;
    return SQLITE_OK;
}

static const sqlite3_module module = {
    .iVersion = 0,
    .xCreate = vt_connect,
    .xConnect = vt_connect,
    .xBestIndex = vt_best_index,
    .xDisconnect = vt_disconnect,
    .xDestroy = vt_disconnect,
    .xOpen = vt_open,
    .xClose = vt_close,
    .xFilter = vt_filter,
    .xNext = vt_next,
    .xEof = vt_eof,
    .xColumn = vt_column,
    .xRowid = vt_rowid,
};

const char *rn_sql_text_view(sqlite3_value *v, uint32_t *n)
{
    /* sqlite3_value_blob hands back a string's bytes as they are (its type
     * stays TEXT); sqlite3_value_text would copy an unterminated one. */
    const char *s = sqlite3_value_blob(v);
    *n = (uint32_t)sqlite3_value_bytes(v);
    return s ? s : "";
}

int rn_vtab_register(sqlite3 *db, sbatch_t *b, char *errmsg)
{
    if (sqlite3_create_module_v2(db, "rn_stream", &module, b, NULL) != SQLITE_OK ||
        sqlite3_create_module_v2(db, "rn_emit", &module, b, NULL) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot register the stream tables: %s",
                       sqlite3_errmsg(db));
    return 0;
}

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
 *     client data); they hold no rows of their own, so a full scan is the
 *     only plan (xBestIndex uses no constraint) and each step of a prepared
 *     statement over them sees exactly the current batch / emitted groups.
 *  2. Text values are handed to sqlite as static views: the batch outlives
 *     the statement step that reads it.
 *  3. xBestIndex asks for no constraint: sqlite evaluates every WHERE term
 *     itself, over all rows of the batch.
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

static int vt_best_index(sqlite3_vtab *vt, sqlite3_index_info *info)
{
    info->estimatedCost = 1000.0;
    info->estimatedRows = 1000;
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

static int vt_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr, int argc,
                     sqlite3_value **argv)
{
    vt_t *v = (vt_t *)cur->pVtab;
    ((vcur_t *)cur)->i = v->emit ? 0 : v->b->lo;
    return SQLITE_OK;
}

static int vt_next(sqlite3_vtab_cursor *cur)
{
    ((vcur_t *)cur)->i++;
    return SQLITE_OK;
}

static int vt_eof(sqlite3_vtab_cursor *cur)
{
    vcur_t *c = (vcur_t *)cur;
    vt_t *v = (vt_t *)cur->pVtab;
    return c->i >= (v->emit ? v->b->ngroups : v->b->nrows);
}

static void text_result(sqlite3_context *ctx, const uint8_t *p, int32_t n)
{
    if (!p || n < 0) sqlite3_result_null(ctx);
    else sqlite3_result_text(ctx, (const char *)p, n, SQLITE_STATIC);
}

static int vt_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    vcur_t *c = (vcur_t *)cur;
    vt_t *v = (vt_t *)cur->pVtab;
    if (v->emit) {
        rn_win_group_column(v->b->win, v->b->groups[c->i], col, ctx);
        return SQLITE_OK;
    }
    const srow_t *r = &v->b->rows[c->i];
    int nf = v->b->def->nfields;
    if (col == SQL_COL_FIELDS + nf + 1) {                   /* __idx */
        sqlite3_result_int64(ctx, (sqlite3_int64)c->i);
        return SQLITE_OK;
    }
    if (col == SQL_COL_FIELDS + nf) {                       /* value */
        text_result(ctx, r->value, r->value_len);
        return SQLITE_OK;
    }
    switch (col) {
    case SQL_COL_QUEUE: sqlite3_result_int64(ctx, r->queue); break;
    case SQL_COL_OFFSET: sqlite3_result_int64(ctx, r->offset); break;
    case SQL_COL_TS: sqlite3_result_int64(ctx, r->ts); break;
    case SQL_COL_KEY: text_result(ctx, r->key, r->key_len); break;
    default: {
        const fval_t *f = &r->fields[col - SQL_COL_FIELDS];
        switch (f->type) {
        case RN_SQL_INT: sqlite3_result_int64(ctx, f->i); break;
        case RN_SQL_REAL: sqlite3_result_double(ctx, f->d); break;
        case RN_SQL_TEXT: sqlite3_result_text(ctx, f->s, (int)f->n, SQLITE_STATIC); break;
        default: sqlite3_result_null(ctx); break;
        }
    }
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

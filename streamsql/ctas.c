/*
 * ctas.c — CREATE TABLE name AS SELECT key, aggregates FROM stream [WHERE
 * ...] GROUP BY key: a continuously maintained aggregate (a materialized
 * table).
 *
 * A CTAS stores two definitions and creates one topic:
 *  - the changelog topic "<name>.changelog" (one queue);
 *  - a pipeline named <name> (etl/): INSERT INTO "<name>.changelog" <the
 *    SELECT> EMIT CHANGES WITH (queues = 1, start = 'earliest'): one JSON row
 *    per changed group, the new row, in the order the groups changed;
 *  - a changelog table <name> over that topic (table.c), its primary key the
 *    GROUP BY key, its other fields the SELECT's aggregate columns.
 * So the table is a plain changelog table: joins and pull queries read it as
 * any other, and the pipeline machinery makes it exactly-once across crashes
 * (etl/README.md "Exactly-once").
 *
 * Invariants:
 *  1. The SELECT has exactly one GROUP BY key, no window, and every column is
 *     that key (a bare column, INTEGER or TEXT) or one aggregate call with a
 *     name: the row it emits is a full row of the table.
 *  2. The changelog has one queue, so a key's rows apply in the order the
 *     pipeline wrote them (table.c: across queues the last applied wins).
 *  3. A table is materialized iff its topic is "<name>.changelog" and a
 *     pipeline <name> writes into it (rn_ctas_pipeline); DROP TABLE of such a
 *     table drops that pipeline and deletes the changelog topic.
 *  4. A CTAS over the network (remote) is refused: it defines a pipeline,
 *     which runs with the operator's rights (define it embedded or in
 *     runneld's --pipelines file).
 */
#include "streamsql/sql_int.h"

#include "common/error.h"
#include "etl/etl.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FORM "CREATE TABLE name AS SELECT key, count(*) AS n, sum(x) AS s FROM stream " \
             "[WHERE ...] GROUP BY key"

static void changelog_name(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s.changelog", name);
}

/* Is [b, e) one aggregate call (name(...) [FILTER (WHERE ...)])? Its name
 * lower-cased into fn, its argument tokens into *ab, *ae. */
static int agg_call(const front_t *f, int b, int e, char *fn, size_t fsize, int *ab, int *ae)
{
    if (e - b < 3 || f->toks[b].kind != TK_ID || f->toks[b + 1].kind != TK_LP) return 0;
    int close = rn_front_match_paren(f, b + 1);
    if (close < 0 || close >= e) return 0;
    if (close + 1 < e) {
        if (!rn_front_tok_is(f, close + 1, "FILTER") || close + 2 >= e ||
            f->toks[close + 2].kind != TK_LP || rn_front_match_paren(f, close + 2) != e - 1)
            return 0;
    }
    size_t n = f->toks[b].len < fsize - 1 ? f->toks[b].len : fsize - 1;
    for (size_t i = 0; i < n; i++) fn[i] = (char)tolower((unsigned char)f->sql[f->toks[b].off + i]);
    fn[n] = '\0';
    *ab = b + 2;
    *ae = close;
    if (*ab < *ae && rn_front_tok_is(f, *ab, "DISTINCT")) (*ab)++;
    return 1;
}

/* The declared type of the source field the tokens [b, e) name, or -1. */
static int field_type(const front_t *f, const sdef_t *src, int b, int e)
{
    char id[RN_SQL_MAX_NAME + 1];
    if (e - b == 3 && f->toks[b + 1].kind == TK_DOT) b += 2;     /* s.x */
    if (e - b != 1 || rn_front_ident(f, b, id, sizeof id) != 0) return -1;
    for (int i = 0; i < src->nfields; i++)
        if (strcasecmp(src->fields[i].name, id) == 0) return (int)src->fields[i].type;
    return -1;
}

static int same_text(const char *a, size_t an, const char *b)
{
    size_t i = 0, j = 0, bn = strlen(b);
    while (i < an || j < bn) {
        while (i < an && isspace((unsigned char)a[i])) i++;
        while (j < bn && isspace((unsigned char)b[j])) j++;
        if (i == an || j == bn) return i == an && j == bn;
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[j])) return 0;
        i++;
        j++;
    }
    return 1;
}

static int valid_field_name(const char *s)
{
    if (!s[0] || strlen(s) > RN_SQL_MAX_NAME || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) return 0;
    return 1;
}

/* The type of select item [b, e) (alias removed) named col: the key's, or an
 * aggregate's. */
static int item_type(const front_t *f, const sdef_t *src, int b, int e, const char *col,
                     ftype_t keyt, int *is_key, ftype_t *t, char *errmsg)
{
    char fn[40];
    int ab, ae;
    *is_key = 0;
    const char *text = f->sql + f->toks[b].off;
    size_t tlen = f->toks[e - 1].off + f->toks[e - 1].len - f->toks[b].off;
    if (same_text(text, tlen, f->keys[0])) {
        *is_key = 1;
        *t = keyt;
        return 0;
    }
    if (!agg_call(f, b, e, fn, sizeof fn, &ab, &ae))
        return rn_errf(errmsg, RN_EINVAL, "column '%s' of a CREATE TABLE ... AS SELECT is "
                       "neither the GROUP BY key nor one aggregate call: compute other "
                       "expressions in the query that reads the table; %s", col, FORM);
    int at = field_type(f, src, ab, ae);
    if (!strcmp(fn, "count") || !strcmp(fn, "approx_count_distinct")) *t = FT_INTEGER;
    else if (!strcmp(fn, "sum")) *t = at == FT_INTEGER || at == FT_BOOLEAN ? FT_INTEGER : FT_REAL;
    else if (!strcmp(fn, "min") || !strcmp(fn, "max") || !strcmp(fn, "first") ||
             !strcmp(fn, "last"))
        *t = at >= 0 ? (at == FT_BOOLEAN ? FT_INTEGER : (ftype_t)at) : FT_REAL;
    else *t = FT_REAL;
    if (*t == FT_JSON) *t = FT_TEXT;
    return 0;
}

/* Build the table's definition from the opened SELECT (invariant 1). */
static int table_def(const front_t *f, const sdef_t *src, const char *name, sdef_t *def,
                     char *errmsg)
{
    if (f->win == WK_NONE || (f->win == WK_GLOBAL && f->nkeys == 0) || f->distinct)
        return rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT needs GROUP BY key: the "
                       "key is the table's primary key (%s)", FORM);
    if (f->win != WK_GLOBAL)
        return rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT does not take a window "
                       "(TUMBLE, HOP, SESSION): a table holds one row per key; run windowed "
                       "aggregations as a query or a pipeline (%s)", FORM);
    if (f->nkeys != 1)
        return rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT groups by one key (the "
                       "primary key), not %d; combine them into one: GROUP BY a || '/' || b",
                       f->nkeys);
    if (f->topn || f->having_b < f->having_e)
        return rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT takes no HAVING or "
                       "TopN: filter when reading the table (SELECT ... FROM %s WHERE n > 5)",
                       name);
    ftype_t keyt;
    if (f->key_aff[0] == 'i') keyt = FT_INTEGER;
    else if (f->key_aff[0] == 't') keyt = FT_TEXT;
    else
        return rn_errf(errmsg, RN_EINVAL, "the GROUP BY key '%s' must be a declared INTEGER or "
                       "TEXT field of the stream (the table's primary key)", f->keys[0]);
    memset(def, 0, sizeof *def);
    snprintf(def->name, sizeof def->name, "%s", name);
    changelog_name(name, def->topic, sizeof def->topic);
    def->format = SF_JSON;
    def->declared = 1;
    def->ts_field = -1;
    int b = f->sel_b;
    while (b < f->sel_e) {
        int e = b;
        while (e < f->sel_e && !(f->toks[e].kind == TK_COMMA &&
                                 f->toks[e].depth == f->toks[f->sel_b].depth))
            e++;
        char col[RN_SQL_MAX_NAME * 2 + 2] = "";
        int xe = e;
        if (e - b >= 3 && rn_front_tok_is(f, e - 2, "AS")) xe = e - 2;
        else if (e - b >= 2 && (f->toks[e - 1].kind == TK_ID || f->toks[e - 1].kind == TK_QID) &&
                 (f->toks[e - 2].kind == TK_RP || f->toks[e - 2].kind == TK_ID) &&
                 !rn_front_tok_is(f, e - 2, "DISTINCT"))
            xe = e - 1;
        if (xe < e) rn_front_ident(f, e - 1, col, sizeof col);
        else if (xe - b == 1) rn_front_ident(f, b, col, sizeof col);
        else if (xe - b == 3 && f->toks[b + 1].kind == TK_DOT) rn_front_ident(f, b + 2, col,
                                                                             sizeof col);
        else snprintf(col, sizeof col, "%.*s", (int)(f->toks[xe - 1].off + f->toks[xe - 1].len -
                                                     f->toks[b].off), f->sql + f->toks[b].off);
        if (f->toks[b].kind == TK_STAR)
            return rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT names its columns "
                           "(no *): %s", FORM);
        if (!valid_field_name(col))
            return rn_errf(errmsg, RN_EINVAL, "column '%.80s' needs a name: write it with AS "
                           "(count(*) AS n)", col);
        if (def->nfields == RN_SQL_MAX_FIELDS)
            return rn_errf(errmsg, RN_EINVAL, "a table has at most %d columns",
                           RN_SQL_MAX_FIELDS);
        int is_key;
        ftype_t t = FT_REAL;
        int rc = item_type(f, src, b, xe, col, keyt, &is_key, &t, errmsg);
        if (rc != 0) return rc;
        for (int i = 0; i < def->nfields; i++)
            if (strcasecmp(def->fields[i].name, col) == 0)
                return rn_errf(errmsg, RN_EINVAL, "two columns are named '%s'", col);
        if (is_key && def->pk1)
            return rn_errf(errmsg, RN_EINVAL, "the GROUP BY key is selected twice");
        memcpy(def->fields[def->nfields].name, col, strlen(col) + 1);   /* valid_field_name */
        def->fields[def->nfields].type = t;
        if (is_key) def->pk1 = def->nfields + 1;
        def->nfields++;
        b = e + 1;
    }
    if (!def->pk1)
        return rn_errf(errmsg, RN_EINVAL, "the SELECT must return the GROUP BY key '%s' (the "
                       "table's primary key) as a column: %s", f->keys[0], FORM);
    /* invariant 1: one key column, INTEGER or TEXT, every column named */
    assert(def->pk1 >= 1 && def->pk1 <= def->nfields);
    assert(def->fields[def->pk1 - 1].type == FT_INTEGER ||
           def->fields[def->pk1 - 1].type == FT_TEXT);
    return 0;
}

/* The pipeline text of a CTAS (select: the SELECT without its EMIT clause). */
static int pipeline_text(const char *name, const char *select, size_t slen, rn_buf_t *out)
{
    char topic[RN_META_TOPIC_NAME_MAX + 16];
    changelog_name(name, topic, sizeof topic);
    char head[RN_META_TOPIC_NAME_MAX * 2 + 64];
    snprintf(head, sizeof head, "CREATE PIPELINE %s AS INSERT INTO \"%s\" ", name, topic);
    static const char tail[] = " EMIT CHANGES WITH (queues = 1, start = 'earliest')";
    if (rn_buf_append(out, head, strlen(head), 0) != 0 ||
        rn_buf_append(out, select, slen, 0) != 0 ||
        rn_buf_append(out, tail, sizeof tail, 0) != 0)     /* with the NUL */
        return -ENOMEM;
    return 0;
}

int rn_ctas_pipeline(rn_datadir_t *d, const char *name, const char *topic, char *out,
                     size_t size)
{
    char want[RN_META_TOPIC_NAME_MAX + 16];
    changelog_name(name, want, sizeof want);
    if (strcmp(topic, want) != 0) return 0;
    rn_meta_pipeline_t *mp = malloc(sizeof *mp);
    char why[RN_ERRMSG_SIZE];
    if (!mp) return 0;
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_pipeline_get(m, name, mp, why);
    rn_datadir_meta_unlock(d);
    char prefix[RN_META_TOPIC_NAME_MAX * 2 + 64];
    snprintf(prefix, sizeof prefix, "CREATE PIPELINE %s AS INSERT INTO \"%s\" ", name, want);
    int is = rc == 0 && strncmp(mp->sql, prefix, strlen(prefix)) == 0;
    if (is && out) snprintf(out, size, "%s", mp->sql + strlen(prefix));
    free(mp);
    return is;
}

int rn_ctas_create(rn_datadir_t *d, const char *name, const char *select, size_t slen,
                   int remote, int *same, char *errmsg)
{
    *same = 0;
    if (remote)
        return rn_errf(errmsg, -EPERM, "CREATE TABLE ... AS SELECT defines a pipeline, which "
                       "runs with the operator's rights: define it embedded (streamsql --data "
                       "DIR) or in runneld's --pipelines file; remote queries may read and "
                       "join it");
    char topic[RN_META_TOPIC_NAME_MAX + 16];
    changelog_name(name, topic, sizeof topic);
    if (strlen(topic) > RN_META_TOPIC_NAME_MAX)
        return rn_errf(errmsg, RN_EINVAL, "table name '%s' is too long for its changelog "
                       "topic '%s'", name, topic);
    /* the SELECT as written: no tail clause (the pipeline adds EMIT CHANGES) */
    front_t f0;
    int off;
    int rc = rn_front_parse(&f0, select, slen, &off, errmsg);
    if (rc == 0 && f0.kind != SK_SELECT)
        rc = rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS takes a SELECT: %s", FORM);
    if (rc == 0 && f0.tail_b < f0.ntoks)
        rc = rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT takes no LIMIT, EMIT or "
                     "WITH clause: the table is updated on every change (%s)", FORM);
    if (rc == 0 && f0.group_b >= f0.group_e)
        rc = rn_errf(errmsg, RN_EINVAL, "CREATE TABLE ... AS SELECT needs GROUP BY key: the "
                     "key is the table's primary key (%s)", FORM);
    rn_front_free(&f0);
    if (rc != 0) return rc;
    /* open it as the pipeline will run it: bad SQL, an unknown source, what
     * EMIT CHANGES refuses, all fail here */
    rn_buf_t ptext = RN_BUF_INIT, qtext = RN_BUF_INIT;
    rc = pipeline_text(name, select, slen, &ptext);
    if (rc == 0 && (rn_buf_append(&qtext, select, slen, 0) != 0 ||
                    rn_buf_append(&qtext, " EMIT CHANGES", 14, 0) != 0))
        rc = -ENOMEM;
    sdef_t *def = malloc(sizeof *def);
    rn_sql_t *q = NULL;
    if (rc != 0 || !def) {
        free(def);
        rn_buf_free(&ptext);
        rn_buf_free(&qtext);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.follow = 1;
    rc = rn_sql_open(d, (const char *)qtext.data, qtext.len - 1, &o, &q, &off, errmsg);
    if (rc == 0) {
        const sdef_t *src;
        const front_t *f = rn_sql_front(q, &src);
        rc = table_def(f, src, name, def, errmsg);
    }
    rn_sql_close(q);
    rn_buf_free(&qtext);
    const char *sel = strstr((const char *)ptext.data, "\" ") + 2;
    /* the changelog topic, then the table (refused if the name is a stream,
     * or a table of another definition), then the pipeline */
    int made_topic = 0;
    if (rc == 0) {
        rn_meta_topic_t t;
        rn_meta_t *m = rn_datadir_meta_lock(d);
        int exists = rn_meta_topic_get(m, topic, &t, errmsg) == 0;
        rn_datadir_meta_unlock(d);
        if (!exists && (rc = rn_datadir_topic_create(d, topic, 1, NULL, errmsg)) == 0)
            made_topic = 1;
    }
    if (rc == 0) rc = rn_table_create(d, def, 0, same, errmsg);
    int had_table = *same;
    if (rc == 0) {
        char have[RN_META_PIPELINE_SQL_MAX + 1];
        size_t pre = (size_t)(sel - (const char *)ptext.data);
        if (rn_ctas_pipeline(d, name, topic, have, sizeof have)) {
            if (strcmp(have, (const char *)ptext.data + pre) != 0 || !had_table)
                rc = rn_errf(errmsg, RN_EEXIST, "table '%s' is materialized by another "
                             "SELECT; DROP TABLE %s first", name, name);
        } else {
            *same = 0;
            rn_meta_t *m = rn_datadir_meta_lock(d);
            rc = rn_meta_pipeline_create(m, name, (const char *)ptext.data, NULL, errmsg);
            rn_datadir_meta_unlock(d);
            if (rc == RN_EEXIST)
                rc = rn_errf(errmsg, RN_EEXIST, "a pipeline named '%s' exists: a materialized "
                             "table is maintained by a pipeline of its name", name);
            if (rc != 0 && !had_table) {
                char e2[RN_ERRMSG_SIZE];
                rn_table_drop(d, name, e2);
            }
        }
    }
    if (rc != 0 && made_topic) {
        char e2[RN_ERRMSG_SIZE];
        rn_datadir_topic_delete(d, topic, NULL, e2);
    }
    free(def);
    rn_buf_free(&ptext);
    return rc;
}

int rn_ctas_drop(rn_datadir_t *d, const char *name, char *errmsg)
{
    sdef_t *def = malloc(sizeof *def);
    char why[RN_ERRMSG_SIZE];
    if (!def) return rn_errf(errmsg, -ENOMEM, "out of memory");
    int rc = 0;
    if (rn_table_get(d, name, def, why) == 0 && !def->file[0] &&
        rn_ctas_pipeline(d, name, def->topic, NULL, 0)) {
        rc = rn_etl_drop(d, name, errmsg);
        if (rc == 0) {
            rc = rn_datadir_topic_delete(d, def->topic, NULL, errmsg);
            if (rc == RN_ENOTFOUND) rc = 0;
        }
    }
    free(def);
    return rc;
}

void rn_ctas_show(rn_datadir_t *d, const char *name, const char *topic, char *out, size_t size)
{
    if (!rn_ctas_pipeline(d, name, topic, NULL, 0)) return;
    rn_etl_status_t *s = NULL;
    size_t n = 0;
    char why[RN_ERRMSG_SIZE];
    size_t len = strlen(out);
    if (rn_etl_status(d, name, &s, &n, why) != 0 || n != 1) {
        snprintf(out + len, size - len, ", materialized by pipeline '%s'", name);
    } else if (!s->checkpoint_ms) {
        snprintf(out + len, size - len, ", materialized by pipeline '%s'%s, not run yet",
                 name, s->paused ? " (paused)" : "");
    } else {
        int64_t lag = 0;
        for (uint32_t i = 0; i < s->nq; i++) lag += s->lag[i] > 0 ? s->lag[i] : 0;
        snprintf(out + len, size - len, ", materialized by pipeline '%s'%s from '%s', lag %lld "
                 "records at its last checkpoint", name, s->paused ? " (paused)" : "",
                 s->source, (long long)lag);
    }
    free(s);
}

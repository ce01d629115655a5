/*
 * table.c — lookup tables for stream–table joins (FROM s [LEFT] JOIN t ON
 * s.k = t.id): CREATE TABLE / DROP TABLE / SHOW TABLES / DESCRIBE of a
 * table, and the table a query joins, kept as a real SQLite table
 * temp."<name>" of the query's connection keyed by its PRIMARY KEY, so
 * sqlite evaluates the join (front.c writes it as CROSS JOIN / LEFT JOIN:
 * the stream stays the outer loop).
 *
 * A table is either
 *  - a changelog topic (WITH (topic = 't', format = 'json' | 'csv')): the
 *    latest value per primary key. A record whose value holds the key field
 *    inserts or replaces the row of that key; a record whose value is empty,
 *    null or the JSON literal null deletes the row whose key is the record's
 *    KEY (its text, read as an integer for an INTEGER key), like ksqlDB's and
 *    upsert-kafka's tombstones. Records apply in offset order within a queue;
 *    a key's records belong in one queue (produce them keyed by the primary
 *    key) — across queues the last one applied wins;
 *  - a static file (WITH (file = 'path', format = 'csv' | 'json')), loaded
 *    whole at open: CSV with a header line naming the declared fields in
 *    order, or one JSON object per line. A line that does not decode fails
 *    the open, naming the file and line.
 *
 * Invariants:
 *  1. The table's contents are a function of its read positions: after
 *     rn_table_open / _sync it holds exactly the records [log start, pos) of
 *     each queue applied in offset order per queue; rn_table_restore rebuilds
 *     that state for saved positions (so a restored query sees the same
 *     table as the saved one did).
 *  2. The table changes only between steps of the statements that read it
 *     (sql.c calls rn_table_sync before polling a batch, never while the
 *     per-batch statement is stepped).
 *  3. Every table record is applied or counted in the query's errors (the
 *     first reason kept); it never fails the query. Table records do not go
 *     to a pipeline's dead-letter topic.
 *  4. Two statements are prepared per table (upsert, delete), at open.
 *  5. A file table is never created over the network (remote): a path a
 *     client names is not read by runneld (README "Security"). The path is
 *     stored absolute.
 */
#include "streamsql/sql_int.h"

#include "common/error.h"
#include "logical-queues/consumer.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rn_table {
    rn_datadir_t  *d;
    sqlite3       *db;
    sdef_t         def;
    sqlite3_stmt  *up, *del;
    rn_consumer_t *cons;
    uint32_t       nq;
    fval_t         fv[RN_SQL_MAX_FIELDS];
    rn_buf_t       arena;
    uint64_t      *errors;
    char          *first_error;
    size_t         fe_size;
};

/* ---- definitions ---------------------------------------------------------- */

static int parse_def(const char *text, sdef_t *def, char *errmsg)
{
    front_t f;
    int off;
    int rc = rn_front_parse(&f, text, strlen(text), &off, errmsg);
    if (rc == 0 && f.kind != SK_CREATE_TABLE) rc = RN_EINVAL;
    if (rc == 0) *def = f.def;
    rn_front_free(&f);
    return rc;
}

int rn_table_get(rn_datadir_t *d, const char *name, sdef_t *def, char *errmsg)
{
    rn_meta_table_t *t = malloc(sizeof *t);
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_table_get(m, name, t, errmsg);
    rn_datadir_meta_unlock(d);
    if (rc == 0 && parse_def(t->def, def, errmsg) != 0)
        rc = rn_errf(errmsg, RN_ECORRUPT, "table '%s': its stored definition is damaged "
                     "(DROP TABLE %s)", name, name);
    free(t);
    return rc;
}

static int load_check(rn_datadir_t *d, const sdef_t *def, char *errmsg)
{
    sqlite3 *db = NULL;
    rn_table_t *t = NULL;
    uint64_t errors = 0;
    char fe[8];
    int rc = sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                             NULL) == SQLITE_OK
                 ? rn_table_open(d, db, def, &errors, fe, sizeof fe, &t, errmsg)
                 : rn_errf(errmsg, RN_ESQLITE, "cannot open sqlite");
    rn_table_close(t);
    sqlite3_close(db);
    return rc;
}

int rn_table_create(rn_datadir_t *d, const sdef_t *in, int remote, int *same, char *errmsg)
{
    sdef_t *def = malloc(sizeof *def);
    rn_meta_table_t *t = calloc(1, sizeof *t), *old = malloc(sizeof *old);
    rn_meta_stream_t *s = malloc(sizeof *s);
    rn_buf_t text = RN_BUF_INIT;
    int rc = 0;
    *same = 0;
    if (!def || !t || !old || !s) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
    *def = *in;
    if (def->file[0]) {
        char abs[PATH_MAX];
        if (remote) {
            rc = rn_errf(errmsg, -EPERM, "table '%s': a file table (WITH (file = ...)) is "
                         "created embedded only (runnel --data DIR / streamsql --data DIR); "
                         "runneld does not read a path a client names", def->name);
            goto out;
        }
        if (!realpath(def->file, abs)) {
            rc = rn_errf(errmsg, -errno, "table '%s': file '%s': %s", def->name, def->file,
                         strerror(errno));
            goto out;
        }
        if (strlen(abs) > RN_SQL_MAX_PATH) {
            rc = rn_errf(errmsg, RN_EINVAL, "table '%s': the file's path is longer than %d "
                         "bytes", def->name, RN_SQL_MAX_PATH);
            goto out;
        }
        memcpy(def->file, abs, strlen(abs) + 1);      /* fits: checked above */
        if ((rc = load_check(d, def, errmsg)) != 0) goto out;
    }
    if (rn_front_table_text(def, &text) != 0 || rn_buf_append(&text, "", 1, 0) != 0) {
        rc = rn_errf(errmsg, RN_ETOOBIG, "the table's definition is too long");
        goto out;
    }
    if (text.len > RN_META_TABLE_MAX) {
        rc = rn_errf(errmsg, RN_ETOOBIG, "the table's definition is longer than %d bytes",
                     RN_META_TABLE_MAX);
        goto out;
    }
    snprintf(t->name, sizeof t->name, "%s", def->name);
    memcpy(t->def, text.data, text.len);
    rn_meta_t *m = rn_datadir_meta_lock(d);
    rn_meta_topic_t tp;
    char why[RN_ERRMSG_SIZE];
    if (rn_meta_stream_get(m, def->name, s, why) == 0) {
        rc = rn_errf(errmsg, RN_EEXIST, "'%s' is a stream; a table needs another name",
                     def->name);
    } else if (!def->file[0] && (rc = rn_meta_topic_get(m, def->topic, &tp, errmsg)) != 0) {
        /* errmsg names the topics */
    } else if ((rc = rn_meta_table_get(m, def->name, old, why)) == 0) {
        *same = strcmp(old->def, t->def) == 0;
        rc = *same ? 0 : rn_errf(errmsg, RN_EEXIST, "table '%s' exists as %.300s; to apply the "
                                 "new definition, DROP TABLE %s first", def->name, old->def,
                                 def->name);
    } else if (rc == RN_ENOTFOUND) {
        rc = rn_meta_table_create(m, t, errmsg);
    } else {
        rc = rn_errf(errmsg, rc, "%s", why);
    }
    rn_datadir_meta_unlock(d);
out:
    rn_buf_free(&text);
    free(def);
    free(t);
    free(old);
    free(s);
    return rc;
}

int rn_table_drop(rn_datadir_t *d, const char *name, char *errmsg)
{
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_table_drop(m, name, errmsg);
    rn_datadir_meta_unlock(d);
    return rc;
}

int rn_table_show(rn_datadir_t *d, int (*row)(void *, const char *const *), void *ctx,
                  char *errmsg)
{
    rn_meta_table_t *v = NULL;
    size_t n = 0;
    sdef_t *def = malloc(sizeof *def);
    if (!def) return rn_errf(errmsg, -ENOMEM, "out of memory");
    rn_meta_t *m = rn_datadir_meta_lock(d);
    int rc = rn_meta_table_list(m, &v, &n, errmsg);
    rn_datadir_meta_unlock(d);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char src[RN_SQL_MAX_PATH + 512], fields[RN_SQL_MAX_FIELDS * (RN_SQL_MAX_NAME + 32)];
        char why[RN_ERRMSG_SIZE];
        if (parse_def(v[i].def, def, why) != 0) {
            const char *r[5] = {v[i].name, "(damaged: DROP TABLE it)", NULL, NULL, v[i].def};
            rc = row(ctx, r);
            continue;
        }
        snprintf(src, sizeof src, "%s '%s'", def->file[0] ? "file" : "topic",
                 def->file[0] ? def->file : def->topic);
        if (!def->file[0]) rn_ctas_show(d, v[i].name, def->topic, src, sizeof src);
        rn_front_fields_text(def, fields, sizeof fields);
        const char *r[5] = {v[i].name, src, rn_front_format_name(def->format),
                            def->fields[def->pk1 - 1].name, fields};
        rc = row(ctx, r);
    }
    free(v);
    free(def);
    return rc;
}

int rn_table_describe(const sdef_t *def, int (*row)(void *, const char *const *), void *ctx)
{
    for (int i = 0; i < def->nfields; i++) {
        char src[RN_SQL_MAX_PATH + 64];
        snprintf(src, sizeof src, "%s%s field of %s '%.*s'", def->pk1 == i + 1 ? "PRIMARY KEY, " : "",
                 rn_front_format_name(def->format), def->file[0] ? "file" : "table topic",
                 RN_SQL_MAX_PATH, def->file[0] ? def->file : def->topic);
        const char *r[3] = {def->fields[i].name, rn_front_ftype_name(def->fields[i].type), src};
        int rc = row(ctx, r);
        if (rc != 0) return rc;
    }
    return 0;
}

/* ---- the table of a query -------------------------------------------------- */

static const char *col_type(ftype_t t)
{
    return t == FT_INTEGER || t == FT_BOOLEAN ? "INTEGER" : t == FT_REAL ? "REAL" : "TEXT";
}

static void count_error(rn_table_t *t, const char *where, const char *why)
{
    if ((*t->errors)++ == 0 || !t->first_error[0])
        snprintf(t->first_error, t->fe_size, "table '%.60s' %.80s: %.150s", t->def.name, where,
                 why);
}

static int bind_val(sqlite3_stmt *st, int i, const fval_t *v)
{
    switch (v->type) {
    case RN_SQL_INT: return sqlite3_bind_int64(st, i, v->i);
    case RN_SQL_REAL: return sqlite3_bind_double(st, i, v->d);
    case RN_SQL_TEXT: return sqlite3_bind_text(st, i, v->s, (int)v->n, SQLITE_TRANSIENT);
    case RN_SQL_BLOB: return sqlite3_bind_blob(st, i, v->s, (int)v->n, SQLITE_TRANSIENT);
    default: return sqlite3_bind_null(st, i);
    }
}

/* Step an upsert or delete: 0 done; 1 this record cannot be applied (why
 * set); negative: the query fails (out of memory, interrupted by a cancel or
 * the broker's step budget, ...): never a record silently skipped for it. */
static int run(sqlite3_stmt *st, char *why)
{
    int s = sqlite3_step(st);
    snprintf(why, RN_ERRMSG_SIZE, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (s == SQLITE_DONE) return 0;
    int e = s & 0xff;
    if (e == SQLITE_CONSTRAINT || e == SQLITE_MISMATCH || e == SQLITE_TOOBIG) return 1;
    return rn_errf(why, RN_ESQLITE, "applying a record failed: %s", sqlite3_errstr(s));
}

/* Insert or replace the row a value holds. 0 applied, 1 rejected (why
 * set), negative: the query fails. */
static int upsert(rn_table_t *t, const uint8_t *v, int32_t vlen, char *why)
{
    const sdef_t *def = &t->def;
    uint64_t need = def->nfields >= 64 ? ~0ull : (1ull << def->nfields) - 1;
    t->arena.len = 0;
    if (rn_buf_reserve(&t->arena, (size_t)vlen + 1, 0) != 0)
        return rn_errf(why, -ENOMEM, "out of memory");
    if (rn_scan_record(def, need, v, vlen, t->fv, &t->arena, why) != 0) return 1;
    const fval_t *k = &t->fv[def->pk1 - 1];
    if (k->type == RN_SQL_NULL) {
        snprintf(why, RN_ERRMSG_SIZE, "primary key '%s' is missing or null (a delete has an "
                 "empty value and the key as the record key)", def->fields[def->pk1 - 1].name);
        return 1;
    }
    for (int i = 0; i < def->nfields; i++) bind_val(t->up, i + 1, &t->fv[i]);
    return run(t->up, why);
}

/* A tombstone: delete the row whose primary key is the record key. */
static int delete_key(rn_table_t *t, const uint8_t *key, int32_t klen, char *why)
{
    const sfield_t *pk = &t->def.fields[t->def.pk1 - 1];
    if (klen < 0) {
        snprintf(why, RN_ERRMSG_SIZE, "an empty value deletes the row whose '%s' is the record "
                 "key, and this record has no key", pk->name);
        return 1;
    }
    if (pk->type == FT_INTEGER) {
        char buf[32], *end;
        if (klen == 0 || klen >= (int32_t)sizeof buf) goto bad;
        memcpy(buf, key, (size_t)klen);
        buf[klen] = '\0';
        errno = 0;
        long long x = strtoll(buf, &end, 10);
        if (*end || errno) goto bad;
        sqlite3_bind_int64(t->del, 1, x);
    } else {
        sqlite3_bind_text(t->del, 1, (const char *)key, klen, SQLITE_TRANSIENT);
    }
    return run(t->del, why);
bad:
    snprintf(why, RN_ERRMSG_SIZE, "an empty value deletes the row whose INTEGER '%s' is the "
             "record key; key '%.*s' is not an integer", pk->name, klen < 40 ? (int)klen : 40,
             (const char *)key);
    return 1;
}

static int is_tombstone(const uint8_t *v, int32_t n)
{
    int32_t i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) i++;
    if (i == n) return 1;                   /* null or empty */
    if (n - i < 4 || memcmp(v + i, "null", 4) != 0) return 0;
    for (i += 4; i < n; i++)
        if (!(v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) return 0;
    return 1;
}

static int apply_record(rn_table_t *t, uint32_t queue, const rn_record_t *r, char *errmsg)
{
    char why[RN_ERRMSG_SIZE];
    int rc = r->value_len <= 0 || is_tombstone(r->value, r->value_len)
                 ? delete_key(t, r->key, r->key_len, why)
                 : upsert(t, r->value, r->value_len, why);
    char where[96];
    snprintf(where, sizeof where, "topic '%.40s' queue %u offset %lld", t->def.topic, queue,
             (long long)r->offset);
    if (rc == 1) {
        count_error(t, where, why);
        rc = 0;
    } else if (rc < 0) {
        rc = rn_errf(errmsg, rc, "table '%s' %s: %s", t->def.name, where, why);
    }
    return rc;
}

static int exec(rn_table_t *t, const char *sql, char *errmsg)
{
    if (sqlite3_exec(t->db, sql, NULL, NULL, NULL) == SQLITE_OK) return 0;
    return rn_errf(errmsg, RN_ESQLITE, "table '%s': %s", t->def.name, sqlite3_errmsg(t->db));
}

/* Apply the topic's records until each queue reaches ends[i] (NULL: the end
 * it has now), in one transaction. */
static int read_to(rn_table_t *t, const int64_t *ends, char *errmsg)
{
    int rc = 0;
#ifndef NDEBUG
    /* invariant 2: no statement reading the table is in the middle of a step */
    for (sqlite3_stmt *st = sqlite3_next_stmt(t->db, NULL); st; st = sqlite3_next_stmt(t->db, st))
        assert(!sqlite3_stmt_busy(st));
#endif
    for (uint32_t i = 0; i < t->nq && rc == 0; i++) {
        int64_t lo, hi;
        rc = rn_consumer_watermarks(t->cons, t->def.topic, i, &lo, &hi, errmsg);
        if (rc == 0) rc = rn_consumer_set_end(t->cons, t->def.topic, i, ends ? ends[i] : hi,
                                              errmsg);
    }
    if (rc != 0 || (rc = exec(t, "SAVEPOINT rn_table", errmsg)) != 0) return rc;
    rn_consumer_batch_t b;
    while (rc == 0 && (rc = rn_consumer_poll(t->cons, &b, errmsg)) == 1) {
        rc = 0;
        for (uint32_t k = 0; k < b.count && rc == 0; k++)
            rc = apply_record(t, b.queue, &b.records[k], errmsg);
    }
    if (rc < 0) {
        sqlite3_exec(t->db, "ROLLBACK TO rn_table; RELEASE rn_table", NULL, NULL, NULL);
        return errmsg && errmsg[0] ? rc : rn_errf(errmsg, rc, "table '%s': reading topic '%s' "
                                                  "failed", t->def.name, t->def.topic);
    }
    return exec(t, "RELEASE rn_table", errmsg);
}

/* A static file, whole: CSV after its header line, or JSON lines. */
static int load_file(rn_table_t *t, char *errmsg)
{
    FILE *fp = fopen(t->def.file, "r");
    if (!fp)
        return rn_errf(errmsg, -errno, "table '%s': cannot open file '%s': %s", t->def.name,
                       t->def.file, strerror(errno));
    char *line = NULL, why[RN_ERRMSG_SIZE];
    size_t cap = 0;
    ssize_t n;
    long no = 0;
    int rc = exec(t, "SAVEPOINT rn_table", errmsg);
    while (rc == 0 && (n = getline(&line, &cap, fp)) >= 0) {
        no++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (no == 1 && t->def.format == SF_CSV) {
            /* the header: the declared fields, in order */
            char want[RN_SQL_MAX_FIELDS * (RN_SQL_MAX_NAME + 1)] = "", got[sizeof want];
            size_t w = 0, g = 0;
            for (int i = 0; i < t->def.nfields; i++)
                w += (size_t)snprintf(want + w, sizeof want - w, "%s%s", i ? "," : "",
                                      t->def.fields[i].name);
            for (ssize_t i = 0; i < n && g + 1 < sizeof got; i++)
                if (line[i] != ' ' && line[i] != '"') got[g++] = line[i];
            got[g] = '\0';
            if (strcasecmp(want, got) != 0)
                rc = rn_errf(errmsg, RN_EINVAL, "table '%s': file '%s' line 1 must be the "
                             "header %s (the declared fields in order), not '%.100s'",
                             t->def.name, t->def.file, want, line);
            continue;
        }
        if (n == 0) continue;
        int r = upsert(t, (const uint8_t *)line, (int32_t)n, why);
        if (r == 1)
            rc = rn_errf(errmsg, RN_EINVAL, "table '%s': file '%s' line %ld: %s", t->def.name,
                         t->def.file, no, why);
        else if (r < 0)
            rc = rn_errf(errmsg, r, "%s", why);
    }
    if (rc == 0 && ferror(fp))
        rc = rn_errf(errmsg, -EIO, "table '%s': reading file '%s' failed", t->def.name,
                     t->def.file);
    free(line);
    fclose(fp);
    if (rc != 0) {
        sqlite3_exec(t->db, "ROLLBACK TO rn_table; RELEASE rn_table", NULL, NULL, NULL);
        return rc;
    }
    return exec(t, "RELEASE rn_table", errmsg);
}

/* A consumer over every queue of the topic from its log start. */
static int start_consumer(rn_table_t *t, char *errmsg)
{
    rn_consumer_destroy(t->cons);
    t->cons = NULL;
    rn_consumer_opts_t co = {0};
    int rc = rn_consumer_create(t->d, &co, &t->cons, errmsg);
    if (rc == 0) rc = rn_consumer_queues(t->cons, t->def.topic, &t->nq, errmsg);
    for (uint32_t i = 0; i < t->nq && rc == 0; i++) {
        rn_datadir_queue_t dq;
        rn_datadir_queue_info_t info;
        if ((rc = rn_datadir_queue_open(t->d, t->def.topic, i, &dq, errmsg)) != 0) break;
        rc = rn_datadir_queue_info(t->d, &dq, &info, errmsg);
        rn_datadir_queue_close(&dq);
        if (rc == 0) rc = rn_consumer_assign(t->cons, t->def.topic, i, info.log_start, errmsg);
    }
    return rc;
}

int rn_table_open(rn_datadir_t *d, sqlite3 *db, const sdef_t *def, uint64_t *errors,
                  char *first_error, size_t fe_size, rn_table_t **out, char *errmsg)
{
    *out = NULL;
    rn_table_t *t = calloc(1, sizeof *t);
    rn_buf_t sql = RN_BUF_INIT;
    if (!t) return rn_errf(errmsg, -ENOMEM, "out of memory");
    t->d = d;
    t->db = db;
    t->def = *def;
    t->errors = errors;
    t->first_error = first_error;
    t->fe_size = fe_size;
    const char *pk = def->fields[def->pk1 - 1].name;
    char *q = sqlite3_mprintf("CREATE TABLE temp.\"%w\" (", def->name);
    int rc = q && rn_buf_append(&sql, q, strlen(q), 0) == 0 ? 0 : -ENOMEM;
    sqlite3_free(q);
    for (int i = 0; rc == 0 && i < def->nfields; i++) {
        q = sqlite3_mprintf("%s\"%w\" %s%s", i ? ", " : "", def->fields[i].name,
                            col_type(def->fields[i].type),
                            def->pk1 == i + 1 ? " PRIMARY KEY" : "");
        rc = q && rn_buf_append(&sql, q, strlen(q), 0) == 0 ? 0 : -ENOMEM;
        sqlite3_free(q);
    }
    if (rc == 0) rc = rn_buf_append(&sql, ")", 2, 0) == 0 ? 0 : -ENOMEM;
    if (rc != 0) { rc = rn_errf(errmsg, rc, "out of memory"); goto fail; }
    if ((rc = exec(t, (const char *)sql.data, errmsg)) != 0) goto fail;
    sql.len = 0;
    q = sqlite3_mprintf("INSERT OR REPLACE INTO temp.\"%w\" VALUES (", def->name);
    rc = q && rn_buf_append(&sql, q, strlen(q), 0) == 0 ? 0 : -ENOMEM;
    sqlite3_free(q);
    for (int i = 0; rc == 0 && i < def->nfields; i++)
        rc = rn_buf_append(&sql, i ? ", ?" : "?", i ? 3 : 1, 0) == 0 ? 0 : -ENOMEM;
    if (rc == 0) rc = rn_buf_append(&sql, ")", 2, 0) == 0 ? 0 : -ENOMEM;
    if (rc != 0) { rc = rn_errf(errmsg, rc, "out of memory"); goto fail; }
    q = sqlite3_mprintf("DELETE FROM temp.\"%w\" WHERE \"%w\" = ?1", def->name, pk);
    if (!q || sqlite3_prepare_v2(db, (const char *)sql.data, -1, &t->up, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, q, -1, &t->del, NULL) != SQLITE_OK) {
        sqlite3_free(q);
        rc = rn_errf(errmsg, RN_ESQLITE, "table '%s': %s", def->name, sqlite3_errmsg(db));
        goto fail;
    }
    sqlite3_free(q);
    if (def->file[0]) rc = load_file(t, errmsg);
    else if ((rc = start_consumer(t, errmsg)) == 0) rc = read_to(t, NULL, errmsg);
    if (rc != 0) goto fail;
    rn_buf_free(&sql);
    *out = t;
    return 0;
fail:
    rn_buf_free(&sql);
    rn_table_close(t);
    return rc;
}

void rn_table_close(rn_table_t *t)
{
    if (!t) return;
    sqlite3_finalize(t->up);
    sqlite3_finalize(t->del);
    rn_consumer_destroy(t->cons);
    rn_buf_free(&t->arena);
    free(t);
}

int rn_table_sync(rn_table_t *t, char *errmsg)
{
    return t->def.file[0] ? 0 : read_to(t, NULL, errmsg);
}

int rn_table_save(rn_table_t *t, rn_buf_t *out, char *errmsg)
{
    uint32_t n = t->def.file[0] ? 0 : t->nq;
    if (rn_buf_append(out, &n, 4, 0) != 0) return rn_errf(errmsg, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        int64_t pos;
        int rc = rn_consumer_position(t->cons, t->def.topic, i, &pos, errmsg);
        if (rc != 0) return rc;
        if (rn_buf_append(out, &pos, 8, 0) != 0)
            return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    return 0;
}

int rn_table_restore(rn_table_t *t, const uint8_t *p, size_t n, size_t *used, char *errmsg)
{
    uint32_t nq;
    if (n < 4) goto damaged;
    memcpy(&nq, p, 4);
    if (nq != (t->def.file[0] ? 0 : t->nq))
        return rn_errf(errmsg, RN_EINVAL, "table '%s': topic '%s' has %u queue(s), the saved "
                       "state %u: the table's source changed", t->def.name, t->def.topic, t->nq,
                       nq);
    if ((n - 4) / 8 < nq) goto damaged;
    *used = 4 + (size_t)nq * 8;
    if (t->def.file[0]) return 0;      /* a file is the same table every time */
    int64_t *ends = malloc((nq ? nq : 1) * sizeof *ends);
    if (!ends) return rn_errf(errmsg, -ENOMEM, "out of memory");
    memcpy(ends, p + 4, (size_t)nq * 8);
    char *q = sqlite3_mprintf("DELETE FROM temp.\"%w\"", t->def.name);
    int rc = q ? exec(t, q, errmsg) : rn_errf(errmsg, -ENOMEM, "out of memory");
    sqlite3_free(q);
    if (rc == 0) rc = start_consumer(t, errmsg);
    for (uint32_t i = 0; i < nq && rc == 0; i++) {
        int64_t lo, hi;
        rc = rn_consumer_watermarks(t->cons, t->def.topic, i, &lo, &hi, errmsg);
        if (rc == 0 && (ends[i] < lo || ends[i] > hi))
            rc = rn_errf(errmsg, RN_ERANGE, "table '%s': the saved position %lld of topic '%s' "
                         "queue %u is outside what it holds [%lld, %lld]", t->def.name,
                         (long long)ends[i], t->def.topic, i, (long long)lo, (long long)hi);
    }
    if (rc == 0) rc = read_to(t, ends, errmsg);
    free(ends);
    return rc;
damaged:
    return rn_errf(errmsg, RN_ECORRUPT, "saved query state is damaged or from another query");
}

void rn_table_source(const rn_table_t *t, char *out, size_t size)
{
    if (t->def.file[0]) snprintf(out, size, "file '%s', loaded at open", t->def.file);
    else snprintf(out, size, "topic '%s' (%u queue(s))", t->def.topic, t->nq);
}

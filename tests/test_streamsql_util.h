/*
 * test_streamsql_util.h — what the streamsql tests share: a scratch data
 * directory, producing JSON records into a topic (one batch per call), and
 * running one statement with its rows collected as text lines
 * "v1|v2|..." (integers in decimal, reals with %.6g, NULL as "NULL").
 * Header-only (static functions): each test file is its own binary.
 */
#ifndef RN_TEST_STREAMSQL_UTIL_H
#define RN_TEST_STREAMSQL_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "batch/batch.h"
#include "common/buf.h"
#include "common/error.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

typedef struct sqlfix {
    char          root[64];
    rn_datadir_t *d;
} sqlfix_t;

static int sqlfix_setup(void **state)
{
    sqlfix_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->root, sizeof f->root, "/tmp/rn-sql-XXXXXX");
    if (!mkdtemp(f->root)) { free(f); return -1; }
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = 1;
    o.holder = "test_streamsql";
    o.log.fsync = RN_FSYNC_NEVER;
    char dir[128], err[RN_ERRMSG_SIZE] = "";
    snprintf(dir, sizeof dir, "%s/data", f->root);
    if (rn_datadir_open(dir, &o, &f->d, err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int sqlfix_teardown(void **state)
{
    sqlfix_t *f = *state;
    int rc = rn_datadir_close(f->d);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->root);
    if (system(cmd) != 0) rc = -1;
    free(f);
    return rc == 0 ? 0 : -1;
}

static void topic(sqlfix_t *f, const char *name, uint32_t queues)
{
    char err[RN_ERRMSG_SIZE] = "";
    if (rn_datadir_topic_create(f->d, name, queues, NULL, err) != 0) fail_msg("topic: %s", err);
}

typedef struct trec {
    int64_t     ts;
    const char *key;      /* NULL: none */
    const char *value;
} trec_t;

/* One batch of n records into (topic, queue). */
static void produce(sqlfix_t *f, const char *t, uint32_t queue, const trec_t *r, size_t n)
{
    rn_batch_builder_t b;
    rn_batch_opts_t o;
    rn_batch_opts_default(&o);
    o.max_bytes = RN_BATCH_MAX_BYTES;
    assert_int_equal(rn_batch_builder_init(&b, &o), 0);
    for (size_t i = 0; i < n; i++) {
        rn_record_t rec;
        memset(&rec, 0, sizeof rec);
        rec.timestamp = r[i].ts;
        rec.key = (const uint8_t *)r[i].key;
        rec.key_len = r[i].key ? (int32_t)strlen(r[i].key) : -1;
        rec.value = (const uint8_t *)r[i].value;
        rec.value_len = (int32_t)strlen(r[i].value);
        assert_int_equal(rn_batch_builder_add(&b, &rec), 0);
    }
    const uint8_t *batch;
    size_t len;
    assert_int_equal(rn_batch_builder_finish(&b, &batch, &len), 0);
    char err[RN_ERRMSG_SIZE] = "";
    rn_datadir_queue_t q;
    if (rn_datadir_queue_open(f->d, t, queue, &q, err) != 0) fail_msg("queue: %s", err);
    int64_t base;
    uint64_t ticket;
    if (rn_datadir_append(f->d, &q, batch, len, &base, &ticket, err) != 0)
        fail_msg("append: %s", err);
    assert_int_equal(rn_datadir_wait(f->d, ticket), 0);
    rn_datadir_queue_close(&q);
    rn_batch_builder_destroy(&b);
}

/* One JSON record per call (its own batch), timestamp ts. */
static inline void produce1(sqlfix_t *f, const char *t, int64_t ts, const char *json)
{
    trec_t r = {ts, NULL, json};
    produce(f, t, 0, &r, 1);
}

typedef struct rows {
    rn_buf_t text;        /* "a|b\n" per row, NUL-terminated */
    int      n;
} rows_t;

static int collect_row(void *ctx, const rn_sql_value_t *v, int n)
{
    rows_t *r = ctx;
    char buf[64];
    for (int i = 0; i < n; i++) {
        const char *s = buf;
        size_t len;
        switch (v[i].type) {
        case RN_SQL_INT: snprintf(buf, sizeof buf, "%lld", (long long)v[i].i); len = strlen(buf); break;
        case RN_SQL_REAL: snprintf(buf, sizeof buf, "%.6g", v[i].d); len = strlen(buf); break;
        case RN_SQL_TEXT: case RN_SQL_BLOB: s = v[i].s; len = v[i].n; break;
        default: s = "NULL"; len = 4; break;
        }
        if (i) rn_buf_append(&r->text, "|", 1, 0);
        rn_buf_append(&r->text, s, len, 0);
    }
    rn_buf_append(&r->text, "\n", 1, 0);
    r->n++;
    return 0;
}

/* Run sql to the end; rows as text (caller frees with free(*text)). */
static int run_sql(sqlfix_t *f, const char *sql, const rn_sql_opts_t *opts, char **text,
                   int *erroff, char *err, rn_sql_stats_t *st)
{
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_opts_t o;
    if (opts) o = *opts;
    else rn_sql_opts_default(&o);
    o.row = collect_row;
    o.ctx = &r;
    rn_sql_t *q = NULL;
    err[0] = '\0';
    int rc = rn_sql_open(f->d, sql, strlen(sql), &o, &q, erroff, err);
    if (rc == 0) {
        rc = rn_sql_run(q, err);
        if (st) rn_sql_stats(q, st);
        rn_sql_close(q);
    }
    rn_buf_append(&r.text, "", 1, 0);
    *text = (char *)r.text.data;
    return rc;
}

/* The rows plain sqlite3 gives for sql over db, formatted like collect_row,
 * then tail (the engine's counters line, or ""); malloc'd. */
static inline char *oracle_rows(sqlite3 *db, const char *sql, const char *tail)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("oracle: %s: %s", sql, sqlite3_errmsg(db));
    rows_t r = {RN_BUF_INIT, 0};
    rn_sql_value_t v[32];
    int n = sqlite3_column_count(st);
    assert_true(n <= 32);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < n; i++) {
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_INTEGER: v[i].type = RN_SQL_INT; v[i].i = sqlite3_column_int64(st, i); break;
            case SQLITE_FLOAT: v[i].type = RN_SQL_REAL; v[i].d = sqlite3_column_double(st, i); break;
            case SQLITE_TEXT:
                v[i].type = RN_SQL_TEXT;
                v[i].s = (const char *)sqlite3_column_text(st, i);
                v[i].n = (size_t)sqlite3_column_bytes(st, i);
                break;
            default: v[i].type = RN_SQL_NULL; break;
            }
        }
        collect_row(&r, v, n);
    }
    sqlite3_finalize(st);
    rn_buf_append(&r.text, tail, strlen(tail) + 1, 0);
    return (char *)r.text.data;
}

#endif

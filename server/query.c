/*
 * query.c — the Query RPC's engine side (server/query.h): QueryRequest →
 * rn_sql_open on the broker's data directory → QueryResponse messages. No
 * gRPC here; server.c owns the call, the worker thread and the sending.
 *
 * Rows are encoded by hand in protobuf wire format, field by field, into
 * one growing chunk (a QueryResponse holding only `rows`): the hot path
 * makes no allocation per row or value. The header and trailer are small
 * and packed with protobuf-c.
 *
 * Invariants:
 *  1. Bounded memory: the chunk is sent as soon as it holds
 *     RN_QUERY_CHUNK_ROWS rows or RN_QUERY_CHUNK_BYTES bytes, from inside
 *     the row callback; a single row larger than RN_QUERY_MSG_MAX stops the
 *     query with RESOURCE_EXHAUSTED instead of growing without limit.
 *  2. Every message this module produces unpacks as a QueryResponse: text
 *     that is not valid UTF-8 (proto3 strings must be) or holds a NUL byte
 *     travels as blob, with the same bytes.
 *  3. One engine entry point: every statement (SELECT, EXPLAIN, CREATE /
 *     DROP STREAM, SHOW, DESCRIBE) goes through rn_sql_open / rn_sql_step,
 *     exactly as the embedded `streamsql` runs it, with the same messages.
 *  4. Bounded work: one rn_query_step runs at most max_steps virtual-machine
 *     instructions (counted by a progress handler every PROGRESS_OPS; over
 *     it, sqlite is interrupted) and a query delivers at most max_rows rows;
 *     either ends the query with RESOURCE_EXHAUSTED naming the runneld flag.
 *     rn_query_cancel interrupts a statement running inside a step.
 */
#include "server/query.h"

#include "common/bytes.h"
#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The progress handler runs every PROGRESS_OPS virtual-machine instructions. */
#define PROGRESS_OPS 10000

struct rn_query {
    rn_sql_t         *sql;
    rn_query_send_fn  send;
    void             *arg;
    rn_buf_t          chunk;        /* encoded rows (QueryResponse field 2) */
    size_t            nrows;
    int               send_failed;
    char              err[RN_ERRMSG_SIZE];   /* a row callback failure */
    /* budgets (invariant 4) */
    uint64_t          max_steps, max_rows;
    uint64_t          steps;        /* instructions of the current step, about */
    uint64_t          rows;         /* rows delivered so far */
    int               over_steps;   /* the progress handler interrupted the step */
};

/* ---- protobuf wire format ----------------------------------------------------- */

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF) without
 * NUL bytes (protobuf-c hands strings to C clients NUL-terminated). */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == 0) return 0;
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (n - i <= k) return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* Value: field number and wire type of its oneof member, and its size. */
static size_t value_size(const rn_sql_value_t *v)
{
    switch (v->type) {
    case RN_SQL_INT: return 1 + rn_uvarint_size((uint64_t)v->i);
    case RN_SQL_REAL: return 9;
    case RN_SQL_TEXT: case RN_SQL_BLOB: return 1 + rn_uvarint_size(v->n) + v->n;
    default: return 2;
    }
}

static uint8_t *put_value(uint8_t *p, const rn_sql_value_t *v)
{
    switch (v->type) {
    case RN_SQL_INT:
        *p++ = 0x10;                                 /* integer = 2, varint */
        return rn_uvarint_put(p, (uint64_t)v->i);
    case RN_SQL_REAL: {
        uint64_t bits;
        memcpy(&bits, &v->d, sizeof bits);
        *p++ = 0x19;                                 /* real = 3, fixed64 */
        for (int i = 0; i < 8; i++) *p++ = (uint8_t)(bits >> (8 * i));
        return p;
    }
    case RN_SQL_TEXT: case RN_SQL_BLOB: {
        int text = v->type == RN_SQL_TEXT && utf8_valid((const uint8_t *)v->s, v->n);
        *p++ = text ? 0x22 : 0x2a;                   /* text = 4 / blob = 5, bytes */
        p = rn_uvarint_put(p, v->n);
        if (v->n) memcpy(p, v->s, v->n);
        return p + v->n;
    }
    default:
        *p++ = 0x08;                                 /* null = 1, varint true */
        *p++ = 1;
        return p;
    }
}

/* ---- rows ----------------------------------------------------------------------- */

static int send_chunk(rn_query_t *q)
{
    if (!q->nrows) return 0;
    int r = q->send(q->arg, q->chunk.data, q->chunk.len);
    q->chunk.len = 0;
    q->nrows = 0;
    if (r != 0) {
        q->send_failed = 1;
        return RN_ECLOSED;
    }
    return 0;
}

static int on_row(void *ctx, const rn_sql_value_t *vals, int n)
{
    rn_query_t *q = ctx;
    if (q->max_rows && q->rows >= q->max_rows)
        return rn_errf(q->err, RN_ETOOBIG, "the query reached this broker's limit of %llu "
                       "result rows (runneld --query-max-rows); add a LIMIT or a narrower WHERE",
                       (unsigned long long)q->max_rows);
    q->rows++;
    size_t row = 0;
    for (int i = 0; i < n; i++) {
        size_t vs = value_size(&vals[i]);
        row += 1 + rn_uvarint_size(vs) + vs;
    }
    size_t need = 1 + rn_uvarint_size(row) + row;
    if (q->chunk.len + need > RN_QUERY_MSG_MAX) {
        int rc = send_chunk(q);
        if (rc != 0) return rc;
        if (need > RN_QUERY_MSG_MAX)
            return rn_errf(q->err, RN_ETOOBIG, "a result row of %zu bytes is larger than the "
                           "%u-byte message limit", need, RN_QUERY_MSG_MAX);
    }
    if (rn_buf_reserve(&q->chunk, need, 0) != 0)
        return rn_errf(q->err, -ENOMEM, "out of memory");
    uint8_t *p = q->chunk.data + q->chunk.len;
    *p++ = 0x12;                                     /* rows = 2 */
    p = rn_uvarint_put(p, row);
    for (int i = 0; i < n; i++) {
        *p++ = 0x0a;                                 /* values = 1 */
        p = rn_uvarint_put(p, value_size(&vals[i]));
        p = put_value(p, &vals[i]);
    }
    q->chunk.len = (size_t)(p - q->chunk.data);
    q->nrows++;
    if (q->nrows >= RN_QUERY_CHUNK_ROWS || q->chunk.len >= RN_QUERY_CHUNK_BYTES)
        return send_chunk(q);
    return 0;
}

/* ---- budgets (invariant 4) ------------------------------------------------------ */

static int on_progress(void *ctx)
{
    rn_query_t *q = ctx;
    q->steps += PROGRESS_OPS;
    if (q->steps <= q->max_steps) return 0;
    q->over_steps = 1;
    return 1;                                        /* interrupt the statement */
}

/* ---- the API -------------------------------------------------------------------- */

int rn_query_open(rn_hd_t *h, const Runnel__V1__QueryRequest *req, rn_query_send_fn send,
                  void *arg, rn_query_t **out, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    *out = NULL;
    rn_query_t *q = calloc(1, sizeof *q);
    if (!q) return rn_hd_fail(st, -ENOMEM, "out of memory");
    q->send = send;
    q->arg = arg;
    rn_sql_opts_t o;
    rn_sql_opts_default(&o);
    o.row = on_row;
    o.ctx = q;
    o.follow = req->follow;
    const char *sql = req->sql ? req->sql : "";
    int rc = 0;
    if (req->from && req->from[0]) rc = rn_sql_parse_from(req->from, &o, err);
    int erroff = -1;
    if (rc == 0) rc = rn_sql_open(rn_hd_datadir(h), sql, strlen(sql), &o, &q->sql, &erroff, err);
    if (rc != 0) {
        free(q);
        if (erroff < 0) return rn_hd_fail(st, rc, err);
        /* the prefix first: a message near RN_ERRMSG_SIZE loses its tail, never the offset */
        char msg[RN_ERRMSG_SIZE];
        const char *what = err[0] ? err : rn_strerror(rc);
        int k = snprintf(msg, sizeof msg, "at offset %d: ", erroff);
        size_t n = strlen(what), room = sizeof msg - (size_t)k - 1;
        if (n > room) n = room;
        memcpy(msg + k, what, n);
        msg[(size_t)k + n] = '\0';
        return rn_hd_fail(st, rc, msg);
    }
    q->max_steps = rn_hd_opts(h)->query_max_steps;
    q->max_rows = rn_hd_opts(h)->query_max_rows;
    if (q->max_steps) rn_sql_progress(q->sql, PROGRESS_OPS, on_progress, q);
    *out = q;
    return 0;
}

int rn_query_header(rn_query_t *q, rn_buf_t *out, rn_status_t *st)
{
    const rn_sql_column_t *cols;
    int n;
    rn_sql_columns(q->sql, &cols, &n);
    Runnel__V1__QueryResponse m = RUNNEL__V1__QUERY_RESPONSE__INIT;
    char **names = calloc((size_t)n + 1, sizeof *names);
    protobuf_c_boolean *is_time = calloc((size_t)n + 1, sizeof *is_time);
    int rc = -ENOMEM;
    if (!names || !is_time) goto out;
    for (int i = 0; i < n; i++) {
        names[i] = (char *)cols[i].name;
        is_time[i] = cols[i].is_time != 0;
    }
    m.n_columns = m.n_column_is_time = (size_t)n;
    m.columns = names;
    m.column_is_time = is_time;
    out->len = 0;
    size_t size = protobuf_c_message_get_packed_size(&m.base);
    if ((rc = rn_buf_reserve(out, size + 1, 0)) != 0) goto out;
    out->len = protobuf_c_message_pack(&m.base, out->data);
out:
    free(names);
    free(is_time);
    return rc == 0 ? 0 : rn_hd_fail(st, rc, "out of memory");
}

void rn_query_wait(rn_query_t *q, uint32_t ms)
{
    rn_sql_wait(q->sql, ms);
}

int rn_query_step(rn_query_t *q, rn_sql_state_t *state, rn_status_t *st)
{
    char err[RN_ERRMSG_SIZE] = "";
    q->err[0] = '\0';
    q->steps = 0;
    int rc = rn_sql_step(q->sql, state, err);
    if (rc == 0) return 0;
    if (q->send_failed) return rn_hd_fail(st, RN_ECLOSED, "the client went away");
    if (q->over_steps) {
        char msg[RN_ERRMSG_SIZE];
        snprintf(msg, sizeof msg, "the query ran more than %llu virtual-machine instructions in "
                 "one step (one batch, or a whole statement), this broker's limit (runneld "
                 "--query-max-steps); simplify it (a recursive CTE that never ends?) or raise "
                 "the limit", (unsigned long long)q->max_steps);
        return rn_hd_fail(st, RN_ETOOBIG, msg);
    }
    return rn_hd_fail(st, rc, q->err[0] ? q->err : err);
}

size_t rn_query_pending(const rn_query_t *q) { return q->nrows; }

int rn_query_flush(rn_query_t *q, rn_status_t *st)
{
    if (send_chunk(q) != 0) return rn_hd_fail(st, RN_ECLOSED, "the client went away");
    return 0;
}

int rn_query_trailer(rn_query_t *q, rn_buf_t *out, rn_status_t *st)
{
    rn_sql_stats_t s;
    rn_sql_stats(q->sql, &s);
    Runnel__V1__QueryResponse m = RUNNEL__V1__QUERY_RESPONSE__INIT;
    Runnel__V1__QueryStats qs = RUNNEL__V1__QUERY_STATS__INIT;
    qs.records_in = s.records;
    qs.rows_out = s.rows;
    qs.late = s.late;
    qs.errors = s.errors;
    qs.watermark_ms = s.watermark;
    if (s.errors) {
        /* proto3 strings must be UTF-8; the reason may quote record bytes */
        if (!utf8_valid((const uint8_t *)s.first_error, strlen(s.first_error)))
            for (char *p = s.first_error; *p; p++)
                if ((unsigned char)*p >= 0x80) *p = '?';
        qs.first_error = s.first_error;
    }
    m.stats = &qs;
    out->len = 0;
    size_t size = protobuf_c_message_get_packed_size(&m.base);
    int rc = rn_buf_reserve(out, size + 1, 0);
    if (rc != 0) return rn_hd_fail(st, rc, "out of memory");
    out->len = protobuf_c_message_pack(&m.base, out->data);
    return 0;
}

void rn_query_cancel(rn_query_t *q) { rn_sql_cancel(q->sql); }

const char *rn_query_source(rn_query_t *q)
{
    const char *t = NULL;
    uint32_t nq = 0;
    rn_sql_source(q->sql, &t, &nq);
    return t ? t : "";
}

void rn_query_close(rn_query_t *q)
{
    if (!q) return;
    rn_sql_close(q->sql);
    rn_buf_free(&q->chunk);
    free(q);
}

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
 *     the row callback (a resumable aggregating query: after the step that
 *     filled it, and before RN_QUERY_MSG_MAX; invariant 5); a single row larger than RN_QUERY_MSG_MAX stops the
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
 *  5. Resuming (QueryRequest.resumable / .resume): a token names the point
 *     just after the last row handed to the send callback as (S, Q, K): the
 *     engine state S saved before the current step (rn_sql_state_save), the
 *     source queue Q that step read, and the K rows it has produced so far;
 *     plus the bounded ends per queue and a hash of the statement. Every
 *     rows message carries the token of its last row (the whole pending
 *     chunk is sent, so "the last row made" is "the last row sent"). A
 *     resumed query loads S, reads Q first (rn_sql_prefer_queue, again
 *     before each step while rows remain to skip) and drops its first K
 *     rows. That is exact because S holds everything that decides later
 *     rows (sql.h, checkpoints), a queue's records come in offset order, and
 *     the rows made while reading a run of one queue's records do not
 *     depend on how those records were batched (sql.c invariant 8); which
 *     queue comes after Q may differ, but only rows after the token.
 *     An aggregating query's state (its open windows) can be large, so it
 *     is not saved before every step: such a query (`lazy`) sends rows only
 *     at step boundaries (a full chunk after the step that filled it, and
 *     the flushes), saving S there with K = 0; one step's rows then stay
 *     in memory until it ends, up to RN_QUERY_MSG_MAX (past it they are
 *     sent and resuming ends). Not resumable: metadata statements, WITH
 *     idle_timeout (wall-clock windows), and a state larger than
 *     RN_QUERY_RESUME_MAX (the header or the next message then says so in
 *     not_resumable).
 */
#include "server/query.h"

#include "batch/crc32c.h"
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
    /* resuming (invariant 5) */
    int               resumable;    /* tokens are sent */
    int               lazy;         /* aggregating: messages only at step boundaries */
    char              not_resumable[RN_ERRMSG_SIZE];  /* why not, when asked for */
    int               tell_lost;    /* the next message says not_resumable */
    uint64_t          hash;         /* of the statement */
    uint32_t          nq;
    int64_t          *ends;         /* per source queue: the bounded end, -1 following */
    rn_buf_t          pre;          /* S: the engine state before the current step */
    uint64_t          step_rows;    /* K: rows the current step made so far */
    uint64_t          skip;         /* rows still to drop after a resume */
    uint32_t          skip_queue;   /* the queue they come from */
    rn_buf_t          tok;          /* scratch: the token being sent */
};

#define TOKEN_MAGIC 0x31525152u     /* "RQR1" */
/* magic, crc, hash, queue, nq, skip */
#define TOKEN_HEAD  (4 + 4 + 8 + 4 + 4 + 8)

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

/* ---- resume tokens (invariant 5) ------------------------------------------------- */

/* FNV-1a over the statement text and its follow flag. */
static uint64_t stmt_hash(const char *sql, int follow)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = sql; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return (h ^ (uint8_t)(follow ? 1 : 0)) * 0x100000001b3ull;
}

/* The token for "after every row made so far" into q->tok. */
static int build_token(rn_query_t *q)
{
    uint32_t queue = rn_sql_batch_queue(q->sql);
    if (queue == UINT32_MAX) queue = q->skip_queue;      /* resumed, not stepped yet */
    if (!q->step_rows) queue = UINT32_MAX;
    size_t n = TOKEN_HEAD + (size_t)q->nq * 8 + q->pre.len;
    q->tok.len = 0;
    if (rn_buf_reserve(&q->tok, n, 0) != 0) return -ENOMEM;
    uint8_t *p = q->tok.data;
    uint32_t magic = TOKEN_MAGIC, crc = 0;
    memcpy(p, &magic, 4);
    memcpy(p + 8, &q->hash, 8);
    memcpy(p + 16, &queue, 4);
    memcpy(p + 20, &q->nq, 4);
    memcpy(p + 24, &q->step_rows, 8);
    if (q->nq) memcpy(p + TOKEN_HEAD, q->ends, (size_t)q->nq * 8);
    if (q->pre.len) memcpy(p + TOKEN_HEAD + (size_t)q->nq * 8, q->pre.data, q->pre.len);
    crc = rn_crc32c(0, p + 8, n - 8);
    memcpy(p + 4, &crc, 4);
    q->tok.len = n;
    return 0;
}

/* S for the coming step (invariant 5); a state over the limit ends resuming. */
static void save_pre(rn_query_t *q)
{
    char err[RN_ERRMSG_SIZE] = "";
    q->pre.len = 0;
    q->step_rows = 0;
    int rc = rn_sql_state_save(q->sql, &q->pre, err);
    if (rc == 0 && q->pre.len > RN_QUERY_RESUME_MAX)
        snprintf(err, sizeof err, "the query's state grew past %u bytes (its open windows), "
                 "too large to resume from", RN_QUERY_RESUME_MAX);
    else if (rc == 0)
        return;
    q->resumable = 0;
    q->tell_lost = 1;
    snprintf(q->not_resumable, sizeof q->not_resumable, "%s", err[0] ? err : rn_strerror(rc));
    rn_buf_free(&q->pre);
}

/* Resume from token t (invariant 5): before the first step. */
static int resume_load(rn_query_t *q, const uint8_t *t, size_t n, uint64_t hash, char *err)
{
    uint32_t magic, crc, queue, nq;
    uint64_t h, skip;
    if (n < TOKEN_HEAD) goto damaged;
    memcpy(&magic, t, 4);
    memcpy(&crc, t + 4, 4);
    memcpy(&h, t + 8, 8);
    memcpy(&queue, t + 16, 4);
    memcpy(&nq, t + 20, 4);
    memcpy(&skip, t + 24, 8);
    if (magic != TOKEN_MAGIC || crc != rn_crc32c(0, t + 8, n - 8)) goto damaged;
    if (h != hash)
        return rn_errf(err, RN_EINVAL, "cannot resume: the resume token belongs to another "
                       "statement (the SQL text and --follow must be the same)");
    if (nq != q->nq)
        return rn_errf(err, RN_EINVAL, "cannot resume: the source topic now has %u queue(s), "
                       "the query had %u", q->nq, nq);
    if ((n - TOKEN_HEAD) / 8 < nq || (queue != UINT32_MAX && queue >= nq)) goto damaged;
    for (uint32_t i = 0; i < nq; i++) {
        int64_t end;
        memcpy(&end, t + TOKEN_HEAD + (size_t)i * 8, 8);
        int rc = rn_sql_set_end(q->sql, i, end, err);
        if (rc != 0) return rc;
        q->ends[i] = end;
    }
    size_t off = TOKEN_HEAD + (size_t)nq * 8;
    char why[RN_ERRMSG_SIZE] = "";
    int rc = rn_sql_state_load(q->sql, t + off, n - off, why);
    if (rc == RN_ERANGE)
        return rn_errf(err, rc, "cannot resume: the topic no longer holds the records from "
                       "where the query was (deleted by retention, or the topic recreated): %s",
                       why);
    /* a state that does not load is the client's token, not the broker's store */
    if (rc != 0) return rn_errf(err, rc == RN_ECORRUPT ? RN_EINVAL : rc, "cannot resume: %s", why);
    if (queue != UINT32_MAX && (rc = rn_sql_prefer_queue(q->sql, queue, err)) != 0) return rc;
    q->skip = skip;
    q->skip_queue = queue;
    return 0;
damaged:
    return rn_errf(err, RN_EINVAL, "cannot resume: the resume token is damaged");
}

/* ---- rows ----------------------------------------------------------------------- */

/* Append a length-delimited field to the chunk. */
static int chunk_field(rn_query_t *q, uint8_t tag, const void *p, size_t n)
{
    if (rn_buf_reserve(&q->chunk, 1 + 10 + n, 0) != 0) return -ENOMEM;
    uint8_t *w = q->chunk.data + q->chunk.len;
    *w++ = tag;
    w = rn_uvarint_put(w, n);
    if (n) memcpy(w, p, n);
    q->chunk.len = (size_t)(w + n - q->chunk.data);
    return 0;
}

static int send_chunk(rn_query_t *q)
{
    if (!q->nrows) return 0;
    int rc = 0;
    if (q->resumable && q->lazy) save_pre(q);            /* at a step boundary: K = 0 */
    if (q->resumable) {                                  /* resume = 5 (invariant 5) */
        if ((rc = build_token(q)) == 0) rc = chunk_field(q, 0x2a, q->tok.data, q->tok.len);
    } else if (q->tell_lost) {                           /* not_resumable = 6 */
        rc = chunk_field(q, 0x32, q->not_resumable, strlen(q->not_resumable));
        q->tell_lost = 0;
    }
    if (rc != 0) {
        q->chunk.len = 0;
        q->nrows = 0;
        return rc;
    }
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
    q->step_rows++;
    if (q->skip) {                                   /* sent before the resume */
        q->skip--;
        return 0;
    }
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
        if (q->resumable && q->lazy) {               /* mid-step: no token can name this */
            q->resumable = 0;
            q->tell_lost = 1;
            snprintf(q->not_resumable, sizeof q->not_resumable, "one step made more than "
                     "%u bytes of rows", RN_QUERY_MSG_MAX);
        }
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
    if (q->resumable && q->lazy) return 0;           /* sent after the step (rn_query_step) */
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

/* Tokens asked for or given (invariant 5): set up q, load a given token. */
static int resume_open(rn_query_t *q, const Runnel__V1__QueryRequest *req, const char *sql,
                       char *err)
{
    char why[RN_ERRMSG_SIZE] = "";
    if (rn_sql_resumable(q->sql, why) != 0) {
        if (req->resume.len)
            return rn_errf(err, RN_EINVAL, "cannot resume: %s", why);
        snprintf(q->not_resumable, sizeof q->not_resumable, "%s", why);
        return 0;
    }
    const char *topic;
    rn_sql_source(q->sql, &topic, &q->nq);
    q->ends = calloc(q->nq ? q->nq : 1, sizeof *q->ends);
    if (!q->ends) return rn_errf(err, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < q->nq; i++) {
        int rc = rn_sql_end(q->sql, i, &q->ends[i], err);
        if (rc != 0) return rc;
    }
    q->hash = stmt_hash(sql, req->follow);
    q->lazy = rn_sql_aggregates(q->sql);
    q->skip_queue = UINT32_MAX;
    if (req->resume.len) {
        int rc = resume_load(q, req->resume.data, req->resume.len, q->hash, err);
        if (rc != 0) return rc;
    }
    q->resumable = 1;
    return 0;
}

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
    o.remote = 1;                   /* a file table is not created over the network */
    const char *sql = req->sql ? req->sql : "";
    int rc = 0, resume = req->resume.len > 0;
    /* resuming: the token holds the positions; the original start may be gone */
    if (!resume && req->from && req->from[0]) rc = rn_sql_parse_from(req->from, &o, err);
    int erroff = -1;
    if (rc == 0) rc = rn_sql_open(rn_hd_datadir(h), sql, strlen(sql), &o, &q->sql, &erroff, err);
    if (rc == 0 && (req->resumable || resume)) rc = resume_open(q, req, sql, err);
    if (rc != 0) {
        rn_query_close(q);
        if (resume) return rn_hd_fail(st, rc, err);
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
    if (q->resumable) {
        save_pre(q);
        /* a resumed query's first token is the one it was given: the rows
         * to skip were delivered already */
        q->step_rows = q->skip;
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
    if (q->resumable) {
        if ((rc = build_token(q)) != 0) goto out;
        m.resume.data = q->tok.data;
        m.resume.len = q->tok.len;
    } else if (q->not_resumable[0]) {
        m.not_resumable = q->not_resumable;
    }
    rc = -ENOMEM;
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
    if (q->resumable && !q->lazy) {
        /* S only changes when a step read a batch or made rows (an idle
         * poll of a following query leaves it as it was) */
        if (q->step_rows || rn_sql_batch_queue(q->sql) != UINT32_MAX || !q->pre.len) save_pre(q);
    }
    if (q->skip && q->skip_queue != UINT32_MAX &&
        rn_sql_prefer_queue(q->sql, q->skip_queue, err) != 0)
        return rn_hd_fail(st, RN_EINVAL, err);
    int rc = rn_sql_step(q->sql, state, err);
    /* a lazy message carries the whole state: rows at least as large as the
     * last state saved, so the state is at most half of what goes */
    if (rc == 0 && q->resumable && q->lazy &&
        ((q->nrows >= RN_QUERY_CHUNK_ROWS && q->chunk.len >= q->pre.len) ||
         q->chunk.len >= RN_QUERY_CHUNK_BYTES) &&
        send_chunk(q) != 0)
        return rn_hd_fail(st, RN_ECLOSED, "the client went away");
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

int rn_query_changes_metadata(rn_query_t *q) { return rn_sql_changes_metadata(q->sql); }

const char *rn_query_source(rn_query_t *q)
{
    const char *t = NULL;
    uint32_t nq = 0;
    rn_sql_source(q->sql, &t, &nq);
    return t ? t : "";
}

const char *rn_query_join_source(rn_query_t *q) { return rn_sql_join_source(q->sql); }

void rn_query_close(rn_query_t *q)
{
    if (!q) return;
    rn_sql_close(q->sql);
    rn_buf_free(&q->chunk);
    rn_buf_free(&q->pre);
    rn_buf_free(&q->tok);
    free(q->ends);
    free(q);
}

/*
 * query.h — the Query RPC without gRPC: a QueryRequest opened on the
 * broker's data directory with the stream-SQL engine (streamsql/sql.h), its
 * result encoded as QueryResponse messages (proto/runnel.proto): the header
 * (columns), chunks of rows, the trailer (statistics). The gRPC front
 * (server.c) runs each query on its own worker thread and sends what this
 * module hands it.
 *
 * Rows are encoded straight into the pending chunk as they arrive; when it
 * reaches RN_QUERY_CHUNK_ROWS rows or RN_QUERY_CHUNK_BYTES bytes it is given
 * to the send callback at once (inside rn_query_step), so a query holds at
 * most one chunk (plus one row) in memory whatever its result size (a
 * resumable aggregating query: one step's rows, at most RN_QUERY_MSG_MAX).
 *
 * With QueryRequest.resumable every message carries a resume token (the
 * point after its last row); QueryRequest.resume continues from one, with
 * no row lost or repeated (query.c invariant 5).
 *
 * Threading: one thread uses a query, except rn_query_cancel (any thread).
 */
#ifndef RN_QUERY_H
#define RN_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "proto/runnel.pb-c.h"
#include "server/handlers.h"
#include "server/status.h"
#include "streamsql/sql.h"

#define RN_QUERY_CHUNK_ROWS  1000
#define RN_QUERY_CHUNK_BYTES (256u << 10)
#define RN_QUERY_MSG_MAX     (64u << 20)    /* one message; a larger row is refused */
#define RN_QUERY_RESUME_MAX  (8u << 20)     /* a resume token's engine state, at most */

/* Send one packed QueryResponse (msg[0..n), borrowed for the call). Blocks
 * until the transport took it; non-zero stops the query (client gone). */
typedef int (*rn_query_send_fn)(void *arg, const uint8_t *msg, size_t n);

typedef struct rn_query rn_query_t;

/* Open req on h's data directory. -1 with st when the statement cannot
 * start: the engine's message, prefixed with "at offset N: " when it knows
 * the offending byte of req->sql (the contract in runnel.proto). */
int  rn_query_open(rn_hd_t *h, const Runnel__V1__QueryRequest *req, rn_query_send_fn send,
                   void *arg, rn_query_t **out, rn_status_t *st);
/* The header message (column names and time flags) into out (emptied first). */
int  rn_query_header(rn_query_t *q, rn_buf_t *out, rn_status_t *st);
/* One engine step (rn_sql_step); full chunks are sent from inside. -1 with
 * st on an engine error or when the send callback refused. */
int  rn_query_step(rn_query_t *q, rn_sql_state_t *state, rn_status_t *st);
/* After IDLE: wait at most ms for a source record (rn_sql_wait). */
void rn_query_wait(rn_query_t *q, uint32_t ms);
/* Rows waiting in the chunk. */
size_t rn_query_pending(const rn_query_t *q);
/* Send the pending rows now (nothing when there are none). */
int  rn_query_flush(rn_query_t *q, rn_status_t *st);
/* The trailer message (statistics) into out (emptied first). */
int  rn_query_trailer(rn_query_t *q, rn_buf_t *out, rn_status_t *st);
/* The topic the statement reads (borrowed until close), or "" when it reads
 * none (SHOW STREAMS); known once open, before any record is read. */
/* The statement changes the metadata store (CREATE/DROP STREAM, FUNCTION). */
int rn_query_changes_metadata(rn_query_t *q);
const char *rn_query_source(rn_query_t *q);
/* The topic of the table the query joins, NULL when none (rn_sql_join_source). */
const char *rn_query_join_source(rn_query_t *q);
/* Make the next step DONE (any thread, async-signal-safe). */
void rn_query_cancel(rn_query_t *q);
void rn_query_close(rn_query_t *q);     /* NULL is a no-op */

#endif

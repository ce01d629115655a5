/*
 * sql.h — the stream-SQL engine: one statement of the streamsql dialect
 * (DESIGN.md §6) run over the topics of an embedded data directory, result
 * rows delivered through a callback. The same API serves the `streamsql`
 * command line, the broker (a query streamed to a gRPC client) and, later,
 * the ETL pipelines.
 *
 *   rn_sql_opts_t o;
 *   rn_sql_opts_default(&o);
 *   o.row = print_row; o.ctx = out;                 // rows arrive here
 *   rn_sql_t *q;
 *   if (rn_sql_open(d, "SELECT ...", &o, &q, &erroff, err) == 0) {
 *       rn_sql_columns(q, &cols, &ncols);            // names, known before any row
 *       rc = rn_sql_run(q, err);                     // or rn_sql_step() in a loop
 *       rn_sql_close(q);
 *   }
 *
 * Statements: SELECT (plain, or aggregating with GROUP BY TUMBLE/HOP/SESSION
 * and keys, HAVING, EMIT FINAL|CHANGES, LIMIT, a trailing WITH (watermark,
 * idle_timeout, late)), EXPLAIN SELECT, CREATE STREAM, DROP STREAM, SHOW
 * STREAMS, DESCRIBE name, CREATE FUNCTION, DROP FUNCTION, SHOW FUNCTIONS,
 * CREATE TABLE [AS SELECT ... GROUP BY key], DROP TABLE, SHOW TABLES, and a
 * SELECT over a table (a pull query: answers once, sql.c invariant 10).
 * rn_sql_split cuts a script into statements.
 *
 * Results do not depend on how the records were batched (sql.c invariant
 * 8): over one source queue the rows are the same, in the same order, for
 * any batching; over several, rows of different queues may interleave
 * differently. EMIT CHANGES emits one row per input row that changed a
 * group (a HOP row: one per window it entered), in input order. A global
 * aggregate without keys has one row even when no row matched. SELECT
 * DISTINCT emits each distinct row once, when first seen, in input order
 * (an aggregating query for rn_sql_aggregates; its set of seen rows grows
 * with the distinct values and is part of the saved state).
 *
 * States: rn_sql_open parses, resolves the stream, prepares the sqlite
 * statements and assigns the consumer (nothing is read or written yet):
 * OPEN. rn_sql_step does one unit of work (one batch, an idle check, or the
 * whole of a metadata statement) and reports MORE / IDLE / DONE; once DONE,
 * further steps do nothing. rn_sql_cancel (any thread) makes the next step
 * DONE without closing windows. rn_sql_close frees everything in any state.
 *
 * Threading: a query is used by one thread at a time, except rn_sql_cancel
 * and rn_sql_stats' counters, which may be read from another thread (the
 * counters are plain integers: a racing read may be stale, never torn on the
 * supported 64-bit targets). The data directory handle may be shared with
 * other threads (the consumer takes its locks); metadata statements run
 * under rn_datadir_meta_lock.
 */
#ifndef RN_SQL_H
#define RN_SQL_H

#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "common/buf.h"
#include "common/error.h"
#include "logical-queues/datadir.h"

/* Limits (the front checks them before sqlite does, with clear messages). */
#define RN_SQL_MAX_SQL_LEN     100000   /* bytes of one statement */
#define RN_SQL_MAX_DEPTH       100      /* parentheses and sqlite expression depth */
#define RN_SQL_MAX_FIELDS      60       /* declared fields of a stream */
#define RN_SQL_MAX_NAME        63       /* a stream or field name */
#define RN_SQL_MAX_KEYS        16       /* GROUP BY keys besides the window */
#define RN_SQL_MAX_AGGS        32       /* distinct aggregate calls of a query */
#define RN_SQL_MAX_HOPS        1000     /* HOP size / slide: windows per row */

typedef enum rn_sql_type {
    RN_SQL_NULL = 0, RN_SQL_INT, RN_SQL_REAL, RN_SQL_TEXT, RN_SQL_BLOB
} rn_sql_type_t;

/* One result value: a view valid during the row callback only. */
typedef struct rn_sql_value {
    rn_sql_type_t type;
    int64_t       i;        /* RN_SQL_INT */
    double        d;        /* RN_SQL_REAL */
    const char   *s;        /* RN_SQL_TEXT (UTF-8, not NUL-terminated) / _BLOB */
    size_t        n;
} rn_sql_value_t;

/* A result column. is_time: the value is a time in ms since the epoch
 * (window_start, window_end), which a table display may render as a date;
 * csv and json keep the integer. */
typedef struct rn_sql_column {
    const char *name;
    int         is_time;
} rn_sql_column_t;

/* Return 0 to continue, non-zero to stop the query (rn_sql_step then
 * returns that value as the error, negative codes kept, others as
 * RN_ECLOSED), e.g. when the client went away. */
typedef int (*rn_sql_row_fn)(void *ctx, const rn_sql_value_t *vals, int n);

/* A record the engine rejected (not JSON, a mistyped or missing field):
 * its queue, the record (a view valid during the call: r->offset is its
 * offset) and why. Return 0 to continue, non-zero to stop as for rows. */
typedef int (*rn_sql_reject_fn)(void *ctx, uint32_t queue, const rn_record_t *r,
                                const char *why);

typedef enum rn_sql_start { RN_SQL_FROM_EARLIEST, RN_SQL_FROM_LATEST, RN_SQL_FROM_TIME,
                            RN_SQL_FROM_CHECKPOINT } rn_sql_start_t;

typedef struct rn_sql_opts {
    rn_sql_row_fn row;          /* may be NULL: rows are counted, not delivered */
    void         *ctx;
    int           follow;       /* continuous: never DONE by reaching the end */
    rn_sql_start_t from;
    int64_t       from_ms;      /* RN_SQL_FROM_TIME */
    const char   *checkpoint;   /* RN_SQL_FROM_CHECKPOINT: checkpoint:NAME's NAME */
    uint32_t      poll_ms;      /* rn_sql_run's sleep when IDLE (default 20) */
    rn_sql_reject_fn reject;    /* may be NULL: rejected records are only counted */
    int           key_order;    /* windows closing together in (end, start, key bytes)
                                   order rather than (end, start, first-seen): independent
                                   of how queues interleave (pipelines set it) */
    int           skip_damaged; /* go past offsets a store recovery marked damaged or
                                   lost (counted in stats.skipped); else their read is
                                   the query's error */
    int           table_at_save;/* --follow with a joined table: the table catches up
                                   only in rn_sql_state_save (pipelines set it, so a
                                   restored run sees the table the saved one saw), not
                                   before every batch */
    int           remote;       /* the statement came over the network: CREATE TABLE
                                   over a file is refused (runneld sets it) */
} rn_sql_opts_t;

/* Parse a time into ms since the epoch. fmt NULL, "", "iso8601" or "rfc3339":
 * ISO-8601 / RFC 3339 (YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z|+hh:mm|-hhmm], UTC
 * when no offset is given, fractions kept to the ms); else a strptime-style
 * pattern (UTC unless it has %z; %f reads fractional seconds). RN_EINVAL
 * with why saying what did not parse. (fn.c) */
int  rn_sql_parse_time(const char *s, size_t n, const char *fmt, int64_t *ms, char *why);
/* Is fmt an accepted timestamp format ("iso8601", or a pattern with a %)? */
int  rn_sql_check_time_format(const char *fmt, char *why);

void rn_sql_opts_default(rn_sql_opts_t *o);

/* Parse "earliest" | "latest" | "@TIMESTAMP_MS" | "checkpoint:NAME" into o
 * (o->checkpoint then points into s). RN_EINVAL with errmsg. */
int rn_sql_parse_from(const char *s, rn_sql_opts_t *o, char *errmsg);

typedef struct rn_sql rn_sql_t;

/* Open one statement (sql[0..len), without its ';'). On failure errmsg says
 * what and *erroff (may be NULL) is the byte offset in sql of the offending
 * token, or -1 when unknown. Errors: RN_EINVAL (syntax, unknown column,
 * unsupported clause, bad interval, ...), RN_ENOTFOUND (unknown stream or
 * topic, listing the ones that exist), RN_ETOOBIG (SQL length, depth), and
 * what reading the metadata or assigning the consumer may return. */
int  rn_sql_open(rn_datadir_t *d, const char *sql, size_t len, const rn_sql_opts_t *o,
                 rn_sql_t **out, int *erroff, char *errmsg);

/* The result columns, borrowed until rn_sql_close. */
void rn_sql_columns(rn_sql_t *q, const rn_sql_column_t **cols, int *n);

typedef enum rn_sql_state { RN_SQL_MORE = 1, RN_SQL_IDLE = 2, RN_SQL_DONE = 3 } rn_sql_state_t;

/* One unit of work; rows go to the callback. *state: MORE (call again),
 * IDLE (following, nothing new now: call again later), DONE. Negative on
 * an error (the query is then DONE). */
int  rn_sql_step(rn_sql_t *q, rn_sql_state_t *state, char *errmsg);
/* After IDLE: block until a record may have arrived at the statement's
 * sources (an append to its data directory was acknowledged for readers) or
 * ms passed; an append between the step and this call is not slept through.
 * 1 woken by an append, 0 at the timeout. */
int  rn_sql_wait(rn_sql_t *q, uint32_t ms);
/* Step until DONE, waiting (rn_sql_wait, at most poll_ms) when IDLE. */
int  rn_sql_run(rn_sql_t *q, char *errmsg);
/* Ask the query to stop (async-signal-safe, any thread): a statement running
 * inside the current step is interrupted (sqlite3_interrupt; the step fails
 * with "interrupted"), and the next step is DONE. */
void rn_sql_cancel(rn_sql_t *q);
/* Call fn(ctx) about every n virtual-machine instructions while the query's
 * statements run (sqlite3_progress_handler); a nonzero return interrupts
 * the running statement (the step fails with "interrupted"). For budgets
 * the caller keeps (server/query.c); fn NULL removes it. */
void rn_sql_progress(rn_sql_t *q, int n, int (*fn)(void *), void *ctx);

typedef struct rn_sql_stats {
    uint64_t records;         /* records read from the topic */
    uint64_t rows;            /* result rows delivered */
    uint64_t errors;          /* records rejected: mistyped field, not JSON, ... */
    uint64_t late;            /* rows older than a closed window (counted, dropped) */
    uint64_t windows;         /* windows (groups) emitted or still open */
    uint64_t target;          /* bounded: records between start and end at open */
    int64_t  watermark;       /* INT64_MIN before the first row */
    uint64_t skipped;         /* damaged or lost offsets gone past (skip_damaged) */
    uint64_t join_rows;       /* stream-stream join: records buffered now (both sides) */
    char     first_error[RN_ERRMSG_SIZE];   /* the first rejected record, why */
} rn_sql_stats_t;

void rn_sql_stats(rn_sql_t *q, rn_sql_stats_t *out);

/* Is this statement producing rows from a topic (SELECT), as opposed to a
 * metadata statement or EXPLAIN? (Progress displays use it.) */
int  rn_sql_is_query(rn_sql_t *q);
/* Does this statement change the metadata store (CREATE/DROP STREAM or
 * FUNCTION)? The broker asks for more rights to run those. */
int  rn_sql_changes_metadata(rn_sql_t *q);

void rn_sql_close(rn_sql_t *q);    /* NULL is a no-op */

/* ---- checkpoints (the ETL pipelines' exactly-once) -------------------------
 *
 * A SELECT's state between two steps: per source queue the next offset to
 * read and the event-time frontier bookkeeping, the stats counters, the
 * watermark and the whole window state (window.c invariant 5). Restoring it
 * into a freshly opened query of the same text over the same topic, before
 * its first step, makes the query continue exactly as the saved one would
 * have: same rows, same order (rows of one source queue in offset order;
 * batches of different queues in the same round-robin order when the data
 * is already there;
 * windows closing together by (end, start, key bytes) with o.key_order),
 * provided the topic
 * still holds the records from the saved offsets on. Not the idle timeout:
 * it closes windows by wall-clock time.
 *
 * Format (host byte order: state is local to one data directory):
 *   u32 magic "RNS1" | u32 nq | u32 next queue of the round-robin | u8 has_window | u64 records, rows, errors,
 *   late, windows | i64 watermark | nq x { i64 next_offset, i64 max_event_ts,
 *   u8 live, u8 done } | u32 window_len | window_len bytes (window.c)
 */

/* Append the state to out (the caller owns out). RN_EINVAL for a statement
 * that is not a SELECT over a topic. */
int  rn_sql_state_save(rn_sql_t *q, rn_buf_t *out, char *errmsg);
/* Restore saved state; only before the first rn_sql_step (RN_EINVAL after).
 * RN_ECORRUPT when damaged or saved by another query shape; RN_EINVAL when
 * the source's queue count changed; RN_ERANGE when an offset is no longer
 * in the topic (retention). */
int  rn_sql_state_load(rn_sql_t *q, const uint8_t *p, size_t n, char *errmsg);
/* The source topic (borrowed until close) and its queue count. A
 * stream-stream join's source is both streams as one: the left's topic, and
 * nq counts the left's queues then the right's (queue nl + i is the right
 * stream's queue i), for rn_sql_position, _batch_queue, _prefer_queue and
 * the reject callback; rn_sql_source_queue names each. */
void rn_sql_source(rn_sql_t *q, const char **topic, uint32_t *nq);
/* Source queue i (as numbered above): its topic (borrowed until close) and
 * its queue in that topic; RN_EINVAL when i >= nq. */
int  rn_sql_source_queue(rn_sql_t *q, uint32_t i, const char **topic, uint32_t *queue);
/* The topic of the table a query joins, or of the right side of a
 * stream-stream join (borrowed until close), NULL when it joins none or a
 * file: a caller checking rights on the source checks it too. */
const char *rn_sql_join_source(rn_sql_t *q);
/* The source queue of the batch the last step read (its rows, for a query
 * without aggregation, all come from it); UINT32_MAX when it read none. */
uint32_t rn_sql_batch_queue(rn_sql_t *q);
/* Make the next step read its batch from source queue `queue` when that
 * queue has one (else the round-robin goes on as usual; the caller checks
 * rn_sql_batch_queue). Pipelines use it to replay the order in which a run
 * that crashed read its batches (etl.c). */
int  rn_sql_prefer_queue(rn_sql_t *q, uint32_t queue, char *errmsg);
/* A bounded query's end in source queue `queue`: the high watermark it had
 * at open (-1 when following). */
int  rn_sql_end(rn_sql_t *q, uint32_t queue, int64_t *end, char *errmsg);
/* Set that end (a resumed query reads to the end the first run had, not
 * today's); only before rn_sql_state_load and the first step. */
int  rn_sql_set_end(rn_sql_t *q, uint32_t queue, int64_t end, char *errmsg);
/* 0 when the rows after a saved state depend only on the records read (the
 * broker can resume the statement from it, server/query.c); RN_EINVAL
 * with errmsg saying why not: not a SELECT over a topic, or WITH
 * idle_timeout (windows closed by wall-clock time). */
int  rn_sql_resumable(rn_sql_t *q, char *errmsg);
/* 1 for an aggregating query (rows are windows' results) or a stream-stream
 * join (rows are pairs, emitted as the watermark passes them): its rows do
 * not belong to the batch the step read; else 0. */
int  rn_sql_aggregates(rn_sql_t *q);
/* The next offset the query reads in source queue `queue`. */
int  rn_sql_position(rn_sql_t *q, uint32_t queue, int64_t *offset, char *errmsg);

/* A definition applied idempotently (a pipelines file, a script run again):
 * CREATE STREAM of a stream that exists with the same definition changes
 * nothing (UNCHANGED); with a different one it is RN_EEXIST, errmsg naming
 * what differs and how to apply it; DROP STREAM of a missing stream is
 * ABSENT, not an error. CREATE FUNCTION and DROP FUNCTION likewise (a stored
 * function with another definition: RN_EEXIST). Other statements: RN_EINVAL.
 * Errors as rn_sql_open. */
typedef enum rn_sql_def {
    RN_SQL_DEF_CREATED, RN_SQL_DEF_UNCHANGED, RN_SQL_DEF_DROPPED, RN_SQL_DEF_ABSENT
} rn_sql_def_t;
int  rn_sql_define(rn_datadir_t *d, const char *sql, size_t len, rn_sql_def_t *outcome,
                   int *erroff, char *errmsg);

/* Cut a script into statements at top-level ';' (quotes, comments and
 * parentheses respected). fn gets each non-empty statement's offset and
 * length (without the ';'); a non-zero return stops and is returned. */
int  rn_sql_split(const char *sql, size_t len,
                  int (*fn)(void *ctx, size_t off, size_t n), void *ctx);
/* 1 when text holds at least one complete statement ending in ';' and
 * nothing after it but space and comments (a REPL reads more lines until
 * then); 0 otherwise. */
int  rn_sql_complete(const char *sql, size_t len);
/* --udf-dir DIR: every *.so in dir is a native function library (an sqlite
 * extension: entry point sqlite3_extension_init or sqlite3_<name>_init),
 * loaded on every connection a statement opens from then on. Call once at
 * the start of the process, before any statement or thread. Checked now: a
 * missing or unreadable dir, no *.so in it, or a library sqlite cannot load
 * (no entry point, its init failing) gives an error naming it. Only the
 * operator names the directory: no statement can load a library (SQL's
 * load_extension() stays disabled). rn_sql_udf_dir_clear forgets the list. */
int  rn_sql_udf_dir(const char *dir, char *errmsg);
void rn_sql_udf_dir_clear(void);

/* 0 when sql[0..len) can be a statement's text; RN_EINVAL with errmsg and
 * *erroff (the byte's offset) when it holds a NUL byte, which no statement
 * may (rn_sql_open refuses it the same way). A remote client checks with it
 * before sending: a protobuf string would be cut at the NUL. */
int  rn_sql_check_text(const char *sql, size_t len, int *erroff, char *errmsg);

#endif

/*
 * etl.h — ETL pipelines (DESIGN.md §7): persistent
 *
 *   CREATE PIPELINE name AS INSERT INTO sink SELECT ... FROM source ...
 *     [WITH (checkpoint_interval = '1s', start = 'earliest', dead_letter = 'name.dlq',
 *            queues = 4, <the query's own options: watermark, late, ...>)]
 *
 * sink: a topic name (bare or "quoted"; created when missing, with the
 * source's queue count unless `queues` says otherwise), 'file:PATH' (JSON
 * lines) or 'stdout'. Rows are JSON objects keyed by the query's column
 * names. Definitions and checkpoints live in meta.db (schema version 4).
 * The exactly-once design is described in etl.c's opening comment and
 * etl/README.md.
 *
 *   rn_etl_create(d, "CREATE PIPELINE p AS INSERT INTO out SELECT ...", err);
 *   rn_etl_t *p;
 *   rn_etl_open(d, "p", &p, err);            // restores the last checkpoint
 *   while (!stop) { rn_etl_step(p, &st, err); ... }   // checkpoints by itself
 *   rn_etl_checkpoint(p, err);               // final checkpoint
 *   rn_etl_close(p);
 *
 * Threading: a pipeline handle is used by one thread; several pipelines may
 * share one data directory handle from different threads. rn_etl_stop may be
 * called from any thread or a signal handler.
 */
#ifndef RN_ETL_H
#define RN_ETL_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* rn_etl_status_t, RN_ETL_MAX_QUEUES */
#include "common/error.h"
#include "logical-queues/datadir.h"

struct rn_root;                      /* common/root.h */

#define RN_ETL_DEFAULT_CHECKPOINT_MS 1000

typedef enum rn_etl_sink_kind { RN_ETL_SINK_TOPIC, RN_ETL_SINK_FILE, RN_ETL_SINK_STDOUT }
    rn_etl_sink_kind_t;

/* A parsed CREATE PIPELINE. The select text has the pipeline's options taken
 * out of its trailing WITH (the query's own options stay). */
typedef struct rn_etl_def {
    char               name[256];
    rn_etl_sink_kind_t sink_kind;
    char               sink[1024];          /* topic name or file path */
    uint32_t           sink_queues;         /* 0: the source's count */
    char               dead_letter[256];    /* default "<name>.dlq" */
    int64_t            checkpoint_ms;
    char               start[64];           /* "earliest" | "latest" | "@MS" */
    char              *select;              /* malloc'd; rn_etl_def_free */
} rn_etl_def_t;

/* Parse a CREATE PIPELINE statement (no database access). RN_EINVAL with
 * errmsg naming what is wrong. rn_etl_def_free releases def->select. */
int  rn_etl_parse(const char *sql, size_t len, rn_etl_def_t *def, char *errmsg);
void rn_etl_def_free(rn_etl_def_t *def);
/* "topic NAME", "file PATH" or "stdout" into out. */
void rn_etl_describe_sink(const rn_etl_def_t *def, char *out, size_t size);

/* Parse, check the query by opening it (bad SQL or an unknown source is
 * refused here with the SQL error), and store the definition. RN_EEXIST for
 * a duplicate name. */
int  rn_etl_create(rn_datadir_t *d, const char *sql, size_t len, char *errmsg);
/* rn_etl_create for a principal: creator is stored with the definition (the
 * broker runs the pipeline with its rights; NULL or "" = the operator), and
 * check (may be NULL), called once the source is known and before anything
 * is stored, may refuse: its non-zero return (and errmsg) is returned. */
typedef int (*rn_etl_check_fn)(void *arg, const char *source, const rn_etl_def_t *def,
                               char *errmsg);
int  rn_etl_create_as(rn_datadir_t *d, const char *sql, size_t len, const char *creator,
                      rn_etl_check_fn check, void *arg, char *errmsg);
/* Delete the definition and its checkpoint state (sink and dead-letter
 * topics stay). RN_ENOTFOUND naming the pipelines. */
int  rn_etl_drop(rn_datadir_t *d, const char *name, char *errmsg);
int  rn_etl_set_paused(rn_datadir_t *d, const char *name, int paused, char *errmsg);

/* rn_etl_status_t (counts, watermark and lag as of the last checkpoint;
 * RN_ETL_MAX_QUEUES) is defined in client/runnel.h. */

/* Status from meta.db (works while another process runs the pipeline: it
 * reports the last checkpoint). *out malloc'd array (caller frees). name
 * NULL: every pipeline. */
int  rn_etl_status(rn_datadir_t *d, const char *name, rn_etl_status_t **out, size_t *n,
                   char *errmsg);

typedef struct rn_etl rn_etl_t;

/* Open a pipeline to run it: restores its last checkpoint, and re-derives
 * what a crashed run wrote after it (etl.c). RN_EINVAL for a paused one. */
int  rn_etl_open(rn_datadir_t *d, const char *name, rn_etl_t **out, char *errmsg);
/* The same with a file sink confined to sink_root (common/root.h; runneld
 * --sink-dir): its path is resolved beneath that directory, never through a
 * symbolic link, and one outside it fails the open (-EPERM). sink_root NULL:
 * as rn_etl_open (a relative path is relative to the working directory).
 * The root is borrowed: it outlives the handle. */
int  rn_etl_open_in(rn_datadir_t *d, const char *name, const struct rn_root *sink_root,
                    rn_etl_t **out, char *errmsg);

typedef enum rn_etl_state { RN_ETL_MORE = 1, RN_ETL_IDLE = 2, RN_ETL_STOPPED = 3 } rn_etl_state_t;

/* One unit of work: one source batch through the query to the sinks, then a
 * checkpoint when the interval has passed. IDLE: caught up (no new record
 * now). STOPPED: rn_etl_stop was called, or the pipeline was paused or
 * dropped by another process (seen at a checkpoint). Negative on error. */
int  rn_etl_step(rn_etl_t *p, rn_etl_state_t *state, char *errmsg);
/* After IDLE: block until a source record may have arrived or ms passed
 * (rn_sql_wait). */
void rn_etl_wait(rn_etl_t *p, uint32_t ms);
/* Checkpoint now (a final checkpoint before close). RN_ENOTFOUND when the
 * pipeline was dropped meanwhile. */
int  rn_etl_checkpoint(rn_etl_t *p, char *errmsg);
/* Ask rn_etl_step to report STOPPED (async-signal-safe). */
void rn_etl_stop(rn_etl_t *p);
/* Live counters (since the pipeline was created). */
void rn_etl_counters(rn_etl_t *p, uint64_t *in, uint64_t *out, uint64_t *errors,
                     uint64_t *checkpoints);
const char *rn_etl_name(const rn_etl_t *p);
/* The open pipeline's source topic and definition (borrowed until close). */
const char *rn_etl_source(const rn_etl_t *p);
/* The other topic its query reads (a joined table's, a stream-stream join's
 * second stream: rn_sql_join_source), borrowed until close; NULL: none. */
const char *rn_etl_join_source(const rn_etl_t *p);
const rn_etl_def_t *rn_etl_def(const rn_etl_t *p);
void rn_etl_close(rn_etl_t *p);    /* no checkpoint; NULL is a no-op */

/* Test hook: called with the point name at "after-step", "after-sink-write",
 * "before-checkpoint" and "after-checkpoint"; process-global. */
extern void (*rn_etl_test_hook)(const char *point);

#endif

/*
 * pipelines.h — runneld's pipeline runner: ETL pipelines (etl/etl.h) run
 * inside the broker, one thread each, on the broker's data directory.
 *
 *   rn_pl_create(d, sink_root, &pl, err);
 *   rn_pl_load_file(pl, "pipelines.sql");   // errors per pipeline, logged
 *   rn_pl_start_all(pl);                     // every pipeline not paused
 *   ...
 *   rn_pl_destroy(pl);                       // stop, final checkpoints, join
 *
 * Threading: any thread (the RPC handlers start and stop pipelines); each
 * pipeline's thread owns its rn_etl_t.
 */
#ifndef RN_PIPELINES_H
#define RN_PIPELINES_H

#include <stddef.h>

#include "logical-queues/datadir.h"
#include "server/handlers.h"

typedef struct rn_pl rn_pl_t;

/* sink_root (borrowed, may be NULL): every file sink the runner opens is
 * confined to it (rn_etl_open_in), whoever created the pipeline. */
int  rn_pl_create(rn_datadir_t *d, const struct rn_root *sink_root, rn_pl_t **out,
                  char *errmsg);
/* The ACLs pipelines run under (borrowed; NULL: none): a pipeline with a
 * creator runs with that principal's rights (pipelines.c invariant 5). Set
 * before the first start. */
struct rn_acl;
void rn_pl_set_acl(rn_pl_t *pl, struct rn_acl *acl);
/* Start a thread for every stored pipeline that is not paused. */
int  rn_pl_start_all(rn_pl_t *pl, char *errmsg);
/* Start name's thread unless it runs (one that ended is replaced). */
int  rn_pl_start(rn_pl_t *pl, const char *name, char *errmsg);
/* Stop name's thread (final checkpoint) and wait for it; 1 if it had one. */
int  rn_pl_stop(rn_pl_t *pl, const char *name);
/* "running", "paused", "stopped" or "failed: <reason>". */
void rn_pl_state(rn_pl_t *pl, const char *name, int paused, char *out, size_t size);
/* Stop every pipeline (each takes a final checkpoint) and free. NULL: no-op. */
void rn_pl_destroy(rn_pl_t *pl);

/* The pipeline RPCs (handlers.h's unary signature): CreatePipeline stores
 * and starts, Pause stops the thread after a final checkpoint, Resume starts
 * it, Drop stops it and deletes the definition and state. Status counts are
 * those of the last checkpoint; state is the runner's. */
int rn_pl_hd_create(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                    rn_status_t *);
int rn_pl_hd_list(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                  rn_status_t *);
int rn_pl_hd_get(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                 rn_status_t *);
int rn_pl_hd_pause(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                   rn_status_t *);
int rn_pl_hd_resume(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                    rn_status_t *);
int rn_pl_hd_drop(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                  rn_status_t *);

#endif

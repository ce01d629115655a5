/*
 * handlers.h — runneld's request handlers: unpacked protobuf-c request in,
 * protobuf-c response (or a status with a message) out, through the core
 * APIs (logical-queues/datadir.h, group.h, meta.h). No gRPC types: the gRPC
 * front (server.c) owns calls, threads and waiting.
 *
 * Responses are allocated in an rn_arena_t the caller frees after packing.
 * Every handler returns 0 with *resp set, or -1 with st filled (its code a
 * gRPC status number, its message naming the problem); a failed request
 * changed nothing.
 *
 * Produce and Fetch are split where the front must not block a thread:
 *   produce: rn_hd_produce_begin (validate, dedupe, append; fast) →
 *            rn_hd_produce_wait (blocks until durable; a waiter thread) →
 *            rn_hd_produce_answer.
 *   fetch:   rn_hd_fetch reads what is visible; when it returns no batch at
 *            the end of the queue the front parks the call, and re-runs it
 *            when rn_hd_queue_hwm moves or the wait ends.
 *
 * Threading: every function may be called from any thread at once.
 */
#ifndef RN_HANDLERS_H
#define RN_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "log/log.h"
#include "logical-queues/datadir.h"
#include "proto/runnel.pb-c.h"
#include "server/status.h"

struct rn_root;                 /* common/root.h */

/* ---- arena: every allocation of a response, freed at once ------------------ */

typedef struct rn_arena {
    void  **v;
    size_t  n, cap;
    /* The call's principal (server.c sets it before a unary handler runs;
     * "" anonymous, NULL outside a call): the arena is the one per-call
     * thing every handler gets. Read it with rn_authz_principal. */
    const char *principal;
} rn_arena_t;

#define RN_ARENA_INIT {NULL, 0, 0, NULL}
void *rn_arena_alloc(rn_arena_t *a, size_t size);     /* zeroed; NULL when out of memory */
void  rn_arena_free(rn_arena_t *a);

/* ---- the handler context ------------------------------------------------- */

typedef struct rn_hd rn_hd_t;
typedef struct rn_qent rn_qent_t;     /* a (topic, queue) the broker has served */

typedef struct rn_hd_opts {
    rn_log_opts_t log;                /* fsync policy, batch limit, ... */
    const char   *holder;             /* the data directory lock's holder line */
    uint32_t      fetch_default_bytes;   /* max_bytes 0 means this (1 MiB) */
    uint32_t      fetch_max_bytes;       /* larger max_bytes are lowered to this */
    /* Query budgets (server/query.c), 0 = none: virtual-machine instructions
     * one step of a query may run (one batch, or the whole of a statement
     * that reads no stream), and result rows of one query. */
    uint64_t      query_max_steps;       /* default RN_QUERY_DEFAULT_STEPS */
    uint64_t      query_max_rows;        /* default 0 */
    /* A producer's sequence state on a queue is dropped after this long
     * without a batch there (Kafka's producer.id.expiration.ms); 0 never. */
    int64_t       producer_expiry_ms;    /* default RN_PSTATE_DEFAULT_EXPIRY_MS */
    /* A batch whose largest record timestamp is more than this ahead of the
     * broker clock is refused (INVALID_ARGUMENT, nothing stored; Kafka's
     * message.timestamp.after.max.ms). 0 = no check. */
    int64_t       max_ts_ahead_ms;       /* default RN_HD_DEFAULT_TS_AHEAD_MS */
    /* Where paths named by requests may lead (common/root.h), borrowed, NULL
     * when not configured: then a request naming one is refused with
     * PERMISSION_DENIED. sink_root: file sinks of pipelines created over
     * the network (runneld --sink-dir); store_root: RemapQueue store_path
     * (runneld --store-root). */
    const struct rn_root *sink_root;
    const struct rn_root *store_root;
    /* The access control lists every front checks (logical-queues/acl.h),
     * borrowed, outliving h; NULL: none (everything allowed). */
    struct rn_acl *acl;
} rn_hd_opts_t;

#define RN_HD_DEFAULT_TS_AHEAD_MS 3600000LL   /* one hour, as Kafka 4 */

/* About 2-10 s of CPU: far beyond a batch's worth of expressions, and what
 * stops a statement that would never end (a recursive CTE). */
#define RN_QUERY_DEFAULT_STEPS 2000000000ull

void rn_hd_opts_default(rn_hd_opts_t *o);

/* Open the data directory (creating it when absent) and the producer
 * registry. RN_ELOCKED etc. as rn_datadir_open. */
int  rn_hd_open(const char *dir, const rn_hd_opts_t *o, rn_hd_t **out, char *errmsg);
/* Close everything, flushing and fsyncing the stores (the clean-shutdown
 * marker); returns the first error. NULL is a no-op. */
int  rn_hd_close(rn_hd_t *h);

/* Unary handlers, one per RPC: req is the RPC's request message. */
typedef int (*rn_hd_fn)(rn_hd_t *h, const ProtobufCMessage *req, rn_arena_t *a,
                        ProtobufCMessage **resp, rn_status_t *st);

int rn_hd_init_producer(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                        rn_status_t *);
int rn_hd_list_offsets(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                       rn_status_t *);
int rn_hd_create_topic(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                       rn_status_t *);
int rn_hd_alter_topic(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
/* rn_datadir_topic_delete, then the producer state kept for the topic's
 * queues is dropped (rebuilt from the new topic's tail if it is recreated). */
int rn_hd_delete_topic(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                       rn_status_t *);
/* The same for callers without a protobuf request (the Kafka front): in a
 * cluster, a replicated topic is deleted through the controller. */
int rn_hd_topic_delete(rn_hd_t *h, const char *name, rn_status_t *st);
/* This node's copy only (the replica module's manager, after a DROP). */
int rn_hd_topic_delete_local(rn_hd_t *h, const char *name, rn_status_t *st);
int rn_hd_list_topics(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
int rn_hd_describe_topic(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                         rn_status_t *);
int rn_hd_remap_queue(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
int rn_hd_list_stores(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
int rn_hd_commit_offsets(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                         rn_status_t *);
int rn_hd_fetch_offsets(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                        rn_status_t *);
int rn_hd_list_groups(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
/* CommitOffsets' work without the group guard (rn_hd_set_group_guard), for
 * a front that checked its own members' right to commit (the Kafka
 * front's OffsetCommit): ranges checked, then this node's meta.db, or the
 * controller for replicated topics (*index: its raft index, else 0). */
int rn_hd_commit_offsets_req(rn_hd_t *h, const Runnel__V1__CommitOffsetsRequest *req,
                             uint64_t *index, rn_status_t *st);
int rn_hd_reset_group(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                      rn_status_t *);
int rn_hd_create_checkpoint(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *,
                            ProtobufCMessage **, rn_status_t *);
int rn_hd_list_checkpoints(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *,
                           ProtobufCMessage **, rn_status_t *);
int rn_hd_drop_checkpoint(rn_hd_t *, const ProtobufCMessage *, rn_arena_t *, ProtobufCMessage **,
                          rn_status_t *);

/* ---- produce --------------------------------------------------------------- */

typedef struct rn_produce {
    rn_qent_t  *q;
    size_t      n;               /* batches of the request */
    int64_t    *base;            /* per batch: logical base offset */
    protobuf_c_boolean *dup;     /* per batch: a retry of a stored batch */
    uint64_t   *tickets;         /* what to wait for (appends and pending duplicates) */
    size_t      ntickets;
    size_t      stored, dups;    /* batches appended / acked as duplicates */
    uint64_t    bytes;           /* bytes appended */
    int         acks_written;
    size_t      done;            /* begin failed part-way: the leading batches that
                                    have a base offset (stored, or duplicates) */
    uint64_t    t0_ns;           /* rn_mono_ns when begin started (ack latency) */
    int         replicated;      /* a cluster queue: acks wait for the ISR (rn_hd_repl_t) */
    int64_t     end;             /* the offset after the request's last batch */
} rn_produce_t;

/* Validate every batch (deep), check idempotent sequences, then append the
 * new ones in order under the queue's append mutex. All or nothing for bad
 * requests; an I/O error part-way leaves the earlier batches stored (and
 * known to the idempotent state, so a retry stores only the rest). */
/* After rn_hd_produce_begin failed part-way (p->done > 0) and those batches
 * are durable (rn_hd_produce_wait): the answer for them alone, the base
 * offsets and duplicate flags of the first p->done batches. */
int  rn_hd_produce_partial(rn_hd_t *h, rn_produce_t *p, rn_arena_t *a, ProtobufCMessage **resp,
                           rn_status_t *st);
int  rn_hd_produce_begin(rn_hd_t *h, const Runnel__V1__ProduceRequest *req, rn_produce_t *p,
                         rn_status_t *st);
/* Block until every ticket may be acked; -1 with st when the store failed. */
int  rn_hd_produce_wait(rn_hd_t *h, rn_produce_t *p, rn_status_t *st);
int  rn_hd_produce_answer(rn_hd_t *h, rn_produce_t *p, rn_arena_t *a, ProtobufCMessage **resp,
                          rn_status_t *st);
void rn_hd_produce_free(rn_produce_t *p);

/* ---- fetch ---------------------------------------------------------------- */

typedef struct rn_fetch {
    rn_qent_t *q;
    rn_buf_t   records;          /* whole batches read */
    uint32_t   nbatches;
    int64_t    high_watermark, log_start;
} rn_fetch_t;

/* Read from req->offset (f->records is emptied first). An offset outside
 * [log start, high watermark] is OUT_OF_RANGE naming the range. */
int  rn_hd_fetch(rn_hd_t *h, const Runnel__V1__FetchRequest *req, rn_fetch_t *f,
                 rn_status_t *st);
int  rn_hd_fetch_answer(rn_hd_t *h, rn_fetch_t *f, rn_arena_t *a, ProtobufCMessage **resp);
/* The queue entry of (topic, queue), cached after the first lookup (cheap);
 * NOT_FOUND for an unknown topic or queue. */
int  rn_hd_queue(rn_hd_t *h, const char *topic, uint32_t queue, rn_qent_t **out,
                 rn_status_t *st);
/* rn_hd_fetch's read, appending whole batches from offset to out (which the
 * caller owns: a response being built) and setting f's q, watermarks and
 * batch count (f->records is not touched). */
int  rn_hd_read(rn_hd_t *h, rn_qent_t *q, int64_t offset, uint32_t max_bytes, rn_buf_t *out,
                rn_fetch_t *f, rn_status_t *st);
void rn_hd_fetch_free(rn_fetch_t *f);

/* The visible end of q now (cheap). */
int  rn_hd_queue_hwm(rn_hd_t *h, rn_qent_t *q, int64_t *hwm);

/* ---- cluster hooks (cluster/replica.h installs them) -------------------------- */

/* Set once before the server accepts calls; every hook may run on any
 * thread and must not block except `wait`. Without hooks (a single-node
 * broker) produces and fetches are local as always. */
typedef struct rn_hd_repl {
    void *arg;
    /* Before a Produce stores anything: 0 lets it go on (*replicated = 1
     * when its acks must wait for the in-sync replicas, 0 for a topic the
     * controller does not replicate); -1 with st (FAILED_PRECONDITION,
     * reason NOT_LEADER naming the leader; not enough in-sync replicas). */
    int (*produce)(void *arg, const char *topic, uint32_t queue, int *replicated,
                   rn_status_t *st);
    /* After a replicated produce is durable here: block until [0, end) is
     * below the queue's high watermark; -1 with st when it cannot be. */
    int (*wait)(void *arg, const char *topic, uint32_t queue, int64_t end, rn_status_t *st);
    /* Before a Fetch: -1 with st when this node does not lead the queue,
     * or a replica's check (replica_check) finds it diverged; a replica
     * (replica_id != 0) reports that it holds [0, offset); *limit: the end
     * a reader may see (-1 no limit: not replicated, or a replica). An
     * offset < 0 only asks for the limit. */
    int (*fetch)(void *arg, const Runnel__V1__FetchRequest *req, int64_t *limit,
                 rn_status_t *st);
    /* CreateTopic in a cluster: 0 when the controller committed the topic
     * and it exists here too; 1 when this is no cluster topic's business
     * (create it locally as always); -1 with st. */
    int (*create_topic)(void *arg, const Runnel__V1__CreateTopicRequest *req, rn_status_t *st);
    /* AlterTopic in a cluster: 0 when the controller committed the new
     * queues of a replicated topic and it has them here too; 1 when the
     * topic is not replicated (alter it locally as always); -1 with st. */
    int (*alter_topic)(void *arg, const Runnel__V1__AlterTopicRequest *req, rn_status_t *st);
    /* DeleteTopic in a cluster: 0 when the controller committed the
     * deletion of a replicated topic (this node then deletes its copy); 1
     * when the topic is not replicated (deleted locally as always); -1. */
    int (*delete_topic)(void *arg, const char *name, int forwarded, rn_status_t *st);
    /* Whether the controller replicates topic: 1 yes, 0 no, -1 with st when
     * this node cannot tell yet (starting, rejoining). */
    int (*replicated)(void *arg, const char *topic, rn_status_t *st);
    /* CommitOffsets whose topics are all replicated (ranges checked here
     * unless req->forwarded): 0 once the controller committed them and this
     * node's meta.db holds them (*index: the raft index); -1 with st. */
    int (*commit_offsets)(void *arg, const Runnel__V1__CommitOffsetsRequest *req,
                          uint64_t *index, rn_status_t *st);
} rn_hd_repl_t;

void rn_hd_set_repl(rn_hd_t *h, const rn_hd_repl_t *r);
/* A replicated produce (p->replicated): wait for the high watermark to
 * cover it (rn_hd_repl_t.wait); 0 at once otherwise. */
int  rn_hd_produce_replicated(rn_hd_t *h, rn_produce_t *p, rn_status_t *st);
/* A replica's copy of a leader's batch: stored byte for byte at its own
 * base offset, refused (RN_ERANGE) unless the queue ends there. The queue's
 * producer state is dropped (rebuilt from the tail if this node leads it
 * later). Wait with rn_hd_wait. */
int  rn_hd_replica_append(rn_hd_t *h, const char *topic, uint32_t queue, const uint8_t *batch,
                          size_t len, int64_t base, uint64_t *ticket, char *errmsg);
int  rn_hd_wait(rn_hd_t *h, uint64_t ticket);
/* A replica cutting the tail of (topic, queue) that diverged from its
 * leader's, at a batch boundary (rn_datadir_truncate); the producer state
 * is dropped as for rn_hd_replica_append. */
int  rn_hd_truncate(rn_hd_t *h, const char *topic, uint32_t queue, int64_t end, char *errmsg);
/* For fronts without a protobuf request (the Kafka front): a consumer's
 * rn_hd_read of q after the cluster hook (-1 with st, reason
 * RN_SR_NOT_LEADER, when this node does not lead a replicated queue),
 * keeping the whole batches below the high watermark only (f's
 * high_watermark lowered to it). */
int  rn_hd_read_visible(rn_hd_t *h, rn_qent_t *q, int64_t offset, uint32_t max_bytes,
                        rn_buf_t *out, rn_fetch_t *f, rn_status_t *st);
/* The end a consumer of q may read to now (the high watermark of a
 * replicated queue, else the local visible end); -1 with st as above. */
int  rn_hd_visible_end(rn_hd_t *h, rn_qent_t *q, int64_t *end, rn_status_t *st);
/* 1 when cluster hooks are installed (runneld --cluster). */
int  rn_hd_clustered(rn_hd_t *h);
/* The end a fetch of req sees now: the local visible end, lowered to the
 * high watermark for a consumer of a replicated queue. */
int  rn_hd_fetch_visible(rn_hd_t *h, const Runnel__V1__FetchRequest *req, rn_qent_t *q,
                         int64_t *hwm);
/* The server's hook that answers parked fetches of a queue again (set once
 * by the server), and its use: the high watermark of (topic, queue) moved. */
void rn_hd_set_waker(rn_hd_t *h, void (*fn)(void *arg, rn_qent_t *q), void *arg);
void rn_hd_wake(rn_hd_t *h, const char *topic, uint32_t queue);

/* A new idempotent producer (id 0) or a known one's next epoch (rn_preg_init),
 * for the Kafka front's InitProducerId. */
int  rn_hd_producer_init(rn_hd_t *h, int64_t id, int64_t *out_id, int16_t *out_epoch,
                         char *errmsg);

/* The logical offset a position names in (topic, queue) (rn_datadir_resolve)
 * and the queue's range; -1 with st (NOT_FOUND, ...) otherwise. */
int  rn_hd_offset_at(rn_hd_t *h, const char *topic, uint32_t queue, rn_datadir_pos_kind_t kind,
                     int64_t value, int64_t *offset, rn_datadir_queue_info_t *info,
                     rn_status_t *st);

/* The data directory (Query runs the engine on it; server/query.h). */
rn_datadir_t *rn_hd_datadir(rn_hd_t *h);
/* The options h was opened with (borrowed while h is open). */
const rn_hd_opts_t *rn_hd_opts(rn_hd_t *h);
/* The broker's pipeline runner (server/pipelines.h), set once before the
 * server starts; NULL when none. */
struct rn_pl;
void rn_hd_set_pipelines(rn_hd_t *h, struct rn_pl *pl);
struct rn_pl *rn_hd_pipelines(rn_hd_t *h);
/* Fill st for a core error code rc (NOT_FOUND for RN_ENOTFOUND, ...) with
 * msg, or the code's name when msg is empty; returns -1. */
int  rn_hd_fail(rn_status_t *st, int rc, const char *msg);

/* A check run before ResetGroup or CommitOffsets changes a group's offsets:
 * 0 allows it; else the call is refused (FAILED_PRECONDITION) with msg (n bytes, written by
 * the guard) as its message. The Kafka front installs one that refuses while
 * the group has live Kafka members, naming them. fn NULL removes it; setting
 * waits for a guard call in progress, so arg may be freed once the guard is
 * removed. Called on gRPC threads. */
typedef int (*rn_hd_group_guard_fn)(void *arg, const char *group, char *msg, size_t n);
void rn_hd_set_group_guard(rn_hd_t *h, rn_hd_group_guard_fn fn, void *arg);

/* Counters for the shutdown summary. */
typedef struct rn_hd_stats {
    uint64_t produced_batches, produced_bytes, duplicate_batches, fetched_batches;
} rn_hd_stats_t;
void rn_hd_stats(rn_hd_t *h, rn_hd_stats_t *out);

#endif

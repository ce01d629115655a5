/*
 * datadir.h — the embedded data directory: one process's exclusive view of
 * a metadata store and its log stores, with topic-level operations in
 * logical offsets.
 *
 *   DIR/LOCK        flock(LOCK_EX|LOCK_NB) by the holder, which writes
 *                   "pid <pid> <holder>\n" into it
 *   DIR/meta.db     the metadata store (logical-queues/meta.h)
 *   DIR/stores/0/   store 0, an rn_log directory (log/log.h)
 *   other stores    rn_log directories registered in meta.db (a path relative
 *                   to DIR, or absolute, e.g. on another disk); each holds a
 *                   STORE file naming this data directory's identity
 *
 * Offsets in this API are logical: a topic's logical queue translates them to
 * physical queues through its mapping items (DESIGN.md §3, mapping.h), and
 * batches read through it carry logical base offsets. Reads cross item
 * boundaries; appends go to the open item.
 *
 * Threading: any number of threads may use one handle at once, each with its
 * own rn_datadir_queue_t (a queue handle is used by one thread at a time).
 * Appends are serialised per store (each store has its own append lock), and
 * resolve topics and mappings from an in-memory snapshot of meta.db, never
 * SQLite; reads take no lock of this module. Remaps, alters, retention and
 * every metadata access made here are serialised by the handle's mutex
 * (d->mu), which appends and reads do not take (except to resolve a topic
 * the snapshot does not know). A generation counter, bumped by every mapping
 * change, tells a queue handle cheaply that it must re-resolve.
 * rn_datadir_meta's handle is not locked: use it only when no other thread
 * uses d, or between rn_datadir_meta_lock/unlock; a topic created directly
 * on it is found through meta.db on first use.
 */
#ifndef RN_DATADIR_H
#define RN_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* rn_datadir_store_info_t, rn_datadir_pos_kind_t */
#include "common/buf.h"
#include "log/log.h"
#include "logical-queues/meta.h"

typedef struct rn_datadir rn_datadir_t;

typedef struct rn_datadir_opts {
    rn_log_opts_t log;      /* for every store */
    const char   *holder;   /* who holds the lock, e.g. "runnel produce logs" */
    int           create;   /* create DIR when absent (else it must hold meta.db) */
    /* Called once per store opened, with what its recovery did (one line,
     * rn_log_recovery_format; warn = something was cut, damaged or lost).
     * NULL: not reported (rn_datadir_recovery_report can tell later). */
    void        (*report)(void *arg, int warn, const char *line);
    void         *report_arg;
    int           skip_damaged; /* every consumer on this handle goes past damaged or
                                   lost offsets (rn_consumer_opts_t.skip_damaged), e.g.
                                   the pipelines of `pipeline run --skip-damaged` */
} rn_datadir_opts_t;

/* o->skip_damaged of the open; damaged or lost offsets its consumers went
 * past (added by logical-queues/consumer.c). */
int      rn_datadir_skip_damaged(const rn_datadir_t *d);
void     rn_datadir_count_skipped(rn_datadir_t *d, uint64_t offsets);
uint64_t rn_datadir_skipped(rn_datadir_t *d);

/* Call report for every open store with what its recovery did. */
void rn_datadir_recovery_report(rn_datadir_t *d, void (*report)(void *arg, int warn,
                                const char *line), void *arg);

/* rn_log_opts_default, holder "runnel", create 0. */
void rn_datadir_opts_default(rn_datadir_opts_t *o);

/* Lock and open DIR and every registered store. Errors, each with errmsg
 * naming the directory:
 *  RN_ELOCKED    another process holds DIR/LOCK (errmsg names its pid and
 *                holder string)
 *  -ENOENT       DIR or DIR/meta.db is absent and o->create is 0; or a
 *                registered store directory is missing
 *  -ENOTDIR      DIR is not a directory
 *  RN_EINVAL     o->create and DIR is a non-empty directory without meta.db
 *  RN_EFORMAT    a registered store's STORE file names another data directory
 *  RN_ECORRUPT   a registered store holding topic data has no commit log and
 *                no checkpoint any more (removed or emptied), unless
 *                o->log.accept_loss: then each of its physical queues is moved
 *                forward to the end the metadata knows (rn_log_accept_loss)
 *  any error of rn_meta_open / rn_log_open (RN_ECORRUPT: acknowledged data
 *  missing; see rn_log_open and o->log.accept_loss). */
int  rn_datadir_open(const char *dir, const rn_datadir_opts_t *o, rn_datadir_t **out,
                     char *errmsg);
/* Close every store (flushing it: the first error is returned), the metadata
 * and the lock. NULL is a no-op. The handle is freed regardless. */
int  rn_datadir_close(rn_datadir_t *d);

const char *rn_datadir_path(const rn_datadir_t *d);
/* The wake-up counter every store of d bumps when appends become visible
 * (rn_log_set_notify); lives as long as d. rn_consumer_wait waits on it. */
rn_notify_t *rn_datadir_notify(rn_datadir_t *d);
rn_meta_t  *rn_datadir_meta(rn_datadir_t *d);    /* borrowed, lives as long as d */
/* Store `id` (NULL when not open), borrowed, lives as long as d. */
rn_log_t   *rn_datadir_store_log(rn_datadir_t *d, uint32_t id);
/* The metadata store with the handle's mutex held, for threads sharing d. */
rn_meta_t  *rn_datadir_meta_lock(rn_datadir_t *d);
void        rn_datadir_meta_unlock(rn_datadir_t *d);

/* rn_datadir_store_info_t (id, path, physical queues, bytes) is defined in
 * client/runnel.h. */

/* Every store by id; *out malloc'd (caller frees). */
int  rn_datadir_stores(rn_datadir_t *d, rn_datadir_store_info_t **out, size_t *n,
                       char *errmsg);

/* Create a topic on store 0. */
int  rn_datadir_topic_create(rn_datadir_t *d, const char *name, uint32_t queues,
                             rn_meta_topic_t *out, char *errmsg);
/* Grow a topic to `queues` queues; the new ones live on the store of queue
 * 0's open item. RN_EINVAL naming the current count unless it grows. */
int  rn_datadir_topic_alter(rn_datadir_t *d, const char *name, uint32_t queues,
                            rn_meta_topic_t *out, char *errmsg);

/* Delete a topic: it, its mapping items and every group's offsets on it leave
 * the metadata (rn_meta_topic_delete) in one transaction. Queue handles of it
 * in use by other threads get RN_ENOTFOUND on their next append, read or
 * info; an append racing the delete is either acknowledged before it or
 * refused. The stored bytes stay in their stores, unreachable, until store
 * retention drops the segments that hold them. A topic created again under
 * the name starts at offset 0 with none of the old records. RN_ENOTFOUND
 * naming the topics that exist. *out (may be NULL): the deleted topic. */
int  rn_datadir_topic_delete(rn_datadir_t *d, const char *name, rn_meta_topic_t *out,
                             char *errmsg);

/* A resolved logical queue: its topic and mapping items (a snapshot read
 * from meta.db, refreshed by the functions below when the generation moved).
 * Fill with rn_datadir_queue_open, release with rn_datadir_queue_close. */
typedef struct rn_datadir_queue {
    rn_meta_topic_t topic;
    uint32_t        queue;
    rn_meta_item_t *items;       /* ordered by seq; the last is open */
    size_t          nitems;
    uint64_t        gen;         /* generation the snapshot was taken at */
} rn_datadir_queue_t;

/* RN_ENOTFOUND for an unknown topic ("unknown topic 'x'; topics: ...") or
 * queue ("topic 'x' has no queue 9; it has queues 0..3"); RN_ECORRUPT when
 * the stored mapping breaks rn_mapping_check. */
int  rn_datadir_queue_open(rn_datadir_t *d, const char *topic, uint32_t queue,
                           rn_datadir_queue_t *q, char *errmsg);
void rn_datadir_queue_close(rn_datadir_queue_t *q);
/* Re-read q's items if the mapping changed since its snapshot. */
int  rn_datadir_queue_refresh(rn_datadir_t *d, rn_datadir_queue_t *q, char *errmsg);

/* Append one built batch to the queue's open item (re-resolving q first when
 * the mapping changed, so an append never lands in a sealed item);
 * *base_offset is its logical base offset; the append is acknowledged when
 * rn_datadir_wait(ticket) returns 0. A ticket names its store in the top 8
 * bits and that store's rn_log ticket below. */
int  rn_datadir_append(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                       size_t len, int64_t *base_offset, uint64_t *ticket, char *errmsg);
/* rn_datadir_append at logical offset `base` exactly (rn_log_append_at):
 * a replica's copy of a leader's batch, stored byte for byte; RN_ERANGE,
 * nothing stored, unless the queue ends at `base`. */
int  rn_datadir_append_at(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                          size_t len, int64_t base, uint64_t *ticket, char *errmsg);
int  rn_datadir_wait(rn_datadir_t *d, uint64_t ticket);

typedef struct rn_datadir_queue_info {
    int64_t  log_start;          /* first readable logical offset */
    int64_t  high_watermark;     /* next logical offset readers may see */
    uint64_t batches;            /* over every item */
} rn_datadir_queue_info_t;

/* log_start = the first item that still holds records: its logical_start +
 * (physical log start - physical_start); high watermark = the open item's
 * end. */
int  rn_datadir_queue_info(rn_datadir_t *d, rn_datadir_queue_t *q,
                           rn_datadir_queue_info_t *out, char *errmsg);

/* Whole batches from the one containing logical offset, as rn_log_read (at
 * least one batch, more while within max_bytes), crossing into the following
 * items, each batch's base offset rewritten to its logical value. Appends
 * to out. RN_ERANGE outside [log_start, high_watermark], errmsg
 * "offset 99 is outside topic 'x' queue 0's range [0, 42]". */
int  rn_datadir_read(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t offset,
                     size_t max_bytes, rn_buf_t *out, uint32_t *nbatches, char *errmsg);

/* Logical offset of the first record with timestamp >= ts, over every item
 * in order (the high watermark when none is that late). */
/* The logical offset after the batch holding offset (for going past damaged
 * offsets: a read at offset failed with RN_EDAMAGED or RN_ECORRUPT). */
int  rn_datadir_batch_end(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t offset, int64_t *end,
                          char *errmsg);
int  rn_datadir_lookup_time(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t ts,
                            int64_t *offset, char *errmsg);

/* A start position: rn_datadir_pos_kind_t (RN_POS_EARLIEST, _LATEST,
 * _OFFSET, _TIME), defined in client/runnel.h. */

/* The logical offset a position names in q. An OFFSET outside
 * [log_start, high_watermark] is RN_ERANGE with errmsg naming that range. */
int  rn_datadir_resolve(rn_datadir_t *d, rn_datadir_queue_t *q, rn_datadir_pos_kind_t kind,
                        int64_t value, int64_t *offset, char *errmsg);

/* Remap (topic, queue): seal its open item at the current logical end and
 * open a new item on a fresh physical queue, in the same store (store NULL)
 * or in the store at path `store` (relative to the data directory, or
 * absolute; a new directory is created, registered and opened). No data is
 * copied. Crash-safe order: (1) create and fsync the new store directory and
 * its STORE file, open it; (2) fsync the old store so everything written to
 * the sealed physical queue is durable; (3) one metadata transaction seals,
 * registers and opens. A crash before (3) commits leaves the mapping as it
 * was (a new store directory, if any, stays unregistered and is adopted by
 * the next remap to it). Appends to the old item's store are held off from
 * (2) to the end (other stores' appends go on).
 * *sealed / *opened (may be NULL) receive the two items. */
int  rn_datadir_remap(rn_datadir_t *d, const char *topic, uint32_t queue, const char *store,
                      rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg);

/* Cut (topic, queue) at logical offset `end` (a batch boundary inside the
 * queue's open item): a replica dropping a tail that diverged from its
 * leader's. As rn_datadir_remap with the open item sealed at `end`: offsets
 * from `end` on map to a fresh physical queue in the same store (the next
 * append gets `end`); the cut batches stay in their store, unreachable,
 * until retention drops them. No physical offset is ever reused. */
int  rn_datadir_truncate(rn_datadir_t *d, const char *topic, uint32_t queue, int64_t end,
                         char *errmsg);

/* Apply every store's retention now (rn_log_retain), then drop the sealed
 * items it emptied, advancing those queues' logical start. */
int  rn_datadir_retain(rn_datadir_t *d, uint32_t *segments, uint32_t *items, char *errmsg);

#endif

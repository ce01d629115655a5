/*
 * datadir.h — the embedded data directory: one process's exclusive view of
 * a metadata store and its log store, with topic-level operations in
 * logical offsets.
 *
 *   DIR/LOCK        flock(LOCK_EX|LOCK_NB) by the holder, which writes
 *                   "pid <pid> <holder>\n" into it
 *   DIR/meta.db     the metadata store (logical-queues/meta.h)
 *   DIR/stores/0/   store 0, an rn_log directory (log/log.h)
 *
 * Offsets in this API are logical: a topic's logical queue translates them to
 * its physical queue through its mapping item (DESIGN.md §3), and batches read
 * through it carry logical base offsets.
 *
 * Threading: one thread at a time per handle (rn_datadir_wait may be called
 * from any thread, as rn_log_wait).
 */
#ifndef RN_DATADIR_H
#define RN_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "log/log.h"
#include "logical-queues/meta.h"

typedef struct rn_datadir rn_datadir_t;

typedef struct rn_datadir_opts {
    rn_log_opts_t log;      /* for store 0 */
    const char   *holder;   /* who holds the lock, e.g. "runnel produce logs" */
    int           create;   /* create DIR when absent (else it must hold meta.db) */
} rn_datadir_opts_t;

/* rn_log_opts_default, holder "runnel", create 0. */
void rn_datadir_opts_default(rn_datadir_opts_t *o);

/* Lock and open DIR. Errors, each with errmsg naming the directory:
 *  RN_ELOCKED    another process holds DIR/LOCK (errmsg names its pid and
 *                holder string)
 *  -ENOENT       DIR or DIR/meta.db is absent and o->create is 0
 *  -ENOTDIR      DIR is not a directory
 *  RN_EINVAL     o->create and DIR is a non-empty directory without meta.db
 *  any error of rn_meta_open / rn_log_open. */
int  rn_datadir_open(const char *dir, const rn_datadir_opts_t *o, rn_datadir_t **out,
                     char *errmsg);
/* Close the store (flushing it: its error is returned), the metadata and the
 * lock. NULL is a no-op. The handle is freed regardless. */
int  rn_datadir_close(rn_datadir_t *d);

const char *rn_datadir_path(const rn_datadir_t *d);
rn_meta_t  *rn_datadir_meta(rn_datadir_t *d);    /* borrowed, lives as long as d */
rn_log_t   *rn_datadir_log(rn_datadir_t *d);     /* store 0, borrowed */

/* Create a topic on store 0. */
int  rn_datadir_topic_create(rn_datadir_t *d, const char *name, uint32_t queues,
                             rn_meta_topic_t *out, char *errmsg);

/* A resolved logical queue: its topic and mapping items, read once from
 * meta.db and cached here (the data directory lock guarantees no other
 * process changes them). Fill with rn_datadir_queue_open, release with
 * rn_datadir_queue_close. */
typedef struct rn_datadir_queue {
    rn_meta_topic_t topic;
    uint32_t        queue;
    rn_meta_item_t *items;       /* ordered by seq; the last is open */
    size_t          nitems;
} rn_datadir_queue_t;

/* RN_ENOTFOUND for an unknown topic ("unknown topic 'x'") or queue ("topic
 * 'x' has queues 0..3"). RN_EFORMAT when the mapping uses something this
 * version does not serve yet (several items, another store). */
int  rn_datadir_queue_open(rn_datadir_t *d, const char *topic, uint32_t queue,
                           rn_datadir_queue_t *q, char *errmsg);
void rn_datadir_queue_close(rn_datadir_queue_t *q);

/* Append one built batch; *base_offset is its logical base offset; the
 * append is acknowledged when rn_datadir_wait(ticket) returns 0. */
int  rn_datadir_append(rn_datadir_t *d, const rn_datadir_queue_t *q, const uint8_t *batch,
                       size_t len, int64_t *base_offset, uint64_t *ticket, char *errmsg);
int  rn_datadir_wait(rn_datadir_t *d, uint64_t ticket);

typedef struct rn_datadir_queue_info {
    int64_t  log_start;          /* first readable logical offset */
    int64_t  high_watermark;     /* next logical offset readers may see */
    uint64_t batches;
} rn_datadir_queue_info_t;

int  rn_datadir_queue_info(rn_datadir_t *d, const rn_datadir_queue_t *q,
                           rn_datadir_queue_info_t *out, char *errmsg);

/* Whole batches from the one containing logical offset, as rn_log_read, with
 * each batch's base offset rewritten to its logical value. Appends to out.
 * RN_ERANGE outside [log_start, high_watermark], errmsg
 * "offset 99 is outside queue 0's range [0, 42]". */
int  rn_datadir_read(rn_datadir_t *d, const rn_datadir_queue_t *q, int64_t offset,
                     size_t max_bytes, rn_buf_t *out, uint32_t *nbatches, char *errmsg);

/* Logical offset of the first record with timestamp >= ts (the high
 * watermark when none is that late). */
int  rn_datadir_lookup_time(rn_datadir_t *d, const rn_datadir_queue_t *q, int64_t ts,
                            int64_t *offset, char *errmsg);

#endif

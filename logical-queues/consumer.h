/*
 * consumer.h — the embedded consumer for stream processors: assign logical
 * queues of topics at offsets, seek by offset or time, and poll decoded
 * records one batch at a time, as views over the batch.
 *
 *   rn_consumer_create(d, NULL, &c, err);
 *   rn_consumer_assign(c, "logs", 0, 0, err);           // from offset 0
 *   rn_consumer_batch_t b;
 *   while (rn_consumer_poll(c, &b, err) == 1)
 *       for (uint32_t i = 0; i < b.count; i++) use(b.records[i]);
 *   rn_consumer_destroy(c);
 *
 * Following (no end): when poll returns 0, rn_consumer_wait(c, ms) blocks
 * until an append becomes visible or ms pass, then poll again.
 *
 * Order: poll serves the assigned queues round-robin by batch, in assignment
 * order: the next batch of the queue after the one served last that has
 * data, so given the same data and start offsets the sequence of batches is
 * always the same. Within a queue, records come in offset order, dense,
 * across remap boundaries (the read path is rn_datadir_read).
 *
 * Lifetimes: a polled batch's records (keys, values, headers) are views into
 * the consumer's read buffer or decompression scratch; they stay valid until
 * the next rn_consumer_poll, seek, assign or destroy on the same consumer,
 * and the caller must copy what it keeps. b.topic lives as long as c.
 *
 * Every batch is checked (header and CRC-32C) before its records are handed
 * out. A consumer is used by one thread at a time; several consumers and
 * producers may share one data directory from different threads.
 */
#ifndef RN_CONSUMER_H
#define RN_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "client/runnel.h"     /* rn_consumer_batch_t */
#include "logical-queues/datadir.h"

typedef struct rn_consumer rn_consumer_t;

typedef struct rn_consumer_opts {
    size_t fetch_bytes;       /* bytes read per queue and refill (default 1 MiB) */
    int    skip_damaged;      /* go past offsets whose reads fail as damaged, lost or
                                 unreadable (RN_EDAMAGED, RN_ECORRUPT), counting them
                                 (rn_consumer_skipped); 0 = such a read is an error */
} rn_consumer_opts_t;

/* rn_consumer_batch_t (topic, queue, records, count, next_offset) is
 * defined in client/runnel.h. */

int  rn_consumer_create(rn_datadir_t *d, const rn_consumer_opts_t *o, rn_consumer_t **out,
                        char *errmsg);
void rn_consumer_destroy(rn_consumer_t *c);        /* NULL is a no-op */

/* The number of logical queues of topic (they are 0..n-1). */
int  rn_consumer_queues(rn_consumer_t *c, const char *topic, uint32_t *n, char *errmsg);

/* Read (topic, queue) from logical offset on, which must lie in
 * [log_start, high_watermark] (RN_ERANGE naming the range). Assigning a queue
 * twice is RN_EEXIST. */
int  rn_consumer_assign(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t offset,
                        char *errmsg);
/* Stop (topic, queue) at logical offset end: poll never returns a record at
 * or past it (-1: no end, the default). */
int  rn_consumer_set_end(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t end,
                         char *errmsg);
/* Move the position to offset (range-checked) or to the first record with
 * timestamp >= ts. RN_ENOTFOUND for a queue that is not assigned. */
int  rn_consumer_seek(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t offset,
                      char *errmsg);
int  rn_consumer_seek_time(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t ts,
                           char *errmsg);

/* 1 and *b filled with the next batch's records at or after the position;
 * 0 when no assigned queue has a record now (or every one reached its end);
 * negative on an error (a damaged batch names its offset). */
int  rn_consumer_poll(rn_consumer_t *c, rn_consumer_batch_t *b, char *errmsg);
/* After a poll returned 0: block until records may have become visible
 * since that poll began (an append to any store of the data directory was
 * acknowledged for readers, under its fsync policy) or timeout_ms passed.
 * 1: poll again (it may still find nothing: the append may be another
 * queue's); 0: the timeout passed with no append. Nothing appended between
 * the poll and this call is missed (the poll sampled the store's wake-up
 * counter, common/notify.h, before it read). */
int  rn_consumer_wait(rn_consumer_t *c, uint32_t timeout_ms);
/* Offsets and ranges gone past so far under skip_damaged. */
void rn_consumer_skipped(const rn_consumer_t *c, uint64_t *offsets, uint64_t *ranges);

/* Make (topic, queue) the assignment the next poll looks at first (the
 * round-robin then goes on from it as usual): a caller that recorded the
 * queues of the batches it was served can be served them again in that
 * order. RN_ENOTFOUND for a queue that is not assigned. */
int  rn_consumer_prefer(rn_consumer_t *c, const char *topic, uint32_t queue, char *errmsg);

/* Next offset poll would return for (topic, queue). */
int  rn_consumer_position(rn_consumer_t *c, const char *topic, uint32_t queue, int64_t *offset,
                          char *errmsg);
/* The queue's current log start and high watermark (logical). */
int  rn_consumer_watermarks(rn_consumer_t *c, const char *topic, uint32_t queue,
                            int64_t *log_start, int64_t *high_watermark, char *errmsg);

/* Commit every assigned queue's position for group, in one transaction. */
int  rn_consumer_commit(rn_consumer_t *c, const char *group, char *errmsg);

#endif

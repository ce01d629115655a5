/*
 * log.h — a store: one commit log shared by all physical queues, plus one
 * batch index per queue. See log/log.c for the on-disk layout, the recovery
 * procedure and the exact durability and visibility rules; in short:
 *
 *  - rn_log_append stores one batch as received, writing only its base offset;
 *    one commit-log entry and one index unit per batch.
 *  - A batch is *durable* when an fdatasync of its segment covered it.
 *  - Under fsync `always` and `group`, readers see only durable batches (the
 *    high watermark is the durable end). Under `interval:MS` and `never`, they
 *    see every written batch.
 *  - Ack rule: an append is acknowledged when rn_log_wait(ticket) returns 0.
 *    `always` is durable when rn_log_append returns; `group` waits for the
 *    flusher's next fdatasync (which groups ~1 ms of appends); `interval` and
 *    `never` ack at once (loss window: since the last fsync).
 *  - After a failed write or fsync the store is sticky-failed: every later
 *    append returns RN_ESTICKY until it is closed and reopened.
 *
 * Threading: one writer path (appends are serialised by the store's append
 * lock; any thread may call rn_log_append), any number of concurrent readers
 * (read, lookup, info), which take no lock the writer waits for: they read
 * through an immutable snapshot of the tables, and the writer never waits for
 * a reader (log.c, THREADING). rn_log_close must not race with other calls.
 */
#ifndef RN_LOG_H
#define RN_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "client/runnel.h"     /* rn_fsync_mode_t, rn_log_opts_t */
#include "common/buf.h"
#include "common/hist.h"
#include "common/notify.h"

/* rn_fsync_mode_t and rn_log_opts_t (the store options) are defined in
 * client/runnel.h, since the client options embed them. */

/* group commit, 1 ms window, 128 MiB segments, 65536 units per index file,
 * 16 MiB batches, no retention. */
void rn_log_opts_default(rn_log_opts_t *o);

/* Parse "always", "group", "interval:MS" or "never" into o->fsync (and
 * o->fsync_interval_ms). RN_EINVAL with errmsg naming the valid forms. */
int rn_fsync_parse(const char *s, rn_log_opts_t *o, char *errmsg);
const char *rn_fsync_name(rn_fsync_mode_t m);

typedef struct rn_log rn_log_t;

#define RN_LOG_CHECK_MSG 200

/* Offsets recovery did something to. */
typedef enum rn_log_range_kind {
    RN_LOG_RANGE_DROPPED,       /* index units past the log's end were dropped */
    RN_LOG_RANGE_DAMAGED,       /* marked damaged: unreadable, later batches kept */
    RN_LOG_RANGE_LOST,          /* acknowledged but missing; accepted (accept_loss) */
} rn_log_range_kind_t;

typedef struct rn_log_range {
    rn_log_range_kind_t kind;
    uint32_t queue;
    int64_t  from, to;          /* offsets [from, to) */
    uint64_t position;          /* commit-log position where it was found */
} rn_log_range_t;

#define RN_LOG_REC_RANGES 16

/* What opening found and did. */
typedef struct rn_log_recovery {
    int      clean;             /* the clean-shutdown marker was present and valid */
    uint64_t scanned_bytes;     /* commit-log bytes verified by the scan */
    uint64_t truncated_bytes;   /* bytes cut at the first bad entry (torn/garbage tail) */
    uint32_t rebuilt_units;     /* index units re-derived from the commit log */
    uint32_t dropped_units;     /* index units dropped (damaged, or past the log end) */
    uint64_t elapsed_us;
    uint64_t skipped_bytes;     /* damaged commit-log bytes stepped over to reach intact
                                   entries after them */
    uint32_t damaged_batches;   /* index units this open marked damaged */
    uint32_t lost_ranges;       /* missing acknowledged ranges accepted (accept_loss) */
    uint32_t nranges;           /* ranges affected; the first RN_LOG_REC_RANGES are in
                                   ranges[] */
    rn_log_range_t ranges[RN_LOG_REC_RANGES];
} rn_log_recovery_t;

/* Open (creating when absent) the store in dir, recovering as needed.
 * Recovery truncates a torn tail (incomplete, garbage or zero entries with no
 * intact entry after them). Damage followed by intact entries is stepped
 * over: the damaged batches' offsets are marked damaged in the index (reads
 * of them fail with RN_EDAMAGED) and every intact batch after them is kept.
 * When data the store had acknowledged is missing (the checkpoint's next
 * offset of a queue lies past what the log still holds: a segment truncated,
 * deleted or emptied), the open fails with RN_ECORRUPT naming what is missing,
 * unless o->accept_loss: then the missing offsets are marked lost (damaged)
 * and the queue's next offset stays where the checkpoint said, so no offset
 * is ever handed out twice. rn_log_recovery_info says what was done. */
int  rn_log_open(const char *dir, const rn_log_opts_t *o, rn_log_t **out, char *errmsg);

/* Accept that queue held offsets up to next although the store does not
 * have them (its directory was removed; the caller knows the end from its
 * own metadata): when the queue ends below next, mark [end, next) lost so
 * the next append gets next. Only right after rn_log_open, before other
 * calls on log. Reported as a lost range in rn_log_recovery_info. */
int  rn_log_accept_loss(rn_log_t *log, uint32_t queue, int64_t next, char *errmsg);

/* One line (no newline) saying what recovery did, for logs and stderr.
 * Returns 1 when something was cut, damaged or lost (warn), 0 when not. */
int  rn_log_recovery_format(const rn_log_recovery_t *r, char *buf, size_t size);

/* What rn_log_check found. */
typedef struct rn_log_check {
    uint64_t entries;           /* intact entries (both CRCs and the batch header verify) */
    uint64_t bytes;             /* bytes of intact entries */
    uint64_t bad_entries;       /* places where an entry failed a check */
    uint64_t bad_bytes;         /* bytes from each bad place to the next intact entry */
    uint64_t damaged_units;     /* index units marked damaged (or lost) */
    uint64_t tail_bytes;        /* non-zero bytes after the last intact entry (a torn
                                   tail the next open truncates) */
    char     first[RN_LOG_CHECK_MSG]; /* the first bad place, "" when none */
} rn_log_check_t;

/* Verify every entry of the store in dir offline (it must not be open
 * elsewhere: the lock is taken): entry header CRC, batch header and Kafka
 * CRC, queue offsets continuing; count index units marked damaged. Changes
 * nothing. 0 with *out filled (damage is reported there, not as an error). */
int  rn_log_check(const char *dir, rn_log_check_t *out, char *errmsg);
/* Flush, fsync, write the clean-shutdown marker, free. Returns the first error
 * met while flushing (the handle is freed regardless). NULL is a no-op. */
int  rn_log_close(rn_log_t *log);
void rn_log_recovery_info(const rn_log_t *log, rn_log_recovery_t *out);

/* Append one batch (exactly len bytes, already built by a producer) to queue.
 * Checks the batch header and CRC (rn_batch_validate, not deep) and the size
 * limit; writes base offset = the queue's next offset; stores the bytes as
 * received otherwise. The caller's buffer is not modified. *ticket identifies
 * the append for rn_log_wait. Errors: RN_ECORRUPT/RN_EFORMAT (bad batch),
 * RN_ETOOBIG, RN_ESTICKY, -ENOSPC, -EIO; errmsg says which and where. */
int rn_log_append(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                  int64_t *base_offset, uint64_t *ticket, char *errmsg);

/* rn_log_append for a replica copying a leader's queue: the batch keeps its
 * own base offset `base` (its bytes are stored exactly as given), and the
 * append is refused with RN_ERANGE, nothing written, unless the queue's next
 * offset is exactly `base`. */
int rn_log_append_at(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                     int64_t base, uint64_t *ticket, char *errmsg);

/* Block until the append with this ticket may be acknowledged under the
 * store's fsync policy (see the ack rule above). A failed fsync returns its
 * error (and the store turns sticky): the append must not be acked. */
int rn_log_wait(rn_log_t *log, uint64_t ticket);

/* fdatasync everything written so far and advance the durable watermark. */
int rn_log_sync(rn_log_t *log);

/* Readers waiting for appends: every time appends become visible (a high
 * watermark moves, under the fsync policy above) the store bumps a wake-up
 * counter (common/notify.h): its own, or n once given (NULL: its own again;
 * a data directory gives all its stores one). n must outlive log; set it
 * right after open. rn_log_notify returns the one in use. */
void         rn_log_set_notify(rn_log_t *log, rn_notify_t *n);
rn_notify_t *rn_log_notify(rn_log_t *log);

typedef struct rn_log_queue_info {
    int64_t  log_start;         /* first readable offset */
    int64_t  high_watermark;    /* next offset to be written that readers may see */
    uint64_t batches;           /* index units between the two */
} rn_log_queue_info_t;

/* A queue never appended to reads as empty: log_start = high_watermark = 0. */
int rn_log_queue_info(rn_log_t *log, uint32_t queue, rn_log_queue_info_t *out);

/* Queue ids present in the store, ascending; caller frees *ids with free(). */
int rn_log_queues(rn_log_t *log, uint32_t **ids, size_t *n);

/* Read whole batches of queue, starting with the one that contains offset:
 * at least one batch (even when larger than max_bytes), then more while the
 * total stays within max_bytes, never past the high watermark. The batch bytes
 * (each a complete RecordBatch with its base offset) are appended to out.
 * offset == high watermark gives no batch and returns 0. An offset outside
 * [log_start, high_watermark] returns RN_ERANGE with errmsg naming the range.
 * A batch marked damaged (or whose bytes do not match its index unit) ends
 * the read: the batches before it are returned with 0, and a read that
 * starts at it fails with RN_EDAMAGED (RN_ECORRUPT for a mismatch) naming
 * the queue, its offsets and its commit-log position. */
int rn_log_read(rn_log_t *log, uint32_t queue, int64_t offset, size_t max_bytes,
                rn_buf_t *out, uint32_t *nbatches, char *errmsg);

/* Where a batch is, as its index unit says. */
typedef struct rn_log_batch_ref {
    int64_t  base_offset;
    uint32_t record_count;
    uint32_t size;              /* batch bytes */
    uint64_t position;          /* commit-log position of its entry */
    int64_t  first_timestamp;
    int64_t  max_timestamp;     /* largest timestamp in this batch or any before it */
    int      damaged;           /* its offsets are damaged or lost (reads fail) */
} rn_log_batch_ref_t;

/* The batch containing offset (binary search of the index; no data read). */
int rn_log_lookup_offset(rn_log_t *log, uint32_t queue, int64_t offset,
                         rn_log_batch_ref_t *ref, char *errmsg);

/* Index only (no data read): the batch holding the first record with
 * timestamp >= ts, i.e. the first batch whose running max_timestamp reaches
 * ts. RN_ENOTFOUND when no visible batch does. */
int rn_log_lookup_time_batch(rn_log_t *log, uint32_t queue, int64_t ts,
                             rn_log_batch_ref_t *ref, char *errmsg);

/* First record (in offset order) with timestamp >= ts: finds its batch through
 * the index, then decodes that batch to the exact record. *offset is the high
 * watermark when no visible record is that late. */
int rn_log_lookup_time(rn_log_t *log, uint32_t queue, int64_t ts, int64_t *offset,
                       char *errmsg);

/* Apply the retention options now: drop whole segments (never the active one)
 * and advance each queue's log start past them. *dropped counts segments. */
int rn_log_retain(rn_log_t *log, uint32_t *dropped);

/* Commit-log bytes in use, over all segments. */
uint64_t rn_log_bytes(rn_log_t *log);

/* Counters since open. A roll normally takes the segment the syncer thread
 * prepared ahead of need; rolls_inline counts rolls that had to create it on
 * the append path (fallocate + fsync under the append lock), rolls_waited
 * those that waited for the syncer to finish preparing it. */
typedef struct rn_log_stats {
    uint64_t rolls;
    uint64_t rolls_inline;
    uint64_t rolls_waited;
    uint64_t index_files;          /* index files started by appends */
    uint64_t index_files_inline;   /* of them created on the append path (a queue's first) */
} rn_log_stats_t;
void rn_log_stats(rn_log_t *log, rn_log_stats_t *out);

/* Latency of every rn_log_append (lock wait included) and of every
 * commit-log fdatasync, over all stores of the process (common/hist.h). */
extern rn_hist_t rn_log_append_hist, rn_log_fsync_hist;

#endif

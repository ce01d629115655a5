/*
 * producers.h — idempotent producers: the id/epoch registry (persisted in
 * DIR/producers) and the per-queue sequence state that makes a retried batch
 * land exactly once.
 *
 * A batch with producerId >= 0 is idempotent: (id, epoch, baseSequence,
 * recordCount) in its header. Per (producer, topic, queue) the broker keeps
 * the next expected sequence and the last RN_PSTATE_WINDOW batches it
 * stored. A batch equal to one of them (epoch, base sequence, record count)
 * is a duplicate: acked again with its original base offset, stored nothing.
 * Batches with producerId < 0 are not idempotent and never checked.
 *
 * Threading: the registry has its own mutex; an rn_pstate_t is guarded by
 * its caller (the queue entry's append mutex in handlers.c).
 */
#ifndef RN_PRODUCERS_H
#define RN_PRODUCERS_H

#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "server/status.h"

#define RN_PSTATE_WINDOW 5
#define RN_PREG_FILE     "producers"

/* ---- registry ---------------------------------------------------------- */

typedef struct rn_preg rn_preg_t;

/* Load DIR/producers (absent: no producers yet). RN_ECORRUPT naming the line
 * when the file is malformed. */
int  rn_preg_open(const char *dir, rn_preg_t **out, char *errmsg);
void rn_preg_close(rn_preg_t *r);              /* NULL is a no-op */

/* id 0: allocate the next id (from 1) with epoch 0. A known id: raise its
 * epoch by one. Durable (the file is rewritten atomically) before it
 * returns. RN_ENOTFOUND for an unknown id, RN_EFULL when the epoch cannot
 * grow any more. */
int  rn_preg_init(rn_preg_t *r, int64_t id, int64_t *out_id, int16_t *out_epoch, char *errmsg);

/* The current epoch of id; RN_ENOTFOUND when the registry never issued it. */
int  rn_preg_epoch(rn_preg_t *r, int64_t id, int16_t *epoch);

/* ---- per-queue sequence state ---------------------------------------- */

typedef struct rn_pbatch {
    int16_t  epoch;
    int32_t  base_seq;
    int32_t  count;
    int64_t  base_offset;
    uint64_t ticket;          /* the append's ticket; 0 when known durable */
} rn_pbatch_t;

typedef struct rn_pentry {
    int64_t     pid;
    int16_t     epoch;
    int64_t     next_seq;                 /* expected base sequence */
    rn_pbatch_t recent[RN_PSTATE_WINDOW]; /* ring, oldest first from head */
    uint32_t    nrecent, head;
} rn_pentry_t;

typedef struct rn_pstate {
    rn_pentry_t *v;
    size_t       n, cap;
} rn_pstate_t;

#define RN_PSTATE_INIT {NULL, 0, 0}

/* Verdict on one batch header h. prev[0..nprev) are the batches of the same
 * request already accepted as new (not yet recorded), so sequences chain
 * within a request. Returns 0 = new, 1 = duplicate (*dup filled with the
 * stored batch), or -1 with st set (FAILED_PRECONDITION for a stale epoch,
 * a gap or an old sequence, naming expected vs got; INVALID_ARGUMENT for a
 * negative sequence; FAILED_PRECONDITION for an id the registry never
 * issued). reg may be NULL (no epoch fencing; used when rebuilding). */
int  rn_pstate_check(const rn_pstate_t *s, rn_preg_t *reg, const rn_batch_header_t *h,
                     const rn_batch_header_t *prev, size_t nprev, rn_pbatch_t *dup,
                     rn_status_t *st);

/* Record a stored idempotent batch (h->producer_id >= 0) at base_offset.
 * -ENOMEM only. */
int  rn_pstate_record(rn_pstate_t *s, const rn_batch_header_t *h, int64_t base_offset,
                      uint64_t ticket);
void rn_pstate_free(rn_pstate_t *s);

#endif

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
 * Sequences wrap modulo 2^31, as Kafka's.
 *
 * Cost: registering a producer is O(1) amortised: ids are reserved durably
 * in blocks of RN_PREG_BLOCK (one append + fdatasync per block), an epoch
 * bump is one appended record + fdatasync, and the file is compacted when
 * it holds more records than state. Per-queue state is a hash table by
 * producer id; an entry idle longer than its expiry (Kafka's
 * producer.id.expiration.ms) is dropped, after which the producer is new to
 * that queue again.
 *
 * Threading: the registry has two mutexes: `mu` guards the in-memory table
 * and is held only for memory work (every idempotent produce takes it to
 * read an epoch), `wmu` serialises the file's writers and is held across
 * their fdatasync; nobody takes wmu while holding mu. An rn_pstate_t is
 * guarded by its caller (the queue entry's append mutex in handlers.c).
 */
#ifndef RN_PRODUCERS_H
#define RN_PRODUCERS_H

#include <stddef.h>
#include <stdint.h>

#include "batch/batch.h"
#include "server/status.h"

#define RN_PSTATE_WINDOW 5
#define RN_PREG_FILE     "producers"
#define RN_PREG_BLOCK    1000                 /* ids reserved per durable record */
#define RN_PSTATE_DEFAULT_EXPIRY_MS (24 * 3600 * 1000LL)    /* Kafka's default: 1 day */
/* In a cluster, producer ids from here up are drawn at random by the client
 * (librunnel) or the Kafka front's InitProducerId, no node's registry: their
 * sequences are checked, their epochs not (server/handlers.c). */
#define RN_PREG_CLUSTER_ID_MIN (1ll << 52)

/* ---- registry ---------------------------------------------------------- */

typedef struct rn_preg rn_preg_t;

/* Load DIR/producers (absent: no producers yet; format 1, the whole-file
 * rewrite of older brokers, is read too) and compact it. RN_ECORRUPT naming
 * the line when the file is malformed; a torn last line (a crash during an
 * append that was never acknowledged) is dropped. After a reopen, new ids
 * continue after the last reserved block, so no id is ever issued twice. */
int  rn_preg_open(const char *dir, rn_preg_t **out, char *errmsg);
void rn_preg_close(rn_preg_t *r);              /* NULL is a no-op */

/* id 0: allocate the next id (from 1) with epoch 0. A known id: raise its
 * epoch by one. Durable (appended and fdatasynced) before it returns.
 * RN_ENOTFOUND for an unknown id, RN_EFULL when the epoch cannot grow any
 * more, the I/O error otherwise (nothing was handed out). */
int  rn_preg_init(rn_preg_t *r, int64_t id, int64_t *out_id, int16_t *out_epoch, char *errmsg);

/* The current epoch of id; RN_ENOTFOUND when the registry never issued it. */
int  rn_preg_epoch(rn_preg_t *r, int64_t id, int16_t *epoch);

/* Records in the file now (for tests: compaction keeps it near the state). */
uint64_t rn_preg_file_records(rn_preg_t *r);

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
    int64_t     last_ms;                  /* when it last stored a batch here */
    rn_pbatch_t recent[RN_PSTATE_WINDOW]; /* ring, oldest first from head */
    uint32_t    nrecent, head;
} rn_pentry_t;

typedef struct rn_pstate {
    rn_pentry_t *v;                       /* entries, in no order */
    size_t       n, cap;
    uint32_t    *slots;                   /* hash by pid: index + 1 into v, 0 empty */
    size_t       nslots;                  /* a power of two, > 2n; 0 before the first */
    int64_t      expire_ms;               /* idle entries older than this go; 0 never */
    int64_t      swept_ms;                /* last sweep */
} rn_pstate_t;

#define RN_PSTATE_INIT {NULL, 0, 0, NULL, 0, 0, 0}

/* Verdict on one batch header h. prev[0..nprev) are the batches of the same
 * request already accepted as new (not yet recorded), so sequences chain
 * within a request. Returns 0 = new, 1 = duplicate (*dup filled with the
 * stored batch), or -1 with st set (FAILED_PRECONDITION for a stale epoch,
 * a gap or an old sequence, naming expected vs got; INVALID_ARGUMENT for a
 * negative sequence; FAILED_PRECONDITION for an id the registry never
 * issued or an epoch above the one it issued). reg may be NULL (no epoch
 * fencing; used when rebuilding). */
int  rn_pstate_check(const rn_pstate_t *s, rn_preg_t *reg, const rn_batch_header_t *h,
                     const rn_batch_header_t *prev, size_t nprev, rn_pbatch_t *dup,
                     rn_status_t *st);

/* Record a stored idempotent batch (h->producer_id >= 0) at base_offset, at
 * time now_ms; entries idle for longer than s->expire_ms are dropped now and
 * then (a sweep at most every quarter of it). -ENOMEM only. */
int  rn_pstate_record(rn_pstate_t *s, const rn_batch_header_t *h, int64_t base_offset,
                      uint64_t ticket, int64_t now_ms);
void rn_pstate_free(rn_pstate_t *s);

#endif

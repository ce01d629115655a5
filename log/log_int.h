/*
 * log_int.h — internals shared by the files of the log module (log.c,
 * recovery.c, flusher.c): the store struct, queues, snapshots, the lock
 * helpers and the functions one file calls in another. Private: only the
 * log/ sources include it; everything else uses log/log.h. What the fields
 * mean, which lock guards what and the lock order are in log.c's opening
 * comment (THREADING).
 */
#ifndef RN_LOG_INT_H
#define RN_LOG_INT_H

#include "batch/batch.h"
#include "common/error.h"
#include "common/notify.h"
#include "log/index.h"
#include "log/log.h"
#include "log/segment.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CKPT_ITEM     16
#define RING_CAP      16384
#define UNKNOWN_NEXT  (-1)
#define CKPT_JOBS     32

typedef struct rn_queue {
    uint32_t id;
    rn_idx_t ix;
    int64_t  next_offset;          /* writer: next offset to assign */
    int64_t  running_max;          /* writer: max timestamp so far */
    _Atomic uint64_t visible;      /* slots readers may use */
    uint64_t start_slot;           /* writer, tmu: first slot not retained away */
    int64_t  start_offset;         /* writer, tmu: log start */
    struct qsnap *snap;            /* writer: the queue in the current snapshot */
    int      snap_stale;           /* writer: its tables changed since snap was built */
    /* its next index file, prepared by the syncer (smu; SPARE_* states) */
    int      ix_spare_state;
    int      ix_spare_listed;      /* on log->ix_wanted */
    int      ix_spare_rc;
    rn_idx_file_t ix_spare;
    struct rn_queue *ix_spare_next;
    char    *ix_spare_msg;         /* malloc'd when FAILED */
    int      ix_spare_asked;       /* writer: asked for the current file's successor */
    /* recovery only */
    uint64_t cursor;
    int64_t  scan_next;
    int      in_ckpt;
    int64_t  ckpt_next;
    int64_t  fix_slot;             /* a damaged unit built from its entry header, whose
                                      record count the next entry corrects; -1 none */
} rn_queue_t;

/* Commit-log bytes [start, end) a scan stepped over to reach intact entries. */
typedef struct hole {
    uint64_t start, end;
} hole_t;
/* A queue as readers see it in a snapshot: immutable once published. */
typedef struct qsnap {
    rn_queue_t *q;                 /* lives until close: id, visible */
    rn_idx_t    ix;                /* read-only: files is this qsnap's copy of the table */
    uint64_t    start_slot;
    int64_t     start_offset;
} qsnap_t;

/* An immutable snapshot of the tables (see THREADING). */
typedef struct rn_view {
    uint64_t        gen;
    int             refs;          /* vmu: the log's own + pins */
    struct rn_view *older, *newer; /* vmu: live snapshots, oldest first */
    rn_seg_t       *segs;          /* copies; fd and map borrowed */
    size_t          nsegs;
    qsnap_t       **queues;        /* sorted by id */
    size_t          nqueues;
} rn_view_t;

/* Something a table change removed, released once no live snapshot is
 * older than gen. */
typedef enum { RET_QSNAP, RET_SEGS, RET_IDXFILES } ret_kind_t;
typedef struct retired {
    struct retired *next;
    uint64_t        gen;
    ret_kind_t      kind;
    void           *p;             /* qsnap_t *, rn_seg_t[n] or rn_idx_file_t[n] */
    size_t          n;
} retired_t;

/* The next segment, prepared by the syncer (smu). */
enum { SPARE_NONE, SPARE_WANTED, SPARE_CREATING, SPARE_READY, SPARE_FAILED };

/* A roll's recovery point waiting to be made durable. */
typedef struct ckpt_job {
    uint64_t pos;
    uint8_t *buf;                  /* the checkpoint file's bytes */
    size_t   len;
    uint64_t due_ms;               /* monotonic ms when it may run */
} ckpt_job_t;

typedef struct pend {
    uint64_t    end;
    rn_queue_t *q;
    uint64_t    units;
} pend_t;

struct rn_log {
    char *dir, *cl_dir, *ix_dir;
    rn_log_opts_t o;
    rn_batch_limits_t lim;
    int lock_fd;
    pthread_mutex_t wmu;           /* the append lock */
    pthread_mutex_t tmu;           /* the live tables vs the syncer */
    pthread_mutex_t vmu;           /* snapshots */
    rn_seg_t *segs;
    size_t nsegs, capsegs;
    rn_queue_t **queues;
    size_t nqueues, capqueues;
    rn_queue_t *lastq;
    uint64_t write_pos;            /* writer */
    _Atomic uint64_t written_pos;
    _Atomic uint64_t durable_pos;
    _Atomic int sticky;
    pthread_mutex_t sync_mu;       /* serialises rn_log_sync_segments */
    pthread_mutex_t smu;
    pthread_cond_t done_cv;        /* durable advanced, sticky, ring space */
    pthread_cond_t work_cv;        /* work for the syncer, or stop */
    pend_t *ring;
    size_t rhead, rcount;
    int syncer_idle, stop;
    pthread_t thr;
    int thr_started;
    int sticky_rc;
    char sticky_msg[RN_ERRMSG_SIZE];
    ckpt_job_t jobs[CKPT_JOBS];    /* rolls' checkpoints waiting for the syncer, oldest first */
    size_t njobs;
    int ckpt_running;              /* a thread is running a checkpoint job */
    _Atomic uint64_t ckpt_pos;     /* the durable recovery point */
    rn_log_recovery_t rec;
    hole_t *holes;                 /* recovery only: the scan's damage, ascending */
    size_t nholes, capholes;
    uint64_t vouched_end;          /* recovery only: data is known to reach this far */
    /* snapshots (THREADING) */
    rn_view_t *view;               /* vmu: the current snapshot */
    rn_view_t *oldest, *newest;    /* vmu: live snapshots */
    retired_t *retired;            /* vmu: waiting for old snapshots to go */
    uint64_t view_gen;             /* writer: generation of the last publish */
    retired_t *pending;            /* writer: to retire at the next publish */
    int unpublished;               /* writer: the tables changed since the last publish */
    int opened;                    /* open finished: table changes need tmu */
    /* the spare segment (smu) */
    int spare_state;
    uint64_t spare_start;
    rn_seg_t spare;
    int spare_rc;
    char spare_msg[RN_ERRMSG_SIZE];
    int spare_asked;               /* writer: asked for the active segment's successor */
    rn_queue_t *ix_wanted;         /* smu: queues whose next index file is WANTED */
    _Atomic uint64_t rolls, rolls_inline, rolls_waited, idx_files, idx_files_inline;
    rn_notify_t own_notify;        /* bumped when a visible end moves ... */
    rn_notify_t *_Atomic notify;   /* ... unless rn_log_set_notify gave another */
    /* debug: which thread holds each mutex (0 = none) */
    _Atomic unsigned long wmu_owner, tmu_owner, vmu_owner, smu_owner, sync_mu_owner;
};

/* ---- locks that know their owner (debug asserts) -------------------------- */

static inline unsigned long self_id(void)
{
    return (unsigned long)pthread_self();
}

static inline void mu_lock(pthread_mutex_t *m, _Atomic unsigned long *owner)
{
    pthread_mutex_lock(m);
    atomic_store_explicit(owner, self_id(), memory_order_relaxed);
}

static inline void mu_unlock(pthread_mutex_t *m, _Atomic unsigned long *owner)
{
    assert(atomic_load_explicit(owner, memory_order_relaxed) == self_id());
    atomic_store_explicit(owner, 0, memory_order_relaxed);
    pthread_mutex_unlock(m);
}

static inline void mu_wait(pthread_cond_t *cv, pthread_mutex_t *m, _Atomic unsigned long *owner,
                           const struct timespec *deadline)
{
    assert(atomic_load_explicit(owner, memory_order_relaxed) == self_id());
    atomic_store_explicit(owner, 0, memory_order_relaxed);
    if (deadline) pthread_cond_timedwait(cv, m, deadline);
    else pthread_cond_wait(cv, m);
    atomic_store_explicit(owner, self_id(), memory_order_relaxed);
}

#define LOCK(log, m)          mu_lock(&(log)->m, &(log)->m##_owner)
#define UNLOCK(log, m)        mu_unlock(&(log)->m, &(log)->m##_owner)
#define WAIT(log, cv, m)      mu_wait(&(log)->cv, &(log)->m, &(log)->m##_owner, NULL)
#define WAIT_UNTIL(log, cv, m, ts) mu_wait(&(log)->cv, &(log)->m, &(log)->m##_owner, ts)
/* 1 when the calling thread holds mutex m of log (meaningful in asserts). */
#define HELD(log, m) \
    (atomic_load_explicit(&(log)->m##_owner, memory_order_relaxed) == self_id())

/* No fsync, fdatasync or fallocate while holding a lock that appends or
 * reads need (THREADING); `always` may fdatasync its own append under wmu. */
static inline void assert_may_block(rn_log_t *log, int append_sync)
{
    (void)log; (void)append_sync;
    assert(!HELD(log, tmu) && !HELD(log, vmu) && !HELD(log, smu));
    assert(!HELD(log, wmu) || append_sync || !log->opened);
}

typedef struct ckpt {
    uint64_t pos;
    uint32_t n;
    uint8_t *items;          /* into buf */
    uint8_t *buf;
} ckpt_t;

/* ---- in log.c ---------------------------------------------------------- */

/* The commit-log position just past the entry of unit u (a lost unit holds none). */
uint64_t rn_log_unit_end_pos(const rn_idx_unit_t *u);

/* The offset just past the records of unit u. */
int64_t rn_log_unit_end_off(const rn_idx_unit_t *u);

/* The live queue id, or NULL (writer or recovery: binary search of queues[]). */
rn_queue_t *rn_log_find_queue(const rn_log_t *log, uint32_t id);

/* A new queue struct with an empty index; files are created lazily. */
int rn_log_queue_new(rn_log_t *log, uint32_t id, rn_queue_t **out);

/* Free a queue struct and everything it holds. */
void rn_log_queue_free(rn_queue_t *q);

/* Insert q into the sorted queue table (writer with wmu and tmu, or open). */
int rn_log_queue_insert(rn_log_t *log, rn_queue_t *q);

/* Append segment s to the live segment table (writer with wmu and tmu, or open). */
int rn_log_seg_push(rn_log_t *log, const rn_seg_t *s);

/* Index of the live segment holding position pos (writer, recovery). */
size_t rn_log_seg_of(const rn_log_t *log, uint64_t pos);

/* The end position of the last segment file. */
uint64_t rn_log_extent_end(const rn_log_t *log);

/* Writer: publish a snapshot when a table changed; a failure turns the store sticky. */
int rn_log_publish_if_needed(rn_log_t *log, char *errmsg);

/* flock DIR/LOCK (writing the pid into it) or fail with RN_ELOCKED. */
int rn_log_lock_dir(rn_log_t *log, char *errmsg);

/* Free a store handle and all it holds (no other thread, no pinned snapshot). */
void rn_log_free(rn_log_t *log);

/* A store handle with its locks and paths, nothing opened; NULL when out of memory. */
rn_log_t *rn_log_alloc(const char *dir);

/* ---- in recovery.c ----------------------------------------------------- */

/* Open every segment file under DIR/commitlog (creating the first when none). */
int rn_log_load_segments(rn_log_t *log, char *errmsg);

/* Open-time recovery: verify, repair and checkpoint the store before any write. */
int rn_log_recover(rn_log_t *log, char *errmsg);

/* ---- in flusher.c ------------------------------------------------------ */

/* Make the store refuse writes with rc and reason what until reopened; returns rc. */
int rn_log_set_sticky(rn_log_t *log, int rc, const char *what);

/* RN_ESTICKY with the sticky reason in errmsg. */
int rn_log_sticky_err(rn_log_t *log, char *errmsg);

/* Everything up to position t is durable: make the group ring's appends visible. */
void rn_log_advance_durable(rn_log_t *log, uint64_t t);

/* fdatasync every dirty segment starting below limit (under sync_mu; no other lock). */
int rn_log_sync_segments(rn_log_t *log, uint64_t limit, char *what, size_t whatsz);

/* fdatasync every dirty index file (fds taken under tmu, synced without it). */
int rn_log_sync_indexes(rn_log_t *log, char *errmsg);

/* Queue a roll's checkpoint bytes b[n] for position pos (smu held; takes b). */
void rn_log_post_checkpoint_job(rn_log_t *log, uint64_t pos, uint8_t *b, size_t n);

/* Make the recovery point reach pos when a job for it exists (no lock held). */
int rn_log_checkpoint_catch_up(rn_log_t *log, uint64_t pos);

/* The syncer thread (pthread start routine; arg is the rn_log_t). */
void *rn_log_syncer_main(void *arg);

/* The checkpoint file's bytes for position pos (writer or single-threaded); caller frees. */
int rn_log_ckpt_build(rn_log_t *log, uint64_t pos, uint8_t **out, size_t *len);

/* Atomically replace DIR/checkpoint with b[n]. */
int rn_log_ckpt_write(rn_log_t *log, const uint8_t *b, size_t n, char *errmsg);

/* Build and write the checkpoint for position pos. */
int rn_log_write_checkpoint(rn_log_t *log, uint64_t pos, char *errmsg);

/* Read DIR/checkpoint: 1 valid, 0 missing or damaged, <0 I/O error; caller frees c->buf. */
int rn_log_read_checkpoint(rn_log_t *log, ckpt_t *c);

/* Write the clean-shutdown marker DIR/clean = {end}. */
int rn_log_write_clean(rn_log_t *log, uint64_t end, char *errmsg);

/* 1 and *end when a valid clean marker exists, 0 when none or damaged, <0 on I/O errors. */
int rn_log_read_clean(rn_log_t *log, uint64_t *end);

/* Remove DIR/clean durably (before the first write after open). */
int rn_log_remove_clean(rn_log_t *log, char *errmsg);

#endif

/*
 * flusher.c — durability off the append path: the sticky error, the
 * fdatasync of segments and index files, the checkpoint job queue, the
 * checkpoint and clean-marker files, and the syncer thread, which also
 * prepares the next segment and index files ahead of need.
 * Part of the log module: formats, durability per fsync policy, invariants
 * and THREADING are in log/log.c's opening comment, the recovery point in
 * log/recovery.c.
 *
 * THE SYNCER (rn_log_syncer_main: one thread per store, started by
 * rn_log_open, stopped and joined by rn_log_close). Each time it wakes on
 * work_cv it does the first of:
 *   1. the next segment the writer asked for (spare NONE -> WANTED by the
 *      writer -> CREATING -> READY or FAILED here), then the next index
 *      file of each queue on ix_wanted (the same states, per queue:
 *      DIR/index/Q/next.idx.tmp, renamed into place by the append that
 *      needs it);
 *   2. the newest due checkpoint job (a roll's: fdatasync the segments
 *      before its position, fdatasync every dirty index file, rewrite
 *      DIR/checkpoint; then advance the durable position and ckpt_pos);
 *      under never a job is due NEVER_CKPT_DELAY_MS after its roll;
 *   3. under group, the group commit (wait group_window_us after a quiet
 *      period, take the written end T, fdatasync the dirty segments, make
 *      every append that ended at or before T visible); under interval, an
 *      fdatasync every fsync_interval_ms.
 *   Otherwise, or once the store is sticky, it sleeps.
 *
 * LOCKS (order wmu -> sync_mu -> tmu -> smu -> vmu, see log.c)
 *   The syncer never takes wmu. It picks work under smu and releases smu
 *   around every piece of I/O (creating a file, fdatasync, writing the
 *   checkpoint). rn_log_sync_segments holds sync_mu for its whole run and
 *   tmu only to take dirty flags and dup fds; rn_log_sync_indexes holds tmu
 *   only to begin each index's sync. No fsync, fdatasync or fallocate runs
 *   under tmu, smu or vmu (assert_may_block). The same functions also run
 *   on other threads: rn_log_sync, rn_log_retain (which runs a pending job
 *   itself through rn_log_checkpoint_catch_up), the `always` append, and
 *   open and close, which write the checkpoint and the clean marker while
 *   the syncer is not running.
 *
 * INVARIANTS
 *  1. A segment's dirty flag is cleared only by rn_log_sync_segments, under
 *     sync_mu, right before its fdatasync (log.c invariant 6).
 *  2. durable_pos and ckpt_pos only grow. A job's position becomes ckpt_pos
 *     only after its segments, the index files and the checkpoint file are
 *     durable, and after the durable position reached it.
 *  3. At most one checkpoint job runs at a time (ckpt_running); at most
 *     CKPT_JOBS wait, a full queue replacing its newest (which it subsumes).
 *  4. Once the sticky error is set it stays until close, and the syncer
 *     does no more I/O.
 */
#include "log/log_int.h"

#include "batch/crc32c.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/index.h"
#include "log/segment.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CKPT_MAGIC    0x4b434e52u   /* "RNCK" */
#define CLEAN_MAGIC   0x4c434e52u   /* "RNCL" */
#define FILE_VERSION  1u
#define CKPT_HDR      24
#define CKPT_MAX_QUEUES (1u << 20)
#define CLEAN_SIZE    20
/* Under fsync=never a roll's checkpoint waits this long, the kernel's default
 * dirty_expire: by then the kernel has written the finished segment back on
 * its own, so the checkpoint's fdatasync adds no writeback to the append path
 * (forcing 128 MiB of writeback per roll halves no-fsync throughput). */
#define NEVER_CKPT_DELAY_MS 30000

/* ---- sticky errors, durability -------------------------------------------- */

int rn_log_set_sticky(rn_log_t *log, int rc, const char *what)
{
    LOCK(log, smu);
    if (!log->sticky_rc) {
        log->sticky_rc = rc;
        snprintf(log->sticky_msg, sizeof log->sticky_msg, "%s", what);
        atomic_store(&log->sticky, 1);
    }
    pthread_cond_broadcast(&log->done_cv);
    pthread_cond_broadcast(&log->work_cv);
    UNLOCK(log, smu);
    return rc;
}

int rn_log_sticky_err(rn_log_t *log, char *errmsg)
{
    LOCK(log, smu);
    rn_errf(errmsg, RN_ESTICKY, "store %s refuses writes since %s; reopen to recover", log->dir,
            log->sticky_msg);
    UNLOCK(log, smu);
    return RN_ESTICKY;
}

/* Everything up to position t is durable: publish it. */
void rn_log_advance_durable(rn_log_t *log, uint64_t t)
{
    LOCK(log, smu);
    if (t > atomic_load(&log->durable_pos)) atomic_store(&log->durable_pos, t);
    while (log->rcount > 0 && log->ring[log->rhead].end <= t) {
        pend_t *p = &log->ring[log->rhead];
        atomic_store_explicit(&p->q->visible, p->units, memory_order_release);
        log->rhead = (log->rhead + 1) % RING_CAP;
        log->rcount--;
    }
    pthread_cond_broadcast(&log->done_cv);
    rn_notify_bump(atomic_load(&log->notify));       /* a leaf lock (log.c) */
    UNLOCK(log, smu);
}

/* fdatasync every dirty segment that starts below limit. A segment's dirty
 * flag is set by the writer after each pwritev, so a position read (under
 * smu or with acquire) before this call is covered when it returns 0.
 * The fds are dup'ed under tmu and synced without it, so a long fdatasync
 * never holds up a roll or a new index file (which take tmu briefly), and
 * retention closing a segment cannot pull the fd away. */
int rn_log_sync_segments(rn_log_t *log, uint64_t limit, char *what, size_t whatsz)
{
    enum { BATCH = 8 };
    int rc = 0;
    uint64_t from = 0;        /* a position, not an index: retention may shift segs[] */
    assert_may_block(log, 0);
    /* One syncer at a time: a clear dirty flag must mean "synced", not "being
     * synced by another thread right now". */
    LOCK(log, sync_mu);
    for (;;) {
        int fds[BATCH];
        uint64_t starts[BATCH];
        size_t n = 0;
        LOCK(log, tmu);
        size_t i = from ? rn_log_seg_of(log, from) : 0;
        if (i < log->nsegs && log->segs[i].start < from) i++;
        for (; i < log->nsegs && log->segs[i].start < limit && n < BATCH; i++) {
            rn_seg_t *s = &log->segs[i];
            if (!__atomic_exchange_n(&s->dirty, 0, __ATOMIC_ACQ_REL)) continue;
            int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) {
                rc = -errno;
                __atomic_store_n(&s->dirty, 1, __ATOMIC_RELEASE);
                snprintf(what, whatsz, "cannot dup the fd of commitlog/%020llu.log: %s",
                         (unsigned long long)s->start, rn_strerror(rc));
                break;
            }
            fds[n] = fd;
            starts[n++] = s->start;
        }
        int more = rc == 0 && i < log->nsegs && log->segs[i].start < limit;
        if (more) from = log->segs[i].start;
        UNLOCK(log, tmu);
        for (size_t k = 0; k < n; k++) {
            uint64_t f0 = rn_mono_ns();
            while (rc == 0 && rn_sys.fdatasync(fds[k]) < 0) {
                if (errno == EINTR) continue;
                rc = -errno;
                snprintf(what, whatsz, "fdatasync of commitlog/%020llu.log failed: %s",
                         (unsigned long long)starts[k], rn_strerror(rc));
            }
            if (rc == 0) rn_hist_observe(&rn_log_fsync_hist, rn_mono_ns() - f0);
            close(fds[k]);
        }
        if (rc != 0 || !more) break;
    }
    UNLOCK(log, sync_mu);
    return rc;
}

/* fdatasync the index files of every queue: their dirty flags and fds are
 * taken under tmu, the fdatasyncs run with no lock held. */
int rn_log_sync_indexes(rn_log_t *log, char *errmsg)
{
    assert_may_block(log, 0);
    LOCK(log, tmu);
    size_t nq = log->nqueues;
    rn_idx_sync_t *jobs = calloc(nq ? nq : 1, sizeof *jobs);
    rn_idx_t **ixs = calloc(nq ? nq : 1, sizeof *ixs);
    int rc = 0;
    size_t k = 0;
    if (!jobs || !ixs) rc = rn_errf(errmsg, -ENOMEM, "out of memory syncing the index");
    for (; rc == 0 && k < nq; k++) {
        ixs[k] = &log->queues[k]->ix;          /* queue structs live until close */
        rc = rn_idx_sync_begin(ixs[k], &jobs[k], errmsg);
    }
    UNLOCK(log, tmu);
    for (size_t i = 0; rc == 0 && i < k; i++) rc = rn_idx_sync_run(ixs[i], &jobs[i], errmsg);
    for (size_t i = 0; jobs && i < k; i++) rn_idx_sync_end(&jobs[i]);
    free(jobs);
    free(ixs);
    return rc;
}

/* ---- the checkpoint job queue -------------------------------------------- */

/* A roll's recovery point, made durable off the writer path: sync the
 * segments before pos and every index file, then write the checkpoint. */
static int run_checkpoint(rn_log_t *log, uint64_t pos, const uint8_t *b, size_t n, char *what,
                          size_t whatsz)
{
    int rc = rn_log_sync_segments(log, pos, what, whatsz);
    if (rc != 0) return rc;
    rc = rn_log_sync_indexes(log, what);
    if (rc != 0) return rc;
    return rn_log_ckpt_write(log, b, n, what);
}

static uint64_t mono_ms(void)
{
    return rn_mono_ns() / 1000000u;
}

/* Queue a roll's checkpoint (smu held). When the queue is full the newest
 * job is replaced (it subsumes the one it replaces) so the oldest keep aging. */
void rn_log_post_checkpoint_job(rn_log_t *log, uint64_t pos, uint8_t *b, size_t n)
{
    uint64_t delay = log->o.fsync == RN_FSYNC_NEVER ? NEVER_CKPT_DELAY_MS : 0;
    ckpt_job_t j = {pos, b, n, mono_ms() + delay};
    if (log->njobs == CKPT_JOBS) {
        free(log->jobs[CKPT_JOBS - 1].buf);
        log->jobs[CKPT_JOBS - 1] = j;
    } else {
        log->jobs[log->njobs++] = j;
    }
}

/* The newest job that may run now (all of them when force), or -1. */
static int due_job(const rn_log_t *log, int force)
{
    uint64_t now = mono_ms();
    for (size_t i = log->njobs; i > 0; i--)
        if (force || log->jobs[i - 1].due_ms <= now) return (int)(i - 1);
    return -1;
}

/* Run job idx, dropping the older ones it subsumes (smu held on entry and
 * on return; released while it runs). */
static void take_checkpoint_job(rn_log_t *log, int idx, char *what, size_t whatsz)
{
    uint8_t *b = log->jobs[idx].buf;
    size_t n = log->jobs[idx].len;
    uint64_t pos = log->jobs[idx].pos;
    for (int i = 0; i < idx; i++) free(log->jobs[i].buf);
    memmove(log->jobs, log->jobs + idx + 1, (log->njobs - (size_t)idx - 1) * sizeof *log->jobs);
    log->njobs -= (size_t)idx + 1;
    log->ckpt_running = 1;
    UNLOCK(log, smu);
    int rc = run_checkpoint(log, pos, b, n, what, whatsz);
    free(b);
    if (rc != 0) {
        rn_log_set_sticky(log, rc, what);
    } else {
        /* Visible first: retention, once it sees the new recovery point,
         * may move a queue's start up to any slot before it. */
        rn_log_advance_durable(log, pos);
        if (pos > atomic_load(&log->ckpt_pos)) atomic_store(&log->ckpt_pos, pos);
    }
    LOCK(log, smu);
    log->ckpt_running = 0;
    pthread_cond_broadcast(&log->done_cv);
}

/* Make the recovery point reach pos (when a job for it exists), running the
 * pending roll checkpoint here or waiting for the syncer's. No store lock
 * held: the job fdatasyncs. */
int rn_log_checkpoint_catch_up(rn_log_t *log, uint64_t pos)
{
    char what[RN_ERRMSG_SIZE];
    assert_may_block(log, 0);
    LOCK(log, smu);
    while (atomic_load(&log->ckpt_pos) < pos && !log->sticky_rc) {
        if (log->ckpt_running) WAIT(log, done_cv, smu);
        else if (log->njobs > 0) take_checkpoint_job(log, due_job(log, 1), what, sizeof what);
        else break;               /* no job (it could not be built): keep the old point */
    }
    int rc = log->sticky_rc;
    UNLOCK(log, smu);
    return rc;
}

/* ---- the syncer thread and the files it prepares ------------------------- */

static void sleep_us(uint32_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* Create the spare segment the writer asked for (smu held on entry and on
 * return; released while the file is created, preallocated and fsynced). */
static void make_spare(rn_log_t *log)
{
    char msg[RN_ERRMSG_SIZE] = "";
    rn_seg_t sg;
    uint64_t start = log->spare_start;
    log->spare_state = SPARE_CREATING;
    UNLOCK(log, smu);
    assert_may_block(log, 0);
    int rc = rn_seg_create(log->cl_dir, start, log->o.segment_bytes, &sg, msg);
    LOCK(log, smu);
    if (rc == 0) {
        log->spare = sg;
        log->spare_state = SPARE_READY;
    } else {
        log->spare_rc = rc;
        snprintf(log->spare_msg, sizeof log->spare_msg, "%s", msg);
        log->spare_state = SPARE_FAILED;
    }
    pthread_cond_broadcast(&log->done_cv);
}

/* Create the next index file of the first queue on log->ix_wanted (smu held
 * on entry and on return; released while the file is created and
 * preallocated). */
static void make_ix_spare(rn_log_t *log)
{
    char msg[RN_ERRMSG_SIZE] = "";
    rn_queue_t *q = log->ix_wanted;
    log->ix_wanted = q->ix_spare_next;
    q->ix_spare_next = NULL;
    q->ix_spare_listed = 0;
    if (q->ix_spare_state != SPARE_WANTED) return;     /* the writer went on without it */
    q->ix_spare_state = SPARE_CREATING;
    UNLOCK(log, smu);
    assert_may_block(log, 0);
    rn_idx_file_t f;
    int rc = rn_idx_prepare_spare(&q->ix, &f, msg);    /* reads only ix->dir, ix->new_cap */
    LOCK(log, smu);
    if (rc == 0) {
        q->ix_spare = f;
        q->ix_spare_state = SPARE_READY;
    } else {
        q->ix_spare_rc = rc;
        free(q->ix_spare_msg);
        q->ix_spare_msg = strdup(msg);
        q->ix_spare_state = SPARE_FAILED;
    }
    pthread_cond_broadcast(&log->done_cv);
}

/* The syncer thread, in every mode: the next segment ahead of need; roll
 * checkpoints; under group, the group commit (gather group_window_us,
 * fdatasync, publish); under interval, an fdatasync every
 * fsync_interval_ms. */
void *rn_log_syncer_main(void *arg)
{
    rn_log_t *log = arg;
    char what[RN_ERRMSG_SIZE];
    int interval = log->o.fsync == RN_FSYNC_INTERVAL;
    uint64_t next_tick = mono_ms() + log->o.fsync_interval_ms;
    int was_idle = 1;                  /* gather only after a quiet period */
    LOCK(log, smu);
    while (!log->stop) {
        int group_work = log->o.fsync == RN_FSYNC_GROUP && log->rcount > 0;
        int tick = interval && mono_ms() >= next_tick;
        int job = log->ckpt_running ? -1 : due_job(log, 0);
        if (log->spare_state == SPARE_WANTED && !log->sticky_rc) {
            make_spare(log);
            continue;
        }
        if (log->ix_wanted && !log->sticky_rc) {
            make_ix_spare(log);
            continue;
        }
        if (log->sticky_rc || (!group_work && job < 0 && !tick)) {
            log->syncer_idle = 1;
            uint64_t ms = interval ? next_tick : UINT64_MAX;
            if (log->njobs > 0 && log->jobs[0].due_ms < ms) ms = log->jobs[0].due_ms;
            if (ms != UINT64_MAX && !log->sticky_rc) {
                struct timespec ts;
                ts.tv_sec = (time_t)(ms / 1000);
                ts.tv_nsec = (long)(ms % 1000) * 1000000;
                WAIT_UNTIL(log, work_cv, smu, &ts);
            } else {
                WAIT(log, work_cv, smu);
            }
            log->syncer_idle = 0;
            was_idle = 1;
            continue;
        }
        if (job >= 0) {
            take_checkpoint_job(log, job, what, sizeof what);
            continue;
        }
        UNLOCK(log, smu);
        /* The first append after a quiet period waits group_window_us for
         * company; appends that piled up during the previous fdatasync are
         * synced at once (that sync was their gathering window). */
        if (group_work && was_idle && log->o.group_window_us) sleep_us(log->o.group_window_us);
        was_idle = 0;
        LOCK(log, smu);
        uint64_t t = atomic_load(&log->written_pos);
        UNLOCK(log, smu);
        int rc = 0;
        if (t > atomic_load(&log->durable_pos))
            rc = rn_log_sync_segments(log, UINT64_MAX, what, sizeof what);
        if (rc != 0) rn_log_set_sticky(log, rc, what);
        else rn_log_advance_durable(log, t);
        if (tick) next_tick = mono_ms() + log->o.fsync_interval_ms;
        LOCK(log, smu);
    }
    UNLOCK(log, smu);
    return NULL;
}

/* ---- checkpoint and clean marker ------------------------------------------ */

/* The checkpoint bytes for position pos with every queue's next offset
 * (writer path or no other thread). Caller frees *out. */
int rn_log_ckpt_build(rn_log_t *log, uint64_t pos, uint8_t **out, size_t *len)
{
    size_t n = CKPT_HDR + log->nqueues * CKPT_ITEM + 4;
    uint8_t *b = calloc(1, n);
    if (!b) return -ENOMEM;
    rn_le32_put(b, CKPT_MAGIC);
    rn_le32_put(b + 4, FILE_VERSION);
    rn_le64_put(b + 8, pos);
    rn_le32_put(b + 16, (uint32_t)log->nqueues);
    for (size_t i = 0; i < log->nqueues; i++) {
        uint8_t *p = b + CKPT_HDR + i * CKPT_ITEM;
        rn_le32_put(p, log->queues[i]->id);
        rn_le64_put(p + 8, (uint64_t)log->queues[i]->next_offset);
    }
    rn_le32_put(b + n - 4, rn_crc32c(0, b, n - 4));
    *out = b;
    *len = n;
    return 0;
}

int rn_log_ckpt_write(rn_log_t *log, const uint8_t *b, size_t n, char *errmsg)
{
    int rc = rn_write_file_atomic(log->dir, "checkpoint", b, n);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write %s/checkpoint: %s", log->dir, rn_strerror(rc));
    return 0;
}

int rn_log_write_checkpoint(rn_log_t *log, uint64_t pos, char *errmsg)
{
    uint8_t *b;
    size_t n;
    int rc = rn_log_ckpt_build(log, pos, &b, &n);
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory writing the checkpoint");
    rc = rn_log_ckpt_write(log, b, n, errmsg);
    free(b);
    return rc;
}

/* 1 = valid checkpoint read, 0 = missing or damaged, <0 = I/O error. */
int rn_log_read_checkpoint(rn_log_t *log, ckpt_t *c)
{
    memset(c, 0, sizeof *c);
    char *path = rn_path_join(log->dir, "checkpoint");
    if (!path) return -ENOMEM;
    size_t n;
    int rc = rn_read_file(path, CKPT_HDR + (size_t)CKPT_MAX_QUEUES * CKPT_ITEM + 4, &c->buf, &n);
    free(path);
    if (rc == -ENOENT || rc == RN_ETOOBIG) return 0;
    if (rc != 0) return rc;
    uint8_t *b = c->buf;
    if (n < CKPT_HDR + 4 || rn_le32_get(b) != CKPT_MAGIC || rn_le32_get(b + 4) != FILE_VERSION)
        return 0;
    uint32_t nq = rn_le32_get(b + 16);
    if (nq > CKPT_MAX_QUEUES || n != CKPT_HDR + (size_t)nq * CKPT_ITEM + 4) return 0;
    if (rn_le32_get(b + n - 4) != rn_crc32c(0, b, n - 4)) return 0;
    c->pos = rn_le64_get(b + 8);
    c->n = nq;
    c->items = b + CKPT_HDR;
    return 1;
}

int rn_log_write_clean(rn_log_t *log, uint64_t end, char *errmsg)
{
    uint8_t b[CLEAN_SIZE];
    rn_le32_put(b, CLEAN_MAGIC);
    rn_le32_put(b + 4, FILE_VERSION);
    rn_le64_put(b + 8, end);
    rn_le32_put(b + 16, rn_crc32c(0, b, 16));
    int rc = rn_write_file_atomic(log->dir, "clean", b, sizeof b);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write %s/clean: %s", log->dir, rn_strerror(rc));
    return 0;
}

/* 1 and *end when a valid clean marker exists. */
int rn_log_read_clean(rn_log_t *log, uint64_t *end)
{
    char *path = rn_path_join(log->dir, "clean");
    if (!path) return -ENOMEM;
    uint8_t *b;
    size_t n;
    int rc = rn_read_file(path, 64, &b, &n);
    free(path);
    if (rc == -ENOENT || rc == RN_ETOOBIG) return 0;
    if (rc != 0) return rc;
    int ok = n == CLEAN_SIZE && rn_le32_get(b) == CLEAN_MAGIC &&
             rn_le32_get(b + 4) == FILE_VERSION && rn_le32_get(b + 16) == rn_crc32c(0, b, 16);
    if (ok) *end = rn_le64_get(b + 8);
    free(b);
    return ok;
}

int rn_log_remove_clean(rn_log_t *log, char *errmsg)
{
    char *path = rn_path_join(log->dir, "clean");
    if (!path) return -ENOMEM;
    int rc = 0;
    if (rn_sys.unlink(path) < 0 && errno != ENOENT) rc = -errno;
    else rc = rn_fsync_dir(log->dir);
    free(path);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot remove the clean-shutdown marker in %s: %s", log->dir,
                       rn_strerror(rc));
    return 0;
}

/*
 * log.c — a store: one commit log shared by all physical queues, a batch index
 * per queue, group commit, recovery and retention.
 *
 * ON DISK (our own formats are little-endian; the batch bytes are Kafka's)
 *
 *   DIR/LOCK                          flock'd by the owning process (its pid inside)
 *   DIR/commitlog/%020llu.log         segments, named by global start position
 *   DIR/index/%010u/%020llu.idx       per-queue index files (see log/index.c),
 *                                     named by the base offset of their first unit
 *   DIR/checkpoint                    the recovery point
 *   DIR/clean                         the clean-shutdown marker
 *
 *   A segment is preallocated to segment_bytes; segment k+1 starts at global
 *   position start(k) + size(k). Entries never span segments: an append that
 *   does not fit rolls to a new segment, leaving zeros at the old one's end.
 *   Segments have no file header: every entry checksums itself.
 *
 *   entry:  +-----------+----------+-----------+---------+----------------------+
 *           | batch_len | queue_id | format=1  | hcrc    | batch bytes          |
 *           | u32       | u32      | u32       | u32     | (batch_len, Kafka v2)|
 *           +-----------+----------+-----------+---------+----------------------+
 *     hcrc = CRC-32C(header[0,12) ++ batch[0,21)), i.e. base offset, length,
 *     leader epoch, magic and the Kafka CRC field; Kafka's CRC covers
 *     batch[21,end). A zero batch_len (an all-zero header) = no more entries
 *     in this segment.
 *
 *   checkpoint:  magic "RNCK" (u32 0x4b434e52) | version u32 = 1 | position P u64 |
 *                nqueues u32 | 0 u32 | nqueues x {queue u32, 0 u32, next_offset i64} |
 *                crc u32 = CRC-32C of everything before it
 *   clean:       magic "RNCL" (u32 0x4c434e52) | version u32 = 1 | end position u64 |
 *                crc u32
 *
 * DURABILITY AND VISIBILITY
 *
 *   A batch is durable once an fdatasync of its segment returned after its
 *   pwritev. Each queue has a written end (next offset to assign) and a
 *   visible end, the high watermark (slot count published with a release
 *   store, read with acquire). One syncer thread per store does every
 *   background fdatasync.
 *   - always:   rn_log_append fdatasyncs before returning; visible = durable.
 *   - group:    (default) the syncer waits for appends, sleeps group_window_us
 *               (only when it was idle: appends that arrived during the last
 *               fdatasync go at once), snapshots the written end T,
 *               fdatasyncs every dirty segment,
 *               then publishes every append that ended at or before T (a ring
 *               of {end position, queue, slot count}); visible = durable.
 *               rn_log_wait(ticket) returns once the durable position reaches
 *               the ticket (the end position of that append).
 *   - interval: the syncer fdatasyncs every MS; visible = written at once.
 *   - never:    visible = written at once; no fdatasync on the write path.
 *   rn_log_sync fdatasyncs and publishes at once, in every mode.
 *
 * RECOVERY POINT AND RECOVERY
 *
 *   A roll creates the next segment (preallocated, fsynced with its
 *   directory) and queues a checkpoint job {P = the new segment's start, each
 *   queue's next offset at P}. The syncer runs it: fdatasync the segments
 *   before P, fdatasync every dirty index file (this writes back their mmap'd
 *   pages) and fsync index directories with new files, then atomically
 *   rewrite DIR/checkpoint. Under group/always/interval the job runs at once;
 *   under never it waits NEVER_CKPT_DELAY_MS so that it forces no writeback
 *   of fresh data. rn_log_retain runs any pending job first. On close: sync
 *   everything, checkpoint P = the end, and write DIR/clean = {end}. Open
 *   removes DIR/clean durably before any write.
 *
 *   Open: load every index (each unit checked, cut at the first bad one); a
 *   queue whose valid units end below its checkpointed next offset is
 *   damaged and rescanned from the end of its last good unit. With a valid
 *   clean marker and no damage nothing is scanned. Otherwise entries are
 *   verified from min(P, damaged queues' resume points): length bounds, hcrc,
 *   batch header and Kafka CRC, base offset = the queue's next offset. An
 *   entry that an index unit already describes must match it exactly; other
 *   entries get new units. The log ends at the first bad entry that no
 *   intact entry follows (a torn tail; other damage is stepped over, see
 *   below): later units are dropped, the rest of that segment is zeroed,
 *   later segments deleted.
 *   A missing or damaged checkpoint means no index is trusted: all index
 *   files are deleted and rebuilt from the first segment. So does a scan
 *   that left the index in a state the next open would take for damage (a
 *   queue's last unit not matching the log, or a checkpointed queue left
 *   without units): everything is verified from the first segment before
 *   any write, so a later open never cuts below batches acknowledged in
 *   between. A queue's first entry found by a scan may carry any base
 *   offset (a recovery that cut a queue keeps its next offset: offsets are
 *   never reused); each later one must continue it. Recovery ends by
 *   syncing what it scanned and writing a checkpoint at the end it found.
 *
 *   Torn tail or damage. An entry that fails its checks ends the log only
 *   when nothing intact follows it (a torn tail: incomplete, garbage or zero
 *   entries at the end). When intact entries follow, the scan steps over the
 *   damage (step_over) and keeps them: the damaged entry's index unit (or,
 *   without one, its own header when the header CRC holds) says whose
 *   offsets it held, and that unit is marked RN_IDX_DAMAGED; with neither,
 *   the scan searches byte by byte for the next intact entry whose base
 *   offset fits its queue, and each queue whose next batch skips offsets
 *   gets a damaged unit for them. Zeros end a segment unless the recovery
 *   point, the clean marker or an index unit vouches for data after them.
 *   Reads of damaged offsets fail with RN_EDAMAGED; the queue's offsets stay
 *   dense and taken.
 *
 *   Acknowledged data missing. A valid checkpoint file's next offsets were
 *   durable when it was written, even when its index cannot be trusted. A
 *   queue that ends below its checkpointed next offset after the scan (a
 *   segment truncated, deleted or emptied) makes the open fail before
 *   anything is cut, naming the missing offsets, unless accept_loss: then a
 *   damaged unit of size 0 (lost) covers them at the log's end, so the next
 *   offset stays where the checkpoint said. rn_log_recovery_info reports
 *   bytes scanned and truncated, units rebuilt, dropped and marked, and the
 *   offset ranges affected.
 *
 * INVARIANTS
 *  1. Everything before the checkpoint's P (log bytes and the index units of
 *     those entries) is durable.
 *  2. Offsets of a queue are dense and never reused; write_pos only grows
 *     while the store is open. Offsets recovery could not keep readable stay
 *     taken by damaged index units (RN_IDX_DAMAGED), and an open never ends
 *     a queue below the next offset its valid checkpoint file gave it. A
 *     failed append publishes nothing: its bytes lie beyond write_pos, the
 *     next append overwrites them, recovery cuts them.
 *  3. Readers see a queue's slots [start_slot, visible) only; visible never
 *     passes the durable position under always/group.
 *  4. After any failed write, fsync or checkpoint the store is sticky: every
 *     later append, sync and wait returns the error until reopened. (ENOSPC
 *     while creating a new segment or index file writes nothing and is not
 *     sticky: the append fails cleanly and may be retried.)
 *  5. Retention removes whole segments from the front, never the active one,
 *     and only segments that end at or before the durable recovery point
 *     (ckpt_pos), so every unit in them is durable and visible.
 *  6. A segment's dirty flag is cleared only by sync_segments, under sync_mu,
 *     right before its fdatasync: a clear flag means "synced".
 *
 * THREADING AND LIFETIMES
 *   wmu (mutex)     serialises the writer path: append, roll, retain, close.
 *   rw (rwlock)     guards the tables: segs[], queues[], each index's files[],
 *                   start_slot/start_offset. Writers of the tables hold wmu
 *                   and take rw's write side briefly; readers (read, lookups,
 *                   info) hold the read side for the whole lookup + pread, so
 *                   a segment or index mapping they use cannot go away.
 *   sync_mu (mutex) serialises segment fdatasyncs (syncer, rn_log_sync,
 *                   checkpoint jobs). Segment fds are dup'ed under rw's read
 *                   side and synced without it: a long fdatasync never holds
 *                   up a roll, and retention cannot pull the fd away.
 *   smu (mutex)     guards the group ring, the checkpoint job queue, the
 *                   sticky error and the syncer handshake; a leaf lock.
 *   Lock order: wmu -> sync_mu -> rw; smu is never held while taking another.
 *   Queue structs live until close; index mappings and fences, segment fds
 *   and segment mappings until retention removes them (under rw's write
 *   side) or close. Readers use them only under rw's read side: reads copy
 *   batches with pread, time lookups decode in place through the mapping.
 *   rn_log_close must not race with other calls (log.h).
 */
#include "log/log.h"

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/index.h"
#include "log/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CKPT_MAGIC    0x4b434e52u   /* "RNCK" */
#define CLEAN_MAGIC   0x4c434e52u   /* "RNCL" */
#define FILE_VERSION  1u
#define CKPT_HDR      24
#define CKPT_ITEM     16
#define CKPT_MAX_QUEUES (1u << 20)
#define CLEAN_SIZE    20
#define RING_CAP      16384
#define UNKNOWN_NEXT  (-1)
#define CKPT_JOBS     32
/* Under fsync=never a roll's checkpoint waits this long, the kernel's default
 * dirty_expire: by then the kernel has written the finished segment back on
 * its own, so the checkpoint's fdatasync adds no writeback to the append path
 * (forcing 128 MiB of writeback per roll halves no-fsync throughput). */
#define NEVER_CKPT_DELAY_MS 30000

typedef struct rn_queue {
    uint32_t id;
    rn_idx_t ix;
    int64_t  next_offset;          /* writer: next offset to assign */
    int64_t  running_max;          /* writer: max timestamp so far */
    _Atomic uint64_t visible;      /* slots readers may use */
    uint64_t start_slot;           /* rw: first slot not retained away */
    int64_t  start_offset;         /* rw: log start */
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
    pthread_mutex_t wmu;
    pthread_rwlock_t rw;
    rn_seg_t *segs;
    size_t nsegs, capsegs;
    rn_queue_t **queues;
    size_t nqueues, capqueues;
    rn_queue_t *lastq;
    uint64_t write_pos;            /* writer */
    _Atomic uint64_t written_pos;
    _Atomic uint64_t durable_pos;
    _Atomic int sticky;
    pthread_mutex_t sync_mu;       /* serialises sync_segments */
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
};

/* ---- options ------------------------------------------------------------ */

void rn_log_opts_default(rn_log_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->fsync = RN_FSYNC_GROUP;
    o->fsync_interval_ms = 1000;
    o->group_window_us = 1000;
    o->segment_bytes = 128ull << 20;
    o->index_file_units = 65536;
    o->max_batch_bytes = 16u << 20;
}

int rn_fsync_parse(const char *s, rn_log_opts_t *o, char *errmsg)
{
    if (strcmp(s, "always") == 0) { o->fsync = RN_FSYNC_ALWAYS; return 0; }
    if (strcmp(s, "group") == 0) { o->fsync = RN_FSYNC_GROUP; return 0; }
    if (strcmp(s, "never") == 0) { o->fsync = RN_FSYNC_NEVER; return 0; }
    if (strncmp(s, "interval:", 9) == 0) {
        const char *p = s + 9;
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (*p >= '0' && *p <= '9' && *end == '\0' && errno == 0 && v >= 1 && v <= 86400000ul) {
            o->fsync = RN_FSYNC_INTERVAL;
            o->fsync_interval_ms = (uint32_t)v;
            return 0;
        }
    }
    return rn_errf(errmsg, RN_EINVAL,
                   "bad fsync policy '%s': use always, group, interval:MS (1..86400000) or never",
                   s);
}

const char *rn_fsync_name(rn_fsync_mode_t m)
{
    switch (m) {
    case RN_FSYNC_ALWAYS: return "always";
    case RN_FSYNC_GROUP: return "group";
    case RN_FSYNC_INTERVAL: return "interval";
    case RN_FSYNC_NEVER: return "never";
    }
    return "unknown";
}

static int check_opts(const rn_log_opts_t *in, rn_log_opts_t *o, char *errmsg)
{
    rn_log_opts_t d;
    rn_log_opts_default(&d);
    *o = *in;
    /* Zero numeric fields take the defaults. */
    if (!o->fsync_interval_ms) o->fsync_interval_ms = d.fsync_interval_ms;
    if (!o->segment_bytes) o->segment_bytes = d.segment_bytes;
    if (!o->index_file_units) o->index_file_units = d.index_file_units;
    if (!o->max_batch_bytes) o->max_batch_bytes = d.max_batch_bytes;
    if (o->fsync < RN_FSYNC_ALWAYS || o->fsync > RN_FSYNC_NEVER)
        return rn_errf(errmsg, RN_EINVAL, "unknown fsync mode %d", (int)o->fsync);
    if (o->max_batch_bytes < RN_BATCH_HEADER_SIZE || o->max_batch_bytes > RN_BATCH_MAX_BYTES)
        return rn_errf(errmsg, RN_EINVAL, "max_batch_bytes %u outside [%d, %u]",
                       o->max_batch_bytes, RN_BATCH_HEADER_SIZE, RN_BATCH_MAX_BYTES);
    if (o->segment_bytes < (uint64_t)o->max_batch_bytes + RN_SEG_HDR_SIZE ||
        o->segment_bytes > (1ull << 40))
        return rn_errf(errmsg, RN_EINVAL,
                       "segment_bytes %llu must hold one max_batch_bytes batch (%u) plus its "
                       "%d-byte entry header, and be at most 1 TiB",
                       (unsigned long long)o->segment_bytes, o->max_batch_bytes, RN_SEG_HDR_SIZE);
    if (o->index_file_units > (1u << 26))
        return rn_errf(errmsg, RN_EINVAL, "index_file_units %u above %u", o->index_file_units,
                       1u << 26);
    if (o->group_window_us > 1000000)
        return rn_errf(errmsg, RN_EINVAL, "group_window_us %u above 1 s", o->group_window_us);
    if (o->retention_ms < 0)
        return rn_errf(errmsg, RN_EINVAL, "retention_ms %lld is negative",
                       (long long)o->retention_ms);
    return 0;
}

/* ---- small helpers -------------------------------------------------------- */

static void be64_put(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)u; u >>= 8; }
}

static int64_t be64_get(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | p[i];
    return (int64_t)u;
}

static uint64_t unit_end_pos(const rn_idx_unit_t *u)
{
    /* A damaged unit of size 0 (lost) holds no log bytes. */
    return u->position + (u->size ? RN_SEG_HDR_SIZE + u->size : 0);
}

static int64_t unit_end_off(const rn_idx_unit_t *u)
{
    return u->base_offset + (int64_t)u->record_count;
}

static char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static rn_queue_t *find_queue(const rn_log_t *log, uint32_t id)
{
    size_t lo = 0, hi = log->nqueues;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t m = log->queues[mid]->id;
        if (m == id) return log->queues[mid];
        if (m < id) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* New queue struct with an empty index (files created lazily). */
static int queue_new(rn_log_t *log, uint32_t id, rn_queue_t **out)
{
    char name[16];
    snprintf(name, sizeof name, "%010u", id);
    char *dir = path_join(log->ix_dir, name);
    if (!dir) return -ENOMEM;
    rn_queue_t *q = calloc(1, sizeof *q);
    if (!q) { free(dir); return -ENOMEM; }
    int rc = rn_idx_init(&q->ix, dir, log->o.index_file_units);
    free(dir);
    if (rc != 0) { free(q); return rc; }
    q->id = id;
    q->running_max = INT64_MIN;
    q->scan_next = UNKNOWN_NEXT;
    q->fix_slot = -1;
    atomic_init(&q->visible, 0);
    *out = q;
    return 0;
}

static void queue_free(rn_queue_t *q)
{
    if (!q) return;
    rn_idx_close(&q->ix);
    free(q);
}

/* Insert q into the sorted table (caller holds rw write side or is alone). */
static int queue_insert(rn_log_t *log, rn_queue_t *q)
{
    if (log->nqueues == log->capqueues) {
        size_t nc = log->capqueues ? log->capqueues * 2 : 16;
        rn_queue_t **nq = realloc(log->queues, nc * sizeof *nq);
        if (!nq) return -ENOMEM;
        log->queues = nq;
        log->capqueues = nc;
    }
    size_t i = log->nqueues;
    while (i > 0 && log->queues[i - 1]->id > q->id) {
        log->queues[i] = log->queues[i - 1];
        i--;
    }
    log->queues[i] = q;
    log->nqueues++;
    return 0;
}

static int seg_push(rn_log_t *log, const rn_seg_t *s)
{
    if (log->nsegs == log->capsegs) {
        size_t nc = log->capsegs ? log->capsegs * 2 : 16;
        rn_seg_t *ns = realloc(log->segs, nc * sizeof *ns);
        if (!ns) return -ENOMEM;
        log->segs = ns;
        log->capsegs = nc;
    }
    log->segs[log->nsegs++] = *s;
    return 0;
}

/* Index of the segment holding position pos (the last one starting <= pos). */
static size_t seg_of(const rn_log_t *log, uint64_t pos)
{
    size_t lo = 0, hi = log->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid].start <= pos) lo = mid; else hi = mid;
    }
    return lo;
}

static uint64_t log_extent_end(const rn_log_t *log)
{
    const rn_seg_t *s = &log->segs[log->nsegs - 1];
    return s->start + s->size;
}

/* High watermark of q for a reader (rw read side held). */
static int64_t queue_hw(const rn_queue_t *q, uint64_t v)
{
    if (v > q->start_slot) {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, v - 1, &u);
        return unit_end_off(&u);
    }
    return q->start_offset;
}

/* ---- sticky errors, durability -------------------------------------------- */

static int set_sticky(rn_log_t *log, int rc, const char *what)
{
    pthread_mutex_lock(&log->smu);
    if (!log->sticky_rc) {
        log->sticky_rc = rc;
        snprintf(log->sticky_msg, sizeof log->sticky_msg, "%s", what);
        atomic_store(&log->sticky, 1);
    }
    pthread_cond_broadcast(&log->done_cv);
    pthread_cond_broadcast(&log->work_cv);
    pthread_mutex_unlock(&log->smu);
    return rc;
}

static int sticky_err(rn_log_t *log, char *errmsg)
{
    pthread_mutex_lock(&log->smu);
    rn_errf(errmsg, RN_ESTICKY, "store %s refuses writes since %s; reopen to recover", log->dir,
            log->sticky_msg);
    pthread_mutex_unlock(&log->smu);
    return RN_ESTICKY;
}

/* Everything up to position t is durable: publish it. */
static void advance_durable(rn_log_t *log, uint64_t t)
{
    pthread_mutex_lock(&log->smu);
    if (t > atomic_load(&log->durable_pos)) atomic_store(&log->durable_pos, t);
    while (log->rcount > 0 && log->ring[log->rhead].end <= t) {
        pend_t *p = &log->ring[log->rhead];
        atomic_store_explicit(&p->q->visible, p->units, memory_order_release);
        log->rhead = (log->rhead + 1) % RING_CAP;
        log->rcount--;
    }
    pthread_cond_broadcast(&log->done_cv);
    pthread_mutex_unlock(&log->smu);
}

/* fdatasync every dirty segment that starts below limit. A segment's dirty
 * flag is set by the writer after each pwritev, so a position read (under
 * smu or with acquire) before this call is covered when it returns 0.
 * The fds are dup'ed under the table read lock and synced without it, so a
 * long fdatasync never holds up a roll or a new index file (which take the
 * write side), and retention closing a segment cannot pull the fd away. */
static int sync_segments(rn_log_t *log, uint64_t limit, char *what, size_t whatsz)
{
    enum { BATCH = 8 };
    int rc = 0;
    size_t from = 0;
    /* One syncer at a time: a clear dirty flag must mean "synced", not "being
     * synced by another thread right now". */
    pthread_mutex_lock(&log->sync_mu);
    for (;;) {
        int fds[BATCH];
        uint64_t starts[BATCH];
        size_t n = 0;
        pthread_rwlock_rdlock(&log->rw);
        size_t i = from;
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
        from = i;
        pthread_rwlock_unlock(&log->rw);
        for (size_t k = 0; k < n; k++) {
            while (rc == 0 && rn_sys.fdatasync(fds[k]) < 0) {
                if (errno == EINTR) continue;
                rc = -errno;
                snprintf(what, whatsz, "fdatasync of commitlog/%020llu.log failed: %s",
                         (unsigned long long)starts[k], rn_strerror(rc));
            }
            close(fds[k]);
        }
        if (rc != 0 || !more) break;
    }
    pthread_mutex_unlock(&log->sync_mu);
    return rc;
}

/* fdatasync the index files of every queue (rw read side held by the caller
 * or no other thread running). */
static int sync_indexes(rn_log_t *log, char *errmsg)
{
    for (size_t k = 0; k < log->nqueues; k++) {
        int rc = rn_idx_sync(&log->queues[k]->ix, errmsg);
        if (rc != 0) return rc;
    }
    return 0;
}

static int ckpt_write(rn_log_t *log, const uint8_t *b, size_t n, char *errmsg);

/* A roll's recovery point, made durable off the writer path: sync the
 * segments before pos and every index file, then write the checkpoint. */
static int run_checkpoint(rn_log_t *log, uint64_t pos, const uint8_t *b, size_t n, char *what,
                          size_t whatsz)
{
    int rc = sync_segments(log, pos, what, whatsz);
    if (rc != 0) return rc;
    pthread_rwlock_rdlock(&log->rw);
    rc = sync_indexes(log, what);
    pthread_rwlock_unlock(&log->rw);
    if (rc != 0) return rc;
    return ckpt_write(log, b, n, what);
}

static uint64_t mono_ms(void)
{
    return rn_mono_ns() / 1000000u;
}

/* Queue a roll's checkpoint (smu held). When the queue is full the newest
 * job is replaced (it subsumes the one it replaces) so the oldest keep aging. */
static void post_checkpoint_job(rn_log_t *log, uint64_t pos, uint8_t *b, size_t n)
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
    pthread_mutex_unlock(&log->smu);
    int rc = run_checkpoint(log, pos, b, n, what, whatsz);
    free(b);
    if (rc != 0) {
        set_sticky(log, rc, what);
    } else {
        if (pos > atomic_load(&log->ckpt_pos)) atomic_store(&log->ckpt_pos, pos);
        advance_durable(log, pos);
    }
    pthread_mutex_lock(&log->smu);
    log->ckpt_running = 0;
    pthread_cond_broadcast(&log->done_cv);
}

/* Writer path (wmu held, so no new roll): make the recovery point reach pos,
 * running the pending roll checkpoint here or waiting for the syncer's. */
static int checkpoint_catch_up(rn_log_t *log, uint64_t pos)
{
    char what[RN_ERRMSG_SIZE];
    pthread_mutex_lock(&log->smu);
    while (atomic_load(&log->ckpt_pos) < pos && !log->sticky_rc) {
        if (log->ckpt_running) pthread_cond_wait(&log->done_cv, &log->smu);
        else if (log->njobs > 0) take_checkpoint_job(log, due_job(log, 1), what, sizeof what);
        else break;               /* no job (it could not be built): keep the old point */
    }
    int rc = log->sticky_rc;
    pthread_mutex_unlock(&log->smu);
    return rc;
}

static void sleep_us(uint32_t us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* The syncer thread, in every mode: roll checkpoints; under group, the group
 * commit (gather group_window_us, fdatasync, publish); under interval, an
 * fdatasync every fsync_interval_ms. */
static void *syncer_main(void *arg)
{
    rn_log_t *log = arg;
    char what[RN_ERRMSG_SIZE];
    int interval = log->o.fsync == RN_FSYNC_INTERVAL;
    uint64_t next_tick = mono_ms() + log->o.fsync_interval_ms;
    int was_idle = 1;                  /* gather only after a quiet period */
    pthread_mutex_lock(&log->smu);
    while (!log->stop) {
        int group_work = log->o.fsync == RN_FSYNC_GROUP && log->rcount > 0;
        int tick = interval && mono_ms() >= next_tick;
        int job = log->ckpt_running ? -1 : due_job(log, 0);
        if (log->sticky_rc || (!group_work && job < 0 && !tick)) {
            log->syncer_idle = 1;
            uint64_t ms = interval ? next_tick : UINT64_MAX;
            if (log->njobs > 0 && log->jobs[0].due_ms < ms) ms = log->jobs[0].due_ms;
            if (ms != UINT64_MAX && !log->sticky_rc) {
                struct timespec ts;
                ts.tv_sec = (time_t)(ms / 1000);
                ts.tv_nsec = (long)(ms % 1000) * 1000000;
                pthread_cond_timedwait(&log->work_cv, &log->smu, &ts);
            } else {
                pthread_cond_wait(&log->work_cv, &log->smu);
            }
            log->syncer_idle = 0;
            was_idle = 1;
            continue;
        }
        if (job >= 0) {
            take_checkpoint_job(log, job, what, sizeof what);
            continue;
        }
        pthread_mutex_unlock(&log->smu);
        /* The first append after a quiet period waits group_window_us for
         * company; appends that piled up during the previous fdatasync are
         * synced at once (that sync was their gathering window). */
        if (group_work && was_idle && log->o.group_window_us) sleep_us(log->o.group_window_us);
        was_idle = 0;
        pthread_mutex_lock(&log->smu);
        uint64_t t = atomic_load(&log->written_pos);
        pthread_mutex_unlock(&log->smu);
        int rc = 0;
        if (t > atomic_load(&log->durable_pos)) rc = sync_segments(log, UINT64_MAX, what, sizeof what);
        if (rc != 0) set_sticky(log, rc, what);
        else advance_durable(log, t);
        if (tick) next_tick = mono_ms() + log->o.fsync_interval_ms;
        pthread_mutex_lock(&log->smu);
    }
    pthread_mutex_unlock(&log->smu);
    return NULL;
}

/* ---- checkpoint and clean marker ------------------------------------------ */

/* The checkpoint bytes for position pos with every queue's next offset
 * (writer path or no other thread). Caller frees *out. */
static int ckpt_build(rn_log_t *log, uint64_t pos, uint8_t **out, size_t *len)
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

static int ckpt_write(rn_log_t *log, const uint8_t *b, size_t n, char *errmsg)
{
    int rc = rn_write_file_atomic(log->dir, "checkpoint", b, n);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot write %s/checkpoint: %s", log->dir, rn_strerror(rc));
    return 0;
}

static int write_checkpoint(rn_log_t *log, uint64_t pos, char *errmsg)
{
    uint8_t *b;
    size_t n;
    int rc = ckpt_build(log, pos, &b, &n);
    if (rc != 0) return rn_errf(errmsg, rc, "out of memory writing the checkpoint");
    rc = ckpt_write(log, b, n, errmsg);
    free(b);
    return rc;
}

typedef struct ckpt {
    uint64_t pos;
    uint32_t n;
    uint8_t *items;          /* into buf */
    uint8_t *buf;
} ckpt_t;

/* 1 = valid checkpoint read, 0 = missing or damaged, <0 = I/O error. */
static int read_checkpoint(rn_log_t *log, ckpt_t *c)
{
    memset(c, 0, sizeof *c);
    char *path = path_join(log->dir, "checkpoint");
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

static int write_clean(rn_log_t *log, uint64_t end, char *errmsg)
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
static int read_clean(rn_log_t *log, uint64_t *end)
{
    char *path = path_join(log->dir, "clean");
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

static int remove_clean(rn_log_t *log, char *errmsg)
{
    char *path = path_join(log->dir, "clean");
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

/* ---- open: segments -------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int load_segments(rn_log_t *log, char *errmsg)
{
    DIR *d = opendir(log->cl_dir);
    if (!d) {
        int rc = -errno;
        return rn_errf(errmsg, rc, "cannot list %s: %s", log->cl_dir, rn_strerror(rc));
    }
    uint64_t *starts = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t s;
        if (rn_seg_parse_name(de->d_name, &s) != 0) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            uint64_t *ns = realloc(starts, nc * sizeof *ns);
            if (!ns) { rc = -ENOMEM; goto out; }
            starts = ns;
            cap = nc;
        }
        starts[n++] = s;
    }
    if (n > 1) qsort(starts, n, sizeof *starts, cmp_u64);
    for (size_t i = 0; i < n; i++) {
        rn_seg_t s;
        rc = rn_seg_open(log->cl_dir, starts[i], &s, errmsg);
        if (rc != 0) goto out;
        rc = seg_push(log, &s);
        if (rc != 0) { rn_seg_close(&s); goto out; }
        if (i > 0) {
            const rn_seg_t *p = &log->segs[i - 1];
            if (p->start + p->size != s.start) {
                rc = rn_errf(errmsg, RN_ECORRUPT,
                             "%s/%020llu.log (%llu bytes) does not end where %020llu.log starts",
                             log->cl_dir, (unsigned long long)p->start,
                             (unsigned long long)p->size, (unsigned long long)s.start);
                goto out;
            }
        }
    }
    if (n == 0) {
        rn_seg_t s;
        rc = rn_seg_create(log->cl_dir, 0, log->o.segment_bytes, &s, errmsg);
        if (rc != 0) goto out;
        rc = seg_push(log, &s);
        if (rc != 0) rn_seg_close(&s);
    }
out:
    closedir(d);
    free(starts);
    return rc;
}

/* Delete everything under DIR/index (no index is trusted). */
static int remove_index_tree(rn_log_t *log, char *errmsg)
{
    DIR *d = opendir(log->ix_dir);
    if (!d) return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char *sub = path_join(log->ix_dir, de->d_name);
        if (!sub) { rc = -ENOMEM; break; }
        DIR *s = opendir(sub);
        if (s) {
            struct dirent *f;
            while ((f = readdir(s)) != NULL) {
                if (f->d_name[0] == '.') continue;
                char *fp = path_join(sub, f->d_name);
                if (fp) rn_sys.unlink(fp);
                free(fp);
            }
            closedir(s);
            rmdir(sub);
        } else {
            rn_sys.unlink(sub);
        }
        free(sub);
    }
    closedir(d);
    if (rc == 0) rc = rn_fsync_dir(log->ix_dir);
    if (rc != 0)
        rn_errf(errmsg, rc, "cannot clear %s: %s", log->ix_dir, rn_strerror(rc));
    return rc;
}

static int load_indexes(rn_log_t *log, int *damaged, char *errmsg)
{
    DIR *d = opendir(log->ix_dir);
    if (!d) {
        int rc = -errno;
        return rn_errf(errmsg, rc, "cannot list %s: %s", log->ix_dir, rn_strerror(rc));
    }
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (strlen(nm) != 10 || strspn(nm, "0123456789") != 10) continue;
        unsigned long long id = strtoull(nm, NULL, 10);
        if (id > UINT32_MAX) continue;
        char *sub = path_join(log->ix_dir, nm);
        if (!sub) { rc = -ENOMEM; break; }
        rn_queue_t *q = calloc(1, sizeof *q);
        if (!q) { free(sub); rc = -ENOMEM; break; }
        rn_idx_load_t rep;
        rc = rn_idx_load(&q->ix, sub, log->o.index_file_units, RN_BATCH_MAX_BYTES, &rep, errmsg);
        free(sub);
        if (rc != 0) { free(q); break; }
        q->id = (uint32_t)id;
        q->running_max = INT64_MIN;
        q->scan_next = UNKNOWN_NEXT;
        q->fix_slot = -1;
        atomic_init(&q->visible, 0);
        if (rep.damaged) *damaged = 1;
        log->rec.dropped_units += (uint32_t)rep.dropped;
        rc = queue_insert(log, q);
        if (rc != 0) { queue_free(q); break; }
    }
    closedir(d);
    return rc;
}

/* ---- open: the scan ------------------------------------------------------- */

/* Set every queue's cursor (first unit at or after s) and expected next offset. */
static void scan_prepare(rn_log_t *log, uint64_t s, int ckpt_ok)
{
    for (size_t i = 0; i < log->nqueues; i++) {
        rn_queue_t *q = log->queues[i];
        q->cursor = rn_idx_find_position(&q->ix, 0, q->ix.nunits, s);
        if (q->cursor > 0) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->cursor - 1, &u);
            q->scan_next = unit_end_off(&u);
            q->running_max = u.max_ts;
        } else if (ckpt_ok && !q->in_ckpt) {
            q->scan_next = 0;         /* born after the recovery point: starts at 0 */
        } else {
            /* Not "0 when s == 0": a recovery that cut a queue's durable
             * entries keeps its next offset (offsets are never reused), so
             * its first entry at position 0 may carry any base offset. The
             * entry's base offset is under hcrc either way. */
            q->scan_next = UNKNOWN_NEXT;
        }
    }
}

/* Append a rebuilt unit to q's index (open time: no readers yet). */
static int scan_add_unit(rn_log_t *log, rn_queue_t *q, const rn_idx_unit_t *u, char *errmsg)
{
    if (rn_idx_needs_file(&q->ix)) {
        rn_idx_file_t f;
        int rc = rn_idx_prepare_file(&q->ix, u->base_offset, &f, errmsg);
        if (rc != 0) return rc;
        rc = rn_idx_attach_file(&q->ix, &f);
        if (rc != 0) { rn_idx_discard_file(&q->ix, &f); return rc; }
    }
    rn_idx_put(&q->ix, u);
    log->rec.rebuilt_units++;
    return 0;
}

/* Note what recovery did to offsets [from, to) of a queue. */
static void rec_range(rn_log_t *log, rn_log_range_kind_t kind, uint32_t queue, int64_t from,
                      int64_t to, uint64_t pos)
{
    rn_log_recovery_t *r = &log->rec;
    if (r->nranges < RN_LOG_REC_RANGES)
        r->ranges[r->nranges] = (rn_log_range_t){kind, queue, from, to, pos};
    r->nranges++;
}

static int hole_add(rn_log_t *log, uint64_t start, uint64_t end)
{
    if (log->nholes == log->capholes) {
        size_t nc = log->capholes ? log->capholes * 2 : 8;
        hole_t *nh = realloc(log->holes, nc * sizeof *nh);
        if (!nh) return -ENOMEM;
        log->holes = nh;
        log->capholes = nc;
    }
    log->holes[log->nholes++] = (hole_t){start, end};
    log->rec.skipped_bytes += end - start;
    return 0;
}

/* The last hole inside [lo, hi), or NULL. */
static const hole_t *hole_within(const rn_log_t *log, uint64_t lo, uint64_t hi)
{
    for (size_t k = log->nholes; k > 0; k--) {
        const hole_t *h = &log->holes[k - 1];
        if (h->start >= lo && h->end <= hi) return h;
        if (h->end <= lo) break;
    }
    return NULL;
}

static int in_hole(const rn_log_t *log, uint64_t pos)
{
    for (size_t k = log->nholes; k > 0; k--) {
        const hole_t *h = &log->holes[k - 1];
        if (pos >= h->start && pos < h->end) return 1;
        if (h->end <= pos) break;
    }
    return 0;
}

enum { ENT_OK, ENT_END, ENT_BAD };

/* Classify the avail bytes at b (up to the segment's end) as an entry:
 * ENT_END for a zero header or no room for one; ENT_OK when the header CRC,
 * the batch header and the Kafka CRC verify (*h and *bh filled); ENT_BAD
 * otherwise. *hdr_ok says the header CRC verified: the entry's queue, length
 * and base offset can be trusted even when its batch cannot. */
static int entry_check(const uint8_t *b, uint64_t avail, rn_seg_hdr_t *h, rn_batch_header_t *bh,
                       int *hdr_ok)
{
    static const uint8_t zero[RN_SEG_HDR_SIZE];
    char why[RN_ERRMSG_SIZE];
    *hdr_ok = 0;
    if (avail < RN_SEG_HDR_SIZE || memcmp(b, zero, RN_SEG_HDR_SIZE) == 0) return ENT_END;
    rn_seg_hdr_decode(b, h);
    if (h->batch_len < RN_BATCH_HEADER_SIZE || h->batch_len > RN_BATCH_MAX_BYTES ||
        RN_SEG_HDR_SIZE + (uint64_t)h->batch_len > avail ||
        rn_seg_hdr_check(b, b + RN_SEG_HDR_SIZE) != 0)
        return ENT_BAD;
    *hdr_ok = 1;
    if (rn_batch_validate(b + RN_SEG_HDR_SIZE, h->batch_len, &rn_batch_default_limits, 0, bh,
                          why) != 0 || bh->record_count < 1)
        return ENT_BAD;
    return ENT_OK;
}

/* Read the entry at p of sg into buf (header, then batch) and classify it
 * (entry_check); a negative errno on a read error. */
static int read_entry(const rn_seg_t *sg, uint64_t p, rn_buf_t *buf, rn_seg_hdr_t *h,
                      rn_batch_header_t *bh, int *hdr_ok, char *errmsg)
{
    uint64_t avail = sg->start + sg->size - p;
    size_t got = 0, more = 0;
    *hdr_ok = 0;
    if (avail < RN_SEG_HDR_SIZE) return ENT_END;
    buf->len = 0;
    int rc = rn_buf_reserve(buf, RN_SEG_HDR_SIZE, 0);
    if (rc == 0) rc = rn_pread_full(sg->fd, buf->data, RN_SEG_HDR_SIZE, (off_t)(p - sg->start), &got);
    if (rc == 0 && got == RN_SEG_HDR_SIZE) {
        uint32_t len = rn_le32_get(buf->data);
        if (len >= RN_BATCH_HEADER_SIZE && len <= RN_BATCH_MAX_BYTES &&
            RN_SEG_HDR_SIZE + (uint64_t)len <= avail) {
            rc = rn_buf_reserve(buf, RN_SEG_HDR_SIZE + len, 0);
            if (rc == 0)
                rc = rn_pread_full(sg->fd, buf->data + RN_SEG_HDR_SIZE, len,
                                   (off_t)(p - sg->start + RN_SEG_HDR_SIZE), &more);
        }
    }
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot read commitlog/%020llu.log at byte %llu: %s",
                       (unsigned long long)sg->start, (unsigned long long)(p - sg->start),
                       rn_strerror(rc));
    if (got < RN_SEG_HDR_SIZE) return ENT_END;
    return entry_check(buf->data, got + more, h, bh, hdr_ok);
}

/* Whether base may be the next batch of queue id during the scan. */
static int base_fits(const rn_log_t *log, uint32_t id, int64_t base)
{
    const rn_queue_t *q = find_queue(log, id);
    if (base < 0 || !q || q->scan_next == UNKNOWN_NEXT) return base >= 0;
    if (q->fix_slot >= 0 && (uint64_t)q->fix_slot + 1 == q->ix.nunits) {
        rn_idx_unit_t f;                  /* its record count is a guess */
        rn_idx_get(&q->ix, (uint64_t)q->fix_slot, &f);
        return base > f.base_offset;
    }
    return base >= q->scan_next;
}

/* Zeros at p end a segment's entries, unless something vouches for data
 * after them: the recovery point or clean marker lies beyond p, or an index
 * unit not yet confirmed does. Only then is the rest of the segment searched
 * for intact entries (a hole of zeros inside acknowledged data). */
static int zeros_suspect(const rn_log_t *log, uint64_t p)
{
    if (p < log->vouched_end) return 1;
    for (size_t k = 0; k < log->nqueues; k++) {
        const rn_queue_t *q = log->queues[k];
        if (q->cursor < q->ix.nunits) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->ix.nunits - 1, &u);
            if (u.position > p) return 1;
        }
    }
    return 0;
}

/* The first byte at or after file offset o (< n) of sg that may hold data,
 * skipping what the file system knows to be holes or unwritten extents
 * (SEEK_DATA: a preallocated segment's unused tail costs no reads); n when
 * none. *data_end = where that data stretch ends. */
static uint64_t next_data(const rn_seg_t *sg, uint64_t o, uint64_t n, uint64_t *data_end)
{
    off_t d = lseek(sg->fd, (off_t)o, SEEK_DATA);
    if (d < 0) {
        *data_end = n;
        return errno == ENXIO ? n : o;       /* ENXIO: no data after o; else unsupported */
    }
    off_t h = lseek(sg->fd, d, SEEK_HOLE);
    *data_end = h < 0 || (uint64_t)h > n ? n : (uint64_t)h;
    return (uint64_t)d > n ? n : (uint64_t)d;
}

/* The first position >= from, in segment i or a later one (only segment i
 * when one_seg), holding an intact entry whose base offset fits its queue:
 * 1 and *at when there is one. Reads through the segments' mappings, and
 * steps over holes and runs of zeros without trying each byte (an entry's
 * length field is never zero). */
static int find_intact(const rn_log_t *log, size_t i, uint64_t from, int one_seg, uint64_t *at)
{
    for (; i < log->nsegs; i++) {
        const rn_seg_t *sg = &log->segs[i];
        uint64_t n = sg->size, data_end = 0;
        uint64_t o = from > sg->start ? from - sg->start : 0;
        int found = 0;
        /* No readahead while searching: it would fill the unwritten tail's
         * pages with zeros, which SEEK_DATA then reports as data. */
        if (sg->map) madvise((void *)(uintptr_t)sg->map, (size_t)n, MADV_RANDOM);
        while (sg->map && o + RN_SEG_HDR_SIZE + RN_BATCH_HEADER_SIZE <= n) {
            if (o >= data_end) {
                uint64_t d = next_data(sg, o, n, &data_end);
                if (d >= n) break;
                o = d > 3 && d - 3 > o ? d - 3 : o;   /* a length may start in the hole */
                if (data_end <= o) data_end = o + 1;
            }
            /* Skip zeros a word at a time: a length field has a non-zero
             * byte, so no entry starts more than 3 bytes before one. */
            uint64_t z = o;
            while (z + 8 <= data_end && z + 8 <= n) {
                uint64_t w;
                memcpy(&w, sg->map + z, 8);
                if (w) break;
                z += 8;
            }
            if (z >= o + 4) { o = z - 3; continue; }
            /* An intact entry was written whole: its header is data. Never
             * touch a hole's pages (a fault would make them data). */
            if (o + RN_SEG_HDR_SIZE > data_end) { o = data_end; continue; }
            const uint8_t *b = sg->map + o;
            uint64_t p = sg->start + o++;
            uint32_t len = rn_le32_get(b);
            if (len < RN_BATCH_HEADER_SIZE || len > RN_BATCH_MAX_BYTES ||
                p + RN_SEG_HDR_SIZE + len > sg->start + n)
                continue;
            rn_seg_hdr_t h;
            rn_batch_header_t bh;
            int hok;
            if (entry_check(b, sg->start + n - p, &h, &bh, &hok) != ENT_OK) continue;
            if (!base_fits(log, h.queue, bh.base_offset)) continue;
            *at = p;
            found = 1;
            break;
        }
        if (sg->map) madvise((void *)(uintptr_t)sg->map, (size_t)n, MADV_NORMAL);
        if (found) return 1;
        if (one_seg) break;
    }
    return 0;
}

/* Step q's cursor over the units before position pos whose entries the scan
 * could not see: units already marked damaged, and units of entries inside a
 * hole, which are marked damaged now (their offsets stay taken). Stops at the
 * first other unit. */
static void pass_units(rn_log_t *log, rn_queue_t *q, uint64_t pos)
{
    while (q->cursor < q->ix.nunits) {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, q->cursor, &u);
        if (u.flags & RN_IDX_DAMAGED) {
            if (unit_end_pos(&u) > pos) break;
        } else {
            if (u.position >= pos || !in_hole(log, u.position)) break;
            u.flags |= RN_IDX_DAMAGED;
            rn_idx_set(&q->ix, q->cursor, &u);
            log->rec.damaged_batches++;
            rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, u.base_offset, unit_end_off(&u),
                      u.position);
        }
        q->cursor++;
        q->scan_next = unit_end_off(&u);
        q->running_max = u.max_ts;
    }
}

/* Add a damaged unit for offsets [from, to) of q in hole hl (what held them
 * is gone), placed after q's last unit. */
static int add_gap_unit(rn_log_t *log, rn_queue_t *q, int64_t from, int64_t to, const hole_t *hl,
                        char *errmsg)
{
    uint64_t pos = hl->start;
    if (q->ix.nunits > 0 && q->ix.nfiles > 0) {
        rn_idx_unit_t l;
        rn_idx_get(&q->ix, q->ix.nunits - 1, &l);
        if (unit_end_pos(&l) > pos) pos = unit_end_pos(&l);
    }
    rn_idx_unit_t u = {
        .position = pos, .base_offset = from, .first_ts = q->running_max,
        .max_ts = q->running_max,
        .size = hl->end - pos > RN_SEG_HDR_SIZE ? (uint32_t)(hl->end - pos - RN_SEG_HDR_SIZE) : 0,
        .record_count = (uint32_t)(to - from), .flags = RN_IDX_DAMAGED,
    };
    if (hl->end - pos - RN_SEG_HDR_SIZE > UINT32_MAX) u.size = 0;
    int rc = scan_add_unit(log, q, &u, errmsg);
    if (rc != 0) return rc;
    log->rec.rebuilt_units--;
    log->rec.damaged_batches++;
    rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, from, to, pos);
    q->cursor = q->ix.nunits;
    q->scan_next = to;
    return 0;
}

static int find_or_add_queue(rn_log_t *log, uint32_t id, int ckpt_ok, rn_queue_t **out)
{
    rn_queue_t *q = find_queue(log, id);
    if (!q) {
        int rc = queue_new(log, id, &q);
        if (rc == 0) rc = queue_insert(log, q);
        if (rc != 0) { queue_free(q); return rc; }
        q->scan_next = ckpt_ok ? 0 : UNKNOWN_NEXT;   /* see scan_prepare */
    }
    *out = q;
    return 0;
}

/* An entry at p failed its checks. When intact entries follow it, step over
 * it: mark what it held damaged (from its index unit, or from its own header
 * when the header CRC verifies), note the hole, set *next to where the scan
 * goes on and return 1. When nothing intact follows (a torn tail) return 0. */
static int step_over(rn_log_t *log, size_t i, uint64_t p, const uint8_t *ent, int hdr_ok,
                     int ckpt_ok, uint64_t *next, char *errmsg)
{
    const rn_seg_t *sg = &log->segs[i];
    uint64_t segend = sg->start + sg->size, at;
    rn_queue_t *owner = NULL;
    rn_idx_unit_t u;
    int rc;
    for (size_t k = 0; k < log->nqueues; k++) pass_units(log, log->queues[k], p);
    /* The index may know this entry exactly. */
    for (size_t k = 0; k < log->nqueues && !owner; k++) {
        rn_queue_t *q = log->queues[k];
        if (q->cursor >= q->ix.nunits) continue;
        rn_idx_get(&q->ix, q->cursor, &u);
        if (u.position == p && u.size && unit_end_pos(&u) <= segend) owner = q;
    }
    if (owner) {
        if (!find_intact(log, i, unit_end_pos(&u), 0, &at)) return 0;
        if (!(u.flags & RN_IDX_DAMAGED)) {
            u.flags |= RN_IDX_DAMAGED;
            rn_idx_set(&owner->ix, owner->cursor, &u);
            log->rec.damaged_batches++;
            rec_range(log, RN_LOG_RANGE_DAMAGED, owner->id, u.base_offset, unit_end_off(&u), p);
        }
        owner->cursor++;
        owner->scan_next = unit_end_off(&u);
        owner->running_max = u.max_ts;
        *next = unit_end_pos(&u);
        return hole_add(log, p, *next) == 0 ? 1 : -ENOMEM;
    }
    /* Its header is intact: its queue, base offset and length are known. */
    rn_seg_hdr_t h;
    rn_seg_hdr_decode(ent, &h);
    int64_t base = be64_get(ent + RN_SEG_HDR_SIZE);
    const rn_queue_t *hq = find_queue(log, h.queue);
    if (hdr_ok && base >= 0 && (!hq || hq->scan_next == UNKNOWN_NEXT || hq->scan_next == base)) {
        uint64_t end = p + RN_SEG_HDR_SIZE + h.batch_len;
        if (!find_intact(log, i, end, 0, &at)) return 0;
        rc = find_or_add_queue(log, h.queue, ckpt_ok, &owner);
        if (rc != 0) return rc;
        log->rec.dropped_units += (uint32_t)rn_idx_truncate(&owner->ix, owner->cursor);
        /* Its record count is a guess (see fix_slot): the larger of the
         * batch's recordCount and lastOffsetDelta + 1 that is plausible, so
         * a damaged count errs towards skipping offsets, not reusing them. */
        const uint8_t *c = ent + RN_SEG_HDR_SIZE + 57, *dl = ent + RN_SEG_HDR_SIZE + 23;
        uint32_t count = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
        uint32_t delta = (uint32_t)dl[0] << 24 | (uint32_t)dl[1] << 16 | (uint32_t)dl[2] << 8 | dl[3];
        if (count < 1 || count > RN_BATCH_MAX_RECORDS) count = 1;
        if (delta < RN_BATCH_MAX_RECORDS && delta + 1 > count) count = delta + 1;
        u = (rn_idx_unit_t){
            .position = p, .base_offset = base, .first_ts = owner->running_max,
            .max_ts = owner->running_max, .size = h.batch_len, .record_count = count,
            .flags = RN_IDX_DAMAGED,
        };
        rc = scan_add_unit(log, owner, &u, errmsg);
        if (rc != 0) return rc;
        log->rec.rebuilt_units--;
        log->rec.damaged_batches++;
        owner->fix_slot = (int64_t)owner->ix.nunits - 1;
        owner->cursor = owner->ix.nunits;
        owner->scan_next = base + count;
        *next = end;
        return hole_add(log, p, end) == 0 ? 1 : -ENOMEM;
    }
    /* Nothing known: resynchronise on the next intact entry. */
    if (!find_intact(log, i, p + 1, 0, &at)) return 0;
    if (at > segend) at = segend;      /* the next segment starts with it */
    *next = at;
    return hole_add(log, p, at) == 0 ? 1 : -ENOMEM;
}

/* Verify entries from position s on. *end = the log's end; *bad = 1 when it
 * ended at a bad entry rather than at zeros / the end of the last segment.
 * A bad entry followed by intact ones is stepped over (step_over), and zeros
 * followed by intact entries in the same segment too: only damage with
 * nothing intact after it ends the log. */
static int scan(rn_log_t *log, uint64_t s, int ckpt_ok, uint64_t *end, int *bad, char *errmsg)
{
    rn_buf_t buf = RN_BUF_INIT;
    int rc = 0;
    uint64_t p = s;
    size_t i = seg_of(log, p);
    *bad = 0;
    log->nholes = 0;
    scan_prepare(log, s, ckpt_ok);
    for (;;) {
        const rn_seg_t *sg = &log->segs[i];
        uint64_t segend = sg->start + sg->size, at;
        rn_seg_hdr_t h;
        rn_batch_header_t bh;
        int hok = 0;
        int k = read_entry(sg, p, &buf, &h, &bh, &hok, errmsg);
        if (k < 0) { rc = k; goto out; }
        if (k == ENT_END) {
            /* Zeros end a segment's entries, unless intact ones follow them. */
            if (p + RN_SEG_HDR_SIZE <= segend && zeros_suspect(log, p) &&
                find_intact(log, i, p + 1, 1, &at)) {
                rc = hole_add(log, p, at);
                if (rc != 0) goto out;
                p = at;
                continue;
            }
            if (i + 1 < log->nsegs) { p = log->segs[++i].start; continue; }
            break;
        }
        rn_queue_t *q = NULL;
        if (k == ENT_OK && !base_fits(log, h.queue, bh.base_offset)) k = ENT_BAD;
        if (k == ENT_OK) {
            rc = find_or_add_queue(log, h.queue, ckpt_ok, &q);
            if (rc != 0) goto out;
            pass_units(log, q, p);
            /* A damaged unit built from a header guessed its record count:
             * the queue's next batch says where it really ended. */
            if (q->fix_slot >= 0 && (uint64_t)q->fix_slot + 1 == q->ix.nunits &&
                bh.base_offset != q->scan_next) {
                rn_idx_unit_t f;
                rn_idx_get(&q->ix, (uint64_t)q->fix_slot, &f);
                if (bh.base_offset > f.base_offset &&
                    bh.base_offset - f.base_offset <= (int64_t)UINT32_MAX) {
                    f.record_count = (uint32_t)(bh.base_offset - f.base_offset);
                    rn_idx_set(&q->ix, (uint64_t)q->fix_slot, &f);
                    q->scan_next = bh.base_offset;
                }
            }
            if (q->fix_slot >= 0) {
                rn_idx_unit_t f;
                rn_idx_get(&q->ix, (uint64_t)q->fix_slot, &f);
                rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, f.base_offset, unit_end_off(&f),
                          f.position);
                q->fix_slot = -1;
            }
            if (q->scan_next != UNKNOWN_NEXT && bh.base_offset != q->scan_next) {
                /* Offsets skipped: only where damage lies between. */
                uint64_t lo = s;
                if (q->ix.nunits > 0 && q->ix.nfiles > 0 && q->cursor > 0) {
                    rn_idx_unit_t l;
                    rn_idx_get(&q->ix, q->cursor - 1, &l);
                    lo = unit_end_pos(&l);
                }
                const hole_t *hl = hole_within(log, lo, p);
                if (!hl || bh.base_offset - q->scan_next > (int64_t)UINT32_MAX) {
                    k = ENT_BAD;
                } else {
                    log->rec.dropped_units += (uint32_t)rn_idx_truncate(&q->ix, q->cursor);
                    rc = add_gap_unit(log, q, q->scan_next, bh.base_offset, hl, errmsg);
                    if (rc != 0) goto out;
                }
            } else if (q->scan_next == UNKNOWN_NEXT && log->nholes > 0 && bh.base_offset > 0 &&
                       log->segs[0].start == 0 && q->ix.nunits == 0 &&
                       bh.base_offset <= (int64_t)UINT32_MAX) {
                /* Its first batches lay in the damage (nothing was ever
                 * retained away, so the queue began at offset 0). */
                rc = add_gap_unit(log, q, 0, bh.base_offset, &log->holes[log->nholes - 1],
                                  errmsg);
                if (rc != 0) goto out;
            }
        }
        if (k == ENT_BAD) {
            uint64_t next = p;
            rc = step_over(log, i, p, buf.data, hok, ckpt_ok, &next, errmsg);
            if (rc < 0) goto out;
            if (rc == 0) { *bad = 1; break; }
            rc = 0;
            p = next;
            while (i + 1 < log->nsegs && log->segs[i + 1].start <= p) i++;
            continue;
        }
        int matched = 0;
        if (q->cursor < q->ix.nunits) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->cursor, &u);
            if (u.position == p && u.size == h.batch_len && u.base_offset == bh.base_offset &&
                u.record_count == (uint32_t)bh.record_count && !(u.flags & RN_IDX_DAMAGED)) {
                q->cursor++;
                q->running_max = u.max_ts;
                matched = 1;
            } else {
                log->rec.dropped_units += (uint32_t)rn_idx_truncate(&q->ix, q->cursor);
            }
        }
        if (!matched) {
            rn_idx_unit_t u = {
                .position = p, .base_offset = bh.base_offset, .first_ts = bh.first_timestamp,
                .max_ts = bh.max_timestamp > q->running_max ? bh.max_timestamp : q->running_max,
                .size = h.batch_len, .record_count = (uint32_t)bh.record_count, .flags = 0,
            };
            rc = scan_add_unit(log, q, &u, errmsg);
            if (rc != 0) goto out;
            q->cursor = q->ix.nunits;
            q->running_max = u.max_ts;
        }
        q->scan_next = bh.base_offset + bh.record_count;
        p += RN_SEG_HDR_SIZE + h.batch_len;
        log->rec.scanned_bytes += RN_SEG_HDR_SIZE + h.batch_len;
    }
    /* Units the scan did not confirm describe entries that are not there
     * (damaged ones before the end stay). */
    for (size_t k = 0; k < log->nqueues; k++) {
        rn_queue_t *q = log->queues[k];
        pass_units(log, q, p);
        if (q->fix_slot >= 0) {
            rn_idx_unit_t f;
            rn_idx_get(&q->ix, (uint64_t)q->fix_slot, &f);
            if (q->cursor == q->ix.nunits && (uint64_t)q->fix_slot + 1 == q->ix.nunits &&
                q->in_ckpt && q->ckpt_next > unit_end_off(&f) &&
                q->ckpt_next - f.base_offset <= (int64_t)UINT32_MAX) {
                /* The checkpoint says where this queue's offsets ended. */
                f.record_count = (uint32_t)(q->ckpt_next - f.base_offset);
                rn_idx_set(&q->ix, (uint64_t)q->fix_slot, &f);
            }
            rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, f.base_offset, unit_end_off(&f),
                      f.position);
            q->fix_slot = -1;
        }
        if (q->cursor < q->ix.nunits) {
            rn_idx_unit_t a, b;
            rn_idx_get(&q->ix, q->cursor, &a);
            rn_idx_get(&q->ix, q->ix.nunits - 1, &b);
            rec_range(log, RN_LOG_RANGE_DROPPED, q->id, a.base_offset, unit_end_off(&b),
                      a.position);
        }
        log->rec.dropped_units += (uint32_t)rn_idx_truncate(&q->ix, q->cursor);
    }
    *end = p;
out:
    rn_buf_free(&buf);
    return rc;
}

/* Cut the log at end: zero the rest of its segment, delete later segments. */
static int cut_log(rn_log_t *log, uint64_t end, int bad, char *errmsg)
{
    size_t i = seg_of(log, end);
    rn_seg_t *sg = &log->segs[i];
    int rc;
    if (bad) log->rec.truncated_bytes += sg->start + sg->size - end;
    rc = rn_seg_zero(sg, end - sg->start, bad, errmsg);
    if (rc != 0) return rc;
    while (log->nsegs > i + 1) {
        rn_seg_t *l = &log->segs[log->nsegs - 1];
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_name(name, l->start);
        char *path = path_join(log->cl_dir, name);
        if (!path) return -ENOMEM;
        log->rec.truncated_bytes += l->size;
        rn_seg_close(l);
        if (rn_sys.unlink(path) < 0) {
            rc = -errno;
            rn_errf(errmsg, rc, "cannot delete %s: %s", path, rn_strerror(rc));
            free(path);
            return rc;
        }
        free(path);
        log->nsegs--;
    }
    rc = rn_fsync_dir(log->cl_dir);
    if (rc != 0) return rn_errf(errmsg, rc, "cannot fsync %s: %s", log->cl_dir, rn_strerror(rc));
    return 0;
}

/* Per-queue state from its (now trusted) units: next offset, running max,
 * log start, visible; segment max timestamps. */
static void settle_queues(rn_log_t *log)
{
    uint64_t first = log->segs[0].start;
    for (size_t k = 0; k < log->nqueues; k++) {
        rn_queue_t *q = log->queues[k];
        uint64_t n = q->ix.nunits;
        uint64_t base_slot = q->ix.nfiles ? q->ix.files[0].first_slot : n;
        if (n > base_slot) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, n - 1, &u);
            q->next_offset = unit_end_off(&u);
            q->running_max = u.max_ts;
        } else {
            q->next_offset = q->in_ckpt ? q->ckpt_next : 0;
            q->running_max = INT64_MIN;
        }
        q->start_slot = n > base_slot ? rn_idx_find_position(&q->ix, base_slot, n, first) : n;
        if (q->start_slot < n) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->start_slot, &u);
            q->start_offset = u.base_offset;
        } else {
            q->start_offset = q->next_offset;
        }
        rn_idx_drop_below(&q->ix, q->start_slot);
        atomic_store(&q->visible, n);
        size_t si = 0;
        for (uint64_t s = q->start_slot; s < n; s++) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, s, &u);
            while (si + 1 < log->nsegs && log->segs[si + 1].start <= u.position) si++;
            if (u.max_ts > log->segs[si].max_ts) log->segs[si].max_ts = u.max_ts;
        }
    }
}

/* 1 when, for every queue, the entry of its last unit before the recovery
 * point p is in the log as that unit says (header CRC, length, queue, base
 * offset); 0 when one is not (the checkpoint cannot be trusted); <0 on I/O
 * errors. One pread per queue. */
static int trusted_tails_match(rn_log_t *log, uint64_t p)
{
    uint64_t first = log->segs[0].start;
    for (size_t k = 0; k < log->nqueues; k++) {
        rn_queue_t *q = log->queues[k];
        uint64_t n = rn_idx_find_position(&q->ix, 0, q->ix.nunits, p);
        rn_idx_unit_t u;
        for (; n > 0; n--) {                          /* damaged units hold no entry to check */
            rn_idx_get(&q->ix, n - 1, &u);
            if (!(u.flags & RN_IDX_DAMAGED)) break;
        }
        if (n == 0) continue;
        if (u.position < first) continue;             /* retained away */
        const rn_seg_t *sg = &log->segs[seg_of(log, u.position)];
        if (unit_end_pos(&u) > sg->start + sg->size) return 0;
        uint8_t b[RN_SEG_HDR_SIZE + RN_SEG_HCRC_BATCH];
        size_t got;
        int rc = rn_pread_full(sg->fd, b, sizeof b, (off_t)(u.position - sg->start), &got);
        if (rc != 0) return rc;
        rn_seg_hdr_t h;
        rn_seg_hdr_decode(b, &h);
        if (got != sizeof b || rn_seg_hdr_check(b, b + RN_SEG_HDR_SIZE) != 0 ||
            h.batch_len != u.size || h.queue != q->id ||
            be64_get(b + RN_SEG_HDR_SIZE) != u.base_offset)
            return 0;
    }
    return 1;
}

/* After the scan, before anything is cut: every queue must still reach the
 * next offset the checkpoint file gave it (those offsets were durable when it
 * was written). A queue that does not lost acknowledged data: refuse to open,
 * naming what is missing, or (accept_loss) mark the missing offsets lost with
 * a damaged unit of size 0 at the log's end, so the next offset stays where
 * the checkpoint said and no offset is handed out twice. */
static int check_missing(rn_log_t *log, const ckpt_t *c, uint64_t end, char *errmsg)
{
    char what[RN_ERRMSG_SIZE] = "";
    size_t w = 0;
    int nmiss = 0, rc;
    for (uint32_t k = 0; k < c->n; k++) {
        const uint8_t *it = c->items + (size_t)k * CKPT_ITEM;
        uint32_t id = rn_le32_get(it);
        int64_t next = (int64_t)rn_le64_get(it + 8);
        if (next <= 0) continue;
        rn_queue_t *q = find_queue(log, id);
        int64_t have;
        rn_idx_unit_t l;
        if (q && q->ix.nfiles > 0 && q->ix.nunits > q->ix.files[0].first_slot) {
            rn_idx_get(&q->ix, q->ix.nunits - 1, &l);
            have = unit_end_off(&l);
        } else if (log->segs[0].start == 0) {
            have = 0;                     /* never retained away, yet nothing left */
        } else {
            continue;                     /* retention took its units: settle_queues keeps next */
        }
        if (have >= next) continue;
        nmiss++;
        if (!log->o.accept_loss) {
            if (w < 120) {
                int n = snprintf(what + w, sizeof what - w, "%squeue %u offsets [%lld, %lld)",
                                 nmiss > 1 ? ", " : "", id, (long long)have, (long long)next);
                if (n > 0) w += (size_t)n;
            }
            continue;
        }
        if (!q) {
            rc = find_or_add_queue(log, id, 0, &q);
            if (rc != 0) return rn_errf(errmsg, rc, "out of memory adding queue %u", id);
        }
        if (next - have > (int64_t)UINT32_MAX)
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u lost %lld offsets, more than one "
                           "index unit can mark", id, (long long)(next - have));
        rn_idx_unit_t u = {
            .position = end, .base_offset = have, .first_ts = q->running_max,
            .max_ts = q->running_max, .size = 0, .record_count = (uint32_t)(next - have),
            .flags = RN_IDX_DAMAGED,
        };
        rc = scan_add_unit(log, q, &u, errmsg);
        if (rc != 0) return rc;
        log->rec.rebuilt_units--;
        log->rec.lost_ranges++;
        rec_range(log, RN_LOG_RANGE_LOST, id, have, next, end);
    }
    if (nmiss && !log->o.accept_loss)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "lost acknowledged data (restore the commit log, or run `runnel store "
                       "repair --accept-loss`; offsets are never reused): %s%s", what,
                       nmiss > 2 ? ", ..." : "");
    return 0;
}

static int recover(rn_log_t *log, char *errmsg)
{
    ckpt_t c;
    uint64_t clean_end = 0;
    int damaged = 0, rc;
    int ckpt_ok = read_checkpoint(log, &c);
    if (ckpt_ok < 0) {
        rc = ckpt_ok;
        rn_errf(errmsg, rc, "cannot read %s/checkpoint: %s", log->dir, rn_strerror(rc));
        goto out;
    }
    int ckpt_valid = ckpt_ok;             /* its next offsets hold even when its index cannot */
    int clean_ok = read_clean(log, &clean_end);
    if (clean_ok < 0) {
        rc = clean_ok;
        rn_errf(errmsg, rc, "cannot read %s/clean: %s", log->dir, rn_strerror(rc));
        goto out;
    }
    log->rec.clean = clean_ok;
    log->vouched_end = ckpt_valid ? c.pos : 0;
    if (clean_ok && clean_end > log->vouched_end) log->vouched_end = clean_end;
    uint64_t first = log->segs[0].start, ext = log_extent_end(log);
    if (ckpt_ok && c.pos > ext) ckpt_ok = 0;          /* points past every segment */
    uint64_t p = ckpt_ok ? (c.pos < first ? first : c.pos) : first;

    rc = rn_mkdir_p(log->ix_dir);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot create %s: %s", log->ix_dir, rn_strerror(rc));
        goto out;
    }
    if (ckpt_ok) {
        rc = load_indexes(log, &damaged, errmsg);
        if (rc != 0) goto out;
        rc = trusted_tails_match(log, p);
        if (rc < 0) goto out;
        if (rc == 0) {                    /* the log lost what the checkpoint vouched for */
            for (size_t k = 0; k < log->nqueues; k++) queue_free(log->queues[k]);
            log->nqueues = 0;
            ckpt_ok = 0;
            p = first;
        }
        rc = 0;
    }
    if (!ckpt_ok) {
        damaged = 1;
        rc = remove_index_tree(log, errmsg);
        if (rc != 0) goto out;
    } else {
        for (uint32_t k = 0; k < c.n; k++) {
            const uint8_t *it = c.items + (size_t)k * CKPT_ITEM;
            uint32_t id = rn_le32_get(it);
            int64_t next = (int64_t)rn_le64_get(it + 8);
            if (next < 0) continue;
            rn_queue_t *q = find_queue(log, id);
            if (!q) {
                rc = queue_new(log, id, &q);
                if (rc == 0) rc = queue_insert(log, q);
                if (rc != 0) { queue_free(q); goto out; }
            }
            q->in_ckpt = 1;
            q->ckpt_next = next;
        }
    }
    /* A queue whose index ends below its checkpointed end lost units that
     * were durable: rescan from its last good unit. */
    uint64_t s = p;
    for (size_t k = 0; k < log->nqueues; k++) {
        rn_queue_t *q = log->queues[k];
        int64_t vend = 0;
        uint64_t resume = first;
        if (q->ix.nunits > 0 && q->ix.nfiles > 0) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->ix.nunits - 1, &u);
            vend = unit_end_off(&u);
            if (unit_end_pos(&u) > resume) resume = unit_end_pos(&u);
            if (unit_end_pos(&u) > ext) damaged = 1;
            if (clean_ok && unit_end_pos(&u) > clean_end) damaged = 1;
        }
        if (q->in_ckpt && vend < q->ckpt_next) {
            damaged = 1;
            if (resume < s) s = resume;
        }
    }
    uint64_t end;
    int bad = 0, need_scan = !clean_ok || damaged;
    if (!need_scan) {
        /* Trust the marker only if it lies in the last segment and zeros follow. */
        const rn_seg_t *l = &log->segs[log->nsegs - 1];
        if (clean_end < l->start || clean_end > ext) {
            need_scan = 1;
        } else if (clean_end < ext) {
            /* Zeros must follow, up to a header's length or the file's end
             * (a short file grows with zeros, but keeps what it has). */
            uint8_t hdr[RN_SEG_HDR_SIZE];
            static const uint8_t zero[RN_SEG_HDR_SIZE];
            size_t want = ext - clean_end < sizeof hdr ? (size_t)(ext - clean_end) : sizeof hdr;
            size_t got;
            rc = rn_pread_full(l->fd, hdr, want, (off_t)(clean_end - l->start), &got);
            if (rc != 0 || got != want || memcmp(hdr, zero, want) != 0) need_scan = 1;
            rc = 0;
        }
    }
    if (need_scan) {
        rc = scan(log, s, ckpt_ok, &end, &bad, errmsg);
        if (rc != 0) goto out;
        if (ckpt_ok) {
            /* The scan may have cut units the checkpoint vouched for, so a
             * queue's last unit can now be one that was trusted, not
             * verified, or a queue can be left with no unit below its
             * checkpointed end. The next open would take either for damage
             * and verify from the first segment, and could then cut the log
             * below batches acknowledged meanwhile. So check now, as the
             * next open would, and verify everything before accepting
             * writes. */
            rc = trusted_tails_match(log, end);
            if (rc < 0) goto out;
            for (size_t k = 0; rc == 1 && k < log->nqueues; k++) {
                const rn_queue_t *q = log->queues[k];
                if (q->in_ckpt && q->ckpt_next > 0 && (q->ix.nunits == 0 || q->ix.nfiles == 0))
                    rc = 0;
            }
            if (rc == 0) {
                for (size_t k = 0; k < log->nqueues; k++) queue_free(log->queues[k]);
                log->nqueues = 0;
                log->lastq = NULL;
                ckpt_ok = 0;
                s = first;
                log->rec.damaged_batches = 0;     /* the first scan's marks are gone */
                log->rec.skipped_bytes = 0;
                log->rec.nranges = 0;
                rc = remove_index_tree(log, errmsg);
                if (rc != 0) goto out;
                rc = scan(log, s, 0, &end, &bad, errmsg);
                if (rc != 0) goto out;
            }
            rc = 0;
        }
        if (ckpt_valid) {
            rc = check_missing(log, &c, end, errmsg);
            if (rc != 0) goto out;
        }
        rc = cut_log(log, end, bad, errmsg);
        if (rc != 0) goto out;
    } else {
        end = clean_end;
    }
    /* The active segment takes the next appends: full size. */
    rn_seg_t *l = &log->segs[log->nsegs - 1];
    if (l->size < log->o.segment_bytes) {
        rc = rn_seg_grow(l, log->o.segment_bytes, errmsg);
        if (rc != 0) goto out;
    }
    settle_queues(log);
    /* Make the recovered state the new recovery point: everything from the
     * scan start on may be only in the page cache (a process crash). */
    size_t sync_from = need_scan ? seg_of(log, s) : log->nsegs - 1;
    for (size_t k = 0; k < log->nsegs; k++) {
        if (k >= sync_from) {
            if (rn_sys.fdatasync(log->segs[k].fd) < 0) {
                rc = -errno;
                rn_errf(errmsg, rc, "fdatasync of commitlog/%020llu.log failed: %s",
                        (unsigned long long)log->segs[k].start, rn_strerror(rc));
                goto out;
            }
        }
    }
    for (size_t k = 0; k < log->nqueues; k++) {
        rc = rn_idx_sync(&log->queues[k]->ix, errmsg);
        if (rc != 0) goto out;
    }
    rc = write_checkpoint(log, end, errmsg);
    if (rc != 0) goto out;
    rc = remove_clean(log, errmsg);
    if (rc != 0) goto out;
    log->write_pos = end;
    atomic_store(&log->written_pos, end);
    atomic_store(&log->durable_pos, end);
    atomic_store(&log->ckpt_pos, end);
out:
    free(c.buf);
    return rc;
}

/* ---- open / close ------------------------------------------------------------ */

static int lock_dir(rn_log_t *log, char *errmsg)
{
    char *path = path_join(log->dir, "LOCK");
    if (!path) return -ENOMEM;
    int rc = 0;
    int fd = rn_sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        rn_errf(errmsg, rc, "cannot open %s: %s", path, rn_strerror(rc));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? RN_ELOCKED : -errno;
        char holder[32] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        rn_errf(errmsg, rc, "data directory %s is locked by process %s; use --server to share it",
                log->dir, holder[0] ? holder : "(unknown)");
        rn_sys.close(fd);
        goto out;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (rn_sys.ftruncate(fd, 0) == 0) (void)rn_pwrite_full(fd, pid, (size_t)n, 0);
    log->lock_fd = fd;
out:
    free(path);
    return rc;
}

static void log_free(rn_log_t *log)
{
    for (size_t i = 0; i < log->nqueues; i++) queue_free(log->queues[i]);
    free(log->queues);
    for (size_t i = 0; i < log->nsegs; i++) rn_seg_close(&log->segs[i]);
    free(log->segs);
    free(log->ring);
    free(log->holes);
    for (size_t i = 0; i < log->njobs; i++) free(log->jobs[i].buf);
    if (log->lock_fd >= 0) rn_sys.close(log->lock_fd);
    pthread_mutex_destroy(&log->wmu);
    pthread_rwlock_destroy(&log->rw);
    pthread_mutex_destroy(&log->smu);
    pthread_mutex_destroy(&log->sync_mu);
    pthread_cond_destroy(&log->done_cv);
    pthread_cond_destroy(&log->work_cv);
    free(log->dir);
    free(log->cl_dir);
    free(log->ix_dir);
    free(log);
}

int rn_log_open(const char *dir, const rn_log_opts_t *o, rn_log_t **out, char *errmsg)
{
    uint64_t t0 = rn_mono_ns();
    rn_log_opts_t opts;
    *out = NULL;
    int rc = check_opts(o, &opts, errmsg);
    if (rc != 0) return rc;
    rn_log_t *log = calloc(1, sizeof *log);
    if (!log) return rn_errf(errmsg, -ENOMEM, "out of memory");
    log->o = opts;
    log->lock_fd = -1;
    log->lim.max_bytes = opts.max_batch_bytes;
    log->lim.max_records = RN_BATCH_MAX_RECORDS;
    pthread_mutex_init(&log->wmu, NULL);
    pthread_rwlock_init(&log->rw, NULL);
    pthread_mutex_init(&log->smu, NULL);
    pthread_mutex_init(&log->sync_mu, NULL);
    pthread_cond_init(&log->done_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->work_cv, &ca);
    pthread_condattr_destroy(&ca);
    log->dir = strdup(dir);
    log->cl_dir = path_join(dir, "commitlog");
    log->ix_dir = path_join(dir, "index");
    log->ring = malloc(RING_CAP * sizeof *log->ring);
    if (!log->dir || !log->cl_dir || !log->ix_dir || !log->ring) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = rn_mkdir_p(log->cl_dir);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot create %s: %s", log->cl_dir, rn_strerror(rc));
        goto fail;
    }
    rc = lock_dir(log, errmsg);
    if (rc != 0) goto fail;
    rc = load_segments(log, errmsg);
    if (rc != 0) goto fail;
    rc = recover(log, errmsg);
    if (rc != 0) goto fail;
    rc = -pthread_create(&log->thr, NULL, syncer_main, log);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot start the syncer thread: %s", rn_strerror(rc));
        goto fail;
    }
    log->thr_started = 1;
    log->rec.elapsed_us = (rn_mono_ns() - t0) / 1000;
    *out = log;
    return 0;
fail:
    log_free(log);
    return rc;
}

void rn_log_recovery_info(const rn_log_t *log, rn_log_recovery_t *out)
{
    *out = log->rec;
}

int rn_log_accept_loss(rn_log_t *log, uint32_t queue, int64_t next, char *errmsg)
{
    int rc = 0;
    pthread_mutex_lock(&log->wmu);
    rn_queue_t *q = find_queue(log, queue);
    int64_t have = q ? q->next_offset : 0;
    if (next <= have) goto out;
    if (next - have > (int64_t)UINT32_MAX) {
        rc = rn_errf(errmsg, RN_EINVAL, "queue %u: %lld lost offsets are more than one index "
                     "unit can mark", queue, (long long)(next - have));
        goto out;
    }
    if (!q) {
        rc = queue_new(log, queue, &q);
        if (rc == 0) rc = queue_insert(log, q);
        if (rc != 0) { queue_free(q); rn_errf(errmsg, rc, "out of memory"); goto out; }
    }
    rn_idx_unit_t u = {
        .position = log->write_pos, .base_offset = have, .first_ts = q->running_max,
        .max_ts = q->running_max, .size = 0, .record_count = (uint32_t)(next - have),
        .flags = RN_IDX_DAMAGED,
    };
    pthread_rwlock_wrlock(&log->rw);
    rc = scan_add_unit(log, q, &u, errmsg);
    if (rc == 0) {
        log->rec.rebuilt_units--;
        log->rec.lost_ranges++;
        rec_range(log, RN_LOG_RANGE_LOST, queue, have, next, log->write_pos);
        q->next_offset = next;
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
    }
    pthread_rwlock_unlock(&log->rw);
    if (rc == 0) rc = rn_idx_sync(&q->ix, errmsg);
    if (rc == 0) rc = write_checkpoint(log, log->write_pos, errmsg);
out:
    pthread_mutex_unlock(&log->wmu);
    return rc;
}

static void addf(char *buf, size_t size, size_t *w, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void addf(char *buf, size_t size, size_t *w, const char *fmt, ...)
{
    if (*w >= size) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *w, size - *w, fmt, ap);
    va_end(ap);
    if (n > 0) *w += (size_t)n;
    if (*w >= size) *w = size;
}

int rn_log_recovery_format(const rn_log_recovery_t *r, char *buf, size_t size)
{
    static const char *const kind[] = {"dropped (torn tail)", "damaged", "lost (accepted)"};
    size_t w = 0;
    if (size) buf[0] = '\0';
    addf(buf, size, &w, "recovery: %s; scanned %llu bytes in %.1f ms",
         r->clean ? "clean shutdown" : "no clean shutdown",
         (unsigned long long)r->scanned_bytes, (double)r->elapsed_us / 1000.0);
    if (r->rebuilt_units) addf(buf, size, &w, "; rebuilt %u index units", r->rebuilt_units);
    if (r->truncated_bytes)
        addf(buf, size, &w, "; truncated %llu bytes of torn tail",
             (unsigned long long)r->truncated_bytes);
    if (r->dropped_units)
        addf(buf, size, &w, "; dropped %u index units", r->dropped_units);
    if (r->skipped_bytes)
        addf(buf, size, &w, "; stepped over %llu damaged bytes to intact entries",
             (unsigned long long)r->skipped_bytes);
    if (r->damaged_batches)
        addf(buf, size, &w, "; marked %u batches damaged", r->damaged_batches);
    if (r->lost_ranges)
        addf(buf, size, &w, "; accepted %u lost ranges", r->lost_ranges);
    for (uint32_t i = 0; i < r->nranges && i < RN_LOG_REC_RANGES; i++) {
        const rn_log_range_t *g = &r->ranges[i];
        addf(buf, size, &w, "; queue %u offsets [%lld, %lld) %s at commit-log position %llu",
             g->queue, (long long)g->from, (long long)g->to, kind[g->kind],
             (unsigned long long)g->position);
    }
    if (r->nranges > RN_LOG_REC_RANGES)
        addf(buf, size, &w, "; and %u more ranges", r->nranges - RN_LOG_REC_RANGES);
    return r->truncated_bytes || r->nranges || r->damaged_batches || r->lost_ranges;
}

int rn_log_close(rn_log_t *log)
{
    if (!log) return 0;
    char msg[RN_ERRMSG_SIZE];
    pthread_mutex_lock(&log->smu);
    log->stop = 1;
    pthread_cond_broadcast(&log->work_cv);
    pthread_cond_broadcast(&log->done_cv);
    pthread_mutex_unlock(&log->smu);
    if (log->thr_started) pthread_join(log->thr, NULL);
    int rc = log->sticky_rc;
    if (rc == 0) {
        rc = sync_segments(log, UINT64_MAX, msg, sizeof msg);
        if (rc == 0) rc = sync_indexes(log, msg);
        if (rc == 0) rc = write_checkpoint(log, log->write_pos, msg);
        if (rc == 0) rc = write_clean(log, log->write_pos, msg);
    }
    log_free(log);
    return rc;
}

/* ---- append ------------------------------------------------------------------ */

/* Start a new segment. The finished one is made durable, and the new
 * recovery point written, by the syncer thread (run_checkpoint): the writer
 * only creates the file and hands over the checkpoint bytes. */
static int roll(rn_log_t *log, char *errmsg)
{
    const rn_seg_t *a = &log->segs[log->nsegs - 1];
    int rc = 0;
    rn_seg_t ns;
    rc = rn_seg_create(log->cl_dir, a->start + a->size, log->o.segment_bytes, &ns, errmsg);
    if (rc == -ENOSPC) {
        return rn_errf(errmsg, rc,
                       "no space left on device for a new %llu-byte segment in %s; nothing "
                       "acknowledged was harmed",
                       (unsigned long long)log->o.segment_bytes, log->cl_dir);
    }
    if (rc != 0) return rc;
    pthread_rwlock_wrlock(&log->rw);
    rc = seg_push(log, &ns);
    pthread_rwlock_unlock(&log->rw);
    if (rc != 0) {
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_close(&ns);
        rn_seg_name(name, ns.start);
        char *path = path_join(log->cl_dir, name);
        if (path) rn_sys.unlink(path);
        free(path);
        return rn_errf(errmsg, rc, "out of memory rolling the commit log");
    }
    log->write_pos = ns.start;
    uint8_t *b;
    size_t n;
    if (ckpt_build(log, ns.start, &b, &n) == 0) {
        pthread_mutex_lock(&log->smu);
        post_checkpoint_job(log, ns.start, b, n);
        if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
        pthread_mutex_unlock(&log->smu);
    }                                       /* out of memory: the next roll retries */
    return 0;
}

static int queue_for_append(rn_log_t *log, uint32_t id, rn_queue_t **out, char *errmsg)
{
    rn_queue_t *q = log->lastq;
    if (!q || q->id != id) q = find_queue(log, id);
    if (!q) {
        int rc = queue_new(log, id, &q);
        if (rc != 0) return rn_errf(errmsg, rc, "out of memory adding queue %u", id);
        pthread_rwlock_wrlock(&log->rw);
        rc = queue_insert(log, q);
        pthread_rwlock_unlock(&log->rw);
        if (rc != 0) {
            queue_free(q);
            return rn_errf(errmsg, rc, "out of memory adding queue %u", id);
        }
    }
    log->lastq = q;
    *out = q;
    return 0;
}

int rn_log_append(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                  int64_t *base_offset, uint64_t *ticket, char *errmsg)
{
    rn_batch_header_t bh;
    int rc;
    if (len > log->o.max_batch_bytes)
        return rn_errf(errmsg, RN_ETOOBIG, "batch of %zu bytes exceeds max_batch_bytes %u", len,
                       log->o.max_batch_bytes);
    rc = rn_batch_validate(batch, len, &log->lim, 0, &bh, errmsg);
    if (rc != 0) return rc;
    if (bh.record_count < 1)
        return rn_errf(errmsg, RN_ECORRUPT, "batch holds no records");

    pthread_mutex_lock(&log->wmu);
    if (atomic_load(&log->sticky)) { rc = sticky_err(log, errmsg); goto out; }
    rn_queue_t *q = NULL;
    rc = queue_for_append(log, queue, &q, errmsg);
    if (rc != 0) goto out;
    if (q->next_offset > INT64_MAX - bh.record_count) {
        rc = rn_errf(errmsg, RN_ERANGE, "queue %u has no offsets left", queue);
        goto out;
    }
    uint64_t entry = RN_SEG_HDR_SIZE + len;
    rn_seg_t *sg = &log->segs[log->nsegs - 1];
    if (log->write_pos + entry > sg->start + sg->size) {
        rc = roll(log, errmsg);
        if (rc != 0) goto out;
        sg = &log->segs[log->nsegs - 1];
    }
    if (rn_idx_needs_file(&q->ix)) {
        rn_idx_file_t f;
        rc = rn_idx_prepare_file(&q->ix, q->next_offset, &f, errmsg);
        if (rc != 0) goto out;
        pthread_rwlock_wrlock(&log->rw);
        rc = rn_idx_attach_file(&q->ix, &f);
        pthread_rwlock_unlock(&log->rw);
        if (rc != 0) {
            rn_idx_discard_file(&q->ix, &f);
            rn_errf(errmsg, rc, "out of memory growing the index of queue %u", queue);
            goto out;
        }
    }
    int64_t base = q->next_offset;
    uint8_t hb[RN_SEG_HDR_SIZE + 8];
    be64_put(hb + RN_SEG_HDR_SIZE, base);
    rn_seg_hdr_encode(hb, (uint32_t)len, queue, hb + RN_SEG_HDR_SIZE, batch + 8);
    struct iovec iov[2] = {
        {hb, sizeof hb},
        {(void *)(uintptr_t)(batch + 8), len - 8},
    };
    uint64_t pos = log->write_pos;
    rc = rn_pwritev_full(sg->fd, iov, 2, (off_t)(pos - sg->start));
    if (rc != 0) {
        char what[RN_ERRMSG_SIZE];
        if (rc == -ENOSPC)
            snprintf(what, sizeof what,
                     "no space left on device while appending %zu bytes to "
                     "commitlog/%020llu.log; nothing acknowledged was harmed",
                     len, (unsigned long long)sg->start);
        else
            snprintf(what, sizeof what, "write to commitlog/%020llu.log at byte %llu failed: %s",
                     (unsigned long long)sg->start, (unsigned long long)(pos - sg->start),
                     rn_strerror(rc));
        set_sticky(log, rc, what);
        rn_errf(errmsg, rc, "%s", what);
        goto out;
    }
    rn_idx_unit_t u = {
        .position = pos, .base_offset = base, .first_ts = bh.first_timestamp,
        .max_ts = bh.max_timestamp > q->running_max ? bh.max_timestamp : q->running_max,
        .size = (uint32_t)len, .record_count = (uint32_t)bh.record_count, .flags = 0,
    };
    __atomic_store_n(&sg->dirty, 1, __ATOMIC_RELEASE);
    rn_idx_put(&q->ix, &u);
    q->next_offset += bh.record_count;
    q->running_max = u.max_ts;
    if (u.max_ts > sg->max_ts) sg->max_ts = u.max_ts;
    log->write_pos = pos + entry;
    uint64_t end = log->write_pos;

    switch (log->o.fsync) {
    case RN_FSYNC_ALWAYS:
        if (rn_sys.fdatasync(sg->fd) < 0) {
            char what[RN_ERRMSG_SIZE];
            rc = -errno;
            snprintf(what, sizeof what, "fdatasync of commitlog/%020llu.log failed: %s",
                     (unsigned long long)sg->start, rn_strerror(rc));
            set_sticky(log, rc, what);
            rn_errf(errmsg, rc, "%s", what);
            goto out;
        }
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
        atomic_store(&log->written_pos, end);
        advance_durable(log, end);
        break;
    case RN_FSYNC_GROUP:
        pthread_mutex_lock(&log->smu);
        while (log->rcount == RING_CAP && !log->sticky_rc) {
            if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
            pthread_cond_wait(&log->done_cv, &log->smu);
        }
        if (log->sticky_rc) {
            pthread_mutex_unlock(&log->smu);
            rc = sticky_err(log, errmsg);
            goto out;
        }
        log->ring[(log->rhead + log->rcount) % RING_CAP] = (pend_t){end, q, q->ix.nunits};
        log->rcount++;
        atomic_store(&log->written_pos, end);
        if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
        pthread_mutex_unlock(&log->smu);
        break;
    case RN_FSYNC_INTERVAL:
    case RN_FSYNC_NEVER:
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
        atomic_store(&log->written_pos, end);
        break;
    }
    *base_offset = base;
    *ticket = end;
out:
    pthread_mutex_unlock(&log->wmu);
    return rc;
}

int rn_log_wait(rn_log_t *log, uint64_t ticket)
{
    if (atomic_load(&log->durable_pos) >= ticket) return 0;
    if (log->o.fsync != RN_FSYNC_GROUP) {
        /* always: durable on return from append; interval/never ack at once
         * unless the store already failed. */
        return atomic_load(&log->sticky) ? log->sticky_rc : 0;
    }
    int rc = 0;
    pthread_mutex_lock(&log->smu);
    while (atomic_load(&log->durable_pos) < ticket && !log->sticky_rc && !log->stop)
        pthread_cond_wait(&log->done_cv, &log->smu);
    if (atomic_load(&log->durable_pos) < ticket)
        rc = log->sticky_rc ? log->sticky_rc : RN_ECLOSED;
    pthread_mutex_unlock(&log->smu);
    return rc;
}

int rn_log_sync(rn_log_t *log)
{
    char what[RN_ERRMSG_SIZE];
    if (atomic_load(&log->sticky)) return log->sticky_rc;
    uint64_t t = atomic_load(&log->written_pos);
    if (atomic_load(&log->durable_pos) >= t) return 0;
    int rc = sync_segments(log, UINT64_MAX, what, sizeof what);
    if (rc != 0) return set_sticky(log, rc, what);
    advance_durable(log, t);
    return 0;
}

/* ---- readers ------------------------------------------------------------------ */

static int range_err(char *errmsg, uint32_t queue, int64_t off, int64_t ls, int64_t hw)
{
    return rn_errf(errmsg, RN_ERANGE, "offset %lld of queue %u is outside [%lld, %lld]",
                   (long long)off, queue, (long long)ls, (long long)hw);
}

/* Read one unit's batch into dst (size bytes) and check it is the batch the
 * unit describes. rw read side held. */
static int read_batch(rn_log_t *log, uint32_t queue, const rn_idx_unit_t *u, uint8_t *dst,
                      char *errmsg)
{
    size_t si = seg_of(log, u->position);
    const rn_seg_t *sg = &log->segs[si];
    size_t got;
    uint64_t off = u->position - sg->start + RN_SEG_HDR_SIZE;
    int rc = rn_pread_full(sg->fd, dst, u->size, (off_t)off, &got);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot read commitlog/%020llu.log at byte %llu: %s",
                       (unsigned long long)sg->start, (unsigned long long)off, rn_strerror(rc));
    if (got != u->size || be64_get(dst) != u->base_offset)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "commitlog/%020llu.log at byte %llu does not hold the batch of queue %u "
                       "at offsets [%lld, %lld) that the index places there; the store is "
                       "damaged (runnel store check)", (unsigned long long)sg->start,
                       (unsigned long long)off, queue, (long long)u->base_offset,
                       (long long)unit_end_off(u));
    return 0;
}

/* The error for a read of a damaged unit's offsets. */
static int damaged_err(char *errmsg, uint32_t queue, const rn_idx_unit_t *u)
{
    if (u->size == 0)
        return rn_errf(errmsg, RN_EDAMAGED, "queue %u offsets [%lld, %lld) were lost (accepted "
                       "by store repair --accept-loss at commit-log position %llu); read from "
                       "offset %lld on, or skip them with --skip-damaged", queue,
                       (long long)u->base_offset, (long long)unit_end_off(u),
                       (unsigned long long)u->position, (long long)unit_end_off(u));
    return rn_errf(errmsg, RN_EDAMAGED, "queue %u offsets [%lld, %lld) are damaged (commit-log "
                   "position %llu, %u bytes); the batches after them are kept: read from "
                   "offset %lld on, or skip them with --skip-damaged", queue,
                   (long long)u->base_offset, (long long)unit_end_off(u),
                   (unsigned long long)u->position, u->size, (long long)unit_end_off(u));
}

int rn_log_read(rn_log_t *log, uint32_t queue, int64_t offset, size_t max_bytes, rn_buf_t *out,
                uint32_t *nbatches, char *errmsg)
{
    int rc = 0;
    uint32_t n = 0;
    pthread_rwlock_rdlock(&log->rw);
    rn_queue_t *q = find_queue(log, queue);
    if (!q) {
        if (offset != 0) rc = range_err(errmsg, queue, offset, 0, 0);
        goto out;
    }
    uint64_t v = atomic_load_explicit(&q->visible, memory_order_acquire);
    int64_t hw = queue_hw(q, v);
    if (offset < q->start_offset || offset > hw) {
        rc = range_err(errmsg, queue, offset, q->start_offset, hw);
        goto out;
    }
    if (offset == hw) goto out;
    size_t total = 0;
    for (uint64_t s = rn_idx_find_offset(&q->ix, q->start_slot, v, offset); s < v; s++) {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, s, &u);
        if (n > 0 && total + u.size > max_bytes) break;
        /* Damage ends the read: the batches before it first, the error at
         * the next read, which starts at it. */
        if (u.flags & RN_IDX_DAMAGED) {
            if (n == 0) rc = damaged_err(errmsg, queue, &u);
            break;
        }
        rc = rn_buf_reserve(out, u.size, 0);
        if (rc != 0) { rn_errf(errmsg, rc, "cannot grow the read buffer"); break; }
        rc = read_batch(log, queue, &u, out->data + out->len, errmsg);
        if (rc != 0) {
            if (rc == RN_ECORRUPT && n > 0) rc = 0;
            break;
        }
        out->len += u.size;
        total += u.size;
        n++;
    }
out:
    pthread_rwlock_unlock(&log->rw);
    *nbatches = n;
    return rc;
}

static void fill_ref(rn_log_batch_ref_t *ref, const rn_idx_unit_t *u)
{
    ref->base_offset = u->base_offset;
    ref->record_count = u->record_count;
    ref->size = u->size;
    ref->position = u->position;
    ref->first_timestamp = u->first_ts;
    ref->max_timestamp = u->max_ts;
    ref->damaged = (u->flags & RN_IDX_DAMAGED) != 0;
}

int rn_log_lookup_offset(rn_log_t *log, uint32_t queue, int64_t offset, rn_log_batch_ref_t *ref,
                         char *errmsg)
{
    int rc = 0;
    pthread_rwlock_rdlock(&log->rw);
    rn_queue_t *q = find_queue(log, queue);
    if (!q) { rc = range_err(errmsg, queue, offset, 0, 0); goto out; }
    uint64_t v = atomic_load_explicit(&q->visible, memory_order_acquire);
    int64_t hw = queue_hw(q, v);
    if (offset < q->start_offset || offset >= hw) {
        rc = range_err(errmsg, queue, offset, q->start_offset, hw);
        goto out;
    }
    rn_idx_unit_t u;
    rn_idx_get(&q->ix, rn_idx_find_offset(&q->ix, q->start_slot, v, offset), &u);
    fill_ref(ref, &u);
out:
    pthread_rwlock_unlock(&log->rw);
    return rc;
}

int rn_log_lookup_time_batch(rn_log_t *log, uint32_t queue, int64_t ts, rn_log_batch_ref_t *ref,
                             char *errmsg)
{
    int rc = 0;
    pthread_rwlock_rdlock(&log->rw);
    rn_queue_t *q = find_queue(log, queue);
    uint64_t v = q ? atomic_load_explicit(&q->visible, memory_order_acquire) : 0;
    uint64_t s = q && v > q->start_slot ? rn_idx_find_time(&q->ix, q->start_slot, v, ts) : v;
    if (!q || s >= v) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "queue %u has no record with timestamp >= %lld",
                     queue, (long long)ts);
    } else {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, s, &u);
        fill_ref(ref, &u);
    }
    pthread_rwlock_unlock(&log->rw);
    return rc;
}

static int varlong_get(const uint8_t **p, const uint8_t *end, int64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

/* The first record of an uncompressed batch with timestamp >= ts, reading only
 * each record's length and timestamp delta (the time lookup's hot path; no
 * copy, no decode of keys and values). 1 and *offset when found, 0 when none,
 * -1 when the batch is compressed or its records do not parse (the caller
 * then uses the full decoder, which reports what is wrong). */
static int scan_time(const uint8_t *b, uint32_t size, int64_t base, int64_t ts, int64_t *offset)
{
    if (size < RN_BATCH_HEADER_SIZE || (b[22] & RN_BATCH_CODEC_MASK) != RN_BATCH_CODEC_NONE)
        return -1;
    int64_t base_ts = be64_get(b + 27);
    int32_t count = (int32_t)((uint32_t)b[57] << 24 | (uint32_t)b[58] << 16 |
                              (uint32_t)b[59] << 8 | b[60]);
    const uint8_t *p = b + RN_BATCH_HEADER_SIZE, *end = b + size;
    for (int32_t i = 0; i < count; i++) {
        int64_t len, delta;
        if (varlong_get(&p, end, &len) != 0 || len < 2 || len > end - p) return -1;
        const uint8_t *rend = p + len;
        p++;                                   /* record attributes */
        if (varlong_get(&p, rend, &delta) != 0) return -1;
        if ((int64_t)((uint64_t)base_ts + (uint64_t)delta) >= ts) {
            *offset = base + i;
            return 1;
        }
        p = rend;
    }
    return 0;
}

int rn_log_lookup_time(rn_log_t *log, uint32_t queue, int64_t ts, int64_t *offset, char *errmsg)
{
    int rc = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    pthread_rwlock_rdlock(&log->rw);
    rn_queue_t *q = find_queue(log, queue);
    if (!q) { *offset = 0; goto out; }
    uint64_t v = atomic_load_explicit(&q->visible, memory_order_acquire);
    *offset = queue_hw(q, v);
    if (v <= q->start_slot) goto out;
    /* The first unit whose running max reaches ts holds the first such
     * record (no earlier batch has one); decode it to find the record. A
     * batch whose header overstated its max timestamp sends us on. */
    for (uint64_t s = rn_idx_find_time(&q->ix, q->start_slot, v, ts); s < v; s++) {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, s, &u);
        if (u.flags & RN_IDX_DAMAGED) continue;       /* nothing readable to look at */
        /* Read the batch in place through the segment's mapping: no syscall,
         * no copy (and no LRU activation of the page per lookup, which put a
         * pread version's p99 above 10 us). pread only without a mapping. */
        const rn_seg_t *sg = &log->segs[seg_of(log, u.position)];
        uint64_t off = u.position - sg->start + RN_SEG_HDR_SIZE;
        const uint8_t *bp;
        if (sg->map && off + u.size <= sg->size) {
            bp = sg->map + off;
            if (be64_get(bp) != u.base_offset) {
                rc = rn_errf(errmsg, RN_ECORRUPT,
                             "commitlog/%020llu.log at byte %llu does not hold the batch of "
                             "queue %u at offsets [%lld, %lld) that the index places there",
                             (unsigned long long)sg->start, (unsigned long long)off, queue,
                             (long long)u.base_offset, (long long)unit_end_off(&u));
                goto out;
            }
        } else {
            if (u.size > cap) {
                uint8_t *nb = realloc(buf, u.size);
                if (!nb) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
                buf = nb;
                cap = u.size;
            }
            rc = read_batch(log, queue, &u, buf, errmsg);
            if (rc != 0) goto out;
            bp = buf;
        }
        int f = scan_time(bp, u.size, u.base_offset, ts, offset);
        if (f == 1) goto out;
        if (f == 0) continue;
        rc = rn_batch_iter_reset(&it, bp, u.size, errmsg);
        if (rc != 0) goto out;
        rn_record_t r;
        while ((rc = rn_batch_iter_next(&it, &r, errmsg)) == 1) {
            if (r.timestamp >= ts) { *offset = r.offset; rc = 0; goto out; }
        }
        if (rc < 0) goto out;
    }
out:
    pthread_rwlock_unlock(&log->rw);
    rn_batch_iter_destroy(&it);
    free(buf);
    return rc;
}

int rn_log_queue_info(rn_log_t *log, uint32_t queue, rn_log_queue_info_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&log->rw);
    rn_queue_t *q = find_queue(log, queue);
    if (q) {
        uint64_t v = atomic_load_explicit(&q->visible, memory_order_acquire);
        out->log_start = q->start_offset;
        out->high_watermark = queue_hw(q, v);
        out->batches = v > q->start_slot ? v - q->start_slot : 0;
    }
    pthread_rwlock_unlock(&log->rw);
    return 0;
}

int rn_log_queues(rn_log_t *log, uint32_t **ids, size_t *n)
{
    pthread_rwlock_rdlock(&log->rw);
    uint32_t *a = malloc((log->nqueues ? log->nqueues : 1) * sizeof *a);
    if (!a) {
        pthread_rwlock_unlock(&log->rw);
        return -ENOMEM;
    }
    for (size_t i = 0; i < log->nqueues; i++) a[i] = log->queues[i]->id;
    *n = log->nqueues;
    pthread_rwlock_unlock(&log->rw);
    *ids = a;
    return 0;
}

uint64_t rn_log_bytes(rn_log_t *log)
{
    pthread_rwlock_rdlock(&log->rw);
    uint64_t n = atomic_load(&log->written_pos) - log->segs[0].start;
    pthread_rwlock_unlock(&log->rw);
    return n;
}

/* ---- retention ------------------------------------------------------------------ */

/* The time age retention judges segment s by: its largest record timestamp,
 * unless that lies in the future (one batch stamped years ahead raises every
 * later unit's running maximum and would stop retention for good); then
 * when the segment was last written (its file's mtime). */
static int64_t seg_age_ts(const rn_log_t *log, const rn_seg_t *s, int64_t now)
{
    if (s->max_ts <= now) return s->max_ts;
    char name[RN_SEG_NAME_LEN + 1];
    rn_seg_name(name, s->start);
    char *path = path_join(log->cl_dir, name);
    struct stat st;
    int64_t t = now;                        /* unknown: not old */
    if (path && stat(path, &st) == 0)
        t = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    free(path);
    return t;
}

int rn_log_retain(rn_log_t *log, uint32_t *dropped)
{
    int rc = 0;
    size_t k = 0;
    rn_seg_t *gone = NULL;
    *dropped = 0;
    pthread_mutex_lock(&log->wmu);
    rc = checkpoint_catch_up(log, log->segs[log->nsegs - 1].start);
    if (rc != 0) goto out;
    int64_t now = rn_sys.now_ms();
    uint64_t durable = atomic_load(&log->ckpt_pos);
    while (k + 1 < log->nsegs) {
        const rn_seg_t *s = &log->segs[k];
        if (s->start + s->size > durable) break;   /* not yet behind a recovery point */
        int by_age = log->o.retention_ms > 0 && seg_age_ts(log, s, now) < now - log->o.retention_ms;
        int by_size = log->o.retention_bytes > 0 &&
                      log->write_pos - s->start > log->o.retention_bytes;
        if (!by_age && !by_size) break;
        k++;
    }
    if (k == 0) goto out;
    gone = malloc(k * sizeof *gone);
    if (!gone) { rc = -ENOMEM; goto out; }
    uint64_t first = log->segs[k].start;
    pthread_rwlock_wrlock(&log->rw);
    memcpy(gone, log->segs, k * sizeof *gone);
    memmove(log->segs, log->segs + k, (log->nsegs - k) * sizeof *log->segs);
    log->nsegs -= k;
    for (size_t i = 0; i < log->nqueues; i++) {
        rn_queue_t *q = log->queues[i];
        uint64_t n = q->ix.nunits;
        q->start_slot = rn_idx_find_position(&q->ix, q->start_slot, n, first);
        if (q->start_slot < n) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->start_slot, &u);
            q->start_offset = u.base_offset;
        } else {
            q->start_offset = q->next_offset;
        }
        rn_idx_drop_below(&q->ix, q->start_slot);
    }
    pthread_rwlock_unlock(&log->rw);
    /* No reader can reach them now. Deleting segments before the index
     * files would also be safe: units below the first segment are ignored. */
    for (size_t i = 0; i < k; i++) {
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_name(name, gone[i].start);
        char *path = path_join(log->cl_dir, name);
        rn_seg_close(&gone[i]);
        if (path && rn_sys.unlink(path) < 0 && rc == 0) rc = -errno;
        free(path);
    }
    int r2 = rn_fsync_dir(log->cl_dir);
    if (rc == 0) rc = r2;
    *dropped = (uint32_t)k;
out:
    pthread_mutex_unlock(&log->wmu);
    free(gone);
    return rc;
}

/* ---- offline check ------------------------------------------------------------- */

typedef struct chk_queue {
    uint32_t id;
    int64_t  next;
} chk_queue_t;

static void chk_note(rn_log_check_t *out, uint64_t segstart, uint64_t off, const char *what)
{
    if (!out->first[0])
        snprintf(out->first, sizeof out->first, "commitlog/%020llu.log at byte %llu: %s",
                 (unsigned long long)segstart, (unsigned long long)off, what);
}

/* Count the damaged units of every index file under ix_dir (raw reads). */
static int chk_index(const char *ix_dir, rn_log_check_t *out, char *errmsg)
{
    DIR *d = opendir(ix_dir);
    if (!d) return errno == ENOENT ? 0 : rn_errf(errmsg, -errno, "cannot list %s", ix_dir);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char *sub = path_join(ix_dir, de->d_name);
        DIR *s = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (s && (f = readdir(s)) != NULL) {
            if (!strstr(f->d_name, ".idx")) continue;
            char *fp = path_join(sub, f->d_name);
            uint8_t *b = NULL;
            size_t n = 0;
            if (fp && rn_read_file(fp, (size_t)1 << 32, &b, &n) == 0) {
                for (size_t k = 0; k + RN_IDX_UNIT_SIZE <= n; k += RN_IDX_UNIT_SIZE) {
                    rn_idx_unit_t u;
                    if (rn_idx_unit_decode(b + k, &u) == 0 && (u.flags & RN_IDX_DAMAGED))
                        out->damaged_units++;
                }
            }
            free(b);
            free(fp);
        }
        if (s) closedir(s);
        free(sub);
    }
    closedir(d);
    return rc;
}

int rn_log_check(const char *dir, rn_log_check_t *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    rn_log_t *log = calloc(1, sizeof *log);
    chk_queue_t *qs = NULL;
    size_t nq = 0, capq = 0;
    int rc = 0;
    if (!log) return rn_errf(errmsg, -ENOMEM, "out of memory");
    log->lock_fd = -1;
    pthread_mutex_init(&log->wmu, NULL);
    pthread_rwlock_init(&log->rw, NULL);
    pthread_mutex_init(&log->smu, NULL);
    pthread_mutex_init(&log->sync_mu, NULL);
    pthread_cond_init(&log->done_cv, NULL);
    pthread_cond_init(&log->work_cv, NULL);
    log->dir = strdup(dir);
    log->cl_dir = path_join(dir, "commitlog");
    log->ix_dir = path_join(dir, "index");
    if (!log->dir || !log->cl_dir || !log->ix_dir) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        goto out;
    }
    struct stat st;
    if (stat(log->cl_dir, &st) < 0) {
        rc = rn_errf(errmsg, -ENOENT, "%s holds no commit log (no %s)", dir, log->cl_dir);
        goto out;
    }
    rc = lock_dir(log, errmsg);
    if (rc == 0) rc = load_segments(log, errmsg);
    if (rc != 0) goto out;
    int after_damage = 0;                 /* a queue's next batch may skip damaged offsets */
    for (size_t i = 0; i < log->nsegs; i++) {
        const rn_seg_t *sg = &log->segs[i];
        uint64_t end = sg->start + sg->size, p = sg->start;
        while (sg->map && p < end) {
            rn_seg_hdr_t h;
            rn_batch_header_t bh;
            int hok;
            const uint8_t *b = sg->map + (p - sg->start);
            int k = entry_check(b, end - p, &h, &bh, &hok);
            size_t j = 0;
            if (k == ENT_OK) {
                while (j < nq && qs[j].id != h.queue) j++;
                if (j < nq && (after_damage ? bh.base_offset < qs[j].next
                                            : bh.base_offset != qs[j].next))
                    k = ENT_BAD;
            }
            if (k == ENT_OK) {
                if (j == nq) {
                    if (nq == capq) {
                        size_t nc = capq ? capq * 2 : 16;
                        chk_queue_t *n2 = realloc(qs, nc * sizeof *n2);
                        if (!n2) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
                        qs = n2;
                        capq = nc;
                    }
                    qs[nq++] = (chk_queue_t){h.queue, 0};
                }
                qs[j].next = bh.base_offset + bh.record_count;
                out->entries++;
                out->bytes += RN_SEG_HDR_SIZE + h.batch_len;
                p += RN_SEG_HDR_SIZE + h.batch_len;
                continue;
            }
            /* Zeros or damage: is anything intact after it in this segment? */
            uint64_t at = end;
            for (uint64_t x = p + 1; x + RN_SEG_HDR_SIZE + RN_BATCH_HEADER_SIZE <= end; x++) {
                rn_seg_hdr_t h2;
                rn_batch_header_t bh2;
                int hok2;
                if (entry_check(sg->map + (x - sg->start), end - x, &h2, &bh2, &hok2) == ENT_OK) {
                    at = x;
                    break;
                }
            }
            if (k == ENT_END && at == end) {
                /* The segment's zeros, or non-zero bytes after them: a tail. */
                for (uint64_t x = p; x < end; x++)
                    if (sg->map[x - sg->start]) out->tail_bytes++;
                break;
            }
            if (at == end && i + 1 == log->nsegs) {
                out->tail_bytes += end - p;
                chk_note(out, sg->start, p - sg->start, "torn tail (nothing intact after it)");
                break;
            }
            out->bad_entries++;
            out->bad_bytes += at - p;
            after_damage = 1;
            chk_note(out, sg->start, p - sg->start,
                     k == ENT_END ? "zeros where intact entries follow"
                     : !hok ? "entry header checksum mismatch"
                     : "batch fails its CRC, header or offset checks");
            p = at;
        }
    }
    rc = chk_index(log->ix_dir, out, errmsg);
out:
    free(qs);
    log_free(log);
    return rc;
}

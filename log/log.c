/*
 * log.c — a store: one commit log shared by all physical queues, a batch index
 * per queue, group commit, recovery and retention.
 *
 * The module is three files sharing log/log_int.h: this one (options,
 * snapshots, open and close, append, reads, lookups, retention),
 * log/recovery.c (what open does to a store left by a crash, the recovery
 * report, accepting loss, the offline check) and log/flusher.c (the syncer
 * thread: durability, checkpoints, the clean marker, files prepared ahead of
 * need). This comment holds the module's formats, durability rules,
 * invariants and lock order; the other two say what they add.
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
 *   Whenever a visible end moves (the append itself under interval/never,
 *   rn_log_advance_durable otherwise) the store's wake-up counter is bumped
 *   (rn_log_set_notify), after the release store, so a reader woken by it
 *   finds the new slots.
 *
 * RECOVERY POINT AND RECOVERY
 *
 *   In log/recovery.c: the recovery point (a roll's checkpoint job, close),
 *   what open verifies and rebuilds, a torn tail or damage, acknowledged
 *   data missing.
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
 *     sticky: the append fails cleanly and may be retried; so does a failure
 *     of the syncer to prepare the next segment, reported by the append that
 *     rolls. Running out of memory while publishing a snapshot is sticky.)
 *  5. Retention removes whole segments from the front, never the active one,
 *     and only segments that end at or before the durable recovery point
 *     (ckpt_pos), so every unit in them is durable and visible.
 *  6. A segment's dirty flag is cleared only by rn_log_sync_segments, under sync_mu,
 *     right before its fdatasync: a clear flag means "synced".
 *  7. Every slot below a queue's visible count lies in the current snapshot
 *     (its index file and segment were published before the unit was
 *     written), and nothing a pinned snapshot reaches (fd, mapping, fence,
 *     table copy) is released before the snapshot is unpinned.
 *
 * THREADING, LOCKS AND VISIBILITY
 *   Readers (read, lookups, info, queues, bytes) take no lock that the
 *   writer or the syncer holds for longer than a few instructions, and never
 *   hold one across I/O: they pin a snapshot and pread / mmap-read through it.
 *
 *   Snapshot (rn_view_t): an immutable copy of the segment table {start,
 *   size, fd, map} and of the queue table, one qsnap_t per queue {its
 *   rn_queue_t, a read-only copy of its index files table, start_slot,
 *   start_offset}. qsnaps are shared by successive snapshots until their
 *   queue's tables change. The writer builds a new snapshot after changing a
 *   table (publish) and swaps log->view under vmu; a reader pins the current
 *   one (vmu, refcount++) and unpins it when done. Nothing a snapshot
 *   reaches is freed while it is pinned: what a change removes (segments,
 *   index files with their fds, mappings and fences, old qsnaps) is retired
 *   with the generation of the snapshot that no longer has it, and released
 *   only once every live snapshot is at least that new (an epoch scheme in
 *   the manner of LMDB's reader table). Whoever drops the last pin of the
 *   oldest snapshot releases what became free, after leaving vmu.
 *
 *   Visibility: the writer publishes a snapshot that holds a new segment or
 *   index file *before* it writes a unit into it, and stores a queue's
 *   visible count (release) after the unit. A reader pins a snapshot, finds
 *   the queue, loads visible (acquire); if a slot below it lies outside the
 *   snapshot (the writer published in between), it pins again, and that
 *   snapshot holds it (the publish happened before the store it observed).
 *
 *   wmu (mutex)     the append lock: append, roll, new queue, new index file,
 *                   publish, retention's table change. One per store.
 *   tmu (mutex)     guards the live tables (segs[], queues[], each index's
 *                   files[]) against the syncer, which walks them to take
 *                   dirty flags and dup fds. The writer takes it only around
 *                   a table change (a roll, a new queue or index file,
 *                   retention), never across I/O; the syncer only to collect.
 *   vmu (mutex)     guards log->view, the live snapshot list, refcounts and
 *                   the retired list. Held for a few instructions; no
 *                   allocation, no I/O. A leaf lock.
 *   sync_mu (mutex) serialises segment fdatasyncs (syncer, rn_log_sync,
 *                   checkpoint jobs); no append or read ever takes it.
 *   smu (mutex)     guards the group ring, the checkpoint job queue, the
 *                   sticky error, the syncer handshake and the spare segment.
 *   Lock order: wmu -> sync_mu -> tmu -> smu -> vmu. The syncer never takes
 *   wmu, so the writer never waits for an fdatasync except its own under
 *   `always`, and never for a reader.
 *
 *   No fsync, fdatasync or fallocate runs under tmu, smu or vmu, nor under
 *   wmu except `always`'s own fdatasync of the append, a roll whose
 *   prepared segment was not ready (counted as rolls_inline), and a queue's
 *   first index file or one whose prepared successor was not ready
 *   (index_files_inline). Index files are prepared the same way: once a
 *   queue's last file is half full the syncer creates and preallocates
 *   DIR/index/Q/next.idx.tmp; the append that needs it renames it to its
 *   final name (a FAILED one fails that append, not stickily). The next
 *   segment is created, preallocated and fsynced with its directory by the
 *   syncer once the active one is half full (the spare: NONE -> WANTED by
 *   the writer -> CREATING -> READY or FAILED by the syncer -> NONE when a
 *   roll takes it; a FAILED spare's error is the rolling append's, not
 *   sticky, and close reports one never taken). Checkpoints sync index files
 *   after collecting their fds under tmu; retention makes the recovery point
 *   catch up before it takes wmu and fsyncs the directory after releasing it.
 *
 *   Debug builds (NDEBUG not defined: every build of the Makefile) assert
 *   these rules: each mutex records its owner thread, and table changes,
 *   publishes and syncs assert which locks are (not) held.
 *   rn_log_close must not race with other calls (log.h).
 */
#include "log/log.h"

#include "batch/batch.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/index.h"
#include "log/log_int.h"
#include "log/segment.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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

uint64_t rn_log_unit_end_pos(const rn_idx_unit_t *u)
{
    /* A damaged unit of size 0 (lost) holds no log bytes. */
    return u->position + (u->size ? RN_SEG_HDR_SIZE + u->size : 0);
}

int64_t rn_log_unit_end_off(const rn_idx_unit_t *u)
{
    return u->base_offset + (int64_t)u->record_count;
}

rn_queue_t *rn_log_find_queue(const rn_log_t *log, uint32_t id)
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
int rn_log_queue_new(rn_log_t *log, uint32_t id, rn_queue_t **out)
{
    char name[16];
    snprintf(name, sizeof name, "%010u", id);
    char *dir = rn_path_join(log->ix_dir, name);
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

static void qsnap_free(qsnap_t *s)
{
    if (!s) return;
    free(s->ix.files);
    free(s);
}

void rn_log_queue_free(rn_queue_t *q)
{
    if (!q) return;
    if (q->ix_spare_state == SPARE_READY) rn_idx_file_release(&q->ix_spare);
    free(q->ix_spare_msg);
    qsnap_free(q->snap);
    rn_idx_close(&q->ix);
    free(q);
}

/* Insert q into the sorted table (writer with tmu held, or open). */
int rn_log_queue_insert(rn_log_t *log, rn_queue_t *q)
{
    assert(!log->opened || (HELD(log, wmu) && HELD(log, tmu)));
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

int rn_log_seg_push(rn_log_t *log, const rn_seg_t *s)
{
    assert(!log->opened || (HELD(log, wmu) && HELD(log, tmu)));
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

/* Index of the segment of segs[n] holding position pos (the last one
 * starting <= pos). */
static size_t seg_find(const rn_seg_t *segs, size_t n, uint64_t pos)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (segs[mid].start <= pos) lo = mid; else hi = mid;
    }
    return lo;
}

/* The same in the live table (writer, recovery). */
size_t rn_log_seg_of(const rn_log_t *log, uint64_t pos)
{
    return seg_find(log->segs, log->nsegs, pos);
}

uint64_t rn_log_extent_end(const rn_log_t *log)
{
    const rn_seg_t *s = &log->segs[log->nsegs - 1];
    return s->start + s->size;
}

/* High watermark of a queue in a pinned snapshot, v visible slots. */
static int64_t queue_hw(const qsnap_t *q, uint64_t v)
{
    if (v > q->start_slot) {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, v - 1, &u);
        return rn_log_unit_end_off(&u);
    }
    return q->start_offset;
}

/* ---- snapshots ------------------------------------------------------------- */

static void view_free(rn_view_t *v)
{
    if (!v) return;
    free(v->segs);
    free(v->queues);
    free(v);
}

static void retired_release(retired_t *r)
{
    while (r) {
        retired_t *next = r->next;
        switch (r->kind) {
        case RET_QSNAP:
            qsnap_free(r->p);
            break;
        case RET_SEGS:
            for (size_t i = 0; i < r->n; i++) rn_seg_close(&((rn_seg_t *)r->p)[i]);
            free(r->p);
            break;
        case RET_IDXFILES:
            for (size_t i = 0; i < r->n; i++) rn_idx_file_release(&((rn_idx_file_t *)r->p)[i]);
            free(r->p);
            break;
        }
        free(r);
        r = next;
    }
}

static void collect_locked(rn_log_t *log, retired_t **freed);

/* Drop one reference to v (vmu held). When it was the last, v leaves the
 * live list (*dead, to free after vmu) and everything retired that no live
 * snapshot can reach any more moves to *freed (to release after vmu). */
static void view_unref_locked(rn_log_t *log, rn_view_t *v, rn_view_t **dead, retired_t **freed)
{
    assert(HELD(log, vmu));
    assert(v->refs > 0);
    *dead = NULL;
    *freed = NULL;
    if (--v->refs > 0) return;
    if (v->older) v->older->newer = v->newer; else log->oldest = v->newer;
    if (v->newer) v->newer->older = v->older; else log->newest = v->older;
    *dead = v;
    collect_locked(log, freed);
}

/* Move what no live snapshot can reach from the retired list to *freed
 * (vmu held). */
static void collect_locked(rn_log_t *log, retired_t **freed)
{
    assert(HELD(log, vmu));
    uint64_t floor = log->oldest ? log->oldest->gen : UINT64_MAX;
    retired_t **pp = &log->retired;
    while (*pp) {
        retired_t *r = *pp;
        if (r->gen <= floor) {
            *pp = r->next;
            r->next = *freed;
            *freed = r;
        } else {
            pp = &r->next;
        }
    }
}

/* Pin the current snapshot: it and all it reaches stay until view_unpin. */
static rn_view_t *view_pin(rn_log_t *log)
{
    LOCK(log, vmu);
    rn_view_t *v = log->view;
    v->refs++;
    UNLOCK(log, vmu);
    return v;
}

static void view_unpin(rn_log_t *log, rn_view_t *v)
{
    rn_view_t *dead;
    retired_t *freed;
    LOCK(log, vmu);
    view_unref_locked(log, v, &dead, &freed);
    UNLOCK(log, vmu);
    view_free(dead);
    retired_release(freed);
}

/* Hand removed things to the retired list, to be released once every live
 * snapshot is at least generation gen (the first that lacks them). */
static void retire(rn_log_t *log, retired_t *list, uint64_t gen)
{
    if (!list) return;
    retired_t *freed = NULL;
    LOCK(log, vmu);
    retired_t *last = list;
    for (;;) {
        last->gen = gen;
        if (!last->next) break;
        last = last->next;
    }
    last->next = log->retired;
    log->retired = list;
    collect_locked(log, &freed);      /* unreachable already when nothing older is live */
    UNLOCK(log, vmu);
    retired_release(freed);
}

static qsnap_t *view_queue(const rn_view_t *v, uint32_t id)
{
    size_t lo = 0, hi = v->nqueues;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t m = v->queues[mid]->q->id;
        if (m == id) return v->queues[mid];
        if (m < id) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* 1 when every slot of q below n lies in snapshot v: in one of q's index
 * files there, and in one of v's segments. */
static int view_covers(const rn_view_t *v, const qsnap_t *q, uint64_t n)
{
    if (n <= q->start_slot) return 1;
    if (q->ix.nfiles == 0) return 0;
    const rn_idx_file_t *f = &q->ix.files[q->ix.nfiles - 1];
    if (n > f->first_slot + f->cap) return 0;
    rn_idx_unit_t u;
    rn_idx_get(&q->ix, n - 1, &u);
    const rn_seg_t *l = &v->segs[v->nsegs - 1];
    return rn_log_unit_end_pos(&u) <= l->start + l->size;
}

/* Pin a snapshot holding every visible slot of queue id: *q (NULL when the
 * queue is not in it) and *vis, its visible slot count (0 without q). */
static rn_view_t *pin_queue(rn_log_t *log, uint32_t id, const qsnap_t **q, uint64_t *vis)
{
    for (int tries = 0;; tries++) {
        rn_view_t *v = view_pin(log);
        const qsnap_t *s = view_queue(v, id);
        uint64_t n = s ? atomic_load_explicit(&s->q->visible, memory_order_acquire) : 0;
        if (!s || view_covers(v, s, n)) {
            *q = s;
            *vis = n;
            return v;
        }
        /* Published after this snapshot was pinned: the snapshot that holds
         * it was swapped in before visible was stored, so the next pin
         * sees it. */
        assert(tries == 0);
        if (tries > 0) {                     /* cannot happen; stay safe */
            *q = s;
            *vis = s->ix.nunits < n ? s->ix.nunits : n;
            return v;
        }
        view_unpin(log, v);
    }
}

static qsnap_t *qsnap_build(rn_queue_t *q)
{
    qsnap_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t n = q->ix.nfiles;
    if (n > 0) {
        s->ix.files = malloc(n * sizeof *s->ix.files);
        if (!s->ix.files) { free(s); return NULL; }
    }
    for (size_t i = 0; i < n; i++) {
        /* Field by field: dirty belongs to the live table (the syncer
         * clears it concurrently) and means nothing to readers. */
        const rn_idx_file_t *f = &q->ix.files[i];
        s->ix.files[i] = (rn_idx_file_t){.base = f->base, .first_slot = f->first_slot,
                                         .cap = f->cap, .fd = f->fd, .map = f->map,
                                         .fence = f->fence, .dirty = 0};
    }
    s->ix.nfiles = s->ix.capfiles = n;
    s->ix.nunits = q->ix.nunits;
    s->ix.new_cap = q->ix.new_cap;
    s->q = q;
    s->start_slot = q->start_slot;
    s->start_offset = q->start_offset;
    return s;
}

/* Make the live tables the current snapshot (writer with wmu held, or open).
 * New qsnaps for the queues whose tables changed; the replaced ones and
 * log->pending are retired with the new generation. -ENOMEM changes nothing
 * (the caller turns the store sticky: readers keep the old snapshot). */
static int publish(rn_log_t *log)
{
    assert(!log->opened || HELD(log, wmu));
    assert(!HELD(log, tmu) && !HELD(log, vmu));
    size_t nq = log->nqueues;
    rn_view_t *v = calloc(1, sizeof *v);
    qsnap_t **fresh = calloc(nq ? nq : 1, sizeof *fresh);
    retired_t *nodes = NULL;
    int rc = -ENOMEM;
    if (!v || !fresh) goto fail;
    v->segs = malloc(log->nsegs * sizeof *v->segs);
    v->queues = malloc((nq ? nq : 1) * sizeof *v->queues);
    if (!v->segs || !v->queues) goto fail;
    for (size_t i = 0; i < nq; i++) {
        rn_queue_t *q = log->queues[i];
        if (q->snap && !q->snap_stale) continue;
        fresh[i] = qsnap_build(q);
        if (!fresh[i]) goto fail;
        if (q->snap) {
            retired_t *r = calloc(1, sizeof *r);
            if (!r) goto fail;
            r->kind = RET_QSNAP;
            r->p = q->snap;                 /* the qsnap it replaces */
            r->next = nodes;
            nodes = r;
        }
    }
    /* Nothing can fail from here. Field by field: a segment's dirty flag
     * belongs to the live table (the syncer clears it concurrently). */
    for (size_t i = 0; i < log->nsegs; i++) {
        const rn_seg_t *g = &log->segs[i];
        v->segs[i] = (rn_seg_t){.start = g->start, .size = g->size, .fd = g->fd,
                                .max_ts = g->max_ts, .dirty = 0, .map = g->map};
    }
    v->nsegs = log->nsegs;
    v->nqueues = nq;
    for (size_t i = 0; i < nq; i++) {
        rn_queue_t *q = log->queues[i];
        if (fresh[i]) {
            q->snap = fresh[i];
            q->snap_stale = 0;
        }
        v->queues[i] = q->snap;
    }
    free(fresh);
    retired_t *list = nodes;
    if (list) {
        retired_t *t = list;
        while (t->next) t = t->next;
        t->next = log->pending;
    } else {
        list = log->pending;
    }
    log->pending = NULL;
    v->gen = ++log->view_gen;
    v->refs = 1;
    rn_view_t *old;
    LOCK(log, vmu);
    old = log->view;
    v->older = log->newest;
    if (log->newest) log->newest->newer = v; else log->oldest = v;
    log->newest = v;
    log->view = v;
    UNLOCK(log, vmu);
    /* The old snapshot's own reference goes; what only older snapshots
     * reach goes with the last of them. */
    if (old) view_unpin(log, old);
    retire(log, list, v->gen);
    log->unpublished = 0;
    return 0;
fail:
    if (fresh) for (size_t i = 0; i < nq; i++) qsnap_free(fresh[i]);
    free(fresh);
    while (nodes) { retired_t *n = nodes->next; free(nodes); nodes = n; }
    view_free(v);
    return rc;
}

/* Writer: publish when a table changed; a failure turns the store sticky. */
int rn_log_publish_if_needed(rn_log_t *log, char *errmsg)
{
    if (!log->unpublished) return 0;
    int rc = publish(log);
    if (rc != 0) {
        rn_log_set_sticky(log, rc, "out of memory publishing the store's tables to readers");
        return rn_errf(errmsg, rc, "out of memory publishing the store's tables to readers");
    }
    return 0;
}

/* ---- open / close ------------------------------------------------------------ */

int rn_log_lock_dir(rn_log_t *log, char *errmsg)
{
    char *path = rn_path_join(log->dir, "LOCK");
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

/* Free everything (no other thread is running, no snapshot is pinned). */
void rn_log_free(rn_log_t *log)
{
    if (log->view) view_unpin(log, log->view);  /* the last snapshot goes */
    assert(!log->oldest);
    retired_release(log->retired);
    retired_release(log->pending);
    if (log->spare_state == SPARE_READY) rn_seg_close(&log->spare);
    for (size_t i = 0; i < log->nqueues; i++) rn_log_queue_free(log->queues[i]);
    free(log->queues);
    for (size_t i = 0; i < log->nsegs; i++) rn_seg_close(&log->segs[i]);
    free(log->segs);
    free(log->ring);
    free(log->holes);
    for (size_t i = 0; i < log->njobs; i++) free(log->jobs[i].buf);
    if (log->lock_fd >= 0) rn_sys.close(log->lock_fd);
    pthread_mutex_destroy(&log->wmu);
    pthread_mutex_destroy(&log->tmu);
    pthread_mutex_destroy(&log->vmu);
    pthread_mutex_destroy(&log->smu);
    pthread_mutex_destroy(&log->sync_mu);
    pthread_cond_destroy(&log->done_cv);
    pthread_cond_destroy(&log->work_cv);
    rn_notify_destroy(&log->own_notify);
    free(log->dir);
    free(log->cl_dir);
    free(log->ix_dir);
    free(log);
}

/* A store handle with its locks and paths, nothing opened (rn_log_free frees
 * it); NULL when out of memory. */
rn_log_t *rn_log_alloc(const char *dir)
{
    rn_log_t *log = calloc(1, sizeof *log);
    if (!log) return NULL;
    log->lock_fd = -1;
    pthread_mutex_init(&log->wmu, NULL);
    pthread_mutex_init(&log->tmu, NULL);
    pthread_mutex_init(&log->vmu, NULL);
    pthread_mutex_init(&log->smu, NULL);
    pthread_mutex_init(&log->sync_mu, NULL);
    pthread_cond_init(&log->done_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->work_cv, &ca);
    pthread_condattr_destroy(&ca);
    rn_notify_init(&log->own_notify);
    atomic_init(&log->notify, &log->own_notify);
    log->dir = strdup(dir);
    log->cl_dir = rn_path_join(dir, "commitlog");
    log->ix_dir = rn_path_join(dir, "index");
    if (!log->dir || !log->cl_dir || !log->ix_dir) {
        rn_log_free(log);
        return NULL;
    }
    return log;
}

int rn_log_open(const char *dir, const rn_log_opts_t *o, rn_log_t **out, char *errmsg)
{
    uint64_t t0 = rn_mono_ns();
    rn_log_opts_t opts;
    *out = NULL;
    int rc = check_opts(o, &opts, errmsg);
    if (rc != 0) return rc;
    rn_log_t *log = rn_log_alloc(dir);
    if (!log) return rn_errf(errmsg, -ENOMEM, "out of memory");
    log->o = opts;
    log->lim.max_bytes = opts.max_batch_bytes;
    log->lim.max_records = RN_BATCH_MAX_RECORDS;
    log->ring = malloc(RING_CAP * sizeof *log->ring);
    if (!log->ring) {
        rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = rn_mkdir_p(log->cl_dir);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot create %s: %s", log->cl_dir, rn_strerror(rc));
        goto fail;
    }
    rc = rn_log_lock_dir(log, errmsg);
    if (rc != 0) goto fail;
    rc = rn_log_load_segments(log, errmsg);
    if (rc != 0) goto fail;
    rc = rn_log_recover(log, errmsg);
    if (rc != 0) goto fail;
    rc = publish(log);                      /* the first snapshot */
    if (rc != 0) {
        rn_errf(errmsg, rc, "out of memory opening %s", dir);
        goto fail;
    }
    log->opened = 1;
    rc = -pthread_create(&log->thr, NULL, rn_log_syncer_main, log);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot start the syncer thread: %s", rn_strerror(rc));
        goto fail;
    }
    log->thr_started = 1;
    log->rec.elapsed_us = (rn_mono_ns() - t0) / 1000;
    *out = log;
    return 0;
fail:
    rn_log_free(log);
    return rc;
}

int rn_log_close(rn_log_t *log)
{
    if (!log) return 0;
    char msg[RN_ERRMSG_SIZE];
    LOCK(log, smu);
    log->stop = 1;
    pthread_cond_broadcast(&log->work_cv);
    pthread_cond_broadcast(&log->done_cv);
    UNLOCK(log, smu);
    if (log->thr_started) pthread_join(log->thr, NULL);
    int rc = log->sticky_rc;
    if (rc == 0) {
        rc = rn_log_sync_segments(log, UINT64_MAX, msg, sizeof msg);
        if (rc == 0) rc = rn_log_sync_indexes(log, msg);
        if (rc == 0) rc = rn_log_write_checkpoint(log, log->write_pos, msg);
        if (rc == 0) rc = rn_log_write_clean(log, log->write_pos, msg);
    }
    /* A prepared segment no roll took goes (beyond the clean end, it would
     * only make the next open scan); a failed preparation no append
     * reported is reported here. */
    if (log->spare_state == SPARE_READY) {
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_name(name, log->spare.start);
        char *path = rn_path_join(log->cl_dir, name);
        rn_seg_close(&log->spare);
        log->spare_state = SPARE_NONE;
        if (!path) { if (rc == 0) rc = -ENOMEM; }
        else if (rn_sys.unlink(path) < 0 && rc == 0) rc = -errno;
        free(path);
    } else if (log->spare_state == SPARE_FAILED && rc == 0) {
        rc = log->spare_rc;
    }
    for (size_t i = 0; i < log->nqueues; i++) {
        rn_queue_t *q = log->queues[i];
        if (q->ix_spare_state == SPARE_READY) {
            int r = rn_idx_discard_spare(&q->ix, &q->ix_spare);
            q->ix_spare_state = SPARE_NONE;
            if (rc == 0) rc = r;
        } else if (q->ix_spare_state == SPARE_FAILED && rc == 0) {
            rc = q->ix_spare_rc;
        }
    }
    rn_log_free(log);
    return rc;
}

/* ---- append ------------------------------------------------------------------ */

/* The next index file of q: the one the syncer prepared when it is ready
 * (waiting while it is being made; renamed to its final name here), else
 * one created here (a queue's first file always is; counted). A failed
 * preparation fails this append, not stickily. */
static int next_index_file(rn_log_t *log, rn_queue_t *q, char *errmsg)
{
    assert(HELD(log, wmu));
    rn_idx_file_t f;
    int rc = 0, have = 0;
    if (q->ix.nfiles > 0) {
        LOCK(log, smu);
        while (q->ix_spare_state == SPARE_CREATING) WAIT(log, done_cv, smu);
        if (q->ix_spare_state == SPARE_READY) {
            f = q->ix_spare;
            have = 1;
        } else if (q->ix_spare_state == SPARE_FAILED) {
            rc = q->ix_spare_rc;
            rn_errf(errmsg, rc, "%s", q->ix_spare_msg ? q->ix_spare_msg : rn_strerror(rc));
        }
        q->ix_spare_state = SPARE_NONE;                  /* a WANTED entry is skipped */
        UNLOCK(log, smu);
        if (rc != 0) return rc;
    }
    q->ix_spare_asked = 0;
    atomic_fetch_add(&log->idx_files, 1);
    if (have) {
        rc = rn_idx_adopt_spare(&q->ix, &f, q->next_offset, errmsg);
        if (rc != 0) {
            rn_idx_discard_spare(&q->ix, &f);
            return rc;
        }
    } else {
        atomic_fetch_add(&log->idx_files_inline, 1);
        rc = rn_idx_prepare_file(&q->ix, q->next_offset, &f, errmsg);
        if (rc != 0) return rc;
    }
    LOCK(log, tmu);
    rc = rn_idx_attach_file(&q->ix, &f);
    UNLOCK(log, tmu);
    if (rc != 0) {
        rn_idx_discard_file(&q->ix, &f);
        return rn_errf(errmsg, rc, "out of memory growing the index of queue %u", q->id);
    }
    q->snap_stale = 1;
    log->unpublished = 1;
    return 0;
}

/* Once q's last index file is half full, ask the syncer for its successor. */
static void ask_ix_spare(rn_log_t *log, rn_queue_t *q)
{
    if (q->ix_spare_asked || q->ix.nfiles == 0) return;
    const rn_idx_file_t *l = &q->ix.files[q->ix.nfiles - 1];
    if (q->ix.nunits - l->first_slot < (l->cap + 1) / 2) return;
    q->ix_spare_asked = 1;
    LOCK(log, smu);
    if (q->ix_spare_state == SPARE_NONE) {
        q->ix_spare_state = SPARE_WANTED;
        if (!q->ix_spare_listed) {
            q->ix_spare_next = log->ix_wanted;
            log->ix_wanted = q;
            q->ix_spare_listed = 1;
        }
        pthread_cond_signal(&log->work_cv);
    }
    UNLOCK(log, smu);
}

/* Ask the syncer for the successor of the active segment sg: at once after
 * a roll (a writer that rolled will roll again), else once sg is half full. */
static void ask_spare(rn_log_t *log, const rn_seg_t *sg, int now)
{
    if (log->spare_asked || (!now && log->write_pos - sg->start < sg->size / 2)) return;
    log->spare_asked = 1;
    LOCK(log, smu);
    if (log->spare_state == SPARE_NONE) {
        log->spare_state = SPARE_WANTED;
        log->spare_start = sg->start + sg->size;
        pthread_cond_signal(&log->work_cv);
    }
    UNLOCK(log, smu);
}

/* Start a new segment: the spare the syncer prepared when it is ready
 * (waiting while it is being made), else one created here (counted). The
 * finished segment is made durable, and the new recovery point written, by
 * the syncer (run_checkpoint): the writer only hands over the checkpoint
 * bytes. A spare that failed fails this append, not stickily (the retry
 * creates one here). */
static int roll(rn_log_t *log, char *errmsg)
{
    assert(HELD(log, wmu));
    const rn_seg_t *a = &log->segs[log->nsegs - 1];
    uint64_t start = a->start + a->size;
    int rc = 0, have = 0, waited = 0;
    rn_seg_t ns, stray;
    int has_stray = 0;
    LOCK(log, smu);
    while (log->spare_state == SPARE_CREATING) {
        waited = 1;
        WAIT(log, done_cv, smu);
    }
    if (log->spare_state == SPARE_READY && log->spare.start == start) {
        ns = log->spare;
        have = 1;
    } else if (log->spare_state == SPARE_READY) {
        stray = log->spare;                   /* cannot happen: the start is fixed */
        has_stray = 1;
    } else if (log->spare_state == SPARE_FAILED) {
        rc = log->spare_rc;
        rn_errf(errmsg, rc, "%s", log->spare_msg);
    }
    log->spare_state = SPARE_NONE;
    UNLOCK(log, smu);
    if (has_stray) rn_seg_close(&stray);
    if (waited) atomic_fetch_add(&log->rolls_waited, 1);
    if (rc == 0 && !have) {
        atomic_fetch_add(&log->rolls_inline, 1);
        rc = rn_seg_create(log->cl_dir, start, log->o.segment_bytes, &ns, errmsg);
    }
    if (rc == -ENOSPC) {
        return rn_errf(errmsg, rc,
                       "no space left on device for a new %llu-byte segment in %s; nothing "
                       "acknowledged was harmed",
                       (unsigned long long)log->o.segment_bytes, log->cl_dir);
    }
    if (rc != 0) return rc;
    LOCK(log, tmu);
    rc = rn_log_seg_push(log, &ns);
    UNLOCK(log, tmu);
    if (rc != 0) {
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_close(&ns);
        rn_seg_name(name, ns.start);
        char *path = rn_path_join(log->cl_dir, name);
        if (path) rn_sys.unlink(path);
        free(path);
        return rn_errf(errmsg, rc, "out of memory rolling the commit log");
    }
    atomic_fetch_add(&log->rolls, 1);
    log->unpublished = 1;
    log->spare_asked = 0;
    log->write_pos = ns.start;
    ask_spare(log, &log->segs[log->nsegs - 1], 1);
    uint8_t *b;
    size_t n;
    if (rn_log_ckpt_build(log, ns.start, &b, &n) == 0) {
        LOCK(log, smu);
        rn_log_post_checkpoint_job(log, ns.start, b, n);
        if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
        UNLOCK(log, smu);
    }                                       /* out of memory: the next roll retries */
    return 0;
}

static int queue_for_append(rn_log_t *log, uint32_t id, rn_queue_t **out, char *errmsg)
{
    assert(HELD(log, wmu));
    rn_queue_t *q = log->lastq;
    if (!q || q->id != id) q = rn_log_find_queue(log, id);
    if (!q) {
        int rc = rn_log_queue_new(log, id, &q);
        if (rc != 0) return rn_errf(errmsg, rc, "out of memory adding queue %u", id);
        LOCK(log, tmu);
        rc = rn_log_queue_insert(log, q);
        UNLOCK(log, tmu);
        if (rc != 0) {
            rn_log_queue_free(q);
            return rn_errf(errmsg, rc, "out of memory adding queue %u", id);
        }
        log->unpublished = 1;
    }
    log->lastq = q;
    *out = q;
    return 0;
}

rn_hist_t rn_log_append_hist, rn_log_fsync_hist;

/* rn_log_append and rn_log_append_at: expect < 0 takes the queue's next
 * offset, else the append is refused unless the queue ends exactly there. */
static int append_impl(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                       int64_t expect, int64_t *base_offset, uint64_t *ticket, char *errmsg);

int rn_log_append(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                  int64_t *base_offset, uint64_t *ticket, char *errmsg)
{
    return append_impl(log, queue, batch, len, -1, base_offset, ticket, errmsg);
}

int rn_log_append_at(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                     int64_t base, uint64_t *ticket, char *errmsg)
{
    int64_t got;
    if (base < 0) return rn_errf(errmsg, RN_EINVAL, "base offset %lld is negative", (long long)base);
    return append_impl(log, queue, batch, len, base, &got, ticket, errmsg);
}

static int append_impl(rn_log_t *log, uint32_t queue, const uint8_t *batch, size_t len,
                       int64_t expect, int64_t *base_offset, uint64_t *ticket, char *errmsg)
{
    rn_batch_header_t bh;
    int rc;
    const uint64_t t0 = rn_mono_ns();
    if (len > log->o.max_batch_bytes)
        return rn_errf(errmsg, RN_ETOOBIG, "batch of %zu bytes exceeds max_batch_bytes %u", len,
                       log->o.max_batch_bytes);
    rc = rn_batch_validate(batch, len, &log->lim, 0, &bh, errmsg);
    if (rc != 0) return rc;
    if (bh.record_count < 1)
        return rn_errf(errmsg, RN_ECORRUPT, "batch holds no records");

    LOCK(log, wmu);
    if (atomic_load(&log->sticky)) { rc = rn_log_sticky_err(log, errmsg); goto out; }
    rn_queue_t *q = NULL;
    rc = queue_for_append(log, queue, &q, errmsg);
    if (rc != 0) goto out;
    if (q->next_offset > INT64_MAX - bh.record_count) {
        rc = rn_errf(errmsg, RN_ERANGE, "queue %u has no offsets left", queue);
        goto out;
    }
    if (expect >= 0 && q->next_offset != expect) {
        rc = rn_errf(errmsg, RN_ERANGE, "queue %u ends at offset %lld, not at the batch's base "
                     "offset %lld: refused (a replica appends only at its log end)", queue,
                     (long long)q->next_offset, (long long)expect);
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
        rc = next_index_file(log, q, errmsg);
        if (rc != 0) goto out;
    }
    /* Readers get the new segment, queue or index file before any unit in it. */
    rc = rn_log_publish_if_needed(log, errmsg);
    if (rc != 0) goto out;
    int64_t base = q->next_offset;
    uint8_t hb[RN_SEG_HDR_SIZE + 8];
    rn_be64_put(hb + RN_SEG_HDR_SIZE, (uint64_t)base);
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
        rn_log_set_sticky(log, rc, what);
        rn_errf(errmsg, rc, "%s", what);
        goto out;
    }
    rn_idx_unit_t u = {
        .position = pos, .base_offset = base, .first_ts = bh.first_timestamp,
        .max_ts = bh.max_timestamp > q->running_max ? bh.max_timestamp : q->running_max,
        .size = (uint32_t)len, .record_count = (uint32_t)bh.record_count, .flags = 0,
    };
    __atomic_store_n(&sg->dirty, 1, __ATOMIC_RELEASE);
    /* The unit goes where readers' snapshot already reaches (published above). */
    assert(!log->unpublished);
    assert(pos >= sg->start && pos + entry <= sg->start + sg->size);
    rn_idx_put(&q->ix, &u);
    assert(atomic_load_explicit(&q->visible, memory_order_relaxed) < q->ix.nunits);
    q->next_offset += bh.record_count;
    q->running_max = u.max_ts;
    if (u.max_ts > sg->max_ts) sg->max_ts = u.max_ts;
    log->write_pos = pos + entry;
    uint64_t end = log->write_pos;
    ask_spare(log, sg, 0);
    ask_ix_spare(log, q);

    switch (log->o.fsync) {
    case RN_FSYNC_ALWAYS:
        assert_may_block(log, 1);
        uint64_t f0 = rn_mono_ns();
        int synced = rn_sys.fdatasync(sg->fd);
        rn_hist_observe(&rn_log_fsync_hist, rn_mono_ns() - f0);
        if (synced < 0) {
            char what[RN_ERRMSG_SIZE];
            rc = -errno;
            snprintf(what, sizeof what, "fdatasync of commitlog/%020llu.log failed: %s",
                     (unsigned long long)sg->start, rn_strerror(rc));
            rn_log_set_sticky(log, rc, what);
            rn_errf(errmsg, rc, "%s", what);
            goto out;
        }
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
        atomic_store(&log->written_pos, end);
        rn_log_advance_durable(log, end);
        break;
    case RN_FSYNC_GROUP:
        LOCK(log, smu);
        while (log->rcount == RING_CAP && !log->sticky_rc) {
            /* Back-pressure: the ring is full until the syncer's fdatasync
             * ends (that fdatasync holds no lock). */
            if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
            WAIT(log, done_cv, smu);
        }
        if (log->sticky_rc) {
            UNLOCK(log, smu);
            rc = rn_log_sticky_err(log, errmsg);
            goto out;
        }
        log->ring[(log->rhead + log->rcount) % RING_CAP] = (pend_t){end, q, q->ix.nunits};
        log->rcount++;
        atomic_store(&log->written_pos, end);
        if (log->syncer_idle) pthread_cond_signal(&log->work_cv);
        UNLOCK(log, smu);
        break;
    case RN_FSYNC_INTERVAL:
    case RN_FSYNC_NEVER:
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
        atomic_store(&log->written_pos, end);
        rn_notify_bump(atomic_load(&log->notify));
        break;
    }
    *base_offset = base;
    *ticket = end;
out:
    UNLOCK(log, wmu);
    rn_hist_observe(&rn_log_append_hist, rn_mono_ns() - t0);
    return rc;
}

void rn_log_set_notify(rn_log_t *log, rn_notify_t *n)
{
    atomic_store(&log->notify, n ? n : &log->own_notify);
}

rn_notify_t *rn_log_notify(rn_log_t *log) { return atomic_load(&log->notify); }

int rn_log_wait(rn_log_t *log, uint64_t ticket)
{
    if (atomic_load(&log->durable_pos) >= ticket) return 0;
    if (log->o.fsync != RN_FSYNC_GROUP) {
        /* always: durable on return from append; interval/never ack at once
         * unless the store already failed. */
        return atomic_load(&log->sticky) ? log->sticky_rc : 0;
    }
    int rc = 0;
    LOCK(log, smu);
    while (atomic_load(&log->durable_pos) < ticket && !log->sticky_rc && !log->stop)
        WAIT(log, done_cv, smu);
    if (atomic_load(&log->durable_pos) < ticket)
        rc = log->sticky_rc ? log->sticky_rc : RN_ECLOSED;
    UNLOCK(log, smu);
    return rc;
}

int rn_log_sync(rn_log_t *log)
{
    char what[RN_ERRMSG_SIZE];
    if (atomic_load(&log->sticky)) return log->sticky_rc;
    uint64_t t = atomic_load(&log->written_pos);
    if (atomic_load(&log->durable_pos) >= t) return 0;
    int rc = rn_log_sync_segments(log, UINT64_MAX, what, sizeof what);
    if (rc != 0) return rn_log_set_sticky(log, rc, what);
    rn_log_advance_durable(log, t);
    return 0;
}

/* ---- readers ------------------------------------------------------------------ */

static int range_err(char *errmsg, uint32_t queue, int64_t off, int64_t ls, int64_t hw)
{
    return rn_errf(errmsg, RN_ERANGE, "offset %lld of queue %u is outside [%lld, %lld]",
                   (long long)off, queue, (long long)ls, (long long)hw);
}

/* Read one unit's batch into dst (size bytes) through snapshot v and check
 * it is the batch the unit describes. */
static int read_batch(const rn_view_t *v, uint32_t queue, const rn_idx_unit_t *u, uint8_t *dst,
                      char *errmsg)
{
    const rn_seg_t *sg = &v->segs[seg_find(v->segs, v->nsegs, u->position)];
    size_t got;
    uint64_t off = u->position - sg->start + RN_SEG_HDR_SIZE;
    int rc = rn_pread_full(sg->fd, dst, u->size, (off_t)off, &got);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot read commitlog/%020llu.log at byte %llu: %s",
                       (unsigned long long)sg->start, (unsigned long long)off, rn_strerror(rc));
    if (got != u->size || (int64_t)rn_be64_get(dst) != u->base_offset)
        return rn_errf(errmsg, RN_ECORRUPT,
                       "commitlog/%020llu.log at byte %llu does not hold the batch of queue %u "
                       "at offsets [%lld, %lld) that the index places there; the store is "
                       "damaged (runnel store check)", (unsigned long long)sg->start,
                       (unsigned long long)off, queue, (long long)u->base_offset,
                       (long long)rn_log_unit_end_off(u));
    return 0;
}

/* The error for a read of a damaged unit's offsets. */
static int damaged_err(char *errmsg, uint32_t queue, const rn_idx_unit_t *u)
{
    if (u->size == 0)
        return rn_errf(errmsg, RN_EDAMAGED, "queue %u offsets [%lld, %lld) were lost (accepted "
                       "by store repair --accept-loss at commit-log position %llu); read from "
                       "offset %lld on, or skip them with --skip-damaged", queue,
                       (long long)u->base_offset, (long long)rn_log_unit_end_off(u),
                       (unsigned long long)u->position, (long long)rn_log_unit_end_off(u));
    return rn_errf(errmsg, RN_EDAMAGED, "queue %u offsets [%lld, %lld) are damaged (commit-log "
                   "position %llu, %u bytes); the batches after them are kept: read from "
                   "offset %lld on, or skip them with --skip-damaged", queue,
                   (long long)u->base_offset, (long long)rn_log_unit_end_off(u),
                   (unsigned long long)u->position, u->size, (long long)rn_log_unit_end_off(u));
}

int rn_log_read(rn_log_t *log, uint32_t queue, int64_t offset, size_t max_bytes, rn_buf_t *out,
                uint32_t *nbatches, char *errmsg)
{
    int rc = 0;
    uint32_t n = 0;
    const qsnap_t *q;
    uint64_t v;
    rn_view_t *view = pin_queue(log, queue, &q, &v);
    if (!q) {
        if (offset != 0) rc = range_err(errmsg, queue, offset, 0, 0);
        goto out;
    }
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
        rc = read_batch(view, queue, &u, out->data + out->len, errmsg);
        if (rc != 0) {
            if (rc == RN_ECORRUPT && n > 0) rc = 0;
            break;
        }
        out->len += u.size;
        total += u.size;
        n++;
    }
out:
    view_unpin(log, view);
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
    const qsnap_t *q;
    uint64_t v;
    rn_view_t *view = pin_queue(log, queue, &q, &v);
    if (!q) { rc = range_err(errmsg, queue, offset, 0, 0); goto out; }
    int64_t hw = queue_hw(q, v);
    if (offset < q->start_offset || offset >= hw) {
        rc = range_err(errmsg, queue, offset, q->start_offset, hw);
        goto out;
    }
    rn_idx_unit_t u;
    rn_idx_get(&q->ix, rn_idx_find_offset(&q->ix, q->start_slot, v, offset), &u);
    fill_ref(ref, &u);
out:
    view_unpin(log, view);
    return rc;
}

int rn_log_lookup_time_batch(rn_log_t *log, uint32_t queue, int64_t ts, rn_log_batch_ref_t *ref,
                             char *errmsg)
{
    int rc = 0;
    const qsnap_t *q;
    uint64_t v;
    rn_view_t *view = pin_queue(log, queue, &q, &v);
    uint64_t s = q && v > q->start_slot ? rn_idx_find_time(&q->ix, q->start_slot, v, ts) : v;
    if (!q || s >= v) {
        rc = rn_errf(errmsg, RN_ENOTFOUND, "queue %u has no record with timestamp >= %lld",
                     queue, (long long)ts);
    } else {
        rn_idx_unit_t u;
        rn_idx_get(&q->ix, s, &u);
        fill_ref(ref, &u);
    }
    view_unpin(log, view);
    return rc;
}

int rn_log_lookup_time(rn_log_t *log, uint32_t queue, int64_t ts, int64_t *offset, char *errmsg)
{
    int rc = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    const qsnap_t *q;
    uint64_t v;
    rn_view_t *view = pin_queue(log, queue, &q, &v);
    if (!q) { *offset = 0; goto out; }
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
        const rn_seg_t *sg = &view->segs[seg_find(view->segs, view->nsegs, u.position)];
        uint64_t off = u.position - sg->start + RN_SEG_HDR_SIZE;
        const uint8_t *bp;
        if (sg->map && off + u.size <= sg->size) {
            bp = sg->map + off;
            if ((int64_t)rn_be64_get(bp) != u.base_offset) {
                rc = rn_errf(errmsg, RN_ECORRUPT,
                             "commitlog/%020llu.log at byte %llu does not hold the batch of "
                             "queue %u at offsets [%lld, %lld) that the index places there",
                             (unsigned long long)sg->start, (unsigned long long)off, queue,
                             (long long)u.base_offset, (long long)rn_log_unit_end_off(&u));
                goto out;
            }
        } else {
            if (u.size > cap) {
                uint8_t *nb = realloc(buf, u.size);
                if (!nb) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
                buf = nb;
                cap = u.size;
            }
            rc = read_batch(view, queue, &u, buf, errmsg);
            if (rc != 0) goto out;
            bp = buf;
        }
        int32_t idx;
        int f = rn_batch_find_time(bp, u.size, ts, &idx);
        if (f == 1) { *offset = u.base_offset + idx; goto out; }
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
    view_unpin(log, view);
    rn_batch_iter_destroy(&it);
    free(buf);
    return rc;
}

int rn_log_queue_info(rn_log_t *log, uint32_t queue, rn_log_queue_info_t *out)
{
    memset(out, 0, sizeof *out);
    const qsnap_t *q;
    uint64_t v;
    rn_view_t *view = pin_queue(log, queue, &q, &v);
    if (q) {
        out->log_start = q->start_offset;
        out->high_watermark = queue_hw(q, v);
        out->batches = v > q->start_slot ? v - q->start_slot : 0;
    }
    view_unpin(log, view);
    return 0;
}

int rn_log_queues(rn_log_t *log, uint32_t **ids, size_t *n)
{
    rn_view_t *view = view_pin(log);
    uint32_t *a = malloc((view->nqueues ? view->nqueues : 1) * sizeof *a);
    if (!a) {
        view_unpin(log, view);
        return -ENOMEM;
    }
    for (size_t i = 0; i < view->nqueues; i++) a[i] = view->queues[i]->q->id;
    *n = view->nqueues;
    view_unpin(log, view);
    *ids = a;
    return 0;
}

uint64_t rn_log_bytes(rn_log_t *log)
{
    rn_view_t *view = view_pin(log);
    uint64_t w = atomic_load(&log->written_pos), first = view->segs[0].start;
    view_unpin(log, view);
    return w > first ? w - first : 0;
}

void rn_log_stats(rn_log_t *log, rn_log_stats_t *out)
{
    out->rolls = atomic_load(&log->rolls);
    out->rolls_inline = atomic_load(&log->rolls_inline);
    out->rolls_waited = atomic_load(&log->rolls_waited);
    out->index_files = atomic_load(&log->idx_files);
    out->index_files_inline = atomic_load(&log->idx_files_inline);
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
    char *path = rn_path_join(log->cl_dir, name);
    struct stat st;
    int64_t t = now;                        /* unknown: not old */
    if (path && stat(path, &st) == 0)
        t = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    free(path);
    return t;
}
/* A queue's detached index files, waiting to be unlinked and retired. */
typedef struct idx_gone {
    rn_queue_t    *q;
    retired_t     *node;          /* RET_IDXFILES: p = the files, n */
} idx_gone_t;

int rn_log_retain(rn_log_t *log, uint32_t *dropped)
{
    int rc = 0;
    size_t k = 0, ngone = 0;
    retired_t *segnode = NULL;
    idx_gone_t *ig = NULL;
    uint64_t gen = 0;
    *dropped = 0;
    /* The pending roll checkpoint first, with no store lock held: its
     * fdatasyncs must not hold up appends. */
    LOCK(log, wmu);
    uint64_t active = log->segs[log->nsegs - 1].start;
    UNLOCK(log, wmu);
    rc = rn_log_checkpoint_catch_up(log, active);
    if (rc != 0) return rc;

    LOCK(log, wmu);
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
    if (k == 0) { UNLOCK(log, wmu); return 0; }
    /* Everything that can fail is allocated before the tables change. */
    segnode = calloc(1, sizeof *segnode);
    rn_seg_t *gone = malloc(k * sizeof *gone);
    ig = calloc(log->nqueues ? log->nqueues : 1, sizeof *ig);
    if (!segnode || !gone || !ig) {
        UNLOCK(log, wmu);
        free(segnode);
        free(gone);
        free(ig);
        return -ENOMEM;
    }
    for (size_t i = 0; i < log->nqueues; i++) ig[i].node = calloc(1, sizeof *ig[i].node);
    uint64_t first = log->segs[k].start;
    assert(first <= durable);
    LOCK(log, tmu);
    memcpy(gone, log->segs, k * sizeof *gone);
    memmove(log->segs, log->segs + k, (log->nsegs - k) * sizeof *log->segs);
    log->nsegs -= k;
    for (size_t i = 0; i < log->nqueues; i++) {
        rn_queue_t *q = log->queues[i];
        uint64_t n = q->ix.nunits;
        uint64_t old = q->start_slot;
        q->start_slot = rn_idx_find_position(&q->ix, q->start_slot, n, first);
        if (q->start_slot < n) {
            rn_idx_unit_t u;
            rn_idx_get(&q->ix, q->start_slot, &u);
            q->start_offset = u.base_offset;
        } else {
            q->start_offset = q->next_offset;
        }
        if (q->start_slot != old) q->snap_stale = 1;
        /* Files below the new start leave the table but stay mapped for the
         * snapshots that still hold them (no node: they go next time). */
        rn_idx_file_t *files = NULL;
        size_t nf = 0;
        if (ig[i].node && rn_idx_detach_below(&q->ix, q->start_slot, &files, &nf) == 0 && nf) {
            ig[i].node->kind = RET_IDXFILES;
            ig[i].node->p = files;
            ig[i].node->n = nf;
            ig[i].q = q;
            q->snap_stale = 1;
            ig[ngone++] = ig[i];
            if (ngone - 1 != i) ig[i].node = NULL;
        } else {
            free(ig[i].node);
            ig[i].node = NULL;
        }
    }
    UNLOCK(log, tmu);
    log->unpublished = 1;
    gen = log->view_gen + 1;                    /* the first snapshot without them */
    char msg[RN_ERRMSG_SIZE];
    rc = rn_log_publish_if_needed(log, msg);
    UNLOCK(log, wmu);

    /* Names go now (open fds and mappings keep the bytes for the snapshots
     * that still hold them); the directory's fsync outside every lock. */
    for (size_t i = 0; i < k; i++) {
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_name(name, gone[i].start);
        char *path = rn_path_join(log->cl_dir, name);
        if (!path) { if (rc == 0) rc = -ENOMEM; continue; }
        if (rn_sys.unlink(path) < 0 && rc == 0) rc = -errno;
        free(path);
    }
    int r2 = rn_fsync_dir(log->cl_dir);
    if (rc == 0) rc = r2;
    segnode->kind = RET_SEGS;
    segnode->p = gone;
    segnode->n = k;
    retired_t *list = segnode;
    for (size_t i = 0; i < ngone; i++) {
        rn_idx_file_t *files = ig[i].node->p;
        for (size_t j = 0; j < ig[i].node->n; j++) {
            r2 = rn_idx_file_remove(&ig[i].q->ix, &files[j]);
            if (rc == 0) rc = r2;
        }
        ig[i].node->next = list;
        list = ig[i].node;
    }
    free(ig);
    retire(log, list, gen);
    *dropped = (uint32_t)k;
    return rc;
}

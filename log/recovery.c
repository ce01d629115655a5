/*
 * recovery.c — what rn_log_open does to the files a crash or a clean close
 * left (load the segments and indexes, scan, cut, settle, checkpoint), the
 * recovery report (rn_log_recovery_info, rn_log_recovery_format),
 * rn_log_accept_loss, and the offline check (rn_log_check). Part of the log
 * module: formats, invariants and THREADING are in log/log.c's opening
 * comment, the shared internals in log/log_int.h.
 *
 * WHAT RECOVERY GUARANTEES (when rn_log_open returns 0)
 *  1. Every entry before the checkpoint's position was durable when the
 *     checkpoint was written and is trusted with its index units; every
 *     entry after it has been verified (length bounds, header CRC, batch
 *     header, Kafka CRC, base offset continuing its queue) before a reader
 *     or writer sees the store, unless a valid clean marker, undamaged
 *     indexes and zeros after the marked end show a clean close.
 *  2. No acknowledged offset disappears silently: a queue that ends below
 *     the next offset its valid checkpoint file gave it fails the open,
 *     naming the offsets, unless accept_loss marks them lost.
 *  3. Offsets are never reused: offsets recovery could not keep readable
 *     stay taken by damaged units (reads fail with RN_EDAMAGED).
 *  4. Only a torn tail is cut; damage with intact entries after it is
 *     stepped over and marked. The report says what was scanned, cut,
 *     rebuilt, dropped and marked.
 *  5. The recovered state is durable before the first write: the scanned
 *     segments and every index are synced, a checkpoint is written at the
 *     end found, and the clean marker is removed.
 *
 * Recovery runs inside rn_log_open before the first snapshot is published
 * and before the syncer starts: one thread, no lock needed (log->opened is
 * 0). rn_log_accept_loss runs on an open store: it takes wmu (and tmu to
 * change a table), publishes, and syncs with no lock held. rn_log_check
 * reads a closed store under its directory lock and repairs nothing (like
 * open, it creates a first segment when the commit log has none).
 *
 * RECOVERY POINT AND RECOVERY
 *
 *   A roll switches to the next segment (preallocated and fsynced with its
 *   directory ahead of need by the syncer, see THREADING in log.c) and queues a
 *   checkpoint job {P = the new segment's start, each queue's next offset
 *   at P}. A prepared segment that no roll took is all zeros: it is removed
 *   at close, and after a crash recovery moves into it as the active one
 *   (zeros end the log). The syncer runs it: fdatasync the segments
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
 */
#include "log/log_int.h"

#include "batch/batch.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/index.h"
#include "log/log.h"
#include "log/segment.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- open: segments -------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int rn_log_load_segments(rn_log_t *log, char *errmsg)
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
        rc = rn_log_seg_push(log, &s);
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
        rc = rn_log_seg_push(log, &s);
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
        char *sub = rn_path_join(log->ix_dir, de->d_name);
        if (!sub) { rc = -ENOMEM; break; }
        DIR *s = opendir(sub);
        if (s) {
            struct dirent *f;
            while ((f = readdir(s)) != NULL) {
                if (f->d_name[0] == '.') continue;
                char *fp = rn_path_join(sub, f->d_name);
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
        char *sub = rn_path_join(log->ix_dir, nm);
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
        rc = rn_log_queue_insert(log, q);
        if (rc != 0) { rn_log_queue_free(q); break; }
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
            q->scan_next = rn_log_unit_end_off(&u);
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
        if (log->opened) LOCK(log, tmu);   /* after open the syncer walks the tables */
        rc = rn_idx_attach_file(&q->ix, &f);
        if (log->opened) UNLOCK(log, tmu);
        if (rc != 0) { rn_idx_discard_file(&q->ix, &f); return rc; }
        q->snap_stale = 1;
        log->unpublished = 1;
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
    const rn_queue_t *q = rn_log_find_queue(log, id);
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
            if (rn_log_unit_end_pos(&u) > pos) break;
        } else {
            if (u.position >= pos || !in_hole(log, u.position)) break;
            u.flags |= RN_IDX_DAMAGED;
            rn_idx_set(&q->ix, q->cursor, &u);
            log->rec.damaged_batches++;
            rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, u.base_offset, rn_log_unit_end_off(&u),
                      u.position);
        }
        q->cursor++;
        q->scan_next = rn_log_unit_end_off(&u);
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
        if (rn_log_unit_end_pos(&l) > pos) pos = rn_log_unit_end_pos(&l);
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
    rn_queue_t *q = rn_log_find_queue(log, id);
    if (!q) {
        int rc = rn_log_queue_new(log, id, &q);
        if (rc == 0) rc = rn_log_queue_insert(log, q);
        if (rc != 0) { rn_log_queue_free(q); return rc; }
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
        if (u.position == p && u.size && rn_log_unit_end_pos(&u) <= segend) owner = q;
    }
    if (owner) {
        if (!find_intact(log, i, rn_log_unit_end_pos(&u), 0, &at)) return 0;
        if (!(u.flags & RN_IDX_DAMAGED)) {
            u.flags |= RN_IDX_DAMAGED;
            rn_idx_set(&owner->ix, owner->cursor, &u);
            log->rec.damaged_batches++;
            rec_range(log, RN_LOG_RANGE_DAMAGED, owner->id, u.base_offset,
                      rn_log_unit_end_off(&u), p);
        }
        owner->cursor++;
        owner->scan_next = rn_log_unit_end_off(&u);
        owner->running_max = u.max_ts;
        *next = rn_log_unit_end_pos(&u);
        return hole_add(log, p, *next) == 0 ? 1 : -ENOMEM;
    }
    /* Its header is intact: its queue, base offset and length are known. */
    rn_seg_hdr_t h;
    rn_seg_hdr_decode(ent, &h);
    int64_t base = (int64_t)rn_be64_get(ent + RN_SEG_HDR_SIZE);
    const rn_queue_t *hq = rn_log_find_queue(log, h.queue);
    if (hdr_ok && base >= 0 && (!hq || hq->scan_next == UNKNOWN_NEXT || hq->scan_next == base)) {
        uint64_t end = p + RN_SEG_HDR_SIZE + h.batch_len;
        if (!find_intact(log, i, end, 0, &at)) return 0;
        rc = find_or_add_queue(log, h.queue, ckpt_ok, &owner);
        if (rc != 0) return rc;
        log->rec.dropped_units += (uint32_t)rn_idx_truncate(&owner->ix, owner->cursor);
        /* Its record count is a guess (see fix_slot): the larger of the
         * batch's recordCount and lastOffsetDelta + 1 that is plausible, so
         * a damaged count errs towards skipping offsets, not reusing them. */
        uint32_t count = rn_be32_get(ent + RN_SEG_HDR_SIZE + 57);   /* recordCount */
        uint32_t delta = rn_be32_get(ent + RN_SEG_HDR_SIZE + 23);   /* lastOffsetDelta */
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
    size_t i = rn_log_seg_of(log, p);
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
                rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, f.base_offset, rn_log_unit_end_off(&f),
                          f.position);
                q->fix_slot = -1;
            }
            if (q->scan_next != UNKNOWN_NEXT && bh.base_offset != q->scan_next) {
                /* Offsets skipped: only where damage lies between. */
                uint64_t lo = s;
                if (q->ix.nunits > 0 && q->ix.nfiles > 0 && q->cursor > 0) {
                    rn_idx_unit_t l;
                    rn_idx_get(&q->ix, q->cursor - 1, &l);
                    lo = rn_log_unit_end_pos(&l);
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
                q->in_ckpt && q->ckpt_next > rn_log_unit_end_off(&f) &&
                q->ckpt_next - f.base_offset <= (int64_t)UINT32_MAX) {
                /* The checkpoint says where this queue's offsets ended. */
                f.record_count = (uint32_t)(q->ckpt_next - f.base_offset);
                rn_idx_set(&q->ix, (uint64_t)q->fix_slot, &f);
            }
            rec_range(log, RN_LOG_RANGE_DAMAGED, q->id, f.base_offset, rn_log_unit_end_off(&f),
                      f.position);
            q->fix_slot = -1;
        }
        if (q->cursor < q->ix.nunits) {
            rn_idx_unit_t a, b;
            rn_idx_get(&q->ix, q->cursor, &a);
            rn_idx_get(&q->ix, q->ix.nunits - 1, &b);
            rec_range(log, RN_LOG_RANGE_DROPPED, q->id, a.base_offset, rn_log_unit_end_off(&b),
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
    size_t i = rn_log_seg_of(log, end);
    rn_seg_t *sg = &log->segs[i];
    int rc;
    if (bad) log->rec.truncated_bytes += sg->start + sg->size - end;
    rc = rn_seg_zero(sg, end - sg->start, bad, errmsg);
    if (rc != 0) return rc;
    while (log->nsegs > i + 1) {
        rn_seg_t *l = &log->segs[log->nsegs - 1];
        char name[RN_SEG_NAME_LEN + 1];
        rn_seg_name(name, l->start);
        char *path = rn_path_join(log->cl_dir, name);
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
            q->next_offset = rn_log_unit_end_off(&u);
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
        const rn_seg_t *sg = &log->segs[rn_log_seg_of(log, u.position)];
        if (rn_log_unit_end_pos(&u) > sg->start + sg->size) return 0;
        uint8_t b[RN_SEG_HDR_SIZE + RN_SEG_HCRC_BATCH];
        size_t got;
        int rc = rn_pread_full(sg->fd, b, sizeof b, (off_t)(u.position - sg->start), &got);
        if (rc != 0) return rc;
        rn_seg_hdr_t h;
        rn_seg_hdr_decode(b, &h);
        if (got != sizeof b || rn_seg_hdr_check(b, b + RN_SEG_HDR_SIZE) != 0 ||
            h.batch_len != u.size || h.queue != q->id ||
            (int64_t)rn_be64_get(b + RN_SEG_HDR_SIZE) != u.base_offset)
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
        rn_queue_t *q = rn_log_find_queue(log, id);
        int64_t have;
        rn_idx_unit_t l;
        if (q && q->ix.nfiles > 0 && q->ix.nunits > q->ix.files[0].first_slot) {
            rn_idx_get(&q->ix, q->ix.nunits - 1, &l);
            have = rn_log_unit_end_off(&l);
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

int rn_log_recover(rn_log_t *log, char *errmsg)
{
    ckpt_t c;
    uint64_t clean_end = 0;
    int damaged = 0, rc;
    int ckpt_ok = rn_log_read_checkpoint(log, &c);
    if (ckpt_ok < 0) {
        rc = ckpt_ok;
        rn_errf(errmsg, rc, "cannot read %s/checkpoint: %s", log->dir, rn_strerror(rc));
        goto out;
    }
    int ckpt_valid = ckpt_ok;             /* its next offsets hold even when its index cannot */
    int clean_ok = rn_log_read_clean(log, &clean_end);
    if (clean_ok < 0) {
        rc = clean_ok;
        rn_errf(errmsg, rc, "cannot read %s/clean: %s", log->dir, rn_strerror(rc));
        goto out;
    }
    log->rec.clean = clean_ok;
    log->vouched_end = ckpt_valid ? c.pos : 0;
    if (clean_ok && clean_end > log->vouched_end) log->vouched_end = clean_end;
    uint64_t first = log->segs[0].start, ext = rn_log_extent_end(log);
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
            for (size_t k = 0; k < log->nqueues; k++) rn_log_queue_free(log->queues[k]);
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
            rn_queue_t *q = rn_log_find_queue(log, id);
            if (!q) {
                rc = rn_log_queue_new(log, id, &q);
                if (rc == 0) rc = rn_log_queue_insert(log, q);
                if (rc != 0) { rn_log_queue_free(q); goto out; }
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
            vend = rn_log_unit_end_off(&u);
            if (rn_log_unit_end_pos(&u) > resume) resume = rn_log_unit_end_pos(&u);
            if (rn_log_unit_end_pos(&u) > ext) damaged = 1;
            if (clean_ok && rn_log_unit_end_pos(&u) > clean_end) damaged = 1;
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
                for (size_t k = 0; k < log->nqueues; k++) rn_log_queue_free(log->queues[k]);
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
    size_t sync_from = need_scan ? rn_log_seg_of(log, s) : log->nsegs - 1;
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
    rc = rn_log_write_checkpoint(log, end, errmsg);
    if (rc != 0) goto out;
    rc = rn_log_remove_clean(log, errmsg);
    if (rc != 0) goto out;
    log->write_pos = end;
    atomic_store(&log->written_pos, end);
    atomic_store(&log->durable_pos, end);
    atomic_store(&log->ckpt_pos, end);
out:
    free(c.buf);
    return rc;
}

/* ---- the recovery report, accepting loss --------------------------------- */

void rn_log_recovery_info(const rn_log_t *log, rn_log_recovery_t *out)
{
    *out = log->rec;
}

int rn_log_accept_loss(rn_log_t *log, uint32_t queue, int64_t next, char *errmsg)
{
    int rc = 0;
    uint8_t *ck = NULL;
    size_t ckn = 0;
    rn_queue_t *q = NULL;
    LOCK(log, wmu);
    q = rn_log_find_queue(log, queue);
    int64_t have = q ? q->next_offset : 0;
    if (next <= have) goto out;
    if (next - have > (int64_t)UINT32_MAX) {
        rc = rn_errf(errmsg, RN_EINVAL, "queue %u: %lld lost offsets are more than one index "
                     "unit can mark", queue, (long long)(next - have));
        goto out;
    }
    if (!q) {
        rc = rn_log_queue_new(log, queue, &q);
        if (rc == 0) {
            LOCK(log, tmu);
            rc = rn_log_queue_insert(log, q);
            UNLOCK(log, tmu);
        }
        if (rc != 0) {
            rn_log_queue_free(q);
            q = NULL;
            rn_errf(errmsg, rc, "out of memory");
            goto out;
        }
        log->unpublished = 1;
    }
    rn_idx_unit_t u = {
        .position = log->write_pos, .base_offset = have, .first_ts = q->running_max,
        .max_ts = q->running_max, .size = 0, .record_count = (uint32_t)(next - have),
        .flags = RN_IDX_DAMAGED,
    };
    rc = scan_add_unit(log, q, &u, errmsg);
    if (rc == 0) rc = rn_log_publish_if_needed(log, errmsg);
    if (rc == 0) {
        log->rec.rebuilt_units--;
        log->rec.lost_ranges++;
        rec_range(log, RN_LOG_RANGE_LOST, queue, have, next, log->write_pos);
        q->next_offset = next;
        atomic_store_explicit(&q->visible, q->ix.nunits, memory_order_release);
        rc = rn_log_ckpt_build(log, log->write_pos, &ck, &ckn);
        if (rc != 0) rn_errf(errmsg, rc, "out of memory writing the checkpoint");
    }
out:
    UNLOCK(log, wmu);
    /* The marks and the checkpoint that vouches for them become durable with
     * no lock held (THREADING). */
    if (rc == 0 && ck) rc = rn_log_sync(log);
    if (rc == 0 && ck) rc = rn_log_sync_indexes(log, errmsg);
    if (rc == 0 && ck) rc = rn_log_ckpt_write(log, ck, ckn, errmsg);
    free(ck);
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
        char *sub = rn_path_join(ix_dir, de->d_name);
        DIR *s = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (s && (f = readdir(s)) != NULL) {
            if (!strstr(f->d_name, ".idx")) continue;
            char *fp = rn_path_join(sub, f->d_name);
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
    rn_log_t *log = rn_log_alloc(dir);
    chk_queue_t *qs = NULL;
    size_t nq = 0, capq = 0;
    int rc = 0;
    if (!log) return rn_errf(errmsg, -ENOMEM, "out of memory");
    struct stat st;
    if (stat(log->cl_dir, &st) < 0) {
        rc = rn_errf(errmsg, -ENOENT, "%s holds no commit log (no %s)", dir, log->cl_dir);
        goto out;
    }
    rc = rn_log_lock_dir(log, errmsg);
    if (rc == 0) rc = rn_log_load_segments(log, errmsg);
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
    rn_log_free(log);
    return rc;
}

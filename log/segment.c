/*
 * segment.c — commit-log segment files: naming, durable preallocated
 * creation, zeroing a torn tail, and the 16-byte entry header codec.
 *
 * Invariants:
 *  1. A segment is created under its final name (O_EXCL), then preallocated
 *     to its full size and fsynced together with its directory, all before
 *     any entry is written into it; a failed creation unlinks the file. A
 *     crash in between can leave it short and holding no entries: an open
 *     grows the last segment to full size (rn_seg_grow) before writing.
 *  2. A segment's start and size never change while it is open (rn_seg_grow
 *     is only used by recovery, before the store accepts writes).
 *  3. An entry header is accepted only when its format is RN_SEG_FORMAT_V1
 *     and its hcrc matches the header's first 12 bytes plus batch bytes
 *     [0,21) — the part of a Kafka batch that Kafka's own CRC leaves out — so
 *     header + batch CRC together checksum every byte of an entry.
 *  4. Every write-side system call on a segment file goes through rn_sys
 *     (fault injection); munmap does not, and writes nothing.
 *  5. An open segment of non-zero size has a read-only mapping of its whole
 *     size; only rn_seg_grow (recovery) replaces it and rn_seg_close removes
 *     it. Segment files are never shrunk, so the mapping cannot fault.
 */
#include "log/segment.h"

#include "batch/crc32c.h"
#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void rn_seg_name(char *name, uint64_t start)
{
    snprintf(name, RN_SEG_NAME_LEN + 1, "%020llu.log", (unsigned long long)start);
}

int rn_seg_parse_name(const char *name, uint64_t *start)
{
    return rn_parse_seq_name(name, ".log", UINT64_MAX, start);
}

static int map_seg(rn_seg_t *seg)
{
    seg->map = NULL;
    if (seg->size == 0) return 0;
    void *m = mmap(NULL, (size_t)seg->size, PROT_READ, MAP_SHARED, seg->fd, 0);
    if (m == MAP_FAILED) return -errno;
    seg->map = m;
    return 0;
}

static void unmap_seg(rn_seg_t *seg)
{
    if (seg->map) munmap((void *)(uintptr_t)seg->map, (size_t)seg->size);
    seg->map = NULL;
}

static int seg_path(char *path, const char *dir, uint64_t start)
{
    char name[RN_SEG_NAME_LEN + 1];
    rn_seg_name(name, start);
    return rn_path_buf(path, PATH_MAX, dir, name);
}

/* Reserve [off, off+len) of fd: fallocate, or ftruncate when the file system
 * cannot preallocate (then ENOSPC may surface later, at write time). */
static int prealloc(int fd, uint64_t off, uint64_t len)
{
    if (rn_sys.fallocate(fd, 0, (off_t)off, (off_t)len) == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    if (rn_sys.ftruncate(fd, (off_t)(off + len)) < 0) return -errno;
    return 0;
}

int rn_seg_create(const char *dir, uint64_t start, uint64_t size, rn_seg_t *seg, char *errmsg)
{
    char path[PATH_MAX];
    int rc = seg_path(path, dir, start);
    if (rc != 0) return rn_errf(errmsg, rc, "segment path too long in %s", dir);
    int fd = rn_sys.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        return rn_errf(errmsg, rc, "cannot create segment %s: %s", path, rn_strerror(rc));
    }
    rc = prealloc(fd, 0, size);
    if (rc == -ENOSPC) {
        rn_errf(errmsg, rc, "no space left on device to preallocate %llu bytes for segment %s",
                (unsigned long long)size, path);
        goto fail;
    }
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot preallocate segment %s: %s", path, rn_strerror(rc));
        goto fail;
    }
    if (rn_sys.fsync(fd) < 0) {
        rc = -errno;
        rn_errf(errmsg, rc, "fsync of new segment %s failed: %s", path, rn_strerror(rc));
        goto fail;
    }
    rc = rn_fsync_dir(dir);
    if (rc != 0) {
        rn_errf(errmsg, rc, "fsync of directory %s failed: %s", dir, rn_strerror(rc));
        goto fail;
    }
    seg->start = start;
    seg->size = size;
    seg->fd = fd;
    seg->max_ts = INT64_MIN;
    seg->dirty = 0;
    rc = map_seg(seg);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot map segment %s: %s", path, rn_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    rn_sys.close(fd);
    rn_sys.unlink(path);
    return rc;
}

int rn_seg_open(const char *dir, uint64_t start, rn_seg_t *seg, char *errmsg)
{
    char path[PATH_MAX];
    int rc = seg_path(path, dir, start);
    if (rc != 0) return rn_errf(errmsg, rc, "segment path too long in %s", dir);
    int fd = rn_sys.open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        return rn_errf(errmsg, rc, "cannot open segment %s: %s", path, rn_strerror(rc));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        rn_sys.close(fd);
        return rn_errf(errmsg, rc, "cannot stat segment %s: %s", path, rn_strerror(rc));
    }
    seg->start = start;
    seg->size = (uint64_t)st.st_size;
    seg->fd = fd;
    seg->max_ts = INT64_MIN;
    seg->dirty = 0;
    rc = map_seg(seg);
    if (rc != 0) {
        rn_sys.close(fd);
        seg->fd = -1;
        return rn_errf(errmsg, rc, "cannot map segment %s: %s", path, rn_strerror(rc));
    }
    return 0;
}

int rn_seg_grow(rn_seg_t *seg, uint64_t size, char *errmsg)
{
    if (size <= seg->size) return 0;
    int rc = prealloc(seg->fd, seg->size, size - seg->size);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot grow segment at position %llu to %llu bytes: %s",
                       (unsigned long long)seg->start, (unsigned long long)size, rn_strerror(rc));
    unmap_seg(seg);
    seg->size = size;
    rc = map_seg(seg);
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot map segment at position %llu: %s",
                       (unsigned long long)seg->start, rn_strerror(rc));
    return 0;
}

int rn_seg_zero(rn_seg_t *seg, uint64_t from, int allow_write, char *errmsg)
{
    if (from >= seg->size) return 0;
    off_t off = (off_t)from, len = (off_t)(seg->size - from);
    if (rn_sys.fallocate(seg->fd, FALLOC_FL_ZERO_RANGE, off, len) == 0) return 0;
    if (rn_sys.fallocate(seg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0) {
        /* Best effort: keep the space reserved so ENOSPC still surfaces at
         * segment creation rather than mid-append. */
        (void)rn_sys.fallocate(seg->fd, 0, off, len);
        return 0;
    }
    if (!allow_write) return 0;
    static const uint8_t zeros[65536];
    while (off < (off_t)seg->size) {
        size_t n = sizeof zeros;
        if ((uint64_t)n > seg->size - (uint64_t)off) n = (size_t)(seg->size - (uint64_t)off);
        int rc = rn_pwrite_full(seg->fd, zeros, n, off);
        if (rc != 0)
            return rn_errf(errmsg, rc, "cannot zero segment %020llu.log from byte %llu: %s",
                           (unsigned long long)seg->start, (unsigned long long)from,
                           rn_strerror(rc));
        off += (off_t)n;
    }
    return 0;
}

void rn_seg_close(rn_seg_t *seg)
{
    unmap_seg(seg);
    if (seg->fd >= 0) rn_sys.close(seg->fd);
    seg->fd = -1;
}

uint32_t rn_seg_hcrc(const uint8_t hdr12[12], const uint8_t base8[8], const uint8_t rest13[13])
{
    uint32_t c = rn_crc32c(0, hdr12, 12);
    c = rn_crc32c(c, base8, 8);
    return rn_crc32c(c, rest13, 13);
}

void rn_seg_hdr_encode(uint8_t out[RN_SEG_HDR_SIZE], uint32_t len, uint32_t queue,
                       const uint8_t base8[8], const uint8_t rest13[13])
{
    rn_le32_put(out, len);
    rn_le32_put(out + 4, queue);
    rn_le32_put(out + 8, RN_SEG_FORMAT_V1);
    rn_le32_put(out + 12, rn_seg_hcrc(out, base8, rest13));
}

void rn_seg_hdr_decode(const uint8_t in[RN_SEG_HDR_SIZE], rn_seg_hdr_t *h)
{
    h->batch_len = rn_le32_get(in);
    h->queue = rn_le32_get(in + 4);
    h->format = rn_le32_get(in + 8);
    h->hcrc = rn_le32_get(in + 12);
}

int rn_seg_hdr_check(const uint8_t in[RN_SEG_HDR_SIZE], const uint8_t batch21[RN_SEG_HCRC_BATCH])
{
    if (rn_le32_get(in + 8) != RN_SEG_FORMAT_V1) return RN_ECORRUPT;
    if (rn_le32_get(in + 12) != rn_seg_hcrc(in, batch21, batch21 + 8)) return RN_ECORRUPT;
    return 0;
}

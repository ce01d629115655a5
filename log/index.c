/*
 * index.c — a physical queue's batch index: 48-byte checksummed units in
 * preallocated, mmap'd files, and the binary searches over them.
 *
 * Unit layout (little-endian), one per batch:
 *
 *   off size field
 *    0   8   position        commit-log position of the batch's entry
 *    8   8   base_offset
 *   16   8   first_ts        the batch's baseTimestamp
 *   24   8   max_ts          running max over this and every earlier batch
 *   32   4   size            batch bytes
 *   36   4   record_count
 *   40   4   flags           0, or 1 = RN_IDX_DAMAGED (index.h): the offsets
 *                                are unreadable; position/size give the damaged
 *                                log bytes (size 0 = none left)
 *   44   4   crc             CRC-32C of bytes [0,44)
 *
 * The damaged flag was added without a version bump: files written before it
 * never carry it (flags were always 0) and read as before. An older runnel
 * takes a flagged unit for a bad one and cuts the index there, which its
 * recovery then rebuilds from the commit log (losing the mark, not data).
 *
 * Index files carry no header: each unit is self-checking, an all-zero unit
 * (unused preallocated space) fails its CRC and marks the end, and the file
 * name (%020llu.idx) is the base offset of its first unit, which load checks.
 *
 * Invariants:
 *  1. Units of a queue are dense: unit i's base offset = unit i-1's base +
 *     record count, positions strictly increase (by at least the previous
 *     entry's size; a damaged unit of size 0 takes no room), max_ts never
 *     decreases. rn_idx_load enforces this on
 *     disk data; the writer keeps it by construction.
 *  2. Every file but the last is full; a file's first unit has the base
 *     offset its name says.
 *  3. Bytes of slots below nunits never change except through
 *     rn_idx_truncate (recovery only, before readers exist).
 *  4. The files table changes only in rn_idx_attach_file, rn_idx_detach_below,
 *     rn_idx_truncate and rn_idx_drop_below; log.c calls the first two under
 *     its table mutex and the others before readers exist.
 *     Readers never use this table: they search a copy of it in the store's
 *     snapshot (log.c), whose mappings stay until the snapshot is dropped
 *     (rn_idx_detach_below hands the files over instead of unmapping them).
 *  5. Lookups read only memory: a binary search over the files, then over
 *     the file's fences (every 32nd unit's base offset and running max, kept
 *     in a malloc'd array), then over at most 33 units of the mapping. No
 *     system call per search step. A fence is written by rn_idx_put together
 *     with its unit, before the unit is published.
 *  6. rn_idx_sync_begin (table mutex held) takes the dirty flags and dups the
 *     fds; rn_idx_sync_run does the fdatasyncs with no lock held.
 */
#include "log/index.h"

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void rn_idx_unit_encode(uint8_t out[RN_IDX_UNIT_SIZE], const rn_idx_unit_t *u)
{
    rn_le64_put(out, u->position);
    rn_le64_put(out + 8, (uint64_t)u->base_offset);
    rn_le64_put(out + 16, (uint64_t)u->first_ts);
    rn_le64_put(out + 24, (uint64_t)u->max_ts);
    rn_le32_put(out + 32, u->size);
    rn_le32_put(out + 36, u->record_count);
    rn_le32_put(out + 40, u->flags);
    rn_le32_put(out + 44, rn_crc32c(0, out, 44));
}

static void unit_decode(const uint8_t *in, rn_idx_unit_t *u)
{
    u->position = rn_le64_get(in);
    u->base_offset = (int64_t)rn_le64_get(in + 8);
    u->first_ts = (int64_t)rn_le64_get(in + 16);
    u->max_ts = (int64_t)rn_le64_get(in + 24);
    u->size = rn_le32_get(in + 32);
    u->record_count = rn_le32_get(in + 36);
    u->flags = rn_le32_get(in + 40);
}

int rn_idx_unit_decode(const uint8_t in[RN_IDX_UNIT_SIZE], rn_idx_unit_t *u)
{
    if (rn_le32_get(in + 44) != rn_crc32c(0, in, 44)) return RN_ECORRUPT;
    unit_decode(in, u);
    return 0;
}

static size_t file_of(const rn_idx_t *ix, uint64_t slot)
{
    size_t lo = 0, hi = ix->nfiles;          /* last file with first_slot <= slot */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->files[mid].first_slot <= slot) lo = mid; else hi = mid;
    }
    return lo;
}

const uint8_t *rn_idx_slot(const rn_idx_t *ix, uint64_t slot)
{
    const rn_idx_file_t *f = &ix->files[file_of(ix, slot)];
    return f->map + (size_t)(slot - f->first_slot) * RN_IDX_UNIT_SIZE;
}

void rn_idx_get(const rn_idx_t *ix, uint64_t slot, rn_idx_unit_t *u)
{
    unit_decode(rn_idx_slot(ix, slot), u);
}

static int idx_path(char *path, const char *dir, int64_t base)
{
    if (snprintf(path, PATH_MAX, "%s/%020lld.idx", dir, (long long)base) >= PATH_MAX)
        return -ENAMETOOLONG;
    return 0;
}

static int parse_idx_name(const char *name, int64_t *base)
{
    uint64_t v;
    int rc = rn_parse_seq_name(name, ".idx", INT64_MAX, &v);
    if (rc == 0) *base = (int64_t)v;
    return rc;
}

int rn_idx_init(rn_idx_t *ix, const char *dir, uint32_t new_cap)
{
    memset(ix, 0, sizeof *ix);
    ix->dir = strdup(dir);
    if (!ix->dir) return -ENOMEM;
    ix->new_cap = new_cap;
    return 0;
}

static void file_unmap(rn_idx_file_t *f)
{
    if (f->map) munmap(f->map, (size_t)f->cap * RN_IDX_UNIT_SIZE);
    f->map = NULL;
    free(f->fence);
    f->fence = NULL;
    if (f->fd >= 0) rn_sys.close(f->fd);
    f->fd = -1;
}

static void file_unlink(rn_idx_t *ix, rn_idx_file_t *f)
{
    char path[PATH_MAX];
    file_unmap(f);
    if (idx_path(path, ix->dir, f->base) == 0) rn_sys.unlink(path);
    __atomic_store_n(&ix->dir_dirty, 1, __ATOMIC_RELEASE);
}

void rn_idx_close(rn_idx_t *ix)
{
    for (size_t i = 0; i < ix->nfiles; i++) file_unmap(&ix->files[i]);
    free(ix->files);
    free(ix->dir);
    memset(ix, 0, sizeof *ix);
}

/* Make fd at least cap units long, preallocated. */
static int reserve_units(int fd, uint64_t have_bytes, uint32_t cap)
{
    uint64_t want = (uint64_t)cap * RN_IDX_UNIT_SIZE;
    if (have_bytes >= want) return 0;
    if (rn_sys.fallocate(fd, 0, (off_t)have_bytes, (off_t)(want - have_bytes)) == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) return -errno;
    if (rn_sys.ftruncate(fd, (off_t)want) < 0) return -errno;
    return 0;
}

static int map_units(rn_idx_file_t *f)
{
    if (f->cap == 0) { f->map = NULL; return 0; }
    void *m = mmap(NULL, (size_t)f->cap * RN_IDX_UNIT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                   f->fd, 0);
    if (m == MAP_FAILED) return -errno;
    f->map = m;
    return 0;
}

/* (Re)build f's fences for its first n units (f->cap already final). */
static int fence_build(rn_idx_file_t *f, uint32_t n)
{
    rn_idx_fence_t *fe = calloc(((size_t)f->cap >> RN_IDX_FENCE_SHIFT) + 1, sizeof *fe);
    if (!fe) return -ENOMEM;
    for (uint32_t j = 0; j < n; j += RN_IDX_FENCE_EVERY) {
        const uint8_t *p = f->map + (size_t)j * RN_IDX_UNIT_SIZE;
        fe[j >> RN_IDX_FENCE_SHIFT].base = (int64_t)rn_le64_get(p + 8);
        fe[j >> RN_IDX_FENCE_SHIFT].max_ts = (int64_t)rn_le64_get(p + 24);
    }
    free(f->fence);
    f->fence = fe;
    return 0;
}

static int grow_files(rn_idx_t *ix)
{
    if (ix->nfiles < ix->capfiles) return 0;
    size_t nc = ix->capfiles ? ix->capfiles * 2 : 4;
    rn_idx_file_t *nf = realloc(ix->files, nc * sizeof *nf);
    if (!nf) return -ENOMEM;
    ix->files = nf;
    ix->capfiles = nc;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Count the non-zero (written) units of a mapped file from unit `from` on:
 * what a cut there drops. */
static uint64_t count_valid(const rn_idx_file_t *f, uint32_t from)
{
    static const uint8_t zero[RN_IDX_UNIT_SIZE];
    uint64_t n = 0;
    for (uint32_t j = from; j < f->cap; j++)
        if (memcmp(f->map + (size_t)j * RN_IDX_UNIT_SIZE, zero, sizeof zero) != 0) n++;
    return n;
}

static int damage(rn_idx_load_t *rep, const char *dir, int64_t base, uint32_t unit,
                  const char *what)
{
    if (!rep->damaged) {
        snprintf(rep->why, sizeof rep->why, "%s/%020lld.idx unit %u: %s", dir, (long long)base,
                 unit, what);
    }
    rep->damaged = 1;
    return 0;
}

int rn_idx_load(rn_idx_t *ix, const char *dir, uint32_t new_cap, uint32_t max_batch,
                rn_idx_load_t *rep, char *errmsg)
{
    int rc = rn_idx_init(ix, dir, new_cap);
    int64_t *bases = NULL;
    size_t nb = 0, capb = 0;
    DIR *d = NULL;
    memset(rep, 0, sizeof *rep);
    if (rc != 0) return rc;
    d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        rc = -errno;
        rn_errf(errmsg, rc, "cannot list index directory %s: %s", dir, rn_strerror(rc));
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t b;
        if (parse_idx_name(de->d_name, &b) != 0) continue;
        if (nb == capb) {
            size_t nc = capb ? capb * 2 : 16;
            int64_t *n2 = realloc(bases, nc * sizeof *n2);
            if (!n2) { rc = -ENOMEM; goto fail; }
            bases = n2; capb = nc;
        }
        bases[nb++] = b;
    }
    closedir(d);
    d = NULL;
    if (nb > 1) qsort(bases, nb, sizeof *bases, cmp_i64);

    rn_idx_unit_t prev = {0};
    int have_prev = 0;
    uint64_t slot = 0;
    for (size_t i = 0; i < nb; i++) {
        char path[PATH_MAX];
        rn_idx_file_t f = {.base = bases[i], .first_slot = slot, .fd = -1};
        rc = idx_path(path, dir, f.base);
        if (rc != 0) goto fail;
        f.fd = rn_sys.open(path, O_RDWR | O_CLOEXEC, 0);
        if (f.fd < 0) {
            rc = -errno;
            rn_errf(errmsg, rc, "cannot open index file %s: %s", path, rn_strerror(rc));
            goto fail;
        }
        struct stat st;
        if (fstat(f.fd, &st) < 0) { rc = -errno; rn_sys.close(f.fd); goto fail; }
        uint64_t in_file = (uint64_t)st.st_size / RN_IDX_UNIT_SIZE;
        if (in_file > UINT32_MAX) in_file = UINT32_MAX;
        f.cap = (uint32_t)in_file;
        rc = map_units(&f);
        if (rc != 0) {
            rn_sys.close(f.fd);
            rn_errf(errmsg, rc, "cannot map index file %s: %s", path, rn_strerror(rc));
            goto fail;
        }
        if (rep->damaged) {                 /* everything after the cut goes */
            rep->dropped += count_valid(&f, 0);
            file_unlink(ix, &f);
            continue;
        }
        if (have_prev && f.base != prev.base_offset + (int64_t)prev.record_count) {
            damage(rep, dir, f.base, 0, "file name does not continue the previous file");
            rep->dropped += count_valid(&f, 0);
            file_unlink(ix, &f);
            continue;
        }
        uint32_t j = 0;
        const char *bad = NULL;
        for (; j < f.cap; j++) {
            rn_idx_unit_t u;
            const uint8_t *p = f.map + (size_t)j * RN_IDX_UNIT_SIZE;
            if (rn_idx_unit_decode(p, &u) != 0) {
                static const uint8_t zero[RN_IDX_UNIT_SIZE];
                if (memcmp(p, zero, sizeof zero) != 0) bad = "checksum mismatch";
                break;
            }
            int dmg = u.flags == RN_IDX_DAMAGED;
            if (!dmg && (u.size < RN_BATCH_HEADER_SIZE || u.size > max_batch)) {
                bad = "bad size"; break;
            }
            if (u.record_count == 0 || (u.flags != 0 && !dmg) || u.base_offset < 0 ||
                u.base_offset > INT64_MAX - (int64_t)u.record_count) { bad = "bad fields"; break; }
            if (j == 0 && u.base_offset != f.base) { bad = "base differs from file name"; break; }
            if (have_prev) {
                if (u.base_offset != prev.base_offset + (int64_t)prev.record_count) {
                    bad = "base offset does not continue"; break;
                }
                if (u.position < prev.position + (prev.size ? RN_SEG_HDR_SIZE + prev.size : 0)) {
                    bad = "position does not increase"; break;
                }
                if (u.max_ts < prev.max_ts) { bad = "running max timestamp decreases"; break; }
            }
            prev = u;
            have_prev = 1;
        }
        int last = (i + 1 == nb);
        if (bad) damage(rep, dir, f.base, j, bad);
        else if (j < f.cap && !last) damage(rep, dir, f.base, j, "file not full");
        if (j < f.cap) {
            rep->dropped += count_valid(&f, j);
            memset(f.map + (size_t)j * RN_IDX_UNIT_SIZE, 0, (size_t)(f.cap - j) * RN_IDX_UNIT_SIZE);
            f.dirty = 1;
        }
        if (j == 0) {                        /* nothing valid: the file goes */
            if (!last && !rep->damaged) damage(rep, dir, f.base, 0, "empty file");
            file_unlink(ix, &f);
            continue;
        }
        rc = grow_files(ix);
        if (rc == 0) rc = fence_build(&f, j);
        if (rc != 0) { file_unmap(&f); goto fail; }
        ix->files[ix->nfiles++] = f;
        slot += j;
        ix->nunits = slot;
    }
    free(bases);
    bases = NULL;
    /* The last file takes new units: give it room (a truncated file grows
     * back to its capacity). */
    if (ix->nfiles > 0) {
        rn_idx_file_t *f = &ix->files[ix->nfiles - 1];
        uint32_t want = f->cap < new_cap ? new_cap : f->cap;
        if (want > f->cap) {
            char path[PATH_MAX];
            idx_path(path, dir, f->base);
            munmap(f->map, (size_t)f->cap * RN_IDX_UNIT_SIZE);
            f->map = NULL;
            rc = reserve_units(f->fd, (uint64_t)f->cap * RN_IDX_UNIT_SIZE, want);
            if (rc == 0) {
                uint32_t old = f->cap;
                f->cap = want;
                rc = map_units(f);
                if (rc != 0) f->cap = old;
                /* A file cut mid-unit keeps the cut unit's first bytes:
                 * clear them so the slot reads as unused. */
                else memset(f->map + (size_t)old * RN_IDX_UNIT_SIZE, 0, RN_IDX_UNIT_SIZE);
                if (rc == 0) rc = fence_build(f, (uint32_t)(ix->nunits - f->first_slot));
            }
            if (rc != 0) {
                rn_errf(errmsg, rc, "cannot extend index file %s: %s", path, rn_strerror(rc));
                goto fail;
            }
            f->dirty = 1;
        }
    }
    return 0;
fail:
    if (d) closedir(d);
    free(bases);
    rn_idx_close(ix);
    return rc;
}

int rn_idx_needs_file(const rn_idx_t *ix)
{
    if (ix->nfiles == 0) return 1;
    const rn_idx_file_t *f = &ix->files[ix->nfiles - 1];
    return ix->nunits - f->first_slot >= f->cap;
}

int rn_idx_prepare_file(rn_idx_t *ix, int64_t base, rn_idx_file_t *f, char *errmsg)
{
    char path[PATH_MAX];
    int rc = idx_path(path, ix->dir, base);
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (rc != 0) return rn_errf(errmsg, rc, "index path too long in %s", ix->dir);
    /* The queue's first file creates its directory. Like the files in it,
     * the new directory entry becomes durable at the next rn_idx_sync (the
     * checkpoint), not here: the index is derivable from the commit log, and
     * fsyncing two directories on the append path made every new queue cost
     * ~1 ms under the writer's lock. Later files: the directory exists. */
    if (ix->nfiles == 0 && rn_sys.mkdir(ix->dir, 0755) == 0)
        __atomic_store_n(&ix->parent_dirty, 1, __ATOMIC_RELEASE);
    else if (ix->nfiles == 0 && errno != EEXIST)
        rc = -errno;
    if (rc != 0)
        return rn_errf(errmsg, rc, "cannot create index directory %s: %s", ix->dir,
                       rn_strerror(rc));
    f->base = base;
    f->first_slot = ix->nunits;
    f->cap = ix->new_cap;
    f->fd = rn_sys.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        rc = -errno;
        return rn_errf(errmsg, rc, "cannot create index file %s: %s", path, rn_strerror(rc));
    }
    rc = reserve_units(f->fd, 0, f->cap);
    if (rc == -ENOSPC) {
        rn_errf(errmsg, rc, "no space left on device for index file %s (%u units); "
                "nothing acknowledged was harmed", path, f->cap);
        goto fail;
    }
    if (rc == 0) rc = map_units(f);
    if (rc == 0) rc = fence_build(f, 0);
    if (rc != 0) {
        rn_errf(errmsg, rc, "cannot create index file %s: %s", path, rn_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    rn_idx_discard_file(ix, f);
    return rc;
}

#define SPARE_NAME "next.idx.tmp"      /* not a unit file name: load ignores it */

int rn_idx_prepare_spare(const rn_idx_t *ix, rn_idx_file_t *f, char *errmsg)
{
    char path[PATH_MAX];
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->base = -1;
    if (snprintf(path, sizeof path, "%s/%s", ix->dir, SPARE_NAME) >= (int)sizeof path)
        return rn_errf(errmsg, -ENAMETOOLONG, "index path too long in %s", ix->dir);
    f->cap = ix->new_cap;
    f->fd = rn_sys.open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int rc = -errno;
        return rn_errf(errmsg, rc, "cannot create index file %s: %s", path, rn_strerror(rc));
    }
    int rc = reserve_units(f->fd, 0, f->cap);
    if (rc == -ENOSPC) {
        rn_errf(errmsg, rc, "no space left on device for index file %s (%u units); "
                "nothing acknowledged was harmed", path, f->cap);
    } else {
        if (rc == 0) rc = map_units(f);
        if (rc == 0) rc = fence_build(f, 0);
        if (rc != 0)
            rn_errf(errmsg, rc, "cannot create index file %s: %s", path, rn_strerror(rc));
    }
    if (rc != 0) {
        file_unmap(f);
        rn_sys.unlink(path);
    }
    return rc;
}

int rn_idx_adopt_spare(rn_idx_t *ix, rn_idx_file_t *f, int64_t base, char *errmsg)
{
    char from[PATH_MAX], to[PATH_MAX];
    int rc = idx_path(to, ix->dir, base);
    if (rc == 0 && snprintf(from, sizeof from, "%s/%s", ix->dir, SPARE_NAME) >= (int)sizeof from)
        rc = -ENAMETOOLONG;
    if (rc != 0) return rn_errf(errmsg, rc, "index path too long in %s", ix->dir);
    if (rn_sys.rename(from, to) < 0) {
        rc = -errno;
        return rn_errf(errmsg, rc, "cannot create index file %s: %s", to, rn_strerror(rc));
    }
    f->base = base;
    f->first_slot = ix->nunits;
    return 0;
}

int rn_idx_discard_spare(const rn_idx_t *ix, rn_idx_file_t *f)
{
    char path[PATH_MAX];
    int rc = 0;
    file_unmap(f);
    if (snprintf(path, sizeof path, "%s/%s", ix->dir, SPARE_NAME) < (int)sizeof path &&
        rn_sys.unlink(path) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

int rn_idx_attach_file(rn_idx_t *ix, const rn_idx_file_t *f)
{
    int rc = grow_files(ix);
    if (rc != 0) return rc;
    ix->files[ix->nfiles++] = *f;
    __atomic_store_n(&ix->dir_dirty, 1, __ATOMIC_RELEASE);
    return 0;
}

void rn_idx_discard_file(rn_idx_t *ix, rn_idx_file_t *f)
{
    file_unlink(ix, f);
}

void rn_idx_put(rn_idx_t *ix, const rn_idx_unit_t *u)
{
    rn_idx_file_t *f = &ix->files[ix->nfiles - 1];
    uint64_t j = ix->nunits - f->first_slot;
    rn_idx_unit_encode(f->map + (size_t)j * RN_IDX_UNIT_SIZE, u);
    if ((j & (RN_IDX_FENCE_EVERY - 1)) == 0) {
        f->fence[j >> RN_IDX_FENCE_SHIFT].base = u->base_offset;
        f->fence[j >> RN_IDX_FENCE_SHIFT].max_ts = u->max_ts;
    }
    __atomic_store_n(&f->dirty, 1, __ATOMIC_RELEASE);
    ix->nunits++;
}

void rn_idx_set(rn_idx_t *ix, uint64_t slot, const rn_idx_unit_t *u)
{
    rn_idx_file_t *f = &ix->files[file_of(ix, slot)];
    uint64_t j = slot - f->first_slot;
    rn_idx_unit_encode(f->map + (size_t)j * RN_IDX_UNIT_SIZE, u);
    if ((j & (RN_IDX_FENCE_EVERY - 1)) == 0) {
        f->fence[j >> RN_IDX_FENCE_SHIFT].base = u->base_offset;
        f->fence[j >> RN_IDX_FENCE_SHIFT].max_ts = u->max_ts;
    }
    __atomic_store_n(&f->dirty, 1, __ATOMIC_RELEASE);
}

uint64_t rn_idx_truncate(rn_idx_t *ix, uint64_t slot)
{
    if (slot >= ix->nunits) return 0;
    uint64_t dropped = ix->nunits - slot;
    while (ix->nfiles > 0 && ix->files[ix->nfiles - 1].first_slot >= slot) {
        file_unlink(ix, &ix->files[ix->nfiles - 1]);
        ix->nfiles--;
    }
    if (ix->nfiles > 0) {
        rn_idx_file_t *f = &ix->files[ix->nfiles - 1];
        uint64_t from = slot - f->first_slot;
        if (from < f->cap) {
            memset(f->map + (size_t)from * RN_IDX_UNIT_SIZE, 0,
                   (size_t)(f->cap - from) * RN_IDX_UNIT_SIZE);
            f->dirty = 1;
        }
    }
    ix->nunits = slot;
    return dropped;
}

int rn_idx_drop_below(rn_idx_t *ix, uint64_t slot)
{
    size_t k = 0;
    while (k + 1 < ix->nfiles && ix->files[k + 1].first_slot <= slot) k++;
    if (k == 0) return 0;
    for (size_t i = 0; i < k; i++) file_unlink(ix, &ix->files[i]);
    memmove(ix->files, ix->files + k, (ix->nfiles - k) * sizeof *ix->files);
    ix->nfiles -= k;
    return (int)k;
}

int rn_idx_detach_below(rn_idx_t *ix, uint64_t slot, rn_idx_file_t **gone, size_t *n)
{
    size_t k = 0;
    *gone = NULL;
    *n = 0;
    while (k + 1 < ix->nfiles && ix->files[k + 1].first_slot <= slot) k++;
    if (k == 0) return 0;
    rn_idx_file_t *g = malloc(k * sizeof *g);
    if (!g) return -ENOMEM;
    memcpy(g, ix->files, k * sizeof *g);
    memmove(ix->files, ix->files + k, (ix->nfiles - k) * sizeof *ix->files);
    ix->nfiles -= k;
    *gone = g;
    *n = k;
    return 0;
}

int rn_idx_file_remove(rn_idx_t *ix, const rn_idx_file_t *f)
{
    char path[PATH_MAX];
    int rc = idx_path(path, ix->dir, f->base);
    if (rc == 0 && rn_sys.unlink(path) < 0 && errno != ENOENT) rc = -errno;
    __atomic_store_n(&ix->dir_dirty, 1, __ATOMIC_RELEASE);
    return rc;
}

void rn_idx_file_release(rn_idx_file_t *f)
{
    file_unmap(f);
}

int rn_idx_sync_begin(rn_idx_t *ix, rn_idx_sync_t *job, char *errmsg)
{
    memset(job, 0, sizeof *job);
    size_t n = 0;
    for (size_t i = 0; i < ix->nfiles; i++)
        if (__atomic_load_n(&ix->files[i].dirty, __ATOMIC_ACQUIRE)) n++;
    if (n > 0) {
        job->fds = malloc(n * sizeof *job->fds);
        job->bases = malloc(n * sizeof *job->bases);
        if (!job->fds || !job->bases) {
            rn_idx_sync_end(job);
            return rn_errf(errmsg, -ENOMEM, "out of memory syncing the index in %s", ix->dir);
        }
    }
    for (size_t i = 0; i < ix->nfiles && job->n < n; i++) {
        rn_idx_file_t *f = &ix->files[i];
        if (!__atomic_exchange_n(&f->dirty, 0, __ATOMIC_ACQ_REL)) continue;
        int fd = fcntl(f->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            int rc = -errno;
            __atomic_store_n(&f->dirty, 1, __ATOMIC_RELEASE);
            rn_idx_sync_end(job);
            return rn_errf(errmsg, rc, "cannot dup the fd of index file %s/%020lld.idx: %s",
                           ix->dir, (long long)f->base, rn_strerror(rc));
        }
        job->fds[job->n] = fd;
        job->bases[job->n++] = f->base;
    }
    job->parent = __atomic_exchange_n(&ix->parent_dirty, 0, __ATOMIC_ACQ_REL);
    job->dir = __atomic_exchange_n(&ix->dir_dirty, 0, __ATOMIC_ACQ_REL);
    return 0;
}

int rn_idx_sync_run(const rn_idx_t *ix, const rn_idx_sync_t *job, char *errmsg)
{
    for (size_t i = 0; i < job->n; i++) {
        if (rn_sys.fdatasync(job->fds[i]) < 0) {
            int rc = -errno;
            return rn_errf(errmsg, rc, "fdatasync of index file %s/%020lld.idx failed: %s",
                           ix->dir, (long long)job->bases[i], rn_strerror(rc));
        }
    }
    if (job->parent) {
        /* The directory's own entry, in the store's index/ directory. */
        char parent[PATH_MAX];
        const char *slash = strrchr(ix->dir, '/');
        size_t n = slash ? (size_t)(slash - ix->dir) : 0;
        if (n == 0 || n >= sizeof parent)
            return rn_errf(errmsg, -ENAMETOOLONG, "bad index directory path %s", ix->dir);
        memcpy(parent, ix->dir, n);
        parent[n] = '\0';
        int rc = rn_fsync_dir(parent);
        if (rc != 0)
            return rn_errf(errmsg, rc, "fsync of index directory %s failed: %s", parent,
                           rn_strerror(rc));
    }
    if (job->dir) {
        int rc = rn_fsync_dir(ix->dir);
        if (rc != 0)
            return rn_errf(errmsg, rc, "fsync of index directory %s failed: %s", ix->dir,
                           rn_strerror(rc));
    }
    return 0;
}

void rn_idx_sync_end(rn_idx_sync_t *job)
{
    for (size_t i = 0; i < job->n; i++) close(job->fds[i]);
    free(job->fds);
    free(job->bases);
    memset(job, 0, sizeof *job);
}

int rn_idx_sync(rn_idx_t *ix, char *errmsg)
{
    rn_idx_sync_t job;
    int rc = rn_idx_sync_begin(ix, &job, errmsg);
    if (rc != 0) return rc;
    rc = rn_idx_sync_run(ix, &job, errmsg);
    if (rc != 0) {
        /* Not synced: the next call tries again. */
        if (job.parent) __atomic_store_n(&ix->parent_dirty, 1, __ATOMIC_RELEASE);
        if (job.dir) __atomic_store_n(&ix->dir_dirty, 1, __ATOMIC_RELEASE);
    }
    rn_idx_sync_end(&job);
    return rc;
}

/* The searches read only the fields they compare, straight from the map,
 * after narrowing with the file's fences. */
static int64_t unit_base(const rn_idx_file_t *f, uint32_t j)
{
    return (int64_t)rn_le64_get(f->map + (size_t)j * RN_IDX_UNIT_SIZE + 8);
}

static int64_t unit_max_ts(const rn_idx_file_t *f, uint32_t j)
{
    return (int64_t)rn_le64_get(f->map + (size_t)j * RN_IDX_UNIT_SIZE + 24);
}

/* Last unit j in [a, b) of f with base <= off (b > a, base(a) <= off). */
static uint32_t file_find_offset(const rn_idx_file_t *f, uint32_t a, uint32_t b, int64_t off)
{
    uint32_t klo = (a + RN_IDX_FENCE_EVERY - 1) >> RN_IDX_FENCE_SHIFT;
    uint32_t khi = (b - 1) >> RN_IDX_FENCE_SHIFT;         /* fences of units in [a, b) */
    if (klo <= khi) {
        uint32_t l = klo, h = khi + 1;                     /* first fence with base > off */
        while (l < h) {
            uint32_t m = l + (h - l) / 2;
            if (f->fence[m].base <= off) l = m + 1; else h = m;
        }
        if (l > klo) a = (l - 1) << RN_IDX_FENCE_SHIFT;
        if (l <= khi) b = l << RN_IDX_FENCE_SHIFT;
    }
    while (b - a > 1) {
        uint32_t m = a + (b - a) / 2;
        if (unit_base(f, m) <= off) a = m; else b = m;
    }
    return a;
}

/* First unit j in [a, b) of f with max_ts >= ts, or b. */
static uint32_t file_find_time(const rn_idx_file_t *f, uint32_t a, uint32_t b, int64_t ts)
{
    if (b <= a) return b;
    uint32_t klo = (a + RN_IDX_FENCE_EVERY - 1) >> RN_IDX_FENCE_SHIFT;
    uint32_t khi = (b - 1) >> RN_IDX_FENCE_SHIFT;
    if (klo <= khi) {
        uint32_t l = klo, h = khi + 1;                     /* first fence with max >= ts */
        while (l < h) {
            uint32_t m = l + (h - l) / 2;
            if (f->fence[m].max_ts >= ts) h = m; else l = m + 1;
        }
        if (l <= khi) b = (l << RN_IDX_FENCE_SHIFT) + 1;
        if (l > klo) a = ((l - 1) << RN_IDX_FENCE_SHIFT) + 1;
    }
    while (a < b) {
        uint32_t m = a + (b - a) / 2;
        if (unit_max_ts(f, m) >= ts) b = m; else a = m + 1;
    }
    return a;
}

uint64_t rn_idx_find_offset(const rn_idx_t *ix, uint64_t lo, uint64_t hi, int64_t off)
{
    /* Outer step: the last file whose first unit is <= off narrows [lo, hi). */
    size_t a = file_of(ix, lo), b = file_of(ix, hi - 1);
    while (b > a) {
        size_t mid = a + (b - a + 1) / 2;
        if (ix->files[mid].base <= off) a = mid; else b = mid - 1;
    }
    const rn_idx_file_t *f = &ix->files[a];
    if (f->first_slot > lo) lo = f->first_slot;
    if (a + 1 < ix->nfiles && ix->files[a + 1].first_slot < hi) hi = ix->files[a + 1].first_slot;
    return f->first_slot + file_find_offset(f, (uint32_t)(lo - f->first_slot),
                                            (uint32_t)(hi - f->first_slot), off);
}

uint64_t rn_idx_find_time(const rn_idx_t *ix, uint64_t lo, uint64_t hi, int64_t ts)
{
    if (lo >= hi) return hi;
    /* Outer step: the last file whose first unit in range is still below ts
     * holds the answer (or the answer is the next file's first unit). */
    size_t a = file_of(ix, lo), b = file_of(ix, hi - 1);
    if ((int64_t)rn_le64_get(rn_idx_slot(ix, lo) + 24) >= ts) return lo;
    while (b > a) {
        size_t mid = a + (b - a + 1) / 2;
        uint64_t s0 = ix->files[mid].first_slot;           /* > lo: mid > file_of(lo) */
        if ((int64_t)rn_le64_get(rn_idx_slot(ix, s0) + 24) < ts) a = mid; else b = mid - 1;
    }
    const rn_idx_file_t *f = &ix->files[a];
    if (f->first_slot > lo) lo = f->first_slot;
    if (a + 1 < ix->nfiles && ix->files[a + 1].first_slot < hi) hi = ix->files[a + 1].first_slot;
    return f->first_slot + file_find_time(f, (uint32_t)(lo - f->first_slot),
                                          (uint32_t)(hi - f->first_slot), ts);
}

uint64_t rn_idx_find_position(const rn_idx_t *ix, uint64_t lo, uint64_t hi, uint64_t pos)
{
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rn_le64_get(rn_idx_slot(ix, mid)) >= pos) hi = mid; else lo = mid + 1;
    }
    return lo;
}

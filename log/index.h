/*
 * index.h — one physical queue's batch index: fixed-width 48-byte units, one
 * per batch, in mmap'd files DIR/index/%010u/%020llu.idx (named by the base
 * offset of their first unit). Units are addressed by a queue-wide "slot"
 * number (0 = first unit of the first file loaded at open); slots only grow.
 *
 * Threading (enforced by log/log.c, not here): rn_idx_put, rn_idx_set (at
 * recovery), rn_idx_truncate and
 * the table changes (attach, detach) run on the writer path only, the table
 * changes under the store's table mutex; rn_idx_sync_begin runs under that
 * mutex on another thread (the per-file dirty flags and the directory flags
 * are atomic) and rn_idx_sync_run after it with no lock. Readers search a
 * read-only copy of the files table (an rn_idx_t whose files array belongs to
 * the store's snapshot) and access units below the store's published
 * visible slot count; those bytes never change.
 */
#ifndef RN_LOG_INDEX_H
#define RN_LOG_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define RN_IDX_UNIT_SIZE 48
#define RN_IDX_NAME_LEN  24     /* "%020llu.idx" */

typedef struct rn_idx_unit {
    uint64_t position;       /* commit-log position of the entry */
    int64_t  base_offset;
    int64_t  first_ts;       /* the batch's base timestamp */
    int64_t  max_ts;         /* running max: largest ts of this or any earlier batch */
    uint32_t size;           /* batch bytes (the entry is 16 bytes more) */
    uint32_t record_count;
    uint32_t flags;          /* 0 or RN_IDX_DAMAGED */
} rn_idx_unit_t;

/* A damaged unit stands for offsets [base_offset, base_offset + record_count)
 * that recovery could not keep readable: their entry failed its checks while
 * intact entries follow it, or they were lost and the loss was accepted
 * (runnel store repair --accept-loss). position/size say where the damaged
 * bytes lie, like a normal unit's entry; size 0 means nothing is left in the
 * log (the entry ends where it starts). Reads of its offsets fail with
 * RN_EDAMAGED; they keep the queue's offsets dense and never reused. */
#define RN_IDX_DAMAGED 1u

/* Every RN_IDX_FENCE_EVERY-th unit's base offset and running max, copied
 * into a small in-memory array: lookups binary-search the compact fences
 * first and then touch at most one or two pages of the mapping. */
#define RN_IDX_FENCE_SHIFT 5
#define RN_IDX_FENCE_EVERY (1u << RN_IDX_FENCE_SHIFT)
typedef struct rn_idx_fence {
    int64_t base;
    int64_t max_ts;
} rn_idx_fence_t;

typedef struct rn_idx_file {
    int64_t  base;           /* base offset of its first unit (from its name) */
    uint64_t first_slot;
    uint32_t cap;            /* units the mapping holds */
    int      fd;
    uint8_t *map;            /* cap * 48 bytes, MAP_SHARED, read-write */
    rn_idx_fence_t *fence;   /* (cap >> RN_IDX_FENCE_SHIFT) + 1 entries, malloc'd; entry k
                                describes unit k * RN_IDX_FENCE_EVERY once it is written */
    int      dirty;          /* written since the last rn_idx_sync (__atomic: the
                                writer sets it, the syncer thread clears it) */
} rn_idx_file_t;

typedef struct rn_idx {
    char          *dir;      /* DIR/index/%010u, malloc'd */
    rn_idx_file_t *files;
    size_t         nfiles, capfiles;
    uint64_t       nunits;   /* slots written: [files[0].first_slot, nunits) */
    uint32_t       new_cap;  /* units per newly created file */
    int            dir_dirty;/* a file was created since the last rn_idx_sync (__atomic) */
    int            parent_dirty; /* dir itself was created since the last rn_idx_sync (__atomic) */
} rn_idx_t;

/* What loading found. */
typedef struct rn_idx_load {
    uint64_t dropped;        /* units cut at the first bad one */
    int      damaged;        /* something was cut, a file was deleted or bad */
    char     why[160];       /* first damage, for diagnostics */
} rn_idx_load_t;

void rn_idx_unit_encode(uint8_t out[RN_IDX_UNIT_SIZE], const rn_idx_unit_t *u);
/* 0, or RN_ECORRUPT when the unit's CRC does not match (an all-zero unit
 * never matches). */
int  rn_idx_unit_decode(const uint8_t in[RN_IDX_UNIT_SIZE], rn_idx_unit_t *u);

/* Bytes of one slot (must be in [files[0].first_slot, nunits) or be a slot of
 * a mapped file). */
const uint8_t *rn_idx_slot(const rn_idx_t *ix, uint64_t slot);
/* The unit at slot, decoded without a CRC check (units in memory were checked
 * at load or written by us). */
void rn_idx_get(const rn_idx_t *ix, uint64_t slot, rn_idx_unit_t *u);

/* Open the queue directory dir (creating nothing) and validate every unit:
 * CRC, size/count bounds, base continuity (unit i starts where unit i-1
 * ends), strictly increasing positions, monotonic running max, file names
 * that continue the offsets, every file but the last full. The index is cut
 * at the first bad unit (the rest of that file zeroed, later files deleted).
 * A missing dir gives an empty index. new_cap: units per new file. */
int  rn_idx_load(rn_idx_t *ix, const char *dir, uint32_t new_cap, uint32_t max_batch,
                 rn_idx_load_t *rep, char *errmsg);
/* An empty index whose files will live in dir (created lazily). */
int  rn_idx_init(rn_idx_t *ix, const char *dir, uint32_t new_cap);
void rn_idx_close(rn_idx_t *ix);

/* 1 when the next rn_idx_put needs a new file (prepare + attach one first). */
int  rn_idx_needs_file(const rn_idx_t *ix);
/* Create, preallocate (fallocate, so writes into the mapping cannot hit
 * ENOSPC/SIGBUS) and map the next file into *f, named by base (the next
 * unit's base offset); the directory is created as needed. The new name is
 * made durable by the next rn_idx_sync (the index is derivable: until then a
 * crash can only cost a rebuild). Does not touch the table: readers may run
 * meanwhile. */
int  rn_idx_prepare_file(rn_idx_t *ix, int64_t base, rn_idx_file_t *f, char *errmsg);
/* The same ahead of need, on another thread than the writer (it reads only
 * ix->dir and ix->new_cap, which never change): the file is created as
 * DIR/next.idx.tmp (a name load ignores), preallocated and mapped, its base
 * unknown (-1). rn_idx_adopt_spare renames it to the name of base (the
 * next unit's base offset) and makes it the slot-nunits file, ready for
 * rn_idx_attach_file; on failure, or when not adopted, rn_idx_discard_spare
 * unmaps and unlinks it. */
int  rn_idx_prepare_spare(const rn_idx_t *ix, rn_idx_file_t *f, char *errmsg);
int  rn_idx_adopt_spare(rn_idx_t *ix, rn_idx_file_t *f, int64_t base, char *errmsg);
int  rn_idx_discard_spare(const rn_idx_t *ix, rn_idx_file_t *f);
/* Add a prepared file to the table (caller holds the table write lock).
 * -ENOMEM leaves the table as it was; the caller then discards f. */
int  rn_idx_attach_file(rn_idx_t *ix, const rn_idx_file_t *f);
/* Unmap, close and unlink a prepared file that was not attached. */
void rn_idx_discard_file(rn_idx_t *ix, rn_idx_file_t *f);
/* Write the unit at slot nunits (room must exist) and count it. */
void rn_idx_put(rn_idx_t *ix, const rn_idx_unit_t *u);

/* Rewrite the unit at slot (below nunits) with u. Recovery only (writer
 * path, before readers exist). */
void rn_idx_set(rn_idx_t *ix, uint64_t slot, const rn_idx_unit_t *u);

/* Drop slots [slot, nunits): zero them and delete the files that start at or
 * after slot (the next rn_idx_put then creates a file named by its unit's
 * base). Returns the number of units dropped. Writer path, no readers. */
uint64_t rn_idx_truncate(rn_idx_t *ix, uint64_t slot);
/* Delete whole files whose units all lie below slot, never the last file. */
int  rn_idx_drop_below(rn_idx_t *ix, uint64_t slot);
/* Remove from the table the files whose units all lie below slot (never the
 * last file) without closing them: *gone (malloc'd, caller frees; NULL when
 * none) receives them. The caller unlinks each (rn_idx_file_remove) and
 * releases it (rn_idx_file_release) once no reader's snapshot can use it. */
int  rn_idx_detach_below(rn_idx_t *ix, uint64_t slot, rn_idx_file_t **gone, size_t *n);
/* Unlink a detached file's name (the directory's fsync follows at the next sync). */
int  rn_idx_file_remove(rn_idx_t *ix, const rn_idx_file_t *f);
/* Unmap and close a detached file, free its fences. */
void rn_idx_file_release(rn_idx_file_t *f);

/* fdatasync every dirty file (this also writes back the dirty mmap pages),
 * and fsync the directory when a file was created since the last call. */
int  rn_idx_sync(rn_idx_t *ix, char *errmsg);
/* The same in two steps, so no lock is held across the fdatasyncs: begin
 * takes the dirty flags and dups the fds (the caller holds the table mutex);
 * run syncs them (no lock); end closes the dups. A failed run leaves the
 * store to turn sticky (its files count as unsynced no longer). */
typedef struct rn_idx_sync {
    int     *fds;
    int64_t *bases;
    size_t   n;
    int      dir, parent;      /* fsync the directory / its parent */
} rn_idx_sync_t;
int  rn_idx_sync_begin(rn_idx_t *ix, rn_idx_sync_t *job, char *errmsg);
int  rn_idx_sync_run(const rn_idx_t *ix, const rn_idx_sync_t *job, char *errmsg);
void rn_idx_sync_end(rn_idx_sync_t *job);

/* Searches over slots [lo, hi) (hi > lo unless stated); no system calls. */
/* Last slot whose base offset <= off (caller ensures unit lo's base <= off). */
uint64_t rn_idx_find_offset(const rn_idx_t *ix, uint64_t lo, uint64_t hi, int64_t off);
/* First slot whose running max_ts >= ts, or hi. */
uint64_t rn_idx_find_time(const rn_idx_t *ix, uint64_t lo, uint64_t hi, int64_t ts);
/* First slot whose position >= pos, or hi. */
uint64_t rn_idx_find_position(const rn_idx_t *ix, uint64_t lo, uint64_t hi, uint64_t pos);

#endif

/*
 * mapping.h — the arithmetic of a logical queue's mapping items (DESIGN.md §3).
 *
 * A logical queue is an ordered list of items {logical_start, physical queue,
 * physical_start, physical_end}; the last item is open (physical_end -1).
 * Logical offset L of item i is physical L - logical_start + physical_start.
 * A sealed item covers logical [logical_start, logical_start + physical_end -
 * physical_start); the next item starts exactly there, so logical offsets are
 * dense across items. An empty sealed item (physical_end == physical_start)
 * covers nothing and shares its logical_start with the next item.
 *
 * Pure functions over caller-owned arrays: no I/O, no allocation.
 */
#ifndef RN_MAPPING_H
#define RN_MAPPING_H

#include <stddef.h>
#include <stdint.h>

#include "logical-queues/meta.h"

static inline int rn_mapping_sealed(const rn_meta_item_t *it) { return it->physical_end >= 0; }

static inline int64_t rn_mapping_to_physical(const rn_meta_item_t *it, int64_t logical)
{
    return logical - it->logical_start + it->physical_start;
}

static inline int64_t rn_mapping_to_logical(const rn_meta_item_t *it, int64_t physical)
{
    return physical - it->physical_start + it->logical_start;
}

/* Logical end (exclusive) of a sealed item; -1 for the open one. */
static inline int64_t rn_mapping_item_end(const rn_meta_item_t *it)
{
    return rn_mapping_sealed(it) ? rn_mapping_to_logical(it, it->physical_end) : -1;
}

/* The item holding logical offset L: the last item whose logical_start <= L
 * (so an offset equal to a sealed item's end belongs to the next item, and
 * empty items are skipped). RN_ERANGE when L is below the first item. */
int rn_mapping_find(const rn_meta_item_t *items, size_t n, int64_t logical, size_t *idx);

/* Check a queue's item list: at least one item, one queue, seq strictly
 * increasing, every item but the last sealed and the last open, physical
 * ranges not reversed, and each item starting exactly where the previous one
 * ends. RN_ECORRUPT with errmsg naming the first broken rule. */
int rn_mapping_check(const rn_meta_item_t *items, size_t n, char *errmsg);

#endif

/*
 * mapping.c — locating a logical offset among a queue's mapping items, and
 * checking an item list read from meta.db (see mapping.h for the model).
 *
 * Invariants:
 *  1. rn_mapping_find is a binary search over logical_start, which is
 *     non-decreasing along a valid list; it never reads outside items[0..n).
 *  2. rn_mapping_check accepts exactly the lists this code writes: dense
 *     logical offsets across items, one open item at the end. Everything read
 *     from disk goes through it before any offset is translated.
 */
#include "logical-queues/mapping.h"

#include "common/error.h"

int rn_mapping_find(const rn_meta_item_t *items, size_t n, int64_t logical, size_t *idx)
{
    if (n == 0 || logical < items[0].logical_start) return RN_ERANGE;
    size_t lo = 0, hi = n;              /* answer in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (items[mid].logical_start <= logical) lo = mid;
        else hi = mid;
    }
    *idx = lo;
    return 0;
}

int rn_mapping_check(const rn_meta_item_t *items, size_t n, char *errmsg)
{
    if (n == 0) return rn_errf(errmsg, RN_ECORRUPT, "a logical queue has no mapping item");
    for (size_t i = 0; i < n; i++) {
        const rn_meta_item_t *it = &items[i];
        int last = i + 1 == n;
        if (it->logical_start < 0 || it->physical_start < 0)
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u item %u has a negative start",
                           it->queue, it->seq);
        if (last && rn_mapping_sealed(it))
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u: its last item %u is sealed; the last "
                           "item must be open", it->queue, it->seq);
        if (!last && !rn_mapping_sealed(it))
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u: item %u is open but is not the last",
                           it->queue, it->seq);
        if (!last && it->physical_end < it->physical_start)
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u item %u ends (physical %lld) before it "
                           "starts (%lld)", it->queue, it->seq, (long long)it->physical_end,
                           (long long)it->physical_start);
        if (i == 0) continue;
        const rn_meta_item_t *prev = &items[i - 1];
        if (it->queue != prev->queue)
            return rn_errf(errmsg, RN_ECORRUPT, "items of queues %u and %u are mixed", prev->queue,
                           it->queue);
        if (it->seq <= prev->seq)
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u: item seq %u follows %u", it->queue,
                           it->seq, prev->seq);
        if (it->logical_start != rn_mapping_item_end(prev))
            return rn_errf(errmsg, RN_ECORRUPT, "queue %u: item %u starts at logical %lld but "
                           "item %u ends at %lld", it->queue, it->seq,
                           (long long)it->logical_start, prev->seq,
                           (long long)rn_mapping_item_end(prev));
    }
    return 0;
}

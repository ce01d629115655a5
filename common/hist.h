/*
 * hist.h — a latency histogram cheap enough for the append path: fixed
 * bucket bounds, relaxed atomic adds, no lock and no allocation. runneld's
 * /metrics (server/metrics.c) renders it as a Prometheus histogram.
 *
 * Invariants:
 *  1. bucket[i] counts observations v with RN_HIST_BOUNDS_NS[i-1] < v <=
 *     RN_HIST_BOUNDS_NS[i] (not cumulative); bucket[RN_HIST_NBOUNDS] counts
 *     those above the last bound. A reader makes them cumulative, and takes
 *     the count as their total, so +Inf always equals the count it prints.
 *  2. sum_ns only grows (wraps after ~584 years of summed latency).
 *  3. A zeroed rn_hist_t is an empty histogram: define one static, or
 *     memset it.
 */
#ifndef RN_HIST_H
#define RN_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define RN_HIST_NBOUNDS 18

/* Upper bounds in nanoseconds: 10 µs to 10 s. */
static const uint64_t RN_HIST_BOUNDS_NS[RN_HIST_NBOUNDS] = {
    10000ull,     25000ull,     50000ull,     100000ull,     250000ull,     500000ull,
    1000000ull,   2500000ull,   5000000ull,   10000000ull,   25000000ull,   50000000ull,
    100000000ull, 250000000ull, 500000000ull, 1000000000ull, 2500000000ull, 10000000000ull,
};

typedef struct rn_hist {
    _Atomic uint64_t bucket[RN_HIST_NBOUNDS + 1];
    _Atomic uint64_t sum_ns;
} rn_hist_t;

static inline void rn_hist_observe(rn_hist_t *h, uint64_t ns)
{
    int i = 0;
    while (i < RN_HIST_NBOUNDS && ns > RN_HIST_BOUNDS_NS[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

#endif

/*
 * notify.h — a wake-up counter: a writer bumps it when something became
 * visible (appends of a store, common to the stores of a data directory);
 * a reader samples it before it looks, and when it found nothing waits until
 * the counter moved past its sample or a timeout passed. A bump costs one
 * atomic add and one load while nobody waits.
 *
 *   uint64_t seen = rn_notify_seq(n);
 *   if (nothing_to_read()) rn_notify_wait(n, seen, 100);   // then look again
 *
 * No wake-up is lost: a bump after the sample makes the wait return at once.
 * A wait may also return for a bump that concerns something else (callers
 * look again). Thread-safe; rn_notify_destroy only when no thread uses it.
 */
#ifndef RN_NOTIFY_H
#define RN_NOTIFY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct rn_notify {
    _Atomic uint64_t seq;
    _Atomic uint32_t waiters;
    pthread_mutex_t  mu;          /* a leaf lock: nothing is taken under it */
    pthread_cond_t   cv;          /* CLOCK_MONOTONIC */
} rn_notify_t;

void     rn_notify_init(rn_notify_t *n);
void     rn_notify_destroy(rn_notify_t *n);
uint64_t rn_notify_seq(rn_notify_t *n);
void     rn_notify_bump(rn_notify_t *n);
/* 1 when the counter differs from seen (at once or within timeout_ms), 0
 * when timeout_ms passed without a bump. */
int      rn_notify_wait(rn_notify_t *n, uint64_t seen, uint32_t timeout_ms);

#endif

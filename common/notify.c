/*
 * notify.c — the wake-up counter (see notify.h).
 *
 * Invariants:
 *  1. seq only grows; a bump is atomic_fetch_add then a load of waiters,
 *     a wait is waiters++ (under mu) then a load of seq, both sequentially
 *     consistent: either the bumper sees the waiter (and broadcasts under
 *     mu, which the waiter holds until it sleeps) or the waiter sees the new
 *     seq. So a bump after the waiter's sample is never missed.
 *  2. mu is a leaf lock held for a few instructions; bumpers may hold their
 *     own locks (a store's append lock) when they take it.
 */
#include "common/notify.h"

#include <time.h>

void rn_notify_init(rn_notify_t *n)
{
    atomic_init(&n->seq, 0);
    atomic_init(&n->waiters, 0);
    pthread_mutex_init(&n->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cv, &ca);
    pthread_condattr_destroy(&ca);
}

void rn_notify_destroy(rn_notify_t *n)
{
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
}

uint64_t rn_notify_seq(rn_notify_t *n) { return atomic_load(&n->seq); }

void rn_notify_bump(rn_notify_t *n)
{
    atomic_fetch_add(&n->seq, 1);
    if (atomic_load(&n->waiters) == 0) return;        /* invariant 1 */
    pthread_mutex_lock(&n->mu);
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
}

int rn_notify_wait(rn_notify_t *n, uint64_t seen, uint32_t timeout_ms)
{
    if (atomic_load(&n->seq) != seen) return 1;
    if (timeout_ms == 0) return 0;
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
    pthread_mutex_lock(&n->mu);
    atomic_fetch_add(&n->waiters, 1);
    int moved;
    while (!(moved = atomic_load(&n->seq) != seen))
        if (pthread_cond_timedwait(&n->cv, &n->mu, &dl) != 0) {      /* ETIMEDOUT */
            moved = atomic_load(&n->seq) != seen;
            break;
        }
    atomic_fetch_sub(&n->waiters, 1);
    pthread_mutex_unlock(&n->mu);
    return moved;
}

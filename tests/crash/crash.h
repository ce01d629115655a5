/*
 * crash.h — what tests/crash/crash.c (the storage crash loop and the
 * program's main) and tests/crash/broker.c (the runneld crash loop and the
 * soak) share: deterministic record identities and the clock.
 *
 * A record is identified by (gen, seq, queue): gen is the writer run (or the
 * trial), seq its sequence number within the queue and run. Its value, key
 * and timestamp are functions of that identity, so a checker can tell
 * exactly which record sits at each offset and whether it is intact.
 */
#ifndef RN_TESTS_CRASH_H
#define RN_TESTS_CRASH_H

#include <stddef.h>
#include <stdint.h>

#define QUEUES 4                      /* queues per store / topic */

uint64_t crash_mix(uint64_t x);       /* splitmix64 finaliser */
uint64_t crash_rng(uint64_t *state);  /* next pseudo-random number */
uint64_t crash_now_ns(void);          /* monotonic */

/* The value of record (gen, seq) of queue q in buf (cap >= 256); its length. */
int     crash_record_value(uint32_t gen, uint32_t seq, uint32_t q, char *buf, size_t cap);
int64_t crash_record_ts(uint32_t gen, uint32_t seq);
/* Parse the identity at the start of a value: 0, or -1 when it has none. */
int     crash_record_id(const uint8_t *v, int32_t len, uint32_t *gen, uint32_t *seq,
                        uint32_t *q);

/* The runneld crash loop (broker.c): `trials` SIGKILLs of runneld under
 * producer and consumer load over gRPC, one policy. 0 when all checks held. */
int broker_crash(const char *runneld, const char *policy, int trials, uint64_t seed,
                 int max_kill_ms, const char *base_dir, int verbose);
/* The soak (broker.c): m producers and m consumers for `seconds`, then
 * SIGTERM; 0 when there were no errors, RSS stayed bounded and runneld
 * exited 0. */
int broker_soak(const char *runneld, const char *policy, int seconds, int m,
                const char *base_dir);

#endif

/*
 * kafka_stub.c — the Kafka front's entry points for the handlers
 * (kafka/api.h: rn_kreq_done, _drop, _offload, _park, _bad), synchronous,
 * for the fuzz_kafka_* targets, which link it instead of kafka/front.c.
 *
 * Invariants:
 *  1. Offloaded work runs at once, then its completion, on the caller's
 *     thread (the handlers' waits return when their condition holds).
 *  2. rn_kreq_park only records the request; the target retries it with
 *     its wait expired (fuzz_kafka.h), as the front does at the deadline.
 *  3. At most one request is parked at a time (targets run one request).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/api.h"
#include "kafka/sasl.h"

rn_kreq_t *fk_parked;
int fk_state;                    /* 0 running, 1 done, 2 dropped (fuzz_kafka.h) */

void rn_kreq_done(rn_kreq_t *q) { (void)q; fk_state = 1; }
void rn_kreq_drop(rn_kreq_t *q) { (void)q; fk_state = 2; }

int rn_kreq_offload(rn_kreq_t *q, void (*work)(rn_kreq_t *q), void (*then)(rn_kreq_t *q),
                    int pipelined)
{
    work(q);
    then(q);
    return pipelined ? RN_KH_LATER_PIPELINED : RN_KH_LATER;
}

int rn_kreq_park(rn_kreq_t *q, int64_t deadline_ms, void (*retry)(rn_kreq_t *q, int expired))
{
    (void)deadline_ms;
    if (fk_parked && fk_parked != q) {                 /* invariant 3 */
        fprintf(stderr, "kafka_stub: a second request parked\n");
        abort();
    }
    q->retry = retry;
    fk_parked = q;
    return RN_KH_LATER;
}

int rn_kreq_alone(const rn_kreq_t *q)
{
    (void)q;
    return 1;                            /* one request per connection here */
}

/* A fresh connection's SASL state at every call, so that a replay does not
 * depend on the inputs before it: every SASL request is its connection's
 * first (a handshake is answered; an authentication is out of turn). */
rn_ksasl_t *rn_kreq_sasl(rn_kreq_t *q)
{
    static rn_ksasl_t s;
    (void)q;
    memset(&s, 0, sizeof s);
    return &s;
}

int rn_kreq_bad(rn_kreq_t *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->whybuf, sizeof q->whybuf, fmt, ap);
    va_end(ap);
    q->why = q->whybuf;
    return RN_KH_BAD;
}

/*
 * status.h — the status of a handled request, without gRPC types: codes equal
 * gRPC's grpc_status_code numbers (server.c checks that at compile time), so
 * the core-facing handlers never include gRPC.
 */
#ifndef RN_STATUS_H
#define RN_STATUS_H

#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

typedef enum rn_st {
    RN_ST_OK = 0,
    RN_ST_CANCELLED = 1,
    RN_ST_UNKNOWN = 2,
    RN_ST_INVALID_ARGUMENT = 3,
    RN_ST_DEADLINE_EXCEEDED = 4,
    RN_ST_NOT_FOUND = 5,
    RN_ST_ALREADY_EXISTS = 6,
    RN_ST_PERMISSION_DENIED = 7,
    RN_ST_RESOURCE_EXHAUSTED = 8,
    RN_ST_FAILED_PRECONDITION = 9,
    RN_ST_ABORTED = 10,
    RN_ST_OUT_OF_RANGE = 11,
    RN_ST_UNIMPLEMENTED = 12,
    RN_ST_INTERNAL = 13,
    RN_ST_UNAVAILABLE = 14,
    RN_ST_DATA_LOSS = 15,
    RN_ST_UNAUTHENTICATED = 16,
} rn_st_t;

/* Why a produce was refused, finer than the code, for fronts whose protocol
 * tells these apart (the Kafka front's error codes). */
typedef enum rn_sreason {
    RN_SR_NONE = 0,
    RN_SR_BATCH_CORRUPT,      /* CRC, lengths or records do not check */
    RN_SR_BATCH_TOO_LARGE,    /* over the batch limit or a decoding cap */
    RN_SR_BATCH_FORMAT,       /* not RecordBatch v2 (magic) */
    RN_SR_TIMESTAMP,          /* a record timestamp too far ahead */
    RN_SR_UNKNOWN_PRODUCER,   /* the producer id was never issued */
    RN_SR_PRODUCER_EPOCH,     /* stale or never-issued epoch */
    RN_SR_SEQUENCE,           /* a sequence gap or an old duplicate */
    RN_SR_NO_QUEUE,           /* unknown topic or queue */
    RN_SR_NOT_LEADER,         /* cluster: another node leads the queue */
    RN_SR_NOT_ENOUGH_REPLICAS, /* cluster: the ISR is below min_insync_replicas */
} rn_sreason_t;

/* A status and its message (RN_ERRMSG_SIZE, like every errmsg). */
typedef struct rn_status {
    rn_st_t      code;
    char         msg[RN_ERRMSG_SIZE];
    rn_sreason_t reason;      /* RN_SR_NONE unless a produce path sets it */
} rn_status_t;



/* Set *st to code with a printf-formatted message; returns -1, so that a
 * handler can `return rn_status_set(st, ...)`. */
static inline int rn_status_set(rn_status_t *st, rn_st_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int rn_status_set(rn_status_t *st, rn_st_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    st->code = code;
    st->reason = RN_SR_NONE;
    return -1;
}

/* rn_status_set with a reason. */
static inline int rn_status_setr(rn_status_t *st, rn_sreason_t r, rn_st_t code,
                                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static inline int rn_status_setr(rn_status_t *st, rn_sreason_t r, rn_st_t code,
                                 const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    va_end(ap);
    st->code = code;
    st->reason = r;
    return -1;
}

#endif

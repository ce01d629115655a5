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
} rn_st_t;

/* A status and its message (RN_ERRMSG_SIZE, like every errmsg). */
typedef struct rn_status {
    rn_st_t code;
    char    msg[RN_ERRMSG_SIZE];
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
    return -1;
}

#endif

/*
 * error.h — runnel's error codes.
 *
 * Every function that can fail returns int: 0 on success, a negative code on
 * failure. A code is either a negated errno (-EIO, -ENOSPC, ...) or one of the
 * project codes below, all below RN_EBASE so they never collide with errno.
 * rn_strerror() names both kinds. Sizes and handles come back through
 * out-parameters.
 */
#ifndef RN_ERROR_H
#define RN_ERROR_H

#include <stdarg.h>

#define RN_EBASE (-10000)

/* X(name, value, message) */
#define RN_ERRORS(X)                                                        \
    X(RN_ECORRUPT,  RN_EBASE - 1,  "data is corrupt")                       \
    X(RN_EFULL,     RN_EBASE - 2,  "limit reached")                         \
    X(RN_ECLOSED,   RN_EBASE - 3,  "handle is closed")                      \
    X(RN_ESTICKY,   RN_EBASE - 4,  "store refuses writes after an I/O error; reopen it") \
    X(RN_ERANGE,    RN_EBASE - 5,  "offset out of range")                   \
    X(RN_ENOTFOUND, RN_EBASE - 6,  "not found")                             \
    X(RN_EEXIST,    RN_EBASE - 7,  "already exists")                        \
    X(RN_EINVAL,    RN_EBASE - 8,  "invalid argument")                      \
    X(RN_ELOCKED,   RN_EBASE - 9,  "data directory is locked by another process") \
    X(RN_ETOOBIG,   RN_EBASE - 10, "too large")                             \
    X(RN_EFORMAT,   RN_EBASE - 11, "unsupported format or version")         \
    X(RN_ESQLITE,   RN_EBASE - 12, "metadata store error")                  \
    X(RN_EDAMAGED,  RN_EBASE - 13, "offsets are damaged or lost")

enum {
#define RN_X_ENUM(name, value, msg) name = value,
    RN_ERRORS(RN_X_ENUM)
#undef RN_X_ENUM
};

/* A static string naming the code; never NULL. Works for -errno as well. */
const char *rn_strerror(int code);

/* Size of the errmsg buffers that parsers and I/O contexts carry. */
#define RN_ERRMSG_SIZE 256

/* printf into an errmsg buffer (may be NULL). Returns code, so a failure path
 * can read: return rn_errf(errmsg, RN_ECORRUPT, "bad crc at %llu", pos); */
int rn_errf(char *errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with a va_list, for wrappers that add context (e.g. an offset). */
int rn_verrf(char *errmsg, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* The command-line programs' error rule: flush stdout, then print
 * "PROG: message" on stderr as exactly one line (control characters in the
 * message become spaces). Returns code, the exit code to use. */
int rn_fail_line(const char *prog, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif

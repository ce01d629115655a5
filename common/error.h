/*
 * error.h — runnel's error codes.
 *
 * Every function that can fail returns int: 0 on success, a negative code on
 * failure. A code is either a negated errno (-EIO, -ENOSPC, ...) or one of the
 * project codes of the RN_ERRORS table, all below RN_EBASE so they never
 * collide with errno. rn_strerror() names both kinds. Sizes and handles come
 * back through out-parameters.
 *
 * The table, rn_strerror() and RN_ERRMSG_SIZE are defined once, in the
 * public header client/runnel.h (which stands alone), and included from
 * there; this header adds the errmsg formatters the core uses.
 */
#ifndef RN_ERROR_H
#define RN_ERROR_H

#include <stdarg.h>

#include "client/runnel.h"

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

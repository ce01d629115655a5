/*
 * error.c — names for runnel's error codes (see error.h).
 *
 * Invariant: every project code in RN_ERRORS has exactly one message here,
 * generated from the same X-macro table, so a new code cannot lack one.
 */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rn_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define RN_X_CASE(name, value, msg) case name: return msg;
    RN_ERRORS(RN_X_CASE)
#undef RN_X_CASE
    default: break;
    }
    if (code < 0 && code > RN_EBASE)
        return strerror(-code);
    return "unknown error";
}

int rn_verrf(char *errmsg, int code, const char *fmt, va_list ap)
{
    if (errmsg) vsnprintf(errmsg, RN_ERRMSG_SIZE, fmt, ap);
    return code;
}

int rn_errf(char *errmsg, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    code = rn_verrf(errmsg, code, fmt, ap);
    va_end(ap);
    return code;
}

int rn_fail_line(const char *prog, int code, const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    fflush(stdout);
    fprintf(stderr, "%s: %s\n", prog, line);
    return code;
}

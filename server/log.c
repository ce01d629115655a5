/*
 * log.c — levelled log lines on stderr with UTC timestamps (server/log.h).
 *
 * Invariants:
 *  1. One line per call, written with a single fputs of a fully formatted
 *     buffer under stderr's lock, so lines from different threads never mix.
 *  2. The level is read atomically; changing it is safe at any time.
 */
#include "server/log.h"

#include "common/error.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static _Atomic int level = RN_SLOG_INFO;
static const char *const names[] = {"error", "warn", "info", "debug"};

int rn_slog_parse(const char *s, rn_slog_level_t *out, char *errmsg)
{
    for (int i = 0; i <= RN_SLOG_DEBUG; i++)
        if (!strcmp(s, names[i])) { *out = (rn_slog_level_t)i; return 0; }
    return rn_errf(errmsg, RN_EINVAL, "bad log level '%.40s': use error, warn, info or debug", s);
}

void rn_slog_set_level(rn_slog_level_t l) { atomic_store(&level, (int)l); }
int  rn_slog_enabled(rn_slog_level_t l) { return (int)l <= atomic_load(&level); }

void rn_slog(rn_slog_level_t l, const char *fmt, ...)
{
    if (!rn_slog_enabled(l)) return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s ", (long)(tv.tv_usec / 1000),
                          names[l]);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (k < 0) k = 0;
    n += (size_t)k;
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    line[n] = '\0';
    flockfile(stderr);
    fputs(line, stderr);
    fflush(stderr);
    funlockfile(stderr);
}

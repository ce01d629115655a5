/*
 * addr.c — HOST:PORT parsing (addr.h).
 *
 * Invariant: a port is accepted only when every character after the last
 * ':' is a digit and the value is in range; nothing is truncated or wrapped
 * (gRPC would otherwise read 99999 as 34463).
 */
#include "common/addr.h"

#include "common/error.h"

#include <string.h>

int rn_addr_split(const char *addr, char *host, size_t hostsize, int *port, int allow_zero,
                  char *errmsg)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!addr || !colon || colon == addr || !colon[1])
        return rn_errf(errmsg, RN_EINVAL, "bad address '%.100s': use HOST:PORT", addr ? addr : "");
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return rn_errf(errmsg, RN_EINVAL, "bad address '%.100s': an IPv6 host is written "
                           "[ADDR]:PORT", addr);
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl)) {
        return rn_errf(errmsg, RN_EINVAL, "bad address '%.100s': an IPv6 host is written "
                       "[ADDR]:PORT", addr);
    }
    if (hl >= hostsize)
        return rn_errf(errmsg, RN_EINVAL, "bad address '%.100s': the host is longer than %zu "
                       "bytes", addr, hostsize - 1);
    long v = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (*p < '0' || *p > '9' || (v = v * 10 + (*p - '0')) > 65535)
            return rn_errf(errmsg, RN_EINVAL, "bad port in address '%.100s': a port is %s to "
                           "65535", addr, allow_zero ? "0 (any free port)" : "1");
    }
    if (v == 0 && !allow_zero)
        return rn_errf(errmsg, RN_EINVAL, "bad port in address '%.100s': a port is 1 to 65535",
                       addr);
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (int)v;
    return 0;
}

int rn_addr_is_loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
}

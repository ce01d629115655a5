/*
 * addr.h — HOST:PORT addresses as runneld's listeners and the clients' --server
 * take them, checked the same way everywhere.
 */
#ifndef RN_ADDR_H
#define RN_ADDR_H

#include <stddef.h>

/* Split "HOST:PORT" or "[V6]:PORT" into host (brackets removed; at most
 * hostsize - 1 bytes) and port. The port is decimal digits only, 1 to 65535,
 * or 0 as well when listening (allow_zero: the kernel picks a free port).
 * 0, or RN_EINVAL with errmsg naming the address and what is valid. */
/* 1 when host (as rn_addr_split gives it) is loopback: 127.0.0.0/8, ::1 or
 * localhost. */
int rn_addr_is_loopback(const char *host);

int rn_addr_split(const char *addr, char *host, size_t hostsize, int *port, int allow_zero,
                  char *errmsg);

#endif

/*
 * buf.h — a growable byte buffer.
 *
 * Invariants: len <= cap; data is NULL exactly when cap == 0; growth never
 * passes the limit given to rn_buf_reserve (callers pass their own explicit
 * limits, e.g. the batch byte limit). rn_buf_free leaves an empty buffer that
 * can be reused.
 */
#ifndef RN_BUF_H
#define RN_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct rn_buf {
    uint8_t *data;
    size_t   len;
    size_t   cap;
} rn_buf_t;

#define RN_BUF_INIT {NULL, 0, 0}

/* Make room for `more` bytes past len. -ENOMEM, or RN_ETOOBIG past `limit`
 * total bytes (0 = no limit beyond memory). */
int  rn_buf_reserve(rn_buf_t *b, size_t more, size_t limit);
int  rn_buf_append(rn_buf_t *b, const void *p, size_t n, size_t limit);
void rn_buf_free(rn_buf_t *b);

#endif

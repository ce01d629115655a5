/*
 * buf.c — growable byte buffer (see buf.h). Capacity doubles, so appends are
 * amortised O(1); the limit is checked before any allocation.
 */
#include "common/buf.h"
#include "common/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int rn_buf_reserve(rn_buf_t *b, size_t more, size_t limit)
{
    if (more > SIZE_MAX - b->len) return -ENOMEM;
    size_t need = b->len + more;
    if (limit && need > limit) return RN_ETOOBIG;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (limit && cap > limit) cap = limit;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int rn_buf_append(rn_buf_t *b, const void *p, size_t n, size_t limit)
{
    int rc = rn_buf_reserve(b, n, limit);
    if (rc != 0) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void rn_buf_free(rn_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/*
 * wire.c — the Kafka protocol's primitive types (wire.h). Every read checks
 * its bounds first (invariant 1); every write goes through put(), which keeps
 * the sticky error (invariant 4).
 */
#include "kafka/wire.h"

#include <string.h>

#include "common/bytes.h"
#include "common/error.h"

/* ---- reader ---------------------------------------------------------------- */

void rn_kr_init(rn_kr_t *r, const void *p, size_t len, int flex)
{
    r->p = p;
    r->end = r->p + len;
    r->flex = flex;
    r->err = 0;
    r->what = NULL;
}

int rn_kr_fail(rn_kr_t *r, const char *what)
{
    if (!r->err) {
        r->err = 1;
        r->what = what;
    }
    r->p = r->end;
    return 0;
}

/* n bytes at the read position, or NULL (failing r). */
static const uint8_t *take(rn_kr_t *r, size_t n, const char *what)
{
    if (r->err || rn_kr_left(r) < n) {
        rn_kr_fail(r, what);
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

int8_t rn_kr_i8(rn_kr_t *r, const char *what)
{
    const uint8_t *p = take(r, 1, what);
    return p ? (int8_t)p[0] : 0;
}

int16_t rn_kr_i16(rn_kr_t *r, const char *what)
{
    const uint8_t *p = take(r, 2, what);
    return p ? (int16_t)rn_be16_get(p) : 0;
}

int32_t rn_kr_i32(rn_kr_t *r, const char *what)
{
    const uint8_t *p = take(r, 4, what);
    return p ? (int32_t)rn_be32_get(p) : 0;
}

int64_t rn_kr_i64(rn_kr_t *r, const char *what)
{
    const uint8_t *p = take(r, 8, what);
    return p ? (int64_t)rn_be64_get(p) : 0;
}

uint32_t rn_kr_uvarint(rn_kr_t *r, const char *what)
{
    uint32_t v = 0;
    for (int s = 0; s <= 28; s += 7) {
        const uint8_t *p = take(r, 1, what);
        if (!p) return 0;
        if (s == 28 && *p > 0x0f) return rn_kr_fail(r, what);
        v |= (uint32_t)(*p & 0x7f) << s;
        if (!(*p & 0x80)) return v;
    }
    return 0;
}

/* A length-prefixed field: INT16 (strings) or INT32 (bytes) length, or the
 * compact UNSIGNED_VARINT length + 1. */
static rn_kstr_t lenfield(rn_kr_t *r, int wide, const char *what)
{
    rn_kstr_t s = {NULL, -1};
    int64_t n;
    if (r->flex) n = (int64_t)rn_kr_uvarint(r, what) - 1;
    else n = wide ? rn_kr_i32(r, what) : rn_kr_i16(r, what);
    if (r->err || n < 0) return s;
    const uint8_t *p = take(r, (size_t)n, what);
    if (!p) return s;
    s.p = (const char *)p;
    s.len = (int32_t)n;
    return s;
}

rn_kstr_t rn_kr_str(rn_kr_t *r, const char *what) { return lenfield(r, 0, what); }
rn_kstr_t rn_kr_bytes(rn_kr_t *r, const char *what) { return lenfield(r, 1, what); }

int32_t rn_kr_array(rn_kr_t *r, const char *what)
{
    int64_t n = r->flex ? (int64_t)rn_kr_uvarint(r, what) - 1 : rn_kr_i32(r, what);
    if (r->err) return 0;
    if (n < -1) return rn_kr_fail(r, what);
    if (n > (int64_t)rn_kr_left(r)) return rn_kr_fail(r, what);   /* invariant 3 */
    return (int32_t)n;
}

void rn_kr_uuid(rn_kr_t *r, uint8_t out[16], const char *what)
{
    const uint8_t *p = take(r, 16, what);
    if (p) memcpy(out, p, 16);
    else memset(out, 0, 16);
}

void rn_kr_tags(rn_kr_t *r)
{
    if (!r->flex) return;
    uint32_t n = rn_kr_uvarint(r, "tagged fields");
    for (uint32_t i = 0; i < n && !r->err; i++) {
        rn_kr_uvarint(r, "tag");
        uint32_t size = rn_kr_uvarint(r, "tagged field size");
        take(r, size, "tagged field");
    }
}

int rn_kstr_copy(rn_kstr_t s, char *dst, size_t n)
{
    if (s.len < 0 || (size_t)s.len >= n || (s.len && memchr(s.p, 0, (size_t)s.len))) return -1;
    if (s.len) memcpy(dst, s.p, (size_t)s.len);
    dst[s.len] = 0;
    return 0;
}

int rn_kstr_eq(rn_kstr_t s, const char *z)
{
    size_t n = strlen(z);
    return s.len >= 0 && (size_t)s.len == n && memcmp(s.p, z, n) == 0;
}

/* ---- writer ---------------------------------------------------------------- */

void rn_kw_init(rn_kw_t *w, rn_buf_t *b, int flex)
{
    w->b = b;
    w->flex = flex;
    w->err = 0;
    w->max = RN_KW_MAX_RESPONSE;
}

/* Room for n more bytes: where they go, or NULL (invariant 4). */
static uint8_t *put(rn_kw_t *w, size_t n)
{
    if (w->err) return NULL;
    if (n > w->max || w->b->len > w->max - n) {         /* invariant 5 */
        w->err = RN_KW_ETOOBIG;
        return NULL;
    }
    if (rn_buf_reserve(w->b, n, 0) != 0) {
        w->err = RN_KW_ENOMEM;
        return NULL;
    }
    uint8_t *p = w->b->data + w->b->len;
    w->b->len += n;
    return p;
}

void rn_kw_i8(rn_kw_t *w, int8_t v)
{
    uint8_t *p = put(w, 1);
    if (p) *p = (uint8_t)v;
}

void rn_kw_i16(rn_kw_t *w, int16_t v)
{
    uint8_t *p = put(w, 2);
    if (p) rn_be16_put(p, (uint16_t)v);
}

void rn_kw_i32(rn_kw_t *w, int32_t v)
{
    uint8_t *p = put(w, 4);
    if (p) rn_be32_put(p, (uint32_t)v);
}

void rn_kw_i64(rn_kw_t *w, int64_t v)
{
    uint8_t *p = put(w, 8);
    if (p) rn_be64_put(p, (uint64_t)v);
}

void rn_kw_uvarint(rn_kw_t *w, uint32_t v)
{
    uint8_t *p = put(w, rn_uvarint_size(v));
    if (p) rn_uvarint_put(p, v);
}

void rn_kw_raw(rn_kw_t *w, const void *src, size_t n)
{
    uint8_t *p = put(w, n);
    if (p && n) memcpy(p, src, n);
}

/* A length prefix (see lenfield) then the bytes. */
static void lenbytes(rn_kw_t *w, int wide, const void *src, int32_t len)
{
    if (len < 0) len = -1;
    if (w->flex) rn_kw_uvarint(w, (uint32_t)(len + 1));
    else if (wide) rn_kw_i32(w, len);
    else rn_kw_i16(w, (int16_t)len);
    if (len > 0) rn_kw_raw(w, src, (size_t)len);
}

void rn_kw_strn(rn_kw_t *w, const char *p, int32_t len) { lenbytes(w, 0, p, len); }
void rn_kw_str(rn_kw_t *w, const char *z) { lenbytes(w, 0, z, z ? (int32_t)strlen(z) : -1); }
void rn_kw_bytes(rn_kw_t *w, const void *p, int32_t len) { lenbytes(w, 1, p, len); }

void rn_kw_array(rn_kw_t *w, int32_t n)
{
    if (w->flex) rn_kw_uvarint(w, (uint32_t)(n < 0 ? 0 : n + 1));
    else rn_kw_i32(w, n < 0 ? -1 : n);
}

void rn_kw_uuid(rn_kw_t *w, const uint8_t v[16]) { rn_kw_raw(w, v, 16); }

void rn_kw_tags(rn_kw_t *w)
{
    if (w->flex) rn_kw_uvarint(w, 0);
}

size_t rn_kw_slot(rn_kw_t *w, size_t n)
{
    size_t at = w->b->len;
    uint8_t *p = put(w, n);
    if (p) memset(p, 0, n);
    return at;
}

void rn_kw_fill32(rn_kw_t *w, size_t slot, int32_t v)
{
    if (!w->err) rn_be32_put(w->b->data + slot, (uint32_t)v);
}

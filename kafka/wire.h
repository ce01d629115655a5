/*
 * wire.h — the Kafka protocol's primitive types: a bounds-checked reader over
 * one request frame and a writer appending to a response buffer.
 *
 * Types (Kafka's protocol guide): INT8..INT64 big-endian; UNSIGNED_VARINT;
 * STRING = INT16 length + bytes, NULLABLE_STRING with length -1 = null;
 * BYTES = INT32 length + bytes; ARRAY = INT32 count (-1 = null) + elements.
 * Flexible versions (KIP-482) use COMPACT_* forms: UNSIGNED_VARINT of
 * length + 1 (0 = null) for strings, bytes and arrays, and end every
 * structure with a tagged-field section (UNSIGNED_VARINT count, then
 * tag/size/bytes each). rn_kr_t.flex / rn_kw_t.flex choose the form, so a
 * handler writes one sequence of calls for both.
 *
 * Invariants:
 *  1. A reader never reads outside [p, end). The first failure sets r->err
 *     (and r->what, naming the field) and every later read returns 0 / an
 *     empty value, so a handler checks r->err once, after decoding.
 *  2. Strings and bytes returned point into the frame (no copy); they live as
 *     long as the frame. A string is not NUL-terminated.
 *  3. An array count is refused when it exceeds the bytes left (every element
 *     takes at least one byte), so a count can never make a handler allocate
 *     more than the frame's size in elements.
 *  4. A writer's first allocation failure sets w->err; later writes do
 *     nothing. The response is sent only when w->err is 0.
 *  5. A writer never grows its buffer past w->max (RN_KW_MAX_RESPONSE unless
 *     set otherwise): a write that would sets w->err to RN_KW_ETOOBIG, so no
 *     request can make a response larger than that, whatever it names.
 */
#ifndef RN_KAFKA_WIRE_H
#define RN_KAFKA_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

/* A string or bytes field inside a frame; len -1 is null. */
typedef struct rn_kstr {
    const char *p;
    int32_t     len;
} rn_kstr_t;

/* ---- reader ---------------------------------------------------------------- */

typedef struct rn_kr {
    const uint8_t *p, *end;
    int            flex;      /* compact forms and tagged fields */
    int            err;       /* set by the first failed read */
    const char    *what;      /* the field that failed (a static string) */
} rn_kr_t;

void    rn_kr_init(rn_kr_t *r, const void *p, size_t len, int flex);
int8_t  rn_kr_i8(rn_kr_t *r, const char *what);
int16_t rn_kr_i16(rn_kr_t *r, const char *what);
int32_t rn_kr_i32(rn_kr_t *r, const char *what);
int64_t rn_kr_i64(rn_kr_t *r, const char *what);
uint32_t rn_kr_uvarint(rn_kr_t *r, const char *what);
/* STRING / COMPACT_STRING (null allowed: len -1). */
rn_kstr_t rn_kr_str(rn_kr_t *r, const char *what);
/* BYTES / COMPACT_BYTES (null allowed: len -1). */
rn_kstr_t rn_kr_bytes(rn_kr_t *r, const char *what);
/* ARRAY / COMPACT_ARRAY count; -1 for null (invariant 3). */
int32_t rn_kr_array(rn_kr_t *r, const char *what);
/* A 16-byte UUID. */
void    rn_kr_uuid(rn_kr_t *r, uint8_t out[16], const char *what);
/* Skip a tagged-field section (flexible versions only; no-op otherwise). */
void    rn_kr_tags(rn_kr_t *r);
/* Bytes not yet read. */
static inline size_t rn_kr_left(const rn_kr_t *r) { return (size_t)(r->end - r->p); }
/* Fail r with `what` (invariant 1); returns 0 for `return rn_kr_fail(...)`. */
int     rn_kr_fail(rn_kr_t *r, const char *what);

/* Copy s into dst (size n, NUL-terminated). -1 when s is null, longer than
 * n - 1 or holds a NUL byte; 0 otherwise. */
int rn_kstr_copy(rn_kstr_t s, char *dst, size_t n);
/* s equals the C string z. */
int rn_kstr_eq(rn_kstr_t s, const char *z);

/* ---- writer ---------------------------------------------------------------- */

/* The largest response body a writer builds (invariant 5): above the
 * largest Fetch answer (max_bytes is capped at the frame limit, 17 MiB by
 * default, plus one batch past it, KIP-74) and far below what would strain
 * the broker. */
#define RN_KW_MAX_RESPONSE (48u << 20)
enum { RN_KW_ENOMEM = 1, RN_KW_ETOOBIG = 2 };

typedef struct rn_kw {
    rn_buf_t *b;
    int       flex;
    int       err;        /* RN_KW_ENOMEM or RN_KW_ETOOBIG after a failed write */
    size_t    max;        /* invariant 5 */
} rn_kw_t;

void rn_kw_init(rn_kw_t *w, rn_buf_t *b, int flex);
void rn_kw_i8(rn_kw_t *w, int8_t v);
void rn_kw_i16(rn_kw_t *w, int16_t v);
void rn_kw_i32(rn_kw_t *w, int32_t v);
void rn_kw_i64(rn_kw_t *w, int64_t v);
void rn_kw_uvarint(rn_kw_t *w, uint32_t v);
void rn_kw_raw(rn_kw_t *w, const void *p, size_t n);
/* STRING / COMPACT_STRING of the C string z (NULL writes null). */
void rn_kw_str(rn_kw_t *w, const char *z);
/* The same from a pointer and length (len -1 writes null). */
void rn_kw_strn(rn_kw_t *w, const char *p, int32_t len);
/* BYTES / COMPACT_BYTES (len -1 writes null). */
void rn_kw_bytes(rn_kw_t *w, const void *p, int32_t len);
/* ARRAY / COMPACT_ARRAY count (-1 writes null). */
void rn_kw_array(rn_kw_t *w, int32_t n);
void rn_kw_uuid(rn_kw_t *w, const uint8_t v[16]);
/* An empty tagged-field section (flexible versions only). */
void rn_kw_tags(rn_kw_t *w);
/* Reserve n bytes for fields written later (rn_kw_fill32, or directly at
 * w->b->data + slot when !w->err): their offset. */
size_t rn_kw_slot(rn_kw_t *w, size_t n);
void   rn_kw_fill32(rn_kw_t *w, size_t slot, int32_t v);

#endif

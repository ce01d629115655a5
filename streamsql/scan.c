/*
 * scan.c — decode the declared fields of one record value, once, typed:
 * a single forward pass over a JSON object (or a CSV line), no tree built.
 *
 * Invariants:
 *  1. The fields in the `need` mask are decoded (the engine asks for every
 *     declared field); the scan stops once every needed field was seen, so
 *     undeclared members after them are skipped unvalidated.
 *  2. A member that is absent or JSON null is SQL NULL. A member whose JSON
 *     type does not fit the declared type (an INTEGER holding "abc" or 1.5,
 *     a TEXT holding 42, ...) makes the whole record an error: never a
 *     NULL, never a coerced value.
 *  3. Strings without escapes are views into the record; escaped ones are
 *     unescaped into the caller's arena, which has room reserved (an
 *     unescaped string is never longer than its escaped form), so views
 *     stay valid for the whole batch.
 *  4. JSON member names match declared field names exactly (byte-equal);
 *     the first occurrence of a member wins.
 *  5. Nothing outside v[0..vlen) is read, whatever the bytes: the 16-byte
 *     (SSE2) and 8-byte (SWAR) loads of the string search and the 8-digit
 *     integer step run only while that many bytes remain.
 *  6. The fast paths decide exactly what the general ones would: fast_int
 *     takes only -?[0-9]{1,19} within int64 followed by a value's end, and
 *     leaves everything else (and every error message) to skip_value and
 *     parse_int (tests/test_streamsql_scan.c).
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct cur {
    const char *p, *e;
} cur_t;

static inline __attribute__((always_inline)) void ws(cur_t *c)
{
    /* one compare for the usual case, a structural character next */
    while (c->p < c->e && (unsigned char)*c->p <= ' ' &&
           (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* The first '"' or '\\' in [p, e), or e: sixteen bytes at a time with SSE2,
 * then eight (SWAR), then one; every load stays inside [p, e) (invariant 5).
 * In the SWAR step, (x - 0x01..) & ~x & 0x80.. may flag a byte above a true
 * match (a borrow), never below it, so its lowest bit is the first match. */
static const char *quote_or_backslash(const char *p, const char *e)
{
#ifdef __SSE2__
    const __m128i dq = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\');
    while (e - p >= 16) {
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(w, dq),
                                                              _mm_cmpeq_epi8(w, bs)));
        if (m) return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (e - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        uint64_t hit = ((q - ones) & ~q & highs) | ((b - ones) & ~b & highs);
        if (hit) return p + (__builtin_ctzll(hit) >> 3);
        p += 8;
    }
    while (p < e && *p != '"' && *p != '\\') p++;
    return p;
}

/* At '"': find the closing quote. *esc = 1 when the string has escapes.
 * Returns 0 and leaves c->p after the quote; body in [*b, *be). One pass:
 * each byte is looked at once, whether or not the string has escapes. */
static inline __attribute__((always_inline)) int json_string(cur_t *c, const char **b, const char **be,
                                                          int *esc)
{
    const char *p = c->p + 1;
    *esc = 0;
    *b = p;
    for (;;) {
        p = quote_or_backslash(p, c->e);
        if (p >= c->e) return RN_EINVAL;
        if (*p == '"') {
            *be = p;
            c->p = p + 1;
            return 0;
        }
        *esc = 1;
        p += 2;                  /* skip the escaped character */
        if (p > c->e) return RN_EINVAL;
    }
}

static int hex4(const char *p, const char *e, uint32_t *v)
{
    if (e - p < 4) return RN_EINVAL;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        uint32_t d = ch >= '0' && ch <= '9' ? (uint32_t)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (uint32_t)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (uint32_t)(ch - 'A' + 10) : 99;
        if (d > 15) return RN_EINVAL;
        *v = *v * 16 + d;
    }
    return 0;
}

/* Unescape [b, e) into out (room for e - b bytes); *n bytes written. */
static int unescape(const char *b, const char *e, char *out, uint32_t *n)
{
    char *o = out;
    while (b < e) {
        if (*b != '\\') { *o++ = *b++; continue; }
        if (++b >= e) return RN_EINVAL;
        char ch = *b++;
        switch (ch) {
        case '"': case '\\': case '/': *o++ = ch; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t u;
            if (hex4(b, e, &u) != 0) return RN_EINVAL;
            b += 4;
            if (u >= 0xD800 && u < 0xDC00 && e - b >= 6 && b[0] == '\\' && b[1] == 'u') {
                uint32_t lo;
                if (hex4(b + 2, e, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    b += 6;
                }
            }
            /* 6 escaped bytes always cover the at most 4 bytes written */
            if (u < 0x80) *o++ = (char)u;
            else if (u < 0x800) { *o++ = (char)(0xC0 | (u >> 6)); *o++ = (char)(0x80 | (u & 0x3F)); }
            else if (u < 0x10000) {
                *o++ = (char)(0xE0 | (u >> 12));
                *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *o++ = (char)(0x80 | (u & 0x3F));
            } else {
                *o++ = (char)(0xF0 | (u >> 18));
                *o++ = (char)(0x80 | ((u >> 12) & 0x3F));
                *o++ = (char)(0x80 | ((u >> 6) & 0x3F));
                *o++ = (char)(0x80 | (u & 0x3F));
            }
            break;
        }
        default: return RN_EINVAL;
        }
    }
    *n = (uint32_t)(o - out);
    return 0;
}

/* Does a JSON scalar (number, true, false, null) end before ch? */
static int scalar_end(char ch)
{
    return ch == ',' || ch == '}' || ch == ']' || ch == ' ' || ch == '\t' || ch == '\n' ||
           ch == '\r';
}

/* Skip any JSON value at c->p (already at a non-space). */
static int skip_value(cur_t *c)
{
    if (c->p >= c->e) return RN_EINVAL;
    if (*c->p == '"') {
        const char *b, *be;
        int esc;
        return json_string(c, &b, &be, &esc);
    }
    if (*c->p == '{' || *c->p == '[') {
        int depth = 0;
        while (c->p < c->e) {
            char ch = *c->p;
            if (ch == '"') {
                const char *b, *be;
                int esc;
                if (json_string(c, &b, &be, &esc) != 0) return RN_EINVAL;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            else if (ch == '}' || ch == ']') {
                if (--depth == 0) { c->p++; return 0; }
            }
            c->p++;
        }
        return RN_EINVAL;
    }
    const char *s = c->p;
    while (c->p < c->e && !scalar_end(*c->p)) c->p++;
    return c->p > s ? 0 : RN_EINVAL;
}

/* Strict integer text: -?[0-9]+ within int64. */
static int parse_int(const char *s, size_t n, int64_t *v)
{
    size_t i = 0;
    int neg = 0;
    if (n && s[0] == '-') { neg = 1; i = 1; }
    if (i == n || n - i > 19) return RN_EINVAL;
    uint64_t u = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return RN_EINVAL;
        u = u * 10 + (uint64_t)(s[i] - '0');
    }
    if (u > (uint64_t)INT64_MAX + (uint64_t)neg) return RN_EINVAL;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

static int parse_real(const char *s, size_t n, double *d)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return RN_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *d = strtod(buf, &end);
    if (*end != '\0' || buf[0] == ' ' || (errno == ERANGE && (*d > 1 || *d < -1))) return RN_EINVAL;
    return 0;
}

static int type_error(const sfield_t *fd, const char *raw, size_t n, char *errmsg)
{
    char shown[40];
    size_t k = n < 32 ? n : 32;
    for (size_t i = 0; i < k; i++)
        shown[i] = (unsigned char)raw[i] < 0x20 ? ' ' : raw[i];
    shown[k] = '\0';
    return rn_errf(errmsg, RN_EINVAL, "field '%s' is %s but holds %s%s", fd->name,
                   rn_front_ftype_name(fd->type), shown, n > k ? "..." : "");
}

/* The common INTEGER member, -?[0-9]{1,19} then the value's end, parsed in
 * the same pass that finds its end (eight digits per step where it can; the
 * 19 digits fit a uint64_t, and the range check is exact). 0 with c->p after it; -1 (c->p
 * unchanged) for anything else, which the general path (skip_value, then
 * parse_int) decides, with its error message: the result is the same. */
static int fast_int(cur_t *c, int64_t *v)
{
    const char *p = c->p, *e = c->e;
    int neg = p < e && *p == '-';
    p += neg;
    const char *d = p, *lim = e - p > 19 ? p + 19 : e;   /* 19 digits at most */
    uint64_t u = 0, w;
    /* eight digits at a time while eight more fit under lim: (w & 0xF0..) is
     * 0x30.. and adding 6 to each byte keeps it there only for '0'..'9' */
    while (lim - p >= 8) {
        memcpy(&w, p, 8);
        if ((((w & 0xF0F0F0F0F0F0F0F0ull) | (((w + 0x0606060606060606ull) &
                                               0xF0F0F0F0F0F0F0F0ull) >> 4))) !=
            0x3333333333333333ull)
            break;
        w = ((w & 0x0F0F0F0F0F0F0F0Full) * 2561) >> 8;      /* pairs, then quads, then 8 */
        w = ((w & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
        w = ((w & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
        u = u * 100000000u + w;
        p += 8;
    }
    while (p < lim && (unsigned)(*p - '0') < 10) u = u * 10 + (uint64_t)(*p++ - '0');
    if (p == d || (p < e && !scalar_end(*p)) || u > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
    *v = neg ? (int64_t)(0 - u) : (int64_t)u;
    c->p = p;
    return 0;
}

/* A JSON member value at c->p into *out per the field's type. */
static int json_value(const sfield_t *fd, cur_t *c, fval_t *out, rn_buf_t *arena, char *errmsg)
{
    const char *start = c->p;
    if (c->p >= c->e) return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
    char ch = *c->p;
    if (ch == '"') {
        const char *b, *be;
        int esc;
        if (json_string(c, &b, &be, &esc) != 0)
            return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
        if (fd->type == FT_JSON) {
            out->type = RN_SQL_TEXT; out->s = start; out->n = (uint32_t)(c->p - start);
            return 0;
        }
        if (fd->type != FT_TEXT) return type_error(fd, start, (size_t)(c->p - start), errmsg);
        out->type = RN_SQL_TEXT;
        if (!esc) { out->s = b; out->n = (uint32_t)(be - b); return 0; }
        char *dst = (char *)arena->data + arena->len;
        uint32_t n;
        if (unescape(b, be, dst, &n) != 0)
            return rn_errf(errmsg, RN_EINVAL, "field '%s' has a bad escape", fd->name);
        arena->len += n;
        out->s = dst;
        out->n = n;
        return 0;
    }
    if (fd->type == FT_INTEGER && fast_int(c, &out->i) == 0) {
        out->type = RN_SQL_INT;
        return 0;
    }
    if (skip_value(c) != 0) return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
    size_t n = (size_t)(c->p - start);
    if (fd->type == FT_JSON) {
        if (n == 4 && memcmp(start, "null", 4) == 0) { out->type = RN_SQL_NULL; return 0; }
        out->type = RN_SQL_TEXT; out->s = start; out->n = (uint32_t)n;
        return 0;
    }
    if (n == 4 && memcmp(start, "null", 4) == 0) { out->type = RN_SQL_NULL; return 0; }
    switch (fd->type) {
    case FT_INTEGER:
        if (parse_int(start, n, &out->i) != 0) return type_error(fd, start, n, errmsg);
        out->type = RN_SQL_INT;
        return 0;
    case FT_REAL:
        if (ch == '{' || ch == '[' || parse_real(start, n, &out->d) != 0 ||
            !(ch == '-' || (ch >= '0' && ch <= '9')))
            return type_error(fd, start, n, errmsg);
        out->type = RN_SQL_REAL;
        return 0;
    case FT_BOOLEAN:
        if (n == 4 && memcmp(start, "true", 4) == 0) out->i = 1;
        else if (n == 5 && memcmp(start, "false", 5) == 0) out->i = 0;
        else return type_error(fd, start, n, errmsg);
        out->type = RN_SQL_INT;
        return 0;
    default:
        return type_error(fd, start, n, errmsg);
    }
}

/* Is the field named kb[0..kl)? kl <= RN_SQL_MAX_NAME, so name[kl] is inside
 * the NUL-terminated name. A name of up to 8 bytes is compared in one
 * 8-byte word when 8 bytes are readable at kb (before kend; the field's
 * name array always has them), the bytes past kl masked off. */
static inline __attribute__((always_inline)) int name_is(const sfield_t *fd, const char *kb,
                                                         size_t kl, const char *kend)
{
    if (fd->name[kl] != 0) return 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (kl <= 8 && kend - kb >= 8) {
        uint64_t a, b;
        memcpy(&a, fd->name, 8);
        memcpy(&b, kb, 8);
        uint64_t mask = kl == 8 ? ~0ull : (1ull << (8 * kl)) - 1;
        return ((a ^ b) & mask) == 0;
    }
#endif
    for (size_t i = 0; i < kl; i++)      /* names are short: no call to memcmp */
        if (fd->name[i] != kb[i]) return 0;
    return 1;
}

static int scan_json(const sdef_t *def, uint64_t need, const char *v, size_t vlen, fval_t *out,
                     rn_buf_t *arena, char *errmsg)
{
    cur_t c = {v, v + vlen};
    char keybuf[RN_SQL_MAX_NAME + 1];
    uint64_t left = need;
    int next = 0;
    ws(&c);
    if (c.p >= c.e || *c.p != '{') return rn_errf(errmsg, RN_EINVAL, "value is not a JSON object");
    c.p++;
    ws(&c);
    if (c.p < c.e && *c.p == '}') return 0;
    while (left) {
        if (c.p >= c.e || *c.p != '"') return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
        const char *kb, *ke;
        int esc;
        if (json_string(&c, &kb, &ke, &esc) != 0)
            return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
        const char *kend = c.e;
        if (esc) {
            uint32_t n = 0;
            if (ke - kb > RN_SQL_MAX_NAME || unescape(kb, ke, keybuf, &n) != 0) {
                kb = ke = NULL;
            } else {
                kb = keybuf;
                ke = keybuf + n;
                kend = keybuf + sizeof keybuf;
            }
        }
        /* "name":value without blanks is the usual form: one compare each */
        if (c.p < c.e && *c.p == ':') {
            c.p++;
        } else {
            ws(&c);
            if (c.p >= c.e || *c.p != ':') return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
            c.p++;
        }
        ws(&c);
        /* Members usually come in the order the fields were declared: try the
         * field after the last one found first, then every field still needed. */
        int k = -1;
        size_t kl = (size_t)(ke - kb);
        if (kb && kl <= RN_SQL_MAX_NAME) {
            if (next < def->nfields && (left >> next & 1) &&
                name_is(&def->fields[next], kb, kl, kend))
                k = next;
            for (uint64_t m = left; k < 0 && m; m &= m - 1) {
                int i = __builtin_ctzll(m);
                if (name_is(&def->fields[i], kb, kl, kend)) k = i;
            }
        }
        if (k >= 0) next = k + 1;
        int rc = k >= 0 ? json_value(&def->fields[k], &c, &out[k], arena, errmsg) : skip_value(&c);
        if (rc != 0) return k >= 0 ? rc : rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
        if (k >= 0) left &= ~(1ull << k);
        if (c.p < c.e && *c.p == ',') {
            c.p++;
            if (c.p < c.e && *c.p == '"') continue;          /* the usual form */
            ws(&c);
            continue;
        }
        ws(&c);
        if (c.p < c.e && *c.p == ',') { c.p++; ws(&c); continue; }
        if (c.p < c.e && *c.p == '}') break;
        return rn_errf(errmsg, RN_EINVAL, "value is not valid JSON");
    }
    return 0;
}

/* One CSV cell [b, e) (quotes removed by the caller when quoted). */
static int csv_cell(const sfield_t *fd, const char *b, size_t n, fval_t *out, char *errmsg)
{
    if (n == 0) { out->type = RN_SQL_NULL; return 0; }
    switch (fd->type) {
    case FT_INTEGER:
        if (parse_int(b, n, &out->i) != 0) return type_error(fd, b, n, errmsg);
        out->type = RN_SQL_INT;
        return 0;
    case FT_REAL:
        if (parse_real(b, n, &out->d) != 0) return type_error(fd, b, n, errmsg);
        out->type = RN_SQL_REAL;
        return 0;
    case FT_BOOLEAN:
        if ((n == 4 && memcmp(b, "true", 4) == 0) || (n == 1 && b[0] == '1')) out->i = 1;
        else if ((n == 5 && memcmp(b, "false", 5) == 0) || (n == 1 && b[0] == '0')) out->i = 0;
        else return type_error(fd, b, n, errmsg);
        out->type = RN_SQL_INT;
        return 0;
    default:
        out->type = RN_SQL_TEXT;
        out->s = b;
        out->n = (uint32_t)n;
        return 0;
    }
}

static int scan_csv(const sdef_t *def, uint64_t need, const char *v, size_t vlen, fval_t *out,
                    rn_buf_t *arena, char *errmsg)
{
    const char *p = v, *e = v + vlen;
    while (e > p && (e[-1] == '\n' || e[-1] == '\r')) e--;
    for (int k = 0; k < def->nfields && (need >> k); k++) {
        const char *b = p;
        size_t n;
        if (p < e && *p == '"') {
            char *dst = (char *)arena->data + arena->len;
            size_t o = 0;
            p++;
            for (;;) {
                if (p >= e) return rn_errf(errmsg, RN_EINVAL, "unterminated quote in CSV");
                if (*p == '"') {
                    if (p + 1 < e && p[1] == '"') { dst[o++] = '"'; p += 2; continue; }
                    p++;
                    break;
                }
                dst[o++] = *p++;
            }
            arena->len += o;
            b = dst;
            n = o;
        } else {
            while (p < e && *p != ',') p++;
            n = (size_t)(p - b);
        }
        if (p < e && *p != ',') return rn_errf(errmsg, RN_EINVAL, "bad CSV after a quoted cell");
        if (need & (1ull << k)) {
            int rc = csv_cell(&def->fields[k], b, n, &out[k], errmsg);
            if (rc != 0) return rc;
        }
        if (p < e) p++;
        else if (k + 1 < def->nfields) {
            for (int j = k + 1; j < def->nfields; j++) out[j].type = RN_SQL_NULL;
            return 0;
        }
    }
    return 0;
}

int rn_scan_record(const sdef_t *def, uint64_t need, const uint8_t *v, int32_t vlen,
                    fval_t *out, rn_buf_t *arena, char *errmsg)
{
    for (uint64_t m = need; m; m &= m - 1) out[__builtin_ctzll(m)].type = RN_SQL_NULL;
    if (!need) return 0;
    if (!v || vlen < 0) return rn_errf(errmsg, RN_EINVAL, "value is null");
    if (def->format == SF_CSV)
        return scan_csv(def, need, (const char *)v, (size_t)vlen, out, arena, errmsg);
    return scan_json(def, need, (const char *)v, (size_t)vlen, out, arena, errmsg);
}

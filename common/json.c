/*
 * json.c — the small JSON pieces runnel shares: pulling one top-level member
 * out of a record (produce --key-field / --timestamp-field), and writing
 * bytes as a JSON string (consume --format json, query output).
 *
 * Invariants:
 *  1. Reading never goes outside line[0..len) and never recurses: nested
 *     values are walked with an explicit stack of RN_JSON_MAX_DEPTH bits, so
 *     any input is safe.
 *  2. rn_json_field validates the whole line as one JSON object (RFC 8259,
 *     nesting up to RN_JSON_MAX_DEPTH, nothing but whitespace after it)
 *     before it answers, so a line that is not JSON is refused even when the
 *     wanted member came before the damage.
 *  3. rn_json_write_string always emits valid JSON and valid UTF-8: valid
 *     UTF-8 sequences pass through, '"' '\\' and C0 controls are escaped, and
 *     every byte that is not part of a valid sequence becomes \u00XX (its
 *     Latin-1 reading). That is lossless only for input that is valid UTF-8
 *     (rn_json_utf8_valid): for other input "\u00e9" could mean the byte 0xE9
 *     alone or the character é. A writer that must round-trip arbitrary bytes
 *     checks rn_json_utf8_valid first and writes the rest with
 *     rn_json_write_base64 under a distinct member name (consume --format
 *     json: "value_b64").
 *  4. Valid UTF-8 means RFC 3629: no overlong forms, no surrogates
 *     (U+D800..DFFF), nothing above U+10FFFF, no truncated sequence; the same
 *     test rn_json_write_string applies byte by byte.
 */
#include "common/json.h"

#include "common/error.h"

#include <errno.h>

#include <string.h>

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    return p;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int hex4(const char *p, const char *end, uint32_t *v)
{
    if (end - p < 4) return -1;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return -1;
        x = x << 4 | (uint32_t)h;
    }
    *v = x;
    return 0;
}

static int put_utf8(rn_buf_t *out, uint32_t cp)
{
    uint8_t b[4];
    size_t n;
    if (cp < 0x80) { b[0] = (uint8_t)cp; n = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | cp >> 18); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (uint8_t)(0x80 | (cp & 0x3F)); n = 4;
    }
    return rn_buf_append(out, b, n, 0);
}

/* p points after the opening quote. Returns the position after the closing
 * quote, or NULL when malformed. With out != NULL the decoded bytes are
 * appended; *escaped tells whether the raw text held a backslash. */
static const char *scan_string(const char *p, const char *end, rn_buf_t *out, int *escaped)
{
    if (escaped) *escaped = 0;
    while (p < end) {
        const char *run = p;
        while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) p++;
        if (out && p > run && rn_buf_append(out, run, (size_t)(p - run), 0) != 0) return NULL;
        if (p >= end || (unsigned char)*p < 0x20) return NULL;   /* raw controls are not JSON */
        if (*p == '"') return p + 1;
        if (escaped) *escaped = 1;
        if (++p >= end) return NULL;
        char c = *p++;
        uint32_t cp;
        switch (c) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (hex4(p, end, &cp) != 0) return NULL;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return NULL;
            }
            break;
        default:
            return NULL;
        }
        if (out && put_utf8(out, cp) != 0) return NULL;
    }
    return NULL;
}

/* A JSON number per RFC 8259; returns the end or NULL. */
static const char *scan_number(const char *p, const char *end)
{
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') { while (p < end && *p >= '0' && *p <= '9') p++; }
    else return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    return p;
}

/* A scalar (string, number, true, false, null) at p; its end or NULL. */
static const char *skip_scalar(const char *p, const char *end)
{
    if (p >= end) return NULL;
    if (*p == '"') return scan_string(p + 1, end, NULL, NULL);
    if (*p == '-' || (*p >= '0' && *p <= '9')) return scan_number(p, end);
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(end - p) >= n && memcmp(p, lits[i], n) == 0) return p + n;
    }
    return NULL;
}

/* `"key" :` inside an object, then whitespace; the value's start or NULL. */
static const char *skip_key(const char *p, const char *end)
{
    if (p >= end || *p != '"' || !(p = scan_string(p + 1, end, NULL, NULL))) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return NULL;
    return skip_ws(p + 1, end);
}

/* Skip one value of any type, validating all of it; NULL when malformed or
 * nested deeper than RN_JSON_MAX_DEPTH, with *bad where it went wrong.
 * Iterative (invariant 1): one bit per open container says object or array. */
static const char *skip_value(const char *p, const char *end, const char **bad)
{
    const char *q;
#define FAIL_AT(x) do { *bad = (x); return NULL; } while (0)
    uint8_t obj[RN_JSON_MAX_DEPTH / 8] = {0};
    size_t depth = 0;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end) FAIL_AT(p);
        if (*p == '{' || *p == '[') {                  /* open a container */
            if (depth == RN_JSON_MAX_DEPTH) FAIL_AT(p);
            int is_obj = *p == '{';
            obj[depth / 8] = (uint8_t)((obj[depth / 8] & ~(1u << depth % 8)) |
                                       (unsigned)is_obj << depth % 8);
            depth++;
            p = skip_ws(p + 1, end);
            if (p < end && *p == (is_obj ? '}' : ']')) {
                p++;
                depth--;
            } else {
                if (is_obj && !(q = skip_key(p, end))) FAIL_AT(p);
                if (is_obj) p = q;
                continue;                               /* its first value */
            }
        } else if (!(q = skip_scalar(p, end))) {
            FAIL_AT(p);
        } else {
            p = q;
        }
        for (;;) {                                      /* after a value */
            if (depth == 0) return p;
            int is_obj = obj[(depth - 1) / 8] >> (depth - 1) % 8 & 1;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                if (is_obj && !(q = skip_key(p, end))) FAIL_AT(p);
                if (is_obj) p = q;
                break;                                  /* the next value */
            }
            if (p >= end || *p != (is_obj ? '}' : ']')) FAIL_AT(p);
            p++;
            depth--;
        }
    }
#undef FAIL_AT
}

int rn_json_field(const char *line, size_t len, const char *field, rn_buf_t *out,
                  int *is_number, char *errmsg)
{
    const char *p = line, *end = line + len, *val = NULL;
    size_t flen = strlen(field);
    out->len = 0;
    *is_number = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return rn_errf(errmsg, RN_EINVAL, "not a JSON object");
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"') goto malformed;
            const char *kstart = p + 1;
            int escaped;
            const char *kend = scan_string(kstart, end, NULL, &escaped);
            if (!kend) goto malformed;
            int match;
            if (!escaped) {
                match = (size_t)(kend - 1 - kstart) == flen && memcmp(kstart, field, flen) == 0;
            } else {
                if (!scan_string(kstart, end, out, NULL)) goto malformed;
                match = out->len == flen && memcmp(out->data, field, flen) == 0;
                out->len = 0;
            }
            p = skip_ws(kend, end);
            if (p >= end || *p != ':') goto malformed;
            p = skip_ws(p + 1, end);
            if (match && !val) val = p;                 /* the first of duplicates */
            const char *next = skip_value(p, end, &p);
            if (!next) goto malformed;
            p = next;
            p = skip_ws(p, end);
            if (p < end && *p == ',') { p = skip_ws(p + 1, end); continue; }
            if (p < end && *p == '}') { p++; break; }
            goto malformed;
        }
    }
    p = skip_ws(p, end);
    if (p < end)
        return rn_errf(errmsg, RN_EINVAL, "text after the JSON object at byte %zu",
                       (size_t)(p - line) + 1);
    if (!val) return rn_errf(errmsg, RN_ENOTFOUND, "no field '%s'", field);
    if (*val == '"') {
        if (!scan_string(val + 1, end, out, NULL)) return rn_errf(errmsg, -ENOMEM, "out of memory");
        return 0;
    }
    const char *nend = scan_number(val, end);
    if (!nend) return rn_errf(errmsg, RN_EINVAL, "field '%s' is not a string or a number", field);
    if (rn_buf_append(out, val, (size_t)(nend - val), 0) != 0)
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    *is_number = 1;
    return 0;
malformed:
    out->len = 0;
    if (p >= end) return rn_errf(errmsg, RN_EINVAL, "malformed JSON: the object is not closed");
    return rn_errf(errmsg, RN_EINVAL, "malformed JSON at byte %zu", (size_t)(p - line) + 1);
}

/* Length of the valid UTF-8 sequence starting at p (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;     /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;        /* no overlongs */
        if (c == 0xED) hi = 0x9F;        /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;        /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return len;
}

int rn_json_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) { i++; continue; }
        size_t l = utf8_seq(p + i, n - i);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

void rn_json_write_base64(FILE *out, const uint8_t *p, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    putc_unlocked('"', out);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
        fwrite_unlocked(q, 1, 4, out);
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63],
                     i + 1 < n ? b64[(v >> 6) & 63] : '=', '='};
        fwrite_unlocked(q, 1, 4, out);
    }
    putc_unlocked('"', out);
}

void rn_json_write_string(FILE *out, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    putc_unlocked('"', out);
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') i++;
        if (i > run) fwrite_unlocked(p + run, 1, i - run, out);
        if (i >= n) break;
        uint8_t c = p[i];
        if (c >= 0x80) {
            size_t l = utf8_seq(p + i, n - i);
            if (l) { fwrite_unlocked(p + i, 1, l, out); i += l; continue; }
        }
        char esc[6];
        size_t el = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\t': esc[1] = 't'; break;
        case '\r': esc[1] = 'r'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
            esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
            el = 6;
        }
        fwrite_unlocked(esc, 1, el, out);
        i++;
    }
    putc_unlocked('"', out);
}

/*
 * fuzz_json_roundtrip.c — libFuzzer round-trip target for common/json.h's
 * writers, used the way `runnel consume --format json` uses them: the input
 * bytes become the member "v" of an object, as a JSON string
 * (rn_json_write_string) when rn_json_utf8_valid says they are UTF-8, else
 * as base64 (rn_json_write_base64). Then:
 *  1. rn_json_utf8_valid agrees with an independent decoder written here
 *     (code points by RFC 3629: no overlong forms, surrogates, values above
 *     U+10FFFF or truncated sequences);
 *  2. the object is one valid JSON object (rn_json_field accepts it) and its
 *     text is valid UTF-8;
 *  3. string form: rn_json_field unescapes "v" back to exactly the input;
 *  4. base64 form: the text is 4 * ceil(n / 3) characters of the standard
 *     alphabet with canonical '=' padding, and decodes to exactly the input.
 * Any violation calls abort().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariant 1's oracle: decode code point by code point. */
static int utf8_oracle(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], cp, min;
        size_t len;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Invariant 4: t[0..tn) is canonical base64 of exactly p[0..n). */
static int b64_matches(const char *t, size_t tn, const uint8_t *p, size_t n)
{
    if (tn != (n + 2) / 3 * 4) return 0;
    size_t o = 0;
    for (size_t i = 0; i < tn; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (t[i + k] == '=' && i + 4 == tn && k >= 2) { v[k] = 0; pad++; continue; }
            if (pad) return 0;                           /* data after '=' */
            if ((v[k] = b64val(t[i + k])) < 0) return 0;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        uint8_t out[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
        int got = 3 - pad;
        if ((pad >= 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFF00))) return 0;   /* canonical */
        for (int k = 0; k < got; k++, o++)
            if (o >= n || out[k] != p[o]) return 0;
    }
    return o == n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int text = rn_json_utf8_valid(data, size);
    if (text != utf8_oracle(data, size)) abort();                          /* 1 */
    char *obj = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&obj, &len);
    if (!f) return 0;
    fputs("{\"v\":", f);
    if (text) rn_json_write_string(f, data, size);
    else rn_json_write_base64(f, data, size);
    fputs("}", f);
    if (fclose(f) != 0) { free(obj); return 0; }
    if (!utf8_oracle((const uint8_t *)obj, len)) abort();                  /* 2 */
    rn_buf_t out = RN_BUF_INIT;
    char err[RN_ERRMSG_SIZE];
    int num = 0;
    if (rn_json_field(obj, len, "v", &out, &num, err) != 0 || num) abort(); /* 2 */
    if (text) {
        if (out.len != size || (size && memcmp(out.data, data, size) != 0)) abort();   /* 3 */
    } else if (!b64_matches((const char *)out.data, out.len, data, size)) {
        abort();                                                           /* 4 */
    }
    rn_buf_free(&out);
    free(obj);
    return 0;
}

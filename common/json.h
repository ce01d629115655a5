/*
 * json.h — the small JSON pieces runnel shares (no general parser: stream SQL
 * leaves JSON to sqlite3's JSON functions).
 */
#ifndef RN_JSON_H
#define RN_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/buf.h"

#define RN_JSON_MAX_DEPTH 512    /* nesting rn_json_field accepts */

/* The value of top-level member `field` of the JSON object in line[0..len).
 * A string is unescaped into out (UTF-8); a number is copied as written,
 * *is_number = 1. RN_ENOTFOUND when the member is absent, RN_EINVAL when the
 * line is not a JSON object or the member is neither string nor number
 * (errmsg says which). The whole line must be one valid JSON object (nesting
 * up to RN_JSON_MAX_DEPTH); the first of duplicate members counts. out is
 * reset first. */
int rn_json_field(const char *line, size_t len, const char *field, rn_buf_t *out,
                  int *is_number, char *errmsg);

/* Write bytes as a JSON string: '"', '\\' and control characters escaped;
 * valid UTF-8 sequences copied; each byte that is not part of a valid UTF-8
 * sequence written as \u00XX (its Latin-1 reading), so output is always
 * valid UTF-8 JSON. Lossless only when rn_json_utf8_valid(p, n): otherwise
 * the byte 0xFF and the character U+00FF give the same text. */
void rn_json_write_string(FILE *out, const uint8_t *p, size_t n);

/* 1 when p[0..n) is valid UTF-8 (RFC 3629: no overlong forms, surrogates,
 * code points above U+10FFFF or truncated sequences), else 0. */
int  rn_json_utf8_valid(const uint8_t *p, size_t n);

/* Write bytes as a JSON string holding their base64 (RFC 4648, standard
 * alphabet, '=' padding): lossless for any bytes. */
void rn_json_write_base64(FILE *out, const uint8_t *p, size_t n);

#endif

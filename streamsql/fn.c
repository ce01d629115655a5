/*
 * fn.c — the scalar functions streamsql adds to sqlite's, registered on
 * every connection the engine opens (rn_fn_register: embedded queries,
 * `streamsql --server` queries and pipelines all open theirs in sql.c), and
 * the time parser shared with CREATE STREAM's timestamp_format and
 * `runnel produce --timestamp-field` (rn_sql_parse_time).
 *
 *   regular expressions (PCRE2):  x REGEXP p, regexp_like(s, p),
 *                                 regexp_extract(s, p [, group]),
 *                                 regexp_replace(s, p, r)
 *   strings:                      split_part(s, delim, n), split_index(s, delim, i)
 *   time (ms since the epoch, UTC): date_format(ts, fmt), hour(ts), minute(ts),
 *                                 day(ts), to_timestamp(s [, fmt]),
 *                                 from_unixtime(secs [, fmt]), proctime()
 *
 * Invariants:
 *  1. A NULL argument gives NULL (proctime() takes none). A wrong type
 *     (text where a time in ms is expected, a number where a pattern is)
 *     or a bad value is an error naming the function, the argument and
 *     what is valid; in a per-batch statement that rejects the record
 *     (sql.c invariant 7), never the query.
 *  2. A pattern is compiled once per statement when it is a constant
 *     (sqlite3_get_auxdata keeps it), else once per call. A pattern that
 *     does not compile is an error quoting the pattern, PCRE2's message
 *     and the offset in the pattern; constant patterns are compiled while
 *     the statement is opened (rn_fn_check_pattern), so a bad one fails
 *     the query at once instead of every record.
 *  3. Matching is bounded: PCRE2's match, depth and heap limits stop a
 *     pattern that backtracks catastrophically with an error saying so.
 *     Subjects are UTF-8; invalid UTF-8 never fails (PCRE2_MATCH_INVALID_UTF).
 *  4. Times are UTC unless the text says otherwise (a Z or +hh:mm offset in
 *     to_timestamp's input, %z in its format); nothing reads the local zone.
 *  5. proctime() is the wall clock at evaluation (rn_sys.now_ms, the clock
 *     that also closes processing-time windows in sql.c): the only function
 *     here whose result depends on when a record is processed (not
 *     replayable); it is registered non-deterministic so sqlite never folds
 *     it.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "streamsql/sql_int.h"

#include "common/error.h"
#include "common/sys.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FN_MATCH_LIMIT  1000000u   /* backtracking steps of one match */
#define FN_DEPTH_LIMIT  10000u     /* nested backtracking frames */
#define FN_HEAP_LIMIT   20000u     /* KiB of heap for one match */
#define FN_MAX_OUT      (1u << 20) /* bytes of a regexp_replace / date_format result */

/* ---- regular expressions ---------------------------------------------------- */

typedef struct rx {
    pcre2_code          *code;
    pcre2_match_data    *md;
    pcre2_match_context *mc;
} rx_t;

static void rx_free(void *p)
{
    rx_t *r = p;
    if (!r) return;
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mc);
    pcre2_code_free(r->code);
    free(r);
}

/* Compile pattern [p, p + n); NULL with a message in errmsg on failure. */
static rx_t *rx_compile(const char *p, size_t n, char *errmsg)
{
    int ec;
    PCRE2_SIZE eo;
    rx_t *r = calloc(1, sizeof *r);
    if (!r) {
        rn_errf(errmsg, -ENOMEM, "out of memory");
        return NULL;
    }
    r->code = pcre2_compile((PCRE2_SPTR)p, n, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                            &ec, &eo, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        rn_errf(errmsg, RN_EINVAL, "bad regular expression '%.*s': %s at offset %zu",
                (int)(n > 200 ? 200 : n), p, (const char *)msg, (size_t)eo);
        rx_free(r);
        return NULL;
    }
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    r->mc = pcre2_match_context_create(NULL);
    if (!r->md || !r->mc) {
        rn_errf(errmsg, -ENOMEM, "out of memory");
        rx_free(r);
        return NULL;
    }
    pcre2_set_match_limit(r->mc, FN_MATCH_LIMIT);
    pcre2_set_depth_limit(r->mc, FN_DEPTH_LIMIT);
    pcre2_set_heap_limit(r->mc, FN_HEAP_LIMIT);
    return r;
}

int rn_fn_check_pattern(const char *p, size_t n, char *errmsg)
{
    rx_t *r = rx_compile(p, n, errmsg);
    if (!r) return RN_EINVAL;
    rx_free(r);
    return 0;
}

/* The compiled pattern of argument i: kept by sqlite while the argument is
 * a constant (auxdata), else compiled for this call (*own: free it after).
 * NULL when the result is set: NULL for a NULL pattern (*null = 1), or the
 * error. */
static rx_t *rx_arg(sqlite3_context *ctx, sqlite3_value **argv, int i, const char *fn, int *null,
                    int *own)
{
    *null = 0;
    *own = 0;
    rx_t *r = sqlite3_get_auxdata(ctx, i);
    if (r) return r;
    if (sqlite3_value_type(argv[i]) == SQLITE_NULL) { *null = 1; return NULL; }
    if (sqlite3_value_type(argv[i]) != SQLITE_TEXT) {
        char m[160];
        snprintf(m, sizeof m, "%s(): the pattern must be text, not %s", fn,
                 sqlite3_value_type(argv[i]) == SQLITE_BLOB ? "a blob" : "a number");
        sqlite3_result_error(ctx, m, -1);
        return NULL;
    }
    const char *p = (const char *)sqlite3_value_text(argv[i]);
    size_t n = (size_t)sqlite3_value_bytes(argv[i]);
    char err[RN_ERRMSG_SIZE] = "";
    if (!(r = rx_compile(p, n, err))) {
        char m[RN_ERRMSG_SIZE + 32];
        snprintf(m, sizeof m, "%s(): %s", fn, err);
        sqlite3_result_error(ctx, m, -1);
        return NULL;
    }
    /* sqlite keeps it, or frees it at once (then: a private copy) */
    sqlite3_set_auxdata(ctx, i, r, rx_free);
    if ((r = sqlite3_get_auxdata(ctx, i)) != NULL) return r;
    if (!(r = rx_compile(p, n, err))) {
        sqlite3_result_error_nomem(ctx);
        return NULL;
    }
    *own = 1;
    return r;
}

/* A subject argument as text; NULL for SQL NULL. Numbers are read as their
 * text, as sqlite's own string functions do. */
static const char *subject(sqlite3_value *v, size_t *n)
{
    if (sqlite3_value_type(v) == SQLITE_NULL) return NULL;
    const char *s = (const char *)sqlite3_value_text(v);
    *n = (size_t)sqlite3_value_bytes(v);
    return s ? s : "";
}

/* Run r over s: >0 matched, 0 no match, <0 error set on ctx. */
static int rx_match(sqlite3_context *ctx, rx_t *r, const char *s, size_t n, size_t start,
                    const char *fn)
{
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, start, 0, r->md, r->mc);
    if (rc >= 0) return 1;     /* 0: ovector too small, cannot happen (sized from pattern) */
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    char m[256];
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
        rc == PCRE2_ERROR_HEAPLIMIT)
        snprintf(m, sizeof m, "%s(): the pattern needs too much work on this value (PCRE2 %s "
                 "limit reached: catastrophic backtracking?); simplify the pattern, e.g. avoid "
                 "nested quantifiers like (a+)+", fn,
                 rc == PCRE2_ERROR_MATCHLIMIT ? "match" : rc == PCRE2_ERROR_DEPTHLIMIT ? "depth"
                                                                                      : "heap");
    else {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        snprintf(m, sizeof m, "%s(): %s", fn, (const char *)msg);
    }
    sqlite3_result_error(ctx, m, -1);
    return -1;
}

/* Shared prologue: the subject (argument si) and the compiled pattern
 * (argument pi). Returns the pattern to use (*own: free it after), or NULL
 * when the result was set (NULL or an error). */
static rx_t *rx_begin(sqlite3_context *ctx, sqlite3_value **argv, int si, int pi, const char *fn,
                      const char **s, size_t *n, int *own)
{
    int null;
    *s = subject(argv[si], n);
    rx_t *r = rx_arg(ctx, argv, pi, fn, &null, own);
    if (!r) {
        if (null) sqlite3_result_null(ctx);
        return NULL;
    }
    if (!*s) {
        if (*own) rx_free(r);
        *own = 0;
        sqlite3_result_null(ctx);
        return NULL;
    }
    return r;
}

static void fn_regexp_like(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    /* REGEXP operator: regexp(pattern, subject); regexp_like(subject, pattern) */
    int op = sqlite3_user_data(ctx) != NULL;
    const char *s;
    size_t n;
    int own;
    rx_t *r = rx_begin(ctx, argv, op ? 1 : 0, op ? 0 : 1, op ? "REGEXP" : "regexp_like", &s, &n,
                       &own);
    if (!r) return;
    int m = rx_match(ctx, r, s, n, 0, op ? "REGEXP" : "regexp_like");
    if (m >= 0) sqlite3_result_int(ctx, m);
    if (own) rx_free(r);
    (void)argc;
}

static void fn_regexp_extract(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    int64_t group = 0;
    if (argc == 3) {
        if (sqlite3_value_type(argv[2]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
        if (sqlite3_value_type(argv[2]) != SQLITE_INTEGER || sqlite3_value_int64(argv[2]) < 0) {
            sqlite3_result_error(ctx, "regexp_extract(): the group must be a whole number >= 0 "
                                 "(0: the whole match)", -1);
            return;
        }
        group = sqlite3_value_int64(argv[2]);
    }
    const char *s;
    size_t n;
    int own;
    rx_t *r = rx_begin(ctx, argv, 0, 1, "regexp_extract", &s, &n, &own);
    if (!r) return;
    uint32_t ngroups = 0;
    pcre2_pattern_info(r->code, PCRE2_INFO_CAPTURECOUNT, &ngroups);
    if (group > (int64_t)ngroups) {
        char m[160];
        snprintf(m, sizeof m, "regexp_extract(): group %lld, but the pattern has %u group(s)",
                 (long long)group, ngroups);
        sqlite3_result_error(ctx, m, -1);
    } else {
        int mt = rx_match(ctx, r, s, n, 0, "regexp_extract");
        if (mt > 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
            if (ov[2 * group] == PCRE2_UNSET) sqlite3_result_null(ctx);
            else sqlite3_result_text(ctx, s + ov[2 * group], (int)(ov[2 * group + 1] - ov[2 * group]),
                                     SQLITE_TRANSIENT);
        } else if (mt == 0) {
            sqlite3_result_null(ctx);
        }
    }
    if (own) rx_free(r);
}

static void fn_regexp_replace(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *s;
    size_t n;
    int own;
    if (sqlite3_value_type(argv[2]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
    rx_t *r = rx_begin(ctx, argv, 0, 1, "regexp_replace", &s, &n, &own);
    if (!r) return;
    const char *rep = (const char *)sqlite3_value_text(argv[2]);
    size_t rn = (size_t)sqlite3_value_bytes(argv[2]);
    size_t cap = n + n / 2 + 64;
    char *out = NULL;
    for (;;) {
        if (cap > FN_MAX_OUT) cap = FN_MAX_OUT;
        char *o = realloc(out, cap);
        if (!o) { sqlite3_result_error_nomem(ctx); break; }
        out = o;
        PCRE2_SIZE olen = cap;
        int rc = pcre2_substitute(r->code, (PCRE2_SPTR)s, n, 0,
                                  PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  r->md, r->mc, (PCRE2_SPTR)(rep ? rep : ""), rn,
                                  (PCRE2_UCHAR *)out, &olen);
        if (rc >= 0) {
            sqlite3_result_text(ctx, out, (int)olen, SQLITE_TRANSIENT);
            break;
        }
        if (rc == PCRE2_ERROR_NOMEMORY && olen > cap && cap < FN_MAX_OUT) {
            cap = olen;
            continue;
        }
        char m[300];
        if (rc == PCRE2_ERROR_NOMEMORY)
            snprintf(m, sizeof m, "regexp_replace(): the result would exceed %u bytes",
                     FN_MAX_OUT);
        else if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                 rc == PCRE2_ERROR_HEAPLIMIT)
            snprintf(m, sizeof m, "regexp_replace(): the pattern needs too much work on this "
                     "value (PCRE2 limit reached: catastrophic backtracking?); simplify the "
                     "pattern");
        else {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            snprintf(m, sizeof m, "regexp_replace(): %s (replacement '%.60s'; $1 or ${1} "
                     "names a group, $$ is a dollar)", (const char *)msg, rep ? rep : "");
        }
        sqlite3_result_error(ctx, m, -1);
        break;
    }
    free(out);
    if (own) rx_free(r);
}

/* ---- strings ------------------------------------------------------------------ */

/* Field i (0-based; negative counts from the end, -1 the last) of s split
 * at delim: 1 with [*b, *e), 0 when there is no such field. */
static int split_field(const char *s, size_t n, const char *d, size_t dn, int64_t i,
                       size_t *b, size_t *e)
{
    size_t count = 1;
    if (dn) {
        for (size_t p = 0; p + dn <= n;) {
            if (memcmp(s + p, d, dn) == 0) { count++; p += dn; }
            else p++;
        }
    }
    if (i < 0) i += (int64_t)count;
    if (i < 0 || (uint64_t)i >= count) return 0;
    size_t start = 0, k = 0;
    for (size_t p = 0; dn && p + dn <= n;) {
        if (memcmp(s + p, d, dn) == 0) {
            if ((int64_t)k == i) { *b = start; *e = p; return 1; }
            k++;
            p += dn;
            start = p;
        } else {
            p++;
        }
    }
    *b = start;
    *e = n;
    return 1;
}

static int int_arg(sqlite3_context *ctx, sqlite3_value *v, const char *fn, const char *what,
                   int64_t *out)
{
    int t = sqlite3_value_numeric_type(v);
    if (t == SQLITE_INTEGER) { *out = sqlite3_value_int64(v); return 0; }
    char m[200];
    snprintf(m, sizeof m, "%s(): %s must be a whole number, not %s", fn, what,
             t == SQLITE_FLOAT ? "a real" : t == SQLITE_TEXT ? "text" : "a blob");
    sqlite3_result_error(ctx, m, -1);
    return -1;
}

/* split_part(s, delim, n): PostgreSQL's; n counts from 1, negative from the
 * end; '' past the last field; n = 0 is an error. split_index(s, delim, i):
 * Flink's; i counts from 0; NULL past the last field. */
static void fn_split(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    int pg = sqlite3_user_data(ctx) != NULL;
    const char *fn = pg ? "split_part" : "split_index";
    for (int k = 0; k < 3; k++)
        if (sqlite3_value_type(argv[k]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
    int64_t i;
    if (int_arg(ctx, argv[2], fn, pg ? "the field number" : "the index", &i) != 0) return;
    if (pg && i == 0) {
        sqlite3_result_error(ctx, "split_part(): field numbers start at 1 (negative: from the "
                             "end)", -1);
        return;
    }
    if (!pg && i < 0) {
        sqlite3_result_error(ctx, "split_index(): the index must be >= 0", -1);
        return;
    }
    size_t n = 0, dn = 0, b, e;
    const char *s = subject(argv[0], &n), *d = subject(argv[1], &dn);
    if (split_field(s, n, d, dn, pg && i > 0 ? i - 1 : i, &b, &e))
        sqlite3_result_text(ctx, s + b, (int)(e - b), SQLITE_TRANSIENT);
    else if (pg)
        sqlite3_result_text(ctx, "", 0, SQLITE_STATIC);
    else
        sqlite3_result_null(ctx);
    (void)argc;
}

/* ---- time ---------------------------------------------------------------------- */

static int64_t floor_div64(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div64(y, 400);
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 ? 28 + leap : dm[m - 1];
}

static int digits(const char *s, size_t n, size_t *p, int count, int *out)
{
    int v = 0;
    for (int k = 0; k < count; k++) {
        if (*p >= n || !isdigit((unsigned char)s[*p])) return -1;
        v = v * 10 + (s[(*p)++] - '0');
    }
    *out = v;
    return 0;
}

/* ISO-8601 / RFC 3339: YYYY-MM-DD[(T|t| )hh:mm[:ss[(.|,)fraction]][Z|±hh[:mm]|±hhmm]]. */
static int parse_iso(const char *s, size_t n, int64_t *ms, char *why)
{
    size_t p = 0;
    int y, mo, d, h = 0, mi = 0, se = 0, frac_ms = 0;
    int64_t off_min = 0;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    while (p < n && isspace((unsigned char)s[p])) p++;
    if (digits(s, n, &p, 4, &y) || p >= n || s[p++] != '-' || digits(s, n, &p, 2, &mo) ||
        p >= n || s[p++] != '-' || digits(s, n, &p, 2, &d))
        return rn_errf(why, RN_EINVAL, "expected a date YYYY-MM-DD");
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return rn_errf(why, RN_EINVAL, "no such date %04d-%02d-%02d", y, mo, d);
    if (p < n && (s[p] == 'T' || s[p] == 't' || s[p] == ' ')) {
        p++;
        if (digits(s, n, &p, 2, &h) || p >= n || s[p++] != ':' || digits(s, n, &p, 2, &mi))
            return rn_errf(why, RN_EINVAL, "expected a time hh:mm[:ss] after the date");
        if (p < n && s[p] == ':') {
            p++;
            if (digits(s, n, &p, 2, &se))
                return rn_errf(why, RN_EINVAL, "expected seconds ss after hh:mm:");
            if (p < n && (s[p] == '.' || s[p] == ',')) {
                p++;
                int nd = 0, scale = 100;
                while (p < n && isdigit((unsigned char)s[p])) {
                    if (nd < 3) { frac_ms += (s[p] - '0') * scale; scale /= 10; }
                    nd++;
                    p++;
                }
                if (nd == 0 || nd > 9)
                    return rn_errf(why, RN_EINVAL, "fractional seconds take 1 to 9 digits");
            }
        }
        if (h > 23 || mi > 59 || se > 59)
            return rn_errf(why, RN_EINVAL, "no such time %02d:%02d:%02d", h, mi, se);
        if (p < n && (s[p] == 'Z' || s[p] == 'z')) {
            p++;
        } else if (p < n && (s[p] == '+' || s[p] == '-')) {
            int sign = s[p++] == '-' ? -1 : 1, oh, om = 0;
            if (digits(s, n, &p, 2, &oh))
                return rn_errf(why, RN_EINVAL, "expected a zone offset +hh:mm");
            if (p < n && s[p] == ':') p++;
            if (p < n && digits(s, n, &p, 2, &om))
                return rn_errf(why, RN_EINVAL, "expected a zone offset +hh:mm");
            if (oh > 23 || om > 59)
                return rn_errf(why, RN_EINVAL, "zone offset out of range");
            off_min = sign * (oh * 60 + om);
        }
    }
    if (p != n)
        return rn_errf(why, RN_EINVAL, "unexpected '%.10s' at offset %zu", s + p, p);
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off_min * 60;
    *ms = secs * 1000 + frac_ms;
    return 0;
}

/* strptime-style: UTC unless the format has %z; %f reads fractional seconds
 * (1 to 9 digits, kept to the ms). */
static int parse_fmt(const char *s, size_t n, const char *fmt, int64_t *ms, char *why)
{
    char buf[256], fbuf[256];
    if (n >= sizeof buf) return rn_errf(why, RN_EINVAL, "longer than %zu bytes", sizeof buf - 1);
    if (memchr(s, 0, n)) return rn_errf(why, RN_EINVAL, "a NUL byte in the time");
    memcpy(buf, s, n);
    buf[n] = '\0';
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_mday = 1;
    tm.tm_year = 70;
    int frac_ms = 0;
    const char *in = buf, *f = fmt;
    while (*f) {
        /* the next segment of fmt up to a %f */
        const char *cut = f;
        while (*cut && !(cut[0] == '%' && cut[1] == 'f')) cut += cut[0] == '%' && cut[1] ? 2 : 1;
        size_t sl = (size_t)(cut - f);
        if (sl >= sizeof fbuf) return rn_errf(why, RN_EINVAL, "format too long");
        memcpy(fbuf, f, sl);
        fbuf[sl] = '\0';
        if (sl) {
            in = strptime(in, fbuf, &tm);
            if (!in) return rn_errf(why, RN_EINVAL, "does not match the format '%s'", fmt);
        }
        f = cut;
        if (*f) {       /* %f */
            int nd = 0, scale = 100;
            while (isdigit((unsigned char)*in)) {
                if (nd < 3) { frac_ms += (*in - '0') * scale; scale /= 10; }
                nd++;
                in++;
            }
            if (nd == 0 || nd > 9)
                return rn_errf(why, RN_EINVAL, "%%f takes 1 to 9 digits of fractional seconds");
            f += 2;
        }
    }
    while (isspace((unsigned char)*in)) in++;
    if (*in)
        return rn_errf(why, RN_EINVAL, "unexpected '%.10s' after the format '%s'", in, fmt);
    int64_t secs = days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 +
                   tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec - tm.tm_gmtoff;
    *ms = secs * 1000 + frac_ms;
    return 0;
}

int rn_sql_parse_time(const char *s, size_t n, const char *fmt, int64_t *ms, char *why)
{
    if (!fmt || !fmt[0] || strcasecmp(fmt, "iso8601") == 0 || strcasecmp(fmt, "rfc3339") == 0)
        return parse_iso(s, n, ms, why);
    return parse_fmt(s, n, fmt, ms, why);
}

int rn_sql_check_time_format(const char *fmt, char *why)
{
    if (!fmt[0] || strcasecmp(fmt, "iso8601") == 0 || strcasecmp(fmt, "rfc3339") == 0) return 0;
    if (!strchr(fmt, '%'))
        return rn_errf(why, RN_EINVAL, "timestamp_format '%s' is neither 'iso8601' nor a "
                       "strftime-style pattern (e.g. '%%Y-%%m-%%d %%H:%%M:%%S')", fmt);
    if (strlen(fmt) > 128) return rn_errf(why, RN_EINVAL, "timestamp_format too long");
    return 0;
}

/* A time argument in ms since the epoch: INTEGER (or an integral REAL). */
static int ms_arg(sqlite3_context *ctx, sqlite3_value *v, const char *fn, int64_t *ms)
{
    int t = sqlite3_value_type(v);
    if (t == SQLITE_INTEGER) { *ms = sqlite3_value_int64(v); return 0; }
    if (t == SQLITE_FLOAT) {
        double d = sqlite3_value_double(v);
        if (isfinite(d) && fabs(d) < 9.0e15) { *ms = (int64_t)floor(d); return 0; }
    }
    char m[240];
    if (t == SQLITE_TEXT)
        snprintf(m, sizeof m, "%s(): '%.40s' is text; it takes a time in ms since the epoch "
                 "(INTEGER); convert text with to_timestamp(s)", fn,
                 (const char *)sqlite3_value_text(v));
    else
        snprintf(m, sizeof m, "%s(): it takes a time in ms since the epoch (INTEGER)", fn);
    sqlite3_result_error(ctx, m, -1);
    return -1;
}

static void fn_time_part(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    static const char *const names[] = {"hour", "minute", "day"};
    intptr_t which = (intptr_t)sqlite3_user_data(ctx);
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
    int64_t ms;
    if (ms_arg(ctx, argv[0], names[which], &ms) != 0) return;
    int64_t secs = floor_div64(ms, 1000);
    int64_t sod = secs - floor_div64(secs, 86400) * 86400;
    if (which == 0) sqlite3_result_int(ctx, (int)(sod / 3600));
    else if (which == 1) sqlite3_result_int(ctx, (int)(sod % 3600 / 60));
    else {
        time_t t = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm)) { sqlite3_result_error(ctx, "day(): time out of range", -1); return; }
        sqlite3_result_int(ctx, tm.tm_mday);
    }
    (void)argc;
}

/* Format ms (UTC) with a strftime pattern; %f is the milliseconds (3 digits). */
static void format_ms(sqlite3_context *ctx, int64_t ms, const char *fmt, const char *fn)
{
    char f2[512], out[1024];
    size_t o = 0;
    int frac = (int)(ms - floor_div64(ms, 1000) * 1000);
    for (const char *p = fmt; *p; p++) {
        if (o + 8 >= sizeof f2) {
            char m[120];
            snprintf(m, sizeof m, "%s(): format longer than %zu bytes", fn, sizeof f2 - 8);
            sqlite3_result_error(ctx, m, -1);
            return;
        }
        if (p[0] == '%' && p[1] == 'f') { o += (size_t)snprintf(f2 + o, 8, "%03d", frac); p++; }
        else if (p[0] == '%' && p[1]) { f2[o++] = *p++; f2[o++] = *p; }
        else f2[o++] = *p;
    }
    f2[o] = '\0';
    time_t t = (time_t)floor_div64(ms, 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        char m[120];
        snprintf(m, sizeof m, "%s(): time out of range", fn);
        sqlite3_result_error(ctx, m, -1);
        return;
    }
    size_t n = f2[0] ? strftime(out, sizeof out, f2, &tm) : 0;
    if (n == 0 && f2[0]) {
        char m[160];
        snprintf(m, sizeof m, "%s(): the formatted time would be empty or longer than %zu bytes",
                 fn, sizeof out - 1);
        sqlite3_result_error(ctx, m, -1);
        return;
    }
    sqlite3_result_text(ctx, out, (int)n, SQLITE_TRANSIENT);
}

static int fmt_arg(sqlite3_context *ctx, sqlite3_value *v, const char *fn, const char **fmt)
{
    if (sqlite3_value_type(v) != SQLITE_TEXT) {
        char m[160];
        snprintf(m, sizeof m, "%s(): the format must be text (strftime-style, e.g. "
                 "'%%Y-%%m-%%d %%H:%%M:%%S')", fn);
        sqlite3_result_error(ctx, m, -1);
        return -1;
    }
    *fmt = (const char *)sqlite3_value_text(v);
    return 0;
}

static void fn_date_format(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
        sqlite3_result_null(ctx);
        return;
    }
    int64_t ms;
    const char *fmt;
    if (ms_arg(ctx, argv[0], "date_format", &ms) != 0 ||
        fmt_arg(ctx, argv[1], "date_format", &fmt) != 0)
        return;
    format_ms(ctx, ms, fmt, "date_format");
    (void)argc;
}

static void fn_from_unixtime(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    for (int k = 0; k < argc; k++)
        if (sqlite3_value_type(argv[k]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
    int t = sqlite3_value_numeric_type(argv[0]);
    if (t != SQLITE_INTEGER && t != SQLITE_FLOAT) {
        sqlite3_result_error(ctx, "from_unixtime(): it takes seconds since the epoch (a number)",
                             -1);
        return;
    }
    double secs = sqlite3_value_double(argv[0]);
    if (!isfinite(secs) || fabs(secs) > 9.0e12) {
        sqlite3_result_error(ctx, "from_unixtime(): seconds out of range", -1);
        return;
    }
    const char *fmt = "%Y-%m-%d %H:%M:%S";
    if (argc == 2 && fmt_arg(ctx, argv[1], "from_unixtime", &fmt) != 0) return;
    int64_t ms = t == SQLITE_INTEGER ? sqlite3_value_int64(argv[0]) * 1000
                                     : (int64_t)floor(secs * 1000.0);
    format_ms(ctx, ms, fmt, "from_unixtime");
}

static void fn_to_timestamp(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    for (int k = 0; k < argc; k++)
        if (sqlite3_value_type(argv[k]) == SQLITE_NULL) { sqlite3_result_null(ctx); return; }
    if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) {
        sqlite3_result_error(ctx, "to_timestamp(): it takes text (ISO-8601, e.g. "
                             "'2024-05-01T12:00:00Z', or with a format)", -1);
        return;
    }
    const char *fmt = NULL;
    if (argc == 2 && fmt_arg(ctx, argv[1], "to_timestamp", &fmt) != 0) return;
    const char *s = (const char *)sqlite3_value_text(argv[0]);
    int64_t ms;
    char why[RN_ERRMSG_SIZE] = "";
    if (rn_sql_parse_time(s, (size_t)sqlite3_value_bytes(argv[0]), fmt, &ms, why) != 0) {
        char m[RN_ERRMSG_SIZE + 200];
        snprintf(m, sizeof m, "to_timestamp(): '%.60s' is not %s time: %s", s,
                 fmt ? "a formatted" : "an ISO-8601", why);
        sqlite3_result_error(ctx, m, -1);
        return;
    }
    sqlite3_result_int64(ctx, ms);
}

/* The wall clock through rn_sys (common/sys.h): the clock that also closes
 * processing-time windows (sql.c), so both agree, and tests can set it. */
static void fn_proctime(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sqlite3_result_int64(ctx, rn_sys.now_ms());
    (void)argc;
    (void)argv;
}

/* __rn_num(x, 'stddev'): x as a number (numeric text converted, as sqlite's
 * sum does), NULL as NULL; other text and blobs are an error naming the
 * aggregate. The front wraps the arguments of the statistical aggregates in
 * it, so a record with such a value is rejected rather than folded. */
static void fn_num(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    sqlite3_value *v = argv[0];
    int t = sqlite3_value_numeric_type(v);
    if (t == SQLITE_INTEGER || t == SQLITE_FLOAT || t == SQLITE_NULL) {
        sqlite3_result_value(ctx, v);
        return;
    }
    char m[200];
    if (t == SQLITE_TEXT)
        snprintf(m, sizeof m, "%s(): '%.40s' is not a number", sqlite3_value_text(argv[1]),
                 (const char *)sqlite3_value_text(v));
    else
        snprintf(m, sizeof m, "%s(): a blob is not a number", sqlite3_value_text(argv[1]));
    sqlite3_result_error(ctx, m, -1);
    (void)argc;
}

/* ---- registration ----------------------------------------------------------------- */

int rn_fn_register(sqlite3 *db, char *errmsg)
{
    static const int det = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    static const struct {
        const char *name;
        int         nargs;
        void (*fn)(sqlite3_context *, int, sqlite3_value **);
        intptr_t    data;
        int         flags;
    } fns[] = {
        {"regexp", 2, fn_regexp_like, 1, det},
        {"regexp_like", 2, fn_regexp_like, 0, det},
        {"regexp_extract", 2, fn_regexp_extract, 0, det},
        {"regexp_extract", 3, fn_regexp_extract, 0, det},
        {"regexp_replace", 3, fn_regexp_replace, 0, det},
        {"split_part", 3, fn_split, 1, det},
        {"split_index", 3, fn_split, 0, det},
        {"date_format", 2, fn_date_format, 0, det},
        {"hour", 1, fn_time_part, 0, det},
        {"minute", 1, fn_time_part, 1, det},
        {"day", 1, fn_time_part, 2, det},
        {"to_timestamp", 1, fn_to_timestamp, 0, det},
        {"to_timestamp", 2, fn_to_timestamp, 0, det},
        {"from_unixtime", 1, fn_from_unixtime, 0, det},
        {"from_unixtime", 2, fn_from_unixtime, 0, det},
        {"proctime", 0, fn_proctime, 0, SQLITE_UTF8},
        {"__rn_num", 2, fn_num, 0, det},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (sqlite3_create_function_v2(db, fns[i].name, fns[i].nargs, fns[i].flags,
                                       (void *)fns[i].data, fns[i].fn, NULL, NULL,
                                       NULL) != SQLITE_OK)
            return rn_errf(errmsg, RN_ESQLITE, "cannot register %s(): %s", fns[i].name,
                           sqlite3_errmsg(db));
    return 0;
}

/*
 * front.c — the streaming front of streamsql: a tokenizer that respects
 * quotes, comments and parentheses, the statements sqlite does not know
 * (CREATE/DROP STREAM, SHOW STREAMS, DESCRIBE), the streaming clauses of a
 * SELECT (GROUP BY TUMBLE/HOP/SESSION, EMIT, LIMIT, the trailing WITH), and
 * the rewrite of an aggregating SELECT into the two statements sqlite runs:
 *
 *   per batch:  SELECT <time>, (key1).., (arg1).. FROM <stream> WHERE <filter>
 *   emission:   SELECT <select list, aggregate calls -> __aN, keys -> __kN>
 *               FROM __emit WHERE <having, rewritten the same way>
 *
 * Invariants:
 *  1. No expression is evaluated here: expressions are copied as text into
 *     sqlite statements; only the time column, interval strings, LIMIT and
 *     WITH option values are interpreted.
 *  2. Every token records its byte offset, so every error points at one.
 *  3. Limits are checked before sqlite sees the text: statement length
 *     (RN_SQL_MAX_SQL_LEN) and parenthesis depth (RN_SQL_MAX_DEPTH).
 *  4. A plain SELECT's per-batch statement is a verbatim prefix of the
 *     statement (batch_base), so sqlite's error offsets map back exactly.
 *  5. Output column names of an aggregating query are the user's: an item
 *     without an alias gets AS "<its original text>", as sqlite names it.
 *  6. Nothing is accepted that sqlite would evaluate over one batch instead
 *     of the stream: a subquery reading a table (the stream itself, another
 *     stream or topic), a window function (OVER; the one exception, a Window
 *     TopN around the query, is taken off by topn.c before the rest of the
 *     front sees the statement), an sqlite aggregate other
 *     than the stream aggregates, rowid, EMIT CHANGES with HAVING (no
 *     retraction) are refused, each with what to write instead. SELECT
 *     DISTINCT is planned as a global grouping by the select items that
 *     emits each group once, when first seen.
 *     Subqueries over table-valued functions of the record (json_each) run
 *     per record and are allowed: in WHERE, a plain select list, aggregate
 *     arguments and GROUP BY keys.
 *  7. A GROUP BY key replaces a select-list or HAVING expression only where
 *     its tokens form a whole operand there (the neighbouring operators
 *     bind looser than the key's loosest one), so "a + 1 * 2" never becomes
 *     "(a + 1) * 2".
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What an OVER refusal adds: the one shape of OVER that runs (topn.c). */
#define TOPN_HINT "; the form that runs is a Window TopN: SELECT * FROM (SELECT *, " \
                  "ROW_NUMBER() OVER (PARTITION BY window_start, ...) AS rn FROM (<a windowed " \
                  "GROUP BY>)) WHERE rn <= N"

static int ferr(int *erroff, int off, char *errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int ferr(int *erroff, int off, char *errmsg, int code, const char *fmt, ...)
{
    if (erroff) *erroff = off;
    va_list ap;
    va_start(ap, fmt);
    code = rn_verrf(errmsg, code, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- tokenizer ------------------------------------------------------------ */

static int is_id_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

static int is_id_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

/* Skip space and comments from p; returns the new position. */
static size_t skip_space(const char *s, size_t len, size_t p)
{
    for (;;) {
        while (p < len && isspace((unsigned char)s[p])) p++;
        if (p + 1 < len && s[p] == '-' && s[p + 1] == '-') {
            while (p < len && s[p] != '\n') p++;
        } else if (p + 1 < len && s[p] == '/' && s[p + 1] == '*') {
            p += 2;
            while (p + 1 < len && !(s[p] == '*' && s[p + 1] == '/')) p++;
            p = p + 1 < len ? p + 2 : len;
        } else {
            return p;
        }
    }
}

/* Scan one token at s[p] (not space). *kind, returns its end; 0 with
 * *kind = TK_BAD for an unterminated quote. */
static size_t scan_token(const char *s, size_t len, size_t p, tok_kind_t *kind)
{
    unsigned char c = (unsigned char)s[p];
    size_t q = p + 1;
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
        char close = c == '[' ? ']' : (char)c;
        for (;;) {
            if (q >= len) { *kind = TK_BAD; return 0; }
            if (s[q] == close) {
                if (close != ']' && q + 1 < len && s[q + 1] == close) { q += 2; continue; }
                break;
            }
            q++;
        }
        *kind = c == '\'' ? TK_STR : TK_QID;
        return q + 1;
    }
    if (isdigit(c) || (c == '.' && q < len && isdigit((unsigned char)s[q]))) {
        if (c == '0' && q < len && (s[q] == 'x' || s[q] == 'X')) {
            q++;
            while (q < len && isxdigit((unsigned char)s[q])) q++;
        } else {
            while (q < len && (isdigit((unsigned char)s[q]) || s[q] == '.')) q++;
            if (q < len && (s[q] == 'e' || s[q] == 'E')) {
                size_t r = q + 1;
                if (r < len && (s[r] == '+' || s[r] == '-')) r++;
                if (r < len && isdigit((unsigned char)s[r])) {
                    q = r;
                    while (q < len && isdigit((unsigned char)s[q])) q++;
                }
            }
        }
        *kind = TK_NUM;
        return q;
    }
    if (is_id_start(c)) {
        while (q < len && is_id_char((unsigned char)s[q])) q++;
        *kind = TK_ID;
        return q;
    }
    if ((c == '?' || c == ':' || c == '@' || c == '$') ) {
        while (q < len && is_id_char((unsigned char)s[q])) q++;
        *kind = TK_PARAM;
        return q;
    }
    switch (c) {
    case '(': *kind = TK_LP; return q;
    case ')': *kind = TK_RP; return q;
    case ',': *kind = TK_COMMA; return q;
    case ';': *kind = TK_SEMI; return q;
    case '.': *kind = TK_DOT; return q;
    case '*': *kind = TK_STAR; return q;
    default: break;
    }
    *kind = TK_OP;
    if (q < len) {
        char d = s[q];
        if ((c == '|' && d == '|') || (c == '<' && (d == '<' || d == '=' || d == '>')) ||
            (c == '>' && (d == '>' || d == '=')) || (c == '=' && d == '=') ||
            (c == '!' && d == '='))
            return q + 1;
        if (c == '-' && d == '>') return q + 1 < len && s[q + 1] == '>' ? q + 2 : q + 1;
    }
    return q;
}

int rn_sql_check_text(const char *sql, size_t len, int *erroff, char *errmsg)
{
    const char *z = len ? memchr(sql, 0, len) : NULL;
    if (!z) return 0;
    return ferr(erroff, (int)(z - sql), errmsg, RN_EINVAL,
                "a NUL byte in the statement at offset %d: SQL is text", (int)(z - sql));
}

static int tokenize(front_t *f, int *erroff, char *errmsg)
{
    size_t cap = 64, p = 0;
    int depth = 0, lp_stack_top = -1;
    int rc = rn_sql_check_text(f->sql, f->len, erroff, errmsg);
    if (rc != 0) return rc;
    f->toks = malloc(cap * sizeof *f->toks);
    if (!f->toks) return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
    f->ntoks = 0;
    for (;;) {
        p = skip_space(f->sql, f->len, p);
        if (p >= f->len) break;
        tok_kind_t k;
        size_t e = scan_token(f->sql, f->len, p, &k);
        if (k == TK_BAD)
            return ferr(erroff, (int)p, errmsg, RN_EINVAL, "unterminated %s",
                        f->sql[p] == '\'' ? "string" : "quoted identifier");
        if ((size_t)f->ntoks == cap) {
            tok_t *t = realloc(f->toks, cap * 2 * sizeof *t);
            if (!t) return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
            f->toks = t;
            cap *= 2;
        }
        if (k == TK_RP) {
            if (depth == 0)
                return ferr(erroff, (int)p, errmsg, RN_EINVAL, "syntax error: unbalanced ')'");
            depth--;
        }
        tok_t *t = &f->toks[f->ntoks++];
        t->kind = k;
        t->off = (uint32_t)p;
        t->len = (uint32_t)(e - p);
        t->depth = depth;
        if (k == TK_LP) {
            if (++depth > RN_SQL_MAX_DEPTH)
                return ferr(erroff, (int)p, errmsg, RN_ETOOBIG,
                            "expression nests deeper than %d levels of parentheses",
                            RN_SQL_MAX_DEPTH);
            if (depth == 1) lp_stack_top = (int)p;
        }
        p = e;
    }
    if (depth != 0)
        return ferr(erroff, lp_stack_top, errmsg, RN_EINVAL, "syntax error: unbalanced '('");
    return 0;
}

/* ---- token helpers --------------------------------------------------------- */

static int front_tok_is(const front_t *f, int i, const char *word)
{
    if (i < 0 || i >= f->ntoks || f->toks[i].kind != TK_ID) return 0;
    size_t n = strlen(word);
    return f->toks[i].len == n && strncasecmp(f->sql + f->toks[i].off, word, n) == 0;
}

/* Copy an identifier token (unquoted) into out. RN_EINVAL when too long. */
static int front_ident(const front_t *f, int i, char *out, size_t size)
{
    const tok_t *t = &f->toks[i];
    const char *s = f->sql + t->off;
    size_t o = 0;
    if (t->kind == TK_ID) {
        if (t->len >= size) return RN_EINVAL;
        memcpy(out, s, t->len);
        out[t->len] = '\0';
        return 0;
    }
    if (t->kind != TK_QID && t->kind != TK_STR) return RN_EINVAL;
    char close = s[0] == '[' ? ']' : s[0];
    for (uint32_t k = 1; k + 1 < t->len; k++) {
        if (s[k] == close && close != ']') k++;      /* doubled quote */
        if (o + 1 >= size) return RN_EINVAL;
        out[o++] = s[k];
    }
    out[o] = '\0';
    return 0;
}

static int is_name_tok(const front_t *f, int i)
{
    return i < f->ntoks && (f->toks[i].kind == TK_ID || f->toks[i].kind == TK_QID);
}

static int tok_end(const front_t *f, int i)
{
    return (int)(f->toks[i].off + f->toks[i].len);
}

static int tok_off(const front_t *f, int i)
{
    return i < f->ntoks ? (int)f->toks[i].off : (int)f->len;
}

/* The matching ')' of the '(' at i. */
static int match_paren(const front_t *f, int i)
{
    int d = f->toks[i].depth;
    for (int j = i + 1; j < f->ntoks; j++)
        if (f->toks[j].kind == TK_RP && f->toks[j].depth == d) return j;
    return f->ntoks - 1;
}

int rn_front_tok_is(const front_t *f, int i, const char *word)
{
    return front_tok_is(f, i, word);
}

int rn_front_ident(const front_t *f, int i, char *out, size_t size)
{
    return front_ident(f, i, out, size);
}

int rn_front_match_paren(const front_t *f, int i)
{
    return match_paren(f, i);
}

int rn_front_find_ident(const front_t *f, const char *ident)
{
    char buf[RN_SQL_MAX_NAME * 4 + 1];
    for (int i = 0; i < f->ntoks; i++)
        if (is_name_tok(f, i) && front_ident(f, i, buf, sizeof buf) == 0 &&
            strcasecmp(buf, ident) == 0)
            return (int)f->toks[i].off;
    return -1;
}

static const char *tok_word(const front_t *f, int i, char *buf, size_t size)
{
    if (i >= f->ntoks) return "end of statement";
    size_t n = f->toks[i].len < size - 1 ? f->toks[i].len : size - 1;
    memcpy(buf, f->sql + f->toks[i].off, n);
    buf[n] = '\0';
    return buf;
}

static int unexpected(const front_t *f, int i, int *erroff, char *errmsg, const char *hint)
{
    char w[48];
    return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL, "syntax error near '%s'%s%s",
                tok_word(f, i, w, sizeof w), hint ? ": " : "", hint ? hint : "");
}

/* ---- intervals and option values ------------------------------------------- */

/* "10s", "500ms", "1.5m", "2h", "1d" -> ms. */
static int front_interval(const char *s, size_t n, int64_t *ms)
{
    static const struct { const char *u; int64_t ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"sec", 1000}, {"second", 1000}, {"seconds", 1000},
        {"m", 60000}, {"min", 60000}, {"minute", 60000}, {"minutes", 60000},
        {"h", 3600000}, {"hour", 3600000}, {"hours", 3600000},
        {"d", 86400000}, {"day", 86400000}, {"days", 86400000},
    };
    size_t p = 0;
    double v = 0;
    int digits = 0;
    while (p < n && s[p] == ' ') p++;
    while (p < n && isdigit((unsigned char)s[p])) { v = v * 10 + (s[p++] - '0'); digits++; }
    if (p < n && s[p] == '.') {
        double scale = 0.1;
        for (p++; p < n && isdigit((unsigned char)s[p]); p++, scale /= 10) {
            v += (s[p] - '0') * scale;
            digits++;
        }
    }
    if (!digits || digits > 15) return RN_EINVAL;
    while (p < n && s[p] == ' ') p++;
    size_t ub = p;
    while (p < n && isalpha((unsigned char)s[p])) p++;
    size_t ue = p;
    while (p < n && s[p] == ' ') p++;
    if (p != n || ue == ub) return RN_EINVAL;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strlen(units[i].u) == ue - ub && strncasecmp(s + ub, units[i].u, ue - ub) == 0) {
            double r = v * (double)units[i].ms;
            if (r > 366.0 * 86400000.0 || r != (double)(int64_t)r) return RN_EINVAL;
            *ms = (int64_t)r;
            return 0;
        }
    }
    return RN_EINVAL;
}

/* An interval given as a string literal ('10s') or an integer (ms). */
static int tok_interval(const front_t *f, int i, const char *what, int allow_zero, int64_t *ms,
                        int *erroff, char *errmsg)
{
    char buf[64];
    int rc = RN_EINVAL;
    if (i < f->ntoks && f->toks[i].kind == TK_STR && front_ident(f, i, buf, sizeof buf) == 0)
        rc = front_interval(buf, strlen(buf), ms);
    else if (i < f->ntoks && f->toks[i].kind == TK_NUM && f->toks[i].len < 16) {
        memcpy(buf, f->sql + f->toks[i].off, f->toks[i].len);
        buf[f->toks[i].len] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (*end == '\0' && errno == 0 && v >= 0) { *ms = v; rc = 0; }
    }
    if (rc == 0 && (*ms > 0 || allow_zero)) return 0;
    char w[48];
    return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                "bad interval %s for %s: use a number and a unit (ms, s, m, h, d), e.g. '10s'%s",
                tok_word(f, i, w, sizeof w), what, allow_zero ? "" : ", greater than zero");
}

/* ---- CREATE STREAM field lists ---------------------------------------------- */

/* The built-in columns of a stream. window_start and window_end are not
 * among them: a windowed query's output (e.g. a pipeline's sink topic) can
 * be declared as a stream with those fields; in the select list and HAVING
 * of a windowed query they name the new window's bounds, elsewhere (WHERE,
 * GROUP BY keys, aggregate arguments, queries without a window) the field. */
static const char *const reserved_cols[] = {"queue", "offset", "key", "value"};

static int sql_type_from_name(const char *s, size_t n, ftype_t *t)
{
    static const struct { const char *name; ftype_t t; } types[] = {
        {"INTEGER", FT_INTEGER}, {"INT", FT_INTEGER}, {"BIGINT", FT_INTEGER},
        {"REAL", FT_REAL}, {"DOUBLE", FT_REAL}, {"FLOAT", FT_REAL},
        {"TEXT", FT_TEXT}, {"VARCHAR", FT_TEXT}, {"STRING", FT_TEXT},
        {"BOOLEAN", FT_BOOLEAN}, {"BOOL", FT_BOOLEAN}, {"JSON", FT_JSON},
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strlen(types[i].name) == n && strncasecmp(s, types[i].name, n) == 0) {
            *t = types[i].t;
            return 0;
        }
    return RN_EINVAL;
}

const char *rn_front_ftype_name(ftype_t t)
{
    switch (t) {
    case FT_INTEGER: return "INTEGER";
    case FT_REAL: return "REAL";
    case FT_TEXT: return "TEXT";
    case FT_BOOLEAN: return "BOOLEAN";
    case FT_JSON: return "JSON";
    }
    return "?";
}

int rn_front_format_from_name(const char *s, size_t n, sformat_t *f)
{
    if (n == 4 && strncasecmp(s, "json", 4) == 0) *f = SF_JSON;
    else if (n == 4 && strncasecmp(s, "text", 4) == 0) *f = SF_TEXT;
    else if (n == 3 && strncasecmp(s, "csv", 3) == 0) *f = SF_CSV;
    else return RN_EINVAL;
    return 0;
}

const char *rn_front_format_name(sformat_t f)
{
    return f == SF_JSON ? "json" : f == SF_TEXT ? "text" : "csv";
}

/* Fields from tokens [b, e) of f ("name TYPE, ..."); offsets are f's. */
static int parse_field_toks(const front_t *f, int b, int e, sdef_t *def, int *erroff,
                            char *errmsg)
{
    def->nfields = 0;
    int i = b;
    while (i < e) {
        if (def->nfields == RN_SQL_MAX_FIELDS)
            return ferr(erroff, tok_off(f, i), errmsg, RN_ETOOBIG,
                        "a stream has at most %d fields", RN_SQL_MAX_FIELDS);
        sfield_t *fd = &def->fields[def->nfields];
        if (!is_name_tok(f, i) || front_ident(f, i, fd->name, sizeof fd->name) != 0 ||
            !fd->name[0])
            return unexpected(f, i, erroff, errmsg,
                              "a field is NAME TYPE (a name of at most 63 bytes)");
        for (size_t r = 0; r < sizeof reserved_cols / sizeof reserved_cols[0]; r++)
            if (strcasecmp(fd->name, reserved_cols[r]) == 0 || strncmp(fd->name, "__", 2) == 0)
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "field name '%s' is reserved (built-in columns: queue, offset, "
                            "key, value; names starting with __)",
                            fd->name);
        for (int k = 0; k < def->nfields; k++)
            if (strcasecmp(def->fields[k].name, fd->name) == 0)
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "field '%s' is declared twice", fd->name);
        i++;
        if (i >= e || f->toks[i].kind != TK_ID ||
            sql_type_from_name(f->sql + f->toks[i].off, f->toks[i].len, &fd->type) != 0)
            return unexpected(f, i, erroff, errmsg,
                              "field types are INTEGER, REAL, TEXT, BOOLEAN or JSON");
        i++;
        if (front_tok_is(f, i, "FORMAT")) {
            /* the stored form of timestamp_format: "at" TEXT FORMAT 'iso8601' */
            if (fd->type != FT_TEXT)
                return unexpected(f, i, erroff, errmsg, "FORMAT reads a TEXT field's time");
            if (i + 1 >= e || f->toks[i + 1].kind != TK_STR ||
                front_ident(f, i + 1, def->ts_format, sizeof def->ts_format) != 0)
                return unexpected(f, i + 1, erroff, errmsg, "FORMAT takes a string");
            def->ts_field = def->nfields;
            i += 2;
        }
        if (front_tok_is(f, i, "PRIMARY") && front_tok_is(f, i + 1, "KEY")) {
            /* a table's key (parse_create_table checks its type and that
             * there is one; a stream refuses it) */
            if (def->pk1)
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "a table has one PRIMARY KEY field");
            def->pk1 = def->nfields + 1;
            i += 2;
        }
        def->nfields++;
        if (i < e) {
            if (f->toks[i].kind != TK_COMMA)
                return unexpected(f, i, erroff, errmsg, "fields are separated by ','");
            i++;
        }
    }
    return 0;
}

int rn_front_parse_fields(const char *text, size_t len, sdef_t *def, int *erroff, char *errmsg)
{
    front_t f;
    memset(&f, 0, sizeof f);
    f.sql = text;
    f.len = len;
    int rc = tokenize(&f, erroff, errmsg);
    if (rc == 0) rc = parse_field_toks(&f, 0, f.ntoks, def, erroff, errmsg);
    free(f.toks);
    return rc;
}

int rn_front_fields_text(const sdef_t *def, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < def->nfields; i++) {
        int n = snprintf(out + used, size - used, "%s\"%s\" %s", i ? ", " : "",
                         def->fields[i].name, rn_front_ftype_name(def->fields[i].type));
        if (n < 0 || (size_t)n >= size - used) return RN_ETOOBIG;
        used += (size_t)n;
        if (def->pk1 == i + 1) {
            n = snprintf(out + used, size - used, " PRIMARY KEY");
            if (n < 0 || (size_t)n >= size - used) return RN_ETOOBIG;
            used += (size_t)n;
        }
        if (i == def->ts_field && def->ts_format[0]) {
            /* FORMAT '<timestamp_format>', quotes doubled */
            if (used + 10 + 2 * strlen(def->ts_format) >= size) return RN_ETOOBIG;
            used += (size_t)snprintf(out + used, size - used, " FORMAT '");
            for (const char *p = def->ts_format; *p; p++) {
                out[used++] = *p;
                if (*p == '\'') out[used++] = '\'';
            }
            out[used++] = '\'';
            out[used] = '\0';
        }
    }
    return 0;
}

/* WITH ( key = value, ... ) at i; calls fn for each pair. Returns the token
 * after ')'. */
typedef int (*opt_fn)(front_t *f, const char *key, int vtok, int *erroff, char *errmsg);

static int parse_with(front_t *f, int i, opt_fn fn, int *next, int *erroff, char *errmsg)
{
    if (i >= f->ntoks || f->toks[i].kind != TK_LP)
        return unexpected(f, i, erroff, errmsg, "WITH is followed by (name = value, ...)");
    int close = match_paren(f, i);
    i++;
    while (i < close) {
        char key[32];
        if (f->toks[i].kind != TK_ID || front_ident(f, i, key, sizeof key) != 0 ||
            i + 2 > close || f->toks[i + 1].kind != TK_OP || f->toks[i + 1].len != 1 ||
            f->sql[f->toks[i + 1].off] != '=')
            return unexpected(f, i, erroff, errmsg, "options are written name = value");
        if (i + 2 >= close || (f->toks[i + 2].kind != TK_STR && f->toks[i + 2].kind != TK_NUM &&
                               f->toks[i + 2].kind != TK_ID && f->toks[i + 2].kind != TK_QID))
            return unexpected(f, i + 2, erroff, errmsg, "an option value is a string or number");
        int rc = fn(f, key, i + 2, erroff, errmsg);
        if (rc != 0) return rc;
        i += 3;
        if (i < close) {
            if (f->toks[i].kind != TK_COMMA)
                return unexpected(f, i, erroff, errmsg, "options are separated by ','");
            i++;
        }
    }
    *next = close + 1;
    return 0;
}

static int create_opt(front_t *f, const char *key, int v, int *erroff, char *errmsg)
{
    char val[RN_META_TOPIC_NAME_MAX + 1];
    if (front_ident(f, v, val, sizeof val) != 0 && f->toks[v].kind != TK_NUM)
        return unexpected(f, v, erroff, errmsg, "value too long");
    if (strcasecmp(key, "topic") == 0) {
        if (rn_meta_check_topic_name(val, errmsg) != 0) {
            if (erroff) *erroff = (int)f->toks[v].off;
            return RN_EINVAL;
        }
        snprintf(f->def.topic, sizeof f->def.topic, "%s", val);
    } else if (strcasecmp(key, "format") == 0) {
        if (rn_front_format_from_name(val, strlen(val), &f->def.format) != 0)
            return ferr(erroff, (int)f->toks[v].off, errmsg, RN_EINVAL,
                        "unknown format '%s': formats are json, text, csv", val);
    } else if (strcasecmp(key, "timestamp") == 0) {
        int k;
        for (k = 0; k < f->def.nfields; k++)
            if (strcasecmp(f->def.fields[k].name, val) == 0) break;
        if (k == f->def.nfields)
            return ferr(erroff, (int)f->toks[v].off, errmsg, RN_EINVAL,
                        "timestamp '%s' is not a declared field", val);
        f->def.ts_field = k;
        f->ts_tok = v;
    } else if (strcasecmp(key, "timestamp_format") == 0) {
        char why[RN_ERRMSG_SIZE];
        if (front_ident(f, v, f->def.ts_format, sizeof f->def.ts_format) != 0)
            return ferr(erroff, (int)f->toks[v].off, errmsg, RN_EINVAL,
                        "timestamp_format is a string of at most %d bytes", RN_SQL_MAX_TS_FORMAT);
        if (rn_sql_check_time_format(f->def.ts_format, why) != 0)
            return ferr(erroff, (int)f->toks[v].off, errmsg, RN_EINVAL, "%s", why);
        f->tsfmt_tok = v;
    } else {
        return ferr(erroff, (int)f->toks[v - 2].off, errmsg, RN_EINVAL,
                    "unknown stream option '%s': options are topic, format, timestamp, "
                    "timestamp_format", key);
    }
    return 0;
}

/* A declared field named ts is the stream's event time: the built-in column
 * ts reads it (the field is not a column of its own), so it must be INTEGER
 * (ms since the epoch) and it is the timestamp field, whether or not
 * WITH (timestamp = 'ts') says so; another timestamp field beside it would
 * give ts two meanings and is refused. */
static int ts_field_rule(front_t *f, int *erroff, char *errmsg)
{
    sdef_t *def = &f->def;
    int k = rn_front_ts_field(def);
    if (k < 0) return 0;
    int at = 3;
    for (int i = 3; i < f->ntoks && f->toks[i].kind != TK_RP; i++) {
        char w[8];
        if (is_name_tok(f, i) && front_ident(f, i, w, sizeof w) == 0 && !strcasecmp(w, "ts")) {
            at = i;
            break;
        }
    }
    if (def->ts_format[0] && def->fields[k].type != FT_TEXT)
        return ferr(erroff, tok_off(f, at), errmsg, RN_EINVAL,
                    "timestamp_format reads a TEXT field; '%s' is %s", def->fields[k].name,
                    rn_front_ftype_name(def->fields[k].type));
    if (!def->ts_format[0] && def->fields[k].type != FT_INTEGER)
        return ferr(erroff, tok_off(f, at), errmsg, RN_EINVAL,
                    "field '%s' is %s, but a field named ts is the stream's event time (the "
                    "column ts), so it must be INTEGER (ms since the epoch); read another kind "
                    "of ts with json_extract(value, '$.%s')",
                    def->fields[k].name, rn_front_ftype_name(def->fields[k].type),
                    def->fields[k].name);
    if (def->ts_field >= 0 && def->ts_field != k)
        return ferr(erroff, tok_off(f, at), errmsg, RN_EINVAL,
                    "a field named ts is the stream's event time, so timestamp = '%s' would "
                    "give ts two meanings: drop the timestamp option or rename one field",
                    def->fields[def->ts_field].name);
    def->ts_field = k;
    return 0;
}

int rn_front_ts_field(const sdef_t *def)
{
    for (int k = 0; k < def->nfields; k++)
        if (strcasecmp(def->fields[k].name, "ts") == 0) return k;
    return -1;
}

static int parse_create(front_t *f, int *erroff, char *errmsg)
{
    int i = 2;
    f->def.ts_field = -1;
    f->def.declared = 1;
    if (!is_name_tok(f, i) || front_ident(f, i, f->def.name, sizeof f->def.name) != 0)
        return unexpected(f, i, erroff, errmsg, "CREATE STREAM name (field TYPE, ...) WITH (...)");
    f->name_tok = i;
    if (rn_meta_check_name("stream", f->def.name, errmsg) != 0) {
        if (erroff) *erroff = tok_off(f, i);
        return RN_EINVAL;
    }
    snprintf(f->def.topic, sizeof f->def.topic, "%s", f->def.name);
    i++;
    if (i < f->ntoks && f->toks[i].kind == TK_LP) {
        int close = match_paren(f, i);
        int rc = parse_field_toks(f, i + 1, close, &f->def, erroff, errmsg);
        if (rc != 0) return rc;
        if (f->def.pk1)
            return ferr(erroff, tok_off(f, i + 1), errmsg, RN_EINVAL,
                        "a stream has no PRIMARY KEY; a changelog keyed by one is a table: "
                        "CREATE TABLE name (id INTEGER PRIMARY KEY, ...) WITH (topic = '...')");
        i = close + 1;
    }
    if (front_tok_is(f, i, "WITH")) {
        int rc = parse_with(f, i + 1, create_opt, &i, erroff, errmsg);
        if (rc != 0) return rc;
    }
    if (i < f->ntoks) return unexpected(f, i, erroff, errmsg, NULL);
    if (f->def.ts_format[0] && f->def.ts_field < 0 && rn_front_ts_field(&f->def) < 0)
        return ferr(erroff, tok_off(f, f->tsfmt_tok), errmsg, RN_EINVAL,
                    "timestamp_format needs timestamp = 'field' (a TEXT field to read)");
    if (f->def.ts_field >= 0 && f->ts_tok > 0) {
        const sfield_t *fd = &f->def.fields[f->def.ts_field];
        if (!f->def.ts_format[0] && fd->type != FT_INTEGER)
            return ferr(erroff, tok_off(f, f->ts_tok), errmsg, RN_EINVAL,
                        "timestamp field '%s' must be INTEGER (ms since the epoch), not %s; a "
                        "TEXT time needs timestamp_format = 'iso8601' (or a strftime-style "
                        "pattern)", fd->name, rn_front_ftype_name(fd->type));
        if (f->def.ts_format[0] && fd->type != FT_TEXT)
            return ferr(erroff, tok_off(f, f->tsfmt_tok), errmsg, RN_EINVAL,
                        "timestamp_format reads a TEXT field; '%s' is %s", fd->name,
                        rn_front_ftype_name(fd->type));
    }
    int rc = ts_field_rule(f, erroff, errmsg);
    if (rc != 0) return rc;
    if (f->def.format == SF_TEXT && f->def.nfields > 0)
        return ferr(erroff, tok_off(f, 3), errmsg, RN_EINVAL,
                    "format 'text' has no fields: the whole record is the value column");
    return 0;
}

/* ---- CREATE TABLE and joins (table.c runs them) ------------------------------ */

static int append(rn_buf_t *b, const char *p, size_t n);
static int appendf(rn_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Token i is a name (quoted or not) equal to name, ignoring case. */
static int name_is(const front_t *f, int i, const char *name)
{
    char w[RN_SQL_MAX_NAME * 4 + 1];
    return is_name_tok(f, i) && front_ident(f, i, w, sizeof w) == 0 && !strcasecmp(w, name);
}

static int table_opt(front_t *f, const char *key, int v, int *erroff, char *errmsg)
{
    if (strcasecmp(key, "file") == 0) {
        if (f->toks[v].kind != TK_STR ||
            front_ident(f, v, f->def.file, sizeof f->def.file) != 0 || !f->def.file[0])
            return ferr(erroff, tok_off(f, v), errmsg, RN_EINVAL,
                        "file is a path string of 1 to %d bytes", RN_SQL_MAX_PATH);
        f->def.topic[0] = '\0';
        return 0;
    }
    if (strcasecmp(key, "topic") == 0 || strcasecmp(key, "format") == 0)
        return create_opt(f, key, v, erroff, errmsg);
    return ferr(erroff, tok_off(f, v - 2), errmsg, RN_EINVAL,
                "unknown table option '%s': options are topic, format (a changelog topic) or "
                "file, format (a static CSV or JSON-lines file)", key);
}

/* CREATE TABLE name (field TYPE, ..., key TYPE PRIMARY KEY, ...)
 *   WITH (topic = 't', format = 'json' | 'csv')      a changelog topic
 *   WITH (file = 'path', format = 'csv' | 'json')    a static file */
static int parse_create_table(front_t *f, int *erroff, char *errmsg)
{
    static const char *const form = "CREATE TABLE name (id INTEGER PRIMARY KEY, field TYPE, "
                                    "...) WITH (topic = 'topic', format = 'json')";
    int i = 2;
    f->def.ts_field = -1;
    f->def.declared = 1;
    if (!is_name_tok(f, i) || front_ident(f, i, f->def.name, sizeof f->def.name) != 0)
        return unexpected(f, i, erroff, errmsg, form);
    f->name_tok = i;
    if (rn_meta_check_name("table", f->def.name, errmsg) != 0) {
        if (erroff) *erroff = tok_off(f, i);
        return RN_EINVAL;
    }
    snprintf(f->def.topic, sizeof f->def.topic, "%s", f->def.name);
    i++;
    if (i >= f->ntoks || f->toks[i].kind != TK_LP)
        return unexpected(f, i, erroff, errmsg, form);
    int close = match_paren(f, i);
    int rc = parse_field_toks(f, i + 1, close, &f->def, erroff, errmsg);
    if (rc != 0) return rc;
    if (!f->def.pk1)
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "a table needs one field declared PRIMARY KEY (INTEGER or TEXT): %s", form);
    ftype_t kt = f->def.fields[f->def.pk1 - 1].type;
    if (kt != FT_INTEGER && kt != FT_TEXT)
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "the PRIMARY KEY field '%s' is %s; a key is INTEGER or TEXT",
                    f->def.fields[f->def.pk1 - 1].name, rn_front_ftype_name(kt));
    i = close + 1;
    if (front_tok_is(f, i, "WITH") && (rc = parse_with(f, i + 1, table_opt, &i, erroff,
                                                       errmsg)) != 0)
        return rc;
    if (i < f->ntoks) return unexpected(f, i, erroff, errmsg, NULL);
    if (f->def.format == SF_TEXT)
        return ferr(erroff, tok_off(f, 0), errmsg, RN_EINVAL,
                    "a table's format is json or csv (format 'text' has no fields)");
    return 0;
}

/* CREATE TABLE name AS SELECT ...: the name and where the SELECT starts
 * (f->body); ctas.c checks and stores the rest. */
static int parse_create_table_as(front_t *f, int *erroff, char *errmsg)
{
    f->kind = SK_CREATE_TABLE_AS;
    if (!is_name_tok(f, 2) || front_ident(f, 2, f->name, sizeof f->name) != 0)
        return unexpected(f, 2, erroff, errmsg, "CREATE TABLE name AS SELECT ...");
    f->name_tok = 2;
    if (rn_meta_check_name("table", f->name, errmsg) != 0) {
        if (erroff) *erroff = tok_off(f, 2);
        return RN_EINVAL;
    }
    f->body = 4;
    if (!front_tok_is(f, 4, "SELECT"))
        return unexpected(f, 4, erroff, errmsg, "CREATE TABLE name AS SELECT key, "
                          "count(*) AS n, ... FROM stream GROUP BY key");
    return 0;
}

/* The canonical text of a table definition: what meta.db keeps and what
 * parse_create_table reads back. */
int rn_front_table_text(const sdef_t *def, rn_buf_t *out)
{
    char fields[RN_SQL_MAX_FIELDS * (RN_SQL_MAX_NAME + 32)];
    int rc = rn_front_fields_text(def, fields, sizeof fields);
    if (rc != 0) return rc;
    const char *src = def->file[0] ? def->file : def->topic;
    rc = appendf(out, "CREATE TABLE \"%s\" (%s) WITH (%s = '", def->name, fields,
                 def->file[0] ? "file" : "topic");
    for (const char *p = src; rc == 0 && *p; p++)
        rc = append(out, *p == '\'' ? "''" : p, *p == '\'' ? 2 : 1);
    if (rc == 0) rc = appendf(out, "', format = '%s')", rn_front_format_name(def->format));
    return rc;
}

/* FROM s [[AS] a] [INNER | LEFT [OUTER]] JOIN t [[AS] b] ON <expr> = b.col
 * (either side) over tokens [b, e): one lookup join of a table by its key
 * (sql.c checks that t is a table and col its primary key). Anything else is
 * refused with what is supported. */
static int parse_join(front_t *f, int b, int e, int *erroff, char *errmsg)
{
    static const char *const supported =
        "supported: FROM stream [LEFT] JOIN table ON stream_expression = table.primary_key "
        "(a table from CREATE TABLE)";
    int i = b, j;
    f->salias_tok = f->jalias_tok = -1;
    if (!is_name_tok(f, i))
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "a join reads a stream first: %s", supported);
    i++;
    if (front_tok_is(f, i, "AS")) i++;
    static const char *const words[] = {"JOIN", "LEFT", "INNER", "RIGHT", "FULL", "CROSS",
                                        "NATURAL", "OUTER"};
    int kw = 0;
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) kw |= front_tok_is(f, i, words[k]);
    if (i < e && is_name_tok(f, i) && !kw) f->salias_tok = i++;
    if (front_tok_is(f, i, "INNER") && front_tok_is(f, i + 1, "JOIN")) {
        f->join = 1;
        i += 2;
    } else if (front_tok_is(f, i, "LEFT") && front_tok_is(f, i + 1, "JOIN")) {
        f->join = 2;
        i += 2;
    } else if (front_tok_is(f, i, "LEFT") && front_tok_is(f, i + 1, "OUTER") &&
               front_tok_is(f, i + 2, "JOIN")) {
        f->join = 2;
        i += 3;
    } else if (front_tok_is(f, i, "JOIN")) {
        f->join = 1;
        i++;
    } else {
        char w[32];
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "'%s' join is not supported (nor RIGHT, FULL, CROSS, NATURAL or a list of "
                    "sources); %s", tok_word(f, i, w, sizeof w), supported);
    }
    if (!is_name_tok(f, i) || (i + 1 < e && f->toks[i + 1].kind == TK_LP) ||
        front_ident(f, i, f->jname, sizeof f->jname) != 0)
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "a join reads a table by name (no subquery or function); %s", supported);
    f->jtab_tok = i++;
    if (front_tok_is(f, i, "AS")) i++;
    if (i < e && is_name_tok(f, i) && !front_tok_is(f, i, "ON") && !front_tok_is(f, i, "USING"))
        f->jalias_tok = i++;
    if (!front_tok_is(f, i, "ON"))
        return ferr(erroff, tok_off(f, i < e ? i : e - 1), errmsg, RN_EINVAL,
                    "a join needs ON (USING and joins without a condition are not supported); "
                    "%s", supported);
    f->on_b = ++i;
    f->on_e = e;
    for (j = f->on_b; j < e; j++)
        if (front_tok_is(f, j, "JOIN"))
            return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                        "a query joins one table; %s", supported);
    /* the one '=' at the condition's top level, no AND / OR beside it */
    int eq = -1, d = f->toks[f->on_b < e ? f->on_b : b].depth;
    for (j = f->on_b; j < e; j++) {
        if (f->toks[j].depth != d) continue;
        if (front_tok_is(f, j, "AND") || front_tok_is(f, j, "OR"))
            return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                        "ON compares the table's primary key only; put further conditions in "
                        "WHERE; %s", supported);
        if (f->toks[j].kind == TK_OP &&
            ((f->toks[j].len == 1 && f->sql[f->toks[j].off] == '=') ||
             (f->toks[j].len == 2 && !memcmp(f->sql + f->toks[j].off, "==", 2)))) {
            if (eq >= 0) break;
            eq = j;
        }
    }
    char tq[RN_SQL_MAX_NAME * 4 + 1];
    front_ident(f, f->jalias_tok >= 0 ? f->jalias_tok : f->jtab_tok, tq, sizeof tq);
    /* which side is "tq.col" */
    int col = -1, ob = -1, oe = -1;
    if (eq >= 0 && eq - f->on_b == 3 && f->toks[f->on_b + 1].kind == TK_DOT &&
        name_is(f, f->on_b, tq) && is_name_tok(f, f->on_b + 2)) {
        col = f->on_b + 2; ob = eq + 1; oe = e;
    } else if (eq >= 0 && e - eq == 4 && f->toks[eq + 2].kind == TK_DOT &&
               name_is(f, eq + 1, tq) && is_name_tok(f, eq + 3)) {
        col = eq + 3; ob = f->on_b; oe = eq;
    }
    if (col < 0 || ob == oe)
        return ferr(erroff, tok_off(f, f->on_b < e ? f->on_b : e - 1), errmsg, RN_EINVAL,
                    "ON must be one equality with the table's primary key written "
                    "%s.<key> on one side; %s", tq, supported);
    for (j = ob; j < oe; j++)
        if (name_is(f, j, tq) && j + 1 < oe && f->toks[j + 1].kind == TK_DOT)
            return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                        "ON compares the table's key with an expression over the stream; "
                        "this one reads the table too; %s", supported);
    f->on_col_tok = col;
    f->from_e = e;
    return 0;
}

static int append_toks(const front_t *f, int b, int e, rn_buf_t *out)
{
    if (b >= e) return 0;
    return append(out, f->sql + f->toks[b].off, (size_t)tok_end(f, e - 1) - f->toks[b].off);
}

int rn_front_from_text(front_t *f, rn_buf_t *out)
{
    if (!f->join) {
        int fe = f->src_tok + 1;
        while (fe < f->ntoks && fe < f->src_tok + 3 &&
               (front_tok_is(f, fe, "AS") || (is_name_tok(f, fe) && !front_tok_is(f, fe, "WHERE") &&
                                              !front_tok_is(f, fe, "GROUP") &&
                                              !front_tok_is(f, fe, "HAVING") &&
                                              !front_tok_is(f, fe, "LIMIT") &&
                                              !front_tok_is(f, fe, "EMIT") &&
                                              !front_tok_is(f, fe, "WITH"))))
            fe++;
        return append_toks(f, f->src_tok, fe, out);
    }
    /* CROSS JOIN: sqlite never reorders it, so the stream stays the outer
     * loop and rows come in stream order (sql.c invariant 8) */
    int se = f->salias_tok >= 0 ? f->salias_tok + 1 : f->src_tok + 1;
    int te = f->jalias_tok >= 0 ? f->jalias_tok + 1 : f->jtab_tok + 1;
    int rc = append_toks(f, f->src_tok, se, out);
    f->join_kw = out->len + 1;
    if (rc == 0) rc = appendf(out, " %s ", f->join == 2 ? "LEFT JOIN" : "CROSS JOIN");
    if (rc == 0) rc = append_toks(f, f->jtab_tok, te, out);
    if (rc == 0) rc = append(out, " ON ", 4);
    if (rc == 0) rc = append_toks(f, f->on_b, f->on_e, out);
    return rc;
}

int rn_front_stream_qual(const front_t *f, rn_buf_t *out)
{
    int t = f->join && f->salias_tok >= 0 ? f->salias_tok : f->src_tok;
    return append_toks(f, t, t + 1, out);
}

/* ---- SELECT clauses ----------------------------------------------------------- */

static int select_opt(front_t *f, const char *key, int v, int *erroff, char *errmsg)
{
    if (strcasecmp(key, "watermark") == 0)
        return tok_interval(f, v, "watermark", 1, &f->watermark_ms, erroff, errmsg);
    if (strcasecmp(key, "idle_timeout") == 0)
        return tok_interval(f, v, "idle_timeout", 0, &f->idle_ms, erroff, errmsg);
    if (strcasecmp(key, "late") == 0) {
        char val[32];
        if (front_ident(f, v, val, sizeof val) == 0 && strcasecmp(val, "drop") == 0) {
            f->late_dead_letter = 0;
            return 0;
        }
        if (front_ident(f, v, val, sizeof val) == 0 && strcasecmp(val, "dead-letter") == 0) {
            f->late_dead_letter = 1;
            return 0;
        }
        return ferr(erroff, (int)f->toks[v].off, errmsg, RN_EINVAL,
                    "late must be 'drop' or 'dead-letter'");
    }
    return ferr(erroff, (int)f->toks[v - 2].off, errmsg, RN_EINVAL,
                "unknown query option '%s': options are watermark, idle_timeout, late", key);
}

static int parse_tail(front_t *f, int i, int *erroff, char *errmsg)
{
    int seen_limit = 0, seen_emit = 0, seen_with = 0;
    while (i < f->ntoks) {
        if (front_tok_is(f, i, "LIMIT") && !seen_limit) {
            seen_limit = 1;
            char buf[24];
            if (i + 1 >= f->ntoks || f->toks[i + 1].kind != TK_NUM || f->toks[i + 1].len > 18)
                return unexpected(f, i + 1, erroff, errmsg, "LIMIT takes a whole number");
            tok_word(f, i + 1, buf, sizeof buf);
            char *end;
            long long v = strtoll(buf, &end, 10);
            if (*end != '\0' || v < 0)
                return unexpected(f, i + 1, erroff, errmsg, "LIMIT takes a whole number");
            f->limit = v;
            i += 2;
            if (front_tok_is(f, i, "OFFSET") || (i < f->ntoks && f->toks[i].kind == TK_COMMA))
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "LIMIT ... OFFSET is not supported on streams (start with --from)");
        } else if (front_tok_is(f, i, "EMIT") && !seen_emit) {
            seen_emit = 1;
            if (front_tok_is(f, i + 1, "FINAL")) f->emit_changes = 0;
            else if (front_tok_is(f, i + 1, "CHANGES")) f->emit_changes = 1;
            else return unexpected(f, i + 1, erroff, errmsg, "EMIT FINAL or EMIT CHANGES");
            i += 2;
        } else if (front_tok_is(f, i, "WITH") && !seen_with) {
            seen_with = 1;
            int rc = parse_with(f, i + 1, select_opt, &i, erroff, errmsg);
            if (rc != 0) return rc;
        } else {
            return unexpected(f, i, erroff, errmsg, NULL);
        }
    }
    return 0;
}

/* Mark the tokens of every parenthesised subquery, "(SELECT ...)",
 * "(WITH ...)", "(VALUES ...)", parentheses included. */
static int mark_subqueries(front_t *f, int *erroff, char *errmsg)
{
    f->insub = calloc((size_t)f->ntoks + 1, 1);
    if (!f->insub) return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
    for (int i = 0; i + 1 < f->ntoks; i++)
        if (f->toks[i].kind == TK_LP && !f->insub[i] &&
            (front_tok_is(f, i + 1, "SELECT") || front_tok_is(f, i + 1, "WITH") ||
             front_tok_is(f, i + 1, "VALUES"))) {
            int c = match_paren(f, i);
            memset(f->insub + i, 1, (size_t)(c - i + 1));
        }
    return 0;
}

static int is_clause_word(const front_t *f, int i)
{
    static const char *const words[] = {"WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "WINDOW",
                                        "UNION", "INTERSECT", "EXCEPT", "ON", "USING"};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
        if (front_tok_is(f, i, words[k])) return 1;
    return 0;
}

/* Constructs that would be evaluated over one batch instead of the whole
 * stream (sqlite sees only the current batch in the stream table), refused
 * with what to write instead:
 *  - a window function (OVER) outside a subquery: it would restart at
 *    every batch;
 *  - a subquery reading a table: the stream itself (evaluated per batch),
 *    or another stream or topic (a query reads one stream). Subqueries over
 *    table-valued functions of the row (json_each(value)) are per record,
 *    and allowed. */
/* Index after the ')' that closes the '(' at i, or ntoks. */
static int skip_parens(const front_t *f, int i)
{
    int d = f->toks[i].depth;
    for (i++; i < f->ntoks; i++)
        if (f->toks[i].kind == TK_RP && f->toks[i].depth == d) return i + 1;
    return f->ntoks;
}

/* Whether name is a common table expression that a WITH clause of the query
 * defines (WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (...), ...).
 * A subquery reading a CTE reads what the CTE's own body reads, and that body
 * is checked like any subquery. */
static int is_cte_name(const front_t *f, const char *name)
{
    for (int i = f->body; i < f->ntoks; i++) {
        if (!front_tok_is(f, i, "WITH")) continue;
        int j = i + 1;
        if (front_tok_is(f, j, "RECURSIVE")) j++;
        while (j < f->ntoks && is_name_tok(f, j)) {
            char cte[RN_SQL_MAX_NAME * 4 + 1];
            int named = front_ident(f, j, cte, sizeof cte) == 0 && strcasecmp(cte, name) == 0;
            j++;
            if (j < f->ntoks && f->toks[j].kind == TK_LP) j = skip_parens(f, j);
            if (!front_tok_is(f, j, "AS")) break;
            if (named) return 1;
            j++;
            if (front_tok_is(f, j, "NOT")) j++;
            if (front_tok_is(f, j, "MATERIALIZED")) j++;
            if (j >= f->ntoks || f->toks[j].kind != TK_LP) break;
            j = skip_parens(f, j);
            if (j >= f->ntoks || f->toks[j].kind != TK_COMMA) break;
            j++;
        }
    }
    return 0;
}

static int check_stream_reads(front_t *f, int *erroff, char *errmsg)
{
    for (int i = f->body; i < f->ntoks; i++) {
        if (front_tok_is(f, i, "OVER") && !f->insub[i] && i > 0 && f->toks[i - 1].kind == TK_RP) {
            int d = f->toks[i - 1].depth, fn = i - 1;
            while (fn > 0 && !(f->toks[fn].kind == TK_LP && f->toks[fn].depth == d)) fn--;
            char w[48];
            return ferr(erroff, tok_off(f, fn > 0 ? fn - 1 : i), errmsg, RN_EINVAL,
                        "window function %s() OVER (...) is not supported on streams: it would "
                        "restart at every batch; aggregate over windows of event time with "
                        "GROUP BY TUMBLE(ts, '1m')" TOPN_HINT,
                        fn > 0 ? tok_word(f, fn - 1, w, sizeof w) : "?");
        }
        if (!f->insub[i] || !(front_tok_is(f, i, "FROM") || front_tok_is(f, i, "JOIN")) ||
            front_tok_is(f, i - 1, "DISTINCT"))              /* a IS DISTINCT FROM b */
            continue;
        /* the FROM list of a subquery: names at item starts are tables */
        int d = f->toks[i].depth;
        for (int j = i + 1; j < f->ntoks && f->toks[j].depth >= d; j++) {
            /* a '(' and its ')' are at depth d, what is between deeper */
            if (f->toks[j].depth > d || f->toks[j].kind == TK_RP) continue;
            if (is_clause_word(f, j)) break;
            int start = f->toks[j - 1].kind == TK_COMMA || j == i + 1 ||
                        front_tok_is(f, j - 1, "JOIN");
            if (!start || !is_name_tok(f, j)) continue;
            int nt = j;
            if (nt + 2 < f->ntoks && f->toks[nt + 1].kind == TK_DOT && is_name_tok(f, nt + 2))
                nt += 2;                                   /* schema.table */
            if (nt + 1 < f->ntoks && f->toks[nt + 1].kind == TK_LP) continue;  /* json_each(..) */
            char name[RN_SQL_MAX_NAME * 4 + 1];
            if (front_ident(f, nt, name, sizeof name) != 0) snprintf(name, sizeof name, "?");
            if (nt == j && is_cte_name(f, name)) continue;
            if (strcasecmp(name, f->name) == 0)
                return ferr(erroff, tok_off(f, nt), errmsg, RN_EINVAL,
                            "a subquery over the stream itself ('%s') is not supported: sqlite "
                            "would run it over each batch, not the whole stream; run it as its "
                            "own query (e.g. SELECT max(x) FROM %s) and use the value as a "
                            "constant, or aggregate with GROUP BY", name, name);
            return ferr(erroff, tok_off(f, nt), errmsg, RN_EINVAL,
                        "a subquery reads '%s': a streamsql query reads one stream (FROM %s); "
                        "subqueries over other streams, topics or tables, and joins, are not "
                        "supported; a subquery may read the record's JSON with "
                        "json_each(%s.value)", name, f->name, f->name);
        }
    }
    return 0;
}

/* Flink's window table-valued functions over [b, e):
 *   TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), size))
 *   TABLE(HOP(TABLE s, DESCRIPTOR(ts), slide, size))      (Flink's order)
 *   TABLE(SESSION(TABLE s, DESCRIPTOR(ts), gap))
 * planned exactly as GROUP BY TUMBLE(ts, size) / HOP(ts, size, slide) /
 * SESSION(ts, gap) with GROUP BY window_start, window_end (rn_front_plan). */
static int parse_tvf(front_t *f, int b, int e, int *erroff, char *errmsg)
{
    static const char *const names[] = {"TUMBLE", "HOP", "SESSION"};
    static const char *const forms[] = {
        "FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '10' SECOND))",
        "FROM TABLE(HOP(TABLE s, DESCRIPTOR(ts), INTERVAL '10' SECOND, INTERVAL '1' MINUTE)) "
        "(slide, then size)",
        "FROM TABLE(SESSION(TABLE s, DESCRIPTOR(ts), INTERVAL '30' SECOND))"};
    int j = b + 2, w = -1;
    for (int k = 0; k < 3; k++)
        if (front_tok_is(f, j, names[k])) w = k;
    if (w < 0) {
        char wd[48];
        return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                    "FROM TABLE(%s(...)): the window functions are TUMBLE, HOP and SESSION "
                    "(CUMULATE is not supported)", tok_word(f, j, wd, sizeof wd));
    }
    int close = match_paren(f, b + 1);
    int ok = close == e - 1 && j + 1 < e && f->toks[j + 1].kind == TK_LP &&
             match_paren(f, j + 1) == close - 1 && front_tok_is(f, j + 2, "TABLE") &&
             is_name_tok(f, j + 3) && j + 9 < e && f->toks[j + 4].kind == TK_COMMA &&
             front_tok_is(f, j + 5, "DESCRIPTOR") && f->toks[j + 6].kind == TK_LP &&
             is_name_tok(f, j + 7) && f->toks[j + 8].kind == TK_RP &&
             f->toks[j + 9].kind == TK_COMMA;
    int a1 = j + 10, a2 = -1;
    if (ok && w == 1) {
        ok = a1 + 2 < close - 1 && f->toks[a1 + 1].kind == TK_COMMA && a1 + 3 == close - 1;
        a2 = a1 + 2;
    } else if (ok) {
        ok = a1 + 1 == close - 1;
    }
    if (!ok) {
        if (close != e - 1 && close + 1 < f->ntoks)
            return ferr(erroff, tok_off(f, close + 1), errmsg, RN_EINVAL,
                        "FROM TABLE(...) takes no alias or join; it is written %s", forms[w]);
        return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL, "%s is written %s", names[w],
                    forms[w]);
    }
    f->tvf = w + 1;
    f->tvf_b = b;
    f->tvf_e = close;
    f->tvf_src = j + 3;
    f->tvf_col = j + 7;
    /* Flink's HOP takes the slide first: size is the second interval */
    f->tvf_size = w == 1 ? a2 : a1;
    f->tvf_slide = w == 1 ? a1 : -1;
    return 0;
}

/* A Window TopN around the SELECT (topn.c): when recognised, its wrapper is
 * blanked and the inner query is what the rest of the front sees. */
static int parse_topn(front_t *f, int *erroff, char *errmsg)
{
    int r = rn_topn_parse(f, erroff, errmsg);
    if (r <= 0) return r;
    f->sql = f->own;
    free(f->toks);
    f->toks = NULL;
    int rc = tokenize(f, erroff, errmsg);
    if (rc == 0 && !front_tok_is(f, f->body, "SELECT"))
        return unexpected(f, f->body, erroff, errmsg, "a TopN's subquery is a SELECT");
    return rc;
}

/* A stream-stream join (sjoin.c) over FROM tokens [b, e): 1 when it is one
 * (the left stream is f->name), 0 when not, < 0 refused. */
static int parse_stream_join(front_t *f, int b, int e, int *erroff, char *errmsg)
{
    int has_join = 0;
    for (int j = b; j < e; j++) has_join |= f->toks[j].depth == 0 && front_tok_is(f, j, "JOIN");
    int r = has_join ? rn_sjoin_parse(f, b, e, erroff, errmsg) : 0;
    if (r <= 0) return r;
    int s = front_tok_is(f, b, "TABLE") ? b + 5 : b;
    f->src_tok = s;
    if (front_ident(f, s, f->name, sizeof f->name) != 0)
        return ferr(erroff, tok_off(f, s), errmsg, RN_EINVAL, "stream name too long");
    int rc = mark_subqueries(f, erroff, errmsg);
    if (rc == 0) rc = check_stream_reads(f, erroff, errmsg);
    return rc == 0 ? 1 : rc;
}

static int parse_select(front_t *f, int *erroff, char *errmsg)
{
    int rc0 = parse_topn(f, erroff, errmsg);
    if (rc0 != 0) return rc0;
    int i = f->body + 1;
    int phase = 0;     /* 0 select list, 1 from, 2 where, 3 group, 4 having */
    int from_b = -1;
    f->limit = -1;
    f->sel_b = i;
    if (front_tok_is(f, i, "DISTINCT")) { f->distinct = 1; f->sel_b = ++i; }
    else if (front_tok_is(f, i, "ALL")) f->sel_b = ++i;
    f->where_b = f->where_e = f->group_b = f->group_e = f->having_b = f->having_e = -1;
    f->tail_b = f->ntoks;
    for (; i < f->ntoks; i++) {
        const tok_t *t = &f->toks[i];
        if (t->depth != 0 || t->kind != TK_ID) {
            if (t->depth == 0 && t->kind == TK_SEMI)
                return unexpected(f, i, erroff, errmsg, "one statement at a time");
            continue;
        }
        if (front_tok_is(f, i, "FROM") && phase == 0 && !front_tok_is(f, i - 1, "DISTINCT")) {
            f->sel_e = i;
            phase = 1;
            from_b = i + 1;
        } else if (front_tok_is(f, i, "WHERE") && phase == 1) {
            f->where_b = i + 1;
            phase = 2;
        } else if (front_tok_is(f, i, "GROUP") && front_tok_is(f, i + 1, "BY") &&
                   (phase == 1 || phase == 2)) {
            if (phase == 2) f->where_e = i;
            phase = 3;
            f->group_b = i + 2;
            i++;
        } else if (front_tok_is(f, i, "HAVING") && phase >= 1 && phase <= 3) {
            if (phase == 2) f->where_e = i;
            if (phase == 3) f->group_e = i;
            phase = 4;
            f->having_b = i + 1;
        } else if (front_tok_is(f, i, "ORDER") && phase >= 1) {
            return ferr(erroff, (int)t->off, errmsg, RN_EINVAL,
                        "ORDER BY needs the whole stream and is not supported on streams; "
                        "sort the output instead");
        } else if ((front_tok_is(f, i, "UNION") || front_tok_is(f, i, "INTERSECT") ||
                    front_tok_is(f, i, "EXCEPT") || front_tok_is(f, i, "WINDOW")) && phase >= 1) {
            char w[16];
            return ferr(erroff, (int)t->off, errmsg, RN_EINVAL,
                        "%s is not supported on streams", tok_word(f, i, w, sizeof w));
        } else if ((front_tok_is(f, i, "LIMIT") || front_tok_is(f, i, "EMIT") ||
                    front_tok_is(f, i, "WITH")) && phase >= 1) {
            f->tail_b = i;
            break;
        } else if ((front_tok_is(f, i, "WHERE") || front_tok_is(f, i, "GROUP") ||
                    front_tok_is(f, i, "HAVING") || front_tok_is(f, i, "FROM")) && phase >= 1) {
            return unexpected(f, i, erroff, errmsg,
                              "clauses go in the order FROM, WHERE, GROUP BY, HAVING, EMIT, WITH");
        }
    }
    if (phase == 0)
        return ferr(erroff, (int)f->len, errmsg, RN_EINVAL,
                    "a streamsql SELECT reads a stream: FROM is missing");
    int end = f->tail_b;
    if (phase == 1) { /* from runs to end */ }
    if (phase == 2) f->where_e = end;
    if (phase == 3) f->group_e = end;
    if (phase == 4) f->having_e = end;
    int from_e = f->where_b > 0 ? f->where_b - 1 : f->group_b > 0 ? f->group_b - 2
                 : f->having_b > 0 ? f->having_b - 1 : end;
    if (f->sel_e == f->sel_b)
        return unexpected(f, f->sel_b, erroff, errmsg, "nothing selected");
    int nsrc = from_e - from_b;
    int sj = parse_stream_join(f, from_b, from_e, erroff, errmsg);
    if (sj != 0) return sj < 0 ? sj : parse_tail(f, f->tail_b, erroff, errmsg);
    for (int j = from_b; j < from_e && !f->tvf; j++)
        if (f->toks[j].depth == 0 && front_tok_is(f, j, "JOIN")) {
            int rc = parse_join(f, from_b, from_e, erroff, errmsg);
            if (rc != 0) return rc;
            nsrc = 1;
            break;
        }
    if (front_tok_is(f, from_b, "TABLE") && from_b + 1 < from_e &&
        f->toks[from_b + 1].kind == TK_LP) {
        int rc = parse_tvf(f, from_b, from_e, erroff, errmsg);
        if (rc != 0) return rc;
        from_b = f->tvf_src;
        nsrc = 1;
    }
    if (nsrc < 1 || !is_name_tok(f, from_b) ||
        !(nsrc == 1 || (nsrc == 2 && is_name_tok(f, from_b + 1)) ||
          (nsrc == 3 && front_tok_is(f, from_b + 1, "AS") && is_name_tok(f, from_b + 2))))
        return ferr(erroff, tok_off(f, from_b), errmsg, RN_EINVAL,
                    "FROM reads one stream or topic, or joins a table to it (FROM s [LEFT] "
                    "JOIN t ON s.k = t.id); subqueries and lists are not supported");
    f->src_tok = from_b;
    if (front_ident(f, from_b, f->name, sizeof f->name) != 0)
        return ferr(erroff, tok_off(f, from_b), errmsg, RN_EINVAL, "stream name too long");
    if ((f->where_b >= 0 && f->where_e == f->where_b) ||
        (f->group_b >= 0 && f->group_e == f->group_b) ||
        (f->having_b >= 0 && f->having_e == f->having_b))
        return unexpected(f, end, erroff, errmsg, "an empty clause");
    int rc = mark_subqueries(f, erroff, errmsg);
    if (rc == 0) rc = check_stream_reads(f, erroff, errmsg);
    if (rc != 0) return rc;
    return parse_tail(f, f->tail_b, erroff, errmsg);
}

/* INTERVAL literals (SQL's and Flink's): INTERVAL '10' SECOND, INTERVAL 10 MINUTES,
 * INTERVAL '1.5' HOUR, INTERVAL '10 seconds'. Each becomes its value in ms, padded
 * with spaces over the literal's bytes (errors point at the literal's start) (an integer never needs more room:
 * "INTERVAL 'n' DAY" has 14 + n bytes, its ms at most n + 8 digits), so every
 * offset stays the user's and every place that takes a duration in ms (window
 * sizes, WITH options, arithmetic on ts) takes an INTERVAL. A name "interval" not
 * followed by a string or number is left alone. */
static int rewrite_intervals(front_t *f, int *erroff, char *errmsg)
{
    static const struct { const char *u; int64_t ms; } units[] = {
        {"MILLISECOND", 1}, {"MILLISECONDS", 1}, {"SECOND", 1000}, {"SECONDS", 1000},
        {"MINUTE", 60000}, {"MINUTES", 60000}, {"HOUR", 3600000}, {"HOURS", 3600000},
        {"DAY", 86400000}, {"DAYS", 86400000},
    };
    for (int i = 0; i + 1 < f->ntoks; i++) {
        if (!front_tok_is(f, i, "INTERVAL") ||
            (f->toks[i + 1].kind != TK_STR && f->toks[i + 1].kind != TK_NUM))
            continue;
        char v[64];
        int last = i + 1;
        int64_t ms = -1;
        if (f->toks[i + 1].kind == TK_STR ? front_ident(f, i + 1, v, sizeof v) != 0
                                           : f->toks[i + 1].len >= sizeof v)
            return ferr(erroff, tok_off(f, i + 1), errmsg, RN_EINVAL, "INTERVAL value too long");
        if (f->toks[i + 1].kind == TK_NUM) {
            memcpy(v, f->sql + f->toks[i + 1].off, f->toks[i + 1].len);
            v[f->toks[i + 1].len] = '\0';
        }
        int unit = -1;
        for (size_t k = 0; i + 2 < f->ntoks && k < sizeof units / sizeof units[0]; k++)
            if (front_tok_is(f, i + 2, units[k].u)) unit = (int)k;
        if (unit >= 0) {
            char *end;
            errno = 0;
            double d = strtod(v, &end);
            while (*end == ' ') end++;
            if (*end || errno || !(d >= 0) || d > 1e13 || v[0] == '-' || v[0] == '+' ||
                d * (double)units[unit].ms != floor(d * (double)units[unit].ms))
                return ferr(erroff, tok_off(f, i + 1), errmsg, RN_EINVAL,
                            "bad INTERVAL value '%s': a number >= 0 giving whole milliseconds "
                            "(INTERVAL '10' SECOND)", v);
            ms = (int64_t)(d * (double)units[unit].ms);
            last = i + 2;
        } else if (f->toks[i + 1].kind == TK_STR && front_interval(v, strlen(v), &ms) == 0) {
            last = i + 1;             /* INTERVAL '10 seconds' */
        } else {
            char w[48];
            const char *u = i + 2 < f->ntoks ? tok_word(f, i + 2, w, sizeof w) : "";
            int fixed = !strncasecmp(u, "MONTH", 5) || !strncasecmp(u, "YEAR", 4) ||
                        !strncasecmp(u, "WEEK", 4);
            return ferr(erroff, tok_off(f, i + 2 < f->ntoks ? i + 2 : i + 1), errmsg, RN_EINVAL,
                        "INTERVAL takes a unit MILLISECOND, SECOND, MINUTE, HOUR or DAY "
                        "(INTERVAL '10' SECOND)%s", fixed ? "; months and years have no fixed "
                        "length in milliseconds" : "");
        }
        if (front_tok_is(f, last + 1, "TO"))
            return ferr(erroff, tok_off(f, last + 1), errmsg, RN_EINVAL,
                        "INTERVAL ... TO ... is not supported; write one unit "
                        "(INTERVAL '90' SECOND)");
        if (!f->own) {
            f->own = malloc(f->len + 1);
            if (!f->own) return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
            memcpy(f->own, f->sql, f->len);
            f->own[f->len] = '\0';
        }
        size_t b = f->toks[i].off, e = (size_t)tok_end(f, last);
        char num[24];
        int nn = snprintf(num, sizeof num, "%lld", (long long)ms);
        memset(f->own + b, ' ', e - b);
        memcpy(f->own + b, num, (size_t)nn);
        i = last;
    }
    if (!f->own) return 0;
    f->sql = f->own;
    free(f->toks);
    f->toks = NULL;
    return tokenize(f, erroff, errmsg);
}

/* ---- SQL functions ----------------------------------------------------------- */

static int append(rn_buf_t *b, const char *p, size_t n);
static int appendf(rn_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *cast_type(ftype_t t)
{
    return t == FT_REAL ? "REAL" : t == FT_INTEGER || t == FT_BOOLEAN ? "INTEGER" : "TEXT";
}

/* Tokens [i, e) of f: name(p T, ...) RETURNS R AS 'body'. */
static int parse_function_toks(const front_t *f, int i, udf_def_t *d, int *erroff, char *errmsg)
{
    static const char form[] = "CREATE FUNCTION name(a TYPE, ...) RETURNS TYPE AS 'expression'";
    memset(d, 0, sizeof *d);
    if (!is_name_tok(f, i) || front_ident(f, i, d->name, sizeof d->name) != 0 || !d->name[0])
        return unexpected(f, i, erroff, errmsg, form);
    if (strncmp(d->name, "__", 2) == 0)
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "'%s': names starting with __ are the engine's own", d->name);
    if (rn_meta_check_name("function", d->name, errmsg) != 0) {
        if (erroff) *erroff = tok_off(f, i);
        return RN_EINVAL;
    }
    i++;
    if (i >= f->ntoks || f->toks[i].kind != TK_LP) return unexpected(f, i, erroff, errmsg, form);
    int close = match_paren(f, i);
    i++;
    while (i < close) {
        if (d->nparams == RN_SQL_MAX_PARAMS)
            return ferr(erroff, tok_off(f, i), errmsg, RN_ETOOBIG,
                        "a function takes at most %d parameters", RN_SQL_MAX_PARAMS);
        char *pn = d->pname[d->nparams];
        if (!is_name_tok(f, i) || front_ident(f, i, pn, RN_SQL_MAX_NAME + 1) != 0 || !pn[0])
            return unexpected(f, i, erroff, errmsg, "a parameter is NAME TYPE");
        for (int k = 0; k < d->nparams; k++)
            if (strcasecmp(d->pname[k], pn) == 0)
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "parameter '%s' is declared twice", pn);
        i++;
        if (i >= close || f->toks[i].kind != TK_ID ||
            sql_type_from_name(f->sql + f->toks[i].off, f->toks[i].len,
                               &d->ptype[d->nparams]) != 0)
            return unexpected(f, i, erroff, errmsg,
                              "parameter types are INTEGER, REAL, TEXT, BOOLEAN or JSON");
        i++;
        d->nparams++;
        if (i < close) {
            if (f->toks[i].kind != TK_COMMA)
                return unexpected(f, i, erroff, errmsg, "parameters are separated by ','");
            i++;
        }
    }
    i = close + 1;
    if (!front_tok_is(f, i, "RETURNS") || i + 1 >= f->ntoks || f->toks[i + 1].kind != TK_ID ||
        sql_type_from_name(f->sql + f->toks[i + 1].off, f->toks[i + 1].len, &d->rtype) != 0)
        return unexpected(f, front_tok_is(f, i, "RETURNS") ? i + 1 : i, erroff, errmsg,
                          "RETURNS INTEGER, REAL, TEXT, BOOLEAN or JSON");
    i += 2;
    if (!front_tok_is(f, i, "AS") || i + 1 >= f->ntoks || f->toks[i + 1].kind != TK_STR)
        return unexpected(f, front_tok_is(f, i, "AS") ? i + 1 : i, erroff, errmsg,
                          "AS 'expression' (the body is a string; double its quotes)");
    size_t cap = f->toks[i + 1].len;
    if (!(d->body = malloc(cap)))
        return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
    front_ident(f, i + 1, d->body, cap);
    if (!d->body[strspn(d->body, " \t\r\n")])
        return ferr(erroff, tok_off(f, i + 1), errmsg, RN_EINVAL, "the function's body is empty");
    if (i + 2 < f->ntoks) return unexpected(f, i + 2, erroff, errmsg, "nothing after the body");
    return 0;
}

int rn_front_parse_function(const char *text, size_t len, udf_def_t *d, int *erroff,
                            char *errmsg)
{
    front_t f;
    memset(&f, 0, sizeof f);
    f.sql = text;
    f.len = len;
    int rc = tokenize(&f, erroff, errmsg);
    if (rc == 0) rc = parse_function_toks(&f, 0, d, erroff, errmsg);
    free(f.toks);
    return rc;
}

/* name as a quoted identifier, its quotes doubled */
static int append_qid(rn_buf_t *out, const char *name)
{
    int rc = append(out, "\"", 1);
    for (const char *p = name; rc == 0 && *p; p++)
        rc = *p == '"' ? append(out, "\"\"", 2) : append(out, p, 1);
    return rc == 0 ? append(out, "\"", 1) : rc;
}

int rn_front_function_text(const udf_def_t *d, rn_buf_t *out)
{
    int rc = append_qid(out, d->name);
    if (rc == 0) rc = append(out, "(", 1);
    for (int k = 0; rc == 0 && k < d->nparams; k++) {
        if (k) rc = append(out, ", ", 2);
        if (rc == 0) rc = append_qid(out, d->pname[k]);
        if (rc == 0) rc = appendf(out, " %s", rn_front_ftype_name(d->ptype[k]));
    }
    if (rc == 0) rc = appendf(out, ") RETURNS %s AS '", rn_front_ftype_name(d->rtype));
    for (const char *p = d->body; rc == 0 && *p; p++)
        rc = *p == '\'' ? append(out, "''", 2) : append(out, p, 1);
    if (rc == 0) rc = append(out, "'", 2);      /* with the NUL */
    return rc;
}

int rn_front_udf_sql(const udf_def_t *d, rn_buf_t *out, int *erroff, char *errmsg)
{
    front_t f;
    memset(&f, 0, sizeof f);
    f.sql = d->body;
    f.len = strlen(d->body);
    int rc = tokenize(&f, erroff, errmsg);
    if (rc == 0) rc = rewrite_intervals(&f, erroff, errmsg);
    if (rc == 0 && f.ntoks == 0) rc = ferr(erroff, 0, errmsg, RN_EINVAL, "an empty body");
    if (rc == 0) rc = appendf(out, "SELECT CAST((");
    size_t pos = 0;
    for (int i = 0; rc == 0 && i < f.ntoks; i++) {
        char w[RN_SQL_MAX_NAME * 4 + 1];
        if (f.toks[i].kind == TK_SEMI || front_tok_is(&f, i, "SELECT") ||
            front_tok_is(&f, i, "FROM") || front_tok_is(&f, i, "VALUES")) {
            rc = ferr(erroff, tok_off(&f, i), errmsg, RN_EINVAL,
                      "function %s's body is one expression over its parameters: no "
                      "subquery, table or second statement", d->name);
            break;
        }
        if (!is_name_tok(&f, i) || front_ident(&f, i, w, sizeof w) != 0) continue;
        if (strncmp(w, "__", 2) == 0) {
            rc = ferr(erroff, tok_off(&f, i), errmsg, RN_EINVAL,
                      "'%s': names starting with __ are the engine's own", w);
            break;
        }
        if ((i > 0 && f.toks[i - 1].kind == TK_DOT) ||
            (i + 1 < f.ntoks && f.toks[i + 1].kind == TK_LP))
            continue;
        for (int k = 0; k < d->nparams; k++)
            if (strcasecmp(w, d->pname[k]) == 0) {
                rc = append(out, f.sql + pos, f.toks[i].off - pos);
                if (rc == 0) rc = appendf(out, "CAST(?%d AS %s)", k + 1, cast_type(d->ptype[k]));
                pos = (size_t)tok_end(&f, i);
                break;
            }
    }
    if (rc == 0) rc = append(out, f.sql + pos, f.len - pos);
    if (rc == 0) rc = appendf(out, ") AS %s)", cast_type(d->rtype));
    if (rc == 0) rc = append(out, "", 1);
    if (rc == -ENOMEM || rc == RN_ETOOBIG) rc = ferr(erroff, -1, errmsg, rc, "body too long");
    free(f.toks);
    free(f.own);
    if (rc != 0) rn_buf_free(out);
    return rc;
}

void rn_udf_def_free(udf_def_t *d)
{
    free(d->body);
    d->body = NULL;
}

int rn_front_parse(front_t *f, const char *sql, size_t len, int *erroff, char *errmsg)
{
    memset(f, 0, sizeof *f);
    f->sql = sql;
    f->len = len;
    f->limit = -1;
    f->batch_base = -1;
    if (erroff) *erroff = -1;
    if (len > RN_SQL_MAX_SQL_LEN)
        return ferr(erroff, -1, errmsg, RN_ETOOBIG,
                    "statement is %zu bytes long; the limit is %d bytes", len,
                    RN_SQL_MAX_SQL_LEN);
    int rc = tokenize(f, erroff, errmsg);
    if (rc == 0) rc = rewrite_intervals(f, erroff, errmsg);
    if (rc != 0) return rc;
    if (f->ntoks == 0) return ferr(erroff, 0, errmsg, RN_EINVAL, "empty statement");
    if (front_tok_is(f, 0, "EXPLAIN")) {
        f->kind = SK_EXPLAIN;
        f->body = 1;
        if (front_tok_is(f, 1, "QUERY") && front_tok_is(f, 2, "PLAN")) f->body = 3;
        if (!front_tok_is(f, f->body, "SELECT"))
            return unexpected(f, f->body, erroff, errmsg, "EXPLAIN explains a SELECT");
        return parse_select(f, erroff, errmsg);
    }
    if (front_tok_is(f, 0, "SELECT")) {
        f->kind = SK_SELECT;
        return parse_select(f, erroff, errmsg);
    }
    if (front_tok_is(f, 0, "CREATE") && front_tok_is(f, 1, "STREAM")) {
        f->kind = SK_CREATE;
        return parse_create(f, erroff, errmsg);
    }
    if (front_tok_is(f, 0, "CREATE") && front_tok_is(f, 1, "TABLE") &&
        front_tok_is(f, 3, "AS"))
        return parse_create_table_as(f, erroff, errmsg);
    if (front_tok_is(f, 0, "CREATE") && front_tok_is(f, 1, "TABLE")) {
        f->kind = SK_CREATE_TABLE;
        return parse_create_table(f, erroff, errmsg);
    }
    if (front_tok_is(f, 0, "SHOW") && front_tok_is(f, 1, "TABLES")) {
        f->kind = SK_SHOW_TABLES;
        if (f->ntoks > 2) return unexpected(f, 2, erroff, errmsg, NULL);
        return 0;
    }
    if (front_tok_is(f, 0, "CREATE") && front_tok_is(f, 1, "FUNCTION")) {
        f->kind = SK_CREATE_FN;
        return parse_function_toks(f, 2, &f->fn, erroff, errmsg);
    }
    if (front_tok_is(f, 0, "DROP") && front_tok_is(f, 1, "FUNCTION")) {
        int i = 2;
        f->kind = SK_DROP_FN;
        if (front_tok_is(f, i, "IF") && front_tok_is(f, i + 1, "EXISTS")) {
            f->if_exists = 1;
            i += 2;
        }
        if (!is_name_tok(f, i) || front_ident(f, i, f->name, sizeof f->name) != 0)
            return unexpected(f, i, erroff, errmsg, "a function name is expected");
        f->name_tok = i;
        if (i + 1 < f->ntoks) return unexpected(f, i + 1, erroff, errmsg, NULL);
        return 0;
    }
    if (front_tok_is(f, 0, "SHOW") && front_tok_is(f, 1, "FUNCTIONS")) {
        f->kind = SK_SHOW_FN;
        if (f->ntoks > 2) return unexpected(f, 2, erroff, errmsg, NULL);
        return 0;
    }
    if ((front_tok_is(f, 0, "DROP") && (front_tok_is(f, 1, "STREAM") ||
                                        front_tok_is(f, 1, "TABLE"))) ||
        front_tok_is(f, 0, "DESCRIBE") || front_tok_is(f, 0, "DESC")) {
        int i = 1;
        f->kind = SK_DESCRIBE;
        if (front_tok_is(f, 0, "DROP")) {
            f->kind = front_tok_is(f, 1, "TABLE") ? SK_DROP_TABLE : SK_DROP;
            i = 2;
            if (front_tok_is(f, i, "IF") && front_tok_is(f, i + 1, "EXISTS")) {
                f->if_exists = 1;
                i += 2;
            }
        }
        if (!is_name_tok(f, i) || front_ident(f, i, f->name, sizeof f->name) != 0)
            return unexpected(f, i, erroff, errmsg, "a stream name is expected");
        f->name_tok = i;
        if (i + 1 < f->ntoks) return unexpected(f, i + 1, erroff, errmsg, NULL);
        return 0;
    }
    if (front_tok_is(f, 0, "SHOW") && (front_tok_is(f, 1, "STREAMS"))) {
        f->kind = SK_SHOW;
        if (f->ntoks > 2) return unexpected(f, 2, erroff, errmsg, NULL);
        return 0;
    }
    if (front_tok_is(f, 0, "INSERT"))
        return ferr(erroff, 0, errmsg, RN_EINVAL,
                    "INSERT INTO ... SELECT defines a pipeline: create it with "
                    "runnel pipeline create \"CREATE PIPELINE name AS INSERT INTO ...\"");
    if (front_tok_is(f, 0, "WITH"))
        return ferr(erroff, 0, errmsg, RN_EINVAL,
                    "common table expressions (WITH ... SELECT) are not supported on streams");
    char w[48];
    return ferr(erroff, 0, errmsg, RN_EINVAL,
                "unknown statement '%s': streamsql runs SELECT, EXPLAIN SELECT, CREATE STREAM, "
                "DROP STREAM, SHOW STREAMS, CREATE TABLE, DROP TABLE, SHOW TABLES, DESCRIBE, "
                "CREATE FUNCTION, DROP FUNCTION, SHOW FUNCTIONS", tok_word(f, 0, w, sizeof w));
}

/* ---- planning: windows, keys, aggregates ------------------------------------------- */

static const struct { const char *name; agg_kind_t kind; } agg_names[] = {
    {"count", AG_COUNT}, {"sum", AG_SUM}, {"total", AG_TOTAL}, {"avg", AG_AVG},
    {"min", AG_MIN}, {"max", AG_MAX}, {"first", AG_FIRST}, {"last", AG_LAST},
    {"stddev", AG_STD_SAMP}, {"stddev_samp", AG_STD_SAMP}, {"stddev_pop", AG_STD_POP},
    {"variance", AG_VAR_SAMP}, {"var_samp", AG_VAR_SAMP}, {"var_pop", AG_VAR_POP},
    {"percentile_approx", AG_PCTL}, {"approx_count_distinct", AG_HLL},
    {"__rn_topn", AG_TOPN},        /* the rows form of a Window TopN (topn.c), generated */
};
#define AGG_LIST "count, count(DISTINCT), sum, total, avg, min, max, first, last, stddev, " \
                 "stddev_samp, stddev_pop, variance, var_samp, var_pop, " \
                 "approx_count_distinct, percentile_approx (any with FILTER (WHERE ...))"
static const char *const unsupported_aggs[] = {"group_concat", "string_agg", "json_group_array",
                                               "json_group_object", "median", "percentile"};

static int append(rn_buf_t *b, const char *p, size_t n)
{
    return rn_buf_append(b, p, n, 4 * (size_t)RN_SQL_MAX_SQL_LEN);
}

static int appendf(rn_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) return RN_ETOOBIG;
    return append(b, tmp, (size_t)n);
}

/* Token text of [b, e) joined by single spaces: a normalized form. */
static int norm_text(const front_t *f, int b, int e, rn_buf_t *out)
{
    for (int i = b; i < e; i++) {
        tok_kind_t pk = i > b ? f->toks[i - 1].kind : TK_LP, k = f->toks[i].kind;
        int word = (pk == TK_ID || pk == TK_QID || pk == TK_NUM || pk == TK_STR || pk == TK_OP) &&
                   (k == TK_ID || k == TK_QID || k == TK_NUM || k == TK_STR || k == TK_OP);
        if (word && append(out, " ", 1) != 0) return -ENOMEM;
        if (append(out, f->sql + f->toks[i].off, f->toks[i].len) != 0) return -ENOMEM;
    }
    return append(out, "", 1);      /* NUL */
}

static char *dup_range(const front_t *f, int b, int e)
{
    size_t ob = f->toks[b].off, oe = (size_t)tok_end(f, e - 1);
    char *s = malloc(oe - ob + 1);
    if (!s) return NULL;
    memcpy(s, f->sql + ob, oe - ob);
    s[oe - ob] = '\0';
    return s;
}

/* An aggregate call found by agg_at. */
typedef struct acall {
    agg_kind_t kind;
    int        distinct;
    int        ab, ae;       /* the argument's tokens */
    int        close;        /* the last token of the call (its ')' or FILTER's) */
    int        fb, fe;       /* FILTER (WHERE ...)'s condition tokens; fb -1: none */
    double     param;        /* percentile_approx's fraction */
} acall_t;

/* Is there an aggregate call at token i (below end)? 1 with it in *ac; 0
 * when not (including min/max with several arguments: scalar); <0 error. */
static int agg_at(const front_t *f, int i, int end, acall_t *ac, int *erroff, char *errmsg)
{
    if (f->toks[i].kind != TK_ID || i + 1 >= end || f->toks[i + 1].kind != TK_LP) return 0;
    if (i > 0 && f->toks[i - 1].kind == TK_DOT) return 0;
    if (f->insub && f->insub[i]) return 0;     /* a subquery's own aggregate: per row */
    int k;
    int nagg = (int)(sizeof agg_names / sizeof agg_names[0]);
    for (k = 0; k < nagg; k++)
        if (front_tok_is(f, i, agg_names[k].name)) break;
    if (k == nagg) {
        for (size_t u = 0; u < sizeof unsupported_aggs / sizeof unsupported_aggs[0]; u++)
            if (front_tok_is(f, i, unsupported_aggs[u]))
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "aggregate %s() is not supported on streams; supported: "
                            AGG_LIST, unsupported_aggs[u]);
        return 0;
    }
    int c = match_paren(f, i + 1);
    int d = f->toks[i + 1].depth + 1;
    int commas = 0, comma = -1;
    for (int j = i + 2; j < c; j++)
        if (f->toks[j].kind == TK_COMMA && f->toks[j].depth == d) {
            commas++;
            if (comma < 0) comma = j;
        }
    agg_kind_t kd = agg_names[k].kind;
    memset(ac, 0, sizeof *ac);
    ac->fb = ac->fe = -1;
    if (commas && (kd == AG_MIN || kd == AG_MAX)) return 0;
    if (kd == AG_PCTL) {
        char num[32];
        char *endp = NULL;
        if (commas == 1 && c - comma == 2 && f->toks[comma + 1].kind == TK_NUM &&
            f->toks[comma + 1].len < sizeof num) {
            memcpy(num, f->sql + f->toks[comma + 1].off, f->toks[comma + 1].len);
            num[f->toks[comma + 1].len] = '\0';
            ac->param = strtod(num, &endp);
        }
        if (!endp || *endp || !(ac->param >= 0 && ac->param <= 1))
            return ferr(erroff, tok_off(f, comma > 0 ? comma + 1 : i), errmsg, RN_EINVAL,
                        "percentile_approx(x, p) takes a constant fraction p from 0 to 1 "
                        "(0.5: the median, 0.99: the 99th percentile)");
    } else if (commas) {
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                    "%s() takes one argument on streams", agg_names[k].name);
    }
    int close = c;
    if (front_tok_is(f, c + 1, "OVER"))
        return ferr(erroff, tok_off(f, c + 1), errmsg, RN_EINVAL,
                    "OVER is not supported on streams (aggregate with GROUP BY TUMBLE(ts, '1m') "
                    "or HOP, SESSION)");
    if (front_tok_is(f, c + 1, "FILTER")) {
        if (c + 3 >= f->ntoks || f->toks[c + 2].kind != TK_LP ||
            !front_tok_is(f, c + 3, "WHERE") || match_paren(f, c + 2) == c + 4)
            return ferr(erroff, tok_off(f, c + 1), errmsg, RN_EINVAL,
                        "FILTER is written %s(...) FILTER (WHERE condition)", agg_names[k].name);
        ac->fb = c + 4;
        ac->fe = match_paren(f, c + 2);
        close = ac->fe;
        for (int j = ac->fb; j < ac->fe; j++) {
            acall_t in;
            int r = agg_at(f, j, ac->fe, &in, erroff, errmsg);
            if (r < 0) return r;
            if (r > 0)
                return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                            "an aggregate in FILTER (WHERE ...) is not valid: the condition "
                            "is evaluated per record");
        }
    }
    int a = i + 2;
    if (front_tok_is(f, a, "DISTINCT")) { ac->distinct = 1; a++; }
    else if (front_tok_is(f, a, "ALL")) a++;
    int ae = kd == AG_PCTL ? comma : c;
    if (kd == AG_COUNT && (a == c || (c - a == 1 && f->toks[a].kind == TK_STAR))) {
        if (ac->distinct)
            return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL, "count(DISTINCT *) is not valid");
        kd = AG_COUNT_STAR;
    } else if (a >= ae) {
        return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL, "%s() needs an argument",
                    agg_names[k].name);
    }
    for (int j = a; j < ae; j++) {
        acall_t in;
        int r = agg_at(f, j, ae, &in, erroff, errmsg);
        if (r < 0) return r;
        if (r > 0)
            return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                        "aggregate calls cannot be nested");
    }
    ac->kind = kd;
    ac->ab = a;
    ac->ae = ae;
    ac->close = close;
    return 1;
}

/* Find or add the aggregate call at token call; its index in *idx. */
static int agg_intern(front_t *f, int call, const acall_t *ac, int *idx, int *erroff,
                      char *errmsg)
{
    rn_buf_t t = RN_BUF_INIT;
    if (norm_text(f, call, ac->close + 1, &t) != 0) return -ENOMEM;
    /* the function name's case does not matter */
    for (size_t k = 0; k < f->toks[call].len; k++) t.data[k] = (uint8_t)tolower(t.data[k]);
    for (int k = 0; k < f->naggs; k++)
        if (strcmp(f->aggs[k].text, (char *)t.data) == 0) {
            *idx = k;
            rn_buf_free(&t);
            return 0;
        }
    if (f->naggs == RN_SQL_MAX_AGGS) {
        rn_buf_free(&t);
        return ferr(erroff, tok_off(f, call), errmsg, RN_ETOOBIG,
                    "a query has at most %d different aggregate calls", RN_SQL_MAX_AGGS);
    }
    agg_t *a = &f->aggs[f->naggs];
    a->kind = ac->kind;
    a->distinct = ac->distinct;
    a->param = ac->param;
    a->text = (char *)t.data;
    a->arg = ac->kind == AG_COUNT_STAR ? NULL : dup_range(f, ac->ab, ac->ae);
    a->filter = ac->fb >= 0 ? dup_range(f, ac->fb, ac->fe) : NULL;
    f->naggs++;
    if ((ac->kind != AG_COUNT_STAR && !a->arg) || (ac->fb >= 0 && !a->filter)) return -ENOMEM;
    *idx = f->naggs - 1;
    return 0;
}

static const char *const not_alias[] = {"NULL", "TRUE", "FALSE", "END", "AND", "OR", "NOT",
                                        "IS", "IN", "LIKE", "GLOB", "BETWEEN", "CASE", "WHEN",
                                        "THEN", "ELSE", "ESCAPE", "COLLATE", "DISTINCT",
                                        "CURRENT_TIME", "CURRENT_DATE", "CURRENT_TIMESTAMP",
                                        "ISNULL", "NOTNULL", "REGEXP", "MATCH"};

static int is_keyword(const front_t *f, int i)
{
    for (size_t k = 0; k < sizeof not_alias / sizeof not_alias[0]; k++)
        if (front_tok_is(f, i, not_alias[k])) return 1;
    return 0;
}

/* Does the select item [b, e) end with an alias? */
static int has_alias(const front_t *f, int b, int e)
{
    if (e - b < 2 || !is_name_tok(f, e - 1) || is_keyword(f, e - 1)) return 0;
    if (front_tok_is(f, e - 2, "AS")) return 1;
    const tok_t *p = &f->toks[e - 2];
    if (front_tok_is(f, e - 2, "COLLATE")) return 0;
    return (p->kind == TK_RP || p->kind == TK_NUM || p->kind == TK_STR ||
            ((p->kind == TK_ID || p->kind == TK_QID) && !is_keyword(f, e - 2)));
}

/* Operator precedence (sqlite's, higher binds tighter) of token i used as
 * an operator: PREC_NONE when it is no operator (an operand or a
 * delimiter). A '-', '+' or NOT after an operand is binary, else prefix. */
enum { PREC_NONE = 0, PREC_PRIMARY = 13, PREC_UNARY = 12 };

static int operand_end(const front_t *f, int i);

static int op_prec(const front_t *f, int i)
{
    static const struct { const char *w; int p; } words[] = {
        {"OR", 1}, {"AND", 2}, {"IS", 4}, {"IN", 4}, {"LIKE", 4}, {"GLOB", 4}, {"MATCH", 4},
        {"REGEXP", 4}, {"BETWEEN", 4}, {"ISNULL", 4}, {"NOTNULL", 4}, {"ESCAPE", 6},
        {"COLLATE", 11},
    };
    const tok_t *t = &f->toks[i];
    if (t->kind == TK_STAR) return 9;
    if (t->kind == TK_ID) {
        if (front_tok_is(f, i, "NOT")) return i > 0 && operand_end(f, i - 1) ? 4 : 3;
        for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
            if (front_tok_is(f, i, words[k].w)) return words[k].p;
        return PREC_NONE;
    }
    if (t->kind != TK_OP) return PREC_NONE;
    char s[4] = "";
    memcpy(s, f->sql + t->off, t->len < 3 ? t->len : 3);
    if (!strcmp(s, "-") || !strcmp(s, "+")) return i > 0 && operand_end(f, i - 1) ? 8 : PREC_UNARY;
    if (!strcmp(s, "~")) return PREC_UNARY;
    if (!strcmp(s, "=") || !strcmp(s, "==") || !strcmp(s, "!=") || !strcmp(s, "<>")) return 4;
    if (!strcmp(s, "<") || !strcmp(s, "<=") || !strcmp(s, ">") || !strcmp(s, ">=")) return 5;
    if (!strcmp(s, "&") || !strcmp(s, "|") || !strcmp(s, "<<") || !strcmp(s, ">>")) return 7;
    if (!strcmp(s, "/") || !strcmp(s, "%")) return 9;
    if (!strcmp(s, "||") || !strcmp(s, "->") || !strcmp(s, "->>")) return 10;
    return PREC_NONE;
}

/* Does token i end an operand (so a following '-' is binary)? */
static int operand_end(const front_t *f, int i)
{
    tok_kind_t k = f->toks[i].kind;
    if (k == TK_RP || k == TK_NUM || k == TK_STR || k == TK_QID || k == TK_PARAM) return 1;
    return k == TK_ID && op_prec(f, i) == PREC_NONE && !front_tok_is(f, i, "CASE") &&
           !front_tok_is(f, i, "WHEN") && !front_tok_is(f, i, "THEN") &&
           !front_tok_is(f, i, "ELSE") && !front_tok_is(f, i, "SELECT") &&
           !front_tok_is(f, i, "WHERE") && !front_tok_is(f, i, "HAVING");
}

/* The loosest operator of tokens [b, e) at their own nesting level:
 * PREC_PRIMARY when there is none (a name, literal, call, parentheses). */
static int expr_prec(const front_t *f, int b, int e)
{
    int p = PREC_PRIMARY, d = f->toks[b].depth, cases = 0;
    for (int i = b; i < e; i++) {
        if (f->toks[i].depth != d || f->toks[i].kind == TK_LP || f->toks[i].kind == TK_RP)
            continue;
        /* CASE ... END is one primary */
        if (front_tok_is(f, i, "CASE")) { cases++; continue; }
        if (front_tok_is(f, i, "END") && cases > 0) { cases--; continue; }
        int q = cases ? PREC_NONE : op_prec(f, i);
        if (q != PREC_NONE && q < p) p = q;
    }
    return p;
}

/* Is tokens [i, i + n) of the expression [b, e) a whole operand, so that
 * replacing it by a key's value keeps the meaning? Token matching alone is
 * not enough: in "a + 1 * 2" the tokens "a + 1" are no subexpression. The
 * neighbours must bind looser than the key's loosest operator (on the
 * left strictly: operators associate to the left). */
static int whole_operand(const front_t *f, int b, int e, int i, int n)
{
    static const char *const left_delim[] = {"SELECT", "WHERE", "HAVING", "WHEN", "THEN",
                                             "ELSE", "CASE", "DISTINCT", "ALL"};
    static const char *const right_delim[] = {"AS", "THEN", "ELSE", "END", "WHEN"};
    int p = expr_prec(f, i, i + n);
    if (p == PREC_PRIMARY) return 1;
    int left = i - 1, right = i + n, ok = 0;
    if (left < b || f->toks[left].kind == TK_LP || f->toks[left].kind == TK_COMMA) ok = 1;
    for (size_t k = 0; !ok && k < sizeof left_delim / sizeof left_delim[0]; k++)
        ok = front_tok_is(f, left, left_delim[k]);
    if (!ok) {
        int q = op_prec(f, left);
        ok = q != PREC_NONE && q < p;
    }
    if (!ok) return 0;
    if (right >= e || f->toks[right].kind == TK_RP || f->toks[right].kind == TK_COMMA) return 1;
    for (size_t k = 0; k < sizeof right_delim / sizeof right_delim[0]; k++)
        if (front_tok_is(f, right, right_delim[k])) return 1;
    if (right == e - 1 && has_alias(f, b, e)) return 1;
    int q = op_prec(f, right);
    return q != PREC_NONE && q <= p;
}

/* Does key k's token sequence start at token i, as a whole operand of the
 * expression [b, e)? */
static int key_at(const front_t *f, int b, int i, int end, const int *kb, const int *ke, int k)
{
    int n = ke[k] - kb[k];
    if (i + n > end || (i > 0 && f->toks[i - 1].kind == TK_DOT)) return 0;
    if (i + n < f->ntoks && (f->toks[i + n].kind == TK_DOT || f->toks[i + n].kind == TK_LP))
        return 0;
    for (int j = 0; j < n; j++) {
        const tok_t *x = &f->toks[i + j], *y = &f->toks[kb[k] + j];
        if (x->kind != y->kind || x->len != y->len) return 0;
        int same = x->kind == TK_ID
                       ? strncasecmp(f->sql + x->off, f->sql + y->off, x->len) == 0
                       : memcmp(f->sql + x->off, f->sql + y->off, x->len) == 0;
        if (!same) return 0;
    }
    return whole_operand(f, b, end, i, n);
}

/* Rewrite tokens [b, e) into out: aggregate calls -> __aN, keys -> __kN. */
static int rewrite(front_t *f, int b, int e, const int *kb, const int *ke, rn_buf_t *out,
                   int *erroff, char *errmsg)
{
    size_t pos = f->toks[b].off;
    for (int i = b; i < e;) {
        acall_t ac;
        int idx = -1;
        int r = agg_at(f, i, e, &ac, erroff, errmsg);
        if (r < 0) return r;
        int next = i + 1;
        if (r > 0) {
            int rc = agg_intern(f, i, &ac, &idx, erroff, errmsg);
            if (rc != 0) return rc;
            if (append(out, f->sql + pos, f->toks[i].off - pos) != 0 ||
                appendf(out, "__a%d", idx) != 0)
                return -ENOMEM;
            next = ac.close + 1;
        } else {
            for (int k = 0; k < f->nkeys; k++)
                if (key_at(f, b, i, e, kb, ke, k)) {
                    if (append(out, f->sql + pos, f->toks[i].off - pos) != 0 ||
                        appendf(out, "__k%d", k) != 0)
                        return -ENOMEM;
                    next = i + (ke[k] - kb[k]);
                    r = 1;
                    break;
                }
            if (!r && f->insub[i])
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "a subquery in the select list or HAVING of an aggregating query is "
                            "not supported (it would see the emitted groups, not the records); "
                            "use it in WHERE, inside an aggregate's argument or as a GROUP BY "
                            "key");
        }
        if (r > 0) pos = (size_t)tok_end(f, next - 1);
        i = next;
    }
    return append(out, f->sql + pos, (size_t)tok_end(f, e - 1) - pos) == 0 ? 0 : -ENOMEM;
}

/* The affinity sqlite gives GROUP BY key [b, e): a bare column keeps its
 * declared type's (so "at >= '5'" compares as numbers after the key is
 * replaced by the emitted value, as it does in sqlite); any other
 * expression has none. */
static char key_affinity(const front_t *f, int b, int e, const sdef_t *def)
{
    static const char builtin_aff[] = {'i', 'i', 'i', 't', 't'};   /* queue .. value */
    static const char field_aff[] = {'i', 'r', 't', 'i', 't'};     /* by ftype_t */
    static const char *const builtin[] = {"queue", "offset", "ts", "key", "value"};
    int t = b;
    if (e - b == 3 && is_name_tok(f, b) && f->toks[b + 1].kind == TK_DOT) t = b + 2;
    else if (e - b != 1) return 'n';
    char name[RN_SQL_MAX_NAME * 4 + 1];
    if (!is_name_tok(f, t) || front_ident(f, t, name, sizeof name) != 0) return 'n';
    for (int k = 0; k < def->nfields; k++)
        if (strcasecmp(def->fields[k].name, name) == 0) return field_aff[def->fields[k].type];
    for (size_t k = 0; k < sizeof builtin / sizeof builtin[0]; k++)
        if (strcasecmp(builtin[k], name) == 0) return builtin_aff[k];
    return 'n';
}

static int plan_window_args(front_t *f, int w, int t, int a1, int a2, const sdef_t *def,
                            int *erroff, char *errmsg);

static int plan_window(front_t *f, int b, int e, const sdef_t *def, int *erroff, char *errmsg)
{
    static const char *const names[] = {"TUMBLE", "HOP", "SESSION"};
    static const int nargs[] = {2, 3, 2};
    static const char *const forms[] = {"TUMBLE(ts, '10s')", "HOP(ts, '1m', '10s') (size, slide)",
                                        "SESSION(ts, '30s') (gap)"};
    int w = -1;
    for (int k = 0; k < 3; k++)
        if (front_tok_is(f, b, names[k])) w = k;
    if (w < 0 || b + 1 >= e || f->toks[b + 1].kind != TK_LP || match_paren(f, b + 1) != e - 1)
        return 0;
    if (f->win != WK_GLOBAL)
        return ferr(erroff, tok_off(f, b), errmsg, RN_EINVAL, "a query has at most one window");
    int args[4] = {0, 0, 0, 0}, na = 0, d = f->toks[b + 1].depth + 1;
    args[na++] = b + 2;
    for (int j = b + 2; j < e - 1; j++)
        if (f->toks[j].kind == TK_COMMA && f->toks[j].depth == d) {
            if (na == 4) break;
            args[na++] = j + 1;
        }
    int qual = args[1] - args[0] == 4 && f->toks[args[0] + 1].kind == TK_DOT;  /* s.ts */
    if (qual) {
        char q[RN_SQL_MAX_NAME * 4 + 1];
        int st = f->join && f->salias_tok >= 0 ? f->salias_tok : f->src_tok;
        int alias = !f->join && ((is_name_tok(f, f->src_tok + 1) && f->src_tok + 1 < args[0] &&
                                  front_ident(f, f->src_tok + 1, q, sizeof q) == 0 &&
                                  name_is(f, args[0], q)) ||
                                 (front_tok_is(f, f->src_tok + 1, "AS") &&
                                  front_ident(f, f->src_tok + 2, q, sizeof q) == 0 &&
                                  name_is(f, args[0], q)));
        if (!alias && (front_ident(f, st, q, sizeof q) != 0 || !name_is(f, args[0], q)))
            return ferr(erroff, tok_off(f, args[0]), errmsg, RN_EINVAL,
                        "%s groups by the stream's event time: write %s(%s.ts, ...)", names[w],
                        names[w], q);
        args[0] += 2;
    }
    /* Processing time: TUMBLE(proctime(), '10s'), a window over the wall clock. */
    if (args[1] - args[0] == 4 && front_tok_is(f, args[0], "proctime") &&
        f->toks[args[0] + 1].kind == TK_LP && f->toks[args[0] + 2].kind == TK_RP) {
        f->proctime = 1;
        args[0] += 2;
    }
    if (na != nargs[w] || args[1] - args[0] != 2 ||
        (na > 1 && args[na - 1] + 1 != e - 1) || (na == 3 && args[2] - args[1] != 2))
        return ferr(erroff, tok_off(f, b), errmsg, RN_EINVAL, "%s is written %s", names[w],
                    forms[w]);
    return plan_window_args(f, w, args[0], args[1], na == 3 ? args[2] : -1, def, erroff, errmsg);
}

/* The window of kind w (0 TUMBLE, 1 HOP, 2 SESSION) over the time column at
 * token t, of size (gap) at token a1 and, for HOP, slide at token a2. */
static int def_has_field(const sdef_t *def, const char *name)
{
    for (int k = 0; k < def->nfields; k++)
        if (strcasecmp(def->fields[k].name, name) == 0) return 1;
    return 0;
}

static int plan_window_args(front_t *f, int w, int t, int a1, int a2, const sdef_t *def,
                            int *erroff, char *errmsg)
{
    static const char *const names[] = {"TUMBLE", "HOP", "SESSION"};
    static const win_kind_t kinds[] = {WK_TUMBLE, WK_HOP, WK_SESSION};
    char col[RN_SQL_MAX_NAME * 4 + 1];
    int is_time = is_name_tok(f, t) && front_ident(f, t, col, sizeof col) == 0 &&
                  (strcasecmp(col, "ts") == 0 ||
                   (def->ts_field >= 0 && strcasecmp(col, def->fields[def->ts_field].name) == 0));
    /* DESCRIPTOR(proctime) in a window TVF: processing time, unless the
     * stream declares a field of that name. */
    if (!is_time && f->tvf && is_name_tok(f, t) && front_ident(f, t, col, sizeof col) == 0 &&
        strcasecmp(col, "proctime") == 0 && !def_has_field(def, col))
        f->proctime = 1;
    is_time |= f->proctime;
    if (!is_time) {
        char tsf[RN_SQL_MAX_NAME + 40] = "";
        if (def->ts_field >= 0)
            snprintf(tsf, sizeof tsf, " (or the stream's timestamp field '%s')",
                     def->fields[def->ts_field].name);
        char wd[48];
        return ferr(erroff, tok_off(f, t), errmsg, RN_EINVAL,
                    "%s needs the event time column ts%s, or proctime() for processing time; "
                    "'%s' is not a time column", names[w], tsf, tok_word(f, t, wd, sizeof wd));
    }
    f->win = kinds[w];
    int rc = tok_interval(f, a1, w == 2 ? "SESSION gap" : names[w], 0, &f->size_ms,
                          erroff, errmsg);
    if (rc != 0) return rc;
    if (w == 1) {
        rc = tok_interval(f, a2, "HOP slide", 0, &f->slide_ms, erroff, errmsg);
        if (rc != 0) return rc;
        if (f->slide_ms > f->size_ms || f->size_ms / f->slide_ms > RN_SQL_MAX_HOPS)
            return ferr(erroff, tok_off(f, a2), errmsg, RN_EINVAL,
                        "HOP slide must be at most the size and at least size/%d",
                        RN_SQL_MAX_HOPS);
    }
    return 1;
}

/* Names that would read the engine's per-batch internals: the stream
 * table's rowid (a row's index in its batch) and names starting with __
 * (__idx, __emit, __k0, ...). Outside subqueries (json_each has its own
 * rowid); a declared field of that name is the field. */
static int check_internal_names(const front_t *f, const sdef_t *def, int *erroff, char *errmsg)
{
    static const char *const rowids[] = {"rowid", "_rowid_", "oid"};
    for (int i = f->body; i < f->ntoks; i++) {
        if (!is_name_tok(f, i) || f->insub[i] ||
            (i + 1 < f->ntoks && f->toks[i + 1].kind == TK_LP))
            continue;
        char name[RN_SQL_MAX_NAME * 4 + 1];
        if (front_ident(f, i, name, sizeof name) != 0) continue;
        int field = 0;
        for (int k = 0; k < def->nfields; k++)
            if (strcasecmp(def->fields[k].name, name) == 0) field = 1;
        if (field) continue;
        if (strncmp(name, "__", 2) == 0)
            return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                        "'%s': names starting with __ are the engine's own", name);
        for (size_t k = 0; k < sizeof rowids / sizeof rowids[0]; k++)
            if (strcasecmp(name, rowids[k]) == 0 && f->toks[i].kind == TK_ID)
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "%s is not a column of a stream (it would number the rows of each "
                            "batch); a record's position is (queue, offset)", name);
    }
    return 0;
}

static const char *win_name_of(int w)
{
    return w == 0 ? "TUMBLE" : w == 1 ? "HOP" : "SESSION";
}

int rn_front_plan(front_t *f, const sdef_t *def, int *erroff, char *errmsg)
{
    int kb[RN_SQL_MAX_KEYS], ke[RN_SQL_MAX_KEYS];
    int rc = check_internal_names(f, def, erroff, errmsg);
    if (rc != 0) return rc;
    rn_buf_t b = RN_BUF_INIT, e = RN_BUF_INIT;
    /* aggregates in the select list or HAVING? */
    int aggregating = f->group_b >= 0 || f->having_b >= 0;
    for (int i = f->sel_b; i < f->sel_e && !aggregating; i++) {
        acall_t ac;
        int r = agg_at(f, i, f->sel_e, &ac, erroff, errmsg);
        if (r < 0) return r;
        aggregating = r;
    }
    if (!aggregating) {
        for (int i = f->tail_b; i < f->ntoks; i++)
            if (front_tok_is(f, i, "EMIT") || front_tok_is(f, i, "WITH"))
                return ferr(erroff, tok_off(f, i), errmsg, RN_EINVAL,
                            "%s applies to aggregations (GROUP BY)",
                            front_tok_is(f, i, "EMIT") ? "EMIT" : "WITH (watermark, ...)");
    }
    if (f->tvf && !aggregating)
        return ferr(erroff, tok_off(f, f->tvf_b), errmsg, RN_EINVAL,
                    "FROM TABLE(%s(...)) is supported with GROUP BY window_start, window_end"
                    "[, keys] and aggregates; to see rows, select from the stream itself",
                    win_name_of(f->tvf - 1));
    if (!aggregating && !f->distinct && f->join) {
        /* a join is rewritten (rn_front_from_text): not a prefix of the text */
        f->win = WK_NONE;
        rc = append(&b, "SELECT ", 7);
        if (rc == 0) rc = append_toks(f, f->sel_b, f->sel_e, &b);
        if (rc == 0) rc = append(&b, " FROM ", 6);
        if (rc == 0) rc = rn_front_from_text(f, &b);
        if (rc == 0 && f->where_b >= 0) rc = append(&b, " WHERE ", 7);
        if (rc == 0 && f->where_b >= 0) rc = append_toks(f, f->where_b, f->where_e, &b);
        if (rc == 0) rc = append(&b, "", 1);
        if (rc != 0) { rn_buf_free(&b); return rc; }
        f->batch_sql = (char *)b.data;
        return 0;
    }
    if (!aggregating && !f->distinct) {
        f->win = WK_NONE;
        size_t start = f->toks[f->body].off;
        size_t stop = (size_t)tok_end(f, f->tail_b - 1);
        f->batch_sql = malloc(stop - start + 1);
        if (!f->batch_sql) return -ENOMEM;
        memcpy(f->batch_sql, f->sql + start, stop - start);
        f->batch_sql[stop - start] = '\0';
        f->batch_base = (int)start;
        return 0;
    }
    if (f->distinct && aggregating)
        return ferr(erroff, tok_off(f, f->sel_b - 1), errmsg, RN_EINVAL,
                    "SELECT DISTINCT with GROUP BY is not supported; GROUP BY already groups");
    /* SELECT DISTINCT (not per batch: sqlite would remove duplicates within
     * each batch only): a global grouping by the select items that emits a
     * group's row when the group is first seen, in input order */
    if (f->distinct) f->emit_changes = 1;
    if (f->emit_changes && f->having_b >= 0)
        return ferr(erroff, tok_off(f, f->having_b - 1), errmsg, RN_EINVAL,
                    "EMIT CHANGES with HAVING is not supported: a group that stops satisfying "
                    "HAVING could not be retracted; use EMIT FINAL with HAVING, or EMIT CHANGES "
                    "without HAVING and filter the changes downstream");
    f->win = WK_GLOBAL;
    int tvf_bounds = 0;      /* bit 0 window_start, bit 1 window_end in GROUP BY */
    if (f->tvf) {
        int r = plan_window_args(f, f->tvf - 1, f->tvf_col, f->tvf_size, f->tvf_slide, def,
                                 erroff, errmsg);
        if (r < 0) return r;
    }
    /* GROUP BY items: the window and the keys */
    int ib = f->group_b;
    for (int i = f->group_b; f->group_b >= 0 && i <= f->group_e; i++) {
        if (i < f->group_e && !(f->toks[i].kind == TK_COMMA && f->toks[i].depth == 0)) continue;
        if (i == ib) return unexpected(f, i, erroff, errmsg, "an empty GROUP BY item");
        if (f->tvf && i - ib == 1 && (front_tok_is(f, ib, "window_start") ||
                                      front_tok_is(f, ib, "window_end"))) {
            tvf_bounds |= front_tok_is(f, ib, "window_start") ? 1 : 2;
            ib = i + 1;
            continue;
        }
        int r = plan_window(f, ib, i, def, erroff, errmsg);
        if (r < 0) return r;
        if (r == 0) {
            if (i - ib == 1 && f->toks[ib].kind == TK_NUM)
                return ferr(erroff, tok_off(f, ib), errmsg, RN_EINVAL,
                            "GROUP BY a column position is not supported; name the expression");
            if (f->nkeys == RN_SQL_MAX_KEYS)
                return ferr(erroff, tok_off(f, ib), errmsg, RN_ETOOBIG,
                            "at most %d GROUP BY keys", RN_SQL_MAX_KEYS);
            kb[f->nkeys] = ib;
            ke[f->nkeys] = i;
            f->key_aff[f->nkeys] = key_affinity(f, ib, i, def);
            f->keys[f->nkeys] = dup_range(f, ib, i);
            if (!f->keys[f->nkeys]) return -ENOMEM;
            f->nkeys++;
        }
        ib = i + 1;
    }
    if (f->tvf && tvf_bounds != 3)
        return ferr(erroff, tok_off(f, f->group_b >= 0 ? f->group_b : f->tvf_b), errmsg,
                    RN_EINVAL, "FROM TABLE(%s(...)) groups by its windows: write GROUP BY "
                    "window_start, window_end[, keys]",
                    win_name_of(f->tvf - 1));
    ib = f->sel_b;
    for (int i = f->sel_b; f->distinct && i <= f->sel_e; i++) {
        if (i < f->sel_e && !(f->toks[i].kind == TK_COMMA && f->toks[i].depth == 0)) continue;
        if (i == ib) return unexpected(f, i, erroff, errmsg, "an empty select item");
        int end = !has_alias(f, ib, i) ? i : front_tok_is(f, i - 2, "AS") ? i - 2 : i - 1;
        for (int j = ib; j < end; j++)
            if (f->toks[j].kind == TK_STAR && f->toks[j].depth == 0 &&
                (j == ib || f->toks[j - 1].kind == TK_DOT))
                return ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                            "SELECT DISTINCT * is not supported; name the columns");
        if (f->nkeys == RN_SQL_MAX_KEYS)
            return ferr(erroff, tok_off(f, ib), errmsg, RN_ETOOBIG,
                        "SELECT DISTINCT takes at most %d columns", RN_SQL_MAX_KEYS);
        kb[f->nkeys] = ib;
        ke[f->nkeys] = end;
        f->key_aff[f->nkeys] = key_affinity(f, ib, end, def);
        f->keys[f->nkeys] = dup_range(f, ib, end);
        if (!f->keys[f->nkeys]) return -ENOMEM;
        f->nkeys++;
        ib = i + 1;
    }
    if (f->late_dead_letter)
        return ferr(erroff, rn_front_find_ident(f, "late"), errmsg, RN_EINVAL,
                    "late = 'dead-letter' needs the dead-letter topics of pipelines, which are "
                    "not built yet; use late = 'drop' (late rows are counted and reported)");
    /* emission statement: select items, then HAVING as WHERE */
    if ((rc = append(&e, "SELECT ", 7)) != 0) goto fail;
    ib = f->sel_b;
    for (int i = f->sel_b; i <= f->sel_e; i++) {
        if (i < f->sel_e && !(f->toks[i].kind == TK_COMMA && f->toks[i].depth == 0)) continue;
        if (i == ib) { rc = unexpected(f, i, erroff, errmsg, "an empty select item"); goto fail; }
        for (int j = ib; j < i; j++)
            if (f->toks[j].kind == TK_STAR && f->toks[j].depth == 0 &&
                (j == ib || f->toks[j - 1].kind == TK_DOT)) {
                rc = ferr(erroff, tok_off(f, j), errmsg, RN_EINVAL,
                          "SELECT * cannot be used with GROUP BY; name the keys and aggregates");
                goto fail;
            }
        if (ib > f->sel_b && (rc = append(&e, ", ", 2)) != 0) goto fail;
        if ((rc = rewrite(f, ib, i, kb, ke, &e, erroff, errmsg)) != 0) goto fail;
        if (!has_alias(f, ib, i)) {
            if ((rc = append(&e, " AS \"", 5)) != 0) goto fail;
            for (uint32_t p = f->toks[ib].off; p < (uint32_t)tok_end(f, i - 1); p++)
                if ((rc = append(&e, f->sql + p, f->sql[p] == '"' ? 1 : 1)) != 0 ||
                    (f->sql[p] == '"' && (rc = append(&e, "\"", 1)) != 0))
                    goto fail;
            if ((rc = append(&e, "\"", 1)) != 0) goto fail;
        }
        ib = i + 1;
    }
    if ((rc = append(&e, " FROM __emit", 12)) != 0) goto fail;
    if (f->having_b >= 0) {
        if ((rc = append(&e, " WHERE ", 7)) != 0) goto fail;
        if ((rc = rewrite(f, f->having_b, f->having_e, kb, ke, &e, erroff, errmsg)) != 0)
            goto fail;
    }
    if ((rc = append(&e, "", 1)) != 0) goto fail;
    /* per-batch statement */
    if (f->win == WK_GLOBAL) {
        rc = append(&b, "SELECT 0", 8);
    } else {
        rc = append(&b, "SELECT ", 7);
        if (rc == 0 && f->proctime) {
            rc = append(&b, "proctime()", 10);           /* the wall clock, per row */
        } else {
            if (rc == 0 && f->join) rc = rn_front_stream_qual(f, &b);   /* the stream's ts */
            if (rc == 0 && f->join) rc = append(&b, ".", 1);
            if (rc == 0) rc = append(&b, "ts", 2);
        }
    }
    for (int k = 0; rc == 0 && k < f->nkeys; k++) {
        rc = append(&b, ", (", 3);
        if (rc == 0) rc = append(&b, f->keys[k], strlen(f->keys[k]));
        if (rc == 0) rc = append(&b, ")", 1);
    }
    for (int k = 0; rc == 0 && k < f->naggs; k++) {
        const agg_t *a = &f->aggs[k];
        int numeric = a->kind >= AG_VAR_SAMP && a->kind <= AG_PCTL;
        if (a->arg) {
            /* the statistical aggregates take numbers: a record whose argument is
             * text or a blob fails the row (fn.c's __rn_num), so it is rejected */
            rc = append(&b, numeric ? ", __rn_num((" : ", (", numeric ? 12 : 3);
            if (rc == 0) rc = append(&b, a->arg, strlen(a->arg));
            if (rc == 0 && numeric) {
                size_t nl = strcspn(a->text, "(");
                rc = appendf(&b, "), '%.*s')", (int)nl, a->text);
            } else if (rc == 0) {
                rc = append(&b, ")", 1);
            }
        }
        if (rc == 0 && a->filter) {
            rc = append(&b, ", (", 3);
            if (rc == 0) rc = append(&b, a->filter, strlen(a->filter));
            if (rc == 0) rc = append(&b, ")", 1);
        }
    }
    /* the row's index in the batch */
    if (rc == 0) rc = append(&b, ", ", 2);
    if (rc == 0 && f->join) rc = rn_front_stream_qual(f, &b);
    if (rc == 0 && f->join) rc = append(&b, ".", 1);
    if (rc == 0) rc = append(&b, "__idx FROM ", 11);
    if (rc == 0) rc = rn_front_from_text(f, &b);
    if (rc == 0 && f->where_b >= 0) {
        rc = append(&b, " WHERE ", 7);
        if (rc == 0)
            rc = append(&b, f->sql + f->toks[f->where_b].off,
                        (size_t)tok_end(f, f->where_e - 1) - f->toks[f->where_b].off);
    }
    if (rc == 0) rc = append(&b, "", 1);
    if (rc != 0) goto fail;
    f->batch_sql = (char *)b.data;
    f->emit_sql = (char *)e.data;
    return 0;
fail:
    if (rc == RN_ETOOBIG && errmsg && !errmsg[0])
        snprintf(errmsg, RN_ERRMSG_SIZE, "statement too long after rewriting");
    if (rc == -ENOMEM && errmsg) snprintf(errmsg, RN_ERRMSG_SIZE, "out of memory");
    rn_buf_free(&b);
    rn_buf_free(&e);
    return rc;
}

/* A constant pattern (a string literal) of REGEXP or regexp_like /
 * regexp_extract / regexp_replace compiles (fn.c), so a bad one fails the
 * statement with its offset rather than every record. */
static int check_patterns(const front_t *f, int *erroff, char *errmsg)
{
    for (int i = f->body; i + 1 < f->ntoks; i++) {
        int pt = -1;
        if (front_tok_is(f, i, "REGEXP")) pt = i + 1;
        else if ((front_tok_is(f, i, "regexp_like") || front_tok_is(f, i, "regexp_extract") ||
                  front_tok_is(f, i, "regexp_replace")) && f->toks[i + 1].kind == TK_LP) {
            int c = match_paren(f, i + 1), d = f->toks[i + 1].depth + 1;
            for (int j = i + 2; j < c; j++)
                if (f->toks[j].kind == TK_COMMA && f->toks[j].depth == d) {
                    int e = j + 2;
                    if (e <= c && (f->toks[e].kind == TK_COMMA || f->toks[e].kind == TK_RP))
                        pt = j + 1;
                    break;
                }
        }
        if (pt < 0 || pt >= f->ntoks || f->toks[pt].kind != TK_STR) continue;
        if (pt + 1 < f->ntoks && front_tok_is(f, i, "REGEXP") &&
            (f->toks[pt + 1].kind == TK_OP || f->toks[pt + 1].kind == TK_DOT))
            continue;     /* 'a' || x: not a constant */
        size_t cap = f->toks[pt].len + 1;
        char *pat = malloc(cap);
        if (!pat) return ferr(erroff, -1, errmsg, -ENOMEM, "out of memory");
        if (front_ident(f, pt, pat, cap) != 0) { free(pat); continue; }
        int rc = rn_fn_check_pattern(pat, strlen(pat), errmsg);
        free(pat);
        if (rc != 0) {
            if (erroff) *erroff = tok_off(f, pt);
            return rc;
        }
    }
    return 0;
}

/* Function calls outside subqueries, checked against the functions sqlite
 * knows (pragma_function_list) before any statement is prepared, so the
 * message names the function rather than a column sqlite failed on first
 * (an unknown aggregate's argument is "no such column" in the emission
 * statement). SQL keywords followed by '(' (IN, EXISTS, CAST, ...) are not
 * calls; the window of GROUP BY is not one either. */
int rn_front_check_functions(const front_t *f, sqlite3 *db, int *erroff, char *errmsg)
{
    static const char *const window_only[] = {"row_number", "rank", "dense_rank", "percent_rank",
                                              "cume_dist", "ntile", "lag", "lead", "first_value",
                                              "last_value", "nth_value"};
    static const char *const flink_bounds[] = {"tumble_start", "tumble_end", "tumble_rowtime",
                                               "hop_start", "hop_end", "hop_rowtime",
                                               "session_start", "session_end",
                                               "session_rowtime", "window_start", "window_end"};
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(db, "SELECT max(type) FROM pragma_function_list "
                           "WHERE name = lower(?1)", -1, &st, NULL) != SQLITE_OK)
        return ferr(erroff, -1, errmsg, RN_ESQLITE, "cannot list sqlite's functions: %s",
                    sqlite3_errmsg(db));
    for (int i = f->body; rc == 0 && i + 1 < f->ntoks; i++) {
        if (f->tvf && i >= f->tvf_b && i <= f->tvf_e) continue;     /* FROM TABLE(...) */
        if (f->toks[i].kind != TK_ID || f->toks[i + 1].kind != TK_LP || f->insub[i] ||
            (i > 0 && f->toks[i - 1].kind == TK_DOT) ||
            sqlite3_keyword_check(f->sql + f->toks[i].off, (int)f->toks[i].len))
            continue;
        int in_group = f->group_b >= 0 && i >= f->group_b && i < f->group_e &&
                       f->toks[i].depth == 0;
        char name[RN_SQL_MAX_NAME + 1];
        if (f->toks[i].len >= sizeof name) continue;    /* sqlite reports it */
        memcpy(name, f->sql + f->toks[i].off, f->toks[i].len);
        name[f->toks[i].len] = '\0';
        int ours = 0;
        for (size_t k = 0; k < sizeof agg_names / sizeof agg_names[0]; k++)
            if (strcasecmp(name, agg_names[k].name) == 0) ours = 1;
        if (ours) continue;
        int off = tok_off(f, i);
        if (strcasecmp(name, "TUMBLE") == 0 || strcasecmp(name, "HOP") == 0 ||
            strcasecmp(name, "SESSION") == 0) {
            if (in_group) continue;
            rc = ferr(erroff, off, errmsg, RN_EINVAL,
                      "%s(...) defines the window and goes in GROUP BY (GROUP BY %s(ts, ...), "
                      "keys); select window_start and window_end for its bounds", name, name);
            break;
        }
        if (strcasecmp(name, "load_extension") == 0)
            rc = ferr(erroff, off, errmsg, RN_EINVAL, "load_extension() is not available to "
                      "statements: native functions are loaded by the operator (streamsql or "
                      "runneld --udf-dir DIR)");
        for (size_t k = 0; k < sizeof flink_bounds / sizeof flink_bounds[0]; k++)
            if (strcasecmp(name, flink_bounds[k]) == 0)
                rc = ferr(erroff, off, errmsg, RN_EINVAL,
                          "no such function: %s(); with GROUP BY TUMBLE/HOP/SESSION(...) the "
                          "window's bounds are the columns window_start and window_end", name);
        if (rc != 0) break;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        const char *type = NULL;
        if (sqlite3_step(st) == SQLITE_ROW) type = (const char *)sqlite3_column_text(st, 0);
        if (!type) {
            int distinct = strcasecmp(name, "approx_distinct") == 0 ||
                           strcasecmp(name, "count_distinct") == 0;
            rc = ferr(erroff, off, errmsg, RN_EINVAL,
                      "no such function: %s()%s; streamsql's aggregates are " AGG_LIST
                      ", and its scalar functions are sqlite's plus streamsql's (regexp_like, "
                      "split_part, date_format, ...: streamsql/README.md)", name,
                      distinct ? " (count(DISTINCT x) counts distinct values exactly, "
                                 "approx_count_distinct(x) estimates them)" : "");
            break;
        }
        if (type[0] == 's') continue;
        int wonly = 0;
        for (size_t k = 0; k < sizeof window_only / sizeof window_only[0]; k++)
            if (strcasecmp(name, window_only[k]) == 0) wonly = 1;
        if (wonly)
            rc = ferr(erroff, off, errmsg, RN_EINVAL,
                      "window function %s() is not supported on streams: it would restart at "
                      "every batch; aggregate over windows of event time with GROUP BY "
                      "TUMBLE(ts, '1m')" TOPN_HINT, name);
        else
            rc = ferr(erroff, off, errmsg, RN_EINVAL,
                      "aggregate %s() is not supported on streams; supported: " AGG_LIST, name);
    }
    sqlite3_finalize(st);
    if (rc == 0) rc = check_patterns(f, erroff, errmsg);
    return rc;
}

void rn_front_free(front_t *f)
{
    free(f->own);
    free(f->toks);
    free(f->insub);
    for (int k = 0; k < f->nkeys; k++) free(f->keys[k]);
    for (int k = 0; k < f->naggs; k++) {
        free(f->aggs[k].text);
        free(f->aggs[k].arg);
        free(f->aggs[k].filter);
    }
    free(f->batch_sql);
    free(f->emit_sql);
    rn_topn_spec_free(f->topn);
    rn_sjoin_spec_free(f->sjoin);
    rn_udf_def_free(&f->fn);
    memset(f, 0, sizeof *f);
}

/* ---- scripts --------------------------------------------------------------------- */

int rn_sql_split(const char *sql, size_t len, int (*fn)(void *ctx, size_t off, size_t n),
                 void *ctx)
{
    size_t p = 0, start = 0;
    int has = 0;
    for (;;) {
        p = skip_space(sql, len, p);
        if (p >= len) break;
        tok_kind_t k;
        size_t e = scan_token(sql, len, p, &k);
        if (k == TK_BAD) { p = len; break; }
        if (!has && k != TK_SEMI) { start = p; has = 1; }
        if (k == TK_SEMI && has) {
            /* depth does not matter for ';' in valid SQL; split at every one */
            int rc = fn(ctx, start, p - start);
            if (rc != 0) return rc;
            has = 0;
        }
        p = e;
    }
    if (has) {
        size_t end = len;
        while (end > start && isspace((unsigned char)sql[end - 1])) end--;
        return fn(ctx, start, end - start);
    }
    return 0;
}

int rn_sql_complete(const char *sql, size_t len)
{
    size_t p = 0;
    int last_semi = 0, any = 0;
    for (;;) {
        size_t q = p;
        while (q < len && isspace((unsigned char)sql[q])) q++;
        if (q + 1 < len && sql[q] == '/' && sql[q + 1] == '*') {
            const char *end = q + 2 < len ? memmem(sql + q + 2, len - q - 2, "*/", 2) : NULL;
            if (!end) return 0;          /* open comment */
        }
        p = skip_space(sql, len, p);
        if (p >= len) break;
        tok_kind_t k;
        size_t e = scan_token(sql, len, p, &k);
        if (k == TK_BAD) return 0;       /* open quote */
        last_semi = k == TK_SEMI;
        any = 1;
        p = e;
    }
    return any && last_semi;
}

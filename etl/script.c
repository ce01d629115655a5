/*
 * script.c — applying a pipelines file (script.h).
 *
 * Invariants:
 *  1. Statements are applied one at a time, in file order, each through the
 *     same calls as its command (rn_sql_define, rn_etl_create, rn_etl_drop),
 *     so a file does nothing a user could not do by hand.
 *  2. Idempotence: a CREATE whose object exists is compared, never stored
 *     again; a pipeline's definition is compared as text with comments
 *     removed and whitespace outside quotes collapsed, so reformatting the
 *     file is not a change.
 *  3. Every position in a message is the 1-based line and column in the
 *     file of the statement (or of the token streamsql names).
 */
#include "etl/script.h"

#include "common/buf.h"
#include "common/error.h"
#include "common/sys.h"
#include "etl/etl.h"
#include "logical-queues/meta.h"
#include "streamsql/sql.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SCRIPT_MAX (16u << 20)

typedef struct apply {
    rn_datadir_t             *d;
    const char               *name, *text;
    size_t                    len;
    const rn_etl_script_cb_t *cb;
    char                     *errmsg;
} apply_t;

/* Whitespace and comments ("-- ..." to the end of the line, block comments). */
static size_t skip_blank(const char *s, size_t n, size_t p)
{
    for (;;) {
        while (p < n && isspace((unsigned char)s[p])) p++;
        if (p + 1 < n && s[p] == '-' && s[p + 1] == '-') {
            while (p < n && s[p] != '\n') p++;
        } else if (p + 1 < n && s[p] == '/' && s[p + 1] == '*') {
            const char *e = memmem(s + p + 2, n - p - 2, "*/", 2);
            p = e ? (size_t)(e - s) + 2 : n;
        } else {
            return p;
        }
    }
}

/* The keyword w (any case) at *p, followed by a non-identifier character:
 * advance past it and the blanks after it. */
static int keyword(const apply_t *a, size_t end, size_t *p, const char *w)
{
    size_t k = strlen(w);
    if (*p + k > end || strncasecmp(a->text + *p, w, k) != 0) return 0;
    if (*p + k < end && (isalnum((unsigned char)a->text[*p + k]) || a->text[*p + k] == '_'))
        return 0;
    *p = skip_blank(a->text, end, *p + k);
    return 1;
}

/* A name: "quoted" ("" for a quote) or a bare word; into out. */
static int name_at(const apply_t *a, size_t end, size_t *p, char *out, size_t size)
{
    size_t q = *p, o = 0;
    if (q < end && a->text[q] == '"') {
        for (q++; q < end; q++) {
            if (a->text[q] == '"') {
                if (q + 1 < end && a->text[q + 1] == '"') q++;
                else break;
            }
            if (o + 1 < size) out[o++] = a->text[q];
        }
        if (q >= end) return -1;
        q++;
    } else {
        while (q < end && (isalnum((unsigned char)a->text[q]) || strchr("_.-", a->text[q]))) {
            if (o + 1 < size) out[o++] = a->text[q];
            q++;
        }
    }
    out[o] = '\0';
    if (!o) return -1;
    *p = skip_blank(a->text, end, q);
    return 0;
}

static void line_col(const char *text, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

static int fail_at(apply_t *a, size_t off, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_at(apply_t *a, size_t off, int rc, const char *fmt, ...)
{
    char why[RN_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(a->text, off, &line, &col);
    return rn_errf(a->errmsg, rc ? rc : RN_EINVAL, "%s:%d:%d: %s", a->name, line, col, why);
}

static void note(apply_t *a, size_t off, int warn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note(apply_t *a, size_t off, int warn, const char *fmt, ...)
{
    if (!a->cb || !a->cb->note) return;
    char msg[RN_ERRMSG_SIZE], line_msg[RN_ERRMSG_SIZE + 320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(a->text, off, &line, &col);
    snprintf(line_msg, sizeof line_msg, "%.256s:%d:%d: %s", a->name, line, col, msg);
    a->cb->note(a->cb->ctx, warn, line_msg);
}

/* SQL text without comments, whitespace runs outside quotes as one space,
 * trimmed (invariant 2). */
static int sql_norm(const char *s, size_t n, rn_buf_t *out)
{
    out->len = 0;
    size_t p = skip_blank(s, n, 0);
    int space = 0;
    while (p < n) {
        char c = s[p];
        if (c == '\'' || c == '"' || c == '`') {
            size_t q = p + 1;
            while (q < n && !(s[q] == c && !(q + 1 < n && s[q + 1] == c))) q += s[q] == c ? 2 : 1;
            q = q < n ? q + 1 : n;
            if (space && rn_buf_append(out, " ", 1, 0) != 0) return -ENOMEM;
            if (rn_buf_append(out, s + p, q - p, 0) != 0) return -ENOMEM;
            space = 0;
            p = q;
            continue;
        }
        size_t q = skip_blank(s, n, p);
        if (q > p) {
            space = out->len > 0;
            p = q;
            continue;
        }
        if (space && rn_buf_append(out, " ", 1, 0) != 0) return -ENOMEM;
        if (rn_buf_append(out, &c, 1, 0) != 0) return -ENOMEM;
        space = 0;
        p++;
    }
    return 0;
}

static int create_pipeline(apply_t *a, size_t off, size_t n)
{
    char err[RN_ERRMSG_SIZE];
    rn_etl_def_t def;
    int rc = rn_etl_parse(a->text + off, n, &def, err);
    if (rc != 0) return fail_at(a, off, rc, "%s", err);
    rn_meta_pipeline_t *old = malloc(sizeof *old);
    if (!old) {
        rn_etl_def_free(&def);
        return rn_errf(a->errmsg, -ENOMEM, "out of memory");
    }
    rn_meta_t *m = rn_datadir_meta_lock(a->d);
    rc = rn_meta_pipeline_get(m, def.name, old, err);
    rn_datadir_meta_unlock(a->d);
    if (rc == RN_ENOTFOUND) {
        rc = rn_etl_create(a->d, a->text + off, n, err);
        if (rc != 0) rc = fail_at(a, off, rc, "%s", err);
        else note(a, off, 0, "pipeline %s created", def.name);
    } else if (rc != 0) {
        rc = fail_at(a, off, rc, "%s", err);
    } else {
        rn_buf_t x = RN_BUF_INIT, y = RN_BUF_INIT;
        rc = sql_norm(old->sql, strlen(old->sql), &x);
        if (rc == 0) rc = sql_norm(a->text + off, n, &y);
        if (rc != 0) {
            rc = rn_errf(a->errmsg, rc, "out of memory");
        } else if (x.len == y.len && memcmp(x.data, y.data, x.len) == 0) {
            note(a, off, 0, "pipeline %s unchanged", def.name);
        } else {
            note(a, off, 1, "pipeline %s differs from its stored definition, which runs on with "
                 "its checkpoint state; to apply the new one: runnel pipeline drop %s (its state "
                 "goes: it starts again from its start option), then apply this file again",
                 def.name, def.name);
        }
        rn_buf_free(&x);
        rn_buf_free(&y);
    }
    if (rc == 0 && a->cb && a->cb->pipeline) a->cb->pipeline(a->cb->ctx, def.name);
    free(old);
    rn_etl_def_free(&def);
    return rc;
}

static int drop_pipeline(apply_t *a, size_t off, size_t end, size_t p)
{
    char name[RN_META_NAME_MAX + 2], err[RN_ERRMSG_SIZE];
    if (keyword(a, end, &p, "IF") && !keyword(a, end, &p, "EXISTS"))
        return fail_at(a, p, RN_EINVAL, "expected DROP PIPELINE [IF EXISTS] name");
    if (name_at(a, end, &p, name, sizeof name) != 0 || p != end)
        return fail_at(a, off, RN_EINVAL, "expected DROP PIPELINE [IF EXISTS] name");
    int rc = rn_etl_drop(a->d, name, err);
    if (rc == RN_ENOTFOUND) {
        note(a, off, 0, "pipeline %s absent", name);
        return 0;
    }
    if (rc != 0) return fail_at(a, off, rc, "%s", err);
    note(a, off, 0, "pipeline %s dropped, with its checkpoint state", name);
    return 0;
}

/* CREATE / DROP STREAM, TABLE or FUNCTION (what), through rn_sql_define. */
static int stream_def(apply_t *a, size_t off, size_t n, size_t end, size_t p, const char *what)
{
    char name[RN_META_NAME_MAX + 2] = "", err[RN_ERRMSG_SIZE];
    if (keyword(a, end, &p, "IF")) keyword(a, end, &p, "EXISTS");
    if (name_at(a, end, &p, name, sizeof name) != 0) snprintf(name, sizeof name, "?");
    rn_sql_def_t outcome;
    int erroff = -1;
    int rc = rn_sql_define(a->d, a->text + off, n, &outcome, &erroff, err);
    if (rc == RN_EEXIST) {
        note(a, off, 1, "%s", err);
        return 0;
    }
    if (rc != 0) return fail_at(a, off + (erroff > 0 ? (size_t)erroff : 0), rc, "%s", err);
    static const char *const done[] = {"created", "unchanged", "dropped", "absent"};
    note(a, off, 0, "%s %s %s", what, name, done[outcome]);
    return 0;
}

static int apply_one(void *ctx, size_t off, size_t n)
{
    apply_t *a = ctx;
    size_t end = off + n, p = off;
    if (keyword(a, end, &p, "CREATE")) {
        if (keyword(a, end, &p, "PIPELINE")) return create_pipeline(a, off, n);
        if (keyword(a, end, &p, "STREAM")) return stream_def(a, off, n, end, p, "stream");
        if (keyword(a, end, &p, "TABLE")) return stream_def(a, off, n, end, p, "table");
        if (keyword(a, end, &p, "FUNCTION")) return stream_def(a, off, n, end, p, "function");
    } else if (keyword(a, end, &p, "DROP")) {
        if (keyword(a, end, &p, "PIPELINE")) return drop_pipeline(a, off, end, p);
        if (keyword(a, end, &p, "STREAM")) return stream_def(a, off, n, end, p, "stream");
        if (keyword(a, end, &p, "TABLE")) return stream_def(a, off, n, end, p, "table");
        if (keyword(a, end, &p, "FUNCTION")) return stream_def(a, off, n, end, p, "function");
    }
    size_t w = off;
    while (w < end && w - off < 40 && !isspace((unsigned char)a->text[w])) w++;
    return fail_at(a, off, RN_EINVAL, "a pipelines file holds CREATE STREAM, CREATE TABLE, "
                   "CREATE FUNCTION, CREATE PIPELINE, DROP STREAM, DROP TABLE, DROP FUNCTION "
                   "and DROP PIPELINE statements, "
                   "not '%.*s ...'", (int)(w - off), a->text + off);
}

int rn_etl_script_apply(rn_datadir_t *d, const char *name, const char *text, size_t len,
                        const rn_etl_script_cb_t *cb, char *errmsg)
{
    apply_t a = {d, name, text, len, cb, errmsg};
    if (memchr(text, '\0', len)) {
        size_t off = (size_t)((const char *)memchr(text, '\0', len) - text);
        return fail_at(&a, off, RN_EINVAL, "a NUL byte: a pipelines file is text");
    }
    return rn_sql_split(text, len, apply_one, &a);
}

int rn_etl_script_apply_file(rn_datadir_t *d, const char *path, const rn_etl_script_cb_t *cb,
                             char *errmsg)
{
    uint8_t *text = NULL;
    size_t n = 0;
    int rc = rn_read_file(path, SCRIPT_MAX, &text, &n);
    if (rc != 0)
        return rn_errf(errmsg, rc, "pipelines file %s: %s", path,
                       rc == RN_ETOOBIG ? "larger than 16 MiB" : rn_strerror(rc));
    rc = rn_etl_script_apply(d, path, (const char *)text, n, cb, errmsg);
    free(text);
    return rc;
}

/*
 * fn_udf.c — functions written in SQL: `CREATE FUNCTION name(a TYPE, ...)
 * RETURNS TYPE AS 'expression'` (stored in the metadata store, meta.c's
 * functions table) and the shipped templates (mask_ip, ua_family,
 * normalize_level, url_path), registered on every connection the engine
 * opens (sql.c's open_db), so queries, `streamsql --server` and pipelines
 * see the same functions.
 *
 * A function's body is one SQL expression over its parameters. It is
 * compiled into "SELECT CAST((body) AS R)" with each parameter replaced by
 * CAST(?N AS T) (rn_front_udf_sql), prepared on the calling connection at
 * its first call and kept for the statement's life.
 *
 * Invariants:
 *  1. A body reads only its arguments: no subquery, no table, no stream
 *     (front.c refuses SELECT/FROM in it), so a function is per record and
 *     results never depend on batching; a body may call sqlite's functions,
 *     streamsql's (fn.c) and other SQL functions.
 *  2. A function never runs inside itself (directly or through another
 *     one): the call is an error, so evaluation is bounded.
 *  3. The prepared body belongs to the connection: rn_sql_close finalizes
 *     every statement of the connection before closing it; the destructor
 *     here only frees memory.
 *  4. A body's error (a bad pattern, a wrong type) is the call's error,
 *     prefixed with the function's name: the record is rejected as for any
 *     function (sql.c invariant 7).
 *  5. Native functions (--udf-dir DIR, rn_sql_udf_dir): the operator's
 *     directory is read once, at the start of the process, before any query
 *     or thread; every *.so in it is checked then (loaded on a scratch
 *     connection: a library sqlite cannot load or that has no entry point,
 *     sqlite3_extension_init or sqlite3_<name>_init, fails the start). The
 *     list is immutable afterwards and each library is loaded on every query
 *     connection (rn_udf_load_native) through sqlite3_load_extension with
 *     only the C API enabled, for the call only: SQL's load_extension()
 *     stays off, so no statement (a remote Query, a pipeline) can name a file.
 */
#include "streamsql/sql_int.h"

#include "common/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct udf {
    char         *name;
    char         *sql;          /* SELECT CAST((body) AS R), parameters as ?N */
    sqlite3_stmt *st;           /* prepared at the first call */
    int           running;      /* invariant 2 */
} udf_t;

static void udf_free(void *p)
{
    udf_t *u = p;
    if (!u) return;
    free(u->name);
    free(u->sql);
    free(u);
}

static void fn_udf(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    udf_t *u = sqlite3_user_data(ctx);
    char m[RN_ERRMSG_SIZE];
    if (u->running) {
        snprintf(m, sizeof m, "%s(): a function cannot call itself (directly or through "
                 "another function)", u->name);
        sqlite3_result_error(ctx, m, -1);
        return;
    }
    sqlite3 *db = sqlite3_context_db_handle(ctx);
    if (!u->st && sqlite3_prepare_v2(db, u->sql, -1, &u->st, NULL) != SQLITE_OK) {
        snprintf(m, sizeof m, "%s(): %s", u->name, sqlite3_errmsg(db));
        sqlite3_result_error(ctx, m, -1);
        u->st = NULL;
        return;
    }
    for (int i = 0; i < argc; i++) sqlite3_bind_value(u->st, i + 1, argv[i]);
    u->running = 1;
    int rc = sqlite3_step(u->st);
    u->running = 0;
    if (rc == SQLITE_ROW) {
        sqlite3_result_value(ctx, sqlite3_column_value(u->st, 0));
    } else {
        const char *e = sqlite3_errmsg(db);
        size_t nl = strlen(u->name);
        /* an inner function's message already names it */
        if (strncmp(e, u->name, nl) == 0 && e[nl] == '(') snprintf(m, sizeof m, "%s", e);
        else snprintf(m, sizeof m, "%s(): %s", u->name, e);
        sqlite3_result_error(ctx, m, -1);
    }
    sqlite3_reset(u->st);
    sqlite3_clear_bindings(u->st);
}

int rn_udf_register(sqlite3 *db, const udf_def_t *d, char *errmsg)
{
    rn_buf_t sql = RN_BUF_INIT;
    int erroff;
    int rc = rn_front_udf_sql(d, &sql, &erroff, errmsg);
    if (rc != 0) return rc;
    udf_t *u = calloc(1, sizeof *u);
    if (!u || !(u->name = strdup(d->name))) {
        free(u);
        rn_buf_free(&sql);
        return rn_errf(errmsg, -ENOMEM, "out of memory");
    }
    u->sql = (char *)sql.data;
    /* not SQLITE_DETERMINISTIC: a body may call proctime() */
    if (sqlite3_create_function_v2(db, d->name, d->nparams, SQLITE_UTF8, u, fn_udf, NULL, NULL,
                                   udf_free) != SQLITE_OK)
        return rn_errf(errmsg, RN_ESQLITE, "cannot register %s(): %s", d->name,
                       sqlite3_errmsg(db));
    return 0;
}

/* The shipped templates: cleaning functions written in SQL, like a user's. */
static const struct {
    const char *text;
} templates[] = {
    /* 192.168.1.77 -> 192.168.1.0; 2001:db8:85a3:8d3:1319:8a2e:370:7348 -> 2001:db8:85a3::
     * (the network part kept: /24 and /48); anything else unchanged */
    {"mask_ip(ip TEXT) RETURNS TEXT AS 'CASE "
     "WHEN ip REGEXP ''^\\d{1,3}(\\.\\d{1,3}){3}$'' THEN regexp_replace(ip, ''\\.\\d+$'', ''.0'') "
     "WHEN ip REGEXP ''^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}$'' "
     "THEN regexp_replace(ip, ''^([0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}).*$'', "
     "''$1::'') ELSE ip END'"},
    /* a user agent's family, bots first (they often claim a browser too) */
    {"ua_family(ua TEXT) RETURNS TEXT AS 'CASE "
     "WHEN ua IS NULL THEN NULL "
     "WHEN ua REGEXP ''(?i)bot|crawl|spider|slurp'' THEN ''Bot'' "
     "WHEN ua REGEXP ''Edg(e|A|iOS)?/'' THEN ''Edge'' "
     "WHEN ua REGEXP ''OPR/|Opera'' THEN ''Opera'' "
     "WHEN ua REGEXP ''Firefox/|FxiOS/'' THEN ''Firefox'' "
     "WHEN ua REGEXP ''Chrome/|CriOS/|Chromium/'' THEN ''Chrome'' "
     "WHEN ua REGEXP ''Safari/'' THEN ''Safari'' "
     "WHEN ua REGEXP ''^curl/'' THEN ''curl'' "
     "WHEN ua REGEXP ''^Wget/'' THEN ''Wget'' "
     "WHEN ua REGEXP ''(?i)^python'' THEN ''Python'' "
     "ELSE ''Other'' END'"},
    /* a log level: TRACE, DEBUG, INFO, WARN, ERROR, FATAL (synonyms and case folded) */
    {"normalize_level(level TEXT) RETURNS TEXT AS 'CASE upper(trim(level)) "
     "WHEN ''WARNING'' THEN ''WARN'' WHEN ''ERR'' THEN ''ERROR'' WHEN ''SEVERE'' THEN ''ERROR'' "
     "WHEN ''CRITICAL'' THEN ''FATAL'' WHEN ''CRIT'' THEN ''FATAL'' WHEN ''EMERG'' THEN ''FATAL'' "
     "WHEN ''ALERT'' THEN ''FATAL'' WHEN ''PANIC'' THEN ''FATAL'' "
     "WHEN ''NOTICE'' THEN ''INFO'' WHEN ''INFORMATION'' THEN ''INFO'' "
     "WHEN ''DBG'' THEN ''DEBUG'' WHEN ''FINE'' THEN ''DEBUG'' WHEN ''FINEST'' THEN ''TRACE'' "
     "ELSE upper(trim(level)) END'"},
    /* a URL's path: https://h/a/b?q#f -> /a/b, /a/b?q -> /a/b, https://h -> / */
    {"url_path(url TEXT) RETURNS TEXT AS 'CASE WHEN url IS NULL THEN NULL ELSE "
     "coalesce(nullif(regexp_extract(url, "
     "''^(?:[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)?([^?#]*)'', 1), ''''), ''/'') END'"},
};

int rn_udf_register_templates(sqlite3 *db, char *errmsg)
{
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        udf_def_t d;
        int erroff;
        int rc = rn_front_parse_function(templates[i].text, strlen(templates[i].text), &d,
                                         &erroff, errmsg);
        if (rc == 0) rc = rn_udf_register(db, &d, errmsg);
        rn_udf_def_free(&d);
        if (rc != 0) return rc;
    }
    return 0;
}

const char *rn_udf_template(size_t i)
{
    return i < sizeof templates / sizeof templates[0] ? templates[i].text : NULL;
}

int rn_udf_is_template(const char *name)
{
    for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
        size_t n = strcspn(templates[i].text, "(");
        if (strlen(name) == n && strncasecmp(templates[i].text, name, n) == 0) return 1;
    }
    return 0;
}

/* ---- native functions (--udf-dir, invariant 5) ------------------------------------ */

static char  **native;          /* the libraries' paths, sorted; set once at start */
static size_t  nnative;

/* Load the library at path on db, with the C API of extension loading on
 * for this call only (SQL's load_extension() is never enabled). */
static int load_native(sqlite3 *db, const char *path, char *errmsg)
{
    char *err = NULL;
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL);
    int rc = sqlite3_load_extension(db, path, NULL, &err);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
    if (rc != SQLITE_OK) {
        const char *m = err ? err : sqlite3_errstr(rc);
        rc = strstr(m, path) ? rn_errf(errmsg, RN_EINVAL, "%s", m)
                             : rn_errf(errmsg, RN_EINVAL, "%s: %s", path, m);
        sqlite3_free(err);
        return rc;
    }
    return 0;
}

static int cmp_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void rn_sql_udf_dir_clear(void)
{
    for (size_t i = 0; i < nnative; i++) free(native[i]);
    free(native);
    native = NULL;
    nnative = 0;
}

int rn_sql_udf_dir(const char *dir, char *errmsg)
{
    rn_sql_udf_dir_clear();
    DIR *d = opendir(dir);
    if (!d)
        return rn_errf(errmsg, errno == ENOENT ? RN_ENOTFOUND : -errno,
                       "--udf-dir %s: %s (a directory of native function libraries, *.so)",
                       dir, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
        if (n == cap) {
            char **nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof *nv);
            if (!nv) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); break; }
            v = nv;
        }
        size_t plen = strlen(dir) + len + 2;
        if (!(v[n] = malloc(plen))) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); break; }
        snprintf(v[n++], plen, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc == 0 && n == 0)
        rc = rn_errf(errmsg, RN_EINVAL, "--udf-dir %s: no native function library (*.so) in it",
                     dir);
    if (rc == 0) qsort(v, n, sizeof *v, cmp_paths);
    /* each library loads and has its entry point, or the start fails */
    sqlite3 *db = NULL;
    if (rc == 0 && sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        rc = rn_errf(errmsg, RN_ESQLITE, "cannot open sqlite");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char why[RN_ERRMSG_SIZE];
        if (load_native(db, v[i], why) != 0)
            rc = rn_errf(errmsg, RN_EINVAL, "--udf-dir: %s (a library needs the entry point "
                         "sqlite3_extension_init or sqlite3_<name>_init)", why);
    }
    sqlite3_close(db);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return rc;
    }
    native = v;
    nnative = n;
    return 0;
}

int rn_udf_load_native(sqlite3 *db, char *errmsg)
{
    for (size_t i = 0; i < nnative; i++) {
        int rc = load_native(db, native[i], errmsg);
        if (rc != 0) return rc;
    }
    return 0;
}

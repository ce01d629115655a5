/*
 * rn_example.c — an example native function library for `streamsql --udf-dir
 * DIR` and `runneld --udf-dir DIR` (streamsql/README.md, "Native functions"):
 * an sqlite extension. Built by the Makefile into $(BIN)/udf-example/
 * librn_example.so; sqlite finds its entry point by the file's name
 * (librn_example.so -> sqlite3_rnexample_init), or sqlite3_extension_init.
 *
 *   reverse_text(s)   s with its bytes in reverse order (NULL gives NULL)
 *   cents(x)          round(x * 100) as an integer: 12.345 -> 1235
 *
 * Build your own the same way: cc -shared -fPIC -o DIR/libname.so name.c
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <math.h>
#include <stdlib.h>

static void reverse_text(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
    const unsigned char *s = sqlite3_value_text(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    char *out = sqlite3_malloc(n + 1);
    if (!out) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    for (int i = 0; i < n; i++) out[i] = (char)s[n - 1 - i];
    sqlite3_result_text(ctx, out, n, sqlite3_free);
}

static void cents(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
    if (sqlite3_value_numeric_type(argv[0]) != SQLITE_INTEGER &&
        sqlite3_value_numeric_type(argv[0]) != SQLITE_FLOAT) {
        sqlite3_result_error(ctx, "cents(): not a number", -1);
        return;
    }
    sqlite3_result_int64(ctx, (sqlite3_int64)llround(sqlite3_value_double(argv[0]) * 100.0));
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_rnexample_init(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api)
{
    (void)errmsg;
    SQLITE_EXTENSION_INIT2(api);
    int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
    int rc = sqlite3_create_function(db, "reverse_text", 1, flags, NULL, reverse_text, NULL,
                                     NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "cents", 1, flags, NULL, cents, NULL, NULL);
    return rc;
}

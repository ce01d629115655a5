/*
 * rn_noentry.c — a shared library without an sqlite entry point: `--udf-dir`
 * on a directory holding it must refuse to start (tests/test_streamsql_udf.c).
 */
int rn_noentry_value(void);
int rn_noentry_value(void)
{
    return 42;
}

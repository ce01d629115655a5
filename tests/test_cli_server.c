/*
 * test_cli_server.c — every test of test_cli.c again, against a real runneld
 * started on a free loopback port for each test (rn_test_runneld_start in
 * tests/util/util.h)
 * and reached with `runnel --server HOST:PORT`: the same commands must give
 * the same output, the same one-line errors and the same exit codes as on a
 * data directory. Plus what only a broker has: its data directory locked by
 * runneld (the message points at --server) and an unreachable address.
 */
#define RN_TEST_CLI_SERVER 1
#include "tests/test_cli.c"

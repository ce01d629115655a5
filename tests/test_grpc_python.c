/*
 * test_grpc_python.c — runneld from a client runnel did not write: a Python
 * client whose stubs Debian's stock protoc and grpc_python_plugin generate
 * from proto/runnel.proto at test time, over TLS with a bearer token
 * (tests/grpc/stock_client.py: certificates, user and broker of its own;
 * refusals without or with a wrong token and over plaintext; CreateTopic,
 * Produce of a RecordBatch v2 it encodes itself, Fetch decoded by itself,
 * ListOffsets, ListTopics, a streaming Query; a batch with a flipped byte
 * refused with nothing stored). The script prints one line per check; any
 * failed check fails this test with the script's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/util/util.h"

#define PY     "/usr/bin/python3"
#define CLIENT RN_SOURCE_DIR "/tests/grpc/stock_client.py"

static void t_stock_python_client_over_tls(void **state)
{
    (void)state;
    char *root = rn_test_tmpdir_new("grpc-python");
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(err, sizeof err, "%s/err", root);
    const char *argv[] = {PY, CLIENT, RN_BIN_DIR, RN_SOURCE_DIR, NULL};
    int st = rn_test_run(PY, argv, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e = rn_test_slurp(err, NULL);
    printf("%s", o);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the stock Python client failed (status %d):\n%s%s", st, o, e);
    assert_non_null(strstr(o, "ok   Query: 50 rows as produced"));
    assert_null(strstr(o, "FAIL"));
    free(o);
    free(e);
    rn_test_tmpdir_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_stock_python_client_over_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_grpc_python.c — runneld from a client runnel did not write: a Python
 * client whose stubs Debian's stock protoc and grpc_python_plugin generate
 * from proto/runnel.proto at test time, over TLS with a bearer token
 * (tests/grpc/stock_client.py: certificates, user and broker of its own;
 * refusals without or with a wrong token and over plaintext; CreateTopic,
 * Produce of a RecordBatch v2 it encodes itself, Fetch decoded by itself,
 * ListOffsets, ListTopics, a streaming Query; a batch with a flipped byte
 * refused with nothing stored); and the RPC fuzz corpora plus random bytes
 * sent to every method of the service without a token, with a malformed
 * header and with a wrong secret: all UNAUTHENTICATED, nothing stored
 * (tests/grpc/unauth_replay.py). Each script prints one line per check; any
 * failed check fails its test with the script's output.
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
#define REPLAY RN_SOURCE_DIR "/tests/grpc/unauth_replay.py"

/* Run a script (BIN_DIR SOURCE_DIR as its arguments); it must exit 0, print
 * no FAIL line and print `last`. */
static void run_script(const char *script, const char *last)
{
    char *root = rn_test_tmpdir_new("grpc-python");
    char out[PATH_MAX], err[PATH_MAX];
    snprintf(out, sizeof out, "%s/out", root);
    snprintf(err, sizeof err, "%s/err", root);
    const char *argv[] = {PY, script, RN_BIN_DIR, RN_SOURCE_DIR, NULL};
    int st = rn_test_run(PY, argv, NULL, out, err);
    char *o = rn_test_slurp(out, NULL), *e = rn_test_slurp(err, NULL);
    printf("%s", o);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("%s failed (status %d):\n%s%s", script, st, o, e);
    assert_non_null(strstr(o, last));
    assert_null(strstr(o, "FAIL"));
    free(o);
    free(e);
    rn_test_tmpdir_free(root);
}

static void t_stock_python_client_over_tls(void **state)
{
    (void)state;
    run_script(CLIENT, "ok   Query: 50 rows as produced");
}

static void t_unauthenticated_fuzz_replay(void **state)
{
    (void)state;
    run_script(REPLAY, "ok   pipeline list: no rows");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_stock_python_client_over_tls),
        cmocka_unit_test(t_unauthenticated_fuzz_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

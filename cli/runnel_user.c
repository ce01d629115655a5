/*
 * runnel_user.c — `runnel user add NAME | list | remove NAME`: the users of
 * a broker, in its data directory's credentials file (client/users.h).
 *
 * Invariants:
 *  1. Works on DIR/users only (--data DIR or $RUNNEL_DATA), never through a
 *     server and never locking the directory: runneld re-reads the file when
 *     it changes, so a user added or removed counts from the next call.
 *     `add` creates DIR (mode 0700) when it does not exist yet, so users can
 *     be written before runneld first starts on it.
 *  2. The token of `user add` is printed once, on stdout, and stored nowhere;
 *     a lost token is replaced by removing the user and adding it again.
 */
#include "cli/runnel_cli.h"
#include "client/users.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

static const char user_usage[] =
    "usage: runnel --data DIR user add NAME | list | remove NAME\n"
    "  add NAME      create user NAME (1..64 of A-Z a-z 0-9 _ -) and print its token once;\n"
    "                runneld serving DIR then requires a token (or a client certificate)\n"
    "                on every call: runnel --token TOKEN, or RUNNEL_TOKEN; Kafka clients\n"
    "                authenticate with SASL as username NAME, password the token's part\n"
    "                after 'NAME.' (SCRAM-SHA-256, or PLAIN over TLS)\n"
    "  list          the users' names\n"
    "  remove NAME   remove NAME; its token is refused from the next call (and Kafka\n"
    "                connection) on\n"
    "The file is DIR/users (salted PBKDF2-HMAC-SHA256 hashes, never a token).\n";

int rn_cli_user(rn_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': cli->data = optarg; break;
        case 'h': fputs(user_usage, stdout); return RN_CLI_OK;
        default: return rn_cli_bad_option("user", argv, c);
        }
    }
    const char *dir = cli->data ? cli->data : cli->data_env;
    if (cli->server || !dir)
        return rn_cli_fail(RN_CLI_USAGE, "user works on a data directory's credentials file: "
                           "give --data DIR (the directory runneld serves)");
    if (optind >= argc)
        return rn_cli_fail(RN_CLI_USAGE, "user: give add NAME, list or remove NAME");
    const char *sub = argv[optind];
    int nargs = argc - optind - 1;
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT && !strcmp(sub, "add") && mkdir(dir, 0700) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "--data %s: cannot create it: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0)
        return rn_cli_fail(RN_CLI_FAIL, "--data %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rn_cli_fail(RN_CLI_FAIL, "--data %s: not a directory", dir);
    char err[RN_ERRMSG_SIZE] = "";
    if (!strcmp(sub, "add") && nargs == 1) {
        char token[RN_TOKEN_MAX + 1];
        if (rn_users_add(dir, RN_USERS_FILE, argv[optind + 1], token, err) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        printf("%s\n", token);                       /* invariant 2 */
        memset(token, 0, sizeof token);
        return fflush(stdout) == 0 ? RN_CLI_OK : RN_CLI_FAIL;
    }
    if (!strcmp(sub, "remove") && nargs == 1) {
        if (rn_users_remove(dir, RN_USERS_FILE, argv[optind + 1], err) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        return RN_CLI_OK;
    }
    if (!strcmp(sub, "list") && nargs == 0) {
        char path[4096];
        rn_users_t *u;
        if (rn_path_buf(path, sizeof path, dir, RN_USERS_FILE) != 0)
            return rn_cli_fail(RN_CLI_FAIL, "--data: path too long");
        if (rn_users_load(path, &u, err) != 0) return rn_cli_fail(RN_CLI_FAIL, "%s", err);
        for (size_t i = 0; i < rn_users_count(u); i++) printf("%s\n", rn_users_name(u, i));
        rn_users_free(u);
        return RN_CLI_OK;
    }
    return rn_cli_fail(RN_CLI_USAGE, "user: give add NAME, list or remove NAME (not '%.40s' "
                       "with %d argument%s)", sub, nargs, nargs == 1 ? "" : "s");
}

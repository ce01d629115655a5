/*
 * test_client_runneld.h — a real runneld for the client-side tests
 * (test_client_remote.c, test_cli_server.c): started on a free loopback port
 * (--listen 127.0.0.1:0 --port-file FILE: the file appears once calls are
 * accepted), stopped with SIGTERM, which must end it with status 0. Every
 * wait is bounded in time. Header-only: each test binary is one .c file.
 */
#ifndef RN_TEST_CLIENT_RUNNELD_H
#define RN_TEST_CLIENT_RUNNELD_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNNELD RN_BIN_DIR "/runneld"

typedef struct runneld {
    pid_t pid;
    char  data[PATH_MAX];
    char  portfile[PATH_MAX + 16];
    char  log[PATH_MAX + 16];
    char  addr[64];                 /* "127.0.0.1:PORT" */
} runneld_t;

static void runneld_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start runneld on data (created when absent), its log in data's parent
 * directory; fsync NULL = the broker's default. 0, or -1 with a message on
 * stderr. */
static int runneld_start(runneld_t *r, const char *data, const char *fsync)
{
    memset(r, 0, sizeof *r);
    snprintf(r->data, sizeof r->data, "%s", data);
    snprintf(r->portfile, sizeof r->portfile, "%s.port", data);
    snprintf(r->log, sizeof r->log, "%s.runneld.log", data);
    unlink(r->portfile);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int log = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (log < 0 || null < 0) _exit(126);
        dup2(null, 0);
        dup2(log, 1);
        dup2(log, 2);
        if (fsync)
            execl(RUNNELD, RUNNELD, "--data", r->data, "--listen", "127.0.0.1:0", "--port-file",
                  r->portfile, "--fsync", fsync, (char *)NULL);
        else
            execl(RUNNELD, RUNNELD, "--data", r->data, "--listen", "127.0.0.1:0", "--port-file",
                  r->portfile, (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 1000; i++) {                 /* at most 10 s */
        FILE *fp = fopen(r->portfile, "r");
        int port = 0;
        if (fp) {
            if (fscanf(fp, "%d", &port) != 1) port = 0;
            fclose(fp);
        }
        if (port > 0) {
            snprintf(r->addr, sizeof r->addr, "127.0.0.1:%d", port);
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "runneld exited before listening; see %s\n", r->log);
            r->pid = 0;
            return -1;
        }
        runneld_sleep_ms(10);
    }
    fprintf(stderr, "runneld did not write %s within 10 s\n", r->portfile);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    r->pid = 0;
    return -1;
}

/* SIGTERM and wait (at most 20 s, then SIGKILL): its exit status, or -1 when
 * it died of a signal or had to be killed. */
static int runneld_stop(runneld_t *r)
{
    if (r->pid <= 0) return -1;
    kill(r->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 2000; i++) {
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        runneld_sleep_ms(10);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
    return -1;
}

#endif

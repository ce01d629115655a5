/*
 * test_streamsql_repl.c — the real `streamsql` REPL driven as a user drives
 * it: on a pseudo-terminal (forkpty; the line editor, Ctrl-C as a key and
 * as SIGINT) and through a pipe. Checked: .help and help; .format
 * table|csv|json (shown, set, refused); a table's columns sized over the
 * whole output and cells wider than 40 characters cut with an ellipsis;
 * SELECT * with value last; Ctrl-C during a statement that never ends
 * prints "cancelled", and the REPL goes on to run the next statement and
 * leaves with exit 0 — embedded (--data) and on a real runneld (--server).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "tests/util/util.h"

#define STREAMSQL RN_BIN_DIR "/streamsql"
#define RUNNEL    RN_BIN_DIR "/runnel"
#define WAIT_MS   15000
#define PTY_BUF   (1 << 20)

#define ELL "\xe2\x80\xa6"

typedef struct fixture {
    char *root;
    char  data[PATH_MAX], home[PATH_MAX], in[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
} fixture_t;

/* A child on a pseudo-terminal and everything it printed. */
typedef struct pty {
    pid_t  pid;
    int    fd;
    char  *buf;
    size_t len, mark;          /* mark: where the next expect starts looking */
} pty_t;

static void run_ok(fixture_t *f, const char *input, const char *const *argv)
{
    if (input) rn_test_write_file(f->in, input, strlen(input));
    int st = rn_test_run(argv[0], argv, input ? f->in : NULL, f->out, f->err);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        char *e = rn_test_slurp(f->err, NULL);
        fail_msg("%s exited %d: %s", argv[0], st, e ? e : "");
    }
}

static const char records[] =
    "{\"n\":1,\"s\":\"a\",\"pad\":\"0123456789012345678901234567890123456789\"}\n"
    "{\"n\":22,\"s\":\"bbbbbbbbbb\",\"pad\":\"x\"}\n"
    "{\"n\":333,\"s\":\"cccccccccccccccccccccccccccccccccccccccccccccccccccc\",\"pad\":\"y\"}\n";

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->root = rn_test_tmpdir_new("sqlrepl");
    if (!f->root) { free(f); return -1; }
    snprintf(f->data, sizeof f->data, "%s/data", f->root);
    snprintf(f->home, sizeof f->home, "%s/home", f->root);
    snprintf(f->in, sizeof f->in, "%s/stdin", f->root);
    snprintf(f->out, sizeof f->out, "%s/stdout", f->root);
    snprintf(f->err, sizeof f->err, "%s/stderr", f->root);
    if (mkdir(f->home, 0755) != 0) return -1;
    *state = f;
    run_ok(f, NULL, (const char *const[]){RUNNEL, "--data", f->data, "topic", "create", "logs",
                                          NULL});
    run_ok(f, records, (const char *const[]){RUNNEL, "--data", f->data, "produce", "logs", NULL});
    run_ok(f, NULL, (const char *const[]){STREAMSQL, "--data", f->data, "-e",
                                          "CREATE STREAM s (n INTEGER, s TEXT) WITH "
                                          "(topic = 'logs')", NULL});
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = rn_test_tmpdir_free(f->root);
    free(f);
    return rc;
}

static void pty_start(pty_t *p, fixture_t *f, const char *flag, const char *where)
{
    memset(p, 0, sizeof *p);
    p->buf = malloc(PTY_BUF + 1);
    assert_non_null(p->buf);
    struct winsize ws = {50, 200, 0, 0};
    fflush(NULL);
    p->pid = forkpty(&p->fd, NULL, NULL, &ws);
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        setenv("HOME", f->home, 1);
        unsetenv("RUNNEL_DATA");
        unsetenv("RUNNEL_SERVER");
        execl(STREAMSQL, "streamsql", flag, where, (char *)NULL);
        _exit(127);
    }
}

/* Read what the child printed for up to ms; 1 when want appeared after the
 * mark (the mark then moves past it). */
static int pty_wait(pty_t *p, const char *want, int ms)
{
    for (int waited = 0;; waited += 20) {
        p->buf[p->len] = '\0';
        char *hit = strstr(p->buf + p->mark, want);
        if (hit) {
            p->mark = (size_t)(hit - p->buf) + strlen(want);
            return 1;
        }
        if (waited >= ms) return 0;
        struct pollfd pfd = {p->fd, POLLIN, 0};
        if (poll(&pfd, 1, 20) > 0) {
            ssize_t r = read(p->fd, p->buf + p->len, PTY_BUF - p->len);
            if (r > 0) p->len += (size_t)r;
            else if (r < 0 && errno != EINTR && errno != EAGAIN) rn_test_sleep_ms(20);
        }
        if (p->len == PTY_BUF) p->len = p->mark = 0;      /* bounded; never this much */
    }
}

static void pty_expect(pty_t *p, const char *want)
{
    if (!pty_wait(p, want, WAIT_MS))
        fail_msg("the REPL did not print \"%s\" in %d ms; after the mark it printed:\n%s", want,
                 WAIT_MS, p->buf + p->mark);
}

static void pty_send(pty_t *p, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(p->fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* A line typed at the prompt, then what it printed up to the next prompt. */
static char *pty_line(pty_t *p, const char *line)
{
    pty_expect(p, "streamsql> ");
    size_t from = p->mark;
    pty_send(p, line);
    pty_send(p, "\r");
    pty_expect(p, "\r\n");                    /* the editor ends the line */
    from = p->mark;
    if (!pty_wait(p, "streamsql> ", WAIT_MS))
        fail_msg("no prompt after \"%s\"; printed:\n%s", line, p->buf + from);
    p->mark -= strlen("streamsql> ");        /* the prompt is the next line's */
    char *out = strndup(p->buf + from, p->mark - from);
    assert_non_null(out);
    return out;
}

static int pty_finish(pty_t *p)
{
    pty_send(p, ".quit\r");
    int status = -1;
    for (int waited = 0; waited < WAIT_MS; waited += 20) {
        pty_wait(p, "\x01never", 0);          /* drain */
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) break;
        rn_test_sleep_ms(20);
    }
    if (waitpid(p->pid, NULL, WNOHANG) == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
        fail_msg("the REPL did not leave on .quit");
    }
    close(p->fd);
    free(p->buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void expect_in(const char *out, const char *want)
{
    if (!strstr(out, want)) fail_msg("wanted \"%s\" in:\n%s", want, out);
}

/* The same session on --data DIR or --server ADDR. */
static void session(fixture_t *f, const char *flag, const char *where)
{
    pty_t p;
    pty_start(&p, f, flag, where);
    pty_expect(&p, ".help for help");
    char *o = pty_line(&p, ".help");
    expect_in(o, ".format [table|csv|json]");
    expect_in(o, "Ctrl-C cancels the running statement");
    free(o);
    o = pty_line(&p, "help");
    expect_in(o, "CREATE STREAM s (f TYPE, ...)");
    free(o);

    /* .format: shown, set, refused, used */
    o = pty_line(&p, ".format");
    expect_in(o, "format: table");
    free(o);
    o = pty_line(&p, ".format xml");
    expect_in(o, "streamsql: .format takes table, csv or json");
    free(o);
    o = pty_line(&p, ".format csv");
    free(o);
    o = pty_line(&p, "SELECT n, s FROM s LIMIT 2;");
    expect_in(o, "n,s\r\n1,a\r\n22,bbbbbbbbbb\r\n");
    free(o);
    o = pty_line(&p, ".format json;");
    free(o);
    o = pty_line(&p, "SELECT n FROM s LIMIT 1;");
    expect_in(o, "{\"n\":1}\r\n");
    free(o);
    o = pty_line(&p, ".format table");
    free(o);
    o = pty_line(&p, ".nope");
    expect_in(o, "unknown command '.nope'");
    free(o);

    /* table: one width per column over every row; 40 characters at most */
    o = pty_line(&p, "SELECT s, n FROM s;");
    expect_in(o, "s                                         n\r\n"
                 "----------------------------------------  ---\r\n"
                 "a                                         1\r\n"
                 "bbbbbbbbbb                                22\r\n"
                 "ccccccccccccccccccccccccccccccccccccccc" ELL "  333\r\n");
    free(o);
    /* SELECT *: value last, cut */
    o = pty_line(&p, "SELECT * FROM s LIMIT 1;");
    expect_in(o, "queue  offset  ts");
    expect_in(o, "key   n  s  value\r\n");
    expect_in(o, "1  a  {\"n\":1,\"s\":\"a\",\"pad\":\"01234567890123456" ELL "\r\n");
    free(o);

    /* Ctrl-C stops a statement that never ends; the REPL stays */
    pty_expect(&p, "streamsql> ");
    pty_send(&p, "SELECT n FROM s WHERE (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL "
                 "SELECT x + 1 FROM r) SELECT count(*) FROM r) > 0;\r");
    pty_expect(&p, "\r\n");
    assert_false(pty_wait(&p, "streamsql> ", 600));       /* still running */
    pty_send(&p, "\x03");
    pty_expect(&p, "cancelled (0 rows shown)");
    o = pty_line(&p, "SELECT count(*) AS c FROM s;");
    expect_in(o, "c\r\n-\r\n3\r\n");
    free(o);
    /* Ctrl-C at the prompt abandons the line */
    pty_expect(&p, "streamsql> ");
    pty_send(&p, "SELECT nonsense");
    pty_send(&p, "\x03");
    pty_expect(&p, "^C");
    o = pty_line(&p, "SELECT 1 AS one FROM s LIMIT 1;");
    expect_in(o, "one\r\n---\r\n1\r\n");
    free(o);
    assert_int_equal(pty_finish(&p), 0);
}

static void test_repl_embedded(void **state)
{
    fixture_t *f = *state;
    session(f, "--data", f->data);
}

static void test_repl_server(void **state)
{
    fixture_t *f = *state;
    rn_test_runneld_t r;
    assert_int_equal(rn_test_runneld_start(&r, f->data, NULL), 0);
    session(f, "--server", r.addr);
    assert_int_equal(rn_test_runneld_stop(&r), 0);
}

/* Through a pipe (no editor): the same commands, the output as plain lines. */
static void test_repl_piped(void **state)
{
    fixture_t *f = *state;
    run_ok(f, ".help\n.format csv\nSELECT n FROM s\n  LIMIT 2;\n.format\n.format json\n"
              "SELECT s FROM s LIMIT 1;\nquit\n",
           (const char *const[]){STREAMSQL, "--data", f->data, NULL});
    char *out = rn_test_slurp(f->out, NULL);
    assert_non_null(out);
    expect_in(out, ".format [table|csv|json]");
    expect_in(out, "n\n1\n22\nformat: csv\n{\"s\":\"a\"}\n");
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repl_embedded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repl_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repl_piped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

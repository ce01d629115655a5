/*
 * test_root.c — common/root.c without a broker: which paths a root lets
 * through and which it refuses (-EPERM naming the root and its flag), that
 * no symbolic link beneath it is followed, that rn_root_open_file creates
 * only the one file, that a FIFO planted as the file does not block, and
 * that its open goes through rn_sys (an injected EIO comes back).
 *
 * Layout of each case: TMP/root/{sub/, file.txt, link -> TMP/out,
 * flink -> TMP/out/t.txt, fifo} and TMP/out/ (empty).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/root.h"
#include "common/sys.h"

typedef struct fx {
    char tmp[64], root[96], out[96], real[PATH_MAX];
    rn_root_t *r;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->tmp, sizeof f->tmp, "/tmp/rn-root-XXXXXX");
    if (!mkdtemp(f->tmp)) return -1;
    snprintf(f->root, sizeof f->root, "%s/root", f->tmp);
    snprintf(f->out, sizeof f->out, "%s/out", f->tmp);
    char p[256];
    if (mkdir(f->root, 0755) || mkdir(f->out, 0755)) return -1;
    snprintf(p, sizeof p, "%s/sub", f->root);
    if (mkdir(p, 0755)) return -1;
    snprintf(p, sizeof p, "%s/file.txt", f->root);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    if (fd < 0) return -1;
    close(fd);
    snprintf(p, sizeof p, "%s/link", f->root);
    if (symlink(f->out, p)) return -1;
    char t[160];
    snprintf(t, sizeof t, "%s/t.txt", f->out);
    snprintf(p, sizeof p, "%s/flink", f->root);
    if (symlink(t, p)) return -1;
    snprintf(p, sizeof p, "%s/fifo", f->root);
    if (mkfifo(p, 0644)) return -1;
    if (!realpath(f->root, f->real)) return -1;
    char err[RN_ERRMSG_SIZE];
    if (rn_root_open(f->root, "--sink-dir", &f->r, err) != 0) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    rn_root_close(f->r);
    rn_sys_reset();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->tmp);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* The out/ directory is still empty: nothing was created outside the root. */
static void out_empty(fx_t *f)
{
    char p[160];
    snprintf(p, sizeof p, "%s/t.txt", f->out);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/x.txt", f->out);
    assert_int_equal(access(p, F_OK), -1);
}

static void test_open_refuses_missing_root(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE], p[160];
    rn_root_t *r = NULL;
    snprintf(p, sizeof p, "%s/nope", f->tmp);
    assert_int_equal(rn_root_open(p, "--store-root", &r, err), -ENOENT);
    assert_null(r);
    assert_non_null(strstr(err, "--store-root"));
    assert_string_equal(rn_root_path(f->r), f->real);
}

static void test_check_file(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE], abs_in[200], abs_out[200], abs_dotdot[200];
    snprintf(abs_in, sizeof abs_in, "%s/sub/a.txt", f->root);
    snprintf(abs_out, sizeof abs_out, "%s/x.txt", f->out);
    snprintf(abs_dotdot, sizeof abs_dotdot, "%s/../out/x.txt", f->root);
    struct { const char *path; int rc; const char *why; } cases[] = {
        {"a.txt", 0, NULL},
        {"sub/a.txt", 0, NULL},
        {"./sub//a.txt", 0, NULL},
        {"file.txt", 0, NULL},
        {abs_in, 0, NULL},
        {"nosuch/a.txt", -ENOENT, "nosuch"},
        {"file.txt/a.txt", -ENOTDIR, "is not a directory"},
        {"", -EPERM, "is empty"},
        {".", -EPERM, "root directory itself"},
        {"sub/..", -EPERM, "holds '..'"},
        {"../out/x.txt", -EPERM, "holds '..'"},
        {abs_dotdot, -EPERM, "holds '..'"},
        {abs_out, -EPERM, "outside the root"},
        {"/etc/passwd", -EPERM, "outside the root"},
        {"link/x.txt", -EPERM, "symbolic link"},
        {"flink", -EPERM, "symbolic link"},
        {"sub", -EPERM, "not a regular file"},
        {"fifo", -EPERM, "not a regular file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = rn_root_check_file(f->r, cases[i].path, err);
        if (rc != cases[i].rc || (cases[i].why && !strstr(err, cases[i].why)))
            fail_msg("'%s': %d \"%s\", wanted %d \"%s\"", cases[i].path, rc, err, cases[i].rc,
                     cases[i].why ? cases[i].why : "");
        if (rc == -EPERM && (!strstr(err, f->real) || !strstr(err, "--sink-dir")))
            fail_msg("'%s': \"%s\" does not name the root and its flag", cases[i].path, err);
    }
    out_empty(f);
}

static void test_open_file(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE], p[200];
    int fd = -1;
    assert_int_equal(rn_root_open_file(f->r, "sub/new.txt", 0, &fd, err), 0);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x\n", 2), 2);
    close(fd);
    snprintf(p, sizeof p, "%s/sub/new.txt", f->root);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 2);
    /* An existing file opens as it is (the caller sets its length). */
    assert_int_equal(rn_root_open_file(f->r, p, 0, &fd, err), 0);
    close(fd);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 2);
    /* A link as the file would have created the target outside. */
    assert_int_equal(rn_root_open_file(f->r, "flink", 0, &fd, err), -EPERM);
    assert_int_equal(fd, -1);
    assert_int_equal(rn_root_open_file(f->r, "link/x.txt", 0, &fd, err), -EPERM);
    /* A FIFO with no reader: refused at once, not a blocked open. */
    assert_true(rn_root_open_file(f->r, "fifo", 0, &fd, err) < 0);
    assert_int_equal(fd, -1);
    out_empty(f);
}

static int eio_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    (void)dirfd; (void)path; (void)flags; (void)mode;
    errno = EIO;
    return -1;
}

static void test_open_file_through_rn_sys(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE];
    int fd = -1;
    rn_sys.openat = eio_openat;
    assert_int_equal(rn_root_open_file(f->r, "eio.txt", 0, &fd, err), -EIO);
    rn_sys_reset();
    assert_int_equal(fd, -1);
    assert_non_null(strstr(err, "eio.txt"));
}

static void test_dir(void **state)
{
    fx_t *f = *state;
    char err[RN_ERRMSG_SIZE], abs[PATH_MAX], want[PATH_MAX + 16];
    assert_int_equal(rn_root_dir(f->r, "s/t/u", abs, sizeof abs, err), 0);
    snprintf(want, sizeof want, "%s/s/t/u", f->real);
    assert_string_equal(abs, want);
    snprintf(want, sizeof want, "%s/s", f->root);
    assert_int_equal(access(want, F_OK), -1);                /* nothing created */
    assert_int_equal(rn_root_dir(f->r, "sub/", abs, sizeof abs, err), 0);
    snprintf(want, sizeof want, "%s/sub", f->real);
    assert_string_equal(abs, want);
    assert_int_equal(rn_root_dir(f->r, "link", abs, sizeof abs, err), -EPERM);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(rn_root_dir(f->r, "link/s", abs, sizeof abs, err), -EPERM);
    assert_int_equal(rn_root_dir(f->r, "file.txt/s", abs, sizeof abs, err), -ENOTDIR);
    assert_int_equal(rn_root_dir(f->r, "..", abs, sizeof abs, err), -EPERM);
    assert_int_equal(rn_root_dir(f->r, f->root, abs, sizeof abs, err), -EPERM);
    assert_non_null(strstr(err, "root directory itself"));
    out_empty(f);
}

static void test_overlaps(void **state)
{
    fx_t *f = *state;
    char p[160];
    assert_int_equal(rn_root_overlaps(f->r, f->root), 1);
    assert_int_equal(rn_root_overlaps(f->r, f->tmp), 1);
    snprintf(p, sizeof p, "%s/sub", f->root);
    assert_int_equal(rn_root_overlaps(f->r, p), 1);
    assert_int_equal(rn_root_overlaps(f->r, f->out), 0);
    snprintf(p, sizeof p, "%s/nope", f->tmp);
    assert_int_equal(rn_root_overlaps(f->r, p), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_refuses_missing_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_file_through_rn_sys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlaps, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

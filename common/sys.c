/*
 * sys.c — the real system calls behind rn_sys, and the durable file helpers.
 *
 * Invariants:
 *  1. Every helper here calls the kernel only through rn_sys, so an injected
 *     fault reaches every caller of the helper.
 *  2. Errors come back as negative errno; EINTR is retried, never returned.
 *  3. rn_write_file_atomic never exposes a partially written file under its
 *     final name: readers see the old content or the new, whole.
 */
#include "common/sys.h"
#include "common/error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int sys_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }
static int sys_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    return openat(dirfd, path, flags, mode);
}

static int64_t sys_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One initializer for both tables: a const object is not a constant
 * expression in C, so rn_sys cannot be initialised from real_sys. */
#define RN_REAL_SYS {                                                       \
    .open = sys_open, .openat = sys_openat, .close = close, .pread = pread,  \
    .pwrite = pwrite,                                                       \
    .pwritev = pwritev, .fdatasync = fdatasync, .fsync = fsync,             \
    .ftruncate = ftruncate, .fallocate = fallocate, .rename = rename,       \
    .unlink = unlink, .mkdir = mkdir, .now_ms = sys_now_ms,                 \
}

static const rn_sys_t real_sys = RN_REAL_SYS;

rn_sys_t rn_sys = RN_REAL_SYS;

void rn_sys_reset(void) { rn_sys = real_sys; }

uint64_t rn_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int rn_pwrite_full(int fd, const void *buf, size_t n, off_t off)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = rn_sys.pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        p += w; n -= (size_t)w; off += w;
    }
    return 0;
}

int rn_pwritev_full(int fd, struct iovec *iov, int cnt, off_t off)
{
    while (cnt > 0) {
        ssize_t w = rn_sys.pwritev(fd, iov, cnt, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        off += w;
        /* Skip the fully written vectors, trim the partly written one. */
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len; iov++; cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int rn_pread_full(int fd, void *buf, size_t n, off_t off, size_t *got)
{
    uint8_t *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = rn_sys.pread(fd, p + done, n - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (got) *got = done;
            return -errno;
        }
        if (r == 0) break;
        done += (size_t)r;
    }
    if (got) *got = done;
    return 0;
}

static int sync_fd(int fd)
{
    while (rn_sys.fsync(fd) < 0) {
        if (errno != EINTR) return -errno;
    }
    return 0;
}

int rn_fsync_dir(const char *dir)
{
    int fd = rn_sys.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc = sync_fd(fd);
    rn_sys.close(fd);
    return rc;
}

int rn_write_file_atomic(const char *dir, const char *name, const void *data, size_t n)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name) >= (int)sizeof tmp ||
        snprintf(dst, sizeof dst, "%s/%s", dir, name) >= (int)sizeof dst)
        return -ENAMETOOLONG;
    int fd = rn_sys.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = rn_pwrite_full(fd, data, n, 0);
    if (rc == 0) rc = sync_fd(fd);
    rn_sys.close(fd);
    if (rc == 0 && rn_sys.rename(tmp, dst) < 0) rc = -errno;
    if (rc == 0) rc = rn_fsync_dir(dir);
    if (rc != 0) rn_sys.unlink(tmp);
    return rc;
}

int rn_read_file(const char *path, size_t max, uint8_t **out, size_t *n)
{
    *out = NULL; *n = 0;
    int fd = rn_sys.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct stat st;
    int rc = 0;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) < 0) { rc = -errno; goto out; }
    if ((size_t)st.st_size > max) { rc = RN_ETOOBIG; goto out; }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) { rc = -ENOMEM; goto out; }
    size_t got;
    rc = rn_pread_full(fd, buf, (size_t)st.st_size, 0, &got);
    if (rc != 0) goto out;
    *out = buf; *n = got; buf = NULL;
out:
    free(buf);
    rn_sys.close(fd);
    return rc;
}

int rn_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof buf) return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char save = buf[i];
        buf[i] = '\0';
        if (rn_sys.mkdir(buf, 0755) == 0) {
            /* Make the new entry durable in its parent. */
            char *slash = strrchr(buf, '/');
            int rc;
            if (slash && slash != buf) { *slash = '\0'; rc = rn_fsync_dir(buf); *slash = '/'; }
            else rc = rn_fsync_dir(slash ? "/" : ".");
            if (rc != 0) return rc;
        } else if (errno != EEXIST) {
            return -errno;
        }
        buf[i] = save;
    }
    return 0;
}

int rn_path_buf(char *out, size_t size, const char *a, const char *b)
{
    int n = snprintf(out, size, "%s/%s", a, b);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

char *rn_path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) rn_path_buf(p, n, a, b);
    return p;
}

int rn_parse_seq_name(const char *name, const char *ext, uint64_t max, uint64_t *out)
{
    if (strlen(name) != 20 + strlen(ext) || strcmp(name + 20, ext) != 0) return RN_EINVAL;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return RN_EINVAL;
        uint64_t d = (uint64_t)(name[i] - '0');
        if (v > (max - d) / 10) return RN_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

void rn_sys_tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, (int)RN_MALLOC_TRIM);
    mallopt(M_MMAP_THRESHOLD, (int)RN_MALLOC_MMAP);
}

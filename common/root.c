/*
 * root.c — paths confined to a directory (see root.h).
 *
 * Invariants:
 *  1. A path is first made relative to the root by text alone (rel_of):
 *     no empty, "." or ".." component survives, and an absolute path must
 *     start with the root's path. Nothing touches the filesystem before that.
 *  2. Then it is resolved from the root's descriptor, opened once at
 *     rn_root_open, one component at a time with openat(O_NOFOLLOW): a
 *     symbolic link anywhere beneath the root, even one pointing inside it,
 *     is refused, and a directory renamed or replaced by a link after a
 *     check cannot redirect the open (each step is relative to the
 *     descriptor of the step before). rn_root_dir serves path-based APIs:
 *     its check and the caller's later use by path are two steps, so the
 *     root must be writable only by runneld's user (README, Security).
 *  3. Nothing is created but the one file rn_root_open_file opens, inside a
 *     directory already checked; that open and its directory's fsync go
 *     through rn_sys (common/sys.h), as every write-side call of the core.
 */
#include "common/root.h"

#include "common/error.h"
#include "common/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rn_root {
    int  fd;                     /* the root directory, O_RDONLY|O_DIRECTORY */
    char path[PATH_MAX];         /* canonical (realpath) */
    char given[PATH_MAX];        /* as the operator wrote it, no trailing '/' */
    char flag[32];
};

int rn_root_open(const char *dir, const char *flag, rn_root_t **out, char *errmsg)
{
    *out = NULL;
    rn_root_t *r = calloc(1, sizeof *r);
    if (!r) return rn_errf(errmsg, -ENOMEM, "out of memory");
    snprintf(r->flag, sizeof r->flag, "%s", flag);
    if (!realpath(dir, r->path)) {
        int e = errno;
        free(r);
        return rn_errf(errmsg, -e, "%s %s: %s", flag, dir, strerror(e));
    }
    r->fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        free(r);
        return rn_errf(errmsg, -e, "%s %s: %s", flag, dir, strerror(e));
    }
    snprintf(r->given, sizeof r->given, "%s", dir);
    size_t n = strlen(r->given);
    while (n > 1 && r->given[n - 1] == '/') r->given[--n] = '\0';
    *out = r;
    return 0;
}

void rn_root_close(rn_root_t *r)
{
    if (!r) return;
    close(r->fd);
    free(r);
}

const char *rn_root_path(const rn_root_t *r) { return r->path; }

/* A refusal: -EPERM with path and the root named. */
static int deny(const rn_root_t *r, char *errmsg, const char *path, const char *why)
{
    return rn_errf(errmsg, -EPERM, "path '%.80s' %s; only paths inside %.100s are allowed "
                   "(runneld %s)", path, why, r->path, r->flag);
}

/* The rest of path after prefix p when path lies in p, else NULL. */
static const char *under(const char *path, const char *p)
{
    size_t n = strlen(p);
    if (n == 1 && p[0] == '/') return path + 1;
    if (strncmp(path, p, n) != 0 || (path[n] != '/' && path[n] != '\0')) return NULL;
    return path + n;
}

int rn_root_overlaps(const rn_root_t *r, const char *dir)
{
    char real[PATH_MAX];
    if (!realpath(dir, real)) return -errno;
    return under(real, r->path) != NULL || under(r->path, real) != NULL;
}

/* Invariant 1: path as components relative to the root, joined by '/'. */
static int rel_of(const rn_root_t *r, const char *path, char *rel, size_t relsz, char *errmsg)
{
    if (!path || !path[0]) return deny(r, errmsg, "", "is empty");
    const char *p = path;
    if (p[0] == '/') {
        const char *a = under(path, r->path), *b = under(path, r->given);
        if (!a && !b) return deny(r, errmsg, path, "is outside the root");
        p = a ? a : b;
    }
    size_t o = 0;
    while (*p) {
        while (*p == '/') p++;
        size_t n = strcspn(p, "/");
        if (n == 0) break;
        if (n == 2 && p[0] == '.' && p[1] == '.') return deny(r, errmsg, path, "holds '..'");
        if (!(n == 1 && p[0] == '.')) {
            if (o + n + 2 > relsz) return rn_errf(errmsg, -ENAMETOOLONG, "path '%.80s' is too "
                                                  "long", path);
            if (o) rel[o++] = '/';
            memcpy(rel + o, p, n);
            o += n;
        }
        p += n;
    }
    rel[o] = '\0';
    if (o == 0) return deny(r, errmsg, path, "names the root directory itself");
    return 0;
}

/* Why openat of comp in dir failed: a link (refused), else errno e. */
static int step_error(const rn_root_t *r, int dir, const char *comp, int e, const char *path,
                      char *errmsg)
{
    struct stat st;
    if (e == ELOOP || (fstatat(dir, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)))
        return deny(r, errmsg, path, "goes through a symbolic link (never followed)");
    if (e == ENOTDIR)
        return rn_errf(errmsg, -e, "path '%.80s': %s in %.100s is not a directory", path, comp,
                       r->path);
    return rn_errf(errmsg, -e, "path '%.80s' in %.100s: %s: %s", path, r->path, comp,
                   strerror(e));
}

/* Invariant 2: walk the directories of rel (all of its components, or all
 * but the last when last is set: *last then points at it) from the root.
 * *dirfd: the last directory reached (close it when it is not r->fd), -1
 * when missing_ok and a component is absent. */
static int walk(const rn_root_t *r, char *rel, const char *path, const char **last,
                int missing_ok, int *dirfd, char *errmsg)
{
    int cur = r->fd;
    char *p = rel;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash && last) { *last = p; break; }
        if (slash) *slash = '\0';
        int fd = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int e = errno;
        int rc = 0;
        if (fd < 0 && e == ENOENT && missing_ok) {
            if (cur != r->fd) close(cur);
            cur = -1;
        } else if (fd < 0) {
            rc = step_error(r, cur, p, e, path, errmsg);
        }
        if (slash) *slash = '/';
        if (rc != 0) {
            if (cur != r->fd) close(cur);
            return rc;
        }
        if (fd < 0) break;              /* absent: the rest is the caller's to create */
        if (cur != r->fd) close(cur);
        cur = fd;
        if (!slash) break;
        p = slash + 1;
    }
    *dirfd = cur;
    return 0;
}

static void done(const rn_root_t *r, int dirfd)
{
    if (dirfd >= 0 && dirfd != r->fd) close(dirfd);
}

int rn_root_check_file(const rn_root_t *r, const char *path, char *errmsg)
{
    char rel[PATH_MAX];
    const char *name = NULL;
    int dirfd = -1;
    int rc = rel_of(r, path, rel, sizeof rel, errmsg);
    if (rc == 0) rc = walk(r, rel, path, &name, 0, &dirfd, errmsg);
    if (rc != 0) return rc;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) rc = deny(r, errmsg, path, "is a symbolic link (never followed)");
        else if (!S_ISREG(st.st_mode)) rc = deny(r, errmsg, path, "is not a regular file");
    } else if (errno != ENOENT) {
        rc = rn_errf(errmsg, -errno, "path '%.80s' in %.100s: %s", path, r->path,
                     strerror(errno));
    }
    done(r, dirfd);
    return rc;
}

int rn_root_open_file(const rn_root_t *r, const char *path, int flags, int *fd, char *errmsg)
{
    char rel[PATH_MAX];
    const char *name = NULL;
    int dirfd = -1, created = 0;
    *fd = -1;
    int rc = rel_of(r, path, rel, sizeof rel, errmsg);
    if (rc == 0) rc = walk(r, rel, path, &name, 0, &dirfd, errmsg);
    if (rc != 0) return rc;
    /* O_NONBLOCK: a FIFO planted here fails (ENXIO) instead of blocking. */
    int base = O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | flags;
    int f = rn_sys.openat(dirfd, name, base, 0);
    if (f < 0 && errno == ENOENT) {
        f = rn_sys.openat(dirfd, name, base | O_CREAT | O_EXCL, 0644);
        created = f >= 0;
    }
    struct stat st;
    if (f < 0) rc = step_error(r, dirfd, name, errno, path, errmsg);
    else if (fstat(f, &st) != 0) rc = rn_errf(errmsg, -errno, "path '%.80s': %s", path,
                                              strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = deny(r, errmsg, path, "is not a regular file");
    else if (fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = rn_errf(errmsg, -errno, "path '%.80s': %s", path, strerror(errno));
    else if (created && rn_sys.fsync(dirfd) != 0)
        rc = rn_errf(errmsg, -errno, "path '%.80s': fsync of its directory: %s", path,
                     strerror(errno));
    done(r, dirfd);
    if (rc != 0) {
        if (f >= 0) close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

int rn_root_dir(const rn_root_t *r, const char *path, char *abs, size_t abssz, char *errmsg)
{
    char rel[PATH_MAX];
    int dirfd = -1;
    int rc = rel_of(r, path, rel, sizeof rel, errmsg);
    if (rc != 0) return rc;
    int n = snprintf(abs, abssz, "%s/%s", strcmp(r->path, "/") ? r->path : "", rel);
    if (n < 0 || (size_t)n >= abssz)
        return rn_errf(errmsg, -ENAMETOOLONG, "path '%.80s' is too long", path);
    rc = walk(r, rel, path, NULL, 1, &dirfd, errmsg);
    done(r, dirfd);
    return rc;
}

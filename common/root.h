/*
 * root.h — a directory that paths named by a request are confined to
 * (runneld --sink-dir, --store-root).
 *
 * A path is taken relative to the root, or absolute when it names a place
 * inside the root (its canonical path or the path the operator gave). It is
 * refused with -EPERM, and a message naming the root and the flag, when it
 * is empty, names the root itself, holds a ".." component, is absolute
 * outside the root, or when one of its components beneath the root is a
 * symbolic link or not a directory. Components are resolved from the root's
 * open descriptor with openat(O_NOFOLLOW), one at a time, so a symbolic link
 * is never followed, whatever it points to.
 *
 * Threading: a root is read-only after rn_root_open; every function may be
 * called from any thread at once.
 */
#ifndef RN_ROOT_H
#define RN_ROOT_H

#include <stddef.h>

typedef struct rn_root rn_root_t;

/* Open dir (an existing directory) as a root; flag ("--sink-dir") names the
 * option that configured it, for messages. *out is freed by rn_root_close. */
int  rn_root_open(const char *dir, const char *flag, rn_root_t **out, char *errmsg);
void rn_root_close(rn_root_t *r);                 /* NULL is a no-op */

/* The root's canonical absolute path (valid until rn_root_close). */
const char *rn_root_path(const rn_root_t *r);

/* 1 when the existing directory dir is the root, lies inside it or holds
 * it; 0 when apart; a negative errno when dir cannot be resolved. */
int  rn_root_overlaps(const rn_root_t *r, const char *dir);

/* Open the regular file path beneath r for writing (O_WRONLY, with extra
 * flags such as O_APPEND), creating it (mode 0644) when absent; a file it
 * creates is made durable in its directory (fsync of the directory) before
 * this returns. Every directory on the way must exist. *fd is the caller's
 * to close. -EPERM (confinement, message as above) or a negative errno. */
int  rn_root_open_file(const rn_root_t *r, const char *path, int flags, int *fd, char *errmsg);

/* Check the file path as rn_root_open_file would open it, creating nothing:
 * its directories exist and are no symbolic links, and the file, if there,
 * is a regular file. */
int  rn_root_check_file(const rn_root_t *r, const char *path, char *errmsg);

/* For a directory that a path-based API creates (a store): check path
 * beneath r, creating nothing — each existing component is a directory, not
 * a symbolic link; the components from the first absent one on are created
 * later by the caller — and write its absolute path (the root's canonical
 * path, then path's components) to abs. */
int  rn_root_dir(const rn_root_t *r, const char *path, char *abs, size_t abssz, char *errmsg);

#endif

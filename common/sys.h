/*
 * sys.h — the injectable system-call table, the clock, and durable file helpers.
 *
 * Every write-side system call the core makes on its own files (segments,
 * index files, checkpoints, markers, file sinks, pipeline order journals)
 * goes through rn_sys, so tests can replace a member to inject EIO, ENOSPC
 * or short writes at any write point, and can set the clock (SQLite's
 * aSyscall[] idea). Outside it: SQLite's own I/O on the metadata and
 * pipeline-state databases (SQLite handles its errors itself), the `stdout`
 * sink's fwrite (checked, not injectable), and index units, which are
 * stored through a mapping and made durable by an rn_sys fdatasync. rn_sys_reset() restores
 * the real calls. The table is process-global and read without a lock:
 * tests change it only while no store is open (a store's syncer thread
 * calls it at any time, preparing segments and index files ahead of need).
 *
 * The helpers below return 0 or a negative errno and never leave a partial
 * result visible under the final name:
 *   rn_pwrite_full   loops over short writes; a zero-byte write is -EIO.
 *   rn_pread_full    loops over short reads; *got tells how much arrived (EOF).
 *   rn_write_file_atomic  temp file, write, fsync, rename, fsync the directory.
 */
#ifndef RN_SYS_H
#define RN_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct rn_sys {
    int     (*open)(const char *path, int flags, mode_t mode);
    int     (*openat)(int dirfd, const char *path, int flags, mode_t mode);
    int     (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int cnt, off_t off);
    int     (*fdatasync)(int fd);
    int     (*fsync)(int fd);
    int     (*ftruncate)(int fd, off_t len);
    int     (*fallocate)(int fd, int mode, off_t off, off_t len);
    int     (*rename)(const char *from, const char *to);
    int     (*unlink)(const char *path);
    int     (*mkdir)(const char *path, mode_t mode);
    int64_t (*now_ms)(void);      /* wall clock, milliseconds since the epoch */
} rn_sys_t;

extern rn_sys_t rn_sys;

void rn_sys_reset(void);

/* For the programs (runneld, runnel, streamsql; not librunnel, which leaves
 * its host's allocator alone): keep freed heap memory for reuse instead of
 * returning it to the kernel at once. gRPC allocates and frees a buffer per
 * read; with glibc's defaults each freed top of a thread's arena was given
 * back (madvise) and faulted in again on the next read, which cost runneld
 * more than half of its CPU on a produce stream (a page fault per 4 KiB, dear
 * under a hypervisor). Memory up to RN_MALLOC_TRIM bytes free at the top of
 * an arena is kept; blocks below RN_MALLOC_MMAP come from the heap. Peak use
 * is unchanged: what is kept was in use before. */
#define RN_MALLOC_TRIM (256u << 20)
#define RN_MALLOC_MMAP (32u << 20)
void rn_sys_tune_malloc(void);

/* Monotonic clock in nanoseconds (not injectable: used for rates and latency). */
uint64_t rn_mono_ns(void);

int rn_pwrite_full(int fd, const void *buf, size_t n, off_t off);
int rn_pwritev_full(int fd, struct iovec *iov, int cnt, off_t off);
int rn_pread_full(int fd, void *buf, size_t n, off_t off, size_t *got);

/* fsync a directory so a create, rename or unlink in it is durable. */
int rn_fsync_dir(const char *dir);

/* Create DIR/NAME holding exactly data[0..n) durably: write DIR/NAME.tmp, fsync,
 * rename over DIR/NAME, fsync DIR. */
int rn_write_file_atomic(const char *dir, const char *name, const void *data, size_t n);

/* Read a whole small file into a malloc'd buffer (caller frees *out).
 * -ENOENT when absent; RN_ETOOBIG past max bytes. */
int rn_read_file(const char *path, size_t max, uint8_t **out, size_t *n);

/* mkdir -p, durably (each created level's parent is fsynced). */
int rn_mkdir_p(const char *path);

/* "A/B" into out (size bytes): 0, or -ENAMETOOLONG when it does not fit. */
int rn_path_buf(char *out, size_t size, const char *a, const char *b);
/* "A/B" in a malloc'd string (caller frees); NULL when out of memory. */
char *rn_path_join(const char *a, const char *b);

/* The number of a file named by exactly 20 decimal digits and then ext
 * (".log", ".idx"): 0 and *out, or RN_EINVAL for any other name or a number
 * above max. */
int rn_parse_seq_name(const char *name, const char *ext, uint64_t max, uint64_t *out);

#endif

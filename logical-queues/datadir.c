/*
 * datadir.c — the embedded data directory (see datadir.h for the layout).
 *
 * States: a handle exists only while open (lock held, meta.db and store 0
 * open); rn_datadir_open moves from nothing to open, rn_datadir_close back.
 *
 * Invariants:
 *  1. At most one process has a data directory open: rn_datadir_open takes
 *     flock(LOCK_EX|LOCK_NB) on DIR/LOCK before it touches meta.db or the
 *     store, and keeps the descriptor (O_CLOEXEC, so children do not inherit
 *     the lock) until rn_datadir_close. A second opener reads the holder line
 *     and fails with RN_ELOCKED naming it.
 *  2. Opening never creates anything in a directory that is not already a
 *     runnel data directory unless asked to (o->create), and never adopts a
 *     non-empty foreign directory even then.
 *  3. Every offset crossing this API is logical. A logical offset L maps to
 *     physical L - logical_start + physical_start of its item, and every batch
 *     handed out carries its logical base offset (rn_batch_set_base_offset;
 *     the CRC does not cover it).
 *  4. Topics created here get physical ids above every queue id store 0
 *     already holds, so a lost or replaced meta.db never aliases old data.
 *  5. This version serves logical queues of exactly one open item on store 0;
 *     anything else is refused with RN_EFORMAT, never half-served.
 */
#include "logical-queues/datadir.h"

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE0_REL "stores/0"

struct rn_datadir {
    char       path[PATH_MAX];
    int        lock_fd;
    rn_meta_t *meta;
    rn_log_t  *log;
};

void rn_datadir_opts_default(rn_datadir_opts_t *o)
{
    memset(o, 0, sizeof *o);
    rn_log_opts_default(&o->log);
    o->holder = "runnel";
    o->create = 0;
}

/* Prefix an inner module's message with context: "ctx: inner". */
static int wrap(char *errmsg, int rc, const char *ctx, const char *inner)
{
    return rn_errf(errmsg, rc, "%s: %s", ctx, inner[0] ? inner : rn_strerror(rc));
}

static int join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* A directory that holds nothing but what a half-finished first open leaves
 * behind may be initialised. */
static int dir_is_adoptable(const char *dir, int *adoptable)
{
    DIR *dh = opendir(dir);
    if (!dh) return -errno;
    struct dirent *e;
    *adoptable = 1;
    while ((e = readdir(dh)) != NULL) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "LOCK") || !strcmp(n, "stores") ||
            !strcmp(n, "meta.db-wal") || !strcmp(n, "meta.db-shm") ||
            !strcmp(n, "meta.db-journal"))
            continue;
        *adoptable = 0;
        break;
    }
    closedir(dh);
    return 0;
}

/* Copy the holder line out of a LOCK file as printable text. */
static void read_holder(int fd, char *out, size_t size)
{
    char raw[200];
    size_t got = 0;
    out[0] = '\0';
    if (rn_pread_full(fd, raw, sizeof raw - 1, 0, &got) != 0) got = 0;
    raw[got] = '\0';
    char *nl = strchr(raw, '\n');
    if (nl) *nl = '\0';
    long pid;
    int used = 0;
    if (sscanf(raw, "pid %ld %n", &pid, &used) != 1 || pid <= 0) {
        snprintf(out, size, "another process");
        return;
    }
    char cmd[160];
    size_t j = 0;
    for (const char *p = raw + used; *p && j < sizeof cmd - 1; p++)
        cmd[j++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    cmd[j] = '\0';
    if (j) snprintf(out, size, "pid %ld (%s)", pid, cmd);
    else snprintf(out, size, "pid %ld", pid);
}

static int take_lock(rn_datadir_t *d, const char *holder, char *errmsg)
{
    char path[PATH_MAX];
    if (join(path, sizeof path, d->path, "LOCK") != 0)
        return rn_errf(errmsg, -ENAMETOOLONG, "data directory path is too long");
    int fd = rn_sys.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return rn_errf(errmsg, -e, "cannot open %s: %s", path, strerror(e));
    }
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EINTR) continue;
        if (e == EWOULDBLOCK) {
            char who[200];
            read_holder(fd, who, sizeof who);
            rn_sys.close(fd);
            return rn_errf(errmsg, RN_ELOCKED,
                           "data directory %s is in use by %s; stop it, or use "
                           "--server HOST:PORT once a broker serves it", d->path, who);
        }
        rn_sys.close(fd);
        return rn_errf(errmsg, -e, "cannot lock %s: %s", path, strerror(e));
    }
    /* Holder line: advisory text for the error above, so not fsynced. */
    char line[256];
    int n = snprintf(line, sizeof line, "pid %ld %s\n", (long)getpid(), holder ? holder : "");
    if (n < 0 || (size_t)n >= sizeof line) { n = (int)sizeof line - 1; line[n - 1] = '\n'; }
    int rc = 0;
    if (rn_sys.ftruncate(fd, 0) < 0) rc = -errno;
    if (rc == 0) rc = rn_pwrite_full(fd, line, (size_t)n, 0);
    if (rc != 0) {
        rn_sys.close(fd);
        return rn_errf(errmsg, rc, "cannot write %s: %s", path, rn_strerror(rc));
    }
    d->lock_fd = fd;
    return 0;
}

int rn_datadir_open(const char *dir, const rn_datadir_opts_t *o, rn_datadir_t **out,
                    char *errmsg)
{
    char inner[RN_ERRMSG_SIZE] = "", path[PATH_MAX];
    int rc;
    struct stat st;
    *out = NULL;
    if (!dir || !*dir) return rn_errf(errmsg, RN_EINVAL, "no data directory given");
    rn_datadir_t *d = calloc(1, sizeof *d);
    if (!d) return rn_errf(errmsg, -ENOMEM, "out of memory");
    d->lock_fd = -1;
    if (snprintf(d->path, sizeof d->path, "%s", dir) >= (int)sizeof d->path) {
        rc = rn_errf(errmsg, -ENAMETOOLONG, "data directory path is too long");
        goto fail;
    }

    if (stat(dir, &st) < 0) {
        int e = errno;
        if (e == ENOENT && o->create) {
            rc = rn_mkdir_p(dir);
            if (rc != 0) {
                rn_errf(errmsg, rc, "cannot create data directory %s: %s", dir, rn_strerror(rc));
                goto fail;
            }
        } else if (e == ENOENT) {
            rc = rn_errf(errmsg, -ENOENT, "data directory %s does not exist", dir);
            goto fail;
        } else {
            rc = rn_errf(errmsg, -e, "cannot access data directory %s: %s", dir, strerror(e));
            goto fail;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        rc = rn_errf(errmsg, -ENOTDIR, "data directory %s is not a directory", dir);
        goto fail;
    }

    if ((rc = join(path, sizeof path, dir, "meta.db")) != 0) {
        rn_errf(errmsg, rc, "data directory path is too long");
        goto fail;
    }
    if (stat(path, &st) < 0) {
        int e = errno;
        if (e != ENOENT) {
            rc = rn_errf(errmsg, -e, "cannot access %s: %s", path, strerror(e));
            goto fail;
        }
        if (!o->create) {
            rc = rn_errf(errmsg, -ENOENT, "%s is not a runnel data directory (no meta.db)", dir);
            goto fail;
        }
        int adoptable = 0;
        rc = dir_is_adoptable(dir, &adoptable);
        if (rc != 0) {
            rn_errf(errmsg, rc, "cannot read data directory %s: %s", dir, rn_strerror(rc));
            goto fail;
        }
        if (!adoptable) {
            rc = rn_errf(errmsg, RN_EINVAL, "%s is not empty and is not a runnel data directory "
                         "(no meta.db); use a new or empty directory", dir);
            goto fail;
        }
    } else if (!S_ISREG(st.st_mode)) {
        rc = rn_errf(errmsg, RN_EFORMAT, "%s is not a regular file", path);
        goto fail;
    }

    rc = take_lock(d, o->holder, errmsg);
    if (rc != 0) goto fail;

    rc = rn_meta_open(path, o->create, &d->meta, inner);
    if (rc != 0) { wrap(errmsg, rc, dir, inner); goto fail; }
    rc = rn_meta_store_register(d->meta, 0, STORE0_REL, inner);
    if (rc != 0) { wrap(errmsg, rc, dir, inner); goto fail; }

    if ((rc = join(path, sizeof path, dir, "stores")) != 0 || (rc = rn_mkdir_p(path)) != 0) {
        rn_errf(errmsg, rc, "cannot create %s/stores: %s", dir, rn_strerror(rc));
        goto fail;
    }
    if ((rc = join(path, sizeof path, dir, STORE0_REL)) != 0) {
        rn_errf(errmsg, rc, "data directory path is too long");
        goto fail;
    }
    rc = rn_log_open(path, &o->log, &d->log, inner);
    if (rc != 0) { wrap(errmsg, rc, path, inner); goto fail; }
    *out = d;
    return 0;
fail:
    rn_datadir_close(d);
    return rc;
}

int rn_datadir_close(rn_datadir_t *d)
{
    if (!d) return 0;
    int rc = rn_log_close(d->log);
    rn_meta_close(d->meta);
    if (d->lock_fd >= 0) {
        /* Clear the holder line while still holding the lock. */
        if (d->log || d->meta) (void)rn_sys.ftruncate(d->lock_fd, 0);
        rn_sys.close(d->lock_fd);
    }
    free(d);
    return rc;
}

const char *rn_datadir_path(const rn_datadir_t *d) { return d->path; }
rn_meta_t *rn_datadir_meta(rn_datadir_t *d) { return d->meta; }
rn_log_t *rn_datadir_log(rn_datadir_t *d) { return d->log; }

int rn_datadir_topic_create(rn_datadir_t *d, const char *name, uint32_t queues,
                            rn_meta_topic_t *out, char *errmsg)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = rn_log_queues(d->log, &ids, &n);
    if (rc != 0) return rn_errf(errmsg, rc, "listing the queues of store 0: %s", rn_strerror(rc));
    uint32_t floor = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= floor) floor = ids[i] == UINT32_MAX ? UINT32_MAX : ids[i] + 1;
    free(ids);
    return rn_meta_topic_create(d->meta, name, queues, 0, floor, out, errmsg);
}

int rn_datadir_queue_open(rn_datadir_t *d, const char *topic, uint32_t queue,
                          rn_datadir_queue_t *q, char *errmsg)
{
    memset(q, 0, sizeof *q);
    int rc = rn_meta_topic_get(d->meta, topic, &q->topic, errmsg);
    if (rc != 0) return rc;
    if (queue >= q->topic.queues) {
        if (q->topic.queues == 1)
            return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' has no queue %u; it has only queue 0",
                           topic, queue);
        return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' has no queue %u; it has queues 0..%u",
                       topic, queue, q->topic.queues - 1);
    }
    rc = rn_meta_items(d->meta, q->topic.id, queue, &q->items, &q->nitems, errmsg);
    if (rc != 0) return rc;
    q->queue = queue;
    const rn_meta_item_t *it = &q->items[0];
    if (q->nitems != 1 || it->store_id != 0 || it->physical_end != -1) {
        rc = rn_errf(errmsg, RN_EFORMAT,
                     "topic '%s' queue %u is mapped in %zu items (first on store %u); this "
                     "version serves only queues of one open item on store 0",
                     topic, queue, q->nitems, it->store_id);
        rn_datadir_queue_close(q);
        return rc;
    }
    return 0;
}

void rn_datadir_queue_close(rn_datadir_queue_t *q)
{
    free(q->items);
    q->items = NULL;
    q->nitems = 0;
}

/* The item offsets of this queue go through (invariant 5: the only one). */
static const rn_meta_item_t *item_of(const rn_datadir_queue_t *q) { return &q->items[0]; }

static int64_t to_logical(const rn_meta_item_t *it, int64_t physical)
{
    return physical - it->physical_start + it->logical_start;
}

static int64_t to_physical(const rn_meta_item_t *it, int64_t logical)
{
    return logical - it->logical_start + it->physical_start;
}

int rn_datadir_append(rn_datadir_t *d, const rn_datadir_queue_t *q, const uint8_t *batch,
                      size_t len, int64_t *base_offset, uint64_t *ticket, char *errmsg)
{
    const rn_meta_item_t *it = item_of(q);
    int64_t pbase;
    int rc = rn_log_append(d->log, it->physical_id, batch, len, &pbase, ticket, errmsg);
    if (rc != 0) return rc;
    *base_offset = to_logical(it, pbase);
    return 0;
}

int rn_datadir_wait(rn_datadir_t *d, uint64_t ticket)
{
    return rn_log_wait(d->log, ticket);
}

int rn_datadir_queue_info(rn_datadir_t *d, const rn_datadir_queue_t *q,
                          rn_datadir_queue_info_t *out, char *errmsg)
{
    const rn_meta_item_t *it = item_of(q);
    rn_log_queue_info_t pi;
    int rc = rn_log_queue_info(d->log, it->physical_id, &pi);
    if (rc != 0)
        return rn_errf(errmsg, rc, "topic '%s' queue %u (physical queue %u): %s",
                       q->topic.name, q->queue, it->physical_id, rn_strerror(rc));
    int64_t start = pi.log_start < it->physical_start ? it->physical_start : pi.log_start;
    int64_t hw = pi.high_watermark < start ? start : pi.high_watermark;
    out->log_start = to_logical(it, start);
    out->high_watermark = to_logical(it, hw);
    out->batches = pi.batches;
    return 0;
}

static int64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return (int64_t)v;
}

int rn_datadir_read(rn_datadir_t *d, const rn_datadir_queue_t *q, int64_t offset,
                    size_t max_bytes, rn_buf_t *out, uint32_t *nbatches, char *errmsg)
{
    const rn_meta_item_t *it = item_of(q);
    rn_datadir_queue_info_t info;
    *nbatches = 0;
    int rc = rn_datadir_queue_info(d, q, &info, errmsg);
    if (rc != 0) return rc;
    if (offset < info.log_start || offset > info.high_watermark)
        return rn_errf(errmsg, RN_ERANGE, "offset %lld is outside topic '%s' queue %u's range "
                       "[%lld, %lld]", (long long)offset, q->topic.name, q->queue,
                       (long long)info.log_start, (long long)info.high_watermark);
    size_t before = out->len;
    uint32_t nb = 0;
    rc = rn_log_read(d->log, it->physical_id, to_physical(it, offset), max_bytes, out, &nb,
                     errmsg);
    if (rc != 0) { out->len = before; return rc; }
    size_t pos = before;
    for (uint32_t i = 0; i < nb; i++) {
        size_t sz;
        if (pos + RN_BATCH_HEADER_SIZE > out->len ||
            rn_batch_size(out->data + pos, out->len - pos, &sz) != 0 || sz > out->len - pos) {
            out->len = before;
            return rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u: batch %u of a read at "
                           "offset %lld is malformed", q->topic.name, q->queue, i,
                           (long long)offset);
        }
        rn_batch_set_base_offset(out->data + pos, to_logical(it, load_be64(out->data + pos)));
        pos += sz;
    }
    *nbatches = nb;
    return 0;
}

int rn_datadir_lookup_time(rn_datadir_t *d, const rn_datadir_queue_t *q, int64_t ts,
                           int64_t *offset, char *errmsg)
{
    const rn_meta_item_t *it = item_of(q);
    int64_t p;
    int rc = rn_log_lookup_time(d->log, it->physical_id, ts, &p, errmsg);
    if (rc != 0) return rc;
    *offset = to_logical(it, p);
    return 0;
}

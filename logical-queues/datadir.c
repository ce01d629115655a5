/*
 * datadir.c — the embedded data directory (see datadir.h for the layout).
 *
 * States: a handle exists only while open (lock held, meta.db and every
 * registered store open); rn_datadir_open moves from nothing to open,
 * rn_datadir_close back.
 *
 * Invariants:
 *  1. At most one process has a data directory open: rn_datadir_open takes
 *     flock(LOCK_EX|LOCK_NB) on DIR/LOCK before it touches meta.db or a
 *     store, and keeps the descriptor (O_CLOEXEC, so children do not inherit
 *     the lock) until rn_datadir_close. A second opener reads the holder line
 *     and fails with RN_ELOCKED naming it. So nothing outside this process
 *     changes a mapping, an offset or a checkpoint while it runs.
 *  2. Opening never creates anything in a directory that is not already a
 *     runnel data directory unless asked to (o->create), and never adopts a
 *     non-empty foreign directory even then; a new store directory must be
 *     absent, empty, or hold a STORE file with this data directory's id.
 *  3. Every offset crossing this API is logical. A logical offset L maps to
 *     physical L - logical_start + physical_start of its item (mapping.h), and
 *     every batch handed out carries its logical base offset
 *     (rn_batch_set_base_offset; the CRC does not cover it). A sealed item
 *     never hands out a batch at or past its physical_end.
 *  4. New physical queues get ids above every queue id their store already
 *     holds, so a lost or replaced meta.db never aliases old data.
 *  5. Each store has its own append lock (dstore_t.amu): an append resolves
 *     the open item, takes the lock of the item's store, checks that the
 *     mapping did not change (the generation), and appends under it; a
 *     remap holds d->mu and the sealed item's store lock while it syncs that
 *     store, reads its high watermark, commits, swaps the metadata snapshot
 *     and bumps the generation, so no record lands in a sealed item and none
 *     is lost between items. Appends to other stores, reads, and every
 *     metadata access under d->mu (groups, streams, pipelines) go on
 *     meanwhile: no append waits for SQLite, and an fsync of one store holds
 *     up appends to that store only.
 *  8. Appends, reads and queue opens resolve topics and mapping items from
 *     an in-memory snapshot of meta.db (msnap_t: every topic and its items),
 *     immutable once published and swapped under d->snap_mu, never read
 *     from SQLite on those paths. Every change made through this module
 *     (topic create and alter, remap, retention's item drops) rebuilds it
 *     under d->mu before bumping the generation. A snapshot that cannot be
 *     built is dropped (d->snap = NULL): resolution then reads meta.db under
 *     d->mu, as it also does when a topic or queue is missing from the
 *     snapshot (a change made directly on the metadata handle).
 *  6. Stores are never moved or closed while d is open (stores[] is indexed
 *     by id and only grows), so a reader may use a store pointer it found
 *     through a snapshot without a lock.
 *  7. Item snapshots are checked with rn_mapping_check before use, and every
 *     item's store must be open.
 *  9. No offset is handed out twice, even if a store is removed: before
 *     rn_datadir_append returns an append whose end lies past the physical
 *     queue's recorded reservation, it records one RESERVE_STEP beyond it in
 *     meta.db (offset_reservations). The store knows its own ends; meta.db
 *     knows, for a store that is gone, where each open item could have
 *     reached, and accept-loss moves the queue's next offset there (sealed
 *     items end where the mapping says). The write goes through a second
 *     connection to meta.db under its own leaf mutex, after the append lock
 *     is released: an append never waits for the metadata mutex.
 * 10. Deleting a topic removes it from meta.db (rn_meta_topic_delete) while
 *     d->mu and the append lock of every store holding one of its open items
 *     are held, then publishes a snapshot without it and bumps the
 *     generation: a queue handle of the topic re-resolves on its next append,
 *     read or info and gets RN_ENOTFOUND (or, once a topic of that name was
 *     created again, the new topic, from offset 0). The physical queues keep
 *     their bytes until store retention drops the segments holding them; no
 *     mapping reaches them again. A reservation an append made just before
 *     the delete may be recorded after it, for a physical queue no item
 *     names: harmless, since ids are never reused.
 */
#include "logical-queues/datadir.h"

#include "batch/batch.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/mapping.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE0_REL   "stores/0"
#define STORE_MARKER "STORE"
#define TICKET_SHIFT 56

/* A physical queue's offset reservation as this process last recorded it. */
typedef struct resv {
    uint32_t physical_id;
    int64_t  upto;
} resv_t;

typedef struct dstore {
    uint32_t        id;
    char            path[RN_META_PATH_MAX + 1];   /* as registered */
    rn_log_t       *log;
    pthread_mutex_t amu;                          /* the append lock (invariant 5) */
    pthread_mutex_t rmu;                          /* resv (a leaf lock) */
    resv_t         *resv;                         /* sorted by physical_id */
    size_t          nresv, capresv;
} dstore_t;

/* An append that reaches past a physical queue's recorded reservation
 * records a new one this far beyond it (invariant 9). */
#define RESERVE_STEP (1 << 20)

/* One topic of the metadata snapshot: its items over every queue, ordered by
 * queue then seq; queue q's are items[qstart[q] .. qstart[q + 1]). */
typedef struct mtopic {
    rn_meta_topic_t t;
    rn_meta_item_t *items;
    size_t          nitems;
    size_t         *qstart;                      /* t.queues + 1 entries */
} mtopic_t;

/* The hot-path metadata (invariant 8): immutable once published. */
typedef struct msnap {
    int       refs;                              /* d->snap_mu */
    uint64_t  gen;                               /* the generation it describes */
    mtopic_t *topics;                            /* sorted by name (strcmp) */
    size_t    ntopics;
} msnap_t;

struct rn_datadir {
    char             path[PATH_MAX];
    char             abs[PATH_MAX];     /* realpath of path */
    int              lock_fd;
    rn_meta_t       *meta;
    rn_meta_t       *rmeta;             /* offset reservations' own connection (rmeta_mu) */
    pthread_mutex_t  rmeta_mu;          /* a leaf lock */
    int64_t          datadir_id;
    rn_log_opts_t    log_opts;
    pthread_mutex_t  mu;                /* meta.db and mapping changes */
    pthread_mutex_t  snap_mu;           /* snap and its refcounts (invariant 8) */
    msnap_t         *snap;              /* NULL: resolve from meta.db */
    _Atomic uint64_t gen;
    dstore_t        *stores[RN_META_MAX_STORES];   /* by id; invariant 6 */
    void           (*report)(void *arg, int warn, const char *line);
    void            *report_arg;
    int              skip_damaged;
    _Atomic uint64_t skipped;
    rn_notify_t      notify;            /* every store's appends becoming visible */
};

rn_notify_t *rn_datadir_notify(rn_datadir_t *d) { return &d->notify; }

int rn_datadir_skip_damaged(const rn_datadir_t *d) { return d->skip_damaged; }
void rn_datadir_count_skipped(rn_datadir_t *d, uint64_t n) { atomic_fetch_add(&d->skipped, n); }
uint64_t rn_datadir_skipped(rn_datadir_t *d) { return atomic_load(&d->skipped); }

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

/* A directory that holds nothing but what a half-finished first open leaves
 * behind, or the users file `runnel user add` writes before a first start,
 * may be initialised. */
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
            !strcmp(n, "meta.db-journal") ||
            !strcmp(n, "users") || !strcmp(n, "users.tmp"))   /* `runnel user add` first */
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
    if (rn_path_buf(path, sizeof path, d->path, "LOCK") != 0)
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

/* Lexically normalise an absolute path: no "//", ".", ".." or trailing "/". */
static int normalize(const char *in, char *out, size_t size)
{
    size_t n = 0;
    const char *p = in;
    if (*p != '/') return RN_EINVAL;
    while (*p) {
        while (*p == '/') p++;
        const char *e = p;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - p);
        if (len == 0 || (len == 1 && p[0] == '.')) {
            /* skip */
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/') n--;
            if (n > 0) n--;
        } else {
            if (n + 1 + len + 1 > size) return -ENAMETOOLONG;
            out[n++] = '/';
            memcpy(out + n, p, len);
            n += len;
        }
        p = e;
    }
    if (n == 0) { if (size < 2) return -ENAMETOOLONG; out[n++] = '/'; }
    out[n] = '\0';
    return 0;
}

/* 1 when a is b or a directory above or below it (component-wise). */
static int nested(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), m = la < lb ? la : lb;
    if (strncmp(a, b, m) != 0) return 0;
    if (la == lb) return 1;
    const char *longer = la > lb ? a : b;
    return longer[m] == '/' || m == 1;
}

/* The absolute, lexically normalised form of a store path (relative paths
 * are relative to the data directory). */
static int abs_path(const rn_datadir_t *d, const char *path, char *out, size_t size)
{
    char tmp[PATH_MAX * 2];
    if (path[0] == '/') snprintf(tmp, sizeof tmp, "%s", path);
    else snprintf(tmp, sizeof tmp, "%s/%s", d->abs, path);
    return normalize(tmp, out, size);
}

static int marker_text(const rn_datadir_t *d, char *out, size_t size)
{
    return snprintf(out, size, "runnel store of data directory %lld\n",
                    (long long)d->datadir_id);
}

/* 1 when DIR/STORE names this data directory, 0 when absent or another. */
static int marker_matches(const rn_datadir_t *d, const char *dir)
{
    char path[PATH_MAX], want[96];
    uint8_t *got = NULL;
    size_t n = 0;
    if (rn_path_buf(path, sizeof path, dir, STORE_MARKER) != 0) return 0;
    if (rn_read_file(path, 256, &got, &n) != 0) return 0;
    int w = marker_text(d, want, sizeof want);
    int ok = w > 0 && n == (size_t)w && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static void report_store(const dstore_t *s, void (*report)(void *, int, const char *),
                         void *arg)
{
    rn_log_recovery_t r;
    char line[1024], text[2200];
    rn_log_recovery_info(s->log, &r);
    int warn = rn_log_recovery_format(&r, line, sizeof line);
    snprintf(text, sizeof text, "store %u (%.1000s): %s", s->id, s->path, line);
    report(arg, warn, text);
}

void rn_datadir_recovery_report(rn_datadir_t *d, void (*report)(void *, int, const char *),
                                void *arg)
{
    for (uint32_t i = 0; i < RN_META_MAX_STORES; i++)
        if (d->stores[i]) report_store(d->stores[i], report, arg);
}

/* Every group's committed offsets, in one malloc'd array. */
static int all_group_offsets(rn_meta_t *m, rn_meta_offset_t **out, size_t *nout, char *inner)
{
    rn_meta_group_t *g = NULL;
    size_t ng = 0;
    *out = NULL;
    *nout = 0;
    int rc = rn_meta_group_list(m, &g, &ng, inner);
    for (size_t i = 0; rc == 0 && i < ng; i++) {
        rn_meta_offset_t *v = NULL;
        size_t n = 0;
        rc = rn_meta_offsets_get(m, g[i].name, -1, &v, &n, inner);
        if (rc == 0 && n > 0) {
            rn_meta_offset_t *all = realloc(*out, (*nout + n) * sizeof *all);
            if (!all) rc = -ENOMEM;
            else {
                memcpy(all + *nout, v, n * sizeof *v);
                *out = all;
                *nout += n;
            }
        }
        free(v);
    }
    free(g);
    return rc;
}

/* Where the metadata says each physical queue of store `id` had reached: the
 * end of a sealed item, else its start, or past it the offset a consumer
 * group committed in it. With log, moves each queue's end forward to that
 * (rn_log_accept_loss). *any = 1 when the store holds an item of some topic. */
static int store_floors(rn_datadir_t *d, uint32_t id, rn_log_t *log, int *any, char *errmsg)
{
    rn_meta_topic_t *t = NULL;
    rn_meta_offset_t *g = NULL;
    size_t nt = 0, ng = 0;
    char inner[RN_ERRMSG_SIZE] = "";
    int rc = rn_meta_topic_list(d->meta, &t, &nt, inner);
    if (rc == 0 && log) rc = all_group_offsets(d->meta, &g, &ng, inner);
    *any = 0;
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        rn_meta_item_t *it = NULL;
        size_t n = 0;
        rc = rn_meta_items(d->meta, t[i].id, UINT32_MAX, &it, &n, inner);
        for (size_t k = 0; rc == 0 && k < n; k++) {
            const rn_meta_item_t *m = &it[k];
            if (m->store_id != id) continue;
            *any = 1;
            int64_t floor = rn_mapping_sealed(m) ? m->physical_end : m->physical_start;
            if (!rn_mapping_sealed(m)) {            /* where it ended is not recorded: */
                int64_t upto = 0;                   /* past every acknowledged offset */
                rc = rn_meta_reserve_get(d->meta, m->physical_id, &upto, inner);
                if (upto > floor) floor = upto;
            }
            for (size_t j = 0; j < ng; j++) {
                if (g[j].topic_id != t[i].id || g[j].queue != m->queue ||
                    g[j].offset < m->logical_start)
                    continue;
                int64_t p = g[j].offset - m->logical_start + m->physical_start;
                if (rn_mapping_sealed(m) && p > m->physical_end) continue;
                if (p > floor) floor = p;
            }
            if (log && floor > 0) rc = rn_log_accept_loss(log, m->physical_id, floor, inner);
        }
        free(it);
    }
    free(t);
    free(g);
    if (rc != 0) return wrap(errmsg, rc, d->path, inner);
    return 0;
}

/* Open the store registered as (id, path) into d->stores[id]. A store that
 * held topic data before (must_exist: meta.db was there) and has neither a
 * commit log nor a checkpoint any more was removed: rn_log_open would
 * silently start it empty and hand out its offsets again. */
static int store_open(rn_datadir_t *d, uint32_t id, const char *path, int must_exist,
                      char *errmsg)
{
    char abs[PATH_MAX], inner[RN_ERRMSG_SIZE] = "";
    struct stat st;
    if (id >= RN_META_MAX_STORES || d->stores[id])
        return rn_errf(errmsg, RN_ECORRUPT, "meta.db: store id %u is invalid or repeated", id);
    int rc = abs_path(d, path, abs, sizeof abs);
    if (rc != 0) return rn_errf(errmsg, RN_EINVAL, "store %u: path %.100s is too long", id, path);
    if (id != 0) {
        /* Store 0 is made by the first open; any other must already exist
         * (rn_log_open would silently create an empty one). */
        if (stat(abs, &st) < 0 || !S_ISDIR(st.st_mode))
            return rn_errf(errmsg, -ENOENT, "store %u at %s is missing; its data is gone (mount "
                           "its disk, or restore the directory)", id, abs);
        if (!marker_matches(d, abs))
            return rn_errf(errmsg, RN_EFORMAT, "store %u at %s has no STORE file naming this "
                           "data directory", id, abs);
    }
    int removed = 0, any = 0;
    if (must_exist) {
        char ck[PATH_MAX], cl[PATH_MAX];
        if (rn_path_buf(ck, sizeof ck, abs, "checkpoint") == 0 &&
            rn_path_buf(cl, sizeof cl, abs, "commitlog") == 0 &&
            stat(ck, &st) < 0 && stat(cl, &st) < 0) {
            rc = store_floors(d, id, NULL, &any, errmsg);
            if (rc != 0) return rc;
            removed = any;
        }
        if (removed && !d->log_opts.accept_loss)
            return rn_errf(errmsg, RN_ECORRUPT, "store %u lost all its data (no commit log or "
                           "checkpoint, though meta.db maps topic queues to it): restore it, or "
                           "run `runnel store repair --accept-loss` (offsets are never reused); "
                           "it is %s", id, abs);
    }
    dstore_t *s = calloc(1, sizeof *s);
    if (!s) return rn_errf(errmsg, -ENOMEM, "out of memory");
    s->id = id;
    snprintf(s->path, sizeof s->path, "%s", path);
    pthread_mutex_init(&s->amu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    rc = rn_log_open(abs, &d->log_opts, &s->log, inner);
    if (rc != 0) {
        pthread_mutex_destroy(&s->amu);
        pthread_mutex_destroy(&s->rmu);
        free(s);
        return wrap(errmsg, rc, abs, inner);
    }
    rn_log_set_notify(s->log, &d->notify);
    d->stores[id] = s;
    if (removed) {
        rc = store_floors(d, id, s->log, &any, errmsg);
        if (rc != 0) return rc;
    }
    if (d->report) report_store(s, d->report, d->report_arg);
    return 0;
}

static int open_stores(rn_datadir_t *d, int must_exist, char *errmsg)
{
    rn_meta_store_t *v = NULL;
    size_t n = 0;
    char inner[RN_ERRMSG_SIZE] = "";
    int rc = rn_meta_store_list(d->meta, &v, &n, inner);
    if (rc != 0) return wrap(errmsg, rc, d->path, inner);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = store_open(d, v[i].id, v[i].path, must_exist, errmsg);
    free(v);
    return rc;
}

/* ---- the metadata snapshot (invariant 8) ------------------------------- */

static void snap_free(msnap_t *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->ntopics; i++) {
        free(m->topics[i].items);
        free(m->topics[i].qstart);
    }
    free(m->topics);
    free(m);
}

static void snap_unref(rn_datadir_t *d, msnap_t *m)
{
    pthread_mutex_lock(&d->snap_mu);
    int last = --m->refs == 0;
    pthread_mutex_unlock(&d->snap_mu);
    if (last) snap_free(m);
}

/* The current snapshot, pinned (NULL when there is none). */
static msnap_t *snap_pin(rn_datadir_t *d)
{
    pthread_mutex_lock(&d->snap_mu);
    msnap_t *m = d->snap;
    if (m) m->refs++;
    pthread_mutex_unlock(&d->snap_mu);
    return m;
}

/* Read every topic and its items from meta.db (d->mu held). */
static int snap_build(rn_datadir_t *d, msnap_t **out)
{
    char err[RN_ERRMSG_SIZE];
    rn_meta_topic_t *tv = NULL;
    size_t nt = 0;
    *out = NULL;
    msnap_t *m = calloc(1, sizeof *m);
    if (!m) return -ENOMEM;
    int rc = rn_meta_topic_list(d->meta, &tv, &nt, err);
    if (rc != 0) { free(m); return rc; }
    m->topics = calloc(nt ? nt : 1, sizeof *m->topics);
    if (!m->topics) { rc = -ENOMEM; goto fail; }
    for (size_t i = 0; i < nt; i++) {
        mtopic_t *mt = &m->topics[m->ntopics++];
        mt->t = tv[i];
        rc = rn_meta_items(d->meta, tv[i].id, UINT32_MAX, &mt->items, &mt->nitems, err);
        if (rc != 0) goto fail;
        mt->qstart = calloc((size_t)tv[i].queues + 1, sizeof *mt->qstart);
        if (!mt->qstart) { rc = -ENOMEM; goto fail; }
        size_t k = 0;
        for (uint32_t q = 0; q <= tv[i].queues; q++) {
            while (k < mt->nitems && mt->items[k].queue < q) k++;
            mt->qstart[q] = k;
        }
        mt->qstart[tv[i].queues] = mt->nitems;
    }
    for (size_t i = 1; i < m->ntopics; i++)       /* the list is by name; make sure */
        if (strcmp(m->topics[i - 1].t.name, m->topics[i].t.name) >= 0) { rc = RN_ECORRUPT; goto fail; }
    free(tv);
    m->refs = 1;
    *out = m;
    return 0;
fail:
    free(tv);
    snap_free(m);
    return rc;
}

/* Rebuild the snapshot after a change (d->mu held), describing generation
 * gen; on failure drop it, so resolution reads meta.db. */
static void snap_refresh(rn_datadir_t *d, uint64_t gen)
{
    msnap_t *m = NULL;
    if (snap_build(d, &m) == 0) m->gen = gen;
    else m = NULL;
    pthread_mutex_lock(&d->snap_mu);
    msnap_t *old = d->snap;
    d->snap = m;
    pthread_mutex_unlock(&d->snap_mu);
    if (old) snap_unref(d, old);
}

/* A mapping change (d->mu held): new snapshot, then the generation moves. */
static void mapping_changed(rn_datadir_t *d)
{
    uint64_t g = atomic_load_explicit(&d->gen, memory_order_acquire) + 1;
    snap_refresh(d, g);
    atomic_store_explicit(&d->gen, g, memory_order_release);
}

static const mtopic_t *snap_topic(const msnap_t *m, const char *name)
{
    size_t lo = 0, hi = m->ntopics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->topics[mid].t.name, name);
        if (c == 0) return &m->topics[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
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
    d->log_opts = o->log;
    d->report = o->report;
    d->report_arg = o->report_arg;
    d->skip_damaged = o->skip_damaged;
    /* Recursive: group operations hold it across reads that take it too. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&d->mu, &ma);
    pthread_mutex_init(&d->rmeta_mu, NULL);
    pthread_mutexattr_destroy(&ma);
    pthread_mutex_init(&d->snap_mu, NULL);
    rn_notify_init(&d->notify);
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
    if (!realpath(dir, d->abs)) {
        rc = rn_errf(errmsg, -errno, "cannot resolve %s: %s", dir, strerror(errno));
        goto fail;
    }

    if ((rc = rn_path_buf(path, sizeof path, dir, "meta.db")) != 0) {
        rn_errf(errmsg, rc, "data directory path is too long");
        goto fail;
    }
    int meta_existed = 1;
    if (stat(path, &st) < 0) {
        int e = errno;
        meta_existed = 0;
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
    if (rc == 0) rc = rn_meta_open(path, 0, &d->rmeta, inner);
    if (rc != 0) { wrap(errmsg, rc, dir, inner); goto fail; }
    rc = rn_meta_store_register(d->meta, 0, STORE0_REL, inner);
    if (rc == 0) rc = rn_meta_datadir_id(d->meta, &d->datadir_id, inner);
    if (rc != 0) { wrap(errmsg, rc, dir, inner); goto fail; }

    if ((rc = rn_path_buf(path, sizeof path, dir, "stores")) != 0 || (rc = rn_mkdir_p(path)) != 0) {
        rn_errf(errmsg, rc, "cannot create %s/stores: %s", dir, rn_strerror(rc));
        goto fail;
    }
    rc = open_stores(d, meta_existed, errmsg);
    if (rc != 0) goto fail;
    if (!d->stores[0]) {
        rc = rn_errf(errmsg, RN_ECORRUPT, "%s: store 0 is not registered", dir);
        goto fail;
    }
    snap_refresh(d, atomic_load(&d->gen));
    *out = d;
    return 0;
fail:
    rn_datadir_close(d);
    return rc;
}

int rn_datadir_close(rn_datadir_t *d)
{
    if (!d) return 0;
    int rc = 0, any = d->meta != NULL;
    for (uint32_t i = 0; i < RN_META_MAX_STORES; i++) {
        if (!d->stores[i]) continue;
        int r = rn_log_close(d->stores[i]->log);
        if (rc == 0) rc = r;
        pthread_mutex_destroy(&d->stores[i]->amu);
        pthread_mutex_destroy(&d->stores[i]->rmu);
        free(d->stores[i]->resv);
        free(d->stores[i]);
        any = 1;
    }
    rn_meta_close(d->meta);
    rn_meta_close(d->rmeta);
    if (d->lock_fd >= 0) {
        /* Clear the holder line while still holding the lock. */
        if (any) (void)rn_sys.ftruncate(d->lock_fd, 0);
        rn_sys.close(d->lock_fd);
    }
    if (d->snap) snap_unref(d, d->snap);
    pthread_mutex_destroy(&d->snap_mu);
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->rmeta_mu);
    rn_notify_destroy(&d->notify);
    free(d);
    return rc;
}

const char *rn_datadir_path(const rn_datadir_t *d) { return d->path; }
rn_meta_t *rn_datadir_meta(rn_datadir_t *d) { return d->meta; }

rn_log_t *rn_datadir_store_log(rn_datadir_t *d, uint32_t id)
{
    return id < RN_META_MAX_STORES && d->stores[id] ? d->stores[id]->log : NULL;
}

rn_meta_t *rn_datadir_meta_lock(rn_datadir_t *d)
{
    pthread_mutex_lock(&d->mu);
    return d->meta;
}

void rn_datadir_meta_unlock(rn_datadir_t *d) { pthread_mutex_unlock(&d->mu); }

int rn_datadir_stores(rn_datadir_t *d, rn_datadir_store_info_t **out, size_t *n, char *errmsg)
{
    rn_meta_store_t *v = NULL;
    size_t len = 0;
    *out = NULL; *n = 0;
    pthread_mutex_lock(&d->mu);
    int rc = rn_meta_store_list(d->meta, &v, &len, errmsg);
    pthread_mutex_unlock(&d->mu);
    if (rc != 0) return rc;
    rn_datadir_store_info_t *r = calloc(len ? len : 1, sizeof *r);
    if (!r) { free(v); return rn_errf(errmsg, -ENOMEM, "out of memory"); }
    for (size_t i = 0; i < len; i++) {
        r[i].id = v[i].id;
        memcpy(r[i].path, v[i].path, sizeof r[i].path);
        r[i].physical_queues = v[i].physical_queues;
        rn_log_t *log = rn_datadir_store_log(d, v[i].id);
        r[i].bytes = log ? rn_log_bytes(log) : 0;
    }
    free(v);
    *out = r; *n = len;
    return 0;
}

/* One past the largest queue id store `id` holds (invariant 4). */
static int id_floor(rn_datadir_t *d, uint32_t id, uint32_t *floor, char *errmsg)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    int rc = rn_log_queues(d->stores[id]->log, &ids, &n);
    if (rc != 0) return rn_errf(errmsg, rc, "listing the queues of store %u: %s", id,
                                rn_strerror(rc));
    *floor = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= *floor) *floor = ids[i] == UINT32_MAX ? UINT32_MAX : ids[i] + 1;
    free(ids);
    return 0;
}

int rn_datadir_topic_create(rn_datadir_t *d, const char *name, uint32_t queues,
                            rn_meta_topic_t *out, char *errmsg)
{
    uint32_t floor = 0;
    pthread_mutex_lock(&d->mu);
    int rc = id_floor(d, 0, &floor, errmsg);
    if (rc == 0) rc = rn_meta_topic_create(d->meta, name, queues, 0, floor, out, errmsg);
    if (rc == 0) snap_refresh(d, atomic_load(&d->gen));   /* no existing queue changed */
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int rn_datadir_topic_alter(rn_datadir_t *d, const char *name, uint32_t queues,
                           rn_meta_topic_t *out, char *errmsg)
{
    rn_meta_topic_t t;
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    uint32_t floor = 0;
    pthread_mutex_lock(&d->mu);
    int rc = rn_meta_topic_get(d->meta, name, &t, errmsg);
    if (rc == 0) rc = rn_meta_items(d->meta, t.id, 0, &items, &n, errmsg);
    uint32_t store = rc == 0 ? items[n - 1].store_id : 0;
    if (rc == 0 && !d->stores[store])
        rc = rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue 0 is on store %u, which is not open",
                     name, store);
    if (rc == 0) rc = id_floor(d, store, &floor, errmsg);
    if (rc == 0) rc = rn_meta_topic_alter(d->meta, name, queues, store, floor, out, errmsg);
    if (rc == 0) mapping_changed(d);
    pthread_mutex_unlock(&d->mu);
    free(items);
    return rc;
}

int rn_datadir_topic_delete(rn_datadir_t *d, const char *name, rn_meta_topic_t *out,
                            char *errmsg)
{
    rn_meta_topic_t t;
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    int held[RN_META_MAX_STORES] = {0};
    pthread_mutex_lock(&d->mu);
    int rc = rn_meta_topic_get(d->meta, name, &t, errmsg);
    if (rc == 0) rc = rn_meta_items(d->meta, t.id, UINT32_MAX, &items, &n, errmsg);
    /* Invariant 10: hold the append lock of every store an open item of the
     * topic is on (in id order, after d->mu, as a remap does), so an append
     * either lands before the delete commits or sees the new generation. */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (!rn_mapping_sealed(&items[i]) && items[i].store_id < RN_META_MAX_STORES &&
            d->stores[items[i].store_id])
            held[items[i].store_id] = 1;
    for (uint32_t i = 0; i < RN_META_MAX_STORES; i++)
        if (held[i]) pthread_mutex_lock(&d->stores[i]->amu);
    if (rc == 0) rc = rn_meta_topic_delete(d->meta, name, out, errmsg);
    if (rc == 0) mapping_changed(d);
    for (uint32_t i = RN_META_MAX_STORES; i-- > 0;)
        if (held[i]) pthread_mutex_unlock(&d->stores[i]->amu);
    pthread_mutex_unlock(&d->mu);
    free(items);
    return rc;
}

/* ---- queue snapshots ---------------------------------------------------- */

static int no_queue(const char *topic, uint32_t queue, uint32_t queues, char *errmsg)
{
    if (queues == 1)
        return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' has no queue %u; it has only queue 0",
                       topic, queue);
    return rn_errf(errmsg, RN_ENOTFOUND, "topic '%s' has no queue %u; it has queues 0..%u",
                   topic, queue, queues - 1);
}

/* Check items (malloc'd, taken over) and install them in q. */
static int queue_set(rn_datadir_t *d, const rn_meta_topic_t *t, uint32_t queue,
                     rn_meta_item_t *items, size_t n, uint64_t gen, rn_datadir_queue_t *q,
                     char *errmsg)
{
    char inner[RN_ERRMSG_SIZE] = "";
    int rc = rn_mapping_check(items, n, inner);
    if (rc != 0) {
        rn_errf(errmsg, rc, "topic '%s': %s", t->name, inner);
    } else {
        for (size_t i = 0; i < n && rc == 0; i++)
            if (!rn_datadir_store_log(d, items[i].store_id))
                rc = rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u item %u is on store %u, "
                             "which is not registered", t->name, queue, items[i].seq,
                             items[i].store_id);
    }
    if (rc != 0) { free(items); return rc; }
    free(q->items);
    q->topic = *t;
    q->queue = queue;
    q->items = items;
    q->nitems = n;
    q->gen = gen;
    return 0;
}

/* Read q's topic and items from meta.db; d->mu held. */
static int queue_load(rn_datadir_t *d, const char *topic, uint32_t queue,
                      rn_datadir_queue_t *q, char *errmsg)
{
    rn_meta_topic_t t;
    rn_meta_item_t *items = NULL;
    size_t n = 0;
    uint64_t gen = atomic_load_explicit(&d->gen, memory_order_acquire);
    int rc = rn_meta_topic_get(d->meta, topic, &t, errmsg);
    if (rc != 0) return rc;
    if (queue >= t.queues) return no_queue(topic, queue, t.queues, errmsg);
    rc = rn_meta_items(d->meta, t.id, queue, &items, &n, errmsg);
    if (rc != 0) return rc;
    return queue_set(d, &t, queue, items, n, gen, q, errmsg);
}

/* Resolve q from the metadata snapshot, with no lock but a brief pin.
 * 1 when the snapshot lacks the topic or queue (or there is none): the
 * caller then reads meta.db. */
static int queue_snap(rn_datadir_t *d, const char *topic, uint32_t queue,
                      rn_datadir_queue_t *q, char *errmsg)
{
    msnap_t *m = snap_pin(d);
    if (!m) return 1;
    const mtopic_t *mt = snap_topic(m, topic);
    int rc = 1;
    if (mt && queue < mt->t.queues) {
        size_t a = mt->qstart[queue], n = mt->qstart[queue + 1] - a;
        rn_meta_item_t *items = malloc((n ? n : 1) * sizeof *items);
        if (!items) {
            rc = rn_errf(errmsg, -ENOMEM, "out of memory");
        } else {
            memcpy(items, mt->items + a, n * sizeof *items);
            rc = queue_set(d, &mt->t, queue, items, n, m->gen, q, errmsg);
        }
    }
    snap_unref(d, m);
    return rc;
}

/* Resolve q: from the snapshot, else from meta.db under d->mu (and then
 * the snapshot, which missed something, is rebuilt). */
static int queue_resolve(rn_datadir_t *d, const char *topic, uint32_t queue,
                         rn_datadir_queue_t *q, char *errmsg)
{
    int rc = queue_snap(d, topic, queue, q, errmsg);
    if (rc != 1) return rc;
    pthread_mutex_lock(&d->mu);
    rc = queue_load(d, topic, queue, q, errmsg);
    if (rc == 0) snap_refresh(d, q->gen);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int rn_datadir_queue_open(rn_datadir_t *d, const char *topic, uint32_t queue,
                          rn_datadir_queue_t *q, char *errmsg)
{
    memset(q, 0, sizeof *q);
    return queue_resolve(d, topic, queue, q, errmsg);
}

void rn_datadir_queue_close(rn_datadir_queue_t *q)
{
    free(q->items);
    q->items = NULL;
    q->nitems = 0;
}

static int stale(rn_datadir_t *d, const rn_datadir_queue_t *q)
{
    return atomic_load_explicit(&d->gen, memory_order_acquire) != q->gen;
}

/* Re-resolve q (no lock held). */
static int reload(rn_datadir_t *d, rn_datadir_queue_t *q, char *errmsg)
{
    char name[RN_META_TOPIC_NAME_MAX + 1];
    memcpy(name, q->topic.name, sizeof name);      /* queue_set overwrites q->topic */
    return queue_resolve(d, name, q->queue, q, errmsg);
}

int rn_datadir_queue_refresh(rn_datadir_t *d, rn_datadir_queue_t *q, char *errmsg)
{
    if (!stale(d, q)) return 0;
    return reload(d, q, errmsg);
}

static rn_log_t *log_of(rn_datadir_t *d, const rn_meta_item_t *it)
{
    return d->stores[it->store_id]->log;
}

/* ---- append ------------------------------------------------------------- */

/* Index of physical queue pq in s->resv, or where it would go (rmu held). */
static size_t resv_find(const dstore_t *s, uint32_t pq)
{
    size_t lo = 0, hi = s->nresv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->resv[mid].physical_id < pq) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* Before an append that ends at `end` of physical queue pq is acknowledged:
 * unless a reservation past it is already recorded, record one RESERVE_STEP
 * beyond it in meta.db (invariant 9), through its own connection: neither a
 * store lock nor the metadata mutex is held (SQLite's own lock orders this
 * write against a transaction of the main connection). */
static int reserve(rn_datadir_t *d, dstore_t *s, uint32_t pq, int64_t end, char *errmsg)
{
    pthread_mutex_lock(&s->rmu);
    size_t k = resv_find(s, pq);
    int64_t known = k < s->nresv && s->resv[k].physical_id == pq ? s->resv[k].upto : 0;
    pthread_mutex_unlock(&s->rmu);
    if (end <= known) return 0;
    int64_t upto = end > INT64_MAX - RESERVE_STEP ? INT64_MAX : end + RESERVE_STEP;
    char inner[RN_ERRMSG_SIZE] = "";
    pthread_mutex_lock(&d->rmeta_mu);
    int rc = rn_meta_reserve_set(d->rmeta, pq, upto, inner);
    pthread_mutex_unlock(&d->rmeta_mu);
    if (rc != 0)
        return rn_errf(errmsg, rc, "store %u: cannot record the offsets handed out by physical "
                       "queue %u in meta.db (%s); the batch is stored but not acknowledged",
                       s->id, pq, inner);
    pthread_mutex_lock(&s->rmu);
    k = resv_find(s, pq);
    if (k < s->nresv && s->resv[k].physical_id == pq) {
        if (upto > s->resv[k].upto) s->resv[k].upto = upto;
    } else {
        if (s->nresv == s->capresv) {
            size_t nc = s->capresv ? s->capresv * 2 : 16;
            resv_t *n = realloc(s->resv, nc * sizeof *n);
            if (n) { s->resv = n; s->capresv = nc; }
        }
        if (s->nresv < s->capresv) {            /* out of memory: recorded again next time */
            memmove(s->resv + k + 1, s->resv + k, (s->nresv - k) * sizeof *s->resv);
            s->resv[k] = (resv_t){pq, upto};
            s->nresv++;
        }
    }
    pthread_mutex_unlock(&s->rmu);
    return 0;
}

static int append_impl(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                       size_t len, int64_t at, int64_t *base_offset, uint64_t *ticket,
                       char *errmsg);

int rn_datadir_append(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                      size_t len, int64_t *base_offset, uint64_t *ticket, char *errmsg)
{
    return append_impl(d, q, batch, len, -1, base_offset, ticket, errmsg);
}

int rn_datadir_append_at(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                         size_t len, int64_t base, uint64_t *ticket, char *errmsg)
{
    int64_t got;
    if (base < 0) return rn_errf(errmsg, RN_EINVAL, "base offset %lld is negative", (long long)base);
    return append_impl(d, q, batch, len, base, &got, ticket, errmsg);
}

static int append_impl(rn_datadir_t *d, rn_datadir_queue_t *q, const uint8_t *batch,
                       size_t len, int64_t at, int64_t *base_offset, uint64_t *ticket,
                       char *errmsg)
{
    int rc = 0;
    for (;;) {
        if (stale(d, q) && (rc = reload(d, q, errmsg)) != 0) return rc;
        const rn_meta_item_t *it = &q->items[q->nitems - 1];
        dstore_t *s = d->stores[it->store_id];
        pthread_mutex_lock(&s->amu);
        if (stale(d, q)) {                  /* remapped meanwhile: resolve again */
            pthread_mutex_unlock(&s->amu);
            continue;
        }
        int64_t pbase;
        uint64_t t = 0;
        if (at < 0) {
            rc = rn_log_append(s->log, it->physical_id, batch, len, &pbase, &t, errmsg);
        } else if (at < it->logical_start) {
            rc = rn_errf(errmsg, RN_ERANGE, "offset %lld is before the open mapping item "
                         "(logical start %lld)", (long long)at, (long long)it->logical_start);
        } else {
            pbase = at - it->logical_start + it->physical_start;
            rc = rn_log_append_at(s->log, it->physical_id, batch, len, pbase, &t, errmsg);
        }
        pthread_mutex_unlock(&s->amu);
        if (rc == 0)                        /* rn_log_append validated the header */
            rc = reserve(d, s, it->physical_id, pbase + rn_be32_get(batch + 57), errmsg);
        if (rc == 0 && t >> TICKET_SHIFT)
            rc = rn_errf(errmsg, RN_EFULL, "store %u: commit-log position %llu is past what "
                         "a ticket holds", it->store_id, (unsigned long long)t);
        if (rc == 0) {
            *base_offset = rn_mapping_to_logical(it, pbase);
            *ticket = (uint64_t)it->store_id << TICKET_SHIFT | t;
        }
        return rc;
    }
}

int rn_datadir_wait(rn_datadir_t *d, uint64_t ticket)
{
    uint32_t id = (uint32_t)(ticket >> TICKET_SHIFT);
    rn_log_t *log = rn_datadir_store_log(d, id);
    if (!log) return RN_EINVAL;
    return rn_log_wait(log, ticket & ((1ull << TICKET_SHIFT) - 1));
}

/* ---- reading ------------------------------------------------------------ */

/* Physical [start, end) of item `it` that readers may use now. */
static void item_range(rn_datadir_t *d, const rn_meta_item_t *it, int64_t *start, int64_t *end,
                       uint64_t *batches)
{
    rn_log_queue_info_t pi;
    rn_log_queue_info(log_of(d, it), it->physical_id, &pi);
    int64_t e = rn_mapping_sealed(it) ? it->physical_end : pi.high_watermark;
    if (rn_mapping_sealed(it) && pi.high_watermark < e) e = pi.high_watermark;
    if (e < it->physical_start) e = it->physical_start;
    int64_t s = pi.log_start > it->physical_start ? pi.log_start : it->physical_start;
    if (s > e) s = e;
    *start = s;
    *end = e;
    if (batches) *batches = pi.batches;
}

/* Info of a fresh snapshot. */
static void info_of(rn_datadir_t *d, const rn_datadir_queue_t *q, rn_datadir_queue_info_t *out)
{
    out->log_start = -1;
    out->batches = 0;
    for (size_t i = 0; i < q->nitems; i++) {
        const rn_meta_item_t *it = &q->items[i];
        int64_t s, e;
        uint64_t b;
        item_range(d, it, &s, &e, &b);
        int last = i + 1 == q->nitems;
        /* A sealed item retention emptied holds nothing (its start reached
         * its end); the logical start is in the first that still does. */
        if (out->log_start < 0 && (s < e || last)) out->log_start = rn_mapping_to_logical(it, s);
        out->batches += b;
        if (last) out->high_watermark = rn_mapping_to_logical(it, e);
    }
}

int rn_datadir_queue_info(rn_datadir_t *d, rn_datadir_queue_t *q, rn_datadir_queue_info_t *out,
                          char *errmsg)
{
    int rc = rn_datadir_queue_refresh(d, q, errmsg);
    if (rc != 0) return rc;
    info_of(d, q, out);
    return 0;
}

static int range_error(const rn_datadir_queue_t *q, int64_t offset,
                       const rn_datadir_queue_info_t *info, char *errmsg)
{
    return rn_errf(errmsg, RN_ERANGE, "offset %lld is outside topic '%s' queue %u's range "
                   "[%lld, %lld]", (long long)offset, q->topic.name, q->queue,
                   (long long)info->log_start, (long long)info->high_watermark);
}

/* Rewrite the base offsets of the nb batches at out[from..] to logical ones,
 * cutting any batch at or past a sealed item's end (invariant 3). *next is
 * the logical offset after the last batch kept; *kept how many were. */
static int relabel(const rn_datadir_queue_t *q, const rn_meta_item_t *it, rn_buf_t *out,
                   size_t from, uint32_t nb, uint32_t *kept, int64_t *next, char *errmsg)
{
    size_t pos = from;
    *kept = 0;
    for (uint32_t i = 0; i < nb; i++) {
        size_t sz;
        if (pos + RN_BATCH_HEADER_SIZE > out->len ||
            rn_batch_size(out->data + pos, out->len - pos, &sz) != 0 || sz > out->len - pos ||
            sz < RN_BATCH_HEADER_SIZE)
            return rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u: a batch read from "
                           "physical queue %u is malformed", q->topic.name, q->queue,
                           it->physical_id);
        int64_t pbase = (int64_t)rn_be64_get(out->data + pos);
        if (rn_mapping_sealed(it) && pbase >= it->physical_end) break;
        uint8_t *b = out->data + pos;
        int64_t count = rn_be32_get(b + 57);        /* recordCount (batch.h layout) */
        rn_batch_set_base_offset(b, rn_mapping_to_logical(it, pbase));
        *next = rn_mapping_to_logical(it, pbase + count);
        pos += sz;
        (*kept)++;
    }
    out->len = pos;
    return 0;
}

/* Restate a store's read error at physical offset p of item it in the
 * topic's logical offsets: which, where, and how to go past them. */
static void damaged_error(rn_datadir_t *d, const rn_datadir_queue_t *q, const rn_meta_item_t *it,
                          int64_t p, int rc, char *errmsg)
{
    rn_log_batch_ref_t ref;
    if (rn_log_lookup_offset(log_of(d, it), it->physical_id, p, &ref, NULL) != 0) return;
    int64_t from = rn_mapping_to_logical(it, ref.base_offset);
    int64_t to = rn_mapping_to_logical(it, ref.base_offset + (int64_t)ref.record_count);
    const char *what = rc == RN_ECORRUPT ? "unreadable (the commit log does not hold them where "
                                           "the index says)"
                       : ref.size == 0 ? "lost (accepted by store repair --accept-loss)"
                                       : "damaged";
    rn_errf(errmsg, rc, "topic '%s' queue %u offsets [%lld, %lld) are %s (store %u, physical "
            "queue %u, commit-log position %llu); read from offset %lld on, or pass "
            "--skip-damaged", q->topic.name, q->queue, (long long)from, (long long)to, what,
            it->store_id, it->physical_id, (unsigned long long)ref.position, (long long)to);
}

int rn_datadir_read(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t offset, size_t max_bytes,
                    rn_buf_t *out, uint32_t *nbatches, char *errmsg)
{
    rn_datadir_queue_info_t info;
    *nbatches = 0;
    int rc = rn_datadir_queue_info(d, q, &info, errmsg);
    if (rc != 0) return rc;
    if (offset < info.log_start || offset > info.high_watermark)
        return range_error(q, offset, &info, errmsg);
    size_t before = out->len, total = 0;
    uint32_t n = 0;
    size_t idx = 0;
    if (rn_mapping_find(q->items, q->nitems, offset, &idx) != 0)
        return range_error(q, offset, &info, errmsg);
    for (; idx < q->nitems && offset < info.high_watermark; idx++) {
        const rn_meta_item_t *it = &q->items[idx];
        int64_t s, e;
        item_range(d, it, &s, &e, NULL);
        int64_t p = rn_mapping_to_physical(it, offset);
        if (p < s) p = s;                   /* retention moved past: start there */
        if (p >= e) {
            /* The end of a sealed item that is not yet wholly visible means
             * wait; the end of a complete one means go on to the next. */
            if (rn_mapping_sealed(it) && e < it->physical_end) break;
            offset = rn_mapping_to_logical(it, e);
            continue;
        }
        if (n > 0) {
            /* Crossing into another item: only whole batches that fit. */
            rn_log_batch_ref_t ref;
            if (rn_log_lookup_offset(log_of(d, it), it->physical_id, p, &ref, NULL) != 0 ||
                total + ref.size > max_bytes)
                break;
        }
        size_t at = out->len;
        uint32_t got = 0, kept = 0;
        rc = rn_log_read(log_of(d, it), it->physical_id, p, n ? max_bytes - total : max_bytes,
                         out, &got, errmsg);
        if (rc == RN_EDAMAGED || rc == RN_ECORRUPT) {
            /* The batches before the damage first; the error names it in
             * this queue's terms at the read that starts there. */
            if (n > 0) { out->len = at; break; }
            damaged_error(d, q, it, p, rc, errmsg);
        }
        if (rc == 0) rc = relabel(q, it, out, at, got, &kept, &offset, errmsg);
        if (rc != 0) { out->len = before; return rc; }
        total += out->len - at;
        n += kept;
        if (kept < got || total >= max_bytes) break;
        if (!rn_mapping_sealed(it) || offset < rn_mapping_item_end(it)) break;
    }
    *nbatches = n;
    return 0;
}

int rn_datadir_batch_end(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t offset, int64_t *end,
                         char *errmsg)
{
    size_t idx = 0;
    int rc = rn_datadir_queue_refresh(d, q, errmsg);
    if (rc != 0) return rc;
    if (rn_mapping_find(q->items, q->nitems, offset, &idx) != 0)
        return rn_errf(errmsg, RN_ERANGE, "topic '%s' queue %u has no offset %lld",
                       q->topic.name, q->queue, (long long)offset);
    const rn_meta_item_t *it = &q->items[idx];
    rn_log_batch_ref_t ref;
    rc = rn_log_lookup_offset(log_of(d, it), it->physical_id, rn_mapping_to_physical(it, offset),
                              &ref, errmsg);
    if (rc != 0) return rc;
    *end = rn_mapping_to_logical(it, ref.base_offset + (int64_t)ref.record_count);
    return 0;
}

int rn_datadir_lookup_time(rn_datadir_t *d, rn_datadir_queue_t *q, int64_t ts, int64_t *offset,
                           char *errmsg)
{
    int rc = rn_datadir_queue_refresh(d, q, errmsg);
    if (rc != 0) return rc;
    for (size_t i = 0; i < q->nitems; i++) {
        const rn_meta_item_t *it = &q->items[i];
        int64_t s, e, p;
        item_range(d, it, &s, &e, NULL);
        if (s >= e && i + 1 < q->nitems) continue;
        rc = rn_log_lookup_time(log_of(d, it), it->physical_id, ts, &p, errmsg);
        if (rc != 0) return rc;
        if (p < s) p = s;
        if (p < e || i + 1 == q->nitems) {
            *offset = rn_mapping_to_logical(it, p > e ? e : p);
            return 0;
        }
    }
    return rn_errf(errmsg, RN_ECORRUPT, "topic '%s' queue %u has no items", q->topic.name,
                   q->queue);
}

int rn_datadir_resolve(rn_datadir_t *d, rn_datadir_queue_t *q, rn_datadir_pos_kind_t kind,
                       int64_t value, int64_t *offset, char *errmsg)
{
    rn_datadir_queue_info_t info;
    int rc = rn_datadir_queue_info(d, q, &info, errmsg);
    if (rc != 0) return rc;
    switch (kind) {
    case RN_POS_EARLIEST: *offset = info.log_start; return 0;
    case RN_POS_LATEST: *offset = info.high_watermark; return 0;
    case RN_POS_TIME: return rn_datadir_lookup_time(d, q, value, offset, errmsg);
    case RN_POS_OFFSET:
        if (value < info.log_start || value > info.high_watermark)
            return range_error(q, value, &info, errmsg);
        *offset = value;
        return 0;
    }
    return rn_errf(errmsg, RN_EINVAL, "bad start position");
}

/* ---- remap -------------------------------------------------------------- */

/* A store path as the user gave it -> its registered form (relative to the
 * data directory when inside it) and absolute form. */
static int store_path(rn_datadir_t *d, const char *in, char *reg, size_t regsz, char *abs,
                      size_t abssz, char *errmsg)
{
    int rc = abs_path(d, in, abs, abssz);
    if (rc != 0) return rn_errf(errmsg, RN_EINVAL, "--store: path %.100s is too long", in);
    size_t dl = strlen(d->abs);
    if (!strcmp(abs, d->abs))
        return rn_errf(errmsg, RN_EINVAL, "--store %.100s is the data directory itself; give a "
                       "directory for the store (e.g. %s/stores/1)", in, d->abs);
    const char *rel = abs;
    if (!strncmp(abs, d->abs, dl) && abs[dl] == '/') rel = abs + dl + 1;
    if (strlen(rel) > RN_META_PATH_MAX || strlen(rel) >= regsz)
        return rn_errf(errmsg, RN_EINVAL, "--store: path %.100s is too long", in);
    memcpy(reg, rel, strlen(rel) + 1);
    return 0;
}

/* Pick the target store of a remap: an existing one (*is_new = 0) or a new
 * id at a path checked to be usable (invariant 2). d->mu held. */
static int remap_target(rn_datadir_t *d, const char *store, uint32_t *id, int *is_new,
                        char *reg, size_t regsz, char *abs, size_t abssz, char *errmsg)
{
    int rc = store_path(d, store, reg, regsz, abs, abssz, errmsg);
    if (rc != 0) return rc;
    uint32_t free_id = RN_META_MAX_STORES;
    for (uint32_t i = 0; i < RN_META_MAX_STORES; i++) {
        dstore_t *s = d->stores[i];
        if (!s) { if (free_id == RN_META_MAX_STORES) free_id = i; continue; }
        if (!strcmp(s->path, reg)) { *id = i; *is_new = 0; return 0; }
        char snorm[PATH_MAX];
        if (abs_path(d, s->path, snorm, sizeof snorm) == 0 && nested(snorm, abs))
            return rn_errf(errmsg, RN_EINVAL, "--store %s overlaps store %u at %s; give a "
                           "directory outside every store, or exactly a store's path", store,
                           i, s->path);
    }
    if (free_id == RN_META_MAX_STORES)
        return rn_errf(errmsg, RN_EFULL, "a data directory holds at most %d stores",
                       RN_META_MAX_STORES);
    struct stat st;
    if (stat(abs, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return rn_errf(errmsg, -ENOTDIR, "--store %s is not a directory", store);
        DIR *dh = opendir(abs);
        if (!dh) return rn_errf(errmsg, -errno, "cannot read %s: %s", abs, strerror(errno));
        int empty = 1;
        struct dirent *e;
        while ((e = readdir(dh)) != NULL)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { empty = 0; break; }
        closedir(dh);
        if (!empty && !marker_matches(d, abs))
            return rn_errf(errmsg, RN_EINVAL, "--store %s is not empty and is not a store of "
                           "this data directory; give a new or empty directory", store);
    }
    *id = free_id;
    *is_new = 1;
    return 0;
}

/* Step (1) of a remap to a new store: the directory and its STORE file,
 * durably, then the store opened (not yet published in d->stores). */
static int create_store(rn_datadir_t *d, const char *abs, rn_log_t **log, char *errmsg)
{
    char marker[96], inner[RN_ERRMSG_SIZE] = "";
    int rc = rn_mkdir_p(abs);
    if (rc != 0) return rn_errf(errmsg, rc, "cannot create store directory %s: %s", abs,
                                rn_strerror(rc));
    int n = marker_text(d, marker, sizeof marker);
    rc = rn_write_file_atomic(abs, STORE_MARKER, marker, (size_t)n);
    if (rc != 0) return rn_errf(errmsg, rc, "cannot write %s/%s: %s", abs, STORE_MARKER,
                                rn_strerror(rc));
    rn_meta_test_point("remap:store-created");
    rc = rn_log_open(abs, &d->log_opts, log, inner);
    if (rc != 0) return wrap(errmsg, rc, abs, inner);
    return 0;
}

static int remap_impl(rn_datadir_t *d, const char *topic, uint32_t queue, const char *store,
                      int64_t at, rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg);

int rn_datadir_remap(rn_datadir_t *d, const char *topic, uint32_t queue, const char *store,
                     rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg)
{
    return remap_impl(d, topic, queue, store, -1, sealed, opened, errmsg);
}

int rn_datadir_truncate(rn_datadir_t *d, const char *topic, uint32_t queue, int64_t end,
                        char *errmsg)
{
    if (end < 0) return rn_errf(errmsg, RN_EINVAL, "truncate at a negative offset");
    return remap_impl(d, topic, queue, NULL, end, NULL, NULL, errmsg);
}

/* rn_datadir_remap, sealing the open item at the queue's end (at < 0) or at
 * logical offset `at` (rn_datadir_truncate: a batch boundary inside the open
 * item, at or below its end). */
static int remap_impl(rn_datadir_t *d, const char *topic, uint32_t queue, const char *store,
                      int64_t at, rn_meta_item_t *sealed, rn_meta_item_t *opened, char *errmsg)
{
    rn_datadir_queue_t q;
    char reg[RN_META_PATH_MAX + 1], abs[PATH_MAX];
    rn_log_t *newlog = NULL;
    dstore_t *ns = NULL;
    int is_new = 0;
    uint32_t target = 0, floor = 0;
    pthread_mutex_t *amu = NULL;
    memset(&q, 0, sizeof q);
    pthread_mutex_lock(&d->mu);
    rn_meta_test_point("remap:begin");
    int rc = queue_load(d, topic, queue, &q, errmsg);
    if (rc != 0) goto out;
    const rn_meta_item_t *open = &q.items[q.nitems - 1];
    target = open->store_id;
    if (store) {
        rc = remap_target(d, store, &target, &is_new, reg, sizeof reg, abs, sizeof abs, errmsg);
        if (rc != 0) goto out;
    }
    if (is_new) {
        ns = calloc(1, sizeof *ns);
        if (!ns) { rc = rn_errf(errmsg, -ENOMEM, "out of memory"); goto out; }
        rc = create_store(d, abs, &newlog, errmsg);
        if (rc != 0) goto out;
    }
    /* (2): everything written to the open item's physical queue is durable
     * and visible, and no append can follow (its store's append lock, held
     * to the end): its high watermark is the item's final end. */
    amu = &d->stores[open->store_id]->amu;
    pthread_mutex_lock(amu);
    rn_log_t *oldlog = log_of(d, open);
    rc = rn_log_sync(oldlog);
    if (rc != 0) {
        rn_errf(errmsg, rc, "syncing store %u before the remap: %s", open->store_id,
                rn_strerror(rc));
        goto out;
    }
    rn_meta_test_point("remap:synced");
    rn_log_queue_info_t pi;
    rn_log_queue_info(oldlog, open->physical_id, &pi);
    int64_t end = pi.high_watermark > open->physical_start ? pi.high_watermark
                                                           : open->physical_start;
    if (at >= 0) {                      /* rn_datadir_truncate: the tail from `at` goes */
        int64_t pat = at - open->logical_start + open->physical_start;
        rn_log_batch_ref_t ref;
        if (at < open->logical_start || pat > end) {
            rc = rn_errf(errmsg, RN_EINVAL, "topic '%s' queue %u: cannot truncate at %lld: "
                         "outside its open item [%lld, %lld]", topic, queue, (long long)at,
                         (long long)open->logical_start,
                         (long long)(open->logical_start + end - open->physical_start));
            goto out;
        }
        if (pat < end && (rn_log_lookup_offset(oldlog, open->physical_id, pat, &ref, NULL) != 0 ||
                          ref.base_offset != pat)) {
            rc = rn_errf(errmsg, RN_EINVAL, "topic '%s' queue %u: offset %lld is not where a "
                         "batch starts", topic, queue, (long long)at);
            goto out;
        }
        end = pat;
    }
    if (is_new) {
        uint32_t *ids = NULL;
        size_t nids = 0;
        rc = rn_log_queues(newlog, &ids, &nids);
        if (rc != 0) { rn_errf(errmsg, rc, "listing the queues of %s", abs); goto out; }
        for (size_t i = 0; i < nids; i++)
            if (ids[i] >= floor) floor = ids[i] == UINT32_MAX ? UINT32_MAX : ids[i] + 1;
        free(ids);
    } else {
        rc = id_floor(d, target, &floor, errmsg);
        if (rc != 0) goto out;
    }
    rn_meta_remap_t r = {
        .topic_id = q.topic.id, .queue = queue, .open_seq = open->seq, .physical_end = end,
        .store_id = target, .new_store_path = is_new ? reg : NULL, .min_physical_id = floor,
    };
    rn_meta_item_t it;
    rc = rn_meta_remap(d->meta, &r, &it, errmsg);      /* (3) */
    if (rc != 0) goto out;
    if (is_new) {
        ns->id = target;
        snprintf(ns->path, sizeof ns->path, "%s", reg);
        ns->log = newlog;
        d->stores[target] = ns;
        ns = NULL;
        newlog = NULL;
    }
    mapping_changed(d);
    if (sealed) { *sealed = *open; sealed->physical_end = end; }
    if (opened) *opened = it;
    rn_meta_test_point("remap:committed");
out:
    if (amu) pthread_mutex_unlock(amu);
    pthread_mutex_unlock(&d->mu);
    /* A store created for a failed remap stays on disk, unregistered, with
     * its STORE file: the next remap to that path adopts it. */
    if (newlog) rn_log_close(newlog);
    free(ns);
    rn_datadir_queue_close(&q);
    return rc;
}

/* ---- retention ---------------------------------------------------------- */

int rn_datadir_retain(rn_datadir_t *d, uint32_t *segments, uint32_t *items, char *errmsg)
{
    rn_meta_topic_t *topics = NULL;
    size_t nt = 0;
    *segments = 0;
    *items = 0;
    int rc = 0, changed = 0;
    pthread_mutex_lock(&d->mu);
    for (uint32_t i = 0; i < RN_META_MAX_STORES && rc == 0; i++) {
        uint32_t k = 0;
        if (!d->stores[i]) continue;
        rc = rn_log_retain(d->stores[i]->log, &k);
        if (rc != 0) rn_errf(errmsg, rc, "retention on store %u: %s", i, rn_strerror(rc));
        *segments += k;
    }
    if (rc == 0) rc = rn_meta_topic_list(d->meta, &topics, &nt, errmsg);
    for (size_t t = 0; t < nt && rc == 0; t++) {
        for (uint32_t qi = 0; qi < topics[t].queues && rc == 0; qi++) {
            rn_datadir_queue_t q;
            memset(&q, 0, sizeof q);
            rc = queue_load(d, topics[t].name, qi, &q, errmsg);
            size_t drop = 0;
            while (rc == 0 && drop + 1 < q.nitems) {
                int64_t s, e;
                item_range(d, &q.items[drop], &s, &e, NULL);
                if (s < q.items[drop].physical_end) break;
                drop++;
            }
            if (rc == 0 && drop > 0) {
                rc = rn_meta_items_drop(d->meta, topics[t].id, qi, q.items[drop].seq, errmsg);
                if (rc == 0) { *items += (uint32_t)drop; changed = 1; }
            }
            rn_datadir_queue_close(&q);
        }
    }
    if (changed) mapping_changed(d);
    pthread_mutex_unlock(&d->mu);
    free(topics);
    return rc;
}

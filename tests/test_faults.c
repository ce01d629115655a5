/*
 * test_faults.c — fault injection at every write point of a fixed store
 * workload, one point at a time, through the system-call table rn_sys.
 *
 * Scenario: a store is opened, fed acknowledged appends over three queues with
 * segment rolls, index-file creations and checkpoint writes, closed, reopened
 * and fed again; the k-th write-side system call of that run fails (EIO,
 * ENOSPC, a short write that the caller must continue, or a short write
 * followed by ENOSPC), for every k the fault-free run makes.
 *
 * Write-side calls counted (the fault points): pwrite, pwritev, fdatasync,
 * fsync, fallocate, ftruncate, rename, unlink, mkdir, and open with O_WRONLY,
 * O_RDWR or O_CREAT.
 *
 * Invariants checked for every k, fsync policy and fault kind:
 *  1. The first failing call (open, append, wait or close) returns the
 *     injected error or RN_ESTICKY, and an append or open says why in errmsg
 *     (the cause's text, and the file for I/O errors).
 *  2. After a failed append or wait the next append returns RN_ESTICKY with a
 *     message naming the first cause, except after a failure to create a new
 *     segment or index file, which wrote nothing and is not sticky (log.c
 *     invariant 4): then the retried append must succeed.
 *  3. A short write that the kernel would continue is invisible: no error at
 *     all and every append acknowledged.
 *  4. Reopened with the real calls, every acknowledged record is there with
 *     its exact content; each queue's offsets are dense from 0, every batch
 *     passes deep validation, and nothing that was never appended appears
 *     (records past the acknowledged ones must be attempted appends).
 *  5. Appends then continue at the high watermark and survive another reopen.
 * The number of faults injected, and of faults the store absorbed without
 * reporting one (e.g. the best-effort pid write into LOCK), are printed;
 * a fault absorbed anywhere else fails the test.
 * The run is deterministic up to the syncer thread's interleaving: a k that
 * the rerun does not reach injects nothing and is counted as such.
 *
 * A real file system filled up (test_fill_*): an 8 MiB tmpfs, and an 8 MiB
 * ext4 image on a loop device, are mounted (root only; otherwise the tests
 * are skipped with the reason, visibly) and appended to until ENOSPC: the
 * error names the cause, a retry fails the same way, and once a ballast
 * file is deleted the store reopens with every acknowledged record and
 * appends again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "common/error.h"
#include "common/sys.h"
#include "log/log.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum { NQ = 3, NB_A = 18, NB_B = 6 };

/* ---- the fault table ----------------------------------------------------------- */

typedef enum fault_kind { F_NONE, F_EIO, F_ENOSPC, F_SHORT, F_SHORT_ENOSPC, F_KINDS } fault_kind_t;
static const char *const kind_name[F_KINDS] = {"none", "EIO", "ENOSPC", "short write",
                                                "short write then ENOSPC"};

static atomic_long g_calls;             /* write-side calls so far */
static long g_fail_at;                  /* 1-based call to fail; 0 = none */
static fault_kind_t g_kind;
static atomic_int g_injected;           /* the fault fired */
static atomic_int g_enospc_next;        /* the next data write fails with ENOSPC */
static const char *_Atomic g_injected_op;

static char g_target[512];              /* the file the injected fault hit */
static atomic_int g_last_punch_fd = -1; /* fd of the last FALLOC_FL_PUNCH_HOLE (any thread) */

static void note_target(int fd, const char *path)
{
    if (path) {
        snprintf(g_target, sizeof g_target, "%s", path);
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, g_target, sizeof g_target - 1);
        g_target[n > 0 ? n : 0] = '\0';
    }
}

/* 0 = pass through; else the errno to fail with; -1 = make this write short.
 * fd or path names the file, for the report of absorbed faults. */
static int decide(const char *op, int is_data_write, int fd, const char *path)
{
    if (is_data_write && atomic_exchange(&g_enospc_next, 0)) return ENOSPC;
    long n = atomic_fetch_add(&g_calls, 1) + 1;
    if (n != g_fail_at) return 0;
    note_target(fd, path);
    switch (g_kind) {
    case F_EIO:
    case F_ENOSPC:
        atomic_store(&g_injected, 1);
        atomic_store(&g_injected_op, op);
        return g_kind == F_EIO ? EIO : ENOSPC;
    case F_SHORT:
    case F_SHORT_ENOSPC:
        if (!is_data_write) return 0;   /* not a write: nothing to shorten */
        atomic_store(&g_injected, 1);
        atomic_store(&g_injected_op, op);
        if (g_kind == F_SHORT_ENOSPC) atomic_store(&g_enospc_next, 1);
        return -1;
    default:
        return 0;
    }
}

static int f_open(const char *path, int flags, mode_t mode)
{
    if (flags & (O_WRONLY | O_RDWR | O_CREAT)) {
        int e = decide("open", 0, -1, path);
        if (e > 0) { errno = e; return -1; }
    }
    return open(path, flags, mode);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int e = decide("pwrite", 1, fd, NULL);
    if (e > 0) { errno = e; return -1; }
    if (e < 0 && n >= 2) n /= 2;
    return pwrite(fd, buf, n, off);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    int e = decide("pwritev", 1, fd, NULL);
    if (e > 0) { errno = e; return -1; }
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    if (e < 0 && total >= 2 && cnt <= 8) {
        /* The first half of the bytes, cut inside whichever vector holds it. */
        struct iovec v[8];
        size_t want = total / 2;
        int k = 0;
        for (; k < cnt && want > 0; k++) {
            v[k] = iov[k];
            if (v[k].iov_len > want) v[k].iov_len = want;
            want -= v[k].iov_len;
        }
        return pwritev(fd, v, k, off);
    }
    return pwritev(fd, iov, cnt, off);
}

#define FD_FAULT(name, call, proto, args)                          \
    static int name proto                                           \
    {                                                               \
        int e = decide(#call, 0, fd, NULL);                         \
        if (e > 0) { errno = e; return -1; }                        \
        return call args;                                           \
    }
#define PATH_FAULT(name, call, proto, args)                        \
    static int name proto                                           \
    {                                                               \
        int e = decide(#call, 0, -1, p);                            \
        if (e > 0) { errno = e; return -1; }                        \
        return call args;                                           \
    }
FD_FAULT(f_fdatasync, fdatasync, (int fd), (fd))
FD_FAULT(f_fsync, fsync, (int fd), (fd))
FD_FAULT(f_ftruncate, ftruncate, (int fd, off_t len), (fd, len))
PATH_FAULT(f_rename, rename, (const char *p, const char *to), (p, to))
PATH_FAULT(f_unlink, unlink, (const char *p), (p))
PATH_FAULT(f_mkdir, mkdir, (const char *p, mode_t m), (p, m))

/* fallocate names its purpose: preallocation (mode 0), or the zeroing of a
 * torn tail at recovery (ZERO_RANGE, else PUNCH_HOLE then a best-effort
 * re-reservation), whose failures have a fallback by design. */
static int f_fallocate(int fd, int mode, off_t off, off_t len)
{
    const char *op = mode & FALLOC_FL_ZERO_RANGE   ? "fallocate(zero-range)"
                     : mode & FALLOC_FL_PUNCH_HOLE ? "fallocate(punch-hole)"
                     : fd == g_last_punch_fd       ? "fallocate(re-reserve)"
                                                   : "fallocate";
    g_last_punch_fd = mode & FALLOC_FL_PUNCH_HOLE ? fd : -1;
    int e = decide(op, 0, fd, NULL);
    if (e > 0) { errno = e; return -1; }
    return fallocate(fd, mode, off, len);
}

static void faults_arm(fault_kind_t kind, long at)
{
    atomic_store(&g_calls, 0);
    atomic_store(&g_injected, 0);
    atomic_store(&g_enospc_next, 0);
    atomic_store(&g_injected_op, NULL);
    g_target[0] = '\0';
    g_last_punch_fd = -1;
    g_kind = kind;
    g_fail_at = at;
    rn_sys.open = f_open;
    rn_sys.pwrite = f_pwrite;
    rn_sys.pwritev = f_pwritev;
    rn_sys.fdatasync = f_fdatasync;
    rn_sys.fsync = f_fsync;
    rn_sys.ftruncate = f_ftruncate;
    rn_sys.fallocate = f_fallocate;
    rn_sys.rename = f_rename;
    rn_sys.unlink = f_unlink;
    rn_sys.mkdir = f_mkdir;
}

/* ---- helpers --------------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void rm_tree(const char *d) { nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* tmpfs when there is one: the test makes thousands of fsyncs. */
static char *mk_tmp(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *d = malloc(64);
    assert_non_null(d);
    snprintf(d, 64, "%s/rn-test-faults-XXXXXX", base);
    assert_non_null(mkdtemp(d));
    return d;
}

static void opts_for(rn_log_opts_t *o, rn_fsync_mode_t m)
{
    rn_log_opts_default(o);
    o->fsync = m;
    o->group_window_us = 0;
    o->max_batch_bytes = 1024;
    o->segment_bytes = 2048;            /* a roll every few batches */
    o->index_file_units = 4;            /* a new index file every 4 batches of a queue */
}

/* Record at offset off of queue q: its value, fixed by (q, off). */
static int record_value(uint32_t q, int64_t off, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "q%u-o%" PRId64 "-", q, off);
    int pad = (int)((q * 131u + (uint64_t)off * 7u) % 60u);
    for (int i = 0; i < pad && n + 1 < (int)cap; i++) buf[n++] = (char)('a' + (off + i) % 26);
    buf[n] = '\0';
    return n;
}

/* Batch number i goes to queue i % NQ with i % 3 + 1 records. */
static uint32_t batch_queue(int i) { return (uint32_t)(i % NQ); }
static int batch_records(int i) { return i % 3 + 1; }

/* Build the batch of records [first, first + n) of queue q into b. */
static void build(rn_batch_builder_t *b, uint32_t q, int64_t first, int n, const uint8_t **out,
                  size_t *len)
{
    rn_batch_builder_reset(b);
    for (int k = 0; k < n; k++) {
        char val[128];
        int vl = record_value(q, first + k, val, sizeof val);
        rn_record_t r = {0};
        r.timestamp = 1000 + first + k;
        r.key_len = -1;
        r.value = (const uint8_t *)val;
        r.value_len = vl;
        assert_int_equal(rn_batch_builder_add(b, &r), 0);
    }
    assert_int_equal(rn_batch_builder_finish(b, out, len), 0);
}

/* What one run did. */
typedef struct run {
    int64_t attempted[NQ];   /* records of every append tried (next offset if all landed) */
    int64_t acked[NQ];       /* records acknowledged (append and wait returned 0) */
    int64_t possible[NQ];    /* attempted plus a failed append that may have been written */
    int failed;              /* some call failed */
    int first_rc;
    char first_what[16];     /* "open", "append", "wait", "close" */
    char first_msg[RN_ERRMSG_SIZE];
} run_t;

/* Is rc the injected error (or the sticky refusal it causes)? */
static void check_code(int rc, int expect_errno, const char *what)
{
    if (rc == -expect_errno || rc == RN_ESTICKY) return;
    fail_msg("%s failed with %s (%d), want %s or RN_ESTICKY", what, rn_strerror(rc), rc,
             strerror(expect_errno));
}

/* errmsg of a failed append or open: names the cause. */
static void check_msg(int rc, const char *msg, const char *what)
{
    if (msg[0] == '\0') fail_msg("%s failed with %s and an empty message", what, rn_strerror(rc));
    int enospc = strstr(msg, "No space left on device") || strstr(msg, "no space left on device");
    int eio = strstr(msg, "Input/output error") != NULL;
    if (rc == -ENOSPC && !enospc) fail_msg("%s: ENOSPC message lacks the cause: %s", what, msg);
    if (rc == -EIO && !eio) fail_msg("%s: EIO message lacks the cause: %s", what, msg);
    if (rc == RN_ESTICKY && (!strstr(msg, "refuses writes since") || (!enospc && !eio)))
        fail_msg("%s: sticky message lacks the first cause: %s", what, msg);
}

static void note_fail(run_t *r, const char *what, int rc, const char *msg)
{
    if (r->failed) return;
    r->failed = 1;
    r->first_rc = rc;
    snprintf(r->first_what, sizeof r->first_what, "%s", what);
    snprintf(r->first_msg, sizeof r->first_msg, "%s", msg ? msg : "");
}

/* A failure that wrote nothing and leaves the store writable (log.c
 * invariant 4): creating a new segment or index file. */
static int creation_failure(const char *msg)
{
    return strstr(msg, "cannot create segment") || strstr(msg, "preallocate") ||
           strstr(msg, "fsync of new segment") || strstr(msg, "fsync of directory") ||
           strstr(msg, "for a new") || strstr(msg, "cannot create index") ||
           strstr(msg, "for index file");
}

/* Appends of batches [from, to) of the workload. Returns 0, or -1 once a call
 * failed (after checking the failure and the retry). */
static int feed(rn_log_t *log, rn_batch_builder_t *b, run_t *r, int from, int to, int inj_errno)
{
    for (int i = from; i < to; i++) {
        uint32_t q = batch_queue(i);
        int n = batch_records(i);
        const uint8_t *out;
        size_t len;
        build(b, q, r->attempted[q], n, &out, &len);
        char err[RN_ERRMSG_SIZE] = "";
        int64_t base = -1;
        uint64_t ticket = 0;
        int rc = rn_log_append(log, q, out, len, &base, &ticket, err);
        if (rc == 0) {
            assert_int_equal(base, r->attempted[q]);
            r->attempted[q] += n;
            rc = rn_log_wait(log, ticket);
            if (rc == 0) { r->acked[q] += n; continue; }
            if (!inj_errno) fail_msg("wait failed without a fault: %s", rn_strerror(rc));
            check_code(rc, inj_errno, "wait");
            note_fail(r, "wait", rc, "");
        } else {
            if (!inj_errno) fail_msg("append failed without a fault: %s (%s)", rn_strerror(rc), err);
            check_code(rc, inj_errno, "append");
            check_msg(rc, err, "append");
            note_fail(r, "append", rc, err);
            /* Failed after its write (e.g. the fdatasync under `always`): the
             * batch may be found on reopen, unacknowledged. */
            r->possible[q] = r->attempted[q] + n;
        }
        /* The next append: sticky, unless the failure only failed to create a file. */
        int was_creation = rc != RN_ESTICKY && strcmp(r->first_what, "append") == 0 &&
                           creation_failure(r->first_msg);
        build(b, q, r->attempted[q], n, &out, &len);
        err[0] = '\0';
        rc = rn_log_append(log, q, out, len, &base, &ticket, err);
        if (was_creation) {
            if (rc != 0) fail_msg("append after a failed file creation (%s): %s (%s)",
                                  r->first_msg, rn_strerror(rc), err);
            assert_int_equal(base, r->attempted[q]);
            r->attempted[q] += n;
            if (rn_log_wait(log, ticket) == 0) r->acked[q] += n;
            if (r->possible[q] < r->attempted[q]) r->possible[q] = r->attempted[q];
        } else {
            if (rc != RN_ESTICKY)
                fail_msg("append after %s failed with %s (%s) returned %s, want RN_ESTICKY",
                         r->first_what, rn_strerror(r->first_rc), r->first_msg, rn_strerror(rc));
            check_msg(rc, err, "append after the failure");
        }
        return -1;
    }
    return 0;
}

/* The workload: open, NB_A appends, close, reopen, NB_B appends, close. */
static void workload(const char *dir, rn_fsync_mode_t m, int inj_errno, run_t *r)
{
    rn_log_opts_t o;
    opts_for(&o, m);
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
    memset(r, 0, sizeof *r);
    for (int phase = 0; phase < 2 && !r->failed; phase++) {
        char err[RN_ERRMSG_SIZE] = "";
        rn_log_t *log = NULL;
        int rc = rn_log_open(dir, &o, &log, err);
        if (rc != 0) {
            if (!inj_errno) fail_msg("open failed without a fault: %s (%s)", rn_strerror(rc), err);
            check_code(rc, inj_errno, "open");
            check_msg(rc, err, "open");
            note_fail(r, "open", rc, err);
            break;
        }
        if (phase == 0) feed(log, &b, r, 0, NB_A, inj_errno);
        else feed(log, &b, r, NB_A, NB_A + NB_B, inj_errno);
        rc = rn_log_close(log);
        if (rc != 0) {
            if (!inj_errno) fail_msg("close failed without a fault: %s", rn_strerror(rc));
            check_code(rc, inj_errno, "close");
            note_fail(r, "close", rc, "");
        }
    }
    rn_batch_builder_destroy(&b);
}

/* Reopen with the real calls; check invariants 4 and 5. Returns records found. */
static int64_t verify_opts(const char *dir, const rn_log_opts_t *opts, const run_t *r,
                           const char *ctx)
{
    rn_sys_reset();
    rn_log_opts_t o = *opts;
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) fail_msg("%s: reopen with real calls: %s (%s)", ctx, rn_strerror(rc), err);
    rn_buf_t buf = RN_BUF_INIT;
    rn_batch_iter_t it;
    rn_batch_iter_init(&it, &rn_batch_default_limits);
    int64_t total = 0;
    int64_t hw[NQ];
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        hw[q] = qi.high_watermark;
        if (qi.log_start != 0) fail_msg("%s: queue %u starts at %" PRId64, ctx, q, qi.log_start);
        if (hw[q] < r->acked[q])
            fail_msg("%s: queue %u lost acknowledged records: high watermark %" PRId64
                     " < %" PRId64 " acknowledged", ctx, q, hw[q], r->acked[q]);
        int64_t most = r->possible[q] > r->attempted[q] ? r->possible[q] : r->attempted[q];
        if (hw[q] > most)
            fail_msg("%s: queue %u holds %" PRId64 " records, only %" PRId64 " were appended",
                     ctx, q, hw[q], most);
        int64_t next = 0;
        for (int guard = 0; next < hw[q] && guard < 10000; guard++) {
            buf.len = 0;
            uint32_t nb = 0;
            rc = rn_log_read(log, q, next, 1 << 16, &buf, &nb, err);
            if (rc != 0) fail_msg("%s: read q%u@%" PRId64 ": %s (%s)", ctx, q, next,
                                  rn_strerror(rc), err);
            if (nb == 0) fail_msg("%s: read q%u@%" PRId64 " below hw gave nothing", ctx, q, next);
            size_t at = 0;
            for (uint32_t k = 0; k < nb; k++) {
                size_t sz;
                assert_int_equal(rn_batch_size(buf.data + at, buf.len - at, &sz), 0);
                rn_batch_header_t bh;
                rc = rn_batch_validate(buf.data + at, sz, &rn_batch_default_limits, 1, &bh, err);
                if (rc != 0) fail_msg("%s: q%u batch at %" PRId64 " invalid: %s", ctx, q, next, err);
                if (bh.base_offset != next)
                    fail_msg("%s: q%u offsets not dense: batch base %" PRId64 " where %" PRId64
                             " was due", ctx, q, bh.base_offset, next);
                assert_int_equal(rn_batch_iter_reset(&it, buf.data + at, sz, err), 0);
                rn_record_t rec;
                while ((rc = rn_batch_iter_next(&it, &rec, err)) == 1) {
                    char want[128];
                    int wl = record_value(q, next, want, sizeof want);
                    if (rec.offset != next || rec.value_len != wl ||
                        memcmp(rec.value, want, (size_t)wl) != 0 || rec.timestamp != 1000 + next)
                        fail_msg("%s: q%u record at %" PRId64 " is not the one appended", ctx, q,
                                 next);
                    next++;
                    total++;
                }
                assert_int_equal(rc, 0);
                at += sz;
            }
        }
        assert_int_equal(next, hw[q]);
    }
    /* Appends continue densely, and survive a clean reopen. */
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
    for (uint32_t q = 0; q < NQ; q++) {
        const uint8_t *out;
        size_t len;
        build(&b, q, hw[q], 2, &out, &len);
        int64_t base;
        uint64_t ticket;
        rc = rn_log_append(log, q, out, len, &base, &ticket, err);
        if (rc != 0) fail_msg("%s: append after recovery: %s (%s)", ctx, rn_strerror(rc), err);
        assert_int_equal(base, hw[q]);
        assert_int_equal(rn_log_wait(log, ticket), 0);
    }
    rn_batch_builder_destroy(&b);
    assert_int_equal(rn_log_close(log), 0);
    rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) fail_msg("%s: second reopen: %s (%s)", ctx, rn_strerror(rc), err);
    rn_log_recovery_t rec;
    rn_log_recovery_info(log, &rec);
    assert_true(rec.clean);
    for (uint32_t q = 0; q < NQ; q++) {
        rn_log_queue_info_t qi;
        assert_int_equal(rn_log_queue_info(log, q, &qi), 0);
        assert_int_equal(qi.high_watermark, hw[q] + 2);
    }
    assert_int_equal(rn_log_close(log), 0);
    rn_batch_iter_destroy(&it);
    rn_buf_free(&buf);
    return total;
}

static int64_t verify(const char *dir, rn_fsync_mode_t m, const run_t *r, const char *ctx)
{
    rn_log_opts_t o;
    opts_for(&o, m);
    return verify_opts(dir, &o, r, ctx);
}

/* ---- the loop over fault points -------------------------------------------------- */

static long g_total_injected;

static void loop_mode(rn_fsync_mode_t m)
{
    /* Count the write points of a fault-free run. */
    char *dir = mk_tmp();
    run_t r;
    faults_arm(F_NONE, 0);
    workload(dir, m, 0, &r);
    long n = atomic_load(&g_calls);
    assert_false(r.failed);
    for (uint32_t q = 0; q < NQ; q++) assert_int_equal(r.acked[q], r.attempted[q]);
    verify(dir, m, &r, "fault-free run");
    rm_tree(dir);
    free(dir);
    assert_true(n > 50);
    printf("fsync=%s: %ld write-side calls per run\n", rn_fsync_name(m), n);

    for (int kind = F_EIO; kind < F_KINDS; kind++) {
        long injected = 0, surfaced = 0, absorbed = 0;
        char absorbed_ops[256] = "";
        int inj_errno = kind == F_EIO ? EIO : kind == F_SHORT ? 0 : ENOSPC;
        for (long k = 1; k <= n + 2; k++) {       /* +2: the syncer may add a call */
            char ctx[96];
            snprintf(ctx, sizeof ctx, "fsync=%s %s at write call %ld", rn_fsync_name(m),
                     kind_name[kind], k);
            dir = mk_tmp();
            faults_arm((fault_kind_t)kind, k);
            workload(dir, m, inj_errno, &r);
            int fired = atomic_load(&g_injected);
            const char *op = atomic_load(&g_injected_op);
            rn_sys_reset();
            if (!fired && r.failed) fail_msg("%s: %s failed with no fault injected", ctx, r.first_what);
            if (fired) {
                injected++;
                if (r.failed) surfaced++;
                else if (kind == F_SHORT) {
                    absorbed++;                 /* continued by the caller, as it must be */
                } else {
                    /* Only best-effort writes may swallow a fault: the pid
                     * note in LOCK, and the zeroing fallbacks. */
                    const char *slash = strrchr(g_target, '/');
                    int lock = slash && strcmp(slash, "/LOCK") == 0;
                    int zeroing = op && strncmp(op, "fallocate(", 10) == 0;
                    if (!lock && !zeroing)
                        fail_msg("%s: %s on %s was swallowed: no call reported it", ctx, op,
                                 g_target);
                    absorbed++;
                    char what[96];
                    snprintf(what, sizeof what, " %s(%s)", op, lock ? "LOCK" : "segment");
                    if (!strstr(absorbed_ops, what) &&
                        strlen(absorbed_ops) + strlen(what) + 1 < sizeof absorbed_ops)
                        strcat(absorbed_ops, what);
                }
            }
            if (kind == F_SHORT && r.failed)
                fail_msg("%s: a continuable short write failed %s: %s (%s)", ctx, r.first_what,
                         rn_strerror(r.first_rc), r.first_msg);
            if (!r.failed)
                for (uint32_t q = 0; q < NQ; q++) assert_int_equal(r.acked[q], r.attempted[q]);
            verify(dir, m, &r, ctx);
            rm_tree(dir);
            free(dir);
        }
        printf("fsync=%s %-24s: %ld faults injected, %ld reported to the caller, %ld %s%s%s\n",
               rn_fsync_name(m), kind_name[kind], injected, surfaced, absorbed,
               kind == F_SHORT ? "continued transparently" : "absorbed by best-effort writes",
               absorbed_ops[0] ? ":" : "", absorbed_ops);
        assert_true(injected > 0);
        g_total_injected += injected;
    }
}

static void test_faults_always(void **state) { (void)state; loop_mode(RN_FSYNC_ALWAYS); }
static void test_faults_group(void **state) { (void)state; loop_mode(RN_FSYNC_GROUP); }
static void test_faults_never(void **state) { (void)state; loop_mode(RN_FSYNC_NEVER); }


/* ---- a real small file system, filled up -------------------------------------- */

typedef enum fs_kind { FS_TMPFS, FS_EXT4 } fs_kind_t;

/* What a failing fill test leaves mounted, for its teardown. */
static char *g_mnt;
static char g_img[64];

/* Mount an 8 MiB file system on a new directory; NULL and *why when this
 * machine does not allow it (then the test is skipped, visibly). */
static char *mount_small(fs_kind_t kind, char *img, size_t imgcap, char *why, size_t whycap)
{
    char *mnt = strdup("/tmp/rn-test-fill-XXXXXX");
    assert_non_null(mnt);
    assert_non_null(mkdtemp(mnt));
    img[0] = '\0';
    if (geteuid() != 0) {
        snprintf(why, whycap, "mounting a small file system needs root (euid %d)", (int)geteuid());
        goto no;
    }
    if (kind == FS_TMPFS) {
        if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m") != 0) {
            snprintf(why, whycap, "mount -t tmpfs -o size=8m refused: %s", strerror(errno));
            goto no;
        }
        return mnt;
    }
    snprintf(img, imgcap, "%s.img", mnt);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "truncate -s 8M %s && mkfs.ext4 -q -F -m 0 %s >/dev/null 2>&1 && "
             "mount -o loop %s %s 2>/dev/null", img, img, img, mnt);
    if (system(cmd) != 0) {
        snprintf(why, whycap, "cannot make and loop-mount an 8 MiB ext4 image (%s)", cmd);
        unlink(img);
        img[0] = '\0';
        goto no;
    }
    return mnt;
no:
    rmdir(mnt);
    free(mnt);
    return NULL;
}

static void unmount_small(char *mnt, const char *img)
{
    g_mnt = NULL;
    if (umount(mnt) != 0) fail_msg("umount %s: %s", mnt, strerror(errno));
    rmdir(mnt);
    if (img[0]) unlink(img);
    free(mnt);
}

static int fill_teardown(void **state)
{
    (void)state;
    rn_sys_reset();
    if (g_mnt) {
        umount2(g_mnt, MNT_DETACH);
        rmdir(g_mnt);
        if (g_img[0]) unlink(g_img);
        free(g_mnt);
        g_mnt = NULL;
    }
    return 0;
}

/* Scenario: appends fill a real 8 MiB file system until it reports ENOSPC;
 * the producer gets a clear error, nothing acknowledged is lost, and once a
 * ballast file is deleted the store reopens, recovers and appends again. */
static void fill_fs(fs_kind_t kind, rn_fsync_mode_t m)
{
    char img[64], why[700];
    char *mnt = mount_small(kind, img, sizeof img, why, sizeof why);
    if (!mnt) {
        printf("SKIPPED: %s\n", why);
        skip();
    }
    g_mnt = mnt;
    snprintf(g_img, sizeof g_img, "%s", img);
    char dir[600], ballast[600];
    snprintf(dir, sizeof dir, "%s/store", mnt);
    snprintf(ballast, sizeof ballast, "%s/ballast", mnt);
    /* 1 MiB of real bytes to delete later: the room recovery gets back. */
    int bfd = open(ballast, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(bfd >= 0);
    static char chunk[65536];
    memset(chunk, 'b', sizeof chunk);
    for (int i = 0; i < 16; i++) assert_int_equal(write(bfd, chunk, sizeof chunk), (ssize_t)sizeof chunk);
    assert_int_equal(fsync(bfd), 0);
    close(bfd);

    rn_log_opts_t o;
    rn_log_opts_default(&o);
    o.fsync = m;
    o.segment_bytes = 1 << 20;
    o.max_batch_bytes = 64 << 10;
    o.index_file_units = 512;
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) fail_msg("open on the small fs: %s (%s)", rn_strerror(rc), err);
    run_t r;
    memset(&r, 0, sizeof r);
    rn_batch_opts_t bo;
    rn_batch_builder_t b;
    rn_batch_opts_default(&bo);
    assert_int_equal(rn_batch_builder_init(&b, &bo), 0);
    int full = 0, i = 0;
    for (; i < 20000 && !full; i++) {          /* 8 MiB / ~5 KiB batches: well below */
        uint32_t q = (uint32_t)(i % NQ);
        const uint8_t *out;
        size_t len;
        build(&b, q, r.attempted[q], 60, &out, &len);
        int64_t base;
        uint64_t ticket;
        err[0] = '\0';
        rc = rn_log_append(log, q, out, len, &base, &ticket, err);
        if (rc == 0) {
            r.attempted[q] += 60;
            rc = rn_log_wait(log, ticket);
            if (rc == 0) { r.acked[q] += 60; continue; }
            snprintf(err, sizeof err, "(wait: no message)");
        } else {
            r.possible[q] = r.attempted[q] + 60;
        }
        full = 1;
        note_fail(&r, "append", rc, err);
    }
    assert_true(full);
    printf("%s, fsync=%s: full after %d appends (%" PRId64 " records acknowledged): %s: %s\n",
           kind == FS_TMPFS ? "tmpfs" : "ext4", rn_fsync_name(m), i,
           r.acked[0] + r.acked[1] + r.acked[2], rn_strerror(r.first_rc), r.first_msg);
    if (r.first_rc != -ENOSPC && r.first_rc != RN_ESTICKY)
        fail_msg("filling the fs failed with %s, want ENOSPC", rn_strerror(r.first_rc));
    if (strcmp(r.first_msg, "(wait: no message)") != 0) check_msg(r.first_rc, r.first_msg, "append");
    /* Still full: the same append fails again, with a clear message. */
    const uint8_t *out;
    size_t len;
    build(&b, 0, r.attempted[0], 60, &out, &len);
    int64_t base;
    uint64_t ticket;
    err[0] = '\0';
    rc = rn_log_append(log, 0, out, len, &base, &ticket, err);
    if (rc != -ENOSPC && rc != RN_ESTICKY)
        fail_msg("append on a full fs returned %s (%s)", rn_strerror(rc), err);
    check_msg(rc, err, "append on a full fs");
    rc = rn_log_close(log);                   /* may fail: the fs is full */
    printf("close on the full fs: %s\n", rn_strerror(rc));
    rn_batch_builder_destroy(&b);
    assert_int_equal(unlink(ballast), 0);
    int64_t got = verify_opts(dir, &o, &r, "after freeing space");
    assert_true(got >= r.acked[0] + r.acked[1] + r.acked[2]);
    unmount_small(mnt, img);
}

static void test_fill_tmpfs(void **state) { (void)state; fill_fs(FS_TMPFS, RN_FSYNC_GROUP); }
static void test_fill_ext4_always(void **state) { (void)state; fill_fs(FS_EXT4, RN_FSYNC_ALWAYS); }
static void test_fill_ext4_group(void **state) { (void)state; fill_fs(FS_EXT4, RN_FSYNC_GROUP); }

static int reset_sys(void **state)
{
    (void)state;
    rn_sys_reset();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_faults_always, reset_sys),
        cmocka_unit_test_teardown(test_faults_group, reset_sys),
        cmocka_unit_test_teardown(test_faults_never, reset_sys),
        cmocka_unit_test_teardown(test_fill_tmpfs, fill_teardown),
        cmocka_unit_test_teardown(test_fill_ext4_always, fill_teardown),
        cmocka_unit_test_teardown(test_fill_ext4_group, fill_teardown),
    };
    int rc = cmocka_run_group_tests_name("faults", tests, NULL, NULL);
    printf("faults injected in total: %ld\n", g_total_injected);
    return rc;
}

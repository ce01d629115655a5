/*
 * fuzz_recovery.c — libFuzzer target for store recovery: arbitrary bytes
 * become a store directory (commit-log segments, index files, checkpoint,
 * clean marker), then rn_log_open must either fail with an error or recover a
 * store that every read and lookup can walk consistently.
 *
 * INPUT FORMAT (how the bytes are split into files)
 *   A sequence of chunks, each  kind u8 | arg u8 | len u16 LE | len bytes
 *   (a last chunk shorter than len takes what is left). By kind % 4:
 *     0  a commit-log segment. Segments are laid end to end from position 0
 *        in input order: the file is named by the running position.
 *          arg bit 0: pad the file with zeros to SEG_BYTES (the store's
 *                     segment size), so seeds need not carry zero tails;
 *          arg bit 1: name it one byte past the running position (a gap).
 *     1  an index file of queue arg & 3, named by the base offset in bytes
 *        [8,16) of its first unit (0 when shorter), masked to 63 bits.
 *          arg bit 2: name it base + 1 (a name that contradicts its unit);
 *          arg bit 3: pad with zeros to IDX_UNITS units.
 *     2  the checkpoint file.    3  the clean-shutdown marker.
 *   At most MAX_SEGS segments; a repeated index name or a repeated
 *   checkpoint/marker chunk replaces the earlier bytes.
 *   tests/fuzz/mkcorpus_recovery.c turns real stores into such inputs.
 *
 * Invariants (abort() on violation, besides ASan/UBSan findings):
 *  1. rn_log_open returns 0, or a negative code with a non-empty errmsg.
 *  2. After a successful open, for every queue: log_start <= high watermark;
 *     walking from log_start, the batch containing each expected offset
 *     starts exactly there (dense offsets) and has >= 1 record; a batch
 *     recovery marked damaged reads as RN_EDAMAGED with a message; rn_log_read
 *     returns exactly that batch (its size, its base offset) or RN_ECORRUPT
 *     with a message (an entry before the recovery point is trusted, not
 *     re-verified, so damage there is reported at read time); the walk ends
 *     exactly at the high watermark. Time lookups return 0 with an offset in
 *     [log_start, hw], or RN_ECORRUPT / RN_EFORMAT / RN_ETOOBIG from decoding
 *     a damaged batch, with a message.
 *  3. When the input has no valid checkpoint, recovery verified every entry:
 *     no read of a batch not marked damaged fails, and every such batch
 *     passes rn_batch_validate.
 *  4. An append continues at the high watermark; after a clean close, a
 *     reopen finds the marker, scans and drops nothing, and shows the same
 *     queues, log starts and high watermarks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batch.h"
#include "batch/crc32c.h"
#include "common/buf.h"
#include "common/error.h"
#include "log/log.h"
#include "log/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEG_BYTES  2048u
#define MAX_BATCH  1024u
#define IDX_UNITS  8u
#define MAX_SEGS   16
#define MAX_QUEUES 4

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_recovery: %s:%d: invariant failed: %s\n",      \
                    __FILE__, __LINE__, #c);                                      \
            abort();                                                              \
        }                                                                         \
    } while (0)

static char g_root[PATH_MAX];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static void cleanup_root(void)
{
    if (g_root[0]) nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *root_dir(void)
{
    if (!g_root[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(g_root, sizeof g_root, "%s/rn-fuzz-recovery-XXXXXX", base);
        if (!mkdtemp(g_root)) { perror("mkdtemp"); abort(); }
        atexit(cleanup_root);
    }
    return g_root;
}

static void write_file(const char *path, const uint8_t *p, size_t n, size_t pad_to)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
    if (pad_to > n) CHECK(ftruncate(fd, (off_t)pad_to) == 0);
    close(fd);
}

/* Is b[0,n) a checkpoint the store would accept (log.c format)? */
static int ckpt_valid(const uint8_t *b, size_t n)
{
    if (n < 28 || rn_le32_get(b) != 0x4b434e52u || rn_le32_get(b + 4) != 1) return 0;
    uint32_t nq = rn_le32_get(b + 16);
    if (nq > (1u << 20) || n != 24 + (size_t)nq * 16 + 4) return 0;
    return rn_le32_get(b + n - 4) == rn_crc32c(0, b, n - 4);
}

/* Lay the input out as files under dir. Returns 1 when a valid checkpoint was written. */
static int build_store(const char *dir, const uint8_t *data, size_t size)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/commitlog", dir);
    CHECK(mkdir(dir, 0755) == 0 && mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/index", dir);
    CHECK(mkdir(path, 0755) == 0);
    uint64_t pos = 0;
    int nsegs = 0, ckpt_ok = 0;
    size_t i = 0;
    while (i + 4 <= size) {
        uint8_t kind = data[i] & 3, arg = data[i + 1];
        size_t len = (size_t)data[i + 2] | (size_t)data[i + 3] << 8;
        i += 4;
        if (len > size - i) len = size - i;
        const uint8_t *p = data + i;
        i += len;
        switch (kind) {
        case 0: {
            if (nsegs == MAX_SEGS) break;
            size_t fsz = (arg & 1) && len < SEG_BYTES ? SEG_BYTES : len;
            uint64_t start = pos + ((arg & 2) ? 1 : 0);
            snprintf(path, sizeof path, "%s/commitlog/%020llu.log", dir, (unsigned long long)start);
            write_file(path, p, len, fsz);
            pos = start + fsz;
            nsegs++;
            break;
        }
        case 1: {
            uint64_t base = len >= 16 ? rn_le64_get(p + 8) & (uint64_t)INT64_MAX : 0;
            if ((arg & 4) && base < (uint64_t)INT64_MAX) base++;
            snprintf(path, sizeof path, "%s/index/%010u", dir, arg & 3u);
            if (mkdir(path, 0755) != 0) CHECK(errno == EEXIST);
            snprintf(path, sizeof path, "%s/index/%010u/%020llu.idx", dir, arg & 3u,
                     (unsigned long long)base);
            write_file(path, p, len, (arg & 8) ? IDX_UNITS * 48u : 0);
            break;
        }
        case 2:
            snprintf(path, sizeof path, "%s/checkpoint", dir);
            write_file(path, p, len, 0);
            ckpt_ok = ckpt_valid(p, len);
            break;
        default:
            snprintf(path, sizeof path, "%s/clean", dir);
            write_file(path, p, len, 0);
            break;
        }
    }
    return ckpt_ok;
}

static void store_opts(rn_log_opts_t *o)
{
    rn_log_opts_default(o);
    o->fsync = RN_FSYNC_ALWAYS;          /* no background group commit */
    o->segment_bytes = SEG_BYTES;
    o->max_batch_bytes = MAX_BATCH;
    o->index_file_units = IDX_UNITS;
}

typedef struct qstate {
    uint32_t id;
    int64_t  log_start, hw;
} qstate_t;

/* Invariants 2 and 3 over every queue; fills qs (up to cap) and *nq. */
static void walk(rn_log_t *log, int strict, qstate_t *qs, size_t cap, size_t *nq)
{
    uint32_t *ids = NULL;
    size_t n = 0;
    CHECK(rn_log_queues(log, &ids, &n) == 0);
    rn_buf_t buf = RN_BUF_INIT;
    char err[RN_ERRMSG_SIZE];
    *nq = 0;
    for (size_t k = 0; k < n; k++) {
        rn_log_queue_info_t qi;
        CHECK(rn_log_queue_info(log, ids[k], &qi) == 0);
        if (getenv("RN_FUZZ_VERBOSE"))
            fprintf(stderr, "fuzz_recovery: queue %u: log start %lld, high watermark %lld, "
                    "%llu batches\n", ids[k], (long long)qi.log_start,
                    (long long)qi.high_watermark, (unsigned long long)qi.batches);
        CHECK(qi.log_start >= 0 && qi.log_start <= qi.high_watermark);
        if (*nq < cap) qs[(*nq)++] = (qstate_t){ids[k], qi.log_start, qi.high_watermark};
        int64_t e = qi.log_start;
        uint64_t batches = 0;
        int64_t ts_probe[3] = {INT64_MIN, 0, INT64_MAX};
        while (e < qi.high_watermark) {
            CHECK(batches < qi.batches);            /* bounded: one step per batch */
            rn_log_batch_ref_t ref;
            err[0] = '\0';
            CHECK(rn_log_lookup_offset(log, ids[k], e, &ref, err) == 0);
            CHECK(ref.base_offset == e && ref.record_count >= 1);
            buf.len = 0;
            uint32_t nb = 0;
            int rc;
            if (ref.damaged) {
                /* Marked by recovery: reads name it, the walk goes past. */
                rc = rn_log_read(log, ids[k], e, 0, &buf, &nb, err);
                CHECK(rc == RN_EDAMAGED && nb == 0 && err[0] != '\0');
                e += ref.record_count;
                batches++;
                continue;
            }
            CHECK(ref.size >= RN_BATCH_HEADER_SIZE && ref.size <= RN_BATCH_MAX_BYTES);
            rc = rn_log_read(log, ids[k], e, 0, &buf, &nb, err);
            if (rc == 0) {
                CHECK(nb == 1 && buf.len == ref.size);
                int64_t base = 0;
                for (int b = 0; b < 8; b++) base = base << 8 | buf.data[b];
                CHECK(base == e);
                if (strict) {
                    rn_batch_header_t bh;
                    CHECK(rn_batch_validate(buf.data, buf.len, &rn_batch_default_limits, 0, &bh,
                                            err) == 0);
                    CHECK(bh.base_offset == e && bh.record_count == (int32_t)ref.record_count);
                }
            } else {
                CHECK(rc == RN_ECORRUPT && err[0] != '\0');
                CHECK(!strict);
            }
            if (batches == 0) ts_probe[1] = ref.first_timestamp;
            e += ref.record_count;
            batches++;
        }
        CHECK(e == qi.high_watermark);
        CHECK(batches == qi.batches);
        for (int t = 0; t < 3; t++) {
            int64_t off = -1;
            err[0] = '\0';
            int rc = rn_log_lookup_time(log, ids[k], ts_probe[t], &off, err);
            /* Decoding a damaged trusted batch reports what is wrong. */
            if (rc == 0) CHECK(off >= qi.log_start && off <= qi.high_watermark);
            else CHECK((rc == RN_ECORRUPT || rc == RN_EFORMAT || rc == RN_ETOOBIG) &&
                       err[0] != '\0');
        }
    }
    rn_buf_free(&buf);
    free(ids);
}

/* A one-record batch for the append check. */
static void one_batch(rn_batch_builder_t *b, const uint8_t **out, size_t *len)
{
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    CHECK(rn_batch_builder_init(b, &bo) == 0);
    rn_record_t r = {0};
    r.timestamp = 1;
    r.key_len = -1;
    r.value = (const uint8_t *)"after-recovery";
    r.value_len = 14;
    CHECK(rn_batch_builder_add(b, &r) == 0);
    CHECK(rn_batch_builder_finish(b, out, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/store", root_dir());
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    int ckpt_ok = build_store(dir, data, size);

    rn_log_opts_t o;
    store_opts(&o);
    char err[RN_ERRMSG_SIZE] = "";
    rn_log_t *log = NULL;
    int rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) {
        CHECK(rc < 0 && err[0] != '\0' && log == NULL);
        return 0;
    }
    if (getenv("RN_FUZZ_VERBOSE")) {
        rn_log_recovery_t r0;
        rn_log_recovery_info(log, &r0);
        fprintf(stderr, "fuzz_recovery: first open: clean %d, scanned %llu, truncated %llu, "
                "rebuilt %u, dropped %u, checkpoint %s\n", r0.clean,
                (unsigned long long)r0.scanned_bytes, (unsigned long long)r0.truncated_bytes,
                r0.rebuilt_units, r0.dropped_units, ckpt_ok ? "valid" : "absent or invalid");
    }
    qstate_t before[MAX_QUEUES + 2], after[MAX_QUEUES + 2];
    size_t nbefore = 0, nafter = 0;
    walk(log, !ckpt_ok, before, MAX_QUEUES + 2, &nbefore);

    /* Appends continue at the high watermark of an existing queue. */
    if (nbefore > 0) {
        rn_batch_builder_t b;
        const uint8_t *out;
        size_t len;
        one_batch(&b, &out, &len);
        int64_t base = -1;
        uint64_t ticket = 0;
        rc = rn_log_append(log, before[0].id, out, len, &base, &ticket, err);
        if (rc == 0) {
            CHECK(base == before[0].hw);
            CHECK(rn_log_wait(log, ticket) == 0);
            before[0].hw++;
        } else {
            /* Only an exhausted offset space may refuse it. */
            CHECK(rc == RN_ERANGE && err[0] != '\0');
        }
        rn_batch_builder_destroy(&b);
    }
    CHECK(rn_log_close(log) == 0);

    /* A clean reopen changes nothing. */
    log = NULL;
    rc = rn_log_open(dir, &o, &log, err);
    if (rc != 0) {
        fprintf(stderr, "fuzz_recovery: reopen after a clean close failed: %s (%s)\n",
                rn_strerror(rc), err);
        abort();
    }
    rn_log_recovery_t rec;
    rn_log_recovery_info(log, &rec);
    if (!rec.clean || rec.truncated_bytes != 0 || rec.dropped_units != 0)
        fprintf(stderr, "fuzz_recovery: reopen after a clean close: clean %d, truncated %llu "
                "bytes, dropped %u units, scanned %llu bytes, rebuilt %u units\n", rec.clean,
                (unsigned long long)rec.truncated_bytes, rec.dropped_units,
                (unsigned long long)rec.scanned_bytes, rec.rebuilt_units);
    CHECK(rec.clean && rec.truncated_bytes == 0 && rec.dropped_units == 0);
    walk(log, 0, after, MAX_QUEUES + 2, &nafter);
    CHECK(nafter == nbefore);
    for (size_t k = 0; k < nafter && k < MAX_QUEUES + 2; k++) {
        CHECK(after[k].id == before[k].id);
        CHECK(after[k].log_start == before[k].log_start);
        CHECK(after[k].hw == before[k].hw);
    }
    CHECK(rn_log_close(log) == 0);
    return 0;
}
